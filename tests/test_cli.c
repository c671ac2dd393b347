/* Bad input never crashes and never costs a run: every case below gets a
 * one-line "tfm: ..." error naming the file and line or the flag, a non-zero
 * exit, and leaves the files it was pointed at untouched. Also the
 * "key = value" config parser (src/io/config.c) on its own. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tfm/base.h"
#include "tfm/checkpoint.h"
#include "tfm/config.h"
#include "util_test.h"

static const char *TINY =
    "--task copy --d-model 16 --heads 2 --d-ff 32 --layers 1 --vocab 8 --max-len 5 "
    "--batch 8 --warmup 10 --threads 1 --eval-n 1 --quiet";

static void write_file(const char *path, const char *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}
static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

static const char *join(const char *dir, const char *name) {
    static char buf[8][512];
    static int slot;
    char *out = buf[slot++ & 7], tmp[512];
    snprintf(tmp, sizeof tmp, "%s/%s", dir, name);
    memcpy(out, tmp, sizeof tmp);
    return out;
}

/* Runs cmd and checks: exit status non-zero and not a signal, the output is
 * exactly one line starting with "tfm: ", and it contains each of want[]. */
static void expect_error(const char *cmd, const char *want1, const char *want2) {
    static char out[1 << 16];
    int rc = tfm_test_run(cmd, out, sizeof out);
    ck_assert_msg(rc > 0 && rc < 128, "exit status %d for: %s\n%.1500s", rc, cmd, out);
    ck_assert_msg(!strncmp(out, "tfm: ", 5), "does not start with 'tfm: ': %.1500s", out);
    size_t n = strlen(out);
    ck_assert_msg(n > 0 && out[n - 1] == '\n' && strchr(out, '\n') == out + n - 1,
                  "not exactly one line: [%.1500s]", out);
    ck_assert_msg(!want1 || strstr(out, want1), "'%s' not in: %.1500s", want1, out);
    ck_assert_msg(!want2 || strstr(out, want2), "'%s' not in: %.1500s", want2, out);
}

/* CRC-32C over the names, sizes and contents of every file in dir: equal
 * before and after means nothing was written. */
static uint32_t dir_digest(const char *dir) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    char names[64][256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        if (e->d_name[0] != '.') snprintf(names[n++], 256, "%s", e->d_name);
    closedir(d);
    /* readdir order is not stable across writes: sort */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(names[j], names[j - 1]) < 0; j--) {
            char t[256];
            memcpy(t, names[j], 256);
            memcpy(names[j], names[j - 1], 256);
            memcpy(names[j - 1], t, 256);
        }
    uint32_t crc = 0;
    for (int i = 0; i < n; i++) {
        crc = tfm_crc32c(crc, names[i], strlen(names[i]));
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "rb");
        ck_assert_msg(f != NULL, "cannot read %s", path);
        char buf[4096];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) crc = tfm_crc32c(crc, buf, got);
        fclose(f);
    }
    return crc;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* ---- corpus files ------------------------------------------------------------ */
/* `tfm train` on src/tgt (names in dir) with a fresh --save that must not
 * appear when the input is rejected. */
static void corpus_expect(const char *dir, const char *src, const char *tgt, const char *want1,
                          const char *want2) {
    char cmd[4096];
    const char *save = join(dir, "run");
    snprintf(cmd, sizeof cmd, "%s train --src-train %s --tgt-train %s --save %s --steps 2 --quiet",
             tfm_test_bin(), join(dir, src), join(dir, tgt), save);
    expect_error(cmd, want1, want2);
    ck_assert_msg(!exists(save), "%s was created for a rejected input", save);
}

