/* tokenizer.json against tfm's own encoder and decoder. The Hugging Face side
 * is a re-implementation, written from HF tokenizers' source
 * (tokenizers/src/models/bpe/{model,word}.rs, pre_tokenizers/split.rs,
 * decoders/), of what it does with the file we write: its vocab and merges
 * are read from the file (merges keyed by the ids of their two symbols, the
 * last listed winning, as a Rust HashMap built by collect() does), words are
 * merged by lowest (rank, position) with its expired-entry checks, and the
 * normalizer, pre-tokenizer, post-processor and decoder are checked to be
 * the ones this re-implementation follows. For every line of the numbers
 * corpus and of a generated UTF-8 stress corpus: the ids must be exactly
 * tfm_vocab_encode's plus </s>, every id below the vocabulary size, and
 * decoding tfm's ids must give tfm_vocab_decode's text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/base.h"
#include "tfm/data.h"
#include "tfm/json.h"
#include "tfm/text.h"
#include "util_test.h"

/* ---- the Hugging Face side -------------------------------------------------- */

typedef struct {
    /* vocab: open-addressing string -> id */
    char **key;
    size_t *key_len;
    int32_t *id;
    size_t n_slots;
    /* merges: (a << 32 | b) -> rank, new id */
    uint64_t *m_key;
    int32_t *m_rank, *m_new;
    size_t m_slots;
    int32_t unk_id, eos_id;
    char *added[4]; /* contents of the added tokens 0..3 */
    char **id_str;  /* id -> a string with that id (for decoding) */
    int64_t max_id;
} hf_tok;

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void vocab_put(hf_tok *t, const char *s, size_t n, int32_t id) {
    size_t i = fnv(s, n) & (t->n_slots - 1);
    while (t->key[i] && !(t->key_len[i] == n && !memcmp(t->key[i], s, n)))
        i = (i + 1) & (t->n_slots - 1);
    ck_assert_msg(!t->key[i], "duplicate vocab key %.*s", (int)n, s);
    t->key[i] = malloc(n + 1);
    memcpy(t->key[i], s, n);
    t->key[i][n] = 0;
    t->key_len[i] = n;
    t->id[i] = id;
}

static int32_t vocab_get(const hf_tok *t, const char *s, size_t n) {
    size_t i = fnv(s, n) & (t->n_slots - 1);
    while (t->key[i]) {
        if (t->key_len[i] == n && !memcmp(t->key[i], s, n)) return t->id[i];
        i = (i + 1) & (t->n_slots - 1);
    }
    return -1;
}

static size_t merge_slot(const hf_tok *t, uint64_t k) {
    size_t i = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (t->m_slots - 1);
    while (t->m_key[i] != UINT64_MAX && t->m_key[i] != k) i = (i + 1) & (t->m_slots - 1);
    return i;
}

