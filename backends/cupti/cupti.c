/*
 * cupti.c - the "cupti" backend: GPU kernels, memory copies, memsets and
 * synchronisations attributed to the node that issued them, from CUPTI's
 * activity API.
 *
 * Loading.  libcupti is never linked: probe dlopen's the library of the
 * headers' major version and fills a symbol table (struct kfm__cupti_api)
 * with dlsym; tests inject their own table.  probe also looks for the
 * driver (libcuda.so.1) and tries cuptiActivityEnable(CONCURRENT_KERNEL),
 * so a machine without a GPU reports the exact reason, never a failed
 * session.
 *
 * Attribution (the technique of LLNL Caliper's cuptitrace service).  The
 * enter hook pushes an external correlation id (kind CUSTOM2, tagged with
 * "kf" and the run's generation around node id + 1: KFM__CUPTI_ID) on the
 * calling thread's CUPTI stack and the exit hook pops it.  Only ids of that
 * form, of the current generation and of a node this session pushed, map
 * records to nodes: PyTorch's profiler pushes its own op ids (CUSTOM0/1) on
 * the same stacks, and a thread left inside a node at stop still has its id
 * pushed after a restart (its next hook pops such leftovers).  CUPTI then
 * precedes every runtime/driver API record made inside a node by an
 * EXTERNAL_CORRELATION record mapping the API's correlationId to the
 * innermost node; kernel, memcpy, memset and synchronisation records carry
 * that correlationId.  Records come in any order and across buffers, so a
 * record whose mapping has not been seen yet waits in a bounded pending
 * ring and is retried after every buffer; what is never mapped (GPU work
 * issued outside every node, or mappings lost to the bounds) is counted as
 * "unattributed", never given to some other node.
 *
 * Collection spans start to stop: the start hook enables the activity
 * kinds (and, where CUPTI allows it, only the API calls that attribution
 * needs: launches, copies, sets, syncs), the flush hook at stop flushes
 * complete buffers, disables what start enabled and force-flushes the rest.
 * Every record lost on the way is counted: declined buffers, CUPTI's own
 * drops, incomplete records in force-flushed buffers and the bytes after
 * an unreadable one.  open claims CUPTI's single subscriber slot, so a
 * second CUPTI client (PyTorch's profiler, Nsight) is detected and named
 * instead of having its buffer callbacks silently replaced.
 *
 * Threads and locks.  The hooks run on the hot path: one CUPTI call each,
 * no allocation, no lock.  Buffers are handed to CUPTI from a process-wide
 * pool allocated once (the request callback takes the pool's mutex and
 * never allocates).  The completed callback runs on a CUPTI thread (or
 * inside cuptiActivityFlushAll) and parses the records under the backend's
 * private lock, which node transitions never take.  Export and flush take
 * the same private lock.
 *
 * Time.  CUPTI timestamps are ns on a CLOCK_REALTIME-based clock
 * (notes/floors.md).  At open, and again at flush, the backend reads
 * (cuptiGetTimestamp, CLOCK_MONOTONIC, CLOCK_REALTIME) as close together as
 * it can and maps GPU times onto CLOCK_MONOTONIC by interpolating the
 * offset between the two pairs; timeline times are exported as ns since the
 * session start when the engine passed it (kfm__cupti_set_start), else
 * since the backend's open, and the export says which.
 *
 * Nothing here invents a figure: kernels whose timestamps CUPTI could not
 * collect (both 0) count as launches and "untimed", adding no time.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "kfm_cupti.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* ---------------------------------------------------------------------- */
/* Sizes.  Everything a callback touches is allocated before it runs.      */

#define CUPTI_BUF_SIZE (512u * 1024u) /* bytes per activity buffer */
#define CUPTI_POOL_MB_DEFAULT 32u     /* pool size without KFM_CUPTI_BUFFER_MB */
#define CUPTI_POOL_MB_MAX 4096u
#define CUPTI_FLUSH_PERIOD_MS 100u /* partly filled buffers come back this often */
#define CUPTI_MAP_CAP (1u << 16)      /* correlationId -> node slots */
#define CUPTI_MAP_WINDOW 16u          /* probe length; the oldest id in it is evicted */
#define CUPTI_PEND_CAP (1u << 13)     /* records waiting for their mapping */
#define CUPTI_KTAB_CAP (1u << 12)     /* (node, kernel, grid, block) entries */
#define CUPTI_NAME_CAP (1u << 12)     /* distinct kernel names */
#define CUPTI_ARENA (256u * 1024u)    /* bytes of kernel names */
#define CUPTI_NAME_MAX 1023u          /* longer names are cut (and marked "...") */
#define CUPTI_TL_CAP (1u << 16)       /* timeline events */
#define CUPTI_NODE_MAX (1u << 24)     /* highest node id the per-node table grows to */
#define CUPTI_GEN_MASK 0xFFFFu        /* generation bits of an id */

#define CUPTI_NONE UINT32_MAX            /* the unattributed bucket / no node */
#define CUPTI_NAME_NONE UINT32_MAX       /* record had no name */
#define CUPTI_NAME_FULL (UINT32_MAX - 1) /* the name table was full */

/* Record classes, also the indices of kfm__cupti_counts.records. */
enum {
  CUPTI_R_KERNEL,
  CUPTI_R_MEMCPY,
  CUPTI_R_MEMSET,
  CUPTI_R_SYNC,
  CUPTI_R_RUNTIME,
  CUPTI_R_DRIVER,
  CUPTI_R_EXTCORR,
  CUPTI_R_OTHER,
};
static const char *const cupti_record_names[8] = {
    "kernel", "memcpy", "memset", "synchronization", "runtime", "driver", "external_correlation",
    "other"};

/* The activity kinds open enables, in order.  Only CONCURRENT_KERNEL is
 * required; a failure on another is reported in the note and the export. */
static const struct {
  CUpti_ActivityKind kind;
  const char *name;  /* in the export */
  const char *macro; /* in messages, as CUPTI_ACTIVITY_KIND_<macro> */
  int required;
} cupti_kinds[] = {
    {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, "concurrent_kernel", "CONCURRENT_KERNEL", 1},
    {CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION, "external_correlation", "EXTERNAL_CORRELATION", 0},
    {CUPTI_ACTIVITY_KIND_MEMCPY, "memcpy", "MEMCPY", 0},
    {CUPTI_ACTIVITY_KIND_MEMSET, "memset", "MEMSET", 0},
    {CUPTI_ACTIVITY_KIND_SYNCHRONIZATION, "synchronization", "SYNCHRONIZATION", 0},
    {CUPTI_ACTIVITY_KIND_RUNTIME, "runtime", "RUNTIME", 0},
    {CUPTI_ACTIVITY_KIND_DRIVER, "driver", "DRIVER", 0},
};
#define CUPTI_NKINDS (sizeof cupti_kinds / sizeof cupti_kinds[0])
#define CUPTI_KIND_RUNTIME_IX 5u /* cupti_kinds index of RUNTIME; DRIVER follows */

/* The API calls whose records attribution needs (their EXTERNAL_CORRELATION
 * record maps the correlationId of the GPU work they issue), by name prefix
 * so every version suffix (_v2, _ptsz, _ptds, Ex) is included. */
static const char *const cupti_runtime_api[] = {
    "cudaLaunch", "cudaGraphLaunch", "cudaMemcpy", "cudaMemset", "cudaStreamSynchronize",
    "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaStreamWaitEvent", NULL};
static const char *const cupti_driver_api[] = {
    "cuLaunch", "cuGraphLaunch", "cuMemcpy", "cuMemset", "cuStreamSynchronize", "cuCtxSynchronize",
    "cuEventSynchronize", "cuStreamWaitEvent", NULL};
#define CUPTI_RT_CBIDS ((unsigned)CUPTI_RUNTIME_TRACE_CBID_SIZE)
#define CUPTI_DRV_CBIDS ((unsigned)CUPTI_DRIVER_TRACE_CBID_SIZE)

/* One kernel/memcpy/memset/sync record reduced to what is aggregated. */
struct cupti_item {
  uint64_t start, end, bytes;
  uint32_t corr;
  uint32_t device; /* CUDA device id (kernels, copies, sets); UINT32_MAX unknown */
  uint32_t name; /* arena offset, CUPTI_NAME_NONE or CUPTI_NAME_FULL */
  int32_t grid[3], block[3];
  uint8_t cls; /* CUPTI_R_KERNEL .. CUPTI_R_SYNC */
  uint8_t copy_kind;
};

struct cupti_slot {
  uint32_t corr;
  uint32_t node1; /* node id + 1; 0 marks an empty slot */
};

struct cupti_node {
  struct kfm__cupti_totals t;
  uint64_t records; /* any record at all: the node appears in the export */
};

struct cupti_kent {
  uint32_t node, name, device;
  int32_t grid[3], block[3];
  uint64_t count, total_ns, untimed;
  int used;
};

struct cupti_event {
  uint64_t start, end, bytes;
  uint32_t node, name, device;
  uint8_t cls, copy_kind;
};

struct cupti_state {
  int active;       /* open succeeded; the hooks and export use CUPTI */
  char reason[256]; /* why not active (export of a state that never opened) */
  struct kfm__cupti_api *api;
  pthread_mutex_t lock; /* everything below; never taken by transitions */
  int lock_init;
  unsigned enabled;                  /* bit i: cupti_kinds[i] enabled */
  char kind_error[CUPTI_NKINDS][64]; /* why an optional kind is off */
  int collecting;                    /* between start and stop: kinds enabled */
  /* API calls traced one by one (instead of whole RUNTIME/DRIVER kinds). */
  uint64_t rt_on[(CUPTI_RT_CBIDS + 63) / 64], drv_on[(CUPTI_DRV_CBIDS + 63) / 64];
  unsigned n_api;                  /* how many, for the export; 0: whole kinds */
  CUpti_SubscriberHandle sub;      /* our claim on CUPTI's subscriber slot, or NULL */
  _Atomic uint32_t gen;            /* this run's generation (ids carry it) */
  _Atomic uint32_t node_hi;        /* 1 + highest node id pushed: ids past it are refused */

