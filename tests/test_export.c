/* Export to the MarianMT layout: round trips through tfm_export_load are
 * bit-exact, translating from an export gives the checkpoint's output,
 * unrepresentable models are refused, malformed exports give one-line errors
 * naming the tensor, and (when PyTorch is installed) tests/verify_export.py
 * matches tfm's logits and greedy tokens with its own PyTorch model. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tfm/checkpoint.h"
#include "tfm/export.h"
#include "tfm/safetensors.h"
#include "util_test.h"

static char out_buf[1 << 16];

/* Runs a shell command built from fmt; output in out_buf; exit status. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return tfm_test_run(cmd, out_buf, sizeof out_buf);
}

/* out_buf into buf (which must be large enough). */
static void copy_out(char *buf, size_t cap) {
    size_t n = strlen(out_buf);
    ck_assert_msg(n < cap, "output of %zu bytes does not fit", n);
    memcpy(buf, out_buf, n + 1);
}

static void rm_rf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* A copy-task model trained for a few steps in dir/run. */
static void train_toy(const char *dir, const char *extra) {
    int rc = run(
        "%s train --task copy --steps 40 --save %s/run --d-model 32 --heads 2 --d-ff 64 --layers 1 "
        "--vocab 9 --max-len 6 --batch 16 --warmup 20 --dropout 0 --label-smoothing 0 --threads 1 "
        "--quiet %s",
        tfm_test_bin(), dir, extra);
    ck_assert_msg(rc == 0, "toy training failed: %s", out_buf);
}

/* A numbers-corpus model (BPE, vocab.txt) trained for a few steps in dir/run;
 * extra: more flags. */
static void train_text(const char *dir, int share, const char *extra) {
    int rc =
        run("%s data numbers --out %s/data --train 1000 --valid 20 --test 20", tfm_test_bin(), dir);
    ck_assert_msg(rc == 0, "data numbers failed: %s", out_buf);
    rc = run(
        "%s train --src-train %s/data/train.de --tgt-train %s/data/train.en --src-valid "
        "%s/data/valid.de "
        "--tgt-valid %s/data/valid.en --save %s/run --bpe-merges 80 --batch-tokens 512 --steps 30 "
        "--valid-every 30 --valid-max 10 --warmup 10 --d-model 32 --heads 2 --d-ff 64 --layers 1 "
        "--threads 1 --quiet %s %s",
        tfm_test_bin(), dir, dir, dir, dir, dir, share ? "--share-emb" : "", extra);
    ck_assert_msg(rc == 0, "text training failed: %s", out_buf);
}

static void export_cli(const char *model, const char *out) {
    int rc = run("%s export --model %s --out %s", tfm_test_bin(), model, out);
    ck_assert_msg(rc == 0, "export failed: %s", out_buf);
}

