/* Decoding outputs pinned byte for byte: greedy and beam search (several beam
 * sizes and length penalties) on fixed models, compared with expected outputs
 * that the beam search of 2026-11-28 (before the batched rewrite) produced.
 *
 * Models: tests/fixtures/decode/numbers.tfm, a 2+2-layer d_model 32 model
 * trained 400 steps on the generated numbers corpus (`tfm data numbers`,
 * `tfm train ... --steps 400 --d-model 32 --heads 2 --d-ff 64 --layers 2
 * --bpe-merges 200 --share-emb --model-max-len 64`), on the first 96 test
 * sentences (ids in numbers_src.txt); and two random-init models (post-LN and
 * pre-LN) on generated id sequences.
 *
 * Regenerate the expected files (only when a change of output is intended
 * and explained in the commit): TFM_DECODE_REGEN=1 build/tests/test_decode */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/checkpoint.h"
#include "tfm/decode.h"
#include "tfm/nn.h"
#include "util_test.h"

typedef struct {
    int64_t n, S_max;
    int32_t *ids; /* (n, S_max), each row: tokens, </s>, pad */
    int64_t *len; /* tokens before </s> */
} sources;

static void sources_free(sources *s) {
    free(s->ids);
    free(s->len);
}

static void sources_alloc(sources *s, int64_t n, int64_t S_max) {
    s->n = n;
    s->S_max = S_max;
    s->ids = calloc((size_t)(n * S_max), sizeof(int32_t));
    s->len = calloc((size_t)n, sizeof(int64_t));
    ck_assert(s->ids && s->len);
}

/* Lines of space-separated ids (the output of `tfm bpe encode`). */
static void sources_from_file(sources *s, const char *rel, int64_t max_lines) {
    FILE *f = fopen(tfm_test_path(rel), "r");
    ck_assert_msg(f != NULL, "missing %s", rel);
    sources_alloc(s, max_lines, 32);
    char line[1024];
    int64_t n = 0;
    while (n < max_lines && fgets(line, sizeof line, f)) {
        char *p = line, *end;
        int64_t k = 0;
        for (long v = strtol(p, &end, 10); end != p; v = strtol(p, &end, 10)) {
            ck_assert_int_lt(k, s->S_max - 1);
            s->ids[n * s->S_max + k++] = (int32_t)v;
            p = end;
        }
        s->ids[n * s->S_max + k] = TFM_EOS_ID;
        s->len[n++] = k;
    }
    fclose(f);
    ck_assert_int_eq(n, max_lines);
}

/* n sequences of 1..max_len ids in [4, vocab) from a fixed LCG. */
static void sources_random(sources *s, int64_t n, int64_t max_len, int64_t vocab, uint64_t seed) {
    sources_alloc(s, n, max_len + 1);
    uint64_t x = seed;
    for (int64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int64_t len = 1 + (int64_t)((x >> 33) % (uint64_t)max_len);
        for (int64_t j = 0; j < len; j++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            s->ids[i * s->S_max + j] = (int32_t)(4 + (x >> 33) % (uint64_t)(vocab - 4));
        }
        s->ids[i * s->S_max + len] = TFM_EOS_ID;
        s->len[i] = len;
    }
}

typedef struct {
    int64_t beam; /* 0: tfm_greedy_decode */
    float alpha;
} decode_config;

static const decode_config CONFIGS[] = {{0, 0.0f}, {1, 0.6f}, {2, 0.6f}, {4, 0.6f},
                                        {5, 0.0f}, {5, 0.6f}, {5, 2.0f}};

typedef struct {
    char *buf;
    size_t len, cap;
} text;

static void text_printf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(text *t, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        ck_assert_int_ge(n, 0);
        if (t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        t->cap = t->cap * 2 + (size_t)n + 1024;
        t->buf = realloc(t->buf, t->cap);
        ck_assert_ptr_nonnull(t->buf);
    }
}

/* Decodes the sources in batches of `batch` in file order (mixed lengths, so
 * padding is exercised) with every configuration; one line per sentence:
 * "beam B alpha A #i len L: ids up to and including </s>". */
