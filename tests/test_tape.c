/* Tape mechanics: gradient accumulation, no-grad mode, reset without
 * allocation, arena exhaustion, error messages, numerics checking, and
 * bit-identical results across runs and thread counts. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include "tfm/ops.h"
#include "tfm/optim.h"
#include "util_gradcheck.h"
#include "util_test.h"

#define HAS(msg, what)                                                                             \
    ck_assert_msg(strstr((msg), (what)) != NULL, "error \"%s\" lacks \"%s\"", (msg), (what))

static tfm_tensor *leaf(tfm_tape *t, int64_t d0, int64_t d1, int needs_grad, uint64_t seed) {
    int64_t shape[2] = {d0, d1};
    tfm_tensor *x = tfm_tape_tensor(t, 2, shape, needs_grad);
    ck_assert_ptr_nonnull(x);
    tfm_test_fill(x->data, x->n, seed, -1, 1);
    return x;
}

START_TEST(op_table_is_complete) {
    for (int i = 0; i < TFM_OP_COUNT; i++) {
        ck_assert_msg(TFM_OPS[i].name && TFM_OPS[i].name[0], "op %d has no name", i);
        ck_assert_msg(TFM_OPS[i].backward != NULL, "op %s has no backward", TFM_OPS[i].name);
        for (int j = 0; j < i; j++) ck_assert_str_ne(TFM_OPS[i].name, TFM_OPS[j].name);
    }
}
END_TEST

/* ---- accumulation ------------------------------------------------------------ */

START_TEST(shared_tensor_gets_both_gradients) {
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 1 << 20, 64), 0);
    tfm_tensor *x = leaf(&t, 2, 3, 1, 1);
    tfm_tensor *c = leaf(&t, 2, 3, 0, 2);
    /* loss = sum(2 x + x * c): dloss/dx = 2 + c, from two different ops */
    tfm_tensor *loss = tfm_sum(&t, tfm_add(&t, tfm_scale(&t, x, 2.0f), tfm_mul(&t, x, c)));
    ck_assert_int_eq(tfm_backward(&t, loss), 0);
    ck_assert_ptr_null(c->grad);
    for (int i = 0; i < 6; i++) ck_assert_float_eq_tol(x->grad[i], 2.0f + c->data[i], 1e-6f);
    /* the same tensor twice in one op: d sum(x * x)/dx = 2x */
    tfm_tape_reset(&t);
    x = leaf(&t, 2, 3, 1, 3);
    ck_assert_int_eq(tfm_backward(&t, tfm_sum(&t, tfm_mul(&t, x, x))), 0);
    for (int i = 0; i < 6; i++) ck_assert_float_eq_tol(x->grad[i], 2.0f * x->data[i], 1e-6f);
    /* a parameter used by two linears (tied weights) sums both */
    tfm_tape_reset(&t);
    tfm_params p;
    tfm_params_init(&p);
    int64_t ws[2] = {3, 3};
    tfm_tensor *w = tfm_params_add(&p, "w", 2, ws);
    ck_assert_int_eq(tfm_params_alloc(&p), 0);
    tfm_test_fill(w->data, 9, 4, -1, 1);
    tfm_tensor *a = leaf(&t, 1, 3, 0, 5), *b = leaf(&t, 1, 3, 0, 6);
    loss = tfm_add(&t, tfm_sum(&t, tfm_linear(&t, a, w, NULL)),
                   tfm_sum(&t, tfm_linear(&t, b, w, NULL)));
    ck_assert_int_eq(tfm_backward(&t, loss), 0);
    /* d/dW[o][i] sum_o (a W^T)_o = a_i, for both inputs */
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < 3; i++)
            ck_assert_float_eq_tol(w->grad[o * 3 + i], a->data[i] + b->data[i], 1e-6f);
    /* a second backward (without zeroing) accumulates once more */
    float first[3] = {w->grad[0], w->grad[1], w->grad[2]};
    tfm_tape_reset(&t);
    a = leaf(&t, 1, 3, 0, 5);
    ck_assert_int_eq(tfm_backward(&t, tfm_sum(&t, tfm_linear(&t, a, w, NULL))), 0);
    for (int i = 0; i < 3; i++) ck_assert_float_eq_tol(w->grad[i], first[i] + a->data[i], 1e-6f);
    tfm_params_free(&p);
    tfm_tape_free(&t);
}
END_TEST

