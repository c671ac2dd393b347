/* tfm translate: decode stdin line by line with a trained or exported model.
 * Toy models read space-separated symbol ids ("3 4 5 6"); text models read
 * sentences and write detokenized translations, one line per input line. */
#include <errno.h>
#include <float.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "flags.h"
#include "tfm/data.h"
#include "tfm/decode.h"
#include "tfm/nn.h"
#include "tfm/train.h"

static const char *USAGE =
    "tfm translate --model DIR [--model DIR2 ...] [--beam K] [--n-best N] [--alpha A] < input > "
    "output";

/* Writes a window's translations and flushes them: a reader of the output
 * sees each window as soon as it is decoded. */
static int write_lines(char *const *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) fputs(out[i], stdout), fputc('\n', stdout);
    if (fflush(stdout) || ferror(stdout))
        return tfm_set_error("write error on standard output: %s", strerror(errno)), 1;
    return 0;
}

/* ---- under mpirun: every window's sentences shared across the ranks ----------
 * Rank 0 reads the input and sends each window to every rank; rank r
 * translates sentences n * r / N .. n * (r + 1) / N - 1 of it, and rank 0
 * gathers the translations and writes them in input order, so the output is
 * the one process's (each sentence is decoded alone or in a batch of
 * similar length: the same tokens whichever rank decodes it). */
typedef struct {
    int64_t n, first, bytes, status; /* status: 0 lines follow, 1 end of input, 2 error */
} window_head;

/* Rank 0's window (in, first, status) to every rank; on the others *in
 * receives the lines. */
static int share_window(tfm_dist *d, tfm_lines *in, int64_t *first, int64_t *status) {
    window_head h = {0, *first, 0, *status};
    if (d->rank == 0) {
        h.n = in->n;
        for (int64_t i = 0; i < in->n; i++) h.bytes += (int64_t)strlen(in->line[i]) + 1;
    }
    if (d->broadcast(d, &h, sizeof h)) return 1;
    *first = h.first;
    *status = h.status;
    if (h.status) return 0;
    char *text = malloc((size_t)h.bytes + 1);
    if (!text) return tfm_set_error("out of memory"), 1;
    if (d->rank == 0) {
        char *at = text;
        for (int64_t i = 0; i < in->n; i++) {
            size_t len = strlen(in->line[i]) + 1;
            memcpy(at, in->line[i], len);
            at += len;
        }
    }
    int rc = d->broadcast(d, text, (size_t)h.bytes);
    if (rc || d->rank == 0) {
        free(text);
        return rc;
    }
    in->n = h.n;
    in->text = text;
    in->line = malloc((size_t)(h.n + 1) * sizeof(char *));
    if (!in->line) return tfm_set_error("out of memory"), 1;
    for (int64_t i = 0, at = 0; i < h.n; i++) {
        in->line[i] = text + at;
        at += (int64_t)strlen(text + at) + 1;
    }
    return 0;
}

/* The translations of every rank's part (out[lo .. hi) here, or this rank's
 * error message when failed) into out[0 .. n) on rank 0. Returns 0, 1 on a
 * transport error, 2 when a rank failed (its message printed by it). */
static int gather_window(tfm_dist *d, char **out, int64_t n, int64_t lo, int64_t hi, int failed) {
    int size = d->size, rc = 1;
    size_t len = 0;
    if (failed) {
        len = strlen(tfm_last_error()) + 1;
    } else {
        for (int64_t i = lo; i < hi; i++) len += strlen(out[i]) + 1;
    }
    int64_t mine[2] = {(int64_t)len, failed}, *all = malloc((size_t)size * sizeof mine);
    char *buf = NULL, *every = NULL;
    if (!all) return tfm_set_error("out of memory"), 1;
    if (d->allgather(d, mine, sizeof mine, all)) goto done;
    size_t most = 1;
    int any_failed = 0;
    for (int r = 0; r < size; r++) {
        if ((size_t)all[2 * r] > most) most = (size_t)all[2 * r];
        any_failed |= all[2 * r + 1] != 0;
    }
    if (any_failed) { /* each failed rank says why itself */
        if (failed) fprintf(stderr, "tfm: rank %d: %s\n", d->rank, tfm_last_error());
        d->agreed_error = 1;
        rc = 2;
        goto done;
    }
    buf = calloc(most, 1);
    every = malloc(most * (size_t)size);
    if (!buf || !every) {
        tfm_set_error("out of memory");
        goto done;
    }
    char *at = buf;
    for (int64_t i = lo; i < hi; i++) {
        size_t l = strlen(out[i]) + 1;
        memcpy(at, out[i], l);
        at += l;
    }
    if (d->allgather(d, buf, most, every)) goto done;
    if (d->rank == 0) {
        for (int r = 1; r < size; r++) {
            const char *p = every + (size_t)r * most;
            for (int64_t i = n * r / size; i < n * (r + 1) / size; i++) {
                out[i] = strdup(p);
                if (!out[i]) {
                    tfm_set_error("out of memory");
                    goto done;
                }
                p += strlen(p) + 1;
            }
        }
    }
    rc = 0;
done:
    free(all);
    free(buf);
    free(every);
    return rc;
}

