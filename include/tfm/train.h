/* tfm/train.h: the trainer. It owns the tape, the optimizer (Adam/AdamW) and
 * its learning-rate schedule, runs the step (forward, backward, gradient
 * reduction, non-finite guard, clipping, update), logs progress, writes
 * checkpoints with the full training state into a run directory (rotation
 * with --keep, best.tfm), resumes, validates, stops early, on a time limit or
 * when asked to (tfm_trainer_request_stop, e.g. from a signal handler).
 *
 * Data comes from a batch source; everything else is an optional hook. The
 * Transformer of nn.h is the default model, but any set of parameters with a
 * loss hook trains (examples/char_lm.c trains a decoder-only model):
 *
 *     tfm_train_opts o;
 *     tfm_train_opts_default(&o);
 *     o.steps = 3000;
 *     o.run_dir = "runs/copy";                       // NULL: write nothing
 *     tfm_toy_source toy;                            // or tfm_corpus_source, or your own
 *     tfm_toy_source_init(&toy, &task, 64, o.seed);
 *     tfm_trainer tr;
 *     if (tfm_trainer_init(&tr, &o, &model_config, &toy.source, NULL)) die(tfm_last_error());
 *     if (tfm_train(&tr)) die(tfm_last_error());     // until o.steps, a stop or a limit
 *     ... tr.model is trained; tfm_trainer_free(&tr); tfm_toy_source_free(&toy);
 *
 * Run directory (o.run_dir): checkpoint-<step>.tfm (the last o.keep kept),
 * best.tfm (best validation metric; the final weights when there is no
 * validation), train.log, metrics.csv, config.txt (o.config_text, e.g. the
 * program's resolved flags) and anything the caller adds (bpe.codes,
 * vocab.txt). A fresh run refuses a directory that holds checkpoints; with
 * o.resume the newest checkpoint that verifies is loaded (older ones are
 * tried when it does not), and a directory with a config.txt but no
 * checkpoint yet (a run killed before its first one) starts from step 0 when
 * o.config_text is the same configuration, else it is refused naming the
 * setting that differs. A trainer holds an advisory lock on DIR/.lock from
 * init to free: a second trainer on the same directory is refused, naming
 * the holder's pid. Resuming with different data (source->describe: task,
 * corpus checksums, batching) is refused naming the setting. Determinism: the same seed, thread
 * count and data give bit-identical parameters, resumed or not. */
#ifndef TFM_TRAIN_H
#define TFM_TRAIN_H

#include <signal.h>
#include <stdio.h>

#include "tfm/checkpoint.h"
#include "tfm/data.h"
#include "tfm/decode.h"
#include "tfm/nn.h"
#include "tfm/optim.h"
#include "tfm/text.h"
#include "tfm/toy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tfm_trainer tfm_trainer;

/* ---- batch sources ------------------------------------------------------------
 * next() fills *b with the batch of update `step` (1-based; with o.accum = N
 * > 1 the batches are numbered, update s taking (s - 1) * N + 1 .. s * N;
 * the pointers stay valid until the next call) and *n_tokens with its number of target tokens
 * (the loss denominator); it must not allocate. save() writes the source's
 * position into the training state (keys "state.*", saved in every
 * checkpoint) and load() restores it on resume; both may be NULL for a
 * source whose batch depends only on the step. max_b/max_s/max_t bound the
 * batches (the activation arena is sized from them). For decoder-only models
 * leave src/src_pad NULL and S 0. */
typedef struct {
    void *ctx;
    int (*next)(void *ctx, int64_t step, tfm_seq_batch *b, int64_t *n_tokens);
    void (*save)(void *ctx, tfm_kv *state);
    int (*load)(void *ctx, const tfm_kv *state, const char *where);
    int64_t max_b, max_s, max_t;
    /* > 0: every batch also has B * max(S, T) <= max_cells (a padded token
     * budget), and the arena is sized for the largest such shape within
     * max_b/max_s/max_t instead of for max_b x max_s x max_t together (for
     * batches whose shapes change from epoch to epoch). 0: not used. */
    int64_t max_cells;
    const char *kind; /* "toy", "text" or your own; saved as data.kind */
    /* What defines the data, as "data.<setting>" keys (e.g. "data.batch-tokens",
     * a corpus checksum): saved in every checkpoint, and a resume whose
     * values differ from the checkpoint's is refused naming the setting.
     * NULL: none. */
    void (*describe)(void *ctx, tfm_kv *kv);
} tfm_batch_source;

