/* Corpus BLEU as sacreBLEU's default (13a tokens, exp smoothing, closest
 * reference length), matching tools/bleu.py on any input.
 *
 * bleu.py works on Python strings, so "a character" there is a code point
 * and whitespace, rstrip() and lower() follow Unicode (tables generated from
 * the same Python in bleu_unicode.h). The 13a rules themselves only look at
 * ASCII characters next to "any character that is not 0-9", so they can run
 * on UTF-8 bytes: a multi-byte character never matches an ASCII class, and
 * the byte next to an ASCII character is the first or last byte of its
 * neighbour, which gives the same matches as the code-point scan.
 *
 * Per segment: tokens are interned to small ids, the hypothesis n-grams
 * (n = 1..4, keys of up to four ids) go into an open-addressing table, and
 * each reference only looks its n-grams up there, keeping per n-gram the
 * count in the current reference and the maximum over references, so the
 * work is linear in the number of tokens. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "../util/buf.h"
#include "../util/hash.h"
#include "../util/lines.h"
#include "bleu_unicode.h"
#include "tfm/base.h"
#include "tfm/data.h" /* TFM_MAX_LINE_BYTES_DEFAULT */
#include "tfm/eval.h"
#include "tfm/text.h"

/* ---------------------------------------------------------------- bytes */

/* Byte buffers are tfm_buf (src/util/buf.h): allocation failure sets oom and drops further
 * writes, so the tokenizer's inner loops stay free of error plumbing; the
 * caller checks oom once. */
/* --------------------------------------------------------------- UTF-8 */

#define BAD_CP 0xFFFFFFFFu

/* Decodes one code point at s[0..n) (n >= 1) with Python's strictness (no
 * overlongs, surrogates or values above U+10FFFF). Returns its length; an
 * invalid byte comes back as BAD_CP of length 1. */
static size_t u8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    size_t pos = 0;
    int32_t v = tfm_utf8_next((const char *)s, n, &pos);
    *cp = v < 0 ? BAD_CP : (uint32_t)v;
    return v < 0 ? 1 : pos;
}

static void u8_encode(tfm_buf *b, uint32_t cp) {
    char buf[4];
    size_t len = tfm_utf8_encode(cp, buf);
    for (size_t i = 0; i < len; i++) tfm_buf_put(b, buf[i]);
}

/* ------------------------------------------------------ Unicode classes */