static void decode_all(tfm_model *m, const sources *s, int64_t batch, text *out) {
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, (size_t)64 << 20, 64), 0);
    int32_t *src = malloc((size_t)(batch * s->S_max) * sizeof(int32_t));
    uint8_t *pad = malloc((size_t)(batch * s->S_max));
    int32_t *hyp = malloc((size_t)(batch * (2 * s->S_max + 10)) * sizeof(int32_t));
    int64_t *lens = malloc((size_t)batch * sizeof(int64_t));
    ck_assert(src && pad && hyp && lens);
    for (size_t c = 0; c < sizeof CONFIGS / sizeof CONFIGS[0]; c++) {
        const decode_config *cfg = &CONFIGS[c];
        for (int64_t start = 0; start < s->n; start += batch) {
            int64_t rows = s->n - start < batch ? s->n - start : batch, S = 0;
            for (int64_t r = 0; r < rows; r++)
                if (s->len[start + r] + 1 > S) S = s->len[start + r] + 1;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < S; j++) {
                    src[r * S + j] = s->ids[(start + r) * s->S_max + j];
                    pad[r * S + j] = src[r * S + j] == TFM_PAD_ID;
                }
            int64_t max_out = 2 * S + 10;
            ck_assert_int_le(max_out + 1, m->cfg.max_len); /* no clamping here */
            int rc = cfg->beam ? tfm_beam_decode(m, &t, src, pad, rows, S, cfg->beam, cfg->alpha,
                                                 max_out, hyp, lens)
                               : tfm_greedy_decode(m, &t, src, pad, rows, S, max_out, hyp, lens);
            ck_assert_msg(rc == 0, "decode failed: %s", tfm_last_error());
            for (int64_t r = 0; r < rows; r++) {
                const int32_t *h = hyp + r * max_out;
                ck_assert(lens[r] >= 0 && lens[r] <= max_out);
                int64_t shown = lens[r] < max_out ? lens[r] + 1 : max_out;
                if (lens[r] < max_out) ck_assert_int_eq(h[lens[r]], TFM_EOS_ID);
                for (int64_t j = shown; j < max_out; j++) ck_assert_int_eq(h[j], TFM_PAD_ID);
                text_printf(out, "beam %lld alpha %.1f #%lld len %lld:", (long long)cfg->beam,
                            (double)cfg->alpha, (long long)(start + r), (long long)lens[r]);
                for (int64_t j = 0; j < shown; j++) text_printf(out, " %d", (int)h[j]);
                text_printf(out, "\n");
            }
        }
    }
    ck_assert_int_eq(t.arena.used, 0);
    free(src);
    free(pad);
    free(hyp);
    free(lens);
    tfm_tape_free(&t);
}

/* Byte-for-byte comparison with tests/fixtures/decode/<name>; with
 * TFM_DECODE_REGEN=1 writes the file instead. */
static void compare_expected(const text *got, const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/decode/%s", name);
    const char *path = tfm_test_path(rel);
    const char *regen = getenv("TFM_DECODE_REGEN");
    if (regen && !strcmp(regen, "1")) {
        FILE *f = fopen(path, "w");
        ck_assert_msg(f != NULL, "cannot write %s", path);
        ck_assert_int_eq(fwrite(got->buf, 1, got->len, f), got->len);
        ck_assert_int_eq(fclose(f), 0);
        printf("wrote %s (%zu bytes)\n", path, got->len);
        return;
    }
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "missing %s", path);
    text want = {0};
    char chunk[4096];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) text_printf(&want, "%.*s", (int)k, chunk);
    fclose(f);
    /* the first differing line, for the message */
    size_t i = 0;
    while (i < got->len && i < want.len && got->buf[i] == want.buf[i]) i++;
    if (i == got->len && i == want.len) {
        free(want.buf);
        return;
    }
    size_t line_start = i;
    while (line_start > 0 && want.buf[line_start - 1] != '\n') line_start--;
    int64_t line_no = 1;
    for (size_t j = 0; j < line_start; j++) line_no += want.buf[j] == '\n';
    const char *we = memchr(want.buf + line_start, '\n', want.len - line_start);
    const char *ge = memchr(got->buf + line_start, '\n', got->len - line_start);
    int wl = (int)(we ? we - (want.buf + line_start) : (long)(want.len - line_start));
    int gl = (int)(ge ? ge - (got->buf + line_start) : (long)(got->len - line_start));
    ck_abort_msg("%s line %lld differs:\n  want: %.*s\n  got:  %.*s", name, (long long)line_no, wl,
                 want.buf + line_start, gl, got->buf + line_start);
}

