/* A training step and a decoding call allocate nothing once warmed up (the
 * project's rule: no allocation inside the training step; decode.h: nothing
 * per step, the cache from the tape's arena when it fits).
 *
 * This program defines malloc, free and the other allocator entry points
 * itself, forwarding to glibc's (__libc_malloc, ...), so that every call in
 * the process is seen, libgomp's included: libgomp allocates and frees a
 * team for every parallel region that runs one thread. That is what these
 * tests found first (on 3d7988e: 1570 calls in 5 steps of the copy task at
 * one thread, 1220 at two, 700 per greedy decoding call; src/util/par.h),
 * then the GEMM's packing buffers, which grew when a longer batch came
 * (BPE-dropout). Counting is switched on around the code under test only.
 * Skipped under AddressSanitizer, ThreadSanitizer or MemorySanitizer (they
 * own malloc) and without glibc. The first test relies on libgomp's
 * one-thread teams to show that the counter sees the OpenMP runtime. */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "tfm/decode.h"
#include "tfm/kernels.h"
#include "tfm/nn.h"
#include "tfm/ops.h"
#include "tfm/toy.h"
#include "tfm/train.h"
#include "util_test.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
#define SANITIZED 1
#endif
#endif

#if defined(SANITIZED) || !defined(__GLIBC__)
#define COUNTING 0
#else
#define COUNTING 1

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t n);

static atomic_int g_on;
static atomic_long g_calls;
/* what the first call counted asked for: bytes + 1, or SIZE_MAX for a free */
static _Atomic size_t g_first;

static void seen(size_t n) {
    if (!atomic_load_explicit(&g_on, memory_order_relaxed)) return;
    if (atomic_fetch_add(&g_calls, 1) == 0) atomic_store(&g_first, n);
}

void *malloc(size_t n);
void *calloc(size_t n, size_t size);
void *realloc(void *p, size_t n);
void free(void *p);
int posix_memalign(void **out, size_t align, size_t n);
void *aligned_alloc(size_t align, size_t n);
void *memalign(size_t align, size_t n);
void *valloc(size_t n);
void *pvalloc(size_t n);

void *malloc(size_t n) {
    seen(n + 1);
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t size) {
    seen(size && n > SIZE_MAX / size ? SIZE_MAX - 1 : n * size + 1);
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n) {
    seen(n + 1);
    return __libc_realloc(p, n);
}
void free(void *p) {
    if (p) seen(SIZE_MAX);
    __libc_free(p);
}
int posix_memalign(void **out, size_t align, size_t n) {
    seen(n + 1);
    if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
    void *p = __libc_memalign(align, n);
    if (!p && n) return ENOMEM;
    *out = p;
    return 0;
}
void *aligned_alloc(size_t align, size_t n) {
    seen(n + 1);
    return __libc_memalign(align, n);
}
void *memalign(size_t align, size_t n) {
    seen(n + 1);
    return __libc_memalign(align, n);
}
static size_t page_size(void) {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}
void *valloc(size_t n) {
    seen(n + 1);
    return __libc_memalign(page_size(), n);
}
void *pvalloc(size_t n) {
    seen(n + 1);
    size_t pg = page_size();
    if (n > SIZE_MAX - pg) return NULL;
    return __libc_memalign(pg, (n + pg - 1) / pg * pg);
}
#endif

#define NEEDS_COUNTING()                                                                           \
    do {                                                                                           \
        if (!COUNTING) tfm_test_skip("needs glibc and a build without a sanitizer");               \
    } while (0)

static void count_begin(void) {
#if COUNTING
    atomic_store(&g_calls, 0);
    atomic_store(&g_first, 0);
    atomic_store(&g_on, 1);
#endif
}

/* the calls since count_begin; what: the first one, for messages */
static long count_end(char *what, size_t cap) {
    snprintf(what, cap, "none");
#if COUNTING
    atomic_store(&g_on, 0);
    size_t f = atomic_load(&g_first);
    if (f == SIZE_MAX)
        snprintf(what, cap, "a free");
    else if (f)
        snprintf(what, cap, "%zu bytes", f - 1);
    return atomic_load(&g_calls);
#else
    return 0;
#endif
}

/* the counter sees what it should: a plain malloc/free pair and a
 * one-thread OpenMP region (libgomp's team, allocated through this
 * program's malloc family), or the other tests prove nothing */
