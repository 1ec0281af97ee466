/*
 * config.c - session configuration: defaults, the "key=value,..." string
 * form (also read from KFM_CONFIG), and validation.  Every error names the
 * key, the value given and what would have been accepted, because the usual
 * reader is someone editing a batch script.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Every backend name kfm knows, built here or not: naming one that is not
 * built disables it with a reason instead of failing the configuration. */
static const char *const config_backend_names[] = {"clock", "proc", "papi", "hwloc",
                                                   "cupti", "nvml", "rocm_smi"};
#define CONFIG_NBACKEND_NAMES (sizeof config_backend_names / sizeof config_backend_names[0])
#define CONFIG_BACKENDS_ACCEPTED "clock, proc, papi, hwloc, cupti, nvml, rocm_smi"

static const char *const config_keys =
    "level, rate, backends, events, output, proc_root, trace, max_nodes, max_threads, samples, "
    "trace_ring, trace_events, sampler_cpu, proc_reads";

void kfm_config_init(kfm_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->abi = KFM_CONFIG_ABI;
  cfg->level = KFM_LEVEL_BASIC;
  cfg->trace = -1;
  cfg->sampler_cpu = KFM_SAMPLER_CPU_AUTO;
}

int kfm__backend_known(const char *name) {
  for (size_t i = 0; i < CONFIG_NBACKEND_NAMES; i++) {
    if (strcmp(name, config_backend_names[i]) == 0) {
      return 1;
    }
  }
  return 0;
}

static int config_level(const char *v, kfm_level_t *out) {
  for (int l = KFM_LEVEL_BASIC; l <= KFM_LEVEL_COMPREHENSIVE; l++) {
    if (strcasecmp(v, kfm_level_name(l)) == 0) {
      *out = (kfm_level_t)l;
      return 0;
    }
  }
  return -1;
}

static int config_u32(const char *v, uint32_t lo, uint32_t hi, uint32_t *out) {
  char *end;
  errno = 0;
  if (!isdigit((unsigned char)v[0])) {
    return -1;
  }
  unsigned long long x = strtoull(v, &end, 10);
  if (errno || *end != '\0' || x < lo || x > hi) {
    return -1;
  }
  *out = (uint32_t)x;
  return 0;
}

static int config_str(char *dst, size_t cap, const char *v) {
  size_t n = strlen(v);
  if (n >= cap) {
    return -1;
  }
  memcpy(dst, v, n + 1);
  return 0;
}

/* Appends one backend name to cfg->backends, checking it. */
static int config_add_backend(kfm_config_t *cfg, const char *name, char *err, size_t len) {
  if (!kfm__backend_known(name)) {
    snprintf(err, len, "backends: unknown backend '%s' (accepted: %s)", name,
             CONFIG_BACKENDS_ACCEPTED);
    return KFM_EBADVALUE;
  }
  size_t used = strlen(cfg->backends);
  if (used + strlen(name) + 2 > sizeof cfg->backends) {
    snprintf(err, len, "backends: list too long at '%s'", name);
    return KFM_EBADVALUE;
  }
  if (used) {
    cfg->backends[used++] = ',';
  }
  strcpy(cfg->backends + used, name);
  return 0;
}

/* Appends event names ('+'-separated in v) to cfg->events.  Names are
 * checked by the counter backend, which knows what the machine offers. */
static int config_add_event(kfm_config_t *cfg, const char *v, char *err, size_t len) {
  size_t used = strlen(cfg->events), n = strlen(v);
  if (n == 0) {
    snprintf(err, len, "events: empty event name");
    return KFM_EBADVALUE;
  }
  if (used + n + 2 > sizeof cfg->events) {
    snprintf(err, len, "events: list too long at '%s' (at most %zu bytes)", v,
             sizeof cfg->events - 1);
    return KFM_EBADVALUE;
  }
  if (used) {
    cfg->events[used++] = ',';
  }
  for (size_t i = 0; i <= n; i++) {
    cfg->events[used + i] = v[i] == '+' ? ',' : v[i];
  }
  return 0;
}