/* Every parameter of the export equals the checkpoint's, bit for bit. */
static void check_round_trip(const char *ckpt_file, const char *export_dir, const char *kind) {
    tfm_checkpoint ck;
    ck_assert_msg(tfm_checkpoint_read(ckpt_file, &ck) == 0, "%s", tfm_last_error());
    tfm_model a, b;
    ck_assert_msg(tfm_model_from_checkpoint(&a, &ck) == 0, "%s", tfm_last_error());
    tfm_kv meta;
    tfm_kv_init(&meta);
    ck_assert_msg(tfm_export_load(export_dir, &b, &meta) == 0, "%s", tfm_last_error());
    ck_assert_str_eq(tfm_kv_get(&meta, "data.kind"), kind);
    ck_assert_int_eq(a.cfg.vocab, b.cfg.vocab);
    ck_assert_int_eq(a.cfg.d_model, b.cfg.d_model);
    ck_assert_int_eq(a.cfg.n_heads, b.cfg.n_heads);
    ck_assert_int_eq(a.cfg.d_ff, b.cfg.d_ff);
    ck_assert_int_eq(a.cfg.enc_layers, b.cfg.enc_layers);
    ck_assert_int_eq(a.cfg.dec_layers, b.cfg.dec_layers);
    ck_assert_int_eq(a.cfg.max_len, b.cfg.max_len);
    ck_assert_int_eq(a.cfg.pre_ln, b.cfg.pre_ln);
    ck_assert_int_eq(a.cfg.share_src_emb, b.cfg.share_src_emb);
    ck_assert_int_eq(a.cfg.decoder_start, b.cfg.decoder_start);
    ck_assert(a.cfg.ln_eps == b.cfg.ln_eps && a.cfg.dropout == b.cfg.dropout &&
              a.cfg.attn_dropout == b.cfg.attn_dropout && a.cfg.ffn_dropout == b.cfg.ffn_dropout);
    ck_assert_int_eq(a.params.count, b.params.count);
    ck_assert_int_eq(a.params.total_n, b.params.total_n);
    for (int64_t i = 0; i < a.params.count; i++) {
        const tfm_tensor *x = a.params.items[i], *y = b.params.items[i];
        ck_assert_str_eq(x->name, y->name);
        ck_assert_int_eq(x->n, y->n);
        ck_assert_msg(memcmp(x->data, y->data, (size_t)x->n * sizeof(float)) == 0, "%s differs",
                      x->name);
    }
    tfm_model_free(&a);
    tfm_model_free(&b);
    tfm_kv_free(&meta);
    tfm_checkpoint_free(&ck);
}

/* Translation of input through tfm translate --model model into buf. */
static void translate(const char *model, const char *input, char *buf, size_t cap) {
    int rc =
        run("%s translate --model %s --input %s --threads 1 --quiet", tfm_test_bin(), model, input);
    ck_assert_msg(rc == 0, "translate --model %s failed: %s", model, out_buf);
    copy_out(buf, cap);
}

START_TEST(toy_export_round_trip_and_translate) {
    const char *dir = tfm_test_tmpdir("export-toy");
    char run_dir[512], exp[512], ck[512], in[512];
    snprintf(run_dir, sizeof run_dir, "%s/run", dir);
    snprintf(exp, sizeof exp, "%s/export", dir);
    snprintf(ck, sizeof ck, "%s/run/best.tfm", dir);
    train_toy(dir, "");
    export_cli(run_dir, exp);
    struct stat st;
    char p[600];
    const char *files[] = {"model.safetensors", "config.json", "generation_config.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", exp, files[i]);
        ck_assert_msg(stat(p, &st) == 0, "%s missing", p);
    }
    snprintf(p, sizeof p, "%s/tokenizer.json", exp);
    ck_assert_msg(stat(p, &st) != 0, "a toy export has no tokenizer");
    /* a zero-start model (the default): the pad-last layout of tfm/export.h,
     * 9 ids of ours and the zero row 9 */
    const char *keys[] = {"\"vocab_size\": 10,", "\"pad_token_id\": 9,",
                          "\"decoder_start_token_id\": 9,", "\"vocab\": 9,",
                          "\"decoder_start\": \"zero\""};
    for (int i = 0; i < 5; i++)
        ck_assert_msg(run("grep -qF '%s' %s/config.json", keys[i], exp) == 0, "no %s", keys[i]);
    ck_assert_int_eq(
        run("grep -qF '\"decoder_start_token_id\": 9,' %s/generation_config.json", exp), 0);
    /* the run directory's newest checkpoint: best.tfm when present */
    if (stat(ck, &st) != 0) {
        ck_assert_int_eq(run("ls %s/run/checkpoint-*.tfm | tail -1 | tr -d '\\n'", dir), 0);
        copy_out(ck, sizeof ck);
    }
    check_round_trip(ck, exp, "toy");
    snprintf(in, sizeof in, "%s/in.txt", dir);
    write_text(in, "3 4 5\n8 7 6 5\n4\n5 5 3 8\n");
    char a[4096], b[4096];
    translate(run_dir, in, a, sizeof a);
    translate(exp, in, b, sizeof b);
    ck_assert_int_eq(run("printf '%%s' '%s' | wc -l", a), 0);
    ck_assert_int_eq(atoi(out_buf), 4);
    ck_assert_str_eq(a, b);
    rm_rf(dir);
}
END_TEST