/* The copy/reverse task (toy.h): batch k of the stream seed for step k + 1. */
typedef struct {
    tfm_toy_config task;
    tfm_toy_batch batch;
    uint64_t seed;
    tfm_batch_source source;
} tfm_toy_source;
int tfm_toy_source_init(tfm_toy_source *s, const tfm_toy_config *task, int64_t batch,
                        uint64_t seed);
void tfm_toy_source_free(tfm_toy_source *s);

/* Encoded sentence pairs in length-bucketed batches (data.h), epoch after
 * epoch; the position (state.epoch, state.pos) is checkpointed. The pairs
 * must outlive the source. With share_count > 1 (data parallelism) next()
 * gives only this process's part of each batch: of its n sentences those
 * from n * share_rank / share_count up to n * (share_rank + 1) / share_count,
 * so the processes together see exactly the batch one process would (the
 * batcher's position advances by whole batches on every process). */
typedef struct {
    const tfm_pairs *pairs;
    tfm_batcher batcher;
    tfm_batch batch;
    tfm_batch_source source;
    int share_rank, share_count; /* 0, 1 after init: the whole batch */
    /* BPE-dropout (tfm_corpus_source_init_dropout) */
    double bpe_dropout;
    int source_only; /* BPE-dropout on the source lines only */
    int64_t max_len[2]; /* the batcher's limits (source, target) */
    uint64_t seed;
    const tfm_corpus *text;
    tfm_bpe *bpe;
    const tfm_vocab *vocab;
    tfm_pairs own;              /* the pairs of the current epoch, in slots */
    int32_t *slots, *slots_end; /* per line, room for one id per character */
    char sum_src[64], sum_tgt[64]; /* checksums of the segmentation without dropout */
} tfm_corpus_source;
int tfm_corpus_source_init(tfm_corpus_source *s, const tfm_pairs *pairs, const tfm_batch_opts *o);
/* The same from the text with BPE-dropout p (tfm_bpe_segment_dropout): at
 * the start of every epoch the training text is segmented anew with draws
 * from (o->seed, epoch), and the batches are cut again from those lengths
 * (tfm_batcher_set_refresh), so a resume at (epoch, position) gets the same
 * ids and batches. Needs o->max_src_len and o->max_tgt_len > 0 and
 * batch_tokens > both (batches vary: max_s/max_t are the limits + 1 and
 * max_cells the budget). text, bpe and vocab (the text model, with its
 * merge symbols) must outlive the source, which uses bpe (not thread-safe)
 * while training. The data.* description has the
 * checksums of the segmentation without dropout and data.bpe-dropout. With
 * source_only the target lines keep the plain segmentation. A line whose
 * segmentation with dropout exceeds its side's limit keeps the plain one in
 * that epoch, so no epoch keeps fewer pairs than the run without dropout
 * would (an unlucky epoch cannot empty the data). No allocation after init. */
int tfm_corpus_source_init_dropout(tfm_corpus_source *s, const tfm_corpus *text, tfm_bpe *bpe,
                                   const tfm_vocab *vocab, double p, int source_only,
                                   const tfm_batch_opts *o);
void tfm_corpus_source_free(tfm_corpus_source *s);

/* ---- hooks ------------------------------------------------------------------- */
/* What one step saw: filled by the trainer before the reduction hook. */
typedef struct {
    double loss;      /* mean loss over n_tokens (this process) */
    int64_t n_tokens; /* target tokens of the batch (this process) */
} tfm_step_stats;

typedef struct {
    double loss;    /* mean validation loss (NAN when not measured) */
    double metric;  /* higher is better (BLEU, -perplexity, ...): best.tfm and early stopping */
    char text[256]; /* shown after "validation at step N: " (e.g. "loss 1.23 ppl 3.42 BLEU 30.1") */
} tfm_valid_result;

