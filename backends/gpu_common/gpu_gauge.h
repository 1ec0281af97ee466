/*
 * gpu_gauge.h - what the GPU SMI backends (nvml, rocm_smi) do the same way:
 * bounded string formatting for reasons and notes, resolving a dlsym table
 * described by {name, offset, required} entries, naming and publishing one
 * gauge per (device, metric), the sample hook's copy of the published
 * values, starting the fast and PCIe poller threads, and the parts of the
 * export JSON every GPU device carries (index, name, PCI bus id, memory
 * total, why each value is unmeasured).
 *
 * Why one module.  Both backends read a vendor library on poller threads
 * (backends/gpu_common/poller.h), publish each value with its last status code in
 * relaxed atomics, and let the sampler copy them; only the library calls
 * and the error texts differ.  Keeping the shared part here means a fix to
 * the JSON or to the unmeasured rule reaches both.  Status codes are
 * int64_t so that every library's code type (NVML's int, ROCm SMI's
 * unsigned) and the backends' own negative codes fit without overlap; 0 is
 * success for both libraries.  Internal (kfm__gpu_*), no global state.
 */
#ifndef KFM_GPU_GAUGE_H
#define KFM_GPU_GAUGE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "poller.h"

/** A sample value that was not measured (read failed, unsupported, not yet
 * read): the engine's KFM__UNMEASURED, under the name the GPU code uses. */
#ifndef KFM_GPU_UNMEASURED
#define KFM_GPU_UNMEASURED KFM__UNMEASURED
#endif

/** snprintf into buf[len]; does nothing when buf is NULL or len 0. */
__attribute__((format(printf, 3, 4))) void kfm__gpu_fmt(char *buf, size_t len, const char *fmt,
                                                        ...);
/** Appends "; " (unless buf is empty) and a formatted item, truncating safely. */
__attribute__((format(printf, 3, 4))) void kfm__gpu_append(char *buf, size_t len, const char *fmt,
                                                           ...);

/** One entry of a backend's symbol table: where dlsym's answer for name goes. */
struct kfm__gpu_sym {
  const char *name;
  size_t off; /* offset of the function pointer in the backend's table */
  int required;
};

/**
 * Resolves tab[0..n) from handle h into table (a struct of function
 * pointers), clearing the loader's error before each lookup.  Returns NULL
 * when every required symbol was found; otherwise the first missing
 * required entry, with the loader's text (or "no error text") in *err.
 * Optional symbols that are missing are left NULL.
 */
const struct kfm__gpu_sym *kfm__gpu_resolve(void *h, void *(*sym)(void *, const char *),
                                            char *(*error)(void), const struct kfm__gpu_sym *tab,
                                            size_t n, void *table, const char **err);

/** A metric's name suffix and unit. */
struct kfm__gpu_metric {
  const char *suffix, *unit;
};

/**
 * Fills the nmet gauges of one device: names[m] = "<prefix>.gpu<index>.<suffix>"
 * (each name_size bytes), defs[m] pointing at it; val[m] unmeasured and
 * err[m] = pending until the first read.
 */
void kfm__gpu_dev_defs(struct kfm__metric_def *defs, char *names, size_t name_size,
                       const char *prefix, unsigned index, const struct kfm__gpu_metric *metric,
                       unsigned nmet, _Atomic uint64_t *val, _Atomic int64_t *err, int64_t pending);

/** Publishes one reading: v when rc is 0 (success), else KFM_GPU_UNMEASURED; and rc. */
void kfm__gpu_put(_Atomic uint64_t *val, _Atomic int64_t *err, int64_t rc, uint64_t v);

/** Sampler thread: copies n published values; no lock, no allocation. */
void kfm__gpu_sample(const _Atomic uint64_t *val, unsigned n, uint64_t *out);

/**
 * Initialises poller p and starts fast(arg) and pcie(arg) on it.  0, or
 * KFM_ETHREAD with "<backend>: cannot ..." in errbuf; on failure the poller
 * is destroyed (threads already started are stopped and joined).
 */
int kfm__gpu_start_pollers(struct kfm__poller *p, void *(*fast)(void *), void *(*pcie)(void *),
                           void *arg, const char *backend, char *errbuf, size_t errlen);

/** {"available":false,"reason":<reason>} */
void kfm__gpu_export_unavailable(FILE *f, const char *reason);
/**
 * Opens device d's object in the "devices" array: {"index":..,"name":..,
 * "pci_bus_id":..,"memory_total":.. with null for "" names and an unknown
 * (KFM_GPU_UNMEASURED) total.  The caller adds its own fields, then calls
 * kfm__gpu_export_unmeasured, which closes the object.
 */
void kfm__gpu_export_dev(FILE *f, unsigned d, unsigned index, const char *name, const char *bus_id,
                         uint64_t mem_total);
/**
 * ,"unmeasured":{"<suffix>":"<why>",...}} for each of the nmet values whose
 * err is not 0; why(e, buf, len) says why for code e.
 */
void kfm__gpu_export_unmeasured(FILE *f, const _Atomic int64_t *err,
                                const struct kfm__gpu_metric *metric, unsigned nmet,
                                void (*why)(int64_t e, char *buf, size_t len));
/** Closes the "devices" array, adds "skipped" when not empty, closes the object. */
void kfm__gpu_export_end(FILE *f, const char *skipped);

#endif /* KFM_GPU_GAUGE_H */
