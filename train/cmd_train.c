/* tfm train: flags -> the library trainer (tfm/train.h) -> a summary line.
 * Toy tasks (copy, reverse) and parallel corpora. */
#include <float.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "flags.h"
#include "tfm/average.h"
#include "tfm/config.h"
#include "tfm/train.h"

static const char *USAGE = "tfm train --task copy|reverse [options]\n       tfm train --src-train "
                           "F --tgt-train F [--src-valid F --tgt-valid F] --save DIR [options]";

#define TRAIN_MAX_FLAGS 112

/* Everything the flags set; converted into the library's structs below. */
typedef struct {
    /* toy task */
    const char *task;
    int64_t vocab, min_len, max_len;
    int annotated;
    int64_t eval_n, batch;
    /* corpus */
    const char *src_train, *tgt_train, *src_valid, *tgt_valid;
    int64_t batch_tokens, max_tokens_len, bpe_merges, valid_every, early_stop, valid_max, beam;
    int exact_vocab;
    double alpha, max_minutes, bpe_dropout;
    /* model: the settings table of tfm/nn.h, plus --layers for both stacks */
    tfm_model_config model;
    int64_t layers;
    /* optimizer and schedule */
    int64_t steps, warmup, cooldown, accum;
    double ema;
    const char *schedule;
    double lr, lr_factor, label_smoothing, clip_norm, weight_decay;
    /* run */
    int64_t seed, threads, log_every, save_every, keep, max_bad_steps, arena_mb, reduce_bucket,
        average_last;
    const char *save, *init;
    const char *precision, *bpe_dropout_side, *emb_init, *beam_stop;
    int resume, quiet, check_numerics;
    flag_choice choice[2]; /* the FLAG_CHOICE model settings */
    int n_choice;
} train_cli;

static void defaults(train_cli *o) {
    memset(o, 0, sizeof *o);
    o->vocab = 13; /* pad, <s>, </s> + 10 symbols */
    o->min_len = 1;
    o->max_len = 10;
    o->eval_n = 1000;
    o->batch = 64;
    o->batch_tokens = 4096;
    o->max_tokens_len = 100;
    o->valid_every = 500;
    o->beam = 1;
    o->exact_vocab = 1;
    o->alpha = 0.6;
    o->beam_stop = "finished";
    o->bpe_merges = 8000;
    o->bpe_dropout_side = "both";
    tfm_model_config_default(&o->model);
    o->layers = o->model.enc_layers;
    tfm_train_opts t;
    tfm_train_opts_default(&t);
    o->steps = t.steps;
    o->accum = 1;
    o->warmup = t.schedule.warmup;
    o->schedule = tfm_schedule_name(t.schedule.kind);
    o->lr = 5e-4;
    o->lr_factor = t.schedule.lr;
    o->label_smoothing = t.label_smoothing;
    o->seed = (int64_t)t.seed;
    o->log_every = t.log_every;
    o->keep = t.keep;
    o->max_bad_steps = t.max_bad_steps;
    o->precision = tfm_precision_name(t.precision);
    o->emb_init = tfm_emb_init_name(t.emb_init);
}

/* tfm_decoder_start by index */
static const char *const START_NAMES[] = {"bos", "zero", NULL};
_Static_assert(TFM_START_BOS == 0 && TFM_START_ZERO == 1, "START_NAMES follows tfm_decoder_start");

static void add_setting(train_cli *o, flag_def *f, const char *name, void *value, const char *help,
                        flag_type type, const char *const *names) {
    if (type == FLAG_CHOICE) {
        TFM_ASSERT(o->n_choice < (int)(sizeof o->choice / sizeof o->choice[0]));
        o->choice[o->n_choice] = (flag_choice){value, names};
        value = &o->choice[o->n_choice++];
    }
    *f = (flag_def){name, type, value, help, 0};
}

