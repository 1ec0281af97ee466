/*
 * bench/engine/cases.c - the cases that are not pair costs, each one
 * function that measures and prints its own JSON lines: memory per 1M
 * transitions, short-lived threads, and the sampler's CPU share; with the
 * kfm session helpers every case uses (pairs.c's too).
 *
 * Kept apart from pairs.c because these do not go through the hot-path
 * table: each has its own floor and its own way of pairing kfm with it.
 *
 *  - Memory per 1M transitions ("memory.per_1m_transitions_<level>"): RSS
 *    (resident pages of /proc/self/statm) before and after 1M enter/exit
 *    pairs on one node at basic and at detailed with the trace on, both at
 *    the level's default sampler rate (none at basic) so the trace is
 *    drained as in real use, with what the session reports (events
 *    stored/dropped, samples); "after_stop_and_report_bytes" is the growth
 *    once the session is stopped (trace drained) and a report has been
 *    built and freed.  main runs these first, in a fresh heap, so freed
 *    memory of earlier cases does not hide growth.
 *  - Short-lived threads ("thread.short_lived_<level>"): a thread that makes
 *    3 pairs on 3 nodes and ends, against the same thread making no kfm
 *    call ("floor"): slot, first aggregate block, backend set-up (at
 *    COMPREHENSIVE the thread's counter EventSet) and the fold at exit.
 *  - Sampler CPU share ("sampler.cpu_share_<rate>", "sampler.late_p99_
 *    <rate>"): a level=standard session at the rate runs ~2 s while the
 *    main thread sleeps inside a node; the share is the summary's
 *    sampler_cpu_ns / wall_ns.  Its floor is a bare thread doing the same
 *    minimal work per tick (timerfd wake, pread of /proc/self/statm on a
 *    kept fd, rdtsc) at the same rate for the same time, its CPU read with
 *    CLOCK_THREAD_CPUTIME_ID.  The p99 wake lateness of both is reported
 *    too (the bare loop measures its own against the timerfd's absolute
 *    schedule).  Each side runs as two halves in the order kfm, bare, bare,
 *    kfm (see sampler_share).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "bench.h"

#define SAMPLER_SECONDS 2.0
#define MEMORY_PAIRS 1000000u

/* ---------------------------------------------------------------------- */
/* kfm helpers                                                              */

/* Creates and starts a session from a config string; on failure writes why. */
kfm_session_t *kfm_open(const char *config, kfm_node_id_t *id, char *why, size_t len) {
  kfm_session_t *s = NULL;
  int rc = kfm_session_create_str(&s, config);
  if (rc != 0) {
    snprintf(why, len, "kfm_session_create(\"%s\"): %s: %s", config, kfm_strerror(rc),
             kfm_errmsg(NULL));
    return NULL;
  }
  rc = kfm_node_register(s, "bench.node", id);
  if (rc == 0) {
    rc = kfm_session_start(s);
  }
  if (rc != 0) {
    snprintf(why, len, "session \"%s\": %s: %s", config, kfm_strerror(rc), kfm_errmsg(s));
    kfm_session_destroy(s);
    return NULL;
  }
  return s;
}

/* n enter/exit pairs; returns the first error code, 0 when all succeeded. */
int kfm_pairs(kfm_session_t *s, kfm_node_id_t id, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    int a = kfm_enter(s, id);
    int b = kfm_exit(s, id);
    if (__builtin_expect((a | b) != 0, 0)) {
      return a != 0 ? a : b;
    }
  }
  return 0;
}

