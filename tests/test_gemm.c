/* GEMM: against the double-accumulating reference at many shapes, every
 * transpose, alpha/beta variants and strides; batched; bit-identical results
 * across thread counts; calls from inside a parallel region. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/kernels.h"
#include "util_test.h"

typedef struct {
    int ta, tb;
    int64_t M, N, K;
    int64_t lda, ldb, ldc; /* 0: tight */
    float alpha, beta;
} gemm_case;

/* Fills a test problem, runs tfm_gemm and the reference, compares with a
 * tolerance proportional to K * max|a| * max|b| (inputs are in [-1, 1)) and
 * returns the max |diff|; *ok = 0 when out of tolerance or when a NaN/Inf
 * appears. */
static double run_case(gemm_case c, uint64_t seed, int *ok) {
    int64_t ar = c.ta ? c.K : c.M, acol = c.ta ? c.M : c.K;
    int64_t br = c.tb ? c.N : c.K, bcol = c.tb ? c.K : c.N;
    int64_t lda = c.lda ? c.lda : (acol > 0 ? acol : 1);
    int64_t ldb = c.ldb ? c.ldb : (bcol > 0 ? bcol : 1);
    int64_t ldc = c.ldc ? c.ldc : (c.N > 0 ? c.N : 1);
    size_t na = (size_t)(ar * lda + 1), nb = (size_t)(br * ldb + 1), nc = (size_t)(c.M * ldc + 1);
    float *A = malloc(na * sizeof(float)), *B = malloc(nb * sizeof(float));
    float *C = malloc(nc * sizeof(float)), *R = malloc(nc * sizeof(float));
    tfm_test_fill(A, (int64_t)na, seed, -1.0f, 1.0f);
    tfm_test_fill(B, (int64_t)nb, seed + 1, -1.0f, 1.0f);
    if (c.beta == 0.0f) {
        for (size_t i = 0; i < nc; i++) C[i] = NAN; /* must not leak into the result */
    } else {
        tfm_test_fill(C, (int64_t)nc, seed + 2, -1.0f, 1.0f);
    }
    memcpy(R, C, nc * sizeof(float));
    tfm_gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C, ldc);
    tfm_gemm_reference(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, R, ldc);
    double tol = 1e-5 * (double)(c.K + 1) * (fabs(c.alpha) + 1) + 1e-6 * fabs(c.beta);
    double maxdiff = 0;
    *ok = 1;
    for (int64_t i = 0; i < c.M; i++)
        for (int64_t j = 0; j < ldc; j++) {
            float got = C[i * ldc + j], want = R[i * ldc + j];
            if (j >= c.N) {
                /* padding between rows must be untouched (both are NaN or equal) */
                if (!(got == want || (isnan(got) && isnan(want)))) *ok = 0;
                continue;
            }
            double d = fabs((double)got - want);
            if (!isfinite(got) || !(d <= tol)) *ok = 0;
            if (d > maxdiff || isnan(d)) maxdiff = isnan(d) ? INFINITY : d;
        }
    free(A);
    free(B);
    free(C);
    free(R);
    return maxdiff;
}

static void check_case(gemm_case c, uint64_t seed) {
    int ok;
    double d = run_case(c, seed, &ok);
    ck_assert_msg(ok,
                  "gemm ta=%d tb=%d M=%lld N=%lld K=%lld lda=%lld ldb=%lld ldc=%lld alpha=%g "
                  "beta=%g: max |diff| = %g",
                  c.ta, c.tb, (long long)c.M, (long long)c.N, (long long)c.K, (long long)c.lda,
                  (long long)c.ldb, (long long)c.ldc, c.alpha, c.beta, d);
}

static const int64_t SIZES[] = {1, 2, 3, 17, 31, 33, 63, 65, 127};
#define NSIZES (int)(sizeof SIZES / sizeof SIZES[0])

