/* Single-precision GEMM: packed, cache-blocked, register-tiled (Goto/BLIS
 * style), with an AVX-512, an AVX2+FMA and a portable micro-kernel chosen at
 * build time from the -march macros.
 *
 * Loop nest (row-major C, op(A): M x K, op(B): K x N):
 *   jc over N in NC columns
 *     pc over K in KC steps            pack op(B)[pc, jc] -> Bp (KC x NC)
 *       ic over M in MC rows           pack op(A)[ic, pc] -> Ap (MC x KC, per thread)
 *         jr over NC in NR columns
 *           ir over MC in MR rows      micro-kernel: MR x NR tile of C += Ap * Bp
 * Packed B is stored per NR-column panel as b[k*NR + c], zero-padded to a
 * full panel; packed A per MR-row panel as a[k*MR + r] or (AVX-512, from an
 * untransposed A) as rows a[r*GEMM_AKS + k]. All four transpose cases are
 * handled by packing; edge tiles use narrower kernel instances and masks.
 *
 * Determinism: every C element is owned by one thread; its value is the
 * fused-multiply-add chain over k from 0 within each KC block (fixed KC), then
 * C = alpha*acc + beta*C for the first block and C = alpha*acc + C for the
 * rest, identically in full tiles and edge tiles. So the result depends on
 * neither the thread count nor the tile an element falls in.
 *
 * Threads: above GEMM_PAR_MIN_FLOPS and outside any parallel region
 * (tfm_par_threads), one OpenMP team splits C's rows or the NR-column panels of each B block
 * statically (whichever balances better, packing included); each thread packs
 * its own operands, so there is no barrier inside. Inside a parallel region
 * everything runs on the calling thread.
 *
 * Memory: packing buffers are per thread (thread-local), 64-byte aligned,
 * allocated at their largest (one block) by a thread's first call, so later
 * calls do not allocate whatever their shapes (the pages are touched only as
 * far as calls use them). No OpenMP region opens where it would run one
 * thread (libgomp allocates a team for each: util/par.h). */
#include "../util/par.h"
#include "kernels_internal.h"
#include "tfm/kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define GEMM_KERNEL "avx512"
#ifndef MR
#define MR 14
#endif
#ifndef NR
#define NR 32
#endif
#elif defined(__AVX2__) && defined(__FMA__)
#define GEMM_KERNEL "avx2"
#define MR 6
#define NR 16
#else
#define GEMM_KERNEL "generic"
#define MR 4
#define NR 8
#endif

/* Cache blocking. A KC x NR panel of B (32 KB at KC=256, NR=32) stays in L1
 * while MR x KC panels of A stream from an MC x KC block in L2; the KC x NC
 * block of B lives in L3. KC is fixed (it defines the summation order). */
#ifndef GEMM_KC
#define GEMM_KC 256
#endif
#ifndef GEMM_MC
#define GEMM_MC (MR * 24)
#endif
#ifndef GEMM_NC
#define GEMM_NC (NR * 128)
#endif
/* Packed A panels are MR * GEMM_AKS floats; GEMM_AKS >= KC, padded by a
 * cache line so that rows of a row-major panel fall in different L1 sets. */
#define GEMM_AKS (GEMM_KC + 16)
/* How far ahead (floats) the transposing pack prefetches along each row. */
#ifndef GEMM_PACK_PREFETCH
#define GEMM_PACK_PREFETCH 64
#endif
/* How many rows ahead the copying pack prefetches. */
#ifndef GEMM_COPY_PREFETCH_ROWS
#define GEMM_COPY_PREFETCH_ROWS 4
#endif
/* Below this many flops (2*M*N*K) a GEMM runs on one thread: starting and
 * joining the team costs a few microseconds, which is more flops the faster
 * a thread is. The AVX-512 figure was set on the README's 2-core AVX-512
 * machine (243 GFLOP/s per thread in tfm bench gemm). The AVX2 one was
 * measured on a 2-core Zen 3 (74 GFLOP/s per thread): with the team kept
 * warm, 2 threads won from about 1.5 Mflop (1.05-1.5x at 2.1-2.8 Mflop)
 * and tied or lost at 1 Mflop and below
 * (docs/bench/2026-12-01-zen3-gemm-threshold.log). The generic kernel keeps
 * the first figure (not measured). */
#ifndef GEMM_PAR_MIN_FLOPS
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#define GEMM_PAR_MIN_FLOPS 2.0e6
#else
#define GEMM_PAR_MIN_FLOPS 4.0e6
#endif
#endif

const char *tfm_gemm_kernel_name(void) { return GEMM_KERNEL; }

/* ---- reference ------------------------------------------------------------ */

void tfm_gemm_reference(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t p = 0; p < K; p++) {
                float a = trans_a ? A[p * lda + i] : A[i * lda + p];
                float b = trans_b ? B[j * ldb + p] : B[p * ldb + j];
                acc += (double)a * b;
            }
            double c = beta == 0.0f ? 0.0 : (double)beta * C[i * ldc + j];
            C[i * ldc + j] = (float)(c + (double)alpha * acc);
        }
}

