/*
 * report.c - merged snapshots of a session for programs and bindings.
 *
 * kfm_session_report merges every thread's aggregates (live and retired),
 * edges, samples and trace events into one allocation-owning snapshot with
 * all times in nanoseconds, so readers never see ticks and never parse
 * text.  It may be called while the session runs (approximate, see
 * internal.h) or after stop (exact).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

void kfm__hist_range(unsigned b, double *lo, double *width) {
  if (b < (1u << KFM__HIST_SUB)) {
    *lo = b;
    *width = 1;
    return;
  }
  unsigned e = (b >> KFM__HIST_SUB) + KFM__HIST_SUB - 1;
  unsigned sub = b & ((1u << KFM__HIST_SUB) - 1);
  *lo = ldexp((double)((1u << KFM__HIST_SUB) + sub), (int)(e - KFM__HIST_SUB));
  *width = ldexp(1.0, (int)(e - KFM__HIST_SUB));
}

/* The q-quantile of the n values counted in hist, clamped to [mn, mx]:
 * the midpoint of the bucket holding the value of rank ceil(q n).  Values
 * are whole numbers, so bucket [lo, lo + w) holds lo .. lo + w - 1 and its
 * midpoint is lo + (w - 1) / 2 (a bucket of width 1 gives its value
 * exactly).  NAN when n is 0.  The one percentile of the engine: node
 * durations and the sampler's lateness both use it. */
static double report_hist_quantile(const _Atomic uint32_t *hist, uint64_t n, double q, double mn,
                                   double mx) {
  if (n == 0) {
    return NAN;
  }
  uint64_t rank = (uint64_t)ceil(q * (double)n);
  if (rank == 0) {
    rank = 1;
  }
  uint64_t cum = 0;
  for (unsigned b = 0; b < KFM__HIST_BUCKETS; b++) {
    cum += KFM__LD(hist[b]);
    if (cum >= rank) {
      double lo, w;
      kfm__hist_range(b, &lo, &w);
      double v = lo + (w - 1) / 2.0;
      return v < mn ? mn : v > mx ? mx : v;
    }
  }
  return mx;
}

static double report_percentile(const struct kfm__agg *a, double q) {
  return report_hist_quantile(a->hist, KFM__LD(a->count), q, (double)KFM__LD(a->min),
                              (double)KFM__LD(a->max));
}

static int edge_cmp(const void *x, const void *y) {
  const kfm_edge_t *a = x, *b = y;
  if (a->from != b->from) {
    return a->from < b->from ? -1 : 1;
  }
  return a->to < b->to ? -1 : a->to > b->to;
}

static int report_edges(kfm_report_t *r, int kind, struct kfm__edges *const *tabs, size_t ntabs) {
  /* Sized by the keys the tables hold, and walked through their used lists:
   * a report costs in proportion to the edges seen, not to the tables'
   * capacities (16384 for the root, 1024 per thread: scanning and
   * initialising those took ~0.5 ms a report). */
  size_t total = 0;
  for (size_t i = 0; i < ntabs; i++) {
    total += atomic_load_explicit(&tabs[i]->nkeys, memory_order_acquire);
  }
  uint32_t cap = 64;
  while (cap < 2 * total && cap < (1u << 24)) {
    cap <<= 1;
  }
  struct kfm__edges m;
  if (kfm__edges_init(&m, cap) != 0) {
    return KFM_ENOMEM;
  }
  for (size_t i = 0; i < ntabs; i++) {
    /* Keys below nkeys were published before it (kfm__edges_add). */
    uint32_t nk = atomic_load_explicit(&tabs[i]->nkeys, memory_order_acquire);
    for (uint32_t u = 0; u < nk; u++) {
      uint32_t j = tabs[i]->used[u];
      uint64_t k = atomic_load_explicit(&tabs[i]->slot[j].key, memory_order_acquire);
      if (k != KFM__EDGE_EMPTY) {
        kfm__edges_add(&m, k, KFM__LD(tabs[i]->slot[j].count));
      }
    }
    r->sum.edges_dropped += KFM__LD(tabs[i]->dropped);
  }
  r->sum.edges_dropped += KFM__LD(m.dropped);
  size_t n = KFM__LD(m.nkeys);
  r->edges[kind] = calloc(n ? n : 1, sizeof(kfm_edge_t));
  if (r->edges[kind] == NULL) {
    kfm__edges_free(&m);
    return KFM_ENOMEM;
  }
  for (size_t u = 0; u < n; u++) {
    uint32_t j = m.used[u];
    uint64_t k = KFM__LD(m.slot[j].key);
    r->edges[kind][u] = (kfm_edge_t){.from = (uint32_t)(k >> 32), .to = (uint32_t)k,
                                     .count = KFM__LD(m.slot[j].count)};
  }
  qsort(r->edges[kind], n, sizeof(kfm_edge_t), edge_cmp);
  r->nedges[kind] = n;
  kfm__edges_free(&m);
  return 0;
}

