/* Byte-pair encoding (Sennrich et al. 2016) compatible with subword-nmt:
 * learning with incremental pair statistics, loading/saving codes, applying
 * merges by rank with a cache, and detokenisation. See tfm/text.h for the
 * text model (words, "</w>", "@@ ", the '~' escape). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text_util.h"
#include "tfm/base.h"
#include "tfm/text.h"

#define EOW_LEN 4 /* strlen(TFM_BPE_EOW) */

/* Entries after which the segmentation cache is dropped and restarted, so
 * that applying to an endless stream keeps bounded memory. */
#define CACHE_MAX_WORDS (1 << 20)

struct tfm_bpe {
    int version;                          /* 1: codes 0.1 ("</w>" its own symbol), 2: codes 0.2 */
    tfm_strmap sym;                       /* every symbol string: lefts, rights, results */
    int32_t *m_left, *m_right, *m_result; /* (n_merges) symbol ids */
    int64_t n_merges, m_cap;
    tfm_u64map pair_rank; /* (left << 32 | right) -> first rank */
    int32_t eow_id;       /* id of "</w>" (version 1), -1 when absent */

    /* cache: word -> offset of [n_pieces, len_0, ..., len_{n-1}] in cache_val */
    tfm_strmap cache;
    int64_t *cache_at;
    int64_t cache_at_cap;
    uint32_t *cache_val;
    int64_t cache_val_n, cache_val_cap;

    /* scratch for one word's symbols */
    int32_t *s_id;
    uint32_t *s_start, *s_end;
    uint8_t *s_keep; /* BPE-dropout: the pair at i survived this step's draw */
    int64_t s_cap;
    char *tmp; /* symbol + "</w>" */
    int64_t tmp_cap;
    char *esc; /* escaped word */
    int64_t esc_cap;
    tfm_subwords scratch; /* for tfm_vocab_encode */
};

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static tfm_bpe *bpe_new(int version) {
    tfm_bpe *b = calloc(1, sizeof *b);
    if (!b) {
        tfm_set_error("out of memory");
        return NULL;
    }
    b->version = version;
    b->eow_id = -1;
    return b;
}

void tfm_bpe_free(tfm_bpe *b) {
    if (!b) return;
    tfm_strmap_free(&b->sym);
    free(b->m_left);
    free(b->m_right);
    free(b->m_result);
    tfm_u64map_free(&b->pair_rank);
    tfm_strmap_free(&b->cache);
    free(b->cache_at);
    free(b->cache_val);
    free(b->s_id);
    free(b->s_start);
    free(b->s_end);
    free(b->s_keep);
    free(b->tmp);
    free(b->esc);
    tfm_subwords_free(&b->scratch);
    free(b);
}

int64_t tfm_bpe_n_merges(const tfm_bpe *b) { return b->n_merges; }
int tfm_bpe_version(const tfm_bpe *b) { return b->version; }

const char *tfm_bpe_merge_left(const tfm_bpe *b, int64_t rank) {
    return rank >= 0 && rank < b->n_merges ? tfm_strmap_key(&b->sym, b->m_left[rank]) : NULL;
}

const char *tfm_bpe_merge_right(const tfm_bpe *b, int64_t rank) {
    return rank >= 0 && rank < b->n_merges ? tfm_strmap_key(&b->sym, b->m_right[rank]) : NULL;
}

static int tmp_reserve(tfm_bpe *b, size_t need) {
    return tfm_grow((void **)&b->tmp, &b->tmp_cap, (int64_t)need, 1);
}

/* Appends merge (left, right) as the next rank. */
static int bpe_add_merge(tfm_bpe *b, const char *l, size_t ll, const char *r, size_t rl) {
    if (b->n_merges >= INT32_MAX - 1) {
        tfm_set_error("too many merges");
        return -1;
    }
    if (tmp_reserve(b, ll + rl + 1)) return -1;
    memcpy(b->tmp, l, ll);
    memcpy(b->tmp + ll, r, rl);
    int64_t li = tfm_strmap_add(&b->sym, l, ll, NULL);
    int64_t ri = li < 0 ? -1 : tfm_strmap_add(&b->sym, r, rl, NULL);
    int64_t res = ri < 0 ? -1 : tfm_strmap_add(&b->sym, b->tmp, ll + rl, NULL);
    if (res < 0) return -1;
    int64_t cap = b->m_cap, c2 = b->m_cap, c3 = b->m_cap;
    if (tfm_grow((void **)&b->m_left, &cap, b->n_merges + 1, sizeof(int32_t)) ||
        tfm_grow((void **)&b->m_right, &c2, b->n_merges + 1, sizeof(int32_t)) ||
        tfm_grow((void **)&b->m_result, &c3, b->n_merges + 1, sizeof(int32_t)))
        return -1;
    b->m_cap = cap;
    int64_t rank = b->n_merges++;
    b->m_left[rank] = (int32_t)li;
    b->m_right[rank] = (int32_t)ri;
    b->m_result[rank] = (int32_t)res;
    /* A duplicated merge keeps its first rank, as apply_bpe.py does. */
    if (!tfm_u64map_put(&b->pair_rank, pair_key((int32_t)li, (int32_t)ri), (int32_t)rank, NULL))
        return -1;
    return 0;
}

