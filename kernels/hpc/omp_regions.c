/*
 * omp_regions.c - an unmodified OpenMP program (no kfm calls) for
 * "kfm run": two parallel regions at two source locations, run a known
 * number of times with a fixed team, so the profile's region nodes and
 * their counts are known exactly.
 *
 * Usage: omp_regions [ITER_A] [ITER_B] [SPIN_US].  Region A runs ITER_A
 * times (default 10), region B ITER_B times (default 5); each implicit task
 * spins SPIN_US microseconds (default 200).  Set OMP_NUM_THREADS for the
 * team size.  Prints "threads N" (the team size it got).
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void spin(double us) {
  double t0 = now_us();
  while (now_us() - t0 < us) {
  }
}

int main(int argc, char **argv) {
  int iter_a = argc > 1 ? atoi(argv[1]) : 10;
  int iter_b = argc > 2 ? atoi(argv[2]) : 5;
  double us = argc > 3 ? atof(argv[3]) : 200;
  int team = 0;
  for (int i = 0; i < iter_a; i++) {
#pragma omp parallel
    {
      spin(us);
#pragma omp master
      team = omp_get_num_threads();
    }
  }
  for (int i = 0; i < iter_b; i++) {
#pragma omp parallel
    spin(2 * us);
  }
  printf("threads %d\n", team);
  return 0;
}