  /* Time base: (gpu, monotonic, realtime) at open and at flush. */
  uint64_t gpu0, mono0, real0;
  uint64_t gpu1, mono1;
  int have1;
  uint64_t epoch_mono; /* origin of exported timeline times */
  int epoch_is_start;  /* 1: session start given by the engine */

  struct cupti_slot *map;
  struct cupti_item *pend; /* ring of CUPTI_PEND_CAP */
  uint32_t pend_head, npend;

  struct cupti_node *nodes; /* indexed by node id */
  uint32_t nodes_cap;
  struct cupti_node unattr;

  struct cupti_kent *ktab;
  uint32_t nkern;

  char *arena;
  uint32_t arena_used;
  uint32_t *names; /* open addressing on name text: arena offset + 1, 0 empty */
  uint32_t nnames;

  struct cupti_event *tl;
  uint32_t ntl;

  struct kfm__cupti_counts counts;
  uint64_t nomem; /* records unattributed for want of memory or a node id >= CUPTI_NODE_MAX */
  _Atomic uint64_t push_failed;  /* hot path: relaxed increment on failure only */
  _Atomic uint64_t stale_popped; /* hot path, once per thread and run at most */
};

/* Per thread: which of the enclosing enters really pushed an id, so an
 * exit pops only what its enter pushed. */
struct cupti_tstate {
  uint32_t gen; /* generation of the pushes below; another: leftovers to pop */
  uint32_t depth;
  uint64_t pushed[(KFM_STACK_MAX + 63) / 64];
};

/* ---------------------------------------------------------------------- */
/* Process-wide state.  CUPTI has one activity client per process and its
 * buffer callbacks carry no user pointer, so the backend keeps, for the
 * process: the loaded symbol table, the session that owns CUPTI (one at a
 * time) and the buffer pool, which must outlive any session because CUPTI
 * may still hold a buffer when a session closes.                           */

static struct kfm__cupti_api cupti_real; /* the dlopen'ed table; filled by probe */
static pthread_once_t cupti_real_once = PTHREAD_ONCE_INIT;
static _Atomic(struct kfm__cupti_api *) cupti_cur; /* NULL: &cupti_real */

static pthread_mutex_t cupti_owner_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cupti_state *cupti_owner; /* session whose callbacks are live */
static int cupti_registered;            /* callbacks ever registered (no dlclose then) */

static pthread_mutex_t cupti_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *cupti_pool_mem;
static uint8_t **cupti_pool_free; /* cupti_pool_n entries */
static unsigned cupti_pool_n, cupti_pool_nfree;
static _Atomic uint64_t cupti_pool_declined; /* requests answered with no buffer */

/* Run generations, process-wide because CUPTI's per-thread correlation
 * stacks outlive sessions: an id left pushed by one session must not read as
 * a node of the next. */
static _Atomic uint32_t cupti_gen_next;

static void cupti_real_init(void) {
  kfm__cupti_api_init(&cupti_real);
}

static struct kfm__cupti_api *cupti_api_now(void) {
  struct kfm__cupti_api *a = atomic_load(&cupti_cur);
  if (a == NULL) {
    pthread_once(&cupti_real_once, cupti_real_init);
    a = &cupti_real;
  }
  return a;
}

void kfm__cupti_set_api(struct kfm__cupti_api *api) {
  atomic_store(&cupti_cur, api);
}

/* ---------------------------------------------------------------------- */
/* Loading and probing.                                                    */

/* "libcupti.so.13" for CUDA 13.x headers (CUDA_VERSION 13000): the library
 * whose records have the layouts these headers declare.  Written once under
 * pthread_once, read-only afterwards. */
static char cupti_soname_buf[32];
static pthread_once_t cupti_soname_once = PTHREAD_ONCE_INIT;

static void cupti_soname_init(void) {
  snprintf(cupti_soname_buf, sizeof cupti_soname_buf, "libcupti.so.%d", CUDA_VERSION / 1000);
}

const char *kfm__cupti_soname(void) {
  pthread_once(&cupti_soname_once, cupti_soname_init);
  return cupti_soname_buf;
}

static void *cupti_dlopen(const char *file, int flags) {
  return dlopen(file, flags);
}
static void *cupti_dlsym(void *h, const char *name) {
  return dlsym(h, name);
}
static char *cupti_dlerror(void) {
  return dlerror();
}
static int cupti_dlclose(void *h) {
  return dlclose(h);
}

void kfm__cupti_api_init(struct kfm__cupti_api *api) {
  memset(api, 0, sizeof *api);
  api->dl_open = cupti_dlopen;
  api->dl_sym = cupti_dlsym;
  api->dl_error = cupti_dlerror;
  api->dl_close = cupti_dlclose;
}

static const char *cupti_errstr(const struct kfm__cupti_api *api) {
  const char *e = api->dl_error ? api->dl_error() : NULL;
  return e ? e : "no detail";
}

/* Copies a function pointer out of a data pointer from dlsym: POSIX
 * guarantees the representation is the same, and memcpy avoids ISO C's
 * (pedantic) objection to converting between the two. */
#define CUPTI_SYM(api, field, sym, required)                                                       \
  do {                                                                                             \
    void *p_ = (api)->dl_sym((api)->handle, sym);                                                  \
    if (p_ == NULL && (required)) {                                                                \
      snprintf(reason, len, "%s lacks %s (dlsym: %s)", (api)->lib, sym, cupti_errstr(api));        \
      return KFM_EBACKEND;                                                                         \
    }                                                                                              \
    memcpy(&(api)->field, &p_, sizeof p_);                                                         \
  } while (0)

static int cupti_fill(struct kfm__cupti_api *api, char *reason, size_t len) {
  CUPTI_SYM(api, GetVersion, "cuptiGetVersion", 1);
  CUPTI_SYM(api, GetResultString, "cuptiGetResultString", 1);
  CUPTI_SYM(api, GetTimestamp, "cuptiGetTimestamp", 1);
  CUPTI_SYM(api, ActivityEnable, "cuptiActivityEnable", 1);
  CUPTI_SYM(api, ActivityDisable, "cuptiActivityDisable", 1);
  CUPTI_SYM(api, ActivityRegisterCallbacks, "cuptiActivityRegisterCallbacks", 1);
  CUPTI_SYM(api, ActivityGetNextRecord, "cuptiActivityGetNextRecord", 1);
  CUPTI_SYM(api, ActivityFlushAll, "cuptiActivityFlushAll", 1);
  CUPTI_SYM(api, ActivityPushExternalCorrelationId, "cuptiActivityPushExternalCorrelationId", 1);
  CUPTI_SYM(api, ActivityPopExternalCorrelationId, "cuptiActivityPopExternalCorrelationId", 1);
  CUPTI_SYM(api, ActivityGetNumDroppedRecords, "cuptiActivityGetNumDroppedRecords", 0);
  CUPTI_SYM(api, Subscribe, "cuptiSubscribe", 0);
  CUPTI_SYM(api, Unsubscribe, "cuptiUnsubscribe", 0);
  CUPTI_SYM(api, GetCallbackName, "cuptiGetCallbackName", 0);
  CUPTI_SYM(api, ActivityEnableRuntimeApi, "cuptiActivityEnableRuntimeApi", 0);
  CUPTI_SYM(api, ActivityEnableDriverApi, "cuptiActivityEnableDriverApi", 0);
  CUPTI_SYM(api, ActivityFlushPeriod, "cuptiActivityFlushPeriod", 0);
  return 0;
}

int kfm__cupti_load(struct kfm__cupti_api *api, char *reason, size_t len) {
  if (api->loaded || api->dl_open == NULL) {
    if (api->lib[0] == '\0') {
      snprintf(api->lib, sizeof api->lib, "%s", "(injected table)");
    }
    api->loaded = 1;
    return 0;
  }
  const char *so = kfm__cupti_soname();
  snprintf(api->lib, sizeof api->lib, "%s", so);
  api->handle = api->dl_open(so, RTLD_NOW | RTLD_LOCAL);
  if (api->handle == NULL) {
    /* CUPTI often sits outside the loader's path, under the toolkit. */
    char first[200];
    snprintf(first, sizeof first, "%s", cupti_errstr(api));
    static const char *const dirs[] = {"/usr/local/cuda/extras/CUPTI/lib64",
                                       "/usr/local/cuda/lib64"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0] && api->handle == NULL; i++) {
      char path[256];
      snprintf(path, sizeof path, "%s/%s", dirs[i], so);
      api->handle = api->dl_open(path, RTLD_NOW | RTLD_LOCAL);
    }
    if (api->handle == NULL) {
      snprintf(reason, len, "%s not found (dlopen: %s)", so, first);
      return KFM_EBACKEND;
    }
  }
  int rc = cupti_fill(api, reason, len);
  if (rc) {
    api->dl_close(api->handle);
    api->handle = NULL;
    return rc;
  }
  api->loaded = 1;
  return 0;
}

static const char *cupti_result_name(const struct kfm__cupti_api *api, CUptiResult r) {
  const char *s = NULL;
  if (api->GetResultString == NULL || api->GetResultString(r, &s) != CUPTI_SUCCESS || s == NULL) {
    return "(no name)";
  }
  return s;
}

