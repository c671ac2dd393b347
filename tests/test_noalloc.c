/* A training step and a decoding call allocate nothing once warmed up (the
 * project's rule: no allocation inside the training step; decode.h: nothing
 * per step, the cache from the tape's arena when it fits).
 *
 * This program defines malloc, free and the other allocator entry points
 * itself, forwarding to glibc's (__libc_malloc, ...), so that every call in
 * the process is seen, libgomp's included: libgomp allocates and frees a
 * team for every parallel region that runs one thread (which is what these
 * tests found: 124-314 calls per step at one thread, 2 per step at two,
 * before src/util/par.h). Counting is switched on around the code under test
 * only. Not under AddressSanitizer (which owns malloc) and only with glibc:
 * skipped there. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tfm/decode.h"
#include "tfm/kernels.h"
#include "tfm/nn.h"
#include "tfm/ops.h"
#include "tfm/toy.h"
#include "tfm/train.h"
#include "util_test.h"

#if defined(__SANITIZE_ADDRESS__) || !defined(__GLIBC__)
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
static _Atomic size_t g_first; /* the size asked for by the first call counted (+1) */

static void seen(size_t n) {
    if (!atomic_load_explicit(&g_on, memory_order_relaxed)) return;
    if (atomic_fetch_add(&g_calls, 1) == 0) atomic_store(&g_first, n + 1);
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
    seen(n);
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t size) {
    seen(n * size);
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n) {
    seen(n);
    return __libc_realloc(p, n);
}
void free(void *p) {
    if (p) seen(0);
    __libc_free(p);
}
int posix_memalign(void **out, size_t align, size_t n) {
    seen(n);
    if (align < sizeof(void *) || (align & (align - 1))) return 22; /* EINVAL */
    void *p = __libc_memalign(align, n);
    if (!p && n) return 12; /* ENOMEM */
    *out = p;
    return 0;
}
void *aligned_alloc(size_t align, size_t n) {
    seen(n);
    return __libc_memalign(align, n);
}
void *memalign(size_t align, size_t n) {
    seen(n);
    return __libc_memalign(align, n);
}
void *valloc(size_t n) {
    seen(n);
    return __libc_memalign(4096, n);
}
void *pvalloc(size_t n) {
    seen(n);
    return __libc_memalign(4096, (n + 4095) & ~(size_t)4095);
}
#endif

static void count_begin(void) {
#if COUNTING
    atomic_store(&g_calls, 0);
    atomic_store(&g_first, 0);
    atomic_store(&g_on, 1);
#endif
}

/* the calls since count_begin; *first: the size the first one asked for */
static long count_end(size_t *first) {
#if COUNTING
    atomic_store(&g_on, 0);
    size_t f = atomic_load(&g_first);
    *first = f ? f - 1 : 0;
    return atomic_load(&g_calls);
#else
    *first = 0;
    return 0;
#endif
}

/* the counter sees what it should: a plain malloc/free pair and a
 * one-thread OpenMP region (libgomp's team), or the other tests prove
 * nothing */
START_TEST(the_counter_sees_allocations) {
    if (!COUNTING) tfm_test_skip("needs glibc and a build without AddressSanitizer");
    size_t first;
    count_begin();
    char *volatile p = malloc(100);
    free(p);
    ck_assert_int_eq(count_end(&first), 2);
    ck_assert_int_eq(first, 100);
    volatile int sink = 0;
    count_begin();
#pragma omp parallel num_threads(1)
    sink++;
    long n = count_end(&first);
    ck_assert_msg(n >= 1,
                  "a one-thread OpenMP region: %ld allocator calls (libgomp used to make 2)", n);
    (void)sink;
}
END_TEST

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

