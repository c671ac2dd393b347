#!/usr/bin/env bash
# Decodes the same sentences with tfm and with marian-decoder (built by
# tests/interop/build_marian.sh) from `tfm export --format marian` of a run,
# and compares: greedy outputs line by line (identical, or differing only by
# the length cap: one output a prefix of the other), beam 5 by BLEU, and the
# wall time of each side with 2 threads.
#
#   tests/interop/compare_marian.sh MARIAN_DECODER RUN_DIR SRC [REF] [OUT_DIR]
#
# RUN_DIR must hold a zero-start model trained with --ln-eps 1e-6 (the only
# kind the Marian export writes). TFM (default build/tfm) is the program.
# Exit 0 when every greedy line agrees up to the length cap.
#
# Status: run 2026-11-29 with marian-dev v1.12.43: it runs to the end, and
# the greedy lines differ (1 of 1000 identical) because Marian does not use
# the export's trained positions (README, "Native Marian export").
set -euo pipefail

if [ $# -lt 3 ] || [ $# -gt 5 ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
dec=$1 run=$2 src=$3 ref=${4:-} out=${5:-build/marian-compare}
tfm=${TFM:-build/tfm}
mkdir -p "$out"

"$tfm" export --format marian --model "$run" --out "$out/export" --force >/dev/null
"$tfm" bpe apply -c "$out/export/bpe.codes" "$src" >"$out/src.bpe"

secs() { local t0=$1; echo "$(date +%s.%N) - $t0" | bc; }

for beam in 1 5; do
    t0=$(date +%s.%N)
    "$tfm" translate --model "$run" --beam "$beam" --threads 2 --quiet <"$src" >"$out/tfm.b$beam"
    tt=$(secs "$t0")
    t0=$(date +%s.%N)
    # decoder.yml: greedy, allow-unk, normalize 0; the beam size is overridden
    "$dec" -c "$out/export/decoder.yml" --beam-size "$beam" --cpu-threads 2 --quiet \
        -i "$out/src.bpe" -o "$out/marian.b$beam.bpe"
    tm=$(secs "$t0")
    "$tfm" bpe detok "$out/marian.b$beam.bpe" >"$out/marian.b$beam"
    echo "beam $beam: tfm ${tt} s, marian-decoder ${tm} s ($(wc -l <"$src") sentences, 2 threads)"
    if [ -n "$ref" ]; then
        echo "  BLEU tfm:    $("$tfm" bleu "$ref" <"$out/tfm.b$beam")"
        echo "  BLEU marian: $("$tfm" bleu "$ref" <"$out/marian.b$beam")"
    fi
done

# greedy: identical lines, length-cap differences, real differences
paste -d '\t' "$out/tfm.b1" "$out/marian.b1" | awk -F '\t' '
    $1 == $2 { same++; next }
    index($1, $2) == 1 || index($2, $1) == 1 { capped++; next }
    { diff++; if (shown < 3) { print "  differs: tfm: " $1 "\n           marian: " $2; shown++ } }
    END {
        printf "greedy: %d identical, %d differ only by the length cap, %d differ\n",
               same, capped, diff
        exit diff > 0
    }'
