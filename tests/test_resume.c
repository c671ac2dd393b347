/* Never lose a run: a training run killed with SIGKILL at several points
 * (also while a checkpoint is being written) and resumed ends with exactly
 * the parameters and Adam moments of an uninterrupted run; SIGTERM finishes
 * the step, saves and exits; a corrupt or truncated newest checkpoint is
 * rejected by name and --resume falls back to the previous good one.
 *
 * The runs are real `tfm train` processes on a tiny model with --threads 1.
 * TFM_TEST_SLOW_CHECKPOINT (src/io/checkpoint.c) makes each checkpoint wait
 * between its complete temporary file and the rename, so a kill can land
 * deterministically mid-write. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tfm/base.h"
#include "tfm/checkpoint.h"
#include "util_test.h"

#define N_STEPS 24
#define SLOW_MS "40"

/* dropout on, so the resumed run must also reproduce the dropout masks */
static const char *TOY_ARGS[] = {"train",     "--task",    "copy",
                                 "--d-model", "16",        "--heads",
                                 "2",         "--d-ff",    "32",
                                 "--layers",  "1",         "--vocab",
                                 "8",         "--max-len", "5",
                                 "--batch",   "8",         "--warmup",
                                 "10",        "--dropout", "0.1",
                                 "--threads", "1",         "--eval-n",
                                 "1",         "--quiet",   "--save-every",
                                 "1",         NULL};

/* corpus runs: argument list built in corpus_args() */
static const char *CORPUS_ARGS[64];

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts `tfm <base...> --steps N --save DIR [--resume]` with its output in
 * DIR.log; slow_ms (or NULL) sets TFM_TEST_SLOW_CHECKPOINT. */
static pid_t spawn(const char **base, const char *dir, int steps, int resume, const char *slow_ms) {
    char log[512], steps_s[32];
    snprintf(log, sizeof log, "%s.log", dir);
    snprintf(steps_s, sizeof steps_s, "%d", steps);
    const char *argv[96];
    int n = 0;
    argv[n++] = tfm_test_bin();
    for (int i = 0; base[i]; i++) argv[n++] = base[i];
    argv[n++] = "--steps";
    argv[n++] = steps_s;
    argv[n++] = "--save";
    argv[n++] = dir;
    if (resume) argv[n++] = "--resume";
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (slow_ms)
            setenv("TFM_TEST_SLOW_CHECKPOINT", slow_ms, 1);
        else
            unsetenv("TFM_TEST_SLOW_CHECKPOINT");
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits for the child (up to 120 s, then kills it and fails). */
static int wait_exit(pid_t pid) {
    int st = 0;
    for (int i = 0; i < 120000; i++) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return st;
        ck_assert_int_eq(r, 0);
        sleep_ms(1);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    ck_abort_msg("child %d did not finish in time", (int)pid);
    return -1;
}

static int dir_has_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    size_t n = strlen(prefix);
    /* a name ending in ".tfm" must match exactly: "checkpoint-4.tfm" is not
     * its own temporary file "checkpoint-4.tfm.tmp.<pid>" */
    int exact = n >= 4 && !strcmp(prefix + n - 4, ".tfm");
    while (!found && (e = readdir(d)))
        found = exact ? !strcmp(e->d_name, prefix) : !strncmp(e->d_name, prefix, n);
    closedir(d);
    return found;
}

/* Polls until dir holds an entry whose name starts with prefix; fails the
 * test if the child exits first (the run was too fast to interrupt). */
static void wait_for_entry(pid_t pid, const char *dir, const char *prefix) {
    for (int i = 0; i < 120000; i++) {
        if (dir_has_prefix(dir, prefix)) return;
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        ck_assert_msg(r == 0, "the run ended before %s/%s appeared", dir, prefix);
        usleep(200);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ck_abort_msg("%s/%s never appeared", dir, prefix);
}

static void kill_now(pid_t pid) {
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    int st = wait_exit(pid);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child was not killed (status %d)",
                  st);
}

