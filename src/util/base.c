/* Errors, asserts, allocation, counter-based RNG, threads, clock. */
#include "tfm/base.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "buf.h" /* tfm_buf_read_all */

static _Thread_local char g_error[3 * 4096]; /* room for two PATH_MAX paths and the reason */

const char *tfm_last_error(void) { return g_error[0] ? g_error : "unknown error"; }

void tfm_set_error(const char *fmt, ...) {
    /* formatted aside first: the arguments may include tfm_last_error()
     * itself ("--init X: %s"), which vsnprintf into g_error would overwrite
     * while reading it */
    char msg[sizeof g_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(g_error, msg, sizeof msg);
}

void tfm_clear_error(void) { g_error[0] = 0; }

_Noreturn void tfm_assert_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "tfm: internal error at %s:%d: assertion '%s' failed", file, line, cond);
    if (fmt && fmt[0]) {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
    abort();
}

void *tfm_alloc(size_t bytes) {
    if (bytes == 0) bytes = 64;
    /* rounding up must not wrap (SIZE_MAX - 30 would become 0): refused */
    if (bytes > SIZE_MAX - 63) {
        tfm_set_error("out of memory: could not allocate %zu bytes", bytes);
        return NULL;
    }
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (!p) tfm_set_error("out of memory: could not allocate %zu bytes", bytes);
    return p;
}

void *tfm_calloc(size_t bytes) {
    void *p = tfm_alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void tfm_free(void *p) { free(p); }

int tfm_product_i64(const int64_t *factors, int n, int64_t limit, int64_t *out) {
    int64_t p = 1;
    for (int i = 0; i < n; i++)
        if (factors[i] < 0 || tfm_mul_i64(p, factors[i], &p) || p > limit) return 1;
    *out = p;
    return 0;
}

FILE *tfm_open_input(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        tfm_set_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        tfm_set_error("%s: is a directory", path);
        return NULL;
    }
    return f;
}

int tfm_getline_error(FILE *f, const char *path, int64_t lineno, int err) {
    if (ferror(f)) return tfm_input_error(f, path);
    if (feof(f)) return 0;
    tfm_set_error("%s:%lld: cannot read the line: %s", path, (long long)lineno,
                  strerror(err ? err : ENOMEM));
    return 1;
}

FILE *tfm_open_regular(const char *path, int *not_regular) {
    *not_regular = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int saved = errno;
        tfm_set_error("%s: cannot open: %s", path, strerror(saved));
        errno = saved;
        return NULL;
    }
    struct stat st;
    int known = fstat(fd, &st) == 0;
    if (!known || !S_ISREG(st.st_mode)) {
        int dir = known && S_ISDIR(st.st_mode);
        close(fd);
        *not_regular = 1;
        tfm_set_error("%s: %s", path, dir ? "is a directory" : "not a regular file");
        errno = dir ? EISDIR : 0;
        return NULL;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int saved = errno;
        close(fd);
        tfm_set_error("%s: cannot open: %s", path, strerror(saved));
        errno = saved;
    }
    return f;
}

int tfm_input_error(FILE *f, const char *path) {
    if (!ferror(f)) return 0;
    tfm_set_error("%s: read error: %s", path, strerror(errno ? errno : EIO));
    return 1;
}

char *tfm_format(const char *fmt, ...) {
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) vsnprintf(s, (size_t)n + 1, fmt, again);
    va_end(again);
    if (!s) tfm_set_error("out of memory");
    return s;
}

char *tfm_path_join(const char *dir, const char *name) { return tfm_format("%s/%s", dir, name); }

int tfm_join_into(char *buf, size_t size, const char *dir, const char *name) {
    int n = snprintf(buf, size, "%s/%s", dir, name);
    if (n >= 0 && (size_t)n < size) return 0;
    return tfm_set_error("%s/%s: path too long (over %zu bytes)", dir, name, size - 1), 1;
}

static int read_input(const char *path, size_t max_line, int regular, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    int not_regular;
    FILE *f = regular ? tfm_open_regular(path, &not_regular) : tfm_open_input(path);
    if (!f) return 1;
    tfm_buf b = {0};
    errno = 0;
    int64_t long_line = 0;
    int rc = max_line ? tfm_buf_read_all_lines(&b, f, max_line, &long_line)
                      : tfm_buf_read_all(&b, f);
    if (rc == -2) {
        fclose(f);
        tfm_buf_free(&b);
        return tfm_set_error("%s:%lld: line longer than %zu bytes", path, (long long)long_line,
                             max_line),
               1;
    }
    if (rc == 0) tfm_buf_put(&b, 0); /* the terminating NUL */
    if (b.oom)
        tfm_set_error("%s: out of memory reading the file", path), rc = 1;
    else if (tfm_input_error(f, path))
        rc = 1;
    fclose(f);
    if (rc) {
        tfm_buf_free(&b);
        return 1;
    }
    *data = b.p;
    *len = b.len - 1;
    return 0;
}

int tfm_read_input(const char *path, char **data, size_t *len) {
    return read_input(path, 0, 0, data, len);
}

int tfm_read_input_lines(const char *path, size_t max_line, char **data, size_t *len) {
    return read_input(path, max_line ? max_line : 1, 0, data, len);
}

int tfm_read_regular(const char *path, char **data, size_t *len) {
    return read_input(path, 0, 1, data, len);
}

uint64_t tfm_hash64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t tfm_rand_u64(uint64_t key, uint64_t counter) {
    return tfm_hash64(tfm_hash64(key) ^ (counter * 0xD1342543DE82EF95ull + 0x2545F4914F6CDD1Dull));
}

float tfm_rand_uniform(uint64_t key, uint64_t counter) {
    return (float)(tfm_rand_u64(key, counter) >> 40) * (1.0f / 16777216.0f);
}

void tfm_rng_seed(tfm_rng *r, uint64_t seed) { r->state = tfm_hash64(seed ^ 0x5DEECE66Dull); }

uint64_t tfm_rng_next(tfm_rng *r) {
    r->state += 0x9E3779B97F4A7C15ull;
    uint64_t z = r->state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double tfm_rng_double(tfm_rng *r) {
    return (double)(tfm_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t tfm_rng_below(tfm_rng *r, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = tfm_rng_next(r);
    while (x >= limit);
    return x % n;
}

int tfm_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void tfm_set_num_threads(int n) {
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

double tfm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *tfm_version(void) { return TFM_VERSION; }
