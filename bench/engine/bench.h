/*
 * bench/engine/bench.h - what the parts of bench_engine share, and nothing
 * else: the harness's API (harness.c), the kfm session helpers (cases.c),
 * the PAPI peers' API (papi_peers.c) and each case's entry point (cases.c,
 * pairs.c).  Private to bench_engine; its .c files are listed by name in
 * the bench_engine target (CMakeLists.txt), which compiles them all with
 * the same definitions (KFM_HAVE_PAPI).
 */
#ifndef KFM_BENCH_ENGINE_BENCH_H
#define KFM_BENCH_ENGINE_BENCH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "kfm/kfm.h"

/* Timed repetitions of a pair case (harness.c). */
#define REPS 9
#define MAX_PAIRS 1000000u       /* per repetition */
#define PAPI_HL_MAX_PAIRS 20000u /* PAPI-HL keeps ~180 B per region instance */

extern int bench_failed; /* a measurement errored: exit status 1 at the end */
extern int bench_main_cpu;
extern int bench_side_cpu;
extern volatile uint64_t bench_sink;

/* ---- harness.c: clocks, statistics, CPU pinning ------------------------- */

double now_ns(void);
double thread_cpu_ns(void);
void sleep_ns(double ns);
void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cmp_double(const void *a, const void *b);
double median(double *v, size_t n);
double rss_bytes(void);
int pin_to(int cpu);
void choose_cpus(void);

/* ---- harness.c: JSON lines on stdout ------------------------------------- */

struct jline {
  char buf[2048];
  size_t len;
};

void jl_raw(struct jline *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jl_str(struct jline *j, const char *key, const char *val);
void jl_u64(struct jline *j, const char *key, uint64_t v);
void jl_num(struct jline *j, const char *key, double v);
void jl_begin(struct jline *j, const char *name);
void jl_end(struct jline *j);
void emit(const char *name, double value, const char *unit, const char *extra_key1, double extra1,
          const char *extra_key2, double extra2);
void emit_missing(const char *name, const char *unit, const char *why_key, const char *why);

/* ---- harness.c: worker threads ------------------------------------------- */

/* A thread pinned to one CPU that runs jobs one at a time (see harness.c). */
struct worker {
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  void (*job)(void *);
  void *arg;
  int pending, quit, cpu;
};

int worker_start(struct worker *w, int cpu);
void worker_stop(struct worker *w);
void worker_call(struct worker *w, void (*job)(void *), void *arg);

/* ---- harness.c: pair cases, timed interleaved ---------------------------- */

struct hlproc; /* papi_peers.c */

/*
 * One case of the hot-path table: how to run it (run, on worker when set),
 * its calibrated loop length, and its repetitions' results.
 */
struct bcase {
  const char *name;
  /* One repetition: ns per pair, or NaN with why written (see case_time). */
  double (*run)(struct bcase *c, int calibrate);
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
  struct hlproc *proc;   /* PAPI-HL peer: run in this child process (papi_peers.c) */
  char events[512];      /* PAPI read floor: comma list of the EventSet's events */
  int eventset;          /* PAPI read floor: its EventSet (PAPI_NULL when none) */
};

int case_time(struct bcase *c, int calibrate, int (*pairs)(void *ctx, uint64_t n), void *ctx,
              double *per);
double rdtsc_case_run(struct bcase *c, int calibrate);
void cases_measure(struct bcase *cs, size_t ncs);
double case_median(struct bcase *c);

/* ---- cases.c: kfm session helpers (also used by pairs.c) ----------------- */

kfm_session_t *kfm_open(const char *config, kfm_node_id_t *id, char *why, size_t len);
int kfm_pairs(kfm_session_t *s, kfm_node_id_t id, uint64_t n);
int kfm_close_summary(kfm_session_t *s, kfm_summary_t *sum, char *why, size_t len);

/* ---- cases.c and pairs.c: the measurements, in the order main runs them -- */

void memory_growth(const char *name, const char *config);
void short_lived_threads(const char *name, const char *config);
void sampler_share(int rate, const char *name_share, const char *name_late);
void pair_costs(void);

/* ---- papi_peers.c --------------------------------------------------------- */

void papi_peers_init(void);
void papi_peers_start(struct bcase *hl, struct bcase *read, struct bcase *read_kfm,
                      struct bcase *hl_kfm, const char *kfm_events);
void papi_peers_stop(void);
#ifdef KFM_HAVE_PAPI
#define HLPROC_ARG "--papi-hl-child"
int hlproc_child_main(int argc, char **argv);
#endif

#endif
