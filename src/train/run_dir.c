/* The run directory: checkpoints (writing, rotation, finding the newest good
 * one), logs, config.txt and the resume checks, loading a model for
 * inference. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/buf.h" /* tfm_grow, tfm_strdup */
#include "tfm/atomic_file.h"
#include "tfm/export.h"
#include "train_internal.h"

int tfm_make_dirs(const char *dir) {
    if (!*dir) return errno = ENOENT, 1; /* "" names no directory */
    char *path = tfm_format("%s", dir);
    if (!path) return 1;
    int rc = 0;
    for (char *p = path + 1; *p && !rc; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0777) != 0 && errno != EEXIST) rc = 1;
        *p = '/';
    }
    if (!rc) rc = mkdir(path, 0777) != 0 && errno != EEXIST;
    int saved = errno;
    free(path);
    errno = saved;
    return rc;
}

/* "checkpoint-<digits>.tfm" -> step, else -1 */
static int64_t checkpoint_step(const char *name) {
    const char *prefix = "checkpoint-";
    size_t len = strlen(name), plen = strlen(prefix);
    if (len <= plen + 4 || strncmp(name, prefix, plen) || strcmp(name + len - 4, ".tfm")) return -1;
    int64_t step = 0;
    for (size_t i = plen; i < len - 4; i++) {
        if (name[i] < '0' || name[i] > '9' || step > INT64_MAX / 20) return -1;
        step = step * 10 + (name[i] - '0');
    }
    return step;
}

static int by_step_descending(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Steps of every checkpoint-*.tfm in dir, descending (*steps malloc'd, no
 * cap: a directory may hold any number); returns the count, -1 when out of
 * memory (error set). A directory that cannot be listed has none. */
static int64_t list_checkpoints(const char *dir, int64_t **steps) {
    *steps = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int64_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t s = checkpoint_step(e->d_name);
        if (s < 0) continue;
        if (tfm_grow((void **)steps, &cap, n + 1, sizeof **steps)) {
            closedir(d);
            free(*steps);
            *steps = NULL;
            tfm_set_error("%s: out of memory listing checkpoints", dir);
            return -1;
        }
        (*steps)[n++] = s;
    }
    closedir(d);
    if (n > 1) qsort(*steps, (size_t)n, sizeof **steps, by_step_descending);
    return n;
}

static char *checkpoint_path(const char *dir, int64_t step) {
    return tfm_format("%s/checkpoint-%08lld.tfm", dir, (long long)step);
}

typedef struct {
    int64_t step;
    char *name;
} named_step;

static int by_step(const void *a, const void *b) {
    int64_t x = ((const named_step *)a)->step, y = ((const named_step *)b)->step;
    return (x > y) - (x < y);
}

int tfm_run_newest_checkpoints(const char *dir, int64_t n, char **paths) {
    if (n < 1)
        return tfm_set_error("%s: %lld checkpoints: ask for at least 1", dir, (long long)n), 1;
    DIR *d = opendir(dir);
    if (!d) return tfm_set_error("%s: cannot open the run directory: %s", dir, strerror(errno)), 1;
    named_step *list = NULL;
    int64_t count = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        int64_t s = checkpoint_step(e->d_name);
        if (s < 0) continue;
        if (tfm_grow((void **)&list, &cap, count + 1, sizeof *list)) {
            rc = 1;
            break;
        }
        list[count].step = s;
        if (!(list[count++].name = tfm_strdup(e->d_name))) rc = 1;
    }
    closedir(d);
    if (rc) {
        tfm_set_error("%s: out of memory listing the checkpoints", dir);
    } else if (count < n) {
        tfm_set_error("%s holds %lld checkpoint%s (checkpoint-<step>.tfm)", dir, (long long)count,
                      count == 1 ? "" : "s");
        rc = 1;
    } else {
        qsort(list, (size_t)count, sizeof *list, by_step);
        for (int64_t i = 0; i < n && !rc; i++) {
            const char *name = list[count - n + i].name;
            size_t len = strlen(dir) + strlen(name) + 2;
            if (!(paths[i] = malloc(len))) {
                tfm_set_error("%s: out of memory listing the checkpoints", dir);
                for (int64_t j = 0; j < i; j++) free(paths[j]), paths[j] = NULL;
                rc = 1;
            } else {
                snprintf(paths[i], len, "%s/%s", dir, name);
            }
        }
    }
    for (int64_t i = 0; i < count; i++) free(list[i].name);
    free(list);
    return rc;
}

