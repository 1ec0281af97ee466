/*
 * session.c - the hot path (kfm_enter/kfm_exit) and the session lifecycle
 * (create, start, stop, restart, destroy).  The rest of a session lives
 * next to it: thread slots, TLS and fork handlers in thread.c, aggregates
 * and edges in aggregate.c, the trace rings' consumer in trace.c, opening
 * the backends in session_backends.c, the sampler in sampler.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

static inline struct kfm__thread *thread_get(kfm_session_t *s, int *rc) {
  if (KFM__LIKELY(kfm__tls_cache.s == s && kfm__tls_cache.uid == s->uid)) {
    return kfm__tls_cache.t;
  }
  return kfm__thread_attach(s, rc);
}


/* ---- the hot path ------------------------------------------------------ */

static inline void read_metrics(const kfm_session_t *s, struct kfm__thread *t, uint64_t *out) {
  for (unsigned i = 0; i < s->nbackends; i++) {
    const struct kfm__backend_use *u = &s->be[i];
    if (u->n_t) {
      u->ops->read(u->state, t->bstate[i], out + u->t_off);
    }
  }
}

static inline uint64_t max3(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t m = a > b ? a : b;
  return m > c ? m : c;
}

static int enter_slow_error(kfm_session_t *s, kfm_node_id_t id) {
  if (atomic_load(&s->state) == KFM__FORKED) {
    return 0; /* inert copy in a forked child */
  }
  if (atomic_load(&s->state) != KFM__RUNNING) {
    return kfm__err(s, KFM_ESTATE, "enter(%u): session is %s", id,
                    atomic_load(&s->state) == KFM__CREATED ? "not started" : "stopped");
  }
  if (id >= atomic_load(&s->nnodes)) {
    return kfm__err(s, KFM_ENONODE, "enter: unknown node id %u (%u nodes registered)", id,
                    atomic_load(&s->nnodes));
  }
  return kfm__err(s, KFM_EDEPTH, "enter(%u '%s'): node stack deeper than %d", id, s->names[id],
                  KFM_STACK_MAX);
}

int kfm_enter(kfm_session_t *s, kfm_node_id_t id) {
  if (KFM__UNLIKELY(s == NULL)) {
    return KFM_EINVAL;
  }
  if (KFM__UNLIKELY(KFM__LD(s->state) != KFM__RUNNING ||
                    id >= atomic_load_explicit(&s->nnodes, memory_order_relaxed))) {
    return enter_slow_error(s, id);
  }
  int rc = 0;
  struct kfm__thread *t = thread_get(s, &rc);
  if (KFM__UNLIKELY(t == NULL)) {
    return rc; /* KFM_EFULL, or KFM_ENOMEM */
  }
  /* busy, then the state again: a restart that saw busy clear knows this
   * call will see the session stopped (session_busy_thread). */
  KFM__ST(t->busy, 1);
  atomic_signal_fence(memory_order_seq_cst);
  int top = t->top;
  if (KFM__UNLIKELY(top >= KFM_STACK_MAX || KFM__LD(s->state) != KFM__RUNNING)) {
    atomic_store_explicit(&t->busy, 0, memory_order_release);
    return enter_slow_error(s, id);
  }
  struct kfm__frame *f = &t->stack[top];
  f->node = id;
  f->last_child = KFM__NONE;
  f->child = 0;
  unsigned nm = s->nm;
  uint64_t *v = t->vals + (size_t)top * nm;
  if (nm) {
    read_metrics(s, t, v);
    memset(t->cvals + (size_t)top * nm, 0, nm * sizeof(int64_t));
    if (s->rss_index >= 0) {
      uint64_t r = v[s->rss_index];
      uint64_t p = atomic_exchange_explicit(&t->peak_rss, 0, memory_order_relaxed);
      if (top > 0) {
        f[-1].peak = max3(f[-1].peak, p, r);
      }
      f->peak = r;
    }
  }
  for (unsigned i = 0; i < s->nhook_enter; i++) {
    const struct kfm__backend_use *u = &s->be[s->hook_enter[i]];
    u->ops->enter(u->state, t->bstate[s->hook_enter[i]], id);
  }
  if (KFM__UNLIKELY(s->smp.track_cpu && t->rseq_cpu == NULL)) {
    KFM__ST(t->cpu, sched_getcpu());
  }
  KFM__ST(t->ids[top], id);
  atomic_store_explicit(&t->depth, top + 1, memory_order_release);
  KFM__ST(t->current, id);
  t->top = top + 1;
  /* Read last so that reading the metrics is not charged to the node. */
  f->t0 = kfm__now();
  if (s->trace) {
    kfm__ring_push(&t->ring, f->t0, id, t->index, KFM_EVENT_ENTER, v, nm);
  }
  atomic_store_explicit(&t->busy, 0, memory_order_release);
  return 0;
}

