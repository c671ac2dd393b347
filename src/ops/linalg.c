/* matmul and linear. */
#include <string.h>

#include "ops_internal.h"

/* a (..., M, K) or (..., K, M) if trans_a; b (..., K, N) or (..., N, K) if
 * trans_b, or 2-D and shared by every batch. */
tfm_tensor *tfm_matmul(tfm_tape *t, tfm_tensor *a, tfm_tensor *b, int trans_a, int trans_b) {
    if (!a || !b) return NULL;
    char sa[64], sb[64];
    if (a->ndim < 2 || b->ndim < 2)
        return tfm_op_fail(TFM_OP_MATMUL, "inputs must have at least 2 dims, got %s and %s",
                           tfm_shape_str(a, sa, 64), tfm_shape_str(b, sb, 64));
    int64_t M = trans_a ? a->shape[a->ndim - 1] : a->shape[a->ndim - 2];
    int64_t Ka = trans_a ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
    int64_t Kb = trans_b ? b->shape[b->ndim - 1] : b->shape[b->ndim - 2];
    int64_t N = trans_b ? b->shape[b->ndim - 2] : b->shape[b->ndim - 1];
    int64_t batch = a->n / (M * Ka > 0 ? M * Ka : 1);
    int shared_b = b->ndim == 2;
    if (Ka != Kb ||
        (!shared_b && (b->ndim != a->ndim || b->n / (Kb * N > 0 ? Kb * N : 1) != batch)))
        return tfm_op_fail(TFM_OP_MATMUL, "shapes %s%s and %s%s do not multiply",
                           tfm_shape_str(a, sa, 64), trans_a ? "^T" : "", tfm_shape_str(b, sb, 64),
                           trans_b ? "^T" : "");
    if (!shared_b)
        for (int i = 0; i < a->ndim - 2; i++)
            if (a->shape[i] != b->shape[i])
                return tfm_op_fail(TFM_OP_MATMUL, "batch dims of %s and %s differ",
                                   tfm_shape_str(a, sa, 64), tfm_shape_str(b, sb, 64));
    int64_t shape[TFM_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[a->ndim - 2] = M;
    shape[a->ndim - 1] = N;
    tfm_tensor *ins[2] = {a, b};
    tfm_tensor *y = tfm_op_output(t, a->ndim, shape, ins, 2);
    if (!y) return NULL;
    int64_t lda = trans_a ? M : Ka, ldb = trans_b ? Ka : N;
    if (shared_b && !trans_a)
        tfm_gemm_prec(t->precision, 0, trans_b, batch * M, N, Ka, 1.0f, a->data, lda, b->data, ldb,
                      0.0f, y->data, N);
    else
        tfm_gemm_batched_prec(t->precision, trans_a, trans_b, batch, M, N, Ka, 1.0f, a->data, lda,
                              M * Ka, b->data, ldb, shared_b ? 0 : Ka * N, 0.0f, y->data, N, M * N);
    int failed;
    tfm_node *n = tfm_op_record(t, TFM_OP_MATMUL, y, ins, 2, &failed);
    if (failed) return NULL;
    if (n) {
        n->pi[0] = trans_a;
        n->pi[1] = trans_b;
        n->pi[2] = batch;
        n->pi[3] = M;
        n->pi[4] = N;
        n->pi[5] = Ka;
    }
    return tfm_op_done(t, TFM_OP_MATMUL, y);
}

/* C = op(A) op(B):
 *   dA += dC op(B)^T   (or, when A is stored transposed, dA^T += op(B) dC^T)
 *   dB += op(A)^T dC   (or, when B is stored transposed, dB^T += dC^T op(A)) */
TFM_BACKWARD(matmul) {
    (void)t;
    const tfm_precision prec = n->precision;
    tfm_tensor *a = n->in[0], *b = n->in[1], *y = n->out;
    int ta = (int)n->pi[0], tb = (int)n->pi[1];
    int64_t batch = n->pi[2], M = n->pi[3], N = n->pi[4], K = n->pi[5];
    int shared_b = b->ndim == 2;
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    int64_t sa = M * K, sb = shared_b ? 0 : K * N, sc = M * N;
    /* each slice of a stale gradient is written once here: beta decided per tensor */
    if (a->grad) {
        float beta = tfm_grad_beta(a);
        if (!ta)
            tfm_gemm_batched_prec(prec, 0, !tb, batch, M, K, N, 1.0f, y->grad, N, sc, b->data, ldb,
                                  sb, beta, a->grad, lda, sa);
        else
            tfm_gemm_batched_prec(prec, tb, 1, batch, K, M, N, 1.0f, b->data, ldb, sb, y->grad, N,
                                  sc, beta, a->grad, lda, sa);
    }
    if (b->grad) {
        if (shared_b && ta) tfm_grad_fresh(b); /* summed over the loop of GEMMs below */
        float beta = tfm_grad_beta(b);
        if (shared_b && !ta) {
            /* fold the batch into the rows: one GEMM over batch*M rows */
            if (!tb)
                tfm_gemm_prec(prec, 1, 0, K, N, batch * M, 1.0f, a->data, K, y->grad, N, beta,
                              b->grad, N);
            else
                tfm_gemm_prec(prec, 1, 0, N, K, batch * M, 1.0f, y->grad, N, a->data, K, beta,
                              b->grad, K);
        } else {
            for (int64_t i = 0; i < batch; i++) {
                const float *ai = a->data + i * sa, *dci = y->grad + i * sc;
                float *dbi = b->grad + i * sb;
                if (!tb)
                    tfm_gemm_prec(prec, !ta, 0, K, N, M, 1.0f, ai, lda, dci, N, beta, dbi, N);
                else
                    tfm_gemm_prec(prec, 1, ta, N, K, M, 1.0f, dci, N, ai, lda, beta, dbi, K);
            }
        }
    }
}

/* y = x W^T + b   x (..., in), W (out, in), b (out); tfm_linear_into is its
 * forward, the one GEMM call */
void tfm_linear_into(const tfm_tape *t, const tfm_tensor *x, const tfm_tensor *w,
                     const tfm_tensor *b, float *out) {
    int64_t in = w->shape[1], n_out = w->shape[0], rows = tfm_rows(x);
    if (t->precision == TFM_BF16 && w->bf16) { /* packed once: the same bits */
        tfm_gemm_bf16_weight(rows, x->data, in, w->bf16, b ? b->data : NULL, out, n_out);
        return;
    }
    if (t->precision == TFM_FP32 && w->f32) { /* packed once: the same bits */
        tfm_gemm_f32_weight(rows, x->data, in, w->f32, b ? b->data : NULL, out, n_out);
        return;
    }
    if (b)
        tfm_gemm_bias_prec(t->precision, 0, 1, rows, n_out, in, 1.0f, x->data, in, w->data, in,
                           b->data, out, n_out);
    else
        tfm_gemm_prec(t->precision, 0, 1, rows, n_out, in, 1.0f, x->data, in, w->data, in, 0.0f,
                      out, n_out);
}

tfm_tensor *tfm_linear(tfm_tape *t, tfm_tensor *x, tfm_tensor *w, tfm_tensor *b) {
    if (!x || !w) return NULL;
    char sx[64], sw[64];
    int64_t in = tfm_last(x), out = w->shape[0];
    if (w->ndim != 2 || w->shape[1] != in || (b && (b->n != out)))
        return tfm_op_fail(TFM_OP_LINEAR, "x %s, weight %s%s do not fit (weight is (out, in))",
                           tfm_shape_str(x, sx, 64), tfm_shape_str(w, sw, 64),
                           b ? " and bias" : "");
    int64_t shape[TFM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = out;
    tfm_tensor *ins[3] = {x, w, b};
    tfm_tensor *y = tfm_op_output(t, x->ndim, shape, ins, b ? 3 : 2);
    if (!y) return NULL;
    tfm_linear_into(t, x, w, b, y->data);
    int failed;
    tfm_op_record(t, TFM_OP_LINEAR, y, ins, b ? 3 : 2, &failed);
    if (failed) return NULL;
    return tfm_op_done(t, TFM_OP_LINEAR, y);
}

/* dx += dy W;  dW += dy^T x;  db += sum_rows dy */
TFM_BACKWARD(linear) {
    (void)t;
    tfm_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL, *y = n->out;
    int64_t in = w->shape[1], out = w->shape[0], rows = tfm_rows(x);
    if (x->grad)
        tfm_gemm_prec(n->precision, 0, 0, rows, in, out, 1.0f, y->grad, out, w->data, in,
                      tfm_grad_beta(x), x->grad, in);
    if (w->grad)
        tfm_gemm_prec(n->precision, 1, 0, out, in, rows, 1.0f, y->grad, out, x->data, in,
                      tfm_grad_beta(w), w->grad, in);
    if (b && b->grad) {
        tfm_grad_fresh(b);
        tfm_k_colsum_acc(b->grad, y->grad, rows, out);
    }
}