/* A temporary file of an atomic write ("<name>.tmp.<pid>.<n>") of one of the
 * files a run writes: checkpoints, best.tfm, config.txt, bpe.codes, vocab.txt. */
static int is_temporary(const char *name) {
    static const char *const prefixes[] = {"checkpoint-", "best.tfm.", "config.txt.", "bpe.codes.",
                                           "vocab.txt."};
    if (!strstr(name, ".tmp.")) return 0;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(name, prefixes[i], strlen(prefixes[i]))) return 1;
    return 0;
}

/* Temporary files of checkpoint writes cut short by a crash or SIGKILL
 * ("<name>.tfm.tmp.<pid>..."): never read, but as large as a checkpoint each.
 * Removed when a run starts or resumes in the directory (after the checks:
 * one run per directory). */
int64_t tfm_run_remove_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_temporary(e->d_name)) continue;
        char *path = tfm_path_join(dir, e->d_name);
        if (path && unlink(path) == 0) n++;
        free(path);
    }
    closedir(d);
    return n;
}

/* Files a run writes before its first checkpoint. */
static int is_run_file(const char *name) {
    static const char *const names[] = {"config.txt", "train.log", "metrics.csv",
                                        "bpe.codes",  "vocab.txt", ".lock"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i])) return 1;
    return is_temporary(name) || !strncmp(name, ".write-test.", 12);
}

/* Settings that may change between the attempts of one run. */
static int ignored_setting(const char *key) {
    static const char *const keys[] = {"resume", "steps",       "quiet",  "log-every",
                                       "keep",   "max-minutes", "eval-n", "save"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(key, keys[i])) return 1;
    return 0;
}

/* The settings of config.txt `path` (an earlier attempt of the run) that
 * differ from the configuration `given` now, as "key was X, now Y" joined by
 * "; " (malloc'd; "" when none; at most the first with first_only), or NULL
 * with the error set when path cannot be read or parsed. Settings that may
 * change between attempts (ignored_setting) are left out, and so is a
 * setting the earlier version did not have that is at its default now. */
static char *config_changes(const char *path, const char *given, const char *defaults,
                            int first_only) {
    size_t len = 0;
    char *text;
    if (tfm_read_regular(path, &text, &len)) return NULL;
    tfm_kv old, now, def;
    tfm_kv_init(&old);
    tfm_kv_init(&now);
    tfm_kv_init(&def);
    char *list = NULL;
    size_t list_len = 0;
    FILE *f = NULL;
    if (tfm_kv_parse(&old, text, len, path)) goto done;
    if (tfm_kv_parse(&now, given, strlen(given), "the configuration given")) goto done;
    if (defaults && tfm_kv_parse(&def, defaults, strlen(defaults), "the defaults")) goto done;
    f = open_memstream(&list, &list_len);
    if (!f) {
        tfm_set_error("out of memory");
        goto done;
    }
    int n = 0;
    for (int pass = 0; pass < 2 && !(first_only && n); pass++) {
        const tfm_kv *a = pass ? &now : &old, *b = pass ? &old : &now;
        for (int64_t i = 0; i < a->n && !(first_only && n); i++) {
            if (ignored_setting(a->keys[i])) continue;
            const char *v = tfm_kv_get(b, a->keys[i]);
            if (v && !strcmp(v, a->vals[i])) continue;
            if (pass && v) continue; /* both have it: said in the first pass */
            /* a setting the earlier version did not have, at its default now */
            const char *d = pass && !v ? tfm_kv_get(&def, a->keys[i]) : NULL;
            if (d && !strcmp(d, a->vals[i])) continue;
            const char *was = pass ? v : a->vals[i], *is = pass ? a->vals[i] : v;
            fprintf(f, "%s%s was %s, now %s", n++ ? "; " : "", a->keys[i], was ? was : "(not set)",
                    is ? is : "(not set)");
        }
    }
    if (fclose(f) != 0) {
        free(list);
        list = NULL;
        tfm_set_error("out of memory");
    }
done:
    tfm_kv_free(&old);
    tfm_kv_free(&now);
    tfm_kv_free(&def);
    free(text);
    return list;
}

