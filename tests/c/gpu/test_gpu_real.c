/*
 * test_gpu_real.c - the GPU path end to end on a real CUDA device, written
 * so that a wrong attribution fails it.  No helper synchronises inside the
 * node that launched, so a time-window attribution (GPU work credited to
 * whatever node is open while it runs) gets these wrong:
 *
 *  - a spin launched in node "launch" and synchronised in node "wait" is
 *    the launching node's, and "wait" has no kernel;
 *  - two threads on their own streams, inside their own nodes at the same
 *    time, get exactly their own launch counts (37 and 53);
 *  - a CUDA graph of 4 kernels launched 3 times inside "graph" gives it 12;
 *  - the CUDA context is created before the session starts;
 *  - 5 launches outside any node, during the session, are "unattributed";
 *  - the kernel time of node "timed" (5 spins of 10..50 ms) is within 3 %
 *    of the same kernels timed with CUDA events on their stream (not of
 *    the nominal clock, which a capped GPU does not reach);
 *  - nothing is pending or dropped at the end, and no external id refused;
 *  - NVML's values are in plausible units (%, mW, MHz, C, bytes).
 *
 * The exported JSON is checked by tests/gpu/check_export.py against the
 * ground truth this program writes next to it.  Without a usable GPU it
 * prints why and exits 77 (CTest's skip).  Built with AddressSanitizer it
 * runs too: CUDA needs ASAN_OPTIONS=protect_shadow_gap=0, and without it
 * this program fails rather than skips.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kfm_cuda_kernels.h"
#include "kfm_test.h"

#ifndef KFM_GPU_CHECK_SCRIPT
#error "KFM_GPU_CHECK_SCRIPT (tests/gpu/check_export.py) must be defined by the build"
#endif

#define THREAD_A_LAUNCHES 37u
#define THREAD_B_LAUNCHES 53u
#define GRAPH_KERNELS 4u
#define GRAPH_LAUNCHES 3u
#define OUTSIDE_LAUNCHES 5u
#define TIMED_SPINS 5

static char path[256], expect_path[256];

struct worker {
  kfm_session_t *s;
  kfm_node_id_t node;
  void *stream;
  unsigned launches;
  pthread_barrier_t *both_inside; /* both threads inside their nodes at once */
  int rc;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  w->rc = kfm_enter(w->s, w->node);
  pthread_barrier_wait(w->both_inside);
  if (w->rc == 0) {
    w->rc = kfmc_launch_tiny(w->stream, w->launches);
  }
  if (w->rc == 0) {
    w->rc = kfmc_stream_sync(w->stream);
  }
  pthread_barrier_wait(w->both_inside);
  int rc = kfm_exit(w->s, w->node);
  if (w->rc == 0) {
    w->rc = rc;
  }
  return NULL;
}

