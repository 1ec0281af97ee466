/*
 * gpu_gauge.c - the logic the GPU SMI backends (backends/nvml/nvml.c,
 * backends/rocm_smi/rocm_smi.c) share: reason/note formatting, dlsym table
 * resolution, per-device gauge definitions, publishing and sampling the
 * poller threads' values, starting those threads, and the common parts of
 * the export JSON.  See gpu_gauge.h for why it is one module.  No global
 * state; kfm__gpu_sample runs on the sampler thread and only loads atomics.
 */
#include "gpu_gauge.h"

#include <stdarg.h>
#include <string.h>


void kfm__gpu_fmt(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  if (buf == NULL || len == 0) {
    return;
  }
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

void kfm__gpu_append(char *buf, size_t len, const char *fmt, ...) {
  size_t n = strlen(buf);
  va_list ap;
  if (n + 3 >= len) {
    return;
  }
  if (n) {
    memcpy(buf + n, "; ", 3);
    n += 2;
  }
  va_start(ap, fmt);
  vsnprintf(buf + n, len - n, fmt, ap);
  va_end(ap);
}

/* Each answer is copied into its slot through a void*: POSIX guarantees
 * data and function pointers share a representation. */
const struct kfm__gpu_sym *kfm__gpu_resolve(void *h, void *(*sym)(void *, const char *),
                                            char *(*error)(void), const struct kfm__gpu_sym *tab,
                                            size_t n, void *table, const char **err) {
  for (size_t i = 0; i < n; i++) {
    void *p;
    error(); /* clear a stale error so the one below is dlsym's */
    p = sym(h, tab[i].name);
    if (p == NULL && tab[i].required) {
      const char *e = error();
      *err = e ? e : "no error text";
      return &tab[i];
    }
    memcpy((char *)table + tab[i].off, &p, sizeof p);
  }
  return NULL;
}

void kfm__gpu_dev_defs(struct kfm__metric_def *defs, char *names, size_t name_size,
                       const char *prefix, unsigned index, const struct kfm__gpu_metric *metric,
                       unsigned nmet, _Atomic uint64_t *val, _Atomic int64_t *err,
                       int64_t pending) {
  for (unsigned m = 0; m < nmet; m++) {
    char *name = names + m * name_size;
    snprintf(name, name_size, "%s.gpu%u.%s", prefix, index, metric[m].suffix);
    defs[m].name = name;
    defs[m].unit = metric[m].unit;
    defs[m].kind = KFM_METRIC_GAUGE;
    atomic_init(&val[m], KFM_GPU_UNMEASURED);
    atomic_init(&err[m], pending);
  }
}

void kfm__gpu_put(_Atomic uint64_t *val, _Atomic int64_t *err, int64_t rc, uint64_t v) {
  atomic_store_explicit(val, rc == 0 ? v : KFM_GPU_UNMEASURED, memory_order_relaxed);
  atomic_store_explicit(err, rc, memory_order_relaxed);
}

void kfm__gpu_sample(const _Atomic uint64_t *val, unsigned n, uint64_t *out) {
  for (unsigned i = 0; i < n; i++) {
    out[i] = atomic_load_explicit(&val[i], memory_order_relaxed);
  }
}

int kfm__gpu_start_pollers(struct kfm__poller *p, void *(*fast)(void *), void *(*pcie)(void *),
                           void *arg, const char *backend, char *errbuf, size_t errlen) {
  if (kfm__poller_init(p) != 0) {
    kfm__gpu_fmt(errbuf, errlen, "%s: cannot set up the poller threads' mutex", backend);
    return KFM_ETHREAD;
  }
  if (kfm__poller_start(p, fast, arg) != 0) {
    kfm__gpu_fmt(errbuf, errlen, "%s: cannot start the poller thread", backend);
    kfm__poller_destroy(p);
    return KFM_ETHREAD;
  }
  if (kfm__poller_start(p, pcie, arg) != 0) {
    kfm__gpu_fmt(errbuf, errlen, "%s: cannot start the PCIe poller thread", backend);
    kfm__poller_destroy(p); /* stops and joins the fast thread first */
    return KFM_ETHREAD;
  }
  return 0;
}

void kfm__gpu_export_unavailable(FILE *f, const char *reason) {
  fputs("{\"available\":false,\"reason\":", f);
  kfm__json_str(f, reason);
  fputc('}', f);
}

/* A string field's value, or null for "" (unknown). */
static void gpu_json_str_or_null(FILE *f, const char *s) {
  if (s[0]) {
    kfm__json_str(f, s);
  } else {
    fputs("null", f);
  }
}

void kfm__gpu_export_dev(FILE *f, unsigned d, unsigned index, const char *name, const char *bus_id,
                         uint64_t mem_total) {
  fprintf(f, "%s{\"index\":%u,\"name\":", d ? "," : "", index);
  gpu_json_str_or_null(f, name);
  fputs(",\"pci_bus_id\":", f);
  gpu_json_str_or_null(f, bus_id);
  if (mem_total != KFM_GPU_UNMEASURED) {
    fprintf(f, ",\"memory_total\":%llu", (unsigned long long)mem_total);
  } else {
    fputs(",\"memory_total\":null", f);
  }
}

void kfm__gpu_export_unmeasured(FILE *f, const _Atomic int64_t *err,
                                const struct kfm__gpu_metric *metric, unsigned nmet,
                                void (*why)(int64_t e, char *buf, size_t len)) {
  int first = 1;
  /* Why each currently unmeasured value is so. */
  fputs(",\"unmeasured\":{", f);
  for (unsigned m = 0; m < nmet; m++) {
    int64_t e = atomic_load_explicit(&err[m], memory_order_relaxed);
    char buf[160];
    if (e == 0) {
      continue;
    }
    why(e, buf, sizeof buf);
    fprintf(f, "%s\"%s\":", first ? "" : ",", metric[m].suffix);
    kfm__json_str(f, buf);
    first = 0;
  }
  fputs("}}", f);
}

void kfm__gpu_export_end(FILE *f, const char *skipped) {
  fputc(']', f);
  if (skipped[0]) {
    fputs(",\"skipped\":", f);
    kfm__json_str(f, skipped);
  }
  fputc('}', f);
}
