#!/usr/bin/env bash
# Prerequisites of `make run` (a C compiler with OpenMP) and `make test` (also
# the Check library and pkg-config; optionally PyTorch, numpy and xmllint for
# the cross-checks). Missing ones are installed with apt-get when running as
# root on Debian/Ubuntu (unless TFM_SETUP_NO_INSTALL=1); otherwise one line on
# stdout names the command to run, and the exit status is 1 (the Makefile
# stops with that line). Progress and notes go to stderr.
#   usage: tests/setup.sh run|test [CC]
set -u
goal=${1:-test}
cc=${2:-gcc}

need=()
command -v "$cc" >/dev/null 2>&1 || need+=(gcc libc6-dev)
if [ "$goal" = test ]; then
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    pkg-config --exists check 2>/dev/null || need+=(check)
fi
optional=()
if [ "$goal" = test ]; then
    /usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1 || optional+=(python3-torch python3-numpy)
    /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || optional+=(python3-yaml)
    command -v xmllint >/dev/null 2>&1 || optional+=(libxml2-utils)
fi
[ ${#need[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && exit 0

debian=0
[ -r /etc/debian_version ] && command -v apt-get >/dev/null 2>&1 && debian=1
can_install=0
[ $debian = 1 ] && [ "$(id -u)" = 0 ] && [ "${TFM_SETUP_NO_INSTALL:-0}" != 1 ] && can_install=1

apt_install() {
    echo "setup: apt-get install -y $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq "$@"; } >/dev/null
}

if [ ${#need[@]} -gt 0 ]; then
    if [ $can_install = 1 ] && apt_install "${need[@]}" && pkg-config --exists check 2>/dev/null; then
        :
    else
        sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo "
        if [ $debian = 1 ]; then
            echo "tfm: make $goal needs ${need[*]}: run '${sudo}apt-get install -y ${need[*]}' and try again"
        else
            echo "tfm: make $goal needs a C compiler with OpenMP, the Check library and pkg-config (e.g. 'dnf install gcc check-devel pkgconf' or 'brew install check pkg-config')"
        fi
        exit 1
    fi
fi
if [ ${#optional[@]} -gt 0 ]; then
    if [ $can_install = 1 ] && apt_install "${optional[@]}"; then
        :
    else
        # optional: the cross-checks that need them report themselves as skipped
        echo "setup: optional ${optional[*]} not installed (the cross-checks that use them will be skipped)" >&2
    fi
fi
exit 0
