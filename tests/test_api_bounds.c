/* The public C API refuses what a caller could plausibly pass wrong, with an
 * error and a message instead of a crash, an overflow or a silent result
 * (found by a review of include/tfm/ on 2026-11-30; each case failed then):
 * sizes that wrap, negative lengths, optimizer settings that make every
 * update NaN, out-of-range enums, beam/batch bounds, a NaN length penalty,
 * state blocks the reader would refuse. */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "tfm/average.h"
#include "tfm/checkpoint.h"
#include "tfm/data.h"
#include "tfm/decode.h"
#include "tfm/eval.h"
#include "tfm/export.h"
#include "tfm/nn.h"
#include "tfm/ops.h"
#include "tfm/optim.h"
#include "tfm/train.h"
#include "util_test.h"

static void expect_error(int failed, const char *what, const char *want) {
    ck_assert_msg(failed, "%s was accepted", what);
    ck_assert_msg(strstr(tfm_last_error(), want) != NULL, "%s: '%s' does not say '%s'", what,
                  tfm_last_error(), want);
}

/* tfm_alloc's rounding to 64 bytes wrapped: SIZE_MAX - 30 gave a tiny block */
START_TEST(alloc_refuses_sizes_that_wrap) {
    void *p = tfm_alloc(SIZE_MAX - 30);
    expect_error(p == NULL, "tfm_alloc(SIZE_MAX - 30)", "out of memory");
    p = tfm_calloc(SIZE_MAX - 30);
    expect_error(p == NULL, "tfm_calloc(SIZE_MAX - 30)", "out of memory");
    p = tfm_alloc(100);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % 64, 0);
    tfm_free(p);
}
END_TEST

/* negative or INT64_MAX lengths, shapes whose products overflow, batcher
 * states far past any run */
START_TEST(batches_refuse_bad_lengths_and_shapes) {
    tfm_batch bt;
    expect_error(tfm_batch_alloc(&bt, INT64_C(1) << 32, INT64_C(1) << 32, INT64_C(1) << 32) != 0,
                 "tfm_batch_alloc(2^32, 2^32, 2^32)", "too large");
    ck_assert_int_eq(tfm_batch_alloc(&bt, 2, 8, 8), 0);
    int32_t ids[4] = {5, 6, 7, 8};
    int32_t *rows[1] = {ids};
    int64_t src_len[1] = {-3}, tgt_len[1] = {2};
    tfm_pairs p = {1, rows, src_len, rows, tgt_len};
    int64_t idx[1] = {0};
    expect_error(tfm_batch_fill(&bt, &p, idx, 1) != 0, "a negative source length",
                 "has a length of -3 source");
    src_len[0] = 2;
    tgt_len[0] = INT64_MAX;
    expect_error(tfm_batch_fill(&bt, &p, idx, 1) != 0, "an INT64_MAX target length",
                 "has a length of");
    tgt_len[0] = 2;
    ck_assert_int_eq(tfm_batch_fill(&bt, &p, idx, 1), 0);
    tfm_batch_free(&bt);

    tfm_batcher b;
    tfm_batch_opts o = {.batch_tokens = 64, .seed = 1};
    src_len[0] = INT64_MAX;
    expect_error(tfm_batcher_init(&b, &p, &o) != 0, "a pair of INT64_MAX ids",
                 "does not fit in batch_tokens 64 on its own");
    src_len[0] = 2;
    tfm_pairs none = {-1, rows, src_len, rows, tgt_len};
    expect_error(tfm_batcher_init(&b, &none, &o) != 0, "-1 pairs", "-1 pairs");
    ck_assert_int_eq(tfm_batcher_init(&b, &p, &o), 0);
    expect_error(tfm_batcher_set_state(&b, (tfm_batcher_state){1, INT64_MAX, 0}) != 0,
                 "epoch INT64_MAX", "out of range");
    tfm_batcher_free(&b);
}
END_TEST

