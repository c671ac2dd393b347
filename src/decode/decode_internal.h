/* Private to src/decode/: the profile being filled, if any. */
#ifndef TFM_DECODE_INTERNAL_H
#define TFM_DECODE_INTERNAL_H

#include "tfm/decode.h"

tfm_decode_profile *tfm_decode_profile_active(void);

#endif