START_TEST(the_counter_sees_allocations) {
    NEEDS_COUNTING();
    char what[64];
    count_begin();
    char *volatile p = malloc(100);
    free(p);
    ck_assert_int_eq(count_end(what, sizeof what), 2);
    ck_assert_str_eq(what, "100 bytes");
    volatile int sink = 0;
    count_begin();
#pragma omp parallel num_threads(1)
    sink++;
    long n = count_end(what, sizeof what);
    ck_assert_msg(n >= 1,
                  "a one-thread OpenMP region: %ld allocator calls (libgomp 12 makes 2: if a "
                  "newer one makes none, this check and src/util/par.h's reason need a look)",
                  n);
    (void)sink;
}
END_TEST

/* Every test sets the threads itself; the runtime must give a region what
 * it asks for (OMP_DYNAMIC in the environment could give one thread). */
static void setup(void) {
#ifdef _OPENMP
    omp_set_dynamic(0);
#endif
}

/* the copy task on a model big enough that some regions run parallel on two
 * threads: d_model 64, 4 heads, d_ff 128, two layers, batches of 32 */
static const tfm_toy_config k_task = {TFM_TOY_COPY, 11, 2, 9, 0};

static tfm_model_config toy_model(void) {
    tfm_model_config c;
    tfm_model_config_default(&c);
    c.vocab = k_task.vocab;
    c.d_model = 64;
    c.n_heads = 4;
    c.d_ff = 128;
    c.enc_layers = c.dec_layers = 2;
    c.max_len = 32;
    c.dropout = 0.1f;
    c.attn_dropout = 0.1f;
    return c;
}

/* a trainer of toy_model() on the copy task, batches of 32, with o and h */
static void toy_trainer(tfm_trainer *tr, tfm_toy_source *toy, const tfm_train_opts *o,
                        const tfm_train_hooks *h) {
    tfm_model_config c = toy_model();
    ck_assert_int_eq(tfm_toy_source_init(toy, &k_task, 32, 1), 0);
    ck_assert_msg(tfm_trainer_init(tr, o, &c, &toy->source, h) == 0, "%s", tfm_last_error());
}

/* steps 4-8 of a run (1-3 warm up: GEMM packing buffers, libgomp's pool) */
static void steps_allocate_nothing(int threads, tfm_precision prec, int64_t accum, double ema) {
    tfm_train_opts o = tfm_test_tiny_opts(100, 1);
    o.threads = threads;
    o.precision = prec;
    o.accum = accum;
    o.ema = ema;
    o.clip_norm = 1.0f;
    tfm_trainer tr;
    tfm_toy_source toy;
    toy_trainer(&tr, &toy, &o, NULL);
    for (int i = 0; i < 3; i++) ck_assert_int_ge(tfm_trainer_step(&tr), 0);
    char what[64];
    count_begin();
    int rc = 0;
    for (int i = 0; i < 5; i++) rc |= tfm_trainer_step(&tr) < 0;
    long n = count_end(what, sizeof what);
    ck_assert_msg(!rc, "%s", tfm_last_error());
    ck_assert_msg(n == 0,
                  "%d thread(s), %s, accum %lld, ema %g: %ld allocator calls in 5 steps "
                  "(the first: %s)",
                  threads, tfm_precision_name(prec), (long long)accum, ema, n, what);
    tfm_trainer_free(&tr);
    tfm_toy_source_free(&toy);
}

/* the default loss, made NaN on the 5th and 6th calls: the steps that skip
 * their update write a line (tfm_trainer_log allocated it) */
static tfm_tensor *nan_loss(void *ctx, tfm_trainer *tr, const tfm_seq_batch *b, int64_t *n_tok) {
    int *calls = ctx;
    tfm_tensor *loss = tfm_model_loss(&tr->model, &tr->tape, b, tr->o.label_smoothing, n_tok);
    ++*calls;
    return loss && (*calls == 5 || *calls == 6) ? tfm_scale(&tr->tape, loss, NAN) : loss;
}

START_TEST(a_skipped_step_allocates_nothing) {
    NEEDS_COUNTING();
    tfm_train_opts o = tfm_test_tiny_opts(100, 1);
    int calls = 0;
    tfm_train_hooks h = {.ctx = &calls, .loss = nan_loss};
    tfm_trainer tr;
    tfm_toy_source toy;
    toy_trainer(&tr, &toy, &o, &h);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(tfm_trainer_step(&tr), 0);
    char what[64];
    int rc[5];
    count_begin();
    for (int i = 0; i < 5; i++) rc[i] = tfm_trainer_step(&tr);
    long n = count_end(what, sizeof what);
    ck_assert_msg(rc[0] == 0 && rc[1] == 1 && rc[2] == 1 && rc[3] == 0 && rc[4] == 0,
                  "steps 4-8 returned %d %d %d %d %d", rc[0], rc[1], rc[2], rc[3], rc[4]);
    ck_assert_msg(n == 0, "%ld allocator calls in 5 steps, two skipped (the first: %s)", n, what);
    tfm_trainer_free(&tr);
    tfm_toy_source_free(&toy);
}
END_TEST