/* config.txt of an earlier attempt against the configuration given now. */
static int same_config(const char *dir, const char *path, const char *given, const char *defaults) {
    char *first = config_changes(path, given, defaults, 1);
    if (!first) return 0;
    int same = !*first;
    if (!same)
        tfm_set_error("%s: --resume: %s holds a different run that never reached a "
                      "checkpoint: %s (choose another directory)",
                      path, dir, first);
    free(first);
    return same;
}

static int ensure_dir(const char *dir, int create) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return tfm_set_error("--save %s: exists and is not a directory", dir), 1;
    } else if (!create) {
        return 0;
    } else if (tfm_make_dirs(dir) != 0) {
        return tfm_set_error("--save %s: cannot create directory: %s", dir, strerror(errno)), 1;
    }
    char *probe = tfm_format("%s/.write-test.%ld", dir, (long)getpid());
    if (!probe) return 1;
    FILE *f = fopen(probe, "w");
    if (!f) {
        tfm_set_error("--save %s: directory is not writable: %s", dir, strerror(errno));
        free(probe);
        return 1;
    }
    fclose(f);
    unlink(probe);
    free(probe);
    return 0;
}

/* The lock files this process holds, one per trainer: a POSIX record lock
 * does not exclude another trainer of the same process, and closing any
 * descriptor of the file releases it, so the process keeps its own list
 * (checked before the file is opened). A child of fork() inherits the list
 * but not the locks: entries of another pid are not its own. */
typedef struct {
    const tfm_trainer *owner;
    pid_t pid;
    int fd;
    dev_t dev;
    ino_t ino;
} held_lock;
static held_lock *g_held;
static size_t g_n_held, g_cap_held;

static int held_by_process(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    for (size_t i = 0; i < g_n_held; i++)
        if (g_held[i].pid == getpid() && g_held[i].dev == st.st_dev && g_held[i].ino == st.st_ino)
            return 1;
    return 0;
}

static int hold(const tfm_trainer *tr, int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        return tfm_set_error("--save %s: the lock file: %s", tr->o.run_dir, strerror(errno)), 1;
    if (g_n_held == g_cap_held) {
        size_t cap = g_cap_held ? 2 * g_cap_held : 4;
        held_lock *p = realloc(g_held, cap * sizeof *p);
        if (!p) return tfm_set_error("--save %s: out of memory", tr->o.run_dir), 1;
        g_held = p;
        g_cap_held = cap;
    }
    g_held[g_n_held++] = (held_lock){tr, getpid(), fd, st.st_dev, st.st_ino};
    return 0;
}

static int run_lock(tfm_trainer *tr) {
    const char *dir = tr->o.run_dir;
    char *path = tfm_path_join(dir, ".lock");
    if (!path) return 1;
    if (held_by_process(path)) {
        free(path);
        return tfm_set_error("--save %s: another training of this process is using this run "
                             "directory",
                             dir),
               1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        tfm_set_error("%s: cannot create the lock file: %s", path, strerror(errno));
        free(path);
        return 1;
    }
    free(path);
    /* a POSIX record lock: released by the kernel when the process ends,
     * however it ends; F_GETLK names the holder */
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    int err = fcntl(fd, F_SETLK, &fl) == 0 ? 0 : errno;
    /* no locks on this file system (ENOLCK): other processes are not kept
     * out, but the trainers of this one are */
    if (err == 0 || (err != EACCES && err != EAGAIN)) {
        if (hold(tr, fd)) {
            close(fd);
            return 1;
        }
        tr->lock_fd = fd;
        return 0;
    }
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    long pid = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK ? (long)fl.l_pid : 0;
    close(fd);
    if (pid > 0)
        tfm_set_error("--save %s: another training (pid %ld) is using this run directory", dir,
                      pid);
    else
        tfm_set_error("--save %s: another training is using this run directory", dir);
    return 1;
}

int tfm_run_lock(tfm_trainer *tr) {
    int rc;
#pragma omp critical(tfm_run_lock)
    rc = run_lock(tr);
    return rc;
}

void tfm_run_unlock(tfm_trainer *tr) {
#pragma omp critical(tfm_run_lock)
    for (size_t i = 0; i < g_n_held; i++) {
        if (g_held[i].owner != tr || g_held[i].pid != getpid()) continue;
        close(g_held[i].fd); /* releases the lock */
        g_held[i] = g_held[--g_n_held];
        break;
    }
    tr->lock_fd = -1;
}

