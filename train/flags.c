#include "flags.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

flag_def *flags_find(flag_def *flags, int n_flags, const char *name) {
    for (int i = 0; i < n_flags; i++)
        if (!strcmp(flags[i].name, name)) return &flags[i];
    return NULL;
}

/* Strings from config files must outlive parsing: keep them for the process. */
static char *keep_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, s, n);
    return copy;
}

/* where: "--steps" or "file.cfg:3" for messages */
static int set_value(flag_def *f, const char *text, const char *where, int from_file) {
    char *end = NULL;
    errno = 0;
    switch (f->type) {
    case FLAG_INT: {
        long long v = strtoll(text, &end, 10);
        if (!*text || *end || errno)
            return tfm_cli_fail(2, "%s: '%s' is not an integer", where, text);
        *(int64_t *)f->value = v;
        break;
    }
    case FLAG_FLOAT: {
        double v = strtod(text, &end);
        if (!*text || *end || errno || !isfinite(v))
            return tfm_cli_fail(2, "%s: '%s' is not a number", where, text);
        *(double *)f->value = v;
        break;
    }
    case FLAG_STR:
        *(const char **)f->value = from_file ? keep_string(text) : text;
        break;
    case FLAG_BOOL:
        if (!strcmp(text, "1") || !strcmp(text, "true") || !strcmp(text, "yes"))
            *(int *)f->value = 1;
        else if (!strcmp(text, "0") || !strcmp(text, "false") || !strcmp(text, "no"))
            *(int *)f->value = 0;
        else
            return tfm_cli_fail(2, "%s: '%s' is not a boolean (true/false)", where, text);
        break;
    }
    f->set = 1;
    return 0;
}

int flags_read_config(flag_def *flags, int n_flags, const char *path) {
    FILE *fp = fopen(path, "r");
    if (!fp) return tfm_cli_fail(2, "%s: cannot open the config file", path);
    char line[4096];
    int64_t lineno = 0;
    int rc = 0;
    while (!rc && fgets(line, sizeof line, fp)) {
        lineno++;
        char where[512];
        snprintf(where, sizeof where, "%s:%lld", path, (long long)lineno);
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = tfm_cli_fail(2, "%s: line too long", where);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *s = line;
        while (isspace((unsigned char)*s)) s++;
        char *e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = tfm_cli_fail(2, "%s: expected 'key = value', got '%s'", where, s);
            break;
        }
        char *ke = eq;
        while (ke > s && isspace((unsigned char)ke[-1])) ke--;
        *ke = 0;
        char *v = eq + 1;
        while (isspace((unsigned char)*v)) v++;
        if (!strcmp(s, "config")) {
            rc = tfm_cli_fail(2, "%s: a config file cannot include another", where);
            break;
        }
        flag_def *f = flags_find(flags, n_flags, s);
        if (!f) {
            rc = tfm_cli_fail(2, "%s: unknown key '%s'", where, s);
            break;
        }
        if (f->set) continue; /* the command line wins */
        if (set_value(f, v, where, 1)) rc = 2;
        f->set = 0; /* still overridable by a later command-line flag */
    }
    fclose(fp);
    return rc;
}

void flags_help(FILE *f, const flag_def *flags, int n_flags, const char *usage) {
    fprintf(f, "usage: %s\n\noptions:\n", usage);
    for (int i = 0; i < n_flags; i++) {
        const flag_def *d = &flags[i];
        char def[64] = "";
        switch (d->type) {
        case FLAG_INT: snprintf(def, sizeof def, "%lld", (long long)*(int64_t *)d->value); break;
        case FLAG_FLOAT: snprintf(def, sizeof def, "%g", *(double *)d->value); break;
        case FLAG_STR:
            snprintf(def, sizeof def, "%s", *(const char **)d->value ? *(const char **)d->value : "none");
            break;
        case FLAG_BOOL: snprintf(def, sizeof def, "%s", *(int *)d->value ? "on" : "off"); break;
        }
        char name[48];
        snprintf(name, sizeof name, "--%s%s", d->name, d->type == FLAG_BOOL ? "" : " X");
        fprintf(f, "  %-24s %s (default: %s)\n", name, d->help, def);
    }
    fprintf(f, "  %-24s %s\n  %-24s %s\n", "--config FILE", "read 'key = value' lines; flags win",
            "--help", "this list");
}

int flags_parse(flag_def *flags, int n_flags, int argc, char **argv, const char *usage,
                char **pos, int max_pos, int *n_pos) {
    const char *config = NULL;
    if (n_pos) *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            flags_help(stdout, flags, n_flags, usage);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == 0) {
            if (!pos || !n_pos || *n_pos >= max_pos)
                return tfm_cli_fail(2, "unexpected argument '%s' (see --help)", arg);
            pos[(*n_pos)++] = argv[i];
            continue;
        }
        char name[128];
        const char *value = NULL;
        const char *eq = strchr(arg + 2, '=');
        size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (len >= sizeof name) return tfm_cli_fail(2, "unknown flag '%s' (see --help)", arg);
        memcpy(name, arg + 2, len);
        name[len] = 0;
        if (eq) value = eq + 1;
        if (!strcmp(name, "config")) {
            if (!value) {
                if (i + 1 >= argc) return tfm_cli_fail(2, "--config: missing file name");
                value = argv[++i];
            }
            config = value;
            continue;
        }
        flag_def *f = flags_find(flags, n_flags, name);
        if (!f) return tfm_cli_fail(2, "unknown flag '--%s' (see --help)", name);
        char where[160];
        snprintf(where, sizeof where, "--%s", name);
        if (f->type == FLAG_BOOL && !value) {
            *(int *)f->value = 1;
            f->set = 1;
            continue;
        }
        if (!value) {
            if (i + 1 >= argc) return tfm_cli_fail(2, "--%s: missing value", name);
            value = argv[++i];
        }
        if (set_value(f, value, where, 0)) return 2;
    }
    if (config && flags_read_config(flags, n_flags, config)) return 2;
    return 0;
}

void flags_write_config(FILE *f, const flag_def *flags, int n_flags) {
    for (int i = 0; i < n_flags; i++) {
        const flag_def *d = &flags[i];
        switch (d->type) {
        case FLAG_INT: fprintf(f, "%s = %lld\n", d->name, (long long)*(int64_t *)d->value); break;
        case FLAG_FLOAT: fprintf(f, "%s = %.17g\n", d->name, *(double *)d->value); break;
        case FLAG_STR:
            if (*(const char **)d->value) fprintf(f, "%s = %s\n", d->name, *(const char **)d->value);
            break;
        case FLAG_BOOL: fprintf(f, "%s = %s\n", d->name, *(int *)d->value ? "true" : "false"); break;
        }
    }
}
