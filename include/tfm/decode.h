/* tfm/decode.h: batched beam search with the decoder's key/value cache.
 * Greedy decoding is tfm_greedy_decode in nn.h; beam 1 gives the same tokens. */
#ifndef TFM_DECODE_H
#define TFM_DECODE_H

#include "tfm/nn.h"

/* For each of the B sources keeps `beam` hypotheses; scores are sums of
 * log-probabilities; a finished hypothesis (ending in </s>) is ranked by
 * score / lp(len), lp = ((5 + len) / 6)^alpha (GNMT; len counts </s>). A
 * source is done when `beam` hypotheses have finished. pad and <s> are never
 * generated. out (B, max_out) receives the best hypothesis' tokens up to and
 * including </s>, then pad; lens (B) the count before </s>. */
int tfm_beam_decode(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                    int64_t B, int64_t S, int64_t beam, float alpha, int64_t max_out, int32_t *out,
                    int64_t *lens);

#endif
