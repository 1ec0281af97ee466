/*
 * papi.c - the "papi" backend: hardware (or, without a PMU, perf software)
 * counters of each profiled thread, read with one grouped PAPI_read at every
 * node transition.
 *
 * Life cycle.  PAPI is initialised once per process (library and thread
 * support) on the first probe or open and is never shut down: an
 * application or a PAPI_hl peer in the same process may be using it too.
 * open chooses the events on the calling thread and checks them on a
 * scratch EventSet; thread_open (on the profiled thread) builds that
 * thread's EventSet, or reuses the one it already has for the same events
 * (struct papi_tset), and starts it; read is one PAPI_read straight into
 * the engine's value vector; thread_close stops it when no session uses it
 * any more; it is destroyed when the thread ends.
 *
 * Threads.  Every thread that calls PAPI through this file (open,
 * thread_open) is registered with PAPI first (papi_thread_get), and stays
 * registered until it ends; the record's destructor then destroys its
 * EventSet and unregisters it, if this backend registered it.  PAPI keeps
 * a per-thread descriptor in thread-local storage that name lookups,
 * enumeration and native queries write through without checking it: on
 * a thread PAPI does not know they dereference NULL.  PAPI_library_init
 * registers only the thread that calls it, so before this rule a session
 * created on any other thread crashed in PAPI_event_name_to_code.  Every
 * PAPI call outside the hot path holds papi_lock: PAPI 7.0 shares unlocked
 * state between threads in those calls (the last enumerated event string,
 * the native event table, the EventSet map).  read takes no lock.
 * thread_close may run on another thread (a session destroyed while the
 * profiled thread lives); it only stops the EventSet, which PAPI does on
 * the set's own thread context whoever calls it.
 *
 * Event choice.  A user list (ctx->events) is taken exactly: every name must
 * exist and be countable here, or open fails with KFM_EBADVALUE naming it
 * and the closest available names.  Otherwise the PAPI presets for
 * instructions, cycles, cache and branch misses are used when the machine
 * has them, else the perf software events (task clock, page faults, context
 * switches, migrations); ctx->note and export_json say which and why.
 * A user list that does not fit one counter group is multiplexed (kernel
 * multiplexing through the perf_event component); PAPI refuses that on a
 * machine without a hardware PMU, where software events never conflict.
 *
 * PAPI quirks this file works around:
 *  - Looking up a bare name that perf_event does not know makes PAPI ask
 *    every component, and its rocm_smi component then initialises ROCm SMI,
 *    which prints to stderr.  Bare names are therefore first checked against
 *    the enumerated presets and perf_event natives; names with a "pmu::"
 *    prefix stay inside that PMU and go to PAPI directly.
 *  - Every enumeration of perf_event's natives after the first leaks PAPI's
 *    copies of their names (PAPI 7.0, seen under LeakSanitizer), as do name
 *    lookups made before it: the names are enumerated once per process, at
 *    the first open, and kept.
 *  - PAPI_enum_event with PAPI_ENUM_FIRST returns a preset whether or not it
 *    is available, so availability is always PAPI_query_event.
 *  - Adding an event twice to one EventSet fails with PAPI_ECNFLCT, the
 *    code for "counters full"; duplicates are rejected by name first so
 *    they are not mistaken for a need to multiplex.
 *  - PAPI_unregister_thread frees every EventSet of the thread, whoever made
 *    it; a thread is unregistered only if this backend registered it.
 *    Whether it did is read from PAPI's thread list (entries with the
 *    caller's id before and after PAPI_register_thread), never from "my id
 *    is listed": a thread that ended registered leaves an entry whose
 *    pthread_self a new thread often gets again.
 *  - PAPI_read finds an EventSet in an array that PAPI_create_eventset
 *    reallocates when it is full, with no lock readers take: the array is
 *    grown once at initialisation (PAPI_RESERVED_SETS) so that creating a
 *    set on one thread does not move it under a read on another.
 *  - A thread runs at most one EventSet per component: sessions counting
 *    the same events on a thread share its EventSet; a session asking for
 *    other events there while it runs (or a running PAPI_hl region) makes
 *    thread_open fail: that thread reads zeros and export_json counts it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "papi.h"

#include <errno.h>
#include <papi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PAPI_PARANOID_PATH "/proc/sys/kernel/perf_event_paranoid"
/* Suggestions listed with an unknown or unavailable event. */
#define PAPI_NSUGGEST 5
/* EventSet slots PAPI's map is grown to at initialisation (see the top of
 * the file): four times the engine's default max_threads, each thread
 * holding one EventSet, plus the scratch sets of one open at a time. */
#define PAPI_RESERVED_SETS 1024

/* ---------------------------------------------------------------------- */
/* Process-wide PAPI initialisation.                                       */

/*
 * Written once inside pthread_once and only read afterwards (pthread_once
 * orders the writes before every later reader): the result of
 * PAPI_library_init must be remembered for the process because PAPI itself
 * cannot be initialised twice.
 */
static pthread_once_t papi_once = PTHREAD_ONCE_INIT;
static int papi_init_ok;
static int papi_cid = -1; /* index of the perf_event component */
static char papi_init_msg[256];

/* Same pattern for PAPI_multiplex_init, needed only by multiplexed sets. */
static pthread_once_t papi_mpx_once = PTHREAD_ONCE_INIT;
static int papi_mpx_rc;

/*
 * Held around every PAPI call this file makes except PAPI_read on the hot
 * path (and the initialisation, which pthread_once serialises): name
 * lookups, enumeration, queries, EventSet creation, start and stop,
 * thread registration.  It also guards every struct papi_tset.  A leaf
 * lock: nothing is called with it held that takes another.
 */
static pthread_mutex_t papi_lock = PTHREAD_MUTEX_INITIALIZER;

/* Set on the thread whose PAPI_library_init call initialised PAPI: PAPI
 * registered that thread for us, so it is unregistered when it ends. */
static __thread int papi_tls_init_thread;

/* PAPI tells threads apart by this id; pthread_self is unique among live threads. */
static unsigned long papi_thread_id_fn(void) {
  return (unsigned long)pthread_self();
}

/*
 * Grows PAPI's EventSet map to PAPI_RESERVED_SETS slots by creating that
 * many empty sets and destroying them: the map never shrinks, and PAPI_read
 * indexes it without a lock while a PAPI_create_eventset that finds it
 * full would reallocate it.  Runs on the initialising thread, which PAPI
 * has registered.
 */