static void report_metric_info(kfm_metric_info_t *o, const struct kfm__metric_def *d,
                               const char *backend) {
  o->name = d->name;
  o->unit = d->unit;
  o->kind = d->kind;
  o->backend = backend;
}

/* Caller holds s->lock. */
static int report_nodes(kfm_session_t *s, kfm_report_t *r, double npt) {
  uint32_t nn = atomic_load_explicit(&s->nnodes, memory_order_acquire);
  uint32_t nslots = atomic_load_explicit(&s->nslots, memory_order_acquire);
  size_t nm = s->nm;
  struct kfm__agg *merged = kfm__block_new(s);
  r->nodes = calloc(nn ? nn : 1, sizeof *r->nodes);
  r->mvals = calloc((size_t)(nn ? nn : 1) * 2 * (nm ? nm : 1), sizeof *r->mvals);
  r->names = calloc(nn ? nn : 1, sizeof *r->names);
  r->svals_node = calloc((size_t)(nn ? nn : 1) * (s->ns ? s->ns : 1), sizeof *r->svals_node);
  r->cpu_counts =
      calloc((size_t)(nn ? nn : 1) * (s->smp.ncpus ? s->smp.ncpus : 1), sizeof *r->cpu_counts);
  uint64_t *active = calloc(nn ? nn : 1, sizeof *active);
  if (!merged || !r->nodes || !r->mvals || !r->names || !active || !r->cpu_counts ||
      !r->svals_node) {
    free(merged);
    free(active);
    return KFM_ENOMEM;
  }
  for (uint32_t j = 0; j < nslots; j++) {
    struct kfm__thread *t = s->slots[j];
    if (KFM__LD(t->state) != KFM__SLOT_LIVE) {
      continue;
    }
    int32_t d = atomic_load_explicit(&t->depth, memory_order_acquire);
    for (int32_t k = 0; k < d && k < KFM_STACK_MAX; k++) {
      uint32_t id = KFM__LD(t->ids[k]);
      if (id < nn) {
        active[id]++;
      }
    }
  }
  for (uint32_t b = 0; b * KFM__BLOCK_NODES < nn; b++) {
    for (uint32_t i = 0; i < KFM__BLOCK_NODES; i++) {
      kfm__agg_clear(s, kfm__agg_at(s, merged, i));
    }
    if (s->retired[b]) {
      for (uint32_t i = 0; i < KFM__BLOCK_NODES; i++) {
        kfm__agg_merge(s, kfm__agg_at(s, merged, i), kfm__agg_at(s, s->retired[b], i));
      }
    }
    for (uint32_t j = 0; j < nslots; j++) {
      struct kfm__agg *blk = atomic_load_explicit(&s->slots[j]->blocks[b], memory_order_acquire);
      if (blk) {
        for (uint32_t i = 0; i < KFM__BLOCK_NODES; i++) {
          kfm__agg_merge(s, kfm__agg_at(s, merged, i), kfm__agg_at(s, blk, i));
        }
      }
    }
    for (uint32_t i = 0; i < KFM__BLOCK_NODES && b * KFM__BLOCK_NODES + i < nn; i++) {
      uint32_t id = b * KFM__BLOCK_NODES + i;
      const struct kfm__agg *a = kfm__agg_at(s, merged, i);
      uint64_t n = KFM__LD(a->count);
      if (n == 0 && active[id] == 0) {
        continue;
      }
      size_t k = r->nnodes++;
      kfm_node_stats_t *o = &r->nodes[k];
      r->names[k] = strdup(s->names[id]);
      if (r->names[k] == NULL) {
        free(merged);
        free(active);
        return KFM_ENOMEM;
      }
      o->id = id;
      o->name = r->names[k];
      o->count = n;
      o->active = active[id];
      o->total_ns = (double)KFM__LD(a->total) * npt;
      o->exclusive_ns = (double)KFM__LD(a->excl) * npt;
      o->min_ns = n ? (double)KFM__LD(a->min) * npt : NAN;
      o->max_ns = n ? (double)KFM__LD(a->max) * npt : NAN;
      o->mean_ns = n ? o->total_ns / (double)n : NAN;
      if (n > 1) {
        double tot = (double)KFM__LD(a->total);
        double var = (KFM__LD(a->sumsq) - tot * tot / (double)n) / (double)(n - 1);
        o->stddev_ns = var > 0 ? sqrt(var) * npt : 0;
      } else {
        o->stddev_ns = n ? 0 : NAN;
      }
      o->p50_ns = report_percentile(a, 0.50) * npt;
      o->p90_ns = report_percentile(a, 0.90) * npt;
      o->p99_ns = report_percentile(a, 0.99) * npt;
      o->samples = KFM__LD(s->smp.node_samples[id]);
      if (s->smp.track_cpu) {
        o->ncpus = s->smp.ncpus;
        uint32_t *cs = r->cpu_counts + k * s->smp.ncpus;
        for (uint32_t c = 0; c < s->smp.ncpus; c++) {
          cs[c] = KFM__LD(s->smp.node_cpu[(size_t)id * s->smp.ncpus + c]);
        }
        o->cpu_samples = cs;
        o->migrations = KFM__LD(s->smp.node_migrations[id]);
      }
      o->samples_any = KFM__LD(s->smp.node_samples_any[id]);
      if (s->rss_index >= 0 || s->srss_index >= 0) {
        uint64_t p = KFM__LD(a->peak_rss), q = KFM__LD(s->smp.node_sample_peak[id]);
        o->peak_rss = (double)(p > q ? p : q);
      } else {
        o->peak_rss = NAN;
      }
      double *sv = r->svals_node + k * (s->ns ? s->ns : 1);
      for (size_t m = 0; m < s->ns; m++) {
        size_t at = (size_t)id * s->ns + m;
        uint32_t c = s->smp.node_scnt ? KFM__LD(s->smp.node_scnt[at]) : 0;
        double sum = c ? KFM__LD(s->smp.node_ssum[at]) : NAN;
        sv[m] = c == 0 ? NAN : s->sdef[m]->kind == KFM_METRIC_GAUGE ? sum / c : sum;
      }
      o->sampled = sv;
      double *mv = r->mvals + k * 2 * (nm ? nm : 1);
      for (size_t m = 0; m < nm; m++) {
        mv[m] = (double)KFM__LD(a->metrics[m]);
        mv[nm + m] = (double)KFM__LD(a->metrics[nm + m]);
      }
      o->inclusive = mv;
      o->exclusive = mv + nm;
    }
  }
  free(merged);
  free(active);
  return 0;
}

