/*
 * roles.c - what the engine knows of metrics: their roles, and the derived
 * metrics computed from them.  The derived metrics are defined here once;
 * kfm_report_derived computes them, the export lists them, and a counter
 * backend's export says which of them its events make available.
 */
#include "backend.h"

const char *kfm__role_name(kfm__role_t role) {
  static const char *const names[KFM_ROLE_COUNT] = {
      [KFM_ROLE_NONE] = "none",
      [KFM_ROLE_RSS] = "resident set size",
      [KFM_ROLE_CPU_USER] = "user CPU time",
      [KFM_ROLE_CPU_SYS] = "system CPU time",
      [KFM_ROLE_CPU_TIME] = "thread CPU time",
      [KFM_ROLE_INSTRUCTIONS] = "instructions",
      [KFM_ROLE_CYCLES] = "cycles",
      [KFM_ROLE_L1_DCM] = "L1 data cache misses",
      [KFM_ROLE_BR_MSP] = "branch mispredictions",
  };
  return (unsigned)role < KFM_ROLE_COUNT ? names[role] : "unknown";
}

const struct kfm__derived_def kfm__derived_defs[] = {
    {"ipc", KFM_ROLE_INSTRUCTIONS, KFM_ROLE_CYCLES, 1,
     "needs instructions and cycles counted (hardware counters)"},
    {"l1_dcm_per_kins", KFM_ROLE_L1_DCM, KFM_ROLE_INSTRUCTIONS, 1000,
     "needs L1 data cache misses and instructions counted (hardware counters)"},
    {"br_msp_per_kins", KFM_ROLE_BR_MSP, KFM_ROLE_INSTRUCTIONS, 1000,
     "needs branch mispredictions and instructions counted (hardware counters)"},
    /* CPU time over the node's wall time. */
    {"cpu_util", KFM_ROLE_CPU_TIME, KFM_ROLE_NONE, 1,
     "needs thread CPU time from the counters, or user and system CPU time (DETAILED)"},
};
const size_t kfm__nderived = sizeof kfm__derived_defs / sizeof kfm__derived_defs[0];