/* rank of merge (a, b) or -1; *new_id its result */
static int32_t merge_get(const hf_tok *t, int32_t a, int32_t b, int32_t *new_id) {
    size_t i = merge_slot(t, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
    if (t->m_key[i] == UINT64_MAX) return -1;
    *new_id = t->m_new[i];
    return t->m_rank[i];
}

static const char *str_at(const tfm_json *obj, const char *key) {
    const char *s = NULL;
    ck_assert_msg(tfm_json_get_string(obj, key, &s) == 0, "%s", tfm_last_error());
    return s;
}

static void expect_replace(const tfm_json *r, const char *regex, const char *content) {
    ck_assert_str_eq(str_at(r, "type"), "Replace");
    ck_assert_str_eq(str_at(tfm_json_get(r, "pattern"), "Regex"), regex);
    ck_assert_str_eq(str_at(r, "content"), content);
}

/* Reads tokenizer.json and checks that every part is one this file
 * re-implements. */
static void hf_load(hf_tok *t, const char *path) {
    memset(t, 0, sizeof *t);
    tfm_json *doc;
    ck_assert_msg(tfm_json_parse_file(path, NULL, &doc) == 0, "%s", tfm_last_error());
    const tfm_json *added = tfm_json_get(doc, "added_tokens");
    ck_assert_int_eq(tfm_json_len(added), 4);
    for (int i = 0; i < 4; i++) {
        const tfm_json *a = tfm_json_at(added, i);
        int64_t id;
        ck_assert_int_eq(tfm_json_get_int64(a, "id", &id), 0);
        ck_assert_int_eq(id, i);
        t->added[i] = strdup(str_at(a, "content"));
    }
    expect_replace(tfm_json_get(doc, "normalizer"), TFM_HF_ESCAPE_REGEX, "@@~");
    const tfm_json *pre = tfm_json_get(doc, "pre_tokenizer");
    ck_assert_str_eq(str_at(pre, "type"), "Split");
    ck_assert_str_eq(str_at(tfm_json_get(pre, "pattern"), "Regex"), TFM_HF_SPLIT_REGEX);
    ck_assert_str_eq(str_at(pre, "behavior"), "Removed");
    int inv;
    ck_assert_int_eq(tfm_json_get_bool(pre, "invert", &inv), 0);
    ck_assert_int_eq(inv, 0);
    const tfm_json *post = tfm_json_get(doc, "post_processor");
    ck_assert_str_eq(str_at(post, "type"), "TemplateProcessing");
    const tfm_json *single = tfm_json_get(post, "single");
    ck_assert_int_eq(tfm_json_len(single), 2);
    ck_assert_str_eq(str_at(tfm_json_get(tfm_json_at(single, 0), "Sequence"), "id"), "A");
    const char *eos = str_at(tfm_json_get(tfm_json_at(single, 1), "SpecialToken"), "id");
    const tfm_json *ids =
        tfm_json_get(tfm_json_get(tfm_json_get(post, "special_tokens"), eos), "ids");
    ck_assert_int_eq(tfm_json_len(ids), 1);
    int64_t eos_id;
    ck_assert_int_eq(tfm_json_as_int64(tfm_json_at(ids, 0), &eos_id), 0);
    t->eos_id = (int32_t)eos_id;
    const tfm_json *dec = tfm_json_get(doc, "decoder");
    ck_assert_str_eq(str_at(dec, "type"), "Sequence");
    const tfm_json *ds = tfm_json_get(dec, "decoders");
    ck_assert_int_eq(tfm_json_len(ds), 6);
    expect_replace(tfm_json_at(ds, 0), "\\A<unk>\\z", "<unk></w>");
    expect_replace(tfm_json_at(ds, 1), "\\A(?:<pad>|<s>|</s>)\\z", "");
    expect_replace(tfm_json_at(ds, 2), "</w>\\z", " ");
    ck_assert_str_eq(str_at(tfm_json_at(ds, 3), "type"), "Fuse");
    expect_replace(tfm_json_at(ds, 4), " \\z", "");
    expect_replace(tfm_json_at(ds, 5), TFM_HF_UNESCAPE_REGEX, "");

    const tfm_json *model = tfm_json_get(doc, "model");
    ck_assert_str_eq(str_at(model, "type"), "BPE");
    ck_assert_str_eq(str_at(model, "end_of_word_suffix"), "</w>");
    ck_assert_int_eq(tfm_json_get(model, "continuing_subword_prefix")->type, TFM_JSON_NULL);
    ck_assert_int_eq(tfm_json_get(model, "dropout")->type, TFM_JSON_NULL);
    int b;
    ck_assert_int_eq(tfm_json_get_bool(model, "fuse_unk", &b), 0);
    ck_assert_int_eq(b, 0);
    ck_assert_int_eq(tfm_json_get_bool(model, "byte_fallback", &b), 0);
    ck_assert_int_eq(b, 0);
    const tfm_json *vocab = tfm_json_get(model, "vocab");
    int64_t n = tfm_json_len(vocab);
    t->n_slots = 16;
    while (t->n_slots < 2 * (size_t)n) t->n_slots *= 2;
    t->key = calloc(t->n_slots, sizeof *t->key);
    t->key_len = calloc(t->n_slots, sizeof *t->key_len);
    t->id = calloc(t->n_slots, sizeof *t->id);
    t->max_id = -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t id;
        ck_assert_int_eq(tfm_json_as_int64(vocab->items[i], &id), 0);
        vocab_put(t, vocab->keys[i], vocab->key_lens[i], (int32_t)id);
        if (id > t->max_id) t->max_id = id;
    }
    t->id_str = calloc((size_t)t->max_id + 1, sizeof *t->id_str);
    for (int64_t i = 0; i < n; i++) { /* a Rust HashMap collect(): some string per id */
        int64_t id;
        tfm_json_as_int64(vocab->items[i], &id);
        t->id_str[id] = vocab->keys[i];
    }
    t->unk_id = vocab_get(t, str_at(model, "unk_token"), strlen(str_at(model, "unk_token")));
    ck_assert_int_ge(t->unk_id, 0);
    const tfm_json *merges = tfm_json_get(model, "merges");
    int64_t nm = tfm_json_len(merges);
    t->m_slots = 16;
    while (t->m_slots < 2 * (size_t)nm) t->m_slots *= 2;
    t->m_key = malloc(t->m_slots * sizeof *t->m_key);
    memset(t->m_key, 0xff, t->m_slots * sizeof *t->m_key);
    t->m_rank = calloc(t->m_slots, sizeof *t->m_rank);
    t->m_new = calloc(t->m_slots, sizeof *t->m_new);
    char *buf = malloc(1 << 16);
    for (int64_t r = 0; r < nm; r++) {
        const char *m;
        size_t ml;
        ck_assert_int_eq(tfm_json_as_string(tfm_json_at(merges, r), &m, &ml), 0);
        const char *sp = memchr(m, ' ', ml);
        ck_assert_msg(sp && !memchr(sp + 1, ' ', ml - (size_t)(sp + 1 - m)), "bad merge %s", m);
        size_t al = (size_t)(sp - m), bl = ml - al - 1;
        int32_t a = vocab_get(t, m, al), bb = vocab_get(t, sp + 1, bl);
        memcpy(buf, m, al);
        memcpy(buf + al, sp + 1, bl);
        int32_t nw = vocab_get(t, buf, al + bl);
        /* HF refuses the file (MergeTokenOutOfVocabulary) otherwise */
        ck_assert_msg(a >= 0 && bb >= 0 && nw >= 0, "merge %s: a symbol is not in the vocab", m);
        size_t i = merge_slot(t, (uint64_t)(uint32_t)a << 32 | (uint32_t)bb);
        t->m_key[i] = (uint64_t)(uint32_t)a << 32 | (uint32_t)bb;
        t->m_rank[i] = (int32_t)r;
        t->m_new[i] = nw;
    }
    free(buf);
    /* id_str points into doc: keep it alive */
    static tfm_json *keep[8];
    static int n_keep;
    if (n_keep == 8) {
        for (int i = 0; i < 8; i++) tfm_json_free(keep[i]);
        n_keep = 0;
    }
    keep[n_keep++] = doc;
}