/* A callback for the subscriber slot: no callback is ever enabled on it. */
static void CUPTIAPI cupti_no_callback(void *user, CUpti_CallbackDomain dom, CUpti_CallbackId cb,
                                       const void *data) {
  (void)user;
  (void)dom;
  (void)cb;
  (void)data;
}

/* Why kfm leaves CUPTI alone when another client holds its subscriber slot. */
static void cupti_other_client(const struct kfm__cupti_api *api, CUptiResult r, char *reason,
                               size_t len) {
  snprintf(reason, len,
           "another CUPTI client is active in this process (cuptiSubscribe: %d %s): PyTorch's "
           "profiler, Nsight Systems/Compute, cuda-gdb or compute-sanitizer; kfm leaves CUPTI "
           "to it",
           (int)r, cupti_result_name(api, r));
}

int kfm__cupti_probe_api(struct kfm__cupti_api *api, char *reason, size_t len) {
  if (len) {
    reason[0] = '\0';
  }
  api->usable = 0;
  if (kfm__cupti_load(api, reason, len) != 0) {
    return 0;
  }
  uint32_t v = 0;
  CUptiResult r = api->GetVersion(&v);
  if (r != CUPTI_SUCCESS) {
    snprintf(reason, len, "cuptiGetVersion failed: %d %s", (int)r, cupti_result_name(api, r));
    return 0;
  }
  api->version = v;
  if (v / 10000 != CUPTI_API_VERSION / 10000) {
    snprintf(reason, len, "%s reports CUPTI version %u; the headers kfm was built with are %u",
             api->lib, v, (unsigned)CUPTI_API_VERSION);
    return 0;
  }
  /* The driver: without it CUPTI can only fail, and "no driver" is the
   * reason a user can act on. */
  char driver[200] = "";
  if (api->dl_open) {
    void *h = api->dl_open("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (h == NULL) {
      snprintf(driver, sizeof driver, "no CUDA driver: libcuda.so.1 not found (dlopen: %s)",
               cupti_errstr(api));
    } else {
      api->dl_close(h);
    }
  }
  /* The trial enable below ends with a disable, which would turn the kind
   * off for another CUPTI client that enabled it: ask the subscriber slot
   * first. */
  if (api->Subscribe) {
    CUpti_SubscriberHandle sub = NULL;
    r = api->Subscribe(&sub, cupti_no_callback, NULL);
    if (r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED) {
      cupti_other_client(api, r, reason, len);
      return 0;
    }
    if (r == CUPTI_SUCCESS && api->Unsubscribe) {
      api->Unsubscribe(sub);
    }
  }
  r = api->ActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  if (r == CUPTI_SUCCESS) {
    api->ActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    if (driver[0]) {
      snprintf(reason, len, "%s", driver);
      return 0;
    }
    snprintf(reason, len, "available: %s, CUPTI %u", api->lib, v);
    api->usable = 1;
    return 1;
  }
  snprintf(reason, len, "%s%scuptiActivityEnable(CONCURRENT_KERNEL) failed: %d %s", driver,
           driver[0] ? "; " : "", (int)r, cupti_result_name(api, r));
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Buffer pool.                                                            */

/* KFM_CUPTI_BUFFER_MB, or the default; a bad value is named in *bad. */
static unsigned cupti_pool_mb(const char **bad) {
  const char *e = getenv("KFM_CUPTI_BUFFER_MB");
  *bad = NULL;
  if (e == NULL || *e == '\0') {
    return CUPTI_POOL_MB_DEFAULT;
  }
  char *end = NULL;
  unsigned long v = strtoul(e, &end, 10);
  if (*end != '\0' || v < 1 || v > CUPTI_POOL_MB_MAX || e[0] == '-') {
    *bad = e;
    return 0;
  }
  return (unsigned)v;
}

size_t kfm__cupti_pool_bytes(void) {
  pthread_mutex_lock(&cupti_pool_lock);
  size_t n = (size_t)cupti_pool_n * CUPTI_BUF_SIZE;
  pthread_mutex_unlock(&cupti_pool_lock);
  return n;
}

/* The pool is sized once per process: CUPTI may hold its buffers across
 * sessions, so it is never freed nor moved. */
static int cupti_pool_ensure(char *why, size_t len) {
  int rc = 0;
  pthread_mutex_lock(&cupti_pool_lock);
  if (cupti_pool_mem == NULL) {
    const char *bad;
    unsigned mb = cupti_pool_mb(&bad);
    unsigned n = mb * (1024u * 1024u / CUPTI_BUF_SIZE);
    if (bad) {
      snprintf(why, len, "KFM_CUPTI_BUFFER_MB='%s' is not a whole number of MiB in 1..%u", bad,
               CUPTI_POOL_MB_MAX);
      rc = KFM_EINVAL;
    } else {
      /* Records are 8-byte aligned in their buffer (ACTIVITY_RECORD_ALIGNMENT). */
      cupti_pool_mem = aligned_alloc(64, (size_t)n * CUPTI_BUF_SIZE);
      cupti_pool_free = malloc((size_t)n * sizeof *cupti_pool_free);
      if (cupti_pool_mem == NULL || cupti_pool_free == NULL) {
        free(cupti_pool_mem);
        free(cupti_pool_free);
        cupti_pool_mem = NULL;
        cupti_pool_free = NULL;
        snprintf(why, len, "out of memory for the %u MiB activity buffer pool (KFM_CUPTI_BUFFER_MB)",
                 mb);
        rc = KFM_ENOMEM;
      } else {
        for (unsigned i = 0; i < n; i++) {
          cupti_pool_free[i] = cupti_pool_mem + (size_t)i * CUPTI_BUF_SIZE;
        }
        cupti_pool_n = cupti_pool_nfree = n;
      }
    }
  }
  pthread_mutex_unlock(&cupti_pool_lock);
  return rc;
}

static void CUPTIAPI cupti_buf_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
  uint8_t *b = NULL;
  pthread_mutex_lock(&cupti_pool_lock);
  if (cupti_pool_nfree > 0) {
    b = cupti_pool_free[--cupti_pool_nfree];
  }
  pthread_mutex_unlock(&cupti_pool_lock);
  if (b == NULL) {
    /* Declining makes CUPTI drop records; it reports how many. */
    atomic_fetch_add_explicit(&cupti_pool_declined, 1, memory_order_relaxed);
  }
  *buffer = b;
  *size = b ? CUPTI_BUF_SIZE : 0;
  *max_records = 0;
}

static void cupti_pool_put(uint8_t *b) {
  pthread_mutex_lock(&cupti_pool_lock);
  if (b != NULL && cupti_pool_mem != NULL && b >= cupti_pool_mem &&
      b < cupti_pool_mem + (size_t)cupti_pool_n * CUPTI_BUF_SIZE &&
      cupti_pool_nfree < cupti_pool_n) {
    cupti_pool_free[cupti_pool_nfree++] = b;
  }
  pthread_mutex_unlock(&cupti_pool_lock);
}

/* ---------------------------------------------------------------------- */
/* Correlation map: correlationId -> node.  Open addressing with a bounded
 * probe window and no deletion: one correlationId can serve many records
 * (every kernel of a graph launch shares its launch's id), and ids that no
 * activity ever uses (cudaMalloc, ...) age out when a newer id needs their
 * slot: correlation ids grow, so the smallest id in the window is the
 * oldest.  A slot never empties, so a lookup may stop at the first empty.  */

static uint32_t cupti_hash32(uint32_t x) {
  return (x * 0x9E3779B1u) >> (32 - 16);
}

static void cupti_map_put(struct cupti_state *st, uint32_t corr, uint32_t node) {
  uint32_t h = cupti_hash32(corr);
  struct cupti_slot *victim = NULL;
  for (uint32_t i = 0; i < CUPTI_MAP_WINDOW; i++) {
    struct cupti_slot *s = &st->map[(h + i) & (CUPTI_MAP_CAP - 1)];
    if (s->node1 == 0 || s->corr == corr) {
      s->corr = corr;
      s->node1 = node + 1;
      return;
    }
    if (victim == NULL || s->corr < victim->corr) {
      victim = s;
    }
  }
  victim->corr = corr;
  victim->node1 = node + 1;
  st->counts.map_evicted++;
}

static uint32_t cupti_map_get(const struct cupti_state *st, uint32_t corr) {
  uint32_t h = cupti_hash32(corr);
  for (uint32_t i = 0; i < CUPTI_MAP_WINDOW; i++) {
    const struct cupti_slot *s = &st->map[(h + i) & (CUPTI_MAP_CAP - 1)];
    if (s->node1 == 0) {
      return CUPTI_NONE;
    }
    if (s->corr == corr) {
      return s->node1 - 1;
    }
  }
  return CUPTI_NONE;
}

/* ---------------------------------------------------------------------- */
/* Kernel names, copied out of CUPTI's records into the state's arena.     */

static uint32_t cupti_fnv(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  }
  return h;
}

static uint32_t cupti_intern(struct cupti_state *st, const char *name) {
  if (name == NULL) {
    return CUPTI_NAME_NONE;
  }
  size_t n = strnlen(name, CUPTI_NAME_MAX + 1);
  int cut = n > CUPTI_NAME_MAX;
  if (cut) {
    n = CUPTI_NAME_MAX - 3;
  }
  uint32_t h = cupti_fnv(name, n) ^ (uint32_t)cut;
  for (uint32_t i = 0; i < CUPTI_NAME_CAP; i++) {
    uint32_t *slot = &st->names[(h + i) & (CUPTI_NAME_CAP - 1)];
    if (*slot == 0) {
      if (st->nnames >= CUPTI_NAME_CAP * 3 / 4 || st->arena_used + n + 4 > CUPTI_ARENA) {
        return CUPTI_NAME_FULL;
      }
      uint32_t off = st->arena_used;
      memcpy(st->arena + off, name, n);
      if (cut) {
        memcpy(st->arena + off + n, "...", 3);
        n += 3;
      }
      st->arena[off + n] = '\0';
      st->arena_used += (uint32_t)n + 1;
      *slot = off + 1;
      st->nnames++;
      return off;
    }
    const char *have = st->arena + (*slot - 1);
    if (cut ? (strncmp(have, name, n) == 0 && strcmp(have + n, "...") == 0)
            : (strncmp(have, name, n) == 0 && have[n] == '\0')) {
      return *slot - 1;
    }
  }
  return CUPTI_NAME_FULL;
}

