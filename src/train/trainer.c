/* The trainer: init and resume, the step, the loop with validation, logging
 * and checkpoints. Run-directory helpers are in run_dir.c. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/par.h"
#include "tfm/atomic_file.h"
#include "tfm/average.h"
#include "train_internal.h"

void tfm_train_opts_default(tfm_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 3000;
    o->seed = 1;
    o->schedule = (tfm_schedule){.kind = TFM_SCHEDULE_NOAM, .lr = 1.0, .warmup = 200};
    tfm_adam_config_default(&o->adam);
    o->label_smoothing = 0.1f;
    o->max_bad_steps = 10;
    o->keep = 3;
    o->log_every = 100;
    o->valid_every = 500;
}

/* ---- stopping ------------------------------------------------------------------- */
static volatile sig_atomic_t g_stop;
void tfm_trainer_request_stop(void) { g_stop = 1; }
int tfm_trainer_stop_requested(void) { return g_stop; }

/* ---- logging ---------------------------------------------------------------------- */
/* A line for train.log and on_log; the terminal (stdout or stderr, in its
 * own form or not at all) is the caller's. */
static void log_quietly(tfm_trainer *tr, const char *line) {
    if (tr->log) {
        fputs(line, tr->log);
        fflush(tr->log);
    }
    if (tr->hooks.on_log) tr->hooks.on_log(tr->hooks.ctx, tr, line);
}

void tfm_trainer_log(tfm_trainer *tr, const char *fmt, ...) {
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    /* lines hold paths: a longer one is allocated (a skipped step's line,
     * written inside the step, fits the buffer) */
    char buf[512], *line = buf;
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof buf) {
        char *full = malloc((size_t)n + 1);
        if (full) vsnprintf(full, (size_t)n + 1, fmt, again);
        line = full ? full : buf; /* out of memory: the line cut short */
    }
    va_end(again);
    if (n < 0) return;
    if (!tr->o.quiet) {
        fputs(line, stdout);
        fflush(stdout);
    }
    log_quietly(tr, line);
    if (line != buf) free(line);
}

static void progress(tfm_trainer *tr) {
    const tfm_train_opts *o = &tr->o;
    int64_t step = tr->step;
    int line_due = step % o->log_every == 0 || step == o->steps;
    double seconds = tr->train_seconds;
    double tps = seconds > 0 ? (double)tr->tokens / seconds : 0;
    /* the mean over the steps since the last line: one batch's loss is too noisy to plot */
    double avg = tr->loss_count ? tr->loss_sum / (double)tr->loss_count : tr->last_loss;
    if (line_due && tr->metrics) {
        fprintf(tr->metrics, "%lld,,%.6f,%.6g,%.6g,%.1f,,\n", (long long)step, avg, tr->last_lr,
                tr->last_grad_norm, tps);
        fflush(tr->metrics);
    }
    if (!o->quiet) {
        double elapsed = tfm_now() - tr->t0;
        int64_t done = step - tr->first_step;
        double eta =
            done > 0 && o->steps > step ? elapsed / (double)done * (double)(o->steps - step) : 0;
        if (o->max_minutes > 0 && eta > o->max_minutes * 60 - seconds)
            eta = o->max_minutes * 60 - seconds;
        if (eta < 0) eta = 0;
        if (tr->tty) {
            printf("\rstep %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  %.0fs elapsed  ETA %.0fs   ",
                   (long long)step, (long long)o->steps, avg, tr->last_lr, tps, elapsed, eta);
            fflush(stdout);
        } else if (line_due) {
            printf("step %lld/%lld loss %.4f lr %.2e grad_norm %.3g tok/s %.0f elapsed %.0fs eta "
                   "%.0fs\n",
                   (long long)step, (long long)o->steps, avg, tr->last_lr, tr->last_grad_norm, tps,
                   elapsed, eta);
            fflush(stdout);
        }
    }
    if (line_due) {
        /* train.log's form of the line, which on_log gets too (numbers
         * only: it fits) */
        char line[200];
        snprintf(line, sizeof line, "step %lld loss %.4f lr %.3e grad_norm %.4g tok/s %.0f\n",
                 (long long)step, avg, tr->last_lr, tr->last_grad_norm, tps);
        log_quietly(tr, line);
        tr->loss_sum = 0;
        tr->loss_count = 0;
    }
}

/* ---- init ------------------------------------------------------------------------- */
static int check_opts(const tfm_train_opts *o, const tfm_train_hooks *h) {
#define NEED(cond, ...)                                                                            \
    if (!(cond)) return tfm_set_error(__VA_ARGS__), 1
    NEED(o->accum <= 1 || !(h->grad_ready || h->reduce_start),
         "accum %lld: the overlapped reduction hooks (reduce_start, grad_ready) take one batch "
         "per update; use the reduce hook",
         (long long)o->accum);
    NEED(o->steps >= 0, "steps: must not be negative");
    NEED(o->schedule.warmup >= 1, "warmup: must be at least 1");
    /* applied as a float: above FLT_MAX it is inf, and every update NaN */
    NEED(o->schedule.lr > 0 && o->schedule.lr <= FLT_MAX,
         "learning rate %g: must be positive and at most %g", o->schedule.lr, FLT_MAX);
    NEED((unsigned)o->schedule.kind <= TFM_SCHEDULE_CONSTANT, "schedule: unknown kind");
    NEED(o->schedule.cooldown >= 0 && o->schedule.cooldown <= o->steps,
         "cooldown %lld: must be between 0 and the steps (%lld)", (long long)o->schedule.cooldown,
         (long long)o->steps);
    NEED(o->label_smoothing >= 0 && o->label_smoothing < 1, "label smoothing: must be in [0, 1)");
    NEED(o->clip_norm >= 0, "clip norm: must not be negative");
    if (tfm_adam_config_check(&o->adam)) return 1; /* before the run directory is touched */
    NEED(o->threads >= 0, "threads %d: must not be negative", o->threads);
    NEED(o->threads <= TFM_MAX_THREADS, "threads %d: at most %d", o->threads, TFM_MAX_THREADS);
    NEED(o->precision == TFM_FP32 || o->precision == TFM_BF16, "precision %d: unknown",
         (int)o->precision);
    NEED(o->emb_init == TFM_EMB_INIT_XAVIER || o->emb_init == TFM_EMB_INIT_NORMAL,
         "emb init %d: unknown (xavier or normal)", o->emb_init);
    NEED(o->keep >= 1, "keep: must be at least 1");
    NEED(o->log_every >= 1, "log every: must be at least 1");
    NEED(o->save_every >= 0, "save every: must not be negative");
    NEED(o->max_bad_steps >= 1, "max bad steps: must be at least 1");
    NEED(o->valid_every >= 1, "valid every: must be positive");
    NEED(o->early_stop >= 0 && o->max_minutes >= 0,
         "early stop, max minutes: must not be negative");
    NEED(!o->resume || o->run_dir, "resume needs a run directory");
    NEED(o->average_last >= 0 && o->average_last <= TFM_AVERAGE_MAX,
         "average last %lld: must be between 0 and %d", (long long)o->average_last,
         TFM_AVERAGE_MAX);
    NEED(o->average_last == 0 || o->run_dir, "average last needs a run directory");
    NEED(o->accum >= 0, "accum %lld: must not be negative", (long long)o->accum);
    NEED(o->ema == 0 || (o->ema > 0 && o->ema < 1), "ema %g: must be 0 (off) or in (0, 1)", o->ema);
#undef NEED
    return 0;
}

