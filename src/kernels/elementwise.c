/* Elementwise kernels, dropout, softmax, embedding, reductions, Adam.
 * Each forward sits above its backward; backward kernels accumulate. */
#include <math.h>
#include <string.h>

#include "../util/par.h"
#include "kernels_internal.h"
#include "tfm/kernels.h"

void tfm_k_add(float *y, const float *a, const float *b, int64_t n) {
    TFM_PAR_FOR(tfm_par_worth(n), for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i]);
}

void tfm_k_axpy(float *y, float alpha, const float *x, int64_t n) {
    TFM_PAR_FOR(tfm_par_worth(n), for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i]);
}

void tfm_k_mul(float *y, const float *a, const float *b, int64_t n) {
    TFM_PAR_FOR(tfm_par_worth(n), for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i]);
}

void tfm_k_scale(float *y, const float *x, float alpha, int64_t n) {
    TFM_PAR_FOR(tfm_par_worth(n), for (int64_t i = 0; i < n; i++) y[i] = alpha * x[i]);
}

static void add_row(float *y, const float *x, const float *bias, int64_t cols) {
    for (int64_t c = 0; c < cols; c++) y[c] = x[c] + bias[c];
}

void tfm_k_add_bias(float *y, const float *x, const float *bias, int64_t rows, int64_t cols) {
    TFM_PAR_FOR(tfm_par_worth(rows * cols),
                for (int64_t r = 0; r < rows; r++) add_row(y + r * cols, x + r * cols, bias, cols));
}

/* Column sums, parallel over blocks of columns so that each output is summed
 * by one thread in row order: the result does not depend on the thread count. */
enum { COLSUM_BLK = 64 };
static void colsum_block(float *dbias, const float *dy, int64_t rows, int64_t cols, int64_t blk) {
    int64_t c0 = blk * COLSUM_BLK, c1 = c0 + COLSUM_BLK < cols ? c0 + COLSUM_BLK : cols;
    float acc[COLSUM_BLK] = {0};
    for (int64_t r = 0; r < rows; r++) {
        const float *row = dy + r * cols;
        for (int64_t c = c0; c < c1; c++) acc[c - c0] += row[c];
    }
    for (int64_t c = c0; c < c1; c++) dbias[c] += acc[c - c0];
}

void tfm_k_colsum_acc(float *dbias, const float *dy, int64_t rows, int64_t cols) {
    int64_t nblk = (cols + COLSUM_BLK - 1) / COLSUM_BLK;
    TFM_PAR_FOR(tfm_par_worth(rows * cols),
                for (int64_t blk = 0; blk < nblk; blk++) colsum_block(dbias, dy, rows, cols, blk));
}

void tfm_k_relu_forward(float *y, const float *x, int64_t n) {
    TFM_PAR_FOR(tfm_par_worth(n), for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f);
}

