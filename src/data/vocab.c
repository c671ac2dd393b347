/* Token vocabulary: specials first, then subwords by frequency; file
 * load/save with file:line errors, hash lookup, and the one-call
 * encoder/decoder that the trainer and the translator use. Format in
 * tfm/text.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text_util.h"
#include "tfm/base.h"
#include "tfm/text.h"

struct tfm_vocab {
    tfm_strmap map; /* token -> id (entry index = id) */
    int64_t *count; /* (size) */
    int64_t count_cap;
};

static const char *const SPECIALS[TFM_N_SPECIALS] = {TFM_PAD_TOKEN, TFM_BOS_TOKEN, TFM_EOS_TOKEN,
                                                     TFM_UNK_TOKEN};

void tfm_vocab_free(tfm_vocab *v) {
    if (!v) return;
    tfm_strmap_free(&v->map);
    free(v->count);
    free(v);
}

int32_t tfm_vocab_size(const tfm_vocab *v) { return (int32_t)v->map.n; }

int32_t tfm_vocab_id_n(const tfm_vocab *v, const char *token, size_t len) {
    int64_t e = tfm_strmap_find(&v->map, token, len);
    return e < 0 ? TFM_UNK_ID : (int32_t)e;
}

int32_t tfm_vocab_id(const tfm_vocab *v, const char *token) {
    return tfm_vocab_id_n(v, token, strlen(token));
}

const char *tfm_vocab_token(const tfm_vocab *v, int32_t id) {
    return id >= 0 && id < v->map.n ? tfm_strmap_key(&v->map, id) : NULL;
}

int64_t tfm_vocab_count(const tfm_vocab *v, int32_t id) {
    return id >= 0 && id < v->map.n ? v->count[id] : 0;
}

/* Appends a token; returns its id, or -1 (error set) when out of memory.
 * *dup is set when the token was already there. */
static int64_t vocab_add(tfm_vocab *v, const char *tok, size_t len, int64_t count, int *dup) {
    int added;
    int64_t e = tfm_strmap_add(&v->map, tok, len, &added);
    if (e < 0) return -1;
    *dup = !added;
    if (added) {
        if (tfm_grow((void **)&v->count, &v->count_cap, e + 1, sizeof *v->count)) return -1;
        v->count[e] = count;
    }
    return e;
}

static tfm_vocab *vocab_with_specials(void) {
    tfm_vocab *v = calloc(1, sizeof *v);
    if (!v) {
        tfm_set_error("out of memory");
        return NULL;
    }
    int dup;
    for (int i = 0; i < TFM_N_SPECIALS; i++)
        if (vocab_add(v, SPECIALS[i], strlen(SPECIALS[i]), 0, &dup) < 0) {
            tfm_vocab_free(v);
            return NULL;
        }
    return v;
}

/* ------------------------------------------------------------- files */

