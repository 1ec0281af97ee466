/*
 * test_thread_matrix.c - every thread can create, run and destroy sessions
 * at every level, alone or at once (issue "Reliability", item 1: a
 * COMPREHENSIVE session on any thread after the first crashed in PAPI's
 * event-name lookup, the thread being unknown to PAPI).
 *
 * For each level: sessions on the main thread, on two other threads one
 * after the other, on four threads at once (one session each) and one
 * session shared by four threads; a session created on thread A, run on
 * thread B and destroyed on thread C while B still lives; fifty sessions
 * created and destroyed by fifty fresh threads (twenty under TSan).  The
 * very first session of the process is created on a worker thread that
 * then ends, so PAPI is initialised (and its first thread registered) on a
 * thread that is gone when the others come, as in a Python program whose
 * first Debugger runs in a thread pool.
 *
 * Ground truth: every worker makes NPAIRS outer pairs with an inner pair in
 * every other one, then one pair of its own "busy.<k>" node around a busy
 * loop, so each session's counts are exact and known.  Where the papi
 * backend is available, COMPREHENSIVE sessions must have it enabled, and
 * each busy node's first PAPI counter (instructions, or the task clock on
 * machines without a PMU) must be non-zero: every thread counted.  PAPI's
 * thread list must not grow with threads that have ended.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <pthread.h>
#include <stdint.h>

#ifdef KFM_TEST_REGISTERED_PAPI
#include <papi.h>
#endif

#include "kfm_kernels.h"
#include "kfm_test.h"

#define NPAIRS 200      /* outer pairs per worker; inner pairs: NPAIRS / 2 */
#define NPAIRS_SHORT 20 /* per worker in the fresh-thread rounds */
#define NWIDE 4         /* threads at once */
/* Sessions from fresh threads.  Under ThreadSanitizer a session costs ~40 ms
 * to create and ~25 ms to report at DETAILED and above: 20 rounds there still
 * give new threads the ids and stacks of ended ones many times over. */
#if defined(__SANITIZE_THREAD__)
#define NFRESH 20
#else
#define NFRESH 50
#endif
#define BUSY_MS 2.0

static const char *const levels[] = {"basic", "standard", "detailed", "comprehensive"};
static int papi_available; /* the papi backend probes available in this process */

/* ---------------------------------------------------------------------- */
/* Workers and checks.                                                     */

struct work {
  kfm_session_t *s;
  int busy_idx; /* this worker's busy node: "busy.<busy_idx>" */
  int pairs;
  int rc;
  char where[96]; /* the failing call, for the message */
};

