/* Training stays bit-identical across refactors: real `tfm` runs (the
 * numbers corpus and the toy tasks, 200 steps each, fixed seed, --threads 2)
 * end with parameters whose hash matches the value recorded from the code of
 * 2026-11-28 (main at dbeb07c, before the trainer moved into the library).
 *
 * The hash is FNV-1a (64-bit) over the final checkpoint's parameters, taken
 * tensor by tensor in name order: name, shape, then the float bytes. Only the
 * program and the checkpoint reader are used, so the same test holds before
 * and after the move. When a change is meant to alter the numbers (and only
 * then), rerun with TFM_PRINT_HASHES=1 to print the new values.
 * The kernels of each vector path round in their own order, so the values
 * are recorded per path (tfm_kernels_name()): "avx512" on an AMD Zen 4 and
 * "avx2" on an AMD Zen 3 (-march=native builds), each from dbeb07c built and
 * run on that CPU. On a CPU whose path has no recorded values the tests are
 * skipped, and say so.
 *
 * The runs pin the conventions of that code, which new models no longer
 * follow by default (2026-11-29, issue 15): --decoder-start bos (the decoder
 * starts from the <s> embedding, not a zero vector) and, for the corpus run,
 * --exact-vocab=false (no merge symbols added to the vocabulary). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/base.h"
#include "tfm/checkpoint.h"
#include "tfm/kernels.h"
#include "util_test.h"

typedef struct {
    const char *kernels; /* tfm_kernels_name() */
    uint64_t numbers, copy, reverse;
} recorded_hashes;

/* The sanitizer build (make SANITIZE=1) compiles the kernels differently
 * (instrumented loops vectorize differently), so it has its own values; they
 * came out the same on both CPUs. */
#if defined(__SANITIZE_ADDRESS__)
static const recorded_hashes RECORDED[] = {
    {"avx512", 0x5fe7856957445dc8ull, 0x1c524e6a6d8bfef1ull, 0x3317534189628464ull},
    {"avx2", 0x5fe7856957445dc8ull, 0x1c524e6a6d8bfef1ull, 0x3317534189628464ull},
};
#else
static const recorded_hashes RECORDED[] = {
    {"avx512", 0x9f409e9dfe6765ecull, 0xe33f500649a65400ull, 0x224ac041fc119824ull},
    {"avx2", 0xa64882027813c02bull, 0xf73d8091e38344abull, 0xaf50b7212224100full},
};
#endif

/* The values recorded for the kernels in use, or NULL (the caller skips). */
static const recorded_hashes *recorded(void) {
    for (size_t i = 0; i < sizeof RECORDED / sizeof RECORDED[0]; i++)
        if (!strcmp(RECORDED[i].kernels, tfm_kernels_name())) return &RECORDED[i];
    return NULL;
}

#define NEED_RECORDED(rec)                                                                         \
    const recorded_hashes *rec = recorded();                                                       \
    if (!rec && !getenv("TFM_PRINT_HASHES")) {                                                     \
        tfm_test_skip("no parameter hashes recorded for the %s kernels", tfm_kernels_name());      \
    }

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int by_name(const void *a, const void *b) {
    const tfm_tensor *x = *(tfm_tensor *const *)a, *y = *(tfm_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Hash of the parameters of the checkpoint at path. */
static uint64_t params_hash(const char *path, int64_t *n_tensors) {
    tfm_checkpoint ck;
    ck_assert_msg(tfm_checkpoint_read(path, &ck) == 0, "%s", tfm_last_error());
    tfm_model m;
    ck_assert_msg(tfm_model_from_checkpoint(&m, &ck) == 0, "%s", tfm_last_error());
    tfm_checkpoint_free(&ck);
    int64_t n = m.params.count;
    tfm_tensor **sorted = malloc((size_t)n * sizeof *sorted);
    ck_assert_ptr_nonnull(sorted);
    memcpy(sorted, m.params.items, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, by_name);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int64_t i = 0; i < n; i++) {
        const tfm_tensor *t = sorted[i];
        h = fnv1a(h, t->name, strlen(t->name) + 1);
        for (int d = 0; d < t->ndim; d++) {
            int64_t s = t->shape[d];
            h = fnv1a(h, &s, sizeof s);
        }
        h = fnv1a(h, t->data, (size_t)t->n * sizeof(float));
    }
    free(sorted);
    tfm_model_free(&m);
    *n_tensors = n;
    return h;
}

static void run(const char *cmd) {
    static char out[1 << 14];
    int rc = tfm_test_run(cmd, out, sizeof out);
    ck_assert_msg(rc == 0, "exit %d: %s\n%s", rc, cmd, out);
}

static void check_hash(const char *what, const char *checkpoint, uint64_t want,
                       int64_t want_tensors) {
    int64_t n = 0;
    uint64_t got = params_hash(checkpoint, &n);
    if (getenv("TFM_PRINT_HASHES"))
        printf("%s: 0x%016llxull, %lld tensors\n", what, (unsigned long long)got, (long long)n);
    ck_assert_int_eq(n, want_tensors);
    ck_assert_msg(got == want, "%s: parameter hash 0x%016llx, recorded 0x%016llx", what,
                  (unsigned long long)got, (unsigned long long)want);
}

/* post-LN, dropout and attention dropout, AdamW weight decay, shared source
 * embedding, validation (loss and greedy BLEU) every 100 steps */
START_TEST(test_numbers_corpus_200_steps) {
    NEED_RECORDED(rec);
    const char *dir = tfm_test_tmpdir("bitid-numbers");
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "'%s' data numbers --out %s/data --train 2000 --valid 40 --test 1 --seed 1 2>&1",
             tfm_test_bin(), dir);
    run(cmd);
    snprintf(cmd, sizeof cmd,
             "'%s' train --src-train %s/data/train.en --tgt-train %s/data/train.de "
             "--src-valid %s/data/valid.en --tgt-valid %s/data/valid.de --bpe-merges 100 "
             "--d-model 32 --heads 2 --d-ff 64 --layers 1 --batch-tokens 400 --max-tokens 40 "
             "--steps 200 --valid-every 100 --warmup 50 --dropout 0.1 --attn-dropout 0.1 "
             "--weight-decay 0.01 --share-emb --seed 3 --threads 2 --quiet --save %s/run "
             "--decoder-start bos --exact-vocab=false 2>&1",
             tfm_test_bin(), dir, dir, dir, dir, dir);
    run(cmd);
    char path[1024];
    snprintf(path, sizeof path, "%s/run/checkpoint-00000200.tfm", dir);
    check_hash("numbers", path, rec ? rec->numbers : 0, 43);
}
END_TEST

