/*
 * kfm_test.h - small helpers shared by the CUnit test programs: a runner
 * that exits non-zero on any failure, and an assertion that prints kfm's
 * detail message when a call fails, so a red test says why.
 */
#ifndef KFM_TEST_H
#define KFM_TEST_H

#include <CUnit/Basic.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kfm/kfm.h"

/* ThreadSanitizer keeps shadow memory for every application page touched,
 * so under it the process's RSS truly rises twice as much. */
#if defined(__SANITIZE_THREAD__)
#define KT_RSS_SCALE 2.0
#else
#define KT_RSS_SCALE 1.0
#endif

#define KT_OK(s, call)                                                                             \
  do {                                                                                             \
    int kt_rc_ = (call);                                                                           \
    if (kt_rc_ != 0) {                                                                             \
      fprintf(stderr, "\n%s:%d: %s -> %s (%s)\n", __FILE__, __LINE__, #call,                       \
              kfm_err_name(kt_rc_), kfm_errmsg(s));                                                \
    }                                                                                              \
    CU_ASSERT_EQUAL_FATAL(kt_rc_, 0);                                                              \
  } while (0)

/* |got - want| <= tol * want */
#define KT_NEAR(got, want, tol)                                                                    \
  do {                                                                                             \
    double kt_g_ = (double)(got), kt_w_ = (double)(want);                                          \
    int kt_ok_ = kt_g_ >= kt_w_ * (1 - (tol)) && kt_g_ <= kt_w_ * (1 + (tol));                     \
    if (!kt_ok_) {                                                                                 \
      fprintf(stderr, "\n%s:%d: %s = %g, want %g within %g%%\n", __FILE__, __LINE__, #got, kt_g_,  \
              kt_w_, 100.0 * (tol));                                                               \
    }                                                                                              \
    CU_ASSERT_TRUE(kt_ok_);                                                                        \
  } while (0)

struct kt_case {
  const char *name;
  void (*fn)(void);
};

static inline int kt_run(const char *suite, const struct kt_case *cases) {
  if (CU_initialize_registry() != CUE_SUCCESS) {
    return 2;
  }
  CU_pSuite s = CU_add_suite(suite, NULL, NULL);
  for (const struct kt_case *c = cases; c->name; c++) {
    CU_add_test(s, c->name, c->fn);
  }
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  unsigned run = CU_get_number_of_tests_run();
  CU_cleanup_registry();
  return failed || run == 0 ? 1 : 0;
}

/* Index of a transition metric in a report; a missing one fails the test. */
static inline int kt_metric(const kfm_report_t *r, const char *name) {
  int i = kfm_report_metric_index(r, name);
  if (i < 0) {
    fprintf(stderr, "\nmetric %s missing\n", name);
  }
  CU_ASSERT_FATAL(i >= 0);
  return i;
}

/* Current RSS in bytes from /proc/self/statm. */
static inline double kt_rss(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, res = 0;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &res) != 2) {
      res = 0;
    }
    fclose(f);
  }
  return (double)res * 4096.0;
}

/* The whole file as a NUL-terminated string (caller frees), or NULL. */
static inline char *kt_slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
  size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
  if (buf) {
    buf[got] = '\0';
  }
  fclose(f);
  return buf;
}

/* Calls of a node in a fresh report of s; 0 if it has none, UINT64_MAX if
 * no report could be taken. */
static inline uint64_t kt_node_count(kfm_session_t *s, const char *name) {
  kfm_report_t *r;
  kfm_node_stats_t n;
  if (kfm_session_report(s, &r) != 0) {
    return UINT64_MAX;
  }
  uint64_t c = kfm_report_node_by_name(r, name, &n) == 0 ? n.count : 0;
  kfm_report_free(r);
  return c;
}

/* A new folder "$TMPDIR/kfm-<tag>-XXXXXX" (under /tmp without TMPDIR),
 * its name written to dir: 0, or -1 with the reason printed. */
static inline int kt_tmpdir(char *dir, size_t size, const char *tag) {
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, size, "%s/kfm-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return -1;
  }
  return 0;
}

/* Removes dir and what it holds, parts a test made read-only included. */
static inline void kt_rmtree(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", dir, dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "could not remove %s\n", dir);
  }
}

/* Waits up to 10 s for a child.  Its raw wait status, or -1 when it was
 * still running then: it is killed and reported as hung, so a hang fails
 * the test instead of blocking the suite. */
static inline int kt_wait(pid_t pid) {
  for (int i = 0; i < 1000; i++) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      return st;
    }
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  fprintf(stderr, "child %d hung (killed after 10 s)\n", (int)pid);
  return -1;
}

#endif
