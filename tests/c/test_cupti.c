/*
 * test_cupti.c - unit tests of the CUPTI activity backend (backends/cupti).
 *
 * No machine here has a GPU, so the data path is driven the way CUPTI
 * drives it, with the real record structures of the CUDA headers
 * (CUpti_ActivityKernel10, CUpti_ActivityMemcpy6, CUpti_ActivityMemset4,
 * CUpti_ActivitySynchronization2, CUpti_ActivityAPI,
 * CUpti_ActivityExternalCorrelation) written into the backend's own pool
 * buffers: an injected symbol table records the callbacks the backend
 * registers, the test asks the "requested" callback for a buffer, fills it,
 * and hands it back through the "completed" callback or through
 * cuptiActivityFlushAll (the flush hook).  Buffers are walked with the real
 * libcupti's cuptiActivityGetNextRecord when the library loads (it works
 * without a driver), else with a walker that knows the record sizes.
 *
 * Checked exactly: per-node kernel ns, launches, bytes each way, memset
 * bytes, sync ns, the kernel table, unattributed records (unknown or
 * foreign correlation, never given to another node), out-of-order records
 * and mappings split across buffers, push/pop pairing of the hooks, the
 * precise disabled reasons of every probe failure (dlopen, dlsym, driver,
 * cuptiActivityEnable), and the real probe of this machine.  Also: ids of
 * other tools, of other runs and past the pushed nodes refused and counted;
 * leftover ids popped after a restart; incomplete and unreadable records
 * counted while the complete ones around them are taken; collection from
 * start to stop with only the API calls attribution needs; a second CUPTI
 * client detected; the buffer pool's size; exact integer time conversion
 * at a real CLOCK_REALTIME offset.  Nothing here
 * needs a GPU; the real-GPU path is tests/gpu/run (tests/c/gpu/test_gpu_real.c).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cupti/kfm_cupti.h"

#include <CUnit/Basic.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kfm_test.h"

#define B kfm__backend_cupti
#define CK KFM__CUPTI_EXT_KIND
/* The id the backend pushes for node in state st's current run. */
#define ID(st, node) KFM__CUPTI_ID(kfm__cupti_generation(st), node)
/* A record the fake iterator treats as incomplete (as in a forced flush). */
#define INCOMPLETE_CORR 0xFFFFFFF0u

/* ---------------------------------------------------------------------- */
/* The fake CUPTI.  Single-threaded test: plain globals are enough.        */

static CUpti_BuffersCallbackRequestFunc f_requested;
static CUpti_BuffersCallbackCompleteFunc f_completed;
static CUpti_ActivityKind f_fail_kind = CUPTI_ACTIVITY_KIND_INVALID; /* enable fails on it */
static CUptiResult f_fail_code = CUPTI_ERROR_UNKNOWN;
static uint64_t f_enabled; /* bit per kind */
static int f_flushes;
static uint32_t f_flush_flags[8]; /* flags of the first flushes */
static CUptiResult f_subscribe_rc = CUPTI_SUCCESS;
static int f_subscribed;
static uint64_t f_rt_on[(CUPTI_RUNTIME_TRACE_CBID_SIZE + 63) / 64];
static uint64_t f_drv_on[(CUPTI_DRIVER_TRACE_CBID_SIZE + 63) / 64];
static uint64_t f_push_fail_id; /* push of this id fails (0: none) */
static uint64_t f_stack[256];
static int f_depth, f_pushes, f_pops;
static uint64_t f_popped[256];
#define F_HELD_MAX 4
static uint8_t *f_held[F_HELD_MAX]; /* buffers "CUPTI" holds until a flush */
static size_t f_held_valid[F_HELD_MAX];
static int f_nheld;
static const uint64_t f_gpu_offset = 1000000000000ull; /* fake GPU clock = monotonic + this */
static CUptiResult (*real_next)(uint8_t *, size_t, CUpti_Activity **); /* from libcupti, or NULL */
static void *real_handle;

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static CUptiResult f_version(uint32_t *v) {
  *v = CUPTI_API_VERSION;
  return CUPTI_SUCCESS;
}
static CUptiResult f_result_string(CUptiResult r, const char **s) {
  switch (r) {
  case CUPTI_SUCCESS:
    *s = "CUPTI_SUCCESS";
    return CUPTI_SUCCESS;
  case CUPTI_ERROR_UNKNOWN:
    *s = "CUPTI_ERROR_UNKNOWN";
    return CUPTI_SUCCESS;
  case CUPTI_ERROR_NOT_INITIALIZED:
    *s = "CUPTI_ERROR_NOT_INITIALIZED";
    return CUPTI_SUCCESS;
  default:
    return CUPTI_ERROR_INVALID_PARAMETER;
  }
}
static CUptiResult f_timestamp(uint64_t *t) {
  *t = mono_ns() + f_gpu_offset;
  return CUPTI_SUCCESS;
}
static CUptiResult f_enable(CUpti_ActivityKind k) {
  if (k == f_fail_kind) {
    return f_fail_code;
  }
  f_enabled |= 1ull << ((unsigned)k & 63);
  return CUPTI_SUCCESS;
}
static CUptiResult f_disable(CUpti_ActivityKind k) {
  f_enabled &= ~(1ull << ((unsigned)k & 63));
  return CUPTI_SUCCESS;
}
static CUptiResult f_register(CUpti_BuffersCallbackRequestFunc rq,
                              CUpti_BuffersCallbackCompleteFunc cp) {
  f_requested = rq;
  f_completed = cp;
  return CUPTI_SUCCESS;
}

/* The walker used when libcupti cannot be loaded: same contract as
 * cuptiActivityGetNextRecord. */
static CUptiResult f_next_sizes(uint8_t *buf, size_t valid, CUpti_Activity **rec) {
  size_t off = 0;
  if (*rec != NULL) {
    off = (size_t)((uint8_t *)*rec - buf) + kfm__cupti_record_size((*rec)->kind);
    off = (off + 7) & ~(size_t)7;
  }
  if (off + sizeof(CUpti_Activity) > valid) {
    return CUPTI_ERROR_MAX_LIMIT_REACHED;
  }
  CUpti_Activity *r = (CUpti_Activity *)(buf + off);
  size_t n = kfm__cupti_record_size(r->kind);
  if (n == 0 || off + n > valid) {
    return CUPTI_ERROR_INVALID_KIND;
  }
  /* Like libcupti: an incomplete record is neither returned nor stepped over. */
  if ((r->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL &&
       ((CUpti_ActivityKernel10 *)r)->correlationId == INCOMPLETE_CORR)) {
    return CUPTI_ERROR_INVALID_KIND;
  }
  *rec = r;
  return CUPTI_SUCCESS;
}

static CUptiResult f_flush_all(uint32_t flag) {
  if (f_flushes < 8) {
    f_flush_flags[f_flushes] = flag;
  }
  f_flushes++;
  int n = f_nheld;
  f_nheld = 0;
  for (int i = 0; i < n; i++) {
    f_completed(NULL, 0, f_held[i], 0, f_held_valid[i]);
  }
  return CUPTI_SUCCESS;
}
static CUptiResult f_push(CUpti_ExternalCorrelationKind k, uint64_t id) {
  if (k != CK) {
    return CUPTI_ERROR_INVALID_PARAMETER;
  }
  if (id == f_push_fail_id) {
    return CUPTI_ERROR_UNKNOWN;
  }
  f_stack[f_depth++] = id;
  f_pushes++;
  return CUPTI_SUCCESS;
}
static CUptiResult f_pop(CUpti_ExternalCorrelationKind k, uint64_t *last) {
  if (k != CK || f_depth == 0) {
    return CUPTI_ERROR_QUEUE_EMPTY;
  }
  --f_depth;
  if (f_pops < 256) {
    f_popped[f_pops] = f_stack[f_depth];
  }
  f_pops++;
  if (last) {
    *last = f_stack[f_depth];
  }
  return CUPTI_SUCCESS;
}
static CUptiResult f_dropped(CUcontext c, uint32_t s, size_t *d) {
  (void)c;
  (void)s;
  *d = 0;
  return CUPTI_SUCCESS;
}

