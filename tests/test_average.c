/* Checkpoint averaging: the mean of two checkpoints is their element-wise
 * mean, a checkpoint averaged with itself is bit-identical, checkpoints of
 * different configurations are refused by name, and `tfm average` (files or
 * --last N of a run) writes a checkpoint that translate and export accept. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tfm/average.h"
#include "tfm/base.h"
#include "tfm/checkpoint.h"
#include "tfm/nn.h"
#include "tfm/train.h"
#include "util_test.h"

static void small_config(tfm_model_config *c) {
    tfm_model_config_default(c);
    c->vocab = 11;
    c->d_model = 8;
    c->n_heads = 2;
    c->d_ff = 16;
    c->enc_layers = c->dec_layers = 1;
    c->max_len = 12;
}

/* A checkpoint of a random model in dir/name; returns its path. */
static const char *save_model(const char *dir, const char *name, const tfm_model_config *c,
                              uint64_t seed, const char *kind) {
    static char paths[8][512];
    static int slot;
    char *path = paths[slot++ & 7];
    snprintf(path, 512, "%s/%s", dir, name);
    tfm_model m;
    ck_assert_int_eq(tfm_model_init(&m, c), 0);
    tfm_model_init_weights(&m, seed);
    tfm_kv meta;
    tfm_kv_init(&meta);
    tfm_model_config_to_kv(c, &meta);
    tfm_kv_set(&meta, "data.kind", "%s", kind);
    tfm_kv_set(&meta, "train.step", "%llu", (unsigned long long)seed);
    ck_assert_msg(tfm_checkpoint_save(path, &meta, &m.params, NULL, 0) == 0, "%s",
                  tfm_last_error());
    tfm_kv_free(&meta);
    tfm_model_free(&m);
    return path;
}

/* The parameter block of a checkpoint file as floats (n_floats of them). */
static float *read_block(const char *path, int64_t *n, tfm_checkpoint *keep) {
    tfm_checkpoint ck;
    ck_assert_msg(tfm_checkpoint_read(path, &ck) == 0, "%s", tfm_last_error());
    float *x = malloc((size_t)ck.n_floats * sizeof *x);
    ck_assert_ptr_nonnull(x);
    memcpy(x, ck.blocks, (size_t)ck.n_floats * sizeof *x);
    *n = ck.n_floats;
    if (keep)
        *keep = ck;
    else
        tfm_checkpoint_free(&ck);
    return x;
}

/* tfm translate and tfm export both accept DIR/run/averaged.tfm */
static void translates_and_exports(const char *dir) {
    char cmd[2048], out[8192];
    snprintf(cmd, sizeof cmd, "echo '3 4 5' | %s translate --model %s/run/averaged.tfm",
             tfm_test_bin(), dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strlen(out) > 1, "no translation: \"%s\"", out);
    snprintf(cmd, sizeof cmd, "%s export --model %s/run/averaged.tfm --out %s/export",
             tfm_test_bin(), dir, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "exported ") != NULL, "%s", out);
}

START_TEST(mean_of_two_is_elementwise_mean) {
    const char *dir = tfm_test_tmpdir("avg-two");
    tfm_model_config c;
    small_config(&c);
    const char *a = save_model(dir, "a.tfm", &c, 1, "toy");
    const char *b = save_model(dir, "b.tfm", &c, 2, "toy");
    char out[512];
    snprintf(out, sizeof out, "%s/avg.tfm", dir);
    const char *in[] = {a, b};
    ck_assert_msg(tfm_checkpoint_average(in, 2, out) == 0, "%s", tfm_last_error());
    int64_t na, nb, nm;
    float *xa = read_block(a, &na, NULL), *xb = read_block(b, &nb, NULL);
    tfm_checkpoint ck;
    float *xm = read_block(out, &nm, &ck);
    ck_assert_int_eq(na, nb);
    ck_assert_int_eq(na, nm);
    int64_t differ = 0;
    for (int64_t i = 0; i < na; i++) {
        float want = (float)(((double)xa[i] + (double)xb[i]) / 2.0);
        ck_assert_msg(xm[i] == want, "float %lld: %.9g, want (%.9g + %.9g) / 2 = %.9g",
                      (long long)i, (double)xm[i], (double)xa[i], (double)xb[i], (double)want);
        differ += xa[i] != xb[i];
    }
    ck_assert_int_gt(differ, na / 2); /* the two really are different models */
    /* metadata: the last input's, plus what was averaged */
    ck_assert_str_eq(tfm_kv_get(&ck.meta, "train.step"), "2");
    ck_assert_str_eq(tfm_kv_get(&ck.meta, "average.count"), "2");
    char inputs[1100];
    snprintf(inputs, sizeof inputs, "%s %s", a, b);
    ck_assert_str_eq(tfm_kv_get(&ck.meta, "average.inputs"), inputs);
    /* and it is a model */
    tfm_model m;
    ck_assert_msg(tfm_model_from_checkpoint(&m, &ck) == 0, "%s", tfm_last_error());
    ck_assert_float_eq(m.params.items[3]->data[1], xm[ck.offsets[3] + 1]);
    tfm_model_free(&m);
    tfm_checkpoint_free(&ck);
    free(xa);
    free(xb);
    free(xm);
}
END_TEST

