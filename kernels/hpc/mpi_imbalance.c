/*
 * mpi_imbalance.c - an MPI program for "kfm run" whose rank 2 does twice
 * the work of the others: each of ITER iterations runs "compute" (BASE_US
 * microseconds, 2 x BASE_US on rank 2, slept rather than spun: the test
 * runs 4 ranks on 2 cores, where a spinning rank's time would depend on
 * the scheduler more than on its work), an MPI_Allreduce of one double
 * and a ring exchange (MPI_Sendrecv of 100 doubles to rank+1, from
 * rank-1, whose first value is summed at the next iteration).  The other
 * ranks therefore wait in MPI_Allreduce for rank 2.
 *
 * It uses the C API the way a library inside a job would: its "compute"
 * node goes into the session kfm run started (kfm_session_default); run
 * without kfm it profiles nothing.
 *
 * Usage: mpi_imbalance [ITER] [BASE_US]  (defaults 20, 2000).  Prints the
 * allreduce result on rank 0, so a run can be checked.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kfm/kfm.h"

static void work(double us) {
  struct timespec ts = {(time_t)(us / 1e6), (long)(us * 1e3) % 1000000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int iter = argc > 1 ? atoi(argv[1]) : 20;
  double base = argc > 2 ? atof(argv[2]) : 2000;
  double us = rank == 2 ? 2 * base : base;
  kfm_session_t *s = kfm_session_default();
  kfm_node_id_t compute = 0;
  if (s && kfm_node_register(s, "compute", &compute) != 0) {
    s = NULL;
  }
  double buf[100], in[100], sum = 0;
  for (int i = 0; i < 100; i++) {
    buf[i] = rank;
  }
  for (int it = 0; it < iter; it++) {
    if (s) {
      kfm_enter(s, compute);
    }
    work(us);
    if (s) {
      kfm_exit(s, compute);
    }
    double mine = buf[0], total;
    MPI_Allreduce(&mine, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    sum += total;
    MPI_Sendrecv(buf, 100, MPI_DOUBLE, (rank + 1) % size, 0, in, 100, MPI_DOUBLE,
                 (rank + size - 1) % size, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    buf[0] = in[0];
  }
  if (rank == 0) {
    printf("sum %.0f\n", sum);
  }
  MPI_Finalize();
  return 0;
}
