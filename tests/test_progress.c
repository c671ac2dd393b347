/* What a C program sees of a run through the library trainer (tfm/train.h),
 * in-process: progress lines on stdout when it is not a terminal, nothing
 * but the files with o.quiet, the run directory (config.txt, train.log,
 * metrics.csv), the on_step and on_log hooks (validation lines, early
 * stopping, a stop asked for by on_step), and the same hooks on a corpus run
 * (tfm_train_corpus). The tfm program's flags, config files and its own
 * summary lines are tested by spawning it in test_cli. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tfm/checkpoint.h"
#include "tfm/train.h"
#include "util_test.h"

static int line_starts(const char *text, const char *prefix) {
    size_t len = strlen(prefix);
    if (!strncmp(text, prefix, len)) return 1;
    for (const char *p = text; (p = strchr(p, '\n')) != NULL; p++)
        if (!strncmp(p + 1, prefix, len)) return 1;
    return 0;
}

static const char *join(const char *dir, const char *name) {
    static char buf[4][600];
    static int slot;
    char *out = buf[slot++ & 3], tmp[600];
    snprintf(tmp, sizeof tmp, "%s/%s", dir, name); /* dir may be an older slot */
    memcpy(out, tmp, sizeof tmp);
    return out;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* What the hooks saw. */
typedef struct {
    int64_t steps[64]; /* tr->step at each on_step call */
    int n_steps;
    int64_t stop_at; /* on_step asks to stop at this step (0: never) */
    char log[8192];  /* every on_log line, concatenated */
    int n_logs;
} probe;

static int probe_step(void *ctx, tfm_trainer *tr) {
    probe *p = ctx;
    if (p->n_steps < 64) p->steps[p->n_steps] = tr->step;
    p->n_steps++;
    return p->stop_at && tr->step == p->stop_at;
}

static void probe_log(void *ctx, tfm_trainer *tr, const char *line) {
    probe *p = ctx;
    (void)tr;
    size_t used = strlen(p->log);
    snprintf(p->log + used, sizeof p->log - used, "%s", line);
    p->n_logs++;
}

/* A validation metric that never improves after the first one. */
static int flat_metric(void *ctx, tfm_trainer *tr, tfm_valid_result *out) {
    (void)ctx;
    out->loss = 1.5;
    out->metric = 7.0;
    snprintf(out->text, sizeof out->text, "flat metric at %lld", (long long)tr->step);
    return 0;
}

/* The tiny copy task through the trainer with stdout captured; the result
 * of tfm_train (0 ok) and the trainer's step and stop reason after it. */
typedef struct {
    int rc;
    int64_t step;
    int stop_reason;
    char *out; /* what went to stdout (malloc'd) */
} run_result;

static run_result train_tiny(const tfm_train_opts *o, const tfm_train_hooks *h) {
    tfm_model_config mc = tfm_test_tiny_model();
    tfm_toy_source toy;
    ck_assert_int_eq(tfm_toy_source_init(&toy, &tfm_test_tiny_task, 8, o->seed), 0);
    run_result r = {0};
    tfm_test_stdout_begin();
    tfm_trainer tr;
    r.rc = tfm_trainer_init(&tr, o, &mc, &toy.source, h);
    if (r.rc == 0) {
        r.rc = tfm_train(&tr);
        r.step = tr.step;
        r.stop_reason = tr.stop_reason;
        tfm_trainer_free(&tr);
    }
    r.out = tfm_test_stdout_end();
    tfm_toy_source_free(&toy);
    ck_assert_msg(r.rc == 0, "%s", tfm_last_error());
    return r;
}

