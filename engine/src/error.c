/*
 * error.c - error codes to text, and the detail messages that name the bad
 * value: one per session (kfm_errmsg(s)) and one per thread for failed
 * session creation (kfm_errmsg(NULL)).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

/* Creation fails before a session exists, so its detail lives per thread,
 * like errno, and never races with another thread's failure. */
static _Thread_local char create_errmsg[512];

const char *kfm_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define KFM__ERR_TEXT(name, num, msg)                                                              \
  case -(num):                                                                                     \
    return msg;
    KFM_ERRNO_MAP(KFM__ERR_TEXT)
#undef KFM__ERR_TEXT
  default:
    return "unknown error";
  }
}

const char *kfm_err_name(int err) {
  switch (err) {
  case 0:
    return "KFM_OK";
#define KFM__ERR_NAME(name, num, msg)                                                              \
  case -(num):                                                                                     \
    return "KFM_" #name;
    KFM_ERRNO_MAP(KFM__ERR_NAME)
#undef KFM__ERR_NAME
  default:
    return "KFM_EUNKNOWN";
  }
}

const char *kfm_level_name(int level) {
  static const char *const names[] = {"basic", "standard", "detailed", "comprehensive"};
  return level >= 0 && level <= KFM_LEVEL_COMPREHENSIVE ? names[level] : NULL;
}

int kfm__err(kfm_session_t *s, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&s->lock);
  vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
  pthread_mutex_unlock(&s->lock);
  va_end(ap);
  return code;
}

int kfm__create_err(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(create_errmsg, sizeof create_errmsg, fmt, ap);
  va_end(ap);
  return code;
}

const char *kfm_errmsg(const kfm_session_t *s) {
  return s ? s->errmsg : create_errmsg;
}

void kfm_free(void *p) {
  free(p);
}
