/* Every op in tfm/ops.h: central-difference gradient checks, the fused
 * attention against the same math built from primitive ops, and PyTorch
 * fixtures (tests/gen_fixtures.py) for outputs and input gradients. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tfm/ops.h"
#include "util_gradcheck.h"
#include "util_test.h"

/* Parameters of the op under test, shared by the forward callbacks. */
typedef struct {
    int trans_a, trans_b;
    float alpha, p, eps, scale, smoothing;
    int64_t heads;
    const int32_t *ids;
    int out_ndim;
    int64_t out_shape[4];
    int32_t pad;
    const uint8_t *key_pad;
    int causal;
    int training;
    float kink;               /* relu: skip |x| < kink */
    int64_t pad_row, row_len; /* embedding: skip the pad row */
} op_ctx;

static tfm_gc_input input(const char *name, float *data, int needs_grad, int ndim, int64_t d0,
                          int64_t d1, int64_t d2, int64_t d3) {
    tfm_gc_input in;
    memset(&in, 0, sizeof in);
    in.name = name;
    in.data = data;
    in.needs_grad = needs_grad;
    in.ndim = ndim;
    int64_t d[4] = {d0, d1, d2, d3};
    for (int i = 0; i < ndim; i++) in.shape[i] = d[i];
    return in;
}

static int64_t numel(const tfm_gc_input *in) {
    int64_t n = 1;
    for (int i = 0; i < in->ndim; i++) n *= in->shape[i];
    return n;
}

static void tape_for(tfm_tape *t, const op_ctx *c) {
    ck_assert_int_eq(tfm_tape_init(t, 4 << 20, 256), 0);
    t->training = c ? c->training : 0;
    t->seed = 7;
    t->step = 3;
}

/* Fills each input with uniform values in [-1, 1) (seeded by position) and
 * runs the check; fails the test on any element out of tolerance. */
static void gradcheck(const char *what, tfm_gc_fn fn, op_ctx *c, tfm_gc_input *in, int n_in,
                      const tfm_gc_opts *o, int fill) {
    uint64_t seed = 1469598103934665603ull; /* FNV-1a of the name: each check its own values */
    for (const char *p = what; *p; p++) seed = (seed ^ (unsigned char)*p) * 1099511628211ull;
    if (fill)
        for (int i = 0; i < n_in; i++)
            tfm_test_fill(in[i].data, numel(&in[i]), seed + (uint64_t)i, -1.0f, 1.0f);
    tfm_tape t;
    tape_for(&t, c);
    tfm_gc_opts def = tfm_gc_defaults();
    int r = tfm_gradcheck(what, &t, fn, c, in, n_in, o ? o : &def, NULL);
    tfm_tape_free(&t);
    ck_assert_msg(r == 0, "%s: gradient check failed (%d)", what, r);
}

/* ---- forward callbacks ---------------------------------------------------------- */

static tfm_tensor *f_matmul(tfm_tape *t, tfm_tensor *const *in, void *c) {
    op_ctx *x = c;
    return tfm_matmul(t, in[0], in[1], x->trans_a, x->trans_b);
}
static tfm_tensor *f_matmul_self(tfm_tape *t, tfm_tensor *const *in, void *c) {
    op_ctx *x = c;
    return tfm_matmul(t, in[0], in[0], x->trans_a, x->trans_b);
}
static tfm_tensor *f_linear(tfm_tape *t, tfm_tensor *const *in, void *c) {
    (void)c;
    return tfm_linear(t, in[0], in[1], in[2]);
}
static tfm_tensor *f_linear_nobias(tfm_tape *t, tfm_tensor *const *in, void *c) {
    (void)c;
    return tfm_linear(t, in[0], in[1], NULL);
}
static tfm_tensor *f_add(tfm_tape *t, tfm_tensor *const *in, void *c) {
    (void)c;
    return tfm_add(t, in[0], in[1]);
}
static tfm_tensor *f_add_bias(tfm_tape *t, tfm_tensor *const *in, void *c) {
    (void)c;
    return tfm_add_bias(t, in[0], in[1]);
}
static tfm_tensor *f_mul(tfm_tape *t, tfm_tensor *const *in, void *c) {
    (void)c;
    return tfm_mul(t, in[0], in[1]);
}
static tfm_tensor *f_scale(tfm_tape *t, tfm_tensor *const *in, void *c) {
    return tfm_scale(t, in[0], ((op_ctx *)c)->alpha);
}
static tfm_tensor *f_relu(tfm_tape *t, tfm_tensor *const *in, void *c) {
    (void)c;
    return tfm_relu(t, in[0]);
}
static tfm_tensor *f_softmax(tfm_tape *t, tfm_tensor *const *in, void *c) {
    (void)c;
    return tfm_softmax(t, in[0]);
}
static tfm_tensor *f_layernorm(tfm_tape *t, tfm_tensor *const *in, void *c) {
    return tfm_layernorm(t, in[0], in[1], in[2], ((op_ctx *)c)->eps);
}
static tfm_tensor *f_embedding(tfm_tape *t, tfm_tensor *const *in, void *c) {
    op_ctx *x = c;
    return tfm_embedding(t, in[0], x->ids, x->out_ndim, x->out_shape, x->scale, x->pad);
}
static tfm_tensor *f_dropout(tfm_tape *t, tfm_tensor *const *in, void *c) {
    return tfm_dropout(t, in[0], ((op_ctx *)c)->p);
}
static tfm_tensor *f_split_heads(tfm_tape *t, tfm_tensor *const *in, void *c) {
    return tfm_split_heads(t, in[0], ((op_ctx *)c)->heads);
}
static tfm_tensor *f_merge_heads(tfm_tape *t, tfm_tensor *const *in, void *c) {
    (void)c;
    return tfm_merge_heads(t, in[0]);
}
static tfm_tensor *f_sum(tfm_tape *t, tfm_tensor *const *in, void *c) {
    (void)c;
    return tfm_sum(t, in[0]);
}
static tfm_tensor *f_mean(tfm_tape *t, tfm_tensor *const *in, void *c) {
    (void)c;
    return tfm_mean(t, in[0]);
}
static tfm_tensor *f_xent(tfm_tape *t, tfm_tensor *const *in, void *c) {
    op_ctx *x = c;
    return tfm_cross_entropy(t, in[0], x->ids, x->pad, x->smoothing, NULL);
}
static tfm_tensor *f_attention(tfm_tape *t, tfm_tensor *const *in, void *c) {
    op_ctx *x = c;
    return tfm_attention(t, in[0], in[1], in[2], x->heads, x->key_pad, x->causal, x->p, NULL);
}

