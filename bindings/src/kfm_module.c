/*
 * kfm_module.c - the CPython extension kfm_debugging._kfm: one Session type
 * wrapping a kfm session, plus module functions for the backend probe and
 * level names.
 *
 * Hot path: Session.enter(id) / Session.exit(id) are METH_O calls that go
 * straight to kfm_enter / kfm_exit with the GIL held.  Releasing the GIL
 * would cost more than the transition itself (tens of ns), and holding it
 * also means no two threads are ever inside a kfm call on one session while
 * close() destroys it.  Session.call(id, fn, *args, **kwargs) is the form
 * the Debugger uses around every wrapped callable: enter, a vectorcall of fn,
 * exit even when fn raised, in one C frame instead of a Python try/finally
 * around two method calls.  call(), try_enter() and try_exit() never raise
 * for a refused transition (stack too deep, exit out of order, session
 * closed): instrumentation must not change the profiled program, so they
 * count the refusal in Session.failures instead.
 *
 * Results: report() merges the engine's snapshot into plain dicts.  Bulk
 * series (samples(), events()) are copied once into immutable bytes objects
 * and returned as typed memoryviews (format 'd' for doubles, 'I' for
 * uint32, 'B' for the event kind), so a series of N entries costs one copy
 * and no per-entry Python object.  A view straight into the engine's
 * report would save that copy but would tie the report's lifetime to
 * Python objects that can outlive the session, and the report's names point
 * into the session.
 *
 * Errors: the engine's detail message (kfm_errmsg) is the exception text.
 * Bad values and bad configuration raise ValueError, state and ordering
 * errors RuntimeError, export failures OSError (with the errno of the failing
 * file operation when it is known), out of memory MemoryError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

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

/* Exception class for an engine error code. */
static PyObject *kfm_exc_type(int rc) {
  switch (rc) {
  case KFM_EINVAL:
  case KFM_ECONFIG:
  case KFM_EBADKEY:
  case KFM_EBADVALUE:
  case KFM_ENONODE:
  case KFM_ENAME:
  case KFM_ERANGE:
    return PyExc_ValueError;
  case KFM_ENOMEM:
    return PyExc_MemoryError;
  case KFM_EIO:
    return PyExc_OSError;
  default:
    return PyExc_RuntimeError;
  }
}

/* Raise for rc with the session's detail message (or the thread's create
 * message when s is NULL).  Always returns NULL. */
static PyObject *kfm_raise(const kfm_session_t *s, int rc, const char *what) {
  const char *msg = kfm_errmsg(s);
  if (msg == NULL || msg[0] == '\0') {
    msg = kfm_strerror(rc);
  }
  PyErr_Format(kfm_exc_type(rc), "%s: %s (%s)", what, msg, kfm_err_name(rc));
  return NULL;
}

static int session_check(SessionObject *self) {
  if (self->s == NULL) {
    PyErr_SetString(PyExc_RuntimeError, "kfm Session is closed");
    return -1;
  }
  return 0;
}

/* A name argument's UTF-8 text on an open session (register, enter_name,
 * exit_name, backend_json); NULL with the exception set. */
static const char *session_name(SessionObject *self, PyObject *name) {
  return session_check(self) ? NULL : PyUnicode_AsUTF8(name);
}

/* ---------------------------------------------------------------------- */
/* Life cycle                                                              */

static int Session_init(SessionObject *self, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"config", NULL};
  const char *config = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|z:Session", kwlist, &config)) {
    return -1;
  }
  if (self->s != NULL) {
    PyErr_SetString(PyExc_RuntimeError, "Session.__init__ called twice");
    return -1;
  }
  kfm_session_t *s = NULL;
  int rc = kfm_session_create_str(&s, config);
  if (rc != 0) {
    kfm_raise(NULL, rc, "kfm session");
    return -1;
  }
  self->s = s;
  self->state = 0;
  self->failures = 0;
  return 0;
}

static void Session_dealloc(SessionObject *self) {
  /* No other thread can be inside a kfm call on this session: every call
   * holds the GIL and holds a reference to self. */
  kfm_session_destroy(self->s);
  self->s = NULL;
  Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Run start or stop (op) on an open session and move to state; -1 with
 * the exception set when the engine refuses.  Shared by start()/stop() and
 * the context-manager methods. */
static int session_step(SessionObject *self, int (*op)(kfm_session_t *), const char *what,
                        int state) {
  int rc = op(self->s);
  if (rc) {
    kfm_raise(self->s, rc, what);
    return -1;
  }
  self->state = state;
  return 0;
}

static PyObject *Session_start(SessionObject *self, PyObject *Py_UNUSED(ignored)) {
  if (session_check(self) || session_step(self, kfm_session_start, "start", 1)) {
    return NULL;
  }
  Py_RETURN_NONE;
}

static PyObject *Session_stop(SessionObject *self, PyObject *Py_UNUSED(ignored)) {
  if (session_check(self) || session_step(self, kfm_session_stop, "stop", 2)) {
    return NULL;
  }
  Py_RETURN_NONE;
}

/* A new run on a stopped session (kfm_session_restart): the refusal count
 * is per run too. */
static PyObject *Session_restart(SessionObject *self, PyObject *Py_UNUSED(ignored)) {
  if (session_check(self) || session_step(self, kfm_session_restart, "restart", 1)) {
    return NULL;
  }
  self->failures = 0;
  Py_RETURN_NONE;
}

static PyObject *Session_close(SessionObject *self, PyObject *Py_UNUSED(ignored)) {
  kfm_session_destroy(self->s);
  self->s = NULL;
  Py_RETURN_NONE;
}

static PyObject *Session_enter_ctx(SessionObject *self, PyObject *Py_UNUSED(ignored)) {
  if (session_check(self) ||
      (self->state == 0 && session_step(self, kfm_session_start, "start", 1))) {
    return NULL;
  }
  Py_INCREF(self);
  return (PyObject *)self;
}

/* __exit__ stops (results stay readable); close() frees the session. */
static PyObject *Session_exit_ctx(SessionObject *self, PyObject *args) {
  (void)args;
  if (self->s != NULL && self->state == 1 && session_step(self, kfm_session_stop, "stop", 2)) {
    return NULL;
  }
  Py_RETURN_FALSE;
}

/* ---------------------------------------------------------------------- */
/* Nodes and transitions                                                   */

static PyObject *Session_register(SessionObject *self, PyObject *name) {
  const char *n = session_name(self, name);
  if (n == NULL) {
    return NULL;
  }
  kfm_node_id_t id;
  int rc = kfm_node_register(self->s, n, &id);
  if (rc == KFM_EFULL) {
    /* Profiling must not stop the program: the name is counted in the
     * engine's "(other)" node, and the user is told once per session. */
    if (!self->warned_full) {
      self->warned_full = 1;
      if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1, "kfm: %s", kfm_errmsg(self->s)) < 0) {
        return NULL;
      }
    }
    return PyLong_FromUnsignedLong(id);
  }
  if (rc) {
    return kfm_raise(self->s, rc, "register");
  }
  return PyLong_FromUnsignedLong(id);
}

