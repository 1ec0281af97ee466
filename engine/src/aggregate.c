/*
 * aggregate.c - per-node aggregates (count, times, histogram, metric deltas)
 * and the (from, to) edge tables: creation, clearing, merging.  The hot path
 * writes them (session.c); a thread's exit folds them into the session
 * (thread.c); reports merge them (report.c); a restart clears them.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* An aggregate with nothing recorded. */
void kfm__agg_clear(const kfm_session_t *s, struct kfm__agg *a) {
  memset(a, 0, s->agg_size);
  atomic_init(&a->min, UINT64_MAX);
}

struct kfm__agg *kfm__block_new(const kfm_session_t *s) {
  struct kfm__agg *b = aligned_alloc(64, KFM__BLOCK_NODES * s->agg_size);
  if (b == NULL) {
    return NULL;
  }
  for (uint32_t i = 0; i < KFM__BLOCK_NODES; i++) {
    kfm__agg_clear(s, kfm__agg_at(s, b, i));
  }
  return b;
}

void kfm__agg_merge(const kfm_session_t *s, struct kfm__agg *d, const struct kfm__agg *a) {
  uint64_t n = KFM__LD(a->count);
  /* Nothing was recorded (every field is only written at an exit): most
   * aggregates of a block are unused, and the histogram alone is 384 words. */
  if (n == 0) {
    return;
  }
  KFM__ST(d->count, KFM__LD(d->count) + n);
  KFM__ST(d->total, KFM__LD(d->total) + KFM__LD(a->total));
  KFM__ST(d->excl, KFM__LD(d->excl) + KFM__LD(a->excl));
  KFM__ST(d->sumsq, KFM__LD(d->sumsq) + KFM__LD(a->sumsq));
  if (KFM__LD(a->min) < KFM__LD(d->min)) {
    KFM__ST(d->min, KFM__LD(a->min));
  }
  if (KFM__LD(a->max) > KFM__LD(d->max)) {
    KFM__ST(d->max, KFM__LD(a->max));
  }
  if (KFM__LD(a->peak_rss) > KFM__LD(d->peak_rss)) {
    KFM__ST(d->peak_rss, KFM__LD(a->peak_rss));
  }
  /* Every duration recorded lies in [min, max], and the bucket grows with
   * the duration: the buckets outside are 0 (a node's calls fill a few of
   * the 384). */
  unsigned hi = kfm__hist_bucket(KFM__LD(a->max));
  for (unsigned i = kfm__hist_bucket(KFM__LD(a->min)); i <= hi; i++) {
    KFM__ST(d->hist[i], KFM__LD(d->hist[i]) + KFM__LD(a->hist[i]));
  }
  for (unsigned i = 0; i < 2 * s->nm; i++) {
    KFM__ST(d->metrics[i], KFM__LD(d->metrics[i]) + KFM__LD(a->metrics[i]));
  }
}

int kfm__edges_init(struct kfm__edges *e, uint32_t capacity) {
  e->slot = malloc(capacity * sizeof *e->slot);
  e->used = malloc(capacity * sizeof *e->used);
  if (e->slot == NULL || e->used == NULL) {
    free(e->slot);
    free(e->used);
    e->slot = NULL;
    e->used = NULL;
    return KFM_ENOMEM;
  }
  e->mask = capacity - 1;
  atomic_init(&e->nkeys, 0);
  atomic_init(&e->dropped, 0);
  for (uint32_t i = 0; i < capacity; i++) {
    atomic_init(&e->slot[i].key, KFM__EDGE_EMPTY);
    atomic_init(&e->slot[i].count, 0);
  }
  return 0;
}

void kfm__edges_free(struct kfm__edges *e) {
  free(e->slot);
  free(e->used);
  e->slot = NULL;
  e->used = NULL;
}

/* Single writer per table.  Bounded probing keeps the hot path bounded: a
 * table crowded enough to need more than 32 probes counts a drop instead. */
void kfm__edges_add(struct kfm__edges *e, uint64_t key, uint64_t n) {
  uint32_t i = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & e->mask;
  for (unsigned p = 0; p < 32 && p <= e->mask; p++, i = (i + 1) & e->mask) {
    uint64_t k = KFM__LD(e->slot[i].key);
    if (k == key) {
      KFM__ST(e->slot[i].count, KFM__LD(e->slot[i].count) + n);
      return;
    }
    if (k == KFM__EDGE_EMPTY) {
      KFM__ST(e->slot[i].count, n);
      atomic_store_explicit(&e->slot[i].key, key, memory_order_release);
      uint32_t n = KFM__LD(e->nkeys);
      e->used[n] = i; /* n <= mask: each key takes one slot */
      /* Release: a report on another thread reads used[] below nkeys. */
      atomic_store_explicit(&e->nkeys, n + 1, memory_order_release);
      return;
    }
  }
  KFM__ST(e->dropped, KFM__LD(e->dropped) + n);
}

/* Caller: src's writer is quiet (its thread retiring, or gone). */
void kfm__edges_merge(struct kfm__edges *dst, const struct kfm__edges *src) {
  uint32_t n = KFM__LD(src->nkeys);
  for (uint32_t u = 0; u < n; u++) {
    uint32_t i = src->used[u];
    uint64_t k = atomic_load_explicit(&src->slot[i].key, memory_order_acquire);
    if (k != KFM__EDGE_EMPTY) {
      kfm__edges_add(dst, k, KFM__LD(src->slot[i].count));
    }
  }
  KFM__ST(dst->dropped, KFM__LD(dst->dropped) + KFM__LD(src->dropped));
}

void kfm__edges_reset(struct kfm__edges *e) {
  uint32_t n = KFM__LD(e->nkeys);
  for (uint32_t k = 0; k < n; k++) {
    uint32_t i = e->used[k];
    KFM__ST(e->slot[i].key, KFM__EDGE_EMPTY);
    KFM__ST(e->slot[i].count, 0);
  }
  KFM__ST(e->nkeys, 0);
  KFM__ST(e->dropped, 0);
}

/* Every field of an aggregate is written at an exit, which counts it: one
 * with count 0 is still as kfm__block_new left it (a block is 16 x ~1.6 kB).
 * Of a used one's histogram only the buckets between its min's and its
 * max's can be set: clearing those, not all 384, makes a restart cost what
 * the run recorded (a 100-node chain's: 63 us before). */
void kfm__agg_block_clear(const kfm_session_t *s, struct kfm__agg *b) {
  for (uint32_t i = 0; i < KFM__BLOCK_NODES; i++) {
    struct kfm__agg *a = kfm__agg_at(s, b, i);
    if (KFM__LD(a->count) == 0) {
      continue;
    }
    unsigned lo = kfm__hist_bucket(KFM__LD(a->min)), hi = kfm__hist_bucket(KFM__LD(a->max));
    memset(a, 0, offsetof(struct kfm__agg, hist));
    memset(&a->hist[lo], 0, (hi - lo + 1) * sizeof a->hist[0]);
    memset(a->metrics, 0, 2 * (size_t)s->nm * sizeof a->metrics[0]);
    atomic_init(&a->min, UINT64_MAX);
  }
}
