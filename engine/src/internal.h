/*
 * internal.h - the engine's private structures: sessions, thread slots,
 * per-node aggregates, edge tables, trace rings and sample storage.  Only
 * engine/src (and the unit tests) can include it: backends see the engine
 * through engine/backend/backend.h alone, and the build gives them no path
 * to this folder.
 *
 * Concurrency model.  Each thread slot has one writer, its thread.  Readers
 * (the sampler thread, kfm_session_report on any thread) read the same
 * fields concurrently, so every shared field is an atomic accessed with
 * relaxed loads and stores: on x86-64 those are plain moves, the hot path
 * pays nothing for them, and there is no data race.  A reader may see one
 * field of an aggregate updated and the next one not yet: reports are
 * consistent once the writers are quiet (after stop), approximate while
 * they run.  Structural changes (slot creation, retirement of an exited
 * thread, aggregate blocks freed) happen under the session lock, which the
 * hot path never takes.
 */
#ifndef KFM_INTERNAL_H
#define KFM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h> /* memcpy, in kfm__ring_push */
#include <sys/types.h>

#include "backend.h"
#include "clock.h"
#include "kfm/kfm.h"

#define KFM__LIKELY(x) __builtin_expect(!!(x), 1)
#define KFM__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define KFM__LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define KFM__ST(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

#define KFM__NONE UINT32_MAX
#define KFM__BLOCK_NODES 16u
#define KFM__MAX_BACKENDS 16
/* Transition metrics bound a stack array on the hot path; sample metrics
 * grow with the GPU count (about 10 per device). */
#define KFM__MAX_METRICS 64
#define KFM__MAX_SMETRICS 256

/* Log-linear histogram: 8 sub-buckets per power of two of ticks, so a
 * bucket is at most 12.5% wide and its midpoint within 6.25% of any value
 * in it.  384 buckets reach 2^48 ticks (~1 day at 3 GHz). */
#define KFM__HIST_SUB 3
#define KFM__HIST_BUCKETS 384

static inline unsigned kfm__hist_bucket(uint64_t v) {
  if (v < (1u << KFM__HIST_SUB)) {
    return (unsigned)v;
  }
  unsigned e = 63u - (unsigned)__builtin_clzll(v);
  unsigned b = ((e - KFM__HIST_SUB + 1) << KFM__HIST_SUB) |
               (unsigned)((v >> (e - KFM__HIST_SUB)) & ((1u << KFM__HIST_SUB) - 1));
  return b < KFM__HIST_BUCKETS ? b : KFM__HIST_BUCKETS - 1;
}
/* Lower bound (inclusive) and width of bucket b, in ticks. */
void kfm__hist_range(unsigned b, double *lo, double *width);

/* Aggregate of one node on one thread (or merged).  The metric arrays follow
 * it in memory: inclusive[nm] then exclusive[nm] (int64: gauge deltas can
 * be negative). */
struct kfm__agg {
  _Atomic uint64_t count;
  _Atomic uint64_t total; /* ticks, inclusive */
  _Atomic uint64_t excl;  /* ticks, exclusive */
  _Atomic uint64_t min;
  _Atomic uint64_t max;
  _Atomic double sumsq; /* of inclusive ticks, for the standard deviation */
  _Atomic uint64_t peak_rss;
  _Atomic uint32_t hist[KFM__HIST_BUCKETS];
  _Atomic int64_t metrics[];
};

/* Open-addressing (from, to) -> count table.  Fixed capacity: an insert that
 * finds no room is counted as a drop, never allocated. */
struct kfm__edge_slot {
  _Atomic uint64_t key; /* from << 32 | to; KFM__EDGE_EMPTY when unused */
  _Atomic uint64_t count;
};
#define KFM__EDGE_EMPTY UINT64_MAX
struct kfm__edges {
  uint32_t mask; /* capacity - 1, capacity a power of two */
  _Atomic uint32_t nkeys; /* keys inserted */
  _Atomic uint64_t dropped;
  struct kfm__edge_slot *slot;
  uint32_t *used; /* [nkeys] slot index of each key: a reset touches only those */
};

