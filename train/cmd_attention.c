/* tfm attention: translate one sentence greedily and draw what the model
 * attended to as an SVG heatmap: by default the decoder's cross-attention
 * (source subwords across, output subwords down; row i is the attention
 * used while producing output token i), with --self the encoder's
 * self-attention over the source. One panel with the mean over the heads by
 * default, one head with --head N, or one panel per head with --head all.
 * Layers and heads are numbered from 0 like the parameter names
 * (dec.1.cross_attn); the default layer is the last one. Toy models take
 * symbol ids ("3 4 5") and are labelled with them. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "flags.h"
#include "tfm/svg.h"
#include "tfm/train.h"

static const char *USAGE =
    "tfm attention --model DIR --src \"ein Hund rennt\" [--layer L] [--head mean|all|N] [--self] "
    "[-o attn.svg]";

typedef struct {
    int32_t *ids; /* source ids followed by </s> */
    char **labels;
    int64_t n;
} labelled;

static void labelled_free(labelled *l) {
    for (int64_t i = 0; l->labels && i < l->n; i++) free(l->labels[i]);
    free(l->labels);
    free(l->ids);
    memset(l, 0, sizeof *l);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* Labels for ids: vocabulary tokens for text models, the numbers for toys. */
static int make_labels(labelled *l, const tfm_text_model *tm) {
    l->labels = calloc((size_t)(l->n ? l->n : 1), sizeof(char *));
    if (!l->labels) return tfm_set_error("out of memory"), 1;
    for (int64_t i = 0; i < l->n; i++) {
        char num[24];
        const char *tok = l->ids[i] == TFM_EOS_ID ? "</s>" : NULL;
        if (!tok && tm) tok = tfm_vocab_token(tm->vocab, l->ids[i]);
        if (!tok) {
            snprintf(num, sizeof num, "%d", l->ids[i]);
            tok = num;
        }
        if (!(l->labels[i] = dup_str(tok))) return tfm_set_error("out of memory"), 1;
    }
    return 0;
}

/* "3 4 5" -> ids in [3, vocab), then </s>. */
static int toy_source(const char *text, int64_t vocab, int64_t cap, labelled *l) {
    l->ids = malloc((size_t)(cap + 1) * sizeof(int32_t));
    if (!l->ids) return tfm_set_error("out of memory"), 1;
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ' ' && *end != '\t') || errno)
            return tfm_set_error(
                       "--src: '%.*s' is not a symbol id (toy models read ids such as \"3 4 5\")",
                       (int)strcspn(p, " \t"), p),
                   1;
        if (v < 3 || v >= vocab)
            return tfm_set_error("--src: symbol %ld is outside 3..%lld", v, (long long)(vocab - 1)),
                   1;
        if (l->n >= cap) return tfm_set_error("--src: longer than %lld symbols", (long long)cap), 1;
        l->ids[l->n++] = (int32_t)v;
        p = end;
    }
    l->ids[l->n++] = TFM_EOS_ID;
    return 0;
}

static int text_source(const char *text, tfm_text_model *tm, int64_t cap, labelled *l) {
    int32_t tmp[1];
    int64_t k = tfm_vocab_encode(tm->bpe, tm->vocab, text, strlen(text), tmp, 0);
    if (k < 0) return tfm_set_error("--src: %s", tfm_last_error()), 1;
    if (k > cap)
        return tfm_set_error("--src: %lld subwords, the model handles %lld", (long long)k,
                             (long long)cap),
               1;
    l->ids = malloc((size_t)(k + 1) * sizeof(int32_t));
    if (!l->ids) return tfm_set_error("out of memory"), 1;
    tfm_vocab_encode(tm->bpe, tm->vocab, text, strlen(text), l->ids, k);
    l->ids[k] = TFM_EOS_ID;
    l->n = k + 1;
    return 0;
}

/* Greedy decoding of one sentence (B = 1) that keeps the cross-attention
 * weights: attn (dec_layers, 1, H, T_max, S) with T_max = max_out + 1. The
 * same rules as tfm_greedy_decode: never emit pad or <s>, stop at </s>
 * (which is kept in out, so its attention row can be drawn). */
