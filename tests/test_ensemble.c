/* tfm translate's n-best lists and ensembles, through the program: two small
 * models of different sizes trained in a second each on the generated
 * numbers corpus (same BPE, so one vocabulary), and a third with another
 * vocabulary. */
#include <stdlib.h>
#include <string.h>

#include "util_test.h"

static char g_dir[256];
static int g_ready;

/* Trains the models once for the suite's tests. */
static const char *models_dir(void) {
    if (g_ready) return g_dir;
    snprintf(g_dir, sizeof g_dir, "%s", tfm_test_tmpdir("ensemble"));
    const char *d = g_dir;
    static char cmd[8192], out[65536];
    snprintf(cmd, sizeof cmd, "%s data numbers --out %s/data --train 3000 --valid 100 --test 200",
             tfm_test_bin(), d);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    static const char *runs[] = {
        "a --bpe-merges 200 --steps 300 --d-model 32 --d-ff 64 --seed 1",
        "b --bpe-merges 200 --steps 300 --d-model 48 --d-ff 96 --seed 2",
        "c --bpe-merges 100 --steps 10 --d-model 32 --d-ff 64 --seed 1",
    };
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd,
                 "%s train --src-train %s/data/train.de --tgt-train %s/data/train.en "
                 "--src-valid %s/data/valid.de --tgt-valid %s/data/valid.en --batch-tokens 1024 "
                 "--valid-every 300 --warmup 100 --share-emb --heads 2 --layers 1 --dropout 0 "
                 "--threads 1 --quiet --save %s/%s",
                 tfm_test_bin(), d, d, d, d, d, runs[i]);
        int rc = tfm_test_run(cmd, out, sizeof out);
        ck_assert_msg(rc == 0, "training failed: %s", out);
    }
    g_ready = 1;
    return g_dir;
}

/* fmt with every %s replaced by the models' directory and TFM by the
 * program. */
static void expand(const char *fmt, char *cmd, size_t cap) {
    const char *d = models_dir();
    size_t used = 0;
    for (const char *p = fmt; *p && used + 1100 < cap; p++) {
        if (p[0] == '%' && p[1] == 's')
            used += (size_t)snprintf(cmd + used, cap - used, "%s", d), p++;
        else if (!strncmp(p, "TFM", 3))
            used += (size_t)snprintf(cmd + used, cap - used, "%s", tfm_test_bin()), p += 2;
        else
            cmd[used++] = *p;
    }
    cmd[used] = 0;
}

/* Runs the shell line fmt (expand) and returns its stdout (malloc'd); fails
 * when the exit status is not want_rc. */
static char *run_out(int want_rc, const char *fmt) {
    static char cmd[4096], err[8192];
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s/out.txt", models_dir());
    expand(fmt, cmd, sizeof cmd);
    size_t used = strlen(cmd);
    snprintf(cmd + used, sizeof cmd - used, " > %s", tmp);
    int rc = tfm_test_run(cmd, err, sizeof err);
    ck_assert_msg(rc == want_rc, "'%s' exited %d (want %d): %s", cmd, rc, want_rc, err);
    char *text = tfm_test_slurp(tmp);
    ck_assert_ptr_nonnull(text);
    return text;
}

/* `tfm translate ARGS < test.de` fails with want_rc and one line holding want. */
static void expect_error(int want_rc, const char *args, const char *want) {
    char fmt[1024], cmd[4096], out[8192];
    snprintf(fmt, sizeof fmt, "TFM translate %s < %%s/data/test.de", args);
    expand(fmt, cmd, sizeof cmd);
    int rc = tfm_test_run(cmd, out, sizeof out);
    ck_assert_msg(rc == want_rc, "'%s' exited %d (want %d): %s", cmd, rc, want_rc, out);
    ck_assert_msg(strstr(out, want) != NULL, "'%s': message '%s' lacks '%s'", cmd, out, want);
    ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "not one line: %s", out);
}

static void train_models(void) { models_dir(); }

/* BLEU of hyp_text (freed) against the test set. */
static double bleu_of(char *hyp_text) {
    const char *d = models_dir();
    char path[1200], cmd[4096], out[4096];
    snprintf(path, sizeof path, "%s/hyp.txt", d);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(hyp_text, f);
    fclose(f);
    free(hyp_text);
    snprintf(cmd, sizeof cmd, "%s bleu %s/data/test.en < %s", tfm_test_bin(), d, path);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    const char *eq = strstr(out, " = ");
    ck_assert_ptr_nonnull(eq);
    return atof(eq + 3);
}

