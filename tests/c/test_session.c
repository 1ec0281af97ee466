/*
 * test_session.c - the session life cycle, node registry, timing ground
 * truth, nesting arithmetic, graph edges and every documented error path.
 * Errors must leave the session usable and lose no data.
 */
#include <math.h>
#include <pthread.h>
#include <time.h>

#include "internal.h" /* the aggregates a restart clears */
#include "kfm_kernels.h"
#include "kfm_test.h"

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static kfm_session_t *new_session(const char *cfg) {
  kfm_session_t *s = NULL;
  int rc = kfm_session_create_str(&s, cfg);
  if (rc) {
    fprintf(stderr, "create(%s): %s\n", cfg, kfm_errmsg(NULL));
  }
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  return s;
}

static void test_registry(void) {
  kfm_session_t *s = new_session("level=basic,max_nodes=3");
  kfm_node_id_t a, b, a2, c, d;
  KT_OK(s, kfm_node_register(s, "alpha", &a));
  KT_OK(s, kfm_node_register(s, "beta", &b));
  KT_OK(s, kfm_node_register(s, "alpha", &a2));
  CU_ASSERT_EQUAL(a, a2);
  CU_ASSERT_NOT_EQUAL(a, b);
  CU_ASSERT_STRING_EQUAL(kfm_node_name(s, b), "beta");
  CU_ASSERT_PTR_NULL(kfm_node_name(s, 99));
  CU_ASSERT_EQUAL(kfm_node_register(s, "", &c), KFM_ENAME);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "empty"));
  char longname[KFM_NAME_MAX + 2];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  CU_ASSERT_EQUAL(kfm_node_register(s, longname, &c), KFM_ENAME);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "too long"));
  longname[KFM_NAME_MAX] = '\0';
  KT_OK(s, kfm_node_register(s, longname, &c));
  CU_ASSERT_EQUAL(kfm_node_register(s, "delta", &d), KFM_EFULL);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "'delta'"));
  CU_ASSERT_EQUAL(kfm_node_register(s, NULL, &d), KFM_ENAME);
  kfm_session_destroy(s);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void test_sleep_20ms(void) {
  kfm_session_t *s = new_session("level=basic,rate=off");
  kfm_node_id_t id;
  KT_OK(s, kfm_node_register(s, "sleep20", &id));
  KT_OK(s, kfm_session_start(s));
  double wall[5];
  for (int i = 0; i < 5; i++) {
    double t0 = now_ns();
    KT_OK(s, kfm_enter(s, id));
    kfmk_sleep_ms(20);
    KT_OK(s, kfm_exit(s, id));
    wall[i] = now_ns() - t0;
  }
  KT_OK(s, kfm_session_stop(s));
  qsort(wall, 5, sizeof wall[0], cmp_double);
  kfm_report_t *r;
  kfm_node_stats_t n;
  KT_OK(s, kfm_session_report(s, &r));
  KT_OK(s, kfm_report_node_by_name(r, "sleep20", &n));
  CU_ASSERT_EQUAL(n.count, 5);
  /* The ground truth: 20 ms within 10% (sleeps only overshoot). */
  KT_NEAR(n.mean_ns, 20e6, 0.10);
  CU_ASSERT_TRUE(n.min_ns >= 19.9e6);
  /* Against the test's own clock around each activation: min/max exact to
   * the bracket, percentiles to the histogram's 6.25% half-bucket. */
  CU_ASSERT_TRUE(n.min_ns <= wall[0] && n.max_ns <= wall[4] && n.max_ns >= n.min_ns);
  KT_NEAR(n.max_ns, wall[4], 0.05); /* the bracket holds the first-use slot set-up */
  KT_NEAR(n.p50_ns, wall[2], 0.10);
  KT_NEAR(n.p99_ns, wall[4], 0.10);
  CU_ASSERT_TRUE(n.stddev_ns <= wall[4] - wall[0] + 1e5);
  CU_ASSERT_DOUBLE_EQUAL(n.exclusive_ns, n.total_ns, 1);
  CU_ASSERT_TRUE(isnan(n.peak_rss)); /* BASIC reads no memory */
  kfm_summary_t sum;
  kfm_report_summary(r, &sum);
  CU_ASSERT_TRUE(sum.wall_ns >= n.total_ns && sum.wall_ns < n.total_ns + 50e6);
  CU_ASSERT_EQUAL(sum.unbalanced, 0);
  CU_ASSERT_EQUAL(sum.threads, 1);
  kfm_report_free(r);
  kfm_session_destroy(s);
}

