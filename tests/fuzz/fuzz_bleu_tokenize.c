/* libFuzzer target: the 13a tokenizer (with and without lowercasing), BLEU
 * of the input against itself, and the UTF-8 line reader, on arbitrary
 * bytes. Besides memory errors it checks what must hold for any input:
 * tokens are separated by exactly one space, the line reader accepts only
 * what it can score, and a segment scored against itself gets 100 (or 0
 * when it has fewer than four tokens).
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -D_DEFAULT_SOURCE \
 *     tests/fuzz/fuzz_bleu_tokenize.c src/eval/bleu.c src/core/base.c -lm -o fz */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/eval.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_bleu_tokenize: check failed: %s (line %d)\n", #cond, __LINE__);  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_tokens(const char *tok, size_t len) {
    CHECK(tok[len] == '\0');
    if (!len) return;
    CHECK(tok[0] != ' ' && tok[len - 1] != ' ');
    for (size_t i = 0; i + 1 < len; i++) CHECK(!(tok[i] == ' ' && tok[i + 1] == ' '));
    for (size_t i = 0; i < len; i++) CHECK(tok[i] != '\t' && tok[i] != '\n' && tok[i] != '\r');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int lc = 0; lc < 2; lc++) {
        char *tok = NULL;
        size_t len = 0;
        if (tfm_bleu_tokenize((const char *)data, size, lc, &tok, &len) == 0) {
            check_tokens(tok, len);
            free(tok);
        }
    }

    /* the input as one segment (up to its first NUL) against itself */
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    const char *hyps[1] = {text};
    const char *const *refs[1] = {hyps};
    tfm_bleu b;
    if (tfm_bleu_corpus(hyps, 1, refs, 1, (int)(size & 1), &b) == 0) {
        CHECK(b.hyp_len == b.ref_len);
        CHECK(b.score == 0.0 || fabs(b.score - 100.0) < 1e-9);
        CHECK(b.score == 0.0 ? b.hyp_len < 4 : b.hyp_len >= 4);
    }

    /* the line reader: any file either fails cleanly or gives lines that
     * hold no '\n' and that BLEU accepts */
    FILE *f = fmemopen(text, size ? size : 1, "rb");
    if (f) {
        tfm_eval_lines lines;
        if (size && tfm_eval_read_lines_fp(f, "<fuzz>", &lines) == 0) {
            for (int64_t i = 0; i < lines.n; i++) CHECK(!strchr(lines.lines[i], '\n'));
            if (lines.n > 1) {
                const char *const *ref_lines[1] = {(const char *const *)lines.lines + 1};
                CHECK(tfm_bleu_corpus((const char *const *)lines.lines, lines.n - 1, ref_lines, 1,
                                      0, &b) == 0);
                CHECK(b.score >= 0.0 && b.score <= 100.0 + 1e-9);
            }
            tfm_eval_lines_free(&lines);
        }
        fclose(f);
    }
    free(text);
    return 0;
}