START_TEST(test_plain_lines_on_a_pipe) {
    const char *run = join(tfm_test_tmpdir("progress"), "run");
    tfm_train_opts o = tfm_test_tiny_opts(40, 1);
    o.quiet = 0;
    o.log_every = 10;
    o.run_dir = run;
    o.config_text = "task = copy\nsteps = 40\nd-model = 16\n";
    probe p = {0};
    tfm_train_hooks h = {.ctx = &p, .on_step = probe_step, .on_log = probe_log};
    run_result r = train_tiny(&o, &h);
    /* stdout is a file here, not a terminal: whole lines, no '\r' */
    ck_assert_msg(strchr(r.out, '\r') == NULL, "carriage return in piped output:\n%s", r.out);
    ck_assert_int_eq(tfm_test_count_lines(r.out, "step "), 4);
    ck_assert_msg(line_starts(r.out, "step 10/40 loss ") && line_starts(r.out, "step 40/40 loss "),
                  "%s", r.out);
    free(r.out);
    /* on_step after every update, in order */
    ck_assert_int_eq(p.n_steps, 40);
    for (int i = 0; i < 40; i++) ck_assert_int_eq(p.steps[i], i + 1);
    ck_assert_int_eq(r.stop_reason, 0);

    /* the run directory */
    char *csv = tfm_test_slurp(join(run, "metrics.csv"));
    ck_assert_msg(
        !strncmp(csv, "step,epoch,loss,lr,grad_norm,tokens_per_s,valid_loss,valid_bleu\n", 64),
        "%s", csv);
    ck_assert_int_eq(tfm_test_count_lines(csv, "10,"), 1);
    ck_assert_int_eq(tfm_test_count_lines(csv, "40,"), 1);
    int rows = 0;
    for (const char *c = csv; (c = strchr(c, '\n')); c++) rows++;
    ck_assert_int_eq(rows, 5); /* header + 4 */
    free(csv);
    char *log = tfm_test_slurp(join(run, "train.log"));
    ck_assert_int_eq(tfm_test_count_lines(log, "step "), 4);
    ck_assert_msg(strchr(log, '\r') == NULL, "carriage return in train.log");
    free(log);
    char *cfg = tfm_test_slurp(join(run, "config.txt"));
    ck_assert_str_eq(cfg, o.config_text);
    free(cfg);
    ck_assert(exists(join(run, "checkpoint-00000040.tfm")));
}
END_TEST

START_TEST(test_quiet) {
    const char *run = join(tfm_test_tmpdir("quiet"), "run");
    tfm_train_opts o = tfm_test_tiny_opts(30, 1);
    o.log_every = 10;
    o.run_dir = run;
    o.valid_every = 15;
    probe p = {0};
    tfm_train_hooks h = {
        .ctx = &p, .on_step = probe_step, .on_log = probe_log, .validate = flat_metric};
    run_result r = train_tiny(&o, &h);
    /* nothing on stdout; the hooks and the files still get everything */
    ck_assert_msg(r.out[0] == 0, "quiet output:\n%s", r.out);
    free(r.out);
    ck_assert_int_eq(p.n_steps, 30);
    ck_assert_int_eq(tfm_test_count_lines(p.log, "validation at step "), 2);
    char *log = tfm_test_slurp(join(run, "train.log"));
    ck_assert_int_eq(tfm_test_count_lines(log, "step "), 3);
    ck_assert_int_eq(tfm_test_count_lines(log, "validation at step "), 2);
    free(log);
    char *csv = tfm_test_slurp(join(run, "metrics.csv"));
    ck_assert_int_eq(tfm_test_count_lines(csv, "30,"), 2); /* progress and validation */
    free(csv);
}
END_TEST

/* Validation lines go to on_log, train.log and stdout alike; a metric that
 * stops improving ends the run after o.early_stop validations. */