static const char *cupti_name_at(const struct cupti_state *st, uint32_t name) {
  if (name == CUPTI_NAME_NONE) {
    return "(unnamed)";
  }
  if (name == CUPTI_NAME_FULL) {
    return "(name table full)";
  }
  return st->arena + name;
}

/* ---------------------------------------------------------------------- */
/* Aggregation.                                                            */

static struct cupti_node *cupti_node_at(struct cupti_state *st, uint32_t node) {
  if (node == CUPTI_NONE) {
    return &st->unattr;
  }
  if (node >= st->nodes_cap) {
    if (node >= CUPTI_NODE_MAX) {
      return NULL;
    }
    uint32_t cap = st->nodes_cap ? st->nodes_cap : 64;
    while (cap <= node) {
      cap *= 2;
    }
    struct cupti_node *n = realloc(st->nodes, (size_t)cap * sizeof *n);
    if (n == NULL) {
      return NULL;
    }
    memset(n + st->nodes_cap, 0, (size_t)(cap - st->nodes_cap) * sizeof *n);
    st->nodes = n;
    st->nodes_cap = cap;
  }
  return &st->nodes[node];
}

static int cupti_timed(const struct cupti_item *it) {
  return !(it->start == 0 && it->end == 0) && it->end >= it->start;
}

static void cupti_ktab_add(struct cupti_state *st, uint32_t node, const struct cupti_item *it) {
  uint32_t h = cupti_fnv((const char *)it->grid, sizeof it->grid) ^
               cupti_fnv((const char *)it->block, sizeof it->block) ^ (node * 0x9E3779B1u) ^
               (it->name * 0x85EBCA6Bu) ^ (it->device * 0xC2B2AE35u);
  for (uint32_t i = 0; i < CUPTI_KTAB_CAP; i++) {
    struct cupti_kent *e = &st->ktab[(h + i) & (CUPTI_KTAB_CAP - 1)];
    if (!e->used) {
      if (st->nkern >= CUPTI_KTAB_CAP * 3 / 4) {
        break;
      }
      e->used = 1;
      e->node = node;
      e->name = it->name;
      e->device = it->device;
      memcpy(e->grid, it->grid, sizeof e->grid);
      memcpy(e->block, it->block, sizeof e->block);
      st->nkern++;
    } else if (e->node != node || e->name != it->name || e->device != it->device ||
               memcmp(e->grid, it->grid, sizeof e->grid) != 0 ||
               memcmp(e->block, it->block, sizeof e->block) != 0) {
      continue;
    }
    e->count++;
    if (cupti_timed(it)) {
      e->total_ns += it->end - it->start;
    } else {
      e->untimed++;
    }
    return;
  }
  st->counts.kernel_table_dropped++;
}

/* Adds one record to node's totals (CUPTI_NONE: the unattributed bucket). */
static void cupti_apply(struct cupti_state *st, const struct cupti_item *it, uint32_t node) {
  struct cupti_node *n = cupti_node_at(st, node);
  if (n == NULL) {
    st->nomem++;
    node = CUPTI_NONE;
    n = &st->unattr;
  }
  if (node == CUPTI_NONE) {
    st->counts.unattributed++;
  }
  n->records++;
  struct kfm__cupti_totals *t = &n->t;
  int timed = cupti_timed(it);
  uint64_t d = timed ? it->end - it->start : 0;
  if (!timed) {
    t->untimed++;
  }
  switch (it->cls) {
  case CUPTI_R_KERNEL:
    t->launches++;
    t->kernel_ns += d;
    cupti_ktab_add(st, node, it);
    break;
  case CUPTI_R_MEMCPY:
    t->memcpy_count++;
    t->memcpy_ns += d;
    switch (it->copy_kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD:
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOA:
      t->bytes_h2d += it->bytes;
      break;
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH:
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOH:
      t->bytes_d2h += it->bytes;
      break;
    default:
      t->bytes_other += it->bytes;
      break;
    }
    break;
  case CUPTI_R_MEMSET:
    t->memset_count++;
    t->memset_bytes += it->bytes;
    break;
  case CUPTI_R_SYNC:
    t->sync_count++;
    t->sync_ns += d;
    break;
  default:
    break;
  }
  if (timed) {
    if (st->ntl < CUPTI_TL_CAP) {
      struct cupti_event *e = &st->tl[st->ntl++];
      e->start = it->start;
      e->end = it->end;
      e->bytes = it->bytes;
      e->node = node;
      e->name = it->name;
      e->device = it->device;
      e->cls = it->cls;
      e->copy_kind = it->copy_kind;
    } else {
      st->counts.timeline_dropped++;
    }
  }
}

/* Attribute now if the mapping is known, else wait in the pending ring. */
static void cupti_route(struct cupti_state *st, const struct cupti_item *it) {
  uint32_t node = cupti_map_get(st, it->corr);
  if (node != CUPTI_NONE) {
    cupti_apply(st, it, node);
    return;
  }
  if (st->npend == CUPTI_PEND_CAP) {
    /* Full: the oldest waiter has waited longest for a mapping. */
    cupti_apply(st, &st->pend[st->pend_head], CUPTI_NONE);
    st->pend_head = (st->pend_head + 1) & (CUPTI_PEND_CAP - 1);
    st->npend--;
    st->counts.pending_evicted++;
  }
  st->pend[(st->pend_head + st->npend) & (CUPTI_PEND_CAP - 1)] = *it;
  st->npend++;
}

/* Retry every pending record, keeping the unresolved ones in order. */
static void cupti_resolve(struct cupti_state *st, int final) {
  uint32_t kept = 0;
  for (uint32_t i = 0; i < st->npend; i++) {
    struct cupti_item it = st->pend[(st->pend_head + i) & (CUPTI_PEND_CAP - 1)];
    uint32_t node = cupti_map_get(st, it.corr);
    if (node != CUPTI_NONE || final) {
      cupti_apply(st, &it, node);
    } else {
      st->pend[(st->pend_head + kept) & (CUPTI_PEND_CAP - 1)] = it;
      kept++;
    }
  }
  st->npend = kept;
}

/* The node an external correlation id names, or CUPTI_NONE with the
 * refusal counted: only ids this session's current run pushed are nodes. */
static uint32_t cupti_ext_node(struct cupti_state *st, CUpti_ExternalCorrelationKind kind,
                               uint64_t id) {
  if (kind != KFM__CUPTI_EXT_KIND) {
    st->counts.ext_other_kind++;
    return CUPTI_NONE;
  }
  if ((id >> 48) != KFM__CUPTI_TAG) {
    st->counts.ext_foreign++;
    return CUPTI_NONE;
  }
  uint32_t gen = atomic_load_explicit(&st->gen, memory_order_relaxed);
  if (((id >> 32) & CUPTI_GEN_MASK) != gen || gen == 0) {
    st->counts.ext_stale++;
    return CUPTI_NONE;
  }
  uint32_t node1 = (uint32_t)id;
  if (node1 == 0 || node1 > atomic_load_explicit(&st->node_hi, memory_order_relaxed)) {
    st->counts.ext_range++;
    return CUPTI_NONE;
  }
  return node1 - 1;
}

static void cupti_take(struct cupti_state *st, const CUpti_Activity *r) {
  struct cupti_item it;
  memset(&it, 0, sizeof it);
  it.name = CUPTI_NAME_NONE;
  it.device = UINT32_MAX;
  switch (r->kind) {
  case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
    const CUpti_ActivityExternalCorrelation *e = (const CUpti_ActivityExternalCorrelation *)r;
    st->counts.records[CUPTI_R_EXTCORR]++;
    uint32_t node = cupti_ext_node(st, e->externalKind, e->externalId);
    if (node != CUPTI_NONE) {
      cupti_map_put(st, e->correlationId, node);
    }
    return;
  }
  case CUPTI_ACTIVITY_KIND_KERNEL:
  case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
    const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)r;
    st->counts.records[CUPTI_R_KERNEL]++;
    it.cls = CUPTI_R_KERNEL;
    it.start = k->start;
    it.end = k->end;
    it.corr = k->correlationId;
    it.grid[0] = k->gridX;
    it.grid[1] = k->gridY;
    it.grid[2] = k->gridZ;
    it.block[0] = k->blockX;
    it.block[1] = k->blockY;
    it.block[2] = k->blockZ;
    it.name = cupti_intern(st, k->name);
    it.device = k->deviceId;
    break;
  }
  case CUPTI_ACTIVITY_KIND_MEMCPY: {
    const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)r;
    st->counts.records[CUPTI_R_MEMCPY]++;
    it.cls = CUPTI_R_MEMCPY;
    it.start = m->start;
    it.end = m->end;
    it.bytes = m->bytes;
    it.corr = m->correlationId;
    it.copy_kind = m->copyKind;
    it.device = m->deviceId;
    break;
  }
  case CUPTI_ACTIVITY_KIND_MEMSET: {
    const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)r;
    st->counts.records[CUPTI_R_MEMSET]++;
    it.cls = CUPTI_R_MEMSET;
    it.start = m->start;
    it.end = m->end;
    it.bytes = m->bytes;
    it.corr = m->correlationId;
    it.device = m->deviceId;
    break;
  }
  case CUPTI_ACTIVITY_KIND_SYNCHRONIZATION: {
    const CUpti_ActivitySynchronization2 *s = (const CUpti_ActivitySynchronization2 *)r;
    st->counts.records[CUPTI_R_SYNC]++;
    it.cls = CUPTI_R_SYNC;
    it.start = s->start;
    it.end = s->end;
    it.corr = s->correlationId;
    break;
  }
  case CUPTI_ACTIVITY_KIND_RUNTIME:
    st->counts.records[CUPTI_R_RUNTIME]++;
    return;
  case CUPTI_ACTIVITY_KIND_DRIVER:
    st->counts.records[CUPTI_R_DRIVER]++;
    return;
  default:
    st->counts.records[CUPTI_R_OTHER]++;
    return;
  }
  cupti_route(st, &it);
}