/* ------------------------------------------------------------ escaping */

/* Whether a word matches /@@~*$/ and so gets one more '~' (see text.h). */
static int word_needs_escape(const char *w, size_t len) {
    size_t k = len;
    while (k > 0 && w[k - 1] == TFM_BPE_ESCAPE) k--;
    return k >= 2 && w[k - 1] == '@' && w[k - 2] == '@';
}

/* ------------------------------------------------------------- learning */

typedef struct {
    tfm_strmap words;
    int64_t *count;
    int64_t count_cap;
    char *tmp;
    int64_t tmp_cap;
} word_counter;

static int count_word(word_counter *wc, const char *w, size_t len) {
    if (word_needs_escape(w, len)) {
        if (tfm_grow((void **)&wc->tmp, &wc->tmp_cap, (int64_t)len + 1, 1)) return -1;
        memcpy(wc->tmp, w, len);
        wc->tmp[len++] = TFM_BPE_ESCAPE;
        w = wc->tmp;
    }
    int added;
    int64_t e = tfm_strmap_add(&wc->words, w, len, &added);
    if (e < 0) return -1;
    if (added) {
        if (tfm_grow((void **)&wc->count, &wc->count_cap, e + 1, sizeof *wc->count)) return -1;
        wc->count[e] = 0;
    }
    wc->count[e]++;
    return 0;
}

static int count_line(void *ctx, const char *line, size_t len, const char *name, int64_t lineno) {
    if (tfm_text_check_line(line, len, name, lineno)) return -1;
    size_t i = 0;
    while (i < len) {
        while (i < len && tfm_text_is_space((unsigned char)line[i])) i++;
        size_t start = i;
        while (i < len && !tfm_text_is_space((unsigned char)line[i])) i++;
        if (i > start && count_word(ctx, line + start, i - start)) return -1;
    }
    return 0;
}

static void word_counter_free(word_counter *wc) {
    tfm_strmap_free(&wc->words);
    free(wc->count);
    free(wc->tmp);
}

/* Incremental learning. Distinct words are stored once with their counts
 * as arrays of symbol ids. Each pair keeps its exact count and the list of
 * words it occurs in. A merge of (a, b) visits only the words on that list:
 * their old pairs are subtracted, the word is rewritten, the new pairs are
 * added (and the word is listed under the new pairs with the new symbol).
 * The best pair comes from a max-heap whose entries go stale when a count
 * changes: a changed pair is pushed again with its new count, and an entry
 * whose count differs from the pair's is dropped when it reaches the top. */
typedef struct {
    int64_t count;  /* sum of the frequencies of the words, per occurrence */
    int64_t pushed; /* count of its newest heap entry */
    int32_t a, b;   /* symbol ids */
    int32_t *words; /* words that contain (or once contained) the pair */
    int32_t n_words, cap_words;
    int64_t touched; /* merge step that last changed count */
} pair_stat;

typedef struct {
    int64_t count;
    int32_t pair;
} heap_entry;

typedef struct {
    tfm_strmap sym;
    int32_t *wsym;  /* all words' symbols back to back */
    int64_t *woff;  /* (n_words) */
    int32_t *wlen;  /* (n_words) current number of symbols */
    int64_t *wfreq; /* (n_words) */
    int64_t *wstamp;
    int64_t n_words;
    pair_stat *pairs;
    int64_t n_pairs, cap_pairs;
    tfm_u64map pair_index;
    heap_entry *heap;
    int64_t n_heap, cap_heap;
    int32_t *touched;
    int64_t n_touched, cap_touched;
    int64_t step;
    char *tmp;
    int64_t tmp_cap;
} learner;

static void learner_free(learner *L) {
    tfm_strmap_free(&L->sym);
    free(L->wsym);
    free(L->woff);
    free(L->wlen);
    free(L->wfreq);
    free(L->wstamp);
    for (int64_t i = 0; i < L->n_pairs; i++) free(L->pairs[i].words);
    free(L->pairs);
    tfm_u64map_free(&L->pair_index);
    free(L->heap);
    free(L->touched);
    free(L->tmp);
}

/* Heap order: higher count first, then the lexicographically greater pair
 * (first symbol, then second), matching max(stats, key=(freq, pair)). */
