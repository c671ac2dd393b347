/* tfm/kernels.h: pure compute kernels on float* + sizes.
 *
 * No tensors, no tape, no allocation. Row-major everywhere; the shape of each
 * pointer is written beside it. Backward kernels ACCUMULATE into their
 * gradient outputs (dx[i] += ...), so a value used twice gets the sum.
 * Every kernel is deterministic for a fixed thread count: work is split by
 * rows or columns with a static schedule, never reduced with atomics. */
#ifndef TFM_KERNELS_H
#define TFM_KERNELS_H

#include "tfm/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- GEMM ---------------------------------------------------------------
 * C = alpha * op(A) * op(B) + beta * C, where op(X) = X or X^T.
 *   A: (M, K) with row stride lda, or (K, M) when trans_a
 *   B: (K, N) with row stride ldb, or (N, K) when trans_b
 *   C: (M, N) with row stride ldc
 * beta == 0 overwrites C (NaN in C is not propagated); beta == 1 accumulates.
 * Called inside an OpenMP parallel region it runs on the calling thread. */
void tfm_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc);
/* C = alpha * op(A) * op(B) + bias, bias (N) added to every row: exactly
 * what tfm_gemm with beta = 1 gives over a C that holds the bias in each row,
 * without writing those rows first (the linear layer's forward). */
void tfm_gemm_bias(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, const float *bias,
                   float *C, int64_t ldc);
/* `batch` independent GEMMs; matrix i starts at A + i*stride_a etc. */
void tfm_gemm_batched(int trans_a, int trans_b, int64_t batch, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, int64_t stride_a, const float *B,
                      int64_t ldb, int64_t stride_b, float beta, float *C, int64_t ldc,
                      int64_t stride_c);
/* The straightforward triple loop (double accumulation), for tests. */
void tfm_gemm_reference(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc);
/* Name of the GEMM micro-kernel in use ("avx512", "avx2", "generic"). */
const char *tfm_gemm_kernel_name(void);

/* ---- bf16 GEMM (gemm_bf16.c) ------------------------------------------------
 * The same calls as tfm_gemm, tfm_gemm_bias and tfm_gemm_batched with op(A)
 * and op(B) rounded to bfloat16 (8-bit significand) and the products summed
 * in fp32; C, bias and the epilogue stay fp32. Rounding (tfm_bf16_from_f32):
 * to nearest, ties to even; fp32 denormals (|x| < 2^-126) become a zero of
 * the same sign; Inf stays Inf; NaN stays NaN (made quiet). Summation: an
 * fp32 fma chain over k (odd k of each pair first, as vdpbf16ps does;
 * partial sums below 2^-126 flushed to zero) in blocks of 512 k, then
 * C = alpha*acc + beta*C per block as in tfm_gemm: deterministic, and
 * independent of the thread count.
 * Runs vdpbf16ps (AVX512_BF16) where cpuid reports it; elsewhere an emulated
 * path computes the identical results in portable C, several times slower
 * than tfm_gemm. */
void tfm_gemm_bf16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                   int64_t ldc);
void tfm_gemm_bf16_bias(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, const float *bias,
                        float *C, int64_t ldc);
void tfm_gemm_bf16_batched(int trans_a, int trans_b, int64_t batch, int64_t M, int64_t N, int64_t K,
                           float alpha, const float *A, int64_t lda, int64_t stride_a,
                           const float *B, int64_t ldb, int64_t stride_b, float beta, float *C,
                           int64_t ldc, int64_t stride_c);
/* The same for fp32: a weight W (n_out, in) packed once as op(B) = W^T in
 * the panels tfm_gemm packs on every call; tfm_gemm_f32_weight then gives
 * the bits of tfm_gemm(0, 1, M, n_out, in, 1, A, lda, W, in, 0, C, ldc)
 * (tfm_gemm_bias with a bias). The panels are those of the kernel variant
 * the process runs. A snapshot: W must not change while packed. NULL when
 * out of memory. */
typedef struct tfm_f32_weight tfm_f32_weight;
tfm_f32_weight *tfm_f32_weight_pack(const float *w, int64_t n_out, int64_t in);
void tfm_f32_weight_free(tfm_f32_weight *w);
void tfm_gemm_f32_weight(int64_t M, const float *A, int64_t lda, const tfm_f32_weight *w,
                         const float *bias, float *C, int64_t ldc);