static int node_id_arg(PyObject *arg, kfm_node_id_t *id) {
  long v = PyLong_AsLong(arg);
  if (v == -1 && PyErr_Occurred()) {
    return -1;
  }
  if (v < 0 || (unsigned long)v >= KFM_NODE_ROOT) {
    PyErr_Format(PyExc_ValueError, "node id %ld out of range", v);
    return -1;
  }
  *id = (kfm_node_id_t)v;
  return 0;
}

/* The engine's enter and exit, by id and by name: one signature each, so
 * one body serves both directions (static inline with a constant op: the
 * compiler calls kfm_enter / kfm_exit directly, nothing added to the hot
 * path). */
typedef int (*transition_fn)(kfm_session_t *, kfm_node_id_t);
typedef int (*name_transition_fn)(kfm_session_t *, const char *);

static inline PyObject *id_transition(SessionObject *self, PyObject *arg, transition_fn op,
                                      const char *what) {
  kfm_node_id_t id;
  if (session_check(self) || node_id_arg(arg, &id)) {
    return NULL;
  }
  int rc = op(self->s, id);
  if (KFM_OK != rc) {
    return kfm_raise(self->s, rc, what);
  }
  Py_RETURN_NONE;
}

static PyObject *Session_enter(SessionObject *self, PyObject *arg) {
  return id_transition(self, arg, kfm_enter, "enter");
}

static PyObject *Session_exit(SessionObject *self, PyObject *arg) {
  return id_transition(self, arg, kfm_exit, "exit");
}

/* The node id of a call/try_* argument without raising: -1 when arg is not
 * an int in range (counted as a failure by the caller, like a refusal). */
static long node_id_quiet(PyObject *arg) {
  if (!PyLong_CheckExact(arg)) {
    return -1;
  }
  int overflow = 0;
  long v = PyLong_AsLongAndOverflow(arg, &overflow);
  if (overflow || v < 0 || (unsigned long)v >= KFM_NODE_ROOT) {
    PyErr_Clear();
    return -1;
  }
  return v;
}

/* call(id, fn, /, *args, **kwargs): enter id, return fn(*args, **kwargs),
 * exit id whether fn returned or raised.  fn's exception propagates
 * unchanged; a refused enter still calls fn (unprofiled) and is counted. */
static PyObject *Session_call(SessionObject *self, PyObject *const *args, Py_ssize_t nargsf,
                              PyObject *kwnames) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs < 2) {
    PyErr_SetString(PyExc_TypeError, "Session.call(node_id, fn, /, *args, **kwargs) needs node_id and fn");
    return NULL;
  }
  kfm_session_t *s = self->s;
  long id = node_id_quiet(args[0]);
  int entered = 0;
  if (s != NULL && id >= 0 && kfm_enter(s, (kfm_node_id_t)id) == KFM_OK) {
    entered = 1;
  } else {
    self->failures++;
  }
  PyObject *res = PyObject_Vectorcall(args[1], args + 2, (size_t)(nargs - 2), kwnames);
  if (entered) {
    /* fn may have run Python code that closed this session (close() needs
     * the GIL, which fn can release): exit only the session entered. */
    if (self->s != s || kfm_exit(s, (kfm_node_id_t)id) != KFM_OK) {
      self->failures++;
    }
  }
  return res;
}

/* try_enter(id) / try_exit(id) -> bool: the transition, or count the
 * refusal and return False. */
static inline PyObject *try_transition(SessionObject *self, PyObject *arg, transition_fn op) {
  long id = node_id_quiet(arg);
  if (self->s != NULL && id >= 0 && op(self->s, (kfm_node_id_t)id) == KFM_OK) {
    Py_RETURN_TRUE;
  }
  self->failures++;
  Py_RETURN_FALSE;
}

static PyObject *Session_try_enter(SessionObject *self, PyObject *arg) {
  return try_transition(self, arg, kfm_enter);
}

static PyObject *Session_try_exit(SessionObject *self, PyObject *arg) {
  return try_transition(self, arg, kfm_exit);
}

static PyObject *name_transition(SessionObject *self, PyObject *name, name_transition_fn op,
                                 const char *what) {
  const char *n = session_name(self, name);
  if (n == NULL) {
    return NULL;
  }
  int rc = op(self->s, n);
  if (rc) {
    return kfm_raise(self->s, rc, what);
  }
  Py_RETURN_NONE;
}

