/* Kernels on hand-computed small cases: every expected value below was
 * worked out on paper from the definition (the derivation is in the comment
 * above it), not produced by the code under test; the double exponential and
 * the log-sum-exp of decoding against long double libm (expl, logl). */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../src/kernels/kernels_internal.h"
#include "tfm/kernels.h"
#include "tfm/optim.h"
#include "util_test.h"

#define NEAR(got, want, tol)                                                                       \
    ck_assert_msg(fabs((double)(got) - (double)(want)) <= (tol), "%s = %.9g, want %.9g", #got,     \
                  (double)(got), (double)(want))

/* ---- elementwise ------------------------------------------------------------ */

START_TEST(elementwise_small) {
    float a[4] = {1, -2, 3, 0.5f}, b[4] = {2, 2, -1, 4}, y[4];
    tfm_k_add(y, a, b, 4);
    float add[4] = {3, 0, 2, 4.5f};
    ck_assert_allclose("add", y, add, 4, 0, 0);
    tfm_k_mul(y, a, b, 4);
    float mul[4] = {2, -4, -3, 2};
    ck_assert_allclose("mul", y, mul, 4, 0, 0);
    tfm_k_scale(y, a, -2.0f, 4);
    float sc[4] = {-2, 4, -6, -1};
    ck_assert_allclose("scale", y, sc, 4, 0, 0);
    tfm_k_axpy(y, 0.5f, b, 4); /* y = sc + 0.5 b */
    float ax[4] = {-1, 5, -6.5f, 1};
    ck_assert_allclose("axpy", y, ax, 4, 0, 0);
    tfm_k_relu_forward(y, a, 4);
    float re[4] = {1, 0, 3, 0.5f};
    ck_assert_allclose("relu", y, re, 4, 0, 0);
    /* dx += dy [y > 0], starting from dx = 1 */
    float dx[4] = {1, 1, 1, 1}, dy[4] = {10, 20, 30, 40};
    tfm_k_relu_backward(dx, dy, y, 4);
    float rb[4] = {11, 1, 31, 41};
    ck_assert_allclose("relu backward", dx, rb, 4, 0, 0);
}
END_TEST

START_TEST(bias_and_column_sums) {
    /* (2, 3) + bias */
    float x[6] = {1, 2, 3, 4, 5, 6}, bias[3] = {10, 20, 30}, y[6];
    tfm_k_add_bias(y, x, bias, 2, 3);
    float want[6] = {11, 22, 33, 14, 25, 36};
    ck_assert_allclose("add_bias", y, want, 6, 0, 0);
    float db[3] = {1, 1, 1};
    tfm_k_colsum_acc(db, x, 2, 3);
    float cs[3] = {6, 8, 10};
    ck_assert_allclose("colsum", db, cs, 3, 0, 0);
    /* 70 columns cross the 64-column block: column c of (3, 70) with
     * dy[r][c] = r + c sums to 3c + 3; db starts at -1. */
    enum { C = 70 };
    float dy[3 * C], acc[C], exp_acc[C];
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < C; c++) dy[r * C + c] = (float)(r + c);
    for (int c = 0; c < C; c++) {
        acc[c] = -1;
        exp_acc[c] = (float)(3 * c + 3 - 1);
    }
    tfm_k_colsum_acc(acc, dy, 3, C);
    ck_assert_allclose("colsum 70", acc, exp_acc, C, 0, 0);
}
END_TEST

START_TEST(sums_and_nonfinite) {
    float x[5] = {1, 2, 3, 4, 5};
    NEAR(tfm_k_sumsq(x, 5), 55.0, 0);
    /* 1000 values of 0.5: sum of squares 250 */
    static float h[1000];
    for (int i = 0; i < 1000; i++) h[i] = 0.5f;
    NEAR(tfm_k_sumsq(h, 1000), 250.0, 0);
    float bad[5] = {1, NAN, 3, INFINITY, -INFINITY};
    ck_assert_int_eq(tfm_k_count_nonfinite(bad, 5), 3);
    ck_assert_int_eq(tfm_k_count_nonfinite(x, 5), 0);
}
END_TEST

/* ---- softmax ---------------------------------------------------------------- */

START_TEST(softmax_of_1_2_3) {
    /* e = (2.718281828, 7.389056099, 20.08553692), sum 30.19287485 */
    float x[6] = {1, 2, 3, 1001, 1002, 1003}, y[6];
    tfm_k_softmax_forward(y, x, 2, 3);
    float want[6] = {0.0900305732f, 0.2447284711f, 0.6652409558f,
                     0.0900305732f, 0.2447284711f, 0.6652409558f};
    /* the second row checks the max shift: no overflow at 1000 */
    ck_assert_allclose("softmax", y, want, 6, 1e-7f, 1e-6f);
    /* dy = e_0: dx_j = y_j (dy_j - y_0) -> (y0 (1 - y0), -y1 y0, -y2 y0);
     * dx starts at 1 (accumulation). */
    float dy[6] = {1, 0, 0, 1, 0, 0}, dx[6] = {1, 1, 1, 1, 1, 1};
    tfm_k_softmax_backward(dx, dy, y, 2, 3);
    float y0 = 0.0900305732f, y1 = 0.2447284711f, y2 = 0.6652409558f;
    float dwant[6] = {1 + y0 * (1 - y0), 1 - y1 * y0, 1 - y2 * y0,
                      1 + y0 * (1 - y0), 1 - y1 * y0, 1 - y2 * y0};
    ck_assert_allclose("softmax backward", dx, dwant, 6, 1e-7f, 1e-6f);
}
END_TEST

/* ---- layer norm ------------------------------------------------------------- */

