#!/usr/bin/env bash
# Runs each Check suite binary given on the command line, then prints one
# closing line "N passed, N failed" summed over all suites. Exit non-zero if
# any suite failed or crashed.
set -u
# Check's default per-test timeout is 4 s; a loaded machine (or the
# sanitizer build) can exceed it without anything being wrong.
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-900}
# Every arena allocation starts as NaN bytes: a kernel that reads memory it
# never wrote (say, a gradient it forgot to zero) fails here, not by luck.
export TFM_POISON_ARENA=${TFM_POISON_ARENA:-1}
# The same for the heap (glibc fills each malloc'd block with this byte's
# complement, and freed blocks with the byte).
export MALLOC_PERTURB_=${MALLOC_PERTURB_:-165}
total_pass=0 total_fail=0 crashed=0
for bin in "$@"; do
    name=$(basename "$bin")
    out=$("$bin" 2>&1)
    rc=$?
    printf '%s\n' "$out" | grep -vE '^[^:]*:[0-9]+:P:' 
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' | tail -n 1)
    if [ -z "$line" ]; then
        echo "suite $name: no Check summary (exit $rc)"
        crashed=$((crashed + 1))
        continue
    fi
    checks=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
    fails=$(sed -E 's/.*Failures: ([0-9]+).*/\1/' <<<"$line")
    errs=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
    bad=$((fails + errs))
    total_pass=$((total_pass + checks - bad))
    total_fail=$((total_fail + bad))
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        echo "suite $name: exit $rc"
        crashed=$((crashed + 1))
    fi
done
total_fail=$((total_fail + crashed))
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
