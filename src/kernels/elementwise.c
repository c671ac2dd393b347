/* Elementwise kernels, dropout, softmax, embedding, reductions, Adam.
 * Each forward sits above its backward; backward kernels accumulate. */
#include <math.h>
#include <string.h>

#include "kernels_internal.h"
#include "tfm/kernels.h"

#define PAR(n) if ((n) > TFM_PAR_MIN_WORK)

void tfm_k_add(float *y, const float *a, const float *b, int64_t n) {
#pragma omp parallel for schedule(static) PAR(n)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void tfm_k_axpy(float *y, float alpha, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) PAR(n)
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

void tfm_k_mul(float *y, const float *a, const float *b, int64_t n) {
#pragma omp parallel for schedule(static) PAR(n)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}

void tfm_k_scale(float *y, const float *x, float alpha, int64_t n) {
#pragma omp parallel for schedule(static) PAR(n)
    for (int64_t i = 0; i < n; i++) y[i] = alpha * x[i];
}

void tfm_k_add_bias(float *y, const float *x, const float *bias, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) PAR(rows *cols)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) y[r * cols + c] = x[r * cols + c] + bias[c];
}

/* Column sums, parallel over blocks of columns so that each output is summed
 * by one thread in row order: the result does not depend on the thread count. */
void tfm_k_colsum_acc(float *dbias, const float *dy, int64_t rows, int64_t cols) {
    enum { BLK = 64 };
    int64_t nblk = (cols + BLK - 1) / BLK;
#pragma omp parallel for schedule(static) PAR(rows *cols)
    for (int64_t blk = 0; blk < nblk; blk++) {
        int64_t c0 = blk * BLK, c1 = c0 + BLK < cols ? c0 + BLK : cols;
        float acc[BLK] = {0};
        for (int64_t r = 0; r < rows; r++) {
            const float *row = dy + r * cols;
            for (int64_t c = c0; c < c1; c++) acc[c - c0] += row[c];
        }
        for (int64_t c = c0; c < c1; c++) dbias[c] += acc[c - c0];
    }
}

void tfm_k_relu_forward(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) PAR(n)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* d relu(x)/dx = [x > 0] = [y > 0] */
void tfm_k_relu_backward(float *dx, const float *dy, const float *y, int64_t n) {
#pragma omp parallel for schedule(static) PAR(n)
    for (int64_t i = 0; i < n; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
}

void tfm_k_dropout_forward(float *y, const float *x, int64_t n, float p, uint64_t key) {
    float keep_scale = 1.0f / (1.0f - p);
    uint32_t th = tfm_dropout_threshold(p);
#pragma omp parallel for schedule(static) PAR(n)
    for (int64_t i = 0; i < n; i++)
        y[i] = tfm_dropout_keep(key, (uint64_t)i, th) ? x[i] * keep_scale : 0.0f;
}

/* dx = dy * keep / (1 - p), with the mask regenerated from (key, i) */
void tfm_k_dropout_backward(float *dx, const float *dy, int64_t n, float p, uint64_t key) {
    float keep_scale = 1.0f / (1.0f - p);
    uint32_t th = tfm_dropout_threshold(p);
#pragma omp parallel for schedule(static) PAR(n)
    for (int64_t i = 0; i < n; i++)
        dx[i] += tfm_dropout_keep(key, (uint64_t)i, th) ? dy[i] * keep_scale : 0.0f;
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
#pragma omp parallel for schedule(static) PAR(rows *cols)
    for (int64_t r = 0; r < rows; r++) softmax_row(y + r * cols, x + r * cols, cols);
}

/* dx_j = y_j (dy_j - sum_k dy_k y_k) */
void tfm_k_softmax_backward(float *dx, const float *dy, const float *y, int64_t rows,
                            int64_t cols) {
#pragma omp parallel for schedule(static) PAR(rows *cols)
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *dyr = dy + r * cols;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < cols; j++) dot += dyr[j] * yr[j];
        float *dxr = dx + r * cols;
        for (int64_t j = 0; j < cols; j++) dxr[j] += yr[j] * (dyr[j] - dot);
    }
}

