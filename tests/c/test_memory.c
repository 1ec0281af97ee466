/*
 * test_memory.c - STANDARD and DETAILED attribution on the live /proc:
 * touching 64 MB inside a node shows a 64 MB RSS rise on that node (not its
 * sibling), memory freed before exit still shows as the node's peak, and
 * DETAILED charges CPU time and faults to the node that spent them.
 */
#include <math.h>

#include "kfm_kernels.h"
#include "kfm_test.h"

#define MB (1024.0 * 1024.0 * KT_RSS_SCALE)

static void test_rss_rise_and_peak(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=standard,rate=1000"));
  kfm_node_id_t keep, transient, sibling;
  KT_OK(s, kfm_node_register(s, "keep64", &keep));
  KT_OK(s, kfm_node_register(s, "transient64", &transient));
  KT_OK(s, kfm_node_register(s, "sibling", &sibling));
  KT_OK(s, kfm_session_start(s));
  void *mem = NULL;
  size_t pages;
  KT_OK(s, kfm_enter(s, keep));
  CU_ASSERT_EQUAL(kfmk_touch_mb(64, 1, &mem, &pages), 0);
  KT_OK(s, kfm_exit(s, keep));
  KT_OK(s, kfm_enter(s, sibling));
  kfmk_sleep_ms(5);
  KT_OK(s, kfm_exit(s, sibling));
  KT_OK(s, kfm_enter(s, transient));
  void *tmp = NULL;
  CU_ASSERT_EQUAL(kfmk_touch_mb(64, 1, &tmp, &pages), 0);
  kfmk_sleep_ms(20); /* let the sampler see the peak too */
  kfmk_release(&tmp, 64);
  KT_OK(s, kfm_exit(s, transient));
  KT_OK(s, kfm_session_stop(s));
  kfmk_release(&mem, 64);

  kfm_report_t *r;
  kfm_node_stats_t nk, nt, ns;
  KT_OK(s, kfm_session_report(s, &r));
  int rss = kt_metric(r, "proc.rss");
  KT_OK(s, kfm_report_node_by_name(r, "keep64", &nk));
  KT_OK(s, kfm_report_node_by_name(r, "transient64", &nt));
  KT_OK(s, kfm_report_node_by_name(r, "sibling", &ns));
  KT_NEAR(nk.inclusive[rss], 64 * MB, 0.10);
  CU_ASSERT_TRUE(fabs(ns.inclusive[rss]) < 4 * MB);
  CU_ASSERT_TRUE(fabs(nt.inclusive[rss]) < 4 * MB);
  /* The transient node's peak is 64 MB above its entry RSS, which is the
   * keep64 node's exit RSS. */
  double base = nk.peak_rss; /* keep64 peaks at its exit */
  KT_NEAR(nt.peak_rss - base, 64 * MB, 0.10);
  kfm_report_free(r);
  kfm_session_destroy(s);
}

static void test_nested_memory_exclusive(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=standard,rate=off"));
  kfm_node_id_t p, c;
  KT_OK(s, kfm_node_register(s, "p", &p));
  KT_OK(s, kfm_node_register(s, "c", &c));
  KT_OK(s, kfm_session_start(s));
  void *a = NULL, *b = NULL;
  KT_OK(s, kfm_enter(s, p));
  kfmk_touch_mb(16, 1, &a, NULL);
  KT_OK(s, kfm_enter(s, c));
  kfmk_touch_mb(32, 1, &b, NULL);
  KT_OK(s, kfm_exit(s, c));
  KT_OK(s, kfm_exit(s, p));
  KT_OK(s, kfm_session_stop(s));
  kfmk_release(&a, 16);
  kfmk_release(&b, 32);
  kfm_report_t *r;
  kfm_node_stats_t np, nc;
  KT_OK(s, kfm_session_report(s, &r));
  int rss = kt_metric(r, "proc.rss");
  KT_OK(s, kfm_report_node_by_name(r, "p", &np));
  KT_OK(s, kfm_report_node_by_name(r, "c", &nc));
  KT_NEAR(np.inclusive[rss], 48 * MB, 0.10);
  KT_NEAR(np.exclusive[rss], 16 * MB, 0.15);
  KT_NEAR(nc.inclusive[rss], 32 * MB, 0.10);
  CU_ASSERT_DOUBLE_EQUAL(np.exclusive[rss] + nc.exclusive[rss], np.inclusive[rss], 1);
  kfm_report_free(r);
  kfm_session_destroy(s);
}

static void test_detailed_cpu_and_faults(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=detailed"));
  kfm_node_id_t busy, sleepy, faults;
  KT_OK(s, kfm_node_register(s, "busy", &busy));
  KT_OK(s, kfm_node_register(s, "sleepy", &sleepy));
  KT_OK(s, kfm_node_register(s, "faults", &faults));
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter(s, busy));
  kfmk_busy_ms(100);
  KT_OK(s, kfm_exit(s, busy));
  KT_OK(s, kfm_enter(s, sleepy));
  kfmk_sleep_ms(50);
  KT_OK(s, kfm_exit(s, sleepy));
  KT_OK(s, kfm_enter(s, faults));
  kfmk_page_faults(2000);
  KT_OK(s, kfm_exit(s, faults));
  KT_OK(s, kfm_session_stop(s));
  kfm_report_t *r;
  kfm_node_stats_t nb, ns, nf;
  KT_OK(s, kfm_session_report(s, &r));
  int usr = kt_metric(r, "proc.cpu_user"), sys = kt_metric(r, "proc.cpu_sys");
  int minflt = kt_metric(r, "proc.minflt"), vcsw = kt_metric(r, "proc.vcsw");
  KT_OK(s, kfm_report_node_by_name(r, "busy", &nb));
  KT_OK(s, kfm_report_node_by_name(r, "sleepy", &ns));
  KT_OK(s, kfm_report_node_by_name(r, "faults", &nf));
  /* getrusage has tick granularity on some kernels: allow 15%. */
  KT_NEAR(nb.inclusive[usr] + nb.inclusive[sys], 100e6, 0.15);
  CU_ASSERT_TRUE(ns.inclusive[usr] + ns.inclusive[sys] < 10e6);
  CU_ASSERT_TRUE(ns.inclusive[vcsw] >= 1);
  CU_ASSERT_TRUE(nf.inclusive[minflt] >= 2000);
  /* The faults stay on their node (TSan adds a few of its own on shadow pages). */
  CU_ASSERT_TRUE(nb.inclusive[minflt] < 0.1 * nf.inclusive[minflt]);
  kfm_report_free(r);
  kfm_session_destroy(s);
}

int main(void) {
  unsetenv("KFM_CONFIG");
  static const struct kt_case cases[] = {
      {"64 MB touched shows as +64 MB on its node; peak of freed memory", test_rss_rise_and_peak},
      {"nested RSS: exclusive and inclusive add up", test_nested_memory_exclusive},
      {"DETAILED: CPU time and page faults on the right node", test_detailed_cpu_and_faults},
      {NULL, NULL},
  };
  return kt_run("memory", cases);
}
