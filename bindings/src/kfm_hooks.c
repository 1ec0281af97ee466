/*
 * kfm_hooks.c - the LangGraph half of the extension kfm_debugging._kfm:
 * Hook, the C fast path of the Debugger's LangGraph hooks, and HookData,
 * the run's tables they read.  The general binding (Session, report,
 * errors) is kfm_module.c; kfm_module.h is what the two share.
 */
#include "kfm_module.h"

#include <stddef.h>
#include <structmember.h>
#include <time.h>

#define SessionType kfmpy_SessionType
#define node_id_quiet kfmpy_node_id_quiet

/* ---------------------------------------------------------------------- */
/* LangGraph hooks                                                          */
/*
 * Hook objects stand in for the LangGraph functions the Debugger patches
 * (prepare_single_task, run_with_retry, apply_writes) and for a node's
 * function step (TimedStep.invoke).  Measured on a 20-node chain, every
 * Python frame a node goes through costs several microseconds once it runs
 * among LangGraph's own code (cold caches), several times its cost in a
 * tight loop; so the common case runs here in C: look up the active
 * recorder (a ContextVar, which LangGraph copies into worker threads and
 * tasks), find the node's id, enter, call the original with the caller's
 * own argument vector (no repacking of prepare_single_task's 17 keyword
 * arguments), exit.  Anything else (subgraph namespaces, Send tasks, a name
 * not registered yet, parallel supersteps, a proc not instrumented yet)
 * goes to the Python hook given as `slow`, which handles every case.
 *
 * The recorder exposes its run's tables as one HookData object,
 * Recorder._fast, whose fields the hooks read by name from its C struct:
 * the session, name -> engine id dicts per span kind (id_task, id_compute,
 * id_update), setup_wall (name -> [count, wall ns] of the node's task
 * preparations: see hook_prep), cend (task checkpoint_ns -> perf_counter_ns
 * when its function returned), post_ns (name -> ns from the function's
 * return to the task's end), state_tracking, and the shares of parallel
 * supersteps' state updates (shared_update_ns, shared_update_calls).
 * perf_counter_ns is CLOCK_MONOTONIC on Linux, which the C side reads
 * directly.
 *
 * A node's instrumented proc (the Python hook builds it) is kept in the
 * proc's own instance dict under the key given as the run hook's `extra`:
 * it lives as long as the graph that owns the proc.
 */

enum { HOOK_PREP = 0, HOOK_RUN = 1, HOOK_STEP = 2, HOOK_APPLY = 3 };

/* HookData: a run's tables for the hooks (see above). */
typedef struct {
  PyObject_HEAD
  PyObject *session; /* a SessionObject (checked at construction) */
  PyObject *id_task, *id_compute, *id_update; /* name -> engine id */
  PyObject *setup_wall, *cend, *post_ns, *shared_update_ns, *shared_update_calls;
  int state_tracking;
} HookDataObject;

static PyTypeObject HookDataType;

typedef struct {
  PyObject_HEAD
  vectorcallfunc vectorcall;
  int kind;
  PyObject *orig;   /* what the hook stands in for */
  PyObject *slow;   /* the Python hook, same signature as orig */
  PyObject *active; /* ContextVar: the run's Recorder or None */
  PyObject *depth;  /* ContextVar: nesting depth of node functions (int) */
  PyObject *extra;  /* RUN: the proc cache {id(proc): (proc, instrumented)}; STEP: node name */
} HookObject;

/* Interned attribute and key names, created at module init. */
static PyObject *str_fast, *str_proc, *str_config, *str_name, *str_configurable,
    *str_checkpoint_ns, *str_for_execution, *str_record_exception, *str_after_apply,
    *str_pregel_pull, *str_writes, *str_loop, *str_parallel;

static long long hook_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* config["configurable"]["checkpoint_ns"] as a borrowed str, or NULL
 * (no error set) when absent or not a str. */
static PyObject *hook_config_ns(PyObject *config) {
  if (config == NULL || !PyDict_Check(config)) {
    return NULL;
  }
  PyObject *c = PyDict_GetItemWithError(config, str_configurable);
  if (c == NULL || !PyDict_Check(c)) {
    PyErr_Clear();
    return NULL;
  }
  PyObject *ns = PyDict_GetItemWithError(c, str_checkpoint_ns);
  if (ns == NULL || !PyUnicode_Check(ns)) {
    PyErr_Clear();
    return NULL;
  }
  return ns;
}

/* 1 when config is a dict with no checkpoint_ns at all (the top graph's
 * own config before any task namespace was added). */
static int hook_top_config(PyObject *config) {
  if (config == NULL || !PyDict_Check(config)) {
    return 0;
  }
  PyObject *c = PyDict_GetItemWithError(config, str_configurable);
  if (c == NULL) {
    return !PyErr_Occurred();
  }
  if (!PyDict_Check(c)) {
    return 0;
  }
  PyObject *ns = PyDict_GetItemWithError(c, str_checkpoint_ns);
  if (ns == NULL) {
    return !PyErr_Occurred();
  }
  return 0;
}

