/* What a user sees of a run: progress lines when stdout is not a terminal,
 * --quiet, the run directory (config.txt, train.log, metrics.csv), config
 * files (flags win, unknown keys, malformed lines, comments) and --help. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util_test.h"

/* A toy run small enough for a test: well under a second. */
#define TOY                                                                                        \
    "--task copy --d-model 16 --heads 2 --d-ff 32 --layers 1 --vocab 8 --max-len 5 "               \
    "--batch 16 --warmup 20 --threads 1 --eval-n 10"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void spit(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static int count_lines_starting(const char *text, const char *prefix) {
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, prefix, len)) n++;
    return n;
}

START_TEST(test_plain_lines_on_a_pipe) {
    const char *dir = tfm_test_tmpdir("progress");
    char cmd[2048], out[65536];
    /* tfm_test_run reads through a pipe: stdout is not a terminal */
    snprintf(cmd, sizeof cmd, "%s train " TOY " --steps 40 --log-every 10 --save %s/run",
             tfm_test_bin(), dir);
    int rc = tfm_test_run(cmd, out, sizeof out);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_msg(strchr(out, '\r') == NULL, "carriage return in piped output:\n%s", out);
    ck_assert_int_eq(count_lines_starting(out, "step "), 4);
    ck_assert_msg(strstr(out, "\nstep 10/40 loss ") && strstr(out, "\nstep 40/40 loss "), "%s",
                  out);
    ck_assert_msg(strstr(out, "exact_match=") != NULL, "%s", out);

    /* the run directory */
    char path[512];
    snprintf(path, sizeof path, "%s/run/metrics.csv", dir);
    char *csv = slurp(path);
    ck_assert_msg(
        !strncmp(csv, "step,epoch,loss,lr,grad_norm,tokens_per_s,valid_loss,valid_bleu\n", 64),
        "%s", csv);
    ck_assert_int_eq(count_lines_starting(csv, "10,"), 1);
    ck_assert_int_eq(count_lines_starting(csv, "40,"), 1);
    int rows = 0;
    for (const char *p = csv; (p = strchr(p, '\n')); p++) rows++;
    ck_assert_int_eq(rows, 5); /* header + 4 */
    free(csv);
    snprintf(path, sizeof path, "%s/run/train.log", dir);
    char *log = slurp(path);
    ck_assert_int_eq(count_lines_starting(log, "step "), 4);
    ck_assert_msg(strchr(log, '\r') == NULL, "carriage return in train.log");
    free(log);
    snprintf(path, sizeof path, "%s/run/config.txt", dir);
    char *cfg = slurp(path);
    ck_assert_msg(strstr(cfg, "task = copy\n") && strstr(cfg, "steps = 40\n") &&
                      strstr(cfg, "d-model = 16\n"),
                  "%s", cfg);
    free(cfg);
}
END_TEST

START_TEST(test_quiet) {
    const char *dir = tfm_test_tmpdir("quiet");
    char cmd[2048], out[65536];
    snprintf(cmd, sizeof cmd, "%s train " TOY " --steps 30 --log-every 10 --quiet --save %s/run",
             tfm_test_bin(), dir);
    int rc = tfm_test_run(cmd, out, sizeof out);
    ck_assert_msg(rc == 0, "%s", out);
    /* one line: the summary */
    ck_assert_msg(!strncmp(out, "exact_match=", 12), "quiet output:\n%s", out);
    ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "more than one line:\n%s", out);
    /* the files still get everything */
    char path[512];
    snprintf(path, sizeof path, "%s/run/train.log", dir);
    char *log = slurp(path);
    ck_assert_int_eq(count_lines_starting(log, "step "), 3);
    free(log);
    snprintf(path, sizeof path, "%s/run/metrics.csv", dir);
    char *csv = slurp(path);
    ck_assert_int_eq(count_lines_starting(csv, "30,"), 1);
    free(csv);
}
END_TEST

