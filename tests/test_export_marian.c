/* Native Marian export: model.npz is a valid zip (our own reader checks every
 * header and CRC, and Python's zipfile and numpy.load read it when numpy is
 * installed) holding exactly Marian's parameter names and shapes, with the
 * model's values (weights transposed) bit for bit; special:model.yml,
 * vocab.yml and decoder.yml say what Marian needs; unrepresentable models
 * are refused, by the library and by `tfm export --format marian`. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tfm/export.h"
#include "tfm/json.h"
#include "util_test.h"

static char out_buf[1 << 16];

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return tfm_test_run(cmd, out_buf, sizeof out_buf);
}

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | rd16(p + 2) << 16; }

typedef struct {
    char name[128];
    char descr[8];
    int ndim;
    int64_t shape[4];
    const uint8_t *data;
    size_t bytes;
} npy_entry;

/* Parses a stored zip of .npy files, checking local headers against the
 * central directory, CRCs, npy headers (v1.0, 64-byte aligned) and sizes. */
static int64_t read_npz(const uint8_t *z, size_t n, npy_entry *out, int64_t cap) {
    ck_assert_uint_ge(n, 22);
    const uint8_t *end = z + n - 22;
    ck_assert_uint_eq(rd32(end), 0x06054b50u);
    int64_t count = rd16(end + 10);
    ck_assert_int_eq(count, rd16(end + 8));
    size_t cd = rd32(end + 16), cd_size = rd32(end + 12);
    ck_assert_uint_eq(cd + cd_size, n - 22);
    ck_assert_int_le(count, cap);
    const uint8_t *c = z + cd;
    for (int64_t i = 0; i < count; i++) {
        ck_assert_uint_eq(rd32(c), 0x02014b50u);
        uint32_t crc = rd32(c + 16), csize = rd32(c + 20), usize = rd32(c + 24);
        size_t fl = rd16(c + 28), off = rd32(c + 42);
        ck_assert_uint_eq(rd16(c + 10), 0); /* stored */
        ck_assert_uint_eq(csize, usize);
        const uint8_t *l = z + off;
        ck_assert_uint_eq(rd32(l), 0x04034b50u);
        ck_assert_uint_eq(rd32(l + 14), crc);
        ck_assert_uint_eq(rd32(l + 18), csize);
        ck_assert_uint_eq(rd16(l + 26), fl);
        ck_assert(!memcmp(l + 30, c + 46, fl));
        const uint8_t *npy = l + 30 + fl + rd16(l + 28);
        ck_assert_uint_eq(tfm_crc32(npy, usize), crc);
        npy_entry *e = &out[i];
        ck_assert(fl > 4 && fl - 4 < sizeof e->name && !memcmp(c + 46 + fl - 4, ".npy", 4));
        memcpy(e->name, c + 46, fl - 4);
        e->name[fl - 4] = 0;
        ck_assert(!memcmp(npy, "\x93NUMPY\x01\x00", 8));
        size_t hl = rd16(npy + 8);
        ck_assert_uint_eq((10 + hl) % 64, 0);
        ck_assert_uint_eq(npy[10 + hl - 1], '\n');
        char hdr[512];
        ck_assert_uint_lt(hl, sizeof hdr);
        memcpy(hdr, npy + 10, hl);
        hdr[hl] = 0;
        ck_assert_int_eq(sscanf(hdr, "{'descr': '%7[^']', 'fortran_order': False,", e->descr), 1);
        const char *sh = strstr(hdr, "'shape': (");
        ck_assert_ptr_nonnull(sh);
        sh += 10;
        e->ndim = 0;
        size_t elems = 1;
        while (*sh != ')') {
            char *next;
            e->shape[e->ndim] = strtoll(sh, &next, 10);
            elems *= (size_t)e->shape[e->ndim++];
            sh = next;
            while (*sh == ',' || *sh == ' ') sh++;
        }
        /* numpy's own tuple text, which Marian's cnpy needs: "(a, b)", "(a,)" */
        char want[128];
        int wo = snprintf(want, sizeof want, "'shape': (");
        for (int d = 0; d < e->ndim; d++)
            wo += snprintf(want + wo, sizeof want - (size_t)wo, "%lld%s", (long long)e->shape[d],
                           d + 1 < e->ndim ? ", " : e->ndim == 1 ? "," : "");
        snprintf(want + wo, sizeof want - (size_t)wo, ")");
        ck_assert_msg(strstr(hdr, want) != NULL, "%s: header %s, want %s", e->name, hdr, want);
        e->data = npy + 10 + hl;
        e->bytes = usize - 10 - hl;
        ck_assert_uint_eq(e->bytes, elems * (strcmp(e->descr, "<f4") ? 1 : 4));
        c += 46 + fl + rd16(c + 30) + rd16(c + 32);
    }
    return count;
}

