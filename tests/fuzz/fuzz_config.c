/*
 * fuzz_config.c - libFuzzer target for the configuration string
 * (kfm_config_parse, kfm_session_create_str).
 *
 * For any input (cut at its first NUL, as a C string would be):
 *  - parsing must return 0 or a configuration error, with a message on
 *    error and the config left exactly as it was;
 *  - a successful parse must round-trip: the config written back as a
 *    string (every field, values quoted and escaped) parses to the same
 *    config, and writing that again gives the same string;
 *  - a session created from the string, forced to BASIC on the clock
 *    backend alone (no counter or GPU library is loaded), with capacities
 *    bounded and nothing written to disk, must be created, used with a
 *    node named by the fuzzed text, and destroyed without a leak.
 * Crashes, leaks, sanitizer reports and aborts here are findings.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kfm/kfm.h"

#define FZ_MAX_INPUT 8192

static void fz_fail(const char *why, const char *in, const char *detail) {
  fprintf(stderr, "fuzz_config: %s\ninput: '%s'\ndetail: %s\n", why, in, detail);
  abort();
}

struct fz_buf {
  char *p;
  size_t n, cap;
};

static void fz_put(struct fz_buf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = (b->n + n + 1) * 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      abort();
    }
    b->p = p, b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void fz_puts(struct fz_buf *b, const char *s) {
  fz_put(b, s, strlen(s));
}

/* key="value" with '"' and '\' escaped. */
static void fz_quoted(struct fz_buf *b, const char *key, const char *v) {
  fz_puts(b, key);
  fz_puts(b, "=\"");
  for (; *v; v++) {
    if (*v == '"' || *v == '\\') {
      fz_put(b, "\\", 1);
    }
    fz_put(b, v, 1);
  }
  fz_puts(b, "\",");
}

/* The config as a string that kfm_config_parse turns back into it. */
static void fz_format(const kfm_config_t *c, struct fz_buf *b) {
  char num[64];
  b->n = 0;
  fz_puts(b, "level=");
  fz_puts(b, kfm_level_name(c->level));
  if (c->rate_hz < 0) {
    fz_puts(b, ",rate=off,");
  } else {
    snprintf(num, sizeof num, ",rate=%.0f,", c->rate_hz);
    fz_puts(b, num);
  }
  fz_quoted(b, "backends", c->backends);
  fz_quoted(b, "events", c->events);
  fz_quoted(b, "output", c->output);
  fz_quoted(b, "proc_root", c->proc_root);
  fz_puts(b, c->trace < 0 ? "trace=auto" : c->trace ? "trace=on" : "trace=off");
  const struct {
    const char *key;
    uint32_t v;
  } nums[] = {{"max_nodes", c->max_nodes},
              {"max_threads", c->max_threads},
              {"samples", c->samples},
              {"trace_ring", c->trace_ring},
              {"trace_events", c->trace_events}};
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    if (nums[i].v) { /* 0 (the default) has no string form */
      snprintf(num, sizeof num, ",%s=%u", nums[i].key, nums[i].v);
      fz_puts(b, num);
    }
  }
  if (c->sampler_cpu == KFM_SAMPLER_CPU_AUTO) {
    fz_puts(b, ",sampler_cpu=auto");
  } else if (c->sampler_cpu == KFM_SAMPLER_CPU_NONE) {
    fz_puts(b, ",sampler_cpu=none");
  } else {
    snprintf(num, sizeof num, ",sampler_cpu=%d", c->sampler_cpu);
    fz_puts(b, num);
  }
  static const char *const modes[] = {"auto", "exact", "sampled"};
  fz_puts(b, ",proc_reads=");
  fz_puts(b, modes[c->proc_reads]);
}

/* Field by field: the struct may have padding. */
static int fz_same(const kfm_config_t *a, const kfm_config_t *b) {
  return a->abi == b->abi && a->level == b->level && a->rate_hz == b->rate_hz &&
         strcmp(a->backends, b->backends) == 0 && strcmp(a->output, b->output) == 0 &&
         strcmp(a->proc_root, b->proc_root) == 0 && a->trace == b->trace &&
         a->max_nodes == b->max_nodes && a->max_threads == b->max_threads &&
         a->samples == b->samples && a->trace_ring == b->trace_ring &&
         a->trace_events == b->trace_events && a->sampler_cpu == b->sampler_cpu &&
         strcmp(a->events, b->events) == 0 && a->proc_reads == b->proc_reads;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  unsetenv("KFM_CONFIG"); /* only the fuzzed string configures */
  return 0;
}

