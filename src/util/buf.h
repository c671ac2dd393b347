/* Private to the library (src/, not include/): growable arrays and byte
 * buffers, and reading a whole stream into memory. One implementation of the
 * doubling policy for every layer above. None of these set tfm_last_error()
 * except tfm_grow: the caller names what it was building. */
#ifndef TFM_UTIL_BUF_H
#define TFM_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Makes room for `extra` more bytes after the first `len` of the malloc'd
 * *p (capacity *cap), doubling from 256. 0 ok; -1 when out of memory or the
 * size would overflow (*p and *cap unchanged, no error set). */
int tfm_bytes_reserve(char **p, size_t *cap, size_t len, size_t extra);

/* Grows a malloc'd array to hold at least need elements (doubling from 16).
 * 0 ok; -1 out of memory ("out of memory: could not allocate N bytes" set;
 * *p and *cap unchanged). */
int tfm_grow(void **p, int64_t *cap, int64_t need, size_t elem);

/* A growable byte buffer. Allocation failure sets oom, after which every
 * reservation fails and tfm_buf_add drops its bytes (tfm_buf_put, inlined for
 * tokenizer loops, may still fill room already there), so inner loops stay
 * free of error plumbing; the caller checks oom once. Zero-initialise ({0}) to start empty. Not
 * NUL-terminated unless the caller puts a '\0'. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} tfm_buf;

/* Room for extra more bytes: 0 ok, -1 (and oom set) when out of memory. */
int tfm_buf_reserve(tfm_buf *b, size_t extra);
static inline void tfm_buf_put(tfm_buf *b, char c) {
    if (b->len < b->cap || tfm_buf_reserve(b, 1) == 0) b->p[b->len++] = c;
}
void tfm_buf_add(tfm_buf *b, const void *s, size_t n);
void tfm_buf_free(tfm_buf *b);

/* A malloc'd NUL-terminated copy of s / of the first n bytes of s; NULL
 * when out of memory (no error set). */
char *tfm_strdup(const char *s);
char *tfm_strndup(const char *s, size_t n);

/* Appends everything left in f to b. 0 ok; -1 when out of memory (b->oom
 * set) or on a read error (ferror(f) set, errno as fread left it). */
int tfm_buf_read_all(tfm_buf *b, FILE *f);
/* The same, but stops (returning -2, with *long_line the 1-based number of
 * the line) as soon as a line exceeds max_line bytes before its newline (a
 * '\r' before the newline not counted): /dev/zero or a file without line
 * breaks cannot take all memory. */
int tfm_buf_read_all_lines(tfm_buf *b, FILE *f, size_t max_line, int64_t *long_line);

#endif
