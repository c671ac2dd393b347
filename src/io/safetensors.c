/* safetensors: strict reader and crash-safe writer. See include/tfm/safetensors.h. */
#include "tfm/safetensors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../util/buf.h" /* tfm_strdup */
#include "tfm/atomic_file.h"
#include "tfm/json.h"
#include "tfm/text.h"

/* Tensor bytes are copied between memory and file as they are: the format is
 * little-endian, and so is every machine we build for. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors I/O assumes a little-endian host");

static const struct {
    const char *name;
    int64_t size;
} DTYPES[TFM_ST_DTYPE_COUNT] = {
    [TFM_ST_BOOL] = {"BOOL", 1},       [TFM_ST_U8] = {"U8", 1},
    [TFM_ST_I8] = {"I8", 1},           [TFM_ST_F8_E5M2] = {"F8_E5M2", 1},
    [TFM_ST_F8_E4M3] = {"F8_E4M3", 1}, [TFM_ST_I16] = {"I16", 2},
    [TFM_ST_U16] = {"U16", 2},         [TFM_ST_F16] = {"F16", 2},
    [TFM_ST_BF16] = {"BF16", 2},       [TFM_ST_I32] = {"I32", 4},
    [TFM_ST_U32] = {"U32", 4},         [TFM_ST_F32] = {"F32", 4},
    [TFM_ST_F64] = {"F64", 8},         [TFM_ST_I64] = {"I64", 8},
    [TFM_ST_U64] = {"U64", 8},
};

const char *tfm_st_dtype_name(tfm_st_dtype d) {
    return (unsigned)d < TFM_ST_DTYPE_COUNT ? DTYPES[d].name : "?";
}

int64_t tfm_st_dtype_size(tfm_st_dtype d) {
    return (unsigned)d < TFM_ST_DTYPE_COUNT ? DTYPES[d].size : 0;
}

int tfm_st_dtype_from_name(const char *name, size_t len) {
    for (int d = 0; d < TFM_ST_DTYPE_COUNT; d++)
        if (strlen(DTYPES[d].name) == len && memcmp(DTYPES[d].name, name, len) == 0) return d;
    return -1;
}

/* A tensor name made safe for a one-line message: control bytes become '?'
 * and long names are cut at a UTF-8 boundary and end in "...". */
static const char *show(char *buf, size_t cap, const char *s, size_t n) {
    size_t limit = cap - 4, o = 0;
    int cut = n > limit;
    if (cut) {
        n = limit;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    for (size_t i = 0; i < n; i++)
        buf[o++] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7F) ? '?' : s[i];
    if (cut) memcpy(buf + o, "...", 3), o += 3;
    buf[o] = 0;
    return buf;
}

/* "(a, b, c)" */
static const char *shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < ndim && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (o < cap) snprintf(buf + o, cap - o, ")");
    return buf;
}

/* Elements times element size, or -1 on overflow or a negative dimension. */
static int64_t tensor_bytes(int ndim, const int64_t *shape, int64_t elem_size) {
    int64_t n = elem_size;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return -1;
        if (__builtin_mul_overflow(n, shape[d], &n)) return -1;
    }
    return n;
}

/* ---- writer ---------------------------------------------------------------- */

