/* examples/train_copy.c: the copy task trained through the public API only
 * (include/tfm/), the way a C program would use libtfm.a:
 *
 *     build/examples/train_copy [STEPS [RUN_DIR]]
 *
 * Trains an encoder-decoder Transformer to copy sequences of symbols (the
 * trainer prints its progress; an on_step hook watches the loss), evaluates
 * exact-match accuracy on held-out sequences and decodes one sequence by
 * hand. With RUN_DIR it writes checkpoints there and resumes from them when
 * started again. */
#include <stdio.h>
#include <stdlib.h>

#include "tfm/train.h"

/* on_step hook: called after every update; here it only watches the loss */
typedef struct {
    double first_loss, last_loss;
} watch;

static int on_step(void *ctx, tfm_trainer *tr) {
    watch *w = ctx;
    if (tr->step == tr->first_step + 1) w->first_loss = tr->last_loss;
    w->last_loss = tr->last_loss;
    return 0; /* non-zero would stop the run */
}

int main(int argc, char **argv) {
    int64_t steps = argc > 1 ? atoll(argv[1]) : 1500;
    const char *run_dir = argc > 2 ? argv[2] : NULL;

    /* the data: sequences of 1..10 symbols over 10 symbols (+ pad, <s>, </s>) */
    tfm_toy_config task = {.task = TFM_TOY_COPY, .vocab = 13, .min_len = 1, .max_len = 10};
    /* the model: the library's defaults (64 wide, 2 + 2 layers), no dropout */
    tfm_model_config model;
    tfm_model_config_default(&model);
    model.vocab = task.vocab;
    model.dropout = 0.0f;
    /* the training: Noam schedule with half the paper's factor */
    tfm_train_opts o;
    tfm_train_opts_default(&o);
    o.steps = steps;
    o.schedule.lr = 0.5;
    o.log_every = steps >= 4 ? steps / 4 : 1;
    o.run_dir = run_dir;
    o.resume = run_dir != NULL; /* continue a run found there, else start one */
    o.save_every = 500;

    tfm_toy_source data;
    if (tfm_toy_source_init(&data, &task, 64, o.seed)) {
        fprintf(stderr, "train_copy: %s\n", tfm_last_error());
        return 1;
    }
    watch w = {0, 0};
    tfm_train_hooks hooks = {.ctx = &w, .on_step = on_step};
    tfm_trainer tr;
    if (tfm_trainer_init(&tr, &o, &model, &data.source, &hooks)) {
        fprintf(stderr, "train_copy: %s\n", tfm_last_error());
        tfm_toy_source_free(&data);
        return 1;
    }
    printf("training %lld parameters for %lld steps (from step %lld)\n", (long long)tr.n_params,
           (long long)steps, (long long)tr.step);
    int rc = tfm_train(&tr);
    if (rc) fprintf(stderr, "train_copy: %s\n", tfm_last_error());

    /* held-out accuracy of greedy decoding */
    double exact = 0, token_acc = 0;
    if (!rc && tfm_toy_evaluate(&tr.model, &task, o.seed, 500, 100, &exact, &token_acc, stdout, 3))
        rc = 1;
    if (!rc)
        printf("loss %.3f -> %.3f, exact match %.3f, token accuracy %.3f\n", w.first_loss,
               w.last_loss, exact, token_acc);

    /* decoding one sequence by hand: 3 1 4 1 5 9 2 6 in symbol ids 3..12 */
    if (!rc) {
        int32_t src[9] = {6, 4, 7, 4, 8, 12, 5, 9, TFM_EOS_ID}, out[20];
        uint8_t pad[9] = {0};
        int64_t len = 0;
        tfm_tape tape = {0};
        if (tfm_tape_init(&tape, 16 << 20, 1024) ||
            tfm_greedy_decode(&tr.model, &tape, src, pad, 1, 9, 20, out, &len)) {
            fprintf(stderr, "train_copy: %s\n", tfm_last_error());
            rc = 1;
        } else {
            printf("copy of 6 4 7 4 8 12 5 9:");
            for (int64_t i = 0; i < len; i++) printf(" %d", out[i]);
            printf("\n");
        }
        tfm_tape_free(&tape);
    }
    tfm_trainer_free(&tr);
    tfm_toy_source_free(&data);
    return rc;
}
