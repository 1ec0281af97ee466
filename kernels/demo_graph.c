/*
 * demo_graph.c - profile a small example application graph with kfm.
 *
 * The "application" is a pipeline of phases built from the synthetic kernels,
 * so you know what each node really did and can judge what kfm reports:
 *
 *   load_input   sleep 20 ms (waiting on input), touch 16 MB and free it
 *   parse        30 ms of CPU
 *   simulate     x5 iterations, each containing
 *     compute    OpenMP triad over 64 MB, 4 repetitions
 *     exchange   8 MB over a loopback TCP connection
 *   checkpoint   write 4 MB to a temp file in $TMPDIR (or /tmp), fsync, delete
 *   summarize    touch 32 MB, keep it while summarising, then free it
 *
 * Usage: demo_graph [profile.json]   (default kfm-demo-profile.json)
 * The KFM_CONFIG environment variable overrides the configuration, e.g.
 *   KFM_CONFIG=level=basic ./demo_graph
 */
#include "kfm_kernels.h"

#include <kfm/kfm.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ITERATIONS 5

/* The session is global only so that the error helpers can report its
 * detail message and clean up; a real application would pass it around. */
static kfm_session_t *session;

/* Fail on a kfm error: print the code's text and the session's detail
 * message (which names the bad value), then exit 1. */
static void check(int rc, const char *what) {
  if (rc >= 0)
    return;
  fprintf(stderr, "demo_graph: %s: %s (%s)\n", what, kfm_strerror(rc), kfm_err_name(rc));
  const char *detail = kfm_errmsg(session);
  if (detail && *detail)
    fprintf(stderr, "demo_graph:   %s\n", detail);
  kfm_session_destroy(session);
  exit(1);
}

/* Fail on a kernel error (kernels return -errno, not kfm codes). */
static void check_kernel(int rc, const char *what) {
  if (rc >= 0)
    return;
  fprintf(stderr, "demo_graph: %s: %s\n", what, strerror(-rc));
  kfm_session_destroy(session);
  exit(1);
}

/* Node ids, interned once so the enter/exit calls never hash a string. */
static kfm_node_id_t n_load, n_parse, n_simulate, n_compute, n_exchange, n_checkpoint, n_summarize;

static void register_nodes(void) {
  static const struct {
    const char *name;
    kfm_node_id_t *id;
  } nodes[] = {
      {"load_input", &n_load},     {"parse", &n_parse},       {"simulate", &n_simulate},
      {"compute", &n_compute},     {"exchange", &n_exchange}, {"checkpoint", &n_checkpoint},
      {"summarize", &n_summarize},
  };
  for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++)
    check(kfm_node_register(session, nodes[i].name, nodes[i].id), nodes[i].name);
}

static const char *node_label(kfm_node_id_t id) {
  const char *name = kfm_node_name(session, id);
  return name ? name : "(unknown node)";
}

static void enter(kfm_node_id_t id) {
  check(kfm_enter(session, id), node_label(id));
}

static void leave(kfm_node_id_t id) {
  check(kfm_exit(session, id), node_label(id));
}

/* ---------------------------------------------------------------------- */
/* The application                                                          */

static void run_application(const char *tmpdir) {
  enter(n_load);
  check_kernel(kfmk_sleep_ms(20), "load_input: sleep");
  check_kernel(kfmk_touch_mb(16, 0, NULL, NULL), "load_input: touch 16 MB");
  leave(n_load);

  enter(n_parse);
  check_kernel(kfmk_busy_ms(30), "parse: busy");
  leave(n_parse);

  double checksum = 0.0;
  for (int it = 0; it < ITERATIONS; it++) {
    enter(n_simulate);

    enter(n_compute);
    double sum;
    check_kernel(kfmk_omp_triad(64, 0, 4, &sum), "compute: triad");
    checksum += sum;
    leave(n_compute);

    enter(n_exchange);
    check_kernel(kfmk_loopback_tcp((size_t)8 << 20), "exchange: loopback tcp");
    leave(n_exchange);

    leave(n_simulate);
  }

  enter(n_checkpoint);
  check_kernel(kfmk_file_fsync(tmpdir, (size_t)4 << 20), "checkpoint: write+fsync");
  leave(n_checkpoint);

  enter(n_summarize);
  void *results = NULL;
  check_kernel(kfmk_touch_mb(32, 1, &results, NULL), "summarize: touch 32 MB");
  check_kernel(kfmk_release(&results, 32), "summarize: release");
  leave(n_summarize);

  printf("application done (triad checksum %.0f)\n\n", checksum);
}

