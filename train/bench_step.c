/* tfm bench step: one training step (forward, loss, backward, Adam) timed on
 * random data, with exactly the presets, batches and token counting of
 * ../shared/bench/torch_transformer.py. */
#include <math.h>
#include <stdio.h>
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
} bench_batches;

static int bench_next(void *ctx, int64_t step, tfm_seq_batch *b, int64_t *n_tokens) {
    const bench_batches *d = ctx;
    int64_t k = (step - 1) % d->nb, B = d->B, S = d->S, T = d->T;
    *b = (tfm_seq_batch){
        B, S, T, d->src + k * B * S, d->tin + k * B * T, d->tout + k * B * T, d->spad, d->tpad};
    *n_tokens = B * T;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int tfm_bench_step(int argc, char **argv) {
    const char *preset_name = "toy", *precision = "fp32";
    int64_t threads = 0, steps = 0, warmup_steps = 3, seed = 0;
    flag_def flags[] = {
        {"preset", FLAG_STR, &preset_name, "toy, small or base (torch_transformer.py's)", 0},
        {"threads", FLAG_INT, &threads, "OpenMP threads (0: all cores)", 0},
        {"steps", FLAG_INT, &steps, "timed steps (0: 20, base 10)", 0},
        {"warmup-steps", FLAG_INT, &warmup_steps, "untimed steps first", 0},
        {"seed", FLAG_INT, &seed, "random seed", 0},
        {"precision", FLAG_STR, &precision,
         "GEMM arithmetic: fp32 or bf16 (bf16 inputs, fp32 sums)", 0},
    };
    int rc =
        flags_parse(flags, 6, argc, argv,
                    "tfm bench step --preset toy|small|base [--threads T] [--precision fp32|bf16]",
                    NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    const preset *p = tfm_bench_preset_find(preset_name);
    if (!p) return tfm_cli_fail(2, "--preset: '%s' is not toy, small or base", preset_name);
    tfm_precision prec;
    if (tfm_precision_parse(precision, &prec))
        return tfm_cli_fail(2, "--precision: '%s' is not fp32 or bf16", precision);
    if (threads < 0 || steps < 0 || warmup_steps < 0)
        return tfm_cli_fail(2, "bench step: negative count");
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
    bench_batches data = {B, S, T, NB, src, tin, tout, spad, tpad};
    tfm_batch_source source = {
        .ctx = &data, .next = bench_next, .max_b = B, .max_s = S, .max_t = T, .kind = "bench"};
    tfm_train_opts o;
    tfm_train_opts_default(&o);
    o.steps = warmup_steps + steps;
    o.seed = (uint64_t)seed;
    o.schedule = (tfm_schedule){TFM_SCHEDULE_NOAM, 1.0, 4000, c.d_model};
    o.quiet = 1;
    o.precision = prec;
    size_t arena = tfm_model_activation_bytes(&c, B, S, T);
    o.arena_bytes = arena;
    tfm_trainer tr;
    if (tfm_trainer_init(&tr, &o, &c, &source, NULL))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    printf("# tfm %s, gemm kernel %s, precision %s, threads %d, preset %s, params %lld, arena %.0f "
           "MB\n",
           TFM_VERSION, prec == TFM_BF16 ? tfm_gemm_bf16_kernel_name() : tfm_gemm_kernel_name(),
           tfm_precision_name(prec), tfm_num_threads(), p->name, (long long)tr.params->total_n,
           (double)arena / 1e6);
    double times[1024];
    int64_t n_times = 0, tokens = 0;
    double flops = flop_count(p);
    for (int64_t step = 1; step <= warmup_steps + steps && n_times < 1024; step++) {
        double t0 = tfm_now();
        if (tfm_trainer_step(&tr) < 0) return tfm_cli_fail(1, "%s", tfm_last_error());
        int64_t ntok = tr.last_tokens;
        double dt = tfm_now() - t0;
        if (step > warmup_steps) {
            times[n_times++] = dt;
            tokens = ntok;
        }
        if (step == 1 || step == warmup_steps + steps)
            printf("# step %lld loss %.4f step_ms %.1f\n", (long long)step, tr.last_loss, dt * 1e3);
    }
    qsort(times, (size_t)n_times, sizeof(double), cmp_double);
    double med =
        n_times % 2 ? times[n_times / 2] : 0.5 * (times[n_times / 2 - 1] + times[n_times / 2]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("# preset=%s precision=%s threads=%d tokens_per_step=%lld step_ms_median=%.2f "
           "step_ms_min=%.2f "
           "step_ms_max=%.2f gflop_per_step=%.3f arena_peak_mb=%.1f\n",
           p->name, tfm_precision_name(prec), tfm_num_threads(), (long long)tokens, med * 1e3,
           times[0] * 1e3, times[n_times - 1] * 1e3, flops / 1e9, (double)tr.tape.arena.peak / 1e6);
    printf("tokens_per_s=%.1f ms_per_step=%.2f gflops=%.2f peak_rss_mb=%.1f\n",
           (double)tokens / med, med * 1e3, flops / med / 1e9, (double)ru.ru_maxrss / 1024.0);
    tfm_free(src);
    tfm_free(tin);
    tfm_free(tout);
    tfm_free(spad);
    tfm_free(tpad);
    tfm_trainer_free(&tr);
    return 0;
}