static void papi_reserve_slots(void) {
  int es[PAPI_RESERVED_SETS];
  int n = 0;
  while (n < PAPI_RESERVED_SETS) {
    es[n] = PAPI_NULL;
    if (PAPI_create_eventset(&es[n]) != PAPI_OK) {
      break;
    }
    n++;
  }
  while (n > 0) {
    PAPI_destroy_eventset(&es[--n]);
  }
}

static void papi_init_once(void) {
  int first = PAPI_is_initialized() == PAPI_NOT_INITED;
  int rc = PAPI_library_init(PAPI_VER_CURRENT);
  if (rc != PAPI_VER_CURRENT) {
    if (rc > 0) {
      snprintf(papi_init_msg, sizeof papi_init_msg,
               "PAPI_library_init: library version %d.%d does not match the header's %d.%d",
               PAPI_VERSION_MAJOR(rc), PAPI_VERSION_MINOR(rc), PAPI_VERSION_MAJOR(PAPI_VER_CURRENT),
               PAPI_VERSION_MINOR(PAPI_VER_CURRENT));
    } else {
      snprintf(papi_init_msg, sizeof papi_init_msg, "PAPI_library_init failed: %s (%d)",
               PAPI_strerror(rc), rc);
    }
    return;
  }
  /* PAPI_OK also when a PAPI_hl peer initialised threads first with its own id function. */
  rc = PAPI_thread_init(papi_thread_id_fn);
  if (rc != PAPI_OK) {
    snprintf(papi_init_msg, sizeof papi_init_msg,
             "PAPI_thread_init failed: %s (PAPI was initialised without thread support "
             "after threads used it, so per-thread counters cannot be told apart)",
             PAPI_strerror(rc));
    return;
  }
  papi_cid = PAPI_get_component_index("perf_event");
  if (papi_cid < 0) {
    snprintf(papi_init_msg, sizeof papi_init_msg,
             "this PAPI has no perf_event component (rebuild PAPI with --with-components "
             "including perf_event)");
    return;
  }
  papi_tls_init_thread = first;
  papi_reserve_slots();
  papi_init_ok = 1;
}

/* 1 when PAPI is usable; otherwise 0 with the reason in msg. */
static int papi_ready(char *msg, size_t len) {
  pthread_once(&papi_once, papi_init_once);
  if (!papi_init_ok && len) {
    snprintf(msg, len, "%s", papi_init_msg);
  }
  return papi_init_ok;
}

static void papi_mpx_init_once(void) {
  papi_mpx_rc = PAPI_multiplex_init();
}

/* ---------------------------------------------------------------------- */
/* Availability.                                                           */

/* Reads the paranoid level; 0, or -errno (-EINVAL when the text is not a number). */
static int papi_read_paranoid(const char *path, int *level) {
  FILE *f = fopen(path, "r");
  int v, n;
  if (f == NULL) {
    return -errno;
  }
  n = fscanf(f, "%d", &v);
  fclose(f);
  if (n != 1) {
    return -EINVAL;
  }
  *level = v;
  return 0;
}

int kfm__papi_availability(const char *paranoid_path, int cmp_disabled, const char *cmp_reason,
                           char *reason, size_t len) {
  int level = 0;
  int rc = papi_read_paranoid(paranoid_path, &level);
  const char *papi_says = cmp_reason && cmp_reason[0] ? cmp_reason : "no reason given";
  if (rc == -EINVAL) {
    snprintf(reason, len, "cannot parse %s: expected an integer paranoid level", paranoid_path);
    return 0;
  }
  if (rc < 0) {
    snprintf(reason, len,
             "cannot read %s (%s): the kernel has no perf_event support or /proc/sys is hidden",
             paranoid_path, strerror(-rc));
    return 0;
  }
  if (level > 2 && cmp_disabled) {
    snprintf(reason, len,
             "perf_event_paranoid is %d: run `sysctl kernel.perf_event_paranoid=2` (or lower) to "
             "allow per-thread counters (PAPI: %s)",
             level, papi_says);
    return 0;
  }
  if (cmp_disabled) {
    snprintf(reason, len, "PAPI disabled its perf_event component: %s", papi_says);
    return 0;
  }
  /* Above 2 with the component enabled: PAPI found root or CAP_PERFMON. */
  snprintf(reason, len, "available");
  return 1;
}

static int papi_probe(char *reason, size_t len) {
  const PAPI_component_info_t *ci;
  int disabled = 0;
  char why[sizeof ci->disabled_reason];
  if (!papi_ready(reason, len)) {
    return 0;
  }
  pthread_mutex_lock(&papi_lock);
  ci = PAPI_get_component_info(papi_cid);
  if (ci != NULL) {
    disabled = ci->disabled;
    snprintf(why, sizeof why, "%s", ci->disabled_reason);
  }
  pthread_mutex_unlock(&papi_lock);
  if (ci == NULL) {
    snprintf(reason, len, "PAPI_get_component_info(perf_event) failed");
    return 0;
  }
  return kfm__papi_availability(PAPI_PARANOID_PATH, disabled, why, reason, len);
}

/* ---------------------------------------------------------------------- */
/* Session and thread state.                                               */

enum { PAPI_SET_PRESET, PAPI_SET_SOFTWARE, PAPI_SET_USER };
static const char *const papi_set_names[] = {"preset", "software", "user"};

struct papi_state {
  unsigned n;
  int codes[KFM_PAPI_MAX_EVENTS];
  char names[KFM_PAPI_MAX_EVENTS][PAPI_MAX_STR_LEN];
  char mnames[KFM_PAPI_MAX_EVENTS][PAPI_MAX_STR_LEN + 8]; /* "papi.<name>" */
  struct kfm__metric_def defs[KFM_PAPI_MAX_EVENTS];
  int set;         /* PAPI_SET_* */
  int multiplexed; /* thread EventSets are built multiplexed */
  int paranoid;    /* level read at open, or INT32_MIN when unreadable */
  char reason[512];
  /* Written by thread_open/read on profiled threads, read by export_json. */
  _Atomic uint64_t thread_failures;
  _Atomic uint64_t read_errors;
  _Atomic int fail_claim; /* 0 none, 1 being written, 2 fail_msg complete */
  char fail_msg[192];     /* why the first thread_open failed */
};