/* 1 when a namespace names a nested graph ('outer:<id>|inner:<id>'). */
static int hook_nested(PyObject *ns) {
  Py_ssize_t n = PyUnicode_GET_LENGTH(ns);
  return n > 0 && PyUnicode_FindChar(ns, '|', 0, n, 1) >= 0;
}

/* Engine id for name in an id dict, or -1 (not registered yet). */
static long hook_id(PyObject *ids, PyObject *name) {
  if (!PyDict_Check(ids)) {
    return -1;
  }
  PyObject *v = PyDict_GetItemWithError(ids, name);
  if (v == NULL) {
    PyErr_Clear();
    return -1;
  }
  return node_id_quiet(v);
}

/* A keyword argument of a vectorcall by name (borrowed), or NULL. */
static PyObject *hook_kwarg(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                            PyObject *key) {
  if (kwnames == NULL) {
    return NULL;
  }
  Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
  for (Py_ssize_t i = 0; i < n; i++) { /* call sites pass interned names */
    if (PyTuple_GET_ITEM(kwnames, i) == key) {
      return args[nargs + i];
    }
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    if (PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, i), key) == 0) {
      return args[nargs + i];
    }
  }
  PyErr_Clear();
  return NULL;
}

/* fn(*args) inside engine node id of session so: like Session.call. */
static PyObject *hook_span(SessionObject *so, long id, PyObject *fn, PyObject *const *args,
                           size_t nargsf, PyObject *kwnames) {
  kfm_session_t *s = so->s;
  int entered = 0;
  if (s != NULL && kfm_enter(s, (kfm_node_id_t)id) == KFM_OK) {
    entered = 1;
  } else {
    so->failures++;
  }
  PyObject *res = PyObject_Vectorcall(fn, args, nargsf, kwnames);
  if (entered && (so->s != s || kfm_exit(s, (kfm_node_id_t)id) != KFM_OK)) {
    so->failures++;
  }
  return res;
}

/* d[key] = int(v) (d a dict); errors are cleared: bookkeeping must never
 * fail the graph. */
static void hook_set_int(PyObject *d, PyObject *key, long long v) {
  PyObject *o = PyLong_FromLongLong(v);
  if (o == NULL || PyDict_SetItem(d, key, o) < 0) {
    PyErr_Clear();
  }
  Py_XDECREF(o);
}

/* d[key] = [count + 1, total + ns] (a 2-list, created when absent); errors
 * are cleared, keeping any exception the caller has pending. */
static void hook_add_wall(PyObject *d, PyObject *key, long long ns) {
  PyObject *t, *v, *tb;
  PyErr_Fetch(&t, &v, &tb);
  PyObject *w = PyDict_GetItemWithError(d, key);
  if (w != NULL && PyList_Check(w) && PyList_GET_SIZE(w) == 2) {
    long long n = PyLong_AsLongLong(PyList_GET_ITEM(w, 0));
    long long tot = PyLong_AsLongLong(PyList_GET_ITEM(w, 1));
    PyObject *a = PyLong_FromLongLong(n + 1), *b = PyLong_FromLongLong(tot + ns);
    if (a && b && !PyErr_Occurred()) {
      PyList_SetItem(w, 0, a); /* steals */
      PyList_SetItem(w, 1, b);
      a = b = NULL;
    }
    Py_XDECREF(a);
    Py_XDECREF(b);
  } else if (w == NULL && !PyErr_Occurred()) {
    PyObject *nw = Py_BuildValue("[iL]", 1, ns);
    if (nw == NULL || PyDict_SetItem(d, key, nw) < 0) {
      PyErr_Clear();
    }
    Py_XDECREF(nw);
  }
  PyErr_Clear();
  PyErr_Restore(t, v, tb);
}

/* proc.__dict__[h->extra] (new reference), the instrumented proc, or NULL
 * (no error set) when the proc has none yet or keeps no instance dict. */
static PyObject *hook_instrumented(HookObject *h, PyObject *proc) {
  if (!PyUnicode_Check(h->extra)) {
    return NULL;
  }
  PyObject *d = PyObject_GenericGetDict(proc, NULL);
  PyObject *inst = d != NULL && PyDict_Check(d) ? PyDict_GetItemWithError(d, h->extra) : NULL;
  Py_XINCREF(inst);
  Py_XDECREF(d);
  PyErr_Clear();
  return inst;
}

static PyObject *hook_slow(HookObject *h, PyObject *const *args, size_t nargsf,
                           PyObject *kwnames) {
  return PyObject_Vectorcall(h->slow, args, nargsf, kwnames);
}

/* The depth ContextVar + 1 around a node's function; returns the token to
 * reset (NULL with no error when it could not be set: depth is then left
 * alone, as the Python hook would raise nothing either). */
