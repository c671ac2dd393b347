/* safetensors: writer, strict reader, the Python-written fixture, and one
 * malformed file per rejection rule. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tfm/safetensors.h"
#include "util_test.h"

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* Names in dir other than "." and ".." joined by spaces. */
static void list_dir(const char *dir, char *out, size_t cap) {
    out[0] = 0;
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        strncat(out, e->d_name, cap - strlen(out) - 2);
        strcat(out, " ");
    }
    closedir(d);
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)size + 1);
    ck_assert_int_eq(fread(b, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return b;
}

START_TEST(round_trip_bit_exact) {
    const char *dir = tfm_test_tmpdir("st");
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);

    float w[5 * 7], b[7], scalar = -1.25f;
    tfm_test_fill(w, 35, 11, -3, 3);
    tfm_test_fill(b, 7, 12, -1, 1);
    w[0] = -0.0f;
    w[1] = INFINITY;
    w[2] = NAN;
    w[3] = 1e-45f; /* denormal */
    int32_t ids[3] = {7, -1, INT32_MAX};
    uint16_t half[2] = {0x3C00, 0xC000}; /* opaque F16 bytes */
    tfm_st_tensor t[] = {
        {.name = "dec.0.w", .dtype = TFM_ST_F32, .ndim = 2, .shape = {5, 7}, .data = w},
        {.name = "dec.0.b", .dtype = TFM_ST_F32, .ndim = 1, .shape = {7}, .data = b},
        {.name = "ids", .dtype = TFM_ST_I32, .ndim = 1, .shape = {3}, .data = ids},
        {.name = "empty", .dtype = TFM_ST_F32, .ndim = 2, .shape = {0, 4}, .data = NULL},
        {.name = "scalar", .dtype = TFM_ST_F32, .ndim = 0, .data = &scalar},
        {.name = "half", .dtype = TFM_ST_F16, .ndim = 1, .shape = {2}, .data = half},
    };
    const char *meta[] = {"step", "1200", "note", "caf\xC3\xA9 \"quoted\""};
    ck_assert_msg(tfm_safetensors_write(path, t, 6, meta, 2) == 0, "%s", tfm_last_error());

    char names[1024];
    list_dir(dir, names, sizeof names);
    ck_assert_str_eq(names, "model.safetensors "); /* no temporary file left */

    tfm_st_file f;
    ck_assert_msg(tfm_safetensors_open(path, &f) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(f.header_len % 8, 0);
    ck_assert_int_eq(f.n_tensors, 6);
    ck_assert_str_eq(tfm_st_meta(&f, "format"), "pt");
    ck_assert_str_eq(tfm_st_meta(&f, "step"), "1200");
    ck_assert_str_eq(tfm_st_meta(&f, "note"), "caf\xC3\xA9 \"quoted\"");
    ck_assert_ptr_null(tfm_st_meta(&f, "missing"));
    /* Header order and contiguous offsets from 0, in the order given. */
    int64_t offset = 0;
    for (int i = 0; i < 6; i++) {
        ck_assert_str_eq(f.tensors[i].name, t[i].name);
        ck_assert_int_eq(f.tensors[i].dtype, t[i].dtype);
        ck_assert_int_eq(f.tensors[i].ndim, t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) ck_assert_int_eq(f.tensors[i].shape[d], t[i].shape[d]);
        ck_assert_int_eq(f.tensors[i].offset, offset);
        offset += f.tensors[i].nbytes;
    }
    ck_assert_int_eq((int64_t)f.buffer_len, offset);
    ck_assert_int_eq(f.size, 8 + f.header_len + (size_t)offset);
    /* The header is padded with spaces only. */
    const char *hdr = (const char *)f.bytes + 8;
    size_t end = f.header_len;
    while (end > 0 && hdr[end - 1] == ' ') end--;
    ck_assert_int_eq(hdr[end - 1], '}');
    ck_assert_int_lt(f.header_len - end, 8);

    float *got;
    ck_assert_msg(tfm_st_get_f32(&f, "dec.0.w", 2, (int64_t[]){5, 7}, &got) == 0, "%s",
                  tfm_last_error());
    ck_assert_int_eq((uintptr_t)got % 64, 0); /* first tensor sits at the aligned buffer start */
    for (int i = 0; i < 35; i++) ck_assert_uint_eq(bits(got[i]), bits(w[i]));
    ck_assert_int_eq(tfm_st_get_f32(&f, "dec.0.b", 1, (int64_t[]){7}, &got), 0);
    ck_assert_int_eq(memcmp(got, b, sizeof b), 0);
    float copy[7];
    ck_assert_int_eq(tfm_st_read_f32(&f, "dec.0.b", 1, (int64_t[]){7}, copy), 0);
    ck_assert_int_eq(memcmp(copy, b, sizeof b), 0);
    ck_assert_int_eq(tfm_st_get_f32(&f, "scalar", 0, NULL, &got), 0);
    ck_assert_uint_eq(bits(*got), bits(scalar));
    ck_assert_int_eq(tfm_st_get_f32(&f, "empty", 2, (int64_t[]){0, 4}, &got), 0);
    const tfm_st_tensor *ti = tfm_st_find(&f, "ids");
    ck_assert_int_eq(ti->nbytes, 12);
    ck_assert_int_eq(memcmp(ti->data, ids, 12), 0);
    ck_assert_int_eq(memcmp(tfm_st_find(&f, "half")->data, half, 4), 0);
    ck_assert_ptr_null(tfm_st_find(&f, "nope"));
    tfm_safetensors_close(&f);

    /* Overwriting an existing file replaces it. */
    ck_assert_int_eq(tfm_safetensors_write(path, t + 1, 1, NULL, 0), 0);
    ck_assert_int_eq(tfm_safetensors_open(path, &f), 0);
    ck_assert_int_eq(f.n_tensors, 1);
    ck_assert_str_eq(tfm_st_meta(&f, "format"), "pt");
    ck_assert_int_eq(f.n_meta, 1);
    tfm_safetensors_close(&f);
    list_dir(dir, names, sizeof names);
    ck_assert_str_eq(names, "model.safetensors ");
}
END_TEST

/* The fixture written by tests/gen_safetensors_fixtures.py (an independent
 * Python implementation of the format, ordered like the reference writer). */
START_TEST(reads_python_fixture) {
    const char *path = tfm_test_path("tests/fixtures/safetensors/reference.safetensors");
    tfm_st_file f;
    ck_assert_msg(tfm_safetensors_open(path, &f) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(f.n_tensors, 11);
    ck_assert_str_eq(tfm_st_meta(&f, "format"), "pt");
    ck_assert_str_eq(tfm_st_meta(&f, "source"), "tests/gen_safetensors_fixtures.py");
    float *x;
    ck_assert_msg(tfm_st_get_f32(&f, "encoder.weight", 2, (int64_t[]){3, 4}, &x) == 0, "%s",
                  tfm_last_error());
    for (int i = 0; i < 12; i++) ck_assert(x[i] == (float)(i - 5) * 0.125f);
    ck_assert_int_eq(tfm_st_get_f32(&f, "encoder.bias", 1, (int64_t[]){4}, &x), 0);
    for (int i = 0; i < 4; i++) ck_assert(x[i] == (float)i * 1.5f);
    ck_assert_int_eq(tfm_st_get_f32(&f, "specials", 1, (int64_t[]){6}, &x), 0);
    ck_assert_uint_eq(bits(x[0]), 0x80000000u);
    ck_assert_uint_eq(bits(x[1]), 0x7F800000u);
    ck_assert_uint_eq(bits(x[2]), 0xFF800000u);
    ck_assert_uint_eq(bits(x[3]), 1u);
    ck_assert_uint_eq(bits(x[4]), 0x7F7FFFFFu);
    ck_assert(isnan(x[5]));
    ck_assert_int_eq(tfm_st_get_f32(&f, "scalar", 0, NULL, &x), 0);
    ck_assert(*x == 3.25f);
    ck_assert_int_eq(tfm_st_get_f32(&f, "empty", 2, (int64_t[]){0, 3}, &x), 0);

    const tfm_st_tensor *t = tfm_st_find(&f, "ids");
    ck_assert_int_eq(t->dtype, TFM_ST_I64);
    int64_t ids[3];
    memcpy(ids, t->data, 24);
    ck_assert(ids[0] == 1 && ids[1] == -2 && ids[2] == (int64_t)1 << 40);
    t = tfm_st_find(&f, "mask");
    ck_assert_int_eq(t->dtype, TFM_ST_I32);
    ck_assert(t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 2);
    int32_t mask[4];
    memcpy(mask, t->data, 16);
    ck_assert(mask[0] == 1 && mask[1] == 0 && mask[2] == 0 && mask[3] == 7);
    t = tfm_st_find(&f, "flags");
    ck_assert_int_eq(t->dtype, TFM_ST_BOOL);
    ck_assert_int_eq(memcmp(t->data, "\1\0\1", 3), 0);
    t = tfm_st_find(&f, "half");
    ck_assert_int_eq(t->dtype, TFM_ST_F16);
    ck_assert_int_eq(memcmp(t->data, "\x00\x3C\x00\xC0\x00\x38", 6), 0); /* 1, -2, 0.5 */
    t = tfm_st_find(&f, "bf");
    ck_assert_int_eq(t->dtype, TFM_ST_BF16);
    ck_assert_int_eq(memcmp(t->data, "\x80\x3F\x40\xC0", 4), 0); /* 1, -3 */
    t = tfm_st_find(&f, "d\xC3\xA9"
                        "codeur.poids");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, TFM_ST_F64);
    double dv[2];
    memcpy(dv, t->data, 16);
    ck_assert(dv[0] == 0.5 && dv[1] == 0.25);
    /* The F64 tensor is not F32. */
    ck_assert_int_ne(tfm_st_get_f32(&f,
                                    "d\xC3\xA9"
                                    "codeur.poids",
                                    1, (int64_t[]){2}, &x),
                     0);
    tfm_safetensors_close(&f);
}
END_TEST

/* tfm's writer produces the same bytes as the Python one for the same tensors
 * in the same order. */
START_TEST(writer_matches_python_bytes) {
    float w[6], b[3], scalar = 3.25f;
    for (int i = 0; i < 6; i++) w[i] = (float)(i - 5) * 0.125f;
    for (int i = 0; i < 3; i++) b[i] = (float)i * 1.5f;
    tfm_st_tensor t[] = {
        {.name = "enc.0.w", .dtype = TFM_ST_F32, .ndim = 2, .shape = {2, 3}, .data = w},
        {.name = "enc.0.b", .dtype = TFM_ST_F32, .ndim = 1, .shape = {3}, .data = b},
        {.name = "scalar", .dtype = TFM_ST_F32, .ndim = 0, .data = &scalar},
    };
    char path[512];
    snprintf(path, sizeof path, "%s/c.safetensors", tfm_test_tmpdir("st"));
    ck_assert_int_eq(tfm_safetensors_write(path, t, 3, NULL, 0), 0);
    size_t n_c, n_py;
    unsigned char *c = read_all(path, &n_c);
    unsigned char *py =
        read_all(tfm_test_path("tests/fixtures/safetensors/f32_given_order.safetensors"), &n_py);
    ck_assert_int_eq(n_c, n_py);
    ck_assert_msg(memcmp(c, py, n_c) == 0, "C and Python files differ:\n%.*s\n%.*s", (int)n_c - 8,
                  c + 8, (int)n_py - 8, py + 8);
    free(c);
    free(py);
}
END_TEST

/* ---- malformed files ----------------------------------------------------- */

/* Writes 8-byte length (header_len, or the real length when UINT64_MAX),
 * the header text and n_data bytes of data. */
static void write_raw(const char *path, uint64_t header_len, const char *header, size_t n_data) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    uint64_t n = header_len == UINT64_MAX ? strlen(header) : header_len;
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(n >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < n_data; i++) fputc((int)(i * 37 & 0xFF), f);
    fclose(f);
}