/* Size of a record of kind k as these headers declare it, 0 for a kind the
 * backend does not know (the library has the headers' major version). */
size_t kfm__cupti_record_size(CUpti_ActivityKind k) {
  switch (k) {
  case CUPTI_ACTIVITY_KIND_KERNEL:
  case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
    return sizeof(CUpti_ActivityKernel10);
  case CUPTI_ACTIVITY_KIND_MEMCPY:
    return sizeof(CUpti_ActivityMemcpy6);
  case CUPTI_ACTIVITY_KIND_MEMSET:
    return sizeof(CUpti_ActivityMemset4);
  case CUPTI_ACTIVITY_KIND_SYNCHRONIZATION:
    return sizeof(CUpti_ActivitySynchronization2);
  case CUPTI_ACTIVITY_KIND_RUNTIME:
  case CUPTI_ACTIVITY_KIND_DRIVER:
    return sizeof(CUpti_ActivityAPI);
  case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION:
    return sizeof(CUpti_ActivityExternalCorrelation);
  default:
    return 0;
  }
}

/* Offset just past record r in buf (records are 8-byte aligned); r's kind
 * has a known size (it was returned or stepped over). */
static size_t cupti_record_end(const CUpti_Activity *r, const uint8_t *buf) {
  size_t off = (size_t)((const uint8_t *)r - buf) + kfm__cupti_record_size(r->kind);
  return (off + 7) & ~(size_t)7;
}

void kfm__cupti_process_buffer(void *state, uint8_t *buf, size_t valid) {
  struct cupti_state *st = state;
  if (!st->active || buf == NULL) {
    return;
  }
  pthread_mutex_lock(&st->lock);
  CUpti_Activity *r = NULL;
  while (valid > 0) {
    CUptiResult res = st->api->ActivityGetNextRecord(buf, valid, &r);
    if (res == CUPTI_SUCCESS) {
      cupti_take(st, r);
      continue;
    }
    if (res == CUPTI_ERROR_MAX_LIMIT_REACHED) {
      break;
    }
    /* A force-flushed buffer holds incomplete records, and
     * cuptiActivityGetNextRecord neither returns nor steps over one.  One of
     * a kind whose size is known is stepped over here (and counted); after
     * one of unknown size nothing can be found, and the bytes are counted. */
    size_t at = r == NULL ? 0 : cupti_record_end(r, buf);
    CUpti_Activity *next = (CUpti_Activity *)(buf + at);
    st->counts.incomplete++;
    if (at + sizeof(CUpti_Activity) <= valid && kfm__cupti_record_size(next->kind) != 0 &&
        at + kfm__cupti_record_size(next->kind) <= valid) {
      r = next;
      continue;
    }
    st->counts.unparsed_bytes += at < valid ? valid - at : 0;
    break;
  }
  cupti_resolve(st, 0);
  st->counts.buffers++;
  pthread_mutex_unlock(&st->lock);
}

static void CUPTIAPI cupti_buf_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer,
                                         size_t size, size_t valid) {
  (void)size;
  /* The owner lock keeps the session from closing under the parse; the
   * hot path never takes it. */
  pthread_mutex_lock(&cupti_owner_lock);
  struct cupti_state *st = cupti_owner;
  if (st) {
    kfm__cupti_process_buffer(st, buffer, valid);
    size_t dropped = 0;
    if (st->api->ActivityGetNumDroppedRecords &&
        st->api->ActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS && dropped) {
      pthread_mutex_lock(&st->lock);
      st->counts.cupti_dropped += dropped;
      pthread_mutex_unlock(&st->lock);
    }
  }
  pthread_mutex_unlock(&cupti_owner_lock);
  cupti_pool_put(buffer);
}

/* ---------------------------------------------------------------------- */
/* Time.                                                                   */

static uint64_t cupti_clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The tightest of three (monotonic, cupti, monotonic) brackets; monotonic
 * is taken at the bracket's middle.  0 if cuptiGetTimestamp fails. */
static int cupti_time_pair(const struct kfm__cupti_api *api, uint64_t *gpu, uint64_t *mono,
                           uint64_t *real) {
  uint64_t best = UINT64_MAX;
  for (int i = 0; i < 3; i++) {
    uint64_t g = 0;
    uint64_t a = cupti_clock_ns(CLOCK_MONOTONIC);
    CUptiResult r = api->GetTimestamp(&g);
    uint64_t b = cupti_clock_ns(CLOCK_MONOTONIC);
    uint64_t rt = cupti_clock_ns(CLOCK_REALTIME);
    if (r != CUPTI_SUCCESS) {
      return 0;
    }
    if (b - a < best) {
      best = b - a;
      *gpu = g;
      *mono = a + (b - a) / 2;
      if (real) {
        *real = rt - (b - a) / 2;
      }
    }
  }
  return 1;
}

/* GPU ns -> CLOCK_MONOTONIC ns, interpolating the offset between the pairs
 * taken at open and at flush (the two clocks drift under NTP slewing).
 * Offsets are differences of ~1.8e18 ns values: int64 holds them exactly,
 * and the interpolation's product needs 128 bits. */
__extension__ typedef __int128 cupti_i128;

int64_t kfm__cupti_to_mono(uint64_t gpu0, uint64_t mono0, uint64_t gpu1, uint64_t mono1,
                           int have1, uint64_t g) {
  int64_t off0 = (int64_t)(gpu0 - mono0);
  int64_t off = off0;
  if (have1 && gpu1 > gpu0) {
    int64_t off1 = (int64_t)(gpu1 - mono1);
    cupti_i128 num = (cupti_i128)(off1 - off0) * (cupti_i128)(int64_t)(g - gpu0);
    cupti_i128 den = (cupti_i128)(gpu1 - gpu0);
    /* Rounded to the nearest ns, halves away from zero. */
    cupti_i128 q = (num >= 0 ? num + den / 2 : num - den / 2) / den;
    off = off0 + (int64_t)q;
  }
  return (int64_t)(g - (uint64_t)off);
}

static int64_t cupti_to_mono(const struct cupti_state *st, uint64_t g) {
  return kfm__cupti_to_mono(st->gpu0, st->mono0, st->gpu1, st->mono1, st->have1, g);
}

/* Trace only the API calls named by prefixes: bit cbid of on[] set for
 * each enabled.  Returns how many. */
static unsigned cupti_api_select(const struct kfm__cupti_api *api, CUpti_CallbackDomain dom,
                                 unsigned ncbid, const char *const *prefixes,
                                 CUptiResult (*enable)(CUpti_CallbackId, uint8_t), uint64_t *on) {
  unsigned n = 0;
  for (unsigned cb = 1; cb < ncbid; cb++) {
    const char *name = NULL;
    if (api->GetCallbackName(dom, cb, &name) != CUPTI_SUCCESS || name == NULL) {
      continue;
    }
    for (const char *const *p = prefixes; *p; p++) {
      if (strncmp(name, *p, strlen(*p)) == 0) {
        if (enable(cb, 1) == CUPTI_SUCCESS) {
          on[cb / 64] |= 1ull << (cb % 64);
          n++;
        }
        break;
      }
    }
  }
  return n;
}

static void cupti_api_unselect(CUptiResult (*enable)(CUpti_CallbackId, uint8_t), unsigned ncbid,
                               uint64_t *on) {
  for (unsigned cb = 1; cb < ncbid; cb++) {
    if (on[cb / 64] & (1ull << (cb % 64))) {
      enable(cb, 0);
    }
  }
  memset(on, 0, ((ncbid + 63) / 64) * sizeof *on);
}

/* Enables the activity kinds (start of collection).  Failures of optional
 * kinds are kept for the export; a failure of the required kernel kind
 * leaves collection off, and the export says why. */
