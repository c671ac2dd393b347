#!/usr/bin/env bash
# tfm_gemm_bf16 against our fp32 tfm_gemm at the 12 GEMMs of a Transformer
# training step (the shapes of bench_gemm.sh / sgemm_peak.c).
#
#   bash train/bench_gemm_bf16.sh            # 2 threads then 1 thread
#   THREADS=2 REPS=5 ROUNDS=3 bash train/bench_gemm_bf16.sh
#
# Each cell is the median over ROUNDS rounds (fp32 and bf16 alternate shape
# by shape, so load from other processes hits both alike) of the median of
# REPS samples of >= 0.2 s. Targets (issue 13): bf16 >= 1.8x fp32 on the
# flop-weighted aggregate and >= 1.6x at every shape; the ratio of peaks is
# 2.0 (vdpbf16ps does two multiply-adds per fp32 lane at the FMA rate).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
THREADS=${THREADS:-"2 1"}
REPS=${REPS:-5}
ROUNDS=${ROUNDS:-3}
TFM=${TFM:-$ROOT/build/tfm}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
[ -x "$TFM" ] || make -C "$ROOT" -j2 build/tfm >/dev/null

SHAPES="4096:512:512 4096:2048:512 4096:512:2048 4096:8000:512"
echo "# bf16 kernel: $("$TFM" bench gemm --m 16 --n 16 --k 16 --reps 1 --precision bf16 | sed -n 's/^kernel=//p'), fp32 kernel: $("$TFM" bench gemm --m 16 --n 16 --k 16 --reps 1 | sed -n 's/^kernel=//p')"
for t in $THREADS; do
    for round in $(seq "$ROUNDS"); do
        echo "# threads=$t round $round/$ROUNDS"
        for s in $SHAPES; do
            IFS=: read -r M N K <<<"$s"
            for v in fwd_NN dX_NT dW_TN; do
                case $v in
                fwd_NN) args="--m $M --n $N --k $K --trans nn" ;;
                dX_NT) args="--m $M --n $K --k $N --trans nt" ;;
                dW_TN) args="--m $K --n $N --k $M --trans tn" ;;
                esac
                for p in fp32 bf16; do
                    # shellcheck disable=SC2086
                    g=$("$TFM" bench gemm $args --threads "$t" --reps "$REPS" --precision $p | sed -n 's/^gflops=//p')
                    echo "$p $v $M $N $K $t $g" >>"$OUT/results"
                done
            done
        done
    done
done

awk '
function median(list,    v, m, i, j, x) {
    m = split(list, v, " ")
    for (i = 2; i <= m; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
    return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
{ key = $2 " " $3 " " $4 " " $5 " " $6 }
$1 == "fp32" { if (!(key in f)) order[n++] = key; f[key] = f[key] " " $7 }
$1 == "bf16" { b[key] = b[key] " " $7 }
END {
    printf "\n%-7s %5s %5s %5s %3s %10s %10s %7s\n", "gemm", "M", "N", "K", "thr", "fp32", "bf16", "ratio"
    for (i = 0; i < n; i++) {
        k = order[i]; split(k, x, " ")
        flop = 2 * x[2] * x[3] * x[4]; t = x[5]; fo = median(f[k]); bo = median(b[k])
        fl[t] += flop; tf[t] += flop / fo; tb[t] += flop / bo
        r = bo / fo
        if (!(t in minr) || r < minr[t]) minr[t] = r
        printf "%-7s %5d %5d %5d %3d %10.1f %10.1f %7.3f\n", x[1], x[2], x[3], x[4], t, fo, bo, r
        if (!(t in seen)) { seen[t] = 1; ts[nt++] = t }
    }
    for (j = 0; j < nt; j++) {
        t = ts[j]
        printf "aggregate (flop-weighted) threads=%d: fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s, ratio %.3f (target >= 1.8), lowest shape ratio %.3f (target >= 1.6)\n", t, fl[t] / tf[t], fl[t] / tb[t], tf[t] / tb[t], minr[t]
    }
}' "$OUT/results"
