/* tfm/config.h: "key = value" configuration text (the --config files of the
 * tfm program; `tfm train --save DIR` writes DIR/config.txt in this format).
 *
 *     # a comment; blank lines are ignored
 *     d-model = 512
 *     lr-factor = 2.0   # trailing comments too
 *
 * A comment starts at a '#' at the start of a line or after a space or tab
 * (a '#' inside a word, as in the path "data#2.de", is part of the value).
 * Keys and values are trimmed of surrounding whitespace; the value may be
 * empty. Lines must be shorter than TFM_CONFIG_MAX_LINE bytes and must not
 * contain NUL bytes; a key may appear only once; a UTF-8 byte order mark at
 * the start is skipped. Each error names "<name>:<line>".
 *
 *     static int on_pair(const char *key, const char *value, const char *where, void *ctx) {
 *         if (strcmp(key, "steps")) return tfm_set_error("%s: unknown key '%s'", where, key), 1;
 *         ...
 *     }
 *     if (tfm_config_read("run.cfg", on_pair, NULL)) puts(tfm_last_error());
 */
#ifndef TFM_CONFIG_H
#define TFM_CONFIG_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TFM_CONFIG_MAX_LINE 4096

/* Called once per "key = value" line, in order; where is "<name>:<line>".
 * A non-zero return stops parsing and is returned (set the error first). */
typedef int (*tfm_config_fn)(const char *key, const char *value, const char *where, void *ctx);

/* Parses len bytes of text (no terminating NUL needed); name is used in
 * messages. 0 ok, else the callback's status or 1 with the error set. */
int tfm_config_parse(const char *text, size_t len, const char *name, tfm_config_fn fn, void *ctx);
/* Reads the file at path (at most 16 MB) and parses it. */
int tfm_config_read(const char *path, tfm_config_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif

#endif
