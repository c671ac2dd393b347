/* Parallel loops that allocate nothing.
 *
 * libgomp allocates and frees a team for every parallel region that runs one
 * thread: under --threads 1, when the region's `if` clause is false, or inside
 * another region. A training step (and a decoding step) allocates nothing, so
 * the loops of the kernels go through TFM_PAR_FOR: an OpenMP `parallel for
 * schedule(static)` when more than one thread would run it, else the same loop
 * run as written, without a region. The kernels are written so that their
 * results do not depend on the thread count: which way a loop runs changes no
 * number. (The GEMMs make the same choice in gemm_dispatch.) */
#ifndef TFM_UTIL_PAR_H
#define TFM_UTIL_PAR_H

#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "tfm/base.h"

/* 1 when a parallel region over this much work (roughly flops; at most
 * TFM_PAR_MIN_WORK runs serially) would run more than one thread. */
static inline int tfm_par_worth(int64_t work) {
#ifdef _OPENMP
    return work > TFM_PAR_MIN_WORK && !omp_in_parallel() && omp_get_max_threads() > 1;
#else
    (void)work;
    return 0;
#endif
}

#define TFM_PAR_PRAGMA_(x) _Pragma(#x)

/* TFM_PAR_FOR(par, for-statement): the for statement under `#pragma omp
 * parallel for schedule(static)` when par is true (tfm_par_worth(work), with
 * any condition of the caller's), else as written. TFM_PAR_FOR_CL(par,
 * clauses, for-statement) adds clauses such as collapse(2) or reduction(...).
 * The statement is a macro argument: keep it short (a call per row or block)
 * so that it reads and debugs as a loop. */
#define TFM_PAR_FOR_CL(par, clauses, ...)                                                          \
    do {                                                                                           \
        if (par) {                                                                                 \
            TFM_PAR_PRAGMA_(omp parallel for schedule(static) clauses)                             \
            __VA_ARGS__;                                                                           \
        } else {                                                                                   \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
    } while (0)
#define TFM_PAR_FOR(par, ...) TFM_PAR_FOR_CL(par, , __VA_ARGS__)

#endif