/* a key of tfm_model_config_to_kv, which leaves a NEWFLOAT at its default out */
static const char *kv_or_default(const tfm_kv *kv, const char *key) {
    const char *v = tfm_kv_get(kv, key);
    return v ? v : "(the default)";
}

/* 1 with the error set when the model configuration saved in the
 * checkpoint at path differs from the one given (both sides as written from
 * the configs: a setting the checkpoint predates has its default there,
 * tfm/nn.h); what prefixes the message (e.g. "--init "). */
static int config_mismatch(const char *path, const char *what, const tfm_model_config *saved,
                           const tfm_model_config *given) {
    const char *diff = tfm_model_config_differs(saved, given, 1);
    if (!diff) return 0;
    char key[64];
    snprintf(key, sizeof key, "model.%s", diff);
    tfm_kv mine, theirs;
    tfm_kv_init(&mine);
    tfm_kv_init(&theirs);
    tfm_model_config_to_kv(given, &mine);
    tfm_model_config_to_kv(saved, &theirs);
    tfm_set_error("%s%s: the model configuration differs from the one given: %s is %s in the "
                  "checkpoint, %s now",
                  what, path, diff, kv_or_default(&theirs, key), kv_or_default(&mine, key));
    tfm_kv_free(&mine);
    tfm_kv_free(&theirs);
    return 1;
}

/* Checkpoint keys that are left out at their usual value (or that a later
 * tfm added), with the value their absence means: one place, so that
 * --resume compares an older checkpoint's setting, not "unknown". */
static const struct {
    const char *key, *absent;
} g_absent[] = {
    {"train.ema", "0"},        /* written only with --ema */
    {"data.accum", "1"},       /* written only with --accum > 1 */
    {"data.bpe-dropout", "0"}, /* written since 2026-11-30; runs before had none */
};

/* The checkpoint's value of key, else the value its absence means, else NULL. */
static const char *meta_or_absent(const tfm_kv *meta, const char *key) {
    const char *v = tfm_kv_get(meta, key);
    if (v) return v;
    for (size_t i = 0; i < sizeof g_absent / sizeof g_absent[0]; i++)
        if (!strcmp(g_absent[i].key, key)) return g_absent[i].absent;
    return NULL;
}

/* tfm_trainer.stop's copy of the loss sum and the early-stop state as they
 * are now ("": no validation yet). */
static void stop_snapshot(tfm_trainer *tr) {
    tr->stop.loss_sum = tr->loss_sum;
    tr->stop.loss_count = tr->loss_count;
    const char *b = tfm_kv_get(&tr->state, "state.best_metric"),
               *n = tfm_kv_get(&tr->state, "state.no_improve");
    snprintf(tr->stop.best_metric, sizeof tr->stop.best_metric, "%s", b ? b : "");
    snprintf(tr->stop.no_improve, sizeof tr->stop.no_improve, "%s", n ? n : "");
}