/* Whether two text models share one vocabulary: the same pieces in the
 * same order (ids mean the same to every member of an ensemble). */
static int same_vocab(const tfm_text_model *a, const tfm_text_model *b) {
    int32_t n = tfm_vocab_size(a->vocab);
    if (tfm_vocab_size(b->vocab) != n) return 0;
    for (int32_t i = 0; i < n; i++)
        if (strcmp(tfm_vocab_token(a->vocab, i), tfm_vocab_token(b->vocab, i))) return 0;
    return 1;
}

/* Loads the models (run directories, checkpoints or exports; several: an
 * ensemble, which needs one vocabulary) and translates the input window by
 * window (tfm_line_window: up to 16 batches, fewer when no more input is
 * ready yet), writing each window's lines in input order as soon as they are
 * decoded. */
static int translate_main(const char *const *model_paths, int n_models, const char *input,
                          tfm_translate_opts *o, int progress, tfm_dist *d) {
    int rank = d ? d->rank : 0, ranks = d ? d->size : 1;
    tfm_model models[FLAG_LIST_MAX];
    tfm_model *mp[FLAG_LIST_MAX];
    tfm_text_model tm;
    memset(&tm, 0, sizeof tm);
    int loaded = 0, toy = 0, have_tm = 0, rc = 1, shared = 0;
    FILE *f = NULL;
    int is_stdin = 1;
    for (; loaded < n_models; loaded++) {
        tfm_kv meta;
        tfm_kv_init(&meta);
        if (tfm_load_model(model_paths[loaded], &models[loaded], &meta)) {
            tfm_kv_free(&meta);
            goto done;
        }
        mp[loaded] = &models[loaded];
        int is_toy = !strcmp(tfm_kv_get(&meta, "data.kind"), "toy"); /* checked on loading */
        tfm_kv_free(&meta);
        if (loaded == 0) toy = is_toy;
        if (is_toy && (n_models > 1 || o->n_best || o->beam > 1)) {
            tfm_set_error("--model %s: a toy model decodes greedily by itself (no ensembles, no "
                          "--beam above 1, no --n-best)",
                          model_paths[loaded]);
            loaded++;
            goto done;
        }
        if (!toy && models[loaded].cfg.max_len < 3) {
            tfm_set_error("--model %s: a model of %lld positions has no room for a source subword "
                          "beside </s>",
                          model_paths[loaded], (long long)models[loaded].cfg.max_len);
            loaded++;
            goto done;
        }
        if (!toy && loaded == 0) {
            if (tfm_load_text_model(model_paths[0], &models[0].cfg, &tm)) {
                loaded++;
                goto done;
            }
            have_tm = 1;
        } else if (!toy) {
            tfm_text_model other;
            memset(&other, 0, sizeof other);
            int bad = tfm_load_text_model(model_paths[loaded], &models[loaded].cfg, &other);
            int have_other = !bad;
            if (!bad && !same_vocab(&tm, &other)) {
                char *dir = tfm_model_text_dir(model_paths[loaded]);
                tfm_set_error("--model %s: its vocabulary (%s/vocab.txt, %lld ids) is not the one "
                              "of --model %s (%lld ids): an ensemble needs one shared vocabulary",
                              model_paths[loaded], dir ? dir : model_paths[loaded],
                              (long long)tfm_vocab_size(other.vocab), model_paths[0],
                              (long long)tfm_vocab_size(tm.vocab));
                free(dir);
                bad = 1;
            }
            if (have_other) tfm_text_model_free(&other);
            if (bad) {
                loaded++;
                goto done;
            }
        }
    }
    is_stdin = !strcmp(input, "-");
    const char *name = is_stdin ? "<stdin>" : input;
    /* under mpirun only rank 0 reads the input */
    f = rank ? NULL : is_stdin ? stdin : fopen(input, "rb");
    struct stat st;
    tfm_line_window w;
    memset(&w, 0, sizeof w);
    if (!rank && !f) {
        tfm_set_error("%s: cannot open: %s", input, strerror(errno));
    } else if (!rank && fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        tfm_set_error("%s: is a directory, not a text file", name);
    } else {
        shared = 1;
    }
    if (!shared && !d) goto done;
    tfm_corpus_opts copts = {.max_line_bytes = 1 << 20, .allow_empty = 1, .allow_empty_file = 1};
    if (shared && !rank) tfm_line_window_init(&w, fileno(f), name, &copts);
    o->warn = stderr;
    o->input_name = name;
    int64_t done_n = 0;
    double t0 = tfm_now();
    for (;;) {
        tfm_lines in;
        memset(&in, 0, sizeof in);
        int64_t first = 0, status = shared ? 0 : 2;
        if (!rank && shared && tfm_line_window_next(&w, 16 * o->batch * ranks, &in, &first))
            status = 2;
        else if (!rank && shared && in.n == 0)
            status = 1;
        if (d && share_window(d, &in, &first, &status)) break;
        if (status) {
            rc = status == 1 ? 0 : 1;
            if (status == 2 && d) d->agreed_error = 1;
            if (status == 2 && rank) rc = 2; /* rank 0 says why */
            break;
        }
        char **out = calloc((size_t)in.n + 1, sizeof *out);
        int64_t lo = in.n * rank / ranks, hi = in.n * (rank + 1) / ranks;
        o->first_line = first + lo;
        int failed =
            !out || (toy ? tfm_translate_toy_lines(mp[0], in.line + lo, hi - lo, o, name, out + lo)
                         : tfm_translate_lines_ensemble(mp, n_models, &tm, in.line + lo, hi - lo, o,
                                                        out + lo));
        if (!out) tfm_set_error("out of memory");
        if (d) {
            int g = gather_window(d, out, in.n, lo, hi, failed);
            if (g == 2) rc = 2;
            failed = g != 0;
        }
        if (!failed && !rank) failed = write_lines(out, in.n);
        for (int64_t i = 0; out && i < in.n; i++) free(out[i]);
        free(out);
        done_n += in.n;
        tfm_lines_free(&in);
        if (failed) break;
        if (progress)
            fprintf(stderr, "\rtranslated %lld sentences, %.1f sentences/s   ", (long long)done_n,
                    (double)done_n / (tfm_now() - t0 + 1e-9));
    }
    if (progress && done_n) fprintf(stderr, "\n");
    if (shared && !rank) tfm_line_window_free(&w);
done:
    if (rc == 2)
        rc = 1; /* said already (by this rank or another) */
    else if (rc)
        tfm_cli_fail(1, "%s", tfm_last_error());
    if (f && !is_stdin) fclose(f);
    if (have_tm) tfm_text_model_free(&tm);
    for (int k = 0; k < loaded; k++) tfm_model_free(&models[k]);
    return rc;
}

