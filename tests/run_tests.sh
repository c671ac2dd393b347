#!/usr/bin/env bash
# Runs each Check suite binary given on the command line, then prints one
# closing line "N passed, N failed, N skipped" summed over all suites, after
# the reason for each skip. Exit non-zero if any suite failed or crashed.
#   tests/run_tests.sh --self-test BIN   checks this script on BIN
#                                        (tests/runner_selftest.c)
set -u
# Check's per-test timeout: 4 s unless CK_DEFAULT_TIMEOUT, but a suite's
# tcase_set_timeout replaces both, so only the multiplier (which scales every
# timeout) gives a loaded machine or the sanitizer build room everywhere.
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-60}
export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-5}
# Every arena allocation starts as NaN bytes: a kernel that reads memory it
# never wrote (say, a gradient it forgot to zero) fails here, not by luck.
export TFM_POISON_ARENA=${TFM_POISON_ARENA:-1}
# The same for the heap (glibc fills each malloc'd block with this byte's
# complement, and freed blocks with the byte).
export MALLOC_PERTURB_=${MALLOC_PERTURB_:-165}

if [ "${1:-}" = "--self-test" ]; then
    # The selftest suite has one test that skips, and one that runs 1.5 s
    # under a 1 s tcase timeout (it passes only if the multiplier applies).
    out=$(bash "$0" "$2" 2>&1)
    last=$(printf '%s\n' "$out" | tail -n 1)
    if [ "$last" != "1 passed, 0 failed, 1 skipped" ] ||
        ! grep -q '^  runner_selftest: skips_with_reason: a reason$' <<<"$out"; then
        printf '%s\n' "$out"
        echo "run_tests.sh self-test: expected '1 passed, 0 failed, 1 skipped' and the reason"
        exit 1
    fi
    # A fresh machine: without Check, setup gives one line naming the command.
    empty=$(mktemp -d)
    out=$(PKG_CONFIG_LIBDIR=$empty TFM_SETUP_NO_INSTALL=1 bash "$(dirname "$0")/setup.sh" test 2>&1)
    rc=$?
    rmdir "$empty"
    if [ $rc -eq 0 ] || [ "$(printf '%s\n' "$out" | wc -l)" -ne 1 ] ||
        ! grep -q 'apt-get install -y .*check' <<<"$out"; then
        printf '%s\n' "$out"
        echo "run_tests.sh self-test: setup.sh without Check should fail with one line (exit $rc)"
        exit 1
    fi
    exit 0
fi

total_pass=0 total_fail=0 total_skip=0 crashed=0 skips=""
for bin in "$@"; do
    name=$(basename "$bin")
    out=$("$bin" 2>&1)
    rc=$?
    printf '%s\n' "$out" | grep -vE '^[^:]*:[0-9]+:P:|^SKIP: '
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' | tail -n 1)
    if [ -z "$line" ]; then
        echo "suite $name: no Check summary (exit $rc)"
        crashed=$((crashed + 1))
        continue
    fi
    checks=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
    fails=$(sed -E 's/.*Failures: ([0-9]+).*/\1/' <<<"$line")
    errs=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
    # tfm_test_skip prints "SKIP: test: reason" and returns: Check counts
    # that test as passed, we count it as skipped
    suite_skips=$(printf '%s\n' "$out" | sed -n "s/^SKIP: /  $name: /p")
    nskip=0
    [ -n "$suite_skips" ] && nskip=$(printf '%s\n' "$suite_skips" | wc -l)
    bad=$((fails + errs))
    total_pass=$((total_pass + checks - bad - nskip))
    total_fail=$((total_fail + bad))
    total_skip=$((total_skip + nskip))
    [ -n "$suite_skips" ] && skips="$skips$suite_skips"$'\n'
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        echo "suite $name: exit $rc"
        crashed=$((crashed + 1))
    fi
done
total_fail=$((total_fail + crashed))
if [ "$total_skip" -gt 0 ]; then
    echo "skipped:"
    printf '%s' "$skips"
fi
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ]
