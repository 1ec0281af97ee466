/*
 * bench/engine/papi_peers.c - the PAPI peers and floors that kfm's pair
 * costs are set against (pairs.c): PAPI's high-level region pair
 * PAPI_hl_region_begin/_end ("peer.papi_hl_pair", counting
 * perf::TASK-CLOCK; "peer.papi_hl_pair_kfm_events", counting the events
 * kfm's COMPREHENSIVE session counts, in a child process: see struct
 * hlproc), and the grouped raw read floors, two PAPI_read calls on one
 * EventSet ("floor.papi_read_pair" on three software events,
 * "floor.papi_read_pair_kfm_events" on kfm's events).
 *
 * Kept apart because PAPI constrains how these may run, and all of that is
 * here: PAPI keeps one running EventSet per thread and PAPI-HL's never
 * stops, so each case runs on a worker thread of its own (harness.c);
 * PAPI-HL must initialise before any other EventSet exists; it reads
 * PAPI_EVENTS once per process; and it writes its measurement file at exit
 * into $PAPI_OUTPUT_DIRECTORY/papi_hl_output.  That variable points at a
 * mkdtemp directory which an atexit handler, registered before PAPI's own,
 * removes afterwards (the child's goes into its "child" subdirectory; the
 * child is reaped first).  Without KFM_HAVE_PAPI every case here reports
 * "built without PAPI".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdio.h>

#include "bench.h"

#ifdef KFM_HAVE_PAPI

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <papi.h>

#define PAPI_READ_MAX_EVENTS 16 /* events of a read-floor EventSet (kfm allows 16) */

/* ---------------------------------------------------------------------- */
/* The timed pairs                                                          */

static int papi_hl_pairs(void *ctx, uint64_t n) {
  (void)ctx;
  for (uint64_t i = 0; i < n; i++) {
    int a = PAPI_hl_region_begin("r");
    int b = PAPI_hl_region_end("r");
    if (a != PAPI_OK || b != PAPI_OK) {
      return a != PAPI_OK ? a : b;
    }
  }
  return PAPI_OK;
}

static int papi_read_pairs(void *ctx, uint64_t n) {
  int eventset = ((struct bcase *)ctx)->eventset;
  long long v[PAPI_READ_MAX_EVENTS];
  for (uint64_t i = 0; i < n; i++) {
    int a = PAPI_read(eventset, v);
    int b = PAPI_read(eventset, v);
    if (a != PAPI_OK || b != PAPI_OK) {
      return a != PAPI_OK ? a : b;
    }
  }
  return PAPI_OK;
}

static double papi_hl_case_run(struct bcase *c, int calibrate) {
  double per = NAN;
  int rc = case_time(c, calibrate, papi_hl_pairs, NULL, &per);
  if (rc != PAPI_OK) {
    snprintf(c->why, sizeof c->why, "%s failed: %s", "PAPI_hl_region_begin/end", PAPI_strerror(rc));
    return NAN;
  }
  return per;
}

static double papi_read_case_run(struct bcase *c, int calibrate) {
  double per = NAN;
  int rc = case_time(c, calibrate, papi_read_pairs, c, &per);
  if (rc != PAPI_OK) {
    snprintf(c->why, sizeof c->why, "%s failed: %s", "PAPI_read", PAPI_strerror(rc));
    return NAN;
  }
  return per;
}

/* ---------------------------------------------------------------------- */
/* PAPI set-up                                                              */

