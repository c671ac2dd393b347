#!/usr/bin/env bash
# Decodes the same sentences with tfm and with marian-decoder (built by
# tests/interop/build_marian.sh) from `tfm export --format marian` of a run,
# and compares: greedy and beam 5 outputs line by line (identical, or
# differing only by the length cap: one output a prefix of the other), BLEU,
# and the wall time of each side with 2 threads, batch 64 (median of REPEAT
# runs, default 3).
#
#   tests/interop/compare_marian.sh MARIAN_DECODER RUN_DIR SRC [REF] [OUT_DIR]
#
# RUN_DIR must hold a zero-start model trained with --ln-eps 1e-6
# --marian-positions (the only kind the Marian export writes). TFM (default
# build/tfm) is the program. Beam search is compared without length
# normalization on both sides (tfm --alpha 0, Marian's normalize 0: the sum
# of log-probabilities), the one setting both define the same way.
# Exit 0 when every greedy line agrees up to the length cap.
set -euo pipefail

if [ $# -lt 3 ] || [ $# -gt 5 ]; then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
dec=$1 run=$2 src=$3 ref=${4:-} out=${5:-build/marian-compare}
tfm=${TFM:-build/tfm}
mkdir -p "$out"

"$tfm" export --format marian --model "$run" --out "$out/export" --force >/dev/null
"$tfm" bpe apply -c "$out/export/bpe.codes" "$src" >"$out/src.bpe"

secs() { local t0=$1; echo "$(date +%s.%N) - $t0" | bc; }

# identical lines, length-cap differences, real differences; 1 if any differ
compare() {
    paste -d '\t' "$2" "$3" | awk -F '\t' -v what="$1" '
        $1 == $2 { same++; next }
        index($1, $2) == 1 || index($2, $1) == 1 { capped++; next }
        { diff++; if (shown < 3) { print "  differs: tfm: " $1 "\n           marian: " $2; shown++ } }
        END {
            printf "%s: %d identical, %d differ only by the length cap, %d differ\n",
                   what, same, capped, diff
            exit diff > 0
        }'
}

repeat=${REPEAT:-3}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for beam in 1 5; do
    : >"$out/times.tfm" && : >"$out/times.marian"
    for ((r = 0; r < repeat; r++)); do
        t0=$(date +%s.%N)
        "$tfm" translate --model "$run" --beam "$beam" --alpha 0 --batch 64 --threads 2 --quiet \
            <"$src" >"$out/tfm.b$beam"
        secs "$t0" >>"$out/times.tfm"
        t0=$(date +%s.%N)
        # decoder.yml: greedy, allow-unk, normalize 0; beam size and batch given here
        "$dec" -c "$out/export/decoder.yml" --beam-size "$beam" --mini-batch 64 --cpu-threads 2 \
            --quiet -i "$out/src.bpe" -o "$out/marian.b$beam.bpe"
        secs "$t0" >>"$out/times.marian"
    done
    "$tfm" bpe detok "$out/marian.b$beam.bpe" >"$out/marian.b$beam"
    tt=$(median <"$out/times.tfm") tm=$(median <"$out/times.marian")
    echo "beam $beam: tfm ${tt} s, marian-decoder ${tm} s (median of $repeat;" \
        "$(wc -l <"$src") sentences, 2 threads, batch 64)"
    if [ -n "$ref" ]; then
        echo "  BLEU tfm:    $("$tfm" bleu "$ref" <"$out/tfm.b$beam" | head -1)"
        echo "  BLEU marian: $("$tfm" bleu "$ref" <"$out/marian.b$beam" | head -1)"
    fi
    [ "$beam" = 1 ] || compare "beam $beam" "$out/tfm.b$beam" "$out/marian.b$beam" || true
done

compare greedy "$out/tfm.b1" "$out/marian.b1"