/* ---------------------------------------------------------------------- */
/* Our own table, read through the report API                               */

/* Nesting depth of a node, from the parent -> child edges kfm recorded. */
static int node_depth(const kfm_report_t *r, kfm_node_id_t id) {
  int depth = 0;
  size_t nedges = kfm_report_edge_count(r, KFM_EDGE_NESTED);
  for (int guard = 0; guard < KFM_STACK_MAX; guard++) {
    kfm_node_id_t parent = KFM_NODE_ROOT;
    for (size_t i = 0; i < nedges && parent == KFM_NODE_ROOT; i++) {
      kfm_edge_t e;
      if (kfm_report_edge(r, KFM_EDGE_NESTED, i, &e) == 0 && e.to == id)
        parent = e.from;
    }
    if (parent == KFM_NODE_ROOT)
      break;
    depth++;
    id = parent;
  }
  return depth;
}

static void print_table(void) {
  kfm_report_t *r = NULL;
  check(kfm_session_report(session, &r), "kfm_session_report");

  kfm_summary_t sum;
  kfm_report_summary(r, &sum);
  const char *level = kfm_level_name(sum.level);
  printf("== demo_graph summary: level %s, wall %.1f ms, %llu samples at %.0f Hz, %u thread(s)\n",
         level ? level : "?", sum.wall_ns / 1e6, (unsigned long long)sum.samples, sum.rate_hz,
         sum.threads);
  printf("%-16s %6s %10s %9s %9s %10s %9s\n", "node", "calls", "total ms", "mean ms", "p99 ms",
         "excl ms", "peak MB");
  size_t n = kfm_report_node_count(r);
  for (size_t i = 0; i < n; i++) {
    kfm_node_stats_t st;
    check(kfm_report_node(r, i, &st), "kfm_report_node");
    char name[40];
    int depth = node_depth(r, st.id);
    snprintf(name, sizeof name, "%*s%s", 2 * depth, "", st.name);
    char peak[16] = "-"; /* peak RSS is only measured at STANDARD and above */
    if (!isnan(st.peak_rss))
      snprintf(peak, sizeof peak, "%.1f", st.peak_rss / 1048576.0);
    printf("%-16s %6llu %10.2f %9.2f %9.2f %10.2f %9s\n", name, (unsigned long long)st.count,
           st.total_ns / 1e6, st.mean_ns / 1e6, st.p99_ns / 1e6, st.exclusive_ns / 1e6, peak);
  }

  printf("\nbackends:\n");
  size_t nb = kfm_report_backend_count(r);
  for (size_t i = 0; i < nb; i++) {
    kfm_backend_status_t b;
    check(kfm_report_backend(r, i, &b), "kfm_report_backend");
    printf("  %-12s %s%s\n", b.name, b.available ? "available" : b.reason,
           b.available && !b.enabled ? " (not used by this session)" : "");
  }
  kfm_report_free(r);
}

/* ---------------------------------------------------------------------- */

int main(int argc, char **argv) {
  const char *output = argc > 1 ? argv[1] : "kfm-demo-profile.json";
  if (argc > 2 || strchr(output, ',') || output[0] == '-') {
    fprintf(stderr, "usage: %s [profile.json]   (the path may not contain ',')\n", argv[0]);
    return 2;
  }
  const char *tmpdir = getenv("TMPDIR");
  if (!tmpdir || !*tmpdir)
    tmpdir = "/tmp";

  char config[1200];
  int len = snprintf(config, sizeof config, "level=comprehensive,output=%s", output);
  if (len < 0 || (size_t)len >= sizeof config) {
    fprintf(stderr, "demo_graph: output path too long\n");
    return 2;
  }
  /* On failure session stays NULL and kfm_errmsg(NULL) holds the detail. */
  check(kfm_session_create_str(&session, config), "kfm_session_create_str");
  register_nodes();
  check(kfm_session_start(session), "kfm_session_start");

  run_application(tmpdir);

  /* stop also writes the JSON export configured by output=. */
  check(kfm_session_stop(session), "kfm_session_stop");
  check(kfm_session_print(session, stdout), "kfm_session_print");
  printf("\n");
  print_table();
  printf("\nprofile written to %s (unless KFM_CONFIG set another output)\n", output);

  kfm_session_destroy(session);
  return 0;
}
