/* The program's side of data parallelism (tfm train under mpirun): the
 * library's tfm_dist from MPI in `make MPI=1` builds (TFM_MPI defined, this
 * file compiled with mpicc; src/train/dist_mpi.c), nothing otherwise. */
#include "commands.h"
#include "tfm/train.h"

#ifdef TFM_MPI
tfm_dist *cli_dist_start(void) { return tfm_dist_mpi_start(); }
int cli_dist_end(tfm_dist *d, int rc) { return tfm_dist_mpi_end(d, rc); }
#else
tfm_dist *cli_dist_start(void) { return NULL; }
int cli_dist_end(tfm_dist *d, int rc) {
    (void)d;
    return rc;
}
#endif
