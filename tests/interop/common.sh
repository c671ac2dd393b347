# Sourced by the build scripts in tests/interop: one-line errors and the
# prerequisites they share. Set `me` (the script's name) before sourcing.

die() { echo "$me: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 not found ($2)"; } # need COMMAND HINT

# 0 when any of the paths (globs expanded by the caller) exists
any_exists() {
    local f
    for f in "$@"; do [ -e "$f" ] && return 0; done
    return 1
}

# The compiler, cmake, and Debian's OpenBLAS (library and cblas.h).
need_build_tools() {
    need cmake "apt-get install cmake"
    need g++ "apt-get install g++"
    any_exists /usr/lib/*/libopenblas* /usr/lib/libopenblas* ||
        die "OpenBLAS not found (apt-get install libopenblas-dev)"
    any_exists /usr/include/cblas.h /usr/include/*/cblas.h ||
        die "cblas.h not found (apt-get install libopenblas-dev)"
}
