/* Data parallelism over MPI: the tfm_dist of tfm/train.h on MPI_COMM_WORLD.
 * Compiled only by `make MPI=1` (with mpicc) and linked into the tfm
 * program; libtfm itself never depends on MPI.
 *
 * The gradient sum has a fixed order whatever the transport does (an
 * MPI_Allreduce may add in any order, and Open MPI picks its algorithm by
 * message size and process count): the block is cut into one chunk per rank;
 * every rank sends its copy of chunk j to rank j, which adds the copies in
 * rank order 0, 1, ..., N-1 in double and rounds once, then sends the finished
 * chunk to everyone. The traffic is that of a reduce-scatter plus an
 * all-gather (2 (N-1)/N of the block per rank), and a run with N ranks
 * repeats bit for bit.
 *
 * The exchanges of the step are point-to-point messages (non-blocking, then
 * polled), so a rank that waits knows whom it waits for: when a peer sends
 * nothing for TFM_MPI_TIMEOUT seconds (default 300; 0: wait forever), the
 * rank prints "tfm: rank R: no answer from rank P for N s ..." and aborts the
 * job instead of hanging (a stopped process, a network partition). A peer
 * that dies is reported by mpirun itself ("process rank P ... exited on
 * signal 9"), which then ends the job. */
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../util/par.h"
#include "tfm/train.h"

typedef struct {
    tfm_dist d;
    int64_t n;            /* floats reserved for weighted_sum */
    int *counts, *displs; /* (size) chunk of each rank in the block */
    int *rcounts, *rdispls;
    int *share_off, *share_n; /* (size) this rank's chunk, for each peer */
    float *recv;              /* (size, counts[rank]) every rank's copy of this rank's chunk */
    MPI_Request *req;         /* (2 size) receives first, then sends */
    int *peer;                /* (2 size) the rank of each request */
    double timeout;           /* seconds without an answer before giving up (0: never) */
    /* the bucketed sum (reserve_buckets): bucket b's piece j (of size
     * pieces) is summed by rank j, as weighted_sum's chunks are */
    int64_t nb;
    int64_t *bat;         /* (nb + 1) bucket bounds */
    int64_t *bslot;       /* (nb) where this rank's piece of bucket b starts in brecv */
    float *brecv;         /* every rank's copy of this rank's pieces: (size, piece) per bucket */
    MPI_Request *breq;    /* (nb, 4, size - 1): piece copies in and out, finished pieces in, out */
    int *bpeer;           /* the rank of each request */
    unsigned char *bflag; /* (nb) B_SENT, B_GATHERING, B_SUMMED */
    float *bx;            /* this step's block */
    double *bw, bscale;   /* (size) weights and scale */
} mpi_dist;

enum { TAG_GATHER = 1, TAG_SCATTER = 2, TAG_SHARE = 3, TAG_BUCKET = 16 };
enum { B_SENT = 1, B_GATHERING = 2, B_SUMMED = 4 };
#define MAX_BUCKETS 16000 /* two tags each above TAG_BUCKET, below MPI's minimum TAG_UB 32767 */

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

/* Waits for the n requests of m->req; after m->timeout seconds without all
 * of them done, names the first peer not heard from and aborts the job. */