START_TEST(numbers_model_outputs_unchanged) {
    tfm_checkpoint ck;
    ck_assert_msg(tfm_checkpoint_read(tfm_test_path("tests/fixtures/decode/numbers.tfm"), &ck) == 0,
                  "%s", tfm_last_error());
    tfm_model m;
    ck_assert_msg(tfm_model_from_checkpoint(&m, &ck) == 0, "%s", tfm_last_error());
    tfm_checkpoint_free(&ck);
    sources s;
    sources_from_file(&s, "tests/fixtures/decode/numbers_src.txt", 96);
    text got = {0};
    decode_all(&m, &s, 16, &got);
    compare_expected(&got, "expected_numbers.txt");
    free(got.buf);
    sources_free(&s);
    tfm_model_free(&m);
}
END_TEST

static void random_model(tfm_model *m, int pre_ln, uint64_t seed) {
    tfm_model_config c;
    tfm_model_config_default(&c);
    c.vocab = 29;
    c.d_model = 24;
    c.n_heads = 3;
    c.d_ff = 40;
    c.enc_layers = 2;
    c.dec_layers = 2;
    c.max_len = 48;
    c.pre_ln = pre_ln;
    c.decoder_start = TFM_START_BOS; /* the expected outputs predate the zero start */
    ck_assert_int_eq(tfm_model_init(m, &c), 0);
    tfm_model_init_weights(m, seed);
}

START_TEST(random_models_outputs_unchanged) {
    sources s;
    sources_random(&s, 24, 12, 29, 7);
    text got = {0};
    for (int pre_ln = 0; pre_ln <= 1; pre_ln++) {
        tfm_model m;
        random_model(&m, pre_ln, 11 + (uint64_t)pre_ln);
        text_printf(&got, "# %s\n", pre_ln ? "pre-LN" : "post-LN");
        decode_all(&m, &s, 7, &got);
        tfm_model_free(&m);
    }
    compare_expected(&got, "expected_random.txt");
    free(got.buf);
    sources_free(&s);
}
END_TEST

/* Decodes sentences order[0..n) in batches of `batch` (rows padded to the
 * batch's longest), max_out fixed; out (n, max_out) and lens (n) by sentence. */
static void decode_ordered(tfm_model *m, const sources *s, const int64_t *order, int64_t batch,
                           int64_t beam, float alpha, int64_t max_out, int32_t *out,
                           int64_t *lens) {
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, (size_t)64 << 20, 64), 0);
    int32_t *src = malloc((size_t)(batch * s->S_max) * sizeof(int32_t));
    uint8_t *pad = malloc((size_t)(batch * s->S_max));
    int32_t *hyp = malloc((size_t)(batch * max_out) * sizeof(int32_t));
    int64_t *hl = malloc((size_t)batch * sizeof(int64_t));
    ck_assert(src && pad && hyp && hl);
    for (int64_t start = 0; start < s->n; start += batch) {
        int64_t rows = s->n - start < batch ? s->n - start : batch, S = 0;
        for (int64_t r = 0; r < rows; r++)
            if (s->len[order[start + r]] + 1 > S) S = s->len[order[start + r]] + 1;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < S; j++) {
                src[r * S + j] = s->ids[order[start + r] * s->S_max + j];
                pad[r * S + j] = src[r * S + j] == TFM_PAD_ID;
            }
        int rc = beam ? tfm_beam_decode(m, &t, src, pad, rows, S, beam, alpha, max_out, hyp, hl)
                      : tfm_greedy_decode(m, &t, src, pad, rows, S, max_out, hyp, hl);
        ck_assert_msg(rc == 0, "decode failed: %s", tfm_last_error());
        for (int64_t r = 0; r < rows; r++) {
            memcpy(out + order[start + r] * max_out, hyp + r * max_out,
                   (size_t)max_out * sizeof(int32_t));
            lens[order[start + r]] = hl[r];
        }
    }
    free(src);
    free(pad);
    free(hyp);
    free(hl);
    tfm_tape_free(&t);
}

