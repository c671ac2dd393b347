/* tfm bpe: learn, apply and undo byte-pair-encoding subwords; build the
 * vocabulary; encode/decode ids; write a Hugging Face tokenizer.json. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "flags.h"
#include "tfm/atomic_file.h"
#include "tfm/base.h"
#include "tfm/data.h" /* TFM_MAX_LINE_BYTES_DEFAULT */
#include "tfm/text.h"

static const char USAGE[] =
    "tfm bpe learn --merges N [--min-freq F] -o CODES [--vocab-out VOCAB] FILE...\n"
    "       tfm bpe apply -c CODES [FILE...]          segment (stdin by default) with '@@ '\n"
    "       tfm bpe detok [FILE...]                   join '@@ ' pieces back into words\n"
    "       tfm bpe vocab -c CODES -o VOCAB FILE...   vocabulary of the segmented text\n"
    "       tfm bpe encode -c CODES -v VOCAB [FILE...] one line of ids per line\n"
    "       tfm bpe decode -v VOCAB [FILE...]         ids back to detokenized text\n"
    "       tfm bpe hf -c CODES -v VOCAB -o tokenizer.json\n"
    "\n"
    "learn builds one joint model from all FILEs (e.g. source and target training text):\n"
    "words are whitespace-separated, the end of word is marked '</w>' (subword-nmt 0.2).\n"
    "Ties between equally frequent pairs go to the lexicographically greatest pair.\n"
    "learning stops when no pair occurs --min-freq times.";

typedef struct {
    const char *codes, *out, *vocab, *vocab_out;
    int64_t merges, min_freq;
    int have_merges, exact;
    const char **files;
    int n_files;
} bpe_args;

/* The flags every subcommand shares (each uses those it needs), through
 * flags.c like every other command; the short spellings are subword-nmt's. */
static int parse_args(int argc, char **argv, bpe_args *a) {
    memset(a, 0, sizeof *a);
    a->min_freq = 2;
    a->files = calloc((size_t)argc + 1, sizeof *a->files);
    if (!a->files) return tfm_cli_fail(1, "out of memory");
    flag_def flags[] = {
        {"merges", FLAG_INT, &a->merges, "learn: merge operations to learn (required)", 0},
        {"min-freq", FLAG_INT, &a->min_freq, "learn: least frequency of a pair to merge", 0},
        {"codes", FLAG_STR, &a->codes, "the BPE codes (apply, vocab, encode, hf)", 0},
        {"vocab", FLAG_STR, &a->vocab, "the vocabulary (encode, decode, hf)", 0},
        {"output", FLAG_STR, &a->out,
         "file to write: the codes (learn), the vocabulary (vocab), tokenizer.json (hf)", 0},
        {"vocab-out", FLAG_STR, &a->vocab_out, "learn: also write the vocabulary of the FILEs", 0},
        {"exact-vocab", FLAG_BOOL, &a->exact,
         "vocab, learn --vocab-out: also give an id to every symbol the merges pass through (as "
         "tfm train does), which bpe hf needs for an exact tokenizer.json",
         0},
    };
    static const flag_alias aliases[] = {
        {"-s", "merges"}, {"--min-frequency", "min-freq"}, {"-c", "codes"}, {"-v", "vocab"},
        {"-o", "output"},
    };
    int n_flags = (int)(sizeof flags / sizeof flags[0]);
    int rc = flags_parse_aliases(flags, n_flags, aliases, (int)(sizeof aliases / sizeof *aliases),
                                 argc, argv, USAGE, (char **)a->files, argc, &a->n_files);
    a->have_merges = flags_find(flags, n_flags, "merges")->set != 0;
    if (rc) return rc == 1 ? -1 : rc; /* -1: --help was printed */
    /* an output must not replace an input or the other output (learn reads
     * its corpus whole, then -o s.de would write the codes over it) */
    const char *outs[2] = {a->out, a->vocab_out}, *out_flag[2] = {"-o", "--vocab-out"};
    for (int o = 0; o < 2; o++) {
        if (!outs[o]) continue;
        if (o == 1 && a->out && cli_same_file(a->out, a->vocab_out))
            return tfm_cli_fail(2, "--vocab-out %s: the same file as -o", a->vocab_out);
        const char *ins[2] = {a->codes, a->vocab};
        for (int i = 0; i < 2; i++)
            if (ins[i] && cli_same_file(outs[o], ins[i]))
                return tfm_cli_fail(2, "%s %s: the same file as %s", out_flag[o], outs[o],
                                    i ? "-v" : "-c");
        for (int i = 0; i < a->n_files; i++)
            if (cli_same_file(outs[o], a->files[i]))
                return tfm_cli_fail(2, "%s %s: the same file as input %s", out_flag[o], outs[o],
                                    a->files[i]);
    }
    return 0;
}

