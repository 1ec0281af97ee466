/*
 * test_openmp.c - OpenMP worker threads' work attributed to the node that
 * opened the parallel region (issue 3, OpenMP part).
 *
 * Built twice by tests/c/openmp/CMakeLists.txt from this one source:
 * test_openmp_gomp runs on GNU libgomp (no OMPT: the kfm/kfm_omp.h helpers
 * are the way) and test_openmp_llvm runs the same gcc-compiled code on LLVM
 * libomp, which implements libgomp's GOMP_* ABI and OMPT, so kfm's tool
 * attributes with no calls in the program.  KFM_TEST_OMP_RUNTIME names the
 * runtime the build meant; the program checks at run time which one it
 * really got (__kmpc_fork_call exists only in libomp) and fails if they
 * differ, then asserts what that runtime must give:
 *
 *  - a node running kfmk_omp_triad (2 threads) shows, with the OMPT tool,
 *    1 + regions activations on 2 threads and a CPU time equal to what the
 *    whole process used meanwhile (within 25%), which is 2 x its wall time
 *    unless other jobs took CPUs away (then that form is reported, not
 *    asserted); on libgomp without helpers only the master's share and one
 *    activation (the documented limitation);
 *  - the same triad written with the helpers is attributed on both;
 *  - a sibling node that only sleeps gets none of the workers' time;
 *  - nested regions attribute every level's workers to the outer node;
 *  - nested sessions, sessions destroyed while the runtime's threads live
 *    on, and regions that run after that do not crash and attribute again;
 *  - KFM_OMPT=off (checked in a child process) turns the tool off.
 */
#include <dlfcn.h>
#include <omp.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kfm/kfm_omp.h"
#include "kfm_kernels.h"
#include "kfm_test.h"

#ifndef KFM_TEST_OMP_RUNTIME
#define KFM_TEST_OMP_RUNTIME "gomp"
#endif

#define NT 2        /* threads per region */
#define TRIAD_MB 64 /* as the issue asks: kfmk_omp_triad(64, 2, reps) */
#define TRIAD_REPS 12
#define REGIONS (1 + TRIAD_REPS) /* the triad's initialisation region + one per repetition */
#define CONFIG "level=detailed,rate=off,trace=on" /* no sampler: one thread less competing */
#define CPU_TOL 0.25

extern char **environ;

static int rt_llvm;       /* running on LLVM libomp */
static int tool_expected; /* the OMPT tool should be active */
static int tool_active;

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static kfm_session_t *session_new(void) {
  kfm_session_t *s = NULL;
  int rc = kfm_session_create_str(&s, CONFIG);
  if (rc != 0) {
    fprintf(stderr, "\nkfm_session_create_str: %s (%s)\n", kfm_err_name(rc), kfm_errmsg(NULL));
    return NULL;
  }
  if (kfm_session_start(s) != 0) {
    kfm_session_destroy(s);
    return NULL;
  }
  return s;
}

/* What a report says about one node. */
struct obs {
  int found;
  uint64_t count, active;
  double cpu_ns;     /* inclusive proc.cpu_user + proc.cpu_sys over its threads */
  unsigned nthreads; /* distinct threads among its trace enter events */
};

static struct obs observe(kfm_session_t *s, const char *name) {
  struct obs o = {0};
  kfm_report_t *r = NULL;
  if (kfm_session_report(s, &r) != 0) {
    return o;
  }
  kfm_node_stats_t n;
  if (kfm_report_node_by_name(r, name, &n) == 0) {
    o.found = 1;
    o.count = n.count;
    o.active = n.active;
    int u = kfm_report_metric_index(r, "proc.cpu_user");
    int y = kfm_report_metric_index(r, "proc.cpu_sys");
    o.cpu_ns = (u >= 0 ? n.inclusive[u] : 0) + (y >= 0 ? n.inclusive[y] : 0);
    uint32_t seen[64];
    for (size_t i = 0; i < kfm_report_event_count(r); i++) {
      kfm_event_t e;
      if (kfm_report_event(r, i, &e) != 0 || e.node != n.id || e.kind != KFM_EVENT_ENTER) {
        continue;
      }
      unsigned k = 0;
      while (k < o.nthreads && seen[k] != e.thread) {
        k++;
      }
      if (k == o.nthreads && o.nthreads < 64) {
        seen[o.nthreads++] = e.thread;
      }
    }
  }
  kfm_report_free(r);
  return o;
}

/* kfmk_omp_triad written with the kfm_omp.h helpers: same arrays, same
 * regions (one initialisation region, one per repetition), same checksum. */
