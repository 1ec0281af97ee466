/*
 * kfm_nvml.h - internal interface of the NVML backend (NVIDIA GPUs).
 *
 * NVML is loaded at run time with dlopen("libnvidia-ml.so.1"), so kfm has no
 * build dependency on it and one binary runs on machines with and without
 * the driver.  This header declares the few NVML types and functions the
 * backend uses instead of including nvml.h; each declaration names the NVML
 * API release that introduced it, so the oldest driver the backend needs is
 * explicit (every required function exists since NVML 5.319, the R319
 * driver of 2013).  Types carry a kfm__ prefix so they can never clash with
 * nvml.h in some other translation unit; comments give the NVML names.
 *
 * The resolved functions live in one table, struct kfm__nvml_syms.  dlsym
 * fills it in production; tests fill the same struct with fakes and hand it
 * to kfm__nvml_setup_table, or replace dlopen/dlsym themselves through
 * struct kfm__nvml_dl, and so drive every data path without a GPU.
 *
 * Unmeasured values: sample() writes KFM_GPU_UNMEASURED (UINT64_MAX) for a
 * value whose last read failed or has not happened yet.  No real reading
 * can be UINT64_MAX (NVML reports 32-bit quantities, and NVML itself uses
 * all-ones as its "not available" marker for 64-bit ones).
 */
#ifndef KFM_NVML_H
#define KFM_NVML_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#ifndef KFM_GPU_UNMEASURED
/** A sample value that was not measured (read failed, unsupported, not yet read). */
#define KFM_GPU_UNMEASURED KFM__UNMEASURED
#endif

/** The "nvml" backend. */
extern const struct kfm__backend kfm__backend_nvml;

/* ---- NVML declarations (nvml.h names in comments) ------------------------ */

/** nvmlReturn_t (NVML 1.0): an enum, int-sized in the C ABI. */
typedef int kfm__nvml_return_t;
/** nvmlDevice_t (NVML 1.0): an opaque handle. */
typedef struct kfm__nvml_device_st *kfm__nvml_device_t;

enum {
  KFM__NVML_SUCCESS = 0,                 /* NVML_SUCCESS */
  KFM__NVML_ERROR_NOT_SUPPORTED = 3,     /* NVML_ERROR_NOT_SUPPORTED */
  KFM__NVML_ERROR_NO_PERMISSION = 4,     /* NVML_ERROR_NO_PERMISSION */
  KFM__NVML_ERROR_INSUFFICIENT_SIZE = 7, /* NVML_ERROR_INSUFFICIENT_SIZE */
  KFM__NVML_ERROR_DRIVER_NOT_LOADED = 9, /* NVML_ERROR_DRIVER_NOT_LOADED */
  KFM__NVML_ERROR_UNKNOWN = 999,         /* NVML_ERROR_UNKNOWN */
};

/* nvmlClockType_t (NVML 1.0) */
enum { KFM__NVML_CLOCK_SM = 1, KFM__NVML_CLOCK_MEM = 2 };
/* nvmlTemperatureSensors_t (NVML 1.0) */
enum { KFM__NVML_TEMPERATURE_GPU = 0 };
/* nvmlPcieUtilCounter_t (NVML 7.346) */
enum { KFM__NVML_PCIE_UTIL_TX_BYTES = 0, KFM__NVML_PCIE_UTIL_RX_BYTES = 1 };

/** NVML_DEVICE_NAME_V2_BUFFER_SIZE (NVML 11): large enough for every name. */
#define KFM__NVML_NAME_SIZE 96
#define KFM__NVML_BUS_ID_SIZE 32 /* NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE */
#define KFM__NVML_UUID_SIZE 96   /* NVML_DEVICE_UUID_V2_BUFFER_SIZE */
#define KFM__NVML_MIG_ENABLE 1   /* NVML_DEVICE_MIG_ENABLE */
/* Field ids (NVML 11.450+): instantaneous board power, mW, all architectures;
 * nvmlDeviceGetPowerUsage is a 1 s average on Ampere (but GA100) and newer. */
#define KFM__NVML_FI_DEV_POWER_INSTANT 186 /* NVML_FI_DEV_POWER_INSTANT */
#define KFM__NVML_VALUE_TYPE_UNSIGNED_INT 1 /* NVML_VALUE_TYPE_UNSIGNED_INT */

/** nvmlFieldValue_t (NVML 10+), filled by nvmlDeviceGetFieldValues. */
struct kfm__nvml_field_value {
  unsigned int fieldId;
  unsigned int scopeId;
  long long timestamp; /* us since 1970 */
  long long latencyUsec;
  int valueType;  /* nvmlValueType_t */
  int nvmlReturn; /* nvmlReturn_t of this field */
  union {         /* nvmlValue_t */
    double dVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    signed long long sllVal;
    signed int siVal;
    unsigned short usVal;
  } value;
};

