/* Softmax + label-smoothed cross-entropy over the vocabulary, fused: only
 * the log-sum-exp of each row is saved; backward recomputes the softmax
 * straight into the logits' gradient. */
#include <math.h>

#include "../util/par.h"
#include "kernels_internal.h"
#include "tfm/kernels.h"

#define ROW_CHUNKS 64
#define XENT_BLOCK 256 /* exponentials per block (AVX2 forward) */

/* loss_i = (1-eps) (lse_i - x_{i,y}) + eps (lse_i - mean_v x_{i,v}), summed
 * over the rows of chunk c (rows of `chunk`) into part[c], the rows counted
 * (not ignore_index) into cnt[c] */
static void xent_forward_chunk(float *lse, const float *logits, const int32_t *targets, int64_t N,
                               int64_t V, int32_t ignore_index, float eps, int64_t chunk, int c,
                               double *part, int64_t *cnt) {
    int64_t r0 = c * chunk, r1 = r0 + chunk < N ? r0 + chunk : N;
    double s = 0;
    int64_t k = 0;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = logits + r * V;
        float mx = -INFINITY, sum_x = 0.0f, se = 0.0f;
#pragma omp simd reduction(max : mx) reduction(+ : sum_x)
        for (int64_t v = 0; v < V; v++) {
            mx = x[v] > mx ? x[v] : mx;
            sum_x += x[v];
        }
#ifdef TFM_AVX2_ONLY
        /* GCC leaves the loop below scalar here, so the sum has always been
         * in id order: the exponentials by 8 into a block, then that sum */
        for (int64_t v0 = 0; v0 < V; v0 += XENT_BLOCK) {
            const int64_t w = V - v0 < XENT_BLOCK ? V - v0 : XENT_BLOCK;
            float e[XENT_BLOCK];
            int64_t i = 0;
            for (const __m256 m = _mm256_set1_ps(mx); i + 8 <= w; i += 8)
                _mm256_storeu_ps(e + i, tfm_expf8(_mm256_sub_ps(_mm256_loadu_ps(x + v0 + i), m)));
            for (; i < w; i++) e[i] = tfm_expf(x[v0 + i] - mx);
            for (i = 0; i < w; i++) se += e[i];
        }
#else
#pragma omp simd reduction(+ : se)
        for (int64_t v = 0; v < V; v++) se += tfm_expf(x[v] - mx);
#endif
        double l = (double)mx + log((double)se);
        lse[r] = (float)l;
        int32_t y = targets[r];
        if (y == ignore_index) continue;
        s += (1.0 - eps) * (l - x[y]) + eps * (l - (double)sum_x / (double)V);
        k++;
    }
    part[c] = s;
    cnt[c] = k;
}

double tfm_k_xent_forward(float *lse, const float *logits, const int32_t *targets, int64_t N,
                          int64_t V, int32_t ignore_index, float eps, int64_t *count) {
    double part[ROW_CHUNKS] = {0};
    int64_t cnt[ROW_CHUNKS] = {0};
    int64_t chunk = (N + ROW_CHUNKS - 1) / ROW_CHUNKS;
    TFM_PAR_FOR(tfm_par_worth(N * V),
                for (int c = 0; c < ROW_CHUNKS; c++) xent_forward_chunk(
                    lse, logits, targets, N, V, ignore_index, eps, chunk, c, part, cnt));
    double total = 0;
    int64_t n = 0;
    for (int c = 0; c < ROW_CHUNKS; c++) {
        total += part[c];
        n += cnt[c];
    }
    if (count) *count = n;
    return total;
}

/* d loss_i / d x_v = p_v - (1-eps) [v == y] - eps / V */
static void xent_backward_row(float *dlogits, const float *logits, const float *lse,
                              const int32_t *targets, int64_t V, int32_t ignore_index, float eps,
                              float scale, int64_t r) {
    float smooth = eps / (float)V;
    int32_t y = targets[r];
    if (y == ignore_index) return;
    const float *x = logits + r * V;
    float *dx = dlogits + r * V;
    float l = lse[r];
    int64_t v0 = 0;
#ifdef TFM_AVX2_ONLY
    const __m256 lv = _mm256_set1_ps(l), sv = _mm256_set1_ps(scale), mv = _mm256_set1_ps(smooth);
    for (; v0 + 8 <= V; v0 += 8) {
        const __m256 e = tfm_expf8(_mm256_sub_ps(_mm256_loadu_ps(x + v0), lv));
        _mm256_storeu_ps(dx + v0, _mm256_add_ps(_mm256_loadu_ps(dx + v0),
                                                _mm256_mul_ps(sv, _mm256_sub_ps(e, mv))));
    }
#endif
#pragma omp simd
    for (int64_t v = v0; v < V; v++) dx[v] += scale * (tfm_expf(x[v] - l) - smooth);
    dx[y] -= scale * (1.0f - eps);
}

void tfm_k_xent_backward(float *dlogits, const float *logits, const float *lse,
                         const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                         float eps, float scale) {
    TFM_PAR_FOR(tfm_par_worth(N * V),
                for (int64_t r = 0; r < N; r++) xent_backward_row(dlogits, logits, lse, targets, V,
                                                                  ignore_index, eps, scale, r));
}

/* The terms in 8 lanes (term i in lane i mod 8), then the lanes pairwise:
 * a fixed order, whatever the compiler vectorizes. */
float tfm_k_log_sum_exp(const float *x, int64_t n, float mx) {
    enum { L = 8 };
    double acc[L] = {0};
    int64_t i = 0;
#ifdef TFM_AVX2_ONLY
    {
        const __m256 m = _mm256_set1_ps(mx);
        __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
        for (; i + L <= n; i += L) {
            const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), m);
            a0 = _mm256_add_pd(a0, tfm_exp_nonpos4(_mm256_cvtps_pd(_mm256_castps256_ps128(d))));
            a1 = _mm256_add_pd(a1, tfm_exp_nonpos4(_mm256_cvtps_pd(_mm256_extractf128_ps(d, 1))));
        }
        _mm256_storeu_pd(acc, a0);
        _mm256_storeu_pd(acc + 4, a1);
    }
#endif
    for (; i + L <= n; i += L)
        for (int j = 0; j < L; j++) acc[j] += tfm_exp_nonpos((double)(x[i + j] - mx));
    for (int j = 0; i < n; i++, j++) acc[j] += tfm_exp_nonpos((double)(x[i] - mx));
    double sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    return mx + (float)log(sum);
}
