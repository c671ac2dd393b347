/* Fused multi-head scaled dot-product attention, forward and backward, one
 * (batch, head) pair per task: the scores, masks, softmax and dropout of a
 * head never leave that task. GEMMs run on the calling thread inside the
 * parallel region. */
#include <math.h>
#include <string.h>

#include "../util/par.h"
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

/* One row of scores (Tk) -> masked softmax in place: keys at or after
 * `visible` and padded keys get 0; a row with no visible key is all zeros.
 * From 16 visible keys on, the max by 8 running maxima and the exponentials
 * side by side (both vectorize; the max is the same value in any order, NaN
 * passed over; the padded keys' exponentials are computed and then zeroed),
 * the sum in key order. */
static void masked_softmax_row(float *row, int64_t Tk, int64_t visible, const uint8_t *pad) {
    enum { L = 8 };
    if (visible < 2 * L) { /* short rows (decoding's): one pass costs less, same values */
        float mx = -INFINITY;
        for (int64_t j = 0; j < visible; j++)
            if (!(pad && pad[j]) && row[j] > mx) mx = row[j];
        if (mx == -INFINITY) {
            memset(row, 0, (size_t)Tk * sizeof(float));
            return;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < visible; j++) {
            float e = (pad && pad[j]) ? 0.0f : tfm_expf(row[j] - mx);
            row[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < visible; j++) row[j] *= inv;
        for (int64_t j = visible; j < Tk; j++) row[j] = 0.0f;
        return;
    }
    float acc[L];
    for (int j = 0; j < L; j++) acc[j] = -INFINITY;
    int64_t j0 = 0;
    if (pad) {
        for (; j0 + L <= visible; j0 += L)
            for (int j = 0; j < L; j++)
                acc[j] = !pad[j0 + j] && row[j0 + j] > acc[j] ? row[j0 + j] : acc[j];
        for (int j = 0; j0 < visible; j0++, j++)
            acc[j] = !pad[j0] && row[j0] > acc[j] ? row[j0] : acc[j];
    } else {
        for (; j0 + L <= visible; j0 += L)
            for (int j = 0; j < L; j++) acc[j] = row[j0 + j] > acc[j] ? row[j0 + j] : acc[j];
        for (int j = 0; j0 < visible; j0++, j++) acc[j] = row[j0] > acc[j] ? row[j0] : acc[j];
    }
    float mx = acc[0];
    for (int j = 1; j < L; j++) mx = acc[j] > mx ? acc[j] : mx;
    if (mx == -INFINITY) {
        memset(row, 0, (size_t)Tk * sizeof(float));
        return;
    }
    int64_t j1 = 0;
#ifdef TFM_AVX2_ONLY
    for (const __m256 m = _mm256_set1_ps(mx); j1 + 8 <= visible; j1 += 8)
        _mm256_storeu_ps(row + j1, tfm_expf8(_mm256_sub_ps(_mm256_loadu_ps(row + j1), m)));
#endif
#pragma omp simd
    for (int64_t j = j1; j < visible; j++) row[j] = tfm_expf(row[j] - mx);
    for (int64_t j = 0; pad && j < visible; j++) row[j] = pad[j] ? 0.0f : row[j];
    float sum = 0.0f;
    for (int64_t j = 0; j < visible; j++) sum += row[j];
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < visible; j++) row[j] *= inv;
    for (int64_t j = visible; j < Tk; j++) row[j] = 0.0f;
}

/* Scores -> masked softmax in place, row by row. */
static void masked_softmax(float *p, const tfm_attn_shape *s, int64_t b) {
    const uint8_t *pad = s->key_pad ? s->key_pad + b * s->Tk : NULL;
    for (int64_t i = 0; i < s->Tq; i++) {
        int64_t visible = s->causal ? i + s->q_offset + 1 : s->Tk;
        if (visible > s->Tk) visible = s->Tk;
        masked_softmax_row(p + i * s->Tk, s->Tk, visible, pad);
    }
}

static void dropout_probs(float *dst, const float *src, int64_t n, float p, uint64_t key) {
    tfm_dropout_span(dst, src, n, key, tfm_dropout_threshold(p), 1.0f / (1.0f - p));
}