/* ---- a small model step used by several tests ------------------------------------------
 * embedding -> layernorm -> q/k/v linears -> attention (causal, key pad,
 * dropout) -> add + bias -> FFN (linear, relu, dropout, linear) -> add ->
 * logits -> label-smoothed cross-entropy, plus an auxiliary term through
 * split/merge heads, matmul, scale, softmax, mul, mean: every op. The sizes
 * push most kernels over TFM_PAR_MIN_WORK so that threads are really used. */
enum { B = 4, T = 16, D = 32, H = 2, V = 600, F = 64 };

typedef struct {
    tfm_params p;
    tfm_tensor *emb, *ln_g, *ln_b, *wq, *wk, *wv, *bo, *w1, *b1, *w2, *b2, *wout;
    int32_t ids[B * T], targets[B * T];
    uint8_t key_pad[B * T];
    int smooth; /* leave out the ReLU (for the directional check: no kinks) */
} model;

static tfm_tensor *param(model *m, const char *name, int64_t d0, int64_t d1) {
    int64_t s[2] = {d0, d1};
    return tfm_params_add(&m->p, name, d1 ? 2 : 1, s);
}

static void model_init(model *m) {
    memset(m, 0, sizeof *m);
    tfm_params_init(&m->p);
    m->emb = param(m, "emb", V, D);
    m->ln_g = param(m, "ln.g", D, 0);
    m->ln_b = param(m, "ln.b", D, 0);
    m->wq = param(m, "wq", D, D);
    m->wk = param(m, "wk", D, D);
    m->wv = param(m, "wv", D, D);
    m->bo = param(m, "bo", D, 0);
    m->w1 = param(m, "w1", F, D);
    m->b1 = param(m, "b1", F, 0);
    m->w2 = param(m, "w2", D, F);
    m->b2 = param(m, "b2", D, 0);
    m->wout = param(m, "wout", V, D);
    ck_assert_int_eq(tfm_params_alloc(&m->p), 0);
    for (int64_t i = 0; i < m->p.count; i++) {
        tfm_tensor *x = m->p.items[i];
        tfm_test_fill(x->data, x->n, 50 + (uint64_t)i, -0.3f, 0.3f);
    }
    for (int i = 0; i < D; i++) m->ln_g->data[i] += 1.0f;
    for (int i = 0; i < B * T; i++) {
        int tpos = i % T, b = i / T;
        int len = T - 3 * b; /* batch b has 3b padding positions at the end */
        m->key_pad[i] = tpos >= len;
        m->ids[i] = tpos >= len ? 0 : 1 + (int32_t)((i * 37) % (V - 1));
        m->targets[i] = tpos >= len ? 0 : 1 + (int32_t)((i * 53 + 11) % (V - 1));
    }
}

/* Forward; the loss, or NULL with tfm_last_error(). */
static tfm_tensor *model_forward(tfm_tape *t, model *m) {
    int64_t xs[3] = {B, T, D};
    tfm_tensor *x = tfm_embedding(t, m->emb, m->ids, 3, xs, sqrtf((float)D), 0);
    tfm_tensor *h = tfm_layernorm(t, x, m->ln_g, m->ln_b, 1e-5f);
    tfm_tensor *q = tfm_linear(t, h, m->wq, NULL), *k = tfm_linear(t, h, m->wk, NULL),
               *v = tfm_linear(t, h, m->wv, NULL);
    tfm_tensor *a = tfm_attention(t, q, k, v, H, m->key_pad, 1, 0.1f, NULL);
    tfm_tensor *x2 = tfm_add_bias(t, tfm_add(t, x, a), m->bo);
    tfm_tensor *f1 = tfm_linear(t, x2, m->w1, m->b1);
    tfm_tensor *f =
        tfm_linear(t, tfm_dropout(t, m->smooth ? f1 : tfm_relu(t, f1), 0.1f), m->w2, m->b2);
    tfm_tensor *x3 = tfm_add(t, x2, f);
    tfm_tensor *loss =
        tfm_cross_entropy(t, tfm_linear(t, x3, m->wout, NULL), m->targets, 0, 0.1f, NULL);
    /* auxiliary: unfused self-attention of x3 with itself */
    tfm_tensor *qh = tfm_split_heads(t, x3, H);
    tfm_tensor *p = tfm_softmax(t, tfm_scale(t, tfm_matmul(t, qh, qh, 0, 1), 0.25f));
    tfm_tensor *o = tfm_merge_heads(t, tfm_matmul(t, p, qh, 0, 0));
    tfm_tensor *aux = tfm_scale(t, tfm_mean(t, tfm_mul(t, o, x3)), 0.1f);
    return tfm_add(t, loss, tfm_sum(t, aux));
}

