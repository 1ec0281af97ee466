/*
 * test_attribution.c - the ground-truth kernels run inside nodes, and each
 * kernel's known effect lands on its own node and nowhere else: page faults
 * of touched memory, loopback bytes, file bytes, CPU time; at DETAILED
 * (values read at every transition) and COMPREHENSIVE (process values from
 * the sampler's cache, so the kernels linger a few sampler periods).
 */
#include <unistd.h>

#include "kfm_kernels.h"
#include "kfm_test.h"

#define MB (1024.0 * 1024.0)

/* Bytes on lo include TCP/IP headers and ACKs: ~1% normally.  Under TSan
 * the receiver is so slow that segments shrink and ACKs multiply (seen:
 * +18%), so the 5% holds for the real build only. */
#if defined(__SANITIZE_THREAD__)
#define NET_TOL 0.25
#else
#define NET_TOL 0.05
#endif

struct run {
  kfm_session_t *s;
  kfm_report_t *r;
};

static kfm_node_stats_t node(const struct run *x, const char *name) {
  kfm_node_stats_t n;
  int rc = kfm_report_node_by_name(x->r, name, &n);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  return n;
}

/* Runs the workload graph: every kernel in its node, an idle sibling after
 * each so a leak would show there.  linger: ms slept inside each node after
 * its kernel, so a sampled value catches up before the exit. */
static void run_graph(struct run *x, const char *cfg, double linger) {
  KT_OK(NULL, kfm_session_create_str(&x->s, cfg));
  kfm_session_t *s = x->s;
  char dir[] = "/tmp/kfm-attr-XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  KT_OK(s, kfm_session_start(s));
  struct {
    const char *name;
    int kind;
  } steps[] = {{"touch", 0}, {"idle1", 9}, {"loopback", 1}, {"idle2", 9},
               {"fsync", 2}, {"idle3", 9}, {"busy", 3},     {"idle4", 9}};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    KT_OK(s, kfm_enter_name(s, steps[i].name));
    switch (steps[i].kind) {
    case 0:
      CU_ASSERT_EQUAL(kfmk_touch_mb(64, 0, NULL, NULL), 0);
      break;
    case 1:
      CU_ASSERT_EQUAL(kfmk_loopback_tcp(32u << 20), 0);
      break;
    case 2:
      CU_ASSERT_EQUAL(kfmk_file_fsync(dir, 4u << 20), 0);
      break;
    case 3:
      CU_ASSERT_EQUAL(kfmk_busy_ms(80), 0);
      break;
    default:
      kfmk_sleep_ms(5);
    }
    if (linger > 0) {
      kfmk_sleep_ms(linger);
    }
    KT_OK(s, kfm_exit_name(s, steps[i].name));
  }
  KT_OK(s, kfm_session_stop(s));
  rmdir(dir);
  KT_OK(s, kfm_session_report(s, &x->r));
}

static void done(struct run *x) {
  kfm_report_free(x->r);
  kfm_session_destroy(x->s);
}

/* CPU ns of a node: proc's user+sys, or papi's task clock at COMPREHENSIVE. */
static double cpu_ns(const kfm_report_t *r, const kfm_node_stats_t *n) {
  int tc = kfm_report_metric_index(r, "papi.perf::TASK-CLOCK");
  if (tc >= 0) {
    return n->inclusive[tc];
  }
  return n->inclusive[kt_metric(r, "proc.cpu_user")] + n->inclusive[kt_metric(r, "proc.cpu_sys")];
}

