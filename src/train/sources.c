/* Batch sources for the trainer (the toy tasks and a bucketed corpus) and the
 * toy tasks' held-out evaluation. */
#include <string.h>

#include "../util/buf.h"
#include "../util/hash.h"
#include "tfm/train.h"

/* ---- toy tasks ---------------------------------------------------------------------- */
static int toy_next(void *ctx, int64_t step, tfm_seq_batch *b, int64_t *n_tokens) {
    tfm_toy_source *s = ctx;
    tfm_toy_batch_fill(&s->batch, &s->task, s->seed, step - 1);
    const tfm_toy_batch *t = &s->batch;
    *b = (tfm_seq_batch){.B = t->B,
                         .S = t->S,
                         .T = t->T,
                         .src = t->src,
                         .tgt_in = t->tgt_in,
                         .tgt_out = t->tgt_out,
                         .src_pad = t->src_pad,
                         .tgt_pad = t->tgt_pad};
    *n_tokens = t->n_tokens;
    return 0;
}

static void toy_describe(void *ctx, tfm_kv *kv) {
    tfm_toy_source *s = ctx;
    const tfm_toy_config *t = &s->task;
    tfm_kv_set(kv, "data.task", "%s", t->task == TFM_TOY_COPY ? "copy" : "reverse");
    tfm_kv_set(kv, "data.vocab", "%lld", (long long)t->vocab);
    tfm_kv_set(kv, "data.min-len", "%lld", (long long)t->min_len);
    tfm_kv_set(kv, "data.max-len", "%lld", (long long)t->max_len);
    tfm_kv_set(kv, "data.annotated", "%s", t->annotated ? "true" : "false");
    tfm_kv_set(kv, "data.batch", "%lld", (long long)s->batch.B);
}

int tfm_toy_source_init(tfm_toy_source *s, const tfm_toy_config *task, int64_t batch,
                        uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->task = *task;
    s->seed = seed;
    if (tfm_toy_config_check(task) || tfm_toy_batch_alloc(&s->batch, task, batch)) return 1;
    s->source = (tfm_batch_source){.ctx = s,
                                   .next = toy_next,
                                   .max_b = batch,
                                   .max_s = s->batch.S,
                                   .max_t = s->batch.T,
                                   .kind = "toy",
                                   .describe = toy_describe};
    return 0;
}

void tfm_toy_source_free(tfm_toy_source *s) { tfm_toy_batch_free(&s->batch); }

/* ---- a corpus ------------------------------------------------------------------------- */
static int corpus_next(void *ctx, int64_t step, tfm_seq_batch *b, int64_t *n_tokens) {
    (void)step; /* the batcher's own position says which batch comes next */
    tfm_corpus_source *s = ctx;
    const int64_t *idx;
    int64_t n = tfm_batcher_next(&s->batcher, &idx);
    if (n <= 0) return 1; /* an epoch with nothing to batch (the batcher says which) */
    if (s->share_count > 1) {
        /* every process cuts the same batches, so all of them stop here alike */
        if (n < s->share_count)
            return tfm_set_error("batch of %lld sentence(s): fewer than the %d processes (raise "
                                 "--batch-tokens)",
                                 (long long)n, s->share_count),
                   1;
        /* this process's contiguous part of the global batch */
        int64_t lo = n * s->share_rank / s->share_count;
        int64_t hi = n * (s->share_rank + 1) / s->share_count;
        idx += lo;
        n = hi - lo;
    }
    if (tfm_batch_fill(&s->batch, s->pairs, idx, n)) return 1;
    const tfm_batch *t = &s->batch;
    *b = (tfm_seq_batch){t->b, t->s, t->t, t->src, t->dec_in, t->dec_out, t->src_pad, t->tgt_pad};
    *n_tokens = t->n_tgt_tokens;
    return 0;
}

static void corpus_save(void *ctx, tfm_kv *state) {
    tfm_corpus_source *s = ctx;
    tfm_kv_set(state, "state.epoch", "%lld", (long long)s->batcher.state.epoch);
    tfm_kv_set(state, "state.pos", "%lld", (long long)s->batcher.state.pos);
}

static int corpus_load(void *ctx, const tfm_kv *state, const char *where) {
    tfm_corpus_source *s = ctx;
    tfm_batcher_state st = s->batcher.state;
    if (tfm_kv_get_i64(state, "state.epoch", &st.epoch, where) ||
        tfm_kv_get_i64(state, "state.pos", &st.pos, where))
        return 1;
    return tfm_batcher_set_state(&s->batcher, st);
}

/* One side of the encoded corpus: its sentence count and a checksum of its
 * ids, as "N sentences, checksum H" into out. */