static int skip_relu_kink(void *c, int input, int64_t i, const float *data) {
    (void)input;
    return fabsf(data[i]) < ((op_ctx *)c)->kink;
}

static int skip_pad_row(void *c, int input, int64_t i, const float *data) {
    (void)input;
    (void)data;
    op_ctx *x = c;
    return i / x->row_len == x->pad_row;
}

/* ---- gradient checks ------------------------------------------------------------- */

START_TEST(grad_matmul_all_variants) {
    /* op(a) (M=3, K=4), op(b) (K=4, N=5) */
    float a[2 * 2 * 12], b[2 * 2 * 20];
    char what[64];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            op_ctx c = {.trans_a = ta, .trans_b = tb};
            int64_t a0 = ta ? 4 : 3, a1 = ta ? 3 : 4, b0 = tb ? 5 : 4, b1 = tb ? 4 : 5;
            /* 2-D */
            tfm_gc_input in[2] = {input("a", a, 1, 2, a0, a1, 0, 0),
                                  input("b", b, 1, 2, b0, b1, 0, 0)};
            snprintf(what, sizeof what, "matmul ta=%d tb=%d", ta, tb);
            gradcheck(what, f_matmul, &c, in, 2, NULL, 1);
            /* batched (2, ...) x (2, ...) */
            tfm_gc_input inb[2] = {input("a", a, 1, 3, 2, a0, a1, 0),
                                   input("b", b, 1, 3, 2, b0, b1, 0)};
            snprintf(what, sizeof what, "matmul batched ta=%d tb=%d", ta, tb);
            gradcheck(what, f_matmul, &c, inb, 2, NULL, 1);
            /* batched a with a shared 2-D b: b's gradient sums over the batch */
            tfm_gc_input ins[2] = {input("a", a, 1, 3, 2, a0, a1, 0),
                                   input("b", b, 1, 2, b0, b1, 0, 0)};
            snprintf(what, sizeof what, "matmul shared-b ta=%d tb=%d", ta, tb);
            gradcheck(what, f_matmul, &c, ins, 2, NULL, 1);
        }
    /* 4-D (B=2, H=2, ...) as attention uses it */
    op_ctx c = {.trans_a = 0, .trans_b = 1};
    tfm_gc_input in4[2] = {input("a", a, 1, 4, 2, 2, 3, 4), input("b", b, 1, 4, 2, 2, 5, 4)};
    gradcheck("matmul 4-D ta=0 tb=1", f_matmul, &c, in4, 2, NULL, 1);
}
END_TEST

START_TEST(grad_linear) {
    float x[2 * 3 * 4], w[5 * 4], b[5];
    tfm_gc_input in[3] = {input("x", x, 1, 3, 2, 3, 4, 0), input("W", w, 1, 2, 5, 4, 0, 0),
                          input("b", b, 1, 1, 5, 0, 0, 0)};
    gradcheck("linear", f_linear, NULL, in, 3, NULL, 1);
    gradcheck("linear no bias", f_linear_nobias, NULL, in, 2, NULL, 1);
    /* a constant x: only the parameters get gradients */
    in[0].needs_grad = 0;
    gradcheck("linear const x", f_linear, NULL, in, 3, NULL, 1);
}
END_TEST

START_TEST(grad_elementwise) {
    float a[24], b[24], bias[4];
    tfm_gc_input in[2] = {input("a", a, 1, 3, 2, 3, 4, 0), input("b", b, 1, 3, 2, 3, 4, 0)};
    gradcheck("add", f_add, NULL, in, 2, NULL, 1);
    gradcheck("mul", f_mul, NULL, in, 2, NULL, 1);
    tfm_gc_input ib[2] = {input("x", a, 1, 3, 2, 3, 4, 0), input("bias", bias, 1, 1, 4, 0, 0, 0)};
    gradcheck("add_bias", f_add_bias, NULL, ib, 2, NULL, 1);
    op_ctx c = {.alpha = -1.7f};
    gradcheck("scale", f_scale, &c, in, 1, NULL, 1);
    gradcheck("sum", f_sum, NULL, in, 1, NULL, 1);
    gradcheck("mean", f_mean, NULL, in, 1, NULL, 1);
}
END_TEST

START_TEST(grad_relu_skips_kink) {
    float x[40];
    op_ctx c = {.kink = 0.03f};
    tfm_gc_input in[1] = {input("x", x, 1, 2, 5, 8, 0, 0)};
    tfm_gc_opts o = tfm_gc_defaults();
    o.skip = skip_relu_kink;
    tfm_test_fill(x, 40, 5, -1, 1);
    x[3] = 0.001f; /* right at the kink: must be skipped, not compared */
    x[7] = -0.002f;
    tfm_tape t;
    tape_for(&t, NULL);
    tfm_gc_result res[1];
    int r = tfm_gradcheck("relu", &t, f_relu, &c, in, 1, &o, res);
    tfm_tape_free(&t);
    ck_assert_int_eq(r, 0);
    ck_assert_int_ge(res[0].skipped, 2);
    ck_assert_int_ge(res[0].checked, 30);
}
END_TEST

