/*
 * export.c - the JSON export (schema "kfm.profile") and the text report.
 *
 * The export is written through outfile.c: a regular file is replaced
 * only when complete (a failed or interrupted export never leaves a
 * truncated profile, a temporary, or a destroyed earlier one); a FIFO or
 * device is written in place; symlinks are followed.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"

/* JSON has no NaN: unmeasured values are null. */
static void json_num(FILE *f, double v) {
  if (isfinite(v)) {
    fprintf(f, "%.17g", v);
  } else {
    fputs("null", f);
  }
}

/* With a backend that knows the topology (cpu_numa hook), the node's CPU
 * histogram folded onto NUMA nodes: "numa":{"0": thread-samples, ...}. */
static void json_numa(FILE *f, kfm_session_t *s, const kfm_node_stats_t *n) {
  const struct kfm__backend_use *topo = NULL;
  for (unsigned i = 0; i < s->nbackends && topo == NULL; i++) {
    if (KFM__BACKEND_HAS(s->be[i].ops, KFM_BACKEND_ABI_3, cpu_numa)) {
      topo = &s->be[i];
    }
  }
  if (topo == NULL) {
    return;
  }
  enum { MAXNUMA = 64 };
  uint64_t numa[MAXNUMA] = {0};
  for (uint32_t c = 0; c < n->ncpus; c++) {
    if (n->cpu_samples[c] == 0) {
      continue;
    }
    int nu = topo->ops->cpu_numa(topo->state, c);
    if (nu >= 0 && nu < MAXNUMA) {
      numa[nu] += n->cpu_samples[c];
    }
  }
  fputs(",\"numa\":{", f);
  int first = 1;
  for (int i = 0; i < MAXNUMA; i++) {
    if (numa[i]) {
      fprintf(f, "%s\"%d\":%llu", first ? "" : ",", i, (unsigned long long)numa[i]);
      first = 0;
    }
  }
  fputc('}', f);
}

/* "derived_metrics": {"ipc": "available" | "unavailable: <why>", ...} */
static void json_derived_status(FILE *f, const kfm_report_t *r) {
  fputs(",\"derived_metrics\":{", f);
  for (size_t d = 0; d < kfm__nderived; d++) {
    const char *name = kfm__derived_defs[d].name;
    const char *why = NULL;
    double v;
    int rc = KFM_EBACKEND;
    /* Inputs are per session: any node tells; with no node, ask with none. */
    for (size_t i = 0; i < r->nnodes && rc != 0; i++) {
      rc = kfm_report_derived(r, i, name, &v, &why);
    }
    fprintf(f, "%s\"%s\":", d ? "," : "", name);
    if (rc == 0) {
      fputs("\"available\"", f);
    } else {
      char buf[200];
      snprintf(buf, sizeof buf, "unavailable: %s", why ? why : "no node completed");
      kfm__json_str(f, buf);
    }
  }
  fputc('}', f);
}

static void json_metrics(FILE *f, const kfm_metric_info_t *m, size_t n) {
  fputc('[', f);
  for (size_t i = 0; i < n; i++) {
    fputs(i ? ",{\"name\":" : "{\"name\":", f);
    kfm__json_str(f, m[i].name);
    fputs(",\"unit\":", f);
    kfm__json_str(f, m[i].unit);
    fputs(",\"backend\":", f);
    kfm__json_str(f, m[i].backend);
    fprintf(f, ",\"kind\":\"%s\"}", m[i].kind == KFM_METRIC_GAUGE ? "gauge" : "counter");
  }
  fputc(']', f);
}