static int make_flags(train_cli *o, flag_def *f) {
    int n = 0;
#define I(name, field, help) f[n++] = (flag_def){name, FLAG_INT, &o->field, help, 0}
#define F(name, field, help)                                                                       \
    f[n++] = (flag_def) { name, FLAG_FLOAT, &o->field, help, 0 }
#define S(name, field, help)                                                                       \
    f[n++] = (flag_def) { name, FLAG_STR, &o->field, help, 0 }
#define B(name, field, help)                                                                       \
    f[n++] = (flag_def) { name, FLAG_BOOL, &o->field, help, 0 }
    S("task", task, "toy task: copy or reverse");
    I("vocab", vocab, "toy vocabulary incl. pad, <s>, </s>");
    I("min-len", min_len, "toy: shortest sequence");
    I("max-len", max_len, "toy: longest sequence");
    B("annotated", annotated, "toy: the Annotated Transformer's copy task (benchmark setting)");
    S("src-train", src_train, "corpus: source training text");
    S("tgt-train", tgt_train, "corpus: target training text");
    S("src-valid", src_valid, "corpus: source validation text");
    S("tgt-valid", tgt_valid, "corpus: target validation text");
    I("batch-tokens", batch_tokens, "corpus: tokens per batch (padded)");
    I("max-tokens", max_tokens_len, "corpus: drop pairs longer than this many subwords");
    I("bpe-merges", bpe_merges, "corpus: BPE merges to learn (joint)");
    F("bpe-dropout", bpe_dropout,
      "corpus: BPE-dropout: segment the training text anew every epoch, leaving out each merge "
      "with this probability, e.g. 0.1 (validation and translation segment as usual; 0: off)");
    S("bpe-dropout-side", bpe_dropout_side,
      "corpus: the lines --bpe-dropout segments anew: both, or source (targets as usual)");
    B("exact-vocab", exact_vocab,
      "corpus: also give an id to every symbol the BPE merges pass through, so that tfm export's "
      "tokenizer.json segments exactly as tfm (false: the vocabulary of runs before 2026-11-29)");
    I("valid-every", valid_every, "corpus: validate every N steps");
    I("valid-max", valid_max, "corpus: decode at most N validation sentences (0: all)");
    I("early-stop", early_stop,
      "corpus: stop after N validations without BLEU improvement (0: off)");
    F("max-minutes", max_minutes, "stop after this much training time (0: off)");
    I("beam", beam, "validation decoding beam size");
    F("alpha", alpha, "beam length penalty (GNMT)");
    S("beam-stop", beam_stop,
      "when validation's beam search ends a sentence: finished (once --beam hypotheses have "
      "finished) or bound (once no unfinished hypothesis can finish above the best finished "
      "one: never a lower score, more steps); --beam 1 is greedy with either (tfm translate's "
      "--beam-stop)");
    /* the model settings, from the one list in tfm/nn.h */
#define FLAG_TYPE_INT FLAG_INT, NULL
#define FLAG_TYPE_FLOAT FLAG_F32, NULL
#define FLAG_TYPE_BOOL FLAG_BOOL, NULL
#define FLAG_TYPE_START FLAG_CHOICE, START_NAMES
#define FLAG_TYPE_NEWBOOL FLAG_BOOL, NULL
#define FLAG_TYPE_NEWFLOAT FLAG_F32, NULL
#define X(type, field, flag, def, must_match, help)                                                \
    if (flag) add_setting(o, &f[n++], flag, &o->model.field, help, FLAG_TYPE_##type);
    TFM_MODEL_SETTINGS(X)
#undef X
    I("layers", layers, "encoder and decoder layers (unless --enc-layers/--dec-layers)");
    I("steps", steps, "optimizer updates");
    I("batch", batch, "toy: sequences per batch");
    S("schedule", schedule, "learning-rate schedule: noam, inverse-sqrt or constant");
    I("warmup", warmup, "warmup steps (noam, inverse-sqrt)");
    I("accum", accum,
      "batches per update (gradient accumulation): the gradient of N batches' tokens together, "
      "with the memory of one batch");
    F("ema", ema,
      "keep an exponential moving average of the weights with this decay, e.g. 0.999: "
      "validation scores it and best.tfm holds it (0: off)");
    I("cooldown", cooldown,
      "decay the learning rate linearly towards zero over the last N of --steps, after any "
      "schedule (0: off; a run stopped earlier, e.g. by --max-minutes, never reaches it)");
    F("lr", lr, "peak learning rate (inverse-sqrt) or the rate (constant); noam: --lr-factor");
    F("lr-factor", lr_factor,
      "Noam factor: lr = factor * d^-0.5 * min(s^-0.5, s*w^-1.5) (toy: 0.5 unless given)");
    F("label-smoothing", label_smoothing, "label smoothing");
    F("clip-norm", clip_norm, "clip the global gradient norm (0: off)");
    F("weight-decay", weight_decay, "AdamW decoupled weight decay on matrices (0: off)");
    I("seed", seed, "random seed (weights, data, dropout)");
    S("emb-init", emb_init,
      "how the embedding tables start: xavier (uniform, as every matrix) or normal (standard "
      "deviation d-model^-0.5, as fairseq: unit variance after the sqrt(d-model) scale)");
    I("threads", threads, "OpenMP threads (0: all cores)");
    I("eval-n", eval_n, "toy: held-out sequences to evaluate");
    I("log-every", log_every, "progress line every N steps when not on a terminal");
    I("save-every", save_every, "checkpoint every N steps (0: only at the end)");
    I("keep", keep, "checkpoints to keep");
    I("average-last", average_last,
      "at the end, write averaged.tfm in --save: the mean of the last N checkpoints (--save-every, "
      "validations), scored on the validation set (0: off)");
    S("init", init,
      "start from this checkpoint's weights: a fresh optimizer and step 0, the same model "
      "configuration (a corpus run takes the BPE and vocabulary beside it, and the "
      "--bpe-merges and --exact-vocab that made them)");
    I("max-bad-steps", max_bad_steps, "stop after N non-finite steps in a row");
    I("arena-mb", arena_mb, "activation arena in MB (0: estimate)");
    I("reduce-bucket", reduce_bucket,
      "under mpirun: gradient floats per bucket sent while backward goes on (0: 262144)");
    S("save", save, "run directory: checkpoints, config.txt, train.log, metrics.csv");
    B("resume", resume, "continue from the newest good checkpoint in --save");
    B("quiet", quiet, "no progress output");
    B("check-numerics", check_numerics, "check every op for NaN/Inf and name the first");
    S("precision", precision,
      "GEMM arithmetic of the step and validation: fp32 or bf16 (bf16 inputs, fp32 sums; "
      "weights, gradients, Adam, norms, softmax and loss stay fp32)");
#undef I
#undef F
#undef S
#undef B
    TFM_ASSERT(n <= TRAIN_MAX_FLAGS);
    return n;
}

/* Flag values that are wrong whatever the task (usage errors, exit 2). */
static int check_flags(const train_cli *o) {
#define NEED(cond, ...)                                                                            \
    if (!(cond)) return tfm_cli_fail(2, __VA_ARGS__)
    NEED(o->steps >= 0, "--steps: must not be negative");
    /* saved as an unsigned integer in every checkpoint and read back on resume */
    NEED(o->seed >= 0, "--seed: must not be negative");
    NEED(o->batch >= 1 && o->batch <= 1000000, "--batch: must be between 1 and 1000000");
    NEED(o->warmup >= 1, "--warmup: must be at least 1");
    NEED(o->accum >= 1 && o->accum <= 1000000, "--accum: must be between 1 and 1000000");
    NEED(o->ema == 0 || (o->ema > 0 && o->ema < 1), "--ema: must be 0 (off) or between 0 and 1");
    NEED(o->cooldown >= 0 && o->cooldown <= o->steps,
         "--cooldown: must be between 0 and --steps (%lld)", (long long)o->steps);
    /* the rates are floats: above FLT_MAX they would be inf, and every
     * update NaN */
    NEED(o->lr_factor > 0, "--lr-factor: must be positive");
    NEED(o->lr_factor <= FLT_MAX, "--lr-factor: at most %g (a float)", FLT_MAX);
    NEED(o->lr > 0, "--lr: must be positive");
    NEED(o->lr <= FLT_MAX, "--lr: at most %g (a float)", FLT_MAX);
    NEED(tfm_emb_init_parse(o->emb_init) >= 0, "--emb-init: '%s' is not xavier or normal",
         o->emb_init);
    NEED(tfm_schedule_parse(o->schedule) >= 0,
         "--schedule: '%s' is not a schedule (noam, inverse-sqrt, constant)", o->schedule);
    NEED(o->label_smoothing >= 0 && o->label_smoothing < 1, "--label-smoothing: must be in [0, 1)");
    NEED(o->model.dropout >= 0 && o->model.dropout < 1, "--dropout: must be in [0, 1)");
    NEED(o->model.ffn_dropout == -1 || (o->model.ffn_dropout >= 0 && o->model.ffn_dropout < 1),
         "--ffn-dropout: must be in [0, 1), or -1 (the rate of --dropout)");
    NEED(o->model.attn_dropout >= 0 && o->model.attn_dropout < 1,
         "--attn-dropout: must be in [0, 1)");
    NEED(o->clip_norm >= 0, "--clip-norm: must not be negative");
    NEED(o->weight_decay >= 0, "--weight-decay: must not be negative");
    NEED(o->weight_decay <= FLT_MAX, "--weight-decay: at most %g (a float)", FLT_MAX);
    /* tfm translate's bounds; inf failed at the first validation */
    NEED(o->alpha >= 0, "--alpha: must not be negative");
    NEED(o->alpha <= FLT_MAX, "--alpha: at most %g (a float)", FLT_MAX);
    tfm_beam_stop stop;
    NEED(!tfm_beam_stop_parse(o->beam_stop, &stop), "--beam-stop: '%s' is not finished or bound",
         o->beam_stop);
    NEED(o->threads >= 0 && o->threads <= 1024, "--threads: must be between 0 and 1024");
    NEED(o->keep >= 1, "--keep: must be at least 1");
    NEED(o->log_every >= 1, "--log-every: must be at least 1");
    NEED(o->save_every >= 0, "--save-every: must not be negative");
    NEED(o->average_last >= 0, "--average-last: must not be negative");
    NEED(o->average_last <= TFM_AVERAGE_MAX, "--average-last: at most %d", TFM_AVERAGE_MAX);
    NEED(o->average_last == 0 || o->save, "--average-last needs --save DIR");
    NEED(o->average_last == 0 || o->save_every > 0 || o->src_valid,
         "--average-last: no checkpoints to average: give --save-every N (or validate)");
    NEED(o->max_bad_steps >= 1, "--max-bad-steps: must be at least 1");
    /* MB to bytes must not wrap (2^45 MB became 0, "estimate") */
    NEED(o->arena_mb >= 0, "--arena-mb: must not be negative");
    NEED((uint64_t)o->arena_mb <= SIZE_MAX >> 20, "--arena-mb: at most %llu",
         (unsigned long long)(SIZE_MAX >> 20));
    NEED(o->reduce_bucket >= 0, "--reduce-bucket: must not be negative");
    tfm_precision prec;
    NEED(tfm_precision_parse(o->precision, &prec) == 0, "--precision: '%s' is not fp32 or bf16",
         o->precision);
    NEED(o->eval_n >= 1, "--eval-n: must be at least 1");
    NEED(!o->resume || o->save, "--resume needs --save DIR");
    NEED(o->batch_tokens >= 16, "--batch-tokens: must be at least 16");
    NEED(o->max_tokens_len >= 1 && o->max_tokens_len <= TFM_MAX_POSITIONS,
         "--max-tokens: must be between 1 and %lld", (long long)TFM_MAX_POSITIONS);
    NEED(o->beam >= 1 && o->beam <= 64, "--beam: must be between 1 and 64");
    NEED(o->valid_every >= 1, "--valid-every: must be positive");
    NEED(o->early_stop >= 0, "--early-stop: must not be negative");
    NEED(o->valid_max >= 0, "--valid-max: must not be negative");
    NEED(o->max_minutes >= 0, "--max-minutes: must not be negative");
    NEED(o->bpe_merges >= 1, "--bpe-merges: must be at least 1");
    NEED(o->bpe_dropout >= 0 && o->bpe_dropout < 1, "--bpe-dropout: must be in [0, 1)");
    NEED(!strcmp(o->bpe_dropout_side, "both") || !strcmp(o->bpe_dropout_side, "source"),
         "--bpe-dropout-side: '%s' is not both or source", o->bpe_dropout_side);
#undef NEED
    return 0;
}

/* --init takes the bpe.codes and vocab.txt beside its checkpoint: the run's
 * --bpe-merges and --exact-vocab, unless given, are those of the run that
 * made them (the config.txt there), so that this run's config.txt records
 * what it used; given ones must agree (tfm_train_corpus checks). */
typedef struct {
    train_cli *c;
    flag_def *merges, *exact;
} init_settings;

static int on_init_setting(const char *key, const char *value, const char *where, void *ctx) {
    init_settings *s = ctx;
    char *end;
    (void)where;
    if (!strcmp(key, "bpe-merges") && !s->merges->set) {
        long long v = strtoll(value, &end, 10);
        if (*value && !*end && v >= 1) s->c->bpe_merges = v;
    } else if (!strcmp(key, "exact-vocab") && !s->exact->set) {
        if (!strcmp(value, "true")) s->c->exact_vocab = 1;
        if (!strcmp(value, "false")) s->c->exact_vocab = 0;
    }
    return 0;
}

static void adopt_init_settings(train_cli *c, flag_def *flags, int n_flags) {
    char *dir = tfm_model_text_dir(c->init);
    char *path = dir ? tfm_path_join(dir, "config.txt") : NULL;
    init_settings s = {c, flags_find(flags, n_flags, "bpe-merges"),
                       flags_find(flags, n_flags, "exact-vocab")};
    /* no config.txt (an export) or an unreadable one: the flags stay as they
     * are, and tfm_train_corpus reports what it cannot read */
    if (path && access(path, F_OK) == 0) tfm_config_read(path, on_init_setting, &s);
    free(path);
    free(dir);
}

/* The resolved flags as config.txt text (malloc'd). */
static char *config_text(const flag_def *flags, int n_flags) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    flags_write_config(f, flags, n_flags);
    fclose(f);
    return text;
}