/* Python's str.isspace(): what split() and rstrip() remove. */
static int is_space(uint32_t cp) {
    if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
    if (cp == BAD_CP) return 0;
    size_t lo = 0, hi = sizeof BLEU_SPACES / sizeof BLEU_SPACES[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (BLEU_SPACES[mid] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < sizeof BLEU_SPACES / sizeof BLEU_SPACES[0] && BLEU_SPACES[lo] == cp;
}

/* The last run whose first code point is <= cp, or -1. */
#define RUN_SEARCH(table, cp, result)                                                              \
    do {                                                                                           \
        size_t lo_ = 0, hi_ = sizeof table / sizeof table[0];                                      \
        while (lo_ < hi_) {                                                                        \
            size_t mid_ = (lo_ + hi_) / 2;                                                         \
            if (table[mid_].first <= (cp))                                                         \
                lo_ = mid_ + 1;                                                                    \
            else                                                                                   \
                hi_ = mid_;                                                                        \
        }                                                                                          \
        (result) = (long)lo_ - 1;                                                                  \
    } while (0)

/* Simple lowercase mapping of one code point (U+0130 is handled apart). */
static uint32_t lower_cp(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    if (cp == BAD_CP) return cp;
    long i;
    RUN_SEARCH(BLEU_LOWER, cp, i);
    if (i < 0) return cp;
    const bleu_lower_run *r = &BLEU_LOWER[i];
    if (cp > r->last || (cp - r->first) % r->stride) return cp;
    return (uint32_t)((int64_t)cp + r->delta);
}

enum { CASE_OTHER = 0, CASE_IGNORABLE = 1, CASE_CASED = 2 };

static int case_class(uint32_t cp) {
    if (cp == BAD_CP) return CASE_OTHER;
    long i;
    RUN_SEARCH(BLEU_CASE, cp, i);
    if (i < 0 || cp > BLEU_CASE[i].last) return CASE_OTHER;
    return (int)BLEU_CASE[i].cls;
}

/* Python's str.lower() of s[0..n): full mapping (U+0130 -> "i\u0307") and
 * the Final_Sigma rule for U+03A3: it becomes final sigma when the nearest
 * non-case-ignorable code point before it is cased and the nearest one after
 * it is not (or there is none). Invalid bytes are copied unchanged. */
static void lower_utf8(tfm_buf *dst, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    int prev_cased = 0;
    size_t i = 0;
    dst->len = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = u8_decode(u + i, n - i, &cp);
        if (cp == BAD_CP) {
            tfm_buf_put(dst, s[i]);
        } else if (cp == 0x3A3) {
            int final = 0;
            if (prev_cased) {
                final = 1;
                size_t j = i + len;
                while (j < n) {
                    uint32_t next;
                    size_t next_len = u8_decode(u + j, n - j, &next);
                    int cls = case_class(next);
                    if (cls != CASE_IGNORABLE) {
                        final = cls != CASE_CASED;
                        break;
                    }
                    j += next_len;
                }
            }
            u8_encode(dst, final ? 0x3C2 : 0x3C3);
        } else if (cp == 0x130) {
            u8_encode(dst, 'i');
            u8_encode(dst, 0x307);
        } else {
            u8_encode(dst, lower_cp(cp));
        }
        int cls = case_class(cp);
        if (cls != CASE_IGNORABLE) prev_cased = cls == CASE_CASED;
        i += len;
    }
}

/* Length of s[0..n) without trailing Unicode whitespace. */
static size_t rstrip_len(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, keep = 0;
    while (i < n) {
        uint32_t cp;
        i += u8_decode(u + i, n - i, &cp);
        if (!is_space(cp)) keep = i;
    }
    return keep;
}

/* ---------------------------------------------------------- 13a rules */

/* dst = src with every non-overlapping `from` replaced by `to`, scanning
 * left to right (str.replace). */
static void replace_all(tfm_buf *dst, const char *src, size_t n, const char *from, const char *to) {
    size_t from_len = strlen(from), to_len = strlen(to);
    dst->len = 0;
    size_t i = 0;
    while (i < n) {
        const char *hit = n - i >= from_len ? memchr(src + i, from[0], n - i - from_len + 1) : NULL;
        if (hit) {
            size_t at = (size_t)(hit - src);
            tfm_buf_add(dst, src + i, at - i);
            if (!memcmp(hit, from, from_len)) {
                tfm_buf_add(dst, to, to_len);
                i = at + from_len;
            } else {
                tfm_buf_put(dst, *hit);
                i = at + 1;
            }
        } else {
            tfm_buf_add(dst, src + i, n - i);
            i = n;
        }
    }
}

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Rule 1: pad every ASCII symbol except . , - ' with spaces:
 * [{-~] [[-`] [ -&] [(-+] [:-@] and '/'. */
static inline int is_pad_symbol(unsigned char c) {
    return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
           (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == '/';
}

/* " " + src + " " with rule 1 applied. */
static void rule_pad_symbols(tfm_buf *dst, const char *src, size_t n) {
    dst->len = 0;
    if (n > (SIZE_MAX - 8) / 3 || tfm_buf_reserve(dst, 3 * n + 2)) {
        dst->oom = 1;
        return;
    }
    char *o = dst->p;
    *o++ = ' ';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (is_pad_symbol(c)) {
            *o++ = ' ';
            *o++ = (char)c;
            *o++ = ' ';
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = ' ';
    dst->len = (size_t)(o - dst->p);
}

/* Rules 2-4 are two-character patterns "(A)(B)" rewritten left to right
 * without overlap, as re.sub does:
 *   2: ([^0-9])([.,]) -> "\1 \2 "    3: ([.,])([^0-9]) -> " \1 \2"
 *   4: ([0-9])(-)     -> "\1 \2 " */
enum { RULE_SPLIT_AFTER_NONDIGIT, RULE_SPLIT_BEFORE_NONDIGIT, RULE_DASH_AFTER_DIGIT };

static void rule_pairs(tfm_buf *dst, const char *src, size_t n, int rule) {
    dst->len = 0;
    if (n > (SIZE_MAX - 8) / 2 || tfm_buf_reserve(dst, 2 * n + 2)) {
        dst->oom = 1;
        return;
    }
    char *o = dst->p;
    size_t i = 0;
    while (i < n) {
        char a = src[i];
        if (i + 1 < n) {
            char b = src[i + 1];
            int hit = 0;
            if (rule == RULE_SPLIT_AFTER_NONDIGIT)
                hit = !is_digit(a) && (b == '.' || b == ',');
            else if (rule == RULE_SPLIT_BEFORE_NONDIGIT)
                hit = (a == '.' || a == ',') && !is_digit(b);
            else
                hit = is_digit(a) && b == '-';
            if (hit) {
                if (rule == RULE_SPLIT_BEFORE_NONDIGIT) {
                    *o++ = ' ';
                    *o++ = a;
                    *o++ = ' ';
                    *o++ = b;
                } else {
                    *o++ = a;
                    *o++ = ' ';
                    *o++ = b;
                    *o++ = ' ';
                }
                i += 2;
                continue;
            }
        }
        *o++ = a;
        i++;
    }
    dst->len = (size_t)(o - dst->p);
}

typedef struct {
    tfm_buf a, b;
} tok_scratch;

static void tok_scratch_free(tok_scratch *sc) {
    tfm_buf_free(&sc->a);
    tfm_buf_free(&sc->b);
}

/* bleu.py's prep(): rstrip (after lowercasing when asked), then
 * tokenize_13a up to the final split (or nothing more for TFM_BLEU_TOK_NONE).
 * Returns the buffer holding the rewritten text (tokens separated by Unicode
 * whitespace), or NULL on OOM. */
static const tfm_buf *prep(tok_scratch *sc, const char *s, size_t n, int lowercase,
                           tfm_bleu_tok tok) {
    tfm_buf *cur = &sc->a, *nxt = &sc->b;
    cur->oom = nxt->oom = 0;
    const char *src = s;
    size_t src_n;
    if (lowercase) {
        lower_utf8(cur, s, n);
        src = cur->p;
        src_n = rstrip_len(cur->p, cur->len);
        tfm_buf *t = cur;
        cur = nxt;
        nxt = t;
    } else {
        src_n = rstrip_len(s, n);
    }
    if (tok == TFM_BLEU_TOK_NONE) { /* str.split() on the text as it is */
        cur->len = 0;
        tfm_buf_add(cur, src, src_n);
        return cur->oom ? NULL : cur;
    }
    /* str.replace passes, each into the other buffer */
    static const char *const REPL[][2] = {
        {"<skipped>", ""}, {"-\n", ""},   {"\n", " "},   {"&quot;", "\""},
        {"&amp;", "&"},    {"&lt;", "<"}, {"&gt;", ">"},
    };
    for (size_t k = 0; k < sizeof REPL / sizeof REPL[0]; k++) {
        /* bleu.py only unescapes when the line holds an '&' (a no-op skip) */
        if (k == 3 && !(src_n && memchr(src, '&', src_n))) break;
        replace_all(cur, src, src_n, REPL[k][0], REPL[k][1]);
        src = cur->p;
        src_n = cur->len;
        tfm_buf *t = cur;
        cur = nxt;
        nxt = t;
    }
    rule_pad_symbols(cur, src, src_n);
    for (int rule = RULE_SPLIT_AFTER_NONDIGIT; rule <= RULE_DASH_AFTER_DIGIT; rule++) {
        tfm_buf *t = cur;
        cur = nxt;
        nxt = t;
        rule_pairs(cur, nxt->p, nxt->len, rule);
    }
    if (sc->a.oom || sc->b.oom) return NULL;
    return cur;
}

/* Next whitespace-separated token of s[0..n) at or after *pos. */
static int next_token(const char *s, size_t n, size_t *pos, size_t *start, size_t *len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = *pos;
    uint32_t cp;
    while (i < n) {
        size_t l = u8_decode(u + i, n - i, &cp);
        if (!is_space(cp)) break;
        i += l;
    }
    if (i >= n) {
        *pos = n;
        return 0;
    }
    *start = i;
    while (i < n) {
        size_t l = u8_decode(u + i, n - i, &cp);
        if (is_space(cp)) break;
        i += l;
    }
    *len = i - *start;
    *pos = i;
    return 1;
}

int tfm_bleu_tok_parse(const char *name, tfm_bleu_tok *tok) {
    if (name && !strcmp(name, "13a")) {
        *tok = TFM_BLEU_TOK_13A;
        return 0;
    }
    if (name && !strcmp(name, "none")) {
        *tok = TFM_BLEU_TOK_NONE;
        return 0;
    }
    tfm_set_error("bleu: unknown tokenizer '%s' (13a or none)", name ? name : "");
    return -1;
}

const char *tfm_bleu_tok_name(tfm_bleu_tok tok) {
    return tok == TFM_BLEU_TOK_NONE ? "none" : "13a";
}

int tfm_bleu_tokenize(const char *text, size_t len, int lowercase, char **out, size_t *out_len) {
    return tfm_bleu_tokenize_tok(text, len, lowercase, TFM_BLEU_TOK_13A, out, out_len);
}

/* 1 with the error set for a value outside tfm_bleu_tok */
static int unknown_tok(tfm_bleu_tok tok) {
    if (tok == TFM_BLEU_TOK_13A || tok == TFM_BLEU_TOK_NONE) return 0;
    return tfm_set_error("bleu: unknown tokenizer %d", (int)tok), 1;
}

int tfm_bleu_tokenize_tok(const char *text, size_t len, int lowercase, tfm_bleu_tok tok, char **out,
                          size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (unknown_tok(tok)) return -1;
    tok_scratch sc = {0};
    const tfm_buf *t = prep(&sc, text ? text : "", text ? len : 0, lowercase, tok);
    tfm_buf res = {0};
    if (t) {
        size_t pos = 0, start, tok_len;
        while (next_token(t->p, t->len, &pos, &start, &tok_len)) {
            if (res.len) tfm_buf_put(&res, ' ');
            tfm_buf_add(&res, t->p + start, tok_len);
        }
        tfm_buf_put(&res, '\0');
    }
    tok_scratch_free(&sc);
    if (!t || res.oom) {
        tfm_buf_free(&res);
        tfm_set_error("bleu: out of memory while tokenizing %zu bytes", len);
        return -1;
    }
    *out = res.p;
    if (out_len) *out_len = res.len - 1;
    return 0;
}

/* --------------------------------------------------------- statistics */

typedef struct {
    size_t off, len; /* bytes in the segment's token text */
} tok_span;

typedef struct {
    uint32_t ids[TFM_BLEU_MAX_N];
    uint32_t n;             /* 0 = empty slot */
    uint32_t stamp;         /* 1 + the reference that `cur` counts */
    uint32_t hyp, cur, max; /* counts in this segment (< 2^31 tokens) */
} ngram_slot;

struct tfm_bleu_acc {
    int lowercase;
    tfm_bleu_tok tok;
    tfm_bleu sums;
    tok_scratch sc;
    tfm_buf text;   /* token bytes of the current segment, all sides */
    tok_span *toks; /* (n_toks) */
    uint32_t *ids;  /* (n_toks) interned ids */
    size_t n_toks;
    int64_t cap_toks, cap_ids;
    size_t *side_start; /* (n_sides + 1): hypothesis, then each reference */
    int64_t cap_sides;
    uint32_t *intern; /* (intern_cap) 1 + token index, 0 = empty */
    size_t intern_cap;
    /* hypothesis n-grams: ngram_cap slots (a power of two) in use of
     * ngram_alloc, grown when half full so memory follows the number of
     * distinct n-grams, not the segment length */
    ngram_slot *ngrams;
    size_t ngram_cap, ngram_alloc, ngram_used;
};

tfm_bleu_acc *tfm_bleu_acc_new(int lowercase) {
    return tfm_bleu_acc_new_tok(lowercase, TFM_BLEU_TOK_13A);
}

tfm_bleu_acc *tfm_bleu_acc_new_tok(int lowercase, tfm_bleu_tok tok) {
    if (unknown_tok(tok)) return NULL;
    tfm_bleu_acc *acc = calloc(1, sizeof *acc);
    if (!acc) {
        tfm_set_error("bleu: out of memory");
        return NULL;
    }
    acc->lowercase = lowercase;
    acc->tok = tok;
    return acc;
}

void tfm_bleu_acc_free(tfm_bleu_acc *acc) {
    if (!acc) return;
    tok_scratch_free(&acc->sc);
    tfm_buf_free(&acc->text);
    free(acc->toks);
    free(acc->ids);
    free(acc->side_start);
    free(acc->intern);
    free(acc->ngrams);
    free(acc);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

static uint64_t hash_ngram(const uint32_t *ids, uint32_t n) {
    uint64_t h = n;
    for (uint32_t k = 0; k < n; k++) h = tfm_hash64(h ^ ((uint64_t)ids[k] << 8));
    return h;
}

/* Tokenizes one side of the segment and appends its tokens. */
static int add_side(tfm_bleu_acc *acc, const char *s) {
    const tfm_buf *t = prep(&acc->sc, s, strlen(s), acc->lowercase, acc->tok);
    if (!t) return -1;
    size_t pos = 0, start, len;
    while (next_token(t->p, t->len, &pos, &start, &len)) {
        if (tfm_grow((void **)&acc->toks, &acc->cap_toks, (int64_t)acc->n_toks + 1,
                     sizeof *acc->toks))
            return -1;
        acc->toks[acc->n_toks].off = acc->text.len;
        acc->toks[acc->n_toks].len = len;
        acc->n_toks++;
        tfm_buf_add(&acc->text, t->p + start, len);
    }
    return acc->text.oom ? -1 : 0;
}

/* Gives equal tokens equal ids (ids are indices of first occurrences). */
static int intern_tokens(tfm_bleu_acc *acc) {
    size_t cap = pow2_at_least(2 * acc->n_toks + 2);
    if (cap > acc->intern_cap) {
        free(acc->intern);
        acc->intern = malloc(cap * sizeof *acc->intern);
        acc->intern_cap = acc->intern ? cap : 0;
        if (!acc->intern) return -1;
    }
    if (tfm_grow((void **)&acc->ids, &acc->cap_ids, (int64_t)acc->n_toks + 1, sizeof *acc->ids))
        return -1;
    memset(acc->intern, 0, cap * sizeof *acc->intern);
    size_t mask = cap - 1;
    for (size_t t = 0; t < acc->n_toks; t++) {
        const char *s = acc->text.p + acc->toks[t].off;
        size_t len = acc->toks[t].len;
        size_t slot = (size_t)tfm_hash_bytes(s, len) & mask;
        for (;;) {
            uint32_t e = acc->intern[slot];
            if (!e) {
                acc->intern[slot] = (uint32_t)t + 1;
                acc->ids[t] = (uint32_t)t;
                break;
            }
            const tok_span *o = &acc->toks[e - 1];
            if (o->len == len && !memcmp(acc->text.p + o->off, s, len)) {
                acc->ids[t] = e - 1;
                break;
            }
            slot = (slot + 1) & mask;
        }
    }
    return 0;
}

/* The slot for ids[0..n), or for insertion the empty slot where it goes. */
static ngram_slot *ngram_find(ngram_slot *tab, size_t mask, const uint32_t *ids, uint32_t n) {
    size_t slot = (size_t)hash_ngram(ids, n) & mask;
    for (;;) {
        ngram_slot *e = &tab[slot];
        if (!e->n) return e;
        if (e->n == n && !memcmp(e->ids, ids, n * sizeof *ids)) return e;
        slot = (slot + 1) & mask;
    }
}

/* Empties the table, sized for `expected` n-grams (at most a few thousand:
 * repetitive segments have far fewer distinct ones, and it grows). */
static int ngram_reset(tfm_bleu_acc *acc, size_t expected) {
    size_t cap = pow2_at_least(2 * (expected < 4096 ? expected : 4096) + 2);
    if (cap > acc->ngram_alloc) {
        free(acc->ngrams);
        acc->ngrams = malloc(cap * sizeof *acc->ngrams);
        acc->ngram_alloc = acc->ngrams ? cap : 0;
        if (!acc->ngrams) return -1;
    }
    acc->ngram_cap = cap;
    acc->ngram_used = 0;
    memset(acc->ngrams, 0, cap * sizeof *acc->ngrams);
    return 0;
}

/* The slot of ids[0..n), created if new; NULL on OOM. */
static ngram_slot *ngram_insert(tfm_bleu_acc *acc, const uint32_t *ids, uint32_t n) {
    if (2 * (acc->ngram_used + 1) > acc->ngram_cap) {
        size_t cap = 2 * acc->ngram_cap;
        ngram_slot *tab = calloc(cap, sizeof *tab);
        if (!tab) return NULL;
        for (size_t s = 0; s < acc->ngram_cap; s++) {
            const ngram_slot *e = &acc->ngrams[s];
            if (e->n) *ngram_find(tab, cap - 1, e->ids, e->n) = *e;
        }
        free(acc->ngrams);
        acc->ngrams = tab;
        acc->ngram_cap = acc->ngram_alloc = cap;
    }
    ngram_slot *e = ngram_find(acc->ngrams, acc->ngram_cap - 1, ids, n);
    if (!e->n) {
        e->n = n;
        memcpy(e->ids, ids, n * sizeof *ids);
        acc->ngram_used++;
    }
    return e;
}

int tfm_bleu_acc_add(tfm_bleu_acc *acc, const char *hyp, const char *const *refs, int n_refs) {
    if (n_refs < 1) {
        tfm_set_error("bleu: no reference given");
        return -1;
    }
    if (!hyp || !refs) {
        tfm_set_error("bleu: segment %lld: missing hypothesis or references",
                      (long long)acc->sums.n_segments + 1);
        return -1;
    }
    for (int r = 0; r < n_refs; r++)
        if (!refs[r]) {
            tfm_set_error("bleu: segment %lld: reference %d is missing",
                          (long long)acc->sums.n_segments + 1, r + 1);
            return -1;
        }
    if (tfm_grow((void **)&acc->side_start, &acc->cap_sides, (int64_t)n_refs + 2,
                 sizeof *acc->side_start))
        goto oom;
    acc->text.len = 0;
    acc->text.oom = 0;
    acc->n_toks = 0;
    for (int side = 0; side <= n_refs; side++) {
        acc->side_start[side] = acc->n_toks;
        if (add_side(acc, side == 0 ? hyp : refs[side - 1])) goto oom;
    }
    acc->side_start[n_refs + 1] = acc->n_toks;
    if (acc->n_toks >= UINT32_MAX / 2) {
        tfm_set_error("bleu: segment %lld has too many tokens (%zu)",
                      (long long)acc->sums.n_segments + 1, acc->n_toks);
        return -1;
    }
    if (intern_tokens(acc)) goto oom;

    const uint32_t *hyp_ids = acc->ids;
    size_t hyp_len = acc->side_start[1];
    size_t n_hyp_ngrams = 0;
    for (size_t n = 1; n <= TFM_BLEU_MAX_N; n++)
        if (hyp_len >= n) n_hyp_ngrams += hyp_len - n + 1;
    if (ngram_reset(acc, n_hyp_ngrams)) goto oom;
    for (uint32_t n = 1; n <= TFM_BLEU_MAX_N; n++)
        for (size_t i = 0; i + n <= hyp_len; i++) {
            ngram_slot *e = ngram_insert(acc, hyp_ids + i, n);
            if (!e) goto oom;
            e->hyp++;
        }
    ngram_slot *tab = acc->ngrams;
    size_t cap = acc->ngram_cap, mask = cap - 1;

    /* references: clip counts, and the closest length (shorter on ties) */
    int64_t best_len = -1, best_diff = 0;
    for (int r = 0; r < n_refs; r++) {
        size_t start = acc->side_start[r + 1], end = acc->side_start[r + 2];
        int64_t len = (int64_t)(end - start);
        int64_t diff = len > (int64_t)hyp_len ? len - (int64_t)hyp_len : (int64_t)hyp_len - len;
        if (best_len < 0 || diff < best_diff || (diff == best_diff && len < best_len)) {
            best_len = len;
            best_diff = diff;
        }
        if (!hyp_len) continue;
        for (uint32_t n = 1; n <= TFM_BLEU_MAX_N; n++)
            for (size_t i = start; i + n <= end; i++) {
                ngram_slot *e = ngram_find(tab, mask, acc->ids + i, n);
                if (!e->n) continue;
                if (e->stamp != (uint32_t)r + 1) {
                    e->stamp = (uint32_t)r + 1;
                    e->cur = 0;
                }
                if (++e->cur > e->max) e->max = e->cur;
            }
    }
    for (size_t s = 0; s < cap; s++) {
        const ngram_slot *e = &tab[s];
        if (!e->n) continue;
        acc->sums.total[e->n - 1] += e->hyp;
        acc->sums.correct[e->n - 1] += e->hyp < e->max ? e->hyp : e->max;
    }
    acc->sums.hyp_len += (int64_t)hyp_len;
    acc->sums.ref_len += best_len;
    acc->sums.n_segments++;
    return 0;
oom:
    tfm_set_error("bleu: out of memory at segment %lld", (long long)acc->sums.n_segments + 1);
    return -1;
}

void tfm_bleu_finish(tfm_bleu *b) {
    /* the same operations in the same order as bleu.py, so the doubles agree
     * to the last bit with the same libm */
    b->score = 0.0;
    for (int n = 0; n < TFM_BLEU_MAX_N; n++) b->precisions[n] = 0.0;
    b->bp = 1.0;
    if (b->hyp_len < b->ref_len)
        b->bp = b->hyp_len > 0 ? exp(1.0 - (double)b->ref_len / (double)b->hyp_len) : 0.0;
    b->ratio = b->ref_len ? (double)b->hyp_len / (double)b->ref_len : 0.0;
    if (b->correct[0] == 0) return;
    double k = 1.0;
    for (int n = 0; n < TFM_BLEU_MAX_N; n++) {
        if (b->total[n] == 0) break;
        if (b->correct[n] == 0) {
            k *= 2;
            b->precisions[n] = 100.0 / (k * (double)b->total[n]);
        } else {
            b->precisions[n] = 100.0 * (double)b->correct[n] / (double)b->total[n];
        }
    }
    double log_sum = 0.0;
    for (int n = 0; n < TFM_BLEU_MAX_N; n++) {
        /* fewer than n tokens in the whole hypothesis */
        if (b->precisions[n] == 0.0) return;
        log_sum += log(b->precisions[n]);
    }
    b->score = b->bp * exp(log_sum / TFM_BLEU_MAX_N);
}

void tfm_bleu_acc_result(const tfm_bleu_acc *acc, tfm_bleu *out) {
    *out = acc->sums;
    tfm_bleu_finish(out);
}

int tfm_bleu_corpus(const char *const *hyps, int64_t n_lines, const char *const *const *refs,
                    int n_refs, int lowercase, tfm_bleu *out) {
    return tfm_bleu_corpus_tok(hyps, n_lines, refs, n_refs, lowercase, TFM_BLEU_TOK_13A, out);
}

int tfm_bleu_corpus_tok(const char *const *hyps, int64_t n_lines, const char *const *const *refs,
                        int n_refs, int lowercase, tfm_bleu_tok tok, tfm_bleu *out) {
    memset(out, 0, sizeof *out);
    if (n_refs < 1 || !refs) {
        tfm_set_error("bleu: no reference given");
        return -1;
    }
    if (n_lines < 0 || (n_lines > 0 && !hyps)) {
        tfm_set_error("bleu: no hypotheses given");
        return -1;
    }
    for (int r = 0; r < n_refs; r++)
        if (n_lines > 0 && !refs[r]) {
            tfm_set_error("bleu: reference set %d is missing", r + 1);
            return -1;
        }
    tfm_bleu_acc *acc = tfm_bleu_acc_new_tok(lowercase, tok);
    if (!acc) return -1; /* an unknown tokenizer, or out of memory (the error says) */
    const char **seg_refs = malloc((size_t)n_refs * sizeof *seg_refs);
    if (!seg_refs) {
        tfm_bleu_acc_free(acc);
        tfm_set_error("bleu: out of memory");
        return -1;
    }
    int status = 0;
    for (int64_t i = 0; i < n_lines && !status; i++) {
        for (int r = 0; r < n_refs; r++) seg_refs[r] = refs[r][i];
        status = tfm_bleu_acc_add(acc, hyps[i], seg_refs, n_refs);
    }
    if (!status) tfm_bleu_acc_result(acc, out);
    free(seg_refs);
    tfm_bleu_acc_free(acc);
    return status;
}

void tfm_bleu_format(const tfm_bleu *b, const char *label, int decimals, char *buf, size_t size) {
    if (!buf || !size) return;
    if (decimals < 0) decimals = 0;
    if (decimals > 17) decimals = 17;
    snprintf(buf, size,
             "%s = %.*f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld ref_len = %lld)",
             label ? label : "BLEU", decimals, b->score, b->precisions[0], b->precisions[1],
             b->precisions[2], b->precisions[3], b->bp, b->ratio, (long long)b->hyp_len,
             (long long)b->ref_len);
}

/* ---------------------------------------------------------------- files */

void tfm_eval_lines_free(tfm_eval_lines *l) {
    if (!l) return;
    free(l->lines);
    free(l->data);
    memset(l, 0, sizeof *l);
}

/* A line must be valid UTF-8 without NUL (columns are 1-based bytes). */
static int check_line(void *ctx, const char *line, size_t len, const char *name, int64_t lineno) {
    int64_t *n_lines = ctx;
    const unsigned char *u = (const unsigned char *)line;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t cp_len = u8_decode(u + i, len - i, &cp);
        if (cp == 0) {
            tfm_set_error("%s:%lld: NUL byte at column %zu", name, (long long)lineno, i + 1);
            return -1;
        }
        if (cp == BAD_CP) {
            tfm_set_error("%s:%lld: invalid UTF-8 (byte 0x%02X at column %zu)", name,
                          (long long)lineno, u[i], i + 1);
            return -1;
        }
        i += cp_len;
    }
    ++*n_lines;
    return 0;
}

/* Ends the line in place (its '\n', or the buffer's final NUL) and keeps it. */
static int take_line(void *ctx, const char *line, size_t len, const char *name, int64_t lineno) {
    (void)name;
    tfm_eval_lines *out = ctx;
    char *start = out->data + (line - out->data); /* the same byte, writable */
    start[len] = '\0';
    out->lines[lineno - 1] = start;
    return 0;
}

int tfm_eval_read_lines_fp(FILE *f, const char *name, tfm_eval_lines *out) {
    memset(out, 0, sizeof *out);
    tfm_buf data = {0};
    int64_t long_line = 0;
    /* lines up to the corpus reader's limit: /dev/zero cannot take all memory */
    int got = tfm_buf_read_all_lines(&data, f, (size_t)TFM_MAX_LINE_BYTES_DEFAULT, &long_line);
    if (got == -2) {
        tfm_buf_free(&data);
        tfm_set_error("%s:%lld: line longer than %lld bytes", name, (long long)long_line,
                      (long long)TFM_MAX_LINE_BYTES_DEFAULT);
        return -1;
    }
    if (got && !data.oom) {
        int err = errno;
        tfm_buf_free(&data);
        tfm_set_error("%s: cannot read: %s", name, strerror(err));
        return -1;
    }
    tfm_buf_put(&data, '\0');
    if (data.oom) {
        tfm_buf_free(&data);
        tfm_set_error("%s: out of memory reading the file", name);
        return -1;
    }
    size_t n = data.len - 1;
    int64_t n_lines = 0;
    if (tfm_each_line_mem(data.p, n, name, check_line, &n_lines)) {
        tfm_buf_free(&data);
        return -1;
    }
    out->lines = malloc((size_t)(n_lines ? n_lines : 1) * sizeof *out->lines);
    if (!out->lines) {
        tfm_buf_free(&data);
        tfm_set_error("%s: out of memory reading the file", name);
        return -1;
    }
    out->data = data.p;
    tfm_each_line_mem(data.p, n, name, take_line, out);
    out->n = n_lines;
    return 0;
}

int tfm_eval_read_lines(const char *path, tfm_eval_lines *out) {
    memset(out, 0, sizeof *out);
    size_t n = strlen(path);
    if (n >= 3 && !strcmp(path + n - 3, ".gz")) {
        tfm_set_error("%s: gzip input is not supported; decompress it first", path);
        return -1;
    }
    FILE *f = tfm_open_input(path);
    if (!f) return -1;
    int status = tfm_eval_read_lines_fp(f, path, out);
    fclose(f);
    return status;
}
