/* Length-bucketed batches of id pairs under a padded token budget, with a
 * resumable per-epoch shuffle, and filling of the padded batch tensors.
 * Everything is sequential and keyed by the seed, so batches do not depend
 * on the thread count. Conventions are documented in tfm/data.h. */
#include <stdio.h>
#include <string.h>

#include "tfm/data.h"

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static int too_long(const tfm_pairs *p, int64_t i, int64_t max_src, int64_t max_tgt) {
    return (max_src > 0 && p->src_len[i] > max_src) || (max_tgt > 0 && p->tgt_len[i] > max_tgt);
}

int64_t tfm_pairs_count_too_long(const tfm_pairs *p, int64_t max_src_len, int64_t max_tgt_len) {
    int64_t n = 0;
    for (int64_t i = 0; i < p->n; i++) n += too_long(p, i, max_src_len, max_tgt_len);
    return n;
}

/* Sort key of a kept pair: padded cost first, then source length, then a
 * random tie-break from the seed, then the index, so the order is total. */
typedef struct {
    int64_t cost, s;
    uint64_t tie;
    int64_t index;
} sort_key;

static int cmp_key(const sort_key *a, const sort_key *b) {
    if (a->cost != b->cost) return a->cost < b->cost ? -1 : 1;
    if (a->s != b->s) return a->s < b->s ? -1 : 1;
    if (a->tie != b->tie) return a->tie < b->tie ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* A bottom-up merge sort of n keys with room for n more after them (no
 * allocation, so the per-epoch cut can use it inside the training loop). */
static void merge_sort(sort_key *a, int64_t n) {
    sort_key *src = a, *dst = a + n;
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) dst[k++] = cmp_key(&src[j], &src[i]) < 0 ? src[j++] : src[i++];
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        sort_key *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, (size_t)n * sizeof *a);
}

/* Sorts the kept pairs with the seed's tie-break and cuts batches. */
static int bucket(tfm_batcher *b, uint64_t seed) {
    const tfm_pairs *p = b->pairs;
    /* the keys and as many again for the merge sort: the batcher's buffer when
     * it cuts every epoch, else one for this cut */
    sort_key *keys = b->keys ? b->keys : malloc(2 * (size_t)b->n_kept * sizeof *keys);
    if (!keys) {
        tfm_set_error("batcher: out of memory for %lld pairs", (long long)b->n_kept);
        return 1;
    }
    int64_t m = 0;
    for (int64_t i = 0; i < p->n; i++) {
        if (too_long(p, i, b->opts.max_src_len, b->opts.max_tgt_len)) continue;
        int64_t s = p->src_len[i] + 1, t = p->tgt_len[i] + 1;
        keys[m++] = (sort_key){max64(s, t), s, tfm_rand_u64(seed ^ 0xB0C4E7ull, (uint64_t)i), i};
    }
    TFM_ASSERT(m == b->n_kept);
    merge_sort(keys, m);

    int64_t budget = b->opts.batch_tokens, cap_b = b->opts.max_batch_sentences;
    int64_t nb = 0, count = 0, cur_s = 0, cur_t = 0;
    b->start[0] = 0;
    for (int64_t k = 0; k < m; k++) {
        int64_t i = keys[k].index;
        int64_t s = p->src_len[i] + 1, t = p->tgt_len[i] + 1;
        int64_t ns = max64(cur_s, s), nt = max64(cur_t, t);
        int fits = (count + 1) * max64(ns, nt) <= budget && (cap_b <= 0 || count + 1 <= cap_b);
        if (count > 0 && !fits) {
            b->start[++nb] = k;
            count = 0;
            ns = s;
            nt = t;
        }
        b->order[k] = i;
        count++;
        cur_s = ns;
        cur_t = nt;
    }
    b->start[++nb] = m;
    /* a last batch short of the minimum takes pairs from the end of the one
     * before (sorted order: they cost no more than its own); when that would
     * break the budget or leave the one before short, the cut stays as it
     * is and the caller sees the short batch */
    int64_t want = b->opts.min_batch_sentences, have = b->start[nb] - b->start[nb - 1];
    if (want > 1 && have < want && nb >= 2) {
        int64_t take = want - have, prev = b->start[nb - 1] - b->start[nb - 2];
        int64_t last = b->order[m - 1];
        int64_t cost = max64(p->src_len[last], p->tgt_len[last]) + 1;
        if (prev - take >= want && want * cost <= budget && (cap_b <= 0 || want <= cap_b))
            b->start[nb - 1] -= take;
    }
    b->n_batches = nb;
    if (keys != b->keys) free(keys);
    b->perm_epoch = -1;
    b->state.seed = seed;
    return 0;
}

