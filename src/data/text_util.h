/* Private to src/data: a string -> dense index hash map (open addressing,
 * linear probing). Entries are numbered 0, 1, ... in insertion order, so the
 * index doubles as a symbol id or vocabulary id; callers keep per-entry
 * values in their own arrays. Keys are copied into one pool and kept
 * NUL-terminated (keys must not contain NUL). */
#ifndef TFM_DATA_TEXT_UTIL_H
#define TFM_DATA_TEXT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "tfm/text.h"

typedef struct {
    char *pool; /* keys, each NUL-terminated */
    size_t pool_len, pool_cap;
    size_t *key_off;    /* (n) offset of key i in pool */
    uint32_t *key_len;  /* (n) */
    uint64_t *key_hash; /* (n) */
    int64_t n, cap;
    int64_t *slot;  /* (n_slots) entry index + 1, 0 = empty */
    size_t n_slots; /* power of two */
} tfm_strmap;

uint64_t tfm_str_hash(const char *s, size_t len);
/* Entry index of key, or -1. */
int64_t tfm_strmap_find(const tfm_strmap *m, const char *key, size_t len);
/* Entry index of key, inserting it when absent (*added = 1). -1 when out of
 * memory or the key is longer than 4 GiB (error set). */
int64_t tfm_strmap_add(tfm_strmap *m, const char *key, size_t len, int *added);
static inline const char *tfm_strmap_key(const tfm_strmap *m, int64_t i) {
    return m->pool + m->key_off[i];
}
void tfm_strmap_free(tfm_strmap *m);

/* uint64 key -> int32 value map (open addressing). UINT64_MAX is reserved
 * as the empty marker. */
typedef struct {
    uint64_t *key;
    int32_t *val;
    int64_t n;
    size_t n_slots; /* power of two */
} tfm_u64map;
/* Value of key, or -1. */
int32_t tfm_u64map_get(const tfm_u64map *m, uint64_t key);
/* Pointer to key's value, inserting it with value init when absent; NULL when
 * out of memory (error set). The pointer is valid until the next insert. */
int32_t *tfm_u64map_put(tfm_u64map *m, uint64_t key, int32_t init, int *added);
void tfm_u64map_free(tfm_u64map *m);

/* Grow a malloc'd array to hold at least need elements (doubling). 0 ok,
 * -1 out of memory (error set; *p unchanged). */
int tfm_grow(void **p, int64_t *cap, int64_t need, size_t elem);

/* Calls fn on every line (without its '\n'; a trailing '\r' is kept) of a
 * file or buffer, with 1-based line numbers, stopping at the first non-zero
 * return. A last line without '\n' counts; an empty buffer has no lines.
 * Opening/reading errors name the file. */
typedef int (*tfm_line_fn)(void *ctx, const char *line, size_t len, const char *name,
                           int64_t lineno);
int tfm_each_line_file(const char *path, tfm_line_fn fn, void *ctx);
int tfm_each_line_mem(const char *data, size_t len, const char *name, tfm_line_fn fn, void *ctx);

/* 0 when line is valid UTF-8 without NUL; otherwise sets
 * "name:lineno: invalid UTF-8 at byte N" (N 1-based) and returns -1. */
int tfm_text_check_line(const char *line, size_t len, const char *name, int64_t lineno);

/* The tfm_bpe's own subword list, reused by tfm_vocab_encode. */
struct tfm_bpe;
tfm_subwords *tfm_bpe_scratch_(struct tfm_bpe *b);

#endif
