/*
 * report.c - "kfm report FILE...": reads kfm exports (schema kfm.profile,
 * one process each) and merged MPI profiles (schema kfm.mpi_profile, every
 * rank of a job, written by libkfm_mpi at MPI_Finalize), and prints one
 * table per node.  With one process: calls and times.  With several ranks:
 * per node the min / mean / max of its inclusive time across ranks, the
 * imbalance max/mean (1.0 is perfect balance; Score-P and Caliper's
 * mpireport show the same ratio) and the slowest rank.  A rank that never
 * entered a node counts as 0 for it: the others waited for it elsewhere.
 *
 * An input that cannot be read, is not JSON or is cut short (a killed rank)
 * is named on stderr and the others are still merged (exit status 3).  An
 * export the engine marked truncated (exit or signal before stop) is
 * complete JSON and is merged, with its reason printed.
 *
 * --format hatchet writes Hatchet's literal format (a list of trees of
 * {"frame":{"name","type"},"metrics","children"}), which
 * hatchet.GraphFrame.from_literal reads; see report_hatchet.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "jsonr.h"

struct rnode {
  const char *name;
  double count, active, total, excl, min, max;
  double bytes; /* MPI nodes: bytes the calls moved; NAN otherwise */
  double peers; /* MPI nodes: distinct peer ranks; NAN otherwise */
};

struct redge {
  const char *from; /* NULL: a top-level node */
  const char *to;
  double count;
};

struct rprof {
  const char *src;
  int rank;
  const char *host;
  const char *truncated;
  double wall_ns;
  size_t nn, ne;
  struct rnode *nodes;
  struct redge *edges;
};

struct rset {
  size_t n, cap;
  struct rprof *p;
  struct jr_val **docs; /* parsed files: the strings above point into them */
  size_t ndocs;
};

static struct rprof *rset_add(struct rset *rs) {
  if (rs->n == rs->cap) {
    rs->cap = rs->cap ? rs->cap * 2 : 16;
    rs->p = realloc(rs->p, rs->cap * sizeof *rs->p);
    if (rs->p == NULL) {
      fprintf(stderr, "kfm report: out of memory\n");
      exit(1);
    }
  }
  struct rprof *p = &rs->p[rs->n++];
  memset(p, 0, sizeof *p);
  return p;
}

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz);
  if (p == NULL) {
    fprintf(stderr, "kfm report: out of memory\n");
    exit(1);
  }
  return p;
}

static void node_from(struct rnode *d, const struct jr_val *n) {
  d->name = jr_str(n, "name");
  d->count = jr_num(n, "count", 0);
  d->active = jr_num(n, "active", 0);
  d->total = jr_num(n, "total_ns", 0);
  d->excl = jr_num(n, "exclusive_ns", 0);
  d->min = jr_num(n, "min_ns", NAN);
  d->max = jr_num(n, "max_ns", NAN);
  d->bytes = jr_num(n, "bytes", NAN);
  d->peers = jr_num(n, "peers", NAN);
}

/* A node never left (count 0, still active: the root of a program that
 * called exit() on another thread, or a snapshot taken at MPI_Finalize) is
 * counted as open for the whole run, the most it can have been. */
static void open_to_wall(struct rprof *p) {
  for (size_t i = 0; i < p->nn; i++) {
    struct rnode *d = &p->nodes[i];
    if (d->count == 0 && d->active > 0 && d->total == 0 && isfinite(p->wall_ns)) {
      d->total = p->wall_ns; /* exclusive time stays unknown (0) */
    }
  }
}

