/* Private to the library (src/, not include/): calling a function on every
 * line of a file or a buffer. */
#ifndef TFM_UTIL_LINES_H
#define TFM_UTIL_LINES_H

#include <stddef.h>
#include <stdint.h>

/* Calls fn on every line (without its '\n'; a trailing '\r' is kept) of a
 * file or buffer, with 1-based line numbers, stopping at the first non-zero
 * return, which is returned. A last line without '\n' counts; an empty
 * buffer has no lines. Opening/reading errors name the file. */
typedef int (*tfm_line_fn)(void *ctx, const char *line, size_t len, const char *name,
                           int64_t lineno);
int tfm_each_line_file(const char *path, tfm_line_fn fn, void *ctx);
int tfm_each_line_mem(const char *data, size_t len, const char *name, tfm_line_fn fn, void *ctx);

#endif