START_TEST(test_corpus_inputs) {
    const char *dir = tfm_test_tmpdir("cli-corpus");
    write_text(join(dir, "ok.de"), "eins zwei\ndrei\n");
    write_text(join(dir, "ok.en"), "one two\nthree\n");
    write_text(join(dir, "one.en"), "one two\n");
    write_text(join(dir, "empty.de"), "");
    write_text(join(dir, "empty.en"), "");
    write_text(join(dir, "utf8.de"), "eins\nzw\xC3\x28i\n");
    write_text(join(dir, "blank.de"), "eins\n   \n");
    size_t big = (1u << 20) + 100;
    char *line = malloc(big + 2);
    ck_assert_ptr_nonnull(line);
    memset(line, 'a', big);
    memcpy(line + big, "\nb\n", 2);
    write_file(join(dir, "long.de"), line, big + 2);
    free(line);

    char want[600];
    snprintf(want, sizeof want, "tfm: %s: cannot open", join(dir, "missing.de"));
    corpus_expect(dir, "missing.de", "ok.en", want, NULL);
    snprintf(want, sizeof want, "tfm: %s: file is empty", join(dir, "empty.de"));
    corpus_expect(dir, "empty.de", "empty.en", want, NULL);
    snprintf(want, sizeof want, "tfm: %s has 2 lines but %s has 1", join(dir, "ok.de"),
             join(dir, "one.en"));
    corpus_expect(dir, "ok.de", "one.en", want, NULL);
    snprintf(want, sizeof want, "tfm: %s:2: invalid UTF-8", join(dir, "utf8.de"));
    corpus_expect(dir, "utf8.de", "ok.en", want, NULL);
    snprintf(want, sizeof want, "tfm: %s:1: line is absurdly long", join(dir, "long.de"));
    corpus_expect(dir, "long.de", "ok.en", want, NULL);
    snprintf(want, sizeof want, "tfm: %s:2: empty sentence", join(dir, "blank.de"));
    corpus_expect(dir, "blank.de", "ok.en", want, NULL);
}
END_TEST

/* ---- flags and config files ------------------------------------------------------ */
static void train_expect(const char *args, const char *want1, const char *want2) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s train %s %s", tfm_test_bin(), TINY, args);
    expect_error(cmd, want1, want2);
}

START_TEST(test_bad_flags) {
    train_expect("--bogus 3", "tfm: unknown flag '--bogus'", NULL);
    train_expect("--steps abc", "tfm: --steps: 'abc' is not an integer", NULL);
    train_expect("--steps=12x", "tfm: --steps: '12x' is not an integer", NULL);
    train_expect("--steps 99999999999999999999", "tfm: --steps:", "not an integer");
    train_expect("--lr-factor 1e", "tfm: --lr-factor: '1e' is not a number", NULL);
    train_expect("--lr-factor nan", "tfm: --lr-factor: 'nan' is not a number", NULL);
    train_expect("--steps", "tfm: --steps: missing value", NULL);
    train_expect("--dropout 1.5", "tfm: --dropout:", NULL);
    train_expect("--ffn-dropout 1", "tfm: --ffn-dropout: must be in [0, 1), or -1", NULL);
    train_expect("--ffn-dropout -0.5", "tfm: --ffn-dropout: must be in [0, 1), or -1", NULL);
    train_expect("--emb-init gaussian", "tfm: --emb-init: 'gaussian' is not xavier or normal",
                 NULL);
    train_expect("--task copy --steps -3", "tfm: --steps:", NULL);
    train_expect("--task copy --steps 10 --cooldown 11",
                 "tfm: --cooldown: must be between 0 and --steps (10)", NULL);
    train_expect("--task copy --accum 0", "tfm: --accum: must be between 1 and 1000000", NULL);
    train_expect("--task copy --ema 1", "tfm: --ema: must be 0 (off) or between 0 and 1", NULL);
    train_expect("--config", "tfm: --config: missing file name", NULL);
}
END_TEST

