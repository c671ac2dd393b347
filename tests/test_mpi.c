/* Data-parallel training under mpirun (issue 12): `make MPI=1` builds tfm
 * with MPI; these tests start it with 1, 2 and 3 ranks on the numbers corpus
 * and check that
 *   - N ranks train the model one process trains with the same global batch
 *     (every step's loss within rel 1e-5, final parameters within 1e-5 abs,
 *     the attention key biases aside: see key_bias);
 *   - the same N twice gives byte-identical checkpoints, also over TCP
 *     (--mca btl self,tcp), with other gradient buckets, and with one
 *     blocking sum after backward instead of buckets sent during it, since
 *     the reduction order is fixed;
 *   - a 2-rank run resumed with 1 and with 3 ranks continues the same global
 *     batch sequence (and says so);
 *   - --bpe-dropout: 2 ranks train like one process; with 3 ranks an epoch's
 *     short last batch borrows sentences and a resume stays byte-identical;
 *     budgets too small for a sentence per rank are refused;
 *   - a rank started with another --seed, or with a different corpus, is
 *     refused at start-up naming the rank and the setting;
 *   - a rank killed with SIGKILL (or stopped with SIGSTOP) takes the job
 *     down within 30 s with a message naming it, and --resume then finishes
 *     byte-identical to an uninterrupted run (tests/mpi/kill_rank.sh);
 *   - tfm bench allreduce and bench step (overlap figures) run under mpirun;
 *   - tfm translate under mpirun writes what one process writes.
 * They skip unless TFM_MPI_BUILD=1 (set by `make MPI=1 test`) and mpirun
 * exists. Tiny models and few steps: a few seconds each. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tfm/base.h"
#include "tfm/checkpoint.h"
#include "util_test.h"

static char g_out[1 << 16];

/* Why these tests cannot run here, or NULL. */
static const char *unavailable(void) {
    const char *mpi = getenv("TFM_MPI_BUILD");
    if (!mpi || strcmp(mpi, "1")) return "tfm is not an MPI build (make MPI=1 test)";
    if (tfm_test_run("command -v mpirun", NULL, 0) != 0) return "mpirun not found";
    return NULL;
}

#define NEED_MPI()                                                                                 \
    do {                                                                                           \
        const char *why = unavailable();                                                           \
        if (why) tfm_test_skip("%s", why);                                                         \
    } while (0)

/* mpirun for N ranks on this machine, as root too, more ranks than cores */
static const char *mpirun(int np, const char *extra) {
    static char buf[512];
    snprintf(buf, sizeof buf,
             "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe "
             "--bind-to none %s -np %d",
             extra ? extra : "", np);
    return buf;
}

/* dir/name in one of 16 static buffers */
static const char *sub(const char *dir, const char *name) {
    static char buf[16][1024];
    static int slot;
    char *out = buf[slot++ & 15];
    snprintf(out, sizeof buf[0], "%s/%s", dir, name);
    return out;
}

/* How many times needle occurs in text. */
static int count_of(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void run_ok(const char *cmd) {
    int rc = tfm_test_run(cmd, g_out, sizeof g_out);
    ck_assert_msg(rc == 0, "exit %d: %s\n%s", rc, cmd, g_out);
}

/* The numbers corpus in dir/data. */
static void make_data(const char *dir) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "'%s' data numbers --out %s/data --train 400 --valid 20 --test 1 --seed 1",
             tfm_test_bin(), dir);
    run_ok(cmd);
}

/* The training flags of every run here (a tiny model, no dropout unless
 * extra says so). A gentle learning rate: with Noam's full rate for
 * d_model 16 (0.036 at its peak) training is chaotic enough that float
 * rounding differences grow to 6e-5 relative by step 50 (measured), which
 * says nothing about the reduction. */
static const char *train_args(const char *dir, int64_t steps, const char *extra) {
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "train --src-train %s/data/train.en --tgt-train %s/data/train.de "
             "--src-valid %s/data/valid.en --tgt-valid %s/data/valid.de --bpe-merges 60 "
             "--d-model 16 --heads 2 --d-ff 32 --layers 1 --batch-tokens 300 --max-tokens 30 "
             "--warmup 20 --lr-factor 0.3 --dropout 0 --attn-dropout 0 --seed 3 --threads 1 "
             "--log-every 1 "
             "--steps %lld --quiet %s",
             dir, dir, dir, dir, (long long)steps, extra ? extra : "");
    return buf;
}