START_TEST(small_and_odd_shapes_all_transposes) {
    /* every transpose over a pseudo-random walk through the size grid */
    double worst = 0;
    int n = 0;
    for (int t = 0; t < 4; t++)
        for (int a = 0; a < NSIZES; a++)
            for (int b = 0; b < NSIZES; b++) {
                int c = (a * 5 + b * 3 + t) % NSIZES;
                gemm_case g = {t & 1, t >> 1, SIZES[a], SIZES[b], SIZES[c], 0, 0, 0, 1.0f, 0.0f};
                int ok;
                double d = run_case(g, (uint64_t)(t * 1000 + a * 31 + b), &ok);
                ck_assert_msg(ok, "ta=%d tb=%d M=%lld N=%lld K=%lld: max |diff| = %g", t & 1,
                              t >> 1, (long long)g.M, (long long)g.N, (long long)g.K, d);
                if (d > worst) worst = d;
                n++;
            }
    printf("gemm: %d small shapes, max |diff| = %.3g\n", n, worst);
}
END_TEST

START_TEST(large_and_tall_skinny_shapes) {
    static const int64_t shapes[][3] = {
        {257, 129, 300}, {1000, 3, 7},   {3, 1000, 7},    {7, 3, 1000},   {1, 513, 257},
        {513, 1, 257},   {65, 4100, 33}, {300, 300, 600}, {31, 257, 520},
    };
    for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++)
        for (int t = 0; t < 4; t++) {
            gemm_case g = {t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2], 0,
                           0,     0,      1.0f,         0.0f};
            int ok;
            double d = run_case(g, (uint64_t)(s * 10 + t), &ok);
            ck_assert_msg(ok, "ta=%d tb=%d M=%lld N=%lld K=%lld: max |diff| = %g", g.ta, g.tb,
                          (long long)g.M, (long long)g.N, (long long)g.K, d);
            if (t == 0)
                printf("gemm %lldx%lldx%lld: max |diff| = %.3g\n", (long long)g.M, (long long)g.N,
                       (long long)g.K, d);
        }
}
END_TEST

START_TEST(alpha_beta_and_strides) {
    static const float ab[][2] = {{1, 0}, {1, 1}, {0.5f, -2.0f}, {-1.5f, 0}, {2, 1}, {0, 0.5f}};
    for (int v = 0; v < 6; v++)
        for (int t = 0; t < 4; t++) {
            /* padded leading dimensions: lda/ldb/ldc larger than the rows */
            gemm_case g = {t & 1, t >> 1, 37, 45, 70, 0, 0, 0, ab[v][0], ab[v][1]};
            g.lda = (g.ta ? g.M : g.K) + 5;
            g.ldb = (g.tb ? g.K : g.N) + 3;
            g.ldc = g.N + 7;
            check_case(g, (uint64_t)(v * 4 + t));
            /* and tight strides, larger and spanning several K blocks */
            gemm_case h = {t & 1, t >> 1, 130, 70, 600, 0, 0, 0, ab[v][0], ab[v][1]};
            check_case(h, (uint64_t)(100 + v * 4 + t));
        }
}
END_TEST

START_TEST(k_zero_and_empty) {
    /* K = 0: C = beta * C, and beta == 0 clears NaN */
    float C[6];
    for (int i = 0; i < 6; i++) C[i] = NAN;
    tfm_gemm(0, 0, 2, 3, 0, 1.0f, NULL, 1, NULL, 3, 0.0f, C, 3);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(C[i], 0.0f);
    for (int i = 0; i < 6; i++) C[i] = (float)i;
    tfm_gemm(1, 1, 2, 3, 0, 1.0f, NULL, 2, NULL, 1, 2.0f, C, 3);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(C[i], 2.0f * i);
    /* M or N = 0: nothing touched */
    tfm_gemm(0, 0, 0, 3, 4, 1.0f, NULL, 4, NULL, 3, 0.0f, C, 3);
    tfm_gemm(0, 0, 2, 0, 4, 1.0f, NULL, 4, NULL, 1, 0.0f, C, 3);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(C[i], 2.0f * i);
}
END_TEST

