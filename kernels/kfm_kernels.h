/*
 * kfm_kernels.h - synthetic workloads with known ground truth.
 *
 * Each kernel consumes a resource the profiler measures (CPU time, wall time,
 * resident memory, page faults, memory bandwidth, TCP traffic, file writes) in
 * an amount fixed by its arguments, so tests and the demo can check what kfm
 * attributes against what really happened.  Every kernel is self-contained:
 * it needs no kfm session and leaves no state behind (except the mapping that
 * kfmk_touch_mb hands back on request).
 *
 * Conventions: every function returns 0 on success or a negative errno value
 * (-EINVAL for bad arguments, otherwise the errno of the failing call).  The
 * kernels are thread-safe: none keeps global state.  Linux-specific.
 */
#ifndef KFM_KERNELS_H
#define KFM_KERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Page granularity kfmk_touch_mb writes at: one byte per this many bytes. */
#define KFMK_TOUCH_STRIDE 4096
/** Pages kfmk_touch_mb touches per MiB (1 MiB / KFMK_TOUCH_STRIDE). */
#define KFMK_PAGES_PER_MB 256

/** Bound on kfmk_loopback_tcp, in seconds. */
#define KFMK_TCP_TIMEOUT_S 10

/*
 * Triad layout, published so callers can compute the expected checksum
 * independently: n = KFMK_TRIAD_ELEMS(mb) doubles per array, and
 *   b[i] = i % 1024,  c[i] = i % 7,  s = 3.0,  a[i] = b[i] + s * c[i].
 * All values are small integers, so every sum is exact in double and the
 * checksum does not depend on the thread count or reduction order.
 */
#define KFMK_TRIAD_ELEMS(mb) ((mb) * (size_t)1048576 / (3 * sizeof(double)))
#define KFMK_TRIAD_B(i) ((double)((i) % 1024))
#define KFMK_TRIAD_C(i) ((double)((i) % 7))
#define KFMK_TRIAD_S 3.0

/**
 * Spin until the calling thread has used `ms` milliseconds of CPU time
 * (CLOCK_THREAD_CPUTIME_ID), doing integer arithmetic whose result is
 * published through a volatile sink so it cannot be optimised away.
 * Guarantees: thread CPU time consumed >= ms, exceeding it by at most one
 * arithmetic chunk (a few microseconds); wall time ~= ms when the thread is
 * not preempted.  No system calls other than clock_gettime.
 * @return 0, or -EINVAL if ms is negative or not finite.
 */
int kfmk_busy_ms(double ms);

/**
 * Sleep `ms` milliseconds of wall time: clock_nanosleep with TIMER_ABSTIME on
 * CLOCK_MONOTONIC, restarted after EINTR toward the same deadline, so signals
 * neither shorten nor lengthen the sleep.  Uses (almost) no CPU.
 * Guarantees: wall time >= ms; the excess is the kernel's wake-up latency.
 * @return 0, or -EINVAL if ms is negative or not finite.
 */
int kfmk_sleep_ms(double ms);

/**
 * Map `mb` MiB of anonymous memory (mmap, not malloc: RSS rises by exactly
 * the touched pages and munmap returns them) with transparent huge pages
 * disabled, and write one byte every KFMK_TOUCH_STRIDE bytes.
 * Guarantees: exactly mb * KFMK_PAGES_PER_MB pages touched (stored in *pages
 * when pages is non-NULL), each a first-touch minor fault on 4 KiB-page
 * systems; RSS rises by mb MiB while the mapping lives.
 * If retain is non-zero the mapping is returned in *keep (which must then be
 * non-NULL) and stays resident until kfmk_release(keep, mb); otherwise it is
 * unmapped before returning and *keep, if keep is non-NULL, is set to NULL.
 * mb == 0 touches nothing and returns 0 with *keep = NULL.
 * @return 0, -EINVAL (retain without keep, or mb too large), or -errno of mmap.
 */
int kfmk_touch_mb(size_t mb, int retain, void **keep, size_t *pages);

/**
 * Unmap memory retained by kfmk_touch_mb(mb, 1, keep, ...) and set *keep to
 * NULL.  A NULL keep or *keep is accepted (returns 0).  mb must be the value
 * passed to kfmk_touch_mb.
 * @return 0, -EINVAL (mb too large), or -errno of munmap.
 */
int kfmk_release(void **keep, size_t mb);

/**
 * Cause at least `n` minor page faults: map n pages (system page size) of
 * anonymous memory with transparent huge pages disabled, write to each page
 * once, unmap.  The RSS rise is transient (gone on return).
 * @return 0, -EINVAL (n too large), or -errno of mmap/munmap.
 */
int kfmk_page_faults(size_t n);

/**
 * STREAM-style triad a[i] = b[i] + s * c[i] over three arrays of
 * KFMK_TRIAD_ELEMS(mb) doubles (mb MiB in total, initialised in parallel so
 * pages land near their threads), repeated `reps` times.  OpenMP-parallel
 * with `threads` threads (threads <= 0: the OpenMP default); serial when
 * built without OpenMP.
 * Checksum: the sum of a[] after each repetition, summed over repetitions,
 * i.e. reps * sum_i (b[i] + s * c[i]) using the KFMK_TRIAD_* definitions.
 * It is exact (see above).  Memory is freed before returning.
 * @return 0, -EINVAL (mb == 0, reps < 1, or NULL checksum), or -ENOMEM.
 */
int kfmk_omp_triad(size_t mb, int threads, int reps, double *checksum);

/**
 * Send exactly `bytes` bytes over a TCP connection on 127.0.0.1 inside this
 * process: listen on an ephemeral port, connect, accept, then a helper
 * pthread receives (and checks a known byte pattern) while the caller sends.
 * Only the loopback interface is used.  Bounded: every send/recv times out
 * after KFMK_TCP_TIMEOUT_S seconds (SO_SNDTIMEO/SO_RCVTIMEO) and the whole
 * transfer is abandoned once it has run that long.
 * Guarantees on success: `bytes` payload bytes crossed the loopback interface
 * in one direction (plus TCP/IP headers and the handshake).
 * @return 0 only if all bytes arrived intact; -ETIMEDOUT, -EIO (short or
 *         corrupt transfer), or -errno of the failing socket/pthread call.
 */
int kfmk_loopback_tcp(size_t bytes);

/**
 * Write `bytes` bytes to a new temporary file in `dir` (mkstemp; dir NULL or
 * "" means $TMPDIR, else /tmp), fsync it, close it, then unlink it (after
 * the fsync, so the data really reaches the device).
 * Guarantees: `bytes` bytes passed through write(2) and one fsync; no file is
 * left behind, on success or failure.
 * @return 0, -ENAMETOOLONG, or -errno of the failing call.
 */
int kfmk_file_fsync(const char *dir, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif /* KFM_KERNELS_H */