/*
 * A thread's EventSet, shared by every session on that thread that counts
 * the same events, and kept (stopped) when the last of them closes: PAPI
 * runs one EventSet per thread, and building one costs ~0.6 ms here (each
 * PAPI_add_event re-opens every perf event added before it).  So a second
 * session on a thread counts too, instead of reading zeros, and a new
 * session on a long-lived thread pays a PAPI_start instead of the build.
 * Stopped when unused, so a PAPI_hl region or the application's own
 * EventSet can run on the thread meanwhile.  Freed at thread exit.
 */
struct papi_tset {
  /* Every field is guarded by papi_lock. */
  int eventset; /* PAPI_NULL when none */
  int running;
  unsigned n;
  int codes[KFM_PAPI_MAX_EVENTS];
  int multiplexed;
  int registered; /* this backend registered the thread with PAPI */
  unsigned users; /* sessions using the EventSet */
  int thread_alive;
};

struct papi_tstate {
  int ok; /* eventset is running for this session */
  int eventset;
  struct papi_tset *set;
};

static _Atomic uint64_t papi_sets_built; /* EventSets built by thread_open (tests) */

uint64_t kfm__papi_sets_built(void) {
  return atomic_load_explicit(&papi_sets_built, memory_order_relaxed);
}

/* ---------------------------------------------------------------------- */
/* EventSets.                                                              */

static void papi_destroy(int *es) {
  if (*es != PAPI_NULL) {
    PAPI_cleanup_eventset(*es);
    PAPI_destroy_eventset(es);
    *es = PAPI_NULL;
  }
}

/*
 * Builds an EventSet with codes[0..n) on the calling thread, multiplexed or
 * not.  Returns PAPI_OK with *es set, or a PAPI error with nothing left
 * behind and *bad the index of the event that failed (n when the failure is
 * not one event's: creating the set or turning on multiplexing).
 */
static int papi_make_set(const int *codes, unsigned n, int multiplex, int *es, unsigned *bad) {
  int rc;
  *es = PAPI_NULL;
  *bad = n;
  rc = PAPI_create_eventset(es);
  if (rc != PAPI_OK) {
    *es = PAPI_NULL;
    return rc;
  }
  if (multiplex) {
    pthread_once(&papi_mpx_once, papi_mpx_init_once);
    rc = papi_mpx_rc;
    if (rc == PAPI_OK) {
      rc = PAPI_assign_eventset_component(*es, papi_cid);
    }
    if (rc == PAPI_OK) {
      rc = PAPI_set_multiplex(*es);
    }
    if (rc != PAPI_OK) {
      papi_destroy(es);
      return rc;
    }
  }
  for (unsigned i = 0; i < n; i++) {
    rc = PAPI_add_event(*es, codes[i]);
    if (rc != PAPI_OK) {
      *bad = i;
      papi_destroy(es);
      return rc;
    }
  }
  return PAPI_OK;
}

/* PAPI_OK if code can be counted alone on this thread. */
static int papi_trial(int code) {
  int es;
  unsigned bad;
  int rc = papi_make_set(&code, 1, 0, &es, &bad);
  papi_destroy(&es);
  return rc;
}

/* ---------------------------------------------------------------------- */
/* Threads known to PAPI.                                                  */

static pthread_key_t papi_tset_key;
static pthread_once_t papi_tset_once = PTHREAD_ONCE_INIT;
/* The calling thread's record (see struct papi_tset), NULL before its first PAPI call. */
static __thread struct papi_tset *papi_tls_set;

/*
 * How many entries of PAPI's thread list carry the calling thread's id, or
 * -1 when that cannot be told (allocation failure, a list that grew past
 * the buffer).  Entries left by ended threads may share the id, so only a
 * change of this number across PAPI_register_thread says who registered.
 * Caller holds papi_lock.
 */
static int papi_my_entries(void) {
  unsigned long me = PAPI_thread_id();
  PAPI_thread_id_t *ids;
  int n = 0, cap, mine = 0;
  if (PAPI_list_threads(NULL, &n) != PAPI_OK || n < 0) {
    return -1;
  }
  cap = n + 16; /* room for threads that PAPI_hl or the application register meanwhile */
  ids = malloc((size_t)cap * sizeof *ids);
  if (ids == NULL) {
    return -1;
  }
  n = cap;
  if (PAPI_list_threads(ids, &n) != PAPI_OK || n >= cap) {
    free(ids);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    mine += ids[i] == me;
  }
  free(ids);
  return mine;
}

/*
 * Thread exit, on the thread: its EventSet and, if this backend made it,
 * its PAPI registration go.  The record itself goes with the last of the
 * thread and the sessions still holding it (papi_thread_close).
 */
static void papi_tset_exit(void *arg) {
  struct papi_tset *t = arg;
  pthread_mutex_lock(&papi_lock);
  if (t->running) {
    PAPI_stop(t->eventset, NULL);
    t->running = 0;
  }
  papi_destroy(&t->eventset);
  if (t->registered) {
    PAPI_unregister_thread();
    t->registered = 0;
  }
  t->thread_alive = 0;
  int last = t->users == 0;
  pthread_mutex_unlock(&papi_lock);
  papi_tls_set = NULL;
  if (last) {
    free(t);
  }
}

static void papi_tset_key_create(void) {
  pthread_key_create(&papi_tset_key, papi_tset_exit);
}

/*
 * The calling thread's record, registering the thread with PAPI on its
 * first call: every PAPI call that touches native events needs that (see
 * the top of the file).  NULL with a PAPI error in *prc when PAPI or
 * memory refuses.  Caller holds papi_lock.
 */
static struct papi_tset *papi_thread_get(int *prc) {
  struct papi_tset *t = papi_tls_set;
  int before, rc;
  *prc = PAPI_OK;
  if (t != NULL) {
    return t;
  }
  pthread_once(&papi_tset_once, papi_tset_key_create);
  t = calloc(1, sizeof *t);
  if (t == NULL) {
    *prc = PAPI_ENOMEM;
    return NULL;
  }
  t->eventset = PAPI_NULL;
  t->thread_alive = 1;
  before = papi_my_entries();
  rc = PAPI_register_thread();
  if (rc != PAPI_OK) {
    free(t);
    *prc = rc;
    return NULL;
  }
  /* When unsure, "not ours": a thread is never unregistered by mistake. */
  t->registered = papi_tls_init_thread || (before >= 0 && papi_my_entries() > before);
  papi_tls_init_thread = 0;
  if (pthread_setspecific(papi_tset_key, t) != 0) {
    if (t->registered) {
      PAPI_unregister_thread();
    }
    free(t);
    *prc = PAPI_ENOMEM;
    return NULL;
  }
  papi_tls_set = t;
  return t;
}