static int exit_error(kfm_session_t *s, struct kfm__thread *t, kfm_node_id_t id) {
  atomic_store_explicit(&t->busy, 0, memory_order_release);
  if (KFM__LD(s->state) == KFM__FORKED) {
    return 0; /* inert copy in a forked child */
  }
  KFM__ST(t->unbalanced, KFM__LD(t->unbalanced) + 1);
  if (KFM__LD(s->state) != KFM__RUNNING) {
    return kfm__err(s, KFM_ESTATE, "exit(%u): session is not running", id);
  }
  if (id >= atomic_load(&s->nnodes)) {
    return kfm__err(s, KFM_ENONODE, "exit: unknown node id %u (%u nodes registered)", id,
                    atomic_load(&s->nnodes));
  }
  for (int i = t->top - 1; i >= 0; i--) {
    if (t->stack[i].node == id) {
      uint32_t inner = t->stack[t->top - 1].node;
      return kfm__err(s, KFM_EORDER,
                      "exit('%s') out of order: innermost open node on this thread is '%s' "
                      "(nothing was popped)",
                      s->names[id], s->names[inner]);
    }
  }
  return kfm__err(s, KFM_ENOTENTERED, "exit('%s') without a matching enter on this thread",
                  s->names[id]);
}

int kfm_exit(kfm_session_t *s, kfm_node_id_t id) {
  uint64_t t1 = kfm__now();
  if (KFM__UNLIKELY(s == NULL)) {
    return KFM_EINVAL;
  }
  int rc = 0;
  struct kfm__thread *t = thread_get(s, &rc);
  if (KFM__UNLIKELY(t == NULL)) {
    return rc; /* KFM_EFULL, or KFM_ENOMEM */
  }
  KFM__ST(t->busy, 1);
  atomic_signal_fence(memory_order_seq_cst);
  int top = t->top - 1;
  if (KFM__UNLIKELY(top < 0 || t->stack[top].node != id || KFM__LD(s->state) != KFM__RUNNING)) {
    return exit_error(s, t, id);
  }
  struct kfm__frame *f = &t->stack[top];
  uint64_t dt = t1 - f->t0;
  for (unsigned i = 0; i < s->nhook_exit; i++) {
    const struct kfm__backend_use *u = &s->be[s->hook_exit[i]];
    u->ops->exit(u->state, t->bstate[s->hook_exit[i]], id);
  }
  struct kfm__agg *blk = atomic_load_explicit(&t->blocks[id / KFM__BLOCK_NODES],
                                              memory_order_relaxed);
  if (KFM__UNLIKELY(blk == NULL)) {
    /* Once per thread per 16 node ids: the only allocation on this path. */
    blk = kfm__block_new(s);
    if (blk == NULL) {
      atomic_store_explicit(&t->busy, 0, memory_order_release);
      return kfm__err(s, KFM_ENOMEM, "out of memory for node aggregates");
    }
    atomic_store_explicit(&t->blocks[id / KFM__BLOCK_NODES], blk, memory_order_release);
    if (id / KFM__BLOCK_NODES >= KFM__LD(t->blocks_hi)) {
      KFM__ST(t->blocks_hi, id / KFM__BLOCK_NODES + 1);
    }
  }
  struct kfm__agg *a = kfm__agg_at(s, blk, id);
  KFM__ST(a->count, KFM__LD(a->count) + 1);
  KFM__ST(a->total, KFM__LD(a->total) + dt);
  KFM__ST(a->excl, KFM__LD(a->excl) + (dt - f->child));
  if (dt < KFM__LD(a->min)) {
    KFM__ST(a->min, dt);
  }
  if (dt > KFM__LD(a->max)) {
    KFM__ST(a->max, dt);
  }
  KFM__ST(a->sumsq, KFM__LD(a->sumsq) + (double)dt * (double)dt);
  unsigned hb = kfm__hist_bucket(dt);
  KFM__ST(a->hist[hb], KFM__LD(a->hist[hb]) + 1);

  unsigned nm = s->nm;
  uint64_t end[KFM__MAX_METRICS];
  if (nm) {
    read_metrics(s, t, end);
    const uint64_t *st = t->vals + (size_t)top * nm;
    const int64_t *ch = t->cvals + (size_t)top * nm;
    int64_t *pch = top > 0 ? t->cvals + (size_t)(top - 1) * nm : NULL;
    for (unsigned m = 0; m < nm; m++) {
      int64_t d = (int64_t)(end[m] - st[m]);
      KFM__ST(a->metrics[m], KFM__LD(a->metrics[m]) + d);
      KFM__ST(a->metrics[nm + m], KFM__LD(a->metrics[nm + m]) + (d - ch[m]));
      if (pch) {
        pch[m] += d;
      }
    }
    if (s->rss_index >= 0) {
      uint64_t p = atomic_exchange_explicit(&t->peak_rss, 0, memory_order_relaxed);
      uint64_t peak = max3(f->peak, p, end[s->rss_index]);
      if (peak > KFM__LD(a->peak_rss)) {
        KFM__ST(a->peak_rss, peak);
      }
      if (top > 0 && peak > f[-1].peak) {
        f[-1].peak = peak;
      }
    }
  }

  uint32_t parent = top > 0 ? f[-1].node : KFM_NODE_ROOT;
  uint32_t *last = top > 0 ? &f[-1].last_child : &t->last_root;
  kfm__edges_add(&t->nested, (uint64_t)parent << 32 | id, 1);
  if (*last != KFM__NONE) {
    kfm__edges_add(&t->follows, (uint64_t)*last << 32 | id, 1);
  }
  *last = id;
  if (top > 0) {
    f[-1].child += dt;
  }
  t->top = top;
  atomic_store_explicit(&t->depth, top, memory_order_release);
  KFM__ST(t->current, top > 0 ? f[-1].node : KFM__NONE);
  if (s->trace) {
    kfm__ring_push(&t->ring, t1, id, t->index, KFM_EVENT_EXIT, end, nm);
  }
  atomic_store_explicit(&t->busy, 0, memory_order_release);
  return 0;
}

