/*
 * test_clock.c - the clock backend.  The process forces the clock_gettime
 * fallback (KFM_CLOCK=gettime, read once at first use) and checks that
 * timing stays right with it; the TSC path is what every other test uses.
 */
#include <stdlib.h>

#include "internal.h" /* kfm__builtin_backends */
#include "clock.h"
#include "kfm_kernels.h"
#include "kfm_test.h"

static void test_fallback_selected(void) {
  kfm__clock_init();
  CU_ASSERT_EQUAL(kfm__clock_use_tsc, 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm__clock_describe(), "KFM_CLOCK=gettime"));
  uint64_t t, n;
  kfm__clock_pair(&t, &n);
  /* With the fallback, ticks are monotonic nanoseconds. */
  CU_ASSERT_TRUE(t >= n - 1000 && t <= n + 1000);
}

static void test_fallback_timing(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,rate=100"));
  kfm_node_id_t id;
  KT_OK(s, kfm_node_register(s, "sleep20", &id));
  KT_OK(s, kfm_session_start(s));
  for (int i = 0; i < 3; i++) {
    KT_OK(s, kfm_enter(s, id));
    kfmk_sleep_ms(20);
    KT_OK(s, kfm_exit(s, id));
  }
  KT_OK(s, kfm_session_stop(s));
  kfm_report_t *r;
  kfm_node_stats_t n;
  kfm_summary_t sum;
  KT_OK(s, kfm_session_report(s, &r));
  KT_OK(s, kfm_report_node_by_name(r, "sleep20", &n));
  CU_ASSERT_EQUAL(n.count, 3);
  KT_NEAR(n.mean_ns, 20e6, 0.10);
  kfm_report_summary(r, &sum);
  CU_ASSERT_STRING_EQUAL(sum.clock, "clock_gettime");
  CU_ASSERT_DOUBLE_EQUAL(sum.tsc_ghz, 0, 0);
  CU_ASSERT_TRUE(sum.samples > 0);
  kfm_report_free(r);
  kfm_session_destroy(s);
}

static void test_backend_list(void) {
  size_t n = kfm_backend_count();
  CU_ASSERT_TRUE(n >= 2);
  kfm_backend_status_t b;
  KT_OK(NULL, kfm_backend_probe(0, &b));
  CU_ASSERT_STRING_EQUAL(b.name, "clock");
  CU_ASSERT_TRUE(b.available);
  CU_ASSERT_PTR_NOT_NULL(strstr(b.reason, "clock_gettime"));
  CU_ASSERT_EQUAL(kfm_backend_probe(n, &b), KFM_ERANGE);
  for (size_t i = 0; kfm__builtin_backends[i]; i++) {
    CU_ASSERT_EQUAL(kfm__builtin_backends[i]->abi, KFM_BACKEND_ABI);
    CU_ASSERT_PTR_NOT_NULL(kfm__builtin_backends[i]->open);
  }
}

int main(void) {
  unsetenv("KFM_CONFIG");
  setenv("KFM_CLOCK", "gettime", 1);
  static const struct kt_case cases[] = {
      {"KFM_CLOCK=gettime selects the fallback", test_fallback_selected},
      {"timing is right on the fallback clock", test_fallback_timing},
      {"builtin backends and probes", test_backend_list},
      {NULL, NULL},
  };
  return kt_run("clock", cases);
}
