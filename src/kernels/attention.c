/* Fused multi-head scaled dot-product attention, forward and backward, one
 * (batch, head) pair per task: the scores, masks, softmax and dropout of a
 * head never leave that task. GEMMs run on the calling thread inside the
 * parallel region. */
#include <math.h>
#include <string.h>

#include "kernels_internal.h"
#include "tfm/kernels.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int64_t tfm_attention_scratch_floats(const tfm_attn_shape *s) {
    return (int64_t)tfm_num_threads() * 2 * s->Tq * s->Tk;
}

static uint64_t head_key(const tfm_attn_shape *s, int64_t b, int64_t h) {
    return tfm_hash64(s->key ^ (uint64_t)(b * s->H + h) * 0x9E3779B97F4A7C15ull);
}

/* Scores -> masked softmax in place, row by row. Masked keys get 0; a row
 * with no visible key is all zeros. */
static void masked_softmax(float *p, const tfm_attn_shape *s, int64_t b) {
    const uint8_t *pad = s->key_pad ? s->key_pad + b * s->Tk : NULL;
    for (int64_t i = 0; i < s->Tq; i++) {
        float *row = p + i * s->Tk;
        int64_t visible = s->causal ? i + s->q_offset + 1 : s->Tk;
        if (visible > s->Tk) visible = s->Tk;
        float mx = -INFINITY;
        for (int64_t j = 0; j < visible; j++)
            if (!(pad && pad[j]) && row[j] > mx) mx = row[j];
        if (mx == -INFINITY) {
            memset(row, 0, (size_t)s->Tk * sizeof(float));
            continue;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < visible; j++) {
            float e = (pad && pad[j]) ? 0.0f : tfm_expf(row[j] - mx);
            row[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < visible; j++) row[j] *= inv;
        for (int64_t j = visible; j < s->Tk; j++) row[j] = 0.0f;
    }
}

static void dropout_probs(float *dst, const float *src, int64_t n, float p, uint64_t key) {
    float keep_scale = 1.0f / (1.0f - p);
    uint32_t th = tfm_dropout_threshold(p);
    for (int64_t i = 0; i < n; i++)
        dst[i] = tfm_dropout_keep(key, (uint64_t)i, th) ? src[i] * keep_scale : 0.0f;
}

/* S = Q K^T / sqrt(dh); P = softmax(mask(S)); out = dropout(P) V */
void tfm_k_attention_forward(float *out, float *probs, const float *q, const float *k,
                             const float *v, const tfm_attn_shape *s, float *scratch) {
    const int64_t B = s->B, H = s->H, Tq = s->Tq, Tk = s->Tk, D = s->D, dh = D / H;
    const float scale = 1.0f / sqrtf((float)dh);
    const int64_t tile = Tq * Tk;
    int par = B * H > 1 && B * H * tile * dh > TFM_PAR_MIN_WORK;
#pragma omp parallel for schedule(static) collapse(2) if (par)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            float *mine = scratch + (int64_t)thread_id() * 2 * tile;
            float *p = probs ? probs + (b * H + h) * tile : mine;
            const float *qb = q + b * s->q_bs + h * dh;
            const float *kb = k + b * s->kv_bs + h * dh;
            const float *vb = v + b * s->kv_bs + h * dh;
            tfm_gemm_prec(s->precision, 0, 1, Tq, Tk, dh, scale, qb, D, kb, D, 0.0f, p, Tk);
            masked_softmax(p, s, b);
            const float *pd = p;
            if (s->dropout_p > 0.0f) {
                dropout_probs(mine + tile, p, tile, s->dropout_p, head_key(s, b, h));
                pd = mine + tile;
            }
            tfm_gemm_prec(s->precision, 0, 0, Tq, dh, Tk, 1.0f, pd, Tk, vb, D, 0.0f,
                          out + b * Tq * D + h * dh, D);
        }
}

/* With Pd = dropout(P):
 *   dV += Pd^T dO;  dPd = dO V^T;  dP = dPd * keep / (1-p)
 *   dS = P * (dP - rowsum(dP * P)) / sqrt(dh)
 *   dQ += dS K;  dK += dS^T Q                                              */
void tfm_k_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                              const float *probs, const float *q, const float *k, const float *v,
                              const tfm_attn_shape *s, float *scratch) {
    const int64_t B = s->B, H = s->H, Tq = s->Tq, Tk = s->Tk, D = s->D, dh = D / H;
    const float scale = 1.0f / sqrtf((float)dh);
    const int64_t tile = Tq * Tk;
    const float p_drop = s->dropout_p, keep_scale = 1.0f / (1.0f - p_drop);
    int par = B * H > 1 && B * H * tile * dh > TFM_PAR_MIN_WORK;
#pragma omp parallel for schedule(static) collapse(2) if (par)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            float *dp = scratch + (int64_t)thread_id() * 2 * tile;
            float *pd = dp + tile;
            const float *p = probs + (b * H + h) * tile;
            const float *qb = q + b * s->q_bs + h * dh;
            const float *kb = k + b * s->kv_bs + h * dh;
            const float *vb = v + b * s->kv_bs + h * dh;
            const float *dob = dout + b * Tq * D + h * dh;
            uint64_t key = head_key(s, b, h);
            const float *p_used = p;
            if (p_drop > 0.0f) {
                dropout_probs(pd, p, tile, p_drop, key);
                p_used = pd;
            }
            if (dv)
                tfm_gemm_prec(s->precision, 1, 0, Tk, dh, Tq, 1.0f, p_used, Tk, dob, D, 1.0f,
                              dv + b * s->kv_bs + h * dh, D);
            tfm_gemm_prec(s->precision, 0, 1, Tq, Tk, dh, 1.0f, dob, D, vb, D, 0.0f, dp, Tk);
            for (int64_t i = 0; i < Tq; i++) {
                float *dpr = dp + i * Tk;
                const float *pr = p + i * Tk;
                if (p_drop > 0.0f) {
                    uint32_t th = tfm_dropout_threshold(p_drop);
                    for (int64_t j = 0; j < Tk; j++)
                        dpr[j] = tfm_dropout_keep(key, (uint64_t)(i * Tk + j), th)
                                     ? dpr[j] * keep_scale
                                     : 0.0f;
                }
                float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int64_t j = 0; j < Tk; j++) dot += dpr[j] * pr[j];
                for (int64_t j = 0; j < Tk; j++) dpr[j] = pr[j] * (dpr[j] - dot) * scale;
            }
            if (dq)
                tfm_gemm_prec(s->precision, 0, 0, Tq, dh, Tk, 1.0f, dp, Tk, kb, D, 1.0f,
                              dq + b * s->q_bs + h * dh, D);
            if (dk)
                tfm_gemm_prec(s->precision, 1, 0, Tk, dh, Tq, 1.0f, dp, Tk, qb, D, 1.0f,
                              dk + b * s->kv_bs + h * dh, D);
        }
}
