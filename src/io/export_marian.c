/* Native Marian export: model.npz (a zip of .npy arrays, stored, written
 * here), vocab.yml and decoder.yml. The parameter names and shapes are
 * marian-dev's (src/models/transformer.h, src/layers/output.cpp,
 * src/layers/generic.h, src/common/io.cpp); see include/tfm/export.h for the
 * mapping and for why positions and embeddings are written the way they are. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h" /* tfm_buf */
#include "tfm/atomic_file.h"
#include "tfm/export.h"
#include "tfm/json.h"

/* ---- CRC-32 (IEEE 802.3, reflected, as zip uses) ------------------------- */

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t tfm_crc32(const void *data, size_t n) { return crc32_update(0, data, n); }

/* ---- little-endian integers into a byte buffer (src/util/buf.h) ---------- */

static void put16(tfm_buf *b, uint16_t v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    tfm_buf_add(b, x, 2);
}

static void put32(tfm_buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    tfm_buf_add(b, x, 4);
}

/* ---- npz: zip (stored, no data descriptors) of .npy v1.0 arrays ---------- */

typedef struct {
    tfm_buf zip, central;
    int64_t n_entries;
} npz_writer;

/* Appends NAME.npy: a v1.0 header (dict padded with spaces to a multiple of
 * 64 bytes, newline-terminated) and the little-endian data. descr is "<f4"
 * or "<i1"; shape has ndim entries, written as numpy writes the tuple:
 * "(6187, 256)", "(768,)". A trailing comma after the last of several
 * dimensions, which numpy reads, makes Marian's cnpy count one dimension
 * (it tests the last character for ','), and the rest of the file is then
 * misread. */
static int npz_add(npz_writer *z, const char *name, const char *descr, int ndim,
                   const int64_t *shape, const void *data, size_t data_bytes) {
    char dict[256];
    int o =
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int d = 0; d < ndim; d++)
        o += snprintf(dict + o, sizeof dict - (size_t)o, "%lld%s", (long long)shape[d],
                      d + 1 < ndim ? ", " : ndim == 1 ? "," : "");
    o += snprintf(dict + o, sizeof dict - (size_t)o, "), }");
    size_t hlen = (size_t)o + 1; /* + '\n' */
    while ((10 + hlen) % 64) hlen++;
    uint8_t head[10 + 256];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (uint8_t)hlen;
    head[9] = (uint8_t)(hlen >> 8);
    memcpy(head + 10, dict, (size_t)o);
    memset(head + 10 + o, ' ', hlen - (size_t)o - 1);
    head[10 + hlen - 1] = '\n';
    size_t npy_len = 10 + hlen + data_bytes;
    if (npy_len >= 0xFFFFFFFFu || z->zip.len >= 0xFFFFFFFFu - npy_len - 1024)
        return tfm_set_error("npz: %s: arrays over 4 GiB need zip64, which is not written", name),
               1;
    uint32_t crc = crc32_update(crc32_update(0, head, 10 + hlen), data, data_bytes);
    char fname[256];
    snprintf(fname, sizeof fname, "%s.npy", name);
    uint16_t fl = (uint16_t)strlen(fname);
    uint32_t offset = (uint32_t)z->zip.len;
    /* local file header: version 2.0, no flags, stored, DOS time 1980-01-01 */
    put32(&z->zip, 0x04034b50u);
    put16(&z->zip, 20);
    put16(&z->zip, 0);
    put16(&z->zip, 0);
    put16(&z->zip, 0);
    put16(&z->zip, 0x21);
    put32(&z->zip, crc);
    put32(&z->zip, (uint32_t)npy_len);
    put32(&z->zip, (uint32_t)npy_len);
    put16(&z->zip, fl);
    put16(&z->zip, 0);
    tfm_buf_add(&z->zip, fname, fl);
    tfm_buf_add(&z->zip, head, 10 + hlen);
    tfm_buf_add(&z->zip, data, data_bytes);
    /* its central directory record */
    put32(&z->central, 0x02014b50u);
    put16(&z->central, 20);
    put16(&z->central, 20);
    put16(&z->central, 0);
    put16(&z->central, 0);
    put16(&z->central, 0);
    put16(&z->central, 0x21);
    put32(&z->central, crc);
    put32(&z->central, (uint32_t)npy_len);
    put32(&z->central, (uint32_t)npy_len);
    put16(&z->central, fl);
    put16(&z->central, 0);
    put16(&z->central, 0);
    put16(&z->central, 0);
    put16(&z->central, 0);
    put32(&z->central, 0);
    put32(&z->central, offset);
    tfm_buf_add(&z->central, fname, fl);
    z->n_entries++;
    if (z->zip.oom || z->central.oom) return tfm_set_error("npz: out of memory"), 1;
    return 0;
}