static int config_set(kfm_config_t *cfg, const char *key, const char *v, char *err, size_t len) {
  uint32_t u;
  if (strcmp(key, "level") == 0) {
    if (config_level(v, &cfg->level) == 0) {
      return 0;
    }
    snprintf(err, len, "level: bad value '%s' (accepted: basic, standard, detailed, comprehensive)",
             v);
    return KFM_EBADVALUE;
  }
  if (strcmp(key, "rate") == 0) {
    if (strcmp(v, "off") == 0) {
      cfg->rate_hz = -1;
      return 0;
    }
    char *end;
    double r = strtod(v, &end);
    if (end != v && *end == '\0' && isfinite(r) && r >= 0 && r <= 100000) {
      cfg->rate_hz = r;
      return 0;
    }
    snprintf(err, len,
             "rate: bad value '%s' (accepted: a number of Hz from 1 to 100000, 0 for the level's "
             "default, or off)",
             v);
    return KFM_EBADVALUE;
  }
  if (strcmp(key, "backends") == 0) {
    cfg->backends[0] = '\0';
    char buf[256];
    if (config_str(buf, sizeof buf, v) != 0) {
      snprintf(err, len, "backends: value too long (%zu bytes)", strlen(v));
      return KFM_EBADVALUE;
    }
    char *save = NULL;
    for (char *tok = strtok_r(buf, "+", &save); tok; tok = strtok_r(NULL, "+", &save)) {
      int rc = config_add_backend(cfg, tok, err, len);
      if (rc) {
        return rc;
      }
    }
    return 0;
  }
  if (strcmp(key, "events") == 0) {
    cfg->events[0] = '\0';
    return config_add_event(cfg, v, err, len);
  }
  if (strcmp(key, "output") == 0 || strcmp(key, "proc_root") == 0) {
    int is_out = key[0] == 'o';
    if (config_str(is_out ? cfg->output : cfg->proc_root,
                   is_out ? sizeof cfg->output : sizeof cfg->proc_root, v) == 0) {
      return 0;
    }
    snprintf(err, len, "%s: path too long (%zu bytes)", key, strlen(v));
    return KFM_EBADVALUE;
  }
  if (strcmp(key, "trace") == 0) {
    if (strcmp(v, "on") == 0 || strcmp(v, "1") == 0) {
      cfg->trace = 1;
    } else if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0) {
      cfg->trace = 0;
    } else if (strcmp(v, "auto") == 0) {
      cfg->trace = -1;
    } else {
      snprintf(err, len, "trace: bad value '%s' (accepted: on, off, auto)", v);
      return KFM_EBADVALUE;
    }
    return 0;
  }
  static const struct {
    const char *key;
    size_t off;
    uint32_t lo, hi;
  } nums[] = {
      {"max_nodes", offsetof(kfm_config_t, max_nodes), 1, 1u << 20},
      {"max_threads", offsetof(kfm_config_t, max_threads), 1, 65535},
      {"samples", offsetof(kfm_config_t, samples), 1, 1u << 26},
      {"trace_ring", offsetof(kfm_config_t, trace_ring), 16, 1u << 24},
      {"trace_events", offsetof(kfm_config_t, trace_events), 1, 1u << 28},
  };
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    if (strcmp(key, nums[i].key) == 0) {
      if (config_u32(v, nums[i].lo, nums[i].hi, &u) == 0) {
        memcpy((char *)cfg + nums[i].off, &u, sizeof u);
        return 0;
      }
      snprintf(err, len, "%s: bad value '%s' (accepted: an integer from %u to %u)", key, v,
               nums[i].lo, nums[i].hi);
      return KFM_EBADVALUE;
    }
  }
  if (strcmp(key, "proc_reads") == 0) {
    static const char *const modes[] = {"auto", "exact", "sampled"};
    for (int i = 0; i < 3; i++) {
      if (strcmp(v, modes[i]) == 0) {
        cfg->proc_reads = i;
        return 0;
      }
    }
    snprintf(err, len, "proc_reads: bad value '%s' (accepted: auto, exact, sampled)", v);
    return KFM_EBADVALUE;
  }
  if (strcmp(key, "sampler_cpu") == 0) {
    if (strcmp(v, "-1") == 0 || strcmp(v, "none") == 0) {
      cfg->sampler_cpu = KFM_SAMPLER_CPU_NONE;
      return 0;
    }
    if (strcmp(v, "auto") == 0) {
      cfg->sampler_cpu = KFM_SAMPLER_CPU_AUTO;
      return 0;
    }
    if (config_u32(v, 0, 4095, &u) == 0) {
      cfg->sampler_cpu = (int)u;
      return 0;
    }
    snprintf(err, len, "sampler_cpu: bad value '%s' (accepted: a CPU number from 0 to 4095, auto, or none)",
             v);
    return KFM_EBADVALUE;
  }
  snprintf(err, len, "unknown configuration key '%s' (accepted: %s)", key, config_keys);
  return KFM_EBADKEY;
}