/* d relu(x)/dx = [x > 0] = [y > 0] */
void tfm_k_relu_backward(float *dx, const float *dy, const float *y, int64_t n) {
    TFM_PAR_FOR(tfm_par_worth(n),
                for (int64_t i = 0; i < n; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f);
}

/* Element i is kept when its 16 bits of the hash of (key, i / 4) pass
 * (tfm_dropout_keep); out = in * keep / (1 - p), or out += that when acc.
 * Per element with AVX-512, 16 at a time (four hashes) with AVX2, per group
 * of four elsewhere (tfm_dropout_span says why); the same mask either way. */
#if defined(__AVX512DQ__)
static inline void dropout_range(float *out, const float *in, int64_t n, uint64_t key, uint32_t th,
                                 float keep_scale, int acc) {
    if (acc)
        TFM_PAR_FOR(tfm_par_worth(n),
                    for (int64_t i = 0; i < n; i++) out[i] +=
                    tfm_dropout_keep(key, (uint64_t)i, th) ? in[i] * keep_scale : 0.0f);
    else
        TFM_PAR_FOR(tfm_par_worth(n),
                    for (int64_t i = 0; i < n; i++) out[i] =
                        tfm_dropout_keep(key, (uint64_t)i, th) ? in[i] * keep_scale : 0.0f);
}
#elif defined(TFM_AVX2_ONLY)
static inline void dropout_range(float *out, const float *in, int64_t n, uint64_t key, uint32_t th,
                                 float keep_scale, int acc) {
    const int64_t blocks = n / 16; /* of 16 elements, four hashes */
    TFM_PAR_FOR(tfm_par_worth(n), for (int64_t q = 0; q < blocks; q++)
                                      tfm_dropout16(out, in, q, key, th, keep_scale, acc));
    for (int64_t g = 4 * blocks; g < (n + 3) / 4; g++)
        tfm_dropout_group(out, in, g, n, key, th, keep_scale, acc);
}
#else
static inline void dropout_range(float *out, const float *in, int64_t n, uint64_t key, uint32_t th,
                                 float keep_scale, int acc) {
    int64_t groups = (n + 3) / 4;
    TFM_PAR_FOR(tfm_par_worth(n), for (int64_t g = 0; g < groups; g++)
                                      tfm_dropout_group(out, in, g, n, key, th, keep_scale, acc));
}
#endif

void tfm_k_dropout_forward(float *y, const float *x, int64_t n, float p, uint64_t key) {
    dropout_range(y, x, n, key, tfm_dropout_threshold(p), 1.0f / (1.0f - p), 0);
}

/* dx = dy * keep / (1 - p), with the mask regenerated from (key, i) */
void tfm_k_dropout_backward(float *dx, const float *dy, int64_t n, float p, uint64_t key) {
    dropout_range(dx, dy, n, key, tfm_dropout_threshold(p), 1.0f / (1.0f - p), 1);
}

static void softmax_row(float *y, const float *x, int64_t cols) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < cols; j++) mx = x[j] > mx ? x[j] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < cols; j++) {
        y[j] = tfm_expf(x[j] - mx);
        sum += y[j];
    }
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < cols; j++) y[j] *= inv;
}

void tfm_k_softmax_forward(float *y, const float *x, int64_t rows, int64_t cols) {
    TFM_PAR_FOR(tfm_par_worth(rows * cols),
                for (int64_t r = 0; r < rows; r++) softmax_row(y + r * cols, x + r * cols, cols));
}

/* dx_j = y_j (dy_j - sum_k dy_k y_k) */
static void softmax_backward_row(float *dxr, const float *dyr, const float *yr, int64_t cols) {
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < cols; j++) dot += dyr[j] * yr[j];
    for (int64_t j = 0; j < cols; j++) dxr[j] += yr[j] * (dyr[j] - dot);
}

void tfm_k_softmax_backward(float *dx, const float *dy, const float *y, int64_t rows,
                            int64_t cols) {
    TFM_PAR_FOR(tfm_par_worth(rows * cols), for (int64_t r = 0; r < rows; r++) softmax_backward_row(
                                                dx + r * cols, dy + r * cols, y + r * cols, cols));
}

static void scaled_copy(float *out, const float *row, int64_t dim, float scale) {
    for (int64_t j = 0; j < dim; j++) out[j] = scale * row[j];
}

void tfm_k_embedding_forward(float *y, const float *table, const int32_t *ids, int64_t n,
                             int64_t dim, float scale) {
    TFM_PAR_FOR(tfm_par_worth(n * dim),
                for (int64_t i = 0; i < n; i++)
                    scaled_copy(y + i * dim, table + (int64_t)ids[i] * dim, dim, scale));
}

/* d table[v, :] = scale * sum_{i: ids[i] == v} dy[i, :]; parallel over column
 * blocks, tokens in order, so sums do not depend on the thread count. */
enum { EMB_BLK = 32 };
static void embedding_backward_block(float *dtable, const float *dy, const int32_t *ids, int64_t n,
                                     int64_t dim, float scale, int32_t pad_id, int64_t blk) {
    int64_t c0 = blk * EMB_BLK, c1 = c0 + EMB_BLK < dim ? c0 + EMB_BLK : dim;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] == pad_id) continue;
        float *dst = dtable + (int64_t)ids[i] * dim;
        const float *src = dy + i * dim;
        for (int64_t c = c0; c < c1; c++) dst[c] += scale * src[c];
    }
}