START_TEST(hand_computed_2x2) {
    const float A[4] = {1, 2, 3, 4}, B[4] = {5, 6, 7, 8};
    float C[4] = {1, 1, 1, 1};
    tfm_gemm(0, 0, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    ck_assert_float_eq(C[0], 19);
    ck_assert_float_eq(C[1], 22);
    ck_assert_float_eq(C[2], 43);
    ck_assert_float_eq(C[3], 50);
    tfm_gemm(1, 1, 2, 2, 2, 1.0f, A, 2, B, 2, 1.0f, C, 2); /* += A^T B^T */
    ck_assert_float_eq(C[0], 19 + 23);
    ck_assert_float_eq(C[1], 22 + 31);
    ck_assert_float_eq(C[2], 43 + 34);
    ck_assert_float_eq(C[3], 50 + 46);
}
END_TEST

START_TEST(batched_with_strides) {
    const int64_t batch = 5, M = 19, N = 23, K = 29;
    for (int t = 0; t < 4; t++) {
        int ta = t & 1, tb = t >> 1;
        int64_t lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 1, ldc = N + 3;
        int64_t sa = (ta ? K : M) * lda + 5, sb = (tb ? N : K) * ldb + 7, sc = M * ldc + 11;
        float *A = malloc((size_t)(batch * sa) * sizeof(float));
        float *B = malloc((size_t)(batch * sb) * sizeof(float));
        float *C = malloc((size_t)(batch * sc) * sizeof(float));
        float *R = malloc((size_t)(batch * sc) * sizeof(float));
        tfm_test_fill(A, batch * sa, 7 + t, -1, 1);
        tfm_test_fill(B, batch * sb, 8 + t, -1, 1);
        tfm_test_fill(C, batch * sc, 9 + t, -1, 1);
        memcpy(R, C, (size_t)(batch * sc) * sizeof(float));
        tfm_gemm_batched(ta, tb, batch, M, N, K, 0.75f, A, lda, sa, B, ldb, sb, 1.0f, C, ldc, sc);
        for (int64_t b = 0; b < batch; b++)
            tfm_gemm_reference(ta, tb, M, N, K, 0.75f, A + b * sa, lda, B + b * sb, ldb, 1.0f,
                               R + b * sc, ldc);
        ck_assert_allclose("batched gemm", C, R, batch * sc, 1e-5f * K, 1e-5f);
        free(A);
        free(B);
        free(C);
        free(R);
    }
    /* a batch big enough to run across threads, each GEMM small */
    const int64_t nb = 64, m = 32, n = 32, k = 64;
    float *A = malloc((size_t)(nb * m * k) * sizeof(float));
    float *B = malloc((size_t)(nb * n * k) * sizeof(float));
    float *C = malloc((size_t)(nb * m * n) * sizeof(float));
    float *R = malloc((size_t)(nb * m * n) * sizeof(float));
    tfm_test_fill(A, nb * m * k, 1, -1, 1);
    tfm_test_fill(B, nb * n * k, 2, -1, 1);
    tfm_gemm_batched(0, 1, nb, m, n, k, 1.0f, A, k, m * k, B, k, n * k, 0.0f, C, n, m * n);
    for (int64_t b = 0; b < nb; b++)
        tfm_gemm_reference(0, 1, m, n, k, 1.0f, A + b * m * k, k, B + b * n * k, k, 0.0f,
                           R + b * m * n, n);
    ck_assert_allclose("batched gemm 64 x 32x32x64", C, R, nb * m * n, 1e-5f * k, 1e-5f);
    free(A);
    free(B);
    free(C);
    free(R);
}
END_TEST

/* Runs one GEMM at the given thread count into a fresh C. */
static float *gemm_at_threads(int threads, int ta, int tb, int64_t M, int64_t N, int64_t K,
                              const float *A, const float *B, float beta) {
    float *C = malloc((size_t)(M * N) * sizeof(float));
    tfm_test_fill(C, M * N, 99, -1, 1);
    omp_set_num_threads(threads);
    tfm_gemm(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, beta, C, N);
    return C;
}

START_TEST(bit_identical_across_thread_counts) {
    /* shapes that split by rows, by columns (few rows) and with K blocks */
    static const int64_t shapes[][3] = {
        {300, 200, 700}, {5, 3000, 300}, {1000, 64, 64}, {9, 4196, 300}, {512, 512, 600}};
    int saved = omp_get_max_threads();
    for (int s = 0; s < 5; s++)
        for (int t = 0; t < 4; t++) {
            int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            float *A = malloc((size_t)(M * K) * sizeof(float));
            float *B = malloc((size_t)(K * N) * sizeof(float));
            tfm_test_fill(A, M * K, 3 + s, -1, 1);
            tfm_test_fill(B, K * N, 4 + s, -1, 1);
            float beta = t == 1 ? 1.0f : 0.0f;
            float *c1 = gemm_at_threads(1, t & 1, t >> 1, M, N, K, A, B, beta);
            float *c2 = gemm_at_threads(2, t & 1, t >> 1, M, N, K, A, B, beta);
            float *c3 = gemm_at_threads(3, t & 1, t >> 1, M, N, K, A, B, beta);
            float *c2b = gemm_at_threads(2, t & 1, t >> 1, M, N, K, A, B, beta);
            ck_assert_msg(memcmp(c1, c2, (size_t)(M * N) * sizeof(float)) == 0,
                          "1 vs 2 threads differ at %lldx%lldx%lld t=%d", (long long)M,
                          (long long)N, (long long)K, t);
            ck_assert_msg(memcmp(c1, c3, (size_t)(M * N) * sizeof(float)) == 0,
                          "1 vs 3 threads differ at %lldx%lldx%lld t=%d", (long long)M,
                          (long long)N, (long long)K, t);
            ck_assert_msg(memcmp(c2, c2b, (size_t)(M * N) * sizeof(float)) == 0,
                          "two runs at 2 threads differ");
            free(c1);
            free(c2);
            free(c3);
            free(c2b);
            free(A);
            free(B);
        }
    omp_set_num_threads(saved);
}
END_TEST

START_TEST(bias_equals_beta_one_over_bias_rows) {
    /* tfm_gemm_bias must give, bit for bit, what tfm_gemm with beta = 1 gives
     * over a C whose rows hold the bias (the old linear forward), at every
     * transpose, at shapes with several K blocks, edge tiles and few rows
     * (direct B), at 1 and 2 threads; and C = bias rows when K == 0 */
    static const int64_t shapes[][3] = {{1, 1, 1},       {13, 37, 5},    {29, 33, 300},
                                        {300, 200, 700}, {5, 3000, 300}, {64, 2048, 512},
                                        {7, 19, 0}};
    int saved = omp_get_max_threads();
    for (int s = 0; s < 7; s++)
        for (int t = 0; t < 8; t++) {
            int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            int ta = t & 1, tb = (t >> 1) & 1, threads = 1 + (t >> 2);
            int64_t ldc = N + 3; /* padding after each row stays untouched */
            float *A = malloc((size_t)(M * K + 1) * sizeof(float));
            float *B = malloc((size_t)(K * N + 1) * sizeof(float));
            float *bias = malloc((size_t)N * sizeof(float));
            float *want = malloc((size_t)(M * ldc) * sizeof(float));
            float *got = malloc((size_t)(M * ldc) * sizeof(float));
            tfm_test_fill(A, M * K + 1, 10 + s, -1, 1);
            tfm_test_fill(B, K * N + 1, 20 + s, -1, 1);
            tfm_test_fill(bias, N, 30 + s, -1, 1);
            for (int64_t i = 0; i < M * ldc; i++) want[i] = got[i] = -7.0f;
            for (int64_t i = 0; i < M; i++) memcpy(want + i * ldc, bias, (size_t)N * sizeof(float));
            omp_set_num_threads(threads);
            tfm_gemm(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 1.0f, want, ldc);
            tfm_gemm_bias(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, bias, got, ldc);
            ck_assert_msg(memcmp(want, got, (size_t)(M * ldc) * sizeof(float)) == 0,
                          "gemm_bias differs at %lldx%lldx%lld ta=%d tb=%d threads=%d",
                          (long long)M, (long long)N, (long long)K, ta, tb, threads);
            free(A);
            free(B);
            free(bias);
            free(want);
            free(got);
        }
    omp_set_num_threads(saved);
}
END_TEST

START_TEST(inside_parallel_region) {
    /* each thread runs its own GEMM (on itself) and the result equals the
     * same call made outside, bit for bit */
    const int64_t M = 32, N = 48, K = 64, nb = 8;
    float *A = malloc((size_t)(nb * M * K) * sizeof(float));
    float *B = malloc((size_t)(K * N) * sizeof(float));
    float *C = malloc((size_t)(nb * M * N) * sizeof(float));
    float *R = malloc((size_t)(nb * M * N) * sizeof(float));
    tfm_test_fill(A, nb * M * K, 11, -1, 1);
    tfm_test_fill(B, K * N, 12, -1, 1);
    int nthreads_seen = 0;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        nthreads_seen = omp_get_num_threads();
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nb; b++)
            tfm_gemm(0, 0, M, N, K, 1.0f, A + b * M * K, K, B, N, 0.0f, C + b * M * N, N);
    }
    for (int64_t b = 0; b < nb; b++)
        tfm_gemm(0, 0, M, N, K, 1.0f, A + b * M * K, K, B, N, 0.0f, R + b * M * N, N);
    ck_assert_int_ge(nthreads_seen, 1);
    ck_assert_msg(memcmp(C, R, (size_t)(nb * M * N) * sizeof(float)) == 0,
                  "GEMM inside a parallel region differs from outside");
    /* and a large one inside a region is still right */
    const int64_t L = 200;
    float *A2 = malloc((size_t)(L * L) * sizeof(float)),
          *B2 = malloc((size_t)(L * L) * sizeof(float));
    float *C2 = malloc((size_t)(L * L) * sizeof(float)),
          *R2 = malloc((size_t)(L * L) * sizeof(float));
    tfm_test_fill(A2, L * L, 13, -1, 1);
    tfm_test_fill(B2, L * L, 14, -1, 1);
