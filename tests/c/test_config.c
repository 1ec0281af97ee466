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
  int rc = kfm_config_parse(
      &c, "level=comprehensive,rate=1000,backends=proc,papi,output=profile.json", err, sizeof err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(c.level, KFM_LEVEL_COMPREHENSIVE);
  CU_ASSERT_DOUBLE_EQUAL(c.rate_hz, 1000, 0);
  CU_ASSERT_STRING_EQUAL(c.backends, "proc,papi");
  CU_ASSERT_STRING_EQUAL(c.output, "profile.json");
  rc = kfm_config_parse(&c, "events=perf::TASK-CLOCK,perf::PAGE-FAULTS+PAPI_TOT_INS,rate=5", err,
                        sizeof err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_STRING_EQUAL(c.events, "perf::TASK-CLOCK,perf::PAGE-FAULTS,PAPI_TOT_INS");
  /* Empty means the level's default set (README). */
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "events=", err, sizeof err), 0);
  CU_ASSERT_STRING_EQUAL(c.events, "");
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
  CU_ASSERT_EQUAL(kfm_config_parse(&c,
                                   "max_nodes=10,max_threads=3,samples=100,trace_ring=64,"
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

/* ---- Reliability item 7 ------------------------------------------------ */

/* Parses str into a fresh config at STANDARD: the code, and the message
 * must name each of must (up to 3; NULL ends).  A failed parse must leave
 * the config as it was. */
static void expect_parse(const char *str, int code, const char *m0, const char *m1,
                         const char *m2) {
  kfm_config_t c;
  char err[256];
  kfm_config_init(&c);
  c.level = KFM_LEVEL_STANDARD;
  int rc = kfm_config_parse(&c, str, err, sizeof err);
  if (rc != code) {
    fprintf(stderr, "\n'%s' -> %s (%s), want %s\n", str, kfm_err_name(rc), err, kfm_err_name(code));
  }
  CU_ASSERT_EQUAL(rc, code);
  const char *must[3] = {m0, m1, m2};
  for (int k = 0; k < 3 && must[k]; k++) {
    if (strstr(err, must[k]) == NULL) {
      fprintf(stderr, "\n'%s': message '%s' lacks '%s'\n", str, err, must[k]);
      CU_FAIL("message does not name the value");
    }
  }
  if (code != 0) {
    CU_ASSERT_EQUAL(c.level, KFM_LEVEL_STANDARD);
    CU_ASSERT_DOUBLE_EQUAL(c.rate_hz, 0, 0);
    CU_ASSERT_STRING_EQUAL(c.output, "");
  }
}

static void test_null_arguments(void) {
  kfm_config_t c;
  char err[128];
  CU_ASSERT_EQUAL(kfm_config_init(NULL), KFM_EINVAL);
  CU_ASSERT_EQUAL(kfm_config_init(&c), 0);
  CU_ASSERT_EQUAL(kfm_config_parse(NULL, "level=basic", err, sizeof err), KFM_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "NULL"));
  CU_ASSERT_EQUAL(kfm_config_parse(NULL, NULL, NULL, 0), KFM_EINVAL);
  CU_ASSERT_EQUAL(kfm_config_parse(&c, NULL, err, sizeof err), 0);
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "level=detailed", NULL, 0), 0);
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "level=nope", NULL, 0), KFM_EBADVALUE);
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "level=nope", err, 0), KFM_EBADVALUE);
  /* Not initialised: refused rather than parsed into garbage. */
  memset(&c, 0, sizeof c);
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "level=basic", err, sizeof err), KFM_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "kfm_config_init"));

  kfm_session_t *s = NULL;
  CU_ASSERT_EQUAL(kfm_session_create(NULL, NULL), KFM_EINVAL);
  CU_ASSERT_EQUAL(kfm_session_create_str(NULL, "level=basic"), KFM_EINVAL);
  CU_ASSERT_EQUAL(kfm_session_create_str(NULL, NULL), KFM_EINVAL);
  KT_OK(NULL, kfm_session_create_str(&s, NULL));
  kfm_node_id_t id = 7;
  CU_ASSERT_EQUAL(kfm_node_register(NULL, "a", &id), KFM_EINVAL);
  CU_ASSERT_EQUAL(kfm_node_register(s, "a", NULL), KFM_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "NULL"));
  /* A NULL name is a name error, like an empty one. */
  CU_ASSERT_EQUAL(kfm_node_register(s, NULL, &id), KFM_ENAME);
  CU_ASSERT_EQUAL(id, 7);
  CU_ASSERT_PTR_NULL(kfm_node_name(NULL, 0));
  CU_ASSERT_EQUAL(kfm_enter_name(NULL, "a"), KFM_EINVAL);
  CU_ASSERT_EQUAL(kfm_exit_name(NULL, "a"), KFM_EINVAL);
  CU_ASSERT_EQUAL(kfm_enter_name(s, NULL), KFM_ENAME);
  CU_ASSERT_EQUAL(kfm_exit_name(s, NULL), KFM_ENAME);
  CU_ASSERT_PTR_NOT_NULL(kfm_errmsg(NULL));
  kfm_session_destroy(s);
  kfm_session_destroy(NULL);
}

