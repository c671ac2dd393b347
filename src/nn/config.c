/* The model settings table (TFM_MODEL_SETTINGS in tfm/nn.h): defaults and
 * comparison. */
#include <string.h>

#include "tfm/nn.h"

void tfm_model_config_default(tfm_model_config *c) {
    memset(c, 0, sizeof *c);
#define X(type, field, flag, def, must_match, help) c->field = (TFM_SETTING_CTYPE_##type)(def);
    TFM_MODEL_SETTINGS(X)
#undef X
}

const char *tfm_model_config_differs(const tfm_model_config *a, const tfm_model_config *b,
                                     int resume_only) {
#define X(type, field, flag, def, must_match, help)                                                \
    if ((must_match || !resume_only) && a->field != b->field) return #field;
    TFM_MODEL_SETTINGS(X)
#undef X
    return NULL;
}

const char *tfm_decoder_start_name(int start) {
    return start == TFM_START_BOS ? "bos" : start == TFM_START_ZERO ? "zero" : NULL;
}

int tfm_decoder_start_parse(const char *name) {
    if (!strcmp(name, "bos")) return TFM_START_BOS;
    if (!strcmp(name, "zero")) return TFM_START_ZERO;
    return -1;
}
