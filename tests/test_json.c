/* Strict JSON reader and writer. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tfm/json.h"
#include "util_test.h"

static tfm_json *parse_ok(const char *text) {
    tfm_json *v = NULL;
    int rc = tfm_json_parse(text, strlen(text), NULL, "t.json", &v);
    ck_assert_msg(rc == 0, "rejected %s: %s", text, tfm_last_error());
    return v;
}

START_TEST(parses_a_config) {
    const char *text = "{\n  \"d_model\": 512,\n  \"dropout\": 0.1,\n  \"name\": \"tfm\",\n"
                       "  \"tie\": true,\n  \"extra\": null,\n  \"layers\": [6, 6],\n  \"nested\": "
                       "{\"a\": []}\n}\n";
    tfm_json *v = parse_ok(text);
    ck_assert_int_eq(v->type, TFM_JSON_OBJECT);
    ck_assert_int_eq(tfm_json_len(v), 7);
    /* Key order is document order. */
    const char *order[] = {"d_model", "dropout", "name", "tie", "extra", "layers", "nested"};
    for (int i = 0; i < 7; i++) ck_assert_str_eq(v->keys[i], order[i]);
    int64_t d_model;
    double dropout;
    const char *name;
    int tie;
    ck_assert_int_eq(tfm_json_get_int64(v, "d_model", &d_model), 0);
    ck_assert_int_eq(d_model, 512);
    ck_assert_int_eq(tfm_json_get_double(v, "dropout", &dropout), 0);
    ck_assert(dropout == 0.1);
    ck_assert_int_eq(tfm_json_get_string(v, "name", &name), 0);
    ck_assert_str_eq(name, "tfm");
    ck_assert_int_eq(tfm_json_get_bool(v, "tie", &tie), 0);
    ck_assert_int_eq(tie, 1);
    ck_assert_int_eq(tfm_json_get(v, "extra")->type, TFM_JSON_NULL);
    const tfm_json *layers = tfm_json_get(v, "layers");
    ck_assert_int_eq(tfm_json_len(layers), 2);
    ck_assert_ptr_nonnull(tfm_json_at(layers, 1));
    ck_assert_ptr_null(tfm_json_at(layers, 2));
    ck_assert_ptr_null(tfm_json_at(layers, -1));
    ck_assert_ptr_null(tfm_json_at(v, 0)); /* not an array */
    ck_assert_int_eq(tfm_json_len(tfm_json_get(tfm_json_get(v, "nested"), "a")), 0);
    ck_assert_ptr_null(tfm_json_get(v, "missing"));
    ck_assert_ptr_null(tfm_json_get(layers, "d_model")); /* not an object */
    /* Offsets point at the value. */
    ck_assert_int_eq(text[tfm_json_get(v, "name")->offset], '"');

    /* Member accessors name the key and both types. */
    ck_assert_int_ne(tfm_json_get_int64(v, "name", &d_model), 0);
    ck_assert_str_eq(tfm_last_error(), "'name': expected an integer, got a string");
    ck_assert_int_ne(tfm_json_get_int64(v, "dropout", &d_model), 0);
    ck_assert_str_eq(tfm_last_error(), "'dropout': expected an integer, got 0.1");
    ck_assert_int_ne(tfm_json_get_string(v, "nope", &name), 0);
    ck_assert_str_eq(tfm_last_error(), "'nope': missing");
    ck_assert_int_ne(tfm_json_get_bool(v, "extra", &tie), 0);
    ck_assert_str_eq(tfm_last_error(), "'extra': expected a boolean, got null");
    ck_assert_int_ne(tfm_json_get_double(layers, "x", &dropout), 0);
    ck_assert_str_eq(tfm_last_error(), "'x': expected an object to look it up in, got an array");
    tfm_json_free(v);
}
END_TEST

