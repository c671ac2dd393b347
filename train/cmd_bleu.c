/* tfm bleu: corpus BLEU of stdin against reference files, printed as
 * tools/bleu.py prints it (a sacreBLEU-style line, then the score alone). */
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "tfm/base.h"
#include "tfm/eval.h"

static void usage(FILE *f) {
    fprintf(f, "usage: tfm bleu REF [REF2 ...] [options] < HYP\n"
               "Corpus BLEU of the hypothesis lines on stdin against one or more reference\n"
               "files (UTF-8, one segment per line), as sacreBLEU's default: 13a tokens,\n"
               "exp smoothing, closest reference length.\n\n"
               "  -lc, --lowercase   lowercase hypotheses and references first\n"
               "  -tok, --tokenize T 13a (default, sacreBLEU's) or none (split on whitespace\n"
               "                     only, for text that is already tokenized)\n"
               "  -w, --width N      decimals of the score (default 1)\n"
               "  --                 end of options (for file names starting with '-')\n"
               "  -h, --help         this help\n");
}

int tfm_cmd_bleu(int argc, char **argv) {
    int lowercase = 0, width = 1, options_done = 0;
    tfm_bleu_tok tok = TFM_BLEU_TOK_13A;
    const char **paths = calloc((size_t)argc + 1, sizeof *paths);
    if (!paths) return tfm_cli_fail(1, "bleu: out of memory");
    int n_refs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || !a[1]) {
            paths[n_refs++] = a;
        } else if (!strcmp(a, "--")) {
            options_done = 1;
        } else if (!strcmp(a, "-lc") || !strcmp(a, "--lowercase")) {
            lowercase = 1;
        } else if (!strcmp(a, "-tok") || !strcmp(a, "--tokenize")) {
            if (i + 1 >= argc || tfm_bleu_tok_parse(argv[i + 1], &tok)) {
                free(paths);
                return tfm_cli_fail(2, "bleu: %s needs 13a or none%s%s%s", a,
                                    i + 1 < argc ? " (got '" : "", i + 1 < argc ? argv[i + 1] : "",
                                    i + 1 < argc ? "')" : "");
            }
            i++;
        } else if (!strcmp(a, "-w") || !strcmp(a, "--width")) {
            char *end = NULL;
            long w = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : -1;
            if (i + 1 >= argc || !argv[i + 1][0] || *end || w < 0 || w > 17) {
                free(paths);
                return tfm_cli_fail(2, "bleu: %s needs a number of decimals from 0 to 17", a);
            }
            width = (int)w;
            i++;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(paths);
            return 0;
        } else {
            free(paths);
            return tfm_cli_fail(2, "bleu: unknown option '%s' (tfm bleu --help lists them)", a);
        }
    }
    if (n_refs == 0) {
        free(paths);
        return tfm_cli_fail(2,
                            "bleu: no reference file given (usage: tfm bleu REF [REF2 ...] < HYP)");
    }

    int status = 1;
    tfm_eval_lines hyp = {0};
    tfm_eval_lines *refs = calloc((size_t)n_refs, sizeof *refs);
    const char *const **ref_lines = calloc((size_t)n_refs, sizeof *ref_lines);
    if (!refs || !ref_lines) {
        tfm_cli_fail(1, "bleu: out of memory");
        goto done;
    }
    for (int r = 0; r < n_refs; r++) {
        if (tfm_eval_read_lines(paths[r], &refs[r])) {
            tfm_cli_fail(1, "%s", tfm_last_error());
            goto done;
        }
        ref_lines[r] = (const char *const *)refs[r].lines;
    }
    if (tfm_eval_read_lines_fp(stdin, "<stdin>", &hyp)) {
        tfm_cli_fail(1, "%s", tfm_last_error());
        goto done;
    }
    for (int r = 0; r < n_refs; r++)
        if (refs[r].n != hyp.n) {
            tfm_cli_fail(1, "%s: %lld reference lines but %lld hypothesis lines on stdin", paths[r],
                         (long long)refs[r].n, (long long)hyp.n);
            goto done;
        }
    tfm_bleu b;
    if (tfm_bleu_corpus_tok((const char *const *)hyp.lines, hyp.n, ref_lines, n_refs, lowercase,
                            tok, &b)) {
        tfm_cli_fail(1, "%s", tfm_last_error());
        goto done;
    }
    char label[128], line[512];
    snprintf(label, sizeof label, "BLEU|nrefs:%d|case:%s|eff:no|tok:%s|smooth:exp|impl:tfm", n_refs,
             lowercase ? "lc" : "mixed", tfm_bleu_tok_name(tok));
    tfm_bleu_format(&b, label, width, line, sizeof line);
    printf("%s\n%.*f\n", line, width, b.score);
    status = fflush(stdout) ? 1 : 0;
    if (status) tfm_cli_fail(1, "bleu: cannot write the result");
done:
    if (refs)
        for (int r = 0; r < n_refs; r++) tfm_eval_lines_free(&refs[r]);
    free(refs);
    free(ref_lines);
    tfm_eval_lines_free(&hyp);
    free(paths);
    return status;
}
