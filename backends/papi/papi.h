/*
 * papi.h - internal interface of the PAPI counter backend.
 *
 * Declares the backend's ops table and the few functions the unit tests
 * (tests/c/test_papi.c) call directly: the availability verdict that turns
 * perf_event_paranoid and PAPI's own component status into a reason, and an
 * open variant that can force the multiplexed path.  Only papi.c and its
 * unit tests include this file (the engine knows the backend through its
 * ops table alone), and it needs no PAPI header.
 */
#ifndef KFM_PAPI_H
#define KFM_PAPI_H

#include <stddef.h>

#include "backend.h"

/** The "papi" backend: per-thread PAPI EventSets read at every transition. */
extern const struct kfm__backend kfm__backend_papi;

/** Most events one session counts (the engine holds KFM__MAX_METRICS = 64
 * transition metrics in all, every backend's together). */
#define KFM_PAPI_MAX_EVENTS 16

/**
 * Availability verdict from the perf_event_paranoid file at paranoid_path
 * and PAPI's perf_event component status (cmp_disabled non-zero when PAPI
 * disabled the component, cmp_reason its disabled_reason, may be NULL).
 * Returns 1 (available; reason "available") or 0 with a reason that says
 * what to change, e.g. "perf_event_paranoid is 3: run `sysctl
 * kernel.perf_event_paranoid=2` (or lower) to allow per-thread counters
 * (PAPI: ...)".  A paranoid level above 2 is accepted when PAPI left the
 * component enabled (root or CAP_PERFMON).  An unreadable file means the
 * kernel has no perf_event support (or /proc is hidden): unavailable.
 */
int kfm__papi_availability(const char *paranoid_path, int cmp_disabled, const char *cmp_reason,
                           char *reason, size_t len);

/** kfm__papi_open_ex flag: build the EventSet multiplexed even if it fits one group. */
#define KFM_PAPI_FORCE_MULTIPLEX 1u

/**
 * The backend's open with flags (open itself passes 0).  Tests use
 * KFM_PAPI_FORCE_MULTIPLEX because software events never overflow a
 * counter group, so the multiplexed path is otherwise unreachable on a
 * machine without a hardware PMU.
 */
int kfm__papi_open_ex(void *state, struct kfm__backend_ctx *ctx, unsigned flags);
/** EventSets that thread_open has built in this process (tests: reuse is visible). */
uint64_t kfm__papi_sets_built(void);

#endif /* KFM_PAPI_H */