static CUptiResult f_subscribe(CUpti_SubscriberHandle *sub, CUpti_CallbackFunc cb, void *u) {
  (void)cb;
  (void)u;
  if (f_subscribe_rc != CUPTI_SUCCESS) {
    return f_subscribe_rc;
  }
  f_subscribed++;
  *sub = (CUpti_SubscriberHandle)&f_subscribed;
  return CUPTI_SUCCESS;
}
static CUptiResult f_unsubscribe(CUpti_SubscriberHandle sub) {
  CU_ASSERT_PTR_EQUAL(sub, (CUpti_SubscriberHandle)&f_subscribed);
  f_subscribed--;
  return CUPTI_SUCCESS;
}
/* A few API names of each domain, as cuptiGetCallbackName gives them. */
static CUptiResult f_cb_name(CUpti_CallbackDomain dom, uint32_t cbid, const char **name) {
  *name = NULL;
  if (dom == CUPTI_CB_DOMAIN_RUNTIME_API) {
    *name = cbid == 211 ? "cudaLaunchKernel_v7000"
            : cbid == 31 ? "cudaMemcpy_v3020"
            : cbid == 311 ? "cudaGraphLaunch_v10000"
            : cbid == 5 ? "cudaGetDevice_v3020"
            : cbid == 1 ? "cudaDriverGetVersion_v3020"
                        : NULL;
  } else if (dom == CUPTI_CB_DOMAIN_DRIVER_API) {
    *name = cbid == 307 ? "cuLaunchKernel" : cbid == 10 ? "cuCtxGetDevice" : NULL;
  }
  return *name ? CUPTI_SUCCESS : CUPTI_ERROR_INVALID_PARAMETER;
}
static CUptiResult f_rt_api(CUpti_CallbackId cb, uint8_t on) {
  if (on) {
    f_rt_on[cb / 64] |= 1ull << (cb % 64);
  } else {
    f_rt_on[cb / 64] &= ~(1ull << (cb % 64));
  }
  return CUPTI_SUCCESS;
}
static CUptiResult f_drv_api(CUpti_CallbackId cb, uint8_t on) {
  if (on) {
    f_drv_on[cb / 64] |= 1ull << (cb % 64);
  } else {
    f_drv_on[cb / 64] &= ~(1ull << (cb % 64));
  }
  return CUPTI_SUCCESS;
}
static int bits_set(const uint64_t *w, size_t n) {
  int c = 0;
  for (size_t i = 0; i < n; i++) {
    c += __builtin_popcountll(w[i]);
  }
  return c;
}

static struct kfm__cupti_api fake;

static void fake_reset(int use_real_iterator) {
  memset(&fake, 0, sizeof fake); /* dl_open NULL: pointers preset, nothing loaded */
  fake.GetVersion = f_version;
  fake.GetResultString = f_result_string;
  fake.GetTimestamp = f_timestamp;
  fake.ActivityEnable = f_enable;
  fake.ActivityDisable = f_disable;
  fake.ActivityRegisterCallbacks = f_register;
  fake.ActivityGetNextRecord = use_real_iterator && real_next ? real_next : f_next_sizes;
  fake.ActivityFlushAll = f_flush_all;
  fake.ActivityPushExternalCorrelationId = f_push;
  fake.ActivityPopExternalCorrelationId = f_pop;
  fake.ActivityGetNumDroppedRecords = f_dropped;
  fake.Subscribe = f_subscribe;
  fake.Unsubscribe = f_unsubscribe;
  f_subscribe_rc = CUPTI_SUCCESS;
  f_subscribed = 0;
  memset(f_rt_on, 0, sizeof f_rt_on);
  memset(f_drv_on, 0, sizeof f_drv_on);
  memset(f_flush_flags, 0xff, sizeof f_flush_flags);
  f_fail_kind = CUPTI_ACTIVITY_KIND_INVALID;
  f_fail_code = CUPTI_ERROR_UNKNOWN;
  f_enabled = 0;
  f_flushes = 0;
  f_push_fail_id = 0;
  f_depth = f_pushes = f_pops = 0;
  f_nheld = 0;
  f_requested = NULL;
  f_completed = NULL;
  kfm__cupti_set_api(&fake);
}

/* ---------------------------------------------------------------------- */
/* Backend plumbing.                                                       */

struct be {
  void *st;
  void *ts;
  char err[256];
  char note[256];
  int rc;
};

static void be_open(struct be *b) {
  b->st = calloc(1, B.state_size);
  b->ts = calloc(1, B.thread_state_size);
  struct kfm__backend_ctx ctx = {.level = KFM_LEVEL_COMPREHENSIVE,
                                 .proc_root = "",
                                 .events = "",
                                 .errbuf = b->err,
                                 .errlen = sizeof b->err,
                                 .note = b->note,
                                 .notelen = sizeof b->note};
  b->err[0] = b->note[0] = '\0';
  b->rc = B.open(b->st, &ctx);
  if (b->rc == 0) {
    CU_ASSERT_EQUAL(ctx.n_transition, 0);
    CU_ASSERT_EQUAL(ctx.n_sample, 0);
  }
}

static void be_close(struct be *b) {
  B.close(b->st);
  free(b->st);
  free(b->ts);
}

/* Session start, and one enter/exit of each node up to max_node so that
 * ids of those nodes are ones the backend pushed. */
static void be_start(struct be *b, uint32_t max_node) {
  kfm__cupti_set_start(b->st, mono_ns());
  for (uint32_t n = 0; n <= max_node; n++) {
    B.enter(b->st, b->ts, n);
    B.exit(b->st, b->ts, n);
  }
}

/* Opened and started, node 1 entered once: ids of node 1 are valid. */
static void be_ready(struct be *b, int use_real_iterator) {
  fake_reset(use_real_iterator);
  be_open(b);
  CU_ASSERT_EQUAL_FATAL(b->rc, 0);
  be_start(b, 1);
}

/* Export into a string (caller frees).  Not inlined: gcc then mistakes
 * the returned buffer for a pointer to the local it was written through. */
__attribute__((noinline)) static char *be_json(void *st) {
  char *s = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&s, &n);
  B.export_json(st, f);
  fclose(f);
  return s;
}

/* A pool buffer from the backend, as CUPTI would get it. */
static uint8_t *get_buffer(size_t *size) {
  uint8_t *b = NULL;
  size_t max = 1;
  f_requested(&b, size, &max);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_EQUAL(max, 0);
  CU_ASSERT_TRUE(*size >= 64 * 1024);
  CU_ASSERT_EQUAL((uintptr_t)b % 8, 0);
  return b;
}

static size_t put(uint8_t *buf, size_t off, const void *rec, size_t n) {
  memcpy(buf + off, rec, n);
  return (off + n + 7) & ~(size_t)7;
}

static size_t put_ext(uint8_t *buf, size_t off, CUpti_ExternalCorrelationKind k, uint32_t corr,
                      uint64_t ext) {
  CUpti_ActivityExternalCorrelation e;
  memset(&e, 0, sizeof e);
  e.kind = CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION;
  e.externalKind = k;
  e.externalId = ext;
  e.correlationId = corr;
  return put(buf, off, &e, sizeof e);
}

static uint32_t put_device; /* deviceId of the kernels put_kernel writes */

static size_t put_kernel(uint8_t *buf, size_t off, uint32_t corr, uint64_t start, uint64_t end,
                         const char *name, int gx, int bx) {
  CUpti_ActivityKernel10 k;
  memset(&k, 0, sizeof k);
  k.deviceId = put_device;
  k.kind = CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
  k.start = start;
  k.end = end;
  k.correlationId = corr;
  k.gridX = gx;
  k.gridY = 1;
  k.gridZ = 1;
  k.blockX = bx;
  k.blockY = 1;
  k.blockZ = 1;
  k.name = name;
  return put(buf, off, &k, sizeof k);
}

static size_t put_memcpy(uint8_t *buf, size_t off, uint32_t corr, CUpti_ActivityMemcpyKind ck,
                         uint64_t bytes, uint64_t start, uint64_t end) {
  CUpti_ActivityMemcpy6 m;
  memset(&m, 0, sizeof m);
  m.kind = CUPTI_ACTIVITY_KIND_MEMCPY;
  m.copyKind = (uint8_t)ck;
  m.bytes = bytes;
  m.start = start;
  m.end = end;
  m.correlationId = corr;
  return put(buf, off, &m, sizeof m);
}

static size_t put_memset(uint8_t *buf, size_t off, uint32_t corr, uint64_t bytes, uint64_t start,
                         uint64_t end) {
  CUpti_ActivityMemset4 m;
  memset(&m, 0, sizeof m);
  m.kind = CUPTI_ACTIVITY_KIND_MEMSET;
  m.bytes = bytes;
  m.start = start;
  m.end = end;
  m.correlationId = corr;
  return put(buf, off, &m, sizeof m);
}

static size_t put_sync(uint8_t *buf, size_t off, uint32_t corr, uint64_t start, uint64_t end) {
  CUpti_ActivitySynchronization2 s;
  memset(&s, 0, sizeof s);
  s.kind = CUPTI_ACTIVITY_KIND_SYNCHRONIZATION;
  s.type = CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_SYNCHRONIZE;
  s.start = start;
  s.end = end;
  s.correlationId = corr;
  return put(buf, off, &s, sizeof s);
}

static size_t put_api(uint8_t *buf, size_t off, CUpti_ActivityKind kind, uint32_t corr) {
  CUpti_ActivityAPI a;
  memset(&a, 0, sizeof a);
  a.kind = kind;
  a.correlationId = corr;
  a.start = 1;
  a.end = 2;
  return put(buf, off, &a, sizeof a);
}

/* ---------------------------------------------------------------------- */
/* Attribution.                                                            */

/* Times in the GPU's clock; S is the session start the test declares. */
#define NODE_A 3u
#define NODE_B 5u

