/* Never lose a run: a training run killed with SIGKILL at several points
 * (also while a checkpoint is being written) and resumed ends with exactly
 * the parameters and Adam moments of an uninterrupted run; SIGTERM finishes
 * the step, saves and exits; a corrupt or truncated newest checkpoint is
 * rejected by name and --resume falls back to the previous good one.
 *
 * The runs are forked processes that train through the library
 * (tfm/train.h: the toy task or tfm_train_corpus) on a tiny model with one
 * thread; tests/kill_resume.sh does the same with the real program.
 * TFM_TEST_SLOW_CHECKPOINT (src/io/atomic_file.c) makes each checkpoint wait
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
#include "tfm/train.h"
#include "util_test.h"

#define N_STEPS 24
#define SLOW_MS "40"

typedef enum { RUN_TOY, RUN_CORPUS } run_kind;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* corpus runs: the numbers corpus written by corpus_setup() */
static char g_corpus_dir[512];

static void on_term(int sig) {
    (void)sig;
    tfm_trainer_request_stop();
}

/* The toy run: the tiny copy task of util_test.h (dropout on, so the resumed
 * run must also reproduce the dropout masks), a checkpoint after every step. */
static int toy_train(const char *dir, int steps, int resume) {
    tfm_model_config mc = tfm_test_tiny_model();
    tfm_train_opts o = tfm_test_tiny_opts(steps, 1);
    o.save_every = 1;
    o.run_dir = dir;
    o.resume = resume;
    o.config_text = "run = toy\n";
    tfm_toy_source toy;
    tfm_trainer tr;
    if (tfm_toy_source_init(&toy, &tfm_test_tiny_task, 8, o.seed)) return 1;
    if (tfm_trainer_init(&tr, &o, &mc, &toy.source, NULL)) return 1;
    tfm_kv_set(&tr.state, "data.task", "copy");
    int rc = tfm_train(&tr);
    tfm_trainer_free(&tr);
    tfm_toy_source_free(&toy);
    return rc;
}

/* The corpus run: the numbers task of util_test.h, many epochs. */
static int corpus_train(const char *dir, int steps, int resume) {
    tfm_test_corpus_files files;
    tfm_corpus_task task = tfm_test_numbers_task(g_corpus_dir, &files);
    tfm_model_config mc = tfm_test_tiny_model(); /* the vocabulary comes from the corpus */
    tfm_train_opts o = tfm_test_tiny_opts(steps, 1);
    o.schedule.lr = 1.0; /* the default Noam factor */
    o.save_every = 1;
    o.keep = 2;
    o.valid_every = 1000;
    o.run_dir = dir;
    o.resume = resume;
    o.config_text = "run = corpus\n";
    return tfm_train_corpus(&task, &o, &mc, NULL);
}

/* Forks a process that trains `steps` steps into dir (resuming when asked),
 * with its output in DIR.log; slow_ms (or NULL) sets
 * TFM_TEST_SLOW_CHECKPOINT. The child exits 0, or 1 after printing
 * "tfm: <error>" as the program would. */
static pid_t spawn(run_kind kind, const char *dir, int steps, int resume, const char *slow_ms) {
    char log[512];
    snprintf(log, sizeof log, "%s.log", dir);
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
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigaction(SIGTERM, &sa, NULL);
        int rc = kind == RUN_TOY ? toy_train(dir, steps, resume) : corpus_train(dir, steps, resume);
        if (rc) fprintf(stderr, "tfm: %s\n", tfm_last_error());
        fflush(NULL);
        _exit(rc ? 1 : 0);
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

static void run_to_end(run_kind kind, const char *dir, int steps, int resume) {
    int st = wait_exit(spawn(kind, dir, steps, resume, NULL));
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "run in %s failed (status %d)", dir, st);
}

