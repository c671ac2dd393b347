/* Shared test helpers: fixtures written by tests/gen_fixtures.py, array
 * comparison with atol/rtol that prints the max difference, temp dirs. */
#ifndef TFM_TEST_UTIL_H
#define TFM_TEST_UTIL_H

#include <check.h>
#include <stdint.h>

#include "tfm/train.h"

/* Fixture file: "TFMFIX01", u32 version (1), u32 count, then per tensor:
 * u32 name_len, name, u32 dtype (0 f32, 1 i32), u32 ndim, i64 shape[ndim],
 * little-endian data. */
typedef struct {
    char name[128];
    int dtype;
    int ndim;
    int64_t shape[4];
    int64_t n;
    void *data;
} tfm_fixture_tensor;

typedef struct {
    int count;
    tfm_fixture_tensor *t;
} tfm_fixture;

/* Loads tests/fixtures/<file> (relative to TFM_ROOT or the cwd); fails the
 * test when missing or malformed. */
void tfm_fixture_load(tfm_fixture *f, const char *file);
void tfm_fixture_free(tfm_fixture *f);
/* The named tensor; fails the test when missing. */
const tfm_fixture_tensor *tfm_fixture_get(const tfm_fixture *f, const char *name);
const float *tfm_fixture_f32(const tfm_fixture *f, const char *name, int64_t expect_n);
const int32_t *tfm_fixture_i32(const tfm_fixture *f, const char *name, int64_t expect_n);

/* Prints "what: max |diff| = ..." and returns 1 when every element satisfies
 * |got - want| <= atol + rtol * |want|. */
int tfm_allclose(const char *what, const float *got, const float *want, int64_t n, float atol,
                 float rtol);
#define ck_assert_allclose(what, got, want, n, atol, rtol)                                         \
    ck_assert_msg(tfm_allclose(what, got, want, n, atol, rtol), "%s differs", what)

/* Uniform random floats in [lo, hi) from a seed (deterministic). */
void tfm_test_fill(float *x, int64_t n, uint64_t seed, float lo, float hi);

/* A fresh empty directory under /tmp; the returned string is static storage
 * per call slot (up to 8 live at once). */
const char *tfm_test_tmpdir(const char *tag);
/* Absolute path of a file relative to the repository root. */
const char *tfm_test_path(const char *rel);
/* Path of the built tfm binary (TFM_BIN, else build/tfm). */
const char *tfm_test_bin(void);
/* Runs a shell command, captures up to cap-1 bytes of stdout+stderr into out,
 * returns the exit status (or -1). */
int tfm_test_run(const char *cmd, char *out, size_t cap);

/* The whole file (malloc'd, NUL-terminated); fails the test when it cannot
 * be read. */
char *tfm_test_slurp(const char *path);
/* Sends this process's stdout (fd 1) to a temporary file, which is not a
 * terminal, until tfm_test_stdout_end returns what was written (malloc'd,
 * NUL-terminated). Not nested. */
void tfm_test_stdout_begin(void);
char *tfm_test_stdout_end(void);

/* The tiny copy task the trainer tests share: vocabulary 8, lengths 1..5; a
 * model of d_model 16, 2 heads, d_ff 32, one layer each, dropout 0.1 (a
 * resumed run must reproduce the dropout masks); options: steps, seed, Noam
 * factor 0.5, warmup 10, one thread, nothing on stdout. */
extern const tfm_toy_config tfm_test_tiny_task;
tfm_model_config tfm_test_tiny_model(void);
tfm_train_opts tfm_test_tiny_opts(int64_t steps, uint64_t seed);

/* The numbers corpus of the corpus-training tests, written into dir
 * (train.de/en: 60 pairs, valid.de/en: 8), and a task on it: joint BPE of 40
 * merges, batches of 160 tokens, greedy validation BLEU on 4 sentences. The
 * task points into *files, which must outlive it. */
typedef struct {
    char path[4][600]; /* train.de, train.en, valid.de, valid.en */
} tfm_test_corpus_files;
void tfm_test_numbers_corpus_write(const char *dir);
tfm_corpus_task tfm_test_numbers_task(const char *dir, tfm_test_corpus_files *files);

/* Lines of text that start with prefix. */
int tfm_test_count_lines(const char *text, const char *prefix);

/* Caps this process's address space at its current size plus extra bytes
 * (setrlimit RLIMIT_AS), so that a larger allocation fails; for out-of-memory
 * tests, which Check runs in a forked child. Returns 0, or -1 where it cannot
 * work (AddressSanitizer reserves terabytes of address space): skip then.
 * tfm_test_unlimit_memory() lifts the cap again. */
int tfm_test_limit_memory(size_t extra);
void tfm_test_unlimit_memory(void);

/* Skips the running test: prints "SKIP: <test>: <reason>", which
 * tests/run_tests.sh counts as a skip (not a pass) and lists with its reason,
 * then returns from the test. */
#define tfm_test_skip(...)                                                                         \
    do {                                                                                           \
        tfm_test_skip_note(__func__, __VA_ARGS__);                                                 \
        return;                                                                                    \
    } while (0)
void tfm_test_skip_note(const char *test_fn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Standard main for a suite: runs it and returns non-zero on failure. */
int tfm_test_main(Suite *s);

#endif