/* Every document here must be rejected with an error mentioning `want`. */
static const struct {
    const char *text;
    size_t len; /* 0: strlen */
    const char *want;
} INVALID[] = {
    {"", 0, "unexpected end of input"},
    {"   ", 0, "unexpected end of input"},
    {"{", 0, "expected a string key, got end of input"},
    {"[1,]", 0, "unexpected ']', expected a value"},
    {"[1 2]", 0, "expected ',' or ']' in array, got '2'"},
    {"{\"a\":1,}", 0, "expected a string key, got '}'"},
    {"{\"a\" 1}", 0, "expected ':' after key"},
    {"{'a':1}", 0, "expected a string key, got '''"},
    {"{1:1}", 0, "expected a string key"},
    {"01", 0, "leading zero"},
    {"-01", 0, "leading zero"},
    {"1.", 0, "expected a digit after '.'"},
    {"1.e5", 0, "expected a digit after '.'"},
    {"1e", 0, "expected a digit in the exponent"},
    {"1e+", 0, "expected a digit in the exponent"},
    {"-", 0, "expected a digit"},
    {"+1", 0, "unexpected '+'"},
    {".5", 0, "unexpected '.'"},
    {"NaN", 0, "unexpected 'N'"},
    {"Infinity", 0, "unexpected 'I'"},
    {"-Infinity", 0, "expected a digit"},
    {"1e400", 0, "number 1e400 is out of range"},
    {"tru", 0, "invalid literal (expected true)"},
    {"nul", 0, "invalid literal (expected null)"},
    {"True", 0, "unexpected 'T'"},
    {"\"abc", 0, "unterminated string"},
    {"\"abc\\\"", 0, "unterminated string"},
    {"\"a\tb\"", 0, "unescaped control character 0x09"},
    {"\"a\nb\"", 0, "unescaped control character 0x0A"},
    {"\"\\x\"", 0, "invalid escape: 'x' after a backslash"},
    {"\"\\u12\"", 0, "bad \\u escape"},
    {"\"\\u12G4\"", 0, "bad \\u escape"},
    {"\"\\ud800\"", 0, "high surrogate \\uD800 not followed by a low surrogate"},
    {"\"\\ud800\\u0041\"", 0, "not followed by a low surrogate"},
    {"\"\\ud800\\ud800\"", 0, "not followed by a low surrogate"},
    {"\"\\udc00\"", 0, "lone low surrogate \\uDC00"},
    {"\"\\ude00\\ud83d\"", 0, "lone low surrogate"},
    {"[1] x", 0, "trailing data after the JSON value: 'x'"},
    {"{} {}", 0, "trailing data"},
    {"1 2", 0, "trailing data"},
    {"[1]\0", 4, "trailing data after the JSON value: byte 0x00"},
    {"{\"a\":1,\"a\":2}", 0, "duplicate key \"a\""},
    /* Found by fuzz_safetensors: the key went into the message raw, newline
     * and all. Control characters are now shown as '?'. */
    {"{\"a\\nb\\u0001\":1,\"a\\nb\\u0001\":2}", 0, "duplicate key \"a?b?\""},
    {"/* c */ 1", 0, "unexpected '/'"},
    {"[1,2", 0, "expected ',' or ']' in array, got end of input"},
    {"\xEF\xBB\xBF{}", 0, "unexpected byte 0xEF"},          /* byte order mark */
    {"\"\xC0\x80\"", 0, "invalid UTF-8 in string"},         /* overlong NUL */
    {"\"\xE0\x80\xAF\"", 0, "invalid UTF-8 in string"},     /* overlong '/' */
    {"\"\xED\xA0\x80\"", 0, "invalid UTF-8 in string"},     /* encoded surrogate */
    {"\"\xF4\x90\x80\x80\"", 0, "invalid UTF-8 in string"}, /* above U+10FFFF */
    {"\"\xC3\"", 0, "invalid UTF-8 in string"},             /* truncated sequence */
    {"\"\x80\"", 0, "invalid UTF-8 in string"},             /* lone continuation */
    {"\"\xFF\"", 0, "invalid UTF-8 in string"},
    {"[\xC3\xA9]", 0, "unexpected byte 0xC3"},      /* non-ASCII outside strings */
    {"\"\xE2\x82\"", 0, "invalid UTF-8 in string"}, /* cut before the quote */
};