static PyObject *hook_depth_enter(HookObject *h) {
  PyObject *cur = NULL;
  if (PyContextVar_Get(h->depth, NULL, &cur) < 0 || cur == NULL) {
    PyErr_Clear();
    return NULL;
  }
  long d = PyLong_AsLong(cur);
  Py_DECREF(cur);
  if (d == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    return NULL;
  }
  PyObject *nd = PyLong_FromLong(d + 1);
  if (nd == NULL) {
    PyErr_Clear();
    return NULL;
  }
  PyObject *tok = PyContextVar_Set(h->depth, nd);
  Py_DECREF(nd);
  if (tok == NULL) {
    PyErr_Clear();
  }
  return tok;
}

static void hook_depth_exit(HookObject *h, PyObject *tok) {
  if (tok == NULL) {
    return;
  }
  /* Keep a pending exception of the node across the reset. */
  PyObject *t, *v, *tb;
  PyErr_Fetch(&t, &v, &tb);
  if (PyContextVar_Reset(h->depth, tok) < 0) {
    PyErr_Clear();
  }
  Py_DECREF(tok);
  PyErr_Restore(t, v, tb);
}

static PyObject *hook_prep(HookObject *h, PyObject *rec, HookDataObject *fast,
                           PyObject *const *args, size_t nargsf, PyObject *kwnames) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  PyObject *fe = hook_kwarg(args, nargs, kwnames, str_for_execution);
  if (fe == NULL || fe == Py_False) {
    return PyObject_Vectorcall(h->orig, args, nargsf, kwnames);
  }
  (void)rec;
  PyObject *tp = nargs >= 1 ? args[0] : NULL;
  if (fe != Py_True || tp == NULL || !PyTuple_Check(tp) || PyTuple_GET_SIZE(tp) != 2) {
    return hook_slow(h, args, nargsf, kwnames);
  }
  PyObject *kind = PyTuple_GET_ITEM(tp, 0), *name = PyTuple_GET_ITEM(tp, 1);
  if (!PyUnicode_Check(kind) || !PyUnicode_Check(name) ||
      PyUnicode_Compare(kind, str_pregel_pull) != 0) {
    PyErr_Clear();
    return hook_slow(h, args, nargsf, kwnames);
  }
  /* The parent namespace: absent or "" for the top graph, else a subgraph. */
  PyObject *config = hook_kwarg(args, nargs, kwnames, str_config);
  PyObject *parent = hook_config_ns(config);
  if (parent != NULL ? PyUnicode_GET_LENGTH(parent) != 0 : !hook_top_config(config)) {
    return hook_slow(h, args, nargsf, kwnames);
  }
  /* Timed here, not an engine span: LangGraph also calls it for candidate
   * nodes that turn out not to be triggered (None), which must not count
   * as a call, and a span would cost two counter reads at COMPREHENSIVE for
   * what is a few microseconds of channel reads (its resources fall to the
   * enclosing span, the graph's loop). */
  PyObject *sw = fast->setup_wall;
  if (!PyDict_Check(sw)) {
    return hook_slow(h, args, nargsf, kwnames);
  }
  long long t0 = hook_now_ns();
  PyObject *res = PyObject_Vectorcall(h->orig, args, nargsf, kwnames);
  if (res != NULL && res != Py_None) {
    hook_add_wall(sw, name, hook_now_ns() - t0);
  }
  return res;
}

static PyObject *hook_run(HookObject *h, PyObject *rec, HookDataObject *fast, PyObject *const *args,
                          size_t nargsf, PyObject *kwnames) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs < 1) {
    return hook_slow(h, args, nargsf, kwnames);
  }
  PyObject *task = args[0];
  PyObject *config = PyObject_GetAttr(task, str_config);
  PyObject *name = PyObject_GetAttr(task, str_name);
  PyObject *proc = PyObject_GetAttr(task, str_proc);
  PyObject *res = NULL;
  if (config == NULL || name == NULL || proc == NULL || !PyUnicode_Check(name)) {
    PyErr_Clear();
    goto slow;
  }
  PyObject *ns = hook_config_ns(config);
  if (ns == NULL || hook_nested(ns)) {
    goto slow;
  }
  /* The instrumented proc, kept in the proc's own dict (the Python hook
   * builds it there on the proc's first run). */
  PyObject *inst = hook_instrumented(h, proc);
  if (inst == NULL) {
    goto slow;
  }
  long id = hook_id(fast->id_task, name);
  if (id < 0) {
    Py_DECREF(inst);
    goto slow;
  }
  if (inst != proc && PyObject_GenericSetAttr(task, str_proc, inst) < 0) {
    PyErr_Clear();
    Py_DECREF(inst);
    goto slow;
  }
  Py_DECREF(inst);
  Py_INCREF(ns);
  res = hook_span((SessionObject *)fast->session, id, h->orig, args, nargsf,
                  kwnames);
  long long now = hook_now_ns();
  PyObject *t, *v, *tb;
  PyErr_Fetch(&t, &v, &tb);
  if (res == NULL && t != NULL) {
    /* The node raised: record it, then let it propagate unchanged. */
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb != NULL && v != NULL) {
      PyException_SetTraceback(v, tb);
    }
    PyObject *r = PyObject_CallMethodObjArgs(rec, str_record_exception, name,
                                             v ? v : Py_None, NULL);
    if (r == NULL) {
      PyErr_Clear();
    }
    Py_XDECREF(r);
  }
  /* What followed the function: ChannelWrite, routing, end of run. */
  PyObject *cend = fast->cend, *post = fast->post_ns;
  if (PyDict_Check(cend) && PyDict_Check(post)) {
    PyObject *tc = PyDict_GetItemWithError(cend, ns);
    if (tc != NULL) {
      long long t0 = PyLong_AsLongLong(tc);
      if (PyDict_DelItem(cend, ns) < 0) {
        PyErr_Clear();
      }
      PyObject *prev = PyDict_GetItemWithError(post, name);
      long long acc = prev ? PyLong_AsLongLong(prev) : 0;
      if (t0 > 0 && !PyErr_Occurred()) {
        hook_set_int(post, name, acc + (now - t0));
      }
    }
    PyErr_Clear();
  }
  PyErr_Restore(t, v, tb);
  Py_DECREF(ns);
  goto done;