/* Numbers are decimal digits only, within the documented range. */
static void test_strict_numbers(void) {
  static const char *const bad_rates[] = {"0.5",    "1e-320",     "0x10",
                                          "+5",     "-0",         "1e3",
                                          "1.0",    "100001",     "99999999999999999999",
                                          "inf",    "nan",        "",
                                          "5 5",    "12abc",      "\" 5\"",
                                          "\"5 \"", "4294967297", "0x",
                                          "--1",    "1,5"};
  for (size_t i = 0; i < sizeof bad_rates / sizeof bad_rates[0]; i++) {
    char str[64], shown[64];
    snprintf(str, sizeof str, "rate=%s", bad_rates[i]);
    /* The message quotes the value as parsed: without the quotes of a
     * quoted one, and "1,5" is rate=1 then a malformed item "5". */
    const char *v = bad_rates[i];
    if (v[0] == '"') {
      snprintf(shown, sizeof shown, "'%.*s'", (int)strlen(v) - 2, v + 1);
    } else {
      snprintf(shown, sizeof shown, "'%s'", v);
    }
    if (strcmp(v, "1,5") == 0) {
      expect_parse(str, KFM_ECONFIG, "'5'", "key=value", NULL);
    } else {
      expect_parse(str, KFM_EBADVALUE, "rate", shown, "1 to 100000");
    }
  }
  static const struct {
    const char *str, *shown, *limit;
  } bad[] = {
      {"max_nodes=0x10", "'0x10'", "1048576"},
      {"max_nodes=1048577", "'1048577'", "1048576"},
      {"max_nodes=+1", "'+1'", NULL},
      {"max_nodes=1e3", "'1e3'", NULL},
      {"max_nodes=4294967297", "'4294967297'", NULL}, /* would wrap to 1 in 32 bits */
      {"max_nodes=18446744073709551617", "'18446744073709551617'", NULL},
      {"max_threads=65536", "'65536'", "65535"},
      {"max_threads=-1", "'-1'", NULL},
      {"max_threads=\"\t3\"", "'\t3'", NULL},
      {"samples=1.5", "'1.5'", "67108864"},
      {"samples=67108865", "'67108865'", NULL},
      {"trace_ring=15", "'15'", "16 to 16777216"},
      {"trace_ring=16k", "'16k'", NULL},
      {"trace_events=268435457", "'268435457'", "268435456"},
      {"trace_events=", "''", NULL},
      {"sampler_cpu=4096", "'4096'", "4095"},
      {"sampler_cpu=+1", "'+1'", NULL},
      {"sampler_cpu=0x1", "'0x1'", NULL},
      {"sampler_cpu=1.0", "'1.0'", NULL},
      {"sampler_cpu=-2", "'-2'", NULL},
      {"sampler_cpu=", "''", NULL},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char key[32];
    snprintf(key, sizeof key, "%.*s", (int)strcspn(bad[i].str, "="), bad[i].str);
    expect_parse(bad[i].str, KFM_EBADVALUE, key, bad[i].shown, bad[i].limit);
  }
  kfm_config_t c;
  char err[256];
  kfm_config_init(&c);
  KT_OK(NULL, kfm_config_parse(&c, "rate=1", err, sizeof err));
  CU_ASSERT_DOUBLE_EQUAL(c.rate_hz, 1, 0);
  KT_OK(NULL, kfm_config_parse(&c, "rate=100000", err, sizeof err));
  CU_ASSERT_DOUBLE_EQUAL(c.rate_hz, 100000, 0);
  KT_OK(NULL, kfm_config_parse(&c, "rate=0", err, sizeof err));
  CU_ASSERT_DOUBLE_EQUAL(c.rate_hz, 0, 0);
  KT_OK(NULL, kfm_config_parse(&c, "rate=off", err, sizeof err));
  CU_ASSERT_DOUBLE_EQUAL(c.rate_hz, -1, 0);
  KT_OK(NULL, kfm_config_parse(&c, " rate = 0250 ", err, sizeof err)); /* decimal, not octal */
  CU_ASSERT_DOUBLE_EQUAL(c.rate_hz, 250, 0);
  KT_OK(NULL, kfm_config_parse(&c, "rate=\"500\"", err, sizeof err));
  CU_ASSERT_DOUBLE_EQUAL(c.rate_hz, 500, 0);
  KT_OK(NULL, kfm_config_parse(&c,
                               "max_nodes=1048576,max_threads=65535,samples=67108864,"
                               "trace_ring=16,trace_events=268435456,sampler_cpu=4095",
                               err, sizeof err));
  CU_ASSERT_EQUAL(c.max_nodes, 1u << 20);
  CU_ASSERT_EQUAL(c.max_threads, 65535);
  CU_ASSERT_EQUAL(c.samples, 1u << 26);
  CU_ASSERT_EQUAL(c.trace_ring, 16);
  CU_ASSERT_EQUAL(c.trace_events, 1u << 28);
  CU_ASSERT_EQUAL(c.sampler_cpu, 4095);
  KT_OK(NULL, kfm_config_parse(&c, "sampler_cpu=0", err, sizeof err));
  CU_ASSERT_EQUAL(c.sampler_cpu, 0);
  KT_OK(NULL, kfm_config_parse(&c, "sampler_cpu=-1", err, sizeof err));
  CU_ASSERT_EQUAL(c.sampler_cpu, KFM_SAMPLER_CPU_NONE);
}

