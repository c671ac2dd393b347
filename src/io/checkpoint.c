/* Crash-safe checkpoints: see include/tfm/checkpoint.h for the layout. */
#include "tfm/checkpoint.h"

#include "tfm/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/buf.h"   /* tfm_grow, tfm_strdup */
#include "../util/lines.h" /* tfm_each_line_mem */

/* ---- metadata map ----------------------------------------------------------- */
void tfm_kv_init(tfm_kv *kv) { memset(kv, 0, sizeof *kv); }

void tfm_kv_free(tfm_kv *kv) {
    for (int64_t i = 0; i < kv->n; i++) {
        free(kv->keys[i]);
        free(kv->vals[i]);
    }
    free(kv->keys);
    free(kv->vals);
    memset(kv, 0, sizeof *kv);
}

static int kv_oom(tfm_kv *kv) {
    kv->failed = 1;
    tfm_set_error("out of memory storing metadata");
    return 1;
}

static char *kv_strndup(const char *s, size_t n) {
    char *r = malloc(n + 1);
    if (!r) return NULL;
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

/* Copies key and val (vlen bytes, not necessarily NUL-terminated) into the
 * map, replacing an existing key's value. */
static int kv_putn(tfm_kv *kv, const char *key, const char *val, size_t vlen) {
    for (int64_t i = 0; i < kv->n; i++)
        if (!strcmp(kv->keys[i], key)) {
            char *v = kv_strndup(val, vlen);
            if (!v) return kv_oom(kv);
            free(kv->vals[i]);
            kv->vals[i] = v;
            return 0;
        }
    if (kv->n == kv->cap) {
        /* both arrays grow to the same capacity; kv->cap follows the second */
        int64_t cap = kv->cap;
        if (tfm_grow((void **)&kv->keys, &cap, kv->n + 1, sizeof(char *))) return kv_oom(kv);
        cap = kv->cap;
        if (tfm_grow((void **)&kv->vals, &cap, kv->n + 1, sizeof(char *))) return kv_oom(kv);
        kv->cap = cap;
    }
    char *k = tfm_strdup(key), *v = kv_strndup(val, vlen);
    if (!k || !v) {
        free(k);
        free(v);
        return kv_oom(kv);
    }
    kv->keys[kv->n] = k;
    kv->vals[kv->n] = v;
    kv->n++;
    return 0;
}

/* Values of any length: a short one is formatted on the stack, a longer one
 * (a long path, a list) into a buffer of its size. */
void tfm_kv_set(tfm_kv *kv, const char *key, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) {
        kv->failed = 1;
        tfm_set_error("metadata '%s': the value cannot be formatted", key);
        return;
    }
    if ((size_t)n < sizeof buf) {
        kv_putn(kv, key, buf, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        kv_oom(kv);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    kv_putn(kv, key, big, (size_t)n);
    free(big);
}

const char *tfm_kv_get(const tfm_kv *kv, const char *key) {
    for (int64_t i = 0; i < kv->n; i++)
        if (!strcmp(kv->keys[i], key)) return kv->vals[i];
    return NULL;
}

int tfm_kv_get_i64(const tfm_kv *kv, const char *key, int64_t *out, const char *where) {
    const char *v = tfm_kv_get(kv, key);
    if (!v) return tfm_set_error("%s: missing '%s'", where, key), 1;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno)
        return tfm_set_error("%s: '%s' = '%s' is not an integer", where, key, v), 1;
    *out = x;
    return 0;
}

int tfm_kv_get_u64(const tfm_kv *kv, const char *key, uint64_t *out, const char *where) {
    const char *v = tfm_kv_get(kv, key);
    if (!v) return tfm_set_error("%s: missing '%s'", where, key), 1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || errno || *v == '-')
        return tfm_set_error("%s: '%s' = '%s' is not an unsigned integer", where, key, v), 1;
    *out = x;
    return 0;
}