/* Loads params, optimizer state and counters from the newest good checkpoint. */
static int resume_from(tfm_trainer *tr, char **found) {
    char *path = tfm_run_find_checkpoint(tr->o.run_dir, 0);
    if (!path) return 1;
    tfm_checkpoint ck;
    if (tfm_checkpoint_read(path, &ck)) {
        free(path);
        return 1;
    }
    if (tr->has_model) {
        tfm_model_config saved;
        if (tfm_model_config_from_kv(&saved, &ck.meta, path)) goto fail;
        if (config_mismatch(path, "", &saved, &tr->model.cfg)) goto fail;
    }
    int n_state;
    tfm_state_block *state = tfm_trainer_state_blocks(tr, &n_state);
    uint64_t seed;
    /* the weight average (before its block is looked for) */
    const char *ema_was = meta_or_absent(&ck.meta, "train.ema");
    char ema_now[40] = "0";
    if (tr->o.ema > 0) snprintf(ema_now, sizeof ema_now, "%.17g", tr->o.ema);
    if (strcmp(ema_was, ema_now)) {
        tfm_set_error("%s: was trained with --ema %s, not %s", path, ema_was, ema_now);
        goto fail;
    }
    if (tfm_checkpoint_load_params(&ck, tr->params) ||
        tfm_checkpoint_load_state(&ck, tr->params, state, n_state) ||
        tfm_kv_get_i64(&ck.meta, "train.step", &tr->step, path) ||
        tfm_kv_get_i64(&ck.meta, "train.bad_steps", &tr->bad_steps, path) ||
        tfm_kv_get_i64(&ck.meta, "train.skipped", &tr->skipped, path) ||
        tfm_kv_get_u64(&ck.meta, "train.seed", &seed, path))
        goto fail;
    /* the batch index is (step - 1) * accum + i + 1: it must not wrap */
    if (tr->step < 0 || tr->step > INT64_MAX / 4 / (tr->o.accum > 1 ? tr->o.accum : 1) ||
        tr->bad_steps < 0 || tr->skipped < 0) {
        tfm_set_error("%s: train.step %lld, train.bad_steps %lld, train.skipped %lld: out of range",
                      path, (long long)tr->step, (long long)tr->bad_steps, (long long)tr->skipped);
        goto fail;
    }
    if (seed != tr->o.seed) {
        tfm_set_error("%s: was trained with --seed %llu, not %llu", path, (unsigned long long)seed,
                      (unsigned long long)tr->o.seed);
        goto fail;
    }
    /* the data must be the same too: every data.* key of this run and of the
     * checkpoint (a key left out means its g_absent value, so --accum 2
     * against a run of one batch per update is caught either way; a
     * checkpoint from before a key was written, without a g_absent value,
     * has none to compare) */
    for (int64_t i = 0; i < tr->state.n + ck.meta.n; i++) {
        int mine = i < tr->state.n;
        const char *key = mine ? tr->state.keys[i] : ck.meta.keys[i - tr->state.n];
        if (strncmp(key, "data.", 5)) continue;
        if (!mine && tfm_kv_get(&tr->state, key)) continue; /* compared above */
        const char *was = meta_or_absent(&ck.meta, key), *now = meta_or_absent(&tr->state, key);
        if (!was || !now || !strcmp(was, now)) continue;
        /* the checksums are of the ids: an edited bpe.codes or vocab.txt of
         * the run changes them as much as other text does */
        int ids = !strcmp(key, "data.src-train") || !strcmp(key, "data.tgt-train");
        tfm_set_error("%s: --resume with different data: %s%s was %s, now %s%s", path,
                      strcmp(key, "data.kind") ? "--" : "", key + 5, was, now,
                      ids ? " (the text, or the run's bpe.codes or vocab.txt, changed)" : "");
        goto fail;
    }
    /* the running loss sum is the trainer's own (fill_meta writes it last,
     * so that a resumed run's checkpoints list the keys in the same order) */
    for (int64_t i = 0; i < ck.meta.n; i++)
        if (!strncmp(ck.meta.keys[i], "state.", 6) && strcmp(ck.meta.keys[i], "state.loss_sum") &&
            strcmp(ck.meta.keys[i], "state.loss_count") &&
            strncmp(ck.meta.keys[i], "state.stop_", 11))
            tfm_kv_set(&tr->state, ck.meta.keys[i], "%s", ck.meta.vals[i]);
    /* checkpoints before 2026-11-30 have no sum: the next line's mean then
     * starts at the resume */
    if (tfm_kv_get(&ck.meta, "state.loss_count") &&
        (tfm_kv_get_f64(&ck.meta, "state.loss_sum", &tr->loss_sum, path) ||
         tfm_kv_get_i64(&ck.meta, "state.loss_count", &tr->loss_count, path)))
        goto fail;
    if (tfm_kv_get(&tr->state, "state.best_metric") &&
        (tfm_kv_get_f64(&tr->state, "state.best_metric", &tr->best_metric, path) ||
         tfm_kv_get_i64(&tr->state, "state.no_improve", &tr->no_improve, path)))
        goto fail;
    /* the end of the leg before, off its grids (tfm_trainer.stop): a run
     * that goes on drops the rows and best.tfm that end added (a resume
     * that goes no further keeps them) */
    const char *rows = tfm_kv_get(&ck.meta, "state.stop_rows");
    const char *best = tfm_kv_get(&ck.meta, "state.stop_best");
    if (rows) { /* kept as they are by a resume that goes no further */
        tr->stop.step = tr->step;
        tr->stop.loss_row = strstr(rows, "loss") != NULL;
        tr->stop.valid = strstr(rows, "valid") != NULL;
        tr->stop.best = best ? atoi(best) : 0;
        stop_snapshot(tr); /* the state a run going on has, as recorded */
    }
    if (tr->source->load && tr->source->load(tr->source->ctx, &tr->state, path)) goto fail;
    tfm_checkpoint_free(&ck);
    *found = path;
    return 0;
fail:
    tfm_checkpoint_free(&ck);
    free(path);
    return 1;
}

/* --init: the checkpoint o.init_from, its model configuration checked
 * against mc (NULL: a model of the caller's, not checked), its weights
 * into params (NULL: only the checks, before the run directory is touched). */
static int init_weights_from(const char *path, const tfm_model_config *mc, tfm_params *params) {
    tfm_checkpoint ck;
    if (tfm_checkpoint_read_params(path, &ck))
        return tfm_set_error("--init: %s", tfm_last_error()), 1;
    int rc = 1;
    if (mc) {
        tfm_model_config saved;
        if (tfm_model_config_from_kv(&saved, &ck.meta, path)) goto done;
        if (config_mismatch(path, "--init ", &saved, mc)) goto done;
    }
    if (params && tfm_checkpoint_load_params(&ck, params)) {
        tfm_set_error("--init %s: %s", path, tfm_last_error());
        goto done;
    }
    rc = 0;
done:
    tfm_checkpoint_free(&ck);
    return rc;
}

/* Before anything is allocated: the memory estimate and the run directory
 * (a fresh run refuses one with checkpoints; *fresh_restart is set for
 * --resume into a run that never reached a checkpoint). */
static int prepare(tfm_trainer *tr, size_t arena, int *fresh_restart) {
    const tfm_train_opts *o = &tr->o;
    if (o->threads > 0) tfm_set_num_threads(o->threads);
    /* weights, gradients, two Adam moments; with --accum the summed
     * gradient, with --ema the averaged weights */
    double need = (double)arena + (16.0 + (o->accum > 1 ? 4.0 : 0.0) + (o->ema > 0 ? 4.0 : 0.0)) *
                                      (double)tr->n_params;
    double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (need > 0.9 * have)
        return tfm_set_error("configuration will not fit in memory: needs about %.1f GB (%lld "
                             "parameters, %.1f GB of activations), the machine has %.1f GB",
                             need / 1e9, (long long)tr->n_params, (double)arena / 1e9, have / 1e9),
               1;
    *fresh_restart = 0;
    if (!o->run_dir) return 0;
    return tfm_run_check_dir(o, fresh_restart, 1) || tfm_run_lock(tr);
}

/* The gradient buckets of hooks.grad_ready: parameters in block order, a
 * new bucket once the current one holds o.bucket_floats. */
static int init_buckets(tfm_trainer *tr) {
    const tfm_params *p = tr->params;
    int64_t want = tr->o.bucket_floats > 0 ? tr->o.bucket_floats : (int64_t)1 << 18, n = 0;
    tr->bucket_at = malloc((size_t)(p->count + 1) * sizeof(int64_t));
    tr->bucket_param = malloc((size_t)(p->count + 1) * sizeof(int64_t));
    tr->bucket_node = malloc((size_t)(p->count + 1) * sizeof(int64_t));
    tr->bucket_order = malloc((size_t)(p->count + 1) * sizeof(int64_t));
    if (!tr->bucket_at || !tr->bucket_param || !tr->bucket_node || !tr->bucket_order)
        return tfm_set_error("out of memory (gradient buckets)"), 1;
    for (int64_t k = 0; k < p->count; k++) {
        int64_t at = p->items[k]->grad - p->grad;
        if (n == 0 || at - tr->bucket_at[n - 1] >= want) {
            tr->bucket_at[n] = n == 0 ? 0 : at;
            tr->bucket_param[n++] = k;
        }
    }
    tr->bucket_at[n] = p->total_n;
    tr->bucket_param[n] = p->count;
    tr->n_buckets = n;
    return 0;
}