/* "backend_info": {"name": {...}, ...} from the backends' export_json hooks. */
static void json_backend_info(FILE *f, kfm_session_t *s) {
  fputs(",\"backend_info\":{", f);
  int first = 1;
  /* A forked child's copy calls no backend: their locks and threads are
   * the parent's (a GPU poller's lock may be held forever there). */
  unsigned nb = atomic_load(&s->state) == KFM__FORKED ? 0 : s->nbackends;
  for (unsigned i = 0; i < nb; i++) {
    const struct kfm__backend_use *u = &s->be[i];
    if (KFM__BACKEND_HAS(u->ops, KFM_BACKEND_ABI_2, export_json)) {
      fprintf(f, "%s\"%s\":", first ? "" : ",", u->ops->name);
      kfm__backend_export_json(u->ops, u->state, f);
      first = 0;
    }
  }
  fputc('}', f);
}

/* "truncated": null for a run ended by kfm_session_stop; for one written
 * by the exit or signal flush (flush.c), why, and where each thread still
 * was: its open nodes, outermost first.  Their time since they were
 * entered is in no aggregate (a node is counted at its exit). */
static void json_truncated(FILE *f, kfm_session_t *s) {
  if (s->truncated == NULL) {
    fputs("\"truncated\":null,", f);
    return;
  }
  fputs("\"truncated\":{\"reason\":", f);
  kfm__json_str(f, s->truncated);
  fputs(",\"open\":[", f);
  int first = 1;
  uint32_t n = atomic_load_explicit(&s->nslots, memory_order_acquire);
  uint32_t nn = atomic_load_explicit(&s->nnodes, memory_order_acquire);
  for (uint32_t j = 0; j < n; j++) {
    struct kfm__thread *t = s->slots[j];
    int32_t d = atomic_load_explicit(&t->depth, memory_order_acquire);
    if (atomic_load(&t->state) != KFM__SLOT_LIVE || d <= 0) {
      continue;
    }
    fprintf(f, "%s{\"thread\":%d,\"nodes\":[", first ? "" : ",", (int)t->tid);
    first = 0;
    for (int32_t k = 0; k < d && k < KFM_STACK_MAX; k++) {
      uint32_t id = KFM__LD(t->ids[k]);
      fputs(k ? "," : "", f);
      kfm__json_str(f, id < nn ? s->names[id] : "?");
    }
    fputs("]}", f);
  }
  fputs("]},", f);
}

