/*
 * ompt.c - kfm's OpenMP tool (OMPT, OpenMP 5.0 chapter 4): work done by the
 * worker threads of a parallel region is attributed to the node the
 * encountering thread was in when the region began.
 *
 * How: libkfm exports ompt_start_tool, which OMPT runtimes (LLVM libomp,
 * Intel libiomp5) look up at start-up.  At parallel-begin, on the
 * encountering thread, the tool records {session, uid, innermost node} of
 * that thread in the region's parallel_data.  At implicit-task-begin on
 * each worker (team index != 0) it calls kfm_enter(session, node); when the
 * worker reaches the region's closing (join) barrier it calls kfm_exit.
 * The encountering thread's own implicit task is already inside the node
 * and is left alone.  Nested regions work the same at every level: the
 * encountering thread of an inner region is often a worker of the outer
 * one, whose innermost node is then the outer region's node (or one it
 * entered since).
 *
 * Why a worker's kfm_enter is the right thing: kfm measures per thread, so
 * while the worker is inside the node its time, CPU time, faults and other
 * transition metrics are the node's, exactly as if the master had done that
 * share of the work itself.  The node's inclusive CPU time then approaches
 * threads x wall for a region that keeps every thread busy, and its count
 * grows by one per worker implicit task (count counts per-thread
 * activations; see kfm/kfm_omp.h).
 *
 * Why the exit is at the join barrier and not at implicit-task-end: libomp
 * dispatches a worker's implicit-task-end only when the worker is released
 * for its next region (or reaped at exit), so a node left open until then
 * would collect the worker's idle spinning (KMP_BLOCKTIME, 200 ms by
 * default) and stay "active" after the master left it.  The sync-region
 * begin of the join barrier is when the worker's share is done.  OpenMP 5.1
 * runtimes name that barrier ompt_sync_region_barrier_implicit_parallel;
 * older ones (LLVM 14 here) report every implicit barrier as
 * ompt_sync_region_barrier_implicit and tell the join barrier apart only by
 * a NULL codeptr_ra on workers, which is what the test below uses.  If a
 * runtime offers no sync-region callback the exit happens at
 * implicit-task-end, late but balanced.
 *
 * Costs: one TLS read and one uncontended mutex (kfm__session_live) per
 * worker per region, plus kfm_enter/kfm_exit; no allocation unless regions
 * nest deeper than OMPT_LEVELS on one thread.  None of this is on the path
 * of kfm_enter/kfm_exit themselves.
 *
 * Built only with KFM_HAVE_OMPT.  The OMPT types come from the runtime's
 * <omp-tools.h> when the compiler finds it (clang does); gcc does not see
 * LLVM's header, and putting clang's resource directory on gcc's include
 * path breaks gcc's own <stddef.h>, so the few types used here are then
 * declared below from the specification (they are the OpenMP ABI).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"
#include "kfm/kfm_omp.h"

#ifdef KFM_HAVE_OMPT

#if defined(__has_include)
#if __has_include(<omp-tools.h>)
#define OMPT_REAL_HEADER 1
#endif
#endif

#ifdef OMPT_REAL_HEADER
#include <omp-tools.h>
#else
/* The subset of the OpenMP 5.0 tool interface (section 4.4) this file uses,
 * with the specification's names and values. */
