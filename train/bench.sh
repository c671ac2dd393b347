#!/usr/bin/env bash
# make bench: tfm against the references in ../shared/bench, side by side in
# one run (medians of RUNS runs, ours and the reference alternating so that
# load from other processes hits both alike).
#
#   bash train/bench.sh [gemm] [step] [copy] [gemm-bf16] [step-bf16] [translate]
#                       [translate-bf16] [translate-hf] [allreduce]   (default: all)
#   RUNS=5 bash train/bench.sh step
#
#   gemm  tfm_gemm vs OpenBLAS (AVX-512, OpenMP build) at the 12 GEMMs of
#         sgemm_peak.c, 2 and 1 threads, GEMM_ROUNDS (3) alternating rounds,
#         median per cell                                    (train/bench_gemm.sh)
#   step  one training step, presets toy/small/base of torch_transformer.py,
#         tokens/s and peak RSS, 2 threads (+ base at 1 thread for scaling)
#   copy  the Annotated Transformer copy task, 800 steps (40 epochs of 20
#         batches), vs torch_copy_task.py: wall-clock training time and exact
#         match on 1000 held-out sequences, for each seed of COPY_SEEDS
#         (default "0"; e.g. COPY_SEEDS="0 1 2 3 4"), then the medians; plus
#         our `make run` configuration
#   gemm-bf16  tfm_gemm_bf16 vs our fp32 tfm_gemm at the same 12 GEMMs, 2 and
#         1 threads, GEMM_ROUNDS alternating rounds   (train/bench_gemm_bf16.sh)
#   step-bf16  the step of toy/small/base at 2 threads: tfm --precision fp32
#         and bf16, PyTorch fp32 and --autocast-bf16, alternating, RUNS runs
#   translate  greedy and beam 5 on the same 1000 sentences (numbers corpus,
#         a model trained here with a fixed seed), 2 threads, RUNS alternating
#         runs, medians and the beam5/greedy ratio; TFM_OLD=path/to/old/tfm
#         also times another build on the same model and input (before/after;
#         the old build then trains the model, as it cannot read newer
#         checkpoints) and compares the two outputs line by line; with
#         BENCH_MODEL=DIR BENCH_SRC=FILE [BENCH_REF=FILE]
#         [BENCH_ALPHA=a], a model and input of yours instead (fp32, the
#         default precision; TFM_OLD must then read that model's checkpoint)
#   translate-bf16  beam 5 and greedy with --precision fp32 and bf16, alternating,
#         RUNS runs, medians and the bf16 speed-up, on the numbers model of
#         `translate` or, with BENCH_MODEL=DIR BENCH_SRC=FILE [BENCH_REF=FILE],
#         on a model and input of yours (the Multi30k recipe's run and
#         test.de: the README's figure), with the BLEU of each output;
#         TFM_OLD=path/to/old/tfm also times another build, alternating, on
#         the same model and input (before/after), and compares the outputs
#   translate-hf  greedy and beam 5 against Hugging Face transformers'
#         MarianMTModel.generate on CPU (train/bench_hf.py), both on the same
#         `tfm export` of the numbers model of `translate` (or BENCH_MODEL=DIR
#         BENCH_SRC=FILE [BENCH_REF=FILE]), 2 threads, batches of 64, RUNS
#         alternating runs, medians, speed-ups and the outputs compared line
#         by line; needs transformers importable by /usr/bin/python3 (Debian
#         has no package: HF_PYTHONPATH=DIR adds a directory that holds it),
#         skipped otherwise
#   allreduce  MPI builds (make MPI=1) with mpirun: 2 ranks on this machine;
#         the gradient bytes reduced per step of each preset and the blocking
#         sum's time over shared memory and over TCP (--mca btl self,tcp,
#         the transport between machines); then tfm bench step under mpirun
#         at small and base: the blocking sum's time, what the step still
#         waits for after backward (exposed), the fraction hidden behind
#         backward, and tokens/s of -np 2 --threads 1 against one process
#         with --threads 2 (MPI_BIND=core: mpirun --bind-to core)
# The references need python3-torch, libopenblas-dev and libopenblas0-openmp
# (apt-get install); without them only our side runs.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED_DIR=${SHARED_DIR:-$ROOT/../shared}
RUNS=${RUNS:-3}
TFM=${TFM:-$ROOT/build/tfm}
SECTIONS=${*:-gemm step copy gemm-bf16 step-bf16 translate translate-bf16 translate-hf allreduce}
TORCH_ENV=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp)
have_torch=0
if /usr/bin/python3 -c "import torch" 2>/dev/null && [ -f "$SHARED_DIR/bench/torch_transformer.py" ]; then
    have_torch=1
