/* bf16 GEMM: the same contract as tfm_gemm (fp32 in, fp32 out, row-major,
 * four transpose cases, beta and bias epilogues), but op(A) and op(B) are
 * rounded to bfloat16 while they are packed and the products accumulate in
 * fp32 with AVX-512 BF16's vdpbf16ps, which does two multiply-adds per fp32
 * lane, twice the rate of fp32 FMA on AMD Zen 4/5.
 *
 * Rounding (tfm_bf16_from_f32, and the packing, which uses vcvtne2ps2bf16
 * on the native path): round to nearest, ties to even; fp32 denormals become
 * a zero of the same sign (bf16 has fp32's exponent range, so only values
 * below 2^-126 are affected; the instruction does this too); Inf stays Inf;
 * NaN stays NaN, made quiet, with its sign and top payload bits.
 *
 * Packing (32-bit words, each a pair of bf16: the low half holds the even k,
 * the high half the odd k; an odd K is padded with a zero pair half):
 *   B: per BNR-column panel, word[p*BNR + c] = (op(B)[2p, c], op(B)[2p+1, c])
 *   A from A^T (trans_a):  per BMR-row panel, word[p*BMR + i]   (k-major)
 *   A from A (!trans_a):   per BMR-row panel, word[i*BAKS + p]  (rows: a
 *                          plain conversion of each row)
 * The micro-kernel broadcasts one A word per row and runs vdpbf16ps against
 * two vectors of 16 B words: a BMR x BNR = 14 x 32 tile in 28 accumulators.
 *
 * Summation order (what makes the result reproducible and the emulated path
 * bit-identical to the native one): within each BKC block of k, each C
 * element's accumulator starts at 0 and, for each pair p in order, does
 *   acc = ftz(fma(a[2p+1], b[2p+1], acc)); acc = ftz(fma(a[2p], b[2p], acc))
 * (odd first: vdpbf16ps's order, verified on Zen 5 by test_gemm_bf16; ftz
 * flushes results below 2^-126 to zero as the instruction does), then
 * C = alpha*acc + beta*C for the first block (bias instead of beta*C with a
 * bias) and C = alpha*acc + C for the others, as in tfm_gemm. The products of
 * two bf16 numbers are exact in fp32, so fma is the instruction's arithmetic.
 * Nothing depends on the thread count or on which tile an element falls in.
 *
 * Native or emulated: the native kernels are compiled with a target
 * attribute (no -m flag needed) and chosen at run time when cpuid reports
 * AVX512F/BW/VL/DQ + AVX512_BF16 and the OS saves the ZMM state. Elsewhere
 * (or after tfm_bf16_set_emulated(1)) portable C packs the same words and
 * computes the same fma/ftz chain: the same results, several times slower.
 * TFM_BF16_EMULATE=1 in the environment forces it too (read once).
 *
 * Threads and buffers: as tfm_gemm (static split of C's rows or column
 * panels above BGEMM_PAR_MIN_FLOPS, serial inside a parallel region;
 * per-thread packing buffers of one block each, allocated by the thread's
 * first call).
 *
 * Packed weights (tfm_bf16_weight_pack): a weight W (n_out, in) packed once
 * as op(B) = W^T, every BNC x BKC block in the order bgemm_run reads it;
 * tfm_gemm_bf16_weight then skips B's packing and computes the same bits
 * (the same words into the same micro-kernel calls). Decoding multiplies
 * the same weights by a few rows at every step, where packing them anew
 * costs about as much as the product. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../util/par.h"
#include "tfm/kernels.h"

#if defined(__x86_64__) && ((defined(__clang__) && __clang_major__ >= 9) ||                        \
                            (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 10))
#define BF16_NATIVE_BUILD 1
#include <cpuid.h>
#include <immintrin.h>
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#else
#define BF16_NATIVE_BUILD 0
#endif

#define BMR 14
#define BNR 32
/* k per block (even): a BKC x BNR panel of packed B is 32 KB, as in tfm_gemm */
#define BKC 512
#define BKP (BKC / 2)
/* words per packed A row (rows layout): a multiple of 16 (aligned 64-byte
 * stores), padded so that rows fall in different L1 sets */
#define BAKS (BKP + 16)
#define BMC (BMR * 24)
#define BNC (BNR * 128)
#define BGEMM_PAR_MIN_FLOPS 4.0e6

/* ---- rounding --------------------------------------------------------------- */

uint16_t tfm_bf16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint32_t mag = u & 0x7FFFFFFFu;
    if (mag > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u); /* NaN: quiet */
    if (mag < 0x00800000u) return (uint16_t)((u >> 16) & 0x8000u); /* zero, denormal */
    u += 0x7FFFu + ((u >> 16) & 1u); /* ties to even; carries into the exponent (Inf) */
    return (uint16_t)(u >> 16);
}

