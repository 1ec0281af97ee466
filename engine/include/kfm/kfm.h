/*
 * kfm.h - the one public header of the kfm sampling engine.
 *
 * kfm attributes time, memory, CPU, I/O, network (and, through later backends,
 * hardware-counter and GPU) metrics to the nodes of an application graph.
 * Everything is reached through an opaque session handle; node transitions
 * work by interned node id so the hot path never hashes a string.
 *
 * Conventions: functions return 0 on success or a negative KFM_E* code; the
 * per-session detail message (kfm_errmsg) names the bad value.  Strings and
 * views returned by the library are owned by it and stay valid as documented
 * on each call.
 */
#ifndef KFM_KFM_H
#define KFM_KFM_H

#include <stddef.h>
#include <stdint.h>

#include "kfm/version.h"

#if defined(_WIN32)
#define KFM_EXPORT __declspec(dllexport)
#elif defined(__GNUC__)
#define KFM_EXPORT __attribute__((visibility("default")))
#else
#define KFM_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Error codes.  One table generates the enum, kfm_strerror and kfm_err_name. */
#define KFM_ERRNO_MAP(XX)                                                        \
  XX(EINVAL, 1, "invalid argument")                                            \
  XX(ENOMEM, 2, "out of memory")                                               \
  XX(ECONFIG, 3, "malformed configuration")                                    \
  XX(EBADKEY, 4, "unknown configuration key")                                  \
  XX(EBADVALUE, 5, "bad configuration value")                                  \
  XX(ENONODE, 6, "unknown node id")                                            \
  XX(ENAME, 7, "empty or over-long node name")                                 \
  XX(ENOTENTERED, 8, "exit without a matching enter")                          \
  XX(EORDER, 9, "exit out of order")                                           \
  XX(ESTATE, 10, "operation not valid in the session's state")                 \
  XX(EDEPTH, 11, "node stack too deep")                                        \
  XX(EFULL, 12, "capacity exhausted")                                          \
  XX(EBACKEND, 13, "backend unavailable")                                      \
  XX(EIO, 14, "input/output error")                                            \
  XX(ETHREAD, 15, "thread creation failed")                                    \
  XX(ERANGE, 16, "index out of range")                                         \
  XX(EBUSY, 17, "session in use by another thread")

typedef enum kfm_errno {
  KFM_OK = 0,
#define KFM__ERR_ENUM(name, num, msg) KFM_##name = -(num),
  KFM_ERRNO_MAP(KFM__ERR_ENUM)
#undef KFM__ERR_ENUM
} kfm_errno_t;

/** Human-readable text for an error code; never NULL. */
KFM_EXPORT const char *kfm_strerror(int err);
/** Symbolic name ("KFM_EINVAL") for an error code; never NULL. */
KFM_EXPORT const char *kfm_err_name(int err);

/** Profiling levels.  Each level includes everything below it. */
typedef enum kfm_level {
  KFM_LEVEL_BASIC = 0,         /**< time only */
  KFM_LEVEL_STANDARD = 1,      /**< + RSS at enter/exit, sampled peak */
  KFM_LEVEL_DETAILED = 2,      /**< + CPU, faults, switches, I/O, network, trace */
  KFM_LEVEL_COMPREHENSIVE = 3, /**< + hardware counters, GPU, topology */
} kfm_level_t;

/** Lower-case level name ("basic", ...), or NULL for an invalid level. */
KFM_EXPORT const char *kfm_level_name(int level);

typedef struct kfm_session kfm_session_t;
typedef struct kfm_report kfm_report_t;
typedef uint32_t kfm_node_id_t;

/** Longest node name accepted, in bytes, excluding the terminating NUL.
 * Longer names are refused with KFM_ENAME (the message gives the length and
 * this limit), never cut: every accepted name is its own node. */
#define KFM_NAME_MAX 255
/** The node that names registered past max_nodes share (see kfm_node_register). */
#define KFM_NODE_OTHER "(other)"
/** Deepest per-thread node nesting accepted. */
#define KFM_STACK_MAX 128

#define KFM_CONFIG_ABI 1
#define KFM_SAMPLER_CPU_NONE (-1)
#define KFM_SAMPLER_CPU_AUTO (-2)
/** AUTO: from the sampler's latest values at COMPREHENSIVE (a transition then
 * costs about one counter read), read at each transition below it.  EXACT:
 * always read at the transition (~1 us RSS, ~8 us with I/O and network).
 * SAMPLED: always from the sampler (needs a sampler; at most one period old). */
