/* Data parallelism over MPI: the tfm_dist of tfm/train.h on MPI_COMM_WORLD.
 * Compiled only by `make MPI=1` (with mpicc) and linked into the tfm
 * program; libtfm itself never depends on MPI.
 *
 * The gradient sum has a fixed order whatever MPI's collectives do inside
 * (MPI_Allreduce may add in any order, and Open MPI picks its algorithm by
 * message size and process count): the block is cut into one chunk per rank;
 * MPI_Alltoallv brings every rank's copy of chunk j to rank j, which adds them
 * in rank order 0, 1, ..., N-1 in double and rounds once; MPI_Allgatherv
 * hands the finished chunks to everyone. The traffic is that of a
 * reduce-scatter plus an all-gather (2 (N-1)/N of the block per rank), and a
 * run with N ranks repeats bit for bit. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/train.h"

typedef struct {
    tfm_dist d;
    int64_t n;            /* floats reserved for weighted_sum */
    int *counts, *displs; /* (size) chunk of each rank in the block */
    int *rcounts, *rdispls;
    float *recv; /* (size, counts[rank]) every rank's copy of this rank's chunk */
} mpi_dist;

static mpi_dist g_mpi;

static int mpi_error(tfm_dist *d, int rc, const char *call) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
    return tfm_set_error("rank %d: %s failed: %s (a process of the job was lost or the network "
                         "failed)",
                         d->rank, call, msg),
           1;
}

static int mpi_allgather(tfm_dist *d, const void *mine, size_t bytes, void *all) {
    if (bytes > (size_t)(1 << 30))
        return tfm_set_error("allgather: %zu bytes is too many", bytes), 1;
    int rc = MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_error(d, rc, "MPI_Allgather");
}

static int mpi_broadcast(tfm_dist *d, void *buf, size_t bytes) {
    char *p = buf;
    while (bytes > 0) { /* MPI counts are int: 1 GiB at a time */
        size_t chunk = bytes < ((size_t)1 << 30) ? bytes : ((size_t)1 << 30);
        int rc = MPI_Bcast(p, (int)chunk, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_error(d, rc, "MPI_Bcast");
        p += chunk;
        bytes -= chunk;
    }
    return 0;
}

static void mpi_release(mpi_dist *m) {
    free(m->counts);
    free(m->displs);
    free(m->rcounts);
    free(m->rdispls);
    free(m->recv);
    m->counts = m->displs = m->rcounts = m->rdispls = NULL;
    m->recv = NULL;
    m->n = 0;
}

static int mpi_reserve(tfm_dist *d, int64_t n) {
    mpi_dist *m = d->impl;
    int size = d->size;
    mpi_release(m);
    if (n < 0 || n > 0x7fffffff)
        return tfm_set_error("%lld gradient floats: more than MPI's int counts reach (2^31 - 1)",
                             (long long)n),
               1;
    m->counts = malloc((size_t)size * sizeof(int));
    m->displs = malloc((size_t)size * sizeof(int));
    m->rcounts = malloc((size_t)size * sizeof(int));
    m->rdispls = malloc((size_t)size * sizeof(int));
    if (!m->counts || !m->displs || !m->rcounts || !m->rdispls) goto oom;
    for (int r = 0; r < size; r++) {
        int64_t lo = n * r / size, hi = n * (r + 1) / size;
        m->displs[r] = (int)lo;
        m->counts[r] = (int)(hi - lo);
    }
    int mine = m->counts[d->rank];
    for (int r = 0; r < size; r++) {
        m->rcounts[r] = mine;
        m->rdispls[r] = r * mine; /* <= n: fits */
    }
    m->recv = malloc((size_t)size * (size_t)(mine > 0 ? mine : 1) * sizeof(float));
    if (!m->recv) goto oom;
    m->n = n;
    return 0;
oom:
    mpi_release(m);
    return tfm_set_error("out of memory (gradient exchange buffers for %lld floats)", (long long)n),
           1;
}

static int mpi_weighted_sum(tfm_dist *d, float *x, int64_t n, const double *w, double scale) {
    mpi_dist *m = d->impl;
    if (n != m->n)
        return tfm_set_error("weighted_sum: %lld floats, %lld reserved", (long long)n,
                             (long long)m->n),
               1;
    int rc = MPI_Alltoallv(x, m->counts, m->displs, MPI_FLOAT, m->recv, m->rcounts, m->rdispls,
                           MPI_FLOAT, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_error(d, rc, "MPI_Alltoallv");
    int64_t chunk = m->counts[d->rank], size = d->size;
    float *out = x + m->displs[d->rank];
    const float *recv = m->recv;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < chunk; i++) {
        double acc = 0;
        for (int64_t r = 0; r < size; r++) acc += w[r] * (double)recv[r * chunk + i];
        out[i] = (float)(acc * scale);
    }
    rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, m->counts, m->displs, MPI_FLOAT,
                        MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_error(d, rc, "MPI_Allgatherv");
}

/* Started by mpirun (Open MPI), mpiexec.hydra (MPICH) or a PMIx launcher. */
static int under_mpi_launcher(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

tfm_dist *tfm_dist_mpi_start(void) {
    if (!under_mpi_launcher()) return NULL;
    int provided = 0;
    /* OpenMP threads compute; only the main thread calls MPI */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        /* never fall back to N independent runs writing one directory */
        fprintf(stderr, "tfm: started by an MPI launcher, but MPI_Init_thread failed\n");
        exit(1);
    }
    /* errors come back to us (one line naming the rank), then MPI_Abort */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    mpi_dist *m = &g_mpi;
    memset(m, 0, sizeof *m);
    MPI_Comm_rank(MPI_COMM_WORLD, &m->d.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &m->d.size);
    m->d.impl = m;
    m->d.allgather = mpi_allgather;
    m->d.broadcast = mpi_broadcast;
    m->d.weighted_sum = mpi_weighted_sum;
    m->d.reserve = mpi_reserve;
    return &m->d;
}

int tfm_dist_mpi_end(tfm_dist *d, int rc) {
    if (!d) return rc;
    mpi_release(d->impl);
    fflush(stdout);
    fflush(stderr);
    /* a rank that failed alone would leave the others waiting in their next
     * collective: take the whole job down */
    if (rc && !d->agreed_error && d->size > 1) MPI_Abort(MPI_COMM_WORLD, rc);
    MPI_Finalize();
    return rc;
}
