#!/usr/bin/env bash
# SIGKILL (or with SIGNAL=STOP: SIGSTOP) rank 1 of a 2-rank `tfm train`
# under mpirun after its first checkpoint, then check that
#   - mpirun and every rank are gone within 30 s, exit status non-zero, with a
#     message naming rank 1 (a killed rank: mpirun's; a stopped one: rank 0's
#     after TFM_MPI_TIMEOUT, set to 3 s here);
#   - every checkpoint the killed run left is byte-identical to the same step
#     of an uninterrupted run (none is damaged);
#   - --resume finishes byte-identical to the uninterrupted run.
#   usage: MPIRUN='mpirun ... -np 2' TFM_BIN=build/tfm TRAIN_ARGS='train ...' \
#          bash tests/mpi/kill_rank.sh DIR
# (run by tests/test_mpi.c; TRAIN_ARGS must not contain --save, and should
# checkpoint every few steps with a --keep that keeps them all)
set -u
dir=$1
signal=${SIGNAL:-KILL}
ref=$dir/ref
run=$dir/killed
fail() {
    echo "kill_rank: $*"
    exit 1
}
# shellcheck disable=SC2086 # MPIRUN and TRAIN_ARGS are word lists
launch() { env $MPIRUN "$TFM_BIN" $TRAIN_ARGS "$@"; }

launch --save "$ref" >"$dir/ref.out" 2>&1 || fail "the uninterrupted run failed: $(cat "$dir/ref.out")"
last=$(ls "$ref" | grep -E '^checkpoint-[0-9]+\.tfm$' | sort | tail -n 1)
[ -n "$last" ] || fail "the uninterrupted run wrote no checkpoint"
first=$(ls "$ref" | grep -E '^checkpoint-[0-9]+\.tfm$' | sort | head -n 1)

# (not through the function: $! must be mpirun itself, whose children the
# ranks are)
# shellcheck disable=SC2086
TFM_MPI_TIMEOUT=3 env $MPIRUN "$TFM_BIN" $TRAIN_ARGS --save "$run" >"$dir/killed.out" 2>&1 &
job=$!
for _ in $(seq 1200); do
    [ -e "$run/$first" ] && break
    kill -0 "$job" 2>/dev/null || break
    sleep 0.05
done
# rank 1 of this run: its command line names the run directory (mpirun's
# children first, the fast way; then every process)
victim=
for p in $(pgrep -P "$job" | sed 's|^|/proc/|') /proc/[0-9]*; do
    [ -n "$victim" ] && break
    { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -qxF "$run" || continue
    { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' || continue
    victim=${p#/proc/}
done
if [ -z "$victim" ]; then
    kill "$job" 2>/dev/null
    fail "rank 1 not found running (did the run end before its first checkpoint?): $(cat "$dir/killed.out")"
fi
t0=$(date +%s%N)
kill -s "$signal" "$victim"
for _ in $(seq 300); do
    kill -0 "$job" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$job" 2>/dev/null; then
    kill -9 "$job" 2>/dev/null
    kill -9 "$victim" 2>/dev/null
    fail "mpirun still running 30 s after rank 1 got SIG$signal"
fi
wait "$job"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
echo "kill_rank: SIG$signal to rank 1 (pid $victim) after $first; mpirun exited $rc after $ms ms"
[ "$rc" -ne 0 ] || fail "mpirun exited 0 after rank 1 got SIG$signal"
if [ "$signal" = STOP ]; then
    want='tfm: rank 0: no answer from rank 1 for 3 s'
else
    want='process rank 1 with PID .* exited on signal 9'
fi
grep -q "$want" "$dir/killed.out" || fail "no message names rank 1: $(cat "$dir/killed.out")"
grep "$want" "$dir/killed.out" | head -n 1
for p in /proc/[0-9]*; do
    { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -qxF "$run" && fail "a rank is still running: ${p#/proc/}"
done
n=0
for f in "$run"/checkpoint-*.tfm; do
    [ -e "$f" ] || continue
    cmp -s "$f" "$ref/${f##*/}" || fail "${f##*/} of the killed run differs from the uninterrupted run's"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || fail "the killed run left no checkpoint"
launch --resume --save "$run" >"$dir/resume.out" 2>&1 || fail "--resume failed: $(cat "$dir/resume.out")"
cmp "$run/$last" "$ref/$last" || fail "the resumed run's $last differs from the uninterrupted run's"
echo "kill_rank: $n checkpoint(s) intact; resumed to $last, byte-identical to the uninterrupted run"