/* One training step from a reset tape; returns the loss. */
static float model_step(tfm_tape *t, model *m) {
    tfm_tape_reset(t);
    tfm_params_zero_grad(&m->p);
    tfm_tensor *loss = model_forward(t, m);
    ck_assert_msg(loss != NULL, "%s", tfm_last_error());
    ck_assert_msg(tfm_backward(t, loss) == 0, "%s", tfm_last_error());
    return loss->data[0];
}

/* ---- no-grad mode -------------------------------------------------------------------------- */

START_TEST(no_grad_records_nothing) {
    model m;
    model_init(&m);
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 16 << 20, 256), 0);
    t.training = 0; /* same values in both modes */
    tfm_tensor *loss = model_forward(&t, &m);
    ck_assert_ptr_nonnull(loss);
    float with_grad = loss->data[0];
    size_t used_grad = t.arena.used;
    ck_assert_int_gt(t.n_nodes, 20);
    tfm_tape_reset(&t);
    t.no_grad = 1;
    loss = model_forward(&t, &m);
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(t.n_nodes, 0);
    ck_assert_ptr_null(loss->grad);
    ck_assert_msg(loss->data[0] == with_grad, "no-grad loss %.9g vs %.9g", loss->data[0],
                  with_grad);
    printf("  arena: %zu bytes recording, %zu without\n", used_grad, t.arena.used);
    /* no gradient buffers, no saved statistics or probabilities */
    ck_assert_uint_lt(t.arena.used, used_grad * 2 / 3);
    /* a leaf that asks for a gradient gets none */
    int64_t s[1] = {4};
    ck_assert_ptr_null(tfm_tape_tensor(&t, 1, s, 1)->grad);
    ck_assert_int_ne(tfm_backward(&t, loss), 0);
    HAS(tfm_last_error(), "backward: the loss does not depend on anything that needs a gradient");
    ck_assert(tfm_k_sumsq(m.p.grad, m.p.total_n) == 0.0);
    tfm_tape_free(&t);
    tfm_params_free(&m.p);
}
END_TEST

/* ---- reset: same arena use, no allocation
 * -------------------------------------------------------- */

static size_t heap_in_use(void) {
#if defined(__GLIBC__) && defined(__GLIBC_MINOR__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return 0;
#endif
}

START_TEST(reset_reuses_the_arena) {
    model m;
    model_init(&m);
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 16 << 20, 256), 0);
    t.seed = 5;
    model_step(&t, &m);
    size_t used = t.arena.used, peak = t.arena.peak;
    int64_t nodes = t.n_nodes;
    tfm_tape_reset(&t);
    ck_assert_uint_eq(t.arena.used, 0);
    ck_assert_int_eq(t.n_nodes, 0);
    ck_assert_int_eq(t.rng_counter, 0);
    model_step(&t, &m); /* warm-up: OpenMP's thread pool, stdio buffers */
    size_t heap = heap_in_use();
    for (int step = 0; step < 4; step++) {
        t.step = (uint64_t)step;
        model_step(&t, &m);
        ck_assert_uint_eq(t.arena.used, used);
        ck_assert_uint_eq(t.arena.peak, peak);
        ck_assert_int_eq(t.n_nodes, nodes);
    }
    size_t heap_after = heap_in_use();
    printf("  step: %lld nodes, arena %zu bytes (peak %zu), heap in use %zu -> %zu\n",
           (long long)nodes, used, peak, heap, heap_after);
