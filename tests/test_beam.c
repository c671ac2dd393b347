/* Beam search, proven against slow references that share none of its code:
 *  - exhaustive: with a beam wider than the number of possible hypotheses,
 *    tfm_beam_decode returns exactly the best length-normalized finished
 *    hypothesis found by scoring every one of them teacher-forced;
 *  - reference beam: with narrow beams it returns what a plain beam search
 *    over teacher-forced next-token distributions returns (no KV cache);
 *  - the GNMT length penalty ((5 + len) / 6)^alpha, len counting </s>: its
 *    direction and the hand-computed alpha where two hypotheses swap.
 * Teacher-forced scoring runs the full decoder (tfm_model_decode) over the
 * whole prefix, so a stale or misordered KV cache, candidates ranked without
 * their accumulated score, or an inverted penalty each change the answer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/decode/decode_internal.h"
#include "tfm/decode.h"
#include "tfm/kernels.h"
#include "tfm/nn.h"
#include "util_test.h"

enum { MAX_OUT = 8, MAX_HYPS = 4096 };

/* Separation below which two scores count as a tie: the decoder's cached and
 * full paths round differently (about 1e-6 here), so a case whose answer
 * hinges on a smaller gap is not a test of the algorithm. */
#define TIE_EPS 1e-4

/* "3 4 2" for messages (static storage, two slots). */
static const char *ids_str(const int32_t *ids, int64_t n) {
    static char buf[2][256];
    static int slot;
    char *p = buf[slot ^= 1];
    size_t used = 0;
    p[0] = 0;
    for (int64_t i = 0; i < n && used + 16 < sizeof buf[0]; i++)
        used += (size_t)snprintf(p + used, sizeof buf[0] - used, i ? " %d" : "%d", ids[i]);
    return p;
}

static double gnmt_lp(int64_t len, double alpha) { return pow((5.0 + (double)len) / 6.0, alpha); }

/* A random post-LN model with `vocab` ids (vocab - 3 generable besides </s>);
 * weights scaled by `sharpen` so the next-token distributions are peaked
 * enough for the hypotheses to be well separated. */
static void random_model(tfm_model *m, int64_t vocab, uint64_t seed, float sharpen) {
    tfm_model_config c;
    tfm_model_config_default(&c);
    c.vocab = vocab;
    c.d_model = 16;
    c.n_heads = 2;
    c.d_ff = 32;
    c.enc_layers = c.dec_layers = 2;
    c.max_len = 32;
    c.dropout = 0;
    ck_assert_int_eq(tfm_model_init(m, &c), 0);
    tfm_model_init_weights(m, seed);
    for (int64_t i = 0; i < m->params.count; i++) {
        tfm_tensor *p = m->params.items[i];
        if (p->ndim != 2) continue;
        for (int64_t j = 0; j < p->n; j++) p->data[j] *= sharpen;
    }
}

/* B sources of different lengths (the last ones padded), tokens >= 3. */
static void make_sources(int32_t *src, uint8_t *pad, int64_t B, int64_t S, int64_t vocab,
                         uint64_t seed) {
    for (int64_t b = 0; b < B; b++) {
        int64_t len = S - 1 - b % 3;
        if (len < 1) len = 1;
        for (int64_t j = 0; j < S; j++) {
            int32_t tok =
                (int32_t)(3 + (seed * 31 + (uint64_t)(b * 7 + j * 5)) % (uint64_t)(vocab - 3));
            src[b * S + j] = j < len ? tok : j == len ? TFM_EOS_ID : TFM_PAD_ID;
            pad[b * S + j] = src[b * S + j] == TFM_PAD_ID;
        }
    }
}

/* Teacher-forced next-token log-probabilities (over </s> .. vocab-1, as beam
 * search normalizes them; pad and <s> get -inf) after each of n prefixes of
 * length L for one source: lp (n, V). Prefixes (n, L) without the <s>. */
static void tf_next_logprobs(tfm_model *m, tfm_tape *t, const int32_t *src1, const uint8_t *pad1,
                             int64_t S, const int32_t *prefixes, int64_t n, int64_t L, double *lp) {
    const int64_t V = m->cfg.vocab, T = L + 1;
    size_t mark = t->arena.used;
    int32_t *src = malloc((size_t)(n * S) * sizeof *src);
    uint8_t *spad = malloc((size_t)(n * S));
    int32_t *tin = malloc((size_t)(n * T) * sizeof *tin);
    uint8_t *tpad = calloc((size_t)(n * T), 1);
    ck_assert(src && spad && tin && tpad);
    for (int64_t i = 0; i < n; i++) {
        memcpy(src + i * S, src1, (size_t)S * sizeof *src);
        memcpy(spad + i * S, pad1, (size_t)S);
        tin[i * T] = TFM_BOS_ID;
        memcpy(tin + i * T + 1, prefixes + i * L, (size_t)L * sizeof *tin);
    }
    tfm_tensor *mem = tfm_model_encode(m, t, src, spad, n, S);
    tfm_tensor *logits = tfm_model_decode(m, t, mem, spad, tin, tpad, T);
    ck_assert_msg(logits != NULL, "%s", tfm_last_error());
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits->data + (i * T + L) * V;
        double mx = -INFINITY, sum = 0;
        for (int64_t v = TFM_EOS_ID; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int64_t v = TFM_EOS_ID; v < V; v++) sum += exp(row[v] - mx);
        for (int64_t v = 0; v < V; v++)
            lp[i * V + v] = v < TFM_EOS_ID ? -INFINITY : row[v] - mx - log(sum);
    }
    t->arena.used = mark;
    free(src);
    free(spad);
    free(tin);
    free(tpad);
}

/* Teacher-forced log-probability of hyp[0..len) (its last token </s> or not). */
static double tf_score(tfm_model *m, tfm_tape *t, const int32_t *src1, const uint8_t *pad1,
                       int64_t S, const int32_t *hyp, int64_t len) {
    const int64_t V = m->cfg.vocab;
    double *lp = malloc((size_t)V * sizeof *lp), sum = 0;
    ck_assert_ptr_nonnull(lp);
    for (int64_t i = 0; i < len; i++) {
        tf_next_logprobs(m, t, src1, pad1, S, hyp, 1, i, lp);
        sum += lp[hyp[i]];
    }
    free(lp);
    return sum;
}

/* ---- exhaustive search ----------------------------------------------------- */

/* Every finished hypothesis of at most max_out tokens (</s> included) over
 * the generable ids, scored teacher-forced; the best normalized one goes to
 * best (max_out), its content length to *best_len; returns the gap to the
 * runner-up. */
