/* Export to the Hugging Face MarianMT layout (safetensors + config.json) and
 * loading such an export back. See include/tfm/export.h for the mapping. */
#include "tfm/export.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h" /* tfm_grow */
#include "tfm/json.h"
#include "tfm/safetensors.h"

/* Bumped when the layout or the "tfm" section changes meaning. */
#define EXPORT_FORMAT_VERSION 1

/* One Marian tensor name and the parameter it holds. A parameter can appear
 * under several names (tied embeddings); the first is `primary`, the rest
 * must be identical copies. */
typedef struct {
    char name[112];
    tfm_tensor *t;
    int primary;
    int vocab_rows; /* an embedding or the output projection: (V, D) */
} export_entry;

typedef struct {
    export_entry *e;
    int64_t n, cap;
} export_map;

static int map_add(export_map *mp, tfm_tensor *t, int primary, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int map_add(export_map *mp, tfm_tensor *t, int primary, const char *fmt, ...) {
    if (tfm_grow((void **)&mp->e, &mp->cap, mp->n + 1, sizeof *mp->e)) return 1;
    export_entry *x = &mp->e[mp->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->name, sizeof x->name, fmt, ap);
    va_end(ap);
    x->t = t;
    x->primary = primary;
    x->vocab_rows = 0;
    return 0;
}

static int map_attn(export_map *mp, const tfm_attn_params *a, const char *prefix) {
    return map_add(mp, a->q_w, 1, "%s.q_proj.weight", prefix) ||
           map_add(mp, a->q_b, 1, "%s.q_proj.bias", prefix) ||
           map_add(mp, a->k_w, 1, "%s.k_proj.weight", prefix) ||
           map_add(mp, a->k_b, 1, "%s.k_proj.bias", prefix) ||
           map_add(mp, a->v_w, 1, "%s.v_proj.weight", prefix) ||
           map_add(mp, a->v_b, 1, "%s.v_proj.bias", prefix) ||
           map_add(mp, a->o_w, 1, "%s.out_proj.weight", prefix) ||
           map_add(mp, a->o_b, 1, "%s.out_proj.bias", prefix);
}

static int map_ln(export_map *mp, const tfm_ln_params *ln, const char *prefix) {
    return map_add(mp, ln->w, 1, "%s.weight", prefix) || map_add(mp, ln->b, 1, "%s.bias", prefix);
}

static int map_ffn(export_map *mp, const tfm_layer_params *L, const char *prefix) {
    return map_add(mp, L->fc1_w, 1, "%s.fc1.weight", prefix) ||
           map_add(mp, L->fc1_b, 1, "%s.fc1.bias", prefix) ||
           map_add(mp, L->fc2_w, 1, "%s.fc2.weight", prefix) ||
           map_add(mp, L->fc2_b, 1, "%s.fc2.bias", prefix);
}

/* Every Marian name of the model's parameters, in the order they are written.
 * Marian's MarianMTModel has no model.shared when the encoder and decoder
 * embeddings are separate (share_encoder_decoder_embeddings = false); the
 * output projection is always tied to the decoder's embedding. */
static int build_map(const tfm_model *m, export_map *mp) {
    memset(mp, 0, sizeof *mp);
    char p[96];
    int err;
    if (m->cfg.share_src_emb)
        err = map_add(mp, m->tgt_emb, 1, "model.shared.weight") ||
              map_add(mp, m->tgt_emb, 0, "model.encoder.embed_tokens.weight");
    else
        err = map_add(mp, m->src_emb, 1, "model.encoder.embed_tokens.weight") ||
              map_add(mp, m->tgt_emb, 1, "model.decoder.embed_tokens.weight");
    if (!err && m->cfg.share_src_emb)
        err = map_add(mp, m->tgt_emb, 0, "model.decoder.embed_tokens.weight");
    if (!err) err = map_add(mp, m->tgt_emb, 0, "lm_head.weight");
    for (int64_t i = 0; !err && i < mp->n; i++) mp->e[i].vocab_rows = 1;
    for (int64_t i = 0; !err && i < m->cfg.enc_layers; i++) {
        const tfm_layer_params *L = &m->enc[i];
        snprintf(p, sizeof p, "model.encoder.layers.%lld.self_attn", (long long)i);
        err = map_attn(mp, &L->self_attn, p);
        snprintf(p, sizeof p, "model.encoder.layers.%lld.self_attn_layer_norm", (long long)i);
        err = err || map_ln(mp, &L->ln1, p);
        snprintf(p, sizeof p, "model.encoder.layers.%lld", (long long)i);
        err = err || map_ffn(mp, L, p);
        snprintf(p, sizeof p, "model.encoder.layers.%lld.final_layer_norm", (long long)i);
        err = err || map_ln(mp, &L->ln2, p);
    }
    for (int64_t i = 0; !err && i < m->cfg.dec_layers; i++) {
        const tfm_layer_params *L = &m->dec[i];
        snprintf(p, sizeof p, "model.decoder.layers.%lld.self_attn", (long long)i);
        err = map_attn(mp, &L->self_attn, p);
        snprintf(p, sizeof p, "model.decoder.layers.%lld.self_attn_layer_norm", (long long)i);
        err = err || map_ln(mp, &L->ln1, p);
        snprintf(p, sizeof p, "model.decoder.layers.%lld.encoder_attn", (long long)i);
        err = err || map_attn(mp, &L->cross_attn, p);
        snprintf(p, sizeof p, "model.decoder.layers.%lld.encoder_attn_layer_norm", (long long)i);
        err = err || map_ln(mp, &L->ln2, p);
        snprintf(p, sizeof p, "model.decoder.layers.%lld", (long long)i);
        err = err || map_ffn(mp, L, p);
        snprintf(p, sizeof p, "model.decoder.layers.%lld.final_layer_norm", (long long)i);
        err = err || map_ln(mp, &L->ln3, p);
    }
    if (err) {
        free(mp->e);
        memset(mp, 0, sizeof *mp);
    }
    return err;
}

int tfm_export_check(const tfm_model_config *c) {
    if (c->pre_ln)
        return tfm_set_error("the model uses pre-LN layers, which MarianMT cannot express (it is "
                             "post-LN only)"),
               1;
    /* PyTorch's LayerNorm default, which MarianMTModel uses and MarianConfig
     * cannot change: any other value would silently change the outputs. */
    if (c->ln_eps != 1e-5f)
        return tfm_set_error(
                   "the model's layer-norm epsilon is %g, but MarianMT's LayerNorm uses PyTorch's "
                   "default 1e-5 and has no setting for it%s",
                   (double)c->ln_eps,
                   c->ln_eps == 1e-6f && c->decoder_start == TFM_START_ZERO
                       ? " (Marian's own 1e-6: export it with --format marian)"
                       : ""),
               1;
    if (c->d_model % 2)
        return tfm_set_error("d_model %lld is odd; Marian's sinusoids need an even width",
                             (long long)c->d_model),
               1;
    if (c->marian_positions)
        return tfm_set_error("the model uses marian-dev's sinusoids (marian-positions), but "
                             "MarianMT computes 10000^(-2i/D) ones and has no setting for it "
                             "(export it with --format marian)"),
               1;
    return 0;
}

/* The Hugging Face vocabulary: ours, plus for zero-start models one more
 * id, V, with a zero embedding row: <pad>, decoder_start_token_id and the
 * last id, as in every converted Marian model (CTranslate2's converter drops
 * that last row and starts from a zero vector itself). */
static int64_t hf_vocab(const tfm_model_config *c) {
    return c->vocab + (c->decoder_start == TFM_START_ZERO);
}
static int64_t hf_pad(const tfm_model_config *c) {
    return c->decoder_start == TFM_START_ZERO ? c->vocab : TFM_PAD_ID;
}
static int64_t hf_start(const tfm_model_config *c) {
    return c->decoder_start == TFM_START_ZERO ? c->vocab : TFM_BOS_ID;
}

static int write_config(const tfm_model_config *c, const char *data_kind, const char *path) {
    tfm_json_writer w;
    tfm_jw_init(&w, 1);
    tfm_jw_begin_object(&w);
    tfm_jw_key(&w, "architectures");
    tfm_jw_begin_array(&w);
    tfm_jw_string(&w, "MarianMTModel");
    tfm_jw_end_array(&w);
    tfm_jw_key(&w, "model_type");
    tfm_jw_string(&w, "marian");
    tfm_jw_key(&w, "activation_function");
    tfm_jw_string(&w, "relu");
    tfm_jw_key(&w, "d_model");
    tfm_jw_int(&w, c->d_model);
    tfm_jw_key(&w, "encoder_layers");
    tfm_jw_int(&w, c->enc_layers);
    tfm_jw_key(&w, "decoder_layers");
    tfm_jw_int(&w, c->dec_layers);
    tfm_jw_key(&w, "num_hidden_layers");
    tfm_jw_int(&w, c->enc_layers);
    tfm_jw_key(&w, "encoder_attention_heads");
    tfm_jw_int(&w, c->n_heads);
    tfm_jw_key(&w, "decoder_attention_heads");
    tfm_jw_int(&w, c->n_heads);
    tfm_jw_key(&w, "encoder_ffn_dim");
    tfm_jw_int(&w, c->d_ff);
    tfm_jw_key(&w, "decoder_ffn_dim");
    tfm_jw_int(&w, c->d_ff);
    tfm_jw_key(&w, "vocab_size");
    tfm_jw_int(&w, hf_vocab(c));
    tfm_jw_key(&w, "decoder_vocab_size");
    tfm_jw_int(&w, hf_vocab(c));
    tfm_jw_key(&w, "max_position_embeddings");
    tfm_jw_int(&w, c->max_len);
    tfm_jw_key(&w, "dropout");
    tfm_jw_float(&w, c->dropout);
    tfm_jw_key(&w, "activation_dropout"); /* the FFN's hidden layer */
    tfm_jw_float(&w, tfm_model_ffn_dropout(c));
    tfm_jw_key(&w, "attention_dropout");
    tfm_jw_float(&w, c->attn_dropout);
    tfm_jw_key(&w, "encoder_layerdrop");
    tfm_jw_double(&w, 0.0);
    tfm_jw_key(&w, "decoder_layerdrop");
    tfm_jw_double(&w, 0.0);
    tfm_jw_key(&w, "init_std");
    tfm_jw_double(&w, 0.02);
    tfm_jw_key(&w, "scale_embedding");
    tfm_jw_bool(&w, 1);
    tfm_jw_key(&w, "normalize_before");
    tfm_jw_bool(&w, 0);
    tfm_jw_key(&w, "normalize_embedding");
    tfm_jw_bool(&w, 0);
    tfm_jw_key(&w, "add_final_layer_norm");
    tfm_jw_bool(&w, 0);
    tfm_jw_key(&w, "static_position_embeddings");
    tfm_jw_bool(&w, 1);
    tfm_jw_key(&w, "is_encoder_decoder");
    tfm_jw_bool(&w, 1);
    tfm_jw_key(&w, "use_cache");
    tfm_jw_bool(&w, 1);
    tfm_jw_key(&w, "pad_token_id");
    tfm_jw_int(&w, hf_pad(c));
    tfm_jw_key(&w, "bos_token_id");
    tfm_jw_int(&w, TFM_BOS_ID);
    tfm_jw_key(&w, "eos_token_id");
    tfm_jw_int(&w, TFM_EOS_ID);
    tfm_jw_key(&w, "forced_eos_token_id");
    tfm_jw_int(&w, TFM_EOS_ID);
    /* zero-start models: the zero row V, as Marian's own models; older ones
     * start from the trained <s> */
    tfm_jw_key(&w, "decoder_start_token_id");
    tfm_jw_int(&w, hf_start(c));
    tfm_jw_key(&w, "share_encoder_decoder_embeddings");
    tfm_jw_bool(&w, c->share_src_emb);
    tfm_jw_key(&w, "tie_word_embeddings");
    tfm_jw_bool(&w, 1);
    tfm_jw_key(&w, "torch_dtype");
    tfm_jw_string(&w, "float32");
    tfm_jw_key(&w, "tfm");
    tfm_jw_begin_object(&w);
    tfm_jw_key(&w, "format_version");
    tfm_jw_int(&w, EXPORT_FORMAT_VERSION);
    tfm_jw_key(&w, "data_kind");
    tfm_jw_string(&w, data_kind);
    /* every model setting, from the one list in tfm/nn.h */
#define JW_INT(v) tfm_jw_int(&w, v)
#define JW_FLOAT(v) tfm_jw_float(&w, v)
#define JW_BOOL(v) tfm_jw_bool(&w, v)
#define JW_START(v) tfm_jw_string(&w, tfm_decoder_start_name(v))
#define JW_NEWBOOL(v) tfm_jw_bool(&w, v)
#define JW_NEWFLOAT(v) tfm_jw_float(&w, v)
#define X(type, field, flag, def, must_match, help)                                                \
    if (TFM_SETTING_WRITTEN_##type(c->field, def)) {                                               \
        tfm_jw_key(&w, #field);                                                                    \
        JW_##type(c->field);                                                                       \
    }
    TFM_MODEL_SETTINGS(X)
#undef X
#undef JW_INT
#undef JW_FLOAT
#undef JW_BOOL
#undef JW_START
#undef JW_NEWBOOL
#undef JW_NEWFLOAT
    tfm_jw_end_object(&w);
    tfm_jw_end_object(&w);
    int rc = tfm_jw_save(&w, path);
    tfm_jw_free(&w);
    return rc;
}

static int write_generation_config(const tfm_model_config *c, const char *path) {
    tfm_json_writer w;
    tfm_jw_init(&w, 1);
    tfm_jw_begin_object(&w);
    tfm_jw_key(&w, "pad_token_id");
    tfm_jw_int(&w, hf_pad(c));
    tfm_jw_key(&w, "bos_token_id");
    tfm_jw_int(&w, TFM_BOS_ID);
    tfm_jw_key(&w, "eos_token_id");
    tfm_jw_int(&w, TFM_EOS_ID);
    tfm_jw_key(&w, "forced_eos_token_id");
    tfm_jw_int(&w, TFM_EOS_ID);
    tfm_jw_key(&w, "decoder_start_token_id");
    tfm_jw_int(&w, hf_start(c));
    /* positions 0 .. max_len-1, the first taken by the start token */
    tfm_jw_key(&w, "max_length");
    tfm_jw_int(&w, c->max_len - 1);
    tfm_jw_key(&w, "num_beams");
    tfm_jw_int(&w, 1);
    /* our decoders never emit <pad> or <s> (the argmax starts at </s>) */
    tfm_jw_key(&w, "bad_words_ids");
    tfm_jw_begin_array(&w);
    tfm_jw_begin_array(&w);
    tfm_jw_int(&w, TFM_PAD_ID);
    tfm_jw_end_array(&w);
    tfm_jw_begin_array(&w);
    tfm_jw_int(&w, TFM_BOS_ID);
    tfm_jw_end_array(&w);
    if (c->decoder_start == TFM_START_ZERO) { /* the zero row */
        tfm_jw_begin_array(&w);
        tfm_jw_int(&w, c->vocab);
        tfm_jw_end_array(&w);
    }
    tfm_jw_end_array(&w);
    tfm_jw_end_object(&w);
    int rc = tfm_jw_save(&w, path);
    tfm_jw_free(&w);
    return rc;
}

/* The bias MarianMTModel adds to the logits, (1, hf_vocab): ours has none,
 * so 0; for zero-start models -1e9 on the ids our decoders never emit
 * (<pad>, <s>, the zero row), so that every runtime's softmax and argmax
 * over the rest are tfm's (tfm normalises over ids >= </s>). Older exports
 * keep all zeros (generation_config.json's bad_words_ids covers HF). */
static void logits_bias(const tfm_model_config *c, float *bias) {
    int64_t n = hf_vocab(c);
    for (int64_t i = 0; i < n; i++)
        bias[i] = c->decoder_start == TFM_START_ZERO &&
                          (i == TFM_PAD_ID || i == TFM_BOS_ID || i == c->vocab)
                      ? -1e9f
                      : 0.0f;
}

int tfm_export_save(const tfm_model *m, const char *data_kind, const char *dir) {
    /* what tfm_export_load accepts, checked before anything is written */
    if (!data_kind || (strcmp(data_kind, "text") && strcmp(data_kind, "toy")))
        return tfm_set_error("export: data kind %s%s%s: must be \"text\" or \"toy\"",
                             data_kind ? "\"" : "", data_kind ? data_kind : "NULL",
                             data_kind ? "\"" : ""),
               1;
    if (tfm_export_check(&m->cfg)) return 1;
    export_map mp;
    if (build_map(m, &mp)) return 1;
    int64_t V = m->cfg.vocab, D = m->cfg.d_model, VH = hf_vocab(&m->cfg);
    tfm_st_tensor *ts = calloc((size_t)mp.n + 1, sizeof *ts);
    float *bias = calloc((size_t)VH, sizeof(float));
    /* zero-start: the tables with the zero row V appended */
    float *rows_tgt = NULL, *rows_src = NULL;
    int rc = 1;
    if (VH > V) {
        rows_tgt = calloc((size_t)(VH * D), sizeof(float));
        rows_src = m->src_emb == m->tgt_emb ? NULL : calloc((size_t)(VH * D), sizeof(float));
        if (!rows_tgt || (m->src_emb != m->tgt_emb && !rows_src)) {
            tfm_set_error("out of memory");
            goto done;
        }
        memcpy(rows_tgt, m->tgt_emb->data, (size_t)(V * D) * sizeof(float));
        if (rows_src) memcpy(rows_src, m->src_emb->data, (size_t)(V * D) * sizeof(float));
    }
    if (!ts || !bias) {
        tfm_set_error("out of memory");
        goto done;
    }
    for (int64_t i = 0; i < mp.n; i++) {
        const tfm_tensor *t = mp.e[i].t;
        ts[i] = (tfm_st_tensor){
            .name = mp.e[i].name, .dtype = TFM_ST_F32, .ndim = t->ndim, .data = t->data};
        for (int d = 0; d < t->ndim; d++) ts[i].shape[d] = t->shape[d];
        if (mp.e[i].vocab_rows && VH > V) {
            ts[i].shape[0] = VH;
            ts[i].data = t == m->tgt_emb ? rows_tgt : rows_src;
        }
    }
    logits_bias(&m->cfg, bias);
    ts[mp.n] = (tfm_st_tensor){.name = "final_logits_bias",
                               .dtype = TFM_ST_F32,
                               .ndim = 2,
                               .shape = {1, VH},
                               .data = bias};
    char path[4096];
    if (tfm_join_into(path, sizeof path, dir, "model.safetensors")) goto done;
    if (tfm_safetensors_write(path, ts, mp.n + 1, NULL, 0)) goto done;
    if (tfm_join_into(path, sizeof path, dir, "config.json")) goto done;
    if (write_config(&m->cfg, data_kind, path)) goto done;
    if (tfm_join_into(path, sizeof path, dir, "generation_config.json")) goto done;
    if (write_generation_config(&m->cfg, path)) goto done;
    rc = 0;
done:
    free(ts);
    free(bias);
    free(rows_tgt);
    free(rows_src);
    free(mp.e);
    return rc;
}

/* ---- loading ------------------------------------------------------------- */

/* Reads the configuration from config.json. The "tfm" section holds every
 * model setting (the list in tfm/nn.h, as write_config writes it; an export
 * written before decoder_start existed has none and is a bos model); the
 * MarianConfig fields must describe a model we can run and repeat the
 * architecture: where they disagree with the section, the file was edited by
 * hand and is not trusted. */
static int read_config(const char *path, tfm_model_config *c, char *kind, size_t kind_cap) {
    tfm_json *doc;
    int not_regular;
    FILE *f = tfm_open_regular(path, &not_regular); /* a FIFO would block the read */
    if (!f) return 1;
    fclose(f);
    if (tfm_json_parse_file(path, NULL, &doc)) return 1;
    int rc = 1;
    const char *s;
    int64_t v;
    double x;
    int b;
    tfm_model_config_default(c);
#define CFG_FAIL(...)                                                                              \
    do {                                                                                           \
        char msg_[512];                                                                            \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                                  \
        tfm_set_error("%s: %s", path, msg_);                                                       \
        goto done;                                                                                 \
    } while (0)
#define CFG_CALL(call, ctx)                                                                        \
    do {                                                                                           \
        if (call) CFG_FAIL("%s%s", ctx, tfm_last_error());                                         \
    } while (0)
    if (doc->type != TFM_JSON_OBJECT)
        CFG_FAIL("expected an object, got %s", tfm_json_type_name(doc->type));
    CFG_CALL(tfm_json_get_string(doc, "model_type", &s), "");
    if (strcmp(s, "marian")) CFG_FAIL("model_type is \"%s\", expected \"marian\"", s);
    CFG_CALL(tfm_json_get_string(doc, "activation_function", &s), "");
    if (strcmp(s, "relu")) CFG_FAIL("activation_function is \"%s\", only \"relu\" is supported", s);
    CFG_CALL(tfm_json_get_bool(doc, "scale_embedding", &b), "");
    if (!b) CFG_FAIL("scale_embedding is false, only true is supported");
    /* MarianConfig switches that change what Hugging Face computes: each
     * must have the value tfm's architecture has where the file gives it */
    static const struct {
        const char *key;
        int want;
        const char *why;
    } switches[] = {
        {"normalize_before", 0, "only post-LN models are supported"},
        {"normalize_embedding", 0, "tfm has no layer norm on the embeddings"},
        {"add_final_layer_norm", 0, "tfm's post-LN stacks have no final layer norm"},
        {"static_position_embeddings", 1, "tfm's positions are fixed sinusoids"},
    };
    for (size_t k = 0; k < sizeof switches / sizeof switches[0]; k++)
        if (tfm_json_get(doc, switches[k].key)) {
            CFG_CALL(tfm_json_get_bool(doc, switches[k].key, &b), "");
            if (b != switches[k].want)
                CFG_FAIL("%s is %s, %s", switches[k].key, b ? "true" : "false", switches[k].why);
        }

    /* every model setting from the "tfm" section, typed as the list says */
    const tfm_json *t = tfm_json_get(doc, "tfm");
    if (!t) CFG_FAIL("no \"tfm\" section: only exports written by tfm export can be loaded");
    if (t->type != TFM_JSON_OBJECT)
        CFG_FAIL("'tfm': expected an object, got %s", tfm_json_type_name(t->type));
    CFG_CALL(tfm_json_get_int64(t, "format_version", &v), "tfm.");
    if (v != EXPORT_FORMAT_VERSION)
        CFG_FAIL("tfm.format_version %lld is not supported (this build reads %d)", (long long)v,
                 EXPORT_FORMAT_VERSION);
    CFG_CALL(tfm_json_get_string(t, "data_kind", &s), "tfm.");
    if (strcmp(s, "text") && strcmp(s, "toy"))
        CFG_FAIL("tfm.data_kind is \"%s\", expected \"text\" or \"toy\"", s);
    snprintf(kind, kind_cap, "%s", s);
    tfm_model_config section;
    tfm_model_config_default(&section);
#define GET_INT(field) CFG_CALL(tfm_json_get_int64(t, #field, &section.field), "tfm.");
#define GET_FLOAT(field)                                                                           \
    CFG_CALL(tfm_json_get_double(t, #field, &x), "tfm.");                                          \
    section.field = (float)x;
#define GET_BOOL(field)                                                                            \
    CFG_CALL(tfm_json_get_bool(t, #field, &b), "tfm.");                                            \
    section.field = b;
#define GET_START(field)                                                                           \
    section.field = TFM_START_BOS; /* exports written before the setting */                        \
    if (tfm_json_get(t, #field)) {                                                                 \
        CFG_CALL(tfm_json_get_string(t, #field, &s), "tfm.");                                      \
        int start_ = tfm_decoder_start_parse(s);                                                   \
        if (start_ < 0) CFG_FAIL("tfm." #field " is \"%s\", expected \"bos\" or \"zero\"", s);     \
        section.field = start_;                                                                    \
    }
#define GET_NEWBOOL(field)                                                                         \
    section.field = 0; /* exports written before the setting */                                    \
    if (tfm_json_get(t, #field)) {                                                                 \
        CFG_CALL(tfm_json_get_bool(t, #field, &b), "tfm.");                                        \
        section.field = b;                                                                         \
    }
#define GET_NEWFLOAT(field) /* exports written before the setting: its default */                  \
    if (tfm_json_get(t, #field)) {                                                                 \
        CFG_CALL(tfm_json_get_double(t, #field, &x), "tfm.");                                      \
        section.field = (float)x;                                                                  \
    }
#define X(type, field, flag, def, must_match, help) GET_##type(field)
    TFM_MODEL_SETTINGS(X)
#undef X
#undef GET_INT
#undef GET_FLOAT
#undef GET_BOOL
#undef GET_START
#undef GET_NEWBOOL
#undef GET_NEWFLOAT

    /* the architecture as the MarianConfig fields give it, over the section
     * (the ids depend on the decoder-start convention read above) */
    *c = section;
    CFG_CALL(tfm_json_get_int64(doc, "eos_token_id", &v), "");
    if (v != TFM_EOS_ID) CFG_FAIL("eos_token_id is %lld, expected %d", (long long)v, TFM_EOS_ID);
    CFG_CALL(tfm_json_get_int64(doc, "d_model", &c->d_model), "");
    CFG_CALL(tfm_json_get_int64(doc, "encoder_layers", &c->enc_layers), "");
    CFG_CALL(tfm_json_get_int64(doc, "decoder_layers", &c->dec_layers), "");
    CFG_CALL(tfm_json_get_int64(doc, "encoder_attention_heads", &c->n_heads), "");
    CFG_CALL(tfm_json_get_int64(doc, "decoder_attention_heads", &v), "");
    if (v != c->n_heads)
        CFG_FAIL("decoder_attention_heads %lld differs from encoder_attention_heads %lld",
                 (long long)v, (long long)c->n_heads);
    CFG_CALL(tfm_json_get_int64(doc, "encoder_ffn_dim", &c->d_ff), "");
    CFG_CALL(tfm_json_get_int64(doc, "decoder_ffn_dim", &v), "");
    if (v != c->d_ff)
        CFG_FAIL("decoder_ffn_dim %lld differs from encoder_ffn_dim %lld", (long long)v,
                 (long long)c->d_ff);
    CFG_CALL(tfm_json_get_int64(doc, "vocab_size", &c->vocab), "");
    if (tfm_json_get(doc, "decoder_vocab_size")) {
        CFG_CALL(tfm_json_get_int64(doc, "decoder_vocab_size", &v), "");
        if (v != c->vocab)
            CFG_FAIL("decoder_vocab_size %lld differs from vocab_size %lld", (long long)v,
                     (long long)c->vocab);
    }
    /* zero-start: the last id is the zero row, not one of ours (hf_vocab) */
    if (c->vocab < 1) CFG_FAIL("vocab_size %lld: must be positive", (long long)c->vocab);
    if (c->decoder_start == TFM_START_ZERO) c->vocab--;
    CFG_CALL(tfm_json_get_int64(doc, "decoder_start_token_id", &v), "");
    if (v != hf_start(c)) {
        if (c->decoder_start == TFM_START_ZERO)
            CFG_FAIL("decoder_start_token_id is %lld, but a zero-start model (tfm.decoder_start) "
                     "starts from its last id, the zero row %lld",
                     (long long)v, (long long)hf_start(c));
        CFG_FAIL("decoder_start_token_id is %lld, tfm models start from <s> = %d", (long long)v,
                 TFM_BOS_ID);
    }
    CFG_CALL(tfm_json_get_int64(doc, "pad_token_id", &v), "");
    if (v != hf_pad(c))
        CFG_FAIL("pad_token_id is %lld, expected %lld", (long long)v, (long long)hf_pad(c));
    CFG_CALL(tfm_json_get_int64(doc, "max_position_embeddings", &c->max_len), "");
    CFG_CALL(tfm_json_get_bool(doc, "share_encoder_decoder_embeddings", &b), "");
    c->share_src_emb = b;
    if (tfm_json_get(doc, "tie_word_embeddings")) {
        CFG_CALL(tfm_json_get_bool(doc, "tie_word_embeddings", &b), "");
        if (!b) CFG_FAIL("tie_word_embeddings is false, tfm models tie the output projection");
    }
    if (tfm_export_check(c) || tfm_model_config_check(c)) CFG_FAIL("%s", tfm_last_error());
#define SHOW_INT(v) snprintf(is, sizeof is, "%lld", (long long)(v))
#define SHOW_FLOAT(v) snprintf(is, sizeof is, "%.9g", (double)(v))
#define SHOW_BOOL(v) snprintf(is, sizeof is, "%s", (v) ? "true" : "false")
#define SHOW_START(v) snprintf(is, sizeof is, "%s", tfm_decoder_start_name(v))
#define SHOW_NEWBOOL(v) SHOW_BOOL(v)
#define SHOW_NEWFLOAT(v) SHOW_FLOAT(v)
#define X(type, field, flag, def, must_match, help)                                                \
    if (section.field != c->field) {                                                               \
        char is[32], says[32];                                                                     \
        SHOW_##type(c->field);                                                                     \
        memcpy(says, is, sizeof is);                                                               \
        SHOW_##type(section.field);                                                                \
        CFG_FAIL("tfm.%s is %s, but the MarianConfig fields say %s", #field, is, says);            \
    }
    TFM_MODEL_SETTINGS(X)
#undef X
#undef SHOW_INT
#undef SHOW_FLOAT
#undef SHOW_BOOL
#undef SHOW_START
#undef SHOW_NEWBOOL
#undef SHOW_NEWFLOAT
    rc = 0;
#undef CFG_CALL
#undef CFG_FAIL
done:
    tfm_json_free(doc);
    return rc;
}

int tfm_export_load(const char *dir, tfm_model *m, tfm_kv *meta) {
    memset(m, 0, sizeof *m);
    char path[4096], kind[16];
    tfm_model_config c;
    if (tfm_join_into(path, sizeof path, dir, "config.json")) return 1;
    if (read_config(path, &c, kind, sizeof kind)) return 1;
    if (tfm_join_into(path, sizeof path, dir, "model.safetensors")) return 1;
    tfm_st_file f;
    if (tfm_safetensors_open(path, &f)) return 1;
    /* the weights are in the file: a config.json asking for more parameters
     * than it can hold is refused before anything that size is allocated */
    int64_t want = tfm_model_param_count(&c);
    if (want < 0 || (uint64_t)want > f.size / sizeof(float)) {
        tfm_set_error("%s: config.json describes %lld parameters, more than the %zu bytes of "
                      "this file hold",
                      path, (long long)want, f.size);
        tfm_safetensors_close(&f);
        return 1;
    }
    export_map mp = {0};
    float *scratch = NULL;
    int rc = 1;
    if (tfm_model_init_empty(m, &c) || build_map(m, &mp)) goto done;
    int64_t V = c.vocab, D = c.d_model, VH = hf_vocab(&c);
    scratch = malloc((size_t)(VH * (D > 2 ? D : 2)) * sizeof(float));
    if (!scratch) {
        tfm_set_error("out of memory");
        goto done;
    }
    for (int64_t i = 0; i < mp.n; i++) {
        const export_entry *e = &mp.e[i];
        if (e->vocab_rows && VH > V) {
            /* (V + 1, D): our rows, then the zero row of the decoder start */
            if (tfm_st_read_f32(&f, e->name, 2, (int64_t[]){VH, D}, scratch)) goto done;
            for (int64_t j = V * D; j < VH * D; j++)
                if (scratch[j] != 0.0f) {
                    tfm_set_error("%s: tensor %s: row %lld (decoder_start_token_id) is not zero; "
                                  "a zero-start model starts from a zero vector",
                                  path, e->name, (long long)V);
                    goto done;
                }
            if (e->primary) {
                memcpy(e->t->data, scratch, (size_t)(V * D) * sizeof(float));
                continue;
            }
        } else if (e->primary) {
            if (tfm_st_read_f32(&f, e->name, e->t->ndim, e->t->shape, e->t->data)) goto done;
            continue;
        }
        /* a tied copy: it must hold exactly the same values */
        if (!(e->vocab_rows && VH > V) &&
            tfm_st_read_f32(&f, e->name, e->t->ndim, e->t->shape, scratch))
            goto done;
        if (memcmp(scratch, e->t->data, (size_t)e->t->n * sizeof(float))) {
            const char *first = NULL;
            for (int64_t j = 0; j < i && !first; j++)
                if (mp.e[j].t == e->t) first = mp.e[j].name;
            tfm_set_error("%s: tensor %s differs from %s, but the model ties them", path, e->name,
                          first ? first : "?");
            goto done;
        }
    }
    /* weights that are not finite decode to empty lines without a word: a
     * damaged or hand-edited file (no tfm run saves one) */
    for (int64_t i = 0; i < mp.n; i++) {
        const tfm_tensor *t = mp.e[i].t;
        if (!mp.e[i].primary) continue;
        for (int64_t j = 0; j < t->n; j++)
            if (!isfinite(t->data[j])) {
                tfm_set_error("%s: tensor %s: element %lld is %g (weights must be finite)", path,
                              mp.e[i].name, (long long)j, (double)t->data[j]);
                goto done;
            }
    }
    if (tfm_st_read_f32(&f, "final_logits_bias", 2, (int64_t[]){1, VH}, scratch)) goto done;
    float *want_bias = scratch + VH; /* scratch holds VH * max(D, 2) floats */
    logits_bias(&c, want_bias);
    for (int64_t j = 0; j < VH; j++)
        if (scratch[j] != want_bias[j]) {
            if (c.decoder_start == TFM_START_ZERO)
                tfm_set_error("%s: tensor final_logits_bias: entry %lld is %g, expected %g (tfm "
                              "models have no output bias; -1e9 keeps <pad>, <s> and the zero "
                              "row out of a zero-start model's output)",
                              path, (long long)j, (double)scratch[j], (double)want_bias[j]);
            else
                tfm_set_error("%s: tensor final_logits_bias is not zero (entry %lld is %g); tfm "
                              "models have no output bias",
                              path, (long long)j, (double)scratch[j]);
            goto done;
        }
    for (int64_t k = 0; k < f.n_tensors; k++) {
        const char *name = f.tensors[k].name;
        int known = !strcmp(name, "final_logits_bias");
        for (int64_t i = 0; i < mp.n && !known; i++) known = !strcmp(name, mp.e[i].name);
        if (!known) {
            tfm_set_error("%s: unexpected tensor %s (not part of this model's layout)", path, name);
            goto done;
        }
    }
    if (meta) {
        tfm_kv_set(meta, "data.kind", "%s", kind);
        tfm_model_config_to_kv(&c, meta);
    }
    rc = 0;
done:
    if (rc) tfm_model_free(m);
    free(scratch);
    free(mp.e);
    tfm_safetensors_close(&f);
    return rc;
}