/* ---- session lifecycle ------------------------------------------------- */

static void session_free(kfm_session_t *s) {
  if (s == NULL) {
    return;
  }
  kfm__sampler_quit(s);
  /* A forked child's copy calls no backend: its libraries' threads and
   * handles belong to the parent. */
  int forked = atomic_load(&s->state) == KFM__FORKED;
  uint32_t n = atomic_load(&s->nslots);
  for (uint32_t i = 0; i < n; i++) {
    struct kfm__thread *t = s->slots[i];
    if (!forked && atomic_load(&t->state) == KFM__SLOT_LIVE) {
      for (unsigned b = 0; b < s->nbackends; b++) {
        kfm__backend_thread_close(s->be[b].ops, s->be[b].state, t->bstate[b]);
      }
    }
    kfm__thread_free(s, t);
  }
  free(s->slots);
  for (unsigned b = 0; b < s->nbackends; b++) {
    if (!forked) {
      kfm__backend_close(s->be[b].ops, s->be[b].state);
    }
    free(s->be[b].state);
  }
  if (s->retired) {
    for (uint32_t b = 0; b < s->retired_hi; b++) {
      free(s->retired[b]);
    }
  }
  free(s->retired);
  kfm__edges_free(&s->rnested);
  kfm__edges_free(&s->rfollows);
  kfm__registry_free(s);
  kfm__sampler_free(s);
  free(s->events);
  pthread_mutex_destroy(&s->lock);
  pthread_mutex_destroy(&s->drain_lock);
  free(s);
}