static double exhaustive_best(tfm_model *m, tfm_tape *t, const int32_t *src1, const uint8_t *pad1,
                              int64_t S, int64_t max_out, double alpha, int32_t *best,
                              int64_t *best_len, double *best_score) {
    const int64_t V = m->cfg.vocab, n_sym = V - 3;
    double top = -INFINITY, second = -INFINITY;
    int32_t hyp[MAX_OUT];
    for (int64_t len = 0; len < max_out; len++) { /* len content tokens, then </s> */
        int64_t count = 1;
        for (int64_t j = 0; j < len; j++) count *= n_sym;
        for (int64_t code = 0; code < count; code++) {
            int64_t c = code;
            for (int64_t j = 0; j < len; j++, c /= n_sym) hyp[j] = (int32_t)(3 + c % n_sym);
            hyp[len] = TFM_EOS_ID;
            double s = tf_score(m, t, src1, pad1, S, hyp, len + 1);
            double norm = s / gnmt_lp(len + 1, alpha);
            if (norm > top) {
                second = top;
                top = norm;
                *best_score = s;
                *best_len = len;
                for (int64_t j = 0; j < max_out; j++) best[j] = j <= len ? hyp[j] : TFM_PAD_ID;
            } else if (norm > second) {
                second = norm;
            }
        }
    }
    return top - second;
}

/* Number of possible outputs of at most max_out tokens: finished ones plus
 * the unfinished ones of exactly max_out tokens. */
static int64_t n_possible(int64_t n_sym, int64_t max_out) {
    int64_t total = 0, pw = 1;
    for (int64_t len = 0; len < max_out; len++, pw *= n_sym) total += pw;
    return total + pw;
}

START_TEST(wide_beam_equals_exhaustive_search) {
    static const struct { int64_t vocab, max_out; } shapes[] = {{4, 6}, {5, 4}, {6, 3}};
    static const float alphas[] = {0.0f, 0.6f, 1.0f, 2.0f};
    enum { B = 3, S = 5 };
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 64 << 20, 64), 0);
    t.no_grad = 1;
    int compared = 0, skipped = 0, nonempty = 0, lens_seen = 0;
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        const int64_t V = shapes[sh].vocab, MO = shapes[sh].max_out;
        const int64_t K = n_possible(V - 3, MO);
        for (uint64_t seed = 1; seed <= 3; seed++) {
            tfm_model m;
            tfm_model *mp = &m;
            random_model(&m, V, 100 * sh + seed, 2.0f);
            int32_t src[B * S];
            uint8_t pad[B * S];
            make_sources(src, pad, B, S, V, seed);
            for (size_t a = 0; a < sizeof alphas / sizeof alphas[0]; a++) {
                int32_t out[B * MAX_OUT], outb[B * MAX_OUT];
                int64_t lens[B], lensb[B];
                ck_assert_int_eq(
                    tfm_beam_decode(&m, &t, src, pad, B, S, K, alphas[a], MO, out, lens), 0);
                /* stopping at the bound finds the same when the beam holds all */
                ck_assert_int_eq(tfm_beam_decode_stop(&mp, 1, &t, src, pad, B, S, K, alphas[a],
                                                      TFM_BEAM_STOP_BOUND, MO, outb, lensb, NULL),
                                 0);
                for (int64_t b = 0; b < B; b++) {
                    int32_t want[MAX_OUT];
                    int64_t want_len = -1;
                    double want_score = 0;
                    double gap = exhaustive_best(&m, &t, src + b * S, pad + b * S, S, MO, alphas[a],
                                                 want, &want_len, &want_score);
                    if (gap < TIE_EPS) {
                        skipped++;
                        continue;
                    }
                    compared++;
                    nonempty += want_len > 0;
                    lens_seen |= 1 << want_len;
                    ck_assert_msg(
                        lens[b] == want_len &&
                            !memcmp(out + b * MO, want, (size_t)MO * sizeof *want),
                        "vocab %lld max_out %lld seed %llu alpha %.1f source %lld: "
                        "beam %lld returned [%s], exhaustive best is [%s] (normalized gap "
                        "to runner-up %.4f)",
                        (long long)V, (long long)MO, (unsigned long long)seed, (double)alphas[a],
                        (long long)b, (long long)K, ids_str(out + b * MO, MO), ids_str(want, MO),
                        gap);
                    ck_assert_msg(lensb[b] == want_len &&
                                      !memcmp(outb + b * MO, want, (size_t)MO * sizeof *want),
                                  "stop at the bound: vocab %lld max_out %lld seed %llu alpha %.1f "
                                  "source %lld: [%s], exhaustive best is [%s]",
                                  (long long)V, (long long)MO, (unsigned long long)seed,
                                  (double)alphas[a], (long long)b, ids_str(outb + b * MO, MO),
                                  ids_str(want, MO));
                }
            }
            tfm_model_free(&m);
        }
    }
    printf("  exhaustive: %d cases compared, %d near-ties skipped, %d non-empty winners, "
           "winner lengths seen mask 0x%x\n",
           compared, skipped, nonempty, lens_seen);
    /* the cases must exercise something: mostly comparable, winners of several lengths */
    ck_assert_int_ge(compared, 90);
    ck_assert_int_ge(nonempty, compared / 4);
    ck_assert_int_ge(__builtin_popcount((unsigned)lens_seen), 3);
    ck_assert_int_eq(t.arena.used, 0);
    tfm_tape_free(&t);
}
END_TEST

/* ---- reference beam search ------------------------------------------------- */

typedef struct {
    double score;
    int64_t parent;
    int32_t token;
} ref_cand;

static int cmp_cand(const void *pa, const void *pb) {
    const ref_cand *a = pa, *b = pb;
    if (a->score != b->score) return a->score < b->score ? 1 : -1;
    /* ties: in the order the candidates were generated (parent, then token) */
    if (a->parent != b->parent) return a->parent < b->parent ? -1 : 1;
    return a->token < b->token ? -1 : a->token > b->token;
}

/* Beam search as tfm/decode.h documents it, over teacher-forced
 * distributions: K live hypotheses, each step ranks all expansions by
 * accumulated log-probability and looks at the best 2K in order: a </s>
 * finishes a hypothesis (ranked by score / lp(len with </s>)), anything else
 * fills the next of the K live slots until they are full. Stops when K have
 * finished or after max_out tokens; with none finished, the best live one.
 * With `bound` (TFM_BEAM_STOP_BOUND) it does not stop at K finished and
 * every </s> looked at finishes one: it runs until max_out or no live
 * hypothesis is left (tfm's early exit by the bound cannot change the
 * result, so this reference has none).
 * Returns the smallest score gap that decided anything (a near-tie makes the
 * case ambiguous); best (max_out) and *best_len as tfm_beam_decode; *score
 * the winner's accumulated log-probability. */