START_TEST(nbest_first_entry_is_the_1best_and_scores_are_sorted) {
    char *one = run_out(0, "TFM translate --model %s/a --beam 4 < %s/data/test.de");
    char *nb = run_out(0, "TFM translate --model %s/a --beam 4 --n-best 3 < %s/data/test.de");
    /* walk both: each input line's entries, LINE counting from 0 */
    char *save1 = NULL, *save2 = NULL;
    char *line1 = strtok_r(one, "\n", &save1), *entry = strtok_r(nb, "\n", &save2);
    long expect = 0, entries = 0, multi = 0;
    while (line1) {
        long n_here = 0;
        double prev = 1e30;
        while (entry && atol(entry) == expect) {
            char *a = strstr(entry, " ||| "), *b = a ? strstr(a + 5, " ||| ") : NULL;
            ck_assert_msg(a && b, "not 'LINE ||| hyp ||| score': %s", entry);
            double score = atof(b + 5);
            ck_assert_msg(score <= prev, "line %ld: scores not sorted: %s", expect, entry);
            ck_assert_msg(score <= 0, "line %ld: a log-probability above 0: %s", expect, entry);
            prev = score;
            if (n_here == 0) {
                *b = 0;
                ck_assert_msg(!strcmp(a + 5, line1), "line %ld: n-best entry 0 '%s', 1-best '%s'",
                              expect, a + 5, line1);
            }
            n_here++;
            entries++;
            entry = strtok_r(NULL, "\n", &save2);
        }
        ck_assert_msg(n_here >= 1 && n_here <= 3, "line %ld: %ld entries", expect, n_here);
        multi += n_here > 1;
        expect++;
        line1 = strtok_r(NULL, "\n", &save1);
    }
    ck_assert_msg(entry == NULL, "n-best entries past the input: %s", entry);
    ck_assert_int_eq(expect, 200);
    printf("  n-best: %ld entries for 200 lines, %ld lines with more than one\n", entries, multi);
    ck_assert_int_ge(multi, 100);
    free(one);
    free(nb);
    /* K > beam, K < 0: one-line flag errors */
    expect_error(2, "--model %s/a --beam 2 --n-best 3", "--n-best: 3 is more than the beam size 2");
    expect_error(2, "--model %s/a --n-best -1", "--n-best: must not be negative");
}
END_TEST

/* The next "LINE ||| hyp ||| score" entry's line number and score from *p
 * (advanced past it); 0 at the end. */
static int next_entry(char **p, long *line, double *score) {
    if (!*p || !**p) return 0;
    char *end = strchr(*p, '\n'), *b = NULL;
    if (end) *end = 0;
    *line = atol(*p);
    char *a = strstr(*p, " ||| ");
    if (a) b = strstr(a + 5, " ||| ");
    ck_assert_msg(a && b, "not 'LINE ||| hyp ||| score': %s", *p);
    *score = atof(b + 5);
    *p = end ? end + 1 : *p + strlen(*p);
    return 1;
}

/* Each input line's translation (one line each in `one`) is the first
 * entry of its n-best list in `nb` ("LINE ||| hyp ||| score", LINE from 0);
 * both are cut up by strtok_r. Returns the lines. */
static long expect_first_entries(char *one, char *nb, const char *what) {
    char *save1 = NULL, *save2 = NULL;
    char *line1 = strtok_r(one, "\n", &save1), *entry = strtok_r(nb, "\n", &save2);
    long expect = 0;
    for (; line1; expect++, line1 = strtok_r(NULL, "\n", &save1)) {
        ck_assert_msg(entry && atol(entry) == expect, "%s: line %ld: no n-best entry", what,
                      expect);
        char *a = strstr(entry, " ||| "), *b = a ? strstr(a + 5, " ||| ") : NULL;
        ck_assert_msg(a && b, "%s: not 'LINE ||| hyp ||| score': %s", what, entry);
        *b = 0;
        ck_assert_msg(!strcmp(a + 5, line1), "%s: line %ld: n-best entry 0 '%s', translation '%s'",
                      what, expect, a + 5, line1);
        while ((entry = strtok_r(NULL, "\n", &save2)) && atol(entry) == expect) continue;
    }
    ck_assert_msg(entry == NULL, "%s: n-best entries past the input: %s", what, entry);
    return expect;
}