#define WORK_TRY(w, call)                                                                          \
  do {                                                                                             \
    if ((w)->rc == 0) {                                                                            \
      (w)->rc = (call);                                                                            \
      if ((w)->rc != 0) {                                                                          \
        snprintf((w)->where, sizeof(w)->where, "%s", #call);                                       \
      }                                                                                            \
    }                                                                                              \
  } while (0)

/* The transitions of one worker on the calling thread (the session runs). */
static void work_run(struct work *w) {
  kfm_node_id_t outer, inner, busy;
  char name[32];
  snprintf(name, sizeof name, "busy.%d", w->busy_idx);
  WORK_TRY(w, kfm_node_register(w->s, "outer", &outer));
  WORK_TRY(w, kfm_node_register(w->s, "inner", &inner));
  WORK_TRY(w, kfm_node_register(w->s, name, &busy));
  for (int i = 0; i < w->pairs && w->rc == 0; i++) {
    WORK_TRY(w, kfm_enter(w->s, outer));
    if (i & 1) {
      WORK_TRY(w, kfm_enter(w->s, inner));
      WORK_TRY(w, kfm_exit(w->s, inner));
    }
    WORK_TRY(w, kfm_exit(w->s, outer));
  }
  WORK_TRY(w, kfm_enter(w->s, busy));
  kfmk_busy_ms(BUSY_MS);
  WORK_TRY(w, kfm_exit(w->s, busy));
}

static void work_report(const struct work *w, const char *what) {
  if (w->rc != 0) {
    fprintf(stderr, "\n%s: %s -> %s (%s)\n", what, w->where, kfm_err_name(w->rc), kfm_errmsg(w->s));
  }
  CU_ASSERT_EQUAL(w->rc, 0);
}

static int session_new(kfm_session_t **s, const char *level) {
  char cfg[64];
  snprintf(cfg, sizeof cfg, "level=%s", level);
  return kfm_session_create_str(s, cfg);
}

/*
 * The stopped session holds exactly the work of workers busy nodes
 * busy.0 .. busy.<nbusy-1>, each done by one of `threads` threads, each
 * worker having made `pairs` outer pairs.
 */
static void check_session(kfm_session_t *s, const char *level, int nbusy, int pairs,
                          uint32_t threads) {
  kfm_report_t *r = NULL;
  kfm_node_stats_t n;
  kfm_summary_t sum;
  int counters = papi_available && strcmp(level, "comprehensive") == 0;
  int first_papi = -1;
  KT_OK(s, kfm_session_report(s, &r));
  KT_OK(s, kfm_report_node_by_name(r, "outer", &n));
  CU_ASSERT_EQUAL(n.count, (uint64_t)nbusy * (uint64_t)pairs);
  CU_ASSERT_EQUAL(n.active, 0);
  KT_OK(s, kfm_report_node_by_name(r, "inner", &n));
  CU_ASSERT_EQUAL(n.count, (uint64_t)nbusy * (uint64_t)(pairs / 2));
  kfm_report_summary(r, &sum);
  CU_ASSERT_EQUAL(sum.unbalanced, 0);
  CU_ASSERT_EQUAL(sum.threads, threads);
  if (counters) {
    kfm_backend_status_t bs;
    int enabled = 0;
    for (size_t i = 0; i < kfm_report_backend_count(r); i++) {
      if (kfm_report_backend(r, i, &bs) == 0 && strcmp(bs.name, "papi") == 0) {
        enabled = bs.enabled;
        if (!enabled) {
          fprintf(stderr, "\npapi not enabled: %s\n", bs.reason);
        }
      }
    }
    CU_ASSERT_EQUAL(enabled, 1);
    for (size_t i = 0; i < kfm_report_metric_count(r) && first_papi < 0; i++) {
      kfm_metric_info_t mi;
      if (kfm_report_metric(r, i, &mi) == 0 && strcmp(mi.backend, "papi") == 0) {
        first_papi = (int)i;
      }
    }
    CU_ASSERT(first_papi >= 0);
  }
  for (int k = 0; k < nbusy; k++) {
    char name[32];
    snprintf(name, sizeof name, "busy.%d", k);
    KT_OK(s, kfm_report_node_by_name(r, name, &n));
    CU_ASSERT_EQUAL(n.count, 1);
    if (first_papi >= 0) {
      if (!(n.inclusive[first_papi] > 0)) {
        fprintf(stderr, "\n%s: %s: first papi counter is %g\n", level, name,
                n.inclusive[first_papi]);
      }
      CU_ASSERT(n.inclusive[first_papi] > 0);
    }
  }
  kfm_report_free(r);
  if (counters) {
    char *json = NULL;
    KT_OK(s, kfm_session_backend_json(s, "papi", &json));
    int clean = strstr(json, "\"thread_open_failures\":0") != NULL &&
                strstr(json, "\"read_errors\":0") != NULL;
    if (!clean) {
      fprintf(stderr, "\npapi: %s\n", json);
    }
    CU_ASSERT(clean);
    kfm_free(json);
  }
}

/* One whole life on the calling thread: create, start, work, stop, check, destroy. */
static int whole_life(const char *level, int pairs) {
  kfm_session_t *s = NULL;
  struct work w = {.busy_idx = 0, .pairs = pairs};
  int rc = session_new(&s, level);
  if (rc != 0) {
    fprintf(stderr, "\n%s: create -> %s (%s)\n", level, kfm_err_name(rc), kfm_errmsg(NULL));
    CU_ASSERT_EQUAL(rc, 0);
    return rc;
  }
  w.s = s;
  WORK_TRY(&w, kfm_session_start(s));
  work_run(&w);
  WORK_TRY(&w, kfm_session_stop(s));
  work_report(&w, level);
  if (w.rc == 0) {
    check_session(s, level, 1, pairs, 1);
  }
  kfm_session_destroy(s);
  return w.rc;
}

struct life {
  const char *level;
  int pairs;
  pthread_barrier_t *bar; /* may be NULL */
  int rc;
};

static void *life_main(void *p) {
  struct life *l = p;
  if (l->bar) {
    pthread_barrier_wait(l->bar); /* the sessions of all threads overlap */
  }
  l->rc = whole_life(l->level, l->pairs);
  return NULL;
}

static int life_on_thread(const char *level, int pairs) {
  struct life l = {.level = level, .pairs = pairs};
  pthread_t th;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, life_main, &l), 0);
  pthread_join(th, NULL);
  return l.rc;
}