static int vocab_line(void *ctx, const char *line, size_t len, const char *name, int64_t lineno) {
    tfm_vocab *v = ctx;
    /* a UTF-8 byte order mark (an editor's) before <pad>: skipped, as config files do */
    if (lineno == 1) {
        size_t bom = tfm_utf8_bom_len(line, len);
        line += bom, len -= bom;
    }
    if (len && line[len - 1] == '\r') len--;
    if (tfm_text_check_line(line, len, name, lineno)) return -1;
    if (len == 0) {
        tfm_set_error("%s:%lld: empty line (every line must hold a token)", name,
                      (long long)lineno);
        return -1;
    }
    const char *sp = memchr(line, ' ', len);
    size_t tl = sp ? (size_t)(sp - line) : len;
    int64_t count = 0;
    if (sp) {
        const char *c = sp + 1, *end = line + len;
        if (c == end) goto bad_count;
        for (; c < end; c++) {
            if (*c < '0' || *c > '9' || count > (INT64_MAX - 9) / 10) goto bad_count;
            count = count * 10 + (*c - '0');
        }
    }
    for (size_t i = 0; i < tl; i++)
        if (tfm_text_is_space((unsigned char)line[i])) {
            tfm_set_error("%s:%lld: token contains whitespace", name, (long long)lineno);
            return -1;
        }
    if (tl == 0) {
        tfm_set_error("%s:%lld: empty token", name, (long long)lineno);
        return -1;
    }
    if (lineno <= TFM_N_SPECIALS) {
        const char *want = SPECIALS[lineno - 1];
        if (tl != strlen(want) || memcmp(line, want, tl) != 0) {
            tfm_set_error("%s:%lld: expected special token '%s' (the first lines must be <pad>, "
                          "<s>, </s>, <unk>)",
                          name, (long long)lineno, want);
            return -1;
        }
    }
    int dup;
    int64_t id = vocab_add(v, line, tl, count, &dup);
    if (id < 0) return -1;
    if (dup) {
        tfm_set_error("%s:%lld: duplicate token '%.*s' (first on line %lld)", name,
                      (long long)lineno, (int)(tl > 60 ? 60 : tl), line, (long long)id + 1);
        return -1;
    }
    if (id >= INT32_MAX - 1) {
        tfm_set_error("%s:%lld: too many tokens", name, (long long)lineno);
        return -1;
    }
    return 0;
bad_count:
    tfm_set_error("%s:%lld: malformed line: want 'TOKEN' or 'TOKEN COUNT' with a decimal count",
                  name, (long long)lineno);
    return -1;
}

tfm_vocab *tfm_vocab_load_mem(const char *data, size_t len, const char *name) {
    tfm_vocab *v = calloc(1, sizeof *v);
    if (!v) {
        tfm_set_error("out of memory");
        return NULL;
    }
    if (tfm_each_line_mem(data, len, name, vocab_line, v)) {
        tfm_vocab_free(v);
        return NULL;
    }
    if (v->map.n < TFM_N_SPECIALS) {
        tfm_set_error("%s: %lld lines, but the first %d must be <pad>, <s>, </s>, <unk>", name,
                      (long long)v->map.n, TFM_N_SPECIALS);
        tfm_vocab_free(v);
        return NULL;
    }
    return v;
}

tfm_vocab *tfm_vocab_load(const char *path) {
    tfm_vocab *v = calloc(1, sizeof *v);
    if (!v) {
        tfm_set_error("out of memory");
        return NULL;
    }
    if (tfm_each_line_file(path, vocab_line, v)) {
        tfm_vocab_free(v);
        return NULL;
    }
    if (v->map.n < TFM_N_SPECIALS) {
        tfm_set_error("%s: %lld lines, but the first %d must be <pad>, <s>, </s>, <unk>", path,
                      (long long)v->map.n, TFM_N_SPECIALS);
        tfm_vocab_free(v);
        return NULL;
    }
    return v;
}