START_TEST(rejects_invalid_documents) {
    for (size_t i = 0; i < sizeof INVALID / sizeof INVALID[0]; i++) {
        size_t len = INVALID[i].len ? INVALID[i].len : strlen(INVALID[i].text);
        tfm_json *v = (tfm_json *)1;
        int rc = tfm_json_parse(INVALID[i].text, len, NULL, "bad.json", &v);
        ck_assert_msg(rc != 0, "case %zu accepted: %s", i, INVALID[i].text);
        ck_assert_ptr_null(v);
        const char *err = tfm_last_error();
        ck_assert_msg(strstr(err, INVALID[i].want) != NULL, "case %zu (%s): error '%s' lacks '%s'",
                      i, INVALID[i].text, err, INVALID[i].want);
        ck_assert_msg(
            strncmp(err, "bad.json:", 9) == 0 && strstr(err, "(byte ") && !strchr(err, '\n'),
            "case %zu: error '%s' is not one line with the source and byte offset", i, err);
    }
}
END_TEST

START_TEST(errors_give_line_column_and_byte) {
    const char *text = "{\n  \"a\": 1,\n  \"b\": tru\n}";
    tfm_json *v;
    ck_assert_int_ne(tfm_json_parse(text, strlen(text), NULL, "cfg.json", &v), 0);
    ck_assert_str_eq(tfm_last_error(), "cfg.json:3:8: invalid literal (expected true) (byte 19)");
    ck_assert_int_eq(text[19], 't');
}
END_TEST

START_TEST(decodes_escapes_and_surrogates) {
    tfm_json *v = parse_ok("\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u0041\\u00e9\\u20AC\\ud83d\\ude00 "
                           "\xC3\xA9\xF0\x9F\x98\x80\"");
    const char *want =
        "q\" b\\ s/ \b\f\n\r\t A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 \xC3\xA9\xF0\x9F\x98\x80";
    ck_assert_int_eq(v->text_len, strlen(want));
    ck_assert_mem_eq(v->text, want, strlen(want));
    tfm_json_free(v);

    /* \u0000 gives an embedded NUL that the length keeps. */
    v = parse_ok("{\"k\\u0000x\": \"a\\u0000b\"}");
    ck_assert_int_eq(v->key_lens[0], 3);
    ck_assert_mem_eq(v->keys[0], "k\0x", 3);
    ck_assert_ptr_null(tfm_json_get(v, "k"));
    ck_assert_ptr_nonnull(tfm_json_get_n(v, "k\0x", 3));
    const char *s;
    size_t len;
    ck_assert_int_eq(tfm_json_as_string(v->items[0], &s, &len), 0);
    ck_assert_int_eq(len, 3);
    ck_assert_mem_eq(s, "a\0b", 3);
    tfm_json_free(v);

    /* Largest code point and the edges of the surrogate range. */
    v = parse_ok(
        "[\"\\udbff\\udfff\", \"\\ud800\\udc00\", \"\\uD7FF\", \"\\uE000\", \"\xF4\x8F\xBF\xBF\"]");
    ck_assert_mem_eq(v->items[0]->text, "\xF4\x8F\xBF\xBF", 5);
    ck_assert_mem_eq(v->items[1]->text, "\xF0\x90\x80\x80", 5);
    ck_assert_mem_eq(v->items[2]->text, "\xED\x9F\xBF", 4);
    ck_assert_mem_eq(v->items[3]->text, "\xEE\x80\x80", 4);
    tfm_json_free(v);
}
END_TEST

