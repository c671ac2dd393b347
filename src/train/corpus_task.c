/* Training on a parallel corpus: joint BPE, token-based batches, validation
 * loss / perplexity / BLEU, best and last checkpoints, early stopping,
 * resume. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/buf.h"
#include "../util/hash.h"
#include "tfm/eval.h"
#include "train_internal.h"

typedef struct {
    const tfm_corpus_task *task;
    const tfm_corpus *valid;
    const tfm_text_model *tm;
    tfm_batcher vbatcher;
    const tfm_pairs *vpairs;
    tfm_batch *batch; /* the training source's buffers, big enough for both */
    int64_t n_dec;
    char **hyps;
    /* data parallelism (task->dist; NULL: one process) */
    tfm_dist *dist;
    tfm_trainer *tr;
    double max_seconds;          /* --max-minutes, agreed across ranks at each step */
    double *gather;              /* (size, 4) doubles: allgather buffer */
    double *weights;             /* (size) target tokens of each rank this step */
    const tfm_train_hooks *user; /* the caller's on_step/on_log (task->hooks), or NULL */
} corpus_valid;

/* ---- data parallelism ------------------------------------------------------------- */
/* x (n doubles) := their sum over the ranks, added in rank order. n <= 4. */
static int dist_sum(tfm_dist *d, double *gather, double *x, int n) {
    if (d->allgather(d, x, (size_t)n * sizeof(double), gather)) return 1;
    for (int i = 0; i < n; i++) {
        x[i] = 0;
        for (int r = 0; r < d->size; r++) x[i] += gather[(size_t)r * (size_t)n + (size_t)i];
    }
    return 0;
}

/* Every rank's token count, loss and wish to stop (a signal,
 * --max-minutes): st becomes the global loss and count; v->weights the
 * ranks' token counts. */
static int dist_stats(corpus_valid *v, tfm_step_stats *st) {
    tfm_dist *d = v->dist;
    int time_up = v->max_seconds > 0 && v->tr->train_seconds > v->max_seconds;
    double mine[4] = {st->loss, (double)st->n_tokens, d->stop_pending ? 1.0 : 0.0,
                      time_up ? 1.0 : 0.0};
    if (d->allgather(d, mine, sizeof mine, v->gather)) return 1;
    double tokens = 0, loss_sum = 0, bad_loss = 0;
    int finite = 1, asked = 0, timed = 0;
    for (int r = 0; r < d->size; r++) {
        const double *g = v->gather + 4 * r;
        v->weights[r] = g[1];
        tokens += g[1];
        if (!isfinite(g[0])) {
            if (finite) bad_loss = g[0];
            finite = 0;
        } else {
            loss_sum += g[0] * g[1];
        }
        asked |= g[2] != 0;
        timed |= g[3] != 0;
    }
    st->n_tokens = (int64_t)tokens;
    /* not finite: every rank skips this update (the gradient is not used) */
    st->loss = !finite || tokens <= 0 ? (finite ? NAN : bad_loss) : loss_sum / tokens;
    if (timed && !asked)
        tfm_trainer_log(v->tr, "stopping: --max-minutes %g reached\n", v->max_seconds / 60);
    if (asked || timed) tfm_trainer_request_stop();
    return 0;
}

/* The trainer's reduction hooks. Overlapped (d has the bucket functions):
 * the statistics after the forward pass, each gradient bucket sent as
 * backward finishes it, the sum completed after backward. Otherwise all of
 * it after backward in one blocking sum. The same additions in the same
 * order either way. */
static int dist_reduce_start(void *ctx, tfm_step_stats *st) {
    corpus_valid *v = ctx;
    if (dist_stats(v, st)) return 1;
    if (!isfinite(st->loss)) return 0;
    return v->dist->sum_start(v->dist, v->tr->params->grad, v->weights, 1.0 / (double)st->n_tokens);
}

static int dist_grad_ready(void *ctx, float *grad, int64_t bucket, int64_t lo, int64_t hi) {
    corpus_valid *v = ctx;
    (void)grad;
    (void)lo;
    (void)hi;
    return v->dist->sum_bucket(v->dist, bucket);
}

static int dist_reduce(void *ctx, float *grad, int64_t n, tfm_step_stats *st) {
    corpus_valid *v = ctx;
    tfm_dist *d = v->dist;
    int overlapped = v->tr->hooks.grad_ready != NULL; /* not with --accum */
    if (!overlapped && dist_stats(v, st)) return 1;
    if (!isfinite(st->loss)) {
        memset(grad, 0, (size_t)n * sizeof(float));
        return 0;
    }
    if (overlapped) return d->sum_finish(d);
    return d->weighted_sum(d, grad, n, v->weights, 1.0 / (double)st->n_tokens);
}