#if !defined(__SANITIZE_ADDRESS__)
    /* ASan replaces malloc (mallinfo2 then reports nothing useful) */
    ck_assert_msg(heap_after == heap, "the step allocated: heap in use %zu -> %zu", heap,
                  heap_after);
#endif
    tfm_tape_free(&t);
    tfm_params_free(&m.p);
}
END_TEST

/* ---- lazily zeroed gradients ------------------------------------------------------------- */

/* tfm_params_zero_grad only marks the buffers stale; backward overwrites or
 * zeroes what it reaches. Garbage (NaN) left in the buffers must never show:
 * the gradients equal those of buffers zeroed explicitly, every one of them. */
START_TEST(stale_gradients_never_leak) {
    model m;
    model_init(&m);
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 16 << 20, 256), 0);
    t.seed = 9;
    int64_t n = m.p.total_n;
    float *want = malloc((size_t)n * sizeof(float));
    /* explicitly zeroed buffers, not marked stale: plain accumulation */
    memset(m.p.grad, 0, (size_t)n * sizeof(float));
    tfm_tape_reset(&t);
    tfm_tensor *loss = model_forward(&t, &m);
    ck_assert_int_eq(tfm_backward(&t, loss), 0);
    memcpy(want, m.p.grad, (size_t)n * sizeof(float));
    /* NaN in every gradient, then the lazy zeroing */
    for (int64_t i = 0; i < m.p.count; i++) {
        tfm_tensor *x = m.p.items[i];
        for (int64_t j = 0; j < x->n; j++) x->grad[j] = NAN;
    }
    model_step(&t, &m);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; i++) differ += !(m.p.grad[i] == want[i]);
    ck_assert_msg(differ == 0, "%lld gradients differ from explicitly zeroed buffers",
                  (long long)differ);
    for (int64_t i = 0; i < m.p.count; i++)
        ck_assert_msg(!(m.p.items[i]->flags & TFM_GRAD_STALE), "%s still stale after backward",
                      m.p.items[i]->name);
    free(want);
    tfm_tape_free(&t);
    tfm_params_free(&m.p);

    /* a parameter no op reaches, and a leaf whose op does not reach the loss:
     * both read as zero (the parameter once tfm_grad_norm has run) */
    ck_assert_int_eq(tfm_tape_init(&t, 1 << 20, 64), 0);
    tfm_params p;
    tfm_params_init(&p);
    int64_t ws[2] = {3, 3};
    tfm_tensor *used = tfm_params_add(&p, "used", 2, ws),
               *unused = tfm_params_add(&p, "unused", 2, ws);
    ck_assert_int_eq(tfm_params_alloc(&p), 0);
    tfm_test_fill(used->data, 9, 1, -1, 1);
    for (int i = 0; i < 9; i++) used->grad[i] = unused->grad[i] = NAN;
    tfm_params_zero_grad(&p);
    tfm_tensor *a = leaf(&t, 2, 3, 1, 2), *dead = leaf(&t, 2, 3, 1, 3);
    for (int i = 0; i < 6; i++) a->grad[i] = dead->grad[i] = NAN;
    tfm_tensor *side = tfm_relu(&t, dead); /* recorded, but not part of the loss */
    ck_assert_ptr_nonnull(side);
    loss = tfm_sum(&t, tfm_linear(&t, a, used, NULL));
    ck_assert_int_eq(tfm_backward(&t, loss), 0);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(dead->grad[i], 0.0f);
    /* d sum(a W^T)/dW[o][i] = sum_rows a[r][i] */
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < 3; i++)
            ck_assert_float_eq_tol(used->grad[o * 3 + i], a->data[i] + a->data[3 + i], 1e-6f);
    double norm = tfm_grad_norm(&p);
    ck_assert_msg(isfinite(norm), "norm %g: a stale gradient leaked", norm);
    for (int i = 0; i < 9; i++) ck_assert_float_eq(unused->grad[i], 0.0f);
    tfm_params_free(&p);
    tfm_tape_free(&t);
}
END_TEST

/* ---- errors ------------------------------------------------------------------------------ */