#pragma omp parallel num_threads(2)
    {
#pragma omp master
        tfm_gemm(1, 0, L, L, L, 1.0f, A2, L, B2, L, 0.0f, C2, L);
    }
    tfm_gemm_reference(1, 0, L, L, L, 1.0f, A2, L, B2, L, 0.0f, R2, L);
    ck_assert_allclose("gemm 200^3 in a parallel region", C2, R2, L * L, 1e-5f * L, 1e-5f);
    free(A);
    free(B);
    free(C);
    free(R);
    free(A2);
    free(B2);
    free(C2);
    free(R2);
}
END_TEST

START_TEST(bench_gemm_command) {
    /* `tfm bench gemm`: bad flags give one line and exit 2 (flags.c's messages for
     * unknown flags and missing values); a run ends with gflops= */
    static const char *bad[] = {"--m 0 --n 2 --k 3", "--bogus 1", "--m 4 --n 4",
                                "--m 4 --n 4 --k 4 --trans xx", "--m 4 --n 4 --k 4 --threads"};
    char cmd[512], out[4096];
    for (int i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        snprintf(cmd, sizeof cmd, "%s bench gemm %s", tfm_test_bin(), bad[i]);
        ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
        ck_assert_msg(strncmp(out, "tfm: ", 5) == 0, "%s", out); /* flags.c or bench gemm */
        ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "not one line: %s", out);
    }
    snprintf(cmd, sizeof cmd, "%s bench gemm --m 9 --n 7 --k 5 --trans tn --threads 1 --reps 1",
             tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "kernel=") && strstr(out, "M=9 N=7 K=5 trans=tn threads=1"), "%s",
                  out);
    const char *last = strstr(out, "\ngflops=");
    ck_assert_msg(last && atof(last + 8) > 0 && strchr(last + 1, '\n') == out + strlen(out) - 1,
                  "%s", out);
}
END_TEST

