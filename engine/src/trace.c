/*
 * trace.c - the trace rings' consumer side: moving events from each thread's
 * single-producer ring into the session's storage.  The producer side
 * (kfm__ring_push, internal.h) runs on the hot path; this side runs on the
 * sampler thread, at stop, and when a thread's slot is retired.
 */
#include <string.h>

#include "internal.h"

/* Caller holds drain_lock: the rings' single consumer. */
void kfm__ring_drain(kfm_session_t *s, struct kfm__ring *r) {
  uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
  uint64_t t = KFM__LD(r->tail);
  uint64_t cap = s->cfg.trace_events;
  for (; t < h; t++) {
    if (s->nevents < cap) {
      memcpy(s->events + s->nevents * r->rec_words, r->buf + (t & r->mask) * r->rec_words,
             r->rec_words * sizeof(uint64_t));
      s->nevents++;
    } else {
      s->events_dropped++;
    }
  }
  atomic_store_explicit(&r->tail, t, memory_order_release);
}

void kfm__drain_all(kfm_session_t *s, int wait) {
  if (!s->trace) {
    return;
  }
  if (wait) {
    pthread_mutex_lock(&s->drain_lock);
  } else if (pthread_mutex_trylock(&s->drain_lock) != 0) {
    return;
  }
  uint32_t n = atomic_load_explicit(&s->nslots, memory_order_acquire);
  for (uint32_t i = 0; i < n; i++) {
    kfm__ring_drain(s, &s->slots[i]->ring);
  }
  pthread_mutex_unlock(&s->drain_lock);
}