START_TEST(arena_exhaustion_is_an_error) {
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 4096, 16), 0);
    tfm_params p;
    tfm_params_init(&p);
    int64_t ws[2] = {1024, 8};
    tfm_tensor *w = tfm_params_add(&p, "w", 2, ws);
    ck_assert_int_eq(tfm_params_alloc(&p), 0);
    tfm_tensor *x = leaf(&t, 2, 8, 1, 1);
    size_t before = t.arena.used;
    size_t header = (sizeof(tfm_tensor) + 63) & ~(size_t)63;
    tfm_tensor *y = tfm_linear(&t, x, w, NULL); /* (2, 1024) floats: 8192 bytes */
    ck_assert_ptr_null(y);
    char want[128];
    snprintf(want, sizeof want, "arena: needed 8192 bytes, have %zu", 4096 - before - header);
    HAS(tfm_last_error(), want);
    /* the failure travels: later ops return NULL, backward refuses */
    ck_assert_ptr_null(tfm_relu(&t, y));
    ck_assert_ptr_null(tfm_sum(&t, tfm_relu(&t, y)));
    HAS(tfm_last_error(), "arena: needed 8192 bytes");
    ck_assert_int_ne(tfm_backward(&t, NULL), 0);
    HAS(tfm_last_error(), "backward: no loss");
    /* after a reset the same tape works again */
    tfm_tape_reset(&t);
    x = leaf(&t, 2, 8, 1, 1);
    ck_assert_ptr_nonnull(tfm_relu(&t, x));
    tfm_params_free(&p);
    tfm_tape_free(&t);
}
END_TEST

START_TEST(node_overflow_is_an_error) {
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 1 << 16, 2), 0);
    tfm_tensor *x = leaf(&t, 2, 2, 1, 1);
    ck_assert_ptr_nonnull(tfm_relu(&t, tfm_relu(&t, x)));
    ck_assert_ptr_null(tfm_relu(&t, x));
    HAS(tfm_last_error(), "tape: more than 2 nodes");
    tfm_tape_free(&t);
}
END_TEST

START_TEST(shape_errors_are_clear) {
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 1 << 20, 64), 0);
    tfm_tensor *a = leaf(&t, 2, 3, 1, 1), *b = leaf(&t, 3, 2, 1, 2), *c = leaf(&t, 4, 5, 1, 3);
    ck_assert_ptr_null(tfm_add(&t, a, b));
    HAS(tfm_last_error(), "add: shapes (2, 3) and (3, 2) differ");
    ck_assert_ptr_null(tfm_mul(&t, a, b));
    HAS(tfm_last_error(), "mul: shapes (2, 3) and (3, 2) differ");
    ck_assert_ptr_null(tfm_matmul(&t, a, c, 0, 0));
    HAS(tfm_last_error(), "matmul: shapes (2, 3) and (4, 5) do not multiply");
    ck_assert_ptr_null(tfm_matmul(&t, a, c, 1, 0));
    HAS(tfm_last_error(), "matmul: shapes (2, 3)^T and (4, 5) do not multiply");
    ck_assert_ptr_nonnull(tfm_matmul(&t, a, b, 0, 0)); /* (2, 3) x (3, 2) */
    ck_assert_ptr_null(tfm_linear(&t, a, c, NULL));
    HAS(tfm_last_error(), "linear: x (2, 3), weight (4, 5)");
    ck_assert_ptr_null(tfm_add_bias(&t, a, b));
    HAS(tfm_last_error(), "add_bias: bias (3, 2) does not match the last dim of (2, 3)");
    ck_assert_ptr_null(tfm_layernorm(&t, a, c, c, 1e-5f));
    HAS(tfm_last_error(), "layernorm:");
    ck_assert_ptr_null(tfm_split_heads(&t, a, 2));
    HAS(tfm_last_error(), "split_heads: need (B, T, D)");
    int32_t ids[2] = {1, 7};
    int64_t es[2] = {2, 5};
    ck_assert_ptr_null(tfm_embedding(&t, c, ids, 2, es, 1.0f, -1));
    HAS(tfm_last_error(), "embedding: id 7 at position 1 is outside [0, 4)");
    int32_t tg[2] = {1, 3};
    ck_assert_ptr_null(tfm_cross_entropy(&t, a, tg, -1, 0.0f, NULL));
    HAS(tfm_last_error(), "cross_entropy: target 3 at row 1 is outside [0, 3)");
    ck_assert_ptr_null(tfm_cross_entropy(&t, a, ids, -1, 1.0f, NULL));
    HAS(tfm_last_error(), "label smoothing");
    int64_t s3[3] = {1, 2, 6};
    tfm_tensor *q = tfm_tape_tensor(&t, 3, s3, 1);
    ck_assert_ptr_null(tfm_attention(&t, q, q, q, 4, NULL, 0, 0.0f, NULL));
    HAS(tfm_last_error(), "attention: q (1, 2, 6)");
    ck_assert_ptr_null(tfm_dropout(&t, a, 1.0f));
    HAS(tfm_last_error(), "dropout: probability 1 must be below 1");
    /* failed ops record nothing: only the successful matmul is on the tape */
    ck_assert_int_eq(t.n_nodes, 1);
    tfm_tape_free(&t);
}
END_TEST

