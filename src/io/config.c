/* "key = value" configuration text: see include/tfm/config.h. */
#include "tfm/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tfm/base.h"

int tfm_config_parse(const char *text, size_t len, const char *name, tfm_config_fn fn, void *ctx) {
    char line[TFM_CONFIG_MAX_LINE];
    long long lineno = 0;
    size_t i = 0;
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
        int rc = fn(s, v, where, ctx);
        if (rc) return rc;
    }
    return 0;
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
