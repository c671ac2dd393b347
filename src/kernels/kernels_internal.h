/* Inline helpers shared by the kernels: a vectorizable expf and the dropout
 * mask. */
#ifndef TFM_KERNELS_INTERNAL_H
#define TFM_KERNELS_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(x) for float, branch-free so loops vectorize: x = n ln2 + r with
 * |r| <= ln2/2, a degree-6 polynomial for e^r (relative error ~2e-7, about
 * 2 ulp), scaled by 2^n through the exponent bits. Below -87.3 it returns 0
 * (so exp(-inf) = 0); NaN propagates. */
static inline float tfm_expf(float x) {
    const float hi = 88.3762626647949f, lo = -87.3365447505531f;
    float xc = x > hi ? hi : (x < lo ? lo : x);
    float n = rintf(xc * 1.44269504088896341f);
    float r = xc - n * 0.693359375f; /* ln2 split in two for accuracy */
    r = r - n * -2.12194440e-4f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f +
                                                  r * (0.0416666642f + r * (0.00833345205f +
                                                                            r * 0.00138888881f)))));
    int32_t e = (int32_t)n + 127;
    uint32_t bits = (uint32_t)e << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

/* Dropout keeps element i when its 16-bit uniform (from one 64-bit hash per
 * four elements) is >= threshold = round(p * 65536). */
static inline uint32_t tfm_dropout_threshold(float p) { return (uint32_t)lrintf(p * 65536.0f); }

static inline uint64_t tfm_mix64(uint64_t key, uint64_t ctr) {
    uint64_t x = key ^ (ctr * 0x9E3779B97F4A7C15ull);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static inline int tfm_dropout_keep(uint64_t key, uint64_t i, uint32_t threshold) {
    uint32_t u = (uint32_t)(tfm_mix64(key, i >> 2) >> (16 * (i & 3))) & 0xFFFFu;
    return u >= threshold;
}

#endif
