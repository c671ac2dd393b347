/* Private to src/decode/: the profile being filled, if any; the length
 * check both searches share. */
#ifndef TFM_DECODE_INTERNAL_H
#define TFM_DECODE_INTERNAL_H

#include "tfm/decode.h"

tfm_decode_profile *tfm_decode_profile_active(void);
/* 0 when S (source length) and max_out are at least 1, else an error naming
 * who. */
int tfm_decode_check_lengths(const char *who, int64_t S, int64_t max_out);

#endif