static PyObject *Session_enter_name(SessionObject *self, PyObject *name) {
  return name_transition(self, name, kfm_enter_name, "enter_name");
}

static PyObject *Session_exit_name(SessionObject *self, PyObject *name) {
  return name_transition(self, name, kfm_exit_name, "exit_name");
}

static PyObject *Session_node_name(SessionObject *self, PyObject *arg) {
  kfm_node_id_t id;
  if (session_check(self) || node_id_arg(arg, &id)) {
    return NULL;
  }
  const char *n = kfm_node_name(self->s, id);
  if (n == NULL) {
    PyErr_Format(PyExc_ValueError, "unknown node id %lu", (unsigned long)id);
    return NULL;
  }
  return PyUnicode_FromString(n);
}

static PyObject *Session_current(SessionObject *self, PyObject *Py_UNUSED(ignored)) {
  if (session_check(self)) {
    return NULL;
  }
  kfm_node_id_t id;
  if (kfm_current_node(self->s, &id) != 0) {
    Py_RETURN_NONE;
  }
  const char *n = kfm_node_name(self->s, id);
  return n ? PyUnicode_FromString(n) : PyLong_FromUnsignedLong(id);
}

static PyObject *Session_depth(SessionObject *self, PyObject *Py_UNUSED(ignored)) {
  if (session_check(self)) {
    return NULL;
  }
  return PyLong_FromLong(kfm_depth(self->s));
}

/* ---------------------------------------------------------------------- */
/* Results                                                                 */

/* d[key] = value, stealing the reference to value.  -1 on error. */
static int set_steal(PyObject *d, const char *key, PyObject *value) {
  if (value == NULL) {
    return -1;
  }
  int rc = PyDict_SetItemString(d, key, value);
  Py_DECREF(value);
  return rc;
}

static PyObject *float_or_none(double v) {
  if (isnan(v)) {
    Py_RETURN_NONE;
  }
  return PyFloat_FromDouble(v);
}

static PyObject *metric_dict(const kfm_metric_info_t *m) {
  return Py_BuildValue("{s:s,s:s,s:s,s:s}", "name", m->name, "unit", m->unit, "backend",
                       m->backend ? m->backend : "", "kind",
                       m->kind == KFM_METRIC_GAUGE ? "gauge" : "counter");
}

static PyObject *summary_dict(const kfm_summary_t *u) {
  const char *ln = kfm_level_name((int)u->level);
  return Py_BuildValue(
      "{s:i,s:s,s:d,s:d,s:K,s:K,s:K,s:K,s:K,s:K,s:I,s:d,s:d,s:K,s:s,s:d}", "level",
      (int)u->level, "level_name", ln ? ln : "?", "wall_ns", u->wall_ns, "rate_hz", u->rate_hz,
      "samples", (unsigned long long)u->samples, "samples_dropped",
      (unsigned long long)u->samples_dropped, "events", (unsigned long long)u->events,
      "events_dropped", (unsigned long long)u->events_dropped, "edges_dropped",
      (unsigned long long)u->edges_dropped, "unbalanced", (unsigned long long)u->unbalanced,
      "threads", (unsigned)u->threads, "sampler_cpu_ns", u->sampler_cpu_ns,
      "sampler_late_p99_ns", u->sampler_late_p99_ns, "sampler_missed",
      (unsigned long long)u->sampler_missed, "clock", u->clock ? u->clock : "", "tsc_ghz",
      u->tsc_ghz);
}

static PyObject *node_dict(const kfm_node_stats_t *n, PyObject *mnames, size_t nm) {
  PyObject *d = Py_BuildValue(
      "{s:k,s:s,s:K,s:K,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:K,s:K}", "id",
      (unsigned long)n->id, "name", n->name, "count", (unsigned long long)n->count, "active",
      (unsigned long long)n->active, "total_ns", n->total_ns, "exclusive_ns", n->exclusive_ns,
      "min_ns", n->count ? n->min_ns : 0.0, "max_ns", n->max_ns, "mean_ns", n->mean_ns,
      "stddev_ns", n->stddev_ns, "p50_ns", n->p50_ns, "p90_ns", n->p90_ns, "p99_ns", n->p99_ns,
      "samples", (unsigned long long)n->samples, "samples_any",
      (unsigned long long)n->samples_any);
  if (d == NULL) {
    return NULL;
  }
  if (set_steal(d, "peak_rss", float_or_none(n->peak_rss))) {
    goto fail;
  }
  PyObject *inc = PyDict_New(), *exc = PyDict_New();
  if (set_steal(d, "inclusive", inc) || set_steal(d, "exclusive", exc)) {
    goto fail;
  }
  for (size_t i = 0; i < nm; i++) {
    PyObject *k = PyList_GET_ITEM(mnames, (Py_ssize_t)i);
    PyObject *a = PyFloat_FromDouble(n->inclusive[i]);
    PyObject *b = PyFloat_FromDouble(n->exclusive[i]);
    int bad = a == NULL || b == NULL || PyDict_SetItem(inc, k, a) || PyDict_SetItem(exc, k, b);
    Py_XDECREF(a);
    Py_XDECREF(b);
    if (bad) {
      goto fail;
    }
  }
  return d;
fail:
  Py_DECREF(d);
  return NULL;
}

static PyObject *name_or_none(const kfm_session_t *s, kfm_node_id_t id) {
  if (id == KFM_NODE_ROOT) {
    Py_RETURN_NONE;
  }
  const char *n = kfm_node_name(s, id);
  return n ? PyUnicode_FromString(n) : PyLong_FromUnsignedLong(id);
}

