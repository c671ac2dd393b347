/* The run directory: checkpoints (writing, rotation, finding the newest good
 * one), logs, config.txt and the resume checks, loading a model for
 * inference. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tfm/atomic_file.h"
#include "tfm/export.h"
#include "train_internal.h"

int tfm_make_dirs(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0777) != 0 && errno != EEXIST) return 1;
        *p = '/';
    }
    return mkdir(path, 0777) != 0 && errno != EEXIST;
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

/* steps of checkpoint-*.tfm in dir, descending; returns the count */
static int64_t list_checkpoints(const char *dir, int64_t *steps, int64_t cap) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        int64_t s = checkpoint_step(e->d_name);
        if (s >= 0) steps[n++] = s;
    }
    closedir(d);
    for (int64_t i = 1; i < n; i++)
        for (int64_t j = i; j > 0 && steps[j] > steps[j - 1]; j--) {
            int64_t t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    return n;
}

/* A temporary file of an atomic write ("<name>.tmp.<pid>.<n>") of one of the
 * files a run writes: checkpoints, best.tfm, config.txt, bpe.codes, vocab.txt. */
static int is_temporary(const char *name) {
    static const char *const prefixes[] = {"checkpoint-", "best.tfm.", "config.txt.",
                                           "bpe.codes.", "vocab.txt."};
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
    char path[4096];
    while ((e = readdir(d))) {
        if (!is_temporary(e->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) n++;
    }
    closedir(d);
    return n;
}

/* Files a run writes before its first checkpoint. */
static int is_run_file(const char *name) {
    static const char *const names[] = {"config.txt", "train.log", "metrics.csv", "bpe.codes",
                                        "vocab.txt"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i])) return 1;
    return is_temporary(name) || !strncmp(name, ".write-test.", 12);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    fclose(f);
    if (buf) buf[n < cap ? n : cap - 1] = 0;
    if (len) *len = n;
    return buf;
}

/* Settings that may change between the attempts of one run. */
static int ignored_setting(const char *key) {
    static const char *const keys[] = {"resume", "steps",       "quiet",  "log-every",
                                       "keep",   "max-minutes", "eval-n", "save"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(key, keys[i])) return 1;
    return 0;
}

/* config.txt of an earlier attempt against the configuration given now. */
static int same_config(const char *dir, const char *path, const char *given) {
    size_t len = 0;
    char *text = slurp(path, &len);
    if (!text) return tfm_set_error("%s: cannot read: %s", path, strerror(errno)), 0;
    tfm_kv old, now;
    tfm_kv_init(&old);
    tfm_kv_init(&now);
    int ok = 0;
    if (tfm_kv_parse(&old, text, len, path)) goto done;
    if (tfm_kv_parse(&now, given, strlen(given), "the configuration given")) goto done;
    for (int pass = 0; pass < 2; pass++) {
        const tfm_kv *a = pass ? &now : &old, *b = pass ? &old : &now;
        for (int64_t i = 0; i < a->n; i++) {
            if (ignored_setting(a->keys[i])) continue;
            const char *v = tfm_kv_get(b, a->keys[i]);
            if (v && !strcmp(v, a->vals[i])) continue;
            const char *was = pass ? v : a->vals[i], *is = pass ? a->vals[i] : v;
            tfm_set_error("%s: --resume: %s holds a different run that never reached a "
                          "checkpoint: %s was %s, now %s (choose another directory)",
                          path, dir, a->keys[i], was ? was : "(not set)", is ? is : "(not set)");
            goto done;
        }
    }
    ok = 1;
done:
    tfm_kv_free(&old);
    tfm_kv_free(&now);
    free(text);
    return ok;
}

static int ensure_dir(const char *dir) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return tfm_set_error("--save %s: exists and is not a directory", dir), 1;
    } else if (tfm_make_dirs(dir) != 0) {
        return tfm_set_error("--save %s: cannot create directory: %s", dir, strerror(errno)), 1;
    }
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/.write-test.%ld", dir, (long)getpid());
    FILE *f = fopen(probe, "w");
    if (!f)
        return tfm_set_error("--save %s: directory is not writable: %s", dir, strerror(errno)), 1;
    fclose(f);
    unlink(probe);
    return 0;
}

int tfm_run_check_dir(const tfm_train_opts *o, int *fresh_restart) {
    const char *dir = o->run_dir;
    *fresh_restart = 0;
    int64_t steps[1];
    int64_t n = list_checkpoints(dir, steps, 1);
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
            char path[4096];
            snprintf(path, sizeof path, "%s/config.txt", dir);
            if (!o->config_text) return tfm_set_error("%s: no usable checkpoint", dir), 1;
            if (!same_config(dir, path, o->config_text)) return 1;
        }
        *fresh_restart = 1;
    }
    return ensure_dir(dir);
}