static int heap_before(const learner *L, heap_entry x, heap_entry y) {
    if (x.count != y.count) return x.count > y.count;
    const pair_stat *px = &L->pairs[x.pair], *py = &L->pairs[y.pair];
    int c = strcmp(tfm_strmap_key(&L->sym, px->a), tfm_strmap_key(&L->sym, py->a));
    if (c == 0) c = strcmp(tfm_strmap_key(&L->sym, px->b), tfm_strmap_key(&L->sym, py->b));
    return c > 0;
}

static void heap_sift_down(learner *L, int64_t i) {
    heap_entry *h = L->heap;
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < L->n_heap && heap_before(L, h[l], h[best])) best = l;
        if (r < L->n_heap && heap_before(L, h[r], h[best])) best = r;
        if (best == i) return;
        heap_entry t = h[i];
        h[i] = h[best];
        h[best] = t;
        i = best;
    }
}

static int heap_push(learner *L, int32_t pair) {
    if (tfm_grow((void **)&L->heap, &L->cap_heap, L->n_heap + 1, sizeof *L->heap)) return -1;
    heap_entry e = {L->pairs[pair].count, pair};
    int64_t i = L->n_heap++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!heap_before(L, e, L->heap[parent])) break;
        L->heap[i] = L->heap[parent];
        i = parent;
    }
    L->heap[i] = e;
    L->pairs[pair].pushed = e.count;
    return 0;
}

static void heap_pop(learner *L) {
    L->heap[0] = L->heap[--L->n_heap];
    if (L->n_heap) heap_sift_down(L, 0);
}

/* Adds freq to the count of (a, b), creating it; records w in its word list
 * when list is set. Returns the pair index or -1. */
static int64_t pair_update(learner *L, int32_t a, int32_t b, int64_t freq, int32_t w, int list) {
    int added;
    int32_t *slot = tfm_u64map_put(&L->pair_index, pair_key(a, b), (int32_t)L->n_pairs, &added);
    if (!slot) return -1;
    int32_t p = *slot;
    if (added) {
        if (L->n_pairs >= INT32_MAX) {
            tfm_set_error("too many distinct symbol pairs");
            return -1;
        }
        if (tfm_grow((void **)&L->pairs, &L->cap_pairs, L->n_pairs + 1, sizeof *L->pairs))
            return -1;
        memset(&L->pairs[p], 0, sizeof L->pairs[p]);
        L->pairs[p].a = a;
        L->pairs[p].b = b;
        L->pairs[p].touched = -1;
        L->n_pairs++;
    }
    pair_stat *ps = &L->pairs[p];
    ps->count += freq;
    if (list && (ps->n_words == 0 || ps->words[ps->n_words - 1] != w)) {
        int64_t cap = ps->cap_words;
        if (tfm_grow((void **)&ps->words, &cap, (int64_t)ps->n_words + 1, sizeof(int32_t)))
            return -1;
        ps->cap_words = (int32_t)cap;
        ps->words[ps->n_words++] = w;
    }
    if (ps->touched != L->step) {
        ps->touched = L->step;
        if (tfm_grow((void **)&L->touched, &L->cap_touched, L->n_touched + 1, sizeof(int32_t)))
            return -1;
        L->touched[L->n_touched++] = p;
    }
    return p;
}

/* Builds the symbol sequences of the counted words: code points, the last
 * one with "</w>" appended. */