static PyObject *edges_list(const kfm_session_t *s, const kfm_report_t *r, kfm_edge_kind_t kind) {
  size_t ne = kfm_report_edge_count(r, kind);
  PyObject *l = PyList_New((Py_ssize_t)ne);
  if (l == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < ne; i++) {
    kfm_edge_t e;
    kfm_report_edge(r, kind, i, &e);
    PyObject *t = Py_BuildValue("(NNK)", name_or_none(s, e.from), name_or_none(s, e.to),
                                (unsigned long long)e.count);
    if (t == NULL) {
      Py_DECREF(l);
      return NULL;
    }
    PyList_SET_ITEM(l, (Py_ssize_t)i, t);
  }
  return l;
}

static PyObject *backends_list_report(const kfm_report_t *r) {
  size_t nb = kfm_report_backend_count(r);
  PyObject *l = PyList_New((Py_ssize_t)nb);
  if (l == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < nb; i++) {
    kfm_backend_status_t b;
    kfm_report_backend(r, i, &b);
    PyObject *d = Py_BuildValue("{s:s,s:O,s:O,s:s}", "name", b.name, "available",
                                b.available ? Py_True : Py_False, "enabled",
                                b.enabled ? Py_True : Py_False, "reason",
                                b.reason ? b.reason : "");
    if (d == NULL) {
      Py_DECREF(l);
      return NULL;
    }
    PyList_SET_ITEM(l, (Py_ssize_t)i, d);
  }
  return l;
}

/* The engine's merged report of an open session, for report(), samples()
 * and events(); -1 with the exception set (what names the method). */
static int session_report(SessionObject *self, kfm_report_t **r, const char *what) {
  if (session_check(self)) {
    return -1;
  }
  int rc = kfm_session_report(self->s, r);
  if (rc) {
    kfm_raise(self->s, rc, what);
    return -1;
  }
  return 0;
}

static PyObject *Session_report(SessionObject *self, PyObject *Py_UNUSED(ignored)) {
  kfm_report_t *r;
  if (session_report(self, &r, "report")) {
    return NULL;
  }
  PyObject *out = PyDict_New(), *mnames = NULL;
  if (out == NULL) {
    goto fail;
  }
  kfm_summary_t sum;
  kfm_report_summary(r, &sum);
  if (set_steal(out, "summary", summary_dict(&sum))) {
    goto fail;
  }
  size_t nm = kfm_report_metric_count(r);
  mnames = PyList_New((Py_ssize_t)nm);
  PyObject *metrics = PyList_New((Py_ssize_t)nm);
  if (mnames == NULL || set_steal(out, "metrics", metrics)) {
    goto fail;
  }
  for (size_t i = 0; i < nm; i++) {
    kfm_metric_info_t m;
    kfm_report_metric(r, i, &m);
    PyObject *md = metric_dict(&m), *nmobj = PyUnicode_FromString(m.name);
    if (md == NULL || nmobj == NULL) {
      Py_XDECREF(md);
      Py_XDECREF(nmobj);
      goto fail;
    }
    PyList_SET_ITEM(metrics, (Py_ssize_t)i, md);
    PyList_SET_ITEM(mnames, (Py_ssize_t)i, nmobj);
  }
  size_t nsm = kfm_report_sample_metric_count(r);
  PyObject *smetrics = PyList_New((Py_ssize_t)nsm);
  if (set_steal(out, "sample_metrics", smetrics)) {
    goto fail;
  }
  for (size_t i = 0; i < nsm; i++) {
    kfm_metric_info_t m;
    kfm_report_sample_metric(r, i, &m);
    PyObject *md = metric_dict(&m);
    if (md == NULL) {
      goto fail;
    }
    PyList_SET_ITEM(smetrics, (Py_ssize_t)i, md);
  }
  PyObject *nodes = PyDict_New();
  if (set_steal(out, "nodes", nodes)) {
    goto fail;
  }
  size_t nn = kfm_report_node_count(r);
  for (size_t i = 0; i < nn; i++) {
    kfm_node_stats_t ns;
    kfm_report_node(r, i, &ns);
    PyObject *nd = node_dict(&ns, mnames, nm);
    if (nd == NULL) {
      goto fail;
    }
    int bad = PyDict_SetItemString(nodes, ns.name, nd);
    Py_DECREF(nd);
    if (bad) {
      goto fail;
    }
  }
  PyObject *edges = PyDict_New();
  if (set_steal(out, "edges", edges) ||
      set_steal(edges, "nested", edges_list(self->s, r, KFM_EDGE_NESTED)) ||
      set_steal(edges, "follows", edges_list(self->s, r, KFM_EDGE_FOLLOWS)) ||
      set_steal(out, "backends", backends_list_report(r))) {
    goto fail;
  }
  Py_DECREF(mnames);
  kfm_report_free(r);
  return out;
fail:
  Py_XDECREF(mnames);
  Py_XDECREF(out);
  kfm_report_free(r);
  return NULL;
}

/* An immutable buffer for n x width items of sz bytes; *data receives its
 * storage, filled before series_view hands the buffer out. */
static PyObject *new_series(size_t n, size_t width, size_t sz, char **data, PyObject **holder) {
  *holder = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * width * sz));
  if (*holder == NULL) {
    return NULL;
  }
  *data = PyBytes_AS_STRING(*holder);
  return *holder;
}

static PyObject *series_view(PyObject *holder, const char *fmt, size_t n, size_t width,
                             int two_d) {
  PyObject *mv = PyMemoryView_FromObject(holder);
  if (mv == NULL) {
    return NULL;
  }
  PyObject *v;
  /* memoryview cannot cast to a shape with a zero in it: an empty series
   * is an empty 1-D view instead. */
  if (two_d && n > 0 && width > 0) {
    v = PyObject_CallMethod(mv, "cast", "s(nn)", fmt, (Py_ssize_t)n, (Py_ssize_t)width);
  } else {
    v = PyObject_CallMethod(mv, "cast", "s", fmt);
  }
  Py_DECREF(mv);
  return v;
}

