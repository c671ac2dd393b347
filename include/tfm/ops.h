/* tfm/ops.h: the tape and the differentiable ops.
 *
 *   tfm_tape tape;
 *   tfm_tape_init(&tape, 256 << 20, 4096);          // arena bytes, max nodes
 *   tfm_tensor *h = tfm_linear(&tape, x, W, b);      // runs now, records a node
 *   tfm_tensor *y = tfm_relu(&tape, h);
 *   tfm_tensor *loss = tfm_mean(&tape, y);
 *   tfm_backward(&tape, loss);                        // W->grad, b->grad filled (+=)
 *   tfm_tape_reset(&tape);                            // next step; no free()
 *
 * Ops run their forward kernel eagerly, take their output from the tape's
 * arena and push a node; tfm_backward seeds d(loss) = 1 and walks the nodes
 * in reverse, each backward kernel accumulating into its inputs' gradients.
 * With tape->no_grad set nothing is recorded (decoding).
 * On error (bad shapes, arena full) an op returns NULL and sets
 * tfm_last_error(); every op accepts NULL inputs and returns NULL, so a model
 * can check once at the end. */
#ifndef TFM_OPS_H
#define TFM_OPS_H

#include "tfm/kernels.h"
#include "tfm/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TFM_OP_MATMUL,
    TFM_OP_LINEAR,
    TFM_OP_ADD,
    TFM_OP_ADD_BIAS,
    TFM_OP_MUL,
    TFM_OP_SCALE,
    TFM_OP_RELU,
    TFM_OP_SOFTMAX,
    TFM_OP_LAYERNORM,
    TFM_OP_EMBEDDING,
    TFM_OP_DROPOUT,
    TFM_OP_SPLIT_HEADS,
    TFM_OP_MERGE_HEADS,
    TFM_OP_SUM,
    TFM_OP_MEAN,
    TFM_OP_XENT,
    TFM_OP_ATTENTION,
    TFM_OP_COUNT
} tfm_op;

typedef struct tfm_node {
    tfm_op op;
    tfm_tensor *out;
    tfm_tensor *in[4];
    int n_in;
    float *saved[2]; /* what backward needs: mean/rstd, attention probs, ... */
    const void *aux; /* ids, targets, masks (owned by the caller, must outlive backward) */
    union {
        float f[4];
    } pf;
    int64_t pi[6];
    uint64_t key;            /* RNG key for dropout */
    const char *label;       /* set by tfm_tape_label: "enc.0.self_attn" for error messages */
    tfm_precision precision; /* the tape's at recording: backward GEMMs use it too */
} tfm_node;

typedef struct tfm_tape {
    tfm_arena arena;
    tfm_node *nodes;
    int64_t n_nodes, cap_nodes;
    int no_grad;   /* record nothing, allocate no gradients */
    int training;  /* dropout active */
    uint64_t seed; /* dropout keys derive from (seed, step, node index) */
    uint64_t step;
    int64_t rng_counter; /* dropout calls this step */
    int check_numerics;  /* check every output (forward and backward) for NaN/Inf */
    const char *label;   /* current label for new nodes */
    /* Arithmetic of the GEMMs in linear, matmul and attention (forward and
     * backward): TFM_FP32 (the default, zero) or TFM_BF16 (inputs rounded to
     * bf16, fp32 accumulation). Everything else, and every tensor, stays
     * fp32. Set it before recording; the step's results depend on it. */
    tfm_precision precision;
    /* Called by tfm_backward after node i's backward (i from n_nodes - 1
     * down to 0, skipped nodes included): every gradient that only nodes
     * >= i write is now final. The trainer uses it to hand finished
     * gradients to the reduction while backward goes on (tfm/train.h,
     * grad_ready). A non-zero return stops backward (error set). NULL: none. */
    int (*after_node)(void *ctx, int64_t i);
    void *after_node_ctx;
} tfm_tape;

typedef struct {
    const char *name;
    void (*backward)(tfm_tape *t, tfm_node *n);
    /* 1: backward copes with stale input gradients itself (GEMMs with
     * tfm_grad_beta); 0: tfm_backward zeroes stale ones before calling it */
    int handles_stale;
} tfm_op_def;
extern const tfm_op_def TFM_OPS[TFM_OP_COUNT];

int tfm_tape_init(tfm_tape *t, size_t arena_bytes, int64_t max_nodes);
void tfm_tape_free(tfm_tape *t);
void tfm_tape_reset(tfm_tape *t); /* arena and nodes back to empty; allocates nothing */
void tfm_tape_label(tfm_tape *t, const char *label);
/* Scalar loss; returns 0, or non-zero with tfm_last_error() (non-scalar loss,
 * or with check_numerics the first op whose gradient is not finite). */
int tfm_backward(tfm_tape *t, tfm_tensor *loss);