static int report_samples(kfm_session_t *s, kfm_report_t *r, double npt) {
  size_t n = atomic_load_explicit(&s->smp.nsamples, memory_order_acquire);
  size_t ns = s->ns;
  r->nsamples = n;
  if (n == 0) {
    return 0;
  }
  size_t npairs = s->smp.sample_first[n];
  r->st = malloc(n * sizeof *r->st);
  r->svals = malloc(n * (ns ? ns : 1) * sizeof *r->svals);
  r->sfirst = malloc((n + 1) * sizeof *r->sfirst);
  r->athread = malloc((npairs ? npairs : 1) * sizeof *r->athread);
  r->anode = malloc((npairs ? npairs : 1) * sizeof *r->anode);
  r->acpu = malloc((npairs ? npairs : 1) * sizeof *r->acpu);
  if (!r->st || !r->svals || !r->sfirst || !r->athread || !r->anode || !r->acpu) {
    return KFM_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    r->st[i] = (double)(int64_t)(s->smp.sample_t[i] - s->t_start) * npt;
    for (size_t m = 0; m < ns; m++) {
      /* KFM__UNMEASURED: the backend did not measure it at this tick. */
      uint64_t v = s->smp.sample_vals[i * ns + m];
      r->svals[i * ns + m] = v == KFM__UNMEASURED ? NAN : (double)v;
    }
  }
  memcpy(r->sfirst, s->smp.sample_first, (n + 1) * sizeof *r->sfirst);
  memcpy(r->athread, s->smp.act_thread, npairs * sizeof *r->athread);
  memcpy(r->anode, s->smp.act_node, npairs * sizeof *r->anode);
  memcpy(r->acpu, s->smp.act_cpu, npairs * sizeof *r->acpu);
  return 0;
}