struct kfm__frame {
  uint32_t node;
  uint32_t last_child; /* for "follows" edges among this frame's children */
  uint64_t t0;
  uint64_t child; /* ticks of completed children */
  uint64_t peak;  /* highest RSS seen while this frame was open */
};

/* Trace record header; nm uint64 metric values follow. */
struct kfm__event_rec {
  uint64_t t;
  uint32_t node;
  uint16_t thread;
  uint16_t kind;
};

/* Single-producer (the slot's thread) ring; the consumer is whoever holds
 * the session's drain lock. */
struct kfm__ring {
  uint32_t mask;
  uint32_t rec_words; /* record size in uint64 words */
  _Atomic uint64_t head; /* written by the producer */
  _Atomic uint64_t tail; /* written by the consumer */
  uint64_t tail_cache;   /* producer's stale copy of tail */
  _Atomic uint64_t dropped;
  uint64_t *buf;
};

enum { KFM__SLOT_FREE = 0, KFM__SLOT_LIVE = 1 };

struct kfm__thread {
  kfm_session_t *s;
  uint32_t index;
  _Atomic uint32_t state;
  _Atomic uint32_t current; /* innermost node, read by the sampler */
  _Atomic int32_t depth;    /* published stack depth, read by the sampler */
  _Atomic uint32_t ids[KFM_STACK_MAX];
  _Atomic uint64_t peak_rss; /* raised by the sampler, consumed at transitions */
  /* The kernel keeps this thread's CPU number here (its rseq area), readable
   * from the sampler for free; NULL where rseq is not registered. */
  const uint32_t *rseq_cpu;
  _Atomic int32_t cpu; /* fallback: sched_getcpu() stored at each enter */
  int32_t seen_cpu;     /* sampler-private: CPU at the previous sample */
  uint32_t seen_node;   /* sampler-private: innermost node at the previous sample */
  pid_t tid;
  int top; /* owner's private stack depth */
  uint32_t last_root;
  struct kfm__frame stack[KFM_STACK_MAX];
  uint64_t *vals;  /* [KFM_STACK_MAX][nm] metric values at enter */
  int64_t *cvals;  /* [KFM_STACK_MAX][nm] metric deltas of completed children */
  _Atomic(struct kfm__agg *) *blocks; /* [nblocks], each KFM__BLOCK_NODES aggs */
  _Atomic uint32_t blocks_hi; /* blocks[blocks_hi..] are all NULL: loops stop there */
  struct kfm__edges nested, follows;
  struct kfm__ring ring;
  _Atomic uint64_t unbalanced;
  /* 1 while the owner is inside kfm_enter/kfm_exit on this session, so a
   * restart that would clear the slot under it refuses instead. */
  _Atomic uint32_t busy;
  void *bstate[KFM__MAX_BACKENDS]; /* per-thread backend state */
};

struct kfm__backend_use {
  const struct kfm__backend *ops;
  void *state;
  unsigned t_off, n_t; /* offset and count in the transition vector */
  unsigned s_off, n_s; /* offset and count in the sample vector */
};

#define KFM__MAX_BSTAT 24
/* What the session knows of each backend it considered. */
struct kfm__bstat {
  const char *name; /* builtin name, or NULL: see namebuf */
  char namebuf[32];
  char reason[256];
  int available, enabled;
};

/* FORKED: the copy of a session that a child process inherited through
 * fork().  Its sampler and every other thread are gone and its files are
 * the parent's, so the copy is inert: calls on it succeed and do nothing
 * (see kfm__atfork_child). */
enum { KFM__CREATED = 0, KFM__RUNNING = 1, KFM__STOPPED = 2, KFM__FORKED = 3 };
enum { KFM__SAMPLER_RUN = 0, KFM__SAMPLER_PARK = 1, KFM__SAMPLER_QUIT = 2 };

/*
 * The sampler's state (sampler.c owns it): its thread and the park/resume
 * handshake, its timer, the samples it stores, and what it attributes to
 * nodes.  The sampler thread is the only writer of what is marked
 * sampler-private and of the sample storage; readers (reports) read the
 * rest after kfm__sampler_wait, or as relaxed atomics while it runs.
 */
