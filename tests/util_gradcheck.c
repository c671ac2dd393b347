/* Central-difference gradient checks on the tape (see util_gradcheck.h). */
#include "util_gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tfm_gc_opts tfm_gc_defaults(void) {
    tfm_gc_opts o;
    memset(&o, 0, sizeof o);
    o.h = 1e-2f;
    o.atol = 1e-3;
    o.rtol = 1e-2;
    o.max_skip_frac = 0.25;
    o.seed = 12345;
    return o;
}

static int64_t numel(const tfm_gc_input *in) {
    int64_t n = 1;
    for (int d = 0; d < in->ndim; d++) n *= in->shape[d];
    return n;
}

/* The weight of output element i in f = sum(out * R). */
static float weight_r(uint64_t seed, int64_t i) {
    return 2.0f * tfm_rand_uniform(seed, (uint64_t)i) - 1.0f;
}

/* Resets the tape and builds the graph; tensors[] receives the input
 * tensors. NULL (with the reason printed) when the graph fails. */
static tfm_tensor *build(tfm_tape *t, tfm_gc_fn fn, void *ctx, tfm_gc_input *inputs, int n_in,
                         tfm_tensor **tensors) {
    tfm_tape_reset(t);
    for (int i = 0; i < n_in; i++) {
        tensors[i] = tfm_tape_tensor(t, inputs[i].ndim, inputs[i].shape, inputs[i].needs_grad);
        if (!tensors[i]) {
            printf("  gradcheck: input %s: %s\n", inputs[i].name, tfm_last_error());
            return NULL;
        }
        memcpy(tensors[i]->data, inputs[i].data, (size_t)tensors[i]->n * sizeof(float));
    }
    tfm_tensor *out = fn(t, tensors, ctx);
    if (!out) printf("  gradcheck: forward failed: %s\n", tfm_last_error());
    return out;
}

/* Forward + R-weighted loss through the tape + backward; copies the analytic
 * gradients to grads[i] (n_i floats each, NULL for constants). */
static double analytic_pass(tfm_tape *t, tfm_gc_fn fn, void *ctx, tfm_gc_input *inputs, int n_in,
                            uint64_t seed, float **grads, float *out_copy, int64_t out_cap,
                            int64_t *out_n) {
    tfm_tensor *tensors[16];
    if (n_in > 16) return NAN;
    tfm_tensor *out = build(t, fn, ctx, inputs, n_in, tensors);
    if (!out) return NAN;
    if (out_n) *out_n = out->n;
    if (out_copy) memcpy(out_copy, out->data, (size_t)(out->n < out_cap ? out->n : out_cap) * 4);
    float *r = tfm_arena_alloc(&t->arena, (size_t)out->n * sizeof(float));
    if (!r) {
        printf("  gradcheck: %s\n", tfm_last_error());
        return NAN;
    }
    double f = 0;
    for (int64_t i = 0; i < out->n; i++) {
        r[i] = weight_r(seed, i);
        f += (double)out->data[i] * r[i];
    }
    tfm_tensor *rc = tfm_tape_constant(t, r, out->ndim, out->shape);
    tfm_tensor *loss = tfm_sum(t, tfm_mul(t, out, rc));
    if (!loss || tfm_backward(t, loss)) {
        printf("  gradcheck: backward failed: %s\n", tfm_last_error());
        return NAN;
    }
    for (int i = 0; i < n_in; i++) {
        if (!grads || !grads[i]) continue;
        if (!tensors[i]->grad) {
            printf("  gradcheck: input %s has no gradient\n", inputs[i].name);
            return NAN;
        }
        memcpy(grads[i], tensors[i]->grad, (size_t)tensors[i]->n * sizeof(float));
    }
    return f;
}

double tfm_gc_eval(tfm_tape *t, tfm_gc_fn fn, void *ctx, tfm_gc_input *inputs, int n_in,
                   uint64_t seed, float *out_copy, int64_t out_cap, int64_t *out_n) {
    float *grads[16] = {0};
    if (n_in > 16) return NAN;
    for (int i = 0; i < n_in; i++) grads[i] = inputs[i].needs_grad ? inputs[i].grad_out : NULL;
    return analytic_pass(t, fn, ctx, inputs, n_in, seed, grads, out_copy, out_cap, out_n);
}