static const struct {
    const char *tag;
    const char *header;
    size_t n_data;
    const char *want;   /* substring of the error */
    const char *tensor; /* the tensor the error must name, or NULL */
} MALFORMED[] = {
    {"bad_json", "{\"w\":{\"dtype\":\"F32\",}", 0, "header:1:21: expected a string key, got '}'",
     NULL},
    {"unterminated", "{\"w\":{\"dtype\":\"F32\"", 0,
     "expected ',' or '}' in object, got end of input", NULL},
    {"bad_utf8", "{\"w\xFF\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "header is not valid UTF-8 (header byte 3)", NULL},
    {"not_object", "[1, 2]", 0, "header does not start with '{'", NULL},
    {"leading_space", " {}", 0, "header does not start with '{'", NULL},
    {"trailing_json", "{} 1", 0, "trailing data after the JSON value", NULL},
    {"nul_padding", "{}\0\0", 0, "header does not start",
     NULL}, /* strlen stops: see length below */
    {"entry_not_object", "{\"w\":5}", 0, "entry is a number, expected an object", "w"},
    {"missing_dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing \"dtype\"",
     "w"},
    {"missing_shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "missing \"shape\"",
     "w"},
    {"missing_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing \"data_offsets\"",
     "w"},
    {"dtype_not_string", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "dtype is a number, expected a string", "w"},
    {"unknown_dtype", "{\"w\":{\"dtype\":\"Q8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     "unknown dtype \"Q8\"", "w"},
    {"lowercase_dtype", "{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "unknown dtype \"f32\"", "w"},
    {"shape_not_array", "{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4,
     "shape is a number, expected an array", "w"},
    {"negative_dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,4]}}", 4,
     "shape dimension 1 is negative", "w"},
    {"fractional_dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
     "shape dimension 0 is not an integer", "w"},
    {"exponent_dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4,
     "shape dimension 0 is not an integer", "w"},
    {"string_dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
     "shape dimension 0 is not an integer", "w"},
    {"huge_dim",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4,
     "shape dimension 0 is too large", "w"},
    {"too_many_dims",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
     "9 dimensions, at most 8", "w"},
    {"offsets_one", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4,
     "data_offsets must be an array [begin, end]", "w"},
    {"offsets_negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
     "data_offsets begin is negative", "w"},
    {"begin_after_end", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4,
     "data_offsets [4, 0] has begin after end", "w"},
    {"out_of_bounds", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
     "data_offsets [0, 8] out of bounds (the data buffer has 4 bytes)", "w"},
    {"truncated_data",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]}}",
     10, "out of bounds", "b"},
    {"size_mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
     "data_offsets [0, 20] hold 20 bytes, but F32 (2, 3) needs 24", "w"},
    {"wrong_dtype_size", "{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "hold 8 bytes, but F16 (2) needs 4", "w"},
    {"overflowing_shape",
     "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
     "needs more than", "w"},
    {"overlap",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, "tensor b: data_offsets [4, 12] overlap tensor a [0, 8]", "b"},
    {"same_range",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
     4, "overlap tensor a", "b"},
    {"empty_inside",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
     8, "tensor e: data_offsets [4, 4] overlap tensor a", "e"},
    {"gap",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
     12, "tensor b: gap of 4 unused bytes before its data_offsets [8, 12]", "b"},
    {"gap_at_start", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
     "gap of 4 unused bytes", "a"},
    {"trailing_garbage", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 7,
     "3 bytes after the end of the last tensor", NULL},
    {"no_tensors_but_data", "{\"__metadata__\":{}}", 1, "1 bytes after the end", NULL},
    {"duplicate_name",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, "duplicate key \"a\"", "a"},
    /* Found by fuzz_safetensors (a two-line error): a repeated name with a
     * newline in it. */
    {"duplicate_newline_name",
     "{\"\\nc\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"\\nc\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, "duplicate key \"?c\"", NULL},
    {"metadata_not_object", "{\"__metadata__\":\"pt\"}", 0,
     "__metadata__ is a string, expected an object", NULL},
    {"metadata_not_string", "{\"__metadata__\":{\"epoch\":3}}", 0,
     "__metadata__ value for epoch is a number, expected a string", NULL},
    {"nul_in_name", "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor a?b: name contains a NUL character", NULL},
    {"newline_in_name", "{\"a\\nb\":{\"dtype\":\"Q\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor a?b: unknown dtype", NULL},
};