START_TEST(depth_limit) {
    tfm_json_options opt = {4, 0, 0};
    tfm_json *v;
    ck_assert_int_eq(tfm_json_parse("[[[{\"a\":1}]]]", 13, &opt, "d", &v), 0);
    tfm_json_free(v);
    ck_assert_int_ne(tfm_json_parse("[[[[[1]]]]]", 11, &opt, "d", &v), 0);
    ck_assert_msg(strstr(tfm_last_error(), "nesting deeper than 4 levels (byte 4)"), "%s",
                  tfm_last_error());
    /* Far beyond the default limit: a clean error, not a stack overflow. */
    size_t n = 1000000;
    char *deep = malloc(n);
    memset(deep, '[', n);
    ck_assert_int_ne(tfm_json_parse(deep, n, NULL, "deep", &v), 0);
    ck_assert_msg(strstr(tfm_last_error(), "nesting deeper than 128 levels (byte 128)"), "%s",
                  tfm_last_error());
    /* A caller asking for more than the stack can take gets the cap. */
    tfm_json_options huge = {1 << 30, 0, 0};
    ck_assert_int_ne(tfm_json_parse(deep, n, &huge, "deep", &v), 0);
    ck_assert_msg(strstr(tfm_last_error(), "nesting deeper than 4096 levels"), "%s",
                  tfm_last_error());
    memset(deep, '{', n);
    ck_assert_int_ne(tfm_json_parse(deep, n, NULL, "deep", &v), 0);
    free(deep);
}
END_TEST

START_TEST(numbers) {
    tfm_json *v = parse_ok(
        "[0, -0, 9223372036854775807, -9223372036854775808, 9223372036854775808,"
        " -9223372036854775809, 1.5, 1e3, 1E-2, 9007199254740993, 0.1, 1e-400, 123456789012]");
    int64_t i;
    double d;
    ck_assert_int_eq(tfm_json_as_int64(v->items[0], &i), 0);
    ck_assert_int_eq(i, 0);
    ck_assert_int_eq(tfm_json_as_int64(v->items[1], &i), 0);
    ck_assert_int_eq(i, 0);
    ck_assert_int_eq(tfm_json_as_double(v->items[1], &d), 0);
    ck_assert(d == 0 && signbit(d));
    ck_assert_int_eq(tfm_json_as_int64(v->items[2], &i), 0);
    ck_assert(i == INT64_MAX);
    ck_assert_int_eq(tfm_json_as_int64(v->items[3], &i), 0);
    ck_assert(i == INT64_MIN);
    ck_assert_int_ne(tfm_json_as_int64(v->items[4], &i), 0);
    ck_assert_str_eq(tfm_last_error(), "integer 9223372036854775808 does not fit in 64 bits");
    ck_assert_int_ne(tfm_json_as_int64(v->items[5], &i), 0);
    ck_assert_int_ne(tfm_json_as_int64(v->items[6], &i), 0);
    ck_assert_str_eq(tfm_last_error(), "expected an integer, got 1.5");
    ck_assert_int_ne(tfm_json_as_int64(v->items[7], &i), 0); /* 1e3: no exponents for integers */
    ck_assert_int_eq(tfm_json_as_double(v->items[7], &d), 0);
    ck_assert(d == 1000.0);
    ck_assert_int_eq(tfm_json_as_double(v->items[8], &d), 0);
    ck_assert(d == 0.01);
    /* 2^53 + 1 is exact as an integer though not as a double. */
    ck_assert_int_eq(tfm_json_as_int64(v->items[9], &i), 0);
    ck_assert(i == 9007199254740993LL);
    ck_assert_str_eq(v->items[9]->text, "9007199254740993");
    ck_assert(v->items[10]->number == 0.1);
    ck_assert(v->items[11]->number == 0.0); /* underflow is fine */
    ck_assert_int_eq(tfm_json_as_int64(v->items[12], &i), 0);
    ck_assert(i == 123456789012LL);
    ck_assert_int_ne(tfm_json_as_string(v->items[0], &(const char *){0}, NULL), 0);
    ck_assert_str_eq(tfm_last_error(), "expected a string, got a number");
    tfm_json_free(v);
}
END_TEST

