/*
 * test_trace_export.c - the Chrome trace (kfm_session_export_trace and
 * output_format=trace|both).  A real two-thread run is exported and read
 * back with a strict JSON parser (and Python's json module when python3
 * exists): span counts and durations match the report, spans nest on each
 * thread, names and counter tracks are there.  Then the event cap, lost
 * and unclosed activations, bad arguments and states, the automatic output
 * at stop, destroy and exit (and not in a fork child), and the new keys'
 * strict parsing.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h" /* kfm__trace_path */
#include "kfm_kernels.h"
#include "kfm_test.h"

static char dir[256];

/* ---- a strict JSON reader (RFC 8259), building a tree ------------------- */

enum jt { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
  enum jt t;
  int b;
  double num;
  char *str;
  size_t n;         /* J_ARR, J_OBJ: entries */
  struct jv *items; /* their values */
  char **keys;      /* J_OBJ: their keys */
};

struct jp {
  const char *p, *end;
  int depth;
};

static void jv_free(struct jv *v) {
  free(v->str);
  for (size_t i = 0; i < v->n; i++) {
    jv_free(&v->items[i]);
    if (v->keys) {
      free(v->keys[i]);
    }
  }
  free(v->items);
  free(v->keys);
  memset(v, 0, sizeof *v);
}

static void jp_ws(struct jp *j) {
  while (j->p < j->end && strchr(" \t\n\r", *j->p) && *j->p) {
    j->p++;
  }
}