slow:
  res = hook_slow(h, args, nargsf, kwnames);
done:
  Py_XDECREF(config);
  Py_XDECREF(name);
  Py_XDECREF(proc);
  return res;
}

static PyObject *hook_step(HookObject *h, PyObject *rec, HookDataObject *fast,
                           PyObject *const *args, size_t nargsf, PyObject *kwnames) {
  (void)rec;
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  PyObject *ns = nargs >= 2 ? hook_config_ns(args[1]) : NULL;
  if (ns == NULL || hook_nested(ns)) {
    return hook_slow(h, args, nargsf, kwnames);
  }
  long id = hook_id(fast->id_compute, h->extra);
  if (id < 0) {
    return hook_slow(h, args, nargsf, kwnames);
  }
  Py_INCREF(ns);
  PyObject *tok = fast->state_tracking ? hook_depth_enter(h)
                                                                         : NULL;
  PyErr_Clear();
  PyObject *res = hook_span((SessionObject *)fast->session, id, h->orig,
                            args, nargsf, kwnames);
  hook_depth_exit(h, tok);
  if (res != NULL && PyDict_Check(fast->cend)) {
    hook_set_int(fast->cend, ns, hook_now_ns());
  }
  Py_DECREF(ns);
  return res;
}

/* A name LangGraph gives its own tasks ("__input__", "__start__"): as
 * collect/hooks.py's startswith("__"). */
static int hook_internal_name(PyObject *name) {
  return PyUnicode_GET_LENGTH(name) >= 2 && PyUnicode_READ_CHAR(name, 0) == '_' &&
         PyUnicode_READ_CHAR(name, 1) == '_';
}

/* d[key] = d.get(key, 0.0) + add (floats); errors cleared. */
static void hook_add_float(PyObject *d, PyObject *key, double add) {
  PyObject *v = PyDict_GetItemWithError(d, key);
  double cur = v != NULL ? PyFloat_AsDouble(v) : 0.0;
  PyObject *nv = PyErr_Occurred() ? NULL : PyFloat_FromDouble(cur + add);
  if (nv == NULL || PyDict_SetItem(d, key, nv) < 0) {
    PyErr_Clear();
  }
  Py_XDECREF(nv);
}

#define HOOK_MANY_MAX 32

/*
 * A superstep of several tasks (parallel branches, a Send fan-out) or of
 * none but LangGraph's own (input and bookkeeping writes), with state
 * tracking off: what collect/hooks.py's _apply_writes does, without its Python
 * frames.  One state_update span: the node's own when one user node wrote,
 * "__loop__" when none did, "(parallel)" otherwise, whose time is shared
 * among the nodes by the number of writes each made.  Sets *handled = 0
 * (and calls nothing) when the Python path must take it: subgraph tasks,
 * names not registered yet, more than HOOK_MANY_MAX distinct nodes.
 */
