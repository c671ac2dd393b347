/* Batched beam search. The decoder batch holds every live hypothesis of every
 * unfinished source, grouped by source in source order; a source starts with
 * one row (<s>) and leaves the batch when `beam` hypotheses have finished
 * (TFM_BEAM_STOP_BOUND: when no live one can finish above the best).
 * Each step, per row (in parallel): the log-sum-exp of the logits and the
 * row's 2K best extensions; then per source, those rows' lists merged into
 * the source's 2K best, which finish hypotheses or become the next rows. The
 * cache follows through tfm_kv_cache_select (indices, not keys). */
#include <math.h>
#include <string.h>

#include "../util/par.h"
#include "decode_internal.h"
#include "tfm/kernels.h"

static tfm_decode_profile *g_profile;

void tfm_decode_set_profile(tfm_decode_profile *p) { g_profile = p; }
tfm_decode_profile *tfm_decode_profile_active(void) { return g_profile; }
tfm_decode_profile *tfm_decode_get_profile(void) { return g_profile; }

const char *tfm_beam_stop_name(tfm_beam_stop stop) {
    return stop == TFM_BEAM_STOP_FINISHED ? "finished"
           : stop == TFM_BEAM_STOP_BOUND  ? "bound"
                                          : NULL;
}

int tfm_beam_stop_parse(const char *name, tfm_beam_stop *out) {
    if (!name) return tfm_set_error("beam stop rule: none given (finished or bound)"), 1;
    for (int s = TFM_BEAM_STOP_FINISHED; s <= TFM_BEAM_STOP_BOUND; s++)
        if (!strcmp(name, tfm_beam_stop_name((tfm_beam_stop)s))) {
            *out = (tfm_beam_stop)s;
            return 0;
        }
    return tfm_set_error("beam stop rule '%s': not finished or bound", name), 1;
}

typedef tfm_beam_candidate candidate;

static double length_penalty(int64_t len, float alpha) {
    return pow((5.0 + (double)len) / 6.0, alpha);
}

/* An upper bound of lp(len) for every length len in [len_lo, len_hi] that a
 * later finished hypothesis can have: pow is monotone in the base, so the
 * larger end, widened by far more than pow's error (under an ulp). */
static double lp_bound(int64_t len_lo, int64_t len_hi, float alpha) {
    double lo = length_penalty(len_lo, alpha), hi = length_penalty(len_hi, alpha);
    return (lo > hi ? lo : hi) * (1.0 + 1e-12);
}

/* Whether a live hypothesis with one of these scores could still finish
 * above best (the rule that replaces a source's output is final > best).
 * Exact, not a heuristic: each step adds row[v] - lse <= 0 to a score (lse
 * >= the row's max, in float arithmetic too, as the sum of exp includes
 * exp(0) = 1), so a later score s' <= s <= 0 and its final value
 * s' / lp(len) <= s / bound in double arithmetic (rounding is monotone).
 * When this says no, the source's output cannot change any more and its rows
 * leave the batch without waiting for `beam` hypotheses to finish. NaN
 * scores count as able to (conservative). */
static int can_beat(const float *scores, int64_t n, double best, double bound) {
    for (int64_t i = 0; i < n; i++)
        if (!((double)scores[i] / bound <= best)) return 1;
    return 0;
}

/* Keeps the n best of a stream of candidates in `best` (descending; a
 * candidate equal to one already kept goes after it: the stable top n). */
static void keep_best(candidate *best, int64_t *count, int64_t n, candidate c) {
    if (*count == n && c.score <= best[n - 1].score) return;
    int64_t i = *count < n ? (*count)++ : n - 1;
    while (i > 0 && best[i - 1].score < c.score) {
        best[i] = best[i - 1];
        i--;
    }
    best[i] = c;
}