static int session_alloc(kfm_session_t *s) {
  kfm_config_t *c = &s->cfg;
  s->node_cap = c->max_nodes + 1; /* + the reserved "(other)" (registry.c) */
  s->nblocks = (s->node_cap + KFM__BLOCK_NODES - 1) / KFM__BLOCK_NODES;
  size_t sz = sizeof(struct kfm__agg) + 2 * s->nm * sizeof(int64_t);
  s->agg_size = (sz + 63) & ~(size_t)63;
  s->slots = calloc(c->max_threads, sizeof *s->slots);
  s->retired = calloc(s->nblocks, sizeof *s->retired);
  if (!s->slots || !s->retired || kfm__registry_init(s) != 0 ||
      kfm__edges_init(&s->rnested, 16384) != 0 || kfm__edges_init(&s->rfollows, 16384) != 0) {
    return KFM_ENOMEM;
  }
  if (kfm__sampler_alloc(s) != 0) {
    return KFM_ENOMEM;
  }
  if (s->trace) {
    s->events = calloc((size_t)c->trace_events * (2 + s->nm), sizeof(uint64_t));
    if (s->events == NULL) {
      return KFM_ENOMEM;
    }
  }
  return 0;
}

int kfm_session_create(kfm_session_t **out, const kfm_config_t *cfg) {
  if (out == NULL) {
    return kfm__create_err(KFM_EINVAL, "out is NULL");
  }
  *out = NULL;
  kfm__clock_init();
  kfm__atfork_register();
  kfm_session_t *s = calloc(1, sizeof *s);
  if (s == NULL) {
    return kfm__create_err(KFM_ENOMEM, "out of memory");
  }
  pthread_mutex_init(&s->lock, NULL);
  pthread_mutex_init(&s->drain_lock, NULL);
  kfm__sampler_init(s);
  s->rss_index = -1;
  s->srss_index = -1;
  if (cfg) {
    s->cfg = *cfg;
  } else {
    kfm_config_init(&s->cfg);
  }
  char err[400];
  int rc = kfm__config_validate(&s->cfg, err, sizeof err);
  if (rc) {
    session_free(s);
    return kfm__create_err(rc, "%s", err);
  }
  const char *env = getenv("KFM_CONFIG");
  if (env && *env) {
    rc = kfm_config_parse(&s->cfg, env, err, sizeof err);
    if (rc) {
      session_free(s);
      return kfm__create_err(rc, "KFM_CONFIG: %s", err);
    }
  }
  kfm_config_t *c = &s->cfg;
  if (c->output[0]) {
    /* Patterns (%r %p %h %j) are filled in once, here: the name is the
     * creating process's, so a rank's file never depends on when it stops. */
    char expanded[sizeof c->output];
    rc = kfm_output_expand(c->output, expanded, sizeof expanded);
    if (rc) {
      char bad[sizeof c->output];
      memcpy(bad, c->output, sizeof bad);
      session_free(s);
      if (rc == KFM_ERANGE) {
        return kfm__create_err(KFM_EBADVALUE,
                               "output: '%s' is longer than %zu bytes once its patterns are "
                               "filled in",
                               bad, sizeof bad - 1);
      }
      return kfm__create_err(KFM_EBADVALUE,
                             "output: '%s' has an unknown pattern (accepted: %%r rank, %%p pid, "
                             "%%h host, %%j job id, %%%% a '%%')",
                             bad);
    }
    memcpy(c->output, expanded, sizeof expanded);
  }
  if (!c->max_nodes) {
    /* Every array indexed by node id is calloc'd, and past 128 kB calloc
     * maps fresh zero pages: only ids in use commit memory, so a large
     * default costs nothing until a graph needs it. */
    c->max_nodes = 65536;
  }
  if (!c->max_threads) {
    c->max_threads = 256;
  }
  if (!c->samples) {
    c->samples = 65536;
  }
  if (!c->trace_ring) {
    c->trace_ring = 16384;
  }
  if (!c->trace_events) {
    /* 256 Ki events: ~27 MB at DETAILED (106-byte records), committed only as used. */
    c->trace_events = 1u << 18;
  }
  if (!c->trace_max_events) {
    /* A Chrome trace of ~130 MB at BASIC, ~450 MB at DETAILED (spans carry
     * metric args): about the most a browser-based viewer loads. */
    c->trace_max_events = 1000000;
  }
  static const double default_rate[] = {-1, 100, 100, 1000};
  s->rate_hz = c->rate_hz == 0 ? default_rate[c->level] : c->rate_hz;
  if (s->rate_hz < 0) {
    s->rate_hz = 0;
  }
  s->trace = c->trace < 0 ? c->level >= KFM_LEVEL_DETAILED : c->trace;
  if (c->proc_reads == KFM_PROC_READS_SAMPLED && s->rate_hz <= 0) {
    session_free(s);
    return kfm__create_err(KFM_EBADVALUE, "proc_reads=sampled needs the sampler, but rate is off "
                                          "(set a rate, or proc_reads=exact)");
  }
  rc = kfm__session_open_backends(s);
  if (rc == KFM_EBADVALUE) {
    kfm__create_err(rc, "%s", s->errmsg);
    session_free(s);
    return rc;
  }
  if (rc == 0) {
    rc = session_alloc(s);
  }
  if (rc) {
    session_free(s);
    return kfm__create_err(rc, "out of memory allocating the session's storage");
  }
  if (c->output[0]) {
    kfm__flush_at_exit();
  }
  if (c->flush_signals && kfm__flush_on_signals() != 0) {
    session_free(s);
    return kfm__create_err(KFM_ETHREAD, "flush_signals=on: cannot start the flush thread");
  }
  if (kfm__live_add(s) != 0) {
    session_free(s);
    return kfm__create_err(KFM_ENOMEM, "out of memory");
  }
  *out = s;
  return 0;
}