/* Highest N of DIR/checkpoint-N.tfm (complete files only), -1 if none. */
static int newest_checkpoint(const char *dir) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int best = -1;
    while ((e = readdir(d))) {
        int step;
        char tail[8] = "";
        if (sscanf(e->d_name, "checkpoint-%d%7s", &step, tail) == 2 && !strcmp(tail, ".tfm") &&
            step > best)
            best = step;
    }
    closedir(d);
    return best;
}

static const char *ckpt(const char *dir, int step) {
    static char buf[4][512];
    static int slot;
    char *out = buf[slot++ & 3];
    snprintf(out, 512, "%s/checkpoint-%08d.tfm", dir, step);
    return out;
}

static void run_to_end(const char **base, const char *dir, int steps, int resume) {
    int st = wait_exit(spawn(base, dir, steps, resume, NULL));
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "run in %s failed (status %d)", dir, st);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Parameters and both Adam moments bit for bit, the step and every saved
 * training-state key (state.*) equal. */
static void assert_same_checkpoint(const char *a, const char *b) {
    tfm_checkpoint ca, cb;
    ck_assert_msg(tfm_checkpoint_read(a, &ca) == 0, "%s", tfm_last_error());
    ck_assert_msg(tfm_checkpoint_read(b, &cb) == 0, "%s", tfm_last_error());
    ck_assert(ca.has_moments && cb.has_moments);
    ck_assert_int_eq(ca.n_floats, cb.n_floats);
    ck_assert_int_eq(ca.n_tensors, cb.n_tensors);
    size_t n = (size_t)ca.n_floats * 3;
    const float *fa = (const float *)(const void *)ca.blocks,
                *fb = (const float *)(const void *)cb.blocks;
    size_t differ = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&fa[i], &fb[i], 4)) {
            if (!differ) first = i;
            differ++;
        }
    ck_assert_msg(differ == 0, "%s vs %s: %zu of %zu floats differ (first at %zu: %.9g vs %.9g)", a,
                  b, differ, n, first, differ ? fa[first] : 0.0, differ ? fb[first] : 0.0);
    ck_assert_str_eq(tfm_kv_get(&ca.meta, "train.step"), tfm_kv_get(&cb.meta, "train.step"));
    for (int64_t i = 0; i < ca.meta.n; i++)
        if (!strncmp(ca.meta.keys[i], "state.", 6)) {
            const char *vb = tfm_kv_get(&cb.meta, ca.meta.keys[i]);
            ck_assert_msg(vb && !strcmp(vb, ca.meta.vals[i]), "%s: %s vs %s", ca.meta.keys[i],
                          ca.meta.vals[i], vb ? vb : "(missing)");
        }
    tfm_checkpoint_free(&ca);
    tfm_checkpoint_free(&cb);
}

static const char *run_dir(const char *root, const char *name) {
    static char buf[4][512];
    static int slot;
    char *out = buf[slot++ & 3], tmp[512];
    snprintf(tmp, sizeof tmp, "%s/%s", root, name); /* root may be an older slot */
    memcpy(out, tmp, sizeof tmp);
    return out;
}