static void cupti_enable(struct cupti_state *st) {
  const struct kfm__cupti_api *api = st->api;
  memset(st->kind_error, 0, sizeof st->kind_error);
  st->n_api = 0;
  /* KFM_CUPTI_API=all: every runtime and driver call, as before per-call
   * selection existed (a fallback should a CUPTI version not correlate
   * selected calls). */
  const char *sel = getenv("KFM_CUPTI_API");
  int per_api = api->GetCallbackName && api->ActivityEnableRuntimeApi &&
                api->ActivityEnableDriverApi && !(sel && strcmp(sel, "all") == 0);
  for (size_t i = 0; i < CUPTI_NKINDS; i++) {
    CUptiResult r;
    if (per_api && i >= CUPTI_KIND_RUNTIME_IX) {
      /* Enabling the whole RUNTIME/DRIVER kind would trace every API call
       * (cudaStreamQuery polling, cudaGetDevice...) into the same buffers. */
      unsigned n = i == CUPTI_KIND_RUNTIME_IX
                       ? cupti_api_select(api, CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RT_CBIDS,
                                          cupti_runtime_api, api->ActivityEnableRuntimeApi,
                                          st->rt_on)
                       : cupti_api_select(api, CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRV_CBIDS,
                                          cupti_driver_api, api->ActivityEnableDriverApi,
                                          st->drv_on);
      st->n_api += n;
      if (n > 0) {
        continue;
      }
    }
    r = api->ActivityEnable(cupti_kinds[i].kind);
    if (r == CUPTI_SUCCESS) {
      st->enabled |= 1u << i;
      continue;
    }
    snprintf(st->kind_error[i], sizeof st->kind_error[i], "%d %s", (int)r,
             cupti_result_name(api, r));
    if (cupti_kinds[i].required) {
      snprintf(st->reason, sizeof st->reason, "cuptiActivityEnable(%s) failed at start: %d %s",
               cupti_kinds[i].macro, (int)r, cupti_result_name(api, r));
    }
  }
  if (api->ActivityFlushPeriod) {
    api->ActivityFlushPeriod(CUPTI_FLUSH_PERIOD_MS);
  }
  st->collecting = 1;
}

/* Disables exactly what cupti_enable enabled. */
static void cupti_disable_all(struct cupti_state *st) {
  for (size_t i = 0; i < CUPTI_NKINDS; i++) {
    if (st->enabled & (1u << i)) {
      st->api->ActivityDisable(cupti_kinds[i].kind);
    }
  }
  st->enabled = 0;
  if (st->api->ActivityEnableRuntimeApi) {
    cupti_api_unselect(st->api->ActivityEnableRuntimeApi, CUPTI_RT_CBIDS, st->rt_on);
  }
  if (st->api->ActivityEnableDriverApi) {
    cupti_api_unselect(st->api->ActivityEnableDriverApi, CUPTI_DRV_CBIDS, st->drv_on);
  }
}

/* End of collection: complete buffers first (a forced flush alone hands
 * back buffers whose records are still being written), then nothing new,
 * then everything CUPTI still holds.  Not under st->lock: the completed
 * callback, which takes it, runs on this thread inside the flush. */
static void cupti_stop_collecting(struct cupti_state *st) {
  if (!st->collecting) {
    return;
  }
  st->api->ActivityFlushAll(0);
  cupti_disable_all(st);
  st->api->ActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  st->collecting = 0;
}

uint32_t kfm__cupti_generation(void *state) {
  struct cupti_state *st = state;
  return atomic_load_explicit(&st->gen, memory_order_relaxed);
}

/* Session start (and each restart's): a new generation, so ids pushed
 * before it are refused, then collection on. */
void kfm__cupti_set_start(void *state, uint64_t mono_ns) {
  struct cupti_state *st = state;
  if (!st->active) {
    return;
  }
  uint32_t gen;
  do {
    gen = (atomic_fetch_add(&cupti_gen_next, 1) + 1) & CUPTI_GEN_MASK;
  } while (gen == 0);
  pthread_mutex_lock(&st->lock);
  st->epoch_mono = mono_ns;
  st->epoch_is_start = 1;
  atomic_store_explicit(&st->gen, gen, memory_order_relaxed);
  pthread_mutex_unlock(&st->lock);
  /* Not under st->lock: CUPTI may deliver buffers from inside its calls,
   * and the completed callback takes that lock.  What cupti_enable writes
   * is read by the export and the stop, on the thread that starts. */
  if (!st->collecting) {
    cupti_enable(st);
  }
}

/* A restarted session's next run: activity already delivered belongs to
 * the previous run and is forgotten with it (the stop before the restart
 * flushed and resolved everything).  Interned kernel names and the
 * correlation map stay, they are lookup structures, not results. */
void kfm__cupti_restart(void *state) {
  struct cupti_state *st = state;
  if (!st->active) {
    return;
  }
  pthread_mutex_lock(&st->lock);
  if (st->nodes) {
    memset(st->nodes, 0, (size_t)st->nodes_cap * sizeof *st->nodes);
  }
  memset(&st->unattr, 0, sizeof st->unattr);
  if (st->ktab) {
    memset(st->ktab, 0, (size_t)CUPTI_KTAB_CAP * sizeof *st->ktab);
  }
  st->nkern = 0;
  st->ntl = 0;
  memset(&st->counts, 0, sizeof st->counts);
  st->nomem = 0;
  atomic_store_explicit(&st->push_failed, 0, memory_order_relaxed);
  atomic_store_explicit(&st->stale_popped, 0, memory_order_relaxed);
  pthread_mutex_unlock(&st->lock);
}

/* ---------------------------------------------------------------------- */
/* Ops.                                                                    */

static int cupti_probe(char *reason, size_t len) {
  return kfm__cupti_probe_api(cupti_api_now(), reason, len);
}

static void cupti_free(struct cupti_state *st) {
  free(st->map);
  free(st->pend);
  free(st->nodes);
  free(st->ktab);
  free(st->arena);
  free(st->names);
  free(st->tl);
  st->map = NULL;
  st->pend = NULL;
  st->nodes = NULL;
  st->ktab = NULL;
  st->arena = NULL;
  st->names = NULL;
  st->tl = NULL;
  st->nodes_cap = 0;
  if (st->lock_init) {
    pthread_mutex_destroy(&st->lock);
    st->lock_init = 0;
  }
}

static int cupti_fail(struct cupti_state *st, struct kfm__backend_ctx *ctx, int rc) {
  snprintf(ctx->errbuf, ctx->errlen, "%s", st->reason);
  cupti_free(st);
  st->active = 0;
  return rc;
}

static int cupti_open(void *state, struct kfm__backend_ctx *ctx) {
  struct cupti_state *st = state;
  struct kfm__cupti_api *api = cupti_api_now();
  st->api = api;
  ctx->n_transition = 0;
  ctx->transition = NULL;
  ctx->n_sample = 0;
  ctx->sample = NULL;
  if (!api->usable) {
    char why[sizeof st->reason];
    if (!kfm__cupti_probe_api(api, why, sizeof why)) {
      snprintf(st->reason, sizeof st->reason, "%s", why);
      return cupti_fail(st, ctx, KFM_EBACKEND);
    }
  }
  if (pthread_mutex_init(&st->lock, NULL) != 0) {
    snprintf(st->reason, sizeof st->reason, "cannot initialise the backend's mutex");
    return cupti_fail(st, ctx, KFM_ENOMEM);
  }
  st->lock_init = 1;
  int prc = cupti_pool_ensure(st->reason, sizeof st->reason);
  if (prc != 0) {
    return cupti_fail(st, ctx, prc);
  }
  st->map = calloc(CUPTI_MAP_CAP, sizeof *st->map);
  st->pend = calloc(CUPTI_PEND_CAP, sizeof *st->pend);
  st->ktab = calloc(CUPTI_KTAB_CAP, sizeof *st->ktab);
  st->arena = malloc(CUPTI_ARENA);
  st->names = calloc(CUPTI_NAME_CAP, sizeof *st->names);
  st->tl = calloc(CUPTI_TL_CAP, sizeof *st->tl);
  if (!st->map || !st->pend || !st->ktab || !st->arena || !st->names || !st->tl) {
    snprintf(st->reason, sizeof st->reason, "out of memory for the activity tables (%u MiB)",
             (unsigned)((CUPTI_TL_CAP * sizeof(struct cupti_event) +
                         CUPTI_PEND_CAP * sizeof(struct cupti_item) +
                         CUPTI_MAP_CAP * sizeof(struct cupti_slot)) >>
                        20));
    return cupti_fail(st, ctx, KFM_ENOMEM);
  }
  if (!cupti_time_pair(api, &st->gpu0, &st->mono0, &st->real0)) {
    snprintf(st->reason, sizeof st->reason, "cuptiGetTimestamp failed");
    return cupti_fail(st, ctx, KFM_EBACKEND);
  }
  st->epoch_mono = st->mono0;

  /* One activity client per process: claim CUPTI before registering. */
  pthread_mutex_lock(&cupti_owner_lock);
  if (cupti_owner != NULL) {
    pthread_mutex_unlock(&cupti_owner_lock);
    snprintf(st->reason, sizeof st->reason,
             "CUPTI is in use by another kfm session (one activity client per process)");
    return cupti_fail(st, ctx, KFM_EBACKEND);
  }
  st->active = 1;
  cupti_owner = st;
  pthread_mutex_unlock(&cupti_owner_lock);

  /* Registering buffer callbacks would replace those of another CUPTI
   * client, which then loses its records without a word: CUPTI's own
   * subscriber slot says whether there is one. */
  char subnote[128] = "";
  if (api->Subscribe) {
    CUptiResult r = api->Subscribe(&st->sub, cupti_no_callback, NULL);
    if (r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED) {
      st->sub = NULL;
      cupti_other_client(api, r, st->reason, sizeof st->reason);
      goto release;
    }
    if (r != CUPTI_SUCCESS) {
      st->sub = NULL;
      snprintf(subnote, sizeof subnote, "; cuptiSubscribe failed (%d %s): a second client goes "
               "undetected", (int)r, cupti_result_name(api, r));
    }
  }
  pthread_mutex_lock(&cupti_owner_lock);
  cupti_registered = 1;
  pthread_mutex_unlock(&cupti_owner_lock);
  CUptiResult r = api->ActivityRegisterCallbacks(cupti_buf_requested, cupti_buf_completed);
  if (r != CUPTI_SUCCESS) {
    snprintf(st->reason, sizeof st->reason, "cuptiActivityRegisterCallbacks failed: %d %s", (int)r,
             cupti_result_name(api, r));
    goto release;
  }
  if (ctx->note && ctx->notelen) {
    snprintf(ctx->note, ctx->notelen,
             "%s, CUPTI %u; kernels, copies, sets, syncs from start to stop; %zu MiB of buffers%s",
             api->lib, api->version, kfm__cupti_pool_bytes() >> 20, subnote);
  }
  st->reason[0] = '\0';
  return 0;

release:
  if (st->sub && api->Unsubscribe) {
    api->Unsubscribe(st->sub);
    st->sub = NULL;
  }
  pthread_mutex_lock(&cupti_owner_lock);
  cupti_owner = NULL;
  st->active = 0;
  pthread_mutex_unlock(&cupti_owner_lock);
  return cupti_fail(st, ctx, KFM_EBACKEND);
}

