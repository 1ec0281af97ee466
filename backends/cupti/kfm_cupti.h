/*
 * kfm_cupti.h - internal interface of the CUPTI activity backend.
 *
 * Declares the backend's ops table, the symbol table through which every
 * CUPTI call goes (filled by dlopen/dlsym at probe, or injected by a test),
 * and the record-processing entry points the unit tests drive with real
 * CUpti_Activity* structures.  Only cupti.c and its unit tests include
 * this file; it is deliberately not named cupti.h, which is
 * NVIDIA's header and is included from here.
 *
 * Library version.  The record structures are those of the CUDA headers the
 * build found (CUDA 13: CUpti_ActivityKernel10, CUpti_ActivityMemcpy6,
 * CUpti_ActivityMemset4, CUpti_ActivitySynchronization2, CUpti_ActivityAPI,
 * CUpti_ActivityExternalCorrelation), so the backend loads the libcupti of
 * the same major version ("libcupti.so.<CUDA_VERSION / 1000>") and refuses a
 * library whose cuptiGetVersion major differs.  Only fields whose offsets
 * are the same in every record version of that kind are read (kind,
 * start, end, correlationId, bytes, copyKind, grid, block, name).
 */
#ifndef KFM_CUPTI_INTERNAL_H
#define KFM_CUPTI_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cupti.h>

#include "backend.h"

/** The "cupti" backend: GPU kernels, copies, sets and syncs per node. */
extern const struct kfm__backend kfm__backend_cupti;

/**
 * Every CUPTI entry point the backend uses, plus the loader that fills them.
 *
 * The process uses one table at a time (kfm__cupti_set_api).  The real one
 * has dl_open = dlopen etc. and its CUPTI pointers filled by
 * kfm__cupti_load; a test either replaces the loader (to make dlopen fail)
 * or leaves dl_open NULL and sets the CUPTI pointers to fakes directly.
 */
struct kfm__cupti_api {
  /* Loader.  dl_open NULL: the CUPTI pointers below are already set. */
  void *(*dl_open)(const char *file, int flags);
  void *(*dl_sym)(void *handle, const char *name);
  char *(*dl_error)(void);
  int (*dl_close)(void *handle);
  void *handle;     /**< libcupti handle when loaded through dl_open */
  char lib[64];     /**< file name loaded, for messages */
  int loaded;       /**< 1 once every required pointer is set */
  uint32_t version; /**< cuptiGetVersion, filled by kfm__cupti_probe_api */
  int usable;       /**< the last kfm__cupti_probe_api on this table succeeded */

  CUptiResult (*GetVersion)(uint32_t *version);
  CUptiResult (*GetResultString)(CUptiResult result, const char **str);
  CUptiResult (*GetTimestamp)(uint64_t *timestamp);
  CUptiResult (*ActivityEnable)(CUpti_ActivityKind kind);
  CUptiResult (*ActivityDisable)(CUpti_ActivityKind kind);
  CUptiResult (*ActivityRegisterCallbacks)(CUpti_BuffersCallbackRequestFunc requested,
                                           CUpti_BuffersCallbackCompleteFunc completed);
  CUptiResult (*ActivityGetNextRecord)(uint8_t *buffer, size_t valid, CUpti_Activity **record);
  CUptiResult (*ActivityFlushAll)(uint32_t flag);
  CUptiResult (*ActivityPushExternalCorrelationId)(CUpti_ExternalCorrelationKind kind, uint64_t id);
  CUptiResult (*ActivityPopExternalCorrelationId)(CUpti_ExternalCorrelationKind kind,
                                                  uint64_t *last);
  /** Optional (may stay NULL): records CUPTI dropped for want of a buffer. */
  CUptiResult (*ActivityGetNumDroppedRecords)(CUcontext ctx, uint32_t stream, size_t *dropped);
  /** Optional: claim / release CUPTI's single subscriber slot, which tells
   * whether another CUPTI client (PyTorch's profiler, Nsight) is present. */
  CUptiResult (*Subscribe)(CUpti_SubscriberHandle *sub, CUpti_CallbackFunc cb, void *user);
  CUptiResult (*Unsubscribe)(CUpti_SubscriberHandle sub);
  /** Optional: trace only the API calls attribution needs.  Without all
   * three, the whole RUNTIME and DRIVER kinds are enabled instead. */
  CUptiResult (*GetCallbackName)(CUpti_CallbackDomain domain, uint32_t cbid, const char **name);
  CUptiResult (*ActivityEnableRuntimeApi)(CUpti_CallbackId cbid, uint8_t enable);
  CUptiResult (*ActivityEnableDriverApi)(CUpti_CallbackId cbid, uint8_t enable);
  /** Optional: CUPTI hands back partly filled buffers every period (ms). */
  CUptiResult (*ActivityFlushPeriod)(uint32_t ms);
};