static int learner_init(learner *L, const word_counter *wc) {
    int64_t n = wc->words.n, total = 0;
    for (int64_t w = 0; w < n; w++) total += wc->words.key_len[w];
    L->n_words = n;
    L->wsym = malloc((size_t)(total ? total : 1) * sizeof *L->wsym);
    L->woff = malloc((size_t)(n ? n : 1) * sizeof *L->woff);
    L->wlen = malloc((size_t)(n ? n : 1) * sizeof *L->wlen);
    L->wfreq = malloc((size_t)(n ? n : 1) * sizeof *L->wfreq);
    L->wstamp = malloc((size_t)(n ? n : 1) * sizeof *L->wstamp);
    if (!L->wsym || !L->woff || !L->wlen || !L->wfreq || !L->wstamp) {
        tfm_set_error("out of memory for %lld words", (long long)n);
        return -1;
    }
    if (n >= INT32_MAX) {
        tfm_set_error("too many distinct words (%lld)", (long long)n);
        return -1;
    }
    int64_t off = 0;
    for (int64_t w = 0; w < n; w++) {
        const char *s = tfm_strmap_key(&wc->words, w);
        size_t len = wc->words.key_len[w], pos = 0;
        L->woff[w] = off;
        L->wfreq[w] = wc->count[w];
        L->wstamp[w] = -1;
        int32_t k = 0;
        while (pos < len) {
            size_t cl = tfm_utf8_seq_len(s + pos, len - pos);
            TFM_ASSERT(cl > 0, "words were validated");
            size_t sl = cl;
            const char *sym = s + pos;
            if (pos + cl == len) {
                if (tfm_grow((void **)&L->tmp, &L->tmp_cap, (int64_t)(cl + EOW_LEN), 1)) return -1;
                memcpy(L->tmp, sym, cl);
                memcpy(L->tmp + cl, TFM_BPE_EOW, EOW_LEN);
                sym = L->tmp;
                sl = cl + EOW_LEN;
            }
            int64_t id = tfm_strmap_add(&L->sym, sym, sl, NULL);
            if (id < 0) return -1;
            L->wsym[off + k++] = (int32_t)id;
            pos += cl;
        }
        L->wlen[w] = k;
        off += k;
    }
    L->step = -1; /* not a merge step: merge 0 must see every pair it touches */
    for (int64_t w = 0; w < n; w++) {
        const int32_t *s = L->wsym + L->woff[w];
        for (int32_t i = 0; i + 1 < L->wlen[w]; i++)
            if (pair_update(L, s[i], s[i + 1], L->wfreq[w], (int32_t)w, 1) < 0) return -1;
    }
    L->n_touched = 0;
    /* Heapify all pairs at once. */
    if (tfm_grow((void **)&L->heap, &L->cap_heap, L->n_pairs, sizeof *L->heap)) return -1;
    for (int64_t p = 0; p < L->n_pairs; p++) {
        L->heap[p] = (heap_entry){L->pairs[p].count, (int32_t)p};
        L->pairs[p].pushed = L->pairs[p].count;
    }
    L->n_heap = L->n_pairs;
    for (int64_t i = L->n_heap / 2 - 1; i >= 0; i--) heap_sift_down(L, i);
    return 0;
}

/* Replaces every non-overlapping (a, b) in word w, left to right, by s, and
 * moves the word's pair counts from the old sequence to the new one. */
static int merge_word(learner *L, int32_t w, int32_t a, int32_t b, int32_t s) {
    int32_t *sym = L->wsym + L->woff[w];
    int32_t len = L->wlen[w];
    int64_t f = L->wfreq[w];
    int found = 0;
    for (int32_t i = 0; i + 1 < len && !found; i++) found = sym[i] == a && sym[i + 1] == b;
    if (!found) return 0;
    for (int32_t i = 0; i + 1 < len; i++)
        if (pair_update(L, sym[i], sym[i + 1], -f, w, 0) < 0) return -1;
    int32_t j = 0;
    for (int32_t i = 0; i < len;) {
        if (i + 1 < len && sym[i] == a && sym[i + 1] == b) {
            sym[j++] = s;
            i += 2;
        } else {
            sym[j++] = sym[i++];
        }
    }
    L->wlen[w] = j;
    /* Only pairs with the new symbol are new to this word; the others were
     * already listed. */
    for (int32_t i = 0; i + 1 < j; i++)
        if (pair_update(L, sym[i], sym[i + 1], f, w, sym[i] == s || sym[i + 1] == s) < 0) return -1;
    return 0;
}

static tfm_bpe *learn(word_counter *wc, int64_t n_merges, int64_t min_freq, FILE *log) {
    if (min_freq < 1) {
        tfm_set_error("min-freq must be at least 1 (got %lld)", (long long)min_freq);
        return NULL;
    }
    if (n_merges < 0) {
        tfm_set_error("number of merges must be >= 0 (got %lld)", (long long)n_merges);
        return NULL;
    }
    learner L;
    memset(&L, 0, sizeof L);
    tfm_bpe *b = bpe_new(2);
    if (!b || learner_init(&L, wc)) goto fail;
    for (int64_t m = 0; m < n_merges; m++) {
        /* Drop stale entries: their count no longer matches the pair's. */
        while (L.n_heap && L.heap[0].count != L.pairs[L.heap[0].pair].count) heap_pop(&L);
        if (!L.n_heap || L.heap[0].count < min_freq) {
            if (log)
                fprintf(log, "bpe: no pair has frequency >= %lld; stopping after %lld merges\n",
                        (long long)min_freq, (long long)m);
            break;
        }
        int32_t p = L.heap[0].pair;
        int32_t a = L.pairs[p].a, bb = L.pairs[p].b;
        heap_pop(&L);
        size_t la = L.sym.key_len[a], lb = L.sym.key_len[bb];
        if (tfm_grow((void **)&L.tmp, &L.tmp_cap, (int64_t)(la + lb), 1)) goto fail;
        memcpy(L.tmp, tfm_strmap_key(&L.sym, a), la);
        memcpy(L.tmp + la, tfm_strmap_key(&L.sym, bb), lb);
        int64_t s = tfm_strmap_add(&L.sym, L.tmp, la + lb, NULL);
        if (s >= INT32_MAX) tfm_set_error("too many symbols");
        if (s < 0 || s >= INT32_MAX) goto fail;
        if (bpe_add_merge(b, tfm_strmap_key(&L.sym, a), la, tfm_strmap_key(&L.sym, bb), lb))
            goto fail;
        if (log && (m + 1) % 1000 == 0)
            fprintf(log, "bpe: merge %lld: %s %s (%lld)\n", (long long)m + 1,
                    tfm_strmap_key(&L.sym, a), tfm_strmap_key(&L.sym, bb),
                    (long long)L.pairs[p].count);
        /* Detach the word list: no word gains (a, b) while merging it, since
         * new pairs all contain the new symbol s. */
        int32_t *list = L.pairs[p].words;
        int32_t n_list = L.pairs[p].n_words;
        L.pairs[p].words = NULL;
        L.pairs[p].n_words = L.pairs[p].cap_words = 0;
        L.step = m;
        L.n_touched = 0;
        int rc = 0;
        for (int32_t i = 0; i < n_list && rc == 0; i++) {
            int32_t w = list[i];
            if (L.wstamp[w] == m) continue;
            L.wstamp[w] = m;
            rc = merge_word(&L, w, a, bb, (int32_t)s);
        }
        free(list);
        if (rc) goto fail;
        TFM_ASSERT(L.pairs[p].count == 0, "merged pair still counted %lld",
                   (long long)L.pairs[p].count);
        for (int64_t i = 0; i < L.n_touched; i++) {
            int32_t q = L.touched[i];
            if (L.pairs[q].count > 0 && L.pairs[q].count != L.pairs[q].pushed && heap_push(&L, q))
                goto fail;
        }
    }
    learner_free(&L);
    return b;
fail:
    learner_free(&L);
    tfm_bpe_free(b);
    return NULL;
}

