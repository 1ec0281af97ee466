/*
 * test_poller.c - the background poller (engine/src/poller.c) that NVML's
 * and ROCm SMI's sessions read their libraries on: a stop wakes a long
 * wait at once, a wait without stop lasts its period, threads start and
 * stop repeatedly on one poller, the thread limit holds, and destroy stops
 * running threads.  Run under ThreadSanitizer too: the stop flag and the
 * joins must not race with the threads.
 */
#include <stdatomic.h>
#include <time.h>

#include "kfm_test.h"
#include "poller.h"

static double pl_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void pl_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* What a test thread shares with the test. */
struct pl_job {
  struct kfm__poller *p;
  unsigned period_ms;
  _Atomic int started;
  _Atomic int rounds; /* completed waits that did not end in stop */
  _Atomic int saw_stop;
};

/* The backends' fast-poller shape: wait, then read, until stop. */
static void *pl_wait_loop(void *arg) {
  struct pl_job *j = arg;
  atomic_store(&j->started, 1);
  while (!kfm__poller_wait_ms(j->p, j->period_ms)) {
    atomic_fetch_add(&j->rounds, 1);
  }
  atomic_store(&j->saw_stop, 1);
  return NULL;
}

/* The backends' PCIe-poller shape: slow reads checked against stopping(). */
static void *pl_busy_loop(void *arg) {
  struct pl_job *j = arg;
  atomic_store(&j->started, 1);
  while (!kfm__poller_stopping(j->p)) {
    atomic_fetch_add(&j->rounds, 1);
    pl_sleep_ms(1); /* a "read" */
  }
  atomic_store(&j->saw_stop, 1);
  return NULL;
}

static void pl_wait_started(struct pl_job *j) {
  double t0 = pl_now_ms();
  while (!atomic_load(&j->started) && pl_now_ms() - t0 < 5000) {
    pl_sleep_ms(1);
  }
  CU_ASSERT_TRUE_FATAL(atomic_load(&j->started));
}

static void test_stop_wakes_long_wait(void) {
  struct kfm__poller p;
  struct pl_job j = {.p = &p, .period_ms = 10000};
  CU_ASSERT_EQUAL_FATAL(kfm__poller_init(&p), 0);
  CU_ASSERT_EQUAL_FATAL(kfm__poller_start(&p, pl_wait_loop, &j), 0);
  pl_wait_started(&j);
  pl_sleep_ms(50); /* the thread is inside its 10 s wait by now */
  double t0 = pl_now_ms();
  kfm__poller_stop(&p);
  double took = pl_now_ms() - t0;
  /* At once: far below the 10 s period, with room for a slow sanitizer run. */
  if (took >= 1000) {
    fprintf(stderr, "\nstop took %.0f ms\n", took);
  }
  CU_ASSERT_TRUE(took < 1000);
  CU_ASSERT_EQUAL(atomic_load(&j.saw_stop), 1);
  CU_ASSERT_EQUAL(atomic_load(&j.rounds), 0);
  kfm__poller_destroy(&p);
}

static void test_wait_lasts_its_period(void) {
  struct kfm__poller p;
  CU_ASSERT_EQUAL_FATAL(kfm__poller_init(&p), 0);
  CU_ASSERT_EQUAL(kfm__poller_stopping(&p), 0);
  double t0 = pl_now_ms();
  CU_ASSERT_EQUAL(kfm__poller_wait_ms(&p, 30), 0);
  double took = pl_now_ms() - t0;
  CU_ASSERT_TRUE(took >= 29.5);
  /* Over a second: the seconds and nanoseconds of the deadline carry. */
  t0 = pl_now_ms();
  CU_ASSERT_EQUAL(kfm__poller_wait_ms(&p, 1010), 0);
  took = pl_now_ms() - t0;
  CU_ASSERT_TRUE(took >= 1009.5);
  kfm__poller_destroy(&p);
}