/* legacy: a run with the conventions before 2026-11-29 (decoder start <s>,
 * vocabulary without merge symbols) */
static void text_case(int share, int legacy) {
    const char *dir = tfm_test_tmpdir("export-text");
    char run_dir[512], exp[512], in[512], p[600];
    snprintf(run_dir, sizeof run_dir, "%s/run", dir);
    snprintf(exp, sizeof exp, "%s/export", dir);
    /* the new model also drops no FFN activations and starts its embeddings
     * from a normal distribution (the export carries the first) */
    train_text(dir, share,
               legacy ? "--decoder-start bos --exact-vocab=false"
                      : "--ffn-dropout 0 --emb-init normal");
    /* from the checkpoint file: the tokenizer is found beside it */
    snprintf(p, sizeof p, "%s/best.tfm", run_dir);
    export_cli(p, exp);
    /* a legacy vocabulary lacks merge symbols that later merges start from:
     * Hugging Face's BPE cannot reproduce it, so no tokenizer.json; tfm train
     * now adds them (test_hf_tokenizer checks the file itself) */
    ck_assert_msg(!strstr(out_buf, "tokenizer.json and tokenizer_config.json are not written") ==
                      !legacy,
                  "%s", out_buf);
    check_round_trip(p, exp, "text");
    const char *files[] = {"bpe.codes", "vocab.txt", "tokenizer.json", "tokenizer_config.json"};
    struct stat st;
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", exp, files[i]);
        if (i >= 2) {
            ck_assert_msg((stat(p, &st) != 0) == legacy, "%s %s", p,
                          legacy ? "written" : "missing");
            continue;
        }
        ck_assert_msg(stat(p, &st) == 0, "%s missing", p);
        ck_assert_msg(run("cmp %s/%s %s", run_dir, files[i], p) == 0, "%s differs: %s", p, out_buf);
    }
    if (!legacy) {
        /* pad-last: "<pad>" is the id after ours (the model's zero row), ours renamed */
        ck_assert_int_eq(run("wc -l < %s/vocab.txt", exp), 0);
        long V = atol(out_buf);
        ck_assert_msg(run("grep -qF '\"<pad>\": %ld' %s/tokenizer.json", V, exp) == 0 &&
                          run("grep -qF '\"<tfm_pad>\": 0' %s/tokenizer.json", exp) == 0 &&
                          run("grep -qF '\"vocab_size\": %ld,' %s/config.json", V + 1, exp) == 0,
                      "pad-last layout missing (vocabulary %ld)", V);
    }
    /* ffn_dropout: in the tfm section only when set, and as HF's activation_dropout */
    ck_assert_int_eq(run("grep -Eq '\"ffn_dropout\": 0\\.0,?$' %s/config.json", exp),
                     (legacy ? 1 : 0));
    ck_assert_int_eq(
        run("grep -Eq '\"activation_dropout\": %s,' %s/config.json", legacy ? "0.1" : "0.0", exp),
        0);
    ck_assert_int_eq(run("grep -c '\"share_encoder_decoder_embeddings\": %s' %s/config.json",
                         share ? "true" : "false", exp),
                     0);
    snprintf(in, sizeof in, "%s/data/test.de", dir);
    char a[1 << 14], b[1 << 14];
    translate(run_dir, in, a, sizeof a);
    translate(exp, in, b, sizeof b);
    ck_assert(strlen(a) > 20);
    ck_assert_str_eq(a, b);
    if (legacy) {
        /* an export written before the setting existed has no
         * tfm.decoder_start: it loads as bos and translates as before */
        ck_assert_int_eq(
            run("perl -0pi -e 's/,\\s*\"decoder_start\": \"bos\"//' %s/config.json", exp), 0);
        ck_assert_int_ne(run("grep -q decoder_start\\\" %s/config.json", exp), 0);
        translate(exp, in, b, sizeof b);
        ck_assert_str_eq(a, b);
    }
    rm_rf(dir);
}

