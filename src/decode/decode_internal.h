/* Private to src/decode/: the profile being filled, if any; the length
 * check both searches share. */
#ifndef TFM_DECODE_INTERNAL_H
#define TFM_DECODE_INTERNAL_H

#include "tfm/decode.h"

tfm_decode_profile *tfm_decode_profile_active(void);
/* 0 when S (source length) and max_out are at least 1, else an error naming
 * who. */
int tfm_decode_check_lengths(const char *who, int64_t S, int64_t max_out);

/* Beam search's per-row ranking (beam.c; tested alone in test_beam). */
typedef struct {
    float score;  /* sum of log-probabilities */
    int64_t from; /* parent row */
    int32_t token;
} tfm_beam_candidate;
/* The max of row[v] over v >= </s>, and in *nth_low a lower bound of the
 * n-th largest of those values (-inf when there are fewer than n). */
float tfm_beam_row_max(const float *row, int64_t V, int64_t n, float *nth_low);
/* The stable top n (by score + (row[v] - lse), ties in id order) of row r's
 * extensions v >= </s>, written to list sorted by id; returns their count. */
int64_t tfm_beam_row_top(const float *row, int64_t V, float score, float lse, float nth_low,
                         int64_t r, int64_t n, tfm_beam_candidate *list);

#endif