static int wait_all(mpi_dist *m, int n, const char *what) {
    double t0 = MPI_Wtime();
    for (;;) {
        int done = 0;
        int rc = MPI_Testall(n, m->req, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_error(&m->d, rc, what);
        if (done) return 0;
        double waited = MPI_Wtime() - t0;
        if (m->timeout > 0 && waited > m->timeout) {
            int missing = -1;
            for (int i = 0; i < n && missing < 0; i++) {
                int flag = 1;
                if (m->req[i] != MPI_REQUEST_NULL) MPI_Test(&m->req[i], &flag, MPI_STATUS_IGNORE);
                if (!flag) missing = m->peer[i];
            }
            fprintf(stderr,
                    "tfm: rank %d: no answer from rank %d for %.0f s in the %s (lost or "
                    "stalled; TFM_MPI_TIMEOUT): stopping the job\n",
                    m->d.rank, missing, waited, what);
            fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        if (waited < 0.01) { /* the first 10 ms: spin, but let other processes run */
            sched_yield();
        } else { /* then poll gently: 0.1 ms, after a second 1 ms */
            struct timespec ts = {0, waited > 1 ? 1000000 : 100000};
            nanosleep(&ts, NULL);
        }
    }
}

/* Receives recv_n[r] items of type t from every rank r != me into
 * recv_at(r) and sends send_n[r] from send_at(r), then waits. */
static int exchange(mpi_dist *m, MPI_Datatype t, int tag, char *recv, const int *recv_off,
                    const int *recv_n, const char *send, const int *send_off, const int *send_n,
                    int elem, const char *what) {
    int size = m->d.size, me = m->d.rank, n = 0;
    for (int r = 0; r < size; r++) {
        if (r == me) continue;
        int rc = MPI_Irecv(recv + (size_t)recv_off[r] * (size_t)elem, recv_n[r], t, r, tag,
                           MPI_COMM_WORLD, &m->req[n]);
        if (rc != MPI_SUCCESS) return mpi_error(&m->d, rc, "MPI_Irecv");
        m->peer[n++] = r;
    }
    for (int r = 0; r < size; r++) {
        if (r == me) continue;
        int rc = MPI_Isend(send + (size_t)send_off[r] * (size_t)elem, send_n[r], t, r, tag,
                           MPI_COMM_WORLD, &m->req[n]);
        if (rc != MPI_SUCCESS) return mpi_error(&m->d, rc, "MPI_Isend");
        m->peer[n++] = r;
    }
    return wait_all(m, n, what);
}

static int mpi_allgather(tfm_dist *d, const void *mine, size_t bytes, void *all) {
    mpi_dist *m = d->impl;
    if (bytes > (size_t)(1 << 30) / (size_t)d->size)
        return tfm_set_error("allgather: %zu bytes is too many", bytes), 1;
    int *off = m->peer + 2 * d->size, *cnt = off + d->size, *zero = cnt + d->size;
    for (int r = 0; r < d->size; r++) {
        off[r] = r * (int)bytes;
        cnt[r] = (int)bytes;
        zero[r] = 0;
    }
    memcpy((char *)all + (size_t)d->rank * bytes, mine, bytes);
    /* this rank's bytes (now at all[off[me]]) to every other rank */
    return exchange(m, MPI_BYTE, TAG_GATHER, all, off, cnt, (char *)all + off[d->rank], zero, cnt,
                    1, "exchange of statistics");
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
    free(m->share_off);
    free(m->share_n);
    m->counts = m->displs = m->rcounts = m->rdispls = m->share_off = m->share_n = NULL;
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
    m->share_off = malloc((size_t)size * sizeof(int));
    m->share_n = malloc((size_t)size * sizeof(int));
    if (!m->counts || !m->displs || !m->rcounts || !m->rdispls || !m->share_off || !m->share_n)
        goto oom;
    for (int r = 0; r < size; r++) {
        int64_t lo = n * r / size, hi = n * (r + 1) / size;
        m->displs[r] = (int)lo;
        m->counts[r] = (int)(hi - lo);
    }
    int mine = m->counts[d->rank];
    for (int r = 0; r < size; r++) {
        m->rcounts[r] = mine;
        m->rdispls[r] = r * mine; /* <= n: fits */
        m->share_off[r] = m->displs[d->rank];
        m->share_n[r] = mine;
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

/* sum over ranks r in order 0..size-1 of w[r] * col[r * stride], in double */
static double weighted_sum(const double *w, const float *col, int64_t stride, int64_t size) {
    double acc = 0;
    for (int64_t r = 0; r < size; r++) acc += w[r] * (double)col[r * stride];
    return acc;
}

static int mpi_weighted_sum(tfm_dist *d, float *x, int64_t n, const double *w, double scale) {
    mpi_dist *m = d->impl;
    if (n != m->n)
        return tfm_set_error("weighted_sum: %lld floats, %lld reserved", (long long)n,
                             (long long)m->n),
               1;
    /* every rank's copy of chunk j to rank j (this rank's own copy by memcpy) */
    int64_t chunk = m->counts[d->rank], size = d->size;
    float *out = x + m->displs[d->rank];
    memcpy(m->recv + (size_t)d->rank * (size_t)chunk, out, (size_t)chunk * sizeof(float));
    if (exchange(m, MPI_FLOAT, TAG_SCATTER, (char *)m->recv, m->rdispls, m->rcounts, (char *)x,
                 m->displs, m->counts, (int)sizeof(float), "gradient exchange"))
        return 1;
    const float *recv = m->recv;
    TFM_PAR_FOR(tfm_par_worth(chunk * size),
                for (int64_t i = 0; i < chunk; i++) out[i] =
                    (float)(weighted_sum(w, recv + i, chunk, size) * scale));
    /* the finished chunks to everyone */
    return exchange(m, MPI_FLOAT, TAG_SHARE, (char *)x, m->displs, m->counts, (char *)x,
                    m->share_off, m->share_n, (int)sizeof(float), "gradient exchange");
}

/* ---- the bucketed sum ------------------------------------------------------------ */
static void bucket_release(mpi_dist *m) {
    free(m->bat);
    free(m->bslot);
    free(m->brecv);
    free(m->breq);
    free(m->bpeer);
    free(m->bflag);
    free(m->bw);
    m->bat = m->bslot = NULL;
    m->brecv = NULL;
    m->breq = NULL;
    m->bpeer = NULL;
    m->bflag = NULL;
    m->bw = NULL;
    m->nb = 0;
}

/* Piece j of bucket b: [*lo, *lo + *n). */
static void piece(const mpi_dist *m, int64_t b, int j, int64_t *lo, int *n) {
    int64_t a = m->bat[b], len = m->bat[b + 1] - a, size = m->d.size;
    *lo = a + len * j / size;
    *n = (int)(a + len * (j + 1) / size - *lo);
}

static int mpi_reserve_buckets(tfm_dist *d, const int64_t *at, int64_t nb) {
    mpi_dist *m = d->impl;
    bucket_release(m);
    if (nb < 1 || nb > MAX_BUCKETS || at[0] != 0 || at[nb] > 0x7fffffff)
        return tfm_set_error("gradient buckets: %lld buckets of %lld floats (1 to %d buckets, at "
                             "most 2^31 - 1 floats)",
                             (long long)nb, (long long)at[nb], MAX_BUCKETS),
               1;
    int64_t peers = d->size - 1, slots = 0;
    m->bat = malloc((size_t)(nb + 1) * sizeof(int64_t));
    m->bslot = malloc((size_t)nb * sizeof(int64_t));
    m->breq = malloc((size_t)(nb * 4 * peers) * sizeof(MPI_Request));
    m->bpeer = malloc((size_t)(nb * 4 * peers) * sizeof(int));
    m->bflag = calloc((size_t)nb, 1);
    m->bw = malloc((size_t)d->size * sizeof(double));
    if (!m->bat || !m->bslot || !m->breq || !m->bpeer || !m->bflag || !m->bw) goto oom;
    memcpy(m->bat, at, (size_t)(nb + 1) * sizeof(int64_t));
    m->nb = nb;
    for (int64_t b = 0; b < nb; b++) {
        if (at[b + 1] < at[b]) {
            bucket_release(m);
            return tfm_set_error("gradient buckets: bucket %lld ends before it starts",
                                 (long long)b),
                   1;
        }
        int64_t lo;
        int n;
        piece(m, b, d->rank, &lo, &n);
        m->bslot[b] = slots;
        slots += (int64_t)d->size * n;
        for (int64_t k = 0; k < 4 * peers; k++) {
            m->breq[b * 4 * peers + k] = MPI_REQUEST_NULL;
            int peer = (int)(k % peers);
            m->bpeer[b * 4 * peers + k] = peer < d->rank ? peer : peer + 1;
        }
    }
    m->brecv = malloc((size_t)(slots > 0 ? slots : 1) * sizeof(float));
    if (!m->brecv) goto oom;
    return 0;
oom:
    bucket_release(m);
    return tfm_set_error("out of memory (gradient bucket buffers)"), 1;
}

/* Requests of bucket b, kind k (0 copies in, 1 copies out, 2 finished in, 3
 * finished out): size - 1 of them, one per peer. */
static MPI_Request *breqs(mpi_dist *m, int64_t b, int k) {
    return m->breq + (b * 4 + k) * (m->d.size - 1);
}

static int mpi_sum_start(tfm_dist *d, float *x, const double *w, double scale) {
    mpi_dist *m = d->impl;
    if (!m->nb) return tfm_set_error("sum_start: no buckets reserved"), 1;
    m->bx = x;
    memcpy(m->bw, w, (size_t)d->size * sizeof(double));
    m->bscale = scale;
    /* every rank's copy of this rank's pieces may come in from now on */
    for (int64_t b = 0; b < m->nb; b++) {
        m->bflag[b] = 0;
        int64_t lo;
        int n;
        piece(m, b, d->rank, &lo, &n);
        MPI_Request *rq = breqs(m, b, 0);
        for (int k = 0; k < d->size - 1; k++) {
            int r = k < d->rank ? k : k + 1;
            int rc = MPI_Irecv(m->brecv + m->bslot[b] + (int64_t)r * n, n, MPI_FLOAT, r,
                               TAG_BUCKET + 2 * (int)b, MPI_COMM_WORLD, &rq[k]);
            if (rc != MPI_SUCCESS) return mpi_error(d, rc, "MPI_Irecv");
        }
    }
    return 0;
}

/* Moves every bucket on as far as it goes without waiting: finished pieces
 * come in once this rank's copies have left; this rank's piece is summed
 * (in rank order, in double, as weighted_sum) once every copy is in. */
static int bucket_progress(mpi_dist *m) {
    int size = m->d.size, me = m->d.rank;
    for (int64_t b = 0; b < m->nb; b++) {
        unsigned char f = m->bflag[b];
        if (!(f & B_SENT) || (f & B_GATHERING && f & B_SUMMED)) continue;
        int done = 0, rc;
        if (!(f & B_GATHERING)) {
            if ((rc = MPI_Testall(size - 1, breqs(m, b, 1), &done, MPI_STATUSES_IGNORE)) !=
                MPI_SUCCESS)
                return mpi_error(&m->d, rc, "MPI_Testall");
            if (done) { /* the copies are out: the pieces may be overwritten now */
                MPI_Request *rq = breqs(m, b, 2);
                for (int k = 0; k < size - 1; k++) {
                    int r = k < me ? k : k + 1, n;
                    int64_t lo;
                    piece(m, b, r, &lo, &n);
                    if ((rc = MPI_Irecv(m->bx + lo, n, MPI_FLOAT, r, TAG_BUCKET + 2 * (int)b + 1,
                                        MPI_COMM_WORLD, &rq[k])) != MPI_SUCCESS)
                        return mpi_error(&m->d, rc, "MPI_Irecv");
                }
                m->bflag[b] |= B_GATHERING;
            }
        }
        if (!(f & B_SUMMED)) {
            if ((rc = MPI_Testall(size - 1, breqs(m, b, 0), &done, MPI_STATUSES_IGNORE)) !=
                MPI_SUCCESS)
                return mpi_error(&m->d, rc, "MPI_Testall");
            if (!done) continue;
            int64_t lo;
            int n;
            piece(m, b, me, &lo, &n);
            const float *recv = m->brecv + m->bslot[b];
            const double *w = m->bw;
            double scale = m->bscale;
            float *out = m->bx + lo;
            TFM_PAR_FOR(n > 65536 && tfm_par_worth(n),
                        for (int i = 0; i < n; i++) out[i] =
                            (float)(weighted_sum(w, recv + i, n, size) * scale));
            MPI_Request *rq = breqs(m, b, 3);
            for (int k = 0; k < size - 1; k++) {
                int r = k < me ? k : k + 1;
                if ((rc = MPI_Isend(out, n, MPI_FLOAT, r, TAG_BUCKET + 2 * (int)b + 1,
                                    MPI_COMM_WORLD, &rq[k])) != MPI_SUCCESS)
                    return mpi_error(&m->d, rc, "MPI_Isend");
            }
            m->bflag[b] |= B_SUMMED;
        }
    }
    return 0;
}

static int mpi_sum_bucket(tfm_dist *d, int64_t b) {
    mpi_dist *m = d->impl;
    if (b >= m->nb || (b >= 0 && m->bflag[b] & B_SENT))
        return tfm_set_error("sum_bucket: bucket %lld of %lld, or handed over twice", (long long)b,
                             (long long)m->nb),
               1;
    if (b >= 0) {
        int me = d->rank;
        int64_t lo;
        int n;
        piece(m, b, me, &lo, &n); /* this rank's own copy */
        memcpy(m->brecv + m->bslot[b] + (int64_t)me * n, m->bx + lo, (size_t)n * sizeof(float));
        MPI_Request *rq = breqs(m, b, 1);
        for (int k = 0; k < d->size - 1; k++) {
            int r = k < me ? k : k + 1;
            piece(m, b, r, &lo, &n);
            int rc = MPI_Isend(m->bx + lo, n, MPI_FLOAT, r, TAG_BUCKET + 2 * (int)b, MPI_COMM_WORLD,
                               &rq[k]);
            if (rc != MPI_SUCCESS) return mpi_error(d, rc, "MPI_Isend");
        }
        m->bflag[b] |= B_SENT;
    }
    return bucket_progress(m);
}

static int mpi_sum_finish(tfm_dist *d) {
    mpi_dist *m = d->impl;
    double t0 = MPI_Wtime();
    for (int64_t b = 0; b < m->nb; b++)
        if (!(m->bflag[b] & B_SENT))
            return tfm_set_error("sum_finish: bucket %lld was not handed over", (long long)b), 1;
    for (;;) {
        if (bucket_progress(m)) return 1;
        int ready = 1;
        for (int64_t b = 0; b < m->nb && ready; b++)
            ready = (m->bflag[b] & (B_GATHERING | B_SUMMED)) == (B_GATHERING | B_SUMMED);
        int done = 0;
        int64_t n = m->nb * 4 * (d->size - 1);
        if (ready) {
            int rc = MPI_Testall((int)n, m->breq, &done, MPI_STATUSES_IGNORE);
            if (rc != MPI_SUCCESS) return mpi_error(d, rc, "MPI_Testall");
        }
        double waited = MPI_Wtime() - t0;
        if (done) {
            d->finish_seconds += waited;
            return 0;
        }
        if (m->timeout > 0 && waited > m->timeout) {
            int missing = -1;
            for (int64_t i = 0; i < n && missing < 0; i++) {
                int flag = 1;
                if (m->breq[i] != MPI_REQUEST_NULL) MPI_Test(&m->breq[i], &flag, MPI_STATUS_IGNORE);
                if (!flag) missing = m->bpeer[i];
            }
            fprintf(stderr,
                    "tfm: rank %d: no answer from rank %d for %.0f s in the gradient exchange "
                    "(lost or stalled; TFM_MPI_TIMEOUT): stopping the job\n",
                    d->rank, missing, waited);
            fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        if (waited < 0.01) {
            sched_yield();
        } else {
            struct timespec ts = {0, waited > 1 ? 1000000 : 100000};
            nanosleep(&ts, NULL);
        }
    }
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
    m->timeout = 300;
    const char *t = getenv("TFM_MPI_TIMEOUT");
    if (t && *t) {
        char *end;
        m->timeout = strtod(t, &end);
        if (*end || !(m->timeout >= 0)) {
            fprintf(stderr, "tfm: TFM_MPI_TIMEOUT=%s: not a number of seconds (0: no limit)\n", t);
            MPI_Finalize();
            exit(2);
        }
    }
    m->req = malloc(2 * (size_t)m->d.size * sizeof *m->req);
    m->peer = malloc(5 * (size_t)m->d.size * sizeof *m->peer); /* and allgather's lists */
    if (!m->req || !m->peer) {
        fprintf(stderr, "tfm: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    m->d.allgather = mpi_allgather;
    m->d.broadcast = mpi_broadcast;
    m->d.weighted_sum = mpi_weighted_sum;
    m->d.reserve = mpi_reserve;
    /* TFM_MPI_OVERLAP=0: one blocking sum after backward (for comparison) */
    const char *ov = getenv("TFM_MPI_OVERLAP");
    if (!ov || strcmp(ov, "0")) {
        m->d.reserve_buckets = mpi_reserve_buckets;
        m->d.sum_start = mpi_sum_start;
        m->d.sum_bucket = mpi_sum_bucket;
        m->d.sum_finish = mpi_sum_finish;
    }
    return &m->d;
}

int tfm_dist_mpi_end(tfm_dist *d, int rc) {
    if (!d) return rc;
    mpi_dist *m = d->impl;
    mpi_release(m);
    bucket_release(m);
    free(m->req);
    free(m->peer);
    m->req = NULL;
    m->peer = NULL;
    fflush(stdout);
    fflush(stderr);
    /* a rank that failed alone would leave the others waiting in their next
     * collective: take the whole job down */
    if (rc && !d->agreed_error && d->size > 1) MPI_Abort(MPI_COMM_WORLD, rc);
    MPI_Finalize();
    return rc;
}
