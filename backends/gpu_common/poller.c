/*
 * poller.c - background poller threads with a stop flag that wakes them at
 * once (see poller.h for why backends need them).
 *
 * The stop flag lives under a mutex with a condition variable rather than
 * in an atomic, so that a thread sleeping in kfm__poller_wait_ms wakes the
 * moment stop is set instead of at the end of its period (ROCm SMI's PCIe
 * poller sleeps 5 s between rounds): a session's close must not wait that.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_condattr_setclock */
#endif

#include "poller.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "kfm/kfm.h"

int kfm__poller_init(struct kfm__poller *p) {
  pthread_condattr_t ca;
  memset(p, 0, sizeof *p);
  if (pthread_mutex_init(&p->lock, NULL) != 0) {
    return KFM_ETHREAD;
  }
  if (pthread_condattr_init(&ca) != 0) {
    pthread_mutex_destroy(&p->lock);
    return KFM_ETHREAD;
  }
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(&p->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (rc != 0) {
    pthread_mutex_destroy(&p->lock);
    return KFM_ETHREAD;
  }
  return 0;
}

int kfm__poller_start(struct kfm__poller *p, void *(*fn)(void *), void *arg) {
  if (p->nthreads == KFM__POLLER_MAX_THREADS) {
    return KFM_EFULL;
  }
  if (pthread_create(&p->thr[p->nthreads], NULL, fn, arg) != 0) {
    return KFM_ETHREAD;
  }
  p->nthreads++;
  return 0;
}

int kfm__poller_wait_ms(struct kfm__poller *p, unsigned ms) {
  struct timespec ts;
  int stop;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&p->lock);
  /* Spurious wake-ups loop back; only the deadline or stop end the wait. */
  while (!p->stop && pthread_cond_timedwait(&p->cv, &p->lock, &ts) != ETIMEDOUT) {
  }
  stop = p->stop;
  pthread_mutex_unlock(&p->lock);
  return stop;
}

int kfm__poller_stopping(struct kfm__poller *p) {
  int stop;
  pthread_mutex_lock(&p->lock);
  stop = p->stop;
  pthread_mutex_unlock(&p->lock);
  return stop;
}

void kfm__poller_stop(struct kfm__poller *p) {
  pthread_mutex_lock(&p->lock);
  p->stop = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->lock);
  for (int i = 0; i < p->nthreads; i++) {
    pthread_join(p->thr[i], NULL);
  }
  p->nthreads = 0;
  /* Every thread has returned: nothing reads stop until the next start. */
  pthread_mutex_lock(&p->lock);
  p->stop = 0;
  pthread_mutex_unlock(&p->lock);
}

void kfm__poller_destroy(struct kfm__poller *p) {
  if (p->nthreads) {
    kfm__poller_stop(p);
  }
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->lock);
}