typedef struct {
    void *ctx;
    /* The training loss of a batch (a scalar on the tape), *n_tokens its
     * denominator. Default: the Transformer's label-smoothed cross-entropy
     * (o.label_smoothing). */
    tfm_tensor *(*loss)(void *ctx, tfm_trainer *tr, const tfm_seq_batch *b, int64_t *n_tokens);
    /* Validation, every o.valid_every steps and at the end; NULL: none. Use
     * tr->tape for forward passes (tfm_trainer_eval_mode) and leave it reset. */
    int (*validate)(void *ctx, tfm_trainer *tr, tfm_valid_result *out);
    /* After every update (skipped ones too); a non-zero return stops the run. */
    int (*on_step)(void *ctx, tfm_trainer *tr);
    /* Every line the trainer writes to train.log, as written there (already
     * in train.log and, unless quiet, on stdout; progress lines in
     * train.log's form, without the elapsed time and ETA of stdout's). */
    void (*on_log)(void *ctx, tfm_trainer *tr, const char *line);
    /* Gradient reduction across processes. Called on every step after
     * backward and before the gradient norm, clipping and the update:
     *   grad (n floats) holds d(loss)/d(params) of THIS process's batch, where
     *   loss is the mean over st->n_tokens tokens (st->loss its value; NAN or
     *   Inf when the local loss was not finite: grad is then all zeros);
     * on return grad must hold the gradient of the mean loss over ALL
     * processes' tokens, i.e. sum_r n_r * g_r / sum_r n_r, and st the global
     * token count and mean loss (sum_r n_r * loss_r / sum_r n_r), identical
     * on every process, so that every process takes the same decision on a
     * non-finite step and applies the same update. The gradient block is
     * contiguous and laid out like the parameters (padding between tensors
     * is zero and stays zero). Return 0, or non-zero to abort the run (error
     * set). NULL (one process): nothing to do. With a reduce hook the tok/s
     * of the progress line, train.log and metrics.csv counts st's global
     * tokens (the whole job's rate), else this process's batches. */
    int (*reduce)(void *ctx, float *grad, int64_t n, tfm_step_stats *st);
    /* Overlapping the reduction with backward (optional; tfm_dist's bucket
     * functions do it across processes). The gradient block is cut into
     * buckets of whole parameters (o.bucket_floats; tr->bucket_at) and
     *   reduce_start(ctx, st): after the forward pass, before backward: st
     *     holds this process's loss and token count; on return the global
     *     ones (as reduce leaves them). A non-finite global loss skips
     *     backward (and grad_ready) on every process.
     *   grad_ready(ctx, grad, bucket, lo, hi): during backward, as soon as
     *     grad[lo, hi) (bucket `bucket`) is final here (parameters backward
     *     did not reach read as zero): every bucket once per step, in the
     *     order backward finishes them (about reverse layer order), the
     *     last ones right after backward. Nothing writes grad[lo, hi) again
     *     but the hooks (the reduced values go there). Between buckets it is
     *     also called after every op with bucket -1 (lo = hi = 0), a chance
     *     to move transfers on. Non-zero: abort the run (error set).
     *   reduce(ctx, grad, n, st): then as above, but with reduce_start set,
     *     st is already global on entry: it finishes what grad_ready began.
     * Nothing changes in the arithmetic of backward: the gradients are the
     * same with or without these hooks. */
    int (*reduce_start)(void *ctx, tfm_step_stats *st);
    int (*grad_ready)(void *ctx, float *grad, int64_t bucket, int64_t lo, int64_t hi);
} tfm_train_hooks;

