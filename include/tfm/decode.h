/* tfm/decode.h: greedy and beam search with the decoder's key/value cache.
 *
 * Both take a batch of B sources (src (B, S) token ids, src_pad (B, S)
 * nonzero = padding), encode each source once, and decode all of the batch's
 * hypotheses together, one decoder step for every live row at a time:
 * greedy has one row per unfinished source, beam search up to `beam` rows
 * per unfinished source. A source whose search is over leaves the batch, and
 * the rows' cached keys and values are shared, not copied, when hypotheses
 * are reordered (tfm_kv_cache_select in nn.h). Nothing is allocated per step;
 * the cache is allocated once per call and everything else comes from the
 * tape's arena, which is left as it was found.
 *
 * Each source's result depends only on that source: the same tokens come
 * out whatever else is in the batch, in any order, for any thread count.
 *
 * Output (both): out (B, max_out) receives, per source, the tokens after
 * <s> up to and including </s>, then pad; rows are max_out apart. lens (B)
 * gets the count before </s>, or the number of steps run (max_out, or
 * max_len - 1 when the model's positions are fewer) when no </s> came. pad
 * and <s> are never generated.
 *
 * Greedy decoding is tfm_greedy_decode in nn.h; beam 1 gives the same
 * tokens. */
#ifndef TFM_DECODE_H
#define TFM_DECODE_H

#include "tfm/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* For each of the B sources keeps `beam` hypotheses; scores are sums of
 * log-probabilities (log-softmax over the vocabulary, pad and <s> excluded);
 * each step, per source, the 2 * beam best extensions of its live hypotheses
 * (ties: earlier hypothesis, then lower id) are taken in order: one ending in
 * </s> finishes (until `beam` have finished) and is ranked by
 * score / lp(len), lp = ((5 + len) / 6)^alpha (GNMT; len counts </s>); the
 * others become the next live hypotheses, up to `beam`. A source is done
 * when `beam` hypotheses have finished; out gets its best finished one, or,
 * if none finished within max_out steps, its best live one. (A source also
 * leaves the batch as soon as no live hypothesis can finish above its best
 * finished one, which cannot change the output: scores only fall, and
 * lp(len) is bounded by its value at max_out.) */
int tfm_beam_decode(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                    int64_t B, int64_t S, int64_t beam, float alpha, int64_t max_out, int32_t *out,
                    int64_t *lens);

/* The most models an ensemble decodes with. */
#define TFM_ENSEMBLE_MAX 64
/* Bounds of beam search's arguments, checked with an error (so that every
 * size computed from them fits int64_t): beam 1..TFM_MAX_BEAM, B sources
 * 1..TFM_MAX_DECODE_BATCH, alpha finite. */
#define TFM_MAX_BEAM 1024
#define TFM_MAX_DECODE_BATCH (INT64_C(1) << 24)

/* n-best lists: for each source the best n_best (1..beam) hypotheses, best
 * first, ranked as the 1-best is: finished ones by score / lp(len) (equal
 * ones in the order they finished), so entry 0 is what `out` gets. A source
 * with no finished hypothesis lists its live ones by log-probability (score
 * / lp(T), T the steps run), as `out` then gets its best live one. A source
 * can have fewer than n_best entries (fewer finished within the steps): count
 * says how many; the rest have len -1 and scores -inf. Asking for the lists
 * keeps a source in the search until no live hypothesis can enter them (its
 * n_best-th finished one bounds the early exit, not its best), which cannot
 * change `out`. */
typedef struct {
    int64_t n_best;  /* entries per source, 1..beam */
    int32_t *tokens; /* (B, n_best, max_out): each like a row of out */
    int64_t *lens;   /* (B, n_best): like lens */
    float *scores;   /* (B, n_best): the length-normalized log-probability that ranked them */
    float *logprobs; /* (B, n_best): the sum of the token log-probabilities */
    int64_t *count;  /* (B): entries filled */
} tfm_nbest;

