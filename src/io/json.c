/* Strict JSON: a recursive-descent DOM parser and an appending writer.
 * See include/tfm/json.h for the rules it enforces. */
#include "tfm/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "../util/hash.h"
#include "tfm/atomic_file.h"
#include "tfm/text.h"

/* ---- object key index ----------------------------------------------------
 * Objects with many keys (a safetensors header has one per tensor) get an
 * open-addressing hash table so lookups and the duplicate check stay linear
 * overall instead of quadratic. Slots hold item index + 1; 0 is empty. */

#define INDEX_MIN_KEYS 8

static int64_t index_find(const tfm_json *o, const char *k, size_t n) {
    if (!o->index) {
        for (int64_t i = o->count - 1; i >= 0; i--)
            if (o->key_lens[i] == n && memcmp(o->keys[i], k, n) == 0) return i;
        return -1;
    }
    uint64_t mask = (uint64_t)o->index_cap - 1;
    for (uint64_t s = tfm_hash_bytes(k, n) & mask;; s = (s + 1) & mask) {
        uint32_t slot = o->index[s];
        if (!slot) return -1;
        int64_t i = (int64_t)slot - 1;
        if (o->key_lens[i] == n && memcmp(o->keys[i], k, n) == 0) return i;
    }
}

/* A repeated key (only when duplicates are allowed) takes over the slot of
 * the earlier one: the last occurrence wins, as in Python's json. */
static void index_put(const tfm_json *o, uint32_t *index, int64_t cap, int64_t i) {
    const char *k = o->keys[i];
    size_t n = o->key_lens[i];
    uint64_t mask = (uint64_t)cap - 1;
    uint64_t s = tfm_hash_bytes(k, n) & mask;
    for (; index[s]; s = (s + 1) & mask) {
        int64_t j = (int64_t)index[s] - 1;
        if (o->key_lens[j] == n && memcmp(o->keys[j], k, n) == 0) break;
    }
    index[s] = (uint32_t)(i + 1);
}

/* Makes room for item count (already stored in keys[]) in the index, building
 * or growing it as needed; the load factor stays at or below one half. */
static int index_add(tfm_json *o, int64_t i) {
    if (o->count < INDEX_MIN_KEYS && !o->index) return 0;
    if (!o->index || 2 * (i + 1) > o->index_cap) {
        int64_t cap = o->index_cap ? o->index_cap : 16;
        while (2 * (i + 1) > cap) cap *= 2;
        uint32_t *index = calloc((size_t)cap, sizeof *index);
        if (!index) return -1;
        free(o->index);
        o->index = index;
        o->index_cap = cap;
        for (int64_t j = 0; j <= i; j++) index_put(o, index, cap, j);
        return 0;
    }
    index_put(o, o->index, o->index_cap, i);
    return 0;
}

/* ---- parser -------------------------------------------------------------- */

typedef struct {
    const unsigned char *s;
    size_t n, pos;
    const char *source;
    int max_depth;
    int allow_dup;
    int failed;
    size_t used, max_memory; /* bytes allocated for the tree so far, and the cap */
} parser;