static double reference_beam(tfm_model *m, tfm_tape *t, const int32_t *src1, const uint8_t *pad1,
                             int64_t S, int64_t K, double alpha, int bound, int64_t max_out,
                             int32_t *best, int64_t *best_len, double *best_score) {
    const int64_t V = m->cfg.vocab;
    int32_t *live = calloc((size_t)(K * max_out), sizeof *live);
    int32_t *next = calloc((size_t)(K * max_out), sizeof *next);
    double *live_score = malloc((size_t)K * sizeof *live_score);
    double *lp = malloc((size_t)(K * V) * sizeof *lp);
    ref_cand *cand = malloc((size_t)(K * V) * sizeof *cand);
    ck_assert(live && next && live_score && lp && cand);
    int64_t n_live = 1, n_finished = 0;
    live_score[0] = 0;
    double min_gap = INFINITY, best_final = -INFINITY;
    *best_len = -1;
    for (int64_t step = 0; step < max_out && n_live > 0 && (bound || n_finished < K); step++) {
        tf_next_logprobs(m, t, src1, pad1, S, live, n_live, step, lp);
        int64_t n_cand = 0;
        for (int64_t k = 0; k < n_live; k++)
            for (int64_t v = TFM_EOS_ID; v < V; v++)
                cand[n_cand++] = (ref_cand){live_score[k] + lp[k * V + v], k, (int32_t)v};
        qsort(cand, (size_t)n_cand, sizeof *cand, cmp_cand);
        int64_t considered = n_cand < 2 * K ? n_cand : 2 * K;
        for (int64_t c = 0; c + 1 < n_cand && c < considered; c++) {
            double g = cand[c].score - cand[c + 1].score;
            if (g < min_gap) min_gap = g;
        }
        int64_t alive = 0;
        double new_scores[64];
        ck_assert_int_le(K, 64);
        for (int64_t c = 0; c < considered && alive < K; c++) {
            if (cand[c].token == TFM_EOS_ID) {
                if (!bound && n_finished >= K) continue;
                n_finished++;
                double final = cand[c].score / gnmt_lp(step + 1, alpha);
                if (fabs(final - best_final) < min_gap) min_gap = fabs(final - best_final);
                if (final > best_final) {
                    best_final = final;
                    *best_score = cand[c].score;
                    *best_len = step;
                    for (int64_t j = 0; j < max_out; j++)
                        best[j] = j < step    ? live[cand[c].parent * step + j]
                                  : j == step ? TFM_EOS_ID
                                              : TFM_PAD_ID;
                }
                continue;
            }
            memcpy(next + alive * (step + 1), live + cand[c].parent * step,
                   (size_t)step * sizeof *next);
            next[alive * (step + 1) + step] = cand[c].token;
            new_scores[alive++] = cand[c].score;
        }
        int32_t *swap = live;
        live = next;
        next = swap;
        n_live = alive;
        memcpy(live_score, new_scores, (size_t)alive * sizeof *live_score);
    }
    if (*best_len < 0) { /* nothing finished: the best live hypothesis, max_out tokens */
        int64_t bk = 0;
        for (int64_t k = 1; k < n_live; k++)
            if (live_score[k] > live_score[bk]) bk = k;
        memcpy(best, live + bk * max_out, (size_t)max_out * sizeof *best);
        *best_len = max_out;
        *best_score = live_score[bk];
    }
    free(live);
    free(next);
    free(live_score);
    free(lp);
    free(cand);
    return min_gap;
}

/* tfm's result for one source (got, got_len) is the reference's. */
static void expect_reference(const char *rule, const int32_t *got, int64_t got_len,
                             const int32_t *want, int64_t want_len, int64_t max_out, uint64_t seed,
                             int64_t beam, double alpha, int64_t b) {
    ck_assert_msg(got_len == want_len && !memcmp(got, want, (size_t)max_out * sizeof *want),
                  "stop when %s: seed %llu beam %lld alpha %.1f source %lld: [%s], the reference "
                  "beam search found [%s]",
                  rule, (unsigned long long)seed, (long long)beam, alpha, (long long)b,
                  ids_str(got, max_out), ids_str(want, max_out));
}

/* The final score a result is ranked by (finished: score / lp(len + 1);
 * unfinished, len == max_out: score / lp(max_out)). */
static double final_score(double score, int64_t len, int64_t max_out, double alpha) {
    return score / gnmt_lp(len < max_out ? len + 1 : max_out, alpha);
}

START_TEST(narrow_beam_equals_reference_beam) {
    static const int64_t beams[] = {2, 3, 5};
    static const float alphas[] = {0.0f, 0.6f, 1.5f};
    enum { B = 4, S = 6, MO = 7, V = 9 };
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 64 << 20, 64), 0);
    t.no_grad = 1;
    int compared = 0, skipped = 0, differs_from_greedy = 0, bound_compared = 0, bound_better = 0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        tfm_model m;
        tfm_model *mp = &m;
        random_model(&m, V, 1000 + seed, 2.0f);
        int32_t src[B * S];
        uint8_t pad[B * S];
        make_sources(src, pad, B, S, V, seed);
        int32_t greedy[B * MO];
        int64_t greedy_lens[B];
        ck_assert_int_eq(tfm_greedy_decode(&m, &t, src, pad, B, S, MO, greedy, greedy_lens), 0);
        for (size_t bi = 0; bi < sizeof beams / sizeof beams[0]; bi++) {
            for (size_t a = 0; a < sizeof alphas / sizeof alphas[0]; a++) {
                int32_t out[B * MO], outb[B * MO];
                int64_t lens[B], lensb[B];
                ck_assert_int_eq(
                    tfm_beam_decode(&m, &t, src, pad, B, S, beams[bi], alphas[a], MO, out, lens),
                    0);
                ck_assert_int_eq(tfm_beam_decode_stop(&mp, 1, &t, src, pad, B, S, beams[bi],
                                                      alphas[a], TFM_BEAM_STOP_BOUND, MO, outb,
                                                      lensb, NULL),
                                 0);
                for (int64_t b = 0; b < B; b++) {
                    int32_t want[MO], wantb[MO];
                    int64_t want_len, wantb_len;
                    double want_score = 0, wantb_score = 0;
                    double gap = reference_beam(&m, &t, src + b * S, pad + b * S, S, beams[bi],
                                                alphas[a], 0, MO, want, &want_len, &want_score);
                    double gapb = reference_beam(&m, &t, src + b * S, pad + b * S, S, beams[bi],
                                                 alphas[a], 1, MO, wantb, &wantb_len, &wantb_score);
                    if (gap >= TIE_EPS) {
                        compared++;
                        differs_from_greedy += memcmp(want, greedy + b * MO, sizeof want) != 0;
                        expect_reference("finished", out + b * MO, lens[b], want, want_len, MO,
                                         seed, beams[bi], alphas[a], b);
                    } else {
                        skipped++;
                    }
                    if (gap < TIE_EPS || gapb < TIE_EPS) continue;
                    bound_compared++;
                    expect_reference("bound", outb + b * MO, lensb[b], wantb, wantb_len, MO, seed,
                                     beams[bi], alphas[a], b);
                    /* never worse than stopping at `beam` finished */
                    double fb = final_score(wantb_score, wantb_len, MO, alphas[a]);
                    double ff = final_score(want_score, want_len, MO, alphas[a]);
                    ck_assert_msg(fb >= ff - 1e-9,
                                  "seed %llu beam %lld alpha %.1f source %lld: "
                                  "bound %.6f below finished %.6f",
                                  (unsigned long long)seed, (long long)beams[bi], (double)alphas[a],
                                  (long long)b, fb, ff);
                    bound_better += fb > ff + TIE_EPS;
                }
            }
        }
        tfm_model_free(&m);
    }
    printf("  reference beam: %d cases compared, %d near-ties skipped, %d differ from greedy; "
           "stop at the bound: %d compared, %d better than at `beam` finished\n",
           compared, skipped, differs_from_greedy, bound_compared, bound_better);
    ck_assert_int_ge(compared, 100);
    /* a beam that is not a greedy search in disguise */
    ck_assert_int_ge(differs_from_greedy, compared / 5);
    /* (on these models the two rules almost always agree: the case where
     * they differ is stop_at_the_bound_keeps_searching) */
    ck_assert_int_ge(bound_compared, 100);
    ck_assert_int_eq(t.arena.used, 0);
    tfm_tape_free(&t);
}
END_TEST