static void json_write(FILE *f, kfm_session_t *ses, const kfm_report_t *r) {
  const kfm_summary_t *s = &r->sum;
  fprintf(f, "{\"schema\":\"kfm.profile\",\"schema_version\":%d,\"kfm_version\":\"%s\",",
          KFM_SCHEMA_VERSION, KFM_VERSION_STRING);
  json_truncated(f, ses);
  fprintf(f, "\"level\":\"%s\",\"clock\":{\"source\":\"%s\",\"tsc_ghz\":", kfm_level_name(s->level),
          s->clock);
  json_num(f, s->tsc_ghz);
  fputs("},\"summary\":{\"wall_ns\":", f);
  json_num(f, s->wall_ns);
  fputs(",\"rate_hz\":", f);
  json_num(f, s->rate_hz);
  fprintf(f,
          ",\"samples\":%llu,\"samples_dropped\":%llu,\"events\":%llu,\"events_dropped\":%llu,"
          "\"edges_dropped\":%llu,\"unbalanced\":%llu,\"threads\":%u,\"sampler_cpu_ns\":",
          (unsigned long long)s->samples, (unsigned long long)s->samples_dropped,
          (unsigned long long)s->events, (unsigned long long)s->events_dropped,
          (unsigned long long)s->edges_dropped, (unsigned long long)s->unbalanced, s->threads);
  json_num(f, s->sampler_cpu_ns);
  fputs(",\"sampler_late_p99_ns\":", f);
  json_num(f, s->sampler_late_p99_ns);
  fprintf(f, ",\"sampler_missed\":%llu,\"sampler_bound_cpu\":%d,\"sampler_rebinds\":%u",
          (unsigned long long)s->sampler_missed, s->sampler_bound_cpu, s->sampler_rebinds);
  fputs("},\"backends\":[", f);
  for (size_t i = 0; i < r->nb; i++) {
    fputs(i ? ",{\"name\":" : "{\"name\":", f);
    kfm__json_str(f, r->bs[i].name);
    fprintf(f, ",\"available\":%s,\"enabled\":%s,\"reason\":", r->bs[i].available ? "true" : "false",
            r->bs[i].enabled ? "true" : "false");
    kfm__json_str(f, r->bs[i].reason);
    fputc('}', f);
  }
  fputs("],\"metrics\":", f);
  json_metrics(f, r->metrics, r->nm);
  json_derived_status(f, r);
  fputs(",\"nodes\":[", f);
  for (size_t i = 0; i < r->nnodes; i++) {
    const kfm_node_stats_t *n = &r->nodes[i];
    fprintf(f, "%s{\"id\":%u,\"name\":", i ? "," : "", n->id);
    kfm__json_str(f, n->name);
    fprintf(f, ",\"count\":%llu,\"active\":%llu", (unsigned long long)n->count,
            (unsigned long long)n->active);
    const struct {
      const char *k;
      double v;
    } kv[] = {{"total_ns", n->total_ns}, {"exclusive_ns", n->exclusive_ns},
              {"min_ns", n->min_ns},     {"max_ns", n->max_ns},
              {"mean_ns", n->mean_ns},   {"stddev_ns", n->stddev_ns},
              {"p50_ns", n->p50_ns},     {"p90_ns", n->p90_ns},
              {"p99_ns", n->p99_ns},     {"peak_rss_bytes", n->peak_rss}};
    for (size_t k = 0; k < sizeof kv / sizeof kv[0]; k++) {
      fprintf(f, ",\"%s\":", kv[k].k);
      json_num(f, kv[k].v);
    }
    fprintf(f, ",\"samples\":%llu,\"samples_any\":%llu", (unsigned long long)n->samples,
            (unsigned long long)n->samples_any);
    if (n->ncpus) {
      /* Where the node ran: {"cpu": thread-samples}, CPUs it was seen on only. */
      fputs(",\"cpus\":{", f);
      int first = 1;
      for (uint32_t c = 0; c < n->ncpus; c++) {
        if (n->cpu_samples[c]) {
          fprintf(f, "%s\"%u\":%u", first ? "" : ",", c, n->cpu_samples[c]);
          first = 0;
        }
      }
      fprintf(f, "},\"migrations\":%llu", (unsigned long long)n->migrations);
      json_numa(f, ses, n);
    }
    if (r->ns) {
      fputs(",\"sampled\":{", f);
      for (size_t m = 0; m < r->ns; m++) {
        fputs(m ? "," : "", f);
        kfm__json_str(f, r->smetrics[m].name);
        fputc(':', f);
        json_num(f, n->sampled[m]);
      }
      fputc('}', f);
    }
    /* Derived metrics: a value, or null where an input was not measured
     * (the reasons are listed once, in "derived_metrics"). */
    fputs(",\"derived\":{", f);
    for (size_t d = 0; d < kfm__nderived; d++) {
      double v;
      fprintf(f, "%s\"%s\":", d ? "," : "", kfm__derived_defs[d].name);
      if (kfm_report_derived(r, i, kfm__derived_defs[d].name, &v, NULL) == 0) {
        json_num(f, v);
      } else {
        fputs("null", f);
      }
    }
    fputc('}', f);
    fputs(",\"metrics\":{", f);
    for (size_t m = 0; m < r->nm; m++) {
      fputs(m ? "," : "", f);
      kfm__json_str(f, r->metrics[m].name);
      fputs(":{\"inclusive\":", f);
      json_num(f, n->inclusive[m]);
      fputs(",\"exclusive\":", f);
      json_num(f, n->exclusive[m]);
      fputc('}', f);
    }
    fputs("}}", f);
  }
  fputs("],\"edges\":{", f);
  for (int k = 0; k < 2; k++) {
    fprintf(f, "%s\"%s\":[", k ? "," : "", k == KFM_EDGE_NESTED ? "nested" : "follows");
    for (size_t i = 0; i < r->nedges[k]; i++) {
      const kfm_edge_t *e = &r->edges[k][i];
      fputs(i ? ",{\"from\":" : "{\"from\":", f);
      if (e->from == KFM_NODE_ROOT) {
        fputs("null", f);
      } else {
        fprintf(f, "%u", e->from);
      }
      fprintf(f, ",\"to\":%u,\"count\":%llu}", e->to, (unsigned long long)e->count);
    }
    fputc(']', f);
  }
  fputs("},\"sample_metrics\":", f);
  json_metrics(f, r->smetrics, r->ns);
  fputs(",\"samples\":[", f);
  for (size_t i = 0; i < r->nsamples; i++) {
    fputs(i ? ",{\"t_ns\":" : "{\"t_ns\":", f);
    json_num(f, r->st[i]);
    fputs(",\"values\":[", f);
    for (size_t m = 0; m < r->ns; m++) {
      fputs(m ? "," : "", f);
      json_num(f, r->svals[i * r->ns + m]);
    }
    fputs("],\"active\":[", f);
    for (uint32_t j = r->sfirst[i]; j < r->sfirst[i + 1]; j++) {
      fprintf(f, "%s[%u,%u,%d]", j > r->sfirst[i] ? "," : "", r->athread[j], r->anode[j],
              r->acpu[j]);
    }
    fputs("]}", f);
  }
  fputs("],\"events\":[", f);
  for (size_t i = 0; i < r->nevents; i++) {
    const kfm_event_t *e = &r->events[i];
    fputs(i ? ",{\"t_ns\":" : "{\"t_ns\":", f);
    json_num(f, e->t_ns);
    fprintf(f, ",\"thread\":%u,\"node\":%u,\"kind\":\"%s\",\"values\":[", e->thread, e->node,
            e->kind == KFM_EVENT_ENTER ? "enter" : "exit");
    for (size_t m = 0; m < r->nm; m++) {
      fputs(m ? "," : "", f);
      json_num(f, e->values[m]);
    }
    fputs("]}", f);
  }
  fputc(']', f);
  json_backend_info(f, ses);
  fputs("}\n", f);
}

