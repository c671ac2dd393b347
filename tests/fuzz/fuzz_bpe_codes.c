/* libFuzzer target: arbitrary bytes as a BPE codes file (tfm_bpe_load_mem),
 * then applied to sample sentences; and, when the bytes are valid text, as
 * a corpus to learn from. Both paths check the round trip
 * detok(segment(line)) == line with normalised whitespace, aborting on a
 * mismatch so that the fuzzer reports it.
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -D_DEFAULT_SOURCE \
 *     tests/fuzz/fuzz_bpe_codes.c src/data/\*.c src/core/base.c -lm -o /tmp/fz */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/base.h"
#include "tfm/text.h"

static const char *const SAMPLES[] = {
    ("Ein kleines M\xC3\xA4"
     "dchen klettert in ein Spielhaus aus Holz ."),
    "low lower newest widest lowest",
    "a@@ @@ @@~ x</w> </w> \xF0\x9F\x98\x80 \xE2\x82\xAC@@b",
    "  spaced\tout \r text  ",
    "",
};

/* The line with ASCII whitespace runs collapsed to single spaces. */
static size_t normalise(const char *in, size_t n, char *out) {
    size_t o = 0, i = 0;
    while (i < n) {
        while (i < n && tfm_text_is_space((unsigned char)in[i])) i++;
        if (i == n) break;
        if (o) out[o++] = ' ';
        while (i < n && !tfm_text_is_space((unsigned char)in[i])) out[o++] = in[i++];
    }
    out[o] = 0;
    return o;
}

static void check_round_trip(tfm_bpe *b, const char *line, size_t n) {
    tfm_subwords sw = {0};
    if (tfm_bpe_segment(b, line, n, &sw) != 0) {
        tfm_subwords_free(&sw);
        return; /* invalid UTF-8 or NUL: rejected, nothing to check */
    }
    size_t cap = 2 * n + 3 * (size_t)sw.n + 16, o = 0;
    char *joined = malloc(cap), *back = malloc(cap), *want = malloc(n + 1);
    for (int64_t i = 0; i < sw.n; i++) {
        const char *t = tfm_subwords_get(&sw, i);
        size_t l = strlen(t);
        if (o + l + 2 > cap) abort();
        if (i) joined[o++] = ' ';
        memcpy(joined + o, t, l);
        o += l;
    }
    size_t bn = tfm_bpe_detok(joined, o, back);
    size_t wn = normalise(line, n, want);
    if (bn != wn || memcmp(back, want, wn) != 0) {
        fprintf(stderr, "round trip differs:\n in  '%s'\n bpe '%.*s'\n out '%s'\n", want, (int)o,
                joined, back);
        abort();
    }
    free(joined);
    free(back);
    free(want);
    tfm_subwords_free(&sw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    tfm_bpe *b = tfm_bpe_load_mem(text, size, "fuzz");
    if (b) {
        for (size_t i = 0; i < sizeof SAMPLES / sizeof SAMPLES[0]; i++)
            check_round_trip(b, SAMPLES[i], strlen(SAMPLES[i]));
        /* The codes' own bytes as a sentence: symbols meet their merges. */
        check_round_trip(b, text, size);
        tfm_bpe_free(b);
    } else if (!strcmp(tfm_last_error(), "unknown error")) {
        abort(); /* a failure must say why */
    }
    tfm_clear_error();
    b = tfm_bpe_learn_text(text, size, "fuzz", 40, 1);
    if (b) {
        size_t pos = 0;
        while (pos < size) {
            const char *nl = memchr(text + pos, '\n', size - pos);
            size_t end = nl ? (size_t)(nl - text) : size;
            check_round_trip(b, text + pos, end - pos);
            pos = end + 1;
        }
        tfm_bpe_free(b);
    }
    tfm_clear_error();
    return 0;
}