START_TEST(grad_softmax_layernorm) {
    float x[3 * 6], g[6], b[6];
    tfm_gc_input in[1] = {input("x", x, 1, 2, 3, 6, 0, 0)};
    tfm_test_fill(x, 18, 9, -2, 2);
    gradcheck("softmax", f_softmax, NULL, in, 1, NULL, 0);
    op_ctx c = {.eps = 1e-5f};
    tfm_gc_input ln[3] = {input("x", x, 1, 2, 3, 6, 0, 0), input("gamma", g, 1, 1, 6, 0, 0, 0),
                          input("beta", b, 1, 1, 6, 0, 0, 0)};
    tfm_gc_opts o = tfm_gc_defaults();
    o.h = 5e-3f;
    gradcheck("layernorm", f_layernorm, &c, ln, 3, &o, 1);
    /* 3-D input, rows over (B, T) */
    tfm_gc_input ln3[3] = {input("x", x, 1, 3, 1, 3, 6, 0), input("gamma", g, 1, 1, 6, 0, 0, 0),
                           input("beta", b, 1, 1, 6, 0, 0, 0)};
    gradcheck("layernorm 3-D", f_layernorm, &c, ln3, 3, &o, 1);
}
END_TEST

START_TEST(grad_embedding_pad_row_gets_nothing) {
    /* table (6, 4); ids (2, 3) with 2 repeated and the pad id 0 */
    static const int32_t ids[6] = {2, 5, 2, 0, 1, 0};
    float table[24], grad[24];
    op_ctx c = {.ids = ids,
                .out_ndim = 3,
                .out_shape = {2, 3, 4},
                .scale = 1.5f,
                .pad = 0,
                .pad_row = 0,
                .row_len = 4};
    tfm_gc_input in[1] = {input("table", table, 1, 2, 6, 4, 0, 0)};
    in[0].grad_out = grad;
    tfm_gc_opts o = tfm_gc_defaults();
    o.skip = skip_pad_row; /* f depends on the pad row, but by design it learns nothing */
    gradcheck("embedding", f_embedding, &c, in, 1, &o, 1);
    for (int j = 0; j < 4; j++) ck_assert_msg(grad[j] == 0.0f, "pad row gradient %g", grad[j]);
    /* rows 3 and 4 are not used: exactly zero */
    for (int j = 12; j < 20; j++) ck_assert_msg(grad[j] == 0.0f, "unused row gradient %g", grad[j]);
    /* without a pad id every row used gets a gradient, and the check covers all */
    c.pad = -1;
    o.skip = NULL;
    gradcheck("embedding no pad", f_embedding, &c, in, 1, &o, 1);
    ck_assert_msg(grad[0] != 0.0f, "row 0 should learn without a pad id");
}
END_TEST

START_TEST(grad_dropout_fixed_key) {
    float x[64], grad[64];
    op_ctx c = {.p = 0.4f, .training = 1};
    tfm_gc_input in[1] = {input("x", x, 1, 2, 8, 8, 0, 0)};
    in[0].grad_out = grad;
    gradcheck("dropout p=0.4", f_dropout, &c, in, 1, NULL, 1);
    int zeros = 0;
    for (int i = 0; i < 64; i++) zeros += grad[i] == 0.0f;
    /* about 40% dropped; the check above would pass for identity too */
    ck_assert_msg(zeros >= 10 && zeros <= 40, "%d of 64 gradients zero", zeros);
    /* eval mode: identity, gradient = R exactly */
    c.training = 0;
    gradcheck("dropout eval", f_dropout, &c, in, 1, NULL, 1);
    for (int i = 0; i < 64; i++) {
        float r = 2.0f * tfm_rand_uniform(tfm_gc_defaults().seed, (uint64_t)i) - 1.0f;
        ck_assert_msg(grad[i] == r, "eval dropout gradient %d: %g vs %g", i, grad[i], r);
    }
}
END_TEST

START_TEST(grad_heads_and_reductions) {
    float x[2 * 3 * 8];
    op_ctx c = {.heads = 2};
    tfm_gc_input in[1] = {input("x", x, 1, 3, 2, 3, 8, 0)};
    gradcheck("split_heads", f_split_heads, &c, in, 1, NULL, 1);
    tfm_gc_input in4[1] = {input("x", x, 1, 4, 2, 2, 3, 4)};
    gradcheck("merge_heads", f_merge_heads, NULL, in4, 1, NULL, 1);
}
END_TEST

START_TEST(grad_cross_entropy) {
    /* logits (2, 3, 5); rows 2 and 4 carry the ignore index 0 */
    static const int32_t targets[6] = {3, 1, 0, 4, 0, 2};
    float x[30], grad[30];
    tfm_gc_input in[1] = {input("logits", x, 1, 3, 2, 3, 5, 0)};
    in[0].grad_out = grad;
    tfm_test_fill(x, 30, 21, -3, 3);
    op_ctx c = {.ids = targets, .pad = 0, .smoothing = 0.0f};
    tfm_gc_opts o = tfm_gc_defaults();
    o.atol = 2e-4;
    gradcheck("cross_entropy eps=0", f_xent, &c, in, 1, &o, 0);
    for (int j = 0; j < 5; j++) ck_assert(grad[2 * 5 + j] == 0.0f && grad[4 * 5 + j] == 0.0f);
    c.smoothing = 0.1f;
    gradcheck("cross_entropy eps=0.1", f_xent, &c, in, 1, &o, 0);
    for (int j = 0; j < 5; j++) ck_assert(grad[2 * 5 + j] == 0.0f && grad[4 * 5 + j] == 0.0f);
    /* no ignored rows (ignore index outside the vocabulary) */
    c.pad = -100;
    gradcheck("cross_entropy no ignore", f_xent, &c, in, 1, &o, 0);
}
END_TEST