/* ---- per-thread buffers ---------------------------------------------------- */

typedef struct {
    float *p;
    size_t n; /* floats */
} gemm_buf;

typedef struct {
    gemm_buf a, b;
} gemm_bufs;

static _Thread_local gemm_bufs g_bufs;
/* Frees a thread's buffers when the thread exits (OpenMP may retire pool
 * threads when the team size changes). */
static pthread_key_t g_bufs_key;
static pthread_once_t g_bufs_once = PTHREAD_ONCE_INIT;

static void bufs_free(void *p) {
    gemm_bufs *b = p;
    tfm_free(b->a.p);
    tfm_free(b->b.p);
    b->a = (gemm_buf){NULL, 0};
    b->b = (gemm_buf){NULL, 0};
}

static int g_bufs_key_ok;
/* Without the key (out of resources) buffers are not freed at thread exit. */
static void bufs_key_init(void) { g_bufs_key_ok = pthread_key_create(&g_bufs_key, bufs_free) == 0; }

/* n floats of b (+ slack for full-vector overruns). The first call
 * allocates the most any GEMM asks for (max_n, one block), so that later,
 * larger calls (a longer batch) do not allocate inside a training step; the
 * pages are only touched as far as they are used. NULL when out of memory (b
 * unchanged): the caller then computes without packing. */
static float *buf_reserve(gemm_buf *b, size_t n, size_t max_n) {
    TFM_ASSERT(n <= max_n, "GEMM packing buffer: %zu floats asked, blocks hold %zu", n, max_n);
    if (b->n < n + 64) {
        if (!g_bufs.a.p && !g_bufs.b.p) {
            pthread_once(&g_bufs_once, bufs_key_init);
            if (g_bufs_key_ok) pthread_setspecific(g_bufs_key, &g_bufs);
        }
        size_t want = max_n + 64;
        float *p = tfm_alloc(want * sizeof(float));
        if (!p) return NULL;
        tfm_free(b->p);
        b->p = p;
        b->n = want;
    }
    return b->p;
}

/* ---- packing ------------------------------------------------------------------
 * Two shapes of source cover all four transpose cases. For a panel of R rows
 * (R = MR for A, NR for B) and kc steps, with `valid` real rows (the rest are
 * zero):
 *   pack_copy:      out[k*R + r] = src[k*ld + r]   (rows contiguous in memory)
 *   pack_transpose: out[k*R + r] = src[r*ld + k]   (k contiguous in memory)
 * op(A) rows are A's columns when trans_a (copy), else A's rows (transpose);
 * op(B) columns are B's columns unless trans_b (transpose). */

static void pack_copy(float *restrict out, int R, int64_t pstride, const float *restrict src,
                      int64_t ld, int64_t width, int64_t kc) {
    /* `width` valid columns in ceil(width / R) panels, pstride floats apart.
     * Walks src row by row (k outer) so that reads are sequential. */
    int64_t npanels = (width + R - 1) / R;
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + k * ld;
        for (int64_t q = 0; q < npanels; q++) {
            const float *sp = s + q * R;
            float *o = out + q * pstride + k * R;
            int64_t valid = width - q * R;
#if defined(__AVX512F__)
            /* the rows below, for when this row segment is short */
            if (k + GEMM_COPY_PREFETCH_ROWS < kc)
                for (int r = 0; r < R; r += 16)
                    _mm_prefetch((const char *)(sp + GEMM_COPY_PREFETCH_ROWS * ld + r),
                                 _MM_HINT_T0);
            for (int r = 0; r < R; r += 16) {
                int64_t w = valid - r;
                __m512 x;
                if (w >= 16)
                    x = _mm512_loadu_ps(sp + r);
                else
                    x = _mm512_maskz_loadu_ps(w <= 0 ? 0 : (__mmask16)((1u << w) - 1), sp + r);
                /* a full store past R spills into slot k+1, rewritten next
                 * step; only the last k, whose spill would land in the next
                 * panel (already written), needs the masked (slower) store */
                int wr = R - r;
                if (wr >= 16 || k + 1 < kc)
                    _mm512_storeu_ps(o + r, x);
                else
                    _mm512_mask_storeu_ps(o + r, (__mmask16)((1u << wr) - 1), x);
            }
#elif defined(__AVX2__) && defined(__FMA__)
            /* as the AVX-512 path above, 8 floats at a time */
            if (k + GEMM_COPY_PREFETCH_ROWS < kc)
                for (int r = 0; r < R; r += 16)
                    _mm_prefetch((const char *)(sp + GEMM_COPY_PREFETCH_ROWS * ld + r),
                                 _MM_HINT_T0);
            for (int r = 0; r < R; r += 8) {
                int64_t w = valid - r;
                __m256 x;
                if (w >= 8)
                    x = _mm256_loadu_ps(sp + r);
                else
                    x = _mm256_maskload_ps(sp + r, lanes_below(w));
                int wr = R - r;
                if (wr >= 8 || k + 1 < kc)
                    _mm256_storeu_ps(o + r, x);
                else
                    _mm256_maskstore_ps(o + r, lanes_below(wr), x);
            }
#else
            int r = 0;
            for (; r < valid && r < R; r++) o[r] = sp[r];
            for (; r < R; r++) o[r] = 0.0f;
#endif
        }
    }
}


