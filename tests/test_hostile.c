/* The hostile-input catalogue: every line of tests/hostile/NAME.cases is one test.
 *
 * A line is four fields separated by " | " (space, bar, space); the command
 * is the rest of the line, so it may contain " | " itself:
 *
 *     EXIT | PATTERN | UNCHANGED | COMMAND
 *
 *   EXIT       the exit status the command must end with (tfm: 0 ok, 1 runtime
 *              error, 2 usage error; a shell line may have others)
 *   PATTERN    a POSIX extended regular expression the first line of stderr
 *              must match; "-" means stderr must be empty, "*" anything
 *   UNCHANGED  space-separated paths (relative to the case directory) whose
 *              checksum must be the same before and after: a file's bytes, a
 *              directory's whole tree (names, types, bytes), a symlink's target,
 *              a device's number; a path that does not exist must not appear.
 *              "-" for none
 *   COMMAND    run by /bin/sh in a fresh copy of the fixtures (made once by
 *              tests/hostile/setup.sh), stdin from /dev/null, with $TFM the
 *              program under test and $ROOT the repository. A case that needs
 *              something the machine does not allow (root, mknod, a tmpfs)
 *              prints "skip: <reason>" on stdout and exits 77.
 *
 * Crafted checkpoints: `$CRAFT IN OUT EDIT...` (this program with "craft")
 * copies checkpoint IN to OUT with its metadata or tensor table edited and
 * a valid CRC, so the checks behind the checksum are reached. EDITs:
 *   set KEY VALUE    set (or add) a metadata line "KEY = VALUE"
 *   del KEY          remove the metadata line of KEY
 *   shape I D0,D1..  give tensor I (from 0) that shape (rank = count of dims)
 *   raw TEXT         append TEXT (with \n for newlines) to the metadata as is
 *
 * Under the sanitizer build (TFM_BIN=build/san/tfm) leaks, memory errors and
 * undefined behaviour end the program with exit 86/87, which no case expects. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tfm/base.h"
#include "tfm/checkpoint.h"
#include "util_test.h"

typedef struct {
    char where[400]; /* tests/hostile/x.cases:12 */
    int exit_code;
    char *pattern, *unchanged, *command;
} hostile_case;

static hostile_case *cases;
static int n_cases, cap_cases;
static char fixtures[600], scratch[512];

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

static char *dup_str(const char *s) {
    char *d = malloc(strlen(s) + 1);
    if (!d) abort();
    return strcpy(d, s);
}

/* Reads one .cases file; exits on a malformed line (a broken table is a bug
 * in the tests, not a failing case). */
static void load_cases(const char *path, const char *label) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
        exit(1);
    }
    char line[8192];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *field[4];
        field[0] = s;
        for (int i = 1; i < 4; i++) {
            char *bar = strstr(field[i - 1], " | ");
            if (!bar) {
                fprintf(stderr, "%s:%d: needs 'EXIT | PATTERN | UNCHANGED | COMMAND'\n", path,
                        lineno);
                exit(1);
            }
            *bar = 0;
            field[i] = bar + 3;
        }
        char *end;
        long code = strtol(trim(field[0]), &end, 10);
        if (*end || code < 0 || code > 255) {
            fprintf(stderr, "%s:%d: bad exit status '%s'\n", path, lineno, field[0]);
            exit(1);
        }
        if (n_cases == cap_cases) {
            cap_cases = cap_cases ? 2 * cap_cases : 256;
            cases = realloc(cases, (size_t)cap_cases * sizeof *cases);
            if (!cases) abort();
        }
        hostile_case *c = &cases[n_cases++];
        snprintf(c->where, sizeof c->where, "%s:%d", label, lineno);
        c->exit_code = (int)code;
        c->pattern = dup_str(trim(field[1]));
        c->unchanged = dup_str(trim(field[2]));
        c->command = dup_str(trim(field[3]));
        regex_t re;
        if (strcmp(c->pattern, "-") && strcmp(c->pattern, "*") &&
            regcomp(&re, c->pattern, REG_EXTENDED | REG_NOSUB)) {
            fprintf(stderr, "%s:%d: bad regular expression '%s'\n", path, lineno, c->pattern);
            exit(1);
        } else if (strcmp(c->pattern, "-") && strcmp(c->pattern, "*")) {
            regfree(&re);
        }
    }
    fclose(f);
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* CRC-32C of what path is: type, bytes, target or device number; a
 * directory recursively in name order. Missing paths hash to a constant. */
