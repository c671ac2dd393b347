/* libFuzzer target: the metadata of a checkpoint whose CRC is valid. The
 * input is the "key = value" text; the target wraps it in a real tiny
 * checkpoint (the tensor table and weights of a vocab 8, d_model 8, 1+1
 * layer model) and recomputes the checksum, so every input reaches the
 * metadata parser, tfm_model_config_from_kv and tfm_model_from_checkpoint.
 * Unlike fuzz_checkpoint, nothing filters the configuration before the
 * model is built: crafted sizes (model.max_len 288230376151711745 once
 * overflowed max_len * d_model) must be refused by the library's own bounds.
 * Seeds: tests/fuzz/corpus_checkpoint_meta/ (the tiny model's metadata). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tfm/base.h"
#include "tfm/checkpoint.h"
#include "tfm/nn.h"

/* the checkpoint split around its metadata: head = magic, version, flags;
 * tail = tensor table and weights (without CRC and end marker) */
static unsigned char *tail;
static size_t tail_len;
static unsigned char head[16];

static void setup(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/fuzz-checkpoint-meta-%ld.tfm", (long)getpid());
    tfm_model_config c;
    tfm_model_config_default(&c);
    c.vocab = 8, c.d_model = 8, c.n_heads = 2, c.d_ff = 16, c.enc_layers = 1, c.dec_layers = 1;
    c.max_len = 16;
    tfm_model m;
    tfm_kv meta;
    tfm_kv_init(&meta);
    tfm_model_config_to_kv(&c, &meta);
    tfm_checkpoint ck;
    if (tfm_model_init(&m, &c) || tfm_checkpoint_save(path, &meta, &m.params, NULL, 0) ||
        tfm_checkpoint_read(path, &ck)) {
        fprintf(stderr, "fuzz_checkpoint_meta: setup failed: %s\n", tfm_last_error());
        abort();
    }
    uint64_t meta_len;
    memcpy(head, ck.buf, 16);
    memcpy(&meta_len, ck.buf + 16, 8);
    size_t start = 24 + (size_t)meta_len;
    tail_len = ck.size - 12 - start;
    tail = malloc(tail_len);
    memcpy(tail, ck.buf + start, tail_len);
    tfm_checkpoint_free(&ck);
    tfm_kv_free(&meta);
    tfm_model_free(&m);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tail) setup();
    size_t n = 24 + size + tail_len + 12;
    unsigned char *file = malloc(n);
    if (!file) return 0;
    uint64_t meta_len = size;
    memcpy(file, head, 16);
    memcpy(file + 16, &meta_len, 8);
    if (size) memcpy(file + 24, data, size);
    memcpy(file + 24 + size, tail, tail_len);
    uint32_t crc = tfm_crc32c(0, file, n - 12);
    memcpy(file + n - 12, &crc, 4);
    memcpy(file + n - 8, "TFMEND\0\0", 8);
    tfm_checkpoint ck;
    tfm_clear_error();
    if (tfm_checkpoint_parse(file, n, "fuzz", &ck)) {
        const char *e = tfm_last_error();
        if (!e || strncmp(e, "fuzz", 4) || strchr(e, '\n')) abort();
        free(file);
        return 0;
    }
    for (int64_t i = 0; i < ck.meta.n; i++)
        if (strchr(ck.meta.keys[i], '\n') || strchr(ck.meta.vals[i], '\n')) abort();
    tfm_model m;
    if (tfm_model_from_checkpoint(&m, &ck)) {
        const char *e = tfm_last_error();
        if (!e || strncmp(e, "fuzz", 4) || strchr(e, '\n')) abort();
    } else {
        /* only the tiny model's own configuration can match its tensors */
        if (m.cfg.vocab != 8 || m.cfg.d_model != 8 || m.cfg.d_ff != 16) abort();
        if (tfm_model_config_check(&m.cfg)) abort();
        tfm_model_free(&m);
    }
    tfm_checkpoint_free(&ck);
    free(file);
    return 0;
}