static int decode_with_attention(tfm_model *m, tfm_tape *t, const labelled *src, int64_t max_out,
                                 labelled *out, float *attn) {
    int64_t S = src->n, V = m->cfg.vocab;
    uint8_t *pad = calloc((size_t)S, 1);
    out->ids = malloc((size_t)max_out * sizeof(int32_t));
    if (!pad || !out->ids) {
        free(pad);
        return tfm_set_error("out of memory"), 1;
    }
    tfm_kv_cache cache;
    int rc = 1;
    if (tfm_kv_cache_init(&cache, m, 1, S, max_out + 1)) goto done;
    cache.attn_cross = attn;
    tfm_tensor *mem = tfm_model_encode(m, t, src->ids, pad, 1, S);
    if (!mem || tfm_kv_cache_start(&cache, m, t, mem, pad)) goto done_cache;
    size_t mark = tfm_arena_mark(&t->arena);
    int32_t token = TFM_BOS_ID;
    out->n = 0;
    for (int64_t step = 0; step < max_out; step++) {
        tfm_arena_rewind(&t->arena, mark);
        tfm_tensor *logits = tfm_model_decode_step(m, t, &cache, &token);
        if (!logits) goto done_cache;
        int64_t best = TFM_EOS_ID;
        for (int64_t v = TFM_EOS_ID; v < V; v++)
            if (logits->data[v] > logits->data[best]) best = v;
        token = (int32_t)best;
        out->ids[out->n++] = token;
        if (token == TFM_EOS_ID) break;
    }
    rc = 0;
done_cache:
    tfm_kv_cache_free(&cache);
done:
    free(pad);
    return rc;
}

/* The panel's matrix: one head, or the mean over heads when head < 0.
 * w (H, rows_stride, cols) with rows <= rows_stride. */
static void pick(const float *w, int64_t H, int64_t rows, int64_t rows_stride, int64_t cols,
                 int64_t head, float *dst) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double sum = 0;
            int64_t h0 = head < 0 ? 0 : head, h1 = head < 0 ? H : head + 1;
            for (int64_t h = h0; h < h1; h++) sum += w[(h * rows_stride + r) * cols + c];
            dst[r * cols + c] = (float)(sum / (double)(h1 - h0));
        }
}

static int draw(const char *path, const char *title, const char *subtitle, const float *w,
                int64_t H, int64_t rows, int64_t rows_stride, int64_t cols,
                const char *const *row_labels, const char *const *col_labels, int head_mode,
                int64_t head, const char *stack, int64_t layer, int self) {
    int64_t n_panels = head_mode == 1 ? H : 1;
    float *mats = malloc((size_t)(n_panels * rows * cols) * sizeof(float));
    if (!mats) return tfm_set_error("out of memory"), 1;
    char(*titles)[96] = calloc((size_t)n_panels, sizeof *titles);
    tfm_svg_heatmap_spec *specs = calloc((size_t)n_panels, sizeof *specs);
    if (!titles || !specs) {
        free(mats);
        free(titles);
        free(specs);
        return tfm_set_error("out of memory"), 1;
    }
    double cell = rows > 40 || cols > 40 ? 14 : 22, pw = 0, ph = 0;
    for (int64_t p = 0; p < n_panels; p++) {
        int64_t h = head_mode == 1 ? p : head_mode == 2 ? head : -1;
        pick(w, H, rows, rows_stride, cols, h, mats + p * rows * cols);
        if (h < 0)
            snprintf(titles[p], sizeof titles[p], "%s.%lld.%s, mean of %lld heads", stack,
                     (long long)layer, self ? "self_attn" : "cross_attn", (long long)H);
        else
            snprintf(titles[p], sizeof titles[p], "%s.%lld.%s, head %lld", stack, (long long)layer,
                     self ? "self_attn" : "cross_attn", (long long)h);
        specs[p] = (tfm_svg_heatmap_spec){.rows = rows,
                                          .cols = cols,
                                          .values = mats + p * rows * cols,
                                          .row_labels = row_labels,
                                          .col_labels = col_labels,
                                          .title = titles[p],
                                          .row_axis = self ? "query (source)" : "output",
                                          .col_axis = self ? "key (source)" : "source",
                                          .cell = cell,
                                          .v_max = 1.0};
        double pw1, ph1;
        tfm_svg_heatmap_extent(&specs[p], &pw1, &ph1);
        if (pw1 > pw) pw = pw1;
        if (ph1 > ph) ph = ph1;
    }
    int64_t grid = 1;
    while (grid * grid < n_panels) grid++;
    int64_t grid_rows = (n_panels + grid - 1) / grid;
    double margin = 16, head_h = 58, gap = 24;
    double W = 2 * margin + grid * pw + (grid - 1) * gap;
    double text_w = tfm_svg_text_width(subtitle, 12) + 2 * margin;
    if (tfm_svg_text_width(title, 15) + 2 * margin > text_w)
        text_w = tfm_svg_text_width(title, 15) + 2 * margin;
    if (text_w > W) W = text_w;
    if (W < 300) W = 300;
    double Hh = head_h + grid_rows * ph + (grid_rows - 1) * gap + 50;
    tfm_svg s;
    tfm_svg_init(&s, W, Hh);
    tfm_svg_text(&s, margin, 24, 15, "start", 0, "#111111", title);
    tfm_svg_text(&s, margin, 44, 12, "start", 0, "#444444", subtitle);
    for (int64_t p = 0; p < n_panels; p++)
        tfm_svg_heatmap(&s, &specs[p], margin + (double)(p % grid) * (pw + gap),
                        head_h + (double)(p / grid) * (ph + gap));
    tfm_svg_colorbar(&s, margin, Hh - 38, 160, 1.0, "attention weight");
    int rc = tfm_svg_save(&s, path);
    tfm_svg_free(&s);
    free(mats);
    free(titles);
    free(specs);
    return rc;
}

