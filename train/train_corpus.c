/* tfm train on a parallel corpus: lands with the text pipeline. */
#include "commands.h"
#include "train_common.h"

int tfm_cmd_train_corpus(train_options *o, flag_def *flags, int n_flags) {
    (void)o;
    (void)flags;
    (void)n_flags;
    return tfm_cli_fail(2, "train: corpus training is not built yet");
}
