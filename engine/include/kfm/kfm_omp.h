/*
 * kfm_omp.h - attributing the work of OpenMP worker threads to the kfm node
 * that opened the parallel region.
 *
 * kfm measures per thread: a node's time and metrics are what the threads
 * inside it consumed.  An OpenMP worker thread is not inside its master's
 * node unless something enters the node on it.  Two mechanisms do that:
 *
 *  1. The OMPT tool built into libkfm (engine/src/ompt.c).  Runtimes with
 *     the OpenMP tool interface (LLVM libomp - Debian's libomp-dev -, Intel
 *     libiomp5) find kfm's ompt_start_tool and then every worker enters the
 *     encountering thread's innermost node when its implicit task begins
 *     and leaves it when it reaches the region's closing barrier.  Nothing
 *     to write in the program.  KFM_OMPT=off in the environment disables
 *     it; kfm_omp_tool_active() says whether it runs.  A gcc -fopenmp
 *     program can use it without recompiling: libomp implements libgomp's
 *     GOMP_* entry points, so linking it against libomp instead of libgomp,
 *     or LD_PRELOAD=/usr/lib/llvm-<N>/lib/libomp.so.5, is enough.  The
 *     runtime looks for the tool once, when it initialises: libkfm must be
 *     loaded by then (linked, not dlopen'ed after the first OpenMP call).
 *
 *  2. The helpers below, for GNU libgomp, which has no OMPT: capture the
 *     node before the region, then enter/leave it on the workers inside:
 *
 *        kfm_node_id_t parent = KFM_OMP_PARENT(s);
 *        #pragma omp parallel
 *        {
 *          kfm_omp_worker_begin(s, parent);
 *          ... work ...
 *          kfm_omp_worker_end(s, parent);
 *        }
 *
 *     This is the reliable way with libgomp, and it is runtime-neutral: with
 *     libomp and the OMPT tool active the worker is already in `parent`
 *     when the helper runs, so the helper does nothing and nothing is
 *     counted twice; with KFM_OMPT=off the helpers do the whole job.
 *     Worksharing constructs that open their own region (`parallel for`)
 *     have no place for the calls: write them as `parallel` + `for`.
 *
 * What the node then reports.  Each worker activation is an ordinary
 * enter/exit on that worker's thread, so the node's inclusive metrics
 * (proc.cpu_user, proc.cpu_sys, faults, ...) sum the master's and every
 * worker's share: a node whose region keeps T threads busy shows a CPU time
 * near T x its wall time.  `count` counts per-thread activations: a node
 * entered once by the master that runs R regions of T threads has
 * count = 1 + R x (T - 1).  `total_ns` sums every activation's duration,
 * so it too exceeds the wall time; the master's own activation is the one
 * that equals it (max_ns when the regions are shorter than the node).
 *
 * Not covered by either mechanism: explicit tasks run by a worker while it
 * waits in the region's closing barrier (OMPT path: the worker has already
 * left the node there), and work of threads that are not OpenMP workers.
 */
#ifndef KFM_KFM_OMP_H
#define KFM_KFM_OMP_H

#include <stdint.h>
#include <time.h>

#include "kfm/kfm.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * 1 when the OpenMP runtime started kfm's OMPT tool and accepted its
 * callbacks; 0 with libgomp, with KFM_OMPT=off, when libkfm was built
 * without OMPT support, or before the runtime initialised itself (its first
 * OpenMP call or construct).
 */
KFM_EXPORT int kfm_omp_tool_active(void);

#if defined(__cplusplus)
#define KFM__OMP_TLS thread_local
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define KFM__OMP_TLS _Thread_local
#else
#define KFM__OMP_TLS __thread /* C99 with GNU extensions */
#endif

/* Which of the calling thread's open kfm_omp_worker_begin calls entered a
 * node: one bit per nesting level, innermost in bit 0.  Thread-local and
 * private to each translation unit (a static in a static inline function),
 * which is why begin and end must be called from the same source file. */