static void pack_transpose(float *restrict out, int R, const float *restrict src, int64_t ld,
                           int valid, int64_t kc) {
#if defined(__AVX512F__)
    /* Stores are full 16-wide even when R - r0 < 16 (R = 14): the spill
     * lands in slot k+1, rewritten next, and after the last k in the next
     * panel, which callers write later (panels go in increasing order), or
     * in the buffer's slack. Masked stores are slower on some cores. */
    for (int r0 = 0; r0 < R; r0 += 16) {
        int rows = valid - r0;
        if (rows > 16) rows = 16;
        for (int64_t k0 = 0; k0 < kc; k0 += 16) {
            int64_t kk = kc - k0 < 16 ? kc - k0 : 16;
            __mmask16 mk = kk == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << kk) - 1);
            __m512 v[16];
            for (int i = 0; i < 16; i++) {
                const float *row = src + (int64_t)(r0 + i) * ld + k0;
                if (i < rows) {
                    /* each row is a short stream (kc floats): the hardware
                     * prefetcher barely ramps up before it ends */
                    _mm_prefetch((const char *)(row + GEMM_PACK_PREFETCH), _MM_HINT_T0);
                    v[i] = kk == 16 ? _mm512_loadu_ps(row) : _mm512_maskz_loadu_ps(mk, row);
                } else {
                    v[i] = _mm512_setzero_ps();
                }
            }
            transpose16(v);
            for (int64_t k = 0; k < kk; k++) _mm512_storeu_ps(out + (k0 + k) * R + r0, v[k]);
        }
    }
#elif defined(__AVX2__) && defined(__FMA__)
    /* as the AVX-512 path above, in 8 x 8 blocks: full 8-wide stores, whose
     * spill past R (R = 6) lands in slot k+1 or, after the last k, in the
     * next panel or the panel's padding, written later */
    for (int r0 = 0; r0 < R; r0 += 8) {
        int rows = valid - r0;
        if (rows > 8) rows = 8;
        for (int64_t k0 = 0; k0 < kc; k0 += 8) {
            int64_t kk = kc - k0 < 8 ? kc - k0 : 8;
            __m256i mk = lanes_below(kk);
            __m256 v[8];
            for (int i = 0; i < 8; i++) {
                const float *row = src + (int64_t)(r0 + i) * ld + k0;
                if (i < rows) {
                    _mm_prefetch((const char *)(row + GEMM_PACK_PREFETCH), _MM_HINT_T0);
                    v[i] = kk == 8 ? _mm256_loadu_ps(row) : _mm256_maskload_ps(row, mk);
                } else {
                    v[i] = _mm256_setzero_ps();
                }
            }
            transpose8(v);
            for (int64_t k = 0; k < kk; k++) _mm256_storeu_ps(out + (k0 + k) * R + r0, v[k]);
        }
    }
#else
    for (int64_t k0 = 0; k0 < kc; k0 += 8) {
        int64_t kk = kc - k0 < 8 ? kc - k0 : 8;
        for (int r = 0; r < R; r++) {
            const float *s = src + (int64_t)r * ld + k0;
            for (int64_t k = 0; k < kk; k++) out[(k0 + k) * R + r] = r < valid ? s[k] : 0.0f;
        }
    }
#endif
}

/* op(A)[i0 : i0+mc, p0 : p0+kc] -> MR-row panels of MR * GEMM_AKS floats.
 * k-major (a[k*MR + i]) from A^T, a plain copy; from A (rows contiguous in
 * k) the AVX-512 build keeps rows (a[i*GEMM_AKS + k]), also a plain copy,
 * since its micro-kernel broadcasts single elements and needs no
 * contiguity across i; the other builds transpose. */
static int a_packs_rows(int trans_a) {
#if defined(__AVX512F__)
    return !trans_a;
#else
    (void)trans_a;
    return 0;
#endif
}

