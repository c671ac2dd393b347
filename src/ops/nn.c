/* softmax, layernorm, embedding, split/merge heads, cross-entropy, attention. */
#include <string.h>

#include "../util/par.h"
#include "ops_internal.h"

static tfm_tensor *record(tfm_tape *t, tfm_op op, tfm_tensor *y, tfm_tensor *const *ins, int n_in,
                          tfm_node **node) {
    int failed;
    tfm_node *n = tfm_op_record(t, op, y, ins, n_in, &failed);
    if (failed) return NULL;
    if (node) *node = n;
    return tfm_op_done(t, op, y);
}

tfm_tensor *tfm_softmax(tfm_tape *t, tfm_tensor *x) {
    if (!x) return NULL;
    tfm_tensor *ins[1] = {x};
    tfm_tensor *y = tfm_op_output(t, x->ndim, x->shape, ins, 1);
    if (!y) return NULL;
    tfm_k_softmax_forward(y->data, x->data, tfm_rows(x), tfm_last(x));
    return record(t, TFM_OP_SOFTMAX, y, ins, 1, NULL);
}

TFM_BACKWARD(softmax) {
    (void)t;
    tfm_tensor *x = n->in[0];
    if (x->grad)
        tfm_k_softmax_backward(x->grad, n->out->grad, n->out->data, tfm_rows(x), tfm_last(x));
}

tfm_tensor *tfm_layernorm(tfm_tape *t, tfm_tensor *x, tfm_tensor *gamma, tfm_tensor *beta,
                          float eps) {
    if (!x || !gamma || !beta) return NULL;
    int64_t cols = tfm_last(x), rows = tfm_rows(x);
    if (gamma->n != cols || beta->n != cols) {
        char sx[64];
        return tfm_op_fail(TFM_OP_LAYERNORM, "gamma/beta of %lld and %lld values for x %s",
                           (long long)gamma->n, (long long)beta->n, tfm_shape_str(x, sx, 64));
    }
    tfm_tensor *ins[3] = {x, gamma, beta};
    tfm_tensor *y = tfm_op_output(t, x->ndim, x->shape, ins, 3);
    if (!y) return NULL;
    float *stats = NULL;
    if (y->grad) {
        stats = tfm_arena_alloc(&t->arena, 2 * (size_t)rows * sizeof(float));
        if (!stats) return NULL;
    }
    tfm_k_layernorm_forward(y->data, stats, stats ? stats + rows : NULL, x->data, gamma->data,
                            beta->data, rows, cols, eps);
    tfm_node *n = NULL;
    y = record(t, TFM_OP_LAYERNORM, y, ins, 3, &n);
    if (n) {
        n->saved[0] = stats;
        n->saved[1] = stats + rows;
        n->pf.f[0] = eps;
    }
    return y;
}

TFM_BACKWARD(layernorm) {
    (void)t;
    tfm_tensor *x = n->in[0], *g = n->in[1], *b = n->in[2];
    tfm_k_layernorm_backward(x->grad, g->grad, b->grad, n->out->grad, x->data, n->saved[0],
                             n->saved[1], g->data, tfm_rows(x), tfm_last(x));
}

