/* The trainer shared by the toy and corpus commands. */
#include "train_common.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "tfm/export.h"

void train_options_default(train_options *o) {
    memset(o, 0, sizeof *o);
    o->vocab = 13; /* pad, <s>, </s> + 10 symbols */
    o->min_len = 1;
    o->max_len = 10;
    o->batch_tokens = 4096;
    o->max_tokens_len = 100;
    o->valid_every = 500;
    o->valid_max = 0;
    o->beam = 1;
    o->alpha = 0.6;
    o->d_model = 64;
    o->heads = 4;
    o->d_ff = 256;
    o->layers = 2;
    o->model_max_len = 256;
    o->dropout = 0.1;
    o->ln_eps = 1e-5;
    o->steps = 3000;
    o->batch = 64;
    o->warmup = 200;
    o->lr_factor = 1.0;
    o->label_smoothing = 0.1;
    o->seed = 1;
    o->threads = 0;
    o->eval_n = 1000;
    o->log_every = 100;
    o->save_every = 0;
    o->keep = 3;
    o->max_bad_steps = 10;
    o->arena_mb = 0;
}

int train_flags(train_options *o, flag_def *f) {
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
    I("valid-every", valid_every, "corpus: validate every N steps");
    I("valid-max", valid_max, "corpus: decode at most N validation sentences (0: all)");
    I("early-stop", early_stop,
      "corpus: stop after N validations without BLEU improvement (0: off)");
    F("max-minutes", max_minutes, "stop after this much training time (0: off)");
    I("beam", beam, "validation decoding beam size");
    F("alpha", alpha, "beam length penalty (GNMT)");
    I("d-model", d_model, "model width");
    I("heads", heads, "attention heads");
    I("d-ff", d_ff, "feed-forward width");
    I("layers", layers, "encoder and decoder layers");
    I("enc-layers", enc_layers, "encoder layers (overrides --layers)");
    I("dec-layers", dec_layers, "decoder layers (overrides --layers)");
    I("model-max-len", model_max_len, "longest sequence the model handles");
    F("dropout", dropout, "dropout on embeddings, residuals, FFN (toy tasks: 0 unless given)");
    F("attn-dropout", attn_dropout, "dropout on attention weights");
    F("ln-eps", ln_eps, "layer-norm epsilon");
    B("pre-ln", pre_ln, "pre-LN layers (default post-LN as in the paper)");
    B("share-emb", share_emb, "one embedding for source and target (joint vocabulary)");
    I("steps", steps, "optimizer updates");
    I("batch", batch, "toy: sequences per batch");
    I("warmup", warmup, "warmup steps of the Noam schedule");
    F("lr-factor", lr_factor,
      "Noam factor: lr = factor * d^-0.5 * min(s^-0.5, s*w^-1.5) (toy: 0.5 unless given)");
    F("label-smoothing", label_smoothing, "label smoothing");
    F("clip-norm", clip_norm, "clip the global gradient norm (0: off)");
    F("weight-decay", weight_decay, "AdamW decoupled weight decay on matrices (0: off)");
    I("seed", seed, "random seed (weights, data, dropout)");
    I("threads", threads, "OpenMP threads (0: all cores)");
    I("eval-n", eval_n, "toy: held-out sequences to evaluate");
    I("log-every", log_every, "progress line every N steps when not on a terminal");
    I("save-every", save_every, "checkpoint every N steps (0: only at the end)");
    I("keep", keep, "checkpoints to keep");
    I("max-bad-steps", max_bad_steps, "stop after N non-finite steps in a row");
    I("arena-mb", arena_mb, "activation arena in MB (0: estimate)");
    S("save", save, "run directory: checkpoints, config.txt, train.log, metrics.csv");
    B("resume", resume, "continue from the newest good checkpoint in --save");
    B("quiet", quiet, "no progress output");
    B("check-numerics", check_numerics, "check every op for NaN/Inf and name the first");
#undef I
#undef F
#undef S
#undef B
    TFM_ASSERT(n <= TRAIN_MAX_FLAGS);
    return n;
}

