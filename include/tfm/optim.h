/* tfm/optim.h: Adam/AdamW over the parameter block, gradient clipping, and
 * the warmup ("Noam") learning-rate schedule. */
#ifndef TFM_OPTIM_H
#define TFM_OPTIM_H

#include "tfm/tensor.h"

typedef struct {
    double lr_factor; /* Noam factor */
    int64_t warmup;   /* warmup steps */
    int64_t d_model;  /* for the d_model^-0.5 term */
    float beta1, beta2, eps;
    float weight_decay; /* decoupled (AdamW); applied to 2-D weights only */
    float clip_norm;    /* clip the global gradient norm to this (0: off) */
} tfm_adam_config;

void tfm_adam_config_default(tfm_adam_config *c, int64_t d_model);

/* lr = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), step >= 1 */
double tfm_noam_lr(int64_t step, int64_t d_model, int64_t warmup, double factor);

/* The global L2 norm of all gradients (double, deterministic). */
double tfm_grad_norm(tfm_params *p); /* zeroes stale gradients first */

/* One update at step t (1-based) with learning rate lr: clips when
 * configured, then Adam. If the gradient norm is not finite the update is
 * skipped and 1 is returned (parameters and moments untouched); *grad_norm
 * receives the norm before clipping. */
int tfm_adam_step(tfm_params *p, const tfm_adam_config *c, int64_t t, double lr, double *grad_norm);

#endif
