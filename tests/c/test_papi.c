/*
 * test_papi.c - unit tests of the PAPI counter backend (backends/papi).
 *
 * The backend is driven through its ops table the way the engine drives
 * it (open on the session's thread, thread_open/read/thread_close on the
 * profiled threads, export_json at the end).  These machines have no
 * hardware PMU, so the software-event path is exercised end to end against
 * work of known size (kernels/kfm_kernels.h), and the preset path is checked
 * for how it degrades: presets that exist but are unavailable are refused
 * by name, and the defaults fall back to perf software events.  Where a
 * check depends on the machine (presets present, kernel multiplexing
 * possible) the test asks PAPI which case holds and asserts that case.
 *
 * Multiplexing: software events never conflict (PAPI adds 13 of them to
 * one group on a 6-counter PMU), so 8 software events are checked to stay
 * un-multiplexed; the multiplexed path is forced through kfm__papi_open_ex
 * and, here, must fail with a message saying why (PAPI's perf_event
 * multiplexing probes a hardware instructions counter first).
 *
 * Fixture: $KFM_TEST_FIXTURES/papi/paranoid_3, a perf_event_paranoid file
 * containing "3".  Exit status 77 (skip) when PAPI cannot be initialised
 * or the kernel refuses per-thread counters, with the reason printed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#ifndef KFM_HAVE_PAPI
#include <stdio.h>

int main(void) {
  printf("test_papi: skipped: kfm was built without PAPI (KFM_HAVE_PAPI undefined)\n");
  return 77;
}
#else

#include "papi/papi.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <limits.h>
#include <papi.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kfm_kernels.h"
#include "kfm_test.h"

#define B kfm__backend_papi
#define NS_PER_MS 1000000.0

static const char *fixtures; /* $KFM_TEST_FIXTURES */

/* ---------------------------------------------------------------------- */
/* Helpers.                                                                */

struct session {
  void *st;
  char err[200]; /* the engine's buffer sizes */
  char note[200];
  struct kfm__backend_ctx ctx;
};

/* Opens a session state with the given event list (NULL or "" = defaults). */
static int sess_open(struct session *s, const char *events, unsigned flags) {
  memset(s, 0, sizeof *s);
  s->st = calloc(1, B.state_size);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s->st);
  s->ctx = (struct kfm__backend_ctx){.level = KFM_LEVEL_COMPREHENSIVE,
                                     .proc_root = "",
                                     .events = events ? events : "",
                                     .errbuf = s->err,
                                     .errlen = sizeof s->err,
                                     .note = s->note,
                                     .notelen = sizeof s->note};
  return kfm__papi_open_ex(s->st, &s->ctx, flags);
}

static void sess_close(struct session *s) {
  if (B.close) {
    B.close(s->st);
  }
  free(s->st);
  s->st = NULL;
}

/* export_json into a malloc'd string (caller frees). */
static char *sess_json(struct session *s) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  B.export_json(s->st, f);
  fclose(f);
  return buf;
}

/* Index of metric "papi.<event>" in the session, or -1. */
static int metric_index(const struct session *s, const char *event) {
  char want[160];
  snprintf(want, sizeof want, "papi.%s", event);
  for (unsigned i = 0; i < s->ctx.n_transition; i++) {
    if (strcmp(s->ctx.transition[i].name, want) == 0) {
      return (int)i;
    }
  }
  return -1;
}

#define ASSERT_HAS(hay, needle)                                                                    \
  do {                                                                                             \
    const char *h_ = (hay);                                                                        \
    int ok_ = h_ != NULL && strstr(h_, (needle)) != NULL;                                          \
    if (!ok_) {                                                                                    \
      fprintf(stderr, "\n%s:%d: '%s' does not contain '%s'\n", __FILE__, __LINE__,                 \
              h_ ? h_ : "(null)", (needle));                                                       \
    }                                                                                              \
    CU_ASSERT_TRUE(ok_);                                                                           \
  } while (0)

static double thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Whether PAPI itself says the preset exists and can be counted here. */
static int preset_available(const char *name) {
  return PAPI_query_named_event(name) == PAPI_OK;
}

/*
 * Runs fn with stderr redirected to a temporary file; returns how many
 * bytes were written to stderr meanwhile (copied to out).
 */
static size_t capture_stderr(int (*fn)(void *), void *arg, int *rc, char *out, size_t cap) {
  FILE *tmp = tmpfile();
  int saved;
  long n;
  CU_ASSERT_PTR_NOT_NULL_FATAL(tmp);
  fflush(stderr);
  saved = dup(2);
  dup2(fileno(tmp), 2);
  *rc = fn(arg);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  n = (long)lseek(fileno(tmp), 0, SEEK_END);
  out[0] = '\0';
  if (n > 0) {
    size_t got;
    rewind(tmp);
    got = fread(out, 1, cap - 1, tmp);
    out[got] = '\0';
  }
  fclose(tmp);
  return n > 0 ? (size_t)n : 0;
}

/* ---------------------------------------------------------------------- */
/* Ops table and availability.                                             */