static double triad_helped(kfm_session_t *s, size_t mb, int nt, int reps) {
  const size_t n = KFMK_TRIAD_ELEMS(mb);
  double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
  double total = 0.0;
  if (a && b && c) {
    const kfm_node_id_t parent = KFM_OMP_PARENT(s);
#pragma omp parallel num_threads(nt)
    {
      kfm_omp_worker_begin(s, parent);
#pragma omp for schedule(static)
      for (size_t i = 0; i < n; i++) {
        a[i] = 0.0;
        b[i] = KFMK_TRIAD_B(i);
        c[i] = KFMK_TRIAD_C(i);
      }
      kfm_omp_worker_end(s, parent);
    }
    for (int r = 0; r < reps; r++) {
      double sum = 0.0;
#pragma omp parallel num_threads(nt)
      {
        kfm_omp_worker_begin(s, parent);
#pragma omp for schedule(static) reduction(+ : sum)
        for (size_t i = 0; i < n; i++) {
          a[i] = b[i] + KFMK_TRIAD_S * c[i];
          sum += a[i];
        }
        kfm_omp_worker_end(s, parent);
      }
      total += sum;
    }
  }
  free(a);
  free(b);
  free(c);
  return total;
}

/* Wall and process-wide CPU time spent inside one node's master activation. */
struct span {
  double wall_ns;
  double proc_cpu_ns; /* every thread of the process, CLOCK_PROCESS_CPUTIME_ID */
};

static double cpu_ns(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Runs the triad inside node `name`, then 150 ms of sleep inside the
 * sibling `sleep_name`. */
enum triad_kind { TRIAD_KERNEL, TRIAD_HELPED };

static struct span run_triad(kfm_session_t *s, const char *name, const char *sleep_name,
                             enum triad_kind kind, double *checksum) {
  kfm_node_id_t id, sid;
  struct span sp = {0, 0};
  KT_OK(s, kfm_node_register(s, name, &id));
  KT_OK(s, kfm_node_register(s, sleep_name, &sid));
  double t0 = now_ns(), c0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
  KT_OK(s, kfm_enter(s, id));
  if (kind == TRIAD_KERNEL) {
    CU_ASSERT_EQUAL(kfmk_omp_triad(TRIAD_MB, NT, TRIAD_REPS, checksum), 0);
  } else {
    *checksum = triad_helped(s, TRIAD_MB, NT, TRIAD_REPS);
  }
  KT_OK(s, kfm_exit(s, id));
  sp.proc_cpu_ns = cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - c0;
  sp.wall_ns = now_ns() - t0;
  KT_OK(s, kfm_enter(s, sid));
  CU_ASSERT_EQUAL(kfmk_sleep_ms(150), 0);
  KT_OK(s, kfm_exit(s, sid));
  return sp;
}

/* The node's CPU time must be what all threads of the process used while
 * it ran (the ground truth, whatever the load) and, when the machine gave
 * the process its NT CPUs, close to NT x wall.  On a shared 2-vCPU machine
 * other jobs can take CPUs away; then the second form cannot hold for any
 * profiler and is reported instead of asserted. */
static void check_attributed(const struct obs *o, struct span sp, const char *what) {
  CU_ASSERT_TRUE(o->found);
  CU_ASSERT_EQUAL(o->count, 1 + (uint64_t)(NT - 1) * REGIONS);
  CU_ASSERT_EQUAL(o->active, 0); /* workers left the node at the join barrier */
  CU_ASSERT_EQUAL(o->nthreads, NT);
  KT_NEAR(o->cpu_ns, sp.proc_cpu_ns, CPU_TOL);
  printf("\n  %s: count %llu, %u threads, cpu %.1f ms = %.2f x wall %.1f ms (process used "
         "%.2f x wall)",
         what, (unsigned long long)o->count, o->nthreads, o->cpu_ns / 1e6, o->cpu_ns / sp.wall_ns,
         sp.wall_ns / 1e6, sp.proc_cpu_ns / sp.wall_ns);
  /* Applicable when the process clearly had its NT CPUs (90%): at the edge
   * of the tolerance a run that got 1.50 of 2 CPUs failed at 1.49. */
  if (sp.proc_cpu_ns >= 0.9 * NT * sp.wall_ns) {
    KT_NEAR(o->cpu_ns, NT * sp.wall_ns, CPU_TOL);
  } else {
    printf("\n  NOTE: CPUs were contended (the process got %.2f of %d CPUs): the cpu ~ %d x wall "
           "check is not applicable this run; cpu ~ process cpu was checked",
           sp.proc_cpu_ns / sp.wall_ns, NT, NT);
  }
}

static void check_sibling_idle(const struct obs *o, const char *what) {
  CU_ASSERT_TRUE(o->found);
  CU_ASSERT_EQUAL(o->count, 1);
  CU_ASSERT_EQUAL(o->nthreads, 1);
  /* 150 ms asleep: a few hundred microseconds of CPU at most, and none of
   * the workers' (they spin in the runtime outside every node). */
  CU_ASSERT_TRUE(o->cpu_ns < 10e6);
  printf("\n  %s: count %llu, cpu %.2f ms", what, (unsigned long long)o->count, o->cpu_ns / 1e6);
}

static double expected_checksum(void) {
  const size_t n = KFMK_TRIAD_ELEMS(TRIAD_MB);
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    sum += KFMK_TRIAD_B(i) + KFMK_TRIAD_S * KFMK_TRIAD_C(i);
  }
  return sum * TRIAD_REPS;
}