START_TEST(average_with_itself_is_bit_identical) {
    const char *dir = tfm_test_tmpdir("avg-self");
    tfm_model_config c;
    small_config(&c);
    /* weights with a negative zero, a subnormal and large values in them */
    tfm_model m;
    ck_assert_int_eq(tfm_model_init(&m, &c), 0);
    tfm_model_init_weights(&m, 3);
    m.params.items[0]->data[0] = -0.0f;
    m.params.items[0]->data[1] = 1e-40f;
    m.params.items[0]->data[2] = 3e38f;
    m.params.items[0]->data[3] = -3e38f;
    tfm_kv meta;
    tfm_kv_init(&meta);
    tfm_model_config_to_kv(&c, &meta);
    char a[512], out[512];
    snprintf(a, sizeof a, "%s/a.tfm", dir);
    snprintf(out, sizeof out, "%s/avg.tfm", dir);
    ck_assert_int_eq(tfm_checkpoint_save(a, &meta, &m.params, NULL, 0), 0);
    tfm_kv_free(&meta);
    tfm_model_free(&m);
    int64_t n, n2;
    float *x = read_block(a, &n, NULL);
    for (int copies = 1; copies <= 5; copies++) {
        const char *in[5] = {a, a, a, a, a};
        ck_assert_msg(tfm_checkpoint_average(in, copies, out) == 0, "%s", tfm_last_error());
        float *y = read_block(out, &n2, NULL);
        ck_assert_int_eq(n, n2);
        ck_assert_msg(memcmp(x, y, (size_t)n * sizeof *x) == 0,
                      "%d copies: the average is not bit-identical", copies);
        free(y);
    }
    ck_assert(signbit(x[0]));
    /* the output may be one of the inputs (it is written after all are read) */
    const char *in2[2] = {a, a};
    ck_assert_int_eq(tfm_checkpoint_average(in2, 2, a), 0);
    float *z = read_block(a, &n2, NULL);
    ck_assert_msg(memcmp(x, z, (size_t)n * sizeof *x) == 0, "rewritten in place differs");
    free(z);
    free(x);
}
END_TEST

static void expect_refused(const char *a, const char *b, const char *out, const char *needle) {
    const char *in[] = {a, b};
    ck_assert_int_ne(tfm_checkpoint_average(in, 2, out), 0);
    ck_assert_msg(strstr(tfm_last_error(), needle) != NULL, "error \"%s\" lacks \"%s\"",
                  tfm_last_error(), needle);
}