/* Stops s and fetches its summary; returns 0 or writes why. */
int kfm_close_summary(kfm_session_t *s, kfm_summary_t *sum, char *why, size_t len) {
  int rc = kfm_session_stop(s);
  kfm_report_t *r = NULL;
  if (rc == 0) {
    rc = kfm_session_report(s, &r);
  }
  if (rc != 0) {
    snprintf(why, len, "stop/report: %s: %s", kfm_strerror(rc), kfm_errmsg(s));
    return rc;
  }
  kfm_report_summary(r, sum);
  kfm_report_free(r);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Memory per 1M transitions                                                */

void memory_growth(const char *name, const char *config) {
  char why[512] = "";
  kfm_node_id_t id;
  double r0 = rss_bytes();
  kfm_session_t *s = kfm_open(config, &id, why, sizeof why);
  int rc = -1;
  double r1 = NAN, r2 = NAN, r3 = NAN, t = NAN;
  kfm_summary_t sum;
  if (s != NULL) {
    rc = kfm_pairs(s, id, 1); /* the thread's slot and aggregate block */
    r1 = rss_bytes();
    double t0 = now_ns();
    if (rc == 0) {
      rc = kfm_pairs(s, id, MEMORY_PAIRS);
    }
    t = now_ns() - t0;
    r2 = rss_bytes();
    if (rc != 0) {
      snprintf(why, sizeof why, "enter/exit (%s): %s: %s", config, kfm_strerror(rc), kfm_errmsg(s));
    } else {
      rc = kfm_close_summary(s, &sum, why, sizeof why);
      r3 = rss_bytes();
    }
    kfm_session_destroy(s);
  }
  if (rc != 0) {
    bench_failed = 1;
    progress("%s: %s", name, why);
    emit_missing(name, "bytes", "error", why);
    return;
  }
  progress("%s: %s, setup +%.0f KiB, 1M pairs in %.2f s", name, config, (r1 - r0) / 1024, t / 1e9);
  struct jline j;
  jl_begin(&j, name);
  jl_num(&j, "value", r2 - r1);
  jl_str(&j, "unit", "bytes");
  jl_u64(&j, "pairs", MEMORY_PAIRS);
  jl_num(&j, "session_setup_bytes", r1 - r0);
  jl_num(&j, "after_stop_and_report_bytes", r3 - r1);
  jl_u64(&j, "events", sum.events);
  jl_u64(&j, "events_dropped", sum.events_dropped);
  jl_u64(&j, "samples", sum.samples);
  jl_end(&j);
}

/* ---------------------------------------------------------------------- */
/* Short-lived threads                                                      */

/*
 * A thread that starts, makes 3 pairs on 3 nodes and ends: what kfm adds to
 * it (its slot, first aggregate block, backend set-up such as a counter
 * EventSet, and the fold at exit), next to the same thread making no kfm
 * call.  Created and joined one at a time; medians of interleaved rounds.
 */
struct slt {
  kfm_session_t *s;
  kfm_node_id_t ids[3];
  int use, rc;
};

static void *slt_main(void *p) {
  struct slt *t = p;
  for (int i = 0; t->use && i < 3; i++) {
    int rc = kfm_enter(t->s, t->ids[i]);
    rc = rc ? rc : kfm_exit(t->s, t->ids[i]);
    t->rc = t->rc ? t->rc : rc;
  }
  return NULL;
}

void short_lived_threads(const char *name, const char *config) {
  char why[512];
  struct slt t = {0};
  t.s = kfm_open(config, &t.ids[0], why, sizeof why);
  if (t.s == NULL) {
    emit_missing(name, "us", "error", why);
    bench_failed = 1;
    return;
  }
  kfm_node_register(t.s, "bench.node2", &t.ids[1]);
  kfm_node_register(t.s, "bench.node3", &t.ids[2]);
  enum { ROUNDS = 15, PER = 20 };
  double with[ROUNDS], bare[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    for (int use = 0; use < 2; use++) {
      t.use = (r + use) % 2;
      double t0 = now_ns();
      for (int i = 0; i < PER; i++) {
        pthread_t th;
        if (pthread_create(&th, NULL, slt_main, &t) != 0) {
          t.rc = KFM_ETHREAD;
          break;
        }
        pthread_join(th, NULL);
      }
      (t.use ? with : bare)[r] = (now_ns() - t0) / PER / 1e3;
    }
  }
  kfm_session_destroy(t.s);
  if (t.rc != 0) {
    snprintf(why, sizeof why, "%s: a transition failed: %s", config, kfm_strerror(t.rc));
    emit_missing(name, "us", "error", why);
    bench_failed = 1;
    return;
  }
  double w = median(with, ROUNDS), b = median(bare, ROUNDS);
  progress("%s: thread with 3 pairs %.1f us, bare thread %.1f us", config, w, b);
  emit(name, w - b, "us added per thread", "floor", b, NULL, 0);
}

/* ---------------------------------------------------------------------- */
/* Sampler CPU share                                                        */

struct bare_loop {
  double rate_hz;
  double seconds;
  int cpu;
  /* results */
  double cpu_ns, wall_ns;
  double late_p99_ns;
  uint64_t ticks;
  char why[256];
};

/* The floor of a sampler: wake on a timerfd, pread statm, rdtsc. */
static void *bare_loop_main(void *arg) {
  struct bare_loop *b = arg;
  if (pin_to(b->cpu) != 0) {
    snprintf(b->why, sizeof b->why, "sched_setaffinity(%d): %s", b->cpu, strerror(errno));
    return NULL;
  }
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  size_t cap = (size_t)(b->rate_hz * b->seconds * 1.5) + 16;
  double *late = malloc(cap * sizeof *late);
  if (fd < 0 || tfd < 0 || late == NULL) {
    snprintf(b->why, sizeof b->why, "statm/timerfd/malloc: %s", strerror(errno));
    goto out;
  }
  long period = (long)(1e9 / b->rate_hz);
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  struct itimerspec its = {
      .it_interval = {.tv_sec = period / 1000000000L, .tv_nsec = period % 1000000000L},
      .it_value = start,
  };
  its.it_value.tv_nsec += period;
  if (its.it_value.tv_nsec >= 1000000000L) {
    its.it_value.tv_sec++;
    its.it_value.tv_nsec -= 1000000000L;
  }
  double t_first = (double)its.it_value.tv_sec * 1e9 + (double)its.it_value.tv_nsec;
  if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0) {
    snprintf(b->why, sizeof b->why, "timerfd_settime: %s", strerror(errno));
    goto out;
  }
  double w0 = now_ns(), c0 = thread_cpu_ns();
  double end = w0 + b->seconds * 1e9;
  uint64_t expired = 0;
  size_t nlate = 0;
  char buf[128];
  for (;;) {
    uint64_t e;
    if (read(tfd, &e, sizeof e) != (ssize_t)sizeof e) {
      continue;
    }
    expired += e;
    /* Wake lateness against the most recent deadline that has passed. */
    double t = now_ns();
    if (nlate < cap) {
      late[nlate++] = t - (t_first + (double)(expired - 1) * (double)period);
    }
    if (pread(fd, buf, sizeof buf, 0) < 0) {
      snprintf(b->why, sizeof b->why, "pread statm: %s", strerror(errno));
      break;
    }
    bench_sink = __rdtsc();
    b->ticks++;
    if (t >= end) {
      break;
    }
  }
  b->cpu_ns = thread_cpu_ns() - c0;
  b->wall_ns = now_ns() - w0;
  qsort(late, nlate, sizeof *late, cmp_double);
  b->late_p99_ns = nlate ? late[(size_t)((double)(nlate - 1) * 0.99)] : NAN;
out:
  free(late);
  if (fd >= 0) {
    close(fd);
  }
  if (tfd >= 0) {
    close(tfd);
  }
  return NULL;
}