/* ---- cases --------------------------------------------------------------- */

static void test_runtime(void) {
  printf("\n  runtime %s (built for %s), OMPT tool %s (expected %s)", rt_llvm ? "llvm" : "gomp",
         KFM_TEST_OMP_RUNTIME, tool_active ? "active" : "inactive",
         tool_expected ? "active" : "inactive");
  CU_ASSERT_EQUAL(rt_llvm, strcmp(KFM_TEST_OMP_RUNTIME, "llvm") == 0);
  CU_ASSERT_EQUAL(tool_active, tool_expected);
}

/* kfmk_omp_triad has no helper calls inside: only the OMPT tool can
 * attribute its workers. */
static void test_triad_kernel(void) {
  kfm_session_t *s = session_new();
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  double sum = 0;
  struct span sp = run_triad(s, "triad", "sleep", TRIAD_KERNEL, &sum);
  KT_OK(s, kfm_session_stop(s));
  CU_ASSERT_EQUAL(sum, expected_checksum());
  struct obs o = observe(s, "triad"), z = observe(s, "sleep");
  if (tool_active) {
    check_attributed(&o, sp, "triad (OMPT, no calls)");
  } else {
    /* Limitation without OMPT (libgomp, or KFM_OMPT=off): the workers'
     * time goes nowhere; the node has the master's share only, about
     * 1/NT of what the process used. */
    CU_ASSERT_EQUAL(o.count, 1);
    CU_ASSERT_EQUAL(o.nthreads, 1);
    CU_ASSERT_TRUE(o.cpu_ns < (1 - CPU_TOL) * sp.proc_cpu_ns);
    CU_ASSERT_TRUE(o.cpu_ns < (1 + CPU_TOL) * sp.wall_ns);
    printf("\n  triad (no OMPT, no helpers: workers NOT attributed): count %llu, cpu %.1f ms = "
           "%.2f of the process's",
           (unsigned long long)o.count, o.cpu_ns / 1e6, o.cpu_ns / sp.proc_cpu_ns);
  }
  check_sibling_idle(&z, "sleep");
  kfm_session_destroy(s);
}

/* The helpers attribute on every runtime, and do not double-count when the
 * OMPT tool has already entered the node on the worker. */
static void test_triad_helpers(void) {
  kfm_session_t *s = session_new();
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  double sum = 0;
  struct span sp = run_triad(s, "triad_h", "sleep_h", TRIAD_HELPED, &sum);
  KT_OK(s, kfm_session_stop(s));
  CU_ASSERT_EQUAL(sum, expected_checksum());
  struct obs o = observe(s, "triad_h"), z = observe(s, "sleep_h");
  check_attributed(&o, sp, tool_active ? "triad_h (OMPT + helpers)" : "triad_h (helpers)");
  check_sibling_idle(&z, "sleep_h");
  kfm_session_destroy(s);
}

/* Two levels of 2 threads: the outer worker and both inner workers end up
 * in "outer", so it has 1 + 1 + 2 activations and at least 4 x 30 ms CPU. */