/* ---------------------------------------------------------------------- */
/* Known event names, for lookups of bare names and for suggestions.       */

struct papi_cand {
  char name[PAPI_MAX_STR_LEN];
  int code;
  int preset;
  int avail; /* 1 yes, 0 no, -1 not checked yet (natives: checked by a trial add) */
  unsigned dist;
};

struct papi_cands {
  struct papi_cand *v;
  size_t n, cap;
  int presets_avail; /* how many presets PAPI_query_event accepts */
};

static int papi_cands_push(struct papi_cands *c, int code, int preset, int avail) {
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 256;
    struct papi_cand *v = realloc(c->v, cap * sizeof *v);
    if (v == NULL) {
      return KFM_ENOMEM;
    }
    c->v = v;
    c->cap = cap;
  }
  struct papi_cand *e = &c->v[c->n];
  if (PAPI_event_code_to_name(code, e->name) != PAPI_OK) {
    return 0; /* skip: an event we cannot name cannot be suggested */
  }
  e->name[sizeof e->name - 1] = '\0';
  e->code = code;
  e->preset = preset;
  e->avail = avail;
  e->dist = 0;
  c->n++;
  return 0;
}

/* Every preset (with its availability) and every native of perf_event. */
static int papi_cands_build(struct papi_cands *c) {
  int code = PAPI_PRESET_MASK;
  if (PAPI_enum_event(&code, PAPI_ENUM_FIRST) == PAPI_OK) {
    do {
      int avail = PAPI_query_event(code) == PAPI_OK;
      c->presets_avail += avail;
      if (papi_cands_push(c, code, 1, avail) != 0) {
        return KFM_ENOMEM;
      }
    } while (PAPI_enum_event(&code, PAPI_ENUM_EVENTS) == PAPI_OK);
  }
  code = PAPI_NATIVE_MASK;
  if (PAPI_enum_cmp_event(&code, PAPI_ENUM_FIRST, papi_cid) == PAPI_OK) {
    do {
      if (papi_cands_push(c, code, 0, -1) != 0) {
        return KFM_ENOMEM;
      }
    } while (PAPI_enum_cmp_event(&code, PAPI_ENUM_EVENTS, papi_cid) == PAPI_OK);
  }
  return 0;
}

/* The name without its "pmu::" prefix ("perf::TASK-CLOCK" -> "TASK-CLOCK"). */
static const char *papi_strip_pmu(const char *name) {
  const char *p = strstr(name, "::");
  if (p == NULL) {
    return name;
  }
  while (*p == ':') {
    p++;
  }
  return p;
}

