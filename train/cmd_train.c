/* tfm train: the training loop for the toy tasks (copy, reverse). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "flags.h"
#include "tfm/checkpoint.h"
#include "tfm/nn.h"
#include "tfm/optim.h"
#include "tfm/toy.h"
#include "train_common.h"

static const char *USAGE = "tfm train --task copy|reverse [options]\n       tfm train --src-train "
                           "F --tgt-train F [--src-valid F --tgt-valid F] --save DIR [options]";

/* Exact-sequence match and token accuracy of greedy decoding on n held-out
 * sequences (a stream disjoint from the training batches). */
static int evaluate_toy(tfm_model *m, tfm_tape *t, const tfm_toy_config *tc, uint64_t seed,
                        int64_t n, int64_t batch, double *exact, double *token_acc, int n_show) {
    tfm_toy_batch b;
    if (tfm_toy_batch_alloc(&b, tc, batch)) return 1;
    int64_t max_out = tc->annotated ? b.T : b.T + 1;
    int32_t *out = tfm_alloc((size_t)(batch * max_out) * sizeof(int32_t));
    int64_t *lens = tfm_alloc((size_t)batch * sizeof(int64_t));
    int32_t *want = tfm_alloc((size_t)b.T * sizeof(int32_t));
    if (!out || !lens || !want) return 1;
    int64_t done = 0, exact_n = 0, tok_ok = 0, tok_n = 0, shown = 0;
    for (int64_t index = 0; done < n; index++) {
        tfm_toy_batch_fill(&b, tc, seed ^ 0x5EEDull, index);
        int64_t rows = n - done < batch ? n - done : batch;
        b.B = rows;
        if (tc->annotated) {
            /* start from the first source symbol, decode L-1 more */
            if (tfm_greedy_decode_from(m, t, b.src, b.src_pad, rows, b.S, b.src, b.S, max_out, out,
                                       lens))
                return 1;
        } else if (tfm_greedy_decode(m, t, b.src, b.src_pad, rows, b.S, max_out, out, lens)) {
            return 1;
        }
        for (int64_t r = 0; r < rows; r++) {
            int64_t wn = tfm_toy_expected(&b, tc, r, want);
            const int32_t *got = out + r * max_out;
            int64_t got_n = tc->annotated ? b.T : lens[r];
            int ok = got_n == wn;
            /* token accuracy over the expected tokens and the end marker */
            for (int64_t i = 0; i <= wn && i < max_out; i++) {
                int32_t w = i < wn ? want[i] : TFM_EOS_ID;
                if (tc->annotated && i == wn) break;
                tok_n++;
                if (got[i] == w)
                    tok_ok++;
                else
                    ok = 0;
            }
            exact_n += ok;
            if (shown < n_show) {
                shown++;
                printf("  src:");
                for (int64_t i = 0; i < b.S && b.src[r * b.S + i] > TFM_EOS_ID; i++)
                    printf(" %d", b.src[r * b.S + i]);
                printf("\n  out:");
                for (int64_t i = 0; i < got_n; i++) printf(" %d", got[i]);
                printf("   %s\n", ok ? "(right)" : "(WRONG)");
            }
        }
        done += rows;
        b.B = batch;
    }
    *exact = (double)exact_n / (double)n;
    *token_acc = tok_n ? (double)tok_ok / (double)tok_n : 0.0;
    tfm_free(out);
    tfm_free(lens);
    tfm_free(want);
    tfm_toy_batch_free(&b);
    return 0;
}