/**
 * External correlation ids the backend pushes (kind
 * CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM2: PyTorch's Kineto uses CUSTOM0 and
 * CUSTOM1).  An id is KFM__CUPTI_TAG in bits 63..48, the session generation
 * (16 bits, never 0) in 47..32 and node id + 1 in 31..0, so an id of another
 * tool, of an earlier session or run, or past the nodes pushed is recognised
 * and refused instead of being read as a node.
 */
#define KFM__CUPTI_EXT_KIND CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM2
#define KFM__CUPTI_TAG 0x6B66u /* "kf" */
#define KFM__CUPTI_ID(gen, node)                                                                   \
  (((uint64_t)KFM__CUPTI_TAG << 48) | ((uint64_t)((gen) & 0xFFFFu) << 32) |                       \
   (uint64_t)((uint32_t)(node) + 1u))

/** Size of a record of kind k in the headers' layout (the latest version
 * of each kind the backend reads), 0 for a kind it does not know. */
size_t kfm__cupti_record_size(CUpti_ActivityKind k);

/** The generation of the state's current run (0 before the first start). */
uint32_t kfm__cupti_generation(void *state);

/**
 * GPU timestamp g (CUPTI's CLOCK_REALTIME-based ns) on CLOCK_MONOTONIC, from
 * the pair (gpu0, mono0) and, when have1, the later pair (gpu1, mono1) whose
 * offset is interpolated linearly (clocks slewed by NTP drift apart).  Pure
 * integer arithmetic: the offsets are ~1.8e18 ns, which a double holds only
 * to 256 ns.
 */
int64_t kfm__cupti_to_mono(uint64_t gpu0, uint64_t mono0, uint64_t gpu1, uint64_t mono1,
                           int have1, uint64_t g);

/** The activity buffer pool's size in bytes, fixed at the first open from
 * KFM_CUPTI_BUFFER_MB (1..4096, default 32). */
size_t kfm__cupti_pool_bytes(void);

/** The libcupti file name matching the headers, e.g. "libcupti.so.13". */
const char *kfm__cupti_soname(void);

/** A table whose loader is dlopen/dlsym/dlerror/dlclose and nothing loaded. */
void kfm__cupti_api_init(struct kfm__cupti_api *api);

/**
 * Load libcupti through api's loader and fill every pointer.  0, or
 * KFM_EBACKEND with reason "libcupti.so.13 not found (dlopen: <dlerror>)"
 * or "libcupti.so.13 lacks <symbol> (dlsym: ...)".  Nothing to do when
 * api->loaded or api->dl_open is NULL (pointers preset).
 */
int kfm__cupti_load(struct kfm__cupti_api *api, char *reason, size_t len);

/**
 * The backend's probe on a given table: load, cuptiGetVersion (major must
 * match the headers), look for the driver (dl_open "libcuda.so.1") and try
 * cuptiActivityEnable(CONCURRENT_KERNEL), disabling it again at once.
 * Returns 1 (available; reason says what was found) or 0 with reason one
 * of: "libcupti.so.13 not found (dlopen: ...)", "no CUDA driver:
 * libcuda.so.1 not found (...)" (followed by the enable result when it
 * failed too), "cuptiActivityEnable(CONCURRENT_KERNEL) failed: 999
 * CUPTI_ERROR_UNKNOWN".
 */