static void cupti_close(void *state) {
  struct cupti_state *st = state;
  if (!st->active) {
    cupti_free(st);
    return;
  }
  /* A session destroyed without a stop: hand back every buffer CUPTI holds
   * while this session still owns the callbacks, so none is parsed into
   * freed memory. */
  cupti_stop_collecting(st);
  pthread_mutex_lock(&cupti_owner_lock);
  if (cupti_owner == st) {
    cupti_owner = NULL;
  }
  pthread_mutex_unlock(&cupti_owner_lock);
  if (st->sub && st->api->Unsubscribe) {
    st->api->Unsubscribe(st->sub);
    st->sub = NULL;
  }
  st->active = 0;
  cupti_free(st);
}

/* The thread's pushes belong to an earlier run (a restart, or the first
 * hook of this session): pop what it pushed, start over at depth 0.  Runs
 * once per thread per run, on the profiled thread (CUPTI's stacks are per
 * thread). */
static void cupti_thread_resync(struct cupti_state *st, struct cupti_tstate *ts, uint32_t gen) {
  uint32_t d = ts->depth < KFM_STACK_MAX ? ts->depth : KFM_STACK_MAX;
  for (uint32_t i = d; i-- > 0;) {
    if (ts->pushed[i / 64] & (1ull << (i % 64))) {
      uint64_t last = 0;
      st->api->ActivityPopExternalCorrelationId(KFM__CUPTI_EXT_KIND, &last);
      atomic_fetch_add_explicit(&st->stale_popped, 1, memory_order_relaxed);
    }
  }
  memset(ts, 0, sizeof *ts);
  ts->gen = gen;
}

/* Hot path: one CUPTI call, no allocation, no lock. */
static void cupti_enter(void *state, void *tstate, uint32_t node) {
  struct cupti_state *st = state;
  struct cupti_tstate *ts = tstate;
  uint32_t gen = atomic_load_explicit(&st->gen, memory_order_relaxed);
  if (ts->gen != gen) {
    cupti_thread_resync(st, ts, gen);
  }
  uint32_t d = ts->depth++;
  if (d >= KFM_STACK_MAX || node >= CUPTI_NODE_MAX) {
    if (d < KFM_STACK_MAX) {
      ts->pushed[d / 64] &= ~(1ull << (d % 64));
    }
    return;
  }
  /* The refusal bound for ids: raised once per new node, so the CAS is off
   * the common path. */
  uint32_t hi = atomic_load_explicit(&st->node_hi, memory_order_relaxed);
  while (node + 1 > hi && !atomic_compare_exchange_weak_explicit(
                              &st->node_hi, &hi, node + 1, memory_order_relaxed,
                              memory_order_relaxed)) {
  }
  uint64_t bit = 1ull << (d % 64);
  if (st->api->ActivityPushExternalCorrelationId(KFM__CUPTI_EXT_KIND,
                                                 KFM__CUPTI_ID(gen, node)) == CUPTI_SUCCESS) {
    ts->pushed[d / 64] |= bit;
  } else {
    ts->pushed[d / 64] &= ~bit;
    atomic_fetch_add_explicit(&st->push_failed, 1, memory_order_relaxed);
  }
}

static void cupti_exit(void *state, void *tstate, uint32_t node) {
  struct cupti_state *st = state;
  struct cupti_tstate *ts = tstate;
  (void)node;
  uint32_t gen = atomic_load_explicit(&st->gen, memory_order_relaxed);
  if (ts->gen != gen) {
    cupti_thread_resync(st, ts, gen); /* an exit of a node entered in an earlier run */
    return;
  }
  if (ts->depth == 0) {
    return;
  }
  uint32_t d = --ts->depth;
  if (d < KFM_STACK_MAX && (ts->pushed[d / 64] & (1ull << (d % 64)))) {
    uint64_t last = 0;
    st->api->ActivityPopExternalCorrelationId(KFM__CUPTI_EXT_KIND, &last);
  }
}

void kfm__cupti_finish(void *state) {
  struct cupti_state *st = state;
  if (!st->active) {
    return;
  }
  pthread_mutex_lock(&st->lock);
  cupti_resolve(st, 1);
  pthread_mutex_unlock(&st->lock);
}

/* At stop: everything until now delivered, collection off until the next
 * start, then the pending records resolved once and for all. */
static void cupti_flush(void *state) {
  struct cupti_state *st = state;
  if (!st->active) {
    return;
  }
  cupti_stop_collecting(st);
  uint64_t g = 0, m = 0;
  int ok = cupti_time_pair(st->api, &g, &m, NULL);
  pthread_mutex_lock(&st->lock);
  if (ok) {
    st->gpu1 = g;
    st->mono1 = m;
    st->have1 = 1;
  }
  pthread_mutex_unlock(&st->lock);
  kfm__cupti_finish(st);
}

/* ---------------------------------------------------------------------- */
/* Queries and export.                                                     */

int kfm__cupti_node_totals(void *state, uint32_t node, struct kfm__cupti_totals *out) {
  struct cupti_state *st = state;
  memset(out, 0, sizeof *out);
  if (!st->active) {
    return 0;
  }
  int found = 0;
  pthread_mutex_lock(&st->lock);
  const struct cupti_node *n =
      node == CUPTI_NONE ? &st->unattr : (node < st->nodes_cap ? &st->nodes[node] : NULL);
  if (n && n->records) {
    *out = n->t;
    found = 1;
  }
  pthread_mutex_unlock(&st->lock);
  return found;
}

void kfm__cupti_counts(void *state, struct kfm__cupti_counts *out) {
  struct cupti_state *st = state;
  memset(out, 0, sizeof *out);
  if (!st->active) {
    return;
  }
  pthread_mutex_lock(&st->lock);
  *out = st->counts;
  out->pending = st->npend;
  out->stale_popped = atomic_load_explicit(&st->stale_popped, memory_order_relaxed);
  pthread_mutex_unlock(&st->lock);
}

static void cupti_json_totals(FILE *f, const struct cupti_node *n) {
  const struct kfm__cupti_totals *t = &n->t;
  fprintf(f,
          "\"records\":%" PRIu64 ",\"kernel_ns\":%" PRIu64 ",\"launches\":%" PRIu64
          ",\"untimed\":%" PRIu64 ",\"memcpy_ns\":%" PRIu64 ",\"memcpy_count\":%" PRIu64
          ",\"bytes_h2d\":%" PRIu64 ",\"bytes_d2h\":%" PRIu64 ",\"bytes_other\":%" PRIu64
          ",\"memset_bytes\":%" PRIu64 ",\"memset_count\":%" PRIu64 ",\"sync_ns\":%" PRIu64
          ",\"sync_count\":%" PRIu64,
          n->records, t->kernel_ns, t->launches, t->untimed, t->memcpy_ns, t->memcpy_count,
          t->bytes_h2d, t->bytes_d2h, t->bytes_other, t->memset_bytes, t->memset_count, t->sync_ns,
          t->sync_count);
}

/* Kernel table order for the export: by node, then by total time. */
static int cupti_kcmp(const void *a, const void *b) {
  const struct cupti_kent *x = *(const struct cupti_kent *const *)a;
  const struct cupti_kent *y = *(const struct cupti_kent *const *)b;
  if (x->node != y->node) {
    return x->node < y->node ? -1 : 1;
  }
  if (x->total_ns != y->total_ns) {
    return x->total_ns > y->total_ns ? -1 : 1;
  }
  return x->count > y->count ? -1 : x->count < y->count;
}

/* ,"device":N (the CUDA device id of the record), or nothing when unknown. */
static void cupti_json_device(FILE *f, uint32_t device) {
  if (device != UINT32_MAX) {
    fprintf(f, ",\"device\":%u", device);
  }
}

/* Emits node's kernels from the sorted list, advancing *pos past them. */
static void cupti_json_kernels(FILE *f, const struct cupti_state *st,
                               const struct cupti_kent *const *k, uint32_t n, uint32_t *pos,
                               uint32_t node) {
  while (*pos < n && k[*pos]->node < node) {
    (*pos)++;
  }
  fputs(",\"kernels\":[", f);
  int first = 1;
  /* Kernel time per device of this node (a multi-GPU process's nodes). */
  struct {
    uint32_t device;
    uint64_t ns;
  } dev[32];
  unsigned ndev = 0;
  for (; *pos < n && k[*pos]->node == node; (*pos)++) {
    const struct cupti_kent *e = k[*pos];
    unsigned d = 0;
    while (d < ndev && dev[d].device != e->device) {
      d++;
    }
    if (d == ndev && ndev < sizeof dev / sizeof dev[0] && e->device != UINT32_MAX) {
      dev[ndev].device = e->device;
      dev[ndev++].ns = 0;
    }
    if (d < ndev) {
      dev[d].ns += e->total_ns;
    }
    fputs(first ? "{\"name\":" : ",{\"name\":", f);
    kfm__json_str(f, cupti_name_at(st, e->name));
    fprintf(f,
            ",\"grid\":[%d,%d,%d],\"block\":[%d,%d,%d],\"count\":%" PRIu64 ",\"total_ns\":%" PRIu64
            ",\"untimed\":%" PRIu64,
            e->grid[0], e->grid[1], e->grid[2], e->block[0], e->block[1], e->block[2], e->count,
            e->total_ns, e->untimed);
    cupti_json_device(f, e->device);
    fputc('}', f);
    first = 0;
  }
  fputs("],\"kernel_ns_by_device\":{", f);
  for (unsigned d = 0; d < ndev; d++) {
    fprintf(f, "%s\"%u\":%" PRIu64, d ? "," : "", dev[d].device, dev[d].ns);
  }
  fputc('}', f);
}