/* Everything after the parameters exist: tape, optimizer, resume, logs. */
static int init_common(tfm_trainer *tr, size_t arena, int fresh_restart) {
    const tfm_train_opts *o = &tr->o;
    if (tfm_tape_init(&tr->tape, arena, 1 << 16)) return 1;
    tr->tape.seed = o->seed;
    tr->tape.check_numerics = o->check_numerics;
    tr->tape.precision = o->precision;
    if (tfm_adam_init(&tr->adam, tr->params, &o->adam)) return 1;
    if (tr->hooks.grad_ready && init_buckets(tr)) return 1;
    /* zeroed: the padding between tensors, which no checkpoint fills, stays zero */
    if (o->ema > 0 && !(tr->ema = tfm_calloc((size_t)tr->params->total_n * sizeof(float))))
        return tfm_set_error("out of memory for the weight average (%lld floats)",
                             (long long)tr->params->total_n),
               1;
    if (o->accum > 1) {
        tr->grad_acc = tfm_alloc((size_t)tr->params->total_n * sizeof(float));
        if (!tr->grad_acc)
            return tfm_set_error("out of memory for the accumulated gradient (%lld floats)",
                                 (long long)tr->params->total_n),
                   1;
        tfm_kv_set(&tr->state, "data.accum", "%lld", (long long)o->accum);
    }
    tr->tty = isatty(fileno(stdout));
    /* resume before writing anything: a failed resume leaves the run
     * directory (config.txt, logs) as it was */
    if (tr->source->kind) tfm_kv_set(&tr->state, "data.kind", "%s", tr->source->kind);
    if (tr->source->describe) tr->source->describe(tr->source->ctx, &tr->state);
    char *resumed = NULL;
    int resuming = o->resume && !fresh_restart;
    int initialized = o->init_from && !resuming;
    if (initialized &&
        init_weights_from(o->init_from, tr->has_model ? &tr->model.cfg : NULL, tr->params))
        return 1;
    if (resuming && resume_from(tr, &resumed)) return 1;
    if (tr->ema && !resuming) /* the average starts at the starting weights */
        memcpy(tr->ema, tr->params->data, (size_t)tr->params->total_n * sizeof(float));
    int past_end = resuming && tr->stop.step == tr->step && o->steps > tr->step;
    char *changed = NULL;
    if (o->run_dir && tfm_run_open_files(tr, resuming, &changed)) {
        free(resumed);
        free(changed);
        return 1;
    }
    /* the leg before's end is dealt with (its rows and best.tfm); its
     * checkpoint is written again without the notes on that end, as the run
     * straight through has it where it stays (on the --save-every grid) */
    if (past_end) {
        tr->stop.step = -1;
        if (tfm_trainer_checkpoint(tr)) {
            free(resumed);
            free(changed);
            return 1;
        }
    }
    tr->first_step = tr->step;
    if (resumed)
        tfm_trainer_log(tr, "resumed from %s at step %lld\n", resumed, (long long)tr->step);
    /* config.txt holds this attempt's settings: the log keeps the ones before */
    if (resumed && changed)
        tfm_trainer_log(
            tr, "settings changed at this resume (config.txt now has the new ones): %s\n", changed);
    free(changed);
    if (initialized)
        tfm_trainer_log(tr, "weights from %s (--init); a fresh optimizer from step 0\n",
                        o->init_from);
    free(resumed);
    if (fresh_restart) {
        const char *msg = "--resume: no checkpoint yet: starting from step 0\n";
        fprintf(stderr, "tfm: %s: %s", o->run_dir, msg);
        log_quietly(tr, msg);
    }
    int64_t stale = o->run_dir ? tfm_run_remove_temporaries(o->run_dir) : 0;
    if (stale)
        tfm_trainer_log(tr, "removed %lld temporary file(s) of interrupted checkpoint writes\n",
                        (long long)stale);
    tr->t0 = tfm_now();
    return 0;
}

/* The activation arena for the source's largest batch. With max_cells, a
 * batch (B, S, T) has m = max(S, T) <= L and B <= max_cells / m, and the
 * estimate grows with each of B, S and T: so the largest over m of the
 * shape (min(max_b, max_cells / m), min(m, max_s), min(m, max_t)) bounds
 * every batch. */
static size_t source_arena_bytes(const tfm_model_config *mc, const tfm_batch_source *s) {
    if (s->max_cells <= 0) return tfm_model_activation_bytes(mc, s->max_b, s->max_s, s->max_t);
    int64_t L = s->max_s > s->max_t ? s->max_s : s->max_t;
    size_t most = 0;
    for (int64_t m = 1; m <= L; m++) {
        int64_t b = s->max_cells / m < s->max_b ? s->max_cells / m : s->max_b;
        if (b < 1) break;
        size_t a = tfm_model_activation_bytes(mc, b, m < s->max_s ? m : s->max_s,
                                              m < s->max_t ? m : s->max_t);
        most = a > most ? a : most;
    }
    return most;
}

static void init_fields(tfm_trainer *tr, const tfm_train_opts *o, tfm_batch_source *source,
                        const tfm_train_hooks *hooks) {
    memset(tr, 0, sizeof *tr);
    tr->lock_fd = -1;
    tr->o = *o;
    if (tr->o.keep < tr->o.average_last) tr->o.keep = tr->o.average_last; /* what it averages */
    if (hooks) tr->hooks = *hooks;
    tr->source = source;
    tr->best_metric = -INFINITY;
    tr->stop.step = -1;
    tfm_kv_init(&tr->state);
}