/* Runs `tfm train` with np ranks (0: one plain process, no mpirun). */
static void train(int np, const char *mca, const char *dir, int64_t steps, const char *extra,
                  const char *save) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s '%s' %s --save %s", np ? mpirun(np, mca) : "", tfm_test_bin(),
             train_args(dir, steps, extra), save);
    run_ok(cmd);
}

/* metrics.csv: the training loss of steps 1..n (progress rows). */
static void read_losses(const char *run, double *loss, int64_t n) {
    char path[1024], line[512];
    snprintf(path, sizeof path, "%s/metrics.csv", run);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s missing", path);
    for (int64_t i = 0; i < n; i++) loss[i] = NAN;
    while (fgets(line, sizeof line, f)) {
        long long step;
        char rest[512];
        double l;
        /* "step,,loss,..." (progress); validation rows have the epoch */
        if (sscanf(line, "%lld,,%lf,%511s", &step, &l, rest) == 3 && step >= 1 && step <= n)
            loss[step - 1] = l;
    }
    fclose(f);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(!isnan(loss[i]), "%s: no loss of step %lld", path, (long long)i + 1);
}

static void check_losses(const char *what, const double *got, const double *want, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double rel = fabs(got[i] - want[i]) / fabs(want[i]);
        if (rel > worst) worst = rel;
        ck_assert_msg(rel <= 1e-5, "%s: step %lld loss %.6f, one process %.6f (rel %.2g)", what,
                      (long long)i + 1, got[i], want[i], rel);
    }
    printf("%s: %lld step losses, max rel diff %.3g\n", what, (long long)n, worst);
}

/* The attention key biases add q . b to every score of a query's row, which
 * the softmax cancels: their gradient is zero in exact arithmetic, and what
 * float rounding leaves of it (about 1e-9) Adam scales up to steps of the
 * full learning rate, in a direction set by the rounding. They are a random
 * walk that does not change what the model computes, so they are not
 * compared (one process with another thread count walks them elsewhere too). */
static int key_bias(const char *name) {
    size_t n = strlen(name);
    return n >= 7 && !strcmp(name + n - 7, ".k.bias");
}

/* Largest |a - b| over the parameters of two checkpoints (key biases
 * aside). */
static double param_diff(const char *a_path, const char *b_path) {
    tfm_checkpoint a, b;
    ck_assert_msg(tfm_checkpoint_read(a_path, &a) == 0, "%s", tfm_last_error());
    ck_assert_msg(tfm_checkpoint_read(b_path, &b) == 0, "%s", tfm_last_error());
    tfm_model ma, mb;
    ck_assert_msg(tfm_model_from_checkpoint(&ma, &a) == 0, "%s", tfm_last_error());
    ck_assert_msg(tfm_model_from_checkpoint(&mb, &b) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(ma.params.count, mb.params.count);
    double worst = 0;
    int64_t skipped = 0;
    for (int64_t k = 0; k < ma.params.count; k++) {
        const tfm_tensor *x = ma.params.items[k], *y = mb.params.items[k];
        ck_assert_str_eq(x->name, y->name);
        ck_assert_int_eq(x->n, y->n);
        if (key_bias(x->name)) {
            skipped++;
            continue;
        }
        for (int64_t i = 0; i < x->n; i++) {
            double d = fabs((double)x->data[i] - (double)y->data[i]);
            if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
        }
    }
    ck_assert_int_eq(skipped, 3); /* encoder self, decoder self and cross attention */
    tfm_model_free(&ma);
    tfm_model_free(&mb);
    tfm_checkpoint_free(&a);
    tfm_checkpoint_free(&b);
    return worst;
}

static void check_params(const char *what, const char *run, const char *ref, int64_t step) {
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/checkpoint-%08lld.tfm", run, (long long)step);
    snprintf(b, sizeof b, "%s/checkpoint-%08lld.tfm", ref, (long long)step);
    double d = param_diff(a, b);
    printf("%s: final parameters, max abs diff %.3g\n", what, d);
    ck_assert_msg(d <= 1e-5, "%s: parameters differ by %.3g (> 1e-5)", what, d);
}

static void check_same_file(const char *a, const char *b) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cmp '%s' '%s'", a, b);
    run_ok(cmd);
}