START_TEST(layernorm_2x4) {
    /* row 0: (1, 2, 3, 4): mean 2.5, var (2.25+0.25+0.25+2.25)/4 = 1.25,
     *        xhat = (-3, -1, 1, 3)/sqrt(5)
     * row 1: (2, 2, 2, 6): mean 3, var (1+1+1+9)/4 = 3, xhat = (-1,-1,-1,3)/sqrt(3) */
    float x[8] = {1, 2, 3, 4, 2, 2, 2, 6};
    float gamma[4] = {1, 2, 1, 0.5f}, beta[4] = {0, 0.1f, 0, -1};
    float y[8], mean[2], rstd[2];
    tfm_k_layernorm_forward(y, mean, rstd, x, gamma, beta, 2, 4, 1e-5f);
    const float s5 = 2.2360679775f, s3 = 1.7320508076f;
    float want[8] = {-3 / s5, 2 * (-1 / s5) + 0.1f, 1 / s5,  0.5f * 3 / s5 - 1,
                     -1 / s3, 2 * (-1 / s3) + 0.1f, -1 / s3, 0.5f * 3 / s3 - 1};
    /* eps 1e-5 moves rstd by about 4e-6 relative */
    ck_assert_allclose("layernorm y", y, want, 8, 2e-5f, 1e-5f);
    NEAR(mean[0], 2.5, 1e-6);
    NEAR(mean[1], 3.0, 1e-6);
    NEAR(rstd[0], 1 / sqrt(1.25 + 1e-5), 1e-6);
    NEAR(rstd[1], 1 / sqrt(3 + 1e-5), 1e-6);

    /* Backward with gamma = 1 and dy = e_0 on row 0 only:
     * g = e_0, mean(g) = 1/4, mean(g xhat) = xhat_0/4 = -3/(4 sqrt5),
     * dx_c = rstd (g_c - 1/4 + xhat_c 3/(4 sqrt5))
     *      = (2/sqrt5) (0.75 - 0.45, -0.25 - 0.15, -0.25 + 0.15, -0.25 + 0.45)
     *      = (0.6, -0.8, -0.2, 0.4)/sqrt5
     * dgamma_c = sum_r dy xhat = (xhat_0, 0, 0, 0), dbeta = (1, 0, 0, 0). */
    float ones[4] = {1, 1, 1, 1}, zeros[4] = {0};
    tfm_k_layernorm_forward(y, mean, rstd, x, ones, zeros, 2, 4, 1e-5f);
    float dy[8] = {1, 0, 0, 0, 0, 0, 0, 0}, dx[8] = {0}, dg[4] = {0}, dbeta[4] = {0};
    tfm_k_layernorm_backward(dx, dg, dbeta, dy, x, mean, rstd, ones, 2, 4);
    float dx_want[8] = {0.6f / s5, -0.8f / s5, -0.2f / s5, 0.4f / s5, 0, 0, 0, 0};
    ck_assert_allclose("layernorm dx", dx, dx_want, 8, 2e-5f, 1e-5f);
    float dg_want[4] = {-3 / s5, 0, 0, 0}, db_want[4] = {1, 0, 0, 0};
    ck_assert_allclose("layernorm dgamma", dg, dg_want, 4, 2e-5f, 1e-5f);
    ck_assert_allclose("layernorm dbeta", dbeta, db_want, 4, 0, 0);

    /* A constant dy along a row is invisible to x (the mean is subtracted):
     * dx = 0, and accumulation leaves the previous dx unchanged. */
    float dyc[8] = {2, 2, 2, 2, -1, -1, -1, -1};
    float dx2[8] = {5, 5, 5, 5, 5, 5, 5, 5};
    tfm_k_layernorm_backward(dx2, NULL, NULL, dyc, x, mean, rstd, ones, 2, 4);
    float five[8] = {5, 5, 5, 5, 5, 5, 5, 5};
    ck_assert_allclose("layernorm dx (constant dy)", dx2, five, 8, 1e-5f, 0);
}
END_TEST

/* ---- cross-entropy ----------------------------------------------------------- */

START_TEST(cross_entropy_smoothed_2x3) {
    /* row 0: logits (1, 2, 3), target 2; lse = 3 + log(1 + e^-1 + e^-2) = 3.40760596
     *   -log p = (2.40760596, 1.40760596, 0.40760596)
     *   loss = 0.9 * 0.40760596 + 0.1 * mean(-log p) = 0.36684536 + 0.14076060 = 0.50760596
     * row 1: logits (0, 0, 0), target 0: -log p = log 3 = 1.09861229 everywhere,
     *   loss = 1.09861229
     * row 2: target = ignore_index (1): counts for nothing. */
    float logits[9] = {1, 2, 3, 0, 0, 0, 5, -5, 0}, lse[3];
    int32_t targets[3] = {2, 0, 1};
    int64_t count = -1;
    double total = tfm_k_xent_forward(lse, logits, targets, 3, 3, 1, 0.1f, &count);
    ck_assert_int_eq(count, 2);
    NEAR(total, 0.50760596 + 1.09861229, 1e-6);
    NEAR(lse[0], 3.40760596, 1e-6);
    NEAR(lse[1], 1.09861229, 1e-6);
    /* no smoothing: plain -log p[y] */
    double plain = tfm_k_xent_forward(lse, logits, targets, 3, 3, 1, 0.0f, &count);
    NEAR(plain, 0.40760596 + 1.09861229, 1e-6);

    /* d/dx = p - 0.9 onehot - 0.1/3, times scale 0.5 (mean over 2 rows):
     * p0 = (0.09003057, 0.24472847, 0.66524096)
     *   -> (0.05669724, 0.21139514, -0.26809237)
     * p1 = 1/3 -> (-0.6, 0.3, 0.3); the ignored row keeps its prior value 7. */
    float dl[9] = {0, 0, 0, 0, 0, 0, 7, 7, 7};
    tfm_k_xent_backward(dl, logits, lse, targets, 3, 3, 1, 0.1f, 0.5f);
    float want[9] = {0.5f * 0.05669724f,
                     0.5f * 0.21139514f,
                     0.5f * -0.26809237f,
                     0.5f * -0.6f,
                     0.5f * 0.3f,
                     0.5f * 0.3f,
                     7,
                     7,
                     7};
    ck_assert_allclose("xent dlogits", dl, want, 9, 1e-6f, 1e-5f);
}
END_TEST

/* ---- log-sum-exp of decoding ------------------------------------------------ */

static uint64_t lse_rng = 88172645463325252ull;
static double lse_uniform(void) { /* [0, 1) */
    lse_rng ^= lse_rng << 13;
    lse_rng ^= lse_rng >> 7;
    lse_rng ^= lse_rng << 17;
    return (double)(lse_rng >> 11) * 0x1p-53;
}

/* |got - exp(x)| in units of the last place of exp(x) (long double reference) */
static double exp_ulps(double got, double x) {
    long double want = expl((long double)x);
    return (double)(fabsl((long double)got - want) / ldexpl(1.0L, ilogbl(want) - 52));
}

/* The AVX2 kernels' 8-lane tfm_expf gives the scalar one's bits: random
 * floats over the whole range and near the clamps, and the special values. */