static void attention_case(const char *what, op_ctx *c, int64_t B, int64_t Tq, int64_t Tk,
                           int64_t D) {
    float q[2 * 5 * 8], k[2 * 5 * 8], v[2 * 5 * 8];
    ck_assert(B * Tq * D <= 80 && B * Tk * D <= 80);
    tfm_gc_input in[3] = {input("q", q, 1, 3, B, Tq, D, 0), input("k", k, 1, 3, B, Tk, D, 0),
                          input("v", v, 1, 3, B, Tk, D, 0)};
    /* scores of order 1: q, k in [-1.5, 1.5) */
    tfm_test_fill(q, B * Tq * D, 31, -1.5f, 1.5f);
    tfm_test_fill(k, B * Tk * D, 32, -1.5f, 1.5f);
    tfm_test_fill(v, B * Tk * D, 33, -1.0f, 1.0f);
    gradcheck(what, f_attention, c, in, 3, NULL, 0);
}

START_TEST(grad_attention) {
    op_ctx c = {.heads = 2};
    attention_case("attention", &c, 2, 3, 3, 8);
    c.causal = 1;
    attention_case("attention causal", &c, 2, 4, 4, 8);
    static const uint8_t pad[2 * 4] = {0, 0, 1, 1, 0, 0, 0, 1};
    c.key_pad = pad;
    attention_case("attention causal + key pad", &c, 2, 4, 4, 8);
    c.causal = 0;
    attention_case("attention key pad", &c, 2, 3, 4, 8);
    /* cross-attention: Tq = 2 queries over Tk = 5 keys */
    static const uint8_t pad5[2 * 5] = {0, 0, 0, 0, 1, 0, 0, 1, 1, 1};
    c.key_pad = pad5;
    attention_case("cross-attention Tq=2 Tk=5", &c, 2, 2, 5, 8);
    /* a fully masked row (batch 1 query 0: causal, key 0 padded) */
    static const uint8_t pad0[2 * 3] = {0, 0, 0, 1, 0, 0};
    c.key_pad = pad0;
    c.causal = 1;
    attention_case("attention fully masked row", &c, 2, 3, 3, 8);
    /* dropout on the probabilities with a fixed key */
    c.key_pad = NULL;
    c.causal = 0;
    c.p = 0.3f;
    c.training = 1;
    attention_case("attention dropout p=0.3", &c, 2, 3, 4, 8);
    c.causal = 1;
    c.heads = 4;
    attention_case("attention dropout causal H=4", &c, 1, 4, 4, 8);
}
END_TEST

/* Only some inputs want a gradient: backward must skip the others (a NULL
 * gradient), and still get the rest right. */
START_TEST(grad_with_constant_inputs) {
    float a[24], b[24], g[6], bb[6];
    op_ctx c = {.trans_b = 1, .eps = 1e-5f, .heads = 2};
    for (int which = 0; which < 2; which++) {
        tfm_gc_input mm[2] = {input("a", a, which == 0, 2, 3, 4, 0, 0),
                              input("b", b, which == 1, 2, 5, 4, 0, 0)};
        gradcheck(which ? "matmul const a" : "matmul const b", f_matmul, &c, mm, 2, NULL, 1);
        tfm_gc_input ml[2] = {input("a", a, which == 0, 2, 4, 6, 0, 0),
                              input("b", b, which == 1, 2, 4, 6, 0, 0)};
        gradcheck(which ? "mul const a" : "mul const b", f_mul, NULL, ml, 2, NULL, 1);
        gradcheck(which ? "add const a" : "add const b", f_add, NULL, ml, 2, NULL, 1);
        tfm_gc_input ab[2] = {input("x", a, which == 0, 2, 4, 6, 0, 0),
                              input("bias", bb, which == 1, 1, 6, 0, 0, 0)};
        gradcheck(which ? "add_bias const x" : "add_bias const bias", f_add_bias, NULL, ab, 2, NULL,
                  1);
    }
    tfm_gc_opts o = tfm_gc_defaults();
    o.h = 5e-3f;
    tfm_gc_input ln[3] = {input("x", a, 0, 2, 4, 6, 0, 0), input("gamma", g, 1, 1, 6, 0, 0, 0),
                          input("beta", bb, 0, 1, 6, 0, 0, 0)};
    gradcheck("layernorm gamma only", f_layernorm, &c, ln, 3, &o, 1);
    ln[0].needs_grad = 1;
    ln[1].needs_grad = 0;
    gradcheck("layernorm x only", f_layernorm, &c, ln, 3, &o, 1);
    float q[48], k[48], v[48];
    for (int which = 0; which < 3; which++) {
        tfm_gc_input at[3] = {input("q", q, which == 0, 3, 2, 3, 8, 0),
                              input("k", k, which == 1, 3, 2, 3, 8, 0),
                              input("v", v, which == 2, 3, 2, 3, 8, 0)};
        const char *names[3] = {"attention q only", "attention k only", "attention v only"};
        gradcheck(names[which], f_attention, &c, at, 3, NULL, 1);
    }
}
END_TEST

/* The same tensor as query, key and value: three gradient contributions
 * land in one buffer. */
static tfm_tensor *f_self_attention(tfm_tape *t, tfm_tensor *const *in, void *c) {
    op_ctx *x = c;
    return tfm_attention(t, in[0], in[0], in[0], x->heads, x->key_pad, x->causal, x->p, NULL);
}

