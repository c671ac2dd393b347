/* A small program against the installed library (.ci/run compiles it with
 * pkg-config until examples/train_copy.c exists): a GEMM checked against the
 * reference, the model size of the default configuration, the version and
 * the kernels in use. Exit 0 when all agree. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <tfm/base.h>
#include <tfm/kernels.h>
#include <tfm/nn.h>

int main(void) {
    enum { M = 37, N = 29, K = 41 };
    static float a[M * K], b[K * N], c[M * N], ref[M * N];
    for (int i = 0; i < M * K; i++) a[i] = tfm_rand_uniform(1, (uint64_t)i) - 0.5f;
    for (int i = 0; i < K * N; i++) b[i] = tfm_rand_uniform(2, (uint64_t)i) - 0.5f;
    tfm_gemm(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
    tfm_gemm_reference(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, ref, N);
    double max_diff = 0;
    for (int i = 0; i < M * N; i++) {
        double d = fabs((double)c[i] - ref[i]);
        if (d > max_diff) max_diff = d;
    }
    tfm_model_config cfg;
    tfm_model_config_default(&cfg);
    if (tfm_model_config_check(&cfg)) {
        fprintf(stderr, "example: %s\n", tfm_last_error());
        return 1;
    }
    printf("libtfm %s (header %s), kernels %s, GEMM max |diff| %.2e, default model %lld "
           "parameters\n",
           tfm_version(), TFM_VERSION, tfm_kernels_name(), max_diff,
           (long long)tfm_model_param_count(&cfg));
    return max_diff < 1e-4 && !strcmp(tfm_version(), TFM_VERSION) ? 0 : 1;
}