else
    echo "# PyTorch references skipped (no /usr/bin/python3 with torch, or no $SHARED_DIR/bench)"
fi
[ -x "$TFM" ] || make -C "$ROOT" -j2 >/dev/null

median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
field() { grep -o "\(^\| \)$1=[^ ]*" | tail -1 | sed 's/.*=//'; }
# The translate sections' model: the numbers corpus in $2/data and a small
# model trained on it with a fixed seed by tfm build $1, in $2/run.
# Two translations line by line: "identical", or how many lines differ and
# in how many of those one build's line is a prefix of the other's (a
# sentence whose translation never ends, cut at another length).
line_diff() {
    awk -v other="$2" '{
        if ((getline o < other) <= 0) o = "\001";
        n++;
        if ($0 == o) next;
        d++;
        if (index(o, $0) == 1) np++; else if (index($0, o) == 1) op++;
    } END {
        while ((getline o < other) > 0) { n++; d++ }
        if (d == 0) print "identical";
        else printf "%d of %d lines differ (this build'\''s line a prefix of the old one'\''s: %d, the other way: %d)\n", d, n, np, op
    }' "$1"
}

# The translate sections' model and input: BENCH_MODEL and BENCH_SRC (and
# BENCH_REF) when given, else the numbers model that tfm build $2 trains in
# a new $work; section $1 names itself in the error.
bench_input() {
    if [ -n "${BENCH_MODEL:-}" ] && [ -z "${BENCH_SRC:-}" ]; then
        echo "bench $1: BENCH_MODEL needs BENCH_SRC (the input to translate)" >&2; exit 2
    fi
    work=$(mktemp -d)
    if [ -n "${BENCH_MODEL:-}" ]; then
        model=$BENCH_MODEL; src=$BENCH_SRC; ref=${BENCH_REF:-}
    else
        numbers_model "$2" "$work"
        model=$work/run; src=$work/data/test.de; ref=$work/data/test.en
    fi
}

numbers_model() {
    "$TFM" data numbers --out "$2/data" --train 3000 --valid 100 --test 1000 >/dev/null
    "$1" train --src-train "$2/data/train.de" --tgt-train "$2/data/train.en" \
        --src-valid "$2/data/valid.de" --tgt-valid "$2/data/valid.en" --save "$2/run" \
        --bpe-merges 300 --batch-tokens 2048 --steps 500 --valid-every 500 --share-emb \
        --d-model 64 --heads 4 --d-ff 256 --layers 2 --seed 1 --threads 2 --quiet >/dev/null
}

echo "# tfm bench on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), gemm kernel $("$TFM" bench gemm --m 8 --n 8 --k 8 --reps 1 | sed -n 's/^kernel=//p')"

for section in $SECTIONS; do
case $section in
gemm)
    echo; echo "## GEMM: tfm_gemm vs OpenBLAS (GFLOP/s, median)"
    SHARED_DIR=$SHARED_DIR TFM=$TFM ROUNDS=${GEMM_ROUNDS:-3} bash "$ROOT/train/bench_gemm.sh"
    ;;