START_TEST(grad_aliased_inputs) {
    float x[48];
    op_ctx c = {.heads = 2, .causal = 1};
    tfm_gc_input in[1] = {input("x", x, 1, 3, 2, 3, 8, 0)};
    gradcheck("attention(x, x, x)", f_self_attention, &c, in, 1, NULL, 1);
    c.training = 1;
    c.p = 0.2f;
    gradcheck("attention(x, x, x) dropout", f_self_attention, &c, in, 1, NULL, 1);
    c.trans_b = 1;
    tfm_gc_input sq[2] = {input("a", x, 1, 3, 2, 3, 8, 0)};
    gradcheck("matmul(a, a^T)", f_matmul_self, &c, sq, 1, NULL, 1);
}
END_TEST

/* ---- fused attention vs the composition of primitive ops --------------------------- */

typedef struct {
    int64_t heads;
    const uint8_t *key_pad;
    int causal;
    float *mask; /* (B, H, Tq, Tk): 0 or -1e9 */
} compose_ctx;

static tfm_tensor *f_attention_fused(tfm_tape *t, tfm_tensor *const *in, void *c) {
    compose_ctx *x = c;
    return tfm_attention(t, in[0], in[1], in[2], x->heads, x->key_pad, x->causal, 0.0f, NULL);
}

/* softmax(Q K^T / sqrt(dh) + mask) V per head, with the heads split and merged */
static tfm_tensor *f_attention_composed(tfm_tape *t, tfm_tensor *const *in, void *c) {
    compose_ctx *x = c;
    tfm_tensor *q = tfm_split_heads(t, in[0], x->heads);
    tfm_tensor *k = tfm_split_heads(t, in[1], x->heads);
    tfm_tensor *v = tfm_split_heads(t, in[2], x->heads);
    if (!q || !k) return NULL;
    int64_t dh = q->shape[3];
    tfm_tensor *s = tfm_scale(t, tfm_matmul(t, q, k, 0, 1), 1.0f / sqrtf((float)dh));
    if (!s) return NULL;
    tfm_tensor *m = tfm_tape_constant(t, x->mask, 4, s->shape);
    tfm_tensor *p = tfm_softmax(t, tfm_add(t, s, m));
    return tfm_merge_heads(t, tfm_matmul(t, p, v, 0, 0));
}

static void compare_composition(const char *what, int64_t B, int64_t Tq, int64_t Tk, int64_t D,
                                int64_t H, const uint8_t *key_pad, int causal) {
    enum { CAP = 256 };
    float q[CAP], k[CAP], v[CAP], mask[CAP];
    float gq[2][CAP], gk[2][CAP], gv[2][CAP], out[2][CAP];
    ck_assert(B * Tq * D <= CAP && B * Tk * D <= CAP && B * H * Tq * Tk <= CAP);
    tfm_test_fill(q, B * Tq * D, 41, -1.5f, 1.5f);
    tfm_test_fill(k, B * Tk * D, 42, -1.5f, 1.5f);
    tfm_test_fill(v, B * Tk * D, 43, -1.0f, 1.0f);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Tq; i++)
                for (int64_t j = 0; j < Tk; j++) {
                    int hidden = (causal && j > i) || (key_pad && key_pad[b * Tk + j]);
                    mask[((b * H + h) * Tq + i) * Tk + j] = hidden ? -1e9f : 0.0f;
                }
    compose_ctx c = {H, key_pad, causal, mask};
    tfm_gc_fn fns[2] = {f_attention_fused, f_attention_composed};
    double loss[2];
    int64_t n_out[2];
    for (int w = 0; w < 2; w++) {
        tfm_gc_input in[3] = {input("q", q, 1, 3, B, Tq, D, 0), input("k", k, 1, 3, B, Tk, D, 0),
                              input("v", v, 1, 3, B, Tk, D, 0)};
        in[0].grad_out = gq[w];
        in[1].grad_out = gk[w];
        in[2].grad_out = gv[w];
        tfm_tape t;
        tape_for(&t, NULL);
        loss[w] = tfm_gc_eval(&t, fns[w], &c, in, 3, 99, out[w], CAP, &n_out[w]);
        tfm_tape_free(&t);
        ck_assert_msg(!isnan(loss[w]), "%s: graph %d failed", what, w);
    }
    ck_assert_int_eq(n_out[0], n_out[1]);
    printf("  %s (fused vs composed):\n", what);
    ck_assert_allclose("  out", out[0], out[1], n_out[0], 1e-6f, 1e-5f);
    ck_assert_allclose("  dq", gq[0], gq[1], B * Tq * D, 1e-6f, 1e-5f);
    ck_assert_allclose("  dk", gk[0], gk[1], B * Tk * D, 1e-6f, 1e-5f);
    ck_assert_allclose("  dv", gv[0], gv[1], B * Tk * D, 1e-6f, 1e-5f);
}

START_TEST(attention_matches_composition) {
    compare_composition("attention", 2, 3, 3, 8, 2, NULL, 0);
    compare_composition("attention causal", 2, 4, 4, 8, 2, NULL, 1);
    static const uint8_t pad[2 * 5] = {0, 0, 0, 1, 1, 0, 0, 0, 0, 1};
    compare_composition("cross-attention key pad", 2, 3, 5, 8, 4, pad, 0);
    static const uint8_t pad4[2 * 4] = {0, 0, 0, 1, 0, 0, 1, 1};
    compare_composition("attention causal key pad", 2, 4, 4, 12, 3, pad4, 1);
}
END_TEST

/* ---- PyTorch fixtures ---------------------------------------------------------------
 * tests/fixtures/ops_<op>.bin: cases "C.*" with inputs, parameters, dy, y and
 * one gradient per float input (see tests/gen_fixtures.py). */

