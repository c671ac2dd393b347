#!/usr/bin/env bash
# Builds CTranslate2 (https://github.com/OpenNMT/CTranslate2) for the CPU from
# a source tree you already have, for tests/interop/compare_marian.sh (CT2=...):
# the C++ library and its ct2-translator client. Fetches nothing: no git
# clone, no submodule update, no pip. Never a build dependency of tfm, and no
# CTranslate2 source is ever committed here.
#
#   tests/interop/build_ctranslate2.sh CT2_SRC [BUILD_DIR]
#
# CT2_SRC    a CTranslate2 tree whose submodules third_party/spdlog,
#            third_party/cpu_features and third_party/cxxopts are filled in
#            (the others, CUDA and ruy, are not used).
# BUILD_DIR  default: build/ctranslate2 (relative to the tfm checkout).
#
# What it does, and why:
#   - CPU only, OpenBLAS from Debian (apt-get install cmake g++
#     libopenblas-dev), the compiler's OpenMP (OPENMP_RUNTIME=COMP); no MKL
#     (not in Debian main), DNNL, ruy or CUDA; runtime CPU dispatch on (its
#     kernels are compiled for AVX, AVX2 and AVX-512 and chosen by cpuid);
#   - the Marian converter is CTranslate2's Python package used without its
#     compiled extension (which it allows), with Debian's python3-numpy and
#     python3-yaml: compare_marian.sh runs it from CT2_SRC/python;
#   - `nice -n 19`, JOBS parallel jobs (default 2).
# Prints the path of ct2-translator at the end.
#
# Status: built CTranslate2 v4.8.1 (0d8bcd36) with cpu_features 8a494eb,
# spdlog 76fb40d and cxxopts c74846a (the commits its .gitmodules pin) on
# 2026-11-29 (Debian 12, gcc 12, cmake; about 12 min on 2 cores), from trees
# made with `git archive`.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
src=$(cd "$1" && pwd)
out=${2:-build/ctranslate2}
jobs=${JOBS:-2}

me=build_ctranslate2
. "$(dirname "$0")/common.sh"
need_build_tools
[ -f "$src/CMakeLists.txt" ] && [ -d "$src/include/ctranslate2" ] || die "$src is not a CTranslate2 tree"
for sub in spdlog cpu_features cxxopts; do
    [ -f "$src/third_party/$sub/CMakeLists.txt" ] || die "$src/third_party/$sub is empty (fill the submodule)"
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$out"
nice -n 19 cmake -S "$src" -B "$out" -DCMAKE_BUILD_TYPE=Release \
    -DWITH_MKL=OFF -DWITH_DNNL=OFF -DWITH_OPENBLAS=ON -DWITH_RUY=OFF -DWITH_CUDA=OFF \
    -DOPENMP_RUNTIME=COMP -DENABLE_CPU_DISPATCH=ON -DBUILD_CLI=ON -DBUILD_TESTS=OFF \
    >"$out/cmake.log" 2>&1 || { tail -20 "$out/cmake.log" >&2; exit 1; }
nice -n 19 cmake --build "$out" -j "$jobs" >"$out/build.log" 2>&1 ||
    { grep -m5 -B2 -A5 'error' "$out/build.log" >&2 || tail -30 "$out/build.log" >&2; exit 1; }
bin="$out/cli/ct2-translator"
[ -x "$bin" ] || die "no $bin after the build"
echo "$bin"
