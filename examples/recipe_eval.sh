#!/usr/bin/env bash
# The validation table of a recipe (README "Recipe: German to English, 41.0
# BLEU in an hour" and "Recipe: English to German"): which checkpoint, how
# many checkpoints averaged, greedy or beam, which length penalty, and
# whether an ensemble helps, all scored on the
# VALIDATION set only.
#
#   bash examples/recipe_eval.sh RUN_DIR VALID_SRC VALID_REF [tfm bleu options]
#
# e.g. bash examples/recipe_eval.sh runs/en-de-tok datasets/multi30k-tok/valid.en \
#          datasets/multi30k-tok/valid.de --tokenize none
#
# Writes RUN_DIR/avg-N.tfm (tfm average --last N) for N in $AVG (default
# "5 10 20") and prints one line per setting: what was decoded and its BLEU
# (two decimals): greedy and beam 5 with the length penalties $ALPHAS for
# best.tfm, the last checkpoint and each average, then ensembles with the
# length penalties $ENS_ALPHAS.
# Decoding is fp32 with $THREADS threads (default 2), beam search with
# --beam-stop $BEAM_STOP (default finished, what the recipes were chosen
# with; bound searches on until no unfinished hypothesis can win); TFM
# (default build/tfm) is the binary. Nothing here looks at the test set.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 RUN_DIR VALID_SRC VALID_REF [tfm bleu options]" >&2
    exit 2
fi
run=$1 src=$2 ref=$3
shift 3
bleu_opts=("$@")
TFM=${TFM:-build/tfm}
THREADS=${THREADS:-2}
AVG=${AVG:-5 10 20}
ALPHAS=${ALPHAS:-0.6 1.0 1.5 2.0 2.5}
ENS_ALPHAS=${ENS_ALPHAS:-1.0 1.5 2.0}
BEAM_STOP=${BEAM_STOP:-finished}
[ -f "$run/best.tfm" ] || { echo "$0: $run/best.tfm: no such file" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# score NAME TRANSLATE_ARGS...: one line "NAME  BLEU"
score() {
    local name=$1
    shift
    "$TFM" translate --threads "$THREADS" --quiet --beam-stop "$BEAM_STOP" "$@" < "$src" > "$work/hyp"
    printf '%-44s %s\n' "$name" "$("$TFM" bleu --width 2 "$ref" "${bleu_opts[@]}" < "$work/hyp" | tail -1)"
}

last=$(ls "$run"/checkpoint-*.tfm | sort | tail -1)
echo "# $run: validation BLEU ($ref, ${bleu_opts[*]:-13a cased}), beam search --beam-stop $BEAM_STOP"
best_step=$(awk -F, 'BEGIN { b = -1 } NR > 1 && $8 != "" && $8 + 0 > b { b = $8 + 0; s = $1 } END { print s }' "$run/metrics.csv")
echo "# best.tfm: step $best_step (best validation BLEU while training); last: $(basename "$last")"
for n in $AVG; do "$TFM" average --out "$run/avg-$n.tfm" --last "$n" "$run" >/dev/null; done

models=("$run/best.tfm" "$last")
for n in $AVG; do models+=("$run/avg-$n.tfm"); done
for m in "${models[@]}"; do
    score "$(basename "$m") greedy" --model "$m" --beam 1
    for a in $ALPHAS; do score "$(basename "$m") beam 5 alpha $a" --model "$m" --beam 5 --alpha "$a"; done
done
# Ensembles of the run's own checkpoints: each average with best.tfm, and
# all the averages together.
for n in $AVG; do
    for a in $ENS_ALPHAS; do
        score "ensemble avg-$n.tfm + best.tfm, beam 5 alpha $a" \
            --model "$run/avg-$n.tfm" --model "$run/best.tfm" --beam 5 --alpha "$a"
    done
done
ens=()
for n in $AVG; do ens+=(--model "$run/avg-$n.tfm"); done
for a in $ENS_ALPHAS; do score "ensemble avg-{${AVG// /,}}, beam 5 alpha $a" "${ens[@]}" --beam 5 --alpha "$a"; done