static int npz_save(npz_writer *z, const char *path) {
    if (z->n_entries > 0xFFFF) return tfm_set_error("%s: too many arrays for a zip", path), 1;
    uint32_t cd_offset = (uint32_t)z->zip.len;
    tfm_buf_add(&z->zip, z->central.p, z->central.len);
    put32(&z->zip, 0x06054b50u); /* end of central directory */
    put16(&z->zip, 0);
    put16(&z->zip, 0);
    put16(&z->zip, (uint16_t)z->n_entries);
    put16(&z->zip, (uint16_t)z->n_entries);
    put32(&z->zip, (uint32_t)z->central.len);
    put32(&z->zip, cd_offset);
    put16(&z->zip, 0);
    if (z->zip.oom) return tfm_set_error("%s: out of memory", path), 1;
    return tfm_write_file_atomic(path, z->zip.p, z->zip.len);
}

/* ---- the model ------------------------------------------------------------ */

int tfm_export_marian_check(const tfm_model_config *c) {
    if (c->decoder_start != TFM_START_ZERO)
        return tfm_set_error("the model starts its decoder from the trained <s> embedding "
                             "(decoder-start bos), but Marian starts it from a zero vector (plus "
                             "position 0) and has no setting for anything else; train with "
                             "--decoder-start zero"),
               1;
    if (c->pre_ln)
        return tfm_set_error("the model uses pre-LN layers; the Marian export writes post-LN "
                             "(transformer-postprocess: dan) only"),
               1;
    /* src/layers/generic.h: layerNorm(x, prefix) uses a fixed 1e-6 */
    if (c->ln_eps != 1e-6f)
        return tfm_set_error("the model's layer-norm epsilon is %g, but Marian's transformer "
                             "layer norm uses a fixed 1e-6 (train with --ln-eps 1e-6)",
                             (double)c->ln_eps),
               1;
    /* marian-dev's transformer adds its own sinusoids (models/transformer.h:
     * the option that would read trained positions is misspelt there, and
     * that path starts at position 0 at every decoding step) */
    if (!c->marian_positions)
        return tfm_set_error("the model uses tfm's sinusoids (10000^(-2i/D)), but marian-decoder "
                             "computes its own (log(10000)/(D/2-1)) and cannot read ours; train "
                             "with --marian-positions"),
               1;
    if (c->d_model % 2)
        return tfm_set_error("d_model %lld is odd; Marian's sinusoids need an even width",
                             (long long)c->d_model),
               1;
    if (c->d_model % c->n_heads)
        return tfm_set_error("d_model %lld is not a multiple of %lld heads", (long long)c->d_model,
                             (long long)c->n_heads),
               1;
    return 0;
}

/* (out, in) row-major -> (in, out): Marian computes x W. */
static float *transposed(const tfm_tensor *t) {
    int64_t rows = t->shape[0], cols = t->shape[1];
    float *o = malloc((size_t)(rows * cols) * sizeof(float));
    if (!o) return NULL;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) o[c * rows + r] = t->data[r * cols + c];
    return o;
}

static int add_f32(npz_writer *z, const char *name, int ndim, const int64_t *shape,
                   const float *data) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return npz_add(z, name, "<f4", ndim, shape, data, (size_t)n * sizeof(float));
}

/* A (out, in) weight as Marian's (in, out) param. */
static int add_linear_w(npz_writer *z, const char *name, const tfm_tensor *w) {
    float *t = transposed(w);
    if (!t) return tfm_set_error("out of memory"), 1;
    int rc = add_f32(z, name, 2, (int64_t[]){w->shape[1], w->shape[0]}, t);
    free(t);
    return rc;
}

/* A bias or layer-norm vector as Marian's (1, n) param. */
static int add_row(npz_writer *z, const char *name, const tfm_tensor *v) {
    return add_f32(z, name, 2, (int64_t[]){1, v->n}, v->data);
}

static int add_attn(npz_writer *z, const char *prefix, const tfm_attn_params *a,
                    const tfm_ln_params *ln) {
    char n[160];
    const tfm_tensor *w[4] = {a->q_w, a->k_w, a->v_w, a->o_w},
                     *b[4] = {a->q_b, a->k_b, a->v_b, a->o_b};
    const char *x = "qkvo";
    for (int i = 0; i < 4; i++) {
        snprintf(n, sizeof n, "%s_W%c", prefix, x[i]);
        if (add_linear_w(z, n, w[i])) return 1;
        snprintf(n, sizeof n, "%s_b%c", prefix, x[i]);
        if (add_row(z, n, b[i])) return 1;
    }
    /* postProcess(prefix + "_Wo", "dan"): the layer norm after the residual */
    snprintf(n, sizeof n, "%s_Wo_ln_scale", prefix);
    if (add_row(z, n, ln->w)) return 1;
    snprintf(n, sizeof n, "%s_Wo_ln_bias", prefix);
    return add_row(z, n, ln->b);
}

