/* exit_thread.c - calls exit() from a second thread while main is busy:
 * "kfm run" must still write a complete profile. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static void *quit(void *arg) {
  (void)arg;
  struct timespec ts = {0, 50 * 1000 * 1000};
  nanosleep(&ts, NULL);
  exit(3);
}

int main(void) {
  pthread_t t;
  pthread_create(&t, NULL, quit, NULL);
  for (;;) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}
