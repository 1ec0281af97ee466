/*
 * trace_export.c - the session as a Chrome Trace Event Format file (the
 * JSON object form that ui.perfetto.dev and chrome://tracing open): node
 * activations as complete ("X") events on their threads, the sampler's
 * samples as counter ("C") tracks, process and thread names, and in
 * otherData what the run was and what it lost.
 *
 * Activations are rebuilt from a report's trace events, thread by thread.
 * The engine's rings drop events when they overflow, so an enter may come
 * without its exit and an exit without its enter; the nesting written must
 * stay proper anyway, or the viewers misdraw or drop whole stacks.  Spans
 * are written as "X" rather than "B"/"E" pairs so that the event cap can
 * never cut a pair in half, and in order of their start (an enclosing span
 * before what it encloses when both start at the same nanosecond, which is
 * the order the viewers need to nest them).
 *
 * Times are integer nanoseconds since the session's start, written as
 * microseconds with three decimals: rounding both ends of every span the
 * same way keeps a child inside its parent, and printing integers keeps
 * the file free of floating-point noise.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"

#define TR_NONE SIZE_MAX
#define TR_NAME_MAX 192

/* One activation: [t0, t1] in ns since the session's start.  A backend's
 * span (thread TR_BACKEND) has enter: its index in tr.bspans, exit: its
 * lane's index in tr.lanes. */
struct tr_span {
  int64_t t0, t1;
  uint32_t node, thread;
  size_t enter; /* its enter event in the report */
  size_t exit;  /* its exit event, TR_NONE when it was not recorded */
};
#define TR_BACKEND UINT32_MAX

/* A backend's span, copied from its trace_spans hook. */
struct tr_bspan {
  char lane[64], name[TR_NAME_MAX], kind[32];
  int64_t t0, t1;
  uint32_t node;
  uint64_t bytes;
};

/* A lane of backends' spans: its name ("GPU 0 (CUPTI)", "... #2"), and
 * where its last span ends (spans that overlap go to the next lane). */
struct tr_lane {
  char name[80];
  int64_t end;
};
/* Lane ids far above any OS thread id (pid_max is at most 2^22). */
#define TR_LANE_TID0 0x40000000

/* One value of a counter track. */
struct tr_point {
  int64_t t;
  uint32_t metric; /* sample metric index */
  double value;
};

/* How a sample metric is shown: a gauge as it is (bytes as MB), a
 * counter as a rate. */
enum { TR_GAUGE, TR_RATE, TR_STEP_RATE };
struct tr_track {
  char name[TR_NAME_MAX];
  int how;      /* TR_* */
  double scale; /* applied to the value, or to the delta per second */
};

struct tr {
  kfm_session_t *s;
  const kfm_report_t *r;
  int pid;
  int64_t end; /* the trace's end: stop (or now), or the last event if later */
  struct tr_span *spans;
  size_t nspans;
  struct tr_point *points;
  size_t npoints;
  struct tr_track *tracks; /* [r->ns] */
  pid_t *tids;             /* [ntids] OS thread id of each engine thread slot */
  uint32_t ntids;
  struct tr_bspan *bspans; /* backends' spans (trace_spans) */
  size_t nbspans, capbspans;
  struct tr_lane *lanes;
  size_t nlanes;
  int bspans_failed; /* out of memory while a backend handed its spans */
  uint64_t unmatched; /* exits skipped: their enter was not recorded */
  uint64_t unclosed;  /* spans closed without a recorded exit */
  FILE *f;
  uint64_t nout; /* events written so far */
};

static int64_t tr_ns(double t) {
  return t > 0 ? (int64_t)llround(t) : 0;
}

/* ns as microseconds with ns precision ("12.345"); ns >= 0. */
static void tr_us(FILE *f, int64_t ns) {
  fprintf(f, "%lld.%03lld", (long long)(ns / 1000), (long long)(ns % 1000));
}

static pid_t tr_tid(const struct tr *t, uint32_t thread) {
  return thread < t->ntids ? t->tids[thread] : (pid_t)thread;
}

/* ---- backends' spans (GPU activity) --------------------------------------- */

static int tr_span_cmp(const void *x, const void *y);

