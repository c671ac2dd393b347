/* tfm: the command-line program. Dispatches to one file per subcommand. */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "flags.h"
#include "tfm/atomic_file.h"
#include "tfm/base.h"
#include "tfm/kernels.h"

typedef tfm_command command;

static const command COMMANDS[] = {
    {"train", tfm_cmd_train, "train a model on a toy task (copy, reverse) or a parallel corpus"},
    {"translate", tfm_cmd_translate, "translate stdin with a trained or exported model"},
    {"bpe", tfm_cmd_bpe, "learn or apply a byte-pair-encoding subword model"},
    {"bleu", tfm_cmd_bleu, "corpus BLEU of stdin against reference files (sacreBLEU 13a)"},
    {"average", tfm_cmd_average, "average the weights of several checkpoints into one"},
    {"export", tfm_cmd_export, "export a checkpoint as safetensors + config + tokenizer"},
    {"data", tfm_cmd_data, "generate a dataset (the English/German numbers corpus)"},
    {"bench", tfm_cmd_bench, "benchmark the GEMM or a training step"},
    {"plot", tfm_cmd_plot, "draw a run's learning curves as SVG"},
    {"attention", tfm_cmd_attention, "draw attention weights for one sentence as SVG"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

int cli_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (!strcmp(a, b)) return 1;
    int ha = stat(a, &sa) == 0, hb = stat(b, &sb) == 0;
    if (ha || hb) return ha && hb && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    /* neither exists yet (two outputs): the same name in the same directory,
     * links followed as the writer follows them ("cc" and "./cc") */
    char *ta = tfm_atomic_target(a), *tb = tfm_atomic_target(b);
    char *da = ta ? tfm_format("%s", ta) : NULL, *db = tb ? tfm_format("%s", tb) : NULL;
    int same = 0;
    if (da && db && !strcmp(basename(ta), basename(tb)))
        same = stat(dirname(da), &sa) == 0 && stat(dirname(db), &sb) == 0 &&
               sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    free(ta);
    free(tb);
    free(da);
    free(db);
    return same;
}

int tfm_cli_fail(int status, const char *fmt, ...) {
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *msg = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (msg) vsnprintf(msg, (size_t)n + 1, fmt, again);
    va_end(again);
    if (!msg) {
        fputs("tfm: out of memory\n", stderr);
        return status;
    }
    /* "--steps: must not be negative" about a value from a config file
     * names the file and line: "run.cfg:3: steps: must not be negative" */
    const char *origin =
        !strncmp(msg, "--", 2) ? flags_file_origin(msg + 2, strcspn(msg + 2, ": =")) : NULL;
    if (origin)
        fprintf(stderr, "tfm: %s: %s\n", origin, msg + 2);
    else
        fprintf(stderr, "tfm: %s\n", msg);
    free(msg);
    return status;
}

void cli_note_bf16(tfm_precision p) {
    static int said;
    if (p != TFM_BF16 || said || strcmp(tfm_gemm_bf16_kernel_name(), "emulated")) return;
    said = 1;
    fprintf(stderr, "tfm: note: --precision bf16 runs the emulated bf16 GEMM here (no "
                    "AVX512_BF16, or TFM_BF16_EMULATE=1): the same results, several times slower "
                    "than fp32\n");
}

static void usage(FILE *f) {
    fprintf(f, "usage: tfm <command> [options]   (tfm <command> --help for its options)\n\n"
               "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
    fprintf(f, "\n  --help     this list\n  --version  print the version\n");
}

/* Every command's output ends here: data still in stdio's buffer, or a write
 * that already failed (a full disk, a closed pipe reader: ferror), must not
 * go unnoticed behind exit status 0. */
static int finish_stdout(int status) {
    errno = 0;
    int bad = fflush(stdout) != 0 || ferror(stdout);
    int err = errno;
    if (fclose(stdout) != 0 && !bad) bad = 1, err = errno;
    if (!bad || status) return status; /* a failed command has said why */
    fprintf(stderr, "tfm: write error on standard output%s%s\n", err ? ": " : "",
            err ? strerror(err) : "");
    return status ? status : 1;
}

static int run(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    /* TFM_KERNELS naming kernels this build or CPU lacks is a usage error */
    if (tfm_kernels_init()) return tfm_cli_fail(2, "%s", tfm_last_error());
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        (!strcmp(argv[1], "help") && argc == 2)) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("tfm %s\nkernels: %s (this CPU runs: %s; TFM_KERNELS=portable forces the "
               "portable ones)\n",
               tfm_version(), tfm_kernels_name(), tfm_kernels_available());
        return 0;
    }
    /* hidden: the man page, generated from the flag tables (make man) */
    if (!strcmp(argv[1], "help") && argc == 3 && !strcmp(argv[2], "--roff"))
        return tfm_man_page(COMMANDS, N_COMMANDS);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    return tfm_cli_fail(2, "unknown command '%s' (tfm --help lists them)", argv[1]);
}

int main(int argc, char **argv) { return finish_stdout(run(argc, argv)); }