static int papi_lower(char c) {
  return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Case-insensitive Levenshtein distance of two names of at most PAPI_MAX_STR_LEN bytes. */
static unsigned papi_lev(const char *a, const char *b) {
  unsigned row[PAPI_MAX_STR_LEN + 1];
  size_t la = strnlen(a, PAPI_MAX_STR_LEN), lb = strnlen(b, PAPI_MAX_STR_LEN);
  for (size_t j = 0; j <= lb; j++) {
    row[j] = (unsigned)j;
  }
  for (size_t i = 1; i <= la; i++) {
    unsigned diag = row[0]; /* row[i-1][j-1] */
    row[0] = (unsigned)i;
    for (size_t j = 1; j <= lb; j++) {
      unsigned up = row[j]; /* row[i-1][j] */
      unsigned sub = diag + (papi_lower(a[i - 1]) != papi_lower(b[j - 1]));
      unsigned ins = row[j - 1] + 1, del = up + 1;
      unsigned best = sub < ins ? sub : ins;
      row[j] = best < del ? best : del;
      diag = up;
    }
  }
  return row[lb];
}

/* A name's distance to the query: with and without the PMU prefix, whichever is closer. */
static unsigned papi_dist(const char *query, const char *name) {
  unsigned full = papi_lev(query, name);
  unsigned bare = papi_lev(papi_strip_pmu(query), papi_strip_pmu(name));
  return full < bare ? full : bare;
}

static int papi_cand_cmp(const void *a, const void *b) {
  const struct papi_cand *x = a, *y = b;
  if (x->dist != y->dist) {
    return x->dist < y->dist ? -1 : 1;
  }
  return strcmp(x->name, y->name);
}

/*
 * Appends to msg "closest available: a, b, ..." (up to PAPI_NSUGGEST names
 * nearest to query that can be counted here), preceded, when show_unavail is
 * set, by "closest known: X (not available here)" when a name within typo
 * distance of the query exists but cannot be counted.
 * Sorts c->v.  Natives are checked by a trial add only as far as needed.
 */
static void papi_suggest(struct papi_cands *c, const char *query, int show_unavail, char *msg,
                         size_t len) {
  size_t used = strlen(msg);
  unsigned found = 0;
  /* An unavailable name is worth mentioning only when it looks like a typo of the query. */
  unsigned near = (unsigned)strlen(query) / 4;
  int noted_unavail = !show_unavail;
  for (size_t i = 0; i < c->n; i++) {
    c->v[i].dist = papi_dist(query, c->v[i].name);
  }
  qsort(c->v, c->n, sizeof *c->v, papi_cand_cmp);
  for (size_t i = 0; i < c->n && found < PAPI_NSUGGEST && used < len; i++) {
    struct papi_cand *e = &c->v[i];
    if (strcasecmp(e->name, query) == 0) {
      continue; /* the name itself (when it exists but is unavailable) */
    }
    if (e->avail < 0) {
      e->avail = papi_trial(e->code) == PAPI_OK;
    }
    if (!e->avail) {
      if (found == 0 && !noted_unavail && e->dist <= (near > 2 ? near : 2)) {
        noted_unavail = 1;
        used += (size_t)snprintf(msg + used, len - used, "; closest known: %s (not available here)",
                                 e->name);
      }
      continue;
    }
    used += (size_t)snprintf(msg + used, len - used, "%s%s",
                             found == 0 ? "; closest available: " : ", ", e->name);
    found++;
  }
  if (found == 0 && used < len) {
    snprintf(msg + used, len - used, "; no event is countable here");
  }
}

/* ---------------------------------------------------------------------- */
/* Resolving one user event name.                                          */

struct papi_open_ctx {
  struct kfm__backend_ctx *ctx;
  struct papi_cands cands;
  int cands_built;
};

/*
 * The enumerated names, built once per process and read-only afterwards:
 * every PAPI_enum_cmp_event pass after the first leaks PAPI's copies of the
 * native names (seen with PAPI 7.0 under LeakSanitizer), and the list does
 * not change while the process runs.
 */
static pthread_once_t papi_known_once = PTHREAD_ONCE_INIT;
static struct papi_cands papi_known;
static int papi_known_rc;

static void papi_known_build(void) {
  papi_known_rc = papi_cands_build(&papi_known);
}

/* A private copy of the known names (sorted and marked by papi_suggest). */
static int papi_cands(struct papi_open_ctx *o) {
  if (!o->cands_built) {
    pthread_once(&papi_known_once, papi_known_build);
    o->cands.n = 0;
    o->cands.v = papi_known.n ? malloc(papi_known.n * sizeof *o->cands.v) : NULL;
    if (papi_known_rc != 0 || (papi_known.n && o->cands.v == NULL)) {
      snprintf(o->ctx->errbuf, o->ctx->errlen, "out of memory listing PAPI events");
      free(o->cands.v);
      o->cands.v = NULL;
      return KFM_ENOMEM;
    }
    o->cands_built = 1;
    if (papi_known.n) {
      memcpy(o->cands.v, papi_known.v, papi_known.n * sizeof *o->cands.v);
    }
    o->cands.n = o->cands.cap = papi_known.n;
    o->cands.presets_avail = papi_known.presets_avail;
  }
  return 0;
}

/* Whether the bare name (no "::") matches an enumerated preset or native, up to modifiers. */
static int papi_bare_known(const struct papi_cands *c, const char *name) {
  size_t base = strcspn(name, ":");
  for (size_t i = 0; i < c->n; i++) {
    const char *cn = c->v[i].preset ? c->v[i].name : papi_strip_pmu(c->v[i].name);
    if (strlen(cn) == base && strncasecmp(cn, name, base) == 0) {
      return 1;
    }
  }
  return 0;
}

/*
 * Turns name into an event code that can be counted alone on this thread.
 * On failure writes errbuf (naming the event and suggesting others) and
 * returns KFM_EBADVALUE (or KFM_ENOMEM).
 */
static int papi_resolve(struct papi_open_ctx *o, const char *name, int *code) {
  struct kfm__backend_ctx *ctx = o->ctx;
  int rc, pc = PAPI_NULL;
  int known = 1;
  if (strstr(name, "::") == NULL) {
    /* Bare names: look in what perf_event and the presets list first (see the top of the file). */
    if ((rc = papi_cands(o)) != 0) {
      return rc;
    }
    known = papi_bare_known(&o->cands, name);
  }
  if (known) {
    rc = PAPI_event_name_to_code(name, &pc);
    known = rc == PAPI_OK;
  }
  if (!known) {
    snprintf(ctx->errbuf, ctx->errlen, "unknown event '%s'", name);
    if (papi_cands(o) == 0) {
      papi_suggest(&o->cands, name, 1, ctx->errbuf, ctx->errlen);
    }
    return KFM_EBADVALUE;
  }
  if (IS_PRESET(pc) && PAPI_query_event(pc) != PAPI_OK) {
    if ((rc = papi_cands(o)) != 0) {
      return rc;
    }
    snprintf(ctx->errbuf, ctx->errlen, "event '%s' is unavailable: %s", name,
             o->cands.presets_avail == 0
                 ? "no PAPI preset is available on this machine (no hardware PMU)"
                 : "this machine's counters cannot provide that preset (see papi_avail)");
    papi_suggest(&o->cands, name, 0, ctx->errbuf, ctx->errlen);
    return KFM_EBADVALUE;
  }
  rc = papi_trial(pc);
  if (rc != PAPI_OK) {
    int r2 = papi_cands(o);
    snprintf(ctx->errbuf, ctx->errlen, "event '%s' is unavailable: cannot be counted here (%s)",
             name, PAPI_strerror(rc));
    if (r2 == 0) {
      papi_suggest(&o->cands, name, 0, ctx->errbuf, ctx->errlen);
    }
    return KFM_EBADVALUE;
  }
  *code = pc;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* open.                                                                   */

static const char *const papi_default_presets[] = {"PAPI_TOT_INS", "PAPI_TOT_CYC", "PAPI_L1_DCM",
                                                   "PAPI_L2_DCM",  "PAPI_L3_TCM",  "PAPI_BR_MSP"};
static const char *const papi_default_software[] = {
    "perf::TASK-CLOCK", "perf::PAGE-FAULTS", "perf::CONTEXT-SWITCHES", "perf::CPU-MIGRATIONS"};
#define PAPI_NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void papi_add_name(struct papi_state *st, const char *name, int code) {
  snprintf(st->names[st->n], sizeof st->names[st->n], "%s", name);
  st->codes[st->n] = code;
  st->n++;
}

/*
 * Joins the chosen names with ',' into buf, using at most room bytes: names
 * that do not fit are replaced by ",... (N in all)".
 */
static void papi_join(const struct papi_state *st, char *buf, size_t len, size_t room) {
  size_t used = 0;
  char more[32];
  buf[0] = '\0';
  if (room > len) {
    room = len;
  }
  for (unsigned i = 0; i < st->n; i++) {
    size_t need = strlen(st->names[i]) + (i ? 1 : 0);
    int ml = snprintf(more, sizeof more, ",... (%u in all)", st->n);
    size_t reserve = i + 1 < st->n ? (size_t)ml : 0;
    if (used + need + reserve >= room) {
      snprintf(buf + used, len - used, "%s", more);
      return;
    }
    used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "", st->names[i]);
  }
}

/*
 * Default events: those of list that exist here and fit one group together,
 * in order.  Names that were skipped go into dropped (", "-separated).
 */
static void papi_pick_defaults(struct papi_state *st, const char *const *list, size_t nlist,
                               int need_query, char *dropped, size_t dlen) {
  size_t used = strlen(dropped);
  for (size_t i = 0; i < nlist; i++) {
    int code, es, rc;
    unsigned bad;
    const char *why = NULL;
    if (PAPI_event_name_to_code(list[i], &code) != PAPI_OK) {
      why = "unknown";
    } else if (need_query && PAPI_query_event(code) != PAPI_OK) {
      continue; /* absent presets are the common case: not worth a mention */
    } else {
      st->codes[st->n] = code;
      rc = papi_make_set(st->codes, st->n + 1, 0, &es, &bad);
      papi_destroy(&es);
      if (rc == PAPI_OK) {
        papi_add_name(st, list[i], code);
        continue;
      }
      why = rc == PAPI_ECNFLCT || rc == PAPI_ECOUNT ? "does not fit with the others"
                                                    : PAPI_strerror(rc);
    }
    if (used < dlen) {
      used += (size_t)snprintf(dropped + used, dlen - used, "%s%s (%s)", used ? ", " : "", list[i],
                               why);
    }
  }
}

