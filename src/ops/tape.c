/* The tape: nodes recorded by eager ops, walked in reverse by backward. */
#include <stdarg.h>
#include <string.h>

#include "ops_internal.h"

const tfm_op_def TFM_OPS[TFM_OP_COUNT] = {
    [TFM_OP_MATMUL] = {"matmul", tfm_backward_matmul, 1},
    [TFM_OP_LINEAR] = {"linear", tfm_backward_linear, 1},
    [TFM_OP_ADD] = {"add", tfm_backward_add},
    [TFM_OP_ADD_BIAS] = {"add_bias", tfm_backward_add_bias},
    [TFM_OP_MUL] = {"mul", tfm_backward_mul},
    [TFM_OP_SCALE] = {"scale", tfm_backward_scale},
    [TFM_OP_RELU] = {"relu", tfm_backward_relu},
    [TFM_OP_SOFTMAX] = {"softmax", tfm_backward_softmax},
    [TFM_OP_LAYERNORM] = {"layernorm", tfm_backward_layernorm},
    [TFM_OP_EMBEDDING] = {"embedding", tfm_backward_embedding},
    [TFM_OP_DROPOUT] = {"dropout", tfm_backward_dropout},
    [TFM_OP_SPLIT_HEADS] = {"split_heads", tfm_backward_split_heads},
    [TFM_OP_MERGE_HEADS] = {"merge_heads", tfm_backward_merge_heads},
    [TFM_OP_SUM] = {"sum", tfm_backward_sum},
    [TFM_OP_MEAN] = {"mean", tfm_backward_mean},
    [TFM_OP_XENT] = {"cross_entropy", tfm_backward_xent},
    [TFM_OP_ATTENTION] = {"attention", tfm_backward_attention},
};
_Static_assert(TFM_OP_COUNT == 17, "add the new op to TFM_OPS");

int tfm_tape_init(tfm_tape *t, size_t arena_bytes, int64_t max_nodes) {
    memset(t, 0, sizeof *t);
    if (tfm_arena_init(&t->arena, arena_bytes)) return 1;
    t->nodes = tfm_alloc((size_t)max_nodes * sizeof *t->nodes);
    if (!t->nodes) {
        tfm_arena_free(&t->arena);
        return 1;
    }
    t->cap_nodes = max_nodes;
    t->training = 1;
    return 0;
}

void tfm_tape_free(tfm_tape *t) {
    tfm_arena_free(&t->arena);
    tfm_free(t->nodes);
    memset(t, 0, sizeof *t);
}

void tfm_tape_reset(tfm_tape *t) {
    tfm_arena_reset(&t->arena);
    t->n_nodes = 0;
    t->rng_counter = 0;
}

void tfm_tape_label(tfm_tape *t, const char *label) { t->label = label; }

tfm_tensor *tfm_op_fail(tfm_op op, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tfm_set_error("%s: %s", TFM_OPS[op].name, msg);
    return NULL;
}

tfm_tensor *tfm_tape_tensor(tfm_tape *t, int ndim, const int64_t *shape, int needs_grad) {
    tfm_tensor *x = tfm_tensor_new(&t->arena, ndim, shape);
    if (!x) return NULL;
    if (needs_grad && !t->no_grad) {
        x->grad = tfm_arena_alloc(&t->arena, (size_t)x->n * sizeof(float));
        if (!x->grad) return NULL;
        /* zero, lazily: the first backward kernel to reach it overwrites or
         * zeroes it, tfm_backward zeroes it at the end if none did */
        x->flags |= TFM_NEEDS_GRAD | TFM_GRAD_STALE;
    }
    return x;
}

tfm_tensor *tfm_tape_constant(tfm_tape *t, float *data, int ndim, const int64_t *shape) {
    tfm_tensor *x = tfm_arena_alloc(&t->arena, sizeof *x);
    if (!x) return NULL;
    memset(x, 0, sizeof *x);
    x->ndim = ndim;
    x->n = 1;
    for (int i = 0; i < ndim; i++) {
        x->shape[i] = shape[i];
        x->n *= shape[i];
    }
    x->data = data;
    return x;
}