START_TEST(test_config_files) {
    const char *dir = tfm_test_tmpdir("cli-config");
    char args[1024], want[600];
    const char *unk = join(dir, "unknown.cfg");
    write_text(unk, "# tiny run\nsteps = 2\nd-modle = 16\n");
    snprintf(args, sizeof args, "--config %s", unk);
    snprintf(want, sizeof want, "tfm: %s:3: unknown key 'd-modle'", unk);
    train_expect(args, want, NULL);

    const char *mal = join(dir, "malformed.cfg");
    write_text(mal, "steps = 2\n\nthis line has no equals sign\n");
    snprintf(args, sizeof args, "--config %s", mal);
    snprintf(want, sizeof want, "tfm: %s:3: expected 'key = value'", mal);
    train_expect(args, want, NULL);

    /* the command line wins over the file, but a malformed value in the
     * file is still reported (it used to be skipped silently) */
    const char *num = join(dir, "number.cfg");
    write_text(num, "lr-factor = 2\nsteps = 5x\n");
    snprintf(args, sizeof args, "--config %s --steps 2", num);
    snprintf(want, sizeof want, "tfm: %s:2: '5x' is not an integer", num);
    train_expect(args, want, NULL);

    const char *flag = join(dir, "bool.cfg");
    write_text(flag, "steps = 2\nquiet = maybe\n");
    snprintf(args, sizeof args, "--config %s", flag);
    snprintf(want, sizeof want, "tfm: %s:2: 'maybe' is not a boolean", flag);
    train_expect(args, want, NULL);

    const char *nested = join(dir, "nested.cfg");
    write_text(nested, "config = other.cfg\n");
    snprintf(args, sizeof args, "--config %s", nested);
    snprintf(want, sizeof want, "tfm: %s:1: a config file cannot include another", nested);
    train_expect(args, want, NULL);

    snprintf(args, sizeof args, "--config %s", join(dir, "missing.cfg"));
    snprintf(want, sizeof want, "tfm: %s: cannot open the config file", join(dir, "missing.cfg"));
    train_expect(args, want, NULL);

    snprintf(args, sizeof args, "--config %s", dir);
    snprintf(want, sizeof want, "tfm: %s: the config file is not a regular file", dir);
    train_expect(args, want, NULL);

    /* the config.txt a run writes is itself a valid config file */
    const char *run = join(dir, "run");
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "%s train %s --steps 2 --save %s", tfm_test_bin(), TINY, run);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%.1500s", out);
    snprintf(cmd, sizeof cmd, "%s train --config %s/config.txt --save %s2 --steps 3",
             tfm_test_bin(), run, run);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%.1500s", out);
    ck_assert_msg(strstr(out, "steps=3"), "%.1500s", out);
}
END_TEST

START_TEST(test_will_not_fit_in_memory) {
    double t0 = tfm_now();
    train_expect("--d-model 65536 --d-ff 1000000 --heads 8", "will not fit in memory", "GB");
    /* refused from the estimate, before allocating or touching anything */
    ck_assert_msg(tfm_now() - t0 < 10.0, "took %.1f s", tfm_now() - t0);
}
END_TEST

/* --save under a regular file: root ignores permission bits, a path through
 * a file fails for everyone. */
START_TEST(test_unwritable_save_dir) {
    const char *dir = tfm_test_tmpdir("cli-save");
    const char *file = join(dir, "plain");
    write_text(file, "not a directory\n");
    char args[1024], want[600];
    snprintf(args, sizeof args, "--steps 2 --save %s/run", file);
    snprintf(want, sizeof want, "tfm: --save %s/run: cannot create directory", file);
    train_expect(args, want, NULL);
    snprintf(args, sizeof args, "--steps 2 --save %s", file);
    snprintf(want, sizeof want, "tfm: --save %s: exists and is not a directory", file);
    train_expect(args, want, NULL);
    FILE *f = fopen(file, "r");
    char buf[64] = "";
    ck_assert_ptr_nonnull(fgets(buf, sizeof buf, f));
    fclose(f);
    ck_assert_str_eq(buf, "not a directory\n");
}
END_TEST

/* An existing run is never clobbered: a fresh run into its directory is
 * refused, and a --resume that fails (different model) rewrites nothing. */
START_TEST(test_existing_run_untouched) {
    const char *dir = tfm_test_tmpdir("cli-run");
    const char *run = join(dir, "run");
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "%s train %s --steps 3 --save-every 1 --save %s", tfm_test_bin(),
             TINY, run);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%.1500s", out);
    uint32_t before = dir_digest(run);
    char args[1024], want[600];
    snprintf(args, sizeof args, "--steps 5 --save %s", run);
    snprintf(want, sizeof want, "tfm: --save %s: already holds checkpoints", run);
    train_expect(args, want, "--resume");
    ck_assert_uint_eq(dir_digest(run), before);
    snprintf(cmd, sizeof cmd, "%s train %s --d-model 32 --steps 5 --save %s --resume",
             tfm_test_bin(), TINY, run);
    expect_error(cmd, "the model configuration differs", "checkpoint-00000003.tfm");
    ck_assert_uint_eq(dir_digest(run), before);
    snprintf(cmd, sizeof cmd, "%s train %s --seed 7 --steps 5 --save %s --resume", tfm_test_bin(),
             TINY, run);
    expect_error(cmd, "was trained with --seed", NULL);
    ck_assert_uint_eq(dir_digest(run), before);
}
END_TEST