#define KFM_PROC_READS_AUTO 0
#define KFM_PROC_READS_EXACT 1
#define KFM_PROC_READS_SAMPLED 2
/** What output= receives at stop (kfm_config_t.output_format): the JSON
 * export (kfm_session_export), the Chrome trace (kfm_session_export_trace),
 * or both, the trace then going to output with its extension replaced by
 * ".trace.json" (".trace.json" appended when it has none). */
#define KFM_OUTPUT_JSON 0
#define KFM_OUTPUT_TRACE 1
#define KFM_OUTPUT_BOTH 2

/**
 * Session configuration.  Initialise with kfm_config_init(), then set fields
 * or apply a string with kfm_config_parse().  Zero means "the level's default"
 * for every numeric field.  String fields are copied by kfm_session_create.
 */
typedef struct kfm_config {
  int abi;             /**< KFM_CONFIG_ABI */
  kfm_level_t level;   /**< default KFM_LEVEL_BASIC */
  double rate_hz;      /**< sampler rate, 1 to 100000 Hz; 0 level default; -1 no sampler */
  char backends[256];  /**< comma list; empty = every backend the level uses */
  char output[1024];   /**< export written at stop (see output_format); empty = none; patterns
                          %r %p %h %j filled in at session creation (kfm_output_expand) */
  char proc_root[512]; /**< prefix for /proc reads (tests); empty = "" */
  int trace;           /**< -1 level default, 0 off, 1 on */
  uint32_t max_nodes;  /**< node registry capacity (default 4096) */
  uint32_t max_threads; /**< thread slots (default 256) */
  uint32_t samples;    /**< sample storage capacity (default 65536) */
  uint32_t trace_ring; /**< per-thread trace ring, events (default 16384) */
  uint32_t trace_events; /**< session trace storage, events (default 262144) */
  int sampler_cpu;     /**< CPU the sampler is pinned to; KFM_SAMPLER_CPU_AUTO (default):
                          the one least used by profiled threads, re-chosen every ~0.5 s;
                          KFM_SAMPLER_CPU_NONE: not pinned */
  char events[512];    /**< hardware/software counter events, comma list; empty = level default */
  int proc_reads;      /**< KFM_PROC_READS_*: how process-wide values (RSS, I/O, network) are
                          read at transitions */
  int flush_signals;   /**< 1: on SIGTERM/SIGINT/SIGHUP/SIGQUIT with their default action,
                          write output (marked truncated) before the process ends */
  /** What output= receives: KFM_OUTPUT_JSON (default), KFM_OUTPUT_TRACE or KFM_OUTPUT_BOTH */
  int output_format;
  /** Spans and counter values a Chrome trace holds at most (default 1000000) */
  uint32_t trace_max_events;
} kfm_config_t;

/** Set cfg to the defaults.  0, or KFM_EINVAL when cfg is NULL. */
KFM_EXPORT int kfm_config_init(kfm_config_t *cfg);

/**
 * Apply "key=value,key=value" to cfg.  Keys: level (basic|standard|detailed|
 * comprehensive), rate (whole Hz from 1 to 100000, 0 = level default, off =
 * no sampler), backends (names separated by ',' or '+'; a bare word after
 * backends= that is a backend name continues the list; empty = what the level
 * uses), events (counter names separated by ',' or '+'; bare words after
 * events= continue it; empty = the level's default set), output (with the
 * patterns of kfm_output_expand; an unknown one is KFM_EBADVALUE), proc_root,
 * trace (on|off|auto), max_nodes (1..1048576), max_threads (1..65535),
 * samples (1..67108864), trace_ring (16..16777216), trace_events
 * (1..268435456), sampler_cpu (0..4095|auto|none), proc_reads
 * (auto|exact|sampled), flush_signals (on|off), output_format
 * (json|trace|both), trace_max_events (1..1073741824).  Numbers are
 * decimal digits only: no sign, space, fraction, exponent or 0x prefix.
 * Spaces around keys and unquoted values are ignored.  A value in double
 * quotes may hold ',' and '=' (e.g. output="/scratch/a,b.json"); inside
 * them \" is '"' and \\ is '\', and no other escape exists.
 * cfg must have been set by kfm_config_init; str NULL changes nothing; errbuf
 * may be NULL.  On error cfg is unchanged and the call returns KFM_EINVAL
 * (cfg NULL or not initialised), KFM_EBADKEY, KFM_EBADVALUE or KFM_ECONFIG
 * (malformed item, unterminated quote: the message gives its byte position,
 * counted from 0), writing a message that names the key, the value and the
 * accepted values into errbuf.
 */