static void tr_copy(char *dst, size_t n, const char *src) {
  snprintf(dst, n, "%s", src ? src : "");
}

/* trace_spans' add: a copy of sp (the backend's strings are its own). */
static void tr_bspan_add(void *ctx, const struct kfm__trace_span *sp) {
  struct tr *t = ctx;
  if (t->nbspans == t->capbspans) {
    size_t cap = t->capbspans ? 2 * t->capbspans : 256;
    struct tr_bspan *b = realloc(t->bspans, cap * sizeof *b);
    if (b == NULL) {
      t->bspans_failed = 1;
      return;
    }
    t->bspans = b;
    t->capbspans = cap;
  }
  struct tr_bspan *b = &t->bspans[t->nbspans++];
  tr_copy(b->lane, sizeof b->lane, sp->lane);
  tr_copy(b->name, sizeof b->name, sp->name);
  tr_copy(b->kind, sizeof b->kind, sp->kind);
  b->t0 = sp->t0_ns;
  b->t1 = sp->t1_ns > sp->t0_ns ? sp->t1_ns : sp->t0_ns;
  b->node = sp->node;
  b->bytes = sp->bytes;
}

static int tr_bspan_cmp(const void *x, const void *y) {
  const struct tr_bspan *a = x, *b = y;
  int c = strcmp(a->lane, b->lane);
  if (c) {
    return c;
  }
  return a->t0 < b->t0 ? -1 : a->t0 > b->t0;
}

/* The lane of a span starting at t0 on base lane `base`: the first of its
 * lanes free by then, else a new one. */
static size_t tr_lane_for(struct tr *t, size_t first, const char *base, int64_t t0, int64_t t1) {
  size_t k = first;
  for (; k < t->nlanes; k++) {
    if (t->lanes[k].end <= t0) {
      break;
    }
  }
  if (k == t->nlanes) {
    struct tr_lane *l = &t->lanes[t->nlanes++];
    if (k == first) {
      snprintf(l->name, sizeof l->name, "%s", base);
    } else {
      snprintf(l->name, sizeof l->name, "%s #%zu", base, k - first + 1);
    }
  }
  t->lanes[k].end = t1;
  return k;
}

/* Every backend's spans, on lanes of their own, added to t->spans. */
static int tr_backend_spans(struct tr *t) {
  kfm_session_t *s = t->s;
  for (unsigned i = 0; i < s->nbackends; i++) {
    if (KFM__BACKEND_HAS(s->be[i].ops, KFM_BACKEND_ABI_4, trace_spans)) {
      s->be[i].ops->trace_spans(s->be[i].state, tr_bspan_add, t);
    }
  }
  if (t->bspans_failed) {
    return KFM_ENOMEM;
  }
  if (t->nbspans == 0) {
    return 0;
  }
  qsort(t->bspans, t->nbspans, sizeof *t->bspans, tr_bspan_cmp);
  t->lanes = calloc(t->nbspans, sizeof *t->lanes); /* at most one lane a span */
  struct tr_span *sp = realloc(t->spans, (t->nspans + t->nbspans) * sizeof *sp);
  if (t->lanes == NULL || sp == NULL) {
    if (sp) {
      t->spans = sp;
    }
    return KFM_ENOMEM;
  }
  t->spans = sp;
  size_t first = 0;
  for (size_t j = 0; j < t->nbspans; j++) {
    const struct tr_bspan *b = &t->bspans[j];
    if (j == 0 || strcmp(b->lane, t->bspans[j - 1].lane) != 0) {
      first = t->nlanes; /* a new base lane: its lanes start here */
    }
    size_t lane = tr_lane_for(t, first, b->lane, b->t0, b->t1);
    t->spans[t->nspans++] = (struct tr_span){
        .t0 = b->t0, .t1 = b->t1, .node = b->node, .thread = TR_BACKEND, .enter = j, .exit = lane};
    if (b->t1 > t->end) {
      t->end = b->t1;
    }
  }
  qsort(t->spans, t->nspans, sizeof *t->spans, tr_span_cmp);
  return 0;
}

/* ---- spans ------------------------------------------------------------- */

/* Order of start; among spans starting at the same ns, enter order, which
 * on one thread puts the enclosing span first. */