static void test_percentiles(void) {
  /* 80 activations of 2 ms and 20 of 20 ms: p50 and p90 fall in different
   * groups.  The expected figures come from the test's own clock around
   * each activation (sleeps overshoot more on a loaded machine), by the
   * nearest-rank rule the engine uses. */
  kfm_session_t *s = new_session("level=basic,rate=off");
  kfm_node_id_t id;
  KT_OK(s, kfm_node_register(s, "mix", &id));
  KT_OK(s, kfm_session_start(s));
  double wall[100], sum = 0, sumsq = 0;
  for (int i = 0; i < 100; i++) {
    double t0 = now_ns();
    KT_OK(s, kfm_enter(s, id));
    kfmk_sleep_ms(i % 5 == 4 ? 20 : 2);
    KT_OK(s, kfm_exit(s, id));
    wall[i] = now_ns() - t0;
    sum += wall[i];
    sumsq += wall[i] * wall[i];
  }
  KT_OK(s, kfm_session_stop(s));
  qsort(wall, 100, sizeof wall[0], cmp_double);
  kfm_report_t *r;
  kfm_node_stats_t n;
  KT_OK(s, kfm_session_report(s, &r));
  KT_OK(s, kfm_report_node_by_name(r, "mix", &n));
  CU_ASSERT_EQUAL(n.count, 100);
  KT_NEAR(n.p50_ns, wall[49], 0.08);
  KT_NEAR(n.p90_ns, wall[89], 0.08);
  KT_NEAR(n.p99_ns, wall[98], 0.08);
  CU_ASSERT_TRUE(wall[49] < 5e6 && wall[89] > 19e6); /* the groups are apart */
  KT_NEAR(n.mean_ns, sum / 100, 0.02);
  double sd = sqrt((sumsq - sum * sum / 100) / 99);
  KT_NEAR(n.stddev_ns, sd, 0.05);
  kfm_report_free(r);
  kfm_session_destroy(s);
}