/* ---- the length penalty ---------------------------------------------------- */

/* A model whose next-token distribution is the same after every prefix and
 * for every source: the last decoder LayerNorm outputs its bias e0 whatever
 * its input, and the tied output row of each id holds that id's log-odds in
 * channel 0. Over the generable ids, p(</s>) = p_eos and the rest share
 * 1 - p_eos (one symbol when vocab is 4). */
static void constant_model(tfm_model *m, int64_t vocab, double p_eos) {
    random_model(m, vocab, 7, 1.0f);
    const int64_t D = m->cfg.d_model;
    tfm_layer_params *last = &m->dec[m->cfg.dec_layers - 1];
    for (int64_t d = 0; d < D; d++) {
        last->ln3.w->data[d] = 0.0f;
        last->ln3.b->data[d] = d == 0 ? 1.0f : 0.0f;
    }
    for (int64_t v = 0; v < vocab; v++) {
        float *row = m->tgt_emb->data + v * D;
        row[0] = v == TFM_EOS_ID  ? (float)log(p_eos)
                 : v > TFM_EOS_ID ? (float)log((1.0 - p_eos) / (double)(vocab - 3))
                                  : -30.0f;
    }
}

/* The constant model of the next two tests (p(</s>) 0.1; ids pad, <s>,
 * </s>, a), a tape for it, and its one source "a a </s>". */
static const int32_t const_src[3] = {3, 3, TFM_EOS_ID};
static const uint8_t const_pad[3] = {0, 0, 0};
static void constant_setup(tfm_model *m, tfm_tape *t) {
    constant_model(m, 4, 0.1);
    ck_assert_int_eq(tfm_tape_init(t, 16 << 20, 64), 0);
}

START_TEST(length_penalty_direction_and_value) {
    tfm_model m;
    tfm_tape t;
    constant_setup(&m, &t);
    int32_t out[8];
    int64_t len;
    /* the model really is constant: log p(</s>) = log 0.1 after any prefix */
    double lp[4];
    int32_t prefix[3] = {3, 3, 3};
    t.no_grad = 1;
    for (int64_t L = 0; L <= 3; L++) {
        tf_next_logprobs(&m, &t, const_src, const_pad, 3, prefix, 1, L, lp);
        ck_assert_double_eq_tol(lp[TFM_EOS_ID], log(0.1), 1e-6);
        ck_assert_double_eq_tol(lp[3], log(0.9), 1e-6);
    }
    /* Two finished hypotheses with max_out 2: "</s>" (len 1) scores
     * e = log 0.1 and "a </s>" (len 2) scores x + e, x = log 0.9. GNMT:
     * e / lp(1) vs (x + e) / lp(2), lp(1) = 1, lp(2) = (7/6)^alpha, so the
     * longer one wins exactly when alpha > ln((x + e) / e) / ln(7/6)
     * = ln(1.045757) / ln(1.166667) = 0.044741 / 0.154151 = 0.29024. */
    double crossing = log((log(0.9) + log(0.1)) / log(0.1)) / log(7.0 / 6.0);
    ck_assert_double_eq_tol(crossing, 0.29024, 1e-4);
    ck_assert_int_eq(tfm_beam_decode(&m, &t, const_src, const_pad, 1, 3, 2, 0.28f, 2, out, &len),
                     0);
    ck_assert_msg(len == 0 && out[0] == TFM_EOS_ID, "alpha 0.28: want the empty hypothesis");
    ck_assert_int_eq(tfm_beam_decode(&m, &t, const_src, const_pad, 1, 3, 2, 0.30f, 2, out, &len),
                     0);
    ck_assert_msg(len == 1 && out[0] == 3 && out[1] == TFM_EOS_ID, "alpha 0.30: want \"a </s>\"");
    /* Direction over six lengths: no penalty keeps the shortest (every token
     * costs log 0.9), alpha 1 already prefers the longest that fits: with
     * lp(len) = (5 + len) / 6 the normalized score 6 (j x + e) / (6 + j)
     * rises with j because 6x > e. Beam 8 holds every hypothesis. */
    ck_assert_int_eq(tfm_beam_decode(&m, &t, const_src, const_pad, 1, 3, 8, 0.0f, 6, out, &len), 0);
    ck_assert_int_eq(len, 0);
    ck_assert_int_eq(tfm_beam_decode(&m, &t, const_src, const_pad, 1, 3, 8, 1.0f, 6, out, &len), 0);
    ck_assert_int_eq(len, 5);
    ck_assert_int_eq(out[5], TFM_EOS_ID);
    ck_assert_int_eq(t.arena.used, 0);
    tfm_tape_free(&t);
    tfm_model_free(&m);
}
END_TEST

/* The two stopping rules on the constant model of the test above (p(</s>)
 * 0.1 after every prefix, beam 2, alpha 1, max_out 6). Step 0: "a" stays
 * live and "</s>" finishes (final e = log 0.1); step 1: "a a" stays live and
 * "a </s>" finishes (6 (x + e) / 7, x = log 0.9). With `beam` finished the
 * search ends there with "a </s>". At the bound it goes on: j tokens then
 * </s> score 6 (j x + e) / (6 + j), which rises with j, so the longest that
 * fits (5 tokens and </s>) wins, as the exhaustive search above found. */
