#include "flags.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "tfm/base.h"
#include "tfm/config.h"

flag_def *flags_find(flag_def *flags, int n_flags, const char *name) {
    for (int i = 0; i < n_flags; i++)
        if (!strcmp(flags[i].name, name)) return &flags[i];
    return NULL;
}

/* Strings from config files must outlive parsing: keep them for the process,
 * listed here so they stay reachable (not leaks to LeakSanitizer). */
static char **g_kept;
static size_t g_n_kept, g_cap_kept;
static char *keep_string(const char *s) {
    if (g_n_kept == g_cap_kept) {
        size_t cap = g_cap_kept ? 2 * g_cap_kept : 16;
        char **list = realloc(g_kept, cap * sizeof *list);
        if (!list) return NULL;
        g_kept = list;
        g_cap_kept = cap;
    }
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, s, n), g_kept[g_n_kept++] = copy;
    return copy;
}

/* Checks text against f's type and stores it unless check_only. where:
 * "--steps" or "file.cfg:3" for messages. 0 ok, else 2 with the error set. */
static int convert_value(flag_def *f, const char *text, const char *where, int from_file,
                         int check_only) {
    char *end = NULL;
    errno = 0;
    switch (f->type) {
    case FLAG_INT: {
        long long v = strtoll(text, &end, 10);
        if (!*text || *end || errno)
            return tfm_set_error("%s: '%s' is not an integer", where, text), 2;
        if (!check_only) *(int64_t *)f->value = v;
        break;
    }
    case FLAG_FLOAT: {
        double v = strtod(text, &end);
        if (!*text || *end || errno || !isfinite(v))
            return tfm_set_error("%s: '%s' is not a number", where, text), 2;
        if (!check_only) *(double *)f->value = v;
        break;
    }
    case FLAG_F32: {
        double v = strtod(text, &end);
        if (!*text || *end || errno || !isfinite(v) || !isfinite((float)v))
            return tfm_set_error("%s: '%s' is not a number", where, text), 2;
        if (!check_only) *(float *)f->value = (float)v;
        break;
    }
    case FLAG_STR:
        /* an empty path would name the current or the root directory
         * ("" + "/train.en") */
        if (!*text)
            return from_file ? tfm_set_error("%s: '%s' has an empty value", where, f->name)
                             : tfm_set_error("%s: empty value", where),
                   2;
        if (!check_only) {
            const char *v = from_file ? keep_string(text) : text;
            if (!v) return tfm_set_error("%s: out of memory", where), 2;
            *(const char **)f->value = v;
        }
        break;
    case FLAG_LIST: {
        /* command line: one value per occurrence, as given (like FLAG_STR);
         * config file: one line of values separated by spaces (a key may
         * not repeat there) */
        flag_list *l = f->value;
        if (!from_file) {
            if (!*text) return tfm_set_error("%s: empty value", where), 2;
            if (l->n >= FLAG_LIST_MAX)
                return tfm_set_error("%s: given more than %d times", where, FLAG_LIST_MAX), 2;
            if (!check_only) l->items[l->n++] = text;
            break;
        }
        int n = l->n, added = 0;
        for (const char *p = text; *p;) {
            size_t len = strcspn(p, " \t");
            if (len == 0) {
                p++;
                continue;
            }
            if (n >= FLAG_LIST_MAX)
                return tfm_set_error("%s: more than %d values", where, FLAG_LIST_MAX), 2;
            n++, added++;
            if (!check_only) {
                char word[4096];
                if (len >= sizeof word) return tfm_set_error("%s: value too long", where), 2;
                memcpy(word, p, len);
                word[len] = 0;
                const char *v = keep_string(word);
                if (!v) return tfm_set_error("%s: out of memory", where), 2;
                l->items[l->n++] = v;
            }
            p += len;
        }
        if (!added) return tfm_set_error("%s: missing value", where), 2;
        break;
    }
    case FLAG_CHOICE: {
        const flag_choice *c = f->value;
        int v = 0;
        while (c->names[v] && strcmp(c->names[v], text)) v++;
        if (!c->names[v]) {
            char names[128] = "";
            for (int i = 0; c->names[i]; i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                         i ? " or " : "", c->names[i]);
            return tfm_set_error("%s: '%s' is not %s", where, text, names), 2;
        }
        if (!check_only) *c->index = v;
        break;
    }
    case FLAG_BOOL: {
        int v;
        if (!strcmp(text, "1") || !strcmp(text, "true") || !strcmp(text, "yes"))
            v = 1;
        else if (!strcmp(text, "0") || !strcmp(text, "false") || !strcmp(text, "no"))
            v = 0;
        else
            return tfm_set_error("%s: '%s' is not a boolean (true/false)", where, text), 2;
        if (!check_only) *(int *)f->value = v;
        break;
    }
    }
    return 0;
}

