/* Growable arrays and byte buffers: see buf.h. */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/base.h"

int tfm_bytes_reserve(char **p, size_t *cap, size_t len, size_t extra) {
    if (extra <= *cap - len) return 0;
    if (extra > SIZE_MAX / 2 - len) return -1;
    size_t c = *cap ? *cap : 256;
    while (c - len < extra) c *= 2;
    char *q = realloc(*p, c);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

int tfm_grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 0;
    int64_t c = *cap > 0 ? *cap : 16;
    while (c < need) {
        if ((uint64_t)c > SIZE_MAX / 2 / elem) {
            tfm_set_error("out of memory: could not allocate %lld elements of %zu bytes",
                          (long long)need, elem);
            return -1;
        }
        c *= 2;
    }
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) {
        tfm_set_error("out of memory: could not allocate %zu bytes", (size_t)c * elem);
        return -1;
    }
    *p = q;
    *cap = c;
    return 0;
}

int tfm_buf_reserve(tfm_buf *b, size_t extra) {
    if (b->oom) return -1;
    if (tfm_bytes_reserve(&b->p, &b->cap, b->len, extra) == 0) return 0;
    b->oom = 1;
    return -1;
}

void tfm_buf_add(tfm_buf *b, const void *s, size_t n) {
    if (n && tfm_buf_reserve(b, n) == 0) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

void tfm_buf_free(tfm_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

char *tfm_strndup(const char *s, size_t n) {
    char *d = n < SIZE_MAX ? malloc(n + 1) : NULL;
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

char *tfm_strdup(const char *s) { return tfm_strndup(s, strlen(s)); }

int tfm_buf_read_all_lines(tfm_buf *b, FILE *f, size_t max_line, int64_t *long_line) {
    size_t line_start = b->len, scanned = b->len;
    int64_t line = 1;
    for (;;) {
        if (tfm_buf_reserve(b, 65536)) return -1;
        size_t got = fread(b->p + b->len, 1, b->cap - b->len, f);
        b->len += got;
        for (; scanned < b->len; scanned++) {
            if (b->p[scanned] != '\n') continue;
            if (scanned - line_start > max_line + 1) break; /* a whole line read at once */
            line_start = scanned + 1;
            line++;
        }
        size_t open_end = scanned < b->len ? scanned : b->len;
        if (open_end - line_start > max_line + 1) {
            *long_line = line;
            return -2;
        }
        if (got == 0) break;
    }
    return ferror(f) ? -1 : 0;
}

int tfm_buf_read_all(tfm_buf *b, FILE *f) {
    for (;;) {
        /* capacity doubles: linear overall */
        if (tfm_buf_reserve(b, 65536)) return -1;
        size_t got = fread(b->p + b->len, 1, b->cap - b->len, f);
        b->len += got;
        if (got == 0) break;
    }
    return ferror(f) ? -1 : 0;
}