/* Item i of the start-up comparison: its hash and what to call it. */
typedef struct {
    uint64_t *hash;
    char **name;
    int64_t n, cap;
} check_items;

static int check_add(check_items *c, uint64_t hash, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int check_add(check_items *c, uint64_t hash, const char *fmt, ...) {
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 64;
        uint64_t *h = realloc(c->hash, (size_t)cap * sizeof *h);
        if (h) c->hash = h;
        char **nm = realloc(c->name, (size_t)cap * sizeof *nm);
        if (nm) c->name = nm;
        if (!h || !nm) return tfm_set_error("out of memory"), 1;
        c->cap = cap;
    }
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    c->name[c->n] = strdup(buf);
    if (!c->name[c->n]) return tfm_set_error("out of memory"), 1;
    c->hash[c->n++] = hash;
    return 0;
}

static uint64_t hash_lines(char *const *lines, int64_t n) {
    uint64_t h = tfm_hash_bytes(&n, sizeof n);
    for (int64_t i = 0; i < n; i++) {
        uint64_t line = tfm_hash_bytes(lines[i], strlen(lines[i]));
        h = tfm_hash_bytes((uint64_t[2]){h, line}, 2 * sizeof(uint64_t));
    }
    return h;
}

/* Every setting (o->config_text) and the corpora are the same on every rank,
 * else an error (the same on every rank) naming the first rank and setting
 * that differ from rank 0's. */
static int dist_check(tfm_dist *d, const tfm_train_opts *o, const tfm_corpus_task *task,
                      const tfm_corpus *train, const tfm_corpus *valid) {
    check_items c = {0};
    tfm_kv cfg;
    tfm_kv_init(&cfg);
    uint64_t *all = NULL;
    int rc = 1;
    if (o->config_text &&
        tfm_kv_parse(&cfg, o->config_text, strlen(o->config_text), "the configuration"))
        goto done;
    for (int64_t i = 0; i < cfg.n; i++) {
        uint64_t h = tfm_hash_bytes(cfg.vals[i], strlen(cfg.vals[i]));
        if (check_add(&c, h, "--%s (%s on rank 0)", cfg.keys[i], cfg.vals[i])) goto done;
    }
    if (check_add(&c, hash_lines(train->src, train->n), "the text of --src-train %s",
                  task->src_train) ||
        check_add(&c, hash_lines(train->tgt, train->n), "the text of --tgt-train %s",
                  task->tgt_train))
        goto done;
    if (valid->n && (check_add(&c, hash_lines(valid->src, valid->n), "the text of --src-valid %s",
                               task->src_valid) ||
                     check_add(&c, hash_lines(valid->tgt, valid->n), "the text of --tgt-valid %s",
                               task->tgt_valid)))
        goto done;
    /* the number of items first: a rank with other settings altogether */
    uint64_t count = (uint64_t)c.n;
    all = malloc((size_t)d->size * (size_t)(c.n > 1 ? c.n : 1) * sizeof *all);
    if (!all) {
        tfm_set_error("out of memory");
        goto done;
    }
    if (d->allgather(d, &count, sizeof count, all)) goto done;
    for (int r = 1; r < d->size; r++)
        if (all[r] != all[0]) {
            d->agreed_error = 1;
            tfm_set_error("rank %d: started with other settings than rank 0 (%llu compared "
                          "items, rank 0 has %llu; another tfm version?): start every rank with "
                          "the same flags and data",
                          r, (unsigned long long)all[r], (unsigned long long)all[0]);
            goto done;
        }
    if (d->allgather(d, c.hash, (size_t)c.n * sizeof *c.hash, all)) goto done;
    for (int r = 1; r < d->size; r++)
        for (int64_t i = 0; i < c.n; i++)
            if (all[(size_t)r * (size_t)c.n + (size_t)i] != all[i]) {
                d->agreed_error = 1;
                tfm_set_error("rank %d: %s differs from rank 0's: start every rank with the same "
                              "flags and data",
                              r, c.name[i]);
                goto done;
            }
    rc = 0;
done:
    for (int64_t i = 0; i < c.n; i++) free(c.name[i]);
    free(c.name);
    free(c.hash);
    free(all);
    tfm_kv_free(&cfg);
    return rc;
}

/* A whole file into a malloc'd buffer (for sending to the other ranks). */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return tfm_set_error("%s: %s", path, strerror(errno)), NULL;
    tfm_buf b = {0};
    int rc = tfm_buf_read_all(&b, f);
    fclose(f);
    if (rc) {
        tfm_buf_free(&b);
        return tfm_set_error("%s: cannot read", path), NULL;
    }
    *len = b.len;
    if (!b.p) b.p = malloc(1);
    return b.p;
}

/* Rank 0's text model as the bytes of bpe.codes and vocab.txt, written to a
 * temporary directory (the run directory gets them only once the trainer
 * has accepted the run). */
