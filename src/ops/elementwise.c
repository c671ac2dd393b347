/* add, add_bias, mul, scale, relu, dropout, sum, mean. */
#include <string.h>

#include "ops_internal.h"

static tfm_tensor *same_shape_out(tfm_tape *t, tfm_op op, tfm_tensor *a, tfm_tensor *b) {
    if (!a || !b) return NULL;
    if (!tfm_same_shape(a, b)) {
        char sa[64], sb[64];
        return tfm_op_fail(op, "shapes %s and %s differ", tfm_shape_str(a, sa, 64),
                           tfm_shape_str(b, sb, 64));
    }
    tfm_tensor *ins[2] = {a, b};
    return tfm_op_output(t, a->ndim, a->shape, ins, 2);
}

static tfm_tensor *record(tfm_tape *t, tfm_op op, tfm_tensor *y, tfm_tensor *const *ins, int n_in,
                          tfm_node **node) {
    int failed;
    tfm_node *n = tfm_op_record(t, op, y, ins, n_in, &failed);
    if (failed) return NULL;
    if (node) *node = n;
    return tfm_op_done(t, op, y);
}

tfm_tensor *tfm_add(tfm_tape *t, tfm_tensor *a, tfm_tensor *b) {
    tfm_tensor *y = same_shape_out(t, TFM_OP_ADD, a, b);
    if (!y) return NULL;
    tfm_k_add(y->data, a->data, b->data, y->n);
    tfm_tensor *ins[2] = {a, b};
    return record(t, TFM_OP_ADD, y, ins, 2, NULL);
}

/* da += dy, db += dy */
TFM_BACKWARD(add) {
    (void)t;
    if (n->in[0]->grad) tfm_k_axpy(n->in[0]->grad, 1.0f, n->out->grad, n->out->n);
    if (n->in[1]->grad) tfm_k_axpy(n->in[1]->grad, 1.0f, n->out->grad, n->out->n);
}

tfm_tensor *tfm_add_bias(tfm_tape *t, tfm_tensor *x, tfm_tensor *b) {
    if (!x || !b) return NULL;
    if (b->n != tfm_last(x)) {
        char sx[64], sb[64];
        return tfm_op_fail(TFM_OP_ADD_BIAS, "bias %s does not match the last dim of %s",
                           tfm_shape_str(b, sb, 64), tfm_shape_str(x, sx, 64));
    }
    tfm_tensor *ins[2] = {x, b};
    tfm_tensor *y = tfm_op_output(t, x->ndim, x->shape, ins, 2);
    if (!y) return NULL;
    tfm_k_add_bias(y->data, x->data, b->data, tfm_rows(x), tfm_last(x));
    return record(t, TFM_OP_ADD_BIAS, y, ins, 2, NULL);
}

/* dx += dy, db += sum_rows dy */
TFM_BACKWARD(add_bias) {
    (void)t;
    tfm_tensor *x = n->in[0], *b = n->in[1];
    if (x->grad) tfm_k_axpy(x->grad, 1.0f, n->out->grad, x->n);
    if (b->grad) tfm_k_colsum_acc(b->grad, n->out->grad, tfm_rows(x), tfm_last(x));
}

tfm_tensor *tfm_mul(tfm_tape *t, tfm_tensor *a, tfm_tensor *b) {
    tfm_tensor *y = same_shape_out(t, TFM_OP_MUL, a, b);
    if (!y) return NULL;
    tfm_k_mul(y->data, a->data, b->data, y->n);
    tfm_tensor *ins[2] = {a, b};
    return record(t, TFM_OP_MUL, y, ins, 2, NULL);
}

/* da += dy * b, db += dy * a */
TFM_BACKWARD(mul) {
    (void)t;
    tfm_tensor *a = n->in[0], *b = n->in[1];
    const float *dy = n->out->grad;
    int64_t cnt = n->out->n;
    if (a->grad)
        for (int64_t i = 0; i < cnt; i++) a->grad[i] += dy[i] * b->data[i];
    if (b->grad)
        for (int64_t i = 0; i < cnt; i++) b->grad[i] += dy[i] * a->data[i];
}

