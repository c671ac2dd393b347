/* libFuzzer target: arbitrary bytes as JSON. An accepted document must be
 * valid UTF-8, survive a round trip through the writer (compact and pretty)
 * with the same structure and values, and never crash an accessor. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/json.h"
#include "tfm/text.h"

static void emit(tfm_json_writer *w, const tfm_json *v) {
    int64_t i64;
    switch (v->type) {
    case TFM_JSON_NULL:
        tfm_jw_null(w);
        break;
    case TFM_JSON_BOOL:
        tfm_jw_bool(w, v->boolean);
        break;
    case TFM_JSON_NUMBER:
        if (tfm_json_as_int64(v, &i64) == 0)
            tfm_jw_int(w, i64);
        else
            tfm_jw_double(w, v->number);
        break;
    case TFM_JSON_STRING:
        tfm_jw_string_n(w, v->text, v->text_len);
        break;
    case TFM_JSON_ARRAY:
        tfm_jw_begin_array(w);
        for (int64_t i = 0; i < v->count; i++) emit(w, v->items[i]);
        tfm_jw_end_array(w);
        break;
    case TFM_JSON_OBJECT:
        tfm_jw_begin_object(w);
        for (int64_t i = 0; i < v->count; i++) {
            tfm_jw_key_n(w, v->keys[i], v->key_lens[i]);
            emit(w, v->items[i]);
        }
        tfm_jw_end_object(w);
        break;
    }
}

static int same(const tfm_json *a, const tfm_json *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case TFM_JSON_NULL:
        return 1;
    case TFM_JSON_BOOL:
        return a->boolean == b->boolean;
    case TFM_JSON_NUMBER:
        return a->number == b->number;
    case TFM_JSON_STRING:
        return a->text_len == b->text_len && !memcmp(a->text, b->text, a->text_len);
    case TFM_JSON_ARRAY:
    case TFM_JSON_OBJECT:
        if (a->count != b->count) return 0;
        for (int64_t i = 0; i < a->count; i++) {
            if (a->type == TFM_JSON_OBJECT && (a->key_lens[i] != b->key_lens[i] ||
                                               memcmp(a->keys[i], b->keys[i], a->key_lens[i])))
                return 0;
            if (!same(a->items[i], b->items[i])) return 0;
        }
        return 1;
    }
    return 0;
}

static void check_lookups(const tfm_json *v) {
    if (v->type == TFM_JSON_OBJECT) {
        for (int64_t i = 0; i < v->count; i++) {
            /* With duplicates allowed the first occurrence may win; the key
             * must be found either way. */
            if (!tfm_json_get_n(v, v->keys[i], v->key_lens[i])) abort();
        }
    }
    if (v->type == TFM_JSON_ARRAY || v->type == TFM_JSON_OBJECT) {
        if (tfm_json_len(v) != v->count) abort();
        if (v->type == TFM_JSON_ARRAY && v->count &&
            tfm_json_at(v, v->count - 1) != v->items[v->count - 1])
            abort();
        for (int64_t i = 0; i < v->count; i++) check_lookups(v->items[i]);
    }
    double d;
    int64_t i64;
    const char *s;
    int b;
    (void)tfm_json_as_double(v, &d);
    (void)tfm_json_as_int64(v, &i64);
    (void)tfm_json_as_string(v, &s, NULL);
    (void)tfm_json_as_bool(v, &b);
    (void)tfm_json_get_int64(v, "a", &i64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tfm_json *doc;
    tfm_json_options strict = {0, 0, 0}, loose = {16, 1, 0};
    int rc_strict = tfm_json_parse((const char *)data, size, &strict, "fuzz.json", &doc);
    if (rc_strict) {
        if (strchr(tfm_last_error(), '\n')) abort();
    } else {
        if (tfm_utf8_check((const char *)data, size, NULL) != 0) abort();
        check_lookups(doc);
        for (int pretty = 0; pretty <= 1; pretty++) {
            tfm_json_writer w;
            tfm_jw_init(&w, pretty);
            emit(&w, doc);
            if (tfm_jw_finish(&w)) abort();
            tfm_json *again;
            if (tfm_json_parse(w.data, w.len, &strict, "roundtrip", &again)) abort();
            if (!same(doc, again)) abort();
            tfm_json_free(again);
            tfm_jw_free(&w);
        }
        tfm_json_free(doc);
    }
    /* Duplicates allowed, shallower depth: accepting more keys may only turn
     * a duplicate-key rejection into success, never the other way round
     * (unless the depth limit bites). */
    if (tfm_json_parse((const char *)data, size, &loose, "fuzz.json", &doc) == 0) {
        check_lookups(doc);
        tfm_json_free(doc);
    } else if (rc_strict == 0 && !strstr(tfm_last_error(), "nesting deeper")) {
        abort();
    }
    return 0;
}
