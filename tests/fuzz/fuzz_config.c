/* libFuzzer target: the "key = value" config parser (tfm_config_parse, used
 * for --config files) and the checkpoint metadata parser (tfm_kv_parse) on
 * the same bytes. Every pair handed out must be trimmed, comment-free (a
 * '#' after white space, or first, starts a comment) and one line; every error must be one line
 * naming "fuzz:<line>".
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -D_DEFAULT_SOURCE \
 *     tests/fuzz/fuzz_config.c $(ls src/\*\/\*.c | grep -v dist_mpi) -lm -o /tmp/fz
 * Seeds: tests/fuzz/corpus_config/. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/base.h"
#include "tfm/checkpoint.h"
#include "tfm/config.h"

typedef struct {
    long long last_line;
    int calls;
} state;

static int on_pair(const char *key, const char *value, const char *where, void *ctx) {
    state *st = ctx;
    size_t kn = strlen(key), vn = strlen(value);
    if (!kn || kn >= TFM_CONFIG_MAX_LINE || vn >= TFM_CONFIG_MAX_LINE) abort();
    if (isspace((unsigned char)key[0]) || isspace((unsigned char)key[kn - 1])) abort();
    if (vn && (isspace((unsigned char)value[0]) || isspace((unsigned char)value[vn - 1]))) abort();
    /* a '#' starts a comment at the start of a line or after white space:
     * elsewhere (paths such as data#2.de) it stays */
    if (key[0] == '#') abort();
    for (const char *t = key; t; t = t == key ? value : NULL)
        for (const char *h = strchr(t, '#'); h; h = strchr(h + 1, '#'))
            if (h > t && isspace((unsigned char)h[-1])) abort();
    if (strchr(key, '\n') || strchr(value, '\n')) abort();
    if (strchr(key, '=')) abort(); /* the key ends at the first '=' */
    /* where is "fuzz:<line>" with lines increasing */
    if (strncmp(where, "fuzz:", 5)) abort();
    char *end;
    long long line = strtoll(where + 5, &end, 10);
    if (*end || line <= st->last_line) abort();
    st->last_line = line;
    st->calls++;
    /* exercise the error path of the callback too */
    if (!strcmp(key, "stop")) return tfm_set_error("%s: stop", where), 3;
    return 0;
}

static void check_error(void) {
    const char *e = tfm_last_error();
    if (!e || !strcmp(e, "unknown error") || strchr(e, '\n') || strncmp(e, "fuzz:", 5)) abort();
    tfm_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    state st = {0, 0};
    int rc = tfm_config_parse((const char *)data, size, "fuzz", on_pair, &st);
    if (rc != 0 && rc != 1 && rc != 3) abort();
    if (rc) check_error();

    tfm_kv kv;
    tfm_kv_init(&kv);
    if (tfm_kv_parse(&kv, (const char *)data, size, "fuzz")) {
        check_error();
    } else {
        for (int64_t i = 0; i < kv.n; i++) {
            if (tfm_kv_get(&kv, kv.keys[i]) != kv.vals[i]) abort(); /* keys are unique */
            int64_t x;
            double f;
            uint64_t u;
            if (tfm_kv_get_i64(&kv, kv.keys[i], &x, "fuzz:0")) tfm_clear_error();
            if (tfm_kv_get_f64(&kv, kv.keys[i], &f, "fuzz:0")) tfm_clear_error();
            if (tfm_kv_get_u64(&kv, kv.keys[i], &u, "fuzz:0")) tfm_clear_error();
        }
    }
    tfm_kv_free(&kv);
    tfm_clear_error();
    return 0;
}