/* Adam settings that turned every weight NaN while tfm_train returned 0 */
START_TEST(trainer_refuses_adam_settings_that_make_nan) {
    tfm_model_config c = tfm_test_tiny_model();
    tfm_toy_source toy;
    ck_assert_int_eq(tfm_toy_source_init(&toy, &tfm_test_tiny_task, 8, 1), 0);
    static const char *const cases[] = {
        "eps 0",    "beta1 1", "beta2 NaN", "beta2 2", "lr inf", "weight decay inf",
        "beta1 -3", "lr 1e39", "avg 4097",  "eps -1"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tfm_train_opts o = tfm_test_tiny_opts(3, 1);
        switch (i) {
        case 0: o.adam.eps = 0; break;
        case 1: o.adam.beta1 = 1.0f; break;
        case 2: o.adam.beta2 = NAN; break;
        case 3: o.adam.beta2 = 2.0f; break;
        case 4: o.schedule.lr = INFINITY; break;
        case 5: o.adam.weight_decay = INFINITY; break;
        case 6: o.adam.beta1 = -3.0f; break;
        case 7:
            o.schedule.lr = 1e39;
            break; /* inf as the float it is applied as */
        case 8:
            o.average_last = TFM_AVERAGE_MAX + 1; /* a directory scan per count after training */
            o.run_dir = tfm_test_tmpdir("avg");
            break;
        default: o.adam.eps = -1.0f; break;
        }
        tfm_trainer tr;
        int rc = tfm_trainer_init(&tr, &o, &c, &toy.source, NULL);
        if (rc == 0) tfm_trainer_free(&tr);
        ck_assert_msg(rc != 0, "%s was accepted", cases[i]);
    }
    tfm_train_opts o = tfm_test_tiny_opts(3, 1);
    o.precision = (tfm_precision)9;
    tfm_trainer tr;
    expect_error(tfm_trainer_init(&tr, &o, &c, &toy.source, NULL) != 0, "precision 9",
                 "precision 9");
    o.precision = TFM_FP32;
    o.emb_init = 2;
    expect_error(tfm_trainer_init(&tr, &o, &c, &toy.source, NULL) != 0, "emb_init 2",
                 "emb init 2: unknown");
    tfm_adam a;
    tfm_adam_config ac;
    tfm_adam_config_default(&ac);
    ac.eps = 0;
    expect_error(tfm_adam_init(&a, NULL, &ac) != 0, "tfm_adam_init with eps 0", "eps");
    tfm_toy_source_free(&toy);

    /* a toy batch of -1 or 0 sequences; an evaluation of none */
    expect_error(tfm_toy_source_init(&toy, &tfm_test_tiny_task, -1, 1) != 0, "a batch of -1",
                 "toy batch -1");
    expect_error(tfm_toy_source_init(&toy, &tfm_test_tiny_task, 0, 1) != 0, "a batch of 0",
                 "toy batch 0");
    tfm_toy_config big = tfm_test_tiny_task;
    big.max_len = INT64_MAX;
    expect_error(tfm_toy_source_init(&toy, &big, 8, 1) != 0, "max_len INT64_MAX",
                 "toy max_len 9223372036854775807: at most 65536");
}
END_TEST

/* an out-of-range tokenizer scored identical text 0 */
START_TEST(bleu_refuses_unknown_tokenizers) {
    const char *hyp[1] = {"a b c d"}, *ref0[1] = {"a b c d"};
    const char *const *refs[1] = {ref0};
    tfm_bleu b;
    expect_error(tfm_bleu_corpus_tok(hyp, 1, refs, 1, 0, (tfm_bleu_tok)7, &b) != 0,
                 "tokenizer 7", "unknown tokenizer 7");
    expect_error(tfm_bleu_acc_new_tok(0, (tfm_bleu_tok)-3) == NULL, "tokenizer -3",
                 "unknown tokenizer -3");
    char *out = NULL;
    expect_error(tfm_bleu_tokenize_tok("a", 1, 0, (tfm_bleu_tok)2, &out, NULL) != 0,
                 "tokenize with 2", "unknown tokenizer 2");
    ck_assert_int_eq(tfm_bleu_corpus_tok(hyp, 1, refs, 1, 0, TFM_BLEU_TOK_NONE, &b), 0);
    ck_assert(fabs(b.score - 100.0) < 1e-9);
}
END_TEST