static void check_attribution(int use_real_iterator) {
  if (use_real_iterator && real_next == NULL) {
    printf("\n  (libcupti not loadable: real cuptiActivityGetNextRecord not exercised)\n");
    return;
  }
  fake_reset(use_real_iterator);
  struct be b;
  be_open(&b);
  if (b.rc != 0) {
    fprintf(stderr, "\nopen: %s\n", b.err);
  }
  CU_ASSERT_EQUAL_FATAL(b.rc, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f_requested);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f_completed);
  CU_ASSERT_EQUAL(f_enabled, 0); /* nothing is traced before the session starts */
  CU_ASSERT_EQUAL(f_subscribed, 1);
  uint64_t S = mono_ns();
  kfm__cupti_set_start(b.st, S);
  /* Every kind the brief names is enabled (this CUPTI cannot select API calls). */
  CU_ASSERT_TRUE((f_enabled & (1ull << CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL)) != 0);
  CU_ASSERT_TRUE((f_enabled & (1ull << CUPTI_ACTIVITY_KIND_MEMCPY)) != 0);
  CU_ASSERT_TRUE((f_enabled & (1ull << CUPTI_ACTIVITY_KIND_MEMSET)) != 0);
  CU_ASSERT_TRUE((f_enabled & (1ull << CUPTI_ACTIVITY_KIND_SYNCHRONIZATION)) != 0);
  CU_ASSERT_TRUE((f_enabled & (1ull << CUPTI_ACTIVITY_KIND_RUNTIME)) != 0);
  CU_ASSERT_TRUE((f_enabled & (1ull << CUPTI_ACTIVITY_KIND_DRIVER)) != 0);
  CU_ASSERT_TRUE((f_enabled & (1ull << CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION)) != 0);

  uint64_t g = S + f_gpu_offset; /* GPU time of the session start */

  /* Hooks: enter A, enter B (nested), exit B, exit A: ids are node + 1. */
  B.enter(b.st, b.ts, NODE_A);
  B.enter(b.st, b.ts, NODE_B);
  CU_ASSERT_EQUAL(f_depth, 2);
  CU_ASSERT_EQUAL(f_stack[0], ID(b.st, NODE_A));
  CU_ASSERT_EQUAL(f_stack[1], ID(b.st, NODE_B));
  CU_ASSERT_EQUAL(f_stack[1] >> 48, 0x6B66);
  CU_ASSERT_EQUAL(f_stack[1] & 0xFFFFFFFFu, NODE_B + 1);
  B.exit(b.st, b.ts, NODE_B);
  B.exit(b.st, b.ts, NODE_A);
  CU_ASSERT_EQUAL(f_depth, 0);
  CU_ASSERT_EQUAL(f_pops, 2);
  CU_ASSERT_EQUAL(f_popped[0], ID(b.st, NODE_B));
  CU_ASSERT_EQUAL(f_popped[1], ID(b.st, NODE_A));

  /* Buffer 1: records before their mappings, mappings after records. */
  size_t size;
  uint8_t *b1 = get_buffer(&size);
  size_t o = 0;
  o = put_kernel(b1, o, 100, g + 1000000, g + 1000000 + 7000, "k_add", 4,
                 256); /* A, mapped in buffer 2 */
  o = put_memcpy(b1, o, 101, CUPTI_ACTIVITY_MEMCPY_KIND_HTOD, 1 << 20, g + 2000000,
                 g + 2050000); /* B, mapped below */
  o = put_api(b1, o, CUPTI_ACTIVITY_KIND_RUNTIME, 101);
  o = put_ext(b1, o, CK, 101, ID(b.st, NODE_B));
  o = put_ext(b1, o, CK, 102, ID(b.st, NODE_A)); /* for buffer 2's records */
  o = put_ext(b1, o, CK, 103, ID(b.st, NODE_B));
  o = put_api(b1, o, CUPTI_ACTIVITY_KIND_DRIVER, 103);
  o = put_kernel(b1, o, 103, g + 3000000, g + 3000000 + 11000, "k_spin", 1, 32); /* B */
  o = put_kernel(b1, o, 999, g + 4000000, g + 4000000 + 5000, "k_add", 4, 256);  /* never mapped */
  o = put_memcpy(b1, o, 104, CUPTI_ACTIVITY_MEMCPY_KIND_DTOH, 4096, g + 4100000,
                 g + 4110000);                                                  /* never mapped */
  o = put_ext(b1, o, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, 105, ID(b.st, NODE_A)); /* Kineto's kind */
  o = put_kernel(b1, o, 105, g + 4200000, g + 4200000 + 3000, "k_other", 2, 64);
  o = put_ext(b1, o, CK, 106, NODE_A + 1); /* our kind, not our id: another tool's */
  o = put_kernel(b1, o, 106, g + 4300000, g + 4300000 + 2000, "k_other", 2, 64);
  f_completed(NULL, 0, b1, size, o);

  struct kfm__cupti_counts c;
  kfm__cupti_counts(b.st, &c);
  CU_ASSERT_EQUAL(c.buffers, 1);
  CU_ASSERT_EQUAL(c.pending, 5); /* 100, 999, 104, 105, 106 */
  CU_ASSERT_EQUAL(c.unattributed, 0);
  CU_ASSERT_EQUAL(c.records[0], 5); /* kernels */
  CU_ASSERT_EQUAL(c.records[1], 2); /* memcpy */
  CU_ASSERT_EQUAL(c.records[4], 1); /* runtime */
  CU_ASSERT_EQUAL(c.records[5], 1); /* driver */
  CU_ASSERT_EQUAL(c.records[6], 5); /* external correlation */

  /* Buffer 2, held by "CUPTI" until the flush hook's cuptiActivityFlushAll. */
  uint8_t *b2 = get_buffer(&size);
  o = 0;
  o = put_kernel(b2, o, 102, g + 5000000, g + 5000000 + 13000, "k_add", 4, 256); /* A */
  o = put_memcpy(b2, o, 102, CUPTI_ACTIVITY_MEMCPY_KIND_DTOH, 3u << 20, g + 5100000,
                 g + 5160000);                                /* A */
  o = put_kernel(b2, o, 102, 0, 0, "k_add", 4, 256);          /* A, untimed */
  o = put_memset(b2, o, 103, 8192, g + 6000000, g + 6001000); /* B */
  o = put_sync(b2, o, 103, g + 6100000, g + 6400000);         /* B */
  o = put_memcpy(b2, o, 103, CUPTI_ACTIVITY_MEMCPY_KIND_DTOD, 512, g + 6500000,
                 g + 6501000);             /* B, other */
  o = put_ext(b2, o, CK, 100, ID(b.st, NODE_A)); /* late mapping for buffer 1's first kernel */
  f_held[0] = b2;
  f_held_valid[0] = o;
  f_nheld = 1;
  B.flush(b.st);
  /* Complete buffers, then (kinds off) the forced flush. */
  CU_ASSERT_EQUAL(f_flushes, 2);
  CU_ASSERT_EQUAL(f_flush_flags[0], 0);
  CU_ASSERT_EQUAL(f_flush_flags[1], CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  CU_ASSERT_EQUAL(f_enabled, 0); /* stop disabled every kind it enabled */

  kfm__cupti_counts(b.st, &c);
  CU_ASSERT_EQUAL(c.buffers, 2);
  CU_ASSERT_EQUAL(c.pending, 0);
  CU_ASSERT_EQUAL(c.unattributed, 4); /* 999, 104, 105, 106 */
  CU_ASSERT_EQUAL(c.ext_other_kind, 1);
  CU_ASSERT_EQUAL(c.ext_foreign, 1);
  CU_ASSERT_EQUAL(c.ext_stale, 0);
  CU_ASSERT_EQUAL(c.ext_range, 0);

  struct kfm__cupti_totals t;
  CU_ASSERT_TRUE(kfm__cupti_node_totals(b.st, NODE_A, &t));
  CU_ASSERT_EQUAL(t.kernel_ns, 7000 + 13000);
  CU_ASSERT_EQUAL(t.launches, 3);
  CU_ASSERT_EQUAL(t.untimed, 1);
  CU_ASSERT_EQUAL(t.bytes_h2d, 0);
  CU_ASSERT_EQUAL(t.bytes_d2h, 3u << 20);
  CU_ASSERT_EQUAL(t.memcpy_count, 1);
  CU_ASSERT_EQUAL(t.memcpy_ns, 60000);
  CU_ASSERT_EQUAL(t.memset_bytes, 0);
  CU_ASSERT_EQUAL(t.sync_count, 0);

  CU_ASSERT_TRUE(kfm__cupti_node_totals(b.st, NODE_B, &t));
  CU_ASSERT_EQUAL(t.kernel_ns, 11000);
  CU_ASSERT_EQUAL(t.launches, 1);
  CU_ASSERT_EQUAL(t.untimed, 0);
  CU_ASSERT_EQUAL(t.bytes_h2d, 1u << 20);
  CU_ASSERT_EQUAL(t.bytes_d2h, 0);
  CU_ASSERT_EQUAL(t.bytes_other, 512);
  CU_ASSERT_EQUAL(t.memcpy_count, 2);
  CU_ASSERT_EQUAL(t.memcpy_ns, 50000 + 1000);
  CU_ASSERT_EQUAL(t.memset_bytes, 8192);
  CU_ASSERT_EQUAL(t.memset_count, 1);
  CU_ASSERT_EQUAL(t.sync_ns, 300000);
  CU_ASSERT_EQUAL(t.sync_count, 1);

  CU_ASSERT_TRUE(kfm__cupti_node_totals(b.st, UINT32_MAX, &t));
  CU_ASSERT_EQUAL(t.kernel_ns, 5000 + 3000 + 2000);
  CU_ASSERT_EQUAL(t.launches, 3);
  CU_ASSERT_EQUAL(t.bytes_d2h, 4096);
  /* No other node received anything (not node 0, not the ids next to ours). */
  for (uint32_t n = 0; n < 16; n++) {
    if (n != NODE_A && n != NODE_B) {
      CU_ASSERT_FALSE(kfm__cupti_node_totals(b.st, n, &t));
    }
  }

  /* The export: kernel table, unattributed bucket, timeline in session time. */
  char *js = be_json(b.st);
  CU_ASSERT_PTR_NOT_NULL_FATAL(js);
  if (getenv("KFM_TEST_SHOW_JSON")) {
    printf("\n%s\n", js);
  }
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"available\":true"));
  CU_ASSERT_PTR_NOT_NULL(
      strstr(js, "\"3\":{\"records\":4,\"kernel_ns\":20000,\"launches\":3,\"untimed\":1,"
                 "\"memcpy_ns\":60000,\"memcpy_count\":1,\"bytes_h2d\":0,\"bytes_d2h\":3145728,"));
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"kernels\":[{\"name\":\"k_add\",\"grid\":[4,1,1],"
                                    "\"block\":[256,1,1],\"count\":3,\"total_ns\":20000,"
                                    "\"untimed\":1,\"device\":0}]"));
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"kernels\":[{\"name\":\"k_spin\",\"grid\":[1,1,1],"
                                    "\"block\":[32,1,1],\"count\":1,\"total_ns\":11000,"
                                    "\"untimed\":0,\"device\":0}]"));
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"unattributed\":{\"records\":4,\"kernel_ns\":10000,"
                                    "\"launches\":3,"));
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "{\"name\":\"k_other\",\"grid\":[2,1,1],\"block\":[64,1,1],"
                                    "\"count\":2,\"total_ns\":5000,\"untimed\":0,\"device\":0}"));
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"origin\":\"session_start\""));
  /* First timeline event: buffer 1's k_spin (the first record attributed on
   * arrival), 3 ms after the start on the GPU clock.  The clock pair is
   * exact up to the bracket of one cuptiGetTimestamp call. */
  const char *p = strstr(js, "{\"kind\":\"kernel\",\"node\":5,\"start_ns\":");
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  long long t0 = 0, t1 = 0;
  CU_ASSERT_EQUAL(
      sscanf(p, "{\"kind\":\"kernel\",\"node\":5,\"start_ns\":%lld,\"end_ns\":%lld", &t0, &t1), 2);
  KT_NEAR(t0, 3000000, 0.02);
  CU_ASSERT_EQUAL(t1 - t0, 11000);
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"kind\":\"memcpy_h2d\",\"node\":5,"));
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"kind\":\"kernel\",\"node\":null,"));
  free(js);

  be_close(&b);
  CU_ASSERT_EQUAL(f_enabled, 0);
  CU_ASSERT_EQUAL(f_subscribed, 0); /* the subscriber slot is given back */
}

