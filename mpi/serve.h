/* serve.h - private to futureproof-mpi: a worker rank's serving loop. */
#ifndef FP_MPI_SERVE_H
#define FP_MPI_SERVE_H

#include "futureproof_mpi.h"

/* Serve units from root over comm (an intracommunicator, or the
 * intercommunicator to a spawning parent) until it says stop. 0. */
int fp__mpi_serve(MPI_Comm comm, int root, const fp_mpi_options *opt);

#endif
