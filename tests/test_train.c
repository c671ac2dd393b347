/* The library trainer (tfm/train.h) in-process: learning-rate schedules, the
 * gradient-reduction hook's contract, checkpoint format v2 and the v1
 * fixture (written by the code of 2026-11-28) loading and resuming bit for
 * bit, resume after a run that never reached a checkpoint, and a refusal
 * naming the setting that differs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tfm/train.h"
#include "util_test.h"

/* ---- schedules ------------------------------------------------------------------- */
START_TEST(test_schedules) {
    tfm_schedule noam = {.kind = TFM_SCHEDULE_NOAM, .lr = 0.5, .warmup = 200, .d_model = 64};
    for (int64_t s = 1; s <= 1000; s += 37)
        ck_assert(tfm_schedule_lr(&noam, s) == tfm_noam_lr(s, 64, 200, 0.5));
    /* Noam peaks at the end of the warmup: factor * d^-0.5 * w^-0.5 */
    ck_assert(fabs(tfm_schedule_lr(&noam, 200) - 0.5 / sqrt(64.0) / sqrt(200.0)) < 1e-15);

    tfm_schedule inv = {.kind = TFM_SCHEDULE_INVERSE_SQRT, .lr = 1e-3, .warmup = 100};
    ck_assert(fabs(tfm_schedule_lr(&inv, 1) - 1e-5) < 1e-18); /* linear warmup from 0 */
    ck_assert(fabs(tfm_schedule_lr(&inv, 50) - 5e-4) < 1e-18);
    ck_assert(fabs(tfm_schedule_lr(&inv, 100) - 1e-3) < 1e-18); /* the peak */
    ck_assert(fabs(tfm_schedule_lr(&inv, 400) - 5e-4) < 1e-18); /* peak * sqrt(100 / 400) */
    ck_assert(fabs(tfm_schedule_lr(&inv, 10000) - 1e-4) < 1e-18);

    tfm_schedule cst = {.kind = TFM_SCHEDULE_CONSTANT, .lr = 3e-4, .warmup = 100};
    ck_assert(tfm_schedule_lr(&cst, 1) == 3e-4 && tfm_schedule_lr(&cst, 12345) == 3e-4);

    /* the cooldown: the last 4 of 10 updates scale the rate by 4/5 .. 1/5 */
    tfm_schedule cool = {
        .kind = TFM_SCHEDULE_CONSTANT, .lr = 1.0, .warmup = 1, .cooldown = 4, .total = 10};
    for (int64_t s = 1; s <= 6; s++) ck_assert(tfm_schedule_lr(&cool, s) == 1.0);
    for (int64_t s = 7; s <= 10; s++)
        ck_assert(fabs(tfm_schedule_lr(&cool, s) - (double)(11 - s) / 5.0) < 1e-15);
    ck_assert(tfm_schedule_lr(&cool, 11) == 0.0); /* past the end: nothing, never negative */
    tfm_schedule ncool = {.kind = TFM_SCHEDULE_NOAM,
                          .lr = 0.5,
                          .warmup = 200,
                          .d_model = 64,
                          .cooldown = 100,
                          .total = 1000};
    for (int64_t s = 1; s <= 900; s += 37)
        ck_assert(tfm_schedule_lr(&ncool, s) == tfm_noam_lr(s, 64, 200, 0.5));
    ck_assert(fabs(tfm_schedule_lr(&ncool, 950) - tfm_noam_lr(950, 64, 200, 0.5) * 51.0 / 101.0) <
              1e-15);
    ck_assert(tfm_schedule_lr(&ncool, 1000) < tfm_schedule_lr(&ncool, 999));
    ck_assert(tfm_schedule_lr(&ncool, 1000) > 0);
    tfm_schedule off = {.kind = TFM_SCHEDULE_CONSTANT,
                        .lr = 1.0,
                        .warmup = 1,
                        .cooldown = 0,
                        .total = 10}; /* cooldown 0: off */
    ck_assert(tfm_schedule_lr(&off, 10) == 1.0);

    ck_assert_int_eq(tfm_schedule_parse("noam"), TFM_SCHEDULE_NOAM);
    ck_assert_int_eq(tfm_schedule_parse("inverse-sqrt"), TFM_SCHEDULE_INVERSE_SQRT);
    ck_assert_int_eq(tfm_schedule_parse("constant"), TFM_SCHEDULE_CONSTANT);
    ck_assert_int_eq(tfm_schedule_parse("cosine"), -1);
    ck_assert_str_eq(tfm_schedule_name(TFM_SCHEDULE_INVERSE_SQRT), "inverse-sqrt");
}
END_TEST

/* ---- a small toy run (tfm_test_tiny_*, util_test.h) ---------------------------------- */
static tfm_train_opts toy_opts(int64_t steps) { return tfm_test_tiny_opts(steps, 3); }

/* Trains, returns a malloc'd copy of the parameter block. */
static float *train_toy(const tfm_train_opts *o, const tfm_train_hooks *hooks, int64_t *n,
                        int64_t *skipped) {
    tfm_model_config c = tfm_test_tiny_model();
    tfm_toy_source toy;
    ck_assert_int_eq(tfm_toy_source_init(&toy, &tfm_test_tiny_task, 8, o->seed), 0);
    tfm_trainer tr;
    ck_assert_msg(tfm_trainer_init(&tr, o, &c, &toy.source, hooks) == 0, "%s", tfm_last_error());
    ck_assert_msg(tfm_train(&tr) == 0, "%s", tfm_last_error());
    *n = tr.params->total_n;
    float *w = malloc((size_t)*n * sizeof(float));
    memcpy(w, tr.params->data, (size_t)*n * sizeof(float));
    if (skipped) *skipped = tr.skipped;
    tfm_trainer_free(&tr);
    tfm_toy_source_free(&toy);
    return w;
}

/* The trainer takes the cooldown's end from its steps: the last update's
 * rate is the schedule's / (cooldown + 1). */
