/* The tfm program's subcommands: one file each, dispatched by main.c. Each
 * returns the process exit status (0 ok, 1 runtime error, 2 usage error). */
#ifndef TFM_TRAIN_COMMANDS_H
#define TFM_TRAIN_COMMANDS_H

#include <stddef.h>

#include "tfm/kernels.h"

int tfm_cmd_train(int argc, char **argv);
int tfm_cmd_translate(int argc, char **argv);
int tfm_cmd_bench(int argc, char **argv);
int tfm_cmd_bleu(int argc, char **argv);
int tfm_cmd_bpe(int argc, char **argv);
int tfm_cmd_export(int argc, char **argv);
int tfm_cmd_plot(int argc, char **argv);
int tfm_cmd_attention(int argc, char **argv);
int tfm_cmd_data(int argc, char **argv);
int tfm_cmd_average(int argc, char **argv);

/* main.c's command table (also walked by the man page generator). */
typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} tfm_command;

/* man.c: writes tfm(1) in roff to stdout from the commands' --help (their
 * flag tables); `tfm help --roff`. Returns the exit status. */
int tfm_man_page(const tfm_command *cmds, size_t n);

/* dist.c: data parallelism for tfm train: a tfm_dist over MPI when the
 * program was built with `make MPI=1` and started by mpirun, else NULL;
 * cli_dist_end finishes it (aborting the job when a rank failed alone) and
 * returns rc. */
typedef struct tfm_dist tfm_dist;
tfm_dist *cli_dist_start(void);
int cli_dist_end(tfm_dist *d, int rc);

/* 1 when paths a and b name the same file (the same string, or the same
 * device and inode), else 0: an output that would replace an input. */
int cli_same_file(const char *a, const char *b);

/* On a CPU without AVX512_BF16, --precision bf16 runs the emulated bf16
 * GEMM (the same bits, several times slower than fp32): says so once on
 * stderr, so that a config made on another machine does not crawl silently.
 * Nothing for fp32 or on a CPU with the instruction. */
void cli_note_bf16(tfm_precision p);

/* Print "tfm: <message>" to stderr and return 1 (or 2 for usage). */
int tfm_cli_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
