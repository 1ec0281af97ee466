/*
 * config.c - session configuration: defaults, the "key=value,..." string
 * form (also read from KFM_CONFIG), and validation.  Every error names the
 * key, the value given and what would have been accepted, because the usual
 * reader is someone editing a batch script.  Numbers are plain decimal
 * integers, and a value with ',' in it (a path) is written in double quotes.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* Limits of the numeric keys, shared by the string parser and the check of
 * a config struct filled in by hand. */
#define CONFIG_MAX_NODES (1u << 20)
#define CONFIG_MAX_THREADS 65535u
#define CONFIG_MAX_SAMPLES (1u << 26)
#define CONFIG_MIN_TRACE_RING 16u
#define CONFIG_MAX_TRACE_RING (1u << 24)
#define CONFIG_MAX_TRACE_EVENTS (1u << 28)
#define CONFIG_MAX_CPU 4095
#define CONFIG_MAX_TRACE_MAX_EVENTS (1u << 30)

/* The capacities: their keys and ranges, for the string form and for a
 * config filled in by hand alike. */
struct config_cap {
  const char *key;
  size_t off;
  uint32_t lo, hi;
};
static const struct config_cap config_caps[] = {
    {"max_nodes", offsetof(kfm_config_t, max_nodes), 1, CONFIG_MAX_NODES},
    {"max_threads", offsetof(kfm_config_t, max_threads), 1, CONFIG_MAX_THREADS},
    {"samples", offsetof(kfm_config_t, samples), 1, CONFIG_MAX_SAMPLES},
    {"trace_ring", offsetof(kfm_config_t, trace_ring), CONFIG_MIN_TRACE_RING,
     CONFIG_MAX_TRACE_RING},
    {"trace_events", offsetof(kfm_config_t, trace_events), 1, CONFIG_MAX_TRACE_EVENTS},
    {"trace_max_events", offsetof(kfm_config_t, trace_max_events), 1, CONFIG_MAX_TRACE_MAX_EVENTS},
};
#define CONFIG_NCAPS (sizeof config_caps / sizeof config_caps[0])

/* The engine's own keys; backends own theirs (kfm__backend_option_find). */
static const char *const config_keys =
    "level, rate, backends, output, trace, max_nodes, max_threads, samples, "
    "trace_ring, trace_events, sampler_cpu, proc_reads, flush_signals, output_format, "
    "trace_max_events";

/* The keys with a few named values: each an int field holding the index of
 * its spelling, for the string form, a config filled in by hand and
 * kfm__config_string alike. */
struct config_enum {
  const char *key;
  size_t off;
  const char *const *names;
  size_t n;
};
static const char *const config_proc_reads[] = {"auto", "exact", "sampled"};
static const char *const config_output_formats[] = {"json", "trace", "both"};
#define CONFIG_ENUM(key, names)                                                                    \
  { #key, offsetof(kfm_config_t, key), names, sizeof names / sizeof *names }
static const struct config_enum config_enums[] = {
    CONFIG_ENUM(proc_reads, config_proc_reads),
    CONFIG_ENUM(output_format, config_output_formats),
};
#define CONFIG_NENUMS (sizeof config_enums / sizeof config_enums[0])

/* "a, b, c", or with numbered=1 "0 a, 1 b, 2 c": an enum's values for messages. */
static void config_enum_names(const struct config_enum *e, int numbered, char *buf, size_t len) {
  size_t u = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < e->n && u < len; i++) {
    int w = numbered ? snprintf(buf + u, len - u, "%s%zu %s", i ? ", " : "", i, e->names[i])
                     : snprintf(buf + u, len - u, "%s%s", i ? ", " : "", e->names[i]);
    u += w > 0 ? (size_t)w : 0;
  }
}

/* Every key, the backends' included, for messages. */
struct config_keylist {
  char s[512];
};

static struct config_keylist config_all_keys(void) {
  struct config_keylist k;
  char opts[256];
  kfm__backend_option_keys(opts, sizeof opts);
  snprintf(k.s, sizeof k.s, "%s%s%s", config_keys, opts[0] ? ", " : "", opts);
  return k;
}

