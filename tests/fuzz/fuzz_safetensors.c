/* libFuzzer target: arbitrary bytes as a safetensors file. Whatever the
 * parser accepts must satisfy the invariants it promises: every tensor lies
 * inside the buffer, sizes match shapes, and the tensors tile the buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tfm_st_file f;
    if (tfm_safetensors_parse(data, size, "fuzz.safetensors", &f)) {
        /* Rejections must leave a one-line message. */
        if (strchr(tfm_last_error(), '\n')) abort();
        return 0;
    }
    size_t covered = 0;
    for (int64_t i = 0; i < f.n_tensors; i++) {
        const tfm_st_tensor *t = &f.tensors[i];
        const unsigned char *p = t->data;
        if (p < f.buffer || t->nbytes < 0 || (size_t)t->nbytes > f.buffer_len ||
            (size_t)(p - f.buffer) > f.buffer_len - (size_t)t->nbytes)
            abort();
        /* Touch every byte so ASan checks the range. */
        unsigned sum = 0;
        for (int64_t b = 0; b < t->nbytes; b++) sum += p[b];
        (void)sum;
        covered += (size_t)t->nbytes;
        if (tfm_st_find(&f, t->name) == NULL) abort();
        if (t->dtype == TFM_ST_F32) {
            float *x;
            if (tfm_st_get_f32(&f, t->name, t->ndim, t->shape, &x) == 0 && t->nbytes >= 4 &&
                (const unsigned char *)x != p)
                abort();
            float *copy = malloc((size_t)t->nbytes + 4);
            if (copy && tfm_st_read_f32(&f, t->name, t->ndim, t->shape, copy) != 0) abort();
            free(copy);
            int64_t wrong[1] = {t->ndim ? t->shape[0] + 1 : 1};
            if (tfm_st_get_f32(&f, t->name, 1, wrong, &x) == 0) abort();
        }
    }
    if (covered != f.buffer_len) abort();
    for (int64_t m = 0; m < f.n_meta; m++)
        if (tfm_st_meta(&f, f.meta_keys[m]) == NULL) abort();
    tfm_safetensors_close(&f);
    return 0;
}
