#!/usr/bin/env bash
# Prepares Multi30k (Task 1, English-German) as plain text for tfm:
#
#   datasets/prepare_multi30k.sh [--tok] OUT_DIR [SRC_DIR]
#
# writes OUT_DIR/{train,valid,test}.{en,de}: UTF-8, one sentence per line,
# line i of X.en aligned with line i of X.de (train 29000, valid 1014 = the
# official "val" split, test 1000 = test_2016_flickr).
#
# Without --tok: the raw text (cased, untokenized), from data/task1/raw/.
# With --tok: the lowercased, punctuation-normalized, Moses-tokenized copies
# that papers score against (data/task1/tok/*.lc.norm.tok.*; in a local copy
# they sit in SRC_DIR/tok/, gzip-compressed). Their checksums are those of the
# decompressed text (the local copy is recompressed), pinned below.
#
# Where the data comes from, in this order:
#   1. SRC_DIR when given: a folder holding train.{de,en}.gz, val.{de,en}.gz
#      and test_2016_flickr.{de,en}.gz (and optionally SHA256SUMS).
#   2. the local copy ../shared/datasets/multi30k next to the repository
#      root (or next to the main git worktree, when run from another worktree).
#   3. a download of the same files from the dataset's public repository,
#      data/task1/raw/ of https://github.com/multi30k/dataset at a pinned
#      commit (needs curl or wget and internet). This path has not been
#      exercised on the development machine, which has no internet access.
# Checksums are verified: against SRC_DIR/SHA256SUMS when present, and for
# downloads against the SHA-256 sums written below (the same files). Line
# counts are checked. Everything is decompressed and checked in a temporary
# folder first; OUT_DIR's six files are replaced only when all checks pass.
#
# Never commit the corpus: it is for non-commercial research and education
# only (see the dataset's README); datasets/.gitignore ignores
# datasets/multi30k/.
set -euo pipefail

die() {
    echo "prepare_multi30k: $*" >&2
    exit 1
}

tok=0
if [ "${1:-}" = "--tok" ]; then
    tok=1
    shift
fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 [--tok] OUT_DIR [SRC_DIR]" >&2
    exit 2
fi
out_dir=$1
src_dir=${2:-}

repo_root=$(cd "$(dirname "$0")/.." && pwd)
commit=a3d2e0d26b56f3846f66a952536ffed4e401d05a
url_base="https://raw.githubusercontent.com/multi30k/dataset/$commit/data/task1/raw"

# The raw files we use, and the split name each becomes.
files=(train.en.gz train.de.gz val.en.gz val.de.gz test_2016_flickr.en.gz test_2016_flickr.de.gz)
declare -A split=([train]=train [val]=valid [test_2016_flickr]=test)
declare -A want_lines=([train]=29000 [valid]=1014 [test]=1000)
# SHA-256 of the gzip files at the pinned commit.
declare -A sha=(
    [train.en.gz]=d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f
    [train.de.gz]=726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6
    [val.en.gz]=14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28
    [val.de.gz]=f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a
    [test_2016_flickr.en.gz]=611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9
    [test_2016_flickr.de.gz]=9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8
)

# --tok: the tokenized files, and SHA-256 of their decompressed text (the same
# bytes as data/task1/tok/ at the pinned commit, which serves them uncompressed).
tok_files=(train.lc.norm.tok.en train.lc.norm.tok.de val.lc.norm.tok.en val.lc.norm.tok.de
    test_2016_flickr.lc.norm.tok.en test_2016_flickr.lc.norm.tok.de)
declare -A tok_sha=(
    [train.lc.norm.tok.en]=08925f8e0572bcd5a006702fc5fe20e2d77c6917d4eebd576fc20de6693c2119
    [train.lc.norm.tok.de]=cb5a23529b65ec2061f1dc446192a9c37382b63cc75f81a0be59d34894b3a505
    [val.lc.norm.tok.en]=46573ce391ae227f1c72f873392436a20ef18e0a6d518098cfbd70b77c8572ec
    [val.lc.norm.tok.de]=97232bd273eceb7207f689527386a97e4be2616b18ada47576bdaf96c8ae1f00
    [test_2016_flickr.lc.norm.tok.en]=5b7f32627cf99eced828311b955dae9800bb52bc8b91cf8b6526829e605b29d2
    [test_2016_flickr.lc.norm.tok.de]=c6a33d39d48f9f510de147651316cd9d918e09ad0219df734a2f16b6baccacc4
)

# The first local copy that CHECK accepts: ../shared/datasets/multi30k next
# to the repository root, or next to the main git worktree. Prints nothing
# when there is none.
find_local() {
    local c candidates=("$repo_root/../shared/datasets/multi30k") common
    if common=$(git -C "$repo_root" rev-parse --path-format=absolute --git-common-dir 2>/dev/null); then
        candidates+=("$(dirname "$common")/../shared/datasets/multi30k")
    fi
    for c in "${candidates[@]}"; do
        if "$1" "$c"; then
            (cd "$c" && pwd)
            return
        fi
    done
}

# fetch URL FILE, with curl or wget
fetch() {
    if command -v curl >/dev/null; then
        curl -fsSL --retry 3 -o "$2" "$1"
    elif command -v wget >/dev/null; then
        wget -q -O "$2" "$1"
    else
        die "no local copy and neither curl nor wget to download one"
    fi
}