/* Output values of one forward (no backward) into buf; returns the count or -1. */
static int64_t forward_values(tfm_tape *t, tfm_gc_fn fn, void *ctx, tfm_gc_input *inputs, int n_in,
                              float *buf, int64_t cap) {
    tfm_tensor *tensors[16];
    tfm_tensor *out = build(t, fn, ctx, inputs, n_in, tensors);
    if (!out) return -1;
    if (out->n != cap) {
        printf("  gradcheck: output size changed from %lld to %lld\n", (long long)cap,
               (long long)out->n);
        return -1;
    }
    memcpy(buf, out->data, (size_t)out->n * sizeof(float));
    return out->n;
}

int tfm_gradcheck(const char *what, tfm_tape *t, tfm_gc_fn fn, void *ctx, tfm_gc_input *inputs,
                  int n_in, const tfm_gc_opts *opts, tfm_gc_result *results) {
    tfm_gc_opts o = opts ? *opts : tfm_gc_defaults();
    if (n_in > 16) return -1;
    float *grads[16] = {0};
    for (int i = 0; i < n_in; i++)
        if (inputs[i].needs_grad) grads[i] = calloc((size_t)numel(&inputs[i]), sizeof(float));
    int64_t n_out = 0;
    int status = 0;
    double f0 = analytic_pass(t, fn, ctx, inputs, n_in, o.seed, grads, NULL, 0, &n_out);
    float *plus = NULL, *minus = NULL, *r = NULL;
    if (isnan(f0)) {
        status = -1;
        goto done;
    }
    plus = malloc((size_t)n_out * sizeof(float));
    minus = malloc((size_t)n_out * sizeof(float));
    r = malloc((size_t)n_out * sizeof(float));
    for (int64_t j = 0; j < n_out; j++) r[j] = weight_r(o.seed, j);
    for (int i = 0; i < n_in && status >= 0; i++) {
        if (!inputs[i].needs_grad) continue;
        tfm_gc_result res = {0, 0, 0, 0, 0};
        int64_t n = numel(&inputs[i]);
        float *x = inputs[i].data;
        for (int64_t e = 0; e < n; e++) {
            if (o.skip && o.skip(ctx, i, e, x)) {
                res.skipped++;
                continue;
            }
            float x0 = x[e];
            float xp = x0 + o.h, xm = x0 - o.h;
            x[e] = xp;
            int64_t ok = forward_values(t, fn, ctx, inputs, n_in, plus, n_out);
            x[e] = xm;
            if (ok >= 0) ok = forward_values(t, fn, ctx, inputs, n_in, minus, n_out);
            x[e] = x0;
            if (ok < 0) {
                status = -1;
                break;
            }
            /* Only the outputs that moved contribute: the rest cancel exactly. */
            double df = 0;
            for (int64_t j = 0; j < n_out; j++)
                if (plus[j] != minus[j]) df += ((double)plus[j] - (double)minus[j]) * r[j];
            double num = df / ((double)xp - (double)xm); /* the step actually taken */
            double an = grads[i][e];
            double err = fabs(an - num), mag = fmax(fabs(an), fabs(num));
            res.checked++;
            if (err > res.max_abs) res.max_abs = err;
            if (mag > o.atol && err / mag > res.max_rel) res.max_rel = err / mag;
            if (!(err <= o.atol + o.rtol * mag)) {
                if (res.failed < 3)
                    printf("  %s: %s[%lld] analytic %.7g numeric %.7g\n", what, inputs[i].name,
                           (long long)e, an, num);
                res.failed++;
            }
        }
        if (!o.quiet || res.failed)
            printf("  %-28s %-6s max abs err %.2e  max rel err %.2e  (%lld checked, %lld "
                   "skipped)%s\n",
                   what, inputs[i].name, res.max_abs, res.max_rel, (long long)res.checked,
                   (long long)res.skipped, res.failed ? "  <-- FAIL" : "");
        if ((double)res.skipped > o.max_skip_frac * (double)n) {
            printf("  %s: %s: %lld of %lld elements skipped; the check tests too little\n", what,
                   inputs[i].name, (long long)res.skipped, (long long)n);
            res.failed++;
        }
        if (res.checked == 0 && n > 0) res.failed++;
        if (inputs[i].grad_out) memcpy(inputs[i].grad_out, grads[i], (size_t)n * sizeof(float));
        if (results) results[i] = res;
        if (status >= 0) status += (int)res.failed;
    }
done:
    fflush(stdout);
    free(plus);
    free(minus);
    free(r);
    for (int i = 0; i < n_in; i++) free(grads[i]);
    return status;
}

