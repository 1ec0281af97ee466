/*
 * bench_engine.c - what kfm costs, next to what the machine and a peer cost,
 * all measured side by side in one process so the ratios hold even though
 * absolute figures move 10-15% from run to run on these VMs.  This file is
 * the program: main runs the cases in their order; the rest is in
 * bench/engine/, compiled into this same executable (CMakeLists.txt lists
 * those files for the bench_engine target):
 *
 *  - engine/harness.c     timing (calibration, interleaved rotating
 *                         repetitions, medians), JSON line output, CPU
 *                         pinning, worker threads, the rdtsc floor;
 *  - engine/papi_peers.c  the PAPI peers and floors: PAPI_hl region pairs,
 *                         grouped PAPI_read pairs, the PAPI-HL child process;
 *  - engine/pairs.c       the enter+exit pair cost at each level, against
 *                         those floors and peers;
 *  - engine/cases.c       memory per 1M transitions, short-lived threads,
 *                         the sampler's CPU share, and the kfm session
 *                         helpers every case uses;
 *  - engine/bench.h       what they share.
 *
 * Output: one JSON object per line on stdout, {"name", "value", "unit"} plus
 * "floor"/"peer"/"ratio" where they apply; progress and diagnostics go to
 * stderr.  A measurement that cannot be made prints "value":null with an
 * "unavailable" or "error" reason instead of a number.  Each file's header
 * says what its lines measure and how.  KFM_CONFIG is unset so the
 * environment cannot change what is measured.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/bench.h"

int main(int argc, char **argv) {
#ifdef KFM_HAVE_PAPI
  if (argc > 1 && strcmp(argv[1], HLPROC_ARG) == 0) {
    return hlproc_child_main(argc, argv);
  }
#else
  (void)argv;
  if (argc > 1) {
    fprintf(stderr, "bench_engine: takes no arguments\n");
    return 2;
  }
#endif
  unsetenv("KFM_CONFIG");
  choose_cpus();
  papi_peers_init();

  /* Bring the CPU out of any idle state before the first timing. */
  double spin_end = now_ns() + 300e6;
  while (now_ns() < spin_end) {
    bench_sink++;
  }

  /* Memory first, in a heap that earlier cases have not left free memory in. */
  char config[160];
  snprintf(config, sizeof config, "level=basic,sampler_cpu=%d", bench_side_cpu);
  memory_growth("memory.per_1m_transitions_basic", config);
  snprintf(config, sizeof config, "level=detailed,trace=on,sampler_cpu=%d", bench_side_cpu);
  memory_growth("memory.per_1m_transitions_detailed", config);

  /* Threads that live for a few transitions (thread pools that come and go). */
  snprintf(config, sizeof config, "level=basic,sampler_cpu=%d", bench_side_cpu);
  short_lived_threads("thread.short_lived_basic", config);
  snprintf(config, sizeof config, "level=comprehensive,sampler_cpu=%d", bench_side_cpu);
  short_lived_threads("thread.short_lived_comprehensive", config);

  /* Sampler cost against the bare loop. */
  sampler_share(1000, "sampler.cpu_share_1khz", "sampler.late_p99_1khz");
  sampler_share(10000, "sampler.cpu_share_10khz", "sampler.late_p99_10khz");

  /* The hot path: floors, kfm at each level, the peers, interleaved. */
  pair_costs();

  /* PAPI-HL writes its file at exit; nothing may reach stdout after the JSON. */
  fflush(stdout);
  dup2(STDERR_FILENO, STDOUT_FILENO);
  return bench_failed ? 1 : 0;
}