static int tr_span_cmp(const void *x, const void *y) {
  const struct tr_span *a = x, *b = y;
  if (a->t0 != b->t0) {
    return a->t0 < b->t0 ? -1 : 1;
  }
  return a->enter < b->enter ? -1 : a->enter > b->enter;
}

/* Spans of one thread from its events (ev, in recording order).  stack holds
 * the indices in t->spans of the activations still open. */
static int tr_thread_spans(struct tr *t, const size_t *ev, size_t n, size_t **stack, size_t *cap) {
  const kfm_event_t *events = t->r->events;
  size_t depth = 0;
  for (size_t k = 0; k < n; k++) {
    const kfm_event_t *e = &events[ev[k]];
    int64_t te = tr_ns(e->t_ns);
    if (e->kind == KFM_EVENT_ENTER) {
      if (depth == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        size_t *p = realloc(*stack, nc * sizeof *p);
        if (p == NULL) {
          return KFM_ENOMEM;
        }
        *stack = p;
        *cap = nc;
      }
      (*stack)[depth++] = t->nspans;
      t->spans[t->nspans++] = (struct tr_span){.t0 = te,
                                               .t1 = -1,
                                               .node = e->node,
                                               .thread = e->thread,
                                               .enter = ev[k],
                                               .exit = TR_NONE};
      continue;
    }
    size_t d = depth;
    while (d > 0 && t->spans[(*stack)[d - 1]].node != e->node) {
      d--;
    }
    if (d == 0) {
      t->unmatched++;
      continue;
    }
    /* Spans opened inside this one whose exits were lost ended before it
     * did: closing them here is the latest end that keeps the nesting. */
    while (depth > d) {
      struct tr_span *in = &t->spans[(*stack)[--depth]];
      in->t1 = te < in->t0 ? in->t0 : te;
      t->unclosed++;
    }
    struct tr_span *sp = &t->spans[(*stack)[--depth]];
    sp->t1 = te < sp->t0 ? sp->t0 : te;
    sp->exit = ev[k];
  }
  while (depth > 0) {
    t->spans[(*stack)[--depth]].t1 = t->end;
    t->unclosed++;
  }
  return 0;
}

/* All spans, sorted by start.  Events are grouped by thread with a counting
 * sort that keeps each thread's recording order. */
static int tr_spans(struct tr *t) {
  const kfm_report_t *r = t->r;
  size_t n = r->nevents, nenter = 0;
  uint32_t nthreads = 0;
  for (size_t i = 0; i < n; i++) {
    nenter += r->events[i].kind == KFM_EVENT_ENTER;
    if (r->events[i].thread >= nthreads) {
      nthreads = r->events[i].thread + 1;
    }
    if (tr_ns(r->events[i].t_ns) > t->end) {
      t->end = tr_ns(r->events[i].t_ns);
    }
  }
  if (n == 0) {
    return 0;
  }
  size_t *first = calloc((size_t)nthreads + 1, sizeof *first);
  size_t *order = malloc(n * sizeof *order);
  t->spans = malloc((nenter ? nenter : 1) * sizeof *t->spans);
  size_t *stack = NULL, cap = 0;
  int rc = first && order && t->spans ? 0 : KFM_ENOMEM;
  if (rc == 0) {
    for (size_t i = 0; i < n; i++) {
      first[r->events[i].thread + 1]++;
    }
    for (uint32_t th = 0; th < nthreads; th++) {
      first[th + 1] += first[th];
    }
    size_t *next = malloc(((size_t)nthreads ? nthreads : 1) * sizeof *next);
    if (next == NULL) {
      rc = KFM_ENOMEM;
    } else {
      memcpy(next, first, (size_t)nthreads * sizeof *next);
      for (size_t i = 0; i < n; i++) {
        order[next[r->events[i].thread]++] = i;
      }
      free(next);
    }
  }
  for (uint32_t th = 0; rc == 0 && th < nthreads; th++) {
    rc = tr_thread_spans(t, order + first[th], first[th + 1] - first[th], &stack, &cap);
  }
  free(stack);
  free(order);
  free(first);
  if (rc == 0) {
    qsort(t->spans, t->nspans, sizeof *t->spans, tr_span_cmp);
  }
  return rc;
}