static void test_nesting_adds_up(void) {
  kfm_session_t *s = new_session("level=basic,rate=off");
  kfm_node_id_t p, a, b;
  KT_OK(s, kfm_node_register(s, "parent", &p));
  KT_OK(s, kfm_node_register(s, "child_a", &a));
  KT_OK(s, kfm_node_register(s, "child_b", &b));
  KT_OK(s, kfm_session_start(s));
  /* Wall time measured around each child by the test itself: the ground
   * truth even when the machine is loaded and sleeps overshoot. */
  double wall_a = 0, wall_b = 0;
  for (int i = 0; i < 3; i++) {
    KT_OK(s, kfm_enter(s, p));
    kfmk_sleep_ms(4);
    double t0 = now_ns();
    KT_OK(s, kfm_enter(s, a));
    CU_ASSERT_EQUAL(kfm_depth(s), 2);
    kfmk_sleep_ms(5);
    KT_OK(s, kfm_exit(s, a));
    double t1 = now_ns();
    KT_OK(s, kfm_enter(s, b));
    kfmk_sleep_ms(3);
    KT_OK(s, kfm_exit(s, b));
    double t2 = now_ns();
    wall_a += t1 - t0;
    wall_b += t2 - t1;
    KT_OK(s, kfm_exit(s, p));
  }
  CU_ASSERT_EQUAL(kfm_depth(s), 0);
  KT_OK(s, kfm_session_stop(s));
  kfm_report_t *r;
  kfm_node_stats_t np, na, nb;
  KT_OK(s, kfm_session_report(s, &r));
  KT_OK(s, kfm_report_node_by_name(r, "parent", &np));
  KT_OK(s, kfm_report_node_by_name(r, "child_a", &na));
  KT_OK(s, kfm_report_node_by_name(r, "child_b", &nb));
  CU_ASSERT_EQUAL(np.count, 3);
  CU_ASSERT_EQUAL(na.count, 3);
  /* Exclusive times of the parent and its children add up to the parent's
   * inclusive time exactly (same ticks, one conversion). */
  double sum = np.exclusive_ns + na.exclusive_ns + nb.exclusive_ns;
  CU_ASSERT_DOUBLE_EQUAL(sum, np.total_ns, np.total_ns * 1e-9 + 1);
  CU_ASSERT_TRUE(np.exclusive_ns >= 12e6);
  KT_NEAR(na.total_ns, wall_a, 0.05);
  KT_NEAR(nb.total_ns, wall_b, 0.05);
  CU_ASSERT_TRUE(na.total_ns >= 15e6 && nb.total_ns >= 9e6);

  /* Edges: root->parent x3, parent->a x3, parent->b x3; a->b follows x3,
   * parent->parent follows x2 at the top level. */
  size_t nn = kfm_report_edge_count(r, KFM_EDGE_NESTED);
  CU_ASSERT_EQUAL(nn, 3);
  int found = 0;
  for (size_t i = 0; i < nn; i++) {
    kfm_edge_t e;
    KT_OK(s, kfm_report_edge(r, KFM_EDGE_NESTED, i, &e));
    CU_ASSERT_EQUAL(e.count, 3);
    found += (e.from == KFM_NODE_ROOT && e.to == p) || (e.from == p && e.to == a) ||
             (e.from == p && e.to == b);
  }
  CU_ASSERT_EQUAL(found, 3);
  size_t nf = kfm_report_edge_count(r, KFM_EDGE_FOLLOWS);
  CU_ASSERT_EQUAL(nf, 2);
  for (size_t i = 0; i < nf; i++) {
    kfm_edge_t e;
    KT_OK(s, kfm_report_edge(r, KFM_EDGE_FOLLOWS, i, &e));
    if (e.from == a) {
      CU_ASSERT_EQUAL(e.to, b);
      CU_ASSERT_EQUAL(e.count, 3);
    } else {
      CU_ASSERT_EQUAL(e.from, p);
      CU_ASSERT_EQUAL(e.to, p);
      CU_ASSERT_EQUAL(e.count, 2);
    }
  }
  CU_ASSERT_EQUAL(kfm_report_edge(r, KFM_EDGE_FOLLOWS, 5, &(kfm_edge_t){0}), KFM_ERANGE);
  kfm_report_free(r);
  kfm_session_destroy(s);
}

static void test_state_errors(void) {
  kfm_session_t *s = new_session("level=basic,rate=off");
  kfm_node_id_t id;
  KT_OK(s, kfm_node_register(s, "n", &id));
  CU_ASSERT_EQUAL(kfm_enter(s, id), KFM_ESTATE);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "not started"));
  CU_ASSERT_EQUAL(kfm_session_stop(s), KFM_ESTATE);
  KT_OK(s, kfm_session_start(s));
  CU_ASSERT_EQUAL(kfm_session_start(s), KFM_ESTATE);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "already running"));
  KT_OK(s, kfm_enter(s, id));
  KT_OK(s, kfm_exit(s, id));
  KT_OK(s, kfm_session_stop(s));
  CU_ASSERT_EQUAL(kfm_enter(s, id), KFM_ESTATE);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "stopped"));
  CU_ASSERT_EQUAL(kfm_exit(s, id), KFM_ESTATE);
  CU_ASSERT_EQUAL(kfm_session_start(s), KFM_ESTATE);
  CU_ASSERT_EQUAL(kfm_session_stop(s), KFM_ESTATE);
  /* Results survive the misuse. */
  kfm_report_t *r;
  kfm_node_stats_t n;
  KT_OK(s, kfm_session_report(s, &r));
  KT_OK(s, kfm_report_node_by_name(r, "n", &n));
  CU_ASSERT_EQUAL(n.count, 1);
  kfm_report_free(r);
  kfm_session_destroy(s);
  CU_ASSERT_EQUAL(kfm_enter(NULL, 0), KFM_EINVAL);
  CU_ASSERT_EQUAL(kfm_session_start(NULL), KFM_EINVAL);
  kfm_session_destroy(NULL);
}

