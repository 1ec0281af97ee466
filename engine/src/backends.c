/*
 * backends.c - the builtin backend list and the process-wide probe cache.
 * Backends whose dependency is not built are left out by the preprocessor;
 * a config that names one gets "not built" as the reason it is disabled.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

extern const struct kfm__backend kfm__backend_clock;
extern const struct kfm__backend kfm__backend_proc;
#ifdef KFM_HAVE_HWLOC
extern const struct kfm__backend kfm__backend_hwloc;
#endif
#ifdef KFM_HAVE_PAPI
extern const struct kfm__backend kfm__backend_papi;
#endif
#ifdef KFM_HAVE_CUPTI
extern const struct kfm__backend kfm__backend_cupti;
#endif
#ifdef KFM_HAVE_NVML
extern const struct kfm__backend kfm__backend_nvml;
#endif
#ifdef KFM_HAVE_ROCM_SMI
extern const struct kfm__backend kfm__backend_rocm_smi;
#endif

const struct kfm__backend *const kfm__builtin_backends[] = {
    &kfm__backend_clock,
    &kfm__backend_proc,
#ifdef KFM_HAVE_HWLOC
    &kfm__backend_hwloc,
#endif
#ifdef KFM_HAVE_PAPI
    &kfm__backend_papi,
#endif
#ifdef KFM_HAVE_CUPTI
    &kfm__backend_cupti,
#endif
#ifdef KFM_HAVE_NVML
    &kfm__backend_nvml,
#endif
#ifdef KFM_HAVE_ROCM_SMI
    &kfm__backend_rocm_smi,
#endif
    NULL,
};

/* Probing may load libraries and costs milliseconds (PAPI_library_init is
 * 2.3 ms here, CUPTI loads the CUDA libraries), and its answer is a property
 * of the process: each backend is probed once, when a session first wants it
 * (or kfm_backend_probe asks), and the answer is kept.  A BASIC session so
 * loads no counter or GPU library at all.  Written under probe_lock,
 * published by probe_done's release store, read-only afterwards. */
static char probe_reason[KFM__MAX_BACKENDS][256];
static int probe_avail[KFM__MAX_BACKENDS];
static _Atomic int probe_done[KFM__MAX_BACKENDS];
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;

static void probe_one(size_t i) {
  kfm__clock_init();
  if (atomic_load_explicit(&probe_done[i], memory_order_acquire)) {
    return;
  }
  pthread_mutex_lock(&probe_lock);
  if (!atomic_load_explicit(&probe_done[i], memory_order_relaxed)) {
    const struct kfm__backend *b = kfm__builtin_backends[i];
    probe_avail[i] = kfm__backend_probe(b, probe_reason[i], sizeof probe_reason[i]);
    if (probe_avail[i] && b->init && b->init() != 0) {
      probe_avail[i] = 0;
      snprintf(probe_reason[i], sizeof probe_reason[i], "process-wide initialisation failed");
    }
    if (probe_avail[i] && probe_reason[i][0] == '\0') {
      snprintf(probe_reason[i], sizeof probe_reason[i], "available");
    }
    atomic_store_explicit(&probe_done[i], 1, memory_order_release);
  }
  pthread_mutex_unlock(&probe_lock);
}

void kfm__backends_lock(int take) {
  if (take) {
    pthread_mutex_lock(&probe_lock);
  } else {
    pthread_mutex_unlock(&probe_lock);
  }
}

size_t kfm_backend_count(void) {
  size_t n = 0;
  while (kfm__builtin_backends[n]) {
    n++;
  }
  return n;
}

int kfm__backend_status(size_t i, const char **reason) {
  probe_one(i);
  *reason = probe_reason[i];
  return probe_avail[i];
}

int kfm__backend_probed(size_t i, const char **reason) {
  kfm__clock_init();
  if (!atomic_load_explicit(&probe_done[i], memory_order_acquire)) {
    return -1;
  }
  *reason = probe_reason[i];
  return probe_avail[i];
}

int kfm__backend_status_override(const char *name, int available, const char *reason) {
  for (size_t i = 0; kfm__builtin_backends[i] && i < KFM__MAX_BACKENDS; i++) {
    if (strcmp(kfm__builtin_backends[i]->name, name) == 0) {
      probe_one(i);
      probe_avail[i] = available;
      snprintf(probe_reason[i], sizeof probe_reason[i], "%s", reason);
      return 0;
    }
  }
  return KFM_EINVAL;
}

int kfm_backend_probe(size_t i, kfm_backend_status_t *out) {
  if (out == NULL || i >= kfm_backend_count()) {
    return KFM_ERANGE;
  }
  out->name = kfm__builtin_backends[i]->name;
  out->available = kfm__backend_status(i, &out->reason);
  out->enabled = 0;
  return 0;
}
