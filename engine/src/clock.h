/*
 * clock.h - the engine's timestamp source.
 *
 * Timestamps are raw ticks: TSC cycles where the TSC is invariant, otherwise
 * CLOCK_MONOTONIC nanoseconds.  Ticks are turned into nanoseconds only when
 * results are read, with a ratio measured over the session itself, so the hot
 * path pays one rdtsc (~10 ns) and nothing else.
 */
#ifndef KFM_CLOCK_H
#define KFM_CLOCK_H

#include <stdint.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

/*
 * Process-wide clock choice, written once under pthread_once by
 * kfm__clock_init before any session exists and read-only afterwards: the
 * hardware property it records is process-wide, and a branch on a hidden
 * global is cheaper on the hot path than an indirect call.
 */
extern int kfm__clock_use_tsc;
/* Calibrated TSC frequency in ticks per ns (1.0 for the clock_gettime fallback). */
extern double kfm__clock_ticks_per_ns;

static inline uint64_t kfm__mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t kfm__now(void) {
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_expect(kfm__clock_use_tsc, 1)) {
    return __rdtsc();
  }
#endif
  return kfm__mono_ns();
}

/** Initialise once per process (thread-safe).  Decides TSC or fallback and calibrates. */
void kfm__clock_init(void);
/** A (ticks, monotonic ns) pair read as close together as the machine allows. */
void kfm__clock_pair(uint64_t *ticks, uint64_t *ns);
/** Why the clock is what it is ("tsc: invariant, 2.450 GHz" / "clock_gettime: ..."). */
const char *kfm__clock_describe(void);

#endif /* KFM_CLOCK_H */