static void test_unbalanced(void) {
  kfm_session_t *s = new_session("level=basic,rate=off");
  kfm_node_id_t a, b, c;
  KT_OK(s, kfm_node_register(s, "a", &a));
  KT_OK(s, kfm_node_register(s, "b", &b));
  KT_OK(s, kfm_node_register(s, "c", &c));
  KT_OK(s, kfm_session_start(s));
  CU_ASSERT_EQUAL(kfm_exit(s, a), KFM_ENOTENTERED);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "'a'"));
  CU_ASSERT_EQUAL(kfm_enter(s, 77), KFM_ENONODE);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "77"));
  CU_ASSERT_EQUAL(kfm_exit(s, 77), KFM_ENONODE);
  KT_OK(s, kfm_enter(s, a));
  KT_OK(s, kfm_enter(s, b));
  CU_ASSERT_EQUAL(kfm_exit(s, a), KFM_EORDER);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "'b'"));
  CU_ASSERT_EQUAL(kfm_exit(s, c), KFM_ENOTENTERED);
  /* Nothing was popped: the stack is intact and closes normally. */
  CU_ASSERT_EQUAL(kfm_depth(s), 2);
  KT_OK(s, kfm_exit(s, b));
  KT_OK(s, kfm_exit(s, a));
  for (int i = 0; i < KFM_STACK_MAX; i++) {
    KT_OK(s, kfm_enter(s, c));
  }
  CU_ASSERT_EQUAL(kfm_enter(s, c), KFM_EDEPTH);
  for (int i = 0; i < KFM_STACK_MAX; i++) {
    KT_OK(s, kfm_exit(s, c));
  }
  CU_ASSERT_EQUAL(kfm_exit_name(s, "never seen"), KFM_ENOTENTERED);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "'never seen'"));
  CU_ASSERT_EQUAL(kfm_exit_name(s, ""), KFM_ENAME);
  KT_OK(s, kfm_enter_name(s, "by name"));
  KT_OK(s, kfm_exit_name(s, "by name"));
  KT_OK(s, kfm_session_stop(s));
  kfm_report_t *r;
  kfm_summary_t sum;
  kfm_node_stats_t n;
  KT_OK(s, kfm_session_report(s, &r));
  kfm_report_summary(r, &sum);
  CU_ASSERT_EQUAL(sum.unbalanced, 4);
  KT_OK(s, kfm_report_node_by_name(r, "a", &n));
  CU_ASSERT_EQUAL(n.count, 1);
  KT_OK(s, kfm_report_node_by_name(r, "b", &n));
  CU_ASSERT_EQUAL(n.count, 1);
  KT_OK(s, kfm_report_node_by_name(r, "c", &n));
  CU_ASSERT_EQUAL(n.count, KFM_STACK_MAX);
  KT_OK(s, kfm_report_node_by_name(r, "by name", &n));
  CU_ASSERT_EQUAL(n.count, 1);
  CU_ASSERT_EQUAL(kfm_report_node_by_name(r, "zzz", &n), KFM_ENONODE);
  kfm_report_free(r);
  kfm_session_destroy(s);
}

static void test_open_node_is_active(void) {
  kfm_session_t *s = new_session("level=basic,rate=off");
  kfm_node_id_t a;
  KT_OK(s, kfm_node_register(s, "open", &a));
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter(s, a));
  kfm_report_t *r;
  kfm_node_stats_t n;
  KT_OK(s, kfm_session_report(s, &r));
  KT_OK(s, kfm_report_node_by_name(r, "open", &n));
  CU_ASSERT_EQUAL(n.count, 0);
  CU_ASSERT_EQUAL(n.active, 1);
  kfm_report_free(r);
  KT_OK(s, kfm_exit(s, a));
  kfm_session_destroy(s); /* destroy stops a running session */
}