/* The file's text, kept until the next call (the tests read one at a time). */
static const char *slurp(const char *path) {
    static char *text;
    free(text);
    text = tfm_test_slurp(path);
    return text;
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
    run_to_end(RUN_TOY, a, N_STEPS, 0);

    /* 1: after 4 steps (the kill lands in step 5's training or its checkpoint) */
    pid_t pid = spawn(RUN_TOY, b, N_STEPS, 0, SLOW_MS);
    wait_for_entry(pid, b, "checkpoint-00000004.tfm");
    kill_now(pid);
    int at = newest_checkpoint(b);
    ck_assert_msg(at >= 4 && at < N_STEPS, "newest checkpoint after the first kill: %d", at);

    /* 2: while checkpoint 12 is being written: its temporary file is complete
     * but not yet renamed, so the resume must use checkpoint 11 */
    pid = spawn(RUN_TOY, b, N_STEPS, 1, SLOW_MS);
    wait_for_entry(pid, b, "checkpoint-00000012.tfm.tmp.");
    kill_now(pid);
    ck_assert_int_eq(newest_checkpoint(b), 11);
    ck_assert(dir_has_prefix(b, "checkpoint-00000012.tfm.tmp."));

    /* 3: right after checkpoint 18 appeared */
    pid = spawn(RUN_TOY, b, N_STEPS, 1, SLOW_MS);
    wait_for_entry(pid, b, "checkpoint-00000018.tfm");
    kill_now(pid);
    at = newest_checkpoint(b);
    ck_assert_msg(at >= 18 && at < N_STEPS, "newest checkpoint after the third kill: %d", at);

    run_to_end(RUN_TOY, b, N_STEPS, 1);
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
    run_to_end(RUN_TOY, a, N_STEPS, 0);

    /* 1: as soon as the run directory is set up, before any checkpoint is complete */
    pid_t pid = spawn(RUN_TOY, b, N_STEPS, 1, SLOW_MS);
    wait_for_entry(pid, b, "config.txt");
    kill_now(pid);
    ck_assert_int_eq(newest_checkpoint(b), -1);

    /* 2: during the write of the first checkpoint (complete temporary file, not renamed) */
    pid = spawn(RUN_TOY, b, N_STEPS, 1, SLOW_MS);
    wait_for_entry(pid, b, "checkpoint-00000001.tfm.tmp.");
    kill_now(pid);
    ck_assert_int_eq(newest_checkpoint(b), -1);

    run_to_end(RUN_TOY, b, N_STEPS, 1);
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
    run_to_end(RUN_TOY, a, N_STEPS, 0);
    pid_t pid = spawn(RUN_TOY, b, N_STEPS, 0, SLOW_MS);
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
    run_to_end(RUN_TOY, b, N_STEPS, 1);
    assert_same_checkpoint(ckpt(a, N_STEPS), ckpt(b, N_STEPS));
}
END_TEST

/* Damages the newest checkpoint (step 20) of a run stopped at 20; the direct
 * read names it, --resume says so in one line and falls back to step 19. */
static void damaged_newest(int truncate_it) {
    const char *root = tfm_test_tmpdir("resume-bad");
    const char *a = run_dir(root, "straight"), *b = run_dir(root, "damaged");
    run_to_end(RUN_TOY, a, N_STEPS, 0);
    run_to_end(RUN_TOY, b, 20, 0);
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

    char logpath[700];
    snprintf(logpath, sizeof logpath, "%s.log", b);
    unlink(logpath);
    run_to_end(RUN_TOY, b, N_STEPS, 1);
    const char *out = slurp(logpath);
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
    run_to_end(RUN_TOY, b, 3, 0);
    for (int s = 1; s <= 3; s++) truncate(ckpt(b, s), 100);
    char logpath[700];
    snprintf(logpath, sizeof logpath, "%s.log", b);
    unlink(logpath);
    int st = wait_exit(spawn(RUN_TOY, b, 6, 1, NULL));
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d", st);
    /* the last line of the output: the checkpoints tried, then this */
    const char *out = slurp(logpath);
    const char *last = out + strlen(out) - 1;
    while (last > out && last[-1] != '\n') last--;
    char want[640];
    snprintf(want, sizeof want, "tfm: %s: no usable checkpoint\n", b);
    ck_assert_str_eq(last, want);
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
static const char *corpus_setup(void) {
    const char *root = tfm_test_tmpdir("resume-corpus");
    snprintf(g_corpus_dir, sizeof g_corpus_dir, "%s/data", root);
    tfm_test_numbers_corpus_write(g_corpus_dir);
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
    const char *root = corpus_setup();
    const char *a = run_dir(root, "straight"), *b = run_dir(root, "killed");
    run_to_end(RUN_CORPUS, a, CORPUS_STEPS, 0);
    /* the straight run must cross at least one epoch boundary after the kill */
    int64_t epoch_end = ckpt_i64(ckpt(a, CORPUS_STEPS), "state.epoch");
    pid_t pid = spawn(RUN_CORPUS, b, CORPUS_STEPS, 0, SLOW_MS);
    wait_for_entry(pid, b, "checkpoint-00000003.tfm");
    kill_now(pid);
    int at = newest_checkpoint(b);
    ck_assert_msg(at >= 3 && at < CORPUS_STEPS, "newest checkpoint after the kill: %d", at);
    int64_t epoch_kill = ckpt_i64(ckpt(b, at), "state.epoch");
    ck_assert_msg(epoch_end > epoch_kill,
                  "the run does not cross an epoch after the kill (%lld, %lld)",
                  (long long)epoch_kill, (long long)epoch_end);
    run_to_end(RUN_CORPUS, b, CORPUS_STEPS, 1);
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