int tfm_run_open_files(tfm_trainer *tr, int resuming) {
    const tfm_train_opts *o = &tr->o;
    char path[4096];
    snprintf(path, sizeof path, "%s/train.log", o->run_dir);
    tr->log = fopen(path, o->resume ? "a" : "w");
    snprintf(path, sizeof path, "%s/metrics.csv", o->run_dir);
    int fresh = !resuming || access(path, F_OK) != 0;
    tr->metrics = fopen(path, fresh ? "w" : "a");
    if (!tr->log || !tr->metrics) return tfm_set_error("%s: cannot write logs", o->run_dir), 1;
    if (fresh)
        fprintf(tr->metrics, "step,epoch,loss,lr,grad_norm,tokens_per_s,valid_loss,valid_bleu\n");
    if (o->config_text) {
        snprintf(path, sizeof path, "%s/config.txt", o->run_dir);
        if (tfm_write_file_atomic(path, o->config_text, strlen(o->config_text))) return 1;
    }
    return 0;
}

int tfm_run_find_checkpoint(const char *dir, char *buf, size_t size, int prefer_best) {
    if (prefer_best) {
        snprintf(buf, size, "%s/best.tfm", dir);
        tfm_checkpoint ck;
        if (access(buf, F_OK) == 0) {
            if (tfm_checkpoint_read(buf, &ck) == 0) {
                tfm_checkpoint_free(&ck);
                return 0;
            }
            fprintf(stderr, "tfm: %s; trying the newest checkpoint instead\n", tfm_last_error());
        }
    }
    int64_t steps[4096];
    int64_t n = list_checkpoints(dir, steps, 4096);
    for (int64_t i = 0; i < n; i++) {
        snprintf(buf, size, "%s/checkpoint-%08lld.tfm", dir, (long long)steps[i]);
        tfm_checkpoint ck;
        if (tfm_checkpoint_read(buf, &ck) == 0) {
            tfm_checkpoint_free(&ck);
            return 0;
        }
        fprintf(stderr, "tfm: %s; falling back to the previous checkpoint\n", tfm_last_error());
    }
    tfm_set_error("%s: no usable checkpoint", dir);
    return 1;
}

/* ---- checkpoints -------------------------------------------------------------------- */
static void fill_meta(tfm_trainer *tr, tfm_kv *meta) {
    tfm_kv_init(meta);
    tfm_kv_set(meta, "format", "tfm checkpoint");
    tfm_kv_set(meta, "tfm.version", "%s", TFM_VERSION);
    if (tr->has_model) tfm_model_config_to_kv(&tr->model.cfg, meta);
    tfm_kv_set(meta, "train.step", "%lld", (long long)tr->step);
    tfm_kv_set(meta, "train.seed", "%llu", (unsigned long long)tr->o.seed);
    tfm_kv_set(meta, "train.bad_steps", "%lld", (long long)tr->bad_steps);
    tfm_kv_set(meta, "train.skipped", "%lld", (long long)tr->skipped);
    for (int64_t i = 0; i < tr->state.n; i++)
        tfm_kv_set(meta, tr->state.keys[i], "%s", tr->state.vals[i]);
}

int tfm_trainer_checkpoint(tfm_trainer *tr) {
    if (!tr->o.run_dir) return 0;
    if (tr->source->save) tr->source->save(tr->source->ctx, &tr->state);
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint-%08lld.tfm", tr->o.run_dir, (long long)tr->step);
    tfm_kv meta;
    fill_meta(tr, &meta);
    int n_state;
    tfm_state_block *state = tfm_adam_state(&tr->adam, &n_state);
    int rc = tfm_checkpoint_save(path, &meta, tr->params, state, n_state);
    tfm_kv_free(&meta);
    if (rc) return 1;
    int64_t steps[4096];
    int64_t n = list_checkpoints(tr->o.run_dir, steps, 4096);
    for (int64_t i = tr->o.keep; i < n; i++) {
        snprintf(path, sizeof path, "%s/checkpoint-%08lld.tfm", tr->o.run_dir, (long long)steps[i]);
        unlink(path);
    }
    return 0;
}

int tfm_trainer_save_best(tfm_trainer *tr) {
    if (!tr->o.run_dir) return 0;
    if (tr->source->save) tr->source->save(tr->source->ctx, &tr->state);
    char path[4096];
    snprintf(path, sizeof path, "%s/best.tfm", tr->o.run_dir);
    tfm_kv meta;
    fill_meta(tr, &meta);
    int rc = tfm_checkpoint_save(path, &meta, tr->params, NULL, 0);
    tfm_kv_free(&meta);
    return rc;
}

/* ---- loading for inference ------------------------------------------------------------ */
int tfm_load_model(const char *path, tfm_model *m, tfm_kv *meta) {
    char file[4096];
    struct stat st;
    if (stat(path, &st) != 0) return tfm_set_error("--model %s: %s", path, strerror(errno)), 1;
    snprintf(file, sizeof file, "%s/model.safetensors", path);
    if (S_ISDIR(st.st_mode) && access(file, F_OK) == 0)
        return tfm_export_load(path, m, meta); /* an export */
    if (S_ISDIR(st.st_mode)) {
        if (tfm_run_find_checkpoint(path, file, sizeof file, 1)) return 1;
    } else {
        snprintf(file, sizeof file, "%s", path);
    }
    tfm_checkpoint ck;
    if (tfm_checkpoint_read(file, &ck)) return 1;
    int rc = tfm_model_from_checkpoint(m, &ck);
    if (!rc && meta)
        for (int64_t i = 0; i < ck.meta.n; i++)
            tfm_kv_set(meta, ck.meta.keys[i], "%s", ck.meta.vals[i]);
    tfm_checkpoint_free(&ck);
    return rc;
}
