/*
 * bench_engine.c - what kfm costs, next to what the machine and a peer cost,
 * all measured side by side in one process so the ratios hold even though
 * absolute figures move 10-15% from run to run on these VMs.
 *
 * Output: one JSON object per line on stdout, {"name", "value", "unit"} plus
 * "floor"/"peer"/"ratio" where they apply; progress and diagnostics go to
 * stderr.  A measurement that cannot be made prints "value":null with an
 * "unavailable" or "error" reason instead of a number.
 *
 * What is measured, and how:
 *
 *  - Short-lived threads ("thread.short_lived_<level>"): a thread that
 *    makes 3 pairs on 3 nodes and ends, against the same thread making no
 *    kfm call ("floor"): slot, first aggregate block, backend set-up (at
 *    COMPREHENSIVE the thread's counter EventSet) and the fold at exit.
 *  - Hot path.  Cost of one kfm_enter(s,id) + kfm_exit(s,id) pair on one
 *    node, for each level with the sampler off ("level=X,rate=off"; the
 *    comprehensive one is "pair.comprehensive_rate_off"), then at basic
 *    with the sampler on.  Basic has no sampler by default, so it runs at
 *    the rate a sampling level (standard) defaults to, read from that
 *    session's summary.  Beside them: the floor, two __rdtsc() with a
 *    volatile store between; the peer, a PAPI high-level region pair
 *    PAPI_hl_region_begin/_end("r") counting perf::TASK-CLOCK (this VM has
 *    no hardware PMU); and a grouped raw read floor, two PAPI_read calls on
 *    an EventSet of three software events (perf::TASK-CLOCK, PAGE-FAULTS,
 *    CONTEXT-SWITCHES).  These lines keep their meaning from run to run.
 *  - COMPREHENSIVE as shipped ("pair.comprehensive"): its default sampler
 *    rate, the sampler on the other CPU.  Its transitions read one grouped
 *    PAPI_read of the papi backend's events plus the proc backend's cached
 *    sampler values, so its floor is two PAPI_read calls on an EventSet of
 *    exactly the events that session counts - read from its report's
 *    "papi.<event>" metrics, never assumed - ("floor.papi_read_pair_kfm_
 *    events"; ratio = pair / floor, issue 3's target is <= 1.15), and its
 *    peer is PAPI-HL with PAPI_EVENTS set to those events ("peer.papi_hl_
 *    pair_kfm_events", run in a child process: see struct hlproc;
 *    "pair.comprehensive_vs_papi_hl" ratio = peer / kfm, as for basic).
 *    Each case is timed with CLOCK_MONOTONIC around a loop of n pairs and
 *    divided by n; n is calibrated per case so one repetition lasts about
 *    TARGET_NS (capped at 1M pairs, and lower for PAPI-HL, which keeps
 *    every region instance in memory and writes them all out at exit).
 *    REPS repetitions run interleaved - every case once per round, the
 *    starting case rotating - and the median is reported.  Every kfm
 *    repetition uses a fresh session (create, start, warm up, time, stop,
 *    destroy) so no case inherits another's state.  The main thread is
 *    pinned to one CPU with sched_setaffinity and the engine's sampler (and
 *    the bare sampler loop below) to another, so they do not time-slice
 *    with the timed loop.  PAPI runs one EventSet per thread, so each PAPI
 *    case runs on a worker thread of its own pinned to the main CPU (see
 *    struct worker) while the main thread, whose kfm sessions build their
 *    own EventSet at the first transition, sleeps.
 *  - Sampler CPU share.  A level=standard session at rate=1000 and
 *    rate=10000 runs ~2 s while the main thread sleeps inside a node; the
 *    share is the summary's sampler_cpu_ns / wall_ns.  Its floor is a bare
 *    thread doing the same minimal work per tick (timerfd wake, pread of
 *    /proc/self/statm on a kept fd, rdtsc) at the same rate for the same
 *    time, its CPU read with CLOCK_THREAD_CPUTIME_ID.  The p99 wake
 *    lateness of both is reported too (the bare loop measures its own
 *    against the timerfd's absolute schedule).  Each side runs as two
 *    halves in the order kfm, bare, bare, kfm (see sampler_share).
 *  - Memory per 1M transitions.  RSS (resident pages of /proc/self/statm)
 *    before and after 1M enter/exit pairs on one node at basic and at
 *    detailed with the trace on, both at the level's default sampler rate
 *    (none at basic) so the trace is drained as in real use, with what the
 *    session reports (events stored/dropped, samples);
 *    "after_stop_and_report_bytes" is the growth once the session is
 *    stopped (trace drained) and a report has been built and freed.  These run first,
 *    in a fresh heap, so freed memory of earlier cases does not hide growth.
 *
 * PAPI-HL writes its measurement file at exit into $PAPI_OUTPUT_DIRECTORY/
 * papi_hl_output; that variable points at a mkdtemp directory which an
 * atexit handler, registered before PAPI's own, removes afterwards (the
 * child's goes into its "child" subdirectory; the child is reaped first).
 * KFM_CONFIG is unset so the environment cannot change what is measured.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "kfm/kfm.h"

#ifdef KFM_HAVE_PAPI
#include <papi.h>
#endif

#define REPS 9
#define TARGET_NS 100e6    /* wall time of one timed repetition */
#define MAX_PAIRS 1000000u /* per repetition */
#define MIN_PAIRS 1000u
#define PAPI_HL_MAX_PAIRS 20000u /* PAPI-HL keeps ~180 B per region instance */
#define WARM_PAIRS 2000u
#define SAMPLER_SECONDS 2.0
#define MEMORY_PAIRS 1000000u
#define PAPI_READ_MAX_EVENTS 16 /* events of a read-floor EventSet (kfm allows 16) */

static int bench_failed; /* a measurement errored: exit status 1 at the end */
static int bench_main_cpu = -1;
static int bench_side_cpu = -1;
static volatile uint64_t bench_sink;

