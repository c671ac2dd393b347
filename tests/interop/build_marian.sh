#!/usr/bin/env bash
# Builds marian-dev (https://github.com/marian-nmt/marian-dev) for the CPU
# from a source tree you already have, for tests/interop/compare_marian.sh.
# Fetches nothing: no git clone, no submodule update, no download. Never a
# build dependency of tfm, and no Marian source is ever committed here.
#
#   tests/interop/build_marian.sh MARIAN_SRC [INTGEMM_SRC] [BUILD_DIR]
#
# MARIAN_SRC   a marian-dev checkout (its submodules may be empty).
# INTGEMM_SRC  marian-nmt/intgemm, used when MARIAN_SRC/src/3rd_party/intgemm
#              is empty (the CPU build needs it; the script copies it there
#              only inside its own copy of the tree).
# BUILD_DIR    default: build/marian (relative to the tfm checkout).
#
# What it does, and why:
#   - copies MARIAN_SRC to BUILD_DIR/src (the given tree is left untouched);
#   - CPU only, OpenBLAS from Debian (apt-get install cmake g++ libopenblas-dev
#     libsqlite3-dev zlib1g-dev), no CUDA, MKL, FBGEMM, SentencePiece (tfm's
#     exports are segmented by `tfm bpe apply`, vocab.yml holds the pieces),
#     TCMalloc, Doxygen or server;
#   - compiler warnings are not errors: Marian adds -Werror to its targets
#     (ALL_WARNINGS) and intgemm builds with it, and gcc 12's false
#     -Wmaybe-uninitialized reports stop such a build; the flag is removed
#     from the copy's CMake files;
#   - a snapshot without SQLiteCpp's bundled sqlite3.c (the amalgamation is
#     large and some mirrors leave it out) uses Debian's libsqlite3: the copy
#     gets an empty sqlite3.c, Debian's sqlite3.h, and -lsqlite3 at the end
#     of the link line (this SQLiteCpp has no SQLITECPP_INTERNAL_SQLITE);
#   - a tree without .git gets a one-commit repository in the copy (Marian's
#     CMake files run git for the version header);
#   - `nice -n 19`, JOBS parallel jobs (default 2): the build takes long.
# Prints the path of marian-decoder at the end.
#
# Status: built marian-dev c9f287db (v1.12.43) with marian-nmt/intgemm
# e4b82c1 on 2026-11-29 (Debian 12, gcc 12, cmake; about 45 min on 2 cores,
# partly beside other work), from trees made with `git archive` of the two
# repositories, which lacked .git and the bundled sqlite3.c.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 3 ]; then
    sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
src=$(cd "$1" && pwd)
intgemm=${2:-}
out=${3:-build/marian}
jobs=${JOBS:-2}

me=build_marian
. "$(dirname "$0")/common.sh"
need_build_tools
[ -f "$src/CMakeLists.txt" ] && [ -d "$src/src/3rd_party" ] || die "$src is not a marian-dev tree"

mkdir -p "$out"
out=$(cd "$out" && pwd)
echo "build_marian: copying $src to $out/src"
rm -rf "$out/src"
cp -a "$src" "$out/src"
tree="$out/src"

# intgemm: the CPU build compiles it from src/3rd_party/intgemm
if [ -z "$(ls -A "$tree/src/3rd_party/intgemm" 2>/dev/null)" ]; then
    [ -n "$intgemm" ] && [ -f "$intgemm/CMakeLists.txt" ] ||
        die "src/3rd_party/intgemm is empty: give INTGEMM_SRC"
    rm -rf "$tree/src/3rd_party/intgemm"
    cp -a "$intgemm" "$tree/src/3rd_party/intgemm"
fi

# marian's CMakeLists.txt takes its version from VERSION and git, and
# src/CMakeLists.txt reads .git/logs/HEAD and runs `git log -1` for
# common/git_revision.h: a tree without .git (an archive, a snapshot) gets a
# one-commit repository of its own in the copy
[ -f "$tree/VERSION" ] || echo "v1.12.0" >"$tree/VERSION"
if [ ! -e "$tree/.git" ]; then
    need git "apt-get install git"
    echo "build_marian: no .git in $src: committing the copy as one snapshot"
    git -C "$tree" init -q
    git -C "$tree" add -A
    git -C "$tree" -c user.name=build_marian -c user.email=build_marian@localhost \
        commit -q -m "marian-dev snapshot for tests/interop/build_marian.sh"
fi

# warnings are not errors
find "$tree" -name CMakeLists.txt -o -name '*.cmake' | while read -r f; do
    sed -i 's/-Werror;//g; s/-Werror\b//g' "$f"
done

sqlite_opt=()
if [ ! -s "$tree/src/3rd_party/SQLiteCpp/sqlite3/sqlite3.c" ]; then
    echo "build_marian: no bundled sqlite3.c: using Debian's libsqlite3"
    [ -f /usr/include/sqlite3.h ] ||
        die "/usr/include/sqlite3.h not found (apt-get install libsqlite3-dev)"
    echo "/* empty: tests/interop/build_marian.sh links Debian's libsqlite3 */" \
        >"$tree/src/3rd_party/SQLiteCpp/sqlite3/sqlite3.c"
    cp /usr/include/sqlite3.h "$tree/src/3rd_party/SQLiteCpp/sqlite3/sqlite3.h"
    sqlite_opt=(-DCMAKE_CXX_STANDARD_LIBRARIES=-lsqlite3)
fi

mkdir -p "$out/build"
cd "$out/build"
nice -n 19 cmake "$tree" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCOMPILE_CPU=ON -DCOMPILE_CUDA=OFF \
    -DUSE_MKL=OFF -DUSE_FBGEMM=OFF -DUSE_SENTENCEPIECE=OFF -DUSE_TCMALLOC=OFF \
    -DUSE_DOXYGEN=OFF -DCOMPILE_SERVER=OFF -DCOMPILE_TESTS=OFF -DCOMPILE_EXAMPLES=OFF \
    -DUSE_NCCL=OFF -DUSE_MPI=OFF -DUSE_STATIC_LIBS=OFF \
    -DBUILD_ARCH=native "${sqlite_opt[@]}"
nice -n 19 make -j"$jobs" marian_decoder
echo "$out/build/marian-decoder"