static void side_id(char out[64], int32_t *const *ids, const int64_t *len, int64_t n) {
    uint64_t h = 0x5EED;
    for (int64_t i = 0; i < n; i++)
        h = tfm_hash64(h ^ tfm_hash_bytes(ids[i], (size_t)len[i] * sizeof(int32_t))) +
            (uint64_t)len[i];
    snprintf(out, 64, "%lld sentences, checksum %016llx", (long long)n, (unsigned long long)h);
}

static void corpus_describe(void *ctx, tfm_kv *kv) {
    tfm_corpus_source *s = ctx;
    const tfm_pairs *p = s->pairs;
    if (!s->text) { /* without dropout the pairs are the segmentation */
        side_id(s->sum_src, p->src, p->src_len, p->n);
        side_id(s->sum_tgt, p->tgt, p->tgt_len, p->n);
    }
    tfm_kv_set(kv, "data.src-train", "%s", s->sum_src);
    tfm_kv_set(kv, "data.tgt-train", "%s", s->sum_tgt);
    tfm_kv_set(kv, "data.batch-tokens", "%lld", (long long)s->batcher.opts.batch_tokens);
    tfm_kv_set(kv, "data.max-tokens", "%lld", (long long)s->batcher.opts.max_src_len);
    tfm_kv_set(kv, "data.bpe-dropout", s->source_only ? "%.12g source" : "%.12g", s->bpe_dropout);
}

/* The trainer's view of a corpus source whose batches are within B x S/T
 * (and B * max(S, T) <= cells when cells > 0). */
static tfm_batch_source corpus_batch_source(tfm_corpus_source *s, int64_t B, int64_t S, int64_t T,
                                            int64_t cells) {
    return (tfm_batch_source){.ctx = s,
                              .next = corpus_next,
                              .save = corpus_save,
                              .load = corpus_load,
                              .max_b = B,
                              .max_s = S,
                              .max_t = T,
                              .max_cells = cells,
                              .kind = "text",
                              .describe = corpus_describe};
}

int tfm_corpus_source_init(tfm_corpus_source *s, const tfm_pairs *pairs, const tfm_batch_opts *o) {
    memset(s, 0, sizeof *s);
    s->pairs = pairs;
    s->share_count = 1;
    if (tfm_batcher_init(&s->batcher, pairs, o)) return 1;
    int64_t B, S, T;
    tfm_batcher_max_shape(&s->batcher, &B, &S, &T);
    if (tfm_batch_alloc(&s->batch, B, S, T)) {
        tfm_batcher_free(&s->batcher);
        return 1;
    }
    s->source = corpus_batch_source(s, B, S, T, 0);
    return 0;
}

void tfm_corpus_source_free(tfm_corpus_source *s) {
    tfm_batch_free(&s->batch);
    tfm_batcher_free(&s->batcher);
    free(s->own.src);
    free(s->own.tgt);
    free(s->own.src_len);
    free(s->own.tgt_len);
    free(s->slots);
    memset(&s->own, 0, sizeof s->own);
    s->slots = NULL;
}

/* ---- a corpus with BPE-dropout -------------------------------------------------------- */
/* The pairs of epoch `epoch`: every line segmented with dropout (only the
 * source lines with source_only: the targets keep the plain segmentation
 * made at init), one draw stream per epoch, lines in order (source then
 * target of each pair); a line that comes out longer than its side's limit
 * is segmented as usual instead (the draws it took stay taken). */
static void dropout_refresh(void *ctx, int64_t epoch) {
    tfm_corpus_source *s = ctx;
    tfm_rng r;
    tfm_rng_seed(&r, tfm_hash64(s->seed ^ 0xB9E0D809ull) ^ tfm_hash64((uint64_t)epoch + 1));
    for (int64_t i = 0; i < s->text->n; i++)
        for (int side = 0; side < (s->source_only ? 1 : 2); side++) {
            const char *line = side ? s->text->tgt[i] : s->text->src[i];
            int32_t *slot = side ? s->own.tgt[i] : s->own.src[i];
            int64_t *len = side ? &s->own.tgt_len[i] : &s->own.src_len[i];
            /* the slot ends where the next line's begins */
            const int32_t *end = side ? (i + 1 < s->text->n ? s->own.src[i + 1] : s->slots_end)
                                      : s->own.tgt[i];
            int64_t cap = end - slot;
            *len = tfm_vocab_encode_dropout(s->bpe, s->vocab, line, strlen(line), s->bpe_dropout,
                                            &r, slot, cap);
            if (*len > s->max_len[side])
                *len = tfm_vocab_encode(s->bpe, s->vocab, line, strlen(line), slot, cap);
            TFM_ASSERT(*len >= 0 && *len <= cap, "a line has at most one piece per character");
        }
}