int tfm_safetensors_write(const char *path, const tfm_st_tensor *tensors, int64_t n,
                          const char *const *meta_kv, int64_t n_meta) {
    char nb[96];
    if (!path) {
        tfm_set_error("safetensors write: no path");
        return -1;
    }
    if (n < 0 || (n > 0 && !tensors) || n_meta < 0 || (n_meta > 0 && !meta_kv)) {
        tfm_set_error("%s: invalid tensor or metadata list", path);
        return -1;
    }
    for (int64_t i = 0; i < 2 * n_meta; i++)
        if (!meta_kv[i]) {
            tfm_set_error("%s: metadata entry %lld is NULL", path, (long long)i / 2);
            return -1;
        }
    /* A repeated key would make a header that strict readers (ours) refuse. */
    for (int64_t m = 0; m < n_meta; m++)
        for (int64_t k = 0; k < m; k++)
            if (!strcmp(meta_kv[2 * m], meta_kv[2 * k])) {
                tfm_set_error("%s: duplicate metadata key %s", path,
                              show(nb, sizeof nb, meta_kv[2 * m], strlen(meta_kv[2 * m])));
                return -1;
            }
    /* Validate everything before creating any file. */
    for (int64_t i = 0; i < n; i++) {
        const tfm_st_tensor *t = &tensors[i];
        if (!t->name) {
            tfm_set_error("%s: tensor %lld has no name", path, (long long)i);
            return -1;
        }
        const char *name = show(nb, sizeof nb, t->name, strlen(t->name));
        if (!strcmp(t->name, "__metadata__")) {
            tfm_set_error("%s: tensor name __metadata__ is reserved", path);
            return -1;
        }
        if ((unsigned)t->dtype >= TFM_ST_DTYPE_COUNT || t->ndim < 0 || t->ndim > TFM_ST_MAX_DIMS) {
            tfm_set_error("%s: tensor %s: invalid dtype %d or rank %d", path, name, (int)t->dtype,
                          t->ndim);
            return -1;
        }
        int64_t bytes = tensor_bytes(t->ndim, t->shape, DTYPES[t->dtype].size);
        if (bytes < 0) {
            tfm_set_error("%s: tensor %s: negative or overflowing shape", path, name);
            return -1;
        }
        if (bytes > 0 && !t->data) {
            tfm_set_error("%s: tensor %s: no data", path, name);
            return -1;
        }
        for (int64_t j = 0; j < i; j++)
            if (!strcmp(tensors[j].name, t->name)) {
                tfm_set_error("%s: duplicate tensor name %s", path, name);
                return -1;
            }
    }

    const char *format = "pt";
    for (int64_t m = 0; m < n_meta; m++)
        if (!strcmp(meta_kv[2 * m], "format")) format = meta_kv[2 * m + 1];
    tfm_json_writer w;
    tfm_jw_init(&w, 0);
    tfm_jw_begin_object(&w);
    tfm_jw_key(&w, "__metadata__");
    tfm_jw_begin_object(&w);
    tfm_jw_key(&w, "format");
    tfm_jw_string(&w, format);
    for (int64_t m = 0; m < n_meta; m++) {
        if (!strcmp(meta_kv[2 * m], "format")) continue;
        tfm_jw_key(&w, meta_kv[2 * m]);
        tfm_jw_string(&w, meta_kv[2 * m + 1]);
    }
    tfm_jw_end_object(&w);
    int64_t offset = 0;
    for (int64_t i = 0; i < n; i++) {
        const tfm_st_tensor *t = &tensors[i];
        int64_t bytes = tensor_bytes(t->ndim, t->shape, DTYPES[t->dtype].size);
        tfm_jw_key(&w, t->name);
        tfm_jw_begin_object(&w);
        tfm_jw_key(&w, "dtype");
        tfm_jw_string(&w, DTYPES[t->dtype].name);
        tfm_jw_key(&w, "shape");
        tfm_jw_begin_array(&w);
        for (int d = 0; d < t->ndim; d++) tfm_jw_int(&w, t->shape[d]);
        tfm_jw_end_array(&w);
        tfm_jw_key(&w, "data_offsets");
        tfm_jw_begin_array(&w);
        tfm_jw_int(&w, offset);
        tfm_jw_int(&w, offset + bytes);
        tfm_jw_end_array(&w);
        tfm_jw_end_object(&w);
        offset += bytes;
    }
    tfm_jw_end_object(&w);
    if (tfm_jw_finish(&w)) {
        tfm_set_error("%s: %s", path, tfm_last_error());
        tfm_jw_free(&w);
        return -1;
    }
    /* Pad with spaces (JSON whitespace) so the buffer starts 8-byte aligned. */
    size_t header_len = (w.len + 7) & ~(size_t)7;
    unsigned char len_bytes[8];
    for (int b = 0; b < 8; b++) len_bytes[b] = (unsigned char)((uint64_t)header_len >> (8 * b));
    static const char spaces[8] = "        ";

    tfm_atomic_file af;
    int rc = tfm_atomic_open(&af, path);
    if (!rc) rc = tfm_atomic_write(&af, len_bytes, 8);
    if (!rc) rc = tfm_atomic_write(&af, w.data, w.len);
    if (!rc) rc = tfm_atomic_write(&af, spaces, header_len - w.len);
    for (int64_t i = 0; i < n && !rc; i++) {
        const tfm_st_tensor *t = &tensors[i];
        int64_t bytes = tensor_bytes(t->ndim, t->shape, DTYPES[t->dtype].size);
        rc = tfm_atomic_write(&af, t->data, (size_t)bytes);
    }
    if (!rc) rc = tfm_atomic_commit(&af);
    tfm_jw_free(&w);
    return rc;
}

