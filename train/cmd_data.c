/* tfm data: make the generated datasets (the numbers corpus). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "flags.h"
#include "tfm/atomic_file.h"
#include "tfm/base.h"
#include "tfm/data.h"
#include "tfm/train.h"

/* The six files are written beside their names and renamed into place only
 * when all are complete: a failure leaves --out as it was, never a corpus of
 * two seeds or a truncated split. */
static int write_corpus(const char *out, uint64_t seed, int64_t n_train, int64_t n_valid,
                        int64_t n_test) {
    tfm_numbers_corpus c;
    if (tfm_numbers_corpus_make(&c, seed, n_train, n_valid, n_test)) return 1;
    /* a failed write or commit cleans up its own file, and a file committed
     * or cleaned up is released: tfm_atomic_abort on it does nothing */
    tfm_atomic_file af[6];
    int opened = 0, rc = 0;
    for (; opened < 6 && !rc; opened++) {
        char *path = tfm_path_join(out, tfm_numbers_files[opened]);
        rc = !path || tfm_atomic_open(&af[opened], path);
        free(path);
        if (rc) break;
        rc = tfm_atomic_write(&af[opened], c.text[opened], c.len[opened]) != 0;
    }
    /* every file on disk before the first rename: then only a failed rename
     * (not a full disk or an I/O error) could leave some files replaced */
    for (int i = 0; i < 6 && !rc; i++)
        if (af[i].tmp_path && (fflush(af[i].f) != 0 || fsync(fileno(af[i].f)) != 0))
            rc = 1, tfm_set_error("%s: cannot write: %s", af[i].path, strerror(errno));
    for (int i = 0; i < 6 && !rc; i++) rc = tfm_atomic_commit(&af[i]) != 0;
    if (rc)
        for (int i = 0; i < opened; i++) tfm_atomic_abort(&af[i]);
    tfm_numbers_corpus_free(&c);
    return rc;
}

int tfm_cmd_data(int argc, char **argv) {
    const char *out = NULL;
    int64_t seed = 1, n_train = 8000, n_valid = 500, n_test = 500;
    int force = 0;
    flag_def flags[] = {
        {"out", FLAG_STR, &out, "output directory (train/valid/test .en and .de)", 0},
        {"seed", FLAG_INT, &seed, "random seed of the split", 0},
        {"train", FLAG_INT, &n_train, "training pairs", 0},
        {"valid", FLAG_INT, &n_valid, "validation pairs", 0},
        {"test", FLAG_INT, &n_test, "test pairs", 0},
        {"force", FLAG_BOOL, &force, "replace corpus files already in --out", 0},
    };
    char *pos[1];
    int n_pos = 0;
    int rc = flags_parse(flags, 6, argc, argv,
                         "tfm data numbers --out DIR [--train N --valid N --test N] [--force]", pos,
                         1, &n_pos);
    if (rc) return rc == 1 ? 0 : rc;
    if (n_pos != 1 || strcmp(pos[0], "numbers"))
        return tfm_cli_fail(
            2, "data: the only generated dataset is 'numbers' (tfm data numbers --out DIR)");
    if (!out) return tfm_cli_fail(2, "data numbers: --out DIR is required");
    int64_t total;
    if (n_train < 1 || n_valid < 0 || n_test < 0 || tfm_add_i64(n_train, n_valid, &total) ||
        tfm_add_i64(total, n_test, &total) || total > TFM_NUMBERS_MAX + 1)
        return tfm_cli_fail(2, "data numbers: need train >= 1 and train + valid + test <= %d",
                            TFM_NUMBERS_MAX + 1);
    /* train.en and the others are common names: a corpus of the user's own
     * in --out is not replaced without --force */
    for (int i = 0; i < 6 && !force; i++) {
        char *path = tfm_path_join(out, tfm_numbers_files[i]);
        if (!path) return tfm_cli_fail(1, "%s", tfm_last_error());
        int exists = access(path, F_OK) == 0;
        free(path);
        if (exists)
            return tfm_cli_fail(1, "--out %s: %s exists (use --force to replace the corpus files)",
                                out, tfm_numbers_files[i]);
    }
    if (tfm_make_dirs(out)) /* mkdir -p */
        return tfm_cli_fail(1, "--out %s: cannot create: %s", out, strerror(errno));
    if (write_corpus(out, (uint64_t)seed, n_train, n_valid, n_test))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    printf("wrote %s/{train,valid,test}.{en,de}: %lld / %lld / %lld pairs\n", out,
           (long long)n_train, (long long)n_valid, (long long)n_test);
    return 0;
}
