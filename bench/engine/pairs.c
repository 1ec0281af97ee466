/*
 * bench/engine/pairs.c - the hot-path case: what one kfm_enter(s,id) +
 * kfm_exit(s,id) pair on one node costs at each level, set against the
 * machine's floor (harness.c) and PAPI's floors and peers (papi_peers.c),
 * all timed interleaved in one table (harness.c's cases_measure) so that
 * the ratios hold although absolute figures drift from run to run.
 *
 * Kept apart from cases.c because it is the one case made of many: it
 * builds the table, readies its kfm sessions and PAPI peers, and writes the
 * pair.*, floor.* and peer.* lines.
 *
 *  - Each level with the sampler off ("pair.<level>", config
 *    "level=X,rate=off"; the comprehensive one is "pair.comprehensive_rate_
 *    off"), then basic with the sampler on ("pair.basic_sampler_on").  Basic
 *    has no sampler by default, so it runs at the rate a sampling level
 *    (standard) defaults to, read from that session's summary.  Beside
 *    them: the floor, two __rdtsc() with a volatile store between
 *    ("floor.rdtsc_pair"); the peer, a PAPI high-level region pair counting
 *    perf::TASK-CLOCK (this VM has no hardware PMU; "pair.basic_vs_papi_hl"
 *    ratio = peer / kfm); and a grouped raw read floor, two PAPI_read calls
 *    on an EventSet of three software events (perf::TASK-CLOCK, PAGE-FAULTS,
 *    CONTEXT-SWITCHES).  These lines keep their meaning from run to run.
 *  - COMPREHENSIVE as shipped ("pair.comprehensive"): its default sampler
 *    rate, the sampler on the other CPU.  Its transitions read one grouped
 *    PAPI_read of the papi backend's events plus the proc backend's cached
 *    sampler values, so its floor is two PAPI_read calls on an EventSet of
 *    exactly the events that session counts - read from its report's
 *    "papi.<event>" metrics, never assumed - ("floor.papi_read_pair_kfm_
 *    events"; ratio = pair / floor, issue 3's target is <= 1.15), and its
 *    peer is PAPI-HL with PAPI_EVENTS set to those events ("peer.papi_hl_
 *    pair_kfm_events"; "pair.comprehensive_vs_papi_hl" ratio = peer / kfm,
 *    as for basic).
 *
 * Every kfm repetition uses a fresh session (create, start, warm up, time,
 * stop, destroy) so no case inherits another's state.  The PAPI cases run on
 * worker threads pinned to the main CPU while the main thread, whose kfm
 * sessions build their own EventSet at the first transition, sleeps.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

/* ---------------------------------------------------------------------- */
/* kfm's pairs as a case                                                    */

struct kfm_case_ctx {
  kfm_session_t *s;
  kfm_node_id_t id;
};

static int kfm_case_pairs(void *ctx, uint64_t n) {
  struct kfm_case_ctx *k = ctx;
  return kfm_pairs(k->s, k->id, n);
}

/* One repetition in a fresh session of c->config; NaN with c->why written. */
static double kfm_case_run(struct bcase *c, int calibrate) {
  struct kfm_case_ctx k;
  k.s = kfm_open(c->config, &k.id, c->why, sizeof c->why);
  if (k.s == NULL) {
    return NAN;
  }
  double per = NAN;
  int rc = case_time(c, calibrate, kfm_case_pairs, &k, &per);
  if (rc != 0) {
    snprintf(c->why, sizeof c->why, "kfm_enter/kfm_exit (%s): %s: %s", c->config, kfm_strerror(rc),
             kfm_errmsg(k.s));
    kfm_session_destroy(k.s);
    return NAN;
  }
  kfm_summary_t sum;
  if (kfm_close_summary(k.s, &sum, c->why, sizeof c->why) != 0) {
    kfm_session_destroy(k.s);
    return NAN;
  }
  kfm_session_destroy(k.s);
  if (sum.unbalanced != 0) {
    snprintf(c->why, sizeof c->why, "%s: %llu unbalanced exits", c->config,
             (unsigned long long)sum.unbalanced);
    return NAN;
  }
  c->rate_hz = sum.rate_hz;
  c->dropped += sum.events_dropped;
  return per;
}