int tfm_trainer_init(tfm_trainer *tr, const tfm_train_opts *o, const tfm_model_config *mc,
                     tfm_batch_source *source, const tfm_train_hooks *hooks) {
    TFM_ASSERT(tr && o && mc && source,
               "tfm_trainer_init: NULL trainer, options, model configuration or batch source");
    init_fields(tr, o, source, hooks);
    int fresh_restart = 0;
    if (check_opts(o, &tr->hooks) || tfm_model_config_check(mc)) goto fail;
    if (source->max_s > mc->max_len || source->max_t > mc->max_len) {
        tfm_set_error("model max_len %lld: the batches need %lld positions", (long long)mc->max_len,
                      (long long)(source->max_s > source->max_t ? source->max_s : source->max_t));
        goto fail;
    }
    if (tr->o.schedule.d_model <= 0) tr->o.schedule.d_model = mc->d_model;
    if (tr->o.schedule.total <= 0) tr->o.schedule.total = o->steps;
    /* a wrong --init is refused before the run directory is created; a
     * resume from a checkpoint does not use it (the file may be gone) */
    int has_checkpoint = 0;
    if (o->init_from && o->resume && o->run_dir) {
        char *newest = NULL;
        has_checkpoint = tfm_run_newest_checkpoints(o->run_dir, 1, &newest) == 0;
        free(newest);
    }
    if (o->init_from && !has_checkpoint && init_weights_from(o->init_from, mc, NULL)) goto fail;
    tr->n_params = tfm_model_param_count(mc);
    size_t arena = o->arena_bytes ? o->arena_bytes : source_arena_bytes(mc, source);
    if (prepare(tr, arena, &fresh_restart)) goto fail;
    if (tfm_model_init(&tr->model, mc)) goto fail;
    tr->has_model = 1;
    tr->params = &tr->model.params;
    tfm_model_init_weights_emb(&tr->model, o->seed, o->emb_init);
    if (init_common(tr, arena, fresh_restart)) goto fail;
    return 0;
fail:
    tfm_trainer_free(tr);
    return 1;
}

int tfm_trainer_init_params(tfm_trainer *tr, const tfm_train_opts *o, tfm_params *params,
                            tfm_batch_source *source, const tfm_train_hooks *hooks) {
    TFM_ASSERT(tr && o && params && source,
               "tfm_trainer_init_params: NULL trainer, options, parameters or batch source");
    init_fields(tr, o, source, hooks);
    int fresh_restart = 0;
    if (check_opts(o, &tr->hooks)) goto fail;
    if (!tr->hooks.loss) {
        tfm_set_error("tfm_trainer_init_params: a loss hook is required");
        goto fail;
    }
    if (!o->arena_bytes) {
        tfm_set_error("tfm_trainer_init_params: set the activation arena size (arena_bytes)");
        goto fail;
    }
    if (tr->o.schedule.d_model <= 0) tr->o.schedule.d_model = 1;
    if (tr->o.schedule.total <= 0) tr->o.schedule.total = o->steps;
    tr->params = params;
    for (int64_t i = 0; i < params->count; i++) tr->n_params += params->items[i]->n;
    if (prepare(tr, o->arena_bytes, &fresh_restart) ||
        init_common(tr, o->arena_bytes, fresh_restart))
        goto fail;
    return 0;
fail:
    tfm_trainer_free(tr);
    return 1;
}

void tfm_trainer_free(tfm_trainer *tr) {
    if (tr->log) fclose(tr->log);
    if (tr->metrics) fclose(tr->metrics);
    tfm_run_unlock(tr); /* only a lock this trainer took: a zeroed one holds none */
    tfm_tape_free(&tr->tape);
    tfm_adam_free(&tr->adam);
    tfm_free(tr->grad_acc);
    tfm_free(tr->ema);
    tr->grad_acc = tr->ema = NULL; /* freeing twice is safe */
    if (tr->has_model) tfm_model_free(&tr->model);
    tfm_kv_free(&tr->state);
    free(tr->bucket_at);
    free(tr->bucket_param);
    free(tr->bucket_node);
    free(tr->bucket_order);
    tr->bucket_at = tr->bucket_param = tr->bucket_node = tr->bucket_order = NULL;
    tr->log = tr->metrics = NULL;
    tr->has_model = 0;
    tr->params = NULL; /* tfm_train and tfm_trainer_step refuse a freed trainer */
    tr->source = NULL;
}

/* ---- the step --------------------------------------------------------------------- */
void tfm_trainer_eval_mode(tfm_trainer *tr, int on) {
    tfm_tape_reset(&tr->tape);
    tr->tape.no_grad = on;
    tr->tape.training = !on;
}

/* Which tape node finishes each bucket: the first one (in forward order)
 * that reads a gradient in it, since backward walks the tape in reverse.
 * The buckets in the order backward will finish them. No allocation. */
static void plan_buckets(tfm_trainer *tr) {
    const tfm_tape *t = &tr->tape;
    const float *g = tr->params->grad;
    int64_t nb = tr->n_buckets, total = tr->params->total_n;
    for (int64_t b = 0; b < nb; b++) tr->bucket_node[b] = -1;
    for (int64_t i = 0; i < t->n_nodes; i++) {
        const tfm_node *nd = &t->nodes[i];
        for (int j = 0; j < nd->n_in; j++) {
            const tfm_tensor *x = nd->in[j];
            if (!x->grad || x->grad < g || x->grad >= g + total) continue;
            int64_t lo = x->grad - g, hi = lo + x->n, a = 0, z = nb - 1;
            while (a < z) { /* the last bucket starting at or before lo */
                int64_t mid = (a + z + 1) / 2;
                if (tr->bucket_at[mid] <= lo)
                    a = mid;
                else
                    z = mid - 1;
            }
            for (int64_t b = a; b < nb && tr->bucket_at[b] < hi; b++)
                if (tr->bucket_node[b] < 0) tr->bucket_node[b] = i;
        }
    }
    /* latest node first (backward reaches it first); ties in block order */
    for (int64_t b = 0; b < nb; b++) {
        int64_t k = b;
        while (k > 0 && tr->bucket_node[tr->bucket_order[k - 1]] < tr->bucket_node[b]) {
            tr->bucket_order[k] = tr->bucket_order[k - 1];
            k--;
        }
        tr->bucket_order[k] = b;
    }
    tr->bucket_next = 0;
}

/* Hands the next bucket to grad_ready, its unreached gradients zeroed. */
static int emit_bucket(tfm_trainer *tr) {
    tfm_params *p = tr->params;
    int64_t b = tr->bucket_order[tr->bucket_next++];
    for (int64_t k = tr->bucket_param[b]; k < tr->bucket_param[b + 1]; k++)
        tfm_grad_fresh(p->items[k]);
    return tr->hooks.grad_ready(tr->hooks.ctx, p->grad, b, tr->bucket_at[b], tr->bucket_at[b + 1]);
}

/* The tape's after_node: node i's backward is done. */
static int bucket_after_node(void *ctx, int64_t i) {
    tfm_trainer *tr = ctx;
    int emitted = 0;
    while (tr->bucket_next < tr->n_buckets &&
           tr->bucket_node[tr->bucket_order[tr->bucket_next]] >= i) {
        if (emit_bucket(tr)) return 1;
        emitted = 1;
    }
    return emitted ? 0 : tr->hooks.grad_ready(tr->hooks.ctx, tr->params->grad, -1, 0, 0);
}

