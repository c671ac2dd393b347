/* tfm translate: decode stdin line by line with a trained or exported model.
 * Toy models read space-separated symbol ids ("3 4 5 6"); text models read
 * sentences and write detokenized translations, one line per input line. */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "flags.h"
#include "tfm/data.h"
#include "tfm/nn.h"
#include "tfm/train.h"

static const char *USAGE = "tfm translate --model DIR [--beam K] [--alpha A] < input > output";

/* "3 4 5" -> ids; symbols must be in [3, vocab). */
static int parse_symbols(const char *line, int64_t lineno, int64_t vocab, int32_t *ids, int64_t cap,
                         int64_t *n) {
    *n = 0;
    const char *p = line;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ' ') || errno)
            return tfm_set_error("<stdin>:%lld: '%.*s' is not a symbol id", (long long)lineno,
                                 (int)strcspn(p, " "), p),
                   1;
        if (v < 3 || v >= vocab)
            return tfm_set_error("<stdin>:%lld: symbol %ld is outside 3..%lld", (long long)lineno,
                                 v, (long long)(vocab - 1)),
                   1;
        if (*n >= cap)
            return tfm_set_error("<stdin>:%lld: longer than %lld symbols", (long long)lineno,
                                 (long long)cap),
                   1;
        ids[(*n)++] = (int32_t)v;
        p = end;
    }
    return 0;
}

static int translate_toy(tfm_model *m, const tfm_lines *in, int64_t batch, tfm_precision prec) {
    tfm_tape t;
    if (tfm_tape_init(&t, (size_t)256 << 20, 1 << 10)) return 1;
    t.no_grad = 1;
    t.training = 0;
    t.precision = prec;
    int64_t cap = m->cfg.max_len - 2;
    int32_t *src = malloc((size_t)(batch * (cap + 1)) * sizeof(int32_t));
    uint8_t *pad = malloc((size_t)(batch * (cap + 1)));
    int32_t *out = malloc((size_t)(batch * (cap + 1)) * sizeof(int32_t));
    int64_t *lens = malloc((size_t)batch * sizeof(int64_t)),
            *row_len = malloc((size_t)batch * sizeof(int64_t));
    int rc = 1;
    if (!src || !pad || !out || !lens || !row_len) {
        tfm_set_error("out of memory");
        goto done;
    }
    for (int64_t start = 0; start < in->n; start += batch) {
        int64_t B = in->n - start < batch ? in->n - start : batch, S = 1;
        for (int64_t b = 0; b < B; b++) {
            if (parse_symbols(in->line[start + b], start + b + 1, m->cfg.vocab, src + b * (cap + 1),
                              cap, &row_len[b]))
                goto done;
            if (row_len[b] + 1 > S) S = row_len[b] + 1;
        }
        /* repack to (B, S) with </s> and padding */
        int32_t *packed = out; /* reuse as scratch for the source */
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < S; i++) {
                int32_t v = i < row_len[b]    ? src[b * (cap + 1) + i]
                            : i == row_len[b] ? TFM_EOS_ID
                                              : TFM_PAD_ID;
                packed[b * S + i] = v;
                pad[b * S + i] = v == TFM_PAD_ID;
            }
        memcpy(src, packed, (size_t)(B * S) * sizeof(int32_t));
        int64_t max_out = 2 * S + 10 < cap ? 2 * S + 10 : cap;
        if (tfm_greedy_decode(m, &t, src, pad, B, S, max_out, out, lens)) goto done;
        for (int64_t b = 0; b < B; b++) {
            for (int64_t i = 0; i < lens[b]; i++) printf(i ? " %d" : "%d", out[b * max_out + i]);
            printf("\n");
        }
    }
    rc = 0;
done:
    free(src);
    free(pad);
    free(out);
    free(lens);
    free(row_len);
    tfm_tape_free(&t);
    return rc;
}

/* Loads the model (run directory, checkpoint or export), reads the input and
 * prints one output line per input line. */