START_TEST(backward_needs_a_scalar) {
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 1 << 20, 64), 0);
    tfm_tensor *x = leaf(&t, 2, 3, 1, 1);
    tfm_tensor *y = tfm_relu(&t, x);
    ck_assert_int_ne(tfm_backward(&t, y), 0);
    HAS(tfm_last_error(), "backward: the loss must be a scalar, it has 6 elements");
    /* nothing was written: x's gradient is still the untouched (stale) buffer
     * that stands for zero, and reads as zero once materialised */
    ck_assert(x->flags & TFM_GRAD_STALE);
    tfm_grad_fresh(x);
    for (int i = 0; i < 6; i++) ck_assert(x->grad[i] == 0.0f);
    tfm_tape_free(&t);
}
END_TEST

START_TEST(check_numerics_names_the_op) {
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 1 << 20, 64), 0);
    tfm_params p;
    tfm_params_init(&p);
    int64_t ws[2] = {3, 4};
    tfm_tensor *w = tfm_params_add(&p, "w", 2, ws);
    ck_assert_int_eq(tfm_params_alloc(&p), 0);
    tfm_test_fill(w->data, 12, 1, -1, 1);
    tfm_tensor *x = leaf(&t, 1, 4, 0, 2);
    x->data[2] = NAN;
    /* off: the NaN flows through silently */
    tfm_tensor *y = tfm_linear(&t, x, w, NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert(isnan(y->data[0]));
    /* on: the linear that produced it is named, with the label */
    t.check_numerics = 1;
    tfm_tape_label(&t, "enc.0.ffn");
    ck_assert_ptr_null(tfm_linear(&t, x, w, NULL));
    HAS(tfm_last_error(), "numerics: linear in enc.0.ffn produced 3 non-finite value(s)");
    tfm_tape_label(&t, NULL);
    x->data[2] = 1.0f;
    ck_assert_ptr_nonnull(tfm_relu(&t, tfm_linear(&t, x, w, NULL)));
    /* backward: forward finite, but d/db of sum(1e10 * a * b) = 1e10 * a = inf */
    tfm_tape_reset(&t);
    tfm_tensor *a = leaf(&t, 1, 2, 1, 3), *b = leaf(&t, 1, 2, 1, 4);
    a->data[0] = a->data[1] = 1e30f;
    b->data[0] = b->data[1] = 1e-30f;
    tfm_tape_label(&t, "dec.1");
    tfm_tensor *loss = tfm_sum(&t, tfm_scale(&t, tfm_mul(&t, a, b), 1e10f));
    ck_assert_ptr_nonnull(loss);
    ck_assert(isfinite(loss->data[0]));
    ck_assert_int_ne(tfm_backward(&t, loss), 0);
    HAS(tfm_last_error(), "numerics: the gradient of mul (input 1) in dec.1 produced 2 non-finite");
    tfm_params_free(&p);
    tfm_tape_free(&t);
}
END_TEST

/* ---- determinism
 * --------------------------------------------------------------------------------- */

typedef struct {
    float loss;
    float *grad;
} run_result;