static void to_train_opts(const train_cli *c, const char *config, tfm_train_opts *o) {
    tfm_train_opts_default(o);
    o->steps = c->steps;
    o->seed = (uint64_t)c->seed;
    o->emb_init = tfm_emb_init_parse(c->emb_init); /* checked by check_flags */
    o->schedule.kind = (tfm_schedule_kind)tfm_schedule_parse(c->schedule);
    o->schedule.lr = o->schedule.kind == TFM_SCHEDULE_NOAM ? c->lr_factor : c->lr;
    o->schedule.warmup = c->warmup;
    o->schedule.cooldown = c->cooldown;
    o->accum = c->accum;
    o->ema = c->ema;
    o->adam.weight_decay = (float)c->weight_decay;
    o->clip_norm = (float)c->clip_norm;
    o->label_smoothing = (float)c->label_smoothing;
    o->max_bad_steps = c->max_bad_steps;
    o->arena_bytes = (size_t)c->arena_mb << 20;
    o->bucket_floats = c->reduce_bucket;
    o->check_numerics = c->check_numerics;
    tfm_precision_parse(c->precision, &o->precision); /* checked by check_flags */
    o->threads = (int)c->threads;
    o->run_dir = c->save;
    o->resume = c->resume;
    o->config_text = config;
    o->save_every = c->save_every;
    o->keep = c->keep;
    o->average_last = c->average_last;
    o->init_from = c->init;
    o->log_every = c->log_every;
    o->quiet = c->quiet;
    o->valid_every = c->valid_every;
    o->early_stop = c->early_stop;
    o->max_minutes = c->max_minutes;
}