/* post-LN, dropout, gradient clipping, the toy-task defaults */
START_TEST(test_copy_200_steps) {
    NEED_RECORDED(rec);
    const char *dir = tfm_test_tmpdir("bitid-copy");
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "'%s' train --task copy --vocab 12 --max-len 8 --d-model 32 --heads 4 --d-ff 64 "
             "--layers 2 --batch 32 --warmup 50 --dropout 0.1 --clip-norm 1 --steps 200 --seed 5 "
             "--threads 2 --eval-n 10 --quiet --save %s/run --decoder-start bos 2>&1",
             tfm_test_bin(), dir);
    run(cmd);
    char path[1024];
    snprintf(path, sizeof path, "%s/run/checkpoint-00000200.tfm", dir);
    check_hash("copy", path, rec ? rec->copy : 0, 86);
}
END_TEST

/* pre-LN (final layer norms), separate encoder/decoder depths, no dropout */
START_TEST(test_reverse_pre_ln_200_steps) {
    NEED_RECORDED(rec);
    const char *dir = tfm_test_tmpdir("bitid-reverse");
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "'%s' train --task reverse --vocab 10 --max-len 6 --d-model 32 --heads 2 --d-ff 48 "
             "--enc-layers 2 --dec-layers 1 --pre-ln --batch 24 --warmup 40 --steps 200 --seed 9 "
             "--threads 2 --eval-n 10 --quiet --save %s/run --decoder-start bos 2>&1",
             tfm_test_bin(), dir);
    run(cmd);
    char path[1024];
    snprintf(path, sizeof path, "%s/run/checkpoint-00000200.tfm", dir);
    check_hash("reverse", path, rec ? rec->reverse : 0, 64);
}
END_TEST


/* --bpe-dropout: the training text is segmented anew every epoch from (seed,
 * epoch), so a run resumed across epochs ends with the parameters of a run
 * that never stopped; the segmentation changes the training (not the plain
 * run's parameters), and a probability that drops nothing trains exactly as
 * the plain run; a resume with another probability is refused. */