static uint32_t digest(uint32_t crc, const char *path) {
    struct stat st;
    if (lstat(path, &st)) return tfm_crc32c(crc, "missing", 7);
    char tag[64];
    snprintf(tag, sizeof tag, "mode %o", (unsigned)(st.st_mode & S_IFMT));
    crc = tfm_crc32c(crc, tag, strlen(tag));
    if (S_ISLNK(st.st_mode)) {
        char target[4096];
        ssize_t n = readlink(path, target, sizeof target);
        return tfm_crc32c(crc, target, n > 0 ? (size_t)n : 0);
    }
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
        snprintf(tag, sizeof tag, "dev %u:%u", major(st.st_rdev), minor(st.st_rdev));
        return tfm_crc32c(crc, tag, strlen(tag));
    }
    if (S_ISREG(st.st_mode)) {
        FILE *f = fopen(path, "rb");
        if (!f) return tfm_crc32c(crc, "unreadable", 10);
        char buf[65536];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) crc = tfm_crc32c(crc, buf, got);
        fclose(f);
        return crc;
    }
    if (S_ISDIR(st.st_mode)) {
        struct dirent **list;
        int n = scandir(path, &list, NULL, by_name);
        for (int i = 0; i < n; i++) {
            const char *name = list[i]->d_name;
            if (strcmp(name, ".") && strcmp(name, "..")) {
                char sub[4096];
                snprintf(sub, sizeof sub, "%s/%s", path, name);
                crc = tfm_crc32c(crc, name, strlen(name) + 1);
                crc = digest(crc, sub);
            }
            free(list[i]);
        }
        if (n >= 0) free(list);
    }
    return crc; /* FIFOs and sockets: the type is all there is */
}

/* Digests of each space-separated path of list, relative to dir. */
static int digest_list(const char *dir, const char *list, uint32_t *out, int cap) {
    if (!strcmp(list, "-")) return 0;
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", list);
    int n = 0;
    for (char *tok = strtok(copy, " \t"); tok && n < cap; tok = strtok(NULL, " \t")) {
        char path[4096];
        if (tok[0] == '/')
            snprintf(path, sizeof path, "%s", tok);
        else
            snprintf(path, sizeof path, "%s/%s", dir, tok);
        out[n++] = digest(0, path);
    }
    return n;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return dup_str("");
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) abort();
    size_t got;
    while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            /* the head is all the checks need; keep reading only the start */
            break;
        }
    }
    buf[len] = 0;
    fclose(f);
    return buf;
}

static int run_shell(const char *cmd) {
    int st = system(cmd);
    if (st == -1) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* SIGKILL to the process group the case's script recorded, if any process
 * of it is left (timeout, its leader, has exited by now) */
static void kill_leftovers(const char *dir) {
    char path[800];
    snprintf(path, sizeof path, "%s/pgid", dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    long pg = 0;
    if (fscanf(f, "%ld", &pg) == 1 && pg > 1 && pg != (long)getpgrp()) kill((pid_t)-pg, SIGKILL);
    fclose(f);
}

START_TEST(test_case) {
    const hostile_case *c = &cases[_i];
    char dir[600], work[700], cmd[16384];
    snprintf(dir, sizeof dir, "%s/case-%d", scratch, _i);
    snprintf(work, sizeof work, "%s/w", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp -a '%s/.' '%s/'", dir, work,
             fixtures, work);
    ck_assert_msg(run_shell(cmd) == 0, "%s: cannot copy the fixtures", c->where);

    uint32_t before[32], after[32];
    int n_files = digest_list(work, c->unchanged, before, 32);

    /* the command goes through a file, so no quoting of it is needed */
    char script[700];
    snprintf(script, sizeof script, "%s/cmd.sh", dir);
    FILE *f = fopen(script, "w");
    ck_assert_ptr_nonnull(f);
    /* the process group (timeout's) into dir/pgid, to kill what outlives the
     * script: timeout returns when the shell dies, and a process that
     * ignored its SIGTERM would run on (silent where /proc is missing) */
    fprintf(f,
            "{ read -r _p _c _s _pp _pg _rest </proc/$$/stat && echo \"$_pg\" >'%s/pgid'; } "
            "2>/dev/null\n%s\n",
            dir, c->command);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && timeout -k 5 60 /bin/sh '%s' </dev/null >'%s/stdout' 2>'%s/stderr'", work,
             script, dir, dir);
    int rc = run_shell(cmd);
    kill_leftovers(dir);

    char path[800];
    snprintf(path, sizeof path, "%s/stdout", dir);
    char *out = read_all(path);
    snprintf(path, sizeof path, "%s/stderr", dir);
    char *err = read_all(path);

    if (rc == 77 && c->exit_code != 77 && !strncmp(out, "skip: ", 6)) {
        printf("%s: %.*s", c->where, (int)strcspn(out, "\n") + 1, out);
        free(out);
        free(err);
        run_shell((snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir), cmd));
        return;
    }
    ck_assert_msg(rc != 124 && rc != 124 + 128, "%s: timed out after 60 s: %s", c->where,
                  c->command);
    ck_assert_msg(rc == c->exit_code, "%s: exit %d, want %d: %s\nstderr: %.2000s", c->where, rc,
                  c->exit_code, c->command, err);

    char first[4096];
    snprintf(first, sizeof first, "%.*s", (int)strcspn(err, "\n"), err);
    if (!strcmp(c->pattern, "-")) {
        ck_assert_msg(err[0] == 0, "%s: stderr should be empty: %s\nstderr: %.2000s", c->where,
                      c->command, err);
    } else if (strcmp(c->pattern, "*")) {
        regex_t re;
        ck_assert_int_eq(regcomp(&re, c->pattern, REG_EXTENDED | REG_NOSUB), 0);
        int miss = regexec(&re, first, 0, NULL, 0);
        regfree(&re);
        ck_assert_msg(!miss, "%s: first stderr line does not match /%s/: %s\nstderr: %.2000s",
                      c->where, c->pattern, c->command, err);
    }
    int n_after = digest_list(work, c->unchanged, after, 32);
    ck_assert_int_eq(n_after, n_files);
    for (int i = 0; i < n_files; i++) {
        if (before[i] != after[i]) {
            char copy[4096], *tok = NULL;
            snprintf(copy, sizeof copy, "%s", c->unchanged);
            tok = strtok(copy, " \t");
            for (int j = 0; j < i && tok; j++) tok = strtok(NULL, " \t");
            ck_abort_msg("%s: %s changed: %s", c->where, tok ? tok : "?", c->command);
        }
    }
    free(out);
    free(err);
    run_shell((snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir), cmd));
}
END_TEST