/* One kfm.profile export: nodes by id, edges by id (null from = top). */
static int load_profile(struct rprof *p, const struct jr_val *doc, char *err, size_t errlen) {
  const struct jr_val *nodes = jr_get(doc, "nodes");
  if (nodes == NULL || nodes->type != JR_ARR) {
    snprintf(err, errlen, "no \"nodes\" array");
    return -1;
  }
  p->nodes = xcalloc(nodes->n, sizeof *p->nodes);
  double maxid = -1;
  for (size_t i = 0; i < nodes->n; i++) {
    maxid = fmax(maxid, jr_num(&nodes->items[i], "id", -1));
  }
  /* Ids are below max_nodes; the table is as large as the largest seen. */
  size_t nid = maxid >= 0 && maxid < 16777216 ? (size_t)maxid + 1 : 0;
  const char **byid = xcalloc(nid, sizeof *byid);
  for (size_t i = 0; i < nodes->n; i++) {
    struct rnode *d = &p->nodes[p->nn];
    node_from(d, &nodes->items[i]);
    if (d->name == NULL) {
      continue;
    }
    double id = jr_num(&nodes->items[i], "id", -1);
    if (id >= 0 && (size_t)id < nid) {
      byid[(size_t)id] = d->name;
    }
    p->nn++;
  }
  const struct jr_val *nested = jr_get(jr_get(doc, "edges"), "nested");
  if (nested && nested->type == JR_ARR) {
    p->edges = xcalloc(nested->n, sizeof *p->edges);
    for (size_t i = 0; i < nested->n; i++) {
      const struct jr_val *e = &nested->items[i];
      double from = jr_num(e, "from", -1), to = jr_num(e, "to", -1);
      if (to < 0 || (size_t)to >= nid || byid[(size_t)to] == NULL) {
        continue;
      }
      struct redge *d = &p->edges[p->ne++];
      d->from = from >= 0 && (size_t)from < nid ? byid[(size_t)from] : NULL;
      d->to = byid[(size_t)to];
      d->count = jr_num(e, "count", 0);
    }
  }
  free(byid);
  p->wall_ns = jr_num(jr_get(doc, "summary"), "wall_ns", NAN);
  open_to_wall(p);
  const struct jr_val *tr = jr_get(doc, "truncated");
  if (tr && tr->type == JR_OBJ) {
    p->truncated = jr_str(tr, "reason");
    if (p->truncated == NULL) {
      p->truncated = "truncated";
    }
  } else if (tr && tr->type == JR_STR) {
    p->truncated = tr->str;
  }
  return 0;
}

/* A kfm.mpi_profile: {"ranks":[{"rank","host","wall_ns","truncated",
 * "nodes":[...names...],"edges":[{"from":name|null,"to":name,"count"}]}]}. */
static int load_mpi(struct rset *rs, const char *src, const struct jr_val *doc, char *err,
                    size_t errlen) {
  const struct jr_val *ranks = jr_get(doc, "ranks");
  if (ranks == NULL || ranks->type != JR_ARR || ranks->n == 0) {
    snprintf(err, errlen, "no \"ranks\" array");
    return -1;
  }
  for (size_t r = 0; r < ranks->n; r++) {
    const struct jr_val *rk = &ranks->items[r];
    struct rprof *p = rset_add(rs);
    p->src = src;
    p->rank = (int)jr_num(rk, "rank", (double)r);
    p->host = jr_str(rk, "host");
    p->truncated = jr_str(rk, "truncated");
    p->wall_ns = jr_num(rk, "wall_ns", NAN);
    const struct jr_val *nodes = jr_get(rk, "nodes");
    const struct jr_val *edges = jr_get(rk, "edges");
    size_t nn = nodes && nodes->type == JR_ARR ? nodes->n : 0;
    size_t ne = edges && edges->type == JR_ARR ? edges->n : 0;
    p->nodes = xcalloc(nn, sizeof *p->nodes);
    p->edges = xcalloc(ne, sizeof *p->edges);
    for (size_t i = 0; i < nn; i++) {
      node_from(&p->nodes[p->nn], &nodes->items[i]);
      p->nn += p->nodes[p->nn].name != NULL;
    }
    open_to_wall(p);
    for (size_t i = 0; i < ne; i++) {
      struct redge *d = &p->edges[p->ne];
      d->from = jr_str(&edges->items[i], "from");
      d->to = jr_str(&edges->items[i], "to");
      d->count = jr_num(&edges->items[i], "count", 0);
      p->ne += d->to != NULL;
    }
  }
  return 0;
}

