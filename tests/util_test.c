#include "util_test.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tfm/base.h"

const char *tfm_test_path(const char *rel) {
    static _Thread_local char buf[8][PATH_MAX + 512];
    static _Thread_local int slot;
    char *out = buf[slot++ & 7];
    const char *root = getenv("TFM_ROOT");
    /* without TFM_ROOT (a test run by hand from the repository root): the
     * working directory as an absolute path, so that the path still holds
     * in a command that changes directory first */
    static _Thread_local char cwd[PATH_MAX];
    if (!(root && root[0])) root = getcwd(cwd, sizeof cwd) ? cwd : ".";
    snprintf(out, sizeof buf[0], "%s/%s", root, rel);
    return out;
}

const char *tfm_test_bin(void) {
    const char *bin = getenv("TFM_BIN");
    return bin && bin[0] ? bin : tfm_test_path("build/tfm");
}

static uint32_t rd_u32(FILE *f, int *ok) {
    unsigned char b[4];
    if (fread(b, 1, 4, f) != 4) {
        *ok = 0;
        return 0;
    }
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

void tfm_fixture_load(tfm_fixture *fx, const char *file) {
    char rel[512];
    snprintf(rel, sizeof rel, "tests/fixtures/%s", file);
    const char *path = tfm_test_path(rel);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "fixture %s missing (run tests/gen_fixtures.py)", path);
    char magic[8];
    int ok = fread(magic, 1, 8, f) == 8 && memcmp(magic, "TFMFIX01", 8) == 0;
    ck_assert_msg(ok, "fixture %s: bad magic", path);
    uint32_t version = rd_u32(f, &ok);
    ck_assert_msg(ok && version == 1, "fixture %s: version %u", path, version);
    uint32_t count = rd_u32(f, &ok);
    ck_assert_msg(ok && count < 100000, "fixture %s: bad count", path);
    fx->count = (int)count;
    fx->t = calloc(count, sizeof *fx->t);
    for (uint32_t i = 0; i < count; i++) {
        tfm_fixture_tensor *t = &fx->t[i];
        uint32_t len = rd_u32(f, &ok);
        ck_assert_msg(ok && len < sizeof t->name, "fixture %s: bad name length", path);
        ok = fread(t->name, 1, len, f) == len;
        t->name[len] = 0;
        t->dtype = (int)rd_u32(f, &ok);
        t->ndim = (int)rd_u32(f, &ok);
        ck_assert_msg(ok && t->ndim >= 0 && t->ndim <= 4 && t->dtype >= 0 && t->dtype <= 1,
                      "fixture %s: tensor %s header", path, t->name);
        t->n = 1;
        for (int d = 0; d < t->ndim; d++) {
            int64_t s = 0;
            ok = ok && fread(&s, 8, 1, f) == 1;
            t->shape[d] = s;
            t->n *= s;
        }
        t->data = malloc((size_t)(t->n ? t->n : 1) * 4);
        ok = ok && fread(t->data, 4, (size_t)t->n, f) == (size_t)t->n;
        ck_assert_msg(ok, "fixture %s: tensor %s truncated", path, t->name);
    }
    fclose(f);
}

void tfm_fixture_free(tfm_fixture *fx) {
    for (int i = 0; i < fx->count; i++) free(fx->t[i].data);
    free(fx->t);
    fx->t = NULL;
    fx->count = 0;
}

const tfm_fixture_tensor *tfm_fixture_get(const tfm_fixture *fx, const char *name) {
    for (int i = 0; i < fx->count; i++)
        if (!strcmp(fx->t[i].name, name)) return &fx->t[i];
    ck_abort_msg("fixture tensor %s missing", name);
    return NULL;
}

const float *tfm_fixture_f32(const tfm_fixture *fx, const char *name, int64_t expect_n) {
    const tfm_fixture_tensor *t = tfm_fixture_get(fx, name);
    ck_assert_msg(t->dtype == 0, "fixture tensor %s is not f32", name);
    ck_assert_msg(expect_n < 0 || t->n == expect_n,
                  "fixture tensor %s has %lld elements, want %lld", name, (long long)t->n,
                  (long long)expect_n);
    return t->data;
}

const int32_t *tfm_fixture_i32(const tfm_fixture *fx, const char *name, int64_t expect_n) {
    const tfm_fixture_tensor *t = tfm_fixture_get(fx, name);
    ck_assert_msg(t->dtype == 1, "fixture tensor %s is not i32", name);
    ck_assert_msg(expect_n < 0 || t->n == expect_n,
                  "fixture tensor %s has %lld elements, want %lld", name, (long long)t->n,
                  (long long)expect_n);
    return t->data;
}

int tfm_allclose(const char *what, const float *got, const float *want, int64_t n, float atol,
                 float rtol) {
    double max_diff = 0;
    int64_t worst = -1, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= atol + rtol * fabs((double)want[i]))) {
            bad++;
            if (worst < 0) worst = i;
        }
        if (d > max_diff || isnan(d)) max_diff = isnan(d) ? INFINITY : d;
    }
    printf("  %-40s max |diff| = %.3g over %lld values%s\n", what, max_diff, (long long)n,
           bad ? "  <-- FAIL" : "");
    if (bad)
        printf("    %lld out of tolerance, first at %lld: got %.9g want %.9g\n", (long long)bad,
               (long long)worst, got[worst], want[worst]);
    fflush(stdout);
    return bad == 0;
}

void tfm_test_fill(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * tfm_rand_uniform(seed, (uint64_t)i);
}

