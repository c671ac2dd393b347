/* Runtime CPU dispatch for the kernels layer.
 *
 * The kernel sources (ISA_SRC in the Makefile) are compiled once per variant
 * (-DTFM_ISA=avx512 with -march=x86-64-v4, avx2 with x86-64-v3, generic with
 * x86-64-v2; a default -march=native build has "native" and "generic"), with
 * this header forced in first (-include), so each variant's public kernel
 * functions get a suffix (tfm_gemm -> tfm_gemm_avx512) and variant.c collects
 * them into a table. dispatch.c defines the public names as calls through
 * the table that the CPU runs best, or the one TFM_KERNELS names.
 *
 * A new public kernel function needs a line in both lists below (a missing
 * rename shows up as a duplicate definition when linking, a missing table
 * entry as an undefined reference). Kernel files outside ISA_SRC (say, one
 * with its own cpuid check) are compiled once, as everything else. */
#ifndef TFM_KERNELS_DISPATCH_H
#define TFM_KERNELS_DISPATCH_H

#include <stdint.h>

#ifdef TFM_ISA
#define TFM_ISA_PASTE_(name, isa) name##_##isa
#define TFM_ISA_PASTE(name, isa) TFM_ISA_PASTE_(name, isa)
#define TFM_ISA_NAME(name) TFM_ISA_PASTE(name, TFM_ISA)
#define tfm_gemm TFM_ISA_NAME(tfm_gemm)
#define tfm_gemm_bias TFM_ISA_NAME(tfm_gemm_bias)
#define tfm_gemm_batched TFM_ISA_NAME(tfm_gemm_batched)
#define tfm_gemm_reference TFM_ISA_NAME(tfm_gemm_reference)
#define tfm_gemm_kernel_name TFM_ISA_NAME(tfm_gemm_kernel_name)
#define tfm_f32_weight_pack TFM_ISA_NAME(tfm_f32_weight_pack)
#define tfm_f32_weight_free TFM_ISA_NAME(tfm_f32_weight_free)
#define tfm_gemm_f32_weight TFM_ISA_NAME(tfm_gemm_f32_weight)
#define tfm_k_add TFM_ISA_NAME(tfm_k_add)
#define tfm_k_axpy TFM_ISA_NAME(tfm_k_axpy)
#define tfm_k_mul TFM_ISA_NAME(tfm_k_mul)
#define tfm_k_scale TFM_ISA_NAME(tfm_k_scale)
#define tfm_k_add_bias TFM_ISA_NAME(tfm_k_add_bias)
#define tfm_k_colsum_acc TFM_ISA_NAME(tfm_k_colsum_acc)
#define tfm_k_relu_forward TFM_ISA_NAME(tfm_k_relu_forward)
#define tfm_k_relu_backward TFM_ISA_NAME(tfm_k_relu_backward)
#define tfm_k_dropout_forward TFM_ISA_NAME(tfm_k_dropout_forward)
#define tfm_k_dropout_backward TFM_ISA_NAME(tfm_k_dropout_backward)
#define tfm_k_softmax_forward TFM_ISA_NAME(tfm_k_softmax_forward)
#define tfm_k_softmax_backward TFM_ISA_NAME(tfm_k_softmax_backward)
#define tfm_k_layernorm_forward TFM_ISA_NAME(tfm_k_layernorm_forward)
#define tfm_k_layernorm_backward TFM_ISA_NAME(tfm_k_layernorm_backward)
#define tfm_k_embedding_forward TFM_ISA_NAME(tfm_k_embedding_forward)
#define tfm_k_embedding_backward TFM_ISA_NAME(tfm_k_embedding_backward)
#define tfm_attention_scratch_floats TFM_ISA_NAME(tfm_attention_scratch_floats)
#define tfm_k_attention_forward TFM_ISA_NAME(tfm_k_attention_forward)
#define tfm_k_attention_backward TFM_ISA_NAME(tfm_k_attention_backward)
#define tfm_attention_decode_scratch_floats TFM_ISA_NAME(tfm_attention_decode_scratch_floats)
#define tfm_k_attention_decode TFM_ISA_NAME(tfm_k_attention_decode)
#define tfm_k_xent_forward TFM_ISA_NAME(tfm_k_xent_forward)
#define tfm_k_xent_backward TFM_ISA_NAME(tfm_k_xent_backward)
#define tfm_k_log_sum_exp TFM_ISA_NAME(tfm_k_log_sum_exp)
#define tfm_k_adam TFM_ISA_NAME(tfm_k_adam)
#define tfm_k_sumsq TFM_ISA_NAME(tfm_k_sumsq)
#define tfm_k_count_nonfinite TFM_ISA_NAME(tfm_k_count_nonfinite)
#endif

#include "tfm/kernels.h"

/* Every public kernel function, without its tfm_ prefix. */
#define TFM_KERNEL_FUNCS(X)                                                                        \
    X(gemm)                                                                                        \
    X(gemm_bias)                                                                                   \
    X(gemm_batched)                                                                                \
    X(gemm_reference)                                                                              \
    X(gemm_kernel_name)                                                                            \
    X(f32_weight_pack)                                                                             \
    X(f32_weight_free)                                                                             \
    X(gemm_f32_weight)                                                                             \
    X(k_add)                                                                                       \
    X(k_axpy)                                                                                      \
    X(k_mul)                                                                                       \
    X(k_scale)                                                                                     \
    X(k_add_bias)                                                                                  \
    X(k_colsum_acc)                                                                                \
    X(k_relu_forward)                                                                              \
    X(k_relu_backward)                                                                             \
    X(k_dropout_forward)                                                                           \
    X(k_dropout_backward)                                                                          \
    X(k_softmax_forward)                                                                           \
    X(k_softmax_backward)                                                                          \
    X(k_layernorm_forward)                                                                         \
    X(k_layernorm_backward)                                                                        \
    X(k_embedding_forward)                                                                         \
    X(k_embedding_backward)                                                                        \
    X(attention_scratch_floats)                                                                    \
    X(k_attention_forward)                                                                         \
    X(k_attention_backward)                                                                        \
    X(attention_decode_scratch_floats)                                                             \
    X(k_attention_decode)                                                                          \
    X(k_xent_forward)                                                                              \
    X(k_xent_backward)                                                                             \
    X(k_log_sum_exp)                                                                               \
    X(k_adam)                                                                                      \
    X(k_sumsq)                                                                                     \
    X(k_count_nonfinite)

/* CPU features a variant was compiled for (from the compiler's macros). */
enum {
    TFM_CPU_SSE42 = 1u << 0,
    TFM_CPU_POPCNT = 1u << 1,
    TFM_CPU_AVX = 1u << 2,
    TFM_CPU_AVX2 = 1u << 3,
    TFM_CPU_FMA = 1u << 4,
    TFM_CPU_BMI = 1u << 5,
    TFM_CPU_BMI2 = 1u << 6,
    TFM_CPU_AVX512F = 1u << 7,
    TFM_CPU_AVX512BW = 1u << 8,
    TFM_CPU_AVX512DQ = 1u << 9,
    TFM_CPU_AVX512VL = 1u << 10,
    TFM_CPU_AVX512CD = 1u << 11,
};

typedef struct {
    const char *name; /* "avx512", "avx2" or "generic": what TFM_KERNELS names */
    uint32_t needs;   /* TFM_CPU_* bits */
#define TFM_KERNEL_MEMBER(f) __typeof__(tfm_##f) *f;
    TFM_KERNEL_FUNCS(TFM_KERNEL_MEMBER)
#undef TFM_KERNEL_MEMBER
} tfm_kernel_table;

#endif