tfm_bpe *tfm_bpe_learn_files(const char *const *paths, int n_paths, int64_t n_merges,
                             int64_t min_freq, FILE *log) {
    word_counter wc;
    memset(&wc, 0, sizeof wc);
    for (int i = 0; i < n_paths; i++) {
        if (tfm_each_line_file(paths[i], count_line, &wc)) {
            word_counter_free(&wc);
            return NULL;
        }
    }
    tfm_bpe *b = learn(&wc, n_merges, min_freq, log);
    word_counter_free(&wc);
    return b;
}

tfm_bpe *tfm_bpe_learn_texts(const tfm_text_input *in, int n, int64_t n_merges, int64_t min_freq,
                             FILE *log) {
    if (n < 0 || (n > 0 && !in))
        return tfm_set_error("bpe learn: %d texts%s", n, n > 0 ? " at NULL" : ""), NULL;
    word_counter wc;
    memset(&wc, 0, sizeof wc);
    for (int i = 0; i < n; i++) {
        if (tfm_each_line_mem(in[i].text, in[i].len, in[i].name, count_line, &wc)) {
            word_counter_free(&wc);
            return NULL;
        }
    }
    tfm_bpe *b = learn(&wc, n_merges, min_freq, log);
    word_counter_free(&wc);
    return b;
}

tfm_bpe *tfm_bpe_learn_text(const char *text, size_t len, const char *name, int64_t n_merges,
                            int64_t min_freq) {
    word_counter wc;
    memset(&wc, 0, sizeof wc);
    if (tfm_each_line_mem(text, len, name, count_line, &wc)) {
        word_counter_free(&wc);
        return NULL;
    }
    tfm_bpe *b = learn(&wc, n_merges, min_freq, NULL);
    word_counter_free(&wc);
    return b;
}

/* -------------------------------------------------------- codes files */

typedef struct {
    tfm_bpe *b;
    int first;
} codes_reader;