int kfm_config_init(kfm_config_t *cfg) {
  if (cfg == NULL) {
    return KFM_EINVAL;
  }
  memset(cfg, 0, sizeof *cfg);
  cfg->abi = KFM_CONFIG_ABI;
  cfg->level = KFM_LEVEL_BASIC;
  cfg->trace = -1;
  cfg->sampler_cpu = KFM_SAMPLER_CPU_AUTO;
  return 0;
}

/* Also the backends': whether a session opens another backend, whether a
 * name is in a list of names. */
int kfm__list_has(const char *comma_list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = comma_list; *p;) {
    const char *c = strchr(p, ',');
    size_t len = c ? (size_t)(c - p) : strlen(p);
    if (len == n && strncmp(p, name, n) == 0) {
      return 1;
    }
    p += len + (c != NULL);
  }
  return 0;
}

/* Values are quoted in messages, so a path of a kilobyte must not push the
 * key and the accepted values out of the caller's buffer: longer values are
 * cut (at a character boundary) and marked "...". */
#define CONFIG_SHOW_MAX 64
struct config_shown {
  char s[CONFIG_SHOW_MAX + 4];
};

static struct config_shown config_show(const char *v) {
  struct config_shown out;
  size_t n = strlen(v);
  if (n <= CONFIG_SHOW_MAX) {
    memcpy(out.s, v, n + 1);
    return out;
  }
  n = CONFIG_SHOW_MAX - 3;
  while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80) {
    n--;
  }
  memcpy(out.s, v, n);
  memcpy(out.s + n, "...", 4);
  return out;
}
#define SHOW(v) (config_show(v).s)

static int config_level(const char *v, kfm_level_t *out) {
  for (int l = KFM_LEVEL_BASIC; l <= KFM_LEVEL_COMPREHENSIVE; l++) {
    if (strcasecmp(v, kfm_level_name(l)) == 0) {
      *out = (kfm_level_t)l;
      return 0;
    }
  }
  return -1;
}

/* A decimal integer in lo..hi, digits only: no sign, no space, no "0x", no
 * exponent, nothing after it.  strtoul would accept " +12" and wrap "-1"
 * around; a capacity written wrongly must be an error, not a surprise.
 * Leading zeros are decimal ("010" is ten). */
