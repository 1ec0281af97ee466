/*
 * kfm_module.c - the CPython extension kfm_debugging._kfm: one Session type
 * wrapping a kfm session, plus module functions for the backend probe and
 * level names.  This is the general binding; the LangGraph hooks (Hook,
 * HookData) are kfm_hooks.c, sharing kfm_module.h.
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
#include "kfm_module.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

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
long kfmpy_node_id_quiet(PyObject *arg) {
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
  long id = kfmpy_node_id_quiet(args[0]);
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
  long id = kfmpy_node_id_quiet(arg);
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

/* The node dict's keys, made once: a report builds one dict per node, and
 * Py_BuildValue's "{s:...}" decodes and hashes every key string anew (about
 * half of a 64-node report's time went there). */
enum {
  NK_ID, NK_NAME, NK_COUNT, NK_ACTIVE, NK_TOTAL, NK_EXCL, NK_MIN, NK_MAX, NK_MEAN, NK_STDDEV,
  NK_P50, NK_P90, NK_P99, NK_SAMPLES, NK_SAMPLES_ANY, NK_PEAK_RSS, NK_INCLUSIVE, NK_EXCLUSIVE,
  NK_N
};
static const char *const node_key_names[NK_N] = {
    "id", "name", "count", "active", "total_ns", "exclusive_ns", "min_ns", "max_ns", "mean_ns",
    "stddev_ns", "p50_ns", "p90_ns", "p99_ns", "samples", "samples_any", "peak_rss", "inclusive",
    "exclusive"};
/* Interned once at module init and kept for the process: immutable strings
 * shared by every report, never written after init. */
static PyObject *node_keys[NK_N];

static int node_keys_init(void) {
  for (int i = 0; i < NK_N; i++) {
    node_keys[i] = PyUnicode_InternFromString(node_key_names[i]);
    if (node_keys[i] == NULL) {
      return -1;
    }
  }
  return 0;
}