static void hf_free(hf_tok *t) {
    for (size_t i = 0; i < t->n_slots; i++) free(t->key[i]);
    free(t->key);
    free(t->key_len);
    free(t->id);
    free(t->m_key);
    free(t->m_rank);
    free(t->m_new);
    free(t->id_str);
    for (int i = 0; i < 4; i++) free(t->added[i]);
}

typedef struct {
    int32_t c;
    int64_t prev, next;
    size_t len;
} hf_sym;

typedef struct {
    int32_t rank;
    int64_t pos;
    int32_t new_id;
} hf_merge;

/* min-heap on (rank, pos) */
static int hm_less(const hf_merge *x, const hf_merge *y) {
    return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}
static void hm_push(hf_merge *h, int64_t *n, hf_merge m) {
    int64_t i = (*n)++;
    h[i] = m;
    while (i > 0 && hm_less(&h[i], &h[(i - 1) / 2])) {
        hf_merge t = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}
static hf_merge hm_pop(hf_merge *h, int64_t *n) {
    hf_merge top = h[0];
    h[0] = h[--*n];
    for (int64_t i = 0;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && hm_less(&h[l], &h[m])) m = l;
        if (r < *n && hm_less(&h[r], &h[m])) m = r;
        if (m == i) break;
        hf_merge t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
    return top;
}

/* BPE::merge_word + Word::merge_all on one pre-tokenized word. */
static void hf_word(const hf_tok *t, const char *w, size_t len, int32_t *out, int64_t *n_out) {
    hf_sym sym[1024];
    hf_merge heap[4096];
    int64_t n = 0, hn = 0;
    char piece[16];
    for (size_t pos = 0; pos < len;) {
        size_t cl = tfm_utf8_seq_len(w + pos, len - pos);
        ck_assert(cl > 0 && n < 1024);
        memcpy(piece, w + pos, cl);
        size_t pl = cl;
        if (pos + cl == len) memcpy(piece + cl, "</w>", 4), pl += 4;
        int32_t id = vocab_get(t, piece, pl);
        sym[n] = (hf_sym){id >= 0 ? id : t->unk_id, n - 1, -1, cl};
        if (n > 0) sym[n - 1].next = n;
        n++;
        pos += cl;
    }
    for (int64_t i = 0; i + 1 < n; i++) {
        int32_t nw, r = merge_get(t, sym[i].c, sym[i + 1].c, &nw);
        if (r >= 0) hm_push(heap, &hn, (hf_merge){r, i, nw});
    }
    while (hn > 0) {
        hf_merge top = hm_pop(heap, &hn);
        if (sym[top.pos].len == 0 || sym[top.pos].next == -1) continue;
        int64_t next = sym[top.pos].next;
        hf_sym right = sym[next];
        int32_t nw;
        if (merge_get(t, sym[top.pos].c, right.c, &nw) < 0 || nw != top.new_id) continue;
        sym[top.pos].c = top.new_id;
        sym[top.pos].len += right.len;
        sym[top.pos].next = right.next;
        sym[next].len = 0;
        if (right.next > -1 && right.next < n) sym[right.next].prev = top.pos;
        hf_sym cur = sym[top.pos];
        if (cur.prev >= 0) {
            int32_t r = merge_get(t, sym[cur.prev].c, cur.c, &nw);
            if (r >= 0) {
                ck_assert(hn < 4096);
                hm_push(heap, &hn, (hf_merge){r, cur.prev, nw});
            }
        }
        if (cur.next >= 0 && cur.next < n) {
            int32_t r = merge_get(t, cur.c, sym[cur.next].c, &nw);
            if (r >= 0) {
                ck_assert(hn < 4096);
                hm_push(heap, &hn, (hf_merge){r, top.pos, nw});
            }
        }
    }
    for (int64_t i = 0; i < n; i++)
        if (sym[i].len) out[(*n_out)++] = sym[i].c;
}

static int is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* tokenizer(text)["input_ids"]: normalizer, pre-tokenizer, model, template. */
static int64_t hf_encode(const hf_tok *t, const char *line, size_t len, int32_t *out) {
    /* added tokens are matched in the raw text first: our corpora have none */
    for (int i = 0; i < 4; i++) {
        size_t al = strlen(t->added[i]);
        for (size_t p = 0; p + al <= len; p++)
            ck_assert_msg(memcmp(line + p, t->added[i], al), "line contains %s", t->added[i]);
    }
    /* Replace(@@(?=~*(?:WS|\z)) -> @@~), scanning like a regex find_iter */
    static char norm[1 << 16];
    size_t o = 0;
    for (size_t p = 0; p < len;) {
        if (p + 2 <= len && line[p] == '@' && line[p + 1] == '@') {
            size_t q = p + 2;
            while (q < len && line[q] == '~') q++;
            if (q == len || is_ws(line[q])) {
                memcpy(norm + o, "@@~", 3);
                o += 3;
                p += 2;
                continue;
            }
        }
        norm[o++] = line[p++];
    }
    /* Split on runs of ASCII whitespace, removed; empty pieces dropped */
    int64_t n = 0;
    for (size_t p = 0; p < o;) {
        while (p < o && is_ws(norm[p])) p++;
        size_t s = p;
        while (p < o && !is_ws(norm[p])) p++;
        if (p > s) hf_word(t, norm + s, p - s, out, &n);
    }
    out[n++] = t->eos_id;
    return n;
}

/* tokenizer.decode(ids, skip_special_tokens=False) with our decoder chain. */
static char *hf_decode(const hf_tok *t, const int32_t *ids, int64_t n) {
    size_t cap = 64;
    for (int64_t i = 0; i < n; i++) cap += (ids[i] < 4 ? 8 : strlen(t->id_str[ids[i]])) + 8;
    char *s = malloc(cap);
    size_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *tok = ids[i] < 4 ? t->added[ids[i]] : t->id_str[ids[i]];
        char piece[512];
        size_t pl = strlen(tok);
        ck_assert(pl + 8 < sizeof piece);
        memcpy(piece, tok, pl + 1);
        if (!strcmp(piece, "<unk>")) strcpy(piece, "<unk></w>"), pl = 9; /* \A<unk>\z */
        if (!strcmp(piece, "<pad>") || !strcmp(piece, "<s>") || !strcmp(piece, "</s>")) pl = 0;
        if (pl >= 4 && !memcmp(piece + pl - 4, "</w>", 4)) piece[pl - 4] = ' ', pl -= 3;
        memcpy(s + o, piece, pl); /* Fuse */
        o += pl;
    }
    if (o && s[o - 1] == ' ') o--; /* " \z" */
    /* (?<=@@)~(?=~*(?: |\z)) -> "", matches found on the fused string */
    char *r = malloc(o + 1);
    size_t ro = 0;
    for (size_t p = 0; p < o; p++) {
        if (s[p] == '~' && p >= 2 && s[p - 1] == '@' && s[p - 2] == '@') {
            size_t q = p + 1;
            while (q < o && s[q] == '~') q++;
            if (q == o || s[q] == ' ') continue;
        }
        r[ro++] = s[p];
    }
    r[ro] = 0;
    free(s);
    return r;
}

