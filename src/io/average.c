/* Checkpoint averaging: one checkpoint in memory at a time, the sum in a
 * double block laid out like the file's parameter block. */
#include <stdlib.h>
#include <string.h>

#include "tfm/average.h"
#include "tfm/base.h"
#include "tfm/checkpoint.h"

/* The settings two checkpoints must share to be averaged: the model's, but
 * not its dropout rates, which only training uses (a resume may change
 * them), and the data's kind. */
static int same_setting(const char *key) {
    if (!strcmp(key, "model.dropout") || !strcmp(key, "model.attn_dropout") ||
        !strcmp(key, "model.ffn_dropout"))
        return 0;
    return !strncmp(key, "model.", 6) || !strcmp(key, "data.kind") || !strcmp(key, "data.task");
}

/* 0 when b can be averaged with a (same tensors, same configuration). */
static int check_compatible(const tfm_checkpoint *a, const tfm_checkpoint *b) {
    for (int pass = 0; pass < 2; pass++) {
        const tfm_checkpoint *x = pass ? b : a, *y = pass ? a : b;
        for (int64_t i = 0; i < x->meta.n; i++) {
            const char *key = x->meta.keys[i];
            if (!same_setting(key)) continue;
            const char *other = tfm_kv_get(&y->meta, key);
            if (!other || strcmp(other, x->meta.vals[i])) {
                const char *va = tfm_kv_get(&a->meta, key), *vb = tfm_kv_get(&b->meta, key);
                tfm_set_error("average: %s has %s = %s but %s has %s = %s: checkpoints of "
                              "different configurations cannot be averaged",
                              b->path, key, vb ? vb : "(none)", a->path, key, va ? va : "(none)");
                return 1;
            }
        }
    }
    if (a->n_tensors != b->n_tensors || a->n_floats != b->n_floats) {
        tfm_set_error("average: %s has %lld tensors (%lld floats) but %s has %lld (%lld): "
                      "checkpoints of different models cannot be averaged",
                      b->path, (long long)b->n_tensors, (long long)b->n_floats, a->path,
                      (long long)a->n_tensors, (long long)a->n_floats);
        return 1;
    }
    for (int64_t i = 0; i < a->n_tensors; i++) {
        int same = !strcmp(a->names[i], b->names[i]) && a->ndims[i] == b->ndims[i] &&
                   a->offsets[i] == b->offsets[i];
        for (int d = 0; same && d < a->ndims[i]; d++) same = a->shapes[i][d] == b->shapes[i][d];
        if (!same) {
            tfm_set_error("average: tensor %lld of %s is %s, of %s %s (or a different shape): "
                          "checkpoints of different models cannot be averaged",
                          (long long)i + 1, b->path, b->names[i], a->path, a->names[i]);
            return 1;
        }
    }
    return 0;
}

int tfm_checkpoint_average(const char *const *paths, int64_t n, const char *out_path) {
    if (n < 1 || !paths) return tfm_set_error("average: no checkpoint given"), 1;
    if (!out_path) return tfm_set_error("average: no output file given"), 1;
    int rc = 1;
    double *sum = NULL;
    tfm_checkpoint first, cur;
    memset(&cur, 0, sizeof cur);
    tfm_kv meta;
    tfm_kv_init(&meta);
    tfm_params p;
    tfm_params_init(&p);
    if (tfm_checkpoint_read_params(paths[0], &first)) {
        tfm_kv_free(&meta);
        return 1;
    }
    sum = malloc((size_t)(first.n_floats ? first.n_floats : 1) * sizeof *sum);
    if (!sum) {
        tfm_set_error("average: out of memory for %lld parameters", (long long)first.n_floats);
        goto done;
    }
    size_t inputs_len = 1;
    for (int64_t k = 0; k < n; k++) {
        const tfm_checkpoint *ck = &first;
        if (k > 0) {
            if (tfm_checkpoint_read_params(paths[k], &cur)) goto done;
            if (check_compatible(&first, &cur)) goto done;
            ck = &cur;
        }
        const unsigned char *block = ck->blocks; /* the parameters come first */
        for (int64_t i = 0; i < ck->n_floats; i++) {
            float v;
            memcpy(&v, block + (size_t)i * sizeof v, sizeof v);
            /* the first is copied, not added to +0: -0.0 averaged with itself stays -0.0 */
            sum[i] = k ? sum[i] + (double)v : (double)v;
        }
        inputs_len += strlen(paths[k]) + 1;
        if (k == n - 1) /* the metadata of the last one */
            for (int64_t i = 0; i < ck->meta.n; i++)
                tfm_kv_set(&meta, ck->meta.keys[i], "%s", ck->meta.vals[i]);
        if (k > 0) tfm_checkpoint_free(&cur);
    }
    char *inputs = malloc(inputs_len);
    if (!inputs) {
        tfm_set_error("average: out of memory");
        goto done;
    }
    inputs[0] = 0;
    for (int64_t k = 0; k < n; k++) {
        if (k) strcat(inputs, " ");
        strcat(inputs, paths[k]);
    }
    tfm_kv_set(&meta, "average.count", "%lld", (long long)n);
    tfm_kv_set(&meta, "average.inputs", "%s", inputs);
    free(inputs);
    /* the mean into a parameter set shaped like the checkpoint */
    for (int64_t i = 0; i < first.n_tensors; i++)
        tfm_params_add(&p, first.names[i], first.ndims[i], first.shapes[i]);
    if (tfm_params_alloc(&p)) goto done;
    for (int64_t i = 0; i < first.n_tensors; i++) {
        tfm_tensor *t = p.items[i];
        const double *s = sum + first.offsets[i];
        for (int64_t j = 0; j < t->n; j++) t->data[j] = (float)(s[j] / (double)n);
    }
    rc = tfm_checkpoint_save(out_path, &meta, &p, NULL, 0);
done:
    tfm_checkpoint_free(&cur);
    tfm_checkpoint_free(&first);
    free(sum);
    tfm_kv_free(&meta);
    tfm_params_free(&p);
    return rc;
}