/* ---------------------------------------------------------------------- */
/* Small helpers                                                            */

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void sleep_ns(double ns) {
  struct timespec ts = {.tv_sec = (time_t)(ns / 1e9), .tv_nsec = (long)fmod(ns, 1e9)};
  while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR) {
  }
}

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("bench_engine: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v); NaN when n is 0. */
static double median(double *v, size_t n) {
  if (n == 0) {
    return NAN;
  }
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Resident set size in bytes, from the second field of /proc/self/statm. */
static double rss_bytes(void) {
  long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) {
    return NAN;
  }
  int got = fscanf(f, "%ld %ld", &size, &resident);
  fclose(f);
  return got == 2 ? (double)resident * (double)sysconf(_SC_PAGESIZE) : NAN;
}

static int pin_to(int cpu) {
  if (cpu < 0) {
    return 0;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set);
}

/* ---------------------------------------------------------------------- */
/* JSON lines                                                               */

struct jline {
  char buf[2048];
  size_t len;
};

static void jl_raw(struct jline *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jl_raw(struct jline *j, const char *fmt, ...) {
  if (j->len >= sizeof j->buf) {
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(j->buf + j->len, sizeof j->buf - j->len, fmt, ap);
  va_end(ap);
  if (n > 0) {
    j->len += (size_t)n;
  }
}

static void jl_str(struct jline *j, const char *key, const char *val) {
  jl_raw(j, "%s\"%s\":\"", j->len > 1 ? "," : "", key);
  for (const unsigned char *p = (const unsigned char *)val; *p; p++) {
    if (*p == '"' || *p == '\\') {
      jl_raw(j, "\\%c", *p);
    } else if (*p < 0x20) {
      jl_raw(j, "\\u%04x", *p);
    } else {
      jl_raw(j, "%c", *p);
    }
  }
  jl_raw(j, "\"");
}

static void jl_u64(struct jline *j, const char *key, uint64_t v) {
  jl_raw(j, "%s\"%s\":%llu", j->len > 1 ? "," : "", key, (unsigned long long)v);
}

/* A number, or null when it is not finite (JSON has no NaN). */
static void jl_num(struct jline *j, const char *key, double v) {
  if (isfinite(v) && fabs(v) >= 1e5 && v == floor(v)) {
    jl_raw(j, "%s\"%s\":%.0f", j->len > 1 ? "," : "", key, v); /* whole bytes */
  } else if (isfinite(v)) {
    jl_raw(j, "%s\"%s\":%.6g", j->len > 1 ? "," : "", key, v);
  } else {
    jl_raw(j, "%s\"%s\":null", j->len > 1 ? "," : "", key);
  }
}

static void jl_begin(struct jline *j, const char *name) {
  j->len = 0;
  jl_raw(j, "{");
  jl_str(j, "name", name);
}

static void jl_end(struct jline *j) {
  jl_raw(j, "}");
  if (j->len >= sizeof j->buf) {
    j->len = sizeof j->buf - 1;
  }
  fwrite(j->buf, 1, j->len, stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

/* The common shape: name, value, unit, and floor/peer/ratio when finite-or-asked. */
static void emit(const char *name, double value, const char *unit, const char *extra_key1,
                 double extra1, const char *extra_key2, double extra2) {
  struct jline j;
  jl_begin(&j, name);
  jl_num(&j, "value", value);
  jl_str(&j, "unit", unit);
  if (extra_key1) {
    jl_num(&j, extra_key1, extra1);
  }
  if (extra_key2) {
    jl_num(&j, extra_key2, extra2);
  }
  jl_end(&j);
}

static void emit_missing(const char *name, const char *unit, const char *why_key, const char *why) {
  struct jline j;
  jl_begin(&j, name);
  jl_raw(&j, ",\"value\":null");
  jl_str(&j, "unit", unit);
  jl_str(&j, why_key, why);
  jl_end(&j);
}

/* ---------------------------------------------------------------------- */
/* kfm helpers                                                              */

/* Creates and starts a session from a config string; on failure writes why. */
static kfm_session_t *kfm_open(const char *config, kfm_node_id_t *id, char *why, size_t len) {
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

static void short_lived_threads(const char *name, const char *config) {
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

/* n enter/exit pairs; returns the first error code, 0 when all succeeded. */
static int kfm_pairs(kfm_session_t *s, kfm_node_id_t id, uint64_t n) {
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
static int kfm_close_summary(kfm_session_t *s, kfm_summary_t *sum, char *why, size_t len) {
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
/* Worker threads                                                           */

/*
 * PAPI keeps one running EventSet per component and thread, and PAPI-HL's
 * never stops.  So that the PAPI-HL peer, the raw PAPI_read floor and kfm's
 * own backends can be measured interleaved, each PAPI case runs on a worker
 * thread of its own, pinned to the main CPU; the main thread sleeps on a
 * condition variable meanwhile, so the worker has the CPU to itself.
 */
struct worker {
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  void (*job)(void *);
  void *arg;
  int pending, quit, cpu;
};

#ifdef KFM_HAVE_PAPI /* only the PAPI cases need workers */
static void *worker_main(void *p) {
  struct worker *w = p;
  pin_to(w->cpu); /* best effort: unpinned only adds noise */
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->pending && !w->quit) {
      pthread_cond_wait(&w->cv, &w->mu);
    }
    if (!w->pending) {
      break;
    }
    pthread_mutex_unlock(&w->mu);
    w->job(w->arg);
    pthread_mutex_lock(&w->mu);
    w->pending = 0;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static int worker_start(struct worker *w, int cpu) {
  memset(w, 0, sizeof *w);
  w->cpu = cpu;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  return pthread_create(&w->th, NULL, worker_main, w);
}

static void worker_stop(struct worker *w) {
  pthread_mutex_lock(&w->mu);
  w->quit = 1;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->th, NULL);
}
#endif

/* Runs job(arg) on w and waits for it to finish. */
static void worker_call(struct worker *w, void (*job)(void *), void *arg) {
  pthread_mutex_lock(&w->mu);
  w->job = job;
  w->arg = arg;
  w->pending = 1;
  pthread_cond_broadcast(&w->cv);
  while (w->pending) {
    pthread_cond_wait(&w->cv, &w->mu);
  }
  pthread_mutex_unlock(&w->mu);
}

/* ---------------------------------------------------------------------- */
/* Hot-path cases                                                           */

enum case_kind { CASE_RDTSC, CASE_KFM, CASE_PAPI_HL, CASE_PAPI_READ };

struct bcase {
  const char *name;
  enum case_kind kind;
  char config[160]; /* kfm cases */
  uint64_t cap;     /* most pairs per repetition */
  uint64_t n;       /* pairs per repetition, calibrated */
  double ns[REPS];  /* per-pair cost of each repetition */
  int nres;
  int failed;
  char why[512];
  double rate_hz;        /* kfm: configured sampler rate seen in the summary */
  uint64_t dropped;      /* kfm: trace events dropped, over all repetitions */
  struct worker *worker; /* run on this thread instead of the main one */
  struct hlproc *proc;   /* run in this child process instead (see struct hlproc) */
  char events[512];      /* CASE_PAPI_READ: comma list of the EventSet's events */
#ifdef KFM_HAVE_PAPI
  int eventset; /* CASE_PAPI_READ */
#endif
};

static void rdtsc_pairs(uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    uint64_t a = __rdtsc();
    bench_sink = a;
    uint64_t b = __rdtsc();
    bench_sink = b;
  }
}

#ifdef KFM_HAVE_PAPI
static int papi_hl_pairs(uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    int a = PAPI_hl_region_begin("r");
    int b = PAPI_hl_region_end("r");
    if (a != PAPI_OK || b != PAPI_OK) {
      return a != PAPI_OK ? a : b;
    }
  }
  return PAPI_OK;
}

static int papi_read_pairs(int eventset, uint64_t n) {
  long long v[PAPI_READ_MAX_EVENTS];
  for (uint64_t i = 0; i < n; i++) {
    int a = PAPI_read(eventset, v);
    int b = PAPI_read(eventset, v);
    if (a != PAPI_OK || b != PAPI_OK) {
      return a != PAPI_OK ? a : b;
    }
  }
  return PAPI_OK;
}
#endif

/*
 * One measurement of c: warm-up, then n timed pairs (n = c->n, or when
 * calibrating, doubling from MIN_PAIRS until the loop takes >= 5 ms).
 * Returns ns per pair, or NaN with c->why written.
 */
static double case_run(struct bcase *c, int calibrate) {
  uint64_t n = calibrate ? MIN_PAIRS : c->n;
  double t0 = 0, t1 = 0;
  switch (c->kind) {
  case CASE_RDTSC:
    rdtsc_pairs(WARM_PAIRS);
    for (;;) {
      t0 = now_ns();
      rdtsc_pairs(n);
      t1 = now_ns();
      if (!calibrate || t1 - t0 >= 5e6 || n >= c->cap) {
        break;
      }
      n *= 2;
    }
    break;
  case CASE_KFM: {
    kfm_node_id_t id;
    kfm_session_t *s = kfm_open(c->config, &id, c->why, sizeof c->why);
    if (s == NULL) {
      return NAN;
    }
    int rc = kfm_pairs(s, id, WARM_PAIRS);
    while (rc == 0) {
      t0 = now_ns();
      rc = kfm_pairs(s, id, n);
      t1 = now_ns();
      if (!calibrate || t1 - t0 >= 5e6 || n >= c->cap) {
        break;
      }
      n *= 2;
    }
    if (rc != 0) {
      snprintf(c->why, sizeof c->why, "kfm_enter/kfm_exit (%s): %s: %s", c->config,
               kfm_strerror(rc), kfm_errmsg(s));
      kfm_session_destroy(s);
      return NAN;
    }
    kfm_summary_t sum;
    if (kfm_close_summary(s, &sum, c->why, sizeof c->why) != 0) {
      kfm_session_destroy(s);
      return NAN;
    }
    kfm_session_destroy(s);
    if (sum.unbalanced != 0) {
      snprintf(c->why, sizeof c->why, "%s: %llu unbalanced exits", c->config,
               (unsigned long long)sum.unbalanced);
      return NAN;
    }
    c->rate_hz = sum.rate_hz;
    c->dropped += sum.events_dropped;
    break;
  }
  case CASE_PAPI_HL:
  case CASE_PAPI_READ:
#ifdef KFM_HAVE_PAPI
  {
    int rc = c->kind == CASE_PAPI_HL ? papi_hl_pairs(WARM_PAIRS)
                                     : papi_read_pairs(c->eventset, WARM_PAIRS);
    while (rc == PAPI_OK) {
      t0 = now_ns();
      rc = c->kind == CASE_PAPI_HL ? papi_hl_pairs(n) : papi_read_pairs(c->eventset, n);
      t1 = now_ns();
      if (!calibrate || t1 - t0 >= 5e6 || n >= c->cap) {
        break;
      }
      n *= 2;
    }
    if (rc != PAPI_OK) {
      snprintf(c->why, sizeof c->why, "%s failed: %s",
               c->kind == CASE_PAPI_HL ? "PAPI_hl_region_begin/end" : "PAPI_read",
               PAPI_strerror(rc));
      return NAN;
    }
    break;
  }
#else
    snprintf(c->why, sizeof c->why, "built without PAPI");
    return NAN;
#endif
  }
  double per = (t1 - t0) / (double)n;
  if (calibrate) {
    double want = TARGET_NS / per;
    c->n = want > (double)c->cap ? c->cap : want < MIN_PAIRS ? MIN_PAIRS : (uint64_t)want;
  }
  return per;
}

struct case_job {
  struct bcase *c;
  int calibrate;
  double result;
};

static void case_job_run(void *p) {
  struct case_job *j = p;
  j->result = case_run(j->c, j->calibrate);
}

#ifdef KFM_HAVE_PAPI
static double hlproc_call(struct hlproc *p, struct bcase *c, int calibrate);
#endif

/* case_run in the case's child process, on its worker thread, or on this one. */
static double case_run_any(struct bcase *c, int calibrate) {
  struct case_job j = {.c = c, .calibrate = calibrate, .result = NAN};
#ifdef KFM_HAVE_PAPI
  if (c->proc != NULL) {
    return hlproc_call(c->proc, c, calibrate);
  }
#endif
  if (c->worker != NULL) {
    worker_call(c->worker, case_job_run, &j);
  } else {
    case_job_run(&j);
  }
  return j.result;
}

/* Calibrates, then runs REPS repetitions of the cases in cs[], interleaved. */
static void cases_measure(struct bcase *cs, size_t ncs) {
  for (size_t i = 0; i < ncs; i++) {
    if (cs[i].failed) {
      continue;
    }
    if (!isfinite(case_run_any(&cs[i], 1))) {
      cs[i].failed = 1;
      progress("%s: %s", cs[i].name, cs[i].why);
    } else {
      progress("%s: %llu pairs per repetition", cs[i].name, (unsigned long long)cs[i].n);
    }
  }
  for (int r = 0; r < REPS; r++) {
    for (size_t k = 0; k < ncs; k++) {
      struct bcase *c = &cs[(k + (size_t)r) % ncs];
      if (c->failed) {
        continue;
      }
      double v = case_run_any(c, 0);
      if (!isfinite(v)) {
        c->failed = 1;
        progress("%s: %s", c->name, c->why);
        continue;
      }
      c->ns[c->nres++] = v;
    }
  }
}

static double case_median(struct bcase *c) {
  if (c->failed || c->nres == 0) {
    return NAN;
  }
  double tmp[REPS];
  memcpy(tmp, c->ns, sizeof(double) * (size_t)c->nres);
  double lo = tmp[0], hi = tmp[0];
  for (int i = 1; i < c->nres; i++) {
    lo = tmp[i] < lo ? tmp[i] : lo;
    hi = tmp[i] > hi ? tmp[i] : hi;
  }
  double m = median(tmp, (size_t)c->nres);
  progress("%s: median %.2f ns, min %.2f, max %.2f over %d x %llu pairs", c->name, m, lo, hi,
           c->nres, (unsigned long long)c->n);
  return m;
}

/* ---------------------------------------------------------------------- */
/* PAPI set-up                                                              */

#ifdef KFM_HAVE_PAPI
static char papi_dir[512];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Runs after PAPI-HL's own atexit writer (registered later, so run earlier). */
static void papi_dir_cleanup(void) {
  if (papi_dir[0]) {
    nftw(papi_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  }
}

/* PAPI-HL's environment: a software event, output into a private temp dir. */
static int papi_env_setup(char *why, size_t len) {
  const char *tmp = getenv("TMPDIR");
  snprintf(papi_dir, sizeof papi_dir, "%s/kfm-bench-papi-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(papi_dir) == NULL) {
    snprintf(why, len, "mkdtemp(%.400s): %s", papi_dir, strerror(errno));
    papi_dir[0] = '\0';
    return -1;
  }
  atexit(papi_dir_cleanup);
  setenv("PAPI_EVENTS", "perf::TASK-CLOCK", 1);
  setenv("PAPI_OUTPUT_DIRECTORY", papi_dir, 1);
  /* These would print to stdout, which carries only JSON lines. */
  unsetenv("PAPI_REPORT");
  unsetenv("PAPI_HL_VERBOSE");
  unsetenv("PAPI_MULTIPLEX");
  return 0;
}

/* Library init and the read floor's EventSet: the events of c->events, started. */
static int papi_read_setup(struct bcase *c) {
  int rc;
  if (PAPI_is_initialized() == PAPI_NOT_INITED &&
      (rc = PAPI_library_init(PAPI_VER_CURRENT)) != PAPI_VER_CURRENT) {
    snprintf(c->why, sizeof c->why, "PAPI_library_init: %s",
             rc < 0 ? PAPI_strerror(rc) : "version mismatch");
    return -1;
  }
  c->eventset = PAPI_NULL;
  if ((rc = PAPI_create_eventset(&c->eventset)) != PAPI_OK) {
    snprintf(c->why, sizeof c->why, "PAPI_create_eventset: %s", PAPI_strerror(rc));
    return -1;
  }
  char list[sizeof c->events];
  snprintf(list, sizeof list, "%s", c->events);
  int n = 0;
  char *save = NULL;
  for (char *e = strtok_r(list, ",", &save); e != NULL; e = strtok_r(NULL, ",", &save)) {
    if (n == PAPI_READ_MAX_EVENTS) {
      snprintf(c->why, sizeof c->why, "more than %d events in '%.400s'", PAPI_READ_MAX_EVENTS,
               c->events);
      return -1;
    }
    if ((rc = PAPI_add_named_event(c->eventset, e)) != PAPI_OK) {
      snprintf(c->why, sizeof c->why, "PAPI_add_named_event(%s): %s", e, PAPI_strerror(rc));
      return -1;
    }
    n++;
  }
  if (n == 0) {
    snprintf(c->why, sizeof c->why, "no events for the read floor ('%.400s')", c->events);
    return -1;
  }
  if ((rc = PAPI_start(c->eventset)) != PAPI_OK) {
    snprintf(c->why, sizeof c->why, "PAPI_start: %s", PAPI_strerror(rc));
    return -1;
  }
  return 0;
}

static void papi_read_teardown(struct bcase *c) {
  if (c->eventset != PAPI_NULL) {
    PAPI_stop(c->eventset, NULL);
    PAPI_cleanup_eventset(c->eventset);
    PAPI_destroy_eventset(&c->eventset);
  }
}

/* Worker-thread adapters: set-up and tear-down run where the case runs. */
static void papi_read_setup_job(void *p) {
  struct bcase *c = p;
  c->failed = papi_read_setup(c) != 0;
}

static void papi_read_teardown_job(void *p) {
  papi_read_teardown(p);
}

static int papi_hl_setup(struct bcase *c);
static void papi_hl_setup_job(void *p) {
  struct bcase *c = p;
  c->failed = papi_hl_setup(c) != 0;
}

/*
 * The first region call initialises PAPI-HL (library, thread support, its
 * EventSet; ~ms): keep it out of the timing.  It must come before any other
 * EventSet exists, or PAPI-HL's PAPI_thread_init fails.
 */
static int papi_hl_setup(struct bcase *c) {
  int rc = PAPI_hl_region_begin("r");
  if (rc == PAPI_OK) {
    rc = PAPI_hl_region_end("r");
  }
  if (rc != PAPI_OK) {
    snprintf(c->why, sizeof c->why, "PAPI_hl_region_begin/end: %s", PAPI_strerror(rc));
    return -1;
  }
  return 0;
}
#endif

/* ---------------------------------------------------------------------- */
/* PAPI-HL with kfm's events, in a child process                            */

#ifdef KFM_HAVE_PAPI

/*
 * PAPI-HL reads PAPI_EVENTS once per process, at its first region call, and
 * the 1-event peer above (perf::TASK-CLOCK, kept so that its figures stay
 * comparable from run to run) already owns this process's.  So the peer with
 * the events kfm's COMPREHENSIVE sessions count runs in a child: this same
 * executable started with HLPROC_ARG, pinned to the main CPU, which takes one
 * command per line on stdin ("calibrate n cap") and answers on fd 3 with
 * "ns_per_pair n" or "E why".  It times itself exactly as case_run does, and
 * the main thread blocks on the answer meanwhile, so the CPU is the child's.
 * Its stdout is our stderr: PAPI-HL may print at exit.
 */
#define HLPROC_ARG "--papi-hl-child"

struct hlproc {
  pid_t pid;
  FILE *cmd;   /* to the child's stdin */
  FILE *reply; /* from the child's fd 3 */
};

/* The child: argv = exe HLPROC_ARG events output_dir cpu. */
static int hlproc_child_main(int argc, char **argv) {
  FILE *reply = fdopen(3, "w");
  if (reply == NULL || argc != 5) {
    fprintf(stderr, "bench_engine %s: bad invocation (fd 3 or arguments)\n", HLPROC_ARG);
    return 2;
  }
  setenv("PAPI_EVENTS", argv[2], 1);
  setenv("PAPI_OUTPUT_DIRECTORY", argv[3], 1);
  unsetenv("PAPI_REPORT");
  unsetenv("PAPI_HL_VERBOSE");
  unsetenv("PAPI_MULTIPLEX");
  pin_to(atoi(argv[4])); /* best effort, as for the worker threads */
  struct bcase c = {.name = "papi_hl child", .kind = CASE_PAPI_HL};
  if (papi_hl_setup(&c) != 0) {
    fprintf(reply, "E %s\n", c.why);
    fclose(reply);
    return 1;
  }
  fprintf(reply, "OK\n");
  fflush(reply);
  int calibrate;
  unsigned long long n, cap;
  while (scanf("%d %llu %llu", &calibrate, &n, &cap) == 3) {
    c.n = n;
    c.cap = cap;
    double v = case_run(&c, calibrate);
    if (isfinite(v)) {
      fprintf(reply, "%.17g %llu\n", v, (unsigned long long)c.n);
    } else {
      fprintf(reply, "E %s\n", c.why);
    }
    fflush(reply);
  }
  fclose(reply);
  return 0; /* PAPI-HL writes its file from its atexit handler */
}

/* Reads one answer line into buf (newline removed); 0, or -1 at EOF. */
static int hlproc_line(struct hlproc *p, char *buf, size_t len) {
  if (fgets(buf, (int)len, p->reply) == NULL) {
    return -1;
  }
  buf[strcspn(buf, "\n")] = '\0';
  return 0;
}

/* Starts the child and waits for its set-up; 0, or -1 with c->why written. */
static int hlproc_start(struct hlproc *p, struct bcase *c, const char *events) {
  int to[2] = {-1, -1}, from[2] = {-1, -1};
  char dir[600], cpu[16], line[600];
  p->pid = -1;
  p->cmd = p->reply = NULL;
  snprintf(dir, sizeof dir, "%s/child", papi_dir);
  if (mkdir(dir, 0700) != 0) {
    snprintf(c->why, sizeof c->why, "mkdir(%.400s): %s", dir, strerror(errno));
    return -1;
  }
  snprintf(cpu, sizeof cpu, "%d", bench_main_cpu);
  if (pipe2(to, O_CLOEXEC) != 0 || pipe2(from, O_CLOEXEC) != 0) {
    snprintf(c->why, sizeof c->why, "pipe2: %s", strerror(errno));
    goto fail;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, to[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, from[1], 3);
  char *args[] = {"bench_engine", HLPROC_ARG, (char *)events, dir, cpu, NULL};
  extern char **environ;
  int rc = posix_spawn(&p->pid, "/proc/self/exe", &fa, NULL, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(to[0]);
  close(from[1]);
  to[0] = from[1] = -1;
  if (rc != 0) {
    p->pid = -1;
    snprintf(c->why, sizeof c->why, "posix_spawn(/proc/self/exe %s): %s", HLPROC_ARG,
             strerror(rc));
    goto fail;
  }
  if ((p->cmd = fdopen(to[1], "w")) != NULL) {
    to[1] = -1;
  }
  if ((p->reply = fdopen(from[0], "r")) != NULL) {
    from[0] = -1;
  }
  if (p->cmd == NULL || p->reply == NULL) {
    snprintf(c->why, sizeof c->why, "fdopen: %s", strerror(errno));
    goto fail;
  }
  if (hlproc_line(p, line, sizeof line) != 0) {
    snprintf(c->why, sizeof c->why, "PAPI-HL child exited during set-up");
    goto fail;
  }
  if (strcmp(line, "OK") != 0) {
    snprintf(c->why, sizeof c->why, "PAPI-HL child (PAPI_EVENTS=%.200s): %.280s", events,
             line[0] == 'E' ? line + 2 : line);
    goto fail;
  }
  return 0;
fail:
  for (int i = 0; i < 2; i++) {
    if (to[i] >= 0) {
      close(to[i]);
    }
    if (from[i] >= 0) {
      close(from[i]);
    }
  }
  return -1; /* hlproc_stop reaps whatever was started */
}

/* Closes the child's stdin (it returns, PAPI-HL writes its file) and reaps it. */
static void hlproc_stop(struct hlproc *p) {
  if (p->cmd != NULL) {
    fclose(p->cmd);
    p->cmd = NULL;
  }
  if (p->reply != NULL) {
    fclose(p->reply);
    p->reply = NULL;
  }
  if (p->pid > 0) {
    int st;
    while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR) {
    }
    p->pid = -1;
  }
}

/* case_run(c, calibrate) in the child; NaN with c->why written on failure. */
static double hlproc_call(struct hlproc *p, struct bcase *c, int calibrate) {
  char line[600];
  fprintf(p->cmd, "%d %llu %llu\n", calibrate, (unsigned long long)c->n,
          (unsigned long long)c->cap);
  if (fflush(p->cmd) != 0 || hlproc_line(p, line, sizeof line) != 0) {
    snprintf(c->why, sizeof c->why, "PAPI-HL child went away");
    return NAN;
  }
  double v;
  unsigned long long n;
  if (line[0] == 'E' || sscanf(line, "%lg %llu", &v, &n) != 2) {
    snprintf(c->why, sizeof c->why, "PAPI-HL child: %.480s", line[0] == 'E' ? line + 2 : line);
    return NAN;
  }
  c->n = n;
  return v;
}
#endif

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
static void sampler_share(int rate, const char *name_share, const char *name_late) {
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

/* ---------------------------------------------------------------------- */
/* Memory per 1M transitions                                                */

static void memory_growth(const char *name, const char *config) {
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

/* The rate a sampling level (standard) gets by default, from its summary. */
static double default_sampler_rate(char *why, size_t len) {
  kfm_node_id_t id;
  kfm_summary_t sum;
  kfm_session_t *s = kfm_open("level=standard,rate=0", &id, why, len);
  if (s == NULL) {
    return NAN;
  }
  int rc = kfm_close_summary(s, &sum, why, len);
  kfm_session_destroy(s);
  if (rc != 0) {
    return NAN;
  }
  if (!(sum.rate_hz > 0)) {
    snprintf(why, len, "level=standard has no default sampler rate (%g)", sum.rate_hz);
    return NAN;
  }
  return sum.rate_hz;
}

/*
 * The counter events a session with config reads, as a comma list of PAPI
 * names: its report's metrics "papi.<event>", in report order.  0, or -1
 * with why written (no papi backend in that session, or it failed).
 */
static int session_papi_events(const char *config, char *list, size_t len, char *why,
                               size_t wlen) {
  kfm_node_id_t id;
  kfm_report_t *r = NULL;
  kfm_session_t *s = kfm_open(config, &id, why, wlen);
  if (s == NULL) {
    return -1;
  }
  int rc = kfm_session_stop(s);
  if (rc == 0) {
    rc = kfm_session_report(s, &r);
  }
  if (rc != 0) {
    snprintf(why, wlen, "%s: stop/report: %s: %s", config, kfm_strerror(rc), kfm_errmsg(s));
    kfm_session_destroy(s);
    return -1;
  }
  size_t used = 0;
  list[0] = '\0';
  for (size_t i = 0; i < kfm_report_metric_count(r); i++) {
    kfm_metric_info_t m;
    if (kfm_report_metric(r, i, &m) == 0 && strncmp(m.name, "papi.", 5) == 0 && used < len) {
      used += (size_t)snprintf(list + used, len - used, "%s%s", used ? "," : "", m.name + 5);
    }
  }
  if (list[0] == '\0') {
    const char *reason = "not in the report";
    for (size_t i = 0; i < kfm_report_backend_count(r); i++) {
      kfm_backend_status_t b;
      if (kfm_report_backend(r, i, &b) == 0 && strcmp(b.name, "papi") == 0) {
        reason = b.reason ? b.reason : "no reason given";
      }
    }
    snprintf(why, wlen, "session \"%s\" reads no papi.* metric (papi backend: %s)", config,
             reason);
    rc = -1;
  } else if (used >= len) {
    snprintf(why, wlen, "session \"%s\": event list longer than %zu bytes", config, len - 1);
    rc = -1;
  }
  kfm_report_free(r);
  kfm_session_destroy(s);
  return rc;
}

/* Which backends a session with config uses (stderr), to read the figures by. */
static void backends_describe(const char *config) {
  char why[512];
  kfm_node_id_t id;
  kfm_report_t *r = NULL;
  kfm_session_t *s = kfm_open(config, &id, why, sizeof why);
  if (s == NULL) {
    progress("%s: %s", config, why);
    return;
  }
  int rc = kfm_session_stop(s);
  if (rc == 0) {
    rc = kfm_session_report(s, &r);
  }
  if (rc != 0) {
    progress("%s: %s: %s", config, kfm_strerror(rc), kfm_errmsg(s));
  } else {
    for (size_t i = 0; i < kfm_report_backend_count(r); i++) {
      kfm_backend_status_t b;
      if (kfm_report_backend(r, i, &b) == 0) {
        progress("%s: backend %s %s (%s)", config, b.name, b.enabled ? "enabled" : "not used",
                 b.reason ? b.reason : "");
      }
    }
    kfm_report_free(r);
  }
  kfm_session_destroy(s);
}

static void choose_cpus(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) {
    progress("sched_getaffinity: %s; not pinning", strerror(errno));
    return;
  }
  for (int c = CPU_SETSIZE - 1; c >= 0; c--) {
    if (CPU_ISSET(c, &set)) {
      if (bench_main_cpu < 0) {
        bench_main_cpu = c;
      } else {
        bench_side_cpu = c;
      }
    }
  }
  if (pin_to(bench_main_cpu) != 0) {
    progress("sched_setaffinity(%d): %s; not pinning", bench_main_cpu, strerror(errno));
    bench_main_cpu = bench_side_cpu = -1;
  }
  progress("main thread on CPU %d, samplers on CPU %d", bench_main_cpu, bench_side_cpu);
}

int main(int argc, char **argv) {
#ifdef KFM_HAVE_PAPI
  if (argc > 1 && strcmp(argv[1], HLPROC_ARG) == 0) {
    return hlproc_child_main(argc, argv);
  }
#else
  (void)argv;
  if (argc > 1) {
    fprintf(stderr, "bench_engine: takes no arguments\n");
    return 2;
  }
#endif
  unsetenv("KFM_CONFIG");
  choose_cpus();
#ifdef KFM_HAVE_PAPI
  char papi_why[512] = "";
  int papi_ok = papi_env_setup(papi_why, sizeof papi_why) == 0;
#endif

  /* Bring the CPU out of any idle state before the first timing. */
  double spin_end = now_ns() + 300e6;
  while (now_ns() < spin_end) {
    bench_sink++;
  }

  /* Memory first, in a heap that earlier cases have not left free memory in. */
  char config[160];
  snprintf(config, sizeof config, "level=basic,sampler_cpu=%d", bench_side_cpu);
  memory_growth("memory.per_1m_transitions_basic", config);
  snprintf(config, sizeof config, "level=detailed,trace=on,sampler_cpu=%d", bench_side_cpu);
  memory_growth("memory.per_1m_transitions_detailed", config);

  /* Threads that live for a few transitions (thread pools that come and go). */
  snprintf(config, sizeof config, "level=basic,sampler_cpu=%d", bench_side_cpu);
  short_lived_threads("thread.short_lived_basic", config);
  snprintf(config, sizeof config, "level=comprehensive,sampler_cpu=%d", bench_side_cpu);
  short_lived_threads("thread.short_lived_comprehensive", config);

  /* Sampler cost against the bare loop. */
  sampler_share(1000, "sampler.cpu_share_1khz", "sampler.late_p99_1khz");
  sampler_share(10000, "sampler.cpu_share_10khz", "sampler.late_p99_10khz");

  /* The hot path: floors, kfm at each level, the peers, interleaved. */
  enum {
    C_RDTSC,
    C_BASIC,
    C_STANDARD,
    C_DETAILED,
    C_COMP_OFF,
    C_SAMPLER,
    C_COMP,
    C_HL,
    C_READ,
    C_READ_KFM,
    C_HL_KFM,
    C_N
  };
  struct bcase cs[C_N] = {
      [C_RDTSC] = {.name = "floor.rdtsc_pair", .kind = CASE_RDTSC, .cap = MAX_PAIRS},
      [C_BASIC] = {.name = "pair.basic", .kind = CASE_KFM, .cap = MAX_PAIRS},
      [C_STANDARD] = {.name = "pair.standard", .kind = CASE_KFM, .cap = MAX_PAIRS},
      [C_DETAILED] = {.name = "pair.detailed", .kind = CASE_KFM, .cap = MAX_PAIRS},
      [C_COMP_OFF] = {.name = "pair.comprehensive_rate_off", .kind = CASE_KFM, .cap = MAX_PAIRS},
      [C_SAMPLER] = {.name = "pair.basic_sampler_on", .kind = CASE_KFM, .cap = MAX_PAIRS},
      [C_COMP] = {.name = "pair.comprehensive", .kind = CASE_KFM, .cap = MAX_PAIRS},
      [C_HL] = {.name = "peer.papi_hl_pair", .kind = CASE_PAPI_HL, .cap = PAPI_HL_MAX_PAIRS},
      [C_READ] = {.name = "floor.papi_read_pair", .kind = CASE_PAPI_READ, .cap = MAX_PAIRS,
                  .events = "perf::TASK-CLOCK,perf::PAGE-FAULTS,perf::CONTEXT-SWITCHES"},
      [C_READ_KFM] = {.name = "floor.papi_read_pair_kfm_events", .kind = CASE_PAPI_READ,
                      .cap = MAX_PAIRS},
      [C_HL_KFM] = {.name = "peer.papi_hl_pair_kfm_events", .kind = CASE_PAPI_HL,
                    .cap = PAPI_HL_MAX_PAIRS},
  };
  static const char *const levels[] = {"basic", "standard", "detailed", "comprehensive"};
  for (int l = 0; l < 4; l++) {
    snprintf(cs[C_BASIC + l].config, sizeof cs[0].config, "level=%s,rate=off", levels[l]);
  }
  /* Basic has no sampler by default: run it at the rate the sampling levels default to. */
  double rate = default_sampler_rate(cs[C_SAMPLER].why, sizeof cs[C_SAMPLER].why);
  if (isfinite(rate)) {
    snprintf(cs[C_SAMPLER].config, sizeof cs[0].config, "level=basic,rate=%g,sampler_cpu=%d", rate,
             bench_side_cpu);
  } else {
    cs[C_SAMPLER].failed = 1;
  }
  /* Comprehensive as shipped: its default sampler, on the other CPU. */
  snprintf(cs[C_COMP].config, sizeof cs[0].config, "level=comprehensive,sampler_cpu=%d",
           bench_side_cpu);
  backends_describe(cs[C_COMP_OFF].config);
  backends_describe(cs[C_COMP].config);
  /* The floor and the PAPI-HL peer count exactly the events kfm chose. */
  char kfm_events[sizeof cs[0].events] = "";
  char events_why[512] = "";
  int have_events = session_papi_events(cs[C_COMP].config, kfm_events, sizeof kfm_events,
                                        events_why, sizeof events_why) == 0;
  if (have_events) {
    progress("%s counts %s", cs[C_COMP].config, kfm_events);
    snprintf(cs[C_READ_KFM].events, sizeof cs[0].events, "%s", kfm_events);
  } else {
    for (int i = C_READ_KFM; i <= C_HL_KFM; i++) {
      cs[i].failed = 1;
      snprintf(cs[i].why, sizeof cs[i].why, "%s", events_why);
    }
  }

#ifdef KFM_HAVE_PAPI
  struct worker hl_worker, read_worker, read_kfm_worker;
  struct hlproc hl_kfm_proc = {.pid = -1};
  int have_hl_worker = 0, have_read_worker = 0, have_read_kfm_worker = 0, have_hl_kfm_proc = 0;
  /* PAPI-HL first: its initialisation fails once another EventSet exists. */
  if (!papi_ok) {
    cs[C_HL].failed = cs[C_HL_KFM].failed = 1;
    snprintf(cs[C_HL].why, sizeof cs[C_HL].why, "%s", papi_why);
    snprintf(cs[C_HL_KFM].why, sizeof cs[C_HL_KFM].why, "%s", papi_why);
  } else if (worker_start(&hl_worker, bench_main_cpu) != 0) {
    cs[C_HL].failed = 1;
    snprintf(cs[C_HL].why, sizeof cs[C_HL].why, "pthread_create failed");
  } else {
    have_hl_worker = 1;
    cs[C_HL].worker = &hl_worker;
    worker_call(&hl_worker, papi_hl_setup_job, &cs[C_HL]);
  }
  if (!cs[C_HL_KFM].failed) {
    have_hl_kfm_proc = 1;
    if (hlproc_start(&hl_kfm_proc, &cs[C_HL_KFM], kfm_events) == 0) {
      cs[C_HL_KFM].proc = &hl_kfm_proc;
    } else {
      cs[C_HL_KFM].failed = 1;
    }
  }
  /* One worker per EventSet: a thread runs one EventSet at a time. */
  struct {
    int c;
    struct worker *w;
    int *have;
  } readers[] = {{C_READ, &read_worker, &have_read_worker},
                 {C_READ_KFM, &read_kfm_worker, &have_read_kfm_worker}};
  for (size_t k = 0; k < sizeof readers / sizeof readers[0]; k++) {
    struct bcase *c = &cs[readers[k].c];
    c->eventset = PAPI_NULL;
    if (c->failed) {
      continue;
    }
    if (worker_start(readers[k].w, bench_main_cpu) != 0) {
      c->failed = 1;
      snprintf(c->why, sizeof c->why, "pthread_create failed");
      continue;
    }
    *readers[k].have = 1;
    c->worker = readers[k].w;
    worker_call(readers[k].w, papi_read_setup_job, c);
  }
  for (int i = C_HL; i <= C_HL_KFM; i++) {
    if (cs[i].failed) {
      progress("%s: %s", cs[i].name, cs[i].why);
    }
  }
#else
  for (int i = C_HL; i <= C_HL_KFM; i++) {
    if (!cs[i].failed) {
      cs[i].failed = 1;
      snprintf(cs[i].why, sizeof cs[i].why, "built without PAPI");
    }
  }
#endif
  cases_measure(cs, C_N);
#ifdef KFM_HAVE_PAPI
  for (size_t k = 0; k < sizeof readers / sizeof readers[0]; k++) {
    if (*readers[k].have) {
      worker_call(readers[k].w, papi_read_teardown_job, &cs[readers[k].c]);
      worker_stop(readers[k].w);
    }
  }
  if (have_hl_worker) {
    worker_stop(&hl_worker); /* its regions stay recorded for PAPI-HL's exit writer */
  }
  if (have_hl_kfm_proc) {
    hlproc_stop(&hl_kfm_proc); /* before papi_dir_cleanup removes its output directory */
  }
#endif

  double m[C_N];
  for (int i = 0; i < C_N; i++) {
    m[i] = case_median(&cs[i]);
  }
  double floor_ns = m[C_RDTSC];
  if (cs[C_RDTSC].failed) {
    emit_missing(cs[C_RDTSC].name, "ns", "error", cs[C_RDTSC].why);
  } else {
    emit(cs[C_RDTSC].name, floor_ns, "ns", NULL, 0, NULL, 0);
  }
  for (int i = C_BASIC; i <= C_SAMPLER; i++) {
    if (cs[i].failed) {
      bench_failed = 1;
      emit_missing(cs[i].name, "ns", "error", cs[i].why);
      continue;
    }
    struct jline j;
    jl_begin(&j, cs[i].name);
    jl_num(&j, "value", m[i]);
    jl_str(&j, "unit", "ns");
    jl_num(&j, "floor", floor_ns);
    jl_num(&j, "ratio", m[i] / floor_ns);
    if (i == C_SAMPLER) {
      jl_num(&j, "rate_hz", cs[i].rate_hz);
    }
    if (cs[i].dropped) {
      jl_u64(&j, "events_dropped", cs[i].dropped);
    }
    jl_end(&j);
  }
  if (cs[C_HL].failed) {
    emit_missing(cs[C_HL].name, "ns", "unavailable", cs[C_HL].why);
  } else {
    emit(cs[C_HL].name, m[C_HL], "ns", NULL, 0, NULL, 0);
  }
  /* How many times faster a kfm basic pair is than a PAPI-HL region pair. */
  {
    struct jline j;
    jl_begin(&j, "pair.basic_vs_papi_hl");
    jl_num(&j, "value", m[C_BASIC]);
    jl_str(&j, "unit", "ns");
    jl_num(&j, "peer", m[C_HL]);
    jl_num(&j, "ratio", m[C_HL] / m[C_BASIC]);
    jl_end(&j);
  }
  if (cs[C_READ].failed) {
    emit_missing(cs[C_READ].name, "ns", "unavailable", cs[C_READ].why);
  } else {
    struct jline j;
    jl_begin(&j, cs[C_READ].name);
    jl_num(&j, "value", m[C_READ]);
    jl_str(&j, "unit", "ns");
    jl_str(&j, "events", cs[C_READ].events);
    jl_end(&j);
  }

  /* COMPREHENSIVE as shipped, against the grouped read of the same events and PAPI-HL. */
  for (int i = C_READ_KFM; i <= C_HL_KFM; i++) {
    if (cs[i].failed) {
      emit_missing(cs[i].name, "ns", "unavailable", cs[i].why);
      continue;
    }
    struct jline j;
    jl_begin(&j, cs[i].name);
    jl_num(&j, "value", m[i]);
    jl_str(&j, "unit", "ns");
    jl_str(&j, "events", kfm_events);
    jl_end(&j);
  }
  if (cs[C_COMP].failed) {
    bench_failed = 1;
    emit_missing(cs[C_COMP].name, "ns", "error", cs[C_COMP].why);
  } else {
    /* ratio = pair / grouped-read pair: what kfm adds to the unavoidable read. */
    struct jline j;
    jl_begin(&j, cs[C_COMP].name);
    jl_num(&j, "value", m[C_COMP]);
    jl_str(&j, "unit", "ns");
    jl_num(&j, "floor", m[C_READ_KFM]);
    jl_num(&j, "ratio", m[C_COMP] / m[C_READ_KFM]);
    jl_num(&j, "rate_hz", cs[C_COMP].rate_hz);
    jl_str(&j, "events", have_events ? kfm_events : "unavailable");
    if (cs[C_COMP].dropped) {
      jl_u64(&j, "events_dropped", cs[C_COMP].dropped);
    }
    jl_end(&j);
  }
  /* As pair.basic_vs_papi_hl: ratio = PAPI-HL pair / kfm pair (> 1: kfm is faster). */
  {
    struct jline j;
    jl_begin(&j, "pair.comprehensive_vs_papi_hl");
    jl_num(&j, "value", m[C_COMP]);
    jl_str(&j, "unit", "ns");
    jl_num(&j, "peer", m[C_HL_KFM]);
    jl_num(&j, "ratio", m[C_HL_KFM] / m[C_COMP]);
    jl_end(&j);
  }

  /* PAPI-HL writes its file at exit; nothing may reach stdout after the JSON. */
  fflush(stdout);
  dup2(STDERR_FILENO, STDOUT_FILENO);
  return bench_failed ? 1 : 0;
}