static void test_two_sessions_one_thread(void) {
  kfm_session_t *s1 = new_session("level=basic,rate=off");
  kfm_session_t *s2 = new_session("level=basic,rate=off");
  kfm_node_id_t a, b;
  KT_OK(s1, kfm_node_register(s1, "x", &a));
  KT_OK(s2, kfm_node_register(s2, "y", &b));
  KT_OK(s1, kfm_session_start(s1));
  KT_OK(s2, kfm_session_start(s2));
  for (int i = 0; i < 10; i++) {
    KT_OK(s1, kfm_enter(s1, a));
    KT_OK(s2, kfm_enter(s2, b));
    KT_OK(s2, kfm_exit(s2, b));
    KT_OK(s1, kfm_exit(s1, a));
  }
  kfm_report_t *r1, *r2;
  kfm_node_stats_t n;
  KT_OK(s1, kfm_session_report(s1, &r1));
  KT_OK(s2, kfm_session_report(s2, &r2));
  KT_OK(s1, kfm_report_node_by_name(r1, "x", &n));
  CU_ASSERT_EQUAL(n.count, 10);
  CU_ASSERT_EQUAL(kfm_report_node_count(r1), 1);
  KT_OK(s2, kfm_report_node_by_name(r2, "y", &n));
  CU_ASSERT_EQUAL(n.count, 10);
  kfm_report_free(r1);
  kfm_report_free(r2);
  kfm_session_destroy(s1);
  /* A new session may land at the old address: the thread must not reuse
   * its stale slot. */
  kfm_session_t *s3 = new_session("level=basic,rate=off");
  KT_OK(s3, kfm_node_register(s3, "z", &a));
  KT_OK(s3, kfm_session_start(s3));
  KT_OK(s3, kfm_enter(s3, a));
  KT_OK(s3, kfm_exit(s3, a));
  KT_OK(s3, kfm_session_report(s3, &r1));
  CU_ASSERT_EQUAL(kfm_report_node_count(r1), 1);
  kfm_report_free(r1);
  kfm_session_destroy(s3);
  kfm_session_destroy(s2);
}

/* A worker that lives across a restart: it makes n transitions of node id
 * each time the main thread releases it. */
struct restart_worker {
  kfm_session_t *s;
  kfm_node_id_t id;
  pthread_barrier_t go, done;
  int n[2];
  int rc;
};

static void *restart_worker_main(void *arg) {
  struct restart_worker *w = arg;
  for (int run = 0; run < 2; run++) {
    pthread_barrier_wait(&w->go);
    for (int i = 0; i < w->n[run]; i++) {
      w->rc |= kfm_enter(w->s, w->id) | kfm_exit(w->s, w->id);
    }
    pthread_barrier_wait(&w->done);
  }
  return NULL;
}

static void *short_lived(void *arg) {
  struct restart_worker *w = arg;
  kfm_node_id_t c;
  w->rc |= kfm_node_register(w->s, "c", &c);
  for (int i = 0; i < 2; i++) {
    w->rc |= kfm_enter(w->s, c) | kfm_exit(w->s, c);
  }
  return NULL;
}

static uint64_t edge_count(const kfm_report_t *r, kfm_node_id_t from, kfm_node_id_t to) {
  for (size_t i = 0; i < kfm_report_edge_count(r, KFM_EDGE_NESTED); i++) {
    kfm_edge_t e;
    if (kfm_report_edge(r, KFM_EDGE_NESTED, i, &e) == 0 && e.from == from && e.to == to) {
      return e.count;
    }
  }
  return 0;
}

