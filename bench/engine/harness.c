/*
 * bench/engine/harness.c - the generic part of bench_engine: clocks,
 * statistics, CPU pinning, the JSON lines on stdout, worker threads, and
 * the timing of pair cases (calibration, interleaved rotating repetitions,
 * medians), with the machine's own floor (an rdtsc pair).
 *
 * It knows nothing of PAPI and of kfm's API: a case says how to run one
 * repetition (struct bcase's run) and this file decides when, where and how
 * often.  Kept apart so that the cases and the peers (cases.c, pairs.c,
 * papi_peers.c) read as what they measure, not how they are timed.
 *
 * Timing: each case is timed with CLOCK_MONOTONIC around a loop of n pairs
 * and divided by n; n is calibrated per case so one repetition lasts about
 * TARGET_NS (capped per case).  REPS repetitions run interleaved - every
 * case once per round, the starting case rotating - and the median is
 * reported.  The main thread is pinned to one CPU and the samplers to
 * another (choose_cpus), so they do not time-slice with the timed loop.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "bench.h"

#define TARGET_NS 100e6 /* wall time of one timed repetition */
#define MIN_PAIRS 1000u
#define WARM_PAIRS 2000u

int bench_failed;
int bench_main_cpu = -1;
int bench_side_cpu = -1;
volatile uint64_t bench_sink;

/* ---------------------------------------------------------------------- */
/* Small helpers                                                            */

double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

double thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

void sleep_ns(double ns) {
  struct timespec ts = {.tv_sec = (time_t)(ns / 1e9), .tv_nsec = (long)fmod(ns, 1e9)};
  while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR) {
  }
}

void progress(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("bench_engine: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v); NaN when n is 0. */
double median(double *v, size_t n) {
  if (n == 0) {
    return NAN;
  }
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Resident set size in bytes, from the second field of /proc/self/statm. */
double rss_bytes(void) {
  long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) {
    return NAN;
  }
  int got = fscanf(f, "%ld %ld", &size, &resident);
  fclose(f);
  return got == 2 ? (double)resident * (double)sysconf(_SC_PAGESIZE) : NAN;
}

int pin_to(int cpu) {
  if (cpu < 0) {
    return 0;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set);
}

/* The main thread on the highest allowed CPU, the samplers on the lowest. */
void choose_cpus(void) {
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

/* ---------------------------------------------------------------------- */
/* JSON lines                                                               */

void jl_raw(struct jline *j, const char *fmt, ...) {
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

void jl_str(struct jline *j, const char *key, const char *val) {
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

void jl_u64(struct jline *j, const char *key, uint64_t v) {
  jl_raw(j, "%s\"%s\":%llu", j->len > 1 ? "," : "", key, (unsigned long long)v);
}

/* A number, or null when it is not finite (JSON has no NaN). */
void jl_num(struct jline *j, const char *key, double v) {
  if (isfinite(v) && fabs(v) >= 1e5 && v == floor(v)) {
    jl_raw(j, "%s\"%s\":%.0f", j->len > 1 ? "," : "", key, v); /* whole bytes */
  } else if (isfinite(v)) {
    jl_raw(j, "%s\"%s\":%.6g", j->len > 1 ? "," : "", key, v);
  } else {
    jl_raw(j, "%s\"%s\":null", j->len > 1 ? "," : "", key);
  }
}

void jl_begin(struct jline *j, const char *name) {
  j->len = 0;
  jl_raw(j, "{");
  jl_str(j, "name", name);
}

void jl_end(struct jline *j) {
  jl_raw(j, "}");
  if (j->len >= sizeof j->buf) {
    j->len = sizeof j->buf - 1;
  }
  fwrite(j->buf, 1, j->len, stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

/* The common shape: name, value, unit, and floor/peer/ratio when finite-or-asked. */
void emit(const char *name, double value, const char *unit, const char *extra_key1, double extra1,
          const char *extra_key2, double extra2) {
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

void emit_missing(const char *name, const char *unit, const char *why_key, const char *why) {
  struct jline j;
  jl_begin(&j, name);
  jl_raw(&j, ",\"value\":null");
  jl_str(&j, "unit", unit);
  jl_str(&j, why_key, why);
  jl_end(&j);
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

int worker_start(struct worker *w, int cpu) {
  memset(w, 0, sizeof *w);
  w->cpu = cpu;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  return pthread_create(&w->th, NULL, worker_main, w);
}

void worker_stop(struct worker *w) {
  pthread_mutex_lock(&w->mu);
  w->quit = 1;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->th, NULL);
}

/* Runs job(arg) on w and waits for it to finish. */
void worker_call(struct worker *w, void (*job)(void *), void *arg) {
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
/* Pair cases                                                               */

/*
 * The timed part of one repetition of c: WARM_PAIRS untimed pairs, then n
 * timed ones (n = c->n, or when calibrating, doubling from MIN_PAIRS until
 * the loop takes >= 5 ms or reaches c->cap, and c->n then set so that a
 * repetition lasts about TARGET_NS).  pairs(ctx, n) makes n pairs and
 * returns 0 or the first error code.  Returns 0 with *per = ns per pair, or
 * that error code.
 */
int case_time(struct bcase *c, int calibrate, int (*pairs)(void *ctx, uint64_t n), void *ctx,
              double *per) {
  uint64_t n = calibrate ? MIN_PAIRS : c->n;
  double t0 = 0, t1 = 0;
  int rc = pairs(ctx, WARM_PAIRS);
  while (rc == 0) {
    t0 = now_ns();
    rc = pairs(ctx, n);
    t1 = now_ns();
    if (!calibrate || t1 - t0 >= 5e6 || n >= c->cap) {
      break;
    }
    n *= 2;
  }
  if (rc != 0) {
    return rc;
  }
  *per = (t1 - t0) / (double)n;
  if (calibrate) {
    double want = TARGET_NS / *per;
    c->n = want > (double)c->cap ? c->cap : want < MIN_PAIRS ? MIN_PAIRS : (uint64_t)want;
  }
  return 0;
}

/* The machine's floor: two __rdtsc() with a volatile store between. */
static int rdtsc_pairs(void *ctx, uint64_t n) {
  (void)ctx;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t a = __rdtsc();
    bench_sink = a;
    uint64_t b = __rdtsc();
    bench_sink = b;
  }
  return 0;
}

double rdtsc_case_run(struct bcase *c, int calibrate) {
  double per = NAN;
  case_time(c, calibrate, rdtsc_pairs, NULL, &per);
  return per;
}

struct case_job {
  struct bcase *c;
  int calibrate;
  double result;
};

static void case_job_run(void *p) {
  struct case_job *j = p;
  j->result = j->c->run(j->c, j->calibrate);
}

/* One repetition of c, on its worker thread or on this one. */
static double case_run_any(struct bcase *c, int calibrate) {
  struct case_job j = {.c = c, .calibrate = calibrate, .result = NAN};
  if (c->worker != NULL) {
    worker_call(c->worker, case_job_run, &j);
  } else {
    case_job_run(&j);
  }
  return j.result;
}

/* Calibrates, then runs REPS repetitions of the cases in cs[], interleaved. */
void cases_measure(struct bcase *cs, size_t ncs) {
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

double case_median(struct bcase *c) {
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