/* Registered PAPI threads (0 without the papi backend). */
static int papi_threads(void) {
#ifdef KFM_TEST_REGISTERED_PAPI
  int n = 0;
  if (papi_available && PAPI_list_threads(NULL, &n) == PAPI_OK) {
    return n;
  }
#endif
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Scenarios, each run at one level.                                       */

/* (a) main thread, then two threads one after the other. */
static void scen_sequential(const char *level) {
  CU_ASSERT_EQUAL(whole_life(level, NPAIRS), 0);
  for (int i = 0; i < 2; i++) {
    CU_ASSERT_EQUAL(life_on_thread(level, NPAIRS), 0);
  }
  CU_ASSERT_EQUAL(whole_life(level, NPAIRS), 0); /* main again, after them */
}

/* (a) four threads at once, each its own session. */
static void scen_wide(const char *level) {
  pthread_t th[NWIDE];
  struct life l[NWIDE];
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, NWIDE);
  for (int i = 0; i < NWIDE; i++) {
    l[i] = (struct life){.level = level, .pairs = NPAIRS, .bar = &bar};
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, life_main, &l[i]), 0);
  }
  for (int i = 0; i < NWIDE; i++) {
    pthread_join(th[i], NULL);
    CU_ASSERT_EQUAL(l[i].rc, 0);
  }
  pthread_barrier_destroy(&bar);
}

/* (a) one session shared by four threads at once. */
struct shared {
  struct work w;
  pthread_barrier_t *bar;
};

static void *shared_main(void *p) {
  struct shared *sh = p;
  pthread_barrier_wait(sh->bar);
  work_run(&sh->w);
  return NULL;
}

static void scen_shared(const char *level) {
  kfm_session_t *s = NULL;
  pthread_t th[NWIDE];
  struct shared sh[NWIDE];
  pthread_barrier_t bar;
  KT_OK(NULL, session_new(&s, level));
  KT_OK(s, kfm_session_start(s));
  pthread_barrier_init(&bar, NULL, NWIDE);
  for (int i = 0; i < NWIDE; i++) {
    sh[i] = (struct shared){.w = {.s = s, .busy_idx = i, .pairs = NPAIRS}, .bar = &bar};
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, shared_main, &sh[i]), 0);
  }
  for (int i = 0; i < NWIDE; i++) {
    pthread_join(th[i], NULL);
    work_report(&sh[i].w, level);
  }
  pthread_barrier_destroy(&bar);
  KT_OK(s, kfm_session_stop(s));
  check_session(s, level, NWIDE, NPAIRS, NWIDE);
  kfm_session_destroy(s);
}

/*
 * (b) Created on A, run on B, destroyed on C while B lives (its counters
 * are closed from C); B then runs a session of its own, which must count.
 */
struct handoff {
  const char *level;
  kfm_session_t *s;
  struct work w;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int destroyed;
  int create_rc, destroy_rc, again_rc;
};

static void *handoff_create(void *p) {
  struct handoff *h = p;
  h->create_rc = session_new(&h->s, h->level);
  if (h->create_rc == 0) {
    h->create_rc = kfm_session_start(h->s);
  }
  return NULL;
}

static void *handoff_run(void *p) {
  struct handoff *h = p;
  h->w.s = h->s;
  work_run(&h->w);
  pthread_mutex_lock(&h->mu);
  h->destroyed = h->destroyed ? h->destroyed : 1; /* 1: ran, waiting */
  pthread_cond_broadcast(&h->cv);
  while (h->destroyed < 2) {
    pthread_cond_wait(&h->cv, &h->mu);
  }
  pthread_mutex_unlock(&h->mu);
  /* The session that used this thread is gone (closed from C): a new one counts. */
  h->again_rc = whole_life(h->level, NPAIRS);
  return NULL;
}

static void *handoff_destroy(void *p) {
  struct handoff *h = p;
  h->destroy_rc = kfm_session_stop(h->s);
  if (h->destroy_rc == 0) {
    check_session(h->s, h->level, 1, NPAIRS, 1);
  }
  kfm_session_destroy(h->s);
  h->s = NULL;
  return NULL;
}