static int file_has(const char *path, const char *text) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strstr(buf, text) != NULL;
}

/* 1, 2 and 3 ranks, the same global batch: the same training; a 2-rank run
 * resumed with 1 and 3 ranks continues it. */
START_TEST(ranks_train_like_one_process) {
    NEED_MPI();
    const char *dir = tfm_test_tmpdir("mpi-ranks");
    make_data(dir);
    const char *one = sub(dir, "one"), *two = sub(dir, "two"), *three = sub(dir, "three"),
               *half = sub(dir, "half"), *to1 = sub(dir, "to1"), *to3 = sub(dir, "to3");
    char cmd[4096];
    enum { STEPS = 50 };
    train(0, NULL, dir, STEPS, NULL, one);
    train(2, NULL, dir, STEPS, NULL, two);
    train(3, NULL, dir, STEPS, NULL, three);
    double l1[STEPS], l2[STEPS], l3[STEPS];
    read_losses(one, l1, STEPS);
    read_losses(two, l2, STEPS);
    read_losses(three, l3, STEPS);
    check_losses("2 ranks vs 1 process", l2, l1, STEPS);
    check_losses("3 ranks vs 1 process", l3, l1, STEPS);
    check_params("2 ranks vs 1 process", two, one, STEPS);
    check_params("3 ranks vs 1 process", three, one, STEPS);
    char log[1024];
    snprintf(log, sizeof log, "%s/train.log", three);
    ck_assert_msg(file_has(log, "data parallel: 3 processes"), "%s does not say 3 processes", log);

    /* 25 steps with 2 ranks, then the rest with 1 (a plain process) and 3 */
    train(2, NULL, dir, 25, NULL, half);
    snprintf(cmd, sizeof cmd, "cp -r %s %s && cp -r %s %s", half, to1, half, to3);
    run_ok(cmd);
    train(0, NULL, dir, STEPS, "--resume", to1);
    train(3, NULL, dir, STEPS, "--resume", to3);
    snprintf(log, sizeof log, "%s/train.log", to1);
    ck_assert_msg(file_has(log, "resuming a run trained with 2 process(es) on 1"),
                  "%s does not say that the number of processes changed", log);
    snprintf(log, sizeof log, "%s/train.log", to3);
    ck_assert_msg(file_has(log, "resuming a run trained with 2 process(es) on 3"),
                  "%s does not say that the number of processes changed", log);
    double lr1[STEPS], lr3[STEPS];
    read_losses(to1, lr1, STEPS);
    read_losses(to3, lr3, STEPS);
    check_losses("2 ranks, resumed with 1", lr1, l2, STEPS);
    check_losses("2 ranks, resumed with 3", lr3, l2, STEPS);
    check_params("2 ranks, resumed with 1", to1, two, STEPS);
    check_params("2 ranks, resumed with 3", to3, two, STEPS);
}
END_TEST

/* --accum 2: each rank accumulates its share of two batches, then one
 * blocking sum per update: the same training as one process with --accum 2
 * (to rounding), and the log says so. */
START_TEST(ranks_accumulate_like_one_process) {
    NEED_MPI();
    const char *dir = tfm_test_tmpdir("mpi-accum");
    make_data(dir);
    const char *one = sub(dir, "one"), *two = sub(dir, "two");
    enum { STEPS = 20 };
    train(0, NULL, dir, STEPS, "--accum 2", one);
    train(2, NULL, dir, STEPS, "--accum 2", two);
    double l1[STEPS], l2[STEPS];
    read_losses(one, l1, STEPS);
    read_losses(two, l2, STEPS);
    check_losses("--accum 2: 2 ranks vs 1 process", l2, l1, STEPS);
    check_params("--accum 2: 2 ranks vs 1 process", two, one, STEPS);
    char log[1024];
    snprintf(log, sizeof log, "%s/train.log", two);
    ck_assert_msg(file_has(log, "gradient accumulation: 2 batches per update"), "%s", log);
    ck_assert_msg(file_has(log, "one exchange after backward"), "%s: not one exchange", log);
}
END_TEST