static int set_value(flag_def *f, const char *text, const char *where) {
    if (convert_value(f, text, where, 0, 0)) return tfm_cli_fail(2, "%s", tfm_last_error());
    f->set |= 1;
    return 0;
}

typedef struct {
    flag_def *flags;
    int n_flags;
} config_ctx;

/* Settings taken from a config file and where ("run.cfg:3"), so that a later
 * check of the value names the file and line instead of a flag the user
 * never typed (flags_file_origin). Copied: the flag tables live on stacks. */
typedef struct {
    const char *name, *where;
} file_origin;
static file_origin *g_origins;
static size_t g_n_origins, g_cap_origins;

static int note_origin(const char *name, const char *where) {
    if (g_n_origins == g_cap_origins) {
        size_t cap = g_cap_origins ? 2 * g_cap_origins : 32;
        file_origin *list = realloc(g_origins, cap * sizeof *list);
        if (!list) return 1;
        g_origins = list;
        g_cap_origins = cap;
    }
    const char *n = keep_string(name), *w = keep_string(where);
    if (!n || !w) return 1;
    g_origins[g_n_origins++] = (file_origin){n, w};
    return 0;
}

const char *flags_file_origin(const char *name, size_t len) {
    for (size_t i = 0; i < g_n_origins; i++)
        if (strlen(g_origins[i].name) == len && !strncmp(g_origins[i].name, name, len))
            return g_origins[i].where;
    return NULL;
}

static int config_pair(const char *key, const char *value, const char *where, void *ctx) {
    config_ctx *c = ctx;
    if (!strcmp(key, "config"))
        return tfm_set_error("%s: a config file cannot include another", where), 2;
    flag_def *f = flags_find(c->flags, c->n_flags, key);
    if (!f) return tfm_set_error("%s: unknown key '%s'", where, key), 2;
    /* The command line wins (bit 0 of f->set), but a malformed value in the
     * file is still an error; values taken from the file set bit 1. */
    int on_command_line = f->set & 1;
    if (!on_command_line) {
        f->set |= 2;
        if (note_origin(key, where)) return tfm_set_error("%s: out of memory", where), 2;
    }
    return convert_value(f, value, where, 1, on_command_line);
}

int flags_read_config(flag_def *flags, int n_flags, const char *path) {
    config_ctx c = {flags, n_flags};
    if (tfm_config_read(path, config_pair, &c)) return tfm_cli_fail(2, "%s", tfm_last_error());
    return 0;
}

void flags_help(FILE *f, const flag_def *flags, int n_flags, const char *usage) {
    flags_help_aliases(f, flags, n_flags, NULL, 0, usage);
}

