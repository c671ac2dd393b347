/* Inline helpers shared by the kernels: a vectorizable expf, a vectorizable
 * exp in double for x <= 0, their AVX2 versions, the AVX2 8 x 8 and AVX-512
 * 16 x 16 transposes, and the dropout mask. */
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

/* The kernels with hand-written AVX2 + FMA paths, where GCC leaves a loop
 * scalar for AVX2 but vectorizes it for AVX-512: defined for the AVX2
 * variant only. */
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
#define TFM_AVX2_ONLY 1
#endif

#ifdef TFM_AVX2_ONLY
#include <immintrin.h>
/* A mask of the lanes i < n (none when n <= 0), for maskload/maskstore. */
static inline __m256i lanes_below(int64_t n) {
    int w = n <= 0 ? 0 : n >= 8 ? 8 : (int)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(w), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* tfm_expf on 8 lanes, operation for operation (GCC's if-conversion keeps
 * the scalar one's selects out of vector loops here, trapping math being
 * the default): the same bits in each lane. */
static inline __m256 tfm_expf8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447505531f);
    const __m256 below = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 xc = _mm256_blendv_ps(x, lo, below);
    xc = _mm256_blendv_ps(xc, hi, _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_sub_ps(xc, _mm256_mul_ps(n, _mm256_set1_ps(0.693359375f)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(-2.12194440e-4f)));
    __m256 p = _mm256_mul_ps(r, _mm256_set1_ps(0.00138888881f));
    p = _mm256_mul_ps(r, _mm256_add_ps(_mm256_set1_ps(0.00833345205f), p));
    p = _mm256_mul_ps(r, _mm256_add_ps(_mm256_set1_ps(0.0416666642f), p));
    p = _mm256_mul_ps(r, _mm256_add_ps(_mm256_set1_ps(0.166666672f), p));
    p = _mm256_mul_ps(r, _mm256_add_ps(_mm256_set1_ps(0.5f), p));
    p = _mm256_mul_ps(r, _mm256_add_ps(_mm256_set1_ps(1.0f), p));
    p = _mm256_add_ps(_mm256_set1_ps(1.0f), p);
    const __m256i e = _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127));
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(e, 23)));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), below);
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/* tfm_exp_nonpos on 4 lanes, operation for operation (GCC leaves the scalar
 * loops that call it scalar for AVX2): the same bits in each lane. */
static inline __m256d tfm_exp_nonpos4(__m256d x) {
    const __m256d shift = _mm256_set1_pd(0x1.8p52), lim = _mm256_set1_pd(-708.0);
    const __m256d below = _mm256_cmp_pd(x, lim, _CMP_LT_OQ);
    const __m256d xc = _mm256_blendv_pd(x, lim, below);
    const __m256d t = _mm256_fmadd_pd(xc, _mm256_set1_pd(0x1.71547652b82fep0), shift);
    const __m256d n = _mm256_sub_pd(t, shift);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(0x1.62e42fee00000p-1), xc);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(0x1.a39ef35793c76p-33), r);
    static const double c[] = {1.0 / 479001600.0,
                               1.0 / 39916800.0,
                               1.0 / 3628800.0,
                               1.0 / 362880.0,
                               1.0 / 40320.0,
                               1.0 / 5040.0,
                               1.0 / 720.0,
                               1.0 / 120.0,
                               1.0 / 24.0,
                               1.0 / 6.0,
                               0.5,
                               1.0,
                               1.0};
    __m256d p = _mm256_set1_pd(1.0 / 6227020800.0);
    for (int k = 0; k < 13; k++) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(c[k]));
    const __m256i bits = _mm256_add_epi64(_mm256_slli_epi64(_mm256_castpd_si256(t), 52),
                                          _mm256_set1_epi64x((int64_t)1023 << 52));
    __m256d y = _mm256_mul_pd(p, _mm256_castsi256_pd(bits));
    y = _mm256_blendv_pd(y, _mm256_setzero_pd(), below);
    return _mm256_blendv_pd(y, x, _mm256_cmp_pd(x, x, _CMP_UNORD_Q));
}

/* v[0..7] := its transpose (v[k][r] = old v[r][k]). */
static inline void transpose8(__m256 v[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        v[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}
#endif

#if defined(__AVX512F__)
#include <immintrin.h>
/* In-register transpose of a 16 x 16 block: r[i] holds row i on entry and
 * column i on exit. */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* t[2j], t[2j+1] now interleave rows 2j, 2j+1 by pairs within 128-bit lanes */
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    /* each 128-bit lane q of r[4g+c] holds rows 4g..4g+3 of column 4q+c */
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i hi =
        _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int c = 0; c < 4; c++) {
        /* combine groups 0,1 and 2,3: lanes (g0q0, g1q0, g0q2, g1q2) etc. */
        t[c] = _mm512_permutex2var_ps(r[c], lo, r[4 + c]);
        t[4 + c] = _mm512_permutex2var_ps(r[c], hi, r[4 + c]);
        t[8 + c] = _mm512_permutex2var_ps(r[8 + c], lo, r[12 + c]);
        t[12 + c] = _mm512_permutex2var_ps(r[8 + c], hi, r[12 + c]);
    }
    /* t[c]: (g0 q0, g1 q0, g0 q2, g1 q2) of column-phase c; t[4+c]: q1, q3 */
    const __m512i lo2 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const __m512i hi2 =
        _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_permutex2var_ps(t[c], lo2, t[8 + c]);           /* column c      (q0) */
        r[8 + c] = _mm512_permutex2var_ps(t[c], hi2, t[8 + c]);       /* column 8 + c  (q2) */
        r[4 + c] = _mm512_permutex2var_ps(t[4 + c], lo2, t[12 + c]);  /* column 4 + c  (q1) */
        r[12 + c] = _mm512_permutex2var_ps(t[4 + c], hi2, t[12 + c]); /* column 12 + c (q3) */
    }
}
#endif

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