START_TEST(rejects_malformed_files) {
    const char *dir = tfm_test_tmpdir("stbad");
    for (size_t i = 0; i < sizeof MALFORMED / sizeof MALFORMED[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, MALFORMED[i].tag);
        /* nul_padding: a 4-byte header "{}\0\0" (strlen would see 2). */
        int nul = !strcmp(MALFORMED[i].tag, "nul_padding");
        if (nul) {
            FILE *f = fopen(path, "wb");
            fwrite("\4\0\0\0\0\0\0\0{}\0\0", 1, 12, f);
            fclose(f);
        } else {
            write_raw(path, UINT64_MAX, MALFORMED[i].header, MALFORMED[i].n_data);
        }
        tfm_st_file f;
        ck_assert_msg(tfm_safetensors_open(path, &f) != 0, "%s accepted", MALFORMED[i].tag);
        const char *err = tfm_last_error();
        const char *want =
            nul ? "trailing data after the JSON value: byte 0x00" : MALFORMED[i].want;
        ck_assert_msg(strstr(err, want) != NULL, "%s: error '%s' lacks '%s'", MALFORMED[i].tag, err,
                      want);
        ck_assert_msg(strncmp(err, path, strlen(path)) == 0,
                      "%s: error '%s' does not start with the path", MALFORMED[i].tag, err);
        ck_assert_msg(!strchr(err, '\n'), "%s: error is not one line", MALFORMED[i].tag);
        if (MALFORMED[i].tensor) {
            char named[64];
            snprintf(named, sizeof named, "tensor %s", MALFORMED[i].tensor);
            char quoted[64];
            snprintf(quoted, sizeof quoted, "\"%s\"", MALFORMED[i].tensor);
            ck_assert_msg(strstr(err, named) || strstr(err, quoted),
                          "%s: error '%s' does not name tensor %s", MALFORMED[i].tag, err,
                          MALFORMED[i].tensor);
        }
        /* The same bytes through the in-memory entry point give the same verdict. */
        size_t n;
        unsigned char *bytes = read_all(path, &n);
        ck_assert_int_ne(tfm_safetensors_parse(bytes, n, "mem", &f), 0);
        ck_assert_msg(strncmp(tfm_last_error(), "mem", 3) == 0, "%s", tfm_last_error());
        free(bytes);
    }
}
END_TEST