START_TEST(test_bpe_dropout_resumes_bit_identical) {
    const char *dir = tfm_test_tmpdir("bitid-dropout");
    static char out[1 << 14];
    char cmd[4096], common[2048];
    snprintf(cmd, sizeof cmd,
             "'%s' data numbers --out %s/data --train 600 --valid 20 --test 1 --seed 1 2>&1",
             tfm_test_bin(), dir);
    run(cmd);
    snprintf(common, sizeof common,
             "'%s' train --src-train %s/data/train.en --tgt-train %s/data/train.de "
             "--bpe-merges 100 --d-model 16 --heads 2 --d-ff 32 --layers 1 --batch-tokens 300 "
             "--max-tokens 40 --warmup 20 --seed 4 --threads 2 --quiet --save-every 20",
             tfm_test_bin(), dir, dir);
    snprintf(cmd, sizeof cmd, "%s --bpe-dropout 0.1 --steps 60 --save %s/one 2>&1", common, dir);
    run(cmd);
    snprintf(cmd, sizeof cmd, "%s --bpe-dropout 0.1 --steps 25 --save %s/two 2>&1", common, dir);
    run(cmd);
    snprintf(cmd, sizeof cmd, "%s --bpe-dropout 0.2 --steps 60 --save %s/two --resume 2>&1",
             common, dir);
    ck_assert_int_ne(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--resume with different data: --bpe-dropout was 0.1, now 0.2"),
                  "%s", out);
    snprintf(cmd, sizeof cmd, "%s --steps 60 --save %s/two --resume 2>&1", common, dir);
    ck_assert_int_ne(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--bpe-dropout was 0.1, now 0"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s --bpe-dropout 0.1 --steps 60 --save %s/two --resume 2>&1",
             common, dir);
    run(cmd);
    snprintf(cmd, sizeof cmd, "%s --steps 60 --save %s/plain 2>&1", common, dir);
    run(cmd);
    /* a probability too small to drop anything: the epochs are segmented and
     * cut again, and the training is the plain run's, bit for bit */
    snprintf(cmd, sizeof cmd, "%s --bpe-dropout 1e-12 --steps 60 --save %s/tiny 2>&1", common,
             dir);
    run(cmd);
    char a[1024], b[1024], c[1024], d[1024];
    snprintf(d, sizeof d, "%s/tiny/checkpoint-00000060.tfm", dir);
    snprintf(a, sizeof a, "%s/one/checkpoint-00000060.tfm", dir);
    snprintf(b, sizeof b, "%s/two/checkpoint-00000060.tfm", dir);
    snprintf(c, sizeof c, "%s/plain/checkpoint-00000060.tfm", dir);
    int64_t n1, n2, n3;
    uint64_t h1 = params_hash(a, &n1), h2 = params_hash(b, &n2), h3 = params_hash(c, &n3);
    ck_assert_msg(h1 == h2, "resumed run differs: 0x%016llx vs 0x%016llx", (unsigned long long)h1,
                  (unsigned long long)h2);
    ck_assert(h1 != h3);
    int64_t n4;
    uint64_t h4 = params_hash(d, &n4);
    ck_assert_msg(h4 == h3, "--bpe-dropout 1e-12 trains differently from no dropout");
    /* the epochs really changed (60 steps cross several) */
    tfm_checkpoint ck;
    ck_assert_int_eq(tfm_checkpoint_read(a, &ck), 0);
    int64_t epoch = 0;
    ck_assert_int_eq(tfm_kv_get_i64(&ck.meta, "state.epoch", &epoch, a), 0);
    ck_assert_int_ge(epoch, 2);
    ck_assert_str_eq(tfm_kv_get(&ck.meta, "data.bpe-dropout"), "0.1");
    tfm_checkpoint_free(&ck);
    /* train.log: the batch shapes change every epoch, so the corpus line
     * gives the buffers' bounds, not a largest batch */
    const char *logs[2] = {"one", "plain"}, *want[2] = {"batches per epoch (buffers for up to ",
                                                        "batches per epoch (max "};
    for (int k = 0; k < 2; k++) {
        char path[1024], *text = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s/train.log", dir, logs[k]);
        ck_assert_int_eq(tfm_read_input(path, &text, &len), 0);
        ck_assert_msg(strstr(text, want[k]), "%s: no '%s'", path, want[k]);
        free(text);
    }
    /* flags: the range, and a budget that any segmentation fits */
    snprintf(cmd, sizeof cmd, "%s --bpe-dropout 1 --steps 2 --save %s/bad 2>&1", common, dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "--bpe-dropout: must be in [0, 1)"), "%s", out);
    snprintf(cmd, sizeof cmd,
             "%s --bpe-dropout 0.1 --max-tokens 300 --steps 2 --save %s/bad 2>&1", common, dir);
    ck_assert_int_ne(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--batch-tokens (300) must exceed --max-tokens (300)"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s --bpe-dropout-side target --steps 2 --save %s/bad 2>&1", common,
             dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "--bpe-dropout-side: 'target' is not both or source"), "%s", out);
    snprintf(cmd, sizeof cmd,
             "%s --bpe-dropout 0.1 --bpe-dropout-side source --steps 60 --save %s/two --resume 2>&1",
             common, dir);
    ck_assert_int_ne(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--bpe-dropout was 0.1, now 0.1 source"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s --bpe-dropout 0.1 --exact-vocab=false --steps 2 --save %s/bad 2>&1",
             common, dir);
    ck_assert_int_ne(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--bpe-dropout needs --exact-vocab"), "%s", out);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("bit_identity");
    TCase *tc = tcase_create("training");
    tcase_add_test(tc, test_numbers_corpus_200_steps);
    tcase_add_test(tc, test_copy_200_steps);
    tcase_add_test(tc, test_reverse_pre_ln_200_steps);
    tcase_add_test(tc, test_bpe_dropout_resumes_bit_identical);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tfm_test_main(suite()); }