START_TEST(test_validation_and_early_stop) {
    char run[400]; /* join's slots are reused */
    snprintf(run, sizeof run, "%s", join(tfm_test_tmpdir("early"), "run"));
    tfm_train_opts o = tfm_test_tiny_opts(40, 1);
    o.quiet = 0;
    o.run_dir = run;
    o.valid_every = 5;
    o.early_stop = 2;
    probe p = {0};
    tfm_train_hooks h = {
        .ctx = &p, .on_step = probe_step, .on_log = probe_log, .validate = flat_metric};
    run_result r = train_tiny(&o, &h);
    ck_assert_int_eq(r.stop_reason, 1);
    ck_assert_int_eq(r.step, 15); /* best at 5, no better at 10 and 15 */
    ck_assert_int_eq(p.n_steps, 15);
    ck_assert_int_eq(tfm_test_count_lines(p.log, "validation at step "), 3);
    ck_assert_msg(line_starts(p.log, "validation at step 5: flat metric at 5 (best)") &&
                      line_starts(p.log, "validation at step 15: flat metric at 15 ("),
                  "%s", p.log);
    ck_assert_msg(line_starts(p.log, "early stop: 2 validations without improvement"), "%s", p.log);
    /* every logged line is on stdout and in train.log too */
    char *log = tfm_test_slurp(join(run, "train.log"));
    for (const char *line = p.log; *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line + 1) : strlen(line);
        char one[512];
        snprintf(one, sizeof one, "%.*s", (int)n, line);
        ck_assert_msg(strstr(log, one) && strstr(r.out, one), "'%s' not in train.log or stdout",
                      one);
        line += n;
    }
    free(log);
    free(r.out);
    ck_assert(exists(join(run, "best.tfm")));
    ck_assert(exists(join(run, "checkpoint-00000015.tfm")));
    /* resumed, the run that stopped early stops again where it is (it used to
     * train on until the next validations failed to improve) */
    char *ck = tfm_test_slurp(join(run, "checkpoint-00000015.tfm"));
    o.resume = 1;
    probe again = {0};
    h.ctx = &again;
    r = train_tiny(&o, &h);
    free(r.out);
    ck_assert_int_eq(r.stop_reason, 1);
    ck_assert_int_eq(r.step, 15);
    ck_assert_int_eq(again.n_steps, 0);
    ck_assert_msg(line_starts(again.log, "early stop: 2 validations without improvement"), "%s",
                  again.log);
    char *ck2 = tfm_test_slurp(join(run, "checkpoint-00000015.tfm"));
    ck_assert_msg(!strcmp(ck, ck2) && !exists(join(run, "checkpoint-00000020.tfm")),
                  "the resumed run changed its checkpoints");
    free(ck);
    free(ck2);
}
END_TEST

/* A metric that peaks at step 27: between validations 20 and 30. */
static int peak_metric(void *ctx, tfm_trainer *tr, tfm_valid_result *out) {
    (void)ctx;
    double d = (double)(tr->step - 27);
    out->loss = 1.0;
    out->metric = -d * d;
    snprintf(out->text, sizeof out->text, "peak metric %g", out->metric);
    return 0;
}

/* metrics.csv without its tokens_per_s column (the only one that is timing) */
static char *metrics_without_speed(const char *path) {
    char *csv = tfm_test_slurp(path), *out = malloc(strlen(csv) + 1), *o = out;
    ck_assert_ptr_nonnull(out);
    int field = 0;
    for (const char *c = csv; *c; c++) {
        if (*c == '\n') field = -1;
        if (field != 5) *o++ = *c;
        if (*c == ',' || *c == '\n') field++;
    }
    *o = 0;
    free(csv);
    return out;
}

/* A run that ends between its grids (--steps 27: no log line, no
 * validation there otherwise) logs and validates at 27, and that validation
 * is its best; resumed to 60, the run is the one straight through: the same
 * checkpoints, best.tfm (step 30, not 27), metrics rows, and an early stop
 * at the same step. The third run is killed after the end's best.tfm and
 * before its checkpoint (checkpoint-27 removed): the resume from step 20
 * puts the best.tfm of step 20 back. */
