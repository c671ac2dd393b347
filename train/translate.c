/* Model loading and text decoding for tfm translate. */
#include "translate.h"

#include <string.h>

#include "commands.h"
#include "train_common.h"

int translate_main(const char *model_path, const char *input, const translate_options *o,
                   toy_translate_fn toy) {
    tfm_model m;
    tfm_kv meta;
    tfm_kv_init(&meta);
    if (train_load_model(model_path, &m, &meta)) return tfm_cli_fail(1, "%s", tfm_last_error());
    tfm_corpus_opts copts = {.max_line_bytes = 1 << 20, .allow_empty = 1, .allow_empty_file = 1};
    tfm_lines in;
    if (tfm_text_read_lines(input, &copts, &in)) return tfm_cli_fail(1, "%s", tfm_last_error());
    const char *kind = tfm_kv_get(&meta, "data.kind");
    int rc = 0;
    if (kind && !strcmp(kind, "toy")) {
        if (toy(&m, &in, o->batch)) rc = tfm_cli_fail(1, "%s", tfm_last_error());
    } else {
        rc = tfm_cli_fail(1, "%s: not a toy model, and text models are not supported yet", model_path);
    }
    tfm_lines_free(&in);
    tfm_kv_free(&meta);
    tfm_model_free(&m);
    return rc;
}