static int run(const char *model_path, const char *src_text, int64_t layer, const char *head_text,
               int self, int64_t max_len, const char *out_path) {
    tfm_model m;
    tfm_kv meta;
    tfm_kv_init(&meta);
    tfm_text_model tm = {0};
    labelled src = {0}, hyp = {0};
    tfm_tape t = {0};
    float *attn = NULL;
    char *translation = NULL;
    int rc = 1, have_tape = 0, have_tm = 0;
    if (tfm_load_model(model_path, &m, &meta)) {
        tfm_kv_free(&meta);
        return 1;
    }
    const tfm_model_config *c = &m.cfg;
    int64_t H = c->n_heads, n_layers = self ? c->enc_layers : c->dec_layers;
    if (layer == -1) layer = n_layers - 1; /* only -1 means the last: -2 is a typo, not a wish */
    if (layer < 0 || layer >= n_layers) {
        tfm_set_error("--layer %lld: the %s has layers 0..%lld", (long long)layer,
                      self ? "encoder" : "decoder", (long long)(n_layers - 1));
        goto done;
    }
    int head_mode = 0; /* 0 mean, 1 all, 2 one */
    int64_t head = -1;
    if (!strcmp(head_text, "all"))
        head_mode = 1;
    else if (strcmp(head_text, "mean")) {
        char *end;
        errno = 0;
        head = strtoll(head_text, &end, 10);
        if (!*head_text || *end || errno || head < 0 || head >= H) {
            tfm_set_error("--head %s: give mean, all, or a head number 0..%lld", head_text,
                          (long long)(H - 1));
            goto done;
        }
        head_mode = 2;
    }
    const char *kind = tfm_kv_get(&meta, "data.kind");
    int toy = kind && !strcmp(kind, "toy");
    int64_t cap = c->max_len - 2;
    if (toy) {
        if (toy_source(src_text, c->vocab, cap, &src)) goto done;
    } else {
        /* the subword files sit beside the checkpoint */
        if (tfm_load_text_model(model_path, c, &tm)) goto done;
        have_tm = 1;
        if (text_source(src_text, &tm, cap, &src)) goto done;
    }
    if (src.n < 2) {
        tfm_set_error("--src: the sentence is empty");
        goto done;
    }
    if (make_labels(&src, have_tm ? &tm : NULL)) goto done;
    int64_t S = src.n;
    int64_t max_out = max_len > 0 ? max_len : 2 * S + 10;
    if (max_out > c->max_len - 1) max_out = c->max_len - 1;
    int64_t T_max = max_out + 1;
    if (tfm_tape_init(&t, tfm_model_activation_bytes(c, 1, S, 2), 16)) goto done;
    have_tape = 1;
    t.no_grad = 1;
    t.training = 0;
    size_t n_attn =
        self ? (size_t)(c->enc_layers * H * S * S) : (size_t)(c->dec_layers * H * T_max * S);
    attn = calloc(n_attn, sizeof(float));
    if (!attn) {
        tfm_set_error("out of memory");
        goto done;
    }
    if (self) m.capture_self_attn = attn;
    int st = decode_with_attention(&m, &t, &src, max_out, &hyp, self ? NULL : attn);
    m.capture_self_attn = NULL;
    if (st || make_labels(&hyp, have_tm ? &tm : NULL)) goto done;
    int64_t n_words = hyp.n && hyp.ids[hyp.n - 1] == TFM_EOS_ID ? hyp.n - 1 : hyp.n;
    if (have_tm) {
        translation = tfm_vocab_decode(tm.vocab, hyp.ids, n_words);
        if (!translation) goto done;
    } else {
        translation = calloc((size_t)(n_words * 12 + 1), 1);
        if (!translation) goto done;
        for (int64_t i = 0; i < n_words; i++)
            sprintf(translation + strlen(translation), i ? " %d" : "%d", hyp.ids[i]);
    }
    printf("%s\n", translation);
    char title[512], subtitle[4096];
    snprintf(title, sizeof title, "%s of %s, layer %lld of 0..%lld",
             self ? "Encoder self-attention" : "Cross-attention", model_path, (long long)layer,
             (long long)(n_layers - 1));
    snprintf(subtitle, sizeof subtitle, "%s  \xe2\x86\x92  %s", src_text, translation);
    if (self)
        rc = draw(out_path, title, subtitle, attn + layer * H * S * S, H, S, S, S,
                  (const char *const *)src.labels, (const char *const *)src.labels, head_mode, head,
                  "enc", layer, 1);
    else
        rc = draw(out_path, title, subtitle, attn + layer * H * T_max * S, H, hyp.n, T_max, S,
                  (const char *const *)hyp.labels, (const char *const *)src.labels, head_mode, head,
                  "dec", layer, 0);
    if (!rc) fprintf(stderr, "wrote %s\n", out_path);
done:
    free(translation);
    free(attn);
    if (have_tape) tfm_tape_free(&t);
    labelled_free(&src);
    labelled_free(&hyp);
    if (have_tm) tfm_text_model_free(&tm);
    tfm_kv_free(&meta);
    tfm_model_free(&m);
    return rc;
}