START_TEST(text_export_round_trip_and_translate) { text_case(0, 0); }
END_TEST

START_TEST(text_export_shared_embedding_legacy) { text_case(1, 1); }
END_TEST

START_TEST(refuses_unrepresentable_models_and_busy_out) {
    const char *dir = tfm_test_tmpdir("export-refuse");
    char exp[512];
    snprintf(exp, sizeof exp, "%s/export", dir);
    /* pre-LN */
    train_toy(dir, "--pre-ln");
    ck_assert_int_ne(run("%s export --model %s/run --out %s", tfm_test_bin(), dir, exp), 0);
    ck_assert_msg(strstr(out_buf, "pre-LN") && strstr(out_buf, "cannot export"), "%s", out_buf);
    struct stat st;
    ck_assert_msg(stat(exp, &st) != 0, "nothing is created for a refused model");
    rm_rf(dir);
    /* another epsilon */
    dir = tfm_test_tmpdir("export-refuse");
    snprintf(exp, sizeof exp, "%s/export", dir);
    train_toy(dir, "--ln-eps 1e-6");
    ck_assert_int_ne(run("%s export --model %s/run --out %s", tfm_test_bin(), dir, exp), 0);
    ck_assert_msg(strstr(out_buf, "epsilon") && strstr(out_buf, "1e-06"), "%s", out_buf);
    rm_rf(dir);
    /* a non-empty --out needs --force */
    dir = tfm_test_tmpdir("export-refuse");
    snprintf(exp, sizeof exp, "%s/export", dir);
    train_toy(dir, "");
    ck_assert_int_eq(mkdir(exp, 0777), 0);
    char p[600];
    snprintf(p, sizeof p, "%s/keep.txt", exp);
    write_text(p, "x\n");
    ck_assert_int_ne(run("%s export --model %s/run --out %s", tfm_test_bin(), dir, exp), 0);
    ck_assert_msg(strstr(out_buf, exp) && strstr(out_buf, "not empty"), "%s", out_buf);
    ck_assert_int_eq(run("%s export --model %s/run --out %s --force", tfm_test_bin(), dir, exp), 0);
    ck_assert_int_eq(stat(p, &st), 0);
    /* --out is a file */
    ck_assert_int_ne(run("%s export --model %s/run --out %s", tfm_test_bin(), dir, p), 0);
    ck_assert_msg(strstr(out_buf, "not a directory"), "%s", out_buf);
    rm_rf(dir);
}
END_TEST

/* ---- malformed exports ---------------------------------------------------------- */

/* A small in-memory model saved as an export in a fresh directory. */
static const char *make_export_start(int share, int start) {
    tfm_model_config c;
    tfm_model_config_default(&c);
    c.decoder_start = start;
    c.vocab = 11;
    c.d_model = 8;
    c.n_heads = 2;
    c.d_ff = 12;
    c.enc_layers = 1;
    c.dec_layers = 2;
    c.max_len = 10;
    c.share_src_emb = share;
    tfm_model m;
    ck_assert_msg(tfm_model_init(&m, &c) == 0, "%s", tfm_last_error());
    tfm_model_init_weights(&m, 7);
    const char *dir = tfm_test_tmpdir("export-bad");
    ck_assert_msg(tfm_export_save(&m, "toy", dir) == 0, "%s", tfm_last_error());
    tfm_model_free(&m);
    return dir;
}

/* the reader's strictness, on the layout of models that start from <s> */
static const char *make_export(int share) { return make_export_start(share, TFM_START_BOS); }

typedef enum { MUT_DROP, MUT_SHAPE, MUT_DTYPE, MUT_EXTRA, MUT_EDIT, MUT_LAST_ROW } mutation;