START_TEST(expf8_is_expf) {
#ifdef TFM_AVX2_ONLY
    static const float special[] = {0.0f,        -0.0f,  1e-30f,       -1e-30f,      88.3762626f,
                                    88.3762627f, 88.38f, -87.3365447f, -87.3365448f, -87.34f,
                                    -103.0f,     -1e10f, 1e10f,        INFINITY,     -INFINITY,
                                    NAN,         0.5f,   -0.5f,        0x1p-126f,    -0x1p-149f};
    float in[8], got[8];
    int n_special = (int)(sizeof special / sizeof special[0]);
    for (int i = 0; i < 400000 + n_special; i++) {
        float x;
        if (i < n_special) {
            x = special[i];
        } else {
            double u = lse_uniform();
            x = (float)(i % 4 == 0   ? 400 * u - 200
                        : i % 4 == 1 ? 40 * u - 20
                        : i % 4 == 2 ? -87.4 + 0.2 * u
                                     : 88.3 + 0.2 * u);
        }
        in[i % 8] = x;
        if (i % 8 != 7 && i != 400000 + n_special - 1) continue;
        _mm256_storeu_ps(got, tfm_expf8(_mm256_loadu_ps(in)));
        for (int j = 0; j <= i % 8; j++) {
            float want = tfm_expf(in[j]);
            ck_assert_msg(memcmp(&got[j], &want, sizeof want) == 0, "expf(%a): %a, scalar %a",
                          (double)in[j], (double)got[j], (double)want);
        }
    }
#else
    tfm_test_skip("tfm_expf8 is the AVX2 kernels' (this file is built without AVX2 + FMA, or "
                  "with AVX-512)");
#endif
}
END_TEST

/* The AVX2 kernels' 4-lane tfm_exp_nonpos gives the scalar one's bits (this
 * file's scalar one fuses as the kernels' does: both are built with FMA
 * here): float differences over the whole range, the clamp, -inf and NaN. */
START_TEST(exp_nonpos4_is_exp_nonpos) {
#ifdef TFM_AVX2_ONLY
    static const double special[] = {0.0,
                                     -0.0,
                                     -1e-300,
                                     -707.9,
                                     -708.0,
                                     -708.1,
                                     -745.2,
                                     -1e10,
                                     -INFINITY,
                                     NAN,
                                     -0.3465735902799727,
                                     -0.34657359027997264};
    double in[4], got[4];
    int n_special = (int)(sizeof special / sizeof special[0]);
    for (int i = 0; i < 200000 + n_special; i++) {
        double x = i < n_special ? special[i]
                   : i % 2       ? (double)(float)(-720.0 * lse_uniform())
                                 : (double)(float)(-8.0 * lse_uniform());
        in[i % 4] = x;
        if (i % 4 != 3 && i != 200000 + n_special - 1) continue;
        _mm256_storeu_pd(got, tfm_exp_nonpos4(_mm256_loadu_pd(in)));
        for (int j = 0; j <= i % 4; j++) {
            double want = tfm_exp_nonpos(in[j]);
            ck_assert_msg(memcmp(&got[j], &want, sizeof want) == 0, "exp(%a): %a, scalar %a", in[j],
                          got[j], want);
        }
    }
#else
    tfm_test_skip("tfm_exp_nonpos4 is the AVX2 kernels' (this file is built without AVX2 + FMA, "
                  "or with AVX-512)");
#endif
}
END_TEST

/* The AVX2 kernels' 4-lane tfm_mix64 (64-bit multiplies from 32-bit ones)
 * gives the scalar one's integers, for counters and keys with high bits. */
START_TEST(mix64x4_is_mix64) {
#ifdef TFM_AVX2_ONLY
    uint64_t s = 0x243F6A8885A308D3ull;
    for (int i = 0; i < 100000; i++) {
        uint64_t c[4], got[4];
        for (int j = 0; j < 4; j++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            c[j] = i % 3 == 0 ? s : i % 3 == 1 ? s >> 32 : (uint64_t)i * 4 + (uint64_t)j;
        }
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        uint64_t key = i % 2 ? s : (uint64_t)i;
        _mm256_storeu_si256((__m256i *)(void *)got,
                            tfm_mix64x4(key, _mm256_loadu_si256((const __m256i *)(const void *)c)));
        for (int j = 0; j < 4; j++)
            ck_assert_msg(got[j] == tfm_mix64(key, c[j]), "mix64(%llx, %llx): %llx, scalar %llx",
                          (unsigned long long)key, (unsigned long long)c[j],
                          (unsigned long long)got[j], (unsigned long long)tfm_mix64(key, c[j]));
    }
#else
    tfm_test_skip("tfm_mix64x4 is the AVX2 kernels' (this file is built without AVX2 + FMA, or "
                  "with AVX-512)");
#endif
}
END_TEST

START_TEST(exp_nonpos_within_2_ulp) {
    double worst = 0;
    /* float arguments (decoding's are float differences) over the whole range
     * and densely near 0, plus the reduction's edges (n ln2 +- ln2/2) */
    for (int i = 0; i < 200000; i++) {
        double x = (double)(float)(i % 2 ? -708.0 * lse_uniform() : -8.0 * lse_uniform());
        double u = exp_ulps(tfm_exp_nonpos(x), x);
        worst = u > worst ? u : worst;
        ck_assert_msg(u <= 2.0, "exp(%.17g) off by %.2f ulp", x, u);
    }
    for (int n = 0; n <= 1021; n++)
        for (int d = -2; d <= 2; d++) {
            double x = -(n + 0.5) * 0.69314718055994530942 + d * 1e-9;
            if (x < -708.0) continue;
            ck_assert_msg(exp_ulps(tfm_exp_nonpos(x), x) <= 2.0, "exp(%.17g)", x);
        }
    ck_assert(tfm_exp_nonpos(0.0) == 1.0);
    ck_assert(tfm_exp_nonpos(-0.0) == 1.0);
    ck_assert(exp_ulps(tfm_exp_nonpos(-1e-30), -1e-30) <= 1.0);
    ck_assert(exp_ulps(tfm_exp_nonpos(-708.0), -708.0) <= 2.0);
    ck_assert(tfm_exp_nonpos(-708.5) == 0.0); /* subnormal results are 0 */
    ck_assert(tfm_exp_nonpos(-1e6) == 0.0);
    ck_assert(tfm_exp_nonpos(-INFINITY) == 0.0);
    ck_assert(isnan(tfm_exp_nonpos(NAN)));
    printf("  exp_nonpos: worst %.2f ulp over 200000 float arguments\n", worst);
}
END_TEST

/* lse of row x (n) in long double, from the same float differences
 * x[i] - mx as the kernel's contract */
static long double lse_reference(const float *x, int64_t n, float mx) {
    long double s = 0;
    for (int64_t i = 0; i < n; i++) s += expl((long double)(float)(x[i] - mx));
    return (long double)mx + logl(s);
}