/* Elements 4g..4g+3 (those below n), the four of one hash, through the mask
 * of tfm_dropout_keep: out = in * keep_scale where kept, else 0 (out +=
 * that when acc). */
static inline void tfm_dropout_group(float *out, const float *in, int64_t g, int64_t n,
                                     uint64_t key, uint32_t th, float keep_scale, int acc) {
    uint64_t h = tfm_mix64(key, (uint64_t)g);
    int64_t i0 = 4 * g, m = n - i0 < 4 ? n - i0 : 4;
    for (int64_t j = 0; j < m; j++) {
        float v = ((uint32_t)(h >> (16 * j)) & 0xFFFFu) >= th ? in[i0 + j] * keep_scale : 0.0f;
        if (acc)
            out[i0 + j] += v;
        else
            out[i0 + j] = v;
    }
}

#ifdef TFM_AVX2_ONLY
/* a * b mod 2^64 in each 64-bit lane, from 32-bit multiplies (AVX2 has no
 * 64-bit one): lo(a) lo(b) + ((hi(a) lo(b) + lo(a) hi(b)) << 32). */
static inline __m256i tfm_mul64x4(__m256i a, __m256i b) {
    const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), b),
                                           _mm256_mul_epu32(a, _mm256_srli_epi64(b, 32)));
    return _mm256_add_epi64(_mm256_mul_epu32(a, b), _mm256_slli_epi64(cross, 32));
}

/* tfm_mix64(key, ctr) in each of 4 lanes: the same integers. */
static inline __m256i tfm_mix64x4(uint64_t key, __m256i ctr) {
    __m256i x =
        _mm256_xor_si256(_mm256_set1_epi64x((int64_t)key),
                         tfm_mul64x4(ctr, _mm256_set1_epi64x((int64_t)0x9E3779B97F4A7C15ull)));
    x = tfm_mul64x4(_mm256_xor_si256(x, _mm256_srli_epi64(x, 30)),
                    _mm256_set1_epi64x((int64_t)0xBF58476D1CE4E5B9ull));
    x = tfm_mul64x4(_mm256_xor_si256(x, _mm256_srli_epi64(x, 27)),
                    _mm256_set1_epi64x((int64_t)0x94D049BB133111EBull));
    return _mm256_xor_si256(x, _mm256_srli_epi64(x, 31));
}

/* Elements 16q..16q+15 (all below n): tfm_dropout_group of groups 4q..4q+3
 * at once. The four hashes, read as 16-bit words in memory order, are the
 * elements' words in order; a word passes when it is > th - 1 (th <= 65536).
 * The kept products are the scalar ones, and a dropped element adds 0.0f. */
static inline void tfm_dropout16(float *out, const float *in, int64_t q, uint64_t key, uint32_t th,
                                 float keep_scale, int acc) {
    const int64_t g = 4 * q;
    const __m256i h = tfm_mix64x4(key, _mm256_setr_epi64x(g, g + 1, g + 2, g + 3));
    const __m256i th1 = _mm256_set1_epi32((int32_t)th - 1);
    const __m256 sc = _mm256_set1_ps(keep_scale);
    for (int half = 0; half < 2; half++) {
        const __m128i w = half ? _mm256_extracti128_si256(h, 1) : _mm256_castsi256_si128(h);
        const __m256i keep = _mm256_cmpgt_epi32(_mm256_cvtepu16_epi32(w), th1);
        float *o = out + 16 * q + 8 * half;
        const __m256 v = _mm256_and_ps(_mm256_castsi256_ps(keep),
                                       _mm256_mul_ps(_mm256_loadu_ps(in + 16 * q + 8 * half), sc));
        _mm256_storeu_ps(o, acc ? _mm256_add_ps(_mm256_loadu_ps(o), v) : v);
    }
}
#endif

/* out[0..n) = in * keep_scale where tfm_dropout_keep(key, i), else 0, on
 * the calling thread (out may be in). With AVX-512 (64-bit vector
 * multiplies) the compiler vectorizes the loop per element, 16 hashes at a
 * time, a quarter of them redundant; with AVX2 tfm_dropout16 takes 16
 * elements (four hashes) at a time; elsewhere the hashes stay scalar, one
 * per four elements. The same mask and values every way. */
static inline void tfm_dropout_span(float *out, const float *in, int64_t n, uint64_t key,
                                    uint32_t th, float keep_scale) {
#if defined(__AVX512DQ__)
    for (int64_t i = 0; i < n; i++)
        out[i] = tfm_dropout_keep(key, (uint64_t)i, th) ? in[i] * keep_scale : 0.0f;
#else
    int64_t g = 0;
#ifdef TFM_AVX2_ONLY
    for (; 4 * g + 16 <= n; g += 4) tfm_dropout16(out, in, g / 4, key, th, keep_scale, 0);
#endif
    for (; g < (n + 3) / 4; g++) tfm_dropout_group(out, in, g, n, key, th, keep_scale, 0);
#endif
}

#endif
