/*
 * test_kfm_cli.c - the kfm command on real programs, one CTest entry per
 * part (argv[1]):
 *   omp     kfm run on an unmodified OpenMP program (LLVM libomp): exact
 *           region node counts (iterations x team), names from the symbol
 *           table, the whole program as root node
 *   errors  not found, statically linked, bad config (the engine's message)
 *   exit    exit() from a second thread, SIGTERM (a file marked truncated);
 *           the C API in the run's session, and in a session of its own
 *   report  several per-rank files (output=p.%r.json) merged, with an
 *           unreadable and a cut file named and skipped; every format
 *   trace   traces of two ranks merged into one, a process per rank
 *   mpi     mpirun -np 4: the PMPI merged profile; rank 2's double work
 * Paths of the programs come from CMake.  A part whose program or runtime
 * is missing returns 77 with the reason.
 */
#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jsonr.h"
#include "kfm_test.h"

static char dir[64];

/* Runs a shell command, its output into dir/out and dir/err; exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[4096], full[4400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  snprintf(full, sizeof full, "cd %s && (%s) >%s/out 2>%s/err", dir, cmd, dir, dir);
  int st = system(full);
  int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  if (getenv("KFM_TEST_VERBOSE")) {
    fprintf(stderr, "$ %s -> %d\n", cmd, rc);
  }
  return rc;
}

static char *slurp(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    return strdup("");
  }
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return strdup(buf);
}

static int contains(const char *file, const char *what) {
  char *s = slurp(file);
  int ok = strstr(s, what) != NULL;
  if (!ok) {
    fprintf(stderr, "\n%s does not contain '%s':\n%s\n", file, what, s);
  }
  free(s);
  return ok;
}

static struct jr_val *load(const char *name) {
  char path[256], err[400];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  struct jr_val *v = jr_parse_file(path, err, sizeof err);
  if (v == NULL) {
    fprintf(stderr, "\n%s\n", err);
  }
  return v;
}

/* The node of a kfm.report whose name starts with prefix (the nth one). */
static const struct jr_val *report_node(const struct jr_val *rep, const char *prefix, int nth) {
  const struct jr_val *nodes = jr_get(rep, "nodes");
  for (size_t i = 0; nodes && i < nodes->n; i++) {
    const char *name = jr_str(&nodes->items[i], "name");
    if (name && strncmp(name, prefix, strlen(prefix)) == 0 && nth-- == 0) {
      return &nodes->items[i];
    }
  }
  fprintf(stderr, "\nno node '%s...' in the report\n", prefix);
  return NULL;
}

static int have(const char *path, const char *what) {
  if (path[0] == '\0' || access(path, X_OK) != 0) {
    printf("skipped: %s not built\n", what);
    return 0;
  }
  return 1;
}

/* ---- omp ----------------------------------------------------------------- */

/* The region nodes' names: "main (omp_regions.c:LINE)" at the lines of the
 * source's "#pragma omp parallel" when the program has debug information
 * and libdw.so.1 is there to read it, else "main+0x<offset>". */
static int omp_lines(int lines[2]) {
  FILE *f = fopen(HPC_OMP_SRC, "r");
  char buf[256];
  int n = 0, ln = 0;
  while (f && fgets(buf, sizeof buf, f) && n < 2) {
    ln++;
    if (strstr(buf, "#pragma omp parallel")) {
      lines[n++] = ln;
    }
  }
  if (f) {
    fclose(f);
  }
  return n == 2;
}