void tfm_k_embedding_forward(float *y, const float *table, const int32_t *ids, int64_t n,
                             int64_t dim, float scale) {
#pragma omp parallel for schedule(static) PAR(n *dim)
    for (int64_t i = 0; i < n; i++) {
        const float *row = table + (int64_t)ids[i] * dim;
        float *out = y + i * dim;
        for (int64_t j = 0; j < dim; j++) out[j] = scale * row[j];
    }
}

/* d table[v, :] = scale * sum_{i: ids[i] == v} dy[i, :]; parallel over column
 * blocks, tokens in order, so sums do not depend on the thread count. */
void tfm_k_embedding_backward(float *dtable, const float *dy, const int32_t *ids, int64_t n,
                              int64_t dim, float scale, int32_t pad_id) {
    enum { BLK = 32 };
    int64_t nblk = (dim + BLK - 1) / BLK;
#pragma omp parallel for schedule(static) PAR(n *dim)
    for (int64_t blk = 0; blk < nblk; blk++) {
        int64_t c0 = blk * BLK, c1 = c0 + BLK < dim ? c0 + BLK : dim;
        for (int64_t i = 0; i < n; i++) {
            if (ids[i] == pad_id) continue;
            float *dst = dtable + (int64_t)ids[i] * dim;
            const float *src = dy + i * dim;
            for (int64_t c = c0; c < c1; c++) dst[c] += scale * src[c];
        }
    }
}

/* Deterministic sums: fixed chunks (independent of the thread count), each
 * summed in double over SUM_LANES interleaved partial sums (element i goes to
 * lane i % SUM_LANES, so the loop vectorizes instead of waiting on one add
 * chain), the lanes and then the chunk sums added in a fixed order. */
#define SUM_CHUNKS 64
#define SUM_LANES 16
double tfm_k_sumsq(const float *x, int64_t n) {
    double part[SUM_CHUNKS] = {0};
    int64_t chunk = (n + SUM_CHUNKS - 1) / SUM_CHUNKS;
    chunk = (chunk + SUM_LANES - 1) / SUM_LANES * SUM_LANES; /* chunks start on a lane boundary */
#pragma omp parallel for schedule(static) PAR(n)
    for (int c = 0; c < SUM_CHUNKS; c++) {
        int64_t i0 = c * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
        double lane[SUM_LANES] = {0};
        int64_t i = i0;
        for (; i + SUM_LANES <= i1; i += SUM_LANES)
            for (int l = 0; l < SUM_LANES; l++) lane[l] += (double)x[i + l] * x[i + l];
        for (int l = 0; i < i1; i++, l++) lane[l] += (double)x[i] * x[i];
        double s = 0;
        for (int l = 0; l < SUM_LANES; l++) s += lane[l];
        part[c] = s;
    }
    double total = 0;
    for (int c = 0; c < SUM_CHUNKS; c++) total += part[c];
    return total;
}

int64_t tfm_k_count_nonfinite(const float *x, int64_t n) {
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) PAR(n)
    for (int64_t i = 0; i < n; i++) bad += !isfinite(x[i]);
    return bad;
}

/* Adam with bias correction, decoupled weight decay (AdamW) when wd > 0:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + lr * wd * p        */
void tfm_k_adam(float *p, const float *g, float *m, float *v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t t) {
    TFM_ASSERT(t >= 1, "Adam step %lld: steps count from 1", (long long)t);
    float bc1 = (float)(1.0 - pow((double)beta1, (double)t));
    float bc2 = (float)(1.0 - pow((double)beta2, (double)t));
    float step = lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2), decay = lr * weight_decay;
#pragma omp parallel for schedule(static) PAR(n)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps) + decay * p[i];
    }
}
