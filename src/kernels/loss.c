/* Softmax + label-smoothed cross-entropy over the vocabulary, fused: only
 * the log-sum-exp of each row is saved; backward recomputes the softmax
 * straight into the logits' gradient. */
#include <math.h>

#include "../util/par.h"
#include "kernels_internal.h"
#include "tfm/kernels.h"

#define ROW_CHUNKS 64

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
#pragma omp simd reduction(+ : se)
        for (int64_t v = 0; v < V; v++) se += tfm_expf(x[v] - mx);
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
#pragma omp simd
    for (int64_t v = 0; v < V; v++) dx[v] += scale * (tfm_expf(x[v] - l) - smooth);
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
    for (; i + L <= n; i += L)
        for (int j = 0; j < L; j++) acc[j] += tfm_exp_nonpos((double)(x[i + j] - mx));
    for (int j = 0; i < n; i++, j++) acc[j] += tfm_exp_nonpos((double)(x[i] - mx));
    double sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    return mx + (float)log(sum);
}