static int config_u32(const char *v, uint32_t lo, uint32_t hi, uint32_t *out) {
  if (*v == '\0') {
    return -1;
  }
  uint64_t x = 0;
  for (const char *p = v; *p; p++) {
    if (*p < '0' || *p > '9') {
      return -1;
    }
    x = x * 10 + (uint64_t)(*p - '0');
    if (x > hi) { /* also stops any overflow: hi < 2^32 */
      return -1;
    }
  }
  if (x < lo) {
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
    char names[256];
    kfm__backend_names(names, sizeof names);
    snprintf(err, len, "backends: unknown backend '%s' (accepted: %s)", SHOW(name), names);
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

/* Appends the backend names of v (separated by '+' or, in a quoted value,
 * ',') to cfg->backends. */
static int config_add_backends(kfm_config_t *cfg, const char *v, char *err, size_t len) {
  char buf[sizeof cfg->backends];
  if (config_str(buf, sizeof buf, v) != 0) {
    snprintf(err, len, "backends: value too long (%zu bytes, at most %zu)", strlen(v),
             sizeof buf - 1);
    return KFM_EBADVALUE;
  }
  char *save = NULL;
  for (char *tok = strtok_r(buf, "+,", &save); tok; tok = strtok_r(NULL, "+,", &save)) {
    int rc = config_add_backend(cfg, tok, err, len);
    if (rc) {
      return rc;
    }
  }
  return 0;
}

/* Appends the names of v (separated by '+' or, in a quoted value, ',') to
 * the list option o of cfg (e.g. a counter backend's events).  Names are checked by the
 * backend that owns the option, which knows what the machine offers; an
 * empty name between separators is an error here.  key is the key as the
 * user wrote it, for the message. */
/* output= patterns (kfm_output_expand): an unknown one is refused at parse
 * time, naming it, rather than written literally into a file name. */
static int config_output_check(const char *v, char *err, size_t len) {
  for (const char *p = v; *p; p++) {
    if (*p != '%') {
      continue;
    }
    p++;
    if (*p == '\0') {
      snprintf(err, len, "output: '%s' ends with a lone '%%' (write %%%% for a '%%')", v);
      return KFM_EBADVALUE;
    }
    if (strchr("rphj%", *p) == NULL) {
      snprintf(err, len,
               "output: unknown pattern '%%%c' in '%s' (accepted: %%r rank, %%p pid, %%h host, "
               "%%j job id, %%%% a '%%')",
               *p, v);
      return KFM_EBADVALUE;
    }
  }
  return 0;
}

static int config_add_list(kfm_config_t *cfg, const struct kfm__backend_option *o, const char *key,
                           const char *v, char *err, size_t len) {
  char *dst = (char *)cfg + o->offset;
  size_t used = strnlen(dst, o->size), n = strlen(v);
  if (n == 0 || strchr("+,", v[0]) || strchr("+,", v[n - 1]) || strstr(v, "++") ||
      strstr(v, ",,") || strstr(v, "+,") || strstr(v, ",+")) {
    snprintf(err, len, "%s: empty %s name in '%s'", key, o->item ? o->item : "list", SHOW(v));
    return KFM_EBADVALUE;
  }
  if (used + n + 2 > o->size) {
    snprintf(err, len, "%s: list too long at '%s' (at most %zu bytes)", key, SHOW(v), o->size - 1);
    return KFM_EBADVALUE;
  }
  if (used) {
    dst[used++] = ',';
  }
  for (size_t i = 0; i <= n; i++) {
    dst[used + i] = v[i] == '+' ? ',' : v[i];
  }
  return 0;
}

/* key=v for a backend's option o. */
static int config_option(kfm_config_t *cfg, const struct kfm__backend_option *o, const char *key,
                         const char *v, char *err, size_t len) {
  char *dst = (char *)cfg + o->offset;
  if (o->kind == KFM__OPT_LIST) {
    /* Empty: the backend's default, as documented. */
    dst[0] = '\0';
    return v[0] ? config_add_list(cfg, o, key, v, err, len) : 0;
  }
  if (config_str(dst, o->size, v) == 0) {
    return 0;
  }
  snprintf(err, len, "%s: path too long (%zu bytes, at most %zu): '%s'", key, strlen(v),
           o->size - 1, SHOW(v));
  return KFM_EBADVALUE;
}

static int config_set(kfm_config_t *cfg, const char *key, const char *v, char *err, size_t len) {
  uint32_t u;
  if (strcmp(key, "level") == 0) {
    if (config_level(v, &cfg->level) == 0) {
      return 0;
    }
    snprintf(err, len, "level: bad value '%s' (accepted: basic, standard, detailed, comprehensive)",
             SHOW(v));
    return KFM_EBADVALUE;
  }
  if (strcmp(key, "rate") == 0) {
    if (strcmp(v, "off") == 0) {
      cfg->rate_hz = -1;
      return 0;
    }
    /* A whole number of Hz: "0.5", "1e-320" and "0x10" were once taken
     * by strtod, giving a sampler period of years or an accidental 16 Hz. */
    if (config_u32(v, 0, 100000, &u) == 0) {
      cfg->rate_hz = u;
      return 0;
    }
    snprintf(err, len,
             "rate: bad value '%s' (accepted: a whole number of Hz from 1 to 100000, 0 for the "
             "level's default, or off)",
             SHOW(v));
    return KFM_EBADVALUE;
  }
  if (strcmp(key, "backends") == 0) {
    cfg->backends[0] = '\0';
    return config_add_backends(cfg, v, err, len);
  }
  if (strcmp(key, "output") == 0) {
    if (config_output_check(v, err, len) != 0) {
      return KFM_EBADVALUE;
    }
    if (config_str(cfg->output, sizeof cfg->output, v) == 0) {
      return 0;
    }
    snprintf(err, len, "%s: path too long (%zu bytes, at most %zu): '%s'", key, strlen(v),
             sizeof cfg->output - 1, SHOW(v));
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
      snprintf(err, len, "trace: bad value '%s' (accepted: on, off, auto)", SHOW(v));
      return KFM_EBADVALUE;
    }
    return 0;
  }
  for (size_t i = 0; i < CONFIG_NCAPS; i++) {
    const struct config_cap *c = &config_caps[i];
    if (strcmp(key, c->key) == 0) {
      if (config_u32(v, c->lo, c->hi, &u) == 0) {
        memcpy((char *)cfg + c->off, &u, sizeof u);
        return 0;
      }
      snprintf(err, len, "%s: bad value '%s' (accepted: a whole number from %u to %u)", key,
               SHOW(v), c->lo, c->hi);
      return KFM_EBADVALUE;
    }
  }
  if (strcmp(key, "flush_signals") == 0) {
    if (strcmp(v, "on") == 0 || strcmp(v, "off") == 0) {
      cfg->flush_signals = v[1] == 'n';
      return 0;
    }
    snprintf(err, len, "flush_signals: bad value '%s' (accepted: on, off)", v);
    return KFM_EBADVALUE;
  }
  for (size_t i = 0; i < CONFIG_NENUMS; i++) {
    const struct config_enum *e = &config_enums[i];
    if (strcmp(key, e->key) != 0) {
      continue;
    }
    for (int k = 0; (size_t)k < e->n; k++) {
      if (strcmp(v, e->names[k]) == 0) {
        memcpy((char *)cfg + e->off, &k, sizeof k);
        return 0;
      }
    }
    char names[128];
    config_enum_names(e, 0, names, sizeof names);
    snprintf(err, len, "%s: bad value '%s' (accepted: %s)", key, SHOW(v), names);
    return KFM_EBADVALUE;
  }
  if (strcmp(key, "sampler_cpu") == 0) {
    /* "-1" is the struct's KFM_SAMPLER_CPU_NONE, kept as a spelling of none. */
    if (strcmp(v, "-1") == 0 || strcmp(v, "none") == 0) {
      cfg->sampler_cpu = KFM_SAMPLER_CPU_NONE;
      return 0;
    }
    if (strcmp(v, "auto") == 0) {
      cfg->sampler_cpu = KFM_SAMPLER_CPU_AUTO;
      return 0;
    }
    if (config_u32(v, 0, CONFIG_MAX_CPU, &u) == 0) {
      cfg->sampler_cpu = (int)u;
      return 0;
    }
    snprintf(err, len,
             "sampler_cpu: bad value '%s' (accepted: a CPU number from 0 to %d, auto, or none)",
             SHOW(v), CONFIG_MAX_CPU);
    return KFM_EBADVALUE;
  }
  char canon[96];
  const struct kfm__backend_option *o = kfm__backend_option_find(key, canon, sizeof canon);
  if (o) {
    return config_option(cfg, o, key, v, err, len);
  }
  snprintf(err, len, "unknown configuration key '%s' (accepted: %s)", SHOW(key),
           config_all_keys().s);
  return KFM_EBADKEY;
}

/* ---------------------------------------------------------------------- */
/* The string form.  Items are separated by ','; an item is key=value, or a
 * bare word continuing the list of a preceding backends= or list option
 * (<backend>.<key>=, or its older un-namespaced spelling).  A
 * value (or a bare word) may be written in double quotes, inside which ','
 * and '=' are ordinary characters and \" and \\ stand for " and \.  Outside
 * quotes, spaces around keys and values are dropped and a '"' inside a
 * value is an error: a half-quoted value is almost surely a mistake. */

static int config_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Reads the quoted text starting at str[*i] == '"' into out (NUL-terminated)
 * and leaves *i after the closing quote.  what names the item in messages. */
static int config_quoted(const char *str, size_t *i, char *out, const char *what, char *err,
                         size_t len) {
  size_t open = *i, j = open + 1, o = 0;
  for (;;) {
    char c = str[j];
    if (c == '\0') {
      snprintf(err, len,
               "%s: unterminated quote (the '\"' at position %zu of the configuration string is "
               "never closed)",
               what, open);
      return KFM_ECONFIG;
    }
    if (c == '"') {
      break;
    }
    if (c == '\\') {
      char e = str[j + 1];
      if (e != '"' && e != '\\') {
        snprintf(err, len,
                 "%s: bad escape at position %zu of the configuration string (inside quotes "
                 "only \\\" and \\\\ are escapes)",
                 what, j);
        return KFM_ECONFIG;
      }
      c = e;
      j++;
    }
    out[o++] = c;
    j++;
  }
  out[o] = '\0';
  j++;
  /* Only spaces may follow, up to the ',' ending the item. */
  while (config_space(str[j])) {
    j++;
  }
  if (str[j] != '\0' && str[j] != ',') {
    snprintf(err, len,
             "%s: unexpected '%c' at position %zu of the configuration string, after the closing "
             "quote of position %zu (expected ',' or the end)",
             what, str[j], j, open);
    return KFM_ECONFIG;
  }
  *i = j;
  return 0;
}

/* Reads an unquoted run from str[*i] up to stop (or ',' or the end), with
 * the spaces around it dropped, into out; *i is left at the stop character.
 * A '"' in it is an error.  what is the key whose value is read, NULL when
 * reading a key or a bare word. */
static int config_bare(const char *str, size_t *i, int stop, char *out, const char *what, char *err,
                       size_t len) {
  size_t j = *i, o = 0;
  while (config_space(str[j])) {
    j++;
  }
  for (; str[j] != '\0' && str[j] != ',' && str[j] != stop; j++) {
    if (str[j] == '"' && what == NULL) {
      snprintf(err, len,
               "malformed configuration item: '\"' at position %zu of the configuration string "
               "inside a key (only a whole value or a whole list item may be quoted)",
               j);
      return KFM_ECONFIG;
    }
    if (str[j] == '"') {
      snprintf(err, len,
               "%s: '\"' at position %zu of the configuration string inside an unquoted value "
               "(quote the whole value: key=\"...\")",
               what, j);
      return KFM_ECONFIG;
    }
    out[o++] = str[j];
  }
  while (o > 0 && config_space(out[o - 1])) {
    o--;
  }
  out[o] = '\0';
  *i = j;
  return 0;
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
  if (cfg->abi != KFM_CONFIG_ABI) {
    snprintf(errbuf, errlen, "config abi %d is not %d: initialise with kfm_config_init", cfg->abi,
             KFM_CONFIG_ABI);
    return KFM_EINVAL;
  }
  if (str == NULL) {
    return 0;
  }
  /* Keys, values and bare words are each shorter than the string. */
  size_t n = strlen(str);
  char *key = malloc(2 * (n + 1));
  if (key == NULL) {
    snprintf(errbuf, errlen, "out of memory");
    return KFM_ENOMEM;
  }
  char *val = key + n + 1;
  /* Parse into a scratch copy so a bad string leaves cfg untouched. */
  kfm_config_t tmp = *cfg;
  int rc = 0;
  int in_backends = 0;
  /* A list option (<backend>.<key>=A,B) that bare words continue, and its key
   * as written. */
  const struct kfm__backend_option *in_list = NULL;
  char list_key[96] = "", canon[96];
  size_t i = 0;
  while (rc == 0) {
    while (config_space(str[i])) {
      i++;
    }
    if (str[i] == '\0') {
      break;
    }
    if (str[i] == ',') { /* empty item */
      i++;
      continue;
    }
    size_t item = i;
    int has_key = 0;
    if (str[i] == '"') {
      rc = config_quoted(str, &i, val, "quoted item", errbuf, errlen);
    } else {
      rc = config_bare(str, &i, '=', key, NULL, errbuf, errlen);
      if (rc == 0 && str[i] == '=') {
        has_key = 1;
        i++;
        if (key[0] == '\0') {
          size_t e = i;
          while (str[e] && str[e] != ',') {
            e++;
          }
          snprintf(errbuf, errlen, "malformed configuration item '%.*s': empty key",
                   (int)(e - item > CONFIG_SHOW_MAX ? CONFIG_SHOW_MAX : e - item), str + item);
          rc = KFM_ECONFIG;
          break;
        }
        size_t v = i;
        while (config_space(str[v])) {
          v++;
        }
        if (str[v] == '"') {
          i = v;
          rc = config_quoted(str, &i, val, key, errbuf, errlen);
        } else {
          rc = config_bare(str, &i, ',', val, key, errbuf, errlen);
        }
      } else if (rc == 0) {
        memcpy(val, key, strlen(key) + 1);
      }
    }
    if (rc) {
      break;
    }
    if (has_key) {
      rc = config_set(&tmp, key, val, errbuf, errlen);
      in_backends = strcmp(key, "backends") == 0;
      in_list = kfm__backend_option_find(key, canon, sizeof canon);
      if (in_list && in_list->kind != KFM__OPT_LIST) {
        in_list = NULL;
      }
      snprintf(list_key, sizeof list_key, "%s", in_list ? SHOW(key) : "");
    } else if (in_list) {
      /* "<backend>.<list>=A,B": a bare name after a list option continues it. */
      rc = config_add_list(&tmp, in_list, list_key, val, errbuf, errlen);
    } else if (in_backends) {
      /* "backends=a,b": a bare name after backends= continues it. */
      rc = config_add_backends(&tmp, val, errbuf, errlen);
    } else {
      snprintf(errbuf, errlen, "malformed configuration item '%s': expected key=value (keys: %s)",
               SHOW(val), config_all_keys().s);
      rc = KFM_ECONFIG;
    }
    if (str[i] == ',') {
      i++;
    }
  }
  free(key);
  if (rc == 0) {
    *cfg = tmp;
  }
  return rc;
}

int kfm__config_validate(const kfm_config_t *cfg, char *err, size_t len) {
  if (cfg == NULL) {
    snprintf(err, len, "config is NULL");
    return KFM_EINVAL;
  }
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
  /* The struct keeps a double, so a fractional rate of at least 1 Hz is
   * allowed here; below 1 Hz (and NaN) is not, as for the string form. */
  double r = cfg->rate_hz;
  if (!(r <= 100000) || (r < 0 && r != -1) || (r > 0 && r < 1)) {
    snprintf(err, len, "rate: bad value %g (accepted: 1 to 100000 Hz, 0 default, -1 off)", r);
    return KFM_EBADVALUE;
  }
  if (memchr(cfg->backends, '\0', sizeof cfg->backends) == NULL ||
      memchr(cfg->output, '\0', sizeof cfg->output) == NULL ||
      memchr(cfg->proc_root, '\0', sizeof cfg->proc_root) == NULL ||
      memchr(cfg->events, '\0', sizeof cfg->events) == NULL) {
    snprintf(err, len, "a string field of the config is not NUL-terminated");
    return KFM_EINVAL;
  }
  for (size_t i = 0; i < CONFIG_NENUMS; i++) {
    const struct config_enum *e = &config_enums[i];
    int k;
    memcpy(&k, (const char *)cfg + e->off, sizeof k);
    if (k < 0 || (size_t)k >= e->n) {
      char names[128];
      config_enum_names(e, 1, names, sizeof names);
      snprintf(err, len, "%s: bad value %d (accepted: %s)", e->key, k, names);
      return KFM_EBADVALUE;
    }
  }
  if (cfg->trace < -1 || cfg->trace > 1) {
    snprintf(err, len, "trace: bad value %d (accepted: -1 auto, 0 off, 1 on)", cfg->trace);
    return KFM_EBADVALUE;
  }
  /* Zero means the default for each capacity. */
  for (size_t i = 0; i < CONFIG_NCAPS; i++) {
    const struct config_cap *c = &config_caps[i];
    uint32_t u;
    memcpy(&u, (const char *)cfg + c->off, sizeof u);
    if (u != 0 && (u < c->lo || u > c->hi)) {
      snprintf(err, len, "%s: bad value %u (accepted: 0 for the default, or %u to %u)", c->key, u,
               c->lo, c->hi);
      return KFM_EBADVALUE;
    }
  }
  if (cfg->sampler_cpu < KFM_SAMPLER_CPU_AUTO || cfg->sampler_cpu > CONFIG_MAX_CPU) {
    snprintf(err, len,
             "sampler_cpu: bad value %d (accepted: 0 to %d, KFM_SAMPLER_CPU_NONE, "
             "KFM_SAMPLER_CPU_AUTO)",
             cfg->sampler_cpu, CONFIG_MAX_CPU);
    return KFM_EBADVALUE;
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* The string form of a config, for the Chrome trace's otherData: what the
 * session ran with, in a form kfm_config_parse (and KFM_CONFIG) accept, so
 * a run can be repeated from its trace. */

/* key=v, quoted when v holds what the parser would read otherwise: ',',
 * '"', '\\', or spaces at either end (which are dropped outside quotes).
 * A list (list=1, stored with ',') is written with '+' between its names,
 * so that, unquoted, it is still one value. */
static void config_put(FILE *f, const char *key, const char *v, int list) {
  size_t n = strlen(v);
  int quote = strpbrk(v, list ? "\"\\" : ",\"\\") != NULL ||
              (n && (config_space(v[0]) || config_space(v[n - 1])));
  fprintf(f, ",%s=%s", key, quote ? "\"" : "");
  for (const char *p = v; *p; p++) {
    if (quote && (*p == '"' || *p == '\\')) {
      fputc('\\', f);
    }
    fputc(list && *p == ',' ? '+' : *p, f);
  }
  fputs(quote ? "\"" : "", f);
}

char *kfm__config_string(const kfm_config_t *cfg) {
  char *out = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&out, &n);
  if (f == NULL) {
    return NULL;
  }
  fprintf(f, "level=%s", kfm_level_name(cfg->level) ? kfm_level_name(cfg->level) : "basic");
  if (cfg->rate_hz < 0) {
    fputs(",rate=off", f);
  } else {
    fprintf(f, ",rate=%.17g", cfg->rate_hz);
  }
  if (cfg->backends[0]) {
    config_put(f, "backends", cfg->backends, 1);
  }
  if (cfg->output[0]) {
    config_put(f, "output", cfg->output, 0);
  }
  fprintf(f, ",trace=%s", cfg->trace < 0 ? "auto" : cfg->trace ? "on" : "off");
  for (size_t i = 0; i < CONFIG_NCAPS; i++) {
    uint32_t u;
    memcpy(&u, (const char *)cfg + config_caps[i].off, sizeof u);
    if (u) {
      fprintf(f, ",%s=%u", config_caps[i].key, u);
    }
  }
  if (cfg->sampler_cpu == KFM_SAMPLER_CPU_AUTO || cfg->sampler_cpu == KFM_SAMPLER_CPU_NONE) {
    fprintf(f, ",sampler_cpu=%s", cfg->sampler_cpu == KFM_SAMPLER_CPU_AUTO ? "auto" : "none");
  } else {
    fprintf(f, ",sampler_cpu=%d", cfg->sampler_cpu);
  }
  for (size_t i = 0; i < CONFIG_NENUMS; i++) {
    int k;
    memcpy(&k, (const char *)cfg + config_enums[i].off, sizeof k);
    if (k >= 0 && (size_t)k < config_enums[i].n) {
      fprintf(f, ",%s=%s", config_enums[i].key, config_enums[i].names[k]);
    }
  }
  fprintf(f, ",flush_signals=%s", cfg->flush_signals ? "on" : "off");
  char canon[96];
  const struct kfm__backend_option *o;
  for (size_t i = 0; (o = kfm__backend_option_at(i, canon, sizeof canon)) != NULL; i++) {
    const char *v = (const char *)cfg + o->offset;
    if (memchr(v, '\0', o->size) == NULL || v[0] == '\0') {
      continue;
    }
    config_put(f, canon, v, o->kind == KFM__OPT_LIST);
  }
  if (fclose(f) != 0) {
    free(out);
    return NULL;
  }
  return out;
}