static int text_model_bytes(const tfm_text_model *tm, char *data[2], uint64_t len[2]) {
    static const char *const names[2] = {"bpe.codes", "vocab.txt"};
    const char *tmp = getenv("TMPDIR");
    char *dir = tfm_path_join(tmp && *tmp ? tmp : "/tmp", "tfm-text-XXXXXX");
    if (!dir) return tfm_set_error("out of memory"), 1;
    if (!mkdtemp(dir)) {
        tfm_set_error("%s: cannot create a temporary directory: %s", dir, strerror(errno));
        free(dir);
        return 1;
    }
    int rc = tfm_text_model_save(tm, dir);
    for (int i = 0; i < 2; i++) {
        char *path = tfm_path_join(dir, names[i]);
        size_t n = 0;
        if (!rc && !(data[i] = read_file(path, &n))) rc = 1;
        len[i] = n;
        if (path) unlink(path);
        free(path);
    }
    rmdir(dir);
    free(dir);
    return rc;
}

/* Rank 0's BPE codes and vocabulary (learned or loaded) to every rank. */
static int dist_share_text_model(tfm_dist *d, tfm_text_model *tm) {
    char *data[2] = {NULL, NULL};
    uint64_t len[2] = {0, 0};
    int rc = 1;
    if (d->rank == 0 && text_model_bytes(tm, data, len)) goto done;
    if (d->broadcast(d, len, sizeof len)) goto done;
    for (int i = 0; i < 2; i++) {
        if (d->rank && !(data[i] = malloc(len[i] + 1))) {
            tfm_set_error("out of memory");
            goto done;
        }
        if (d->broadcast(d, data[i], (size_t)len[i])) goto done;
    }
    if (d->rank) {
        memset(tm, 0, sizeof *tm);
        tm->bpe = tfm_bpe_load_mem(data[0], (size_t)len[0], "bpe.codes from rank 0");
        tm->vocab =
            tm->bpe ? tfm_vocab_load_mem(data[1], (size_t)len[1], "vocab.txt from rank 0") : NULL;
        if (!tm->vocab) {
            tfm_bpe_free(tm->bpe);
            goto done;
        }
    }
    rc = 0;
done:
    free(data[0]);
    free(data[1]);
    return rc;
}

/* Rank 0's weights, optimizer state, counters and data position (fresh or
 * resumed) to every rank. */
static int dist_sync_state(tfm_dist *d, tfm_trainer *tr, tfm_corpus_source *src) {
    int64_t c[7] = {tr->step,
                    tr->bad_steps,
                    tr->skipped,
                    tr->no_improve,
                    src->batcher.state.epoch,
                    src->batcher.state.pos,
                    0};
    memcpy(&c[6], &tr->best_metric, sizeof(double));
    size_t bytes = (size_t)tr->params->total_n * sizeof(float);
    int n_state;
    tfm_state_block *state = tfm_trainer_state_blocks(tr, &n_state);
    if (d->broadcast(d, c, sizeof c) || d->broadcast(d, tr->params->data, bytes)) return 1;
    for (int i = 0; i < n_state; i++)
        if (d->broadcast(d, state[i].data, bytes)) return 1;
    if (d->rank == 0) return 0;
    tr->step = tr->first_step = c[0];
    tr->bad_steps = c[1];
    tr->skipped = c[2];
    tr->no_improve = c[3];
    memcpy(&tr->best_metric, &c[6], sizeof(double));
    tfm_batcher_state bs = src->batcher.state;
    bs.epoch = c[4];
    bs.pos = c[5];
    return tfm_batcher_set_state(&src->batcher, bs);
}

/* The caller's on_step and on_log hooks, with the caller's ctx (the
 * trainer's ctx is corpus_valid, for validate and the reduction). */
static int user_on_step(void *ctx, tfm_trainer *tr) {
    const tfm_train_hooks *u = ((corpus_valid *)ctx)->user;
    return u->on_step(u->ctx, tr);
}
static void user_on_log(void *ctx, tfm_trainer *tr, const char *line) {
    const tfm_train_hooks *u = ((corpus_valid *)ctx)->user;
    u->on_log(u->ctx, tr, line);
}