static const char *cupti_event_kind(const struct cupti_event *e) {
  switch (e->cls) {
  case CUPTI_R_KERNEL:
    return "kernel";
  case CUPTI_R_MEMCPY:
    switch (e->copy_kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD:
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOA:
      return "memcpy_h2d";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH:
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOH:
      return "memcpy_d2h";
    default:
      return "memcpy_other";
    }
  case CUPTI_R_MEMSET:
    return "memset";
  default:
    return "synchronization";
  }
}

static void cupti_export_json(void *state, void *file) {
  FILE *f = file;
  struct cupti_state *st = state;
  if (!st->active) {
    fputs("{\"available\":false,\"reason\":", f);
    kfm__json_str(f, st->reason[0] ? st->reason : "unavailable: the backend was not opened");
    fputc('}', f);
    return;
  }
  pthread_mutex_lock(&st->lock);
  fputs("{\"available\":true,\"library\":", f);
  kfm__json_str(f, st->api->lib);
  fprintf(f, ",\"cupti_version\":%u,\"activity_kinds\":[", st->api->version);
  int first = 1;
  for (size_t i = 0; i < CUPTI_NKINDS; i++) {
    if (st->enabled & (1u << i)) {
      fprintf(f, "%s\"%s\"", first ? "" : ",", cupti_kinds[i].name);
      first = 0;
    }
  }
  fputs("],\"not_enabled\":{", f);
  first = 1;
  for (size_t i = 0; i < CUPTI_NKINDS; i++) {
    if (st->kind_error[i][0]) {
      fprintf(f, "%s\"%s\":", first ? "" : ",", cupti_kinds[i].name);
      kfm__json_str(f, st->kind_error[i]);
      first = 0;
    }
  }
  /* Time base: how exported times relate to the host clocks. */
  fprintf(f,
          "},\"time_base\":{\"origin\":\"%s\",\"origin_monotonic_ns\":%" PRIu64
          ",\"open_monotonic_ns\":%" PRIu64 ",\"open_realtime_ns\":%" PRIu64
          ",\"open_cupti_ns\":%" PRIu64 ",\"drift_corrected\":%s}",
          st->epoch_is_start ? "session_start" : "backend_open", st->epoch_mono, st->mono0,
          st->real0, st->gpu0, st->have1 ? "true" : "false");
  fputs(",\"records\":{", f);
  for (int i = 0; i < 8; i++) {
    fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "", cupti_record_names[i], st->counts.records[i]);
  }
  fprintf(f,
          "},\"buffers\":%" PRIu64 ",\"buffer_pool_bytes\":%zu,\"api_calls_traced\":%u"
          ",\"collecting\":%s,\"pending\":%u,\"dropped\":{\"cupti_records\":%" PRIu64
          ",\"buffers_declined\":%" PRIu64 ",\"incomplete_records\":%" PRIu64
          ",\"unparsed_bytes\":%" PRIu64 ",\"pending_evicted\":%" PRIu64
          ",\"map_evicted\":%" PRIu64 ",\"timeline\":%" PRIu64 ",\"kernel_table\":%" PRIu64
          ",\"node_table\":%" PRIu64 ",\"push_failed\":%" PRIu64 "}",
          st->counts.buffers, kfm__cupti_pool_bytes(), st->n_api,
          st->collecting ? "true" : "false", st->npend, st->counts.cupti_dropped,
          (uint64_t)atomic_load_explicit(&cupti_pool_declined, memory_order_relaxed),
          st->counts.incomplete, st->counts.unparsed_bytes, st->counts.pending_evicted,
          st->counts.map_evicted, st->counts.timeline_dropped, st->counts.kernel_table_dropped,
          st->nomem, (uint64_t)atomic_load_explicit(&st->push_failed, memory_order_relaxed));
  fprintf(f,
          ",\"external_ids_refused\":{\"other_tool_kind\":%" PRIu64 ",\"foreign\":%" PRIu64
          ",\"stale_generation\":%" PRIu64 ",\"past_pushed_nodes\":%" PRIu64
          "},\"stale_ids_popped\":%" PRIu64,
          st->counts.ext_other_kind, st->counts.ext_foreign, st->counts.ext_stale,
          st->counts.ext_range,
          (uint64_t)atomic_load_explicit(&st->stale_popped, memory_order_relaxed));
  if (st->reason[0]) {
    fputs(",\"start_error\":", f);
    kfm__json_str(f, st->reason);
  }

  /* Kernel table sorted by node, then by time: one pass emits each node's
   * list.  Without memory for the index the lists are left empty and the
   * export says so. */
  const struct cupti_kent **k = malloc((size_t)(st->nkern ? st->nkern : 1) * sizeof *k);
  uint32_t nk = 0, pos = 0;
  if (k) {
    for (uint32_t i = 0; i < CUPTI_KTAB_CAP; i++) {
      if (st->ktab[i].used) {
        k[nk++] = &st->ktab[i];
      }
    }
    qsort(k, nk, sizeof *k, cupti_kcmp);
  }
  fprintf(f, ",\"kernel_table_complete\":%s,\"nodes\":{", k ? "true" : "false");
  first = 1;
  for (uint32_t n = 0; n < st->nodes_cap; n++) {
    const struct cupti_node *nd = &st->nodes[n];
    if (!nd->records) {
      continue;
    }
    fprintf(f, "%s\"%u\":{", first ? "" : ",", n);
    cupti_json_totals(f, nd);
    cupti_json_kernels(f, st, k, nk, &pos, n);
    fputc('}', f);
    first = 0;
  }
  fputs("},\"unattributed\":{", f);
  cupti_json_totals(f, &st->unattr);
  cupti_json_kernels(f, st, k, nk, &pos, CUPTI_NONE);
  free(k);

  fputs("},\"timeline\":[", f);
  for (uint32_t i = 0; i < st->ntl; i++) {
    const struct cupti_event *e = &st->tl[i];
    int64_t t0 = cupti_to_mono(st, e->start) - (int64_t)st->epoch_mono;
    fprintf(f, "%s{\"kind\":\"%s\",\"node\":", i ? "," : "", cupti_event_kind(e));
    if (e->node == CUPTI_NONE) {
      fputs("null", f);
    } else {
      fprintf(f, "%u", e->node);
    }
    fprintf(f, ",\"start_ns\":%" PRId64 ",\"end_ns\":%" PRId64, t0,
            t0 + (int64_t)(e->end - e->start));
    if (e->cls == CUPTI_R_KERNEL) {
      fputs(",\"name\":", f);
      kfm__json_str(f, cupti_name_at(st, e->name));
    } else if (e->cls != CUPTI_R_SYNC) {
      fprintf(f, ",\"bytes\":%" PRIu64, e->bytes);
    }
    cupti_json_device(f, e->device);
    fputc('}', f);
  }
  fputs("]}", f);
  pthread_mutex_unlock(&st->lock);
}

/* The timeline as Chrome-trace spans on a lane per CUDA device, when its
 * times count from the session's start (as the engine's trace does). */
static void cupti_trace_spans(void *state,
                              void (*add)(void *ctx, const struct kfm__trace_span *sp),
                              void *ctx) {
  struct cupti_state *st = state;
  if (!st->active) {
    return;
  }
  pthread_mutex_lock(&st->lock);
  for (uint32_t i = 0; st->epoch_is_start && i < st->ntl; i++) {
    const struct cupti_event *e = &st->tl[i];
    char lane[48];
    if (e->device == UINT32_MAX) {
      snprintf(lane, sizeof lane, "GPU ? (CUPTI)");
    } else {
      snprintf(lane, sizeof lane, "GPU %u (CUPTI)", e->device);
    }
    int64_t t0 = cupti_to_mono(st, e->start) - (int64_t)st->epoch_mono;
    struct kfm__trace_span sp = {
        .lane = lane,
        .name = e->cls == CUPTI_R_KERNEL ? cupti_name_at(st, e->name) : NULL,
        .kind = cupti_event_kind(e),
        .t0_ns = t0,
        .t1_ns = t0 + (int64_t)(e->end - e->start),
        .node = e->node == CUPTI_NONE ? KFM_NODE_ROOT : e->node,
        .bytes = e->cls == CUPTI_R_KERNEL || e->cls == CUPTI_R_SYNC ? 0 : e->bytes,
    };
    add(ctx, &sp);
  }
  pthread_mutex_unlock(&st->lock);
}

const struct kfm__backend kfm__backend_cupti = {
    .abi = KFM_BACKEND_ABI,
    .name = "cupti",
    .caps = 0,
    .min_level = KFM_LEVEL_COMPREHENSIVE,
    .state_size = sizeof(struct cupti_state),
    .thread_state_size = sizeof(struct cupti_tstate),
    .probe = cupti_probe,
    .init = NULL,
    .open = cupti_open,
    .close = cupti_close,
    .enter = cupti_enter,
    .exit = cupti_exit,
    .flush = cupti_flush,
    .export_json = cupti_export_json,
    .start = kfm__cupti_set_start,
    .restart = kfm__cupti_restart,
    .trace_spans = cupti_trace_spans,
};
