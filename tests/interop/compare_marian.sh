#!/usr/bin/env bash
# Decodes the same sentences with tfm and with marian-decoder (built by
# tests/interop/build_marian.sh) from `tfm export --format marian` of a run,
# and, when CT2 and CT2_SRC are set, with CTranslate2 too (built by
# tests/interop/build_ctranslate2.sh; the export converted by its Marian
# converter). Compares greedy and beam 5 outputs line by line with tfm's
# (identical, or differing only by the length cap: one output a prefix of
# the other), BLEU, and the wall time of each side with 2 threads, batch 64
# (median of REPEAT runs, default 3).
#
#   [CT2=ct2-translator CT2_SRC=CTranslate2-tree] \
#   tests/interop/compare_marian.sh MARIAN_DECODER RUN_DIR SRC [REF] [OUT_DIR]
#
# RUN_DIR must hold a zero-start model trained with --ln-eps 1e-6
# --marian-positions (the only kind the Marian export writes). TFM (default
# build/tfm) is the program. Beam search is compared without length
# normalization on every side (tfm --alpha 0, Marian's normalize 0,
# CTranslate2's length_penalty 0: the sum of log-probabilities).
# CTranslate2's converter does not carry Marian's layer-norm epsilon (1e-6;
# CTranslate2 then uses 1e-5): the script sets layer_norm_epsilon 1e-6 in
# the converted config.json (CT2_EPS=converter leaves it), and says so. CTranslate2 runs its kernels on
# OpenMP threads and calls OpenBLAS from them: with Debian's default OpenBLAS
# (openblas-pthread) the two thread pools compete, so it runs with Debian's
# openblas-openmp when that is installed (libopenblas0-openmp), unless
# CT2_BLAS=linked. marian-decoder runs as built.
# Exit 0 when every greedy line of each runtime agrees up to the length cap.
set -euo pipefail

if [ $# -lt 3 ] || [ $# -gt 5 ]; then
    sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' >&2
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
        { diff++; if (shown < 3) { print "  differs: tfm:   " $1 "\n           other: " $2; shown++ } }
        END {
            printf "%s: %d identical, %d differ only by the length cap, %d differ\n",
                   what, same, capped, diff
            exit diff > 0
        }'
}

repeat=${REPEAT:-3}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

runtimes=(tfm marian)
if [ -n "${CT2:-}" ]; then
    [ -n "${CT2_SRC:-}" ] || { echo "compare_marian: CT2 needs CT2_SRC (the CTranslate2 tree)" >&2; exit 2; }
    PYTHONPATH="$CT2_SRC/python" /usr/bin/python3 -m ctranslate2.converters.marian \
        --model_path "$out/export/model.npz" \
        --vocab_paths "$out/export/vocab.yml" "$out/export/vocab.yml" \
        --output_dir "$out/ct2" --force >/dev/null
    /usr/bin/python3 -c "import json, sys
p = sys.argv[1] + '/config.json'; c = json.load(open(p)); e = sys.argv[2]
print('ctranslate2: converted; layer_norm_epsilon', c.get('layer_norm_epsilon'), '->', e)
if e != 'converter': c['layer_norm_epsilon'] = float(e); json.dump(c, open(p, 'w'), indent=2)" \
        "$out/ct2" "${CT2_EPS:-1e-6}"
    runtimes+=(ct2)
    ct2_blas=
    [ "${CT2_BLAS:-}" = linked ] || ct2_blas=$(ls -d /usr/lib/*/openblas-openmp 2>/dev/null | head -1 || true)
    echo "ctranslate2: OpenBLAS ${ct2_blas:-as linked}"
fi

decode() { # RUNTIME BEAM OUTPUT
    case $1 in
    tfm)
        "$tfm" translate --model "$run" --beam "$2" --alpha 0 --batch 64 --threads 2 --quiet \
            <"$src" >"$3" ;;
    marian) # decoder.yml: greedy, allow-unk, normalize 0
        "$dec" -c "$out/export/decoder.yml" --beam-size "$2" --mini-batch 64 --cpu-threads 2 \
            --quiet -i "$out/src.bpe" -o "$3.bpe" ;;
    ct2)
        LD_LIBRARY_PATH=${ct2_blas}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
            "$CT2" --model "$out/ct2" --src "$out/src.bpe" --out "$3.bpe" --beam_size "$2" \
                --length_penalty 0 --batch_size 64 --intra_threads 2 --device cpu 2>/dev/null ;;
    esac
}

bad=0
for beam in 1 5; do
    for rt in "${runtimes[@]}"; do : >"$out/times.$rt"; done
    for ((r = 0; r < repeat; r++)); do
        for rt in "${runtimes[@]}"; do
            t0=$(date +%s.%N)
            decode "$rt" "$beam" "$out/$rt.b$beam"
            secs "$t0" >>"$out/times.$rt"
        done
    done
    line="beam $beam, seconds (median of $repeat; $(wc -l <"$src") sentences, 2 threads, batch 64):"
    for rt in "${runtimes[@]}"; do
        [ "$rt" = tfm ] || "$tfm" bpe detok "$out/$rt.b$beam.bpe" >"$out/$rt.b$beam"
        line+=" $rt $(median <"$out/times.$rt")"
    done
    echo "$line"
    for rt in "${runtimes[@]}"; do
        [ -z "$ref" ] || printf '  BLEU %-7s %s\n' "$rt:" "$("$tfm" bleu "$ref" <"$out/$rt.b$beam" | head -1)"
    done
    for rt in "${runtimes[@]}"; do
        [ "$rt" != tfm ] || continue
        if [ "$beam" = 1 ]; then
            compare "greedy, $rt" "$out/tfm.b1" "$out/$rt.b1" || bad=1
        else
            compare "beam $beam, $rt" "$out/tfm.b$beam" "$out/$rt.b$beam" || true
        fi
    done
done
exit $bad