/* ---- counter tracks ----------------------------------------------------- */

static void tr_track_init(struct tr_track *k, const kfm_metric_info_t *m) {
  const char *unit = m->unit;
  int bytes = strcmp(m->unit, "bytes") == 0;
  k->scale = bytes ? 1.0 / (1024.0 * 1024.0) : 1.0;
  k->how = m->kind == KFM_METRIC_GAUGE ? TR_GAUGE : TR_RATE;
  char buf[64];
  if (k->how == TR_RATE && strcmp(m->unit, "ns") == 0) {
    /* CPU time: the kernel reports it in whole scheduler ticks (10 ms), so
     * at 100 Hz and more most intervals see 0 or a whole tick. */
    k->how = TR_STEP_RATE;
    unit = "cores";
  } else if (k->how == TR_RATE) {
    k->scale *= 1e9; /* per second */
    snprintf(buf, sizeof buf, "%s/s", bytes ? "MB" : m->unit);
    unit = buf;
  } else if (bytes) {
    unit = "MB";
  }
  snprintf(k->name, sizeof k->name, "%s (%s)", m->name, unit);
}

static void tr_point(struct tr *t, double at, size_t m, double value) {
  if (isfinite(value)) {
    t->points[t->npoints++] =
        (struct tr_point){.t = tr_ns(at), .metric = (uint32_t)m, .value = value};
  }
}

#define TR_TICK_NS 10e6 /* the kernel's CPU accounting tick at its coarsest */

/* A counter read in steps, as a rate between the samples at which it
 * changed: each step is then spread over the time it took instead of
 * showing as a spike.  Nothing is shown before the first change, whose
 * interval holds an unknown part of a step taken before the session. */
static void tr_step_rate(struct tr *t, size_t m) {
  const kfm_report_t *r = t->r;
  const double *v = r->svals;
  size_t ns = r->ns, last = TR_NONE, first = TR_NONE, at = TR_NONE;
  for (size_t i = 0; i < r->nsamples; i++) {
    double x = v[i * ns + m];
    if (!isfinite(x)) {
      continue; /* not measured at that tick */
    }
    if (first == TR_NONE) {
      first = i;
    } else if (at == TR_NONE && x != v[first * ns + m]) {
      at = i;
    } else if (at != TR_NONE && x != v[at * ns + m] && r->st[i] - r->st[at] >= TR_TICK_NS) {
      /* At least a tick apart: two threads' ticks accounted a few ms apart
       * would otherwise read as several cores. */
      double dv = x - v[at * ns + m], dt = r->st[i] - r->st[at];
      tr_point(t, r->st[at], m, dv >= 0 && dt > 0 ? t->tracks[m].scale * dv / dt : NAN);
      at = i;
    }
    last = i;
  }
  if (at != TR_NONE && last != at) {
    tr_point(t, r->st[at], m, 0.0); /* less than a step since the last change */
  }
}

static int tr_point_cmp(const void *x, const void *y) {
  const struct tr_point *a = x, *b = y;
  if (a->t != b->t) {
    return a->t < b->t ? -1 : 1;
  }
  return a->metric < b->metric ? -1 : a->metric > b->metric;
}

/* Counter values in time order: a gauge's value at each sample, a
 * counter's rate over each interval at the interval's start.  Values the
 * backend did not measure are left out (JSON has no NaN). */
static int tr_points(struct tr *t) {
  const kfm_report_t *r = t->r;
  size_t ns = r->ns, n = r->nsamples, most = n * ns;
  t->tracks = calloc(ns ? ns : 1, sizeof *t->tracks);
  t->points = malloc((most ? most : 1) * sizeof *t->points);
  if (t->tracks == NULL || t->points == NULL) {
    return KFM_ENOMEM;
  }
  for (size_t m = 0; m < ns; m++) {
    const struct tr_track *k = &t->tracks[m];
    tr_track_init(&t->tracks[m], &r->smetrics[m]);
    if (k->how == TR_STEP_RATE) {
      tr_step_rate(t, m);
      continue;
    }
    for (size_t i = 0; i < n; i++) {
      const double *v = r->svals + i * ns;
      double x = k->scale * v[m];
      if (k->how == TR_RATE) {
        double dt = i + 1 < n ? r->st[i + 1] - r->st[i] : 0;
        double dv = dt > 0 ? v[ns + m] - v[m] : NAN;
        x = dv >= 0 ? k->scale * dv / dt : NAN;
      }
      tr_point(t, r->st[i], m, x);
    }
  }
  qsort(t->points, t->npoints, sizeof *t->points, tr_point_cmp);
  return 0;
}