static int jp_hex4(struct jp *j, unsigned *out) {
  unsigned x = 0;
  for (int i = 0; i < 4; i++) {
    if (j->p >= j->end) {
      return -1;
    }
    char c = *j->p++;
    x <<= 4;
    if (c >= '0' && c <= '9') {
      x |= (unsigned)(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      x |= (unsigned)(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      x |= (unsigned)(c - 'A' + 10);
    } else {
      return -1;
    }
  }
  *out = x;
  return 0;
}

/* A string into a malloc'd buffer: escapes decoded (\u to UTF-8), raw
 * control characters refused. */
static char *jp_string(struct jp *j) {
  if (j->p >= j->end || *j->p != '"') {
    return NULL;
  }
  j->p++;
  char *out = malloc((size_t)(j->end - j->p) * 2 + 1);
  size_t o = 0;
  while (out && j->p < j->end && *j->p != '"') {
    unsigned char c = (unsigned char)*j->p++;
    if (c < 0x20) {
      free(out);
      return NULL;
    }
    if (c != '\\') {
      out[o++] = (char)c;
      continue;
    }
    if (j->p >= j->end) {
      break;
    }
    char e = *j->p++;
    const char *simple = strchr("\"\\/bfnrt", e);
    if (simple && e) {
      out[o++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
      continue;
    }
    unsigned cp, lo;
    if (e != 'u' || jp_hex4(j, &cp) != 0) {
      free(out);
      return NULL;
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u') {
        free(out);
        return NULL;
      }
      j->p += 2;
      if (jp_hex4(j, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) {
        free(out);
        return NULL;
      }
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      free(out);
      return NULL;
    }
    if (cp < 0x80) {
      out[o++] = (char)cp;
    } else if (cp < 0x800) {
      out[o++] = (char)(0xC0 | cp >> 6);
      out[o++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out[o++] = (char)(0xE0 | cp >> 12);
      out[o++] = (char)(0x80 | (cp >> 6 & 0x3F));
      out[o++] = (char)(0x80 | (cp & 0x3F));
    } else {
      out[o++] = (char)(0xF0 | cp >> 18);
      out[o++] = (char)(0x80 | (cp >> 12 & 0x3F));
      out[o++] = (char)(0x80 | (cp >> 6 & 0x3F));
      out[o++] = (char)(0x80 | (cp & 0x3F));
    }
  }
  if (out == NULL || j->p >= j->end) {
    free(out);
    return NULL;
  }
  j->p++;
  out[o] = '\0';
  return out;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?: no NaN, Infinity, '+',
 * leading zero or bare '.'. */
static int jp_number(struct jp *j, double *out) {
  const char *s = j->p, *p = s;
  if (p < j->end && *p == '-') {
    p++;
  }
  if (p < j->end && *p == '0') {
    p++;
  } else if (p < j->end && *p >= '1' && *p <= '9') {
    while (p < j->end && *p >= '0' && *p <= '9') {
      p++;
    }
  } else {
    return -1;
  }
  if (p < j->end && *p == '.') {
    const char *d = ++p;
    while (p < j->end && *p >= '0' && *p <= '9') {
      p++;
    }
    if (p == d) {
      return -1;
    }
  }
  if (p < j->end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < j->end && (*p == '+' || *p == '-')) {
      p++;
    }
    const char *d = p;
    while (p < j->end && *p >= '0' && *p <= '9') {
      p++;
    }
    if (p == d) {
      return -1;
    }
  }
  char buf[64];
  if ((size_t)(p - s) >= sizeof buf) {
    return -1;
  }
  memcpy(buf, s, (size_t)(p - s));
  buf[p - s] = '\0';
  *out = strtod(buf, NULL);
  j->p = p;
  return isfinite(*out) ? 0 : -1;
}

static int jp_value(struct jp *j, struct jv *v);

/* An array or object: entries separated by ',', none after the last. */
static int jp_container(struct jp *j, struct jv *v, int obj) {
  v->t = obj ? J_OBJ : J_ARR;
  j->p++;
  jp_ws(j);
  if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
    j->p++;
    return 0;
  }
  size_t cap = 0;
  for (;;) {
    if (v->n == cap) {
      cap = cap ? 2 * cap : 8;
      v->items = realloc(v->items, cap * sizeof *v->items);
      if (obj) {
        v->keys = realloc(v->keys, cap * sizeof *v->keys);
      }
    }
    memset(&v->items[v->n], 0, sizeof *v->items);
    jp_ws(j);
    if (obj) {
      char *k = jp_string(j);
      if (k == NULL) {
        return -1;
      }
      for (size_t i = 0; i < v->n; i++) {
        if (strcmp(v->keys[i], k) == 0) { /* a duplicate key */
          free(k);
          return -1;
        }
      }
      v->keys[v->n] = k;
      jp_ws(j);
      if (j->p >= j->end || *j->p++ != ':') {
        v->items[v->n++].t = J_NULL;
        return -1;
      }
    }
    int rc = jp_value(j, &v->items[v->n]);
    v->n++;
    if (rc) {
      return -1;
    }
    jp_ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
      j->p++;
      return 0;
    }
    return -1;
  }
}

static int jp_value(struct jp *j, struct jv *v) {
  memset(v, 0, sizeof *v);
  if (++j->depth > 64) {
    return -1;
  }
  jp_ws(j);
  int rc = -1;
  size_t left = (size_t)(j->end - j->p);
  if (left == 0) {
    rc = -1;
  } else if (*j->p == '{' || *j->p == '[') {
    rc = jp_container(j, v, *j->p == '{');
  } else if (*j->p == '"') {
    v->t = J_STR;
    v->str = jp_string(j);
    rc = v->str ? 0 : -1;
  } else if (left >= 4 && strncmp(j->p, "true", 4) == 0) {
    v->t = J_BOOL, v->b = 1, j->p += 4, rc = 0;
  } else if (left >= 5 && strncmp(j->p, "false", 5) == 0) {
    v->t = J_BOOL, j->p += 5, rc = 0;
  } else if (left >= 4 && strncmp(j->p, "null", 4) == 0) {
    v->t = J_NULL, j->p += 4, rc = 0;
  } else {
    v->t = J_NUM;
    rc = jp_number(j, &v->num);
  }
  j->depth--;
  return rc;
}

/* The whole text as one value, nothing but white space after it. */
static int json_parse(const char *text, struct jv *out) {
  struct jp j = {.p = text, .end = text + strlen(text)};
  int rc = jp_value(&j, out);
  jp_ws(&j);
  if (rc == 0 && j.p != j.end) {
    rc = -1;
  }
  if (rc) {
    fprintf(stderr, "\nJSON error at byte %zu: '%.40s'\n", (size_t)(j.p - text), j.p);
    jv_free(out);
  }
  return rc;
}

static const struct jv *jget(const struct jv *o, const char *key) {
  for (size_t i = 0; o && o->t == J_OBJ && i < o->n; i++) {
    if (strcmp(o->keys[i], key) == 0) {
      return &o->items[i];
    }
  }
  return NULL;
}

static const char *jstr(const struct jv *o, const char *key) {
  const struct jv *v = jget(o, key);
  return v && v->t == J_STR ? v->str : NULL;
}

static double jnum(const struct jv *o, const char *key) {
  const struct jv *v = jget(o, key);
  return v && v->t == J_NUM ? v->num : NAN;
}

/* ---- reading a trace ------------------------------------------------------ */

struct trace {
  struct jv root;
  const struct jv *events; /* traceEvents */
  const struct jv *other;  /* otherData */
};

/* Parses path as a Chrome trace in the object form, written by process
 * pid; the test fails if it is not one. */
static void trace_load_pid(const char *path, struct trace *t, pid_t pid) {
  memset(t, 0, sizeof *t);
  char *text = kt_slurp(path);
  if (text == NULL) {
    fprintf(stderr, "\ncannot read %s\n", path);
  }
  CU_ASSERT_PTR_NOT_NULL_FATAL(text);
  int rc = json_parse(text, &t->root);
  free(text);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  t->events = jget(&t->root, "traceEvents");
  t->other = jget(&t->root, "otherData");
  CU_ASSERT_FATAL(t->events && t->events->t == J_ARR);
  CU_ASSERT_FATAL(t->other && t->other->t == J_OBJ);
  CU_ASSERT_STRING_EQUAL(jstr(&t->root, "displayTimeUnit"), "ns");
  /* Every event has a phase, a name and this process; timed ones a ts. */
  for (size_t i = 0; i < t->events->n; i++) {
    const struct jv *e = &t->events->items[i];
    const char *ph = jstr(e, "ph");
    CU_ASSERT_FATAL(ph != NULL && jstr(e, "name") != NULL);
    CU_ASSERT_EQUAL(jnum(e, "pid"), (double)pid);
    CU_ASSERT_FALSE(isnan(jnum(e, "tid")));
    if (strcmp(ph, "M") != 0) {
      CU_ASSERT_TRUE(jnum(e, "ts") >= 0);
    }
  }
}

static void trace_load(const char *path, struct trace *t) {
  trace_load_pid(path, t, getpid());
}

/* A time in the file (microseconds, 3 decimals) as integer nanoseconds. */
static long long us_ns(double us) {
  return llround(us * 1000.0);
}

static size_t count_ph(const struct trace *t, const char *ph, const char *name) {
  size_t n = 0;
  for (size_t i = 0; i < t->events->n; i++) {
    const struct jv *e = &t->events->items[i];
    n += strcmp(jstr(e, "ph"), ph) == 0 && (name == NULL || strcmp(jstr(e, "name"), name) == 0);
  }
  return n;
}

/* The "X" event named name (the first one), or NULL. */
static const struct jv *find_x(const struct trace *t, const char *name) {
  for (size_t i = 0; i < t->events->n; i++) {
    const struct jv *e = &t->events->items[i];
    if (strcmp(jstr(e, "ph"), "X") == 0 && strcmp(jstr(e, "name"), name) == 0) {
      return e;
    }
  }
  return NULL;
}

/* The metadata event what ("thread_name", ...) of tid, or NULL. */
static const struct jv *find_meta(const struct trace *t, const char *what, double tid) {
  for (size_t i = 0; i < t->events->n; i++) {
    const struct jv *e = &t->events->items[i];
    if (strcmp(jstr(e, "ph"), "M") == 0 && strcmp(jstr(e, "name"), what) == 0 &&
        jnum(e, "tid") == tid) {
      return e;
    }
  }
  return NULL;
}

struct span {
  double tid;
  long long t0, t1;
  const char *name;
};

static int span_cmp(const void *x, const void *y) {
  const struct span *a = x, *b = y;
  if (a->tid != b->tid) {
    return a->tid < b->tid ? -1 : 1;
  }
  if (a->t0 != b->t0) {
    return a->t0 < b->t0 ? -1 : 1;
  }
  return a->t1 > b->t1 ? -1 : a->t1 < b->t1; /* the enclosing one first */
}

/* Checks that the X events of each thread nest (each one ends within the
 * innermost one still open when it starts); with child/parent set, that
 * every child span lies in a parent span.  Returns the violations. */
static int check_nesting(const struct trace *t, const char *child, const char *parent) {
  size_t n = 0;
  struct span *sp = calloc(t->events->n + 1, sizeof *sp);
  for (size_t i = 0; i < t->events->n; i++) {
    const struct jv *e = &t->events->items[i];
    if (strcmp(jstr(e, "ph"), "X") == 0) {
      long long t0 = us_ns(jnum(e, "ts"));
      sp[n++] = (struct span){jnum(e, "tid"), t0, t0 + us_ns(jnum(e, "dur")), jstr(e, "name")};
    }
  }
  qsort(sp, n, sizeof *sp, span_cmp);
  struct span **stack = calloc(n + 1, sizeof *stack);
  size_t depth = 0;
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    if (depth && stack[depth - 1]->tid != sp[i].tid) {
      depth = 0;
    }
    while (depth && stack[depth - 1]->t1 <= sp[i].t0) {
      depth--;
    }
    if (depth && sp[i].t1 > stack[depth - 1]->t1) {
      fprintf(stderr, "\n'%s' [%lld, %lld] overlaps '%s' [%lld, %lld] on tid %.0f\n", sp[i].name,
              sp[i].t0, sp[i].t1, stack[depth - 1]->name, stack[depth - 1]->t0,
              stack[depth - 1]->t1, sp[i].tid);
      bad++;
    }
    if (child && strcmp(sp[i].name, child) == 0 &&
        (depth == 0 || strcmp(stack[depth - 1]->name, parent) != 0)) {
      fprintf(stderr, "\n'%s' at %lld is not inside '%s'\n", child, sp[i].t0, parent);
      bad++;
    }
    stack[depth++] = &sp[i];
  }
  free(stack);
  free(sp);
  return bad;
}

/* Python's json module, strict: NaN and Infinity refused, bytes decoded as
 * UTF-8.  Without python3 the C reader above is the check. */
static void python_check(const char *path) {
  if (system("command -v python3 >/dev/null 2>&1") != 0) {
    fprintf(stderr, "\npython3 not found: Python's check of %s skipped\n", path);
    return;
  }
  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           "python3 -c 'import json,sys\n"
           "def bad(c): sys.exit(\"non-JSON constant \" + c)\n"
           "d = json.load(open(sys.argv[1], \"rb\"), parse_constant=bad)\n"
           "assert isinstance(d[\"traceEvents\"], list) and d[\"displayTimeUnit\"] == \"ns\"\n"
           "assert all(e[\"ph\"] in \"XCMi\" for e in d[\"traceEvents\"])\n"
           "assert isinstance(d[\"otherData\"][\"dropped_events\"], int)' '%s'",
           path);
  CU_ASSERT_EQUAL(system(cmd), 0);
}