START_TEST(test_translate_and_bleu) {
    const char *dir = tfm_test_tmpdir("cli-misc");
    char cmd[4096], want[600];
    snprintf(cmd, sizeof cmd, "echo hallo | %s translate --model %s", tfm_test_bin(),
             join(dir, "nomodel"));
    snprintf(want, sizeof want, "tfm: --model %s:", join(dir, "nomodel"));
    expect_error(cmd, want, NULL);
    /* an existing directory without a checkpoint */
    snprintf(cmd, sizeof cmd, "echo hallo | %s translate --model %s", tfm_test_bin(), dir);
    snprintf(want, sizeof want, "tfm: %s: no usable checkpoint", dir);
    expect_error(cmd, want, NULL);

    const char *ref = join(dir, "ref.txt"), *hyp = join(dir, "hyp.txt");
    write_text(ref, "a cat\nthe dog\n");
    write_text(hyp, "a cat\n");
    snprintf(cmd, sizeof cmd, "%s bleu %s < %s", tfm_test_bin(), ref, hyp);
    snprintf(want, sizeof want, "tfm: %s: 2 reference lines but 1 hypothesis lines", ref);
    expect_error(cmd, want, NULL);
}
END_TEST

/* ---- the config parser itself ------------------------------------------------------ */
typedef struct {
    char text[1024];
    int calls;
    int fail_at;
} collect;

static int on_pair(const char *key, const char *value, const char *where, void *ctx) {
    collect *c = ctx;
    c->calls++;
    if (c->calls == c->fail_at) return tfm_set_error("%s: rejected '%s'", where, key), 7;
    size_t n = strlen(c->text);
    snprintf(c->text + n, sizeof c->text - n, "[%s|%s|%s]", key, value, where);
    return 0;
}

/* tfm bench --help lists every benchmark and where its flags are */
START_TEST(test_bench_help) {
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "%s bench --help", tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "\n  gemm ") && strstr(out, "tfm bench gemm --help") &&
                      strstr(out, "\n  step ") && strstr(out, "tfm bench step --help"),
                  "%s", out);
    snprintf(cmd, sizeof cmd, "%s bench step --help", tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--preset"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s bench nosuch 2>&1", tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "tfm: bench: unknown benchmark 'nosuch'"), "%s", out);
}
END_TEST

/* --resume into a run that never reached a checkpoint, with other flags:
 * refused, naming the setting; with the same flags it starts from step 0 */
START_TEST(test_resume_other_config_refused) {
    const char *dir = tfm_test_tmpdir("cli-resume-config");
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "%s train %s --steps 0 --save %s/run 2>&1", tfm_test_bin(), TINY,
             dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    char ck0[700];
    snprintf(ck0, sizeof ck0, "%s/run/checkpoint-00000000.tfm", dir);
    ck_assert_int_eq(unlink(ck0), 0); /* as if killed before its first checkpoint */
    snprintf(cmd, sizeof cmd, "%s train %s --d-model 24 --steps 2 --save %s/run --resume 2>&1",
             tfm_test_bin(), TINY, dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "config.txt: --resume:") && strstr(out, "d-model was 16, now 24") &&
                      strchr(out, '\n') == out + strlen(out) - 1,
                  "%s", out);
    snprintf(cmd, sizeof cmd, "%s train %s --steps 2 --save %s/run --resume 2>&1", tfm_test_bin(),
             TINY, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "no checkpoint yet: starting from step 0") && strstr(out, "steps=2"),
                  "%s", out);
    /* a config.txt of an earlier tfm, without the settings added since
     * (--ema, --accum here): they are at their defaults now, so it resumes;
     * set to something else they are refused */
    snprintf(cmd, sizeof cmd,
             "rm -f %s/run/checkpoint-*.tfm && sed -i '/^ema = /d; /^accum = /d; /^ffn-dropout = "
             "/d; /^emb-init = /d' %s/run/config.txt",
             dir, dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s train %s --ema 0.9 --steps 2 --save %s/run --resume 2>&1",
             tfm_test_bin(), TINY, dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "ema was (not set), now 0.90000000000000002"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s train %s --steps 2 --save %s/run --resume 2>&1", tfm_test_bin(),
             TINY, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "no checkpoint yet: starting from step 0"), "%s", out);
}
END_TEST