int tfm_corpus_source_init_dropout(tfm_corpus_source *s, const tfm_corpus *text, tfm_bpe *bpe,
                                   const tfm_vocab *vocab, double p, int source_only,
                                   const tfm_batch_opts *o) {
    memset(s, 0, sizeof *s);
    s->source_only = source_only != 0;
    s->share_count = 1;
    if (!(p > 0 && p <= 1))
        return tfm_set_error("BPE-dropout %g: must be above 0 and at most 1", p), 1;
    int64_t missing = tfm_vocab_missing_merge_symbols(vocab, bpe);
    if (missing != 0) {
        char why[256] = "it lacks some";
        if (missing < 0) snprintf(why, sizeof why, "%s", tfm_last_error());
        return tfm_set_error("BPE-dropout needs a vocabulary with every symbol of the merges "
                             "(--exact-vocab, the default since 2026-11-29): %s",
                             why),
               1;
    }
    int64_t most = o->max_src_len > o->max_tgt_len ? o->max_src_len : o->max_tgt_len;
    if (o->max_src_len <= 0 || o->max_tgt_len <= 0 || o->batch_tokens < most + 1)
        return tfm_set_error("BPE-dropout: the batches need length limits (%lld / %lld ids) and a "
                             "budget of at least the longest + 1 (batch_tokens %lld)",
                             (long long)o->max_src_len, (long long)o->max_tgt_len,
                             (long long)o->batch_tokens),
               1;
    s->bpe_dropout = p;
    s->max_len[0] = o->max_src_len;
    s->max_len[1] = o->max_tgt_len;
    s->seed = o->seed;
    s->text = text;
    s->bpe = bpe;
    s->vocab = vocab;
    const int64_t n = text->n;
    int rc = 1;
    int32_t *ids = NULL;
    int64_t ids_cap = 0, total = 0;
    s->own.n = n;
    s->own.src = malloc((size_t)(n + 1) * sizeof(int32_t *));
    s->own.tgt = malloc((size_t)(n + 1) * sizeof(int32_t *));
    s->own.src_len = malloc((size_t)(n + 1) * sizeof(int64_t));
    s->own.tgt_len = malloc((size_t)(n + 1) * sizeof(int64_t));
    if (!s->own.src || !s->own.tgt || !s->own.src_len || !s->own.tgt_len) goto oom;
    /* the checksums of the plain segmentation (the same data.* values as a
     * run without dropout); then each line's most pieces (p = 1: its
     * characters), which also grows the segmenter's scratch to its peak */
    for (int side = 0; side < 2; side++) {
        uint64_t h = 0x5EED;
        for (int64_t i = 0; i < n; i++) {
            const char *line = side ? text->tgt[i] : text->src[i];
            size_t len = strlen(line);
            int64_t k = tfm_vocab_encode(bpe, vocab, line, len, ids, ids_cap);
            if (k < 0) goto done;
            if (k > ids_cap) {
                if (tfm_grow((void **)&ids, &ids_cap, k, sizeof *ids)) goto oom;
                tfm_vocab_encode(bpe, vocab, line, len, ids, ids_cap);
            }
            h = tfm_hash64(h ^ tfm_hash_bytes(ids, (size_t)k * sizeof(int32_t))) + (uint64_t)k;
            tfm_rng r;
            tfm_rng_seed(&r, 1);
            int64_t most_pieces = tfm_vocab_encode_dropout(bpe, vocab, line, len, 1.0, &r, NULL, 0);
            if (most_pieces < 0) goto done;
            (side ? s->own.tgt_len : s->own.src_len)[i] = most_pieces;
            total += most_pieces;
        }
        snprintf(side ? s->sum_tgt : s->sum_src, sizeof s->sum_src,
                 "%lld sentences, checksum %016llx", (long long)n, (unsigned long long)h);
    }
    s->slots = malloc((size_t)(total + 1) * sizeof(int32_t));
    if (!s->slots) goto oom;
    s->slots_end = s->slots + total;
    for (int64_t i = 0, off = 0; i < n; i++) {
        s->own.src[i] = s->slots + off;
        off += s->own.src_len[i];
        s->own.tgt[i] = s->slots + off;
        off += s->own.tgt_len[i];
    }
    for (int64_t i = 0; s->source_only && i < n; i++) { /* the targets once, as usual */
        int64_t cap = s->own.tgt_len[i];
        s->own.tgt_len[i] = tfm_vocab_encode(bpe, vocab, text->tgt[i], strlen(text->tgt[i]),
                                             s->own.tgt[i], cap);
        TFM_ASSERT(s->own.tgt_len[i] >= 0 && s->own.tgt_len[i] <= cap);
    }
    dropout_refresh(s, 0);
    if (tfm_batcher_init(&s->batcher, &s->own, o)) goto done;
    if (tfm_batcher_set_refresh(&s->batcher, dropout_refresh, s)) goto done;
    s->pairs = &s->own;
    /* any batch: B * max(S, T) <= budget, S and T at most the limits + 1 */
    int64_t B = o->batch_tokens / 2, S = o->max_src_len + 1, T = o->max_tgt_len + 1;
    if (o->max_batch_sentences > 0 && o->max_batch_sentences < B) B = o->max_batch_sentences;
    if (tfm_batch_alloc(&s->batch, B, S, T)) goto done;
    s->source = corpus_batch_source(s, B, S, T, o->batch_tokens);
    rc = 0;
    goto done;
oom:
    tfm_set_error("out of memory for BPE-dropout over %lld sentence pairs", (long long)n);
done:
    free(ids);
    if (rc) tfm_corpus_source_free(s);
    return rc;
}