int tfm_run_check_dir(const tfm_train_opts *o, int *fresh_restart, int create) {
    const char *dir = o->run_dir;
    *fresh_restart = 0;
    int64_t *steps;
    int64_t n = list_checkpoints(dir, &steps);
    free(steps);
    if (n < 0) return 1;
    if (!o->resume && n > 0)
        /* a fresh run would clobber the logs and interleave its checkpoints
         * with the old run's (a later --resume would pick the old run's newest) */
        return tfm_set_error("--save %s: already holds checkpoints of a run: add --resume to "
                             "continue it, or choose another directory",
                             dir),
               1;
    if (o->resume && n == 0) {
        /* A job restarted with the same command after being killed before
         * its first checkpoint: start over when the directory is empty or
         * holds only what that run wrote, with the same configuration. */
        DIR *d = opendir(dir);
        int has_config = 0;
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                if (!strcmp(e->d_name, "config.txt")) has_config = 1;
                if (!is_run_file(e->d_name)) {
                    tfm_set_error("--resume: %s has no checkpoint and holds %s, which is not "
                                  "part of a tfm run",
                                  dir, e->d_name);
                    closedir(d);
                    return 1;
                }
            }
            closedir(d);
        }
        if (has_config) {
            if (!o->config_text) return tfm_set_error("%s: no usable checkpoint", dir), 1;
            char *path = tfm_path_join(dir, "config.txt");
            int same = path && same_config(dir, path, o->config_text, o->config_defaults);
            free(path);
            if (!same) return 1;
        }
        *fresh_restart = 1;
    }
    return ensure_dir(dir, create);
}

#define METRICS_HEADER "step,epoch,loss,lr,grad_norm,tokens_per_s,valid_loss,valid_bleu\n"

/* metrics.csv of a run resumed at `step`: append to it. First, in one
 * crash-safe rewrite when anything changes: a file without the header (lost
 * to a SIGKILL before it left the buffer, by older versions) gets it back,
 * and the rows of steps after `step` (written before a SIGKILL, and written
 * again by the resumed run) go, as does a last row cut short. */
static FILE *open_metrics(const char *path, int resuming, int64_t step, int drop_loss,
                          int drop_valid) {
    size_t len = 0;
    char *old = NULL; /* none yet (a run killed early): nothing to repair */
    if (resuming && tfm_read_regular(path, &old, &len)) old = NULL;
    if (old) {
        size_t hl = strlen(METRICS_HEADER);
        int header = !strncmp(old, METRICS_HEADER, hl);
        char *fixed = malloc(hl + len + 1);
        size_t n = 0;
        if (fixed && !header) memcpy(fixed, METRICS_HEADER, hl), n = hl;
        for (size_t at = 0; fixed && at < len;) {
            const char *nl = memchr(old + at, '\n', len - at);
            if (!nl) break; /* cut short */
            size_t line = (size_t)(nl - (old + at)) + 1;
            char *end;
            long long row = strtoll(old + at, &end, 10);
            /* a progress row ends ",,": no validation columns */
            int loss_row = line >= 3 && !memcmp(old + at + line - 3, ",,\n", 3);
            int dropped = row > step || (row == step && (loss_row ? drop_loss : drop_valid));
            if (!(end > old + at && *end == ',' && dropped)) {
                memcpy(fixed + n, old + at, line);
                n += line;
            }
            at += line;
        }
        int rc = !fixed;
        if (fixed && (n != len || memcmp(fixed, old, n)))
            rc = tfm_write_file_atomic(path, fixed, n);
        free(fixed);
        if (rc) {
            free(old);
            return NULL;
        }
    }
    int append = old != NULL;
    free(old);
    FILE *f = fopen(path, append ? "a" : "w");
    if (!f || append) return f;
    /* a new file: the header on disk before the first row can be written */
    if (fputs(METRICS_HEADER, f) == EOF || fflush(f) || fsync(fileno(f))) {
        fclose(f);
        return NULL;
    }
    return f;
}

/* best.tfm as it was before the validation at the end of the leg before:
 * best-before-stop.tfm put back (how 1), or none (2). Without notes on an
 * end in the checkpoint resumed from (how 0), a best-before-stop.tfm is what
 * an end that a kill cut short left: put back when best.tfm is missing or
 * from after the checkpoint (that end's), else stale and removed. */