struct kfm__sampler {
  pthread_t thread;
  int running; /* the thread exists (it may be parked) */
  _Atomic int stop;
  /* Between a stop and a restart the sampler thread parks instead of
   * ending: a restarted run costs no thread creation and no join. */
  pthread_mutex_t park_lock;
  pthread_cond_t park_cv;
  int park_cmd; /* KFM__SAMPLER_*, under park_lock */
  int parked;   /* under park_lock */
  int park_fired; /* under park_lock: the timer was fired to hurry the park */
  int timer_periodic; /* under park_lock: the run's schedule is still armed */
  int resync;         /* under park_lock: resumed on that schedule (sampler_run) */
  _Atomic int in_tick; /* the sampler is reading slots: retire waits (see sampler.c) */
  int timerfd;
  uint64_t base; /* CLOCK_MONOTONIC ns of tick 0 */
  _Atomic uint64_t cpu_ns;
  _Atomic uint64_t nsamples, samples_dropped, missed;
  uint64_t *sample_t;      /* [samples] ticks */
  uint64_t *sample_vals;   /* [samples][ns] */
  uint32_t *sample_first;  /* [samples + 1] index into active pairs */
  uint32_t *act_thread;    /* [pair capacity] */
  uint32_t *act_node;
  uint32_t act_cap, act_used;
  /* Arrays below marked [max_nodes] have node_cap entries. */
  _Atomic uint64_t *node_samples;     /* [max_nodes] innermost */
  _Atomic uint64_t *node_samples_any; /* [max_nodes] on the stack */
  _Atomic uint64_t *node_sample_peak; /* [max_nodes] highest sampled RSS */
  /* Sample metrics attributed to nodes (see kfm_node_stats_t.sampled). */
  _Atomic double *node_ssum;    /* [max_nodes][ns] */
  _Atomic uint32_t *node_scnt;  /* [max_nodes][ns] ticks that contributed */
  uint64_t *node_tick;          /* [max_nodes] sampler-private: last tick seen, dedupe */
  uint32_t *tick_nodes;         /* [max_threads] sampler-private: distinct nodes this tick */
  uint64_t sprev[KFM__MAX_SMETRICS]; /* sampler-private: previous counter values */
  uint8_t sprev_ok[KFM__MAX_SMETRICS];
  uint64_t tick_id;
  _Atomic uint32_t late_hist[KFM__HIST_BUCKETS]; /* wake lateness, ns */
  /* CPU locations (COMPREHENSIVE): per node and CPU, thread-samples. */
  int track_cpu;
  uint32_t ncpus;
  _Atomic uint32_t *node_cpu;        /* [max_nodes][ncpus] */
  _Atomic uint64_t *node_migrations; /* [max_nodes] */
  int32_t *act_cpu;                  /* [pair capacity] */
  uint64_t *cpu_use;                 /* [ncpus] sampler-private, this binding window */
  _Atomic int32_t bound;
  _Atomic uint32_t rebinds;
};

struct kfm_session {
  uint64_t uid; /* unique over the process: tells a reused address apart */
  kfm_config_t cfg;
  double rate_hz;
  int trace;
  _Atomic int state;
  /* Why the run was ended by the exit or signal flush (flush.c) rather
   * than kfm_session_stop; NULL otherwise.  A static string. */
  const char *truncated;
  pthread_mutex_t lock; /* structure: slots, registry, errmsg, retired data */
  char errmsg[512];

  /* node registry */
  _Atomic uint32_t nnodes;
  uint32_t node_cap; /* cfg.max_nodes + 1: ids past the limit share "(other)" */
  char **names;
  uint32_t *hash; /* open addressing on names: id + 1, 0 empty */
  uint32_t hash_mask;
  uint32_t nblocks;