typedef struct {
    tfm_fixture fx;
    tfm_tape tape;
    const char *cs; /* current case */
    tfm_tensor *ins[4];
    const char *in_names[4];
    int n_in;
    uint8_t key_pad[64];
} fx_run;

static const tfm_fixture_tensor *fx_field(fx_run *r, const char *field) {
    char name[160];
    snprintf(name, sizeof name, "%s.%s", r->cs, field);
    return tfm_fixture_get(&r->fx, name);
}

/* A float input of the case as a tape tensor that wants a gradient. */
static tfm_tensor *fx_input(fx_run *r, const char *field) {
    const tfm_fixture_tensor *f = fx_field(r, field);
    ck_assert_msg(f->dtype == 0 && f->ndim >= 1, "%s.%s: not a float tensor", r->cs, field);
    tfm_tensor *x = tfm_tape_tensor(&r->tape, f->ndim, f->shape, 1);
    ck_assert_ptr_nonnull(x);
    memcpy(x->data, f->data, (size_t)x->n * sizeof(float));
    r->ins[r->n_in] = x;
    r->in_names[r->n_in++] = field;
    return x;
}

static const int32_t *fx_ints(fx_run *r, const char *field, int64_t *n) {
    const tfm_fixture_tensor *f = fx_field(r, field);
    ck_assert_msg(f->dtype == 1, "%s.%s: not an int tensor", r->cs, field);
    if (n) *n = f->n;
    return f->data;
}

static int32_t fx_int(fx_run *r, const char *field, int i) { return fx_ints(r, field, NULL)[i]; }

static float fx_float(fx_run *r, const char *field) {
    const tfm_fixture_tensor *f = fx_field(r, field);
    ck_assert_msg(f->dtype == 0 && f->n == 1, "%s.%s: not a float scalar", r->cs, field);
    return ((const float *)f->data)[0];
}

static tfm_tensor *fx_matmul(fx_run *r) {
    tfm_tensor *a = fx_input(r, "a"), *b = fx_input(r, "b");
    return tfm_matmul(&r->tape, a, b, fx_int(r, "trans", 0), fx_int(r, "trans", 1));
}
static tfm_tensor *fx_linear(fx_run *r) {
    tfm_tensor *x = fx_input(r, "x"), *w = fx_input(r, "W");
    char name[160];
    snprintf(name, sizeof name, "%s.b", r->cs);
    int has_bias = 0;
    for (int i = 0; i < r->fx.count; i++) has_bias |= !strcmp(r->fx.t[i].name, name);
    return tfm_linear(&r->tape, x, w, has_bias ? fx_input(r, "b") : NULL);
}
static tfm_tensor *fx_add(fx_run *r) {
    tfm_tensor *a = fx_input(r, "a");
    return tfm_add(&r->tape, a, fx_input(r, "b"));
}
static tfm_tensor *fx_add_bias(fx_run *r) {
    tfm_tensor *x = fx_input(r, "x");
    return tfm_add_bias(&r->tape, x, fx_input(r, "b"));
}
static tfm_tensor *fx_mul(fx_run *r) {
    tfm_tensor *a = fx_input(r, "a");
    return tfm_mul(&r->tape, a, fx_input(r, "b"));
}
static tfm_tensor *fx_scale(fx_run *r) {
    return tfm_scale(&r->tape, fx_input(r, "x"), fx_float(r, "alpha"));
}
static tfm_tensor *fx_relu(fx_run *r) { return tfm_relu(&r->tape, fx_input(r, "x")); }
static tfm_tensor *fx_softmax(fx_run *r) { return tfm_softmax(&r->tape, fx_input(r, "x")); }
static tfm_tensor *fx_layernorm(fx_run *r) {
    tfm_tensor *x = fx_input(r, "x"), *g = fx_input(r, "gamma"), *b = fx_input(r, "beta");
    return tfm_layernorm(&r->tape, x, g, b, fx_float(r, "eps"));
}
static tfm_tensor *fx_embedding(fx_run *r) {
    tfm_tensor *table = fx_input(r, "table");
    const tfm_fixture_tensor *ids = fx_field(r, "ids");
    ck_assert(ids->dtype == 1 && ids->ndim <= 3);
    int64_t shape[4];
    for (int i = 0; i < ids->ndim; i++) shape[i] = ids->shape[i];
    shape[ids->ndim] = table->shape[1];
    return tfm_embedding(&r->tape, table, ids->data, ids->ndim + 1, shape, fx_float(r, "scale"),
                         fx_int(r, "pad", 0));
}
static tfm_tensor *fx_dropout(fx_run *r) {
    r->tape.training = fx_int(r, "training", 0); /* eval, or p = 0: identity */
    return tfm_dropout(&r->tape, fx_input(r, "x"), fx_float(r, "p"));
}
static tfm_tensor *fx_split_heads(fx_run *r) {
    return tfm_split_heads(&r->tape, fx_input(r, "x"), fx_int(r, "heads", 0));
}
static tfm_tensor *fx_merge_heads(fx_run *r) { return tfm_merge_heads(&r->tape, fx_input(r, "x")); }
static tfm_tensor *fx_sum(fx_run *r) { return tfm_sum(&r->tape, fx_input(r, "x")); }
static tfm_tensor *fx_mean(fx_run *r) { return tfm_mean(&r->tape, fx_input(r, "x")); }
static tfm_tensor *fx_cross_entropy(fx_run *r) {
    tfm_tensor *x = fx_input(r, "logits");
    int64_t n;
    const int32_t *tgt = fx_ints(r, "targets", &n);
    ck_assert_int_eq(n * x->shape[x->ndim - 1], x->n);
    return tfm_cross_entropy(&r->tape, x, tgt, fx_int(r, "ignore", 0), fx_float(r, "smoothing"),
                             NULL);
}
static tfm_tensor *fx_attention(fx_run *r) {
    tfm_tensor *q = fx_input(r, "q"), *k = fx_input(r, "k"), *v = fx_input(r, "v");
    char name[160];
    snprintf(name, sizeof name, "%s.key_pad", r->cs);
    const uint8_t *kp = NULL;
    for (int i = 0; i < r->fx.count; i++)
        if (!strcmp(r->fx.t[i].name, name)) {
            int64_t n;
            const int32_t *pad = fx_ints(r, "key_pad", &n);
            ck_assert(n <= 64 && n == k->shape[0] * k->shape[1]);
            for (int64_t j = 0; j < n; j++) r->key_pad[j] = (uint8_t)(pad[j] != 0);
            kp = r->key_pad;
        }
    return tfm_attention(&r->tape, q, k, v, fx_int(r, "heads", 0), kp, fx_int(r, "causal", 0), 0.0f,
                         NULL);
}