/* ---- reader ---------------------------------------------------------------- */

typedef struct {
    int64_t begin, end;
    int64_t index;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static void st_error(const tfm_st_file *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void st_error(const tfm_st_file *f, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    tfm_set_error("%s: %s", f->path ? f->path : "<safetensors>", what);
}

/* A non-negative integer from a header value, or -1 with *err describing why. */
static int64_t header_uint(const tfm_json *v, const char **err) {
    int64_t x;
    if (!v || v->type != TFM_JSON_NUMBER) {
        *err = "is not an integer";
        return -1;
    }
    if (tfm_json_as_int64(v, &x)) {
        *err = strpbrk(v->text, ".eE") ? "is not an integer" : "is too large";
        return -1;
    }
    if (x < 0) {
        *err = "is negative";
        return -1;
    }
    return x;
}

static int parse_metadata(tfm_st_file *f, const tfm_json *meta) {
    if (meta->type != TFM_JSON_OBJECT) {
        st_error(f, "__metadata__ is %s, expected an object of strings",
                 tfm_json_type_name(meta->type));
        return -1;
    }
    f->meta_keys = calloc((size_t)meta->count + 1, sizeof *f->meta_keys);
    f->meta_values = calloc((size_t)meta->count + 1, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) {
        st_error(f, "out of memory");
        return -1;
    }
    for (int64_t i = 0; i < meta->count; i++) {
        char nb[96];
        const tfm_json *v = meta->items[i];
        if (v->type != TFM_JSON_STRING) {
            st_error(f, "__metadata__ value for %s is %s, expected a string",
                     show(nb, sizeof nb, meta->keys[i], meta->key_lens[i]),
                     tfm_json_type_name(v->type));
            return -1;
        }
        f->meta_keys[i] = tfm_strndup(meta->keys[i], meta->key_lens[i]);
        f->meta_values[i] = tfm_strndup(v->text, v->text_len);
        f->n_meta = i + 1;
        if (!f->meta_keys[i] || !f->meta_values[i]) {
            st_error(f, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* Reads one header entry into t (name already set). */
static int parse_entry(tfm_st_file *f, const char *name, const tfm_json *e, tfm_st_tensor *t) {
    if (e->type != TFM_JSON_OBJECT) {
        st_error(f, "tensor %s: entry is %s, expected an object", name,
                 tfm_json_type_name(e->type));
        return -1;
    }
    const tfm_json *dtype = tfm_json_get(e, "dtype"), *shape = tfm_json_get(e, "shape"),
                   *offsets = tfm_json_get(e, "data_offsets");
    if (!dtype || !shape || !offsets) {
        st_error(f, "tensor %s: missing \"%s\"", name,
                 !dtype   ? "dtype"
                 : !shape ? "shape"
                          : "data_offsets");
        return -1;
    }
    if (dtype->type != TFM_JSON_STRING) {
        st_error(f, "tensor %s: dtype is %s, expected a string", name,
                 tfm_json_type_name(dtype->type));
        return -1;
    }
    int d = tfm_st_dtype_from_name(dtype->text, dtype->text_len);
    if (d < 0) {
        char db[40];
        st_error(f, "tensor %s: unknown dtype \"%s\"", name,
                 show(db, sizeof db, dtype->text, dtype->text_len));
        return -1;
    }
    t->dtype = (tfm_st_dtype)d;
    if (shape->type != TFM_JSON_ARRAY) {
        st_error(f, "tensor %s: shape is %s, expected an array", name,
                 tfm_json_type_name(shape->type));
        return -1;
    }
    if (shape->count > TFM_ST_MAX_DIMS) {
        st_error(f, "tensor %s: %lld dimensions, at most %d are supported", name,
                 (long long)shape->count, TFM_ST_MAX_DIMS);
        return -1;
    }
    t->ndim = (int)shape->count;
    for (int i = 0; i < t->ndim; i++) {
        const char *why = NULL;
        t->shape[i] = header_uint(shape->items[i], &why);
        if (t->shape[i] < 0) {
            st_error(f, "tensor %s: shape dimension %d %s", name, i, why);
            return -1;
        }
    }
    if (offsets->type != TFM_JSON_ARRAY || offsets->count != 2) {
        st_error(f, "tensor %s: data_offsets must be an array [begin, end]", name);
        return -1;
    }
    const char *why = NULL;
    int64_t begin = header_uint(offsets->items[0], &why);
    int64_t end = begin < 0 ? -1 : header_uint(offsets->items[1], &why);
    if (begin < 0 || end < 0) {
        st_error(f, "tensor %s: data_offsets %s %s", name, begin < 0 ? "begin" : "end", why);
        return -1;
    }
    if (begin > end) {
        st_error(f, "tensor %s: data_offsets [%lld, %lld] has begin after end", name,
                 (long long)begin, (long long)end);
        return -1;
    }
    if ((uint64_t)end > f->buffer_len) {
        st_error(
            f, "tensor %s: data_offsets [%lld, %lld] out of bounds (the data buffer has %zu bytes)",
            name, (long long)begin, (long long)end, f->buffer_len);
        return -1;
    }
    int64_t bytes = tensor_bytes(t->ndim, t->shape, DTYPES[t->dtype].size);
    char sb[256];
    if (bytes < 0 || bytes != end - begin) {
        st_error(f, "tensor %s: data_offsets [%lld, %lld] hold %lld bytes, but %s %s needs %s%lld",
                 name, (long long)begin, (long long)end, (long long)(end - begin),
                 DTYPES[t->dtype].name, shape_str(sb, sizeof sb, t->ndim, t->shape),
                 bytes < 0 ? "more than " : "",
                 bytes < 0 ? (long long)INT64_MAX : (long long)bytes);
        return -1;
    }
    t->offset = begin;
    t->nbytes = bytes;
    t->data = f->buffer + begin;
    return 0;
}

/* Every tensor's byte range, sorted, must tile [0, buffer_len) exactly. */
static int check_layout(tfm_st_file *f) {
    span *spans = malloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *spans);
    if (!spans) {
        st_error(f, "out of memory");
        return -1;
    }
    for (int64_t i = 0; i < f->n_tensors; i++)
        spans[i] = (span){f->tensors[i].offset, f->tensors[i].offset + f->tensors[i].nbytes, i};
    qsort(spans, (size_t)f->n_tensors, sizeof *spans, span_cmp);
    int64_t expect = 0;
    int64_t prev = -1;
    char nb[96], pb[96];
    for (int64_t k = 0; k < f->n_tensors; k++) {
        const tfm_st_tensor *t = &f->tensors[spans[k].index];
        const char *name = show(nb, sizeof nb, t->name, strlen(t->name));
        if (spans[k].begin < expect) {
            const tfm_st_tensor *o = &f->tensors[spans[prev].index];
            st_error(f, "tensor %s: data_offsets [%lld, %lld] overlap tensor %s [%lld, %lld]", name,
                     (long long)spans[k].begin, (long long)spans[k].end,
                     show(pb, sizeof pb, o->name, strlen(o->name)), (long long)spans[prev].begin,
                     (long long)spans[prev].end);
            free(spans);
            return -1;
        }
        if (spans[k].begin > expect) {
            st_error(f, "tensor %s: gap of %lld unused bytes before its data_offsets [%lld, %lld]",
                     name, (long long)(spans[k].begin - expect), (long long)spans[k].begin,
                     (long long)spans[k].end);
            free(spans);
            return -1;
        }
        /* Empty tensors do not advance, so the one that overlaps a later
         * tensor is the last non-empty one. */
        if (spans[k].end > spans[k].begin || prev < 0) prev = k;
        expect = spans[k].end;
    }
    free(spans);
    if ((uint64_t)expect != f->buffer_len) {
        st_error(f,
                 "%zu bytes after the end of the last tensor (the file is %zu bytes, the tensors "
                 "end at %lld)",
                 f->buffer_len - (size_t)expect, f->size,
                 (long long)(8 + f->header_len + (size_t)expect));
        return -1;
    }
    return 0;
}

static int parse_header(tfm_st_file *f) {
    const unsigned char *b = f->bytes;
    if (f->size < 8) {
        st_error(f, "file is %zu bytes, too short for the 8-byte header length", f->size);
        return -1;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    if (n > TFM_ST_MAX_HEADER) {
        st_error(f, "header length %llu exceeds the limit of %llu bytes", (unsigned long long)n,
                 (unsigned long long)TFM_ST_MAX_HEADER);
        return -1;
    }
    if (n > f->size - 8) {
        st_error(f, "header length %llu runs past the end of the file (%zu bytes)",
                 (unsigned long long)n, f->size);
        return -1;
    }
    f->header_len = (size_t)n;
    f->buffer = b + 8 + n;
    f->buffer_len = f->size - 8 - (size_t)n;
    const char *hdr = (const char *)b + 8;
    size_t bad;
    if (tfm_utf8_check(hdr, f->header_len, &bad) != 0) {
        st_error(f, "header is not valid UTF-8 (header byte %zu)", bad);
        return -1;
    }
    if (f->header_len == 0 || hdr[0] != '{') {
        st_error(f, "header does not start with '{'");
        return -1;
    }
    char source[600];
    snprintf(source, sizeof source, "%s: header", f->path);
    tfm_json *root;
    if (tfm_json_parse(hdr, f->header_len, NULL, source, &root)) return -1;
    /* The '{' check makes the root an object. */
    int64_t n_tensors = root->count - (tfm_json_get(root, "__metadata__") ? 1 : 0);
    size_t names_bytes = 0;
    for (int64_t i = 0; i < root->count; i++) names_bytes += root->key_lens[i] + 1;
    f->tensors = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof *f->tensors);
    f->names = malloc(names_bytes ? names_bytes : 1);
    if (!f->tensors || !f->names) {
        tfm_json_free(root);
        st_error(f, "out of memory");
        return -1;
    }
    char *name_at = f->names;
    for (int64_t i = 0; i < root->count; i++) {
        const char *key = root->keys[i];
        size_t key_len = root->key_lens[i];
        if (key_len == 12 && !memcmp(key, "__metadata__", 12)) {
            /* null means "no metadata" to the reference reader (an Option). */
            if (root->items[i]->type != TFM_JSON_NULL && parse_metadata(f, root->items[i]))
                goto fail;
            continue;
        }
        char nb[96];
        const char *name = show(nb, sizeof nb, key, key_len);
        if (memchr(key, 0, key_len)) {
            st_error(f, "tensor %s: name contains a NUL character", name);
            goto fail;
        }
        tfm_st_tensor *t = &f->tensors[f->n_tensors];
        memcpy(name_at, key, key_len + 1);
        t->name = name_at;
        name_at += key_len + 1;
        if (parse_entry(f, name, root->items[i], t)) goto fail;
        f->n_tensors++;
    }
    tfm_json_free(root);
    return check_layout(f);
fail:
    tfm_json_free(root);
    return -1;
}

int tfm_safetensors_parse(const void *buf, size_t n, const char *name, tfm_st_file *out) {
    memset(out, 0, sizeof *out);
    out->path = tfm_strdup(name ? name : "<safetensors>");
    if (!out->path) {
        tfm_set_error("out of memory");
        return -1;
    }
    out->bytes = (unsigned char *)buf;
    out->size = buf ? n : 0;
    if (parse_header(out)) {
        tfm_safetensors_close(out);
        return -1;
    }
    return 0;
}

int tfm_safetensors_open(const char *path, tfm_st_file *out) {
    memset(out, 0, sizeof *out);
    int not_regular;
    FILE *fp = tfm_open_regular(path, &not_regular);
    if (!fp) { /* "cannot open: ...", "not a regular file", "is a directory" */
        if (not_regular && errno == EISDIR) tfm_set_error("%s: not a regular file", path);
        return -1;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) {
        fclose(fp);
        tfm_set_error("%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    size_t size = (size_t)st.st_size;
    /* Peek at the header length so the buffer can start 64-byte aligned. */
    unsigned char first[8] = {0};
    size_t got = fread(first, 1, 8, fp);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | first[i];
    size_t pad = (size_t)((64 - (8 + hl % 64) % 64) % 64);
    unsigned char *alloc = tfm_alloc(pad + size + 1);
    if (!alloc) {
        fclose(fp);
        tfm_set_error("%s: out of memory reading %zu bytes", path, size);
        return -1;
    }
    unsigned char *bytes = alloc + pad;
    memcpy(bytes, first, got);
    size_t total = got;
    if (got == 8 && size > 8) total += fread(bytes + 8, 1, size - 8, fp);
    /* A file that changed size while we read it is reported as what we got. */
    int read_error = ferror(fp);
    fclose(fp);
    if (read_error) {
        tfm_free(alloc);
        tfm_set_error("%s: read error", path);
        return -1;
    }
    if (tfm_safetensors_parse(bytes, total, path, out)) {
        tfm_free(alloc);
        return -1;
    }
    out->alloc = alloc;
    return 0;
}

void tfm_safetensors_close(tfm_st_file *f) {
    if (!f) return;
    for (int64_t i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->tensors);
    free(f->names);
    free(f->path);
    tfm_free(f->alloc);
    memset(f, 0, sizeof *f);
}

const tfm_st_tensor *tfm_st_find(const tfm_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *tfm_st_meta(const tfm_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int64_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_values[i];
    return NULL;
}

static const tfm_st_tensor *check_f32(const tfm_st_file *f, const char *name, int ndim,
                                      const int64_t *shape) {
    const tfm_st_tensor *t = tfm_st_find(f, name);
    if (!t) {
        st_error(f, "missing tensor %s", name ? name : "(null)");
        return NULL;
    }
    if (t->dtype != TFM_ST_F32) {
        st_error(f, "tensor %s has dtype %s, expected F32", name, DTYPES[t->dtype].name);
        return NULL;
    }
    if (ndim > 0 && !shape) {
        st_error(f, "tensor %s: no expected shape given", name);
        return NULL;
    }
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char have[256], want[256];
        st_error(f, "tensor %s has shape %s, expected %s", name,
                 shape_str(have, sizeof have, t->ndim, t->shape),
                 shape_str(want, sizeof want, ndim < 0 ? 0 : ndim, shape));
        return NULL;
    }
    return t;
}

int tfm_st_get_f32(const tfm_st_file *f, const char *name, int ndim, const int64_t *shape,
                   float **data) {
    const tfm_st_tensor *t = check_f32(f, name, ndim, shape);
    if (!t) return -1;
    if ((uintptr_t)t->data % _Alignof(float) != 0) {
        st_error(f, "tensor %s is not 4-byte aligned in memory (offset %lld); use tfm_st_read_f32",
                 name, (long long)t->offset);
        return -1;
    }
    /* The file's bytes are ours (or the caller's) to hand out; the const is
     * only there to stop accidental writes through the table. */
    *data = (float *)(uintptr_t)t->data;
    return 0;
}

int tfm_st_read_f32(const tfm_st_file *f, const char *name, int ndim, const int64_t *shape,
                    float *dst) {
    const tfm_st_tensor *t = check_f32(f, name, ndim, shape);
    if (!t) return -1;
    if (t->nbytes) memcpy(dst, t->data, (size_t)t->nbytes);
    return 0;
}
