/* Strict UTF-8 (RFC 3629): validation and code point iteration. Self-contained
 * so that corpus reading, BPE and BLEU all agree on what valid text is. */
#include <stdint.h>
#include <string.h>

#include "tfm/text.h"

/* The table from RFC 3629 section 4: the second byte's range depends on the
 * lead byte, which is what excludes overlongs (E0 80..9F, F0 80..8F),
 * surrogates (ED A0..BF) and code points above U+10FFFF (F4 90..BF). */
size_t tfm_utf8_seq_len(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0; /* 80..C1 (continuation or overlong lead), F5..FF */
    }
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

int tfm_utf8_check(const char *s, size_t n, size_t *bad_offset) {
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path: most text is mostly ASCII. */
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = tfm_utf8_seq_len(s + i, n - i);
        if (len == 0) {
            if (bad_offset) *bad_offset = i;
            return -1;
        }
        i += len;
    }
    return 0;
}

const char *tfm_utf8_error(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    if (n == 0) return NULL;
    unsigned c = s[0];
    if (c < 0x80) return NULL;
    if (c < 0xC0) return "unexpected continuation byte";
    if (c < 0xC2) return "overlong encoding";
    if (c >= 0xF8) return "invalid byte";
    if (c >= 0xF5) return "code point above U+10FFFF";
    size_t len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    for (size_t i = 1; i < len; i++)
        if (i >= n || (s[i] & 0xC0) != 0x80) return "truncated sequence";
    /* every byte is in place: only the second byte's range can be wrong */
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xF0 && s[1] < 0x90)) return "overlong encoding";
    if (c == 0xED && s[1] > 0x9F) return "UTF-16 surrogate";
    if (c == 0xF4 && s[1] > 0x8F) return "code point above U+10FFFF";
    return NULL;
}

int32_t tfm_utf8_next(const char *str, size_t n, size_t *pos) {
    if (*pos >= n) return -1;
    const unsigned char *s = (const unsigned char *)str + *pos;
    size_t len = tfm_utf8_seq_len(str + *pos, n - *pos);
    int32_t cp;
    switch (len) {
    case 1:
        cp = s[0];
        break;
    case 2:
        cp = (int32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
        break;
    case 3:
        cp = (int32_t)(s[0] & 0x0F) << 12 | (int32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        break;
    case 4:
        cp = (int32_t)(s[0] & 0x07) << 18 | (int32_t)(s[1] & 0x3F) << 12 |
             (int32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
        break;
    default:
        return -1;
    }
    *pos += len;
    return cp;
}

size_t tfm_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF) return 0;
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int64_t tfm_utf8_count(const char *s, size_t n) {
    int64_t count = 0;
    size_t i = 0;
    while (i < n) {
        size_t len = tfm_utf8_seq_len(s + i, n - i);
        if (len == 0) return -1;
        i += len;
        count++;
    }
    return count;
}