int train_check_options(const train_options *o) {
#define NEED(cond, ...)                                                                            \
    if (!(cond)) return tfm_cli_fail(2, __VA_ARGS__)
    NEED(o->steps >= 0, "--steps: must not be negative");
    NEED(o->batch >= 1 && o->batch <= 1000000, "--batch: must be between 1 and 1000000");
    NEED(o->warmup >= 1, "--warmup: must be at least 1");
    NEED(o->lr_factor > 0, "--lr-factor: must be positive");
    NEED(o->label_smoothing >= 0 && o->label_smoothing < 1, "--label-smoothing: must be in [0, 1)");
    NEED(o->dropout >= 0 && o->dropout < 1, "--dropout: must be in [0, 1)");
    NEED(o->attn_dropout >= 0 && o->attn_dropout < 1, "--attn-dropout: must be in [0, 1)");
    NEED(o->clip_norm >= 0, "--clip-norm: must not be negative");
    NEED(o->weight_decay >= 0, "--weight-decay: must not be negative");
    NEED(o->threads >= 0 && o->threads <= 1024, "--threads: must be between 0 and 1024");
    NEED(o->keep >= 1, "--keep: must be at least 1");
    NEED(o->log_every >= 1, "--log-every: must be at least 1");
    NEED(o->save_every >= 0, "--save-every: must not be negative");
    NEED(o->max_bad_steps >= 1, "--max-bad-steps: must be at least 1");
    NEED(o->arena_mb >= 0, "--arena-mb: must not be negative");
    NEED(o->eval_n >= 1, "--eval-n: must be at least 1");
    NEED(!o->resume || o->save, "--resume needs --save DIR");
#undef NEED
    return 0;
}

void train_model_config(const train_options *o, tfm_model_config *c) {
    tfm_model_config_default(c);
    c->d_model = o->d_model;
    c->n_heads = o->heads;
    c->d_ff = o->d_ff;
    c->enc_layers = o->enc_layers ? o->enc_layers : o->layers;
    c->dec_layers = o->dec_layers ? o->dec_layers : o->layers;
    c->max_len = o->model_max_len;
    c->dropout = (float)o->dropout;
    c->attn_dropout = (float)o->attn_dropout;
    c->ln_eps = (float)o->ln_eps;
    c->pre_ln = o->pre_ln;
    c->share_src_emb = o->share_emb;
}

/* ---- signals ------------------------------------------------------------------ */
static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}
int train_should_stop(void) { return g_stop; }

/* ---- run directory ---------------------------------------------------------------- */
/* mkdir -p */
int train_make_dirs(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0777) != 0 && errno != EEXIST) return 1;
        *p = '/';
    }
    return mkdir(path, 0777) != 0 && errno != EEXIST;
}

static int ensure_dir(const char *dir) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return tfm_set_error("--save %s: exists and is not a directory", dir), 1;
    } else if (train_make_dirs(dir) != 0) {
        return tfm_set_error("--save %s: cannot create directory: %s", dir, strerror(errno)), 1;
    }
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/.write-test.%ld", dir, (long)getpid());
    FILE *f = fopen(probe, "w");
    if (!f)
        return tfm_set_error("--save %s: directory is not writable: %s", dir, strerror(errno)), 1;
    fclose(f);
    unlink(probe);
    return 0;
}

/* "checkpoint-<digits>.tfm" -> step, else -1 */
static int64_t checkpoint_step(const char *name) {
    const char *prefix = "checkpoint-";
    size_t len = strlen(name), plen = strlen(prefix);
    if (len <= plen + 4 || strncmp(name, prefix, plen) || strcmp(name + len - 4, ".tfm")) return -1;
    int64_t step = 0;
    for (size_t i = plen; i < len - 4; i++) {
        if (name[i] < '0' || name[i] > '9' || step > INT64_MAX / 20) return -1;
        step = step * 10 + (name[i] - '0');
    }
    return step;
}

