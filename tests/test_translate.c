/* Decoding and the corpus pipeline: beam 1 equals greedy, beam search is
 * deterministic, and the generated numbers corpus trains through the CLI
 * (BPE, batching, validation) to a BLEU threshold on its test split; batches
 * translated on several threads give what one thread gives. */
#include <stdlib.h>
#include <string.h>

#include "tfm/decode.h"
#include "tfm/nn.h"
#include "util_test.h"

static void random_model(tfm_model *m, uint64_t seed) {
    tfm_model_config c;
    tfm_model_config_default(&c);
    c.vocab = 23;
    c.d_model = 16;
    c.n_heads = 2;
    c.d_ff = 32;
    c.enc_layers = c.dec_layers = 2;
    c.max_len = 64;
    ck_assert_int_eq(tfm_model_init(m, &c), 0);
    tfm_model_init_weights(m, seed);
}

START_TEST(beam_one_equals_greedy) {
    tfm_model m;
    random_model(&m, 5);
    tfm_tape t;
    ck_assert_int_eq(tfm_tape_init(&t, 64 << 20, 64), 0);
    enum { B = 4, S = 6, MAX = 12 };
    int32_t src[B * S];
    uint8_t pad[B * S];
    for (int i = 0; i < B * S; i++) {
        int len = 3 + i / S;
        int j = i % S;
        src[i] = j < len ? 3 + (i * 7) % 20 : j == len ? TFM_EOS_ID : TFM_PAD_ID;
        pad[i] = src[i] == TFM_PAD_ID;
    }
    int32_t g[B * MAX], b1[B * MAX];
    int64_t gl[B], bl[B];
    ck_assert_int_eq(tfm_greedy_decode(&m, &t, src, pad, B, S, MAX, g, gl), 0);
    ck_assert_int_eq(tfm_beam_decode(&m, &t, src, pad, B, S, 1, 0.6f, MAX, b1, bl), 0);
    for (int i = 0; i < B; i++) ck_assert_int_eq(gl[i], bl[i]);
    ck_assert_msg(memcmp(g, b1, sizeof g) == 0, "beam 1 differs from greedy");
    /* beam 4: deterministic, every output ends in </s> or fills max */
    int32_t b4[B * MAX], b4b[B * MAX];
    int64_t l4[B], l4b[B];
    ck_assert_int_eq(tfm_beam_decode(&m, &t, src, pad, B, S, 4, 0.6f, MAX, b4, l4), 0);
    ck_assert_int_eq(tfm_beam_decode(&m, &t, src, pad, B, S, 4, 0.6f, MAX, b4b, l4b), 0);
    ck_assert_msg(memcmp(b4, b4b, sizeof b4) == 0, "beam search is not deterministic");
    for (int b = 0; b < B; b++) {
        ck_assert(l4[b] >= 0 && l4[b] <= MAX);
        if (l4[b] < MAX) ck_assert_int_eq(b4[b * MAX + l4[b]], TFM_EOS_ID);
        for (int64_t j = 0; j < l4[b]; j++) ck_assert_int_gt(b4[b * MAX + j], TFM_EOS_ID);
    }
    ck_assert_int_eq(t.arena.used, 0); /* decoding leaves the arena as it found it */
    tfm_tape_free(&t);
    tfm_model_free(&m);
}
END_TEST

START_TEST(numbers_corpus_trains_to_bleu) {
    const char *dir = tfm_test_tmpdir("numbers");
    char cmd[4096], out[65536];
    snprintf(cmd, sizeof cmd, "%s data numbers --out %s/data --train 3000 --valid 100 --test 200",
             tfm_test_bin(), dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    snprintf(
        cmd, sizeof cmd,
        "%s train --src-train %s/data/train.de --tgt-train %s/data/train.en "
        "--src-valid %s/data/valid.de --tgt-valid %s/data/valid.en --save %s/run "
        "--bpe-merges 200 --batch-tokens 1024 --steps 300 --valid-every 300 --warmup 100 "
        "--share-emb --d-model 32 --heads 2 --d-ff 64 --layers 1 --dropout 0 --threads 1 --quiet",
        tfm_test_bin(), dir, dir, dir, dir, dir);
    int rc = tfm_test_run(cmd, out, sizeof out);
    printf("%s", out);
    ck_assert_msg(rc == 0, "training failed: %s", out);
    ck_assert_msg(strstr(out, "best_bleu=") != NULL, "no summary line: %s", out);
    snprintf(cmd, sizeof cmd,
             "%s translate --model %s/run --beam 3 < %s/data/test.de > %s/hyp.txt && %s bleu "
             "%s/data/test.en < %s/hyp.txt",
             tfm_test_bin(), dir, dir, dir, tfm_test_bin(), dir, dir);
    rc = tfm_test_run(cmd, out, sizeof out);
    ck_assert_msg(rc == 0, "translate/bleu failed: %s", out);
    const char *eq = strstr(out, " = ");
    ck_assert_ptr_nonnull(eq);
    double bleu = atof(eq + 3);
    printf("  numbers de->en test BLEU after 300 steps: %.2f\n", bleu);
    ck_assert_msg(bleu >= 50.0, "test BLEU %.2f below 50", bleu);
    /* batches decoded on two threads at once (one per thread) translate as
     * one thread does, batch by batch: greedy, beam with n-best lists, an
     * ensemble, and under --profile (batches one at a time) */
    const char *modes[] = {"--beam 1", "--beam 3 --n-best 2", "--beam 2 --model %s/run",
                           "--beam 3 --profile"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        char mode[700];
        snprintf(mode, sizeof mode, modes[i], dir);
        for (int threads = 1; threads <= 2; threads++) {
            snprintf(cmd, sizeof cmd,
                     "%s translate --model %s/run %s --batch 16 --threads %d --quiet "
                     "< %s/data/test.de > %s/t%d.txt",
                     tfm_test_bin(), dir, mode, threads, dir, dir, threads);
            rc = tfm_test_run(cmd, out, sizeof out);
            ck_assert_msg(rc == 0, "%s: %s", cmd, out);
        }
        /* (the profile's line, with its times, is left out) */
        snprintf(cmd, sizeof cmd,
                 "test -s %s/t1.txt && grep -v '^profile: ' %s/t1.txt > %s/c1.txt && "
                 "grep -v '^profile: ' %s/t2.txt | cmp %s/c1.txt -",
                 dir, dir, dir, dir, dir);
        ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s: 2 threads differ: %s", mode,
                      out);
    }
    /* the run directory has what translate and resume need */
    const char *files[] = {"best.tfm",   "bpe.codes", "vocab.txt",
                           "config.txt", "train.log", "metrics.csv"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(cmd, sizeof cmd, "test -s %s/run/%s", dir, files[i]);
        ck_assert_msg(tfm_test_run(cmd, NULL, 0) == 0, "missing %s", files[i]);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("translate");
    TCase *tc = tcase_create("translate");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, beam_one_equals_greedy);
    tcase_add_test(tc, numbers_corpus_trains_to_bleu);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