/* ---- options ----------------------------------------------------------------- */
typedef struct {
    int64_t steps; /* total updates (a resumed run continues up to this) */
    /* Gradient accumulation: N > 1 batches per update. Each update sums the
     * gradients of N consecutive batches of the source (next() is called
     * with index (step - 1) * N + i + 1, i < N) weighted by their target
     * tokens: the gradient of the mean loss over all their tokens, as one
     * batch holding them all would give (up to rounding), with the memory
     * of one. The loss of the progress line is that mean too. A checkpoint
     * records N (data.accum) and a resume with another N is refused. 0 or
     * 1: one batch per update. Not with hooks.reduce_start/grad_ready (the
     * plain reduce hook runs once per update, after the N batches). */
    int64_t accum;
    /* Exponential moving average of the weights (Polyak averaging):
     * after every update
     * ema += (1 - d) * (w - ema) with d = min(ema, (1 + t) / (10 + t)) at
     * update t, so that the first updates are not drowned by the initial
     * weights. Validation scores the averaged weights, and best.tfm (and
     * the final best.tfm without validation) holds them; the checkpoints
     * hold the trained weights with the average as a state block ("ema"),
     * so a resume continues both bit for bit. A resume with another value
     * is refused. 0: off; else in (0, 1), e.g. 0.999. */
    double ema;
    uint64_t seed; /* weights, dropout; checked on resume */
    int emb_init;  /* tfm_emb_init: how the embedding tables start (tfm/nn.h) */
    tfm_schedule schedule;
    tfm_adam_config adam;
    float clip_norm;         /* global gradient norm limit (0: off) */
    float label_smoothing;   /* the default loss */
    int64_t max_bad_steps;   /* stop after this many non-finite steps in a row */
    size_t arena_bytes;      /* activation arena (0: estimated from the model and source) */
    int check_numerics;      /* check every op for NaN/Inf and name the first */
    tfm_precision precision; /* of the step's GEMMs (TFM_FP32 default; kernels.h) */
    int threads;             /* OpenMP threads (0: leave as is) */
    int64_t bucket_floats;   /* hooks.grad_ready buckets: whole parameters, at least this many
                                floats each (0: 1 << 18, 1 MB) */
    /* run directory */
    const char *run_dir; /* NULL: no files */
    int resume;
    const char *config_text; /* written to config.txt; compared on resume without a checkpoint */
    /* optional, "key = value" lines of every setting's default: in that
     * comparison a key the earlier config.txt lacks (a setting added by a
     * later version) counts as unchanged when its value now is its default */
    const char *config_defaults;
    int64_t save_every;      /* checkpoint every N steps (0: only at validations and the end) */
    int64_t keep;            /* checkpoints kept (at least average_last) */
    int final_best;          /* without validation, best.tfm = the final weights */
    /* N > 0: at the end (not after a stop asked for), averaged.tfm in the
     * run directory = the mean of the newest N checkpoints
     * (tfm_checkpoint_average; fewer when fewer were saved, said in the
     * log), scored by the validate hook when there is one and no reduce
     * hook (logged as "validation of averaged.tfm: ..."; best.tfm and early
     * stopping do not see it; several processes do not score it). Nothing is kept in memory for it:
     * the checkpoints are the state (keep is raised to N). */
    int64_t average_last;
    /* A checkpoint whose weights start a fresh run (not a resume): the
     * optimizer, step counter and data order start anew. Its model
     * configuration must be the one given (an error names the first setting
     * that differs). A resumed run ignores it (its own checkpoint wins). */
    const char *init_from;
    /* progress */
    int64_t log_every; /* progress line every N steps (not on a terminal) */
    int quiet;         /* nothing on stdout */
    /* validation and stopping */
    int64_t valid_every; /* with a validate hook */
    int64_t early_stop;  /* stop after N validations without a better metric (0: off) */
    double max_minutes;  /* stop after this much training time (0: off) */
} tfm_train_opts;

/* steps 3000, seed 1, Noam (factor 1, warmup 200), Adam defaults, label
 * smoothing 0.1, max_bad_steps 10, keep 3, log_every 100, valid_every 500. */
void tfm_train_opts_default(tfm_train_opts *o);