typedef struct {
    tfm_tensor *(*run)(fx_run *r);
    float atol, rtol;
    int min_cases;
} fx_op;

/* Indexed by tfm_op; the file is ops_<TFM_OPS[op].name>.bin. */
static const fx_op FX_OPS[] = {
    [TFM_OP_MATMUL] = {fx_matmul, 1e-5f, 1e-4f, 13},
    [TFM_OP_LINEAR] = {fx_linear, 1e-5f, 1e-4f, 2},
    [TFM_OP_ADD] = {fx_add, 1e-6f, 1e-6f, 1},
    [TFM_OP_ADD_BIAS] = {fx_add_bias, 1e-6f, 1e-6f, 1},
    [TFM_OP_MUL] = {fx_mul, 1e-6f, 1e-6f, 1},
    [TFM_OP_SCALE] = {fx_scale, 1e-6f, 1e-6f, 1},
    [TFM_OP_RELU] = {fx_relu, 0, 0, 1},
    [TFM_OP_SOFTMAX] = {fx_softmax, 1e-6f, 1e-5f, 1},
    [TFM_OP_LAYERNORM] = {fx_layernorm, 2e-5f, 1e-4f, 1},
    [TFM_OP_EMBEDDING] = {fx_embedding, 1e-6f, 1e-6f, 2},
    [TFM_OP_DROPOUT] = {fx_dropout, 0, 0, 2},
    [TFM_OP_SPLIT_HEADS] = {fx_split_heads, 0, 0, 1},
    [TFM_OP_MERGE_HEADS] = {fx_merge_heads, 0, 0, 1},
    [TFM_OP_SUM] = {fx_sum, 1e-5f, 1e-6f, 1},
    [TFM_OP_MEAN] = {fx_mean, 1e-6f, 1e-6f, 1},
    [TFM_OP_XENT] = {fx_cross_entropy, 1e-6f, 1e-5f, 3},
    [TFM_OP_ATTENTION] = {fx_attention, 1e-5f, 1e-4f, 5},
};
_Static_assert(sizeof FX_OPS / sizeof FX_OPS[0] == TFM_OP_COUNT, "every op needs a fixture test");

/* One case: run the op, compare y; backward with the stored dy through
 * loss = sum(y * dy); compare every input gradient. */
static void fx_case(fx_run *r, const fx_op *op) {
    tfm_tape_reset(&r->tape);
    r->tape.training = 1;
    r->n_in = 0;
    tfm_tensor *y = op->run(r);
    ck_assert_msg(y != NULL, "%s: %s", r->cs, tfm_last_error());
    const tfm_fixture_tensor *want = fx_field(r, "y");
    ck_assert_msg(want->n == y->n, "%s: %lld outputs, want %lld", r->cs, (long long)y->n,
                  (long long)want->n);
    for (int d = 0; d < want->ndim && want->ndim == y->ndim; d++)
        ck_assert_int_eq(y->shape[d], want->shape[d]);
    char what[200];
    snprintf(what, sizeof what, "%s.y", r->cs);
    ck_assert_allclose(what, y->data, want->data, y->n, op->atol, op->rtol);
    const tfm_fixture_tensor *dy = fx_field(r, "dy");
    ck_assert_int_eq(dy->n, y->n);
    tfm_tensor *dyc = tfm_tape_constant(&r->tape, dy->data, y->ndim, y->shape);
    tfm_tensor *loss = tfm_sum(&r->tape, tfm_mul(&r->tape, y, dyc));
    ck_assert_msg(loss && tfm_backward(&r->tape, loss) == 0, "%s: %s", r->cs, tfm_last_error());
    for (int i = 0; i < r->n_in; i++) {
        char field[64];
        snprintf(field, sizeof field, "d%s", r->in_names[i]);
        const tfm_fixture_tensor *g = fx_field(r, field);
        ck_assert_int_eq(g->n, r->ins[i]->n);
        snprintf(what, sizeof what, "%s.%s", r->cs, field);
        ck_assert_allclose(what, r->ins[i]->grad, g->data, g->n, op->atol, op->rtol);
    }
}

START_TEST(fixture_op) {
    const fx_op *op = &FX_OPS[_i];
    char file[96];
    snprintf(file, sizeof file, "ops_%s.bin", TFM_OPS[_i].name);
    printf("%s:\n", file);
    fx_run r;
    memset(&r, 0, sizeof r);
    tfm_fixture_load(&r.fx, file);
    ck_assert_int_eq(tfm_tape_init(&r.tape, 1 << 20, 64), 0);
    int cases = 0;
    for (int i = 0; i < r.fx.count; i++) {
        const char *name = r.fx.t[i].name;
        size_t len = strlen(name);
        if (len < 3 || strcmp(name + len - 2, ".y")) continue;
        char cs[128];
        memcpy(cs, name, len - 2);
        cs[len - 2] = 0;
        r.cs = cs;
        fx_case(&r, op);
        cases++;
    }
    ck_assert_msg(cases >= op->min_cases, "%s: %d cases, want at least %d", file, cases,
                  op->min_cases);
    tfm_tape_free(&r.tape);
    tfm_fixture_free(&r.fx);
}
END_TEST