/* Runs fn on every line of the files (stdin when none), with the name for
 * errors. Lines are handed over without their newline. */
typedef int (*line_cb)(void *ctx, char *line, size_t len, const char *name, long long lineno);

static int each_input_line(const bpe_args *a, line_cb fn, void *ctx) {
    int n = a->n_files ? a->n_files : 1;
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const char *name = a->n_files ? a->files[i] : "<stdin>";
        FILE *f = a->n_files ? tfm_open_input(name) : stdin;
        if (!f) {
            rc = tfm_cli_fail(1, "%s", tfm_last_error());
            break;
        }
        ssize_t got;
        long long lineno = 0;
        while (rc == 0) {
            errno = 0;
            if ((got = getline(&line, &cap, f)) < 0) {
                /* the end, or out of memory for a long line (an error, not the end) */
                if (tfm_getline_error(f, name, lineno + 1, errno))
                    rc = tfm_cli_fail(1, "%s", tfm_last_error());
                break;
            }
            size_t len = (size_t)got;
            if (len && line[len - 1] == '\n') len--;
            rc = fn(ctx, line, len, name, ++lineno);
        }
        if (f != stdin) fclose(f);
    }
    free(line);
    if (fflush(stdout) != 0 && rc == 0) rc = tfm_cli_fail(1, "write error on stdout");
    return rc;
}

static int cmd_learn(const bpe_args *a) {
    if (!a->have_merges) return tfm_cli_fail(2, "bpe learn: --merges N is required");
    if (!a->out) return tfm_cli_fail(2, "bpe learn: -o CODES is required");
    if (!a->n_files) return tfm_cli_fail(2, "bpe learn: no input FILE given");
    if (a->merges < 0) return tfm_cli_fail(2, "--merges must be >= 0");
    if (a->min_freq < 1) return tfm_cli_fail(2, "--min-freq must be >= 1");
    /* each input is read once: pipes and FIFOs cannot be read again for
     * the vocabulary */
    tfm_text_input *in = calloc((size_t)a->n_files, sizeof *in);
    if (!in) return tfm_cli_fail(1, "out of memory");
    int rc = 0;
    for (int i = 0; i < a->n_files && !rc; i++) {
        char *text;
        in[i].name = a->files[i];
        if (tfm_read_input_lines(a->files[i], (size_t)TFM_MAX_LINE_BYTES_DEFAULT, &text,
                                 &in[i].len))
            rc = tfm_cli_fail(1, "%s", tfm_last_error());
        else
            in[i].text = text;
    }
    double t0 = tfm_now();
    tfm_bpe *b = rc ? NULL : tfm_bpe_learn_texts(in, a->n_files, a->merges, a->min_freq, stderr);
    if (!b && !rc) rc = tfm_cli_fail(1, "%s", tfm_last_error());
    double t1 = tfm_now();
    if (!rc && tfm_bpe_save(b, a->out)) rc = tfm_cli_fail(1, "%s", tfm_last_error());
    if (rc) {
        tfm_bpe_free(b);
        for (int i = 0; i < a->n_files; i++) free((char *)in[i].text);
        free(in);
        return rc;
    }
    fprintf(stderr, "bpe: %lld merges learned in %.2f s, written to %s\n",
            (long long)tfm_bpe_n_merges(b), t1 - t0, a->out);
    if (a->vocab_out) {
        tfm_vocab *v = tfm_vocab_build_texts(b, in, a->n_files);
        if (!v || (a->exact && tfm_vocab_add_merge_symbols(v, b) < 0) ||
            tfm_vocab_save(v, a->vocab_out))
            rc = tfm_cli_fail(1, "%s", tfm_last_error());
        else
            fprintf(stderr, "bpe: vocabulary of %d tokens written to %s\n", tfm_vocab_size(v),
                    a->vocab_out);
        tfm_vocab_free(v);
    }
    tfm_bpe_free(b);
    for (int i = 0; i < a->n_files; i++) free((char *)in[i].text);
    free(in);
    return rc;
}