/* Rewrites dir/model.safetensors (a valid file) with one tensor changed. */
static void rewrite(const char *dir, const char *target, mutation how) {
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    tfm_st_file f;
    ck_assert_msg(tfm_safetensors_open(path, &f) == 0, "%s", tfm_last_error());
    tfm_st_tensor *ts = calloc((size_t)f.n_tensors + 1, sizeof *ts);
    float extra[3] = {1, 2, 3};
    float *edited = NULL;
    int64_t n = 0, found = 0;
    for (int64_t i = 0; i < f.n_tensors; i++) {
        tfm_st_tensor t = f.tensors[i];
        if (strcmp(t.name, target)) {
            ts[n++] = t;
            continue;
        }
        found = 1;
        if (how == MUT_DROP) continue;
        if (how == MUT_SHAPE) { /* (a, b) -> (b, a) */
            int64_t s = t.shape[0];
            t.shape[0] = t.shape[1];
            t.shape[1] = s;
        } else if (how == MUT_DTYPE) { /* same bytes read as twice as many F16 */
            t.dtype = TFM_ST_F16;
            t.shape[t.ndim - 1] *= 2;
        } else if (how == MUT_EDIT || how == MUT_LAST_ROW) {
            edited = malloc((size_t)t.nbytes);
            memcpy(edited, t.data, (size_t)t.nbytes);
            /* the second value, or the last one (in the last row); x / 2 + 1
             * changes any value but 2, -1e9 included */
            float *x = &edited[how == MUT_EDIT ? 1 : t.nbytes / 4 - 1];
            *x = *x * 0.5f + 1.0f;
            t.data = edited;
        }
        ts[n++] = t;
    }
    ck_assert_msg(found, "no tensor %s", target);
    if (how == MUT_EXTRA)
        ts[n++] = (tfm_st_tensor){
            .name = target, .dtype = TFM_ST_F32, .ndim = 1, .shape = {3}, .data = extra};
    /* write beside, then rename: the original's bytes are still in use */
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s/new.safetensors", dir);
    if (how == MUT_EXTRA) ts[n - 1].name = "model.encoder.embed_positions.weight";
    ck_assert_msg(tfm_safetensors_write(tmp, ts, n, NULL, 0) == 0, "%s", tfm_last_error());
    tfm_safetensors_close(&f);
    ck_assert_int_eq(rename(tmp, path), 0);
    free(ts);
    free(edited);
}

/* Rewrites the header so that `target` points at the first tensor's bytes. */
static void make_overlap(const char *dir, const char *target) {
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    tfm_st_file f;
    ck_assert_msg(tfm_safetensors_open(path, &f) == 0, "%s", tfm_last_error());
    size_t cap = 1 << 16, len = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int64_t i = 0; i < f.n_tensors; i++) {
        const tfm_st_tensor *t = &f.tensors[i];
        int64_t begin = t->offset, end = t->offset + t->nbytes;
        if (!strcmp(t->name, target)) {
            begin = 0;
            end = t->nbytes;
        }
        len +=
            (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", t->name);
        for (int d = 0; d < t->ndim; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "",
                                    (long long)t->shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%lld,%lld]}",
                                (long long)begin, (long long)end);
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    ck_assert(len < cap);
    uint64_t n = len;
    FILE *out = fopen(path, "wb"); /* f holds its own copy of the bytes */
    ck_assert_ptr_nonnull(out);
    fwrite(&n, 8, 1, out);
    fwrite(h, 1, len, out);
    fwrite(f.buffer, 1, f.buffer_len, out);
    fclose(out);
    tfm_safetensors_close(&f);
    free(h);
}

/* tfm_export_load fails with a message containing each of the parts, on one
 * line, and tfm translate reports the same. */