/* --beam-stop bound through the program: each line's 1-best scores at least
 * what the default (stop at `beam` finished) gives, its n-best list starts
 * with its translation, and a rule that is neither is refused. */
START_TEST(beam_stop_bound_never_scores_lower) {
    char *fin = run_out(0, "TFM translate --model %s/a --beam 3 --n-best 1 < %s/data/test.de");
    char *bnd = run_out(
        0, "TFM translate --model %s/a --beam 3 --n-best 1 --beam-stop bound < %s/data/test.de");
    char *pf = fin, *pb = bnd;
    long lf, lb, lines = 0, higher = 0;
    double sf, sb;
    while (next_entry(&pf, &lf, &sf)) {
        ck_assert_msg(next_entry(&pb, &lb, &sb) && lb == lf, "line %ld: no bound entry", lf);
        ck_assert_msg(sb >= sf - 1e-5, "line %ld: bound %.6f below finished %.6f", lf, sb, sf);
        higher += sb > sf + 1e-5;
        lines++;
    }
    ck_assert_int_eq(lines, 200);
    ck_assert_int_ge(higher, 10); /* the rule is not ignored (57 of 200 when written) */
    printf("  --beam-stop bound: %ld of %ld lines score higher than stopping at 3 finished\n",
           higher, lines);
    free(fin);
    free(bnd);
    char *one =
        run_out(0, "TFM translate --model %s/a --beam 3 --beam-stop bound < %s/data/test.de");
    char *nb = run_out(
        0, "TFM translate --model %s/a --beam 3 --n-best 2 --beam-stop bound < %s/data/test.de");
    ck_assert_int_eq(expect_first_entries(one, nb, "beam 3, bound"), 200);
    free(one);
    free(nb);
    /* beam 1 is greedy decoding with either rule, n-best list or not (a
     * strong length penalty: with it a beam of 1 searching on to the bound
     * would pick longer hypotheses than greedy's) */
    one = run_out(0, "TFM translate --model %s/a --alpha 5 < %s/data/test.de");
    nb = run_out(0, "TFM translate --model %s/a --alpha 5 --n-best 1 --beam-stop bound < "
                    "%s/data/test.de");
    ck_assert_int_eq(expect_first_entries(one, nb, "beam 1, bound, alpha 5"), 200);
    free(one);
    free(nb);
    expect_error(2, "--model %s/a --beam 3 --beam-stop never",
                 "--beam-stop: 'never' is not finished or bound");
}
END_TEST

/* tfm train --beam-stop reaches validation: two runs of model a's settings
 * with validation by beam 3 train alike (the same loss and validation loss
 * in metrics.csv) and score the rule's own translations (74.8 finished,
 * 91.9 bound when written, 300 steps). */
START_TEST(train_beam_stop_sets_validation_search) {
    char last[2][512];
    static const char *rules[] = {"finished", "bound"};
    for (int i = 0; i < 2; i++) {
        char fmt[1024];
        snprintf(fmt, sizeof fmt,
                 "TFM train --src-train %%s/data/train.de --tgt-train %%s/data/train.en "
                 "--src-valid %%s/data/valid.de --tgt-valid %%s/data/valid.en --batch-tokens 1024 "
                 "--valid-every 300 --warmup 100 --share-emb --heads 2 --layers 1 --dropout 0 "
                 "--threads 1 --quiet --bpe-merges 200 --steps 300 --d-model 32 --d-ff 64 "
                 "--seed 1 --beam 3 --beam-stop %s --save %%s/stop-%s",
                 rules[i], rules[i]);
        free(run_out(0, fmt));
        char path[1024];
        snprintf(path, sizeof path, "%s/stop-%s/metrics.csv", models_dir(), rules[i]);
        char *csv = tfm_test_slurp(path);
        char *end = csv + strlen(csv);
        while (end > csv && end[-1] == '\n') *--end = 0;
        char *line = strrchr(csv, '\n');
        snprintf(last[i], sizeof last[i], "%s", line ? line + 1 : csv);
        free(csv);
    }
    /* step,epoch,loss,lr,grad_norm,tokens_per_s,valid_loss,valid_bleu (the
     * last line: the validation's, with every field): all but the speed and
     * the BLEU are the same */
    char *f[2][8];
    for (int i = 0; i < 2; i++) {
        char *rest = last[i];
        for (int k = 0; k < 8; k++) {
            f[i][k] = strsep(&rest, ",");
            ck_assert_msg(f[i][k] && *f[i][k], "%s: metrics.csv's last line lacks field %d",
                          rules[i], k + 1);
        }
    }
    for (int k = 0; k < 7; k++)
        if (k != 5) ck_assert_str_eq(f[0][k], f[1][k]);
    ck_assert_msg(strcmp(f[0][7], f[1][7]) != 0,
                  "validation BLEU %s with either rule: --beam-stop did not reach validation",
                  f[0][7]);
    printf("  train --beam-stop: validation BLEU %s finished, %s bound\n", f[0][7], f[1][7]);
}
END_TEST