static void fz_session(const char *str, const kfm_config_t *c) {
  /* Forced to BASIC on the clock backend, writing no file, with the
   * capacities the string asked for kept only while small (the largest
   * would allocate gigabytes, past libFuzzer's malloc limit). */
  struct fz_buf b = {0};
  fz_puts(&b, str);
  fz_puts(&b, ",level=basic,backends=clock,events=,output=");
  if (c->max_nodes > 4096) {
    fz_puts(&b, ",max_nodes=4096");
  }
  if (c->max_threads > 64) {
    fz_puts(&b, ",max_threads=64");
  }
  if (c->samples > 4096) {
    fz_puts(&b, ",samples=4096");
  }
  if (c->trace_ring > 4096) {
    fz_puts(&b, ",trace_ring=4096");
  }
  if (c->trace_events == 0 || c->trace_events > 4096) {
    fz_puts(&b, ",trace_events=4096");
  }
  kfm_session_t *s = (kfm_session_t *)&b;
  int rc = kfm_session_create_str(&s, b.p);
  if (rc == KFM_EBADVALUE && c->proc_reads == KFM_PROC_READS_SAMPLED && c->rate_hz <= 0) {
    /* Refused as documented: proc_reads=sampled needs the sampler. */
    if (s != NULL) {
      fz_fail("failed create left *out set", str, kfm_errmsg(NULL));
    }
    free(b.p);
    return;
  }
  if (rc != 0 || s == NULL) {
    fz_fail("session creation failed on a string that parsed", b.p, kfm_errmsg(NULL));
  }
  /* A node named by the fuzzed text (the output path is arbitrary bytes):
   * accepted or refused with KFM_ENAME by its length, never anything else. */
  kfm_node_id_t id;
  const char *name = c->output[0] ? c->output : c->proc_root[0] ? c->proc_root : "node";
  rc = kfm_node_register(s, name, &id);
  if (rc != 0 && !(rc == KFM_ENAME && strlen(name) > KFM_NAME_MAX)) {
    fz_fail("node registration failed", name, kfm_errmsg(s));
  }
  if (rc == 0 && strcmp(kfm_node_name(s, id), name) != 0) {
    fz_fail("registered name differs", name, kfm_node_name(s, id));
  }
  /* Running starts the sampler thread when the string asked for a rate;
   * only sessions without one run, to keep each input fast.  (Reports are
   * left out for the same reason: one costs ~0.4 ms.) */
  if (rc == 0 && c->rate_hz <= 0) {
    if (kfm_session_start(s) != 0 || kfm_enter(s, id) != 0 || kfm_exit(s, id) != 0 ||
        kfm_session_stop(s) != 0) {
      fz_fail("session run failed", b.p, kfm_errmsg(s));
    }
  }
  kfm_session_destroy(s);
  free(b.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > FZ_MAX_INPUT) {
    return 0;
  }
  char *str = malloc(size + 1);
  if (str == NULL) {
    abort();
  }
  memcpy(str, data, size);
  str[size] = '\0';

  kfm_config_t c, before;
  char err[256];
  kfm_config_init(&c);
  c.level = KFM_LEVEL_STANDARD; /* not the default, so "unchanged" means something */
  before = c;
  memset(err, 'X', sizeof err);
  int rc = kfm_config_parse(&c, str, err, sizeof err);
  if (memchr(err, '\0', sizeof err) == NULL) {
    fz_fail("message not NUL-terminated", str, "");
  }
  if (rc != 0) {
    if (rc != KFM_EBADKEY && rc != KFM_EBADVALUE && rc != KFM_ECONFIG) {
      fz_fail("unexpected error code", str, kfm_err_name(rc));
    }
    if (err[0] == '\0') {
      fz_fail("error without a message", str, kfm_err_name(rc));
    }
    if (!fz_same(&c, &before)) {
      fz_fail("failed parse changed the config", str, err);
    }
    /* The session path must refuse it the same way. */
    kfm_session_t *s = (kfm_session_t *)&c;
    if (kfm_session_create_str(&s, str) != rc || s != NULL) {
      fz_fail("kfm_session_create_str disagrees with kfm_config_parse", str, err);
    }
    free(str);
    return 0;
  }

  /* Round trip through the string form. */
  struct fz_buf b1 = {0}, b2 = {0};
  fz_format(&c, &b1);
  kfm_config_t back;
  kfm_config_init(&back);
  rc = kfm_config_parse(&back, b1.p, err, sizeof err);
  if (rc != 0) {
    fz_fail("the config written back does not parse", b1.p, err);
  }
  if (!fz_same(&c, &back)) {
    fz_fail("round trip changed the config", str, b1.p);
  }
  fz_format(&back, &b2);
  if (strcmp(b1.p, b2.p) != 0) {
    fz_fail("writing the config again differs", b1.p, b2.p);
  }
  free(b1.p);
  free(b2.p);

  fz_session(str, &c);
  free(str);
  return 0;
}
