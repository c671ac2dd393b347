/* The copy and reverse toy tasks. */
#include "tfm/toy.h"

#include <string.h>

#include "tfm/nn.h" /* TFM_MAX_POSITIONS, TFM_MAX_VOCAB */

const char *tfm_toy_task_name(tfm_toy_task t) { return t == TFM_TOY_COPY ? "copy" : "reverse"; }

int tfm_toy_config_check(const tfm_toy_config *c) {
    int64_t first = c->annotated ? 1 : 3;
    if (c->vocab < first + 2) {
        tfm_set_error("--vocab %lld: need at least %lld (specials + 2 symbols)",
                      (long long)c->vocab, (long long)(first + 2));
        return 1;
    }
    if (c->min_len < 1 || c->max_len < c->min_len) {
        tfm_set_error("--min-len %lld / --max-len %lld: need 1 <= min <= max",
                      (long long)c->min_len, (long long)c->max_len);
        return 1;
    }
    if (c->annotated && c->max_len < 2) {
        tfm_set_error("--max-len must be at least 2 for the annotated copy task");
        return 1;
    }
    return 0;
}

int tfm_toy_batch_alloc(tfm_toy_batch *b, const tfm_toy_config *c, int64_t B) {
    memset(b, 0, sizeof *b);
    /* the shapes' products must fit: a batch of at most 2^24 sequences of at
     * most TFM_MAX_POSITIONS (tfm_toy_config_check) */
    if (B < 1 || B > (INT64_C(1) << 24))
        return tfm_set_error("toy batch %lld: must be between 1 and %lld", (long long)B,
                             (long long)(INT64_C(1) << 24)),
               1;
    if (tfm_toy_config_check(c)) return 1;
    if (c->max_len > TFM_MAX_POSITIONS)
        return tfm_set_error("toy max_len %lld: at most %lld", (long long)c->max_len,
                             (long long)TFM_MAX_POSITIONS),
               1;
    b->B = B;
    b->S = c->annotated ? c->max_len : c->max_len + 1;
    b->T = c->annotated ? c->max_len - 1 : c->max_len + 1;
    b->src = tfm_alloc((size_t)(B * b->S) * sizeof(int32_t));
    b->tgt_in = tfm_alloc((size_t)(B * b->T) * sizeof(int32_t));
    b->tgt_out = tfm_alloc((size_t)(B * b->T) * sizeof(int32_t));
    b->src_pad = tfm_alloc((size_t)(B * b->S));
    b->tgt_pad = tfm_alloc((size_t)(B * b->T));
    if (!b->src || !b->tgt_in || !b->tgt_out || !b->src_pad || !b->tgt_pad) {
        tfm_toy_batch_free(b);
        return 1;
    }
    return 0;
}

void tfm_toy_batch_free(tfm_toy_batch *b) {
    tfm_free(b->src);
    tfm_free(b->tgt_in);
    tfm_free(b->tgt_out);
    tfm_free(b->src_pad);
    tfm_free(b->tgt_pad);
    memset(b, 0, sizeof *b);
}

void tfm_toy_batch_fill(tfm_toy_batch *b, const tfm_toy_config *c, uint64_t seed, int64_t index) {
    tfm_rng rng;
    tfm_rng_seed(&rng, tfm_hash64(seed) ^ tfm_hash64((uint64_t)index + 0x1234567ull));
    int64_t S = b->S, T = b->T;
    b->n_tokens = 0;
    for (int64_t r = 0; r < b->B; r++) {
        int32_t *src = b->src + r * S, *tin = b->tgt_in + r * T, *tout = b->tgt_out + r * T;
        uint8_t *sp = b->src_pad + r * S, *tp = b->tgt_pad + r * T;
        if (c->annotated) {
            int64_t L = c->max_len;
            src[0] = 1;
            for (int64_t i = 1; i < L; i++)
                src[i] = 1 + (int32_t)tfm_rng_below(&rng, (uint64_t)(c->vocab - 1));
            for (int64_t i = 0; i < L - 1; i++) {
                tin[i] = src[i];
                tout[i] = src[i + 1];
                tp[i] = 0;
            }
            memset(sp, 0, (size_t)S);
            b->n_tokens += L - 1;
            continue;
        }
        int64_t L =
            c->min_len + (int64_t)tfm_rng_below(&rng, (uint64_t)(c->max_len - c->min_len + 1));
        for (int64_t i = 0; i < S; i++) {
            src[i] = i < L ? 3 + (int32_t)tfm_rng_below(&rng, (uint64_t)(c->vocab - 3)) : 0;
            sp[i] = i > L;
        }
        src[L] = 2;
        for (int64_t i = 0; i < T; i++) {
            tin[i] = tout[i] = 0;
            tp[i] = i > L;
        }
        tin[0] = 1;
        for (int64_t i = 0; i < L; i++) {
            int32_t y = c->task == TFM_TOY_COPY ? src[i] : src[L - 1 - i];
            tout[i] = y;
            tin[i + 1] = y;
        }
        tout[L] = 2;
        b->n_tokens += L + 1;
    }
}

int64_t tfm_toy_expected(const tfm_toy_batch *b, const tfm_toy_config *c, int64_t r, int32_t *out) {
    const int32_t *tout = b->tgt_out + r * b->T;
    int64_t n = 0;
    if (c->annotated) {
        for (int64_t i = 0; i < b->T; i++) out[n++] = tout[i];
        return n;
    }
    for (int64_t i = 0; i < b->T && tout[i] != 2; i++) out[n++] = tout[i];
    return n;
}