/* ---- comparison ---------------------------------------------------------- */

typedef struct {
    int64_t lines, ids, unks, mismatches, decode_mismatches;
} cmp_stats;

static void compare_line(tfm_bpe *b, const tfm_vocab *v, const hf_tok *t, const char *line,
                         size_t len, const char *what, int64_t lineno, cmp_stats *st,
                         int must_match) {
    static int32_t ours[8192], theirs[8192];
    int64_t n = tfm_vocab_encode(b, v, line, len, ours, 8191);
    ck_assert_msg(n >= 0 && n < 8191, "%s:%lld: %s", what, (long long)lineno, tfm_last_error());
    ours[n++] = TFM_EOS_ID;
    int64_t m = hf_encode(t, line, len, theirs);
    int same = m == n && !memcmp(ours, theirs, (size_t)n * sizeof *ours);
    for (int64_t i = 0; i < m; i++)
        ck_assert_msg(theirs[i] >= 0 && theirs[i] < tfm_vocab_size(v),
                      "%s:%lld: id %d outside the vocabulary of %d", what, (long long)lineno,
                      theirs[i], tfm_vocab_size(v));
    if (!same && must_match) {
        char a[512] = "", c[512] = "";
        for (int64_t i = 0; i < n && strlen(a) < 480; i++)
            snprintf(a + strlen(a), sizeof a - strlen(a), " %d", ours[i]);
        for (int64_t i = 0; i < m && strlen(c) < 480; i++)
            snprintf(c + strlen(c), sizeof c - strlen(c), " %d", theirs[i]);
        ck_abort_msg("%s:%lld: '%.*s'\n  tfm:%s\n  hf: %s", what, (long long)lineno, (int)len, line,
                     a, c);
    }
    st->mismatches += !same;
    st->lines++;
    st->ids += n;
    for (int64_t i = 0; i < n; i++) st->unks += ours[i] == TFM_UNK_ID;
    char *want = tfm_vocab_decode(v, ours, n);
    char *got = hf_decode(t, ours, n);
    ck_assert_ptr_nonnull(want);
    if (strcmp(want, got)) {
        st->decode_mismatches++;
        ck_assert_msg(!must_match, "%s:%lld: decode\n  tfm: '%s'\n  hf:  '%s'", what,
                      (long long)lineno, want, got);
    }
    free(want);
    free(got);
}