/* Mean NLL (no smoothing) over the validation pairs, batch by batch. */
static int valid_loss(tfm_trainer *tr, corpus_valid *v, double *nll) {
    tfm_tape *t = &tr->tape;
    double sum = 0;
    int64_t count = 0;
    for (int64_t k = 0; k < v->vbatcher.n_batches; k++) {
        if (v->dist && k % v->dist->size != v->dist->rank) continue; /* another rank's */
        const int64_t *idx;
        int64_t n = tfm_batcher_batch(&v->vbatcher, k, &idx);
        if (tfm_batch_fill(v->batch, v->vpairs, idx, n)) return 1;
        const tfm_batch *b = v->batch;
        tfm_seq_batch sb = {b->b,      b->s,       b->t,       b->src,
                            b->dec_in, b->dec_out, b->src_pad, b->tgt_pad};
        tfm_trainer_eval_mode(tr, 1);
        int64_t ntok = 0;
        tfm_tensor *loss = tfm_model_loss(&tr->model, t, &sb, 0.0f, &ntok);
        if (!loss) return 1;
        sum += (double)loss->data[0] * (double)ntok;
        count += ntok;
    }
    tfm_trainer_eval_mode(tr, 0);
    if (v->dist) {
        double x[2] = {sum, (double)count};
        if (dist_sum(v->dist, v->gather, x, 2)) return 1;
        sum = x[0];
        count = (int64_t)x[1];
    }
    *nll = count ? sum / (double)count : 0.0;
    return 0;
}

/* BLEU of this rank's share of the validation sentences, its counts summed
 * over the ranks. */
static int dist_bleu(corpus_valid *v, tfm_trainer *tr, tfm_bleu *bleu) {
    tfm_dist *d = v->dist;
    int64_t lo = v->n_dec * d->rank / d->size, hi = v->n_dec * (d->rank + 1) / d->size;
    memset(bleu, 0, sizeof *bleu);
    if (hi > lo) {
        if (tfm_translate_lines(&tr->model, v->tm, v->valid->src + lo, hi - lo, &v->task->decode,
                                v->hyps + lo))
            return 1;
        const char *const *refs[1] = {(const char *const *)v->valid->tgt + lo};
        if (tfm_bleu_corpus((const char *const *)v->hyps + lo, hi - lo, refs, 1, 0, bleu)) return 1;
    }
    /* hyp_len, ref_len, n_segments, correct[], total[]: exact in double */
    enum { N = 3 + 2 * TFM_BLEU_MAX_N };
    double x[N];
    x[0] = (double)bleu->hyp_len;
    x[1] = (double)bleu->ref_len;
    x[2] = (double)bleu->n_segments;
    for (int i = 0; i < TFM_BLEU_MAX_N; i++) {
        x[3 + i] = (double)bleu->correct[i];
        x[3 + TFM_BLEU_MAX_N + i] = (double)bleu->total[i];
    }
    double *all = v->gather + 4 * d->size; /* room for size * N doubles */
    if (d->allgather(d, x, sizeof x, all)) return 1;
    memset(bleu, 0, sizeof *bleu);
    for (int r = 0; r < d->size; r++) {
        const double *g = all + (size_t)r * N;
        bleu->hyp_len += (int64_t)g[0];
        bleu->ref_len += (int64_t)g[1];
        bleu->n_segments += (int64_t)g[2];
        for (int i = 0; i < TFM_BLEU_MAX_N; i++) {
            bleu->correct[i] += (int64_t)g[3 + i];
            bleu->total[i] += (int64_t)g[3 + TFM_BLEU_MAX_N + i];
        }
    }
    tfm_bleu_finish(bleu);
    return 0;
}

static int validate(void *ctx, tfm_trainer *tr, tfm_valid_result *out) {
    corpus_valid *v = ctx;
    double nll = 0;
    if (valid_loss(tr, v, &nll)) return 1;
    for (int64_t i = 0; i < v->n_dec; i++) {
        free(v->hyps[i]);
        v->hyps[i] = NULL;
    }
    tfm_bleu bleu;
    if (v->dist) {
        if (dist_bleu(v, tr, &bleu)) return 1;
    } else {
        if (tfm_translate_lines(&tr->model, v->tm, v->valid->src, v->n_dec, &v->task->decode,
                                v->hyps))
            return 1;
        const char *const *refs[1] = {(const char *const *)v->valid->tgt};
        if (tfm_bleu_corpus((const char *const *)v->hyps, v->n_dec, refs, 1, 0, &bleu)) return 1;
    }
    out->loss = nll;
    out->metric = bleu.score;
    snprintf(out->text, sizeof out->text, "loss %.4f ppl %.2f BLEU %.2f", nll, exp(nll),
             bleu.score);
    return 0;
}

/* One corpus side as text for the BPE learner: its normalized sentences,
 * one per line (malloc'd). */
static char *side_text(char *const *lines, int64_t n, size_t *len) {
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) total += strlen(lines[i]) + 1;
    char *text = malloc(total + 1), *p = text;
    if (!text) return tfm_set_error("out of memory"), NULL;
    for (int64_t i = 0; i < n; i++) {
        size_t k = strlen(lines[i]);
        memcpy(p, lines[i], k);
        p[k] = '\n';
        p += k + 1;
    }
    *p = 0;
    *len = total;
    return text;
}