static void test_attribution_walker(void) {
  check_attribution(0);
}

static void test_attribution_real_iterator(void) {
  check_attribution(1);
}

/* Two GPUs: a node's kernel time is given per device, and the kernel table
 * keeps the same kernel on each device apart. */
static void test_kernel_time_per_device(void) {
  struct be b;
  be_ready(&b, 1);
  size_t size;
  uint8_t *buf = get_buffer(&size);
  size_t o = put_ext(buf, 0, CK, 7, ID(b.st, 1));
  put_device = 0;
  o = put_kernel(buf, o, 7, 1000, 1300, "k", 1, 1);
  put_device = 1;
  o = put_kernel(buf, o, 7, 1000, 1700, "k", 1, 1);
  o = put_kernel(buf, o, 7, 2000, 2100, "k", 1, 1);
  put_device = 0;
  f_completed(NULL, 0, buf, size, o);
  char *js = be_json(b.st);
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"count\":2,\"total_ns\":800,\"untimed\":0,\"device\":1}"));
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"count\":1,\"total_ns\":300,\"untimed\":0,\"device\":0}"));
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"kernel_ns_by_device\":{\"1\":800,\"0\":300}"));
  free(js);
  be_close(&b);
}

/* The timeline as trace spans (the engine's Chrome trace draws them on a
 * lane per device): each kernel with its device's lane, name, node and
 * duration; a kernel no node launched carries KFM_NODE_ROOT. */
struct spans_seen {
  char lane[8][48], name[8][32];
  int64_t dur[8];
  uint32_t node[8];
  int n;
};

static void spans_add(void *ctx, const struct kfm__trace_span *sp) {
  struct spans_seen *v = ctx;
  if (v->n < 8) {
    snprintf(v->lane[v->n], sizeof v->lane[0], "%s", sp->lane);
    snprintf(v->name[v->n], sizeof v->name[0], "%s", sp->name ? sp->name : sp->kind);
    v->dur[v->n] = sp->t1_ns - sp->t0_ns;
    v->node[v->n] = sp->node;
  }
  v->n++;
}

static void test_trace_spans(void) {
  struct be b;
  be_ready(&b, 1);
  size_t size;
  uint8_t *buf = get_buffer(&size);
  size_t o = put_ext(buf, 0, CK, 7, ID(b.st, 1));
  put_device = 0;
  o = put_kernel(buf, o, 7, 1000, 1300, "gemm", 1, 1);
  put_device = 1;
  o = put_kernel(buf, o, 7, 1100, 1800, "relu", 1, 1);
  o = put_kernel(buf, o, 9, 2000, 2050, "stray", 1, 1); /* no node pushed id 9 */
  put_device = 0;
  f_completed(NULL, 0, buf, size, o);
  kfm__cupti_finish(b.st);
  struct spans_seen v = {0};
  CU_ASSERT_PTR_NOT_NULL_FATAL(B.trace_spans);
  B.trace_spans(b.st, spans_add, &v);
  CU_ASSERT_EQUAL_FATAL(v.n, 3);
  for (int i = 0; i < v.n; i++) {
    if (strcmp(v.name[i], "gemm") == 0) {
      CU_ASSERT_STRING_EQUAL(v.lane[i], "GPU 0 (CUPTI)");
      CU_ASSERT_EQUAL(v.dur[i], 300);
      CU_ASSERT_EQUAL(v.node[i], 1);
    } else if (strcmp(v.name[i], "relu") == 0) {
      CU_ASSERT_STRING_EQUAL(v.lane[i], "GPU 1 (CUPTI)");
      CU_ASSERT_EQUAL(v.dur[i], 700);
      CU_ASSERT_EQUAL(v.node[i], 1);
    } else {
      CU_ASSERT_STRING_EQUAL(v.name[i], "stray");
      CU_ASSERT_EQUAL(v.node[i], KFM_NODE_ROOT);
    }
  }
  be_close(&b);
}

/* One correlation id serves every kernel of a graph launch: the mapping
 * must not be consumed by the first record. */
static void test_graph_launch_shares_correlation(void) {
  struct be b;
  be_ready(&b, 1);
  size_t size;
  uint8_t *buf = get_buffer(&size);
  size_t o = put_ext(buf, 0, CK, 7, ID(b.st, 1));
  for (int i = 0; i < 10; i++) {
    o = put_kernel(buf, o, 7, 1000 + (uint64_t)i * 100, 1050 + (uint64_t)i * 100, "g", 1, 1);
  }
  f_completed(NULL, 0, buf, size, o);
  struct kfm__cupti_totals t;
  CU_ASSERT_TRUE(kfm__cupti_node_totals(b.st, 1, &t));
  CU_ASSERT_EQUAL(t.launches, 10);
  CU_ASSERT_EQUAL(t.kernel_ns, 500);
  be_close(&b);
}

/* A restarted session's run starts from nothing: the previous run's
 * kernels are not carried into it, and a later run's records count alone. */
static void test_restart_forgets_previous_run(void) {
  struct be b;
  be_ready(&b, 1);
  size_t size;
  uint8_t *buf = get_buffer(&size);
  size_t o = put_ext(buf, 0, CK, 7, ID(b.st, 1));
  o = put_kernel(buf, o, 7, 1000, 1400, "k", 1, 1);
  f_completed(NULL, 0, buf, size, o);
  struct kfm__cupti_totals t;
  CU_ASSERT_TRUE(kfm__cupti_node_totals(b.st, 1, &t));
  CU_ASSERT_EQUAL(t.kernel_ns, 400);
  B.flush(b.st);
  uint64_t old_id = ID(b.st, 1);
  kfm__cupti_restart(b.st);
  kfm__cupti_set_start(b.st, mono_ns());
  CU_ASSERT_NOT_EQUAL(ID(b.st, 1), old_id);
  CU_ASSERT_FALSE(kfm__cupti_node_totals(b.st, 1, &t));
  struct kfm__cupti_counts c;
  kfm__cupti_counts(b.st, &c);
  CU_ASSERT_EQUAL(c.records[0], 0);
  CU_ASSERT_EQUAL(c.buffers, 0);
  buf = get_buffer(&size);
  o = put_ext(buf, 0, CK, 8, ID(b.st, 1));
  o = put_kernel(buf, o, 8, 2000, 2100, "k", 1, 1);
  o = put_kernel(buf, o, 8, 2200, 2300, "k", 1, 1);
  o = put_ext(buf, o, CK, 9, old_id); /* the previous run's id: refused */
  o = put_kernel(buf, o, 9, 2400, 2500, "k", 1, 1);
  f_completed(NULL, 0, buf, size, o);
  CU_ASSERT_TRUE(kfm__cupti_node_totals(b.st, 1, &t));
  CU_ASSERT_EQUAL(t.launches, 2);
  CU_ASSERT_EQUAL(t.kernel_ns, 200);
  kfm__cupti_counts(b.st, &c);
  CU_ASSERT_EQUAL(c.ext_stale, 1);
  be_close(&b);
}

