/* tfm/optim.h: optimizers that own their state, gradient clipping, and
 * learning-rate schedules (separate from the optimizer).
 *
 * tfm_params holds the weights and their gradients; an optimizer keeps its
 * own state blocks (Adam: the first and second moments), each laid out like
 * the parameter block (same offsets, padding included), and names them so a
 * checkpoint can store and restore them:
 *
 *     tfm_adam opt;
 *     tfm_adam_config ac;
 *     tfm_adam_config_default(&ac);
 *     if (tfm_adam_init(&opt, &model.params, &ac)) fail(tfm_last_error());
 *     tfm_schedule sched = {.kind = TFM_SCHEDULE_INVERSE_SQRT, .lr = 5e-4, .warmup = 4000};
 *     for (step = 1; ...; step++) {
 *         ... forward, tfm_backward ...
 *         double norm = tfm_grad_norm(&model.params);
 *         if (!isfinite(norm)) continue;                  // skip the update
 *         tfm_clip_grad_norm(&model.params, norm, 1.0f);  // optional
 *         tfm_adam_update(&opt, &model.params, step, tfm_schedule_lr(&sched, step));
 *     }
 *     tfm_adam_free(&opt); */
#ifndef TFM_OPTIM_H
#define TFM_OPTIM_H

#include "tfm/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- learning-rate schedules ------------------------------------------------- */
typedef enum {
    /* "Attention Is All You Need": lr * d_model^-0.5 * min(s^-0.5, s * warmup^-1.5);
     * lr is the Noam factor (1.0 in the paper) */
    TFM_SCHEDULE_NOAM,
    /* linear warmup from 0 to the peak lr over warmup steps, then
     * lr * sqrt(warmup / s) (fairseq's inverse_sqrt) */
    TFM_SCHEDULE_INVERSE_SQRT,
    /* lr at every step */
    TFM_SCHEDULE_CONSTANT,
} tfm_schedule_kind;

typedef struct {
    tfm_schedule_kind kind;
    double lr;       /* Noam factor, or the peak / constant learning rate */
    int64_t warmup;  /* steps (>= 1) */
    int64_t d_model; /* Noam only */
    /* cooldown > 0: the last `cooldown` updates up to `total` (the run's
     * last step; the trainer sets it from its steps when 0) scale the rate
     * by (total - step + 1) / (cooldown + 1), a linear decay towards zero
     * (warmup-stable-decay, "trapezoidal"); 0: off */
    int64_t cooldown;
    int64_t total;
} tfm_schedule;

/* The learning rate of update `step` (1-based), the cooldown included. */
double tfm_schedule_lr(const tfm_schedule *s, int64_t step);
/* "noam", "inverse-sqrt", "constant" and back; -1 when the name is unknown. */
const char *tfm_schedule_name(tfm_schedule_kind k);
int tfm_schedule_parse(const char *name);

/* lr = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), step >= 1 */
double tfm_noam_lr(int64_t step, int64_t d_model, int64_t warmup, double factor);

/* ---- gradients ------------------------------------------------------------------ */
/* The global L2 norm of all gradients (double, deterministic for a fixed
 * thread count). Zeroes stale gradients first (tfm_params_settle_grads). */
double tfm_grad_norm(tfm_params *p);
/* Scales the gradients by max_norm / (norm + 1e-6) when norm > max_norm > 0
 * (norm as returned by tfm_grad_norm). */
void tfm_clip_grad_norm(tfm_params *p, double norm, float max_norm);

/* ---- Adam / AdamW -------------------------------------------------------------- */
typedef struct {
    float beta1, beta2, eps;
    float weight_decay; /* decoupled (AdamW); applied to 2-D weights only */
} tfm_adam_config;

void tfm_adam_config_default(tfm_adam_config *c); /* 0.9, 0.98, 1e-9, no decay */

/* A named optimizer state block: total_n floats laid out like the parameter
 * block it belongs to. */
typedef struct {
    const char *name; /* "adam.m" */
    float *data;
} tfm_state_block;

typedef struct {
    tfm_adam_config cfg;
    int64_t n;    /* floats per block (the parameter block's total_n) */
    float *m, *v; /* first and second moments, zero at the start */
    tfm_state_block blocks[2];
} tfm_adam;

/* 0 when c is usable: beta1 and beta2 in [0, 1), eps positive and finite,
 * weight decay finite and not negative; else 1 with the error set. */
int tfm_adam_config_check(const tfm_adam_config *c);
/* Moments for the parameters p (allocated, zero); 0 ok (c is checked as
 * above first). */
int tfm_adam_init(tfm_adam *a, const tfm_params *p, const tfm_adam_config *c);
void tfm_adam_free(tfm_adam *a);
/* The state to checkpoint: *n receives the count (2: "adam.m", "adam.v"). */
tfm_state_block *tfm_adam_state(tfm_adam *a, int *n);
/* One Adam update at step t (1-based) with learning rate lr from p->grad
 * (which must be settled: tfm_grad_norm does it). */
void tfm_adam_update(tfm_adam *a, tfm_params *p, int64_t t, double lr);

#ifdef __cplusplus
}
#endif

#endif