START_TEST(rejects_bad_lengths) {
    const char *dir = tfm_test_tmpdir("stlen");
    char path[512];
    tfm_st_file f;

    /* Shorter than the 8-byte length. */
    snprintf(path, sizeof path, "%s/short.safetensors", dir);
    FILE *fp = fopen(path, "wb");
    fwrite("\2\0\0\0\0", 1, 5, fp);
    fclose(fp);
    ck_assert_int_ne(tfm_safetensors_open(path, &f), 0);
    ck_assert_msg(strstr(tfm_last_error(), path) &&
                      strstr(tfm_last_error(), "file is 5 bytes, too short"),
                  "%s", tfm_last_error());

    /* Empty file. */
    snprintf(path, sizeof path, "%s/empty.safetensors", dir);
    fclose(fopen(path, "wb"));
    ck_assert_int_ne(tfm_safetensors_open(path, &f), 0);
    ck_assert_msg(strstr(tfm_last_error(), "file is 0 bytes"), "%s", tfm_last_error());

    /* Header length beyond the file. */
    snprintf(path, sizeof path, "%s/past.safetensors", dir);
    write_raw(path, 100, "{}", 0);
    ck_assert_int_ne(tfm_safetensors_open(path, &f), 0);
    ck_assert_msg(
        strstr(tfm_last_error(), path) &&
            strstr(tfm_last_error(), "header length 100 runs past the end of the file (10 bytes)"),
        "%s", tfm_last_error());

    /* Huge header lengths are refused before any allocation. */
    uint64_t huge[] = {100000001ull, 1ull << 40, UINT64_MAX - 1};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/huge%d.safetensors", dir, i);
        write_raw(path, huge[i], "{}", 0);
        ck_assert_int_ne(tfm_safetensors_open(path, &f), 0);
        ck_assert_msg(strstr(tfm_last_error(), path) &&
                          strstr(tfm_last_error(), "exceeds the limit of 100000000"),
                      "%s", tfm_last_error());
    }
    /* Zero-length header: not JSON. */
    snprintf(path, sizeof path, "%s/zero.safetensors", dir);
    write_raw(path, 0, "", 0);
    ck_assert_int_ne(tfm_safetensors_open(path, &f), 0);
    ck_assert_msg(strstr(tfm_last_error(), "does not start with '{'"), "%s", tfm_last_error());

    /* Missing file and a directory. */
    snprintf(path, sizeof path, "%s/absent.safetensors", dir);
    ck_assert_int_ne(tfm_safetensors_open(path, &f), 0);
    ck_assert_msg(strstr(tfm_last_error(), path) && strstr(tfm_last_error(), "cannot open"), "%s",
                  tfm_last_error());
    ck_assert_int_ne(tfm_safetensors_open(dir, &f), 0);
    ck_assert_msg(strstr(tfm_last_error(), "not a regular file"), "%s", tfm_last_error());

    /* Metadata may be null (the reference reads it as absent); unknown
     * fields in an entry are ignored, as the reference does. */
    snprintf(path, sizeof path, "%s/nullmeta.safetensors", dir);
    write_raw(path, UINT64_MAX,
              "{\"__metadata__\":null,\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2],"
              "\"x\":[]}}",
              2);
    ck_assert_msg(tfm_safetensors_open(path, &f) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(f.n_tensors, 1);
    ck_assert_int_eq(f.n_meta, 0);
    ck_assert_ptr_null(tfm_st_meta(&f, "format"));
    tfm_safetensors_close(&f);

    /* The smallest valid file: "{}" padded to 8, no tensors. */
    snprintf(path, sizeof path, "%s/none.safetensors", dir);
    write_raw(path, UINT64_MAX, "{}      ", 0);
    ck_assert_msg(tfm_safetensors_open(path, &f) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(f.n_tensors, 0);
    tfm_safetensors_close(&f);
}
END_TEST

START_TEST(get_f32_checks) {
    const char *dir = tfm_test_tmpdir("stget");
    char path[512];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    float w[6] = {1, 2, 3, 4, 5, 6};
    int32_t ids[2] = {1, 2};
    tfm_st_tensor t[] = {
        {.name = "w", .dtype = TFM_ST_F32, .ndim = 2, .shape = {2, 3}, .data = w},
        {.name = "ids", .dtype = TFM_ST_I32, .ndim = 1, .shape = {2}, .data = ids},
    };
    ck_assert_int_eq(tfm_safetensors_write(path, t, 2, NULL, 0), 0);
    tfm_st_file f;
    ck_assert_int_eq(tfm_safetensors_open(path, &f), 0);
    float *x = NULL;
    char want[700];
    ck_assert_int_ne(tfm_st_get_f32(&f, "w", 2, (int64_t[]){3, 2}, &x), 0);
    snprintf(want, sizeof want, "%s: tensor w has shape (2, 3), expected (3, 2)", path);
    ck_assert_str_eq(tfm_last_error(), want);
    ck_assert_int_ne(tfm_st_get_f32(&f, "w", 1, (int64_t[]){6}, &x), 0);
    snprintf(want, sizeof want, "%s: tensor w has shape (2, 3), expected (6)", path);
    ck_assert_str_eq(tfm_last_error(), want);
    ck_assert_int_ne(tfm_st_get_f32(&f, "nope", 1, (int64_t[]){6}, &x), 0);
    snprintf(want, sizeof want, "%s: missing tensor nope", path);
    ck_assert_str_eq(tfm_last_error(), want);
    ck_assert_int_ne(tfm_st_get_f32(&f, "ids", 1, (int64_t[]){2}, &x), 0);
    snprintf(want, sizeof want, "%s: tensor ids has dtype I32, expected F32", path);
    ck_assert_str_eq(tfm_last_error(), want);
    float dst[6];
    ck_assert_int_ne(tfm_st_read_f32(&f, "w", 2, (int64_t[]){2, 2}, dst), 0);
    ck_assert_ptr_null(x);
    tfm_safetensors_close(&f);

    /* A tensor at an odd offset, in memory: get_f32 refuses, read_f32 copies. */
    char header[160] = "{\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                       "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1,5]}}";
    size_t hl = strlen(header);
    while ((8 + hl + 1) % 4 == 0) header[hl++] = ' '; /* make w misaligned in buf */
    size_t n = 8 + hl + 5;
    unsigned char *buf = tfm_alloc(n);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    float one = 1.5f;
    buf[8 + hl] = 9;
    memcpy(buf + 8 + hl + 1, &one, 4);
    ck_assert_msg(tfm_safetensors_parse(buf, n, "odd", &f) == 0, "%s", tfm_last_error());
    ck_assert_int_ne(tfm_st_get_f32(&f, "w", 1, (int64_t[]){1}, &x), 0);
    ck_assert_msg(strstr(tfm_last_error(), "odd: tensor w is not 4-byte aligned"), "%s",
                  tfm_last_error());
    ck_assert_int_eq(tfm_st_read_f32(&f, "w", 1, (int64_t[]){1}, dst), 0);
    ck_assert(dst[0] == 1.5f);
    tfm_safetensors_close(&f);
    tfm_free(buf);
}
END_TEST

