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

#ifdef __cplusplus
extern "C" {
#endif

#define TFM_PAD_ID 0
#define TFM_BOS_ID 1
#define TFM_EOS_ID 2
#define TFM_UNK_ID 3

/* What the decoder reads at its first position (setting decoder_start):
 *   TFM_START_ZERO  a zero vector plus the position-0 encoding, as Marian,
 *                   Hugging Face's converted Marian models and CTranslate2
 *                   start; the <s> row of the target embedding is then only
 *                   an output row (and gets no gradient from the input side).
 *                   The default of models made since 2026-11-29.
 *   TFM_START_BOS   the (scaled) <s> embedding: every earlier tfm model. A
 *                   checkpoint or export that does not record the setting is
 *                   one of these and loads with it.
 * Either way the decoder's input sequences begin with TFM_BOS_ID; only what
 * that id embeds to differs. */
typedef enum { TFM_START_BOS = 0, TFM_START_ZERO = 1 } tfm_decoder_start;
/* "bos" / "zero" (NULL for another value); parse: -1 when neither. */
const char *tfm_decoder_start_name(int start);
int tfm_decoder_start_parse(const char *name);

/* The model settings, one list for everything that names them: the config
 * struct, its defaults, the checkpoint keys ("model.<field>"), the export's
 * "tfm" section, the program's flags and the resume comparison.
 *   X(type, field, flag, default, must_match_on_resume, help)
 * type INT is int64_t, FLOAT float, BOOL int, START an int holding a
 * tfm_decoder_start (written by name; absent in a file: TFM_START_BOS),
 * NEWBOOL a BOOL added after files existed (absent in a file: 0), NEWFLOAT
 * a FLOAT added after files existed (absent in a file: its default); flag
 * is NULL when the program sets the value itself (the vocabulary comes from
 * the data). */
#define TFM_MODEL_SETTINGS(X)                                                                      \
    X(INT, vocab, NULL, 16, 1, "vocabulary size (source and target share it)")                     \
    X(INT, d_model, "d-model", 64, 1, "model width")                                               \
    X(INT, n_heads, "heads", 4, 1, "attention heads")                                              \
    X(INT, d_ff, "d-ff", 256, 1, "feed-forward width")                                             \
    X(INT, enc_layers, "enc-layers", 2, 1, "encoder layers")                                       \
    X(INT, dec_layers, "dec-layers", 2, 1, "decoder layers")                                       \
    X(INT, max_len, "model-max-len", 256, 0, "longest sequence the model handles")                 \
    X(FLOAT, dropout, "dropout", 0.1, 0,                                                           \
      "dropout on embeddings, residuals and (unless --ffn-dropout) the FFN's hidden layer (toy "   \
      "tasks: 0 unless given)")                                                                    \
    X(FLOAT, attn_dropout, "attn-dropout", 0.0, 0, "dropout on attention weights")                 \
    X(FLOAT, ln_eps, "ln-eps", 1e-5, 0, "layer-norm epsilon")                                      \
    X(BOOL, pre_ln, "pre-ln", 0, 1, "pre-LN layers (default post-LN as in the paper)")             \
    X(BOOL, share_src_emb, "share-emb", 0, 1, "one embedding for source and target")               \
    X(START, decoder_start, "decoder-start", TFM_START_ZERO, 1,                                    \
      "decoder's first input: zero (a zero vector, as Marian) or bos (the <s> embedding)")         \
    X(NEWBOOL, marian_positions, "marian-positions", 0, 1,                                         \
      "marian-dev's sinusoids (log(10000)/(D/2-1), float) instead of 10000^(-2i/D), for the "      \
      "Marian export")                                                                             \
    X(NEWFLOAT, ffn_dropout, "ffn-dropout", -1.0, 0,                                               \
      "dropout on the FFN's hidden layer, after the ReLU (fairseq's activation dropout; -1: the "  \
      "rate of --dropout)")

#define TFM_SETTING_CTYPE_INT int64_t
#define TFM_SETTING_CTYPE_FLOAT float
#define TFM_SETTING_CTYPE_BOOL int
#define TFM_SETTING_CTYPE_START int
#define TFM_SETTING_CTYPE_NEWBOOL int
#define TFM_SETTING_CTYPE_NEWFLOAT float
/* Whether a setting is written to checkpoints and exports: always, except a
 * NEWFLOAT at its default, left out so that the file is the one the code
 * before the setting wrote, byte for byte. */
#define TFM_SETTING_WRITTEN_INT(v, def) 1
#define TFM_SETTING_WRITTEN_FLOAT(v, def) 1
#define TFM_SETTING_WRITTEN_BOOL(v, def) 1
#define TFM_SETTING_WRITTEN_START(v, def) 1
#define TFM_SETTING_WRITTEN_NEWBOOL(v, def) 1
#define TFM_SETTING_WRITTEN_NEWFLOAT(v, def) ((v) != (float)(def))

typedef struct {
#define TFM_X_FIELD(type, field, flag, def, must_match, help) TFM_SETTING_CTYPE_##type field;
    TFM_MODEL_SETTINGS(TFM_X_FIELD)
#undef TFM_X_FIELD
} tfm_model_config;

/* What a configuration may ask for, from flags or files (checked by
 * tfm_model_config_check before anything is allocated). */
#define TFM_MAX_VOCAB ((int64_t)1 << 24)
#define TFM_MAX_DIM ((int64_t)1 << 16)           /* d_model */
#define TFM_MAX_FF ((int64_t)1 << 20)            /* d_ff */
#define TFM_MAX_LAYERS 1024                      /* per stack */
#define TFM_MAX_POSITIONS ((int64_t)1 << 16)     /* max_len */
#define TFM_MAX_TENSOR_FLOATS ((int64_t)1 << 28) /* the position table */
/* Only against overflow: what fits in memory is the trainer's estimate, and
 * a checkpoint or export must hold every parameter it declares. */
#define TFM_MAX_PARAMS ((int64_t)1 << 40)

/* The defaults of the list above. */
void tfm_model_config_default(tfm_model_config *c);
/* The first setting (field name) that differs between a and b, NULL when
 * none; with resume_only only the settings that must match on resume. */
const char *tfm_model_config_differs(const tfm_model_config *a, const tfm_model_config *b,
                                     int resume_only);
/* 0 ok; else an error naming the offending setting. */
int tfm_model_config_check(const tfm_model_config *c);
/* The rate of dropout on the FFN's hidden layer: ffn_dropout, or dropout
 * when ffn_dropout is -1 (the default, and every file before the setting). */
float tfm_model_ffn_dropout(const tfm_model_config *c);

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

/* Declares and allocates every parameter, initialized as
 * tfm_model_init_weights(m, 0) does; 0 ok. */
int tfm_model_init(tfm_model *m, const tfm_model_config *c);
/* The same with every parameter 0: for weights loaded next. */
int tfm_model_init_empty(tfm_model *m, const tfm_model_config *c);
void tfm_model_free(tfm_model *m);
/* For decoding: every weight matrix that linear multiplies is packed once
 * for the GEMM of one precision (tfm_f32_weight_pack; for bf16 rounded too,
 * tfm_bf16_weight_pack), and linear on a tape of that precision uses the
 * packed copy, with the same results as packing on every call. Packs of
 * both precisions can coexist. The weights must not change until
 * tfm_model_unpack (tfm_model_free unpacks both). 0 ok; 1 out of memory
 * (error set, nothing of that precision left packed). */
int tfm_model_pack(tfm_model *m, tfm_precision prec);
void tfm_model_unpack(tfm_model *m, tfm_precision prec);
int tfm_model_packed(const tfm_model *m, tfm_precision prec); /* 1 between pack and unpack */
/* Xavier-uniform for every 2-D weight (embeddings included), zero biases,
 * LN weight 1 and bias 0, from a seed. */
void tfm_model_init_weights(tfm_model *m, uint64_t seed);
/* How the embedding tables start: Xavier-uniform as every matrix (the
 * default: the Annotated Transformer's, and PyTorch's xavier_uniform_ on
 * every parameter), or normal with standard deviation d_model^-1/2 (fairseq's
 * and tensor2tensor's), so that the sqrt(d_model) scale gives the token
 * embeddings unit variance, where Xavier gives them about
 * sqrt(2 d_model / (vocab + d_model)): 0.28 for d_model 256 and 6000 words,
 * small beside the positions' sinusoids. */
typedef enum { TFM_EMB_INIT_XAVIER = 0, TFM_EMB_INIT_NORMAL = 1 } tfm_emb_init;
/* "xavier" / "normal" (NULL for another value); parse: -1 when neither. */
const char *tfm_emb_init_name(int init);
int tfm_emb_init_parse(const char *name);
/* tfm_model_init_weights with the embedding tables (src_emb.weight,
 * tgt_emb.weight) drawn as emb_init says. Every draw comes from the one
 * stream in parameter order (a normal number takes two uniform draws, Box-
 * Muller), so with TFM_EMB_INIT_XAVIER it is tfm_model_init_weights. */
void tfm_model_init_weights_emb(tfm_model *m, uint64_t seed, int emb_init);

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
/* Parameter count for a configuration (without allocating); -1 when it
 * overflows int64_t. */
int64_t tfm_model_param_count(const tfm_model_config *c);

/* ---- incremental decoding ---------------------------------------------------
 * The decoder's keys and values for positions already decoded are kept per
 * layer, so each new token costs one position. The cross-attention keys and
 * values are computed once per source from the encoder output; the batch's
 * rows (beam hypotheses, say) point at their source. Rows can be reordered,
 * duplicated and dropped between steps (tfm_kv_cache_select) without copying
 * cached keys: each row keeps, per position, the index of the row that
 * computed it.
 *
 *   tfm_kv_cache c;
 *   tfm_kv_cache_init(&c, m, max_rows, S, max_steps);
 *   tfm_kv_cache_start(&c, m, t, tfm_model_encode(m, t, src, pad, B, S), pad); // rows = B
 *   for (...) {
 *       tfm_tensor *logits = tfm_model_decode_step(m, t, &c, tokens);  // (c.rows, V)
 *       ... choose, for each next row i, the row from[i] it continues ...
 *       tfm_kv_cache_select(&c, from, n_next);                         // rows = n_next
 *   }
 *   tfm_kv_cache_free(&c); */
typedef struct {
    int64_t B, S, T_max;           /* row capacity, source length, positions */
    int64_t len;                   /* positions decoded so far */
    int64_t rows;                  /* rows in the current batch (<= B) */
    float *self_k, *self_v;        /* per layer (T_max, B, D): position j of slot r */
    float *cross_k, *cross_v;      /* per layer (B, S, D): only the first n_src sources used */
    int32_t *slot, *slot_alt;      /* (B, T_max): slot[r * T_max + j] holds row r's position j */
    int32_t *src_of_row, *src_alt; /* (B): the source row r attends to */
    const uint8_t *src_pad;        /* (n_src, S), owned by the caller */
    float *scratch;
    float *attn_cross; /* if non-NULL: (layers, B, H, T_max, S) cross-attention weights of
                          row r at [.., r, .., pos, ..] (meaningful while rows keep their order) */
    int in_arena;      /* the blocks above came from an arena (tfm_kv_cache_init_in) */
    float *cross_kt;   /* per layer (B, H, D/H, S): cross_k transposed per source and head
                          (fp32 decoding reads the keys here); allocated and freed with the
                          blocks above */
} tfm_kv_cache;

/* B: the most rows a step will hold (sources times beam); T_max: positions. */
int tfm_kv_cache_init(tfm_kv_cache *c, const tfm_model *m, int64_t B, int64_t S, int64_t T_max);
/* The same, with the blocks taken from `arena` when it has room for them and
 * tfm_model_activation_bytes(B, S, 2) besides (else as tfm_kv_cache_init): an
 * arena that lives across calls gives every batch memory already mapped,
 * where a fresh allocation per batch pays a page fault per 4 KB written.
 * Released by tfm_kv_cache_free and then the caller's rewind of the arena. */
int tfm_kv_cache_init_in(tfm_kv_cache *c, const tfm_model *m, int64_t B, int64_t S, int64_t T_max,
                         tfm_arena *arena);
/* Bytes tfm_kv_cache_init_in takes from an arena (0 when it overflows). */
size_t tfm_kv_cache_bytes(const tfm_model *m, int64_t B, int64_t S, int64_t T_max);
void tfm_kv_cache_free(tfm_kv_cache *c);
/* Fills the cross-attention keys/values from memory (n_src, S, D), n_src <= B,
 * and cross_kt; len = 0; rows = n_src, row r attending to source r. */
int tfm_kv_cache_start(tfm_kv_cache *c, tfm_model *m, tfm_tape *t, const tfm_tensor *memory,
                       const uint8_t *src_pad);
/* Feeds tokens (rows) at position c->len; returns the logits (rows, V) for
 * the next token (from t's arena, valid until the arena is reset); len += 1. */
tfm_tensor *tfm_model_decode_step(tfm_model *m, tfm_tape *t, tfm_kv_cache *c,
                                  const int32_t *tokens);
/* The same step without the vocabulary projection: the decoder output
 * (rows, D) (after the final LN with pre-LN); logits = output E^T. */
tfm_tensor *tfm_model_decode_hidden(tfm_model *m, tfm_tape *t, tfm_kv_cache *c,
                                    const int32_t *tokens);
/* The next batch has `rows` rows; row i continues the current row from[i]
 * (its source and its cached positions). Rows may repeat or be left out.
 * Copies len indices per row, no keys. 0 ok. */
int tfm_kv_cache_select(tfm_kv_cache *c, const int64_t *from, int64_t rows);
/* select with the same number of rows (row i takes the old row from[i]). */
void tfm_kv_cache_reorder(tfm_kv_cache *c, const tfm_model *m, const int64_t *from);

/* Greedy decoding of a batch (implemented in src/decode/greedy.c): out
 * (B, max_out) gets the tokens after <s>, up to and including </s>, then
 * pad; lens (B) the count before </s> (max_out, or the model's limit
 * max_len - 1 if smaller, when no </s> came). Rows are max_out apart even
 * when the model's limit is smaller. Rows that reached </s> leave the batch. */
int tfm_greedy_decode(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                      int64_t B, int64_t S, int64_t max_out, int32_t *out, int64_t *lens);
/* The Annotated Transformer's decoding (toy benchmark): row b starts from
 * start[b * start_stride], then n_steps argmax tokens over the whole
 * vocabulary with no end marker; out (B, n_steps), lens[b] = n_steps. */
int tfm_greedy_decode_from(tfm_model *m, tfm_tape *t, const int32_t *src, const uint8_t *src_pad,
                           int64_t B, int64_t S, const int32_t *start, int64_t start_stride,
                           int64_t n_steps, int32_t *out, int64_t *lens);

#ifdef __cplusplus
}
#endif

#endif
