/* The encoder-decoder Transformer, built from the ops. */
#include <math.h>
#include <string.h>

#include "tfm/nn.h"

void tfm_model_config_default(tfm_model_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab = 16;
    c->d_model = 128;
    c->n_heads = 4;
    c->d_ff = 512;
    c->enc_layers = 2;
    c->dec_layers = 2;
    c->max_len = 256;
    c->dropout = 0.1f;
    c->attn_dropout = 0.0f;
    c->ln_eps = 1e-5f;
}

int tfm_model_config_check(const tfm_model_config *c) {
    if (c->vocab < 4)
        return tfm_set_error("vocab %lld: need at least 4 (pad, <s>, </s>, one symbol)",
                             (long long)c->vocab),
               1;
    if (c->d_model < 2 || c->d_model % 2)
        return tfm_set_error("d-model %lld: must be even and >= 2", (long long)c->d_model), 1;
    if (c->n_heads < 1 || c->d_model % c->n_heads)
        return tfm_set_error("heads %lld: must divide d-model %lld", (long long)c->n_heads,
                             (long long)c->d_model),
               1;
    if (c->d_ff < 1) return tfm_set_error("d-ff %lld: must be positive", (long long)c->d_ff), 1;
    if (c->enc_layers < 1 || c->dec_layers < 1)
        return tfm_set_error("layers: need at least 1 encoder and 1 decoder layer"), 1;
    if (c->max_len < 2)
        return tfm_set_error("max-len %lld: must be at least 2", (long long)c->max_len), 1;
    if (!(c->dropout >= 0 && c->dropout < 1) || !(c->attn_dropout >= 0 && c->attn_dropout < 1))
        return tfm_set_error("dropout must be in [0, 1)"), 1;
    if (!(c->ln_eps > 0)) return tfm_set_error("ln-eps must be positive"), 1;
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

int tfm_model_init(tfm_model *m, const tfm_model_config *c) {
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
    /* channel i < D/2: sin(pos / 10000^(2i/D)); channel D/2 + i: cos of the same */
    for (int64_t pos = 0; pos < c->max_len; pos++)
        for (int64_t i = 0; i < D / 2; i++) {
            double angle = (double)pos / pow(10000.0, 2.0 * (double)i / (double)D);
            m->pos_table[pos * D + i] = (float)sin(angle);
            m->pos_table[pos * D + D / 2 + i] = (float)cos(angle);
        }
    tfm_model_init_weights(m, 0);
    return 0;
}

void tfm_model_free(tfm_model *m) {
    tfm_params_free(&m->params);
    free(m->enc);
    free(m->dec);
    tfm_free(m->pos_table);
    memset(m, 0, sizeof *m);
}

void tfm_model_init_weights(tfm_model *m, uint64_t seed) {
    tfm_rng rng;
    tfm_rng_seed(&rng, seed);
    for (int64_t i = 0; i < m->params.count; i++) {
        tfm_tensor *p = m->params.items[i];
        size_t len = strlen(p->name);
        if (p->ndim == 2) {
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

/* tokens (B, T) -> dropout(emb[tokens] * sqrt(D) + pos[pos0 .. pos0+T)) */
static tfm_tensor *embed(tfm_model *m, tfm_tape *t, tfm_tensor *table, const int32_t *ids,
                         int64_t B, int64_t T, int64_t pos0) {
    int64_t D = m->cfg.d_model;
    if (pos0 + T > m->cfg.max_len) {
        tfm_set_error("sequence of %lld positions exceeds max-len %lld", (long long)(pos0 + T),
                      (long long)m->cfg.max_len);
        return NULL;
    }
    int64_t shape[3] = {B, T, D};
    tfm_tape_label(t, table == m->src_emb ? "src_emb" : "tgt_emb");
    tfm_tensor *e = tfm_embedding(t, table, ids, 3, shape, sqrtf((float)D), TFM_PAD_ID);
    tfm_tensor *pos = tfm_tape_tensor(t, 3, shape, 0);
    if (!e || !pos) return NULL;
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
    return tfm_linear(t, tfm_dropout(t, h, m->cfg.dropout), L->fc2_w, L->fc2_b);
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
    tfm_tensor *x = embed(m, t, m->src_emb, src, B, S, 0);
    for (int64_t i = 0; i < m->cfg.enc_layers; i++) {
        tfm_layer_params *L = &m->enc[i];
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
    }
    if (m->cfg.pre_ln) x = tfm_layernorm(t, x, m->enc_final.w, m->enc_final.b, m->cfg.ln_eps);
    return x;
}

tfm_tensor *tfm_model_decode(tfm_model *m, tfm_tape *t, tfm_tensor *memory, const uint8_t *src_pad,
                             const int32_t *tgt_in, const uint8_t *tgt_pad, int64_t T) {
    if (!memory) return NULL;
    int64_t B = memory->shape[0];
    tfm_tensor *x = embed(m, t, m->tgt_emb, tgt_in, B, T, 0);
    for (int64_t i = 0; i < m->cfg.dec_layers; i++) {
        tfm_layer_params *L = &m->dec[i];
        tfm_tape_label(t, L->label_self);
        tfm_tensor *h = pre_norm(m, t, x, &L->ln1);
        x = residual(m, t, x, attention_block(m, t, &L->self_attn, h, h, tgt_pad, 1, NULL),
                     &L->ln1);
        tfm_tape_label(t, L->label_cross);
        h = pre_norm(m, t, x, &L->ln2);
        x = residual(m, t, x, attention_block(m, t, &L->cross_attn, h, memory, src_pad, 0, NULL),
                     &L->ln2);
        tfm_tape_label(t, L->label_ffn);
        h = pre_norm(m, t, x, &L->ln3);
        x = residual(m, t, x, ffn_block(m, t, L, h), &L->ln3);
    }
    if (m->cfg.pre_ln) x = tfm_layernorm(t, x, m->dec_final.w, m->dec_final.b, m->cfg.ln_eps);
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
    int64_t D = c->d_model, F = c->d_ff, V = c->vocab;
    int64_t attn = 4 * (D * D + D), ffn = 2 * D * F + F + D, ln = 2 * D;
    int64_t n = V * D * (c->share_src_emb ? 1 : 2);
    n += c->enc_layers * (attn + ffn + 2 * ln) + c->dec_layers * (2 * attn + ffn + 3 * ln);
    if (c->pre_ln) n += 2 * ln;
    return n;
}

/* ---- incremental decoding ---------------------------------------------------- */

int tfm_kv_cache_init(tfm_kv_cache *c, const tfm_model *m, int64_t B, int64_t S, int64_t T_max) {
    memset(c, 0, sizeof *c);
    int64_t L = m->cfg.dec_layers, D = m->cfg.d_model;
    c->B = B;
    c->S = S;
    c->T_max = T_max;
    c->self_k = tfm_alloc((size_t)(L * B * T_max * D) * sizeof(float));
    c->self_v = tfm_alloc((size_t)(L * B * T_max * D) * sizeof(float));
    c->cross_k = tfm_alloc((size_t)(L * B * S * D) * sizeof(float));
    c->cross_v = tfm_alloc((size_t)(L * B * S * D) * sizeof(float));
    int64_t scratch_rows = B * (T_max > S ? T_max : S) * D;
    int64_t attn = (int64_t)tfm_num_threads() * 2 * (T_max > S ? T_max : S);
    c->scratch = tfm_alloc((size_t)(scratch_rows > attn ? scratch_rows : attn) * sizeof(float));
    if (!c->self_k || !c->self_v || !c->cross_k || !c->cross_v || !c->scratch) {
        tfm_kv_cache_free(c);
        tfm_set_error("out of memory for the decoder cache (batch %lld)", (long long)B);
        return 1;
    }
    return 0;
}

void tfm_kv_cache_free(tfm_kv_cache *c) {
    tfm_free(c->self_k);
    tfm_free(c->self_v);
    tfm_free(c->cross_k);
    tfm_free(c->cross_v);
    tfm_free(c->scratch);
    memset(c, 0, sizeof *c);
}

int tfm_kv_cache_start(tfm_kv_cache *c, tfm_model *m, tfm_tape *t, const tfm_tensor *memory,
                       const uint8_t *src_pad) {
    int64_t D = m->cfg.d_model, BSD = c->B * c->S * D;
    size_t mark = tfm_arena_mark(&t->arena);
    for (int64_t l = 0; l < m->cfg.dec_layers; l++) {
        tfm_attn_params *a = &m->dec[l].cross_attn;
        tfm_tensor *mem = (tfm_tensor *)memory;
        tfm_tensor *k = tfm_linear(t, mem, a->k_w, a->k_b);
        tfm_tensor *v = tfm_linear(t, mem, a->v_w, a->v_b);
        if (!k || !v) return 1;
        memcpy(c->cross_k + l * BSD, k->data, (size_t)BSD * sizeof(float));
        memcpy(c->cross_v + l * BSD, v->data, (size_t)BSD * sizeof(float));
        tfm_arena_rewind(&t->arena, mark);
    }
    c->src_pad = src_pad;
    c->len = 0;
    return 0;
}

/* One query row per batch entry against cached keys/values. */
static tfm_tensor *cached_attention(tfm_model *m, tfm_tape *t, tfm_kv_cache *c, tfm_tensor *q,
                                    const float *k, const float *v, int64_t Tk, int64_t kv_bs,
                                    const uint8_t *key_pad, float *probs_out) {
    tfm_tensor *out = tfm_tape_tensor(t, 3, q->shape, 0);
    if (!out) return NULL;
    tfm_attn_shape s = {.B = c->B,
                        .Tq = 1,
                        .Tk = Tk,
                        .D = m->cfg.d_model,
                        .H = m->cfg.n_heads,
                        .q_bs = m->cfg.d_model,
                        .kv_bs = kv_bs,
                        .key_pad = key_pad,
                        .precision = t->precision};
    float *probs = NULL;
    if (probs_out) {
        probs = tfm_arena_alloc(&t->arena, (size_t)(c->B * s.H * Tk) * sizeof(float));
        if (!probs) return NULL;
    }
    tfm_k_attention_forward(out->data, probs, q->data, k, v, &s, c->scratch);
    if (probs_out)
        for (int64_t bh = 0; bh < c->B * s.H; bh++)
            memcpy(probs_out + bh * c->T_max * Tk, probs + bh * Tk, (size_t)Tk * sizeof(float));
    return out;
}

tfm_tensor *tfm_model_decode_step(tfm_model *m, tfm_tape *t, tfm_kv_cache *c,
                                  const int32_t *tokens) {
    TFM_ASSERT(t->no_grad, "decode_step runs in no-grad mode");
    if (c->len >= c->T_max) {
        tfm_set_error("decoder cache full at %lld positions", (long long)c->T_max);
        return NULL;
    }
    int64_t B = c->B, D = m->cfg.d_model, pos = c->len;
    tfm_tensor *x = embed(m, t, m->tgt_emb, tokens, B, 1, pos);
    for (int64_t l = 0; l < m->cfg.dec_layers && x; l++) {
        tfm_layer_params *L = &m->dec[l];
        float *sk = c->self_k + l * B * c->T_max * D, *sv = c->self_v + l * B * c->T_max * D;
        /* self-attention over positions 0..pos */
        tfm_tensor *h = pre_norm(m, t, x, &L->ln1);
        tfm_tensor *q = tfm_linear(t, h, L->self_attn.q_w, L->self_attn.q_b);
        tfm_tensor *k = tfm_linear(t, h, L->self_attn.k_w, L->self_attn.k_b);
        tfm_tensor *v = tfm_linear(t, h, L->self_attn.v_w, L->self_attn.v_b);
        if (!q || !k || !v) return NULL;
        for (int64_t b = 0; b < B; b++) {
            memcpy(sk + (b * c->T_max + pos) * D, k->data + b * D, (size_t)D * sizeof(float));
            memcpy(sv + (b * c->T_max + pos) * D, v->data + b * D, (size_t)D * sizeof(float));
        }
        tfm_tensor *a = cached_attention(m, t, c, q, sk, sv, pos + 1, c->T_max * D, NULL, NULL);
        x = residual(m, t, x, tfm_linear(t, a, L->self_attn.o_w, L->self_attn.o_b), &L->ln1);
        /* cross-attention over the source */
        h = pre_norm(m, t, x, &L->ln2);
        q = tfm_linear(t, h, L->cross_attn.q_w, L->cross_attn.q_b);
        if (!q) return NULL;
        float *probs =
            c->attn_cross ? c->attn_cross + (l * B * m->cfg.n_heads * c->T_max + pos) * c->S : NULL;
        a = cached_attention(m, t, c, q, c->cross_k + l * B * c->S * D,
                             c->cross_v + l * B * c->S * D, c->S, c->S * D, c->src_pad, probs);
        x = residual(m, t, x, tfm_linear(t, a, L->cross_attn.o_w, L->cross_attn.o_b), &L->ln2);
        h = pre_norm(m, t, x, &L->ln3);
        x = residual(m, t, x, ffn_block(m, t, L, h), &L->ln3);
    }
    if (x && m->cfg.pre_ln) x = tfm_layernorm(t, x, m->dec_final.w, m->dec_final.b, m->cfg.ln_eps);
    tfm_tensor *logits = tfm_linear(t, x, m->tgt_emb, NULL);
    if (!logits) return NULL;
    logits->ndim = 2;
    logits->shape[0] = B;
    logits->shape[1] = m->cfg.vocab;
    c->len++;
    return logits;
}

void tfm_kv_cache_reorder(tfm_kv_cache *c, const tfm_model *m, const int64_t *from) {
    int64_t D = m->cfg.d_model, row = c->T_max * D, B = c->B;
    for (int64_t l = 0; l < m->cfg.dec_layers; l++) {
        float *blocks[2] = {c->self_k + l * B * row, c->self_v + l * B * row};
        for (int w = 0; w < 2; w++) {
            for (int64_t b = 0; b < B; b++)
                memcpy(c->scratch + b * row, blocks[w] + from[b] * row,
                       (size_t)(c->len * D) * sizeof(float));
            for (int64_t b = 0; b < B; b++)
                memcpy(blocks[w] + b * row, c->scratch + b * row,
                       (size_t)(c->len * D) * sizeof(float));
        }
    }
}

/* Shared by both greedy decoders. annotated: starts from start[], argmax over
 * every id, never stops early; else starts from <s>, never emits pad or <s>,
 * stops a row at </s>. */
static int greedy(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad, int64_t B,
                  int64_t S, const int32_t *start, int64_t start_stride, int64_t max_out,
                  int32_t *out, int64_t *lens) {
    int annotated = start != NULL;
    int saved_grad = t->no_grad, saved_train = t->training;
    t->no_grad = 1;
    t->training = 0;
    size_t mark = tfm_arena_mark(&t->arena);
    int rc = 1;
    tfm_kv_cache cache;
    if (max_out + 1 > m->cfg.max_len) max_out = m->cfg.max_len - 1;
    if (tfm_kv_cache_init(&cache, m, B, S, max_out + 1)) goto done;
    tfm_tensor *mem = tfm_model_encode(m, t, src, src_pad, B, S);
    if (!mem || tfm_kv_cache_start(&cache, m, t, mem, src_pad)) goto done_cache;
    int32_t *tokens = tfm_arena_alloc(&t->arena, (size_t)B * sizeof(int32_t));
    uint8_t *finished = tfm_arena_alloc(&t->arena, (size_t)B);
    if (!tokens || !finished) goto done_cache;
    memset(finished, 0, (size_t)B);
    for (int64_t b = 0; b < B; b++) {
        tokens[b] = annotated ? start[b * start_stride] : TFM_BOS_ID;
        lens[b] = max_out;
        for (int64_t j = 0; j < max_out; j++) out[b * max_out + j] = TFM_PAD_ID;
    }
    size_t step_mark = tfm_arena_mark(&t->arena);
    int64_t V = m->cfg.vocab, n_done = 0, first = annotated ? 0 : TFM_EOS_ID;
    for (int64_t step = 0; step < max_out && n_done < B; step++) {
        tfm_arena_rewind(&t->arena, step_mark);
        tfm_tensor *logits = tfm_model_decode_step(m, t, &cache, tokens);
        if (!logits) goto done_cache;
        for (int64_t b = 0; b < B; b++) {
            if (finished[b]) {
                tokens[b] = TFM_PAD_ID;
                continue;
            }
            const float *row = logits->data + b * V;
            int64_t best = first;
            for (int64_t v = first; v < V; v++)
                if (row[v] > row[best]) best = v;
            out[b * max_out + step] = (int32_t)best;
            tokens[b] = (int32_t)best;
            if (!annotated && best == TFM_EOS_ID) {
                finished[b] = 1;
                lens[b] = step;
                n_done++;
            }
        }
    }
    rc = 0;
done_cache:
    tfm_kv_cache_free(&cache);
done:
    tfm_arena_rewind(&t->arena, mark);
    t->no_grad = saved_grad;
    t->training = saved_train;
    return rc;
}

int tfm_greedy_decode(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                      int64_t B, int64_t S, int64_t max_out, int32_t *out, int64_t *lens) {
    return greedy(m, t, src, src_pad, B, S, NULL, 0, max_out, out, lens);
}

int tfm_greedy_decode_from(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                           int64_t B, int64_t S, const int32_t *start, int64_t start_stride,
                           int64_t n_steps, int32_t *out, int64_t *lens) {
    return greedy(m, t, src, src_pad, B, S, start, start_stride, n_steps, out, lens);
}
