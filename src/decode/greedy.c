/* Greedy decoding with the key/value cache. Rows that produced </s> leave the
 * batch (the cache keeps the others' positions through tfm_kv_cache_select),
 * so a batch costs what its unfinished sentences need. */
#include <string.h>

#include "../util/par.h"
#include "decode_internal.h"

/* The first index of the largest of row[first..V) */
static int64_t row_argmax(const float *row, int64_t first, int64_t V) {
    int64_t k = first;
    for (int64_t v = first; v < V; v++)
        if (row[v] > row[k]) k = v;
    return k;
}

/* Shared by both greedy decoders. annotated: starts from start[], argmax over
 * every id, never stops early; else starts from <s>, never emits pad or <s>,
 * stops a row at </s>. */
static int greedy(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad, int64_t B,
                  int64_t S, const int32_t *start, int64_t start_stride, int64_t max_out,
                  int32_t *out, int64_t *lens) {
    if (B < 1 || B > TFM_MAX_DECODE_BATCH)
        return tfm_set_error("greedy decoding: %lld sources: must be between 1 and %lld",
                             (long long)B, (long long)TFM_MAX_DECODE_BATCH),
               1;
    if (tfm_decode_check_lengths("greedy decoding", S, max_out)) return 1;
    int annotated = start != NULL;
    tfm_decode_profile *prof = tfm_decode_profile_active();
    int saved_grad = t->no_grad, saved_train = t->training;
    t->no_grad = 1;
    t->training = 0;
    size_t mark = tfm_arena_mark(&t->arena);
    int rc = 1;
    const int64_t stride = max_out, V = m->cfg.vocab, first = annotated ? 0 : TFM_EOS_ID;
    /* positions 0..T: <s> and T outputs must fit the model's positions */
    const int64_t T = max_out + 1 > m->cfg.max_len ? m->cfg.max_len - 1 : max_out;
    for (int64_t b = 0; b < B; b++) {
        lens[b] = T;
        for (int64_t j = 0; j < stride; j++) out[b * stride + j] = TFM_PAD_ID;
    }
    tfm_kv_cache cache;
    if (tfm_kv_cache_init_in(&cache, m, B, S, T + 1, &t->arena)) goto done;
    size_t enc_mark = tfm_arena_mark(&t->arena);
    double t0 = prof ? tfm_now() : 0;
    tfm_tensor *mem = tfm_model_encode(m, t, src, src_pad, B, S);
    double t1 = prof ? tfm_now() : 0;
    if (!mem || tfm_kv_cache_start(&cache, m, t, mem, src_pad)) goto done_cache;
    /* the cache holds the cross-attention keys and values: the steps reuse
     * the encoder's memory */
    tfm_arena_rewind(&t->arena, enc_mark);
    if (prof) {
        prof->encoder += t1 - t0;
        prof->cross_kv += tfm_now() - t1;
    }
    int32_t *tokens = tfm_arena_alloc(&t->arena, (size_t)B * sizeof(int32_t));
    int64_t *sent = tfm_arena_alloc(&t->arena, (size_t)B * sizeof(int64_t)); /* row -> b */
    int64_t *best = tfm_arena_alloc(&t->arena, (size_t)B * sizeof(int64_t));
    int64_t *from = tfm_arena_alloc(&t->arena, (size_t)B * sizeof(int64_t));
    if (!tokens || !sent || !best || !from) goto done_cache;
    for (int64_t b = 0; b < B; b++) {
        tokens[b] = annotated ? start[b * start_stride] : TFM_BOS_ID;
        sent[b] = b;
    }
    size_t step_mark = tfm_arena_mark(&t->arena);
    int64_t rows = B;
    for (int64_t step = 0; step < T && rows > 0; step++) {
        tfm_arena_rewind(&t->arena, step_mark);
        double p0 = prof ? tfm_now() : 0;
        tfm_tensor *x = tfm_model_decode_hidden(m, t, &cache, tokens);
        double p1 = prof ? tfm_now() : 0;
        tfm_tensor *logits = tfm_linear(t, x, m->tgt_emb, NULL);
        if (!logits) goto done_cache;
        double p2 = prof ? tfm_now() : 0;
        const float *lg = logits->data;
        TFM_PAR_FOR(tfm_par_worth(rows * V),
                    for (int64_t r = 0; r < rows; r++) best[r] = row_argmax(lg + r * V, first, V));
        double p3 = prof ? tfm_now() : 0;
        int64_t next = 0;
        for (int64_t r = 0; r < rows; r++) {
            int64_t b = sent[r];
            out[b * stride + step] = (int32_t)best[r];
            if (!annotated && best[r] == TFM_EOS_ID) {
                lens[b] = step;
                continue;
            }
            from[next] = r; /* from[i] >= i: compaction in place is safe */
            tokens[next] = (int32_t)best[r];
            sent[next++] = b;
        }
        if (next < rows && tfm_kv_cache_select(&cache, from, next)) goto done_cache;
        if (prof) {
            double p4 = tfm_now();
            prof->decoder += p1 - p0;
            prof->output += p2 - p1;
            prof->top_k += p3 - p2;
            prof->select += p4 - p3;
            prof->steps++;
            prof->row_steps += rows;
        }
        rows = next;
    }
    rc = 0;
done_cache:
    tfm_kv_cache_free(&cache);
done:
    tfm_arena_rewind(&t->arena, mark);
    t->no_grad = saved_grad;
    t->training = saved_train;
    return rc;
}

int tfm_greedy_decode(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                      int64_t B, int64_t S, int64_t max_out, int32_t *out, int64_t *lens) {
    return greedy(m, t, src, src_pad, B, S, NULL, 0, max_out, out, lens);
}

int tfm_greedy_decode_from(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                           int64_t B, int64_t S, const int32_t *start, int64_t start_stride,
                           int64_t n_steps, int32_t *out, int64_t *lens) {
    return greedy(m, t, src, src_pad, B, S, start, start_stride, n_steps, out, lens);
}