/* On --resume the run's bpe.codes and vocab.txt are reused, and --init takes
 * those beside its checkpoint, so the settings that would have made other
 * ones must be that run's (the config.txt of dir; a key it lacks, from
 * before the setting existed, and a directory without one, an export, are
 * not compared): otherwise the config.txt written for this run would
 * describe a run that never happened. flag is "--resume" or "--init". */
static int same_text_settings(const tfm_corpus_task *task, const char *dir, const char *flag) {
    char *path = tfm_path_join(dir, "config.txt"), *text = NULL;
    size_t len;
    if (!path) return 1;
    if (access(path, F_OK) != 0) return free(path), 0;
    tfm_kv kv;
    tfm_kv_init(&kv);
    int rc = tfm_read_regular(path, &text, &len) || tfm_kv_parse(&kv, text, len, path);
    const char *merges = rc ? NULL : tfm_kv_get(&kv, "bpe-merges");
    const char *exact = rc ? NULL : tfm_kv_get(&kv, "exact-vocab");
    const char *whose = strcmp(flag, "--init") ? "" : "the --init run ";
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long)task->bpe_merges);
    if (merges && strcmp(merges, now))
        rc = 1, tfm_set_error("--bpe-merges %s: %s%s was trained with %s (%s reuses its "
                              "bpe.codes and vocab.txt; %s)",
                              now, whose, dir, merges, flag,
                              strcmp(flag, "--init") ? "choose another directory for new ones"
                                                     : "give its value or leave the flag out");
    else if (exact && strcmp(exact, task->inexact_vocab ? "false" : "true"))
        rc = 1, tfm_set_error("--exact-vocab %s: %s%s was trained with %s (%s reuses its "
                              "vocab.txt; %s)",
                              task->inexact_vocab ? "false" : "true", whose, dir, exact, flag,
                              strcmp(flag, "--init") ? "choose another directory for a new one"
                                                     : "give its value or leave the flag out");
    tfm_kv_free(&kv);
    free(text);
    free(path);
    return rc;
}

/* BPE and vocabulary: reused from the run directory when present (resume),
 * taken from beside the checkpoint of o->init_from, otherwise learned jointly from the corpus
 * already in memory (each input file is read once: pipes, FIFOs and /dev/stdin work) and saved
 * later, once the trainer has checked and locked the run directory (*learned). */
static int prepare_text_model(const tfm_corpus_task *task, const tfm_train_opts *o,
                              const tfm_corpus *train, tfm_text_model *tm, int *learned) {
    *learned = 0;
    char *codes = tfm_path_join(o->run_dir, "bpe.codes"),
         *vocab = tfm_path_join(o->run_dir, "vocab.txt");
    int reuse = codes && vocab && o->resume && access(codes, F_OK) == 0 && access(vocab, F_OK) == 0;
    free(codes);
    free(vocab);
    if (reuse)
        return same_text_settings(task, o->run_dir, "--resume") ||
               tfm_text_model_load(o->run_dir, tm);
    if (o->init_from) { /* the ids the initial weights were trained with */
        if (access(o->init_from, F_OK) != 0)
            return tfm_set_error("--init: %s: cannot open checkpoint: %s", o->init_from,
                                 strerror(errno)),
                   1;
        char *dir = tfm_model_text_dir(o->init_from);
        if (dir && same_text_settings(task, dir, "--init")) return free(dir), 1;
        int rc = !dir || tfm_text_model_load(dir, tm);
        if (rc && dir) tfm_set_error("--init %s: %s", o->init_from, tfm_last_error());
        if (!rc && !o->quiet) printf("BPE codes and vocabulary from %s (--init)\n", dir);
        free(dir);
        *learned = !rc; /* saved into the run directory like learned ones */
        return rc;
    }
    tfm_text_input in[2] = {{task->src_train, NULL, 0}, {task->tgt_train, NULL, 0}};
    char *src = side_text(train->src, train->n, &in[0].len);
    char *tgt = src ? side_text(train->tgt, train->n, &in[1].len) : NULL;
    in[0].text = src;
    in[1].text = tgt;
    double t0 = tfm_now();
    int rc = !tgt || tfm_text_model_learn_texts(in, 2, task->bpe_merges, tm);
    free(src);
    free(tgt);
    if (rc) return 1;
    int64_t added = task->inexact_vocab ? 0 : tfm_vocab_add_merge_symbols(tm->vocab, tm->bpe);
    if (added < 0) {
        tfm_text_model_free(tm);
        return 1;
    }
    *learned = 1;
    if (!o->quiet)
        printf("learned %lld BPE merges, vocabulary %d (%lld of them merge symbols), in %.1f s\n",
               (long long)tfm_bpe_n_merges(tm->bpe), tfm_vocab_size(tm->vocab), (long long)added,
               tfm_now() - t0);
    return 0;
}