START_TEST(ensemble_with_itself_is_the_model) {
    static const char *modes[] = {"", " --beam 4", " --beam 3 --n-best 2"};
    for (int i = 0; i < 3; i++) {
        char f1[512], f2[512];
        snprintf(f1, sizeof f1, "TFM translate --model %%s/a%s < %%s/data/test.de", modes[i]);
        snprintf(f2, sizeof f2, "TFM translate --model %%s/a --model %%s/a%s < %%s/data/test.de",
                 modes[i]);
        char *one = run_out(0, f1), *two = run_out(0, f2);
        ck_assert_msg(!strcmp(one, two), "mode '%s': the ensemble of a with itself differs",
                      modes[i]);
        free(one);
        free(two);
    }
    /* in a config file: one line, the values separated by spaces (a, b) */
    char path[1200], line[1200];
    snprintf(path, sizeof path, "%s/ens.cfg", models_dir());
    snprintf(line, sizeof line, "model = %s/a %s/b\nbeam = 4\n", models_dir(), models_dir());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(line, f);
    fclose(f);
    char *one = run_out(0, "TFM translate --model %s/a --model %s/b --beam 4 < %s/data/test.de");
    char *cfg = run_out(0, "TFM translate --config %s/ens.cfg < %s/data/test.de");
    ck_assert_str_eq(one, cfg);
    free(one);
    free(cfg);
}
END_TEST

START_TEST(ensemble_of_two_models_translates) {
    double a = bleu_of(run_out(0, "TFM translate --model %s/a < %s/data/test.de"));
    double b = bleu_of(run_out(0, "TFM translate --model %s/b < %s/data/test.de"));
    char *ab_text = run_out(0, "TFM translate --model %s/a --model %s/b < %s/data/test.de");
    char *a_text = run_out(0, "TFM translate --model %s/a < %s/data/test.de");
    ck_assert_msg(strcmp(ab_text, a_text) != 0, "the ensemble translates exactly as model a");
    free(a_text);
    double ab = bleu_of(ab_text);
    double ab4 =
        bleu_of(run_out(0, "TFM translate --model %s/a --model %s/b --beam 4 < %s/data/test.de"));
    printf("  numbers test BLEU: a %.2f, b %.2f, ensemble a+b greedy %.2f, beam 4 %.2f\n", a, b, ab,
           ab4);
    ck_assert_msg(ab >= 80.0, "ensemble greedy BLEU %.2f below 80", ab);
    ck_assert_msg(ab4 >= 70.0, "ensemble beam 4 BLEU %.2f below 70", ab4);
}
END_TEST

START_TEST(ensemble_needs_one_vocabulary) {
    expect_error(1, "--model %s/a --model %s/c", "/c: its vocabulary (");
    expect_error(1, "--model %s/a --model %s/c", "an ensemble needs one shared vocabulary");
    expect_error(1, "--model %s/a --model %s/nonexistent", "nonexistent");
}
END_TEST

int main(void) {
    Suite *s = suite_create("ensemble");
    TCase *tc = tcase_create("ensemble");
    tcase_set_timeout(tc, 300);
    tcase_add_unchecked_fixture(tc, train_models, NULL); /* once, before the forks */
    tcase_add_test(tc, nbest_first_entry_is_the_1best_and_scores_are_sorted);
    tcase_add_test(tc, beam_stop_bound_never_scores_lower);
    tcase_add_test(tc, train_beam_stop_sets_validation_search);
    tcase_add_test(tc, ensemble_with_itself_is_the_model);
    tcase_add_test(tc, ensemble_of_two_models_translates);
    tcase_add_test(tc, ensemble_needs_one_vocabulary);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