START_TEST(test_trainer_cooldown_ends_with_the_steps) {
    tfm_train_opts o = toy_opts(6);
    o.schedule.cooldown = 3;
    tfm_model_config c = tfm_test_tiny_model();
    tfm_toy_source toy;
    ck_assert_int_eq(tfm_toy_source_init(&toy, &tfm_test_tiny_task, 8, o.seed), 0);
    tfm_trainer tr;
    ck_assert_msg(tfm_trainer_init(&tr, &o, &c, &toy.source, NULL) == 0, "%s", tfm_last_error());
    ck_assert_msg(tfm_train(&tr) == 0, "%s", tfm_last_error());
    tfm_schedule plain = o.schedule;
    plain.cooldown = 0;
    plain.d_model = c.d_model;
    ck_assert(fabs(tr.last_lr - tfm_schedule_lr(&plain, 6) / 4.0) < 1e-15);
    tfm_trainer_free(&tr);
    tfm_toy_source_free(&toy);
    o.schedule.cooldown = 7; /* more than the steps */
    ck_assert_int_eq(tfm_toy_source_init(&toy, &tfm_test_tiny_task, 8, o.seed), 0);
    ck_assert_int_ne(tfm_trainer_init(&tr, &o, &c, &toy.source, NULL), 0);
    ck_assert_str_eq(tfm_last_error(), "cooldown 7: must be between 0 and the steps (6)");
    tfm_toy_source_free(&toy);
}
END_TEST

/* ---- the gradient-reduction hook ----------------------------------------------------- */
typedef struct {
    int calls;
    int64_t n;
    int64_t min_tokens;
    int mode; /* 0 record only, 1 zero the gradient, 2 report a non-finite loss at step 5 */
} reduce_probe;

static int probe_reduce(void *ctx, float *grad, int64_t n, tfm_step_stats *st) {
    reduce_probe *p = ctx;
    p->calls++;
    p->n = n;
    if (p->min_tokens < 0 || st->n_tokens < p->min_tokens) p->min_tokens = st->n_tokens;
    if (p->mode == 1) memset(grad, 0, (size_t)n * sizeof(float));
    if (p->mode == 2 && p->calls == 5) st->loss = NAN;
    return 0;
}

START_TEST(test_reduce_hook_contract) {
    tfm_train_opts o = toy_opts(12);
    int64_t n0, n1, n2, n3, skipped = 0;
    float *plain = train_toy(&o, NULL, &n0, NULL);

    /* a hook that leaves the gradient alone changes nothing, bit for bit,
     * and sees every step with the whole block and the batch's tokens */
    reduce_probe p = {0, 0, -1, 0};
    tfm_train_hooks h = {.ctx = &p, .reduce = probe_reduce};
    float *same = train_toy(&o, &h, &n1, NULL);
    ck_assert_int_eq(n0, n1);
    ck_assert_msg(memcmp(plain, same, (size_t)n0 * 4) == 0, "a no-op reduction changed the result");
    ck_assert_int_eq(p.calls, 12);
    ck_assert_int_eq(p.n, n0);
    ck_assert_int_gt(p.min_tokens, 0);

    /* what the hook leaves in the block is what the optimizer applies: a
     * zero gradient gives zero Adam updates, so the initial weights stay */
    tfm_train_opts o0 = toy_opts(0);
    float *init = train_toy(&o0, NULL, &n2, NULL);
    reduce_probe pz = {0, 0, -1, 1};
    h.ctx = &pz;
    float *zeroed = train_toy(&o, &h, &n2, NULL);
    ck_assert_msg(memcmp(init, zeroed, (size_t)n0 * 4) == 0, "updates despite zero gradients");
    ck_assert_msg(memcmp(plain, init, (size_t)n0 * 4) != 0, "training did not move the weights");

    /* the reduced loss decides: a non-finite global loss skips the step */
    reduce_probe pn = {0, 0, -1, 2};
    h.ctx = &pn;
    float *skip = train_toy(&o, &h, &n3, &skipped);
    ck_assert_int_eq(skipped, 1);
    ck_assert_msg(memcmp(plain, skip, (size_t)n0 * 4) != 0, "the skipped step made no difference");
    free(plain);
    free(same);
    free(init);
    free(zeroed);
    free(skip);
}
END_TEST

/* ---- overlapped reduction: gradient buckets handed out during backward ---------------- */
enum { MAX_BUCKETS = 256 };
typedef struct {
    int64_t steps, buckets, progress_after_first, order_not_block;
    int seen[MAX_BUCKETS];
    int64_t emitted; /* buckets this step */
    int64_t last_bucket;
    float *snap; /* (n) each bucket's values when it was handed out */
    int64_t n, covered, errors;
} bucket_probe;

static int probe_start(void *ctx, tfm_step_stats *st) {
    bucket_probe *p = ctx;
    ck_assert_int_gt(st->n_tokens, 0);
    memset(p->seen, 0, sizeof p->seen);
    p->emitted = 0;
    p->covered = 0;
    p->last_bucket = -1;
    return 0;
}

static int probe_ready(void *ctx, float *grad, int64_t bucket, int64_t lo, int64_t hi) {
    bucket_probe *p = ctx;
    if (bucket < 0) {
        ck_assert(lo == 0 && hi == 0);
        if (p->emitted > 0) p->progress_after_first++; /* backward goes on meanwhile */
        return 0;
    }
    ck_assert_int_lt(bucket, MAX_BUCKETS);
    ck_assert_msg(!p->seen[bucket], "bucket %lld handed out twice", (long long)bucket);
    ck_assert(0 <= lo && lo < hi);
    p->seen[bucket] = 1;
    if (p->last_bucket >= 0 && bucket < p->last_bucket) p->order_not_block = 1;
    p->last_bucket = bucket;
    p->emitted++;
    p->covered += hi - lo;
    memcpy(p->snap + lo, grad + lo, (size_t)(hi - lo) * sizeof(float));
    return 0;
}

static int probe_finish(void *ctx, float *grad, int64_t n, tfm_step_stats *st) {
    bucket_probe *p = ctx;
    (void)st;
    p->steps++;
    p->buckets = p->emitted;
    ck_assert_int_eq(n, p->n);
    ck_assert_msg(p->covered == n, "the buckets cover %lld of %lld floats", (long long)p->covered,
                  (long long)n);
    /* every bucket was final when it was handed out */
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&p->snap[i], &grad[i], sizeof(float))) p->errors++;
    return 0;
}