/* --resume with other settings goes on (the checkpoint's checks allow
 * them), and train.log keeps what config.txt, rewritten, no longer says;
 * the settings that may change between attempts (--steps) are not listed */
START_TEST(test_resume_logs_changed_settings) {
    const char *dir = tfm_test_tmpdir("cli-resume-changed");
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "%s train %s --steps 2 --save %s/run 2>&1", tfm_test_bin(), TINY,
             dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(cmd, sizeof cmd,
             "%s train %s --warmup 20 --alpha 1 --steps 4 --save %s/run --resume 2>&1",
             tfm_test_bin(), TINY, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(cmd, sizeof cmd,
             "%s train %s --warmup 20 --alpha 1 --steps 6 --save %s/run --resume 2>&1 && "
             "grep -c '^settings changed' %s/run/train.log && grep '^settings changed' "
             "%s/run/train.log && grep '^warmup = 20$' %s/run/config.txt",
             tfm_test_bin(), TINY, dir, dir, dir, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "\n1\nsettings changed at this resume (config.txt now has the new "
                              "ones): alpha was 0.59999999999999998, now 1; warmup was 10, "
                              "now 20\n"),
                  "%s", out);
}
END_TEST

START_TEST(test_config_parse) {
    collect c = {.fail_at = 0};
    const char *text =
        "# comment\n  d-model =  16  \n\nsave=/tmp/x # trailing\nempty =\n\t lr-factor\t=\t2.5";
    ck_assert_int_eq(tfm_config_parse(text, strlen(text), "t.cfg", on_pair, &c), 0);
    ck_assert_str_eq(
        c.text, "[d-model|16|t.cfg:2][save|/tmp/x|t.cfg:4][empty||t.cfg:5][lr-factor|2.5|t.cfg:6]");

    /* '#' starts a comment after any white space (a tab, \v, \f too), and
     * stays inside a word */
    memset(&c, 0, sizeof c);
    const char *hashes = "a = x#1\tb\t# c\nb = y\v#z\n\f#k = 1\nc =#2\n";
    ck_assert_int_eq(tfm_config_parse(hashes, strlen(hashes), "h", on_pair, &c), 0);
    ck_assert_str_eq(c.text, "[a|x#1\tb|h:1][b|y|h:2][c|#2|h:4]");

    /* the length is honoured: nothing after len is read */
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(tfm_config_parse("a = 1\nb = 2\n", 6, "t", on_pair, &c), 0);
    ck_assert_str_eq(c.text, "[a|1|t:1]");

    memset(&c, 0, sizeof c);
    ck_assert_int_eq(tfm_config_parse("a = 1\nno equals\n", 16, "t", on_pair, &c), 1);
    ck_assert_str_eq(tfm_last_error(), "t:2: expected 'key = value', got 'no equals'");
    ck_assert_int_eq(tfm_config_parse(" = 3\n", 5, "t", on_pair, &c), 1);
    ck_assert_str_eq(tfm_last_error(), "t:1: missing key before '='");
    ck_assert_int_eq(tfm_config_parse("a = 1\0\n", 7, "t", on_pair, &c), 1);
    ck_assert_str_eq(tfm_last_error(), "t:1: NUL byte in the line");

    char *big = malloc(TFM_CONFIG_MAX_LINE + 16);
    memcpy(big, "a = ", 4);
    memset(big + 4, 'x', TFM_CONFIG_MAX_LINE + 10);
    ck_assert_int_eq(tfm_config_parse(big, TFM_CONFIG_MAX_LINE + 14, "t", on_pair, &c), 1);
    ck_assert_msg(strstr(tfm_last_error(), "t:1: line too long"), "%s", tfm_last_error());
    /* the longest allowed line still parses */
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(tfm_config_parse(big, TFM_CONFIG_MAX_LINE - 1, "t", on_pair, &c), 0);
    ck_assert_int_eq(c.calls, 1);
    free(big);

    /* the callback's status stops parsing and is returned */
    memset(&c, 0, sizeof c);
    c.fail_at = 2;
    ck_assert_int_eq(tfm_config_parse("a = 1\nb = 2\nc = 3\n", 18, "t", on_pair, &c), 7);
    ck_assert_int_eq(c.calls, 2);
    ck_assert_str_eq(tfm_last_error(), "t:2: rejected 'b'");

    ck_assert_int_eq(tfm_config_read("/nonexistent/x.cfg", on_pair, &c), 1);
    ck_assert_msg(strstr(tfm_last_error(), "/nonexistent/x.cfg: cannot open the config file"), "%s",
                  tfm_last_error());
}
END_TEST