static int report_events(kfm_session_t *s, kfm_report_t *r, double npt) {
  if (!s->trace) {
    return 0;
  }
  kfm__drain_all(s, 1);
  pthread_mutex_lock(&s->drain_lock);
  size_t n = s->nevents, nm = s->nm, w = 2 + nm;
  r->nevents = n;
  r->sum.events = n;
  uint64_t dropped = s->events_dropped;
  uint32_t nslots = atomic_load_explicit(&s->nslots, memory_order_acquire);
  for (uint32_t j = 0; j < nslots; j++) {
    dropped += KFM__LD(s->slots[j]->ring.dropped);
  }
  r->sum.events_dropped = dropped;
  r->events = calloc(n ? n : 1, sizeof *r->events);
  r->evals = malloc((n ? n : 1) * (nm ? nm : 1) * sizeof *r->evals);
  if (!r->events || !r->evals) {
    pthread_mutex_unlock(&s->drain_lock);
    return KFM_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    const uint64_t *rec = s->events + i * w;
    struct kfm__event_rec h;
    memcpy(&h, rec, sizeof h);
    kfm_event_t *e = &r->events[i];
    e->t_ns = (double)(int64_t)(h.t - s->t_start) * npt;
    e->thread = h.thread;
    e->node = h.node;
    e->kind = (kfm_event_kind_t)h.kind;
    for (size_t m = 0; m < nm; m++) {
      r->evals[i * nm + m] = (double)rec[2 + m];
    }
    e->values = r->evals + i * nm;
  }
  pthread_mutex_unlock(&s->drain_lock);
  return 0;
}