/* Backward with the buckets handed out as they finish. */
static int backward_in_buckets(tfm_trainer *tr, tfm_tensor *loss) {
    tfm_tape *t = &tr->tape;
    plan_buckets(tr);
    t->after_node = bucket_after_node;
    t->after_node_ctx = tr;
    int rc = tfm_backward(t, loss);
    t->after_node = NULL;
    t->after_node_ctx = NULL;
    if (rc) return 1;
    while (tr->bucket_next < tr->n_buckets) /* the buckets no op reads */
        if (emit_bucket(tr)) return 1;
    return 0;
}

/* ---- the weight average (o.ema) ---------------------------------------------------------- */
tfm_state_block *tfm_trainer_state_blocks(tfm_trainer *tr, int *n) {
    int na;
    tfm_state_block *a = tfm_adam_state(&tr->adam, &na);
    if (!tr->ema) {
        *n = na;
        return a;
    }
    memcpy(tr->state_blocks, a, (size_t)na * sizeof *a);
    tr->state_blocks[na] = (tfm_state_block){.name = "ema", .data = tr->ema};
    *n = na + 1;
    return tr->state_blocks;
}

static void swap_floats(float *a, float *b) {
    float x = *a;
    *a = *b;
    *b = x;
}

void tfm_trainer_ema_swap(tfm_trainer *tr) {
    if (!tr->ema) return;
    float *w = tr->params->data, *e = tr->ema;
    const int64_t n = tr->params->total_n;
    TFM_PAR_FOR(tfm_par_worth(n), for (int64_t j = 0; j < n; j++) swap_floats(w + j, e + j));
    tr->ema_in = !tr->ema_in;
}

/* After update t: ema += (1 - d) * (w - ema), d = min(o.ema, (1 + t) / (10 + t)). */
static void ema_update(tfm_trainer *tr, int64_t t) {
    double warm = (1.0 + (double)t) / (10.0 + (double)t);
    const float k = (float)(1.0 - (tr->o.ema < warm ? tr->o.ema : warm));
    const float *w = tr->params->data;
    float *e = tr->ema;
    const int64_t n = tr->params->total_n;
    TFM_PAR_FOR(tfm_par_worth(n), for (int64_t j = 0; j < n; j++) e[j] += k * (w[j] - e[j]));
}

/* The loss of the batch on a fresh tape in training mode; index numbers
 * the batch (dropout's stream). */
static tfm_tensor *batch_loss(tfm_trainer *tr, int64_t index, const tfm_seq_batch *b,
                              int64_t *n_tok) {
    tfm_tape *t = &tr->tape;
    tfm_tape_reset(t);
    t->step = (uint64_t)index;
    t->training = 1;
    t->no_grad = 0;
    tfm_params_zero_grad(tr->params);
    *n_tok = 0;
    return tr->hooks.loss ? tr->hooks.loss(tr->hooks.ctx, tr, b, n_tok)
                          : tfm_model_loss(&tr->model, t, b, tr->o.label_smoothing, n_tok);
}

/* o.accum = N > 1: the N batches of update `step`, each forward and
 * backward on its own; grad_acc sums n_i * g_i (g_i the gradient of batch
 * i's mean loss over its n_i tokens), and the gradient is that sum / sum
 * n_i, the gradient of the mean over all the tokens. st: that mean loss and
 * the token count; after a non-finite loss the rest of the batches are read
 * (the data order stays that of the run) but not differentiated, and the
 * gradient is zero with st->loss that value. */
static int accumulate(tfm_trainer *tr, int64_t step, tfm_step_stats *st, int64_t *batch_tokens) {
    tfm_params *p = tr->params;
    const int64_t N = tr->o.accum, n = p->total_n;
    float *acc = tr->grad_acc, *g = p->grad;
    double loss_sum = 0, bad = 0;
    int64_t n_total = 0, summed = 0;
    for (int64_t i = 0; i < N; i++) {
        int64_t index = (step - 1) * N + i + 1, bt = 0, n_tok;
        tfm_seq_batch b;
        if (tr->source->next(tr->source->ctx, index, &b, &bt)) return 1;
        *batch_tokens += bt;
        if (bad != 0) continue;
        tfm_tensor *loss = batch_loss(tr, index, &b, &n_tok);
        if (!loss) return 1;
        n_total += n_tok;
        double l = loss->data[0];
        if (!isfinite(l)) {
            bad = l;
            continue;
        }
        if (tfm_backward(&tr->tape, loss)) return 1;
        tfm_params_settle_grads(p);
        loss_sum += l * (double)n_tok;
        const float w = (float)n_tok;
        if (summed++ == 0)
            TFM_PAR_FOR(tfm_par_worth(n), for (int64_t j = 0; j < n; j++) acc[j] = w * g[j]);
        else
            TFM_PAR_FOR(tfm_par_worth(n), for (int64_t j = 0; j < n; j++) acc[j] += w * g[j]);
    }
    st->n_tokens = n_total;
    if (bad != 0 || n_total <= 0) {
        st->loss = bad != 0 ? bad : NAN;
        memset(g, 0, (size_t)n * sizeof(float));
        return 0;
    }
    st->loss = loss_sum / (double)n_total;
    const float inv = (float)(1.0 / (double)n_total);
    TFM_PAR_FOR(tfm_par_worth(n), for (int64_t j = 0; j < n; j++) g[j] = acc[j] * inv);
    return 0;
}

/* One batch per update: forward, backward (overlapped with the reduction
 * when the hooks do that) and the reduction; *t0 when the batch was read. */
static int one_batch(tfm_trainer *tr, int64_t step, tfm_step_stats *st, int64_t *batch_tokens,
                     double *t0) {
    tfm_params *p = tr->params;
    tfm_seq_batch b;
    if (tr->source->next(tr->source->ctx, step, &b, batch_tokens)) return 1;
    *t0 = tfm_now();
    int64_t n_tok;
    tfm_tensor *loss = batch_loss(tr, step, &b, &n_tok);
    if (!loss) return 1;
    *st = (tfm_step_stats){loss->data[0], n_tok};
    if (tr->hooks.grad_ready) {
        /* overlapped: the buckets go out while backward goes on */
        if (tr->hooks.reduce_start && tr->hooks.reduce_start(tr->hooks.ctx, st)) return 1;
        if (isfinite(st->loss) && isfinite(loss->data[0]) && backward_in_buckets(tr, loss))
            return 1;
        tfm_params_settle_grads(p); /* nothing left to do when backward ran */
        if (tr->hooks.reduce && tr->hooks.reduce(tr->hooks.ctx, p->grad, p->total_n, st)) return 1;
    } else {
        if (isfinite(loss->data[0]) && tfm_backward(&tr->tape, loss)) return 1;
        if (tr->hooks.reduce) {
            /* gradients that backward did not reach (or all of them, after a
             * non-finite loss) must read as zero for the other processes */
            tfm_params_settle_grads(p);
            if (tr->hooks.reduce(tr->hooks.ctx, p->grad, p->total_n, st)) return 1;
        }
    }
    return 0;
}