START_TEST(stop_at_the_bound_keeps_searching) {
    tfm_model m;
    tfm_model *mp = &m;
    tfm_tape t;
    constant_setup(&m, &t);
    int32_t out[6];
    int64_t len;
    ck_assert_int_eq(tfm_beam_decode_stop(&mp, 1, &t, const_src, const_pad, 1, 3, 2, 1.0f,
                                          TFM_BEAM_STOP_FINISHED, 6, out, &len, NULL),
                     0);
    ck_assert_msg(len == 1 && out[0] == 3 && out[1] == TFM_EOS_ID, "finished: len %lld [%s]",
                  (long long)len, ids_str(out, 6));
    ck_assert_int_eq(tfm_beam_decode(&m, &t, const_src, const_pad, 1, 3, 2, 1.0f, 6, out, &len), 0);
    ck_assert_int_eq(len, 1); /* the default */
    ck_assert_int_eq(tfm_beam_decode_stop(&mp, 1, &t, const_src, const_pad, 1, 3, 2, 1.0f,
                                          TFM_BEAM_STOP_BOUND, 6, out, &len, NULL),
                     0);
    ck_assert_msg(len == 5 && out[5] == TFM_EOS_ID, "bound: len %lld [%s]", (long long)len,
                  ids_str(out, 6));
    /* alpha 0: every token costs log 0.9, so the empty hypothesis stays the
     * best; the live ones (j log 0.9 >= -0.63) stay above it (log 0.1), so
     * the search runs to max_out */
    ck_assert_int_eq(tfm_beam_decode_stop(&mp, 1, &t, const_src, const_pad, 1, 3, 2, 0.0f,
                                          TFM_BEAM_STOP_BOUND, 6, out, &len, NULL),
                     0);
    ck_assert_int_eq(len, 0);
    /* p(</s>) 0.6, alpha 0: after step 0 the live "a" (log 0.4) is below the
     * finished "</s>" (log 0.6), so the bound ends the search there */
    tfm_model_free(&m);
    constant_model(&m, 4, 0.6);
    tfm_decode_profile prof;
    memset(&prof, 0, sizeof prof);
    tfm_decode_set_profile(&prof);
    ck_assert_int_eq(tfm_beam_decode_stop(&mp, 1, &t, const_src, const_pad, 1, 3, 2, 0.0f,
                                          TFM_BEAM_STOP_BOUND, 6, out, &len, NULL),
                     0);
    tfm_decode_set_profile(NULL);
    ck_assert_int_eq(len, 0);
    ck_assert_int_eq(prof.early_stops, 1);
    ck_assert_int_eq(prof.steps, 1);
    /* neither rule: an error */
    ck_assert_int_ne(tfm_beam_decode_stop(&mp, 1, &t, const_src, const_pad, 1, 3, 2, 1.0f,
                                          (tfm_beam_stop)2, 6, out, &len, NULL),
                     0);
    ck_assert_int_eq(t.arena.used, 0);
    tfm_tape_free(&t);
    tfm_model_free(&m);
}
END_TEST

/* ---- n-best lists and ensembles ---------------------------------------------- */

typedef struct {
    int32_t tokens[4 * 8 * 16];
    int64_t lens[4 * 8], count[4];
    float scores[4 * 8], logprobs[4 * 8];
    tfm_nbest nb;
} nbest_buf;

static tfm_nbest *nbest_init(nbest_buf *buf, int64_t n_best) {
    memset(buf, 0, sizeof *buf);
    buf->nb = (tfm_nbest){n_best, buf->tokens, buf->lens, buf->scores, buf->logprobs, buf->count};
    return &buf->nb;
}

/* Every entry of every list: sorted, normalized as documented, and its
 * log-probability what the members score it teacher-forced (their mean). */
static void check_nbest(tfm_model *const *models, int n_models, tfm_tape *t, const int32_t *src,
                        const uint8_t *pad, int64_t B, int64_t S, int64_t MO, float alpha,
                        const nbest_buf *buf, const int32_t *out, const int64_t *lens,
                        int64_t *checked) {
    const tfm_nbest *nb = &buf->nb;
    for (int64_t b = 0; b < B; b++) {
        ck_assert_int_ge(nb->count[b], 1);
        ck_assert_int_le(nb->count[b], nb->n_best);
        /* entry 0 is the 1-best */
        ck_assert_int_eq(nb->lens[b * nb->n_best], lens[b]);
        ck_assert_msg(
            !memcmp(nb->tokens + b * nb->n_best * MO, out + b * MO, (size_t)MO * sizeof *out),
            "source %lld: n-best entry 0 [%s] is not the 1-best [%s]", (long long)b,
            ids_str(nb->tokens + b * nb->n_best * MO, MO), ids_str(out + b * MO, MO));
        for (int64_t i = 0; i < nb->count[b]; i++) {
            int64_t e = b * nb->n_best + i, len = nb->lens[e];
            const int32_t *hyp = nb->tokens + e * MO;
            if (i > 0)
                ck_assert_msg(nb->scores[e] <= nb->scores[e - 1],
                              "source %lld: n-best scores not sorted at %lld", (long long)b,
                              (long long)i);
            int finished = len < MO;
            int64_t n_tok = finished ? len + 1 : len;
            double tf = 0;
            for (int k = 0; k < n_models; k++)
                tf += tf_score(models[k], t, src + b * S, pad + b * S, S, hyp, n_tok);
            tf /= n_models;
            ck_assert_msg(fabs(tf - nb->logprobs[e]) < 2e-4,
                          "source %lld entry %lld [%s]: beam log-prob %.6f, teacher-forced %.6f",
                          (long long)b, (long long)i, ids_str(hyp, MO), (double)nb->logprobs[e],
                          tf);
            double norm = nb->logprobs[e] / gnmt_lp(n_tok, alpha);
            ck_assert_msg(fabs(norm - nb->scores[e]) < 1e-5, "score %.6f, want %.6f",
                          (double)nb->scores[e], norm);
            (*checked)++;
        }
        for (int64_t i = nb->count[b]; i < nb->n_best; i++)
            ck_assert_int_eq(nb->lens[b * nb->n_best + i], -1);
    }
}

