/*
 * test_threads.c - many threads at once: exact counts, per-thread state
 * folded into the session when a thread exits (nothing lost), slots reused
 * by later threads, and max_threads enforced with a clear error.
 */
#include <pthread.h>

#include "kfm_test.h"

#define NTHREADS 8
#define NPAIRS 100000

struct worker {
  kfm_session_t *s;
  kfm_node_id_t outer, inner;
  int pairs;
  int rc;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < w->pairs && w->rc == 0; i++) {
    w->rc = kfm_enter(w->s, w->outer);
    if (w->rc == 0 && (i & 1)) {
      w->rc = kfm_enter(w->s, w->inner);
      if (w->rc == 0) {
        w->rc = kfm_exit(w->s, w->inner);
      }
    }
    if (w->rc == 0) {
      w->rc = kfm_exit(w->s, w->outer);
    }
  }
  return NULL;
}

static void run_workers(kfm_session_t *s, kfm_node_id_t outer, kfm_node_id_t inner, int nthreads,
                        int pairs) {
  pthread_t th[NTHREADS];
  struct worker w[NTHREADS];
  for (int i = 0; i < nthreads; i++) {
    w[i] = (struct worker){.s = s, .outer = outer, .inner = inner, .pairs = pairs};
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
  }
  for (int i = 0; i < nthreads; i++) {
    pthread_join(th[i], NULL);
    if (w[i].rc) {
      fprintf(stderr, "\nworker %d: %s (%s)\n", i, kfm_err_name(w[i].rc), kfm_errmsg(s));
    }
    CU_ASSERT_EQUAL(w[i].rc, 0);
  }
}

static void check_counts(kfm_session_t *s, uint64_t outer, uint64_t inner, uint32_t threads) {
  kfm_report_t *r;
  kfm_node_stats_t n;
  kfm_summary_t sum;
  KT_OK(s, kfm_session_report(s, &r));
  KT_OK(s, kfm_report_node_by_name(r, "outer", &n));
  CU_ASSERT_EQUAL(n.count, outer);
  KT_OK(s, kfm_report_node_by_name(r, "inner", &n));
  CU_ASSERT_EQUAL(n.count, inner);
  kfm_report_summary(r, &sum);
  CU_ASSERT_EQUAL(sum.unbalanced, 0);
  CU_ASSERT_EQUAL(sum.threads, threads);
  for (size_t i = 0; i < kfm_report_edge_count(r, KFM_EDGE_NESTED); i++) {
    kfm_edge_t e;
    KT_OK(s, kfm_report_edge(r, KFM_EDGE_NESTED, i, &e));
    CU_ASSERT_EQUAL(e.count, e.from == KFM_NODE_ROOT ? outer : inner);
  }
  kfm_report_free(r);
}

static void test_eight_threads_exact(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,rate=1000"));
  kfm_node_id_t outer, inner;
  KT_OK(s, kfm_node_register(s, "outer", &outer));
  KT_OK(s, kfm_node_register(s, "inner", &inner));
  KT_OK(s, kfm_session_start(s));
  run_workers(s, outer, inner, NTHREADS, NPAIRS);
  KT_OK(s, kfm_session_stop(s));
  /* All 8 threads have exited: their data was folded into the session. */
  check_counts(s, (uint64_t)NTHREADS * NPAIRS, (uint64_t)NTHREADS * NPAIRS / 2, NTHREADS);
  kfm_session_destroy(s);
}

static void test_detailed_threads_exact(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=detailed,rate=500"));
  kfm_node_id_t outer, inner;
  KT_OK(s, kfm_node_register(s, "outer", &outer));
  KT_OK(s, kfm_node_register(s, "inner", &inner));
  KT_OK(s, kfm_session_start(s));
  run_workers(s, outer, inner, 4, 2000);
  KT_OK(s, kfm_session_stop(s));
  check_counts(s, 8000, 4000, 4);
  kfm_report_t *r;
  kfm_summary_t sum;
  KT_OK(s, kfm_session_report(s, &r));
  kfm_report_summary(r, &sum);
  /* Every transition became a trace event or was counted as dropped. */
  CU_ASSERT_EQUAL(sum.events + sum.events_dropped, 2 * (8000 + 4000));
  kfm_report_free(r);
  kfm_session_destroy(s);
}

