/* The activation arena, tensors, and the parameter store. */
#include "tfm/tensor.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

/* Ask Linux for 2 MB pages on a large arena (tfm_arena_advise_huge): the
 * first touch of every 4 KB page is otherwise a page fault, and a decoder
 * that touches a few hundred MB of fresh activations and cache at each
 * tfm_translate_lines call pays tens of thousands of them. Only a hint: with
 * transparent huge pages off, or none free, nothing changes; the arithmetic
 * never does. Not for training arenas: on this project's 2-core VM it made
 * `mpirun -np 2 tfm bench step --preset base` about 20% slower. */
static void hint_huge_pages(void *base, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (bytes < 4 * huge) return;
    uintptr_t lo = ((uintptr_t)base + huge - 1) & ~(huge - 1);
    uintptr_t hi = ((uintptr_t)base + bytes) & ~(huge - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)base;
    (void)bytes;
#endif
}

int tfm_arena_init(tfm_arena *a, size_t bytes) {
    memset(a, 0, sizeof *a);
    a->base = tfm_alloc(bytes);
    if (!a->base) {
        tfm_set_error("arena: could not allocate %zu MB for activations", bytes >> 20);
        return 1;
    }
    a->cap = bytes;
    a->owns = 1;
    const char *poison = getenv("TFM_POISON_ARENA");
    a->poison = poison && poison[0] == '1';
    return 0;
}

void tfm_arena_advise_huge(tfm_arena *a) {
    if (a->owns) hint_huge_pages(a->base, a->cap);
}

void tfm_arena_free(tfm_arena *a) {
    if (a->owns) tfm_free(a->base);
    memset(a, 0, sizeof *a);
}

void *tfm_arena_alloc(tfm_arena *a, size_t bytes) {
    size_t need = (bytes + 63) & ~(size_t)63;
    if (need > a->cap - a->used) {
        tfm_set_error("arena: needed %zu bytes, have %zu (of %zu); raise the arena size "
                      "(--arena-mb) or lower the batch",
                      need, a->cap - a->used, a->cap);
        return NULL;
    }
    void *p = a->base + a->used;
    a->used += need;
    if (a->used > a->peak) a->peak = a->used;
    if (a->poison) memset(p, 0xFF, need);
    return p;
}

void tfm_arena_reset(tfm_arena *a) { a->used = 0; }

size_t tfm_arena_mark(const tfm_arena *a) { return a->used; }

void tfm_arena_rewind(tfm_arena *a, size_t mark) {
    TFM_ASSERT(mark <= a->used, "arena rewind to %zu bytes, above the %zu in use", mark, a->used);
    a->used = mark;
}

tfm_tensor *tfm_tensor_new(tfm_arena *a, int ndim, const int64_t *shape) {
    TFM_ASSERT(ndim >= 1 && ndim <= TFM_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        TFM_ASSERT(shape[i] >= 0);
        n *= shape[i];
    }
    tfm_tensor *t = tfm_arena_alloc(a, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->data = tfm_arena_alloc(a, (size_t)n * sizeof(float));
    if (!t->data) return NULL;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->n = n;
    return t;
}

tfm_tensor *tfm_tensor_new2(tfm_arena *a, int64_t d0, int64_t d1) {
    int64_t s[2] = {d0, d1};
    return tfm_tensor_new(a, 2, s);
}

tfm_tensor *tfm_tensor_new3(tfm_arena *a, int64_t d0, int64_t d1, int64_t d2) {
    int64_t s[3] = {d0, d1, d2};
    return tfm_tensor_new(a, 3, s);
}

int tfm_same_shape(const tfm_tensor *a, const tfm_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *tfm_shape_str(const tfm_tensor *t, char *buf, size_t size) {
    size_t used = 0;
    used += (size_t)snprintf(buf + used, size - used, "(");
    for (int i = 0; i < t->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "",
                                 (long long)t->shape[i]);
    if (used < size) snprintf(buf + used, size - used, ")");
    return buf;
}

void tfm_params_init(tfm_params *p) { memset(p, 0, sizeof *p); }

static tfm_tensor *params_oom(tfm_params *p, const char *name) {
    p->failed = 1;
    tfm_set_error("out of memory declaring parameter %.200s (%lld declared)", name,
                  (long long)p->count);
    return NULL;
}

tfm_tensor *tfm_params_add(tfm_params *p, const char *name, int ndim, const int64_t *shape) {
    TFM_ASSERT(p->data == NULL, "parameters added after tfm_params_alloc");
    TFM_ASSERT(ndim >= 1 && ndim <= TFM_MAX_DIMS);
    if (p->failed) return NULL; /* the first failure's message stands */
    if (p->count == p->cap) {
        int64_t cap = p->cap ? 2 * p->cap : 64;
        tfm_tensor **items = realloc(p->items, (size_t)cap * sizeof *items);
        if (!items) return params_oom(p, name);
        p->items = items;
        p->cap = cap;
    }
    tfm_tensor *t = calloc(1, sizeof *t);
    char *copy = malloc(strlen(name) + 1);
    if (!t || !copy) {
        free(t);
        free(copy);
        return params_oom(p, name);
    }
    strcpy(copy, name);
    t->name = copy;
    t->ndim = ndim;
    t->n = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->n *= shape[i];
    }
    t->flags = TFM_PARAM | TFM_NEEDS_GRAD;
    p->items[p->count++] = t;
    /* Each tensor starts on a 16-float (64-byte) boundary inside the block. */
    p->total_n += (t->n + 15) & ~(int64_t)15;
    return t;
}

int tfm_params_alloc(tfm_params *p) {
    if (p->failed) {
        tfm_set_error("out of memory declaring the parameters (%lld declared)",
                      (long long)p->count);
        return 1;
    }
    size_t bytes = (size_t)p->total_n * sizeof(float);
    p->data = tfm_calloc(bytes);
    p->grad = tfm_calloc(bytes);
    if (!p->data || !p->grad) {
        tfm_set_error("out of memory: parameters need 2 x %zu MB", bytes >> 20);
        return 1;
    }
    int64_t off = 0;
    for (int64_t i = 0; i < p->count; i++) {
        tfm_tensor *t = p->items[i];
        t->data = p->data + off;
        t->grad = p->grad + off;
        off += (t->n + 15) & ~(int64_t)15;
    }
    return 0;
}

void tfm_params_free(tfm_params *p) {
    for (int64_t i = 0; i < p->count; i++) {
        free((void *)p->items[i]->name);
        free(p->items[i]);
    }
    free(p->items);
    tfm_free(p->data);
    tfm_free(p->grad);
    memset(p, 0, sizeof *p);
}

tfm_tensor *tfm_params_find(const tfm_params *p, const char *name) {
    for (int64_t i = 0; i < p->count; i++)
        if (strcmp(p->items[i]->name, name) == 0) return p->items[i];
    return NULL;
}

void tfm_params_zero_grad(tfm_params *p) {
    for (int64_t i = 0; i < p->count; i++) p->items[i]->flags |= TFM_GRAD_STALE;
}

void tfm_params_settle_grads(tfm_params *p) {
    for (int64_t i = 0; i < p->count; i++) tfm_grad_fresh(p->items[i]);
}
