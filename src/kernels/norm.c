/* Layer norm over the last dim. */
#include <math.h>

#include "../util/par.h"
#include "tfm/kernels.h"

/* y = (x - mean) * rstd * gamma + beta,  rstd = 1 / sqrt(var + eps)
 * (biased variance, as PyTorch's LayerNorm) */
static void layernorm_forward_row(float *y, float *mean, float *rstd, const float *x,
                                  const float *gamma, const float *beta, int64_t cols, float eps,
                                  int64_t r) {
    const float *xr = x + r * cols;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < cols; c++) s += xr[c];
    float mu = s / (float)cols;
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < cols; c++) {
        float d = xr[c] - mu;
        ss += d * d;
    }
    float rs = 1.0f / sqrtf(ss / (float)cols + eps);
    float *yr = y + r * cols;
    for (int64_t c = 0; c < cols; c++) yr[c] = (xr[c] - mu) * rs * gamma[c] + beta[c];
    if (mean) mean[r] = mu;
    if (rstd) rstd[r] = rs;
}

void tfm_k_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                             const float *beta, int64_t rows, int64_t cols, float eps) {
    /* about 8 flops per element: the two sums, then the normalization */
    TFM_PAR_FOR(tfm_par_worth(8 * rows * cols),
                for (int64_t r = 0; r < rows; r++)
                    layernorm_forward_row(y, mean, rstd, x, gamma, beta, cols, eps, r));
}

static void layernorm_backward_row(float *dx, const float *dy, const float *x, const float *mean,
                                   const float *rstd, const float *gamma, int64_t cols, int64_t r) {
    const float *xr = x + r * cols, *dyr = dy + r * cols;
    float mu = mean[r], rs = rstd[r];
    float sum_g = 0.0f, sum_gx = 0.0f;
#pragma omp simd reduction(+ : sum_g, sum_gx)
    for (int64_t c = 0; c < cols; c++) {
        float g = dyr[c] * gamma[c];
        sum_g += g;
        sum_gx += g * (xr[c] - mu) * rs;
    }
    float mean_g = sum_g / (float)cols, mean_gx = sum_gx / (float)cols;
    float *dxr = dx + r * cols;
    for (int64_t c = 0; c < cols; c++) {
        float xhat = (xr[c] - mu) * rs;
        dxr[c] += rs * (dyr[c] * gamma[c] - mean_g - xhat * mean_gx);
    }
}

enum { LN_BLK = 32 };
static void layernorm_params_block(float *dgamma, float *dbeta, const float *dy, const float *x,
                                   const float *mean, const float *rstd, int64_t rows, int64_t cols,
                                   int64_t blk) {
    int64_t c0 = blk * LN_BLK, c1 = c0 + LN_BLK < cols ? c0 + LN_BLK : cols;
    float ag[LN_BLK] = {0}, ab[LN_BLK] = {0};
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols, *dyr = dy + r * cols;
        float mu = mean[r], rs = rstd[r];
        for (int64_t c = c0; c < c1; c++) {
            ag[c - c0] += dyr[c] * (xr[c] - mu) * rs;
            ab[c - c0] += dyr[c];
        }
    }
    for (int64_t c = c0; c < c1; c++) {
        if (dgamma) dgamma[c] += ag[c - c0];
        if (dbeta) dbeta[c] += ab[c - c0];
    }
}

/* xhat = (x - mean) * rstd, g = dy * gamma:
 *   dx     += rstd * (g - mean_c(g) - xhat * mean_c(g * xhat))
 *   dgamma += sum_r dy * xhat,   dbeta += sum_r dy                        */
void tfm_k_layernorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                              const float *x, const float *mean, const float *rstd,
                              const float *gamma, int64_t rows, int64_t cols) {
    int par = tfm_par_worth(rows * cols);
    if (dx) {
        TFM_PAR_FOR(par, for (int64_t r = 0; r < rows; r++)
                             layernorm_backward_row(dx, dy, x, mean, rstd, gamma, cols, r));
    }
    if (dgamma || dbeta) {
        /* Column blocks, rows in order: thread-count independent sums. */
        int64_t nblk = (cols + LN_BLK - 1) / LN_BLK;
        TFM_PAR_FOR(par, for (int64_t blk = 0; blk < nblk; blk++) layernorm_params_block(
                             dgamma, dbeta, dy, x, mean, rstd, rows, cols, blk));
    }
}