static run_result run_model(int threads, uint64_t step) {
    model m;
    model_init(&m);
    tfm_set_num_threads(threads);
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 16 << 20, 256), 0);
    t.seed = 11;
    t.step = step;
    run_result r;
    r.loss = model_step(&t, &m);
    r.grad = malloc((size_t)m.p.total_n * sizeof(float));
    memcpy(r.grad, m.p.grad, (size_t)m.p.total_n * sizeof(float));
    ck_assert_msg(tfm_k_count_nonfinite(r.grad, m.p.total_n) == 0, "non-finite gradients");
    ck_assert(tfm_k_sumsq(r.grad, m.p.total_n) > 0);
    tfm_tape_free(&t);
    tfm_params_free(&m.p);
    return r;
}

static int64_t grad_n(void) {
    model m;
    model_init(&m);
    int64_t n = m.p.total_n;
    tfm_params_free(&m.p);
    return n;
}

START_TEST(bit_identical_runs_and_threads) {
    int64_t n = grad_n();
    run_result a = run_model(2, 1), b = run_model(2, 1), c = run_model(1, 1), d = run_model(2, 2);
#ifdef _OPENMP
    ck_assert_int_eq(omp_get_max_threads(), 2);
#endif
    printf("  loss: 2 threads %.9g / %.9g, 1 thread %.9g, next step %.9g\n", a.loss, b.loss, c.loss,
           d.loss);
    ck_assert_msg(memcmp(&a.loss, &b.loss, sizeof(float)) == 0, "two runs differ");
    ck_assert_msg(memcmp(a.grad, b.grad, (size_t)n * sizeof(float)) == 0,
                  "two runs' gradients differ");
    ck_assert_msg(memcmp(&a.loss, &c.loss, sizeof(float)) == 0, "1 vs 2 threads: loss differs");
    int64_t differ = 0;
    for (int64_t i = 0; i < n; i++) differ += memcmp(&a.grad[i], &c.grad[i], sizeof(float)) != 0;
    ck_assert_msg(differ == 0, "1 vs 2 threads: %lld gradients differ", (long long)differ);
    /* another step draws other dropout masks */
    ck_assert_msg(a.loss != d.loss, "step 2 used the same dropout masks as step 1");
    free(a.grad);
    free(b.grad);
    free(c.grad);
    free(d.grad);
}
END_TEST

/* Attention sizes its per-thread scratch in the forward; a backward that
 * runs with more threads must not write past it (into the next tensor of
 * the arena), and gives the same gradients. */
START_TEST(attention_backward_with_more_threads) {
    enum { AB = 4, AT = 32, AD = 32, AH = 2 }; /* B*H*T*T*dh = 131072: parallel */
    float *grads[2][3];
    for (int run = 0; run < 2; run++) {
        tfm_set_num_threads(1);
        tfm_tape t;
        ck_assert_int_eq(tfm_tape_init(&t, 4 << 20, 16), 0);
        int64_t s[3] = {AB, AT, AD};
        tfm_tensor *in[3];
        for (int i = 0; i < 3; i++) {
            in[i] = tfm_tape_tensor(&t, 3, s, 1);
            tfm_test_fill(in[i]->data, in[i]->n, 70 + (uint64_t)i, -1, 1);
        }
        tfm_tensor *y = tfm_attention(&t, in[0], in[1], in[2], AH, NULL, 1, 0.0f, NULL);
        ck_assert_ptr_nonnull(y);
        int64_t cs[1] = {4 * AT * AT};
        /* right after the scratch; keep its pointer: the header may be hit too */
        float *canary = tfm_tape_tensor(&t, 1, cs, 0)->data;
        for (int64_t i = 0; i < cs[0]; i++) canary[i] = 7.0f;
        tfm_tensor *loss = tfm_sum(&t, tfm_mul(&t, y, y));
        if (run == 1) tfm_set_num_threads(2); /* run 0: 1 thread throughout */
        ck_assert_int_eq(tfm_backward(&t, loss), 0);
        int64_t hit = 0;
        for (int64_t i = 0; i < cs[0]; i++) hit += canary[i] != 7.0f;
        ck_assert_msg(hit == 0, "backward wrote %lld floats past the attention scratch",
                      (long long)hit);
        for (int i = 0; i < 3; i++) {
            grads[run][i] = malloc((size_t)in[i]->n * sizeof(float));
            memcpy(grads[run][i], in[i]->grad, (size_t)in[i]->n * sizeof(float));
        }
        tfm_tape_free(&t);
    }
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(memcmp(grads[0][i], grads[1][i], AB * AT * AD * sizeof(float)) == 0,
                      "gradient %d differs", i);
        free(grads[0][i]);
        free(grads[1][i]);
    }
    tfm_set_num_threads(2);
}
END_TEST