step)
    echo; echo "## Training step: tokens/s (median of $RUNS), 2 threads unless noted"
    printf "%-8s %3s %12s %12s %7s %11s %11s\n" preset thr "tfm tok/s" "torch tok/s" ratio "tfm RSS MB" "torch RSS"
    for spec in toy:2 small:2 base:2 base:1; do
        p=${spec%:*}; t=${spec#*:}
        ours=() theirs=() rss_o=() rss_t=()
        for _ in $(seq "$RUNS"); do
            out=$("$TFM" bench step --preset "$p" --threads "$t" | tail -1)
            ours+=("$(field tokens_per_s <<<"$out")"); rss_o+=("$(field peak_rss_mb <<<"$out")")
            if [ $have_torch = 1 ]; then
                out=$("${TORCH_ENV[@]}" /usr/bin/python3 "$SHARED_DIR/bench/torch_transformer.py" --preset "$p" --threads "$t" | tail -1)
                theirs+=("$(field tokens_per_s <<<"$out")"); rss_t+=("$(field peak_rss_mb <<<"$out")")
            fi
        done
        mo=$(printf '%s\n' "${ours[@]}" | median); ro=$(printf '%s\n' "${rss_o[@]}" | median)
        if [ $have_torch = 1 ]; then
            mt=$(printf '%s\n' "${theirs[@]}" | median); rt=$(printf '%s\n' "${rss_t[@]}" | median)
            ratio=$(awk -v a="$mo" -v b="$mt" 'BEGIN {printf "%.2f", a / b}')
        else mt=-; rt=-; ratio=-; fi
        printf "%-8s %3s %12s %12s %7s %11s %11s\n" "$p" "$t" "$mo" "$mt" "$ratio" "$ro" "$rt"
        [ "$spec" = base:2 ] && base2=$mo
        [ "$spec" = base:1 ] && echo "scaling at base: 2 threads / 1 thread = $(awk -v a="$base2" -v b="$mo" 'BEGIN {printf "%.2f", a / b}')"
    done
    ;;
copy)
    seeds=${COPY_SEEDS:-0}
    echo; echo "## Copy task (Annotated Transformer setting), 800 steps, 2 threads, seeds: $seeds"
    t_tfm=() t_torch=() em_tfm=() em_torch=()
    for seed in $seeds; do
        # --decoder-start bos: the reference (the Annotated Transformer) starts
        # the decoder from the <s> embedding, as tfm did before zero became the
        # default; the README's copy-task figures were measured this way.
        out=$("$TFM" train --task copy --annotated --vocab 11 --max-len 10 --d-model 512 --d-ff 2048 \
            --decoder-start bos --heads 8 --layers 2 --batch 80 --lr-factor 0.5 --warmup 400 --label-smoothing 0 \
            --dropout 0.1 --steps 800 --seed "$seed" --threads 2 --quiet | tail -1)
        echo "tfm   seed $seed: $out"
        t_tfm+=("$(field seconds <<<"$out")"); em_tfm+=("$(field exact_match <<<"$out")")
        if [ $have_torch = 1 ]; then
            out=$("${TORCH_ENV[@]}" /usr/bin/python3 "$SHARED_DIR/bench/torch_copy_task.py" --threads 2 \
                --seed "$seed" --epochs 40 --max-epochs 40 | tail -1)
            echo "torch seed $seed: $out"
            t_torch+=("$(field train_s <<<"$out")"); em_torch+=("$(field final_exact_match <<<"$out")")
        fi
    done
    mt=$(printf '%s\n' "${t_tfm[@]}" | median); me=$(printf '%s\n' "${em_tfm[@]}" | median)
    if [ $have_torch = 1 ]; then
        mtt=$(printf '%s\n' "${t_torch[@]}" | median); met=$(printf '%s\n' "${em_torch[@]}" | median)
        echo "copy task (median over seeds): tfm ${mt}s exact_match $me, torch ${mtt}s exact_match $met, time ratio torch/tfm $(awk -v a="$mtt" -v b="$mt" 'BEGIN {printf "%.2f", a / b}')"
    else
        echo "copy task (median over seeds): tfm ${mt}s exact_match $me"
    fi
    out=$("$TFM" train --task copy --quiet | tail -1)
    echo "make run configuration: $out"
    ;;
