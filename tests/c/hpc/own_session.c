/* own_session.c - a program that uses the C API twice under "kfm run": a
 * node in the run's session (kfm_session_default) and a session of its
 * own, created from KFM_CONFIG and left running at exit (so the engine
 * flushes it at exit, after the run's profile was written).  Prints the
 * KFM_CONFIG it saw. */
#include <stdio.h>
#include <stdlib.h>

#include "kfm/kfm.h"

int main(void) {
  const char *cfg = getenv("KFM_CONFIG");
  printf("KFM_CONFIG=%s\n", cfg ? cfg : "(unset)");
  kfm_session_t *run = kfm_session_default();
  if (run == NULL || kfm_enter_name(run, "shared") != 0 || kfm_exit_name(run, "shared") != 0) {
    printf("no run session\n");
    return 1;
  }
  kfm_session_t *mine;
  if (kfm_session_create(&mine, NULL) != 0 || kfm_session_start(mine) != 0 ||
      kfm_enter_name(mine, "mine") != 0 || kfm_exit_name(mine, "mine") != 0) {
    printf("own session failed: %s\n", kfm_errmsg(NULL));
    return 1;
  }
  return 0;
}