/* n_kept and n_dropped of the pairs as they are; errors: none kept, a
 * negative length, a kept pair that alone exceeds the budget. */
static int count_kept(tfm_batcher *b) {
    const tfm_pairs *pairs = b->pairs;
    const tfm_batch_opts *opts = &b->opts;
    b->n_dropped = tfm_pairs_count_too_long(pairs, opts->max_src_len, opts->max_tgt_len);
    b->n_kept = pairs->n - b->n_dropped;
    if (b->n_kept == 0) {
        tfm_set_error("no sentence pairs left to batch (%lld of %lld are longer than the limits "
                      "%lld source / %lld target ids)",
                      (long long)b->n_dropped, (long long)pairs->n, (long long)opts->max_src_len,
                      (long long)opts->max_tgt_len);
        return 1;
    }
    for (int64_t i = 0; i < pairs->n; i++) {
        if (pairs->src_len[i] < 0 || pairs->tgt_len[i] < 0) {
            tfm_set_error("pair %lld has a negative length", (long long)i);
            return 1;
        }
        if (too_long(pairs, i, opts->max_src_len, opts->max_tgt_len)) continue;
        int64_t most = max64(pairs->src_len[i], pairs->tgt_len[i]);
        if (most >= opts->batch_tokens) { /* cost most + 1 > the budget (not computed: INT64_MAX) */
            tfm_set_error("pair %lld (%lld source, %lld target ids) does not fit in batch_tokens "
                          "%lld on its own: raise batch_tokens or lower the maximum lengths",
                          (long long)i, (long long)pairs->src_len[i], (long long)pairs->tgt_len[i],
                          (long long)opts->batch_tokens);
            return 1;
        }
    }
    return 0;
}

int tfm_batcher_init(tfm_batcher *b, const tfm_pairs *pairs, const tfm_batch_opts *opts) {
    memset(b, 0, sizeof *b);
    if (pairs->n < 0) return tfm_set_error("batcher: %lld pairs", (long long)pairs->n), 1;
    if (opts->batch_tokens <= 0) {
        tfm_set_error("batch_tokens must be positive, got %lld", (long long)opts->batch_tokens);
        return 1;
    }
    b->pairs = pairs;
    b->opts = *opts;
    b->pairs_epoch = -1;
    if (count_kept(b)) return 1;
    size_t nk = (size_t)pairs->n; /* what any epoch's refresh can keep */
    b->order = malloc(nk * sizeof *b->order);
    b->start = malloc((nk + 1) * sizeof *b->start);
    b->perm = malloc(nk * sizeof *b->perm);
    if (!b->order || !b->start || !b->perm) {
        tfm_batcher_free(b);
        tfm_set_error("batcher: out of memory for %lld pairs", (long long)b->n_kept);
        return 1;
    }
    if (bucket(b, opts->seed)) {
        tfm_batcher_free(b);
        return 1;
    }
    b->state = (tfm_batcher_state){opts->seed, 0, 0};
    return 0;
}

void tfm_batcher_free(tfm_batcher *b) {
    free(b->keys);
    b->keys = NULL;
    free(b->order);
    free(b->start);
    free(b->perm);
    b->order = b->start = b->perm = NULL;
    b->n_batches = 0;
}

/* The visiting order of epoch e: a Fisher-Yates shuffle from (seed, e). */
static void shuffle_for(tfm_batcher *b, int64_t epoch) {
    if (b->perm_epoch == epoch) return;
    for (int64_t k = 0; k < b->n_batches; k++) b->perm[k] = k;
    tfm_rng r;
    tfm_rng_seed(&r, tfm_hash64(b->state.seed) ^ tfm_hash64((uint64_t)epoch + 0x5EEDull));
    for (int64_t k = b->n_batches - 1; k > 0; k--) {
        int64_t j = (int64_t)tfm_rng_below(&r, (uint64_t)k + 1);
        int64_t tmp = b->perm[k];
        b->perm[k] = b->perm[j];
        b->perm[j] = tmp;
    }
    b->perm_epoch = epoch;
}