int tfm_trainer_step(tfm_trainer *tr) {
    TFM_TRAINER_CHECK(tr, "tfm_trainer_step");
    tfm_params *p = tr->params;
    int64_t step = tr->step + 1;
    int64_t batch_tokens = 0;
    double lr = tfm_schedule_lr(&tr->o.schedule, step), t0 = tfm_now();
    tfm_step_stats st;
    if (tr->o.accum > 1) {
        if (accumulate(tr, step, &st, &batch_tokens)) return -1;
        if (tr->hooks.reduce && tr->hooks.reduce(tr->hooks.ctx, p->grad, p->total_n, &st))
            return -1;
    } else if (one_batch(tr, step, &st, &batch_tokens, &t0)) {
        return -1;
    }
    double norm = NAN;
    int bad = !isfinite(st.loss);
    if (!bad) {
        norm = tfm_grad_norm(p);
        bad = !isfinite(norm);
    }
    if (!bad) {
        tfm_clip_grad_norm(p, norm, tr->o.clip_norm);
        tfm_adam_update(&tr->adam, p, step, lr);
        if (tr->ema) ema_update(tr, step);
    }
    tr->train_seconds += tfm_now() - t0;
    /* with a reduction hook (data parallelism) st holds the global target-token
     * count: tok/s is then the whole job's, not this process's share */
    tr->tokens += tr->hooks.reduce || tr->hooks.reduce_start ? st.n_tokens : batch_tokens;
    tr->step = step;
    tr->last_loss = st.loss;
    tr->last_lr = lr;
    tr->last_grad_norm = norm;
    tr->last_tokens = st.n_tokens;
    if (bad) {
        tr->bad_steps++;
        tr->skipped++;
        tfm_trainer_log(tr, "%sstep %lld: non-finite %s (%g), update skipped (%lld in a row)\n",
                        tr->tty && !tr->o.quiet ? "\n" : "", (long long)step,
                        isfinite(st.loss) ? "gradient norm" : "loss",
                        isfinite(st.loss) ? norm : st.loss, (long long)tr->bad_steps);
        if (tr->bad_steps >= tr->o.max_bad_steps) {
            tfm_set_error("stopping: %lld non-finite steps in a row (--max-bad-steps %lld); try a "
                          "lower learning rate or --clip-norm",
                          (long long)tr->bad_steps, (long long)tr->o.max_bad_steps);
            return -1;
        }
        return 1;
    }
    tr->bad_steps = 0;
    tr->loss_sum += st.loss;
    tr->loss_count++;
    return 0;
}

/* ---- validation and the loop ------------------------------------------------------------ */
static void metrics_row(tfm_trainer *tr, double valid_loss, double metric) {
    if (!tr->metrics) return;
    const char *epoch = tfm_kv_get(&tr->state, "state.epoch");
    double tps = tr->train_seconds > 0 ? (double)tr->tokens / tr->train_seconds : 0;
    fprintf(tr->metrics, "%lld,%s,%.6f,%.6g,%.6g,%.1f,%.6f,%.4f\n", (long long)tr->step,
            epoch ? epoch : "", tr->last_loss, tr->last_lr, tr->last_grad_norm, tps, valid_loss,
            metric);
    fflush(tr->metrics);
}

/* The validation at the end of a leg found a new best: a copy of the
 * best.tfm of the run so far goes to best-before-stop.tfm, for a resume that
 * goes on to put back (stop.best 1), or there was none (2). A hard link (a
 * copy where links fail): best.tfm itself stays until the new one replaces
 * it atomically, so a kill in between leaves a best.tfm. */
static int keep_best_aside(tfm_trainer *tr) {
    char *best = tfm_path_join(tr->o.run_dir, "best.tfm"),
         *aside = tfm_path_join(tr->o.run_dir, "best-before-stop.tfm");
    int rc = !best || !aside;
    if (!rc && access(best, F_OK) == 0) {
        unlink(aside); /* one left by an end that a kill cut short */
        if (link(best, aside) != 0) {
            char *bytes = NULL;
            size_t len = 0;
            rc = tfm_read_regular(best, &bytes, &len) || tfm_write_file_atomic(aside, bytes, len);
            free(bytes);
        }
        tr->stop.best = 1;
    } else if (!rc) {
        tr->stop.best = 2;
    }
    free(best);
    free(aside);
    return rc;
}

int tfm_trainer_validate(tfm_trainer *tr, tfm_valid_result *out) {
    TFM_TRAINER_CHECK(tr, "tfm_trainer_validate");
    memset(out, 0, sizeof *out);
    out->loss = NAN;
    if (!tr->hooks.validate) return 0;
    double t0 = tfm_now();
    if (tr->source->save) tr->source->save(tr->source->ctx, &tr->state);
    if (tr->ema) tfm_trainer_ema_swap(tr); /* the averaged weights are scored */
    int rc = tr->hooks.validate(tr->hooks.ctx, tr, out);
    tfm_trainer_eval_mode(tr, 0);
    if (rc) {
        if (tr->ema) tfm_trainer_ema_swap(tr);
        return 1;
    }
    int improved = out->metric > tr->best_metric;
    if (improved) {
        tr->best_metric = out->metric;
        tr->no_improve = 0;
    } else {
        tr->no_improve++;
    }
    tfm_kv_set(&tr->state, "state.best_metric", "%.17g", tr->best_metric);
    tfm_kv_set(&tr->state, "state.no_improve", "%lld", (long long)tr->no_improve);
    if (tr->tty && !tr->o.quiet) printf("\n");
    const char *epoch = tfm_kv_get(&tr->state, "state.epoch");
    char at[64] = "";
    if (epoch) snprintf(at, sizeof at, " (epoch %s)", epoch);
    tfm_trainer_log(tr, "validation at step %lld%s: %s%s (%.1fs)\n", (long long)tr->step, at,
                    out->text, improved ? " (best)" : "", tfm_now() - t0);
    metrics_row(tr, out->loss, out->metric);
    if (improved && tr->stop.valid && tr->stop.step == tr->step && tr->o.run_dir &&
        keep_best_aside(tr)) {
        if (tr->ema) tfm_trainer_ema_swap(tr);
        return 1;
    }
    rc = improved && tfm_trainer_save_best(tr); /* the averaged weights with --ema */
    if (tr->ema) tfm_trainer_ema_swap(tr);
    return rc;
}