/* --bpe-dropout under mpirun: every rank segments the whole text alike each
 * epoch and takes its share of the same batches, so 2 ranks train like one
 * process (to rounding); with 3 ranks an epoch's last batch here holds fewer
 * than 3 sentences and borrows from the one before (batch.c), and a resume
 * from step 30 still ends byte-identical to the run straight through. A budget
 * below 2 x ranks x (--max-tokens + 1), and one that leaves a batch short of a
 * sentence per rank without dropout, are refused naming --batch-tokens. */
START_TEST(ranks_bpe_dropout) {
    NEED_MPI();
    const char *dir = tfm_test_tmpdir("mpi-bpe-dropout");
    make_data(dir);
    const char *one = sub(dir, "one"), *two = sub(dir, "two"), *three = sub(dir, "three"),
               *half = sub(dir, "half");
    enum { STEPS = 60 };
    /* validation at step 30 in the run straight through too, as at the end
     * of the first half (the best-checkpoint bookkeeping then agrees) */
    const char *drop = "--bpe-dropout 0.1 --save-every 30 --valid-every 30";
    train(0, NULL, dir, STEPS, drop, one);
    train(2, NULL, dir, STEPS, drop, two);
    double l1[STEPS], l2[STEPS];
    read_losses(one, l1, STEPS);
    read_losses(two, l2, STEPS);
    check_losses("--bpe-dropout: 2 ranks vs 1 process", l2, l1, STEPS);
    check_params("--bpe-dropout: 2 ranks vs 1 process", two, one, STEPS);

    train(3, NULL, dir, STEPS, drop, three);
    train(3, NULL, dir, 30, drop, half);
    train(3, NULL, dir, STEPS, "--bpe-dropout 0.1 --save-every 30 --valid-every 30 --resume",
          half);
    char fa[1024], fb[1024];
    snprintf(fa, sizeof fa, "%s/checkpoint-%08d.tfm", three, STEPS);
    snprintf(fb, sizeof fb, "%s/checkpoint-%08d.tfm", half, STEPS);
    check_same_file(fa, fb);

    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s '%s' %s --batch-tokens 120 --save %s/small", mpirun(2, NULL),
             tfm_test_bin(), train_args(dir, 5, "--bpe-dropout 0.1"), dir);
    int rc = tfm_test_run(cmd, g_out, sizeof g_out);
    ck_assert_msg(rc != 0 && strstr(g_out, "tfm: --bpe-dropout with 2 processes: --batch-tokens "
                                           "(120) must be at least 2 x processes x "
                                           "(--max-tokens + 1) = 124"),
                  "exit %d:\n%s", rc, g_out);
    snprintf(cmd, sizeof cmd, "%s '%s' %s --batch-tokens 40 --save %s/tiny", mpirun(3, NULL),
             tfm_test_bin(), train_args(dir, 5, NULL), dir);
    rc = tfm_test_run(cmd, g_out, sizeof g_out);
    ck_assert_msg(rc != 0 && strstr(g_out, "tfm: --batch-tokens 40: a batch of the training data "
                                           "holds only 2 sentence(s), fewer than the 3 processes"),
                  "exit %d:\n%s", rc, g_out);
}
END_TEST

/* The same N twice, over TCP, with other gradient buckets, and with one
 * blocking sum after backward instead of buckets sent during it
 * (TFM_MPI_OVERLAP=0, the code before the overlap): byte-identical
 * checkpoints (with dropout, so each rank's random stream is exercised too). */
