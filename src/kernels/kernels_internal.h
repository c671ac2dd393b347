/* Inline helpers shared by the kernels: a vectorizable expf, a vectorizable
 * exp in double for x <= 0, and the dropout mask. */
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

/* exp(x) in double for x <= 0, branch-free so loops vectorize, within 2 ulp
 * of the exact value (0.83 at worst in test_kernels): x = n ln2 + r with
 * |r| <= ln2/2 (ln2 split in two: n ln2_hi is exact for |n| < 2^20), e^r by
 * its Taylor series to r^13 (remainder under 1e-17 relative) in Horner form,
 * scaled by 2^n through the exponent bits: the low bits of
 * t = x log2e + 1.5 2^52 hold n. Fused multiply-adds where the variant has
 * them (elsewhere a multiply and an add: fma() would be a slow libm call),
 * so variants may differ in the last bit. Below -708 it returns 0 (exp would
 * be subnormal, under 2^-1021); NaN propagates. For x > 0 it is wrong:
 * callers pass differences from a maximum. */
#if defined(__FMA__)
#define TFM_MADD(a, b, c) fma(a, b, c)
#else
#define TFM_MADD(a, b, c) ((a) * (b) + (c))
#endif
static inline double tfm_exp_nonpos(double x) {
    const double shift = 0x1.8p52, log2e = 0x1.71547652b82fep0;
    const double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
    double xc = x < -708.0 ? -708.0 : x;
    double t = TFM_MADD(xc, log2e, shift);
    double n = t - shift;
    double r = TFM_MADD(-n, ln2_lo, TFM_MADD(-n, ln2_hi, xc));
    double p = 1.0 / 6227020800.0; /* 1/13! */
    p = TFM_MADD(p, r, 1.0 / 479001600.0);
    p = TFM_MADD(p, r, 1.0 / 39916800.0);
    p = TFM_MADD(p, r, 1.0 / 3628800.0);
    p = TFM_MADD(p, r, 1.0 / 362880.0);
    p = TFM_MADD(p, r, 1.0 / 40320.0);
    p = TFM_MADD(p, r, 1.0 / 5040.0);
    p = TFM_MADD(p, r, 1.0 / 720.0);
    p = TFM_MADD(p, r, 1.0 / 120.0);
    p = TFM_MADD(p, r, 1.0 / 24.0);
    p = TFM_MADD(p, r, 1.0 / 6.0);
    p = TFM_MADD(p, r, 0.5);
    p = TFM_MADD(p, r, 1.0);
    p = TFM_MADD(p, r, 1.0);
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits << 52) + ((uint64_t)1023 << 52); /* 2^n, -1021 <= n <= 0 */
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    double y = p * scale;
    y = x < -708.0 ? 0.0 : y;
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