static void compare_file(tfm_bpe *b, const tfm_vocab *v, const hf_tok *t, const char *path,
                         cmp_stats *st) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s", path);
    char line[8192];
    int64_t no = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        compare_line(b, v, t, line, len, path, ++no, st, 1);
    }
    fclose(f);
}

static void write_tokenizer(const tfm_bpe *b, const tfm_vocab *v, const char *path,
                            tfm_hf_tokenizer_info *info) {
    ck_assert_msg(tfm_bpe_write_hf_tokenizer(b, v, path, info) == 0, "%s", tfm_last_error());
}

START_TEST(numbers_corpus_ids_exact) {
    const char *dir = tfm_test_tmpdir("hf_numbers");
    ck_assert_msg(tfm_numbers_corpus_write(dir, 1, 1000, 100, 100) == 0, "%s", tfm_last_error());
    const char *sides[] = {"train.de", "train.en", "valid.de", "valid.en", "test.de", "test.en"};
    char paths[6][512];
    const char *pp[6];
    for (int i = 0; i < 6; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, sides[i]);
        pp[i] = paths[i];
    }
    /* as tfm train does: joint codes and vocabulary from the training text */
    int merges[] = {80, 400};
    for (int k = 0; k < 2; k++) {
        tfm_bpe *b = tfm_bpe_learn_files(pp, 2, merges[k], 2, NULL);
        ck_assert_ptr_nonnull(b);
        tfm_vocab *v = tfm_vocab_build(b, pp, 2);
        ck_assert_ptr_nonnull(v);
        char json[600];
        snprintf(json, sizeof json, "%s/tokenizer.json", dir);
        /* as built, the vocabulary lacks merge symbols ("u", "nd", ...) that
         * later merges start from: not representable, tfm export skips it */
        tfm_hf_tokenizer_info info;
        write_tokenizer(b, v, json, &info);
        int64_t lacking = info.n_symbols_unk, from_unk = info.n_merges_from_unk;
        ck_assert_int_gt(from_unk, 0);
        int64_t added = tfm_vocab_add_merge_symbols(v, b);
        ck_assert_int_eq(added, lacking);
        write_tokenizer(b, v, json, &info);
        ck_assert_int_eq(info.n_symbols_unk, 0);
        hf_tok t;
        hf_load(&t, json);
        cmp_stats st = {0};
        for (int i = 0; i < 6; i++) compare_file(b, v, &t, paths[i], &st);
        printf("  numbers, %d merges: vocabulary lacked %lld merge symbols (%lld merges start "
               "from one); with them (%d tokens): %lld lines, %lld ids (%lld <unk>) identical, "
               "decoded identically\n",
               merges[k], (long long)lacking, (long long)from_unk, tfm_vocab_size(v),
               (long long)st.lines, (long long)st.ids, (long long)st.unks);
        ck_assert_int_eq(st.lines, 2 * (1000 + 100 + 100));
        hf_free(&t);
        tfm_vocab_free(v);
        tfm_bpe_free(b);
    }
}
END_TEST

