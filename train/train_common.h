/* The training loop's shared parts: options and flags, the trainer (model,
 * tape, optimizer), checkpoints and resume, progress and logs, signals. */
#ifndef TFM_TRAIN_COMMON_H
#define TFM_TRAIN_COMMON_H

#include <stdio.h>

#include "flags.h"
#include "tfm/checkpoint.h"
#include "tfm/nn.h"
#include "tfm/optim.h"

#define TRAIN_MAX_FLAGS 96

typedef struct {
    /* toy task */
    const char *task;
    int64_t vocab, min_len, max_len;
    int annotated;
    /* corpus */
    const char *src_train, *tgt_train, *src_valid, *tgt_valid;
    int64_t batch_tokens, max_tokens_len, bpe_merges, valid_every, early_stop, valid_max;
    double max_minutes;
    int64_t beam;
    double alpha;
    /* model */
    int64_t d_model, heads, d_ff, layers, enc_layers, dec_layers, model_max_len;
    double dropout, attn_dropout, ln_eps;
    int pre_ln, share_emb;
    /* optimizer */
    int64_t steps, batch, warmup;
    double lr_factor, label_smoothing, clip_norm, weight_decay;
    /* run */
    int64_t seed, threads, eval_n, log_every, save_every, keep, max_bad_steps, arena_mb;
    const char *save;
    int resume, quiet, check_numerics;
} train_options;

void train_options_default(train_options *o);
int train_flags(train_options *o, flag_def *flags); /* fills flags, returns the count */
int train_check_options(const train_options *o);    /* prints the error; 0 ok */
void train_model_config(const train_options *o, tfm_model_config *c);

typedef struct {
    const train_options *o;
    tfm_model model;
    tfm_tape tape;
    tfm_adam_config adam;
    int64_t step;       /* updates done */
    int64_t first_step; /* step this process started from (resume) */
    int64_t bad_steps;  /* in a row */
    int64_t skipped;    /* in total */
    int64_t n_params;
    double last_loss, last_lr, last_grad_norm;
    double loss_sum; /* since the last progress line */
    int64_t loss_count;
    tfm_kv state; /* extra training state saved with each checkpoint */
    FILE *log, *metrics;
    int tty;
    double t0;
    flag_def *flags;
    int n_flags;
} trainer;

/* Builds the model (or resumes it from the run directory with --resume). */
int trainer_init(trainer *tr, const train_options *o, const tfm_model_config *mc, flag_def *flags,
                 int n_flags, int64_t max_B, int64_t max_S, int64_t max_T);
void trainer_free(trainer *tr);
/* One update: forward, backward, clip, Adam. Returns 0, 1 when the step was
 * skipped (non-finite loss or gradient), -1 on error (message set). */
int trainer_step(trainer *tr, const tfm_seq_batch *b);
void trainer_log(trainer *tr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void trainer_progress(trainer *tr, int64_t tokens, double seconds);
void trainer_progress_end(trainer *tr);
/* metrics.csv row for a validation */
void trainer_metrics(trainer *tr, double tokens_per_s, double valid_loss, double valid_bleu);
/* Saves DIR/checkpoint-<step>.tfm when --save-every divides the step (or
 * force), keeping the last --keep ones. */
int trainer_maybe_checkpoint(trainer *tr, int force);
int trainer_checkpoint(trainer *tr, int force);
int trainer_save_best(trainer *tr);
/* Set by SIGINT/SIGTERM: finish the step, save, exit. */
int train_should_stop(void);
/* A fresh run (no --resume) must not reuse a directory holding checkpoints;
 * error set, 1 when it does. */
int train_check_save_dir(const train_options *o);
/* The newest checkpoint in dir that verifies (falling back to older ones,
 * saying so on stderr); path into buf. 0 ok. */
int train_find_checkpoint(const char *dir, char *buf, size_t size, int prefer_best);

/* Loads a model for inference from a run directory (best.tfm, else the
 * newest good checkpoint) or a checkpoint file; meta (if non-NULL, initialised)
 * receives the checkpoint's metadata. */
int train_load_model(const char *path, tfm_model *m, tfm_kv *meta);

/* mkdir -p; 0 ok */
int train_make_dirs(const char *dir);

int tfm_cmd_train_corpus(train_options *o, flag_def *flags, int n_flags);

#endif
