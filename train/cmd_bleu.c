/* tfm bleu: corpus BLEU of stdin against reference files, printed as
 * tools/bleu.py prints it (a sacreBLEU-style line, then the score alone). */
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "flags.h"
#include "tfm/base.h"
#include "tfm/eval.h"

static const char USAGE[] =
    "tfm bleu REF [REF2 ...] [options] < HYP\n"
    "Corpus BLEU of the hypothesis lines on stdin against one or more reference\n"
    "files (UTF-8, one segment per line), as sacreBLEU's default: 13a tokens,\n"
    "exp smoothing, closest reference length. After -- every argument is a\n"
    "reference file (for names starting with '-').";

int tfm_cmd_bleu(int argc, char **argv) {
    int lowercase = 0;
    int64_t width = 1;
    const char *tok_name = "13a";
    flag_def flags[] = {
        {"lowercase", FLAG_BOOL, &lowercase, "lowercase hypotheses and references first", 0},
        {"tokenize", FLAG_STR, &tok_name,
         "13a (sacreBLEU's) or none (split on whitespace only, for text that is already "
         "tokenized)",
         0},
        {"width", FLAG_INT, &width, "decimals of the score, 0 to 17", 0},
    };
    static const flag_alias aliases[] = {
        {"-lc", "lowercase"}, {"-tok", "tokenize"}, {"-w", "width"}};
    const char **paths = calloc((size_t)argc + 1, sizeof *paths);
    if (!paths) return tfm_cli_fail(1, "bleu: out of memory");
    int n_refs = 0;
    int rc = flags_parse_aliases(flags, (int)(sizeof flags / sizeof flags[0]), aliases,
                                 (int)(sizeof aliases / sizeof aliases[0]), argc, argv, USAGE,
                                 (char **)paths, argc, &n_refs);
    tfm_bleu_tok tok = TFM_BLEU_TOK_13A;
    if (rc == 0 && tfm_bleu_tok_parse(tok_name, &tok))
        rc = tfm_cli_fail(2, "--tokenize: '%s' is not 13a or none", tok_name);
    if (rc == 0 && (width < 0 || width > 17))
        rc = tfm_cli_fail(2, "--width: must be between 0 and 17");
    if (rc == 0 && n_refs == 0)
        rc =
            tfm_cli_fail(2, "bleu: no reference file given (usage: tfm bleu REF [REF2 ...] < HYP)");
    if (rc) {
        free(paths);
        return rc == 1 ? 0 : rc; /* 1: --help */
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
    tfm_bleu_format(&b, label, (int)width, line, sizeof line);
    printf("%s\n%.*f\n", line, (int)width, b.score);
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