struct kfm__omp_nest {
  uint64_t bits;
  unsigned depth;
};

static inline struct kfm__omp_nest *kfm__omp_nest(void) {
  static KFM__OMP_TLS struct kfm__omp_nest nest;
  return &nest;
}

/* getrusage(RUSAGE_THREAD), read by the proc backend at DETAILED, advances
 * for a running thread only at scheduler ticks (every 1-10 ms, the kernel's HZ) or
 * context switches, so a worker activation of a few milliseconds would see
 * no CPU time.  Reading CLOCK_THREAD_CPUTIME_ID (~0.6 us) makes the kernel
 * bring the thread's accounting up to date first. */
static inline void kfm__omp_cpu_sync(kfm_session_t *s) {
#ifdef CLOCK_THREAD_CPUTIME_ID /* absent in strict ISO C builds: then skipped */
  if (kfm_session_level(s) >= KFM_LEVEL_DETAILED) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  }
#else
  (void)s;
#endif
}

/**
 * The calling thread's innermost node in s, to hand to the workers of the
 * region about to start; KFM_NODE_ROOT outside every node (the helpers then
 * do nothing).
 */
static inline kfm_node_id_t kfm_omp_parent(kfm_session_t *s) {
  kfm_node_id_t id = KFM_NODE_ROOT;
  if (s == NULL || kfm_current_node(s, &id) != 0) {
    return KFM_NODE_ROOT;
  }
  return id;
}

/** Capture the node a parallel region's workers must enter; see kfm_omp_parent. */
#define KFM_OMP_PARENT(s) kfm_omp_parent(s)

/**
 * At the start of a parallel region's body: enter `parent` on the calling
 * thread unless that thread is already in it.  The test is on the node, not
 * on omp_get_thread_num(): in a nested region the master of the inner team
 * (thread number 0) is inside `parent` already, while in the outer team's
 * numbering it may be a worker; and with the OMPT tool active every worker
 * is in `parent` already.  Must be paired with kfm_omp_worker_end on the
 * same thread, in the same source file, around properly nested regions.
 * @return 1 if it entered the node, 0 if there was nothing to do, or a
 *         negative KFM_E* code from kfm_enter (then end does nothing either).
 */
static inline int kfm_omp_worker_begin(kfm_session_t *s, kfm_node_id_t parent) {
  struct kfm__omp_nest *n = kfm__omp_nest();
  int rc = 0;
  if (s != NULL && parent != KFM_NODE_ROOT && n->depth < 64) {
    kfm_node_id_t cur = KFM_NODE_ROOT;
    if (kfm_current_node(s, &cur) != 0 || cur != parent) {
      kfm__omp_cpu_sync(s);
      rc = kfm_enter(s, parent);
      rc = rc == 0 ? 1 : rc;
    }
  }
  /* Beyond 64 levels nothing is entered and only the depth counts, so
   * the matching end calls stay paired and the outer bits survive. */
  if (n->depth < 64) {
    n->bits = (n->bits << 1) | (rc == 1 ? 1u : 0u);
  }
  n->depth++;
  return rc;
}

/**
 * At the end of the region's body: leave `parent` if the matching
 * kfm_omp_worker_begin entered it.
 * @return 0, or the KFM_E* code of kfm_exit (KFM_EORDER when the body left
 *         a node of its own open).
 */
static inline int kfm_omp_worker_end(kfm_session_t *s, kfm_node_id_t parent) {
  struct kfm__omp_nest *n = kfm__omp_nest();
  if (n->depth == 0) {
    return KFM_ENOTENTERED;
  }
  int entered = 0;
  if (n->depth <= 64) {
    entered = (int)(n->bits & 1u);
    n->bits >>= 1;
  }
  n->depth--;
  if (!entered) {
    return 0;
  }
  kfm__omp_cpu_sync(s);
  return kfm_exit(s, parent);
}

#ifdef __cplusplus
}
#endif
#endif /* KFM_KFM_OMP_H */