gemm-bf16)
    echo; echo "## bf16 GEMM: tfm_gemm_bf16 vs our fp32 tfm_gemm (GFLOP/s, median)"
    TFM=$TFM ROUNDS=${GEMM_ROUNDS:-3} bash "$ROOT/train/bench_gemm_bf16.sh"
    ;;
step-bf16)
    echo; echo "## Training step in bf16: tokens/s (median of $RUNS), 2 threads"
    printf "%-6s %10s %10s %6s %11s %11s %6s %8s\n" preset "tfm fp32" "tfm bf16" "bf/fp" "torch fp32" "torch bf16" "bf/fp" "tfm/torch"
    for p in toy small base; do
        of=() ob=() tf=() tb=()
        for _ in $(seq "$RUNS"); do
            of+=("$("$TFM" bench step --preset "$p" --threads 2 --precision fp32 | tail -1 | field tokens_per_s)")
            ob+=("$("$TFM" bench step --preset "$p" --threads 2 --precision bf16 | tail -1 | field tokens_per_s)")
            if [ $have_torch = 1 ]; then
                tf+=("$("${TORCH_ENV[@]}" /usr/bin/python3 "$SHARED_DIR/bench/torch_transformer.py" --preset "$p" --threads 2 | tail -1 | field tokens_per_s)")
                tb+=("$("${TORCH_ENV[@]}" /usr/bin/python3 "$SHARED_DIR/bench/torch_transformer.py" --preset "$p" --threads 2 --autocast-bf16 | tail -1 | field tokens_per_s)")
            fi
        done
        mof=$(printf '%s\n' "${of[@]}" | median); mob=$(printf '%s\n' "${ob[@]}" | median)
        r1=$(awk -v a="$mob" -v b="$mof" 'BEGIN {printf "%.2f", a / b}')
        if [ $have_torch = 1 ]; then
            mtf=$(printf '%s\n' "${tf[@]}" | median); mtb=$(printf '%s\n' "${tb[@]}" | median)
            r2=$(awk -v a="$mtb" -v b="$mtf" 'BEGIN {printf "%.2f", a / b}')
            r3=$(awk -v a="$mob" -v b="$mtb" 'BEGIN {printf "%.2f", a / b}')
        else mtf=-; mtb=-; r2=-; r3=-; fi
        printf "%-6s %10s %10s %6s %11s %11s %6s %8s\n" "$p" "$mof" "$mob" "$r1" "$mtf" "$mtb" "$r2" "$r3"
    done
    echo "targets (issue 13) at base: tfm bf16 >= 1.5x tfm fp32 and >= 1.3x PyTorch bf16 autocast"
    ;;
