/* Text in the library: the BPE + vocabulary bundle, corpus encoding, and
 * batched translation of sentences (and of the toy tasks' symbol ids). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../util/par.h"
#include "tfm/train.h"

/* A model's file must be a regular one: refused (the error set) before a
 * FIFO could block the read that follows. */
static int regular(const char *path) {
    int not_regular;
    FILE *f = tfm_open_regular(path, &not_regular);
    return f ? fclose(f), 1 : 0;
}

int tfm_text_model_load(const char *dir, tfm_text_model *tm) {
    memset(tm, 0, sizeof *tm);
    char *codes = tfm_path_join(dir, "bpe.codes"), *vocab = tfm_path_join(dir, "vocab.txt");
    if (codes && vocab && regular(codes) && regular(vocab)) tm->bpe = tfm_bpe_load(codes);
    if (tm->bpe) tm->vocab = tfm_vocab_load(vocab);
    free(codes);
    free(vocab);
    if (!tm->vocab) {
        tfm_text_model_free(tm);
        return 1;
    }
    return 0;
}

int tfm_text_model_check(const tfm_text_model *tm, const tfm_model_config *mc, const char *dir) {
    int64_t n = tfm_vocab_size(tm->vocab);
    if (n != mc->vocab)
        return tfm_set_error("%s/vocab.txt: %lld tokens, but the model has a vocabulary of %lld "
                             "(the file belongs to another model, or was cut short)",
                             dir, (long long)n, (long long)mc->vocab),
               1;
    return 0;
}

int tfm_text_model_learn_texts(const tfm_text_input *in, int n, int64_t n_merges,
                               tfm_text_model *tm) {
    memset(tm, 0, sizeof *tm);
    tm->bpe = tfm_bpe_learn_texts(in, n, n_merges, 2, NULL);
    if (!tm->bpe) return 1;
    tm->vocab = tfm_vocab_build_texts(tm->bpe, in, n);
    if (!tm->vocab) {
        tfm_text_model_free(tm);
        return 1;
    }
    return 0;
}

int tfm_text_model_save(const tfm_text_model *tm, const char *dir) {
    char *codes = tfm_path_join(dir, "bpe.codes"), *vocab = tfm_path_join(dir, "vocab.txt");
    int rc = !codes || !vocab || tfm_bpe_save(tm->bpe, codes) || tfm_vocab_save(tm->vocab, vocab);
    free(codes);
    free(vocab);
    return rc;
}

int tfm_text_model_learn(const char *const *files, int n_files, int64_t n_merges, const char *dir,
                         tfm_text_model *tm) {
    memset(tm, 0, sizeof *tm);
    if (n_files < 1) return tfm_set_error("tfm_text_model_learn: no files"), 1;
    /* each file read once: pipes, FIFOs and /dev/stdin cannot be read twice */
    tfm_text_input *in = calloc((size_t)n_files, sizeof *in);
    int rc = 1;
    if (!in) return tfm_set_error("out of memory"), 1;
    for (int i = 0; i < n_files; i++) {
        char *text;
        in[i].name = files[i];
        if (tfm_read_input(files[i], &text, &in[i].len)) goto done;
        in[i].text = text;
    }
    if (tfm_text_model_learn_texts(in, n_files, n_merges, tm)) goto done;
    if (dir && tfm_text_model_save(tm, dir)) {
        tfm_text_model_free(tm);
        goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < n_files; i++) free((char *)in[i].text);
    free(in);
    return rc;
}

void tfm_text_model_free(tfm_text_model *tm) {
    if (tm->bpe) tfm_bpe_free(tm->bpe);
    if (tm->vocab) tfm_vocab_free(tm->vocab);
    memset(tm, 0, sizeof *tm);
}

void tfm_encoded_corpus_free(tfm_encoded_corpus *e) {
    free(e->pairs.src);
    free(e->pairs.tgt);
    free(e->pairs.src_len);
    free(e->pairs.tgt_len);
    free(e->ids);
    memset(e, 0, sizeof *e);
}

