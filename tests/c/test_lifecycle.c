/*
 * test_lifecycle.c - misuse of the session life cycle that must be caught,
 * not absorbed into wrong results: a restart while another thread is inside
 * a transition on the session.  A test backend whose enter hook blocks
 * holds a thread inside kfm_enter for as long as the test wants.
 */
#include <pthread.h>
#include <semaphore.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "kfm_test.h"

static sem_t in_hook, release_hook;
static kfm_node_id_t blocked_node = KFM__NONE;
static _Atomic pid_t hook_tid;

static void blocker_enter(void *state, void *tstate, uint32_t node) {
  (void)state;
  (void)tstate;
  if (node == blocked_node) {
    atomic_store(&hook_tid, (pid_t)syscall(SYS_gettid));
    sem_post(&in_hook);
    sem_wait(&release_hook);
  }
}

static const struct kfm__backend blocker = {
    .abi = KFM_BACKEND_ABI,
    .name = "test-blocker",
    .enter = blocker_enter,
};

/* Adds the blocker to a created session, as session_open_backends would. */
static void add_blocker(kfm_session_t *s) {
  CU_ASSERT_FATAL(s->nbackends < KFM__MAX_BACKENDS);
  s->be[s->nbackends] = (struct kfm__backend_use){.ops = &blocker};
  s->hook_enter[s->nhook_enter++] = (uint8_t)s->nbackends;
  s->nbackends++;
}

struct worker {
  kfm_session_t *s;
  kfm_node_id_t id;
  int rc;
};

static void *enter_once(void *arg) {
  struct worker *w = arg;
  w->rc = kfm_enter(w->s, w->id);
  return NULL;
}

static void test_restart_while_inside_enter(void) {
  CU_ASSERT_EQUAL_FATAL(sem_init(&in_hook, 0, 0), 0);
  CU_ASSERT_EQUAL_FATAL(sem_init(&release_hook, 0, 0), 0);
  kfm_session_t *s;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,rate=off"));
  add_blocker(s);
  kfm_node_id_t slow, fast;
  KT_OK(s, kfm_node_register(s, "slow", &slow));
  KT_OK(s, kfm_node_register(s, "fast", &fast));
  blocked_node = slow;
  KT_OK(s, kfm_session_start(s));
  struct worker w = {.s = s, .id = slow};
  pthread_t th;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, enter_once, &w), 0);
  sem_wait(&in_hook); /* the worker is inside kfm_enter now */
  KT_OK(s, kfm_session_stop(s));
  /* Refused, naming the thread, as long as the worker is inside; the
   * session stays stopped and usable. */
  for (int i = 0; i < 3; i++) {
    CU_ASSERT_EQUAL(kfm_session_restart(s), KFM_EBUSY);
  }
  char want[64];
  snprintf(want, sizeof want, "thread %d", (int)atomic_load(&hook_tid));
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), want));
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "kfm_enter/kfm_exit"));
  CU_ASSERT_EQUAL(kfm_enter(s, fast), KFM_ESTATE);
  sem_post(&release_hook);
  pthread_join(th, NULL);
  CU_ASSERT_EQUAL(w.rc, 0); /* it had passed the state check before the stop */
  /* With the worker out, the restart goes through and the new run counts
   * exactly its own transitions. */
  KT_OK(s, kfm_session_restart(s));
  blocked_node = KFM__NONE;
  for (int i = 0; i < 10; i++) {
    KT_OK(s, kfm_enter(s, fast));
    KT_OK(s, kfm_exit(s, fast));
  }
  KT_OK(s, kfm_session_stop(s));
  CU_ASSERT_EQUAL(kt_node_count(s, "fast"), 10);
  CU_ASSERT_EQUAL(kt_node_count(s, "slow"), 0);
  kfm_session_destroy(s);
  sem_destroy(&in_hook);
  sem_destroy(&release_hook);
}

/* The caller's own slot never counts as busy, and a thread that merely
 * exists in the session (idle, or blocked outside kfm) does not either. */
