/* Arena, tensors, parameters, RNG. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/tensor.h"
#include "util_test.h"

START_TEST(arena_exhaustion_reports_sizes) {
    tfm_arena a;
    ck_assert_int_eq(tfm_arena_init(&a, 4096), 0);
    ck_assert_ptr_nonnull(tfm_arena_alloc(&a, 1000));
    ck_assert_ptr_null(tfm_arena_alloc(&a, 8000));
    ck_assert_msg(strstr(tfm_last_error(), "needed 8000 bytes, have 3072") != NULL, "%s",
                  tfm_last_error());
    size_t used = a.used;
    tfm_arena_reset(&a);
    ck_assert_int_eq(a.used, 0);
    ck_assert_int_eq(a.peak, used);
    tfm_arena_free(&a);
}
END_TEST

START_TEST(arena_mark_rewind_nests) {
    tfm_arena a;
    ck_assert_int_eq(tfm_arena_init(&a, 4096), 0);
    ck_assert_ptr_nonnull(tfm_arena_alloc(&a, 100)); /* 128 bytes */
    size_t outer = tfm_arena_mark(&a);
    ck_assert_uint_eq(outer, 128);
    char *x = tfm_arena_alloc(&a, 64);
    size_t inner = tfm_arena_mark(&a);
    ck_assert_ptr_nonnull(tfm_arena_alloc(&a, 1000));
    tfm_arena_rewind(&a, inner);
    ck_assert_uint_eq(a.used, 192);
    ck_assert_ptr_eq(tfm_arena_alloc(&a, 1), x + 64); /* the same bytes again */
    tfm_arena_rewind(&a, outer);
    ck_assert_uint_eq(a.used, 128);
    ck_assert_ptr_eq(tfm_arena_alloc(&a, 64), x);
    ck_assert_uint_eq(a.peak, 192 + 1024); /* the high-water mark survives rewinds */
    tfm_arena_free(&a);
}
END_TEST

/* Rewinding to a mark above the arena's position (taken before a reset) is a
 * bug: the internal assert aborts with file and line. */
START_TEST(arena_rewind_above_position_aborts) {
    tfm_arena a;
    ck_assert_int_eq(tfm_arena_init(&a, 4096), 0);
    ck_assert_ptr_nonnull(tfm_arena_alloc(&a, 256));
    size_t mark = tfm_arena_mark(&a);
    tfm_arena_reset(&a);
    /* the expected "internal error" line would read like a failure in the log */
    ck_assert_ptr_nonnull(freopen("/dev/null", "w", stderr));
    tfm_arena_rewind(&a, mark);
}
END_TEST

/* TFM_POISON_ARENA=1 (set by the test runner) fills each allocation with
 * NaN bytes, even memory an earlier step wrote; otherwise it is left alone. */
START_TEST(arena_poison_fills_with_nan) {
    const char *was = getenv("TFM_POISON_ARENA");
    char saved[8] = "";
    if (was) snprintf(saved, sizeof saved, "%s", was);
    for (int poison = 0; poison <= 1; poison++) {
        setenv("TFM_POISON_ARENA", poison ? "1" : "0", 1);
        tfm_arena a;
        ck_assert_int_eq(tfm_arena_init(&a, 4096), 0);
        float *x = tfm_arena_alloc(&a, 10 * sizeof(float));
        for (int i = 0; i < 10; i++) x[i] = 1.0f;
        tfm_arena_reset(&a);
        float *y = tfm_arena_alloc(&a, 10 * sizeof(float));
        ck_assert_ptr_eq(x, y);
        for (int i = 0; i < 10; i++) ck_assert(poison ? isnan(y[i]) : y[i] == 1.0f);
        tfm_arena_free(&a);
    }
    if (was)
        setenv("TFM_POISON_ARENA", saved, 1);
    else
        unsetenv("TFM_POISON_ARENA");
}
END_TEST

START_TEST(params_are_contiguous_and_aligned) {
    tfm_params p;
    tfm_params_init(&p);
    int64_t s1[2] = {3, 5}, s2[1] = {7};
    tfm_tensor *a = tfm_params_add(&p, "a", 2, s1);
    tfm_tensor *b = tfm_params_add(&p, "b", 1, s2);
    ck_assert_int_eq(tfm_params_alloc(&p), 0);
    ck_assert_ptr_eq(a->data, p.data);
    ck_assert_ptr_eq(b->data, p.data + 16);
    ck_assert_ptr_eq(b->grad, p.grad + 16);
    ck_assert_int_eq(((uintptr_t)b->data) % 64, 0);
    ck_assert_ptr_eq(tfm_params_find(&p, "b"), b);
    ck_assert_ptr_null(tfm_params_find(&p, "c"));
    tfm_params_free(&p);
}
END_TEST

/* Out of memory while declaring parameters: NULL and an error, later adds do
 * nothing, and tfm_params_alloc fails (no abort). */
START_TEST(params_out_of_memory_is_an_error) {
    size_t big = (size_t)64 << 20;
    char *name = malloc(big + 1);
    ck_assert_ptr_nonnull(name);
    memset(name, 'w', big);
    name[big] = 0;
    tfm_params p;
    tfm_params_init(&p);
    int64_t shape[2] = {4, 8};
    ck_assert_ptr_nonnull(tfm_params_add(&p, "a", 2, shape));
    if (tfm_test_limit_memory(1 << 20) != 0) {
        tfm_test_skip_note(__func__, "cannot limit memory here (sanitizer build)");
        free(name);
        tfm_params_free(&p);
        return;
    }
    tfm_tensor *t = tfm_params_add(&p, name, 2, shape); /* its name cannot be copied */
    tfm_test_unlimit_memory();
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(tfm_last_error(), "out of memory declaring parameter www") != NULL, "%s",
                  tfm_last_error());
    ck_assert_int_eq(p.failed, 1);
    ck_assert_ptr_null(tfm_params_add(&p, "b", 2, shape));
    ck_assert_int_eq(p.count, 1);
    ck_assert_int_ne(tfm_params_alloc(&p), 0);
    ck_assert_msg(strstr(tfm_last_error(), "out of memory declaring the parameters (1 declared)"),
                  "%s", tfm_last_error());
    tfm_params_free(&p);
    free(name);
}
END_TEST

START_TEST(rng_is_counter_based) {
    ck_assert_uint_eq(tfm_rand_u64(7, 100), tfm_rand_u64(7, 100));
    ck_assert_uint_ne(tfm_rand_u64(7, 100), tfm_rand_u64(7, 101));
    ck_assert_uint_ne(tfm_rand_u64(7, 100), tfm_rand_u64(8, 100));
    double sum = 0;
    for (int i = 0; i < 100000; i++) {
        float u = tfm_rand_uniform(3, (uint64_t)i);
        ck_assert(u >= 0.0f && u < 1.0f);
        sum += u;
    }
    ck_assert(sum / 100000 > 0.49 && sum / 100000 < 0.51);
    tfm_rng r;
    tfm_rng_seed(&r, 1);
    for (int i = 0; i < 1000; i++) ck_assert_uint_lt(tfm_rng_below(&r, 7), 7);
}
END_TEST

int main(void) {
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, arena_exhaustion_reports_sizes);
    tcase_add_test(tc, arena_mark_rewind_nests);
    tcase_add_test_raise_signal(tc, arena_rewind_above_position_aborts, SIGABRT);
    tcase_add_test(tc, arena_poison_fills_with_nan);
    tcase_add_test(tc, params_are_contiguous_and_aligned);
    tcase_add_test(tc, params_out_of_memory_is_an_error);
    tcase_add_test(tc, rng_is_counter_based);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