static void path_in_dir(char *out, size_t size, const char *name) {
  snprintf(out, size, "%s/%s", dir, name);
}

/* Stops s, writes its trace to <dir>/<name> (path, of size 300, says
 * where), destroys s and reads the trace back into t. */
static void finish(kfm_session_t *s, const char *name, char *path, struct trace *t) {
  KT_OK(s, kfm_session_stop(s));
  path_in_dir(path, 300, name);
  KT_OK(s, kfm_session_export_trace(s, path));
  kfm_session_destroy(s);
  trace_load(path, t);
}

/* ---- the run: two threads, nested nodes ----------------------------------- */

#define OUTER_TIMES 3
#define INNER_TIMES 2

struct worker {
  kfm_session_t *s;
  kfm_node_id_t outer, inner;
  pthread_barrier_t *both;
  pid_t tid;
  int rc;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  w->tid = (pid_t)syscall(SYS_gettid);
  for (int i = 0; i < OUTER_TIMES && w->rc == 0; i++) {
    w->rc = kfm_enter(w->s, w->outer);
    if (i == 0) {
      /* Both threads hold a slot at once: two engine threads, not one reused. */
      pthread_barrier_wait(w->both);
    }
    for (int k = 0; k < INNER_TIMES && w->rc == 0; k++) {
      w->rc = kfm_enter(w->s, w->inner);
      kfmk_busy_ms(2);
      w->rc = w->rc ? w->rc : kfm_exit(w->s, w->inner);
    }
    kfmk_busy_ms(1);
    w->rc = w->rc ? w->rc : kfm_exit(w->s, w->outer);
  }
  return NULL;
}

/* Runs two workers on s (started), then stops it. */
static void run_two_threads(kfm_session_t *s, struct worker w[2]) {
  pthread_barrier_t both;
  pthread_barrier_init(&both, NULL, 2);
  kfm_node_id_t outer, inner;
  KT_OK(s, kfm_node_register(s, "outer", &outer));
  KT_OK(s, kfm_node_register(s, "inner", &inner));
  KT_OK(s, kfm_session_start(s));
  pthread_t th[2];
  for (int i = 0; i < 2; i++) {
    w[i] = (struct worker){.s = s, .outer = outer, .inner = inner, .both = &both};
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
  }
  for (int i = 0; i < 2; i++) {
    pthread_join(th[i], NULL);
    CU_ASSERT_EQUAL(w[i].rc, 0);
  }
  pthread_barrier_destroy(&both);
  kfmk_sleep_ms(15); /* a few more samples after the threads */
  KT_OK(s, kfm_session_stop(s));
}

