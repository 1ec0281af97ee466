/*
 * backends.c - the one file of the engine that names backends: the builtin
 * table, the backends kfm knows but this build left out (with what to
 * configure to get them), their configuration keys, and the process-wide
 * probe cache.  Backends whose dependency is not built are left out by the
 * preprocessor; a config that names one gets "not built" as the reason it
 * is disabled.  Everywhere else the engine knows a backend only through its
 * ops table, and a metric only through its role.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "internal.h"

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

/* "clock": the engine's own clock (clock.c), listed so that reports show
 * its source and backends=clock keeps meaning "timestamps only".  It
 * measures nothing at transitions. */
static int clock_probe(char *reason, size_t len) {
  snprintf(reason, len, "%s", kfm__clock_describe());
  return 1;
}

static int clock_open(void *state, struct kfm__backend_ctx *ctx) {
  (void)state;
  ctx->n_transition = 0;
  ctx->n_sample = 0;
  return 0;
}

static const struct kfm__backend backend_clock = {
    .abi = KFM_BACKEND_ABI,
    .name = "clock",
    .caps = KFM_CAP_CLOCK,
    .min_level = KFM_LEVEL_BASIC,
    .probe = clock_probe,
    .open = clock_open,
};

const struct kfm__backend *const kfm__builtin_backends[] = {
    &backend_clock,
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

/* Keys of backends a build may leave out, accepted (and unused) without
 * them so that one configuration string works on every build.  A built
 * backend's own table (its `options`) is what counts when it is built. */
static const struct kfm__backend_option known_papi_options[] = {
    {"events", "events", KFM__OPT_LIST, offsetof(kfm_config_t, events),
     sizeof(((kfm_config_t *)0)->events), "event"},
    {NULL, NULL, 0, 0, 0, NULL},
};

/* Every backend kfm knows, built here or not: naming one that is not built
 * disables it with the reason instead of failing the configuration. */
static const struct {
  const char *name;
  const char *not_built;
  const struct kfm__backend_option *options; /* used when not built */
} known[] = {
    {"clock", "", NULL},
    {"proc", "", NULL},
    {"papi", "not built into this kfm: configure with -DKFM_WITH_PAPI=ON (needs libpapi-dev)",
     known_papi_options},
    {"hwloc", "not built into this kfm: configure with -DKFM_WITH_HWLOC=ON (needs libhwloc-dev)",
     NULL},
    {"cupti",
     "not built into this kfm: configure with -DKFM_WITH_CUPTI=ON (needs the CUDA toolkit)",
     NULL},
    {"nvml", "not built into this kfm: configure with -DKFM_WITH_NVML=ON", NULL},
    {"rocm_smi",
     "not built into this kfm: configure with -DKFM_WITH_ROCM_SMI=ON (needs librocm-smi-dev)",
     NULL},
};
#define NKNOWN (sizeof known / sizeof known[0])

static const struct kfm__backend *backend_builtin(const char *name) {
  for (size_t i = 0; kfm__builtin_backends[i]; i++) {
    if (strcmp(kfm__builtin_backends[i]->name, name) == 0) {
      return kfm__builtin_backends[i];
    }
  }
  return NULL;
}

int kfm__backend_known(const char *name) {
  for (size_t i = 0; name && i < NKNOWN; i++) {
    if (strcmp(name, known[i].name) == 0) {
      return 1;
    }
  }
  return 0;
}

const char *kfm__backend_known_name(size_t i) {
  return i < NKNOWN ? known[i].name : NULL;
}

const char *kfm__backend_not_built_reason(const char *name) {
  for (size_t i = 0; i < NKNOWN; i++) {
    if (strcmp(name, known[i].name) == 0 && backend_builtin(name) == NULL) {
      return known[i].not_built;
    }
  }
  return NULL;
}

const struct kfm__backend_option *kfm__backend_option_find(const char *key, char *canon,
                                                           size_t len) {
  for (size_t i = 0; i < NKNOWN; i++) {
    const struct kfm__backend *b = backend_builtin(known[i].name);
    const struct kfm__backend_option *o = b ? kfm__backend_options(b) : known[i].options;
    size_t n = strlen(known[i].name);
    for (; o && o->key; o++) {
      int ns =
          strncmp(key, known[i].name, n) == 0 && key[n] == '.' && strcmp(key + n + 1, o->key) == 0;
      if (ns || (o->legacy && strcmp(key, o->legacy) == 0)) {
        snprintf(canon, len, "%s.%s", known[i].name, o->key);
        return o;
      }
    }
  }
  return NULL;
}

const struct kfm__backend_option *kfm__backend_option_at(size_t i, char *canon, size_t len) {
  for (size_t k = 0; k < NKNOWN; k++) {
    const struct kfm__backend *b = backend_builtin(known[k].name);
    const struct kfm__backend_option *o = b ? kfm__backend_options(b) : known[k].options;
    for (; o && o->key; o++) {
      if (i-- == 0) {
        snprintf(canon, len, "%s.%s", known[k].name, o->key);
        return o;
      }
    }
  }
  return NULL;
}

void kfm__backend_option_keys(char *buf, size_t len) {
  size_t u = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < NKNOWN; i++) {
    const struct kfm__backend *b = backend_builtin(known[i].name);
    const struct kfm__backend_option *o = b ? kfm__backend_options(b) : known[i].options;
    for (; o && o->key && u < len; o++) {
      int w = o->legacy
                  ? snprintf(buf + u, len - u, "%s%s.%s (or %s)", u ? ", " : "", known[i].name,
                             o->key, o->legacy)
                  : snprintf(buf + u, len - u, "%s%s.%s", u ? ", " : "", known[i].name, o->key);
      u += w > 0 ? (size_t)w : 0;
    }
  }
}

void kfm__backend_names(char *buf, size_t len) {
  size_t u = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < NKNOWN && u < len; i++) {
    int w = snprintf(buf + u, len - u, "%s%s", i ? ", " : "", known[i].name);
    u += w > 0 ? (size_t)w : 0;
  }
}

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
  if (out == NULL) {
    return KFM_EINVAL;
  }
  if (i >= kfm_backend_count()) {
    return KFM_ERANGE;
  }
  out->name = kfm__builtin_backends[i]->name;
  out->available = kfm__backend_status(i, &out->reason);
  out->enabled = 0;
  return 0;
}