tfm_tensor *tfm_op_output(tfm_tape *t, int ndim, const int64_t *shape, tfm_tensor *const *ins,
                          int n_in) {
    int grad = 0;
    for (int i = 0; i < n_in; i++) {
        if (!ins[i]) return NULL;
        if (ins[i]->grad) grad = 1;
    }
    return tfm_tape_tensor(t, ndim, shape, grad);
}

tfm_node *tfm_op_record(tfm_tape *t, tfm_op op, tfm_tensor *out, tfm_tensor *const *ins, int n_in,
                        int *failed) {
    *failed = 0;
    if (t->no_grad || !out->grad) return NULL;
    if (t->n_nodes == t->cap_nodes) {
        tfm_set_error("tape: more than %lld nodes; raise max_nodes", (long long)t->cap_nodes);
        *failed = 1;
        return NULL;
    }
    tfm_node *n = &t->nodes[t->n_nodes++];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->out = out;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) n->in[i] = ins[i];
    n->label = t->label;
    n->precision = t->precision;
    return n;
}

int tfm_check_finite(const tfm_tensor *x, const char *what, const char *label) {
    int64_t bad = tfm_k_count_nonfinite(x->data, x->n);
    if (!bad) return 0;
    tfm_set_error("numerics: %s%s%s produced %lld non-finite value(s)", what, label ? " in " : "",
                  label ? label : "", (long long)bad);
    return 1;
}

tfm_tensor *tfm_op_done(tfm_tape *t, tfm_op op, tfm_tensor *out) {
    if (out && t->check_numerics && tfm_check_finite(out, TFM_OPS[op].name, t->label)) return NULL;
    return out;
}

int tfm_backward(tfm_tape *t, tfm_tensor *loss) {
    if (!loss) {
        tfm_set_error("backward: no loss (the forward pass failed)");
        return 1;
    }
    if (loss->n != 1) {
        tfm_set_error("backward: the loss must be a scalar, it has %lld elements",
                      (long long)loss->n);
        return 1;
    }
    if (!loss->grad) {
        tfm_set_error("backward: the loss does not depend on anything that needs a gradient");
        return 1;
    }
    tfm_grad_fresh(loss);
    loss->grad[0] += 1.0f;
    for (int64_t i = t->n_nodes - 1; i >= 0; i--) {
        tfm_node *n = &t->nodes[i];
        /* nothing flowed into this output: its backward would add zeros */
        if (n->out->flags & TFM_GRAD_STALE) {
            if (t->after_node && t->after_node(t->after_node_ctx, i)) return 1;
            continue;
        }
        if (!TFM_OPS[n->op].handles_stale)
            for (int j = 0; j < n->n_in; j++) tfm_grad_fresh(n->in[j]);
        TFM_OPS[n->op].backward(t, n);
        if (t->check_numerics) {
            for (int j = 0; j < n->n_in; j++) {
                tfm_tensor *x = n->in[j];
                if (!x->grad || (x->flags & TFM_GRAD_STALE)) continue;
                tfm_tensor g = *x;
                g.data = x->grad;
                char what[96];
                snprintf(what, sizeof what, "the gradient of %s (input %d)", TFM_OPS[n->op].name,
                         j);
                if (tfm_check_finite(&g, what, n->label)) return 1;
            }
        }
        if (t->after_node && t->after_node(t->after_node_ctx, i)) return 1;
    }
    /* gradients no op wrote (inputs nothing flowed back to) read as zero */
    for (int64_t i = 0; i < t->n_nodes; i++)
        for (int j = 0; j < t->nodes[i].n_in; j++) tfm_grad_fresh(t->nodes[i].in[j]);
    return 0;
}
