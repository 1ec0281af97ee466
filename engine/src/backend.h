/*
 * backend.h - the interface between the engine core and its backends.
 *
 * A backend is one const struct kfm__backend written with designated
 * initializers and listed in the builtin table (backends.c).  Optional hooks
 * may be NULL; the core checks for NULL and never patches a table.  The core
 * calls hooks only through the static-inline wrappers at the end of this
 * file so the checks live in one place.
 *
 * Threads: probe/init/fini/open/close run on the thread that creates or
 * destroys a session; thread_open/thread_close on the profiled thread, off
 * the hot path; read on the profiled thread at every transition (hot path:
 * no allocation, no lock, no blocking beyond one syscall); sample on the
 * sampler thread (same rules).
 */
#ifndef KFM_BACKEND_H
#define KFM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kfm/kfm.h"

#define KFM_BACKEND_ABI 1

/** Capability bits. */
enum {
  KFM_CAP_TRANSITION = 1u << 0, /**< reads values at node enter/exit */
  KFM_CAP_SAMPLE = 1u << 1,     /**< reads values from the sampler thread */
  KFM_CAP_CLOCK = 1u << 2,      /**< provides the engine's timestamps */
};

/** One value a backend produces.  Values are uint64 in the metric's unit. */
struct kfm__metric_def {
  const char *name; /**< "<backend>.<metric>", e.g. "proc.rss" */
  const char *unit; /**< "bytes", "ns", "count" */
  kfm_metric_kind_t kind;
};

/** Passed to open: inputs first, then what open fills in. */
struct kfm__backend_ctx {
  kfm_level_t level;     /**< the session's level */
  const char *proc_root; /**< prefix for /proc paths, "" for the real one */
  const char *events;    /**< counter events the user asked for (comma list), "" for defaults */
  double rate_hz;        /**< the session's sampler rate, 0 without a sampler */
  const char *selected;  /**< comma list of the backends this session opens */
  int proc_reads;        /**< KFM_PROC_READS_* from the config */
  char *errbuf;          /**< open writes why it failed here */
  size_t errlen;
  char *note;            /**< open may write one line shown as the backend's status */
  size_t notelen;        /**< (e.g. which event set was chosen and why) */
  /* Filled by open.  Arrays and their strings must stay valid until close
   * (static const, or kept in the backend's session state). */
  unsigned n_transition; /**< values read writes at each transition */
  const struct kfm__metric_def *transition;
  unsigned n_sample; /**< values sample writes at each sampler tick */
  const struct kfm__metric_def *sample;
};

struct kfm__backend {
  int abi;                /**< KFM_BACKEND_ABI */
  const char *name;       /**< short lower-case name used in config */
  unsigned caps;          /**< KFM_CAP_* */
  kfm_level_t min_level;  /**< lowest level that enables it by default */
  size_t state_size;      /**< per-session private state, zeroed by the core */
  size_t thread_state_size; /**< per-thread private state, zeroed by the core */

  /** Process-wide availability: 1 available, 0 not with reason written.  May be NULL (always available). */
  int (*probe)(char *reason, size_t len);
  /** Process-wide set-up, called once before the first open.  May be NULL. */
  int (*init)(void);
  /** Process-wide tear-down at library unload.  May be NULL. */
  void (*fini)(void);
  /** Per-session set-up: choose metrics for ctx->level, open kept fds.  Required. */
  int (*open)(void *state, struct kfm__backend_ctx *ctx);
  /** On a profiled thread before its first read.  May be NULL. */
  int (*thread_open)(void *state, void *tstate);
  /** On a profiled thread at its exit, or at session destroy.  May be NULL. */
  void (*thread_close)(void *state, void *tstate);
  /** Hot path: write n_transition values to out.  May be NULL when n_transition is 0. */
  void (*read)(void *state, void *tstate, uint64_t *out);
  /** Sampler thread: write n_sample values to out.  May be NULL when n_sample is 0. */
  void (*sample)(void *state, uint64_t *out);
  /** Per-session tear-down.  May be NULL. */
  void (*close)(void *state);

  /* Hooks added in ABI 1 for counter, topology and GPU backends.  All may be NULL. */

  /** Hot path, after read at enter / before read at exit, with the node id
   * (e.g. CUPTI pushes / pops an external correlation id).  No allocation, no lock. */
  void (*enter)(void *state, void *tstate, uint32_t node);
  void (*exit)(void *state, void *tstate, uint32_t node);
  /** At stop, before the export: deliver buffered data (e.g. CUPTI activity flush). */
  void (*flush)(void *state);
  /** Write one JSON value (object) describing what the backend found and
   * measured beyond its metrics (topology, chosen events, per-kernel tables
   * keyed by node id).  file is a FILE*.  Called by export and report. */
  void (*export_json)(void *state, void *file);
  /** Bind the calling thread to logical CPU cpu (the sampler uses it).  0 or KFM_E*. */
  int (*bind_thread)(void *state, int cpu);
  /** At session start, with the CLOCK_MONOTONIC ns that report times count from. */
  void (*start)(void *state, uint64_t mono_ns);
  /** At kfm_session_restart, before start: forget what was accumulated for
   * the previous run (per-node tables, timelines, failure counts). */
  void (*restart)(void *state);
};

/** NULL-terminated builtin list (backends.c). */
extern const struct kfm__backend *const kfm__builtin_backends[];

static inline int kfm__backend_probe(const struct kfm__backend *b, char *reason, size_t len) {
  if (b->probe == NULL) {
    if (len) {
      reason[0] = '\0';
    }
    return 1;
  }
  return b->probe(reason, len);
}

static inline int kfm__backend_thread_open(const struct kfm__backend *b, void *st, void *ts) {
  return b->thread_open ? b->thread_open(st, ts) : 0;
}

static inline void kfm__backend_thread_close(const struct kfm__backend *b, void *st, void *ts) {
  if (b->thread_close) {
    b->thread_close(st, ts);
  }
}

static inline void kfm__backend_close(const struct kfm__backend *b, void *st) {
  if (b->close) {
    b->close(st);
  }
}

#endif /* KFM_BACKEND_H */
