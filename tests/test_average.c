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
    /* translate and export accept it */
    snprintf(cmd, sizeof cmd, "echo '3 4 5' | %s translate --model %s/run/averaged.tfm",
             tfm_test_bin(), dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strlen(out) > 1, "no translation: \"%s\"", out);
    snprintf(cmd, sizeof cmd, "%s export --model %s/run/averaged.tfm --out %s/export",
             tfm_test_bin(), dir, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "exported ") != NULL, "%s", out);

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

int main(void) {
    Suite *s = suite_create("average");
    TCase *tc = tcase_create("average");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, mean_of_two_is_elementwise_mean);
    tcase_add_test(tc, average_with_itself_is_bit_identical);
    tcase_add_test(tc, different_configurations_are_refused);
    tcase_add_test(tc, cli_average_last_n_translates_and_exports);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