/* Leaks and memory errors in the program under test must fail the case,
 * with exit statuses no case expects. Settings already in the environment
 * come after ours and win. */
static void sanitizer_env(const char *name, const char *ours) {
    const char *old = getenv(name);
    char buf[2048];
    snprintf(buf, sizeof buf, "%s%s%s", ours, old && *old ? ":" : "", old ? old : "");
    setenv(name, buf, 1);
}

/* ---- the checkpoint crafter ------------------------------------------------ */
typedef struct {
    unsigned char *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static int craft(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: craft IN OUT EDIT...\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) return perror(argv[2]), 1;
    bytes in = {0};
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) put(&in, buf, got);
    fclose(f);
    if (in.n < 40 || memcmp(in.p, "TFMCKPT1", 8))
        return fprintf(stderr, "craft: not a checkpoint\n"), 1;
    uint64_t meta_len;
    memcpy(&meta_len, in.p + 16, 8);
    char *meta = malloc(meta_len + 1);
    memcpy(meta, in.p + 24, meta_len);
    meta[meta_len] = 0;
    size_t table = 24 + meta_len, body_end = in.n - 12;
    bytes m = {0};
    /* metadata edits: rebuild line by line */
    bytes extra = {0};
    for (char *line = strtok(meta, "\n"); line; line = strtok(NULL, "\n")) {
        size_t klen = strcspn(line, " =");
        int drop = 0;
        for (int i = 4; i + 1 < argc; i++) {
            if ((!strcmp(argv[i], "set") || !strcmp(argv[i], "del")) &&
                strlen(argv[i + 1]) == klen && !strncmp(argv[i + 1], line, klen))
                drop = 1;
        }
        if (!drop) {
            put(&m, line, strlen(line));
            put(&m, "\n", 1);
        }
    }
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "set") && i + 2 < argc) {
            put(&m, argv[i + 1], strlen(argv[i + 1]));
            put(&m, " = ", 3);
            put(&m, argv[i + 2], strlen(argv[i + 2]));
            put(&m, "\n", 1);
            i += 2;
        } else if (!strcmp(argv[i], "del") && i + 1 < argc) {
            i += 1;
        } else if (!strcmp(argv[i], "raw") && i + 1 < argc) {
            for (const char *s = argv[++i]; *s; s++) {
                if (s[0] == '\\' && s[1] == 'n') {
                    put(&extra, "\n", 1);
                    s++;
                } else {
                    put(&extra, s, 1);
                }
            }
        } else if (!strcmp(argv[i], "shape") && i + 2 < argc) {
            i += 2;
        } else {
            fprintf(stderr, "craft: bad edit '%s'\n", argv[i]);
            return 2;
        }
    }
    if (extra.n) put(&m, extra.p, extra.n);
    bytes out = {0};
    put(&out, in.p, 16);
    uint64_t new_len = m.n;
    put(&out, &new_len, 8);
    if (m.n) put(&out, m.p, m.n);
    /* the tensor table, with shape edits */
    size_t pos = table;
    uint64_t n_tensors;
    memcpy(&n_tensors, in.p + pos, 8);
    put(&out, in.p + pos, 8);
    pos += 8;
    for (uint64_t t = 0; t < n_tensors; t++) {
        uint32_t len, ndim;
        memcpy(&len, in.p + pos, 4);
        put(&out, in.p + pos, 4 + len);
        pos += 4 + len;
        memcpy(&ndim, in.p + pos, 4);
        const char *edit = NULL;
        for (int i = 4; i + 2 < argc; i++)
            if (!strcmp(argv[i], "shape") && strtoull(argv[i + 1], NULL, 10) == t)
                edit = argv[i + 2];
        if (edit) {
            uint64_t dims[8];
            uint32_t nd = 0;
            for (const char *s = edit; *s && nd < 8;) {
                char *end;
                dims[nd++] = strtoull(s, &end, 10);
                s = *end == ',' ? end + 1 : end;
                if (end == s && *s) break;
            }
            put(&out, &nd, 4);
            put(&out, dims, 8 * nd);
        } else {
            put(&out, in.p + pos, 4 + 8 * (size_t)ndim);
        }
        pos += 4 + 8 * (size_t)ndim;
    }
    put(&out, in.p + pos, body_end - pos);
    uint32_t crc = tfm_crc32c(0, out.p, out.n);
    put(&out, &crc, 4);
    put(&out, "TFMEND\0\0", 8);
    f = fopen(argv[3], "wb");
    if (!f || fwrite(out.p, 1, out.n, f) != out.n || fclose(f)) return perror(argv[3]), 1;
    free(in.p), free(m.p), free(out.p), free(extra.p), free(meta);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "craft")) return craft(argc, argv);
    const char *root = getenv("TFM_ROOT");
    char dir[600];
    snprintf(dir, sizeof dir, "%s/tests/hostile", root && *root ? root : ".");
    struct dirent **list;
    int n = scandir(dir, &list, NULL, by_name);
    if (n < 0) {
        fprintf(stderr, "%s: cannot list: %s\n", dir, strerror(errno));
        return 1;
    }
    for (int i = 0; i < n; i++) {
        size_t len = strlen(list[i]->d_name);
        if (len > 6 && !strcmp(list[i]->d_name + len - 6, ".cases")) {
            char path[1200], label[300];
            snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
            snprintf(label, sizeof label, "tests/hostile/%s", list[i]->d_name);
            load_cases(path, label);
        }
        free(list[i]);
    }
    free(list);
    if (!n_cases) {
        fprintf(stderr, "%s: no cases\n", dir);
        return 1;
    }

    sanitizer_env("ASAN_OPTIONS", "detect_leaks=1:exitcode=86");
    sanitizer_env("LSAN_OPTIONS", "exitcode=86");
    sanitizer_env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1:exitcode=87");
    char abs_root[4096];
    if (!realpath(root && *root ? root : ".", abs_root)) snprintf(abs_root, sizeof abs_root, ".");
    setenv("ROOT", abs_root, 1);
    char bin[4096];
    if (!realpath(tfm_test_bin(), bin)) snprintf(bin, sizeof bin, "%s", tfm_test_bin());
    setenv("TFM", bin, 1);
    char self[4200];
    if (!realpath(argv[0], bin)) snprintf(bin, sizeof bin, "%s", argv[0]);
    snprintf(self, sizeof self, "%s craft", bin);
    setenv("CRAFT", self, 1);

    snprintf(scratch, sizeof scratch, "/tmp/tfm-hostile-XXXXXX");
    if (!mkdtemp(scratch)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(fixtures, sizeof fixtures, "%s/fixtures", scratch);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && cd '%s' && sh '%s/tests/hostile/setup.sh' >setup.log 2>&1 || { cat "
             "setup.log; exit 1; }",
             fixtures, fixtures, abs_root);
    if (run_shell(cmd) != 0) {
        fprintf(stderr, "tests/hostile/setup.sh failed\n");
        return 1;
    }
    /* the setup log is not a fixture */
    snprintf(cmd, sizeof cmd, "rm -f '%s/setup.log'", fixtures);
    run_shell(cmd);

    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("catalogue");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_case, 0, n_cases);
    suite_add_tcase(s, tc);
    int rc = tfm_test_main(s);
    printf("hostile: %d cases from tests/hostile/*.cases\n", n_cases);
    if (rc == 0) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
        run_shell(cmd);
    } else {
        printf("hostile: fixtures and failed cases kept in %s\n", scratch);
    }
    for (int i = 0; i < n_cases; i++) {
        free(cases[i].pattern);
        free(cases[i].unchanged);
        free(cases[i].command);
    }
    free(cases);
    return rc;
}
