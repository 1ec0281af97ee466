/*
 * test_flush.c - a profile survives a process that ends without
 * kfm_session_stop: exit() writes it, and with flush_signals=on so do the
 * fatal signals, each marked "truncated" with the reason and the nodes
 * still open.  The process ends exactly as it would without kfm (same exit
 * code, same terminating signal), a program's own signal handler is left
 * in charge, and a forked child never writes its parent's file.
 */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kfm_test.h"

static char dir[64];

static void paths(char *out, size_t len, const char *name) {
  if (dir[0] == '\0') {
    snprintf(dir, sizeof dir, "/tmp/kfm-flush-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  }
  snprintf(out, len, "%s/%s.json", dir, name);
  unlink(out);
}

static int got_term;
static void own_handler(int sig) {
  (void)sig;
  got_term = 1;
}

enum end { END_EXIT, END_SIGTERM, END_SIGINT_NO_FLUSH, END_OWN_HANDLER, END_STOP };

/* The child: a, b open (b inside a), c run 3 times inside b; then it ends
 * as told.  Exit code 7 where it exits. */
static void child(const char *out, enum end how) {
  char cfg[256];
  snprintf(cfg, sizeof cfg, "level=standard,rate=1000,output=%s%s", out,
           how == END_SIGINT_NO_FLUSH ? "" : ",flush_signals=on");
  if (how == END_OWN_HANDLER) {
    signal(SIGTERM, own_handler);
  }
  kfm_session_t *s;
  if (kfm_session_create_str(&s, cfg) != 0) {
    _exit(2);
  }
  kfm_node_id_t a, b, c;
  if (kfm_node_register(s, "a", &a) || kfm_node_register(s, "b", &b) ||
      kfm_node_register(s, "c", &c) || kfm_session_start(s) || kfm_enter(s, a) ||
      kfm_enter(s, b)) {
    _exit(3);
  }
  for (int i = 0; i < 3; i++) {
    if (kfm_enter(s, c) || kfm_exit(s, c)) {
      _exit(4);
    }
  }
  switch (how) {
  case END_EXIT:
    exit(7);
  case END_SIGTERM:
    raise(SIGTERM);
    _exit(5); /* not reached: the default action ends the process */
  case END_SIGINT_NO_FLUSH:
    raise(SIGINT);
    _exit(5);
  case END_OWN_HANDLER:
    raise(SIGTERM);
    if (!got_term) {
      _exit(6);
    }
    break;
  case END_STOP:
    break;
  }
  kfm_exit(s, b);
  kfm_exit(s, a);
  kfm_session_stop(s);
  kfm_session_destroy(s);
  _exit(0);
}

static int run_child(const char *out, enum end how) {
  fflush(NULL);
  pid_t pid = fork();
  CU_ASSERT_FATAL(pid >= 0);
  if (pid == 0) {
    child(out, how);
  }
  return kt_wait(pid);
}

static void check_truncated(const char *out, const char *reason) {
  char *j = kt_slurp(out);
  CU_ASSERT_PTR_NOT_NULL_FATAL(j);
  char want[160];
  snprintf(want, sizeof want, "\"truncated\":{\"reason\":\"%s\",\"open\":[{\"thread\":", reason);
  if (strstr(j, want) == NULL) {
    fprintf(stderr, "\nwanted %s in %.300s\n", want, j);
  }
  CU_ASSERT_PTR_NOT_NULL(strstr(j, want));
  CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"nodes\":[\"a\",\"b\"]}]}"));
  /* The completed inner node is in the profile with its exact count. */
  CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"name\":\"c\",\"count\":3"));
  free(j);
}

static void test_exit_flush(void) {
  char out[128];
  paths(out, sizeof out, "exit");
  int st = run_child(out, END_EXIT);
  CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 7);
  check_truncated(out, "exit() before kfm_session_stop");
  unlink(out);
}

static void test_sigterm_flush(void) {
  char out[128];
  paths(out, sizeof out, "sigterm");
  int st = run_child(out, END_SIGTERM);
  CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
  check_truncated(out, "SIGTERM before kfm_session_stop");
  unlink(out);
}

static void test_sigint_without_flush(void) {
  char out[128];
  paths(out, sizeof out, "sigint");
  int st = run_child(out, END_SIGINT_NO_FLUSH);
  CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGINT);
  CU_ASSERT_NOT_EQUAL(access(out, F_OK), 0); /* opt-in: nothing written */
}

static void test_own_handler_kept(void) {
  char out[128];
  paths(out, sizeof out, "own");
  int st = run_child(out, END_OWN_HANDLER);
  CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  char *j = kt_slurp(out);
  CU_ASSERT_PTR_NOT_NULL_FATAL(j);
  CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"truncated\":null"));
  free(j);
  unlink(out);
}

/* A forked child that exits with the parent's session running writes
 * nothing; the parent's own stop later writes a complete profile. */
static void test_forked_child_exit(void) {
  char out[128], cfg[256];
  paths(out, sizeof out, "parent");
  snprintf(cfg, sizeof cfg, "level=basic,output=%s", out);
  kfm_session_t *s;
  KT_OK(NULL, kfm_session_create_str(&s, cfg));
  kfm_node_id_t a;
  KT_OK(s, kfm_node_register(s, "a", &a));
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter(s, a));
  fflush(NULL);
  pid_t pid = fork();
  CU_ASSERT_FATAL(pid >= 0);
  if (pid == 0) {
    exit(0);
  }
  int st = kt_wait(pid);
  CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CU_ASSERT_NOT_EQUAL(access(out, F_OK), 0);
  KT_OK(s, kfm_exit(s, a));
  KT_OK(s, kfm_session_stop(s));
  char *j = kt_slurp(out);
  CU_ASSERT_PTR_NOT_NULL_FATAL(j);
  CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"truncated\":null"));
  free(j);
  kfm_session_destroy(s);
  unlink(out);
}

static void test_bad_value(void) {
  kfm_session_t *s;
  CU_ASSERT_EQUAL(kfm_session_create_str(&s, "flush_signals=yes"), KFM_EBADVALUE);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "flush_signals: bad value 'yes'"));
}

int main(void) {
  static const struct kt_case cases[] = {
      {"exit() without stop writes a truncated profile", test_exit_flush},
      {"SIGTERM with flush_signals=on", test_sigterm_flush},
      {"SIGINT without flush_signals loses the run", test_sigint_without_flush},
      {"the program's own handler is kept", test_own_handler_kept},
      {"a forked child's exit writes nothing", test_forked_child_exit},
      {"flush_signals: bad value", test_bad_value},
      {NULL, NULL},
  };
  int rc = kt_run("flush", cases);
  if (dir[0]) {
    rmdir(dir);
  }
  return rc;
}