static int translate_main(const char *model_path, const char *input, const tfm_translate_opts *o) {
    tfm_model m;
    tfm_kv meta;
    tfm_kv_init(&meta);
    if (tfm_load_model(model_path, &m, &meta)) {
        tfm_kv_free(&meta);
        return tfm_cli_fail(1, "%s", tfm_last_error());
    }
    tfm_corpus_opts copts = {.max_line_bytes = 1 << 20, .allow_empty = 1, .allow_empty_file = 1};
    tfm_lines in;
    if (tfm_text_read_lines(input, &copts, &in)) {
        tfm_kv_free(&meta);
        tfm_model_free(&m);
        return tfm_cli_fail(1, "%s", tfm_last_error());
    }
    const char *kind = tfm_kv_get(&meta, "data.kind");
    int rc = 0;
    if (kind && !strcmp(kind, "toy")) {
        if (translate_toy(&m, &in, o->batch, o->precision))
            rc = tfm_cli_fail(1, "%s", tfm_last_error());
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
        tfm_text_model tm;
        char **out = calloc((size_t)(in.n ? in.n : 1), sizeof(char *));
        int have_tm = 0;
        if (!out || tfm_text_model_load(dir, &tm)) {
            rc = tfm_cli_fail(1, "%s", out ? tfm_last_error() : "out of memory");
        } else {
            have_tm = 1;
            if (tfm_translate_lines(&m, &tm, in.line, in.n, o, out))
                rc = tfm_cli_fail(1, "%s", tfm_last_error());
            else
                for (int64_t i = 0; i < in.n; i++) printf("%s\n", out[i]);
        }
        for (int64_t i = 0; out && i < in.n; i++) free(out[i]);
        free(out);
        if (have_tm) tfm_text_model_free(&tm);
    }
    tfm_lines_free(&in);
    tfm_kv_free(&meta);
    tfm_model_free(&m);
    return rc;
}

int tfm_cmd_translate(int argc, char **argv) {
    const char *model_path = NULL, *input = "-", *precision = "fp32";
    int64_t beam = 1, batch = 64, threads = 0, max_len = 0;
    double alpha = 0.6;
    int quiet = 0;
    flag_def flags[] = {
        {"model", FLAG_STR, &model_path, "run directory, checkpoint file, or export directory", 0},
        {"input", FLAG_STR, &input, "input file (- for stdin)", 0},
        {"beam", FLAG_INT, &beam, "beam size (1: greedy)", 0},
        {"alpha", FLAG_FLOAT, &alpha, "length penalty (GNMT) for beam search", 0},
        {"batch", FLAG_INT, &batch, "sentences decoded together", 0},
        {"max-len", FLAG_INT, &max_len, "longest output in subwords (0: from the input)", 0},
        {"threads", FLAG_INT, &threads, "OpenMP threads (0: all cores)", 0},
        {"quiet", FLAG_BOOL, &quiet, "no progress on stderr", 0},
        {"precision", FLAG_STR, &precision,
         "GEMM arithmetic: fp32 or bf16 (bf16 inputs, fp32 sums; any model runs in either)", 0},
    };
    int n_flags = (int)(sizeof flags / sizeof flags[0]);
    int rc = flags_parse(flags, n_flags, argc, argv, USAGE, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (!model_path) return tfm_cli_fail(2, "translate: --model DIR is required");
    if (beam < 1 || beam > 64) return tfm_cli_fail(2, "--beam: must be between 1 and 64");
    if (batch < 1 || batch > 4096) return tfm_cli_fail(2, "--batch: must be between 1 and 4096");
    if (!(alpha >= 0)) return tfm_cli_fail(2, "--alpha: must not be negative");
    if (max_len < 0) return tfm_cli_fail(2, "--max-len: must not be negative");
    if (threads < 0 || threads > TFM_MAX_THREADS)
        return tfm_cli_fail(2, "--threads: must be between 0 and %d", TFM_MAX_THREADS);
    tfm_precision prec;
    if (tfm_precision_parse(precision, &prec))
        return tfm_cli_fail(2, "--precision: '%s' is not fp32 or bf16", precision);
    if (threads > 0) tfm_set_num_threads((int)threads);
    tfm_translate_opts to = {.beam = beam,
                             .alpha = alpha,
                             .batch = batch,
                             .max_len = max_len,
                             .progress = !quiet && isatty(fileno(stderr)),
                             .precision = prec};
    return translate_main(model_path, input, &to);
}