typedef struct {
    tfm_bpe *bpe;
    const tfm_vocab *vocab;
    tfm_subwords sw;
    int32_t *ids;
    int64_t cap;
} apply_ctx;

static int apply_line(void *ctx, char *line, size_t len, const char *name, long long lineno) {
    apply_ctx *c = ctx;
    if (tfm_bpe_segment(c->bpe, line, len, &c->sw))
        return tfm_cli_fail(1, "%s:%lld: %s", name, lineno, tfm_last_error());
    for (int64_t i = 0; i < c->sw.n; i++) {
        if (i) putchar(' ');
        fputs(tfm_subwords_get(&c->sw, i), stdout);
    }
    putchar('\n');
    return 0;
}

static int encode_line(void *ctx, char *line, size_t len, const char *name, long long lineno) {
    apply_ctx *c = ctx;
    int64_t n;
    while ((n = tfm_vocab_encode(c->bpe, c->vocab, line, len, c->ids, c->cap)) > c->cap) {
        int32_t *ids = realloc(c->ids, (size_t)n * sizeof *ids);
        if (!ids) return tfm_cli_fail(1, "out of memory");
        c->ids = ids;
        c->cap = n;
    }
    if (n < 0) return tfm_cli_fail(1, "%s:%lld: %s", name, lineno, tfm_last_error());
    for (int64_t i = 0; i < n; i++) printf(i ? " %d" : "%d", c->ids[i]);
    putchar('\n');
    return 0;
}

static int decode_line(void *ctx, char *line, size_t len, const char *name, long long lineno) {
    apply_ctx *c = ctx;
    int64_t n = 0;
    line[len] = 0;
    for (char *p = line;;) {
        while (*p && tfm_text_is_space((unsigned char)*p)) p++;
        if (!*p) break;
        char *end;
        long long id = strtoll(p, &end, 10);
        if (end == p || (*end && !tfm_text_is_space((unsigned char)*end)) || id < INT32_MIN ||
            id > INT32_MAX)
            return tfm_cli_fail(1, "%s:%lld: not a token id: '%.20s'", name, lineno, p);
        if (n == c->cap) {
            int64_t cap = c->cap ? c->cap * 2 : 256;
            int32_t *ids = realloc(c->ids, (size_t)cap * sizeof *ids);
            if (!ids) return tfm_cli_fail(1, "out of memory");
            c->ids = ids;
            c->cap = cap;
        }
        c->ids[n++] = (int32_t)id;
        p = end;
    }
    char *text = tfm_vocab_decode(c->vocab, c->ids, n);
    if (!text) return tfm_cli_fail(1, "%s:%lld: %s", name, lineno, tfm_last_error());
    puts(text);
    free(text);
    return 0;
}

static int detok_line(void *ctx, char *line, size_t len, const char *name, long long lineno) {
    (void)ctx;
    /* the text every other reader takes: valid UTF-8 without NUL bytes */
    if (tfm_text_check_line(line, len, name, lineno))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    /* Detokenising never lengthens: the output fits in place. */
    size_t n = tfm_bpe_detok(line, len, line);
    fwrite(line, 1, n, stdout);
    putchar('\n');
    return 0;
}

static int run_lines(const bpe_args *a, line_cb fn, int need_codes, int need_vocab) {
    apply_ctx c;
    memset(&c, 0, sizeof c);
    tfm_vocab *v = NULL;
    if (need_codes && !a->codes) return tfm_cli_fail(2, "-c CODES is required");
    if (need_vocab && !a->vocab) return tfm_cli_fail(2, "-v VOCAB is required");
    if (need_codes && !(c.bpe = tfm_bpe_load(a->codes)))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    if (need_vocab && !(v = tfm_vocab_load(a->vocab))) {
        tfm_bpe_free(c.bpe);
        return tfm_cli_fail(1, "%s", tfm_last_error());
    }
    c.vocab = v;
    int rc = each_input_line(a, fn, &c);
    tfm_subwords_free(&c.sw);
    free(c.ids);
    tfm_vocab_free(v);
    tfm_bpe_free(c.bpe);
    return rc;
}

