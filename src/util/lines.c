/* Line iteration over a file or a buffer: see lines.h. */
#include "lines.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/base.h"

int tfm_each_line_file(const char *path, tfm_line_fn fn, void *ctx) {
    FILE *f = tfm_open_input(path);
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int64_t lineno = 0;
    int rc = 0;
    for (;;) {
        errno = 0;
        if ((got = getline(&line, &cap, f)) < 0) {
            /* the end, or out of memory for a long line (not the end: an error) */
            if (tfm_getline_error(f, path, lineno + 1, errno)) rc = -1;
            break;
        }
        size_t len = (size_t)got;
        if (len && line[len - 1] == '\n') len--;
        if ((rc = fn(ctx, line, len, path, ++lineno)) != 0) break;
    }
    free(line);
    fclose(f);
    return rc;
}

int tfm_each_line_mem(const char *data, size_t len, const char *name, tfm_line_fn fn, void *ctx) {
    size_t pos = 0;
    int64_t lineno = 0;
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        int rc = fn(ctx, data + pos, end - pos, name, ++lineno);
        if (rc) return rc;
        pos = end + 1;
    }
    return 0;
}