static void expect_load_error(const char *dir, const char *part1, const char *part2) {
    tfm_model m;
    tfm_kv meta;
    tfm_kv_init(&meta);
    ck_assert_msg(tfm_export_load(dir, &m, &meta) != 0, "loading %s should fail (%s)", dir, part1);
    const char *e = tfm_last_error();
    ck_assert_msg(strstr(e, part1) && (!part2 || strstr(e, part2)), "error '%s' lacks '%s' / '%s'",
                  e, part1, part2 ? part2 : "");
    ck_assert_msg(!strchr(e, '\n'), "error '%s' is not one line", e);
    tfm_kv_free(&meta);
    ck_assert_int_ne(run("echo 3 | %s translate --model %s --threads 1", tfm_test_bin(), dir), 0);
    ck_assert_msg(!strncmp(out_buf, "tfm: ", 5) && strstr(out_buf, part1), "translate said: %s",
                  out_buf);
    ck_assert_msg(strchr(out_buf, '\n') == out_buf + strlen(out_buf) - 1, "not one line: %s",
                  out_buf);
}

START_TEST(malformed_exports_give_one_line_errors) {
    const char *dir;
    char p[600];
    /* sanity: the unmodified export loads */
    dir = make_export(1);
    tfm_model m;
    ck_assert_msg(tfm_export_load(dir, &m, NULL) == 0, "%s", tfm_last_error());
    tfm_model_free(&m);
    /* truncated model.safetensors */
    ck_assert_int_eq(run("truncate -s -100 %s/model.safetensors", dir), 0);
    expect_load_error(dir, "model.safetensors", "out of bounds");
    rm_rf(dir);
    /* trailing garbage */
    dir = make_export(1);
    ck_assert_int_eq(run("printf 'garbage' >> %s/model.safetensors", dir), 0);
    expect_load_error(dir, "model.safetensors", "7 bytes after the end of the last tensor");
    rm_rf(dir);
    /* bad JSON in config.json */
    dir = make_export(1);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, "{\"model_type\": \"marian\", \"d_model\": 8,}\n");
    expect_load_error(dir, "config.json", NULL);
    rm_rf(dir);
    /* a config.json field of the wrong type */
    dir = make_export(1);
    ck_assert_int_eq(run("sed -i 's/\"d_model\": 8,/\"d_model\": \"8\",/' %s/config.json", dir), 0);
    expect_load_error(dir, "config.json", "'d_model': expected an integer, got a string");
    rm_rf(dir);
    /* overlapping offsets */
    dir = make_export(1);
    make_overlap(dir, "final_logits_bias");
    expect_load_error(dir, "final_logits_bias", "overlap");
    rm_rf(dir);
    /* wrong dtype */
    dir = make_export(1);
    rewrite(dir, "model.decoder.layers.1.fc1.bias", MUT_DTYPE);
    expect_load_error(dir, "tensor model.decoder.layers.1.fc1.bias has dtype F16, expected F32",
                      NULL);
    rm_rf(dir);
    /* wrong shape */
    dir = make_export(1);
    rewrite(dir, "model.encoder.layers.0.fc1.weight", MUT_SHAPE);
    expect_load_error(
        dir, "tensor model.encoder.layers.0.fc1.weight has shape (8, 12), expected (12, 8)", NULL);
    rm_rf(dir);
    /* missing tensor */
    dir = make_export(1);
    rewrite(dir, "model.decoder.layers.1.encoder_attn.k_proj.bias", MUT_DROP);
    expect_load_error(dir, "missing tensor model.decoder.layers.1.encoder_attn.k_proj.bias", NULL);
    rm_rf(dir);
    dir = make_export(0);
    rewrite(dir, "model.encoder.embed_tokens.weight", MUT_DROP);
    expect_load_error(dir, "missing tensor model.encoder.embed_tokens.weight", NULL);
    rm_rf(dir);
    /* unexpected tensor */
    dir = make_export(0);
    rewrite(dir, "final_logits_bias", MUT_EXTRA);
    expect_load_error(dir, "unexpected tensor model.encoder.embed_positions.weight", NULL);
    rm_rf(dir);
    /* a tied copy that differs, and a non-zero output bias */
    dir = make_export(1);
    rewrite(dir, "lm_head.weight", MUT_EDIT);
    expect_load_error(dir, "lm_head.weight differs from model.shared.weight", NULL);
    rm_rf(dir);
    dir = make_export(1);
    rewrite(dir, "final_logits_bias", MUT_EDIT);
    expect_load_error(dir, "final_logits_bias is not zero", NULL);
    rm_rf(dir);
    /* a config that is not ours, or describes another architecture */
    dir = make_export(1);
    ck_assert_int_eq(
        run("sed -i 's/\"normalize_before\": false/\"normalize_before\": true/' %s/config.json",
            dir),
        0);
    expect_load_error(dir, "config.json", "normalize_before");
    rm_rf(dir);
    dir = make_export(1);
    ck_assert_int_eq(run("sed -i 's/\"tfm\":/\"other\":/' %s/config.json", dir), 0);
    expect_load_error(dir, "config.json", "no \"tfm\" section");
    rm_rf(dir);
    /* zero-start layout: the start row must be zero, the ids must agree */
    dir = make_export_start(0, TFM_START_ZERO);
    ck_assert_msg(tfm_export_load(dir, &m, NULL) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(m.cfg.vocab, 11);
    ck_assert_int_eq(m.cfg.decoder_start, TFM_START_ZERO);
    tfm_model_free(&m);
    rewrite(dir, "model.decoder.embed_tokens.weight", MUT_LAST_ROW);
    expect_load_error(dir, "model.decoder.embed_tokens.weight: row 11", "not zero");
    rm_rf(dir);
    dir = make_export_start(1, TFM_START_ZERO);
    ck_assert_int_eq(run("sed -i 's/\"decoder_start_token_id\": 11/\"decoder_start_token_id\": 1/' "
                         "%s/config.json",
                         dir),
                     0);
    expect_load_error(dir, "decoder_start_token_id is 1", "zero row 11");
    rm_rf(dir);
    dir = make_export_start(1, TFM_START_ZERO);
    ck_assert_int_eq(
        run("sed -i 's/\"decoder_start\": \"zero\"/\"decoder_start\": \"one\"/' %s/config.json",
            dir),
        0);
    expect_load_error(dir, "tfm.decoder_start is \"one\"", NULL);
    rm_rf(dir);
    dir = make_export_start(1, TFM_START_ZERO);
    rewrite(dir, "final_logits_bias", MUT_EDIT);
    expect_load_error(dir, "final_logits_bias: entry 1 is", NULL);
    rm_rf(dir);
    /* a missing model.safetensors in a directory with a config: not an export,
     * so train_load_model looks for checkpoints; tfm_export_load names the file */
    dir = make_export(1);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    ck_assert_int_eq(unlink(p), 0);
    ck_assert_int_ne(tfm_export_load(dir, &m, NULL), 0);
    ck_assert_msg(strstr(tfm_last_error(), p), "%s", tfm_last_error());
    rm_rf(dir);
}
END_TEST