static int papi_choose_defaults(struct papi_state *st, struct papi_open_ctx *o) {
  char dropped[256] = "";
  char why[192];
  papi_pick_defaults(st, papi_default_presets, PAPI_NELEM(papi_default_presets), 1, dropped,
                     sizeof dropped);
  if (st->n > 0) {
    st->set = PAPI_SET_PRESET;
    snprintf(why, sizeof why, "PAPI presets available on this machine");
  } else {
    int any_preset = 0;
    int code = PAPI_PRESET_MASK;
    if (PAPI_enum_event(&code, PAPI_ENUM_FIRST) == PAPI_OK) {
      do {
        any_preset |= PAPI_query_event(code) == PAPI_OK;
      } while (!any_preset && PAPI_enum_event(&code, PAPI_ENUM_EVENTS) == PAPI_OK);
    }
    papi_pick_defaults(st, papi_default_software, PAPI_NELEM(papi_default_software), 0, dropped,
                       sizeof dropped);
    st->set = PAPI_SET_SOFTWARE;
    snprintf(why, sizeof why, "software events: %s",
             any_preset ? "none of the default PAPI presets is available on this machine"
                        : "no PAPI preset available on this machine - no hardware PMU");
  }
  if (st->n == 0) {
    snprintf(o->ctx->errbuf, o->ctx->errlen, "no default event can be counted here: %s",
             dropped[0] ? dropped : "perf_event refused every one");
    return KFM_EBACKEND;
  }
  snprintf(st->reason, sizeof st->reason, "%s%s%s", why, dropped[0] ? "; skipped " : "", dropped);
  return 0;
}

/* Parses the comma list into st->names/codes, resolving every name. */
static int papi_choose_user(struct papi_state *st, struct papi_open_ctx *o) {
  struct kfm__backend_ctx *ctx = o->ctx;
  const char *p = ctx->events;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len;
    char name[PAPI_MAX_STR_LEN];
    int code, rc;
    if (end == NULL) {
      end = p + strlen(p);
    }
    while (p < end && (*p == ' ' || *p == '\t')) {
      p++;
    }
    len = (size_t)(end - p);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
      len--;
    }
    if (len == 0) {
      snprintf(ctx->errbuf, ctx->errlen, "events: empty event name in '%s'", ctx->events);
      return KFM_EBADVALUE;
    }
    if (len >= sizeof name) {
      snprintf(ctx->errbuf, ctx->errlen, "events: name '%.40s...' longer than %zu bytes", p,
               sizeof name - 1);
      return KFM_EBADVALUE;
    }
    memcpy(name, p, len);
    name[len] = '\0';
    for (unsigned i = 0; i < st->n; i++) {
      if (strcmp(st->names[i], name) == 0) {
        snprintf(ctx->errbuf, ctx->errlen, "events: '%s' is listed twice", name);
        return KFM_EBADVALUE;
      }
    }
    if (st->n == KFM_PAPI_MAX_EVENTS) {
      snprintf(ctx->errbuf, ctx->errlen, "events: '%s' is one too many (at most %d events)", name,
               KFM_PAPI_MAX_EVENTS);
      return KFM_EBADVALUE;
    }
    rc = papi_resolve(o, name, &code);
    if (rc != 0) {
      return rc;
    }
    papi_add_name(st, name, code);
    if (*end == ',' && end[1] == '\0') {
      snprintf(ctx->errbuf, ctx->errlen, "events: empty event name after the last ',' in '%s'",
               ctx->events);
      return KFM_EBADVALUE;
    }
    p = *end ? end + 1 : end;
  }
  st->set = PAPI_SET_USER;
  snprintf(st->reason, sizeof st->reason, "events chosen by the user");
  return 0;
}

/* Software clocks count nanoseconds; everything else counts events. */
static const char *papi_unit(const char *name) {
  static const char *const clocks[] = {"TASK-CLOCK", "CPU-CLOCK", "TASK_CLOCK", "CPU_CLOCK"};
  for (size_t i = 0; i < PAPI_NELEM(clocks); i++) {
    if (strcasestr(name, clocks[i]) != NULL) {
      return "ns";
    }
  }
  return "count";
}

/* The event that counts each role the engine looks for: presets for the
 * hardware counts, the perf task-clock for thread CPU time.  Exact names
 * only, so that what the engine divides is what the user reads. */
static const char *const papi_role_events[KFM_ROLE_COUNT] = {
    [KFM_ROLE_CPU_TIME] = "perf::TASK-CLOCK",
    [KFM_ROLE_INSTRUCTIONS] = "PAPI_TOT_INS",
    [KFM_ROLE_CYCLES] = "PAPI_TOT_CYC",
    [KFM_ROLE_L1_DCM] = "PAPI_L1_DCM",
    [KFM_ROLE_BR_MSP] = "PAPI_BR_MSP",
};

static kfm__role_t papi_role(const char *event) {
  for (int r = 0; r < KFM_ROLE_COUNT; r++) {
    if (papi_role_events[r] && strcmp(event, papi_role_events[r]) == 0) {
      return (kfm__role_t)r;
    }
  }
  return KFM_ROLE_NONE;
}

