/* Placeholder GEMM: correct, simple loop order; replaced by the packed,
 * register-tiled kernel. */
#include "tfm/kernels.h"

#include <string.h>

void tfm_gemm_reference(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t p = 0; p < K; p++) {
                float a = trans_a ? A[p * lda + i] : A[i * lda + p];
                float b = trans_b ? B[j * ldb + p] : B[p * ldb + j];
                acc += (double)a * b;
            }
            float c = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
            C[i * ldc + j] = c + alpha * (float)acc;
        }
}

static void gemm_rows(int trans_a, int trans_b, int64_t i0, int64_t i1, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                      float beta, float *C, int64_t ldc) {
    for (int64_t i = i0; i < i1; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f)
            memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f)
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
        for (int64_t p = 0; p < K; p++) {
            float a = alpha * (trans_a ? A[p * lda + i] : A[i * lda + p]);
            if (!trans_b) {
                const float *b = B + p * ldb;
                for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
            } else {
                for (int64_t j = 0; j < N; j++) c[j] += a * B[j * ldb + p];
            }
        }
    }
}

void tfm_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc) {
    int par = (double)M * N * K > TFM_PAR_MIN_WORK;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < M; i++)
        gemm_rows(trans_a, trans_b, i, i + 1, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void tfm_gemm_batched(int trans_a, int trans_b, int64_t batch, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, int64_t stride_a, const float *B,
                      int64_t ldb, int64_t stride_b, float beta, float *C, int64_t ldc,
                      int64_t stride_c) {
    for (int64_t b = 0; b < batch; b++)
        tfm_gemm(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb,
                 beta, C + b * stride_c, ldc);
}

const char *tfm_gemm_kernel_name(void) { return "generic"; }