/* ---- threads ------------------------------------------------------------ */

/* The OS thread id of each engine thread slot.  A slot keeps the id of its
 * last thread: one reused after its thread ended shows its earlier
 * threads' spans under that id. */
static int tr_tids(struct tr *t) {
  kfm_session_t *s = t->s;
  pthread_mutex_lock(&s->lock);
  uint32_t n = atomic_load_explicit(&s->nslots, memory_order_acquire);
  t->tids = malloc((n ? n : 1) * sizeof *t->tids);
  if (t->tids) {
    for (uint32_t i = 0; i < n; i++) {
      t->tids[i] = s->slots[i]->tid;
    }
    t->ntids = n;
  }
  pthread_mutex_unlock(&s->lock);
  return t->tids ? 0 : KFM_ENOMEM;
}

/* "kfm: <program>": the name the program was started under, else its comm. */
static void tr_process_name(char *buf, size_t len) {
  const char *name = program_invocation_short_name;
  char comm[64] = "";
  if (name == NULL || name[0] == '\0') {
    FILE *f = fopen("/proc/self/comm", "r");
    if (f) {
      if (fgets(comm, sizeof comm, f) == NULL) {
        comm[0] = '\0';
      }
      fclose(f);
    }
    comm[strcspn(comm, "\n")] = '\0';
    name = comm[0] ? comm : "?";
  }
  snprintf(buf, len, "kfm: %s", name);
}

/* ---- writing ------------------------------------------------------------ */

/* Starts the next event of traceEvents: a separator after the previous one
 * (none after the last, which JSON would refuse). */
static FILE *tr_event(struct tr *t) {
  fputs(t->nout++ ? ",\n" : "\n", t->f);
  return t->f;
}

static void tr_meta(struct tr *t, pid_t tid, const char *what, const char *key, const char *str,
                    long num) {
  FILE *f = tr_event(t);
  fprintf(f, "{\"name\":\"%s\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"%s\":", what, t->pid,
          (int)tid, key);
  if (str) {
    kfm__json_str(f, str);
  } else {
    fprintf(f, "%ld", num);
  }
  fputs("}}", f);
}

static void tr_write_meta(struct tr *t) {
  char name[300];
  tr_process_name(name, sizeof name);
  tr_meta(t, t->pid, "process_name", "name", name, 0);
  tr_meta(t, t->pid, "process_sort_index", "sort_index", NULL, 0);
  for (uint32_t i = 0; i < t->ntids; i++) {
    snprintf(name, sizeof name, "thread %u", i);
    tr_meta(t, t->tids[i], "thread_name", "name", name, 0);
    tr_meta(t, t->tids[i], "thread_sort_index", "sort_index", NULL, (long)i);
  }
  for (size_t k = 0; k < t->nlanes; k++) {
    tr_meta(t, TR_LANE_TID0 + (pid_t)k, "thread_name", "name", t->lanes[k].name, 0);
    tr_meta(t, TR_LANE_TID0 + (pid_t)k, "thread_sort_index", "sort_index", NULL,
            (long)(t->ntids + k));
  }
}

static void tr_write_bspan(struct tr *t, const struct tr_span *sp) {
  const struct tr_bspan *b = &t->bspans[sp->enter];
  FILE *f = tr_event(t);
  fputs("{\"name\":", f);
  kfm__json_str(f, b->name[0] ? b->name : b->kind);
  fputs(",\"cat\":\"gpu\",\"ph\":\"X\",\"ts\":", f);
  tr_us(f, sp->t0);
  fputs(",\"dur\":", f);
  tr_us(f, sp->t1 - sp->t0);
  fprintf(f, ",\"pid\":%d,\"tid\":%d,\"args\":{\"node\":", t->pid,
          TR_LANE_TID0 + (int)sp->exit);
  const char *node = sp->node == KFM_NODE_ROOT ? NULL : kfm_node_name(t->s, sp->node);
  kfm__json_str(f, node ? node : "unattributed");
  fputs(",\"kind\":", f);
  kfm__json_str(f, b->kind);
  if (b->bytes) {
    fprintf(f, ",\"bytes\":%llu", (unsigned long long)b->bytes);
  }
  fputs("}}", f);
}