int tfm_corpus_encode(const tfm_corpus *c, const tfm_text_model *tm, tfm_encoded_corpus *e) {
    memset(e, 0, sizeof *e);
    int64_t n = c->n, total = 0;
    int64_t *lens = malloc((size_t)(2 * n + 1) * sizeof(int64_t));
    if (!lens) return tfm_set_error("out of memory"), 1;
    for (int64_t i = 0; i < 2 * n; i++) {
        const char *line = i < n ? c->src[i] : c->tgt[i - n];
        lens[i] = tfm_vocab_encode(tm->bpe, tm->vocab, line, strlen(line), NULL, 0);
        if (lens[i] < 0) {
            free(lens);
            return 1;
        }
        total += lens[i];
    }
    e->ids = malloc((size_t)(total + 1) * sizeof(int32_t));
    e->pairs.n = n;
    e->pairs.src = malloc((size_t)(n + 1) * sizeof(int32_t *));
    e->pairs.tgt = malloc((size_t)(n + 1) * sizeof(int32_t *));
    e->pairs.src_len = malloc((size_t)(n + 1) * sizeof(int64_t));
    e->pairs.tgt_len = malloc((size_t)(n + 1) * sizeof(int64_t));
    if (!e->ids || !e->pairs.src || !e->pairs.tgt || !e->pairs.src_len || !e->pairs.tgt_len) {
        free(lens);
        tfm_encoded_corpus_free(e);
        return tfm_set_error("out of memory encoding the corpus"), 1;
    }
    int64_t off = 0;
    for (int64_t i = 0; i < 2 * n; i++) {
        const char *line = i < n ? c->src[i] : c->tgt[i - n];
        tfm_vocab_encode(tm->bpe, tm->vocab, line, strlen(line), e->ids + off, lens[i]);
        if (i < n) {
            e->pairs.src[i] = e->ids + off;
            e->pairs.src_len[i] = lens[i];
        } else {
            e->pairs.tgt[i - n] = e->ids + off;
            e->pairs.tgt_len[i - n] = lens[i];
        }
        off += lens[i];
    }
    free(lens);
    return 0;
}

typedef struct {
    int64_t index, len;
} by_len;

