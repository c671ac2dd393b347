/* Parallel loops that allocate nothing.
 *
 * libgomp allocates and frees a team for every parallel region that runs one
 * thread: under --threads 1, when the region's `if` clause is false, or inside
 * another region. A training step (and a decoding step) allocates nothing, so
 * the loops of the kernels go through TFM_PAR_FOR: an OpenMP `parallel for
 * schedule(static)` when the region would get more than one thread, else the
 * same loop run as written, without a region. The kernels are written so that
 * their results do not depend on the thread count: which way a loop runs
 * changes no number. The GEMMs size their regions with tfm_par_threads too.
 * (With OMP_DYNAMIC=true the runtime may still give a region fewer threads
 * than asked for, and one thread allocates; nothing here can know that.) */
#ifndef TFM_UTIL_PAR_H
#define TFM_UTIL_PAR_H

#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "tfm/base.h"

/* The threads a parallel region opened here gets: 1 inside another active
 * region (nested regions are not used, whatever OMP_MAX_ACTIVE_LEVELS
 * says), with OMP_MAX_ACTIVE_LEVELS=0, and without OpenMP; else the thread
 * count, at most OMP_THREAD_LIMIT (libgomp may give fewer when its threads
 * are busy elsewhere; the GEMMs read the team's size). */
static inline int tfm_par_threads(void) {
#ifdef _OPENMP
    if (omp_in_parallel() || omp_get_max_active_levels() < 1) return 1;
    int n = omp_get_max_threads(), limit = omp_get_thread_limit();
    return n < limit ? n : limit;
#else
    return 1;
#endif
}

/* 1 when a parallel region over this much work (roughly flops; at most
 * TFM_PAR_MIN_WORK runs serially) would run more than one thread. */
static inline int tfm_par_worth(int64_t work) {
    return work > TFM_PAR_MIN_WORK && tfm_par_threads() > 1;
}

#define TFM_PAR_PRAGMA_(x) _Pragma(#x)

/* TFM_PAR_FOR(par, for-statement): the for statement under `#pragma omp
 * parallel for schedule(static)` when par is true (tfm_par_worth(work), with
 * any condition of the caller's), else as written. TFM_PAR_FOR_CL(par,
 * clauses, for-statement) adds clauses such as reduction(...). The statement
 * is a macro argument: keep it to one line (a call per row or block) so that
 * it reads and debugs as a loop; it must not hold a directive (#pragma). A
 * body that indexes per-thread scratch by omp_get_thread_num() must use slot
 * 0 when par is false: the caller may be a thread of its own region. */
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