START_TEST(different_configurations_are_refused) {
    const char *dir = tfm_test_tmpdir("avg-mismatch");
    tfm_model_config c, wide, shared, pre;
    small_config(&c);
    wide = c;
    wide.d_model = 16;
    shared = c;
    shared.share_src_emb = 1;
    pre = c;
    pre.pre_ln = 1;
    const char *a = save_model(dir, "a.tfm", &c, 1, "toy");
    char out[512], want[1200];
    snprintf(out, sizeof out, "%s/avg.tfm", dir);
    snprintf(want, sizeof want, "%s/wide.tfm has model.d_model = 16 but %s has model.d_model = 8",
             dir, a);
    expect_refused(a, save_model(dir, "wide.tfm", &wide, 1, "toy"), out, want);
    expect_refused(a, save_model(dir, "shared.tfm", &shared, 1, "toy"), out,
                   "model.share_src_emb = 1 but");
    expect_refused(a, save_model(dir, "pre.tfm", &pre, 1, "toy"), out, "model.pre_ln = 1 but");
    expect_refused(a, save_model(dir, "text.tfm", &c, 1, "text"), out, "has data.kind = text but");
    ck_assert(strstr(tfm_last_error(), "different configurations cannot be averaged"));
    /* same configuration keys, different tensors (a hand-made parameter set) */
    tfm_params p;
    tfm_params_init(&p);
    tfm_checkpoint ck;
    ck_assert_int_eq(tfm_checkpoint_read(a, &ck), 0);
    for (int64_t i = 0; i < ck.n_tensors; i++)
        tfm_params_add(&p, i == 2 ? "renamed" : ck.names[i], ck.ndims[i], ck.shapes[i]);
    ck_assert_int_eq(tfm_params_alloc(&p), 0);
    char odd[512];
    snprintf(odd, sizeof odd, "%s/odd.tfm", dir);
    ck_assert_int_eq(tfm_checkpoint_save(odd, &ck.meta, &p, NULL, 0), 0);
    tfm_params_free(&p);
    tfm_checkpoint_free(&ck);
    expect_refused(a, odd, out, "tensor 3 of");
    ck_assert(strstr(tfm_last_error(), "is renamed"));
    /* nothing was written by the refusals; a missing input is named */
    ck_assert_int_ne(access(out, F_OK), 0);
    char missing[512];
    snprintf(missing, sizeof missing, "%s/missing.tfm", dir);
    expect_refused(a, missing, out, "missing.tfm: cannot open checkpoint");
    const char *none[1] = {a};
    ck_assert_int_ne(tfm_checkpoint_average(none, 0, out), 0);
    /* the dropout rates are training-only (a resume may change them): they
     * need not match, nor may a rate written only when not the default */
    tfm_model_config drop = c;
    drop.dropout = 0.3f;
    drop.attn_dropout = 0.1f;
    drop.ffn_dropout = 0.0f;
    const char *pair[2] = {a, save_model(dir, "drop.tfm", &drop, 2, "toy")};
    ck_assert_msg(tfm_checkpoint_average(pair, 2, out) == 0, "%s", tfm_last_error());
}
END_TEST

/* ---- the command -------------------------------------------------------------- */