/* data parallelism (mpirun with a `make MPI=1` build); NULL: one process */
static tfm_dist *g_dist;

/* SIGINT/SIGTERM: the first asks the trainer to finish the step, save and
 * return (then the program skips the held-out evaluation and exits
 * 128 + signal); a second one, a second or more later, exits at once:
 * checkpoints are written atomically, so the newest complete one is safe
 * either way. Under mpirun
 * the ranks agree on the step to stop after (at the next step's exchange). */
static volatile sig_atomic_t g_signal;
static struct timespec g_first_signal; /* written and read by the handler only */
static void on_signal(int sig) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now); /* async-signal-safe */
    if (g_signal) {
        /* one signal delivered twice (GNU timeout sends SIGTERM to the child
         * and then to its process group) is not the user's second one */
        double apart = (double)(now.tv_sec - g_first_signal.tv_sec) +
                       1e-9 * (double)(now.tv_nsec - g_first_signal.tv_nsec);
        if (apart < 1.0) return;
        _exit(128 + sig);
    }
    g_first_signal = now;
    g_signal = sig;
    if (g_dist)
        g_dist->stop_pending = 1;
    else
        tfm_trainer_request_stop();
}

/* An error of the run: under mpirun named by rank, and printed once when it
 * is the same on every rank. */