int kfm__papi_open_ex(void *state, struct kfm__backend_ctx *ctx, unsigned flags) {
  struct papi_state *st = state;
  struct papi_open_ctx o = {.ctx = ctx};
  char why[256];
  char list[512];
  int rc, es, multiplex = (flags & KFM_PAPI_FORCE_MULTIPLEX) != 0;
  unsigned bad;

  memset(st, 0, sizeof *st);
  if (!papi_ready(why, sizeof why)) {
    snprintf(ctx->errbuf, ctx->errlen, "%s", why);
    return KFM_EBACKEND;
  }
  if (papi_read_paranoid(PAPI_PARANOID_PATH, &st->paranoid) != 0) {
    st->paranoid = INT32_MIN;
  }
  pthread_mutex_lock(&papi_lock);
  /* Before any lookup: on a thread PAPI does not know, lookups crash. */
  if (papi_thread_get(&rc) == NULL) {
    pthread_mutex_unlock(&papi_lock);
    snprintf(ctx->errbuf, ctx->errlen, "PAPI_register_thread failed: %s", PAPI_strerror(rc));
    return KFM_EBACKEND;
  }
  /* Enumerate before any name lookup: PAPI 7.0 leaks the native-table entries
   * that name lookups made when a later enumeration re-creates them. */
  pthread_once(&papi_known_once, papi_known_build);
  if (ctx->events != NULL && ctx->events[0] != '\0') {
    rc = papi_choose_user(st, &o);
  } else {
    rc = papi_choose_defaults(st, &o);
  }
  if (rc == 0) {
    /* The whole set, together: if it does not fit one group, multiplex it. */
    rc = papi_make_set(st->codes, st->n, multiplex, &es, &bad);
    if (!multiplex && (rc == PAPI_ECNFLCT || rc == PAPI_ECOUNT)) {
      multiplex = 1;
      rc = papi_make_set(st->codes, st->n, 1, &es, &bad);
    }
    papi_destroy(&es);
    if (rc != PAPI_OK) {
      if (bad < st->n) {
        snprintf(ctx->errbuf, ctx->errlen, "event '%s' cannot be counted with the others%s: %s",
                 st->names[bad], multiplex ? " even multiplexed" : "", PAPI_strerror(rc));
      } else {
        snprintf(ctx->errbuf, ctx->errlen,
                 "%u events need multiplexing, which PAPI cannot set up here: %s (perf_event "
                 "multiplexing needs a hardware PMU)",
                 st->n, PAPI_strerror(rc));
      }
      rc = KFM_EBADVALUE;
    } else {
      rc = 0;
    }
  }
  pthread_mutex_unlock(&papi_lock);
  if (o.cands_built) {
    free(o.cands.v);
  }
  if (rc != 0) {
    st->n = 0;
    return rc;
  }

  st->multiplexed = multiplex;
  for (unsigned i = 0; i < st->n; i++) {
    /* memcpy, not snprintf: gcc's -Wrestrict cannot tell the two arrays of *st apart. */
    memcpy(st->mnames[i], "papi.", 5);
    memcpy(st->mnames[i] + 5, st->names[i], strlen(st->names[i]) + 1);
    st->defs[i].name = st->mnames[i];
    st->defs[i].unit = papi_unit(st->names[i]);
    st->defs[i].kind = KFM_METRIC_COUNTER;
    st->defs[i].role = papi_role(st->names[i]);
  }
  ctx->n_transition = st->n;
  ctx->transition = st->defs;
  ctx->n_sample = 0;
  ctx->sample = NULL;
  if (ctx->note != NULL && ctx->notelen > 0) {
    char tail[384];
    int tl = snprintf(tail, sizeof tail, " (%s); %s", st->reason,
                      multiplex ? "multiplexed: more events than one counter group holds"
                                : "not multiplexed");
    /* The note is one short line: shorten the list, never the reason. */
    size_t room = ctx->notelen > (size_t)tl + 8 ? ctx->notelen - (size_t)tl - 8 : 1;
    papi_join(st, list, sizeof list, room);
    snprintf(ctx->note, ctx->notelen, "events: %s%s", list, tail);
  }
  return 0;
}

static int papi_open(void *state, struct kfm__backend_ctx *ctx) {
  return kfm__papi_open_ex(state, ctx, 0);
}

/* ---------------------------------------------------------------------- */
/* Threads and the hot path.                                               */

static void papi_thread_failed(struct papi_state *st, const char *step, int rc) {
  int expect = 0;
  atomic_fetch_add_explicit(&st->thread_failures, 1, memory_order_relaxed);
  if (atomic_compare_exchange_strong(&st->fail_claim, &expect, 1)) {
    snprintf(st->fail_msg, sizeof st->fail_msg, "%s: %s%s", step, PAPI_strerror(rc),
             rc == PAPI_EISRUN ? " (another EventSet already runs on that thread: a second "
                                 "session or a PAPI_hl region)"
                               : "");
    atomic_store_explicit(&st->fail_claim, 2, memory_order_release);
  }
}

static int papi_tset_same(const struct papi_tset *t, const struct papi_state *st) {
  return t->n == st->n && t->multiplexed == st->multiplexed &&
         memcmp(t->codes, st->codes, st->n * sizeof *st->codes) == 0;
}

static int papi_thread_open(void *state, void *tstate) {
  struct papi_state *st = state;
  struct papi_tstate *ts = tstate;
  unsigned bad;
  int rc;
  ts->ok = 0;
  ts->eventset = PAPI_NULL;
  ts->set = NULL;
  if (st->n == 0) {
    return 0;
  }
  pthread_mutex_lock(&papi_lock);
  struct papi_tset *t = papi_thread_get(&rc);
  if (t == NULL) {
    papi_thread_failed(
        st, rc == PAPI_ENOMEM ? "allocating the thread's record" : "PAPI_register_thread", rc);
    pthread_mutex_unlock(&papi_lock);
    return KFM_EBACKEND;
  }
  if (t->eventset != PAPI_NULL && !papi_tset_same(t, st)) {
    if (t->users > 0) {
      pthread_mutex_unlock(&papi_lock);
      papi_thread_failed(st, "PAPI_start", PAPI_EISRUN);
      return KFM_EBACKEND;
    }
    if (t->running) {
      PAPI_stop(t->eventset, NULL);
      t->running = 0;
    }
    papi_destroy(&t->eventset);
  }
  rc = PAPI_OK;
  if (t->eventset == PAPI_NULL) {
    rc = papi_make_set(st->codes, st->n, st->multiplexed, &t->eventset, &bad);
    if (rc == PAPI_OK) {
      atomic_fetch_add_explicit(&papi_sets_built, 1, memory_order_relaxed);
      t->n = st->n;
      t->multiplexed = st->multiplexed;
      memcpy(t->codes, st->codes, st->n * sizeof *st->codes);
    } else {
      papi_thread_failed(st, "creating the thread's EventSet", rc);
    }
  }
  if (rc == PAPI_OK && !t->running) {
    rc = PAPI_start(t->eventset);
    if (rc == PAPI_OK) {
      t->running = 1;
    } else {
      papi_thread_failed(st, "PAPI_start", rc);
    }
  }
  if (rc == PAPI_OK) {
    t->users++;
  }
  pthread_mutex_unlock(&papi_lock);
  if (rc != PAPI_OK) {
    return KFM_EBACKEND;
  }
  ts->set = t;
  ts->eventset = t->eventset;
  ts->ok = 1;
  return 0;
}