static void *idle_member(void *arg) {
  struct worker *w = arg;
  w->rc = kfm_enter(w->s, w->id);
  if (w->rc == 0) {
    w->rc = kfm_exit(w->s, w->id);
  }
  sem_post(&in_hook);
  sem_wait(&release_hook);
  return NULL;
}

static void test_restart_with_idle_threads(void) {
  CU_ASSERT_EQUAL_FATAL(sem_init(&in_hook, 0, 0), 0);
  CU_ASSERT_EQUAL_FATAL(sem_init(&release_hook, 0, 0), 0);
  kfm_session_t *s;
  KT_OK(NULL, kfm_session_create_str(&s, "level=standard,rate=1000"));
  kfm_node_id_t a;
  KT_OK(s, kfm_node_register(s, "a", &a));
  KT_OK(s, kfm_session_start(s));
  struct worker w[3];
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    w[i] = (struct worker){.s = s, .id = a};
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, idle_member, &w[i]), 0);
  }
  for (int i = 0; i < 3; i++) {
    sem_wait(&in_hook);
  }
  for (int run = 0; run < 20; run++) {
    KT_OK(s, kfm_enter(s, a));
    KT_OK(s, kfm_exit(s, a));
    KT_OK(s, kfm_session_stop(s));
    KT_OK(s, kfm_session_restart(s));
  }
  KT_OK(s, kfm_session_stop(s));
  CU_ASSERT_EQUAL(kt_node_count(s, "a"), 0);
  for (int i = 0; i < 3; i++) {
    sem_post(&release_hook);
  }
  for (int i = 0; i < 3; i++) {
    pthread_join(th[i], NULL);
    CU_ASSERT_EQUAL(w[i].rc, 0);
  }
  kfm_session_destroy(s);
  sem_destroy(&in_hook);
  sem_destroy(&release_hook);
}

/* Past max_nodes, registration says KFM_EFULL but hands out the id of
 * "(other)", which counts every overflowing name's time. */
static void test_registry_overflow_other(void) {
  kfm_session_t *s;
  KT_OK(NULL, kfm_session_create_str(&s, "level=standard,max_nodes=3,rate=1000"));
  kfm_node_id_t id[6];
  const char *names[] = {"a", "b", "c", "d", "e", "d"};
  for (int i = 0; i < 3; i++) {
    KT_OK(s, kfm_node_register(s, names[i], &id[i]));
  }
  for (int i = 3; i < 6; i++) {
    id[i] = KFM_NODE_ROOT;
    CU_ASSERT_EQUAL(kfm_node_register(s, names[i], &id[i]), KFM_EFULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), names[i]));
    CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "(other)"));
  }
  CU_ASSERT_EQUAL(id[3], 3);
  CU_ASSERT_EQUAL(id[4], 3);
  CU_ASSERT_EQUAL(id[5], 3);
  CU_ASSERT_STRING_EQUAL(kfm_node_name(s, id[3]), KFM_NODE_OTHER);
  KT_OK(s, kfm_session_start(s));
  for (int i = 0; i < 6; i++) {
    KT_OK(s, kfm_enter(s, id[i]));
    KT_OK(s, kfm_exit(s, id[i]));
  }
  KT_OK(s, kfm_session_stop(s));
  CU_ASSERT_EQUAL(kt_node_count(s, "a"), 1);
  CU_ASSERT_EQUAL(kt_node_count(s, KFM_NODE_OTHER), 3);
  /* The overflow node survives a restart like any other. */
  KT_OK(s, kfm_session_restart(s));
  KT_OK(s, kfm_enter(s, id[4]));
  KT_OK(s, kfm_exit(s, id[4]));
  KT_OK(s, kfm_session_stop(s));
  CU_ASSERT_EQUAL(kt_node_count(s, KFM_NODE_OTHER), 1);
  kfm_session_destroy(s);
}

int main(void) {
  static const struct kt_case cases[] = {
      {"restart while a thread is inside kfm_enter", test_restart_while_inside_enter},
      {"restart with idle member threads", test_restart_with_idle_threads},
      {"names past max_nodes count in (other)", test_registry_overflow_other},
      {NULL, NULL},
  };
  return kt_run("lifecycle", cases);
}