int kfm_session_create_str(kfm_session_t **out, const char *config) {
  kfm_config_t cfg;
  kfm_config_init(&cfg);
  char err[400];
  int rc = kfm_config_parse(&cfg, config, err, sizeof err);
  if (rc) {
    if (out) {
      *out = NULL;
    }
    return kfm__create_err(rc, "%s", err);
  }
  return kfm_session_create(out, &cfg);
}

kfm_level_t kfm_session_level(const kfm_session_t *s) {
  return s ? s->cfg.level : KFM_LEVEL_BASIC;
}

static int session_go(kfm_session_t *s, int from);

int kfm_session_start(kfm_session_t *s) {
  if (s == NULL) {
    return KFM_EINVAL;
  }
  if (atomic_load(&s->state) == KFM__FORKED) {
    return 0;
  }
  int expect = KFM__CREATED;
  if (!atomic_compare_exchange_strong(&s->state, &expect, KFM__RUNNING)) {
    return kfm__err(s, KFM_ESTATE, "start: session is already %s",
                    expect == KFM__RUNNING ? "running"
                                           : "stopped (kfm_session_restart runs it again)");
  }
  return session_go(s, KFM__CREATED);
}

/* Clears one run's results.  Caller holds s->lock, the session is stopped
 * and, by contract, no thread is inside a kfm call on it: the owners of
 * the slots are quiet, so their private fields may be written here. */
static void session_clear(kfm_session_t *s) {
  uint32_t nslots = atomic_load(&s->nslots);
  uint32_t live = 0;
  for (uint32_t i = 0; i < nslots; i++) {
    struct kfm__thread *t = s->slots[i];
    for (uint32_t b = 0; b < KFM__LD(t->blocks_hi); b++) {
      struct kfm__agg *blk = atomic_load(&t->blocks[b]);
      if (blk) {
        kfm__agg_block_clear(s, blk); /* kept: the next run's exits allocate nothing */
      }
    }
    kfm__edges_reset(&t->nested);
    kfm__edges_reset(&t->follows);
    KFM__ST(t->ring.dropped, 0);
    KFM__ST(t->unbalanced, 0);
    kfm__thread_stack_reset(t);
    live += atomic_load(&t->state) == KFM__SLOT_LIVE;
  }
  s->threads_seen = live;
  for (uint32_t b = 0; b < s->retired_hi; b++) {
    free(s->retired[b]);
    s->retired[b] = NULL;
  }
  s->retired_hi = 0;
  kfm__edges_reset(&s->rnested);
  kfm__edges_reset(&s->rfollows);
  s->retired_unbalanced = 0;
  s->truncated = NULL;

  kfm__sampler_clear(s);
  pthread_mutex_lock(&s->drain_lock);
  s->nevents = 0;
  s->events_dropped = 0;
  pthread_mutex_unlock(&s->drain_lock);
  for (unsigned i = 0; i < s->nbackends; i++) {
    kfm__backend_restart(s->be[i].ops, s->be[i].state);
  }
}