static PyObject *hook_apply_many(HookObject *h, HookDataObject *fast, PyObject *tasks,
                                 PyObject *const *args, size_t nargsf, PyObject *kwnames,
                                 int *handled) {
  PyObject *names[HOOK_MANY_MAX];
  long long w[HOOK_MANY_MAX];
  int nn = 0, nuser = 0, ok = 1;
  PyObject *user = NULL;
  *handled = 0;
  PyObject *it = PyObject_GetIter(tasks);
  PyObject *task;
  while (ok && it != NULL && (task = PyIter_Next(it)) != NULL) {
    PyObject *config = PyObject_GetAttr(task, str_config);
    PyObject *name = PyObject_GetAttr(task, str_name);
    PyObject *writes = PyObject_GetAttr(task, str_writes);
    PyObject *ns = hook_config_ns(config);
    Py_ssize_t nw = writes != NULL ? PyObject_Length(writes) : -1;
    ok = (ns == NULL || !hook_nested(ns)) && name != NULL && PyUnicode_Check(name) && nw >= 0;
    int i = 0;
    for (; ok && i < nn; i++) {
      if (PyUnicode_Compare(names[i], name) == 0) {
        w[i] += nw;
        break;
      }
    }
    if (ok && i == nn) {
      if (nn == HOOK_MANY_MAX) {
        ok = 0;
      } else {
        Py_INCREF(name);
        names[nn] = name;
        w[nn++] = nw;
      }
    }
    Py_XDECREF(config);
    Py_XDECREF(name);
    Py_XDECREF(writes);
    Py_DECREF(task);
  }
  Py_XDECREF(it);
  PyErr_Clear();
  PyObject *res = NULL;
  int is_user[HOOK_MANY_MAX];
  for (int i = 0; ok && i < nn; i++) {
    is_user[i] = !hook_internal_name(names[i]);
    if (is_user[i]) {
      nuser++;
      user = names[i];
    }
  }
  long id = -1;
  if (ok) {
    id = hook_id(fast->id_update,
                 nuser == 1 ? user : nuser == 0 ? str_loop : str_parallel);
  }
  PyObject *shns = fast->shared_update_ns, *shcalls = fast->shared_update_calls;
  if (id >= 0 && (nuser < 2 || (PyDict_Check(shns) && PyDict_Check(shcalls)))) {
    *handled = 1;
    long long t0 = hook_now_ns();
    res = hook_span((SessionObject *)fast->session, id, h->orig, args,
                    nargsf, kwnames);
    double dt = (double)(hook_now_ns() - t0);
    if (nuser >= 2) {
      PyObject *t, *v, *tb;
      PyErr_Fetch(&t, &v, &tb);
      double total = 0;
      for (int i = 0; i < nn; i++) {
        w[i] = w[i] > 1 ? w[i] : 1; /* a node that wrote nothing still gets a share */
        total += is_user[i] ? (double)w[i] : 0.0;
      }
      for (int i = 0; i < nn; i++) {
        if (is_user[i]) {
          hook_add_float(shns, names[i], dt * (double)w[i] / total);
          PyObject *c = PyDict_GetItemWithError(shcalls, names[i]);
          long long cn = c != NULL ? PyLong_AsLongLong(c) : 0;
          PyErr_Clear();
          hook_set_int(shcalls, names[i], cn + 1);
        }
      }
      PyErr_Restore(t, v, tb);
    }
  }
  for (int i = 0; i < nn; i++) {
    Py_DECREF(names[i]);
  }
  return res;
}

static PyObject *hook_apply(HookObject *h, PyObject *rec, HookDataObject *fast,
                            PyObject *const *args, size_t nargsf, PyObject *kwnames) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs < 3 || kwnames != NULL) {
    return hook_slow(h, args, nargsf, kwnames);
  }
  /* One task (a superstep of one node): its own state_update span.  A
   * list, tuple or dict view can be read here and again by LangGraph; an
   * iterator could not, so it takes the Python path. */
  PyObject *tasks = args[2], *task = NULL;
  if (PyList_Check(tasks) || PyTuple_Check(tasks) || PyDictValues_Check(tasks)) {
    Py_ssize_t n = PyObject_Length(tasks);
    if (n == 1) {
      PyObject *it = PyObject_GetIter(tasks);
      task = it ? PyIter_Next(it) : NULL;
      Py_XDECREF(it);
    } else if (n >= 0 && !fast->state_tracking) {
      int handled;
      PyObject *res = hook_apply_many(h, fast, tasks, args, nargsf, kwnames, &handled);
      if (handled) {
        return res;
      }
    }
  }
  if (task == NULL) {
    PyErr_Clear();
    return hook_slow(h, args, nargsf, kwnames);
  }
  PyObject *res = NULL;
  PyObject *config = PyObject_GetAttr(task, str_config);
  PyObject *name = PyObject_GetAttr(task, str_name);
  PyObject *ns = hook_config_ns(config);
  PyErr_Clear();
  long id = -1;
  /* No namespace at all reads as the top graph's, as in collect/hooks.py's _ns. */
  if ((ns == NULL || !hook_nested(ns)) && name != NULL && PyUnicode_Check(name) &&
      PyUnicode_GET_LENGTH(name) > 0) {
    /* LangGraph's own tasks go to "__loop__". */
    id = hook_id(fast->id_update, hook_internal_name(name) ? str_loop : name);
  }
  if (id < 0) {
    res = hook_slow(h, args, nargsf, kwnames);
    goto done;
  }
  res = hook_span((SessionObject *)fast->session, id, h->orig, args, nargsf,
                  kwnames);
  if (res != NULL && fast->state_tracking) {
    PyObject *d = NULL;
    long depth = 1;
    if (PyContextVar_Get(h->depth, NULL, &d) == 0 && d != NULL) {
      depth = PyLong_AsLong(d);
    }
    Py_XDECREF(d);
    PyErr_Clear();
    if (depth == 0) {
      /* State size after the superstep (Python: it walks the values).  It
       * raises nothing but KeyboardInterrupt and SystemExit (a Ctrl-C while
       * sizing): those end the run as they would have without profiling,
       * so they propagate instead of the writes' result; anything else
       * (only a broken recorder) is dropped, never raised into the graph. */
      PyObject *r = PyObject_CallMethodObjArgs(rec, str_after_apply, args[0], args[1], task,
                                               name, NULL);
      if (r == NULL) {
        if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
            PyErr_ExceptionMatches(PyExc_SystemExit)) {
          Py_CLEAR(res);
        } else {
          PyErr_Clear();
        }
      }
      Py_XDECREF(r);
    }
  }