static int cmp_len(const void *a, const void *b) {
    const by_len *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

void tfm_translate_opts_default(tfm_translate_opts *o) {
    memset(o, 0, sizeof *o);
    o->beam = 1;
    o->alpha = 0.6;
    o->batch = 64;
    o->precision = TFM_FP32;
}

int tfm_translate_lines(tfm_model *m, const tfm_text_model *tm, char *const *lines, int64_t n,
                        const tfm_translate_opts *o, char **out) {
    return tfm_translate_lines_ensemble(&m, 1, tm, lines, n, o, out);
}

/* out[i] for an n-best list: "LINE ||| hypothesis ||| score" lines joined
 * by newlines (malloc'd; NULL when out of memory). */
static char *format_nbest(const tfm_text_model *tm, const tfm_nbest *nb, int64_t r, int64_t stride,
                          int64_t line, int64_t own_cut) {
    size_t size = 1, used = 0;
    char *s = malloc(size);
    if (!s) return NULL;
    s[0] = 0;
    for (int64_t i = 0; i < nb->count[r]; i++) {
        int64_t e = r * nb->n_best + i, len = nb->lens[e];
        if (own_cut >= 0 && len > own_cut) len = own_cut;
        char *hyp = tfm_vocab_decode(tm->vocab, nb->tokens + e * stride, len);
        size_t need = hyp ? strlen(hyp) + 64 : 0;
        char *grown = hyp ? realloc(s, size + need) : NULL;
        if (!grown) {
            free(hyp);
            free(s);
            return NULL;
        }
        s = grown;
        size += need;
        used += (size_t)snprintf(s + used, size - used, "%s%lld ||| %s ||| %.6f", i ? "\n" : "",
                                 (long long)line, hyp, (double)nb->scores[e]);
        free(hyp);
    }
    return s;
}

/* What one thread decodes a batch with: a tape whose arena holds a batch's
 * activations and decoder caches, and the batch's buffers. */
typedef struct {
    tfm_tape t;
    int tape_ok;
    int32_t *src, *hyp;
    uint8_t *pad;
    int64_t *lens;
    tfm_nbest nb;
} decode_slot;

static void slot_free(decode_slot *s) {
    free(s->src);
    free(s->pad);
    free(s->hyp);
    free(s->lens);
    free(s->nb.tokens);
    free(s->nb.lens);
    free(s->nb.scores);
    free(s->nb.logprobs);
    free(s->nb.count);
    if (s->tape_ok) tfm_tape_free(&s->t);
    memset(s, 0, sizeof *s);
}

static int slot_init(decode_slot *s, size_t arena, tfm_precision precision, int64_t B,
                     int64_t S_max, int64_t max_out, int64_t NB) {
    memset(s, 0, sizeof *s);
    if (tfm_tape_init(&s->t, arena, 16)) return 1;
    s->tape_ok = 1;
    tfm_arena_advise_huge(&s->t.arena);
    s->t.no_grad = 1;
    s->t.training = 0;
    s->t.precision = precision;
    s->src = malloc((size_t)(B * S_max) * sizeof(int32_t));
    s->pad = malloc((size_t)(B * S_max));
    s->hyp = malloc((size_t)(B * max_out) * sizeof(int32_t));
    s->lens = malloc((size_t)B * sizeof(int64_t));
    s->nb = (tfm_nbest){NB,
                        NB ? malloc((size_t)(B * NB * max_out) * sizeof(int32_t)) : NULL,
                        NB ? malloc((size_t)(B * NB) * sizeof(int64_t)) : NULL,
                        NB ? malloc((size_t)(B * NB) * sizeof(float)) : NULL,
                        NB ? malloc((size_t)(B * NB) * sizeof(float)) : NULL,
                        NB ? malloc((size_t)B * sizeof(int64_t)) : NULL};
    if (!s->src || !s->pad || !s->hyp || !s->lens ||
        (NB &&
         (!s->nb.tokens || !s->nb.lens || !s->nb.scores || !s->nb.logprobs || !s->nb.count))) {
        slot_free(s);
        return tfm_set_error("out of memory"), 1;
    }
    return 0;
}

/* The translation's shared state: read only, but for out[] (each batch
 * writes its own lines) and done (sentences so far, for the progress line,
 * under a critical section). */
typedef struct {
    tfm_model *const *models;
    int64_t n_models;
    const tfm_text_model *tm;
    int32_t *const *ids;
    const by_len *order;
    int64_t n, B, max_out;
    const tfm_translate_opts *o;
    char **out;
    double t0;
    int64_t done;
} batch_job;

/* Decodes the batch of order[start ...] with slot s and writes its out[]. */
static int translate_batch(batch_job *job, decode_slot *s, int64_t start) {
    const tfm_translate_opts *o = job->o;
    const by_len *order = job->order;
    int64_t n = job->n, B = job->B, rows = n - start < B ? n - start : B;
    int64_t S = order[start + rows - 1].len + 1;
    for (int64_t r = 0; r < rows; r++) {
        const by_len *e = &order[start + r];
        for (int64_t j = 0; j < S; j++) {
            int32_t v = j < e->len ? job->ids[e->index][j] : j == e->len ? TFM_EOS_ID : TFM_PAD_ID;
            s->src[r * S + j] = v;
            s->pad[r * S + j] = v == TFM_PAD_ID;
        }
    }
    int64_t max_out = job->max_out;
    int64_t lim = o->max_len > 0 ? max_out : (2 * S + 10 < max_out ? 2 * S + 10 : max_out);
    const int64_t NB = o->n_best;
    /* beam search (one model without n-best lists: as tfm_beam_decode),
     * or greedy decoding for beam 1 with one model and no lists; beam 1
     * is greedy decoding whatever the stopping rule (with the bound it
     * would not be), so that --n-best 1 and ensembles agree with it */
    const tfm_beam_stop stop = o->beam > 1 ? o->beam_stop : TFM_BEAM_STOP_FINISHED;
    int st = job->n_models > 1 || NB || o->beam > 1
                 ? tfm_beam_decode_stop(job->models, job->n_models, &s->t, s->src, s->pad, rows, S,
                                        o->beam, (float)o->alpha, stop, lim, s->hyp, s->lens,
                                        NB ? &s->nb : NULL)
                 : tfm_greedy_decode(job->models[0], &s->t, s->src, s->pad, rows, S, lim, s->hyp,
                                     s->lens);
    if (st) return 1;
    for (int64_t r = 0; r < rows; r++) {
        /* greedy decoding of a row does not depend on the other rows, but
         * the batch's limit does (2 * its longest source + 10): each row
         * is cut to its own, so that a sentence translates the same in
         * any batch (tfm translate's windows depend on when input comes) */
        int64_t own = 2 * (order[start + r].len + 1) + 10;
        int cut = o->beam == 1 && o->max_len <= 0;
        if (cut && s->lens[r] > own) s->lens[r] = own;
        int64_t index = order[start + r].index;
        /* n-best LINE: the 0-based number of the input line (Moses) */
        job->out[index] =
            NB ? format_nbest(job->tm, &s->nb, r, lim,
                              (o->first_line > 0 ? o->first_line - 1 : 0) + index, cut ? own : -1)
               : tfm_vocab_decode(job->tm->vocab, s->hyp + r * lim, s->lens[r]);
        if (!job->out[index]) return 1;
    }
    if (o->progress) {
#pragma omp critical(tfm_translate_progress)
        {
            job->done += rows;
            double el = tfm_now() - job->t0;
            fprintf(stderr, "\rtranslated %lld/%lld sentences, %.1f sentences/s   ",
                    (long long)job->done, (long long)n, el > 0 ? (double)job->done / el : 0.0);
        }
    }
    return 0;
}

int tfm_translate_lines_ensemble(tfm_model *const *models, int64_t n_models,
                                 const tfm_text_model *tm, char *const *lines, int64_t n,
                                 const tfm_translate_opts *o, char **out) {
    TFM_ASSERT(models && tm && o && out && (lines || n == 0),
               "tfm_translate_lines: NULL model, text model, options, lines or out");
    if (n < 0) return tfm_set_error("translate: %lld lines: must not be negative", (long long)n), 1;
    if (o->max_len < 0)
        return tfm_set_error("translate: max_len %lld: must not be negative (0: 2 * source + 10)",
                             (long long)o->max_len),
               1;
    if (!isfinite(o->alpha))
        return tfm_set_error("translate: alpha %g: must be finite", o->alpha), 1;
    if (o->beam > TFM_MAX_BEAM || o->batch > TFM_MAX_DECODE_BATCH)
        return tfm_set_error("translate: beam %lld and batch %lld: at most %d and %lld",
                             (long long)o->beam, (long long)o->batch, TFM_MAX_BEAM,
                             (long long)TFM_MAX_DECODE_BATCH),
               1;
    if (o->precision != TFM_FP32 && o->precision != TFM_BF16)
        return tfm_set_error("translate: precision %d: unknown", (int)o->precision), 1;
    if (!tfm_beam_stop_name(o->beam_stop))
        return tfm_set_error("translate: beam_stop %d: unknown", (int)o->beam_stop), 1;
    if (o->beam < 1 || o->batch < 1)
        return tfm_set_error("translate: beam and batch must be at least 1"), 1;
    if (o->n_best < 0 || o->n_best > o->beam)
        return tfm_set_error("translate: n-best %lld: must be between 0 and the beam size %lld",
                             (long long)o->n_best, (long long)o->beam),
               1;
    if (n_models < 1 || n_models > TFM_ENSEMBLE_MAX)
        return tfm_set_error("translate: %lld models: must be between 1 and %d",
                             (long long)n_models, TFM_ENSEMBLE_MAX),
               1;
    tfm_model *m = models[0];
    int64_t cap = m->cfg.max_len - 1; /* source ids + </s> must fit the positions */
    for (int64_t k = 1; k < n_models; k++)
        if (models[k]->cfg.max_len - 1 < cap) cap = models[k]->cfg.max_len - 1;
    /* a model of 2 positions has room for </s> alone: every line would be
     * cut to nothing and "translated" */
    if (cap < 2)
        return tfm_set_error("translate: a model of %lld positions has no room for a source "
                             "subword beside </s>",
                             (long long)(cap + 1)),
               1;
    if (n == 0) return 0;
    /* on failure no out[i] is left allocated (freed at done) */
    for (int64_t i = 0; i < n; i++) out[i] = NULL;
    int32_t **ids = calloc((size_t)n, sizeof *ids);
    by_len *order = malloc((size_t)n * sizeof *order);
    if (!ids || !order) {
        free(ids);
        free(order);
        return tfm_set_error("out of memory"), 1;
    }
    int rc = 1;
    int packed_here[TFM_ENSEMBLE_MAX] = {0}; /* weights packed by this call */
    const char *name = o->input_name ? o->input_name : "input";
    int64_t first = o->first_line ? o->first_line : 1;
    for (int64_t i = 0; i < n; i++) {
        if (!lines[i]) {
            tfm_set_error("%s:%lld: NULL line", name, (long long)(first + i));
            goto done;
        }
        int32_t tmp[1];
        int64_t k = tfm_vocab_encode(tm->bpe, tm->vocab, lines[i], strlen(lines[i]), tmp, 0);
        if (k < 0) {
            tfm_set_error("%s:%lld: %s", name, (long long)(first + i), tfm_last_error());
            goto done;
        }
        ids[i] = malloc((size_t)(k + 1) * sizeof(int32_t));
        if (!ids[i]) goto done;
        tfm_vocab_encode(tm->bpe, tm->vocab, lines[i], strlen(lines[i]), ids[i], k);
        order[i] = (by_len){i, k < cap ? k : cap - 1}; /* longer inputs are cut */
        if (k >= cap && o->warn)
            fprintf(o->warn,
                    "tfm: %s:%lld: %lld subwords, more than the model's %lld positions allow: "
                    "translating the first %lld\n",
                    name, (long long)(first + i), (long long)k, (long long)(cap + 1),
                    (long long)(cap - 1));
    }
    qsort(order, (size_t)n, sizeof *order, cmp_len);
    /* batches of o->batch, but no larger than the lines there are (the same
     * batches: one of n when n is smaller) */
    int64_t B = o->batch < n ? o->batch : n, S_max = order[n - 1].len + 1;
    int64_t max_out = o->max_len > 0 ? o->max_len : 2 * S_max + 10;
    if (max_out > cap) max_out = cap;
    const int64_t n_batches = (n + B - 1) / B;
    /* the decoder caches too: taken from each slot's arena, every batch
     * reuses memory already mapped (tfm_kv_cache_init_in) */
    size_t arena = 4096;
    for (int64_t k = 0; k < n_models; k++)
        arena += tfm_model_activation_bytes(&models[k]->cfg, B * o->beam, S_max, 2) +
                 tfm_kv_cache_bytes(models[k], B * o->beam, S_max, max_out + 1);
    /* Several batches on several threads: a slot per thread, each batch
     * decoded on one thread (its kernels run serially there), which uses
     * the cores better than splitting every small GEMM of a batch. Not under
     * a profile (its phase clocks are shared) nor when a second slot's
     * memory is not there. Which thread decodes a batch changes no number:
     * the kernels' results do not depend on the thread count. */
    int workers = n_batches > 1 && !tfm_decode_get_profile() ? tfm_par_threads() : 1;
    if (workers > n_batches) workers = (int)n_batches;
    /* each slot may fill its arena: all of them together within a quarter
     * of the machine's memory (allocations succeed long before pages run
     * out, so a failed one is no guide) */
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double budget = pages > 0 && page > 0 ? (double)pages * (double)page / 4 : 0;
    while (workers > 1 && (double)workers * (double)arena > budget) workers--;
    if (workers < 1) workers = 1;
    decode_slot *slots = calloc((size_t)workers, sizeof *slots);
    if (!slots) {
        tfm_set_error("out of memory");
        goto done;
    }
    const int64_t NB = o->n_best;
    for (int w = 0; w < workers; w++)
        if (slot_init(&slots[w], arena, o->precision, B, S_max, max_out, NB)) {
            if (w == 0) {
                tfm_set_error("%s: for batches of %lld sentences x beam %lld of up to %lld "
                              "subwords (lower --batch or --beam)",
                              tfm_last_error(), (long long)B, (long long)o->beam, (long long)S_max);
                goto done_slots;
            }
            workers = w; /* fewer threads, the same translations */
            break;
        }
    /* the weights packed (bf16: rounded and packed) once, not on every GEMM
     * call (the same results); unpacked at the end, unless the caller packed */
    for (int64_t k = 0; k < n_models; k++) {
        if (tfm_model_packed(models[k], o->precision)) continue;
        if (tfm_model_pack(models[k], o->precision)) goto done_slots;
        packed_here[k] = 1;
    }
    batch_job job = {models, n_models, tm, ids, order, n, B, max_out, o, out, tfm_now(), 0};
    if (workers == 1) {
        for (int64_t j = 0; j < n_batches; j++)
            if (translate_batch(&job, &slots[0], j * B)) goto done_slots;
    } else {
        int failed = 0;
        char *first_error = NULL;
        /* longest batches first, each to the next free thread: the last
         * batch to finish is a short one (dynamic: any order gives the same
         * translations) */
#pragma omp parallel num_threads(workers)
        {
#ifdef _OPENMP
            decode_slot *mine = &slots[omp_get_thread_num()];
#else
            decode_slot *mine = &slots[0];
#endif
#pragma omp for schedule(dynamic, 1)
            for (int64_t j = 0; j < n_batches; j++) {
                int stop;
#pragma omp atomic read
                stop = failed;
                if (stop) continue;
                if (translate_batch(&job, mine, (n_batches - 1 - j) * B)) {
#pragma omp critical(tfm_translate_failed)
                    {
                        if (!failed) first_error = tfm_format("%s", tfm_last_error());
#pragma omp atomic write
                        failed = 1;
                    }
                }
            }
        }
        if (failed) {
            tfm_set_error("%s", first_error ? first_error : "out of memory");
            free(first_error);
            goto done_slots;
        }
    }
    if (o->progress) fprintf(stderr, "\n");
    rc = 0;
done_slots:
    for (int64_t k = 0; k < n_models; k++)
        if (packed_here[k]) tfm_model_unpack(models[k], o->precision);
    for (int w = 0; slots && w < workers; w++) slot_free(&slots[w]);
    free(slots);
done:
    for (int64_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
    free(order);
    for (int64_t i = 0; rc && i < n; i++) {
        free(out[i]);
        out[i] = NULL;
    }
    return rc;
}

/* "3 4 5" -> ids in [3, vocab), at most cap of them. */
static int parse_symbols(const char *line, const char *name, int64_t lineno, int64_t vocab,
                         int32_t *ids, int64_t cap, int64_t *n) {
    *n = 0;
    const char *p = line;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ' ') || errno)
            return tfm_set_error("%s:%lld: '%.*s' is not a symbol id", name, (long long)lineno,
                                 (int)strcspn(p, " "), p),
                   1;
        if (v < 3 || v >= vocab)
            return tfm_set_error("%s:%lld: symbol %ld is outside 3..%lld", name, (long long)lineno,
                                 v, (long long)(vocab - 1)),
                   1;
        if (*n >= cap)
            return tfm_set_error("%s:%lld: longer than %lld symbols", name, (long long)lineno,
                                 (long long)cap),
                   1;
        ids[(*n)++] = (int32_t)v;
        p = end;
    }
    return 0;
}