/* CUPTI's own thread delivers buffers while the profiled thread makes
 * transitions and another reads the export: run under TSan, this checks
 * that the parse path and the hooks share nothing unguarded. */
#define CONC_BUFFERS 200

static uint32_t conc_gen; /* written before the thread starts */

static void *conc_cupti_thread(void *arg) {
  (void)arg;
  for (uint32_t i = 0; i < CONC_BUFFERS; i++) {
    size_t size;
    uint8_t *buf = NULL;
    size_t max = 0;
    f_requested(&buf, &size, &max);
    if (buf == NULL) {
      continue;
    }
    size_t o = put_kernel(buf, 0, 1000 + i, 5000 + i * 1000ull, 5100 + i * 1000ull, "c", 1, 1);
    o = put_ext(buf, o, CK, 1000 + i, KFM__CUPTI_ID(conc_gen, 1));
    f_completed(NULL, 0, buf, size, o);
  }
  return NULL;
}

static void test_concurrent_delivery(void) {
  struct be b;
  be_ready(&b, 0);
  conc_gen = kfm__cupti_generation(b.st);
  f_pushes = f_pops = 0;
  pthread_t th;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, conc_cupti_thread, NULL), 0);
  for (int i = 0; i < 2000; i++) {
    B.enter(b.st, b.ts, 1);
    B.exit(b.st, b.ts, 1);
    if (i % 200 == 0) {
      free(be_json(b.st));
    }
  }
  pthread_join(th, NULL);
  CU_ASSERT_EQUAL(f_pushes, 2000);
  CU_ASSERT_EQUAL(f_pops, 2000);
  struct kfm__cupti_totals t;
  CU_ASSERT_TRUE(kfm__cupti_node_totals(b.st, 1, &t));
  CU_ASSERT_EQUAL(t.launches, CONC_BUFFERS);
  CU_ASSERT_EQUAL(t.kernel_ns, CONC_BUFFERS * 100u);
  be_close(&b);
}

/* An enter whose push failed is not popped by its exit. */
static void test_hooks_pair_push_pop(void) {
  fake_reset(0);
  struct be b;
  be_open(&b);
  CU_ASSERT_EQUAL_FATAL(b.rc, 0);
  kfm__cupti_set_start(b.st, mono_ns());
  f_push_fail_id = ID(b.st, 7);
  B.enter(b.st, b.ts, 1);
  B.enter(b.st, b.ts, 7); /* fails */
  B.enter(b.st, b.ts, 2);
  CU_ASSERT_EQUAL(f_pushes, 2);
  B.exit(b.st, b.ts, 2);
  B.exit(b.st, b.ts, 7);
  B.exit(b.st, b.ts, 1);
  CU_ASSERT_EQUAL(f_pops, 2);
  CU_ASSERT_EQUAL(f_popped[0], ID(b.st, 2));
  CU_ASSERT_EQUAL(f_popped[1], ID(b.st, 1));
  CU_ASSERT_EQUAL(f_depth, 0);
  B.exit(b.st, b.ts, 1); /* unbalanced: nothing to pop */
  CU_ASSERT_EQUAL(f_pops, 2);
  char *js = be_json(b.st);
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"push_failed\":1"));
  free(js);
  be_close(&b);
}

/* ---------------------------------------------------------------------- */
/* Ids: only this session's, this run's, of nodes it pushed.               */

/* The buffer pool is sized once, at the first open, from KFM_CUPTI_BUFFER_MB;
 * a bad value fails the open naming it.  Runs first: the pool is per process. */
static void test_pool_size_from_env(void) {
  fake_reset(0);
  struct be b;
  setenv("KFM_CUPTI_BUFFER_MB", "0", 1);
  be_open(&b);
  CU_ASSERT_EQUAL(b.rc, KFM_EINVAL);
  CU_ASSERT_STRING_EQUAL(b.err, "KFM_CUPTI_BUFFER_MB='0' is not a whole number of MiB in 1..4096");
  be_close(&b);
  setenv("KFM_CUPTI_BUFFER_MB", "12x", 1);
  be_open(&b);
  CU_ASSERT_EQUAL(b.rc, KFM_EINVAL);
  be_close(&b);
  setenv("KFM_CUPTI_BUFFER_MB", "8", 1);
  be_open(&b);
  CU_ASSERT_EQUAL_FATAL(b.rc, 0);
  CU_ASSERT_EQUAL(kfm__cupti_pool_bytes(), 8u << 20);
  CU_ASSERT_PTR_NOT_NULL(strstr(b.note, "8 MiB of buffers"));
  /* Every buffer of the pool can be handed out, then CUPTI is declined. */
  uint8_t *got[16];
  for (int i = 0; i < 16; i++) {
    size_t size = 0, max = 0;
    f_requested(&got[i], &size, &max);
    CU_ASSERT_PTR_NOT_NULL(got[i]);
  }
  uint8_t *none = (uint8_t *)&none;
  size_t size = 1, max = 0;
  f_requested(&none, &size, &max);
  CU_ASSERT_PTR_NULL(none);
  CU_ASSERT_EQUAL(size, 0);
  for (int i = 0; i < 16; i++) {
    f_completed(NULL, 0, got[i], 0, 0);
  }
  be_close(&b);
  unsetenv("KFM_CUPTI_BUFFER_MB");
}

/* External correlation records that are not this run's ids of pushed nodes
 * are refused and counted, their activity stays unattributed, and the node
 * table does not grow for them. */
static void test_foreign_ids_refused(void) {
  fake_reset(1);
  struct be b;
  be_open(&b);
  CU_ASSERT_EQUAL_FATAL(b.rc, 0);
  be_start(&b, 5); /* nodes 0..5 pushed */
  uint32_t gen = kfm__cupti_generation(b.st);
  CU_ASSERT_NOT_EQUAL(gen, 0);
  size_t size;
  uint8_t *buf = get_buffer(&size);
  size_t o = 0;
  /* Kineto's op id on its own kind, even one that looks like ours. */
  o = put_ext(buf, o, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, 10, 4);
  o = put_kernel(buf, o, 10, 100, 200, "k", 1, 1);
  o = put_ext(buf, o, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM1, 11, ID(b.st, 2));
  o = put_kernel(buf, o, 11, 100, 200, "k", 1, 1);
  /* Our kind, foreign ids: small integers (another tool on CUSTOM2), a
   * 2^24-range id that would once have grown the node table. */
  o = put_ext(buf, o, CK, 12, 3);
  o = put_kernel(buf, o, 12, 100, 200, "k", 1, 1);
  o = put_ext(buf, o, CK, 13, (1u << 24) - 1);
  o = put_kernel(buf, o, 13, 100, 200, "k", 1, 1);
  /* Another generation (an earlier session or run). */
  o = put_ext(buf, o, CK, 14, KFM__CUPTI_ID(gen + 1, 2));
  o = put_kernel(buf, o, 14, 100, 200, "k", 1, 1);
  o = put_ext(buf, o, CK, 15, KFM__CUPTI_ID(gen - 1, 2));
  o = put_kernel(buf, o, 15, 100, 200, "k", 1, 1);
  /* Past the nodes pushed, and the "node + 1 == 0" form. */
  o = put_ext(buf, o, CK, 16, ID(b.st, 6));
  o = put_kernel(buf, o, 16, 100, 200, "k", 1, 1);
  o = put_ext(buf, o, CK, 17, ID(b.st, 1000000));
  o = put_kernel(buf, o, 17, 100, 200, "k", 1, 1);
  o = put_ext(buf, o, CK, 18, ID(b.st, 5) & ~(uint64_t)0xFFFFFFFFu);
  o = put_kernel(buf, o, 18, 100, 200, "k", 1, 1);
  /* And one that is ours, to show the same buffer does attribute. */
  o = put_ext(buf, o, CK, 19, ID(b.st, 5));
  o = put_kernel(buf, o, 19, 100, 350, "k", 1, 1);
  f_completed(NULL, 0, buf, size, o);
  B.flush(b.st);
  struct kfm__cupti_counts c;
  kfm__cupti_counts(b.st, &c);
  CU_ASSERT_EQUAL(c.records[6], 10);
  CU_ASSERT_EQUAL(c.ext_other_kind, 2);
  CU_ASSERT_EQUAL(c.ext_foreign, 2);
  CU_ASSERT_EQUAL(c.ext_stale, 2);
  CU_ASSERT_EQUAL(c.ext_range, 3);
  CU_ASSERT_EQUAL(c.unattributed, 9);
  CU_ASSERT_EQUAL(c.pending, 0);
  struct kfm__cupti_totals t;
  CU_ASSERT_TRUE(kfm__cupti_node_totals(b.st, 5, &t));
  CU_ASSERT_EQUAL(t.launches, 1);
  CU_ASSERT_EQUAL(t.kernel_ns, 250);
  for (uint32_t n = 0; n < 5; n++) {
    CU_ASSERT_FALSE(kfm__cupti_node_totals(b.st, n, &t));
  }
  CU_ASSERT_FALSE(kfm__cupti_node_totals(b.st, (1u << 24) - 2, &t));
  CU_ASSERT_TRUE(kfm__cupti_node_totals(b.st, UINT32_MAX, &t));
  CU_ASSERT_EQUAL(t.launches, 9);
  char *js = be_json(b.st);
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"external_ids_refused\":{\"other_tool_kind\":2,"
                                    "\"foreign\":2,\"stale_generation\":2,\"past_pushed_nodes\":3}"));
  free(js);
  be_close(&b);
}