static PyObject *metric_names_list(const kfm_report_t *r, int sample) {
  size_t n = sample ? kfm_report_sample_metric_count(r) : kfm_report_metric_count(r);
  PyObject *l = PyList_New((Py_ssize_t)n);
  if (l == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    kfm_metric_info_t m;
    if (sample) {
      kfm_report_sample_metric(r, i, &m);
    } else {
      kfm_report_metric(r, i, &m);
    }
    PyObject *s = PyUnicode_FromString(m.name);
    if (s == NULL) {
      Py_DECREF(l);
      return NULL;
    }
    PyList_SET_ITEM(l, (Py_ssize_t)i, s);
  }
  return l;
}

/* Node names for every registered id that appears in ids[0..n). */
static int add_names(PyObject *names, const kfm_session_t *s, const uint32_t *ids, size_t n) {
  for (size_t i = 0; i < n; i++) {
    PyObject *k = PyLong_FromUnsignedLong(ids[i]);
    if (k == NULL) {
      return -1;
    }
    int has = PyDict_Contains(names, k);
    if (has == 0) {
      const char *nm = kfm_node_name(s, ids[i]);
      PyObject *v = nm ? PyUnicode_FromString(nm) : (Py_INCREF(Py_None), Py_None);
      if (v == NULL || PyDict_SetItem(names, k, v)) {
        Py_XDECREF(v);
        Py_DECREF(k);
        return -1;
      }
      Py_DECREF(v);
    }
    Py_DECREF(k);
    if (has < 0) {
      return -1;
    }
  }
  return 0;
}

static PyObject *Session_samples(SessionObject *self, PyObject *Py_UNUSED(ignored)) {
  kfm_report_t *r;
  if (session_report(self, &r, "samples")) {
    return NULL;
  }
  size_t n = kfm_report_sample_count(r), ns = kfm_report_sample_metric_count(r);
  size_t nact = 0;
  for (size_t i = 0; i < n; i++) {
    kfm_sample_t smp;
    kfm_report_sample(r, i, &smp);
    nact += smp.nactive;
  }
  PyObject *out = PyDict_New(), *res = NULL;
  PyObject *ht = NULL, *hv = NULL, *ho = NULL, *hth = NULL, *hn = NULL;
  char *pt, *pv, *po, *pth, *pn;
  if (out == NULL || !new_series(n, 1, sizeof(double), &pt, &ht) ||
      !new_series(n, ns, sizeof(double), &pv, &hv) ||
      !new_series(n + 1, 1, sizeof(uint32_t), &po, &ho) ||
      !new_series(nact, 1, sizeof(uint32_t), &pth, &hth) ||
      !new_series(nact, 1, sizeof(uint32_t), &pn, &hn)) {
    goto done;
  }
  double *t = (double *)pt, *v = (double *)pv;
  uint32_t *off = (uint32_t *)po, *th = (uint32_t *)pth, *nd = (uint32_t *)pn;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    kfm_sample_t smp;
    kfm_report_sample(r, i, &smp);
    t[i] = smp.t_ns;
    if (ns) {
      memcpy(v + i * ns, smp.values, ns * sizeof(double));
    }
    off[i] = (uint32_t)k;
    for (uint32_t j = 0; j < smp.nactive; j++, k++) {
      th[k] = smp.threads[j];
      nd[k] = smp.nodes[j];
    }
  }
  off[n] = (uint32_t)k;
  PyObject *names = PyDict_New();
  if (set_steal(out, "metrics", metric_names_list(r, 1)) ||
      set_steal(out, "t_ns", series_view(ht, "d", n, 1, 0)) ||
      set_steal(out, "values", series_view(hv, "d", n, ns, 1)) ||
      set_steal(out, "offsets", series_view(ho, "I", n + 1, 1, 0)) ||
      set_steal(out, "threads", series_view(hth, "I", nact, 1, 0)) ||
      set_steal(out, "nodes", series_view(hn, "I", nact, 1, 0)) || set_steal(out, "names", names) ||
      add_names(names, self->s, nd, nact)) {
    goto done;
  }
  res = out;
  out = NULL;
done:
  /* The views hold their own references to the buffers. */
  Py_XDECREF(out);
  Py_XDECREF(ht);
  Py_XDECREF(hv);
  Py_XDECREF(ho);
  Py_XDECREF(hth);
  Py_XDECREF(hn);
  kfm_report_free(r);
  return res;
}