static int cmd_vocab(const bpe_args *a) {
    if (!a->codes || !a->out || !a->n_files)
        return tfm_cli_fail(2, "bpe vocab: -c CODES, -o VOCAB and a FILE are required");
    tfm_bpe *b = tfm_bpe_load(a->codes);
    if (!b) return tfm_cli_fail(1, "%s", tfm_last_error());
    tfm_vocab *v = tfm_vocab_build(b, a->files, a->n_files);
    int rc = 0;
    if (!v || (a->exact && tfm_vocab_add_merge_symbols(v, b) < 0) || tfm_vocab_save(v, a->out))
        rc = tfm_cli_fail(1, "%s", tfm_last_error());
    else
        fprintf(stderr, "bpe: vocabulary of %d tokens written to %s\n", tfm_vocab_size(v), a->out);
    tfm_vocab_free(v);
    tfm_bpe_free(b);
    return rc;
}

static int cmd_hf(const bpe_args *a) {
    if (!a->codes || !a->vocab || !a->out)
        return tfm_cli_fail(2, "bpe hf: -c CODES, -v VOCAB and -o FILE are required");
    tfm_bpe *b = tfm_bpe_load(a->codes);
    tfm_vocab *v = b ? tfm_vocab_load(a->vocab) : NULL;
    tfm_hf_tokenizer_info info = {0};
    size_t len = 0;
    char *json = v ? tfm_bpe_hf_tokenizer_json(b, v, &len, &info) : NULL;
    int rc = 0;
    /* a file that segments otherwise than tfm is not written (tfm export
     * leaves it out the same way) */
    if (json && info.n_merges_from_unk)
        rc = tfm_cli_fail(1,
                          "bpe hf: %s lacks %lld symbols of %s's merges that %lld later merges "
                          "start from; Hugging Face's BPE cannot reproduce tfm's segmentation "
                          "with it, so %s is not written (tfm bpe vocab --exact-vocab makes a "
                          "vocabulary that can)",
                          a->vocab, (long long)info.n_symbols_unk, a->codes,
                          (long long)info.n_merges_from_unk, a->out);
    else if (!json || tfm_write_file_atomic(a->out, json, len))
        rc = tfm_cli_fail(1, "%s", tfm_last_error());
    free(json);
    tfm_vocab_free(v);
    tfm_bpe_free(b);
    return rc;
}

int tfm_cmd_bpe(int argc, char **argv) {
    if (argc < 2)
        return tfm_cli_fail(2, "bpe: which subcommand? (learn, apply, detok, vocab, encode, "
                               "decode, hf; tfm bpe --help)");
    const char *sub = argv[1];
    static const char *const SUBS[] = {"learn",  "apply",  "detok", "vocab",
                                       "encode", "decode", "hf"};
    int help = !strcmp(sub, "help") || !strcmp(sub, "-h") || !strcmp(sub, "--help"), known = help;
    for (size_t i = 0; i < sizeof SUBS / sizeof SUBS[0]; i++) known |= !strcmp(sub, SUBS[i]);
    if (!known) return tfm_cli_fail(2, "bpe: unknown subcommand '%s' (tfm bpe --help)", sub);
    bpe_args a;
    /* "tfm bpe --help" prints the options, as "tfm bpe apply --help" does */
    char *help_argv[] = {(char *)"bpe", (char *)"--help", NULL};
    int rc = help ? parse_args(2, help_argv, &a) : parse_args(argc - 1, argv + 1, &a);
    if (rc == 0) {
        if (!strcmp(sub, "learn"))
            rc = cmd_learn(&a);
        else if (!strcmp(sub, "apply"))
            rc = run_lines(&a, apply_line, 1, 0);
        else if (!strcmp(sub, "detok"))
            rc = run_lines(&a, detok_line, 0, 0);
        else if (!strcmp(sub, "vocab"))
            rc = cmd_vocab(&a);
        else if (!strcmp(sub, "encode"))
            rc = run_lines(&a, encode_line, 1, 1);
        else if (!strcmp(sub, "decode"))
            rc = run_lines(&a, decode_line, 0, 1);
        else
            rc = cmd_hf(&a);
    } else if (rc < 0) {
        rc = 0; /* --help */
    }
    free(a.files);
    return rc;
}