/* A generated stress corpus: words built from a small set of syllables (so
 * BPE learns merges) and from single characters of many scripts and byte
 * lengths: ASCII punctuation, "@@" and '~' (our escape), Latin-1, Greek,
 * CJK, emoji (4 bytes), combining marks, Unicode spaces that are NOT word
 * separators for us (U+00A0, U+2003, U+0085, U+FEFF), separated by runs of
 * the ASCII whitespace we split on, with leading and trailing runs. Lines
 * holding a special token's text or "</w>" are regenerated (documented
 * differences, see tfm/text.h). */
static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % n;
}

static size_t gen_line(char *out, size_t cap, int rare) {
    static const char *syl[] = {"an",   "der",       "schen", "ung",  "@@",  "~",
                                "ing",  "é",         "tion",  "über", "λόγ", "东京",
                                "🙂", "e\xcc\x81", "ab",    "ab@@", "x"};
    static const char *chr[] = {"a",
                                "b",
                                "z",
                                "Q",
                                "0",
                                "9",
                                "!",
                                ".",
                                "<",
                                ">",
                                "/",
                                "w",
                                "@",
                                "~",
                                "\"",
                                "\\",
                                "ß",
                                "ñ",
                                "Ω",
                                "ж",
                                "中",
                                "文",
                                "😀",
                                "🎉",
                                "\xcc\x81",
                                "\xc2\xa0",
                                "\xe2\x80\x83",
                                "\xc2\x85",
                                "\xef\xbb\xbf",
                                "\xf4\x8f\xbf\xbf",
                                "\xc2\x80",
                                "\x7f"};
    static const char *rare_chr[] = {"ʬ", "ᚠ", "𝔸", "ﬀ", "Ꙭ", "☃", "\x01", "\x1f"};
    static const char *ws[] = {" ", " ", " ", "  ", "\t", "\v", "\f", "\r", " \t "};
    for (;;) {
        size_t o = 0;
        if (rnd(6) == 0) o += (size_t)snprintf(out + o, cap - o, "%s", ws[rnd(9)]);
        int words = 1 + (int)rnd(12);
        for (int w = 0; w < words; w++) {
            int parts = 1 + (int)rnd(4);
            for (int p = 0; p < parts; p++) {
                const char *s;
                if (rare && rnd(5) == 0)
                    s = rare_chr[rnd(8)];
                else
                    s = rnd(3) ? syl[rnd(17)] : chr[rnd(32)];
                o += (size_t)snprintf(out + o, cap - o, "%s", s);
            }
            if (w + 1 < words || rnd(6) == 0)
                o += (size_t)snprintf(out + o, cap - o, "%s", ws[rnd(9)]);
        }
        out[o] = 0;
        if (strstr(out, "</w>") || strstr(out, "<s>") || strstr(out, "</s>") ||
            strstr(out, "<pad>") || strstr(out, "<unk>"))
            continue;
        return o;
    }
}

