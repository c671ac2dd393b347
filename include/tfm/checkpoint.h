/* tfm/checkpoint.h: crash-safe checkpoints.
 *
 * File layout, version 2 (little-endian):
 *   "TFMCKPT1"                       magic
 *   u32 version (2), u32 flags (0)
 *   u64 meta_len, meta bytes         "key = value\n" lines: model config and
 *                                    the full training state (step, seed, data
 *                                    position, best metric, ...)
 *   u64 n_tensors, then per tensor:  u32 name_len, name, u32 ndim, i64 shape[ndim]
 *   u64 n_floats                     total floats per block (tensors in order, no padding)
 *   u32 n_blocks, per block:         u32 name_len, name ("params" first, then the
 *                                    optimizer's state: "adam.m", "adam.v", ...)
 *   f32 block[n_blocks][n_floats]
 *   u32 crc32c of everything above, then "TFMEND\0\0"
 * Version 1 (still read) had no block table: flags bit 0 meant the blocks
 * "params", "adam.m", "adam.v", else "params" alone.
 *
 * Writes go through the crash-safe writer (tfm/atomic_file.h): a reader
 * sees the old file or the new one, never half of one. */
#ifndef TFM_CHECKPOINT_H
#define TFM_CHECKPOINT_H

#include "tfm/nn.h"
#include "tfm/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TFM_CHECKPOINT_MAX_BLOCKS 8

/* An ordered string map for metadata. Out of memory in tfm_kv_set sets
 * failed (and the error); tfm_checkpoint_save then refuses the map. */
typedef struct {
    int64_t n, cap;
    char **keys, **vals;
    int failed;
} tfm_kv;

void tfm_kv_init(tfm_kv *kv);
void tfm_kv_free(tfm_kv *kv);
void tfm_kv_set(tfm_kv *kv, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *tfm_kv_get(const tfm_kv *kv, const char *key);
/* 0 ok; missing or malformed keys give an error naming `where` and the key. */
int tfm_kv_get_i64(const tfm_kv *kv, const char *key, int64_t *out, const char *where);
int tfm_kv_get_f64(const tfm_kv *kv, const char *key, double *out, const char *where);
int tfm_kv_get_u64(const tfm_kv *kv, const char *key, uint64_t *out, const char *where);
/* Parses "key = value" lines (at most TFM_KV_MAX_LINES, which is also the
 * most keys tfm_checkpoint_save writes); errors name where:line. */
#define TFM_KV_MAX_LINES 4096
int tfm_kv_parse(tfm_kv *kv, const char *text, size_t len, const char *where);

uint32_t tfm_crc32c(uint32_t crc, const void *data, size_t n);

/* The model configuration as metadata and back. */
void tfm_model_config_to_kv(const tfm_model_config *c, tfm_kv *kv);
int tfm_model_config_from_kv(tfm_model_config *c, const tfm_kv *kv, const char *where);

/* Writes the parameters and the optimizer's named state blocks (each laid
 * out like p's block; n_state may be 0, e.g. for best.tfm). */
int tfm_checkpoint_save(const char *path, const tfm_kv *meta, const tfm_params *p,
                        const tfm_state_block *state, int n_state);

/* A verified checkpoint in memory. */
typedef struct {
    char *path;
    unsigned char *buf;
    size_t size;
    tfm_kv meta;
    int version;     /* 1 or 2 */
    int has_moments; /* blocks "adam.m" and "adam.v" present */
    int n_blocks;
    char *block_names[TFM_CHECKPOINT_MAX_BLOCKS]; /* [0] = "params" */
    int64_t n_tensors, n_floats;
    char **names;
    int *ndims;
    int64_t (*shapes)[4];
    int64_t *offsets;            /* float offset of each tensor in a block */
    const unsigned char *blocks; /* n_blocks blocks of n_floats floats, in order */
    int params_only;             /* tfm_checkpoint_read_params: only block 0 in memory */
} tfm_checkpoint;

/* Reads and verifies (magic, sizes, CRC, structure); 0 ok, else an error
 * naming the file. Never crashes on malformed input. */
int tfm_checkpoint_read(const char *path, tfm_checkpoint *ck);
int tfm_checkpoint_parse(const void *data, size_t size, const char *name, tfm_checkpoint *ck);
/* The same checks over the whole file (the CRC too), but only the header
 * and the parameters are kept in memory (params_only; block 0 alone, and
 * tfm_checkpoint_load_state refuses it): for translating, exporting and
 * averaging, which need no optimizer state. Errors as tfm_checkpoint_read. */
int tfm_checkpoint_read_params(const char *path, tfm_checkpoint *ck);
void tfm_checkpoint_free(tfm_checkpoint *ck);
/* The named block's n_floats floats (file order), NULL when absent. */
const unsigned char *tfm_checkpoint_block(const tfm_checkpoint *ck, const char *name);
/* Copies every parameter by name; error on a missing tensor or a shape
 * mismatch. */
int tfm_checkpoint_load_params(const tfm_checkpoint *ck, tfm_params *p);
/* Copies the optimizer's state blocks by name (laid out like p); error
 * naming the block when the checkpoint lacks one. */
int tfm_checkpoint_load_state(const tfm_checkpoint *ck, const tfm_params *p,
                              const tfm_state_block *state, int n_state);

/* Builds a model from a checkpoint's config and weights. */
int tfm_model_from_checkpoint(tfm_model *m, const tfm_checkpoint *ck);

#ifdef __cplusplus
}
#endif

#endif