static void expect_region_name(const struct jr_val *node, int line) {
  const char *name = jr_str(node, "name");
  void *dw = dlopen("libdw.so.1", RTLD_LAZY | RTLD_NOLOAD);
  if (dw == NULL) {
    dw = dlopen("libdw.so.1", RTLD_LAZY);
  }
  if (HPC_OMP_DEBUGINFO && dw) {
    char want[128];
    snprintf(want, sizeof want, "omp parallel @ main (omp_regions.c:%d)", line);
    if (strcmp(name, want) != 0) {
      fprintf(stderr, "\nregion '%s', want '%s'\n", name, want);
    }
    CU_ASSERT_STRING_EQUAL(name, want);
  } else {
    printf("(no debug info or no libdw: regions named by offset)\n");
    CU_ASSERT_EQUAL(strncmp(name, "omp parallel @ main+0x", 22), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(name, "(hpc_omp_regions)"));
  }
  if (dw) {
    dlclose(dw);
  }
}

static void test_omp(void) {
  /* Region A 10 times, B 4 times, team of 3: 30 and 12 activations. */
  CU_ASSERT_EQUAL_FATAL(sh("OMP_NUM_THREADS=3 OMP_WAIT_POLICY=passive %s run -o prof.json -- %s "
                           "10 4 300",
                           KFM_EXE, HPC_OMP_PROG),
                        0);
  CU_ASSERT(contains("out", "threads 3"));
  CU_ASSERT_EQUAL_FATAL(sh("%s report --format json prof.json > rep.json", KFM_EXE), 0);
  struct jr_val *rep = load("rep.json");
  CU_ASSERT_PTR_NOT_NULL_FATAL(rep);
  const struct jr_val *root = report_node(rep, "hpc_omp_regions", 0);
  const struct jr_val *a = report_node(rep, "omp parallel @ main", 0);
  const struct jr_val *b = report_node(rep, "omp parallel @ main", 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(root);
  CU_ASSERT_PTR_NOT_NULL_FATAL(a);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_EQUAL(jr_num(root, "calls", -1), 1);
  CU_ASSERT_EQUAL(jr_num(a, "calls", -1), 30);
  CU_ASSERT_EQUAL(jr_num(b, "calls", -1), 12);
  int lines[2];
  CU_ASSERT_FATAL(omp_lines(lines));
  expect_region_name(a, lines[0]);
  expect_region_name(b, lines[1]);
  /* Each activation spins 300 us (B: 600 us) on its thread. */
  CU_ASSERT(jr_num(a, "call_ns_min", 0) >= 300e3);
  CU_ASSERT(jr_num(b, "call_ns_min", 0) >= 600e3);
  CU_ASSERT(jr_num(root, "total_ns_max", 0) >= 10 * 300e3 + 4 * 600e3);
  jr_free(rep);
  /* The text report shows the same nodes. */
  CU_ASSERT_EQUAL(sh("%s report prof.json", KFM_EXE), 0);
  CU_ASSERT(contains("out", "omp parallel @ main"));

  /* The same program on GNU libgomp: no OMPT, said, and no region nodes;
   * with --openmp=llvm it runs on LLVM libomp and gets them, exactly. */
  if (HPC_OMP_GOMP_PROG[0] == '\0') {
    printf("(libgomp case skipped: the compiler's OpenMP is not libgomp)\n");
    return;
  }
  CU_ASSERT_EQUAL(sh("OMP_NUM_THREADS=3 OMP_WAIT_POLICY=passive %s run -o g.json -- %s 10 4 300",
                     KFM_EXE, HPC_OMP_GOMP_PROG),
                  0);
  CU_ASSERT(contains("err", "uses GNU libgomp, which has no OMPT"));
  CU_ASSERT_EQUAL(sh("%s report --format csv g.json", KFM_EXE), 0);
  CU_ASSERT(contains("out", "\"hpc_omp_regions_gomp\",1,1,"));
  char *g = slurp("out");
  CU_ASSERT_PTR_NULL(strstr(g, "omp parallel"));
  free(g);
  CU_ASSERT_EQUAL(sh("OMP_NUM_THREADS=3 OMP_WAIT_POLICY=passive %s run --openmp=llvm -o l.json -- "
                     "%s 10 4 300",
                     KFM_EXE, HPC_OMP_GOMP_PROG),
                  0);
  CU_ASSERT(contains("out", "threads 3"));
  CU_ASSERT_EQUAL_FATAL(sh("%s report --format json l.json > lrep.json", KFM_EXE), 0);
  struct jr_val *l = load("lrep.json");
  CU_ASSERT_PTR_NOT_NULL_FATAL(l);
  const struct jr_val *la = report_node(l, "omp parallel @ main", 0);
  const struct jr_val *lb = report_node(l, "omp parallel @ main", 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(la);
  CU_ASSERT_PTR_NOT_NULL_FATAL(lb);
  CU_ASSERT_EQUAL(jr_num(la, "calls", -1), 30);
  CU_ASSERT_EQUAL(jr_num(lb, "calls", -1), 12);
  jr_free(l);
}

/* ---- errors ---------------------------------------------------------------- */

static void test_errors(void) {
  CU_ASSERT_EQUAL(sh("%s run -- ./no-such-program", KFM_EXE), 127);
  CU_ASSERT(contains("err", "program './no-such-program' not found"));
  CU_ASSERT_EQUAL(sh("%s run -- no-such-program-kfm", KFM_EXE), 127);
  CU_ASSERT(contains("err", "'no-such-program-kfm' not found in PATH"));
  if (HPC_STATIC_PROG[0]) {
    CU_ASSERT_EQUAL(sh("%s run -- %s", KFM_EXE, HPC_STATIC_PROG), 2);
    CU_ASSERT(contains("err", "is statically linked"));
  } else {
    printf("(static case skipped: no static C library)\n");
  }
  CU_ASSERT_EQUAL(sh("%s run -c level=bogus -- /bin/true", KFM_EXE), 2);
  CU_ASSERT(contains("err", "kfm run: bad config: level: bad value 'bogus'"));
  CU_ASSERT_EQUAL(sh("%s run -o 'p.%%x.json' -- /bin/true", KFM_EXE), 2);
  CU_ASSERT(contains("err", "unknown pattern '%x'"));
  CU_ASSERT_EQUAL(sh("%s report nothing-here.json", KFM_EXE), 1);
  CU_ASSERT(contains("err", "nothing-here.json: cannot open"));
  CU_ASSERT_EQUAL(sh("%s report --format yaml x.json", KFM_EXE), 2);
  CU_ASSERT(contains("err", "unknown format 'yaml'"));
  /* The program's own exit status comes through (exit_thread ends with 3).
   * A program built here rather than /bin/sh: under ThreadSanitizer the
   * runtime, when only the preloaded library brings it, does not set up a
   * thread started from a library constructor (the flush thread crashed at
   * its first call in 1 run of 15, rc 66 instead of 5). */
  CU_ASSERT_EQUAL(sh("%s run -o t.json -- %s", KFM_EXE, HPC_EXIT_PROG), 3);
}

/* ---- the C API in the run ----------------------------------------------- */

/* A node in kfm_session_default() joins the run's profile; a session the
 * program creates itself sees the user's KFM_CONFIG, not kfm run's, so it
 * cannot write over the run's output. */
static void test_api(void) {
  CU_ASSERT_EQUAL(sh("%s run -o run.json -- %s", KFM_EXE, HPC_OWN_PROG), 0);
  CU_ASSERT(contains("out", "KFM_CONFIG=(unset)"));
  CU_ASSERT_EQUAL_FATAL(sh("%s report --format csv run.json", KFM_EXE), 0);
  CU_ASSERT(contains("out", "\"hpc_own_session\",1,1,"));
  CU_ASSERT(contains("out", "\"shared\",1,1,"));
  char *out = slurp("out");
  CU_ASSERT_PTR_NULL(strstr(out, "\"mine\""));
  free(out);
  /* The user's own KFM_CONFIG is given back as it was. */
  CU_ASSERT_EQUAL(sh("KFM_CONFIG=level=standard %s run -o run2.json -- %s", KFM_EXE, HPC_OWN_PROG),
                  0);
  CU_ASSERT(contains("out", "KFM_CONFIG=level=standard\n"));
}

/* ---- exit ------------------------------------------------------------------ */

static void test_exit(void) {
  /* exit(3) from a second thread: complete, not truncated; the root, still
   * open on the main thread, is counted up to the end of the run. */
  CU_ASSERT_EQUAL(sh("%s run -o x.json -- %s", KFM_EXE, HPC_EXIT_PROG), 3);
  struct jr_val *x = load("x.json");
  CU_ASSERT_PTR_NOT_NULL_FATAL(x);
  CU_ASSERT_EQUAL(jr_get(x, "truncated")->type, JR_NULL);
  jr_free(x);
  CU_ASSERT_EQUAL(sh("%s report --format json x.json > xr.json", KFM_EXE), 0);
  struct jr_val *xr = load("xr.json");
  CU_ASSERT_PTR_NOT_NULL_FATAL(xr);
  const struct jr_val *root = report_node(xr, "hpc_exit_thread", 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(root);
  CU_ASSERT_EQUAL(jr_num(root, "active", -1), 1);
  CU_ASSERT(jr_num(root, "total_ns_max", 0) >= 50e6);
  jr_free(xr);

  /* SIGTERM: the default action still ends the program, after the file is
   * written, marked truncated with the signal. */
  if (!have(HPC_OMP_PROG, "hpc_omp_regions")) {
    return;
  }
  CU_ASSERT_EQUAL(
      sh("OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive %s run -o term.json -- %s 1000000 0 "
         "1000 & pid=$!; sleep 0.5; kill -TERM $pid; wait $pid",
         KFM_EXE, HPC_OMP_PROG),
      128 + SIGTERM);
  struct jr_val *t = load("term.json");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  const struct jr_val *tr = jr_get(t, "truncated");
  CU_ASSERT_PTR_NOT_NULL_FATAL(tr);
  CU_ASSERT_EQUAL(tr->type, JR_OBJ);
  CU_ASSERT_STRING_EQUAL(jr_str(tr, "reason"), "SIGTERM before kfm_session_stop");
  jr_free(t);
  CU_ASSERT_EQUAL(sh("%s report term.json", KFM_EXE), 0);
  CU_ASSERT(contains("out", "is truncated: SIGTERM before kfm_session_stop"));
}

/* ---- report ---------------------------------------------------------------- */

static void test_report(void) {
  /* Three "ranks" through the launcher's variable; rank 2 runs region A
   * twice as often. */
  for (int r = 0; r < 3; r++) {
    CU_ASSERT_EQUAL_FATAL(sh("PMI_RANK=%d OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive %s run -o "
                             "'p.%%r.json' -- %s %d 2 300",
                             r, KFM_EXE, HPC_OMP_PROG, r == 2 ? 20 : 10),
                          0);
  }
  /* A rank killed mid-write, and a file that is not a profile. */
  CU_ASSERT_EQUAL_FATAL(sh("head -c 500 p.1.json > p.3.json && echo '{\"a\":1}' > p.4.json"), 0);
  CU_ASSERT_EQUAL(sh("%s report --format json p.*.json > rep.json", KFM_EXE), 3);
  CU_ASSERT(contains("err", "skipped p.3.json: truncated: the JSON ends at byte 500"));
  CU_ASSERT(contains("err", "skipped p.4.json: not a kfm export"));
  struct jr_val *rep = load("rep.json");
  CU_ASSERT_PTR_NOT_NULL_FATAL(rep);
  CU_ASSERT_EQUAL(jr_num(rep, "profiles", 0), 3);
  CU_ASSERT_EQUAL(jr_num(rep, "unreadable", 0), 2);
  const struct jr_val *a = report_node(rep, "omp parallel @ main", 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(a);
  CU_ASSERT_EQUAL(jr_num(a, "calls", 0), (10 + 10 + 20) * 2);
  CU_ASSERT_EQUAL(jr_num(a, "calls_min", 0), 20);
  CU_ASSERT_EQUAL(jr_num(a, "calls_max", 0), 40);
  CU_ASSERT_EQUAL(jr_num(a, "slowest_rank", -1), 2);
  /* max/mean: 2 / (4/3) = 1.5 for the work itself; a loaded machine
   * stretches every rank's regions and pulls it towards 1. */
  CU_ASSERT(jr_num(a, "imbalance", 0) > 1.2);
  CU_ASSERT(jr_num(a, "imbalance", 0) < 1.8);
  const struct jr_val *per = jr_get(a, "total_ns_per_rank");
  CU_ASSERT_PTR_NOT_NULL_FATAL(per);
  CU_ASSERT_EQUAL_FATAL(per->n, 3);
  for (int r = 0; r < 3; r++) {
    /* Every activation spins 300 us on its thread: never less. */
    CU_ASSERT(per->items[r].num >= (r == 2 ? 20 : 10) * 2 * 300e3);
  }
  jr_free(rep);
  CU_ASSERT_EQUAL(sh("%s report p.0.json p.1.json p.2.json", KFM_EXE), 0);
  CU_ASSERT(contains("out", "3 ranks"));
  CU_ASSERT(contains("out", "rank 2"));
  CU_ASSERT_EQUAL(sh("%s report --format csv p.0.json p.1.json p.2.json", KFM_EXE), 0);
  CU_ASSERT(contains("out", "node,ranks,calls,calls_min,calls_max"));
  CU_ASSERT(contains("out", ",rank2_ms"));
  CU_ASSERT_EQUAL(sh("%s report --format markdown p.0.json p.1.json p.2.json", KFM_EXE), 0);
  CU_ASSERT(contains("out", "|---|"));
  CU_ASSERT_EQUAL(sh("%s report --format hatchet p.0.json", KFM_EXE), 0);
  CU_ASSERT(contains("out", "[{\"frame\":{\"name\":\"hpc_omp_regions\""));
}

/* ---- trace ----------------------------------------------------------------- */

static void test_trace(void) {
  for (int r = 0; r < 2; r++) {
    CU_ASSERT_EQUAL_FATAL(sh("OMPI_COMM_WORLD_RANK=%d OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive "
                             "%s run -c trace=on,output_format=both -o 'r.%%r.json' -- %s 3 1 200",
                             r, KFM_EXE, HPC_OMP_PROG),
                          0);
  }
  CU_ASSERT_EQUAL(sh("%s trace r.1.trace.json r.0.trace.json -o all.json", KFM_EXE), 0);
  struct jr_val *t = load("all.json");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  const struct jr_val *ev = jr_get(t, "traceEvents");
  CU_ASSERT_PTR_NOT_NULL_FATAL(ev);
  int spans[2] = {0, 0}, named[2] = {0, 0};
  for (size_t i = 0; i < ev->n; i++) {
    int pid = (int)jr_num(&ev->items[i], "pid", -1);
    const char *ph = jr_str(&ev->items[i], "ph"), *name = jr_str(&ev->items[i], "name");
    CU_ASSERT(pid == 0 || pid == 1);
    if (pid < 0 || pid > 1 || ph == NULL || name == NULL) {
      continue;
    }
    if (strcmp(ph, "X") == 0 && strncmp(name, "omp parallel @ main", 19) == 0) {
      spans[pid]++;
    }
    if (strcmp(ph, "M") == 0 && strcmp(name, "process_name") == 0) {
      char want[64];
      snprintf(want, sizeof want, "rank %d (r.%d.trace.json)", pid, pid);
      named[pid] += strcmp(jr_str(jr_get(&ev->items[i], "args"), "name"), want) == 0;
    }
  }
  /* (3 + 1) regions x 2 threads per rank. */
  CU_ASSERT_EQUAL(spans[0], 8);
  CU_ASSERT_EQUAL(spans[1], 8);
  CU_ASSERT_EQUAL(named[0], 1);
  CU_ASSERT_EQUAL(named[1], 1);
  jr_free(t);
  CU_ASSERT_EQUAL(sh("%s trace r.0.json -o bad.json", KFM_EXE), 1);
  CU_ASSERT(contains("err", "not a Chrome trace"));
}

/* ---- mpi ------------------------------------------------------------------- */

static void test_mpi(void) {
  const int iter = 20;
  CU_ASSERT_EQUAL_FATAL(sh("%s -np 4 --oversubscribe %s %s run -m merged.json -o 'r.%%r.json' -- "
                           "%s %d 2000",
                           MPIEXEC, getuid() == 0 ? "--allow-run-as-root" : "", KFM_EXE,
                           HPC_MPI_PROG, iter),
                        0);
  /* The ranks' values, passed round the ring, sum to 6 at every allreduce. */
  CU_ASSERT(contains("out", "sum 120"));
  CU_ASSERT_EQUAL_FATAL(sh("%s report --format json merged.json > rep.json", KFM_EXE), 0);
  struct jr_val *rep = load("rep.json");
  CU_ASSERT_PTR_NOT_NULL_FATAL(rep);
  CU_ASSERT_EQUAL(jr_num(rep, "profiles", 0), 4);
  const struct jr_val *c = report_node(rep, "compute", 0);
  const struct jr_val *ar = report_node(rep, "MPI_Allreduce", 0);
  const struct jr_val *sr = report_node(rep, "MPI_Sendrecv", 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(c);
  CU_ASSERT_PTR_NOT_NULL_FATAL(ar);
  CU_ASSERT_PTR_NOT_NULL_FATAL(sr);
  CU_ASSERT_EQUAL(jr_num(c, "calls", 0), 4 * iter);
  CU_ASSERT_EQUAL(jr_num(c, "calls_min", 0), iter);
  CU_ASSERT_EQUAL(jr_num(c, "calls_max", 0), iter);
  CU_ASSERT_EQUAL(jr_num(ar, "calls", 0), 4 * iter);
  CU_ASSERT_EQUAL(jr_num(ar, "calls_min", 0), iter);
  CU_ASSERT_EQUAL(jr_num(sr, "calls", 0), 4 * iter);
  /* 100 doubles sent and 100 received per call, two neighbours each. */
  CU_ASSERT_EQUAL(jr_num(sr, "bytes", 0), 4.0 * iter * 1600);
  CU_ASSERT_EQUAL(jr_num(sr, "peers", 0), 2);
  CU_ASSERT_EQUAL(jr_num(ar, "bytes", 0), 4.0 * iter * 8);
  CU_ASSERT_EQUAL(jr_num(ar, "peers", 0), 3);
  /* The imbalance is on compute, and rank 2 is named. */
  CU_ASSERT_EQUAL(jr_num(c, "slowest_rank", -1), 2);
  /* 2 / 1.25 = 1.6 for the work itself; wake-up delays on a loaded
   * machine (4 ranks on 2 cores) add to every rank and pull it down. */
  CU_ASSERT(jr_num(c, "imbalance", 0) > 1.3);
  CU_ASSERT(jr_num(c, "imbalance", 0) < 1.75);
  const struct jr_val *pc = jr_get(c, "total_ns_per_rank");
  const struct jr_val *pa = jr_get(ar, "total_ns_per_rank");
  CU_ASSERT_PTR_NOT_NULL_FATAL(pc);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pa);
  CU_ASSERT_EQUAL_FATAL(pc->n, 4);
  CU_ASSERT_EQUAL_FATAL(pa->n, 4);
  double others = 0;
  for (int r = 0; r < 4; r++) {
    /* Each compute sleeps 2 ms (4 ms on rank 2): never less, and late
     * wake-ups on a loaded machine add a little. */
    double want = (r == 2 ? 2 : 1) * iter * 2000e3;
    CU_ASSERT(pc->items[r].num >= want);
    CU_ASSERT(pc->items[r].num <= 2 * want);
    others += r == 2 ? 0 : pc->items[r].num / 3;
    CU_ASSERT(pa->items[r].num > 0); /* MPI_Allreduce time on every rank */
    /* The others wait for rank 2 in MPI_Allreduce. */
    if (r != 2) {
      CU_ASSERT(pa->items[r].num > pa->items[2].num);
    }
  }
  KT_NEAR(pc->items[2].num / others, 2.0, 0.25);
  jr_free(rep);
  CU_ASSERT_EQUAL(sh("%s report merged.json", KFM_EXE), 0);
  CU_ASSERT(contains("out", "4 ranks"));
  CU_ASSERT(contains("out", "inclusive ms per rank"));
  CU_ASSERT(contains("out", "hpc_mpi_imbalance: 4 activation(s) still open"));
  /* The per-rank files agree with the merged profile on counts. */
  CU_ASSERT_EQUAL(
      sh("%s report --format json r.0.json r.1.json r.2.json r.3.json > per.json", KFM_EXE), 0);
  struct jr_val *per = load("per.json");
  CU_ASSERT_PTR_NOT_NULL_FATAL(per);
  const struct jr_val *pcn = report_node(per, "compute", 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pcn);
  CU_ASSERT_EQUAL(jr_num(pcn, "calls", 0), 4 * iter);
  CU_ASSERT_EQUAL(jr_num(pcn, "slowest_rank", -1), 2);
  jr_free(per);
}

int main(int argc, char **argv) {
  const char *part = argc > 1 ? argv[1] : "";
  snprintf(dir, sizeof dir, "/tmp/kfm_cli_XXXXXX");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  unsetenv("KFM_CONFIG");
  static const struct kt_case omp[] = {{"omp", test_omp}, {NULL, NULL}};
  static const struct kt_case errors[] = {{"errors", test_errors}, {NULL, NULL}};
  static const struct kt_case ex[] = {{"exit", test_exit}, {"api", test_api}, {NULL, NULL}};
  static const struct kt_case report[] = {{"report", test_report}, {NULL, NULL}};
  static const struct kt_case trace[] = {{"trace", test_trace}, {NULL, NULL}};
  static const struct kt_case mpi[] = {{"mpi", test_mpi}, {NULL, NULL}};
  int rc;
  if (strcmp(part, "omp") == 0 || strcmp(part, "report") == 0 || strcmp(part, "trace") == 0) {
    if (!have(HPC_OMP_PROG, "hpc_omp_regions (needs LLVM libomp: libomp-dev)")) {
      return 77;
    }
    rc = kt_run(part, part[0] == 'o' ? omp : part[0] == 'r' ? report : trace);
  } else if (strcmp(part, "errors") == 0) {
    rc = kt_run(part, errors);
  } else if (strcmp(part, "exit") == 0) {
    rc = kt_run(part, ex);
  } else if (strcmp(part, "mpi") == 0) {
    if (!have(HPC_MPI_PROG, "hpc_mpi_imbalance (needs MPI: libopenmpi-dev openmpi-bin)")) {
      return 77;
    }
    rc = kt_run(part, mpi);
  } else {
    fprintf(stderr, "usage: test_kfm_cli omp|errors|exit|report|trace|mpi\n");
    return 2;
  }
  if (rc == 0 && !getenv("KFM_TEST_KEEP")) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) {
      fprintf(stderr, "could not remove %s\n", dir);
    }
  } else {
    fprintf(stderr, "files kept in %s\n", dir);
  }
  return rc;
}