static void test_ops_table(void) {
  char reason[256];
  CU_ASSERT_EQUAL(B.abi, KFM_BACKEND_ABI);
  CU_ASSERT_STRING_EQUAL(B.name, "papi");
  CU_ASSERT_EQUAL(B.caps, KFM_CAP_TRANSITION);
  CU_ASSERT_EQUAL(B.min_level, KFM_LEVEL_COMPREHENSIVE);
  CU_ASSERT_PTR_NOT_NULL(B.open);
  CU_ASSERT_PTR_NOT_NULL(B.read);
  CU_ASSERT_PTR_NOT_NULL(B.thread_open);
  CU_ASSERT_PTR_NOT_NULL(B.thread_close);
  CU_ASSERT_PTR_NOT_NULL(B.export_json);
  CU_ASSERT_PTR_NULL(B.sample);
  CU_ASSERT(B.state_size > 0 && B.thread_state_size > 0);
  CU_ASSERT_EQUAL(B.probe(reason, sizeof reason), 1);
  CU_ASSERT_STRING_EQUAL(reason, "available");
  /* Probing again is cheap and gives the same answer (PAPI initialised once). */
  CU_ASSERT_EQUAL(B.probe(reason, sizeof reason), 1);
}

static void test_paranoid_fixture(void) {
  char path[PATH_MAX], reason[512];
  const char *papi_text = "Insufficient permissions for perf_event support with paranoid=3.";
  snprintf(path, sizeof path, "%s/papi/paranoid_3", fixtures);
  /* 3 and PAPI disabled the component (unprivileged): unavailable, says what to change. */
  CU_ASSERT_EQUAL(kfm__papi_availability(path, 1, papi_text, reason, sizeof reason), 0);
  ASSERT_HAS(reason, "perf_event_paranoid is 3");
  ASSERT_HAS(reason, "sysctl kernel.perf_event_paranoid=2");
  ASSERT_HAS(reason, "(or lower)");
  ASSERT_HAS(reason, papi_text);
  /* 3 but PAPI kept the component (root / CAP_PERFMON): counters work. */
  CU_ASSERT_EQUAL(kfm__papi_availability(path, 0, "", reason, sizeof reason), 1);
  CU_ASSERT_STRING_EQUAL(reason, "available");
  /* No reason text from PAPI: still a usable message. */
  CU_ASSERT_EQUAL(kfm__papi_availability(path, 1, NULL, reason, sizeof reason), 0);
  ASSERT_HAS(reason, "perf_event_paranoid is 3");
}