int tfm_cmd_attention(int argc, char **argv) {
    const char *model_path = NULL, *src = NULL, *head = "mean", *out = "attention.svg";
    int64_t layer = -1, threads = 0, max_len = 0;
    int self = 0;
    flag_def flags[] = {
        {"model", FLAG_STR, &model_path, "run directory or checkpoint file", 0},
        {"src", FLAG_STR, &src, "the source sentence (toy models: symbol ids \"3 4 5\")", 0},
        {"layer", FLAG_INT, &layer, "layer to draw, from 0 (-1: the last)", 0},
        {"head", FLAG_STR, &head,
         "mean (over heads), all (one panel each), or a head number from 0", 0},
        {"self", FLAG_BOOL, &self, "draw the encoder self-attention instead of the cross-attention",
         0},
        {"output", FLAG_STR, &out, "SVG file to write", 0},
        {"max-len", FLAG_INT, &max_len, "longest output in subwords (0: from the input)", 0},
        {"threads", FLAG_INT, &threads, "OpenMP threads (0: all cores)", 0},
    };
    int n_flags = (int)(sizeof flags / sizeof flags[0]);
    static const flag_alias aliases[] = {{"-o", "output"}}; /* the familiar spelling */
    int rc = flags_parse_aliases(flags, n_flags, aliases, 1, argc, argv, USAGE, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (!model_path)
        return tfm_cli_fail(2, "attention: --model DIR is required (usage: %s)", USAGE);
    if (!src)
        return tfm_cli_fail(2, "attention: --src \"SENTENCE\" is required (usage: %s)", USAGE);
    if (threads < 0 || threads > TFM_MAX_THREADS)
        return tfm_cli_fail(2, "--threads: must be between 0 and %d", TFM_MAX_THREADS);
    if (max_len < 0) return tfm_cli_fail(2, "--max-len: must not be negative");
    if (threads > 0) tfm_set_num_threads((int)threads);
    if (run(model_path, src, layer, head, self, max_len, out))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    return 0;
}