START_TEST(writer_fails_cleanly) {
    const char *dir = tfm_test_tmpdir("stw");
    float w[2] = {1, 2};
    tfm_st_tensor t = {.name = "w", .dtype = TFM_ST_F32, .ndim = 1, .shape = {2}, .data = w};
    char path[700], names[1024];

    /* Directory that does not exist. */
    snprintf(path, sizeof path, "%s/missing/m.safetensors", dir);
    ck_assert_int_ne(tfm_safetensors_write(path, &t, 1, NULL, 0), 0);
    ck_assert_msg(strstr(tfm_last_error(), path) && !strchr(tfm_last_error(), '\n'), "%s",
                  tfm_last_error());

    /* A regular file where a directory should be: unwritable even for root. */
    char file[600];
    snprintf(file, sizeof file, "%s/plain", dir);
    fclose(fopen(file, "w"));
    snprintf(path, sizeof path, "%s/m.safetensors", file);
    ck_assert_int_ne(tfm_safetensors_write(path, &t, 1, NULL, 0), 0);
    ck_assert_msg(strstr(tfm_last_error(), path) && strstr(tfm_last_error(), "Not a directory"),
                  "%s", tfm_last_error());
    unlink(file);
    list_dir(dir, names, sizeof names);
    ck_assert_str_eq(names, "");

    /* Read-only directory (root ignores the mode bits, so only check the
     * outcome when they apply). */
    char ro[512];
    snprintf(ro, sizeof ro, "%s/ro", dir);
    ck_assert_int_eq(mkdir(ro, 0500), 0);
    snprintf(path, sizeof path, "%s/m.safetensors", ro);
    if (geteuid() != 0) {
        ck_assert_int_ne(tfm_safetensors_write(path, &t, 1, NULL, 0), 0);
        ck_assert_msg(strstr(tfm_last_error(), path) &&
                          strstr(tfm_last_error(), "Permission denied"),
                      "%s", tfm_last_error());
        list_dir(ro, names, sizeof names);
        ck_assert_str_eq(names, "");
    }
    chmod(ro, 0700);

    /* The rename fails (the destination is a directory): the temporary file
     * must be gone and the directory untouched. */
    char sub[512];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    char inner[600];
    snprintf(inner, sizeof inner, "%s/keep", sub);
    fclose(fopen(inner, "w"));
    ck_assert_int_ne(tfm_safetensors_write(sub, &t, 1, NULL, 0), 0);
    /* refused before any temporary file is made (atomic_file.h) */
    ck_assert_msg(strstr(tfm_last_error(), sub) && strstr(tfm_last_error(), "is a directory"), "%s",
                  tfm_last_error());
    list_dir(dir, names, sizeof names);
    ck_assert_msg(!strstr(names, ".tmp"), "temporary file left behind: %s", names);

    /* Invalid input fails before any file is created, and an existing file
     * under the name survives. */
    snprintf(path, sizeof path, "%s/keep.safetensors", dir);
    ck_assert_int_eq(tfm_safetensors_write(path, &t, 1, NULL, 0), 0);
    tfm_st_tensor bad[2] = {t, t};
    ck_assert_int_ne(tfm_safetensors_write(path, bad, 2, NULL, 0), 0);
    ck_assert_msg(strstr(tfm_last_error(), "duplicate tensor name w"), "%s", tfm_last_error());
    bad[1].name = "__metadata__";
    ck_assert_int_ne(tfm_safetensors_write(path, bad, 2, NULL, 0), 0);
    ck_assert_msg(strstr(tfm_last_error(), "reserved"), "%s", tfm_last_error());
    bad[1] = t;
    bad[1].name = "neg";
    bad[1].shape[0] = -2;
    ck_assert_int_ne(tfm_safetensors_write(path, bad, 2, NULL, 0), 0);
    ck_assert_msg(strstr(tfm_last_error(), "tensor neg: negative or overflowing shape"), "%s",
                  tfm_last_error());
    bad[1].shape[0] = 2;
    bad[1].data = NULL;
    ck_assert_int_ne(tfm_safetensors_write(path, bad, 2, NULL, 0), 0);
    ck_assert_msg(strstr(tfm_last_error(), "tensor neg: no data"), "%s", tfm_last_error());
    const char *dup_meta[] = {"k", "1", "k", "2"};
    ck_assert_int_ne(tfm_safetensors_write(path, &t, 1, dup_meta, 2), 0);
    ck_assert_msg(strstr(tfm_last_error(), "duplicate metadata key k"), "%s", tfm_last_error());
    const char *meta[] = {"k", "bad \xFF utf8"};
    ck_assert_int_ne(tfm_safetensors_write(path, &t, 1, meta, 1), 0);
    ck_assert_msg(strstr(tfm_last_error(), path) && strstr(tfm_last_error(), "not valid UTF-8"),
                  "%s", tfm_last_error());
    tfm_st_file f;
    ck_assert_int_eq(tfm_safetensors_open(path, &f), 0);
    ck_assert_int_eq(f.n_tensors, 1);
    tfm_safetensors_close(&f);
    list_dir(dir, names, sizeof names);
    ck_assert_msg(!strstr(names, ".tmp"), "temporary file left behind: %s", names);
}
END_TEST

