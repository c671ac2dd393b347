/* tfm average: the element-wise mean of several checkpoints' weights
 * (tfm/average.h), given as files or as the newest N of a run directory
 * (tfm_run_newest_checkpoints, tfm/train.h). */
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "commands.h"
#include "flags.h"
#include "tfm/average.h"
#include "tfm/base.h"
#include "tfm/train.h"

static const char *USAGE = "tfm average --out FILE CKPT [CKPT ...]\n"
                           "       tfm average --out FILE --last N RUN_DIR\n"
                           "Writes the element-wise mean of the checkpoints' parameters (same "
                           "configuration required)";

enum { MAX_INPUTS = TFM_AVERAGE_MAX };

/* The text model beside checkpoint b (bpe.codes and vocab.txt of its
 * directory, as translate finds them) must be the one beside a: the same ids
 * mean the same pieces. 0 when they agree, or when either has none (toy runs,
 * a checkpoint copied on its own: nothing to compare). */
static int same_text_model(const char *a, const char *b) {
    static const char *const names[2] = {"bpe.codes", "vocab.txt"};
    char *da = tfm_model_text_dir(a), *db = tfm_model_text_dir(b);
    int rc = !da || !db;
    for (int k = 0; k < 2 && !rc && strcmp(da, db); k++) {
        char *pa = tfm_path_join(da, names[k]), *pb = tfm_path_join(db, names[k]);
        char *ta = NULL, *tb = NULL;
        size_t la = 0, lb = 0;
        int ha = pa && access(pa, F_OK) == 0, hb = pb && access(pb, F_OK) == 0;
        if (!pa || !pb)
            rc = 1;
        else if (ha && hb && (tfm_read_regular(pa, &ta, &la) || tfm_read_regular(pb, &tb, &lb)))
            rc = 1;
        else if (ha && hb && (la != lb || memcmp(ta, tb, la)))
            rc = 1, tfm_set_error("average: %s differs from %s: checkpoints trained with different "
                                  "%s cannot be averaged (the same ids would mean other pieces)",
                                  pb, pa, k ? "vocabularies" : "BPE codes");
        free(ta);
        free(tb);
        free(pa);
        free(pb);
    }
    free(da);
    free(db);
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
    char **pos = calloc(MAX_INPUTS + 1, sizeof *pos);
    if (!pos) return tfm_cli_fail(1, "average: out of memory");
    int n_pos = 0;
    /* one more than allowed, so that too many get their own message */
    int rc = flags_parse(flags, n_flags, argc, argv, USAGE, pos, MAX_INPUTS + 1, &n_pos);
    if (rc) {
        free(pos);
        return rc == 1 ? 0 : rc;
    }
    char **paths = NULL;
    int64_t n = 0;
    if (!out) {
        rc = tfm_cli_fail(2, "average: --out FILE is required");
    } else if (n_pos > MAX_INPUTS) {
        rc = tfm_cli_fail(2, "average: at most %d checkpoints", MAX_INPUTS);
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
        else if (tfm_run_newest_checkpoints(pos[0], last, paths))
            rc = tfm_cli_fail(1, "--last %lld: %s", (long long)last, tfm_last_error());
        n = last;
    } else if (n_pos == 0) {
        rc = tfm_cli_fail(2, "average: no checkpoint given (usage: %s)",
                          "tfm average --out FILE CKPT [CKPT ...]");
    } else {
        n = n_pos;
    }
    const char *const *in = paths ? (const char *const *)paths : (const char *const *)pos;
    /* the average has no optimizer state: written over an input it would
     * break the run that checkpoint belongs to (--resume refuses it) */
    for (int64_t i = 0; !rc && i < n; i++)
        if (cli_same_file(out, in[i]))
            rc = tfm_cli_fail(2, "--out %s: the same file as the checkpoint %s it averages", out,
                              in[i]);
    for (int64_t i = 1; !rc && i < n; i++)
        if (same_text_model(in[0], in[i])) rc = tfm_cli_fail(1, "%s", tfm_last_error());
    if (!rc && tfm_checkpoint_average(in, n, out)) rc = tfm_cli_fail(1, "%s", tfm_last_error());
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