/* The scratch of this thread: its slot in a parallel region (par), else
 * slot 0 (the caller may be a thread of its own region, with its own
 * scratch). */
static float *scratch_slot(float *scratch, int par, int64_t per_thread) {
    return scratch + (par ? (int64_t)thread_id() : 0) * per_thread;
}

/* S = Q K^T / sqrt(dh); P = softmax(mask(S)); out = dropout(P) V, for head h of sequence b */
static void forward_head(float *out, float *probs, const float *q, const float *k, const float *v,
                         const tfm_attn_shape *s, float *scratch, int par, int64_t b, int64_t h) {
    const int64_t H = s->H, Tq = s->Tq, Tk = s->Tk, D = s->D, dh = D / H;
    const float scale = 1.0f / sqrtf((float)dh);
    const int64_t tile = Tq * Tk;
    float *mine = scratch_slot(scratch, par, 2 * tile);
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

void tfm_k_attention_forward(float *out, float *probs, const float *q, const float *k,
                             const float *v, const tfm_attn_shape *s, float *scratch) {
    const int64_t B = s->B, H = s->H;
    int par = B * H > 1 && tfm_par_worth(B * H * s->Tq * s->Tk * (s->D / H));
    TFM_PAR_FOR(par, for (int64_t bh = 0; bh < B * H; bh++)
                         forward_head(out, probs, q, k, v, s, scratch, par, bh / H, bh % H));
}

/* With Pd = dropout(P):
 *   dV += Pd^T dO;  dPd = dO V^T;  dP = dPd * keep / (1-p)
 *   dS = P * (dP - rowsum(dP * P)) / sqrt(dh)
 *   dQ += dS K;  dK += dS^T Q   (head h of sequence b)                     */
static void backward_head(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                          const float *q, const float *k, const float *v, const tfm_attn_shape *s,
                          float *scratch, int par, int64_t b, int64_t h) {
    const int64_t H = s->H, Tq = s->Tq, Tk = s->Tk, D = s->D, dh = D / H;
    const float scale = 1.0f / sqrtf((float)dh);
    const int64_t tile = Tq * Tk;
    const float p_drop = s->dropout_p;
    float *dp = scratch_slot(scratch, par, 2 * tile);
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
    /* through the forward's mask (element i * Tk + j of the tile) */
    if (p_drop > 0.0f) dropout_probs(dp, dp, tile, p_drop, key);
    for (int64_t i = 0; i < Tq; i++) {
        float *dpr = dp + i * Tk;
        const float *pr = p + i * Tk;
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

void tfm_k_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                              const float *probs, const float *q, const float *k, const float *v,
                              const tfm_attn_shape *s, float *scratch) {
    const int64_t B = s->B, H = s->H;
    int par = B * H > 1 && tfm_par_worth(B * H * s->Tq * s->Tk * (s->D / H));
    TFM_PAR_FOR(par, for (int64_t bh = 0; bh < B * H; bh++) backward_head(
                         dq, dk, dv, dout, probs, q, k, v, s, scratch, par, bh / H, bh % H));
}

/* ---- decoding: one query per row, keys and values gathered ------------------ */

/* The GEMM's summation order (tfm_gemm, GEMM_KC = 256): per output element a
 * fused-multiply-add chain over k from 0 within each block of 256, the first
 * block giving alpha * acc and each later one fma(alpha, acc, c). Reproducing
 * it here makes decoding give exactly the numbers of tfm_attention. */
#define DECODE_KC 256

/* Per thread: offsets (2 Tk floats' room for Tk int64), scores or sums
 * (max(Tk, dh)), own weights (Tk), a head's keys or values (dh x Tk); a
 * multiple of 16 floats so that each thread's offsets stay 64-byte aligned. */
static int64_t decode_floats_per_thread(int64_t Tk, int64_t dh) {
    int64_t n = 2 * Tk + (Tk > dh ? Tk : dh) + Tk + dh * Tk + 64;
    return (n + 15) / 16 * 16;
}

int64_t tfm_attention_decode_scratch_floats(const tfm_attn_gather *s) {
    return (int64_t)tfm_num_threads() * decode_floats_per_thread(s->Tk, s->D / s->H);
}

/* bf16: the head's keys and then its values gathered into rows (Tk, dh), and
 * the two GEMMs of tfm_k_attention_forward with Tq = 1 (tfm_gemm_bf16 gives
 * each element the same value whatever M is). */
static void decode_head_bf16(float *o, float *p, const float *qh, const float *kh, const float *vh,
                             const int64_t *off, int64_t Tk, int64_t dh, float scale,
                             const uint8_t *pad, float *rows) {
    /* positions equally spaced (the cross-attention's keys, a cache without
     * reordered slots): the GEMMs read them in place, the same numbers */
    int64_t step = Tk > 1 ? off[1] - off[0] : dh;
    int even = step >= dh;
    for (int64_t j = 2; even && j < Tk; j++) even = off[j] - off[j - 1] == step;
    if (even) {
        tfm_gemm_bf16(0, 1, 1, Tk, dh, scale, qh, dh, kh + off[0], step, 0.0f, p, Tk);
        masked_softmax_row(p, Tk, Tk, pad);
        tfm_gemm_bf16(0, 0, 1, dh, Tk, 1.0f, p, Tk, vh + off[0], step, 0.0f, o, dh);
        return;
    }
    for (int64_t j = 0; j < Tk; j++) memcpy(rows + j * dh, kh + off[j], (size_t)dh * sizeof(float));
    tfm_gemm_bf16(0, 1, 1, Tk, dh, scale, qh, dh, rows, dh, 0.0f, p, Tk);
    masked_softmax_row(p, Tk, Tk, pad);
    for (int64_t j = 0; j < Tk; j++) memcpy(rows + j * dh, vh + off[j], (size_t)dh * sizeof(float));
    tfm_gemm_bf16(0, 0, 1, dh, Tk, 1.0f, p, Tk, rows, dh, 0.0f, o, dh);
}

/* kt[kk * Tk + j] = k[off[j] + kk] for j < Tk, kk < kc: the keys at their
 * gathered offsets, transposed. AVX-512: 16 keys x 16 steps at a time through
 * registers; the keys past the last multiple of 16 one by one. */
static void keys_transposed(float *kt, const float *k, const int64_t *off, int64_t Tk,
                            int64_t kc) {
    int64_t j0 = 0;
#if defined(__AVX512F__)
    for (; j0 + 16 <= Tk; j0 += 16)
        for (int64_t k0 = 0; k0 < kc; k0 += 16) {
            int64_t kk = kc - k0 < 16 ? kc - k0 : 16;
            __mmask16 mk = kk == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << kk) - 1);
            __m512 v[16];
            for (int i = 0; i < 16; i++) v[i] = _mm512_maskz_loadu_ps(mk, k + off[j0 + i] + k0);
            transpose16(v);
            for (int64_t r = 0; r < kk; r++) _mm512_storeu_ps(kt + (k0 + r) * Tk + j0, v[r]);
        }
#elif defined(TFM_AVX2_ONLY)
    for (; j0 + 8 <= Tk; j0 += 8)
        for (int64_t k0 = 0; k0 < kc; k0 += 8) {
            int64_t kk = kc - k0 < 8 ? kc - k0 : 8;
            const __m256i mk = lanes_below(kk);
            __m256 v[8];
            for (int i = 0; i < 8; i++) v[i] = _mm256_maskload_ps(k + off[j0 + i] + k0, mk);
            transpose8(v);
            for (int64_t r = 0; r < kk; r++) _mm256_storeu_ps(kt + (k0 + r) * Tk + j0, v[r]);
        }
#endif
    for (int64_t j = j0; j < Tk; j++) {
        const float *kj = k + off[j];
        for (int64_t kk = 0; kk < kc; kk++) kt[kk * Tk + j] = kj[kk];
    }
}