/* A weight W (n_out, in), as linear stores it, rounded to bf16 and packed
 * once, for decoding: the packing that tfm_gemm_bf16 repeats on every call
 * with op(B) = W^T is done here, and tfm_gemm_bf16_weight then gives the
 * bits of tfm_gemm_bf16(0, 1, M, n_out, in, 1, A, lda, W, in, 0, C, ldc)
 * (tfm_gemm_bf16_bias with a bias). A snapshot: W must not change while
 * packed (repack after an update). NULL when out of memory. */
typedef struct tfm_bf16_weight tfm_bf16_weight;
tfm_bf16_weight *tfm_bf16_weight_pack(const float *w, int64_t n_out, int64_t in);
void tfm_bf16_weight_free(tfm_bf16_weight *w);
int64_t tfm_bf16_weight_rows(const tfm_bf16_weight *w); /* n_out */
int64_t tfm_bf16_weight_cols(const tfm_bf16_weight *w); /* in */
void tfm_gemm_bf16_weight(int64_t M, const float *A, int64_t lda, const tfm_bf16_weight *w,
                          const float *bias, float *C, int64_t ldc);
/* Triple loop on bf16-rounded inputs with double accumulation, for tests. */
void tfm_gemm_bf16_reference(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                             float *C, int64_t ldc);
uint16_t tfm_bf16_from_f32(float x); /* bits of the rounded value */
float tfm_f32_from_bf16(uint16_t h); /* exact */
float tfm_bf16_round(float x);       /* tfm_f32_from_bf16(tfm_bf16_from_f32(x)) */
/* 1 when this CPU (cpuid) and build run the vdpbf16ps kernel (0 also when
 * TFM_BF16_EMULATE=1 was set in the environment at the first call). */
int tfm_bf16_cpu_native(void);
/* Force the emulated path (tests, benchmarks); results are the same. */
void tfm_bf16_set_emulated(int on);
/* "avx512bf16" or "emulated": what tfm_gemm_bf16 runs now. */
const char *tfm_gemm_bf16_kernel_name(void);

/* Arithmetic of the GEMMs in ops and attention: fp32 or bf16 inputs (fp32
 * accumulation and output either way). */
typedef enum { TFM_FP32 = 0, TFM_BF16 = 1 } tfm_precision;
const char *tfm_precision_name(tfm_precision p);            /* "fp32", "bf16" */
int tfm_precision_parse(const char *s, tfm_precision *out); /* 0 ok, 1 not fp32/bf16 */