static const npy_entry *find(const npy_entry *e, int64_t n, const char *name) {
    for (int64_t i = 0; i < n; i++)
        if (!strcmp(e[i].name, name)) return &e[i];
    ck_abort_msg("model.npz has no %s", name);
    return NULL;
}

/* The array must be the tensor (transposed when asked), times scale. */
static void expect_f32(const npy_entry *e, const tfm_tensor *t, int transpose, float scale) {
    ck_assert_str_eq(e->descr, "<f4");
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    ck_assert_int_eq(e->ndim, 2);
    ck_assert_int_eq(e->shape[0], transpose ? cols : t->ndim == 2 ? rows : 1);
    ck_assert_int_eq(e->shape[1], transpose ? rows : cols);
    /* the array data sits wherever the zip entry put it: read it unaligned */
    const unsigned char *d = (const unsigned char *)e->data;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float want = t->data[r * cols + c] * scale, got;
            int64_t at = transpose ? c * rows + r : r * cols + c;
            memcpy(&got, d + at * 4, 4);
            ck_assert_msg(memcmp(&want, &got, 4) == 0, "%s[%lld,%lld]: %g, want %g", e->name,
                          (long long)r, (long long)c, (double)got, (double)want);
        }
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    b[len] = 0;
    fclose(f);
    *n = (size_t)len;
    return b;
}

START_TEST(crc32_known_values) {
    ck_assert_uint_eq(tfm_crc32("", 0), 0);
    ck_assert_uint_eq(tfm_crc32("123456789", 9), 0xCBF43926u);
    ck_assert_uint_eq(tfm_crc32("The quick brown fox jumps over the lazy dog", 43), 0x414FA339u);
}
END_TEST