static void pack_a(float *out, int trans_a, const float *A, int64_t lda, int64_t i0, int64_t mc,
                   int64_t p0, int64_t kc) {
    if (trans_a) {
        pack_copy(out, MR, MR * GEMM_AKS, A + p0 * lda + i0, lda, mc, kc);
        return;
    }
    if (a_packs_rows(trans_a)) {
        for (int64_t i = 0; i < mc; i++)
            memcpy(out + i * GEMM_AKS, A + (i0 + i) * lda + p0, (size_t)kc * sizeof(float));
        for (int64_t i = mc; i % MR; i++) memset(out + i * GEMM_AKS, 0, (size_t)kc * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < mc; i += MR) {
        int valid = (int)(mc - i < MR ? mc - i : MR);
        pack_transpose(out + i * GEMM_AKS, MR, A + (i0 + i) * lda + p0, lda, valid, kc);
    }
}

/* op(B)[p0 : p0+kc, j0 + panels [q0, q1)] -> NR-column panels, panel q at
 * out + (q - qbase) * NR * kc; nc = block width */
static void pack_b(float *out, int trans_b, const float *B, int64_t ldb, int64_t p0, int64_t kc,
                   int64_t j0, int64_t nc, int64_t q0, int64_t q1, int64_t qbase) {
    if (q0 >= q1) return;
    if (!trans_b) {
        int64_t j = q0 * NR, width = (q1 * NR < nc ? q1 * NR : nc) - j;
        pack_copy(out + (q0 - qbase) * NR * kc, NR, NR * kc, B + p0 * ldb + j0 + j, ldb, width, kc);
        return;
    }
    for (int64_t q = q0; q < q1; q++) {
        int64_t j = q * NR;
        int valid = (int)(nc - j < NR ? nc - j : NR);
        pack_transpose(out + (q - qbase) * NR * kc, NR, B + (j0 + j) * ldb + p0, ldb, valid, kc);
    }
}

/* ---- micro-kernels ---------------------------------------------------------------
 * acc = Ap (MR x kc) * Bp (kc x NR); then for the mr x nr corner that exists:
 *   C = alpha * acc + beta * C   (beta == 0: C = alpha * acc, C not read)
 * with a single rounding of the fused multiply-add, in the vector and the
 * scalar (edge) path alike. */

static inline float combine(float alpha, float acc, float beta, float c) {
    return beta == 0.0f ? alpha * acc : fmaf(alpha, acc, beta == 1.0f ? c : beta * c);
}

#if !defined(__AVX512F__)
static void store_edge(const float *tile, int mr, int nr, float alpha, float beta, float *C,
                       int64_t ldc, const float *Cin, int64_t ldcin) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++)
            C[i * ldc + j] = combine(alpha, tile[i * NR + j], beta, Cin[i * ldcin + j]);
}
#endif

#if defined(__AVX512F__)
#define NV (NR / 16)
/* ROWS x (16*VECS) accumulators; instantiated for the full MR x NR tile and
 * for narrower edge tiles (ROWS < MR reads the first ROWS entries of each
 * packed A column), so an edge tile of 1..4 rows does not pay for 14. The
 * arithmetic per element is the same in every instance. */
static inline __attribute__((always_inline)) void
ukernel_kloop(int ROWS, int VECS, int AL, int FULL, int64_t kc, const float *restrict a,
              const float *restrict b, int64_t ldbk, const __mmask16 *mask, __m512 acc[MR][NV]) {
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
        __m512 bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < VECS; v++)
            bv[v] = FULL ? _mm512_loadu_ps(b + v * 16) : _mm512_maskz_loadu_ps(mask[v], b + v * 16);
#pragma GCC unroll 32
        for (int i = 0; i < ROWS; i++) {
            __m512 av = _mm512_set1_ps(AL ? a[i * GEMM_AKS] : a[i]);
#pragma GCC unroll 4
            for (int v = 0; v < VECS; v++) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
        }
        a += AL ? 1 : MR;
        b += ldbk;
    }
}

static inline __attribute__((always_inline)) void
ukernel_body(int ROWS, int VECS, int AL, int64_t kc, const float *restrict a,
             const float *restrict b, int64_t ldbk, float *C, int64_t ldc, const float *Cin,
             int64_t ldcin, float alpha, float beta, int mr, int nr) {
    /* columns beyond nr: zero in packed B, not to be read in direct B */
    __mmask16 mask[NV];
#pragma GCC unroll 4
    for (int v = 0; v < VECS; v++) {
        int w = nr - v * 16;
        mask[v] = w >= 16 ? (__mmask16)0xFFFF : w <= 0 ? 0 : (__mmask16)((1u << w) - 1);
    }
    __m512 acc[MR][NV];
    /* C is touched once per KC block, at rows ldc apart: the hardware
     * prefetchers miss it, so fetch the tile while the k loop runs. Into L1,
     * unless the rows are a multiple of 4 KB apart: then they all fall into
     * one L1 set, MR rows overflow its 12 ways and evict each other (and the
     * packed panels), so fetch them into L2 only (+6% at ldc 2048). */
    if (ldc % 1024 != 0) {
#pragma GCC unroll 32
        for (int i = 0; i < ROWS; i++) {
            _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(C + i * ldc + VECS * 16 - 1), _MM_HINT_T0);
        }
    } else {
#pragma GCC unroll 32
        for (int i = 0; i < ROWS; i++) {
            _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T1);
            _mm_prefetch((const char *)(C + i * ldc + VECS * 16 - 1), _MM_HINT_T1);
        }
    }
#pragma GCC unroll 32
    for (int i = 0; i < ROWS; i++)