START_TEST(dtype_table) {
    for (int d = 0; d < TFM_ST_DTYPE_COUNT; d++) {
        const char *name = tfm_st_dtype_name((tfm_st_dtype)d);
        ck_assert_int_eq(tfm_st_dtype_from_name(name, strlen(name)), d);
        ck_assert(tfm_st_dtype_size((tfm_st_dtype)d) >= 1);
    }
    ck_assert_int_eq(tfm_st_dtype_size(TFM_ST_BF16), 2);
    ck_assert_int_eq(tfm_st_dtype_size(TFM_ST_F64), 8);
    ck_assert_int_eq(tfm_st_dtype_from_name("F4", 2), -1);
    ck_assert_int_eq(tfm_st_dtype_from_name("F3", 2), -1);
    ck_assert_str_eq(tfm_st_dtype_name(TFM_ST_DTYPE_COUNT), "?");
}
END_TEST

int main(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, round_trip_bit_exact);
    tcase_add_test(tc, reads_python_fixture);
    tcase_add_test(tc, writer_matches_python_bytes);
    tcase_add_test(tc, rejects_malformed_files);
    tcase_add_test(tc, rejects_bad_lengths);
    tcase_add_test(tc, get_f32_checks);
    tcase_add_test(tc, writer_fails_cleanly);
    tcase_add_test(tc, dtype_table);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