/* Data parallelism: tok/s counts the tokens the reduction reports for the
 * whole job (st->n_tokens after the hook), not this process's share. */
typedef struct {
    int64_t local, global;
} token_probe;

static int probe_three_ranks(void *ctx, float *grad, int64_t n, tfm_step_stats *st) {
    (void)grad;
    (void)n;
    token_probe *p = ctx;
    p->local += st->n_tokens;
    st->n_tokens *= 3; /* as if two more ranks had the same batch */
    p->global += st->n_tokens;
    return 0;
}

START_TEST(test_tokens_are_global_with_a_reduce_hook) {
    tfm_train_opts o = toy_opts(4);
    tfm_model_config c = tfm_test_tiny_model();
    tfm_toy_source toy;
    ck_assert_int_eq(tfm_toy_source_init(&toy, &tfm_test_tiny_task, 8, o.seed), 0);
    token_probe p = {0, 0};
    tfm_train_hooks h = {.ctx = &p, .reduce = probe_three_ranks};
    tfm_trainer tr;
    ck_assert_msg(tfm_trainer_init(&tr, &o, &c, &toy.source, &h) == 0, "%s", tfm_last_error());
    ck_assert_msg(tfm_train(&tr) == 0, "%s", tfm_last_error());
    ck_assert_int_gt(p.local, 0);
    ck_assert_int_eq(tr.tokens, p.global);
    ck_assert_int_eq(tr.tokens, 3 * p.local);
    tfm_trainer_free(&tr);
    tfm_toy_source_free(&toy);
}
END_TEST

START_TEST(test_grad_ready_buckets) {
    tfm_train_opts o = toy_opts(6);
    int64_t n0, n1;
    float *plain = train_toy(&o, NULL, &n0, NULL);
    /* a bucket per parameter or so: many buckets, finished in backward's order */
    o.bucket_floats = 64;
    bucket_probe p;
    memset(&p, 0, sizeof p);
    p.n = n0;
    p.snap = malloc((size_t)n0 * sizeof(float));
    tfm_train_hooks h = {
        .ctx = &p, .reduce_start = probe_start, .grad_ready = probe_ready, .reduce = probe_finish};
    float *same = train_toy(&o, &h, &n1, NULL);
    ck_assert_int_eq(p.steps, 6);
    ck_assert_int_eq(p.errors, 0);
    ck_assert_int_gt(p.buckets, 8);
    ck_assert_msg(p.progress_after_first > 0, "no bucket left before backward ended");
    ck_assert_msg(p.order_not_block, "buckets handed out in block order, not backward's");
    printf("grad_ready: %lld buckets per step, %lld progress calls after the first\n",
           (long long)p.buckets, (long long)p.progress_after_first);
    /* the gradients, hence the training, are those of a plain step */
    ck_assert_msg(memcmp(plain, same, (size_t)n0 * 4) == 0, "bucketed backward changed the result");
    free(plain);
    free(same);
    free(p.snap);
}
END_TEST

/* ---- runs in a directory: --accum and --ema --------------------------------------------- */
typedef struct {
    int64_t n, validations;
    float *seen; /* the parameters the last validation scored */
} ema_probe;

static int ema_validate(void *ctx, tfm_trainer *tr, tfm_valid_result *out) {
    ema_probe *p = ctx;
    p->n = tr->params->total_n;
    free(p->seen);
    p->seen = malloc((size_t)p->n * sizeof(float));
    memcpy(p->seen, tr->params->data, (size_t)p->n * sizeof(float));
    p->validations++;
    out->loss = NAN;
    out->metric = (double)tr->step; /* always better: best.tfm each time */
    snprintf(out->text, sizeof out->text, "probe");
    return 0;
}

/* Trains `steps` with o.accum, o.ema in dir (NULL: none), checkpoints and
 * validations (with a probe) every 2 steps; *w the trained weights and *e
 * the average (malloc'd; NULL when off), either may be NULL. */
static int dir_run(const char *dir, int64_t steps, int64_t accum, double ema, int resume,
                   ema_probe *probe, float **w, float **e, int64_t *n) {
    tfm_model_config c = tfm_test_tiny_model();
    tfm_train_opts o = toy_opts(steps);
    o.accum = accum;
    o.ema = ema;
    o.run_dir = dir;
    o.resume = resume;
    o.save_every = 2;
    o.valid_every = 2;
    tfm_toy_source toy;
    ck_assert_int_eq(tfm_toy_source_init(&toy, &tfm_test_tiny_task, 8, o.seed), 0);
    tfm_train_hooks h = {.ctx = probe, .validate = probe ? ema_validate : NULL};
    tfm_trainer tr;
    int rc = tfm_trainer_init(&tr, &o, &c, &toy.source, &h);
    if (rc == 0) {
        ck_assert_msg(tfm_train(&tr) == 0, "%s", tfm_last_error());
        ck_assert(!tr.ema_in);
        size_t bytes = (size_t)tr.params->total_n * sizeof(float);
        if (n) *n = tr.params->total_n;
        if (w) {
            *w = malloc(bytes);
            memcpy(*w, tr.params->data, bytes);
        }
        if (e) {
            *e = NULL;
            if (tr.ema) {
                *e = malloc(bytes);
                memcpy(*e, tr.ema, bytes);
            }
        }
        tfm_trainer_free(&tr);
    }
    tfm_toy_source_free(&toy);
    return rc;
}

/* ---- gradient accumulation ------------------------------------------------------------ */
/* Update s of a plain run on this source is the union of toy batches 2s - 2
 * and 2s - 1 (16 rows): what --accum 2 on the toy source of 8 rows reads as
 * its two batches. */
typedef struct {
    tfm_toy_batch part;
    tfm_toy_batch both;
    uint64_t seed;
    tfm_batch_source source;
} union_source;