START_TEST(log_sum_exp_matches_long_double) {
    enum { V = 6106 };
    static float row[V];
    const int64_t sizes[] = {1, 2, 7, 8, 9, 15, 17, 100, V};
    int64_t rows = 0, differ = 0;
    for (int64_t k = 0; k < (int64_t)(sizeof sizes / sizeof sizes[0]); k++)
        for (int rep = 0; rep < 60; rep++) {
            const int64_t n = sizes[k];
            /* logit-like rows: spread 0.1 to 40, offset anywhere in +-50 */
            double spread = 0.1 + 40 * lse_uniform(), off = 100 * lse_uniform() - 50;
            float mx = -INFINITY;
            for (int64_t i = 0; i < n; i++) {
                row[i] = (float)(off + spread * (lse_uniform() + lse_uniform() - 1));
                mx = row[i] > mx ? row[i] : mx;
            }
            float got = tfm_k_log_sum_exp(row, n, mx);
            long double want = lse_reference(row, n, mx);
            /* two float roundings (log(sum), then mx + it): within half an
             * ulp of each, plus a hair for the sum's double error */
            long double lg = want - (long double)mx;
            long double tol = 0.5001L * (ldexpl(1.0L, ilogbl(want) - 23) +
                                         (lg > 0 ? ldexpl(1.0L, ilogbl(lg) - 23) : 0));
            ck_assert_msg(fabsl((long double)got - want) <= tol,
                          "n %lld: lse %.9g, exact %.12Lg, mx %.9g", (long long)n,
                          (double)got, want, (double)mx);
            /* and the value decoding had before: libm exp in double, id order */
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += exp((double)(row[i] - mx));
            differ += got != mx + (float)log(s);
            rows++;
        }
    ck_assert_msg(differ == 0, "%lld of %lld rows differ from the libm double sum", (long long)differ,
                  (long long)rows);
    /* -inf terms count 0: a row of one finite value and -inf is that value */
    float lone[9] = {-INFINITY, -INFINITY, 3.5f, -INFINITY, -INFINITY,
                     -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    ck_assert(tfm_k_log_sum_exp(lone, 9, 3.5f) == 3.5f);
    /* two equal values: mx + log 2 */
    float two[2] = {-1.25f, -1.25f};
    NEAR(tfm_k_log_sum_exp(two, 2, -1.25f), -1.25 + 0.69314718, 1e-6);
    /* NaN anywhere (the 9th term: the tail after the 8 lanes) gives NaN */
    float bad[9] = {0, -1, -2, -3, -4, -5, -6, -7, NAN};
    ck_assert(isnan(tfm_k_log_sum_exp(bad, 9, 0.0f)));
    bad[8] = -8;
    bad[3] = NAN;
    ck_assert(isnan(tfm_k_log_sum_exp(bad, 9, 0.0f)));
}
END_TEST

#if defined(__FMA__)
/* The kernel's contract, written out: term i in lane i mod 8, each by
 * tfm_exp_nonpos, the lanes summed pairwise. */
static float lse_lanes(const float *x, int64_t n, float mx) {
    double acc[8] = {0};
    for (int64_t i = 0; i < n; i++) acc[i % 8] += tfm_exp_nonpos((double)(x[i] - mx));
    double sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    return mx + (float)log(sum);
}
#endif

/* Vector paths (AVX2 intrinsics, AVX-512 by the compiler) give the contract's
 * bits, on logit-like rows and on rows with -inf, terms below -708 (0) and
 * NaN in every lane. Only where this file's tfm_exp_nonpos fuses as the
 * kernels do (FMA here, kernels other than the generic ones). */
START_TEST(log_sum_exp_is_the_lane_contract) {
#if defined(__FMA__)
    if (!strcmp(tfm_kernels_name(), "generic"))
        tfm_test_skip("the generic kernels do not fuse multiply-adds as this file does");
    enum { V = 6108 };
    static float row[V];
    const int64_t sizes[] = {1, 5, 8, 9, 16, 31, 333, V};
    for (int64_t k = 0; k < (int64_t)(sizeof sizes / sizeof sizes[0]); k++)
        for (int rep = 0; rep < 40; rep++) {
            const int64_t n = sizes[k];
            double spread = 0.1 + (rep % 4 == 3 ? 2000 : 40) * lse_uniform();
            float mx = -INFINITY;
            for (int64_t i = 0; i < n; i++) {
                row[i] = (float)(spread * (lse_uniform() + lse_uniform() - 1));
                if (rep % 5 == 4 && i % 7 == 3) row[i] = -INFINITY;
                mx = row[i] > mx ? row[i] : mx;
            }
            float got = tfm_k_log_sum_exp(row, n, mx), want = lse_lanes(row, n, mx);
            ck_assert_msg(memcmp(&got, &want, sizeof got) == 0,
                          "n %lld rep %d: %.9g, contract %.9g", (long long)n, rep, (double)got,
                          (double)want);
        }
    for (int lane = 0; lane < 16; lane++) {
        for (int i = 0; i < 16; i++) row[i] = -(float)i;
        row[lane] = NAN;
        ck_assert_msg(isnan(tfm_k_log_sum_exp(row, 16, 0.0f)), "NaN in lane %d", lane);
    }
#else
    tfm_test_skip("this file is built without FMA: its tfm_exp_nonpos rounds unlike the kernels'");
#endif
}
END_TEST

/* ---- embedding ---------------------------------------------------------------- */

START_TEST(embedding_scatter_add) {
    /* table (4, 3): row v = (v, 10v, 100v); ids (1, 3, 1, 0) with pad 0, scale 2 */
    float table[12];
    for (int v = 0; v < 4; v++) {
        table[v * 3] = (float)v;
        table[v * 3 + 1] = 10.0f * v;
        table[v * 3 + 2] = 100.0f * v;
    }
    int32_t ids[4] = {1, 3, 1, 0};
    float y[12];
    tfm_k_embedding_forward(y, table, ids, 4, 3, 2.0f);
    float yw[12] = {2, 20, 200, 6, 60, 600, 2, 20, 200, 0, 0, 0};
    ck_assert_allclose("embedding y", y, yw, 12, 0, 0);
    /* dy rows (1,2,3) (4,5,6) (7,8,9) (10,11,12); dtable starts at 0.5:
     *   row 1 (used twice): 0.5 + 2 ((1,2,3) + (7,8,9)) = (16.5, 20.5, 24.5)
     *   row 3: 0.5 + 2 (4,5,6) = (8.5, 10.5, 12.5)
     *   row 0 is the pad id: stays 0.5; row 2 unused: 0.5 */
    float dy[12];
    for (int i = 0; i < 12; i++) dy[i] = (float)(i + 1);
    float dt[12];
    for (int i = 0; i < 12; i++) dt[i] = 0.5f;
    tfm_k_embedding_backward(dt, dy, ids, 4, 3, 2.0f, 0);
    float dw[12] = {0.5f, 0.5f, 0.5f, 16.5f, 20.5f, 24.5f, 0.5f, 0.5f, 0.5f, 8.5f, 10.5f, 12.5f};
    ck_assert_allclose("embedding dtable (pad 0)", dt, dw, 12, 0, 0);
    /* pad_id < 0: the id-0 row gets its gradient 2 (10, 11, 12) */
    for (int i = 0; i < 12; i++) dt[i] = 0;
    tfm_k_embedding_backward(dt, dy, ids, 4, 3, 2.0f, -1);
    float dn[12] = {20, 22, 24, 16, 20, 24, 0, 0, 0, 8, 10, 12};
    ck_assert_allclose("embedding dtable (no pad)", dt, dn, 12, 0, 0);

    /* dim 40 crosses the 32-column block: ids (2, 2, 0), dy = 1, scale 0.5
     * -> row 2 gets 1.0 in every column, row 0 (pad) and row 1 stay 0. */
    enum { D = 40 };
    float big_dy[3 * D], big_dt[3 * D] = {0}, big_want[3 * D] = {0};
    int32_t big_ids[3] = {2, 2, 0};
    for (int i = 0; i < 3 * D; i++) big_dy[i] = 1.0f;
    for (int c = 0; c < D; c++) big_want[2 * D + c] = 1.0f;
    tfm_k_embedding_backward(big_dt, big_dy, big_ids, 3, D, 0.5f, 0);
    ck_assert_allclose("embedding dtable dim 40", big_dt, big_want, 3 * D, 0, 0);
}
END_TEST

/* ---- dropout ------------------------------------------------------------------ */

START_TEST(dropout_keep_rate_and_scale) {
    enum { N = 100000 };
    static float x[N], y[N], dy[N], dx[N];
    const float p = 0.3f;
    for (int i = 0; i < N; i++) {
        x[i] = 1.0f + (float)(i % 7);
        dy[i] = 0.25f * (float)(i % 5) - 0.5f;
        dx[i] = 0;
    }
    tfm_k_dropout_forward(y, x, N, p, 42);
    tfm_k_dropout_backward(dx, dy, N, p, 42);
    int64_t kept = 0;
    double sum_y = 0, sum_x = 0;
    for (int i = 0; i < N; i++) {
        sum_x += x[i];
        sum_y += y[i];
        if (y[i] != 0.0f) {
            kept++;
            /* inverted scale: kept values are x / (1 - p) */
            ck_assert_msg(fabsf(y[i] - x[i] / (1 - p)) <= 1e-6f * y[i], "y[%d] = %g", i, y[i]);
            ck_assert_msg(fabsf(dx[i] - dy[i] / (1 - p)) <= 1e-6f, "dx[%d] = %g", i, dx[i]);
        } else {
            /* same mask in backward */
            ck_assert_msg(dx[i] == 0.0f, "dx[%d] = %g where y was dropped", i, dx[i]);
        }
    }
    double rate = (double)kept / N;
    printf("  dropout p=0.3: keep rate %.4f, mean(y)/mean(x) %.4f\n", rate, sum_y / sum_x);
    ck_assert_msg(fabs(rate - 0.7) < 0.01, "keep rate %g", rate);
    ck_assert_msg(fabs(sum_y / sum_x - 1.0) < 0.01, "expectation not kept: %g", sum_y / sum_x);
    /* another key, another mask; p = 0 keeps everything unscaled */
    static float y2[N];
    tfm_k_dropout_forward(y2, x, N, p, 43);
    int64_t differ = 0;
    for (int i = 0; i < N; i++) differ += (y[i] == 0) != (y2[i] == 0);
    ck_assert_msg(differ > N / 10, "masks for keys 42 and 43 differ in only %lld places",
                  (long long)differ);
    tfm_k_dropout_forward(y2, x, N, 0.0f, 42);
    ck_assert_allclose("dropout p=0", y2, x, N, 0, 0);
    /* the values are tfm_dropout_keep's mask per element times the scalar
     * product (the kernels compute one hash per four elements without
     * AVX-512, four hashes per 16 elements with AVX2), also for lengths that
     * end inside a group of four or a block of 16 and for short ones below
     * the threading size */
    const int64_t lens[] = {N - 1, N - 2, N - 3, N - 15, 33, 32, 17, 16, 15, 5, 1};
    const float scale = 1.0f / (1.0f - p);
    for (size_t c = 0; c < sizeof lens / sizeof lens[0]; c++) {
        int64_t n = lens[c];
        for (int64_t i = 0; i < n; i++) dx[i] = 1.0f;
        y[n] = dx[n] = 99.0f; /* past the end: untouched */
        tfm_k_dropout_forward(y, x, n, p, 7);
        tfm_k_dropout_backward(dx, dy, n, p, 7);
        uint32_t th = tfm_dropout_threshold(p);
        for (int64_t i = 0; i < n; i++) {
            int keep = tfm_dropout_keep(7, (uint64_t)i, th);
            float yw = keep ? x[i] * scale : 0.0f, dxw = 1.0f + (keep ? dy[i] * scale : 0.0f);
            ck_assert_msg(memcmp(&y[i], &yw, sizeof yw) == 0 &&
                              memcmp(&dx[i], &dxw, sizeof dxw) == 0,
                          "n=%lld: element %lld: y %a, dx %a, want %a, %a (keep %d)", (long long)n,
                          (long long)i, (double)y[i], (double)dx[i], (double)yw, (double)dxw, keep);
        }
        ck_assert_msg(y[n] == 99.0f && dx[n] == 99.0f, "n=%lld: wrote past the end", (long long)n);
    }
}
END_TEST

/* ---- attention ------------------------------------------------------------------- */

/* B = 1, H = 1, D = 1 (dh = 1, so the score scale is 1):
 * q = (1, 1), k = (0, 1), v = (1, 3). Scores of either query: (0, 1);
 * softmax -> (1/(1+e), e/(1+e)) = (0.26894142, 0.73105858);
 * output 0.26894142 + 3 * 0.73105858 = 2.46211716. */
static void attn_tiny(float *out, float *probs, const uint8_t *pad, int causal, int64_t Tq,
                      int64_t q_offset) {
    float q[2] = {1, 1}, k[2] = {0, 1}, v[2] = {1, 3};
    tfm_attn_shape s = {.B = 1,
                        .Tq = Tq,
                        .Tk = 2,
                        .D = 1,
                        .H = 1,
                        .q_bs = Tq,
                        .kv_bs = 2,
                        .key_pad = pad,
                        .causal = causal,
                        .q_offset = q_offset};
    float scratch[64];
    ck_assert_int_le(tfm_attention_scratch_floats(&s), 64);
    tfm_k_attention_forward(out, probs, q, k, v, &s, scratch);
}

START_TEST(attention_masks_by_hand) {
    const float pa = 0.26894142f, pb = 0.73105858f, mix = 2.46211716f;
    float out[2], probs[4];
    attn_tiny(out, probs, NULL, 0, 2, 0);
    float o_full[2] = {mix, mix}, p_full[4] = {pa, pb, pa, pb};
    ck_assert_allclose("attention no mask", out, o_full, 2, 1e-6f, 1e-6f);
    ck_assert_allclose("attention probs", probs, p_full, 4, 1e-7f, 1e-6f);
    /* causal: query 0 sees key 0 only -> v0 = 1 */
    attn_tiny(out, probs, NULL, 1, 2, 0);
    float o_causal[2] = {1, mix}, p_causal[4] = {1, 0, pa, pb};
    ck_assert_allclose("attention causal", out, o_causal, 2, 1e-6f, 1e-6f);
    ck_assert_allclose("attention causal probs", probs, p_causal, 4, 1e-7f, 1e-6f);
    /* key 1 padded: every query sees key 0 only */
    uint8_t pad1[2] = {0, 1};
    attn_tiny(out, probs, pad1, 0, 2, 0);
    float o_pad[2] = {1, 1};
    ck_assert_allclose("attention key pad", out, o_pad, 2, 1e-6f, 1e-6f);
    /* key 0 padded and causal: query 0 sees nothing -> zero output, no NaN;
     * query 1 sees key 1 only -> 3 */
    uint8_t pad0[2] = {1, 0};
    attn_tiny(out, probs, pad0, 1, 2, 0);
    float o_none[2] = {0, 3}, p_none[4] = {0, 0, 0, 1};
    ck_assert_allclose("attention fully masked row", out, o_none, 2, 0, 1e-6f);
    ck_assert_allclose("attention fully masked probs", probs, p_none, 4, 0, 1e-6f);
    /* Its backward is finite and zero for that row: dO = (1, 1).
     * query 1 sees one key: P = (0, 1) so dS = P (dP - P.dP) = 0 too; dq = 0,
     * dk = 0; dv = P^T dO = (0, 1). */
    float q[2] = {1, 1}, k[2] = {0, 1}, v[2] = {1, 3}, dout[2] = {1, 1};
    float dq[2] = {0}, dk[2] = {0}, dv[2] = {0}, scratch[64];
    tfm_attn_shape s = {.B = 1,
                        .Tq = 2,
                        .Tk = 2,
                        .D = 1,
                        .H = 1,
                        .q_bs = 2,
                        .kv_bs = 2,
                        .key_pad = pad0,
                        .causal = 1};
    tfm_k_attention_backward(dq, dk, dv, dout, probs, q, k, v, &s, scratch);
    float z2[2] = {0, 0}, dv_want[2] = {0, 1};
    ck_assert_allclose("attention masked dq", dq, z2, 2, 0, 0);
    ck_assert_allclose("attention masked dk", dk, z2, 2, 0, 0);
    ck_assert_allclose("attention masked dv", dv, dv_want, 2, 0, 1e-6f);
    /* KV-cache offset: one query at absolute position 1 sees both keys;
     * at offset 0 it sees key 0 only. */
    attn_tiny(out, probs, NULL, 1, 1, 1);
    NEAR(out[0], mix, 1e-6);
    attn_tiny(out, probs, NULL, 1, 1, 0);
    NEAR(out[0], 1.0, 1e-6);
}
END_TEST

START_TEST(attention_two_heads_by_hand) {
    /* D = 4, H = 2 (dh = 2, scale 1/sqrt2). One query, two keys.
     * head 0 (channels 0-1): q = (1, 1), k0 = (0, 0), k1 = (1, 1):
     *   scores (0, 2/sqrt2 = sqrt2): p = (1, e^sqrt2)/(1 + e^sqrt2)
     *   = (0.19557032, 0.80442968); v0 = (1, 0), v1 = (0, 1) -> out (p0, p1)
     * head 1 (channels 2-3): q = (0, 0): uniform (0.5, 0.5);
     *   v0 = (2, 4), v1 = (6, 8) -> out (4, 6) */
    float q[4] = {1, 1, 0, 0};
    float k[8] = {0, 0, 5, 5, 1, 1, -3, 7};
    float v[8] = {1, 0, 2, 4, 0, 1, 6, 8};
    float out[4], probs[4], scratch[64];
    tfm_attn_shape s = {.B = 1, .Tq = 1, .Tk = 2, .D = 4, .H = 2, .q_bs = 4, .kv_bs = 8};
    tfm_k_attention_forward(out, probs, q, k, v, &s, scratch);
    float want[4] = {0.19557032f, 0.80442968f, 4, 6};
    ck_assert_allclose("attention 2 heads", out, want, 4, 1e-6f, 1e-6f);
    float pw[4] = {0.19557032f, 0.80442968f, 0.5f, 0.5f};
    ck_assert_allclose("attention 2 heads probs", probs, pw, 4, 1e-6f, 1e-6f);
}
END_TEST

/* ---- Adam --------------------------------------------------------------------------- */

START_TEST(adam_steps_by_hand) {
    /* lr 0.1, b1 0.9, b2 0.999, eps 1e-8, t = 1:
     * g = 0.5: m = 0.05, v = 0.00025, mhat = 0.5, vhat = 0.25 -> step 0.1 * 0.5 / 0.5 = 0.1
     * g = -2: m = -0.2, v = 0.004, mhat = -2, vhat = 4 -> step -0.1
     * g = 0: no move. */
    float p[3] = {1, 1, 1}, g[3] = {0.5f, -2, 0}, m[3] = {0}, v[3] = {0};
    tfm_k_adam(p, g, m, v, 3, 0.1f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
    float p1[3] = {0.9f, 1.1f, 1}, m1[3] = {0.05f, -0.2f, 0}, v1[3] = {0.00025f, 0.004f, 0};
    ck_assert_allclose("adam p t=1", p, p1, 3, 1e-6f, 0);
    ck_assert_allclose("adam m t=1", m, m1, 3, 1e-8f, 1e-6f);
    /* 1 - 0.999f is 0.00099998713 in float: 1.3e-5 relative */
    ck_assert_allclose("adam v t=1", v, v1, 3, 1e-9f, 3e-5f);
    /* t = 2 with the same g = 0.5: m = 0.045 + 0.05 = 0.095, mhat = 0.095/0.19 = 0.5;
     * v = 0.00024975 + 0.00025 = 0.00049975, vhat = 0.00049975/0.001999 = 0.25
     * -> another step of exactly lr: 0.9 -> 0.8 */
    tfm_k_adam(p, g, m, v, 3, 0.1f, 0.9f, 0.999f, 1e-8f, 0.0f, 2);
    ck_assert_msg(fabsf(p[0] - 0.8f) < 1e-5f, "p = %.8g", p[0]);
    ck_assert_msg(fabsf(m[0] - 0.095f) < 1e-7f, "m = %.8g", m[0]);
    ck_assert_msg(fabsf(v[0] - 0.00049975f) < 2e-8f, "v = %.8g", v[0]);
    /* decoupled weight decay 0.01: p = 2 - 0.1 - 0.1 * 0.01 * 2 = 1.898;
     * with g = 0 only the decay acts: 2 - 0.002 = 1.998 */
    float pw[2] = {2, 2}, gw[2] = {0.5f, 0}, mw[2] = {0}, vw[2] = {0};
    tfm_k_adam(pw, gw, mw, vw, 2, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1);
    float pw1[2] = {1.898f, 1.998f};
    ck_assert_allclose("adamw p", pw, pw1, 2, 1e-6f, 0);
}
END_TEST

/* Decoding attention over gathered keys (slots, groups, padding) equals the
 * fused attention over the same keys copied contiguously, bit for bit, in
 * fp32 and in bf16, the groups' keys also given transposed (keys_t); with
 * head width and key count above the GEMM's 256-long blocks too (and bf16's
 * 512). */
START_TEST(attention_decode_equals_forward) {
    const int64_t shapes[][3] = {{4, 2, 9}, {600, 2, 300}, {1100, 2, 530}}; /* D, H, Tk */
    for (int si = 0; si < 3; si++) {
        const int64_t D = shapes[si][0], H = shapes[si][1], Tk = shapes[si][2], R = 3, G = 2;
        const int64_t slots = 4; /* self-attention: slots per position */
        float *q = malloc((size_t)(R * D) * sizeof(float));
        float *cache_k = malloc((size_t)(Tk * slots * D) * sizeof(float));
        float *cache_v = malloc((size_t)(Tk * slots * D) * sizeof(float));
        float *kc = malloc((size_t)(Tk * D) * sizeof(float)),
              *vc = malloc((size_t)(Tk * D) * sizeof(float));
        float *got = malloc((size_t)(R * D) * sizeof(float)),
              *want = malloc((size_t)D * sizeof(float));
        float *pg = malloc((size_t)(R * H * Tk) * sizeof(float)),
              *pw = malloc((size_t)(H * Tk) * sizeof(float));
        int32_t *slot = malloc((size_t)(R * Tk) * sizeof(int32_t));
        int32_t group[3] = {1, 0, 1};
        uint8_t *pad = calloc((size_t)(G * Tk), 1);
        float *keys_t = malloc((size_t)(G * Tk * D) * sizeof(float));
        tfm_attn_gather g0 = {.rows = R, .Tk = Tk, .D = D, .H = H};
        tfm_attn_shape s0 = {.B = 1, .Tq = 1, .Tk = Tk, .D = D, .H = H, .q_bs = D, .kv_bs = Tk * D};
        int64_t nscr = tfm_attention_decode_scratch_floats(&g0) + tfm_attention_scratch_floats(&s0);
        float *scratch = malloc((size_t)nscr * sizeof(float));
        ck_assert(q && cache_k && cache_v && kc && vc && got && want && pg && pw && slot && pad &&
                  keys_t && scratch);
        tfm_test_fill(q, R * D, 1, -2, 2);
        tfm_test_fill(cache_k, Tk * slots * D, 2, -2, 2);
        tfm_test_fill(cache_v, Tk * slots * D, 3, -1, 1);
        for (int64_t i = 0; i < R * Tk; i++) slot[i] = (int32_t)((i * 7 + i / Tk) % slots);
        for (int64_t j = 0; j < Tk; j++) pad[Tk + j] = j % 3 == 2; /* group 1 pads some keys */
        const int64_t dh = D / H;
        for (int64_t i = 0; i < G * Tk * D; i++) { /* (group, head, kk, j) */
            int64_t j = i % Tk, kk = i / Tk % dh, h = i / (Tk * dh) % H, gr = i / (Tk * D);
            keys_t[i] = cache_k[gr * Tk * D + j * D + h * dh + kk];
        }
        /* 0: self (slots), 1: cross (groups, pad); 2, 3: the same in bf16;
         * 4, 5: cross with keys_t, fp32 and bf16 */
        for (int mode = 0; mode < 6; mode++) {
            tfm_precision prec = mode == 0 || mode == 1 || mode == 4 ? TFM_FP32 : TFM_BF16;
            tfm_attn_gather g = g0;
            g.precision = prec;
            if (mode >= 4) g.keys_t = keys_t;
            if (mode < 4 && mode % 2 == 0) {
                g.pos_stride = slots * D;
                g.slot = slot;
                g.slot_ld = Tk;
            } else { /* groups: G sources of (Tk, D) in the same buffer */
                g.pos_stride = D;
                g.group = group;
                g.group_stride = Tk * D;
                g.key_pad = pad;
            }
            tfm_k_attention_decode(got, pg, q, cache_k, cache_v, &g, scratch);
            for (int64_t r = 0; r < R; r++) {
                for (int64_t j = 0; j < Tk; j++) {
                    int64_t off = mode < 4 && mode % 2 == 0 ? j * slots * D + slot[r * Tk + j] * D
                                                            : group[r] * Tk * D + j * D;
                    memcpy(kc + j * D, cache_k + off, (size_t)D * sizeof(float));
                    memcpy(vc + j * D, cache_v + off, (size_t)D * sizeof(float));
                }
                tfm_attn_shape s = s0;
                s.key_pad = mode % 2 == 1 || mode >= 4 ? pad + group[r] * Tk : NULL;
                s.precision = prec;
                tfm_k_attention_forward(want, pw, q + r * D, kc, vc, &s, scratch);
                ck_assert_msg(memcmp(got + r * D, want, (size_t)D * sizeof(float)) == 0,
                              "D %lld mode %d row %lld: output differs", (long long)D, mode,
                              (long long)r);
                ck_assert_msg(memcmp(pg + r * H * Tk, pw, (size_t)(H * Tk) * sizeof(float)) == 0,
                              "D %lld mode %d row %lld: weights differ", (long long)D, mode,
                              (long long)r);
            }
        }
        free(q);
        free(cache_k);
        free(cache_v);
        free(kc);
        free(vc);
        free(got);
        free(want);
        free(pg);
        free(pw);
        free(slot);
        free(pad);
        free(keys_t);
        free(scratch);
    }
}
END_TEST

/* Step 0 would divide by 1 - beta^0 = 0 and make every parameter NaN: the
 * optimizer and the kernel both refuse it (an assertion, before any write). */
START_TEST(adam_step_zero_refused) {
    tfm_params ps;
    tfm_params_init(&ps);
    int64_t shape[1] = {3};
    tfm_params_add(&ps, "w", 1, shape);
    ck_assert_int_eq(tfm_params_alloc(&ps), 0);
    tfm_adam_config ac;
    tfm_adam_config_default(&ac);
    tfm_adam a;
    ck_assert_int_eq(tfm_adam_init(&a, &ps, &ac), 0);
    tfm_adam_update(&a, &ps, 0, 0.1);
}
END_TEST

START_TEST(adam_kernel_step_zero_aborts) {
    float p[1] = {1}, g[1] = {0.5f}, m[1] = {0}, v[1] = {0};
    tfm_k_adam(p, g, m, v, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.0f, 0);
}
END_TEST

/* The kernels called from threads of the caller's own OpenMP region, each
 * with its own scratch of tfm_attention_scratch_floats (as a program
 * running one tape per thread would): inside an active region each call
 * runs on its calling thread and must use its scratch's first slot, not the
 * slot of its thread number in the caller's team (f369041 wrote past the
 * scratch of threads 2 and 3). The thread count is 1 (so the scratch has
 * one slot on any machine) and the region asks for 4 threads. Outputs equal
 * the serial call's. */
START_TEST(attention_from_threads_of_the_callers_region) {
    enum { B = 2, TQ = 4, TK = 5, D = 8, H = 2, GUARD = 256, NT = 4 };
    float q[B * TQ * D], k[B * TK * D], v[B * TK * D], dout[B * TQ * D];
    tfm_test_fill(q, B * TQ * D, 1, -1, 1);
    tfm_test_fill(k, B * TK * D, 2, -1, 1);
    tfm_test_fill(v, B * TK * D, 3, -1, 1);
    tfm_test_fill(dout, B * TQ * D, 4, -1, 1);
    tfm_attn_shape s = {.B = B,
                        .Tq = TQ,
                        .Tk = TK,
                        .D = D,
                        .H = H,
                        .q_bs = TQ * D,
                        .kv_bs = TK * D,
                        .dropout_p = 0.1f,
                        .key = 7};
    /* the serial call: out, probs, dq, dk, dv */
    enum { NOUT = B * TQ * D + B * H * TQ * TK + B * TQ * D + 2 * B * TK * D };
    static float want[NOUT], got[NT][NOUT];
    int bad[NT] = {0};
    float *scr = malloc((size_t)(tfm_attention_scratch_floats(&s) + GUARD) * sizeof(float));
    ck_assert_ptr_nonnull(scr);
    float *w = want;
    tfm_k_attention_forward(w, w + B * TQ * D, q, k, v, &s, scr);
    float *wg = w + B * TQ * D + B * H * TQ * TK;
    tfm_k_attention_backward(wg, wg + B * TQ * D, wg + B * TQ * D + B * TK * D, dout,
                             w + B * TQ * D, q, k, v, &s, scr);
    free(scr);
    int saved = tfm_num_threads(), team = 1;
    tfm_set_num_threads(1);
#pragma omp parallel num_threads(NT)
    {
#ifdef _OPENMP
        int me = omp_get_thread_num();
#pragma omp single
        team = omp_get_num_threads();
#else
        int me = 0;
#endif
        int64_t n = tfm_attention_scratch_floats(&s);
        float *mine = malloc((size_t)(n + GUARD) * sizeof(float));
        if (!mine) {
            bad[me] = 1;
        } else {
            for (int64_t i = n; i < n + GUARD; i++) mine[i] = 12345.0f;
            float *o = got[me], *g = o + B * TQ * D + B * H * TQ * TK;
            tfm_k_attention_forward(o, o + B * TQ * D, q, k, v, &s, mine);
            tfm_k_attention_backward(g, g + B * TQ * D, g + B * TQ * D + B * TK * D, dout,
                                     o + B * TQ * D, q, k, v, &s, mine);
            for (int64_t i = n; i < n + GUARD; i++) bad[me] |= (mine[i] != 12345.0f) << 1;
            free(mine);
        }
    }
    tfm_set_num_threads(saved);
    for (int t = 0; t < team; t++) {
        ck_assert_msg(!(bad[t] & 2), "thread %d wrote past the end of its scratch", t);
        ck_assert_msg(!bad[t], "thread %d: out of memory", t);
        ck_assert_msg(!memcmp(got[t], want, sizeof want), "thread %d: not the serial output", t);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, elementwise_small);
    tcase_add_test(tc, bias_and_column_sums);
    tcase_add_test(tc, sums_and_nonfinite);
    tcase_add_test(tc, softmax_of_1_2_3);
    tcase_add_test(tc, layernorm_2x4);
    tcase_add_test(tc, cross_entropy_smoothed_2x3);
    tcase_add_test(tc, exp_nonpos_within_2_ulp);
    tcase_add_test(tc, expf8_is_expf);
    tcase_add_test(tc, log_sum_exp_matches_long_double);
    tcase_add_test(tc, log_sum_exp_is_the_lane_contract);
    tcase_add_test(tc, exp_nonpos4_is_exp_nonpos);
    tcase_add_test(tc, mix64x4_is_mix64);
    tcase_add_test(tc, embedding_scatter_add);
    tcase_add_test(tc, dropout_keep_rate_and_scale);
    tcase_add_test(tc, attention_masks_by_hand);
    tcase_add_test(tc, attention_from_threads_of_the_callers_region);
    tcase_add_test(tc, attention_decode_equals_forward);
    tcase_add_test(tc, attention_two_heads_by_hand);
    tcase_add_test(tc, adam_steps_by_hand);
    tcase_add_test_raise_signal(tc, adam_step_zero_refused, SIGABRT);
    tcase_add_test_raise_signal(tc, adam_kernel_step_zero_aborts, SIGABRT);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
