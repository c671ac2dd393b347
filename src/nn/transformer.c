/* The encoder-decoder Transformer, built from the ops. */
#include <math.h>
#include <string.h>

#include "tfm/nn.h"

/* tfm_model_config_default and the other settings-table helpers: config.c */

int tfm_model_config_check(const tfm_model_config *c) {
    if (c->vocab < 4)
        return tfm_set_error("vocab %lld: need at least 4 (pad, <s>, </s>, one symbol)",
                             (long long)c->vocab),
               1;
    if (c->d_model < 2 || c->d_model % 2)
        return tfm_set_error("d-model %lld: must be even and >= 2", (long long)c->d_model), 1;
    if (c->n_heads < 1)
        return tfm_set_error("heads %lld: must be at least 1", (long long)c->n_heads), 1;
    if (c->d_model % c->n_heads)
        return tfm_set_error("heads %lld: must divide d-model %lld", (long long)c->n_heads,
                             (long long)c->d_model),
               1;
    if (c->d_ff < 1) return tfm_set_error("d-ff %lld: must be positive", (long long)c->d_ff), 1;
    if (c->enc_layers < 1)
        return tfm_set_error("enc-layers %lld: need at least 1 encoder layer",
                             (long long)c->enc_layers),
               1;
    if (c->dec_layers < 1)
        return tfm_set_error("dec-layers %lld: need at least 1 decoder layer",
                             (long long)c->dec_layers),
               1;
    if (c->max_len < 2)
        return tfm_set_error("model-max-len %lld: must be at least 2", (long long)c->max_len), 1;
    if (!tfm_decoder_start_name(c->decoder_start))
        return tfm_set_error("decoder-start %d: must be %d (bos) or %d (zero)", c->decoder_start,
                             TFM_START_BOS, TFM_START_ZERO),
               1;
    /* Bounds on what a flag, a checkpoint or an export may ask for, checked
     * before anything is allocated: every size product below then fits in
     * int64_t, and a crafted file cannot make us compute a table for minutes. */
    if (c->vocab > TFM_MAX_VOCAB)
        return tfm_set_error("vocab %lld: at most %lld", (long long)c->vocab,
                             (long long)TFM_MAX_VOCAB),
               1;
    if (c->d_model > TFM_MAX_DIM)
        return tfm_set_error("d-model %lld: at most %lld", (long long)c->d_model,
                             (long long)TFM_MAX_DIM),
               1;
    if (c->d_ff > TFM_MAX_FF)
        return tfm_set_error("d-ff %lld: at most %lld", (long long)c->d_ff, (long long)TFM_MAX_FF),
               1;
    if (c->enc_layers > TFM_MAX_LAYERS)
        return tfm_set_error("enc-layers %lld: at most %d", (long long)c->enc_layers,
                             TFM_MAX_LAYERS),
               1;
    if (c->dec_layers > TFM_MAX_LAYERS)
        return tfm_set_error("dec-layers %lld: at most %d", (long long)c->dec_layers,
                             TFM_MAX_LAYERS),
               1;
    if (c->max_len > TFM_MAX_POSITIONS)
        return tfm_set_error("model-max-len %lld: at most %lld positions", (long long)c->max_len,
                             (long long)TFM_MAX_POSITIONS),
               1;
    int64_t table = c->max_len * c->d_model, params = tfm_model_param_count(c);
    if (table > TFM_MAX_TENSOR_FLOATS)
        return tfm_set_error("model-max-len %lld x d-model %lld: position table too large",
                             (long long)c->max_len, (long long)c->d_model),
               1;
    if (params < 0 || params > TFM_MAX_PARAMS)
        return tfm_set_error("model too large: more than %lld parameters",
                             (long long)TFM_MAX_PARAMS),
               1;
    if (!(c->dropout >= 0 && c->dropout < 1))
        return tfm_set_error("dropout %g: must be in [0, 1)", (double)c->dropout), 1;
    if (!(c->ffn_dropout == -1 || (c->ffn_dropout >= 0 && c->ffn_dropout < 1)))
        return tfm_set_error("ffn-dropout %g: must be in [0, 1), or -1 (the rate of dropout)",
                             (double)c->ffn_dropout),
               1;
    if (!(c->attn_dropout >= 0 && c->attn_dropout < 1))
        return tfm_set_error("attn-dropout %g: must be in [0, 1)", (double)c->attn_dropout), 1;
    /* the float that is used: 1e300 becomes inf, 1e-50 becomes 0 */
    if (!(c->ln_eps > 0) || !isfinite(c->ln_eps))
        return tfm_set_error("ln-eps %g: must be positive and finite as a float",
                             (double)c->ln_eps),
               1;
    return 0;
}

static tfm_tensor *param(tfm_model *m, const char *fmt, const char *prefix, const char *suffix,
                         int ndim, int64_t d0, int64_t d1) {
    char name[128];
    snprintf(name, sizeof name, fmt, prefix, suffix);
    int64_t shape[2] = {d0, d1};
    return tfm_params_add(&m->params, name, ndim, shape);
}