translate)
    # With TFM_OLD the old build trains the numbers model: it cannot read the
    # newer checkpoint format, while this build reads the old one. The model
    # is this build's own only where the two train bit for bit alike (check
    # the BLEU against a run without TFM_OLD); dc9ef78, for one, trains
    # another.
    bench_input translate "${TFM_OLD:-$TFM}"
    if [ -n "${BENCH_MODEL:-}" ]; then
        echo; echo "## Translation: seconds for the $(wc -l < "$src") sentences of $src, model $model, fp32, 2 threads (median of $RUNS)"
    else
        echo; echo "## Translation: seconds for the 1000 numbers test sentences, 2 threads (median of $RUNS)"
    fi
    bins=("$TFM"); names=(tfm)
    if [ -n "${TFM_OLD:-}" ]; then bins+=("$TFM_OLD"); names+=(old); fi
    declare -A secs
    for _ in $(seq "$RUNS"); do
        for i in "${!bins[@]}"; do
            for beam in 1 5; do
                t0=$(date +%s.%N)
                "${bins[$i]}" translate --model "$model" --beam "$beam" --alpha "${BENCH_ALPHA:-0.6}" \
                    --threads 2 --quiet < "$src" > "$work/hyp.${names[$i]}.$beam" ||
                    echo "bench translate: ${names[$i]} failed (beam $beam)" >&2
                secs[${names[$i]}.$beam]+="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}') "
            done
        done
    done
    printf "%-6s %10s %10s %12s %s\n" build "greedy s" "beam5 s" "beam5/greedy" "BLEU greedy / beam5"
    for i in "${!bins[@]}"; do
        n=${names[$i]}
        g=$(printf '%s\n' ${secs[$n.1]} | median); b=$(printf '%s\n' ${secs[$n.5]} | median)
        bg=-; bb=-
        if [ -n "$ref" ]; then
            bg=$("$TFM" bleu "$ref" < "$work/hyp.$n.1" | tail -1)
            bb=$("$TFM" bleu "$ref" < "$work/hyp.$n.5" | tail -1)
        fi
        printf "%-6s %10.3f %10.3f %12.2f %s / %s\n" "$n" "$g" "$b" "$(awk -v a="$b" -v c="$g" 'BEGIN {print a / c}')" "$bg" "$bb"
        [ "$n" = tfm ] && new_g=$g && new_b=$b
        [ "$n" = old ] && echo "old/new: greedy $(awk -v a="$g" -v c="$new_g" 'BEGIN {printf "%.2f", a / c}')x, beam 5 $(awk -v a="$b" -v c="$new_b" 'BEGIN {printf "%.2f", a / c}')x; outputs: greedy $(line_diff "$work/hyp.tfm.1" "$work/hyp.old.1"), beam 5 $(line_diff "$work/hyp.tfm.5" "$work/hyp.old.5")"
    done
    rm -rf "$work"
    ;;
translate-bf16)
    bench_input translate-bf16 "$TFM"
    echo; echo "## Translation in bf16: seconds for the $(wc -l < "$src") sentences of $src, model $model, 2 threads (median of $RUNS)"
    bins=("$TFM"); names=(tfm)
    if [ -n "${TFM_OLD:-}" ]; then bins+=("$TFM_OLD"); names+=(old); fi
    declare -A tsec
    for _ in $(seq "$RUNS"); do
        for i in "${!bins[@]}"; do
            for beam in 5 1; do
                for prec in fp32 bf16; do
                    t0=$(date +%s.%N)
                    "${bins[$i]}" translate --model "$model" --beam "$beam" --alpha "${BENCH_ALPHA:-0.6}" \
                        --precision "$prec" --threads 2 --quiet < "$src" > "$work/hyp.${names[$i]}.$prec.$beam"
                    tsec[${names[$i]}.$prec.$beam]+="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}') "
                done
            done
        done
    done
    printf "%-6s %-6s %10s %10s %8s %s\n" build search "fp32 s" "bf16 s" "fp32/bf16" "BLEU fp32 / bf16"
    for n in "${names[@]}"; do
        for beam in 5 1; do
            f=$(printf '%s\n' ${tsec[$n.fp32.$beam]} | median); b=$(printf '%s\n' ${tsec[$n.bf16.$beam]} | median)
            bl=-
            if [ -n "$ref" ]; then
                bl="$("$TFM" bleu "$ref" < "$work/hyp.$n.fp32.$beam" | tail -1) / $("$TFM" bleu "$ref" < "$work/hyp.$n.bf16.$beam" | tail -1)"
            fi
            printf "%-6s %-6s %10.3f %10.3f %8.2f %s\n" "$n" "beam$beam" "$f" "$b" "$(awk -v a="$f" -v c="$b" 'BEGIN {print a / c}')" "$bl"
            if [ "$n" = old ]; then
                nf=$(printf '%s\n' ${tsec[tfm.fp32.$beam]} | median); nb=$(printf '%s\n' ${tsec[tfm.bf16.$beam]} | median)
                same=identical
                for prec in fp32 bf16; do
                    cmp -s "$work/hyp.tfm.$prec.$beam" "$work/hyp.old.$prec.$beam" || same=DIFFER
                done
                echo "old/new beam$beam: fp32 $(awk -v a="$f" -v c="$nf" 'BEGIN {printf "%.2f", a / c}')x, bf16 $(awk -v a="$b" -v c="$nb" 'BEGIN {printf "%.2f", a / c}')x; outputs $same"
            fi
        done
    done
    echo "target (issue 13): beam 5 in bf16 >= 1.4x fp32 on the 1000 Multi30k test sentences"
    rm -rf "$work"
    ;;