static void test_two_threads(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=standard,trace=on,rate=200"));
  struct worker w[2];
  run_two_threads(s, w);
  char path[300];
  path_in_dir(path, sizeof path, "two.trace.json");
  KT_OK(s, kfm_session_export_trace(s, path));
  kfm_report_t *r;
  KT_OK(s, kfm_session_report(s, &r));
  kfm_summary_t sum;
  kfm_report_summary(r, &sum);

  struct trace t;
  trace_load(path, &t);
  /* One X per completed activation, as many as the report counts. */
  const char *names[] = {"outer", "inner"};
  const uint64_t want[] = {2 * OUTER_TIMES, 2 * OUTER_TIMES * INNER_TIMES};
  for (int k = 0; k < 2; k++) {
    kfm_node_stats_t n;
    KT_OK(s, kfm_report_node_by_name(r, names[k], &n));
    CU_ASSERT_EQUAL(n.count, want[k]);
    CU_ASSERT_EQUAL(count_ph(&t, "X", names[k]), n.count);
    /* Durations add up to the report's total, within 1 us a span. */
    long long total = 0;
    for (size_t i = 0; i < t.events->n; i++) {
      const struct jv *e = &t.events->items[i];
      if (strcmp(jstr(e, "ph"), "X") == 0 && strcmp(jstr(e, "name"), names[k]) == 0) {
        total += us_ns(jnum(e, "dur"));
        CU_ASSERT_PTR_NULL(jget(jget(e, "args"), "unclosed"));
      }
    }
    if (fabs((double)total - n.total_ns) > 1000.0 * (double)n.count) {
      fprintf(stderr, "\n%s: spans sum to %lld ns, the report says %.0f ns\n", names[k], total,
              n.total_ns);
    }
    CU_ASSERT_TRUE(fabs((double)total - n.total_ns) <= 1000.0 * (double)n.count);
  }
  CU_ASSERT_EQUAL(count_ph(&t, "X", NULL), 2 * OUTER_TIMES * (1 + INNER_TIMES));
  CU_ASSERT_EQUAL(check_nesting(&t, "inner", "outer"), 0);

  /* Spans are on the OS thread ids, each thread named and ordered. */
  const struct jv *pn = find_meta(&t, "process_name", getpid());
  CU_ASSERT_PTR_NOT_NULL_FATAL(pn);
  CU_ASSERT_STRING_EQUAL(jstr(jget(pn, "args"), "name"), "kfm: test_trace_export");
  CU_ASSERT_PTR_NOT_NULL(find_meta(&t, "process_sort_index", getpid()));
  const char *tname[2] = {NULL, NULL};
  for (int i = 0; i < 2; i++) {
    size_t on_tid = 0;
    for (size_t k = 0; k < t.events->n; k++) {
      const struct jv *e = &t.events->items[k];
      on_tid += strcmp(jstr(e, "ph"), "X") == 0 && jnum(e, "tid") == (double)w[i].tid;
    }
    CU_ASSERT_EQUAL(on_tid, OUTER_TIMES * (1 + INNER_TIMES));
    const struct jv *tn = find_meta(&t, "thread_name", w[i].tid);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tn);
    tname[i] = jstr(jget(tn, "args"), "name");
    CU_ASSERT_PTR_NOT_NULL_FATAL(tname[i]);
    CU_ASSERT_EQUAL(strncmp(tname[i], "thread ", 7), 0);
    CU_ASSERT_PTR_NOT_NULL(find_meta(&t, "thread_sort_index", w[i].tid));
  }
  CU_ASSERT_STRING_NOT_EQUAL(tname[0], tname[1]);

  /* The report names the same OS thread for each engine thread index as
   * the trace: every event of "outer" is on a thread whose id is a worker's. */
  size_t on_worker = 0;
  for (size_t i = 0; i < kfm_report_event_count(r); i++) {
    kfm_event_t e;
    KT_OK(s, kfm_report_event(r, i, &e));
    int32_t tid = -1;
    KT_OK(s, kfm_report_thread_tid(r, e.thread, &tid));
    on_worker += tid == (int32_t)w[0].tid || tid == (int32_t)w[1].tid;
  }
  CU_ASSERT_EQUAL(on_worker, kfm_report_event_count(r));
  int32_t tid;
  CU_ASSERT_EQUAL(kfm_report_thread_tid(r, sum.threads + 100, &tid), KFM_ERANGE);
  CU_ASSERT_EQUAL(kfm_report_thread_tid(r, 0, NULL), KFM_EINVAL);
  CU_ASSERT_EQUAL(kfm_report_thread_tid(NULL, 0, &tid), KFM_EINVAL);

  /* RSS as a counter track, in MB, sampled at least twice. */
  size_t nrss = 0;
  double last = NAN;
  for (size_t k = 0; k < t.events->n; k++) {
    const struct jv *e = &t.events->items[k];
    if (strcmp(jstr(e, "ph"), "C") == 0 && strcmp(jstr(e, "name"), "proc.rss (MB)") == 0) {
      nrss++;
      last = jnum(jget(e, "args"), "value");
    }
  }
  CU_ASSERT_TRUE(nrss >= 2);
  KT_NEAR(last * 1024 * 1024, kt_rss(), 0.5);

  /* What the run was, and that nothing was lost. */
  const struct jv *o = t.other;
  CU_ASSERT_STRING_EQUAL(jstr(o, "kfm_version"), KFM_VERSION_STRING);
  CU_ASSERT_STRING_EQUAL(jstr(o, "level"), "standard");
  CU_ASSERT_STRING_EQUAL(jstr(o, "clock"), sum.clock);
  CU_ASSERT_EQUAL(jnum(o, "dropped_events"), 0);
  CU_ASSERT_EQUAL(jnum(o, "events_dropped_by_engine"), 0);
  CU_ASSERT_EQUAL(jnum(o, "unmatched_exits"), 0);
  CU_ASSERT_EQUAL(jnum(o, "unclosed_spans"), 0);
  CU_ASSERT_EQUAL(jget(o, "truncated")->t, J_NULL);
  kfm_config_t cfg;
  kfm_config_init(&cfg);
  char err[400];
  CU_ASSERT_EQUAL(kfm_config_parse(&cfg, jstr(o, "config"), err, sizeof err), 0);
  CU_ASSERT_EQUAL(cfg.level, KFM_LEVEL_STANDARD);
  CU_ASSERT_EQUAL(cfg.rate_hz, 200);
  CU_ASSERT_EQUAL(cfg.trace, 1);
  CU_ASSERT_EQUAL(cfg.trace_max_events, 1000000);
  jv_free(&t.root);
  kfm_report_free(r);
  kfm_session_destroy(s);
  python_check(path);
}

/* DETAILED: spans carry each transition metric's change, and a counter
 * sampled as a running total (process CPU) is a rate track. */
static void test_detailed_metrics(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=detailed,rate=500"));
  KT_OK(s, kfm_session_start(s));
  struct timespec c0, c1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
  KT_OK(s, kfm_enter_name(s, "work"));
  kfmk_busy_ms(30);
  KT_OK(s, kfm_exit_name(s, "work"));
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
  char path[300];
  struct trace t;
  finish(s, "detailed.trace.json", path, &t);
  const struct jv *x = find_x(&t, "work");
  CU_ASSERT_PTR_NOT_NULL_FATAL(x);
  double cpu = jnum(jget(x, "args"), "proc.cpu_user (ns)") +
               jnum(jget(x, "args"), "proc.cpu_sys (ns)");
  /* The span's CPU is the thread's own CPU time over it (not the 30 ms of
   * wall time the spin lasts: a loaded machine gives it less), within the
   * kernel's accounting tick (10 ms at worst) either side. */
  double truth = (double)(c1.tv_sec - c0.tv_sec) * 1e9 + (double)(c1.tv_nsec - c0.tv_nsec);
  CU_ASSERT_TRUE(cpu >= truth - 10e6 && cpu <= truth + 10e6);
  CU_ASSERT_TRUE(truth > 0);
  CU_ASSERT_FALSE(isnan(jnum(jget(x, "args"), "proc.rss (bytes)")));
  size_t ncpu = 0;
  for (size_t k = 0; k < t.events->n; k++) {
    const struct jv *e = &t.events->items[k];
    if (strcmp(jstr(e, "ph"), "C") == 0 && strcmp(jstr(e, "name"), "proc.cpu (cores)") == 0) {
      double v = jnum(jget(e, "args"), "value");
      CU_ASSERT_TRUE(v >= 0 && v <= (double)sysconf(_SC_NPROCESSORS_ONLN) + 1);
      ncpu++;
    }
  }
  CU_ASSERT_TRUE(ncpu >= 2);
  CU_ASSERT_TRUE(count_ph(&t, "C", "proc.rss (MB)") >= 2);
  jv_free(&t.root);
  python_check(path);
}

/* ---- a backend's own lanes (GPU activity) --------------------------------- */

/* What a GPU backend hands the trace: on "GPU 0", two kernels of node gid
 * that overlap (two streams) and a later one; on "GPU 1" a copy no node
 * launched. */
static kfm_node_id_t gpu_node;