  /* metrics and backends */
  unsigned nbackends;
  unsigned nhook_enter, nhook_exit; /* backends with enter / exit hooks */
  uint8_t hook_enter[KFM__MAX_BACKENDS], hook_exit[KFM__MAX_BACKENDS];
  unsigned nbstat;
  struct kfm__bstat bstat[KFM__MAX_BSTAT];
  struct kfm__backend_use be[KFM__MAX_BACKENDS];
  unsigned nm; /* transition metric count */
  const struct kfm__metric_def *mdef[KFM__MAX_METRICS];
  const char *mbackend[KFM__MAX_METRICS];
  uint8_t mrole[KFM__MAX_METRICS]; /* kfm__role_t of each transition metric */
  int rss_index; /* transition metric index of the first KFM_ROLE_RSS, -1 without */
  unsigned ns;   /* sample metric count */
  const struct kfm__metric_def *sdef[KFM__MAX_SMETRICS];
  const char *sbackend[KFM__MAX_SMETRICS];
  int srss_index;
  size_t agg_size;

  /* thread slots */
  struct kfm__thread **slots;
  _Atomic uint32_t nslots; /* slots created so far (some may be free) */
  uint32_t threads_seen;

  /* data of exited threads, merged under lock */
  struct kfm__agg **retired; /* [nblocks] */
  uint32_t retired_hi;       /* retired[retired_hi..] are all NULL */
  struct kfm__edges rnested, rfollows;
  uint64_t retired_unbalanced;

  /* time base */
  uint64_t t_start, ns_start, t_stop, ns_stop;

  /* sampler: its thread, schedule, samples and per-node sample results */
  struct kfm__sampler smp;

  /* trace storage, filled by draining the rings */
  pthread_mutex_t drain_lock;
  uint64_t *events; /* [trace_events][rec_words] */
  uint64_t nevents, events_dropped;
};