void flags_help_aliases(FILE *f, const flag_def *flags, int n_flags, const flag_alias *aliases,
                        int n_aliases, const char *usage) {
    if (flags_help_roff)
        man_usage(f, usage);
    else
        fprintf(f, "usage: %s\n\noptions:\n", usage);
    for (int i = 0; i < n_flags; i++) {
        const flag_def *d = &flags[i];
        char def[64] = "";
        switch (d->type) {
        case FLAG_INT:
            snprintf(def, sizeof def, "%lld", (long long)*(int64_t *)d->value);
            break;
        case FLAG_FLOAT:
            snprintf(def, sizeof def, "%g", *(double *)d->value);
            break;
        case FLAG_F32:
            snprintf(def, sizeof def, "%g", (double)*(float *)d->value);
            break;
        case FLAG_STR:
            snprintf(def, sizeof def, "%s",
                     *(const char **)d->value ? *(const char **)d->value : "none");
            break;
        case FLAG_BOOL:
            snprintf(def, sizeof def, "%s", *(int *)d->value ? "on" : "off");
            break;
        case FLAG_CHOICE: {
            const flag_choice *c = d->value;
            snprintf(def, sizeof def, "%s", c->names[*c->index]);
            break;
        }
        case FLAG_LIST: {
            const flag_list *l = d->value;
            snprintf(def, sizeof def, "%s", l->n ? l->items[0] : "none");
            break;
        }
        }
        char name[48], also[128] = "", help[640];
        snprintf(name, sizeof name, "--%s%s", d->name, d->type == FLAG_BOOL ? "" : " X");
        for (int a = 0; a < n_aliases; a++) /* "(also -c, --output)" */
            if (!strcmp(aliases[a].name, d->name)) {
                size_t used = strlen(also);
                snprintf(also + used, sizeof also - used, "%s%s", used ? ", " : " (also ",
                         aliases[a].spelling);
            }
        snprintf(help, sizeof help, "%s%s%s", d->help, also, *also ? ")" : "");
        if (flags_help_roff)
            man_flag(f, name, help, def);
        else
            fprintf(f, "  %-24s %s (default: %s)\n", name, help, def);
    }
    if (flags_help_roff) {
        man_flag(f, "--config FILE", "read 'key = value' lines; flags win", NULL);
        man_flag(f, "--help", "print the options", NULL);
        return;
    }
    fprintf(f, "  %-24s %s\n  %-24s %s\n", "--config FILE", "read 'key = value' lines; flags win",
            "--help", "this list");
}

int flags_parse(flag_def *flags, int n_flags, int argc, char **argv, const char *usage, char **pos,
                int max_pos, int *n_pos) {
    return flags_parse_aliases(flags, n_flags, NULL, 0, argc, argv, usage, pos, max_pos, n_pos);
}

int flags_parse_aliases(flag_def *flags, int n_flags, const flag_alias *aliases, int n_aliases,
                        int argc, char **argv, const char *usage, char **pos, int max_pos,
                        int *n_pos) {
    const char *config = NULL;
    int options_done = 0;
    if (n_pos) *n_pos = 0;
    g_n_origins = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && (!strcmp(arg, "--help") || !strcmp(arg, "-h"))) {
            flags_help_aliases(stdout, flags, n_flags, aliases, n_aliases, usage);
            return 1;
        }
        if (!options_done && !strcmp(arg, "--")) {
            options_done = 1;
            continue;
        }
        /* the spelling as typed (for messages) and the value after '=' */
        char spelt[128];
        const char *value = NULL;
        const char *eq = strncmp(arg, "--", 2) ? NULL : strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (eq) value = eq + 1;
        snprintf(spelt, sizeof spelt, "%.*s", (int)len, arg);
        const char *name = NULL;
        for (int a = 0; !options_done && a < n_aliases && !name; a++)
            if (strlen(aliases[a].spelling) == len && !strncmp(arg, aliases[a].spelling, len))
                name = aliases[a].name;
        if (!name && (options_done || arg[0] != '-' || !arg[1] ||
                      (arg[1] != '-' && (!pos || !n_pos || !max_pos)))) {
            /* positional ("-" is stdin; a lone "-x" is one where none are taken) */
            if (!pos || !n_pos || *n_pos >= max_pos)
                return tfm_cli_fail(2, "unexpected argument '%s' (see --help)", arg);
            /* every positional names a file or directory: "" would be the
             * current or, joined with a name, the root directory */
            if (!arg[0]) return tfm_cli_fail(2, "argument %d: empty (names no file)", *n_pos + 1);
            pos[(*n_pos)++] = argv[i];
            continue;
        }
        if (!name && (arg[1] != '-' || len >= sizeof spelt))
            return tfm_cli_fail(2, "unknown flag '%s' (see --help)", arg);
        if (!name) name = spelt + 2;
        if (!strcmp(name, "config")) {
            if (!value) {
                if (i + 1 >= argc) return tfm_cli_fail(2, "%s: missing file name", spelt);
                value = argv[++i];
            }
            /* a second file would silently override the first */
            if (config)
                return tfm_cli_fail(2, "--config: given twice (%s, %s): use one file", config,
                                    value);
            config = value;
            continue;
        }
        flag_def *f = flags_find(flags, n_flags, name);
        if (!f) return tfm_cli_fail(2, "unknown flag '%s' (see --help)", spelt);
        if (f->type == FLAG_BOOL && !value) {
            *(int *)f->value = 1;
            f->set |= 1;
            continue;
        }
        if (!value) {
            if (i + 1 >= argc) return tfm_cli_fail(2, "%s: missing value", spelt);
            value = argv[++i];
            /* "--save --quiet": the value was forgotten (--save=--x is explicit) */
            if (!strncmp(value, "--", 2) && value[2])
                return tfm_cli_fail(2, "--%s: missing value (the next argument, '%s', is a flag)",
                                    name, value);
        }
        if (set_value(f, value, spelt)) return 2;
    }
    if (config && flags_read_config(flags, n_flags, config)) return 2;
    return 0;
}