/* Out of memory for the packing buffers: the GEMM still computes C (without
 * packing, sums in double) instead of aborting. */
START_TEST(survives_out_of_memory_for_packing) {
    tfm_set_num_threads(1);
    const int64_t M = 64, N = 2048, K = 256; /* B's packing buffer alone is > 2 MB */
    float *A = malloc((size_t)(M * K) * sizeof(float)),
          *B = malloc((size_t)(K * N) * sizeof(float));
    float *C = malloc((size_t)(M * N) * sizeof(float)),
          *want = malloc((size_t)(M * N) * sizeof(float));
    float *bias = malloc((size_t)N * sizeof(float));
    tfm_test_fill(A, M * K, 1, -1, 1);
    tfm_test_fill(B, K * N, 2, -1, 1);
    tfm_test_fill(bias, N, 3, -1, 1);
    for (int pass = 0; pass < 2; pass++) { /* beta = 0.5, then bias rows */
        tfm_test_fill(C, M * N, 4, -1, 1);
        memcpy(want, C, (size_t)(M * N) * sizeof(float));
        if (pass == 0) {
            tfm_gemm_reference(0, 1, M, N, K, 1.5f, A, K, B, K, 0.5f, want, N);
        } else {
            for (int64_t i = 0; i < M; i++) memcpy(want + i * N, bias, (size_t)N * sizeof(float));
            tfm_gemm_reference(0, 0, M, N, K, 1.0f, A, K, B, N, 1.0f, want, N);
        }
        if (tfm_test_limit_memory(256 << 10) != 0) {
            tfm_test_skip_note(__func__, "cannot limit memory here (sanitizer build)");
            break;
        }
        if (pass == 0)
            tfm_gemm(0, 1, M, N, K, 1.5f, A, K, B, K, 0.5f, C, N);
        else
            tfm_gemm_bias(0, 0, M, N, K, 1.0f, A, K, B, N, bias, C, N);
        tfm_test_unlimit_memory();
        ck_assert_allclose(pass ? "C (bias)" : "C (beta)", C, want, M * N, 1e-5f, 1e-5f);
    }
    free(A);
    free(B);
    free(C);
    free(want);
    free(bias);
}
END_TEST