static inline void tfm_gemm_prec(tfm_precision p, int trans_a, int trans_b, int64_t M, int64_t N,
                                 int64_t K, float alpha, const float *A, int64_t lda,
                                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (p == TFM_BF16)
        tfm_gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        tfm_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
static inline void tfm_gemm_bias_prec(tfm_precision p, int trans_a, int trans_b, int64_t M,
                                      int64_t N, int64_t K, float alpha, const float *A,
                                      int64_t lda, const float *B, int64_t ldb, const float *bias,
                                      float *C, int64_t ldc) {
    if (p == TFM_BF16)
        tfm_gemm_bf16_bias(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, bias, C, ldc);
    else
        tfm_gemm_bias(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, bias, C, ldc);
}
static inline void tfm_gemm_batched_prec(tfm_precision p, int trans_a, int trans_b, int64_t batch,
                                         int64_t M, int64_t N, int64_t K, float alpha,
                                         const float *A, int64_t lda, int64_t stride_a,
                                         const float *B, int64_t ldb, int64_t stride_b, float beta,
                                         float *C, int64_t ldc, int64_t stride_c) {
    if (p == TFM_BF16)
        tfm_gemm_bf16_batched(trans_a, trans_b, batch, M, N, K, alpha, A, lda, stride_a, B, ldb,
                              stride_b, beta, C, ldc, stride_c);
    else
        tfm_gemm_batched(trans_a, trans_b, batch, M, N, K, alpha, A, lda, stride_a, B, ldb,
                         stride_b, beta, C, ldc, stride_c);
}

/* ---- which kernels ----------------------------------------------------------
 * The kernels are built for several CPUs ("avx512", "avx2", "generic"; a
 * -march=native build has its own and "generic") and chosen at first use:
 * the best this CPU runs, or the one the environment variable TFM_KERNELS
 * names ("portable" means "generic"). Each choice gives the same results as
 * a build for that CPU alone. */
const char *tfm_kernels_name(void);      /* the kernels in use */
const char *tfm_kernels_available(void); /* those this CPU runs, best first */
/* Chooses now: non-zero, with the error set, when TFM_KERNELS names kernels
 * this build lacks or this CPU cannot run (a later first use would warn on
 * stderr and take the best). */
int tfm_kernels_init(void);

/* ---- elementwise ---------------------------------------------------------- */
void tfm_k_add(float *y, const float *a, const float *b, int64_t n); /* y = a + b */
void tfm_k_axpy(float *y, float alpha, const float *x, int64_t n);   /* y += alpha*x */
void tfm_k_mul(float *y, const float *a, const float *b, int64_t n); /* y = a * b */
void tfm_k_scale(float *y, const float *x, float alpha, int64_t n);  /* y = alpha*x */
void tfm_k_add_bias(float *y, const float *x, const float *bias, int64_t rows, int64_t cols);
/* dbias[j] += sum_i dy[i, j]   dy: (rows, cols) */
void tfm_k_colsum_acc(float *dbias, const float *dy, int64_t rows, int64_t cols);
void tfm_k_relu_forward(float *y, const float *x, int64_t n);
/* dx += dy * (y > 0) */
void tfm_k_relu_backward(float *dx, const float *dy, const float *y, int64_t n);

/* Dropout with an inverted scale: y = x * keep / (1 - p); keep is decided by
 * tfm_rand_uniform(key, i) >= p, so backward regenerates the same mask. */
void tfm_k_dropout_forward(float *y, const float *x, int64_t n, float p, uint64_t key);
void tfm_k_dropout_backward(float *dx, const float *dy, int64_t n, float p, uint64_t key);

/* ---- softmax over the last dim -------------------------------------------
 * y = softmax(x) row-wise   x, y: (rows, cols) */
void tfm_k_softmax_forward(float *y, const float *x, int64_t rows, int64_t cols);
/* dx += y * (dy - sum_j dy_j y_j) */
void tfm_k_softmax_backward(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols);

/* ---- layer norm over the last dim ------------------------------------------
 * y = (x - mean) * rstd * gamma + beta; mean, rstd: (rows) saved for backward */
void tfm_k_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                             const float *beta, int64_t rows, int64_t cols, float eps);
void tfm_k_layernorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                              const float *x, const float *mean, const float *rstd,
                              const float *gamma, int64_t rows, int64_t cols);

/* ---- embedding -------------------------------------------------------------
 * y[i, :] = scale * table[ids[i], :]     table: (vocab, dim), y: (n, dim)
 * Out-of-range ids are a programmer error (callers validate). */
void tfm_k_embedding_forward(float *y, const float *table, const int32_t *ids, int64_t n,
                             int64_t dim, float scale);
/* dtable[ids[i], :] += scale * dy[i, :], except rows whose id == pad_id
 * (pad_id < 0: none). Deterministic: parallel over columns. */
void tfm_k_embedding_backward(float *dtable, const float *dy, const int32_t *ids, int64_t n,
                              int64_t dim, float scale, int32_t pad_id);

/* ---- multi-head scaled dot-product attention --------------------------------
 * q: (B, Tq, D) with batch stride q_bs (usually Tq*D) and row stride D
 * k, v: (B, Tk, D) with batch stride kv_bs (usually Tk*D; a KV cache uses Tmax*D)
 * out: (B, Tq, D); heads are D/H consecutive channels.
 * probs: (B, H, Tq, Tk) attention weights after softmax and before dropout,
 *        saved for backward (may be NULL when no backward will run)
 * key_pad: (B, Tk) nonzero = this key is padding and gets no weight (or NULL)
 * causal: query i (at absolute position i + q_offset) sees keys j <= i + q_offset
 * dropout_p, key: dropout on the probabilities (inverted scale)
 * A query row with no visible key gets zero output. scores scaled by 1/sqrt(D/H). */
typedef struct {
    int64_t B, Tq, Tk, D, H;
    int64_t q_bs, kv_bs;
    const uint8_t *key_pad;
    int causal;
    int64_t q_offset;
    float dropout_p;
    uint64_t key;
    tfm_precision precision; /* of the QK^T and PV GEMMs (and their backward) */
} tfm_attn_shape;
/* scratch: at least tfm_attention_scratch_floats(s) floats (per-thread rows) */
int64_t tfm_attention_scratch_floats(const tfm_attn_shape *s);
void tfm_k_attention_forward(float *out, float *probs, const float *q, const float *k,
                             const float *v, const tfm_attn_shape *s, float *scratch);