/* --average-last: averaged.tfm from the newest checkpoints, then its
 * validation with the weights swapped in and back (outside the step, so
 * the copy may be allocated here). */
static int average_last(tfm_trainer *tr) {
    const tfm_train_opts *o = &tr->o;
    char **paths = calloc((size_t)o->average_last, sizeof *paths);
    char *out = tfm_path_join(o->run_dir, "averaged.tfm");
    float *saved = NULL;
    int rc = 1;
    int64_t n = o->average_last;
    if (!paths || !out) {
        tfm_set_error("out of memory");
        goto done;
    }
    while (n > 0 && tfm_run_newest_checkpoints(o->run_dir, n, paths)) n--;
    if (n == 0) goto done; /* the final checkpoint was just written: an error reading the dir */
    if (tfm_checkpoint_average((const char *const *)paths, n, out)) goto done;
    const char *first = strrchr(paths[0], '/'), *last = strrchr(paths[n - 1], '/');
    tfm_trainer_log(tr, "averaged.tfm: the mean of the last %lld checkpoints (%s .. %s)%s\n",
                    (long long)n, first ? first + 1 : paths[0], last ? last + 1 : paths[n - 1],
                    n < o->average_last ? " (fewer than --average-last: no more were saved)" : "");
    /* one process only: with a reduction hook (several processes) the
     * validation is collective, and the other ranks have no averaged.tfm */
    if (tr->hooks.validate && !tr->hooks.reduce) {
        tfm_checkpoint ck;
        size_t bytes = (size_t)tr->params->total_n * sizeof(float);
        saved = malloc(bytes ? bytes : 1);
        if (!saved) {
            tfm_set_error("out of memory");
            goto done;
        }
        memcpy(saved, tr->params->data, bytes);
        if (tfm_checkpoint_read_params(out, &ck)) goto done;
        int bad = tfm_checkpoint_load_params(&ck, tr->params);
        tfm_checkpoint_free(&ck);
        tfm_valid_result vr;
        memset(&vr, 0, sizeof vr);
        if (!bad) {
            if (tr->source->save) tr->source->save(tr->source->ctx, &tr->state);
            bad = tr->hooks.validate(tr->hooks.ctx, tr, &vr);
            tfm_trainer_eval_mode(tr, 0);
        }
        memcpy(tr->params->data, saved, bytes);
        if (bad) goto done;
        tfm_trainer_log(tr, "validation of averaged.tfm: %s\n", vr.text);
    }
    rc = 0;
done:
    for (int64_t i = 0; paths && i < n; i++) free(paths[i]);
    free(paths);
    free(out);
    free(saved);
    return rc;
}

/* The last step of this leg: what a run going on has here, before the row
 * and the validation that only the end writes (tfm_trainer.stop). */
static void note_end(tfm_trainer *tr, int time_up) {
    const tfm_train_opts *o = &tr->o;
    int64_t step = tr->step;
    tr->stop.step = -1;
    tr->stop.loss_row = step == o->steps && step % o->log_every != 0;
    tr->stop.valid =
        tr->hooks.validate && step % o->valid_every != 0 && (step == o->steps || time_up);
    if (!tr->stop.loss_row && !tr->stop.valid) return;
    tr->stop.step = step;
    stop_snapshot(tr);
    tr->stop.best = 0;
}

/* *answered: the loop stopped for a tfm_trainer_request_stop. */
static int train_loop(tfm_trainer *tr, int *answered) {
    const tfm_train_opts *o = &tr->o;
    tr->stop_reason = 0;
    /* a resumed run that had already stopped early (or was interrupted on
     * the step it did) stops again where it is, as the run straight through
     * did, instead of training on */
    if (o->early_stop > 0 && tr->no_improve >= o->early_stop) tr->stop_reason = 1;
    while (!tr->stop_reason && tr->step < o->steps && !tfm_trainer_stop_requested()) {
        if (tfm_trainer_step(tr) < 0) return 1;
        int64_t step = tr->step;
        int time_up = o->max_minutes > 0 && tr->train_seconds > o->max_minutes * 60;
        if (step == o->steps || time_up) note_end(tr, time_up);
        progress(tr);
        if (tr->hooks.validate && (step % o->valid_every == 0 || step == o->steps || time_up)) {
            tfm_valid_result vr;
            if (tfm_trainer_validate(tr, &vr) || tfm_trainer_checkpoint(tr)) return 1;
            if (o->early_stop > 0 && tr->no_improve >= o->early_stop) tr->stop_reason = 1;
        } else if ((o->save_every > 0 && step % o->save_every == 0) ||
                   tfm_trainer_stop_requested()) {
            if (tfm_trainer_checkpoint(tr)) return 1;
        }
        if (time_up) tr->stop_reason = 2;
        if (tr->hooks.on_step && tr->hooks.on_step(tr->hooks.ctx, tr)) tr->stop_reason = 3;
        if (tr->stop_reason) break;
    }
    if (tr->tty && !o->quiet) printf("\n");
    if (tfm_trainer_stop_requested()) {
        *answered = 1;
        tr->stop_reason = 3;
        tfm_trainer_log(tr, "interrupted at step %lld: saving and exiting\n", (long long)tr->step);
    }
    if (tr->stop_reason == 1)
        tfm_trainer_log(tr, "early stop: %lld validations without improvement\n",
                        (long long)tr->no_improve);
    if (tr->stop_reason == 2)
        tfm_trainer_log(tr, "stopping: --max-minutes %g reached\n", o->max_minutes);
    if (tfm_trainer_checkpoint(tr)) return 1;
    if (!tr->hooks.validate && o->final_best && tfm_trainer_save_best(tr)) return 1;
    if (o->average_last > 0 && o->run_dir && tr->stop_reason != 3 && average_last(tr)) return 1;
    return 0;
}

int tfm_train(tfm_trainer *tr) {
    TFM_TRAINER_CHECK(tr, "tfm_train");
    int answered = 0;
    int rc = train_loop(tr, &answered);
    /* the error ends train.log too (the caller prints it; the log is what
     * remains of an unattended run) */
    if (rc) {
        char *line = tfm_format("stopped by an error after step %lld: %s\n", (long long)tr->step,
                                tfm_last_error());
        if (line) log_quietly(tr, line);
        free(line);
    }
    /* a request this training answered is done with (the next training of
     * the process runs); one made after the loop, during the final
     * checkpoint or average, stays for the next */
    if (answered) g_stop = 0;
    return rc;
}