static void gpu_spans(void *state, void (*add)(void *ctx, const struct kfm__trace_span *sp),
                      void *ctx) {
  (void)state;
  const struct kfm__trace_span sp[] = {
      {.lane = "GPU 0 (test)", .name = "gemm", .kind = "kernel", .t0_ns = 1000000,
       .t1_ns = 4000000, .node = gpu_node},
      {.lane = "GPU 0 (test)", .name = "relu", .kind = "kernel", .t0_ns = 2000000,
       .t1_ns = 3000000, .node = gpu_node},
      {.lane = "GPU 0 (test)", .name = "softmax", .kind = "kernel", .t0_ns = 5000000,
       .t1_ns = 5500000, .node = gpu_node},
      {.lane = "GPU 1 (test)", .name = NULL, .kind = "memcpy_d2h", .t0_ns = 6000000,
       .t1_ns = 6250000, .node = KFM_NODE_ROOT, .bytes = 4096},
  };
  for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++) {
    add(ctx, &sp[i]);
  }
}

static const struct kfm__backend gpu_backend = {
    .abi = KFM_BACKEND_ABI,
    .name = "test-gpu",
    .trace_spans = gpu_spans,
};

static void test_backend_lanes(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,trace=on,rate=off"));
  CU_ASSERT_FATAL(s->nbackends < KFM__MAX_BACKENDS);
  s->be[s->nbackends++] = (struct kfm__backend_use){.ops = &gpu_backend};
  KT_OK(s, kfm_node_register(s, "train", &gpu_node));
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter(s, gpu_node));
  KT_OK(s, kfm_exit(s, gpu_node));
  char path[300];
  struct trace t;
  finish(s, "gpu.trace.json", path, &t);
  /* Lanes: the first kernel's, the overlapping one's next to it, then GPU 1. */
  const char *want[][2] = {{"gemm", "GPU 0 (test)"}, {"relu", "GPU 0 (test) #2"},
                           {"softmax", "GPU 0 (test)"}, {"memcpy_d2h", "GPU 1 (test)"}};
  for (size_t i = 0; i < 4; i++) {
    const struct jv *e = find_x(&t, want[i][0]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_STRING_EQUAL(jstr(e, "cat"), "gpu");
    const struct jv *ln = find_meta(&t, "thread_name", jnum(e, "tid"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(ln);
    CU_ASSERT_STRING_EQUAL(jstr(jget(ln, "args"), "name"), want[i][1]);
    CU_ASSERT_PTR_NOT_NULL(find_meta(&t, "thread_sort_index", jnum(e, "tid")));
    CU_ASSERT_STRING_EQUAL(jstr(jget(e, "args"), "node"), i < 3 ? "train" : "unattributed");
  }
  const struct jv *g = find_x(&t, "gemm");
  CU_ASSERT_EQUAL(us_ns(jnum(g, "ts")), 1000000);
  CU_ASSERT_EQUAL(us_ns(jnum(g, "dur")), 3000000);
  CU_ASSERT_EQUAL(jnum(jget(find_x(&t, "memcpy_d2h"), "args"), "bytes"), 4096);
  CU_ASSERT_STRING_EQUAL(jstr(jget(find_x(&t, "memcpy_d2h"), "args"), "kind"), "memcpy_d2h");
  CU_ASSERT_EQUAL(count_ph(&t, "X", "train"), 1);
  jv_free(&t.root);
  python_check(path);
}

/* ---- the cap ------------------------------------------------------------- */

static void test_cap(void) {
  /* No sampler: the 25 spans are all the events there are. */
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,trace=on,rate=off,trace_max_events=10"));
  KT_OK(s, kfm_session_start(s));
  for (int i = 0; i < 25; i++) {
    KT_OK(s, kfm_enter_name(s, "p"));
    KT_OK(s, kfm_exit_name(s, "p"));
  }
  char path[300];
  struct trace t;
  finish(s, "cap.trace.json", path, &t);
  CU_ASSERT_EQUAL(count_ph(&t, "X", "p"), 10);
  CU_ASSERT_EQUAL(jnum(t.other, "dropped_events"), 15);
  CU_ASSERT_EQUAL(jnum(t.other, "events_written"), 10);
  CU_ASSERT_EQUAL(jnum(t.other, "trace_max_events"), 10);
  CU_ASSERT_EQUAL(jnum(t.other, "events_dropped_by_engine"), 0);
  /* The earliest ten, then one instant event, last, where the cut is. */
  CU_ASSERT_EQUAL_FATAL(count_ph(&t, "i", NULL), 1);
  const struct jv *mark = &t.events->items[t.events->n - 1];
  CU_ASSERT_STRING_EQUAL(jstr(mark, "ph"), "i");
  CU_ASSERT_PTR_NOT_NULL(strstr(jstr(mark, "name"), "15 events dropped"));
  CU_ASSERT_EQUAL(jnum(jget(mark, "args"), "dropped_events"), 15);
  for (size_t k = 0; k + 1 < t.events->n; k++) {
    const struct jv *e = &t.events->items[k];
    if (strcmp(jstr(e, "ph"), "X") == 0) {
      CU_ASSERT_TRUE(jnum(e, "ts") < jnum(mark, "ts"));
    }
  }
  jv_free(&t.root);
  python_check(path);

  /* With a sampler the cap counts spans and counter values together. */
  KT_OK(NULL, kfm_session_create_str(&s, "level=standard,trace=on,rate=1000,trace_max_events=10"));
  KT_OK(s, kfm_session_start(s));
  for (int i = 0; i < 10; i++) {
    KT_OK(s, kfm_enter_name(s, "q"));
    kfmk_busy_ms(2);
    KT_OK(s, kfm_exit_name(s, "q"));
  }
  finish(s, "cap2.trace.json", path, &t);
  CU_ASSERT_EQUAL(count_ph(&t, "X", NULL) + count_ph(&t, "C", NULL), 10);
  CU_ASSERT_TRUE(count_ph(&t, "C", NULL) >= 1);
  CU_ASSERT_TRUE(jnum(t.other, "dropped_events") >= 1);
  CU_ASSERT_EQUAL(count_ph(&t, "i", NULL), 1);
  jv_free(&t.root);
}

/* ---- lost and unclosed activations ----------------------------------------- */

static void test_unclosed_at_stop(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,trace=on,rate=off"));
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter_name(s, "open"));
  KT_OK(s, kfm_enter_name(s, "done"));
  kfmk_busy_ms(1);
  KT_OK(s, kfm_exit_name(s, "done"));
  char path[300];
  struct trace t;
  finish(s, "open.trace.json", path, &t);
  const struct jv *open = find_x(&t, "open"), *done = find_x(&t, "done");
  CU_ASSERT_PTR_NOT_NULL_FATAL(open);
  CU_ASSERT_PTR_NOT_NULL_FATAL(done);
  CU_ASSERT_EQUAL(jget(jget(open, "args"), "unclosed")->t, J_BOOL);
  CU_ASSERT_PTR_NULL(jget(jget(done, "args"), "unclosed"));
  /* Closed at the end of the trace: the stop. */
  CU_ASSERT_EQUAL(us_ns(jnum(open, "ts")) + us_ns(jnum(open, "dur")),
                  (long long)jnum(t.other, "wall_ns"));
  CU_ASSERT_EQUAL(jnum(t.other, "unclosed_spans"), 1);
  CU_ASSERT_EQUAL(check_nesting(&t, "done", "open"), 0);
  jv_free(&t.root);
}

static void test_lost_events(void) {
  /* A 16-event ring and no sampler: nothing drains it until the report. */
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,trace=on,rate=off,trace_ring=16"));
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter_name(s, "A")); /* 1 event in the ring */
  for (int i = 0; i < 7; i++) {     /* 15 */
    KT_OK(s, kfm_enter_name(s, "F"));
    KT_OK(s, kfm_exit_name(s, "F"));
  }
  KT_OK(s, kfm_enter_name(s, "B")); /* 16: full */
  KT_OK(s, kfm_exit_name(s, "B"));  /* lost: B's exit */
  KT_OK(s, kfm_enter_name(s, "C")); /* lost: C's enter */
  kfm_report_t *r;
  KT_OK(s, kfm_session_report(s, &r)); /* drains the ring */
  kfm_report_free(r);
  KT_OK(s, kfm_exit_name(s, "C")); /* an exit without its enter */
  KT_OK(s, kfm_exit_name(s, "A"));
  char path[300];
  struct trace t;
  finish(s, "lost.trace.json", path, &t);
  CU_ASSERT_EQUAL(jnum(t.other, "events_dropped_by_engine"), 2);
  CU_ASSERT_EQUAL(jnum(t.other, "unmatched_exits"), 1);
  CU_ASSERT_EQUAL(jnum(t.other, "unclosed_spans"), 1);
  CU_ASSERT_EQUAL(count_ph(&t, "X", "F"), 7);
  CU_ASSERT_EQUAL(count_ph(&t, "X", "C"), 0);
  const struct jv *a = find_x(&t, "A"), *b = find_x(&t, "B");
  CU_ASSERT_PTR_NOT_NULL_FATAL(a);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_PTR_NULL(jget(jget(a, "args"), "unclosed"));
  CU_ASSERT_PTR_NOT_NULL(jget(jget(b, "args"), "unclosed"));
  /* B lost its exit but A's was recorded: B ends with A, inside it. */
  CU_ASSERT_EQUAL(us_ns(jnum(b, "ts")) + us_ns(jnum(b, "dur")),
                  us_ns(jnum(a, "ts")) + us_ns(jnum(a, "dur")));
  CU_ASSERT_EQUAL(check_nesting(&t, "B", "A"), 0);
  jv_free(&t.root);
  python_check(path);
}