/* beam and batch products overflowed; alpha NaN gave NaN scores */
START_TEST(decoding_refuses_out_of_range_arguments) {
    tfm_model_config c = tfm_test_tiny_model();
    tfm_model m;
    ck_assert_int_eq(tfm_model_init(&m, &c), 0);
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 1 << 20, 16), 0);
    int32_t src[4] = {3, 4, 2, 0}, out[8];
    uint8_t pad[4] = {0, 0, 0, 1};
    int64_t lens[1];
    expect_error(tfm_beam_decode(&m, &t, src, pad, 1, 4, INT64_C(1) << 62, 0.6f, 4, out, lens) != 0,
                 "beam 2^62", "beam 4611686018427387904: must be between 1 and 1024");
    expect_error(tfm_beam_decode(&m, &t, src, pad, INT64_C(1) << 62, 4, 2, 0.6f, 4, out, lens) != 0,
                 "2^62 sources", "must be between 1 and");
    expect_error(tfm_beam_decode(&m, &t, src, pad, 1, 4, 2, NAN, 4, out, lens) != 0, "alpha NaN",
                 "alpha nan: must be finite");
    tfm_model *ms[1] = {&m};
    expect_error(tfm_beam_decode_ensemble(ms, 1, &t, src, pad, 1, 4, 2, INFINITY, 4, out, lens,
                                          NULL) != 0,
                 "ensemble alpha inf", "must be finite");
    ck_assert_msg(tfm_beam_decode(&m, &t, src, pad, 1, 4, 2, 0.6f, 4, out, lens) == 0, "%s",
                  tfm_last_error());
    /* a source of 0 positions or no output: "decoder cache ... too large" */
    expect_error(tfm_greedy_decode(&m, &t, src, pad, 1, 0, 4, out, lens) != 0, "greedy S 0",
                 "greedy decoding: source length 0 and max_out 4: each must be at least 1");
    expect_error(tfm_greedy_decode(&m, &t, src, pad, 1, 4, -3, out, lens) != 0, "greedy max_out -3",
                 "max_out -3: each must be at least 1");
    expect_error(tfm_greedy_decode(&m, &t, src, pad, 0, 4, 4, out, lens) != 0, "greedy B 0",
                 "greedy decoding: 0 sources");
    expect_error(tfm_beam_decode(&m, &t, src, pad, 1, 0, 2, 0.6f, 4, out, lens) != 0, "beam S 0",
                 "beam search: source length 0");
    ck_assert_msg(tfm_greedy_decode(&m, &t, src, pad, 1, 4, 4, out, lens) == 0, "%s",
                  tfm_last_error());

    /* translate: the toy lines with a huge batch or a negative count */
    char *lines[1] = {"3 4"};
    char *res[1] = {NULL};
    tfm_translate_opts o = {.beam = 1, .alpha = 0.6, .batch = 4};
    o.batch = INT64_C(1) << 62;
    expect_error(tfm_translate_toy_lines(&m, lines, 1, &o, "in", res) != 0, "batch 2^62",
                 "batch 4611686018427387904");
    o.batch = 4;
    expect_error(tfm_translate_toy_lines(&m, lines, -1, &o, "in", res) != 0, "-1 lines",
                 "-1 lines");
    ck_assert_msg(tfm_translate_toy_lines(&m, lines, 1, &o, "in", res) == 0, "%s",
                  tfm_last_error());
    free(res[0]);
    tfm_tape_free(&t);
    tfm_model_free(&m);
}
END_TEST