static void report_summary(kfm_session_t *s, kfm_report_t *r, double npt) {
  kfm_summary_t *o = &r->sum;
  int state = atomic_load(&s->state);
  o->level = s->cfg.level;
  o->rate_hz = s->rate_hz;
  if (state == KFM__CREATED) {
    o->wall_ns = 0;
  } else {
    uint64_t t1 = state == KFM__RUNNING ? kfm__now() : s->t_stop;
    o->wall_ns = (double)(t1 - s->t_start) * npt;
  }
  o->samples = KFM__LD(s->smp.nsamples);
  o->samples_dropped = KFM__LD(s->smp.samples_dropped);
  o->sampler_missed = KFM__LD(s->smp.missed);
  o->threads = s->threads_seen;
  o->sampler_cpu_ns = (double)KFM__LD(s->smp.cpu_ns);
  uint64_t unb = s->retired_unbalanced;
  uint32_t nslots = atomic_load_explicit(&s->nslots, memory_order_acquire);
  for (uint32_t j = 0; j < nslots; j++) {
    unb += KFM__LD(s->slots[j]->unbalanced);
  }
  o->unbalanced = unb;
  uint64_t nl = 0;
  for (unsigned b = 0; b < KFM__HIST_BUCKETS; b++) {
    nl += KFM__LD(s->smp.late_hist[b]);
  }
  o->sampler_late_p99_ns = report_hist_quantile(s->smp.late_hist, nl, 0.99, 0, INFINITY);
  o->clock = kfm__clock_use_tsc ? "tsc" : "clock_gettime";
  o->sampler_bound_cpu = KFM__LD(s->smp.bound);
  o->sampler_rebinds = KFM__LD(s->smp.rebinds);
  o->tsc_ghz = kfm__clock_use_tsc ? 1.0 / npt : 0;
}