START_TEST(stress_corpus_ids_exact) {
    enum { N_TRAIN = 1500, N_HELD = 500 };
    char *text = malloc(N_TRAIN * 512), *held = malloc(N_HELD * 512);
    size_t tl = 0, hl = 0;
    rng_state = 2026;
    for (int i = 0; i < N_TRAIN; i++) {
        tl += gen_line(text + tl, 400, 0);
        text[tl++] = '\n';
    }
    for (int i = 0; i < N_HELD; i++) {
        hl += gen_line(held + hl, 400, 1); /* with characters training never saw */
        held[hl++] = '\n';
    }
    tfm_bpe *b = tfm_bpe_learn_text(text, tl, "stress", 300, 2);
    ck_assert_msg(b != NULL, "%s", tfm_last_error());
    tfm_vocab *v = tfm_vocab_build_text(b, text, tl, "stress");
    ck_assert_ptr_nonnull(v);
    const char *dir = tfm_test_tmpdir("hf_stress");
    char json[600];
    snprintf(json, sizeof json, "%s/tokenizer.json", dir);

    /* As built: merge symbols the vocabulary lacks map to <unk>, and HF
     * keys merges by id, so lines differ (counted, not required). */
    tfm_hf_tokenizer_info info;
    write_tokenizer(b, v, json, &info);
    hf_tok t;
    hf_load(&t, json);
    cmp_stats st = {0};
    for (size_t p = 0, no = 1; p < tl; no++) {
        size_t e = p;
        while (text[e] != '\n') e++;
        compare_line(b, v, &t, text + p, e - p, "stress", (int64_t)no, &st, 0);
        p = e + 1;
    }
    cmp_stats held_st = {0};
    for (size_t p = 0, no = 1; p < hl; no++) {
        size_t e = p;
        while (held[e] != '\n') e++;
        compare_line(b, v, &t, held + p, e - p, "held-out", (int64_t)no, &held_st, 0);
        p = e + 1;
    }
    printf("  stress, vocabulary as built (%d tokens, %lld merge symbols not in it, %lld merges "
           "from one): %lld/%lld training and %lld/%lld held-out lines differ\n",
           tfm_vocab_size(v), (long long)info.n_symbols_unk, (long long)info.n_merges_from_unk,
           (long long)st.mismatches, (long long)st.lines, (long long)held_st.mismatches,
           (long long)held_st.lines);
    ck_assert_int_gt(info.n_symbols_unk, 0); /* the case is exercised */
    hf_free(&t);

    /* With every merge symbol in the vocabulary: exact everywhere. */
    ck_assert_int_eq(tfm_vocab_add_merge_symbols(v, b), info.n_symbols_unk);
    write_tokenizer(b, v, json, &info);
    ck_assert_int_eq(info.n_symbols_unk, 0);
    hf_load(&t, json);
    cmp_stats all = {0};
    const char *bufs[] = {text, held};
    size_t lens[] = {tl, hl};
    for (int k = 0; k < 2; k++)
        for (size_t p = 0, no = 1; p < lens[k]; no++) {
            size_t e = p;
            while (bufs[k][e] != '\n') e++;
            compare_line(b, v, &t, bufs[k] + p, e - p, k ? "held-out" : "stress", (int64_t)no, &all,
                         1);
            p = e + 1;
        }
    printf("  stress, with every merge symbol (%d tokens): %lld lines, %lld ids (%lld <unk>) "
           "identical, decoded identically\n",
           tfm_vocab_size(v), (long long)all.lines, (long long)all.ids, (long long)all.unks);
    ck_assert_int_eq(all.lines, N_TRAIN + N_HELD);
    ck_assert_int_gt(all.unks, 0);
    hf_free(&t);
    tfm_vocab_free(v);
    tfm_bpe_free(b);
    free(text);
    free(held);
}
END_TEST

/* The pad-last file of zero-start exports (tfm/export.h): the same file but
 * for "<pad>", now the id after ours, and our id 0 renamed; so the same
 * segmentation and ids (checked above on the normal file), every id of ours
 * unchanged, and the new one below the exported model's vocabulary (V + 1). */
