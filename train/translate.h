/* Shared by tfm translate and the trainer's validation: load a model (run
 * directory, checkpoint or export) and decode text. */
#ifndef TFM_TRAIN_TRANSLATE_H
#define TFM_TRAIN_TRANSLATE_H

#include "tfm/data.h"
#include "tfm/nn.h"

typedef struct {
    int64_t beam, batch, max_len;
    double alpha;
    int quiet;
} translate_options;

typedef int (*toy_translate_fn)(tfm_model *m, const tfm_lines *in, int64_t batch);
int translate_main(const char *model_path, const char *input, const translate_options *o,
                   toy_translate_fn toy);

#endif
