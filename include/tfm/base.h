/* tfm/base.h: errors, asserts, counter-based random numbers, threads.
 * The bottom layer: everything else includes it. */
#ifndef TFM_BASE_H
#define TFM_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version; libtfm.so.MAJOR.MINOR carries the soname libtfm.so.MAJOR
 * (the Makefile reads these lines). tfm_version() is the library's own, which
 * can differ from the header a program was compiled with. */
#define TFM_VERSION_MAJOR 0
#define TFM_VERSION_MINOR 1
#define TFM_VERSION_PATCH 0
#define TFM_VERSION_STR_(x) #x
#define TFM_VERSION_STR(x) TFM_VERSION_STR_(x)
#define TFM_VERSION                                                                                \
    TFM_VERSION_STR(TFM_VERSION_MAJOR)                                                             \
    "." TFM_VERSION_STR(TFM_VERSION_MINOR) "." TFM_VERSION_STR(TFM_VERSION_PATCH)
const char *tfm_version(void);

/* Functions that can fail on user input return 0 on success and a non-zero
 * status otherwise, leaving a one-line message for tfm_last_error(). The
 * message names the file and line (or flag) when there is one. */
const char *tfm_last_error(void);
/* The arguments may include tfm_last_error() itself, to prefix a context:
 * tfm_set_error("--init %s: %s", path, tfm_last_error()). */
void tfm_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tfm_clear_error(void);

/* Internal invariants (programmer errors, never user input): abort with
 * file and line. */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define TFM_NORETURN [[noreturn]]
#elif defined(__cplusplus)
#define TFM_NORETURN __attribute__((noreturn))
#else
#define TFM_NORETURN _Noreturn
#endif
#define TFM_ASSERT(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) tfm_assert_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);                   \
    } while (0)
TFM_NORETURN void tfm_assert_fail(const char *file, int line, const char *cond, const char *fmt,
                                  ...);

/* Aligned allocation (64 bytes) that reports failures through tfm_set_error. */
void *tfm_alloc(size_t bytes);
void *tfm_calloc(size_t bytes);
void tfm_free(void *p);

/* Overflow-checked size arithmetic for every size computed from input
 * (flags, config files, checkpoint and export metadata): 0 and *out = the
 * result, or 1 (and *out untouched) when it does not fit. */
static inline int tfm_mul_i64(int64_t a, int64_t b, int64_t *out) {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) return 1;
    *out = r;
    return 0;
}
static inline int tfm_add_i64(int64_t a, int64_t b, int64_t *out) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) return 1;
    *out = r;
    return 0;
}
static inline int tfm_mul_size(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) return 1;
    *out = r;
    return 0;
}
/* The product of n non-negative factors, 1 when it exceeds limit (or a
 * factor is negative, or it overflows). */
int tfm_product_i64(const int64_t *factors, int n, int64_t limit, int64_t *out);

/* Input files. tfm_open_input opens a file for reading and refuses what
 * cannot be read as one (a directory): "<path>: cannot open: <reason>" or
 * "<path>: is a directory". tfm_read_input reads the whole input once into
 * a NUL-terminated buffer (malloc'ed; *len without the NUL), so pipes,
 * FIFOs and /dev/stdin work as well as regular files; read errors are
 * reported as "<path>: read error: <reason>". "-" is not special here. */
FILE *tfm_open_input(const char *path);
/* A file that must be a regular one (checkpoints, a model's vocabulary and
 * codes, config files): opened without blocking first, so that a FIFO
 * without a writer is refused instead of waiting forever. NULL with the
 * error set ("<path>: cannot open: <reason>", "<path>: is a directory",
 * "<path>: not a regular file") and *not_regular = 1 for the last two, so
 * that a caller can word its own message. */
FILE *tfm_open_regular(const char *path, int *not_regular);
/* Paths of any length (no fixed-size buffers on user input): dir + "/" +
 * name, and printf into a string, both malloc'd (free them); NULL with
 * "out of memory" set when that fails. */
char *tfm_path_join(const char *dir, const char *name);
char *tfm_format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* dir + "/" + name into buf (size bytes, e.g. PATH_MAX), refused rather than
 * cut short: 0 ok, else 1 with "<dir>/<name>: path too long" set. */
int tfm_join_into(char *buf, size_t size, const char *dir, const char *name);
int tfm_read_input(const char *path, char **data, size_t *len);
/* The same for a file that must be a regular one (a run's config.txt and
 * metrics.csv, the text model beside a checkpoint): opened with
 * tfm_open_regular, so a FIFO is refused instead of waited on. */
int tfm_read_regular(const char *path, char **data, size_t *len);
/* The same for text whose lines must be at most max_line bytes: a longer
 * one stops the read ("<path>:<line>: line longer than N bytes"), so that
 * /dev/zero or a file without line breaks cannot take all memory. */
int tfm_read_input_lines(const char *path, size_t max_line, char **data, size_t *len);
/* After reading f to its end: 0, or 1 with "<path>: read error: ..." when
 * the stream had an error (EISDIR, EIO). */
int tfm_input_error(FILE *f, const char *path);
/* After getline returned -1 on line `lineno` (errno then in err): 0 at the
 * end of the file, else 1 with "<path>: read error: ..." or, when getline
 * gave up without a stream error (out of memory for a long line),
 * "<path>:<lineno>: cannot read the line: <reason>". */
int tfm_getline_error(FILE *f, const char *path, int64_t lineno, int err);

/* Counter-based random numbers: the value depends only on (key, counter), so
 * results do not depend on thread count or order of evaluation. */
uint64_t tfm_hash64(uint64_t x);                        /* splitmix64 finaliser */
uint64_t tfm_rand_u64(uint64_t key, uint64_t counter);  /* uniform 64 bits */
float tfm_rand_uniform(uint64_t key, uint64_t counter); /* [0, 1) with 24 bits */

/* A small sequential generator with an explicit state (for data order,
 * initialisation). The state is one uint64_t so it is trivially saved. */
typedef struct {
    uint64_t state;
} tfm_rng;
void tfm_rng_seed(tfm_rng *r, uint64_t seed);
uint64_t tfm_rng_next(tfm_rng *r);
double tfm_rng_double(tfm_rng *r);              /* [0, 1) */
uint64_t tfm_rng_below(tfm_rng *r, uint64_t n); /* [0, n) without modulo bias */

/* Threads: a thin wrapper so that code without OpenMP still builds.
 * --threads flags accept 0 (all cores) .. TFM_MAX_THREADS. */
#define TFM_MAX_THREADS 1024
int tfm_num_threads(void);
void tfm_set_num_threads(int n);

/* Wall-clock seconds (monotonic). */
double tfm_now(void);

/* Parallel regions below this much work (roughly flops) run single-threaded. */
#define TFM_PAR_MIN_WORK 32768

#ifdef __cplusplus
}
#endif

#endif
