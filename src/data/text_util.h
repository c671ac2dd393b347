/* Private to src/data: what BPE and the vocabulary share beyond src/util
 * (hash maps, growable arrays, line iteration), which this header brings in. */
#ifndef TFM_DATA_TEXT_UTIL_H
#define TFM_DATA_TEXT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "../util/buf.h"
#include "../util/hash.h"
#include "../util/lines.h"
#include "tfm/text.h"

/* tfm_text_check_line and tfm_utf8_bom_len: tfm/text.h */

/* The tfm_bpe's own subword list, reused by tfm_vocab_encode. */
struct tfm_bpe;
tfm_subwords *tfm_bpe_scratch_(struct tfm_bpe *b);

#endif
