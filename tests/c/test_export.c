/*
 * test_export.c - the JSON export: written at stop when output= is set,
 * valid JSON with the schema version (checked by Python's json module when
 * python3 exists), exact counts and one trace event per transition, and an
 * unwritable path gives KFM_EIO naming it while an earlier file survives.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "kfm_kernels.h"
#include "kfm_test.h"

static char dir[256];

static void test_output_at_stop(void) {
  char path[300], cfg[400];
  snprintf(path, sizeof path, "%s/profile.json", dir);
  snprintf(cfg, sizeof cfg, "level=detailed,rate=200,output=%s", path);
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, cfg));
  kfm_node_id_t a, b;
  KT_OK(s, kfm_node_register(s, "load \"quoted\"", &a));
  KT_OK(s, kfm_node_register(s, "step", &b));
  KT_OK(s, kfm_session_start(s));
  for (int i = 0; i < 7; i++) {
    KT_OK(s, kfm_enter(s, a));
    KT_OK(s, kfm_enter(s, b));
    kfmk_busy_ms(2);
    KT_OK(s, kfm_exit(s, b));
    KT_OK(s, kfm_exit(s, a));
  }
  KT_OK(s, kfm_session_stop(s));
  kfm_report_t *r;
  kfm_summary_t sum;
  KT_OK(s, kfm_session_report(s, &r));
  kfm_report_summary(r, &sum);
  CU_ASSERT_EQUAL(sum.events, 28);
  CU_ASSERT_EQUAL(sum.events_dropped, 0);
  /* Events alternate enter/exit in order on one thread, with metrics. */
  kfm_event_t e0, e1;
  KT_OK(s, kfm_report_event(r, 0, &e0));
  KT_OK(s, kfm_report_event(r, 1, &e1));
  CU_ASSERT_EQUAL(e0.kind, KFM_EVENT_ENTER);
  CU_ASSERT_EQUAL(e0.node, a);
  CU_ASSERT_EQUAL(e1.node, b);
  CU_ASSERT_TRUE(e1.t_ns >= e0.t_ns);
  int rss = kfm_report_metric_index(r, "proc.rss");
  CU_ASSERT_FATAL(rss >= 0);
  KT_NEAR(e0.values[rss], kt_rss(), 0.5);
  kfm_report_free(r);
  kfm_session_destroy(s);

  char *txt = kt_slurp(path);
  CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
  CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\"schema_version\":1"));
  CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\"name\":\"load \\\"quoted\\\"\""));
  CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\"count\":7"));
  free(txt);
  if (access("/usr/bin/python3", X_OK) == 0 || system("command -v python3 >/dev/null 2>&1") == 0) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
             "assert d[\"schema\"]==\"kfm.profile\" and d[\"schema_version\"]==1; "
             "n={x[\"name\"]:x for x in d[\"nodes\"]}; "
             "assert n[\"step\"][\"count\"]==7 and len(d[\"events\"])==28; "
             "assert {e[\"count\"] for e in d[\"edges\"][\"nested\"]}=={7}; "
             "assert d[\"derived_metrics\"][\"ipc\"].startswith(\"unavailable: needs\"); "
             "assert d[\"derived_metrics\"][\"cpu_util\"]==\"available\"; "
             "m=n[\"step\"][\"metrics\"]; c=m[\"proc.cpu_user\"][\"inclusive\"]+m[\"proc.cpu_sys\"][\"inclusive\"]; "
             "assert abs(n[\"step\"][\"derived\"][\"cpu_util\"] - c/n[\"step\"][\"total_ns\"]) < 1e-9' %s",
             path);
    CU_ASSERT_EQUAL(system(cmd), 0);
  }
}

static void test_unwritable_keeps_old(void) {
  char path[300];
  snprintf(path, sizeof path, "%s/keep.json", dir);
  FILE *f = fopen(path, "w");
  fputs("{\"old\":true}\n", f);
  fclose(f);
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,rate=off"));
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter_name(s, "x"));
  KT_OK(s, kfm_exit_name(s, "x"));
  KT_OK(s, kfm_session_stop(s));
  /* A directory that does not exist: the export fails and says where. */
  CU_ASSERT_EQUAL(kfm_session_export(s, "/nonexistent-kfm-dir/p.json"), KFM_EIO);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "/nonexistent-kfm-dir/p.json"));
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "No such file"));
  /* A read-only directory holding an earlier export: it stays intact
   * (root ignores directory permissions, so only check when not root). */
  if (geteuid() != 0) {
    chmod(dir, 0555);
    CU_ASSERT_EQUAL(kfm_session_export(s, path), KFM_EIO);
    chmod(dir, 0755);
    char *txt = kt_slurp(path);
    CU_ASSERT_STRING_EQUAL(txt, "{\"old\":true}\n");
    free(txt);
  }
  /* Overwriting works and replaces the old file whole. */
  KT_OK(s, kfm_session_export(s, path));
  char *txt = kt_slurp(path);
  CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\"schema\":\"kfm.profile\""));
  free(txt);
  CU_ASSERT_EQUAL(kfm_session_export(s, ""), KFM_EINVAL);
  kfm_session_destroy(s);
}

static void test_print(void) {
  char path[300];
  snprintf(path, sizeof path, "%s/report.txt", dir);
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=standard,rate=100,backends=proc,papi"));
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter_name(s, "printed_node"));
  kfmk_sleep_ms(15);
  KT_OK(s, kfm_exit_name(s, "printed_node"));
  KT_OK(s, kfm_session_stop(s));
  FILE *f = fopen(path, "w");
  KT_OK(s, kfm_session_print(s, f));
  fclose(f);
  char *txt = kt_slurp(path);
  CU_ASSERT_PTR_NOT_NULL(strstr(txt, "printed_node"));
  CU_ASSERT_PTR_NOT_NULL(strstr(txt, "proc.rss="));
  CU_ASSERT_PTR_NOT_NULL(strstr(txt, "papi"));
  free(txt);
  kfm_session_destroy(s);
}

int main(void) {
  unsetenv("KFM_CONFIG");
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/kfm-export-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  static const struct kt_case cases[] = {
      {"output= writes valid JSON at stop; one event per transition", test_output_at_stop},
      {"unwritable path: KFM_EIO naming it, earlier file intact", test_unwritable_keeps_old},
      {"text report", test_print},
      {NULL, NULL},
  };
  int rc = kt_run("export", cases);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "could not remove %s\n", dir);
  }
  return rc;
}