/* steps of checkpoint-*.tfm in dir, descending; returns the count */
static int64_t list_checkpoints(const char *dir, int64_t *steps, int64_t cap) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        int64_t s = checkpoint_step(e->d_name);
        if (s >= 0) steps[n++] = s;
    }
    closedir(d);
    for (int64_t i = 1; i < n; i++)
        for (int64_t j = i; j > 0 && steps[j] > steps[j - 1]; j--) {
            int64_t t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    return n;
}

/* Temporary files of checkpoint writes cut short by a crash or SIGKILL
 * ("<name>.tfm.tmp.<pid>"): never read, but as large as a checkpoint each.
 * Removed when a run starts or resumes in the directory (after the checks:
 * one run per directory); returns how many. */
static int64_t remove_stale_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int64_t n = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        const char *tmp = strstr(e->d_name, ".tfm.tmp.");
        if (!tmp || (strncmp(e->d_name, "checkpoint-", 11) && strncmp(e->d_name, "best.tfm", 8)))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) n++;
    }
    closedir(d);
    return n;
}

int train_check_save_dir(const train_options *o) {
    if (!o->save || o->resume) return 0;
    int64_t steps[1];
    /* a fresh run would clobber the logs and interleave its checkpoints with
     * the old run's (a later --resume would pick the old run's newest) */
    if (list_checkpoints(o->save, steps, 1) > 0)
        return tfm_set_error(
                   "--save %s: already holds checkpoints of a run: add --resume to continue "
                   "it, or choose another directory",
                   o->save),
               1;
    return 0;
}

int train_find_checkpoint(const char *dir, char *buf, size_t size, int prefer_best) {
    if (prefer_best) {
        snprintf(buf, size, "%s/best.tfm", dir);
        tfm_checkpoint ck;
        if (access(buf, F_OK) == 0) {
            if (tfm_checkpoint_read(buf, &ck) == 0) {
                tfm_checkpoint_free(&ck);
                return 0;
            }
            fprintf(stderr, "tfm: %s; trying the newest checkpoint instead\n", tfm_last_error());
        }
    }
    int64_t steps[4096];
    int64_t n = list_checkpoints(dir, steps, 4096);
    for (int64_t i = 0; i < n; i++) {
        snprintf(buf, size, "%s/checkpoint-%08lld.tfm", dir, (long long)steps[i]);
        tfm_checkpoint ck;
        if (tfm_checkpoint_read(buf, &ck) == 0) {
            tfm_checkpoint_free(&ck);
            return 0;
        }
        fprintf(stderr, "tfm: %s; falling back to the previous checkpoint\n", tfm_last_error());
    }
    tfm_set_error("%s: no usable checkpoint", dir);
    return 1;
}

void trainer_log(trainer *tr, const char *fmt, ...) {
    va_list ap;
    if (!tr->o->quiet) {
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        fflush(stdout);
    }
    if (tr->log) {
        va_start(ap, fmt);
        vfprintf(tr->log, fmt, ap);
        va_end(ap);
        fflush(tr->log);
    }
}

static int resume_from(trainer *tr, const tfm_model_config *mc, char *path, size_t path_size) {
    if (train_find_checkpoint(tr->o->save, path, path_size, 0)) return 1;
    tfm_checkpoint ck;
    if (tfm_checkpoint_read(path, &ck)) return 1;
    tfm_model_config saved;
    if (tfm_model_config_from_kv(&saved, &ck.meta, path)) goto fail;
    if (saved.vocab != mc->vocab || saved.d_model != mc->d_model || saved.n_heads != mc->n_heads ||
        saved.d_ff != mc->d_ff || saved.enc_layers != mc->enc_layers ||
        saved.dec_layers != mc->dec_layers || saved.pre_ln != mc->pre_ln ||
        saved.share_src_emb != mc->share_src_emb) {
        tfm_set_error("%s: the model configuration differs from the flags given", path);
        goto fail;
    }
    uint64_t seed;
    if (tfm_checkpoint_load_params(&ck, &tr->model.params, 1) ||
        tfm_kv_get_i64(&ck.meta, "train.step", &tr->step, path) ||
        tfm_kv_get_i64(&ck.meta, "train.bad_steps", &tr->bad_steps, path) ||
        tfm_kv_get_i64(&ck.meta, "train.skipped", &tr->skipped, path) ||
        tfm_kv_get_u64(&ck.meta, "train.seed", &seed, path))
        goto fail;
    if ((int64_t)seed != tr->o->seed) {
        tfm_set_error("%s: was trained with --seed %llu, not %lld", path, (unsigned long long)seed,
                      (long long)tr->o->seed);
        goto fail;
    }
    for (int64_t i = 0; i < ck.meta.n; i++)
        if (!strncmp(ck.meta.keys[i], "state.", 6))
            tfm_kv_set(&tr->state, ck.meta.keys[i], "%s", ck.meta.vals[i]);
    tfm_checkpoint_free(&ck);
    return 0;
fail:
    tfm_checkpoint_free(&ck);
    return 1;
}

