/* tfm bench gemm: GFLOP/s of tfm_gemm at one shape, transpose and thread
 * count. Each sample repeats the call back to back for at least 0.2 s; the
 * median over --reps samples is reported (after one warm-up call, which also
 * grows the packing buffers). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench.h"
#include "commands.h"
#include "tfm/kernels.h"

static int parse_i64(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return tfm_cli_fail(2, "bench gemm: %s expects an integer in [%lld, %lld], got '%s'", flag,
                            (long long)lo, (long long)hi, s);
    *out = v;
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
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            printf("usage: tfm bench gemm --m M --n N --k K [--trans nn|nt|tn|tt] [--threads T]"
                   " [--reps R] [--precision fp32|bf16]\n"
                   "  times C(M,N) = op(A)(M,K) * op(B)(K,N); trans letters are op(A), op(B);\n"
                   "  bf16 rounds op(A) and op(B) to bfloat16 and accumulates in fp32\n");
            return 0;
        }
        if (i + 1 >= argc) return tfm_cli_fail(2, "bench gemm: %s needs a value", f);
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(f, "--m"))
            rc = parse_i64(f, v, 1, 1 << 20, &M);
        else if (!strcmp(f, "--n"))
            rc = parse_i64(f, v, 1, 1 << 20, &N);
        else if (!strcmp(f, "--k"))
            rc = parse_i64(f, v, 1, 1 << 20, &K);
        else if (!strcmp(f, "--threads"))
            rc = parse_i64(f, v, 1, 1024, &threads);
        else if (!strcmp(f, "--reps"))
            rc = parse_i64(f, v, 1, 1000, &reps);
        else if (!strcmp(f, "--precision")) {
            if (tfm_precision_parse(v, &prec))
                return tfm_cli_fail(2, "bench gemm: --precision expects fp32 or bf16, got '%s'", v);
        } else if (!strcmp(f, "--trans")) {
            if (strlen(v) != 2 || !strchr("nt", v[0]) || !strchr("nt", v[1]))
                return tfm_cli_fail(2, "bench gemm: --trans expects nn, nt, tn or tt, got '%s'", v);
            ta = v[0] == 't';
            tb = v[1] == 't';
        } else
            return tfm_cli_fail(2, "bench gemm: unknown flag '%s' (tfm bench gemm --help)", f);
        if (rc) return rc;
    }
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