/* The same limits hold for a struct filled in by hand. */
static void test_struct_numbers(void) {
  static const struct {
    size_t off;
    uint32_t v;
    const char *name;
  } bad[] = {
      {offsetof(kfm_config_t, max_nodes), (1u << 20) + 1, "max_nodes"},
      {offsetof(kfm_config_t, max_threads), 65536, "max_threads"},
      {offsetof(kfm_config_t, samples), (1u << 26) + 1, "samples"},
      {offsetof(kfm_config_t, trace_ring), 15, "trace_ring"},
      {offsetof(kfm_config_t, trace_events), (1u << 28) + 1, "trace_events"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    kfm_config_t c;
    kfm_session_t *s = (kfm_session_t *)1;
    kfm_config_init(&c);
    memcpy((char *)&c + bad[i].off, &bad[i].v, sizeof bad[i].v);
    CU_ASSERT_EQUAL(kfm_session_create(&s, &c), KFM_EBADVALUE);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), bad[i].name));
  }
  static const double bad_rates[] = {0.5, 1e-320, -2, 100000.5, 1.0 / 0.0};
  for (size_t i = 0; i < sizeof bad_rates / sizeof bad_rates[0]; i++) {
    kfm_config_t c;
    kfm_session_t *s = NULL;
    kfm_config_init(&c);
    c.rate_hz = bad_rates[i];
    CU_ASSERT_EQUAL(kfm_session_create(&s, &c), KFM_EBADVALUE);
    CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "rate"));
  }
  kfm_config_t c;
  kfm_session_t *s = NULL;
  kfm_config_init(&c);
  c.sampler_cpu = -3;
  CU_ASSERT_EQUAL(kfm_session_create(&s, &c), KFM_EBADVALUE);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "sampler_cpu"));
}