static void scen_handoff(const char *level) {
  struct handoff h = {.level = level, .w = {.busy_idx = 0, .pairs = NPAIRS}};
  pthread_t a, b, c;
  pthread_mutex_init(&h.mu, NULL);
  pthread_cond_init(&h.cv, NULL);
  CU_ASSERT_EQUAL_FATAL(pthread_create(&a, NULL, handoff_create, &h), 0);
  pthread_join(a, NULL);
  if (h.create_rc != 0) {
    fprintf(stderr, "\n%s: create/start on A -> %s (%s)\n", level, kfm_err_name(h.create_rc),
            kfm_errmsg(h.s));
  }
  CU_ASSERT_EQUAL_FATAL(h.create_rc, 0);
  CU_ASSERT_EQUAL_FATAL(pthread_create(&b, NULL, handoff_run, &h), 0);
  pthread_mutex_lock(&h.mu);
  while (h.destroyed < 1) {
    pthread_cond_wait(&h.cv, &h.mu);
  }
  pthread_mutex_unlock(&h.mu);
  CU_ASSERT_EQUAL_FATAL(pthread_create(&c, NULL, handoff_destroy, &h), 0);
  pthread_join(c, NULL);
  pthread_mutex_lock(&h.mu);
  h.destroyed = 2;
  pthread_cond_broadcast(&h.cv);
  pthread_mutex_unlock(&h.mu);
  pthread_join(b, NULL);
  work_report(&h.w, level);
  CU_ASSERT_EQUAL(h.destroy_rc, 0);
  CU_ASSERT_EQUAL(h.again_rc, 0);
  pthread_cond_destroy(&h.cv);
  pthread_mutex_destroy(&h.mu);
}

/* (c) NFRESH sessions, each created and destroyed by a fresh thread; PAPI forgets them. */
static void scen_fresh(const char *level) {
  int before = papi_threads(), failures = 0;
  for (int i = 0; i < NFRESH && failures < 3; i++) {
    failures += life_on_thread(level, NPAIRS_SHORT) != 0;
  }
  CU_ASSERT_EQUAL(failures, 0);
  CU_ASSERT_EQUAL(papi_threads(), before);
}

/* On a worker: the backends' verdicts (the first PAPI call of the process), then a session. */
static void *first_main(void *p) {
  struct life *l = p;
  for (size_t i = 0; i < kfm_backend_count(); i++) {
    kfm_backend_status_t bs;
    if (kfm_backend_probe(i, &bs) == 0 && strcmp(bs.name, "papi") == 0) {
      papi_available = bs.available;
      printf("\n    papi: %s", bs.available ? "available" : bs.reason);
    }
  }
  l->rc = whole_life(l->level, l->pairs);
  return NULL;
}

/* The process's first session, on a worker that ends before any other thread comes. */
static void test_first_session_on_worker(void) {
  struct life l = {.level = "comprehensive", .pairs = NPAIRS};
  pthread_t th;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, first_main, &l), 0);
  pthread_join(th, NULL);
  CU_ASSERT_EQUAL(l.rc, 0);
  CU_ASSERT_EQUAL(life_on_thread("comprehensive", NPAIRS), 0);
  CU_ASSERT_EQUAL(whole_life("comprehensive", NPAIRS), 0);
}

#define LEVEL_CASES(i, lv)                                                                         \
  static void test_seq_##lv(void) {                                                                \
    scen_sequential(levels[i]);                                                                    \
  }                                                                                                \
  static void test_wide_##lv(void) {                                                               \
    scen_wide(levels[i]);                                                                          \
  }                                                                                                \
  static void test_shared_##lv(void) {                                                             \
    scen_shared(levels[i]);                                                                        \
  }                                                                                                \
  static void test_handoff_##lv(void) {                                                            \
    scen_handoff(levels[i]);                                                                       \
  }                                                                                                \
  static void test_fresh_##lv(void) {                                                              \
    scen_fresh(levels[i]);                                                                         \
  }

LEVEL_CASES(0, basic)
LEVEL_CASES(1, standard)
LEVEL_CASES(2, detailed)
LEVEL_CASES(3, comprehensive)

#define KT_STR2(x) #x
#define KT_STR(x) KT_STR2(x)
#define LEVEL_ROWS(lv)                                                                             \
  {#lv ": main, then 2 threads in turn", test_seq_##lv},                                           \
      {#lv ": 4 threads at once, a session each", test_wide_##lv},                                 \
      {#lv ": one session shared by 4 threads", test_shared_##lv},                                 \
      {#lv ": created on A, run on B, destroyed on C", test_handoff_##lv}, {                       \
#lv ": " KT_STR(NFRESH) " sessions from fresh threads", test_fresh_##lv                        \
  }

int main(void) {
  unsetenv("KFM_CONFIG");
  static const struct kt_case cases[] = {
      {"first session of the process on a worker thread", test_first_session_on_worker},
      LEVEL_ROWS(basic),
      LEVEL_ROWS(standard),
      LEVEL_ROWS(detailed),
      LEVEL_ROWS(comprehensive),
      {NULL, NULL},
  };
  /* No probe here: the first case makes the process's first PAPI call on a worker. */
  return kt_run("thread_matrix", cases);
}
