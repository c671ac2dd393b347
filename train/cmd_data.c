/* tfm data: make the generated datasets (the numbers corpus). */
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "flags.h"
#include "tfm/data.h"

int tfm_cmd_data(int argc, char **argv) {
    const char *out = NULL;
    int64_t seed = 1, n_train = 8000, n_valid = 500, n_test = 500;
    flag_def flags[] = {
        {"out", FLAG_STR, &out, "output directory (train/valid/test .en and .de)", 0},
        {"seed", FLAG_INT, &seed, "random seed of the split", 0},
        {"train", FLAG_INT, &n_train, "training pairs", 0},
        {"valid", FLAG_INT, &n_valid, "validation pairs", 0},
        {"test", FLAG_INT, &n_test, "test pairs", 0},
    };
    char *pos[1];
    int n_pos = 0;
    int rc =
        flags_parse(flags, 5, argc, argv,
                    "tfm data numbers --out DIR [--train N --valid N --test N]", pos, 1, &n_pos);
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
    mkdir(out, 0777);
    if (tfm_numbers_corpus_write(out, (uint64_t)seed, n_train, n_valid, n_test))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    printf("wrote %s/{train,valid,test}.{en,de}: %lld / %lld / %lld pairs\n", out,
           (long long)n_train, (long long)n_valid, (long long)n_test);
    return 0;
}
