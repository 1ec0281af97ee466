/*
 * test_output_pattern.c - output= patterns (%r %p %h %j %%): each launcher's
 * rank and job variables in their order of precedence, the fallbacks when
 * none is set, the refusal of unknown patterns at parse time and at
 * creation, and the file a session actually writes under the expanded name.
 */
#include <unistd.h>

#include "kfm_test.h"

static const char *const all_vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK",     "PMIX_RANK",
                                       "SLURM_PROCID",         "SLURM_JOB_ID", "PBS_JOBID"};

static void clear_env(void) {
  for (size_t i = 0; i < sizeof all_vars / sizeof all_vars[0]; i++) {
    unsetenv(all_vars[i]);
  }
}

static void expect(const char *pattern, const char *want) {
  char buf[512];
  int rc = kfm_output_expand(pattern, buf, sizeof buf);
  CU_ASSERT_EQUAL(rc, 0);
  if (rc == 0 && strcmp(buf, want) != 0) {
    fprintf(stderr, "\n'%s' -> '%s', want '%s'\n", pattern, buf, want);
  }
  CU_ASSERT_STRING_EQUAL(buf, want);
}

static void test_rank_precedence(void) {
  clear_env();
  expect("p.%r.json", "p.norank.json");
  setenv("SLURM_PROCID", "7", 1);
  expect("p.%r.json", "p.7.json");
  setenv("PMIX_RANK", "6", 1);
  expect("p.%r.json", "p.6.json");
  setenv("PMI_RANK", "5", 1);
  expect("p.%r.json", "p.5.json");
  setenv("OMPI_COMM_WORLD_RANK", "4", 1);
  expect("p.%r.json", "p.4.json");
  /* Set but empty counts as unset. */
  setenv("OMPI_COMM_WORLD_RANK", "", 1);
  expect("%r", "5");
  clear_env();
}

static void test_job_pid_host(void) {
  clear_env();
  expect("%j", "nojob");
  setenv("PBS_JOBID", "12.pbs/a", 1);
  expect("%j", "12.pbs_a"); /* a '/' would add a folder level */
  setenv("SLURM_JOB_ID", "991", 1);
  expect("job%j-%%-%r", "job991-%-norank");
  char want[64], host[256];
  snprintf(want, sizeof want, "%ld", (long)getpid());
  expect("%p", want);
  CU_ASSERT_EQUAL_FATAL(gethostname(host, sizeof host), 0);
  host[sizeof host - 1] = '\0';
  expect("%h", host);
  clear_env();
}

static void test_errors(void) {
  char buf[8];
  CU_ASSERT_EQUAL(kfm_output_expand("a%x", buf, sizeof buf), KFM_EBADVALUE);
  CU_ASSERT_EQUAL(kfm_output_expand("a%", buf, sizeof buf), KFM_EBADVALUE);
  CU_ASSERT_EQUAL(kfm_output_expand("abcdefgh", buf, sizeof buf), KFM_ERANGE);
  CU_ASSERT_EQUAL(kfm_output_expand("abcdefg", buf, sizeof buf), 0);
  CU_ASSERT_EQUAL(kfm_output_expand(NULL, buf, sizeof buf), KFM_EINVAL);
  CU_ASSERT_EQUAL(kfm_output_expand("a", buf, 0), KFM_EINVAL);

  kfm_config_t c;
  char err[256];
  kfm_config_init(&c);
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "output=prof.%q.json", err, sizeof err), KFM_EBADVALUE);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown pattern '%q' in 'prof.%q.json'"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "%r rank"));
  CU_ASSERT_STRING_EQUAL(c.output, ""); /* unchanged on error */
  CU_ASSERT_EQUAL(kfm_config_parse(&c, "output=prof%", err, sizeof err), KFM_EBADVALUE);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "lone '%'"));

  /* Set through the struct, the bad pattern is caught at creation. */
  snprintf(c.output, sizeof c.output, "x.%%z");
  c.rate_hz = -1;
  kfm_session_t *s = NULL;
  CU_ASSERT_EQUAL(kfm_session_create(&s, &c), KFM_EBADVALUE);
  CU_ASSERT_PTR_NULL(s);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "'x.%z' has an unknown pattern"));
}

/* The session writes its export under the expanded name; two "ranks"
 * (two sessions with different rank variables) write two files. */
static void test_session_writes_expanded(void) {
  char dir[] = "/tmp/kfm_pattern_XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  clear_env();
  setenv("SLURM_JOB_ID", "42", 1);
  char cfg[512], path[600];
  snprintf(cfg, sizeof cfg, "level=basic,rate=off,output=%s/p.%%j.%%r.json", dir);
  for (int rank = 0; rank < 2; rank++) {
    char r[8];
    snprintf(r, sizeof r, "%d", rank);
    setenv("PMI_RANK", r, 1);
    kfm_session_t *s;
    KT_OK(NULL, kfm_session_create_str(&s, cfg));
    /* Changing the variable after creation changes nothing: the name is fixed. */
    setenv("PMI_RANK", "99", 1);
    KT_OK(s, kfm_session_start(s));
    KT_OK(s, kfm_enter_name(s, "work"));
    KT_OK(s, kfm_exit_name(s, "work"));
    KT_OK(s, kfm_session_stop(s));
    kfm_session_destroy(s);
  }
  for (int rank = 0; rank < 2; rank++) {
    snprintf(path, sizeof path, "%s/p.42.%d.json", dir, rank);
    CU_ASSERT_EQUAL(access(path, R_OK), 0);
    unlink(path);
  }
  snprintf(path, sizeof path, "%s/p.42.99.json", dir);
  CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0);
  CU_ASSERT_EQUAL(rmdir(dir), 0);
  clear_env();
}

int main(void) {
  static const struct kt_case cases[] = {{"rank_precedence", test_rank_precedence},
                                         {"job_pid_host", test_job_pid_host},
                                         {"errors", test_errors},
                                         {"session_writes_expanded", test_session_writes_expanded},
                                         {NULL, NULL}};
  return kt_run("output_pattern", cases);
}