/* With a refresh hook: the pairs of `epoch` and their batches, cut with
 * seed (nothing to do when they are already those). */
static int cut_epoch(tfm_batcher *b, int64_t epoch, uint64_t seed) {
    if (!b->refresh || (b->pairs_epoch == epoch && b->state.seed == seed)) return 0;
    if (b->pairs_epoch != epoch) {
        b->refresh(b->refresh_ctx, epoch);
        b->pairs_epoch = epoch;
        if (count_kept(b)) {
            b->n_batches = 0;
            tfm_set_error("epoch %lld: %s", (long long)epoch, tfm_last_error());
            return 1;
        }
    }
    return bucket(b, seed);
}

int tfm_batcher_set_refresh(tfm_batcher *b, void (*refresh)(void *ctx, int64_t epoch), void *ctx) {
    /* the keys and as many again for the merge sort */
    if (!b->keys && !(b->keys = malloc((size_t)(b->pairs->n > 0 ? 2 * b->pairs->n : 1) *
                                       sizeof(sort_key)))) {
        tfm_set_error("batcher: out of memory for %lld pairs", (long long)b->pairs->n);
        return 1;
    }
    b->refresh = refresh;
    b->refresh_ctx = ctx;
    b->pairs_epoch = b->state.epoch;
    return 0;
}

int64_t tfm_batcher_next(tfm_batcher *b, const int64_t **idx) {
    if (b->state.pos >= b->n_batches) {
        b->state.epoch++;
        b->state.pos = 0;
    }
    if (cut_epoch(b, b->state.epoch, b->state.seed)) return 0;
    shuffle_for(b, b->state.epoch);
    int64_t k = b->perm[b->state.pos++];
    if (b->state.pos == b->n_batches) {
        b->state.epoch++;
        b->state.pos = 0;
    }
    return tfm_batcher_batch(b, k, idx);
}

int64_t tfm_batcher_batch(const tfm_batcher *b, int64_t k, const int64_t **idx) {
    TFM_ASSERT(k >= 0 && k < b->n_batches, "batch %lld of %lld", (long long)k,
               (long long)b->n_batches);
    *idx = b->order + b->start[k];
    return b->start[k + 1] - b->start[k];
}

int tfm_batcher_set_state(tfm_batcher *b, tfm_batcher_state s) {
    /* epochs up to 2^62: far beyond any run, and epoch + 1 cannot wrap */
    if (s.epoch < 0 || s.pos < 0 || s.epoch > (INT64_C(1) << 62)) {
        tfm_set_error("batcher state: epoch %lld or position %lld out of range", (long long)s.epoch,
                      (long long)s.pos);
        return 1;
    }
    if (b->refresh ? cut_epoch(b, s.epoch, s.seed) : s.seed != b->state.seed && bucket(b, s.seed))
        return 1;
    if (s.pos > b->n_batches) {
        tfm_set_error("batcher state: position %lld is past the %lld batches of an epoch (was the "
                      "data or batch_tokens changed since the checkpoint?)",
                      (long long)s.pos, (long long)b->n_batches);
        return 1;
    }
    b->state = s;
    return 0;
}

void tfm_batcher_max_shape(const tfm_batcher *b, int64_t *max_b, int64_t *max_s, int64_t *max_t) {
    int64_t mb = 0, ms = 0, mt = 0;
    for (int64_t k = 0; k < b->n_batches; k++) {
        mb = max64(mb, b->start[k + 1] - b->start[k]);
        for (int64_t j = b->start[k]; j < b->start[k + 1]; j++) {
            int64_t i = b->order[j];
            ms = max64(ms, b->pairs->src_len[i] + 1);
            mt = max64(mt, b->pairs->tgt_len[i] + 1);
        }
    }
    *max_b = mb;
    *max_s = ms;
    *max_t = mt;
}

/* ---- filling ------------------------------------------------------------- */

