/* tfm/nn.h: the encoder-decoder Transformer of "Attention Is All You Need",
 * built from the ops: embeddings * sqrt(d_model) + sinusoidal positions
 * (Marian layout: sin in the first half of the channels, cos in the second),
 * post-LN layers (pre-LN as an option), target embedding tied to the output
 * projection, optionally one embedding shared with the source.
 *
 * Token ids: 0 = <pad>, 1 = <s>, 2 = </s> (and 3 = <unk> for text). */
#ifndef TFM_NN_H
#define TFM_NN_H

#include "tfm/ops.h"

#define TFM_PAD_ID 0
#define TFM_BOS_ID 1
#define TFM_EOS_ID 2
#define TFM_UNK_ID 3

typedef struct {
    int64_t vocab; /* shared size of the source and target vocabularies */
    int64_t d_model, n_heads, d_ff, enc_layers, dec_layers;
    int64_t max_len;    /* longest sequence (positions table size) */
    float dropout;      /* residual, embedding and FFN dropout */
    float attn_dropout; /* on attention probabilities */
    float ln_eps;
    int pre_ln;        /* 0: post-LN (paper); 1: pre-LN with a final LN per stack */
    int share_src_emb; /* one embedding for source and target (joint vocabulary) */
} tfm_model_config;

void tfm_model_config_default(tfm_model_config *c);
/* 0 ok; else an error naming the offending setting. */
int tfm_model_config_check(const tfm_model_config *c);

typedef struct {
    tfm_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
} tfm_attn_params;

typedef struct {
    tfm_tensor *w, *b;
} tfm_ln_params;

typedef struct {
    tfm_attn_params self_attn, cross_attn; /* cross_attn only in decoder layers */
    tfm_ln_params ln1, ln2, ln3;           /* ln3 only in decoder layers */
    tfm_tensor *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    char label_self[64], label_cross[64], label_ffn[64];
} tfm_layer_params;

typedef struct {
    tfm_model_config cfg;
    tfm_params params;
    tfm_tensor *src_emb, *tgt_emb; /* same tensor when share_src_emb */
    tfm_layer_params *enc, *dec;
    tfm_ln_params enc_final, dec_final; /* pre-LN only */
    float *pos_table;                   /* (max_len, d_model), constant */
    /* If non-NULL, tfm_model_encode copies each encoder layer's self-attention
     * weights here: (enc_layers, B, H, S, S), sized by the caller (tfm attention). */
    float *capture_self_attn;
} tfm_model;

/* Declares and allocates every parameter (zeros); 0 ok. */
int tfm_model_init(tfm_model *m, const tfm_model_config *c);
void tfm_model_free(tfm_model *m);
/* Xavier-uniform for every 2-D weight (embeddings included), zero biases,
 * LN weight 1 and bias 0, from a seed. */
void tfm_model_init_weights(tfm_model *m, uint64_t seed);

/* One batch of id sequences, row-major:
 *   src (B, S) with src_pad (B, S) nonzero = padding
 *   tgt_in (B, T) = <s> y1 y2 ..., tgt_out (B, T) = y1 y2 ... </s>, tgt_pad (B, T) */
typedef struct {
    int64_t B, S, T;
    const int32_t *src, *tgt_in, *tgt_out;
    const uint8_t *src_pad, *tgt_pad;
} tfm_seq_batch;

/* Encoder output (B, S, D). */
tfm_tensor *tfm_model_encode(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                             int64_t B, int64_t S);
/* Decoder logits (B, T, V) for teacher-forced inputs. */
tfm_tensor *tfm_model_decode(tfm_model *m, tfm_tape *t, tfm_tensor *memory, const uint8_t *src_pad,
                             const int32_t *tgt_in, const uint8_t *tgt_pad, int64_t T);
/* Mean label-smoothed cross-entropy over non-pad targets; *n_tokens = count. */
tfm_tensor *tfm_model_loss(tfm_model *m, tfm_tape *t, const tfm_seq_batch *b, float smoothing,
                           int64_t *n_tokens);

/* Upper bound of the activation arena one training step needs (bytes) for
 * a batch of B sequences with source length S and target length T. */
size_t tfm_model_activation_bytes(const tfm_model_config *c, int64_t B, int64_t S, int64_t T);
/* Parameter count for a configuration (without allocating). */
int64_t tfm_model_param_count(const tfm_model_config *c);

/* ---- incremental decoding ---------------------------------------------------
 * The decoder's keys and values for positions already decoded are kept per
 * layer, so each new token costs one position. The cross-attention keys and
 * values are computed once from the encoder output. */
typedef struct {
    int64_t B, S, T_max, len;
    float *self_k, *self_v;   /* per layer (B, T_max, D) */
    float *cross_k, *cross_v; /* per layer (B, S, D) */
    const uint8_t *src_pad;   /* (B, S), owned by the caller */
    float *scratch;
    float *attn_cross; /* if non-NULL: (layers, B, H, T_max, S) cross-attention weights */
} tfm_kv_cache;

int tfm_kv_cache_init(tfm_kv_cache *c, const tfm_model *m, int64_t B, int64_t S, int64_t T_max);
void tfm_kv_cache_free(tfm_kv_cache *c);
/* Fills the cross-attention keys/values from memory (B, S, D); len = 0. */
int tfm_kv_cache_start(tfm_kv_cache *c, tfm_model *m, tfm_tape *t, const tfm_tensor *memory,
                       const uint8_t *src_pad);
/* Feeds tokens (B) at position c->len; returns the logits (B, V) for the
 * next token (from t's arena, valid until the arena is reset); len += 1. */
tfm_tensor *tfm_model_decode_step(tfm_model *m, tfm_tape *t, tfm_kv_cache *c,
                                  const int32_t *tokens);
/* Reorders the batch rows of the cache: row i takes the old row from[i]
 * (beam search). scratch must hold B rows of one layer. */
void tfm_kv_cache_reorder(tfm_kv_cache *c, const tfm_model *m, const int64_t *from);

/* Greedy decoding of a batch: out (B, max_out) gets the tokens after <s>,
 * up to and including </s>, then pad; lens (B) the count before </s>. */
int tfm_greedy_decode(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                      int64_t B, int64_t S, int64_t max_out, int32_t *out, int64_t *lens);
/* The Annotated Transformer's decoding (toy benchmark): row b starts from
 * start[b * start_stride], then n_steps argmax tokens over the whole
 * vocabulary with no end marker; out (B, n_steps), lens[b] = n_steps. */
int tfm_greedy_decode_from(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                           int64_t B, int64_t S, const int32_t *start, int64_t start_stride,
                           int64_t n_steps, int32_t *out, int64_t *lens);

#endif