int tfm_train_corpus(const tfm_corpus_task *task, const tfm_train_opts *opts,
                     const tfm_model_config *mc_in, tfm_corpus_summary *summary) {
    TFM_ASSERT(task && opts && mc_in,
               "tfm_train_corpus: NULL task, options or model configuration");
    if (!task->src_train || !task->tgt_train)
        return tfm_set_error("train: --src-train needs --tgt-train"), 1;
    if (!task->src_valid != !task->tgt_valid)
        return tfm_set_error("train: give both --src-valid and --tgt-valid"), 1;
    if (!opts->run_dir)
        return tfm_set_error("train: a corpus run needs --save DIR (checkpoints, vocabulary)"), 1;
    if (task->batch_tokens < 16) return tfm_set_error("--batch-tokens: must be at least 16"), 1;
    if (task->max_tokens < 1) return tfm_set_error("--max-tokens: must be positive"), 1;
    if (task->decode.beam < 1 || task->decode.beam > 64)
        return tfm_set_error("--beam: must be between 1 and 64"), 1;
    if (!tfm_beam_stop_name(task->decode.beam_stop))
        return tfm_set_error("--beam-stop: rule %d is not finished (0) or bound (1)",
                             (int)task->decode.beam_stop),
               1;
    if (task->valid_max < 0) return tfm_set_error("--valid-max: must not be negative"), 1;
    if (!(task->bpe_dropout >= 0 && task->bpe_dropout < 1))
        return tfm_set_error("--bpe-dropout: must be in [0, 1)"), 1;
    if (task->bpe_dropout > 0 && task->batch_tokens <= task->max_tokens)
        return tfm_set_error("--bpe-dropout: --batch-tokens (%lld) must exceed --max-tokens (%lld), "
                             "so that any pair fits a batch however it is segmented",
                             (long long)task->batch_tokens, (long long)task->max_tokens),
               1;
    if (task->bpe_dropout > 0 && task->inexact_vocab)
        return tfm_set_error("--bpe-dropout needs --exact-vocab (a vocabulary with every piece "
                             "the merges pass through)"),
               1;
    /* the batches are cut anew every epoch: a budget of twice the processes'
     * longest pairs makes every cut give each process a sentence (the last
     * batch borrows from the one before: tfm_batch_opts.min_batch_sentences) */
    if (task->bpe_dropout > 0 && task->dist && task->dist->size > 1 &&
        task->batch_tokens < 2 * (int64_t)task->dist->size * (task->max_tokens + 1))
        return task->dist->agreed_error = 1,
               tfm_set_error("--bpe-dropout with %d processes: --batch-tokens (%lld) must be at "
                             "least 2 x processes x (--max-tokens + 1) = %lld, so that every "
                             "epoch's batches hold a sentence for each process",
                             task->dist->size, (long long)task->batch_tokens,
                             (long long)(2 * (int64_t)task->dist->size * (task->max_tokens + 1))),
               1;
    if (opts->threads > 0) tfm_set_num_threads(opts->threads);
    tfm_dist *dist = task->dist && task->dist->size > 1 ? task->dist : NULL;
    int rank = dist ? dist->rank : 0;
    tfm_train_opts o = *opts;
    o.final_best = 1;
    tfm_model_config mc = *mc_in;
    /* pairs up to max_tokens (+ <s>/</s>) and validation outputs up to 2 *
     * source + 10: refused rather than silently raised */
    if (task->max_tokens > TFM_MAX_POSITIONS)
        return tfm_set_error("--max-tokens: at most %lld", (long long)TFM_MAX_POSITIONS), 1;
    if (mc.max_len < 2 * (task->max_tokens + 1) + 10)
        return tfm_set_error("model max_len %lld: the corpus task needs at least %lld (2 * "
                             "(max_tokens + 1) + 10)",
                             (long long)mc.max_len, (long long)(2 * (task->max_tokens + 1) + 10)),
               1;

    int rc = 1;
    tfm_corpus train, valid;
    tfm_text_model tm;
    tfm_encoded_corpus etrain, evalid;
    tfm_corpus_source source;
    corpus_valid cv;
    tfm_trainer tr;
    int have_tm = 0, have_source = 0, have_vb = 0, have_tr = 0, learned = 0;
    memset(&train, 0, sizeof train);
    memset(&valid, 0, sizeof valid);
    memset(&etrain, 0, sizeof etrain);
    memset(&evalid, 0, sizeof evalid);
    memset(&cv, 0, sizeof cv);
    /* read everything before creating anything in the run directory */
    tfm_corpus_opts copts = {.max_line_bytes = 1 << 20};
    if (tfm_corpus_read(task->src_train, task->tgt_train, &copts, &train)) goto done;
    if (task->src_valid && tfm_corpus_read(task->src_valid, task->tgt_valid, &copts, &valid))
        goto done;
    if (dist) {
        cv.dist = dist;
        /* (size, 4) for the step's statistics; (size, 3 + 2 * max n) for BLEU */
        cv.gather = calloc((size_t)dist->size * (4 + 3 + 2 * TFM_BLEU_MAX_N), sizeof(double));
        cv.weights = calloc((size_t)dist->size, sizeof(double));
        if (!cv.gather || !cv.weights) {
            tfm_set_error("out of memory");
            goto done;
        }
        if (dist_check(dist, &o, task, &train, &valid)) goto done;
    }
    /* only rank 0 touches the run directory */
    int fresh_restart;
    if (rank == 0 && (tfm_run_check_dir(&o, &fresh_restart, 0) ||
                      prepare_text_model(task, &o, &train, &tm, &learned)))
        goto done;
    have_tm = rank == 0;
    if (dist) {
        if (dist_share_text_model(dist, &tm)) goto done;
        have_tm = 1;
    }
    if (valid.n && tfm_corpus_encode(&valid, &tm, &evalid)) goto done;
    tfm_batch_opts bo = {.batch_tokens = task->batch_tokens,
                         .max_src_len = task->max_tokens,
                         .max_tgt_len = task->max_tokens,
                         .seed = o.seed};
    /* the training batches: one sentence at least for each process */
    tfm_batch_opts tbo = bo;
    tbo.min_batch_sentences = dist ? dist->size : 0;
    if (task->bpe_dropout > 0) {
        if (tfm_corpus_source_init_dropout(&source, &train, tm.bpe, tm.vocab, task->bpe_dropout,
                                           task->bpe_dropout_source_only, &tbo))
            goto done;
    } else if (tfm_corpus_encode(&train, &tm, &etrain) ||
               tfm_corpus_source_init(&source, &etrain.pairs, &tbo)) {
        goto done;
    }
    have_source = 1;
    if (dist) {
        /* every rank needs a sentence of every batch */
        for (int64_t k = 0; k < source.batcher.n_batches; k++) {
            int64_t n = source.batcher.start[k + 1] - source.batcher.start[k];
            if (n < dist->size) {
                dist->agreed_error = 1;
                tfm_set_error("--batch-tokens %lld: a batch of the training data holds only %lld "
                              "sentence(s), fewer than the %d processes: raise --batch-tokens",
                              (long long)task->batch_tokens, (long long)n, dist->size);
                goto done;
            }
        }
        source.share_rank = dist->rank;
        source.share_count = dist->size;
    }
    int64_t B = source.source.max_b, S = source.source.max_s, T = source.source.max_t;
    if (valid.n) {
        if (tfm_batcher_init(&cv.vbatcher, &evalid.pairs, &bo)) goto done;
        have_vb = 1;
        int64_t vB, vS, vT;
        tfm_batcher_max_shape(&cv.vbatcher, &vB, &vS, &vT);
        /* one batch buffer and one arena for training and validation */
        if (vB > B || vS > S || vT > T) {
            B = vB > B ? vB : B;
            S = vS > S ? vS : S;
            T = vT > T ? vT : T;
            tfm_batch_free(&source.batch);
            if (tfm_batch_alloc(&source.batch, B, S, T)) goto done;
            source.source.max_b = B;
            source.source.max_s = S;
            source.source.max_t = T;
        }
        cv.task = task;
        cv.valid = &valid;
        cv.tm = &tm;
        cv.vpairs = &evalid.pairs;
        cv.batch = &source.batch;
        cv.n_dec = task->valid_max > 0 && task->valid_max < valid.n ? task->valid_max : valid.n;
        cv.hyps = calloc((size_t)(cv.n_dec + 1), sizeof(char *));
        if (!cv.hyps) {
            tfm_set_error("out of memory");
            goto done;
        }
    }
    mc.vocab = tfm_vocab_size(tm.vocab);
    const tfm_train_hooks *u = task->hooks;
    cv.user = u;
    /* the sum overlapped with backward, bucket by bucket; with --accum one
     * blocking sum after the batches of the update */
    int overlap = dist && dist->sum_bucket && o.accum <= 1;
    tfm_train_hooks hooks = {.ctx = &cv,
                             .validate = valid.n ? validate : NULL,
                             .reduce = dist ? dist_reduce : NULL,
                             .reduce_start = overlap ? dist_reduce_start : NULL,
                             .grad_ready = overlap ? dist_grad_ready : NULL,
                             .on_step = u && u->on_step ? user_on_step : NULL,
                             .on_log = u && u->on_log ? user_on_log : NULL};
    if (dist) {
        /* --max-minutes is decided together (dist_reduce), not by each clock */
        cv.max_seconds = o.max_minutes * 60;
        o.max_minutes = 0;
        if (rank) {
            o.run_dir = NULL;
            o.average_last = 0; /* rank 0 writes averaged.tfm */
            o.init_from = NULL; /* rank 0's weights are sent to every rank */
            o.resume = 0;
            o.config_text = NULL;
            o.quiet = 1;
        }
    }
    if (tfm_trainer_init(&tr, &o, &mc, &source.source, &hooks)) goto done;
    have_tr = 1;
    /* written only now: a run that fails its checks leaves the directory as it was */
    if (learned && tfm_text_model_save(&tm, o.run_dir)) goto done;
    cv.tr = &tr;
    if (dist) {
        if (dist_sync_state(dist, &tr, &source) ||
            (overlap ? dist->reserve_buckets(dist, tr.bucket_at, tr.n_buckets)
                              : dist->reserve(dist, tr.params->total_n)))
            goto done;
        /* each rank its own dropout stream: a function of (seed, rank, step) */
        tr.tape.seed = o.seed ^ ((uint64_t)rank * 0x9E3779B97F4A7C15ull);
    }
    /* the number of processes the run was trained with so far */
    const char *ranks_was = tfm_kv_get(&tr.state, "state.dist_ranks");
    long long was = ranks_was ? atoll(ranks_was) : 1, now = dist ? dist->size : 1;
    if (was != now && tr.step > 0)
        tfm_trainer_log(&tr,
                        "resuming a run trained with %lld process(es) on %lld: the same global "
                        "batch sequence continues (equal up to float summation order)\n",
                        was, now);
    if (ranks_was || dist) tfm_kv_set(&tr.state, "state.dist_ranks", "%lld", now);
    tfm_trainer_log(&tr,
                    "corpus %s / %s: %lld pairs, %lld dropped (longer than %lld subwords); "
                    "%lld batches per epoch (%s %lld x %lld/%lld); vocabulary %d; %lld "
                    "parameters; %d threads\n",
                    task->src_train, task->tgt_train, (long long)train.n,
                    (long long)source.batcher.n_dropped, (long long)task->max_tokens,
                    (long long)source.batcher.n_batches,
                    /* with BPE-dropout the shapes change every epoch: the buffers' bounds */
                    task->bpe_dropout > 0 ? "buffers for up to" : "max", (long long)B,
                    (long long)S, (long long)T,
                    tfm_vocab_size(tm.vocab), (long long)tr.n_params, tfm_num_threads());
    if (task->bpe_dropout > 0)
        tfm_trainer_log(&tr,
                        "BPE-dropout %g: the training text (%s) is segmented anew every epoch, "
                        "and its batches cut again (the first epoch: %lld batches)\n",
                        task->bpe_dropout,
                        task->bpe_dropout_source_only ? "the source side" : "both sides",
                        (long long)source.batcher.n_batches);
    if (o.accum > 1)
        tfm_trainer_log(&tr, "gradient accumulation: %lld batches per update\n",
                        (long long)o.accum);
    char buckets[96] = "one exchange after backward";
    if (overlap)
        snprintf(buckets, sizeof buckets, "%lld buckets sent while backward goes on",
                 (long long)tr.n_buckets);
    if (dist)
        tfm_trainer_log(&tr,
                        "data parallel: %d processes, each takes its share of every global "
                        "batch (--batch-tokens %lld); gradients summed in %s\n",
                        dist->size, (long long)task->batch_tokens, buckets);
    if (valid.n && cv.vbatcher.n_dropped)
        tfm_trainer_log(&tr,
                        "validation: %lld of %lld pairs longer than %lld subwords are left out "
                        "of the loss\n",
                        (long long)cv.vbatcher.n_dropped, (long long)valid.n,
                        (long long)task->max_tokens);
    if (tfm_train(&tr)) goto done;
    double tokens = (double)tr.tokens;
    if (dist && dist_sum(dist, cv.gather, &tokens, 1)) goto done; /* all ranks' tokens */
    if (summary) {
        summary->steps = tr.step;
        summary->epochs = source.batcher.state.epoch;
        summary->best_bleu = isfinite(tr.best_metric) ? tr.best_metric : -1;
        summary->seconds = tr.train_seconds;
        summary->tokens_per_s = tr.train_seconds > 0 ? tokens / tr.train_seconds : 0;
    }
    rc = 0;
done:
    if (cv.hyps)
        for (int64_t i = 0; i < cv.n_dec; i++) free(cv.hyps[i]);
    free(cv.hyps);
    if (have_tr) tfm_trainer_free(&tr);
    if (have_vb) tfm_batcher_free(&cv.vbatcher);
    if (have_source) tfm_corpus_source_free(&source);
    tfm_encoded_corpus_free(&etrain);
    tfm_encoded_corpus_free(&evalid);
    tfm_corpus_free(&train);
    tfm_corpus_free(&valid);
    if (have_tm) tfm_text_model_free(&tm);
    free(cv.gather);
    free(cv.weights);
    return rc;
}