static const int64_t *by_length(const sources *s, int64_t *order) {
    for (int64_t i = 0; i < s->n; i++) order[i] = i;
    for (int64_t i = 1; i < s->n; i++) /* stable insertion sort by length */
        for (int64_t j = i; j > 0 && s->len[order[j - 1]] > s->len[order[j]]; j--) {
            int64_t x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    return order;
}

/* Each sentence's output is the same whatever else is in its batch: file
 * order in batches of 7, length-sorted batches of 5, and all at once; and
 * beam 1 equals greedy. */
START_TEST(batching_and_order_do_not_change_outputs) {
    tfm_checkpoint ck;
    ck_assert_int_eq(tfm_checkpoint_read(tfm_test_path("tests/fixtures/decode/numbers.tfm"), &ck),
                     0);
    tfm_model models[2];
    ck_assert_int_eq(tfm_model_from_checkpoint(&models[0], &ck), 0);
    tfm_checkpoint_free(&ck);
    random_model(&models[1], 0, 11);
    sources srcs[2];
    sources_from_file(&srcs[0], "tests/fixtures/decode/numbers_src.txt", 40);
    sources_random(&srcs[1], 30, 12, 29, 7);
    enum { MO = 24 };
    for (int mi = 0; mi < 2; mi++) {
        const sources *s = &srcs[mi];
        int64_t *file_order = malloc((size_t)s->n * sizeof(int64_t));
        int64_t *sorted = malloc((size_t)s->n * sizeof(int64_t));
        int32_t *a = malloc((size_t)(s->n * MO) * sizeof(int32_t));
        int32_t *b = malloc((size_t)(s->n * MO) * sizeof(int32_t));
        int64_t *la = malloc((size_t)s->n * sizeof(int64_t));
        int64_t *lb = malloc((size_t)s->n * sizeof(int64_t));
        ck_assert(file_order && sorted && a && b && la && lb);
        for (int64_t i = 0; i < s->n; i++) file_order[i] = i;
        by_length(s, sorted);
        const int64_t beams[] = {0, 1, 4};
        for (int bi = 0; bi < 3; bi++) {
            decode_ordered(&models[mi], s, file_order, 7, beams[bi], 0.6f, MO, a, la);
            decode_ordered(&models[mi], s, sorted, 5, beams[bi], 0.6f, MO, b, lb);
            ck_assert_msg(!memcmp(a, b, (size_t)(s->n * MO) * sizeof(int32_t)) &&
                              !memcmp(la, lb, (size_t)s->n * sizeof(int64_t)),
                          "model %d beam %lld: length-sorted batches differ", mi,
                          (long long)beams[bi]);
            decode_ordered(&models[mi], s, file_order, s->n, beams[bi], 0.6f, MO, b, lb);
            ck_assert_msg(!memcmp(a, b, (size_t)(s->n * MO) * sizeof(int32_t)) &&
                              !memcmp(la, lb, (size_t)s->n * sizeof(int64_t)),
                          "model %d beam %lld: one batch differs", mi, (long long)beams[bi]);
            if (beams[bi] == 0) { /* keep greedy in b for the beam 1 comparison */
                int32_t *x = a;
                a = b;
                b = x;
                int64_t *y = la;
                la = lb;
                lb = y;
            }
            if (beams[bi] == 1)
                ck_assert_msg(!memcmp(a, b, (size_t)(s->n * MO) * sizeof(int32_t)) &&
                                  !memcmp(la, lb, (size_t)s->n * sizeof(int64_t)),
                              "model %d: beam 1 differs from greedy", mi);
        }
        free(file_order);
        free(sorted);
        free(a);
        free(b);
        free(la);
        free(lb);
        sources_free(&srcs[mi]);
        tfm_model_free(&models[mi]);
    }
}
END_TEST

/* Issue 16 item 17: when max_out exceeds what the model's positions allow
 * (max_len - 1), decoding stops there, but rows stay max_out apart (they were
 * written max_len - 1 apart, so the caller read shifted rows). */
START_TEST(rows_keep_their_stride_when_max_out_is_clamped) {
    tfm_model m;
    tfm_model_config c;
    tfm_model_config_default(&c);
    c.vocab = 20;
    c.d_model = 16;
    c.n_heads = 2;
    c.d_ff = 16;
    c.enc_layers = c.dec_layers = 1;
    c.max_len = 7;
    ck_assert_int_eq(tfm_model_init(&m, &c), 0);
    tfm_model_init_weights(&m, 21);
    sources s;
    sources_random(&s, 12, 5, 20, 3);
    int64_t *order = malloc((size_t)s.n * sizeof(int64_t));
    for (int64_t i = 0; i < s.n; i++) order[i] = i;
    enum { LIMIT = 6, WIDE = 15 };
    int32_t narrow[12 * LIMIT], wide[12 * WIDE];
    int64_t ln[12], lw[12];
    const int64_t beams[] = {0, 3};
    for (int bi = 0; bi < 2; bi++) {
        decode_ordered(&m, &s, order, 12, beams[bi], 0.6f, LIMIT, narrow, ln);
        decode_ordered(&m, &s, order, 12, beams[bi], 0.6f, WIDE, wide, lw);
        int64_t ran_out = 0;
        for (int64_t i = 0; i < s.n; i++) {
            ck_assert_int_eq(lw[i], ln[i]);
            ran_out += ln[i] == LIMIT;
            for (int64_t j = 0; j < LIMIT; j++)
                ck_assert_msg(wide[i * WIDE + j] == narrow[i * LIMIT + j],
                              "beam %lld row %lld position %lld: %d, want %d", (long long)beams[bi],
                              (long long)i, (long long)j, wide[i * WIDE + j],
                              narrow[i * LIMIT + j]);
            for (int64_t j = LIMIT; j < WIDE; j++) ck_assert_int_eq(wide[i * WIDE + j], TFM_PAD_ID);
        }
        if (beams[bi] == 0) ck_assert_int_gt(ran_out, 0); /* greedy reached the limit */
    }
    free(order);
    sources_free(&s);
    tfm_model_free(&m);
}
END_TEST

/* A source leaves the beam as soon as no live hypothesis can finish above its
 * best finished one (which cannot change its output: the outputs above stay
 * pinned to the old decoder's); on the numbers model without length penalty
 * that happens, so fewer rows are decoded than when every source waits for
 * `beam` finished ones. */
START_TEST(beam_lets_settled_sources_leave) {
    tfm_checkpoint ck;
    ck_assert_int_eq(tfm_checkpoint_read(tfm_test_path("tests/fixtures/decode/numbers.tfm"), &ck),
                     0);
    tfm_model m;
    ck_assert_int_eq(tfm_model_from_checkpoint(&m, &ck), 0);
    tfm_checkpoint_free(&ck);
    sources s;
    sources_from_file(&s, "tests/fixtures/decode/numbers_src.txt", 48);
    enum { MO = 40 };
    int64_t *order = malloc((size_t)s.n * sizeof(int64_t));
    int32_t *out = malloc((size_t)(s.n * MO) * sizeof(int32_t));
    int64_t *lens = malloc((size_t)s.n * sizeof(int64_t));
    ck_assert(order && out && lens);
    for (int64_t i = 0; i < s.n; i++) order[i] = i;
    const float alphas[] = {0.0f, 0.6f};
    for (int ai = 0; ai < 2; ai++) {
        tfm_decode_profile p;
        memset(&p, 0, sizeof p);
        tfm_decode_set_profile(&p);
        decode_ordered(&m, &s, order, 16, 5, alphas[ai], MO, out, lens);
        tfm_decode_set_profile(NULL);
        printf("  beam 5 alpha %.1f: %lld of %lld sources left early, %lld row-steps\n",
               (double)alphas[ai], (long long)p.early_stops, (long long)s.n,
               (long long)p.row_steps);
        /* with alpha > 0 the bound lp(max_out) is loose: few or none leave */
        if (alphas[ai] == 0.0f) ck_assert_int_gt(p.early_stops, 0);
        ck_assert_int_le(p.early_stops, s.n);
    }
    free(order);
    free(out);
    free(lens);
    sources_free(&s);
    tfm_model_free(&m);
}
END_TEST

/* Cached decoding follows the tape's precision: every step's logits equal
 * those of the whole decoder run over the prefix (tfm_model_decode) at that
 * position, bit for bit, in fp32 and in bf16 (the decoding attention once
 * ignored bf16 while the linear layers followed it). */
START_TEST(cached_decoding_follows_the_precision) {
    enum { B = 3, T = 7 };
    for (int pre_ln = 0; pre_ln <= 1; pre_ln++) {
        tfm_model m;
        random_model(&m, pre_ln, 31 + (uint64_t)pre_ln);
        const int64_t V = m.cfg.vocab;
        sources s;
        sources_random(&s, B, 9, V, 5);
        const int64_t S = s.S_max;
        uint8_t src_pad[B * 10];
        for (int64_t i = 0; i < B * S; i++) src_pad[i] = s.ids[i] == TFM_PAD_ID;
        int32_t prefix[B * T];
        uint8_t prefix_pad[B * T];
        for (int64_t i = 0; i < B * T; i++) {
            prefix[i] = i % T == 0 ? TFM_BOS_ID : (int32_t)(3 + (i * 7) % (V - 3));
            prefix_pad[i] = 0;
        }
        /* fp32, bf16, then both with the weights packed for bf16
         * (tfm_model_pack(m, TFM_BF16)): bf16 gives the same bits from the packed
         * copies, fp32 ignores them; then both with the weights packed for
         * fp32 instead (tfm_model_pack(m, TFM_FP32)): fp32 gives the same bits from
         * its packed copies, bf16 ignores them */
        float *got[6];
        for (int run = 0; run < 6; run++) {
            int prec = run & 1;
            if (run == 2) {
                ck_assert_int_eq(tfm_model_pack(&m, TFM_BF16), 0);
                ck_assert(tfm_model_packed(&m, TFM_BF16));
            }
            if (run == 4) {
                tfm_model_unpack(&m, TFM_BF16);
                ck_assert_int_eq(tfm_model_pack(&m, TFM_FP32), 0);
                ck_assert(tfm_model_packed(&m, TFM_FP32) && !tfm_model_packed(&m, TFM_BF16));
            }
            got[run] = malloc((size_t)(T * B * V) * sizeof(float));
            ck_assert_ptr_nonnull(got[run]);
            tfm_tape t;
            ck_assert_int_eq(tfm_tape_init(&t, (size_t)32 << 20, 64), 0);
            t.no_grad = 1;
            t.training = 0;
            t.precision = prec ? TFM_BF16 : TFM_FP32;
            tfm_tensor *mem = tfm_model_encode(&m, &t, s.ids, src_pad, B, S);
            ck_assert_ptr_nonnull(mem);
            tfm_kv_cache cache;
            ck_assert_int_eq(tfm_kv_cache_init(&cache, &m, B, S, T), 0);
            ck_assert_int_eq(tfm_kv_cache_start(&cache, &m, &t, mem, src_pad), 0);
            for (int64_t pos = 0; pos < T; pos++) {
                size_t mark = tfm_arena_mark(&t.arena);
                int32_t tokens[B], pre[B * T];
                for (int64_t b = 0; b < B; b++) {
                    tokens[b] = prefix[b * T + pos];
                    for (int64_t i = 0; i <= pos; i++) pre[b * (pos + 1) + i] = prefix[b * T + i];
                }
                tfm_tensor *step = tfm_model_decode_step(&m, &t, &cache, tokens);
                tfm_tensor *full = tfm_model_decode(&m, &t, mem, src_pad, pre, prefix_pad, pos + 1);
                ck_assert(step && full);
                for (int64_t b = 0; b < B; b++)
                    ck_assert_msg(!memcmp(step->data + b * V,
                                          full->data + (b * (pos + 1) + pos) * V,
                                          (size_t)V * sizeof(float)),
                                  "%s %s: position %lld row %lld: cached logits differ",
                                  pre_ln ? "pre-LN" : "post-LN", tfm_precision_name(t.precision),
                                  (long long)pos, (long long)b);
                memcpy(got[run] + pos * B * V, step->data, (size_t)(B * V) * sizeof(float));
                tfm_arena_rewind(&t.arena, mark);
            }
            tfm_kv_cache_free(&cache);
            tfm_tape_free(&t);
        }
        ck_assert_msg(memcmp(got[0], got[1], (size_t)(T * B * V) * sizeof(float)),
                      "bf16 decoding gave the fp32 logits");
        ck_assert_msg(!memcmp(got[3], got[1], (size_t)(T * B * V) * sizeof(float)),
                      "bf16 logits differ with the packed weights");
        ck_assert_msg(!memcmp(got[2], got[0], (size_t)(T * B * V) * sizeof(float)),
                      "fp32 logits differ with the weights packed for bf16");
        ck_assert_msg(!memcmp(got[4], got[0], (size_t)(T * B * V) * sizeof(float)),
                      "fp32 logits differ with the packed weights");
        ck_assert_msg(!memcmp(got[5], got[1], (size_t)(T * B * V) * sizeof(float)),
                      "bf16 logits differ with the weights packed for fp32");
        tfm_model_unpack(&m, TFM_FP32);
        ck_assert(!tfm_model_packed(&m, TFM_FP32));
        for (int run = 0; run < 6; run++) free(got[run]);
        sources_free(&s);
        tfm_model_free(&m);
    }
}
END_TEST

/* The decoders take their key/value cache from the tape's arena when it has
 * room (so that batch after batch reuses memory already mapped), else from
 * the heap, with the same outputs. */
START_TEST(cache_comes_from_the_arena_when_it_fits) {
    tfm_model m;
    random_model(&m, 0, 11);
    sources s;
    sources_random(&s, 6, 8, m.cfg.vocab, 3);
    const int64_t B = s.n, S = s.S_max, MO = 12, beam = 3;
    uint8_t pad[6 * 9];
    for (int64_t i = 0; i < B * S; i++) pad[i] = s.ids[i] == TFM_PAD_ID;
    int32_t out[2][6 * 12];
    int64_t lens[2][6];
    size_t need = tfm_kv_cache_bytes(&m, B * beam, S, MO + 1), peak_big = 0;
    ck_assert_int_gt(need, 0);
    for (int big = 1; big >= 0; big--) {
        tfm_tape t;
        /* small: room for what the decoding needs besides the cache, and half
         * the cache (the big run's peak minus the cache) */
        size_t cap = big ? need + tfm_model_activation_bytes(&m.cfg, B * beam, S, 2) + (1 << 20)
                         : peak_big - need / 2;
        ck_assert_int_eq(tfm_tape_init(&t, cap, 64), 0);
        tfm_kv_cache c;
        ck_assert_int_eq(tfm_kv_cache_init_in(&c, &m, B * beam, S, MO + 1, &t.arena), 0);
        char *k = (char *)c.self_k;
        ck_assert_int_eq(c.in_arena, k >= t.arena.base && k < t.arena.base + t.arena.cap);
        ck_assert_int_eq(c.in_arena, big);
        tfm_kv_cache_free(&c);
        tfm_arena_reset(&t.arena);
        t.arena.peak = 0;
        ck_assert_msg(
            tfm_beam_decode(&m, &t, s.ids, pad, B, S, beam, 0.6f, MO, out[big], lens[big]) == 0,
            "%s", tfm_last_error());
        if (big) {
            peak_big = t.arena.peak; /* the cache was in it: */
            ck_assert_int_gt(peak_big, need);
        } else {
            ck_assert_int_lt(t.arena.peak, peak_big - need / 2); /* it was not */
        }
        ck_assert_int_eq(t.arena.used, 0);
        tfm_tape_free(&t);
    }
    ck_assert(!memcmp(out[0], out[1], sizeof out[0]) && !memcmp(lens[0], lens[1], sizeof lens[0]));
    sources_free(&s);
    tfm_model_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("decode");
    TCase *tc = tcase_create("decode");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, numbers_model_outputs_unchanged);
    tcase_add_test(tc, random_models_outputs_unchanged);
    tcase_add_test(tc, batching_and_order_do_not_change_outputs);
    tcase_add_test(tc, rows_keep_their_stride_when_max_out_is_clamped);
    tcase_add_test(tc, beam_lets_settled_sources_leave);
    tcase_add_test(tc, cached_decoding_follows_the_precision);
    tcase_add_test(tc, cache_comes_from_the_arena_when_it_fits);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