typedef union ompt_data_t {
  uint64_t value;
  void *ptr;
} ompt_data_t;
typedef struct ompt_frame_t ompt_frame_t; /* only passed through, never read */
typedef void (*ompt_interface_fn_t)(void);
typedef ompt_interface_fn_t (*ompt_function_lookup_t)(const char *interface_function_name);
typedef void (*ompt_callback_t)(void);
typedef enum ompt_callbacks_t {
  ompt_callback_parallel_begin = 3,
  ompt_callback_parallel_end = 4,
  ompt_callback_implicit_task = 7,
  ompt_callback_sync_region = 23,
} ompt_callbacks_t;
typedef enum ompt_set_result_t {
  ompt_set_error = 0,
  ompt_set_never = 1,
  ompt_set_impossible = 2,
  ompt_set_sometimes = 3,
  ompt_set_sometimes_paired = 4,
  ompt_set_always = 5,
} ompt_set_result_t;
typedef ompt_set_result_t (*ompt_set_callback_t)(ompt_callbacks_t event, ompt_callback_t callback);
typedef enum ompt_scope_endpoint_t {
  ompt_scope_begin = 1,
  ompt_scope_end = 2,
} ompt_scope_endpoint_t;
typedef enum ompt_sync_region_t {
  ompt_sync_region_barrier_implicit = 2,
  ompt_sync_region_barrier_implicit_parallel = 9,
} ompt_sync_region_t;
enum {
  ompt_task_initial = 0x00000001,
  ompt_parallel_league = 0x40000000,
};
typedef int (*ompt_initialize_t)(ompt_function_lookup_t lookup, int initial_device_num,
                                 ompt_data_t *tool_data);
typedef void (*ompt_finalize_t)(ompt_data_t *tool_data);
typedef struct ompt_start_tool_result_t {
  ompt_initialize_t initialize;
  ompt_finalize_t finalize;
  ompt_data_t tool_data;
} ompt_start_tool_result_t;
#endif /* OMPT_REAL_HEADER */

/* Nesting depth, per thread, handled in thread-local arrays; deeper regions
 * take malloc (encountering side) or go unattributed (worker side). */
#define OMPT_LEVELS 8

/* What the encountering thread was in when it opened a region. */
struct ompt_par {
  kfm_session_t *s;
  uint64_t uid;
  uint32_t node;
  uint32_t heap; /* 1 when malloc'ed (deeper than OMPT_LEVELS) */
};

/* A node a worker entered for an implicit task. */
struct ompt_work {
  kfm_session_t *s;
  uint64_t uid;
  uint32_t node;
  uint32_t open; /* 0 once left at the join barrier */
};

/* Per-thread stacks.  Regions nest strictly on one thread (parallel-begin
 * and -end both run on the encountering thread; a worker's implicit tasks
 * end before it starts another), so a stack is all the bookkeeping needed.
 * The records of ompt_par_stack are read by the workers of the region while
 * the encountering thread waits in it, which keeps them alive.  Default
 * (dynamic) TLS model: libkfm may be dlopen'ed, and these are not on the
 * kfm_enter hot path. */
static __thread struct ompt_par ompt_par_stack[OMPT_LEVELS];
static __thread unsigned ompt_par_top;
static __thread struct ompt_work ompt_work_stack[OMPT_LEVELS];
static __thread unsigned ompt_work_top;

/* Whether the runtime started the tool: written by its initialize and
 * finalize (once per process each), read by kfm_omp_tool_active. */
static _Atomic int ompt_active;

/* The runtime keeps a pointer to this and passes &tool_data back to
 * initialize/finalize, so it must outlive the call: static, one per process
 * because the runtime starts one tool per process. */
static ompt_start_tool_result_t ompt_result;

static int ompt_session_ok(kfm_session_t *s, uint64_t uid) {
  return kfm__session_live(uid, s) && atomic_load(&s->state) == KFM__RUNNING;
}

/* getrusage(RUSAGE_THREAD), which the /proc backend reads at DETAILED,
 * advances for a running thread only at scheduler ticks (every 4 ms here)
 * or context switches: a worker activation of a few milliseconds would read
 * the same CPU time at enter and exit and its CPU would land outside the
 * node.  Reading CLOCK_THREAD_CPUTIME_ID makes the kernel bring the
 * thread's accounting up to date first (~0.6 us, once per worker per region
 * boundary).  Redundant once that backend does this itself. */
static void ompt_cpu_sync(const kfm_session_t *s) {
  if (s->cfg.level >= KFM_LEVEL_DETAILED) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  }
}

static void ompt_work_close(struct ompt_work *w) {
  if (w->open) {
    w->open = 0;
    /* A session destroyed meanwhile has taken the worker's slot with it;
     * a stopped one rejects the exit itself. */
    if (kfm__session_live(w->uid, w->s)) {
      ompt_cpu_sync(w->s);
      kfm_exit(w->s, w->node);
    }
  }
}

