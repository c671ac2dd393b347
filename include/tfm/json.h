/* tfm/json.h: a small strict JSON reader (DOM) and writer.
 *
 * Used for safetensors headers, config.json, generation_config.json and
 * tokenizer.json. The reader accepts exactly RFC 8259 JSON in valid UTF-8 and
 * nothing else (no comments, no trailing commas, no NaN, no leading zeros, no
 * lone surrogates, no trailing garbage) so that a file accepted here is read
 * the same way by Python's json and serde_json.
 *
 *     tfm_json *doc;
 *     if (tfm_json_parse(text, len, NULL, "config.json", &doc)) return fail();
 *     int64_t d_model;
 *     if (tfm_json_get_int64(doc, "d_model", &d_model)) ...
 *         // "'d_model': expected an integer, got a string"
 *     tfm_json_free(doc);
 *
 *     tfm_json_writer w;
 *     tfm_jw_init(&w, 1);                      // pretty: two-space indent like json.dump(indent=2)
 *     tfm_jw_begin_object(&w);
 *     tfm_jw_key(&w, "d_model"); tfm_jw_int(&w, 512);
 *     tfm_jw_key(&w, "eps");     tfm_jw_double(&w, 1e-6);
 *     tfm_jw_end_object(&w);
 *     if (tfm_jw_save(&w, "config.json")) ...  // crash-safe (temp file + rename)
 *     tfm_jw_free(&w);
 */
#ifndef TFM_JSON_H
#define TFM_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "tfm/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TFM_JSON_NULL,
    TFM_JSON_BOOL,
    TFM_JSON_NUMBER,
    TFM_JSON_STRING,
    TFM_JSON_ARRAY,
    TFM_JSON_OBJECT,
} tfm_json_type;

/* One value. Strings and keys are decoded UTF-8, NUL-terminated, and may
 * contain NUL bytes (from \u0000): use the lengths when that matters. */
typedef struct tfm_json tfm_json;
struct tfm_json {
    tfm_json_type type;
    size_t offset; /* byte offset of the value in the input (for errors) */
    int boolean;   /* TFM_JSON_BOOL */
    double number; /* TFM_JSON_NUMBER: nearest double */
    char *text;    /* NUMBER: the literal as written; STRING: the decoded string */
    size_t text_len;
    int64_t count;    /* ARRAY / OBJECT: number of items */
    tfm_json **items; /* ARRAY / OBJECT: the values, in document order */
    char **keys;      /* OBJECT: the keys, in document order */
    size_t *key_lens;
    uint32_t *index; /* OBJECT: hash index over keys (NULL for small objects) */
    int64_t index_cap;
};

typedef struct {
    int max_depth; /* nesting limit; <= 0: TFM_JSON_DEFAULT_DEPTH; capped at TFM_JSON_MAX_DEPTH */
    int allow_duplicate_keys; /* 0: a repeated key is an error; 1: the last one wins */
    size_t max_memory;        /* bytes the tree may use; 0: TFM_JSON_DEFAULT_MEMORY */
} tfm_json_options;

#define TFM_JSON_DEFAULT_DEPTH 128
#define TFM_JSON_MAX_DEPTH 4096
/* A tree takes up to ~100x its text ("[0,0,0,...]" is one node per two
 * bytes), so hostile input is bounded by memory, not only by length. */
#define TFM_JSON_DEFAULT_MEMORY ((size_t)1 << 30)

/* Parses len bytes (no NUL needed). source names the input in errors, which
 * read "<source>:<line>:<column>: <what> (byte <offset>)". opt may be NULL
 * (default depth and memory, duplicate keys rejected). On success *out owns
 * the tree. */
int tfm_json_parse(const char *text, size_t len, const tfm_json_options *opt, const char *source,
                   tfm_json **out);
/* Reads a whole file and parses it; errors name the path. */
int tfm_json_parse_file(const char *path, const tfm_json_options *opt, tfm_json **out);
void tfm_json_free(tfm_json *v);