/* The rule's names, as tfm translate --beam-stop and config.txt spell them. */
START_TEST(stop_rule_names_parse_both_ways) {
    tfm_beam_stop s = TFM_BEAM_STOP_BOUND;
    ck_assert_int_eq(tfm_beam_stop_parse("finished", &s), 0);
    ck_assert_int_eq(s, TFM_BEAM_STOP_FINISHED);
    ck_assert_int_eq(tfm_beam_stop_parse("bound", &s), 0);
    ck_assert_int_eq(s, TFM_BEAM_STOP_BOUND);
    ck_assert_str_eq(tfm_beam_stop_name(TFM_BEAM_STOP_FINISHED), "finished");
    ck_assert_str_eq(tfm_beam_stop_name(TFM_BEAM_STOP_BOUND), "bound");
    const char *bad[] = {"", "Bound", "finish", "bound ", "2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = TFM_BEAM_STOP_BOUND;
        ck_assert_int_ne(tfm_beam_stop_parse(bad[i], &s), 0);
        ck_assert_int_eq(s, TFM_BEAM_STOP_BOUND); /* left as it was */
        ck_assert_ptr_nonnull(strstr(tfm_last_error(), "not finished or bound"));
    }
    ck_assert_int_ne(tfm_beam_stop_parse(NULL, &s), 0);
    ck_assert_int_eq(s, TFM_BEAM_STOP_BOUND);
    ck_assert_ptr_null(tfm_beam_stop_name((tfm_beam_stop)2));
}
END_TEST

START_TEST(nbest_lists_are_sorted_rescored_and_start_with_the_1best) {
    enum { B = 4, S = 6, MO = 9, V = 9 };
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 64 << 20, 64), 0);
    t.no_grad = 1;
    int64_t checked = 0, multi = 0;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        tfm_model m;
        random_model(&m, V, 2000 + seed, 2.0f);
        tfm_model *mp = &m;
        int32_t src[B * S];
        uint8_t pad[B * S];
        make_sources(src, pad, B, S, V, seed);
        static const int64_t beams[] = {1, 3, 5, 8};
        for (size_t bi = 0; bi < 4; bi++) {
            int64_t K = beams[bi];
            for (float alpha = 0.0f; alpha < 2.0f; alpha += 0.9f) {
                int32_t out[B * MO], out1[B * MO];
                int64_t lens[B], lens1[B];
                nbest_buf buf;
                ck_assert_msg(tfm_beam_decode_ensemble(&mp, 1, &t, src, pad, B, S, K, alpha, MO,
                                                       out, lens, nbest_init(&buf, K)) == 0,
                              "%s", tfm_last_error());
                /* the lists change nothing: same 1-best as tfm_beam_decode */
                ck_assert_int_eq(tfm_beam_decode(&m, &t, src, pad, B, S, K, alpha, MO, out1, lens1),
                                 0);
                ck_assert(!memcmp(out, out1, sizeof out) && !memcmp(lens, lens1, sizeof lens));
                check_nbest(&mp, 1, &t, src, pad, B, S, MO, alpha, &buf, out, lens, &checked);
                for (int b = 0; b < B; b++) multi += buf.count[b] > 1;
            }
        }
        /* K > beam and K < 1 are errors */
        int32_t out[B * MO];
        int64_t lens[B];
        nbest_buf buf;
        ck_assert_int_ne(tfm_beam_decode_ensemble(&mp, 1, &t, src, pad, B, S, 3, 0.6f, MO, out,
                                                  lens, nbest_init(&buf, 4)),
                         0);
        ck_assert_str_eq(tfm_last_error(), "n-best 4: must be between 1 and the beam size 3");
        ck_assert_int_ne(tfm_beam_decode_ensemble(&mp, 1, &t, src, pad, B, S, 3, 0.6f, MO, out,
                                                  lens, nbest_init(&buf, 0)),
                         0);
        tfm_model_free(&m);
    }
    printf("  n-best: %lld entries rescored teacher-forced, %lld lists with more than one\n",
           (long long)checked, (long long)multi);
    ck_assert_int_ge(multi, 50);
    ck_assert_int_eq(t.arena.used, 0);
    tfm_tape_free(&t);
}
END_TEST

typedef struct {
    double norm;
    int64_t len;
    int32_t hyp[MAX_OUT];
} scored_hyp;

static int cmp_scored(const void *pa, const void *pb) {
    const scored_hyp *a = pa, *b = pb;
    return a->norm > b->norm ? -1 : a->norm < b->norm;
}

/* With a beam that holds every hypothesis, the n-best list is the top N of
 * the exhaustive search: the early exit must wait for the N-th finished
 * hypothesis, not the best (else later, shorter-normalized ones are lost). */
START_TEST(wide_beam_nbest_equals_exhaustive_top_n) {
    enum { B = 3, S = 5, V = 5, MO = 5, N = 4 };
    static const float alphas[] = {0.0f, 0.6f, 1.5f};
    const int64_t K = n_possible(V - 3, MO), n_sym = V - 3;
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 64 << 20, 64), 0);
    t.no_grad = 1;
    static scored_hyp all[MAX_HYPS];
    int compared = 0, skipped = 0, early = 0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        tfm_model m;
        random_model(&m, V, 300 + seed, 2.0f);
        tfm_model *mp = &m;
        int32_t src[B * S];
        uint8_t pad[B * S];
        make_sources(src, pad, B, S, V, seed);
        for (size_t a = 0; a < sizeof alphas / sizeof alphas[0]; a++) {
            int32_t out[B * MO];
            int64_t lens[B];
            nbest_buf buf;
            tfm_decode_profile prof;
            memset(&prof, 0, sizeof prof);
            tfm_decode_set_profile(&prof);
            ck_assert_int_eq(tfm_beam_decode_ensemble(&mp, 1, &t, src, pad, B, S, K, alphas[a], MO,
                                                      out, lens, nbest_init(&buf, N)),
                             0);
            tfm_decode_set_profile(NULL);
            early += (int)prof.early_stops;
            for (int64_t b = 0; b < B; b++) {
                int64_t n_all = 0;
                for (int64_t len = 0; len < MO; len++) {
                    int64_t count = 1;
                    for (int64_t j = 0; j < len; j++) count *= n_sym;
                    for (int64_t code = 0; code < count; code++, n_all++) {
                        scored_hyp *h = &all[n_all];
                        int64_t c = code;
                        for (int64_t j = 0; j < MO; j++) h->hyp[j] = TFM_PAD_ID;
                        for (int64_t j = 0; j < len; j++, c /= n_sym)
                            h->hyp[j] = (int32_t)(3 + c % n_sym);
                        h->hyp[len] = TFM_EOS_ID;
                        h->len = len;
                        h->norm = tf_score(&m, &t, src + b * S, pad + b * S, S, h->hyp, len + 1) /
                                  gnmt_lp(len + 1, alphas[a]);
                    }
                }
                qsort(all, (size_t)n_all, sizeof all[0], cmp_scored);
                int tie = 0;
                for (int i = 0; i < N; i++) tie |= all[i].norm - all[i + 1].norm < TIE_EPS;
                if (tie) {
                    skipped++;
                    continue;
                }
                compared++;
                ck_assert_int_eq(buf.count[b], N);
                for (int i = 0; i < N; i++) {
                    const int32_t *got = buf.tokens + (b * N + i) * MO;
                    ck_assert_msg(buf.lens[b * N + i] == all[i].len &&
                                      !memcmp(got, all[i].hyp, (size_t)MO * sizeof *got),
                                  "seed %llu alpha %.1f source %lld entry %d: beam [%s], "
                                  "exhaustive [%s]",
                                  (unsigned long long)seed, (double)alphas[a], (long long)b, i,
                                  ids_str(got, MO), ids_str(all[i].hyp, MO));
                }
            }
        }
        tfm_model_free(&m);
    }
    printf("  n-best vs exhaustive: %d lists compared, %d near-ties skipped, %d early exits\n",
           compared, skipped, early);
    ck_assert_int_ge(compared, 24);
    ck_assert_int_ge(early, 1); /* the early exit ran, bounded by the N-th */
    ck_assert_int_eq(t.arena.used, 0);
    tfm_tape_free(&t);
}
END_TEST

