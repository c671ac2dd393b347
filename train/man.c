/* `tfm help --roff`: the tfm(1) man page, generated from the same command
 * list and flag tables that --help prints, so the two cannot drift. Each
 * subcommand's --help runs with its stdout captured: flags_help writes man
 * markup in this mode (man_usage, man_flag); the hand-written list of
 * `tfm bench` is quoted verbatim. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "flags.h"
#include "tfm/base.h"

int flags_help_roff;
static int g_roff_written; /* the captured help was written as markup */

/* Text with roff's special characters escaped; a leading '.' or '\'' would
 * be a request, and '-' starting a word (an option) is a minus sign. */
static void roff_text(FILE *f, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (i == 0 && (c == '.' || c == '\'')) fputs("\\&", f);
        if (c == '\\')
            fputs("\\e", f);
        else if (c == '-' && (i == 0 || strchr(" [(|-/\"'", s[i - 1])))
            fputs("\\-", f);
        else
            fputc(c, f);
    }
}

static void roff_line(FILE *f, const char *s) {
    roff_text(f, s, strlen(s));
    fputc('\n', f);
}

void man_usage(FILE *f, const char *usage) {
    g_roff_written = 1;
    fputs(".PP\n.nf\n", f);
    const char *s = usage;
    for (int first = 1; *s; first = 0) {
        const char *nl = strchr(s, '\n');
        size_t n = nl ? (size_t)(nl - s) : strlen(s);
        if (first) fputs("usage: ", f);
        roff_text(f, s, n);
        fputc('\n', f);
        s += n + (nl != NULL);
    }
    fputs(".fi\n.SS Options\n", f);
}

void man_flag(FILE *f, const char *name, const char *help, const char *def) {
    /* name: "--steps X" or "--share-emb" */
    const char *sp = strchr(name, ' ');
    fputs(".TP\n.B ", f);
    roff_text(f, name, sp ? (size_t)(sp - name) : strlen(name));
    if (sp) {
        fputs(" \\fI", f);
        roff_text(f, sp + 1, strlen(sp + 1));
        fputs("\\fR", f);
    }
    fputc('\n', f);
    roff_text(f, help, strlen(help));
    if (def) {
        fputs(" (default: ", f);
        roff_text(f, def, strlen(def));
        fputc(')', f);
    }
    fputc('\n', f);
}

/* Runs one --help with fd 1 sent to a temporary file; returns the text
 * (malloc'd) or NULL. */
static char *capture_help(int (*run)(int, char **), int argc, char **argv) {
    FILE *tmp = tmpfile();
    if (!tmp) return NULL;
    fflush(stdout);
    int saved = dup(1);
    if (saved < 0 || dup2(fileno(tmp), 1) < 0) {
        fclose(tmp);
        return NULL;
    }
    g_roff_written = 0;
    run(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    long n = ftell(tmp);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (text) {
        rewind(tmp);
        size_t got = fread(text, 1, (size_t)n, tmp);
        text[got] = 0;
    }
    fclose(tmp);
    return text;
}

static void upper(char *dst, const char *s, size_t cap) {
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++) dst[i] = (s[i] >= 'a' && s[i] <= 'z') ? s[i] - 32 : s[i];
    dst[i] = 0;
}

/* One section per subcommand; `bench gemm` and `bench step` have their own
 * flag tables too. */
static int section(const tfm_command *c, const char *sub) {
    char *argv[4] = {(char *)c->name, (char *)(sub ? sub : "--help"), (char *)"--help", NULL};
    int argc = sub ? 3 : 2;
    char *text = capture_help(c->run, argc, argv);
    if (!text) return tfm_cli_fail(1, "help --roff: cannot capture '%s --help'", c->name);
    char title[64], subtitle[64] = "";
    upper(title, c->name, sizeof title);
    if (sub) upper(subtitle, sub, sizeof subtitle);
    printf(".SH \"TFM %s%s%s\"\n", title, sub ? " " : "", subtitle);
    if (!sub) roff_line(stdout, c->help), fputs(".PP\n", stdout);
    if (g_roff_written) {
        fputs(text, stdout);
    } else {
        /* a hand-written help text: keep its layout */
        fputs(".nf\n", stdout);
        for (char *s = text; *s;) {
            char *nl = strchr(s, '\n');
            size_t n = nl ? (size_t)(nl - s) : strlen(s);
            roff_text(stdout, s, n);
            fputc('\n', stdout);
            s += n + (nl != NULL);
        }
        fputs(".fi\n", stdout);
    }
    free(text);
    return 0;
}

int tfm_man_page(const tfm_command *cmds, size_t n) {
    printf(".TH TFM 1 \"\" \"tfm %s\" \"User Commands\"\n", tfm_version());
    puts(".SH NAME\ntfm \\- train and use Transformer translation models (C11, OpenMP)\n"
         ".SH SYNOPSIS\n.B tfm\n.I command\n.RI [ options ]\n.br\n"
         ".B tfm \\-\\-help\n.br\n.B tfm \\-\\-version\n"
         ".SH DESCRIPTION\n"
         ".B tfm\ntrains the encoder\\-decoder Transformer on a CPU: toy tasks (copy, reverse) or\n"
         "a parallel corpus with a joint BPE vocabulary, then translates with greedy or beam\n"
         "search, scores with BLEU and exports to the Hugging Face MarianMT layout.\n"
         "Every subcommand prints its options with\n.BR \\-\\-help ;\n"
         "the sections below are generated from the same tables.\n"
         "Flags take their value as\n.B \\-\\-name value\nor\n.BR \\-\\-name=value ,\n"
         "and\n.B \\-\\-config\n.I FILE\nreads\n.I key = value\nlines (flags on the command "
         "line win).\n.SH COMMANDS");
    for (size_t i = 0; i < n; i++) {
        printf(".TP\n.B %s\n", cmds[i].name);
        roff_line(stdout, cmds[i].help);
    }
    flags_help_roff = 1;
    for (size_t i = 0; i < n; i++) {
        if (section(&cmds[i], NULL)) return 1;
        if (!strcmp(cmds[i].name, "bench") &&
            (section(&cmds[i], "gemm") || section(&cmds[i], "step")))
            return 1;
    }
    flags_help_roff = 0;
    puts(".SH ENVIRONMENT\n"
         ".TP\n.B TFM_KERNELS\n"
         "Which compute kernels to use:\n.B generic\n(the portable C kernels) or one that\n"
         ".B tfm \\-\\-version\nlists as available; by default the fastest this CPU supports.\n"
         ".TP\n.B OMP_NUM_THREADS\nThreads when\n.B \\-\\-threads\nis 0 (the default).\n"
         ".SH EXIT STATUS\n0 on success, 1 on a runtime error (a file that cannot be read, a\n"
         "failed training step), 2 on a usage error. Errors are one line on standard error,\n"
         "naming the file and line or the flag.\n"
         ".SH FILES\nA run directory (\n.BR \\-\\-save )\nholds\n.IR config.txt ,\n"
         ".IR train.log ,\n.IR metrics.csv ,\nthe checkpoints\n.RI ( step_N.tfm ,\n"
         ".IR best.tfm )\nand, for corpora,\n.I bpe.codes\nand\n.IR vocab.txt .\n"
         ".SH SEE ALSO\nThe README of the source distribution; the C library's headers in\n"
         ".IR /usr/include/tfm/ ,\nused with\n.BR \"pkg\\-config \\-\\-cflags \\-\\-libs tfm\" .");
    return fflush(stdout) ? 1 : 0;
}