static int trainer_init_body(trainer *tr, const train_options *o, const tfm_model_config *mc,
                             flag_def *flags, int n_flags, int64_t max_B, int64_t max_S,
                             int64_t max_T) {
    memset(tr, 0, sizeof *tr);
    tr->o = o;
    tr->flags = flags;
    tr->n_flags = n_flags;
    tfm_kv_init(&tr->state);
    if (o->threads > 0) tfm_set_num_threads((int)o->threads);
    if (tfm_model_config_check(mc)) return 1;
    tr->n_params = tfm_model_param_count(mc);
    /* refuse configurations that cannot fit before allocating anything */
    size_t arena = o->arena_mb ? (size_t)o->arena_mb << 20
                               : tfm_model_activation_bytes(mc, max_B, max_S, max_T);
    double need = (double)arena + 16.0 * (double)tr->n_params;
    double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (need > 0.9 * have) {
        tfm_set_error("configuration will not fit in memory: needs about %.1f GB (%lld parameters, "
                      "%.1f GB of activations), the machine has %.1f GB",
                      need / 1e9, (long long)tr->n_params, (double)arena / 1e9, have / 1e9);
        return 1;
    }
    if (train_check_save_dir(o) || (o->save && ensure_dir(o->save))) return 1;
    if (tfm_model_init(&tr->model, mc)) return 1;
    tfm_model_init_weights(&tr->model, (uint64_t)o->seed);
    if (tfm_tape_init(&tr->tape, arena, 1 << 16)) return 1;
    tr->tape.seed = (uint64_t)o->seed;
    tr->tape.check_numerics = o->check_numerics;
    tfm_adam_config_default(&tr->adam, mc->d_model);
    tr->adam.lr_factor = o->lr_factor;
    tr->adam.warmup = o->warmup;
    tr->adam.clip_norm = (float)o->clip_norm;
    tr->adam.weight_decay = (float)o->weight_decay;
    tr->tty = isatty(fileno(stdout));
    /* resume before writing anything: a failed resume leaves the run
     * directory (config.txt, logs) as it was */
    char resumed[4096] = "";
    if (o->resume && resume_from(tr, mc, resumed, sizeof resumed)) return 1;
    if (o->save) {
        char path[4096];
        snprintf(path, sizeof path, "%s/train.log", o->save);
        tr->log = fopen(path, o->resume ? "a" : "w");
        snprintf(path, sizeof path, "%s/metrics.csv", o->save);
        int fresh = !o->resume || access(path, F_OK) != 0;
        tr->metrics = fopen(path, fresh ? "w" : "a");
        if (!tr->log || !tr->metrics) return tfm_set_error("%s: cannot write logs", o->save), 1;
        if (fresh)
            fprintf(tr->metrics,
                    "step,epoch,loss,lr,grad_norm,tokens_per_s,valid_loss,valid_bleu\n");
        snprintf(path, sizeof path, "%s/config.txt", o->save);
        FILE *cf = fopen(path, "w");
        if (!cf) return tfm_set_error("%s: cannot write", path), 1;
        flags_write_config(cf, flags, n_flags);
        fclose(cf);
    }
    tr->first_step = tr->step;
    if (*resumed) trainer_log(tr, "resumed from %s at step %lld\n", resumed, (long long)tr->step);
    int64_t stale = o->save ? remove_stale_temporaries(o->save) : 0;
    if (stale)
        trainer_log(tr, "removed %lld temporary file(s) of interrupted checkpoint writes\n",
                    (long long)stale);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    tr->t0 = tfm_now();
    return 0;
}