done:
  Py_XDECREF(config);
  Py_XDECREF(name);
  Py_DECREF(task);
  return res;
}

static PyObject *Hook_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames) {
  HookObject *h = (HookObject *)self;
  PyObject *rec = NULL;
  if (PyContextVar_Get(h->active, NULL, &rec) < 0) {
    return NULL;
  }
  if (rec == NULL || rec == Py_None) {
    Py_XDECREF(rec);
    return PyObject_Vectorcall(h->orig, args, nargsf, kwnames);
  }
  PyObject *fobj = PyObject_GetAttr(rec, str_fast);
  HookDataObject *fast = (HookDataObject *)fobj;
  PyObject *res;
  if (fobj == NULL || !Py_IS_TYPE(fobj, &HookDataType)) {
    PyErr_Clear();
    res = hook_slow(h, args, nargsf, kwnames);
  } else {
    switch (h->kind) {
    case HOOK_PREP:
      res = hook_prep(h, rec, fast, args, nargsf, kwnames);
      break;
    case HOOK_RUN:
      res = hook_run(h, rec, fast, args, nargsf, kwnames);
      break;
    case HOOK_STEP:
      res = hook_step(h, rec, fast, args, nargsf, kwnames);
      break;
    default:
      res = hook_apply(h, rec, fast, args, nargsf, kwnames);
      break;
    }
  }
  Py_XDECREF(fobj);
  Py_DECREF(rec);
  return res;
}

/* ---------------------------------------------------------------------- */
/* HookData                                                                 */

static int HookData_init(HookDataObject *self, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"session", "id_task", "setup_wall", "id_compute", "id_update",
                           "cend", "post_ns", "state_tracking", "shared_update_ns",
                           "shared_update_calls", NULL};
  PyObject *o[9];
  int tracking;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "$O!O!O!O!O!O!O!pO!O!:HookData", kwlist,
                                   &kfmpy_SessionType, &o[0], &PyDict_Type, &o[1],
                                   &PyDict_Type, &o[2], &PyDict_Type, &o[3], &PyDict_Type,
                                   &o[4], &PyDict_Type, &o[5], &PyDict_Type, &o[6], &tracking,
                                   &PyDict_Type, &o[7], &PyDict_Type, &o[8])) {
    return -1;
  }
  PyObject **dst[9] = {&self->session, &self->id_task, &self->setup_wall, &self->id_compute,
                       &self->id_update, &self->cend, &self->post_ns,
                       &self->shared_update_ns, &self->shared_update_calls};
  for (int i = 0; i < 9; i++) {
    Py_INCREF(o[i]);
    Py_XSETREF(*dst[i], o[i]);
  }
  self->state_tracking = tracking;
  return 0;
}

/* HookData(**fields) through vectorcall: the fields come as kwnames, with
 * no keyword dict built (a Recorder makes one per run).  The same checks as
 * HookData_init, which serves the other call forms. */
static const char *const hookdata_fields[] = {
    "session",  "id_task",        "setup_wall",       "id_compute",         "id_update",
    "cend",     "post_ns",        "shared_update_ns", "shared_update_calls", "state_tracking"};
enum { HD_N = 10, HD_OBJ = 9 };
static PyObject *hookdata_names[HD_N];