/* The tid of a thread other than the caller inside kfm_enter/kfm_exit on
 * s, or 0.  Caller holds s->lock and s is stopped.  A transition sets busy
 * and then reads the state; here the stop's state store precedes the busy
 * loads.  That store-load pair needs a full barrier on both sides, which
 * the hot path cannot afford (~20 cycles), so this side pays for both with
 * membarrier: every thread of the process running now executes a barrier
 * (0.1 us when the others sleep, ~13 us when one runs on another CPU). */
static pid_t session_busy_thread(kfm_session_t *s) {
  static _Atomic int mb_state; /* 0 unknown, 1 registered, -1 unavailable: a process property */
  int mb = atomic_load(&mb_state);
  if (mb == 0) {
    mb = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 ? 1 : -1;
    atomic_store(&mb_state, mb);
  }
  struct kfm__thread *self =
      kfm__tls_cache.s == s && kfm__tls_cache.uid == s->uid ? kfm__tls_cache.t : NULL;
  uint32_t n = atomic_load(&s->nslots);
  int others = 0;
  for (uint32_t i = 0; i < n; i++) {
    others |= s->slots[i] != self && atomic_load(&s->slots[i]->state) == KFM__SLOT_LIVE;
  }
  if (!others) {
    return 0;
  }
  if (mb > 0) {
    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
  } else {
    atomic_exchange(&s->state, KFM__STOPPED); /* a full barrier on this side at least */
  }
  for (uint32_t i = 0; i < n; i++) {
    struct kfm__thread *t = s->slots[i];
    if (t != self && atomic_load(&t->state) == KFM__SLOT_LIVE &&
        atomic_load_explicit(&t->busy, memory_order_acquire)) {
      return t->tid;
    }
  }
  return 0;
}

int kfm_session_restart(kfm_session_t *s) {
  if (s == NULL) {
    return KFM_EINVAL;
  }
  int st = atomic_load(&s->state);
  if (st == KFM__FORKED) {
    return 0;
  }
  if (st != KFM__STOPPED) {
    return kfm__err(s, KFM_ESTATE, "restart: session is %s (stop it first)",
                    st == KFM__CREATED ? "not started" : "running");
  }
  kfm__sampler_wait(s);
  pthread_mutex_lock(&s->lock);
  pid_t busy = session_busy_thread(s);
  if (busy) {
    pthread_mutex_unlock(&s->lock);
    return kfm__err(s, KFM_EBUSY,
                    "restart: thread %d is inside kfm_enter/kfm_exit on this session (a restart "
                    "needs every other thread out of kfm calls; the session stays stopped)",
                    (int)busy);
  }
  session_clear(s);
  atomic_store(&s->state, KFM__RUNNING);
  pthread_mutex_unlock(&s->lock);
  return session_go(s, KFM__STOPPED);
}

/* The state is already RUNNING; from is where to fall back on failure. */
static int session_go(kfm_session_t *s, int from) {
  kfm__clock_pair(&s->t_start, &s->ns_start);
  for (unsigned i = 0; i < s->nbackends; i++) {
    kfm__backend_start(s->be[i].ops, s->be[i].state, s->ns_start);
  }
  if (s->rate_hz > 0) {
    /* Sample 0, taken here before the sampler thread runs: the state at
     * start, and sampled values (a backend's cache) current from the first
     * transition on rather than from session creation. */
    kfm__sample_once(s, kfm__now());
  }
  int rc = kfm__sampler_start(s);
  if (rc) {
    atomic_store(&s->state, from);
    return rc; /* the message, with the system's reason, is the sampler's */
  }
  return 0;
}

/* The files output= asks for (output_format).  With both, the JSON and the
 * trace come from one report, so they describe the same run; a failure of
 * one does not stop the other, and the message names each that failed. */