START_TEST(test_config_file) {
    const char *dir = tfm_test_tmpdir("config");
    char cfg[512], cmd[2048], out[65536], path[512];
    snprintf(cfg, sizeof cfg, "%s/run.cfg", dir);
    spit(cfg, "# a toy run\n"
              "task = reverse   # trailing comment\n"
              "\n"
              "steps = 50\n"
              "  d-model=16\n"
              "heads = 2\n"
              "d-ff = 32\n"
              "layers = 1\n"
              "vocab = 8\n"
              "max-len = 5\n"
              "batch = 16\n"
              "warmup = 20\n"
              "threads = 1\n"
              "eval-n = 10\n"
              "quiet = true\n");
    /* the command line beats the file, in either order */
    snprintf(cmd, sizeof cmd, "%s train --steps 12 --config %s --save %s/run --log-every 4",
             tfm_test_bin(), cfg, dir);
    int rc = tfm_test_run(cmd, out, sizeof out);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_msg(strstr(out, "steps=12 ") != NULL, "%s", out);
    snprintf(path, sizeof path, "%s/run/config.txt", dir);
    char *written = slurp(path);
    ck_assert_msg(strstr(written, "steps = 12\n") && strstr(written, "task = reverse\n") &&
                      strstr(written, "d-model = 16\n") && strstr(written, "quiet = true\n") &&
                      strstr(written, "log-every = 4\n"),
                  "%s", written);
    free(written);
    snprintf(cmd, sizeof cmd, "%s train --config %s --save %s/run2 --steps 8 --task copy",
             tfm_test_bin(), cfg, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(path, sizeof path, "%s/run2/config.txt", dir);
    written = slurp(path);
    ck_assert_msg(strstr(written, "task = copy\n") && strstr(written, "steps = 8\n"), "%s",
                  written);
    free(written);
    /* config.txt is itself a config file: it reproduces the run's settings */
    snprintf(cmd, sizeof cmd, "%s train --config %s/run2/config.txt --save %s/run3", tfm_test_bin(),
             dir, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(path, sizeof path, "%s/run3/config.txt", dir);
    char *again = slurp(path);
    ck_assert_msg(strstr(again, "steps = 8\n") && strstr(again, "task = copy\n"), "%s", again);
    free(again);
}
END_TEST

START_TEST(test_config_errors) {
    const char *dir = tfm_test_tmpdir("config-err");
    char cfg[512], cmd[2048], out[8192], want[1024];
    snprintf(cfg, sizeof cfg, "%s/bad.cfg", dir);
    snprintf(cmd, sizeof cmd, "%s train --config %s --steps 5", tfm_test_bin(), cfg);
    /* unknown key, named with file:line */
    spit(cfg, "task = copy\n# fine\nbogus-key = 3\n");
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    snprintf(want, sizeof want, "tfm: %s:3: unknown key 'bogus-key'", cfg);
    ck_assert_msg(strstr(out, want) != NULL, "want '%s', got: %s", want, out);
    /* a line that is not key = value */
    spit(cfg, "task = copy\nsteps 5\n");
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    snprintf(want, sizeof want, "%s:2: expected 'key = value'", cfg);
    ck_assert_msg(strstr(out, want) != NULL, "want '%s', got: %s", want, out);
    /* a bad value */
    spit(cfg, "d-model = wide\n");
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    snprintf(want, sizeof want, "%s:1: 'wide' is not an integer", cfg);
    ck_assert_msg(strstr(out, want) != NULL, "want '%s', got: %s", want, out);
    spit(cfg, "quiet = maybe\n");
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, ":1: 'maybe' is not a boolean") != NULL, "%s", out);
    /* a missing file */
    snprintf(cmd, sizeof cmd, "%s train --config %s/nope.cfg", tfm_test_bin(), dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "nope.cfg: cannot open") != NULL, "%s", out);
    /* each error is one line */
    ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "%s", out);
}
END_TEST

/* The committed example configs are valid: parse them and run one step. */
START_TEST(test_example_configs) {
    const char *dir = tfm_test_tmpdir("examples");
    char cmd[8192], out[65536];
    const char *toys[2] = {"examples/copy.cfg", "examples/reverse.cfg"};
    for (int i = 0; i < 2; i++) {
        snprintf(
            cmd, sizeof cmd,
            "%s train --config %s --steps 2 --eval-n 4 --d-model 16 --heads 2 --d-ff 16 --layers 1 "
            "--batch 8 --threads 1 --quiet --save %s/t%d",
            tfm_test_bin(), tfm_test_path(toys[i]), dir, i);
        ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s: %s", toys[i], out);
    }
    /* every key must be known (the run is shrunk: this checks the file, not the
     * recipe); the Multi30k recipe needs the corpus, so it gets a tiny one */
    char src[512], tgt[512];
    snprintf(src, sizeof src, "%s/tiny.de", dir);
    snprintf(tgt, sizeof tgt, "%s/tiny.en", dir);
    spit(src, "ein Hund rennt\neine Katze schläft\n");
    spit(tgt, "a dog runs\na cat sleeps\n");
    snprintf(cmd, sizeof cmd,
             "%s train --config %s --src-train %s --tgt-train %s --src-valid %s --tgt-valid %s "
             "--steps 0 --bpe-merges 5 --d-model 16 --heads 2 --d-ff 16 --layers 1 --threads 1 "
             "--quiet --save %s/m",
             tfm_test_bin(), tfm_test_path("examples/multi30k.cfg"), src, tgt, src, tgt, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "multi30k.cfg: %s", out);
}
END_TEST

START_TEST(test_help) {
    char cmd[1024], out[65536];
    snprintf(cmd, sizeof cmd, "%s train --help", tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--steps X") && strstr(out, "(default: 3000)") &&
                      strstr(out, "--config FILE"),
                  "%s", out);
    snprintf(cmd, sizeof cmd, "%s plot --help", tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "usage: tfm plot") && strstr(out, "--output X"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s attention --help", tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--head X") && strstr(out, "(default: mean)") &&
                      strstr(out, "--self"),
                  "%s", out);
    snprintf(cmd, sizeof cmd, "%s --help", tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "plot") && strstr(out, "attention"), "%s", out);
}
END_TEST

Suite *progress_suite(void) {
    Suite *s = suite_create("progress");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_plain_lines_on_a_pipe);
    tcase_add_test(tc, test_quiet);
    tcase_add_test(tc, test_config_file);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_example_configs);
    tcase_add_test(tc, test_help);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tfm_test_main(progress_suite()); }