static void declare_attn(tfm_model *m, tfm_attn_params *a, const char *prefix) {
    int64_t D = m->cfg.d_model;
    a->q_w = param(m, "%s.%s", prefix, "q.weight", 2, D, D);
    a->q_b = param(m, "%s.%s", prefix, "q.bias", 1, D, 0);
    a->k_w = param(m, "%s.%s", prefix, "k.weight", 2, D, D);
    a->k_b = param(m, "%s.%s", prefix, "k.bias", 1, D, 0);
    a->v_w = param(m, "%s.%s", prefix, "v.weight", 2, D, D);
    a->v_b = param(m, "%s.%s", prefix, "v.bias", 1, D, 0);
    a->o_w = param(m, "%s.%s", prefix, "o.weight", 2, D, D);
    a->o_b = param(m, "%s.%s", prefix, "o.bias", 1, D, 0);
}

static void declare_ln(tfm_model *m, tfm_ln_params *ln, const char *prefix) {
    ln->w = param(m, "%s.%s", prefix, "weight", 1, m->cfg.d_model, 0);
    ln->b = param(m, "%s.%s", prefix, "bias", 1, m->cfg.d_model, 0);
}

static void declare_layer(tfm_model *m, tfm_layer_params *L, const char *stack, int64_t i,
                          int dec) {
    char p[64];
    int64_t D = m->cfg.d_model, F = m->cfg.d_ff;
    snprintf(L->label_self, sizeof L->label_self, "%s.%lld.self_attn", stack, (long long)i);
    snprintf(L->label_cross, sizeof L->label_cross, "%s.%lld.cross_attn", stack, (long long)i);
    snprintf(L->label_ffn, sizeof L->label_ffn, "%s.%lld.ffn", stack, (long long)i);
    declare_attn(m, &L->self_attn, L->label_self);
    snprintf(p, sizeof p, "%s.%lld.ln1", stack, (long long)i);
    declare_ln(m, &L->ln1, p);
    if (dec) {
        declare_attn(m, &L->cross_attn, L->label_cross);
        snprintf(p, sizeof p, "%s.%lld.ln2", stack, (long long)i);
        declare_ln(m, &L->ln2, p);
    }
    L->fc1_w = param(m, "%s.%s", L->label_ffn, "fc1.weight", 2, F, D);
    L->fc1_b = param(m, "%s.%s", L->label_ffn, "fc1.bias", 1, F, 0);
    L->fc2_w = param(m, "%s.%s", L->label_ffn, "fc2.weight", 2, D, F);
    L->fc2_b = param(m, "%s.%s", L->label_ffn, "fc2.bias", 1, D, 0);
    snprintf(p, sizeof p, "%s.%lld.%s", stack, (long long)i, dec ? "ln3" : "ln2");
    if (dec)
        declare_ln(m, &L->ln3, p);
    else
        declare_ln(m, &L->ln2, p);
}

int tfm_model_init_empty(tfm_model *m, const tfm_model_config *c) {
    TFM_ASSERT(m && c, "tfm_model_init: NULL model or configuration");
    memset(m, 0, sizeof *m);
    if (tfm_model_config_check(c)) return 1;
    m->cfg = *c;
    tfm_params_init(&m->params);
    int64_t V = c->vocab, D = c->d_model;
    m->tgt_emb = param(m, "%s%s", "tgt_emb.weight", "", 2, V, D);
    m->src_emb = c->share_src_emb ? m->tgt_emb : param(m, "%s%s", "src_emb.weight", "", 2, V, D);
    m->enc = calloc((size_t)c->enc_layers, sizeof *m->enc);
    m->dec = calloc((size_t)c->dec_layers, sizeof *m->dec);
    if (!m->enc || !m->dec) return tfm_set_error("out of memory"), 1;
    for (int64_t i = 0; i < c->enc_layers; i++) declare_layer(m, &m->enc[i], "enc", i, 0);
    for (int64_t i = 0; i < c->dec_layers; i++) declare_layer(m, &m->dec[i], "dec", i, 1);
    if (c->pre_ln) {
        declare_ln(m, &m->enc_final, "enc.ln_final");
        declare_ln(m, &m->dec_final, "dec.ln_final");
    }
    if (tfm_params_alloc(&m->params)) return 1;
    m->pos_table = tfm_alloc((size_t)(c->max_len * D) * sizeof(float));
    if (!m->pos_table) return 1;
    if (c->marian_positions) {
        /* marian-dev's SinusoidalPositionEmbeddings, the same float
         * expressions: v = pos * exp(i * -log(10000) / (D/2 - 1)); channel
         * i < D/2: sin(v), channel D/2 + i: cos(v) */
        float half = (float)(D / 2), inc = logf(10000.f) / (half - 1.f);
        for (int64_t pos = 0; pos < c->max_len; pos++)
            for (int64_t i = 0; i < D / 2; i++) {
                float v = (float)pos * expf((float)i * -inc);
                m->pos_table[pos * D + i] = sinf(v);
                m->pos_table[pos * D + D / 2 + i] = cosf(v);
            }
    } else {
        /* channel i < D/2: sin(pos / 10000^(2i/D)); channel D/2 + i: cos of the same */
        for (int64_t pos = 0; pos < c->max_len; pos++)
            for (int64_t i = 0; i < D / 2; i++) {
                double angle = (double)pos / pow(10000.0, 2.0 * (double)i / (double)D);
                m->pos_table[pos * D + i] = (float)sin(angle);
                m->pos_table[pos * D + D / 2 + i] = (float)cos(angle);
            }
    }
    return 0;
}