/* A weight packed once (tfm_f32_weight_pack) gives the bits of packing it on
 * every call, over K and N beyond one block (GEMM_KC 256, GEMM_NC up to
 * 4096), partial panels, 1 and 2 threads, with and without a bias. */
START_TEST(packed_weight_equals_packing_every_call) {
    static const int64_t shapes[][3] = {{1, 1, 1},       {3, 5, 7},      {14, 32, 256},
                                        {15, 33, 257},   {29, 70, 1100}, {9, 4200, 40},
                                        {300, 200, 700}, {5, 6108, 256}, {64, 1100, 300}};
    int saved = omp_get_max_threads();
    for (int sh = 0; sh < 9; sh++)
        for (int t = 0; t < 4; t++) {
            int64_t M = shapes[sh][0], N = shapes[sh][1], K = shapes[sh][2];
            int threads = 1 + (t & 1), with_bias = t >> 1;
            float *A = malloc((size_t)(M * K) * sizeof(float)),
                  *W = malloc((size_t)(N * K) * sizeof(float)), *bias = malloc((size_t)N * sizeof(float)),
                  *c1 = malloc((size_t)(M * N) * sizeof(float)),
                  *c2 = malloc((size_t)(M * N) * sizeof(float));
            ck_assert(A && W && bias && c1 && c2);
            tfm_test_fill(A, M * K, 90 + sh, -2, 2);
            tfm_test_fill(W, N * K, 100 + sh, -2, 2);
            tfm_test_fill(bias, N, 110 + sh, -1, 1);
            tfm_test_fill(c1, M * N, 7, -1, 1);
            tfm_test_fill(c2, M * N, 8, -1, 1); /* not read: beta 0 or bias */
            omp_set_num_threads(threads);
            tfm_f32_weight *pw = tfm_f32_weight_pack(W, N, K);
            ck_assert_ptr_nonnull(pw);
            if (with_bias)
                tfm_gemm_bias(0, 1, M, N, K, 1.0f, A, K, W, K, bias, c1, N);
            else
                tfm_gemm(0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, c1, N);
            tfm_gemm_f32_weight(M, A, K, pw, with_bias ? bias : NULL, c2, N);
            ck_assert_msg(!memcmp(c1, c2, (size_t)(M * N) * sizeof(float)),
                          "%lldx%lldx%lld threads=%d bias=%d: packed weight differs", (long long)M,
                          (long long)N, (long long)K, threads, with_bias);
            tfm_f32_weight_free(pw);
            free(A);
            free(W);
            free(bias);
            free(c1);
            free(c2);
        }
    omp_set_num_threads(saved);
}
END_TEST

