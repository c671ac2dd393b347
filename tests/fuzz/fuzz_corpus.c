/* libFuzzer target for the line reader: arbitrary bytes through
 * tfm_text_parse_lines and through the streaming reader fed in pieces.
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -D_DEFAULT_SOURCE \
 *     tests/fuzz/fuzz_corpus.c src/data/corpus.c src/core/base.c -lm -o /tmp/fz
 *   /tmp/fz -max_total_time=60
 * Besides crashes and sanitizer reports it checks that
 *   - chunked and whole-buffer reading agree (same status, error, lines);
 *   - every line is normalized (no ASCII whitespace but single inner spaces,
 *     no leading/trailing space), NUL-free, at most max_line_bytes long;
 *   - on success the line count matches the newlines in the input;
 *   - the outcome (success, or which error on which line) matches a simple
 *     reference model with its own UTF-8 decoder written differently
 *     (decode the code point, then check its range). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/data.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_corpus: check failed at line %d: %s\n", __LINE__, #cond);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int is_ws(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' || c == '\n';
}

/* Reference UTF-8 check: decode each sequence to a code point, then reject
 * overlong forms by the minimum value for its length, surrogates, and values
 * above U+10FFFF. Returns n if valid and NUL-free, else the offset of the
 * first bad sequence (or NUL). */
static size_t ref_check(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], cp, min;
        size_t len;
        if (c == 0) return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0)
            len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0)
            len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0)
            len = 4, cp = c & 0x07, min = 0x10000;
        else
            return i;
        if (i + len > n) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return i;
        i += len;
    }
    return n;
}

/* The expected outcome: 0 for success, else the 1-based number of the first
 * bad line, with in kind a phrase its message must contain. */
static int64_t ref_model(const char *t, size_t len, const tfm_corpus_opts *o, char *kind,
                         size_t kind_cap) {
    int64_t max_line = o->max_line_bytes > 0 ? o->max_line_bytes : TFM_MAX_LINE_BYTES_DEFAULT;
    size_t at = 0;
    for (int64_t line = 1; at < len; line++) {
        const char *nl = memchr(t + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (t + at)) : len - at;
        const unsigned char *s = (const unsigned char *)t + at;
        size_t m = n > 0 && s[n - 1] == '\r' ? n - 1 : n;
        if ((int64_t)m > max_line) {
            snprintf(kind, kind_cap, "absurdly long");
            return line;
        }
        size_t bad = ref_check(s, m);
        if (bad < m) {
            snprintf(kind, kind_cap, "%s at byte column %zu", s[bad] ? "invalid UTF-8" : "NUL byte",
                     bad + 1);
            return line;
        }
        size_t skip = line == 1 && m >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3) ? 3 : 0;
        int blank = 1;
        for (size_t k = skip; k < m; k++) blank &= is_ws(s[k]);
        if (blank && !o->allow_empty) {
            snprintf(kind, kind_cap, "empty sentence");
            return line;
        }
        at += n + 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the first two bytes choose the options and the chunk size */
    if (size < 2) return 0;
    tfm_corpus_opts opts = {0};
    opts.allow_empty = data[0] & 1;
    opts.allow_empty_file = (data[1] & 0x80) != 0;
    opts.max_line_bytes = (data[0] & 2) ? 1 + (data[0] >> 2) : 0; /* 1..64 or the default */
    size_t chunk = 1 + (data[1] & 0x7F);
    const char *text = (const char *)data + 2;
    size_t len = size - 2;

    tfm_lines whole;
    int rc_whole = tfm_text_parse_lines("fuzz", text, len, &opts, &whole);
    char err_whole[1024];
    snprintf(err_whole, sizeof err_whole, "%s", rc_whole ? tfm_last_error() : "");

    tfm_line_reader r;
    tfm_line_reader_init(&r, "fuzz", &opts);
    int rc = 0;
    for (size_t at = 0; at < len && !rc; at += chunk)
        rc = tfm_line_reader_feed(&r, text + at, len - at < chunk ? len - at : chunk);
    tfm_lines pieces;
    if (rc) {
        tfm_line_reader_free(&r);
        memset(&pieces, 0, sizeof pieces);
    } else {
        rc = tfm_line_reader_finish(&r, &pieces);
    }
    CHECK(rc == rc_whole);
    char kind[128] = "";
    int64_t bad_line = ref_model(text, len, &opts, kind, sizeof kind);
    if (len == 0 && !opts.allow_empty_file) {
        CHECK(rc && strcmp(err_whole, "fuzz: file is empty") == 0);
        return 0;
    }
    CHECK((bad_line != 0) == (rc != 0));
    if (rc) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "fuzz:%lld: ", (long long)bad_line);
        CHECK(strncmp(err_whole, prefix, strlen(prefix)) == 0);
        CHECK(strstr(err_whole, kind) != NULL);
        CHECK(strcmp(err_whole, tfm_last_error()) == 0);
        CHECK(whole.n == 0 && whole.line == NULL);
        return 0;
    }

    int64_t max_line = opts.max_line_bytes > 0 ? opts.max_line_bytes : TFM_MAX_LINE_BYTES_DEFAULT;
    int64_t newlines = 0;
    for (size_t i = 0; i < len; i++) newlines += text[i] == '\n';
    int64_t want_n = newlines + (len > 0 && text[len - 1] != '\n');
    CHECK(whole.n == want_n);
    CHECK(pieces.n == whole.n);
    for (int64_t i = 0; i < whole.n; i++) {
        const char *s = whole.line[i];
        size_t n = strlen(s);
        CHECK(strcmp(s, pieces.line[i]) == 0);
        CHECK((int64_t)n <= max_line);
        CHECK(opts.allow_empty || n > 0);
        for (size_t k = 0; k < n; k++) {
            unsigned char c = (unsigned char)s[k];
            CHECK(!is_ws(c) || c == ' ');
            if (c == ' ') CHECK(k > 0 && k + 1 < n && s[k + 1] != ' ');
        }
    }
    tfm_lines_free(&whole);
    tfm_lines_free(&pieces);
    return 0;
}