START_TEST(cli_average_last_n_translates_and_exports) {
    const char *dir = tfm_test_tmpdir("avg-cli");
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd,
             "%s train --task copy --d-model 16 --heads 2 --d-ff 32 --layers 1 --vocab 8 "
             "--max-len 5 --batch 8 --warmup 10 --threads 1 --eval-n 1 --quiet --steps 40 "
             "--save-every 10 --keep 3 --save %s/run",
             tfm_test_bin(), dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    /* --last 3: the newest three, oldest first */
    snprintf(cmd, sizeof cmd, "%s average --out %s/run/averaged.tfm --last 3 %s/run",
             tfm_test_bin(), dir, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    char want[2048];
    snprintf(want, sizeof want,
             "averaged 3 checkpoints into %s/run/averaged.tfm: %s/run/checkpoint-00000020.tfm "
             "%s/run/checkpoint-00000030.tfm %s/run/checkpoint-00000040.tfm\n",
             dir, dir, dir, dir);
    ck_assert_str_eq(out, want);
    /* the same files given by name give the same bytes of weights */
    snprintf(cmd, sizeof cmd,
             "%s average --out %s/byname.tfm %s/run/checkpoint-00000020.tfm "
             "%s/run/checkpoint-00000030.tfm %s/run/checkpoint-00000040.tfm",
             tfm_test_bin(), dir, dir, dir, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/run/averaged.tfm", dir);
    snprintf(p2, sizeof p2, "%s/byname.tfm", dir);
    int64_t n1, n2;
    float *x1 = read_block(p1, &n1, NULL), *x2 = read_block(p2, &n2, NULL);
    ck_assert_int_eq(n1, n2);
    ck_assert(memcmp(x1, x2, (size_t)n1 * sizeof *x1) == 0);
    free(x1);
    free(x2);
    translates_and_exports(dir); /* translate and export accept it */

    /* errors: one line, non-zero */
    snprintf(cmd, sizeof cmd, "%s average --out %s/x.tfm --last 4 %s/run", tfm_test_bin(), dir,
             dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    snprintf(want, sizeof want,
             "tfm: --last 4: %s/run holds 3 checkpoints (checkpoint-<step>.tfm)\n", dir);
    ck_assert_str_eq(out, want);
    snprintf(cmd, sizeof cmd, "%s average --last 2 %s/run", tfm_test_bin(), dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_str_eq(out, "tfm: average: --out FILE is required\n");
    snprintf(cmd, sizeof cmd, "%s average --out %s/x.tfm --last 0 %s/run", tfm_test_bin(), dir,
             dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_str_eq(out, "tfm: --last: 0: must be at least 1\n");
    snprintf(cmd, sizeof cmd, "%s average --out %s/x.tfm --last 2 %s/run %s/run", tfm_test_bin(),
             dir, dir, dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "--last N takes one run directory") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd, "%s average --out %s/x.tfm", tfm_test_bin(), dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "no checkpoint given") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd, "%s average --out %s/x.tfm --last 1 %s/nowhere", tfm_test_bin(), dir,
             dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "nowhere: cannot open the run directory") != NULL, "%s", out);
    /* a different configuration, by name */
    snprintf(cmd, sizeof cmd,
             "%s train --task copy --d-model 8 --heads 2 --d-ff 32 --layers 1 --vocab 8 "
             "--max-len 5 --batch 8 --threads 1 --eval-n 1 --quiet --steps 1 --save %s/other",
             tfm_test_bin(), dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(cmd, sizeof cmd,
             "%s average --out %s/x.tfm %s/run/averaged.tfm %s/other/checkpoint-00000001.tfm",
             tfm_test_bin(), dir, dir, dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "other/checkpoint-00000001.tfm has model.d_model = 8 but") != NULL,
                  "%s", out);
}
END_TEST

/* ---- tfm train --average-last and --init ----------------------------------------- */

static char *log_of(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/train.log", dir);
    return tfm_test_slurp(path);
}

static int same_weights(const char *p1, const char *p2) {
    int64_t n1, n2;
    float *x1 = read_block(p1, &n1, NULL), *x2 = read_block(p2, &n2, NULL);
    int same = n1 == n2 && !memcmp(x1, x2, (size_t)n1 * sizeof *x1);
    free(x1);
    free(x2);
    return same;
}

START_TEST(train_average_last_writes_the_mean_of_the_last_checkpoints) {
    const char *dir = tfm_test_tmpdir("avg-train");
    char cmd[4096], out[16384], p1[600], p2[600];
    const char *toy = "train --task copy --d-model 16 --heads 2 --d-ff 32 --layers 1 --vocab 8 "
                      "--max-len 5 --batch 8 --warmup 10 --threads 1 --eval-n 1 --quiet "
                      "--steps 40 --save-every 10";
    /* --keep 1 is raised to 3: the trainer keeps what it averages */
    snprintf(cmd, sizeof cmd, "%s %s --keep 1 --average-last 3 --save %s/run", tfm_test_bin(), toy,
             dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s %s --save %s/plain", tfm_test_bin(), toy, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    for (int step = 20; step <= 40; step += 10) {
        snprintf(cmd, sizeof cmd, "test -s %s/run/checkpoint-%08d.tfm", dir, step);
        ck_assert_msg(tfm_test_run(cmd, NULL, 0) == 0, "checkpoint %d not kept", step);
    }
    /* training itself is unchanged by the option */
    snprintf(p1, sizeof p1, "%s/run/checkpoint-00000040.tfm", dir);
    snprintf(p2, sizeof p2, "%s/plain/checkpoint-00000040.tfm", dir);
    ck_assert_msg(same_weights(p1, p2), "--average-last changed the training");
    /* averaged.tfm is tfm average of the last three */
    snprintf(cmd, sizeof cmd, "%s average --out %s/byhand.tfm --last 3 %s/run", tfm_test_bin(), dir,
             dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(p1, sizeof p1, "%s/run/averaged.tfm", dir);
    snprintf(p2, sizeof p2, "%s/byhand.tfm", dir);
    ck_assert_msg(same_weights(p1, p2), "averaged.tfm is not the mean of the last 3");
    char run[600];
    snprintf(run, sizeof run, "%s/run", dir);
    char *log = log_of(run);
    ck_assert_msg(strstr(log, "averaged.tfm: the mean of the last 3 checkpoints "
                              "(checkpoint-00000020.tfm .. checkpoint-00000040.tfm)\n"),
                  "%s", log);
    free(log);
    translates_and_exports(dir); /* translate and export accept it */
    /* fewer checkpoints than asked for: those there are, said in the log */
    snprintf(cmd, sizeof cmd,
             "%s train --task copy --d-model 16 --heads 2 --d-ff 32 --layers 1 --vocab 8 "
             "--max-len 5 --batch 8 --threads 1 --eval-n 1 --quiet --steps 10 --save-every 5 "
             "--average-last 4 --save %s/short",
             tfm_test_bin(), dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(run, sizeof run, "%s/short", dir);
    log = log_of(run);
    ck_assert_msg(strstr(log, "averaged.tfm: the mean of the last 2 checkpoints") &&
                      strstr(log, "fewer than --average-last"),
                  "%s", log);
    free(log);
    /* flag errors: one line naming the flag, exit 2 */
    static const struct {
        const char *args, *want;
    } bad[] = {
        {"--average-last 2 --save-every 0 --save %s/e1",
         "tfm: --average-last: no checkpoints to average: give --save-every N (or validate)\n"},
        {"--average-last -1 --save %s/e2", "tfm: --average-last: must not be negative\n"},
        {"--average-last 2 --save-every 5", "tfm: --average-last needs --save DIR\n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[1024];
        snprintf(args, sizeof args, bad[i].args, dir);
        snprintf(cmd, sizeof cmd, "%s train --task copy --steps 10 %s", tfm_test_bin(), args);
        ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
        ck_assert_str_eq(out, bad[i].want);
    }
}
END_TEST

/* A new directory under tag with the numbers corpus written in data
 * (DIR/data) and run naming DIR/run (not created). */
static void numbers_dirs(const char *tag, char data[600], char run[600]) {
    const char *root = tfm_test_tmpdir(tag);
    snprintf(data, 600, "%s/data", root);
    snprintf(run, 600, "%s/run", root);
    tfm_test_numbers_corpus_write(data);
}

/* With validation, averaged.tfm is scored too (logged, not best.tfm's). */
START_TEST(train_average_last_is_validated) {
    char data[600], run[600];
    numbers_dirs("avg-valid", data, run);
    tfm_test_corpus_files files;
    tfm_corpus_task task = tfm_test_numbers_task(data, &files);
    tfm_model_config mc = tfm_test_tiny_model();
    tfm_train_opts o = tfm_test_tiny_opts(8, 1);
    o.schedule.lr = 1.0;
    o.valid_every = 4;
    o.average_last = 2;
    o.run_dir = run;
    tfm_corpus_summary sum;
    ck_assert_msg(tfm_train_corpus(&task, &o, &mc, &sum) == 0, "%s", tfm_last_error());
    char *log = log_of(run);
    ck_assert_msg(strstr(log, "averaged.tfm: the mean of the last 2 checkpoints "
                              "(checkpoint-00000004.tfm .. checkpoint-00000008.tfm)\n"),
                  "%s", log);
    const char *v = strstr(log, "validation of averaged.tfm: loss ");
    ck_assert_msg(v && strstr(v, " BLEU "), "%s", log);
    ck_assert_int_eq(tfm_test_count_lines(log, "validation at step "), 2);
    free(log);
}
END_TEST

/* tfm_train_corpus refuses a bad validation search before any step: a beam
 * of 0 and a stopping rule that is neither (a library caller's values). */
START_TEST(train_corpus_checks_the_validation_search) {
    char data[600], run[600];
    numbers_dirs("avg-search", data, run);
    tfm_test_corpus_files files;
    tfm_model_config mc = tfm_test_tiny_model();
    tfm_train_opts o = tfm_test_tiny_opts(2, 1);
    o.run_dir = run;
    tfm_corpus_summary sum;
    tfm_corpus_task task = tfm_test_numbers_task(data, &files);
    task.decode.beam = 0;
    ck_assert_int_eq(tfm_train_corpus(&task, &o, &mc, &sum), 1);
    ck_assert_str_eq(tfm_last_error(), "--beam: must be between 1 and 64");
    task = tfm_test_numbers_task(data, &files);
    task.decode.beam_stop = (tfm_beam_stop)7;
    ck_assert_int_eq(tfm_train_corpus(&task, &o, &mc, &sum), 1);
    ck_assert_str_eq(tfm_last_error(), "--beam-stop: rule 7 is not finished (0) or bound (1)");
    ck_assert_int_ne(access(run, F_OK), 0); /* nothing written */
}
END_TEST

/* Trains the tiny copy task: run_dir (NULL: none), init_from (NULL: none),
 * the d_ff of the model; returns the trainer's status; *params receives the
 * final weights (malloc'd) when non-NULL. */
static int tiny_run(const char *run_dir, const char *init_from, int64_t steps, int64_t d_ff,
                    const float *start, float **params, int64_t *step) {
    tfm_model_config mc = tfm_test_tiny_model();
    mc.d_ff = d_ff;
    tfm_train_opts o = tfm_test_tiny_opts(steps, 1);
    o.run_dir = run_dir;
    o.init_from = init_from;
    o.config_text = "run = toy\n";
    tfm_toy_source toy;
    tfm_trainer tr;
    ck_assert_int_eq(tfm_toy_source_init(&toy, &tfm_test_tiny_task, 8, o.seed), 0);
    if (tfm_trainer_init(&tr, &o, &mc, &toy.source, NULL)) {
        tfm_toy_source_free(&toy);
        return 1;
    }
    if (start) /* by hand: the weights, nothing else */
        memcpy(tr.params->data, start, (size_t)tr.params->total_n * sizeof(float));
    int rc = tfm_train(&tr);
    if (params) {
        *params = malloc((size_t)tr.params->total_n * sizeof(float));
        ck_assert_ptr_nonnull(*params);
        memcpy(*params, tr.params->data, (size_t)tr.params->total_n * sizeof(float));
    }
    if (step) *step = tr.step;
    tfm_trainer_free(&tr);
    tfm_toy_source_free(&toy);
    return rc;
}

START_TEST(train_init_starts_fresh_from_the_weights) {
    const char *root = tfm_test_tmpdir("init");
    char a[600], b[600], ck[700], bad_dir[600];
    snprintf(a, sizeof a, "%s/a", root);
    snprintf(b, sizeof b, "%s/b", root);
    snprintf(bad_dir, sizeof bad_dir, "%s/bad", root);
    snprintf(ck, sizeof ck, "%s/checkpoint-00000020.tfm", a);
    float *wa, *wb, *wref;
    ck_assert_msg(tiny_run(a, NULL, 20, 32, NULL, &wa, NULL) == 0, "%s", tfm_last_error());
    /* --init: A's weights, then 10 steps from step 1 with a fresh Adam and
     * the data from its start: what the same run does from A's weights
     * copied in by hand */
    int64_t step = 0;
    ck_assert_msg(tiny_run(b, ck, 10, 32, NULL, &wb, &step) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(step, 10);
    ck_assert_msg(tiny_run(NULL, NULL, 10, 32, wa, &wref, NULL) == 0, "%s", tfm_last_error());
    tfm_model_config mc = tfm_test_tiny_model();
    int64_t n = tfm_model_param_count(&mc);
    ck_assert_msg(!memcmp(wb, wref, (size_t)n * sizeof *wb),
                  "--init is not a fresh run from the checkpoint's weights");
    ck_assert_msg(memcmp(wb, wa, (size_t)n * sizeof *wb), "no training after --init");
    char *log = log_of(b);
    ck_assert_msg(strstr(log, "(--init); a fresh optimizer from step 0"), "%s", log);
    free(log);
    /* another configuration, a file that is not there: refused by name */
    ck_assert_int_ne(tiny_run(bad_dir, ck, 10, 48, NULL, NULL, NULL), 0);
    char want[1200];
    snprintf(want, sizeof want,
             "--init %s: the model configuration differs from the one given: d_ff is 32 in the "
             "checkpoint, 48 now",
             ck);
    ck_assert_str_eq(tfm_last_error(), want);
    snprintf(ck, sizeof ck, "%s/nowhere.tfm", a);
    ck_assert_int_ne(tiny_run(bad_dir, ck, 10, 32, NULL, NULL, NULL), 0);
    ck_assert_msg(strstr(tfm_last_error(), "nowhere.tfm"), "%s", tfm_last_error());
    free(wa);
    free(wb);
    free(wref);
}
END_TEST

/* tfm train --init on a corpus takes the BPE and vocabulary of the
 * checkpoint's run and records the --bpe-merges that made them; another
 * --bpe-merges given is refused by name. */
START_TEST(cli_init_takes_the_vocabulary_beside_the_checkpoint) {
    const char *dir = tfm_test_tmpdir("init-cli");
    static char cmd[8192], out[16384];
    snprintf(cmd, sizeof cmd, "%s data numbers --out %s/data --train 200 --valid 10 --test 10",
             tfm_test_bin(), dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    char common[2048];
    snprintf(common, sizeof common,
             "--src-train %s/data/train.de --tgt-train %s/data/train.en --batch-tokens 256 "
             "--d-model 16 --heads 2 --d-ff 32 --layers 1 --threads 1 --quiet --steps 5",
             dir, dir);
    snprintf(cmd, sizeof cmd, "%s train %s --bpe-merges 60 --save %s/a", tfm_test_bin(), common,
             dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(cmd, sizeof cmd,
             "%s train %s --bpe-merges 30 --init %s/a/checkpoint-00000005.tfm --save %s/b",
             tfm_test_bin(), common, dir, dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "tfm: --bpe-merges 30: the --init run ") &&
                      strstr(out, "/a was trained with 60") &&
                      tfm_test_count_lines(out, "tfm: ") == 1,
                  "%s", out);
    snprintf(cmd, sizeof cmd, "%s train %s --init %s/a/checkpoint-00000005.tfm --save %s/b",
             tfm_test_bin(), common, dir, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(cmd, sizeof cmd, "grep -qx 'bpe-merges = 60' %s/b/config.txt", dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "b/config.txt: not bpe-merges = 60");
    snprintf(cmd, sizeof cmd,
             "cmp %s/a/vocab.txt %s/b/vocab.txt && cmp %s/a/bpe.codes %s/b/bpe.codes", dir, dir,
             dir, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s translate --model %s/b < %s/data/test.de", tfm_test_bin(), dir,
             dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    /* a missing checkpoint: one line naming it */
    snprintf(cmd, sizeof cmd, "%s train %s --init %s/a/none.tfm --save %s/c", tfm_test_bin(),
             common, dir, dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "none.tfm") && tfm_test_count_lines(out, "tfm: ") == 1, "%s", out);
}
END_TEST

int main(void) {
    Suite *s = suite_create("average");
    TCase *tc = tcase_create("average");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, mean_of_two_is_elementwise_mean);
    tcase_add_test(tc, average_with_itself_is_bit_identical);
    tcase_add_test(tc, different_configurations_are_refused);
    tcase_add_test(tc, cli_average_last_n_translates_and_exports);
    tcase_add_test(tc, train_average_last_writes_the_mean_of_the_last_checkpoints);
    tcase_add_test(tc, train_average_last_is_validated);
    tcase_add_test(tc, train_corpus_checks_the_validation_search);
    tcase_add_test(tc, train_init_starts_fresh_from_the_weights);
    tcase_add_test(tc, cli_init_takes_the_vocabulary_beside_the_checkpoint);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