/* ---- the program's own output, flags and help (the trainer's progress, log
 * and hooks are tested in-process in test_progress) ---------------------------- */
/* On a pipe: plain "step N/M" lines, the sample decodes, the summary line;
 * with --quiet the summary alone. */
START_TEST(test_train_output) {
    const char *dir = tfm_test_tmpdir("cli-output");
    static char out[65536];
    char cmd[4096];
    const char *toy = "--task copy --d-model 16 --heads 2 --d-ff 32 --layers 1 --vocab 8 "
                      "--max-len 5 --batch 8 --warmup 10 --threads 1 --eval-n 10 --steps 20 "
                      "--log-every 10";
    snprintf(cmd, sizeof cmd, "%s train %s --save %s", tfm_test_bin(), toy, join(dir, "run"));
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strchr(out, '\r') == NULL, "carriage return in piped output:\n%s", out);
    ck_assert_int_eq(tfm_test_count_lines(out, "step "), 2);
    ck_assert_msg(strstr(out, "\nstep 20/20 loss ") && strstr(out, "sample decodes (held-out):\n"),
                  "%s", out);
    ck_assert_int_eq(tfm_test_count_lines(out, "exact_match="), 1);
    snprintf(cmd, sizeof cmd, "%s train %s --quiet --save %s", tfm_test_bin(), toy,
             join(dir, "quiet"));
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(!strncmp(out, "exact_match=", 12) && strchr(out, '\n') == out + strlen(out) - 1,
                  "quiet output is not the summary line alone:\n%s", out);
}
END_TEST

/* Flags beat the config file in either order; config.txt reproduces a run. */
START_TEST(test_config_flags_win) {
    const char *dir = tfm_test_tmpdir("cli-config-win");
    const char *cfg = join(dir, "run.cfg");
    write_text(cfg, "# a toy run\n"
                    "task = reverse   # trailing comment\n"
                    "\n"
                    "steps = 50\n"
                    "  d-model=16\n"
                    "heads = 2\nd-ff = 32\nlayers = 1\nvocab = 8\nmax-len = 5\nbatch = 16\n"
                    "warmup = 20\nthreads = 1\neval-n = 10\nquiet = true\n");
    static char out[65536];
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s train --steps 12 --config %s --save %s --log-every 4",
             tfm_test_bin(), cfg, join(dir, "run"));
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "steps=12 ") != NULL, "%s", out);
    char *written = tfm_test_slurp(join(dir, "run/config.txt"));
    ck_assert_msg(strstr(written, "steps = 12\n") && strstr(written, "task = reverse\n") &&
                      strstr(written, "d-model = 16\n") && strstr(written, "quiet = true\n") &&
                      strstr(written, "log-every = 4\n"),
                  "%s", written);
    free(written);
    snprintf(cmd, sizeof cmd, "%s train --config %s --save %s --steps 8 --task copy",
             tfm_test_bin(), cfg, join(dir, "run2"));
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    written = tfm_test_slurp(join(dir, "run2/config.txt"));
    ck_assert_msg(strstr(written, "task = copy\n") && strstr(written, "steps = 8\n"), "%s",
                  written);
    free(written);
    snprintf(cmd, sizeof cmd, "%s train --config %s --save %s", tfm_test_bin(),
             join(dir, "run2/config.txt"), join(dir, "run3"));
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    written = tfm_test_slurp(join(dir, "run3/config.txt"));
    ck_assert_msg(strstr(written, "steps = 8\n") && strstr(written, "task = copy\n"), "%s",
                  written);
    free(written);
}
END_TEST