static void tr_write_span(struct tr *t, const struct tr_span *sp) {
  const kfm_report_t *r = t->r;
  if (sp->thread == TR_BACKEND) {
    tr_write_bspan(t, sp);
    return;
  }
  FILE *f = tr_event(t);
  fputs("{\"name\":", f);
  const char *name = kfm_node_name(t->s, sp->node);
  kfm__json_str(f, name ? name : "?");
  fputs(",\"cat\":\"kfm\",\"ph\":\"X\",\"ts\":", f);
  tr_us(f, sp->t0);
  fputs(",\"dur\":", f);
  tr_us(f, sp->t1 - sp->t0);
  fprintf(f, ",\"pid\":%d,\"tid\":%d,\"args\":{", t->pid, (int)tr_tid(t, sp->thread));
  if (sp->exit == TR_NONE) {
    fputs("\"unclosed\":true", f);
  } else {
    /* Each transition metric's change over the span, children included. */
    const double *v0 = r->events[sp->enter].values, *v1 = r->events[sp->exit].values;
    int first = 1;
    for (size_t m = 0; m < r->nm; m++) {
      double d = v1[m] - v0[m];
      if (v0[m] == (double)KFM__UNMEASURED || v1[m] == (double)KFM__UNMEASURED || !isfinite(d)) {
        continue;
      }
      char key[TR_NAME_MAX];
      snprintf(key, sizeof key, "%s (%s)", r->metrics[m].name, r->metrics[m].unit);
      fputs(first ? "" : ",", f);
      kfm__json_str(f, key);
      fprintf(f, ":%.17g", d);
      first = 0;
    }
  }
  fputs("}}", f);
}

static void tr_write_point(struct tr *t, const struct tr_point *p) {
  FILE *f = tr_event(t);
  fputs("{\"name\":", f);
  kfm__json_str(f, t->tracks[p->metric].name);
  fputs(",\"cat\":\"kfm\",\"ph\":\"C\",\"ts\":", f);
  tr_us(f, p->t);
  fprintf(f, ",\"pid\":%d,\"tid\":%d,\"args\":{\"value\":%.9g}}", t->pid, t->pid, p->value);
}

static void tr_write_other(const struct tr *t, uint64_t written, uint64_t dropped, uint64_t cap) {
  const kfm_summary_t *sum = &t->r->sum;
  kfm_session_t *s = t->s;
  FILE *f = t->f;
  fprintf(f, "\"otherData\":{\"kfm_version\":\"%s\",\"level\":\"%s\",\"clock\":\"%s\",",
          KFM_VERSION_STRING, kfm_level_name(sum->level), sum->clock);
  fprintf(f, "\"tsc_ghz\":%.9g,\"config\":", isfinite(sum->tsc_ghz) ? sum->tsc_ghz : 0.0);
  char *cfg = kfm__config_string(&s->cfg);
  kfm__json_str(f, cfg ? cfg : "");
  free(cfg);
  fputs(",\"truncated\":", f);
  kfm__json_str(f, s->truncated);
  fprintf(f,
          ",\"trace_enabled\":%s,\"tid\":\"OS thread id of the engine thread slot; a "
          "backend's lanes (GPU) from 1073741824\","
          "\"start_monotonic_ns\":%llu,\"wall_ns\":%lld,\"events_written\":%llu,"
          "\"trace_max_events\":%llu,\"dropped_events\":%llu,\"events_dropped_by_engine\":%llu,"
          "\"unmatched_exits\":%llu,\"unclosed_spans\":%llu}",
          s->trace ? "true" : "false", (unsigned long long)s->ns_start, (long long)t->end,
          (unsigned long long)written, (unsigned long long)cap, (unsigned long long)dropped,
          (unsigned long long)sum->events_dropped, (unsigned long long)t->unmatched,
          (unsigned long long)t->unclosed);
}