/* Totals of one side (kfm or bare) over its runs. */
struct sampler_side {
  double cpu_ns, wall_ns, late_max_ns;
  int runs;
  char why[512];
};

/* kfm's sampler for `seconds`, with the main thread asleep inside one node. */
static void kfm_sampler_run(int rate, double seconds, struct sampler_side *k) {
  char config[160];
  snprintf(config, sizeof config, "level=standard,rate=%d,sampler_cpu=%d", rate, bench_side_cpu);
  kfm_node_id_t id;
  kfm_summary_t sum;
  kfm_session_t *s = kfm_open(config, &id, k->why, sizeof k->why);
  if (s == NULL) {
    return;
  }
  int rc = kfm_enter(s, id);
  sleep_ns(seconds * 1e9);
  if (rc == 0) {
    rc = kfm_exit(s, id);
  }
  if (rc != 0) {
    snprintf(k->why, sizeof k->why, "enter/exit: %s: %s", kfm_strerror(rc), kfm_errmsg(s));
  } else if (kfm_close_summary(s, &sum, k->why, sizeof k->why) == 0) {
    k->cpu_ns += sum.sampler_cpu_ns;
    k->wall_ns += sum.wall_ns;
    k->late_max_ns = fmax(k->late_max_ns, sum.sampler_late_p99_ns);
    k->runs++;
    progress("%s: kfm %llu samples (%llu dropped) in %.2f s at %.0f Hz, %.3f ms CPU", config,
             (unsigned long long)sum.samples, (unsigned long long)sum.samples_dropped,
             sum.wall_ns / 1e9, sum.rate_hz, sum.sampler_cpu_ns / 1e6);
  }
  kfm_session_destroy(s);
}