START_TEST(ensemble_of_a_model_with_itself_is_the_model) {
    enum { B = 4, S = 6, MO = 9, V = 9 };
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 64 << 20, 64), 0);
    tfm_model m;
    random_model(&m, V, 77, 2.0f);
    tfm_model *twice[3] = {&m, &m, &m};
    int32_t src[B * S];
    uint8_t pad[B * S];
    make_sources(src, pad, B, S, V, 5);
    for (int copies = 2; copies <= 3; copies++) {
        int32_t g[B * MO], e[B * MO];
        int64_t gl[B], el[B];
        /* greedy (beam 1) */
        ck_assert_int_eq(tfm_greedy_decode(&m, &t, src, pad, B, S, MO, g, gl), 0);
        ck_assert_int_eq(
            tfm_beam_decode_ensemble(twice, copies, &t, src, pad, B, S, 1, 0.6f, MO, e, el, NULL),
            0);
        ck_assert(!memcmp(g, e, sizeof g) && !memcmp(gl, el, sizeof gl));
        /* beam 4, with the n-best lists bit-identical too */
        nbest_buf one, two;
        tfm_model *mp = &m;
        ck_assert_int_eq(tfm_beam_decode_ensemble(&mp, 1, &t, src, pad, B, S, 4, 0.6f, MO, g, gl,
                                                  nbest_init(&one, 4)),
                         0);
        ck_assert_int_eq(tfm_beam_decode_ensemble(twice, copies, &t, src, pad, B, S, 4, 0.6f, MO, e,
                                                  el, nbest_init(&two, 4)),
                         0);
        ck_assert(!memcmp(g, e, sizeof g) && !memcmp(gl, el, sizeof gl));
        ck_assert(!memcmp(one.tokens, two.tokens, sizeof one.tokens));
        ck_assert(!memcmp(one.scores, two.scores, sizeof one.scores));
        ck_assert(!memcmp(one.logprobs, two.logprobs, sizeof one.logprobs));
    }
    ck_assert_int_eq(t.arena.used, 0);
    tfm_tape_free(&t);
    tfm_model_free(&m);
}
END_TEST

START_TEST(ensemble_ranks_by_the_mean_of_its_members) {
    enum { B = 4, S = 6, MO = 8, V = 8 };
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 64 << 20, 64), 0);
    t.no_grad = 1;
    tfm_model a, b, other;
    random_model(&a, V, 31, 2.0f);
    random_model(&b, V, 32, 2.0f);
    tfm_model *pair[2] = {&a, &b};
    int64_t checked = 0, differs = 0, wide = 0;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        int32_t src[B * S];
        uint8_t pad[B * S];
        make_sources(src, pad, B, S, V, seed);
        for (int64_t K = 1; K <= 4; K += 3) {
            int32_t out[B * MO], oa[B * MO];
            int64_t lens[B], la[B];
            nbest_buf buf;
            ck_assert_int_eq(tfm_beam_decode_ensemble(pair, 2, &t, src, pad, B, S, K, 1.0f, MO, out,
                                                      lens, nbest_init(&buf, K)),
                             0);
            check_nbest(pair, 2, &t, src, pad, B, S, MO, 1.0f, &buf, out, lens, &checked);
            ck_assert_int_eq(tfm_beam_decode(&a, &t, src, pad, B, S, K, 1.0f, MO, oa, la), 0);
            differs += memcmp(out, oa, sizeof out) != 0;
        }
        /* the wide beam finds the best hypothesis under the mean score; the
         * members differ in size (d_model 16 and 32) */
        enum { WV = 5, WMO = 4 };
        tfm_model wa, wb;
        random_model(&wa, WV, 40 + seed, 2.0f);
        tfm_model_config c = {0};
        tfm_model_config_default(&c);
        c.vocab = WV;
        c.d_model = 32;
        c.n_heads = 4;
        c.d_ff = 48;
        c.enc_layers = 1;
        c.dec_layers = 3;
        c.max_len = 16;
        c.dropout = 0;
        ck_assert_int_eq(tfm_model_init(&wb, &c), 0);
        tfm_model_init_weights(&wb, 50 + seed);
        for (int64_t i = 0; i < wb.params.count; i++) {
            tfm_tensor *p = wb.params.items[i];
            if (p->ndim == 2)
                for (int64_t j = 0; j < p->n; j++) p->data[j] *= 2.0f;
        }
        tfm_model *wpair[2] = {&wa, &wb};
        int32_t wsrc[B * S];
        uint8_t wpad[B * S];
        make_sources(wsrc, wpad, B, S, WV, seed);
        const int64_t K = n_possible(WV - 3, WMO);
        int32_t out[B * WMO];
        int64_t lens[B];
        ck_assert_int_eq(
            tfm_beam_decode_ensemble(wpair, 2, &t, wsrc, wpad, B, S, K, 0.6f, WMO, out, lens, NULL),
            0);
        for (int64_t s = 0; s < B; s++) {
            double best = -INFINITY, second = -INFINITY;
            int64_t best_len = -1;
            int32_t hyp[WMO];
            for (int64_t len = 0; len < WMO; len++) {
                int64_t count = 1;
                for (int64_t j = 0; j < len; j++) count *= WV - 3;
                for (int64_t code = 0; code < count; code++) {
                    int64_t cc = code;
                    for (int64_t j = 0; j < len; j++, cc /= WV - 3)
                        hyp[j] = (int32_t)(3 + cc % (WV - 3));
                    hyp[len] = TFM_EOS_ID;
                    double sc = 0;
                    for (int k = 0; k < 2; k++)
                        sc += tf_score(wpair[k], &t, wsrc + s * S, wpad + s * S, S, hyp, len + 1);
                    sc = sc / 2 / gnmt_lp(len + 1, 0.6);
                    if (sc > best)
                        second = best, best = sc, best_len = len;
                    else if (sc > second)
                        second = sc;
                }
            }
            if (best - second < TIE_EPS) continue;
            wide++;
            ck_assert_int_eq(lens[s], best_len);
        }
        tfm_model_free(&wa);
        tfm_model_free(&wb);
    }
    printf("  ensemble: %lld n-best entries equal the members' mean teacher-forced score, %lld of "
           "6 decodes differ from model A alone, %lld wide-beam sources match the exhaustive "
           "best\n",
           (long long)checked, (long long)differs, (long long)wide);
    ck_assert_int_ge(differs, 1);
    ck_assert_int_ge(wide, 8);
    /* a different vocabulary is refused */
    random_model(&other, V + 1, 33, 1.0f);
    tfm_model *mixed[2] = {&a, &other};
    int32_t src[B * S], out[B * MO];
    uint8_t pad[B * S];
    int64_t lens[B];
    make_sources(src, pad, B, S, V, 1);
    ck_assert_int_ne(
        tfm_beam_decode_ensemble(mixed, 2, &t, src, pad, B, S, 2, 1.0f, MO, out, lens, NULL), 0);
    ck_assert_str_eq(tfm_last_error(), "ensemble: model 2 has a vocabulary of 9 ids, model 1 of 8: "
                                       "the models must share one vocabulary");
    ck_assert_int_eq(t.arena.used, 0);
    tfm_tape_free(&t);
    tfm_model_free(&a);
    tfm_model_free(&b);
    tfm_model_free(&other);
}
END_TEST

