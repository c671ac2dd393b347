#!/usr/bin/env bash
# make check-install: installs into a temporary DESTDIR and checks what a C
# user gets: the files, the soname, only the public tfm_* symbols exported,
# pkg-config building and running a program (shared and static), the man
# page, the bash completion, and make uninstall removing everything.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
make -s install DESTDIR="$dest" PREFIX=/usr >/dev/null
fail() { echo "check-install: $*" >&2; exit 1; }
lib=$dest/usr/lib
major=$(sed -n 's/^#define TFM_VERSION_MAJOR \([0-9]*\)/\1/p' include/tfm/base.h)
minor=$(sed -n 's/^#define TFM_VERSION_MINOR \([0-9]*\)/\1/p' include/tfm/base.h)
so=$lib/libtfm.so.$major.$minor
for f in usr/bin/tfm usr/lib/libtfm.a usr/lib/libtfm.so.$major.$minor usr/lib/libtfm.so.$major \
    usr/lib/libtfm.so usr/include/tfm/base.h usr/lib/pkgconfig/tfm.pc usr/share/man/man1/tfm.1 \
    usr/share/bash-completion/completions/tfm; do
    [ -e "$dest/$f" ] || fail "missing $f"
done
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libtfm.so.$major" ] || fail "soname '$soname'"
# exported: only tfm_* names that a public header declares
exported=$(nm -D --defined-only "$so" | awk '$2 ~ /[TDBRV]/ {print $3}' | sort -u)
bad=$(grep -v '^tfm_' <<<"$exported" || true)
[ -z "$bad" ] || fail "non-tfm_ symbols exported: $(echo $bad | head -c 300)"
for s in $exported; do grep -qw "$s" include/tfm/*.h || fail "$s exported but not in a public header"; done
n_exported=$(wc -l <<<"$exported")
[ "$n_exported" -gt 100 ] || fail "only $n_exported symbols exported"

# a program using the public API, through pkg-config, against the staged tree
export PKG_CONFIG_PATH=$lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
cat >"$dest/prog.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <tfm/base.h>
#include <tfm/kernels.h>
int main(void) {
    float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8}, c[4];
    tfm_gemm(0, 0, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
    if (c[0] != 19 || c[3] != 50) return 1;
    printf("%s %s\n", tfm_version(), strcmp(tfm_version(), TFM_VERSION) ? "header-differs" : "ok");
    return 0;
}
C
cc=${CC:-gcc}
$cc -std=c11 -o "$dest/prog" "$dest/prog.c" $(pkg-config --cflags --libs tfm)
out=$(LD_LIBRARY_PATH=$lib "$dest/prog")
# (whole outputs into variables first: grep -q stopping early would make the
# writer die of SIGPIPE, a failure under pipefail)
deps=$(LD_LIBRARY_PATH=$lib ldd "$dest/prog")
grep -q "libtfm.so.$major => $lib/" <<<"$deps" || fail "prog not linked to the staged libtfm.so: $deps"
# (libgomp.a warns that dlopen in a static program needs the same glibc)
log=$($cc -std=c11 -o "$dest/prog_static" "$dest/prog.c" $(pkg-config --static --cflags --libs tfm) \
    -static 2>&1) || fail "static link: $log"
out_static=$("$dest/prog_static")
version=$("$dest/usr/bin/tfm" --version | head -n 1)
[ "$out" = "$(sed 's/^tfm //' <<<"$version") ok" ] || fail "library says '$out', tfm --version '$version'"
[ "$out_static" = "$out" ] || fail "static program says '$out_static'"
[ "$(pkg-config --modversion tfm)" = "${out% ok}" ] || fail "tfm.pc version differs"

# C++: every public header, each with its extern "C" block, in one program
cxx=${CXX:-g++}
if command -v "$cxx" >/dev/null; then
    { for h in include/tfm/*.h; do echo "#include <tfm/${h##*/}>"; done
      echo '#include <cstdio>'
      echo 'int main() { tfm_set_error("c++ %d", 1); std::printf("%s %s\n", tfm_version(), tfm_last_error()); return 0; }'
    } >"$dest/prog.cpp"
    $cxx -std=c++11 -Wall -Wextra -pedantic -Werror -o "$dest/prog_cxx" "$dest/prog.cpp" \
        $(pkg-config --cflags --libs tfm) || fail "a C++ program does not build with the headers"
    out_cxx=$(LD_LIBRARY_PATH=$lib "$dest/prog_cxx")
    [ "$out_cxx" = "${out% ok} c++ 1" ] || fail "the C++ program says '$out_cxx'"
else
    echo "check-install: no C++ compiler ($cxx): the headers' C++ use is not checked"
fi

# man page and completion
man -l "$dest/usr/share/man/man1/tfm.1" 2>&1 >/dev/null | grep . && fail "man -l warns" || true
page=$(MANWIDTH=80 man -l "$dest/usr/share/man/man1/tfm.1" 2>/dev/null)
grep -q 'TFM TRAIN' <<<"$page" || fail "man -l"
got=$(PATH=$dest/usr/bin:$PATH bash -c "source $dest/usr/share/bash-completion/completions/tfm
    COMP_WORDS=(tfm train --ste); COMP_CWORD=2; _tfm; echo \${COMPREPLY[*]}
    COMP_WORDS=(tfm tr); COMP_CWORD=1; _tfm; echo \${COMPREPLY[*]}
    COMP_WORDS=(tfm bpe l); COMP_CWORD=2; _tfm; echo \${COMPREPLY[*]}")
[ "$got" = $'--steps\ntrain translate\nlearn' ] || fail "completion gave: $got"

make -s uninstall DESTDIR="$dest" PREFIX=/usr >/dev/null
left=$(cd "$dest" && find usr -type f -o -type l)
[ -z "$left" ] || fail "left after uninstall: $left"
echo "check-install: ok ($n_exported symbols exported, soname $soname, $version)"
