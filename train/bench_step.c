/* tfm bench step: one training step (forward, loss, backward, Adam) timed on
 * random data, with exactly the presets, batches and token counting of
 * ../shared/bench/torch_transformer.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"
#include "commands.h"
#include "flags.h"
#include "tfm/train.h"

typedef tfm_bench_preset preset;

static const preset PRESETS[] = {
    {"toy", 128, 4, 512, 2, 2, 16, 64, 12, 12},
    {"small", 256, 4, 1024, 3, 3, 8000, 64, 24, 24},
    {"base", 512, 8, 2048, 6, 6, 8000, 32, 32, 32},
};

const tfm_bench_preset *tfm_bench_preset_find(const char *name) {
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        if (!strcmp(PRESETS[i].name, name)) return &PRESETS[i];
    return NULL;
}

/* torch_transformer.py's flop_count(): 3 x forward matmul flops */
static double flop_count(const preset *p) {
    double B = (double)p->batch, S = (double)p->src_len, T = (double)p->tgt_len,
           d = (double)p->d_model, f = (double)p->d_ff, V = (double)p->vocab;
    double enc =
        (double)p->enc_layers * (8 * B * S * d * d + 4 * B * S * S * d + 4 * B * S * d * f);
    double dec =
        (double)p->dec_layers * (8 * B * T * d * d + 4 * B * T * T * d + 4 * B * T * d * d +
                                 4 * B * S * d * d + 4 * B * T * S * d + 4 * B * T * d * f);
    return 3 * (enc + dec + 2 * B * T * d * V);
}

/* The batches as a trainer batch source: batch (step - 1) mod NB. */
typedef struct {
    int64_t B, S, T, nb;
    const int32_t *src, *tin, *tout;
    const uint8_t *spad, *tpad;
    int64_t stride_s, stride_t; /* from one batch to the next (the global B * S, B * T) */
} bench_batches;