/* A thread still inside a node when the run ends keeps its id pushed; at
 * its first hook of the next run the leftover is popped, so its launches
 * are not credited to the old node, and the old node's exit pops nothing. */
static void test_restart_pops_leftover_ids(void) {
  fake_reset(0);
  struct be b;
  be_open(&b);
  CU_ASSERT_EQUAL_FATAL(b.rc, 0);
  kfm__cupti_set_start(b.st, mono_ns());
  B.enter(b.st, b.ts, 2); /* still inside at stop */
  uint64_t old = ID(b.st, 2);
  CU_ASSERT_EQUAL(f_depth, 1);
  B.flush(b.st);
  kfm__cupti_restart(b.st);
  kfm__cupti_set_start(b.st, mono_ns());
  B.enter(b.st, b.ts, 3);
  CU_ASSERT_EQUAL(f_pops, 1);
  CU_ASSERT_EQUAL(f_popped[0], old);
  CU_ASSERT_EQUAL(f_depth, 1);
  CU_ASSERT_EQUAL(f_stack[0], ID(b.st, 3));
  B.exit(b.st, b.ts, 3);
  CU_ASSERT_EQUAL(f_pops, 2);
  CU_ASSERT_EQUAL(f_popped[1], ID(b.st, 3));
  B.exit(b.st, b.ts, 2); /* the old node's exit: nothing of it is left */
  CU_ASSERT_EQUAL(f_pops, 2);
  CU_ASSERT_EQUAL(f_depth, 0);
  struct kfm__cupti_counts c;
  kfm__cupti_counts(b.st, &c);
  CU_ASSERT_EQUAL(c.stale_popped, 1);
  be_close(&b);
}

/* A force-flushed buffer: an incomplete record between complete ones.
 * Every complete record is parsed and the incomplete one is counted; after
 * a record of unknown size, the bytes that could not be read are counted. */
static void test_incomplete_records_counted(void) {
  struct be b;
  be_ready(&b, 0);
  size_t size;
  uint8_t *buf = get_buffer(&size);
  size_t o = put_ext(buf, 0, CK, 7, ID(b.st, 1));
  o = put_kernel(buf, o, 7, 1000, 1100, "k", 1, 1);
  o = put_kernel(buf, o, INCOMPLETE_CORR, 0, 0, "k", 1, 1);
  o = put_kernel(buf, o, 7, 2000, 2200, "k", 1, 1);
  o = put_kernel(buf, o, INCOMPLETE_CORR, 0, 0, "k", 1, 1);
  o = put_kernel(buf, o, INCOMPLETE_CORR, 0, 0, "k", 1, 1);
  o = put_kernel(buf, o, 7, 3000, 3400, "k", 1, 1);
  f_completed(NULL, 0, buf, size, o);
  struct kfm__cupti_counts c;
  kfm__cupti_counts(b.st, &c);
  CU_ASSERT_EQUAL(c.incomplete, 3);
  CU_ASSERT_EQUAL(c.unparsed_bytes, 0);
  struct kfm__cupti_totals t;
  CU_ASSERT_TRUE(kfm__cupti_node_totals(b.st, 1, &t));
  CU_ASSERT_EQUAL(t.launches, 3);
  CU_ASSERT_EQUAL(t.kernel_ns, 700);

  /* A record of a kind of unknown size: the rest cannot be found. */
  buf = get_buffer(&size);
  o = put_kernel(buf, 0, 7, 5000, 5100, "k", 1, 1);
  size_t bad = o;
  CUpti_ActivityKernel10 junk;
  memset(&junk, 0, sizeof junk);
  junk.kind = (CUpti_ActivityKind)0x7ffe;
  o = put(buf, o, &junk, sizeof junk);
  o = put_kernel(buf, o, 7, 6000, 6100, "k", 1, 1);
  f_completed(NULL, 0, buf, size, o);
  kfm__cupti_counts(b.st, &c);
  CU_ASSERT_EQUAL(c.incomplete, 4);
  CU_ASSERT_EQUAL(c.unparsed_bytes, o - bad);
  CU_ASSERT_TRUE(kfm__cupti_node_totals(b.st, 1, &t));
  CU_ASSERT_EQUAL(t.launches, 4);
  char *js = be_json(b.st);
  char want[96];
  snprintf(want, sizeof want, "\"incomplete_records\":4,\"unparsed_bytes\":%zu", o - bad);
  CU_ASSERT_PTR_NOT_NULL(strstr(js, want));
  free(js);
  be_close(&b);
}

/* The same unreadable record walked by libcupti's own iterator, which
 * neither returns nor steps over it. */
static void test_unknown_record_real_iterator(void) {
  if (real_next == NULL) {
    printf("\n  (libcupti not loadable: real cuptiActivityGetNextRecord not exercised)\n");
    return;
  }
  struct be b;
  be_ready(&b, 1);
  size_t size;
  uint8_t *buf = get_buffer(&size);
  size_t o = put_ext(buf, 0, CK, 7, ID(b.st, 1));
  o = put_kernel(buf, o, 7, 1000, 1100, "k", 1, 1);
  size_t bad = o;
  CUpti_ActivityKernel10 junk;
  memset(&junk, 0, sizeof junk);
  junk.kind = (CUpti_ActivityKind)0x7ffe;
  o = put(buf, o, &junk, sizeof junk);
  o = put_kernel(buf, o, 7, 2000, 2100, "k", 1, 1);
  f_completed(NULL, 0, buf, size, o);
  struct kfm__cupti_counts c;
  kfm__cupti_counts(b.st, &c);
  CU_ASSERT_EQUAL(c.incomplete, 1);
  CU_ASSERT_EQUAL(c.unparsed_bytes, o - bad);
  struct kfm__cupti_totals t;
  CU_ASSERT_TRUE(kfm__cupti_node_totals(b.st, 1, &t));
  CU_ASSERT_EQUAL(t.launches, 1);
  be_close(&b);
}

/* Collection spans start to stop, and only the API calls attribution needs
 * are traced when CUPTI can select them; stop undoes exactly that. */
static void test_collection_start_to_stop(void) {
  fake_reset(0);
  fake.GetCallbackName = f_cb_name;
  fake.ActivityEnableRuntimeApi = f_rt_api;
  fake.ActivityEnableDriverApi = f_drv_api;
  struct be b;
  be_open(&b);
  CU_ASSERT_EQUAL_FATAL(b.rc, 0);
  CU_ASSERT_EQUAL(f_enabled, 0);
  CU_ASSERT_EQUAL(bits_set(f_rt_on, sizeof f_rt_on / 8), 0);
  kfm__cupti_set_start(b.st, mono_ns());
  CU_ASSERT_TRUE((f_enabled & (1ull << CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL)) != 0);
  CU_ASSERT_TRUE((f_enabled & (1ull << CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION)) != 0);
  CU_ASSERT_FALSE((f_enabled & (1ull << CUPTI_ACTIVITY_KIND_RUNTIME)) != 0);
  CU_ASSERT_FALSE((f_enabled & (1ull << CUPTI_ACTIVITY_KIND_DRIVER)) != 0);
  CU_ASSERT_EQUAL(bits_set(f_rt_on, sizeof f_rt_on / 8), 3); /* launch, memcpy, graph launch */
  CU_ASSERT_TRUE((f_rt_on[211 / 64] >> (211 % 64)) & 1);
  CU_ASSERT_TRUE((f_rt_on[31 / 64] >> (31 % 64)) & 1);
  CU_ASSERT_TRUE((f_rt_on[311 / 64] >> (311 % 64)) & 1);
  CU_ASSERT_EQUAL(bits_set(f_drv_on, sizeof f_drv_on / 8), 1); /* cuLaunchKernel */
  CU_ASSERT_TRUE((f_drv_on[307 / 64] >> (307 % 64)) & 1);
  char *js = be_json(b.st);
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"api_calls_traced\":4,\"collecting\":true"));
  free(js);
  B.flush(b.st);
  CU_ASSERT_EQUAL(f_enabled, 0);
  CU_ASSERT_EQUAL(bits_set(f_rt_on, sizeof f_rt_on / 8), 0);
  CU_ASSERT_EQUAL(bits_set(f_drv_on, sizeof f_drv_on / 8), 0);
  /* A buffer CUPTI hands back after stop is still taken (nothing is lost),
   * but nothing new is traced until the next start. */
  js = be_json(b.st);
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"collecting\":false"));
  free(js);
  kfm__cupti_set_start(b.st, mono_ns());
  CU_ASSERT_EQUAL(bits_set(f_rt_on, sizeof f_rt_on / 8), 3);
  be_close(&b); /* destroyed without a stop: close stops collecting */
  CU_ASSERT_EQUAL(f_enabled, 0);
  CU_ASSERT_EQUAL(bits_set(f_rt_on, sizeof f_rt_on / 8), 0);

  /* KFM_CUPTI_API=all: the whole RUNTIME and DRIVER kinds instead. */
  setenv("KFM_CUPTI_API", "all", 1);
  be_open(&b);
  CU_ASSERT_EQUAL_FATAL(b.rc, 0);
  kfm__cupti_set_start(b.st, mono_ns());
  CU_ASSERT_TRUE((f_enabled & (1ull << CUPTI_ACTIVITY_KIND_RUNTIME)) != 0);
  CU_ASSERT_TRUE((f_enabled & (1ull << CUPTI_ACTIVITY_KIND_DRIVER)) != 0);
  CU_ASSERT_EQUAL(bits_set(f_rt_on, sizeof f_rt_on / 8), 0);
  be_close(&b);
  CU_ASSERT_EQUAL(f_enabled, 0);
  unsetenv("KFM_CUPTI_API");
}