static char papi_dir[512];
static int papi_ok;        /* papi_env_setup succeeded */
static char papi_why[512]; /* or why not */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Runs after PAPI-HL's own atexit writer (registered later, so run earlier). */
static void papi_dir_cleanup(void) {
  if (papi_dir[0]) {
    nftw(papi_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  }
}

/* PAPI-HL's environment: a software event, output into a private temp dir. */
static int papi_env_setup(char *why, size_t len) {
  const char *tmp = getenv("TMPDIR");
  snprintf(papi_dir, sizeof papi_dir, "%s/kfm-bench-papi-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(papi_dir) == NULL) {
    snprintf(why, len, "mkdtemp(%.400s): %s", papi_dir, strerror(errno));
    papi_dir[0] = '\0';
    return -1;
  }
  atexit(papi_dir_cleanup);
  setenv("PAPI_EVENTS", "perf::TASK-CLOCK", 1);
  setenv("PAPI_OUTPUT_DIRECTORY", papi_dir, 1);
  /* These would print to stdout, which carries only JSON lines. */
  unsetenv("PAPI_REPORT");
  unsetenv("PAPI_HL_VERBOSE");
  unsetenv("PAPI_MULTIPLEX");
  return 0;
}

/* Early in main, before any kfm session: PAPI-HL's environment and output directory. */
void papi_peers_init(void) {
  papi_ok = papi_env_setup(papi_why, sizeof papi_why) == 0;
}

/* Library init and the read floor's EventSet: the events of c->events, started. */
static int papi_read_setup(struct bcase *c) {
  int rc;
  if (PAPI_is_initialized() == PAPI_NOT_INITED &&
      (rc = PAPI_library_init(PAPI_VER_CURRENT)) != PAPI_VER_CURRENT) {
    snprintf(c->why, sizeof c->why, "PAPI_library_init: %s",
             rc < 0 ? PAPI_strerror(rc) : "version mismatch");
    return -1;
  }
  c->eventset = PAPI_NULL;
  if ((rc = PAPI_create_eventset(&c->eventset)) != PAPI_OK) {
    snprintf(c->why, sizeof c->why, "PAPI_create_eventset: %s", PAPI_strerror(rc));
    return -1;
  }
  char list[sizeof c->events];
  snprintf(list, sizeof list, "%s", c->events);
  int n = 0;
  char *save = NULL;
  for (char *e = strtok_r(list, ",", &save); e != NULL; e = strtok_r(NULL, ",", &save)) {
    if (n == PAPI_READ_MAX_EVENTS) {
      snprintf(c->why, sizeof c->why, "more than %d events in '%.400s'", PAPI_READ_MAX_EVENTS,
               c->events);
      return -1;
    }
    if ((rc = PAPI_add_named_event(c->eventset, e)) != PAPI_OK) {
      snprintf(c->why, sizeof c->why, "PAPI_add_named_event(%s): %s", e, PAPI_strerror(rc));
      return -1;
    }
    n++;
  }
  if (n == 0) {
    snprintf(c->why, sizeof c->why, "no events for the read floor ('%.400s')", c->events);
    return -1;
  }
  if ((rc = PAPI_start(c->eventset)) != PAPI_OK) {
    snprintf(c->why, sizeof c->why, "PAPI_start: %s", PAPI_strerror(rc));
    return -1;
  }
  return 0;
}

static void papi_read_teardown(struct bcase *c) {
  if (c->eventset != PAPI_NULL) {
    PAPI_stop(c->eventset, NULL);
    PAPI_cleanup_eventset(c->eventset);
    PAPI_destroy_eventset(&c->eventset);
  }
}

/* Worker-thread adapters: set-up and tear-down run where the case runs. */
static void papi_read_setup_job(void *p) {
  struct bcase *c = p;
  c->failed = papi_read_setup(c) != 0;
}

static void papi_read_teardown_job(void *p) {
  papi_read_teardown(p);
}

/*
 * The first region call initialises PAPI-HL (library, thread support, its
 * EventSet; ~ms): keep it out of the timing.  It must come before any other
 * EventSet exists, or PAPI-HL's PAPI_thread_init fails.
 */
static int papi_hl_setup(struct bcase *c) {
  int rc = PAPI_hl_region_begin("r");
  if (rc == PAPI_OK) {
    rc = PAPI_hl_region_end("r");
  }
  if (rc != PAPI_OK) {
    snprintf(c->why, sizeof c->why, "PAPI_hl_region_begin/end: %s", PAPI_strerror(rc));
    return -1;
  }
  return 0;
}

static void papi_hl_setup_job(void *p) {
  struct bcase *c = p;
  c->failed = papi_hl_setup(c) != 0;
}

/* ---------------------------------------------------------------------- */
/* PAPI-HL with kfm's events, in a child process                            */

/*
 * PAPI-HL reads PAPI_EVENTS once per process, at its first region call, and
 * the 1-event peer above (perf::TASK-CLOCK, kept so that its figures stay
 * comparable from run to run) already owns this process's.  So the peer with
 * the events kfm's COMPREHENSIVE sessions count runs in a child: this same
 * executable started with HLPROC_ARG, pinned to the main CPU, which takes one
 * command per line on stdin ("calibrate n cap") and answers on fd 3 with
 * "ns_per_pair n" or "E why".  It times itself exactly as the other cases
 * do (case_time), and the main thread blocks on the answer meanwhile, so the
 * CPU is the child's.  Its stdout is our stderr: PAPI-HL may print at exit.
 */
struct hlproc {
  pid_t pid;
  FILE *cmd;   /* to the child's stdin */
  FILE *reply; /* from the child's fd 3 */
};

/* The child: argv = exe HLPROC_ARG events output_dir cpu. */
int hlproc_child_main(int argc, char **argv) {
  FILE *reply = fdopen(3, "w");
  if (reply == NULL || argc != 5) {
    fprintf(stderr, "bench_engine %s: bad invocation (fd 3 or arguments)\n", HLPROC_ARG);
    return 2;
  }
  setenv("PAPI_EVENTS", argv[2], 1);
  setenv("PAPI_OUTPUT_DIRECTORY", argv[3], 1);
  unsetenv("PAPI_REPORT");
  unsetenv("PAPI_HL_VERBOSE");
  unsetenv("PAPI_MULTIPLEX");
  pin_to(atoi(argv[4])); /* best effort, as for the worker threads */
  struct bcase c = {.name = "papi_hl child", .run = papi_hl_case_run};
  if (papi_hl_setup(&c) != 0) {
    fprintf(reply, "E %s\n", c.why);
    fclose(reply);
    return 1;
  }
  fprintf(reply, "OK\n");
  fflush(reply);
  int calibrate;
  unsigned long long n, cap;
  while (scanf("%d %llu %llu", &calibrate, &n, &cap) == 3) {
    c.n = n;
    c.cap = cap;
    double v = c.run(&c, calibrate);
    if (isfinite(v)) {
      fprintf(reply, "%.17g %llu\n", v, (unsigned long long)c.n);
    } else {
      fprintf(reply, "E %s\n", c.why);
    }
    fflush(reply);
  }
  fclose(reply);
  return 0; /* PAPI-HL writes its file from its atexit handler */
}

/* Reads one answer line into buf (newline removed); 0, or -1 at EOF. */
static int hlproc_line(struct hlproc *p, char *buf, size_t len) {
  if (fgets(buf, (int)len, p->reply) == NULL) {
    return -1;
  }
  buf[strcspn(buf, "\n")] = '\0';
  return 0;
}

/* Starts the child and waits for its set-up; 0, or -1 with c->why written. */
static int hlproc_start(struct hlproc *p, struct bcase *c, const char *events) {
  int to[2] = {-1, -1}, from[2] = {-1, -1};
  char dir[600], cpu[16], line[600];
  p->pid = -1;
  p->cmd = p->reply = NULL;
  snprintf(dir, sizeof dir, "%s/child", papi_dir);
  if (mkdir(dir, 0700) != 0) {
    snprintf(c->why, sizeof c->why, "mkdir(%.400s): %s", dir, strerror(errno));
    return -1;
  }
  snprintf(cpu, sizeof cpu, "%d", bench_main_cpu);
  if (pipe2(to, O_CLOEXEC) != 0 || pipe2(from, O_CLOEXEC) != 0) {
    snprintf(c->why, sizeof c->why, "pipe2: %s", strerror(errno));
    goto fail;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, to[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, from[1], 3);
  char *args[] = {"bench_engine", HLPROC_ARG, (char *)events, dir, cpu, NULL};
  extern char **environ;
  int rc = posix_spawn(&p->pid, "/proc/self/exe", &fa, NULL, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(to[0]);
  close(from[1]);
  to[0] = from[1] = -1;
  if (rc != 0) {
    p->pid = -1;
    snprintf(c->why, sizeof c->why, "posix_spawn(/proc/self/exe %s): %s", HLPROC_ARG, strerror(rc));
    goto fail;
  }
  if ((p->cmd = fdopen(to[1], "w")) != NULL) {
    to[1] = -1;
  }
  if ((p->reply = fdopen(from[0], "r")) != NULL) {
    from[0] = -1;
  }
  if (p->cmd == NULL || p->reply == NULL) {
    snprintf(c->why, sizeof c->why, "fdopen: %s", strerror(errno));
    goto fail;
  }
  if (hlproc_line(p, line, sizeof line) != 0) {
    snprintf(c->why, sizeof c->why, "PAPI-HL child exited during set-up");
    goto fail;
  }
  if (strcmp(line, "OK") != 0) {
    snprintf(c->why, sizeof c->why, "PAPI-HL child (PAPI_EVENTS=%.200s): %.280s", events,
             line[0] == 'E' ? line + 2 : line);
    goto fail;
  }
  return 0;
fail:
  for (int i = 0; i < 2; i++) {
    if (to[i] >= 0) {
      close(to[i]);
    }
    if (from[i] >= 0) {
      close(from[i]);
    }
  }
  return -1; /* hlproc_stop reaps whatever was started */
}

/* Closes the child's stdin (it returns, PAPI-HL writes its file) and reaps it. */
static void hlproc_stop(struct hlproc *p) {
  if (p->cmd != NULL) {
    fclose(p->cmd);
    p->cmd = NULL;
  }
  if (p->reply != NULL) {
    fclose(p->reply);
    p->reply = NULL;
  }
  if (p->pid > 0) {
    int st;
    while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR) {
    }
    p->pid = -1;
  }
}

/* One repetition of c in its child (c->proc); NaN with c->why written on failure. */
static double hlproc_case_run(struct bcase *c, int calibrate) {
  struct hlproc *p = c->proc;
  char line[600];
  fprintf(p->cmd, "%d %llu %llu\n", calibrate, (unsigned long long)c->n,
          (unsigned long long)c->cap);
  if (fflush(p->cmd) != 0 || hlproc_line(p, line, sizeof line) != 0) {
    snprintf(c->why, sizeof c->why, "PAPI-HL child went away");
    return NAN;
  }
  double v;
  unsigned long long n;
  if (line[0] == 'E' || sscanf(line, "%lg %llu", &v, &n) != 2) {
    snprintf(c->why, sizeof c->why, "PAPI-HL child: %.480s", line[0] == 'E' ? line + 2 : line);
    return NAN;
  }
  c->n = n;
  return v;
}

/* ---------------------------------------------------------------------- */
/* The four cases' threads and child, from papi_peers_start to _stop        */

static struct worker hl_worker;
static struct hlproc hl_kfm_proc = {.pid = -1};
static int have_hl_worker, have_hl_kfm_proc;
/* One worker per EventSet: a thread runs one EventSet at a time. */
static struct {
  struct bcase *c;
  struct worker w;
  int have;
} readers[2];

/*
 * Readies the peer cases of pairs.c's table: PAPI-HL's first (its
 * initialisation fails once another EventSet exists), then the child with
 * kfm_events, then one read worker per EventSet.  A case that cannot run is
 * left failed with its reason written (and shown on stderr).
 */
void papi_peers_start(struct bcase *hl, struct bcase *read, struct bcase *read_kfm,
                      struct bcase *hl_kfm, const char *kfm_events) {
  if (!papi_ok) {
    hl->failed = hl_kfm->failed = 1;
    snprintf(hl->why, sizeof hl->why, "%s", papi_why);
    snprintf(hl_kfm->why, sizeof hl_kfm->why, "%s", papi_why);
  } else if (worker_start(&hl_worker, bench_main_cpu) != 0) {
    hl->failed = 1;
    snprintf(hl->why, sizeof hl->why, "pthread_create failed");
  } else {
    have_hl_worker = 1;
    hl->run = papi_hl_case_run;
    hl->worker = &hl_worker;
    worker_call(&hl_worker, papi_hl_setup_job, hl);
  }
  if (!hl_kfm->failed) {
    have_hl_kfm_proc = 1;
    if (hlproc_start(&hl_kfm_proc, hl_kfm, kfm_events) == 0) {
      hl_kfm->run = hlproc_case_run;
      hl_kfm->proc = &hl_kfm_proc;
    } else {
      hl_kfm->failed = 1;
    }
  }
  readers[0].c = read;
  readers[1].c = read_kfm;
  for (size_t k = 0; k < sizeof readers / sizeof readers[0]; k++) {
    struct bcase *c = readers[k].c;
    c->eventset = PAPI_NULL;
    if (c->failed) {
      continue;
    }
    if (worker_start(&readers[k].w, bench_main_cpu) != 0) {
      c->failed = 1;
      snprintf(c->why, sizeof c->why, "pthread_create failed");
      continue;
    }
    readers[k].have = 1;
    c->run = papi_read_case_run;
    c->worker = &readers[k].w;
    worker_call(&readers[k].w, papi_read_setup_job, c);
  }
  struct bcase *all[] = {hl, read, read_kfm, hl_kfm};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (all[i]->failed) {
      progress("%s: %s", all[i]->name, all[i]->why);
    }
  }
}

/* After the measurements: EventSets, workers and the child, in that order. */
void papi_peers_stop(void) {
  for (size_t k = 0; k < sizeof readers / sizeof readers[0]; k++) {
    if (readers[k].have) {
      worker_call(&readers[k].w, papi_read_teardown_job, readers[k].c);
      worker_stop(&readers[k].w);
    }
  }
  if (have_hl_worker) {
    worker_stop(&hl_worker); /* its regions stay recorded for PAPI-HL's exit writer */
  }
  if (have_hl_kfm_proc) {
    hlproc_stop(&hl_kfm_proc); /* before papi_dir_cleanup removes its output directory */
  }
}

#else /* !KFM_HAVE_PAPI */

void papi_peers_init(void) {}

void papi_peers_start(struct bcase *hl, struct bcase *read, struct bcase *read_kfm,
                      struct bcase *hl_kfm, const char *kfm_events) {
  (void)kfm_events;
  struct bcase *all[] = {hl, read, read_kfm, hl_kfm};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (!all[i]->failed) {
      all[i]->failed = 1;
      snprintf(all[i]->why, sizeof all[i]->why, "built without PAPI");
    }
  }
}

void papi_peers_stop(void) {}

#endif