static void marian_case(int share) {
    /* quotes, a backslash and a colon in tokens: vocab.yml escapes them */
    const char *text = "ein \"Mädchen\" und ein Hund: a\\b\nzwei Hunde spielen im Schnee\n";
    tfm_bpe *b = tfm_bpe_learn_text(text, strlen(text), "t", 10, 1);
    tfm_vocab *v = tfm_vocab_build_text(b, text, strlen(text), "t");
    ck_assert_ptr_nonnull(v);
    tfm_model_config c;
    tfm_model_config_default(&c);
    c.vocab = tfm_vocab_size(v);
    c.d_model = 8;
    c.n_heads = 2;
    c.d_ff = 12;
    c.enc_layers = 2;
    c.dec_layers = 1;
    c.max_len = 10;
    c.ln_eps = 1e-6f;
    c.decoder_start = TFM_START_ZERO;
    c.marian_positions = 1;
    c.share_src_emb = share;
    tfm_model m;
    ck_assert_msg(tfm_model_init(&m, &c) == 0, "%s", tfm_last_error());
    uint64_t s = 7;
    for (int64_t i = 0; i < m.params.total_n; i++) { /* every value distinct-ish */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        m.params.data[i] = (float)((double)(s >> 40) / (double)(1 << 24) - 0.5);
    }
    const char *dir = tfm_test_tmpdir("marian");
    ck_assert_msg(tfm_export_marian_save(&m, v, dir) == 0, "%s", tfm_last_error());
    char path[600];
    snprintf(path, sizeof path, "%s/model.npz", dir);
    size_t n;
    uint8_t *z = (uint8_t *)slurp(path, &n);
    npy_entry e[128];
    int64_t count = read_npz(z, n, e, 128);
    /* exactly these names: embeddings (Marian scales them and adds its own
     * sinusoids, which the model computes too), the model's position table
     * (for CTranslate2's converter; Marian does not read it), 16 per encoder
     * layer, 26 per decoder layer, the output bias (the output weights are
     * the target embedding, tied), the options */
    int64_t want_count = (share ? 1 : 2) + 1 + 16 * c.enc_layers + 26 * c.dec_layers + 1 + 1;
    ck_assert_int_eq(count, want_count);
    if (share) {
        expect_f32(find(e, count, "Wemb"), m.tgt_emb, 0, 1.0f);
    } else {
        expect_f32(find(e, count, "encoder_Wemb"), m.src_emb, 0, 1.0f);
        expect_f32(find(e, count, "decoder_Wemb"), m.tgt_emb, 0, 1.0f);
    }
    /* the model's table is marian-dev's SinusoidalPositionEmbeddings */
    float half = (float)(c.d_model / 2), inc = logf(10000.f) / (half - 1.f);
    for (int64_t j = 0; j < c.max_len; j++)
        for (int64_t i = 0; i < c.d_model; i++) {
            float v = (float)j * expf((float)(i % (c.d_model / 2)) * -inc);
            float want = i < c.d_model / 2 ? sinf(v) : cosf(v);
            ck_assert_msg(m.pos_table[j * c.d_model + i] == want, "pos %lld channel %lld",
                          (long long)j, (long long)i);
        }
    const npy_entry *pos = find(e, count, "Wpos");
    ck_assert_int_eq(pos->shape[0], c.max_len);
    ck_assert_int_eq(pos->shape[1], c.d_model);
    ck_assert(!memcmp(pos->data, m.pos_table, (size_t)(c.max_len * c.d_model) * 4));
    char nm[160];
    for (int64_t i = 0; i < c.enc_layers + c.dec_layers; i++) {
        int dec = i >= c.enc_layers;
        int64_t li = dec ? i - c.enc_layers : i;
        const tfm_layer_params *L = dec ? &m.dec[li] : &m.enc[li];
        const char *side = dec ? "decoder" : "encoder";
        for (int k = 0; k < 1 + dec; k++) {
            const tfm_attn_params *a = k ? &L->cross_attn : &L->self_attn;
            const char *kind = k ? "context" : "self";
            const tfm_tensor *w[4] = {a->q_w, a->k_w, a->v_w, a->o_w},
                             *bb[4] = {a->q_b, a->k_b, a->v_b, a->o_b};
            for (int j = 0; j < 4; j++) {
                snprintf(nm, sizeof nm, "%s_l%lld_%s_W%c", side, (long long)li + 1, kind,
                         "qkvo"[j]);
                expect_f32(find(e, count, nm), w[j], 1, 1.0f);
                snprintf(nm, sizeof nm, "%s_l%lld_%s_b%c", side, (long long)li + 1, kind,
                         "qkvo"[j]);
                expect_f32(find(e, count, nm), bb[j], 0, 1.0f);
            }
            const tfm_ln_params *ln = k ? &L->ln2 : &L->ln1;
            snprintf(nm, sizeof nm, "%s_l%lld_%s_Wo_ln_scale", side, (long long)li + 1, kind);
            expect_f32(find(e, count, nm), ln->w, 0, 1.0f);
            snprintf(nm, sizeof nm, "%s_l%lld_%s_Wo_ln_bias", side, (long long)li + 1, kind);
            expect_f32(find(e, count, nm), ln->b, 0, 1.0f);
        }
        const tfm_tensor *f[4] = {L->fc1_w, L->fc1_b, L->fc2_w, L->fc2_b};
        const char *fn[4] = {"W1", "b1", "W2", "b2"};
        for (int j = 0; j < 4; j++) {
            snprintf(nm, sizeof nm, "%s_l%lld_ffn_%s", side, (long long)li + 1, fn[j]);
            expect_f32(find(e, count, nm), f[j], j % 2 == 0, 1.0f);
        }
        const tfm_ln_params *ln = dec ? &L->ln3 : &L->ln2;
        snprintf(nm, sizeof nm, "%s_l%lld_ffn_ffn_ln_scale", side, (long long)li + 1);
        expect_f32(find(e, count, nm), ln->w, 0, 1.0f);
        snprintf(nm, sizeof nm, "%s_l%lld_ffn_ffn_ln_bias", side, (long long)li + 1);
        expect_f32(find(e, count, nm), ln->b, 0, 1.0f);
    }
    const npy_entry *ob = find(e, count, "decoder_ff_logit_out_b");
    ck_assert_int_eq(ob->shape[0], 1);
    ck_assert_int_eq(ob->shape[1], c.vocab);
    for (int64_t i = 0; i < c.vocab; i++) {
        float b;
        memcpy(&b, (const unsigned char *)ob->data + i * 4, 4); /* unaligned in the zip */
        ck_assert(b == (i == TFM_PAD_ID || i == TFM_BOS_ID ? -1e9f : 0.0f));
    }
    const npy_entry *y = find(e, count, "special:model.yml");
    ck_assert_str_eq(y->descr, "<i1");
    /* the text and one NUL, which both Marian and CTranslate2's converter read */
    const char *yml = (const char *)y->data;
    ck_assert_int_eq(y->shape[0], (int64_t)y->bytes);
    ck_assert_uint_eq(strlen(yml) + 1, y->bytes);
    const char *want_yml[] = {"type: transformer\n",
                              "dim-emb: 8\n",
                              "enc-depth: 2\n",
                              "dec-depth: 1\n",
                              "transformer-heads: 2\n",
                              "transformer-dim-ffn: 12\n",
                              "transformer-ffn-activation: relu\n",
                              "transformer-postprocess: dan\n",
                              "transformer-train-position-embeddings: false\n",
                              /* CTranslate2's converter requires it */
                              "transformer-guided-alignment-layer: last\n"};
    for (size_t i = 0; i < sizeof want_yml / sizeof *want_yml; i++)
        ck_assert_msg(strstr(yml, want_yml[i]), "model.yml lacks %s:\n%s", want_yml[i], yml);
    ck_assert(strstr(yml, share ? "tied-embeddings-src: true\n" : "tied-embeddings-src: false\n"));
    ck_assert(strstr(yml, share ? "tied-embeddings-all: true\n" : "tied-embeddings-all: false\n"));
    ck_assert(strstr(yml, share ? "tied-embeddings: false\n" : "tied-embeddings: true\n"));
    /* Python's zipfile and numpy read it the same way */
    if (run("/usr/bin/python3 -c 'import numpy' ") == 0) {
        int rc = run("/usr/bin/python3 -c \"import zipfile, numpy, sys\n"
                     "z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None\n"
                     "d = numpy.load(sys.argv[1])\n"
                     "for k in sorted(d.files): print(k, d[k].dtype, d[k].shape)\" %s",
                     path);
        ck_assert_msg(rc == 0, "%s", out_buf);
        for (int64_t i = 0; i < count; i++) {
            char line[512];
            if (e[i].ndim == 1)
                snprintf(line, sizeof line, "%.127s int8 (%lld,)", e[i].name,
                         (long long)e[i].shape[0]);
            else
                snprintf(line, sizeof line, "%.127s float32 (%lld, %lld)", e[i].name,
                         (long long)e[i].shape[0], (long long)e[i].shape[1]);
            ck_assert_msg(strstr(out_buf, line), "numpy: no '%s' in\n%s", line, out_buf);
        }
    } else {
        printf("  numpy check skipped: no numpy\n");
    }
    /* vocab.yml: one `"token": id` line per token in id order, as marian-dev
     * writes it (CTranslate2's converter parses these lines by hand) */
    snprintf(path, sizeof path, "%s/vocab.yml", dir);
    size_t vl;
    char *vy = slurp(path, &vl);
    const char *q = vy;
    for (int32_t i = 0; i < tfm_vocab_size(v); i++) {
        char tok[256];
        size_t k = 0;
        ck_assert_msg(*q == '"', "vocab.yml line %d: %.40s", (int)i + 1, q);
        for (q++; *q && *q != '"' && k + 1 < sizeof tok; q++) {
            if (*q == '\\') {
                q++;
                ck_assert_msg(*q == '"' || *q == '\\', "vocab.yml line %d: escape \\%c", (int)i + 1,
                              *q);
            }
            tok[k++] = *q;
        }
        tok[k] = 0;
        ck_assert_str_eq(tok, tfm_vocab_token(v, i));
        char *end;
        ck_assert(q[0] == '"' && q[1] == ':' && q[2] == ' ');
        ck_assert_int_eq(strtol(q + 3, &end, 10), i);
        ck_assert(*end == '\n');
        q = end + 1;
    }
    ck_assert(*q == 0);
    free(vy);
    /* YAML reads the same map (PyYAML, when installed) */
    if (run("/usr/bin/python3 -c 'import yaml' ") == 0) {
        const char *vp = tfm_test_tmpdir("marian-vocab");
        char want[4096];
        snprintf(want, sizeof want, "%s/want.txt", vp);
        FILE *f = fopen(want, "w");
        ck_assert_ptr_nonnull(f);
        for (int32_t i = 0; i < tfm_vocab_size(v); i++) fprintf(f, "%s\n", tfm_vocab_token(v, i));
        fclose(f);
        int rc = run("/usr/bin/python3 -c \"import yaml, sys\n"
                     "d = yaml.safe_load(open(sys.argv[1], encoding='utf-8'))\n"
                     "w = open(sys.argv[2], encoding='utf-8').read().split('\\n')[:-1]\n"
                     "assert d == {t: i for i, t in enumerate(w)}, 'differs'\" %s %s",
                     path, want);
        ck_assert_msg(rc == 0, "%s", out_buf);
    } else {
        printf("  YAML check skipped: no PyYAML\n");
    }
    snprintf(path, sizeof path, "%s/decoder.yml", dir);
    size_t dl;
    char *decyml = slurp(path, &dl);
    ck_assert(strstr(decyml, "models:\n  - model.npz\n") &&
              strstr(decyml, "vocabs:\n  - vocab.yml\n  - vocab.yml\n") &&
              strstr(decyml, "allow-unk: true\n"));
    free(decyml);
    free(z);
    tfm_model_free(&m);
    tfm_vocab_free(v);
    tfm_bpe_free(b);
}