/* Another CUPTI client holds the subscriber slot: the backend does not
 * take CUPTI's buffer callbacks from it, and says so. */
static void test_second_subscriber(void) {
  fake_reset(0);
  f_subscribe_rc = CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED;
  struct be b;
  be_open(&b);
  CU_ASSERT_EQUAL(b.rc, KFM_EBACKEND);
  CU_ASSERT_PTR_NOT_NULL(strstr(b.err, "another CUPTI client is active in this process "
                                       "(cuptiSubscribe: 39 "));
  CU_ASSERT_PTR_NULL(f_completed); /* callbacks never registered */
  be_close(&b);
  /* The slot is free again for the next session. */
  fake_reset(0);
  be_open(&b);
  CU_ASSERT_EQUAL(b.rc, 0);
  be_close(&b);
  /* The probe does not trial-enable (and then disable) a kind another
   * client has enabled: it stops at the subscriber slot. */
  fake_reset(0);
  f_subscribe_rc = CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED;
  f_enabled = 1ull << CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL; /* the other client's */
  char reason[512];
  CU_ASSERT_EQUAL(B.probe(reason, sizeof reason), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(reason, "another CUPTI client is active in this process"));
  CU_ASSERT_EQUAL(f_enabled, 1ull << CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  CU_ASSERT_EQUAL(f_subscribed, 0);
  /* Without another client the probe gives the slot back. */
  f_subscribe_rc = CUPTI_SUCCESS;
  CU_ASSERT_EQUAL(B.probe(reason, sizeof reason), 1);
  CU_ASSERT_EQUAL(f_subscribed, 0);
  kfm__cupti_set_api(NULL);
}

/* GPU -> monotonic with a realistic CLOCK_REALTIME offset: exact integers.
 * A double holds 1.8e18 only to 256 ns. */
static void test_time_exact_integer(void) {
  const uint64_t mono0 = 123456789012345ull;            /* 1.4 days of uptime */
  const uint64_t gpu0 = 1796001234567890123ull;         /* 2026, ns since 1970 */
  const uint64_t off0 = gpu0 - mono0;
  /* No second pair: a plain offset, exact to the ns. */
  for (uint64_t d = 0; d < 1000; d += 37) {
    CU_ASSERT_EQUAL(kfm__cupti_to_mono(gpu0, mono0, 0, 0, 0, gpu0 + d), (int64_t)(mono0 + d));
  }
  CU_ASSERT_EQUAL(kfm__cupti_to_mono(gpu0, mono0, 0, 0, 0, gpu0 + 1), (int64_t)mono0 + 1);
  /* Second pair 100 s later with the offset grown by 1000 ns (10 ppm slew):
   * half way the offset has grown by 500, a quarter by 250, exactly. */
  const uint64_t mono1 = mono0 + 100000000000ull;
  const uint64_t gpu1 = mono1 + off0 + 1000;
  CU_ASSERT_EQUAL(kfm__cupti_to_mono(gpu0, mono0, gpu1, mono1, 1, gpu0), (int64_t)mono0);
  CU_ASSERT_EQUAL(kfm__cupti_to_mono(gpu0, mono0, gpu1, mono1, 1, gpu1), (int64_t)mono1);
  uint64_t half = gpu0 + (gpu1 - gpu0) / 2;
  CU_ASSERT_EQUAL(kfm__cupti_to_mono(gpu0, mono0, gpu1, mono1, 1, half),
                  (int64_t)(half - off0 - 500));
  uint64_t q = gpu0 + (gpu1 - gpu0) / 4;
  CU_ASSERT_EQUAL(kfm__cupti_to_mono(gpu0, mono0, gpu1, mono1, 1, q), (int64_t)(q - off0 - 250));
  /* A kernel 7 ns long keeps its 7 ns at any point of the run. */
  uint64_t k0 = gpu0 + 33333333333ull;
  CU_ASSERT_EQUAL(kfm__cupti_to_mono(gpu0, mono0, gpu1, mono1, 1, k0 + 7) -
                      kfm__cupti_to_mono(gpu0, mono0, gpu1, mono1, 1, k0),
                  7);
  /* And the double arithmetic this replaced is not exact here. */
  double dd = (double)(int64_t)off0;
  CU_ASSERT_NOT_EQUAL((int64_t)(gpu0 + 1) - (int64_t)dd, (int64_t)mono0 + 1);
}

/* Open fails with the precise reason; the state exports available:false. */
static void test_open_failures(void) {
  fake_reset(0);
  f_fail_kind = CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
  struct be b;
  be_open(&b);
  CU_ASSERT_EQUAL(b.rc, KFM_EBACKEND);
  CU_ASSERT_STRING_EQUAL(b.err,
                         "cuptiActivityEnable(CONCURRENT_KERNEL) failed: 999 CUPTI_ERROR_UNKNOWN");
  char *js = be_json(b.st);
  CU_ASSERT_STRING_EQUAL(js,
                         "{\"available\":false,\"reason\":\"cuptiActivityEnable(CONCURRENT_KERNEL) "
                         "failed: 999 CUPTI_ERROR_UNKNOWN\"}");
  free(js);
  be_close(&b);
  CU_ASSERT_EQUAL(f_enabled, 0);

  /* An optional kind failing is a note, not a failure. */
  fake_reset(0);
  f_fail_kind = CUPTI_ACTIVITY_KIND_DRIVER;
  be_open(&b);
  CU_ASSERT_EQUAL_FATAL(b.rc, 0);
  kfm__cupti_set_start(b.st, mono_ns());
  js = be_json(b.st);
  CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"not_enabled\":{\"driver\":\"999 CUPTI_ERROR_UNKNOWN\"}"));
  free(js);

  /* One activity client per process. */
  struct be b2;
  be_open(&b2);
  CU_ASSERT_EQUAL(b2.rc, KFM_EBACKEND);
  CU_ASSERT_PTR_NOT_NULL(strstr(b2.err, "in use by another kfm session"));
  be_close(&b2);
  be_close(&b);

  /* A zeroed state never opened says so, with no figure. */
  void *z = calloc(1, B.state_size);
  js = be_json(z);
  CU_ASSERT_STRING_EQUAL(
      js, "{\"available\":false,\"reason\":\"unavailable: the backend was not opened\"}");
  free(js);
  free(z);
}

/* ---------------------------------------------------------------------- */
/* Probe paths through an injected loader.                                 */

static int l_fail_cupti, l_fail_cuda;
static const char *l_missing_sym;
static char l_err[128];
static int l_handle;

static void *l_open(const char *file, int flags) {
  (void)flags;
  int is_cuda = strstr(file, "libcuda.so") != NULL;
  if ((is_cuda && l_fail_cuda) || (!is_cuda && l_fail_cupti)) {
    snprintf(l_err, sizeof l_err, "%s: cannot open shared object file: No such file or directory",
             file);
    return NULL;
  }
  return &l_handle;
}
static char *l_error(void) {
  return l_err;
}
static int l_close(void *h) {
  (void)h;
  return 0;
}

/* The fake loader's dlsym hands out the fake table's own pointers, found
 * by field offset, so no function pointer is cast to another type. */
#define FN(name, field)                                                                            \
  { name, offsetof(struct kfm__cupti_api, field) }