/* --profile: one line on stderr, seconds per decoding phase and their share */
static void print_profile(const tfm_decode_profile *p) {
    const double v[] = {p->encoder,     p->cross_kv, p->decoder,     p->output,
                        p->log_softmax, p->top_k,    p->bookkeeping, p->select};
    const char *names[] = {"encoder",     "cross_kv", "decoder",     "output",
                           "log_softmax", "top_k",    "bookkeeping", "select"};
    double total = 0;
    for (int i = 0; i < 8; i++) total += v[i];
    fprintf(stderr, "profile: total %.3f s", total);
    for (int i = 0; i < 8; i++)
        fprintf(stderr, ", %s %.3f s %.1f%%", names[i], v[i], total > 0 ? 100 * v[i] / total : 0.0);
    fprintf(stderr, "; steps %lld, row_steps %lld, early_stops %lld\n", (long long)p->steps,
            (long long)p->row_steps, (long long)p->early_stops);
}

int tfm_cmd_translate(int argc, char **argv) {
    const char *input = "-", *precision = "fp32", *beam_stop = "finished";
    flag_list model_paths = {{0}, 0};
    int64_t beam = 1, batch = 64, threads = 0, max_len = 0, n_best = 0;
    double alpha = 0.6;
    int quiet = 0, profile = 0;
    flag_def flags[] = {
        {"model", FLAG_LIST, &model_paths,
         "run directory, checkpoint file, or export directory; given several times, an ensemble "
         "(the models' log-probabilities averaged at each step; one shared vocabulary)",
         0},
        {"input", FLAG_STR, &input, "input file (- for stdin)", 0},
        {"beam", FLAG_INT, &beam, "beam size (1: greedy)", 0},
        {"alpha", FLAG_FLOAT, &alpha, "length penalty (GNMT) for beam search", 0},
        {"n-best", FLAG_INT, &n_best,
         "write the K best hypotheses of beam search per input line as 'LINE ||| hypothesis ||| "
         "score' (Moses; LINE from 0, score the length-normalized log-probability; K <= --beam; "
         "0: the translation only)",
         0},
        {"beam-stop", FLAG_STR, &beam_stop,
         "when beam search ends a sentence: finished (once --beam hypotheses have finished) or "
         "bound (once no unfinished hypothesis can finish above the best finished one, or the "
         "--n-best-th: never a lower score, more steps); --beam 1 is greedy with either",
         0},
        {"batch", FLAG_INT, &batch, "sentences decoded together", 0},
        {"max-len", FLAG_INT, &max_len, "longest output in subwords (0: from the input)", 0},
        {"threads", FLAG_INT, &threads, "OpenMP threads (0: all cores)", 0},
        {"quiet", FLAG_BOOL, &quiet, "no progress on stderr", 0},
        {"profile", FLAG_BOOL, &profile, "seconds per decoding phase on stderr at the end", 0},
        {"precision", FLAG_STR, &precision,
         "GEMM arithmetic: fp32 or bf16 (bf16 inputs, fp32 sums; any model runs in either)", 0},
    };
    int n_flags = (int)(sizeof flags / sizeof flags[0]);
    int rc = flags_parse(flags, n_flags, argc, argv, USAGE, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (!model_paths.n) return tfm_cli_fail(2, "translate: --model DIR is required");
    if (beam < 1 || beam > 64) return tfm_cli_fail(2, "--beam: must be between 1 and 64");
    if (n_best < 0) return tfm_cli_fail(2, "--n-best: must not be negative");
    if (n_best > beam)
        return tfm_cli_fail(2, "--n-best: %lld is more than the beam size %lld (--beam)",
                            (long long)n_best, (long long)beam);
    if (batch < 1 || batch > 4096) return tfm_cli_fail(2, "--batch: must be between 1 and 4096");
    if (!(alpha >= 0)) return tfm_cli_fail(2, "--alpha: must not be negative");
    if (alpha > FLT_MAX) return tfm_cli_fail(2, "--alpha: at most %g (a float)", FLT_MAX);
    if (max_len < 0) return tfm_cli_fail(2, "--max-len: must not be negative");
    if (threads < 0 || threads > TFM_MAX_THREADS)
        return tfm_cli_fail(2, "--threads: must be between 0 and %d", TFM_MAX_THREADS);
    tfm_beam_stop stop;
    if (tfm_beam_stop_parse(beam_stop, &stop))
        return tfm_cli_fail(2, "--beam-stop: '%s' is not finished or bound", beam_stop);
    tfm_precision prec;
    if (tfm_precision_parse(precision, &prec))
        return tfm_cli_fail(2, "--precision: '%s' is not fp32 or bf16", precision);
    if (threads > 0) tfm_set_num_threads((int)threads);
    /* progress per window: translate_main shows the running count */
    tfm_translate_opts to = {.beam = beam,
                             .alpha = alpha,
                             .batch = batch,
                             .max_len = max_len,
                             .precision = prec,
                             .n_best = n_best,
                             .beam_stop = stop};
    tfm_decode_profile prof;
    memset(&prof, 0, sizeof prof);
    if (profile) tfm_decode_set_profile(&prof);
    tfm_dist *d = cli_dist_start(); /* under mpirun: the ranks share the sentences */
    if (!d || d->rank == 0) cli_note_bf16(prec); /* once, not per rank */
    rc = translate_main(model_paths.items, model_paths.n, input, &to,
                        !quiet && isatty(fileno(stderr)) && !(d && d->rank),
                        d && d->size > 1 ? d : NULL);
    rc = cli_dist_end(d, rc);
    tfm_decode_set_profile(NULL);
    if (profile && rc == 0) print_profile(&prof);
    return rc;
}
