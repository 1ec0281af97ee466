/*
 * poller.h - background poller threads for backends whose library calls
 * block: a few threads that read a slow source in a loop, sleeping between
 * rounds, and a stop flag that wakes every sleeper at once.
 *
 * Why a poller exists.  The engine's sampler thread calls each backend's
 * sample hook at up to kHz rates and must never wait on a library.  Some
 * GPU libraries block for long: NVML's nvmlDeviceGetPcieThroughput
 * measures for 20 ms before it returns, ROCm SMI's
 * rsmi_dev_pci_throughput_get sleeps up to 1 s in the kernel.  So such a
 * backend reads its library on poller threads, publishes each value in a
 * relaxed atomic, and its sample hook only copies those.  The poller is
 * internal (kfm__poller_*): backends embed one in their session state.
 *
 * Use: kfm__poller_init once, kfm__poller_start once per thread (all share
 * one stop flag), in each thread loop on !kfm__poller_wait_ms(p, period),
 * kfm__poller_stop to stop and join them all (after which start may be
 * called again), and kfm__poller_destroy last.  The stop flag is read
 * under the poller's mutex, never on a hot path: a few times per poll
 * round.
 */
#ifndef KFM_POLLER_H
#define KFM_POLLER_H

#include <pthread.h>

/* Threads one poller runs; backends use two (fast metrics and PCIe). */
#define KFM__POLLER_MAX_THREADS 4

struct kfm__poller {
  pthread_mutex_t lock;
  pthread_cond_t cv; /* on CLOCK_MONOTONIC: a wall clock step neither ends nor stretches a wait */
  int stop;          /* under lock */
  int nthreads;      /* started and not yet joined; touched by the owner only */
  pthread_t thr[KFM__POLLER_MAX_THREADS];
};

/* 0, or KFM_ETHREAD if the mutex or condition variable cannot be made. */
int kfm__poller_init(struct kfm__poller *p);
/* Starts a thread running fn(arg); 0, KFM_ETHREAD if pthread_create fails,
 * KFM_EFULL if KFM__POLLER_MAX_THREADS already run. */
int kfm__poller_start(struct kfm__poller *p, void *(*fn)(void *), void *arg);
/* Waits ms milliseconds, or less if stop comes; 1 when stopping, else 0. */
int kfm__poller_wait_ms(struct kfm__poller *p, unsigned ms);
/* 1 when stopping, without waiting: for loops over slow reads. */
int kfm__poller_stopping(struct kfm__poller *p);
/* Sets stop, wakes every wait, joins every thread (as long as the read
 * under way in each takes), then clears stop so start may be used again. */
void kfm__poller_stop(struct kfm__poller *p);
/* Stops (if threads run) and frees the mutex and condition variable. */
void kfm__poller_destroy(struct kfm__poller *p);

#endif /* KFM_POLLER_H */
