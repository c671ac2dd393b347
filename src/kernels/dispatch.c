/* Runtime CPU dispatch (see dispatch.h): the public kernel functions call
 * the variant chosen at first use, from the CPU's features or from the
 * environment variable TFM_KERNELS. Built without variants (the fuzz build
 * compiles every file once) only the tfm_kernels_* queries are here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"

#ifdef TFM_KERNEL_VARIANTS /* X(avx512) X(avx2) X(generic), from the Makefile */

#define X(v) extern const tfm_kernel_table tfm_kernel_table_##v;
TFM_KERNEL_VARIANTS
#undef X
#define X(v) &tfm_kernel_table_##v,
static const tfm_kernel_table *const VARIANTS[] = {TFM_KERNEL_VARIANTS};
#undef X
#define N_VARIANTS (sizeof VARIANTS / sizeof VARIANTS[0])

static uint32_t cpu_features(void) {
    uint32_t f = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) f |= TFM_CPU_SSE42;
    if (__builtin_cpu_supports("popcnt")) f |= TFM_CPU_POPCNT;
    if (__builtin_cpu_supports("avx")) f |= TFM_CPU_AVX;
    if (__builtin_cpu_supports("avx2")) f |= TFM_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= TFM_CPU_FMA;
    if (__builtin_cpu_supports("bmi")) f |= TFM_CPU_BMI;
    if (__builtin_cpu_supports("bmi2")) f |= TFM_CPU_BMI2;
    if (__builtin_cpu_supports("avx512f")) f |= TFM_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512bw")) f |= TFM_CPU_AVX512BW;
    if (__builtin_cpu_supports("avx512dq")) f |= TFM_CPU_AVX512DQ;
    if (__builtin_cpu_supports("avx512vl")) f |= TFM_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512cd")) f |= TFM_CPU_AVX512CD;
#endif
    return f;
}

static int runs_here(const tfm_kernel_table *t, uint32_t cpu) { return (t->needs & ~cpu) == 0; }

/* The table TFM_KERNELS names ("portable" = "generic"), or the first (best)
 * one the CPU runs; NULL with the error set when TFM_KERNELS names none. */
static const tfm_kernel_table *choose(void) {
    uint32_t cpu = cpu_features();
    const char *want = getenv("TFM_KERNELS");
    if (want && *want) {
        const char *name = strcmp(want, "portable") ? want : "generic";
        for (size_t i = 0; i < N_VARIANTS; i++)
            if (!strcmp(VARIANTS[i]->name, name)) {
                if (runs_here(VARIANTS[i], cpu)) return VARIANTS[i];
                tfm_set_error("TFM_KERNELS=%s: this CPU lacks the instructions those kernels need "
                              "(available: %s)",
                              want, tfm_kernels_available());
                return NULL;
            }
        tfm_set_error("TFM_KERNELS=%s: no such kernels (available: %s, or portable)", want,
                      tfm_kernels_available());
        return NULL;
    }
    for (size_t i = 0; i < N_VARIANTS; i++)
        if (runs_here(VARIANTS[i], cpu)) return VARIANTS[i];
    return VARIANTS[N_VARIANTS - 1];
}

static const tfm_kernel_table *g_table;

/* Chosen once; racing first calls compute the same answer. */
static const tfm_kernel_table *kt(void) {
    const tfm_kernel_table *t = __atomic_load_n(&g_table, __ATOMIC_ACQUIRE);
    if (t) return t;
    t = choose();
    if (!t) {
        /* a library cannot exit: say so once and use the best kernels */
        fprintf(stderr, "tfm: %s; using the default kernels\n", tfm_last_error());
        uint32_t cpu = cpu_features();
        t = VARIANTS[N_VARIANTS - 1];
        for (size_t i = N_VARIANTS; i-- > 0;)
            if (runs_here(VARIANTS[i], cpu)) t = VARIANTS[i];
    }
    __atomic_store_n(&g_table, t, __ATOMIC_RELEASE);
    return t;
}

int tfm_kernels_init(void) {
    if (__atomic_load_n(&g_table, __ATOMIC_ACQUIRE)) return 0;
    const tfm_kernel_table *t = choose();
    if (!t) return 1;
    __atomic_store_n(&g_table, t, __ATOMIC_RELEASE);
    return 0;
}

const char *tfm_kernels_name(void) { return kt()->name; }

const char *tfm_kernels_available(void) {
    static char list[128];
    uint32_t cpu = cpu_features();
    size_t used = 0;
    list[0] = 0;
    for (size_t i = 0; i < N_VARIANTS; i++)
        if (runs_here(VARIANTS[i], cpu) && !strstr(list, VARIANTS[i]->name))
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? " " : "",
                                     VARIANTS[i]->name);
    return list;
}

/* ---- the public kernel functions ------------------------------------------ */