static PyObject *node_dict(const kfm_node_stats_t *n, PyObject *mnames, size_t nm) {
  PyObject *v[NK_N] = {
      [NK_ID] = PyLong_FromUnsignedLong((unsigned long)n->id),
      [NK_NAME] = PyUnicode_FromString(n->name),
      [NK_COUNT] = PyLong_FromUnsignedLongLong((unsigned long long)n->count),
      [NK_ACTIVE] = PyLong_FromUnsignedLongLong((unsigned long long)n->active),
      [NK_TOTAL] = PyFloat_FromDouble(n->total_ns),
      [NK_EXCL] = PyFloat_FromDouble(n->exclusive_ns),
      [NK_MIN] = PyFloat_FromDouble(n->count ? n->min_ns : 0.0),
      [NK_MAX] = PyFloat_FromDouble(n->max_ns),
      [NK_MEAN] = PyFloat_FromDouble(n->mean_ns),
      [NK_STDDEV] = PyFloat_FromDouble(n->stddev_ns),
      [NK_P50] = PyFloat_FromDouble(n->p50_ns),
      [NK_P90] = PyFloat_FromDouble(n->p90_ns),
      [NK_P99] = PyFloat_FromDouble(n->p99_ns),
      [NK_SAMPLES] = PyLong_FromUnsignedLongLong((unsigned long long)n->samples),
      [NK_SAMPLES_ANY] = PyLong_FromUnsignedLongLong((unsigned long long)n->samples_any),
      [NK_PEAK_RSS] = float_or_none(n->peak_rss),
      [NK_INCLUSIVE] = PyDict_New(),
      [NK_EXCLUSIVE] = PyDict_New(),
  };
  PyObject *d = PyDict_New();
  int bad = d == NULL;
  for (int i = 0; i < NK_N; i++) {
    bad = bad || v[i] == NULL || PyDict_SetItem(d, node_keys[i], v[i]) < 0;
  }
  for (size_t i = 0; i < nm && !bad; i++) {
    PyObject *k = PyList_GET_ITEM(mnames, (Py_ssize_t)i);
    PyObject *a = PyFloat_FromDouble(n->inclusive[i]);
    PyObject *b = PyFloat_FromDouble(n->exclusive[i]);
    bad = a == NULL || b == NULL || PyDict_SetItem(v[NK_INCLUSIVE], k, a) ||
          PyDict_SetItem(v[NK_EXCLUSIVE], k, b);
    Py_XDECREF(a);
    Py_XDECREF(b);
  }
  for (int i = 0; i < NK_N; i++) {
    Py_XDECREF(v[i]);
  }
  if (bad) {
    Py_XDECREF(d);
    return NULL;
  }
  return d;
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

/* {name: (count, total_ns, inclusive value of `metric` or None)}: what a
 * summary of every run needs (Debugger.history from STANDARD up), without
 * the full report's dicts (a fifth of its cost). */
static PyObject *Session_totals(SessionObject *self, PyObject *args) {
  const char *metric = NULL;
  if (!PyArg_ParseTuple(args, "|z:totals", &metric)) {
    return NULL;
  }
  kfm_report_t *r;
  if (session_report(self, &r, "totals")) {
    return NULL;
  }
  int mi = -1;
  size_t nm = kfm_report_metric_count(r);
  for (size_t i = 0; metric != NULL && i < nm; i++) {
    kfm_metric_info_t m;
    kfm_report_metric(r, i, &m);
    if (strcmp(m.name, metric) == 0) {
      mi = (int)i;
      break;
    }
  }
  PyObject *out = PyDict_New();
  size_t nn = kfm_report_node_count(r);
  for (size_t i = 0; out != NULL && i < nn; i++) {
    kfm_node_stats_t ns;
    kfm_report_node(r, i, &ns);
    PyObject *v = mi < 0 ? Py_NewRef(Py_None) : PyFloat_FromDouble(ns.inclusive[mi]);
    PyObject *t = v ? Py_BuildValue("(KdN)", (unsigned long long)ns.count, ns.total_ns, v) : NULL;
    if (t == NULL || PyDict_SetItemString(out, ns.name, t) < 0) {
      Py_XDECREF(t);
      Py_CLEAR(out);
      break;
    }
    Py_DECREF(t);
  }
  kfm_report_free(r);
  return out;
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

/* [OS thread id of engine thread index i]: how the trace names a lane after
 * the Python thread that ran on it. */
static PyObject *thread_tids(const kfm_report_t *r) {
  PyObject *l = PyList_New(0);
  int32_t tid;
  for (uint32_t i = 0; l != NULL && kfm_report_thread_tid(r, i, &tid) == 0; i++) {
    PyObject *v = PyLong_FromLong(tid);
    if (v == NULL || PyList_Append(l, v) < 0) {
      Py_XDECREF(v);
      Py_CLEAR(l);
      break;
    }
    Py_DECREF(v);
  }
  return l;
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
      set_steal(out, "names", names) || add_names(names, self->s, nd, n) ||
      set_steal(out, "tids", thread_tids(r))) {
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
    {"totals", (PyCFunction)Session_totals, METH_VARARGS,
     "totals(metric=None) -> {node: (count, total_ns, inclusive metric value or None)}."},
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

PyTypeObject kfmpy_SessionType = {
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
  if (PyType_Ready(&kfmpy_SessionType) < 0) {
    return NULL;
  }
  PyObject *m = PyModule_Create(&kfm_moduledef);
  if (m == NULL) {
    return NULL;
  }
  if (node_keys_init() < 0 || kfmpy_hooks_init(m) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  Py_INCREF(&kfmpy_SessionType);
  if (PyModule_AddObject(m, "Session", (PyObject *)&kfmpy_SessionType) < 0 ||
      PyModule_AddStringConstant(m, "version", KFM_VERSION_STRING) < 0 ||
      PyModule_AddIntConstant(m, "SCHEMA_VERSION", KFM_SCHEMA_VERSION) < 0 ||
      PyModule_AddIntConstant(m, "NAME_MAX", KFM_NAME_MAX) < 0 ||
      PyModule_AddIntConstant(m, "STACK_MAX", KFM_STACK_MAX) < 0) {
    Py_DECREF(&kfmpy_SessionType);
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