/* Out of memory for A's packing buffer (a fresh process: no buffer yet):
 * the unpacked path, from the weight the panels were packed from. (The
 * smaller panels of the portable kernels, 104 KB, can come from heap memory
 * already mapped: then the packed path runs, and the tolerance covers its
 * fp32 sums; the AVX-512 kernels' 365 KB cannot.) */
START_TEST(packed_weight_survives_out_of_memory) {
    tfm_set_num_threads(1);
    const int64_t M = 400, N = 64, K = 1000;
    float *A = malloc((size_t)(M * K) * sizeof(float)), *W = malloc((size_t)(N * K) * sizeof(float));
    float *bias = malloc((size_t)N * sizeof(float));
    float *C = malloc((size_t)(M * N) * sizeof(float)), *want = malloc((size_t)(M * N) * sizeof(float));
    tfm_test_fill(A, M * K, 1, -1, 1);
    tfm_test_fill(W, N * K, 2, -1, 1);
    tfm_test_fill(bias, N, 3, -1, 1);
    for (int64_t i = 0; i < M; i++) memcpy(want + i * N, bias, (size_t)N * sizeof(float));
    tfm_gemm_reference(0, 1, M, N, K, 1.0f, A, K, W, K, 1.0f, want, N);
    tfm_f32_weight *pw = tfm_f32_weight_pack(W, N, K);
    ck_assert_ptr_nonnull(pw);
    if (tfm_test_limit_memory(128 << 10) == 0) {
        tfm_gemm_f32_weight(M, A, K, pw, bias, C, N);
        tfm_test_unlimit_memory();
        ck_assert_allclose("C (packed weight, unpacked path)", C, want, M * N, 1e-4f, 1e-4f);
    } else {
        tfm_test_skip_note(__func__, "cannot limit memory here (sanitizer build)");
    }
    tfm_f32_weight_free(pw);
    ck_assert_ptr_null(tfm_f32_weight_pack(W, 0, K));
    free(A);
    free(W);
    free(bias);
    free(C);
    free(want);
}
END_TEST

START_TEST(kernel_name_matches_build) {
    /* the kernels are chosen at run time (src/kernels/dispatch.c): the GEMM
     * micro-kernel is the chosen variant's, the best this CPU runs unless
     * TFM_KERNELS names one */
    const char *name = tfm_gemm_kernel_name();
    ck_assert_str_eq(name, tfm_kernels_name());
    const char *forced = getenv("TFM_KERNELS");
    char best[32];
    ck_assert_int_eq(sscanf(tfm_kernels_available(), "%31s", best), 1);
    if (!forced || !forced[0])
        ck_assert_str_eq(name, best);
    else
        ck_assert_str_eq(name, strcmp(forced, "portable") ? forced : "generic");
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemm");
    TCase *tc = tcase_create("gemm");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, hand_computed_2x2);
    tcase_add_test(tc, k_zero_and_empty);
    tcase_add_test(tc, small_and_odd_shapes_all_transposes);
    tcase_add_test(tc, large_and_tall_skinny_shapes);
    tcase_add_test(tc, alpha_beta_and_strides);
    tcase_add_test(tc, batched_with_strides);
    tcase_add_test(tc, bit_identical_across_thread_counts);
    tcase_add_test(tc, bias_equals_beta_one_over_bias_rows);
    tcase_add_test(tc, inside_parallel_region);
    tcase_add_test(tc, survives_out_of_memory_for_packing);
    tcase_add_test(tc, packed_weight_equals_packing_every_call);
    tcase_add_test(tc, packed_weight_survives_out_of_memory);
    tcase_add_test(tc, kernel_name_matches_build);
    tcase_add_test(tc, bench_gemm_command);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
