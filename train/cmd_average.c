/* tfm average: the element-wise mean of several checkpoints' weights
 * (tfm/average.h), given as files or as the newest N of a run directory. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "flags.h"
#include "tfm/average.h"
#include "tfm/base.h"

static const char *USAGE = "tfm average --out FILE CKPT [CKPT ...]\n"
                           "       tfm average --out FILE --last N RUN_DIR\n"
                           "Writes the element-wise mean of the checkpoints' parameters (same "
                           "configuration required)";

enum { MAX_INPUTS = 4096 };

/* The step of "checkpoint-<digits>.tfm", else -1. */
static int64_t checkpoint_step(const char *name) {
    if (strncmp(name, "checkpoint-", 11)) return -1;
    const char *p = name + 11;
    int64_t step = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 18; p++, digits++) step = step * 10 + (*p - '0');
    return digits && !strcmp(p, ".tfm") ? step : -1;
}

typedef struct {
    int64_t step;
    char *name;
} ckpt_entry;

static int cmp_step(const void *a, const void *b) {
    int64_t x = ((const ckpt_entry *)a)->step, y = ((const ckpt_entry *)b)->step;
    return (x > y) - (x < y);
}

/* The newest n checkpoints of dir, oldest first, into paths (malloc'd). */
static int newest_checkpoints(const char *dir, int64_t n, char **paths) {
    DIR *d = opendir(dir);
    if (!d) return tfm_set_error("--last: %s: cannot open the run directory", dir), 1;
    ckpt_entry *list = NULL;
    int64_t count = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        int64_t s = checkpoint_step(e->d_name);
        if (s < 0) continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 64;
            ckpt_entry *grown = realloc(list, (size_t)cap * sizeof *list);
            if (!grown) {
                rc = 1;
                break;
            }
            list = grown;
        }
        list[count].step = s;
        list[count].name = strdup(e->d_name);
        if (!list[count++].name) rc = 1;
    }
    closedir(d);
    if (rc) {
        tfm_set_error("average: out of memory");
    } else if (count < n) {
        tfm_set_error("--last %lld: %s holds %lld checkpoint%s (checkpoint-<step>.tfm)",
                      (long long)n, dir, (long long)count, count == 1 ? "" : "s");
        rc = 1;
    } else {
        qsort(list, (size_t)count, sizeof *list, cmp_step);
        for (int64_t i = 0; i < n && !rc; i++) {
            const char *name = list[count - n + i].name;
            size_t len = strlen(dir) + strlen(name) + 2;
            if (!(paths[i] = malloc(len))) {
                tfm_set_error("average: out of memory");
                rc = 1;
            } else {
                snprintf(paths[i], len, "%s/%s", dir, name);
            }
        }
    }
    for (int64_t i = 0; i < count; i++) free(list[i].name);
    free(list);
    return rc;
}

int tfm_cmd_average(int argc, char **argv) {
    const char *out = NULL;
    int64_t last = 0;
    flag_def flags[] = {
        {"out", FLAG_STR, &out, "the averaged checkpoint to write", 0},
        {"last", FLAG_INT, &last, "average the newest N checkpoint-<step>.tfm of RUN_DIR", 0},
    };
    int n_flags = (int)(sizeof flags / sizeof flags[0]);
    char **pos = calloc(MAX_INPUTS, sizeof *pos);
    if (!pos) return tfm_cli_fail(1, "average: out of memory");
    int n_pos = 0;
    int rc = flags_parse(flags, n_flags, argc, argv, USAGE, pos, MAX_INPUTS, &n_pos);
    if (rc) {
        free(pos);
        return rc == 1 ? 0 : rc;
    }
    char **paths = NULL;
    int64_t n = 0;
    if (!out) {
        rc = tfm_cli_fail(2, "average: --out FILE is required");
    } else if (flags_find(flags, n_flags, "last")->set) {
        if (last < 1)
            rc = tfm_cli_fail(2, "--last: %lld: must be at least 1", (long long)last);
        else if (last > MAX_INPUTS)
            rc = tfm_cli_fail(2, "--last: %lld: at most %d checkpoints", (long long)last,
                              MAX_INPUTS);
        else if (n_pos != 1)
            rc = tfm_cli_fail(2, "average: --last N takes one run directory, not %d arguments",
                              n_pos);
        else if (!(paths = calloc((size_t)last, sizeof *paths)))
            rc = tfm_cli_fail(1, "average: out of memory");
        else if (newest_checkpoints(pos[0], last, paths))
            rc = tfm_cli_fail(1, "%s", tfm_last_error());
        n = last;
    } else if (n_pos == 0) {
        rc = tfm_cli_fail(2, "average: no checkpoint given (usage: %s)",
                          "tfm average --out FILE CKPT [CKPT ...]");
    } else {
        n = n_pos;
    }
    if (!rc && tfm_checkpoint_average(paths ? (const char *const *)paths : (const char *const *)pos,
                                      n, out))
        rc = tfm_cli_fail(1, "%s", tfm_last_error());
    if (!rc) {
        printf("averaged %lld checkpoint%s into %s:", (long long)n, n == 1 ? "" : "s", out);
        for (int64_t i = 0; i < n; i++) printf(" %s", paths ? paths[i] : pos[i]);
        printf("\n");
    }
    for (int64_t i = 0; paths && i < n; i++) free(paths[i]);
    free(paths);
    free(pos);
    return rc;
}