/* error.c */
int kfm__err(kfm_session_t *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int kfm__create_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* config.c */
int kfm__config_validate(const kfm_config_t *cfg, char *err, size_t len);
/* cfg as a "key=value,..." string that kfm_config_parse reads back to the
 * same config (a fractional rate_hz, possible only in a struct filled in by
 * hand, is written but not read back); malloc'd, NULL when out of memory. */
char *kfm__config_string(const kfm_config_t *cfg);

/* backends.c: the only file of the engine that names backends. */
/* NULL-terminated builtin list. */
extern const struct kfm__backend *const kfm__builtin_backends[];
/* Whether name is a backend kfm knows, built into this library or not. */
int kfm__backend_known(const char *name);
/* The i-th backend kfm knows (builtin order, then those not built); NULL past the end. */
const char *kfm__backend_known_name(size_t i);
/* Why a known backend is not usable in this build ("not built into this
 * kfm: configure with ..."), NULL when it is built or unknown. */
const char *kfm__backend_not_built_reason(const char *name);
/* The backend option that key names ("<backend>.<key>" or its legacy
 * un-namespaced spelling), with its namespaced name written to canon; NULL
 * when no backend owns key. */
const struct kfm__backend_option *kfm__backend_option_find(const char *key, char *canon,
                                                            size_t len);
/* The i-th backend option (builtin order), with its namespaced name written
 * to canon; NULL past the last. */
const struct kfm__backend_option *kfm__backend_option_at(size_t i, char *canon, size_t len);
/* "<backend>.<key> (or <legacy key>), ...": every backend option, for messages. */
void kfm__backend_option_keys(char *buf, size_t len);
/* "a, b, c": every known backend, for messages. */
void kfm__backend_names(char *buf, size_t len);
/* Probes builtin backend i if not done yet; 1 available, 0 not (why in *reason). */
int kfm__backend_status(size_t i, const char **reason);
/* The same without probing: -1 when backend i was never probed. */
int kfm__backend_probed(size_t i, const char **reason);
/* Takes (1) or releases (0) the probe lock, around fork (session.c). */
void kfm__backends_lock(int take);
/* Tests only: set the cached probe answer of a backend, e.g. after a test
 * injected a symbol table that makes a GPU library usable.  Not thread-safe
 * against sessions being created meanwhile. */
int kfm__backend_status_override(const char *name, int available, const char *reason);

/* thread.c: thread slots, TLS, the live-session table, fork handlers. */
/* The calling thread's last (session, slot): the hot path's first look. */
struct kfm__tls_cache {
  kfm_session_t *s;
  uint64_t uid;
  struct kfm__thread *t;
};
extern __thread struct kfm__tls_cache kfm__tls_cache __attribute__((tls_model("initial-exec")));
/* The calling thread's slot in s, created on first use.  NULL with *rc
 * KFM_EFULL when max_threads slots are live, KFM_ENOMEM when memory ran out
 * (the session's message says which). */
struct kfm__thread *kfm__thread_attach(kfm_session_t *s, int *rc);
/* A slot outside every node, as a thread's first transition expects it. */
void kfm__thread_stack_reset(struct kfm__thread *t);
void kfm__thread_free(kfm_session_t *s, struct kfm__thread *t);
/* Registers the fork handlers, once per process. */
void kfm__atfork_register(void);
/* Gives s its uid and adds it to the live table (0 or KFM_ENOMEM); removes it. */
int kfm__live_add(kfm_session_t *s);
void kfm__live_remove(kfm_session_t *s);
/* The session the calling thread last made a transition in (still live and
 * running) and its innermost node there (KFM__NONE outside every node).
 * For runtime tools (OMPT) that must find the encountering thread's node. */
int kfm__tls_current(kfm_session_t **s, uint64_t *uid, uint32_t *node);
/* Whether the session with that uid is still live; if so, *s is it. */
int kfm__session_live(uint64_t uid, kfm_session_t *s);
static inline struct kfm__agg *kfm__agg_at(const kfm_session_t *s, struct kfm__agg *block,
                                           uint32_t id) {
  return (struct kfm__agg *)((char *)block + (size_t)(id % KFM__BLOCK_NODES) * s->agg_size);
}

/* aggregate.c */
/* An aggregate with nothing recorded (the one place that says what that is). */
void kfm__agg_clear(const kfm_session_t *s, struct kfm__agg *a);
/* Clears the aggregates of a block that recorded something. */
void kfm__agg_block_clear(const kfm_session_t *s, struct kfm__agg *block);
struct kfm__agg *kfm__block_new(const kfm_session_t *s);
void kfm__agg_merge(const kfm_session_t *s, struct kfm__agg *dst, const struct kfm__agg *src);
int kfm__edges_init(struct kfm__edges *e, uint32_t capacity);
void kfm__edges_add(struct kfm__edges *e, uint64_t key, uint64_t n);
void kfm__edges_merge(struct kfm__edges *dst, const struct kfm__edges *src);
void kfm__edges_reset(struct kfm__edges *e);
void kfm__edges_free(struct kfm__edges *e);

/* trace.c */
/* Producer side, on the hot path: one record, or a counted drop when full. */
static inline void kfm__ring_push(struct kfm__ring *r, uint64_t t, uint32_t node, uint32_t thread,
                                  unsigned kind, const uint64_t *vals, unsigned nm) {
  uint64_t h = KFM__LD(r->head);
  if (KFM__UNLIKELY(h - r->tail_cache > r->mask)) {
    r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (h - r->tail_cache > r->mask) {
      KFM__ST(r->dropped, KFM__LD(r->dropped) + 1);
      return;
    }
  }
  uint64_t *rec = r->buf + (h & r->mask) * r->rec_words;
  struct kfm__event_rec hdr = {.t = t, .node = node, .thread = (uint16_t)thread,
                               .kind = (uint16_t)kind};
  memcpy(rec, &hdr, sizeof hdr);
  if (nm) {
    memcpy(rec + 2, vals, nm * sizeof *vals);
  }
  atomic_store_explicit(&r->head, h + 1, memory_order_release);
}
/* Moves one ring's events to session storage; caller holds drain_lock. */
void kfm__ring_drain(kfm_session_t *s, struct kfm__ring *r);
/* Moves trace events from the rings to session storage; wait=0 gives up
 * at once if another thread is draining. */
void kfm__drain_all(kfm_session_t *s, int wait);

/* session_backends.c: opens the backends the session wants (see there). */
int kfm__session_open_backends(kfm_session_t *s);

/* session.c */
double kfm__ns_per_tick(const kfm_session_t *s);

/* registry.c */
int kfm__registry_init(kfm_session_t *s);
void kfm__registry_free(kfm_session_t *s);

/* sampler.c: owns s->smp. */
/* At session creation, before anything else touches s->smp. */
void kfm__sampler_init(kfm_session_t *s);
/* The sample storage and per-node sample results the config asks for; 0 or KFM_ENOMEM. */
int kfm__sampler_alloc(kfm_session_t *s);
/* Forgets the last run's samples and per-node sample results (restart;
 * the sampler is parked, and the caller holds s->lock). */
void kfm__sampler_clear(kfm_session_t *s);
/* Frees what init and alloc set up (the thread has been quit). */
void kfm__sampler_free(kfm_session_t *s);
/* Start (the first time) or resume (after a stop) the sampler thread: 0,
 * or KFM_ETHREAD with the session's message naming the system's reason. */
int kfm__sampler_start(kfm_session_t *s);
/* Asks the sampler thread to park and returns at once: waking a sleeping
 * thread costs 20-100 us on these VMs, and nothing needs the sampler to be
 * parked until its results are read or the session runs again. */
void kfm__sampler_stop(kfm_session_t *s);
/* Returns once a stopped sampler is parked: it reads and writes nothing
 * more until resumed.  Called before reading sampler-written results of a
 * stopped session, and before a restart clears them. */
void kfm__sampler_wait(kfm_session_t *s);
/* Ends and joins the thread (session destroy). */
void kfm__sampler_quit(kfm_session_t *s);
void kfm__sample_once(kfm_session_t *s, uint64_t now);

/* outfile.c: a file the user named, written so that it lands whole or not
 * at all.  Symlinks are followed to the final target (a dangling one's
 * target is created); a FIFO or device is written in place (a FIFO nobody
 * reads fails at once); a regular or new file is written to an unnamed
 * O_TMPFILE file in its folder (else a random O_EXCL|O_NOFOLLOW name) and
 * renamed over it, keeping its mode.  Errors are KFM_EIO with a message
 * "<what>: cannot write '<path>': <errno text>" and errno set. */
struct kfm__outfile;
int kfm__outfile_open(kfm_session_t *s, const char *what, const char *path,
                      struct kfm__outfile **out);
/* Where to write; valid until kfm__outfile_close. */
FILE *kfm__outfile_stream(struct kfm__outfile *o);
/* commit=1: puts the file in place (or reports the first write error,
 * leaving the earlier file); commit=0: discards it.  Frees o. */
int kfm__outfile_close(kfm_session_t *s, struct kfm__outfile *o, int commit);
/* Tests: 1 skips O_TMPFILE, exercising the named temporary. */
extern int kfm__outfile_no_tmpfile;

/* session.c: stops every live running session that has an output file,
 * marking it truncated with why (a static string); the exit and signal
 * flushes of flush.c.  Sessions inherited through fork are left alone. */
void kfm__flush_live(const char *why);

/* flush.c */
/* Registers the exit flush once per process. */
void kfm__flush_at_exit(void);
/* Installs the signal flush (SIGTERM, SIGINT, SIGHUP, SIGQUIT where they
 * still have their default action) once per process; 0 or KFM_ETHREAD. */
int kfm__flush_on_signals(void);

/* export.c */
int kfm__export_json(kfm_session_t *s, const kfm_report_t *r, const char *path);

/* trace_export.c */
/* The Chrome trace of report r (taken from s) written to path. */
int kfm__export_trace(kfm_session_t *s, const kfm_report_t *r, const char *path);
/* Where output_format=both puts the trace next to the JSON export at out:
 * its extension replaced by ".trace.json", or that appended when its last
 * component has none.  0, or KFM_EINVAL when it does not fit in len. */
int kfm__trace_path(const char *out, char *buf, size_t len);
/* kfm__json_str (json.c) and kfm__list_has (config.c) are declared in
 * backend.h: the backends use them too. */

#endif /* KFM_INTERNAL_H */
