/*
 * backend.h - the whole of what a backend sees of the engine: the ops table
 * it fills in, the context open receives, metric definitions with their
 * roles, and three helpers (kfm__json_str, kfm__list_has, KFM__UNMEASURED).
 *
 * This folder (engine/backend/) is the only engine folder on a backend's
 * include path (CMake target kfm_backend_api): the session structures in
 * engine/src/internal.h are not reachable from backends/, and the engine
 * itself does not see backends/, so neither can come to depend on the other
 * except through this file.
 *
 * A backend is one const struct kfm__backend written with designated
 * initializers and listed in the builtin table (engine/src/backends.c).
 * Optional hooks may be NULL; the core checks for NULL and never patches a
 * table.  The core calls hooks only through the static-inline wrappers at
 * the end of this file so the checks (NULL, and the ABI version that
 * introduced the hook) live in one place.
 *
 * Threads: probe/init/open/close run on the thread that creates or destroys
 * a session; thread_open/thread_close on the profiled thread, off the hot
 * path; read, enter and exit on the profiled thread at every transition
 * (hot path: no allocation, no lock, no blocking beyond one syscall); sample
 * on the sampler thread (same rules); bind_thread on the sampler thread.
 */
#ifndef KFM_BACKEND_H
#define KFM_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kfm/kfm.h"

/*
 * ABI versions, as SQLite's iVersion: a table says which version of this
 * struct it was written against, and the core reads a field only when the
 * table's version has it.  A version outside 1..KFM_BACKEND_ABI is refused
 * ("backend abi N not supported").
 *   1  abi .. close: probe, init, open, thread_open/close, read, sample, close
 *   2  + enter, exit, flush, export_json, bind_thread, start, restart
 *   3  + provides, options, cpu_numa; kfm__metric_def.role is read
 *   4  + trace_spans
 */
#define KFM_BACKEND_ABI_1 1
#define KFM_BACKEND_ABI_2 2
#define KFM_BACKEND_ABI_3 3
#define KFM_BACKEND_ABI_4 4
#define KFM_BACKEND_ABI KFM_BACKEND_ABI_4

/** A value a backend could not measure (read failed, unsupported, not yet
 * read).  Stored as is; reports show it as unavailable / null. */
#define KFM__UNMEASURED UINT64_MAX

/** Capability bits. */
enum {
  KFM_CAP_TRANSITION = 1u << 0, /**< reads values at node enter/exit */
  KFM_CAP_SAMPLE = 1u << 1,     /**< reads values from the sampler thread */
  KFM_CAP_CLOCK = 1u << 2,      /**< provides the engine's timestamps */
};

/**
 * What a metric is, independently of which backend measures it.  The engine
 * finds the inputs of RSS tracking, derived metrics and CPU utilisation by
 * role, and backends learn what the others provide by role
 * (kfm__backend_ctx.provided), never by name.
 */
typedef enum kfm__role {
  KFM_ROLE_NONE = 0,     /**< nothing the engine or another backend looks for */
  KFM_ROLE_RSS,          /**< resident set size, bytes (gauge) */
  KFM_ROLE_CPU_USER,     /**< thread user CPU time, ns */
  KFM_ROLE_CPU_SYS,      /**< thread system CPU time, ns */
  KFM_ROLE_CPU_TIME,     /**< thread CPU time, user + system, ns (task-clock) */
  KFM_ROLE_INSTRUCTIONS, /**< instructions retired */
  KFM_ROLE_CYCLES,       /**< core cycles */
  KFM_ROLE_L1_DCM,       /**< L1 data cache misses */
  KFM_ROLE_BR_MSP,       /**< mispredicted branches */
  KFM_ROLE_COUNT
} kfm__role_t;

#define KFM_ROLE_BIT(r) (1u << (unsigned)(r))

/** What the role counts, for messages ("instructions", "cycles", ...). */
const char *kfm__role_name(kfm__role_t role);

/** One value a backend produces.  Values are uint64 in the metric's unit. */
struct kfm__metric_def {
  const char *name; /**< "<backend>.<metric>" */
  const char *unit; /**< "bytes", "ns", "count" */
  kfm_metric_kind_t kind;
  kfm__role_t role; /**< KFM_ROLE_*; read from ABI 3 tables */
};