#pragma GCC unroll 4
        for (int v = 0; v < VECS; v++) acc[i][v] = _mm512_setzero_ps();
    /* full width: plain loads and stores (masked ones cost more on some
     * cores); the two k loops are separate instances, not a test per step */
    const int full = nr == VECS * 16;
    if (full)
        ukernel_kloop(ROWS, VECS, AL, 1, kc, a, b, ldbk, mask, acc);
    else
        ukernel_kloop(ROWS, VECS, AL, 0, kc, a, b, ldbk, mask, acc);
    /* C = alpha*acc (+ beta*C): masked lanes cover a partial last vector */
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 32
    for (int i = 0; i < ROWS; i++) {
        if (i >= mr) break;
#pragma GCC unroll 4
        for (int v = 0; v < VECS; v++) {
            float *c = C + i * ldc + v * 16;
            const float *cin = Cin + i * ldcin + v * 16;
            __m512 r;
            if (beta == 0.0f) {
                r = _mm512_mul_ps(va, acc[i][v]);
            } else {
                __m512 cv = full ? _mm512_loadu_ps(cin) : _mm512_maskz_loadu_ps(mask[v], cin);
                if (beta != 1.0f) cv = _mm512_mul_ps(vb, cv);
                r = _mm512_fmadd_ps(va, acc[i][v], cv);
            }
            if (full)
                _mm512_storeu_ps(c, r);
            else
                _mm512_mask_storeu_ps(c, mask[v], r);
        }
    }
}

#define UKERNEL_INSTANCE(NAME, R, V, AL)                                                           \
    static void NAME(int64_t kc, const float *restrict a, const float *restrict b, int64_t ldbk,   \
                     float *C, int64_t ldc, const float *Cin, int64_t ldcin, float alpha,          \
                     float beta, int mr, int nr) {                                                 \
        ukernel_body(R, V, AL, kc, a, b, ldbk, C, ldc, Cin, ldcin, alpha, beta, mr, nr);           \
    }
#define UKERNEL_SET(S, AL)                                                                         \
    UKERNEL_INSTANCE(ukernel_full##S, MR, 2, AL)                                                   \
    UKERNEL_INSTANCE(ukernel_8x2##S, 8, 2, AL)                                                     \
    UKERNEL_INSTANCE(ukernel_4x2##S, 4, 2, AL)                                                     \
    UKERNEL_INSTANCE(ukernel_2x2##S, 2, 2, AL)                                                     \
    UKERNEL_INSTANCE(ukernel_1x2##S, 1, 2, AL)                                                     \
    UKERNEL_INSTANCE(ukernel_full_x1##S, MR, 1, AL)                                                \
    UKERNEL_INSTANCE(ukernel_4x1##S, 4, 1, AL)                                                     \
    UKERNEL_INSTANCE(ukernel_1x1##S, 1, 1, AL)                                                     \
    static void ukernel##S(int64_t kc, const float *restrict a, const float *restrict b,           \
                           int64_t ldbk, float *C, int64_t ldc, const float *Cin, int64_t ldcin,   \
                           float alpha, float beta, int mr, int nr) {                              \
        if (nr > 16) {                                                                             \
            if (mr > 8)                                                                            \
                ukernel_full##S(kc, a, b, ldbk, C, ldc, Cin, ldcin, alpha, beta, mr, nr);          \
            else if (mr > 4)                                                                       \
                ukernel_8x2##S(kc, a, b, ldbk, C, ldc, Cin, ldcin, alpha, beta, mr, nr);           \
            else if (mr > 2)                                                                       \
                ukernel_4x2##S(kc, a, b, ldbk, C, ldc, Cin, ldcin, alpha, beta, mr, nr);           \
            else if (mr > 1)                                                                       \
                ukernel_2x2##S(kc, a, b, ldbk, C, ldc, Cin, ldcin, alpha, beta, mr, nr);           \
            else                                                                                   \
                ukernel_1x2##S(kc, a, b, ldbk, C, ldc, Cin, ldcin, alpha, beta, mr, nr);           \
        } else {                                                                                   \
            if (mr > 4)                                                                            \
                ukernel_full_x1##S(kc, a, b, ldbk, C, ldc, Cin, ldcin, alpha, beta, mr, nr);       \
            else if (mr > 1)                                                                       \
                ukernel_4x1##S(kc, a, b, ldbk, C, ldc, Cin, ldcin, alpha, beta, mr, nr);           \
            else                                                                                   \
                ukernel_1x1##S(kc, a, b, ldbk, C, ldc, Cin, ldcin, alpha, beta, mr, nr);           \
        }                                                                                          \
    }
_Static_assert(MR > 8 && NV == 2, "the edge kernels below assume MR > 8 rows and 2 vectors");
UKERNEL_SET(_kmajor, 0) /* packed A as a[k*MR + i] */
UKERNEL_SET(_rows, 1)   /* packed A as a[i*GEMM_AKS + k] */

static void ukernel(int a_rows, int64_t kc, const float *restrict a, const float *restrict b,
                    int64_t ldbk, float *C, int64_t ldc, const float *Cin, int64_t ldcin,
                    float alpha, float beta, int mr, int nr) {
    if (a_rows)
        ukernel_rows(kc, a, b, ldbk, C, ldc, Cin, ldcin, alpha, beta, mr, nr);
    else
        ukernel_kmajor(kc, a, b, ldbk, C, ldc, Cin, ldcin, alpha, beta, mr, nr);
}
#elif defined(__AVX2__) && defined(__FMA__)
#define NV (NR / 8)
static void ukernel(int a_rows, int64_t kc, const float *restrict a, const float *restrict b,
                    int64_t ldbk, float *C, int64_t ldc, const float *Cin, int64_t ldcin,
                    float alpha, float beta, int mr, int nr) {
    /* B is always packed and A always k-major here (the other layouts are
     * AVX-512 paths) */
    (void)ldbk;
    (void)a_rows;
    /* C is touched once per KC block, rows ldc apart: fetch the tile's mr
     * rows while the k loop runs. The hints are the AVX-512 kernel's (into L2
     * only when the rows are a multiple of 4 KB apart); only the prefetch as
     * a whole was measured on the AVX2 path, not the choice of hint. */
    if (ldc % 1024 != 0) {
        for (int i = 0; i < mr; i++) {
            _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(C + i * ldc + NR - 1), _MM_HINT_T0);
        }
    } else {
        for (int i = 0; i < mr; i++) {
            _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T1);
            _mm_prefetch((const char *)(C + i * ldc + NR - 1), _MM_HINT_T1);
        }
    }
    __m256 acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) bv[v] = _mm256_load_ps(b + v * 8);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m256 av = _mm256_broadcast_ss(a + i);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
        }
        a += MR;
        b += NR;
    }
    if (mr == MR && nr == NR) {
        const __m256 va = _mm256_set1_ps(alpha);
        const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                float *c = C + i * ldc + v * 8;
                if (beta == 0.0f) {
                    _mm256_storeu_ps(c, _mm256_mul_ps(va, acc[i][v]));
                } else {
                    __m256 cv = _mm256_loadu_ps(Cin + i * ldcin + v * 8);
                    if (beta != 1.0f) cv = _mm256_mul_ps(vb, cv);
                    _mm256_storeu_ps(c, _mm256_fmadd_ps(va, acc[i][v], cv));
                }
            }
    } else {
        float tile[MR * NR] __attribute__((aligned(32)));
        for (int i = 0; i < MR; i++)
            for (int v = 0; v < NV; v++) _mm256_store_ps(tile + i * NR + v * 8, acc[i][v]);
        store_edge(tile, mr, nr, alpha, beta, C, ldc, Cin, ldcin);
    }
}
#else
static void ukernel(int a_rows, int64_t kc, const float *restrict a, const float *restrict b,
                    int64_t ldbk, float *C, int64_t ldc, const float *Cin, int64_t ldcin,
                    float alpha, float beta, int mr, int nr) {
    /* B is always packed and A always k-major here (the other layouts are
     * AVX-512 paths) */
    (void)ldbk;
    (void)a_rows;
    float acc[MR * NR];
    for (int t = 0; t < MR * NR; t++) acc[t] = 0.0f;
    for (int64_t k = 0; k < kc; k++) {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i * NR + j] = fmaf(a[i], b[j], acc[i * NR + j]);
        a += MR;
        b += NR;
    }
    store_edge(acc, mr, nr, alpha, beta, C, ldc, Cin, ldcin);
}
#endif

