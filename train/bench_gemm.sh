#!/usr/bin/env bash
# tfm_gemm against OpenBLAS (AVX-512 kernels, OpenMP build) at the 12 GEMMs of
# a Transformer training step, as measured by ../shared/bench/sgemm_peak.c.
#
#   bash train/bench_gemm.sh            # 2 threads then 1 thread
#   THREADS=2 REPS=7 ROUNDS=3 bash train/bench_gemm.sh
#
# For a linear layer Y[M,N] = X[M,K] W[K,N] with M = 4096 tokens the step runs
#   fwd NN  C[M,N] = A[M,K] B[K,N]        -> tfm bench gemm --m M --n N --k K --trans nn
#   dX  NT  C[M,K] = A[M,N] B[K,N]^T      -> --m M --n K --k N --trans nt
#   dW  TN  C[K,N] = A[M,K]^T B[M,N]      -> --m K --n N --k M --trans tn
# (sgemm_peak's M/N/K keep the layer's meaning; ours are C's rows, C's
# columns and the summed dimension.) Every figure is the median of REPS
# samples of >= 0.2 s. OpenBLAS runs only when libopenblas-dev is installed
# (pkg-config openblas), in the tuned environment: CORETYPE autodetected
# (Cooperlake) and the OpenMP build of the library. With ROUNDS > 1 the two
# alternate (ours, OpenBLAS, ours, ...) and each cell is the median over the
# rounds, so that load from other processes hits both alike. RESULTS=file
# keeps the raw figures there and adds to what the file already holds, so
# that separate invocations (e.g. whenever the machine is idle) pool.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED_DIR=${SHARED_DIR:-$ROOT/../shared}
THREADS=${THREADS:-"2 1"}
REPS=${REPS:-5}
ROUNDS=${ROUNDS:-1}
TFM=${TFM:-$ROOT/build/tfm}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
RESULTS=${RESULTS:-$OUT/results}
touch "$RESULTS"

[ -x "$TFM" ] || make -C "$ROOT" -j2 build/tfm >/dev/null

SHAPES="4096:512:512 4096:2048:512 4096:512:2048 4096:8000:512"

have_blas=0
if pkg-config --exists openblas 2>/dev/null && [ -f "$SHARED_DIR/bench/sgemm_peak.c" ]; then
    mkdir -p "$ROOT/build"
    if [ ! -x "$ROOT/build/sgemm_peak" ] || [ "$SHARED_DIR/bench/sgemm_peak.c" -nt "$ROOT/build/sgemm_peak" ]; then
        # shellcheck disable=SC2046
        gcc -O2 -march=native -fopenmp "$SHARED_DIR/bench/sgemm_peak.c" -o "$ROOT/build/sgemm_peak" \
            $(pkg-config --cflags --libs openblas) -lm
    fi
    have_blas=1
else
    echo "# OpenBLAS comparison skipped (no pkg-config openblas or no $SHARED_DIR/bench/sgemm_peak.c)"
fi
BLAS_LIBDIR=/usr/lib/x86_64-linux-gnu/openblas-openmp
[ -d "$BLAS_LIBDIR" ] || echo "# note: $BLAS_LIBDIR missing (apt-get install libopenblas0-openmp); using the default OpenBLAS"

for t in $THREADS; do
    for round in $(seq "$ROUNDS"); do
        echo "# threads=$t round $round/$ROUNDS: tfm_gemm ($("$TFM" bench gemm --m 16 --n 16 --k 16 --reps 1 | sed -n 's/^kernel=//p'))"
        for s in $SHAPES; do
            IFS=: read -r M N K <<<"$s"
            for v in fwd_NN dX_NT dW_TN; do
                case $v in
                fwd_NN) args="--m $M --n $N --k $K --trans nn" ;;
                dX_NT) args="--m $M --n $K --k $N --trans nt" ;;
                dW_TN) args="--m $K --n $N --k $M --trans tn" ;;
                esac
                # shellcheck disable=SC2086
                g=$("$TFM" bench gemm $args --threads "$t" --reps "$REPS" | sed -n 's/^gflops=//p')
                echo "ours $v $M $N $K $t $g" >>"$RESULTS"
            done
        done
        if [ "$have_blas" = 1 ]; then
            echo "# threads=$t round $round/$ROUNDS: OpenBLAS"
            env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE LD_LIBRARY_PATH=$BLAS_LIBDIR \
                "$ROOT/build/sgemm_peak" -g -r "$REPS" -t "$t" >"$OUT/blas"
            grep -E '^RESULT openblas' "$OUT/blas" | head -1
            sed -n 's/^RESULT gemm variant=\([A-Za-z_]*\) *M=\([0-9]*\) *N=\([0-9]*\) *K=\([0-9]*\) *threads=\([0-9]*\) *gflops_median= *\([0-9.]*\).*/blas \1 \2 \3 \4 \5 \6/p' \
                "$OUT/blas" >>"$RESULTS"
        fi
    done
done

awk '
function median(list,    v, m, i, j, x) {
    m = split(list, v, " ")
    for (i = 2; i <= m; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
    return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
{ key = $2 " " $3 " " $4 " " $5 " " $6 }
$1 == "ours" { if (!(key in ours)) order[n++] = key; ours[key] = ours[key] " " $7 }
$1 == "blas" { blas[key] = blas[key] " " $7 }
END {
    printf "\n%-7s %5s %5s %5s %3s %10s %10s %7s\n", "gemm", "M", "N", "K", "thr", "ours", "openblas", "ratio"
    for (i = 0; i < n; i++) {
        k = order[i]; split(k, f, " ")
        flop = 2 * f[2] * f[3] * f[4]; t = f[5]; o = median(ours[k])
        fl[t] += flop; to[t] += flop / o
        if (k in blas) { bm = median(blas[k]); tb[t] += flop / bm; r = sprintf("%7.3f", o / bm); b = sprintf("%10.1f", bm) }
        else { r = sprintf("%7s", "-"); b = sprintf("%10s", "-") }
        printf "%-7s %5d %5d %5d %3d %10.1f %s %s\n", f[1], f[2], f[3], f[4], t, o, b, r
        if (!(t in seen)) { seen[t] = 1; ts[nt++] = t }
    }
    for (j = 0; j < nt; j++) {
        t = ts[j]
        if (tb[t] > 0)
            printf "aggregate (flop-weighted) threads=%d: ours %.1f GFLOP/s, openblas %.1f GFLOP/s, ratio %.3f\n", t, fl[t] / to[t], fl[t] / tb[t], (fl[t] / to[t]) / (fl[t] / tb[t])
        else
            printf "aggregate (flop-weighted) threads=%d: ours %.1f GFLOP/s\n", t, fl[t] / to[t]
    }
}' "$RESULTS"
