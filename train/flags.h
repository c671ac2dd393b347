/* Table-driven command-line flags shared by every subcommand:
 * --name VALUE or --name=VALUE; booleans take no value; --config FILE reads
 * "key = value" lines (key = flag name without dashes; # comments), and flags
 * on the command line override the file. Errors name the flag or file:line. */
#ifndef TFM_TRAIN_FLAGS_H
#define TFM_TRAIN_FLAGS_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
    FLAG_INT,
    FLAG_FLOAT,
    FLAG_STR,
    FLAG_BOOL,
    FLAG_F32,
    FLAG_CHOICE,
    FLAG_LIST
} flag_type;

typedef struct {
    const char *name; /* without the leading "--" */
    flag_type type;
    void *value; /* int64_t*, double*, const char**, int*, float*, flag_choice*, flag_list* */
    const char *help;
    int set; /* bit 0: given on the command line, bit 1: in a config file */
} flag_def;

/* FLAG_CHOICE: one of the names (NULL-terminated); *index is its position. */
typedef struct {
    int *index;
    const char *const *names;
} flag_choice;

/* FLAG_LIST: a flag that may be given several times ("--model A --model
 * B"; in a config file one line "model = A B", values separated by spaces);
 * the values in order. */
enum { FLAG_LIST_MAX = 64 };
typedef struct {
    const char *items[FLAG_LIST_MAX];
    int n;
} flag_list;

/* Another spelling of a flag, for the short forms users know from other
 * tools: {"-c", "codes"} makes "-c FILE" mean "--codes FILE". A spelling is
 * matched as a whole word ("-lc"); --help lists it beside the flag. */
typedef struct {
    const char *spelling;
    const char *name; /* the flag_def it stands for */
} flag_alias;

/* Parses argv[1..argc) (argv[0] is the subcommand). Positional arguments are
 * collected into pos (up to max_pos); after "--" every argument is
 * positional. An argument starting with '-' that is no flag is an unknown
 * flag where positionals are taken ("-" alone is one: stdin). Returns 0, 1
 * after printing --help, or 2 after printing a one-line error that names the
 * flag as it was spelt. */
int flags_parse(flag_def *flags, int n_flags, int argc, char **argv, const char *usage, char **pos,
                int max_pos, int *n_pos);
int flags_parse_aliases(flag_def *flags, int n_flags, const flag_alias *aliases, int n_aliases,
                        int argc, char **argv, const char *usage, char **pos, int max_pos,
                        int *n_pos);
void flags_help(FILE *f, const flag_def *flags, int n_flags, const char *usage);
void flags_help_aliases(FILE *f, const flag_def *flags, int n_flags, const flag_alias *aliases,
                        int n_aliases, const char *usage);
/* Set by `tfm help --roff` (man.c): flags_help then writes man-page markup
 * with man_usage and man_flag (def NULL: no default). */
extern int flags_help_roff;
void man_usage(FILE *f, const char *usage);
void man_flag(FILE *f, const char *name, const char *help, const char *def);
/* Parses a config file into the flags (used by flags_parse for --config). */
int flags_read_config(flag_def *flags, int n_flags, const char *path);
/* 0 when flags_read_config would read back every value flags_write_config
 * writes; else 2 after a one-line error naming the flag and the value. */
int flags_check_recordable(const flag_def *flags, int n_flags);
/* Writes the resolved configuration as "key = value" lines. */
void flags_write_config(FILE *f, const flag_def *flags, int n_flags);
flag_def *flags_find(flag_def *flags, int n_flags, const char *name);
/* "run.cfg:3" when the flag name (len bytes) took its value from the config
 * file of the last flags_parse, else NULL: tfm_cli_fail reports a message
 * "--name..." about such a value as "run.cfg:3: name...". */
const char *flags_file_origin(const char *name, size_t len);

#endif