/* ---- toy evaluation ------------------------------------------------------------------- */
int tfm_toy_evaluate(tfm_model *m, const tfm_toy_config *tc, uint64_t seed, int64_t n,
                     int64_t batch, double *exact, double *token_acc, FILE *show, int n_show) {
    if (n < 1) return tfm_set_error("toy evaluation: %lld sequences", (long long)n), 1;
    tfm_toy_batch b;
    if (tfm_toy_batch_alloc(&b, tc, batch)) return 1;
    int64_t max_out = tc->annotated ? b.T : b.T + 1;
    int32_t *out = tfm_alloc((size_t)(batch * max_out) * sizeof(int32_t));
    int64_t *lens = tfm_alloc((size_t)batch * sizeof(int64_t));
    int32_t *want = tfm_alloc((size_t)b.T * sizeof(int32_t));
    tfm_tape t;
    int rc = 1, tape_ok = 0;
    if (!out || !lens || !want) {
        tfm_set_error("out of memory");
        goto done;
    }
    if (tfm_tape_init(&t, tfm_model_activation_bytes(&m->cfg, batch, b.S, b.T + 1), 16)) goto done;
    tape_ok = 1;
    t.no_grad = 1;
    t.training = 0;
    int64_t done = 0, exact_n = 0, tok_ok = 0, tok_n = 0, shown = 0;
    for (int64_t index = 0; done < n; index++) {
        tfm_toy_batch_fill(&b, tc, seed ^ 0x5EEDull, index);
        int64_t rows = n - done < batch ? n - done : batch;
        b.B = rows;
        if (tc->annotated) {
            /* start from the first source symbol, decode L-1 more */
            if (tfm_greedy_decode_from(m, &t, b.src, b.src_pad, rows, b.S, b.src, b.S, max_out, out,
                                       lens))
                goto done;
        } else if (tfm_greedy_decode(m, &t, b.src, b.src_pad, rows, b.S, max_out, out, lens)) {
            goto done;
        }
        for (int64_t r = 0; r < rows; r++) {
            int64_t wn = tfm_toy_expected(&b, tc, r, want);
            const int32_t *got = out + r * max_out;
            int64_t got_n = tc->annotated ? b.T : lens[r];
            int ok = got_n == wn;
            /* token accuracy over the expected tokens and the end marker */
            for (int64_t i = 0; i <= wn && i < max_out; i++) {
                int32_t w = i < wn ? want[i] : TFM_EOS_ID;
                if (tc->annotated && i == wn) break;
                tok_n++;
                if (got[i] == w)
                    tok_ok++;
                else
                    ok = 0;
            }
            exact_n += ok;
            if (show && shown < n_show) {
                shown++;
                fprintf(show, "  src:");
                for (int64_t i = 0; i < b.S && b.src[r * b.S + i] > TFM_EOS_ID; i++)
                    fprintf(show, " %d", b.src[r * b.S + i]);
                fprintf(show, "\n  out:");
                for (int64_t i = 0; i < got_n; i++) fprintf(show, " %d", got[i]);
                fprintf(show, "   %s\n", ok ? "(right)" : "(WRONG)");
            }
        }
        done += rows;
        b.B = batch;
    }
    *exact = (double)exact_n / (double)n;
    *token_acc = tok_n ? (double)tok_ok / (double)tok_n : 0.0;
    rc = 0;
done:
    if (tape_ok) tfm_tape_free(&t);
    tfm_free(out);
    tfm_free(lens);
    tfm_free(want);
    tfm_toy_batch_free(&b);
    return rc;
}