static void ompt_on_parallel_begin(ompt_data_t *encountering_task_data,
                                   const ompt_frame_t *encountering_task_frame,
                                   ompt_data_t *parallel_data, unsigned int requested_parallelism,
                                   int flags, const void *codeptr_ra) {
  (void)encountering_task_data;
  (void)encountering_task_frame;
  (void)requested_parallelism;
  (void)codeptr_ra;
  parallel_data->ptr = NULL;
  if (flags & ompt_parallel_league) {
    return; /* teams: their implicit tasks are initial tasks, not attributed */
  }
  kfm_session_t *s;
  uint64_t uid;
  uint32_t node;
  if (!kfm__tls_current(&s, &uid, &node) || node == KFM__NONE) {
    return; /* the encountering thread is in no node: nothing to inherit */
  }
  struct ompt_par *p;
  if (ompt_par_top < OMPT_LEVELS) {
    p = &ompt_par_stack[ompt_par_top++];
    p->heap = 0;
  } else {
    p = malloc(sizeof *p);
    if (p == NULL) {
      return; /* the region goes unattributed rather than failing */
    }
    p->heap = 1;
  }
  p->s = s;
  p->uid = uid;
  p->node = node;
  parallel_data->ptr = p;
}

static void ompt_on_parallel_end(ompt_data_t *parallel_data, ompt_data_t *encountering_task_data,
                                 int flags, const void *codeptr_ra) {
  (void)encountering_task_data;
  (void)flags;
  (void)codeptr_ra;
  struct ompt_par *p = parallel_data->ptr;
  if (p == NULL) {
    return;
  }
  parallel_data->ptr = NULL;
  if (p->heap) {
    free(p);
  } else {
    ompt_par_top--;
  }
}

static void ompt_on_implicit_task(ompt_scope_endpoint_t endpoint, ompt_data_t *parallel_data,
                                  ompt_data_t *task_data, unsigned int actual_parallelism,
                                  unsigned int index, int flags) {
  (void)actual_parallelism;
  if (flags & ompt_task_initial) {
    return; /* the initial task of a thread or of a teams league */
  }
  if (endpoint == ompt_scope_begin) {
    /* task_data->value: 0, or the 1-based position of this task's entry in
     * the worker stack; it travels with the task to the barrier and end
     * callbacks (libomp hands those a copy of it, not the same object). */
    task_data->value = 0;
    if (index == 0 || parallel_data == NULL || ompt_work_top >= OMPT_LEVELS) {
      return; /* the encountering thread is in the node already */
    }
    const struct ompt_par *p = parallel_data->ptr;
    if (p == NULL || !ompt_session_ok(p->s, p->uid)) {
      return;
    }
    ompt_cpu_sync(p->s);
    if (kfm_enter(p->s, p->node) != 0) {
      return;
    }
    struct ompt_work *w = &ompt_work_stack[ompt_work_top++];
    w->s = p->s;
    w->uid = p->uid;
    w->node = p->node;
    w->open = 1;
    task_data->value = ompt_work_top;
  } else if (endpoint == ompt_scope_end) {
    uint64_t v = task_data->value;
    if (v == 0 || v != ompt_work_top) {
      return; /* not ours, or a runtime that broke nesting: leave it */
    }
    task_data->value = 0;
    ompt_work_close(&ompt_work_stack[v - 1]);
    ompt_work_top = (unsigned)(v - 1);
  }
}