static int bench_next(void *ctx, int64_t step, tfm_seq_batch *b, int64_t *n_tokens) {
    const bench_batches *d = ctx;
    int64_t k = (step - 1) % d->nb, B = d->B, S = d->S, T = d->T;
    int64_t ss = d->stride_s ? d->stride_s : B * S, st = d->stride_t ? d->stride_t : B * T;
    *b = (tfm_seq_batch){B,       S,      T, d->src + k * ss, d->tin + k * st, d->tout + k * st,
                         d->spad, d->tpad};
    *n_tokens = B * T;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int64_t n) {
    qsort(x, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* Under mpirun: each rank takes its rows of every batch, and the trainer's
 * reduction hooks sum the gradients as tfm train does (buckets sent while
 * backward goes on, unless TFM_MPI_OVERLAP=0). */
typedef struct {
    tfm_dist *d;
    tfm_trainer *tr;
    double gather[2 * 1024], w[1024];
    double exposed;  /* this step: seconds the sum kept the step waiting after backward */
    double t_bwd0;   /* when backward began (the buckets can go out from then) */
    double backward; /* this step: seconds from the start of backward to its end */
} bench_dist;

static int bd_stats(bench_dist *b, tfm_step_stats *st) {
    double mine[2] = {st->loss, (double)st->n_tokens}, tokens = 0, loss = 0;
    if (b->d->allgather(b->d, mine, sizeof mine, b->gather)) return 1;
    for (int r = 0; r < b->d->size; r++) {
        b->w[r] = b->gather[2 * r + 1];
        tokens += b->w[r];
        loss += b->gather[2 * r] * b->w[r];
    }
    st->n_tokens = (int64_t)tokens;
    st->loss = loss / tokens;
    return 0;
}

static int bd_start(void *ctx, tfm_step_stats *st) {
    bench_dist *b = ctx;
    if (bd_stats(b, st)) return 1;
    b->t_bwd0 = tfm_now();
    if (!isfinite(st->loss)) return 0;
    return b->d->sum_start(b->d, b->tr->params->grad, b->w, 1.0 / (double)st->n_tokens);
}

static int bd_ready(void *ctx, float *grad, int64_t bucket, int64_t lo, int64_t hi) {
    bench_dist *b = ctx;
    (void)grad;
    (void)lo;
    (void)hi;
    return b->d->sum_bucket(b->d, bucket);
}

static int bd_reduce(void *ctx, float *grad, int64_t n, tfm_step_stats *st) {
    bench_dist *b = ctx;
    tfm_dist *d = b->d;
    double t0 = tfm_now();
    int rc = 0;
    b->backward = d->sum_bucket ? t0 - b->t_bwd0 : 0;
    if (!d->sum_bucket && bd_stats(b, st)) return 1;
    if (!isfinite(st->loss))
        memset(grad, 0, (size_t)n * sizeof(float));
    else if (d->sum_bucket)
        rc = d->sum_finish(d);
    else
        rc = d->weighted_sum(d, grad, n, b->w, 1.0 / (double)st->n_tokens);
    b->exposed = tfm_now() - t0;
    return rc;
}

/* The blocking sum of the same block (what the overlap hides), median ms. */
static int time_blocking_sum(tfm_dist *d, float *x, int64_t n, double *ms) {
    double t[7], all[1024], w[1024];
    for (int r = 0; r < d->size; r++) w[r] = 1;
    if (d->reserve(d, n)) return 1;
    for (int k = 0; k < 7; k++) {
        double zero = 0;
        if (d->allgather(d, &zero, sizeof zero, all)) return 1; /* start together */
        double t0 = tfm_now();
        if (d->weighted_sum(d, x, n, w, 1.0 / d->size)) return 1;
        t[k] = tfm_now() - t0;
        if (d->allgather(d, &t[k], sizeof t[k], all)) return 1;
        for (int r = 0; r < d->size; r++)
            if (all[r] > t[k]) t[k] = all[r];
    }
    *ms = median(t + 2, 5) * 1e3;
    return 0;
}

static int bench_step(int argc, char **argv, tfm_dist *dist);

int tfm_bench_step(int argc, char **argv) {
    tfm_dist *d = cli_dist_start(); /* under mpirun: the ranks share every batch */
    if (d && d->size > 1024) {
        d->agreed_error = 1;
        return cli_dist_end(d, tfm_cli_fail(2, "bench step: at most 1024 ranks"));
    }
    int rc = bench_step(argc, argv, d && d->size > 1 ? d : NULL);
    if (d && rc == 2) d->agreed_error = 1; /* usage errors are the same on every rank */
    return cli_dist_end(d, rc);
}

static int bench_step(int argc, char **argv, tfm_dist *dist) {
    const char *preset_name = "toy", *precision = "fp32";
    int64_t threads = 0, steps = 0, warmup_steps = 3, seed = 0, bucket = 0;
    flag_def flags[] = {
        {"preset", FLAG_STR, &preset_name, "toy, small or base (torch_transformer.py's)", 0},
        {"threads", FLAG_INT, &threads, "OpenMP threads (0: all cores)", 0},
        {"steps", FLAG_INT, &steps, "timed steps (0: 20, base 10)", 0},
        {"warmup-steps", FLAG_INT, &warmup_steps, "untimed steps first", 0},
        {"seed", FLAG_INT, &seed, "random seed", 0},
        {"reduce-bucket", FLAG_INT, &bucket,
         "under mpirun: gradient floats per bucket summed while backward goes on (0: 262144)", 0},
        {"precision", FLAG_STR, &precision,
         "GEMM arithmetic: fp32 or bf16 (bf16 inputs, fp32 sums)", 0},
    };
    int rc =
        flags_parse(flags, 7, argc, argv,
                    "tfm bench step --preset toy|small|base [--threads T] [--precision fp32|bf16]",
                    NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    const preset *p = tfm_bench_preset_find(preset_name);
    if (!p) return tfm_cli_fail(2, "--preset: '%s' is not toy, small or base", preset_name);
    tfm_precision prec;
    if (tfm_precision_parse(precision, &prec))
        return tfm_cli_fail(2, "--precision: '%s' is not fp32 or bf16", precision);
    /* each count on its own, bounded so that warmup + steps cannot overflow */
    const struct {
        const char *name;
        int64_t value, most;
    } counts[] = {{"threads", threads, 1024},
                  {"steps", steps, 1000000},
                  {"warmup-steps", warmup_steps, 1000000},
                  {"reduce-bucket", bucket, INT64_C(1) << 40}};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        if (counts[i].value < 0 || counts[i].value > counts[i].most)
            return tfm_cli_fail(2, "--%s %lld: must be in [0, %lld]", counts[i].name,
                                (long long)counts[i].value, (long long)counts[i].most);
    if (threads) tfm_set_num_threads((int)threads);
    if (!steps) steps = !strcmp(p->name, "base") ? 10 : 20;

    tfm_model_config c;
    tfm_model_config_default(&c);
    c.vocab = p->vocab;
    c.d_model = p->d_model;
    c.n_heads = p->heads;
    c.d_ff = p->d_ff;
    c.enc_layers = p->enc_layers;
    c.dec_layers = p->dec_layers;
    c.max_len = 1024;
    c.dropout = 0.1f;
    c.ln_eps = 1e-6f;
    /* 8 random batches as make_batches() with min_len_frac 1 (no padding) */
    enum { NB = 8 };
    int64_t B = p->batch, S = p->src_len, T = p->tgt_len;
    int32_t *src = tfm_alloc((size_t)(NB * B * S) * sizeof(int32_t));
    int32_t *tin = tfm_alloc((size_t)(NB * B * T) * sizeof(int32_t));
    int32_t *tout = tfm_alloc((size_t)(NB * B * T) * sizeof(int32_t));
    uint8_t *spad = tfm_calloc((size_t)(B * S)), *tpad = tfm_calloc((size_t)(B * T));
    tfm_rng rng;
    tfm_rng_seed(&rng, (uint64_t)seed + 1);
    for (int64_t k = 0; k < NB * B; k++) {
        for (int64_t i = 0; i < S; i++)
            src[k * S + i] = i == S - 1
                                 ? TFM_EOS_ID
                                 : 3 + (int32_t)tfm_rng_below(&rng, (uint64_t)(p->vocab - 3));
        int32_t y[4096];
        y[0] = TFM_BOS_ID;
        for (int64_t i = 1; i <= T; i++)
            y[i] = i == T ? TFM_EOS_ID : 3 + (int32_t)tfm_rng_below(&rng, (uint64_t)(p->vocab - 3));
        for (int64_t i = 0; i < T; i++) {
            tin[k * T + i] = y[i];
            tout[k * T + i] = y[i + 1];
        }
    }
    /* the library trainer's step: Noam (factor 1, warmup 4000), label
     * smoothing 0.1, Adam */
    bench_batches data = {B, S, T, NB, src, tin, tout, spad, tpad, B * S, B * T};
    int rank = dist ? dist->rank : 0, ranks = dist ? dist->size : 1;
    if (dist) { /* this rank's rows of every batch: the global batch is the preset's */
        int64_t lo = B * rank / ranks, hi = B * (rank + 1) / ranks;
        if (hi <= lo)
            return tfm_cli_fail(2, "bench step: %d ranks for a batch of %lld", ranks, (long long)B);
        data.B = hi - lo;
        data.src += lo * S;
        data.tin += lo * T;
        data.tout += lo * T;
    }
    tfm_batch_source source = {
        .ctx = &data, .next = bench_next, .max_b = B, .max_s = S, .max_t = T, .kind = "bench"};
    tfm_train_opts o;
    tfm_train_opts_default(&o);
    o.steps = warmup_steps + steps;
    o.seed = (uint64_t)seed;
    o.schedule =
        (tfm_schedule){.kind = TFM_SCHEDULE_NOAM, .lr = 1.0, .warmup = 4000, .d_model = c.d_model};
    o.quiet = 1;
    o.precision = prec;
    o.bucket_floats = bucket;
    size_t arena = tfm_model_activation_bytes(&c, B, S, T);
    o.arena_bytes = arena;
    static bench_dist bd; /* large: not on the stack */
    memset(&bd, 0, sizeof bd);
    bd.d = dist;
    tfm_train_hooks hooks = {.ctx = &bd};
    if (dist) {
        hooks.reduce = bd_reduce;
        if (dist->sum_bucket) {
            hooks.reduce_start = bd_start;
            hooks.grad_ready = bd_ready;
        }
    }
    tfm_trainer tr;
    if (tfm_trainer_init(&tr, &o, &c, &source, &hooks))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    bd.tr = &tr;
    if (dist) {
        /* each rank its own dropout stream, as tfm train */
        tr.tape.seed = o.seed ^ ((uint64_t)rank * 0x9E3779B97F4A7C15ull);
        if (dist->sum_bucket && dist->reserve_buckets(dist, tr.bucket_at, tr.n_buckets))
            return tfm_cli_fail(1, "rank %d: %s", rank, tfm_last_error());
        if (!dist->sum_bucket && dist->reserve(dist, tr.params->total_n))
            return tfm_cli_fail(1, "rank %d: %s", rank, tfm_last_error());
    }
    if (rank) { /* rank 0 speaks for all */
        if (!freopen("/dev/null", "w", stdout)) return tfm_cli_fail(1, "/dev/null: cannot open");
    }
    printf("# tfm %s, gemm kernel %s, precision %s, threads %d, preset %s, params %lld, arena %.0f "
           "MB\n",
           TFM_VERSION, prec == TFM_BF16 ? tfm_gemm_bf16_kernel_name() : tfm_gemm_kernel_name(),
           tfm_precision_name(prec), tfm_num_threads(), p->name, (long long)tr.params->total_n,
           (double)arena / 1e6);
    double times[1024], exposed[1024], backward[1024];
    int64_t n_times = 0, tokens = 0;
    double flops = flop_count(p);
    for (int64_t step = 1; step <= warmup_steps + steps && n_times < 1024; step++) {
        double t0 = tfm_now();
        if (tfm_trainer_step(&tr) < 0) return tfm_cli_fail(1, "%s", tfm_last_error());
        int64_t ntok = tr.last_tokens;
        double dt = tfm_now() - t0;
        if (dist) {
            /* the rank that finished backward last waits only for the
             * transfers still open, not for the others' backward */
            double mine[2] = {bd.exposed, bd.backward}, all[2 * 1024], least = bd.exposed,
                   longest = bd.backward;
            if (dist->allgather(dist, mine, sizeof mine, all))
                return tfm_cli_fail(1, "rank %d: %s", rank, tfm_last_error());
            for (int r = 0; r < ranks; r++) {
                if (all[2 * r] < least) least = all[2 * r];
                if (all[2 * r + 1] > longest) longest = all[2 * r + 1];
            }
            bd.exposed = least;
            bd.backward = longest;
        }
        if (step > warmup_steps) {
            exposed[n_times] = bd.exposed;
            backward[n_times] = bd.backward;
            times[n_times++] = dt;
            tokens = ntok;
        }
        if (step == 1 || step == warmup_steps + steps)
            printf("# step %lld loss %.4f step_ms %.1f\n", (long long)step, tr.last_loss, dt * 1e3);
    }
    double med = median(times, n_times);
    /* Under mpirun: how long the step still waits for the gradient sum after
     * backward on the rank that finished backward last (exposed: the others
     * also wait for its backward), against the blocking sum of the same block
     * alone (allreduce); hidden_frac = 1 - exposed / allreduce. */
    char mpi[256] = "";
    if (dist) {
        double exposed_ms = median(exposed, n_times) * 1e3, sum_ms = 0;
        double backward_ms = median(backward, n_times) * 1e3;
        if (time_blocking_sum(dist, tr.params->grad, tr.params->total_n, &sum_ms))
            return tfm_cli_fail(1, "rank %d: %s", rank, tfm_last_error());
        double hidden = sum_ms > 0 ? 1 - exposed_ms / sum_ms : 0;
        snprintf(mpi, sizeof mpi,
                 " ranks=%d buckets=%lld bytes_per_step=%.0f allreduce_ms=%.3f exposed_ms=%.3f "
                 "hidden_frac=%.3f backward_ms=%.3f",
                 ranks, dist->sum_bucket ? (long long)tr.n_buckets : 0LL,
                 (double)tr.params->total_n * sizeof(float), sum_ms, exposed_ms,
                 hidden < 0 ? 0 : hidden, backward_ms);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("# preset=%s precision=%s threads=%d tokens_per_step=%lld step_ms_median=%.2f "
           "step_ms_min=%.2f "
           "step_ms_max=%.2f gflop_per_step=%.3f arena_peak_mb=%.1f\n",
           p->name, tfm_precision_name(prec), tfm_num_threads(), (long long)tokens, med * 1e3,
           times[0] * 1e3, times[n_times - 1] * 1e3, flops / 1e9, (double)tr.tape.arena.peak / 1e6);
    printf("tokens_per_s=%.1f ms_per_step=%.2f gflops=%.2f peak_rss_mb=%.1f%s\n",
           (double)tokens / med, med * 1e3, flops / med / 1e9, (double)ru.ru_maxrss / 1024.0, mpi);
    fflush(stdout);
    tfm_free(src);
    tfm_free(tin);
    tfm_free(tout);
    tfm_free(spad);
    tfm_free(tpad);
    tfm_trainer_free(&tr);
    return 0;
}
