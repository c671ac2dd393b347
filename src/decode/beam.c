/* Batched beam search. Rows of the decoder batch are (source b, beam k) at
 * b * K + k; after each step the cache rows are reordered to follow the
 * surviving hypotheses. */
#include <math.h>
#include <string.h>

#include "tfm/decode.h"

typedef struct {
    float score;  /* sum of log-probabilities */
    int64_t from; /* parent row */
    int32_t token;
} candidate;

static double length_penalty(int64_t len, float alpha) {
    return pow((5.0 + (double)len) / 6.0, alpha);
}

/* Keeps the n best of a stream of candidates in `best` (descending). */
static void keep_best(candidate *best, int64_t *count, int64_t n, candidate c) {
    if (*count == n && c.score <= best[n - 1].score) return;
    int64_t i = *count < n ? (*count)++ : n - 1;
    while (i > 0 && best[i - 1].score < c.score) {
        best[i] = best[i - 1];
        i--;
    }
    best[i] = c;
}

int tfm_beam_decode(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                    int64_t B, int64_t S, int64_t beam, float alpha, int64_t max_out, int32_t *out,
                    int64_t *lens) {
    const int64_t K = beam, R = B * K, V = m->cfg.vocab;
    int saved_grad = t->no_grad, saved_train = t->training;
    t->no_grad = 1;
    t->training = 0;
    size_t mark = tfm_arena_mark(&t->arena);
    int rc = 1;
    if (max_out + 1 > m->cfg.max_len) max_out = m->cfg.max_len - 1;
    tfm_kv_cache cache;
    memset(&cache, 0, sizeof cache);
    /* per-row state and per-source results, from the arena */
    int32_t *rsrc = tfm_arena_alloc(&t->arena, (size_t)(R * S) * sizeof(int32_t));
    uint8_t *rpad = tfm_arena_alloc(&t->arena, (size_t)(R * S));
    int32_t *tokens = tfm_arena_alloc(&t->arena, (size_t)R * sizeof(int32_t));
    float *scores = tfm_arena_alloc(&t->arena, (size_t)R * sizeof(float));
    int32_t *hist = tfm_arena_alloc(&t->arena, (size_t)(R * max_out) * sizeof(int32_t));
    int32_t *hist_new = tfm_arena_alloc(&t->arena, (size_t)(R * max_out) * sizeof(int32_t));
    int64_t *from = tfm_arena_alloc(&t->arena, (size_t)R * sizeof(int64_t));
    candidate *cand = tfm_arena_alloc(&t->arena, (size_t)(2 * K) * sizeof(candidate));
    double *best_final = tfm_arena_alloc(&t->arena, (size_t)B * sizeof(double));
    int64_t *n_finished = tfm_arena_alloc(&t->arena, (size_t)B * sizeof(int64_t));
    if (!rsrc || !rpad || !tokens || !scores || !hist || !hist_new || !from || !cand ||
        !best_final || !n_finished)
        goto done;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t k = 0; k < K; k++) {
            memcpy(rsrc + (b * K + k) * S, src + b * S, (size_t)S * sizeof(int32_t));
            memcpy(rpad + (b * K + k) * S, src_pad + b * S, (size_t)S);
            tokens[b * K + k] = TFM_BOS_ID;
            scores[b * K + k] = k == 0 ? 0.0f : -INFINITY; /* one live hypothesis at first */
        }
        best_final[b] = -INFINITY;
        n_finished[b] = 0;
        lens[b] = 0;
        for (int64_t j = 0; j < max_out; j++) out[b * max_out + j] = TFM_PAD_ID;
    }
    if (tfm_kv_cache_init(&cache, m, R, S, max_out + 1)) goto done;
    tfm_tensor *mem = tfm_model_encode(m, t, rsrc, rpad, R, S);
    if (!mem || tfm_kv_cache_start(&cache, m, t, mem, rpad)) goto done;
    size_t step_mark = tfm_arena_mark(&t->arena);
    int64_t done_sources = 0;
    for (int64_t step = 0; step < max_out && done_sources < B; step++) {
        tfm_arena_rewind(&t->arena, step_mark);
        tfm_tensor *logits = tfm_model_decode_step(m, t, &cache, tokens);
        if (!logits) goto done;
        /* log-softmax in place (pad and <s> excluded) */
        for (int64_t r = 0; r < R; r++) {
            float *row = logits->data + r * V;
            float mx = -INFINITY;
            for (int64_t v = TFM_EOS_ID; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            double sum = 0;
            for (int64_t v = TFM_EOS_ID; v < V; v++) sum += exp((double)(row[v] - mx));
            float lse = mx + (float)log(sum);
            for (int64_t v = TFM_EOS_ID; v < V; v++) row[v] -= lse;
        }
        for (int64_t b = 0; b < B; b++) {
            if (n_finished[b] >= K) {
                for (int64_t k = 0; k < K; k++) {
                    from[b * K + k] = b * K + k;
                    scores[b * K + k] = -INFINITY;
                    tokens[b * K + k] = TFM_PAD_ID;
                }
                continue;
            }
            int64_t n_cand = 0;
            for (int64_t k = 0; k < K; k++) {
                int64_t r = b * K + k;
                if (scores[r] == -INFINITY) continue;
                const float *row = logits->data + r * V;
                for (int64_t v = TFM_EOS_ID; v < V; v++)
                    keep_best(cand, &n_cand, 2 * K, (candidate){scores[r] + row[v], r, (int32_t)v});
            }
            int64_t alive = 0;
            for (int64_t c = 0; c < n_cand && alive < K; c++) {
                candidate cd = cand[c];
                if (cd.token == TFM_EOS_ID) {
                    if (n_finished[b] >= K) continue;
                    n_finished[b]++;
                    double final = cd.score / length_penalty(step + 1, alpha);
                    if (final > best_final[b]) {
                        best_final[b] = final;
                        memcpy(out + b * max_out, hist + cd.from * max_out,
                               (size_t)step * sizeof(int32_t));
                        out[b * max_out + step] = TFM_EOS_ID;
                        for (int64_t j = step + 1; j < max_out; j++)
                            out[b * max_out + j] = TFM_PAD_ID;
                        lens[b] = step;
                    }
                    continue;
                }
                int64_t r = b * K + alive++;
                from[r] = cd.from;
                scores[r] = cd.score;
                tokens[r] = cd.token;
                memcpy(hist_new + r * max_out, hist + cd.from * max_out,
                       (size_t)step * sizeof(int32_t));
                hist_new[r * max_out + step] = cd.token;
            }
            for (; alive < K; alive++) {
                int64_t r = b * K + alive;
                from[r] = r;
                scores[r] = -INFINITY;
                tokens[r] = TFM_PAD_ID;
            }
            if (n_finished[b] >= K) done_sources++;
        }
        int32_t *swap = hist;
        hist = hist_new;
        hist_new = swap;
        tfm_kv_cache_reorder(&cache, m, from);
    }
    /* sources with no finished hypothesis: the best live one */
    for (int64_t b = 0; b < B; b++) {
        if (n_finished[b] > 0) continue;
        int64_t best = b * K;
        for (int64_t k = 1; k < K; k++)
            if (scores[b * K + k] > scores[best]) best = b * K + k;
        memcpy(out + b * max_out, hist + best * max_out, (size_t)max_out * sizeof(int32_t));
        lens[b] = max_out;
    }
    rc = 0;
done:
    tfm_kv_cache_free(&cache);
    tfm_arena_rewind(&t->arena, mark);
    t->no_grad = saved_grad;
    t->training = saved_train;
    return rc;
}