/* Beam search over an ensemble of n_models (1..TFM_ENSEMBLE_MAX) models
 * that share the vocabulary (the same number of ids, an error naming the
 * model otherwise; their sizes may differ): each encodes the sources and
 * keeps its own key/value cache, reordered with the others, and hypotheses
 * are extended by the mean of the models' log-probabilities (log-softmax
 * over </s>.. as above, averaged in double and rounded once, so copies of one
 * model decode exactly as that model alone). Steps are limited by the
 * smallest max_len. beam 1 is greedy decoding of the ensemble. nb (NULL:
 * none) receives the n-best lists; n_best outside 1..beam is an error. One
 * model without nb is tfm_beam_decode. */
int tfm_beam_decode_ensemble(tfm_model *const *models, int64_t n_models, tfm_tape *t,
                             const int32_t *src, const uint8_t *src_pad, int64_t B, int64_t S,
                             int64_t beam, float alpha, int64_t max_out, int32_t *out,
                             int64_t *lens, tfm_nbest *nb);

/* When beam search ends a source. The other entry points use
 * TFM_BEAM_STOP_FINISHED.
 *  - TFM_BEAM_STOP_FINISHED: once `beam` hypotheses have finished. A poor
 *    hypothesis that finishes early takes one of the places, and a better
 *    one still being extended is then never finished.
 *  - TFM_BEAM_STOP_BOUND: once no live hypothesis can finish above the best
 *    finished one (above the n_best-th with n-best lists), or after max_out
 *    steps. Every </s> among a step's candidates (those taken in order until
 *    `beam` live hypotheses are found) finishes a hypothesis, however many
 *    finished before. Up to the step where FINISHED would end a source both
 *    rules search alike, and afterwards BOUND only replaces the result by a
 *    better one, so its best final score is never lower; it runs more steps
 *    (lp(len) is bounded by its value at max_out, a loose bound when alpha
 *    is large). With beam 1 it is not greedy decoding when alpha > 0. */
typedef enum { TFM_BEAM_STOP_FINISHED = 0, TFM_BEAM_STOP_BOUND = 1 } tfm_beam_stop;
/* "finished" / "bound" (NULL for another value); parse: 0 and *out set, or 1
 * (the error set, *out untouched) when name is neither or NULL. */
const char *tfm_beam_stop_name(tfm_beam_stop stop);
int tfm_beam_stop_parse(const char *name, tfm_beam_stop *out);

/* tfm_beam_decode_ensemble with the stopping rule `stop` (an error if it is
 * neither). */
int tfm_beam_decode_stop(tfm_model *const *models, int64_t n_models, tfm_tape *t,
                         const int32_t *src, const uint8_t *src_pad, int64_t B, int64_t S,
                         int64_t beam, float alpha, tfm_beam_stop stop, int64_t max_out,
                         int32_t *out, int64_t *lens, tfm_nbest *nb);

/* Seconds spent per phase of decoding, summed over the calls made while it is
 * installed (for benchmarks and profiles; not thread-safe). */
typedef struct {
    double encoder;      /* tfm_model_encode of the batch's sources */
    double cross_kv;     /* cross-attention keys and values, once per source */
    double decoder;      /* decoder layers, one position for every live row */
    double output;       /* projection to the vocabulary (logits) */
    double log_softmax;  /* beam: log-sum-exp of each row */
    double top_k;        /* beam: best extensions per source; greedy: argmax */
    double bookkeeping;  /* beam: hypotheses, finished ones, next rows */
    double select;       /* next rows' cache indices (reordering, leaving) */
    int64_t steps;       /* decoder steps */
    int64_t row_steps;   /* rows summed over steps */
    int64_t early_stops; /* beam: sources that left by the bound */
} tfm_decode_profile;

/* Installs p (NULL: none); decoding adds to it. tfm_translate_lines decodes
 * one batch at a time while a profile is installed (else several batches at
 * once, one per thread). */
void tfm_decode_set_profile(tfm_decode_profile *p);
/* The profile installed, or NULL. */
tfm_decode_profile *tfm_decode_get_profile(void);

#ifdef __cplusplus
}
#endif

#endif