static int put_back_best(tfm_trainer *tr, int how) {
    const char *dir = tr->o.run_dir;
    char *best = tfm_path_join(dir, "best.tfm"),
         *aside = tfm_path_join(dir, "best-before-stop.tfm");
    int rc = !best || !aside;
    if (!rc && how == 0 && access(aside, F_OK) == 0) {
        tfm_checkpoint ck;
        int64_t step = -1;
        if (access(best, F_OK) == 0 && tfm_checkpoint_read(best, &ck) == 0) {
            if (tfm_kv_get_i64(&ck.meta, "train.step", &step, best)) step = -1;
            tfm_checkpoint_free(&ck);
        } else {
            step = INT64_MAX; /* none, or unreadable: the aside is the best there is */
        }
        how = step > tr->step ? 1 : 3;
    }
    if (!rc && how == 1 && rename(aside, best) != 0) {
        if (errno != ENOENT)
            rc = 1, tfm_set_error("%s: cannot rename to %s: %s", aside, best, strerror(errno));
        else
            tfm_trainer_log(tr, "note: %s is gone; best.tfm stays the one of the end before\n",
                            aside);
    }
    if (!rc && how == 2 && unlink(best) != 0 && errno != ENOENT)
        rc = 1, tfm_set_error("%s: cannot remove: %s", best, strerror(errno));
    if (!rc && how == 3) unlink(aside);
    free(best);
    free(aside);
    return rc;
}

int tfm_run_open_files(tfm_trainer *tr, int resuming, char **changed) {
    const tfm_train_opts *o = &tr->o;
    *changed = NULL;
    char *log = tfm_path_join(o->run_dir, "train.log"),
         *metrics = tfm_path_join(o->run_dir, "metrics.csv"),
         *config = tfm_path_join(o->run_dir, "config.txt");
    int rc = 1;
    if (!log || !metrics || !config) goto done;
    /* a FIFO (or any non-file) there would block the open for writing */
    const char *const logs[2] = {log, metrics};
    for (int i = 0; i < 2; i++) {
        struct stat st;
        if (stat(logs[i], &st) == 0 && !S_ISREG(st.st_mode)) {
            tfm_set_error("%s: not a regular file", logs[i]);
            goto done;
        }
    }
    tr->log = fopen(log, o->resume ? "a" : "w");
    /* the rows and best.tfm that the end of the leg before added, when this
     * run goes past it (tfm_trainer.stop, set by the resume) */
    int past_end = resuming && tr->stop.step == tr->step && o->steps > tr->step;
    tr->metrics = tr->log ? open_metrics(metrics, resuming, tr->step, past_end && tr->stop.loss_row,
                                         past_end && tr->stop.valid)
                          : NULL;
    if (!tr->log || !tr->metrics) {
        tfm_set_error("%s: cannot write logs: %s", o->run_dir, strerror(errno));
        goto done;
    }
    /* what this attempt changes, before its config.txt replaces the one
     * before (an unreadable one: nothing to compare) */
    if (resuming && o->config_text && access(config, F_OK) == 0) {
        *changed = config_changes(config, o->config_text, o->config_defaults, 0);
        if (*changed && !**changed) {
            free(*changed);
            *changed = NULL;
        }
    }
    if (o->config_text && tfm_write_file_atomic(config, o->config_text, strlen(o->config_text)))
        goto done;
    if (resuming && (past_end ? tr->stop.best && put_back_best(tr, tr->stop.best)
                              : tr->stop.step != tr->step && put_back_best(tr, 0)))
        goto done;
    rc = 0;
done:
    free(log);
    free(metrics);
    free(config);
    return rc;
}