static int union_next(void *ctx, int64_t step, tfm_seq_batch *b, int64_t *n_tokens) {
    union_source *u = ctx;
    tfm_toy_batch *x = &u->both, *y = &u->part;
    const int64_t R = y->B, S = y->S, T = y->T;
    x->n_tokens = 0;
    for (int64_t h = 0; h < 2; h++) {
        tfm_toy_batch_fill(y, &tfm_test_tiny_task, u->seed, 2 * (step - 1) + h);
        memcpy(x->src + h * R * S, y->src, (size_t)(R * S) * sizeof(int32_t));
        memcpy(x->src_pad + h * R * S, y->src_pad, (size_t)(R * S));
        memcpy(x->tgt_in + h * R * T, y->tgt_in, (size_t)(R * T) * sizeof(int32_t));
        memcpy(x->tgt_out + h * R * T, y->tgt_out, (size_t)(R * T) * sizeof(int32_t));
        memcpy(x->tgt_pad + h * R * T, y->tgt_pad, (size_t)(R * T));
        x->n_tokens += y->n_tokens;
    }
    *b = (tfm_seq_batch){.B = 2 * R, .S = S, .T = T, .src = x->src, .tgt_in = x->tgt_in,
                         .tgt_out = x->tgt_out, .src_pad = x->src_pad, .tgt_pad = x->tgt_pad};
    *n_tokens = x->n_tokens;
    return 0;
}

static void union_source_init(union_source *u, uint64_t seed) {
    ck_assert_int_eq(tfm_toy_batch_alloc(&u->part, &tfm_test_tiny_task, 8), 0);
    ck_assert_int_eq(tfm_toy_batch_alloc(&u->both, &tfm_test_tiny_task, 16), 0);
    ck_assert(u->both.S == u->part.S && u->both.T == u->part.T);
    u->seed = seed;
    u->source = (tfm_batch_source){.ctx = u, .next = union_next, .max_b = 16,
                                   .max_s = u->part.S, .max_t = u->part.T, .kind = "toy"};
}

/* The gradient and statistics the optimizer gets at each step. */
typedef struct {
    int64_t n, steps;
    float *grad[3];
    tfm_step_stats st[3];
} grad_capture;

static int capture_reduce(void *ctx, float *grad, int64_t n, tfm_step_stats *st) {
    grad_capture *c = ctx;
    if (c->steps < 3) {
        c->grad[c->steps] = malloc((size_t)n * sizeof(float));
        memcpy(c->grad[c->steps], grad, (size_t)n * sizeof(float));
        c->st[c->steps] = *st;
    }
    c->n = n;
    c->steps++;
    return 0;
}

