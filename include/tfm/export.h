/* tfm/export.h: export a model in the Hugging Face MarianMT layout, and load
 * it back.
 *
 * An export directory holds model.safetensors (F32, Marian tensor names),
 * config.json (MarianConfig fields plus a "tfm" section with our own
 * settings) and generation_config.json; `tfm export` adds the tokenizer
 * files of text models. Marian's conventions match our model (sinusoids with
 * sin in the first half, embeddings * sqrt(d_model), post-LN, no final layer
 * norm, tied output projection), so the weights are copied bit for bit:
 *
 *     ours                          Marian
 *     tgt_emb.weight                model.shared.weight, model.decoder.embed_tokens.weight,
 *                                   lm_head.weight (and model.encoder.embed_tokens.weight
 *                                   when the source embedding is shared)
 *     src_emb.weight                model.encoder.embed_tokens.weight (untied models)
 *     enc.N.self_attn.{q,k,v,o}.*   model.encoder.layers.N.self_attn.{q,k,v,out}_proj.*
 *     enc.N.ln1 / enc.N.ln2         ...self_attn_layer_norm / ...final_layer_norm
 *     enc.N.ffn.fc1 / fc2           ...fc1 / ...fc2
 *     dec.N.self_attn / ln1         model.decoder.layers.N.self_attn / self_attn_layer_norm
 *     dec.N.cross_attn / ln2        ...encoder_attn / encoder_attn_layer_norm
 *     dec.N.ffn.fc1 / fc2, ln3      ...fc1 / fc2, final_layer_norm
 *     (none)                        final_logits_bias (1, V) zeros
 *
 * Zero-start models (decoder_start zero, tfm/nn.h) get the layout of
 * Hugging Face's converted Marian models: one more id, V, whose embedding
 * row is zero (appended to every (V, D) table above), which is <pad>,
 * decoder_start_token_id and the last id (CTranslate2's converter drops that
 * row and starts from a zero vector itself); final_logits_bias is -1e9 on
 * <pad> (0), <s> (1) and V, which tfm never emits, 0 elsewhere, so every
 * runtime's softmax equals tfm's (over ids >= </s>). Our <pad> (id 0) stays
 * an ordinary, never emitted id; tokenizer.json names it "<tfm_pad>". Models
 * that start from <s> keep V ids, pad 0, start 1 and a zero bias. config.json's
 * "tfm" section records decoder_start ("bos" when absent: older exports).
 *
 *     if (tfm_export_save(&model, "toy", "out/")) fail();     // model.safetensors + configs
 *     tfm_model m; tfm_kv meta; tfm_kv_init(&meta);
 *     if (tfm_export_load("out/", &m, &meta)) fail();           // meta "data.kind" = "toy"
 */
#ifndef TFM_EXPORT_H
#define TFM_EXPORT_H

#include "tfm/checkpoint.h"
#include "tfm/nn.h"
#include "tfm/text.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 0 when the model can be expressed as a MarianMTModel; otherwise an error
 * saying why (pre-LN layers; a layer-norm epsilon other than PyTorch's
 * default 1e-5, which MarianConfig has no field for). */
int tfm_export_check(const tfm_model_config *c);

/* Writes dir/model.safetensors, dir/config.json and dir/generation_config.json
 * (each crash-safe). data_kind ("text" or "toy") is recorded in config.json's
 * "tfm" section. dir must exist. */
int tfm_export_save(const tfm_model *m, const char *data_kind, const char *dir);

/* Builds a model from an export directory: config.json (MarianConfig fields
 * and the "tfm" section) and model.safetensors read with the strict reader.
 * Every expected tensor must be present with dtype F32 and the expected
 * shape, tied copies must be identical, final_logits_bias must be zero and
 * no other tensor may be present; each violation is a one-line error naming
 * the file and the tensor. meta (initialised by the caller, may be NULL)
 * receives "data.kind" and the model configuration keys. */
int tfm_export_load(const char *dir, tfm_model *m, tfm_kv *meta);

/* ---- native Marian (marian-dev) export -----------------------------------
 * dir/model.npz: a zip (stored entries, CRC-32) of .npy v1.0 arrays under
 * marian-dev's parameter names (src/models/transformer.h, layers 1-based;
 * Marian computes x W, so our (out, in) weights are written transposed):
 *
 *     Wemb (V, D) [encoder_Wemb, decoder_Wemb without --share-emb]
 *                                   our embeddings times sqrt(D) (see below)
 *     Wpos (max_len, D)             our sinusoid table
 *     encoder_lN_self_{Wq,Wk,Wv,Wo} (D, D), _{bq,bk,bv,bo} (1, D)
 *     encoder_lN_self_Wo_ln_{scale,bias} (1, D)        enc.N.ln1
 *     encoder_lN_ffn_W1 (D, F), _b1 (1, F), _W2 (F, D), _b2 (1, D)
 *     encoder_lN_ffn_ffn_ln_{scale,bias} (1, D)        enc.N.ln2
 *     decoder_lN_self_*, decoder_lN_context_* (cross-attention, ln2),
 *     decoder_lN_ffn_* (ln3)        as in the encoder
 *     decoder_ff_logit_out_Wt (V, D) our (unscaled) target embedding
 *     decoder_ff_logit_out_b (1, V) 0, and -1e9 for <pad> and <s> (which our
 *                                   decoders never emit)
 *     special:model.yml             int8, the YAML options, NUL-padded to 256
 *
 * Marian's built-in sinusoids differ from ours (log(10000)/(D/2-1) against
 * /(D/2)), so the export asks for trained positions
 * (transformer-train-position-embeddings) and stores our table as Wpos; in
 * that mode Marian adds the positions to the looked-up embedding without
 * its sqrt(D) scale, hence the pre-scaled tables, and the output layer is
 * untied (tied-embeddings: false, tied-embeddings-src for --share-emb).
 * dir/vocab.yml maps our tokens to ids (JSON, which YAML reads), used for
 * both sides; dir/decoder.yml runs marian-decoder on input segmented by
 * `tfm bpe apply` (greedy, allow-unk, no length normalisation).
 *
 * Refused (tfm_export_marian_check): a decoder that starts from the <s>
 * embedding (decoder_start bos: Marian starts from a zero vector plus
 * position 0 and has no setting for anything else), pre-LN layers, and a
 * layer-norm epsilon other than Marian's fixed 1e-6 (train with --ln-eps
 * 1e-6; the Hugging Face export then refuses the model: MarianMT's is 1e-5). */
int tfm_export_marian_check(const tfm_model_config *c);
/* v may be NULL (toy models: no vocab.yml). dir must exist. */
int tfm_export_marian_save(const tfm_model *m, const tfm_vocab *v, const char *dir);
/* CRC-32 as zip computes it (exposed for tests). */
uint32_t tfm_crc32(const void *data, size_t n);

#ifdef __cplusplus
}
#endif

#endif