static void test_nested(void) {
  kfm_session_t *s = session_new();
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  kfm_node_id_t outer;
  KT_OK(s, kfm_node_register(s, "outer", &outer));
  int saved = omp_get_max_active_levels();
  omp_set_max_active_levels(2);
  atomic_int in_outer = 0, tasks = 0;
  KT_OK(s, kfm_enter(s, outer));
  const kfm_node_id_t p1 = KFM_OMP_PARENT(s);
#pragma omp parallel num_threads(NT)
  {
    kfm_omp_worker_begin(s, p1);
    const kfm_node_id_t p2 = KFM_OMP_PARENT(s); /* "outer" on both threads */
#pragma omp parallel num_threads(NT)
    {
      kfm_omp_worker_begin(s, p2);
      kfm_node_id_t cur = KFM_NODE_ROOT;
      if (kfm_current_node(s, &cur) == 0 && cur == outer) {
        atomic_fetch_add(&in_outer, 1);
      }
      atomic_fetch_add(&tasks, 1);
      kfmk_busy_ms(30);
      kfm_omp_worker_end(s, p2);
    }
    kfm_omp_worker_end(s, p1);
  }
  KT_OK(s, kfm_exit(s, outer));
  omp_set_max_active_levels(saved);
  KT_OK(s, kfm_session_stop(s));
  CU_ASSERT_EQUAL(atomic_load(&tasks), NT * NT);
  CU_ASSERT_EQUAL(atomic_load(&in_outer), NT * NT);
  struct obs o = observe(s, "outer");
  CU_ASSERT_EQUAL(o.count, 1 + (NT - 1) + NT * (NT - 1));
  CU_ASSERT_EQUAL(o.active, 0);
  CU_ASSERT_TRUE(o.cpu_ns >= 0.9 * NT * NT * 30e6);
  printf("\n  outer: %d of %d implicit tasks inside it, count %llu, cpu %.1f ms",
         atomic_load(&in_outer), atomic_load(&tasks), (unsigned long long)o.count, o.cpu_ns / 1e6);
  kfm_session_destroy(s);
}

/* One region of NT threads inside `id` of s, each spinning `ms`. */
static void region_in(kfm_session_t *s, kfm_node_id_t id, double ms) {
  const kfm_node_id_t parent = KFM_OMP_PARENT(s);
  CU_ASSERT_EQUAL(parent, id);
#pragma omp parallel num_threads(NT)
  {
    kfm_omp_worker_begin(s, parent);
    kfmk_busy_ms(ms);
    kfm_omp_worker_end(s, parent);
  }
}

/* A session opened inside another takes the workers while its node is the
 * innermost; destroying a session while the runtime's threads still hold
 * slots in it, and regions (nested ones too, whose encountering threads are
 * those workers) after every session is gone must neither crash nor
 * misattribute. */
static void test_sessions(void) {
  kfm_session_t *s1 = session_new(), *s2 = session_new();
  CU_ASSERT_PTR_NOT_NULL_FATAL(s1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s2);
  kfm_node_id_t a, b;
  KT_OK(s1, kfm_node_register(s1, "a", &a));
  KT_OK(s2, kfm_node_register(s2, "b", &b));
  KT_OK(s1, kfm_enter(s1, a));
  KT_OK(s2, kfm_enter(s2, b));
  region_in(s2, b, 20);
  KT_OK(s2, kfm_exit(s2, b));
  struct obs ob = observe(s2, "b");
  CU_ASSERT_EQUAL(ob.count, NT);
  /* The workers hold slots in s2; destroy it under them. */
  kfm_session_destroy(s2);
  /* A transition in s1 makes it the main thread's current session again. */
  KT_OK(s1, kfm_exit(s1, a));
  KT_OK(s1, kfm_enter(s1, a));
  region_in(s1, a, 20);
  KT_OK(s1, kfm_exit(s1, a));
  struct obs oa = observe(s1, "a");
  CU_ASSERT_EQUAL(oa.count, 2 + (NT - 1)); /* two master activations, one region */
  CU_ASSERT_TRUE(oa.cpu_ns >= 0.9 * NT * 20e6);
  printf("\n  nested sessions: b count %llu, a count %llu", (unsigned long long)ob.count,
         (unsigned long long)oa.count);
  kfm_session_destroy(s1);

  /* No session at all: workers whose last session is gone encounter nested
   * regions (their thread-local state names destroyed sessions). */
  int saved = omp_get_max_active_levels();
  omp_set_max_active_levels(2);
  atomic_int ran = 0;
#pragma omp parallel num_threads(NT)
  {
#pragma omp parallel num_threads(NT)
    atomic_fetch_add(&ran, 1);
  }
  omp_set_max_active_levels(saved);
  CU_ASSERT_EQUAL(atomic_load(&ran), NT * NT);

  /* A new session: the same pool threads attach to it and attribute. */
  kfm_session_t *s3 = session_new();
  CU_ASSERT_PTR_NOT_NULL_FATAL(s3);
  kfm_node_id_t c;
  KT_OK(s3, kfm_node_register(s3, "c", &c));
  KT_OK(s3, kfm_enter(s3, c));
  region_in(s3, c, 10);
  KT_OK(s3, kfm_exit(s3, c));
  struct obs oc = observe(s3, "c");
  CU_ASSERT_EQUAL(oc.count, NT);
  kfm_session_destroy(s3);
}