static void test_paranoid_other_cases(void) {
  char dir[] = "/tmp/kfm_papi_XXXXXX", path[PATH_MAX], reason[512];
  FILE *f;
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  /* Missing file: no perf_event support; the message names the path. */
  snprintf(path, sizeof path, "%s/absent", dir);
  CU_ASSERT_EQUAL(kfm__papi_availability(path, 0, NULL, reason, sizeof reason), 0);
  ASSERT_HAS(reason, path);
  ASSERT_HAS(reason, "no perf_event support");
  /* Not a number. */
  snprintf(path, sizeof path, "%s/garbage", dir);
  f = fopen(path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs("high\n", f);
  fclose(f);
  CU_ASSERT_EQUAL(kfm__papi_availability(path, 0, NULL, reason, sizeof reason), 0);
  ASSERT_HAS(reason, "cannot parse");
  unlink(path);
  /* 2, -1: fine, unless PAPI disabled the component for another reason. */
  snprintf(path, sizeof path, "%s/two", dir);
  f = fopen(path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs("2\n", f);
  fclose(f);
  CU_ASSERT_EQUAL(kfm__papi_availability(path, 0, "", reason, sizeof reason), 1);
  CU_ASSERT_EQUAL(
      kfm__papi_availability(path, 1, "libpfm4 cannot find a PMU", reason, sizeof reason), 0);
  ASSERT_HAS(reason, "PAPI disabled its perf_event component: libpfm4 cannot find a PMU");
  unlink(path);
  snprintf(path, sizeof path, "%s/minus1", dir);
  f = fopen(path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs("-1\n", f);
  fclose(f);
  CU_ASSERT_EQUAL(kfm__papi_availability(path, 0, "", reason, sizeof reason), 1);
  unlink(path);
  rmdir(dir);
  /* The real file of this machine (2 here). */
  CU_ASSERT_EQUAL(
      kfm__papi_availability("/proc/sys/kernel/perf_event_paranoid", 0, "", reason, sizeof reason),
      1);
}

/* ---------------------------------------------------------------------- */
/* Event choice.                                                           */

static void test_defaults(void) {
  struct session s;
  char *json;
  int have_presets = preset_available("PAPI_TOT_INS") || preset_available("PAPI_TOT_CYC") ||
                     preset_available("PAPI_L1_DCM") || preset_available("PAPI_L2_DCM") ||
                     preset_available("PAPI_L3_TCM") || preset_available("PAPI_BR_MSP");
  KT_OK(NULL, sess_open(&s, NULL, 0));
  json = sess_json(&s);
  if (have_presets) {
    printf("\n  (this machine has PAPI presets: checking the preset set) ");
    ASSERT_HAS(s.note, "PAPI presets available");
    ASSERT_HAS(json, "\"set\":\"preset\"");
  } else {
    static const char *const want[] = {"perf::TASK-CLOCK", "perf::PAGE-FAULTS",
                                       "perf::CONTEXT-SWITCHES", "perf::CPU-MIGRATIONS"};
    CU_ASSERT_EQUAL_FATAL(s.ctx.n_transition, 4);
    for (int i = 0; i < 4; i++) {
      char name[64];
      snprintf(name, sizeof name, "papi.%s", want[i]);
      CU_ASSERT_STRING_EQUAL(s.ctx.transition[i].name, name);
      CU_ASSERT_STRING_EQUAL(s.ctx.transition[i].unit, i == 0 ? "ns" : "count");
      CU_ASSERT_EQUAL(s.ctx.transition[i].kind, KFM_METRIC_COUNTER);
    }
    CU_ASSERT_STRING_EQUAL(s.note,
                           "events: perf::TASK-CLOCK,perf::PAGE-FAULTS,perf::CONTEXT-SWITCHES,"
                           "perf::CPU-MIGRATIONS (software events: no PAPI preset available on "
                           "this machine - no hardware PMU); not multiplexed");
    ASSERT_HAS(json, "\"events\":[\"perf::TASK-CLOCK\",\"perf::PAGE-FAULTS\","
                     "\"perf::CONTEXT-SWITCHES\",\"perf::CPU-MIGRATIONS\"]");
    ASSERT_HAS(json, "\"set\":\"software\"");
    ASSERT_HAS(json, "\"reason\":\"software events: no PAPI preset available");
    ASSERT_HAS(json, "\"ipc\":\"unavailable: needs PAPI_TOT_INS and PAPI_TOT_CYC\"");
    ASSERT_HAS(json, "\"derived_inputs\":{}");
  }
  ASSERT_HAS(json, "\"multiplexed\":false");
  ASSERT_HAS(json, "\"thread_open_failures\":0");
  ASSERT_HAS(json, "\"paranoid\":");
  CU_ASSERT_EQUAL(s.ctx.n_sample, 0);
  free(json);
  sess_close(&s);
}

static void test_user_events(void) {
  struct session s;
  char *json;
  KT_OK(NULL, sess_open(&s, "perf::TASK-CLOCK,perf::PAGE-FAULTS", 0));
  CU_ASSERT_EQUAL_FATAL(s.ctx.n_transition, 2);
  CU_ASSERT_STRING_EQUAL(s.ctx.transition[0].name, "papi.perf::TASK-CLOCK");
  CU_ASSERT_STRING_EQUAL(s.ctx.transition[0].unit, "ns");
  CU_ASSERT_STRING_EQUAL(s.ctx.transition[1].name, "papi.perf::PAGE-FAULTS");
  CU_ASSERT_STRING_EQUAL(s.ctx.transition[1].unit, "count");
  CU_ASSERT_STRING_EQUAL(s.note, "events: perf::TASK-CLOCK,perf::PAGE-FAULTS (events chosen by "
                                 "the user); not multiplexed");
  json = sess_json(&s);
  ASSERT_HAS(json, "\"set\":\"user\"");
  ASSERT_HAS(json, "\"events\":[\"perf::TASK-CLOCK\",\"perf::PAGE-FAULTS\"]");
  free(json);
  sess_close(&s);

  /* Blanks around names are dropped; a bare perf name resolves without its PMU prefix. */
  KT_OK(NULL, sess_open(&s, " TASK-CLOCK , perf::CONTEXT-SWITCHES", 0));
  CU_ASSERT_EQUAL_FATAL(s.ctx.n_transition, 2);
  CU_ASSERT_STRING_EQUAL(s.ctx.transition[0].name, "papi.TASK-CLOCK");
  CU_ASSERT_STRING_EQUAL(s.ctx.transition[0].unit, "ns");
  sess_close(&s);
}

/* Derived metrics are "available" exactly when both preset inputs are counted. */
static void test_derived(void) {
  struct session s;
  char *json;
  KT_OK(NULL, sess_open(&s, "perf::TASK-CLOCK,perf::PAGE-FAULTS", 0));
  json = sess_json(&s);
  ASSERT_HAS(json, "\"derived\":{\"ipc\":\"unavailable: needs PAPI_TOT_INS and PAPI_TOT_CYC\","
                   "\"l1_dcm_per_kins\":\"unavailable: needs PAPI_L1_DCM and PAPI_TOT_INS\","
                   "\"br_msp_per_kins\":\"unavailable: needs PAPI_BR_MSP and PAPI_TOT_INS\"}");
  ASSERT_HAS(json, "\"derived_inputs\":{}");
  free(json);
  sess_close(&s);
  if (preset_available("PAPI_TOT_INS") && preset_available("PAPI_TOT_CYC")) {
    KT_OK(NULL, sess_open(&s, "PAPI_TOT_INS,PAPI_TOT_CYC", 0));
    json = sess_json(&s);
    ASSERT_HAS(json, "\"ipc\":\"available\"");
    ASSERT_HAS(json, "\"ipc\":{\"numerator\":\"papi.PAPI_TOT_INS\",\"denominator\":"
                     "\"papi.PAPI_TOT_CYC\",\"scale\":1}");
    free(json);
    sess_close(&s);
  } else {
    printf("\n  (no PAPI_TOT_INS/PAPI_TOT_CYC here: the available case is not reachable) ");
  }
}

struct open_arg {
  struct session *s;
  const char *events;
};

static int open_fn(void *p) {
  struct open_arg *a = p;
  return sess_open(a->s, a->events, 0);
}

/* Opens events expecting KFM_EBADVALUE, with nothing printed to stderr. */
static void expect_bad(const char *events, struct session *s) {
  struct open_arg a = {s, events};
  char junk[512];
  int rc = 0;
  size_t n = capture_stderr(open_fn, &a, &rc, junk, sizeof junk);
  if (rc != KFM_EBADVALUE) {
    fprintf(stderr, "\nevents '%s': rc %s (%s)\n", events, kfm_err_name(rc), s->err);
  }
  CU_ASSERT_EQUAL(rc, KFM_EBADVALUE);
  if (n != 0) {
    fprintf(stderr, "\nevents '%s' printed to stderr: %s\n", events, junk);
  }
  CU_ASSERT_EQUAL(n, 0);
  printf("\n    %s -> %s", events, s->err);
}

static void test_unknown_events(void) {
  struct session s;
  expect_bad("perf::TASK-CLOCKK", &s);
  ASSERT_HAS(s.err, "unknown event 'perf::TASK-CLOCKK'");
  ASSERT_HAS(s.err, "closest available: perf::TASK-CLOCK");
  sess_close(&s);

  expect_bad("PAPI_TOT_INZ", &s);
  ASSERT_HAS(s.err, "unknown event 'PAPI_TOT_INZ'");
  if (preset_available("PAPI_TOT_INS")) {
    ASSERT_HAS(s.err, "closest available: PAPI_TOT_INS");
  } else {
    ASSERT_HAS(s.err, "closest known: PAPI_TOT_INS (not available here)");
    ASSERT_HAS(s.err, "closest available: ");
  }
  sess_close(&s);

  /* A bare unknown name: PAPI would ask every component (and ROCm SMI would print). */
  expect_bad("TASK-CLOCKK", &s);
  ASSERT_HAS(s.err, "unknown event 'TASK-CLOCKK'");
  ASSERT_HAS(s.err, "perf::TASK-CLOCK");
  sess_close(&s);

  /* The first bad name of a list is the one reported. */
  expect_bad("perf::PAGE-FAULTS,perf::NO-SUCH-EVENT,PAPI_FOO", &s);
  ASSERT_HAS(s.err, "'perf::NO-SUCH-EVENT'");
  sess_close(&s);
}

static void test_unavailable_events(void) {
  struct session s = {0};
  if (preset_available("PAPI_TOT_INS")) {
    printf("\n  (PAPI_TOT_INS is available on this machine: nothing to refuse) ");
  } else {
    expect_bad("PAPI_TOT_INS", &s);
    ASSERT_HAS(s.err, "event 'PAPI_TOT_INS' is unavailable");
    ASSERT_HAS(s.err, "closest available: ");
    CU_ASSERT_PTR_NULL(strstr(s.err, "unknown"));
    sess_close(&s);
    /* Among valid events too: the set is refused as a whole. */
    expect_bad("perf::TASK-CLOCK,PAPI_TOT_CYC", &s);
    ASSERT_HAS(s.err, "event 'PAPI_TOT_CYC' is unavailable");
    sess_close(&s);
  }
  if (PAPI_query_named_event("perf::INSTRUCTIONS") == PAPI_OK &&
      sess_open(&s, "perf::INSTRUCTIONS", 0) != 0) {
    /* A native that exists in libpfm4's tables but has no counter behind it. */
    ASSERT_HAS(s.err, "event 'perf::INSTRUCTIONS' is unavailable: cannot be counted here");
  }
  sess_close(&s);
}

static void test_bad_lists(void) {
  struct session s;
  expect_bad("perf::TASK-CLOCK,perf::TASK-CLOCK", &s);
  ASSERT_HAS(s.err, "'perf::TASK-CLOCK' is listed twice");
  sess_close(&s);
  expect_bad("perf::TASK-CLOCK,,perf::PAGE-FAULTS", &s);
  ASSERT_HAS(s.err, "empty event name");
  sess_close(&s);
  expect_bad("perf::TASK-CLOCK, ", &s);
  ASSERT_HAS(s.err, "empty event name");
  sess_close(&s);
  expect_bad("perf::TASK-CLOCK,", &s);
  ASSERT_HAS(s.err, "empty event name after the last ','");
  sess_close(&s);
  expect_bad("perf::TASK-CLOCK,perf::PAGE-FAULTS,perf::CONTEXT-SWITCHES,perf::NO-SUCH", &s);
  ASSERT_HAS(s.err, "'perf::NO-SUCH'");
  sess_close(&s);
  expect_bad("perf::TASK-CLOCK,perf::CPU-CLOCK,perf::PAGE-FAULTS,perf::FAULTS,"
             "perf::CONTEXT-SWITCHES,perf::CS,perf::CPU-MIGRATIONS,perf::MIGRATIONS,"
             "perf::MINOR-FAULTS,perf::MAJOR-FAULTS,perf::CGROUP-SWITCHES,"
             "perf::PERF_COUNT_SW_TASK_CLOCK,perf::PERF_COUNT_SW_CPU_CLOCK,"
             "perf::PERF_COUNT_SW_PAGE_FAULTS,perf::PERF_COUNT_SW_CONTEXT_SWITCHES,"
             "perf::PERF_COUNT_SW_CPU_MIGRATIONS,perf::PERF_COUNT_SW_PAGE_FAULTS_MIN",
             &s);
  ASSERT_HAS(s.err, "'perf::PERF_COUNT_SW_PAGE_FAULTS_MIN' is one too many (at most 16 events)");
  sess_close(&s);
}

/* ---------------------------------------------------------------------- */
/* Live counting.                                                          */

static const char *const eight_sw =
    "perf::TASK-CLOCK,perf::PAGE-FAULTS,perf::CONTEXT-SWITCHES,perf::CPU-MIGRATIONS,"
    "perf::CPU-CLOCK,perf::MINOR-FAULTS,perf::MAJOR-FAULTS,perf::CGROUP-SWITCHES";

static void test_multiplexing(void) {
  struct session s;
  char *json;
  /* Software events do not use PMU counters: 8 of them fit one group. */
  KT_OK(NULL, sess_open(&s, eight_sw, 0));
  CU_ASSERT_EQUAL(s.ctx.n_transition, 8);
  /* The note fits the engine's 200 bytes by shortening the list, never the verdict. */
  ASSERT_HAS(s.note, ",... (8 in all) (events chosen by the user); not multiplexed");
  CU_ASSERT(strlen(s.note) < sizeof s.note - 1);
  json = sess_json(&s);
  ASSERT_HAS(json, "\"multiplexed\":false");
  free(json);
  {
    void *ts = calloc(1, B.thread_state_size);
    uint64_t v0[8], v1[8];
    CU_ASSERT_EQUAL(B.thread_open(s.st, ts), 0);
    B.read(s.st, ts, v0);
    kfmk_busy_ms(20);
    B.read(s.st, ts, v1);
    KT_NEAR((double)(v1[0] - v0[0]), 20 * NS_PER_MS, 0.25); /* TASK-CLOCK */
    KT_NEAR((double)(v1[4] - v0[4]), 20 * NS_PER_MS, 0.25); /* CPU-CLOCK */
    B.thread_close(s.st, ts);
    free(ts);
  }
  sess_close(&s);

  /* Forced: works where the kernel can multiplex, otherwise a clear refusal. */
  int rc = sess_open(&s, eight_sw, KFM_PAPI_FORCE_MULTIPLEX);
  if (rc == 0) {
    printf("\n  (kernel multiplexing available) ");
    ASSERT_HAS(s.note, "multiplexed: more events than one counter group holds");
    json = sess_json(&s);
    ASSERT_HAS(json, "\"multiplexed\":true");
    free(json);
  } else {
    CU_ASSERT_EQUAL(rc, KFM_EBADVALUE);
    ASSERT_HAS(s.err, "8 events need multiplexing, which PAPI cannot set up here");
    printf("\n    forced multiplexing -> %s", s.err);
  }
  sess_close(&s);
}

static void test_workload(void) {
  struct session s;
  void *ts;
  uint64_t a[2], m[2], b[2], c[2];
  double cpu0, cpu1;
  int tc, pf;
  KT_OK(NULL, sess_open(&s, "perf::TASK-CLOCK,perf::PAGE-FAULTS", 0));
  tc = metric_index(&s, "perf::TASK-CLOCK");
  pf = metric_index(&s, "perf::PAGE-FAULTS");
  CU_ASSERT_FATAL(tc >= 0 && pf >= 0);
  ts = calloc(1, B.thread_state_size);
  CU_ASSERT_EQUAL_FATAL(B.thread_open(s.st, ts), 0);

  cpu0 = thread_cpu_ns();
  B.read(s.st, ts, a);
  CU_ASSERT_EQUAL(kfmk_busy_ms(50), 0);
  B.read(s.st, ts, m);
  CU_ASSERT_EQUAL(kfmk_page_faults(1000), 0);
  B.read(s.st, ts, b);
  cpu1 = thread_cpu_ns();
  /* Sibling interval: sleeping costs no CPU and touches no page. */
  CU_ASSERT_EQUAL(kfmk_sleep_ms(20), 0);
  B.read(s.st, ts, c);

  double busy_tc = (double)(m[tc] - a[tc]), busy_pf = (double)(m[pf] - a[pf]);
  double all_tc = (double)(b[tc] - a[tc]), all_pf = (double)(b[pf] - a[pf]);
  double idle_tc = (double)(c[tc] - b[tc]), idle_pf = (double)(c[pf] - b[pf]);
  printf("\n    busy 50 ms: task-clock %.2f ms, faults %.0f; busy+faults: task-clock %.2f ms "
         "(thread CPU clock %.2f ms), faults %.0f; sleep 20 ms: task-clock %.3f ms, faults %.0f",
         busy_tc / NS_PER_MS, busy_pf, all_tc / NS_PER_MS, (cpu1 - cpu0) / NS_PER_MS, all_pf,
         idle_tc / NS_PER_MS, idle_pf);
  /* The spin: 50 ms of CPU, no faults. */
  KT_NEAR(busy_tc, 50 * NS_PER_MS, 0.10);
  CU_ASSERT(busy_pf < 50);
  /* Spin then faults: at least 1000 faults; the CPU the thread's own clock saw.  (The
   * fault kernel's CPU varies: more under load, ~6 ms and 3000 faults under TSan.) */
  CU_ASSERT(all_pf >= 1000);
  /* perf's task clock and the thread CPU clock account context switches and
   * fault handling slightly differently: 15% (seen: up to 8.6% on this VM). */
  KT_NEAR(all_tc, cpu1 - cpu0, 0.15);
  /* The sleeping sibling gets neither. */
  CU_ASSERT(idle_tc < 5 * NS_PER_MS);
  CU_ASSERT(idle_pf < 50);

  B.thread_close(s.st, ts);
  /* After close the thread reads zeros, never a stale EventSet. */
  memset(c, 0xff, sizeof c);
  B.read(s.st, ts, c);
  CU_ASSERT(c[0] == 0 && c[1] == 0);
  free(ts);
  sess_close(&s);
}

/* Four threads, each with its own EventSet, each burning a different amount of CPU. */
#define NTHREADS 4
struct worker {
  struct session *s;
  pthread_barrier_t *bar;
  int idx;
  int open_rc;
  double busy_ms;
  double tc_ms;
};

static void *worker_main(void *p) {
  struct worker *w = p;
  void *ts = calloc(1, B.thread_state_size);
  uint64_t a[1], b[1];
  w->open_rc = ts ? B.thread_open(w->s->st, ts) : -1;
  pthread_barrier_wait(w->bar); /* all EventSets exist: the bursts below overlap */
  B.read(w->s->st, ts, a);
  kfmk_busy_ms(w->busy_ms);
  B.read(w->s->st, ts, b);
  w->tc_ms = (double)(b[0] - a[0]) / NS_PER_MS;
  pthread_barrier_wait(w->bar); /* no thread unregisters while others still count */
  B.thread_close(w->s->st, ts);
  free(ts);
  return NULL;
}

static void test_thread_attribution(void) {
  struct session s;
  pthread_t th[NTHREADS];
  struct worker w[NTHREADS];
  pthread_barrier_t bar;
  char *json;
  KT_OK(NULL, sess_open(&s, "perf::TASK-CLOCK", 0));
  pthread_barrier_init(&bar, NULL, NTHREADS);
  for (int i = 0; i < NTHREADS; i++) {
    w[i] = (struct worker){.s = &s, .bar = &bar, .idx = i, .busy_ms = 15.0 * (i + 1)};
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
  }
  for (int i = 0; i < NTHREADS; i++) {
    pthread_join(th[i], NULL);
  }
  pthread_barrier_destroy(&bar);
  for (int i = 0; i < NTHREADS; i++) {
    printf("\n    thread %d: busy %.0f ms, its task-clock %.2f ms", i, w[i].busy_ms, w[i].tc_ms);
    CU_ASSERT_EQUAL(w[i].open_rc, 0);
    /* 4 threads on 2 vCPUs: perf's task clock runs ahead of the thread CPU
     * clock that bounds the busy loop (seen: 16.7 ms for 15 and 49.9 for 45
     * plain, 18.5 for 15 under TSan).  20% or 4 ms, whichever is larger,
     * still tells each thread's own count from its neighbours' (15 ms apart). */
    double tol = w[i].busy_ms * 0.20 > 4.0 ? 0.20 : 4.0 / w[i].busy_ms;
    KT_NEAR(w[i].tc_ms, w[i].busy_ms, tol);
  }
  json = sess_json(&s);
  ASSERT_HAS(json, "\"thread_open_failures\":0");
  free(json);
  sess_close(&s);
}

/* A second session on a thread that already runs an EventSet: zeros, counted, explained. */
static void test_thread_open_failure(void) {
  struct session s1, s2;
  void *t1 = calloc(1, B.thread_state_size), *t2 = calloc(1, B.thread_state_size);
  uint64_t v[2], a[1], b[1];
  char *json;
  KT_OK(NULL, sess_open(&s1, "perf::TASK-CLOCK", 0));
  KT_OK(NULL, sess_open(&s2, "perf::TASK-CLOCK,perf::PAGE-FAULTS", 0));
  CU_ASSERT_EQUAL_FATAL(B.thread_open(s1.st, t1), 0);
  CU_ASSERT_EQUAL(B.thread_open(s2.st, t2), KFM_EBACKEND);
  memset(v, 0xff, sizeof v);
  B.read(s2.st, t2, v);
  CU_ASSERT(v[0] == 0 && v[1] == 0);
  json = sess_json(&s2);
  ASSERT_HAS(json, "\"thread_open_failures\":1");
  ASSERT_HAS(json, "\"thread_open_error\":\"PAPI_start: ");
  ASSERT_HAS(json, "another EventSet already runs on that thread");
  free(json);
  /* The first session is not disturbed, before or after the second one goes. */
  B.read(s1.st, t1, a);
  kfmk_busy_ms(5);
  B.thread_close(s2.st, t2);
  sess_close(&s2);
  B.read(s1.st, t1, b);
  KT_NEAR((double)(b[0] - a[0]), 5 * NS_PER_MS, 0.25);
  B.thread_close(s1.st, t1);
  sess_close(&s1);
  free(t1);
  free(t2);
}

/* thread_close from another thread (session destroyed while the thread lives). */
struct foreign {
  struct session *s;
  void *ts;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stage;
  uint64_t after[1];
};

static void foreign_wait(struct foreign *f, int stage) {
  pthread_mutex_lock(&f->mu);
  while (f->stage < stage) {
    pthread_cond_wait(&f->cv, &f->mu);
  }
  pthread_mutex_unlock(&f->mu);
}

static void foreign_set(struct foreign *f, int stage) {
  pthread_mutex_lock(&f->mu);
  f->stage = stage;
  pthread_cond_broadcast(&f->cv);
  pthread_mutex_unlock(&f->mu);
}

static void *foreign_main(void *p) {
  struct foreign *f = p;
  B.thread_open(f->s->st, f->ts);
  kfmk_busy_ms(2);
  foreign_set(f, 1);
  foreign_wait(f, 2); /* main closed our EventSet meanwhile */
  B.read(f->s->st, f->ts, f->after);
  /* This thread can count again afterwards (PAPI still knows it). */
  void *ts2 = calloc(1, B.thread_state_size);
  if (B.thread_open(f->s->st, ts2) == 0) {
    B.thread_close(f->s->st, ts2);
    f->stage = 3;
  }
  free(ts2);
  return NULL;
}

static void test_foreign_close(void) {
  struct session s;
  struct foreign f = {.s = &s, .stage = 0};
  pthread_t th;
  KT_OK(NULL, sess_open(&s, "perf::TASK-CLOCK", 0));
  f.ts = calloc(1, B.thread_state_size);
  pthread_mutex_init(&f.mu, NULL);
  pthread_cond_init(&f.cv, NULL);
  f.after[0] = 12345;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, foreign_main, &f), 0);
  foreign_wait(&f, 1);
  B.thread_close(s.st, f.ts);
  foreign_set(&f, 2);
  pthread_join(th, NULL);
  CU_ASSERT_EQUAL(f.after[0], 0);
  CU_ASSERT_EQUAL(f.stage, 3);
  pthread_cond_destroy(&f.cv);
  pthread_mutex_destroy(&f.mu);
  free(f.ts);
  sess_close(&s);
}

/* Sessions counting the same events on one thread share its EventSet: both
 * count, it is built once, stopped (others may count) when the last one
 * closes, and started again, not rebuilt, for the next session. */
struct shared_run {
  struct session *s[3];
  int rc;
  uint64_t built[3];
  double both[2], alone, again;
  int other_start;
};

static void *shared_main(void *p) {
  struct shared_run *r = p;
  void *t[3];
  uint64_t a[3][1], b[3][1];
  for (int i = 0; i < 3; i++) {
    t[i] = calloc(1, B.thread_state_size);
  }
  r->built[0] = kfm__papi_sets_built();
  r->rc |= B.thread_open(r->s[0]->st, t[0]) | B.thread_open(r->s[1]->st, t[1]);
  r->built[1] = kfm__papi_sets_built();
  B.read(r->s[0]->st, t[0], a[0]);
  B.read(r->s[1]->st, t[1], a[1]);
  kfmk_busy_ms(10);
  B.read(r->s[0]->st, t[0], b[0]);
  B.read(r->s[1]->st, t[1], b[1]);
  r->both[0] = (double)(b[0][0] - a[0][0]);
  r->both[1] = (double)(b[1][0] - a[1][0]);
  B.thread_close(r->s[0]->st, t[0]);
  B.read(r->s[1]->st, t[1], a[1]);
  kfmk_busy_ms(5);
  B.read(r->s[1]->st, t[1], b[1]);
  r->alone = (double)(b[1][0] - a[1][0]);
  B.thread_close(r->s[1]->st, t[1]);
  /* Unused now: stopped, so another EventSet may run on the thread. */
  int es = PAPI_NULL;
  if (PAPI_create_eventset(&es) == PAPI_OK &&
      PAPI_add_named_event(es, "perf::TASK-CLOCK") == PAPI_OK) {
    r->other_start = PAPI_start(es);
    if (r->other_start == PAPI_OK) {
      PAPI_stop(es, NULL);
    }
  }
  PAPI_cleanup_eventset(es);
  PAPI_destroy_eventset(&es);
  r->rc |= B.thread_open(r->s[2]->st, t[2]);
  r->built[2] = kfm__papi_sets_built();
  B.read(r->s[2]->st, t[2], a[2]);
  kfmk_busy_ms(5);
  B.read(r->s[2]->st, t[2], b[2]);
  r->again = (double)(b[2][0] - a[2][0]);
  B.thread_close(r->s[2]->st, t[2]);
  for (int i = 0; i < 3; i++) {
    free(t[i]);
  }
  return NULL;
}

static void test_shared_eventset(void) {
  struct session s[3];
  struct shared_run r = {.s = {&s[0], &s[1], &s[2]}, .other_start = -1};
  for (int i = 0; i < 3; i++) {
    KT_OK(NULL, sess_open(&s[i], "perf::TASK-CLOCK", 0));
  }
  pthread_t th;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, shared_main, &r), 0);
  pthread_join(th, NULL);
  CU_ASSERT_EQUAL(r.rc, 0);
  CU_ASSERT_EQUAL(r.built[1], r.built[0] + 1); /* one build for two sessions */
  CU_ASSERT_EQUAL(r.built[2], r.built[1]);     /* the third reuses it */
  KT_NEAR(r.both[0], 10 * NS_PER_MS, 0.25);
  KT_NEAR(r.both[1], 10 * NS_PER_MS, 0.25);
  KT_NEAR(r.alone, 5 * NS_PER_MS, 0.25);
  KT_NEAR(r.again, 5 * NS_PER_MS, 0.25);
  CU_ASSERT_EQUAL(r.other_start, PAPI_OK);
  char *json = sess_json(&s[1]);
  ASSERT_HAS(json, "\"thread_open_failures\":0");
  free(json);
  for (int i = 0; i < 3; i++) {
    sess_close(&s[i]);
  }
}