START_TEST(marian_npz_names_shapes_values) { marian_case(0); }
END_TEST

START_TEST(marian_npz_shared_embedding) { marian_case(1); }
END_TEST

START_TEST(marian_refuses_unrepresentable_models) {
    tfm_model_config c;
    tfm_model_config_default(&c);
    c.ln_eps = 1e-6f;
    c.decoder_start = TFM_START_ZERO;
    c.marian_positions = 1;
    ck_assert_int_eq(tfm_export_marian_check(&c), 0);
    /* tfm's own sinusoids: Marian computes its own and reads no others */
    c.marian_positions = 0;
    ck_assert_int_ne(tfm_export_marian_check(&c), 0);
    ck_assert_msg(strstr(tfm_last_error(), "--marian-positions"), "%s", tfm_last_error());
    /* and the Hugging Face export refuses Marian's (with 1e-5, which it needs) */
    c.ln_eps = 1e-5f;
    ck_assert_int_eq(tfm_export_check(&c), 0);
    c.marian_positions = 1;
    ck_assert_int_ne(tfm_export_check(&c), 0);
    ck_assert_msg(strstr(tfm_last_error(), "--format marian"), "%s", tfm_last_error());
    c.ln_eps = 1e-6f;
    c.decoder_start = TFM_START_BOS;
    ck_assert_int_ne(tfm_export_marian_check(&c), 0);
    ck_assert_msg(strstr(tfm_last_error(), "Marian starts it from a zero vector"), "%s",
                  tfm_last_error());
    c.decoder_start = TFM_START_ZERO;
    c.ln_eps = 1e-5f;
    ck_assert_int_ne(tfm_export_marian_check(&c), 0);
    ck_assert_msg(strstr(tfm_last_error(), "fixed 1e-6"), "%s", tfm_last_error());
    c.ln_eps = 1e-6f;
    c.pre_ln = 1;
    ck_assert_int_ne(tfm_export_marian_check(&c), 0);
    ck_assert_msg(strstr(tfm_last_error(), "pre-LN"), "%s", tfm_last_error());
    /* the CLI: a model that starts from <s> is refused in one line */
    const char *dir = tfm_test_tmpdir("marian-cli");
    const char *train = "%s train --task copy --steps 2 --save %s/%s --d-model 16 --heads 2 "
                        "--d-ff 32 --layers 1 --vocab 9 --max-len 6 --batch 8 --threads 1 --quiet "
                        "--ln-eps 1e-6 --marian-positions --decoder-start %s";
    int rc = run(train, tfm_test_bin(), dir, "run", "bos");
    ck_assert_msg(rc == 0, "%s", out_buf);
    rc = run("%s export --format marian --model %s/run --out %s/m", tfm_test_bin(), dir, dir);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(out_buf, "cannot export to Marian") && strstr(out_buf, "zero vector") &&
                      !strchr(strchr(out_buf, '\n') + 1, '\n'),
                  "%s", out_buf);
    rc = run("%s export --format onnx --model %s/run --out %s/m", tfm_test_bin(), dir, dir);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(strstr(out_buf, "--format"), "%s", out_buf);
    /* a zero-start model with Marian's epsilon is exported, and the Hugging
     * Face export, whose LayerNorm epsilon is 1e-5, refuses it saying so */
    rc = run(train, tfm_test_bin(), dir, "zero", "zero");
    ck_assert_msg(rc == 0, "%s", out_buf);
    rc = run("%s export --format marian --model %s/zero --out %s/mz", tfm_test_bin(), dir, dir);
    ck_assert_msg(rc == 0 && strstr(out_buf, "for marian-decoder"), "%s", out_buf);
    char p[600];
    snprintf(p, sizeof p, "%s/mz/model.npz", dir);
    ck_assert_int_eq(access(p, F_OK), 0);
    rc = run("%s export --model %s/zero --out %s/hz", tfm_test_bin(), dir, dir);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(out_buf, "epsilon") && strstr(out_buf, "--format marian"), "%s", out_buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("export_marian");
    TCase *tc = tcase_create("export_marian");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, crc32_known_values);
    tcase_add_test(tc, marian_npz_names_shapes_values);
    tcase_add_test(tc, marian_npz_shared_embedding);
    tcase_add_test(tc, marian_refuses_unrepresentable_models);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