START_TEST(test_sigkill_resume_bit_exact) {
    const char *root = tfm_test_tmpdir("resume-kill");
    const char *a = run_dir(root, "straight"), *b = run_dir(root, "killed");
    run_to_end(TOY_ARGS, a, N_STEPS, 0);

    /* 1: after 4 steps (the kill lands in step 5's training or its checkpoint) */
    pid_t pid = spawn(TOY_ARGS, b, N_STEPS, 0, SLOW_MS);
    wait_for_entry(pid, b, "checkpoint-00000004.tfm");
    kill_now(pid);
    int at = newest_checkpoint(b);
    ck_assert_msg(at >= 4 && at < N_STEPS, "newest checkpoint after the first kill: %d", at);

    /* 2: while checkpoint 12 is being written: its temporary file is complete
     * but not yet renamed, so the resume must use checkpoint 11 */
    pid = spawn(TOY_ARGS, b, N_STEPS, 1, SLOW_MS);
    wait_for_entry(pid, b, "checkpoint-00000012.tfm.tmp.");
    kill_now(pid);
    ck_assert_int_eq(newest_checkpoint(b), 11);
    ck_assert(dir_has_prefix(b, "checkpoint-00000012.tfm.tmp."));

    /* 3: right after checkpoint 18 appeared */
    pid = spawn(TOY_ARGS, b, N_STEPS, 1, SLOW_MS);
    wait_for_entry(pid, b, "checkpoint-00000018.tfm");
    kill_now(pid);
    at = newest_checkpoint(b);
    ck_assert_msg(at >= 18 && at < N_STEPS, "newest checkpoint after the third kill: %d", at);

    run_to_end(TOY_ARGS, b, N_STEPS, 1);
    assert_same_checkpoint(ckpt(a, N_STEPS), ckpt(b, N_STEPS));
    /* the resumes are in the run's log, the last one from step 18 or later */
    const char *tlog = slurp(run_dir(b, "train.log"));
    ck_assert_msg(strstr(tlog, "/checkpoint-00000011.tfm at step 11"), "%.1500s", tlog);
    /* the temporary files of the interrupted writes are gone */
    ck_assert_msg(strstr(tlog, "temporary file(s) of interrupted checkpoint writes"), "%.1500s",
                  tlog);
    ck_assert(!dir_has_prefix(b, "checkpoint-00000012.tfm.tmp."));
}
END_TEST

/* Issue 19: a job killed before its first checkpoint, and again while its
 * first checkpoint is being written, is restarted with the same command and
 * --resume: it starts from step 0 (saying so) and ends bit-identical. */
START_TEST(test_kill_before_first_checkpoint) {
    const char *root = tfm_test_tmpdir("resume-early");
    const char *a = run_dir(root, "straight"), *b = run_dir(root, "killed");
    run_to_end(TOY_ARGS, a, N_STEPS, 0);

    /* 1: as soon as the run directory is set up, before any checkpoint is complete */
    pid_t pid = spawn(TOY_ARGS, b, N_STEPS, 1, SLOW_MS);
    wait_for_entry(pid, b, "config.txt");
    kill_now(pid);
    ck_assert_int_eq(newest_checkpoint(b), -1);

    /* 2: during the write of the first checkpoint (complete temporary file, not renamed) */
    pid = spawn(TOY_ARGS, b, N_STEPS, 1, SLOW_MS);
    wait_for_entry(pid, b, "checkpoint-00000001.tfm.tmp.");
    kill_now(pid);
    ck_assert_int_eq(newest_checkpoint(b), -1);

    run_to_end(TOY_ARGS, b, N_STEPS, 1);
    assert_same_checkpoint(ckpt(a, N_STEPS), ckpt(b, N_STEPS));
    const char *tlog = slurp(run_dir(b, "train.log"));
    ck_assert_msg(strstr(tlog, "--resume: no checkpoint yet: starting from step 0"), "%.1500s",
                  tlog);
    ck_assert(!dir_has_prefix(b, "checkpoint-00000001.tfm.tmp."));
}
END_TEST