static int add_ffn(npz_writer *z, const char *prefix, const tfm_layer_params *L,
                   const tfm_ln_params *ln) {
    char n[160];
    snprintf(n, sizeof n, "%s_W1", prefix);
    if (add_linear_w(z, n, L->fc1_w)) return 1;
    snprintf(n, sizeof n, "%s_b1", prefix);
    if (add_row(z, n, L->fc1_b)) return 1;
    snprintf(n, sizeof n, "%s_W2", prefix);
    if (add_linear_w(z, n, L->fc2_w)) return 1;
    snprintf(n, sizeof n, "%s_b2", prefix);
    if (add_row(z, n, L->fc2_b)) return 1;
    snprintf(n, sizeof n, "%s_ffn_ln_scale", prefix);
    if (add_row(z, n, ln->w)) return 1;
    snprintf(n, sizeof n, "%s_ffn_ln_bias", prefix);
    return add_row(z, n, ln->b);
}

/* Marian's model.yml: the options that define the architecture. */
static char *model_yml(const tfm_model_config *c) {
    char *s = malloc(4096);
    if (!s) return NULL;
    snprintf(s, 4096,
             "type: transformer\n"
             "dim-vocabs:\n  - %lld\n  - %lld\n"
             "dim-emb: %lld\n"
             "enc-depth: %lld\n"
             "dec-depth: %lld\n"
             "transformer-heads: %lld\n"
             "transformer-dim-ffn: %lld\n"
             "transformer-ffn-depth: 2\n"
             "transformer-decoder-ffn-depth: 2\n"
             "transformer-ffn-activation: relu\n"
             "transformer-dim-aan: %lld\n"
             "transformer-decoder-autoreg: self-attention\n"
             "transformer-preprocess: \"\"\n"
             "transformer-postprocess: dan\n"
             "transformer-postprocess-emb: d\n"
             "transformer-postprocess-top: \"\"\n"
             "transformer-train-position-embeddings: false\n"
             "transformer-guided-alignment-layer: last\n"
             "transformer-depth-scaling: false\n"
             "transformer-no-projection: false\n"
             "transformer-tied-layers: []\n"
             "tied-embeddings: %s\n"
             "tied-embeddings-src: %s\n"
             "tied-embeddings-all: %s\n"
             "output-omit-bias: false\n"
             "right-left: false\n"
             "# written by tfm export --format marian\n"
             "version: v1.12.0\n",
             (long long)c->vocab, (long long)c->vocab, (long long)c->d_model,
             (long long)c->enc_layers, (long long)c->dec_layers, (long long)c->n_heads,
             (long long)c->d_ff, (long long)c->d_ff, c->share_src_emb ? "false" : "true",
             c->share_src_emb ? "true" : "false", c->share_src_emb ? "true" : "false");
    return s;
}