translate-hf)
    hfpy=("${TORCH_ENV[@]}" PYTHONPATH="${HF_PYTHONPATH:-}${PYTHONPATH:+:$PYTHONPATH}" /usr/bin/python3)
    if ! "${hfpy[@]}" -c "import torch, transformers" 2>/dev/null; then
        echo; echo "## Translation against transformers: skipped (/usr/bin/python3 cannot import torch and transformers; HF_PYTHONPATH=DIR adds a directory holding transformers)"
        continue
    fi
    bench_input translate-hf "$TFM"
    trap 'rm -rf "$work"' EXIT
    # Both sides translate the export, so that they hold the same weights.
    if ! "$TFM" export --model "$model" --out "$work/export" >/dev/null; then
        echo "bench translate-hf: could not export $model" >&2; exit 1
    fi
    if ! "$TFM" bpe encode -c "$work/export/bpe.codes" -v "$work/export/vocab.txt" < "$src" > "$work/src.ids"; then
        echo "bench translate-hf: could not encode $src" >&2; exit 1
    fi
    alpha=${BENCH_ALPHA:-0.6}
    echo; echo "## Translation against transformers' MarianMTModel.generate: seconds for the $(wc -l < "$src") sentences of $src, model $model exported, 2 threads, batches of 64 (median of $RUNS)"
    "${hfpy[@]}" -c "import transformers, torch; print('# transformers', transformers.__version__, 'from', transformers.__file__, '; torch', torch.__version__)"
    unset hsec
    declare -A hsec
    # tfm: greedy, beam 5 as by default (a sentence ends when 5 hypotheses
    # have finished), beam 5 with --beam-stop bound (it ends when no
    # unfinished hypothesis can win, closer to what transformers does)
    searches=("1 finished" "5 finished" "5 bound")
    for _ in $(seq "$RUNS"); do
        for sr in "${searches[@]}"; do
            set -- $sr
            t0=$(date +%s.%N)
            "$TFM" translate --model "$work/export" --beam "$1" --beam-stop "$2" --alpha "$alpha" \
                --threads 2 --quiet < "$src" > "$work/hyp.tfm.$1.$2" ||
                { echo "bench translate-hf: tfm translate failed (beam $1, --beam-stop $2)" >&2; exit 1; }
            hsec[tfm.$1.$2]+="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}') "
        done
        if ! out=$("${hfpy[@]}" "$ROOT/train/bench_hf.py" "$work/export" "$work/src.ids" "$work/ids.hf" 2 2>"$work/hf.err"); then
            echo "bench translate-hf: train/bench_hf.py failed:" >&2; tail -5 "$work/hf.err" >&2; exit 1
        fi
        for beam in 1 5; do
            hsec[hf.$beam]+="$(sed -n "s/^hf beam=$beam seconds=//p" <<<"$out") "
        done
    done
    printf "%-19s %8s %15s %9s %s\n" "search (tfm)" "tfm s" "transformers s" speed-up "outputs against transformers'; BLEU tfm / transformers"
    for sr in "${searches[@]}"; do
        set -- $sr
        [ -f "$work/hyp.hf.$1" ] || "$TFM" bpe decode -v "$work/export/vocab.txt" < "$work/ids.hf.$1" > "$work/hyp.hf.$1"
        t=$(printf '%s\n' ${hsec[tfm.$1.$2]} | median); h=$(printf '%s\n' ${hsec[hf.$1]} | median)
        bl=""
        [ -n "$ref" ] && bl="; BLEU $("$TFM" bleu "$ref" < "$work/hyp.tfm.$1.$2" | tail -1) / $("$TFM" bleu "$ref" < "$work/hyp.hf.$1" | tail -1)"
        label=greedy; [ "$1" = 1 ] || label="beam $1, $2"
        printf "%-19s %8.3f %15.3f %8.2fx %s%s\n" "$label" "$t" "$h" \
            "$(awk -v a="$h" -v c="$t" 'BEGIN {print a / c}')" "$(line_diff "$work/hyp.tfm.$1.$2" "$work/hyp.hf.$1" | sed "s/this build'/tfm'/; s/the old one'/transformers'/")" "$bl"
    done
    echo "(beam search: tfm's length penalty is GNMT's, ((5 + len) / 6)^$alpha; transformers' divides the score by len^1.0)"
    echo "target (issue 18): beam 5 >= 2x faster than transformers, greedy >= 3x"
    rm -rf "$work"; trap - EXIT
    ;;