int tfm_model_init(tfm_model *m, const tfm_model_config *c) {
    if (tfm_model_init_empty(m, c)) return 1;
    tfm_model_init_weights(m, 0);
    return 0;
}

int tfm_model_pack(tfm_model *m, tfm_precision prec) {
    for (int64_t i = 0; i < m->params.count; i++) {
        tfm_tensor *p = m->params.items[i];
        /* the GEMM weights: every matrix but a source embedding of its own
         * (looked up, never multiplied) */
        if (p->ndim != 2 || (p == m->src_emb && p != m->tgt_emb)) continue;
        int ok;
        if (prec == TFM_BF16)
            ok = p->bf16 || (p->bf16 = tfm_bf16_weight_pack(p->data, p->shape[0], p->shape[1]));
        else
            ok = p->f32 || (p->f32 = tfm_f32_weight_pack(p->data, p->shape[0], p->shape[1]));
        if (!ok) {
            tfm_model_unpack(m, prec);
            tfm_set_error("out of memory packing %s for %s", p->name, tfm_precision_name(prec));
            return 1;
        }
    }
    return 0;
}

int tfm_model_packed(const tfm_model *m, tfm_precision prec) {
    return m->tgt_emb && (prec == TFM_BF16 ? m->tgt_emb->bf16 != NULL : m->tgt_emb->f32 != NULL);
}

void tfm_model_unpack(tfm_model *m, tfm_precision prec) {
    for (int64_t i = 0; i < m->params.count; i++) {
        tfm_tensor *p = m->params.items[i];
        if (prec == TFM_BF16) {
            tfm_bf16_weight_free((tfm_bf16_weight *)p->bf16);
            p->bf16 = NULL;
        } else {
            tfm_f32_weight_free((tfm_f32_weight *)p->f32);
            p->f32 = NULL;
        }
    }
}

void tfm_model_free(tfm_model *m) {
    tfm_model_unpack(m, TFM_BF16);
    tfm_model_unpack(m, TFM_FP32);
    tfm_params_free(&m->params);
    free(m->enc);
    free(m->dec);
    tfm_free(m->pos_table);
    memset(m, 0, sizeof *m);
}

const char *tfm_emb_init_name(int init) {
    return init == TFM_EMB_INIT_XAVIER ? "xavier" : init == TFM_EMB_INIT_NORMAL ? "normal" : NULL;
}

int tfm_emb_init_parse(const char *name) {
    if (!strcmp(name, "xavier")) return TFM_EMB_INIT_XAVIER;
    if (!strcmp(name, "normal")) return TFM_EMB_INIT_NORMAL;
    return -1;
}

float tfm_model_ffn_dropout(const tfm_model_config *c) {
    return c->ffn_dropout < 0 ? c->dropout : c->ffn_dropout;
}

void tfm_model_init_weights(tfm_model *m, uint64_t seed) {
    tfm_model_init_weights_emb(m, seed, TFM_EMB_INIT_XAVIER);
}