START_TEST(same_ranks_bit_identical) {
    NEED_MPI();
    const char *dir = tfm_test_tmpdir("mpi-repeat");
    make_data(dir);
    const char *a = sub(dir, "a"), *b = sub(dir, "b"), *tcp = sub(dir, "tcp"),
               *blocking = sub(dir, "blocking"), *a3 = sub(dir, "a3"),
               *blocking3 = sub(dir, "blocking3");
    char fa[1024], fb[1024];
    const char *extra = "--dropout 0.1 --save-every 10 --reduce-bucket 300";
    train(2, NULL, dir, 30, extra, a);
    train(2, NULL, dir, 30, extra, b);
    train(2, "--mca btl self,tcp", dir, 30, "--dropout 0.1 --save-every 10 --reduce-bucket 1000",
          tcp);
    train(2, "-x TFM_MPI_OVERLAP=0", dir, 30, extra, blocking);
    train(3, NULL, dir, 20, "--dropout 0.1 --reduce-bucket 200", a3);
    train(3, "-x TFM_MPI_OVERLAP=0", dir, 20, "--dropout 0.1", blocking3);
    snprintf(fa, sizeof fa, "%s/train.log", a);
    ck_assert_msg(file_has(fa, "buckets sent while backward goes on"), "%s: no buckets", fa);
    snprintf(fa, sizeof fa, "%s/train.log", blocking);
    ck_assert_msg(file_has(fa, "one exchange after backward"), "%s: not blocking", fa);
    for (int step = 10; step <= 30; step += 10) {
        snprintf(fa, sizeof fa, "%s/checkpoint-%08d.tfm", a, step);
        snprintf(fb, sizeof fb, "%s/checkpoint-%08d.tfm", b, step);
        check_same_file(fa, fb);
        snprintf(fb, sizeof fb, "%s/checkpoint-%08d.tfm", tcp, step);
        check_same_file(fa, fb);
        snprintf(fb, sizeof fb, "%s/checkpoint-%08d.tfm", blocking, step);
        check_same_file(fa, fb);
    }
    snprintf(fa, sizeof fa, "%s/checkpoint-%08d.tfm", a3, 20);
    snprintf(fb, sizeof fb, "%s/checkpoint-%08d.tfm", blocking3, 20);
    check_same_file(fa, fb);
    snprintf(fa, sizeof fa, "%s/best.tfm", a);
    snprintf(fb, sizeof fb, "%s/best.tfm", tcp);
    check_same_file(fa, fb);
    /* bf16 on the emulated GEMM: the note once, not once per rank */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "{ %s -x TFM_BF16_EMULATE=1 '%s' %s --precision bf16 --save %s 2>&1 >/dev/null; }",
             mpirun(2, NULL), tfm_test_bin(), train_args(dir, 2, NULL), sub(dir, "bf16"));
    run_ok(cmd); /* g_out: what the job wrote on stderr (stdout discarded) */
    ck_assert_msg(count_of(g_out, "emulated bf16 GEMM") == 1, "train: the bf16 note not once: %s",
                  g_out);
}
END_TEST

/* Ranks started differently are refused before training, naming the rank
 * and the setting; only rank 0 prints it. */
START_TEST(mismatch_refused) {
    NEED_MPI();
    const char *dir = tfm_test_tmpdir("mpi-mismatch");
    make_data(dir);
    char cmd[8192], args[2048];
    snprintf(args, sizeof args, "%s", train_args(dir, 5, NULL));
    snprintf(cmd, sizeof cmd, "%s '%s' %s --save %s/seed : -np 1 '%s' %s --seed 4 --save %s/seed",
             mpirun(1, NULL), tfm_test_bin(), args, dir, tfm_test_bin(), args, dir);
    int rc = tfm_test_run(cmd, g_out, sizeof g_out);
    ck_assert_msg(rc != 0, "a rank with another --seed was accepted:\n%s", g_out);
    ck_assert_msg(strstr(g_out, "tfm: rank 1: --seed (3 on rank 0) differs from rank 0's"),
                  "message does not name rank 1 and --seed:\n%s", g_out);
    char path[1024];
    snprintf(path, sizeof path, "%s/seed/checkpoint-00000005.tfm", dir);
    ck_assert_msg(access(path, F_OK) != 0, "the refused run trained anyway");

    /* the same flags, but rank 1 reads another train.en (its own working
     * directory): the corpus checksum differs */
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/r0 %s/r1 && cp %s/data/train.en %s/data/train.de %s/r0/ && "
             "cp %s/data/train.de %s/r1/ && sed 's/one/uno/' %s/data/train.en > %s/r1/train.en",
             dir, dir, dir, dir, dir, dir, dir, dir, dir);
    run_ok(cmd);
    snprintf(args, sizeof args,
             "train --src-train train.en --tgt-train train.de --bpe-merges 60 --d-model 16 "
             "--heads 2 --d-ff 32 --layers 1 --batch-tokens 300 --max-tokens 30 --steps 5 "
             "--threads 1 --quiet --save %s/corpus",
             dir);
    snprintf(cmd, sizeof cmd, "%s -wdir %s/r0 '%s' %s : -np 1 -wdir %s/r1 '%s' %s", mpirun(1, NULL),
             dir, tfm_test_bin(), args, dir, tfm_test_bin(), args);
    rc = tfm_test_run(cmd, g_out, sizeof g_out);
    ck_assert_msg(rc != 0, "a rank with another corpus was accepted:\n%s", g_out);
    ck_assert_msg(strstr(g_out, "tfm: rank 1: the text of --src-train train.en differs"),
                  "message does not name rank 1 and the corpus:\n%s", g_out);

    /* the toy tasks are one-process only */
    snprintf(cmd, sizeof cmd, "%s '%s' train --task copy --steps 2 --quiet", mpirun(2, NULL),
             tfm_test_bin());
    rc = tfm_test_run(cmd, g_out, sizeof g_out);
    ck_assert_msg(rc != 0 && strstr(g_out, "data parallelism needs a corpus"),
                  "toy task under mpirun (exit %d):\n%s", rc, g_out);
}
END_TEST