static int train_fail(void) {
    if (!g_dist) return tfm_cli_fail(1, "%s", tfm_last_error());
    if (g_dist->agreed_error && g_dist->rank != 0) return 1;
    if (g_dist->agreed_error) return tfm_cli_fail(1, "%s", tfm_last_error());
    return tfm_cli_fail(1, "rank %d: %s", g_dist->rank, tfm_last_error());
}

static int train_corpus(train_cli *c, const tfm_train_opts *o) {
    tfm_corpus_task task = {
        .src_train = c->src_train,
        .tgt_train = c->tgt_train,
        .src_valid = c->src_valid,
        .tgt_valid = c->tgt_valid,
        .bpe_merges = c->bpe_merges,
        .batch_tokens = c->batch_tokens,
        .max_tokens = c->max_tokens_len,
        .valid_max = c->valid_max,
        .inexact_vocab = !c->exact_vocab,
        .bpe_dropout = c->bpe_dropout,
        .bpe_dropout_source_only = !strcmp(c->bpe_dropout_side, "source"),
        .decode = {.beam = c->beam, .alpha = c->alpha, .batch = 64, .precision = o->precision},
        .dist = g_dist};
    tfm_beam_stop_parse(c->beam_stop, &task.decode.beam_stop); /* checked by check_flags */
    tfm_corpus_summary sum;
    if (tfm_train_corpus(&task, o, &c->model, &sum)) return train_fail();
    if (g_signal) {
        /* every rank stopped after the same step: nothing to abort */
        if (g_dist) g_dist->agreed_error = 1;
        return 128 + g_signal;
    }
    if (g_dist && g_dist->rank != 0) return 0;
    printf("steps=%lld epochs=%lld best_bleu=%.2f seconds=%.1f tokens_per_s=%.0f\n",
           (long long)sum.steps, (long long)sum.epochs, sum.best_bleu, sum.seconds,
           sum.tokens_per_s);
    return 0;
}