START_TEST(duplicates_and_many_keys) {
    tfm_json_options loose = {0, 1, 0};
    tfm_json *v;
    ck_assert_int_eq(tfm_json_parse("{\"a\":1,\"b\":2,\"a\":3}", 19, &loose, "dup", &v), 0);
    int64_t a;
    ck_assert_int_eq(tfm_json_get_int64(v, "a", &a), 0);
    ck_assert_int_eq(a, 3); /* last wins, as in Python */
    tfm_json_free(v);

    /* Enough keys for the hash index; duplicates detected through it too. */
    int n = 3000;
    char *text = malloc((size_t)n * 24 + 16);
    size_t o = 0;
    o += (size_t)sprintf(text + o, "{");
    for (int k = 0; k < n; k++)
        o += (size_t)sprintf(text + o, "%s\"key%d\":%d", k ? "," : "", k, k * 7);
    o += (size_t)sprintf(text + o, "}");
    v = parse_ok(text);
    ck_assert_int_eq(tfm_json_len(v), n);
    for (int k = 0; k < n; k++) {
        char key[32];
        snprintf(key, sizeof key, "key%d", k);
        ck_assert_int_eq(tfm_json_get_int64(v, key, &a), 0);
        ck_assert_int_eq(a, k * 7);
    }
    ck_assert_ptr_null(tfm_json_get(v, "key3000"));
    ck_assert_ptr_null(tfm_json_get(v, "key"));
    tfm_json_free(v);
    /* Repeat key2000 at the end. */
    sprintf(text + o - 1, ",\"key2000\":1}");
    ck_assert_int_ne(tfm_json_parse(text, strlen(text), NULL, "big", &v), 0);
    ck_assert_msg(strstr(tfm_last_error(), "duplicate key \"key2000\""), "%s", tfm_last_error());
    ck_assert_int_eq(tfm_json_parse(text, strlen(text), &loose, "big", &v), 0);
    ck_assert_int_eq(tfm_json_get_int64(v, "key2000", &a), 0);
    ck_assert_int_eq(a, 1);
    tfm_json_free(v);
    free(text);
}
END_TEST