/* ---- one row's ranking ---------------------------------------------------- */

static uint64_t rank_rng = 0x9e3779b97f4a7c15ull;
static double rank_uniform(void) { /* [0, 1) */
    rank_rng ^= rank_rng << 13;
    rank_rng ^= rank_rng >> 7;
    rank_rng ^= rank_rng << 17;
    return (double)(rank_rng >> 11) * 0x1p-53;
}

/* ids sorted by key descending, equal keys in id order */
static const float *sort_key;
static int by_key_desc(const void *pa, const void *pb) {
    const int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    if (sort_key[a] != sort_key[b]) return sort_key[a] > sort_key[b] ? -1 : 1;
    return (a > b) - (a < b);
}
static void sort_desc(int32_t *ids, int64_t len, const float *key) {
    sort_key = key;
    qsort(ids, (size_t)len, sizeof ids[0], by_key_desc);
}

/* tfm_beam_row_max and tfm_beam_row_top against a plain sort: the max, the
 * n-th largest bound (never above the true n-th largest), and the stable
 * top n of score + (row[v] - lse) (equal scores in id order), listed by id.
 * Rows with ties (values on a coarse grid), -inf entries, fewer ids than n,
 * ids not a multiple of the lanes, and both sides of each switch: 16 lanes
 * (n <= 16 and under 1024 ids) or 64, and the groups (n > 64). */
START_TEST(row_ranking_equals_a_stable_sort) {
    enum { V_MAX = 6108, N_MAX = 130 };
    static const int64_t vocabs[] = {4, 9, 40, 66, 67, 131, 200, 1000, 1025, 1026, V_MAX};
    static const int64_t ns[] = {1, 2, 10, 16, 17, 64, 65, 130};
    static float row[V_MAX], ext[V_MAX];
    static int32_t by_value[V_MAX], by_score[V_MAX];
    tfm_beam_candidate list[N_MAX];
    int cases = 0;
    for (size_t vi = 0; vi < sizeof vocabs / sizeof vocabs[0]; vi++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (int rep = 0; rep < 12; rep++) {
                const int64_t V = vocabs[vi], n = ns[ni], len = V - TFM_EOS_ID;
                const double spread = rep % 3 == 0 ? 2.0 : 20.0 * rank_uniform() + 0.5;
                for (int64_t v = 0; v < V; v++) {
                    double x = spread * (rank_uniform() + rank_uniform() - 1);
                    if (rep % 4 == 1) x = floor(x * 2) / 2; /* many ties */
                    row[v] = (float)x;
                    if (rep % 5 == 2 && v % 3 == 0) row[v] = -INFINITY;
                }
                float nth_low, mx = tfm_beam_row_max(row, V, n, &nth_low);
                for (int64_t i = 0; i < len; i++)
                    by_value[i] = by_score[i] = (int32_t)(TFM_EOS_ID + i);
                sort_desc(by_value, len, row);
                ck_assert_msg(mx == row[by_value[0]], "V %lld: max %g, want %g", (long long)V,
                              (double)mx, (double)row[by_value[0]]);
                if (len >= n)
                    ck_assert_msg(nth_low <= row[by_value[n - 1]],
                                  "V %lld n %lld rep %d: bound %g above the n-th largest %g",
                                  (long long)V, (long long)n, rep, (double)nth_low,
                                  (double)row[by_value[n - 1]]);
                const float score = (float)(-10 * rank_uniform());
                const float lse = tfm_k_log_sum_exp(row + TFM_EOS_ID, len, mx);
                for (int64_t v = TFM_EOS_ID; v < V; v++) ext[v] = score + (row[v] - lse);
                sort_desc(by_score, len, ext);
                const int64_t want = len < n ? len : n;
                int64_t count = tfm_beam_row_top(row, V, score, lse, nth_low, 7, n, list);
                ck_assert_int_eq(count, want);
                for (int64_t i = 1; i < want; i++)
                    for (int64_t j = i; j > 0 && by_score[j - 1] > by_score[j]; j--) {
                        int32_t c = by_score[j];
                        by_score[j] = by_score[j - 1];
                        by_score[j - 1] = c;
                    }
                for (int64_t i = 0; i < want; i++) {
                    ck_assert_msg(list[i].token == by_score[i] && list[i].from == 7,
                                  "V %lld n %lld rep %d: entry %lld is id %d, want %d",
                                  (long long)V, (long long)n, rep, (long long)i, list[i].token,
                                  by_score[i]);
                    ck_assert(list[i].score == ext[by_score[i]]);
                }
                cases++;
            }
    printf("  row ranking: %d rows compared with a sort\n", cases);
}
END_TEST

int main(void) {
    Suite *s = suite_create("beam");
    TCase *tc = tcase_create("beam");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, length_penalty_direction_and_value);
    tcase_add_test(tc, stop_at_the_bound_keeps_searching);
    tcase_add_test(tc, stop_rule_names_parse_both_ways);
    tcase_add_test(tc, wide_beam_equals_exhaustive_search);
    tcase_add_test(tc, narrow_beam_equals_reference_beam);
    tcase_add_test(tc, nbest_lists_are_sorted_rescored_and_start_with_the_1best);
    tcase_add_test(tc, wide_beam_nbest_equals_exhaustive_top_n);
    tcase_add_test(tc, ensemble_of_a_model_with_itself_is_the_model);
    tcase_add_test(tc, ensemble_ranks_by_the_mean_of_its_members);
    tcase_add_test(tc, row_ranking_equals_a_stable_sort);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