has_all() {
    local f
    for f in "${files[@]}"; do [ -f "$1/$f" ] || return 1; done
}

# src_dir: the folder given (which HAS must accept: it holds EXPECTED), else
# the first local copy HAS accepts, else empty (then the files are fetched).
pick_source() {
    local has=$1 expected=$2
    if [ -n "$src_dir" ]; then
        [ -d "$src_dir" ] || die "$src_dir: no such folder"
        "$has" "$src_dir" || die "$src_dir: expected $expected"
    else
        src_dir=$(find_local "$has")
    fi
}

command -v gzip >/dev/null || die "gzip is needed"
command -v sha256sum >/dev/null || die "sha256sum is needed"

work=$(mktemp -d "${TMPDIR:-/tmp}/multi30k.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ "$tok" = 1 ]; then
    has_tok() {
        local f
        for f in "${tok_files[@]}"; do [ -f "$1/tok/$f.gz" ] || return 1; done
    }
    mkdir -p "$work/tok"
    pick_source has_tok "tok/ with ${tok_files[*]/%/.gz}"
    if [ -n "$src_dir" ]; then
        echo "prepare_multi30k: using the local copy in $src_dir/tok"
        for f in "${tok_files[@]}"; do
            gzip -dc "$src_dir/tok/$f.gz" >"$work/tok/$f" 2>/dev/null ||
                die "$src_dir/tok/$f.gz: cannot decompress (not gzip, or damaged)"
        done
        origin=$src_dir/tok suffix=.gz
    else
        tok_url="https://raw.githubusercontent.com/multi30k/dataset/$commit/data/task1/tok"
        echo "prepare_multi30k: no local copy found, downloading from $tok_url"
        for f in "${tok_files[@]}"; do
            fetch "$tok_url/$f" "$work/tok/$f" || die "download of $tok_url/$f failed (no internet?)"
        done
        origin=$tok_url suffix=
    fi
    for f in "${tok_files[@]}"; do
        got=$(sha256sum <"$work/tok/$f" | cut -d' ' -f1)
        [ "$got" = "${tok_sha[$f]}" ] ||
            die "$origin/$f$suffix: checksum mismatch (SHA-256 of the text $got, expected ${tok_sha[$f]})"
    done
    echo "prepare_multi30k: checksums of the tokenized text match"
    mkdir -p "$work/out"
    for f in "${tok_files[@]}"; do
        lang=${f##*.}
        name=${split[${f%%.*}]}
        mv "$work/tok/$f" "$work/out/$name.$lang"
    done
else
# The raw files.
pick_source has_all "${files[*]}"

if [ -n "$src_dir" ]; then
    echo "prepare_multi30k: using the local copy in $src_dir"
    if [ -f "$src_dir/SHA256SUMS" ]; then
        for f in "${files[@]}"; do
            grep -E "^[0-9a-f]{64}  $f\$" "$src_dir/SHA256SUMS" || die "$src_dir/SHA256SUMS has no line for $f"
        done >"$work/sums"
        (cd "$src_dir" && sha256sum --quiet -c "$work/sums") ||
            die "$src_dir: checksum mismatch (see above)"
        echo "prepare_multi30k: checksums match $src_dir/SHA256SUMS"
    else
        echo "prepare_multi30k: no SHA256SUMS in $src_dir, checksums not verified"
    fi
else
    echo "prepare_multi30k: no local copy found, downloading from $url_base"
    mkdir -p "$work/raw"
    for f in "${files[@]}"; do
        fetch "$url_base/$f" "$work/raw/$f" || die "download of $url_base/$f failed (no internet?)"
        echo "${sha[$f]}  $f" >>"$work/sums"
    done
    (cd "$work/raw" && sha256sum --quiet -c "$work/sums") || die "downloaded files have wrong checksums"
    src_dir=$work/raw
fi

mkdir -p "$work/out"
for f in "${files[@]}"; do
    base=${f%.gz}       # train.en
    lang=${base##*.}    # en
    name=${split[${base%.*}]}
    gzip -dc "$src_dir/$f" >"$work/out/$name.$lang" || die "$src_dir/$f: cannot decompress"
done
fi # raw
# Count lines as tfm reads them: a last line without a newline counts too
# (wc -l would miss it).
count_lines() { awk 'END { print NR }' "$1"; }
for name in train valid test; do
    en=$(count_lines "$work/out/$name.en")
    de=$(count_lines "$work/out/$name.de")
    [ "$en" -eq "$de" ] || die "$name: $en English lines but $de German lines"
    [ "$en" -eq "${want_lines[$name]}" ] || die "$name: $en lines, expected ${want_lines[$name]}"
    printf 'prepare_multi30k: %-5s %6d sentence pairs\n' "$name" "$en"
done

# Replace OUT_DIR's six files only when everything above succeeded.
mkdir -p "$out_dir"
for name in train valid test; do
    for lang in en de; do mv -f "$work/out/$name.$lang" "$out_dir/$name.$lang"; done
done
echo "prepare_multi30k: wrote $out_dir/{train,valid,test}.{en,de}"
