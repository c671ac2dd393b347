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
 *     if (tfm_export_save(&model, "toy", "out/")) fail();     // model.safetensors + configs
 *     tfm_model m; tfm_kv meta; tfm_kv_init(&meta);
 *     if (tfm_export_load("out/", &m, &meta)) fail();           // meta "data.kind" = "toy"
 */
#ifndef TFM_EXPORT_H
#define TFM_EXPORT_H

#include "tfm/checkpoint.h"
#include "tfm/nn.h"

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

#endif