static int session_write_output(kfm_session_t *s) {
  const char *out = s->cfg.output;
  int fmt = s->cfg.output_format;
  if (fmt == KFM_OUTPUT_JSON) {
    return kfm_session_export(s, out);
  }
  if (fmt == KFM_OUTPUT_TRACE) {
    return kfm_session_export_trace(s, out);
  }
  char trace[sizeof s->cfg.output + 16];
  if (kfm__trace_path(out, trace, sizeof trace) != 0) {
    return kfm__err(s, KFM_EINVAL, "output_format=both: no room for the trace's name next to '%s'",
                    out);
  }
  kfm_report_t *r;
  int rc = kfm_session_report(s, &r);
  if (rc) {
    return rc;
  }
  char first[sizeof s->errmsg];
  int rc_json = kfm__export_json(s, r, out);
  if (rc_json) {
    snprintf(first, sizeof first, "%s", kfm_errmsg(s));
  }
  int rc_trace = kfm__export_trace(s, r, trace);
  kfm_report_free(r);
  if (rc_json && rc_trace) {
    char second[sizeof s->errmsg];
    snprintf(second, sizeof second, "%s", kfm_errmsg(s));
    return kfm__err(s, rc_json, "%s; %s", first, second);
  }
  return rc_json ? rc_json : rc_trace;
}

int kfm_session_stop(kfm_session_t *s) {
  if (s == NULL) {
    return KFM_EINVAL;
  }
  if (atomic_load(&s->state) == KFM__FORKED) {
    return 0; /* the output file is the parent's */
  }
  int expect = KFM__RUNNING;
  if (!atomic_compare_exchange_strong(&s->state, &expect, KFM__STOPPED)) {
    return kfm__err(s, KFM_ESTATE, "stop: session is %s",
                    expect == KFM__CREATED ? "not started" : "already stopped");
  }
  kfm__sampler_stop(s);
  for (unsigned i = 0; i < s->nbackends; i++) {
    kfm__backend_flush(s->be[i].ops, s->be[i].state);
  }
  kfm__clock_pair(&s->t_stop, &s->ns_stop);
  kfm__drain_all(s, 1);
  if (s->cfg.output[0]) {
    return session_write_output(s);
  }
  return 0;
}

/* The process's default session (kfm_session_default): one per process by
 * definition, as the preload library that sets it is. */
static _Atomic(kfm_session_t *) session_default;

kfm_session_t *kfm_session_default(void) {
  return atomic_load(&session_default);
}

void kfm_session_set_default(kfm_session_t *s) {
  atomic_store(&session_default, s);
}

void kfm_session_destroy(kfm_session_t *s) {
  if (s == NULL) {
    return;
  }
  kfm_session_t *expect = s;
  atomic_compare_exchange_strong(&session_default, &expect, NULL);
  if (atomic_load(&s->state) == KFM__RUNNING) {
    /* The output of a run whose nodes are still open is marked as such (a
     * Python program's sessions end this way at interpreter exit). */
    uint32_t n = atomic_load(&s->nslots);
    for (uint32_t i = 0; i < n && s->truncated == NULL; i++) {
      if (atomic_load(&s->slots[i]->state) == KFM__SLOT_LIVE &&
          atomic_load(&s->slots[i]->depth) > 0) {
        s->truncated = "kfm_session_destroy with nodes still open";
      }
    }
    kfm_session_stop(s);
  }
  kfm__live_remove(s);
  session_free(s);
}

double kfm__ns_per_tick(const kfm_session_t *s) {
  if (!kfm__clock_use_tsc) {
    return 1.0;
  }
  uint64_t t1 = s->t_stop, n1 = s->ns_stop;
  if (atomic_load(&s->state) == KFM__RUNNING) {
    kfm__clock_pair(&t1, &n1);
  }
  /* Over 100 ms of session the session's own span beats the 2 ms start-up
   * calibration; below it, keep the calibration. */
  if (atomic_load(&s->state) != KFM__CREATED && n1 > s->ns_start + 100000000u &&
      t1 > s->t_start) {
    return (double)(n1 - s->ns_start) / (double)(t1 - s->t_start);
  }
  return 1.0 / kfm__clock_ticks_per_ns;
}