static void test_restart(void) {
  kfm_session_t *s = new_session("level=basic,rate=1000,trace=on");
  kfm_node_id_t a, b;
  KT_OK(s, kfm_node_register(s, "a", &a));
  KT_OK(s, kfm_node_register(s, "b", &b));
  CU_ASSERT_EQUAL(kfm_session_restart(s), KFM_ESTATE);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "not started"));
  struct restart_worker w = {.s = s, .id = b, .n = {3, 1}};
  pthread_barrier_init(&w.go, NULL, 2);
  pthread_barrier_init(&w.done, NULL, 2);
  pthread_t th, sl;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, restart_worker_main, &w), 0);

  /* Run 1: main 5 x a, the worker 3 x b, a thread that ends 2 x c. */
  KT_OK(s, kfm_session_start(s));
  CU_ASSERT_EQUAL(kfm_session_restart(s), KFM_ESTATE);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "running"));
  for (int i = 0; i < 5; i++) {
    KT_OK(s, kfm_enter(s, a));
    KT_OK(s, kfm_exit(s, a));
  }
  pthread_barrier_wait(&w.go);
  pthread_barrier_wait(&w.done);
  CU_ASSERT_EQUAL_FATAL(pthread_create(&sl, NULL, short_lived, &w), 0);
  pthread_join(sl, NULL);
  kfmk_sleep_ms(30); /* ~30 samples at 1 kHz, which run 2 must not inherit */
  KT_OK(s, kfm_enter(s, a)); /* left open across the restart */
  KT_OK(s, kfm_session_stop(s));
  kfm_report_t *r;
  kfm_node_stats_t n;
  kfm_summary_t sum;
  KT_OK(s, kfm_session_report(s, &r));
  KT_OK(s, kfm_report_node_by_name(r, "a", &n));
  CU_ASSERT_EQUAL(n.count, 5);
  KT_OK(s, kfm_report_node_by_name(r, "c", &n));
  CU_ASSERT_EQUAL(n.count, 2);
  kfm_report_summary(r, &sum);
  CU_ASSERT_EQUAL(sum.threads, 3);
  CU_ASSERT_EQUAL(sum.events, 2 * (5 + 3 + 2) + 1);
  CU_ASSERT(sum.samples >= 20);
  kfm_report_free(r);
  /* Stopped means stopped: the parked sampler adds nothing later. */
  kfmk_sleep_ms(5);
  kfm_summary_t later;
  KT_OK(s, kfm_session_report(s, &r));
  kfm_report_summary(r, &later);
  CU_ASSERT_EQUAL(later.samples, sum.samples);
  CU_ASSERT_EQUAL(later.sampler_cpu_ns, sum.sampler_cpu_ns);
  kfm_report_free(r);

  /* Run 2 on the same session: only run 2's figures. */
  KT_OK(s, kfm_session_restart(s));
  CU_ASSERT_EQUAL(kfm_exit(s, a), KFM_ENOTENTERED); /* run 1's open activation is gone */
  for (int i = 0; i < 2; i++) {
    KT_OK(s, kfm_enter(s, a));
    KT_OK(s, kfm_exit(s, a));
  }
  pthread_barrier_wait(&w.go);
  pthread_barrier_wait(&w.done);
  KT_OK(s, kfm_session_stop(s));
  pthread_join(th, NULL);
  CU_ASSERT_EQUAL(w.rc, 0);
  KT_OK(s, kfm_session_report(s, &r));
  CU_ASSERT_EQUAL(kfm_report_node_count(r), 2);
  KT_OK(s, kfm_report_node_by_name(r, "a", &n));
  CU_ASSERT_EQUAL(n.count, 2);
  CU_ASSERT_EQUAL(n.active, 0);
  CU_ASSERT(n.min_ns <= n.max_ns);
  KT_OK(s, kfm_report_node_by_name(r, "b", &n));
  CU_ASSERT_EQUAL(n.count, 1);
  CU_ASSERT_EQUAL(kfm_report_node_by_name(r, "c", &n), KFM_ENONODE);
  CU_ASSERT_EQUAL(edge_count(r, KFM_NODE_ROOT, a), 2);
  CU_ASSERT_EQUAL(edge_count(r, KFM_NODE_ROOT, b), 1);
  kfm_report_summary(r, &sum);
  CU_ASSERT_EQUAL(sum.events, 2 * (2 + 1));
  CU_ASSERT_EQUAL(sum.unbalanced, 1); /* the exit refused above */
  /* Main and the worker kept their slots; the ended thread is gone. */
  CU_ASSERT_EQUAL(sum.threads, 2);
  CU_ASSERT(sum.samples >= 1); /* sample 0, taken at restart */
  CU_ASSERT(sum.samples < later.samples); /* run 1's samples are gone */
  kfm_sample_t smp;
  KT_OK(s, kfm_report_sample(r, 0, &smp));
  CU_ASSERT(smp.t_ns < 5e6); /* times count from the restart */
  CU_ASSERT(sum.wall_ns < 1e9);
  kfm_report_free(r);

  pthread_barrier_destroy(&w.go);
  pthread_barrier_destroy(&w.done);
  kfm_session_destroy(s);
}

/* After a pause the sampler resumes its schedule: the ticks that passed
 * while it was parked are neither samples nor missed ticks. */
/* A restart clears only the histogram buckets a node's durations can have
 * used (between its min's and its max's): afterwards every aggregate must
 * be as new, its whole histogram 0, whatever the run recorded (calls of
 * 0, 1 and 20 ms here, and a metric at STANDARD). */
