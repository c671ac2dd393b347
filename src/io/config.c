/* "key = value" configuration text: see include/tfm/config.h. */
#include "tfm/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tfm/base.h"

/* The keys seen so far with their line numbers: a key given twice is an
 * error (the second would silently win). */
typedef struct {
    char **key;
    long long *line;
    size_t n, cap;
} seen_keys;

static void seen_free(seen_keys *k) {
    for (size_t i = 0; i < k->n; i++) free(k->key[i]);
    free(k->key);
    free(k->line);
}

/* 0 when new (and recorded), else the line of its first occurrence; -1 out of memory. */
static long long seen_add(seen_keys *k, const char *key, long long lineno) {
    for (size_t i = 0; i < k->n; i++)
        if (!strcmp(k->key[i], key)) return k->line[i];
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 32;
        char **keys = realloc(k->key, cap * sizeof *keys);
        if (!keys) return -1;
        k->key = keys;
        long long *lines = realloc(k->line, cap * sizeof *lines);
        if (!lines) return -1;
        k->line = lines;
        k->cap = cap;
    }
    size_t n = strlen(key) + 1;
    char *copy = malloc(n);
    if (!copy) return -1;
    memcpy(copy, key, n);
    k->key[k->n] = copy;
    k->line[k->n++] = lineno;
    return 0;
}

static int parse(const char *text, size_t len, const char *name, tfm_config_fn fn, void *ctx,
                 seen_keys *seen) {
    char line[TFM_CONFIG_MAX_LINE];
    long long lineno = 0;
    size_t i = 0;
    /* a UTF-8 byte order mark (editors on Windows write one) */
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) i = 3;
    while (i < len) {
        size_t j = i;
        while (j < len && text[j] != '\n') j++;
        lineno++;
        size_t n = j - i;
        char where[512];
        snprintf(where, sizeof where, "%s:%lld", name, lineno);
        if (n >= sizeof line) {
            tfm_set_error("%s: line too long (over %d bytes)", where, TFM_CONFIG_MAX_LINE - 1);
            return 1;
        }
        if (memchr(text + i, 0, n)) {
            tfm_set_error("%s: NUL byte in the line", where);
            return 1;
        }
        memcpy(line, text + i, n);
        line[n] = 0;
        i = j + 1;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *s = line;
        while (isspace((unsigned char)*s)) s++;
        char *e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            /* quote at most a screenful of the offending line */
            tfm_set_error("%s: expected 'key = value', got '%.60s%s'", where, s,
                          strlen(s) > 60 ? "..." : "");
            return 1;
        }
        char *ke = eq;
        while (ke > s && isspace((unsigned char)ke[-1])) ke--;
        *ke = 0;
        char *v = eq + 1;
        while (isspace((unsigned char)*v)) v++;
        if (!*s) {
            tfm_set_error("%s: missing key before '='", where);
            return 1;
        }
        long long first = seen_add(seen, s, lineno);
        if (first < 0) return tfm_set_error("%s: out of memory", where), 1;
        if (first > 0) {
            tfm_set_error("%s: '%s' is set twice (first on line %lld)", where, s, first);
            return 1;
        }
        int rc = fn(s, v, where, ctx);
        if (rc) return rc;
    }
    return 0;
}

int tfm_config_parse(const char *text, size_t len, const char *name, tfm_config_fn fn, void *ctx) {
    seen_keys seen = {0};
    int rc = parse(text, len, name, fn, ctx, &seen);
    seen_free(&seen);
    return rc;
}

int tfm_config_read(const char *path, tfm_config_fn fn, void *ctx) {
    FILE *f = fopen(path, "rb");
    if (!f) return tfm_set_error("%s: cannot open the config file: %s", path, strerror(errno)), 1;
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fclose(f);
        return tfm_set_error("%s: the config file is not a regular file", path), 1;
    }
    if (st.st_size > (16 << 20)) {
        fclose(f);
        return tfm_set_error("%s: config file too large (%lld bytes)", path, (long long)st.st_size),
               1;
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size ? size : 1);
    if (!buf) {
        fclose(f);
        return tfm_set_error("%s: out of memory", path), 1;
    }
    size_t got = fread(buf, 1, size, f);
    fclose(f);
    if (got != size) {
        free(buf);
        return tfm_set_error("%s: cannot read the config file", path), 1;
    }
    int rc = tfm_config_parse(buf, size, path, fn, ctx);
    free(buf);
    return rc;
}