const char *tfm_json_type_name(tfm_json_type t); /* "an object", "a string", ... */

/* Lookups: NULL when v is NULL, of the wrong type, or the key/index is absent.
 * They never set an error, so they double as "is it there?" tests. */
const tfm_json *tfm_json_get(const tfm_json *obj, const char *key);
const tfm_json *tfm_json_get_n(const tfm_json *obj, const char *key, size_t key_len);
const tfm_json *tfm_json_at(const tfm_json *arr, int64_t i);
int64_t tfm_json_len(const tfm_json *v); /* items of an array/object, else -1 */

/* Typed reads of a value: 0 on success, else an error "expected an integer,
 * got a string" (the caller adds the context). as_int64 requires integer
 * syntax (no fraction or exponent) and a value that fits exactly. */
int tfm_json_as_int64(const tfm_json *v, int64_t *out);
int tfm_json_as_double(const tfm_json *v, double *out);
int tfm_json_as_string(const tfm_json *v, const char **out, size_t *len); /* len may be NULL */
int tfm_json_as_bool(const tfm_json *v, int *out);

/* Typed reads of an object member: errors name the key, e.g.
 * "'d_model': missing" or "'d_model': expected an integer, got a string". */
int tfm_json_get_int64(const tfm_json *obj, const char *key, int64_t *out);
int tfm_json_get_double(const tfm_json *obj, const char *key, double *out);
int tfm_json_get_string(const tfm_json *obj, const char *key, const char **out);
int tfm_json_get_bool(const tfm_json *obj, const char *key, int *out);

/* ---- writer ---------------------------------------------------------------
 * Appends JSON to a growing buffer. Commas, colons and (when pretty) newlines
 * with two-space indentation are inserted automatically. Errors (allocation,
 * non-finite number, invalid UTF-8 string, misuse such as a value without a
 * key inside an object) are sticky: the first one is kept and reported by
 * tfm_jw_finish / tfm_jw_save, so callers check once at the end. */
#define TFM_JW_MAX_DEPTH 64
typedef struct {
    char *data; /* NUL-terminated */
    size_t len, cap;
    int pretty;
    int depth;
    int failed;
    int after_key;
    char error[256];
    unsigned char is_object[TFM_JW_MAX_DEPTH];
    int64_t n_items[TFM_JW_MAX_DEPTH];
} tfm_json_writer;

void tfm_jw_init(tfm_json_writer *w, int pretty);
void tfm_jw_free(tfm_json_writer *w);
void tfm_jw_begin_object(tfm_json_writer *w);
void tfm_jw_end_object(tfm_json_writer *w);
void tfm_jw_begin_array(tfm_json_writer *w);
void tfm_jw_end_array(tfm_json_writer *w);
void tfm_jw_key(tfm_json_writer *w, const char *key);
void tfm_jw_key_n(tfm_json_writer *w, const char *key, size_t len);
void tfm_jw_string(tfm_json_writer *w, const char *s);
void tfm_jw_string_n(tfm_json_writer *w, const char *s, size_t len);
void tfm_jw_int(tfm_json_writer *w, int64_t v);
/* Shortest text that reads back to the same double / float; integral values
 * get a ".0" so Python reads them back as floats. */
void tfm_jw_double(tfm_json_writer *w, double v);
void tfm_jw_float(tfm_json_writer *w, float v);
void tfm_jw_bool(tfm_json_writer *w, int v);
void tfm_jw_null(tfm_json_writer *w);
/* 0 when the document is complete and no error occurred (adds the final
 * newline when pretty); otherwise sets tfm_last_error and returns non-zero. */
int tfm_jw_finish(tfm_json_writer *w);
/* tfm_jw_finish, then writes the text crash-safely (temp file, fsync, rename). */
int tfm_jw_save(tfm_json_writer *w, const char *path);

#ifdef __cplusplus
}
#endif

#endif