int tfm_kv_get_f64(const tfm_kv *kv, const char *key, double *out, const char *where) {
    const char *v = tfm_kv_get(kv, key);
    if (!v) return tfm_set_error("%s: missing '%s'", where, key), 1;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno)
        return tfm_set_error("%s: '%s' = '%s' is not a number", where, key, v), 1;
    *out = x;
    return 0;
}

/* One "key = value" line of tfm_kv_parse. A key is found by a linear scan:
 * the lines are capped, so a crafted file cannot make the parse quadratic
 * in its size (tfm writes about a hundred). */
static int kv_line(void *ctx, const char *text, size_t n, const char *where, int64_t lineno) {
    if (lineno > TFM_KV_MAX_LINES)
        return tfm_set_error("%s:%lld: more than %d lines of 'key = value'", where,
                             (long long)lineno, TFM_KV_MAX_LINES),
               1;
    if (memchr(text, 0, n)) return tfm_set_error("%s:%lld: NUL byte", where, (long long)lineno), 1;
    if (!n) return 0;
    size_t eq = 0;
    while (eq + 3 <= n && memcmp(text + eq, " = ", 3)) eq++;
    if (eq + 3 > n)
        return tfm_set_error("%s:%lld: expected 'key = value'", where, (long long)lineno), 1;
    char *key = kv_strndup(text, eq);
    int bad = !key || kv_putn(ctx, key, text + eq + 3, n - eq - 3);
    free(key);
    if (bad) return tfm_set_error("%s:%lld: out of memory", where, (long long)lineno), 1;
    return 0;
}

int tfm_kv_parse(tfm_kv *kv, const char *text, size_t len, const char *where) {
    return tfm_each_line_mem(text, len, where, kv_line, kv);
}

/* ---- CRC-32C (Castagnoli), table-driven, eight bytes per round ----------------------
 * crc_table[0] is the classic byte table; crc_table[k][b] is the CRC of byte
 * b followed by k zero bytes, so eight table lookups fold eight input bytes
 * at once ("slicing by 8"): the same CRC as the byte loop, several times
 * faster (a checkpoint is checked on every load and written on every save). */
static uint32_t crc_table[8][256];
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (int k = 1; k < 8; k++)
        for (uint32_t i = 0; i < 256; i++)
            crc_table[k][i] = crc_table[0][crc_table[k - 1][i] & 0xFF] ^ (crc_table[k - 1][i] >> 8);
}