static void test_empty_events(void) {
  kfm_config_t c;
  char err[256];
  kfm_config_init(&c);
  KT_OK(NULL, kfm_config_parse(&c, "events=A,B", err, sizeof err));
  CU_ASSERT_STRING_EQUAL(c.events, "A,B");
  KT_OK(NULL, kfm_config_parse(&c, "events=", err, sizeof err));
  CU_ASSERT_STRING_EQUAL(c.events, "");
  KT_OK(NULL, kfm_config_parse(&c, "events=X,events=,rate=5", err, sizeof err));
  CU_ASSERT_STRING_EQUAL(c.events, "");
  CU_ASSERT_DOUBLE_EQUAL(c.rate_hz, 5, 0);
  KT_OK(NULL, kfm_config_parse(&c, "events=\"\"", err, sizeof err));
  CU_ASSERT_STRING_EQUAL(c.events, "");
  KT_OK(NULL, kfm_config_parse(&c, "events = ", err, sizeof err));
  CU_ASSERT_STRING_EQUAL(c.events, "");
  expect_parse("events=A++B", KFM_EBADVALUE, "events", "empty event name", "'A++B'");
  expect_parse("events=\"A,,B\"", KFM_EBADVALUE, "events", "'A,,B'", NULL);
  expect_parse("events=A+", KFM_EBADVALUE, "events", "'A+'", NULL);
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,rate=off,events="));
  kfm_session_destroy(s);
}

static void test_quoting(void) {
  kfm_config_t c;
  char err[256];
  kfm_config_init(&c);
  KT_OK(NULL, kfm_config_parse(&c, "output=\"/scratch/a,b.json\",level=detailed", err, sizeof err));
  CU_ASSERT_STRING_EQUAL(c.output, "/scratch/a,b.json");
  CU_ASSERT_EQUAL(c.level, KFM_LEVEL_DETAILED);
  KT_OK(NULL, kfm_config_parse(&c, " output = \"a \\\"q\\\" \\\\ b=c\" , rate=5", err, sizeof err));
  CU_ASSERT_STRING_EQUAL(c.output, "a \"q\" \\ b=c");
  CU_ASSERT_DOUBLE_EQUAL(c.rate_hz, 5, 0);
  KT_OK(NULL, kfm_config_parse(&c, "proc_root=\"  spaced  \"", err, sizeof err));
  CU_ASSERT_STRING_EQUAL(c.proc_root, "  spaced  ");
  KT_OK(NULL, kfm_config_parse(&c, "output=\"\"", err, sizeof err));
  CU_ASSERT_STRING_EQUAL(c.output, "");
  KT_OK(NULL,
        kfm_config_parse(&c, "backends=\"proc,clock\",events=\"A,B+C\",\"D\",E", err, sizeof err));
  CU_ASSERT_STRING_EQUAL(c.backends, "proc,clock");
  CU_ASSERT_STRING_EQUAL(c.events, "A,B,C,D,E");
  KT_OK(NULL, kfm_config_parse(&c, "level=\"basic\"", err, sizeof err));
  CU_ASSERT_EQUAL(c.level, KFM_LEVEL_BASIC);
  /* Unquoted values keep working as before, '=' included. */
  KT_OK(NULL, kfm_config_parse(&c, "output=a=b.json", err, sizeof err));
  CU_ASSERT_STRING_EQUAL(c.output, "a=b.json");

  /* 0-based byte positions: the quote of output="abc is at 7. */
  expect_parse("output=\"abc", KFM_ECONFIG, "output", "unterminated quote", "position 7");
  expect_parse("level=basic, output = \"x\\\"", KFM_ECONFIG, "output", "position 22", NULL);
  expect_parse("\"abc", KFM_ECONFIG, "unterminated quote", "position 0", NULL);
  expect_parse("output=\"a\"b", KFM_ECONFIG, "output", "'b'", "position 10");
  expect_parse("output=\"a\" \"b\"", KFM_ECONFIG, "position 11", NULL, NULL);
  expect_parse("output=a\"b\"", KFM_ECONFIG, "output", "position 8", "quote the whole value");
  expect_parse("output=\"a\\nb\"", KFM_ECONFIG, "output", "bad escape", "position 9");
  expect_parse("out\"put\"=x", KFM_ECONFIG, "position 3", NULL, NULL);
  expect_parse("\"level=basic\"", KFM_ECONFIG, "'level=basic'", "key=value", NULL);
  expect_parse("level=\"turbo,x\"", KFM_EBADVALUE, "level", "'turbo,x'", NULL);

  setenv("KFM_CONFIG", "level=basic,output=\"/tmp/never", 1);
  kfm_session_t *s = (kfm_session_t *)1;
  CU_ASSERT_EQUAL(kfm_session_create_str(&s, "rate=off"), KFM_ECONFIG);
  CU_ASSERT_PTR_NULL(s);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "KFM_CONFIG"));
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "position 19"));
  unsetenv("KFM_CONFIG");
}