static int codes_line(void *ctx, const char *line, size_t len, const char *name, int64_t lineno) {
    codes_reader *cr = ctx;
    /* a UTF-8 byte order mark (an editor's) would hide the version line and
     * become part of the first merge: skipped, as config files do */
    if (cr->first) {
        size_t bom = tfm_utf8_bom_len(line, len);
        line += bom, len -= bom;
    }
    if (tfm_text_check_line(line, len, name, lineno)) return -1;
    /* apply_bpe.py strips spaces, '\r' and '\n' at both ends. */
    while (len && (line[len - 1] == ' ' || line[len - 1] == '\r')) len--;
    while (len && (line[0] == ' ' || line[0] == '\r')) line++, len--;
    if (cr->first) {
        cr->first = 0;
        if (len >= 9 && memcmp(line, "#version:", 9) == 0) {
            /* The last whitespace-separated field, trailing ".0"s ignored. */
            size_t end = len, start = end;
            while (start > 9 && !tfm_text_is_space((unsigned char)line[start - 1])) start--;
            char ver[32];
            size_t vl = end - start;
            if (vl == 0 || vl >= sizeof ver) goto bad_version;
            memcpy(ver, line + start, vl);
            ver[vl] = 0;
            /* Like apply_bpe.py, drop trailing (\.0+)*: "0.2.0" is "0.2". */
            for (;;) {
                char *dot = strrchr(ver, '.');
                if (!dot || !dot[1] || strspn(dot + 1, "0") != strlen(dot + 1)) break;
                *dot = 0;
            }
            if (!strcmp(ver, "0.2"))
                cr->b->version = 2;
            else if (!strcmp(ver, "0.1"))
                cr->b->version = 1;
            else
                goto bad_version;
            return 0;
        bad_version:
            tfm_set_error("%s:%lld: unsupported codes version '%.*s' (want 0.1 or 0.2)", name,
                          (long long)lineno, (int)(len > 60 ? 60 : len), line);
            return -1;
        }
        cr->b->version = 1; /* no header: subword-nmt reads the file as 0.1 */
    }
    const char *sp = memchr(line, ' ', len);
    size_t ll = sp ? (size_t)(sp - line) : 0;
    const char *r = sp ? sp + 1 : NULL;
    size_t rl = sp ? len - ll - 1 : 0;
    int ok = sp && ll > 0 && rl > 0;
    for (size_t i = 0; ok && i < len; i++)
        if (line + i != sp && tfm_text_is_space((unsigned char)line[i])) ok = 0;
    if (!ok) {
        tfm_set_error("%s:%lld: malformed merge '%.*s': want two symbols separated by one space",
                      name, (long long)lineno, (int)(len > 60 ? 60 : len), line);
        return -1;
    }
    return bpe_add_merge(cr->b, line, ll, r, rl);
}

static tfm_bpe *codes_finish(tfm_bpe *b, int rc) {
    if (rc) {
        tfm_bpe_free(b);
        return NULL;
    }
    int64_t e = tfm_strmap_find(&b->sym, TFM_BPE_EOW, EOW_LEN);
    b->eow_id = (int32_t)e;
    return b;
}

tfm_bpe *tfm_bpe_load_mem(const char *data, size_t len, const char *name) {
    tfm_bpe *b = bpe_new(1);
    if (!b) return NULL;
    codes_reader cr = {b, 1};
    /* apply_bpe.py drops trailing newlines but rejects empty lines inside. */
    size_t n = len;
    while (n && data[n - 1] == '\n') n--;
    return codes_finish(b, tfm_each_line_mem(data, n, name, codes_line, &cr));
}

tfm_bpe *tfm_bpe_load(const char *path) {
    FILE *f = tfm_open_input(path);
    if (!f) return NULL;
    tfm_buf buf = {0};
    int failed = tfm_buf_read_all(&buf, f);
    fclose(f);
    if (failed) {
        if (buf.oom)
            tfm_set_error("%s: out of memory", path);
        else
            tfm_set_error("%s: read error", path);
        tfm_buf_free(&buf);
        return NULL;
    }
    tfm_bpe *b = tfm_bpe_load_mem(buf.p, buf.len, path);
    tfm_buf_free(&buf);
    return b;
}