int kfm__cupti_probe_api(struct kfm__cupti_api *api, char *reason, size_t len);

/**
 * Make api the table every later probe/open/hook uses (NULL: the real,
 * dlopen'ed one).  Call only while no session has the backend open.
 */
void kfm__cupti_set_api(struct kfm__cupti_api *api);

/**
 * Record processing, as the buffer-completed callback does it: walk buf
 * with the table's cuptiActivityGetNextRecord, take every record under the
 * backend's private lock, then retry the pending records.  state is an
 * opened backend state.
 */
void kfm__cupti_process_buffer(void *state, uint8_t *buf, size_t valid);

/**
 * End of collection (the flush hook does it after cuptiActivityFlushAll):
 * retry the pending records once more and count the rest as unattributed.
 */
void kfm__cupti_finish(void *state);

/**
 * Tell the backend the session's start instant (CLOCK_MONOTONIC ns, the
 * engine's ns_start) so timeline times are exported relative to it; without
 * it they are relative to the backend's open.  Not on any hot path.
 */
void kfm__cupti_set_start(void *state, uint64_t mono_ns);

/** Per-node totals, for tests (exactly what export_json prints). */
struct kfm__cupti_totals {
  uint64_t kernel_ns; /**< sum of end - start of timed kernels */
  uint64_t launches;  /**< kernel records, timed or not */
  uint64_t untimed;   /**< kernel/copy/set records with both timestamps 0 */
  uint64_t memcpy_ns;
  uint64_t memcpy_count;
  uint64_t bytes_h2d;
  uint64_t bytes_d2h;
  uint64_t bytes_other; /**< device-to-device, peer, host-to-host, arrays */
  uint64_t memset_bytes;
  uint64_t memset_count;
  uint64_t sync_ns;
  uint64_t sync_count;
};

/**
 * Totals of one node (node = UINT32_MAX: the unattributed bucket).
 * Returns 1 if the node has any GPU record, 0 (and zeros) otherwise.
 */
int kfm__cupti_node_totals(void *state, uint32_t node, struct kfm__cupti_totals *out);

/** Counters of the record stream, for tests and the export. */
struct kfm__cupti_counts {
  uint64_t records[8];   /**< kernel, memcpy, memset, sync, runtime, driver, extcorr, other */
  uint64_t unattributed; /**< activity records no node was found for (final) */
  uint64_t pending;      /**< records still waiting for their correlation */
  uint64_t pending_evicted;
  uint64_t map_evicted;
  uint64_t timeline_dropped;
  uint64_t kernel_table_dropped;
  uint64_t buffers;       /**< completed buffers processed */
  uint64_t cupti_dropped; /**< records CUPTI dropped (cuptiActivityGetNumDroppedRecords) */
  /* External correlation records refused (their activity stays unattributed). */
  uint64_t ext_other_kind; /**< another tool's kind (e.g. Kineto's CUSTOM0): ignored */
  uint64_t ext_foreign;    /**< our kind, but not an id kfm made */
  uint64_t ext_stale;      /**< an id of another session or run (generation) */
  uint64_t ext_range;      /**< node past those this session pushed */
  /* Loss inside delivered buffers. */
  uint64_t incomplete;     /**< records cuptiActivityGetNextRecord refused (incomplete) */
  uint64_t unparsed_bytes; /**< bytes after an unreadable record, lost with it */
  uint64_t stale_popped;   /**< ids left pushed by an earlier run, popped at a thread's next hook */
};
void kfm__cupti_counts(void *state, struct kfm__cupti_counts *out);
/* The backend's restart hook, exposed for the tests. */
void kfm__cupti_restart(void *state);

#endif /* KFM_CUPTI_INTERNAL_H */
