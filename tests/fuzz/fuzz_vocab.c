/* libFuzzer target: arbitrary bytes as a vocabulary file
 * (tfm_vocab_load_mem); a loaded vocabulary must map every token to its id
 * and back, and encode/decode a sample sentence through a fixed BPE model.
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -D_DEFAULT_SOURCE \
 *     tests/fuzz/fuzz_vocab.c src/data/\*.c src/core/base.c -lm -o /tmp/fz */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/base.h"
#include "tfm/text.h"

static const char CODES[] = "#version: 0.2\nl o\nlo w</w>\ne r</w>\nM \xC3\xA4\nM\xC3\xA4 d\n"
                            "c h\nch e\nche n</w>\n";
static const char SENTENCE[] = "low lower M\xC3\xA4"
                               "dchen <unk> x@@ y";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static tfm_bpe *bpe;
    if (!bpe && !(bpe = tfm_bpe_load_mem(CODES, strlen(CODES), "codes"))) abort();
    tfm_vocab *v = tfm_vocab_load_mem((const char *)data, size, "fuzz");
    if (!v) {
        if (!strcmp(tfm_last_error(), "unknown error")) abort();
        tfm_clear_error();
        return 0;
    }
    int32_t n = tfm_vocab_size(v);
    if (n < TFM_N_SPECIALS) abort();
    for (int32_t i = 0; i < n; i++) {
        const char *t = tfm_vocab_token(v, i);
        if (!t || tfm_vocab_id(v, t) != i) abort();
    }
    if (tfm_vocab_token(v, n) || tfm_vocab_token(v, -1)) abort();
    int32_t ids[64];
    int64_t k = tfm_vocab_encode(bpe, v, SENTENCE, strlen(SENTENCE), ids, 64);
    if (k < 0 || k > 64) abort();
    for (int64_t i = 0; i < k; i++)
        if (ids[i] < 0 || ids[i] >= n) abort();
    char *text = tfm_vocab_decode(v, ids, k);
    if (!text) abort();
    free(text);
    tfm_vocab_free(v);
    tfm_clear_error();
    return 0;
}