/* A long bad value is cut in the message, so the key and the accepted
 * values still fit. */
static void test_long_value_message(void) {
  char str[1200], err[256];
  memcpy(str, "rate=", 5);
  memset(str + 5, '9', 1000);
  str[1005] = '\0';
  kfm_config_t c;
  kfm_config_init(&c);
  CU_ASSERT_EQUAL(kfm_config_parse(&c, str, err, sizeof err), KFM_EBADVALUE);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "'9999"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "...'"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "or off)"));
  memcpy(str, "output=", 7);
  memset(str + 7, 'p', 1100);
  str[1107] = '\0';
  CU_ASSERT_EQUAL(kfm_config_parse(&c, str, err, sizeof err), KFM_EBADVALUE);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "1100 bytes, at most 1023"));
}

/* Names up to KFM_NAME_MAX bytes stay distinct, whatever they share; longer
 * ones are refused with their length and the limit, never cut. */
static void test_name_limit(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,rate=off"));
  char a[KFM_NAME_MAX + 1], b[KFM_NAME_MAX + 1], c[KFM_NAME_MAX + 1];
  memset(a, 't', KFM_NAME_MAX);
  a[KFM_NAME_MAX] = '\0';
  memcpy(b, a, sizeof a);
  memcpy(c, a, sizeof a);
  a[0] = 'A'; /* same tail of 254 bytes */
  b[0] = 'B';
  c[KFM_NAME_MAX - 1] = 'C'; /* same head */
  kfm_node_id_t ia, ib, ic, it, again;
  KT_OK(s, kfm_node_register(s, a, &ia));
  KT_OK(s, kfm_node_register(s, b, &ib));
  KT_OK(s, kfm_node_register(s, c, &ic));
  c[KFM_NAME_MAX - 1] = 't';
  KT_OK(s, kfm_node_register(s, c, &it));
  CU_ASSERT_NOT_EQUAL(ia, ib);
  CU_ASSERT_NOT_EQUAL(ic, it);
  CU_ASSERT_NOT_EQUAL(ia, it);
  CU_ASSERT_EQUAL(strlen(kfm_node_name(s, ia)), KFM_NAME_MAX);
  CU_ASSERT_STRING_EQUAL(kfm_node_name(s, ib), b);
  KT_OK(s, kfm_node_register(s, a, &again));
  CU_ASSERT_EQUAL(again, ia);

  char big[1001];
  memset(big, 'x', 1000);
  big[1000] = '\0';
  static const size_t lens[] = {KFM_NAME_MAX + 1, 300, 1000};
  for (size_t i = 0; i < 3; i++) {
    char want[64];
    big[lens[i]] = '\0';
    CU_ASSERT_EQUAL(kfm_node_register(s, big, &again), KFM_ENAME);
    snprintf(want, sizeof want, "%zu bytes", lens[i]);
    CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), want));
    CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "limit of 255 bytes"));
    CU_ASSERT_EQUAL(kfm_enter_name(s, big), KFM_ENAME);
    big[lens[i]] = 'x';
  }
  /* Multi-byte names count bytes: 85 x 3 bytes = 255 is accepted, 86 not. */
  char u[3 * 86 + 1];
  for (int i = 0; i < 86; i++) {
    memcpy(u + 3 * i, "\xe2\x82\xac", 3);
  }
  u[3 * 86] = '\0';
  CU_ASSERT_EQUAL(kfm_node_register(s, u, &again), KFM_ENAME);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "258 bytes"));
  u[3 * 85] = '\0';
  KT_OK(s, kfm_node_register(s, u, &again));
  CU_ASSERT_STRING_EQUAL(kfm_node_name(s, again), u);
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
      {"NULL arguments give KFM_EINVAL", test_null_arguments},
      {"numbers are strict decimal integers in range", test_strict_numbers},
      {"struct capacities and rate checked like strings", test_struct_numbers},
      {"events= empty means the default set", test_empty_events},
      {"quoted values, escapes and unterminated quotes", test_quoting},
      {"long bad values are cut in messages", test_long_value_message},
      {"names up to KFM_NAME_MAX distinct, longer refused", test_name_limit},
      {NULL, NULL},
  };
  return kt_run("config", cases);
}
