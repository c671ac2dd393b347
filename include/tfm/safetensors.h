/* tfm/safetensors.h: the safetensors file format (Hugging Face), read and write.
 *
 * Layout: 8 bytes little-endian u64 N, then N bytes of UTF-8 JSON header, then
 * the byte buffer. The header maps each tensor name to
 * {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]} with offsets
 * relative to the start of the buffer, plus an optional "__metadata__" object
 * of string -> string.
 *
 *     tfm_st_tensor t[2] = {
 *         {.name = "w", .dtype = TFM_ST_F32, .ndim = 2, .shape = {3, 4}, .data = w},
 *         {.name = "b", .dtype = TFM_ST_F32, .ndim = 1, .shape = {4}, .data = b}};
 *     if (tfm_safetensors_write("model.safetensors", t, 2, NULL, 0)) fail();
 *
 *     tfm_st_file f;
 *     if (tfm_safetensors_open("model.safetensors", &f)) fail();   // validates everything
 *     float *w;
 *     if (tfm_st_get_f32(&f, "w", 2, (int64_t[]){3, 4}, &w)) fail();
 *         // "tensor w has shape (4, 3), expected (3, 4)"
 *     tfm_safetensors_close(&f);   // w is invalid from here on
 *
 * The reader is strict: a file is accepted only if the header is valid JSON
 * with no duplicate names, every entry is well-formed, and the tensors tile
 * the buffer exactly (no gaps, no overlaps, nothing after the last tensor).
 * Every rejection is a one-line error naming the file and, when there is one,
 * the tensor. No input makes it crash or read out of bounds. Like the
 * reference reader, it ignores unknown fields in an entry and reads
 * "__metadata__": null as no metadata; unlike it (for now), it requires the
 * header to start with '{'. */
#ifndef TFM_SAFETENSORS_H
#define TFM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "tfm/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The byte-sized safetensors dtypes. Data of any dtype is carried as opaque
 * little-endian bytes; only F32 has typed accessors. (The sub-byte F4/F6
 * types and C64 are rejected as unknown.) */
typedef enum {
    TFM_ST_BOOL,
    TFM_ST_U8,
    TFM_ST_I8,
    TFM_ST_F8_E5M2,
    TFM_ST_F8_E4M3,
    TFM_ST_I16,
    TFM_ST_U16,
    TFM_ST_F16,
    TFM_ST_BF16,
    TFM_ST_I32,
    TFM_ST_U32,
    TFM_ST_F32,
    TFM_ST_F64,
    TFM_ST_I64,
    TFM_ST_U64,
    TFM_ST_DTYPE_COUNT
} tfm_st_dtype;

const char *tfm_st_dtype_name(tfm_st_dtype d); /* "F32"; "?" when out of range */
int64_t tfm_st_dtype_size(tfm_st_dtype d);     /* bytes per element; 0 when out of range */
/* The dtype with this name; -1 when unknown. */
int tfm_st_dtype_from_name(const char *name, size_t len);

/* Dimensions per tensor; deeper tensors are rejected with a clear error. */
#define TFM_ST_MAX_DIMS 8
/* Largest header accepted (the reference implementation's limit). */
#define TFM_ST_MAX_HEADER 100000000ull

typedef struct {
    const char *name;
    tfm_st_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[TFM_ST_MAX_DIMS];
    const void *data; /* product(shape) * dtype size bytes, little-endian */
    /* Filled by the reader (the writer ignores them): */
    int64_t nbytes;
    int64_t offset; /* begin, relative to the start of the buffer */
} tfm_st_tensor;

/* Writes tensors to path in the order given, contiguously from offset 0,
 * with "__metadata__": {"format": "pt", ...meta}. meta_kv holds n_meta
 * key/value pairs as 2 * n_meta strings (key0, value0, key1, ...); a "format"
 * pair overrides the default. The header is padded with spaces to a multiple
 * of 8 bytes so the buffer stays 8-byte aligned. Crash-safe: a temporary file
 * in the same directory is fsync'ed and renamed over path; on failure nothing
 * is left under path and the error names it. */
int tfm_safetensors_write(const char *path, const tfm_st_tensor *tensors, int64_t n,
                          const char *const *meta_kv, int64_t n_meta);

typedef struct {
    char *path;           /* for messages */
    unsigned char *bytes; /* the whole file */
    size_t size;
    void *alloc;                 /* what to free: set when opened from a path */
    size_t header_len;           /* N */
    const unsigned char *buffer; /* bytes + 8 + N */
    size_t buffer_len;
    int64_t n_tensors;
    tfm_st_tensor *tensors; /* in header order; names and data point into this file */
    int64_t n_meta;
    char **meta_keys, **meta_values;
    char *names; /* storage for the tensor names */
} tfm_st_file;

/* Reads and validates the whole file. The buffer is placed at a 64-byte
 * aligned address, so a tensor whose offset is a multiple of its element
 * size is naturally aligned (true for every writer that follows the spec's
 * advice, including ours and the reference). */
int tfm_safetensors_open(const char *path, tfm_st_file *out);
/* The same validation on bytes already in memory (not copied: buf must
 * outlive the file). name is used in messages. */
int tfm_safetensors_parse(const void *buf, size_t n, const char *name, tfm_st_file *out);
void tfm_safetensors_close(tfm_st_file *f);

/* NULL when absent (no error set). */
const tfm_st_tensor *tfm_st_find(const tfm_st_file *f, const char *name);
/* The metadata value for key, or NULL. */
const char *tfm_st_meta(const tfm_st_file *f, const char *key);

/* Points *data at the F32 tensor name after checking that it exists
 * ("<file>: missing tensor X"), is F32 ("tensor X has dtype BF16, expected
 * F32") and has exactly this shape ("tensor X has shape (a, b), expected
 * (c, d)"; shape NULL with ndim > 0 is an error). The data lives inside f.
 * Fails if the tensor is not 4-byte aligned in memory (only possible for
 * hand-made files or unaligned parse buffers); tfm_st_read_f32 copies
 * instead and has no such limit. */
int tfm_st_get_f32(const tfm_st_file *f, const char *name, int ndim, const int64_t *shape,
                   float **data);
/* Same checks, then copies the values into dst (product(shape) floats). */
int tfm_st_read_f32(const tfm_st_file *f, const char *name, int ndim, const int64_t *shape,
                    float *dst);

#ifdef __cplusplus
}
#endif

#endif