/* Whether the next event in time is span i rather than counter value j
 * (a span first at the same ns); one of them is left. */
static int tr_span_next(const struct tr *t, size_t i, size_t j) {
  return j == t->npoints || (i < t->nspans && t->spans[i].t0 <= t->points[j].t);
}

/* Names first; then spans and counter values merged in time order, the
 * first cap of them; then, when some did not fit, one instant event where
 * the first of those was. */
static void tr_write(struct tr *t) {
  FILE *f = t->f;
  uint64_t cap = t->s->cfg.trace_max_events ? t->s->cfg.trace_max_events : UINT64_MAX;
  fputs("{\"traceEvents\":[", f);
  tr_write_meta(t);
  size_t i = 0, j = 0;
  uint64_t written = 0;
  for (; (i < t->nspans || j < t->npoints) && written < cap; written++) {
    if (tr_span_next(t, i, j)) {
      tr_write_span(t, &t->spans[i++]);
    } else {
      tr_write_point(t, &t->points[j++]);
    }
  }
  uint64_t dropped = (uint64_t)(t->nspans - i) + (uint64_t)(t->npoints - j);
  if (dropped) {
    int64_t at = tr_span_next(t, i, j) ? t->spans[i].t0 : t->points[j].t;
    fprintf(tr_event(t),
            "{\"name\":\"kfm: %llu events dropped (trace_max_events=%llu)\",\"cat\":\"kfm\","
            "\"ph\":\"i\",\"s\":\"p\",\"ts\":",
            (unsigned long long)dropped, (unsigned long long)cap);
    tr_us(f, at);
    fprintf(f, ",\"pid\":%d,\"tid\":%d,\"args\":{\"dropped_events\":%llu}}", t->pid, t->pid,
            (unsigned long long)dropped);
  }
  fputs("\n],\"displayTimeUnit\":\"ns\",", f);
  tr_write_other(t, written, dropped, cap);
  fputs("}\n", f);
}

int kfm__export_trace(kfm_session_t *s, const kfm_report_t *r, const char *path) {
  struct tr t = {.s = s, .r = r, .pid = (int)getpid(), .end = tr_ns(r->sum.wall_ns)};
  /* Everything is built before the file is opened: running out of memory
   * then leaves an earlier file as it was. */
  int rc = tr_tids(&t);
  if (rc == 0) {
    rc = tr_spans(&t);
  }
  if (rc == 0) {
    rc = tr_backend_spans(&t);
  }
  if (rc == 0) {
    rc = tr_points(&t);
  }
  if (rc) {
    rc = kfm__err(s, rc, "trace export: out of memory for %zu events and %zu samples", r->nevents,
                  r->nsamples);
  } else {
    struct kfm__outfile *o;
    rc = kfm__outfile_open(s, "trace export", path, &o);
    if (rc == 0) {
      t.f = kfm__outfile_stream(o);
      tr_write(&t);
      rc = kfm__outfile_close(s, o, 1);
    }
  }
  free(t.tids);
  free(t.bspans);
  free(t.lanes);
  free(t.spans);
  free(t.points);
  free(t.tracks);
  return rc;
}

int kfm_session_export_trace(kfm_session_t *s, const char *path) {
  if (s == NULL || path == NULL || path[0] == '\0') {
    return s ? kfm__err(s, KFM_EINVAL, "trace export: empty path") : KFM_EINVAL;
  }
  kfm_report_t *r;
  int rc = kfm_session_report(s, &r);
  if (rc) {
    return rc;
  }
  rc = kfm__export_trace(s, r, path);
  kfm_report_free(r);
  return rc;
}

int kfm__trace_path(const char *out, char *buf, size_t len) {
  const char *base = strrchr(out, '/');
  base = base ? base + 1 : out;
  const char *dot = strrchr(base, '.');
  /* A leading dot names a hidden file, not an extension. */
  size_t keep = dot && dot > base ? (size_t)(dot - out) : strlen(out);
  int n = snprintf(buf, len, "%.*s.trace.json", (int)keep, out);
  return n >= 0 && (size_t)n < len ? 0 : KFM_EINVAL;
}