#define CUDA_OK(call)                                                                              \
  do {                                                                                             \
    int c_rc_ = (call);                                                                            \
    if (c_rc_ != 0) {                                                                              \
      fprintf(stderr, "\n%s:%d: %s: %s\n", __FILE__, __LINE__, #call, kfmc_strerror(c_rc_));       \
    }                                                                                              \
    CU_ASSERT_EQUAL_FATAL(c_rc_, 0);                                                               \
  } while (0)

static void test_attribution_on_gpu(void) {
  /* The context and the streams exist before the session. */
  CUDA_OK(kfmc_context_init());
  void *s0 = NULL, *sa = NULL, *sb = NULL, *sg = NULL;
  CUDA_OK(kfmc_stream_create(&s0));
  CUDA_OK(kfmc_stream_create(&sa));
  CUDA_OK(kfmc_stream_create(&sb));
  CUDA_OK(kfmc_stream_create(&sg));

  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=comprehensive,rate=200"));
  kfm_node_id_t n_launch, n_wait, n_a, n_b, n_graph, n_timed;
  KT_OK(s, kfm_node_register(s, "launch", &n_launch));
  KT_OK(s, kfm_node_register(s, "wait", &n_wait));
  KT_OK(s, kfm_node_register(s, "thread_a", &n_a));
  KT_OK(s, kfm_node_register(s, "thread_b", &n_b));
  KT_OK(s, kfm_node_register(s, "graph", &n_graph));
  KT_OK(s, kfm_node_register(s, "timed", &n_timed));
  KT_OK(s, kfm_session_start(s));

  /* Launched in one node, finished in another. */
  struct kfmc_timed lt;
  double launch_ms = 0;
  KT_OK(s, kfm_enter(s, n_launch));
  CUDA_OK(kfmc_spin_async(s0, 30000, &lt));
  KT_OK(s, kfm_exit(s, n_launch));
  KT_OK(s, kfm_enter(s, n_wait));
  CUDA_OK(kfmc_stream_sync(s0));
  KT_OK(s, kfm_exit(s, n_wait));
  CUDA_OK(kfmc_timed_ms(&lt, &launch_ms));

  /* Two threads, own streams, inside their nodes at the same time. */
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, 2);
  struct worker wa = {s, n_a, sa, THREAD_A_LAUNCHES, &bar, 0};
  struct worker wb = {s, n_b, sb, THREAD_B_LAUNCHES, &bar, 0};
  pthread_t ta, tb;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&ta, NULL, worker_main, &wa), 0);
  CU_ASSERT_EQUAL_FATAL(pthread_create(&tb, NULL, worker_main, &wb), 0);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  pthread_barrier_destroy(&bar);
  CU_ASSERT_EQUAL(wa.rc, 0);
  CU_ASSERT_EQUAL(wb.rc, 0);

  /* A graph launched three times. */
  KT_OK(s, kfm_enter(s, n_graph));
  CUDA_OK(kfmc_graph_run(sg, GRAPH_KERNELS, GRAPH_LAUNCHES));
  KT_OK(s, kfm_exit(s, n_graph));

  /* Outside every node. */
  CUDA_OK(kfmc_launch_tiny(s0, OUTSIDE_LAUNCHES));
  CUDA_OK(kfmc_stream_sync(s0));

  /* Kernel time against CUDA events. */
  struct kfmc_timed tt[TIMED_SPINS];
  double timed_ms = 0;
  KT_OK(s, kfm_enter(s, n_timed));
  for (int i = 0; i < TIMED_SPINS; i++) {
    CUDA_OK(kfmc_spin_async(s0, 10000u * (unsigned)(i + 1), &tt[i]));
  }
  CUDA_OK(kfmc_stream_sync(s0));
  KT_OK(s, kfm_exit(s, n_timed));
  for (int i = 0; i < TIMED_SPINS; i++) {
    double ms = 0;
    CUDA_OK(kfmc_timed_ms(&tt[i], &ms));
    timed_ms += ms;
  }

  KT_OK(s, kfm_session_stop(s)); /* flushes CUPTI's buffers */
  KT_OK(s, kfm_session_export(s, path));

  FILE *f = fopen(expect_path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fprintf(f,
          "{\"launch\":{\"launches\":1,\"event_ms\":%.6f},\"wait\":{\"launches\":0},"
          "\"thread_a\":{\"launches\":%u},\"thread_b\":{\"launches\":%u},"
          "\"graph\":{\"launches\":%u},\"timed\":{\"launches\":%d,\"event_ms\":%.6f},"
          "\"unattributed\":{\"launches\":%u},\"time_tolerance\":0.03}\n",
          launch_ms, THREAD_A_LAUNCHES, THREAD_B_LAUNCHES, GRAPH_KERNELS * GRAPH_LAUNCHES,
          TIMED_SPINS, timed_ms, OUTSIDE_LAUNCHES);
  fclose(f);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "python3 '%s' '%s' '%s'", KFM_GPU_CHECK_SCRIPT, path, expect_path);
  int rc = system(cmd);
  if (rc != 0) {
    fprintf(stderr, "\n%s failed (exit %d); export kept in %s\n", cmd, rc, path);
    path[0] = '\0';
  }
  CU_ASSERT_EQUAL(rc, 0);
  kfm_session_destroy(s);
  kfmc_stream_destroy(s0);
  kfmc_stream_destroy(sa);
  kfmc_stream_destroy(sb);
  kfmc_stream_destroy(sg);
}

/* Under AddressSanitizer the CUDA driver cannot map its memory unless the
 * shadow gap is left unprotected: say so instead of skipping. */
static int asan_blocks_cuda(void) {
#if defined(__SANITIZE_ADDRESS__)
  const char *o = getenv("ASAN_OPTIONS");
  return o == NULL || strstr(o, "protect_shadow_gap=0") == NULL;
#else
  return 0;
#endif
}

int main(void) {
  char why[256];
  void *drv = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (drv == NULL) {
    printf("test_gpu_real: skipped: needs a usable CUDA GPU: no driver (libcuda.so.1: %s)\n",
           dlerror());
    return 77;
  }
  dlclose(drv);
  if (asan_blocks_cuda()) {
    printf("test_gpu_real: FAILED: built with AddressSanitizer, which keeps CUDA from starting; "
           "run with ASAN_OPTIONS=protect_shadow_gap=0 (tests/gpu/run does)\n");
    return 1;
  }
  if (!kfmc_gpu_available(why, sizeof why)) {
    printf("test_gpu_real: skipped: needs a usable CUDA GPU: %s\n", why);
    return 77;
  }
  unsetenv("KFM_CONFIG");
  snprintf(path, sizeof path, "/tmp/kfm-gpu-real-%d.json", (int)getpid());
  snprintf(expect_path, sizeof expect_path, "/tmp/kfm-gpu-real-%d.expect.json", (int)getpid());
  static const struct kt_case cases[] = {
      {"CUDA work attributed to the launching node, exactly", test_attribution_on_gpu},
      {NULL, NULL},
  };
  int rc = kt_run("gpu_real", cases);
  if (path[0]) {
    remove(path);
  }
  remove(expect_path);
  return rc;
}