static PyObject *Session_events(SessionObject *self, PyObject *Py_UNUSED(ignored)) {
  kfm_report_t *r;
  if (session_report(self, &r, "events")) {
    return NULL;
  }
  size_t n = kfm_report_event_count(r), nm = kfm_report_metric_count(r);
  PyObject *out = PyDict_New(), *res = NULL;
  PyObject *ht = NULL, *hth = NULL, *hn = NULL, *hk = NULL, *hv = NULL;
  char *pt, *pth, *pn, *pk, *pv;
  if (out == NULL || !new_series(n, 1, sizeof(double), &pt, &ht) ||
      !new_series(n, 1, sizeof(uint32_t), &pth, &hth) ||
      !new_series(n, 1, sizeof(uint32_t), &pn, &hn) ||
      !new_series(n, 1, 1, &pk, &hk) ||
      !new_series(n, nm, sizeof(double), &pv, &hv)) {
    goto done;
  }
  double *t = (double *)pt, *v = (double *)pv;
  uint32_t *th = (uint32_t *)pth, *nd = (uint32_t *)pn;
  unsigned char *kind = (unsigned char *)pk;
  for (size_t i = 0; i < n; i++) {
    kfm_event_t e;
    kfm_report_event(r, i, &e);
    t[i] = e.t_ns;
    th[i] = e.thread;
    nd[i] = e.node;
    kind[i] = (unsigned char)e.kind;
    if (nm) {
      memcpy(v + i * nm, e.values, nm * sizeof(double));
    }
  }
  PyObject *names = PyDict_New();
  if (set_steal(out, "metrics", metric_names_list(r, 0)) ||
      set_steal(out, "t_ns", series_view(ht, "d", n, 1, 0)) ||
      set_steal(out, "thread", series_view(hth, "I", n, 1, 0)) ||
      set_steal(out, "node", series_view(hn, "I", n, 1, 0)) ||
      set_steal(out, "kind", series_view(hk, "B", n, 1, 0)) ||
      set_steal(out, "values", series_view(hv, "d", n, nm, 1)) ||
      set_steal(out, "names", names) || add_names(names, self->s, nd, n)) {
    goto done;
  }
  res = out;
  out = NULL;
done:
  /* The views hold their own references to the buffers. */
  Py_XDECREF(out);
  Py_XDECREF(ht);
  Py_XDECREF(hth);
  Py_XDECREF(hn);
  Py_XDECREF(hk);
  Py_XDECREF(hv);
  kfm_report_free(r);
  return res;
}

static PyObject *Session_export(SessionObject *self, PyObject *arg) {
  if (session_check(self)) {
    return NULL;
  }
  PyObject *bytes = NULL;
  if (!PyUnicode_FSConverter(arg, &bytes)) {
    return NULL;
  }
  errno = 0;
  int rc = kfm_session_export(self->s, PyBytes_AS_STRING(bytes));
  int e = errno;
  Py_DECREF(bytes);
  if (rc == KFM_EIO) {
    /* The engine keeps errno of the failed fopen/rename; keep it so callers
     * can tell EACCES from ENOENT. */
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", e ? e : EIO, kfm_errmsg(self->s));
    if (exc) {
      PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
      Py_DECREF(exc);
    }
    return NULL;
  }
  if (rc) {
    return kfm_raise(self->s, rc, "export");
  }
  Py_RETURN_NONE;
}

static PyObject *Session_backend_json(SessionObject *self, PyObject *name) {
  const char *n = session_name(self, name);
  if (n == NULL) {
    return NULL;
  }
  char *json = NULL;
  int rc = kfm_session_backend_json(self->s, n, &json);
  if (rc) {
    return kfm_raise(self->s, rc, "backend_json");
  }
  PyObject *s = PyUnicode_FromString(json ? json : "{}");
  kfm_free(json);
  return s;
}

static PyObject *Session_get_level(SessionObject *self, void *Py_UNUSED(closure)) {
  if (session_check(self)) {
    return NULL;
  }
  return PyLong_FromLong((long)kfm_session_level(self->s));
}

static PyObject *Session_get_failures(SessionObject *self, void *Py_UNUSED(closure)) {
  return PyLong_FromUnsignedLongLong(self->failures);
}

static PyObject *Session_get_closed(SessionObject *self, void *Py_UNUSED(closure)) {
  return PyBool_FromLong(self->s == NULL);
}

static PyObject *Session_get_running(SessionObject *self, void *Py_UNUSED(closure)) {
  return PyBool_FromLong(self->s != NULL && self->state == 1);
}

static PyTypeObject SessionType;

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
 * The recorder exposes one tuple, Recorder._fast:
 *   (session, id_task, setup_wall, id_compute, id_update, cend, post_ns,
 *    state_tracking, shared_update_ns, shared_update_calls)
 * with name -> engine id dicts per span kind, setup_wall (name -> [count,
 * wall ns] of the node's task preparations: see hook_prep), cend (task checkpoint_ns ->
 * perf_counter_ns when its function returned) and post_ns (name -> ns from
 * the function's return to the task's end).  perf_counter_ns is
 * CLOCK_MONOTONIC on Linux, which the C side reads directly.
 */

enum { HOOK_PREP = 0, HOOK_RUN = 1, HOOK_STEP = 2, HOOK_APPLY = 3 };
enum {
  F_SESSION, F_TASK, F_SETUP, F_COMPUTE, F_UPDATE, F_CEND, F_POST, F_TRACKING, F_SHNS, F_SHCALLS,
  F_N
};

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