KFM_EXPORT int kfm_config_parse(kfm_config_t *cfg, const char *str, char *errbuf,
                                size_t errlen);

/**
 * Create a session.  cfg may be NULL (defaults).  The environment variable
 * KFM_CONFIG, when set, is parsed on top of cfg so that a batch job changes
 * profiling without recompiling.  On failure *out is NULL and kfm_errmsg(NULL)
 * returns the detail message on the calling thread.
 */
KFM_EXPORT int kfm_session_create(kfm_session_t **out, const kfm_config_t *cfg);
/** Same as kfm_session_create with a config string (may be NULL). */
KFM_EXPORT int kfm_session_create_str(kfm_session_t **out, const char *config);
/** Start sampling and accept transitions.  KFM_ESTATE if already started. */
KFM_EXPORT int kfm_session_start(kfm_session_t *s);
/**
 * Stop: transitions are refused from now on, traces are drained and the
 * configured export is written.  The sampler thread parks (it is kept for
 * kfm_session_restart and ended by destroy); reading results waits for
 * its last tick, so a stopped session's results are exact.  KFM_ESTATE if
 * not running.
 */
KFM_EXPORT int kfm_session_stop(kfm_session_t *s);
/**
 * Start a stopped session again with its results cleared: a new run that
 * keeps what is costly to set up (node registrations, backends, each live
 * thread's slot and counters), so a run on threads that profiled the
 * previous one pays no per-thread set-up.  Aggregates, edges, samples,
 * trace events and backend results of the previous run are gone; read or
 * export them before.  Activations still open are discarded (their exits
 * then fail with KFM_ENOTENTERED).  KFM_ESTATE unless stopped.  As for
 * destroy, no other thread may be inside a kfm call on s meanwhile.
 */
KFM_EXPORT int kfm_session_restart(kfm_session_t *s);
/**
 * Stop if running and free everything.  NULL is accepted.  No other thread
 * may be inside a kfm call on s meanwhile; threads that used s and are still
 * alive simply forget it (their next transition in another session is not
 * affected).
 */
KFM_EXPORT void kfm_session_destroy(kfm_session_t *s);
/**
 * Detail of the last error on s (naming the bad value), or, with s NULL, of
 * the last failed kfm_session_create on this thread.  Valid until the next
 * failing call on the same session / thread.  "" when there is none.
 */
KFM_EXPORT const char *kfm_errmsg(const kfm_session_t *s);
KFM_EXPORT kfm_level_t kfm_session_level(const kfm_session_t *s);
/**
 * kfm_session_start, _stop and _restart on a session inherited through
 * fork() succeed and do nothing, as do kfm_enter and kfm_exit: the child's
 * copy is inert and writes no file (the output is the parent's).  Create a
 * new session in the child to profile it.  kfm_session_restart returns
 * KFM_EBUSY, and the session stays stopped, while another thread is still
 * inside kfm_enter/kfm_exit on it.
 */

/**
 * The process's default session: the one `kfm run` starts (through its
 * preload library) for an unmodified program, so that a program or library
 * that also uses this API (kfm_enter_name(kfm_session_default(), ...)) and
 * the MPI wrappers (libkfm_mpi) add their nodes to the same session.  NULL
 * when none was set.  kfm_session_set_default(s) makes s the default (NULL
 * clears it); destroying the default session clears it too.
 */
KFM_EXPORT kfm_session_t *kfm_session_default(void);
KFM_EXPORT void kfm_session_set_default(kfm_session_t *s);

/**
 * Intern a node name (thread-safe).  The same name always gets the same id;
 * names are compared whole, as bytes.  KFM_EINVAL if s or id is NULL;
 * KFM_ENAME if name is NULL, empty or longer than KFM_NAME_MAX bytes.
 * Past max_nodes names it returns KFM_EFULL and still sets *id, to the node
 * KFM_NODE_OTHER: a program that goes on keeps its time in the profile.
 */
KFM_EXPORT int kfm_node_register(kfm_session_t *s, const char *name, kfm_node_id_t *id);
/** Name of a registered node, valid for the session's lifetime; NULL if unknown. */
KFM_EXPORT const char *kfm_node_name(const kfm_session_t *s, kfm_node_id_t id);