int tfm_cmd_train(int argc, char **argv) {
    train_options o;
    train_options_default(&o);
    flag_def flags[TRAIN_MAX_FLAGS];
    int n_flags = train_flags(&o, flags);
    int rc = flags_parse(flags, n_flags, argc, argv, USAGE, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (o.src_train) return tfm_cmd_train_corpus(&o, flags, n_flags);
    if (!o.task)
        return tfm_cli_fail(
            2, "train: give --task copy|reverse or --src-train/--tgt-train (see --help)");
    /* toy-task defaults, measured to reach exact match 1.000 on copy and
     * reverse: no dropout and half the Noam factor, unless given */
    if (!flags_find(flags, n_flags, "dropout")->set) o.dropout = 0.0;
    if (!flags_find(flags, n_flags, "lr-factor")->set) o.lr_factor = 0.5;
    tfm_toy_config tc = {
        .vocab = o.vocab, .min_len = o.min_len, .max_len = o.max_len, .annotated = o.annotated};
    if (!strcmp(o.task, "copy"))
        tc.task = TFM_TOY_COPY;
    else if (!strcmp(o.task, "reverse"))
        tc.task = TFM_TOY_REVERSE;
    else
        return tfm_cli_fail(2, "--task: '%s' is not a toy task (copy, reverse)", o.task);
    if (tfm_toy_config_check(&tc)) return tfm_cli_fail(2, "%s", tfm_last_error());
    if (train_check_options(&o)) return 2;

    tfm_model_config mc;
    train_model_config(&o, &mc);
    mc.vocab = o.vocab;
    if (mc.max_len < tc.max_len + 2) mc.max_len = tc.max_len + 2;
    trainer tr;
    if (trainer_init(&tr, &o, &mc, flags, n_flags, o.batch, tc.max_len + 1, tc.max_len + 1))
        return tfm_cli_fail(1, "%s", tfm_last_error());

    tfm_kv_set(&tr.state, "data.kind", "toy");
    tfm_kv_set(&tr.state, "data.task", "%s", o.task);
    tfm_toy_batch batch;
    if (tfm_toy_batch_alloc(&batch, &tc, o.batch)) return tfm_cli_fail(1, "%s", tfm_last_error());
    trainer_log(&tr, "task %s, vocab %lld, lengths %lld..%lld%s, %lld parameters, %d threads\n",
                o.task, (long long)tc.vocab, (long long)tc.min_len, (long long)tc.max_len,
                tc.annotated ? " (annotated copy task)" : "", (long long)tr.n_params,
                tfm_num_threads());
    double t_start = tfm_now(), train_seconds = 0;
    int64_t tokens = 0;
    for (int64_t step = tr.step + 1; step <= o.steps && !train_should_stop(); step++) {
        tfm_toy_batch_fill(&batch, &tc, o.seed, step - 1);
        tfm_seq_batch sb = {.B = batch.B,
                            .S = batch.S,
                            .T = batch.T,
                            .src = batch.src,
                            .tgt_in = batch.tgt_in,
                            .tgt_out = batch.tgt_out,
                            .src_pad = batch.src_pad,
                            .tgt_pad = batch.tgt_pad};
        double t0 = tfm_now();
        int st = trainer_step(&tr, &sb);
        train_seconds += tfm_now() - t0;
        if (st < 0) return tfm_cli_fail(1, "%s", tfm_last_error());
        tokens += batch.n_tokens;
        trainer_progress(&tr, tokens, train_seconds);
        if (trainer_maybe_checkpoint(&tr, 0)) return tfm_cli_fail(1, "%s", tfm_last_error());
    }
    trainer_progress_end(&tr);
    if (o.save && trainer_checkpoint(&tr, 1)) return tfm_cli_fail(1, "%s", tfm_last_error());
    double exact = 0, acc = 0;
    if (!o.quiet) printf("sample decodes (held-out):\n"); /* --quiet: the summary line only */
    if (evaluate_toy(&tr.model, &tr.tape, &tc, o.seed, o.eval_n, o.batch < 100 ? 100 : o.batch,
                     &exact, &acc, o.quiet ? 0 : 5))
        return tfm_cli_fail(1, "%s", tfm_last_error());
    (void)t_start;
    printf("exact_match=%.3f token_acc=%.3f steps=%lld seconds=%.1f tokens_per_s=%.0f\n", exact,
           acc, (long long)tr.step, train_seconds,
           train_seconds > 0 ? (double)tokens / train_seconds : 0.0);
    tfm_toy_batch_free(&batch);
    trainer_free(&tr);
    return 0;
}