/* The committed example configs are valid: parse them and run a step. */
START_TEST(test_example_configs) {
    const char *dir = tfm_test_tmpdir("cli-examples");
    static char out[65536];
    char cmd[8192];
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
    char src[600], tgt[600];
    snprintf(src, sizeof src, "%s", join(dir, "tiny.de"));
    snprintf(tgt, sizeof tgt, "%s", join(dir, "tiny.en"));
    write_text(src, "ein Hund rennt\neine Katze schläft\n");
    write_text(tgt, "a dog runs\na cat sleeps\n");
    const char *corpus_cfgs[3] = {"examples/multi30k.cfg", "examples/multi30k-de-en-best.cfg",
                                  "examples/multi30k-en-de-tok.cfg"};
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd,
                 "%s train --config %s --src-train %s --tgt-train %s --src-valid %s --tgt-valid %s "
                 "--steps 0 --bpe-merges 5 --d-model 16 --heads 2 --d-ff 16 --layers 1 "
                 "--threads 1 --quiet --save %s/m%d",
                 tfm_test_bin(), tfm_test_path(corpus_cfgs[i]), src, tgt, src, tgt, dir, i);
        ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s: %s", corpus_cfgs[i], out);
    }
    /* the README's validation table script, on a tiny run: every line appears */
    snprintf(cmd, sizeof cmd,
             "%s train --src-train %s --tgt-train %s --src-valid %s --tgt-valid %s --steps 3 "
             "--save-every 1 --valid-every 1 --keep 5 --bpe-merges 5 --d-model 16 --heads 2 "
             "--d-ff 16 --layers 1 --threads 1 --quiet --save %s/r",
             tfm_test_bin(), src, tgt, src, tgt, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "tiny run: %s", out);
    snprintf(cmd, sizeof cmd,
             "TFM=%s THREADS=1 AVG='2 3' ALPHAS=1.5 ENS_ALPHAS=2.0 bash %s %s/r %s %s --lowercase",
             tfm_test_bin(), tfm_test_path("examples/recipe_eval.sh"), dir, src, tgt);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "recipe_eval.sh: %s", out);
    const char *want[] = {"validation BLEU",
                          "--beam-stop finished",
                          "best.tfm greedy ",
                          "best.tfm beam 5 alpha 1.5 ",
                          "checkpoint-00000003.tfm greedy ",
                          "avg-2.tfm beam 5 alpha 1.5 ",
                          "avg-3.tfm greedy ",
                          "ensemble avg-3.tfm + best.tfm, beam 5 alpha 2.0 ",
                          "ensemble avg-{2,3}, beam 5 alpha 2.0 "};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        ck_assert_msg(strstr(out, want[i]), "recipe_eval.sh: no '%s' in:\n%s", want[i], out);
    int lines = 0;
    for (const char *c = out; *c; c++) lines += *c == '\n';
    ck_assert_msg(lines == 13, "recipe_eval.sh: %d lines, want 13:\n%s", lines, out);
    /* the other stopping rule reaches tfm translate (a bad one would fail) */
    snprintf(cmd, sizeof cmd,
             "TFM=%s THREADS=1 AVG=2 ALPHAS=1.5 ENS_ALPHAS=2.0 BEAM_STOP=bound bash %s %s/r %s %s",
             tfm_test_bin(), tfm_test_path("examples/recipe_eval.sh"), dir, src, tgt);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "recipe_eval.sh, bound: %s", out);
    ck_assert_msg(strstr(out, "--beam-stop bound"), "recipe_eval.sh, bound: %s", out);
    snprintf(cmd, sizeof cmd, "TFM=%s THREADS=1 AVG=2 BEAM_STOP=never bash %s %s/r %s %s",
             tfm_test_bin(), tfm_test_path("examples/recipe_eval.sh"), dir, src, tgt);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) != 0, "recipe_eval.sh, never: %s", out);
}
END_TEST