/* Reads every file; returns how many could not be read. */
static size_t load_all(struct rset *rs, char **files, size_t nfiles) {
  size_t bad = 0;
  int next_rank = 0;
  rs->docs = xcalloc(nfiles, sizeof *rs->docs);
  for (size_t i = 0; i < nfiles; i++) {
    char err[512];
    struct jr_val *doc = jr_parse_file(files[i], err, sizeof err);
    if (doc == NULL) {
      fprintf(stderr, "kfm report: skipped %s\n", err);
      bad++;
      continue;
    }
    rs->docs[rs->ndocs++] = doc;
    const char *schema = jr_str(doc, "schema");
    int rc;
    if (schema && strcmp(schema, "kfm.profile") == 0) {
      struct rprof *p = rset_add(rs);
      p->src = files[i];
      p->rank = next_rank++;
      rc = load_profile(p, doc, err, sizeof err);
      if (rc) {
        rs->n--;
        next_rank--;
      }
    } else if (schema && strcmp(schema, "kfm.mpi_profile") == 0) {
      rc = load_mpi(rs, files[i], doc, err, sizeof err);
    } else {
      snprintf(err, sizeof err,
               "not a kfm export (schema '%s'; kfm report reads kfm.profile "
               "and kfm.mpi_profile)",
               schema ? schema : "missing");
      rc = -1;
    }
    if (rc) {
      fprintf(stderr, "kfm report: skipped %s: %s\n", files[i], err);
      bad++;
    }
  }
  return bad;
}

/* ---- merge across ranks ------------------------------------------------- */

struct mnode {
  const char *name;
  size_t ranks; /* ranks that entered it */
  double calls; /* summed over ranks */
  double active;
  double tmin, tmean, tmax; /* inclusive ns across all ranks (0 for a rank without it) */
  double emean;             /* exclusive ns, mean across ranks */
  double cmin, cmax;        /* calls per rank */
  double dmin, dmax;        /* shortest and longest single call */
  double bytes, peers;      /* MPI: summed bytes, most peers on one rank */
  int slowest;              /* rank with tmax */
  const char *slowest_src;
  double *per_rank; /* inclusive ns of each profile, in set order */
};

static struct mnode *merge(const struct rset *rs, size_t *nout) {
  size_t cap = 64, n = 0;
  struct mnode *m = xcalloc(cap, sizeof *m);
  for (size_t r = 0; r < rs->n; r++) {
    for (size_t i = 0; i < rs->p[r].nn; i++) {
      const char *name = rs->p[r].nodes[i].name;
      size_t k = 0;
      while (k < n && strcmp(m[k].name, name) != 0) {
        k++;
      }
      if (k == n) {
        if (n == cap) {
          cap *= 2;
          m = realloc(m, cap * sizeof *m);
          if (m == NULL) {
            fprintf(stderr, "kfm report: out of memory\n");
            exit(1);
          }
        }
        memset(&m[n], 0, sizeof m[n]);
        m[n].name = name;
        m[n].per_rank = xcalloc(rs->n, sizeof(double));
        m[n].dmin = INFINITY;
        m[n].dmax = -INFINITY;
        m[n].cmin = INFINITY;
        m[n].bytes = NAN;
        m[n].peers = NAN;
        n++;
      }
      const struct rnode *d = &rs->p[r].nodes[i];
      struct mnode *x = &m[k];
      x->per_rank[r] += d->total;
      x->ranks++;
      x->calls += d->count;
      x->active += d->active;
      x->emean += d->excl / (double)rs->n;
      x->cmax = fmax(x->cmax, d->count);
      if (d->count > 0) {
        x->dmin = fmin(x->dmin, d->min);
        x->dmax = fmax(x->dmax, d->max);
      }
      if (!isnan(d->bytes)) {
        x->bytes = (isnan(x->bytes) ? 0 : x->bytes) + d->bytes;
      }
      if (!isnan(d->peers)) {
        x->peers = isnan(x->peers) ? d->peers : fmax(x->peers, d->peers);
      }
    }
  }
  for (size_t k = 0; k < n; k++) {
    struct mnode *x = &m[k];
    x->tmin = INFINITY;
    x->tmax = -INFINITY;
    double sum = 0;
    for (size_t r = 0; r < rs->n; r++) {
      double t = x->per_rank[r];
      sum += t;
      x->tmin = fmin(x->tmin, t);
      if (t > x->tmax) {
        x->tmax = t;
        x->slowest = rs->p[r].rank;
        x->slowest_src = rs->p[r].src;
      }
    }
    x->tmean = rs->n ? sum / (double)rs->n : 0;
    /* A rank missing the node has 0 calls there. */
    x->cmin = x->ranks < rs->n ? 0 : x->cmin;
    if (x->ranks == rs->n) {
      x->cmin = INFINITY;
      for (size_t r = 0; r < rs->n; r++) {
        for (size_t i = 0; i < rs->p[r].nn; i++) {
          if (strcmp(rs->p[r].nodes[i].name, x->name) == 0) {
            x->cmin = fmin(x->cmin, rs->p[r].nodes[i].count);
          }
        }
      }
    }
  }
  *nout = n;
  return m;
}

