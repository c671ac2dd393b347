/* Adam/AdamW, global-norm clipping, and the warmup schedule. */
#include <math.h>

#include "tfm/kernels.h"
#include "tfm/optim.h"

void tfm_adam_config_default(tfm_adam_config *c, int64_t d_model) {
    c->lr_factor = 1.0;
    c->warmup = 4000;
    c->d_model = d_model;
    c->beta1 = 0.9f;
    c->beta2 = 0.98f;
    c->eps = 1e-9f;
    c->weight_decay = 0.0f;
    c->clip_norm = 0.0f;
}

double tfm_noam_lr(int64_t step, int64_t d_model, int64_t warmup, double factor) {
    double s = (double)(step < 1 ? 1 : step);
    double w = (double)(warmup < 1 ? 1 : warmup);
    double a = 1.0 / sqrt(s), b = s * pow(w, -1.5);
    return factor / sqrt((double)d_model) * (a < b ? a : b);
}

double tfm_grad_norm(tfm_params *p) {
    tfm_params_settle_grads(p);
    return sqrt(tfm_k_sumsq(p->grad, p->total_n));
}

int tfm_adam_step(tfm_params *p, const tfm_adam_config *c, int64_t t, double lr,
                  double *grad_norm) {
    double norm = tfm_grad_norm(p);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm)) return 1;
    if (c->clip_norm > 0 && norm > c->clip_norm) {
        float s = (float)(c->clip_norm / (norm + 1e-6));
        tfm_k_scale(p->grad, p->grad, s, p->total_n);
    }
    if (c->weight_decay == 0.0f) {
        /* one pass over the whole block (padding between tensors stays 0) */
        tfm_k_adam(p->data, p->grad, p->adam_m, p->adam_v, p->total_n, (float)lr, c->beta1,
                   c->beta2, c->eps, 0.0f, t);
        return 0;
    }
    for (int64_t i = 0; i < p->count; i++) {
        tfm_tensor *x = p->items[i];
        int64_t off = x->data - p->data;
        tfm_k_adam(x->data, x->grad, p->adam_m + off, p->adam_v + off, x->n, (float)lr, c->beta1,
                   c->beta2, c->eps, x->ndim >= 2 ? c->weight_decay : 0.0f, t);
    }
    return 0;
}