static const struct {
  const char *name;
  size_t off;
} l_syms[] = {
    FN("cuptiGetVersion", GetVersion),
    FN("cuptiGetResultString", GetResultString),
    FN("cuptiGetTimestamp", GetTimestamp),
    FN("cuptiActivityEnable", ActivityEnable),
    FN("cuptiActivityDisable", ActivityDisable),
    FN("cuptiActivityRegisterCallbacks", ActivityRegisterCallbacks),
    FN("cuptiActivityGetNextRecord", ActivityGetNextRecord),
    FN("cuptiActivityFlushAll", ActivityFlushAll),
    FN("cuptiActivityPushExternalCorrelationId", ActivityPushExternalCorrelationId),
    FN("cuptiActivityPopExternalCorrelationId", ActivityPopExternalCorrelationId),
    FN("cuptiActivityGetNumDroppedRecords", ActivityGetNumDroppedRecords),
};

static void *l_sym(void *h, const char *name) {
  (void)h;
  if (l_missing_sym && strcmp(name, l_missing_sym) == 0) {
    snprintf(l_err, sizeof l_err, "undefined symbol: %s", name);
    return NULL;
  }
  for (size_t i = 0; i < sizeof l_syms / sizeof l_syms[0]; i++) {
    if (strcmp(l_syms[i].name, name) == 0) {
      void *p;
      memcpy(&p, (const char *)&fake + l_syms[i].off, sizeof p);
      return p;
    }
  }
  return NULL;
}

static int probe_with_loader(char *reason, size_t len) {
  struct kfm__cupti_api api;
  kfm__cupti_api_init(&api);
  api.dl_open = l_open;
  api.dl_sym = l_sym;
  api.dl_error = l_error;
  api.dl_close = l_close;
  return kfm__cupti_probe_api(&api, reason, len);
}

static void test_probe_paths(void) {
  char reason[512], want[512];
  const char *so = kfm__cupti_soname();
  CU_ASSERT_EQUAL(strncmp(so, "libcupti.so.", 12), 0);
  fake_reset(0);

  l_fail_cupti = 1;
  l_fail_cuda = 0;
  l_missing_sym = NULL;
  CU_ASSERT_EQUAL(probe_with_loader(reason, sizeof reason), 0);
  snprintf(want, sizeof want,
           "%s not found (dlopen: %s: cannot open shared object file: No such file or directory)",
           so, so);
  CU_ASSERT_STRING_EQUAL(reason, want);

  l_fail_cupti = 0;
  l_missing_sym = "cuptiActivityFlushAll";
  CU_ASSERT_EQUAL(probe_with_loader(reason, sizeof reason), 0);
  snprintf(want, sizeof want,
           "%s lacks cuptiActivityFlushAll (dlsym: undefined symbol: cuptiActivityFlushAll)", so);
  CU_ASSERT_STRING_EQUAL(reason, want);

  /* Driver missing; CUPTI's enable fails too, and both are said. */
  l_missing_sym = NULL;
  l_fail_cuda = 1;
  f_fail_kind = CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
  CU_ASSERT_EQUAL(probe_with_loader(reason, sizeof reason), 0);
  CU_ASSERT_STRING_EQUAL(reason,
                         "no CUDA driver: libcuda.so.1 not found (dlopen: libcuda.so.1: cannot "
                         "open shared object file: No such file or directory); "
                         "cuptiActivityEnable(CONCURRENT_KERNEL) failed: 999 CUPTI_ERROR_UNKNOWN");

  /* Driver present, enable fails. */
  l_fail_cuda = 0;
  CU_ASSERT_EQUAL(probe_with_loader(reason, sizeof reason), 0);
  CU_ASSERT_STRING_EQUAL(reason,
                         "cuptiActivityEnable(CONCURRENT_KERNEL) failed: 999 CUPTI_ERROR_UNKNOWN");

  /* Everything works: available, and the probe left nothing enabled. */
  f_fail_kind = CUPTI_ACTIVITY_KIND_INVALID;
  f_enabled = 0;
  CU_ASSERT_EQUAL(probe_with_loader(reason, sizeof reason), 1);
  CU_ASSERT_EQUAL(strncmp(reason, "available: ", 11), 0);
  CU_ASSERT_EQUAL(f_enabled, 0);

  /* The backend's own probe uses the injected table the same way. */
  fake_reset(0);
  CU_ASSERT_EQUAL(B.probe(reason, sizeof reason), 1);
  kfm__cupti_set_api(NULL);
}

/* The real library on this machine. */
static void test_probe_here(void) {
  kfm__cupti_set_api(NULL);
  char reason[512];
  int ok = B.probe(reason, sizeof reason);
  printf("\n  cupti probe here: %s: %s\n", ok ? "available" : "unavailable", reason);
  if (ok) {
    CU_ASSERT_EQUAL(strncmp(reason, "available: ", 11), 0);
    return;
  }
  /* A precise reason: the library, the driver, or a CUPTI code and name. */
  int precise = strstr(reason, "not found (dlopen: ") != NULL ||
                strstr(reason, "no CUDA driver: libcuda.so.1 not found") != NULL ||
                (strstr(reason, "failed: ") != NULL && strstr(reason, "CUPTI_ERROR_") != NULL);
  CU_ASSERT_TRUE(precise);
  /* And opening reports the same kind of reason rather than half-working. */
  struct be b;
  be_open(&b);
  CU_ASSERT_EQUAL(b.rc, KFM_EBACKEND);
  CU_ASSERT_TRUE(b.err[0] != '\0');
  char *js = be_json(b.st);
  CU_ASSERT_EQUAL(strncmp(js, "{\"available\":false,\"reason\":\"", 29), 0);
  CU_ASSERT_PTR_NULL(strstr(js, "kernel_ns"));
  free(js);
  be_close(&b);
}

#ifdef KFM_TEST_REGISTERED_CUPTI
/* With the backend registered: a COMPREHENSIVE session on a machine without
 * a GPU still works and says why cupti is off. */
static void test_session_without_gpu(void) {
  char reason[512];
  if (B.probe(reason, sizeof reason)) {
    printf("\n  (GPU present: the no-GPU session path is not exercised)\n");
    return;
  }
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=comprehensive,rate=off"));
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter_name(s, "a"));
  KT_OK(s, kfm_exit_name(s, "a"));
  KT_OK(s, kfm_session_stop(s));
  kfm_report_t *r = NULL;
  KT_OK(s, kfm_session_report(s, &r));
  int seen = 0;
  for (size_t i = 0; i < kfm_report_backend_count(r); i++) {
    kfm_backend_status_t st;
    kfm_report_backend(r, i, &st);
    if (strcmp(st.name, "cupti") == 0) {
      seen = 1;
      CU_ASSERT_EQUAL(st.available, 0);
      CU_ASSERT_EQUAL(st.enabled, 0);
      CU_ASSERT_STRING_EQUAL(st.reason, reason);
    }
  }
  CU_ASSERT_TRUE(seen);
  kfm_report_free(r);
  kfm_session_destroy(s);
}
#endif

int main(void) {
  real_handle = dlopen(kfm__cupti_soname(), RTLD_NOW | RTLD_LOCAL);
  if (real_handle) {
    void *p = dlsym(real_handle, "cuptiActivityGetNextRecord");
    memcpy(&real_next, &p, sizeof p);
  } else {
    printf("libcupti not loadable (%s): records walked by the test's own iterator only\n",
           dlerror());
  }
  static const struct kt_case cases[] = {
      {"buffer pool sized by KFM_CUPTI_BUFFER_MB", test_pool_size_from_env},
      {"records attributed, out of order, across buffers (size walker)", test_attribution_walker},
      {"ids of other tools, runs and past pushed nodes refused", test_foreign_ids_refused},
      {"a restart pops ids left pushed by the previous run", test_restart_pops_leftover_ids},
      {"incomplete records skipped and counted", test_incomplete_records_counted},
      {"unreadable record under libcupti's iterator counted", test_unknown_record_real_iterator},
      {"collection from start to stop, selected API calls", test_collection_start_to_stop},
      {"a second CUPTI client is detected", test_second_subscriber},
      {"GPU time to monotonic: exact integers at a realistic offset", test_time_exact_integer},
      {"records attributed, walked by libcupti's own iterator", test_attribution_real_iterator},
      {"graph launch: one correlation, many kernels", test_graph_launch_shares_correlation},
      {"kernel time per node and device", test_kernel_time_per_device},
      {"the timeline as trace spans, a lane per device", test_trace_spans},
      {"restart forgets the previous run's activity", test_restart_forgets_previous_run},
      {"buffers delivered on another thread during transitions", test_concurrent_delivery},
      {"hooks push node+1 and pop only what they pushed", test_hooks_pair_push_pop},
      {"open failures give the precise reason", test_open_failures},
      {"probe paths: dlopen, dlsym, driver, enable", test_probe_paths},
      {"probe of this machine", test_probe_here},
#ifdef KFM_TEST_REGISTERED_CUPTI
      {"COMPREHENSIVE session without a GPU", test_session_without_gpu},
#endif
      {NULL, NULL},
  };
  int rc = kt_run("cupti", cases);
  if (real_handle) {
    dlclose(real_handle);
  }
  printf("note: no test here needs a GPU; tests/gpu/run (test_gpu_real) is the real-GPU path\n");
  return rc;
}
