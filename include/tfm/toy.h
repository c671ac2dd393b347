/* tfm/toy.h: the copy and reverse toy tasks, generated on the fly.
 *
 * Ids: 0 pad, 1 <s>, 2 </s>, symbols 3 .. vocab-1. A sequence of length L
 * in [min_len, max_len]; src = x + </s>, tgt_in = <s> + y, tgt_out = y + </s>
 * where y = x (copy) or reversed x (reverse).
 *
 * annotated = 1 reproduces the Annotated Transformer's copy task instead
 * (the benchmark setting): symbols 1 .. vocab-1, fixed length max_len, the
 * first token is 1 and doubles as the start symbol, src = x,
 * tgt_in = x[:-1], tgt_out = x[1:], no </s>. */
#ifndef TFM_TOY_H
#define TFM_TOY_H

#include "tfm/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TFM_TOY_COPY, TFM_TOY_REVERSE } tfm_toy_task;

typedef struct {
    tfm_toy_task task;
    int64_t vocab, min_len, max_len;
    int annotated;
} tfm_toy_config;

/* Buffers for one batch of B sequences, sized for the longest. */
typedef struct {
    int64_t B, S, T;
    int32_t *src, *tgt_in, *tgt_out; /* (B, S), (B, T), (B, T) */
    uint8_t *src_pad, *tgt_pad;
    int64_t n_tokens; /* non-pad targets */
} tfm_toy_batch;

int tfm_toy_config_check(const tfm_toy_config *c);
int tfm_toy_batch_alloc(tfm_toy_batch *b, const tfm_toy_config *c, int64_t B);
void tfm_toy_batch_free(tfm_toy_batch *b);
/* Fills batch number `index` of the stream `seed`: the content depends only
 * on (seed, index), so a resumed run sees the same data. */
void tfm_toy_batch_fill(tfm_toy_batch *b, const tfm_toy_config *c, uint64_t seed, int64_t index);
/* The expected output symbols (no specials) of row r: copies into out and
 * returns the count. */
int64_t tfm_toy_expected(const tfm_toy_batch *b, const tfm_toy_config *c, int64_t r, int32_t *out);
const char *tfm_toy_task_name(tfm_toy_task t);

#ifdef __cplusplus
}
#endif

#endif