/* --help comes from the flag tables, with the defaults and other spellings. */
START_TEST(test_help) {
    static char out[65536];
    char cmd[1024];
    const struct {
        const char *args, *want[3];
    } cases[] = {
        {"train --help", {"--steps X", "(default: 3000)", "--config FILE"}},
        {"plot --help", {"usage: tfm plot", "--output X", "(also -o)"}},
        {"attention --help", {"--head X", "(default: mean)", "--self"}},
        {"bpe --help", {"usage: tfm bpe learn", "--codes X", "(also -c)"}},
        {"bpe apply --help", {"--min-freq X", "(also --min-frequency)", "(default: 2)"}},
        {"bleu --help", {"--lowercase", "(also -lc)", "--width X"}},
        {"bench gemm --help", {"--m X", "--trans X", "(default: nn)"}},
        {"--help", {"plot", "attention", "bleu"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s %s", tfm_test_bin(), cases[i].args);
        ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "tfm %s: %s", cases[i].args, out);
        for (int k = 0; k < 3; k++)
            ck_assert_msg(strstr(out, cases[i].want[k]), "tfm %s: no '%s' in\n%s", cases[i].args,
                          cases[i].want[k], out);
    }
}
END_TEST

/* Other spellings (-c, -lc, --min-frequency=N) mean their flag; after "--"
 * every argument is a file, even one whose name starts with '-'. */
START_TEST(test_flag_aliases_and_end_of_options) {
    const char *dir = tfm_test_tmpdir("cli-alias");
    static char out[8192];
    char cmd[4096], want[8192];
    write_text(join(dir, "ref.txt"), "The cat sat on the mat .\nA dog runs\n");
    write_text(join(dir, "-hyp.txt"), "the cat sat on the mat .\na dog runs\n");
    snprintf(cmd, sizeof cmd, "cd %s && %s bleu --lowercase --width 2 ref.txt < ./-hyp.txt", dir,
             tfm_test_bin());
    ck_assert_msg(tfm_test_run(cmd, want, sizeof want) == 0, "%s", want);
    snprintf(cmd, sizeof cmd, "cd %s && %s bleu -lc -w 2 ref.txt < ./-hyp.txt", dir,
             tfm_test_bin());
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_str_eq(out, want);
    ck_assert_msg(strstr(out, "case:lc") && strstr(out, "\n100.00\n"), "%s", out);
    /* the file named -hyp.txt as a reference: an unknown flag before --, a file after */
    snprintf(cmd, sizeof cmd, "cd %s && %s bleu ref.txt -hyp.txt < ref.txt", dir, tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_str_eq(out, "tfm: unknown flag '-hyp.txt' (see --help)\n");
    snprintf(cmd, sizeof cmd, "cd %s && %s bleu -lc -- ref.txt -hyp.txt < ref.txt", dir,
             tfm_test_bin());
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "nrefs:2|case:lc"), "%s", out);

    /* bpe: --min-frequency=N is --min-freq, -s is --merges, -o is --output */
    write_text(join(dir, "text"), "low lower lowest\nnewer newest wider\n");
    snprintf(cmd, sizeof cmd,
             "cd %s && %s bpe learn --merges 5 --min-freq 1 --output a text 2>&1 && "
             "%s bpe learn -s 5 --min-frequency=1 -o b text 2>&1 && cmp a b",
             dir, tfm_test_bin(), tfm_test_bin());
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(cmd, sizeof cmd, "cd %s && %s bpe learn -s 5 -o c text --min-frequency", dir,
             tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_str_eq(out, "tfm: --min-frequency: missing value\n");
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("bad_input");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_corpus_inputs);
    tcase_add_test(tc, test_bad_flags);
    tcase_add_test(tc, test_config_files);
    tcase_add_test(tc, test_will_not_fit_in_memory);
    tcase_add_test(tc, test_unwritable_save_dir);
    tcase_add_test(tc, test_existing_run_untouched);
    tcase_add_test(tc, test_translate_and_bleu);
    tcase_add_test(tc, test_config_parse);
    tcase_add_test(tc, test_bench_help);
    tcase_add_test(tc, test_resume_other_config_refused);
    tcase_add_test(tc, test_resume_logs_changed_settings);
    tcase_add_test(tc, test_train_output);
    tcase_add_test(tc, test_config_flags_win);
    tcase_add_test(tc, test_example_configs);
    tcase_add_test(tc, test_help);
    tcase_add_test(tc, test_flag_aliases_and_end_of_options);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tfm_test_main(suite()); }
