/* tfm/tensor.h: tensors, the activation arena, and the parameter store.
 *
 * A tensor is a view: shape + data pointer (+ grad pointer when a gradient is
 * wanted). Parameters live in one contiguous block (and their gradients and
 * Adam moments in blocks of the same layout); activations come from a bump
 * arena that is reset after every step without calling free(). */
#ifndef TFM_TENSOR_H
#define TFM_TENSOR_H

#include <string.h>

#include "tfm/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TFM_MAX_DIMS 4

enum {
    TFM_PARAM = 1u << 0,      /* a trainable parameter (lives in tfm_params) */
    TFM_NEEDS_GRAD = 1u << 1, /* backward must produce a gradient for it */
    /* The grad buffer holds stale values that stand for zero: the first
     * backward kernel to write it overwrites instead of adding (a GEMM with
     * beta 0) or zeroes it first. Saves zeroing every gradient up front and
     * reading those zeros back from memory. */
    TFM_GRAD_STALE = 1u << 2,
};

typedef struct tfm_tensor {
    int ndim;
    int64_t shape[TFM_MAX_DIMS];
    int64_t n; /* number of elements */
    float *data;
    float *grad; /* NULL when no gradient is needed */
    uint32_t flags;
    const char *name; /* "dec.3.cross_attn.q.weight"; NULL for activations */
    /* A weight's bf16 copy packed for its GEMM (tfm_model_pack, for
     * decoding), used by linear in bf16; NULL otherwise. */
    const struct tfm_bf16_weight *bf16;
    /* Its fp32 panels packed likewise (tfm_model_pack), used by linear
     * in fp32; NULL otherwise. */
    const struct tfm_f32_weight *f32;
} tfm_tensor;

/* Before accumulating into x->grad: zero it when stale. */
static inline void tfm_grad_fresh(tfm_tensor *x) {
    if (x->grad && (x->flags & TFM_GRAD_STALE)) {
        memset(x->grad, 0, (size_t)x->n * sizeof(float));
        x->flags &= ~TFM_GRAD_STALE;
    }
}
/* beta for a GEMM that adds into x->grad: 0 (overwrite) when stale, else 1. */
static inline float tfm_grad_beta(tfm_tensor *x) {
    if (x->flags & TFM_GRAD_STALE) {
        x->flags &= ~TFM_GRAD_STALE;
        return 0.0f;
    }
    return 1.0f;
}

/* ---- the arena ------------------------------------------------------------ */
typedef struct {
    char *base;
    size_t cap, used, peak;
    int owns;
    /* fill every allocation with 0xFF bytes (NaN as float) so that code that
     * reads memory it never wrote fails loudly; set by tfm_arena_init from the
     * environment variable TFM_POISON_ARENA=1 (the test runner sets it) */
    int poison;
} tfm_arena;

int tfm_arena_init(tfm_arena *a, size_t bytes); /* 0 ok; error names the size */
void tfm_arena_free(tfm_arena *a);
/* Hint (Linux, 8 MB and more): back the arena with 2 MB pages where the
 * kernel allows, for arenas touched once and thrown away (decoding) */
void tfm_arena_advise_huge(tfm_arena *a);
/* 64-byte aligned; NULL with tfm_last_error() = "arena: needed X bytes, have Y"
 * when it does not fit. */
void *tfm_arena_alloc(tfm_arena *a, size_t bytes);
void tfm_arena_reset(tfm_arena *a);
/* Scratch scopes: everything allocated after a mark is released by rewinding
 * to it, without free():
 *     size_t mark = tfm_arena_mark(&t->arena);
 *     ... temporaries ...
 *     tfm_arena_rewind(&t->arena, mark);
 * Marks nest (rewind inner marks first). Rewinding to a mark above the
 * current position (one taken before an earlier rewind or reset) is a bug
 * and fails the internal assert. Code outside the arena never writes
 * arena.used itself. */
size_t tfm_arena_mark(const tfm_arena *a);
void tfm_arena_rewind(tfm_arena *a, size_t mark);

/* A tensor from the arena; data uninitialised; NULL when the arena is full. */
tfm_tensor *tfm_tensor_new(tfm_arena *a, int ndim, const int64_t *shape);
tfm_tensor *tfm_tensor_new2(tfm_arena *a, int64_t d0, int64_t d1);
tfm_tensor *tfm_tensor_new3(tfm_arena *a, int64_t d0, int64_t d1, int64_t d2);
int tfm_same_shape(const tfm_tensor *a, const tfm_tensor *b);
/* "(2, 3, 4)" into buf */
const char *tfm_shape_str(const tfm_tensor *t, char *buf, size_t size);

/* ---- parameters --------------------------------------------------------------
 * Declare every parameter first (tfm_params_add), then tfm_params_alloc makes
 * two blocks of total_n floats each: data and grad, in the declaration order
 * (each tensor 64-byte aligned). Optimizer state (Adam's moments) belongs to
 * the optimizer (tfm/optim.h), in blocks of the same layout. The returned
 * tensor pointers stay valid until free. */
typedef struct {
    tfm_tensor **items;
    int64_t count, cap;
    int64_t total_n;
    float *data, *grad;
    int failed; /* a tfm_params_add ran out of memory: tfm_params_alloc fails */
} tfm_params;

void tfm_params_init(tfm_params *p);
/* NULL when out of memory (error set); later adds do nothing and
 * tfm_params_alloc fails, so a model can declare everything and check once. */
tfm_tensor *tfm_params_add(tfm_params *p, const char *name, int ndim, const int64_t *shape);
int tfm_params_alloc(tfm_params *p); /* zero-filled; 0 ok, 1 out of memory (error set) */
void tfm_params_free(tfm_params *p);
tfm_tensor *tfm_params_find(const tfm_params *p, const char *name);
/* Every gradient becomes zero. Lazily: the buffers are marked stale, the
 * backward pass zeroes or overwrites what it reaches, and
 * tfm_params_settle_grads zeroes the rest (tfm_grad_norm
 * call it), so p->grad reads as zeros wherever backward did not write. */
void tfm_params_zero_grad(tfm_params *p);
/* Zero the gradients still marked stale (parameters no op reached). */
void tfm_params_settle_grads(tfm_params *p);

#ifdef __cplusplus
}
#endif

#endif