/* SIGKILL (signal "KILL") or SIGSTOP ("STOP") rank 1: every rank is gone
 * within 30 s, the message names rank 1, and --resume finishes
 * byte-identical to an uninterrupted run. */
static void lose_rank(const char *signal) {
    const char *dir = tfm_test_tmpdir(signal);
    make_data(dir);
    char cmd[8192], launcher[512];
    snprintf(launcher, sizeof launcher, "%s", mpirun(2, NULL));
    snprintf(
        cmd, sizeof cmd, "SIGNAL=%s MPIRUN='%s' TFM_BIN='%s' TRAIN_ARGS='%s' bash '%s' %s", signal,
        launcher, tfm_test_bin(),
        train_args(dir, 400, "--d-model 32 --d-ff 64 --dropout 0.1 --save-every 20 --keep 100"),
        tfm_test_path("tests/mpi/kill_rank.sh"), dir);
    int rc = tfm_test_run(cmd, g_out, sizeof g_out);
    printf("%s", g_out);
    ck_assert_msg(rc == 0, "tests/mpi/kill_rank.sh failed (exit %d):\n%s", rc, g_out);
}

START_TEST(killed_rank_then_resume) {
    NEED_MPI();
    lose_rank("KILL");
}
END_TEST

/* a stopped rank (or a network partition) is a hang unless someone gives up */
START_TEST(stalled_rank_then_resume) {
    NEED_MPI();
    lose_rank("STOP");
}
END_TEST

/* tfm bench allreduce times the reduction under mpirun and refuses to run
 * without it. */
START_TEST(bench_allreduce) {
    NEED_MPI();
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s' bench allreduce --preset toy --reps 3 --threads 1",
             mpirun(2, NULL), tfm_test_bin());
    run_ok(cmd);
    ck_assert_msg(strstr(g_out, "preset=toy ranks=2 bytes_per_step=") &&
                      strstr(g_out, "allreduce_ms_median="),
                  "%s", g_out);
    snprintf(cmd, sizeof cmd, "'%s' bench allreduce --preset toy", tfm_test_bin());
    int rc = tfm_test_run(cmd, g_out, sizeof g_out);
    ck_assert_msg(rc == 2 && strstr(g_out, "start it with mpirun"), "exit %d: %s", rc, g_out);
    /* bench step under mpirun: the ranks share the batch, and the part of
     * the sum that backward hides is reported */
    snprintf(cmd, sizeof cmd,
             "%s '%s' bench step --preset toy --threads 1 --steps 2 --warmup-steps 1 "
             "--reduce-bucket 100000",
             mpirun(2, NULL), tfm_test_bin());
    run_ok(cmd);
    long long buckets = 0;
    const char *at = strstr(g_out, "ranks=2 buckets=");
    ck_assert_msg(at && sscanf(at, "ranks=2 buckets=%lld", &buckets) == 1 && buckets >= 2 &&
                      strstr(g_out, "tokens_per_step=768 ") && strstr(g_out, "hidden_frac="),
                  "%s", g_out);
}
END_TEST