/* A tensor from the tape's arena (gradient allocated too when needs_grad and
 * the tape records). Its gradient starts stale (TFM_GRAD_STALE: the buffer is
 * uninitialised and stands for zero); tfm_backward leaves every gradient of a
 * tensor an op on the tape reads materialised, and tfm_grad_fresh(x)
 * materialises any other. */
tfm_tensor *tfm_tape_tensor(tfm_tape *t, int ndim, const int64_t *shape, int needs_grad);
/* Wrap caller-owned memory as a constant input (no gradient). */
tfm_tensor *tfm_tape_constant(tfm_tape *t, float *data, int ndim, const int64_t *shape);

/* ---- ops ---------------------------------------------------------------------
 * matmul: a (..., M, K) x b (..., K, N) -> (..., M, N), batched over leading
 * dims (equal in both, or b 2-D and shared). trans_a / trans_b transpose the
 * last two dims of a / b. */
tfm_tensor *tfm_matmul(tfm_tape *t, tfm_tensor *a, tfm_tensor *b, int trans_a, int trans_b);
/* linear: x (..., in) W (out, in) b (out) or NULL -> (..., out) = x W^T + b */
tfm_tensor *tfm_linear(tfm_tape *t, tfm_tensor *x, tfm_tensor *w, tfm_tensor *b);
/* linear's forward arithmetic (the one GEMM call, in the tape's precision)
 * into memory the caller owns, out (rows, out): no tensor, nothing recorded,
 * no checks (the caller has them). For no-grad decoding, e.g. projections
 * written straight into a KV cache. */
void tfm_linear_into(const tfm_tape *t, const tfm_tensor *x, const tfm_tensor *w,
                     const tfm_tensor *b, float *out);
tfm_tensor *tfm_add(tfm_tape *t, tfm_tensor *a, tfm_tensor *b);      /* same shape (residual) */
tfm_tensor *tfm_add_bias(tfm_tape *t, tfm_tensor *x, tfm_tensor *b); /* b: (last dim) */
tfm_tensor *tfm_mul(tfm_tape *t, tfm_tensor *a, tfm_tensor *b);      /* same shape */
tfm_tensor *tfm_scale(tfm_tape *t, tfm_tensor *x, float alpha);
tfm_tensor *tfm_relu(tfm_tape *t, tfm_tensor *x);
tfm_tensor *tfm_softmax(tfm_tape *t, tfm_tensor *x); /* over the last dim */
tfm_tensor *tfm_layernorm(tfm_tape *t, tfm_tensor *x, tfm_tensor *gamma, tfm_tensor *beta,
                          float eps);
/* table (V, D), ids (n) -> (n, D) * scale; reshaped to out_ndim/out_shape
 * (e.g. (B, T, D)); rows with id == pad_id get no gradient (pad_id < 0: none).
 * Ids outside [0, V) are an error. */
tfm_tensor *tfm_embedding(tfm_tape *t, tfm_tensor *table, const int32_t *ids, int out_ndim,
                          const int64_t *out_shape, float scale, int32_t pad_id);
/* Identity when !t->training or p == 0. */
tfm_tensor *tfm_dropout(tfm_tape *t, tfm_tensor *x, float p);
/* (B, T, H*dh) <-> (B, H, T, dh) */
tfm_tensor *tfm_split_heads(tfm_tape *t, tfm_tensor *x, int64_t n_heads);
tfm_tensor *tfm_merge_heads(tfm_tape *t, tfm_tensor *x);
tfm_tensor *tfm_sum(tfm_tape *t, tfm_tensor *x);  /* scalar (shape (1)) */
tfm_tensor *tfm_mean(tfm_tape *t, tfm_tensor *x); /* scalar */
/* logits (..., V), targets (rows): mean over non-ignored rows of the
 * label-smoothed CE (PyTorch convention, see kernels.h). Scalar output; the
 * count of non-ignored rows is stored in out_count when non-NULL. */
tfm_tensor *tfm_cross_entropy(tfm_tape *t, tfm_tensor *logits, const int32_t *targets,
                              int32_t ignore_index, float smoothing, int64_t *out_count);
/* Fused multi-head attention: q (B, Tq, D), k and v (B, Tk, D); key_pad
 * (B, Tk) nonzero = padding, or NULL; causal mask when causal != 0. Dropout
 * on the probabilities with dropout_p when training. -> (B, Tq, D).
 * If probs_out is non-NULL it receives the (B, H, Tq, Tk) weights. */
tfm_tensor *tfm_attention(tfm_tape *t, tfm_tensor *q, tfm_tensor *k, tfm_tensor *v, int64_t n_heads,
                          const uint8_t *key_pad, int causal, float dropout_p, float **probs_out);

/* Check a tensor for NaN/Inf; returns 0 if finite, else sets an error naming
 * the op and label. */
int tfm_check_finite(const tfm_tensor *x, const char *what, const char *label);

#ifdef __cplusplus
}
#endif

#endif