int tfm_export_marian_save(const tfm_model *m, const tfm_vocab *v, const char *dir) {
    const tfm_model_config *c = &m->cfg;
    if (tfm_export_marian_check(c)) return 1;
    if (v && tfm_vocab_size(v) != c->vocab)
        return tfm_set_error("the vocabulary has %d tokens, the model %lld", tfm_vocab_size(v),
                             (long long)c->vocab),
               1;
    int64_t V = c->vocab, D = c->d_model, L = c->max_len;
    npz_writer z;
    memset(&z, 0, sizeof z);
    float *bias = malloc((size_t)V * sizeof(float));
    char *yml = model_yml(c), path[4096], n[96];
    int rc = 1;
    if (!bias || !yml) {
        tfm_set_error("out of memory");
        goto done;
    }
    /* Marian's transformer scales the looked-up rows by sqrt(dim) and adds
     * its own sinusoids, as tfm does (with marian-positions, the same float
     * values), so the tables are written as they are; the output layer is
     * tied to the (target) table, as tfm's is. */
    if (c->share_src_emb) {
        if (add_f32(&z, "Wemb", 2, (int64_t[]){V, D}, m->tgt_emb->data)) goto done;
    } else if (add_f32(&z, "encoder_Wemb", 2, (int64_t[]){V, D}, m->src_emb->data) ||
               add_f32(&z, "decoder_Wemb", 2, (int64_t[]){V, D}, m->tgt_emb->data)) {
        goto done;
    }
    /* The model's table as Wpos: marian-decoder does not read it (it
     * computes the same values itself), CTranslate2's Marian converter does,
     * and without it would compute Hugging Face's angles, 10000^(-2i/D). */
    if (add_f32(&z, "Wpos", 2, (int64_t[]){L, D}, m->pos_table)) goto done;
    for (int64_t i = 0; i < c->enc_layers; i++) {
        const tfm_layer_params *l = &m->enc[i];
        snprintf(n, sizeof n, "encoder_l%lld_self", (long long)i + 1);
        if (add_attn(&z, n, &l->self_attn, &l->ln1)) goto done;
        snprintf(n, sizeof n, "encoder_l%lld_ffn", (long long)i + 1);
        if (add_ffn(&z, n, l, &l->ln2)) goto done;
    }
    for (int64_t i = 0; i < c->dec_layers; i++) {
        const tfm_layer_params *l = &m->dec[i];
        snprintf(n, sizeof n, "decoder_l%lld_self", (long long)i + 1);
        if (add_attn(&z, n, &l->self_attn, &l->ln1)) goto done;
        snprintf(n, sizeof n, "decoder_l%lld_context", (long long)i + 1);
        if (add_attn(&z, n, &l->cross_attn, &l->ln2)) goto done;
        snprintf(n, sizeof n, "decoder_l%lld_ffn", (long long)i + 1);
        if (add_ffn(&z, n, l, &l->ln3)) goto done;
    }
    /* our decoders never emit <pad> or <s> (their argmax starts at </s>):
     * a large negative bias keeps Marian from choosing them */
    for (int64_t i = 0; i < V; i++) bias[i] = i == TFM_PAD_ID || i == TFM_BOS_ID ? -1e9f : 0.0f;
    if (add_f32(&z, "decoder_ff_logit_out_b", 2, (int64_t[]){1, V}, bias)) goto done;
    /* The YAML text and one NUL. marian-dev 1.12 pads it with NULs to a
     * multiple of 256 bytes (io::addMetaToItems) but reads only up to the
     * first; CTranslate2's Marian converter drops exactly one trailing byte
     * and hands the rest to a YAML parser, which refuses NULs. */
    size_t yl = strlen(yml), ybytes = yl + 1;
    char *meta = calloc(ybytes, 1);
    if (!meta) {
        tfm_set_error("out of memory");
        goto done;
    }
    memcpy(meta, yml, yl);
    int bad =
        npz_add(&z, "special:model.yml", "<i1", 1, (int64_t[]){(int64_t)ybytes}, meta, ybytes);
    free(meta);
    if (bad) goto done;
    if (tfm_join_into(path, sizeof path, dir, "model.npz")) goto done;
    if (npz_save(&z, path)) goto done;
    if (v) {
        /* vocab.yml in marian-dev's own layout, one `"token": id` per line:
         * YAML for Marian, and the line format CTranslate2's converter parses
         * by hand (it rejects JSON's braces). Double quotes with \" and \\
         * escapes; control bytes as \xHH. */
        tfm_buf y = {0};
        char num[32];
        for (int32_t i = 0; i < tfm_vocab_size(v); i++) {
            tfm_buf_put(&y, '"');
            for (const unsigned char *t = (const unsigned char *)tfm_vocab_token(v, i); *t; t++) {
                if (*t == '"' || *t == '\\') {
                    tfm_buf_put(&y, '\\');
                    tfm_buf_put(&y, (char)*t);
                } else if (*t < 0x20 || *t == 0x7f) {
                    int nl = snprintf(num, sizeof num, "\\x%02X", (unsigned)*t);
                    tfm_buf_add(&y, num, (size_t)nl);
                } else {
                    tfm_buf_put(&y, (char)*t);
                }
            }
            int nl = snprintf(num, sizeof num, "\": %d\n", (int)i);
            tfm_buf_add(&y, num, (size_t)nl);
        }
        if (y.oom) {
            tfm_buf_free(&y);
            tfm_set_error("out of memory");
            goto done;
        }
        if (tfm_join_into(path, sizeof path, dir, "vocab.yml")) {
            tfm_buf_free(&y);
            goto done;
        }
        bad = tfm_write_file_atomic(path, y.p, y.len);
        tfm_buf_free(&y);
        if (bad) goto done;
    }
    char dec[1024];
    int dl = snprintf(dec, sizeof dec, "%s",
                      "# marian-decoder -c decoder.yml < input.bpe   (input segmented by tfm bpe "
                      "apply)\n"
                      "relative-paths: true\n"
                      "models:\n  - model.npz\n"
                      "vocabs:\n  - vocab.yml\n  - vocab.yml\n"
                      "beam-size: 1\n"
                      "normalize: 0\n"
                      "allow-unk: true\n"
                      "mini-batch: 16\n"
                      "maxi-batch: 100\n"
                      "maxi-batch-sort: src\n");
    if (tfm_join_into(path, sizeof path, dir, "decoder.yml")) goto done;
    if (tfm_write_file_atomic(path, dec, (size_t)dl)) goto done;
    rc = 0;
done:
    free(bias);
    free(yml);
    tfm_buf_free(&z.zip);
    tfm_buf_free(&z.central);
    return rc;
}