/* ---- the trainer ---------------------------------------------------------------- */
struct tfm_trainer {
    tfm_train_opts o;
    tfm_train_hooks hooks;
    tfm_batch_source *source;
    tfm_model model;    /* the Transformer (unless tfm_trainer_init_params) */
    tfm_params *params; /* &model.params, or the caller's */
    int has_model;      /* model is ours (config in checkpoints, default loss) */
    tfm_tape tape;
    tfm_adam adam;
    int64_t step;       /* updates done */
    int64_t first_step; /* step this process started from */
    int64_t bad_steps;  /* non-finite steps in a row */
    int64_t skipped;    /* in total */
    int64_t n_params;
    double last_loss, last_lr, last_grad_norm;
    int64_t last_tokens;
    double loss_sum; /* since the last progress line */
    int64_t loss_count;
    int64_t tokens;       /* trained target tokens: the whole job's with a reduction hook */
    double train_seconds; /* time in steps, this process */
    double best_metric;   /* -INFINITY before the first validation */
    int64_t no_improve;   /* validations since the best */
    int stop_reason;      /* after tfm_train: 0 steps done, 1 early stop, 2 time, 3 asked */
    /* A run that ends between its grids (the last step of --steps off
     * --log-every, or a --max-minutes stop off --valid-every) logs and
     * validates there as any end does. Its checkpoint records the state a
     * run going on has at that step, and which rows and best.tfm the end
     * added, so that a resume continuing past it drops them and repeats
     * the run straight through. */
    struct {
        int64_t step;        /* the end step; -1: none */
        int loss_row, valid; /* a progress row / a validation only because it ended */
        double loss_sum;     /* before that row */
        int64_t loss_count;
        char best_metric[40], no_improve[24]; /* before that validation ("": none yet) */
        int best; /* 0: best.tfm untouched, 1: replaced (the old one is best-before-stop.tfm),
                     2: created */
    } stop;
    tfm_kv state; /* "state.*", "data.*" and your keys: saved with every checkpoint */
    FILE *log, *metrics;
    int lock_fd; /* the run directory's lock (-1: none): one trainer per directory */
    int tty;
    double t0;
    /* with hooks.grad_ready: bucket b is grad[bucket_at[b], bucket_at[b + 1])
     * and holds parameters bucket_param[b] .. bucket_param[b + 1] - 1 */
    int64_t n_buckets;
    int64_t *bucket_at, *bucket_param;
    int64_t *bucket_node;  /* (n_buckets) this step: the first node that reads it (-1: none) */
    int64_t *bucket_order; /* (n_buckets) buckets in the order backward finishes them */
    int64_t bucket_next;   /* buckets handed to grad_ready so far this step */
    float *grad_acc;       /* (params total_n) the accumulated gradient (o.accum > 1) */
    float *ema;            /* (params total_n) the averaged weights (o.ema > 0) */
    int ema_in;            /* the averaged weights are in params (swapped) */
    tfm_state_block state_blocks[TFM_CHECKPOINT_MAX_BLOCKS];
};

/* Builds the Transformer for mc (weights from o->seed) or, with o->resume,
 * loads it with the optimizer state from the run directory. hooks may be
 * NULL. On failure nothing stays allocated and the run directory is as it
 * was. */
int tfm_trainer_init(tfm_trainer *tr, const tfm_train_opts *o, const tfm_model_config *mc,
                     tfm_batch_source *source, const tfm_train_hooks *hooks);
/* The same for your own model: params (allocated and initialised by you,
 * outliving the trainer) and a loss hook (required). Put your model's
 * settings into tr->state under "model.*" keys after init if you want them in
 * the checkpoints. */
int tfm_trainer_init_params(tfm_trainer *tr, const tfm_train_opts *o, tfm_params *params,
                            tfm_batch_source *source, const tfm_train_hooks *hooks);
void tfm_trainer_free(tfm_trainer *tr);

/* One update with the source's next batch. Returns 0, 1 when the update was
 * skipped (non-finite loss or gradient), -1 on error (message set; also after
 * o.max_bad_steps skipped steps in a row). No allocation. */
int tfm_trainer_step(tfm_trainer *tr);
/* The loop: steps until o.steps, then the final checkpoint (and best.tfm
 * without validation). Validates, checkpoints, logs and stops as configured.
 * 0 ok (tr->stop_reason says why it ended), else error set. */
int tfm_train(tfm_trainer *tr);
/* Validation now (the hook), with best.tfm, early-stopping count and
 * metrics.csv; 0 ok. */
int tfm_trainer_validate(tfm_trainer *tr, tfm_valid_result *out);
/* Checkpoint of the current step (with rotation); best.tfm. */
int tfm_trainer_checkpoint(tfm_trainer *tr);
int tfm_trainer_save_best(tfm_trainer *tr);
/* With o.ema: swaps the averaged weights (tr->ema) and the trained ones
 * (tr->params), element by element, so that swapping twice restores both
 * bit for bit; tr->ema_in says which are in the parameters. After tfm_train
 * the trained ones are: swap to evaluate or translate with the average.
 * Without o.ema it does nothing. */
void tfm_trainer_ema_swap(tfm_trainer *tr);
/* Async-signal-safe: the loop finishes the step, saves and returns. A
 * request holds until a tfm_train answers it (one made before tfm_train, e.g.
 * while the data loads, stops it at once); tfm_train clears a request it
 * answered when it returns, so a later training of the process runs. */