static double imbalance(const struct mnode *x) {
  return x->tmean > 0 ? x->tmax / x->tmean : NAN;
}

/* ---- formats ------------------------------------------------------------ */

static void num(FILE *f, double v) {
  if (isfinite(v)) {
    fprintf(f, "%.17g", v);
  } else {
    fputs("null", f);
  }
}

static void out_json(FILE *f, const struct rset *rs, const struct mnode *m, size_t n, size_t bad) {
  fprintf(f, "{\"schema\":\"kfm.report\",\"profiles\":%zu,\"unreadable\":%zu,\"ranks\":[", rs->n,
          bad);
  for (size_t r = 0; r < rs->n; r++) {
    fprintf(f, "%s{\"rank\":%d,\"source\":", r ? "," : "", rs->p[r].rank);
    jr_write_str(f, rs->p[r].src);
    fputs(",\"wall_ns\":", f);
    num(f, rs->p[r].wall_ns);
    fputs(",\"truncated\":", f);
    if (rs->p[r].truncated) {
      jr_write_str(f, rs->p[r].truncated);
    } else {
      fputs("null", f);
    }
    fputc('}', f);
  }
  fputs("],\"nodes\":[", f);
  for (size_t k = 0; k < n; k++) {
    const struct mnode *x = &m[k];
    fputs(k ? ",{\"name\":" : "{\"name\":", f);
    jr_write_str(f, x->name);
    fprintf(f, ",\"ranks\":%zu,\"slowest_rank\":%d", x->ranks, x->slowest);
    const struct {
      const char *k;
      double v;
    } kv[] = {
        {"calls", x->calls},       {"calls_min", x->cmin},          {"calls_max", x->cmax},
        {"active", x->active},     {"total_ns_min", x->tmin},       {"total_ns_mean", x->tmean},
        {"total_ns_max", x->tmax}, {"exclusive_ns_mean", x->emean}, {"call_ns_min", x->dmin},
        {"call_ns_max", x->dmax},  {"imbalance", imbalance(x)},     {"bytes", x->bytes},
        {"peers", x->peers}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
      fprintf(f, ",\"%s\":", kv[i].k);
      num(f, kv[i].v);
    }
    fputs(",\"total_ns_per_rank\":[", f);
    for (size_t r = 0; r < rs->n; r++) {
      if (r) {
        fputc(',', f);
      }
      num(f, x->per_rank[r]);
    }
    fputs("]}", f);
  }
  fputs("]}\n", f);
}

static void csv_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"') {
      fputc('"', f);
    }
    fputc(*s, f);
  }
  fputc('"', f);
}

static void out_csv(FILE *f, const struct rset *rs, const struct mnode *m, size_t n) {
  fputs("node,ranks,calls,calls_min,calls_max,total_ms_min,total_ms_mean,total_ms_max,"
        "excl_ms_mean,imbalance,slowest_rank,bytes",
        f);
  for (size_t r = 0; r < rs->n; r++) {
    fprintf(f, ",rank%d_ms", rs->p[r].rank);
  }
  fputc('\n', f);
  for (size_t k = 0; k < n; k++) {
    const struct mnode *x = &m[k];
    csv_str(f, x->name);
    fprintf(f, ",%zu,%.0f,%.0f,%.0f,%.6f,%.6f,%.6f,%.6f,%.4f,%d,", x->ranks, x->calls, x->cmin,
            x->cmax, x->tmin / 1e6, x->tmean / 1e6, x->tmax / 1e6, x->emean / 1e6, imbalance(x),
            x->slowest);
    if (!isnan(x->bytes)) {
      fprintf(f, "%.0f", x->bytes);
    }
    for (size_t r = 0; r < rs->n; r++) {
      fprintf(f, ",%.6f", x->per_rank[r] / 1e6);
    }
    fputc('\n', f);
  }
}