static PyObject *HookData_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  PyObject *v[HD_N] = {NULL};
  if (nargs != 0 || nk != HD_N) {
    PyErr_SetString(PyExc_TypeError,
                     "HookData() takes exactly its 10 fields, as keyword arguments");
    return NULL;
  }
  for (Py_ssize_t i = 0; i < nk; i++) {
    PyObject *k = PyTuple_GET_ITEM(kwnames, i);
    int f = 0;
    while (f < HD_N && hookdata_names[f] != k) {
      f++;
    }
    if (f == HD_N) { /* not interned: compare the text */
      for (f = 0; f < HD_N && PyUnicode_Compare(hookdata_names[f], k) != 0; f++) {
      }
      if (PyErr_Occurred()) {
        return NULL;
      }
    }
    if (f == HD_N || v[f] != NULL) {
      PyErr_Format(PyExc_TypeError, "HookData(): %s keyword argument %R",
                   f == HD_N ? "unexpected" : "repeated", k);
      return NULL;
    }
    v[f] = args[i];
  }
  if (!PyObject_TypeCheck(v[0], &kfmpy_SessionType)) {
    PyErr_SetString(PyExc_TypeError, "HookData(): session must be a kfm Session");
    return NULL;
  }
  for (int f = 1; f < HD_OBJ; f++) {
    if (!PyDict_Check(v[f])) {
      PyErr_Format(PyExc_TypeError, "HookData(): %s must be a dict", hookdata_fields[f]);
      return NULL;
    }
  }
  int tracking = PyObject_IsTrue(v[HD_OBJ]);
  if (tracking < 0) {
    return NULL;
  }
  PyTypeObject *tp = (PyTypeObject *)type;
  HookDataObject *self = (HookDataObject *)tp->tp_alloc(tp, 0);
  if (self == NULL) {
    return NULL;
  }
  PyObject **dst[HD_OBJ] = {&self->session,   &self->id_task, &self->setup_wall,
                            &self->id_compute, &self->id_update, &self->cend,
                            &self->post_ns,   &self->shared_update_ns,
                            &self->shared_update_calls};
  for (int f = 0; f < HD_OBJ; f++) {
    Py_INCREF(v[f]);
    *dst[f] = v[f];
  }
  self->state_tracking = tracking;
  return (PyObject *)self;
}

static int HookData_traverse(HookDataObject *self, visitproc visit, void *arg) {
  Py_VISIT(self->session);
  Py_VISIT(self->id_task);
  Py_VISIT(self->setup_wall);
  Py_VISIT(self->id_compute);
  Py_VISIT(self->id_update);
  Py_VISIT(self->cend);
  Py_VISIT(self->post_ns);
  Py_VISIT(self->shared_update_ns);
  Py_VISIT(self->shared_update_calls);
  return 0;
}

static int HookData_clear(HookDataObject *self) {
  Py_CLEAR(self->session);
  Py_CLEAR(self->id_task);
  Py_CLEAR(self->setup_wall);
  Py_CLEAR(self->id_compute);
  Py_CLEAR(self->id_update);
  Py_CLEAR(self->cend);
  Py_CLEAR(self->post_ns);
  Py_CLEAR(self->shared_update_ns);
  Py_CLEAR(self->shared_update_calls);
  return 0;
}

static void HookData_dealloc(HookDataObject *self) {
  PyObject_GC_UnTrack(self);
  HookData_clear(self);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef HookData_members[] = {
    {"session", T_OBJECT, offsetof(HookDataObject, session), READONLY, "The run's Session."},
    {"id_task", T_OBJECT, offsetof(HookDataObject, id_task), READONLY,
     "name -> engine id of the node's task span."},
    {"setup_wall", T_OBJECT, offsetof(HookDataObject, setup_wall), READONLY,
     "name -> [count, wall ns] of its task preparations."},
    {"id_compute", T_OBJECT, offsetof(HookDataObject, id_compute), READONLY,
     "name -> engine id of its compute span."},
    {"id_update", T_OBJECT, offsetof(HookDataObject, id_update), READONLY,
     "name -> engine id of its state_update span."},
    {"cend", T_OBJECT, offsetof(HookDataObject, cend), READONLY,
     "task checkpoint_ns -> perf_counter_ns when its function returned."},
    {"post_ns", T_OBJECT, offsetof(HookDataObject, post_ns), READONLY,
     "name -> ns from the function's return to the task's end."},
    {"state_tracking", T_BOOL, offsetof(HookDataObject, state_tracking), READONLY,
     "Whether state sizes are measured after each superstep."},
    {"shared_update_ns", T_OBJECT, offsetof(HookDataObject, shared_update_ns), READONLY,
     "name -> its share (ns) of parallel supersteps' state updates."},
    {"shared_update_calls", T_OBJECT, offsetof(HookDataObject, shared_update_calls), READONLY,
     "name -> parallel supersteps it shared."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject HookDataType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kfm_debugging._kfm.HookData",
    .tp_doc = PyDoc_STR("HookData(*, session, id_task, setup_wall, id_compute, id_update, cend, "
                        "post_ns, state_tracking, shared_update_ns, shared_update_calls): a "
                        "run's tables as the LangGraph hooks read them (Recorder._fast)."),
    .tp_basicsize = sizeof(HookDataObject),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)HookData_init,
    .tp_vectorcall = HookData_vectorcall,
    .tp_dealloc = (destructor)HookData_dealloc,
    .tp_traverse = (traverseproc)HookData_traverse,
    .tp_clear = (inquiry)HookData_clear,
    .tp_members = HookData_members,
};

static int Hook_init(HookObject *self, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"kind", "orig", "slow", "active", "depth", "extra", NULL};
  int kind;
  PyObject *orig, *slow, *active, *depth, *extra = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOOOO|O:Hook", kwlist, &kind, &orig, &slow,
                                   &active, &depth, &extra)) {
    return -1;
  }
  if (kind < HOOK_PREP || kind > HOOK_APPLY) {
    PyErr_Format(PyExc_ValueError, "Hook kind %d out of range (0 prep, 1 run, 2 step, 3 apply)",
                 kind);
    return -1;
  }
  if (!PyCallable_Check(orig) || !PyCallable_Check(slow)) {
    PyErr_SetString(PyExc_TypeError, "Hook: orig and slow must be callable");
    return -1;
  }
  if (!PyContextVar_CheckExact(active) || !PyContextVar_CheckExact(depth)) {
    PyErr_SetString(PyExc_TypeError, "Hook: active and depth must be contextvars.ContextVar");
    return -1;
  }
  if (kind == HOOK_STEP && !PyUnicode_Check(extra)) {
    PyErr_SetString(PyExc_TypeError, "Hook: a step hook's extra must be the node name (str)");
    return -1;
  }
  self->kind = kind;
  Py_INCREF(orig);
  Py_INCREF(slow);
  Py_INCREF(active);
  Py_INCREF(depth);
  Py_INCREF(extra);
  Py_XSETREF(self->orig, orig);
  Py_XSETREF(self->slow, slow);
  Py_XSETREF(self->active, active);
  Py_XSETREF(self->depth, depth);
  Py_XSETREF(self->extra, extra);
  self->vectorcall = Hook_vectorcall;
  return 0;
}