/* steps 4-8 of a run (1-3 warm up: GEMM packing buffers, libgomp's pool) */
static void steps_allocate_nothing(int threads, tfm_precision prec, int64_t accum, double ema) {
    if (!COUNTING) tfm_test_skip("needs glibc and a build without AddressSanitizer");
    tfm_model_config c = toy_model();
    tfm_toy_source toy;
    ck_assert_int_eq(tfm_toy_source_init(&toy, &k_task, 32, 1), 0);
    tfm_train_opts o = tfm_test_tiny_opts(100, 1);
    o.threads = threads;
    o.precision = prec;
    o.accum = accum;
    o.ema = ema;
    o.clip_norm = 1.0f;
    tfm_trainer tr;
    ck_assert_msg(tfm_trainer_init(&tr, &o, &c, &toy.source, NULL) == 0, "%s", tfm_last_error());
    for (int i = 0; i < 3; i++) ck_assert_int_ge(tfm_trainer_step(&tr), 0);
    size_t first;
    count_begin();
    int rc = 0;
    for (int i = 0; i < 5; i++) rc |= tfm_trainer_step(&tr) < 0;
    long n = count_end(&first);
    ck_assert_msg(!rc, "%s", tfm_last_error());
    ck_assert_msg(n == 0,
                  "%d thread(s), %s, accum %lld, ema %g: %ld allocator calls in 5 steps (the "
                  "first for %zu bytes)",
                  threads, tfm_precision_name(prec), (long long)accum, ema, n, first);
    tfm_trainer_free(&tr);
    tfm_toy_source_free(&toy);
}

START_TEST(a_step_allocates_nothing_on_one_thread) {
    steps_allocate_nothing(1, TFM_FP32, 1, 0);
    steps_allocate_nothing(1, TFM_BF16, 2, 0.99);
}
END_TEST

START_TEST(a_step_allocates_nothing_on_two_threads) {
    steps_allocate_nothing(2, TFM_FP32, 1, 0);
    steps_allocate_nothing(2, TFM_BF16, 2, 0.99);
}
END_TEST

/* Greedy (annotated: a fixed number of steps) and beam search on a random
 * model, the second call of each counted: the cache fits the tape's arena,
 * so a whole call allocates nothing. */
static void decoding_allocates_nothing(int threads) {
    if (!COUNTING) tfm_test_skip("needs glibc and a build without AddressSanitizer");
    tfm_set_num_threads(threads);
    tfm_model_config c = toy_model();
    c.vocab = 29;
    tfm_model m;
    ck_assert_int_eq(tfm_model_init(&m, &c), 0);
    tfm_model_init_weights(&m, 7);
    enum { B = 6, S = 9, MO = 16, BEAM = 4 };
    int32_t src[B * S], start[B], out[B * MO];
    uint8_t pad[B * S];
    int64_t lens[B];
    for (int64_t i = 0; i < B * S; i++) {
        int64_t b = i / S, j = i % S;
        src[i] = j < 3 + b ? (int32_t)(3 + (i * 7) % (c.vocab - 3)) : TFM_PAD_ID;
        pad[i] = src[i] == TFM_PAD_ID;
    }
    for (int b = 0; b < B; b++) start[b] = TFM_BOS_ID;
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 64u << 20, 4096), 0);
    for (int beam = 0; beam <= 1; beam++) {
        long n = 0;
        size_t first = 0;
        for (int call = 0; call < 2; call++) {
            if (call == 1) count_begin();
            int rc = beam ? tfm_beam_decode(&m, &t, src, pad, B, S, BEAM, 0.6f, MO, out, lens)
                          : tfm_greedy_decode_from(&m, &t, src, pad, B, S, start, 1, MO, out, lens);
            if (call == 1) n = count_end(&first);
            ck_assert_msg(rc == 0, "%s", tfm_last_error());
        }
        int64_t longest = 0;
        for (int b = 0; b < B; b++) longest = lens[b] > longest ? lens[b] : longest;
        ck_assert_msg(longest >= 4, "%s ran %lld steps at most: too few to show anything",
                      beam ? "beam search" : "greedy", (long long)longest);
        ck_assert_msg(n == 0, "%s, %d thread(s): %ld allocator calls (the first for %zu bytes)",
                      beam ? "beam search" : "greedy", threads, n, first);
    }
    tfm_tape_free(&t);
    tfm_model_free(&m);
}

START_TEST(decoding_allocates_nothing_on_one_thread) { decoding_allocates_nothing(1); }
END_TEST

START_TEST(decoding_allocates_nothing_on_two_threads) { decoding_allocates_nothing(2); }
END_TEST

int main(void) {
    Suite *s = suite_create("noalloc");
    TCase *tc = tcase_create("noalloc");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, the_counter_sees_allocations);
    tcase_add_test(tc, a_step_allocates_nothing_on_one_thread);
    tcase_add_test(tc, a_step_allocates_nothing_on_two_threads);
    tcase_add_test(tc, decoding_allocates_nothing_on_one_thread);
    tcase_add_test(tc, decoding_allocates_nothing_on_two_threads);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
