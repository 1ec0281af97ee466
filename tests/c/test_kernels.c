/*
 * test_kernels.c - ground truth of the synthetic workloads, without kfm.
 *
 * The profiler's accuracy tests compare what kfm attributes to a node with
 * what the kernel inside it did; that only means something if the kernels
 * themselves do what kfm_kernels.h promises.  This file checks each promise
 * against an independent OS measurement (process CPU clock, monotonic clock,
 * /proc/self/statm, getrusage, the file system).
 *
 * Timing bounds: a lower bound (the kernel did at least the work) must hold
 * on every run.  An upper bound can be broken by a preempted test process on
 * a loaded machine, so timing checks take the best of a few attempts.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp */
#endif
#include "kfm_kernels.h"

#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "kfm_test.h"

#define ATTEMPTS 3

static double now_ms(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Resident set size in bytes from /proc/self/statm (second field, pages). */
static double rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (!f)
    return NAN;
  int n = fscanf(f, "%lu %lu", &size, &resident);
  fclose(f);
  return n == 2 ? (double)resident * (double)sysconf(_SC_PAGESIZE) : NAN;
}

static long minflt(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

/* ---------------------------------------------------------------------- */

static void test_busy_cpu_time(void) {
  const double want = 50.0;
  double best = INFINITY;
  for (int i = 0; i < ATTEMPTS; i++) {
    double t0 = now_ms(CLOCK_PROCESS_CPUTIME_ID);
    CU_ASSERT_EQUAL_FATAL(kfmk_busy_ms(want), 0);
    double used = now_ms(CLOCK_PROCESS_CPUTIME_ID) - t0;
    CU_ASSERT(used >= want); /* the spin stops only once the budget is used */
    if (fabs(used - want) < fabs(best - want))
      best = used;
  }
  printf("\n    busy_ms(50): best CPU %.3f ms ", best);
  CU_ASSERT(fabs(best - want) <= 0.10 * want);
}

static void test_sleep_wall_time(void) {
  const double want = 20.0;
  double best = INFINITY;
  for (int i = 0; i < ATTEMPTS; i++) {
    double t0 = now_ms(CLOCK_MONOTONIC);
    double c0 = now_ms(CLOCK_PROCESS_CPUTIME_ID);
    CU_ASSERT_EQUAL_FATAL(kfmk_sleep_ms(want), 0);
    double wall = now_ms(CLOCK_MONOTONIC) - t0;
    double cpu = now_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
    CU_ASSERT(wall >= want);
    CU_ASSERT(cpu < 0.10 * want); /* sleeping, not spinning */
    if (fabs(wall - want) < fabs(best - want))
      best = wall;
  }
  printf("\n    sleep_ms(20): best wall %.3f ms ", best);
  CU_ASSERT(fabs(best - want) <= 0.10 * want);
}

static void test_zero_durations(void) {
  CU_ASSERT_EQUAL(kfmk_busy_ms(0), 0);
  CU_ASSERT_EQUAL(kfmk_sleep_ms(0), 0);
}

static void test_time_bad_args(void) {
  CU_ASSERT_EQUAL(kfmk_busy_ms(-1.0), -EINVAL);
  CU_ASSERT_EQUAL(kfmk_busy_ms(NAN), -EINVAL);
  CU_ASSERT_EQUAL(kfmk_sleep_ms(-1.0), -EINVAL);
  CU_ASSERT_EQUAL(kfmk_sleep_ms(INFINITY), -EINVAL);
}

/* ---------------------------------------------------------------------- */

static void test_touch_retain_rss(void) {
  const size_t mb = 64;
  const double want = (double)(mb << 20) * KT_RSS_SCALE;
  void *keep = NULL;
  size_t pages = 0;
  double r0 = rss_bytes();
  CU_ASSERT_EQUAL_FATAL(kfmk_touch_mb(mb, 1, &keep, &pages), 0);
  double r1 = rss_bytes();
  CU_ASSERT_PTR_NOT_NULL(keep);
  CU_ASSERT_EQUAL(pages, mb * KFMK_PAGES_PER_MB);
  CU_ASSERT_EQUAL(kfmk_release(&keep, mb), 0);
  CU_ASSERT_PTR_NULL(keep);
  double r2 = rss_bytes();
  printf("\n    touch_mb(64, retain): RSS +%.2f MB, release -%.2f MB ", (r1 - r0) / 1048576.0,
         (r1 - r2) / 1048576.0);
  CU_ASSERT(fabs((r1 - r0) - want) <= 0.10 * want);
  CU_ASSERT(fabs((r1 - r2) - want) <= 0.10 * want);
}

static void test_touch_no_retain(void) {
  void *keep = (void *)1;
  size_t pages = 0;
  long f0 = minflt();
  double r0 = rss_bytes();
  CU_ASSERT_EQUAL_FATAL(kfmk_touch_mb(16, 0, &keep, &pages), 0);
  double r1 = rss_bytes();
  long f1 = minflt();
  CU_ASSERT_PTR_NULL(keep);
  CU_ASSERT_EQUAL(pages, 16 * KFMK_PAGES_PER_MB);
  CU_ASSERT(fabs(r1 - r0) <= 0.10 * (double)(16 << 20)); /* freed before return */
  CU_ASSERT(f1 - f0 >= (long)pages);                     /* one fault per page */
  /* keep may be NULL when nothing is retained. */
  CU_ASSERT_EQUAL(kfmk_touch_mb(1, 0, NULL, NULL), 0);
}

static void test_touch_bad_args(void) {
  CU_ASSERT_EQUAL(kfmk_touch_mb(1, 1, NULL, NULL), -EINVAL);
  CU_ASSERT_EQUAL(kfmk_touch_mb(SIZE_MAX, 0, NULL, NULL), -EINVAL);
  void *keep = (void *)1;
  CU_ASSERT_EQUAL(kfmk_touch_mb(0, 1, &keep, NULL), 0);
  CU_ASSERT_PTR_NULL(keep);
  CU_ASSERT_EQUAL(kfmk_release(&keep, 0), 0);
  CU_ASSERT_EQUAL(kfmk_release(NULL, 1), 0);
}

static void test_page_faults(void) {
  long f0 = minflt();
  CU_ASSERT_EQUAL_FATAL(kfmk_page_faults(1000), 0);
  long f1 = minflt();
  printf("\n    page_faults(1000): ru_minflt +%ld ", f1 - f0);
  CU_ASSERT(f1 - f0 >= 1000);
  CU_ASSERT_EQUAL(kfmk_page_faults(0), 0);
  CU_ASSERT_EQUAL(kfmk_page_faults(SIZE_MAX), -EINVAL);
}

/* ---------------------------------------------------------------------- */

/* Expected triad checksum computed serially from the published layout. */
static double triad_expected(size_t mb, int reps) {
  const size_t n = KFMK_TRIAD_ELEMS(mb);
  double sum = 0.0;
  for (size_t i = 0; i < n; i++)
    sum += KFMK_TRIAD_B(i) + KFMK_TRIAD_S * KFMK_TRIAD_C(i);
  return sum * reps;
}

static void test_omp_triad_checksum(void) {
  const size_t mb = 24;
  const int reps = 3;
  const double want = triad_expected(mb, reps);
  const int threads[] = {0, 1, 2, 3};
  for (size_t k = 0; k < sizeof threads / sizeof threads[0]; k++) {
    double got = -1.0;
    CU_ASSERT_EQUAL_FATAL(kfmk_omp_triad(mb, threads[k], reps, &got), 0);
    CU_ASSERT_DOUBLE_EQUAL(got, want, 0.0);
    if (got != want)
      printf("\n    threads=%d: checksum %.17g, expected %.17g ", threads[k], got, want);
  }
}

static void test_omp_triad_bad_args(void) {
  double sum;
  CU_ASSERT_EQUAL(kfmk_omp_triad(0, 0, 1, &sum), -EINVAL);
  CU_ASSERT_EQUAL(kfmk_omp_triad(1, 0, 0, &sum), -EINVAL);
  CU_ASSERT_EQUAL(kfmk_omp_triad(1, 0, 1, NULL), -EINVAL);
}

/* ---------------------------------------------------------------------- */

static void test_loopback_tcp(void) {
  CU_ASSERT_EQUAL(kfmk_loopback_tcp((size_t)1 << 20), 0);
  CU_ASSERT_EQUAL(kfmk_loopback_tcp(0), 0);
  CU_ASSERT_EQUAL(kfmk_loopback_tcp(12345), 0); /* not a multiple of the chunk */
}

/* ---------------------------------------------------------------------- */

static int dir_entries(const char *path) {
  DIR *d = opendir(path);
  if (!d)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      n++;
  closedir(d);
  return n;
}

static void test_file_fsync(void) {
  const char *base = getenv("TMPDIR");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/kfmk-test-XXXXXX", base && *base ? base : "/tmp");
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  CU_ASSERT_EQUAL(kfmk_file_fsync(dir, (size_t)1 << 20), 0);
  CU_ASSERT_EQUAL(kfmk_file_fsync(dir, 100001), 0);
  CU_ASSERT_EQUAL(kfmk_file_fsync(dir, 0), 0);
  CU_ASSERT_EQUAL(dir_entries(dir), 0); /* no file left behind */
  CU_ASSERT_EQUAL(rmdir(dir), 0);
  /* A missing directory fails cleanly with the errno of mkstemp. */
  CU_ASSERT_EQUAL(kfmk_file_fsync(dir, 1), -ENOENT);
}

/* ---------------------------------------------------------------------- */

int main(void) {
  if (CU_initialize_registry() != CUE_SUCCESS)
    return (int)CU_get_error();
  static const struct {
    const char *name;
    void (*fn)(void);
  } tests[] = {
      {"busy_ms uses its CPU budget", test_busy_cpu_time},
      {"sleep_ms sleeps its wall time", test_sleep_wall_time},
      {"zero durations", test_zero_durations},
      {"time kernels reject bad args", test_time_bad_args},
      {"touch_mb retain raises and release returns RSS", test_touch_retain_rss},
      {"touch_mb without retain frees", test_touch_no_retain},
      {"touch_mb bad args", test_touch_bad_args},
      {"page_faults raises ru_minflt", test_page_faults},
      {"omp_triad checksum is exact", test_omp_triad_checksum},
      {"omp_triad bad args", test_omp_triad_bad_args},
      {"loopback_tcp delivers every byte", test_loopback_tcp},
      {"file_fsync writes and leaves nothing", test_file_fsync},
  };
  CU_pSuite suite = CU_add_suite("kernels", NULL, NULL);
  if (!suite)
    goto fail;
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
    if (!CU_add_test(suite, tests[i].name, tests[i].fn))
      goto fail;
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
  CU_cleanup_registry();
  return failed ? 1 : 0;
fail:
  fprintf(stderr, "CUnit setup failed: %s\n", CU_get_error_msg());
  CU_cleanup_registry();
  return 2;
}