static int Hook_traverse(HookObject *self, visitproc visit, void *arg) {
  Py_VISIT(self->orig);
  Py_VISIT(self->slow);
  Py_VISIT(self->active);
  Py_VISIT(self->depth);
  Py_VISIT(self->extra);
  return 0;
}

static int Hook_clear(HookObject *self) {
  Py_CLEAR(self->orig);
  Py_CLEAR(self->slow);
  Py_CLEAR(self->active);
  Py_CLEAR(self->depth);
  Py_CLEAR(self->extra);
  return 0;
}

static void Hook_dealloc(HookObject *self) {
  PyObject_GC_UnTrack(self);
  Hook_clear(self);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Hook_get_orig(HookObject *self, void *Py_UNUSED(closure)) {
  PyObject *o = self->orig ? self->orig : Py_None;
  Py_INCREF(o);
  return o;
}

static PyObject *Hook_get_slow(HookObject *self, void *Py_UNUSED(closure)) {
  PyObject *o = self->slow ? self->slow : Py_None;
  Py_INCREF(o);
  return o;
}

static PyGetSetDef Hook_getset[] = {
    {"orig", (getter)Hook_get_orig, NULL, "The callable this hook stands in for.", NULL},
    {"slow", (getter)Hook_get_slow, NULL, "The Python hook for the cases C leaves to it.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject HookType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kfm_debugging._kfm.Hook",
    .tp_doc = PyDoc_STR("Hook(kind, orig, slow, active, depth, extra=None): a LangGraph hook "
                        "whose common case runs in C (see kfm_hooks.c)."),
    .tp_basicsize = sizeof(HookObject),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Hook_init,
    .tp_dealloc = (destructor)Hook_dealloc,
    .tp_traverse = (traverseproc)Hook_traverse,
    .tp_clear = (inquiry)Hook_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(HookObject, vectorcall),
    .tp_getset = Hook_getset,
};

/* ---------------------------------------------------------------------- */
/* Module set-up                                                            */

int kfmpy_hooks_init(PyObject *m) {
  if (PyType_Ready(&HookType) < 0 || PyType_Ready(&HookDataType) < 0) {
    return -1;
  }
  for (int f = 0; f < HD_N; f++) {
    if (!(hookdata_names[f] = PyUnicode_InternFromString(hookdata_fields[f]))) {
      return -1;
    }
  }
  if (!(str_fast = PyUnicode_InternFromString("_fast")) ||
      !(str_proc = PyUnicode_InternFromString("proc")) ||
      !(str_config = PyUnicode_InternFromString("config")) ||
      !(str_name = PyUnicode_InternFromString("name")) ||
      !(str_configurable = PyUnicode_InternFromString("configurable")) ||
      !(str_checkpoint_ns = PyUnicode_InternFromString("checkpoint_ns")) ||
      !(str_for_execution = PyUnicode_InternFromString("for_execution")) ||
      !(str_record_exception = PyUnicode_InternFromString("record_exception")) ||
      !(str_after_apply = PyUnicode_InternFromString("after_apply")) ||
      !(str_pregel_pull = PyUnicode_InternFromString("__pregel_pull")) ||
      !(str_writes = PyUnicode_InternFromString("writes")) ||
      !(str_loop = PyUnicode_InternFromString("__loop__")) ||
      !(str_parallel = PyUnicode_InternFromString("(parallel)"))) {
    return -1;
  }
  Py_INCREF(&HookType);
  if (PyModule_AddObject(m, "Hook", (PyObject *)&HookType) < 0) {
    Py_DECREF(&HookType);
    return -1;
  }
  Py_INCREF(&HookDataType);
  if (PyModule_AddObject(m, "HookData", (PyObject *)&HookDataType) < 0) {
    Py_DECREF(&HookDataType);
    return -1;
  }
  return 0;
}