static int train_toy(train_cli *c, const tfm_train_opts *o) {
    if (g_dist) {
        g_dist->agreed_error = 1;
        tfm_set_error("train: --task under mpirun (%d processes): data parallelism needs a "
                      "corpus (--src-train); run toy tasks as one process",
                      g_dist->size);
        return train_fail();
    }
    tfm_toy_config tc = {
        .vocab = c->vocab, .min_len = c->min_len, .max_len = c->max_len, .annotated = c->annotated};
    tc.task = !strcmp(c->task, "copy") ? TFM_TOY_COPY : TFM_TOY_REVERSE;
    tfm_model_config mc = c->model;
    mc.vocab = c->vocab;
    tfm_toy_source toy;
    if (tfm_toy_source_init(&toy, &tc, c->batch, o->seed))
        return tfm_cli_fail(2, "%s", tfm_last_error());
    tfm_trainer tr;
    if (tfm_trainer_init(&tr, o, &mc, &toy.source, NULL)) {
        tfm_toy_source_free(&toy);
        return tfm_cli_fail(1, "%s", tfm_last_error());
    }
    tfm_trainer_log(&tr, "task %s, vocab %lld, lengths %lld..%lld%s, %lld parameters, %d threads\n",
                    c->task, (long long)tc.vocab, (long long)tc.min_len, (long long)tc.max_len,
                    tc.annotated ? " (annotated copy task)" : "", (long long)tr.n_params,
                    tfm_num_threads());
    int rc = 0;
    double exact = 0, acc = 0;
    if (tfm_train(&tr)) {
        rc = tfm_cli_fail(1, "%s", tfm_last_error());
    } else if (g_signal) {
        rc = 128 + g_signal; /* saved; no held-out evaluation */
    } else {
        if (tr.ema) tfm_trainer_ema_swap(&tr); /* --ema: the average is the model */
        if (!c->quiet) printf("sample decodes (held-out):\n"); /* --quiet: the summary only */
        if (tfm_toy_evaluate(&tr.model, &tc, o->seed, c->eval_n, c->batch < 100 ? 100 : c->batch,
                             &exact, &acc, c->quiet ? NULL : stdout, 5))
            rc = tfm_cli_fail(1, "%s", tfm_last_error());
        else
            printf("exact_match=%.3f token_acc=%.3f steps=%lld seconds=%.1f tokens_per_s=%.0f\n",
                   exact, acc, (long long)tr.step, tr.train_seconds,
                   tr.train_seconds > 0 ? (double)tr.tokens / tr.train_seconds : 0.0);
    }
    tfm_trainer_free(&tr);
    tfm_toy_source_free(&toy);
    return rc;
}