START_TEST(a_step_allocates_nothing_on_one_thread) {
    NEEDS_COUNTING();
    steps_allocate_nothing(1, TFM_FP32, 1, 0);
    steps_allocate_nothing(1, TFM_BF16, 2, 0.99);
}
END_TEST

START_TEST(a_step_allocates_nothing_on_two_threads) {
    NEEDS_COUNTING();
    steps_allocate_nothing(2, TFM_FP32, 1, 0);
    steps_allocate_nothing(2, TFM_BF16, 2, 0.99);
}
END_TEST

/* Steps 5-34 of a corpus run (tfm_train_corpus, the numbers corpus: padded
 * batches of sentences of different lengths, several epochs in the window),
 * counted from the on_step hook, so the loop around the step (progress,
 * checkpoint and validation checks) is counted too; with BPE-dropout the
 * training text is segmented anew every epoch, and a later epoch can bring
 * a longer batch than any before. */
typedef struct {
    int64_t from, to;
    long calls;
    char what[64];
} window;

static int count_window(void *ctx, tfm_trainer *tr) {
    window *w = ctx;
    if (tr->step == w->from) count_begin();
    if (tr->step == w->to) w->calls = count_end(w->what, sizeof w->what);
    return 0;
}

static void corpus_steps_allocate_nothing(int threads, double bpe_dropout) {
    char root[600], data[700], run[700];
    snprintf(root, sizeof root, "%s", tfm_test_tmpdir("noalloc-corpus"));
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(run, sizeof run, "%s/run", root);
    tfm_test_numbers_corpus_write(data);
    window w = {.from = 4, .to = 34, .calls = -1};
    tfm_train_hooks h = {.ctx = &w, .on_step = count_window};
    tfm_test_corpus_files files;
    tfm_corpus_task task = tfm_test_numbers_task(data, &files);
    task.hooks = &h;
    task.bpe_dropout = bpe_dropout;
    tfm_model_config mc = toy_model(); /* the vocabulary comes from the corpus */
    mc.max_len = 256;
    tfm_train_opts o = tfm_test_tiny_opts(40, 1);
    o.threads = threads;
    o.valid_every = 1000;
    o.log_every = 1000;
    o.run_dir = run;
    tfm_corpus_summary sum;
    ck_assert_msg(tfm_train_corpus(&task, &o, &mc, &sum) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(sum.steps, 40);
    /* 3 epochs or more in 40 steps: at most 20 steps each, so steps 5-34 cross a boundary */
    ck_assert_msg(sum.epochs >= 3, "40 steps should take 3 epochs or more: %lld",
                  (long long)sum.epochs);
    ck_assert_msg(w.calls == 0,
                  "corpus, %d thread(s), BPE-dropout %g: %ld allocator calls in steps 5-34 (the "
                  "first: %s)",
                  threads, bpe_dropout, w.calls, w.what);
}

START_TEST(corpus_steps_allocate_nothing_on_one_thread) {
    NEEDS_COUNTING();
    corpus_steps_allocate_nothing(1, 0);
}
END_TEST

START_TEST(corpus_steps_allocate_nothing_on_two_threads) {
    NEEDS_COUNTING();
    corpus_steps_allocate_nothing(2, 0);
}
END_TEST

START_TEST(bpe_dropout_steps_allocate_nothing) {
    NEEDS_COUNTING();
    corpus_steps_allocate_nothing(2, 0.1);
}
END_TEST

/* Each decoder on random models, the second call of each counted: the cache
 * fits the tape's arena, so a whole call allocates nothing. Greedy (to </s>,
 * and annotated: a fixed number of steps), beam search, and beam search over
 * a two-model ensemble with n-best lists; in fp32 with the weights unpacked
 * and in fp32 and bf16 with them packed, as tfm translate does. */
enum { DB = 6, DS = 9, DMO = 16, DBEAM = 4 };

typedef struct {
    int32_t src[DB * DS], start[DB], out[DB * DMO];
    uint8_t pad[DB * DS];
    int64_t lens[DB];
    int32_t nb_tokens[DB * 2 * DMO];
    int64_t nb_lens[DB * 2], nb_count[DB];
    float nb_scores[DB * 2], nb_logprobs[DB * 2];
} decode_io;

static const char *const k_decoders[] = {"greedy", "annotated greedy", "beam search",
                                         "ensemble beam search with n-best lists"};

static int decode_with(int which, tfm_model *const *m, tfm_tape *t, decode_io *io) {
    tfm_nbest nb = {2, io->nb_tokens, io->nb_lens, io->nb_scores, io->nb_logprobs, io->nb_count};
    switch (which) {
    case 0:
        return tfm_greedy_decode(m[0], t, io->src, io->pad, DB, DS, DMO, io->out, io->lens);
    case 1:
        return tfm_greedy_decode_from(m[0], t, io->src, io->pad, DB, DS, io->start, 1, DMO, io->out,
                                      io->lens);
    case 2:
        return tfm_beam_decode(m[0], t, io->src, io->pad, DB, DS, DBEAM, 0.6f, DMO, io->out,
                               io->lens);
    default:
        return tfm_beam_decode_ensemble(m, 2, t, io->src, io->pad, DB, DS, DBEAM, 0.6f, DMO,
                                        io->out, io->lens, &nb);
    }
}

static void decoding_allocates_nothing(int threads) {
    tfm_set_num_threads(threads);
    tfm_model_config c = toy_model();
    c.vocab = 29;
    tfm_model models[2];
    tfm_model *m[2] = {&models[0], &models[1]};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(tfm_model_init(m[k], &c), 0);
        tfm_model_init_weights(m[k], 7 + (uint64_t)k);
    }
    static decode_io io;
    for (int64_t i = 0; i < DB * DS; i++) {
        int64_t b = i / DS, j = i % DS;
        io.src[i] = j < 3 + b ? (int32_t)(3 + (i * 7) % (c.vocab - 3)) : TFM_PAD_ID;
        io.pad[i] = io.src[i] == TFM_PAD_ID;
    }
    for (int b = 0; b < DB; b++) io.start[b] = TFM_BOS_ID;
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 64u << 20, 4096), 0);
    static const char *const k_weights[] = {"fp32", "fp32, packed", "bf16, packed"};
    for (int w = 0; w < 3; w++) {
        t.precision = w == 2 ? TFM_BF16 : TFM_FP32;
        if (w > 0)
            for (int k = 0; k < 2; k++) ck_assert_int_eq(tfm_model_pack(m[k], t.precision), 0);
        for (int which = 0; which < 4; which++) {
            long n = 0;
            char what[64];
            for (int call = 0; call < 2; call++) {
                if (call == 1) count_begin();
                int rc = decode_with(which, m, &t, &io);
                if (call == 1) n = count_end(what, sizeof what);
                ck_assert_msg(rc == 0, "%s", tfm_last_error());
            }
            int64_t longest = 0;
            for (int b = 0; b < DB; b++) longest = io.lens[b] > longest ? io.lens[b] : longest;
            ck_assert_msg(which == 0 || longest >= 4,
                          "%s ran %lld steps at most: too few to show anything", k_decoders[which],
                          (long long)longest);
            ck_assert_msg(n == 0, "%s (%s), %d thread(s): %ld allocator calls (the first: %s)",
                          k_decoders[which], k_weights[w], threads, n, what);
        }
        if (w > 0)
            for (int k = 0; k < 2; k++) tfm_model_unpack(m[k], t.precision);
    }
    tfm_tape_free(&t);
    for (int k = 0; k < 2; k++) tfm_model_free(m[k]);
}

START_TEST(decoding_allocates_nothing_on_one_thread) {
    NEEDS_COUNTING();
    decoding_allocates_nothing(1);
}
END_TEST

START_TEST(decoding_allocates_nothing_on_two_threads) {
    NEEDS_COUNTING();
    decoding_allocates_nothing(2);
}
END_TEST

int main(void) {
    Suite *s = suite_create("noalloc");
    TCase *tc = tcase_create("noalloc");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, the_counter_sees_allocations);
    tcase_add_test(tc, a_step_allocates_nothing_on_one_thread);
    tcase_add_test(tc, a_step_allocates_nothing_on_two_threads);
    tcase_add_test(tc, a_skipped_step_allocates_nothing);
    tcase_add_test(tc, corpus_steps_allocate_nothing_on_one_thread);
    tcase_add_test(tc, corpus_steps_allocate_nothing_on_two_threads);
    tcase_add_test(tc, bpe_dropout_steps_allocate_nothing);
    tcase_add_test(tc, decoding_allocates_nothing_on_one_thread);
    tcase_add_test(tc, decoding_allocates_nothing_on_two_threads);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
