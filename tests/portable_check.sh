#!/usr/bin/env bash
# The kernels chosen at run time (src/kernels/dispatch.h), checked against
# the default -march=native build on this CPU:
#  - the portable build (make PORTABLE=1: x86-64-v2 code, kernels for
#    AVX-512, AVX2 and baseline CPUs) picks the best variant the CPU runs
#    (AVX-512 here) and trains bit-identically to the native build;
#  - with TFM_KERNELS=generic both builds run the same portable kernels and
#    train bit-identically to each other;
#  - every kernel variant this CPU runs passes the kernel tests.
# Bit-identical means the same checkpoint bytes after 60 steps of the copy
# task (10 with the slow portable kernels; same seed, same thread count).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-2}
make -s -j"$jobs" all
make -s -j"$jobs" PORTABLE=1 all build/portable/tests/test_gemm build/portable/tests/test_kernels \
    build/portable/tests/test_ops
native=build/tfm portable=build/portable/tfm
fail() { echo "portable_check: $*" >&2; exit 1; }

"$portable" --version
best=$("$portable" --version | sed -n 's/^kernels: \([a-z0-9]*\) .*/\1/p')
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
want=generic
if grep -qw avx2 <<<"$flags" && grep -qw fma <<<"$flags"; then want=avx2; fi
if grep -qw avx512f <<<"$flags" && grep -qw avx512bw <<<"$flags" && grep -qw avx512dq <<<"$flags" &&
    grep -qw avx512vl <<<"$flags"; then want=avx512; fi
[ "$best" = "$want" ] || fail "the portable build picked '$best' on a CPU with $want"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
train() { # binary, kernels ('' = default), directory, steps
    TFM_KERNELS=$2 "$1" train --task copy --steps "$4" --eval-n 20 --threads 2 --save "$3" >"$3.log" 2>&1 ||
        { cat "$3.log"; fail "$1 train failed"; }
}
same() { # two run directories: the same checkpoint bytes
    local a b
    a=$(ls "$1"/*.tfm | grep -v best | sort | tail -n 1)
    b="$2/$(basename "$a")"
    cmp -s "$a" "$b" || fail "$3: $a and $b differ"
    echo "$3: $(basename "$a") identical ($(cksum <"$a" | cut -d' ' -f1))"
}
train "$native" "" "$tmp/native" 60
train "$portable" "" "$tmp/portable" 60
same "$tmp/native" "$tmp/portable" "native build vs portable build ($best kernels)"
train "$native" generic "$tmp/native-generic" 10
train "$portable" generic "$tmp/portable-generic" 10
same "$tmp/native-generic" "$tmp/portable-generic" "native vs portable build, generic kernels"

for k in $("$portable" --version | sed -n 's/.*this CPU runs: \([^;]*\);.*/\1/p'); do
    echo "kernel tests with TFM_KERNELS=$k:"
    out=$(TFM_KERNELS=$k TFM_BIN=$PWD/$portable TFM_ROOT=$PWD bash tests/run_tests.sh build/portable/tests/test_gemm \
        build/portable/tests/test_kernels build/portable/tests/test_ops 2>&1) ||
        { printf '%s\n' "$out"; fail "kernel tests fail with TFM_KERNELS=$k"; }
    tail -n 1 <<<"$out"
done
echo "portable_check: ok"