/** nvmlPciInfo_t as nvmlDeviceGetPciInfo_v3 fills it (layout of NVML 9.384+). */
struct kfm__nvml_pci_info {
  char busIdLegacy[16]; /* NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE */
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pciDeviceId;
  unsigned int pciSubSystemId; /* NVML 2.285 */
  char busId[KFM__NVML_BUS_ID_SIZE];
};

/** nvmlUtilization_t (NVML 1.0): percent over the driver's last sample period. */
struct kfm__nvml_utilization {
  unsigned int gpu;
  unsigned int memory;
};

/** nvmlMemory_t, version 1 (NVML 1.0), bytes. */
struct kfm__nvml_memory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

/** nvmlProcessInfo_v1_t (NVML 1.0), filled by nvmlDeviceGetComputeRunningProcesses. */
struct kfm__nvml_process_info_v1 {
  unsigned int pid;
  unsigned long long usedGpuMemory; /* all-ones: NVML_VALUE_NOT_AVAILABLE */
};

/** nvmlProcessInfo_v2_t == nvmlProcessInfo_t (NVML 11.460 / 11.510), filled by
 * nvmlDeviceGetComputeRunningProcesses_v2 and _v3 (same layout). */
struct kfm__nvml_process_info_v2 {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
};

/**
 * The NVML functions the backend calls, filled by dlsym or by a test.  The
 * first block is required (setup fails naming the missing one); a NULL in
 * the second block only leaves its metric unmeasured, so a future driver
 * that drops a deprecated entry point (nvmlDeviceGetTemperature is
 * deprecated in NVML 13) degrades instead of disabling the backend.
 */
struct kfm__nvml_syms {
  /* required */
  kfm__nvml_return_t (*init_v2)(void);                            /* nvmlInit_v2, NVML 5.319 */
  kfm__nvml_return_t (*shutdown)(void);                           /* nvmlShutdown, NVML 1.0 */
  const char *(*error_string)(kfm__nvml_return_t result);         /* nvmlErrorString, NVML 1.0 */
  kfm__nvml_return_t (*device_get_count_v2)(unsigned int *count); /* nvmlDeviceGetCount_v2, 5.319 */
  kfm__nvml_return_t (*device_get_handle_by_index_v2)(unsigned int index,
                                                      kfm__nvml_device_t *device);
  /* ^ nvmlDeviceGetHandleByIndex_v2, NVML 5.319 */

  /* optional */
  kfm__nvml_return_t (*device_get_name)(kfm__nvml_device_t device, char *name,
                                        unsigned int length); /* nvmlDeviceGetName, 1.0 */
  kfm__nvml_return_t (*device_get_pci_info_v3)(kfm__nvml_device_t device,
                                               struct kfm__nvml_pci_info *pci);
  /* ^ nvmlDeviceGetPciInfo_v3, NVML 9.384 */
  kfm__nvml_return_t (*device_get_utilization_rates)(kfm__nvml_device_t device,
                                                     struct kfm__nvml_utilization *u);
  /* ^ nvmlDeviceGetUtilizationRates, NVML 1.0 */
  kfm__nvml_return_t (*device_get_memory_info)(kfm__nvml_device_t device,
                                               struct kfm__nvml_memory *memory);
  /* ^ nvmlDeviceGetMemoryInfo, NVML 1.0 */
  kfm__nvml_return_t (*device_get_power_usage)(kfm__nvml_device_t device, unsigned int *mw);
  /* ^ nvmlDeviceGetPowerUsage, NVML 1.0 (milliwatts) */
  kfm__nvml_return_t (*device_get_clock_info)(kfm__nvml_device_t device, int type,
                                              unsigned int *mhz);
  /* ^ nvmlDeviceGetClockInfo, NVML 1.0 (type: nvmlClockType_t) */
  kfm__nvml_return_t (*device_get_temperature)(kfm__nvml_device_t device, int sensor,
                                               unsigned int *celsius);
  /* ^ nvmlDeviceGetTemperature, NVML 1.0, deprecated in 13.0 (sensor: nvmlTemperatureSensors_t) */
  kfm__nvml_return_t (*device_get_pcie_throughput)(kfm__nvml_device_t device, int counter,
                                                   unsigned int *kb_per_s);
  /* ^ nvmlDeviceGetPcieThroughput, NVML 7.346 (counter: nvmlPcieUtilCounter_t; blocks ~20 ms) */
  kfm__nvml_return_t (*device_get_compute_running_processes_v2)(
      kfm__nvml_device_t device, unsigned int *count, struct kfm__nvml_process_info_v2 *infos);
  /* ^ nvmlDeviceGetComputeRunningProcesses_v3 (NVML 11.510), else _v2 (11.460): same layout */
  kfm__nvml_return_t (*device_get_compute_running_processes)(
      kfm__nvml_device_t device, unsigned int *count, struct kfm__nvml_process_info_v1 *infos);
  /* ^ nvmlDeviceGetComputeRunningProcesses, NVML 1.0 (v1 layout): used when the above is absent */
  kfm__nvml_return_t (*device_get_uuid)(kfm__nvml_device_t device, char *uuid, unsigned int len);
  /* ^ nvmlDeviceGetUUID, NVML 2.285: "GPU-<uuid>", "MIG-<uuid>" for a MIG device */
  kfm__nvml_return_t (*device_get_handle_by_uuid)(const char *uuid, kfm__nvml_device_t *device);
  /* ^ nvmlDeviceGetHandleByUUID, NVML 2.285; takes MIG UUIDs since NVML 11 */
  kfm__nvml_return_t (*device_get_parent_of_mig)(kfm__nvml_device_t mig, kfm__nvml_device_t *gpu);
  /* ^ nvmlDeviceGetDeviceHandleFromMigDeviceHandle, NVML 11.450 */
  kfm__nvml_return_t (*device_get_mig_mode)(kfm__nvml_device_t device, unsigned int *current,
                                            unsigned int *pending);
  /* ^ nvmlDeviceGetMigMode, NVML 11.450 */
  kfm__nvml_return_t (*device_get_field_values)(kfm__nvml_device_t device, int count,
                                                struct kfm__nvml_field_value *values);
  /* ^ nvmlDeviceGetFieldValues, NVML 10 (instant power) */
};

