/*
 * mpi_calls.c - what one MPI call costs, timed inside the program: N calls
 * of MPI_Barrier and of an 8-byte MPI_Allreduce, best of 5 rounds, printed
 * in ns per call.  Run it plain and under "kfm run" to see what the PMPI
 * layer adds per call (README "HPC jobs").  Usage: mpi_calls [N]
 * (default 1000000).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  double x = 1, y = 0, barrier = 1e30, allreduce = 1e30;
  for (int round = 0; round < 5; round++) {
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
      MPI_Barrier(MPI_COMM_WORLD);
    }
    double t1 = now_ns();
    for (long i = 0; i < n; i++) {
      MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    }
    double t2 = now_ns();
    barrier = (t1 - t0) / n < barrier ? (t1 - t0) / n : barrier;
    allreduce = (t2 - t1) / n < allreduce ? (t2 - t1) / n : allreduce;
  }
  if (rank == 0) {
    printf("MPI_Barrier %.1f ns/call, MPI_Allreduce %.1f ns/call\n", barrier, allreduce);
  }
  MPI_Finalize();
  return 0;
}