/* The max of x[0..len) and in *nth_low the n-th largest (n <= L) of L lane
 * maxima: x[i] goes to lane i mod L, each lane keeping its running max
 * element-wise so that it vectorizes. Those maxima are up to L of the
 * values at distinct positions (-inf for a lane that saw none, or only
 * NaN), so *nth_low is at most the n-th largest of x. Any order of the
 * comparisons gives the same values (up to the sign of a zero, which no
 * caller sees: it only enters differences and comparisons); NaN is passed
 * over. L is a constant at each call, so each gets its own loops. */
static inline float lane_maxima(const float *x, int64_t len, int64_t n, int L, float *nth_low) {
    float acc[64], top[64]; /* lane maxima; the n largest of them, descending */
    for (int j = 0; j < L; j++) acc[j] = -INFINITY;
    int64_t i = 0;
    for (; i + L <= len; i += L)
        for (int j = 0; j < L; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
    for (int j = 0; i < len; i++, j++) acc[j] = x[i] > acc[j] ? x[i] : acc[j];
    float mx = -INFINITY;
    int64_t kept = 0;
    for (int j = 0; j < L; j++) {
        const float a = acc[j];
        mx = a > mx ? a : mx;
        if (kept == n && !(a > top[n - 1])) continue;
        int64_t k = kept < n ? kept++ : n - 1;
        for (; k > 0 && top[k - 1] < a; k--) top[k] = top[k - 1];
        top[k] = a;
    }
    *nth_low = top[n - 1];
    return mx;
}

/* The max of row[v] over v >= </s> and, in *nth_low, a lower bound of the
 * row's n-th largest value there: lane_maxima with 16 lanes for short rows
 * (where picking among 64 maxima would cost more than the tighter bound
 * saves) and 64 for long ones (1024 ids >= </s> and more) or n > 16.
 * For n > 64, the ids split into n groups instead and the bound is the
 * smallest group max. */
float tfm_beam_row_max(const float *row, int64_t V, int64_t n, float *nth_low) {
    const float *x = row + TFM_EOS_ID;
    const int64_t len = V - TFM_EOS_ID;
    if (n <= 16 && len < 1024) return lane_maxima(x, len, n, 16, nth_low);
    if (n <= 64) return lane_maxima(x, len, n, 64, nth_low);
    float mx = -INFINITY;
    const int64_t size = len / n;
    float low = size > 0 ? INFINITY : -INFINITY;
    int64_t v = 0;
    for (int64_t g = 0; size > 0 && g < n; g++) {
        float gm = -INFINITY;
        for (int64_t end = v + size; v < end; v++) gm = x[v] > gm ? x[v] : gm;
        low = gm < low ? gm : low;
        mx = gm > mx ? gm : mx;
    }
    for (; v < len; v++) mx = x[v] > mx ? x[v] : mx;
    *nth_low = low;
    return mx;
}

/* log sum_v exp(row[v]) over v >= </s>, given their max: the exponentials
 * and their sum in double, rounded once (tfm_k_log_sum_exp). */
static float row_log_sum_exp(const float *row, int64_t V, float mx) {
    return tfm_k_log_sum_exp(row + TFM_EOS_ID, V - TFM_EOS_ID, mx);
}

/* The stable top n of row r's extensions score + (row[v] - lse), v >= </s>,
 * in id order, then sorted by id (the order the source's merge reads them
 * in). Whatever ranks in the source's top n ranks in its row's top n.
 * nth_low (row_max) bounds the n-th largest row value from below, and the
 * extension's score is a nondecreasing function of row[v] in float
 * arithmetic too, so nothing scoring below th0 = score + (nth_low - lse) can
 * be among the n best: those ids are passed over without being ranked. (A
 * NaN anywhere makes th0 NaN; then every candidate is ranked as before.) */
int64_t tfm_beam_row_top(const float *row, int64_t V, float score, float lse, float nth_low,
                         int64_t r, int64_t n, candidate *list) {
    int64_t count = 0;
    float th0 = score + (nth_low - lse);
    int all = th0 != th0;
    enum { W = 16 };
    for (int64_t v0 = TFM_EOS_ID; v0 < V; v0 += W) {
        int64_t w = V - v0 < W ? V - v0 : W;
        float s[W];
        for (int64_t i = 0; i < w; i++) s[i] = score + (row[v0 + i] - lse);
        int any = 0;
        if (count == n) { /* most chunks have nothing above the n-th best */
            float th = list[n - 1].score;
            for (int64_t i = 0; i < w; i++) any |= s[i] > th;
        } else {
            for (int64_t i = 0; i < w; i++) any |= s[i] >= th0;
            any |= all;
        }
        if (!any) continue;
        for (int64_t i = 0; i < w; i++)
            if (all || s[i] >= th0)
                keep_best(list, &count, n, (candidate){s[i], r, (int32_t)(v0 + i)});
    }
    for (int64_t i = 1; i < count; i++) /* by id: insertion sort of <= 2K */
        for (int64_t j = i; j > 0 && list[j - 1].token > list[j].token; j--) {
            candidate c = list[j];
            list[j] = list[j - 1];
            list[j - 1] = c;
        }
    return count;
}

/* Inserts a finished hypothesis (tokens hyp[0..len), then </s>) into source
 * b's n-best list, ranked by final (descending; equal to one already listed:
 * after it, the rule of the 1-best). fin (B, N) holds the finals in double,
 * the order they were ranked in. */
static void nbest_insert(tfm_nbest *nb, double *fin, int64_t b, int64_t stride, const int32_t *hyp,
                         int64_t len, double final, float logprob) {
    const int64_t N = nb->n_best;
    double *f = fin + b * N;
    int64_t *count = &nb->count[b];
    if (*count == N && !(final > f[N - 1])) return;
    int64_t i = *count < N ? (*count)++ : N - 1;
    for (; i > 0 && f[i - 1] < final; i--) {
        int64_t e = b * N + i;
        f[i] = f[i - 1];
        memcpy(nb->tokens + e * stride, nb->tokens + (e - 1) * stride,
               (size_t)stride * sizeof(int32_t));
        nb->lens[e] = nb->lens[e - 1];
        nb->scores[e] = nb->scores[e - 1];
        nb->logprobs[e] = nb->logprobs[e - 1];
    }
    int64_t e = b * N + i;
    int32_t *dst = nb->tokens + e * stride;
    memcpy(dst, hyp, (size_t)len * sizeof(int32_t));
    if (len < stride) dst[len] = TFM_EOS_ID;
    for (int64_t j = len + 1; j < stride; j++) dst[j] = TFM_PAD_ID;
    f[i] = final;
    nb->lens[e] = len;
    nb->scores[e] = (float) final;
    nb->logprobs[e] = logprob;
}

/* The ensemble's next-token log-probabilities of one row, written over the
 * first model's logits (rows[0]): for v >= </s>, the mean over the models of
 * row_k[v] - lse_k, summed in double and rounded once, so that n copies of
 * one model give exactly that model's row[v] - lse (a float difference
 * rounded through double is the float difference: 53 >= 2 * 24 + 2). Each
 * term is <= 0, so the mean is too (can_beat relies on that). */
static void ensemble_row(float *const *rows, int64_t n_models, int64_t V) {
    float lse[TFM_ENSEMBLE_MAX];
    for (int64_t k = 0; k < n_models; k++) {
        float nth_low, mx = tfm_beam_row_max(rows[k], V, 1, &nth_low);
        lse[k] = row_log_sum_exp(rows[k], V, mx);
    }
    for (int64_t v = TFM_EOS_ID; v < V; v++) {
        double sum = 0;
        for (int64_t k = 0; k < n_models; k++) sum += (double)rows[k][v] - (double)lse[k];
        rows[0][v] = (float)(sum / (double)n_models);
    }
}

/* Row r of a decoding step: its log-probabilities (the logits' log-softmax
 * on the fly, or the ensemble's in place in logits[0]) and its best n
 * continuations into cand + r * n, n_cand[r] of them. Returns the seconds
 * spent on the log-softmax when profiling. */
static double rank_row(float *const *logits, int64_t n_models, int64_t V, int64_t n,
                       const float *scores, int64_t r, int64_t *n_cand, candidate *cand, int prof) {
    const float *row = logits[0] + r * V;
    double q0 = prof ? tfm_now() : 0, spent = 0;
    float nth_low, lse;
    if (n_models == 1) { /* the logits: log-softmax on the fly */
        float mx = tfm_beam_row_max(row, V, n, &nth_low);
        lse = row_log_sum_exp(row, V, mx);
    } else { /* the ensemble's log-probabilities, in place */
        float *rk[TFM_ENSEMBLE_MAX];
        for (int64_t k = 0; k < n_models; k++) rk[k] = logits[k] + r * V;
        ensemble_row(rk, n_models, V);
        (void)tfm_beam_row_max(row, V, n, &nth_low);
        lse = 0.0f;
    }
    if (prof) spent = tfm_now() - q0;
    n_cand[r] = scores[r] == -INFINITY
                    ? 0
                    : tfm_beam_row_top(row, V, scores[r], lse, nth_low, r, n, cand + r * n);
    return spent;
}

static int beam_search(tfm_model *const *models, int64_t n_models, tfm_tape *t, const int32_t *src,
                       const uint8_t *src_pad, int64_t B, int64_t S, int64_t beam, float alpha,
                       int64_t max_out, tfm_beam_stop stop, int32_t *out, int64_t *lens,
                       tfm_nbest *nb) {
    tfm_model *m = models[0];
    const int at_k = stop == TFM_BEAM_STOP_FINISHED; /* a source ends when K have finished */
    const int64_t K = beam, R = B * K, V = m->cfg.vocab, n = 2 * K, stride = max_out;
    const int64_t N = nb ? nb->n_best : 1;
    /* positions 0..T: <s> and T outputs must fit every model's positions */
    int64_t T = max_out;
    for (int64_t k = 0; k < n_models; k++)
        if (T + 1 > models[k]->cfg.max_len) T = models[k]->cfg.max_len - 1;
    tfm_decode_profile *prof = g_profile;
    int saved_grad = t->no_grad, saved_train = t->training;
    t->no_grad = 1;
    t->training = 0;
    size_t mark = tfm_arena_mark(&t->arena);
    int rc = 1;
    tfm_kv_cache cache[TFM_ENSEMBLE_MAX];
    memset(cache, 0, (size_t)n_models * sizeof cache[0]);
    /* first, so that an arena sized for activations + caches holds the caches */
    for (int64_t k = 0; k < n_models; k++)
        if (tfm_kv_cache_init_in(&cache[k], models[k], R, S, T + 1, &t->arena)) goto done;
    /* rows (current and next), their candidates, and per-source results */
    int32_t *tokens = tfm_arena_alloc(&t->arena, (size_t)(2 * R) * sizeof(int32_t));
    float *scores = tfm_arena_alloc(&t->arena, (size_t)(2 * R) * sizeof(float));
    int64_t *sent = tfm_arena_alloc(&t->arena, (size_t)(2 * R) * sizeof(int64_t));
    int32_t *hist = tfm_arena_alloc(&t->arena, (size_t)(2 * R * (T > 0 ? T : 1)) * sizeof(int32_t));
    int64_t *from = tfm_arena_alloc(&t->arena, (size_t)R * sizeof(int64_t));
    int64_t *n_cand = tfm_arena_alloc(&t->arena, (size_t)R * sizeof(int64_t));
    candidate *cand = tfm_arena_alloc(&t->arena, (size_t)(R * n) * sizeof(candidate));
    candidate *merged = tfm_arena_alloc(&t->arena, (size_t)n * sizeof(candidate));
    double *best_final = tfm_arena_alloc(&t->arena, (size_t)B * sizeof(double));
    int64_t *n_finished = tfm_arena_alloc(&t->arena, (size_t)B * sizeof(int64_t));
    double *nb_final = tfm_arena_alloc(&t->arena, (size_t)(B * N) * sizeof(double));
    if (!tokens || !scores || !sent || !hist || !from || !n_cand || !cand || !merged ||
        !best_final || !n_finished || !nb_final)
        goto done;
    int32_t *tokens_next = tokens + R, *hist_next = hist + R * T;
    float *scores_next = scores + R;
    int64_t *sent_next = sent + R;
    for (int64_t b = 0; b < B; b++) {
        tokens[b] = TFM_BOS_ID;
        scores[b] = 0.0f; /* one live hypothesis per source at first */
        sent[b] = b;
        best_final[b] = -INFINITY;
        n_finished[b] = 0;
        lens[b] = 0;
        for (int64_t j = 0; j < stride; j++) out[b * stride + j] = TFM_PAD_ID;
        for (int64_t i = 0; nb && i < N; i++) {
            int64_t e = b * N + i;
            for (int64_t j = 0; j < stride; j++) nb->tokens[e * stride + j] = TFM_PAD_ID;
            nb->lens[e] = -1;
            nb->scores[e] = nb->logprobs[e] = -INFINITY;
            nb_final[e] = -INFINITY;
        }
        if (nb) nb->count[b] = 0;
    }
    size_t enc_mark = tfm_arena_mark(&t->arena);
    for (int64_t k = 0; k < n_models; k++) {
        double t0 = prof ? tfm_now() : 0;
        tfm_tensor *mem = tfm_model_encode(models[k], t, src, src_pad, B, S); /* once per source */
        double t1 = prof ? tfm_now() : 0;
        if (!mem || tfm_kv_cache_start(&cache[k], models[k], t, mem, src_pad)) goto done;
        /* the cache holds the cross-attention keys and values: the next
         * model and the steps reuse the encoder's memory */
        tfm_arena_rewind(&t->arena, enc_mark);
        if (prof) {
            prof->encoder += t1 - t0;
            prof->cross_kv += tfm_now() - t1;
        }
    }
    size_t step_mark = tfm_arena_mark(&t->arena);
    int64_t rows = B;
    for (int64_t step = 0; step < T && rows > 0; step++) {
        tfm_arena_rewind(&t->arena, step_mark);
        float *logits[TFM_ENSEMBLE_MAX];
        double p_dec = 0, p_out = 0;
        for (int64_t k = 0; k < n_models; k++) {
            double p0 = prof ? tfm_now() : 0;
            tfm_tensor *x = tfm_model_decode_hidden(models[k], t, &cache[k], tokens);
            double p1 = prof ? tfm_now() : 0;
            tfm_tensor *lg = x ? tfm_linear(t, x, models[k]->tgt_emb, NULL) : NULL;
            if (!lg) goto done;
            logits[k] = lg->data;
            if (prof) p_dec += p1 - p0, p_out += tfm_now() - p1;
        }
        double p2 = prof ? tfm_now() : 0, p_lse = 0;
        /* p_lse sums the rows' seconds: divided by the threads that ran them */
        const int par = tfm_par_worth(rows * V);
        const double lse_threads =
            par && rows > 1 ? (double)(rows < tfm_par_threads() ? rows : tfm_par_threads()) : 1.0;
        TFM_PAR_FOR_CL(par, reduction(+ : p_lse),
                       for (int64_t r = 0; r < rows; r++) p_lse += rank_row(
                           logits, n_models, V, n, scores, r, n_cand, cand, prof != NULL));
        double p3 = prof ? tfm_now() : 0;
        int64_t next = 0;
        for (int64_t r0 = 0, r1; r0 < rows; r0 = r1) {
            int64_t b = sent[r0], count = 0;
            for (r1 = r0; r1 < rows && sent[r1] == b; r1++)
                for (int64_t c = 0; c < n_cand[r1]; c++)
                    keep_best(merged, &count, n, cand[r1 * n + c]);
            int64_t alive = 0;
            for (int64_t c = 0; c < count && alive < K; c++) {
                candidate cd = merged[c];
                if (cd.token == TFM_EOS_ID) {
                    if (at_k && n_finished[b] >= K) continue;
                    n_finished[b]++;
                    double final = cd.score / length_penalty(step + 1, alpha);
                    if (nb)
                        nbest_insert(nb, nb_final, b, stride, hist + cd.from * T, step, final,
                                     cd.score);
                    if (final > best_final[b]) {
                        best_final[b] = final;
                        memcpy(out + b * stride, hist + cd.from * T,
                               (size_t)step * sizeof(int32_t));
                        out[b * stride + step] = TFM_EOS_ID;
                        for (int64_t j = step + 1; j < stride; j++)
                            out[b * stride + j] = TFM_PAD_ID;
                        lens[b] = step;
                    }
                    continue;
                }
                from[next] = cd.from;
                scores_next[next] = cd.score;
                tokens_next[next] = cd.token;
                sent_next[next] = b;
                memcpy(hist_next + next * T, hist + cd.from * T, (size_t)step * sizeof(int32_t));
                hist_next[next * T + step] = cd.token;
                next++;
                alive++;
            }
            /* what a later hypothesis must beat to change the result: the
             * best finished one, or with n-best lists the N-th (the list's
             * order is final > listed, as the 1-best's, so N = 1 is the same) */
            double settle = !nb                 ? best_final[b]
                            : nb->count[b] >= N ? nb_final[b * N + N - 1]
                                                : -INFINITY;
            if (at_k && n_finished[b] >= K) {
                next -= alive; /* done: its rows leave the batch */
            } else if (alive > 0 && settle > -INFINITY &&
                       !can_beat(scores_next + next - alive, alive, settle,
                                 lp_bound(step + 2, T, alpha))) {
                next -= alive; /* its output is settled: the rows leave early */
                if (prof) prof->early_stops++;
            }
        }
        double p4 = prof ? tfm_now() : 0;
        for (int64_t k = 0; k < n_models; k++)
            if (tfm_kv_cache_select(&cache[k], from, next)) goto done;
        int32_t *swap_i = tokens;
        tokens = tokens_next;
        tokens_next = swap_i;
        swap_i = hist;
        hist = hist_next;
        hist_next = swap_i;
        float *swap_f = scores;
        scores = scores_next;
        scores_next = swap_f;
        int64_t *swap_l = sent;
        sent = sent_next;
        sent_next = swap_l;
        if (prof) {
            prof->decoder += p_dec;
            prof->output += p_out;
            prof->log_softmax += p_lse / lse_threads;
            prof->top_k += p3 - p2 - p_lse / lse_threads;
            prof->bookkeeping += p4 - p3;
            prof->select += tfm_now() - p4;
            prof->steps++;
            prof->row_steps += rows;
        }
        rows = next;
    }
    /* sources with no finished hypothesis: the best live one (first of
     * equals); their n-best lists: the live ones by log-probability */
    for (int64_t r0 = 0, r1; r0 < rows; r0 = r1) {
        int64_t b = sent[r0], best = r0;
        for (r1 = r0 + 1; r1 < rows && sent[r1] == b; r1++)
            if (scores[r1] > scores[best]) best = r1;
        if (n_finished[b] > 0) continue;
        memcpy(out + b * stride, hist + best * T, (size_t)T * sizeof(int32_t));
        lens[b] = T;
        for (int64_t r = r0; nb && r < r1; r++) {
            double final = scores[r] / length_penalty(T, alpha);
            nbest_insert(nb, nb_final, b, stride, hist + r * T, T, final, scores[r]);
        }
    }
    rc = 0;
done:
    for (int64_t k = n_models - 1; k >= 0; k--) tfm_kv_cache_free(&cache[k]);
    tfm_arena_rewind(&t->arena, mark);
    t->no_grad = saved_grad;
    t->training = saved_train;
    return rc;
}

/* The bounds of decode.h: beam, B and alpha (the other sizes: beam_search). */
static int check_search(int64_t B, int64_t beam, float alpha) {
    if (beam < 1 || beam > TFM_MAX_BEAM)
        return tfm_set_error("beam %lld: must be between 1 and %d", (long long)beam,
                             TFM_MAX_BEAM),
               1;
    if (B < 1 || B > TFM_MAX_DECODE_BATCH)
        return tfm_set_error("beam search: %lld sources: must be between 1 and %lld",
                             (long long)B, (long long)TFM_MAX_DECODE_BATCH),
               1;
    if (!isfinite(alpha))
        return tfm_set_error("length penalty alpha %g: must be finite", (double)alpha), 1;
    return 0;
}

/* The lengths both searches need at least one of. */
int tfm_decode_check_lengths(const char *who, int64_t S, int64_t max_out) {
    if (S < 1 || max_out < 1)
        return tfm_set_error("%s: source length %lld and max_out %lld: each must be at least 1",
                             who, (long long)S, (long long)max_out),
               1;
    return 0;
}

int tfm_beam_decode(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                    int64_t B, int64_t S, int64_t beam, float alpha, int64_t max_out, int32_t *out,
                    int64_t *lens) {
    if (check_search(B, beam, alpha) || tfm_decode_check_lengths("beam search", S, max_out))
        return 1;
    return beam_search(&m, 1, t, src, src_pad, B, S, beam, alpha, max_out, TFM_BEAM_STOP_FINISHED,
                       out, lens, NULL);
}

int tfm_beam_decode_ensemble(tfm_model *const *models, int64_t n_models, tfm_tape *t,
                             const int32_t *src, const uint8_t *src_pad, int64_t B, int64_t S,
                             int64_t beam, float alpha, int64_t max_out, int32_t *out,
                             int64_t *lens, tfm_nbest *nb) {
    return tfm_beam_decode_stop(models, n_models, t, src, src_pad, B, S, beam, alpha,
                                TFM_BEAM_STOP_FINISHED, max_out, out, lens, nb);
}

int tfm_beam_decode_stop(tfm_model *const *models, int64_t n_models, tfm_tape *t,
                         const int32_t *src, const uint8_t *src_pad, int64_t B, int64_t S,
                         int64_t beam, float alpha, tfm_beam_stop stop, int64_t max_out,
                         int32_t *out, int64_t *lens, tfm_nbest *nb) {
    if (!tfm_beam_stop_name(stop))
        return tfm_set_error("beam search: stopping rule %d: must be TFM_BEAM_STOP_FINISHED (0) "
                             "or TFM_BEAM_STOP_BOUND (1)",
                             (int)stop),
               1;
    if (n_models < 1 || n_models > TFM_ENSEMBLE_MAX)
        return tfm_set_error("ensemble: %lld models: must be between 1 and %d", (long long)n_models,
                             TFM_ENSEMBLE_MAX),
               1;
    if (check_search(B, beam, alpha) || tfm_decode_check_lengths("beam search", S, max_out))
        return 1;
    for (int64_t k = 1; k < n_models; k++)
        if (models[k]->cfg.vocab != models[0]->cfg.vocab)
            return tfm_set_error("ensemble: model %lld has a vocabulary of %lld ids, model 1 of "
                                 "%lld: the models must share one vocabulary",
                                 (long long)(k + 1), (long long)models[k]->cfg.vocab,
                                 (long long)models[0]->cfg.vocab),
                   1;
    if (nb && (nb->n_best < 1 || nb->n_best > beam))
        return tfm_set_error("n-best %lld: must be between 1 and the beam size %lld",
                             (long long)nb->n_best, (long long)beam),
               1;
    return beam_search(models, n_models, t, src, src_pad, B, S, beam, alpha, max_out, stop, out,
                       lens, nb);
}