/* tfm_run_find_checkpoint, the one found left read (params only) in *ck. */
static char *find_and_read(const char *dir, int prefer_best, tfm_checkpoint *ck) {
    if (prefer_best) {
        char *best = tfm_path_join(dir, "best.tfm");
        if (!best) return NULL;
        if (access(best, F_OK) == 0) {
            if (tfm_checkpoint_read_params(best, ck) == 0) return best;
            fprintf(stderr, "tfm: %s; trying the newest checkpoint instead\n", tfm_last_error());
        }
        free(best);
    }
    int64_t *steps;
    int64_t n = list_checkpoints(dir, &steps);
    for (int64_t i = 0; i < n; i++) {
        char *path = checkpoint_path(dir, steps[i]);
        if (!path) break;
        if (tfm_checkpoint_read_params(path, ck) == 0) {
            free(steps);
            return path;
        }
        free(path);
        fprintf(stderr, "tfm: %s; falling back to the previous checkpoint\n", tfm_last_error());
    }
    free(steps);
    if (n >= 0) tfm_set_error("%s: no usable checkpoint", dir);
    return NULL;
}

char *tfm_run_find_checkpoint(const char *dir, int prefer_best) {
    tfm_checkpoint ck;
    char *path = find_and_read(dir, prefer_best, &ck);
    if (path) tfm_checkpoint_free(&ck);
    return path;
}

/* ---- checkpoints -------------------------------------------------------------------- */
/* checkpoint: for a checkpoint (not best.tfm), which at the end of a leg
 * off its grids records the state a run going on has (tfm_trainer.stop). */
static void fill_meta(tfm_trainer *tr, tfm_kv *meta, int checkpoint) {
    int end = checkpoint && tr->stop.step >= 0 && tr->stop.step == tr->step;
    tfm_kv_init(meta);
    tfm_kv_set(meta, "format", "tfm checkpoint");
    tfm_kv_set(meta, "tfm.version", "%s", TFM_VERSION);
    if (tr->has_model) tfm_model_config_to_kv(&tr->model.cfg, meta);
    tfm_kv_set(meta, "train.step", "%lld", (long long)tr->step);
    tfm_kv_set(meta, "train.seed", "%llu", (unsigned long long)tr->o.seed);
    tfm_kv_set(meta, "train.bad_steps", "%lld", (long long)tr->bad_steps);
    tfm_kv_set(meta, "train.skipped", "%lld", (long long)tr->skipped);
    if (tr->o.ema > 0) tfm_kv_set(meta, "train.ema", "%.17g", tr->o.ema);
    for (int64_t i = 0; i < tr->state.n; i++) {
        const char *key = tr->state.keys[i], *val = tr->state.vals[i];
        int before = end && tr->stop.valid;
        if (before && !strcmp(key, "state.best_metric"))
            val = tr->stop.best_metric; /* "": the end's validation was the first */
        else if (before && !strcmp(key, "state.no_improve"))
            val = tr->stop.no_improve;
        else
            before = 0;
        if (!before || *val) tfm_kv_set(meta, key, "%s", val);
    }
    /* the mean loss of the next progress line is over the steps since the
     * last one: a resume in between continues the sum (exact in %.17g) */
    int before = end && tr->stop.loss_row;
    tfm_kv_set(meta, "state.loss_sum", "%.17g", before ? tr->stop.loss_sum : tr->loss_sum);
    tfm_kv_set(meta, "state.loss_count", "%lld",
               (long long)(before ? tr->stop.loss_count : tr->loss_count));
    if (end) {
        tfm_kv_set(meta, "state.stop_rows", "%s",
                   tr->stop.loss_row ? (tr->stop.valid ? "loss valid" : "loss") : "valid");
        tfm_kv_set(meta, "state.stop_best", "%d", tr->stop.best);
    }
}

/* A step at which the run makes a checkpoint when nothing stops it: every
 * --save-every, every validation, the last step. */
static int on_grid(const tfm_trainer *tr, int64_t step) {
    const tfm_train_opts *o = &tr->o;
    return (o->save_every > 0 && step % o->save_every == 0) ||
           (tr->hooks.validate && step % o->valid_every == 0) || step == o->steps;
}