START_TEST(test_end_between_grids_then_resume) {
    char dirs[3][400];
    snprintf(dirs[0], sizeof dirs[0], "%s", join(tfm_test_tmpdir("endgrid"), "straight"));
    snprintf(dirs[1], sizeof dirs[1], "%s", join(tfm_test_tmpdir("endgrid"), "resumed"));
    snprintf(dirs[2], sizeof dirs[2], "%s", join(tfm_test_tmpdir("endgrid"), "killed"));
    tfm_train_hooks h = {.validate = peak_metric};
    for (int run = 0; run < 3; run++) {
        tfm_train_opts o = tfm_test_tiny_opts(run ? 27 : 60, 1);
        o.run_dir = dirs[run];
        o.valid_every = 10;
        o.log_every = 10;
        o.early_stop = 2; /* 30 best, 40 and 50 not: stops at 50 */
        run_result r = train_tiny(&o, &h);
        free(r.out);
        if (run) {
            ck_assert_int_eq(r.step, 27);
            ck_assert(exists(join(dirs[run], "best-before-stop.tfm"))); /* best.tfm is 27's */
            if (run == 2) ck_assert_int_eq(unlink(join(dirs[2], "checkpoint-00000027.tfm")), 0);
            o.steps = 60;
            o.resume = 1;
            r = train_tiny(&o, &h);
            free(r.out);
        }
        ck_assert_int_eq(r.step, 50);
        ck_assert_int_eq(r.stop_reason, 1);
    }
    for (int run = 1; run < 3; run++) {
        ck_assert(!exists(join(dirs[run], "best-before-stop.tfm")));
        const char *files[] = {"checkpoint-00000040.tfm", "checkpoint-00000050.tfm", "best.tfm"};
        for (int i = 0; i < 3; i++) {
            char a[600], b[600];
            snprintf(a, sizeof a, "%s", join(dirs[0], files[i]));
            snprintf(b, sizeof b, "%s", join(dirs[run], files[i]));
            tfm_checkpoint ca, cb;
            ck_assert_msg(tfm_checkpoint_read(a, &ca) == 0 && tfm_checkpoint_read(b, &cb) == 0,
                          "%s", tfm_last_error());
            ck_assert_msg(ca.size == cb.size && !memcmp(ca.buf, cb.buf, ca.size), "%s differs",
                          files[i]);
            tfm_checkpoint_free(&ca);
            tfm_checkpoint_free(&cb);
        }
        /* (the killed run: the rows after the checkpoint resumed from go, 27's too) */
        char *ma = metrics_without_speed(join(dirs[0], "metrics.csv")),
             *mb = metrics_without_speed(join(dirs[run], "metrics.csv"));
        ck_assert_str_eq(ma, mb);
        free(ma);
        free(mb);
    }
}
END_TEST

/* A non-zero return from on_step ends the run there, with its checkpoint. */
START_TEST(test_on_step_stops) {
    const char *run = join(tfm_test_tmpdir("onstep"), "run");
    tfm_train_opts o = tfm_test_tiny_opts(40, 1);
    o.run_dir = run;
    probe p = {.stop_at = 7};
    tfm_train_hooks h = {.ctx = &p, .on_step = probe_step};
    run_result r = train_tiny(&o, &h);
    free(r.out);
    ck_assert_int_eq(r.stop_reason, 3);
    ck_assert_int_eq(r.step, 7);
    ck_assert_int_eq(p.n_steps, 7);
    ck_assert(exists(join(run, "checkpoint-00000007.tfm")));
    ck_assert(!exists(join(run, "checkpoint-00000008.tfm")));
}
END_TEST

/* tfm_train_corpus passes the caller's on_step and on_log through, beside
 * its own validation (loss, perplexity, BLEU). */
START_TEST(test_corpus_hooks) {
    const char *root = tfm_test_tmpdir("progress-corpus");
    const char *data = join(root, "data");
    tfm_test_numbers_corpus_write(data);
    probe p = {0};
    tfm_train_hooks h = {.ctx = &p, .on_step = probe_step, .on_log = probe_log};
    tfm_test_corpus_files files;
    tfm_corpus_task task = tfm_test_numbers_task(data, &files);
    task.hooks = &h;
    tfm_model_config mc = tfm_test_tiny_model(); /* the vocabulary comes from the corpus */
    tfm_train_opts o = tfm_test_tiny_opts(8, 1);
    o.schedule.lr = 1.0;
    o.valid_every = 4;
    o.run_dir = join(root, "run");
    tfm_corpus_summary sum;
    ck_assert_msg(tfm_train_corpus(&task, &o, &mc, &sum) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(sum.steps, 8);
    ck_assert_int_eq(p.n_steps, 8);
    for (int i = 0; i < 8; i++) ck_assert_int_eq(p.steps[i], i + 1);
    ck_assert_msg(line_starts(p.log, "corpus ") && strstr(p.log, "60 pairs"), "%s", p.log);
    ck_assert_int_eq(tfm_test_count_lines(p.log, "validation at step "), 2);
    ck_assert_msg(strstr(p.log, "validation at step 8") && strstr(p.log, " BLEU "), "%s", p.log);
}
END_TEST

Suite *progress_suite(void) {
    Suite *s = suite_create("progress");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_plain_lines_on_a_pipe);
    tcase_add_test(tc, test_quiet);
    tcase_add_test(tc, test_validation_and_early_stop);
    tcase_add_test(tc, test_end_between_grids_then_resume);
    tcase_add_test(tc, test_on_step_stops);
    tcase_add_test(tc, test_corpus_hooks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tfm_test_main(progress_suite()); }
