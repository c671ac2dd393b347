#!/usr/bin/env bash
# Kill a real training run with SIGKILL at KILLS random moments, resume it
# each time with --resume, and check that every checkpoint it wrote, the last
# one included, is byte-identical to the same step of an uninterrupted run.
#
#   bash tests/kill_resume.sh [KILLS] [SEED]      (default 20 kills, random seed)
#
# Environment: TFM_BIN (default build/tfm), STEPS (default 300), WORK (scratch
# directory, default a fresh one under /tmp; removed on success).
#
# The toy copy task with a small model and --threads 1: the data of a step
# depends only on (seed, step), dropout on (seed, step, op), and a checkpoint
# holds the parameters, both Adam moments and the counters, so a resumed run
# must reproduce the same bytes (the metadata is equal too: same keys, same
# values). Whole checkpoint files are compared with cmp.
#
# Kill delays are uniform in [0, T/16] where T is the measured length of the
# uninterrupted run, so the 20 kills spread over the run. Every launch passes
# --resume, as a job scheduler restarting a preempted job does: one killed
# before its first checkpoint (or during its write) starts again from step 0.
# The tfm processes run under nice -n 19.
set -u
cd "$(dirname "$0")/.."

kills=${1:-20}
seed=${2:-$(( $(date +%s) % 100000 ))}
steps=${STEPS:-300}
bin=${TFM_BIN:-build/tfm}
[ -x "$bin" ] || { echo "kill_resume: $bin not built (make)"; exit 2; }
work=${WORK:-$(mktemp -d /tmp/tfm-kill-resume-XXXXXX)}
mkdir -p "$work"
RANDOM=$seed

args=(train --task copy --vocab 12 --min-len 2 --max-len 8 --d-model 32 --heads 4 --d-ff 96 --layers 2
      --batch 32 --warmup 50 --dropout 0.1 --threads 1 --steps "$steps" --save-every 5 --keep 1000
      --eval-n 1 --quiet)

now_ms() { date +%s%3N; }

echo "kill_resume: $kills kills, seed $seed, $steps steps, scratch $work"
t0=$(now_ms)
if ! nice -n 19 "$bin" "${args[@]}" --save "$work/ref" >"$work/ref.out" 2>&1; then
    echo "kill_resume: the uninterrupted run failed:"; cat "$work/ref.out"; exit 1
fi
run_ms=$(( $(now_ms) - t0 ))
max_delay=$(( run_ms / 16 ))
[ "$max_delay" -ge 20 ] || max_delay=20
echo "kill_resume: uninterrupted run took ${run_ms} ms; kill delays up to ${max_delay} ms"

newest() { # newest complete checkpoint step in $1, or -1
    local best=-1 f s
    for f in "$1"/checkpoint-*.tfm; do
        [ -e "$f" ] || continue
        s=${f##*/checkpoint-}; s=${s%.tfm}; s=$((10#$s))
        [ "$s" -gt "$best" ] && best=$s
    done
    echo "$best"
}

compared=0 differ=0 mid_write=0 resumes=0
# Every checkpoint of a killed chain against the same step of the reference.
check_chain() {
    local dir=$1 f name
    for f in "$dir"/checkpoint-*.tfm; do
        [ -e "$f" ] || continue
        name=${f##*/}
        compared=$((compared + 1))
        if ! cmp -s "$f" "$work/ref/$name"; then
            differ=$((differ + 1))
            echo "DIFFERS: $dir/$name ($(cmp "$f" "$work/ref/$name" 2>&1 | head -n 1))"
        fi
    done
    mid_write=$((mid_write + $(grep -o 'removed [0-9]* temporary' "$dir/train.log" | awk '{s += $2} END {print s + 0}')))
    resumes=$((resumes + $(grep -c '^resumed from' "$dir/train.log" || true)))
}

run=$work/killed
landed=0 restarts=0 finished_early=0
while [ "$landed" -lt "$kills" ]; do
    if [ "$(newest "$run")" -lt 0 ] && [ -d "$run" ]; then
        restarts=$((restarts + 1)) # killed before its first checkpoint: starts from step 0
    fi
    nice -n 19 "$bin" "${args[@]}" --save "$run" --resume >>"$work/killed.out" 2>&1 &
    pid=$!
    delay=$(( (RANDOM * 32768 + RANDOM) % (max_delay + 1) ))
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    if kill -KILL "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null
        landed=$((landed + 1))
        printf 'kill %2d after %4d ms: newest checkpoint step %s\n' "$landed" "$delay" "$(newest "$run")"
    else
        wait "$pid"; rc=$?
        if [ "$rc" -ne 0 ]; then echo "kill_resume: a resumed run failed (exit $rc):"; tail -n 5 "$work/killed.out"; exit 1; fi
        # the run finished before this kill (the machine got faster): check
        # this chain, then start another one with shorter delays so every
        # one of the kills lands in a live run
        finished_early=$((finished_early + 1))
        [ "$finished_early" -le 5 ] || { echo "kill_resume: the run keeps finishing before the kill"; exit 1; }
        check_chain "$run"
        mv "$run" "$run.$finished_early"
        max_delay=$(( max_delay / 2 > 20 ? max_delay / 2 : 20 ))
        echo "kill_resume: the run finished before the kill (chain checked); new chain, delays up to ${max_delay} ms"
    fi
done
if ! nice -n 19 "$bin" "${args[@]}" --save "$run" --resume >>"$work/killed.out" 2>&1; then
    echo "kill_resume: the final resume failed:"; tail -n 5 "$work/killed.out"; exit 1
fi

tmp_left=$(ls "$run" | grep -c '\.tmp\.' || true)
check_chain "$run"
final=$(printf 'checkpoint-%08d.tfm' "$steps")
[ -e "$run/$final" ] || { echo "kill_resume: no final checkpoint $final"; exit 1; }
echo "kill_resume: $landed kills landed, $mid_write of them during a checkpoint write (temporary file removed on resume), $resumes resumes, $restarts restarts from step 0 (killed before the first checkpoint), $((finished_early + 1)) chain(s)"
[ "$tmp_left" -eq 0 ] || { echo "kill_resume: FAIL: $tmp_left temporary files left in $run"; exit 1; }
if [ "$differ" -eq 0 ]; then
    echo "kill_resume: PASS $landed/$kills kills; all $compared checkpoints of the killed run(s) (final step $steps included) are byte-identical to the uninterrupted run"
    [ -n "${WORK:-}" ] || rm -rf "$work"
    exit 0
fi
echo "kill_resume: FAIL: $differ of $compared checkpoints differ (scratch kept in $work)"
exit 1