/* ---- driver -------------------------------------------------------------------- */

typedef struct {
    int trans_a, trans_b;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    const float *bias; /* (N) or NULL: the first K block starts from bias, not beta * C */
    int direct_b;      /* the micro-kernel reads op(B) = B in place (no packing) */
    const tfm_f32_weight *wp; /* op(B) packed once (tfm_f32_weight_pack), or NULL */
} gemm_args;

/* A weight W (n_out, in) as op(B) = W^T (in x n_out), packed by pack_b in
 * gemm_run's order: column blocks of GEMM_NC, in each the K blocks of
 * GEMM_KC, in each the NR-column panels (zero-padded as pack_b pads them).
 * nr records the panel width of the variant that packed it. */
struct tfm_f32_weight {
    int64_t n_out, in, nr;
    float *panels;
    const float *src; /* W itself: the unpacked path when packing buffers fail */
};

/* The panels of column block jc, K block pc: panel q at + q * NR * kc. Every
 * column block before jc is GEMM_NC wide, a multiple of NR. */
static const float *weight_block(const tfm_f32_weight *w, int64_t jc, int64_t pc) {
    int64_t nc = w->n_out - jc < GEMM_NC ? w->n_out - jc : GEMM_NC, npanels = (nc + NR - 1) / NR;
    return w->panels + jc * w->in + npanels * NR * pc;
}

/* C[i0:i1, j0:j1] without packing buffers, for when they cannot be
 * allocated: the same result up to rounding (sums in double, as
 * tfm_gemm_reference), only slower. Never taken while memory lasts. */
static void gemm_unpacked(const gemm_args *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    for (int64_t i = i0; i < i1; i++)
        for (int64_t j = j0; j < j1; j++) {
            double acc = 0.0;
            for (int64_t p = 0; p < g->K; p++) {
                float a = g->trans_a ? g->A[p * g->lda + i] : g->A[i * g->lda + p];
                float b = g->trans_b ? g->B[j * g->ldb + p] : g->B[p * g->ldb + j];
                acc += (double)a * b;
            }
            float *c = &g->C[i * g->ldc + j];
            double c0 = g->bias ? (double)g->bias[j] : g->beta == 0.0f ? 0.0 : (double)g->beta * *c;
            *c = (float)(c0 + (double)g->alpha * acc);
        }
}