/* dq, dk, dv: same layouts as q, k, v (contiguous, batch strides q_bs / kv_bs);
 * accumulates. */
void tfm_k_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                              const float *probs, const float *q, const float *k, const float *v,
                              const tfm_attn_shape *s, float *scratch);

/* ---- attention for incremental decoding ---------------------------------------
 * One query row per batch row against Tk keys and values that are gathered:
 * key j of row r starts at k + off(r, j), the value at v + off(r, j), with
 *   off(r, j) = group[r] * group_stride + j * pos_stride + slot[r * slot_ld + j] * D
 * (a NULL group or slot contributes 0). A beam search's rows share their
 * source's cross-attention keys (group = the source) and their ancestors'
 * self-attention keys (slot = the row that computed position j), so no cache
 * is copied when hypotheses are reordered.
 * q, out: (rows, D); key_pad: (groups, Tk) nonzero = padding, or NULL;
 * probs: (rows, H, Tk) attention weights, or NULL.
 * The result is bit-identical to tfm_k_attention_forward with Tq = 1 over the
 * same keys at the same precision (same summation order as tfm_gemm, or
 * tfm_gemm_bf16's arithmetic for TFM_BF16). */
typedef struct {
    int64_t rows, Tk, D, H;
    int64_t pos_stride;
    const int32_t *group;
    int64_t group_stride;
    const int32_t *slot;
    int64_t slot_ld;
    const uint8_t *key_pad;
    tfm_precision precision; /* of the QK^T and PV products */
    /* NULL, or (groups, H, D/H, Tk): the keys again, transposed per group
     * and head (element kk of key j of group g, head h at
     * ((g * H + h) * D/H + kk) * Tk + j), for groups whose key j is at
     * group * group_stride + j * pos_stride (no slot). fp32 reads them
     * there instead of transposing its row's keys each call; bf16 ignores
     * them. The same numbers either way. */
    const float *keys_t;
} tfm_attn_gather;
/* scratch: at least this many floats */
int64_t tfm_attention_decode_scratch_floats(const tfm_attn_gather *s);
void tfm_k_attention_decode(float *out, float *probs, const float *q, const float *k,
                            const float *v, const tfm_attn_gather *s, float *scratch);

/* ---- label-smoothed cross-entropy -------------------------------------------
 * logits: (N, V), targets: (N); rows with targets[i] == ignore_index count for
 * nothing. Per row: loss_i = (1-eps) * -log p[y_i] + eps * mean_v(-log p[v])
 * (PyTorch's F.cross_entropy(label_smoothing=eps) convention).
 * Returns sum_i loss_i (double); *count = number of non-ignored rows.
 * lse: (N) log-sum-exp of each row, saved for backward. */
double tfm_k_xent_forward(float *lse, const float *logits, const int32_t *targets, int64_t N,
                          int64_t V, int32_t ignore_index, float eps, int64_t *count);
/* dlogits[i, v] += scale * (p[v] - (1-eps)*[v == y_i] - eps/V) for kept rows,
 * scale = dloss / count for the mean */
void tfm_k_xent_backward(float *dlogits, const float *logits, const float *lse,
                         const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                         float eps, float scale);

/* log sum_i exp(x[i]) over x: (n), given mx = their max (so every term is
 * exp(x[i] - mx) <= 1 and one of them is 1): mx + log(sum_i exp(x[i] - mx)),
 * the differences taken in float, the exponentials and their sum in double
 * (each exponential within about 2 ulp of double, summed in a fixed order),
 * rounded once to float. The log-softmax of decoding: a row's scores are
 * x[v] - lse. NaN anywhere gives NaN; -inf terms count 0. */
float tfm_k_log_sum_exp(const float *x, int64_t n, float mx);

/* ---- Adam / AdamW over one contiguous block ------------------------------------
 * m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 * p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + lr * wd * p   (decoupled) */
void tfm_k_adam(float *p, const float *g, float *m, float *v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t t);
/* sum of squares in double, deterministic for a fixed thread count */
double tfm_k_sumsq(const float *x, int64_t n);
/* number of non-finite values */
int64_t tfm_k_count_nonfinite(const float *x, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