int tfm_gradcheck_directional(const char *what, tfm_tape *t, tfm_gc_fn fn, void *ctx,
                              tfm_gc_input *inputs, int n_in, const tfm_gc_opts *opts,
                              double *analytic, double *numeric) {
    tfm_gc_opts o = opts ? *opts : tfm_gc_defaults();
    if (n_in > 16) return -1;
    float *grads[16] = {0}, *orig[16] = {0}, *xp[16] = {0}, *xm[16] = {0};
    for (int i = 0; i < n_in; i++) {
        orig[i] = inputs[i].data;
        if (!inputs[i].needs_grad) continue;
        size_t bytes = (size_t)numel(&inputs[i]) * sizeof(float);
        grads[i] = calloc(1, bytes);
        xp[i] = malloc(bytes);
        xm[i] = malloc(bytes);
    }
    int64_t n_out = 0;
    int status = -1;
    float *plus = NULL, *minus = NULL;
    double f0 = analytic_pass(t, fn, ctx, inputs, n_in, o.seed, grads, NULL, 0, &n_out);
    if (isnan(f0)) goto done;
    /* an = sum_i g_i (xp_i - xm_i): the directional derivative along the
     * perturbation actually representable in float. */
    double an = 0;
    for (int i = 0; i < n_in; i++) {
        if (!inputs[i].needs_grad) continue;
        int64_t n = numel(&inputs[i]);
        for (int64_t e = 0; e < n; e++) {
            float u = 2.0f * tfm_rand_uniform(o.seed + 1 + (uint64_t)i, (uint64_t)e) - 1.0f;
            if (o.skip && o.skip(ctx, i, e, orig[i])) u = 0.0f;
            xp[i][e] = orig[i][e] + o.h * u;
            xm[i][e] = orig[i][e] - o.h * u;
            an += (double)grads[i][e] * ((double)xp[i][e] - (double)xm[i][e]);
        }
    }
    plus = malloc((size_t)n_out * sizeof(float));
    minus = malloc((size_t)n_out * sizeof(float));
    for (int i = 0; i < n_in; i++)
        if (inputs[i].needs_grad) inputs[i].data = xp[i];
    int64_t ok = forward_values(t, fn, ctx, inputs, n_in, plus, n_out);
    for (int i = 0; i < n_in; i++)
        if (inputs[i].needs_grad) inputs[i].data = xm[i];
    if (ok >= 0) ok = forward_values(t, fn, ctx, inputs, n_in, minus, n_out);
    if (ok < 0) goto done;
    double num = 0;
    for (int64_t j = 0; j < n_out; j++)
        num += ((double)plus[j] - (double)minus[j]) * weight_r(o.seed, j);
    an /= 2.0 * o.h;
    num /= 2.0 * o.h;
    double err = fabs(an - num), mag = fmax(fabs(an), fabs(num));
    status = err <= o.atol + o.rtol * mag ? 0 : 1;
    printf("  %-28s directional: analytic %.7g numeric %.7g rel err %.2e%s\n", what, an, num,
           mag > 0 ? err / mag : 0.0, status ? "  <-- FAIL" : "");
    if (analytic) *analytic = an;
    if (numeric) *numeric = num;
done:
    fflush(stdout);
    for (int i = 0; i < n_in; i++) {
        inputs[i].data = orig[i];
        free(grads[i]);
        free(xp[i]);
        free(xm[i]);
    }
    free(plus);
    free(minus);
    return status;
}