/* The bare loop at the same rate, on the same CPU. */
static void bare_sampler_run(int rate, double seconds, struct sampler_side *b) {
  struct bare_loop l = {.rate_hz = rate, .seconds = seconds, .cpu = bench_side_cpu};
  pthread_t th;
  if (pthread_create(&th, NULL, bare_loop_main, &l) != 0) {
    snprintf(b->why, sizeof b->why, "pthread_create failed");
    return;
  }
  pthread_join(th, NULL);
  if (l.why[0] != '\0') {
    snprintf(b->why, sizeof b->why, "%s", l.why);
    return;
  }
  b->cpu_ns += l.cpu_ns;
  b->wall_ns += l.wall_ns;
  b->late_max_ns = fmax(b->late_max_ns, l.late_p99_ns);
  b->runs++;
  progress("bare loop at %d Hz: %llu ticks in %.2f s, %.3f ms CPU", rate,
           (unsigned long long)l.ticks, l.wall_ns / 1e9, l.cpu_ns / 1e6);
}

/*
 * kfm and the bare loop each run SAMPLER_SECONDS in total, as two halves in
 * the order kfm, bare, bare, kfm so that a drift of the VM over the four
 * seconds weighs on both alike.  Share = total CPU / total wall; lateness
 * is the worse of the two halves' p99.
 */
void sampler_share(int rate, const char *name_share, const char *name_late) {
  struct sampler_side k = {.late_max_ns = NAN}, b = {.late_max_ns = NAN};
  double half = SAMPLER_SECONDS / 2;
  kfm_sampler_run(rate, half, &k);
  bare_sampler_run(rate, half, &b);
  bare_sampler_run(rate, half, &b);
  kfm_sampler_run(rate, half, &k);
  double bare_share = b.runs == 2 ? 100.0 * b.cpu_ns / b.wall_ns : NAN;
  double bare_late = b.runs == 2 ? b.late_max_ns / 1e3 : NAN;
  if (b.runs != 2) {
    progress("%s: bare loop: %s", name_share, b.why);
  }
  if (k.runs != 2) {
    bench_failed = 1;
    progress("%s: %s", name_share, k.why);
    struct jline j;
    jl_begin(&j, name_share);
    jl_raw(&j, ",\"value\":null");
    jl_str(&j, "unit", "% of a core");
    jl_num(&j, "floor", bare_share);
    jl_str(&j, "error", k.why);
    jl_end(&j);
    return;
  }
  double kfm_share = 100.0 * k.cpu_ns / k.wall_ns;
  double kfm_late = k.late_max_ns / 1e3;
  emit(name_share, kfm_share, "% of a core", "floor", bare_share, "ratio", kfm_share / bare_share);
  emit(name_late, kfm_late, "us", "floor", bare_late, "ratio", kfm_late / bare_late);
}