int kfm_session_report(kfm_session_t *s, kfm_report_t **out) {
  if (s == NULL || out == NULL) {
    return KFM_EINVAL;
  }
  *out = NULL;
  if (atomic_load(&s->state) == KFM__STOPPED) {
    kfm__sampler_wait(s); /* a stopped session's report is exact */
  }
  kfm_report_t *r = calloc(1, sizeof *r);
  if (r == NULL) {
    return KFM_ENOMEM;
  }
  double npt = kfm__ns_per_tick(s);
  r->nm = s->nm;
  r->ns = s->ns;
  for (unsigned m = 0; m < s->nm; m++) {
    report_metric_info(&r->metrics[m], s->mdef[m], s->mbackend[m]);
    r->roles[m] = s->mrole[m];
  }
  for (unsigned m = 0; m < s->ns; m++) {
    report_metric_info(&r->smetrics[m], s->sdef[m], s->sbackend[m]);
  }
  for (unsigned i = 0; i < s->nbstat; i++) {
    const struct kfm__bstat *b = &s->bstat[i];
    r->bs[i] = (kfm_backend_status_t){.name = b->name ? b->name : b->namebuf,
                                      .available = b->available, .enabled = b->enabled,
                                      .reason = b->reason};
  }
  r->nb = s->nbstat;
  pthread_mutex_lock(&s->lock);
  int rc = report_nodes(s, r, npt);
  uint32_t nslots = atomic_load_explicit(&s->nslots, memory_order_acquire);
  struct kfm__edges **tabs = malloc(2 * ((size_t)nslots + 1) * sizeof *tabs);
  if (tabs == NULL && rc == 0) {
    rc = KFM_ENOMEM;
  }
  if (rc == 0) {
    struct kfm__edges **nested = tabs, **follows = tabs + nslots + 1;
    nested[0] = &s->rnested;
    follows[0] = &s->rfollows;
    for (uint32_t j = 0; j < nslots; j++) {
      nested[j + 1] = &s->slots[j]->nested;
      follows[j + 1] = &s->slots[j]->follows;
    }
    rc = report_edges(r, KFM_EDGE_NESTED, nested, nslots + 1);
    if (rc == 0) {
      rc = report_edges(r, KFM_EDGE_FOLLOWS, follows, nslots + 1);
    }
  }
  free(tabs);
  if (rc == 0) {
    r->tids = malloc((nslots ? nslots : 1) * sizeof *r->tids);
    if (r->tids == NULL) {
      rc = KFM_ENOMEM;
    } else {
      for (uint32_t j = 0; j < nslots; j++) {
        r->tids[j] = (int32_t)s->slots[j]->tid;
      }
      r->ntids = nslots;
    }
  }
  report_summary(s, r, npt);
  pthread_mutex_unlock(&s->lock);
  if (rc == 0) {
    rc = report_samples(s, r, npt);
  }
  if (rc == 0) {
    rc = report_events(s, r, npt);
  }
  if (rc) {
    kfm_report_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

void kfm_report_free(kfm_report_t *r) {
  if (r == NULL) {
    return;
  }
  for (size_t i = 0; i < r->nnodes; i++) {
    free(r->names[i]);
  }
  free(r->names);
  free(r->nodes);
  free(r->mvals);
  free(r->edges[0]);
  free(r->edges[1]);
  free(r->st);
  free(r->svals);
  free(r->sfirst);
  free(r->athread);
  free(r->anode);
  free(r->acpu);
  free(r->cpu_counts);
  free(r->svals_node);
  free(r->events);
  free(r->evals);
  free(r->tids);
  free(r);
}

void kfm_report_summary(const kfm_report_t *r, kfm_summary_t *out) {
  if (r && out) {
    *out = r->sum;
  }
}

size_t kfm_report_metric_count(const kfm_report_t *r) {
  return r ? r->nm : 0;
}

int kfm_report_metric(const kfm_report_t *r, size_t i, kfm_metric_info_t *out) {
  if (r == NULL || out == NULL) {
    return KFM_EINVAL;
  }
  if (i >= r->nm) {
    return KFM_ERANGE;
  }
  *out = r->metrics[i];
  return 0;
}

int kfm_report_metric_index(const kfm_report_t *r, const char *name) {
  for (size_t i = 0; r && name && i < r->nm; i++) {
    if (strcmp(r->metrics[i].name, name) == 0) {
      return (int)i;
    }
  }
  return -1;
}

/* Index of the first metric of role, or -1. */
static int report_role_index(const kfm_report_t *r, kfm__role_t role) {
  for (size_t i = 0; i < r->nm; i++) {
    if (r->roles[i] == role) {
      return (int)i;
    }
  }
  return -1;
}

int kfm_report_derived(const kfm_report_t *r, size_t node, const char *name, double *value,
                       const char **why) {
  const char *dummy;
  if (why == NULL) {
    why = &dummy;
  }
  *why = NULL;
  if (r == NULL || value == NULL || name == NULL) {
    return KFM_EINVAL;
  }
  if (node >= r->nnodes) {
    return KFM_ERANGE;
  }
  const kfm_node_stats_t *n = &r->nodes[node];
  for (size_t i = 0; i < kfm__nderived; i++) {
    const struct kfm__derived_def *d = &kfm__derived_defs[i];
    if (strcmp(d->name, name) != 0) {
      continue;
    }
    int a = report_role_index(r, d->num);
    if (d->den == KFM_ROLE_NONE) {
      /* CPU utilisation: CPU ns over the node's wall ns. */
      double cpu;
      if (a >= 0) {
        cpu = n->inclusive[a];
      } else {
        int u = report_role_index(r, KFM_ROLE_CPU_USER);
        int sy = report_role_index(r, KFM_ROLE_CPU_SYS);
        if (u < 0 || sy < 0) {
          *why = d->needs;
          return KFM_EBACKEND;
        }
        cpu = n->inclusive[u] + n->inclusive[sy];
      }
      if (!(n->total_ns > 0)) {
        *why = "the node has no completed activation";
        return KFM_EBACKEND;
      }
      *value = d->scale * cpu / n->total_ns;
      return 0;
    }
    int b = report_role_index(r, d->den);
    if (a < 0 || b < 0) {
      *why = d->needs;
      return KFM_EBACKEND;
    }
    if (!(n->inclusive[b] > 0)) {
      *why = "the denominator counted nothing in this node";
      return KFM_EBACKEND;
    }
    *value = d->scale * n->inclusive[a] / n->inclusive[b];
    return 0;
  }
  return KFM_EINVAL;
}

size_t kfm_report_node_count(const kfm_report_t *r) {
  return r ? r->nnodes : 0;
}

int kfm_report_node(const kfm_report_t *r, size_t i, kfm_node_stats_t *out) {
  if (r == NULL || out == NULL) {
    return KFM_EINVAL;
  }
  if (i >= r->nnodes) {
    return KFM_ERANGE;
  }
  *out = r->nodes[i];
  return 0;
}

int kfm_report_node_by_name(const kfm_report_t *r, const char *name, kfm_node_stats_t *out) {
  for (size_t i = 0; r && name && i < r->nnodes; i++) {
    if (strcmp(r->nodes[i].name, name) == 0) {
      if (out) {
        *out = r->nodes[i];
      }
      return 0;
    }
  }
  return KFM_ENONODE;
}

size_t kfm_report_edge_count(const kfm_report_t *r, kfm_edge_kind_t kind) {
  return r && (kind == KFM_EDGE_NESTED || kind == KFM_EDGE_FOLLOWS) ? r->nedges[kind] : 0;
}

int kfm_report_edge(const kfm_report_t *r, kfm_edge_kind_t kind, size_t i, kfm_edge_t *out) {
  if (r == NULL || out == NULL) {
    return KFM_EINVAL;
  }
  if (i >= kfm_report_edge_count(r, kind)) {
    return KFM_ERANGE;
  }
  *out = r->edges[kind][i];
  return 0;
}

size_t kfm_report_backend_count(const kfm_report_t *r) {
  return r ? r->nb : 0;
}

int kfm_report_backend(const kfm_report_t *r, size_t i, kfm_backend_status_t *out) {
  if (r == NULL || out == NULL) {
    return KFM_EINVAL;
  }
  if (i >= r->nb) {
    return KFM_ERANGE;
  }
  *out = r->bs[i];
  return 0;
}

size_t kfm_report_sample_metric_count(const kfm_report_t *r) {
  return r ? r->ns : 0;
}

int kfm_report_sample_metric(const kfm_report_t *r, size_t i, kfm_metric_info_t *out) {
  if (r == NULL || out == NULL) {
    return KFM_EINVAL;
  }
  if (i >= r->ns) {
    return KFM_ERANGE;
  }
  *out = r->smetrics[i];
  return 0;
}

size_t kfm_report_sample_count(const kfm_report_t *r) {
  return r ? r->nsamples : 0;
}

int kfm_report_sample(const kfm_report_t *r, size_t i, kfm_sample_t *out) {
  if (r == NULL || out == NULL) {
    return KFM_EINVAL;
  }
  if (i >= r->nsamples) {
    return KFM_ERANGE;
  }
  out->t_ns = r->st[i];
  out->values = r->svals + i * r->ns;
  out->nactive = r->sfirst[i + 1] - r->sfirst[i];
  out->threads = r->athread + r->sfirst[i];
  out->nodes = r->anode + r->sfirst[i];
  out->cpus = r->acpu + r->sfirst[i];
  return 0;
}

size_t kfm_report_event_count(const kfm_report_t *r) {
  return r ? r->nevents : 0;
}

int kfm_report_thread_tid(const kfm_report_t *r, uint32_t thread, int32_t *tid) {
  if (r == NULL || tid == NULL) {
    return KFM_EINVAL;
  }
  if (thread >= r->ntids) {
    return KFM_ERANGE;
  }
  *tid = r->tids[thread];
  return 0;
}

int kfm_report_event(const kfm_report_t *r, size_t i, kfm_event_t *out) {
  if (r == NULL || out == NULL) {
    return KFM_EINVAL;
  }
  if (i >= r->nevents) {
    return KFM_ERANGE;
  }
  *out = r->events[i];
  return 0;
}