void tfm_k_embedding_backward(float *dtable, const float *dy, const int32_t *ids, int64_t n,
                              int64_t dim, float scale, int32_t pad_id) {
    int64_t nblk = (dim + EMB_BLK - 1) / EMB_BLK;
    TFM_PAR_FOR(tfm_par_worth(n * dim),
                for (int64_t blk = 0; blk < nblk; blk++)
                    embedding_backward_block(dtable, dy, ids, n, dim, scale, pad_id, blk));
}

/* Deterministic sums: fixed chunks (independent of the thread count), each
 * summed in double over SUM_LANES interleaved partial sums (element i goes to
 * lane i % SUM_LANES, so the loop vectorizes instead of waiting on one add
 * chain), the lanes and then the chunk sums added in a fixed order. */
#define SUM_CHUNKS 64
#define SUM_LANES 16
/* chunk c of x[0..n) in chunks of `chunk` */
static double sumsq_chunk(const float *x, int64_t n, int64_t chunk, int c) {
    int64_t i0 = c * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
    double lane[SUM_LANES] = {0};
    int64_t i = i0;
    for (; i + SUM_LANES <= i1; i += SUM_LANES)
        for (int l = 0; l < SUM_LANES; l++) lane[l] += (double)x[i + l] * x[i + l];
    for (int l = 0; i < i1; i++, l++) lane[l] += (double)x[i] * x[i];
    double s = 0;
    for (int l = 0; l < SUM_LANES; l++) s += lane[l];
    return s;
}

double tfm_k_sumsq(const float *x, int64_t n) {
    double part[SUM_CHUNKS] = {0};
    int64_t chunk = (n + SUM_CHUNKS - 1) / SUM_CHUNKS;
    chunk = (chunk + SUM_LANES - 1) / SUM_LANES * SUM_LANES; /* chunks start on a lane boundary */
    TFM_PAR_FOR(tfm_par_worth(n),
                for (int c = 0; c < SUM_CHUNKS; c++) part[c] = sumsq_chunk(x, n, chunk, c));
    double total = 0;
    for (int c = 0; c < SUM_CHUNKS; c++) total += part[c];
    return total;
}

int64_t tfm_k_count_nonfinite(const float *x, int64_t n) {
    int64_t bad = 0;
    TFM_PAR_FOR_CL(tfm_par_worth(n), reduction(+ : bad),
                   for (int64_t i = 0; i < n; i++) bad += !isfinite(x[i]));
    return bad;
}

/* Adam with bias correction, decoupled weight decay (AdamW) when wd > 0:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + lr * wd * p        */
typedef struct {
    float beta1, beta2, eps, step, inv_sqrt_bc2, decay;
} adam_consts;

static void adam_one(float *p, const float *g, float *m, float *v, adam_consts c, int64_t i) {
    float gi = g[i];
    float mi = c.beta1 * m[i] + (1.0f - c.beta1) * gi;
    float vi = c.beta2 * v[i] + (1.0f - c.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= c.step * mi / (sqrtf(vi) * c.inv_sqrt_bc2 + c.eps) + c.decay * p[i];
}

void tfm_k_adam(float *p, const float *g, float *m, float *v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t t) {
    TFM_ASSERT(t >= 1, "Adam step %lld: steps count from 1", (long long)t);
    float bc1 = (float)(1.0 - pow((double)beta1, (double)t));
    float bc2 = (float)(1.0 - pow((double)beta2, (double)t));
    const adam_consts c = {beta1, beta2, eps, lr / bc1, 1.0f / sqrtf(bc2), lr * weight_decay};
    TFM_PAR_FOR(tfm_par_worth(n), for (int64_t i = 0; i < n; i++) adam_one(p, g, m, v, c, i));
}