/* Thread `tid` of `nt` computes its rows (split_m) or its NR-column panels
 * of C. Every thread packs what it reads into its own buffers, so threads
 * never wait for each other: with rows split each packs all of op(B), with
 * columns split all of op(A); the caller's cost model weighs that. (Sharing
 * packed B needs a barrier per block, and on a machine shared with other
 * processes a descheduled thread then stalls the whole team.) */
static void gemm_run(const gemm_args *g, int tid, int nt, int split_m) {
    const int64_t M = g->M, N = g->N, K = g->K;
    /* my rows [m0, m1): boundaries on MR multiples so tiles stay full */
    int64_t m0 = 0, m1 = M;
    if (split_m && nt > 1) {
        int64_t panels = (M + MR - 1) / MR;
        m0 = panels * tid / nt * MR;
        m1 = panels * (tid + 1) / nt * MR;
        if (m1 > M) m1 = M;
        if (m0 > M) m0 = M;
    }
    if (m0 >= m1) return;
    int64_t mc_max = m1 - m0 < GEMM_MC ? m1 - m0 : GEMM_MC;
    int64_t kc_max = K < GEMM_KC ? K : GEMM_KC;
    int64_t nc_max = N < GEMM_NC ? N : GEMM_NC;
    float *ap = buf_reserve(&g_bufs.a, (size_t)((mc_max + MR - 1) / MR * MR * GEMM_AKS),
                            (size_t)(GEMM_MC + MR - 1) / MR * MR * GEMM_AKS);
    float *bp = NULL;
    const int own_b = !g->direct_b && !g->wp; /* B packed here, per call */
    if (own_b)
        bp = buf_reserve(&g_bufs.b, (size_t)((nc_max + NR - 1) / NR * NR * kc_max),
                         (size_t)(GEMM_NC + NR - 1) / NR * NR * GEMM_KC);
    if (!ap || (own_b && !bp)) { /* out of memory: the same share of C, unpacked */
        for (int64_t jc = 0; jc < N; jc += GEMM_NC) {
            int64_t nc = N - jc < GEMM_NC ? N - jc : GEMM_NC, npanels = (nc + NR - 1) / NR;
            int64_t q0 = split_m ? 0 : npanels * tid / nt,
                    q1 = split_m ? npanels : npanels * (tid + 1) / nt;
            int64_t j1 = jc + q1 * NR < jc + nc ? jc + q1 * NR : jc + nc;
            if (q0 < q1) gemm_unpacked(g, m0, m1, jc + q0 * NR, j1);
        }
        return;
    }
    const int a_rows = a_packs_rows(g->trans_a);
    for (int64_t jc = 0; jc < N; jc += GEMM_NC) {
        int64_t nc = N - jc < GEMM_NC ? N - jc : GEMM_NC;
        int64_t npanels = (nc + NR - 1) / NR;
        /* my B panels: all of them (rows split) or my share (columns split) */
        int64_t q0 = 0, q1 = npanels;
        if (!split_m) {
            q0 = npanels * tid / nt;
            q1 = npanels * (tid + 1) / nt;
        }
        if (q0 >= q1) continue;
        for (int64_t pc = 0; pc < K; pc += GEMM_KC) {
            int64_t kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
            float beta = pc == 0 ? g->beta : 1.0f;
            if (own_b) pack_b(bp, g->trans_b, g->B, g->ldb, pc, kc, jc, nc, q0, q1, q0);
            const float *bblk = g->wp ? weight_block(g->wp, jc, pc) : NULL;
            for (int64_t ic = m0; ic < m1; ic += GEMM_MC) {
                int64_t mc = m1 - ic < GEMM_MC ? m1 - ic : GEMM_MC;
                pack_a(ap, g->trans_a, g->A, g->lda, ic, mc, pc, kc);
                for (int64_t q = q0; q < q1; q++) {
                    int64_t j = q * NR;
                    int nr = (int)(nc - j < NR ? nc - j : NR);
                    const float *bpan;
                    int64_t ldbk;
                    if (g->direct_b) {
                        bpan = g->B + pc * g->ldb + jc + j;
                        ldbk = g->ldb;
                    } else if (bblk) {
                        bpan = bblk + q * NR * kc;
                        ldbk = NR;
                    } else {
                        bpan = bp + (q - q0) * NR * kc;
                        ldbk = NR;
                    }
                    for (int64_t i = 0; i < mc; i += MR) {
                        int mr = (int)(mc - i < MR ? mc - i : MR);
                        float *c = g->C + (ic + i) * g->ldc + jc + j;
                        if (pc == 0 && g->bias) /* every row starts from the bias row */
                            ukernel(a_rows, kc, ap + i * GEMM_AKS, bpan, ldbk, c, g->ldc,
                                    g->bias + jc + j, 0, g->alpha, 1.0f, mr, nr);
                        else
                            ukernel(a_rows, kc, ap + i * GEMM_AKS, bpan, ldbk, c, g->ldc, c, g->ldc,
                                    g->alpha, beta, mr, nr);
                    }
                }
            }
        }
    }
}

