/* tfm bench allreduce: the gradient reduction of data-parallel training
 * (tfm_dist.weighted_sum of tfm/train.h: the fixed-order sum that tfm train
 * runs once per step under mpirun) timed on the gradient block of a preset
 * model. Needs the MPI build (make MPI=1) and mpirun with at least 2 ranks;
 * the transport is mpirun's choice (--mca btl self,tcp for TCP). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "commands.h"
#include "flags.h"
#include "tfm/train.h"

typedef tfm_bench_preset preset;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The slowest rank's time of each repetition, median over the repetitions. */
static int run(tfm_dist *d, const preset *p, int64_t reps, int64_t warmup) {
    tfm_model_config c;
    tfm_model_config_default(&c);
    c.vocab = p->vocab;
    c.d_model = p->d_model;
    c.n_heads = p->heads;
    c.d_ff = p->d_ff;
    c.enc_layers = p->enc_layers;
    c.dec_layers = p->dec_layers;
    c.max_len = 1024;
    int64_t n = tfm_model_param_count(&c);
    float *x = tfm_alloc((size_t)n * sizeof(float));
    double *w = malloc((size_t)d->size * sizeof(double));
    double *ms = malloc((size_t)reps * sizeof(double));
    double *all = malloc((size_t)d->size * sizeof(double));
    int rc = 1;
    if (!x || !w || !ms || !all) {
        tfm_set_error("out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) x[i] = (float)((i * 7 + d->rank) % 101) * 1e-3f;
    for (int r = 0; r < d->size; r++) w[r] = 1.0 + r;
    if (d->reserve(d, n)) goto done;
    for (int64_t k = -warmup; k < reps; k++) {
        /* start together: a tiny allgather as a barrier */
        double zero = 0;
        if (d->allgather(d, &zero, sizeof zero, all)) goto done;
        double t0 = tfm_now();
        if (d->weighted_sum(d, x, n, w, 1.0 / d->size)) goto done;
        double t = (tfm_now() - t0) * 1e3;
        if (d->allgather(d, &t, sizeof t, all)) goto done;
        if (k < 0) continue;
        ms[k] = 0;
        for (int r = 0; r < d->size; r++)
            if (all[r] > ms[k]) ms[k] = all[r];
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp_double);
    double median = ms[reps / 2], bytes = (double)n * sizeof(float);
    if (d->rank == 0) {
        printf("# preset %s, %lld parameters, %d ranks, %lld repetitions\n", p->name, (long long)n,
               d->size, (long long)reps);
        printf("preset=%s ranks=%d bytes_per_step=%.0f allreduce_ms_median=%.3f "
               "allreduce_ms_min=%.3f algbw_gb_s=%.3f\n",
               p->name, d->size, bytes, median, ms[0], bytes / (median * 1e-3) / 1e9);
    }
    rc = 0;
done:
    tfm_free(x);
    free(w);
    free(ms);
    free(all);
    return rc;
}

int tfm_bench_allreduce(int argc, char **argv) {
    const char *preset_name = "small";
    int64_t reps = 20, warmup = 3, threads = 0;
    flag_def flags[] = {
        {"preset", FLAG_STR, &preset_name, "toy, small or base (the gradient block's size)", 0},
        {"reps", FLAG_INT, &reps, "timed reductions", 0},
        {"warmup", FLAG_INT, &warmup, "untimed reductions first", 0},
        {"threads", FLAG_INT, &threads, "OpenMP threads of the local sums (0: all cores)", 0},
    };
    int rc = flags_parse(flags, 4, argc, argv,
                         "mpirun -np N tfm bench allreduce --preset toy|small|base [--reps R]",
                         NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    const preset *p = tfm_bench_preset_find(preset_name);
    if (!p) return tfm_cli_fail(2, "--preset: '%s' is not toy, small or base", preset_name);
    if (reps < 1 || warmup < 0 || threads < 0 || threads > TFM_MAX_THREADS)
        return tfm_cli_fail(2,
                            "bench allreduce: --reps must be positive, --warmup not negative, "
                            "--threads between 0 and %d",
                            TFM_MAX_THREADS);
    if (threads) tfm_set_num_threads((int)threads);
    tfm_dist *d = cli_dist_start();
    if (!d || d->size < 2) {
        rc = tfm_cli_fail(2, "bench allreduce: start it with mpirun -np N (N >= 2) from an MPI "
                             "build (make MPI=1)");
        if (d) d->agreed_error = 1;
        return cli_dist_end(d, rc);
    }
    rc = run(d, p, reps, warmup);
    if (rc) rc = tfm_cli_fail(1, "rank %d: %s", d->rank, tfm_last_error());
    return cli_dist_end(d, rc);
}