static void capture_run(tfm_batch_source *src, int64_t accum, grad_capture *cap) {
    tfm_model_config c = tfm_test_tiny_model();
    c.dropout = 0; /* the same function of the weights, whatever the batch split */
    tfm_train_opts o = toy_opts(3);
    o.accum = accum;
    tfm_train_hooks h = {.ctx = cap, .reduce = capture_reduce};
    tfm_trainer tr;
    ck_assert_msg(tfm_trainer_init(&tr, &o, &c, src, &h) == 0, "%s", tfm_last_error());
    ck_assert_msg(tfm_train(&tr) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(cap->steps, 3);
    tfm_trainer_free(&tr);
}

/* --accum 2 on batches of 8 gives the gradient (and loss, token count) that
 * one batch of the same 16 rows gives: the token-weighted mean, to rounding.
 * Compared at the first step (the same weights) and at the next two (the
 * weights after updates with those gradients: they differ by rounding). */
START_TEST(test_accumulation_equals_one_big_batch) {
    tfm_toy_source toy;
    ck_assert_int_eq(tfm_toy_source_init(&toy, &tfm_test_tiny_task, 8, 3), 0);
    union_source u;
    union_source_init(&u, 3);
    grad_capture a = {0}, b = {0};
    capture_run(&toy.source, 2, &a);
    capture_run(&u.source, 1, &b);
    ck_assert_int_eq(a.n, b.n);
    for (int s = 0; s < 3; s++) {
        ck_assert_int_eq(a.st[s].n_tokens, b.st[s].n_tokens);
        ck_assert_msg(fabs(a.st[s].loss - b.st[s].loss) < 1e-5 * fabs(b.st[s].loss),
                      "step %d: loss %.9g accumulated, %.9g in one batch", s + 1, a.st[s].loss,
                      b.st[s].loss);
        float mx = 0, diff = 0;
        for (int64_t j = 0; j < a.n; j++) {
            mx = fmaxf(mx, fabsf(b.grad[s][j]));
            diff = fmaxf(diff, fabsf(a.grad[s][j] - b.grad[s][j]));
        }
        ck_assert_msg(mx > 0 && diff <= (s == 0 ? 1e-5f : 1e-3f) * mx,
                      "step %d: gradients differ by %g (largest %g)", s + 1, diff, mx);
        free(a.grad[s]);
        free(b.grad[s]);
    }
    tfm_toy_source_free(&toy);
    tfm_toy_batch_free(&u.part);
    tfm_toy_batch_free(&u.both);
}
END_TEST

/* --accum 2 resumed from a checkpoint ends bit-identical to the run without
 * a break; resuming with another --accum is refused; the overlapped hooks
 * and a negative value are refused. */
START_TEST(test_accumulation_resumes_bit_identical) {
    const char *base = tfm_test_tmpdir("accum");
    char one[512], two[512];
    snprintf(one, sizeof one, "%s/straight", base);
    snprintf(two, sizeof two, "%s/resumed", base);
    float *w1, *w2, *w0;
    int64_t n1, n2, n0;
    ck_assert_int_eq(dir_run(one, 6, 2, 0, 1, NULL, &w1, NULL, &n1), 0);
    ck_assert_int_eq(dir_run(two, 3, 2, 0, 1, NULL, NULL, NULL, NULL), 0);
    ck_assert_int_ne(dir_run(two, 6, 1, 0, 1, NULL, NULL, NULL, NULL), 0);
    ck_assert_msg(strstr(tfm_last_error(), "--accum was 2, now 1"), "%s", tfm_last_error());
    ck_assert_int_ne(dir_run(two, 6, 3, 0, 1, NULL, NULL, NULL, NULL), 0);
    ck_assert_msg(strstr(tfm_last_error(), "--accum was 2, now 3"), "%s", tfm_last_error());
    ck_assert_int_eq(dir_run(two, 6, 2, 0, 1, NULL, &w2, NULL, &n2), 0);
    ck_assert_int_eq(n1, n2);
    ck_assert_msg(memcmp(w1, w2, (size_t)n1 * 4) == 0, "resumed --accum 2 run differs");
    /* a run of one batch per update resumed with --accum 2 is refused too */
    snprintf(two, sizeof two, "%s/plain", base);
    ck_assert_int_eq(dir_run(two, 3, 1, 0, 1, NULL, &w0, NULL, &n0), 0);
    ck_assert_int_ne(dir_run(two, 6, 2, 0, 1, NULL, NULL, NULL, NULL), 0);
    ck_assert_msg(strstr(tfm_last_error(), "--accum was 1, now 2"), "%s", tfm_last_error());
    ck_assert_msg(memcmp(w0, w1, (size_t)n1 * 4) != 0, "--accum 2 changed nothing");
    free(w0);
    free(w1);
    free(w2);

    tfm_model_config c = tfm_test_tiny_model();
    tfm_toy_source toy;
    ck_assert_int_eq(tfm_toy_source_init(&toy, &tfm_test_tiny_task, 8, 3), 0);
    tfm_trainer tr;
    tfm_train_opts o = toy_opts(2);
    o.accum = -1;
    ck_assert_int_ne(tfm_trainer_init(&tr, &o, &c, &toy.source, NULL), 0);
    ck_assert_str_eq(tfm_last_error(), "accum -1: must not be negative");
    o.accum = 2;
    bucket_probe bp = {0};
    tfm_train_hooks h = {.ctx = &bp, .grad_ready = probe_ready};
    ck_assert_int_ne(tfm_trainer_init(&tr, &o, &c, &toy.source, &h), 0);
    ck_assert_msg(strstr(tfm_last_error(), "accum 2: the overlapped reduction hooks"), "%s",
                  tfm_last_error());
    tfm_toy_source_free(&toy);
}
END_TEST

/* ---- the weight average (--ema) ------------------------------------------------------- */
/* The average follows its formula from the starting weights through every
 * update; it does not change the training (the trained weights are those
 * of a run without it, bit for bit); validation scores it and best.tfm
 * holds it. */
START_TEST(test_ema_average_validation_and_best) {
    enum { STEPS = 4 };
    const double decay = 0.9;
    int64_t n, n0;
    float *w, *e, *w_plain, *e_none, *ref = NULL;
    ck_assert_int_eq(dir_run(NULL, STEPS, 1, 0, 0, NULL, &w_plain, &e_none, &n0), 0);
    ck_assert_ptr_null(e_none);
    /* the reference: the weights after each update, averaged by hand */
    for (int64_t t = 0; t <= STEPS; t++) {
        float *wt, *et;
        ck_assert_int_eq(dir_run(NULL, t, 1, 0, 0, NULL, &wt, &et, &n), 0);
        if (t == 0) {
            ref = wt;
            continue;
        }
        double warm = (1.0 + (double)t) / (10.0 + (double)t);
        float k = (float)(1.0 - (decay < warm ? decay : warm));
        for (int64_t j = 0; j < n; j++) ref[j] += k * (wt[j] - ref[j]);
        free(wt);
    }
    const char *dir = tfm_test_tmpdir("ema");
    char run[512], best[600];
    snprintf(run, sizeof run, "%s/run", dir);
    ema_probe probe = {0};
    ck_assert_int_eq(dir_run(run, STEPS, 1, decay, 0, &probe, &w, &e, &n), 0);
    ck_assert_int_eq(n, n0);
    ck_assert_msg(memcmp(w, w_plain, (size_t)n * 4) == 0, "--ema changed the training");
    float worst = 0;
    for (int64_t j = 0; j < n; j++) worst = fmaxf(worst, fabsf(e[j] - ref[j]));
    ck_assert_msg(worst <= 1e-6f, "the average is off by %g", worst);
    ck_assert_msg(memcmp(e, w, (size_t)n * 4) != 0, "the average is the weights");
    ck_assert_int_eq(probe.validations, STEPS / 2);
    ck_assert_msg(memcmp(probe.seen, e, (size_t)n * 4) == 0, "validation did not score the average");
    snprintf(best, sizeof best, "%s/best.tfm", run);
    tfm_checkpoint ck;
    ck_assert_msg(tfm_checkpoint_read(best, &ck) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(ck.n_floats, n);
    ck_assert_msg(memcmp(ck.blocks, e, (size_t)n * 4) == 0, "best.tfm is not the average");
    tfm_checkpoint_free(&ck);
    free(probe.seen);
    free(ref);
    free(w);
    free(e);
    free(w_plain);
}
END_TEST

/* Resumed mid-run, the weights and the average end bit-identical to the
 * run without a break; another --ema on resume is refused, and so are
 * values outside [0, 1). */
START_TEST(test_ema_resumes_bit_identical) {
    const char *base = tfm_test_tmpdir("ema-resume");
    char one[512], two[512];
    snprintf(one, sizeof one, "%s/straight", base);
    snprintf(two, sizeof two, "%s/resumed", base);
    float *w1, *e1, *w2, *e2, *wx, *ex;
    int64_t n1, n2, nx;
    ck_assert_int_eq(dir_run(one, 6, 1, 0.95, 1, NULL, &w1, &e1, &n1), 0);
    ck_assert_int_eq(dir_run(two, 3, 1, 0.95, 1, NULL, &wx, &ex, &nx), 0);
    free(wx);
    free(ex);
    ck_assert_int_ne(dir_run(two, 6, 1, 0.9, 1, NULL, &wx, &ex, &nx), 0);
    ck_assert_msg(strstr(tfm_last_error(), "was trained with --ema 0.94999999999999996, not 0.90"),
                  "%s", tfm_last_error());
    ck_assert_int_ne(dir_run(two, 6, 1, 0, 1, NULL, &wx, &ex, &nx), 0);
    ck_assert_msg(strstr(tfm_last_error(), "not 0"), "%s", tfm_last_error());
    ck_assert_int_eq(dir_run(two, 6, 1, 0.95, 1, NULL, &w2, &e2, &n2), 0);
    ck_assert_int_eq(n1, n2);
    ck_assert_msg(memcmp(w1, w2, (size_t)n1 * 4) == 0, "resumed weights differ");
    ck_assert_msg(memcmp(e1, e2, (size_t)n1 * 4) == 0, "resumed average differs");
    free(w1);
    free(e1);
    free(w2);
    free(e2);
    snprintf(two, sizeof two, "%s/plain", base);
    ck_assert_int_eq(dir_run(two, 3, 1, 0, 1, NULL, &wx, &ex, &nx), 0);
    free(wx);
    ck_assert_int_ne(dir_run(two, 6, 1, 0.95, 1, NULL, &wx, &ex, &nx), 0);
    ck_assert_msg(strstr(tfm_last_error(), "was trained with --ema 0, not 0.9"), "%s",
                  tfm_last_error());
    for (int bad = 0; bad < 2; bad++) {
        ck_assert_int_ne(dir_run(NULL, 2, 1, bad ? 1.0 : -0.5, 0, NULL, &wx, &ex, &nx), 0);
        ck_assert_msg(strstr(tfm_last_error(), "must be 0 (off) or in (0, 1)"), "%s",
                      tfm_last_error());
    }
}
END_TEST

/* ---- checkpoints: v1 fixture, v2 blocks ------------------------------------------------ */
/* tests/fixtures/checkpoint_v1.tfm: `tfm train --task copy --vocab 6 --min-len 1
 * --max-len 3 --d-model 8 --heads 2 --d-ff 16 --layers 1 --batch 4 --warmup 2
 * --steps 3 --seed 11 --threads 1` by the code before format v2 (toy
 * defaults: dropout 0, Noam factor 0.5). */
static const tfm_toy_config V1_TOY = {TFM_TOY_COPY, 6, 1, 3, 0};

static tfm_train_opts v1_opts(const char *dir, int64_t steps, int resume) {
    tfm_train_opts o;
    tfm_train_opts_default(&o);
    o.steps = steps;
    o.seed = 11;
    o.schedule.lr = 0.5;
    o.schedule.warmup = 2;
    o.threads = 1;
    o.quiet = 1;
    o.run_dir = dir;
    o.resume = resume;
    return o;
}

static void v1_model(tfm_model_config *c) {
    tfm_model_config_default(c);
    c->vocab = 6;
    c->d_model = 8;
    c->n_heads = 2;
    c->d_ff = 16;
    c->enc_layers = c->dec_layers = 1;
    c->dropout = 0;
    c->decoder_start = TFM_START_BOS; /* the fixture predates the setting: it loads as bos */
}

static void v1_run(const char *dir, int64_t steps, int resume) {
    tfm_model_config c;
    v1_model(&c);
    tfm_train_opts o = v1_opts(dir, steps, resume);
    tfm_toy_source toy;
    ck_assert_int_eq(tfm_toy_source_init(&toy, &V1_TOY, 4, 11), 0);
    tfm_trainer tr;
    ck_assert_msg(tfm_trainer_init(&tr, &o, &c, &toy.source, NULL) == 0, "%s", tfm_last_error());
    if (resume) ck_assert_int_eq(tr.step, 3);
    ck_assert_msg(tfm_train(&tr) == 0, "%s", tfm_last_error());
    tfm_trainer_free(&tr);
    tfm_toy_source_free(&toy);
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    ck_assert(a && b);
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, a)) > 0) ck_assert(fwrite(buf, 1, k, b) == k);
    fclose(a);
    fclose(b);
}