tfm_tensor *tfm_embedding(tfm_tape *t, tfm_tensor *table, const int32_t *ids, int out_ndim,
                          const int64_t *out_shape, float scale, int32_t pad_id) {
    if (!table) return NULL;
    if (table->ndim != 2) return tfm_op_fail(TFM_OP_EMBEDDING, "table must be (vocab, dim)");
    int64_t V = table->shape[0], D = table->shape[1], count = 1;
    if (out_ndim < 2 || out_ndim > TFM_MAX_DIMS || out_shape[out_ndim - 1] != D)
        return tfm_op_fail(TFM_OP_EMBEDDING, "output shape must end in the table dim %lld",
                           (long long)D);
    for (int i = 0; i < out_ndim - 1; i++) count *= out_shape[i];
    for (int64_t i = 0; i < count; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return tfm_op_fail(TFM_OP_EMBEDDING, "id %d at position %lld is outside [0, %lld)",
                               ids[i], (long long)i, (long long)V);
    tfm_tensor *ins[1] = {table};
    tfm_tensor *y = tfm_op_output(t, out_ndim, out_shape, ins, 1);
    if (!y) return NULL;
    tfm_k_embedding_forward(y->data, table->data, ids, count, D, scale);
    tfm_node *n = NULL;
    y = record(t, TFM_OP_EMBEDDING, y, ins, 1, &n);
    if (n) {
        n->aux = ids;
        n->pf.f[0] = scale;
        n->pi[0] = pad_id;
    }
    return y;
}

TFM_BACKWARD(embedding) {
    (void)t;
    tfm_tensor *table = n->in[0];
    if (!table->grad) return;
    int64_t D = table->shape[1];
    tfm_k_embedding_backward(table->grad, n->out->grad, n->aux, n->out->n / D, D, n->pf.f[0],
                             (int32_t)n->pi[0]);
}

/* (B, T, H*dh) -> (B, H, T, dh) when to_heads, else the inverse: head h of sequence b. */
static void permute_head(float *dst, const float *src, int64_t T, int64_t H, int64_t dh,
                         int to_heads, int accumulate, int64_t b, int64_t h) {
    for (int64_t i = 0; i < T; i++) {
        int64_t flat = (b * T + i) * H * dh + h * dh;
        int64_t headed = ((b * H + h) * T + i) * dh;
        float *d = dst + (to_heads ? headed : flat);
        const float *s = src + (to_heads ? flat : headed);
        if (accumulate)
            for (int64_t j = 0; j < dh; j++) d[j] += s[j];
        else
            memcpy(d, s, (size_t)dh * sizeof(float));
    }
}

static void permute_heads(float *dst, const float *src, int64_t B, int64_t T, int64_t H, int64_t dh,
                          int to_heads, int accumulate) {
    TFM_PAR_FOR(tfm_par_worth(B * T * H * dh),
                for (int64_t bh = 0; bh < B * H; bh++)
                    permute_head(dst, src, T, H, dh, to_heads, accumulate, bh / H, bh % H));
}

tfm_tensor *tfm_split_heads(tfm_tape *t, tfm_tensor *x, int64_t n_heads) {
    if (!x) return NULL;
    if (x->ndim != 3 || n_heads <= 0 || x->shape[2] % n_heads)
        return tfm_op_fail(TFM_OP_SPLIT_HEADS, "need (B, T, D) with D divisible by %lld heads",
                           (long long)n_heads);
    int64_t B = x->shape[0], T = x->shape[1], dh = x->shape[2] / n_heads;
    int64_t shape[4] = {B, n_heads, T, dh};
    tfm_tensor *ins[1] = {x};
    tfm_tensor *y = tfm_op_output(t, 4, shape, ins, 1);
    if (!y) return NULL;
    permute_heads(y->data, x->data, B, T, n_heads, dh, 1, 0);
    return record(t, TFM_OP_SPLIT_HEADS, y, ins, 1, NULL);
}

TFM_BACKWARD(split_heads) {
    (void)t;
    tfm_tensor *y = n->out;
    if (n->in[0]->grad)
        permute_heads(n->in[0]->grad, y->grad, y->shape[0], y->shape[2], y->shape[1], y->shape[3],
                      0, 1);
}

tfm_tensor *tfm_merge_heads(tfm_tape *t, tfm_tensor *x) {
    if (!x) return NULL;
    if (x->ndim != 4) return tfm_op_fail(TFM_OP_MERGE_HEADS, "need (B, H, T, dh)");
    int64_t B = x->shape[0], H = x->shape[1], T = x->shape[2], dh = x->shape[3];
    int64_t shape[3] = {B, T, H * dh};
    tfm_tensor *ins[1] = {x};
    tfm_tensor *y = tfm_op_output(t, 3, shape, ins, 1);
    if (!y) return NULL;
    permute_heads(y->data, x->data, B, T, H, dh, 0, 0);
    return record(t, TFM_OP_MERGE_HEADS, y, ins, 1, NULL);
}

TFM_BACKWARD(merge_heads) {
    (void)t;
    tfm_tensor *x = n->in[0];
    if (x->grad)
        permute_heads(x->grad, n->out->grad, x->shape[0], x->shape[2], x->shape[1], x->shape[3], 1,
                      1);
}

tfm_tensor *tfm_cross_entropy(tfm_tape *t, tfm_tensor *logits, const int32_t *targets,
                              int32_t ignore_index, float smoothing, int64_t *out_count) {
    if (!logits) return NULL;
    int64_t V = tfm_last(logits), N = tfm_rows(logits);
    if (smoothing < 0.0f || smoothing >= 1.0f)
        return tfm_op_fail(TFM_OP_XENT, "label smoothing %g must be in [0, 1)", smoothing);
    for (int64_t i = 0; i < N; i++)
        if (targets[i] != ignore_index && (targets[i] < 0 || targets[i] >= V))
            return tfm_op_fail(TFM_OP_XENT, "target %d at row %lld is outside [0, %lld)",
                               targets[i], (long long)i, (long long)V);
    int64_t one = 1;
    tfm_tensor *ins[1] = {logits};
    tfm_tensor *y = tfm_op_output(t, 1, &one, ins, 1);
    float *lse = tfm_arena_alloc(&t->arena, (size_t)N * sizeof(float));
    if (!y || !lse) return NULL;
    int64_t count = 0;
    double total =
        tfm_k_xent_forward(lse, logits->data, targets, N, V, ignore_index, smoothing, &count);
    y->data[0] = count ? (float)(total / (double)count) : 0.0f;
    if (out_count) *out_count = count;
    tfm_node *n = NULL;
    y = record(t, TFM_OP_XENT, y, ins, 1, &n);
    if (n) {
        n->saved[0] = lse;
        n->aux = targets;
        n->pi[0] = ignore_index;
        n->pi[1] = count;
        n->pf.f[0] = smoothing;
    }
    return y;
}

/* mean over kept rows: d loss / d logits = (softmax - smoothed one-hot) / count */
TFM_BACKWARD(xent) {
    (void)t;
    tfm_tensor *x = n->in[0];
    if (!x->grad || n->pi[1] == 0) return;
    float scale = n->out->grad[0] / (float)n->pi[1];
    tfm_k_xent_backward(x->grad, x->data, n->saved[0], n->aux, tfm_rows(x), tfm_last(x),
                        (int32_t)n->pi[0], n->pf.f[0], scale);
}

static void attn_shape(tfm_attn_shape *s, const tfm_tensor *q, const tfm_tensor *k, int64_t H,
                       const uint8_t *key_pad, int causal, float p, uint64_t key,
                       tfm_precision precision) {
    memset(s, 0, sizeof *s);
    s->B = q->shape[0];
    s->Tq = q->shape[1];
    s->Tk = k->shape[1];
    s->D = q->shape[2];
    s->H = H;
    s->q_bs = s->Tq * s->D;
    s->kv_bs = s->Tk * s->D;
    s->key_pad = key_pad;
    s->causal = causal;
    s->dropout_p = p;
    s->key = key;
    s->precision = precision;
}

tfm_tensor *tfm_attention(tfm_tape *t, tfm_tensor *q, tfm_tensor *k, tfm_tensor *v, int64_t n_heads,
                          const uint8_t *key_pad, int causal, float dropout_p, float **probs_out) {
    if (!q || !k || !v) return NULL;
    char sq[64], sk[64], sv[64];
    if (q->ndim != 3 || k->ndim != 3 || !tfm_same_shape(k, v) || k->shape[0] != q->shape[0] ||
        k->shape[2] != q->shape[2] || n_heads <= 0 || q->shape[2] % n_heads)
        return tfm_op_fail(TFM_OP_ATTENTION,
                           "q %s, k %s, v %s with %lld heads: need (B, T, D), D divisible by heads",
                           tfm_shape_str(q, sq, 64), tfm_shape_str(k, sk, 64),
                           tfm_shape_str(v, sv, 64), (long long)n_heads);
    if (dropout_p < 0.0f || dropout_p >= 1.0f)
        return tfm_op_fail(TFM_OP_ATTENTION, "dropout %g must be in [0, 1)", dropout_p);
    float p = t->training ? dropout_p : 0.0f;
    uint64_t key = p > 0.0f ? tfm_rand_u64(t->seed ^ (t->step * 0x9E3779B97F4A7C15ull),
                                           (uint64_t)t->rng_counter++)
                            : 0;
    tfm_attn_shape s;
    attn_shape(&s, q, k, n_heads, key_pad, causal, p, key, t->precision);
    tfm_tensor *ins[3] = {q, k, v};
    tfm_tensor *y = tfm_op_output(t, 3, q->shape, ins, 3);
    if (!y) return NULL;
    int need_probs = y->grad || probs_out;
    float *probs = NULL;
    if (need_probs) {
        probs = tfm_arena_alloc(&t->arena, (size_t)(s.B * s.H * s.Tq * s.Tk) * sizeof(float));
        if (!probs) return NULL;
    }
    float *scratch =
        tfm_arena_alloc(&t->arena, (size_t)tfm_attention_scratch_floats(&s) * sizeof(float));
    if (!scratch) return NULL;
    tfm_k_attention_forward(y->data, probs, q->data, k->data, v->data, &s, scratch);
    if (probs_out) *probs_out = probs;
    tfm_node *n = NULL;
    y = record(t, TFM_OP_ATTENTION, y, ins, 3, &n);
    if (n) {
        n->saved[0] = probs;
        n->saved[1] = scratch;
        n->aux = key_pad;
        n->pi[0] = n_heads;
        n->pi[1] = causal;
        n->pf.f[0] = p;
        n->key = key;
        n->pi[2] = tfm_num_threads(); /* the scratch holds rows for this many threads */
    }
    return y;
}

TFM_BACKWARD(attention) {
    (void)t;
    tfm_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];
    tfm_attn_shape s;
    attn_shape(&s, q, k, n->pi[0], n->aux, (int)n->pi[1], n->pf.f[0], n->key, n->precision);
    /* More threads than at the forward would index past the scratch; the
     * result does not depend on the thread count, so cap it for this call. */
    int threads = tfm_num_threads();
    if (threads > n->pi[2]) tfm_set_num_threads((int)n->pi[2]);
    tfm_k_attention_backward(q->grad, k->grad, v->grad, n->out->grad, n->saved[0], q->data, k->data,
                             v->data, &s, n->saved[1]);
    if (threads > n->pi[2]) tfm_set_num_threads(threads);
}
