/*
 * sampler.c - one sampler thread per session.
 *
 * timerfd drives it because clock_nanosleep with the default 50 us timer
 * slack cannot pass ~11 kHz here (floors.md); the slack is also lowered to
 * 1 ns for this thread.  Each tick reads the sampling backends and records,
 * for every live thread slot, the innermost node it is in, from lock-free
 * per-slot atomics.  The tick itself never allocates or locks; draining the
 * trace rings afterwards uses trylock so a reader holding the drain lock
 * delays the drain, never the sample.
 */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static uint64_t sampler_cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void atomic_max_u64(_Atomic uint64_t *p, uint64_t v) {
  uint64_t cur = KFM__LD(*p);
  while (v > cur &&
         !atomic_compare_exchange_weak_explicit(p, &cur, v, memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

/*
 * Sample metrics onto the nodes innermost at this tick: a gauge's value is
 * added to each (its mean per node comes out in the report); a counter's
 * increase since the previous tick is shared equally among them.  Values a
 * backend could not measure (KFM__UNMEASURED) are skipped.
 */
static void sample_attribute(kfm_session_t *s, const uint64_t *v, uint32_t nd) {
  for (unsigned m = 0; m < s->ns; m++) {
    if (v[m] == KFM__UNMEASURED) {
      continue;
    }
    double add;
    if (s->sdef[m]->kind == KFM_METRIC_GAUGE) {
      add = (double)v[m];
    } else {
      int ok = s->smp.sprev_ok[m] && v[m] >= s->smp.sprev[m];
      add = ok && nd ? (double)(v[m] - s->smp.sprev[m]) / nd : 0;
      s->smp.sprev[m] = v[m];
      s->smp.sprev_ok[m] = 1;
      if (!ok) {
        continue;
      }
    }
    for (uint32_t k = 0; k < nd; k++) {
      size_t at = (size_t)s->smp.tick_nodes[k] * s->ns + m;
      KFM__ST(s->smp.node_ssum[at], KFM__LD(s->smp.node_ssum[at]) + add);
      KFM__ST(s->smp.node_scnt[at], KFM__LD(s->smp.node_scnt[at]) + 1);
    }
  }
}

void kfm__sample_once(kfm_session_t *s, uint64_t now) {
  uint64_t v[KFM__MAX_SMETRICS];
  for (unsigned i = 0; i < s->nbackends; i++) {
    const struct kfm__backend_use *u = &s->be[i];
    if (u->n_s) {
      u->ops->sample(u->state, v + u->s_off);
    }
  }
  uint64_t rss = s->srss_index >= 0 ? v[s->srss_index] : 0;
  uint64_t i = KFM__LD(s->smp.nsamples);
  uint32_t nslots = atomic_load_explicit(&s->nslots, memory_order_acquire);
  /* Store the sample only if it fits whole; attribution counters below are
   * bounded arrays and are kept even when storage is full. */
  int store = i < s->cfg.samples && s->smp.act_used + nslots <= s->smp.act_cap;
  uint32_t nn = s->node_cap;
  /* Dekker handshake with thread_retire: announce the tick, then look at
   * each slot's state, both seq_cst, so a retiring thread either is seen as
   * free here or waits until this tick is over before its rseq area dies. */
  atomic_store(&s->smp.in_tick, 1);
  uint32_t ndistinct = 0;
  uint64_t tick = ++s->smp.tick_id;
  for (uint32_t j = 0; j < nslots; j++) {
    struct kfm__thread *t = s->slots[j];
    if (atomic_load(&t->state) != KFM__SLOT_LIVE) {
      continue;
    }
    int32_t d = atomic_load_explicit(&t->depth, memory_order_acquire);
    uint32_t cur = KFM__LD(t->current);
    if (d <= 0 || cur >= nn) {
      t->seen_node = KFM__NONE;
      continue;
    }
    int32_t cpu = t->rseq_cpu ? (int32_t)__atomic_load_n(t->rseq_cpu, __ATOMIC_RELAXED)
                              : KFM__LD(t->cpu);
    if (cpu >= 0 && (uint32_t)cpu < s->smp.ncpus) {
      s->smp.cpu_use[cpu]++;
      if (s->smp.track_cpu) {
        _Atomic uint32_t *c = &s->smp.node_cpu[(size_t)cur * s->smp.ncpus + (uint32_t)cpu];
        KFM__ST(*c, KFM__LD(*c) + 1);
        if (t->seen_node == cur && t->seen_cpu >= 0 && t->seen_cpu != cpu) {
          KFM__ST(s->smp.node_migrations[cur], KFM__LD(s->smp.node_migrations[cur]) + 1);
        }
      }
    } else {
      cpu = -1;
    }
    t->seen_cpu = cpu;
    t->seen_node = cur;
    KFM__ST(s->smp.node_samples[cur], KFM__LD(s->smp.node_samples[cur]) + 1);
    if (s->smp.node_tick && s->smp.node_tick[cur] != tick) {
      s->smp.node_tick[cur] = tick;
      s->smp.tick_nodes[ndistinct++] = cur;
    }
    for (int32_t k = 0; k < d && k < KFM_STACK_MAX; k++) {
      uint32_t id = KFM__LD(t->ids[k]);
      if (id < nn) {
        KFM__ST(s->smp.node_samples_any[id], KFM__LD(s->smp.node_samples_any[id]) + 1);
      }
    }
    if (s->srss_index >= 0) {
      atomic_max_u64(&t->peak_rss, rss);
      if (rss > KFM__LD(s->smp.node_sample_peak[cur])) {
        KFM__ST(s->smp.node_sample_peak[cur], rss);
      }
    }
    if (store) {
      s->smp.act_thread[s->smp.act_used] = j;
      s->smp.act_node[s->smp.act_used] = cur;
      s->smp.act_cpu[s->smp.act_used] = cpu;
      s->smp.act_used++;
    }
  }
  atomic_store(&s->smp.in_tick, 0);
  if (s->smp.node_ssum) {
    sample_attribute(s, v, ndistinct);
  }
  if (!store) {
    KFM__ST(s->smp.samples_dropped, KFM__LD(s->smp.samples_dropped) + 1);
    return;
  }
  s->smp.sample_t[i] = now;
  if (s->ns) {
    memcpy(s->smp.sample_vals + i * s->ns, v, s->ns * sizeof *v);
  }
  s->smp.sample_first[i + 1] = s->smp.act_used;
  atomic_store_explicit(&s->smp.nsamples, i + 1, memory_order_release);
}

/* Binds the sampler thread, through a topology backend when one is enabled. */
static int sampler_bind(kfm_session_t *s, int cpu) {
  for (unsigned i = 0; i < s->nbackends; i++) {
    if (KFM__BACKEND_HAS(s->be[i].ops, KFM_BACKEND_ABI_2, bind_thread)) {
      return s->be[i].ops->bind_thread(s->be[i].state, cpu);
    }
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : KFM_EINVAL;
}

/*
 * Automatic placement: every half second of ticks, move the sampler to the
 * allowed CPU on which profiled threads were seen least, so its wakes steal
 * the least from them.  Nothing moves while no profiled thread was seen.
 */
static void sampler_rebind(kfm_session_t *s, const cpu_set_t *allowed) {
  uint64_t seen = 0, best = UINT64_MAX;
  int pick = -1;
  for (uint32_t c = 0; c < s->smp.ncpus; c++) {
    seen += s->smp.cpu_use[c];
    if (CPU_ISSET(c, allowed) && s->smp.cpu_use[c] < best) {
      best = s->smp.cpu_use[c];
      pick = (int)c;
    }
  }
  if (seen && pick >= 0 && pick != KFM__LD(s->smp.bound) && sampler_bind(s, pick) == 0) {
    KFM__ST(s->smp.bound, pick);
    KFM__ST(s->smp.rebinds, KFM__LD(s->smp.rebinds) + 1);
  }
  memset(s->smp.cpu_use, 0, s->smp.ncpus * sizeof *s->smp.cpu_use);
}

/* The schedule of one run: absolute deadlines from a start taken now, so
 * wake lateness is measured against the real schedule. */
static int sampler_arm(kfm_session_t *s) {
  uint64_t period = (uint64_t)llround(1e9 / s->rate_hz);
  struct itimerspec its = {
      .it_interval = {.tv_sec = (time_t)(period / 1000000000u), .tv_nsec = (long)(period % 1000000000u)},
  };
  s->smp.base = kfm__mono_ns() + period;
  its.it_value.tv_sec = (time_t)(s->smp.base / 1000000000u);
  its.it_value.tv_nsec = (long)(s->smp.base % 1000000000u);
  s->smp.base -= period;
  s->smp.timer_periodic = 1;
  return timerfd_settime(s->smp.timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Replaces the periodic schedule by one expiry now, to wake the sampler.
 * Caller holds park_lock. */
static void sampler_fire(kfm_session_t *s) {
  struct itimerspec now = {.it_value = {.tv_sec = 0, .tv_nsec = 1}};
  timerfd_settime(s->smp.timerfd, 0, &now, NULL);
  s->smp.timer_periodic = 0;
  s->smp.park_fired = 1;
}

/* One run: ticks until stop. */
static void sampler_run(kfm_session_t *s, const cpu_set_t *allowed) {
  uint64_t window = s->rate_hz >= 4 ? (uint64_t)(s->rate_hz / 2) : 2;
  uint64_t cpu0 = sampler_cpu_now();
  uint64_t period = (uint64_t)llround(1e9 / s->rate_hz);
  uint64_t base = s->smp.base;
  uint64_t ticks = 0, wakes = 0;
  /* Resumed on a schedule that kept running while parked: the first read
   * returns the expiries of the pause at once.  It only realigns the tick
   * count (no sample, no lateness, no missed ticks); the run's first
   * sample was taken by the restart itself. */
  int resync = s->smp.resync;
  for (;;) {
    uint64_t exp;
    ssize_t n = read(s->smp.timerfd, &exp, sizeof exp);
    if (atomic_load_explicit(&s->smp.stop, memory_order_acquire)) {
      break;
    }
    if (n != (ssize_t)sizeof exp) {
      if (n < 0 && errno == EINTR) {
        continue;
      }
      break;
    }
    if (resync) {
      resync = 0;
      uint64_t t = kfm__mono_ns();
      ticks = t > base ? (t - base) / period : 0;
      continue;
    }
    ticks += exp;
    if (exp > 1) {
      KFM__ST(s->smp.missed, KFM__LD(s->smp.missed) + exp - 1);
    }
    uint64_t due = base + ticks * period;
    uint64_t now_ns = kfm__mono_ns();
    uint64_t late = now_ns > due ? now_ns - due : 0;
    unsigned hb = kfm__hist_bucket(late);
    KFM__ST(s->smp.late_hist[hb], KFM__LD(s->smp.late_hist[hb]) + 1);
    kfm__sample_once(s, kfm__now());
    kfm__drain_all(s, 0);
    if (s->cfg.sampler_cpu == KFM_SAMPLER_CPU_AUTO && wakes % window == window - 1) {
      sampler_rebind(s, allowed);
    }
    /* A CPU-time read costs ~0.6 us here: refresh the figure every 64 wakes. */
    if ((++wakes & 63) == 0) {
      KFM__ST(s->smp.cpu_ns, sampler_cpu_now() - cpu0);
    }
  }
  KFM__ST(s->smp.cpu_ns, sampler_cpu_now() - cpu0);
}

static void *sampler_main(void *arg) {
  kfm_session_t *s = arg;
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  prctl(PR_SET_NAME, (unsigned long)"kfm-sampler", 0, 0, 0);
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    CPU_ZERO(&allowed);
  }
  KFM__ST(s->smp.bound, -1);
  if (s->cfg.sampler_cpu >= 0 && sampler_bind(s, s->cfg.sampler_cpu) == 0) {
    /* A CPU that does not exist leaves the sampler unpinned (reported). */
    KFM__ST(s->smp.bound, s->cfg.sampler_cpu);
  }
  for (;;) {
    sampler_run(s, &allowed);
    pthread_mutex_lock(&s->smp.park_lock);
    s->smp.parked = 1;
    pthread_cond_broadcast(&s->smp.park_cv);
    while (s->smp.park_cmd == KFM__SAMPLER_PARK) {
      pthread_cond_wait(&s->smp.park_cv, &s->smp.park_lock);
    }
    s->smp.parked = 0;
    int quit = s->smp.park_cmd == KFM__SAMPLER_QUIT;
    pthread_mutex_unlock(&s->smp.park_lock);
    if (quit) {
      break;
    }
  }
  return NULL;
}

int kfm__sampler_start(kfm_session_t *s) {
  if (s->rate_hz <= 0) {
    return 0;
  }
  if (s->smp.running) {
    /* Parked since the last stop: wake it, on the schedule that kept
     * running if nothing fired the timer (re-arming costs a
     * timerfd_settime, 10-30 us on these VMs), else on a new one. */
    kfm__sampler_wait(s);
    atomic_store(&s->smp.stop, 0);
    pthread_mutex_lock(&s->smp.park_lock);
    s->smp.resync = s->smp.timer_periodic;
    if (!s->smp.timer_periodic && sampler_arm(s) != 0) {
      int err = errno;
      pthread_mutex_unlock(&s->smp.park_lock);
      return kfm__err(s, KFM_ETHREAD, "start: cannot re-arm the sampler's timer: %s",
                      strerror(err));
    }
    s->smp.park_cmd = KFM__SAMPLER_RUN;
    pthread_cond_broadcast(&s->smp.park_cv);
    pthread_mutex_unlock(&s->smp.park_lock);
    return 0;
  }
  s->smp.timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  if (s->smp.timerfd < 0) {
    return kfm__err(s, KFM_ETHREAD, "start: cannot create the sampler's timer: %s",
                    strerror(errno));
  }
  atomic_store(&s->smp.stop, 0);
  s->smp.park_cmd = KFM__SAMPLER_RUN;
  s->smp.parked = 0;
  s->smp.resync = 0;
  /* timerfd_settime sets errno; pthread_create returns its error and
   * leaves errno alone. */
  int err = sampler_arm(s) != 0 ? errno : pthread_create(&s->smp.thread, NULL, sampler_main, s);
  if (err != 0) {
    close(s->smp.timerfd);
    s->smp.timerfd = -1;
    return kfm__err(s, KFM_ETHREAD, "start: cannot start the sampler thread: %s", strerror(err));
  }
  s->smp.running = 1;
  return 0;
}

void kfm__sampler_stop(kfm_session_t *s) {
  if (!s->smp.running) {
    return;
  }
  pthread_mutex_lock(&s->smp.park_lock);
  s->smp.park_cmd = KFM__SAMPLER_PARK;
  s->smp.park_fired = 0;
  atomic_store_explicit(&s->smp.stop, 1, memory_order_release);
  /* At 1 kHz and faster the sampler parks at its next tick, within a
   * millisecond: nothing to pay here.  Slower, a result read or a restart
   * soon after would wait for the wake; so the timer is fired now (one
   * timerfd_settime, ~9 us here) and the thread parks while the caller
   * goes on.  kfm__sampler_wait fires it if nobody did. */
  if (s->rate_hz < 1000.0) {
    sampler_fire(s);
  }
  pthread_mutex_unlock(&s->smp.park_lock);
}

void kfm__sampler_wait(kfm_session_t *s) {
  if (!s->smp.running) {
    return;
  }
  pthread_mutex_lock(&s->smp.park_lock);
  if (s->smp.park_cmd == KFM__SAMPLER_PARK && !s->smp.parked && !s->smp.park_fired) {
    sampler_fire(s); /* rather than waiting up to one period */
  }
  while (s->smp.park_cmd == KFM__SAMPLER_PARK && !s->smp.parked) {
    pthread_cond_wait(&s->smp.park_cv, &s->smp.park_lock);
  }
  pthread_mutex_unlock(&s->smp.park_lock);
}

void kfm__sampler_quit(kfm_session_t *s) {
  if (!s->smp.running) {
    return;
  }
  kfm__sampler_stop(s);
  kfm__sampler_wait(s);
  pthread_mutex_lock(&s->smp.park_lock);
  s->smp.park_cmd = KFM__SAMPLER_QUIT;
  pthread_cond_broadcast(&s->smp.park_cv);
  pthread_mutex_unlock(&s->smp.park_lock);
  pthread_join(s->smp.thread, NULL);
  close(s->smp.timerfd);
  s->smp.timerfd = -1;
  s->smp.running = 0;
}

/* ---- the sampler's state: set-up, clearing, tear-down ------------------ */

void kfm__sampler_init(kfm_session_t *s) {
  pthread_mutex_init(&s->smp.park_lock, NULL);
  pthread_cond_init(&s->smp.park_cv, NULL);
  atomic_init(&s->smp.bound, -1);
  s->smp.timerfd = -1;
}

int kfm__sampler_alloc(kfm_session_t *s) {
  const kfm_config_t *c = &s->cfg;
  s->smp.node_samples = calloc(s->node_cap, sizeof *s->smp.node_samples);
  s->smp.node_samples_any = calloc(s->node_cap, sizeof *s->smp.node_samples_any);
  s->smp.node_sample_peak = calloc(s->node_cap, sizeof *s->smp.node_sample_peak);
  if (!s->smp.node_samples || !s->smp.node_samples_any || !s->smp.node_sample_peak) {
    return KFM_ENOMEM;
  }
  if (s->rate_hz > 0) {
    /* Large arrays come from calloc, which maps fresh zero pages: memory is
     * committed only as samples arrive. */
    s->smp.sample_t = calloc(c->samples, sizeof *s->smp.sample_t);
    s->smp.sample_vals =
        calloc((size_t)c->samples * (s->ns ? s->ns : 1), sizeof *s->smp.sample_vals);
    s->smp.sample_first = calloc((size_t)c->samples + 1, sizeof *s->smp.sample_first);
    s->smp.act_cap = c->samples * 4u < c->samples ? UINT32_MAX : c->samples * 4u;
    s->smp.act_thread = calloc(s->smp.act_cap, sizeof *s->smp.act_thread);
    s->smp.act_node = calloc(s->smp.act_cap, sizeof *s->smp.act_node);
    s->smp.act_cpu = calloc(s->smp.act_cap, sizeof *s->smp.act_cpu);
    long nc = sysconf(_SC_NPROCESSORS_CONF);
    s->smp.ncpus = nc < 1 ? 1 : nc > 1024 ? 1024 : (uint32_t)nc;
    s->smp.cpu_use = calloc(s->smp.ncpus, sizeof *s->smp.cpu_use);
    if (!s->smp.sample_t || !s->smp.sample_vals || !s->smp.sample_first || !s->smp.act_thread ||
        !s->smp.act_node || !s->smp.act_cpu || !s->smp.cpu_use) {
      return KFM_ENOMEM;
    }
    if (s->ns) {
      s->smp.node_ssum = calloc((size_t)s->node_cap * s->ns, sizeof *s->smp.node_ssum);
      s->smp.node_scnt = calloc((size_t)s->node_cap * s->ns, sizeof *s->smp.node_scnt);
      s->smp.node_tick = calloc(s->node_cap, sizeof *s->smp.node_tick);
      s->smp.tick_nodes = calloc(c->max_threads, sizeof *s->smp.tick_nodes);
      if (!s->smp.node_ssum || !s->smp.node_scnt || !s->smp.node_tick || !s->smp.tick_nodes) {
        return KFM_ENOMEM;
      }
    }
    if (c->level >= KFM_LEVEL_COMPREHENSIVE) {
      s->smp.track_cpu = 1;
      s->smp.node_cpu = calloc((size_t)s->node_cap * s->smp.ncpus, sizeof *s->smp.node_cpu);
      s->smp.node_migrations = calloc(s->node_cap, sizeof *s->smp.node_migrations);
      if (!s->smp.node_cpu || !s->smp.node_migrations) {
        return KFM_ENOMEM;
      }
    }
  }
  return 0;
}

void kfm__sampler_clear(kfm_session_t *s) {
  uint32_t nn = atomic_load(&s->nnodes);
  if (nn > s->node_cap) {
    nn = s->node_cap;
  }
  memset(s->smp.node_samples, 0, nn * sizeof *s->smp.node_samples);
  memset(s->smp.node_samples_any, 0, nn * sizeof *s->smp.node_samples_any);
  memset(s->smp.node_sample_peak, 0, nn * sizeof *s->smp.node_sample_peak);
  if (s->smp.node_ssum) {
    memset(s->smp.node_ssum, 0, (size_t)nn * s->ns * sizeof *s->smp.node_ssum);
    memset(s->smp.node_scnt, 0, (size_t)nn * s->ns * sizeof *s->smp.node_scnt);
    memset(s->smp.node_tick, 0, nn * sizeof *s->smp.node_tick);
  }
  if (s->smp.node_cpu) {
    memset(s->smp.node_cpu, 0, (size_t)nn * s->smp.ncpus * sizeof *s->smp.node_cpu);
    memset(s->smp.node_migrations, 0, nn * sizeof *s->smp.node_migrations);
  }
  if (s->smp.cpu_use) {
    memset(s->smp.cpu_use, 0, s->smp.ncpus * sizeof *s->smp.cpu_use);
  }
  KFM__ST(s->smp.nsamples, 0);
  KFM__ST(s->smp.samples_dropped, 0);
  KFM__ST(s->smp.missed, 0);
  KFM__ST(s->smp.cpu_ns, 0);
  KFM__ST(s->smp.rebinds, 0);
  s->smp.act_used = 0;
  s->smp.tick_id = 0;
  memset(s->smp.sprev_ok, 0, sizeof s->smp.sprev_ok);
  for (unsigned b = 0; b < KFM__HIST_BUCKETS; b++) {
    KFM__ST(s->smp.late_hist[b], 0);
  }
}

void kfm__sampler_free(kfm_session_t *s) {
  free(s->smp.sample_t);
  free(s->smp.sample_vals);
  free(s->smp.sample_first);
  free(s->smp.act_thread);
  free(s->smp.act_node);
  free(s->smp.node_samples);
  free(s->smp.node_samples_any);
  free(s->smp.node_sample_peak);
  free(s->smp.node_ssum);
  free(s->smp.node_scnt);
  free(s->smp.node_tick);
  free(s->smp.tick_nodes);
  free(s->smp.node_cpu);
  free(s->smp.node_migrations);
  free(s->smp.act_cpu);
  free(s->smp.cpu_use);
  pthread_mutex_destroy(&s->smp.park_lock);
  pthread_cond_destroy(&s->smp.park_cv);
}