int tfm_bpe_save(const tfm_bpe *b, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        tfm_set_error("%s: cannot open for writing: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "#version: 0.%d\n", b->version);
    for (int64_t i = 0; i < b->n_merges; i++)
        fprintf(f, "%s %s\n", tfm_strmap_key(&b->sym, b->m_left[i]),
                tfm_strmap_key(&b->sym, b->m_right[i]));
    if (fclose(f) != 0) {
        tfm_set_error("%s: write error", path);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------- applying */

static int32_t sym_id(const tfm_bpe *b, const char *s, size_t len) {
    return (int32_t)tfm_strmap_find(&b->sym, s, len);
}

/* The symbols of one (escaped) word after subword-nmt's algorithm, in
 * b->s_id / s_start / s_end (a symbol is a byte range of the word; the last
 * one carries the end-of-word marker); returns their number, or -1. While
 * some adjacent pair has a merge, merge every non-overlapping occurrence of
 * the lowest-rank one, left to right. With rng (BPE-dropout, p > 0), as
 * apply_bpe.py --dropout: each step first draws for every adjacent pair,
 * which survives when the draw is >= p; only surviving pairs count, only
 * their occurrences are merged, and the word is final when none survives. */
static int64_t merge_symbols(tfm_bpe *b, const char *w, size_t len, double p, tfm_rng *rng) {
    int64_t n_cp = (int64_t)len + 1; /* upper bound, plus version 1's "</w>" */
    if (n_cp > b->s_cap) {
        int64_t cap = b->s_cap;
        if (tfm_grow((void **)&b->s_id, &cap, n_cp, sizeof *b->s_id)) return -1;
        uint32_t *ns = realloc(b->s_start, (size_t)cap * sizeof *ns);
        if (!ns) goto oom;
        b->s_start = ns;
        uint32_t *ne = realloc(b->s_end, (size_t)cap * sizeof *ne);
        if (!ne) goto oom;
        b->s_end = ne;
        uint8_t *nk = realloc(b->s_keep, (size_t)cap);
        if (!nk) goto oom;
        b->s_keep = nk;
        b->s_cap = cap;
    }

    int32_t *id = b->s_id;
    uint32_t *st = b->s_start, *en = b->s_end;
    uint8_t *keep = b->s_keep;
    int64_t n = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t cl = tfm_utf8_seq_len(w + pos, len - pos);
        TFM_ASSERT(cl > 0, "words were validated");
        st[n] = (uint32_t)pos;
        en[n] = (uint32_t)(pos + cl);
        if (pos + cl == len && b->version == 2) {
            if (tmp_reserve(b, cl + EOW_LEN)) return -1;
            memcpy(b->tmp, w + pos, cl);
            memcpy(b->tmp + cl, TFM_BPE_EOW, EOW_LEN);
            id[n] = sym_id(b, b->tmp, cl + EOW_LEN);
        } else {
            id[n] = sym_id(b, w + pos, cl);
        }
        n++;
        pos += cl;
    }
    if (b->version == 1) {
        st[n] = en[n] = (uint32_t)len;
        id[n++] = b->eow_id;
    }
    const int drop = rng && p > 0;
    while (n > 1) {
        int32_t best = INT32_MAX;
        for (int64_t i = 0; i + 1 < n; i++) {
            keep[i] = !drop || tfm_rng_double(rng) >= p;
            if (!keep[i] || id[i] < 0 || id[i + 1] < 0) continue;
            int32_t r = tfm_u64map_get(&b->pair_rank, pair_key(id[i], id[i + 1]));
            if (r >= 0 && r < best) best = r;
        }
        if (best == INT32_MAX) break;
        int32_t l = b->m_left[best], r = b->m_right[best], res = b->m_result[best];
        int64_t j = 0;
        for (int64_t i = 0; i < n;) {
            if (i + 1 < n && keep[i] && id[i] == l && id[i + 1] == r) {
                id[j] = res;
                st[j] = st[i];
                en[j] = en[i + 1];
                i += 2;
            } else {
                id[j] = id[i];
                st[j] = st[i];
                en[j] = en[i];
                i++;
            }
            j++;
        }
        n = j;
    }
    /* Version 1 leaves a bare "</w>" (an empty range) when unmerged. */
    if (n > 1 && st[n - 1] == en[n - 1]) n--;
    return n;
oom:
    tfm_set_error("out of memory segmenting a word of %zu bytes", len);
    return -1;
}

/* Segments one (escaped) word (merge_symbols, no dropout). Appends [n,
 * len...] to the cache values and returns its offset, or -1. */
static int64_t segment_word(tfm_bpe *b, const char *w, size_t len) {
    int64_t n = merge_symbols(b, w, len, 0.0, NULL);
    if (n < 0) return -1;
    const uint32_t *st = b->s_start, *en = b->s_end;
    int64_t at = b->cache_val_n;
    if (tfm_grow((void **)&b->cache_val, &b->cache_val_cap, at + 1 + n, sizeof *b->cache_val))
        return -1;
    b->cache_val[at] = (uint32_t)n;
    for (int64_t i = 0; i < n; i++) b->cache_val[at + 1 + i] = en[i] - st[i];
    b->cache_val_n = at + 1 + n;
    return at;
}

static void cache_clear(tfm_bpe *b) {
    tfm_strmap_free(&b->cache);
    b->cache_val_n = 0;
}

/* Offset in cache_val of the word's pieces, segmenting it on a miss. */
static int64_t pieces_of(tfm_bpe *b, const char *w, size_t len) {
    int64_t e = tfm_strmap_find(&b->cache, w, len);
    if (e >= 0) return b->cache_at[e];
    if (b->cache.n >= CACHE_MAX_WORDS) cache_clear(b);
    int64_t at = segment_word(b, w, len);
    if (at < 0) return -1;
    e = tfm_strmap_add(&b->cache, w, len, NULL);
    if (e < 0 || tfm_grow((void **)&b->cache_at, &b->cache_at_cap, e + 1, sizeof *b->cache_at))
        return -1;
    b->cache_at[e] = at;
    return at;
}

void tfm_subwords_free(tfm_subwords *s) {
    free(s->offset);
    free(s->data);
    memset(s, 0, sizeof *s);
}

static int subwords_push(tfm_subwords *s, const char *p, size_t len, int sep) {
    size_t need = len + (sep ? 2 : 0) + 1;
    if (tfm_grow((void **)&s->offset, &s->cap, s->n + 1, sizeof *s->offset)) return -1;
    if (tfm_bytes_reserve(&s->data, &s->data_cap, s->data_len, need)) {
        tfm_set_error("out of memory");
        return -1;
    }
    s->offset[s->n++] = s->data_len;
    char *o = s->data + s->data_len;
    memcpy(o, p, len);
    if (sep) memcpy(o + len, TFM_BPE_SEP, 2);
    o[need - 1] = 0;
    s->data_len += need;
    return 0;
}

/* tfm_bpe_segment, with BPE-dropout when rng is non-NULL and p > 0 (the
 * cache only holds the deterministic segmentation). */
static int segment_line(tfm_bpe *b, const char *line, size_t len, double p, tfm_rng *rng,
                        tfm_subwords *out) {
    out->n = 0;
    out->data_len = 0;
    size_t bad;
    if (tfm_utf8_check(line, len, &bad)) {
        tfm_set_error("invalid UTF-8 at byte %zu", bad + 1);
        return -1;
    }
    if (memchr(line, 0, len)) {
        tfm_set_error("NUL byte at byte %zu",
                      (size_t)((const char *)memchr(line, 0, len) - line) + 1);
        return -1;
    }
    const int drop = rng && p > 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && tfm_text_is_space((unsigned char)line[i])) i++;
        size_t start = i;
        while (i < len && !tfm_text_is_space((unsigned char)line[i])) i++;
        if (i == start) break;
        const char *w = line + start;
        size_t wl = i - start;
        if (word_needs_escape(w, wl)) {
            if (tfm_grow((void **)&b->esc, &b->esc_cap, (int64_t)wl + 1, 1)) return -1;
            memcpy(b->esc, w, wl);
            b->esc[wl++] = TFM_BPE_ESCAPE;
            w = b->esc;
        }
        if (drop) {
            int64_t np = merge_symbols(b, w, wl, p, rng);
            if (np < 0) return -1;
            for (int64_t k = 0; k < np; k++) {
                /* the last range ends at the word's end (version 1: the
                 * "</w>" symbol merged into it, or removed) */
                size_t s0 = b->s_start[k], s1 = k + 1 < np ? b->s_end[k] : wl;
                if (subwords_push(out, w + s0, s1 - s0, k + 1 < np)) return -1;
            }
            continue;
        }
        int64_t at = pieces_of(b, w, wl);
        if (at < 0) return -1;
        uint32_t np = b->cache_val[at];
        size_t off = 0;
        for (uint32_t k = 0; k < np; k++) {
            uint32_t pl = b->cache_val[at + 1 + k];
            if (subwords_push(out, w + off, pl, k + 1 < np)) return -1;
            off += pl;
        }
    }
    return 0;
}