float tfm_f32_from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

float tfm_bf16_round(float x) { return tfm_f32_from_bf16(tfm_bf16_from_f32(x)); }

static inline uint32_t pair_word(float even, float odd) {
    return (uint32_t)tfm_bf16_from_f32(even) | (uint32_t)tfm_bf16_from_f32(odd) << 16;
}

/* ---- native or emulated --------------------------------------------------------- */

static int cpu_has_bf16(void) {
#if BF16_NATIVE_BUILD
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 27)) || !(c & (1u << 12))) return 0; /* OSXSAVE, FMA */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    /* AVX512F (16), DQ (17), BW (30), VL (31) */
    if ((b & 0xC0030000u) != 0xC0030000u) return 0;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) return 0; /* AVX512_BF16 */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    return (lo & 0xE6u) == 0xE6u; /* SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM state */
#else
    return 0;
#endif
}

static int g_cpu_bf16;
static pthread_once_t g_cpu_once = PTHREAD_ONCE_INIT;
/* TFM_BF16_EMULATE=1 in the environment forces the emulated path (same results) */
static void cpu_init(void) {
    const char *e = getenv("TFM_BF16_EMULATE");
    g_cpu_bf16 = cpu_has_bf16() && !(e && e[0] == '1');
}
static int g_force_emulated;

int tfm_bf16_cpu_native(void) {
    pthread_once(&g_cpu_once, cpu_init);
    return g_cpu_bf16;
}

void tfm_bf16_set_emulated(int on) { g_force_emulated = on; }

static int use_native(void) { return !g_force_emulated && tfm_bf16_cpu_native(); }

const char *tfm_gemm_bf16_kernel_name(void) { return use_native() ? "avx512bf16" : "emulated"; }

/* ---- per-thread buffers ------------------------------------------------------------ */

typedef struct {
    uint32_t *p;
    size_t n; /* words */
} bbuf;

typedef struct {
    bbuf a, b;
} bbufs;

static _Thread_local bbufs g_bbufs;
static pthread_key_t g_bbufs_key;
static pthread_once_t g_bbufs_once = PTHREAD_ONCE_INIT;

static void bbufs_free(void *p) {
    bbufs *b = p;
    tfm_free(b->a.p);
    tfm_free(b->b.p);
    b->a = (bbuf){NULL, 0};
    b->b = (bbuf){NULL, 0};
}

static int g_bbufs_key_ok;
/* Without the key (out of resources) buffers are not freed at thread exit. */
static void bbufs_key_init(void) {
    g_bbufs_key_ok = pthread_key_create(&g_bbufs_key, bbufs_free) == 0;
}

/* As gemm.c's buf_reserve: the first call allocates one block's worth
 * (max_n), so no later call allocates. NULL when out of memory (b
 * unchanged): the caller then computes unpacked. */
static uint32_t *bbuf_reserve(bbuf *b, size_t n, size_t max_n) {
    TFM_ASSERT(n <= max_n, "bf16 GEMM packing buffer: %zu words asked, blocks hold %zu", n, max_n);
    if (b->n < n + 64) {
        if (!g_bbufs.a.p && !g_bbufs.b.p) {
            pthread_once(&g_bbufs_once, bbufs_key_init);
            if (g_bbufs_key_ok) pthread_setspecific(g_bbufs_key, &g_bbufs);
        }
        size_t want = max_n + 64;
        uint32_t *p = tfm_alloc(want * sizeof(uint32_t));
        if (!p) return NULL;
        tfm_free(b->p);
        b->p = p;
        b->n = want;
    }
    return b->p;
}

/* ---- packing, portable --------------------------------------------------------------
 * Element (r, k) of the source block is src[r*sr + k*sk]; r < valid, k < kc
 * exist, the rest is zero. k-major: out[p*R + r]; rows: out[r*BAKS + p]. */

static void pack_pairs_emul(uint32_t *out, int rows_layout, int R, const float *src, int64_t sr,
                            int64_t sk, int valid, int64_t kc) {
    int64_t np = (kc + 1) / 2;
    for (int r = 0; r < R; r++)
        for (int64_t p = 0; p < np; p++) {
            uint32_t w = 0;
            if (r < valid) {
                const float *s = src + r * sr + 2 * p * sk;
                w = pair_word(s[0], 2 * p + 1 < kc ? s[sk] : 0.0f);
            }
            out[rows_layout ? r * BAKS + p : p * R + r] = w;
        }
}

/* ---- packing, native ------------------------------------------------------------- */