static void ompt_on_sync_region(ompt_sync_region_t kind, ompt_scope_endpoint_t endpoint,
                                ompt_data_t *parallel_data, ompt_data_t *task_data,
                                const void *codeptr_ra) {
  (void)parallel_data;
  if (endpoint != ompt_scope_begin || task_data == NULL) {
    return;
  }
  uint64_t v = task_data->value;
  if (v == 0 || v > ompt_work_top) {
    return; /* master, explicit task, or a task we did not enter */
  }
  /* See the file comment: the join barrier of the region, by its 5.1 name
   * or by the pre-5.1 libomp signature. */
  if ((int)kind == (int)ompt_sync_region_barrier_implicit_parallel ||
      ((int)kind == (int)ompt_sync_region_barrier_implicit && codeptr_ra == NULL)) {
    ompt_work_close(&ompt_work_stack[v - 1]);
  }
}

#ifdef OMPT_REAL_HEADER
/* With the runtime's header at hand, let the compiler check the handlers
 * against its callback types (they are cast to ompt_callback_t below). */
__attribute__((unused)) static const ompt_callback_parallel_begin_t ompt_check_pb =
    ompt_on_parallel_begin;
__attribute__((unused)) static const ompt_callback_parallel_end_t ompt_check_pe =
    ompt_on_parallel_end;
__attribute__((unused)) static const ompt_callback_implicit_task_t ompt_check_it =
    ompt_on_implicit_task;
__attribute__((unused)) static const ompt_callback_sync_region_t ompt_check_sr =
    ompt_on_sync_region;
#endif

static int ompt_initialize(ompt_function_lookup_t lookup, int initial_device_num,
                           ompt_data_t *tool_data) {
  (void)initial_device_num;
  (void)tool_data;
  /* The OMPT API passes every callback as void (*)(void); gcc accepts
   * casts to and from that type without -Wcast-function-type. */
  ompt_set_callback_t set = (ompt_set_callback_t)lookup("ompt_set_callback");
  if (set == NULL) {
    return 0;
  }
  /* The three callbacks attribution rests on must be dispatched every time
   * (ompt_set_always); otherwise the tool declines and the kfm_omp.h
   * helpers remain the way to attribute. */
  if (set(ompt_callback_parallel_begin, (ompt_callback_t)ompt_on_parallel_begin) !=
          ompt_set_always ||
      set(ompt_callback_parallel_end, (ompt_callback_t)ompt_on_parallel_end) != ompt_set_always ||
      set(ompt_callback_implicit_task, (ompt_callback_t)ompt_on_implicit_task) != ompt_set_always) {
    return 0;
  }
  /* Optional: without it workers leave the node at implicit-task-end. */
  set(ompt_callback_sync_region, (ompt_callback_t)ompt_on_sync_region);
  atomic_store(&ompt_active, 1);
  return 1; /* non-zero keeps the tool active */
}

static void ompt_finalize(ompt_data_t *tool_data) {
  (void)tool_data;
  atomic_store(&ompt_active, 0);
}

static int ompt_disabled_by_env(void) {
  const char *e = getenv("KFM_OMPT");
  return e != NULL && (strcasecmp(e, "off") == 0 || strcasecmp(e, "0") == 0 ||
                       strcasecmp(e, "no") == 0 || strcasecmp(e, "false") == 0);
}

/* Looked up by the OpenMP runtime at its initialisation (OpenMP 5.0,
 * 4.2.1).  Returning NULL declines; the runtime then tries the tools named
 * in OMP_TOOL_LIBRARIES, so KFM_OMPT=off also hands the slot to another
 * tool.  Visibility default: the library is built with hidden visibility. */
KFM_EXPORT ompt_start_tool_result_t *ompt_start_tool(unsigned int omp_version,
                                                     const char *runtime_version);

ompt_start_tool_result_t *ompt_start_tool(unsigned int omp_version, const char *runtime_version) {
  (void)omp_version;
  (void)runtime_version;
  if (ompt_disabled_by_env()) {
    return NULL;
  }
  ompt_result.initialize = ompt_initialize;
  ompt_result.finalize = ompt_finalize;
  ompt_result.tool_data.value = 0;
  return &ompt_result;
}

int kfm_omp_tool_active(void) {
  return atomic_load(&ompt_active);
}

#else /* !KFM_HAVE_OMPT */

int kfm_omp_tool_active(void) {
  return 0;
}

#endif /* KFM_HAVE_OMPT */
