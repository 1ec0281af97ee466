/*
 * test_config.c - configuration strings, the KFM_CONFIG override, and the
 * errors for bad keys and values: each message must name what was wrong
 * and what is accepted, and a failed parse must leave the config as it was.
 */
#include "kfm_test.h"

static void test_defaults(void) {
  kfm_config_t c;
  kfm_config_init(&c);
  CU_ASSERT_EQUAL(c.abi, KFM_CONFIG_ABI);
  CU_ASSERT_EQUAL(c.level, KFM_LEVEL_BASIC);
  CU_ASSERT_EQUAL(c.trace, -1);
  CU_ASSERT_EQUAL(c.sampler_cpu, KFM_SAMPLER_CPU_AUTO);
  CU_ASSERT_STRING_EQUAL(c.backends, "");
}

static void test_issue_example(void) {
  kfm_config_t c;
  char err[256];
  kfm_config_init(&c);
  int rc = kfm_config_parse(&c, "level=comprehensive,rate=1000,backends=proc,papi,output=profile.json",
                            err, sizeof err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(c.level, KFM_LEVEL_COMPREHENSIVE);
  CU_ASSERT_DOUBLE_EQUAL(c.rate_hz, 1000, 0);
  CU_ASSERT_STRING_EQUAL(c.backends, "proc,papi");
  CU_ASSERT_STRING_EQUAL(c.output, "profile.json");
  rc = kfm_config_parse(&c, "events=perf::TASK-CLOCK,perf::PAGE-FAULTS+PAPI_TOT_INS,rate=5", err,
                        sizeof err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_STRING_EQUAL(c.events, "perf::TASK-CLOCK,perf::PAGE-FAULTS,PAPI_TOT_INS");
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "events=", err, sizeof err), KFM_EBADVALUE);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "events"));
  rc = kfm_config_parse(&c, " level = Detailed , backends=proc+clock , trace=off, rate=off", err,
                        sizeof err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(c.level, KFM_LEVEL_DETAILED);
  CU_ASSERT_STRING_EQUAL(c.backends, "proc,clock");
  CU_ASSERT_EQUAL(c.trace, 0);
  CU_ASSERT_DOUBLE_EQUAL(c.rate_hz, -1, 0);
}

static void test_numbers(void) {
  kfm_config_t c;
  char err[256];
  kfm_config_init(&c);
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "max_nodes=10,max_threads=3,samples=100,trace_ring=64,"
                                       "trace_events=1000,sampler_cpu=1",
                                   err, sizeof err),
                  0);
  CU_ASSERT_EQUAL(c.max_nodes, 10);
  CU_ASSERT_EQUAL(c.max_threads, 3);
  CU_ASSERT_EQUAL(c.samples, 100);
  CU_ASSERT_EQUAL(c.trace_ring, 64);
  CU_ASSERT_EQUAL(c.trace_events, 1000);
  CU_ASSERT_EQUAL(c.sampler_cpu, 1);
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "sampler_cpu=none", err, sizeof err), 0);
  CU_ASSERT_EQUAL(c.sampler_cpu, KFM_SAMPLER_CPU_NONE);
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "proc_reads=sampled", err, sizeof err), 0);
  CU_ASSERT_EQUAL(c.proc_reads, KFM_PROC_READS_SAMPLED);
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "proc_reads=exact", err, sizeof err), 0);
  CU_ASSERT_EQUAL(c.proc_reads, KFM_PROC_READS_EXACT);
  kfm_session_t *s = NULL;
  CU_ASSERT_EQUAL(kfm_session_create_str(&s, "level=detailed,proc_reads=sampled,rate=off"),
                  KFM_EBADVALUE);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "proc_reads=sampled needs the sampler"));
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "sampler_cpu=auto", err, sizeof err), 0);
  CU_ASSERT_EQUAL(c.sampler_cpu, KFM_SAMPLER_CPU_AUTO);
}

struct bad {
  const char *str;
  int code;
  const char *must_contain[3];
};