/* A tiny model, its configuration as checkpoint metadata (a toy model's),
 * a path for its checkpoint in a new directory, and a zeroed block of the
 * parameters' size for optimizer state (free it). */
static float *tiny_checkpoint_parts(tfm_model *m, tfm_kv *kv, char *path, size_t cap,
                                    const char *dir) {
    tfm_model_config c = tfm_test_tiny_model();
    ck_assert_int_eq(tfm_model_init(m, &c), 0);
    snprintf(path, cap, "%s/ck.tfm", tfm_test_tmpdir(dir));
    tfm_kv_init(kv);
    tfm_model_config_to_kv(&c, kv);
    tfm_kv_set(kv, "data.kind", "toy");
    float *d = calloc((size_t)m->params.total_n, sizeof(float));
    ck_assert_ptr_nonnull(d);
    return d;
}

/* a checkpoint its own reader refuses is not written over a good one */
START_TEST(checkpoint_save_refuses_duplicate_state_blocks) {
    tfm_model m;
    tfm_kv kv;
    char path[512];
    float *d = tiny_checkpoint_parts(&m, &kv, path, sizeof path, "api-ckpt");
    tfm_state_block one[1] = {{"adam.m", d}}, two[2] = {{"adam.m", d}, {"adam.m", d}};
    ck_assert_msg(tfm_checkpoint_save(path, &kv, &m.params, one, 1) == 0, "%s", tfm_last_error());
    expect_error(tfm_checkpoint_save(path, &kv, &m.params, two, 2) != 0, "adam.m twice",
                 "state block adam.m given twice; not saved");
    /* more keys than the reader takes: written, then never loaded again */
    tfm_kv many;
    tfm_kv_init(&many);
    for (int i = 0; i < TFM_KV_MAX_LINES + 1; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        tfm_kv_set(&many, key, "1");
    }
    expect_error(tfm_checkpoint_save(path, &many, &m.params, one, 1) != 0, "4097 keys",
                 "4097 metadata keys: at most 4096");
    tfm_kv_free(&many);
    tfm_checkpoint ck;
    ck_assert_msg(tfm_checkpoint_read(path, &ck) == 0, "the good file was replaced: %s",
                  tfm_last_error());
    tfm_checkpoint_free(&ck);
    free(d);
    tfm_kv_free(&kv);
    tfm_model_free(&m);
}
END_TEST

/* a weight or optimizer value that is not finite (a damaged or hand-made
 * file: the trainer never saves one) is refused by tensor, not decoded to
 * empty lines or trained as NaN */
START_TEST(checkpoint_load_refuses_non_finite_values) {
    tfm_model m, back;
    tfm_kv kv;
    char path[512];
    float *d = tiny_checkpoint_parts(&m, &kv, path, sizeof path, "api-nonfinite");
    tfm_state_block st[1] = {{"adam.v", d}};
    tfm_tensor *last = m.params.items[m.params.count - 1];
    last->data[last->n - 1] = NAN;
    ck_assert_msg(tfm_checkpoint_save(path, &kv, &m.params, st, 1) == 0, "%s", tfm_last_error());
    char want[600];
    snprintf(want, sizeof want, "tensor %s: element %lld is nan (values must be finite)",
             last->name, (long long)(last->n - 1));
    expect_error(tfm_load_model(path, &back, NULL) != 0, "NaN weight", want);
    last->data[last->n - 1] = 0.5f;
    d[3] = -INFINITY;
    ck_assert_msg(tfm_checkpoint_save(path, &kv, &m.params, st, 1) == 0, "%s", tfm_last_error());
    ck_assert_msg(tfm_load_model(path, &back, NULL) == 0, "%s", tfm_last_error());
    tfm_model_free(&back);
    tfm_checkpoint ck;
    ck_assert_int_eq(tfm_checkpoint_read(path, &ck), 0);
    float *into = calloc((size_t)m.params.total_n, sizeof(float));
    tfm_state_block to[1] = {{"adam.v", into}};
    snprintf(want, sizeof want, "tensor %s, optimizer state adam.v: element 3 is -inf",
             m.params.items[0]->name);
    expect_error(tfm_checkpoint_load_state(&ck, &m.params, to, 1) != 0, "-inf moment", want);
    tfm_checkpoint_free(&ck);
    free(into);
    free(d);
    tfm_kv_free(&kv);
    tfm_model_free(&m);
}
END_TEST

