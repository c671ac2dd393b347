/* Training on a parallel corpus: joint BPE, token-based batches, validation
 * loss / perplexity / BLEU, best and last checkpoints, early stopping,
 * resume. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
} corpus_valid;

/* Mean NLL (no smoothing) over the validation pairs, batch by batch. */
static int valid_loss(tfm_trainer *tr, corpus_valid *v, double *nll) {
    tfm_tape *t = &tr->tape;
    double sum = 0;
    int64_t count = 0;
    for (int64_t k = 0; k < v->vbatcher.n_batches; k++) {
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
    *nll = count ? sum / (double)count : 0.0;
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
    if (tfm_translate_lines(&tr->model, v->tm, v->valid->src, v->n_dec, &v->task->decode, v->hyps))
        return 1;
    tfm_bleu bleu;
    const char *const *refs[1] = {(const char *const *)v->valid->tgt};
    if (tfm_bleu_corpus((const char *const *)v->hyps, v->n_dec, refs, 1, 0, &bleu)) return 1;
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

/* BPE and vocabulary: reused from the run directory when present (resume),
 * otherwise learned jointly from the corpus already in memory (each input
 * file is read once: pipes, FIFOs and /dev/stdin work) and saved later,
 * once the trainer has checked and locked the run directory (*learned). */
static int prepare_text_model(const tfm_corpus_task *task, const tfm_train_opts *o,
                              const tfm_corpus *train, tfm_text_model *tm, int *learned) {
    *learned = 0;
    char *codes = tfm_path_join(o->run_dir, "bpe.codes"),
         *vocab = tfm_path_join(o->run_dir, "vocab.txt");
    int reuse = codes && vocab && o->resume && access(codes, F_OK) == 0 && access(vocab, F_OK) == 0;
    free(codes);
    free(vocab);
    if (reuse) return tfm_text_model_load(o->run_dir, tm);
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
    if (task->valid_max < 0) return tfm_set_error("--valid-max: must not be negative"), 1;
    if (opts->threads > 0) tfm_set_num_threads(opts->threads);
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
    int fresh_restart;
    if (tfm_run_check_dir(&o, &fresh_restart, 0) ||
        prepare_text_model(task, &o, &train, &tm, &learned))
        goto done;
    have_tm = 1;
    if (tfm_corpus_encode(&train, &tm, &etrain)) goto done;
    if (valid.n && tfm_corpus_encode(&valid, &tm, &evalid)) goto done;
    tfm_batch_opts bo = {.batch_tokens = task->batch_tokens,
                         .max_src_len = task->max_tokens,
                         .max_tgt_len = task->max_tokens,
                         .seed = o.seed};
    if (tfm_corpus_source_init(&source, &etrain.pairs, &bo)) goto done;
    have_source = 1;
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
    tfm_train_hooks hooks = {.ctx = &cv, .validate = valid.n ? validate : NULL};
    if (tfm_trainer_init(&tr, &o, &mc, &source.source, &hooks)) goto done;
    have_tr = 1;
    /* written only now: a run that fails its checks leaves the directory as it was */
    if (learned && tfm_text_model_save(&tm, o.run_dir)) goto done;
    tfm_trainer_log(&tr,
                    "corpus %s / %s: %lld pairs, %lld dropped (longer than %lld subwords); "
                    "%lld batches per epoch (max %lld x %lld/%lld); vocabulary %d; %lld "
                    "parameters; %d threads\n",
                    task->src_train, task->tgt_train, (long long)train.n,
                    (long long)source.batcher.n_dropped, (long long)task->max_tokens,
                    (long long)source.batcher.n_batches, (long long)B, (long long)S, (long long)T,
                    tfm_vocab_size(tm.vocab), (long long)tr.n_params, tfm_num_threads());
    if (valid.n && cv.vbatcher.n_dropped)
        tfm_trainer_log(&tr,
                        "validation: %lld of %lld pairs longer than %lld subwords are left out "
                        "of the loss\n",
                        (long long)cv.vbatcher.n_dropped, (long long)valid.n,
                        (long long)task->max_tokens);
    if (tfm_train(&tr)) goto done;
    if (summary) {
        summary->steps = tr.step;
        summary->epochs = source.batcher.state.epoch;
        summary->best_bleu = isfinite(tr.best_metric) ? tr.best_metric : -1;
        summary->seconds = tr.train_seconds;
        summary->tokens_per_s = tr.train_seconds > 0 ? (double)tr.tokens / tr.train_seconds : 0;
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
    return rc;
}