void tfm_model_init_weights_emb(tfm_model *m, uint64_t seed, int emb_init) {
    TFM_ASSERT(emb_init == TFM_EMB_INIT_XAVIER || emb_init == TFM_EMB_INIT_NORMAL);
    tfm_rng rng;
    tfm_rng_seed(&rng, seed);
    for (int64_t i = 0; i < m->params.count; i++) {
        tfm_tensor *p = m->params.items[i];
        size_t len = strlen(p->name);
        if (emb_init == TFM_EMB_INIT_NORMAL && (p == m->src_emb || p == m->tgt_emb)) {
            /* (V, D) from N(0, 1/D), Box-Muller on two draws per number */
            double sd = 1.0 / sqrt((double)p->shape[1]);
            for (int64_t j = 0; j < p->n; j++) {
                double u1 = tfm_rng_double(&rng), u2 = tfm_rng_double(&rng);
                if (u1 < 1e-300) u1 = 1e-300; /* log(0) */
                p->data[j] = (float)(sd * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
            }
        } else if (p->ndim == 2) {
            double bound = sqrt(6.0 / (double)(p->shape[0] + p->shape[1]));
            for (int64_t j = 0; j < p->n; j++)
                p->data[j] = (float)((2.0 * tfm_rng_double(&rng) - 1.0) * bound);
        } else {
            /* LayerNorm weights start at 1, every bias at 0 */
            int is_ln_weight = len > 7 && !strcmp(p->name + len - 7, ".weight");
            for (int64_t j = 0; j < p->n; j++) p->data[j] = is_ln_weight ? 1.0f : 0.0f;
        }
    }
}

/* ---- building blocks ------------------------------------------------------- */

/* tokens (B, T) -> dropout(emb[tokens] * sqrt(D) + pos[pos0 .. pos0+T)).
 * In the decoder of a zero-start model <s> embeds to zeros: its rows of the
 * lookup are cleared, and the op is told to pass <s> no gradient (the pad id
 * argument; the decoder's pad rows then get a gradient, which is exactly zero:
 * padded target positions feed no loss and are masked as keys). */
static tfm_tensor *embed(tfm_model *m, tfm_tape *t, tfm_tensor *table, const int32_t *ids,
                         int64_t B, int64_t T, int64_t pos0, int decoder) {
    int64_t D = m->cfg.d_model;
    if (pos0 + T > m->cfg.max_len) {
        tfm_set_error("sequence of %lld positions exceeds max-len %lld", (long long)(pos0 + T),
                      (long long)m->cfg.max_len);
        return NULL;
    }
    int64_t shape[3] = {B, T, D};
    tfm_tape_label(t, table == m->src_emb ? "src_emb" : "tgt_emb");
    int zero_start = decoder && m->cfg.decoder_start == TFM_START_ZERO;
    tfm_tensor *e = tfm_embedding(t, table, ids, 3, shape, sqrtf((float)D),
                                  zero_start ? TFM_BOS_ID : TFM_PAD_ID);
    tfm_tensor *pos = tfm_tape_tensor(t, 3, shape, 0);
    if (!e || !pos) return NULL;
    if (zero_start) /* before anything reads e; the backward never reads it */
        for (int64_t i = 0; i < B * T; i++)
            if (ids[i] == TFM_BOS_ID) memset(e->data + i * D, 0, (size_t)D * sizeof(float));
    for (int64_t b = 0; b < B; b++)
        memcpy(pos->data + b * T * D, m->pos_table + pos0 * D, (size_t)(T * D) * sizeof(float));
    return tfm_dropout(t, tfm_add(t, e, pos), m->cfg.dropout);
}

static tfm_tensor *attention_block(tfm_model *m, tfm_tape *t, const tfm_attn_params *a,
                                   tfm_tensor *xq, tfm_tensor *xkv, const uint8_t *key_pad,
                                   int causal, float **probs_out) {
    tfm_tensor *q = tfm_linear(t, xq, a->q_w, a->q_b);
    tfm_tensor *k = tfm_linear(t, xkv, a->k_w, a->k_b);
    tfm_tensor *v = tfm_linear(t, xkv, a->v_w, a->v_b);
    tfm_tensor *o =
        tfm_attention(t, q, k, v, m->cfg.n_heads, key_pad, causal, m->cfg.attn_dropout, probs_out);
    return tfm_linear(t, o, a->o_w, a->o_b);
}

static tfm_tensor *ffn_block(tfm_model *m, tfm_tape *t, const tfm_layer_params *L, tfm_tensor *x) {
    tfm_tensor *h = tfm_relu(t, tfm_linear(t, x, L->fc1_w, L->fc1_b));
    return tfm_linear(t, tfm_dropout(t, h, tfm_model_ffn_dropout(&m->cfg)), L->fc2_w, L->fc2_b);
}

/* post-LN: LN(x + dropout(y));  pre-LN: x + dropout(y) (y computed from LN(x)) */
static tfm_tensor *residual(tfm_model *m, tfm_tape *t, tfm_tensor *x, tfm_tensor *y,
                            const tfm_ln_params *ln) {
    tfm_tensor *s = tfm_add(t, x, tfm_dropout(t, y, m->cfg.dropout));
    return m->cfg.pre_ln ? s : tfm_layernorm(t, s, ln->w, ln->b, m->cfg.ln_eps);
}

static tfm_tensor *pre_norm(tfm_model *m, tfm_tape *t, tfm_tensor *x, const tfm_ln_params *ln) {
    return m->cfg.pre_ln ? tfm_layernorm(t, x, ln->w, ln->b, m->cfg.ln_eps) : x;
}

tfm_tensor *tfm_model_encode(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                             int64_t B, int64_t S) {
    tfm_tensor *x = embed(m, t, m->src_emb, src, B, S, 0, 0);
    for (int64_t i = 0; x && i < m->cfg.enc_layers; i++) {
        tfm_layer_params *L = &m->enc[i];
        /* Without gradients nothing reads a layer's intermediates once its
         * output exists: the output goes into the input's buffer (made by
         * this function, same shape) and the arena goes back to the mark, so
         * the encoder needs one layer's activations, not every layer's. */
        tfm_tensor *in = x;
        size_t layer_mark = tfm_arena_mark(&t->arena);
        tfm_tape_label(t, L->label_self);
        tfm_tensor *h = pre_norm(m, t, x, &L->ln1);
        float *probs = NULL;
        x = residual(m, t, x,
                     attention_block(m, t, &L->self_attn, h, h, src_pad, 0,
                                     m->capture_self_attn ? &probs : NULL),
                     &L->ln1);
        if (probs) {
            int64_t n = B * m->cfg.n_heads * S * S;
            memcpy(m->capture_self_attn + i * n, probs, (size_t)n * sizeof(float));
        }
        tfm_tape_label(t, L->label_ffn);
        h = pre_norm(m, t, x, &L->ln2);
        x = residual(m, t, x, ffn_block(m, t, L, h), &L->ln2);
        if (x && t->no_grad) {
            memcpy(in->data, x->data, (size_t)x->n * sizeof(float));
            tfm_arena_rewind(&t->arena, layer_mark);
            x = in;
        }
    }
    if (x && m->cfg.pre_ln)
        x = tfm_layernorm(t, x, m->enc_final.w, m->enc_final.b, m->cfg.ln_eps);
    return x;
}

/* ---- the decoder layer: one code path for training and cached decoding ------ */

/* What a decoder layer's attention reads: the whole target sequence at once
 * (training and teacher forcing: causal self-attention, cross-attention to
 * the encoder output), or one new position per row against the key/value
 * cache (incremental decoding). Everything else in the layer is shared. */
typedef struct {
    tfm_tensor *memory; /* (B, S, D) encoder output; teacher forcing only */
    const uint8_t *src_pad, *tgt_pad;
    tfm_kv_cache *cache; /* non-NULL: cached decoding of position cache->len */
} dec_inputs;

/* q (rows, 1, D) against gathered keys/values; probs (rows, H, Tk) or NULL */
static tfm_tensor *cached_attention(tfm_model *m, tfm_tape *t, tfm_kv_cache *c, tfm_tensor *q,
                                    const float *k, const float *v, tfm_attn_gather *g,
                                    float **probs) {
    if (!q) return NULL;
    tfm_tensor *out = tfm_tape_tensor(t, 3, q->shape, 0);
    if (!out) return NULL;
    g->rows = c->rows;
    g->D = m->cfg.d_model;
    g->H = m->cfg.n_heads;
    g->precision = t->precision; /* as tfm_attention's GEMMs */
    if (probs) {
        *probs = tfm_arena_alloc(&t->arena, (size_t)(c->rows * g->H * g->Tk) * sizeof(float));
        if (!*probs) return NULL;
    }
    tfm_k_attention_decode(out->data, probs ? *probs : NULL, q->data, k, v, g, c->scratch);
    return out;
}

static tfm_tensor *self_attention(tfm_model *m, tfm_tape *t, int64_t l, tfm_tensor *h,
                                  const dec_inputs *in) {
    const tfm_attn_params *a = &m->dec[l].self_attn;
    if (!in->cache) return attention_block(m, t, a, h, h, in->tgt_pad, 1, NULL);
    tfm_kv_cache *c = in->cache;
    int64_t D = m->cfg.d_model, layer = l * c->T_max * c->B * D;
    tfm_tensor *q = tfm_linear(t, h, a->q_w, a->q_b);
    if (!q) return NULL;
    /* this position's keys and values go to slot r of position len: the
     * projections write there directly (the GEMM tfm_linear would run, so
     * the same values, without a tape tensor and a copy) */
    float *kd = c->self_k + layer + c->len * c->B * D, *vd = c->self_v + layer + c->len * c->B * D;
    tfm_linear_into(t, h, a->k_w, a->k_b, kd);
    tfm_linear_into(t, h, a->v_w, a->v_b, vd);
    tfm_attn_gather g = {
        .Tk = c->len + 1, .pos_stride = c->B * D, .slot = c->slot, .slot_ld = c->T_max};
    tfm_tensor *o = cached_attention(m, t, c, q, c->self_k + layer, c->self_v + layer, &g, NULL);
    return tfm_linear(t, o, a->o_w, a->o_b);
}

static tfm_tensor *cross_attention(tfm_model *m, tfm_tape *t, int64_t l, tfm_tensor *h,
                                   const dec_inputs *in) {
    const tfm_attn_params *a = &m->dec[l].cross_attn;
    if (!in->cache) return attention_block(m, t, a, h, in->memory, in->src_pad, 0, NULL);
    tfm_kv_cache *c = in->cache;
    int64_t D = m->cfg.d_model, H = m->cfg.n_heads, S = c->S, layer = l * c->B * S * D;
    tfm_tensor *q = tfm_linear(t, h, a->q_w, a->q_b);
    tfm_attn_gather g = {.Tk = S,
                         .pos_stride = D,
                         .group = c->src_of_row,
                         .group_stride = S * D,
                         .key_pad = c->src_pad,
                         .keys_t = c->cross_kt + layer};
    float *probs = NULL;
    tfm_tensor *o = cached_attention(m, t, c, q, c->cross_k + layer, c->cross_v + layer, &g,
                                     c->attn_cross ? &probs : NULL);
    if (o && probs) /* attn_cross: (layers, B, H, T_max, S) */
        for (int64_t rh = 0; rh < c->rows * H; rh++)
            memcpy(c->attn_cross + ((l * c->B * H + rh) * c->T_max + c->len) * S, probs + rh * S,
                   (size_t)S * sizeof(float));
    return tfm_linear(t, o, a->o_w, a->o_b);
}

static tfm_tensor *decoder_layer(tfm_model *m, tfm_tape *t, int64_t l, tfm_tensor *x,
                                 const dec_inputs *in) {
    tfm_layer_params *L = &m->dec[l];
    tfm_tape_label(t, L->label_self);
    tfm_tensor *h = pre_norm(m, t, x, &L->ln1);
    x = residual(m, t, x, self_attention(m, t, l, h, in), &L->ln1);
    tfm_tape_label(t, L->label_cross);
    h = pre_norm(m, t, x, &L->ln2);
    x = residual(m, t, x, cross_attention(m, t, l, h, in), &L->ln2);
    tfm_tape_label(t, L->label_ffn);
    h = pre_norm(m, t, x, &L->ln3);
    return residual(m, t, x, ffn_block(m, t, L, h), &L->ln3);
}

/* Embedded targets -> the decoder's output before the vocabulary projection. */
static tfm_tensor *decoder_stack(tfm_model *m, tfm_tape *t, tfm_tensor *x, const dec_inputs *in) {
    for (int64_t l = 0; l < m->cfg.dec_layers; l++) x = decoder_layer(m, t, l, x, in);
    if (m->cfg.pre_ln) x = tfm_layernorm(t, x, m->dec_final.w, m->dec_final.b, m->cfg.ln_eps);
    return x;
}

tfm_tensor *tfm_model_decode(tfm_model *m, tfm_tape *t, tfm_tensor *memory, const uint8_t *src_pad,
                             const int32_t *tgt_in, const uint8_t *tgt_pad, int64_t T) {
    if (!memory) return NULL;
    int64_t B = memory->shape[0];
    dec_inputs in = {.memory = memory, .src_pad = src_pad, .tgt_pad = tgt_pad};
    tfm_tensor *x = decoder_stack(m, t, embed(m, t, m->tgt_emb, tgt_in, B, T, 0, 1), &in);
    tfm_tape_label(t, "output");
    return tfm_linear(t, x, m->tgt_emb, NULL); /* tied: logits = x E^T */
}

tfm_tensor *tfm_model_loss(tfm_model *m, tfm_tape *t, const tfm_seq_batch *b, float smoothing,
                           int64_t *n_tokens) {
    tfm_tensor *mem = tfm_model_encode(m, t, b->src, b->src_pad, b->B, b->S);
    tfm_tensor *logits = tfm_model_decode(m, t, mem, b->src_pad, b->tgt_in, b->tgt_pad, b->T);
    tfm_tape_label(t, "loss");
    return tfm_cross_entropy(t, logits, b->tgt_out, TFM_PAD_ID, smoothing, n_tokens);
}

size_t tfm_model_activation_bytes(const tfm_model_config *c, int64_t B, int64_t S, int64_t T) {
    double D = (double)c->d_model, F = (double)c->d_ff, H = (double)c->n_heads,
           V = (double)c->vocab;
    double enc = (double)B * S * (16 * D + 3 * F) + (double)B * H * S * S;
    double dec = (double)B * T * (26 * D + 3 * F) + (double)B * H * (T * T + T * S);
    double out = (double)B * T * V + 2.0 * B * T;
    double emb = (double)B * (S + T) * 4 * D;
    double floats = 2.0 * (c->enc_layers * enc + c->dec_layers * dec + out + emb);
    double scratch = 4.0 * tfm_num_threads() * (double)(S > T ? S : T) * (S > T ? S : T) *
                     (c->enc_layers + 2 * c->dec_layers);
    return (size_t)((floats + scratch) * 4.0 * 1.15) + ((size_t)32 << 20);
}

int64_t tfm_model_param_count(const tfm_model_config *c) {
    int64_t D = c->d_model, F = c->d_ff, V = c->vocab, L1 = c->enc_layers, L2 = c->dec_layers;
    if (D < 0 || F < 0 || V < 0 || L1 < 0 || L2 < 0) return -1;
    /* every product from input is checked: -1 when it does not fit */
    int64_t dd, df, attn, ffn, ln = 0, emb, enc, dec, per_enc, per_dec, n;
    if (tfm_mul_i64(D, D, &dd) || tfm_add_i64(dd, D, &attn) || tfm_mul_i64(attn, 4, &attn) ||
        tfm_mul_i64(D, F, &df) || tfm_mul_i64(df, 2, &ffn) || tfm_add_i64(ffn, F + D, &ffn) ||
        tfm_mul_i64(D, 2, &ln) || tfm_mul_i64(V, D, &emb) ||
        tfm_mul_i64(emb, c->share_src_emb ? 1 : 2, &emb) || tfm_add_i64(attn, ffn, &per_enc) ||
        tfm_add_i64(per_enc, 2 * ln, &per_enc) || tfm_add_i64(per_enc, attn, &per_dec) ||
        tfm_add_i64(per_dec, ln, &per_dec) || tfm_mul_i64(L1, per_enc, &enc) ||
        tfm_mul_i64(L2, per_dec, &dec) || tfm_add_i64(emb, enc, &n) || tfm_add_i64(n, dec, &n) ||
        tfm_add_i64(n, c->pre_ln ? 2 * ln : 0, &n))
        return -1;
    return n;
}

/* ---- incremental decoding ------------------------------------------------------
 * Self-attention keys and values live per layer as (T_max, B, D): position j
 * of slot r. Row r of the current batch reads position j from slot
 * slot[r * T_max + j], the row that computed it (itself or an ancestor), so
 * reordering or dropping rows copies those indices, never the cache. */

/* The cache's blocks: self K, V, cross K, V (floats), slot, slot_alt (B x
 * T_max int32), src_of_row, src_alt (B int32), scratch, cross K transposed
 * (floats). */
enum { CACHE_BLOCKS = 10 };
static int cache_sizes(const tfm_model *m, int64_t B, int64_t S, int64_t T_max,
                       size_t sizes[CACHE_BLOCKS]) {
    int64_t L = m->cfg.dec_layers, D = m->cfg.d_model, H = m->cfg.n_heads, cells;
    int64_t self_dims[4] = {L, B, T_max > S ? T_max : S, D};
    /* B and the lengths come from flags and input: the products must fit */
    if (B < 1 || S < 1 || T_max < 1 ||
        tfm_product_i64(self_dims, 4, INT64_MAX / (int64_t)sizeof(float), &cells))
        return 1;
    tfm_attn_gather g = {.Tk = T_max > S ? T_max : S, .D = D, .H = H};
    size_t f = sizeof(float), i32 = sizeof(int32_t);
    size_t self = (size_t)(L * T_max * B * D) * f, cross = (size_t)(L * B * S * D) * f;
    size_t out[CACHE_BLOCKS] = {self,
                                self,
                                cross,
                                cross,
                                (size_t)(B * T_max) * i32,
                                (size_t)(B * T_max) * i32,
                                (size_t)B * i32,
                                (size_t)B * i32,
                                (size_t)tfm_attention_decode_scratch_floats(&g) * f,
                                cross};
    memcpy(sizes, out, sizeof out);
    return 0;
}

size_t tfm_kv_cache_bytes(const tfm_model *m, int64_t B, int64_t S, int64_t T_max) {
    size_t sizes[CACHE_BLOCKS], total = 0;
    if (cache_sizes(m, B, S, T_max, sizes)) return 0;
    for (int i = 0; i < CACHE_BLOCKS; i++) total += (sizes[i] + 63) / 64 * 64;
    return total;
}

int tfm_kv_cache_init_in(tfm_kv_cache *c, const tfm_model *m, int64_t B, int64_t S, int64_t T_max,
                         tfm_arena *arena) {
    memset(c, 0, sizeof *c);
    size_t sizes[CACHE_BLOCKS];
    if (cache_sizes(m, B, S, T_max, sizes)) {
        tfm_set_error("decoder cache for batch %lld, lengths %lld/%lld: too large", (long long)B,
                      (long long)S, (long long)T_max);
        return 1;
    }
    c->B = B;
    c->S = S;
    c->T_max = T_max;
    void *blocks[CACHE_BLOCKS] = {0};
    /* only with room left for the decoding's activations as well (the
     * estimate tfm_translate_lines sizes its arena with), so that a caller
     * whose arena fit before still fits */
    size_t need =
        tfm_kv_cache_bytes(m, B, S, T_max) + 64 + tfm_model_activation_bytes(&m->cfg, B, S, 2);
    c->in_arena = arena && arena->cap - arena->used >= need;
    int ok = 1;
    for (int i = 0; i < CACHE_BLOCKS; i++) {
        blocks[i] = c->in_arena ? tfm_arena_alloc(arena, sizes[i]) : tfm_alloc(sizes[i]);
        ok &= blocks[i] != NULL;
    }
    c->self_k = blocks[0];
    c->self_v = blocks[1];
    c->cross_k = blocks[2];
    c->cross_v = blocks[3];
    c->slot = blocks[4];
    c->slot_alt = blocks[5];
    c->src_of_row = blocks[6];
    c->src_alt = blocks[7];
    c->scratch = blocks[8];
    c->cross_kt = blocks[9];
    if (!ok) {
        tfm_kv_cache_free(c);
        tfm_set_error("out of memory for the decoder cache (batch %lld)", (long long)B);
        return 1;
    }
    return 0;
}

int tfm_kv_cache_init(tfm_kv_cache *c, const tfm_model *m, int64_t B, int64_t S, int64_t T_max) {
    return tfm_kv_cache_init_in(c, m, B, S, T_max, NULL);
}

void tfm_kv_cache_free(tfm_kv_cache *c) {
    if (c->in_arena) { /* the arena's owner rewinds it */
        memset(c, 0, sizeof *c);
        return;
    }
    tfm_free(c->self_k);
    tfm_free(c->self_v);
    tfm_free(c->cross_k);
    tfm_free(c->cross_v);
    tfm_free(c->slot);
    tfm_free(c->slot_alt);
    tfm_free(c->src_of_row);
    tfm_free(c->src_alt);
    tfm_free(c->scratch);
    tfm_free(c->cross_kt);
    memset(c, 0, sizeof *c);
}

int tfm_kv_cache_start(tfm_kv_cache *c, tfm_model *m, tfm_tape *t, const tfm_tensor *memory,
                       const uint8_t *src_pad) {
    int64_t D = m->cfg.d_model, H = m->cfg.n_heads, dh = D / H, S = c->S;
    int64_t n_src = memory->shape[0], n = n_src * S * D;
    if (n_src > c->B || memory->shape[1] != c->S) {
        tfm_set_error("decoder cache for %lld sources of length %lld, given %lld of %lld",
                      (long long)c->B, (long long)c->S, (long long)n_src,
                      (long long)memory->shape[1]);
        return 1;
    }
    size_t mark = tfm_arena_mark(&t->arena);
    for (int64_t l = 0; l < m->cfg.dec_layers; l++) {
        tfm_attn_params *a = &m->dec[l].cross_attn;
        tfm_tensor *mem = (tfm_tensor *)memory;
        tfm_tensor *k = tfm_linear(t, mem, a->k_w, a->k_b);
        tfm_tensor *v = tfm_linear(t, mem, a->v_w, a->v_b);
        if (!k || !v) return 1;
        memcpy(c->cross_k + l * c->B * S * D, k->data, (size_t)n * sizeof(float));
        memcpy(c->cross_v + l * c->B * S * D, v->data, (size_t)n * sizeof(float));
        /* (source, head, kk, j): what each row's attention would transpose */
        float *kt = c->cross_kt + l * c->B * S * D;
        for (int64_t r = 0; r < n_src; r++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t kk = 0; kk < dh; kk++)
                    for (int64_t j = 0; j < S; j++)
                        kt[((r * H + h) * dh + kk) * S + j] =
                            k->data[(r * S + j) * D + h * dh + kk];
        tfm_arena_rewind(&t->arena, mark);
    }
    for (int64_t r = 0; r < n_src; r++) c->src_of_row[r] = (int32_t)r;
    c->src_pad = src_pad;
    c->rows = n_src;
    c->len = 0;
    return 0;
}

tfm_tensor *tfm_model_decode_hidden(tfm_model *m, tfm_tape *t, tfm_kv_cache *c,
                                    const int32_t *tokens) {
    TFM_ASSERT(t->no_grad, "decode_step runs in no-grad mode");
    if (c->len >= c->T_max) {
        tfm_set_error("decoder cache full at %lld positions", (long long)c->T_max);
        return NULL;
    }
    for (int64_t r = 0; r < c->rows; r++) c->slot[r * c->T_max + c->len] = (int32_t)r;
    dec_inputs in = {.cache = c};
    tfm_tensor *x =
        decoder_stack(m, t, embed(m, t, m->tgt_emb, tokens, c->rows, 1, c->len, 1), &in);
    if (!x) return NULL;
    x->ndim = 2;
    x->shape[0] = c->rows;
    x->shape[1] = m->cfg.d_model;
    c->len++;
    return x;
}

tfm_tensor *tfm_model_decode_step(tfm_model *m, tfm_tape *t, tfm_kv_cache *c,
                                  const int32_t *tokens) {
    tfm_tensor *logits = tfm_linear(t, tfm_model_decode_hidden(m, t, c, tokens), m->tgt_emb, NULL);
    if (!logits) return NULL;
    logits->ndim = 2;
    logits->shape[0] = logits->n / m->cfg.vocab;
    logits->shape[1] = m->cfg.vocab;
    return logits;
}

int tfm_kv_cache_select(tfm_kv_cache *c, const int64_t *from, int64_t rows) {
    if (rows < 0 || rows > c->B) {
        tfm_set_error("decoder cache holds %lld rows, asked for %lld", (long long)c->B,
                      (long long)rows);
        return 1;
    }
    int32_t *slot_next = c->slot_alt, *src_next = c->src_alt;
    for (int64_t i = 0; i < rows; i++) {
        TFM_ASSERT(from[i] >= 0 && from[i] < c->rows, "select: row out of range");
        memcpy(slot_next + i * c->T_max, c->slot + from[i] * c->T_max,
               (size_t)c->len * sizeof(int32_t));
        src_next[i] = c->src_of_row[from[i]];
    }
    c->slot_alt = c->slot;
    c->slot = slot_next;
    c->src_alt = c->src_of_row;
    c->src_of_row = src_next;
    c->rows = rows;
    return 0;
}

void tfm_kv_cache_reorder(tfm_kv_cache *c, const tfm_model *m, const int64_t *from) {
    (void)m;
    tfm_kv_cache_select(c, from, c->rows);
}