/* Parameters and every state block equal, bit for bit. */
static void assert_same_state(const char *pa, const char *pb) {
    tfm_checkpoint a, b;
    ck_assert_msg(tfm_checkpoint_read(pa, &a) == 0, "%s", tfm_last_error());
    ck_assert_msg(tfm_checkpoint_read(pb, &b) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(a.n_floats, b.n_floats);
    const char *names[3] = {"params", "adam.m", "adam.v"};
    for (int i = 0; i < 3; i++) {
        const unsigned char *x = tfm_checkpoint_block(&a, names[i]),
                            *y = tfm_checkpoint_block(&b, names[i]);
        ck_assert_msg(x && y, "block %s missing", names[i]);
        ck_assert_msg(memcmp(x, y, (size_t)a.n_floats * 4) == 0, "%s differs: %s vs %s", names[i],
                      pa, pb);
    }
    tfm_checkpoint_free(&a);
    tfm_checkpoint_free(&b);
}

START_TEST(test_v1_checkpoint_loads_and_resumes) {
    const char *fixture = tfm_test_path("tests/fixtures/checkpoint_v1.tfm");
    tfm_checkpoint ck;
    ck_assert_msg(tfm_checkpoint_read(fixture, &ck) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(ck.version, 1);
    ck_assert_int_eq(ck.n_blocks, 3);
    ck_assert_str_eq(ck.block_names[1], "adam.m");
    ck_assert(ck.has_moments);
    tfm_model m;
    ck_assert_msg(tfm_model_from_checkpoint(&m, &ck) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(m.cfg.d_model, 8);
    tfm_model_free(&m);
    tfm_checkpoint_free(&ck);

    /* a run resumed from the v1 checkpoint of step 3 ends where a run of
     * today's code that never stopped ends (the fixture's numbers were made
     * by the old code, so this also shows nothing changed numerically) */
    const char *root = tfm_test_tmpdir("train-v1");
    char straight[600], resumed[600], path[700], path2[700];
    snprintf(straight, sizeof straight, "%s/straight", root);
    snprintf(resumed, sizeof resumed, "%s/resumed", root);
    v1_run(straight, 6, 0);
    snprintf(path, sizeof path, "%s/checkpoint-00000003.tfm", resumed);
    ck_assert_int_eq(mkdir(resumed, 0777), 0);
    copy_file(fixture, path);
    v1_run(resumed, 6, 1);
    snprintf(path, sizeof path, "%s/checkpoint-00000006.tfm", straight);
    snprintf(path2, sizeof path2, "%s/checkpoint-00000006.tfm", resumed);
    assert_same_state(path, path2);
    /* what is written now is version 2 with named blocks */
    ck_assert_int_eq(tfm_checkpoint_read(path2, &ck), 0);
    ck_assert_int_eq(ck.version, 2);
    ck_assert_int_eq(ck.n_blocks, 3);
    ck_assert_str_eq(ck.block_names[0], "params");
    ck_assert_str_eq(ck.block_names[2], "adam.v");
    tfm_checkpoint_free(&ck);
}
END_TEST

/* ---- resume without a checkpoint (issue 19) ------------------------------------------------ */
static const char *CONFIG_A = "task = copy\nd-model = 16\nsteps = 8\nresume = false\n";
static const char *CONFIG_A_RESUMED = "task = copy\nd-model = 16\nsteps = 12\nresume = true\n";
static const char *CONFIG_B = "task = copy\nd-model = 32\nsteps = 8\nresume = true\n";

static const char *g_config_defaults; /* o.config_defaults of toy_run_dir */

static int toy_run_dir(const char *dir, int64_t steps, int resume, const char *config,
                       int64_t *step_at_start) {
    tfm_model_config c = tfm_test_tiny_model();
    tfm_train_opts o = toy_opts(steps);
    o.run_dir = dir;
    o.resume = resume;
    o.config_text = config;
    o.config_defaults = g_config_defaults;
    o.save_every = 4;
    tfm_toy_source toy;
    ck_assert_int_eq(tfm_toy_source_init(&toy, &tfm_test_tiny_task, 8, o.seed), 0);
    tfm_trainer tr;
    int rc = tfm_trainer_init(&tr, &o, &c, &toy.source, NULL);
    if (rc == 0) {
        if (step_at_start) *step_at_start = tr.step;
        ck_assert_msg(tfm_train(&tr) == 0, "%s", tfm_last_error());
        tfm_trainer_free(&tr);
    }
    tfm_toy_source_free(&toy);
    return rc;
}

START_TEST(test_resume_before_first_checkpoint) {
    const char *root = tfm_test_tmpdir("train-nockpt");
    char a[600], b[600], c[600], d[600], path[700], path2[700];
    snprintf(a, sizeof a, "%s/straight", root);
    snprintf(b, sizeof b, "%s/killed", root);
    snprintf(c, sizeof c, "%s/other", root);
    snprintf(d, sizeof d, "%s/foreign", root);
    ck_assert_int_eq(toy_run_dir(a, 12, 0, CONFIG_A, NULL), 0);

    /* what a run killed before its first checkpoint leaves behind */
    ck_assert_int_eq(mkdir(b, 0777), 0);
    snprintf(path, sizeof path, "%s/config.txt", b);
    FILE *f = fopen(path, "w");
    fputs(CONFIG_A, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/train.log", b);
    f = fopen(path, "w");
    fputs("task copy\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/checkpoint-00000004.tfm.tmp.123.0", b);
    f = fopen(path, "w");
    fputs("partial", f);
    fclose(f);
    int64_t start = -1;
    ck_assert_msg(toy_run_dir(b, 12, 1, CONFIG_A_RESUMED, &start) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(start, 0);
    snprintf(path, sizeof path, "%s/checkpoint-00000012.tfm", a);
    snprintf(path2, sizeof path2, "%s/checkpoint-00000012.tfm", b);
    assert_same_state(path, path2);
    snprintf(path, sizeof path, "%s/train.log", b);
    char *log = tfm_test_slurp(path);
    ck_assert_msg(strstr(log, "no checkpoint yet") && strstr(log, "starting from step 0"), "%s",
                  log);
    free(log);

    /* an empty or missing directory starts too (the first launch of a job
     * that always passes --resume) */
    snprintf(path, sizeof path, "%s/fresh", root);
    ck_assert_int_eq(toy_run_dir(path, 4, 1, CONFIG_A, &start), 0);
    ck_assert_int_eq(start, 0);

    /* a different configuration is refused, naming the setting */
    ck_assert_int_eq(mkdir(c, 0777), 0);
    snprintf(path, sizeof path, "%s/config.txt", c);
    f = fopen(path, "w");
    fputs(CONFIG_A, f);
    fclose(f);
    ck_assert_int_ne(toy_run_dir(c, 12, 1, CONFIG_B, NULL), 0);
    ck_assert_msg(strstr(tfm_last_error(), "d-model was 16, now 32") &&
                      strstr(tfm_last_error(), "config.txt"),
                  "%s", tfm_last_error());
    ck_assert_msg(access(path, F_OK) == 0, "the refused directory was changed");

    /* a setting the earlier config.txt lacks (added by a later version):
     * unchanged when it is at its default, else refused */
    const char *with_new = "task = copy\nd-model = 16\nsteps = 12\nresume = true\nnew = 0\n";
    const char *new_set = "task = copy\nd-model = 16\nsteps = 12\nresume = true\nnew = 5\n";
    ck_assert_int_ne(toy_run_dir(c, 12, 1, with_new, NULL), 0); /* no defaults given */
    ck_assert_msg(strstr(tfm_last_error(), "new was (not set), now 0"), "%s", tfm_last_error());
    g_config_defaults = "task = copy\nd-model = 32\nnew = 0\n";
    ck_assert_int_ne(toy_run_dir(c, 12, 1, new_set, NULL), 0);
    ck_assert_msg(strstr(tfm_last_error(), "new was (not set), now 5"), "%s", tfm_last_error());
    ck_assert_msg(toy_run_dir(c, 12, 1, with_new, &start) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(start, 0);
    g_config_defaults = NULL;

    /* so is a directory holding files that are not a tfm run */
    ck_assert_int_eq(mkdir(d, 0777), 0);
    snprintf(path, sizeof path, "%s/thesis.tex", d);
    f = fopen(path, "w");
    fputs("x", f);
    fclose(f);
    ck_assert_int_ne(toy_run_dir(d, 12, 1, CONFIG_A, NULL), 0);
    ck_assert_msg(strstr(tfm_last_error(), "thesis.tex"), "%s", tfm_last_error());
}
END_TEST

/* The newest checkpoints of a run directory, oldest first (tfm average --last). */
START_TEST(test_newest_checkpoints) {
    const char *root = tfm_test_tmpdir("train-newest");
    char dir[600], want[700];
    snprintf(dir, sizeof dir, "%s/run", root);
    ck_assert_int_eq(toy_run_dir(dir, 12, 0, CONFIG_A, NULL), 0); /* keeps 4, 8, 12 */
    char *paths[4] = {0};
    ck_assert_msg(tfm_run_newest_checkpoints(dir, 2, paths) == 0, "%s", tfm_last_error());
    snprintf(want, sizeof want, "%s/checkpoint-00000008.tfm", dir);
    ck_assert_str_eq(paths[0], want);
    snprintf(want, sizeof want, "%s/checkpoint-00000012.tfm", dir);
    ck_assert_str_eq(paths[1], want);
    free(paths[0]);
    free(paths[1]);
    ck_assert_int_ne(tfm_run_newest_checkpoints(dir, 4, paths), 0);
    snprintf(want, sizeof want, "%s holds 3 checkpoints (checkpoint-<step>.tfm)", dir);
    ck_assert_str_eq(tfm_last_error(), want);
    snprintf(dir, sizeof dir, "%s/nowhere", root);
    ck_assert_int_ne(tfm_run_newest_checkpoints(dir, 1, paths), 0);
    ck_assert_msg(strstr(tfm_last_error(), "nowhere: cannot open the run directory"), "%s",
                  tfm_last_error());
}
END_TEST

/* ---- toy translation (text.c) ------------------------------ */
/* "3 4 5"-style output: ids a model may emit (never pad or <s>), single spaces. */
static void assert_symbol_line(const char *s, int64_t vocab) {
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        ck_assert_msg(end != p && v >= TFM_EOS_ID && v < vocab, "bad output '%s'", s);
        ck_assert_msg(*end == 0 || (*end == ' ' && end[1] && end[1] != ' '), "bad output '%s'", s);
        p = *end ? end + 1 : end;
    }
}

START_TEST(test_translate_toy_lines) {
    tfm_model_config c = tfm_test_tiny_model();
    tfm_model m;
    ck_assert_int_eq(tfm_model_init(&m, &c), 0);
    tfm_model_init_weights(&m, 5);
    char *lines[3] = {"3 4 5", "", "  7 6 "};
    char *out[3] = {0}, *again[3] = {0};
    tfm_translate_opts o = {.beam = 1, .batch = 2};
    ck_assert_msg(tfm_translate_toy_lines(&m, lines, 3, &o, "in", out) == 0, "%s",
                  tfm_last_error());
    ck_assert_msg(tfm_translate_toy_lines(&m, lines, 3, &o, "in", again) == 0, "%s",
                  tfm_last_error());
    for (int i = 0; i < 3; i++) {
        assert_symbol_line(out[i], c.vocab);
        ck_assert_str_eq(out[i], again[i]); /* deterministic */
        free(out[i]);
        free(again[i]);
        out[i] = NULL;
    }
    /* errors name the input and line; nothing stays allocated */
    char *bad[3] = {"3 4", "5", "4 x"};
    ck_assert_int_ne(tfm_translate_toy_lines(&m, bad, 3, &o, "in", out), 0);
    ck_assert_str_eq(tfm_last_error(), "in:3: 'x' is not a symbol id");
    for (int i = 0; i < 3; i++) ck_assert_ptr_null(out[i]);
    char *outside[1] = {"3 9"};
    ck_assert_int_ne(tfm_translate_toy_lines(&m, outside, 1, &o, "<stdin>", out), 0);
    ck_assert_str_eq(tfm_last_error(), "<stdin>:1: symbol 9 is outside 3..7");
    /* beam search is for text models: refused, not ignored */
    o.beam = 2;
    ck_assert_int_ne(tfm_translate_toy_lines(&m, lines, 1, &o, "in", out), 0);
    ck_assert_str_eq(tfm_last_error(), "translate: beam 2: a toy model decodes greedily");
    o.beam = 1;
    /* max_len cuts the output: the first random model (by seed) whose decoding
     * of "3 4 5" has 3 or more symbols gives its first 2 with max_len 2 */
    int found = 0;
    for (uint64_t seed = 1; seed <= 200 && !found; seed++) {
        tfm_model_init_weights(&m, seed);
        o.max_len = 0;
        ck_assert_int_eq(tfm_translate_toy_lines(&m, lines, 1, &o, "in", out), 0);
        int words = 1;
        for (const char *p = out[0]; *p; p++) words += *p == ' ';
        if (*out[0] && words >= 3) {
            found = 1;
            o.max_len = 2;
            ck_assert_int_eq(tfm_translate_toy_lines(&m, lines, 1, &o, "in", again), 0);
            const char *second = strchr(out[0], ' ');
            const char *third = strchr(second + 1, ' ');
            ck_assert_int_eq((int)strlen(again[0]), (int)(third - out[0]));
            ck_assert_msg(!strncmp(again[0], out[0], strlen(again[0])),
                          "'%s' is not a prefix of '%s'", again[0], out[0]);
            free(again[0]);
        }
        free(out[0]);
        out[0] = NULL;
    }
    ck_assert_msg(found, "no random model decodes 3 symbols");
    tfm_model_free(&m);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("trainer");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_schedules);
    tcase_add_test(tc, test_trainer_cooldown_ends_with_the_steps);
    tcase_add_test(tc, test_reduce_hook_contract);
    tcase_add_test(tc, test_grad_ready_buckets);
    tcase_add_test(tc, test_accumulation_equals_one_big_batch);
    tcase_add_test(tc, test_accumulation_resumes_bit_identical);
    tcase_add_test(tc, test_ema_average_validation_and_best);
    tcase_add_test(tc, test_ema_resumes_bit_identical);
    tcase_add_test(tc, test_tokens_are_global_with_a_reduce_hook);
    tcase_add_test(tc, test_v1_checkpoint_loads_and_resumes);
    tcase_add_test(tc, test_resume_before_first_checkpoint);
    tcase_add_test(tc, test_translate_toy_lines);
    tcase_add_test(tc, test_newest_checkpoints);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tfm_test_main(suite()); }
