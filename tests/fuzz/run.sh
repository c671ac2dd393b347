#!/usr/bin/env bash
# Builds and runs every libFuzzer target tests/fuzz/fuzz_<name>.c for SECONDS
# seconds each, one after another (each is single-threaded).
#
#   bash tests/fuzz/run.sh [SECONDS] [name ...]     (default 60 s, all targets)
#   bash tests/fuzz/run.sh 600 vocab & bash tests/fuzz/run.sh 600 corpus &   (two at once is fine)
#
# Each target defines LLVMFuzzerTestOneInput and is linked against every
# library source src/*/*.c (the MPI transport left out, as the library leaves it
# out), built with clang -fsanitize=fuzzer,address,undefined.
# Its seed corpus tests/fuzz/corpus_<name>/ (if present) is copied into a
# scratch directory under build/fuzz, so the repository is never modified;
# tests/fuzz/<name>.dict is passed as a dictionary when present. Crash inputs
# land in build/fuzz/<name>/crash-*. Prints executions per target and exits
# non-zero if any target failed to build or found a crash.
set -u
cd "$(dirname "$0")/../.."

seconds=${1:-60}
shift || true
only=("$@")

if ! command -v clang >/dev/null; then
    echo "fuzz: clang not found, installing it"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq clang >/dev/null || {
        echo "fuzz: could not install clang"
        exit 2
    }
fi

out=build/fuzz
mkdir -p "$out/obj"
# Several runners may share build/fuzz (e.g. two targets in parallel, one
# per core): the probe and the library build below happen under a lock.
if command -v flock >/dev/null; then
    exec 9>"$out/.build.lock"
    flock 9
fi
flags=(-g -O1 -fsanitize=address,undefined -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -Iinclude)
# OpenMP when clang has it here (libomp); otherwise the pragmas are ignored
# and the library's omp_* calls are compiled out by #ifdef _OPENMP.
omp=()
probe=$out/omp_probe
printf '#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n' >"$probe.c"
if clang -fopenmp "$probe.c" -o "$probe" 2>/dev/null; then omp=(-fopenmp); fi
echo "fuzz: clang $(clang -dumpversion) ${omp[*]:-(no OpenMP)}"

# The library once, instrumented for coverage but without libFuzzer's main.
lib_objs=()
build_failed=0
for src in src/*/*.c; do
    # the MPI transport is the `make MPI=1` build's (it needs mpi.h), not the library's
    [ "$src" = src/train/dist_mpi.c ] && continue
    obj=$out/obj/${src//\//_}
    obj=${obj%.c}.o
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find include -name '*.h' -newer "$obj" 2>/dev/null | head -n 1)" ]; then
        clang "${flags[@]}" "${omp[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj" || build_failed=1
    fi
    lib_objs+=("$obj")
done
if [ "$build_failed" -ne 0 ]; then
    echo "fuzz: library build failed"
    exit 2
fi
command -v flock >/dev/null && flock -u 9

status=0
summary=()
for target in tests/fuzz/fuzz_*.c; do
    [ -e "$target" ] || continue
    name=$(basename "$target" .c)
    name=${name#fuzz_}
    if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " == *" $name "* ]]; then continue; fi
    bin=$out/fuzz_$name
    if ! clang "${flags[@]}" "${omp[@]}" -fsanitize=fuzzer "$target" "${lib_objs[@]}" -lm -o "$bin"; then
        summary+=("$name: BUILD FAILED")
        status=1
        continue
    fi
    work=$out/$name
    rm -rf "$work/corpus"
    mkdir -p "$work/corpus" "$work/previous"
    # Findings of earlier runs move aside so only this run's count.
    for old in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
        [ -e "$old" ] && mv "$old" "$work/previous/"
    done
    if [ -d "tests/fuzz/corpus_$name" ]; then cp -r "tests/fuzz/corpus_$name/." "$work/corpus/"; fi
    dict=()
    if [ -f "tests/fuzz/$name.dict" ]; then dict=(-dict="tests/fuzz/$name.dict"); fi
    echo "fuzz: running $name for ${seconds}s (seeds: $(ls "$work/corpus" | wc -l))"
    # halt_on_error makes UBSan findings crashes instead of log lines.
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
        "$bin" "$work/corpus" "${dict[@]}" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$work/" >"$work/log.txt" 2>&1
    rc=$?
    execs=$(grep -E '^stat::number_of_executed_units:' "$work/log.txt" | tail -n 1 | awk '{print $2}')
    cov=$(grep -E '#[0-9]+.*(cov|DONE)' "$work/log.txt" | tail -n 1 | sed -E 's/.*cov: ([0-9]+).*/\1/')
    crashes=$(ls "$work" | grep -cE '^(crash|leak|timeout|oom)-' || true)
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        summary+=("$name: FAILED (exit $rc) after ${execs:-?} executions; see $work/log.txt and $work/crash-*")
        grep -E 'ERROR|SUMMARY|runtime error' "$work/log.txt" | head -n 5
        status=1
    else
        summary+=("$name: ok, ${execs:-?} executions in ${seconds}s, coverage ${cov:-?} edges, corpus $(ls "$work/corpus" | wc -l) inputs")
    fi
done

echo "fuzz summary:"
for line in "${summary[@]}"; do echo "  $line"; done
[ ${#summary[@]} -gt 0 ] || echo "  (no targets)"
exit $status
