/*
 * flush.c - profiles that survive a process ending without
 * kfm_session_stop.
 *
 * At exit() (from any thread, or main returning), every running session
 * with an output file is stopped and exported, marked "truncated" with the
 * reason and the nodes each thread still had open (export.c).  That is
 * always on, as in Caliper: a batch job that calls exit() mid-phase still
 * leaves its profile.
 *
 * On a fatal signal (opt-in, config flush_signals=on): SIGTERM, SIGINT,
 * SIGHUP and SIGQUIT, each only while it still has its default action (a
 * program with its own handler decides itself whether it ends; its exit()
 * then flushes).  Writing a file is not async-signal-safe, so the handler
 * does not: it wakes a flush thread (sem_post is async-signal-safe), waits
 * for it at most KFM__FLUSH_WAIT_S seconds, restores the default action and
 * re-raises, so the process ends as it would have, with the same signal
 * status.  If the flush thread cannot finish (the interrupted thread held a
 * lock it needs), the wait times out and the process still ends: a profile
 * may be missing, never a hang.
 *
 * The state here is process-wide by nature (signal dispositions and the
 * exit handler list are the process's), set up once under pthread_once.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define KFM__FLUSH_WAIT_S 10

static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void flush_exit(void) {
  kfm__flush_live("exit() before kfm_session_stop");
}

static void flush_exit_register(void) {
  atexit(flush_exit);
}

void kfm__flush_at_exit(void) {
  pthread_once(&exit_once, flush_exit_register);
}

/* ---- signals ------------------------------------------------------------ */

static const int flush_sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
#define NSIGS (sizeof flush_sigs / sizeof flush_sigs[0])
static const char *const flush_why[NSIGS] = {
    "SIGTERM before kfm_session_stop", "SIGINT before kfm_session_stop",
    "SIGHUP before kfm_session_stop", "SIGQUIT before kfm_session_stop"};

static pthread_once_t sig_once = PTHREAD_ONCE_INIT;
static int sig_rc;
static sem_t sig_req, sig_done;
static volatile sig_atomic_t sig_which = -1; /* index into flush_sigs */
static atomic_flag sig_taken = ATOMIC_FLAG_INIT;
static pid_t sig_pid; /* the flush thread's process: a forked child has none */

static void *flush_thread(void *arg) {
  (void)arg;
  for (;;) {
    while (sem_wait(&sig_req) != 0) {
    }
    int i = sig_which;
    kfm__flush_live(i >= 0 && (size_t)i < NSIGS ? flush_why[i] : "signal");
    sem_post(&sig_done);
  }
  return NULL;
}

static void flush_on_signal(int sig) {
  int saved = errno;
  /* The first fatal signal flushes; any later one (another thread, or the
   * user pressing Ctrl-C twice) goes straight to the default action. */
  if (getpid() == sig_pid && !atomic_flag_test_and_set(&sig_taken)) {
    for (size_t i = 0; i < NSIGS; i++) {
      if (flush_sigs[i] == sig) {
        sig_which = (int)i;
      }
    }
    sem_post(&sig_req);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += KFM__FLUSH_WAIT_S;
    while (sem_timedwait(&sig_done, &ts) != 0 && errno == EINTR) {
    }
  }
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, NULL);
  errno = saved;
  raise(sig); /* blocked while this handler runs: delivered as it returns */
}

static void flush_signals_install(void) {
  sig_pid = getpid();
  if (sem_init(&sig_req, 0, 0) != 0 || sem_init(&sig_done, 0, 0) != 0) {
    sig_rc = KFM_ETHREAD;
    return;
  }
  /* The flush thread never takes these signals itself: it must be free to
   * write while the handler waits on another thread. */
  sigset_t block, old;
  sigemptyset(&block);
  for (size_t i = 0; i < NSIGS; i++) {
    sigaddset(&block, flush_sigs[i]);
  }
  pthread_sigmask(SIG_BLOCK, &block, &old);
  pthread_t th;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&th, &attr, flush_thread, NULL);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    sig_rc = KFM_ETHREAD;
    return;
  }
  for (size_t i = 0; i < NSIGS; i++) {
    struct sigaction cur;
    if (sigaction(flush_sigs[i], NULL, &cur) != 0 || cur.sa_handler != SIG_DFL ||
        (cur.sa_flags & SA_SIGINFO)) {
      continue; /* ignored, or the program's own handler: left as it is */
    }
    struct sigaction sa = {.sa_handler = flush_on_signal};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(flush_sigs[i], &sa, NULL);
  }
}

int kfm__flush_on_signals(void) {
  pthread_once(&sig_once, flush_signals_install);
  return sig_rc;
}