/* Whether flags_read_config would read text back as it is: no line break,
 * no space at either end, no '#' that starts a comment; list items (split
 * at spaces) no whitespace at all. */
static const char *unrecordable(const char *text, int list_item) {
    size_t n = strlen(text);
    if (strpbrk(text, "\n\r")) return "a line break";
    if (list_item && strpbrk(text, " \t\v\f")) return "a space";
    if (n && (isspace((unsigned char)text[0]) || isspace((unsigned char)text[n - 1])))
        return "a space at either end";
    for (const char *h = strchr(text, '#'); h; h = strchr(h + 1, '#'))
        if (h == text || isspace((unsigned char)h[-1])) return "a '#' that would start a comment";
    return NULL;
}

int flags_check_recordable(const flag_def *flags, int n_flags) {
    for (int i = 0; i < n_flags; i++) {
        const flag_def *d = &flags[i];
        const char *why = NULL, *value = NULL;
        if (d->type == FLAG_STR && *(const char **)d->value) {
            value = *(const char **)d->value;
            why = unrecordable(value, 0);
        } else if (d->type == FLAG_LIST) {
            const flag_list *l = d->value;
            for (int k = 0; k < l->n && !why; k++) why = unrecordable(value = l->items[k], 1);
        }
        /* the value quoted unless it would break the message's one line */
        if (why)
            return tfm_cli_fail(2,
                                "--%s%s%s%s: config.txt could not record a value with %s (rename "
                                "the file or directory)",
                                d->name, strpbrk(value, "\n\r") ? "" : " '",
                                strpbrk(value, "\n\r") ? "" : value,
                                strpbrk(value, "\n\r") ? "" : "'", why);
    }
    return 0;
}

void flags_write_config(FILE *f, const flag_def *flags, int n_flags) {
    for (int i = 0; i < n_flags; i++) {
        const flag_def *d = &flags[i];
        switch (d->type) {
        case FLAG_INT:
            fprintf(f, "%s = %lld\n", d->name, (long long)*(int64_t *)d->value);
            break;
        case FLAG_FLOAT:
            fprintf(f, "%s = %.17g\n", d->name, *(double *)d->value);
            break;
        case FLAG_F32:
            fprintf(f, "%s = %.9g\n", d->name, (double)*(float *)d->value);
            break;
        case FLAG_STR:
            if (*(const char **)d->value)
                fprintf(f, "%s = %s\n", d->name, *(const char **)d->value);
            break;
        case FLAG_BOOL:
            fprintf(f, "%s = %s\n", d->name, *(int *)d->value ? "true" : "false");
            break;
        case FLAG_CHOICE: {
            const flag_choice *c = d->value;
            fprintf(f, "%s = %s\n", d->name, c->names[*c->index]);
            break;
        }
        case FLAG_LIST: {
            const flag_list *l = d->value;
            if (!l->n) break;
            fprintf(f, "%s =", d->name);
            for (int k = 0; k < l->n; k++) fprintf(f, " %s", l->items[k]);
            fputc('\n', f);
            break;
        }
        }
    }
}
