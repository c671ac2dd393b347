/* Hash maps and line reading shared by BPE and the vocabulary. */
#include "text_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/base.h"
#include "tfm/text.h"

int tfm_grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 0;
    int64_t c = *cap > 0 ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) {
        tfm_set_error("out of memory: could not allocate %zu bytes", (size_t)c * elem);
        return -1;
    }
    *p = q;
    *cap = c;
    return 0;
}

/* FNV-1a over 8-byte words then a splitmix finaliser: fast on short keys
 * and well mixed in the low bits used for the slot. */
uint64_t tfm_str_hash(const char *s, size_t len) {
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
    uint64_t h = tfm_str_hash(key, len);
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
    if (m->pool_len + len + 1 > m->pool_cap) {
        size_t c = m->pool_cap ? m->pool_cap : 4096;
        while (c < m->pool_len + len + 1) c *= 2;
        char *p = realloc(m->pool, c);
        if (!p) {
            tfm_set_error("out of memory: string pool of %zu bytes", c);
            return -1;
        }
        m->pool = p;
        m->pool_cap = c;
    }
    e = m->n++;
    memcpy(m->pool + m->pool_len, key, len);
    m->pool[m->pool_len + len] = 0;
    m->key_off[e] = m->pool_len;
    m->key_len[e] = (uint32_t)len;
    uint64_t h = tfm_str_hash(key, len);
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

int tfm_each_line_file(const char *path, tfm_line_fn fn, void *ctx) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        tfm_set_error("%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int64_t lineno = 0;
    int rc = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        size_t len = (size_t)got;
        if (len && line[len - 1] == '\n') len--;
        if ((rc = fn(ctx, line, len, path, ++lineno)) != 0) break;
    }
    if (rc == 0 && ferror(f)) {
        tfm_set_error("%s: read error: %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    return rc;
}

int tfm_each_line_mem(const char *data, size_t len, const char *name, tfm_line_fn fn, void *ctx) {
    size_t pos = 0;
    int64_t lineno = 0;
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        int rc = fn(ctx, data + pos, end - pos, name, ++lineno);
        if (rc) return rc;
        pos = end + 1;
    }
    return 0;
}

int tfm_text_check_line(const char *line, size_t len, const char *name, int64_t lineno) {
    size_t bad = 0;
    const char *nul = memchr(line, 0, len);
    if (tfm_utf8_check(line, nul ? (size_t)(nul - line) : len, &bad) != 0) {
        tfm_set_error("%s:%lld: invalid UTF-8 at byte %zu", name, (long long)lineno, bad + 1);
        return -1;
    }
    if (nul) {
        tfm_set_error("%s:%lld: NUL byte at byte %zu", name, (long long)lineno,
                      (size_t)(nul - line) + 1);
        return -1;
    }
    return 0;
}