/**
 * Derived metrics, defined once for the engine's reports, the export and
 * the backends' own export notes: value = scale * num / den, each an
 * inclusive per-node delta found by role.  den == KFM_ROLE_NONE means
 * "over the node's wall time" (num is then CPU_TIME, or CPU_USER + CPU_SYS
 * when no metric has the CPU_TIME role).
 */
struct kfm__derived_def {
  const char *name; /**< kfm_report_derived's key, e.g. "ipc" */
  kfm__role_t num, den;
  double scale;
  const char *needs; /**< why it is unavailable when an input is missing */
};
extern const struct kfm__derived_def kfm__derived_defs[];
extern const size_t kfm__nderived;

/** Option kinds (struct kfm__backend_option). */
enum {
  KFM__OPT_PATH = 0, /**< a string, stored as given (a path) */
  KFM__OPT_LIST = 1, /**< names separated by ',' or '+', stored with ',' */
};

/**
 * A configuration key owned by a backend: written "<backend>.<key>=value"
 * (e.g. papi.events=, proc.root=), or under its older un-namespaced name.
 * The value is kept in the kfm_config_t field at offset (size bytes) and
 * reaches open through kfm__backend_ctx.
 */
struct kfm__backend_option {
  const char *key;    /**< name after "<backend>." */
  const char *legacy; /**< older key still accepted, or NULL */
  int kind;           /**< KFM__OPT_* */
  size_t offset, size;
  const char *item; /**< KFM__OPT_LIST: what one entry is, for messages ("event") */
};

/** Passed to open: inputs first, then what open fills in. */
struct kfm__backend_ctx {
  kfm_level_t level;     /**< the session's level */
  const char *proc_root; /**< proc.root: prefix for /proc paths, "" for the real one */
  const char *events;    /**< papi.events: counter events asked for (comma list), "" for defaults */
  double rate_hz;        /**< the session's sampler rate, 0 without a sampler */
  /** KFM_ROLE_BIT()s the other backends this session opens say they
   * provide (their `provides`), e.g. whether counters give thread CPU time. */
  unsigned provided;
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

/** A span a backend adds to the Chrome trace (trace_spans): activity of
 * its own, such as a GPU kernel, on a lane of its own. */
struct kfm__trace_span {
  const char *lane;     /**< the lane's name ("GPU 0 (CUPTI)"); overlapping spans of
                             one lane are drawn on "<lane> #2", ... */
  const char *name;     /**< what ran (a kernel's name) */
  const char *kind;     /**< "kernel", "memcpy_h2d", ... */
  int64_t t0_ns, t1_ns; /**< ns since the session's start */
  uint32_t node;        /**< the node it belongs to; KFM_NODE_ROOT: none */
  uint64_t bytes;       /**< bytes moved, 0 when not applicable */
};

struct kfm__backend {
  int abi;                /**< KFM_BACKEND_ABI the table was written against */
  const char *name;       /**< short lower-case name used in config */
  unsigned caps;          /**< KFM_CAP_* */
  kfm_level_t min_level;  /**< lowest level that enables it by default */
  size_t state_size;      /**< per-session private state, zeroed by the core */
  size_t thread_state_size; /**< per-thread private state, zeroed by the core */

  /** Process-wide availability: 1 available, 0 not with reason written.  May be NULL (always available). */
  int (*probe)(char *reason, size_t len);
  /** Process-wide set-up, called once after a successful probe, before the
   * first open; non-zero makes the backend unavailable.  May be NULL.
   * There is no matching tear-down: what it sets up lives as long as the
   * process (libraries whose threads may still call back cannot be unloaded). */
  int (*init)(void);
  /** Per-session set-up: choose metrics for ctx->level, open kept fds.  Required. */
  int (*open)(void *state, struct kfm__backend_ctx *ctx);
  /** On a profiled thread before its first read.  May be NULL. */
  int (*thread_open)(void *state, void *tstate);
  /** On a profiled thread at its exit, or at session destroy.  May be NULL. */
  void (*thread_close)(void *state, void *tstate);
  /** Hot path: write n_transition values to out.  May be NULL when n_transition is 0. */
  void (*read)(void *state, void *tstate, uint64_t *out);
  /** Sampler thread: write n_sample values to out (KFM__UNMEASURED for a
   * value not measured at this tick).  May be NULL when n_sample is 0. */
  void (*sample)(void *state, uint64_t *out);
  /** Per-session tear-down.  May be NULL. */
  void (*close)(void *state);