int tfm_vocab_save(const tfm_vocab *v, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        tfm_set_error("%s: cannot open for writing", path);
        return -1;
    }
    for (int64_t i = 0; i < v->map.n; i++)
        fprintf(f, "%s %lld\n", tfm_strmap_key(&v->map, i), (long long)v->count[i]);
    if (fclose(f) != 0) {
        tfm_set_error("%s: write error", path);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- build */

typedef struct {
    tfm_bpe *bpe;
    tfm_vocab *counts; /* tokens in first-seen order with their counts */
} vocab_builder;

static int build_line(void *ctx, const char *line, size_t len, const char *name, int64_t lineno) {
    vocab_builder *vb = ctx;
    if (tfm_text_check_line(line, len, name, lineno)) return -1;
    tfm_subwords *sw = tfm_bpe_scratch_(vb->bpe);
    if (tfm_bpe_segment(vb->bpe, line, len, sw)) {
        tfm_set_error("%s:%lld: %s", name, (long long)lineno, tfm_last_error());
        return -1;
    }
    for (int64_t i = 0; i < sw->n; i++) {
        const char *t = tfm_subwords_get(sw, i);
        int dup;
        int64_t e = vocab_add(vb->counts, t, strlen(t), 0, &dup);
        if (e < 0) return -1;
        vb->counts->count[e]++;
    }
    return 0;
}

static const tfm_strmap *g_sort_map; /* qsort has no context argument */
static const int64_t *g_sort_count;

static int by_count_then_bytes(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    if (g_sort_count[a] != g_sort_count[b]) return g_sort_count[a] > g_sort_count[b] ? -1 : 1;
    return strcmp(tfm_strmap_key(g_sort_map, a), tfm_strmap_key(g_sort_map, b));
}

/* Specials, then the counted tokens by descending count, ties by bytes. The
 * specials sit at entries 0..3 of the counter too, so a literal "<unk>" in
 * the text only adds to the special's count and gets no second entry. */
static tfm_vocab *build_finish(vocab_builder *vb) {
    tfm_vocab *c = vb->counts;
    int64_t n = c->map.n - TFM_N_SPECIALS;
    int64_t *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    tfm_vocab *v = order ? vocab_with_specials() : NULL;
    if (!v) {
        free(order);
        tfm_set_error("out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) order[i] = TFM_N_SPECIALS + i;
    g_sort_map = &c->map;
    g_sort_count = c->count;
    qsort(order, (size_t)n, sizeof *order, by_count_then_bytes);
    int dup;
    for (int64_t i = 0; i < n; i++) {
        int64_t e = order[i];
        if (vocab_add(v, tfm_strmap_key(&c->map, e), c->map.key_len[e], c->count[e], &dup) < 0 ||
            v->map.n >= INT32_MAX - 1) {
            tfm_vocab_free(v);
            free(order);
            return NULL;
        }
    }
    free(order);
    return v;
}

tfm_vocab *tfm_vocab_build(tfm_bpe *b, const char *const *paths, int n_paths) {
    vocab_builder vb = {b, vocab_with_specials()};
    if (!vb.counts) return NULL;
    for (int i = 0; i < n_paths; i++)
        if (tfm_each_line_file(paths[i], build_line, &vb)) {
            tfm_vocab_free(vb.counts);
            return NULL;
        }
    tfm_vocab *v = build_finish(&vb);
    tfm_vocab_free(vb.counts);
    return v;
}

tfm_vocab *tfm_vocab_build_texts(tfm_bpe *b, const tfm_text_input *in, int n) {
    if (n < 0 || (n > 0 && !in))
        return tfm_set_error("vocab build: %d texts%s", n, n > 0 ? " at NULL" : ""), NULL;
    vocab_builder vb = {b, vocab_with_specials()};
    if (!vb.counts) return NULL;
    for (int i = 0; i < n; i++)
        if (tfm_each_line_mem(in[i].text, in[i].len, in[i].name, build_line, &vb)) {
            tfm_vocab_free(vb.counts);
            return NULL;
        }
    tfm_vocab *v = build_finish(&vb);
    tfm_vocab_free(vb.counts);
    return v;
}

tfm_vocab *tfm_vocab_build_text(tfm_bpe *b, const char *text, size_t len, const char *name) {
    vocab_builder vb = {b, vocab_with_specials()};
    if (!vb.counts) return NULL;
    if (tfm_each_line_mem(text, len, name, build_line, &vb)) {
        tfm_vocab_free(vb.counts);
        return NULL;
    }
    tfm_vocab *v = build_finish(&vb);
    tfm_vocab_free(vb.counts);
    return v;
}

/* ------------------------------------------------- encode / decode */

int64_t tfm_vocab_encode(tfm_bpe *b, const tfm_vocab *v, const char *line, size_t len, int32_t *ids,
                         int64_t cap) {
    return tfm_vocab_encode_dropout(b, v, line, len, 0.0, NULL, ids, cap);
}

int64_t tfm_vocab_encode_dropout(tfm_bpe *b, const tfm_vocab *v, const char *line, size_t len,
                                 double p, tfm_rng *rng, int32_t *ids, int64_t cap) {
    tfm_subwords *sw = tfm_bpe_scratch_(b);
    if (rng ? tfm_bpe_segment_dropout(b, line, len, p, rng, sw) : tfm_bpe_segment(b, line, len, sw))
        return -1;
    for (int64_t i = 0; i < sw->n && i < cap; i++) {
        const char *t = tfm_subwords_get(sw, i);
        ids[i] = tfm_vocab_id_n(v, t, strlen(t));
    }
    return sw->n;
}

char *tfm_vocab_decode(const tfm_vocab *v, const int32_t *ids, int64_t n) {
    if (n < 0) return tfm_set_error("vocab decode: %lld ids", (long long)n), NULL;
    size_t total = 1;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= v->map.n) {
            tfm_set_error("token id %d at position %lld is outside the vocabulary [0, %lld)",
                          ids[i], (long long)i, (long long)v->map.n);
            return NULL;
        }
        total += v->map.key_len[ids[i]] + 1;
    }
    char *joined = malloc(total), *out = malloc(total);
    if (!joined || !out) {
        free(joined);
        free(out);
        tfm_set_error("out of memory");
        return NULL;
    }
    size_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id == TFM_PAD_ID || id == TFM_BOS_ID || id == TFM_EOS_ID) continue;
        size_t l = v->map.key_len[id];
        memcpy(joined + o, tfm_strmap_key(&v->map, id), l);
        o += l;
        joined[o++] = ' ';
    }
    tfm_bpe_detok(joined, o, out);
    free(joined);
    return out;
}

