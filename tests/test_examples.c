/* The programs in examples/ (public API only) build and run: train_copy
 * drives the loss down and decodes; char_lm, a decoder-only model trained
 * through the trainer's hooks, reports validation perplexity that falls and
 * samples text. Short one-thread runs: the point is that they work, not how
 * well. */
#include <check.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util_test.h"

/* build/examples/<name> next to the tfm binary (build/ or build/san/) */
static const char *example(const char *name) {
    static char path[1024];
    char bin[1024];
    snprintf(bin, sizeof bin, "%s", tfm_test_bin());
    snprintf(path, sizeof path, "%s/examples/%s", dirname(bin), name);
    return path;
}

START_TEST(test_train_copy) {
    static char out[1 << 16];
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 %s 100 2>&1", example("train_copy"));
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    const char *l = strstr(out, "\nloss ");
    ck_assert_msg(l != NULL, "%s", out);
    double first = 0, last = 0;
    ck_assert_int_eq(sscanf(l, "\nloss %lf -> %lf", &first, &last), 2);
    ck_assert_msg(last < 0.6 * first, "loss %g -> %g", first, last);
    ck_assert_msg(strstr(out, "copy of 6 4 7 4 8 12 5 9:"), "%s", out);
}
END_TEST

START_TEST(test_char_lm) {
    static char out[1 << 16];
    const char *dir = tfm_test_tmpdir("examples-charlm");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s data numbers --out %s --train 4000 --valid 1 --test 1 2>&1",
             tfm_test_bin(), dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s %s/train.en --steps 40 --sample 40 --threads 1 2>&1",
             example("char_lm"), dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    /* five validations; perplexity falls from the first to the last */
    double ppl[8];
    int n = 0;
    for (const char *p = out; (p = strstr(p, "perplexity ")) && n < 8; p++)
        ppl[n++] = atof(p + strlen("perplexity "));
    ck_assert_msg(n == 5, "%d validations in:\n%s", n, out);
    ck_assert_msg(ppl[4] < 0.8 * ppl[0], "perplexity %g -> %g\n%s", ppl[0], ppl[4], out);
    ck_assert_msg(strstr(out, "\nA man "), "no sample in:\n%s", out);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("examples");
    TCase *tc = tcase_create("run");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_train_copy);
    tcase_add_test(tc, test_char_lm);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tfm_test_main(suite()); }