/* ---- errors and states --------------------------------------------------- */

static void test_errors(void) {
  CU_ASSERT_EQUAL(kfm_session_export_trace(NULL, "/tmp/x.json"), KFM_EINVAL);
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=basic,trace=on,rate=off"));
  CU_ASSERT_EQUAL(kfm_session_export_trace(s, NULL), KFM_EINVAL);
  CU_ASSERT_EQUAL(kfm_session_export_trace(s, ""), KFM_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "empty path"));

  /* Created, never started: a trace with names and no span. */
  char path[300];
  path_in_dir(path, sizeof path, "states.trace.json");
  KT_OK(s, kfm_session_export_trace(s, path));
  struct trace t;
  trace_load(path, &t);
  CU_ASSERT_EQUAL(count_ph(&t, "X", NULL), 0);
  CU_ASSERT_PTR_NOT_NULL(find_meta(&t, "process_name", getpid()));
  jv_free(&t.root);

  /* Running, inside a node: the snapshot closes it at its end, unclosed. */
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter_name(s, "running"));
  KT_OK(s, kfm_session_export_trace(s, path));
  trace_load(path, &t);
  const struct jv *x = find_x(&t, "running");
  CU_ASSERT_PTR_NOT_NULL_FATAL(x);
  CU_ASSERT_PTR_NOT_NULL(jget(jget(x, "args"), "unclosed"));
  jv_free(&t.root);
  KT_OK(s, kfm_exit_name(s, "running"));
  KT_OK(s, kfm_session_stop(s));

  /* Unwritable targets: KFM_EIO naming the path; an earlier file survives. */
  CU_ASSERT_EQUAL(kfm_session_export_trace(s, "/nonexistent-kfm-dir/t.json"), KFM_EIO);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "'/nonexistent-kfm-dir/t.json'"));
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "No such file"));
  char keep[320], sub[300];
  path_in_dir(sub, sizeof sub, "ro");
  CU_ASSERT_EQUAL_FATAL(mkdir(sub, 0755), 0);
  snprintf(keep, sizeof keep, "%s/keep.json", sub);
  FILE *f = fopen(keep, "w");
  fputs("{\"old\":true}\n", f);
  fclose(f);
  if (geteuid() != 0) { /* root ignores directory permissions */
    chmod(sub, 0555);
    CU_ASSERT_EQUAL(kfm_session_export_trace(s, keep), KFM_EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), keep));
    chmod(sub, 0755);
    char *txt = kt_slurp(keep);
    CU_ASSERT_STRING_EQUAL(txt, "{\"old\":true}\n");
    free(txt);
  }
  KT_OK(s, kfm_session_export_trace(s, keep));
  trace_load(keep, &t);
  jv_free(&t.root);

  /* A device and a FIFO are written in place and stay what they are. */
  KT_OK(s, kfm_session_export_trace(s, "/dev/null"));
  struct stat st;
  CU_ASSERT_TRUE(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
  char fifo[300];
  path_in_dir(fifo, sizeof fifo, "fifo");
  CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0600), 0);
  int rd = open(fifo, O_RDONLY | O_NONBLOCK);
  CU_ASSERT_FATAL(rd >= 0);
  KT_OK(s, kfm_session_export_trace(s, fifo)); /* a small trace: fits in the pipe */
  char buf[65536];
  ssize_t n = read(rd, buf, sizeof buf - 1);
  close(rd);
  CU_ASSERT_TRUE_FATAL(n > 0);
  buf[n] = '\0';
  struct jv v;
  CU_ASSERT_EQUAL(json_parse(buf, &v), 0);
  CU_ASSERT_PTR_NOT_NULL(jget(&v, "traceEvents"));
  jv_free(&v);
  CU_ASSERT_TRUE(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
  kfm_session_destroy(s);
}

/* ---- output_format ----------------------------------------------------------- */