static void out_table(FILE *f, const struct rset *rs, const struct mnode *m, size_t n, int md) {
  const char *sep = md ? " | " : " ";
  /* As wide as the longest name, within reason (region names carry their
   * source location). */
  int w = 16;
  for (size_t k = 0; k < n; k++) {
    int l = (int)strlen(m[k].name);
    w = l > w ? l : w;
  }
  w = w > 72 ? 72 : w;
  if (md) {
    fputs("| ", f);
  }
  if (rs->n == 1) {
    fprintf(f, "%-*s%s%10s%s%12s%s%12s%s%12s%s%12s%s%12s", w, "node", sep, "calls", sep, "total ms",
            sep, "excl ms", sep, "mean us", sep, "min us", sep, "max us");
    fputs(md ? " |\n|---|--:|--:|--:|--:|--:|--:|\n" : "\n", f);
    for (size_t k = 0; k < n; k++) {
      const struct mnode *x = &m[k];
      fprintf(f, "%s%-*.*s%s%10.0f%s%12.3f%s%12.3f%s%12.3f%s%12.3f%s%12.3f%s\n", md ? "| " : "", w,
              md ? 255 : w, x->name, sep, x->calls, sep, x->tmean / 1e6, sep, x->emean / 1e6, sep,
              x->calls > 0 ? x->tmean / x->calls / 1e3 : 0.0, sep,
              isfinite(x->dmin) ? x->dmin / 1e3 : 0.0, sep, isfinite(x->dmax) ? x->dmax / 1e3 : 0.0,
              md ? " |" : "");
    }
    return;
  }
  fprintf(f, "%-*s%s%5s%s%10s%s%11s%s%11s%s%11s%s%9s%s%8s", w, "node", sep, "ranks", sep, "calls",
          sep, "min ms", sep, "mean ms", sep, "max ms", sep, "max/mean", sep, "slowest");
  fputs(md ? " |\n|---|--:|--:|--:|--:|--:|--:|--:|\n" : "\n", f);
  for (size_t k = 0; k < n; k++) {
    const struct mnode *x = &m[k];
    char slow[32];
    snprintf(slow, sizeof slow, "rank %d", x->slowest);
    fprintf(f, "%s%-*.*s%s%5zu%s%10.0f%s%11.3f%s%11.3f%s%11.3f%s%9.2f%s%8s%s\n", md ? "| " : "", w,
            md ? 255 : w, x->name, sep, x->ranks, sep, x->calls, sep, x->tmin / 1e6, sep,
            x->tmean / 1e6, sep, x->tmax / 1e6, sep, imbalance(x), sep, slow, md ? " |" : "");
  }
}

