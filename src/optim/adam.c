/* Adam/AdamW with its own moments, global-norm clipping, and the learning-rate
 * schedules. */
#include <math.h>
#include <string.h>

#include "tfm/kernels.h"
#include "tfm/optim.h"

/* ---- schedules --------------------------------------------------------------------- */
double tfm_noam_lr(int64_t step, int64_t d_model, int64_t warmup, double factor) {
    double s = (double)(step < 1 ? 1 : step);
    double w = (double)(warmup < 1 ? 1 : warmup);
    double a = 1.0 / sqrt(s), b = s * pow(w, -1.5);
    return factor / sqrt((double)d_model) * (a < b ? a : b);
}

static double schedule_base(const tfm_schedule *s, int64_t step) {
    double st = (double)(step < 1 ? 1 : step);
    double w = (double)(s->warmup < 1 ? 1 : s->warmup);
    switch (s->kind) {
    case TFM_SCHEDULE_NOAM:
        return tfm_noam_lr(step, s->d_model, s->warmup, s->lr);
    case TFM_SCHEDULE_INVERSE_SQRT:
        return st < w ? s->lr * st / w : s->lr * sqrt(w / st);
    case TFM_SCHEDULE_CONSTANT:
        break;
    }
    return s->lr;
}

double tfm_schedule_lr(const tfm_schedule *s, int64_t step) {
    double lr = schedule_base(s, step);
    if (s->cooldown > 0 && s->total > 0 && step > s->total - s->cooldown) {
        int64_t left = s->total - step + 1; /* cooldown .. 1 on the last update */
        lr *= left > 0 ? (double)left / (double)(s->cooldown + 1) : 0.0;
    }
    return lr;
}

static const char *const SCHEDULE_NAMES[] = {"noam", "inverse-sqrt", "constant"};
_Static_assert(sizeof SCHEDULE_NAMES / sizeof SCHEDULE_NAMES[0] == TFM_SCHEDULE_CONSTANT + 1,
               "one name per schedule");

const char *tfm_schedule_name(tfm_schedule_kind k) {
    return (unsigned)k <= TFM_SCHEDULE_CONSTANT ? SCHEDULE_NAMES[k] : "?";
}

int tfm_schedule_parse(const char *name) {
    for (int i = 0; i <= TFM_SCHEDULE_CONSTANT; i++)
        if (!strcmp(name, SCHEDULE_NAMES[i])) return i;
    return -1;
}

/* ---- gradients ---------------------------------------------------------------------- */
double tfm_grad_norm(tfm_params *p) {
    tfm_params_settle_grads(p);
    return sqrt(tfm_k_sumsq(p->grad, p->total_n));
}

void tfm_clip_grad_norm(tfm_params *p, double norm, float max_norm) {
    if (max_norm > 0 && norm > max_norm) {
        float s = (float)(max_norm / (norm + 1e-6));
        tfm_k_scale(p->grad, p->grad, s, p->total_n);
    }
}

/* ---- Adam --------------------------------------------------------------------------- */
void tfm_adam_config_default(tfm_adam_config *c) {
    c->beta1 = 0.9f;
    c->beta2 = 0.98f;
    c->eps = 1e-9f;
    c->weight_decay = 0.0f;
}

int tfm_adam_config_check(const tfm_adam_config *c) {
    /* settings that make every update NaN or nonsense */
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
        return tfm_set_error("adam: beta1 %g and beta2 %g must be in [0, 1)", (double)c->beta1,
                             (double)c->beta2),
               1;
    if (!(c->eps > 0) || !isfinite(c->eps))
        return tfm_set_error("adam: eps %g must be positive and finite", (double)c->eps), 1;
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return tfm_set_error("adam: weight decay %g must be finite and not negative",
                             (double)c->weight_decay),
               1;
    return 0;
}

int tfm_adam_init(tfm_adam *a, const tfm_params *p, const tfm_adam_config *c) {
    memset(a, 0, sizeof *a);
    if (tfm_adam_config_check(c)) return 1;
    a->cfg = *c;
    a->n = p->total_n;
    size_t bytes = (size_t)(a->n ? a->n : 1) * sizeof(float);
    a->m = tfm_calloc(bytes);
    a->v = tfm_calloc(bytes);
    if (!a->m || !a->v) {
        tfm_adam_free(a);
        return tfm_set_error("out of memory: Adam moments need 2 x %zu MB", bytes >> 20), 1;
    }
    a->blocks[0] = (tfm_state_block){"adam.m", a->m};
    a->blocks[1] = (tfm_state_block){"adam.v", a->v};
    return 0;
}

void tfm_adam_free(tfm_adam *a) {
    tfm_free(a->m);
    tfm_free(a->v);
    memset(a, 0, sizeof *a);
}

tfm_state_block *tfm_adam_state(tfm_adam *a, int *n) {
    *n = 2;
    return a->blocks;
}

void tfm_adam_update(tfm_adam *a, tfm_params *p, int64_t t, double lr) {
    const tfm_adam_config *c = &a->cfg;
    TFM_ASSERT(a->n == p->total_n, "Adam state made for another parameter block");
    /* step 0 would divide by 1 - beta^0 = 0 and make every parameter NaN */
    TFM_ASSERT(t >= 1, "Adam step %lld: steps count from 1", (long long)t);
    if (c->weight_decay == 0.0f) {
        /* one pass over the whole block (padding between tensors stays 0) */
        tfm_k_adam(p->data, p->grad, a->m, a->v, p->total_n, (float)lr, c->beta1, c->beta2, c->eps,
                   0.0f, t);
        return;
    }
    for (int64_t i = 0; i < p->count; i++) {
        tfm_tensor *x = p->items[i];
        int64_t off = x->data - p->data;
        tfm_k_adam(x->data, x->grad, a->m + off, a->v + off, x->n, (float)lr, c->beta1, c->beta2,
                   c->eps, x->ndim >= 2 ? c->weight_decay : 0.0f, t);
    }
}