/**
 * Which NVML devices this process uses: CUDA_VISIBLE_DEVICES read as CUDA
 * reads it (comma-separated; entries are an index in PCI bus order, a
 * "GPU-" UUID or unique prefix of one, or a "MIG-" UUID; the list ends at
 * the first entry that names no device, and a repeated device ends it too).
 * cvd NULL: every device.  Fills idx[] with NVML indices of the physical
 * GPUs (a MIG instance gives its parent, and mig[i] its UUID, else ""),
 * at most cap; returns how many.  note gets what was dropped and why.
 * Uses the set-up library; no device is opened twice.
 */
unsigned kfm__nvml_visible(const char *cvd, unsigned *idx, char (*mig)[KFM__NVML_UUID_SIZE],
                           unsigned cap, char *note, size_t notelen);

/** dlopen/dlsym/dlerror/dlclose, replaceable by tests (SQLite's aSyscall idea). */
struct kfm__nvml_dl {
  void *(*open)(const char *file, int flags);
  void *(*sym)(void *handle, const char *name);
  char *(*error)(void);
  int (*close)(void *handle);
};

/** The library file the backend loads. */
#define KFM__NVML_LIBRARY "libnvidia-ml.so.1"

/**
 * Process-wide set-up through dl: open KFM__NVML_LIBRARY, resolve the table,
 * nvmlInit_v2, count devices.  Returns 1 when usable; otherwise 0 with the
 * reason in reason[len], e.g. "libnvidia-ml.so.1 not found (dlopen: ...)",
 * "nvmlInit_v2 failed: 9 Driver Not Loaded", "no NVIDIA GPU
 * (nvmlDeviceGetCount = 0)".  Undoes any earlier set-up first.  Not
 * thread-safe: the engine calls it once, under its probe pthread_once.
 */
int kfm__nvml_setup_dl(const struct kfm__nvml_dl *dl, char *reason, size_t len);
/** The same from a filled table (no library is opened or closed). */
int kfm__nvml_setup_table(const struct kfm__nvml_syms *syms, char *reason, size_t len);
/** nvmlShutdown and dlclose if set up; then nothing is set up. */
void kfm__nvml_teardown(void);

/**
 * Memory this process uses on one device, from a process list of n entries
 * of stride bytes each (pid at offset 0, usedGpuMemory at offset 8, as in
 * both NVML layouts).  pid_visible says whether NVML's pids are this
 * process's (we run in the initial PID namespace): if not and our pid is
 * absent from a non-empty list, the answer is unknown, not 0.
 * KFM_GPU_UNMEASURED when unknown.
 */
uint64_t kfm__nvml_proc_mem(const void *infos, size_t stride, unsigned n, unsigned pid,
                            int pid_visible);

#endif /* KFM_NVML_H */