static int starts_with_file(const char *path, const char *prefix) {
  char *txt = kt_slurp(path);
  int ok = txt && strncmp(txt, prefix, strlen(prefix)) == 0;
  free(txt);
  return ok;
}

#define TRACE_START "{\"traceEvents\":["
#define JSON_START "{\"schema\":\"kfm.profile\""

static kfm_session_t *with_output(const char *name, const char *format) {
  char path[300], cfg[600];
  path_in_dir(path, sizeof path, name);
  snprintf(cfg, sizeof cfg, "level=basic,trace=on,rate=off,output=\"%s\"%s%s", path,
           format ? ",output_format=" : "", format ? format : "");
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, cfg));
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter_name(s, "n"));
  KT_OK(s, kfm_exit_name(s, "n"));
  return s;
}

static int exists(const char *name) {
  char path[300];
  struct stat st;
  path_in_dir(path, sizeof path, name);
  return stat(path, &st) == 0;
}

static void test_output_format(void) {
  /* json (the default): today's export alone; trace: the trace instead;
   * both: the JSON at output=, the trace next to it. */
  static const struct {
    const char *out, *format, *start, *beside;
  } cases[] = {
      {"default.json", NULL, JSON_START, NULL},
      {"t.json", "trace", TRACE_START, NULL},
      {"b.json", "both", JSON_START, "b.trace.json"},
  };
  char path[300];
  struct trace t;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kfm_session_t *s = with_output(cases[i].out, cases[i].format);
    KT_OK(s, kfm_session_stop(s));
    kfm_session_destroy(s);
    path_in_dir(path, sizeof path, cases[i].out);
    CU_ASSERT_TRUE(starts_with_file(path, cases[i].start));
    char beside[320];
    CU_ASSERT_EQUAL_FATAL(kfm__trace_path(path, beside, sizeof beside), 0);
    if (cases[i].beside == NULL) {
      CU_ASSERT_FALSE(exists(strrchr(beside, '/') + 1));
      continue;
    }
    CU_ASSERT_STRING_EQUAL(strrchr(beside, '/') + 1, cases[i].beside);
    trace_load(beside, &t);
    CU_ASSERT_EQUAL(count_ph(&t, "X", "n"), 1);
    jv_free(&t.root);
    python_check(beside);
  }

  /* Chosen through KFM_CONFIG, for programs that cannot be rebuilt. */
  char env[400];
  path_in_dir(path, sizeof path, "env.json");
  snprintf(env, sizeof env, "level=basic,trace=on,rate=off,output_format=trace,output=%s", path);
  setenv("KFM_CONFIG", env, 1);
  kfm_session_t *s = NULL;
  int rc = kfm_session_create(&s, NULL);
  unsetenv("KFM_CONFIG");
  KT_OK(NULL, rc);
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter_name(s, "n"));
  KT_OK(s, kfm_exit_name(s, "n"));
  KT_OK(s, kfm_session_stop(s));
  kfm_session_destroy(s);
  CU_ASSERT_TRUE(starts_with_file(path, TRACE_START));

  /* both at destroy, no extension, a node still open: both files, both
   * marked truncated. */
  s = with_output("noext", "both");
  KT_OK(s, kfm_enter_name(s, "left_open"));
  kfm_session_destroy(s);
  path_in_dir(path, sizeof path, "noext");
  CU_ASSERT_TRUE(starts_with_file(path, JSON_START));
  path_in_dir(path, sizeof path, "noext.trace.json");
  trace_load(path, &t);
  CU_ASSERT_STRING_EQUAL(jstr(t.other, "truncated"), "kfm_session_destroy with nodes still open");
  const struct jv *x = find_x(&t, "left_open");
  CU_ASSERT_PTR_NOT_NULL(x && jget(jget(x, "args"), "unclosed"));
  jv_free(&t.root);

  /* both, the trace's target unwritable: the JSON is still written, and
   * stop fails naming the trace's path. */
  path_in_dir(path, sizeof path, "blocked.trace.json");
  CU_ASSERT_EQUAL_FATAL(mkdir(path, 0755), 0);
  s = with_output("blocked.json", "both");
  CU_ASSERT_EQUAL(kfm_session_stop(s), KFM_EIO);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "blocked.trace.json"));
  kfm_session_destroy(s);
  path_in_dir(path, sizeof path, "blocked.json");
  CU_ASSERT_TRUE(starts_with_file(path, JSON_START));
}

/* At exit() without a stop (the exit flush), in a child process; and a
 * fork child's inherited copy writes nothing at its stop. */
static void test_output_at_exit_and_fork(void) {
  char path[300], cfg[600];
  path_in_dir(path, sizeof path, "atexit.json");
  snprintf(cfg, sizeof cfg, "level=basic,trace=on,rate=off,output_format=both,output=%s", path);
  pid_t pid = fork();
  CU_ASSERT_FATAL(pid >= 0);
  if (pid == 0) {
    kfm_session_t *s = NULL;
    if (kfm_session_create_str(&s, cfg) != 0 || kfm_session_start(s) != 0 ||
        kfm_enter_name(s, "x") != 0 || kfm_exit_name(s, "x") != 0) {
      _exit(3);
    }
    exit(0); /* no stop: the exit flush writes both files */
  }
  int st = kt_wait(pid);
  CU_ASSERT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CU_ASSERT_TRUE(starts_with_file(path, JSON_START));
  path_in_dir(path, sizeof path, "atexit.trace.json");
  struct trace t;
  trace_load_pid(path, &t, pid);
  CU_ASSERT_EQUAL(count_ph(&t, "X", "x"), 1);
  CU_ASSERT_STRING_EQUAL(jstr(t.other, "truncated"), "exit() before kfm_session_stop");
  jv_free(&t.root);

  kfm_session_t *s = with_output("forked.json", "trace");
  pid = fork();
  CU_ASSERT_FATAL(pid >= 0);
  if (pid == 0) {
    kfm_session_stop(s);
    kfm_session_destroy(s);
    _exit(exists("forked.json") ? 4 : 0);
  }
  st = kt_wait(pid);
  CU_ASSERT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CU_ASSERT_FALSE(exists("forked.json"));
  KT_OK(s, kfm_session_stop(s));
  kfm_session_destroy(s);
  path_in_dir(path, sizeof path, "forked.json");
  CU_ASSERT_TRUE(starts_with_file(path, TRACE_START));
}

/* ---- configuration ------------------------------------------------------------ */

/* key=value refused with KFM_EBADVALUE and a message holding each of want. */
static void bad_value(const char *str, const char *want1, const char *want2) {
  kfm_config_t cfg;
  kfm_config_init(&cfg);
  char err[600];
  int rc = kfm_config_parse(&cfg, str, err, sizeof err);
  if (rc != KFM_EBADVALUE || !strstr(err, want1) || !strstr(err, want2)) {
    fprintf(stderr, "\n'%s' -> %s '%s', want KFM_EBADVALUE with '%s' and '%s'\n", str,
            kfm_err_name(rc), err, want1, want2);
  }
  CU_ASSERT_EQUAL(rc, KFM_EBADVALUE);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, want1));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, want2));
}