/* ---- whole-model directional gradient check ------------------------------------------------- */

/* The harness hands fresh tape tensors for the parameters: swap them in. */
static tfm_tensor *model_as_fn(tfm_tape *t, tfm_tensor *const *in, void *ctx) {
    model *m = ctx;
    tfm_tensor **slots[12] = {&m->emb, &m->ln_g, &m->ln_b, &m->wq, &m->wk, &m->wv,
                              &m->bo,  &m->w1,   &m->b1,   &m->w2, &m->b2, &m->wout};
    tfm_tensor *saved[12];
    for (int i = 0; i < 12; i++) {
        saved[i] = *slots[i];
        *slots[i] = in[i];
    }
    tfm_tensor *loss = model_forward(t, m);
    for (int i = 0; i < 12; i++) *slots[i] = saved[i];
    return loss;
}

/* The pad id's embedding row feeds the forward (padded positions still
 * compute) but by design learns nothing: keep it out of the direction. */
static int skip_emb_pad_row(void *ctx, int input, int64_t i, const float *data) {
    (void)ctx;
    (void)data;
    return input == 0 && i < D;
}

START_TEST(model_directional_gradcheck) {
    model m;
    model_init(&m);
    /* Thousands of ReLU units sit near their kink at this scale: crossing
     * them moves the central difference by a few percent, so the whole-model
     * check runs without the ReLU (every op alone is checked in test_ops). */
    m.smooth = 1;
    ck_assert_int_eq(m.p.count, 12);
    tfm_gc_input in[12];
    memset(in, 0, sizeof in);
    for (int i = 0; i < 12; i++) {
        tfm_tensor *x = m.p.items[i];
        in[i].name = x->name;
        in[i].ndim = x->ndim;
        for (int d = 0; d < x->ndim; d++) in[i].shape[d] = x->shape[d];
        in[i].data = x->data;
        in[i].needs_grad = 1;
    }
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 16 << 20, 256), 0);
    t.seed = 3; /* dropout on, fixed masks */
    tfm_gc_opts o = tfm_gc_defaults();
    o.skip = skip_emb_pad_row;
    o.h = 3e-3f;
    o.atol = 1e-4;
    o.rtol = 2e-3;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        o.seed = seed;
        double an = 0, num = 0;
        int r = tfm_gradcheck_directional("model", &t, model_as_fn, &m, in, 12, &o, &an, &num);
        ck_assert_msg(r == 0, "directional check %d: analytic %g numeric %g", (int)seed, an, num);
        ck_assert(fabs(an) > 1e-3); /* a direction the loss actually moves along */
    }
    tfm_tape_free(&t);
    tfm_params_free(&m.p);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tape");
    TCase *tc = tcase_create("tape");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, op_table_is_complete);
    tcase_add_test(tc, shared_tensor_gets_both_gradients);
    tcase_add_test(tc, stale_gradients_never_leak);
    tcase_add_test(tc, no_grad_records_nothing);
    tcase_add_test(tc, reset_reuses_the_arena);
    tcase_add_test(tc, arena_exhaustion_is_an_error);
    tcase_add_test(tc, node_overflow_is_an_error);
    tcase_add_test(tc, shape_errors_are_clear);
    tcase_add_test(tc, backward_needs_a_scalar);
    tcase_add_test(tc, check_numerics_names_the_op);
    tcase_add_test(tc, bit_identical_runs_and_threads);
    tcase_add_test(tc, model_directional_gradcheck);
    tcase_add_test(tc, attention_backward_with_more_threads);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