static void test_threads_poll_until_stop(void) {
  struct kfm__poller p;
  struct pl_job w = {.p = &p, .period_ms = 5};
  struct pl_job b = {.p = &p};
  CU_ASSERT_EQUAL_FATAL(kfm__poller_init(&p), 0);
  CU_ASSERT_EQUAL_FATAL(kfm__poller_start(&p, pl_wait_loop, &w), 0);
  CU_ASSERT_EQUAL_FATAL(kfm__poller_start(&p, pl_busy_loop, &b), 0);
  pl_wait_started(&w);
  pl_wait_started(&b);
  pl_sleep_ms(100);
  kfm__poller_stop(&p);
  CU_ASSERT_TRUE(atomic_load(&w.rounds) >= 2);
  CU_ASSERT_TRUE(atomic_load(&b.rounds) >= 2);
  CU_ASSERT_EQUAL(atomic_load(&w.saw_stop), 1);
  CU_ASSERT_EQUAL(atomic_load(&b.saw_stop), 1);
  kfm__poller_destroy(&p);
}

static void test_start_stop_repeatedly(void) {
  struct kfm__poller p;
  CU_ASSERT_EQUAL_FATAL(kfm__poller_init(&p), 0);
  for (int i = 0; i < 40; i++) {
    struct pl_job w = {.p = &p, .period_ms = 10000};
    struct pl_job b = {.p = &p};
    CU_ASSERT_EQUAL_FATAL(kfm__poller_start(&p, pl_wait_loop, &w), 0);
    CU_ASSERT_EQUAL_FATAL(kfm__poller_start(&p, pl_busy_loop, &b), 0);
    /* Every other round stops before the threads may even have run. */
    if (i % 2) {
      pl_wait_started(&w);
      pl_wait_started(&b);
    }
    kfm__poller_stop(&p);
    CU_ASSERT_EQUAL(atomic_load(&w.saw_stop), 1);
    CU_ASSERT_EQUAL(atomic_load(&b.saw_stop), 1);
    CU_ASSERT_EQUAL(atomic_load(&w.rounds), 0);
    /* The flag is clear again for the next start. */
    CU_ASSERT_EQUAL(kfm__poller_stopping(&p), 0);
  }
  kfm__poller_stop(&p); /* with no thread: harmless */
  kfm__poller_destroy(&p);
}

static void test_thread_limit(void) {
  struct kfm__poller p;
  struct pl_job j[KFM__POLLER_MAX_THREADS + 1];
  CU_ASSERT_EQUAL_FATAL(kfm__poller_init(&p), 0);
  for (int i = 0; i <= KFM__POLLER_MAX_THREADS; i++) {
    j[i] = (struct pl_job){.p = &p, .period_ms = 10000};
  }
  for (int i = 0; i < KFM__POLLER_MAX_THREADS; i++) {
    CU_ASSERT_EQUAL(kfm__poller_start(&p, pl_wait_loop, &j[i]), 0);
  }
  CU_ASSERT_EQUAL(kfm__poller_start(&p, pl_wait_loop, &j[KFM__POLLER_MAX_THREADS]), KFM_EFULL);
  kfm__poller_stop(&p);
  for (int i = 0; i < KFM__POLLER_MAX_THREADS; i++) {
    CU_ASSERT_EQUAL(atomic_load(&j[i].saw_stop), 1);
  }
  CU_ASSERT_EQUAL(atomic_load(&j[KFM__POLLER_MAX_THREADS].started), 0);
  kfm__poller_destroy(&p);
}

static void test_destroy_stops_threads(void) {
  struct kfm__poller p;
  struct pl_job j = {.p = &p, .period_ms = 10000};
  CU_ASSERT_EQUAL_FATAL(kfm__poller_init(&p), 0);
  CU_ASSERT_EQUAL_FATAL(kfm__poller_start(&p, pl_wait_loop, &j), 0);
  pl_wait_started(&j);
  double t0 = pl_now_ms();
  kfm__poller_destroy(&p);
  CU_ASSERT_TRUE(pl_now_ms() - t0 < 1000);
  CU_ASSERT_EQUAL(atomic_load(&j.saw_stop), 1);
}

int main(void) {
  static const struct kt_case cases[] = {
      {"stop wakes a 10 s wait at once", test_stop_wakes_long_wait},
      {"a wait without stop lasts its period", test_wait_lasts_its_period},
      {"wait and stopping() loops run until stop", test_threads_poll_until_stop},
      {"start and stop repeatedly on one poller", test_start_stop_repeatedly},
      {"thread limit: KFM_EFULL beyond it", test_thread_limit},
      {"destroy stops running threads", test_destroy_stops_threads},
      {NULL, NULL},
  };
  return kt_run("poller", cases);
}