/* ---------------------------------------------------------------------- */
/* What the sessions are made of                                            */

/* The rate a sampling level (standard) gets by default, from its summary. */
static double default_sampler_rate(char *why, size_t len) {
  kfm_node_id_t id;
  kfm_summary_t sum;
  kfm_session_t *s = kfm_open("level=standard,rate=0", &id, why, len);
  if (s == NULL) {
    return NAN;
  }
  int rc = kfm_close_summary(s, &sum, why, len);
  kfm_session_destroy(s);
  if (rc != 0) {
    return NAN;
  }
  if (!(sum.rate_hz > 0)) {
    snprintf(why, len, "level=standard has no default sampler rate (%g)", sum.rate_hz);
    return NAN;
  }
  return sum.rate_hz;
}

/*
 * The counter events a session with config reads, as a comma list of PAPI
 * names: its report's metrics "papi.<event>", in report order.  0, or -1
 * with why written (no papi backend in that session, or it failed).
 */
static int session_papi_events(const char *config, char *list, size_t len, char *why, size_t wlen) {
  kfm_node_id_t id;
  kfm_report_t *r = NULL;
  kfm_session_t *s = kfm_open(config, &id, why, wlen);
  if (s == NULL) {
    return -1;
  }
  int rc = kfm_session_stop(s);
  if (rc == 0) {
    rc = kfm_session_report(s, &r);
  }
  if (rc != 0) {
    snprintf(why, wlen, "%s: stop/report: %s: %s", config, kfm_strerror(rc), kfm_errmsg(s));
    kfm_session_destroy(s);
    return -1;
  }
  size_t used = 0;
  list[0] = '\0';
  for (size_t i = 0; i < kfm_report_metric_count(r); i++) {
    kfm_metric_info_t m;
    if (kfm_report_metric(r, i, &m) == 0 && strncmp(m.name, "papi.", 5) == 0 && used < len) {
      used += (size_t)snprintf(list + used, len - used, "%s%s", used ? "," : "", m.name + 5);
    }
  }
  if (list[0] == '\0') {
    const char *reason = "not in the report";
    for (size_t i = 0; i < kfm_report_backend_count(r); i++) {
      kfm_backend_status_t b;
      if (kfm_report_backend(r, i, &b) == 0 && strcmp(b.name, "papi") == 0) {
        reason = b.reason ? b.reason : "no reason given";
      }
    }
    snprintf(why, wlen, "session \"%s\" reads no papi.* metric (papi backend: %s)", config, reason);
    rc = -1;
  } else if (used >= len) {
    snprintf(why, wlen, "session \"%s\": event list longer than %zu bytes", config, len - 1);
    rc = -1;
  }
  kfm_report_free(r);
  kfm_session_destroy(s);
  return rc;
}

/* Which backends a session with config uses (stderr), to read the figures by. */
static void backends_describe(const char *config) {
  char why[512];
  kfm_node_id_t id;
  kfm_report_t *r = NULL;
  kfm_session_t *s = kfm_open(config, &id, why, sizeof why);
  if (s == NULL) {
    progress("%s: %s", config, why);
    return;
  }
  int rc = kfm_session_stop(s);
  if (rc == 0) {
    rc = kfm_session_report(s, &r);
  }
  if (rc != 0) {
    progress("%s: %s: %s", config, kfm_strerror(rc), kfm_errmsg(s));
  } else {
    for (size_t i = 0; i < kfm_report_backend_count(r); i++) {
      kfm_backend_status_t b;
      if (kfm_report_backend(r, i, &b) == 0) {
        progress("%s: backend %s %s (%s)", config, b.name, b.enabled ? "enabled" : "not used",
                 b.reason ? b.reason : "");
      }
    }
    kfm_report_free(r);
  }
  kfm_session_destroy(s);
}

/* ---------------------------------------------------------------------- */
/* The table                                                                */