int tfm_trainer_checkpoint(tfm_trainer *tr) {
    TFM_TRAINER_CHECK(tr, "tfm_trainer_checkpoint");
    if (!tr->o.run_dir) return 0;
    if (tr->source->save) tr->source->save(tr->source->ctx, &tr->state);
    char *path = checkpoint_path(tr->o.run_dir, tr->step);
    if (!path) return 1;
    tfm_kv meta;
    fill_meta(tr, &meta, 1);
    int n_state;
    tfm_state_block *state = tfm_trainer_state_blocks(tr, &n_state);
    int rc = tfm_checkpoint_save(path, &meta, tr->params, state, n_state);
    tfm_kv_free(&meta);
    free(path);
    if (rc) return 1;
    int64_t *steps;
    int64_t n = list_checkpoints(tr->o.run_dir, &steps);
    /* newest first: an older checkpoint off the run's grid (written only
     * because a run stopped there: a signal, --max-minutes, a shorter
     * --steps) is superseded by this one and goes first, so that after a
     * resume --keep and --average-last see the checkpoints the run made
     * straight through would have */
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        int drop = steps[i] < tr->step && !on_grid(tr, steps[i]);
        if (!drop && kept++ < tr->o.keep) continue;
        char *old = checkpoint_path(tr->o.run_dir, steps[i]);
        if (old) unlink(old);
        free(old);
    }
    free(steps);
    return 0;
}

int tfm_trainer_save_best(tfm_trainer *tr) {
    TFM_TRAINER_CHECK(tr, "tfm_trainer_save_best");
    if (!tr->o.run_dir) return 0;
    if (tr->source->save) tr->source->save(tr->source->ctx, &tr->state);
    char *path = tfm_path_join(tr->o.run_dir, "best.tfm");
    if (!path) return 1;
    tfm_kv meta;
    fill_meta(tr, &meta, 0);
    /* with --ema the averaged weights (validation has them in already) */
    int swap = tr->ema && !tr->ema_in;
    if (swap) tfm_trainer_ema_swap(tr);
    int rc = tfm_checkpoint_save(path, &meta, tr->params, NULL, 0);
    if (swap) tfm_trainer_ema_swap(tr);
    tfm_kv_free(&meta);
    free(path);
    return rc;
}

/* ---- loading for inference ------------------------------------------------------------ */
int tfm_load_model(const char *path, tfm_model *m, tfm_kv *meta) {
    TFM_ASSERT(path && m, "tfm_load_model: NULL path or model");
    struct stat st;
    if (stat(path, &st) != 0) return tfm_set_error("--model %s: %s", path, strerror(errno)), 1;
    char *file = tfm_path_join(path, "model.safetensors");
    if (!file) return 1;
    int is_export = S_ISDIR(st.st_mode) && access(file, F_OK) == 0;
    free(file);
    if (is_export) return tfm_export_load(path, m, meta);
    tfm_checkpoint ck;
    if (S_ISDIR(st.st_mode)) {
        if (!(file = find_and_read(path, 1, &ck))) return 1;
    } else {
        if (!(file = tfm_format("%s", path))) return 1;
        if (tfm_checkpoint_read_params(file, &ck)) {
            free(file);
            return 1;
        }
    }
    /* what the model reads: toy symbol ids or text (bpe.codes, vocab.txt) */
    const char *kind = tfm_kv_get(&ck.meta, "data.kind");
    int rc = 0;
    if (!kind)
        rc = (tfm_set_error("%s: missing 'data.kind' (toy or text)", file), 1);
    else if (strcmp(kind, "toy") && strcmp(kind, "text"))
        rc = (tfm_set_error("%s: 'data.kind' = '%s': expected toy or text", file, kind), 1);
    if (!rc) rc = tfm_model_from_checkpoint(m, &ck);
    if (!rc && meta)
        for (int64_t i = 0; i < ck.meta.n; i++)
            tfm_kv_set(meta, ck.meta.keys[i], "%s", ck.meta.vals[i]);
    tfm_checkpoint_free(&ck);
    free(file);
    return rc;
}

char *tfm_model_text_dir(const char *model_path) {
    struct stat st;
    if (stat(model_path, &st) == 0 && !S_ISDIR(st.st_mode)) {
        char *copy = tfm_format("%s", model_path);
        char *dir = copy ? tfm_format("%s", dirname(copy)) : NULL;
        free(copy);
        return dir;
    }
    return tfm_format("%s", model_path);
}

int tfm_load_text_model(const char *model_path, const tfm_model_config *mc, tfm_text_model *tm) {
    memset(tm, 0, sizeof *tm);
    char *dir = tfm_model_text_dir(model_path);
    if (!dir) return 1;
    int rc = tfm_text_model_load(dir, tm);
    if (!rc && tfm_text_model_check(tm, mc, dir)) {
        tfm_text_model_free(tm);
        rc = 1;
    }
    free(dir);
    return rc;
}