#if BF16_NATIVE_BUILD
static inline BF16_TARGET __mmask16 lanes(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* 16 words from rows k and k+1 (row1 NULL: zeros), `width` valid lanes:
 * word c = (row0[c], row1[c]) */
static inline BF16_TARGET __m512i interleave_rows(const float *row0, const float *row1,
                                                  int64_t width) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24,
                                         8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __mmask16 m = lanes(width);
    __m512 x0 = _mm512_maskz_loadu_ps(m, row0);
    __m512 x1 = row1 ? _mm512_maskz_loadu_ps(m, row1) : _mm512_setzero_ps();
    __m512i h = (__m512i)_mm512_cvtne2ps_pbh(x1, x0); /* x0 in the low 16 halves */
    return _mm512_permutexvar_epi16(idx, h);
}

/* 16 words from 32 consecutive floats of which n exist: word p = (s[2p], s[2p+1]) */
static inline BF16_TARGET __m512i convert_run(const float *s, int64_t n) {
    __m512 lo = _mm512_maskz_loadu_ps(lanes(n), s);
    __m512 hi = _mm512_maskz_loadu_ps(lanes(n - 16), s + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* r[i] = row i on entry, column i on exit (16 x 16 words) */
static inline BF16_TARGET void transpose16_epi32(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) {
        r[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        r[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        r[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        r[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    /* lane q of r[4g+c]: rows 4g..4g+3 of column 4q+c */
    for (int c = 0; c < 4; c++) {
        t[c] = _mm512_shuffle_i32x4(r[c], r[4 + c], 0x88);
        t[4 + c] = _mm512_shuffle_i32x4(r[c], r[4 + c], 0xDD);
        t[8 + c] = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0x88);
        t[12 + c] = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0xDD);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0x88);
        r[8 + c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0xDD);
        r[4 + c] = _mm512_shuffle_i32x4(t[4 + c], t[12 + c], 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(t[4 + c], t[12 + c], 0xDD);
    }
}

/* k-major from a source whose R-wide rows are contiguous (op rows/columns
 * run along memory): out[p*R + r] = (src[2p*ld + r], src[(2p+1)*ld + r]) */
static BF16_TARGET void pack_kmajor_native(uint32_t *out, int R, const float *src, int64_t ld,
                                           int valid, int64_t kc) {
    int64_t np = (kc + 1) / 2;
    for (int64_t p = 0; p < np; p++) {
        const float *r0 = src + 2 * p * ld;
        const float *r1 = 2 * p + 1 < kc ? r0 + ld : NULL;
        uint32_t *o = out + p * R;
        /* rows ld apart: the prefetchers barely see a stream of 14-32 floats
         * per row, so fetch the pair 4 rows ahead */
        if (2 * p + 5 < kc)
            for (int c = 0; c < R; c += 16) {
                _mm_prefetch((const char *)(r0 + 4 * ld + c), _MM_HINT_T0);
                _mm_prefetch((const char *)(r0 + 5 * ld + c), _MM_HINT_T0);
            }
        for (int c = 0; c < R; c += 16) {
            __m512i w = interleave_rows(r0 + c, r1 ? r1 + c : NULL, valid - c);
            if (R - c >= 16)
                _mm512_storeu_si512(o + c, w);
            else
                _mm512_mask_storeu_epi32(o + c, lanes(R - c), w);
        }
    }
}

/* k-major from a source whose R rows are contiguous in k:
 * out[p*R + r] = (src[r*ld + 2p], src[r*ld + 2p+1]), R a multiple of 16 */
static BF16_TARGET void pack_kmajor_t_native(uint32_t *out, int R, const float *src, int64_t ld,
                                             int valid, int64_t kc) {
    int64_t np = (kc + 1) / 2;
    for (int r0 = 0; r0 < R; r0 += 16)
        for (int64_t p0 = 0; p0 < np; p0 += 16) {
            __m512i v[16];
            for (int i = 0; i < 16; i++)
                v[i] = r0 + i < valid ? convert_run(src + (r0 + i) * ld + 2 * p0, kc - 2 * p0)
                                      : _mm512_setzero_si512();
            transpose16_epi32(v);
            int64_t pp = np - p0 < 16 ? np - p0 : 16;
            for (int64_t p = 0; p < pp; p++) _mm512_store_si512(out + (p0 + p) * R + r0, v[p]);
        }
}

/* rows layout: out[r*BAKS + p] = (src[r*ld + 2p], src[r*ld + 2p+1]) */
static BF16_TARGET void pack_rows_native(uint32_t *out, int R, const float *src, int64_t ld,
                                         int valid, int64_t kc) {
    int64_t np = (kc + 1) / 2;
    for (int r = 0; r < R; r++)
        for (int64_t p0 = 0; p0 < np; p0 += 16)
            _mm512_store_si512(out + r * BAKS + p0,
                               r < valid ? convert_run(src + r * ld + 2 * p0, kc - 2 * p0)
                                         : _mm512_setzero_si512());
}
#endif

/* op(A)[i0 : i0+mc, p0 : p0+kc] -> BMR-row panels of BMR*BAKS words */
static void pack_a(int native, uint32_t *out, int trans_a, const float *A, int64_t lda, int64_t i0,
                   int64_t mc, int64_t p0, int64_t kc) {
    for (int64_t i = 0; i < mc; i += BMR) {
        int valid = (int)(mc - i < BMR ? mc - i : BMR);
        uint32_t *o = out + i * BAKS;
        const float *s = trans_a ? A + p0 * lda + i0 + i : A + (i0 + i) * lda + p0;
#if BF16_NATIVE_BUILD
        if (native) {
            if (trans_a)
                pack_kmajor_native(o, BMR, s, lda, valid, kc);
            else
                pack_rows_native(o, BMR, s, lda, valid, kc);
            continue;
        }
#else
        (void)native;
#endif
        if (trans_a)
            pack_pairs_emul(o, 0, BMR, s, 1, lda, valid, kc);
        else
            pack_pairs_emul(o, 1, BMR, s, lda, 1, valid, kc);
    }
}

/* op(B)[p0 : p0+kc, j0 + panels [q0, q1)] -> BNR-column panels, panel q at
 * out + (q - q0) * BNR * np */
static void pack_b(int native, uint32_t *out, int trans_b, const float *B, int64_t ldb, int64_t p0,
                   int64_t kc, int64_t j0, int64_t nc, int64_t q0, int64_t q1) {
    int64_t np = (kc + 1) / 2;
    for (int64_t q = q0; q < q1; q++) {
        int64_t j = q * BNR;
        int valid = (int)(nc - j < BNR ? nc - j : BNR);
        uint32_t *o = out + (q - q0) * BNR * np;
        const float *s = trans_b ? B + (j0 + j) * ldb + p0 : B + p0 * ldb + j0 + j;
#if BF16_NATIVE_BUILD
        if (native) {
            if (trans_b)
                pack_kmajor_t_native(o, BNR, s, ldb, valid, kc);
            else
                pack_kmajor_native(o, BNR, s, ldb, valid, kc);
            continue;
        }
#else
        (void)native;
#endif
        if (trans_b)
            pack_pairs_emul(o, 0, BNR, s, ldb, 1, valid, kc);
        else
            pack_pairs_emul(o, 0, BNR, s, 1, ldb, valid, kc);
    }
}

/* ---- micro-kernels ---------------------------------------------------------------
 * acc = Ap (BMR x np pairs) * Bp (np pairs x BNR); then for the mr x nr corner:
 *   C = alpha*acc + beta*C  (beta == 0: alpha*acc, C not read), one rounding. */

static inline float combine(float alpha, float acc, float beta, float c) {
    return beta == 0.0f ? alpha * acc : fmaf(alpha, acc, beta == 1.0f ? c : beta * c);
}

static inline float ftz(float x) { return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x; }

static void ukernel_emul(int a_rows, int64_t np, const uint32_t *restrict a,
                         const uint32_t *restrict b, float *C, int64_t ldc, const float *Cin,
                         int64_t ldcin, float alpha, float beta, int mr, int nr) {
    float acc[BMR][BNR];
    memset(acc, 0, sizeof acc);
    for (int64_t p = 0; p < np; p++) {
        const uint32_t *bw = b + p * BNR;
        float be[BNR], bo[BNR];
        for (int c = 0; c < BNR; c++) {
            be[c] = tfm_f32_from_bf16((uint16_t)(bw[c] & 0xFFFFu));
            bo[c] = tfm_f32_from_bf16((uint16_t)(bw[c] >> 16));
        }
        for (int i = 0; i < mr; i++) {
            uint32_t aw = a_rows ? a[i * BAKS + p] : a[p * BMR + i];
            float ae = tfm_f32_from_bf16((uint16_t)(aw & 0xFFFFu));
            float ao = tfm_f32_from_bf16((uint16_t)(aw >> 16));
            for (int c = 0; c < BNR; c++) {
                float t = ftz(fmaf(ao, bo[c], acc[i][c]));
                acc[i][c] = ftz(fmaf(ae, be[c], t));
            }
        }
    }
    for (int i = 0; i < mr; i++)
        for (int c = 0; c < nr; c++)
            C[i * ldc + c] = combine(alpha, acc[i][c], beta, Cin[i * ldcin + c]);
}

#if BF16_NATIVE_BUILD
/* ROWS x (16*VECS) accumulators, for the full tile and narrower edge tiles
 * (the arithmetic per element is the same in every instance). Packed B is
 * always a full zero-padded panel, so only the stores need masks. */
static inline __attribute__((always_inline)) BF16_TARGET void
bk_body(int ROWS, int VECS, int AL, int64_t np, const uint32_t *restrict a,
        const uint32_t *restrict b, float *C, int64_t ldc, const float *Cin, int64_t ldcin,
        float alpha, float beta, int mr, int nr) {
    __m512 acc[BMR][2];
    /* C is touched once per block at rows ldc apart: fetch it during the
     * k loop (into L2 only when rows share one L1 set, see tfm_gemm) */
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; i++) {
        int hint_l1 = ldc % 1024 != 0;
        if (hint_l1) {
            _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(C + i * ldc + VECS * 16 - 1), _MM_HINT_T0);
        } else {
            _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T1);
            _mm_prefetch((const char *)(C + i * ldc + VECS * 16 - 1), _MM_HINT_T1);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; i++)
#pragma GCC unroll 2
        for (int v = 0; v < VECS; v++) acc[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int64_t p = 0; p < np; p++) {
        __m512i bv[2];
#pragma GCC unroll 2
        for (int v = 0; v < VECS; v++) bv[v] = _mm512_load_si512(b + v * 16);
#pragma GCC unroll 16
        for (int i = 0; i < ROWS; i++) {
            __m512i av = _mm512_set1_epi32((int)(AL ? a[i * BAKS] : a[i]));
#pragma GCC unroll 2
            for (int v = 0; v < VECS; v++)
                acc[i][v] = _mm512_dpbf16_ps(acc[i][v], (__m512bh)av, (__m512bh)bv[v]);
        }
        a += AL ? 1 : BMR;
        b += BNR;
    }
    const int full = nr == VECS * 16;
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; i++) {
        if (i >= mr) break;
#pragma GCC unroll 2
        for (int v = 0; v < VECS; v++) {
            __mmask16 m = lanes(nr - v * 16);
            float *c = C + i * ldc + v * 16;
            const float *cin = Cin + i * ldcin + v * 16;
            __m512 r;
            if (beta == 0.0f) {
                r = _mm512_mul_ps(va, acc[i][v]);
            } else {
                __m512 cv = full ? _mm512_loadu_ps(cin) : _mm512_maskz_loadu_ps(m, cin);
                if (beta != 1.0f) cv = _mm512_mul_ps(vb, cv);
                r = _mm512_fmadd_ps(va, acc[i][v], cv);
            }
            if (full)
                _mm512_storeu_ps(c, r);
            else
                _mm512_mask_storeu_ps(c, m, r);
        }
    }
}

#define BK_INSTANCE(NAME, R, V, AL)                                                                \
    static BF16_TARGET void NAME(                                                                  \
        int64_t np, const uint32_t *restrict a, const uint32_t *restrict b, float *C, int64_t ldc, \
        const float *Cin, int64_t ldcin, float alpha, float beta, int mr, int nr) {                \
        bk_body(R, V, AL, np, a, b, C, ldc, Cin, ldcin, alpha, beta, mr, nr);                      \
    }
#define BK_SET(S, AL)                                                                              \
    BK_INSTANCE(bk_full##S, BMR, 2, AL)                                                            \
    BK_INSTANCE(bk_8x2##S, 8, 2, AL)                                                               \
    BK_INSTANCE(bk_4x2##S, 4, 2, AL)                                                               \
    BK_INSTANCE(bk_2x2##S, 2, 2, AL)                                                               \
    BK_INSTANCE(bk_1x2##S, 1, 2, AL)                                                               \
    BK_INSTANCE(bk_full_x1##S, BMR, 1, AL)                                                         \
    BK_INSTANCE(bk_4x1##S, 4, 1, AL)                                                               \
    BK_INSTANCE(bk_1x1##S, 1, 1, AL)                                                               \
    static BF16_TARGET void bk##S(                                                                 \
        int64_t np, const uint32_t *restrict a, const uint32_t *restrict b, float *C, int64_t ldc, \
        const float *Cin, int64_t ldcin, float alpha, float beta, int mr, int nr) {                \
        if (nr > 16) {                                                                             \
            if (mr > 8)                                                                            \
                bk_full##S(np, a, b, C, ldc, Cin, ldcin, alpha, beta, mr, nr);                     \
            else if (mr > 4)                                                                       \
                bk_8x2##S(np, a, b, C, ldc, Cin, ldcin, alpha, beta, mr, nr);                      \
            else if (mr > 2)                                                                       \
                bk_4x2##S(np, a, b, C, ldc, Cin, ldcin, alpha, beta, mr, nr);                      \
            else if (mr > 1)                                                                       \
                bk_2x2##S(np, a, b, C, ldc, Cin, ldcin, alpha, beta, mr, nr);                      \
            else                                                                                   \
                bk_1x2##S(np, a, b, C, ldc, Cin, ldcin, alpha, beta, mr, nr);                      \
        } else {                                                                                   \
            if (mr > 4)                                                                            \
                bk_full_x1##S(np, a, b, C, ldc, Cin, ldcin, alpha, beta, mr, nr);                  \
            else if (mr > 1)                                                                       \
                bk_4x1##S(np, a, b, C, ldc, Cin, ldcin, alpha, beta, mr, nr);                      \
            else                                                                                   \
                bk_1x1##S(np, a, b, C, ldc, Cin, ldcin, alpha, beta, mr, nr);                      \
        }                                                                                          \
    }
BK_SET(_kmajor, 0) /* packed A as word[p*BMR + i] */
BK_SET(_rows, 1)   /* packed A as word[i*BAKS + p] */
#endif

static void ukernel(int native, int a_rows, int64_t np, const uint32_t *a, const uint32_t *b,
                    float *C, int64_t ldc, const float *Cin, int64_t ldcin, float alpha, float beta,
                    int mr, int nr) {
#if BF16_NATIVE_BUILD
    if (native) {
        if (a_rows)
            bk_rows(np, a, b, C, ldc, Cin, ldcin, alpha, beta, mr, nr);
        else
            bk_kmajor(np, a, b, C, ldc, Cin, ldcin, alpha, beta, mr, nr);
        return;
    }
#else
    (void)native;
#endif
    ukernel_emul(a_rows, np, a, b, C, ldc, Cin, ldcin, alpha, beta, mr, nr);
}

/* ---- driver ---------------------------------------------------------------------- */

typedef struct {
    int trans_a, trans_b;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    const float *bias; /* (N) or NULL: the first K block starts from bias, not beta * C */
    int native;
    const tfm_bf16_weight *wp; /* op(B) packed once (tfm_bf16_weight_pack), or NULL */
} bgemm_args;

/* A weight W (n_out, in) as op(B) = W^T (in x n_out), packed by pack_b in
 * bgemm_run's order: column blocks of BNC, in each the K blocks of BKC, in
 * each the BNR-column panels (zero-padded as pack_b pads them). */
struct tfm_bf16_weight {
    int64_t n_out, in;
    int64_t np_total; /* pairs over all K blocks */
    uint32_t *panels;
    const float *src; /* W itself: the unpacked path when packing buffers fail */
};

/* The panels of column block jc, K block pc: panel q at + q * BNR * np. */
static const uint32_t *weight_block(const tfm_bf16_weight *w, int64_t jc, int64_t pc) {
    int64_t nc = w->n_out - jc < BNC ? w->n_out - jc : BNC, npanels = (nc + BNR - 1) / BNR;
    return w->panels + jc * w->np_total + npanels * BNR * (pc / 2);
}

/* C[i0:i1, j0:j1] without packing buffers, for when they cannot be
 * allocated: inputs rounded to bf16, products summed in double (as the bf16
 * reference), only slower. Never taken while memory lasts. */
static void bgemm_unpacked(const bgemm_args *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    for (int64_t i = i0; i < i1; i++)
        for (int64_t j = j0; j < j1; j++) {
            double acc = 0.0;
            for (int64_t p = 0; p < g->K; p++) {
                float a = tfm_bf16_round(g->trans_a ? g->A[p * g->lda + i] : g->A[i * g->lda + p]);
                float b = tfm_bf16_round(g->trans_b ? g->B[j * g->ldb + p] : g->B[p * g->ldb + j]);
                acc += (double)a * b;
            }
            float *c = &g->C[i * g->ldc + j];
            double c0 = g->bias ? (double)g->bias[j] : g->beta == 0.0f ? 0.0 : (double)g->beta * *c;
            *c = (float)(c0 + (double)g->alpha * acc);
        }
}

/* Thread `tid` of `nt` computes its rows (split_m) or its BNR-column panels
 * of C, packing what it reads into its own buffers (see tfm_gemm). */
static void bgemm_run(const bgemm_args *g, int tid, int nt, int split_m) {
    const int64_t M = g->M, N = g->N, K = g->K;
    int64_t m0 = 0, m1 = M;
    if (split_m && nt > 1) {
        int64_t panels = (M + BMR - 1) / BMR;
        m0 = panels * tid / nt * BMR;
        m1 = panels * (tid + 1) / nt * BMR;
        if (m1 > M) m1 = M;
        if (m0 > M) m0 = M;
    }
    if (m0 >= m1) return;
    int64_t mc_max = m1 - m0 < BMC ? m1 - m0 : BMC;
    int64_t np_max = ((K < BKC ? K : BKC) + 1) / 2;
    int64_t nc_max = N < BNC ? N : BNC;
    uint32_t *ap = bbuf_reserve(&g_bbufs.a, (size_t)((mc_max + BMR - 1) / BMR * BMR * BAKS),
                                (size_t)(BMC + BMR - 1) / BMR * BMR * BAKS);
    uint32_t *bp = g->wp
                       ? NULL
                       : bbuf_reserve(&g_bbufs.b, (size_t)((nc_max + BNR - 1) / BNR * BNR * np_max),
                                      (size_t)(BNC + BNR - 1) / BNR * BNR * ((BKC + 1) / 2));
    if (!ap || (!bp && !g->wp)) { /* out of memory: the same share of C, unpacked */
        for (int64_t jc = 0; jc < N; jc += BNC) {
            int64_t nc = N - jc < BNC ? N - jc : BNC, npanels = (nc + BNR - 1) / BNR;
            int64_t q0 = split_m ? 0 : npanels * tid / nt;
            int64_t q1 = split_m ? npanels : npanels * (tid + 1) / nt;
            int64_t j1 = jc + q1 * BNR < jc + nc ? jc + q1 * BNR : jc + nc;
            if (q0 < q1) bgemm_unpacked(g, m0, m1, jc + q0 * BNR, j1);
        }
        return;
    }
    const int a_rows = !g->trans_a;
    for (int64_t jc = 0; jc < N; jc += BNC) {
        int64_t nc = N - jc < BNC ? N - jc : BNC;
        int64_t npanels = (nc + BNR - 1) / BNR;
        int64_t q0 = 0, q1 = npanels;
        if (!split_m) {
            q0 = npanels * tid / nt;
            q1 = npanels * (tid + 1) / nt;
        }
        if (q0 >= q1) continue;
        for (int64_t pc = 0; pc < K; pc += BKC) {
            int64_t kc = K - pc < BKC ? K - pc : BKC, np = (kc + 1) / 2;
            float beta = pc == 0 ? g->beta : 1.0f;
            /* packed B: panel q at bblk + (q - qbase) * BNR * np */
            const uint32_t *bblk = bp;
            int64_t qbase = q0;
            if (g->wp) {
                bblk = weight_block(g->wp, jc, pc);
                qbase = 0;
            } else {
                pack_b(g->native, bp, g->trans_b, g->B, g->ldb, pc, kc, jc, nc, q0, q1);
            }
            for (int64_t ic = m0; ic < m1; ic += BMC) {
                int64_t mc = m1 - ic < BMC ? m1 - ic : BMC;
                pack_a(g->native, ap, g->trans_a, g->A, g->lda, ic, mc, pc, kc);
                for (int64_t q = q0; q < q1; q++) {
                    int64_t j = q * BNR;
                    int nr = (int)(nc - j < BNR ? nc - j : BNR);
                    const uint32_t *bpan = bblk + (q - qbase) * BNR * np;
                    for (int64_t i = 0; i < mc; i += BMR) {
                        int mr = (int)(mc - i < BMR ? mc - i : BMR);
                        float *c = g->C + (ic + i) * g->ldc + jc + j;
                        if (pc == 0 && g->bias)
                            ukernel(g->native, a_rows, np, ap + i * BAKS, bpan, c, g->ldc,
                                    g->bias + jc + j, 0, g->alpha, 1.0f, mr, nr);
                        else
                            ukernel(g->native, a_rows, np, ap + i * BAKS, bpan, c, g->ldc, c,
                                    g->ldc, g->alpha, beta, mr, nr);
                    }
                }
            }
        }
    }
}

static void scale_c(int64_t M, int64_t N, float beta, const float *bias, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (bias)
            memcpy(c, bias, (size_t)N * sizeof(float));
        else if (beta == 0.0f)
            memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f)
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
    }
}

static void bgemm_dispatch(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                           const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                           const float *bias, float *C, int64_t ldc, const tfm_bf16_weight *wp) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, bias, C, ldc);
        return;
    }
    bgemm_args g = {trans_a, trans_b, M,   N,   K, alpha, beta,        A,
                    B,       lda,     ldb, ldc, C, bias,  use_native(), wp};
    int nt = 1;
    if (2.0 * (double)M * N * K >= BGEMM_PAR_MIN_FLOPS) nt = tfm_par_threads();
    if (nt <= 1) {
        bgemm_run(&g, 0, 1, 1);
        return;
    }
    /* rows or columns of C: load imbalance plus the packing every thread
     * repeats (the cost model of tfm_gemm) */
    int64_t tiles_m = (M + BMR - 1) / BMR;
    int64_t nc_blk = N < BNC ? N : BNC, tiles_n = (nc_blk + BNR - 1) / BNR;
    double dup = 16.0 * nt * (nt - 1);
    /* with B packed beforehand (wp), splitting rows repeats no packing */
    double cost_m = (double)((tiles_m + nt - 1) / nt) * nt / (double)tiles_m +
                    (wp ? 0.0 : dup / (double)M);
    double cost_n = (double)((tiles_n + nt - 1) / nt) * nt / (double)tiles_n + dup / (double)nc_blk;
    int split_m = cost_m <= cost_n;
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        bgemm_run(&g, omp_get_thread_num(), omp_get_num_threads(), split_m);
#endif
    }
}

void tfm_gemm_bf16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                   int64_t ldc) {
    bgemm_dispatch(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, NULL, C, ldc, NULL);
}

void tfm_gemm_bf16_bias(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, const float *bias,
                        float *C, int64_t ldc) {
    bgemm_dispatch(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, 1.0f, bias, C, ldc, NULL);
}

tfm_bf16_weight *tfm_bf16_weight_pack(const float *w, int64_t n_out, int64_t in) {
    if (n_out <= 0 || in <= 0) return NULL;
    tfm_bf16_weight *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_out = n_out;
    p->in = in;
    p->src = w;
    for (int64_t pc = 0; pc < in; pc += BKC) p->np_total += ((in - pc < BKC ? in - pc : BKC) + 1) / 2;
    int64_t panels = (n_out + BNR - 1) / BNR;
    p->panels = tfm_alloc((size_t)(panels * BNR * p->np_total) * sizeof(uint32_t));
    if (!p->panels) {
        free(p);
        return NULL;
    }
    int native = use_native();
    for (int64_t jc = 0; jc < n_out; jc += BNC) {
        int64_t nc = n_out - jc < BNC ? n_out - jc : BNC;
        for (int64_t pc = 0; pc < in; pc += BKC) {
            int64_t kc = in - pc < BKC ? in - pc : BKC;
            pack_b(native, (uint32_t *)weight_block(p, jc, pc), 1, w, in, pc, kc, jc, nc, 0,
                   (nc + BNR - 1) / BNR);
        }
    }
    return p;
}

void tfm_bf16_weight_free(tfm_bf16_weight *w) {
    if (!w) return;
    tfm_free(w->panels);
    free(w);
}

int64_t tfm_bf16_weight_rows(const tfm_bf16_weight *w) { return w->n_out; }
int64_t tfm_bf16_weight_cols(const tfm_bf16_weight *w) { return w->in; }

void tfm_gemm_bf16_weight(int64_t M, const float *A, int64_t lda, const tfm_bf16_weight *w,
                          const float *bias, float *C, int64_t ldc) {
    bgemm_dispatch(0, 1, M, w->n_out, w->in, 1.0f, A, lda, w->src, w->in, bias ? 1.0f : 0.0f, bias,
                   C, ldc, w);
}

void tfm_gemm_bf16_batched(int trans_a, int trans_b, int64_t batch, int64_t M, int64_t N, int64_t K,
                           float alpha, const float *A, int64_t lda, int64_t stride_a,
                           const float *B, int64_t ldb, int64_t stride_b, float beta, float *C,
                           int64_t ldc, int64_t stride_c) {
    /* as tfm_gemm_batched */
    int small = 2.0 * (double)M * N * K < BGEMM_PAR_MIN_FLOPS;
    if (small && batch > 1 && tfm_par_threads() > 1 &&
        2.0 * (double)M * N * K * batch >= BGEMM_PAR_MIN_FLOPS) {
#pragma omp parallel for schedule(static)
        for (int64_t b = 0; b < batch; b++)
            tfm_gemm_bf16(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b,
                          ldb, beta, C + b * stride_c, ldc);
        return;
    }
    for (int64_t b = 0; b < batch; b++)
        tfm_gemm_bf16(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b,
                      ldb, beta, C + b * stride_c, ldc);
}

/* The bf16 reference: inputs rounded with tfm_bf16_round, products summed in
 * double. */
void tfm_gemm_bf16_reference(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                             float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t p = 0; p < K; p++) {
                float a = tfm_bf16_round(trans_a ? A[p * lda + i] : A[i * lda + p]);
                float b = tfm_bf16_round(trans_b ? B[j * ldb + p] : B[p * ldb + j]);
                acc += (double)a * b;
            }
            double c = beta == 0.0f ? 0.0 : (double)beta * C[i * ldc + j];
            C[i * ldc + j] = (float)(c + (double)alpha * acc);
        }
}

const char *tfm_precision_name(tfm_precision p) { return p == TFM_BF16 ? "bf16" : "fp32"; }

int tfm_precision_parse(const char *s, tfm_precision *out) {
    if (s && !strcmp(s, "fp32")) {
        *out = TFM_FP32;
        return 0;
    }
    if (s && !strcmp(s, "bf16")) {
        *out = TFM_BF16;
        return 0;
    }
    return 1;
}