static void check_common(const struct run *x) {
  const kfm_report_t *r = x->r;
  /* Page faults: proc's getrusage count, or papi's perf software event. */
  int flt = kfm_report_metric_index(r, "proc.minflt");
  if (flt < 0) {
    flt = kt_metric(r, "papi.perf::PAGE-FAULTS");
  }
  int tx = kt_metric(r, "proc.net_tx"), rx = kt_metric(r, "proc.net_rx");
  int iow = kt_metric(r, "proc.io_write");
  kfm_node_stats_t t = node(x, "touch"), l = node(x, "loopback"), f = node(x, "fsync");
  kfm_node_stats_t b = node(x, "busy");
  /* 64 MB touched page by page: at least one fault per 4 KiB page. */
  CU_ASSERT_TRUE(t.inclusive[flt] >= 64 * MB / 4096);
  /* 32 MiB over loopback: lo counts it once out and once in, plus headers. */
  KT_NEAR(l.inclusive[tx], 32 * MB, NET_TOL);
  KT_NEAR(l.inclusive[rx], 32 * MB, NET_TOL);
  CU_ASSERT_TRUE(f.inclusive[iow] >= 4 * MB);
  KT_NEAR(cpu_ns(r, &b), 80e6, 0.15);
  double v;
  CU_ASSERT_EQUAL(kfm_report_derived(r, 0, "ipc", &v, NULL), KFM_EBACKEND);
  for (size_t i = 0; i < kfm_report_node_count(r); i++) {
    kfm_node_stats_t n;
    kfm_report_node(r, i, &n);
    if (strncmp(n.name, "idle", 4) == 0) {
      /* Nothing leaks into the idle siblings. */
      CU_ASSERT_TRUE(n.inclusive[flt] < 200);
      CU_ASSERT_TRUE(n.inclusive[tx] < 0.01 * 32 * MB);
      CU_ASSERT_TRUE(n.inclusive[iow] < 64 * 1024);
      CU_ASSERT_TRUE(cpu_ns(r, &n) < 10e6);
    }
    if (strcmp(n.name, "busy") == 0) {
      /* CPU over wall: exactly the node's own figures; one thread cannot
       * exceed one core (beyond getrusage's tick rounding). */
      CU_ASSERT_EQUAL(kfm_report_derived(r, i, "cpu_util", &v, NULL), 0);
      CU_ASSERT_DOUBLE_EQUAL(v, cpu_ns(r, &n) / n.total_ns, 1e-12);
      CU_ASSERT_TRUE(v > 0 && v < 1.1);
    }
  }
}

static void test_detailed(void) {
  struct run x;
  run_graph(&x, "level=detailed", 0);
  check_common(&x);
  done(&x);
}

static void test_comprehensive_sampled(void) {
  struct run x;
  /* Process values at transitions are at most one sampler period old: a
   * 15 ms linger at 1 kHz lets every kernel's effect reach its own node. */
  run_graph(&x, "level=comprehensive,rate=1000", 15);
  check_common(&x);
  int iow = kt_metric(x.r, "proc.io_write");
  kfm_node_stats_t f = node(&x, "fsync");
  CU_ASSERT_TRUE(f.inclusive[iow] >= 4 * MB);
  done(&x);
}

static void test_modes_swapped(void) {
  /* DETAILED with process values from the sampler, COMPREHENSIVE with them
   * read at every transition: the same attribution either way. */
  struct run x;
  run_graph(&x, "level=detailed,rate=1000,proc_reads=sampled", 15);
  check_common(&x);
  done(&x);
  run_graph(&x, "level=comprehensive,proc_reads=exact", 0);
  check_common(&x);
  /* Exact mode reads the thread's own I/O (thread-self/io). */
  int iow = kt_metric(x.r, "proc.io_write");
  kfm_node_stats_t f = node(&x, "fsync");
  CU_ASSERT_TRUE(f.inclusive[iow] >= 4 * MB);
  done(&x);
}

int main(void) {
  unsetenv("KFM_CONFIG");
  static const struct kt_case cases[] = {
      {"DETAILED: each kernel's effect on its own node only", test_detailed},
      {"COMPREHENSIVE (sampled process values): the same", test_comprehensive_sampled},
      {"proc_reads=sampled at DETAILED, =exact at COMPREHENSIVE", test_modes_swapped},
      {NULL, NULL},
  };
  return kt_run("attribution", cases);
}