/* ---- edge cases ----------------------------------------------------------------------- */

START_TEST(cross_entropy_all_ignored) {
    tfm_tape t;
    tape_for(&t, NULL);
    int64_t s[2] = {3, 4};
    tfm_tensor *x = tfm_tape_tensor(&t, 2, s, 1);
    tfm_test_fill(x->data, 12, 1, -2, 2);
    int32_t tg[3] = {5, 5, 5};
    int64_t count = -1;
    tfm_tensor *loss = tfm_cross_entropy(&t, x, tg, 5, 0.1f, &count);
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(count, 0);
    ck_assert(loss->data[0] == 0.0f);
    ck_assert_int_eq(tfm_backward(&t, loss), 0);
    for (int i = 0; i < 12; i++) ck_assert(x->grad[i] == 0.0f);
    tfm_tape_free(&t);
}
END_TEST

START_TEST(attention_probs_out) {
    /* probs_out: (B, H, Tq, Tk) weights before dropout; rows sum to 1, a
     * fully masked row to 0, masked keys get exactly 0 */
    tfm_tape t;
    tape_for(&t, NULL);
    t.training = 1;
    int64_t s[3] = {2, 3, 4};
    tfm_tensor *q = tfm_tape_tensor(&t, 3, s, 1);
    tfm_test_fill(q->data, q->n, 3, -1, 1);
    static const uint8_t pad[6] = {1, 0, 0, 0, 0, 1};
    float *probs = NULL;
    tfm_tensor *y = tfm_attention(&t, q, q, q, 2, pad, 1, 0.5f, &probs);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_nonnull(probs);
    for (int b = 0; b < 2; b++)
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 3; i++) {
                const float *row = probs + ((b * 2 + h) * 3 + i) * 3;
                double sum = 0;
                for (int j = 0; j < 3; j++) {
                    int hidden = j > i || pad[b * 3 + j];
                    if (hidden) ck_assert_msg(row[j] == 0.0f, "masked weight %g", row[j]);
                    sum += row[j];
                }
                double want = (b == 0 && i == 0) ? 0.0 : 1.0; /* key 0 padded, causal */
                ck_assert_msg(fabs(sum - want) < 1e-6, "row sum %g", sum);
            }
    /* the fully masked row (b 0, query 0) outputs zeros even with dropout */
    for (int c = 0; c < 4; c++) ck_assert(y->data[c] == 0.0f);
    tfm_tape_free(&t);
}
END_TEST

START_TEST(constants_and_identities_record_nothing) {
    tfm_tape t;
    tape_for(&t, NULL);
    float data[6] = {1, -2, 3, -4, 5, -6};
    int64_t s[2] = {2, 3};
    tfm_tensor *c = tfm_tape_constant(&t, data, 2, s);
    tfm_tensor *y = tfm_relu(&t, tfm_scale(&t, c, 2.0f));
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_null(y->grad);
    ck_assert_int_eq(t.n_nodes, 0);
    float want[6] = {2, 0, 6, 0, 10, 0};
    ck_assert_allclose("relu(2 c)", y->data, want, 6, 0, 0);
    /* dropout in eval mode or with p = 0 is the input itself */
    tfm_tensor *x = tfm_tape_tensor(&t, 2, s, 1);
    t.training = 0;
    ck_assert_ptr_eq(tfm_dropout(&t, x, 0.5f), x);
    t.training = 1;
    ck_assert_ptr_eq(tfm_dropout(&t, x, 0.0f), x);
    ck_assert_int_eq(t.n_nodes, 0);
    ck_assert_int_eq(t.rng_counter, 0);
    tfm_tape_free(&t);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops");
    TCase *gc = tcase_create("gradcheck");
    tcase_set_timeout(gc, 60);
    tcase_add_test(gc, grad_matmul_all_variants);
    tcase_add_test(gc, grad_linear);
    tcase_add_test(gc, grad_elementwise);
    tcase_add_test(gc, grad_relu_skips_kink);
    tcase_add_test(gc, grad_softmax_layernorm);
    tcase_add_test(gc, grad_embedding_pad_row_gets_nothing);
    tcase_add_test(gc, grad_dropout_fixed_key);
    tcase_add_test(gc, grad_heads_and_reductions);
    tcase_add_test(gc, grad_cross_entropy);
    tcase_add_test(gc, grad_attention);
    tcase_add_test(gc, grad_with_constant_inputs);
    tcase_add_test(gc, grad_aliased_inputs);
    suite_add_tcase(s, gc);
    TCase *fused = tcase_create("fused");
    tcase_set_timeout(fused, 60);
    tcase_add_test(fused, attention_matches_composition);
    suite_add_tcase(s, fused);
    TCase *edge = tcase_create("edge");
    tcase_set_timeout(edge, 60);
    tcase_add_test(edge, cross_entropy_all_ignored);
    tcase_add_test(edge, attention_probs_out);
    tcase_add_test(edge, constants_and_identities_record_nothing);
    suite_add_tcase(s, edge);
    TCase *fxt = tcase_create("pytorch");
    tcase_set_timeout(fxt, 60);
    tcase_add_loop_test(fxt, fixture_op, 0, TFM_OP_COUNT);
    suite_add_tcase(s, fxt);
    return tfm_test_main(s);
}