/* ------------------------------------------------- closure under merges */

/* Every symbol of b's merges in our "@@" form, looked up in v: added when
 * missing (add) or only counted. Returns how many were missing, -1 on error. */
static int64_t merge_symbols_missing(tfm_vocab *v, const tfm_bpe *b, int add) {
    if (tfm_bpe_version(b) != 2) {
        tfm_set_error("only version 0.2 codes have word-final symbols to add");
        return -1;
    }
    char *buf = NULL;
    int64_t cap = 0, missing = 0;
    for (int64_t m = 0; m < tfm_bpe_n_merges(b); m++) {
        const char *l = tfm_bpe_merge_left(b, m), *r = tfm_bpe_merge_right(b, m);
        size_t ll = strlen(l), rl = strlen(r);
        for (int which = 0; which < 3; which++) {
            size_t n = which == 0 ? ll : which == 1 ? rl : ll + rl;
            if (tfm_grow((void **)&buf, &cap, (int64_t)n + 3, 1)) goto fail;
            if (which != 1) memcpy(buf, l, ll);
            if (which != 0) memcpy(buf + (which == 2 ? ll : 0), r, rl);
            /* a symbol ending in the end-of-word marker is a word-final
             * piece (marker dropped), any other a continued one ("@@") */
            if (n >= 4 && !memcmp(buf + n - 4, TFM_BPE_EOW, 4))
                n -= 4;
            else {
                memcpy(buf + n, TFM_BPE_SEP, 2);
                n += 2;
            }
            int dup;
            if (tfm_strmap_find(&v->map, buf, n) >= 0) continue;
            if (add && (vocab_add(v, buf, n, 0, &dup) < 0 || v->map.n >= INT32_MAX - 1)) goto fail;
            missing++;
        }
    }
    free(buf);
    return missing;
fail:
    free(buf);
    return -1;
}

int64_t tfm_vocab_add_merge_symbols(tfm_vocab *v, const tfm_bpe *b) {
    return merge_symbols_missing(v, b, 1);
}

int64_t tfm_vocab_missing_merge_symbols(const tfm_vocab *v, const tfm_bpe *b) {
    return merge_symbols_missing((tfm_vocab *)v, b, 0);
}