/* ids as "3 4 5" (malloc'd). */
static char *format_ids(const int32_t *ids, int64_t n) {
    size_t size = (size_t)n * 12 + 1, used = 0;
    char *s = malloc(size);
    if (!s) return NULL;
    s[0] = 0;
    for (int64_t i = 0; i < n; i++)
        used += (size_t)snprintf(s + used, size - used, i ? " %d" : "%d", ids[i]);
    return s;
}

int tfm_translate_toy_lines(tfm_model *m, char *const *lines, int64_t n,
                            const tfm_translate_opts *o, const char *name, char **out) {
    if (o->batch < 1 || o->batch > TFM_MAX_DECODE_BATCH)
        return tfm_set_error("translate: batch %lld: must be between 1 and %lld",
                             (long long)o->batch, (long long)TFM_MAX_DECODE_BATCH),
               1;
    if (n < 0) return tfm_set_error("translate: %lld lines", (long long)n), 1;
    if (o->beam > 1)
        return tfm_set_error("translate: beam %lld: a toy model decodes greedily",
                             (long long)o->beam),
               1;
    /* no larger than the lines there are (the same batches) */
    int64_t batch = o->batch < n ? o->batch : n > 0 ? n : 1;
    int64_t cap = m->cfg.max_len - 2; /* symbols; </s> and the decoder's <s> take two positions */
    if (cap < 1) return tfm_set_error("translate: the model handles no symbols"), 1;
    /* every line is checked before anything is decoded; the longest sizes the arena */
    int32_t *src = malloc((size_t)(batch * (cap + 1)) * sizeof(int32_t));
    int64_t S_max = 1, first = o->first_line > 0 ? o->first_line : 1;
    for (int64_t i = 0; src && i < n; i++) {
        int64_t len;
        if (parse_symbols(lines[i], name, first + i, m->cfg.vocab, src, cap, &len)) {
            free(src);
            return 1;
        }
        if (len + 1 > S_max) S_max = len + 1;
    }
    tfm_tape t;
    if (!src || tfm_tape_init(&t, tfm_model_activation_bytes(&m->cfg, batch, S_max, 2), 16)) {
        if (!src) tfm_set_error("out of memory");
        free(src);
        return 1;
    }
    t.no_grad = 1;
    t.training = 0;
    t.precision = o->precision;
    uint8_t *pad = malloc((size_t)(batch * (cap + 1)));
    int32_t *hyp = malloc((size_t)(batch * (cap + 1)) * sizeof(int32_t));
    int64_t *lens = malloc((size_t)batch * sizeof(int64_t)),
            *row_len = malloc((size_t)batch * sizeof(int64_t));
    int64_t made = 0; /* out[0..made) are set */
    int rc = 1;
    if (!src || !pad || !hyp || !lens || !row_len) {
        tfm_set_error("out of memory");
        goto done;
    }
    for (int64_t start = 0; start < n; start += batch) {
        int64_t B = n - start < batch ? n - start : batch, S = 1;
        for (int64_t b = 0; b < B; b++) {
            if (parse_symbols(lines[start + b], name, first + start + b, m->cfg.vocab,
                              src + b * (cap + 1), cap, &row_len[b]))
                goto done;
            if (row_len[b] + 1 > S) S = row_len[b] + 1;
        }
        /* repack to (B, S) with </s> and padding (hyp is the scratch) */
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < S; i++) {
                int32_t v = i < row_len[b]    ? src[b * (cap + 1) + i]
                            : i == row_len[b] ? TFM_EOS_ID
                                              : TFM_PAD_ID;
                hyp[b * S + i] = v;
                pad[b * S + i] = v == TFM_PAD_ID;
            }
        memcpy(src, hyp, (size_t)(B * S) * sizeof(int32_t));
        int64_t max_out = o->max_len > 0 ? o->max_len : 2 * S + 10;
        if (max_out > cap) max_out = cap;
        if (tfm_greedy_decode(m, &t, src, pad, B, S, max_out, hyp, lens)) goto done;
        for (int64_t b = 0; b < B; b++, made++)
            if (!(out[start + b] = format_ids(hyp + b * max_out, lens[b]))) {
                tfm_set_error("out of memory");
                goto done;
            }
    }
    rc = 0;
done:
    if (rc)
        for (int64_t i = 0; i < made; i++) free(out[i]), out[i] = NULL;
    free(src);
    free(pad);
    free(hyp);
    free(lens);
    free(row_len);
    tfm_tape_free(&t);
    return rc;
}