int tfm_cmd_train(int argc, char **argv) {
    train_cli c;
    defaults(&c);
    flag_def flags[TRAIN_MAX_FLAGS];
    int n_flags = make_flags(&c, flags);
    int rc = flags_parse(flags, n_flags, argc, argv, USAGE, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (flags_find(flags, n_flags, "layers")->set) {
        if (!flags_find(flags, n_flags, "enc-layers")->set) c.model.enc_layers = c.layers;
        if (!flags_find(flags, n_flags, "dec-layers")->set) c.model.dec_layers = c.layers;
    }
    if (c.src_train) {
        if (!c.tgt_train) return tfm_cli_fail(2, "train: --src-train needs --tgt-train");
        if (!c.src_valid != !c.tgt_valid)
            return tfm_cli_fail(2, "train: give both --src-valid and --tgt-valid");
        if (!c.save)
            return tfm_cli_fail(2,
                                "train: a corpus run needs --save DIR (checkpoints, vocabulary)");
    } else {
        if (!c.task)
            return tfm_cli_fail(
                2, "train: give --task copy|reverse or --src-train/--tgt-train (see --help)");
        if (strcmp(c.task, "copy") && strcmp(c.task, "reverse"))
            return tfm_cli_fail(2, "--task: '%s' is not a toy task (copy, reverse)", c.task);
        /* toy-task defaults, measured to reach exact match 1.000 on copy and
         * reverse: no dropout and half the Noam factor, unless given */
        if (!flags_find(flags, n_flags, "dropout")->set) c.model.dropout = 0.0f;
        if (!flags_find(flags, n_flags, "lr-factor")->set) c.lr_factor = 0.5;
        tfm_toy_config tc = {
            .vocab = c.vocab, .min_len = c.min_len, .max_len = c.max_len, .annotated = c.annotated};
        if (tfm_toy_config_check(&tc)) return tfm_cli_fail(2, "%s", tfm_last_error());
        if (c.max_len > TFM_MAX_POSITIONS - 2)
            return tfm_cli_fail(2, "--max-len %lld: at most %lld (the model's positions)",
                                (long long)c.max_len, (long long)(TFM_MAX_POSITIONS - 2));
    }
    if (c.src_train && c.init) adopt_init_settings(&c, flags, n_flags);
    if (check_flags(&c)) return 2;
    /* positions the task needs: <s>/</s> around the toy sequences; corpus
     * pairs up to --max-tokens and validation outputs up to 2 * source + 10 */
    int64_t need = c.src_train ? 2 * (c.max_tokens_len + 1) + 10 : c.max_len + 2;
    if (c.model.max_len < need) {
        if (flags_find(flags, n_flags, "model-max-len")->set)
            return tfm_cli_fail(2, "--model-max-len %lld: the %s needs at least %lld",
                                (long long)c.model.max_len,
                                c.src_train ? "corpus task (2 * (--max-tokens + 1) + 10)"
                                            : "toy task (--max-len + 2)",
                                (long long)need);
        c.model.max_len = need;
    }
    /* the model's shape now (the corpus vocabulary comes later), so that a
     * value from a config file is reported with its file and line */
    tfm_model_config probe = c.model;
    if (probe.vocab < 4) probe.vocab = 4;
    if (tfm_model_config_check(&probe)) {
        /* the message starts with the setting's name: the file and line of
         * its value, or of --layers where that set both stacks */
        const char *msg = tfm_last_error();
        size_t len = strcspn(msg, ": ");
        const char *origin = flags_file_origin(msg, len);
        if (!origin && len == 10 &&
            (!strncmp(msg, "enc-layers", len) || !strncmp(msg, "dec-layers", len))) {
            char stack[11];
            memcpy(stack, msg, len);
            stack[len] = 0;
            if (!flags_find(flags, n_flags, stack)->set) origin = flags_file_origin("layers", 6);
        }
        return origin ? tfm_cli_fail(1, "%s: %s", origin, msg) : tfm_cli_fail(1, "%s", msg);
    }
    if (flags_check_recordable(flags, n_flags)) return 2;
    char *config = config_text(flags, n_flags);
    if (!config) return tfm_cli_fail(1, "out of memory");
    /* every setting at its default: a directory that an earlier tfm left
     * without a checkpoint has no line for settings added since */
    train_cli plain;
    defaults(&plain);
    flag_def plain_flags[TRAIN_MAX_FLAGS];
    char *config_defaults = config_text(plain_flags, make_flags(&plain, plain_flags));
    if (!config_defaults) return free(config), tfm_cli_fail(1, "out of memory");
    tfm_train_opts o;
    to_train_opts(&c, config, &o);
    o.config_defaults = config_defaults;
    /* SIGINT/SIGTERM: the trainer finishes the step, saves and returns */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    tfm_dist *dist = cli_dist_start(); /* one process: NULL (also one rank of mpirun) */
    g_dist = dist && dist->size > 1 ? dist : NULL;
    if (!g_dist || g_dist->rank == 0) cli_note_bf16(o.precision); /* once, not per rank */
    rc = c.src_train ? train_corpus(&c, &o) : train_toy(&c, &o);
    free(config);
    free(config_defaults);
    rc = cli_dist_end(dist, rc);
    g_dist = NULL;
    return rc;
}