static void out_text(FILE *f, const struct rset *rs, const struct mnode *m, size_t n, int md) {
  if (rs->n == 1) {
    fprintf(f, "%skfm report: %s, wall %.3f ms\n\n", md ? "## " : "", rs->p[0].src,
            rs->p[0].wall_ns / 1e6);
  } else {
    fprintf(f, "%skfm report: %zu ranks (inclusive time per rank; max/mean is the imbalance)\n\n",
            md ? "## " : "", rs->n);
  }
  out_table(f, rs, m, n, md);
  if (rs->n > 1 && rs->n <= 16) {
    /* Which rank spent what where (e.g. who waited in MPI_Allreduce). */
    fprintf(f, "\n%sinclusive ms per rank\n%s%-32s", md ? "### " : "", md ? "| " : "", "node");
    for (size_t r = 0; r < rs->n; r++) {
      fprintf(f, "%s%9s%-3d", md ? " | " : " ", "rank ", rs->p[r].rank);
    }
    fputs(md ? " |\n|---|" : "\n", f);
    for (size_t r = 0; md && r < rs->n; r++) {
      fputs("--:|", f);
    }
    fputs(md ? "\n" : "", f);
    for (size_t k = 0; k < n; k++) {
      fprintf(f, "%s%-32.*s", md ? "| " : "", md ? 255 : 32, m[k].name);
      for (size_t r = 0; r < rs->n; r++) {
        fprintf(f, "%s%12.3f", md ? " | " : " ", m[k].per_rank[r] / 1e6);
      }
      fputs(md ? " |\n" : "\n", f);
    }
  } else if (rs->n > 16) {
    fprintf(f, "\n(per-rank columns: --format csv or json)\n");
  }
  for (size_t k = 0; k < n; k++) {
    if (m[k].active > 0) {
      fprintf(f,
              "\n%s%s: %.0f activation(s) still open when the profile was taken (a root left "
              "by exit() on another thread, or a snapshot at MPI_Finalize), counted to the end "
              "of the run\n",
              md ? "> " : "", m[k].name, m[k].active);
    }
  }
  int any_bytes = 0;
  for (size_t k = 0; k < n; k++) {
    any_bytes |= !isnan(m[k].bytes);
  }
  if (any_bytes) {
    fprintf(f, "\n%sMPI calls (all ranks)\n", md ? "### " : "");
    for (size_t k = 0; k < n; k++) {
      if (!isnan(m[k].bytes)) {
        fprintf(f, "%s%-24s calls %.0f, bytes %.0f, peers (most on one rank) %.0f\n",
                md ? "- " : "  ", m[k].name, m[k].calls, m[k].bytes, m[k].peers);
      }
    }
  }
  for (size_t r = 0; r < rs->n; r++) {
    if (rs->p[r].truncated) {
      fprintf(f, "%srank %d (%s) is truncated: %s\n", md ? "\n> " : "\n", rs->p[r].rank,
              rs->p[r].src, rs->p[r].truncated);
    }
  }
}

/* Hatchet's literal format.  kfm aggregates per node name, not per calling
 * path, so the tree is rebuilt from the nested edges (parent -> child); a
 * node reached from several parents appears under each with its whole
 * totals (the export does not split them by parent).  With several ranks
 * the metrics are the means across ranks, plus the max and the imbalance. */
static void hatchet_node(FILE *f, const struct rset *rs, const struct mnode *m, size_t n,
                         const char *name, const char **path, int depth) {
  const struct mnode *x = NULL;
  for (size_t k = 0; k < n; k++) {
    if (strcmp(m[k].name, name) == 0) {
      x = &m[k];
    }
  }
  fputs("{\"frame\":{\"name\":", f);
  jr_write_str(f, name);
  fputs(",\"type\":\"region\"},\"metrics\":{\"time (inc)\":", f);
  num(f, x ? x->tmean / 1e9 : 0);
  fputs(",\"time\":", f);
  num(f, x ? x->emean / 1e9 : 0);
  fputs(",\"count\":", f);
  num(f, x ? x->calls : 0);
  fputs(",\"time (inc) max\":", f);
  num(f, x ? x->tmax / 1e9 : 0);
  fputs(",\"imbalance\":", f);
  num(f, x && isfinite(imbalance(x)) ? imbalance(x) : 1.0);
  fputs("},\"children\":[", f);
  path[depth] = name;
  int first = 1;
  /* Children: the union over ranks of nested edges from this node, each once. */
  for (size_t r = 0; r < rs->n; r++) {
    for (size_t e = 0; e < rs->p[r].ne; e++) {
      const struct redge *ed = &rs->p[r].edges[e];
      if (ed->from == NULL || strcmp(ed->from, name) != 0) {
        continue;
      }
      int seen = 0;
      for (size_t r2 = 0; r2 <= r && !seen; r2++) {
        for (size_t e2 = 0; e2 < (r2 == r ? e : rs->p[r2].ne); e2++) {
          const struct redge *o = &rs->p[r2].edges[e2];
          if (o->from && strcmp(o->from, name) == 0 && strcmp(o->to, ed->to) == 0) {
            seen = 1;
            break;
          }
        }
      }
      int cycle = 0;
      for (int d = 0; d <= depth; d++) {
        cycle |= strcmp(path[d], ed->to) == 0;
      }
      if (seen || cycle || depth >= 126) {
        continue; /* recursion is folded into the first activation */
      }
      if (!first) {
        fputc(',', f);
      }
      first = 0;
      hatchet_node(f, rs, m, n, ed->to, path, depth + 1);
    }
  }
  fputs("]}", f);
}