/* tfm translate under mpirun: the ranks share the sentences and rank 0
 * writes them in input order, byte-identical to one process; a bad input
 * is one error from rank 0. */
START_TEST(translate_split) {
    NEED_MPI();
    const char *dir = tfm_test_tmpdir("mpi-translate");
    char cmd[4096], path[1024];
    /* a copy model trained enough that every input gets its own output */
    snprintf(cmd, sizeof cmd,
             "'%s' train --task copy --steps 150 --d-model 32 --heads 2 --d-ff 64 --layers 1 "
             "--threads 1 --quiet --save %s/toy",
             tfm_test_bin(), dir);
    run_ok(cmd);
    snprintf(path, sizeof path, "%s/in.txt", dir);
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    uint64_t x = 7;
    for (int i = 0; i < 41; i++) { /* 41 lines of 1 to 8 symbols in [3, 13) */
        int len = 1 + (int)((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 61);
        for (int k = 0; k < len; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            fprintf(f, "%s%d", k ? " " : "", 3 + (int)((x >> 33) % 10));
        }
        fputc('\n', f);
    }
    fclose(f);
    const char *args = "translate --threads 1 --batch 4 --quiet";
    snprintf(cmd, sizeof cmd, "'%s' %s --model %s/toy < %s > %s/one.txt", tfm_test_bin(), args, dir,
             path, dir);
    run_ok(cmd);
    snprintf(cmd, sizeof cmd, "sort -u %s/one.txt | wc -l", dir);
    run_ok(cmd);
    ck_assert_msg(atoi(g_out) >= 20, "too few distinct translations to test the order: %s", g_out);
    for (int np = 2; np <= 3; np++) {
        snprintf(cmd, sizeof cmd, "%s '%s' %s --model %s/toy < %s > %s/np%d.txt", mpirun(np, NULL),
                 tfm_test_bin(), args, dir, path, dir, np);
        run_ok(cmd);
        char a[1024], b[1024];
        snprintf(a, sizeof a, "%s/one.txt", dir);
        snprintf(b, sizeof b, "%s/np%d.txt", dir, np);
        check_same_file(a, b);
    }
    /* bf16 on the emulated GEMM: the note once, not once per rank */
    snprintf(cmd, sizeof cmd,
             "{ %s -x TFM_BF16_EMULATE=1 '%s' %s --precision bf16 --model %s/toy < %s 2>&1 "
             ">/dev/null; }",
             mpirun(2, NULL), tfm_test_bin(), args, dir, path);
    run_ok(cmd); /* g_out: what the job wrote on stderr (stdout discarded) */
    ck_assert_msg(count_of(g_out, "emulated bf16 GEMM") == 1,
                  "translate: the bf16 note not once: %s", g_out);
    /* a missing input: rank 0 says so, once, and the job fails */
    snprintf(cmd, sizeof cmd, "%s '%s' %s --model %s/toy --input %s/missing.txt 2>&1",
             mpirun(2, NULL), tfm_test_bin(), args, dir, dir);
    int rc = tfm_test_run(cmd, g_out, sizeof g_out);
    const char *msg = strstr(g_out, "missing.txt: cannot open");
    ck_assert_msg(rc != 0 && msg && !strstr(msg + 1, "missing.txt: cannot open"), "exit %d: %s", rc,
                  g_out);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("mpi");
    TCase *tc = tcase_create("mpirun");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, ranks_train_like_one_process);
    tcase_add_test(tc, ranks_accumulate_like_one_process);
    tcase_add_test(tc, ranks_bpe_dropout);
    tcase_add_test(tc, same_ranks_bit_identical);
    tcase_add_test(tc, mismatch_refused);
    tcase_add_test(tc, killed_rank_then_resume);
    tcase_add_test(tc, stalled_rank_then_resume);
    tcase_add_test(tc, bench_allreduce);
    tcase_add_test(tc, translate_split);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tfm_test_main(suite()); }