/*
 * Runs on the thread itself, or on the thread destroying the session while
 * this one is still alive (or after it ended: the record then outlives the
 * thread until here).  Stopping another thread's EventSet is safe: PAPI_stop
 * works on the set's own thread context and disables its perf events,
 * without the caller's PAPI registration.  Destroying it is left to its own
 * thread's exit, and unregistering could only be done by the thread itself.
 */
static void papi_thread_close(void *state, void *tstate) {
  struct papi_tstate *ts = tstate;
  (void)state;
  struct papi_tset *t = ts->set;
  ts->ok = 0;
  ts->set = NULL;
  if (t == NULL) {
    return;
  }
  pthread_mutex_lock(&papi_lock);
  t->users--;
  if (t->users == 0 && t->running) {
    PAPI_stop(t->eventset, NULL);
    t->running = 0;
  }
  int last = t->users == 0 && !t->thread_alive;
  pthread_mutex_unlock(&papi_lock);
  if (last) {
    free(t);
  }
}

/*
 * Hot path: one grouped PAPI_read into out.  PAPI writes long long; the
 * counts are never negative, so they have the same representation as
 * uint64_t, and PAPI writes them in another shared object, so no aliasing
 * assumption of this file's compiler is involved.
 */
static void papi_read(void *state, void *tstate, uint64_t *out) {
  const struct papi_tstate *ts = tstate;
  struct papi_state *st = state;
  if (__builtin_expect(ts->ok, 1) &&
      __builtin_expect(PAPI_read(ts->eventset, (long long *)(void *)out) == PAPI_OK, 1)) {
    return;
  }
  memset(out, 0, st->n * sizeof *out);
  if (ts->ok) {
    atomic_fetch_add_explicit(&st->read_errors, 1, memory_order_relaxed);
  }
}

/* ---------------------------------------------------------------------- */
/* Export.                                                                 */

/* Index of the chosen event that has role r, or -1. */
static int papi_find_role(const struct papi_state *st, kfm__role_t r) {
  for (unsigned i = 0; i < st->n; i++) {
    if (st->defs[i].role == r) {
      return (int)i;
    }
  }
  return -1;
}

static void papi_export_json(void *state, void *file) {
  struct papi_state *st = state;
  FILE *f = file;
  uint64_t fails = atomic_load_explicit(&st->thread_failures, memory_order_relaxed);
  fputs("{\"component\":\"perf_event\",\"events\":[", f);
  for (unsigned i = 0; i < st->n; i++) {
    if (i) {
      fputc(',', f);
    }
    kfm__json_str(f, st->names[i]);
  }
  fprintf(f, "],\"set\":\"%s\",\"reason\":", papi_set_names[st->set]);
  kfm__json_str(f, st->reason);
  fprintf(f, ",\"multiplexed\":%s,\"paranoid\":", st->multiplexed ? "true" : "false");
  if (st->paranoid == INT32_MIN) {
    fputs("null", f);
  } else {
    fprintf(f, "%d", st->paranoid);
  }
  fprintf(f, ",\"thread_open_failures\":%llu", (unsigned long long)fails);
  if (atomic_load_explicit(&st->fail_claim, memory_order_acquire) == 2) {
    fputs(",\"thread_open_error\":", f);
    kfm__json_str(f, st->fail_msg);
  }
  fprintf(f, ",\"read_errors\":%llu,\"derived\":{",
          (unsigned long long)atomic_load_explicit(&st->read_errors, memory_order_relaxed));
  /* The engine's derived metrics (kfm__derived_defs) that divide two
   * counters: which of them the chosen events make available. */
  int first = 1;
  for (size_t d = 0; d < kfm__nderived; d++) {
    const struct kfm__derived_def *dd = &kfm__derived_defs[d];
    if (dd->den == KFM_ROLE_NONE) {
      continue;
    }
    int num = papi_find_role(st, dd->num), den = papi_find_role(st, dd->den);
    fprintf(f, "%s\"%s\":", first ? "" : ",", dd->name);
    if (num >= 0 && den >= 0) {
      fputs("\"available\"", f);
    } else {
      fprintf(f, "\"unavailable: needs %s and %s\"", papi_role_events[dd->num],
              papi_role_events[dd->den]);
    }
    first = 0;
  }
  /* What the engine divides, per node, for each available derived metric. */
  fputs("},\"derived_inputs\":{", f);
  first = 1;
  for (size_t d = 0; d < kfm__nderived; d++) {
    const struct kfm__derived_def *dd = &kfm__derived_defs[d];
    if (dd->den == KFM_ROLE_NONE) {
      continue;
    }
    int num = papi_find_role(st, dd->num), den = papi_find_role(st, dd->den);
    if (num < 0 || den < 0) {
      continue;
    }
    fprintf(f, "%s\"%s\":{\"numerator\":", first ? "" : ",", dd->name);
    kfm__json_str(f, st->mnames[num]);
    fputs(",\"denominator\":", f);
    kfm__json_str(f, st->mnames[den]);
    fprintf(f, ",\"scale\":%g}", dd->scale);
    first = 0;
  }
  fputs("}}", f);
}

/* papi.events=A,B (older spelling events=): the events to count instead of
 * the level's default set. */
static const struct kfm__backend_option papi_options[] = {
    {"events", "events", KFM__OPT_LIST, offsetof(kfm_config_t, events),
     sizeof(((kfm_config_t *)0)->events), "event"},
    {NULL, NULL, 0, 0, 0, NULL},
};

const struct kfm__backend kfm__backend_papi = {
    .abi = KFM_BACKEND_ABI,
    .name = "papi",
    .caps = KFM_CAP_TRANSITION,
    .min_level = KFM_LEVEL_COMPREHENSIVE,
    .state_size = sizeof(struct papi_state),
    .thread_state_size = sizeof(struct papi_tstate),
    .probe = papi_probe,
    .open = papi_open,
    .thread_open = papi_thread_open,
    .thread_close = papi_thread_close,
    .read = papi_read,
    .export_json = papi_export_json,
    .provides = KFM_ROLE_BIT(KFM_ROLE_CPU_TIME) | KFM_ROLE_BIT(KFM_ROLE_INSTRUCTIONS) |
                KFM_ROLE_BIT(KFM_ROLE_CYCLES) | KFM_ROLE_BIT(KFM_ROLE_L1_DCM) |
                KFM_ROLE_BIT(KFM_ROLE_BR_MSP),
    .options = papi_options,
};