/**
 * Hot path.  Enter/exit a node on the calling thread.  No allocation and no
 * lock, except once per thread (its slot) and once per 16 node ids per
 * thread (its aggregate block).  Exit must name the innermost open node:
 * otherwise KFM_EORDER (nothing is popped) or KFM_ENOTENTERED.
 */
KFM_EXPORT int kfm_enter(kfm_session_t *s, kfm_node_id_t id);
KFM_EXPORT int kfm_exit(kfm_session_t *s, kfm_node_id_t id);
/** Convenience forms: register (or look up) the name, then enter/exit. */
KFM_EXPORT int kfm_enter_name(kfm_session_t *s, const char *name);
KFM_EXPORT int kfm_exit_name(kfm_session_t *s, const char *name);
/**
 * Innermost open node of the calling thread: 0, or KFM_ENOTENTERED with *id
 * KFM_NODE_ROOT outside every node.  With kfm_enter on worker threads this
 * is the portable way to attribute parallel work (e.g. OpenMP on libgomp,
 * which has no OMPT) to the node that spawned it.
 */
KFM_EXPORT int kfm_current_node(kfm_session_t *s, kfm_node_id_t *id);
/** Depth of the calling thread's node stack (0 when outside every node). */
KFM_EXPORT int kfm_depth(kfm_session_t *s);

/**
 * Fill in the patterns of an output= path, as kfm_session_create does for
 * the configured output: %r the MPI rank (the first set of
 * OMPI_COMM_WORLD_RANK, PMI_RANK, PMIX_RANK, SLURM_PROCID; "norank" when
 * none is), %p the process id, %h the host name ("nohost" if it cannot be
 * read), %j the batch job id (SLURM_JOB_ID, else PBS_JOBID; "nojob"), %% a
 * '%'.  A '/' in an environment value becomes '_', so a value never adds a
 * folder.  0; KFM_EINVAL (NULL argument or len 0), KFM_EBADVALUE (an
 * unknown pattern or a lone '%' at the end), KFM_ERANGE (the result and its
 * NUL do not fit in len bytes).
 */
KFM_EXPORT int kfm_output_expand(const char *pattern, char *buf, size_t len);

/** Write the JSON export (schema kfm.profile, KFM_SCHEMA_VERSION) to path. */
KFM_EXPORT int kfm_session_export(kfm_session_t *s, const char *path);
/**
 * Write the session as a Chrome Trace Event Format file (the JSON object
 * form), for ui.perfetto.dev and chrome://tracing: one complete ("X") event
 * per node activation from the trace events (so the session must trace:
 * trace=on, or DETAILED and up), on tid = the OS thread id of the engine
 * thread slot that ran it, with each transition metric's change over the
 * span in its args; counter ("C") tracks "<metric> (<unit>)" from the
 * sampler's samples (bytes as MB, counters as rates); process and thread
 * names; and in otherData the kfm version, level, clock, the session's
 * configuration as a config string, and what was lost.  ts is in
 * microseconds since the session's start, with nanosecond precision.
 * An activation whose exit was not recorded (still open, or its exit lost
 * when a trace ring overflowed) is closed at the end of the trace, or at the
 * recorded exit of an enclosing activation, with args {"unclosed":true}; an
 * exit whose enter was lost is skipped and counted.  At most
 * trace_max_events spans and counter values are written, the earliest;
 * the rest are counted in otherData.dropped_events and named by one instant
 * event at the end.  Written like kfm_session_export, in any state: a regular
 * file is replaced only when complete, a FIFO or device is written in place.
 * 0, KFM_EINVAL (s NULL, path NULL or empty), KFM_EIO (the message names the
 * path and why; an earlier file is left intact) or KFM_ENOMEM.
 */
KFM_EXPORT int kfm_session_export_trace(kfm_session_t *s, const char *path);
/** Print the per-node text report to a FILE* (passed as void* to keep stdio out). */
KFM_EXPORT int kfm_session_print(kfm_session_t *s, void *file);

/* ---------------------------------------------------------------------- */
/* Reports: a merged snapshot of a session, read without parsing text.     */

/** Metric kinds: a counter's delta is attributed; a gauge is a level (RSS). */
typedef enum kfm_metric_kind { KFM_METRIC_COUNTER = 0, KFM_METRIC_GAUGE = 1 } kfm_metric_kind_t;

typedef struct kfm_metric_info {
  const char *name;    /**< "proc.rss", "proc.cpu_user", ... */
  const char *unit;    /**< "bytes", "ns", "count" */
  const char *backend; /**< backend that reads it */
  kfm_metric_kind_t kind;
} kfm_metric_info_t;