static void test_config_keys(void) {
  kfm_config_t cfg;
  kfm_config_init(&cfg);
  CU_ASSERT_EQUAL(cfg.output_format, KFM_OUTPUT_JSON);
  CU_ASSERT_EQUAL(kfm_config_parse(&cfg, "output_format= both ,trace_max_events=10", NULL, 0), 0);
  CU_ASSERT_EQUAL(cfg.output_format, KFM_OUTPUT_BOTH);
  CU_ASSERT_EQUAL(cfg.trace_max_events, 10);
  CU_ASSERT_EQUAL(kfm_config_parse(&cfg, "output_format=trace", NULL, 0), 0);
  CU_ASSERT_EQUAL(cfg.output_format, KFM_OUTPUT_TRACE);

  bad_value("output_format=chrome", "output_format: bad value 'chrome'", "json, trace, both");
  bad_value("output_format=JSON", "'JSON'", "json, trace, both");
  bad_value("output_format=", "''", "json, trace, both");
  bad_value("trace_max_events=0", "trace_max_events: bad value '0'", "1 to 1073741824");
  bad_value("trace_max_events=1073741825", "'1073741825'", "1 to 1073741824");
  bad_value("trace_max_events=-5", "'-5'", "1 to 1073741824");
  bad_value("trace_max_events=1e3", "'1e3'", "1 to 1073741824");

  /* A bad value fails session creation with the same message. */
  kfm_session_t *s = NULL;
  CU_ASSERT_EQUAL(kfm_session_create_str(&s, "output_format=perfetto"), KFM_EBADVALUE);
  CU_ASSERT_PTR_NULL(s);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "'perfetto'"));
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "json, trace, both"));
  /* And so does a struct filled in by hand. */
  kfm_config_init(&cfg);
  cfg.output_format = 3;
  CU_ASSERT_EQUAL(kfm_session_create(&s, &cfg), KFM_EBADVALUE);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "output_format"));
  kfm_config_init(&cfg);
  cfg.trace_max_events = (1u << 30) + 1;
  CU_ASSERT_EQUAL(kfm_session_create(&s, &cfg), KFM_EBADVALUE);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(NULL), "trace_max_events"));

  /* Where output_format=both puts the trace. */
  static const char *const cases[][2] = {
      {"/a/run.json", "/a/run.trace.json"}, {"/a/run", "/a/run.trace.json"},
      {"a.d/run", "a.d/run.trace.json"},    {".hidden", ".hidden.trace.json"},
      {"x.tar.gz", "x.tar.trace.json"},     {"dir/.rc", "dir/.rc.trace.json"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[64];
    CU_ASSERT_EQUAL(kfm__trace_path(cases[i][0], buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, cases[i][1]);
  }
  char small[8];
  CU_ASSERT_EQUAL(kfm__trace_path("run.json", small, sizeof small), KFM_EINVAL);
}

/* otherData.config reads back as the session's configuration, even with an
 * output path holding ',', '"' and spaces. */
static void test_config_string(void) {
  char out[300], quoted[620], cfg[900];
  path_in_dir(out, sizeof out, "a,b \"q\" .json");
  size_t q = 0;
  for (const char *p = out; *p; p++) {
    if (*p == '"' || *p == '\\') {
      quoted[q++] = '\\';
    }
    quoted[q++] = *p;
  }
  quoted[q] = '\0';
  snprintf(cfg, sizeof cfg,
           "level=standard,rate=250,trace=on,output=\"%s\",output_format=both,"
           "trace_max_events=12345,max_nodes=100,sampler_cpu=none,proc_reads=exact,"
           "backends=clock,proc",
           quoted);
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, cfg));
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter_name(s, "n"));
  KT_OK(s, kfm_exit_name(s, "n"));
  KT_OK(s, kfm_session_stop(s)); /* writes both, at that path */
  kfm_session_destroy(s);
  CU_ASSERT_TRUE(starts_with_file(out, JSON_START));
  char trace[320];
  CU_ASSERT_EQUAL_FATAL(kfm__trace_path(out, trace, sizeof trace), 0);
  struct trace t;
  trace_load(trace, &t);
  kfm_config_t c;
  kfm_config_init(&c);
  char err[400] = "";
  int rc = kfm_config_parse(&c, jstr(t.other, "config"), err, sizeof err);
  if (rc) {
    fprintf(stderr, "\nconfig '%s': %s\n", jstr(t.other, "config"), err);
  }
  CU_ASSERT_EQUAL(rc, 0);
  CU_ASSERT_EQUAL(c.level, KFM_LEVEL_STANDARD);
  CU_ASSERT_EQUAL(c.rate_hz, 250);
  CU_ASSERT_EQUAL(c.trace, 1);
  CU_ASSERT_STRING_EQUAL(c.output, out);
  CU_ASSERT_EQUAL(c.output_format, KFM_OUTPUT_BOTH);
  CU_ASSERT_EQUAL(c.trace_max_events, 12345);
  CU_ASSERT_EQUAL(c.max_nodes, 100);
  CU_ASSERT_EQUAL(c.sampler_cpu, KFM_SAMPLER_CPU_NONE);
  CU_ASSERT_EQUAL(c.proc_reads, KFM_PROC_READS_EXACT);
  CU_ASSERT_STRING_EQUAL(c.backends, "clock,proc");
  jv_free(&t.root);
}

int main(void) {
  unsetenv("KFM_CONFIG");
  if (kt_tmpdir(dir, sizeof dir, "trace") != 0) {
    return 1;
  }
  static const struct kt_case cases[] = {
      {"two threads: spans match the report, nest, names and RSS track", test_two_threads},
      {"DETAILED: metric changes in span args, CPU as a rate track", test_detailed_metrics},
      {"trace_max_events: the earliest N, the drop counted and marked", test_cap},
      {"a backend's spans on lanes of their own (GPU)", test_backend_lanes},
      {"a node open at stop is closed at the end, unclosed", test_unclosed_at_stop},
      {"ring overflow: lost exit closed inside its parent, lost enter skipped", test_lost_events},
      {"bad arguments, states, unwritable paths, FIFO and device", test_errors},
      {"output_format=json|trace|both at stop and destroy", test_output_format},
      {"output at exit(); a fork child writes nothing", test_output_at_exit_and_fork},
      {"output_format and trace_max_events: strict values", test_config_keys},
      {"otherData.config reads back as the session's config", test_config_string},
      {NULL, NULL},
  };
  int rc = kt_run("trace_export", cases);
  kt_rmtree(dir);
  return rc;
}