int kfm_session_backend_json(kfm_session_t *s, const char *backend, char **json) {
  if (s == NULL || backend == NULL || json == NULL) {
    return KFM_EINVAL;
  }
  *json = NULL;
  if (atomic_load(&s->state) == KFM__FORKED) {
    return kfm__err(s, KFM_ESTATE, "backend '%s': this session was inherited through fork() "
                                   "and calls no backend in the child", backend);
  }
  for (unsigned i = 0; i < s->nbackends; i++) {
    const struct kfm__backend_use *u = &s->be[i];
    if (strcmp(u->ops->name, backend) == 0 &&
        KFM__BACKEND_HAS(u->ops, KFM_BACKEND_ABI_2, export_json)) {
      size_t len = 0;
      FILE *f = open_memstream(json, &len);
      if (f == NULL) {
        return KFM_ENOMEM;
      }
      kfm__backend_export_json(u->ops, u->state, f);
      if (fclose(f) != 0) {
        free(*json);
        *json = NULL;
        return KFM_ENOMEM;
      }
      return 0;
    }
  }
  return kfm__err(s, KFM_EBACKEND, "backend '%s' is not enabled in this session or has no "
                                   "description", backend);
}

int kfm__export_json(kfm_session_t *s, const kfm_report_t *r, const char *path) {
  struct kfm__outfile *o;
  int rc = kfm__outfile_open(s, "export", path, &o);
  if (rc) {
    return rc;
  }
  json_write(kfm__outfile_stream(o), s, r);
  return kfm__outfile_close(s, o, 1);
}

