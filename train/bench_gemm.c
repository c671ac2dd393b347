/* tfm bench gemm: GFLOP/s of tfm_gemm at one shape, transpose and thread
 * count. Each sample repeats the call back to back for at least 0.2 s; the
 * median over --reps samples is reported (after one warm-up call, which also
 * allocates the packing buffers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench.h"
#include "commands.h"
#include "flags.h"
#include "tfm/kernels.h"

/* A given flag's value must lie in [lo, hi]. */
static int check_range(const flag_def *f, int64_t lo, int64_t hi) {
    int64_t v = *(const int64_t *)f->value;
    if (f->set && (v < lo || v > hi))
        return tfm_cli_fail(2, "bench gemm: --%s expects an integer in [%lld, %lld], got '%lld'",
                            f->name, (long long)lo, (long long)hi, (long long)v);
    return 0;
}

/* CPU seconds used by the whole process (all threads) */
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int tfm_bench_gemm(int argc, char **argv) {
    int64_t M = 0, N = 0, K = 0, threads = 0, reps = 5;
    int ta = 0, tb = 0;
    tfm_precision prec = TFM_FP32;
    const char *trans = "nn", *precision = "fp32";
    flag_def flags[] = {
        {"m", FLAG_INT, &M, "rows of C and op(A) (required)", 0},
        {"n", FLAG_INT, &N, "columns of C and op(B) (required)", 0},
        {"k", FLAG_INT, &K, "columns of op(A), rows of op(B) (required)", 0},
        {"trans", FLAG_STR, &trans, "nn, nt, tn or tt: the letters are op(A), op(B)", 0},
        {"threads", FLAG_INT, &threads, "OpenMP threads (0: all cores)", 0},
        {"reps", FLAG_INT, &reps, "samples; the median is reported", 0},
        {"precision", FLAG_STR, &precision,
         "fp32, or bf16: op(A) and op(B) rounded to bfloat16, fp32 sums", 0},
    };
    int n_flags = (int)(sizeof flags / sizeof flags[0]);
    int rc = flags_parse(flags, n_flags, argc, argv,
                         "tfm bench gemm --m M --n N --k K [--trans nn|nt|tn|tt] [--threads T]"
                         " [--reps R] [--precision fp32|bf16]\n"
                         "  times C(M,N) = op(A)(M,K) * op(B)(K,N)",
                         NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (check_range(&flags[0], 1, 1 << 20) || check_range(&flags[1], 1, 1 << 20) ||
        check_range(&flags[2], 1, 1 << 20) || check_range(&flags[4], 0, 1024) ||
        check_range(&flags[5], 1, 1000))
        return 2;
    if (tfm_precision_parse(precision, &prec))
        return tfm_cli_fail(2, "bench gemm: --precision expects fp32 or bf16, got '%s'", precision);
    if (strlen(trans) != 2 || !strchr("nt", trans[0]) || !strchr("nt", trans[1]))
        return tfm_cli_fail(2, "bench gemm: --trans expects nn, nt, tn or tt, got '%s'", trans);
    ta = trans[0] == 't';
    tb = trans[1] == 't';
    if (!M || !N || !K) return tfm_cli_fail(2, "bench gemm: --m, --n and --k are required");
    if ((double)M * N > 4e9 || (double)M * K > 4e9 || (double)K * N > 4e9)
        return tfm_cli_fail(2, "bench gemm: matrices of more than 4e9 elements");
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads((int)threads);
    int nthreads = omp_get_max_threads();
#else
    int nthreads = 1;
#endif
    float *A = tfm_alloc((size_t)(M * K) * sizeof(float));
    float *B = tfm_alloc((size_t)(K * N) * sizeof(float));
    float *C = tfm_alloc((size_t)(M * N) * sizeof(float));
    double *samples = malloc((size_t)reps * sizeof(double));
    if (!A || !B || !C || !samples) {
        tfm_free(A);
        tfm_free(B);
        tfm_free(C);
        free(samples);
        return tfm_cli_fail(1, "bench gemm: %s", tfm_last_error());
    }
    for (int64_t i = 0; i < M * K; i++) A[i] = tfm_rand_uniform(1, (uint64_t)i) - 0.5f;
    for (int64_t i = 0; i < K * N; i++) B[i] = tfm_rand_uniform(2, (uint64_t)i) - 0.5f;
    memset(C, 0, (size_t)(M * N) * sizeof(float));
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    double flop = 2.0 * (double)M * N * K;

    double t0 = tfm_now();
    tfm_gemm_prec(prec, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N); /* warm-up */
    double t1 = tfm_now() - t0;
    int64_t inner = (int64_t)(0.2 / (t1 > 1e-7 ? t1 : 1e-7)) + 1;
    double cpu0 = cpu_seconds(), wall0 = tfm_now();
    for (int64_t r = 0; r < reps; r++) {
        double a = tfm_now();
        for (int64_t i = 0; i < inner; i++)
            tfm_gemm_prec(prec, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
        samples[r] = flop * (double)inner / (tfm_now() - a) * 1e-9;
    }
    /* CPU share: on a busy machine wall-clock rates drop while this one
     * (flop per CPU-second per thread) mostly does not */
    double cpu = cpu_seconds() - cpu0, wall = tfm_now() - wall0;
    qsort(samples, (size_t)reps, sizeof(double), cmp_double);
    double med = reps % 2 ? samples[reps / 2] : 0.5 * (samples[reps / 2 - 1] + samples[reps / 2]);
    printf("kernel=%s\n", prec == TFM_BF16 ? tfm_gemm_bf16_kernel_name() : tfm_gemm_kernel_name());
    printf("shape M=%lld N=%lld K=%lld trans=%c%c threads=%d reps=%lld calls_per_sample=%lld "
           "precision=%s\n",
           (long long)M, (long long)N, (long long)K, ta ? 't' : 'n', tb ? 't' : 'n', nthreads,
           (long long)reps, (long long)inner, tfm_precision_name(prec));
    printf("gflops_min=%.1f gflops_max=%.1f cpu_util=%.2f gflops_per_cpu_thread=%.1f\n", samples[0],
           samples[reps - 1], cpu / wall / nthreads,
           flop * (double)inner * (double)reps / (cpu / nthreads) * 1e-9);
    printf("gflops=%.1f\n", med);
    tfm_free(A);
    tfm_free(B);
    tfm_free(C);
    free(samples);
    return 0;
}
