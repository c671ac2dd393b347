/* tfm train on a parallel corpus: joint BPE, token-based batches, validation
 * loss / perplexity / BLEU, best and last checkpoints, early stopping,
 * resume. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "tfm/data.h"
#include "tfm/eval.h"
#include "tfm/text.h"
#include "train_common.h"
#include "translate.h"

typedef struct {
    tfm_pairs pairs;
    int32_t *ids; /* all ids of all sentences, one block */
} encoded;

static void encoded_free(encoded *e) {
    free(e->pairs.src);
    free(e->pairs.tgt);
    free(e->pairs.src_len);
    free(e->pairs.tgt_len);
    free(e->ids);
    memset(e, 0, sizeof *e);
}

static int encode_corpus(const tfm_corpus *c, const text_model *tm, encoded *e) {
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
        encoded_free(e);
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

/* BPE and vocabulary: reused from the run directory when present (resume),
 * otherwise learned jointly from both training files and saved there. */
static int prepare_text_model(const train_options *o, text_model *tm, FILE *log) {
    char codes[4096], vocab[4096];
    snprintf(codes, sizeof codes, "%s/bpe.codes", o->save);
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", o->save);
    if (o->resume && access(codes, F_OK) == 0 && access(vocab, F_OK) == 0)
        return text_model_load(o->save, tm);
    const char *files[2] = {o->src_train, o->tgt_train};
    memset(tm, 0, sizeof *tm);
    double t0 = tfm_now();
    tm->bpe = tfm_bpe_learn_files(files, 2, o->bpe_merges, 2, NULL);
    if (!tm->bpe) return 1;
    tm->vocab = tfm_vocab_build(tm->bpe, files, 2);
    if (!tm->vocab || tfm_bpe_save(tm->bpe, codes) || tfm_vocab_save(tm->vocab, vocab)) return 1;
    if (log)
        fprintf(log, "learned %lld BPE merges, vocabulary %d, in %.1f s\n",
                (long long)tfm_bpe_n_merges(tm->bpe), tfm_vocab_size(tm->vocab), tfm_now() - t0);
    return 0;
}

/* Mean NLL (no smoothing) over the validation pairs, batch by batch. */
static int valid_loss(trainer *tr, const tfm_batcher *vb, const tfm_pairs *vp, tfm_batch *batch,
                      double *nll) {
    tfm_tape *t = &tr->tape;
    double sum = 0;
    int64_t count = 0;
    for (int64_t k = 0; k < vb->n_batches; k++) {
        const int64_t *idx;
        int64_t n = tfm_batcher_batch(vb, k, &idx);
        if (tfm_batch_fill(batch, vp, idx, n)) return 1;
        tfm_seq_batch sb = {batch->b,      batch->s,       batch->t,       batch->src,
                            batch->dec_in, batch->dec_out, batch->src_pad, batch->tgt_pad};
        tfm_tape_reset(t);
        t->no_grad = 1;
        t->training = 0;
        int64_t ntok = 0;
        tfm_tensor *loss = tfm_model_loss(&tr->model, t, &sb, 0.0f, &ntok);
        t->no_grad = 0;
        t->training = 1;
        if (!loss) return 1;
        sum += (double)loss->data[0] * (double)ntok;
        count += ntok;
    }
    tfm_tape_reset(t);
    *nll = count ? sum / (double)count : 0.0;
    return 0;
}

int tfm_cmd_train_corpus(train_options *o, flag_def *flags, int n_flags) {
    if (!o->tgt_train) return tfm_cli_fail(2, "train: --src-train needs --tgt-train");
    if (!o->src_valid != !o->tgt_valid)
        return tfm_cli_fail(2, "train: give both --src-valid and --tgt-valid");
    if (!o->save)
        return tfm_cli_fail(2, "train: a corpus run needs --save DIR (checkpoints, vocabulary)");
    if (o->bpe_merges <= 0) o->bpe_merges = 8000;
    if (o->batch_tokens < 16) return tfm_cli_fail(2, "--batch-tokens: must be at least 16");
    if (o->max_tokens_len < 1) return tfm_cli_fail(2, "--max-tokens: must be positive");
    if (o->beam < 1 || o->beam > 64) return tfm_cli_fail(2, "--beam: must be between 1 and 64");
    if (o->valid_every < 1) return tfm_cli_fail(2, "--valid-every: must be positive");
    if (o->early_stop < 0 || o->valid_max < 0 || o->max_minutes < 0)
        return tfm_cli_fail(2, "--early-stop, --valid-max, --max-minutes: must not be negative");
    if (train_check_options(o)) return 2;
    if (o->threads > 0) tfm_set_num_threads((int)o->threads);

    /* read everything before creating anything in the run directory */
    tfm_corpus_opts copts = {.max_line_bytes = 1 << 20};
    tfm_corpus train, valid;
    memset(&valid, 0, sizeof valid);
    if (tfm_corpus_read(o->src_train, o->tgt_train, &copts, &train))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    if (o->src_valid && tfm_corpus_read(o->src_valid, o->tgt_valid, &copts, &valid))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    if (o->model_max_len < o->max_tokens_len + 2) o->model_max_len = o->max_tokens_len + 2;
    if (o->model_max_len < 2 * (o->max_tokens_len + 1) + 10)
        o->model_max_len = 2 * (o->max_tokens_len + 1) + 10;
    text_model tm;
    if (train_check_save_dir(o)) return tfm_cli_fail(1, "%s", tfm_last_error());
    if (access(o->save, F_OK) != 0 && train_make_dirs(o->save) != 0)
        return tfm_cli_fail(1, "--save %s: cannot create directory", o->save);
    if (prepare_text_model(o, &tm, o->quiet ? NULL : stdout))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    encoded etrain, evalid;
    memset(&evalid, 0, sizeof evalid);
    if (encode_corpus(&train, &tm, &etrain)) return tfm_cli_fail(1, "%s", tfm_last_error());
    if (valid.n && encode_corpus(&valid, &tm, &evalid))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    tfm_batch_opts bo = {.batch_tokens = o->batch_tokens,
                         .max_src_len = o->max_tokens_len,
                         .max_tgt_len = o->max_tokens_len,
                         .seed = (uint64_t)o->seed};
    tfm_batcher batcher, vbatcher;
    if (tfm_batcher_init(&batcher, &etrain.pairs, &bo))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    int64_t B, S, T, vB = 0, vS = 0, vT = 0;
    tfm_batcher_max_shape(&batcher, &B, &S, &T);
    if (valid.n) {
        if (tfm_batcher_init(&vbatcher, &evalid.pairs, &bo))
            return tfm_cli_fail(1, "%s", tfm_last_error());
        tfm_batcher_max_shape(&vbatcher, &vB, &vS, &vT);
    }
    tfm_model_config mc;
    train_model_config(o, &mc);
    mc.vocab = tfm_vocab_size(tm.vocab);
    trainer tr;
    if (trainer_init(&tr, o, &mc, flags, n_flags, B > vB ? B : vB, S > vS ? S : vS,
                     T > vT ? T : vT))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    tfm_kv_set(&tr.state, "data.kind", "text");
    trainer_log(&tr,
                "corpus %s / %s: %lld pairs, %lld dropped (longer than %lld subwords); "
                "%lld batches per epoch (max %lld x %lld/%lld); vocabulary %d; %lld parameters; %d "
                "threads\n",
                o->src_train, o->tgt_train, (long long)train.n, (long long)batcher.n_dropped,
                (long long)o->max_tokens_len, (long long)batcher.n_batches, (long long)B,
                (long long)S, (long long)T, tfm_vocab_size(tm.vocab), (long long)tr.n_params,
                tfm_num_threads());
    if (valid.n && vbatcher.n_dropped)
        trainer_log(
            &tr,
            "validation: %lld of %lld pairs longer than %lld subwords are left out of the loss\n",
            (long long)vbatcher.n_dropped, (long long)valid.n, (long long)o->max_tokens_len);
    /* restore the data position and the best-so-far */
    double best_bleu = -1;
    int64_t no_improve = 0;
    if (!tfm_kv_get(&tr.state, "state.pos")) { /* a fresh run (resume brought these back) */
        tfm_kv_set(&tr.state, "state.best_bleu", "%.17g", best_bleu);
        tfm_kv_set(&tr.state, "state.no_improve", "0");
        tfm_kv_set(&tr.state, "state.epoch", "%lld", (long long)batcher.state.epoch);
        tfm_kv_set(&tr.state, "state.pos", "%lld", (long long)batcher.state.pos);
    }
    if (o->resume) {
        tfm_batcher_state st = batcher.state;
        const char *w = "checkpoint";
        if (tfm_kv_get_i64(&tr.state, "state.epoch", &st.epoch, w) ||
            tfm_kv_get_i64(&tr.state, "state.pos", &st.pos, w) ||
            tfm_kv_get_f64(&tr.state, "state.best_bleu", &best_bleu, w) ||
            tfm_kv_get_i64(&tr.state, "state.no_improve", &no_improve, w) ||
            tfm_batcher_set_state(&batcher, st))
            return tfm_cli_fail(1, "%s", tfm_last_error());
    }
    tfm_batch batch;
    if (tfm_batch_alloc(&batch, B > vB ? B : vB, S > vS ? S : vS, T > vT ? T : vT))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    translate_options to = {
        .beam = o->beam, .alpha = o->alpha, .batch = 64, .max_len = 0, .quiet = 1};
    int64_t n_dec = valid.n && o->valid_max > 0 && o->valid_max < valid.n ? o->valid_max : valid.n;
    char **hyps = calloc((size_t)(n_dec + 1), sizeof(char *));
    double train_seconds = 0;
    int64_t tokens = 0;
    int stop_reason = 0; /* 1 early stop, 2 time */
    for (int64_t step = tr.step + 1; step <= o->steps && !train_should_stop(); step++) {
        const int64_t *idx;
        int64_t n = tfm_batcher_next(&batcher, &idx);
        if (tfm_batch_fill(&batch, &etrain.pairs, idx, n))
            return tfm_cli_fail(1, "%s", tfm_last_error());
        tfm_seq_batch sb = {batch.b,      batch.s,       batch.t,       batch.src,
                            batch.dec_in, batch.dec_out, batch.src_pad, batch.tgt_pad};
        double t0 = tfm_now();
        int st = trainer_step(&tr, &sb);
        train_seconds += tfm_now() - t0;
        if (st < 0) return tfm_cli_fail(1, "%s", tfm_last_error());
        tokens += batch.n_tgt_tokens;
        tfm_kv_set(&tr.state, "state.epoch", "%lld", (long long)batcher.state.epoch);
        tfm_kv_set(&tr.state, "state.pos", "%lld", (long long)batcher.state.pos);
        trainer_progress(&tr, tokens, train_seconds);
        int time_up = o->max_minutes > 0 && train_seconds > o->max_minutes * 60;
        if (valid.n && (step % o->valid_every == 0 || step == o->steps || time_up)) {
            double nll = 0, t_valid = tfm_now();
            if (valid_loss(&tr, &vbatcher, &evalid.pairs, &batch, &nll))
                return tfm_cli_fail(1, "%s", tfm_last_error());
            for (int64_t i = 0; i < n_dec; i++) {
                free(hyps[i]);
                hyps[i] = NULL;
            }
            if (translate_lines(&tr.model, &tm, valid.src, n_dec, &to, hyps))
                return tfm_cli_fail(1, "%s", tfm_last_error());
            tfm_bleu bleu;
            const char *const *refs[1] = {(const char *const *)valid.tgt};
            if (tfm_bleu_corpus((const char *const *)hyps, n_dec, refs, 1, 0, &bleu))
                return tfm_cli_fail(1, "%s", tfm_last_error());
            int improved = bleu.score > best_bleu;
            if (improved) {
                best_bleu = bleu.score;
                no_improve = 0;
            } else {
                no_improve++;
            }
            tfm_kv_set(&tr.state, "state.best_bleu", "%.17g", best_bleu);
            tfm_kv_set(&tr.state, "state.no_improve", "%lld", (long long)no_improve);
            if (tr.tty && !o->quiet) printf("\n");
            trainer_log(
                &tr,
                "validation at step %lld (epoch %lld): loss %.4f ppl %.2f BLEU %.2f%s (%.1fs)\n",
                (long long)step, (long long)batcher.state.epoch, nll, exp(nll), bleu.score,
                improved ? " (best)" : "", tfm_now() - t_valid);
            trainer_metrics(&tr, train_seconds > 0 ? (double)tokens / train_seconds : 0, nll,
                            bleu.score);
            if (improved && trainer_save_best(&tr)) return tfm_cli_fail(1, "%s", tfm_last_error());
            if (trainer_checkpoint(&tr, 1)) return tfm_cli_fail(1, "%s", tfm_last_error());
            if (o->early_stop > 0 && no_improve >= o->early_stop) stop_reason = 1;
        } else if (trainer_maybe_checkpoint(&tr, 0)) {
            return tfm_cli_fail(1, "%s", tfm_last_error());
        }
        if (time_up) stop_reason = 2;
        if (stop_reason) break;
    }
    trainer_progress_end(&tr);
    if (stop_reason == 1)
        trainer_log(&tr, "early stop: %lld validations without improvement\n",
                    (long long)no_improve);
    if (stop_reason == 2)
        trainer_log(&tr, "stopping: --max-minutes %.1f reached\n", o->max_minutes);
    if (trainer_checkpoint(&tr, 1)) return tfm_cli_fail(1, "%s", tfm_last_error());
    if (!valid.n && trainer_save_best(&tr)) return tfm_cli_fail(1, "%s", tfm_last_error());
    printf("steps=%lld epochs=%lld best_bleu=%.2f seconds=%.1f tokens_per_s=%.0f\n",
           (long long)tr.step, (long long)batcher.state.epoch, best_bleu, train_seconds,
           train_seconds > 0 ? (double)tokens / train_seconds : 0.0);
    for (int64_t i = 0; i < n_dec; i++) free(hyps[i]);
    free(hyps);
    tfm_batch_free(&batch);
    tfm_batcher_free(&batcher);
    if (valid.n) tfm_batcher_free(&vbatcher);
    encoded_free(&etrain);
    encoded_free(&evalid);
    tfm_corpus_free(&train);
    tfm_corpus_free(&valid);
    text_model_free(&tm);
    trainer_free(&tr);
    return 0;
}