static void out_hatchet(FILE *f, const struct rset *rs, const struct mnode *m, size_t n) {
  const char *path[128];
  fputc('[', f);
  int first = 1;
  for (size_t k = 0; k < n; k++) {
    int top = 0, child = 0;
    for (size_t r = 0; r < rs->n; r++) {
      for (size_t e = 0; e < rs->p[r].ne; e++) {
        const struct redge *ed = &rs->p[r].edges[e];
        if (strcmp(ed->to, m[k].name) == 0) {
          top |= ed->from == NULL;
          child |= ed->from != NULL;
        }
      }
    }
    /* Roots: top-level nodes, and nodes with no recorded edge at all. */
    if (top || !child) {
      if (!first) {
        fputc(',', f);
      }
      first = 0;
      hatchet_node(f, rs, m, n, m[k].name, path, 0);
    }
  }
  fputs("]\n", f);
}

int kfm_cli_report(int argc, char **argv) {
  const char *format = "text", *out = NULL;
  char **files = calloc((size_t)argc + 1, sizeof *files);
  size_t nfiles = 0;
  for (int i = 1; i < argc; i++) {
    if ((strcmp(argv[i], "--format") == 0 || strcmp(argv[i], "-f") == 0) && i + 1 < argc) {
      format = argv[++i];
    } else if (strncmp(argv[i], "--format=", 9) == 0) {
      format = argv[i] + 9;
    } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      out = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      fprintf(stderr, "kfm report: unknown option '%s'\n", argv[i]);
      free(files);
      return 2;
    } else {
      files[nfiles++] = argv[i];
    }
  }
  static const char *const formats[] = {"text", "json", "csv", "markdown", "hatchet"};
  int fmt = -1;
  for (int k = 0; k < 5; k++) {
    fmt = strcmp(format, formats[k]) == 0 ? k : fmt;
  }
  if (fmt < 0 || nfiles == 0) {
    if (fmt < 0) {
      fprintf(stderr,
              "kfm report: unknown format '%s' (accepted: text, json, csv, markdown, "
              "hatchet)\n",
              format);
    } else {
      fprintf(stderr, "usage: kfm report [--format text|json|csv|markdown|hatchet] [-o FILE] "
                      "FILE...\n");
    }
    free(files);
    return 2;
  }
  kfm_cli_sort_files(files, nfiles);
  struct rset rs = {0};
  size_t bad = load_all(&rs, files, nfiles);
  if (rs.n == 0) {
    fprintf(stderr, "kfm report: no readable profile among %zu file(s)\n", nfiles);
    free(files);
    return 1;
  }
  size_t n;
  struct mnode *m = merge(&rs, &n);
  FILE *f = out ? fopen(out, "w") : stdout;
  if (f == NULL) {
    perror(out);
    return 1;
  }
  switch (fmt) {
  case 0:
    out_text(f, &rs, m, n, 0);
    break;
  case 1:
    out_json(f, &rs, m, n, bad);
    break;
  case 2:
    out_csv(f, &rs, m, n);
    break;
  case 3:
    out_text(f, &rs, m, n, 1);
    break;
  default:
    out_hatchet(f, &rs, m, n);
    break;
  }
  int werr = ferror(f);
  if (out) {
    werr |= fclose(f) != 0;
  } else {
    werr |= fflush(f) != 0;
  }
  for (size_t k = 0; k < n; k++) {
    free(m[k].per_rank);
  }
  free(m);
  for (size_t r = 0; r < rs.n; r++) {
    free(rs.p[r].nodes);
    free(rs.p[r].edges);
  }
  free(rs.p);
  for (size_t d = 0; d < rs.ndocs; d++) {
    jr_free(rs.docs[d]);
  }
  free(rs.docs);
  free(files);
  if (werr) {
    fprintf(stderr, "kfm report: cannot write %s\n", out ? out : "standard output");
    return 1;
  }
  return bad ? KFM_CLI_PARTIAL : 0;
}