/* Child mode: KFM_OMPT=off is set; the tool must be off and the helpers
 * must do the whole job.  Returns the process exit status. */
static int child_ompt_off(void) {
  (void)omp_get_max_threads(); /* initialise the runtime */
  if (kfm_omp_tool_active()) {
    fprintf(stderr, "KFM_OMPT=off: the tool is still active\n");
    return 1;
  }
  kfm_session_t *s = session_new();
  if (s == NULL) {
    return 1;
  }
  kfm_node_id_t h, u;
  kfm_node_register(s, "helped", &h);
  kfm_node_register(s, "unhelped", &u);
  kfm_enter(s, h);
  const kfm_node_id_t parent = KFM_OMP_PARENT(s);
#pragma omp parallel num_threads(NT)
  {
    kfm_omp_worker_begin(s, parent);
    kfmk_busy_ms(5);
    kfm_omp_worker_end(s, parent);
  }
  kfm_exit(s, h);
  kfm_enter(s, u);
#pragma omp parallel num_threads(NT)
  kfmk_busy_ms(5);
  kfm_exit(s, u);
  kfm_session_stop(s);
  struct obs oh = observe(s, "helped"), ou = observe(s, "unhelped");
  kfm_session_destroy(s);
  if (oh.count != NT || ou.count != 1) {
    fprintf(stderr, "KFM_OMPT=off: helped count %llu (want %d), unhelped %llu (want 1)\n",
            (unsigned long long)oh.count, NT, (unsigned long long)ou.count);
    return 1;
  }
  return 0;
}

static void test_ompt_off(void) {
  if (!tool_expected) {
    printf("\n  skipped: the OMPT tool is not in use in this build/runtime");
    return;
  }
  /* The runtime starts its tool once per process: the switch is checked in
   * a fresh process with KFM_OMPT=off in its environment. */
  size_t n = 0;
  while (environ[n]) {
    n++;
  }
  char **env = calloc(n + 2, sizeof *env);
  CU_ASSERT_PTR_NOT_NULL_FATAL(env);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(environ[i], "KFM_OMPT=", 9) != 0) {
      env[k++] = environ[i];
    }
  }
  env[k++] = "KFM_OMPT=off";
  char *argv[] = {"test_openmp", "--child-ompt-off", NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, env);
  free(env);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  int status = 0;
  CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
  CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  printf("\n  KFM_OMPT=off child: exit %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

int main(int argc, char **argv) {
  /* Threads that spin-wait between regions burn CPU outside every node, and
   * on a shared machine that spinning (libgomp's GOMP_SPINCOUNT, libomp's
   * KMP_BLOCKTIME) is a large, load-dependent share of the process's CPU:
   * the "node CPU = process CPU" check needs waiting threads to sleep.
   * libgomp reads the variable in a constructor, so it is set by
   * re-executing (CTest sets it already and skips this). */
  if (getenv("OMP_WAIT_POLICY") == NULL) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);
    perror("execv /proc/self/exe");
    return 1;
  }
  if (argc > 1 && strcmp(argv[1], "--child-ompt-off") == 0) {
    return child_ompt_off();
  }
  /* The runtime starts (and looks for a tool) at its first call. */
  (void)omp_get_max_threads();
  rt_llvm = dlsym(RTLD_DEFAULT, "__kmpc_fork_call") != NULL;
  tool_active = kfm_omp_tool_active();
#ifdef KFM_HAVE_OMPT
  const char *off = getenv("KFM_OMPT");
  tool_expected = rt_llvm && !(off && (strcmp(off, "off") == 0 || strcmp(off, "0") == 0));
#endif
  static const struct kt_case cases[] = {
      {"runtime", test_runtime},
      {"triad_kernel", test_triad_kernel},
      {"triad_helpers", test_triad_helpers},
      {"nested", test_nested},
      {"sessions", test_sessions},
      {"ompt_off", test_ompt_off},
      {NULL, NULL},
  };
  int rc = kt_run("openmp", cases);
  if (rc == 0 && strcmp(KFM_TEST_OMP_RUNTIME, "llvm") == 0 && !tool_expected) {
    printf("skipped: libkfm was built without KFM_HAVE_OMPT (or KFM_OMPT=off), so the OMPT "
           "attribution this variant exists for was not exercised\n");
    return 77;
  }
  return rc;
}