/* On failure nothing stays allocated or open (callers just print the error
 * and return; under ASan a leak at that exit fails the bad-input tests). */
int trainer_init(trainer *tr, const train_options *o, const tfm_model_config *mc, flag_def *flags,
                 int n_flags, int64_t max_B, int64_t max_S, int64_t max_T) {
    if (trainer_init_body(tr, o, mc, flags, n_flags, max_B, max_S, max_T) == 0) return 0;
    trainer_free(tr);
    return 1;
}

void trainer_free(trainer *tr) {
    if (tr->log) fclose(tr->log);
    if (tr->metrics) fclose(tr->metrics);
    tfm_tape_free(&tr->tape);
    tfm_model_free(&tr->model);
    tfm_kv_free(&tr->state);
}

int trainer_step(trainer *tr, const tfm_seq_batch *b) {
    tfm_tape *t = &tr->tape;
    int64_t step = tr->step + 1;
    tfm_tape_reset(t);
    t->step = (uint64_t)step;
    t->training = 1;
    tfm_params_zero_grad(&tr->model.params);
    int64_t n_tok = 0;
    tfm_tensor *loss = tfm_model_loss(&tr->model, t, b, (float)tr->o->label_smoothing, &n_tok);
    if (!loss) return -1;
    double lr = tfm_noam_lr(step, tr->model.cfg.d_model, tr->adam.warmup, tr->adam.lr_factor);
    double norm = NAN;
    int bad = !isfinite(loss->data[0]);
    if (!bad) {
        if (tfm_backward(t, loss)) return -1;
        bad = tfm_adam_step(&tr->model.params, &tr->adam, step, lr, &norm);
    }
    tr->step = step;
    tr->last_loss = loss->data[0];
    tr->last_lr = lr;
    tr->last_grad_norm = norm;
    if (bad) {
        tr->bad_steps++;
        tr->skipped++;
        trainer_log(tr, "%sstep %lld: non-finite %s (%g), update skipped (%lld in a row)\n",
                    tr->tty && !tr->o->quiet ? "\n" : "", (long long)step,
                    isfinite(loss->data[0]) ? "gradient norm" : "loss",
                    isfinite(loss->data[0]) ? norm : (double)loss->data[0],
                    (long long)tr->bad_steps);
        if (tr->bad_steps >= tr->o->max_bad_steps) {
            tfm_set_error("stopping: %lld non-finite steps in a row (--max-bad-steps %lld); try a "
                          "lower --lr-factor or --clip-norm",
                          (long long)tr->bad_steps, (long long)tr->o->max_bad_steps);
            return -1;
        }
        return 1;
    }
    tr->bad_steps = 0;
    tr->loss_sum += loss->data[0];
    tr->loss_count++;
    return 0;
}

void trainer_progress(trainer *tr, int64_t tokens, double seconds) {
    const train_options *o = tr->o;
    int64_t step = tr->step;
    int line_due = step % o->log_every == 0 || step == o->steps;
    double tps = seconds > 0 ? (double)tokens / seconds : 0;
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
        if (tr->log)
            fprintf(tr->log, "step %lld loss %.4f lr %.3e grad_norm %.4g tok/s %.0f\n",
                    (long long)step, avg, tr->last_lr, tr->last_grad_norm, tps);
        tr->loss_sum = 0;
        tr->loss_count = 0;
    }
}

void trainer_progress_end(trainer *tr) {
    if (tr->tty && !tr->o->quiet) printf("\n");
    if (train_should_stop())
        trainer_log(tr, "interrupted at step %lld: saving and exiting\n", (long long)tr->step);
}