static PyObject *hook_prep(HookObject *h, PyObject *rec, PyObject *fast, PyObject *const *args,
                           size_t nargsf, PyObject *kwnames) {
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
  PyObject *sw = PyTuple_GET_ITEM(fast, F_SETUP);
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

static PyObject *hook_run(HookObject *h, PyObject *rec, PyObject *fast, PyObject *const *args,
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
  /* The instrumented proc (the Python hook builds and caches it). */
  PyObject *key = PyLong_FromVoidPtr(proc);
  PyObject *hit = key && PyDict_Check(h->extra) ? PyDict_GetItemWithError(h->extra, key) : NULL;
  Py_XDECREF(key);
  if (hit == NULL || !PyTuple_Check(hit) || PyTuple_GET_SIZE(hit) != 2 ||
      PyTuple_GET_ITEM(hit, 0) != proc) {
    PyErr_Clear();
    goto slow;
  }
  long id = hook_id(PyTuple_GET_ITEM(fast, F_TASK), name);
  if (id < 0) {
    goto slow;
  }
  PyObject *inst = PyTuple_GET_ITEM(hit, 1);
  if (inst != proc && PyObject_GenericSetAttr(task, str_proc, inst) < 0) {
    PyErr_Clear();
    goto slow;
  }
  Py_INCREF(ns);
  res = hook_span((SessionObject *)PyTuple_GET_ITEM(fast, F_SESSION), id, h->orig, args, nargsf,
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
  PyObject *cend = PyTuple_GET_ITEM(fast, F_CEND), *post = PyTuple_GET_ITEM(fast, F_POST);
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

static PyObject *hook_step(HookObject *h, PyObject *rec, PyObject *fast, PyObject *const *args,
                           size_t nargsf, PyObject *kwnames) {
  (void)rec;
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  PyObject *ns = nargs >= 2 ? hook_config_ns(args[1]) : NULL;
  if (ns == NULL || hook_nested(ns)) {
    return hook_slow(h, args, nargsf, kwnames);
  }
  long id = hook_id(PyTuple_GET_ITEM(fast, F_COMPUTE), h->extra);
  if (id < 0) {
    return hook_slow(h, args, nargsf, kwnames);
  }
  Py_INCREF(ns);
  PyObject *tok = PyObject_IsTrue(PyTuple_GET_ITEM(fast, F_TRACKING)) == 1 ? hook_depth_enter(h)
                                                                         : NULL;
  PyErr_Clear();
  PyObject *res = hook_span((SessionObject *)PyTuple_GET_ITEM(fast, F_SESSION), id, h->orig,
                            args, nargsf, kwnames);
  hook_depth_exit(h, tok);
  if (res != NULL && PyDict_Check(PyTuple_GET_ITEM(fast, F_CEND))) {
    hook_set_int(PyTuple_GET_ITEM(fast, F_CEND), ns, hook_now_ns());
  }
  Py_DECREF(ns);
  return res;
}

/* A name LangGraph gives its own tasks ("__input__", "__start__"): as
 * _instrument's startswith("__"). */
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
 * tracking off: what _instrument._apply_writes does, without its Python
 * frames.  One state_update span: the node's own when one user node wrote,
 * "__loop__" when none did, "(parallel)" otherwise, whose time is shared
 * among the nodes by the number of writes each made.  Sets *handled = 0
 * (and calls nothing) when the Python path must take it: subgraph tasks,
 * names not registered yet, more than HOOK_MANY_MAX distinct nodes.
 */
static PyObject *hook_apply_many(HookObject *h, PyObject *fast, PyObject *tasks,
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
    id = hook_id(PyTuple_GET_ITEM(fast, F_UPDATE),
                 nuser == 1 ? user : nuser == 0 ? str_loop : str_parallel);
  }
  PyObject *shns = PyTuple_GET_ITEM(fast, F_SHNS), *shcalls = PyTuple_GET_ITEM(fast, F_SHCALLS);
  if (id >= 0 && (nuser < 2 || (PyDict_Check(shns) && PyDict_Check(shcalls)))) {
    *handled = 1;
    long long t0 = hook_now_ns();
    res = hook_span((SessionObject *)PyTuple_GET_ITEM(fast, F_SESSION), id, h->orig, args,
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

static PyObject *hook_apply(HookObject *h, PyObject *rec, PyObject *fast, PyObject *const *args,
                            size_t nargsf, PyObject *kwnames) {
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
    } else if (n >= 0 && PyObject_IsTrue(PyTuple_GET_ITEM(fast, F_TRACKING)) == 0) {
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
  /* No namespace at all reads as the top graph's, as in _instrument._ns. */
  if ((ns == NULL || !hook_nested(ns)) && name != NULL && PyUnicode_Check(name) &&
      PyUnicode_GET_LENGTH(name) > 0) {
    /* LangGraph's own tasks go to "__loop__". */
    id = hook_id(PyTuple_GET_ITEM(fast, F_UPDATE), hook_internal_name(name) ? str_loop : name);
  }
  if (id < 0) {
    res = hook_slow(h, args, nargsf, kwnames);
    goto done;
  }
  res = hook_span((SessionObject *)PyTuple_GET_ITEM(fast, F_SESSION), id, h->orig, args, nargsf,
                  kwnames);
  if (res != NULL && PyObject_IsTrue(PyTuple_GET_ITEM(fast, F_TRACKING)) == 1) {
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
  PyObject *fast = PyObject_GetAttr(rec, str_fast);
  PyObject *res;
  if (fast == NULL || !PyTuple_Check(fast) || PyTuple_GET_SIZE(fast) != F_N ||
      !PyObject_TypeCheck(PyTuple_GET_ITEM(fast, F_SESSION), &SessionType)) {
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
  Py_XDECREF(fast);
  Py_DECREF(rec);
  return res;
}

static PyMethodDef Session_methods[] = {
    {"start", (PyCFunction)Session_start, METH_NOARGS, "Start sampling and accept transitions."},
    {"stop", (PyCFunction)Session_stop, METH_NOARGS,
     "Stop: the sampler parks, traces are drained, the configured export is written. "
     "Results stay readable (and exact)."},
    {"restart", (PyCFunction)Session_restart, METH_NOARGS,
     "Run a stopped session again with its results cleared; registrations, backends and "
     "live threads' slots are kept. failures restarts from 0."},
    {"close", (PyCFunction)Session_close, METH_NOARGS,
     "Stop if running and free the session. Idempotent."},
    {"__enter__", (PyCFunction)Session_enter_ctx, METH_NOARGS, "Start (if not started)."},
    {"__exit__", (PyCFunction)Session_exit_ctx, METH_VARARGS,
     "Stop (if running); results stay readable until close()."},
    {"register", (PyCFunction)Session_register, METH_O, "Intern a node name; returns its id."},
    {"enter", (PyCFunction)Session_enter, METH_O, "Enter node id on the calling thread."},
    {"exit", (PyCFunction)Session_exit, METH_O,
     "Exit node id (must be the innermost open node of the calling thread)."},
    {"call", (PyCFunction)(void (*)(void))Session_call, METH_FASTCALL | METH_KEYWORDS,
     "call(node_id, fn, /, *args, **kwargs): fn(*args, **kwargs) inside node_id (exited even "
     "when fn raises). A refused transition is counted in failures, never raised."},
    {"try_enter", (PyCFunction)Session_try_enter, METH_O,
     "Enter node id; False (counted in failures) instead of raising when refused."},
    {"try_exit", (PyCFunction)Session_try_exit, METH_O,
     "Exit node id; False (counted in failures) instead of raising when refused."},
    {"enter_name", (PyCFunction)Session_enter_name, METH_O, "Register (or look up) and enter."},
    {"exit_name", (PyCFunction)Session_exit_name, METH_O, "Look up and exit."},
    {"node_name", (PyCFunction)Session_node_name, METH_O, "Name of a registered node id."},
    {"current", (PyCFunction)Session_current, METH_NOARGS,
     "Innermost open node name of the calling thread, or None."},
    {"depth", (PyCFunction)Session_depth, METH_NOARGS, "Node stack depth of the calling thread."},
    {"report", (PyCFunction)Session_report, METH_NOARGS,
     "Merged snapshot as a dict: summary, metrics, sample_metrics, nodes, edges, backends."},
    {"samples", (PyCFunction)Session_samples, METH_NOARGS,
     "Sampler series: dict of typed memoryviews (one copy, no per-sample objects)."},
    {"events", (PyCFunction)Session_events, METH_NOARGS,
     "Trace events: dict of typed memoryviews (one copy, no per-event objects)."},
    {"export", (PyCFunction)Session_export, METH_O,
     "Write the JSON export (kfm.profile schema) atomically; OSError on failure."},
    {"backend_json", (PyCFunction)Session_backend_json, METH_O,
     "A backend's description (topology, events, GPU tables) as a JSON string."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Session_getset[] = {
    {"level", (getter)Session_get_level, NULL, "Engine level (0 basic .. 3 comprehensive).",
     NULL},
    {"closed", (getter)Session_get_closed, NULL, "True after close().", NULL},
    {"failures", (getter)Session_get_failures, NULL,
     "Transitions refused in call/try_enter/try_exit (never raised).", NULL},
    {"running", (getter)Session_get_running, NULL, "True between start() and stop().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SessionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kfm_debugging._kfm.Session",
    .tp_doc = PyDoc_STR("Session(config: str | None = None): one kfm profiling session.\n\n"
                        "config is the engine's 'key=value,...' string (level=, rate=, "
                        "backends=, trace=, ...). Bad keys or values raise ValueError."),
    .tp_basicsize = sizeof(SessionObject),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Session_init,
    .tp_dealloc = (destructor)Session_dealloc,
    .tp_methods = Session_methods,
    .tp_getset = Session_getset,
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
                        "whose common case runs in C (see kfm_module.c)."),
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
/* Module functions                                                        */

static PyObject *mod_backends(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored)) {
  size_t n = kfm_backend_count();
  PyObject *l = PyList_New((Py_ssize_t)n);
  if (l == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    kfm_backend_status_t b;
    kfm_backend_probe(i, &b);
    PyObject *d = Py_BuildValue("{s:s,s:O,s:s}", "name", b.name, "available",
                                b.available ? Py_True : Py_False, "reason",
                                b.reason ? b.reason : "");
    if (d == NULL) {
      Py_DECREF(l);
      return NULL;
    }
    PyList_SET_ITEM(l, (Py_ssize_t)i, d);
  }
  return l;
}

static PyObject *mod_level_name(PyObject *Py_UNUSED(m), PyObject *arg) {
  long v = PyLong_AsLong(arg);
  if (v == -1 && PyErr_Occurred()) {
    return NULL;
  }
  const char *n = kfm_level_name((int)v);
  if (n == NULL) {
    PyErr_Format(PyExc_ValueError, "level %ld out of range (0 basic .. 3 comprehensive)", v);
    return NULL;
  }
  return PyUnicode_FromString(n);
}

static PyMethodDef module_methods[] = {
    {"backends", mod_backends, METH_NOARGS,
     "Builtin backends: list of {name, available, reason} from the engine's probe."},
    {"level_name", mod_level_name, METH_O, "Lower-case name of an engine level number."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef kfm_moduledef = {
    PyModuleDef_HEAD_INIT, .m_name = "kfm_debugging._kfm",
    .m_doc = "CPython bindings of the kfm sampling engine.", .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__kfm(void) {
  if (PyType_Ready(&SessionType) < 0 || PyType_Ready(&HookType) < 0) {
    return NULL;
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
    return NULL;
  }
  PyObject *m = PyModule_Create(&kfm_moduledef);
  if (m == NULL) {
    return NULL;
  }
  Py_INCREF(&SessionType);
  Py_INCREF(&HookType);
  if (PyModule_AddObject(m, "Hook", (PyObject *)&HookType) < 0) {
    Py_DECREF(&HookType);
    Py_DECREF(m);
    return NULL;
  }
  if (PyModule_AddObject(m, "Session", (PyObject *)&SessionType) < 0 ||
      PyModule_AddStringConstant(m, "version", KFM_VERSION_STRING) < 0 ||
      PyModule_AddIntConstant(m, "SCHEMA_VERSION", KFM_SCHEMA_VERSION) < 0 ||
      PyModule_AddIntConstant(m, "NAME_MAX", KFM_NAME_MAX) < 0 ||
      PyModule_AddIntConstant(m, "STACK_MAX", KFM_STACK_MAX) < 0) {
    Py_DECREF(&SessionType);
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