const char *tfm_test_tmpdir(const char *tag) {
    static char buf[8][256];
    static int slot;
    char *out = buf[slot++ & 7];
    snprintf(out, 256, "/tmp/tfm-test-%s-XXXXXX", tag);
    ck_assert_msg(mkdtemp(out) != NULL, "mkdtemp failed");
    return out;
}

char *tfm_test_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - 1 - n, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            buf = realloc(buf, cap *= 2);
            ck_assert_ptr_nonnull(buf);
        }
    }
    ck_assert_msg(!ferror(f), "cannot read %s", path);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static FILE *g_stdout_file;
static int g_stdout_saved = -1;

void tfm_test_stdout_begin(void) {
    ck_assert_msg(g_stdout_saved < 0, "tfm_test_stdout_begin: already capturing");
    fflush(stdout);
    g_stdout_file = tmpfile();
    ck_assert_ptr_nonnull(g_stdout_file);
    g_stdout_saved = dup(1);
    ck_assert_int_ge(g_stdout_saved, 0);
    ck_assert_int_ge(dup2(fileno(g_stdout_file), 1), 0);
}

char *tfm_test_stdout_end(void) {
    ck_assert_msg(g_stdout_saved >= 0, "tfm_test_stdout_end: not capturing");
    fflush(stdout);
    dup2(g_stdout_saved, 1);
    close(g_stdout_saved);
    g_stdout_saved = -1;
    long n = ftell(g_stdout_file);
    ck_assert_int_ge(n, 0);
    char *text = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(text);
    rewind(g_stdout_file);
    size_t got = fread(text, 1, (size_t)n, g_stdout_file);
    text[got] = 0;
    fclose(g_stdout_file);
    g_stdout_file = NULL;
    return text;
}

const tfm_toy_config tfm_test_tiny_task = {TFM_TOY_COPY, 8, 1, 5, 0};

tfm_model_config tfm_test_tiny_model(void) {
    tfm_model_config c;
    tfm_model_config_default(&c);
    c.vocab = 8;
    c.d_model = 16;
    c.n_heads = 2;
    c.d_ff = 32;
    c.enc_layers = c.dec_layers = 1;
    c.dropout = 0.1f;
    return c;
}

tfm_train_opts tfm_test_tiny_opts(int64_t steps, uint64_t seed) {
    tfm_train_opts o;
    tfm_train_opts_default(&o);
    o.steps = steps;
    o.seed = seed;
    o.schedule.lr = 0.5;
    o.schedule.warmup = 10;
    o.threads = 1;
    o.quiet = 1;
    return o;
}

void tfm_test_numbers_corpus_write(const char *dir) {
    ck_assert_int_eq(mkdir(dir, 0777), 0);
    ck_assert_msg(tfm_numbers_corpus_write(dir, 1, 60, 8, 0) == 0, "%s", tfm_last_error());
}

tfm_corpus_task tfm_test_numbers_task(const char *dir, tfm_test_corpus_files *files) {
    const char *names[4] = {"train.de", "train.en", "valid.de", "valid.en"};
    for (int i = 0; i < 4; i++)
        snprintf(files->path[i], sizeof files->path[i], "%s/%s", dir, names[i]);
    return (tfm_corpus_task){.src_train = files->path[0],
                             .tgt_train = files->path[1],
                             .src_valid = files->path[2],
                             .tgt_valid = files->path[3],
                             .bpe_merges = 40,
                             .batch_tokens = 160,
                             .max_tokens = 100,
                             .valid_max = 4,
                             .decode = {.beam = 1, .alpha = 0.6, .batch = 64}};
}

int tfm_test_count_lines(const char *text, const char *prefix) {
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, prefix, len)) n++;
    return n;
}

int tfm_test_run(const char *cmd, char *out, size_t cap) {
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t used = 0;
    if (out && cap) out[0] = 0;
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, p)) > 0) {
        if (out && used + 1 < cap) {
            size_t take = got < cap - 1 - used ? got : cap - 1 - used;
            memcpy(out + used, chunk, take);
            used += take;
            out[used] = 0;
        }
    }
    int st = pclose(p);
    if (st == -1) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

void tfm_test_skip_note(const char *test_fn, const char *fmt, ...) {
    /* START_TEST(name) defines name_fn: report the test's own name */
    size_t len = strlen(test_fn);
    if (len > 3 && !strcmp(test_fn + len - 3, "_fn")) len -= 3;
    printf("SKIP: %.*s: ", (int)len, test_fn);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

int tfm_test_main(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

#if defined(__SANITIZE_ADDRESS__)
#define TFM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TFM_TEST_ASAN 1
#endif
#endif

static struct rlimit g_saved_as;
static int g_as_limited;

int tfm_test_limit_memory(size_t extra) {
#ifdef TFM_TEST_ASAN
    (void)extra;
    return -1;
#else
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0;
    int ok = f && fscanf(f, "%llu", &pages) == 1;
    if (f) fclose(f);
    if (!ok || getrlimit(RLIMIT_AS, &g_saved_as) != 0) return -1;
    struct rlimit rl = g_saved_as;
    rl.rlim_cur = (rlim_t)(pages * (unsigned long long)sysconf(_SC_PAGESIZE) + extra);
    if (g_saved_as.rlim_cur != RLIM_INFINITY && rl.rlim_cur > g_saved_as.rlim_cur) return -1;
    if (setrlimit(RLIMIT_AS, &rl) != 0) return -1;
    g_as_limited = 1;
    return 0;
#endif
}

void tfm_test_unlimit_memory(void) {
    if (g_as_limited) setrlimit(RLIMIT_AS, &g_saved_as);
    g_as_limited = 0;
}