/* a text model of 2 positions has room for </s> alone: refused, not every
 * line cut to nothing and "translated" (the program names the model first) */
START_TEST(translate_refuses_a_model_without_room_for_a_subword) {
    tfm_model_config c = tfm_test_tiny_model();
    c.max_len = 2;
    tfm_model m;
    ck_assert_int_eq(tfm_model_init(&m, &c), 0);
    tfm_text_model tm = {0};
    char *lines[1] = {"a"}, *out[1] = {0};
    tfm_translate_opts o = {.beam = 1, .batch = 1};
    expect_error(tfm_translate_lines(&m, &tm, lines, 1, &o, out) != 0, "2 positions",
                 "a model of 2 positions has no room for a source subword beside </s>");
    ck_assert_ptr_null(out[0]);
    tfm_model_free(&m);
}
END_TEST

/* ---- a C user's review of 2026-11-30 (seventh session); each failed then ---- */

/* The tiny copy-task model, its batch source and quiet options of steps. */
static tfm_train_opts tiny_toy_run(tfm_model_config *c, tfm_toy_source *toy, int64_t steps) {
    *c = tfm_test_tiny_model();
    ck_assert_int_eq(tfm_toy_source_init(toy, &tfm_test_tiny_task, 8, 1), 0);
    tfm_train_opts o = tfm_test_tiny_opts(steps, 1);
    o.quiet = 1;
    return o;
}

static void count_step_lines(void *ctx, tfm_trainer *tr, const char *line) {
    (void)tr;
    if (!strncmp(line, "step ", 5)) ++*(int *)ctx;
}

/* on_log got every line but the progress lines, which went to stdout and
 * train.log directly */