void tfm_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc) {
    kt()->gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void tfm_gemm_bias(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, const float *bias,
                   float *C, int64_t ldc) {
    kt()->gemm_bias(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, bias, C, ldc);
}
void tfm_gemm_batched(int trans_a, int trans_b, int64_t batch, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, int64_t stride_a, const float *B,
                      int64_t ldb, int64_t stride_b, float beta, float *C, int64_t ldc,
                      int64_t stride_c) {
    kt()->gemm_batched(trans_a, trans_b, batch, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b,
                      beta, C, ldc, stride_c);
}
void tfm_gemm_reference(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc) {
    kt()->gemm_reference(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
const char *tfm_gemm_kernel_name(void) { return kt()->gemm_kernel_name(); }
void tfm_k_add(float *y, const float *a, const float *b, int64_t n) { kt()->k_add(y, a, b, n); }
void tfm_k_axpy(float *y, float alpha, const float *x, int64_t n) { kt()->k_axpy(y, alpha, x, n); }
void tfm_k_mul(float *y, const float *a, const float *b, int64_t n) { kt()->k_mul(y, a, b, n); }
void tfm_k_scale(float *y, const float *x, float alpha, int64_t n) { kt()->k_scale(y, x, alpha, n); }
void tfm_k_add_bias(float *y, const float *x, const float *bias, int64_t rows, int64_t cols) {
    kt()->k_add_bias(y, x, bias, rows, cols);
}
void tfm_k_colsum_acc(float *dbias, const float *dy, int64_t rows, int64_t cols) {
    kt()->k_colsum_acc(dbias, dy, rows, cols);
}
void tfm_k_relu_forward(float *y, const float *x, int64_t n) { kt()->k_relu_forward(y, x, n); }
void tfm_k_relu_backward(float *dx, const float *dy, const float *y, int64_t n) {
    kt()->k_relu_backward(dx, dy, y, n);
}
void tfm_k_dropout_forward(float *y, const float *x, int64_t n, float p, uint64_t key) {
    kt()->k_dropout_forward(y, x, n, p, key);
}
void tfm_k_dropout_backward(float *dx, const float *dy, int64_t n, float p, uint64_t key) {
    kt()->k_dropout_backward(dx, dy, n, p, key);
}
void tfm_k_softmax_forward(float *y, const float *x, int64_t rows, int64_t cols) {
    kt()->k_softmax_forward(y, x, rows, cols);
}
void tfm_k_softmax_backward(float *dx, const float *dy, const float *y, int64_t rows,
                            int64_t cols) {
    kt()->k_softmax_backward(dx, dy, y, rows, cols);
}
void tfm_k_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                             const float *beta, int64_t rows, int64_t cols, float eps) {
    kt()->k_layernorm_forward(y, mean, rstd, x, gamma, beta, rows, cols, eps);
}
void tfm_k_layernorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                              const float *x, const float *mean, const float *rstd,
                              const float *gamma, int64_t rows, int64_t cols) {
    kt()->k_layernorm_backward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, rows, cols);
}
void tfm_k_embedding_forward(float *y, const float *table, const int32_t *ids, int64_t n,
                             int64_t dim, float scale) {
    kt()->k_embedding_forward(y, table, ids, n, dim, scale);
}
void tfm_k_embedding_backward(float *dtable, const float *dy, const int32_t *ids, int64_t n,
                              int64_t dim, float scale, int32_t pad_id) {
    kt()->k_embedding_backward(dtable, dy, ids, n, dim, scale, pad_id);
}
int64_t tfm_attention_decode_scratch_floats(const tfm_attn_gather *s) {
    return kt()->attention_decode_scratch_floats(s);
}
void tfm_k_attention_decode(float *out, float *probs, const float *q, const float *k,
                            const float *v, const tfm_attn_gather *s, float *scratch) {
    kt()->k_attention_decode(out, probs, q, k, v, s, scratch);
}
int64_t tfm_attention_scratch_floats(const tfm_attn_shape *s) {
    return kt()->attention_scratch_floats(s);
}
void tfm_k_attention_forward(float *out, float *probs, const float *q, const float *k,
                             const float *v, const tfm_attn_shape *s, float *scratch) {
    kt()->k_attention_forward(out, probs, q, k, v, s, scratch);
}
void tfm_k_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                              const float *probs, const float *q, const float *k, const float *v,
                              const tfm_attn_shape *s, float *scratch) {
    kt()->k_attention_backward(dq, dk, dv, dout, probs, q, k, v, s, scratch);
}
double tfm_k_xent_forward(float *lse, const float *logits, const int32_t *targets, int64_t N,
                          int64_t V, int32_t ignore_index, float eps, int64_t *count) {
    return kt()->k_xent_forward(lse, logits, targets, N, V, ignore_index, eps, count);
}
void tfm_k_xent_backward(float *dlogits, const float *logits, const float *lse,
                         const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                         float eps, float scale) {
    kt()->k_xent_backward(dlogits, logits, lse, targets, N, V, ignore_index, eps, scale);
}
tfm_f32_weight *tfm_f32_weight_pack(const float *w, int64_t n_out, int64_t in) {
    return kt()->f32_weight_pack(w, n_out, in);
}
void tfm_f32_weight_free(tfm_f32_weight *w) { kt()->f32_weight_free(w); }
void tfm_gemm_f32_weight(int64_t M, const float *A, int64_t lda, const tfm_f32_weight *w,
                         const float *bias, float *C, int64_t ldc) {
    kt()->gemm_f32_weight(M, A, lda, w, bias, C, ldc);
}
float tfm_k_log_sum_exp(const float *x, int64_t n, float mx) {
    return kt()->k_log_sum_exp(x, n, mx);
}
void tfm_k_adam(float *p, const float *g, float *m, float *v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t t) {
    kt()->k_adam(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, t);
}
double tfm_k_sumsq(const float *x, int64_t n) { return kt()->k_sumsq(x, n); }
int64_t tfm_k_count_nonfinite(const float *x, int64_t n) { return kt()->k_count_nonfinite(x, n); }

#else /* no variants: the kernels were compiled under their own names */

int tfm_kernels_init(void) { return 0; }
const char *tfm_kernels_name(void) { return tfm_gemm_kernel_name(); }
const char *tfm_kernels_available(void) { return tfm_gemm_kernel_name(); }

#endif