static void test_errors_name_the_value(void) {
  static const struct bad cases[] = {
      {"level=turbo", KFM_EBADVALUE, {"level", "'turbo'", "comprehensive"}},
      {"colour=red", KFM_EBADKEY, {"'colour'", "level", "rate"}},
      {"rate=fast", KFM_EBADVALUE, {"rate", "'fast'", "100000"}},
      {"rate=-5", KFM_EBADVALUE, {"rate", "'-5'", NULL}},
      {"rate=200000", KFM_EBADVALUE, {"'200000'", NULL, NULL}},
      {"backends=proc,gpu9", KFM_EBADVALUE, {"'gpu9'", "papi", NULL}},
      {"backends=nope", KFM_EBADVALUE, {"'nope'", "proc", NULL}},
      {"level", KFM_ECONFIG, {"'level'", "key=value", NULL}},
      {"=3", KFM_ECONFIG, {"empty key", NULL, NULL}},
      {"max_nodes=0", KFM_EBADVALUE, {"max_nodes", "'0'", "1048576"}},
      {"max_threads=12x", KFM_EBADVALUE, {"'12x'", NULL, NULL}},
      {"trace=maybe", KFM_EBADVALUE, {"'maybe'", "on, off, auto", NULL}},
      {"proc_reads=sometimes", KFM_EBADVALUE, {"'sometimes'", "exact, sampled", NULL}},
      {"sampler_cpu=-3", KFM_EBADVALUE, {"'-3'", NULL, NULL}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kfm_config_t c;
    char err[256];
    kfm_config_init(&c);
    c.level = KFM_LEVEL_STANDARD;
    int rc = kfm_config_parse(&c, cases[i].str, err, sizeof err);
    if (rc != cases[i].code) {
      fprintf(stderr, "\n'%s' -> %s (%s)\n", cases[i].str, kfm_err_name(rc), err);
    }
    CU_ASSERT_EQUAL(rc, cases[i].code);
    for (int k = 0; k < 3 && cases[i].must_contain[k]; k++) {
      if (strstr(err, cases[i].must_contain[k]) == NULL) {
        fprintf(stderr, "\n'%s': message '%s' lacks '%s'\n", cases[i].str, err,
                cases[i].must_contain[k]);
        CU_FAIL("message does not name the value");
      }
    }
    /* Nothing lost: a failed parse leaves the config untouched. */
    CU_ASSERT_EQUAL(c.level, KFM_LEVEL_STANDARD);
  }
}

static void test_partial_failure_leaves_config(void) {
  kfm_config_t c;
  char err[256];
  kfm_config_init(&c);
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "level=detailed,output=a.json,rate=bogus", err, sizeof err),
                  KFM_EBADVALUE);
  CU_ASSERT_EQUAL(c.level, KFM_LEVEL_BASIC);
  CU_ASSERT_STRING_EQUAL(c.output, "");
}

static void test_env_overrides(void) {
  kfm_session_t *s = NULL;
  setenv("KFM_CONFIG", "level=standard,rate=off", 1);
  KT_OK(NULL, kfm_session_create_str(&s, "level=comprehensive,rate=1000"));
  CU_ASSERT_EQUAL(kfm_session_level(s), KFM_LEVEL_STANDARD);
  kfm_session_destroy(s);

  setenv("KFM_CONFIG", "level=loud", 1);
  s = (kfm_session_t *)1;
  CU_ASSERT_EQUAL(kfm_session_create_str(&s, "level=basic"), KFM_EBADVALUE);
  CU_ASSERT_PTR_NULL(s);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "KFM_CONFIG"));
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "'loud'"));
  unsetenv("KFM_CONFIG");
}

static void test_struct_validation(void) {
  kfm_config_t c;
  kfm_session_t *s = NULL;
  kfm_config_init(&c);
  c.level = (kfm_level_t)7;
  CU_ASSERT_EQUAL(kfm_session_create(&s, &c), KFM_EBADVALUE);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "level"));
  kfm_config_init(&c);
  c.abi = 99;
  CU_ASSERT_EQUAL(kfm_session_create(&s, &c), KFM_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "kfm_config_init"));
  CU_ASSERT_EQUAL(kfm_session_create(NULL, NULL), KFM_EINVAL);
}

static void test_error_tables(void) {
  CU_ASSERT_STRING_EQUAL(kfm_err_name(KFM_EORDER), "KFM_EORDER");
  CU_ASSERT_STRING_EQUAL(kfm_strerror(KFM_EORDER), "exit out of order");
  CU_ASSERT_STRING_EQUAL(kfm_err_name(0), "KFM_OK");
  CU_ASSERT_STRING_EQUAL(kfm_strerror(-12345), "unknown error");
  CU_ASSERT_STRING_EQUAL(kfm_level_name(KFM_LEVEL_DETAILED), "detailed");
  CU_ASSERT_PTR_NULL(kfm_level_name(4));
}

static void test_unbuilt_backend_is_disabled_not_fatal(void) {
  kfm_session_t *s = NULL;
  kfm_report_t *r = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,backends=clock,rocm_smi,rate=off"));
  KT_OK(s, kfm_session_report(s, &r));
  int seen = 0;
  for (size_t i = 0; i < kfm_report_backend_count(r); i++) {
    kfm_backend_status_t b;
    KT_OK(s, kfm_report_backend(r, i, &b));
    if (strcmp(b.name, "rocm_smi") == 0) {
      seen = 1;
      CU_ASSERT_FALSE(b.enabled);
      CU_ASSERT_TRUE(strlen(b.reason) > 10);
    }
    if (strcmp(b.name, "clock") == 0) {
      CU_ASSERT_TRUE(b.enabled);
    }
    if (strcmp(b.name, "proc") == 0) {
      CU_ASSERT_FALSE(b.enabled);
    }
  }
  CU_ASSERT_TRUE(seen);
  kfm_report_free(r);
  kfm_session_destroy(s);
}

int main(void) {
  unsetenv("KFM_CONFIG");
  static const struct kt_case cases[] = {
      {"defaults", test_defaults},
      {"issue example string", test_issue_example},
      {"numeric keys", test_numbers},
      {"errors name key, value and accepted values", test_errors_name_the_value},
      {"failed parse leaves config untouched", test_partial_failure_leaves_config},
      {"KFM_CONFIG overrides and reports its errors", test_env_overrides},
      {"struct validation", test_struct_validation},
      {"error tables", test_error_tables},
      {"unbuilt backend is disabled with a reason", test_unbuilt_backend_is_disabled_not_fatal},
      {NULL, NULL},
  };
  return kt_run("config", cases);
}