/* Other PAPI users in the process keep working after sessions close. */
static void test_papi_left_usable(void) {
  int es = PAPI_NULL, rc;
  long long v[1];
  CU_ASSERT_NOT_EQUAL(PAPI_is_initialized(), PAPI_NOT_INITED);
  CU_ASSERT_EQUAL_FATAL(PAPI_create_eventset(&es), PAPI_OK);
  CU_ASSERT_EQUAL(PAPI_add_named_event(es, "perf::TASK-CLOCK"), PAPI_OK);
  rc = PAPI_start(es);
  CU_ASSERT_EQUAL(rc, PAPI_OK);
  kfmk_busy_ms(5);
  CU_ASSERT_EQUAL(PAPI_stop(es, v), PAPI_OK);
  KT_NEAR((double)v[0], 5 * NS_PER_MS, 0.25);
  PAPI_cleanup_eventset(es);
  PAPI_destroy_eventset(&es);
}

#ifdef KFM_TEST_REGISTERED_PAPI
/* Through a session: per-node deltas, status note, export; a bad event fails creation. */
static void test_session(void) {
  kfm_session_t *s = NULL;
  kfm_report_t *r = NULL;
  kfm_node_stats_t busy, idle;
  kfm_backend_status_t bs;
  char *json = NULL;
  int tc, pf, found = 0;
  double cpu0, cpu1;
  KT_OK(NULL, kfm_session_create_str(&s, "level=comprehensive,rate=off,backends=clock+papi,"
                                         "events=perf::TASK-CLOCK+perf::PAGE-FAULTS"));
  KT_OK(s, kfm_session_start(s));
  /* The thread's first transition builds its EventSet (0.5-2.5 ms of CPU,
   * more under load or TSan) before counting starts: done here, outside the
   * window the node is compared with. */
  KT_OK(s, kfm_enter_name(s, "warm"));
  KT_OK(s, kfm_exit_name(s, "warm"));
  cpu0 = thread_cpu_ns();
  KT_OK(s, kfm_enter_name(s, "busy"));
  kfmk_busy_ms(30);
  kfmk_page_faults(500);
  KT_OK(s, kfm_exit_name(s, "busy"));
  cpu1 = thread_cpu_ns();
  KT_OK(s, kfm_enter_name(s, "idle"));
  kfmk_sleep_ms(20);
  KT_OK(s, kfm_exit_name(s, "idle"));
  KT_OK(s, kfm_session_stop(s));
  KT_OK(s, kfm_session_report(s, &r));
  tc = kfm_report_metric_index(r, "papi.perf::TASK-CLOCK");
  pf = kfm_report_metric_index(r, "papi.perf::PAGE-FAULTS");
  CU_ASSERT_FATAL(tc >= 0 && pf >= 0);
  KT_OK(s, kfm_report_node_by_name(r, "busy", &busy));
  KT_OK(s, kfm_report_node_by_name(r, "idle", &idle));
  /* Inside the node: the spin and the faults, as the thread's own CPU clock saw them
   * (that clock also covers the enter/exit calls: microseconds). */
  CU_ASSERT(busy.inclusive[tc] >= 30 * NS_PER_MS * 0.99);
  KT_NEAR(busy.inclusive[tc], cpu1 - cpu0, 0.05);
  CU_ASSERT(busy.inclusive[pf] >= 500);
  CU_ASSERT(idle.inclusive[tc] < 5 * NS_PER_MS);
  CU_ASSERT(idle.inclusive[pf] < 50);
  for (size_t i = 0; i < kfm_report_backend_count(r); i++) {
    if (kfm_report_backend(r, i, &bs) == 0 && strcmp(bs.name, "papi") == 0) {
      found = 1;
      CU_ASSERT_EQUAL(bs.enabled, 1);
      ASSERT_HAS(bs.reason, "events: perf::TASK-CLOCK,perf::PAGE-FAULTS");
    }
  }
  CU_ASSERT(found);
  KT_OK(s, kfm_session_backend_json(s, "papi", &json));
  ASSERT_HAS(json, "\"set\":\"user\"");
  kfm_free(json);
  kfm_report_free(r);
  kfm_session_destroy(s);

  /* A bad event is the user's error: creation fails naming it, with
   * suggestions, and nothing is left allocated. */
  s = (kfm_session_t *)1;
  CU_ASSERT_EQUAL(kfm_session_create_str(&s, "level=comprehensive,rate=off,backends=clock+papi,"
                                             "events=perf::TASK-CLOCKK"),
                  KFM_EBADVALUE);
  CU_ASSERT_PTR_NULL(s);
  ASSERT_HAS(kfm_errmsg(NULL), "papi: ");
  ASSERT_HAS(kfm_errmsg(NULL), "unknown event 'perf::TASK-CLOCKK'");
  ASSERT_HAS(kfm_errmsg(NULL), "perf::TASK-CLOCK");
  (void)found;
  (void)bs;
}
#endif