int kfm_session_export(kfm_session_t *s, const char *path) {
  if (s == NULL || path == NULL || path[0] == '\0') {
    return s ? kfm__err(s, KFM_EINVAL, "export: empty path") : KFM_EINVAL;
  }
  kfm_report_t *r;
  int rc = kfm_session_report(s, &r);
  if (rc) {
    return rc;
  }
  rc = kfm__export_json(s, r, path);
  kfm_report_free(r);
  return rc;
}

static void print_value(FILE *f, const kfm_metric_info_t *m, double v) {
  if (strcmp(m->unit, "bytes") == 0) {
    fprintf(f, "%s=%+.2fMB", m->name, v / (1024.0 * 1024.0));
  } else if (strcmp(m->unit, "ns") == 0) {
    fprintf(f, "%s=%.2fms", m->name, v / 1e6);
  } else {
    fprintf(f, "%s=%.0f", m->name, v);
  }
}

int kfm_session_print(kfm_session_t *s, void *file) {
  FILE *f = file;
  if (s == NULL || f == NULL) {
    return KFM_EINVAL;
  }
  kfm_report_t *r;
  int rc = kfm_session_report(s, &r);
  if (rc) {
    return rc;
  }
  const kfm_summary_t *sum = &r->sum;
  fprintf(f, "kfm profile: level %s, wall %.2f ms, %u thread(s), clock %s\n",
          kfm_level_name(sum->level), sum->wall_ns / 1e6, sum->threads, kfm__clock_describe());
  fprintf(f, "%-24s %8s %11s %11s %11s %11s %11s\n", "node", "calls", "total ms", "excl ms",
          "mean ms", "p50 ms", "p99 ms");
  for (size_t i = 0; i < r->nnodes; i++) {
    const kfm_node_stats_t *n = &r->nodes[i];
    fprintf(f, "%-24.24s %8llu %11.3f %11.3f %11.3f %11.3f %11.3f\n", n->name,
            (unsigned long long)n->count, n->total_ns / 1e6, n->exclusive_ns / 1e6,
            n->mean_ns / 1e6, n->p50_ns / 1e6, n->p99_ns / 1e6);
    if (r->nm) {
      fputs("    ", f);
      for (size_t m = 0; m < r->nm; m++) {
        fputs(m ? "  " : "", f);
        print_value(f, &r->metrics[m], n->inclusive[m]);
      }
      if (isfinite(n->peak_rss)) {
        fprintf(f, "  peak_rss=%.2fMB", n->peak_rss / (1024.0 * 1024.0));
      }
      fputc('\n', f);
    }
  }
  if (sum->rate_hz > 0) {
    fprintf(f,
            "sampler: %.0f Hz, %llu samples (%llu dropped, %llu ticks missed), %.2f ms CPU (%.2f%% "
            "of a core)",
            sum->rate_hz, (unsigned long long)sum->samples,
            (unsigned long long)sum->samples_dropped, (unsigned long long)sum->sampler_missed,
            sum->sampler_cpu_ns / 1e6,
            sum->wall_ns > 0 ? 100.0 * sum->sampler_cpu_ns / sum->wall_ns : 0.0);
    if (isfinite(sum->sampler_late_p99_ns)) {
      fprintf(f, ", p99 lateness %.0f us", sum->sampler_late_p99_ns / 1e3);
    }
    fputc('\n', f);
  }
  if (sum->unbalanced || sum->events_dropped || sum->edges_dropped) {
    fprintf(f, "warnings: %llu unbalanced exits/unclosed nodes, %llu trace events dropped, %llu "
               "edges dropped\n",
            (unsigned long long)sum->unbalanced, (unsigned long long)sum->events_dropped,
            (unsigned long long)sum->edges_dropped);
  }
  fputs("backends:\n", f);
  for (size_t i = 0; i < r->nb; i++) {
    fprintf(f, "  %-9s %s: %s\n", r->bs[i].name,
            r->bs[i].enabled ? "enabled" : (r->bs[i].available ? "off" : "unavailable"),
            r->bs[i].reason);
  }
  kfm_report_free(r);
  return 0;
}