tfm_tensor *tfm_scale(tfm_tape *t, tfm_tensor *x, float alpha) {
    if (!x) return NULL;
    tfm_tensor *ins[1] = {x};
    tfm_tensor *y = tfm_op_output(t, x->ndim, x->shape, ins, 1);
    if (!y) return NULL;
    tfm_k_scale(y->data, x->data, alpha, x->n);
    tfm_node *n = NULL;
    y = record(t, TFM_OP_SCALE, y, ins, 1, &n);
    if (n) n->pf.f[0] = alpha;
    return y;
}

/* dx += alpha dy */
TFM_BACKWARD(scale) {
    (void)t;
    if (n->in[0]->grad) tfm_k_axpy(n->in[0]->grad, n->pf.f[0], n->out->grad, n->out->n);
}

tfm_tensor *tfm_relu(tfm_tape *t, tfm_tensor *x) {
    if (!x) return NULL;
    tfm_tensor *ins[1] = {x};
    tfm_tensor *y = tfm_op_output(t, x->ndim, x->shape, ins, 1);
    if (!y) return NULL;
    tfm_k_relu_forward(y->data, x->data, x->n);
    return record(t, TFM_OP_RELU, y, ins, 1, NULL);
}

TFM_BACKWARD(relu) {
    (void)t;
    if (n->in[0]->grad) tfm_k_relu_backward(n->in[0]->grad, n->out->grad, n->out->data, n->out->n);
}

tfm_tensor *tfm_dropout(tfm_tape *t, tfm_tensor *x, float p) {
    if (!x) return NULL;
    if (!t->training || p <= 0.0f) return x;
    if (p >= 1.0f) return tfm_op_fail(TFM_OP_DROPOUT, "probability %g must be below 1", p);
    tfm_tensor *ins[1] = {x};
    tfm_tensor *y = tfm_op_output(t, x->ndim, x->shape, ins, 1);
    if (!y) return NULL;
    /* The key depends only on (seed, step, how many dropouts ran before in
     * this step): the same graph sees the same masks, whatever the threads. */
    uint64_t key =
        tfm_rand_u64(t->seed ^ (t->step * 0x9E3779B97F4A7C15ull), (uint64_t)t->rng_counter++);
    tfm_k_dropout_forward(y->data, x->data, x->n, p, key);
    tfm_node *n = NULL;
    y = record(t, TFM_OP_DROPOUT, y, ins, 1, &n);
    if (n) {
        n->pf.f[0] = p;
        n->key = key;
    }
    return y;
}

TFM_BACKWARD(dropout) {
    (void)t;
    if (n->in[0]->grad)
        tfm_k_dropout_backward(n->in[0]->grad, n->out->grad, n->out->n, n->pf.f[0], n->key);
}

static tfm_tensor *reduce(tfm_tape *t, tfm_op op, tfm_tensor *x) {
    if (!x) return NULL;
    int64_t one = 1;
    tfm_tensor *ins[1] = {x};
    tfm_tensor *y = tfm_op_output(t, 1, &one, ins, 1);
    if (!y) return NULL;
    double s = 0;
    for (int64_t i = 0; i < x->n; i++) s += x->data[i];
    y->data[0] = (float)(op == TFM_OP_MEAN ? s / (double)(x->n ? x->n : 1) : s);
    return record(t, op, y, ins, 1, NULL);
}

tfm_tensor *tfm_sum(tfm_tape *t, tfm_tensor *x) { return reduce(t, TFM_OP_SUM, x); }
tfm_tensor *tfm_mean(tfm_tape *t, tfm_tensor *x) { return reduce(t, TFM_OP_MEAN, x); }

/* d sum / dx_i = 1;  d mean / dx_i = 1/n */
TFM_BACKWARD(sum) {
    (void)t;
    tfm_tensor *x = n->in[0];
    if (!x->grad) return;
    float g = n->out->grad[0];
    for (int64_t i = 0; i < x->n; i++) x->grad[i] += g;
}

TFM_BACKWARD(mean) {
    (void)t;
    tfm_tensor *x = n->in[0];
    if (!x->grad) return;
    float g = n->out->grad[0] / (float)(x->n ? x->n : 1);
    for (int64_t i = 0; i < x->n; i++) x->grad[i] += g;
}