int kfm_config_parse(kfm_config_t *cfg, const char *str, char *errbuf, size_t errlen) {
  char dummy[8];
  if (errbuf == NULL || errlen == 0) {
    errbuf = dummy;
    errlen = sizeof dummy;
  }
  errbuf[0] = '\0';
  if (cfg == NULL) {
    snprintf(errbuf, errlen, "config is NULL");
    return KFM_EINVAL;
  }
  if (str == NULL) {
    return 0;
  }
  char *copy = strdup(str);
  if (copy == NULL) {
    return KFM_ENOMEM;
  }
  /* Parse into a scratch copy so a bad string leaves cfg untouched. */
  kfm_config_t tmp = *cfg;
  int rc = 0;
  int in_backends = 0, in_events = 0;
  char *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    while (isspace((unsigned char)*tok)) {
      tok++;
    }
    char *e = tok + strlen(tok);
    while (e > tok && isspace((unsigned char)e[-1])) {
      *--e = '\0';
    }
    if (*tok == '\0') {
      continue;
    }
    char *eq = strchr(tok, '=');
    if (eq == NULL) {
      /* "events=A,B": a bare name after events= continues it. */
      if (in_events) {
        rc = config_add_event(&tmp, tok, errbuf, errlen);
        if (rc) {
          break;
        }
        continue;
      }
      /* "backends=proc,papi": a bare name after backends= continues it. */
      if (in_backends && kfm__backend_known(tok)) {
        rc = config_add_backend(&tmp, tok, errbuf, errlen);
        if (rc) {
          break;
        }
        continue;
      }
      if (in_backends) {
        snprintf(errbuf, errlen, "backends: unknown backend '%s' (accepted: %s)", tok,
                 CONFIG_BACKENDS_ACCEPTED);
        rc = KFM_EBADVALUE;
      } else {
        snprintf(errbuf, errlen, "malformed configuration item '%s': expected key=value (keys: %s)",
                 tok, config_keys);
        rc = KFM_ECONFIG;
      }
      break;
    }
    *eq = '\0';
    char *key = tok;
    char *ke = eq;
    while (ke > key && isspace((unsigned char)ke[-1])) {
      *--ke = '\0';
    }
    char *val = eq + 1;
    while (isspace((unsigned char)*val)) {
      val++;
    }
    if (*key == '\0') {
      snprintf(errbuf, errlen, "malformed configuration item '=%s': empty key", val);
      rc = KFM_ECONFIG;
      break;
    }
    rc = config_set(&tmp, key, val, errbuf, errlen);
    if (rc) {
      break;
    }
    in_backends = strcmp(key, "backends") == 0;
    in_events = strcmp(key, "events") == 0;
  }
  free(copy);
  if (rc == 0) {
    *cfg = tmp;
  }
  return rc;
}

int kfm__config_validate(const kfm_config_t *cfg, char *err, size_t len) {
  if (cfg->abi != KFM_CONFIG_ABI) {
    snprintf(err, len, "config abi %d is not %d: initialise with kfm_config_init", cfg->abi,
             KFM_CONFIG_ABI);
    return KFM_EINVAL;
  }
  if ((int)cfg->level < KFM_LEVEL_BASIC || cfg->level > KFM_LEVEL_COMPREHENSIVE) {
    snprintf(err, len, "level: bad value %d (accepted: 0 basic .. 3 comprehensive)",
             (int)cfg->level);
    return KFM_EBADVALUE;
  }
  if (!(cfg->rate_hz <= 100000) || (cfg->rate_hz < 0 && cfg->rate_hz != -1)) {
    snprintf(err, len, "rate: bad value %g (accepted: 1 to 100000 Hz, 0 default, -1 off)",
             cfg->rate_hz);
    return KFM_EBADVALUE;
  }
  if (memchr(cfg->backends, '\0', sizeof cfg->backends) == NULL ||
      memchr(cfg->output, '\0', sizeof cfg->output) == NULL ||
      memchr(cfg->proc_root, '\0', sizeof cfg->proc_root) == NULL ||
      memchr(cfg->events, '\0', sizeof cfg->events) == NULL) {
    snprintf(err, len, "a string field of the config is not NUL-terminated");
    return KFM_EINVAL;
  }
  if (cfg->proc_reads < KFM_PROC_READS_AUTO || cfg->proc_reads > KFM_PROC_READS_SAMPLED) {
    snprintf(err, len, "proc_reads: bad value %d (accepted: 0 auto, 1 exact, 2 sampled)",
             cfg->proc_reads);
    return KFM_EBADVALUE;
  }
  if (cfg->trace < -1 || cfg->trace > 1) {
    snprintf(err, len, "trace: bad value %d (accepted: -1 auto, 0 off, 1 on)", cfg->trace);
    return KFM_EBADVALUE;
  }
  if (cfg->max_nodes > (1u << 20) || cfg->max_threads > 65535) {
    snprintf(err, len, "max_nodes %u / max_threads %u over the limits 1048576 / 65535",
             cfg->max_nodes, cfg->max_threads);
    return KFM_EBADVALUE;
  }
  return 0;
}