START_TEST(on_log_gets_the_progress_lines) {
    tfm_model_config c;
    tfm_toy_source toy;
    tfm_train_opts o = tiny_toy_run(&c, &toy, 40);
    o.log_every = 10;
    int n = 0;
    tfm_train_hooks h = {.ctx = &n, .on_log = count_step_lines};
    tfm_trainer tr;
    ck_assert_msg(tfm_trainer_init(&tr, &o, &c, &toy.source, &h) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(tfm_train(&tr), 0);
    ck_assert_int_eq(n, 4);
    tfm_trainer_free(&tr);
    tfm_toy_source_free(&toy);
}
END_TEST

/* a second trainer of the same process took a locked run directory (POSIX
 * record locks are per process), and freeing it released the first one's
 * lock */
START_TEST(a_run_directory_takes_one_trainer_per_process) {
    tfm_model_config c;
    tfm_toy_source toy;
    tfm_train_opts o = tiny_toy_run(&c, &toy, 2);
    o.run_dir = tfm_test_tmpdir("lock");
    tfm_trainer a, b;
    ck_assert_msg(tfm_trainer_init(&a, &o, &c, &toy.source, NULL) == 0, "%s", tfm_last_error());
    expect_error(tfm_trainer_init(&b, &o, &c, &toy.source, NULL) != 0, "a second trainer",
                 "another training of this process is using this run directory");
    tfm_trainer_free(&b); /* freed twice (init freed it): must not touch a's lock */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) { /* another process: still refused */
        tfm_trainer t;
        int rc = tfm_trainer_init(&t, &o, &c, &toy.source, NULL);
        _exit(rc != 0 && strstr(tfm_last_error(), "another training (pid") ? 0 : 1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "another process took the run directory of a live trainer");
    tfm_trainer_free(&a);
    o.resume = 1;
    ck_assert_msg(tfm_trainer_init(&b, &o, &c, &toy.source, NULL) == 0, "%s", tfm_last_error());
    tfm_trainer_free(&b);
    if (fcntl(0, F_GETFD) == -1) ck_assert_int_eq(open("/dev/null", O_RDONLY), 0);
    tfm_trainer zeroed;
    memset(&zeroed, 0, sizeof zeroed);
    tfm_trainer_free(&zeroed); /* holds no lock: closes nothing (fd 0 stays open) */
    ck_assert_int_ne(fcntl(0, F_GETFD), -1);
    tfm_toy_source_free(&toy);
}
END_TEST

static int stop_at_5(void *ctx, tfm_trainer *tr) {
    (void)ctx;
    if (tr->step == 5) tfm_trainer_request_stop();
    return 0;
}

static void stop_when_averaged(void *ctx, tfm_trainer *tr, const char *line) {
    (void)ctx;
    (void)tr;
    if (!strncmp(line, "averaged.tfm", 12)) tfm_trainer_request_stop();
}

/* a stop request stayed set: every later training of the process stopped
 * at once */
START_TEST(a_stop_request_ends_with_its_training) {
    tfm_model_config c;
    tfm_toy_source toy;
    tfm_train_opts o = tiny_toy_run(&c, &toy, 20);
    tfm_train_hooks h = {.on_step = stop_at_5};
    tfm_trainer tr;
    ck_assert_int_eq(tfm_trainer_init(&tr, &o, &c, &toy.source, &h), 0);
    ck_assert_int_eq(tfm_train(&tr), 0);
    ck_assert_int_eq(tr.step, 5);
    ck_assert_int_eq(tr.stop_reason, 3);
    tfm_trainer_free(&tr);
    ck_assert_int_eq(tfm_trainer_stop_requested(), 0);
    ck_assert_int_eq(tfm_trainer_init(&tr, &o, &c, &toy.source, NULL), 0);
    ck_assert_int_eq(tfm_train(&tr), 0);
    ck_assert_int_eq(tr.step, 20);
    tfm_trainer_free(&tr);
    /* one made after the loop (here while the average is written) is not
     * the loop's to clear: it stays for the next training */
    o.run_dir = tfm_test_tmpdir("stop-avg");
    o.save_every = 5;
    o.average_last = 2;
    tfm_train_hooks late = {.on_log = stop_when_averaged};
    ck_assert_int_eq(tfm_trainer_init(&tr, &o, &c, &toy.source, &late), 0);
    ck_assert_int_eq(tfm_train(&tr), 0);
    ck_assert_int_eq(tr.step, 20);
    ck_assert_int_eq(tfm_trainer_stop_requested(), 1);
    tfm_trainer_free(&tr);
    o.run_dir = NULL;
    o.save_every = 0;
    o.average_last = 0;
    /* one made before tfm_train still stops it at once */
    ck_assert_int_eq(tfm_trainer_init(&tr, &o, &c, &toy.source, NULL), 0);
    tfm_trainer_request_stop();
    ck_assert_int_eq(tfm_train(&tr), 0);
    ck_assert_int_eq(tr.step, 0);
    tfm_trainer_free(&tr);
    tfm_toy_source_free(&toy);
}
END_TEST

/* "bogus" was written into config.json, which tfm_export_load then refused;
 * NULL failed after model.safetensors was written */
START_TEST(export_save_refuses_an_unknown_data_kind) {
    tfm_model_config c = tfm_test_tiny_model();
    tfm_model m;
    ck_assert_int_eq(tfm_model_init(&m, &c), 0);
    const char *dir = tfm_test_tmpdir("export_kind");
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    expect_error(tfm_export_save(&m, "bogus", dir) != 0, "data kind bogus",
                 "data kind \"bogus\": must be \"text\" or \"toy\"");
    expect_error(tfm_export_save(&m, NULL, dir) != 0, "data kind NULL", "data kind NULL");
    ck_assert_int_ne(access(path, F_OK), 0);
    ck_assert_msg(tfm_export_save(&m, "toy", dir) == 0, "%s", tfm_last_error());
    tfm_model_free(&m);
}
END_TEST

/* BPE and vocabulary of three short German lines, 5 merges. */
static void three_line_text_model(tfm_text_model *tm) {
    static const char text[] = "ein haus\nzwei haeuser\nein baum\n";
    tfm_text_input in = {"t", text, sizeof text - 1};
    ck_assert_msg(tfm_text_model_learn_texts(&in, 1, 5, tm) == 0, "%s", tfm_last_error());
}

/* bad UTF-8 was "invalid UTF-8 at byte 1" without the line; -1 lines was
 * "out of memory"; a negative max_len, a count of -1 checkpoints and 1025
 * threads were accepted */
START_TEST(translate_lines_names_the_line_and_checks_counts) {
    tfm_text_model tm;
    three_line_text_model(&tm);
    tfm_model_config c = tfm_test_tiny_model();
    c.vocab = tfm_vocab_size(tm.vocab);
    tfm_model m;
    ck_assert_int_eq(tfm_model_init(&m, &c), 0);
    tfm_translate_opts o;
    tfm_translate_opts_default(&o);
    o.input_name = "in.txt";
    o.first_line = 3;
    char *lines[2] = {"ein haus", "ein \xff"}, *out[2] = {0, 0};
    expect_error(tfm_translate_lines(&m, &tm, lines, 2, &o, out) != 0, "bad UTF-8", "in.txt:4: ");
    ck_assert_ptr_null(out[0]);
    expect_error(tfm_translate_lines(&m, &tm, lines, -1, &o, out) != 0, "-1 lines",
                 "-1 lines: must not be negative");
    lines[1] = NULL;
    expect_error(tfm_translate_lines(&m, &tm, lines, 2, &o, out) != 0, "a NULL line",
                 "in.txt:4: NULL line");
    o.max_len = -5;
    expect_error(tfm_translate_lines(&m, &tm, lines, 1, &o, out) != 0, "max_len -5",
                 "max_len -5: must not be negative");
    o.max_len = 0;
    ck_assert_msg(tfm_translate_lines(&m, &tm, lines, 1, &o, out) == 0, "%s", tfm_last_error());
    free(out[0]);
    tfm_model_free(&m);
    tfm_text_model_free(&tm);

    char *paths[1];
    expect_error(tfm_run_newest_checkpoints(".", -1, paths) != 0, "-1 checkpoints",
                 "-1 checkpoints: ask for at least 1");
    tfm_toy_source toy;
    ck_assert_int_eq(tfm_toy_source_init(&toy, &tfm_test_tiny_task, 8, 1), 0);
    tfm_train_opts to = tfm_test_tiny_opts(1, 1);
    to.threads = TFM_MAX_THREADS + 1;
    tfm_trainer tr;
    expect_error(tfm_trainer_init(&tr, &to, &c, &toy.source, NULL) != 0, "1025 threads",
                 "threads 1025: at most 1024");
    tfm_toy_source_free(&toy);
}
END_TEST

/* A batch that fails on a thread of its own (a model whose vocabulary is
 * larger than vocab.txt: the decoded ids fall outside it) fails the call
 * with that batch's error, and no out[i] is left allocated; so does the
 * same call batch by batch on one thread. */
START_TEST(translate_fails_cleanly_from_a_batch_thread) {
    tfm_text_model tm;
    three_line_text_model(&tm);
    tfm_model_config c = tfm_test_tiny_model();
    c.vocab = tfm_vocab_size(tm.vocab) + 1; /* one id past vocab.txt */
    c.max_len = 32;
    tfm_model m;
    ck_assert_int_eq(tfm_model_init(&m, &c), 0);
    tfm_model_init_weights(&m, 5); /* 5 of the 8 lines translate (avx2), the others hit it */
    tfm_translate_opts o;
    tfm_translate_opts_default(&o);
    o.batch = 1;
    o.max_len = 6;
    enum { N = 8 };
    char *lines[N] = {"ein haus", "zwei", "ein baum", "haus", "baum", "ein", "zwei haus", "x"};
    char *out[N];
#ifdef _OPENMP
    int saved = omp_get_max_threads();
#endif
    for (int threads = 2; threads >= 1; threads--) {
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
        int ok = 0; /* the lines one at a time: some fail, some do not */
        for (int i = 0; i < N; i++) {
            char *one[1] = {NULL};
            ok += tfm_translate_lines(&m, &tm, lines + i, 1, &o, one) == 0;
            free(one[0]);
        }
        ck_assert_msg(ok > 0 && ok < N, "%d of %d lines translate alone", ok, N);
        for (int i = 0; i < N; i++) out[i] = (char *)"unset";
        expect_error(tfm_translate_lines(&m, &tm, lines, N, &o, out) != 0, "ids past vocab.txt",
                     "outside the vocabulary");
        for (int i = 0; i < N; i++) ck_assert_ptr_null(out[i]);
    }
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    tfm_model_free(&m);
    tfm_text_model_free(&tm);
}
END_TEST

/* tfm_train on a trainer never initialised returned 0 (steps 0), and on a
 * freed one read freed memory: both are programmer errors, asserted */
START_TEST(train_refuses_a_trainer_not_initialised) {
    tfm_trainer tr;
    memset(&tr, 0, sizeof tr);
    tfm_train(&tr);
}
END_TEST

/* _i: 0 tfm_trainer_step, 1 tfm_trainer_checkpoint (validate and save_best
 * check the same way) */
START_TEST(a_freed_trainer_is_refused) {
    tfm_model_config c;
    tfm_toy_source toy;
    tfm_train_opts o = tiny_toy_run(&c, &toy, 2);
    tfm_trainer tr;
    ck_assert_msg(tfm_trainer_init(&tr, &o, &c, &toy.source, NULL) == 0, "%s", tfm_last_error());
    ck_assert_int_ge(tfm_trainer_step(&tr), 0);
    tfm_trainer_free(&tr);
    if (_i == 0)
        tfm_trainer_step(&tr);
    else
        tfm_trainer_checkpoint(&tr);
}
END_TEST

int main(void) {
    Suite *s = suite_create("api_bounds");
    TCase *tc = tcase_create("api_bounds");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, alloc_refuses_sizes_that_wrap);
    tcase_add_test(tc, batches_refuse_bad_lengths_and_shapes);
    tcase_add_test(tc, trainer_refuses_adam_settings_that_make_nan);
    tcase_add_test(tc, bleu_refuses_unknown_tokenizers);
    tcase_add_test(tc, decoding_refuses_out_of_range_arguments);
    tcase_add_test(tc, checkpoint_save_refuses_duplicate_state_blocks);
    tcase_add_test(tc, checkpoint_load_refuses_non_finite_values);
    tcase_add_test(tc, translate_refuses_a_model_without_room_for_a_subword);
    tcase_add_test(tc, on_log_gets_the_progress_lines);
    tcase_add_test(tc, a_run_directory_takes_one_trainer_per_process);
    tcase_add_test(tc, a_stop_request_ends_with_its_training);
    tcase_add_test(tc, export_save_refuses_an_unknown_data_kind);
    tcase_add_test(tc, translate_lines_names_the_line_and_checks_counts);
    tcase_add_test(tc, translate_fails_cleanly_from_a_batch_thread);
    tcase_add_test_raise_signal(tc, train_refuses_a_trainer_not_initialised, SIGABRT);
    tcase_add_loop_test_raise_signal(tc, a_freed_trainer_is_refused, SIGABRT, 0, 2);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