typedef struct kfm_node_stats {
  kfm_node_id_t id;
  const char *name;
  uint64_t count;     /**< completed enter/exit pairs */
  uint64_t active;    /**< activations still open on some thread */
  double total_ns;    /**< inclusive */
  double exclusive_ns;
  double min_ns, max_ns, mean_ns, stddev_ns;
  double p50_ns, p90_ns, p99_ns; /**< from a log-linear histogram: within 6.25% (half a bucket) */
  uint64_t samples;   /**< thread-samples in which this node was innermost on a thread */
  uint64_t samples_any; /**< thread-samples in which this node was on a thread's stack */
  uint32_t ncpus;     /**< length of cpu_samples (0 when CPUs are not tracked: below COMPREHENSIVE) */
  const uint32_t *cpu_samples; /**< per logical CPU: thread-samples of this node innermost there */
  uint64_t migrations; /**< a thread seen on another CPU than at its previous sample, in this node */
  double peak_rss;    /**< highest RSS seen inside the node (bytes); NaN below STANDARD */
  /** Per sample metric (kfm_report_sample_metric), from the ticks at which this
   * node was innermost on some thread: a gauge's mean (e.g. GPU utilisation
   * while the node ran), a counter's deltas shared among the nodes active at
   * each tick (e.g. process CPU ns).  NaN when never sampled or not measured. */
  const double *sampled;
  const double *inclusive; /**< per metric (kfm_report_metric), inclusive delta sum */
  const double *exclusive; /**< per metric, exclusive delta sum */
} kfm_node_stats_t;

typedef enum kfm_edge_kind {
  KFM_EDGE_NESTED = 0, /**< from ran inside to (parent -> child) */
  KFM_EDGE_FOLLOWS = 1 /**< to started after from ended, same parent and thread */
} kfm_edge_kind_t;

typedef struct kfm_edge {
  kfm_node_id_t from, to; /**< KFM_NODE_ROOT as from: top level */
  uint64_t count;
} kfm_edge_t;

#define KFM_NODE_ROOT UINT32_MAX

typedef struct kfm_backend_status {
  const char *name;
  int available;      /**< 1 available, 0 not */
  int enabled;        /**< used by this session */
  const char *reason; /**< "available" or why not */
} kfm_backend_status_t;

typedef struct kfm_sample {
  double t_ns;         /**< since session start */
  const double *values; /**< per sample metric (kfm_report_sample_metric) */
  uint32_t nactive;    /**< threads inside a node at that instant */
  const uint32_t *threads; /**< thread index of each active entry */
  const kfm_node_id_t *nodes; /**< innermost node of each active entry */
  const int32_t *cpus; /**< logical CPU of each active entry, -1 when not tracked */
} kfm_sample_t;

typedef enum kfm_event_kind { KFM_EVENT_ENTER = 0, KFM_EVENT_EXIT = 1 } kfm_event_kind_t;

typedef struct kfm_event {
  double t_ns; /**< since session start */
  uint32_t thread;
  kfm_node_id_t node;
  kfm_event_kind_t kind;
  const double *values; /**< per transition metric, value read at the event */
} kfm_event_t;

typedef struct kfm_summary {
  kfm_level_t level;
  double wall_ns;          /**< start to stop (or to now) */
  double rate_hz;          /**< configured sampler rate (0: none) */
  uint64_t samples, samples_dropped;
  uint64_t events, events_dropped;
  uint64_t edges_dropped;
  uint64_t unbalanced;     /**< rejected exits (order / not entered) */
  uint32_t threads;        /**< threads that made a transition */
  double sampler_cpu_ns;   /**< CPU time the sampler thread used */
  double sampler_late_p99_ns; /**< p99 of wake lateness */
  uint64_t sampler_missed;  /**< timer ticks that passed while the sampler was late (no sample) */
  const char *clock;       /**< "tsc" or "clock_gettime" */
  double tsc_ghz;          /**< calibrated TSC frequency (0 without TSC) */
  int32_t sampler_bound_cpu; /**< CPU the sampler is bound to now, -1 when not bound */
  uint32_t sampler_rebinds; /**< times the automatic choice moved the sampler */
} kfm_summary_t;

/**
 * Merge every thread's aggregates into a snapshot.  Free with
 * kfm_report_free, before the session is destroyed: metric and backend names
 * in it point into the session.
 */
