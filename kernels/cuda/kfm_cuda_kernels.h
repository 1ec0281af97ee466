/*
 * kfm_cuda_kernels.h - CUDA workloads with known ground truth, callable
 * from C.
 *
 * Each call does a fixed amount of GPU work the CUPTI backend measures:
 * kfmc_vector_add launches one kernel and checks its result exactly;
 * kfmc_spin_us launches one single-thread kernel that spins on clock64()
 * for a given time; kfmc_copy_mb copies exactly mb MiB host-to-device and
 * back (two memcpy records of mb << 20 bytes each).  Every call
 * synchronises before returning, so the work is finished (and its activity
 * records complete) when it returns.
 *
 * Conventions: 0 on success, else the negated cudaError_t of the failing
 * CUDA call (kfmc_strerror names it), or -1 when a result is wrong.  The
 * calls use the current CUDA device and keep no state between calls.
 * Built only where nvcc exists (library kfm_cuda_kernels).
 */
#ifndef KFM_CUDA_KERNELS_H
#define KFM_CUDA_KERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Threads per block of kfmc_vector_add. */
#define KFMC_BLOCK 256

/**
 * 1 when a CUDA device can run the kernels, else 0 with the reason
 * ("cudaGetDeviceCount: cudaErrorInsufficientDriver: CUDA driver version is
 * insufficient for CUDA runtime version", "no CUDA device").
 */
int kfmc_gpu_available(char *reason, size_t len);

/**
 * c = a + b on n floats, with a[i] = i % 1024 and b[i] = 2 * (i % 1024), so
 * c[i] = 3 * (i % 1024) exactly.  One launch of grid ceil(n / KFMC_BLOCK),
 * block KFMC_BLOCK, plus 2 host-to-device and 1 device-to-host copies of
 * n * 4 bytes.  *mismatches (may be NULL) gets the count of wrong elements;
 * any mismatch returns -1.
 */
int kfmc_vector_add(size_t n, size_t *mismatches);

/**
 * One kernel <<<1, 1>>> that spins for us microseconds of the device's
 * clock64() at its nominal clock rate (cudaDevAttrClockRate).  *kernel_us
 * (may be NULL) gets the time between CUDA events around the launch.
 */
int kfmc_spin_us(unsigned us, double *kernel_us);

/**
 * Copies mb MiB from pinned host memory to the device and back: exactly
 * mb << 20 bytes each way.  *h2d_ms and *d2h_ms (may be NULL) get each
 * copy's event-timed duration.
 */
int kfmc_copy_mb(unsigned mb, double *h2d_ms, double *d2h_ms);

/* ---- Asynchronous work, for tests whose nodes launch in one place and
 * synchronise in another.  A stream is a cudaStream_t passed as void *;
 * NULL is the legacy default stream. */

/** cudaFree(0): creates the device's primary context now (e.g. before a
 * profiling session starts). */
int kfmc_context_init(void);
int kfmc_stream_create(void **stream);
int kfmc_stream_destroy(void *stream);
int kfmc_stream_sync(void *stream);

/** n launches of an empty kernel <<<1, 32>>> on stream; returns without
 * waiting for them. */
int kfmc_launch_tiny(void *stream, unsigned n);

/** A spin kernel bracketed by CUDA events on its stream (kfmc_spin_async). */
struct kfmc_timed {
  void *e0, *e1;     /* cudaEvent_t */
  long long *cycles; /* device memory the kernel writes */
};

/** Launches one <<<1, 1>>> spin of us microseconds at the nominal clock,
 * between two events recorded on stream; returns at once.  t is filled for
 * kfmc_timed_ms. */
int kfmc_spin_async(void *stream, unsigned us, struct kfmc_timed *t);

/** After the stream is synchronised: *ms = the event-timed duration of the
 * spin; releases t's events and memory (also on failure). */
int kfmc_timed_ms(struct kfmc_timed *t, double *ms);

/** Captures a graph of k empty kernels on stream, launches it `launches`
 * times and waits: k * launches kernel records, every one of a launch
 * carrying that cudaGraphLaunch's correlation id. */
int kfmc_graph_run(void *stream, unsigned k, unsigned launches);

/** Name and text of a code returned above ("cudaErrorNoDevice: no CUDA-capable device is
 * detected"). */
const char *kfmc_strerror(int rc);

#ifdef __cplusplus
}
#endif
#endif /* KFM_CUDA_KERNELS_H */