int tfm_bpe_segment(tfm_bpe *b, const char *line, size_t len, tfm_subwords *out) {
    return segment_line(b, line, len, 0.0, NULL, out);
}

int tfm_bpe_segment_dropout(tfm_bpe *b, const char *line, size_t len, double p, tfm_rng *rng,
                            tfm_subwords *out) {
    if (!(p >= 0 && p <= 1)) {
        tfm_set_error("BPE-dropout %g: must be between 0 and 1", p);
        return -1;
    }
    return segment_line(b, line, len, p, rng, out);
}

/* ------------------------------------------------------ detokenising */

/* Closes the word out[ws..o): undoes the '~' escape, or removes the space
 * before an empty word. Returns the new output length. */
static size_t finish_word(char *out, size_t ws, size_t o) {
    if (o == ws) return ws > 0 ? ws - 1 : 0;
    size_t k = o;
    while (k > ws && out[k - 1] == TFM_BPE_ESCAPE) k--;
    if (k < o && k - ws >= 2 && out[k - 1] == '@' && out[k - 2] == '@') return o - 1;
    return o;
}

size_t tfm_bpe_detok(const char *in, size_t len, char *out) {
    size_t o = 0, ws = 0, i = 0;
    int have_word = 0, join = 0;
    while (i < len) {
        while (i < len && tfm_text_is_space((unsigned char)in[i])) i++;
        size_t start = i;
        while (i < len && !tfm_text_is_space((unsigned char)in[i])) i++;
        if (i == start) break;
        size_t tl = i - start;
        if (!join) {
            if (have_word) o = finish_word(out, ws, o);
            if (o > 0) out[o++] = ' ';
            ws = o;
            have_word = 1;
        }
        join = tl >= 2 && in[i - 1] == '@' && in[i - 2] == '@';
        if (join) tl -= 2;
        memmove(out + o, in + start, tl);
        o += tl;
    }
    if (have_word) o = finish_word(out, ws, o);
    out[o] = 0;
    return o;
}

/* --------------------------------------------- internals for vocab.c */

tfm_subwords *tfm_bpe_scratch_(tfm_bpe *b) { return &b->scratch; }