static void perr(parser *p, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void perr(parser *p, size_t at, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = 1;
    if (at > p->n) at = p->n;
    long long line = 1, col = 1;
    for (size_t i = 0; i < at; i++) {
        if (p->s[i] == '\n')
            line++, col = 1;
        else
            col++;
    }
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    tfm_set_error("%s:%lld:%lld: %s (byte %zu)", p->source, line, col, what, at);
}

/* Printable description of the byte at pos for messages. */
static void describe(const parser *p, size_t pos, char *out, size_t cap) {
    if (pos >= p->n)
        snprintf(out, cap, "end of input");
    else if (p->s[pos] >= 0x20 && p->s[pos] < 0x7F)
        snprintf(out, cap, "'%c'", p->s[pos]);
    else
        snprintf(out, cap, "byte 0x%02X", p->s[pos]);
}

/* Text from the input made safe for a one-line message: control bytes
 * become '?', and long text is cut at a UTF-8 boundary and ends in "...". */
static const char *printable(const char *s, size_t n, char *out, size_t cap) {
    size_t limit = cap - 4, o = 0;
    int cut = n > limit;
    if (cut) {
        n = limit;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    for (size_t i = 0; i < n; i++)
        out[o++] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7F) ? '?' : s[i];
    if (cut) memcpy(out + o, "...", 3), o += 3;
    out[o] = 0;
    return out;
}

static void skip_ws(parser *p) {
    while (p->pos < p->n) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

/* Counts an allocation against the memory cap (with a typical malloc
 * overhead); 0 when it fits. */
static int charge(parser *p, size_t bytes, size_t at) {
    p->used += bytes + 16;
    if (p->used <= p->max_memory) return 0;
    perr(p, at, "document needs more than %zu bytes of memory", p->max_memory);
    return -1;
}

static tfm_json *new_node(parser *p, tfm_json_type type, size_t offset) {
    if (charge(p, sizeof(tfm_json), offset)) return NULL;
    tfm_json *v = calloc(1, sizeof *v);
    if (!v) {
        perr(p, offset, "out of memory");
        return NULL;
    }
    v->type = type;
    v->offset = offset;
    return v;
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits at pos, or -1. */
static long hex4(const parser *p, size_t pos) {
    if (pos > p->n || p->n - pos < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[pos + (size_t)i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Parses the string starting at the opening quote at p->pos. The decoded
 * text is never longer than the raw text (every escape shrinks or keeps its
 * length in UTF-8), so one allocation of the raw length suffices. */
static int parse_string(parser *p, char **out, size_t *out_len) {
    size_t start = p->pos++;
    size_t end = p->pos;
    while (end < p->n && p->s[end] != '"') end += (p->s[end] == '\\' && end + 1 < p->n) ? 2 : 1;
    if (end >= p->n) {
        perr(p, start, "unterminated string");
        return -1;
    }
    if (charge(p, end - p->pos + 1, start)) return -1;
    char *buf = malloc(end - p->pos + 1);
    if (!buf) {
        perr(p, start, "out of memory");
        return -1;
    }
    size_t len = 0;
    while (p->pos < end) {
        unsigned char c = p->s[p->pos];
        if (c == '\\') {
            size_t esc = p->pos;
            unsigned char e = p->s[p->pos + 1];
            p->pos += 2;
            switch (e) {
            case '"':
                buf[len++] = '"';
                break;
            case '\\':
                buf[len++] = '\\';
                break;
            case '/':
                buf[len++] = '/';
                break;
            case 'b':
                buf[len++] = '\b';
                break;
            case 'f':
                buf[len++] = '\f';
                break;
            case 'n':
                buf[len++] = '\n';
                break;
            case 'r':
                buf[len++] = '\r';
                break;
            case 't':
                buf[len++] = '\t';
                break;
            case 'u': {
                long cp = hex4(p, p->pos);
                if (cp < 0) {
                    perr(p, esc, "bad \\u escape: expected four hex digits");
                    goto fail;
                }
                p->pos += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    perr(p, esc, "lone low surrogate \\u%04lX", cp);
                    goto fail;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    long lo = (p->pos + 1 < end && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u')
                                  ? hex4(p, p->pos + 2)
                                  : -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        perr(p, esc, "high surrogate \\u%04lX not followed by a low surrogate", cp);
                        goto fail;
                    }
                    p->pos += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                len += tfm_utf8_encode((uint32_t)cp, buf + len);
                break;
            }
            default: {
                char d[32];
                describe(p, esc + 1, d, sizeof d);
                perr(p, esc, "invalid escape: %s after a backslash", d);
                goto fail;
            }
            }
        } else if (c < 0x20) {
            perr(p, p->pos, "unescaped control character 0x%02X in string", c);
            goto fail;
        } else if (c < 0x80) {
            buf[len++] = (char)c;
            p->pos++;
        } else {
            size_t n = tfm_utf8_seq_len((const char *)p->s + p->pos, end - p->pos);
            if (!n) {
                perr(p, p->pos, "invalid UTF-8 in string");
                goto fail;
            }
            memcpy(buf + len, p->s + p->pos, n);
            len += n;
            p->pos += n;
        }
    }
    p->pos = end + 1;
    buf[len] = 0;
    *out = buf;
    *out_len = len;
    return 0;
fail:
    free(buf);
    return -1;
}

static tfm_json *parse_number(parser *p) {
    size_t start = p->pos, i = p->pos;
    const unsigned char *s = p->s;
    if (i < p->n && s[i] == '-') i++;
    if (i >= p->n || s[i] < '0' || s[i] > '9') {
        perr(p, start, "invalid number: expected a digit");
        return NULL;
    }
    if (s[i] == '0') {
        i++;
        if (i < p->n && s[i] >= '0' && s[i] <= '9') {
            perr(p, start, "invalid number: leading zero");
            return NULL;
        }
    } else {
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->n && s[i] == '.') {
        i++;
        if (i >= p->n || s[i] < '0' || s[i] > '9') {
            perr(p, start, "invalid number: expected a digit after '.'");
            return NULL;
        }
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->n || s[i] < '0' || s[i] > '9') {
            perr(p, start, "invalid number: expected a digit in the exponent");
            return NULL;
        }
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    tfm_json *v = new_node(p, TFM_JSON_NUMBER, start);
    if (!v || charge(p, i - start + 1, start)) {
        free(v);
        return NULL;
    }
    v->text_len = i - start;
    v->text = malloc(v->text_len + 1);
    if (!v->text) {
        free(v);
        perr(p, start, "out of memory");
        return NULL;
    }
    memcpy(v->text, s + start, v->text_len);
    v->text[v->text_len] = 0;
    /* The grammar above is a subset of what strtod accepts, so strtod
     * consumes exactly this text. Overflow to infinity is an error: no
     * finite double represents the number (underflow to 0 is fine). */
    v->number = strtod(v->text, NULL);
    if (isinf(v->number)) {
        perr(p, start, "number %s is out of range", v->text);
        free(v->text);
        free(v);
        return NULL;
    }
    p->pos = i;
    return v;
}

static tfm_json *parse_value(parser *p, int depth);

static int push_item(parser *p, tfm_json *c, tfm_json *item, int64_t *cap) {
    if (c->count == *cap) {
        int64_t ncap = *cap ? *cap * 2 : 4;
        /* Objects also hold keys, key lengths and the hash index. */
        size_t per_item = sizeof(tfm_json *) +
                          (c->type == TFM_JSON_OBJECT ? sizeof(char *) + sizeof(size_t) + 8 : 0);
        if (charge(p, (size_t)(ncap - *cap) * per_item, c->offset)) return -1;
        tfm_json **items = realloc(c->items, (size_t)ncap * sizeof *items);
        if (!items) goto oom;
        c->items = items;
        if (c->type == TFM_JSON_OBJECT) {
            char **keys = realloc(c->keys, (size_t)ncap * sizeof *keys);
            if (!keys) goto oom;
            c->keys = keys;
            size_t *lens = realloc(c->key_lens, (size_t)ncap * sizeof *lens);
            if (!lens) goto oom;
            c->key_lens = lens;
        }
        *cap = ncap;
    }
    c->items[c->count] = item;
    return 0;
oom:
    perr(p, c->offset, "out of memory");
    return -1;
}

static tfm_json *parse_container(parser *p, int depth, int is_object) {
    size_t start = p->pos;
    if (depth >= p->max_depth) {
        perr(p, start, "nesting deeper than %d levels", p->max_depth);
        return NULL;
    }
    tfm_json *c = new_node(p, is_object ? TFM_JSON_OBJECT : TFM_JSON_ARRAY, start);
    if (!c) return NULL;
    char close = is_object ? '}' : ']';
    int64_t cap = 0;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == close) {
        p->pos++;
        return c;
    }
    for (;;) {
        char *key = NULL;
        size_t key_len = 0, key_at = 0;
        if (is_object) {
            skip_ws(p);
            key_at = p->pos;
            if (p->pos >= p->n || p->s[p->pos] != '"') {
                char d[32];
                describe(p, p->pos, d, sizeof d);
                perr(p, p->pos, "expected a string key, got %s", d);
                goto fail;
            }
            if (parse_string(p, &key, &key_len)) goto fail;
            if (!p->allow_dup && index_find(c, key, key_len) >= 0) {
                char shown[104];
                perr(p, key_at, "duplicate key \"%s\"",
                     printable(key, key_len, shown, sizeof shown));
                free(key);
                goto fail;
            }
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') {
                char d[32];
                describe(p, p->pos, d, sizeof d);
                perr(p, p->pos, "expected ':' after key, got %s", d);
                free(key);
                goto fail;
            }
            p->pos++;
        }
        tfm_json *item = parse_value(p, depth + 1);
        if (!item) {
            free(key);
            goto fail;
        }
        if (push_item(p, c, item, &cap)) {
            free(key);
            tfm_json_free(item);
            goto fail;
        }
        if (is_object) {
            c->keys[c->count] = key;
            c->key_lens[c->count] = key_len;
        }
        c->count++;
        if (c->count >= UINT32_MAX - 1) {
            perr(p, start, "too many items");
            goto fail;
        }
        if (is_object && index_add(c, c->count - 1)) {
            perr(p, start, "out of memory");
            goto fail;
        }
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->n && p->s[p->pos] == close) {
            p->pos++;
            return c;
        }
        char d[32];
        describe(p, p->pos, d, sizeof d);
        perr(p, p->pos, "expected ',' or '%c' in %s, got %s", close, is_object ? "object" : "array",
             d);
        goto fail;
    }
fail:
    tfm_json_free(c);
    return NULL;
}

static tfm_json *parse_literal(parser *p, const char *word, tfm_json_type type, int b) {
    size_t n = strlen(word);
    if (p->n - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) {
        perr(p, p->pos, "invalid literal (expected %s)", word);
        return NULL;
    }
    tfm_json *v = new_node(p, type, p->pos);
    if (!v) return NULL;
    v->boolean = b;
    p->pos += n;
    return v;
}

static tfm_json *parse_value(parser *p, int depth) {
    skip_ws(p);
    if (p->pos >= p->n) {
        perr(p, p->pos, "unexpected end of input, expected a value");
        return NULL;
    }
    unsigned char c = p->s[p->pos];
    switch (c) {
    case '{':
        return parse_container(p, depth, 1);
    case '[':
        return parse_container(p, depth, 0);
    case '"': {
        tfm_json *v = new_node(p, TFM_JSON_STRING, p->pos);
        if (!v) return NULL;
        if (parse_string(p, &v->text, &v->text_len)) {
            free(v);
            return NULL;
        }
        return v;
    }
    case 't':
        return parse_literal(p, "true", TFM_JSON_BOOL, 1);
    case 'f':
        return parse_literal(p, "false", TFM_JSON_BOOL, 0);
    case 'n':
        return parse_literal(p, "null", TFM_JSON_NULL, 0);
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p);
        {
            char d[32];
            describe(p, p->pos, d, sizeof d);
            perr(p, p->pos, "unexpected %s, expected a value", d);
        }
        return NULL;
    }
}

int tfm_json_parse(const char *text, size_t len, const tfm_json_options *opt, const char *source,
                   tfm_json **out) {
    *out = NULL;
    parser p = {(const unsigned char *)text, len, 0, source ? source : "<json>",
                TFM_JSON_DEFAULT_DEPTH,      0,   0, 0,
                TFM_JSON_DEFAULT_MEMORY};
    if (opt) {
        if (opt->max_memory) p.max_memory = opt->max_memory;
        if (opt->max_depth > 0) p.max_depth = opt->max_depth;
        /* Recursion uses the C stack: keep it far from overflowing. */
        if (p.max_depth > TFM_JSON_MAX_DEPTH) p.max_depth = TFM_JSON_MAX_DEPTH;
        p.allow_dup = opt->allow_duplicate_keys;
    }
    if (!text && len) {
        perr(&p, 0, "no input");
        return -1;
    }
    /* Invalid UTF-8 outside strings is caught by the grammar (only ASCII is
     * allowed there) and inside strings by parse_string, so one pass
     * validates everything. A UTF-8 byte order mark is not JSON (RFC 8259
     * says parsers may ignore it; we refuse, like serde_json). */
    tfm_json *v = parse_value(&p, 0);
    if (!v) return -1;
    skip_ws(&p);
    if (p.pos != p.n) {
        char d[32];
        describe(&p, p.pos, d, sizeof d);
        perr(&p, p.pos, "trailing data after the JSON value: %s", d);
        tfm_json_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

int tfm_json_parse_file(const char *path, const tfm_json_options *opt, tfm_json **out) {
    *out = NULL;
    FILE *f = tfm_open_input(path);
    if (!f) return -1;
    tfm_buf buf = {0};
    int failed = tfm_buf_read_all(&buf, f);
    fclose(f);
    if (failed) {
        if (buf.oom)
            tfm_set_error("%s: out of memory", path);
        else
            tfm_set_error("%s: read error", path);
        tfm_buf_free(&buf);
        return -1;
    }
    int rc = tfm_json_parse(buf.p ? buf.p : "", buf.len, opt, path, out);
    tfm_buf_free(&buf);
    return rc;
}

void tfm_json_free(tfm_json *v) {
    if (!v) return;
    for (int64_t i = 0; i < v->count; i++) {
        tfm_json_free(v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->key_lens);
    free(v->index);
    free(v->text);
    free(v);
}

/* ---- accessors ------------------------------------------------------------ */

const char *tfm_json_type_name(tfm_json_type t) {
    switch (t) {
    case TFM_JSON_NULL:
        return "null";
    case TFM_JSON_BOOL:
        return "a boolean";
    case TFM_JSON_NUMBER:
        return "a number";
    case TFM_JSON_STRING:
        return "a string";
    case TFM_JSON_ARRAY:
        return "an array";
    case TFM_JSON_OBJECT:
        return "an object";
    }
    return "an unknown value";
}

const tfm_json *tfm_json_get_n(const tfm_json *obj, const char *key, size_t key_len) {
    if (!obj || obj->type != TFM_JSON_OBJECT || !key) return NULL;
    int64_t i = index_find(obj, key, key_len);
    return i < 0 ? NULL : obj->items[i];
}

const tfm_json *tfm_json_get(const tfm_json *obj, const char *key) {
    return key ? tfm_json_get_n(obj, key, strlen(key)) : NULL;
}

const tfm_json *tfm_json_at(const tfm_json *arr, int64_t i) {
    if (!arr || arr->type != TFM_JSON_ARRAY || i < 0 || i >= arr->count) return NULL;
    return arr->items[i];
}

int64_t tfm_json_len(const tfm_json *v) {
    if (!v || (v->type != TFM_JSON_ARRAY && v->type != TFM_JSON_OBJECT)) return -1;
    return v->count;
}

static int type_error(const tfm_json *v, const char *want) {
    tfm_set_error("expected %s, got %s", want, v ? tfm_json_type_name(v->type) : "nothing");
    return -1;
}

int tfm_json_as_int64(const tfm_json *v, int64_t *out) {
    if (!v || v->type != TFM_JSON_NUMBER) return type_error(v, "an integer");
    const char *s = v->text;
    int neg = *s == '-';
    if (neg) s++;
    /* Accumulate as a negative number so INT64_MIN fits. */
    int64_t acc = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            tfm_set_error("expected an integer, got %s", v->text);
            return -1;
        }
        int d = *s - '0';
        if (acc < (INT64_MIN + d) / 10) {
            tfm_set_error("integer %s does not fit in 64 bits", v->text);
            return -1;
        }
        acc = acc * 10 - d;
    }
    if (!neg) {
        if (acc == INT64_MIN) {
            tfm_set_error("integer %s does not fit in 64 bits", v->text);
            return -1;
        }
        acc = -acc;
    }
    *out = acc;
    return 0;
}

int tfm_json_as_double(const tfm_json *v, double *out) {
    if (!v || v->type != TFM_JSON_NUMBER) return type_error(v, "a number");
    *out = v->number;
    return 0;
}

int tfm_json_as_string(const tfm_json *v, const char **out, size_t *len) {
    if (!v || v->type != TFM_JSON_STRING) return type_error(v, "a string");
    *out = v->text;
    if (len) *len = v->text_len;
    return 0;
}

int tfm_json_as_bool(const tfm_json *v, int *out) {
    if (!v || v->type != TFM_JSON_BOOL) return type_error(v, "a boolean");
    *out = v->boolean;
    return 0;
}

/* Runs a typed read on obj[key] and rewrites its error as "'key': ...". */
static int member(const tfm_json *obj, const char *key, const tfm_json **v) {
    if (!obj || obj->type != TFM_JSON_OBJECT) {
        tfm_set_error("'%s': expected an object to look it up in, got %s", key,
                      obj ? tfm_json_type_name(obj->type) : "nothing");
        return -1;
    }
    *v = tfm_json_get(obj, key);
    if (!*v) {
        tfm_set_error("'%s': missing", key);
        return -1;
    }
    return 0;
}

static int keyed(const char *key, int rc) {
    if (rc) {
        tfm_set_error("'%s': %s", key, tfm_last_error());
    }
    return rc;
}

int tfm_json_get_int64(const tfm_json *obj, const char *key, int64_t *out) {
    const tfm_json *v;
    return member(obj, key, &v) ? -1 : keyed(key, tfm_json_as_int64(v, out));
}

int tfm_json_get_double(const tfm_json *obj, const char *key, double *out) {
    const tfm_json *v;
    return member(obj, key, &v) ? -1 : keyed(key, tfm_json_as_double(v, out));
}

int tfm_json_get_string(const tfm_json *obj, const char *key, const char **out) {
    const tfm_json *v;
    return member(obj, key, &v) ? -1 : keyed(key, tfm_json_as_string(v, out, NULL));
}

int tfm_json_get_bool(const tfm_json *obj, const char *key, int *out) {
    const tfm_json *v;
    return member(obj, key, &v) ? -1 : keyed(key, tfm_json_as_bool(v, out));
}

/* ---- writer ---------------------------------------------------------------- */

static void jw_fail(tfm_json_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jw_fail(tfm_json_writer *w, const char *fmt, ...) {
    if (w->failed) return;
    w->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->error, sizeof w->error, fmt, ap);
    va_end(ap);
}

static void jw_append(tfm_json_writer *w, const char *s, size_t n) {
    if (w->failed || n == 0) return;
    if (tfm_bytes_reserve(&w->data, &w->cap, w->len, n + 1)) {
        jw_fail(w, "out of memory (JSON text of %zu bytes)", w->len + n);
        return;
    }
    memcpy(w->data + w->len, s, n);
    w->len += n;
    w->data[w->len] = 0;
}

static void jw_puts(tfm_json_writer *w, const char *s) { jw_append(w, s, strlen(s)); }

static void jw_newline(tfm_json_writer *w) {
    if (!w->pretty) return;
    jw_append(w, "\n", 1);
    for (int i = 0; i < w->depth; i++) jw_append(w, "  ", 2);
}

/* Everything a value needs before it: a comma and newline inside containers,
 * nothing right after a key. Values inside objects must follow a key. */
static void jw_before_value(tfm_json_writer *w) {
    if (w->failed) return;
    if (w->after_key) {
        w->after_key = 0;
        return;
    }
    if (w->depth == 0) {
        if (w->len) jw_fail(w, "a second top-level value");
        return;
    }
    if (w->is_object[w->depth - 1]) {
        jw_fail(w, "a value inside an object without a key");
        return;
    }
    if (w->n_items[w->depth - 1]++) jw_append(w, ",", 1);
    jw_newline(w);
}

void tfm_jw_init(tfm_json_writer *w, int pretty) {
    memset(w, 0, sizeof *w);
    w->pretty = pretty;
}

void tfm_jw_free(tfm_json_writer *w) {
    free(w->data);
    w->data = NULL;
    w->len = w->cap = 0;
}

static void jw_begin(tfm_json_writer *w, int is_object) {
    jw_before_value(w);
    if (w->failed) return;
    if (w->depth >= TFM_JW_MAX_DEPTH) {
        jw_fail(w, "nesting deeper than %d levels", TFM_JW_MAX_DEPTH);
        return;
    }
    jw_append(w, is_object ? "{" : "[", 1);
    w->is_object[w->depth] = (unsigned char)is_object;
    w->n_items[w->depth] = 0;
    w->depth++;
}

static void jw_end(tfm_json_writer *w, int is_object) {
    if (w->failed) return;
    if (w->depth == 0 || w->is_object[w->depth - 1] != is_object || w->after_key) {
        jw_fail(w, "unbalanced %s", is_object ? "end_object" : "end_array");
        return;
    }
    w->depth--;
    if (w->n_items[w->depth]) jw_newline(w);
    jw_append(w, is_object ? "}" : "]", 1);
}

void tfm_jw_begin_object(tfm_json_writer *w) { jw_begin(w, 1); }
void tfm_jw_end_object(tfm_json_writer *w) { jw_end(w, 1); }
void tfm_jw_begin_array(tfm_json_writer *w) { jw_begin(w, 0); }
void tfm_jw_end_array(tfm_json_writer *w) { jw_end(w, 0); }

static void jw_quoted(tfm_json_writer *w, const char *s, size_t n) {
    if (w->failed) return;
    size_t bad;
    if (!s) {
        if (n) {
            jw_fail(w, "NULL string");
            return;
        }
        s = "";
    }
    if (tfm_utf8_check(s, n, &bad) != 0) {
        jw_fail(w, "string is not valid UTF-8 (byte %zu)", bad);
        return;
    }
    jw_append(w, "\"", 1);
    size_t run = 0; /* bytes copied verbatim in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[8];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (c < 0x20) {
                snprintf(ubuf, sizeof ubuf, "\\u%04x", c);
                esc = ubuf;
            }
        }
        if (esc) {
            jw_append(w, s + run, i - run);
            jw_puts(w, esc);
            run = i + 1;
        }
    }
    jw_append(w, s + run, n - run);
    jw_append(w, "\"", 1);
}

void tfm_jw_key_n(tfm_json_writer *w, const char *key, size_t len) {
    if (w->failed) return;
    if (w->depth == 0 || !w->is_object[w->depth - 1] || w->after_key) {
        jw_fail(w, "a key outside an object or after another key");
        return;
    }
    if (w->n_items[w->depth - 1]++) jw_append(w, ",", 1);
    jw_newline(w);
    jw_quoted(w, key, len);
    jw_puts(w, w->pretty ? ": " : ":");
    w->after_key = 1;
}

void tfm_jw_key(tfm_json_writer *w, const char *key) {
    if (!key) {
        jw_fail(w, "NULL key");
        return;
    }
    tfm_jw_key_n(w, key, strlen(key));
}

void tfm_jw_string_n(tfm_json_writer *w, const char *s, size_t len) {
    jw_before_value(w);
    jw_quoted(w, s, len);
}

void tfm_jw_string(tfm_json_writer *w, const char *s) {
    if (!s) {
        jw_fail(w, "NULL string");
        return;
    }
    tfm_jw_string_n(w, s, strlen(s));
}

void tfm_jw_int(tfm_json_writer *w, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    jw_before_value(w);
    jw_puts(w, buf);
}

/* Appends ".0" when the shortest form looks like an integer, so that a
 * Python reader gets a float back ("1.0", like json.dumps). */
static void jw_real(tfm_json_writer *w, char *buf) {
    jw_before_value(w);
    jw_puts(w, buf);
    if (!strpbrk(buf, ".eE")) jw_puts(w, ".0");
}

void tfm_jw_double(tfm_json_writer *w, double v) {
    if (!isfinite(v)) {
        jw_fail(w, "non-finite number %g has no JSON form", v);
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    jw_real(w, buf);
}

void tfm_jw_float(tfm_json_writer *w, float v) {
    if (!isfinite(v)) {
        jw_fail(w, "non-finite number %g has no JSON form", (double)v);
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    jw_real(w, buf);
}

void tfm_jw_bool(tfm_json_writer *w, int v) {
    jw_before_value(w);
    jw_puts(w, v ? "true" : "false");
}

void tfm_jw_null(tfm_json_writer *w) {
    jw_before_value(w);
    jw_puts(w, "null");
}

int tfm_jw_finish(tfm_json_writer *w) {
    if (!w->failed && (w->depth != 0 || w->after_key || w->len == 0))
        jw_fail(w, "incomplete document (%d unclosed containers)", w->depth);
    if (!w->failed && w->pretty && w->data[w->len - 1] != '\n') jw_append(w, "\n", 1);
    if (w->failed) {
        tfm_set_error("JSON writer: %s", w->error);
        return -1;
    }
    return 0;
}

int tfm_jw_save(tfm_json_writer *w, const char *path) {
    if (tfm_jw_finish(w)) {
        tfm_set_error("%s: %s", path, tfm_last_error());
        return -1;
    }
    return tfm_write_file_atomic(path, w->data, w->len);
}