START_TEST(export_refuses_in_library) {
    tfm_model_config c;
    tfm_model_config_default(&c);
    ck_assert_int_eq(tfm_export_check(&c), 0);
    c.pre_ln = 1;
    ck_assert_int_ne(tfm_export_check(&c), 0);
    ck_assert_ptr_nonnull(strstr(tfm_last_error(), "pre-LN"));
    c.pre_ln = 0;
    c.ln_eps = 1e-6f;
    ck_assert_int_ne(tfm_export_check(&c), 0);
    ck_assert_ptr_nonnull(strstr(tfm_last_error(), "epsilon"));
}
END_TEST

/* ---- PyTorch cross-check ---------------------------------------------------------- */

START_TEST(verify_export_py_matches_pytorch) {
    if (run("/usr/bin/python3 -c 'import torch, numpy' ") != 0)
        tfm_test_skip("no PyTorch/numpy for /usr/bin/python3 (apt-get install python3-torch "
                      "python3-numpy)");
    const char *dir = tfm_test_tmpdir("export-verify");
    char model[512];
    train_toy(dir, "");
    snprintf(model, sizeof model, "%s/run", dir);
    int rc = run("%s export --model %s --out %s/toy --dump-logits %s/toy.bin", tfm_test_bin(),
                 model, dir, dir);
    ck_assert_msg(rc == 0, "%s", out_buf);
    rc = run("/usr/bin/python3 %s %s/toy %s/toy.bin", tfm_test_path("tests/verify_export.py"), dir,
             dir);
    printf("verify_export (toy):\n%s", out_buf);
    ck_assert_msg(rc == 0 && strstr(out_buf, "greedy tokens: identical") &&
                      strstr(out_buf, " ok\n") && strstr(out_buf, "(the decoder start) are zero"),
                  "verify_export.py failed on the toy model:\n%s", out_buf);
    rm_rf(dir);
    /* a model that starts from <s> (exports before 2026-11-29) */
    dir = tfm_test_tmpdir("export-verify");
    train_toy(dir, "--decoder-start bos");
    snprintf(model, sizeof model, "%s/run", dir);
    rc = run("%s export --model %s --out %s/toy --dump-logits %s/toy.bin", tfm_test_bin(), model,
             dir, dir);
    ck_assert_msg(rc == 0, "%s", out_buf);
    rc = run("/usr/bin/python3 %s %s/toy %s/toy.bin", tfm_test_path("tests/verify_export.py"), dir,
             dir);
    printf("verify_export (toy, decoder start <s>):\n%s", out_buf);
    ck_assert_msg(rc == 0 && strstr(out_buf, "greedy tokens: identical") &&
                      strstr(out_buf, " ok\n"),
                  "verify_export.py failed on the <s>-start toy model:\n%s", out_buf);
    rm_rf(dir);
    dir = tfm_test_tmpdir("export-verify");
    train_text(dir, 1, "");
    snprintf(model, sizeof model, "%s/run", dir);
    rc = run("%s export --model %s --out %s/text --dump-logits %s/text.bin", tfm_test_bin(), model,
             dir, dir);
    ck_assert_msg(rc == 0, "%s", out_buf);
    rc = run("/usr/bin/python3 %s %s/text %s/text.bin", tfm_test_path("tests/verify_export.py"),
             dir, dir);
    printf("verify_export (text):\n%s", out_buf);
    ck_assert_msg(rc == 0 && strstr(out_buf, "greedy tokens: identical") &&
                      strstr(out_buf, " ok\n"),
                  "verify_export.py failed on the text model:\n%s", out_buf);
    /* and it notices a wrong model: a perturbed weight changes the logits */
    ck_assert_int_eq(run("%s export --model %s --out %s/text --force --dump-logits %s/text.bin",
                         tfm_test_bin(), model, dir, dir),
                     0);
    char text_dir[600];
    snprintf(text_dir, sizeof text_dir, "%s/text", dir);
    rewrite(text_dir, "model.decoder.layers.0.fc2.bias", MUT_EDIT);
    rc = run("/usr/bin/python3 %s %s/text %s/text.bin", tfm_test_path("tests/verify_export.py"),
             dir, dir);
    ck_assert_msg(rc != 0 && strstr(out_buf, "MISMATCH"), "a perturbed export passed:\n%s",
                  out_buf);
    rm_rf(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("export");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, export_refuses_in_library);
    tcase_add_test(tc, malformed_exports_give_one_line_errors);
    tcase_add_test(tc, toy_export_round_trip_and_translate);
    tcase_add_test(tc, text_export_round_trip_and_translate);
    tcase_add_test(tc, text_export_shared_embedding_legacy);
    tcase_add_test(tc, refuses_unrepresentable_models_and_busy_out);
    tcase_add_test(tc, verify_export_py_matches_pytorch);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