uint32_t tfm_crc32c(uint32_t crc, const void *data, size_t n) {
    static int ready;
    if (!ready) {
#pragma omp critical(tfm_crc_init)
        if (!ready) {
            crc_init();
            ready = 1;
        }
    }
    const unsigned char *p = data;
    crc = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        /* little-endian byte order, whatever the host's */
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
              crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
              crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
    }
    for (; n > 0; n--, p++) crc = crc_table[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---- model config <-> metadata ------------------------------------------------------ */
void tfm_model_config_to_kv(const tfm_model_config *c, tfm_kv *kv) {
#define FMT_INT(v) "%lld", (long long)(v)
#define FMT_FLOAT(v) "%.9g", (double)(v)
#define FMT_BOOL(v) "%d", (int)(v)
#define FMT_START(v) "%s", tfm_decoder_start_name(v)
#define FMT_NEWBOOL(v) "%d", (int)(v)
#define FMT_NEWFLOAT(v) FMT_FLOAT(v)
#define X(type, field, flag, def, must_match, help)                                                \
    if (TFM_SETTING_WRITTEN_##type(c->field, def))                                                 \
        tfm_kv_set(kv, "model." #field, FMT_##type(c->field));
    TFM_MODEL_SETTINGS(X)
#undef X
#undef FMT_INT
#undef FMT_FLOAT
#undef FMT_BOOL
#undef FMT_START
#undef FMT_NEWBOOL
#undef FMT_NEWFLOAT
}

int tfm_model_config_from_kv(tfm_model_config *c, const tfm_kv *kv, const char *where) {
    tfm_model_config_default(c);
    int64_t i64;
    double f64;
#define GET_INT(field)                                                                             \
    if (tfm_kv_get_i64(kv, "model." #field, &i64, where)) return 1;                                \
    c->field = i64;
#define GET_BOOL(field)                                                                            \
    if (tfm_kv_get_i64(kv, "model." #field, &i64, where)) return 1;                                \
    c->field = (int)i64;
#define GET_FLOAT(field)                                                                           \
    if (tfm_kv_get_f64(kv, "model." #field, &f64, where)) return 1;                                \
    c->field = (float)f64;
/* absent: a checkpoint of the code before the setting (tfm/nn.h) */
#define GET_START(field)                                                                           \
    {                                                                                              \
        const char *name_ = tfm_kv_get(kv, "model." #field);                                       \
        c->field = name_ ? tfm_decoder_start_parse(name_) : TFM_START_BOS;                         \
        if (c->field < 0) {                                                                        \
            tfm_set_error("%s: model." #field " is '%s', not bos or zero", where, name_);          \
            return 1;                                                                              \
        }                                                                                          \
    }
/* absent: a checkpoint of the code before the setting, which had it off */
#define GET_NEWBOOL(field)                                                                         \
    c->field = 0;                                                                                  \
    if (tfm_kv_get(kv, "model." #field)) {                                                         \
        if (tfm_kv_get_i64(kv, "model." #field, &i64, where)) return 1;                            \
        c->field = (int)i64;                                                                       \
    }
/* absent: a checkpoint of the code before the setting; it keeps its default
 * (tfm_model_config_default above), which means what that code did */
#define GET_NEWFLOAT(field)                                                                        \
    if (tfm_kv_get(kv, "model." #field)) {                                                         \
        if (tfm_kv_get_f64(kv, "model." #field, &f64, where)) return 1;                            \
        c->field = (float)f64;                                                                     \
    }
#define X(type, field, flag, def, must_match, help) GET_##type(field)
    TFM_MODEL_SETTINGS(X)
#undef X
#undef GET_INT
#undef GET_BOOL
#undef GET_FLOAT
#undef GET_START
#undef GET_NEWBOOL
#undef GET_NEWFLOAT
    if (tfm_model_config_check(c)) {
        tfm_set_error("%s: bad model config: %s", where, tfm_last_error());
        return 1;
    }
    /* refuse absurd sizes before anything is allocated */
    double params = (double)c->vocab * c->d_model * 2 +
                    (double)(c->enc_layers + 2 * c->dec_layers) * (4.0 * c->d_model * c->d_model) +
                    (double)(c->enc_layers + c->dec_layers) * 2.0 * c->d_model * c->d_ff;
    if (params * 16 > 64e9) {
        tfm_set_error("%s: model of %.3g parameters does not fit in memory", where, params);
        return 1;
    }
    return 0;
}

/* ---- writing ------------------------------------------------------------------------ */
typedef struct {
    tfm_atomic_file af;
    uint32_t crc;
    int failed; /* the atomic file is already cleaned up (error set) */
} writer;

static void w_bytes(writer *w, const void *p, size_t n) {
    if (w->failed || !n) return;
    if (tfm_atomic_write(&w->af, p, n)) w->failed = 1;
    w->crc = tfm_crc32c(w->crc, p, n);
}
static void w_u32(writer *w, uint32_t x) { w_bytes(w, &x, 4); }
static void w_u64(writer *w, uint64_t x) { w_bytes(w, &x, 8); }

int tfm_checkpoint_save(const char *path, const tfm_kv *meta, const tfm_params *p,
                        const tfm_state_block *state, int n_state) {
    if (meta->failed)
        return tfm_set_error("%s: out of memory building the checkpoint metadata", path), 1;
    /* what the reader takes (a checkpoint that could not be loaded again) */
    if (meta->n > TFM_KV_MAX_LINES)
        return tfm_set_error("%s: %lld metadata keys: at most %d", path, (long long)meta->n,
                             TFM_KV_MAX_LINES),
               1;
    /* one "key = value" line each: what the reader could not split back the
     * same way (a key with a space or '=', a value with a line break) is refused */
    for (int64_t i = 0; i < meta->n; i++)
        if (!*meta->keys[i] || strpbrk(meta->keys[i], " =\t\n\r") ||
            strpbrk(meta->vals[i], "\n\r"))
            return tfm_set_error("%s: metadata '%s': a key must be a word without '=' and a "
                                 "value one line; not saved",
                                 path, meta->keys[i]),
                   1;
    if (n_state < 0 || n_state > TFM_CHECKPOINT_MAX_BLOCKS - 1)
        return tfm_set_error("%s: %d state blocks (at most %d)", path, n_state,
                             TFM_CHECKPOINT_MAX_BLOCKS - 1),
               1;
    /* what the reader would refuse is not written (the write replaces the
     * file at path): a block without a name or data, or a name twice */
    for (int i = 0; i < n_state; i++) {
        if (!state[i].name || !*state[i].name || !state[i].data)
            return tfm_set_error("%s: state block %d has no name or no data; not saved", path,
                                 i + 1),
                   1;
        for (int j = 0; j < i; j++)
            if (!strcmp(state[i].name, state[j].name))
                return tfm_set_error("%s: state block %s given twice; not saved", path,
                                     state[i].name),
                       1;
    }
    writer w = {.crc = 0};
    if (tfm_atomic_open(&w.af, path)) return 1;
    w_bytes(&w, "TFMCKPT1", 8);
    w_u32(&w, 2);
    w_u32(&w, 0);
    size_t meta_len = 0;
    for (int64_t i = 0; i < meta->n; i++)
        meta_len += strlen(meta->keys[i]) + strlen(meta->vals[i]) + 4;
    w_u64(&w, meta_len);
    for (int64_t i = 0; i < meta->n; i++) {
        w_bytes(&w, meta->keys[i], strlen(meta->keys[i]));
        w_bytes(&w, " = ", 3);
        w_bytes(&w, meta->vals[i], strlen(meta->vals[i]));
        w_bytes(&w, "\n", 1);
    }
    w_u64(&w, (uint64_t)p->count);
    int64_t n_floats = 0;
    for (int64_t i = 0; i < p->count; i++) {
        const tfm_tensor *t = p->items[i];
        w_u32(&w, (uint32_t)strlen(t->name));
        w_bytes(&w, t->name, strlen(t->name));
        w_u32(&w, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) w_u64(&w, (uint64_t)t->shape[d]);
        n_floats += t->n;
    }
    w_u64(&w, (uint64_t)n_floats);
    w_u32(&w, (uint32_t)(n_state + 1));
    const char *names[TFM_CHECKPOINT_MAX_BLOCKS];
    const float *blocks[TFM_CHECKPOINT_MAX_BLOCKS];
    names[0] = "params";
    blocks[0] = p->data;
    for (int b = 0; b < n_state; b++) {
        names[b + 1] = state[b].name;
        blocks[b + 1] = state[b].data;
    }
    for (int b = 0; b <= n_state; b++) {
        w_u32(&w, (uint32_t)strlen(names[b]));
        w_bytes(&w, names[b], strlen(names[b]));
    }
    for (int b = 0; b <= n_state; b++)
        for (int64_t i = 0; i < p->count; i++) {
            const tfm_tensor *t = p->items[i];
            w_bytes(&w, blocks[b] + (t->data - p->data), (size_t)t->n * sizeof(float));
        }
    uint32_t crc = w.crc;
    w_bytes(&w, &crc, 4);
    w_bytes(&w, "TFMEND\0\0", 8);
    if (w.failed) return 1;
    /* Test hook (in tfm_atomic_commit): TFM_TEST_SLOW_CHECKPOINT=<ms> waits
     * between the complete temporary file and the rename, so tests can
     * SIGKILL a run mid-write (tests/test_resume.c, tests/kill_resume.sh). */
    return tfm_atomic_commit(&w.af) ? 1 : 0;
}

/* ---- reading ------------------------------------------------------------------------ */
typedef struct {
    const unsigned char *p;
    size_t size, pos;
} reader;

static int r_take(reader *r, void *out, size_t n) {
    if (n > r->size - r->pos) return 1;
    memcpy(out, r->p + r->pos, n);
    r->pos += n;
    return 0;
}

void tfm_checkpoint_free(tfm_checkpoint *ck) {
    for (int64_t i = 0; i < ck->n_tensors && ck->names; i++) free(ck->names[i]);
    for (int b = 0; b < ck->n_blocks; b++) free(ck->block_names[b]);
    free(ck->names);
    free(ck->ndims);
    free(ck->shapes);
    free(ck->offsets);
    free(ck->buf);
    free(ck->path);
    tfm_kv_free(&ck->meta);
    memset(ck, 0, sizeof *ck);
}

/* The index of block `name` among those read, or -1. */
static int block_index(const tfm_checkpoint *ck, const char *name) {
    for (int b = 0; b < (ck->params_only ? 1 : ck->n_blocks); b++)
        if (!strcmp(ck->block_names[b], name)) return b;
    return -1;
}

/* Parses a checkpoint of `size` bytes of which the first `avail` are at
 * data. verify: the whole file is there (avail == size): check the magic,
 * the end marker and the CRC first. Otherwise the caller checks those, and
 * only the header is read from data (ck->blocks points past it). */
static int parse(const unsigned char *data, size_t avail, size_t size, const char *name,
                 tfm_checkpoint *ck, int verify) {
    memset(ck, 0, sizeof *ck);
    ck->path = tfm_strdup(name);
    if (!ck->path) return tfm_set_error("%s: out of memory", name), 1;
    reader r = {data, avail, 0};
#define BAD(...)                                                                                   \
    do {                                                                                           \
        tfm_set_error(__VA_ARGS__);                                                                \
        tfm_checkpoint_free(ck);                                                                   \
        return 1;                                                                                  \
    } while (0)
    char magic[8];
    if (size < 8 + 8 + 12 || r_take(&r, magic, 8) || memcmp(magic, "TFMCKPT1", 8))
        BAD("%s: not a tfm checkpoint (bad magic or too short)", name);
    if (verify) {
        if (memcmp((const char *)data + size - 8, "TFMEND\0\0", 8))
            BAD("%s: truncated checkpoint (no end marker)", name);
        uint32_t stored_crc;
        memcpy(&stored_crc, (const char *)data + size - 12, 4);
        if (tfm_crc32c(0, data, size - 12) != stored_crc)
            BAD("%s: checksum mismatch: the checkpoint is corrupt", name);
    }
    r.size = avail < size - 12 ? avail : size - 12;
    uint32_t version, flags;
    uint64_t meta_len, n_tensors, n_floats;
    if (r_take(&r, &version, 4) || r_take(&r, &flags, 4) || version < 1 || version > 2)
        BAD("%s: unsupported checkpoint version (this tfm reads versions 1 and 2)", name);
    ck->version = (int)version;
    if (r_take(&r, &meta_len, 8) || meta_len > r.size - r.pos) BAD("%s: bad metadata length", name);
    if (tfm_kv_parse(&ck->meta, (const char *)data + r.pos, meta_len, name))
        BAD("%s", tfm_last_error());
    r.pos += meta_len;
    if (r_take(&r, &n_tensors, 8) || n_tensors > 100000) BAD("%s: bad tensor count", name);
    ck->n_tensors = (int64_t)n_tensors;
    ck->names = calloc(n_tensors + 1, sizeof(char *));
    ck->ndims = calloc(n_tensors + 1, sizeof(int));
    ck->shapes = calloc(n_tensors + 1, sizeof *ck->shapes);
    ck->offsets = calloc(n_tensors + 1, sizeof(int64_t));
    if (!ck->names || !ck->ndims || !ck->shapes || !ck->offsets) BAD("%s: out of memory", name);
    int64_t total = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        uint32_t len, ndim;
        if (r_take(&r, &len, 4) || len == 0 || len > 1024 || len > r.size - r.pos)
            BAD("%s: tensor %llu: bad name", name, (unsigned long long)i);
        ck->names[i] = malloc(len + 1);
        if (!ck->names[i]) BAD("%s: out of memory", name);
        r_take(&r, ck->names[i], len);
        ck->names[i][len] = 0;
        if (strlen(ck->names[i]) != len)
            BAD("%s: tensor %llu: NUL in name", name, (unsigned long long)i);
        /* names go into one-line error messages: no control characters */
        for (uint32_t c = 0; c < len; c++)
            if ((unsigned char)ck->names[i][c] < 0x20 || ck->names[i][c] == 0x7f)
                BAD("%s: tensor %llu: control character in name", name, (unsigned long long)i);
        if (r_take(&r, &ndim, 4) || ndim < 1 || ndim > 4)
            BAD("%s: tensor %s: bad rank", name, ck->names[i]);
        ck->ndims[i] = (int)ndim;
        for (uint32_t d = 0; d < ndim; d++) {
            uint64_t s;
            if (r_take(&r, &s, 8) || s > (1ull << 31))
                BAD("%s: tensor %s: bad shape", name, ck->names[i]);
            ck->shapes[i][d] = (int64_t)s;
        }
        int64_t n;
        if (tfm_product_i64(ck->shapes[i], (int)ndim, 1ll << 34, &n) ||
            tfm_add_i64(total, n, &total) || total > (1ll << 36))
            BAD("%s: tensor %s: too large", name, ck->names[i]);
        ck->offsets[i] = total - n;
    }
    if (r_take(&r, &n_floats, 8) || (int64_t)n_floats != total)
        BAD("%s: float count does not match the tensor table", name);
    ck->n_floats = total;
    if (version == 1) {
        /* v1: the parameters, then Adam's moments when flag bit 0 is set */
        static const char *const v1_names[3] = {"params", "adam.m", "adam.v"};
        ck->n_blocks = flags & 1 ? 3 : 1;
        for (int b = 0; b < ck->n_blocks; b++) ck->block_names[b] = tfm_strdup(v1_names[b]);
    } else {
        uint32_t n_blocks;
        if (r_take(&r, &n_blocks, 4) || n_blocks < 1 || n_blocks > TFM_CHECKPOINT_MAX_BLOCKS)
            BAD("%s: bad state block count", name);
        for (uint32_t b = 0; b < n_blocks; b++) {
            uint32_t len;
            if (r_take(&r, &len, 4) || len == 0 || len > 64 || len > r.size - r.pos)
                BAD("%s: state block %u: bad name", name, b);
            char *bn = malloc(len + 1);
            if (!bn) BAD("%s: out of memory", name);
            ck->block_names[ck->n_blocks++] = bn;
            r_take(&r, bn, len);
            bn[len] = 0;
            for (uint32_t c = 0; c < len; c++)
                if ((unsigned char)bn[c] <= 0x20 || bn[c] == 0x7f)
                    BAD("%s: state block %u: bad character in name", name, b);
            for (uint32_t o = 0; o < b; o++)
                if (!strcmp(ck->block_names[o], bn)) BAD("%s: state block %s twice", name, bn);
        }
        if (strcmp(ck->block_names[0], "params"))
            BAD("%s: the first block is '%s', not 'params'", name, ck->block_names[0]);
    }
    /* by name: the blocks' data is not located yet */
    ck->has_moments = block_index(ck, "adam.m") >= 0 && block_index(ck, "adam.v") >= 0;
    uint64_t need = (uint64_t)total * 4 * (uint64_t)ck->n_blocks;
    if (need != size - 12 - r.pos)
        BAD("%s: data size %zu does not match the tensor table (%llu)", name, size - 12 - r.pos,
            (unsigned long long)need);
    ck->blocks = (const unsigned char *)data + r.pos;
#undef BAD
    return 0;
}

int tfm_checkpoint_parse(const void *data, size_t size, const char *name, tfm_checkpoint *ck) {
    return parse(data, size, size, name, ck, 1);
}

int tfm_checkpoint_read(const char *path, tfm_checkpoint *ck) {
    memset(ck, 0, sizeof *ck);
    int not_regular;
    FILE *f = tfm_open_regular(path, &not_regular);
    if (!f && not_regular) return tfm_set_error("%s: not a regular file", path), 1;
    if (!f) return tfm_set_error("%s: cannot open checkpoint: %s", path, strerror(errno)), 1;
    struct stat st;
    if (fstat(fileno(f), &st)) {
        fclose(f);
        return tfm_set_error("%s: cannot read checkpoint: %s", path, strerror(errno)), 1;
    }
    size_t size = (size_t)st.st_size;
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf || fread(buf, 1, size, f) != size) {
        fclose(f);
        free(buf);
        return tfm_set_error("%s: cannot read checkpoint", path), 1;
    }
    fclose(f);
    if (tfm_checkpoint_parse(buf, size, path, ck)) {
        free(buf);
        return 1;
    }
    ck->buf = buf; /* blocks point into it */
    ck->size = size;
    return 0;
}

/* The params-only read: the file's header and parameters are kept, the
 * rest only goes through the CRC, in pieces of this size. Any failure falls
 * back to tfm_checkpoint_read, whose error is then the one reported. */
enum { CRC_CHUNK = 1 << 20 };

static int read_at(FILE *f, size_t off, void *dst, size_t n) {
    return fseeko(f, (off_t)off, SEEK_SET) != 0 || fread(dst, 1, n, f) != n;
}

static int read_params_fast(const char *path, tfm_checkpoint *ck) {
    int rc = 1;
    unsigned char *buf = NULL, *chunk = NULL;
    int not_regular;
    FILE *f = tfm_open_regular(path, &not_regular);
    struct stat st;
    if (!f || fstat(fileno(f), &st) || st.st_size < 8 + 8 + 12) goto out;
    size_t size = (size_t)st.st_size, body = size - 12, have = 0, cap = 0;
    unsigned char tail[12];
    if (read_at(f, body, tail, 12) || memcmp(tail + 4, "TFMEND\0\0", 8)) goto out;
    /* the header: read more until it parses (a short read is not an error) */
    for (size_t want = body < 65536 ? body : 65536;; want = want * 4 < body ? want * 4 : body) {
        unsigned char *nb = realloc(buf, want);
        if (!nb) goto out;
        buf = nb;
        cap = want;
        if (read_at(f, have, buf + have, want - have)) goto out;
        have = want;
        if (parse(buf, have, size, path, ck, 0) == 0) break;
        if (have == body) goto out;
    }
    size_t off = (size_t)(ck->blocks - buf), keep = off + (size_t)ck->n_floats * 4;
    if (keep > cap) {
        unsigned char *nb = realloc(buf, keep);
        if (!nb) goto fail;
        buf = nb;
    }
    if (keep > have && read_at(f, have, buf + have, keep - have)) goto fail;
    uint32_t crc = tfm_crc32c(0, buf, keep), stored;
    if (keep < body && !(chunk = malloc(CRC_CHUNK))) goto fail;
    for (size_t pos = keep; pos < body;) {
        size_t n = body - pos < CRC_CHUNK ? body - pos : CRC_CHUNK;
        if (read_at(f, pos, chunk, n)) goto fail;
        crc = tfm_crc32c(crc, chunk, n);
        pos += n;
    }
    memcpy(&stored, tail, 4);
    if (crc != stored) goto fail;
    ck->buf = buf;
    ck->size = keep;
    ck->blocks = buf + off;
    ck->params_only = 1;
    buf = NULL;
    rc = 0;
    goto out;
fail:
    tfm_checkpoint_free(ck);
out:
    free(buf);
    free(chunk);
    if (f) fclose(f);
    return rc;
}

int tfm_checkpoint_read_params(const char *path, tfm_checkpoint *ck) {
    if (read_params_fast(path, ck) == 0) return 0;
    return tfm_checkpoint_read(path, ck);
}

const unsigned char *tfm_checkpoint_block(const tfm_checkpoint *ck, const char *name) {
    int b = block_index(ck, name);
    return b < 0 || !ck->blocks ? NULL : ck->blocks + (size_t)b * (size_t)ck->n_floats * 4;
}

/* Copies block `data` (n_floats floats in file order) into dst laid out like p. */
/* The index of the first element of x[0..n) that is NaN or infinite, else -1. */
static int64_t first_non_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

/* block: NULL for the weights, else the state block's name. A value that is
 * not finite is refused: the trainer never saves one (non-finite steps are
 * skipped), so it is a damaged or hand-made file, and it would decode to
 * empty lines or train NaN without a word. */
static int load_block(const tfm_checkpoint *ck, const unsigned char *data, const tfm_params *p,
                      float *dst, const char *block) {
    for (int64_t i = 0; i < p->count; i++) {
        tfm_tensor *t = p->items[i];
        int64_t j = 0;
        while (j < ck->n_tensors && strcmp(ck->names[j], t->name)) j++;
        if (j == ck->n_tensors) return tfm_set_error("%s: missing tensor %s", ck->path, t->name), 1;
        int same = ck->ndims[j] == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = ck->shapes[j][d] == t->shape[d];
        if (!same)
            return tfm_set_error("%s: tensor %s has a different shape", ck->path, t->name), 1;
        float *to = dst + (t->data - p->data);
        memcpy(to, data + (size_t)ck->offsets[j] * 4, (size_t)t->n * 4);
        int64_t bad = first_non_finite(to, t->n);
        if (bad >= 0)
            return tfm_set_error("%s: tensor %s%s%s: element %lld is %g (values must be finite)",
                                 ck->path, t->name, block ? ", optimizer state " : "",
                                 block ? block : "", (long long)bad, (double)to[bad]),
                   1;
    }
    if (p->count != ck->n_tensors)
        return tfm_set_error("%s: has %lld tensors, the model %lld", ck->path,
                             (long long)ck->n_tensors, (long long)p->count),
               1;
    return 0;
}

int tfm_checkpoint_load_params(const tfm_checkpoint *ck, tfm_params *p) {
    return load_block(ck, ck->blocks, p, p->data, NULL);
}

int tfm_checkpoint_load_state(const tfm_checkpoint *ck, const tfm_params *p,
                              const tfm_state_block *state, int n_state) {
    if (ck->params_only && n_state > 0)
        return tfm_set_error("%s: read without its optimizer state (tfm_checkpoint_read_params)",
                             ck->path),
               1;
    for (int b = 0; b < n_state; b++) {
        const unsigned char *data = tfm_checkpoint_block(ck, state[b].name);
        if (!data)
            return tfm_set_error("%s: has no optimizer state '%s' (cannot resume from it)",
                                 ck->path, state[b].name),
                   1;
        if (load_block(ck, data, p, state[b].data, state[b].name)) return 1;
    }
    return 0;
}

int tfm_model_from_checkpoint(tfm_model *m, const tfm_checkpoint *ck) {
    tfm_model_config c;
    if (tfm_model_config_from_kv(&c, &ck->meta, ck->path)) return 1;
    /* the file holds the weights: a configuration asking for more than it
     * has is refused before anything that size is allocated */
    int64_t want = tfm_model_param_count(&c);
    if (want != ck->n_floats)
        return tfm_set_error("%s: the model configuration needs %lld parameters, the file has "
                             "%lld",
                             ck->path, (long long)want, (long long)ck->n_floats),
               1;
    if (tfm_model_init_empty(m, &c)) return 1; /* every weight comes from the file */
    if (tfm_checkpoint_load_params(ck, &m->params)) {
        tfm_model_free(m);
        return 1;
    }
    return 0;
}