/* C = beta * C (or C = bias in every row) when op(A) op(B) contributes
 * nothing (K == 0 or alpha == 0). */
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

static void gemm_dispatch(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                          const float *bias, float *C, int64_t ldc, const tfm_f32_weight *wp) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, bias, C, ldc);
        return;
    }
    gemm_args g = {trans_a, trans_b, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, bias, 0, wp};
#if defined(__AVX512F__)
    /* With few rows each packed B panel would be read once or twice: cheaper
     * to stream B (K x N, row-major) straight into the micro-kernel. */
    g.direct_b = !trans_b && M <= 2 * MR;
#endif
    int nt = 1;
    if (2.0 * (double)M * N * K >= GEMM_PAR_MIN_FLOPS) nt = tfm_par_threads();
    if (nt <= 1) {
        gemm_run(&g, 0, 1, 1);
        return;
    }
    /* Rows or columns of C? Each way costs its load imbalance (tiles per
     * thread rounded up) plus the packing every thread repeats: splitting
     * rows, each thread packs all of op(B) instead of 1/nt of it, about
     * (nt-1) K*N copies of half a cycle against 2*M*N*K/nt flops at 64 per
     * cycle: a relative cost of 16 nt (nt-1) / M; splitting columns, the same
     * with op(A) and N (per NC block). */
    int64_t tiles_m = (M + MR - 1) / MR;
    int64_t nc_blk = N < GEMM_NC ? N : GEMM_NC, tiles_n = (nc_blk + NR - 1) / NR;
    double dup = 16.0 * nt * (nt - 1);
    /* (B read in place or packed beforehand: splitting rows repeats no packing) */
    double cost_m = (double)((tiles_m + nt - 1) / nt) * nt / (double)tiles_m +
                    (g.direct_b || wp ? 0.0 : dup / (double)M);
    double cost_n = (double)((tiles_n + nt - 1) / nt) * nt / (double)tiles_n + dup / (double)nc_blk;
    int split_m = cost_m <= cost_n;
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        gemm_run(&g, omp_get_thread_num(), omp_get_num_threads(), split_m);
#endif
    }
}

void tfm_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc) {
    gemm_dispatch(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, NULL, C, ldc, NULL);
}

void tfm_gemm_bias(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, const float *bias,
                   float *C, int64_t ldc) {
    gemm_dispatch(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, 1.0f, bias, C, ldc, NULL);
}

tfm_f32_weight *tfm_f32_weight_pack(const float *w, int64_t n_out, int64_t in) {
    if (n_out <= 0 || in <= 0) return NULL;
    tfm_f32_weight *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_out = n_out;
    p->in = in;
    p->nr = NR;
    p->src = w;
    int64_t panels = (n_out + NR - 1) / NR;
    p->panels = tfm_alloc((size_t)(panels * NR * in) * sizeof(float));
    if (!p->panels) {
        free(p);
        return NULL;
    }
    for (int64_t jc = 0; jc < n_out; jc += GEMM_NC) {
        int64_t nc = n_out - jc < GEMM_NC ? n_out - jc : GEMM_NC;
        for (int64_t pc = 0; pc < in; pc += GEMM_KC) {
            int64_t kc = in - pc < GEMM_KC ? in - pc : GEMM_KC;
            pack_b((float *)weight_block(p, jc, pc), 1, w, in, pc, kc, jc, nc, 0,
                   (nc + NR - 1) / NR, 0);
        }
    }
    return p;
}

void tfm_f32_weight_free(tfm_f32_weight *w) {
    if (!w) return;
    tfm_free(w->panels);
    free(w);
}

void tfm_gemm_f32_weight(int64_t M, const float *A, int64_t lda, const tfm_f32_weight *w,
                         const float *bias, float *C, int64_t ldc) {
    /* packed by another variant's panel width (never within one process):
     * pack on the call, from the source */
    const tfm_f32_weight *wp = w->nr == NR ? w : NULL;
    gemm_dispatch(0, 1, M, w->n_out, w->in, 1.0f, A, lda, w->src, w->in, bias ? 1.0f : 0.0f, bias,
                  C, ldc, wp);
}

void tfm_gemm_batched(int trans_a, int trans_b, int64_t batch, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, int64_t stride_a, const float *B,
                      int64_t ldb, int64_t stride_b, float beta, float *C, int64_t ldc,
                      int64_t stride_c) {
    /* Small GEMMs: one per thread across the batch (each runs serially inside
     * the region). Large ones: one after another, each using every thread.
     * No region for one thread (libgomp would allocate a team for it). */
    int small = 2.0 * (double)M * N * K < GEMM_PAR_MIN_FLOPS;
    if (small && batch > 1 && tfm_par_threads() > 1 &&
        2.0 * (double)M * N * K * batch >= GEMM_PAR_MIN_FLOPS) {
#pragma omp parallel for schedule(static)
        for (int64_t b = 0; b < batch; b++)
            tfm_gemm(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb,
                     beta, C + b * stride_c, ldc);
        return;
    }
    for (int64_t b = 0; b < batch; b++)
        tfm_gemm(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb,
                 beta, C + b * stride_c, ldc);
}
