#!/usr/bin/env bash
# make check-layers: fails on any #include in src/ or include/tfm/ that runs up
# the layer order of ../shared/STYLE.md (bottom up):
#   util core kernels ops nn optim data io decode eval train
# A file in src/<layer>/ may include headers of its own layer and the layers
# below; a public header include/tfm/X.h has the layer given in the table
# below (the layer that implements it). Public headers never include private
# ones (src/). train/ (the program), tests/ and examples/ may include anything
# public and are not checked.
#
# usage: tests/check_layers.sh [ROOT]   (ROOT defaults to the repository root)
# Prints one line per violation, "FILE:LINE: ..." with the offending include,
# and exits 1 if there is any.
set -u
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || { echo "check_layers: cannot enter $root" >&2; exit 2; }

layers=(util core kernels ops nn optim data io decode eval train)
order="${layers[*]}"
order=${order// / < }

# public header -> layer
declare -A header_layer=(
    [base.h]=util
    [tensor.h]=core
    [kernels.h]=kernels
    [ops.h]=ops
    [nn.h]=nn
    [optim.h]=optim
    [data.h]=data [text.h]=data [toy.h]=data
    [atomic_file.h]=io [average.h]=io [checkpoint.h]=io [config.h]=io [export.h]=io [json.h]=io
    [safetensors.h]=io
    [decode.h]=decode
    [eval.h]=eval [svg.h]=eval
    [train.h]=train [tfm.h]=train
)

declare -A rank # layer -> index in the order
for i in "${!layers[@]}"; do rank[${layers[$i]}]=$i; done

# Sets $norm to the path with a/b/../c made a/c (relative to the root).
normpath() {
    local IFS=/ part out=()
    for part in $1; do
        case $part in
        '' | .) ;;
        ..) [ ${#out[@]} -gt 0 ] && unset 'out[${#out[@]}-1]' ;;
        *) out+=("$part") ;;
        esac
    done
    norm="${out[*]}"
}

# Sets $layer to the layer of a file given by its path relative to the root,
# or $layer_err when it has none.
layer_of() {
    local path=$1
    layer=
    layer_err=
    case $path in
    include/tfm/*)
        local h=${path#include/tfm/}
        if [ -n "${header_layer[$h]+x}" ]; then
            layer=${header_layer[$h]}
        else
            layer_err="public header $path has no layer: add it to the table in tests/check_layers.sh"
        fi
        ;;
    src/*/*)
        local d=${path#src/}
        d=${d%%/*}
        if [ -n "${rank[$d]+x}" ]; then
            layer=$d
        else
            layer_err="src/$d/ is not a layer of STYLE.md ($order)"
        fi
        ;;
    *) layer_err="$path is outside src/ and include/tfm/" ;;
    esac
}

bad=0
report() {
    echo "$1"
    bad=1
}

files=$( (find src -type f \( -name '*.c' -o -name '*.h' \) 2>/dev/null
    find include/tfm -type f -name '*.h' 2>/dev/null) | LC_ALL=C sort)

# Every file needs a layer (empty files too, which awk below never sees).
for file in $files; do
    layer_of "$file"
    [ -n "$layer_err" ] && report "$file:1: $layer_err"
done

# Sets $from/$from_rank/$dir for the file being read; $from is "" when the
# file has no layer (reported above).
start_file() {
    file=$1
    layer_of "$file"
    if [ -n "$layer_err" ]; then
        from=
        return
    fi
    from=$layer
    from_rank=${rank[$from]}
    dir=${file%/*}
}

check_include() { # lineno target
    local lineno=$1 target=$2 resolved
    case $target in
    '<'*)
        target=${target#<}
        target=${target%>}
        resolved=include/$target
        ;;
    *)
        target=${target#\"}
        target=${target%\"}
        if [ -f "$dir/$target" ]; then
            normpath "$dir/$target"
            resolved=$norm
        elif [ -f "include/$target" ]; then
            resolved=include/$target
        else
            report "$file:$lineno: #include \"$target\" does not resolve (looked in $dir/ and include/)"
            return
        fi
        ;;
    esac
    case $file:$resolved in
    include/*:src/*)
        report "$file:$lineno: #include \"$target\": a public header includes a private one ($resolved)"
        return
        ;;
    esac
    layer_of "$resolved"
    if [ -n "$layer_err" ]; then
        report "$file:$lineno: #include \"$target\": $layer_err"
        return
    fi
    if [ "${rank[$layer]}" -gt "$from_rank" ]; then
        report "$file:$lineno: #include \"$target\" ($layer) from $from runs up the layer order ($order)"
    fi
}

# One awk over every file: "F<TAB>file" at each file's start, then
# "I<TAB>lineno<TAB>target" for every #include "..." and #include <tfm/...>.
file=
while IFS=$'\t' read -r kind a b; do
    if [ "$kind" = F ]; then
        start_file "$a"
    elif [ -n "$from" ]; then
        check_include "$a" "$b"
    fi
done < <(awk '
    FNR == 1 { print "F\t" FILENAME }
    /^[ \t]*#[ \t]*include[ \t]*"/ {
        match($0, /"[^"]*"/); print "I\t" FNR "\t" substr($0, RSTART, RLENGTH); next }
    /^[ \t]*#[ \t]*include[ \t]*<tfm\// {
        match($0, /<[^>]*>/); print "I\t" FNR "\t" substr($0, RSTART, RLENGTH) }' $files /dev/null)

if [ "$bad" -ne 0 ]; then
    echo "check-layers: FAILED (layer order: $order)"
    exit 1
fi
echo "check-layers: ok ($(echo "$files" | wc -w) files; $order)"