  /* ABI 2: hooks for counter, topology and GPU backends.  All may be NULL. */

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

  /* ABI 3. */

  /** KFM_ROLE_BIT()s of the values open may provide; told to the other
   * backends of a session (kfm__backend_ctx.provided) before any opens. */
  unsigned provides;
  /** Configuration keys the backend owns, ended by an entry with key NULL.  May be NULL. */
  const struct kfm__backend_option *options;
  /** The NUMA node (topology logical index) of the CPU whose operating-system
   * index is cpu, or -1 when unknown.  Used by the export to fold per-CPU
   * histograms onto NUMA nodes.  No allocation, no lock.  May be NULL. */
  int (*cpu_numa)(void *state, unsigned cpu);

  /* ABI 4. */

  /** kfm_session_export_trace, after stop: hand each span of the backend's
   * own activity to add(ctx, span), which copies what it keeps.  Runs on
   * the exporting thread.  May be NULL. */
  void (*trace_spans)(void *state, void (*add)(void *ctx, const struct kfm__trace_span *sp),
                      void *ctx);
};

/* ---- Helpers the engine gives every backend ------------------------------ */

/** Writes s as a quoted JSON string: " and \\ escaped, \n and \t as such,
 * other control characters as \u00XX, valid UTF-8 as it is; a byte that is
 * not part of valid UTF-8 is written as U+FFFD.  For export_json hooks. */
void kfm__json_str(FILE *f, const char *s);

/** 1 if name is one of the entries of "a,b,c" (exact, case-sensitive). */
int kfm__list_has(const char *comma_list, const char *name);

/* ---- How the core calls hooks ---------------------------------------------- */

/** Whether table b, of its ABI version, has the hook field at all. */
#define KFM__BACKEND_HAS(b, version, hook) ((b)->abi >= (version) && (b)->hook != NULL)

/** The role of metric d of backend b (NONE for tables older than ABI 3). */
static inline kfm__role_t kfm__backend_role(const struct kfm__backend *b,
                                            const struct kfm__metric_def *d) {
  return b->abi >= KFM_BACKEND_ABI_3 ? d->role : KFM_ROLE_NONE;
}

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

static inline void kfm__backend_flush(const struct kfm__backend *b, void *st) {
  if (KFM__BACKEND_HAS(b, KFM_BACKEND_ABI_2, flush)) {
    b->flush(st);
  }
}

static inline void kfm__backend_start(const struct kfm__backend *b, void *st, uint64_t mono_ns) {
  if (KFM__BACKEND_HAS(b, KFM_BACKEND_ABI_2, start)) {
    b->start(st, mono_ns);
  }
}

static inline void kfm__backend_restart(const struct kfm__backend *b, void *st) {
  if (KFM__BACKEND_HAS(b, KFM_BACKEND_ABI_2, restart)) {
    b->restart(st);
  }
}

/** 1 when the backend wrote a JSON value to f, 0 when it has no export_json. */
static inline int kfm__backend_export_json(const struct kfm__backend *b, void *st, FILE *f) {
  if (!KFM__BACKEND_HAS(b, KFM_BACKEND_ABI_2, export_json)) {
    return 0;
  }
  b->export_json(st, f);
  return 1;
}

static inline unsigned kfm__backend_provides(const struct kfm__backend *b) {
  return b->abi >= KFM_BACKEND_ABI_3 ? b->provides : 0;
}

static inline const struct kfm__backend_option *kfm__backend_options(const struct kfm__backend *b) {
  return b->abi >= KFM_BACKEND_ABI_3 ? b->options : NULL;
}

#endif /* KFM_BACKEND_H */