/* S_j = q . k_j / sqrt(dh); P = masked softmax(S); out = sum_j P_j v_j, head
 * by head, with k_j and v_j at the row's gathered offsets. The keys of a head
 * are first copied transposed (kc x Tk, as the GEMM packs them) so that the
 * score chains run side by side in vector lanes, unless the caller gives
 * them transposed (keys_t: a source's cross-attention keys, once for all its
 * rows and steps). */
static void decode_row(float *out, float *probs, const float *q, const float *k, const float *v,
                       const tfm_attn_gather *s, float *scratch, int par, int64_t r) {
    const int64_t H = s->H, Tk = s->Tk, D = s->D, dh = D / H;
    const float scale = 1.0f / sqrtf((float)dh);
    const int64_t per_thread = decode_floats_per_thread(Tk, dh);
    float *mine = scratch_slot(scratch, par, per_thread);
    int64_t *off = (int64_t *)(void *)mine; /* (Tk) offsets of position j */
    float *acc = mine + 2 * Tk;             /* (Tk) scores, or (dh) sums */
    float *p_own = acc + (Tk > dh ? Tk : dh);
    float *kt = p_own + Tk; /* (kc, Tk) transposed keys of one head (fp32) */
    int64_t g = s->group ? s->group[r] : 0;
    const uint8_t *pad = s->key_pad ? s->key_pad + g * Tk : NULL;
    const int32_t *slot = s->slot ? s->slot + r * s->slot_ld : NULL;
    for (int64_t j = 0; j < Tk; j++)
        off[j] = g * s->group_stride + j * s->pos_stride + (slot ? (int64_t)slot[j] * D : 0);
    for (int64_t h = 0; h < H; h++) {
        const float *qh = q + r * D + h * dh;
        const float *kh = k + h * dh, *vh = v + h * dh;
        float *p = probs ? probs + (r * H + h) * Tk : p_own;
        if (s->precision == TFM_BF16) {
            decode_head_bf16(out + r * D + h * dh, p, qh, kh, vh, off, Tk, dh, scale, pad, kt);
            continue;
        }
        const float *kt_given = s->keys_t ? s->keys_t + (g * H + h) * dh * Tk : NULL;
        for (int64_t k0 = 0; k0 < dh; k0 += DECODE_KC) {
            int64_t kc = dh - k0 < DECODE_KC ? dh - k0 : DECODE_KC;
            const float *ktc = kt_given ? kt_given + k0 * Tk : kt;
            if (!kt_given) keys_transposed(kt, kh + k0, off, Tk, kc);
            for (int64_t j = 0; j < Tk; j++) acc[j] = 0.0f;
            for (int64_t kk = 0; kk < kc; kk++) {
                const float qk = qh[k0 + kk], *row = ktc + kk * Tk;
#pragma omp simd
                for (int64_t j = 0; j < Tk; j++) acc[j] = fmaf(qk, row[j], acc[j]);
            }
            for (int64_t j = 0; j < Tk; j++)
                p[j] = k0 == 0 ? scale * acc[j] : fmaf(scale, acc[j], p[j]);
        }
        masked_softmax_row(p, Tk, Tk, pad);
        float *o = out + r * D + h * dh;
        for (int64_t j0 = 0; j0 < Tk; j0 += DECODE_KC) {
            int64_t j1 = j0 + DECODE_KC < Tk ? j0 + DECODE_KC : Tk;
            for (int64_t n = 0; n < dh; n++) acc[n] = 0.0f;
            for (int64_t j = j0; j < j1; j++) {
                const float *vj = vh + off[j];
                const float pj = p[j];
#pragma omp simd
                for (int64_t n = 0; n < dh; n++) acc[n] = fmaf(pj, vj[n], acc[n]);
            }
            for (int64_t n = 0; n < dh; n++)
                o[n] = j0 == 0 ? 1.0f * acc[n] : fmaf(1.0f, acc[n], o[n]);
        }
    }
}

void tfm_k_attention_decode(float *out, float *probs, const float *q, const float *k,
                            const float *v, const tfm_attn_gather *s, float *scratch) {
    const int64_t R = s->rows;
    int par = R > 1 && tfm_par_worth(R * s->Tk * s->D);
    TFM_PAR_FOR(par, for (int64_t r = 0; r < R; r++)
                         decode_row(out, probs, q, k, v, s, scratch, par, r));
}
