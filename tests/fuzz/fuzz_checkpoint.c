/* libFuzzer target: the checkpoint reader (tfm_checkpoint_parse), then the
 * model config from its metadata (tfm_model_config_from_kv) and, when that
 * validates and the model is tiny, tfm_model_from_checkpoint.
 *
 * Input: one mode byte, then the file. Mode bit 0 clear: the rest is a file
 * body and the target appends the CRC-32C and end marker itself, so the
 * fuzzer explores the structure behind the checksum; set: the bytes are the
 * whole file as is (checksum and truncation paths).
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -D_DEFAULT_SOURCE \
 *     tests/fuzz/fuzz_checkpoint.c $(ls src/\*\/\*.c | grep -v dist_mpi) -lm -o /tmp/fz
 * Seeds: tests/fuzz/corpus_checkpoint/ (tiny real checkpoints, mode 0 and 1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/base.h"
#include "tfm/checkpoint.h"
#include "tfm/nn.h"

static void check_error(void) {
    const char *e = tfm_last_error();
    /* a real, one-line message naming the input */
    if (!e || !strcmp(e, "unknown error") || strchr(e, '\n') || strncmp(e, "fuzz", 4)) abort();
    tfm_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int as_is = data[0] & 1;
    data++, size--;
    unsigned char *file = malloc(size + 12);
    if (!file) return 0;
    memcpy(file, data, size);
    size_t n = size;
    if (!as_is) {
        uint32_t crc = tfm_crc32c(0, file, n);
        memcpy(file + n, &crc, 4);
        memcpy(file + n + 4, "TFMEND\0\0", 8);
        n += 12;
    }
    tfm_checkpoint ck;
    if (tfm_checkpoint_parse(file, n, "fuzz", &ck)) {
        check_error();
        free(file);
        return 0;
    }
    /* the parsed table must describe the data exactly */
    if (ck.n_tensors < 0 || ck.n_floats < 0) abort();
    size_t blocks = (size_t)ck.n_floats * 4 * (size_t)ck.n_blocks;
    if (ck.blocks < file || ck.blocks + blocks != file + n - 12) abort();
    int64_t total = 0;
    for (int64_t i = 0; i < ck.n_tensors; i++) {
        if (!ck.names[i] || !ck.names[i][0] || ck.ndims[i] < 1 || ck.ndims[i] > 4) abort();
        if (ck.offsets[i] != total) abort();
        int64_t count = 1;
        for (int d = 0; d < ck.ndims[i]; d++) count *= ck.shapes[i][d];
        total += count;
    }
    if (total != ck.n_floats) abort();
    for (int64_t i = 0; i < ck.meta.n; i++)
        if (strchr(ck.meta.keys[i], '\n') || strchr(ck.meta.vals[i], '\n')) abort();

    tfm_model_config c;
    if (tfm_model_config_from_kv(&c, &ck.meta, "fuzz")) {
        check_error();
    } else if (tfm_model_param_count(&c) <= 100000 && c.max_len <= 4096) {
        tfm_model m;
        if (tfm_model_from_checkpoint(&m, &ck)) {
            check_error();
        } else {
            /* every parameter came from the file: no tensor is missing */
            if (m.params.count != ck.n_tensors) abort();
            tfm_model_free(&m);
        }
    }
    tfm_checkpoint_free(&ck);
    free(file);
    tfm_clear_error();
    return 0;
}