int tfm_batch_alloc(tfm_batch *bt, int64_t max_b, int64_t max_s, int64_t max_t) {
    memset(bt, 0, sizeof *bt);
    if (max_b <= 0 || max_s <= 0 || max_t <= 0) {
        tfm_set_error("batch shape must be positive, got B=%lld S=%lld T=%lld", (long long)max_b,
                      (long long)max_s, (long long)max_t);
        return 1;
    }
    int64_t cells_s, cells_t;
    if (tfm_mul_i64(max_b, max_s, &cells_s) || tfm_mul_i64(max_b, max_t, &cells_t) ||
        cells_s > INT64_MAX / 4 || cells_t > INT64_MAX / 4) {
        tfm_set_error("batch shape B=%lld S=%lld T=%lld: too large", (long long)max_b,
                      (long long)max_s, (long long)max_t);
        return 1;
    }
    size_t ns = (size_t)cells_s, nt = (size_t)cells_t;
    bt->src = tfm_alloc(ns * sizeof(int32_t));
    bt->dec_in = tfm_alloc(nt * sizeof(int32_t));
    bt->dec_out = tfm_alloc(nt * sizeof(int32_t));
    bt->src_pad = tfm_alloc(ns);
    bt->tgt_pad = tfm_alloc(nt);
    if (!bt->src || !bt->dec_in || !bt->dec_out || !bt->src_pad || !bt->tgt_pad) {
        tfm_batch_free(bt);
        return 1;
    }
    bt->cap_b = max_b;
    bt->cap_s = max_s;
    bt->cap_t = max_t;
    return 0;
}

void tfm_batch_free(tfm_batch *bt) {
    tfm_free(bt->src);
    tfm_free(bt->dec_in);
    tfm_free(bt->dec_out);
    tfm_free(bt->src_pad);
    tfm_free(bt->tgt_pad);
    memset(bt, 0, sizeof *bt);
}

int tfm_batch_fill(tfm_batch *bt, const tfm_pairs *p, const int64_t *idx, int64_t n) {
    int64_t S = 0, T = 0;
    for (int64_t r = 0; r < n; r++) {
        TFM_ASSERT(idx[r] >= 0 && idx[r] < p->n);
        int64_t m = p->src_len[idx[r]], k = p->tgt_len[idx[r]];
        /* a negative length, or one whose + 1 would wrap */
        if (m < 0 || k < 0 || m == INT64_MAX || k == INT64_MAX) {
            tfm_set_error("pair %lld has a length of %lld source, %lld target ids",
                          (long long)idx[r], (long long)m, (long long)k);
            return 1;
        }
        S = max64(S, m + 1);
        T = max64(T, k + 1);
    }
    if (n <= 0 || n > bt->cap_b || S > bt->cap_s || T > bt->cap_t) {
        tfm_set_error("batch of shape B=%lld S=%lld T=%lld does not fit the buffers sized for "
                      "B=%lld S=%lld T=%lld",
                      (long long)n, (long long)S, (long long)T, (long long)bt->cap_b,
                      (long long)bt->cap_s, (long long)bt->cap_t);
        return 1;
    }
    int64_t n_src = 0, n_tgt = 0;
    for (int64_t r = 0; r < n; r++) {
        const int32_t *x = p->src[idx[r]], *y = p->tgt[idx[r]];
        int64_t m = p->src_len[idx[r]], k = p->tgt_len[idx[r]];
        int32_t *src = bt->src + r * S, *din = bt->dec_in + r * T, *dout = bt->dec_out + r * T;
        uint8_t *spad = bt->src_pad + r * S, *tpad = bt->tgt_pad + r * T;
        if (m > 0) memcpy(src, x, (size_t)m * sizeof *src);
        src[m] = TFM_EOS_ID;
        for (int64_t j = m + 1; j < S; j++) src[j] = TFM_PAD_ID;
        memset(spad, 0, (size_t)(m + 1));
        memset(spad + m + 1, 1, (size_t)(S - m - 1));

        din[0] = TFM_BOS_ID;
        if (k > 0) {
            memcpy(din + 1, y, (size_t)k * sizeof *din);
            memcpy(dout, y, (size_t)k * sizeof *dout);
        }
        dout[k] = TFM_EOS_ID;
        for (int64_t j = k + 1; j < T; j++) din[j] = dout[j] = TFM_PAD_ID;
        memset(tpad, 0, (size_t)(k + 1));
        memset(tpad + k + 1, 1, (size_t)(T - k - 1));
        n_src += m + 1;
        n_tgt += k + 1;
    }
    bt->b = n;
    bt->s = S;
    bt->t = T;
    bt->n_src_tokens = n_src;
    bt->n_tgt_tokens = n_tgt;
    return 0;
}
