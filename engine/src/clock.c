/*
 * clock.c - the engine's clock: TSC calibrated against CLOCK_MONOTONIC,
 * with a clock_gettime fallback where the TSC is not invariant.
 *
 * The engine reads the clock inline (clock.h); this file decides once per
 * process which source is trustworthy and how fast the TSC runs.  Setting
 * KFM_CLOCK=gettime in the environment forces the fallback, which is how the
 * tests exercise it on machines whose TSC is fine.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "clock.h"

int kfm__clock_use_tsc;
double kfm__clock_ticks_per_ns = 1.0;

/* Written once under clock_once, read-only afterwards. */
static char clock_reason[128];
static pthread_once_t clock_once = PTHREAD_ONCE_INIT;

static int clock_tsc_invariant(char *why, size_t len) {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x80000007u) {
    snprintf(why, len, "CPUID leaf 0x80000007 missing: cannot tell whether the TSC is invariant");
    return 0;
  }
  __get_cpuid(0x80000007u, &a, &b, &c, &d);
  if (!(d & (1u << 8))) {
    snprintf(why, len, "TSC is not invariant (CPUID 0x80000007 EDX bit 8 clear)");
    return 0;
  }
  return 1;
#else
  snprintf(why, len, "no TSC on this architecture");
  return 0;
#endif
}

void kfm__clock_pair(uint64_t *ticks, uint64_t *ns) {
  /* Bracket the tick read between two monotonic reads and keep the tightest
   * of a few tries: the midpoint is then within a few tens of ns. */
  uint64_t best = UINT64_MAX;
  for (int i = 0; i < 5; i++) {
    uint64_t a = kfm__mono_ns();
    uint64_t t = kfm__now();
    uint64_t b = kfm__mono_ns();
    if (b - a < best) {
      best = b - a;
      *ticks = t;
      *ns = a + (b - a) / 2;
    }
  }
}

static void clock_init_once(void) {
  char why[96];
  const char *force = getenv("KFM_CLOCK");
  if (force != NULL && strcmp(force, "gettime") == 0) {
    snprintf(clock_reason, sizeof clock_reason, "clock_gettime: forced by KFM_CLOCK=gettime");
    return;
  }
  if (!clock_tsc_invariant(why, sizeof why)) {
    snprintf(clock_reason, sizeof clock_reason, "clock_gettime: %s", why);
    return;
  }
  kfm__clock_use_tsc = 1;
  /* 2 ms of calibration: the pair error (~50 ns) is then 2.5e-5 relative.
   * Sessions refine the ratio over their own span when it is longer. */
  uint64_t t0, n0, t1, n1;
  kfm__clock_pair(&t0, &n0);
  do {
    kfm__clock_pair(&t1, &n1);
  } while (n1 - n0 < 2000000u);
  kfm__clock_ticks_per_ns = (double)(t1 - t0) / (double)(n1 - n0);
  snprintf(clock_reason, sizeof clock_reason, "tsc: invariant, %.3f GHz", kfm__clock_ticks_per_ns);
}

void kfm__clock_init(void) {
  pthread_once(&clock_once, clock_init_once);
}

const char *kfm__clock_describe(void) {
  kfm__clock_init();
  return clock_reason;
}