START_TEST(memory_cap) {
    /* 200k zeros: one node each, far more memory than text. */
    size_t n = 400001;
    char *text = malloc(n + 1);
    text[0] = '[';
    for (size_t i = 1; i < n; i += 2) text[i] = '0', text[i + 1] = ',';
    text[n - 1] = ']';
    tfm_json_options opt = {0, 0, 4u << 20};
    tfm_json *v;
    ck_assert_int_ne(tfm_json_parse(text, n, &opt, "big", &v), 0);
    ck_assert_msg(strstr(tfm_last_error(), "document needs more than 4194304 bytes of memory"),
                  "%s", tfm_last_error());
    opt.max_memory = 0; /* the default is plenty for this */
    ck_assert_msg(tfm_json_parse(text, n, &opt, "big", &v) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(tfm_json_len(v), 200000);
    tfm_json_free(v);
    free(text);
}
END_TEST

START_TEST(writer_compact_and_pretty) {
    tfm_json_writer w;
    for (int pretty = 0; pretty <= 1; pretty++) {
        tfm_jw_init(&w, pretty);
        tfm_jw_begin_object(&w);
        tfm_jw_key(&w, "d_model");
        tfm_jw_int(&w, 512);
        tfm_jw_key(&w, "eps");
        tfm_jw_double(&w, 1e-6);
        tfm_jw_key(&w, "scale");
        tfm_jw_double(&w, 1.0);
        tfm_jw_key(&w, "p");
        tfm_jw_float(&w, 0.1f);
        tfm_jw_key(&w, "layers");
        tfm_jw_begin_array(&w);
        tfm_jw_int(&w, INT64_MIN);
        tfm_jw_bool(&w, 0);
        tfm_jw_null(&w);
        tfm_jw_begin_object(&w);
        tfm_jw_end_object(&w);
        tfm_jw_begin_array(&w);
        tfm_jw_end_array(&w);
        tfm_jw_end_array(&w);
        tfm_jw_key(&w, "s\"\\\n\x01");
        tfm_jw_string(&w, "caf\xC3\xA9 \t\x1f");
        tfm_jw_end_object(&w);
        ck_assert_int_eq(tfm_jw_finish(&w), 0);
        const char *want =
            pretty ? "{\n  \"d_model\": 512,\n  \"eps\": 1e-06,\n  \"scale\": 1.0,\n  \"p\": "
                     "0.1,\n  \"layers\": [\n"
                     "    -9223372036854775808,\n    false,\n    null,\n    {},\n    []\n  ],\n"
                     "  \"s\\\"\\\\\\n\\u0001\": \"caf\xC3\xA9 \\t\\u001f\"\n}\n"
                   : "{\"d_model\":512,\"eps\":1e-06,\"scale\":1.0,\"p\":0.1,\"layers\":[-"
                     "9223372036854775808,false,"
                     "null,{},[]],\"s\\\"\\\\\\n\\u0001\":\"caf\xC3\xA9 \\t\\u001f\"}";
        ck_assert_str_eq(w.data, want);
        /* And it reads back. */
        tfm_json *v = parse_ok(w.data);
        ck_assert_str_eq(tfm_json_get(v, "s\"\\\n\x01")->text, "caf\xC3\xA9 \t\x1f");
        tfm_json_free(v);
        tfm_jw_free(&w);
    }
}
END_TEST

START_TEST(writer_numbers_round_trip) {
    double ds[] = {0.1,         1.0 / 3.0, 1e300, -2.5e-308,          5e-324,
                   123456789.0, 1e16,      -0.0,  0.30000000000000004};
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
        tfm_json_writer w;
        tfm_jw_init(&w, 0);
        tfm_jw_double(&w, ds[i]);
        ck_assert_int_eq(tfm_jw_finish(&w), 0);
        tfm_json *v = parse_ok(w.data);
        ck_assert_msg(v->number == ds[i] && signbit(v->number) == signbit(ds[i]), "%s != %.17g",
                      w.data, ds[i]);
        ck_assert_msg(strpbrk(w.data, ".e"), "%s would read back as an integer", w.data);
        tfm_json_free(v);
        tfm_jw_free(&w);
    }
    float fs[] = {0.1f, 1e-6f, 3.4028235e38f, 1.17549435e-38f, 16777216.0f, 0.3f};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) {
        tfm_json_writer w;
        tfm_jw_init(&w, 0);
        tfm_jw_float(&w, fs[i]);
        ck_assert_int_eq(tfm_jw_finish(&w), 0);
        ck_assert_msg(strlen(w.data) <= 16, "%s is not the shortest form", w.data);
        ck_assert((float)strtod(w.data, NULL) == fs[i]);
        tfm_jw_free(&w);
    }
}
END_TEST

START_TEST(writer_errors_are_sticky) {
    tfm_json_writer w;
    tfm_jw_init(&w, 0);
    tfm_jw_begin_array(&w);
    tfm_jw_double(&w, NAN);
    tfm_jw_int(&w, 1);
    tfm_jw_end_array(&w);
    ck_assert_int_ne(tfm_jw_finish(&w), 0);
    ck_assert_msg(strstr(tfm_last_error(), "non-finite number"), "%s", tfm_last_error());
    tfm_jw_free(&w);

    tfm_jw_init(&w, 0);
    tfm_jw_begin_object(&w);
    tfm_jw_int(&w, 1);
    ck_assert_int_ne(tfm_jw_finish(&w), 0);
    ck_assert_msg(strstr(tfm_last_error(), "without a key"), "%s", tfm_last_error());
    tfm_jw_free(&w);

    tfm_jw_init(&w, 0);
    tfm_jw_begin_array(&w);
    tfm_jw_string(&w, "bad \xC3(");
    tfm_jw_end_array(&w);
    ck_assert_int_ne(tfm_jw_finish(&w), 0);
    ck_assert_msg(strstr(tfm_last_error(), "not valid UTF-8 (byte 4)"), "%s", tfm_last_error());
    tfm_jw_free(&w);

    tfm_jw_init(&w, 0);
    tfm_jw_begin_array(&w);
    tfm_jw_end_object(&w);
    ck_assert_int_ne(tfm_jw_finish(&w), 0);
    ck_assert_msg(strstr(tfm_last_error(), "unbalanced end_object"), "%s", tfm_last_error());
    tfm_jw_free(&w);

    tfm_jw_init(&w, 1);
    tfm_jw_begin_object(&w);
    tfm_jw_key(&w, "a");
    ck_assert_int_ne(tfm_jw_finish(&w), 0);
    ck_assert_msg(strstr(tfm_last_error(), "incomplete document"), "%s", tfm_last_error());
    tfm_jw_free(&w);

    tfm_jw_init(&w, 0);
    tfm_jw_int(&w, 1);
    tfm_jw_int(&w, 2);
    ck_assert_int_ne(tfm_jw_finish(&w), 0);
    ck_assert_msg(strstr(tfm_last_error(), "second top-level value"), "%s", tfm_last_error());
    tfm_jw_free(&w);
}
END_TEST

