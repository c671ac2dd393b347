/* Model loading and text decoding for tfm translate and validation. */
#include "translate.h"

#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "tfm/decode.h"
#include "train_common.h"

int text_model_load(const char *dir, text_model *tm) {
    char path[4096];
    memset(tm, 0, sizeof *tm);
    snprintf(path, sizeof path, "%s/bpe.codes", dir);
    tm->bpe = tfm_bpe_load(path);
    if (!tm->bpe) return 1;
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    tm->vocab = tfm_vocab_load(path);
    if (!tm->vocab) {
        text_model_free(tm);
        return 1;
    }
    return 0;
}

void text_model_free(text_model *tm) {
    if (tm->bpe) tfm_bpe_free(tm->bpe);
    if (tm->vocab) tfm_vocab_free(tm->vocab);
    memset(tm, 0, sizeof *tm);
}

typedef struct {
    int64_t index, len;
} by_len;

static int cmp_len(const void *a, const void *b) {
    const by_len *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

int translate_lines(tfm_model *m, const text_model *tm, char *const *lines, int64_t n,
                    const translate_options *o, char **out) {
    int64_t cap = m->cfg.max_len - 1; /* source ids + </s> must fit the positions */
    int32_t **ids = calloc((size_t)(n ? n : 1), sizeof *ids);
    by_len *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!ids || !order) return tfm_set_error("out of memory"), 1;
    int rc = 1;
    for (int64_t i = 0; i < n; i++) {
        int32_t tmp[1];
        int64_t k = tfm_vocab_encode(tm->bpe, tm->vocab, lines[i], strlen(lines[i]), tmp, 0);
        if (k < 0) goto done;
        ids[i] = malloc((size_t)(k + 1) * sizeof(int32_t));
        if (!ids[i]) goto done;
        tfm_vocab_encode(tm->bpe, tm->vocab, lines[i], strlen(lines[i]), ids[i], k);
        order[i] = (by_len){i, k < cap ? k : cap - 1}; /* longer inputs are cut */
    }
    qsort(order, (size_t)n, sizeof *order, cmp_len);
    int64_t B = o->batch, S_max = n ? order[n - 1].len + 1 : 1;
    int64_t max_out = o->max_len > 0 ? o->max_len : 2 * S_max + 10;
    if (max_out > m->cfg.max_len - 1) max_out = m->cfg.max_len - 1;
    tfm_tape t;
    size_t arena = tfm_model_activation_bytes(&m->cfg, B * o->beam, S_max, 2);
    if (tfm_tape_init(&t, arena, 16)) goto done;
    t.no_grad = 1;
    t.training = 0;
    int32_t *src = malloc((size_t)(B * S_max) * sizeof(int32_t));
    uint8_t *pad = malloc((size_t)(B * S_max));
    int32_t *hyp = malloc((size_t)(B * max_out) * sizeof(int32_t));
    int64_t *lens = malloc((size_t)B * sizeof(int64_t));
    if (!src || !pad || !hyp || !lens) {
        tfm_set_error("out of memory");
        goto done_tape;
    }
    int progress = !o->quiet && isatty(fileno(stderr));
    double t0 = tfm_now();
    for (int64_t start = 0; start < n; start += B) {
        int64_t rows = n - start < B ? n - start : B;
        int64_t S = order[start + rows - 1].len + 1;
        for (int64_t r = 0; r < rows; r++) {
            const by_len *e = &order[start + r];
            for (int64_t j = 0; j < S; j++) {
                int32_t v = j < e->len ? ids[e->index][j] : j == e->len ? TFM_EOS_ID : TFM_PAD_ID;
                src[r * S + j] = v;
                pad[r * S + j] = v == TFM_PAD_ID;
            }
        }
        int64_t lim = o->max_len > 0 ? max_out : (2 * S + 10 < max_out ? 2 * S + 10 : max_out);
        int st = o->beam > 1 ? tfm_beam_decode(m, &t, src, pad, rows, S, o->beam, (float)o->alpha,
                                               lim, hyp, lens)
                             : tfm_greedy_decode(m, &t, src, pad, rows, S, lim, hyp, lens);
        if (st) goto done_tape;
        for (int64_t r = 0; r < rows; r++) {
            out[order[start + r].index] = tfm_vocab_decode(tm->vocab, hyp + r * lim, lens[r]);
            if (!out[order[start + r].index]) goto done_tape;
        }
        if (progress) {
            double el = tfm_now() - t0;
            fprintf(stderr, "\rtranslated %lld/%lld sentences, %.1f sentences/s   ",
                    (long long)(start + rows), (long long)n,
                    el > 0 ? (double)(start + rows) / el : 0.0);
        }
    }
    if (progress) fprintf(stderr, "\n");
    rc = 0;
done_tape:
    free(src);
    free(pad);
    free(hyp);
    free(lens);
    tfm_tape_free(&t);
done:
    for (int64_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
    free(order);
    return rc;
}

int translate_main(const char *model_path, const char *input, const translate_options *o,
                   toy_translate_fn toy) {
    tfm_model m;
    tfm_kv meta;
    tfm_kv_init(&meta);
    if (train_load_model(model_path, &m, &meta)) return tfm_cli_fail(1, "%s", tfm_last_error());
    tfm_corpus_opts copts = {.max_line_bytes = 1 << 20, .allow_empty = 1, .allow_empty_file = 1};
    tfm_lines in;
    if (tfm_text_read_lines(input, &copts, &in)) return tfm_cli_fail(1, "%s", tfm_last_error());
    const char *kind = tfm_kv_get(&meta, "data.kind");
    int rc = 0;
    if (kind && !strcmp(kind, "toy")) {
        if (toy(&m, &in, o->batch)) rc = tfm_cli_fail(1, "%s", tfm_last_error());
    } else {
        /* the subword files sit beside the checkpoint */
        char dir[4096];
        struct stat st;
        snprintf(dir, sizeof dir, "%s", model_path);
        if (stat(model_path, &st) == 0 && !S_ISDIR(st.st_mode)) {
            char tmp[4096];
            snprintf(tmp, sizeof tmp, "%s", model_path);
            snprintf(dir, sizeof dir, "%s", dirname(tmp));
        }
        text_model tm;
        char **out = calloc((size_t)(in.n ? in.n : 1), sizeof(char *));
        if (text_model_load(dir, &tm) || !out) {
            rc = tfm_cli_fail(1, "%s", tfm_last_error());
        } else if (translate_lines(&m, &tm, in.line, in.n, o, out)) {
            rc = tfm_cli_fail(1, "%s", tfm_last_error());
        } else {
            for (int64_t i = 0; i < in.n; i++) printf("%s\n", out[i]);
        }
        for (int64_t i = 0; out && i < in.n; i++) free(out[i]);
        free(out);
        if (!rc) text_model_free(&tm);
    }
    tfm_lines_free(&in);
    tfm_kv_free(&meta);
    tfm_model_free(&m);
    return rc;
}