START_TEST(test_sigterm_saves_and_exits) {
    const char *root = tfm_test_tmpdir("resume-term");
    const char *a = run_dir(root, "straight"), *b = run_dir(root, "term");
    run_to_end(TOY_ARGS, a, N_STEPS, 0);
    pid_t pid = spawn(TOY_ARGS, b, N_STEPS, 0, SLOW_MS);
    wait_for_entry(pid, b, "checkpoint-00000006.tfm");
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    int st = wait_exit(pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
    /* the message names the step it stopped at, and that step is saved */
    const char *tlog = slurp(run_dir(b, "train.log"));
    const char *msg = strstr(tlog, "interrupted at step ");
    ck_assert_msg(msg != NULL, "no interruption message in %.1500s", tlog);
    int stopped = atoi(msg + strlen("interrupted at step "));
    ck_assert_msg(stopped >= 6 && stopped < N_STEPS, "stopped at %d", stopped);
    ck_assert_int_eq(newest_checkpoint(b), stopped);
    /* a clean exit leaves no temporary file */
    char tmp_prefix[64];
    snprintf(tmp_prefix, sizeof tmp_prefix, "checkpoint-%08d.tfm.tmp", stopped);
    ck_assert_msg(!dir_has_prefix(b, tmp_prefix), "temporary file left behind");
    run_to_end(TOY_ARGS, b, N_STEPS, 1);
    assert_same_checkpoint(ckpt(a, N_STEPS), ckpt(b, N_STEPS));
}
END_TEST

/* Damages the newest checkpoint (step 20) of a run stopped at 20; the direct
 * read names it, --resume says so in one line and falls back to step 19. */
static void damaged_newest(int truncate_it) {
    const char *root = tfm_test_tmpdir("resume-bad");
    const char *a = run_dir(root, "straight"), *b = run_dir(root, "damaged");
    run_to_end(TOY_ARGS, a, N_STEPS, 0);
    run_to_end(TOY_ARGS, b, 20, 0);
    const char *bad = ckpt(b, 20);
    struct stat sb;
    ck_assert_int_eq(stat(bad, &sb), 0);
    if (truncate_it) {
        ck_assert_int_eq(truncate(bad, sb.st_size / 2), 0);
    } else {
        int fd = open(bad, O_RDWR);
        ck_assert_int_ge(fd, 0);
        unsigned char byte;
        off_t at = sb.st_size / 2; /* inside the parameters */
        ck_assert_int_eq(pread(fd, &byte, 1, at), 1);
        byte ^= 0x10;
        ck_assert_int_eq(pwrite(fd, &byte, 1, at), 1);
        close(fd);
    }
    tfm_checkpoint ck;
    ck_assert_int_ne(tfm_checkpoint_read(bad, &ck), 0);
    const char *err = tfm_last_error();
    ck_assert_msg(strstr(err, bad) && strstr(err, truncate_it ? "truncated" : "checksum"), "%s",
                  err);
    ck_assert_ptr_null(strchr(err, '\n'));

    char cmd[2048], out[8192];
    char extra[1024] = "";
    for (int i = 0; TOY_ARGS[i]; i++) {
        strcat(extra, " ");
        strcat(extra, TOY_ARGS[i]);
    }
    snprintf(cmd, sizeof cmd, "%s%s --steps %d --save %s --resume", tfm_test_bin(), extra, N_STEPS,
             b);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    /* exactly one line about the damaged file, naming it and the fallback */
    char want[1024];
    snprintf(want, sizeof want, "tfm: %s: %s", bad,
             truncate_it ? "truncated" : "checksum mismatch");
    const char *line = strstr(out, want);
    ck_assert_msg(line != NULL && (line == out || line[-1] == '\n'), "no '%s' line in:\n%.1500s",
                  want, out);
    const char *eol = strchr(line, '\n');
    ck_assert_ptr_nonnull(eol);
    char first[1024];
    snprintf(first, sizeof first, "%.*s", (int)(eol - line), line);
    ck_assert_msg(strstr(first, "falling back to the previous checkpoint"), "%s", first);
    const char *tlog = slurp(run_dir(b, "train.log"));
    snprintf(want, sizeof want, "resumed from %s at step 19", ckpt(b, 19));
    ck_assert_msg(strstr(tlog, want), "no '%s' in:\n%.1500s", want, tlog);
    assert_same_checkpoint(ckpt(a, N_STEPS), ckpt(b, N_STEPS));
}

START_TEST(test_corrupt_newest_falls_back) { damaged_newest(0); }
END_TEST

START_TEST(test_truncated_newest_falls_back) { damaged_newest(1); }
END_TEST

/* Nothing usable left: a one-line error and a non-zero exit, nothing written. */
START_TEST(test_no_usable_checkpoint) {
    const char *root = tfm_test_tmpdir("resume-none");
    const char *b = run_dir(root, "run");
    run_to_end(TOY_ARGS, b, 3, 0);
    for (int s = 1; s <= 3; s++) truncate(ckpt(b, s), 100);
    char extra[1024] = "", cmd[2048], out[8192];
    for (int i = 0; TOY_ARGS[i]; i++) {
        strcat(extra, " ");
        strcat(extra, TOY_ARGS[i]);
    }
    snprintf(cmd, sizeof cmd, "%s%s --steps 6 --save %s --resume 2>&1 | tail -n 1", tfm_test_bin(),
             extra, b);
    tfm_test_run(cmd, out, sizeof out);
    char want[640];
    snprintf(want, sizeof want, "tfm: %s: no usable checkpoint\n", b);
    ck_assert_str_eq(out, want);
    snprintf(cmd, sizeof cmd, "%s%s --steps 6 --save %s --resume", tfm_test_bin(), extra, b);
    ck_assert_int_ne(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_int_eq(newest_checkpoint(b), 3);
    struct stat sb;
    ck_assert_int_eq(stat(ckpt(b, 3), &sb), 0);
    ck_assert_int_eq(sb.st_size, 100);
}
END_TEST

/* Found by tests/fuzz/fuzz_checkpoint.c: a tensor name holding a newline was
 * echoed into a two-line error. Control characters in names are rejected. */
START_TEST(test_checkpoint_name_with_newline) {
    unsigned char file[256];
    size_t n = 0;
#define PUT(p, len) (memcpy(file + n, (p), (len)), n += (len))
    uint32_t u32;
    uint64_t u64;
    PUT("TFMCKPT1", 8);
    u32 = 1, PUT(&u32, 4); /* version */
    u32 = 0, PUT(&u32, 4); /* flags: no moments */
    u64 = 0, PUT(&u64, 8); /* metadata length */
    u64 = 1, PUT(&u64, 8); /* tensors */
    u32 = 3, PUT(&u32, 4);
    PUT("a\nb", 3);        /* the name */
    u32 = 1, PUT(&u32, 4); /* ndim */
    u64 = 1, PUT(&u64, 8); /* shape */
    u64 = 1, PUT(&u64, 8); /* floats */
    float x = 1.0f;
    PUT(&x, 4);
    u32 = tfm_crc32c(0, file, n), PUT(&u32, 4);
    PUT("TFMEND\0\0", 8);
#undef PUT
    tfm_checkpoint ck;
    ck_assert_int_ne(tfm_checkpoint_parse(file, n, "crafted.tfm", &ck), 0);
    ck_assert_str_eq(tfm_last_error(), "crafted.tfm: tensor 0: control character in name");
    /* the same file with a plain name parses */
    file[8 + 4 + 4 + 8 + 8 + 4 + 1] = '_';
    n -= 12;
    u32 = tfm_crc32c(0, file, n);
    memcpy(file + n, &u32, 4);
    ck_assert_msg(tfm_checkpoint_parse(file, n + 12, "crafted.tfm", &ck) == 0, "%s",
                  tfm_last_error());
    ck_assert_str_eq(ck.names[0], "a_b");
    tfm_checkpoint_free(&ck);
}
END_TEST

/* ---- corpus runs: the batcher's epoch and position must come back exactly ---- */
static char g_corpus_dir[512];
static const char *corpus_args(void) {
    const char *root = tfm_test_tmpdir("resume-corpus");
    snprintf(g_corpus_dir, sizeof g_corpus_dir, "%s/data", root);
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "%s data numbers --out %s --train 60 --valid 8 --test 0",
             tfm_test_bin(), g_corpus_dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%.1500s", out);
    static char paths[4][600];
    const char *names[4] = {"train.de", "train.en", "valid.de", "valid.en"};
    for (int i = 0; i < 4; i++)
        snprintf(paths[i], sizeof paths[i], "%s/%s", g_corpus_dir, names[i]);
    const char *args[] = {"train",
                          "--src-train",
                          paths[0],
                          "--tgt-train",
                          paths[1],
                          "--src-valid",
                          paths[2],
                          "--tgt-valid",
                          paths[3],
                          "--bpe-merges",
                          "40",
                          "--batch-tokens",
                          "160",
                          "--valid-every",
                          "1000",
                          "--valid-max",
                          "4",
                          "--d-model",
                          "16",
                          "--heads",
                          "2",
                          "--d-ff",
                          "32",
                          "--layers",
                          "1",
                          "--warmup",
                          "10",
                          "--dropout",
                          "0.1",
                          "--threads",
                          "1",
                          "--quiet",
                          "--save-every",
                          "1",
                          "--keep",
                          "2",
                          "--eval-n",
                          "1",
                          NULL};
    int n = 0;
    for (; args[n]; n++) CORPUS_ARGS[n] = args[n];
    CORPUS_ARGS[n] = NULL;
    return root;
}

static int64_t ckpt_i64(const char *path, const char *key) {
    tfm_checkpoint ck;
    ck_assert_msg(tfm_checkpoint_read(path, &ck) == 0, "%s", tfm_last_error());
    int64_t v = -1;
    ck_assert_msg(tfm_kv_get_i64(&ck.meta, key, &v, path) == 0, "%s", tfm_last_error());
    tfm_checkpoint_free(&ck);
    return v;
}

#define CORPUS_STEPS 16
START_TEST(test_corpus_resume_across_epoch) {
    const char *root = corpus_args();
    const char *a = run_dir(root, "straight"), *b = run_dir(root, "killed");
    run_to_end(CORPUS_ARGS, a, CORPUS_STEPS, 0);
    /* the straight run must cross at least one epoch boundary after the kill */
    int64_t epoch_end = ckpt_i64(ckpt(a, CORPUS_STEPS), "state.epoch");
    pid_t pid = spawn(CORPUS_ARGS, b, CORPUS_STEPS, 0, SLOW_MS);
    wait_for_entry(pid, b, "checkpoint-00000003.tfm");
    kill_now(pid);
    int at = newest_checkpoint(b);
    ck_assert_msg(at >= 3 && at < CORPUS_STEPS, "newest checkpoint after the kill: %d", at);
    int64_t epoch_kill = ckpt_i64(ckpt(b, at), "state.epoch");
    ck_assert_msg(epoch_end > epoch_kill,
                  "the run does not cross an epoch after the kill (%lld, %lld)",
                  (long long)epoch_kill, (long long)epoch_end);
    run_to_end(CORPUS_ARGS, b, CORPUS_STEPS, 1);
    assert_same_checkpoint(ckpt(a, CORPUS_STEPS), ckpt(b, CORPUS_STEPS));
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("resume");
    TCase *tc = tcase_create("kill");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_sigkill_resume_bit_exact);
    tcase_add_test(tc, test_kill_before_first_checkpoint);
    tcase_add_test(tc, test_sigterm_saves_and_exits);
    tcase_add_test(tc, test_corrupt_newest_falls_back);
    tcase_add_test(tc, test_truncated_newest_falls_back);
    tcase_add_test(tc, test_no_usable_checkpoint);
    tcase_add_test(tc, test_checkpoint_name_with_newline);
    tcase_add_test(tc, test_corpus_resume_across_epoch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tfm_test_main(suite()); }
