/* Private to the library (src/, not include/): hashing of byte strings and
 * two open-addressing hash maps (linear probing, load factor at most 1/2). */
#ifndef TFM_UTIL_HASH_H
#define TFM_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a over 8-byte words then the splitmix finaliser (tfm_hash64): fast on
 * short keys and well mixed in the low bits that pick a slot. */
uint64_t tfm_hash_bytes(const void *s, size_t len);

/* A string -> dense index map. Entries are numbered 0, 1, ... in insertion
 * order, so the index doubles as a symbol id or vocabulary id; callers keep
 * per-entry values in their own arrays. Keys are copied into one pool and
 * kept NUL-terminated (keys must not contain NUL). Zero-initialise to start
 * empty. */
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

/* Entry index of key, or -1. */
int64_t tfm_strmap_find(const tfm_strmap *m, const char *key, size_t len);
/* Entry index of key, inserting it when absent (*added = 1). -1 when out of
 * memory or the key is longer than 4 GiB (error set). */
int64_t tfm_strmap_add(tfm_strmap *m, const char *key, size_t len, int *added);
static inline const char *tfm_strmap_key(const tfm_strmap *m, int64_t i) {
    return m->pool + m->key_off[i];
}
void tfm_strmap_free(tfm_strmap *m);

/* uint64 key -> int32 value map. UINT64_MAX is reserved as the empty
 * marker. Zero-initialise to start empty. */
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

#endif