static void test_restart_clears_aggregates(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=standard,rate=off"));
  kfm_node_id_t id[3];
  KT_OK(s, kfm_node_register(s, "a", &id[0]));
  KT_OK(s, kfm_node_register(s, "b", &id[1]));
  KT_OK(s, kfm_node_register(s, "c", &id[2]));
  KT_OK(s, kfm_session_start(s));
  const int ms[] = {0, 1, 20, 1, 0};
  for (int i = 0; i < 5; i++) {
    KT_OK(s, kfm_enter(s, id[i % 3]));
    kfmk_sleep_ms(ms[i]);
    KT_OK(s, kfm_exit(s, id[i % 3]));
  }
  KT_OK(s, kfm_session_stop(s));
  KT_OK(s, kfm_session_restart(s));
  size_t used = 0;
  for (uint32_t j = 0; j < atomic_load(&s->nslots); j++) {
    struct kfm__thread *t = s->slots[j];
    for (uint32_t b = 0; b < KFM__LD(t->blocks_hi); b++) {
      struct kfm__agg *blk = atomic_load(&t->blocks[b]);
      for (uint32_t i = 0; blk && i < KFM__BLOCK_NODES; i++) {
        const struct kfm__agg *a = kfm__agg_at(s, blk, i);
        used++;
        CU_ASSERT_EQUAL(KFM__LD(a->count), 0);
        CU_ASSERT_EQUAL(KFM__LD(a->total), 0);
        CU_ASSERT_EQUAL(KFM__LD(a->min), UINT64_MAX);
        CU_ASSERT_EQUAL(KFM__LD(a->max), 0);
        uint64_t h = 0;
        for (unsigned k = 0; k < KFM__HIST_BUCKETS; k++) {
          h += KFM__LD(a->hist[k]);
        }
        CU_ASSERT_EQUAL(h, 0);
        for (unsigned m = 0; m < 2 * s->nm; m++) {
          CU_ASSERT_EQUAL(KFM__LD(a->metrics[m]), 0);
        }
      }
    }
  }
  CU_ASSERT_TRUE(used >= 3);
  KT_OK(s, kfm_session_stop(s));
  kfm_session_destroy(s);
}

static void test_restart_resumes_schedule(void) {
  kfm_session_t *s = new_session("level=basic,rate=1000");
  kfm_report_t *r;
  kfm_summary_t sum;
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_session_stop(s));
  kfmk_sleep_ms(20);
  KT_OK(s, kfm_session_restart(s));
  kfmk_sleep_ms(30);
  KT_OK(s, kfm_session_stop(s));
  KT_OK(s, kfm_session_report(s, &r));
  kfm_report_summary(r, &sum);
  printf("\n    %llu samples, %llu missed in 30 ms at 1 kHz", (unsigned long long)sum.samples,
         (unsigned long long)sum.sampler_missed);
  /* Sample 0 plus one per millisecond of the run: none from the pause. */
  CU_ASSERT(sum.samples >= 20 && (double)sum.samples <= sum.wall_ns / 1e6 + 2);
  CU_ASSERT(sum.sampler_missed < 10);
  kfm_report_free(r);
  kfm_session_destroy(s);
}

int main(void) {
  unsetenv("KFM_CONFIG");
  static const struct kt_case cases[] = {
      {"registry interns names and rejects bad ones", test_registry},
      {"a node sleeping 20 ms reports 20 ms within 10%", test_sleep_20ms},
      {"percentiles and stddev from the histogram", test_percentiles},
      {"exclusive times add up; nested and follows edges", test_nesting_adds_up},
      {"start twice, stopped session, NULL handles", test_state_errors},
      {"unbalanced exits are rejected and counted, nothing lost", test_unbalanced},
      {"an open node is reported active", test_open_node_is_active},
      {"two sessions on one thread; stale slot after destroy", test_two_sessions_one_thread},
      {"restart: a second run with only its own figures, threads kept", test_restart},
      {"restart after a pause: the sampler's schedule resumes", test_restart_resumes_schedule},
      {"restart: every aggregate as new, its whole histogram 0", test_restart_clears_aggregates},
      {NULL, NULL},
  };
  return kt_run("session", cases);
}