static void test_slots_are_reused(void) {
  /* 5 rounds of 3 threads with room for 3: only reuse makes this work. */
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,rate=off,max_threads=3"));
  kfm_node_id_t outer, inner;
  KT_OK(s, kfm_node_register(s, "outer", &outer));
  KT_OK(s, kfm_node_register(s, "inner", &inner));
  KT_OK(s, kfm_session_start(s));
  for (int round = 0; round < 5; round++) {
    run_workers(s, outer, inner, 3, 100);
    /* Mid-run reports already include the exited threads. */
    check_counts(s, 300u * (round + 1), 150u * (round + 1), 3u * (round + 1));
  }
  KT_OK(s, kfm_session_stop(s));
  kfm_session_destroy(s);
}

struct holder {
  kfm_session_t *s;
  kfm_node_id_t id;
  pthread_barrier_t *entered, *release;
  int rc;
};

static void *holder_main(void *arg) {
  struct holder *h = arg;
  h->rc = kfm_enter(h->s, h->id);
  pthread_barrier_wait(h->entered);
  pthread_barrier_wait(h->release);
  if (h->rc == 0) {
    h->rc = kfm_exit(h->s, h->id);
  }
  return NULL;
}

static void test_max_threads_error(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,rate=off,max_threads=2"));
  kfm_node_id_t id;
  KT_OK(s, kfm_node_register(s, "hold", &id));
  KT_OK(s, kfm_session_start(s));
  pthread_barrier_t entered, release;
  pthread_barrier_init(&entered, NULL, 3);
  pthread_barrier_init(&release, NULL, 3);
  struct holder h[2];
  pthread_t th[2];
  for (int i = 0; i < 2; i++) {
    h[i] = (struct holder){.s = s, .id = id, .entered = &entered, .release = &release};
    pthread_create(&th[i], NULL, holder_main, &h[i]);
  }
  pthread_barrier_wait(&entered);
  /* Two live threads hold both slots: a third thread is refused, clearly. */
  CU_ASSERT_EQUAL(kfm_enter(s, id), KFM_EFULL);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "max_threads"));
  pthread_barrier_wait(&release);
  for (int i = 0; i < 2; i++) {
    pthread_join(th[i], NULL);
    CU_ASSERT_EQUAL(h[i].rc, 0);
  }
  /* Their slots are free again. */
  KT_OK(s, kfm_enter(s, id));
  KT_OK(s, kfm_exit(s, id));
  kfm_report_t *r;
  kfm_node_stats_t n;
  KT_OK(s, kfm_session_report(s, &r));
  KT_OK(s, kfm_report_node_by_name(r, "hold", &n));
  CU_ASSERT_EQUAL(n.count, 3);
  kfm_report_free(r);
  pthread_barrier_destroy(&entered);
  pthread_barrier_destroy(&release);
  kfm_session_destroy(s);
}

static void *exit_with_open_node(void *arg) {
  struct holder *h = arg;
  h->rc = kfm_enter(h->s, h->id);
  return NULL;
}

static void test_thread_exit_inside_node(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,rate=off"));
  kfm_node_id_t id;
  KT_OK(s, kfm_node_register(s, "never closed", &id));
  KT_OK(s, kfm_session_start(s));
  struct holder h = {.s = s, .id = id};
  pthread_t th;
  pthread_create(&th, NULL, exit_with_open_node, &h);
  pthread_join(th, NULL);
  CU_ASSERT_EQUAL(h.rc, 0);
  kfm_report_t *r;
  kfm_summary_t sum;
  KT_OK(s, kfm_session_report(s, &r));
  kfm_report_summary(r, &sum);
  CU_ASSERT_EQUAL(sum.unbalanced, 1);
  CU_ASSERT_EQUAL(kfm_report_node_by_name(r, "never closed", NULL), KFM_ENONODE);
  kfm_report_free(r);
  kfm_session_destroy(s);
}

int main(void) {
  unsetenv("KFM_CONFIG");
  static const struct kt_case cases[] = {
      {"8 threads x 100k transitions give exact counts", test_eight_threads_exact},
      {"DETAILED with trace: exact counts and events", test_detailed_threads_exact},
      {"exited threads are folded and their slots reused", test_slots_are_reused},
      {"max_threads exhausted is a clear error", test_max_threads_error},
      {"a thread exiting inside a node is counted", test_thread_exit_inside_node},
      {NULL, NULL},
  };
  return kt_run("threads", cases);
}