allreduce)
    # MPI builds only (make MPI=1): 2 ranks on this machine; figures for the
    # README's projection table (issue 12)
    echo; echo "## Data parallelism: the gradient sum of 2 ranks (median of $RUNS)"
    mpi=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe --bind-to "${MPI_BIND:-none}")
    if ! command -v mpirun >/dev/null ||
        ! "${mpi[@]}" -np 2 "$TFM" bench allreduce --preset toy --reps 1 --warmup 0 >/dev/null 2>&1; then
        echo "# skipped: needs mpirun and an MPI build of tfm (make MPI=1)"
        continue
    fi
    tcp=(--mca btl self,tcp)
    # the blocking sum alone (tfm bench allreduce): bytes per step, shared memory and TCP
    printf "%-6s %14s %12s %12s\n" preset "bytes/step" "shm ms" "tcp ms"
    for p in toy small base; do
        shm=(); net=(); bytes=
        for _ in $(seq "$RUNS"); do
            out=$("${mpi[@]}" -np 2 "$TFM" bench allreduce --preset "$p" --threads 1 | tail -1)
            bytes=$(field bytes_per_step <<<"$out"); shm+=("$(field allreduce_ms_median <<<"$out")")
            out=$("${mpi[@]}" "${tcp[@]}" -np 2 "$TFM" bench allreduce --preset "$p" --threads 1 | tail -1)
            net+=("$(field allreduce_ms_median <<<"$out")")
        done
        printf "%-6s %14s %12s %12s\n" "$p" "$bytes" "$(printf '%s\n' "${shm[@]}" | median)" "$(printf '%s\n' "${net[@]}" | median)"
        [ "$p" = base ] && proj_bytes=$bytes
    done
    # the step: buckets summed while backward goes on; hidden = 1 - exposed / allreduce
    # (tfm bench step under mpirun), and -np 2 --threads 1 against -np 1 --threads 2
    echo
    printf "%-6s %-4s %12s %11s %7s %14s %14s %6s\n" preset link "allreduce ms" "exposed ms" hidden \
        "np2x1 tok/s" "np1x2 tok/s" ratio
    for p in small base; do
        for link in shm tcp; do
            extra=(); [ "$link" = tcp ] && extra=("${tcp[@]}")
            ar=(); ex=(); hid=(); two=(); one=(); bwd=(); ms2=(); ms1=()
            for _ in $(seq "$RUNS"); do
                out=$("${mpi[@]}" "${extra[@]}" -np 2 "$TFM" bench step --preset "$p" --threads 1 | tail -1)
                ar+=("$(field allreduce_ms <<<"$out")"); ex+=("$(field exposed_ms <<<"$out")")
                hid+=("$(field hidden_frac <<<"$out")"); two+=("$(field tokens_per_s <<<"$out")")
                bwd+=("$(field backward_ms <<<"$out")"); ms2+=("$(field ms_per_step <<<"$out")")
                nb=$(field buckets <<<"$out")
                if [ "$link" = shm ]; then
                    out=$("$TFM" bench step --preset "$p" --threads 2 | tail -1)
                    one+=("$(field tokens_per_s <<<"$out")"); ms1+=("$(field ms_per_step <<<"$out")")
                fi
            done
            if [ "$p" = base ] && [ "$link" = shm ]; then
                proj_step=$(printf '%s\n' "${ms1[@]}" | median)
                proj_bwd=$(awk -v b="$(printf '%s\n' "${bwd[@]}" | median)" \
                    -v s="$(printf '%s\n' "${ms2[@]}" | median)" 'BEGIN {printf "%.3f", b / s}')
                proj_buckets=$nb
            fi
            [ "$p" = base ] && [ "$link" = tcp ] && proj_hidden=$(printf '%s\n' "${hid[@]}" | median)
            t2=$(printf '%s\n' "${two[@]}" | median)
            t1=nan; ratio=-
            if [ "$link" = shm ]; then
                t1=$(printf '%s\n' "${one[@]}" | median)
                ratio=$(awk -v a="$t2" -v b="$t1" 'BEGIN {printf "%.2f", a / b}')
            fi
            printf "%-6s %-4s %12s %11s %7s %14s %14s %6s\n" "$p" "$link" \
                "$(printf '%s\n' "${ar[@]}" | median)" "$(printf '%s\n' "${ex[@]}" | median)" \
                "$(printf '%s\n' "${hid[@]}" | median)" "$t2" "$t1" "$ratio"
        done
    done
    # The README's projection: N machines like this one, each with the base
    # preset's batch (the global batch grows with N), one process per machine
    # with --threads 2, the gradients summed over links of L Gbit/s:
    #   sum(N, L) = 2 (N-1)/N * B / (L/8) + 2 * buckets * alpha
    #     (each rank sends and receives (N-1)/N of the block to add its share,
    #      and as much again to gather the others'; two latencies per bucket)
    #   exposed   = max((1 - hidden) * sum, sum - backward)
    #     (the share measured not hidden over TCP, or, once the sum outlasts
    #      backward, everything after backward ends)
    #   efficiency = step / (step + exposed); in parentheses without overlap:
    #   step / (step + sum)
    echo
    alpha_us=${PROJ_ALPHA_US:-50}
    echo "# projection, base preset: B=$proj_bytes bytes, buckets=$proj_buckets, step=${proj_step} ms" \
        "(one process, 2 threads), backward=${proj_bwd} of the step (2 ranks), hidden=${proj_hidden}" \
        "(2 ranks, TCP), alpha=${alpha_us} us per message"
    awk -v B="$proj_bytes" -v nb="$proj_buckets" -v step="$proj_step" -v fb="$proj_bwd" \
        -v h="$proj_hidden" -v alpha="$alpha_us" 'BEGIN {
        printf "%-9s %16s %16s %16s\n", "machines", "1 Gbit/s", "10 Gbit/s", "25 Gbit/s"
        split("1 10 25", L, " ")
        for (N = 2; N <= 16; N *= 2) {
            printf "%-9d", N
            for (i = 1; i <= 3; i++) {
                sum = 2 * (N - 1) / N * B / (L[i] * 1e9 / 8) * 1e3 + 2 * nb * alpha / 1e3
                ex = (1 - h) * sum
                if (sum - fb * step > ex) ex = sum - fb * step
                printf " %8.1f%% (%3.0f%%)", 100 * step / (step + ex), 100 * step / (step + sum)
            }
            printf "\n"
        }
    }'
    ;;
*) echo "bench: unknown section '$section' (gemm, step, copy, gemm-bf16, step-bf16, translate, translate-bf16, allreduce)" >&2; exit 2 ;;
esac
done