int main(void) {
  char reason[512];
  static const struct kt_case cases[] = {
      {"ops table and probe", test_ops_table},
      {"paranoid 3 fixture: unavailable, says what to change", test_paranoid_fixture},
      {"paranoid: missing, garbage, 2, -1, component disabled", test_paranoid_other_cases},
      {"default events and note", test_defaults},
      {"user events parse", test_user_events},
      {"derived metrics: available only with both inputs", test_derived},
      {"unknown events: KFM_EBADVALUE with suggestions", test_unknown_events},
      {"unavailable preset/native refused by name", test_unavailable_events},
      {"bad lists: duplicate, empty, too many", test_bad_lists},
      {"multiplexing: 8 software events; forced", test_multiplexing},
      {"busy 50 ms + 1000 faults, then sleep: no leak", test_workload},
      {"4 threads each count their own task-clock", test_thread_attribution},
      {"second EventSet on a thread: zeros, counted", test_thread_open_failure},
      {"thread_close from another thread", test_foreign_close},
      {"sessions with the same events share a thread's EventSet", test_shared_eventset},
      {"PAPI still usable by others after close", test_papi_left_usable},
#ifdef KFM_TEST_REGISTERED_PAPI
      {"session: per-node counters, note, export", test_session},
#endif
      {NULL, NULL},
  };
  fixtures = getenv("KFM_TEST_FIXTURES");
#ifdef KFM_TEST_FIXTURES_DEFAULT
  if (fixtures == NULL || fixtures[0] == '\0') {
    fixtures = KFM_TEST_FIXTURES_DEFAULT;
  }
#endif
  if (fixtures == NULL || fixtures[0] == '\0') {
    fprintf(stderr, "test_papi: set KFM_TEST_FIXTURES to the tests/fixtures directory\n");
    return 1;
  }
  if (!B.probe(reason, sizeof reason)) {
    printf("test_papi: skipped: the papi backend is unavailable here: %s\n", reason);
    return 77;
  }
  return kt_run("papi", cases);
}

#endif /* KFM_HAVE_PAPI */