/* The hot path: floors, kfm at each level, the peers, interleaved; then their lines. */
void pair_costs(void) {
  enum {
    C_RDTSC,
    C_BASIC,
    C_STANDARD,
    C_DETAILED,
    C_COMP_OFF,
    C_SAMPLER,
    C_COMP,
    C_HL,
    C_READ,
    C_READ_KFM,
    C_HL_KFM,
    C_N
  };
  struct bcase cs[C_N] = {
      [C_RDTSC] = {.name = "floor.rdtsc_pair", .run = rdtsc_case_run, .cap = MAX_PAIRS},
      [C_BASIC] = {.name = "pair.basic", .run = kfm_case_run, .cap = MAX_PAIRS},
      [C_STANDARD] = {.name = "pair.standard", .run = kfm_case_run, .cap = MAX_PAIRS},
      [C_DETAILED] = {.name = "pair.detailed", .run = kfm_case_run, .cap = MAX_PAIRS},
      [C_COMP_OFF] = {.name = "pair.comprehensive_rate_off", .run = kfm_case_run, .cap = MAX_PAIRS},
      [C_SAMPLER] = {.name = "pair.basic_sampler_on", .run = kfm_case_run, .cap = MAX_PAIRS},
      [C_COMP] = {.name = "pair.comprehensive", .run = kfm_case_run, .cap = MAX_PAIRS},
      [C_HL] = {.name = "peer.papi_hl_pair", .cap = PAPI_HL_MAX_PAIRS},
      [C_READ] = {.name = "floor.papi_read_pair",
                  .cap = MAX_PAIRS,
                  .events = "perf::TASK-CLOCK,perf::PAGE-FAULTS,perf::CONTEXT-SWITCHES"},
      [C_READ_KFM] = {.name = "floor.papi_read_pair_kfm_events", .cap = MAX_PAIRS},
      [C_HL_KFM] = {.name = "peer.papi_hl_pair_kfm_events", .cap = PAPI_HL_MAX_PAIRS},
  };
  static const char *const levels[] = {"basic", "standard", "detailed", "comprehensive"};
  for (int l = 0; l < 4; l++) {
    snprintf(cs[C_BASIC + l].config, sizeof cs[0].config, "level=%s,rate=off", levels[l]);
  }
  /* Basic has no sampler by default: run it at the rate the sampling levels default to. */
  double rate = default_sampler_rate(cs[C_SAMPLER].why, sizeof cs[C_SAMPLER].why);
  if (isfinite(rate)) {
    snprintf(cs[C_SAMPLER].config, sizeof cs[0].config, "level=basic,rate=%g,sampler_cpu=%d", rate,
             bench_side_cpu);
  } else {
    cs[C_SAMPLER].failed = 1;
  }
  /* Comprehensive as shipped: its default sampler, on the other CPU. */
  snprintf(cs[C_COMP].config, sizeof cs[0].config, "level=comprehensive,sampler_cpu=%d",
           bench_side_cpu);
  backends_describe(cs[C_COMP_OFF].config);
  backends_describe(cs[C_COMP].config);
  /* The floor and the PAPI-HL peer count exactly the events kfm chose. */
  char kfm_events[sizeof cs[0].events] = "";
  char events_why[512] = "";
  int have_events = session_papi_events(cs[C_COMP].config, kfm_events, sizeof kfm_events,
                                        events_why, sizeof events_why) == 0;
  if (have_events) {
    progress("%s counts %s", cs[C_COMP].config, kfm_events);
    snprintf(cs[C_READ_KFM].events, sizeof cs[0].events, "%s", kfm_events);
  } else {
    for (int i = C_READ_KFM; i <= C_HL_KFM; i++) {
      cs[i].failed = 1;
      snprintf(cs[i].why, sizeof cs[i].why, "%s", events_why);
    }
  }

  /* PAPI's cases get their run, thread or child there (none without PAPI). */
  papi_peers_start(&cs[C_HL], &cs[C_READ], &cs[C_READ_KFM], &cs[C_HL_KFM], kfm_events);
  cases_measure(cs, C_N);
  papi_peers_stop();

  double m[C_N];
  for (int i = 0; i < C_N; i++) {
    m[i] = case_median(&cs[i]);
  }
  double floor_ns = m[C_RDTSC];
  if (cs[C_RDTSC].failed) {
    emit_missing(cs[C_RDTSC].name, "ns", "error", cs[C_RDTSC].why);
  } else {
    emit(cs[C_RDTSC].name, floor_ns, "ns", NULL, 0, NULL, 0);
  }
  for (int i = C_BASIC; i <= C_SAMPLER; i++) {
    if (cs[i].failed) {
      bench_failed = 1;
      emit_missing(cs[i].name, "ns", "error", cs[i].why);
      continue;
    }
    struct jline j;
    jl_begin(&j, cs[i].name);
    jl_num(&j, "value", m[i]);
    jl_str(&j, "unit", "ns");
    jl_num(&j, "floor", floor_ns);
    jl_num(&j, "ratio", m[i] / floor_ns);
    if (i == C_SAMPLER) {
      jl_num(&j, "rate_hz", cs[i].rate_hz);
    }
    if (cs[i].dropped) {
      jl_u64(&j, "events_dropped", cs[i].dropped);
    }
    jl_end(&j);
  }
  if (cs[C_HL].failed) {
    emit_missing(cs[C_HL].name, "ns", "unavailable", cs[C_HL].why);
  } else {
    emit(cs[C_HL].name, m[C_HL], "ns", NULL, 0, NULL, 0);
  }
  /* How many times faster a kfm basic pair is than a PAPI-HL region pair. */
  {
    struct jline j;
    jl_begin(&j, "pair.basic_vs_papi_hl");
    jl_num(&j, "value", m[C_BASIC]);
    jl_str(&j, "unit", "ns");
    jl_num(&j, "peer", m[C_HL]);
    jl_num(&j, "ratio", m[C_HL] / m[C_BASIC]);
    jl_end(&j);
  }
  if (cs[C_READ].failed) {
    emit_missing(cs[C_READ].name, "ns", "unavailable", cs[C_READ].why);
  } else {
    struct jline j;
    jl_begin(&j, cs[C_READ].name);
    jl_num(&j, "value", m[C_READ]);
    jl_str(&j, "unit", "ns");
    jl_str(&j, "events", cs[C_READ].events);
    jl_end(&j);
  }

  /* COMPREHENSIVE as shipped, against the grouped read of the same events and PAPI-HL. */
  for (int i = C_READ_KFM; i <= C_HL_KFM; i++) {
    if (cs[i].failed) {
      emit_missing(cs[i].name, "ns", "unavailable", cs[i].why);
      continue;
    }
    struct jline j;
    jl_begin(&j, cs[i].name);
    jl_num(&j, "value", m[i]);
    jl_str(&j, "unit", "ns");
    jl_str(&j, "events", kfm_events);
    jl_end(&j);
  }
  if (cs[C_COMP].failed) {
    bench_failed = 1;
    emit_missing(cs[C_COMP].name, "ns", "error", cs[C_COMP].why);
  } else {
    /* ratio = pair / grouped-read pair: what kfm adds to the unavoidable read. */
    struct jline j;
    jl_begin(&j, cs[C_COMP].name);
    jl_num(&j, "value", m[C_COMP]);
    jl_str(&j, "unit", "ns");
    jl_num(&j, "floor", m[C_READ_KFM]);
    jl_num(&j, "ratio", m[C_COMP] / m[C_READ_KFM]);
    jl_num(&j, "rate_hz", cs[C_COMP].rate_hz);
    jl_str(&j, "events", have_events ? kfm_events : "unavailable");
    if (cs[C_COMP].dropped) {
      jl_u64(&j, "events_dropped", cs[C_COMP].dropped);
    }
    jl_end(&j);
  }
  /* As pair.basic_vs_papi_hl: ratio = PAPI-HL pair / kfm pair (> 1: kfm is faster). */
  {
    struct jline j;
    jl_begin(&j, "pair.comprehensive_vs_papi_hl");
    jl_num(&j, "value", m[C_COMP]);
    jl_str(&j, "unit", "ns");
    jl_num(&j, "peer", m[C_HL_KFM]);
    jl_num(&j, "ratio", m[C_HL_KFM] / m[C_COMP]);
    jl_end(&j);
  }
}
