/*
 * kfm_module.h - private to the extension kfm_debugging._kfm: what its two
 * C files share.  kfm_module.c is the general binding (Session, report,
 * errors, module init); kfm_hooks.c the LangGraph hooks (Hook, HookData),
 * which run node spans on a Session.
 */
#ifndef KFM_PY_MODULE_H
#define KFM_PY_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "kfm/kfm.h"

typedef struct {
  PyObject_HEAD
  kfm_session_t *s;
  int state; /* 0 created, 1 running, 2 stopped */
  /* Transitions refused by call/try_enter/try_exit.  Only touched with the
   * GIL held, so a plain counter is race-free. */
  unsigned long long failures;
  int warned_full; /* the registry-full warning was given */
} SessionObject;

/* kfm_debugging._kfm.Session (kfm_module.c). */
extern PyTypeObject kfmpy_SessionType;

/* The node id of a call/try_* argument without raising: -1 when arg is not
 * an int in range (kfm_module.c). */
long kfmpy_node_id_quiet(PyObject *arg);

/* Ready Hook and HookData and add them to the module m (kfm_hooks.c);
 * -1 with an exception set on failure. */
int kfmpy_hooks_init(PyObject *m);

#endif
