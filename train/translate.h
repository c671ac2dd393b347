/* Shared by tfm translate and the trainer's validation: load a model (run
 * directory, checkpoint or export) and decode text. */
#ifndef TFM_TRAIN_TRANSLATE_H
#define TFM_TRAIN_TRANSLATE_H

#include "tfm/data.h"
#include "tfm/nn.h"
#include "tfm/text.h"

typedef struct {
    int64_t beam, batch, max_len;
    double alpha;
    int quiet;
} translate_options;

/* The subword model that goes with a text model: DIR/bpe.codes, DIR/vocab.txt. */
typedef struct {
    tfm_bpe *bpe;
    tfm_vocab *vocab;
} text_model;

int text_model_load(const char *dir, text_model *tm);
void text_model_free(text_model *tm);

/* Translates n sentences; out[i] receives a malloc'd string. Sentences are
 * decoded in batches of similar length; progress on stderr when it is a
 * terminal (unless quiet). */
int translate_lines(tfm_model *m, const text_model *tm, char *const *lines, int64_t n,
                    const translate_options *o, char **out);

typedef int (*toy_translate_fn)(tfm_model *m, const tfm_lines *in, int64_t batch);
int translate_main(const char *model_path, const char *input, const translate_options *o,
                   toy_translate_fn toy);

#endif