void trainer_metrics(trainer *tr, double tokens_per_s, double valid_loss, double valid_bleu) {
    if (!tr->metrics) return;
    fprintf(tr->metrics, "%lld,%s,%.6f,%.6g,%.6g,%.1f,%.6f,%.4f\n", (long long)tr->step,
            tfm_kv_get(&tr->state, "state.epoch") ? tfm_kv_get(&tr->state, "state.epoch") : "",
            tr->last_loss, tr->last_lr, tr->last_grad_norm, tokens_per_s, valid_loss, valid_bleu);
    fflush(tr->metrics);
}

static void fill_meta(trainer *tr, tfm_kv *meta) {
    tfm_kv_init(meta);
    tfm_kv_set(meta, "format", "tfm checkpoint");
    tfm_kv_set(meta, "tfm.version", "%s", TFM_VERSION);
    tfm_model_config_to_kv(&tr->model.cfg, meta);
    tfm_kv_set(meta, "train.step", "%lld", (long long)tr->step);
    tfm_kv_set(meta, "train.seed", "%lld", (long long)tr->o->seed);
    tfm_kv_set(meta, "train.bad_steps", "%lld", (long long)tr->bad_steps);
    tfm_kv_set(meta, "train.skipped", "%lld", (long long)tr->skipped);
    for (int64_t i = 0; i < tr->state.n; i++)
        tfm_kv_set(meta, tr->state.keys[i], "%s", tr->state.vals[i]);
}

int trainer_checkpoint(trainer *tr, int force) {
    (void)force;
    if (!tr->o->save) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint-%08lld.tfm", tr->o->save, (long long)tr->step);
    tfm_kv meta;
    fill_meta(tr, &meta);
    int rc = tfm_checkpoint_save(path, &meta, &tr->model.params, 1);
    tfm_kv_free(&meta);
    if (rc) return 1;
    int64_t steps[4096];
    int64_t n = list_checkpoints(tr->o->save, steps, 4096);
    for (int64_t i = tr->o->keep; i < n; i++) {
        snprintf(path, sizeof path, "%s/checkpoint-%08lld.tfm", tr->o->save, (long long)steps[i]);
        unlink(path);
    }
    return 0;
}

int trainer_save_best(trainer *tr) {
    if (!tr->o->save) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/best.tfm", tr->o->save);
    tfm_kv meta;
    fill_meta(tr, &meta);
    int rc = tfm_checkpoint_save(path, &meta, &tr->model.params, 0);
    tfm_kv_free(&meta);
    return rc;
}

int trainer_maybe_checkpoint(trainer *tr, int force) {
    if (!tr->o->save) return 0;
    if (force || train_should_stop() ||
        (tr->o->save_every > 0 && tr->step % tr->o->save_every == 0))
        return trainer_checkpoint(tr, force);
    return 0;
}

int train_load_model(const char *path, tfm_model *m, tfm_kv *meta) {
    char file[4096];
    struct stat st;
    if (stat(path, &st) != 0) return tfm_set_error("--model %s: %s", path, strerror(errno)), 1;
    snprintf(file, sizeof file, "%s/model.safetensors", path);
    if (S_ISDIR(st.st_mode) && access(file, F_OK) == 0)
        return tfm_export_load(path, m, meta); /* an export */
    if (S_ISDIR(st.st_mode)) {
        if (train_find_checkpoint(path, file, sizeof file, 1)) return 1;
    } else {
        snprintf(file, sizeof file, "%s", path);
    }
    tfm_checkpoint ck;
    if (tfm_checkpoint_read(file, &ck)) return 1;
    int rc = tfm_model_from_checkpoint(m, &ck);
    if (!rc && meta)
        for (int64_t i = 0; i < ck.meta.n; i++)
            tfm_kv_set(meta, ck.meta.keys[i], "%s", ck.meta.vals[i]);
    tfm_checkpoint_free(&ck);
    return rc;
}