void tfm_trainer_request_stop(void);
int tfm_trainer_stop_requested(void);
/* Writes a line (printf format) to train.log, stdout unless quiet, on_log. */
void tfm_trainer_log(tfm_trainer *tr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Tape in evaluation mode (no gradients, no dropout) / back to training. */
void tfm_trainer_eval_mode(tfm_trainer *tr, int on);

/* ---- run directories and models ---------------------------------------------------- */
/* The newest checkpoint in dir that verifies (falling back to older ones,
 * saying so on stderr), best.tfm first when prefer_best: its path
 * (malloc'd), or NULL with the error set. */
char *tfm_run_find_checkpoint(const char *dir, int prefer_best);
/* The newest n checkpoint-<step>.tfm files of a run directory, oldest
 * first: paths[i] receives "dir/name" (malloc'd). 0 ok; 1 with the error set
 * when dir cannot be read or holds fewer than n (nothing left allocated). */
int tfm_run_newest_checkpoints(const char *dir, int64_t n, char **paths);
/* Loads a model for inference from a run directory (best.tfm, else the
 * newest good checkpoint), a checkpoint file or an export directory; meta
 * (if non-NULL, initialised by the caller) receives its metadata (data.kind
 * says "toy" or "text"; a checkpoint without it is refused). */
int tfm_load_model(const char *path, tfm_model *m, tfm_kv *meta);
/* mkdir -p; 0 ok */
int tfm_make_dirs(const char *dir);
/* The directory with the subword files of the model at model_path (the
 * path itself, or the directory of a checkpoint file), malloc'd. */
char *tfm_model_text_dir(const char *model_path);

/* ---- text: subword model, corpus encoding, translation ---------------------------------- */
/* The BPE codes and vocabulary that go with a text model: DIR/bpe.codes and
 * DIR/vocab.txt in a run directory or an export. */
typedef struct {
    tfm_bpe *bpe;
    tfm_vocab *vocab;
} tfm_text_model;

int tfm_text_model_load(const char *dir, tfm_text_model *tm);
/* Learns a joint BPE (n_merges, min frequency 2) and the vocabulary from the
 * files, each read once (pipes and FIFOs work); with dir non-NULL saves them
 * there. */
int tfm_text_model_learn(const char *const *files, int n_files, int64_t n_merges, const char *dir,
                         tfm_text_model *tm);
/* The same from texts in memory, and saving into dir (bpe.codes, vocab.txt). */
int tfm_text_model_learn_texts(const tfm_text_input *in, int n, int64_t n_merges,
                               tfm_text_model *tm);
int tfm_text_model_save(const tfm_text_model *tm, const char *dir);
/* 0 when the vocabulary has the model's size, else an error naming
 * dir/vocab.txt. */
int tfm_text_model_check(const tfm_text_model *tm, const tfm_model_config *mc, const char *dir);
/* The text model beside the model at model_path (tfm_model_text_dir),
 * checked against the model's vocabulary size. */
int tfm_load_text_model(const char *model_path, const tfm_model_config *mc, tfm_text_model *tm);
void tfm_text_model_free(tfm_text_model *tm);

/* Sentence pairs as ids (one block of ids; pairs point into it). */
typedef struct {
    tfm_pairs pairs;
    int32_t *ids;
} tfm_encoded_corpus;
int tfm_corpus_encode(const tfm_corpus *c, const tfm_text_model *tm, tfm_encoded_corpus *e);
void tfm_encoded_corpus_free(tfm_encoded_corpus *e);

typedef struct {
    int64_t beam;            /* 1: greedy */
    double alpha;            /* beam length penalty */
    int64_t batch;           /* sentences per decoding batch */
    int64_t max_len;         /* output limit (0: 2 * source + 10) */
    int progress;            /* progress on stderr */
    tfm_precision precision; /* GEMM arithmetic of decoding (TFM_FP32 default) */
    /* Inputs longer than the model's positions allow are cut; with warn set,
     * each such line is reported there as "tfm: <input_name>:<line>: ..."
     * (line = first_line + its index; first_line 0 counts as 1), as are
     * errors in a line (bad UTF-8). */
    FILE *warn;
    const char *input_name;
    int64_t first_line;
    /* 0: out[i] is the translation. K (1..beam): out[i] is the n-best list
     * of beam search (tfm_nbest in decode.h), K lines or fewer joined by
     * newlines, "LINE ||| hypothesis ||| score" (Moses), LINE the input's
     * 0-based line number (first_line - 1 + i; first_line 0 counts as 1),
     * score the length-normalized log-probability that ranked it (%.6f). */
    int64_t n_best;
    /* When beam search ends a sentence (tfm_beam_stop of decode.h);
     * TFM_BEAM_STOP_FINISHED (0) by default. Beam 1 ignores it: that is
     * greedy decoding, with n-best lists and ensembles too. */
    tfm_beam_stop beam_stop;
} tfm_translate_opts;
/* tfm translate's defaults: greedy (beam 1; alpha 0.6 for beam search, which
 * ends a sentence when `beam` hypotheses have finished), batches of 64,
 * output limit from the input, fp32, no n-best list. */
void tfm_translate_opts_default(tfm_translate_opts *o);

/* Translates n sentences; out[i] receives a malloc'd string (on failure no
 * out[i] is left allocated). Sentences are decoded in batches of similar
 * length; with several batches and threads, a batch per thread at a time,
 * each thread with memory of its own for a batch's activations and caches
 * (all of them within a quarter of the machine's memory), else one batch
 * after the other on all threads. The output does not depend on which. */
int tfm_translate_lines(tfm_model *m, const tfm_text_model *tm, char *const *lines, int64_t n,
                        const tfm_translate_opts *o, char **out);
/* The same with an ensemble of n_models models (1..TFM_ENSEMBLE_MAX of
 * decode.h) that share tm's vocabulary: each step averages their
 * log-probabilities (tfm_beam_decode_ensemble; beam 1 is its greedy
 * decoding). Inputs are cut to the smallest model's positions. One model is
 * tfm_translate_lines. */
int tfm_translate_lines_ensemble(tfm_model *const *models, int64_t n_models,
                                 const tfm_text_model *tm, char *const *lines, int64_t n,
                                 const tfm_translate_opts *o, char **out);

/* Toy models (data.kind "toy"): each line holds symbol ids in [3, vocab)
 * separated by spaces ("3 4 5"); out[i] receives the greedy decoding the same
 * way (malloc'd). o->batch lines are decoded together, up to o->max_len
 * symbols (0: twice the input plus 10; never more than the model's
 * positions); o->beam above 1 is refused (greedy only). Errors name
 * "<name>:<line>", line = o->first_line (1 when 0) + the index; on failure
 * no out[i] is left allocated. */
int tfm_translate_toy_lines(tfm_model *m, char *const *lines, int64_t n,
                            const tfm_translate_opts *o, const char *name, char **out);

/* ---- several processes: data parallelism ----------------------------------------------
 * The communication a data-parallel run needs, supplied by the program (tfm's
 * `make MPI=1` build fills it from MPI in src/train/dist_mpi.c; the library
 * itself never links MPI). size processes (ranks 0 .. size-1) each run the
 * same trainer on their share of every global batch; the library exchanges
 * only what goes through these functions, so any transport (MPI, sockets, a
 * test double) can carry it. Every function is collective: all ranks call it
 * in the same order. They return 0, or non-zero with the error set (a lost
 * peer, a transport failure). */
typedef struct tfm_dist tfm_dist;
struct tfm_dist {
    int rank, size;
    void *impl;
    /* all[r * bytes ...] receives rank r's `bytes` bytes (the same size on
     * every rank) */
    int (*allgather)(tfm_dist *d, const void *mine, size_t bytes, void *all);
    /* rank 0's bytes to every rank */
    int (*broadcast)(tfm_dist *d, void *buf, size_t bytes);
    /* x (n floats) := scale * sum_r w[r] * x_r, added in rank order (in
     * double) whatever the transport does, so that a run is bit-identical
     * when repeated with the same size; identical on every rank. Buffers
     * come from reserve (called once with the largest n), never from the
     * step. */
    int (*weighted_sum)(tfm_dist *d, float *x, int64_t n, const double *w, double scale);
    int (*reserve)(tfm_dist *d, int64_t n);
    /* The same sum in buckets, overlapped with backward (optional: NULL
     * when the transport cannot). reserve_buckets once: bucket b is
     * x[at[b], at[b + 1]), at[0] = 0. Each step: sum_start (before any
     * bucket is final), sum_bucket(b) for every bucket once as soon as x's
     * part is final here (it sends and never waits; b = -1: only move the
     * transfers on), then sum_finish waits until x holds, element for
     * element, what weighted_sum would have given (the same additions in
     * the same order: bit-identical). Between sum_start and sum_finish the
     * caller writes no bucket it has handed over, and w stays valid. */
    int (*reserve_buckets)(tfm_dist *d, const int64_t *at, int64_t n_buckets);
    int (*sum_start)(tfm_dist *d, float *x, const double *w, double scale);
    int (*sum_bucket)(tfm_dist *d, int64_t bucket);
    int (*sum_finish)(tfm_dist *d);
    double finish_seconds; /* time sum_finish spent waiting, in total (the exposed part) */
    /* Set (e.g. by a signal handler) to ask for a stop: the ranks agree on
     * it at the next step and all stop after the same step. */
    volatile sig_atomic_t stop_pending;
    /* Set by the library when its error is the same on every rank (a
     * start-up mismatch): the program can then exit normally on every rank
     * instead of aborting the job. */
    int agreed_error;
};

/* The MPI implementation (only in builds with `make MPI=1`): NULL when the
 * program was not started by mpirun (one process), else a tfm_dist over
 * MPI_COMM_WORLD. tfm_dist_mpi_end returns rc after MPI_Finalize, or aborts
 * the whole job when rc is non-zero and the error was not agreed, so that no
 * rank waits forever for one that gave up. */
tfm_dist *tfm_dist_mpi_start(void);
int tfm_dist_mpi_end(tfm_dist *d, int rc);

/* ---- training on a parallel corpus ---------------------------------------------------
 * Everything `tfm train --src-train` does: reads the corpora, learns (or on
 * resume reloads) the BPE and vocabulary in the run directory, encodes,
 * batches by tokens, trains with validation loss/perplexity/BLEU every
 * valid_every steps, best.tfm, early stopping. */
typedef struct {
    const char *src_train, *tgt_train, *src_valid, *tgt_valid; /* valid optional */
    int64_t bpe_merges, batch_tokens, max_tokens, valid_max;
    tfm_translate_opts decode; /* validation decoding */
    /* 0: the vocabulary also holds every symbol the BPE merges pass through
     * (tfm_vocab_add_merge_symbols), so tfm export can write a tokenizer.json
     * that segments exactly as tfm; 1: only the pieces the corpus produces,
     * the vocabulary of runs before 2026-11-29. A resumed run keeps the
     * vocabulary in its directory either way. */
    int inexact_vocab;
    /* > 0: BPE-dropout with this probability on the training text, segmented
     * anew every epoch (tfm_corpus_source_init_dropout; needs batch_tokens >
     * max_tokens, and one process); 0: segmented once. */
    double bpe_dropout;
    int bpe_dropout_source_only; /* BPE-dropout on the source side only */
    /* NULL: one process. Otherwise data parallelism over d->size ranks:
     * batch_tokens is the global batch (each rank takes its share, and every
     * batch must hold at least one sentence per rank); gradients, loss and
     * validation are global, every rank takes the same decisions; only rank
     * 0 touches the run directory (it learns or loads the BPE and the
     * checkpoint and sends them to the others); at start-up the settings
     * (o->config_text) and the corpora are compared across ranks and a
     * mismatch names the rank and the setting. The checkpoint records the
     * number of ranks (state.dist_ranks); a resume with another number
     * continues the same global batch sequence and says so. */
    tfm_dist *dist;
    /* optional: on_step and on_log are called as tfm_train calls them (with
     * hooks->ctx); the loss, validation and gradient reduction (dist) are
     * the task's */
    const tfm_train_hooks *hooks;
} tfm_corpus_task;

/* Runs the whole training; summary (optional) receives the result. o->run_dir
 * is required: the BPE codes and vocabulary are learned (or, resuming, read)
 * there, beside the checkpoints. */
typedef struct {
    int64_t steps, epochs;
    double best_bleu, seconds, tokens_per_s;
} tfm_corpus_summary;
int tfm_train_corpus(const tfm_corpus_task *task, const tfm_train_opts *o,
                     const tfm_model_config *mc, tfm_corpus_summary *summary);

/* ---- the toy tasks ---------------------------------------------------------------------
 * Exact-sequence match and token accuracy of greedy decoding on n held-out
 * sequences (a stream disjoint from training); the first n_show sources and
 * outputs are printed to show (may be NULL). */
int tfm_toy_evaluate(tfm_model *m, const tfm_toy_config *tc, uint64_t seed, int64_t n,
                     int64_t batch, double *exact, double *token_acc, FILE *show, int n_show);

#ifdef __cplusplus
}
#endif

#endif