KFM_EXPORT int kfm_session_report(kfm_session_t *s, kfm_report_t **out);
KFM_EXPORT void kfm_report_free(kfm_report_t *r);
KFM_EXPORT void kfm_report_summary(const kfm_report_t *r, kfm_summary_t *out);
KFM_EXPORT size_t kfm_report_metric_count(const kfm_report_t *r);
KFM_EXPORT int kfm_report_metric(const kfm_report_t *r, size_t i, kfm_metric_info_t *out);
/** Index of a metric by name, or -1. */
KFM_EXPORT int kfm_report_metric_index(const kfm_report_t *r, const char *name);

/**
 * Derived metrics of a node, computed from its inclusive metrics when their
 * inputs were measured:
 *   "ipc"            instructions per cycle (papi.PAPI_TOT_INS / papi.PAPI_TOT_CYC)
 *   "l1_dcm_per_kins" L1 data-cache misses per 1000 instructions
 *   "br_msp_per_kins" branch mispredictions per 1000 instructions
 *   "cpu_util"       CPU time / wall time of the node (1.0 = one core busy); from
 *                    papi.perf::TASK-CLOCK, else proc.cpu_user + proc.cpu_sys
 * Returns 0 with *value set, KFM_ERANGE for a bad node index, KFM_EINVAL for an
 * unknown name, or KFM_EBACKEND when an input is not measured (*why, if not
 * NULL, names it; static string).
 */
KFM_EXPORT int kfm_report_derived(const kfm_report_t *r, size_t node, const char *name,
                                  double *value, const char **why);
/** Nodes that were entered at least once, in id order.  Views valid until kfm_report_free. */
KFM_EXPORT size_t kfm_report_node_count(const kfm_report_t *r);
KFM_EXPORT int kfm_report_node(const kfm_report_t *r, size_t i, kfm_node_stats_t *out);
/** Find a node's stats by name: 0, or KFM_ENONODE. */
KFM_EXPORT int kfm_report_node_by_name(const kfm_report_t *r, const char *name, kfm_node_stats_t *out);
KFM_EXPORT size_t kfm_report_edge_count(const kfm_report_t *r, kfm_edge_kind_t kind);
KFM_EXPORT int kfm_report_edge(const kfm_report_t *r, kfm_edge_kind_t kind, size_t i, kfm_edge_t *out);
KFM_EXPORT size_t kfm_report_backend_count(const kfm_report_t *r);
KFM_EXPORT int kfm_report_backend(const kfm_report_t *r, size_t i, kfm_backend_status_t *out);
/** Metrics each sample carries (gauges read by the sampler). */
KFM_EXPORT size_t kfm_report_sample_metric_count(const kfm_report_t *r);
KFM_EXPORT int kfm_report_sample_metric(const kfm_report_t *r, size_t i, kfm_metric_info_t *out);
KFM_EXPORT size_t kfm_report_sample_count(const kfm_report_t *r);
KFM_EXPORT int kfm_report_sample(const kfm_report_t *r, size_t i, kfm_sample_t *out);
KFM_EXPORT size_t kfm_report_event_count(const kfm_report_t *r);
KFM_EXPORT int kfm_report_event(const kfm_report_t *r, size_t i, kfm_event_t *out);
/**
 * OS thread id (gettid) of engine thread index `thread` (kfm_event_t.thread,
 * kfm_sample_t.threads), so that a viewer can name a thread as the program
 * does.  A slot reused after its thread ended keeps the id of its last
 * thread.  KFM_ERANGE when no such slot existed at the report.
 */
KFM_EXPORT int kfm_report_thread_tid(const kfm_report_t *r, uint32_t thread, int32_t *tid);

/**
 * What a backend found beyond its metrics (topology, chosen counter events,
 * GPU kernel tables keyed by node id), as one JSON object in a string the
 * caller frees with kfm_free.  KFM_EBACKEND if the backend
 * is not enabled in s or has nothing to describe.
 */
KFM_EXPORT int kfm_session_backend_json(kfm_session_t *s, const char *backend, char **json);

/** Names of the builtin backends and whether each is available here. */
KFM_EXPORT size_t kfm_backend_count(void);
KFM_EXPORT int kfm_backend_probe(size_t i, kfm_backend_status_t *out);

/** Free memory the library handed to the caller (none of the calls above do). */
KFM_EXPORT void kfm_free(void *p);

#ifdef __cplusplus
}
#endif
#endif /* KFM_KFM_H */
