/* "key = value" configuration text: see include/tfm/config.h. */
#include "tfm/config.h"
#include "tfm/text.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../util/buf.h"   /* tfm_grow, tfm_strdup */
#include "../util/lines.h" /* tfm_each_line_mem */
#include "tfm/base.h"

/* The keys seen so far with their line numbers: a key given twice is an
 * error (the second would silently win). */
typedef struct {
    char **key;
    int64_t *line;
    int64_t n, cap_key, cap_line;
} seen_keys;

static void seen_free(seen_keys *k) {
    for (int64_t i = 0; i < k->n; i++) free(k->key[i]);
    free(k->key);
    free(k->line);
}

/* 0 when new (and recorded), else the line of its first occurrence; -1 out of memory. */
static int64_t seen_add(seen_keys *k, const char *key, int64_t lineno) {
    for (int64_t i = 0; i < k->n; i++)
        if (!strcmp(k->key[i], key)) return k->line[i];
    if (tfm_grow((void **)&k->key, &k->cap_key, k->n + 1, sizeof *k->key) ||
        tfm_grow((void **)&k->line, &k->cap_line, k->n + 1, sizeof *k->line))
        return -1;
    char *copy = tfm_strdup(key);
    if (!copy) return -1;
    k->key[k->n] = copy;
    k->line[k->n++] = lineno;
    return 0;
}

typedef struct {
    tfm_config_fn fn;
    void *ctx;
    seen_keys seen;
} parse_ctx;

/* One line of tfm_config_parse: comment, blank, or "key = value". */
static int config_line(void *ctx, const char *text, size_t n, const char *name, int64_t lineno) {
    parse_ctx *p = ctx;
    char line[TFM_CONFIG_MAX_LINE];
    char where[512];
    snprintf(where, sizeof where, "%s:%lld", name, (long long)lineno);
    if (n >= sizeof line) {
        tfm_set_error("%s: line too long (over %d bytes)", where, TFM_CONFIG_MAX_LINE - 1);
        return 1;
    }
    if (memchr(text, 0, n)) {
        tfm_set_error("%s: NUL byte in the line", where);
        return 1;
    }
    memcpy(line, text, n);
    line[n] = 0;
    /* a comment starts at a '#' that begins the line or follows white space
     * (a space or tab, or \v \f \r), so that values such as paths may
     * contain '#' ("data#2.de") */
    for (char *h = line; (h = strchr(h, '#')) != NULL; h++)
        if (h == line || isspace((unsigned char)h[-1])) {
            *h = 0;
            break;
        }
    char *s = line;
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    if (!*s) return 0;
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
    int64_t first = seen_add(&p->seen, s, lineno);
    if (first < 0) return tfm_set_error("%s: out of memory", where), 1;
    if (first > 0) {
        tfm_set_error("%s: '%s' is set twice (first on line %lld)", where, s, (long long)first);
        return 1;
    }
    return p->fn(s, v, where, p->ctx);
}

int tfm_config_parse(const char *text, size_t len, const char *name, tfm_config_fn fn, void *ctx) {
    parse_ctx p = {fn, ctx, {0}};
    /* a UTF-8 byte order mark (editors on Windows write one) */
    size_t skip = tfm_utf8_bom_len(text, len);
    int rc = tfm_each_line_mem(text + skip, len - skip, name, config_line, &p);
    seen_free(&p.seen);
    return rc;
}

int tfm_config_read(const char *path, tfm_config_fn fn, void *ctx) {
    int not_regular;
    FILE *f = tfm_open_regular(path, &not_regular);
    if (!f && not_regular)
        return tfm_set_error("%s: the config file is not a regular file", path), 1;
    if (!f) return tfm_set_error("%s: cannot open the config file: %s", path, strerror(errno)), 1;
    struct stat st;
    if (fstat(fileno(f), &st)) {
        fclose(f);
        return tfm_set_error("%s: cannot read the config file: %s", path, strerror(errno)), 1;
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