START_TEST(save_and_parse_file) {
    const char *dir = tfm_test_tmpdir("json");
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    tfm_json_writer w;
    tfm_jw_init(&w, 1);
    tfm_jw_begin_object(&w);
    tfm_jw_key(&w, "vocab_size");
    tfm_jw_int(&w, 8000);
    tfm_jw_end_object(&w);
    ck_assert_msg(tfm_jw_save(&w, path) == 0, "%s", tfm_last_error());
    tfm_jw_free(&w);
    tfm_json *v;
    ck_assert_msg(tfm_json_parse_file(path, NULL, &v) == 0, "%s", tfm_last_error());
    int64_t n;
    ck_assert_int_eq(tfm_json_get_int64(v, "vocab_size", &n), 0);
    ck_assert_int_eq(n, 8000);
    tfm_json_free(v);
    /* Nothing but the file itself in the directory. */
    char out[4096];
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A %s", dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_str_eq(out, "config.json\n");

    /* Errors name the path. */
    snprintf(path, sizeof path, "%s/no/such/dir/config.json", dir);
    tfm_jw_init(&w, 0);
    tfm_jw_null(&w);
    ck_assert_int_ne(tfm_jw_save(&w, path), 0);
    ck_assert_msg(strstr(tfm_last_error(), path) && strstr(tfm_last_error(), "No such file"), "%s",
                  tfm_last_error());
    tfm_jw_free(&w);
    ck_assert_int_ne(tfm_json_parse_file(path, NULL, &v), 0);
    ck_assert_msg(strstr(tfm_last_error(), path) && strstr(tfm_last_error(), "cannot open"), "%s",
                  tfm_last_error());

    /* A parse error in a file names the file with line and column. */
    snprintf(path, sizeof path, "%s/bad.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"a\": [1, 2,]}", f);
    fclose(f);
    ck_assert_int_ne(tfm_json_parse_file(path, NULL, &v), 0);
    char want[600];
    snprintf(want, sizeof want, "%s:1:13: unexpected ']', expected a value (byte 12)", path);
    ck_assert_str_eq(tfm_last_error(), want);
}
END_TEST

int main(void) {
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("json");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, parses_a_config);
    tcase_add_test(tc, rejects_invalid_documents);
    tcase_add_test(tc, errors_give_line_column_and_byte);
    tcase_add_test(tc, decodes_escapes_and_surrogates);
    tcase_add_test(tc, depth_limit);
    tcase_add_test(tc, numbers);
    tcase_add_test(tc, duplicates_and_many_keys);
    tcase_add_test(tc, memory_cap);
    tcase_add_test(tc, writer_compact_and_pretty);
    tcase_add_test(tc, writer_numbers_round_trip);
    tcase_add_test(tc, writer_errors_are_sticky);
    tcase_add_test(tc, save_and_parse_file);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
