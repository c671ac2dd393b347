/* Shared by the op files and the tape: output creation, node recording,
 * and the backward functions the op table points to. */
#ifndef TFM_OPS_INTERNAL_H
#define TFM_OPS_INTERNAL_H

#include "tfm/ops.h"

/* Output tensor for an op over inputs ins[0..n_in): gets a gradient buffer
 * (zeroed) when the tape records and some input has a gradient. NULL when the
 * arena is full or an input is NULL. */
tfm_tensor *tfm_op_output(tfm_tape *t, int ndim, const int64_t *shape, tfm_tensor *const *ins,
                          int n_in);
/* Records a node when the output has a gradient; returns it (or NULL when
 * nothing is recorded). Sets an error and returns NULL on node overflow via
 * *failed. */
tfm_node *tfm_op_record(tfm_tape *t, tfm_op op, tfm_tensor *out, tfm_tensor *const *ins, int n_in,
                        int *failed);
/* After a forward: with check_numerics, verify out; returns out or NULL. */
tfm_tensor *tfm_op_done(tfm_tape *t, tfm_op op, tfm_tensor *out);
/* Error helper: sets "op: message" and returns NULL. */
tfm_tensor *tfm_op_fail(tfm_op op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Rows of a tensor viewed as (rows, last dim). */
static inline int64_t tfm_rows(const tfm_tensor *x) { return x->n / x->shape[x->ndim - 1]; }
static inline int64_t tfm_last(const tfm_tensor *x) { return x->shape[x->ndim - 1]; }

#define TFM_BACKWARD(name) void tfm_backward_##name(tfm_tape *t, tfm_node *n)
TFM_BACKWARD(matmul);
TFM_BACKWARD(linear);
TFM_BACKWARD(add);
TFM_BACKWARD(add_bias);
TFM_BACKWARD(mul);
TFM_BACKWARD(scale);
TFM_BACKWARD(relu);
TFM_BACKWARD(softmax);
TFM_BACKWARD(layernorm);
TFM_BACKWARD(embedding);
TFM_BACKWARD(dropout);
TFM_BACKWARD(split_heads);
TFM_BACKWARD(merge_heads);
TFM_BACKWARD(sum);
TFM_BACKWARD(mean);
TFM_BACKWARD(xent);
TFM_BACKWARD(attention);

#endif
