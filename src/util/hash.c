/* Byte-string hashing and the two hash maps: see hash.h. */
#include "hash.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "tfm/base.h"

uint64_t tfm_hash_bytes(const void *data, size_t len) {
    const unsigned char *s = data;
    uint64_t h = 0xcbf29ce484222325ull ^ len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < len; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return tfm_hash64(h);
}

int64_t tfm_strmap_find(const tfm_strmap *m, const char *key, size_t len) {
    if (!m->n_slots) return -1;
    uint64_t h = tfm_hash_bytes(key, len);
    size_t mask = m->n_slots - 1;
    for (size_t s = (size_t)h & mask;; s = (s + 1) & mask) {
        int64_t e = m->slot[s] - 1;
        if (e < 0) return -1;
        if (m->key_hash[e] == h && m->key_len[e] == len &&
            memcmp(m->pool + m->key_off[e], key, len) == 0)
            return e;
    }
}

static int rehash(tfm_strmap *m, size_t n_slots) {
    int64_t *slot = calloc(n_slots, sizeof *slot);
    if (!slot) {
        tfm_set_error("out of memory: hash table of %zu slots", n_slots);
        return -1;
    }
    size_t mask = n_slots - 1;
    for (int64_t e = 0; e < m->n; e++) {
        size_t s = (size_t)m->key_hash[e] & mask;
        while (slot[s]) s = (s + 1) & mask;
        slot[s] = e + 1;
    }
    free(m->slot);
    m->slot = slot;
    m->n_slots = n_slots;
    return 0;
}

int64_t tfm_strmap_add(tfm_strmap *m, const char *key, size_t len, int *added) {
    if (added) *added = 0;
    int64_t e = tfm_strmap_find(m, key, len);
    if (e >= 0) return e;
    if (len > UINT32_MAX - 1) {
        tfm_set_error("token of %zu bytes is too long", len);
        return -1;
    }
    /* Keep the load factor at most 1/2. */
    if ((size_t)(m->n + 1) * 2 > m->n_slots && rehash(m, m->n_slots ? m->n_slots * 2 : 64) != 0)
        return -1;
    if (m->n + 1 > m->cap) {
        int64_t c1 = m->cap, c2 = m->cap, c3 = m->cap;
        if (tfm_grow((void **)&m->key_off, &c1, m->n + 1, sizeof *m->key_off) ||
            tfm_grow((void **)&m->key_len, &c2, m->n + 1, sizeof *m->key_len) ||
            tfm_grow((void **)&m->key_hash, &c3, m->n + 1, sizeof *m->key_hash))
            return -1;
        m->cap = c1;
    }
    if (tfm_bytes_reserve(&m->pool, &m->pool_cap, m->pool_len, len + 1)) {
        tfm_set_error("out of memory: string pool of %zu bytes", m->pool_len + len + 1);
        return -1;
    }
    e = m->n++;
    memcpy(m->pool + m->pool_len, key, len);
    m->pool[m->pool_len + len] = 0;
    m->key_off[e] = m->pool_len;
    m->key_len[e] = (uint32_t)len;
    uint64_t h = tfm_hash_bytes(key, len);
    m->key_hash[e] = h;
    m->pool_len += len + 1;
    size_t mask = m->n_slots - 1;
    size_t s = (size_t)h & mask;
    while (m->slot[s]) s = (s + 1) & mask;
    m->slot[s] = e + 1;
    if (added) *added = 1;
    return e;
}

void tfm_strmap_free(tfm_strmap *m) {
    free(m->pool);
    free(m->key_off);
    free(m->key_len);
    free(m->key_hash);
    free(m->slot);
    memset(m, 0, sizeof *m);
}

int32_t tfm_u64map_get(const tfm_u64map *m, uint64_t key) {
    if (!m->n_slots) return -1;
    size_t mask = m->n_slots - 1;
    for (size_t s = (size_t)tfm_hash64(key) & mask;; s = (s + 1) & mask) {
        if (m->key[s] == key) return m->val[s];
        if (m->key[s] == UINT64_MAX) return -1;
    }
}

static int u64map_rehash(tfm_u64map *m, size_t n_slots) {
    uint64_t *key = malloc(n_slots * sizeof *key);
    int32_t *val = malloc(n_slots * sizeof *val);
    if (!key || !val) {
        free(key);
        free(val);
        tfm_set_error("out of memory: hash table of %zu slots", n_slots);
        return -1;
    }
    memset(key, 0xFF, n_slots * sizeof *key);
    size_t mask = n_slots - 1;
    for (size_t i = 0; i < m->n_slots; i++) {
        if (m->key[i] == UINT64_MAX) continue;
        size_t s = (size_t)tfm_hash64(m->key[i]) & mask;
        while (key[s] != UINT64_MAX) s = (s + 1) & mask;
        key[s] = m->key[i];
        val[s] = m->val[i];
    }
    free(m->key);
    free(m->val);
    m->key = key;
    m->val = val;
    m->n_slots = n_slots;
    return 0;
}

int32_t *tfm_u64map_put(tfm_u64map *m, uint64_t key, int32_t init, int *added) {
    if (added) *added = 0;
    if ((size_t)(m->n + 1) * 2 > m->n_slots &&
        u64map_rehash(m, m->n_slots ? m->n_slots * 2 : 64) != 0)
        return NULL;
    size_t mask = m->n_slots - 1;
    size_t s = (size_t)tfm_hash64(key) & mask;
    for (; m->key[s] != UINT64_MAX; s = (s + 1) & mask)
        if (m->key[s] == key) return &m->val[s];
    m->key[s] = key;
    m->val[s] = init;
    m->n++;
    if (added) *added = 1;
    return &m->val[s];
}

void tfm_u64map_free(tfm_u64map *m) {
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}