START_TEST(pad_last_layout) {
    const char *dir = tfm_test_tmpdir("hf_padlast");
    ck_assert_msg(tfm_numbers_corpus_write(dir, 1, 300, 10, 10) == 0, "%s", tfm_last_error());
    char a[512], b2[512];
    snprintf(a, sizeof a, "%s/train.de", dir);
    snprintf(b2, sizeof b2, "%s/train.en", dir);
    const char *pp[2] = {a, b2};
    tfm_bpe *b = tfm_bpe_learn_files(pp, 2, 80, 2, NULL);
    tfm_vocab *v = tfm_vocab_build(b, pp, 2);
    ck_assert_int_ge(tfm_vocab_add_merge_symbols(v, b), 0);
    int64_t V = tfm_vocab_size(v);
    size_t n1, n2;
    tfm_hf_tokenizer_info i1, i2;
    char *t1 = tfm_bpe_hf_tokenizer_json(b, v, &n1, &i1);
    char *t2 = tfm_bpe_hf_tokenizer_json_pad_last(b, v, &n2, &i2);
    ck_assert(t1 && t2);
    ck_assert_int_eq(i2.n_tokens, i1.n_tokens + 1);
    ck_assert_int_eq(i2.n_merges_from_unk, 0);
    tfm_json *d1, *d2;
    ck_assert_int_eq(tfm_json_parse(t1, n1, NULL, "normal", &d1), 0);
    ck_assert_int_eq(tfm_json_parse(t2, n2, NULL, "pad-last", &d2), 0);
    const tfm_json *added = tfm_json_get(d2, "added_tokens");
    ck_assert_int_eq(tfm_json_len(added), 5);
    const int64_t want_id[5] = {0, 1, 2, 3, V};
    const char *want[5] = {"<tfm_pad>", "<s>", "</s>", "<unk>", "<pad>"};
    for (int i = 0; i < 5; i++) {
        int64_t id;
        ck_assert_int_eq(tfm_json_get_int64(tfm_json_at(added, i), "id", &id), 0);
        ck_assert_int_eq(id, want_id[i]);
        ck_assert_str_eq(str_at(tfm_json_at(added, i), "content"), want[i]);
    }
    const tfm_json *v1 = tfm_json_get(tfm_json_get(d1, "model"), "vocab"),
                   *v2 = tfm_json_get(tfm_json_get(d2, "model"), "vocab");
    ck_assert_int_eq(tfm_json_len(v2), tfm_json_len(v1) + 1);
    for (int64_t i = 0; i < tfm_json_len(v1); i++) {
        int64_t id1, id2;
        const char *key = v1->keys[i];
        const char *key2 = !strcmp(key, "<pad>") ? "<tfm_pad>" : key;
        ck_assert_int_eq(tfm_json_as_int64(v1->items[i], &id1), 0);
        ck_assert_int_eq(tfm_json_get_int64(v2, key2, &id2), 0);
        ck_assert_int_eq(id1, id2);
        ck_assert_int_lt(id2, V);
    }
    int64_t pad;
    ck_assert_int_eq(tfm_json_get_int64(v2, "<pad>", &pad), 0);
    ck_assert_int_eq(pad, V);
    const tfm_json *m1 = tfm_json_get(tfm_json_get(d1, "model"), "merges"),
                   *m2 = tfm_json_get(tfm_json_get(d2, "model"), "merges");
    ck_assert_int_eq(tfm_json_len(m1), tfm_json_len(m2));
    for (int64_t i = 0; i < tfm_json_len(m1); i++)
        ck_assert_str_eq(tfm_json_at(m1, i)->text, tfm_json_at(m2, i)->text);
    const tfm_json *ds = tfm_json_get(tfm_json_get(d2, "decoder"), "decoders");
    expect_replace(tfm_json_at(ds, 1), "\\A(?:<pad>|<tfm_pad>|<s>|</s>)\\z", "");
    tfm_json_free(d1);
    tfm_json_free(d2);
    free(t1);
    free(t2);
    tfm_vocab_free(v);
    tfm_bpe_free(b);
}
END_TEST

int main(void) {
    Suite *s = suite_create("hf_tokenizer");
    TCase *tc = tcase_create("hf_tokenizer");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, numbers_corpus_ids_exact);
    tcase_add_test(tc, stress_corpus_ids_exact);
    tcase_add_test(tc, pad_last_layout);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
