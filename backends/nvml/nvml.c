/*
 * nvml.c - the "nvml" backend: per-GPU utilisation, memory, power, clocks,
 * temperature, PCIe throughput and this process's GPU memory on NVIDIA
 * GPUs, read through NVML and sampled by the engine's sampler thread.
 *
 * Loading.  libnvidia-ml.so.1 is opened with dlopen at probe time (see
 * kfm_nvml.h for the declared subset of the API and the version each
 * function comes from).  The probe also runs nvmlInit_v2 and counts devices,
 * so "disabled" always carries the precise reason: library missing, NVML
 * error code and name, or no device.  The library stays initialised for the
 * life of the process (kfm__nvml_teardown is for the tests).
 *
 * Why a poller thread.  nvmlDeviceGetPcieThroughput measures a byte counter
 * over 20 ms and returns only then, and the other queries are driver ioctls
 * whose cost is not bounded.  The sample hook runs on the engine's sampler
 * thread, which must not block, so each session starts two threads of its
 * own (a kfm__poller, engine/src/poller.h): one reads the fast metrics of
 * every device every KFM__NVML_POLL_MS, the other reads PCIe throughput in
 * a loop.  They publish each value in a relaxed atomic; sample() only
 * copies those, so a sample carries the latest reading, at most one poll
 * period (plus the read itself) old.  The driver refreshes utilisation
 * every 1/6 s to 1 s and averages power over 1 s on recent GPUs, so 100 ms
 * polling loses nothing it reports.
 *
 * Unmeasured values.  A value whose last read failed (unsupported on this
 * GPU, permission, GPU lost) or that was not read yet is KFM_GPU_UNMEASURED
 * (KFM__UNMEASURED); the engine and reports must show it as null/unavailable,
 * never as a number.  export_json names the NVML error of each such value.
 *
 * Which GPUs.  A process reports the GPUs it can use, not every GPU in the
 * box: under torchrun each rank sees one GPU through CUDA_VISIBLE_DEVICES,
 * which is read as CUDA reads it (kfm__nvml_visible), devices matched by
 * UUID; each exported device carries its UUID (CUPTI's records name a CUDA
 * device id, which is the position in that list).  A MIG instance is
 * sampled through its parent GPU: NVML's utilisation, power, clocks,
 * temperature and PCIe figures are the whole GPU's, and the export marks
 * them so ("whole_gpu": true).
 *
 * What the figures mean.  Utilisation is the fraction of the driver's last
 * sample period (1/6 s to 1 s) in which a kernel ran; power is the
 * instantaneous reading (NVML_FI_DEV_POWER_INSTANT) where the driver has
 * it, else nvmlDeviceGetPowerUsage, which is a 1 s average on Ampere (but
 * GA100) and newer.  The export gives each device's "averaging_ms" so a
 * per-node figure of a node shorter than that window can be marked.
 *
 * Per-process memory.  NVML lists the compute processes of a device with
 * pids of the initial PID namespace.  Inside a container the list holds the
 * host's pids, so our own pid is not found; then the value is unknown rather
 * than 0 (kfm__nvml_proc_mem).
 *
 * Global state: the process-wide library handle and symbol table (nvml_lib)
 * are written only by set-up and tear-down, which the engine runs once under
 * its probe pthread_once and at unload; sessions only read them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* readlink */
#endif

#include "kfm_nvml.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpu_gauge.h" /* kfm__gpu_*: what this backend shares with rocm_smi */
#include "poller.h"

/* Devices a session samples; more are listed in the note, not sampled. */
#define NVML_MAX_DEV 16
/* Fast-metric poll period, and the pause between two PCIe rounds. */
#define KFM__NVML_POLL_MS 100
#define NVML_PCIE_PAUSE_MS 100
/* Process list entries first read per device; a longer list grows the
 * buffer (on the poller thread) up to NVML_PROC_MAX. */
#define NVML_PROC_CAP 256
#define NVML_PROC_MAX 65536
/* The driver's utilisation sample period is 1/6 s to 1 s: the upper bound. */
#define NVML_UTIL_WINDOW_MS 1000
#define NVML_POWER_AVG_MS 1000
/* err[] value for a value whose NVML function the library does not export. */
#define NVML_ERR_NO_SYMBOL (-1)
/* err[] value for "not read yet". */
#define NVML_ERR_PENDING (-2)
/* err[] value for a process list whose answer is unknown (see kfm__nvml_proc_mem). */
#define NVML_ERR_PID_UNKNOWN (-3)

/* Per-device values, in the order sample() writes them. */
enum {
  NVML_M_UTIL,
  NVML_M_MEM_UTIL,
  NVML_M_MEM_USED,
  NVML_M_POWER,
  NVML_M_SM_CLOCK,
  NVML_M_MEM_CLOCK,
  NVML_M_TEMP,
  NVML_M_PCIE_TX,
  NVML_M_PCIE_RX,
  NVML_M_PROC_MEM,
  NVML_NMET
};

static const struct kfm__gpu_metric nvml_metric[NVML_NMET] = {
    [NVML_M_UTIL] = {"util", "%"},
    [NVML_M_MEM_UTIL] = {"mem_util", "%"},
    [NVML_M_MEM_USED] = {"mem_used", "bytes"},
    [NVML_M_POWER] = {"power", "mW"},
    [NVML_M_SM_CLOCK] = {"sm_clock", "MHz"},
    [NVML_M_MEM_CLOCK] = {"mem_clock", "MHz"},
    [NVML_M_TEMP] = {"temp", "C"},
    [NVML_M_PCIE_TX] = {"pcie_tx", "KB/s"},
    [NVML_M_PCIE_RX] = {"pcie_rx", "KB/s"},
    [NVML_M_PROC_MEM] = {"proc_mem", "bytes"},
};

/* ---------------------------------------------------------------------- */
/* Process-wide library state.                                             */

static struct {
  int ready;                     /* init succeeded and at least one device exists */
  void *handle;                  /* dlopen handle, NULL for an injected table */
  const struct kfm__nvml_dl *dl; /* how handle was opened */
  unsigned ndev;                 /* nvmlDeviceGetCount_v2 at set-up */
  struct kfm__nvml_syms fn;
  char reason[256]; /* why not ready, for open's error */
} nvml_lib;

static const struct kfm__nvml_dl nvml_real_dl = {
    .open = dlopen, .sym = dlsym, .error = dlerror, .close = dlclose};

/* Symbol name -> table slot (kfm__gpu_resolve). */
static const struct kfm__gpu_sym nvml_symtab[] = {
#define NVML_SYM(name, field, req)                                                                 \
  { name, offsetof(struct kfm__nvml_syms, field), req }
    NVML_SYM("nvmlInit_v2", init_v2, 1),
    NVML_SYM("nvmlShutdown", shutdown, 1),
    NVML_SYM("nvmlErrorString", error_string, 1),
    NVML_SYM("nvmlDeviceGetCount_v2", device_get_count_v2, 1),
    NVML_SYM("nvmlDeviceGetHandleByIndex_v2", device_get_handle_by_index_v2, 1),
    NVML_SYM("nvmlDeviceGetName", device_get_name, 0),
    NVML_SYM("nvmlDeviceGetPciInfo_v3", device_get_pci_info_v3, 0),
    NVML_SYM("nvmlDeviceGetUtilizationRates", device_get_utilization_rates, 0),
    NVML_SYM("nvmlDeviceGetMemoryInfo", device_get_memory_info, 0),
    NVML_SYM("nvmlDeviceGetPowerUsage", device_get_power_usage, 0),
    NVML_SYM("nvmlDeviceGetClockInfo", device_get_clock_info, 0),
    NVML_SYM("nvmlDeviceGetTemperature", device_get_temperature, 0),
    NVML_SYM("nvmlDeviceGetPcieThroughput", device_get_pcie_throughput, 0),
    NVML_SYM("nvmlDeviceGetComputeRunningProcesses", device_get_compute_running_processes, 0),
    NVML_SYM("nvmlDeviceGetUUID", device_get_uuid, 0),
    NVML_SYM("nvmlDeviceGetHandleByUUID", device_get_handle_by_uuid, 0),
    NVML_SYM("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", device_get_parent_of_mig, 0),
    NVML_SYM("nvmlDeviceGetMigMode", device_get_mig_mode, 0),
    NVML_SYM("nvmlDeviceGetFieldValues", device_get_field_values, 0),
#undef NVML_SYM
};

/* "<code> <nvmlErrorString>", tolerating a library that returns NULL. */
static const char *nvml_errstr(kfm__nvml_return_t rc) {
  const char *s = nvml_lib.fn.error_string ? nvml_lib.fn.error_string(rc) : NULL;
  return s ? s : "unknown error";
}

void kfm__nvml_teardown(void) {
  if (nvml_lib.ready && nvml_lib.fn.shutdown) {
    nvml_lib.fn.shutdown();
  }
  if (nvml_lib.handle && nvml_lib.dl && nvml_lib.dl->close) {
    nvml_lib.dl->close(nvml_lib.handle);
  }
  memset(&nvml_lib, 0, sizeof nvml_lib);
  kfm__gpu_fmt(nvml_lib.reason, sizeof nvml_lib.reason, "NVML not set up");
}

/* Runs init and count on the table already in nvml_lib.fn. */
static int nvml_start(char *reason, size_t len) {
  unsigned n = 0;
  kfm__nvml_return_t rc = nvml_lib.fn.init_v2();
  if (rc != KFM__NVML_SUCCESS) {
    kfm__gpu_fmt(nvml_lib.reason, sizeof nvml_lib.reason, "nvmlInit_v2 failed: %d %s", rc,
                 nvml_errstr(rc));
    goto fail;
  }
  rc = nvml_lib.fn.device_get_count_v2(&n);
  if (rc != KFM__NVML_SUCCESS) {
    kfm__gpu_fmt(nvml_lib.reason, sizeof nvml_lib.reason, "nvmlDeviceGetCount_v2 failed: %d %s", rc,
                 nvml_errstr(rc));
    nvml_lib.fn.shutdown();
    goto fail;
  }
  if (n == 0) {
    kfm__gpu_fmt(nvml_lib.reason, sizeof nvml_lib.reason, "no NVIDIA GPU (nvmlDeviceGetCount = 0)");
    nvml_lib.fn.shutdown();
    goto fail;
  }
  nvml_lib.ndev = n;
  nvml_lib.ready = 1;
  kfm__gpu_fmt(reason, len, "available: %u NVIDIA GPU%s (%s)", n, n == 1 ? "" : "s",
               nvml_lib.handle ? KFM__NVML_LIBRARY : "injected symbol table");
  return 1;
fail:
  kfm__gpu_fmt(reason, len, "%s", nvml_lib.reason);
  if (nvml_lib.handle && nvml_lib.dl->close) {
    nvml_lib.dl->close(nvml_lib.handle);
  }
  nvml_lib.handle = NULL;
  /* The functions may be unmapped now: nothing may call them again. */
  memset(&nvml_lib.fn, 0, sizeof nvml_lib.fn);
  return 0;
}

int kfm__nvml_setup_table(const struct kfm__nvml_syms *syms, char *reason, size_t len) {
  kfm__nvml_teardown();
  if (syms == NULL || syms->init_v2 == NULL || syms->shutdown == NULL ||
      syms->error_string == NULL || syms->device_get_count_v2 == NULL ||
      syms->device_get_handle_by_index_v2 == NULL) {
    kfm__gpu_fmt(nvml_lib.reason, sizeof nvml_lib.reason,
                 "NVML symbol table lacks a required function");
    kfm__gpu_fmt(reason, len, "%s", nvml_lib.reason);
    return 0;
  }
  nvml_lib.fn = *syms;
  return nvml_start(reason, len);
}

int kfm__nvml_setup_dl(const struct kfm__nvml_dl *dl, char *reason, size_t len) {
  const struct kfm__gpu_sym *missing;
  const char *e;
  void *h;
  kfm__nvml_teardown();
  h = dl->open(KFM__NVML_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    e = dl->error();
    kfm__gpu_fmt(nvml_lib.reason, sizeof nvml_lib.reason, "%s not found (dlopen: %s)",
                 KFM__NVML_LIBRARY, e ? e : "no error text");
    kfm__gpu_fmt(reason, len, "%s", nvml_lib.reason);
    return 0;
  }
  missing = kfm__gpu_resolve(h, dl->sym, dl->error, nvml_symtab,
                             sizeof nvml_symtab / sizeof nvml_symtab[0], &nvml_lib.fn, &e);
  if (missing) {
    kfm__gpu_fmt(nvml_lib.reason, sizeof nvml_lib.reason,
                 "%s lacks %s (driver older than NVML 5.319?): %s", KFM__NVML_LIBRARY,
                 missing->name, e);
    kfm__gpu_fmt(reason, len, "%s", nvml_lib.reason);
    dl->close(h);
    memset(&nvml_lib.fn, 0, sizeof nvml_lib.fn);
    return 0;
  }
  /* Newest process-list entry point first; _v3 and _v2 share a layout. */
  {
    void *p = dl->sym(h, "nvmlDeviceGetComputeRunningProcesses_v3");
    if (p == NULL) {
      p = dl->sym(h, "nvmlDeviceGetComputeRunningProcesses_v2");
    }
    memcpy(&nvml_lib.fn.device_get_compute_running_processes_v2, &p, sizeof p);
  }
  nvml_lib.handle = h;
  nvml_lib.dl = dl;
  return nvml_start(reason, len);
}

uint64_t kfm__nvml_proc_mem(const void *infos, size_t stride, unsigned n, unsigned pid,
                            int pid_visible) {
  const char *p = infos;
  for (unsigned i = 0; i < n; i++, p += stride) {
    unsigned ipid;
    unsigned long long mem;
    memcpy(&ipid, p, sizeof ipid);
    memcpy(&mem, p + 8, sizeof mem);
    if (ipid == pid) {
      return mem; /* all-ones (NVML_VALUE_NOT_AVAILABLE) is KFM_GPU_UNMEASURED */
    }
  }
  /* Absent: no memory used here, if the pids were comparable at all. */
  return n == 0 || pid_visible ? 0 : KFM_GPU_UNMEASURED;
}

/* ---------------------------------------------------------------------- */
/* Session state and the poller threads.                                   */

struct nvml_dev {
  unsigned index; /* NVML index, used in metric names */
  kfm__nvml_device_t h;
  char name[KFM__NVML_NAME_SIZE]; /* "" when nvmlDeviceGetName failed */
  char bus_id[KFM__NVML_BUS_ID_SIZE];
  char uuid[KFM__NVML_UUID_SIZE];     /* "" when unknown */
  char mig_uuid[KFM__NVML_UUID_SIZE]; /* the MIG instance this process uses, or "" */
  int mig_mode;                       /* MIG enabled on the GPU: figures are whole-GPU */
  uint64_t mem_total;                 /* KFM_GPU_UNMEASURED when unknown */
  _Atomic int power_instant;          /* 1: the last power reading was instantaneous */
};

struct nvml_state {
  int open;
  unsigned ndev; /* devices sampled */
  unsigned nmet; /* ndev * NVML_NMET */
  struct nvml_dev dev[NVML_MAX_DEV];
  char skipped[256]; /* devices that could not be opened, for export and the note */
  unsigned pid;
  int pid_visible;
  /* Published by the pollers, read by sample() and export: value and last NVML code. */
  _Atomic uint64_t val[NVML_MAX_DEV * NVML_NMET];
  _Atomic int64_t err[NVML_MAX_DEV * NVML_NMET]; /* nvmlReturn_t or NVML_ERR_* */
  struct kfm__metric_def defs[NVML_MAX_DEV * NVML_NMET];
  char names[NVML_MAX_DEV * NVML_NMET][40];
  /* Fast poller's process list buffer (only that thread touches it after
   * open): proc_cap entries of the v2 layout, the larger of the two. */
  struct kfm__nvml_process_info_v2 *procs;
  unsigned proc_cap;
  char visible_note[256]; /* how CUDA_VISIBLE_DEVICES was applied */
  struct kfm__poller poller; /* the fast and the PCIe threads */
};

static void nvml_put(struct nvml_state *st, unsigned d, unsigned m, kfm__nvml_return_t rc,
                     uint64_t v) {
  unsigned i = d * NVML_NMET + m;
  kfm__gpu_put(&st->val[i], &st->err[i], rc, v);
}

/* One call of whichever process-list function the library has into
 * st->procs; *n in: capacity, out: entries (or needed, on
 * INSUFFICIENT_SIZE). */
static kfm__nvml_return_t nvml_list_procs(struct nvml_state *st, kfm__nvml_device_t h,
                                          unsigned *n, size_t *stride) {
  const struct kfm__nvml_syms *fn = &nvml_lib.fn;
  if (fn->device_get_compute_running_processes_v2) {
    *stride = sizeof(struct kfm__nvml_process_info_v2);
    return fn->device_get_compute_running_processes_v2(h, n, st->procs);
  }
  /* v1 entries are smaller: the same buffer holds at least as many. */
  *stride = sizeof(struct kfm__nvml_process_info_v1);
  return fn->device_get_compute_running_processes(h, n,
                                                  (struct kfm__nvml_process_info_v1 *)st->procs);
}

static void nvml_read_procs(struct nvml_state *st, unsigned d) {
  const struct kfm__nvml_syms *fn = &nvml_lib.fn;
  kfm__nvml_device_t h = st->dev[d].h;
  if (!fn->device_get_compute_running_processes_v2 && !fn->device_get_compute_running_processes) {
    nvml_put(st, d, NVML_M_PROC_MEM, NVML_ERR_NO_SYMBOL, 0);
    return;
  }
  if (st->procs == NULL) {
    nvml_put(st, d, NVML_M_PROC_MEM, KFM__NVML_ERROR_INSUFFICIENT_SIZE, 0);
    return;
  }
  unsigned n = st->proc_cap;
  size_t stride;
  kfm__nvml_return_t rc = nvml_list_procs(st, h, &n, &stride);
  if (rc == KFM__NVML_ERROR_INSUFFICIENT_SIZE && n > st->proc_cap && n <= NVML_PROC_MAX) {
    /* More processes than room (a shared inference server): grow on this
     * poller thread, with headroom for the list growing meanwhile. */
    unsigned cap = n + n / 4 < NVML_PROC_MAX ? n + n / 4 : NVML_PROC_MAX;
    struct kfm__nvml_process_info_v2 *p = realloc(st->procs, (size_t)cap * sizeof *p);
    if (p != NULL) {
      st->procs = p;
      st->proc_cap = cap;
    }
    n = st->proc_cap;
    rc = nvml_list_procs(st, h, &n, &stride);
  }
  /* n is an entry count only on success: on INSUFFICIENT_SIZE it is the
   * size needed, and reading that many entries would run past the buffer. */
  if (rc == KFM__NVML_SUCCESS && n > st->proc_cap) {
    rc = KFM__NVML_ERROR_INSUFFICIENT_SIZE; /* a library that overstates n */
  }
  if (rc != KFM__NVML_SUCCESS) {
    nvml_put(st, d, NVML_M_PROC_MEM, rc, 0);
    return;
  }
  uint64_t v = kfm__nvml_proc_mem(st->procs, stride, n, st->pid, st->pid_visible);
  nvml_put(st, d, NVML_M_PROC_MEM, v == KFM_GPU_UNMEASURED ? NVML_ERR_PID_UNKNOWN : rc, v);
}

/* Instantaneous power where the driver has it (NVML_FI_DEV_POWER_INSTANT),
 * else nvmlDeviceGetPowerUsage (a 1 s average on recent GPUs). */
static void nvml_read_power(struct nvml_state *st, unsigned d) {
  const struct kfm__nvml_syms *fn = &nvml_lib.fn;
  struct nvml_dev *dv = &st->dev[d];
  if (fn->device_get_field_values) {
    struct kfm__nvml_field_value fv;
    memset(&fv, 0, sizeof fv);
    fv.fieldId = KFM__NVML_FI_DEV_POWER_INSTANT;
    if (fn->device_get_field_values(dv->h, 1, &fv) == KFM__NVML_SUCCESS &&
        fv.nvmlReturn == KFM__NVML_SUCCESS &&
        fv.valueType == KFM__NVML_VALUE_TYPE_UNSIGNED_INT) {
      atomic_store_explicit(&dv->power_instant, 1, memory_order_relaxed);
      nvml_put(st, d, NVML_M_POWER, KFM__NVML_SUCCESS, fv.value.uiVal);
      return;
    }
  }
  unsigned u = 0;
  kfm__nvml_return_t rc =
      fn->device_get_power_usage ? fn->device_get_power_usage(dv->h, &u) : NVML_ERR_NO_SYMBOL;
  atomic_store_explicit(&dv->power_instant, 0, memory_order_relaxed);
  nvml_put(st, d, NVML_M_POWER, rc, u);
}

/* Everything but PCIe throughput, for every device. */
static void nvml_read_fast(struct nvml_state *st) {
  const struct kfm__nvml_syms *fn = &nvml_lib.fn;
  for (unsigned d = 0; d < st->ndev; d++) {
    kfm__nvml_device_t h = st->dev[d].h;
    kfm__nvml_return_t rc;
    unsigned u = 0;
    if (fn->device_get_utilization_rates) {
      struct kfm__nvml_utilization ut = {0, 0};
      rc = fn->device_get_utilization_rates(h, &ut);
      nvml_put(st, d, NVML_M_UTIL, rc, ut.gpu);
      nvml_put(st, d, NVML_M_MEM_UTIL, rc, ut.memory);
    } else {
      nvml_put(st, d, NVML_M_UTIL, NVML_ERR_NO_SYMBOL, 0);
      nvml_put(st, d, NVML_M_MEM_UTIL, NVML_ERR_NO_SYMBOL, 0);
    }
    if (fn->device_get_memory_info) {
      struct kfm__nvml_memory mem = {0, 0, 0};
      rc = fn->device_get_memory_info(h, &mem);
      nvml_put(st, d, NVML_M_MEM_USED, rc, mem.used);
    } else {
      nvml_put(st, d, NVML_M_MEM_USED, NVML_ERR_NO_SYMBOL, 0);
    }
    nvml_read_power(st, d);
    rc = fn->device_get_clock_info ? fn->device_get_clock_info(h, KFM__NVML_CLOCK_SM, &u)
                                   : NVML_ERR_NO_SYMBOL;
    nvml_put(st, d, NVML_M_SM_CLOCK, rc, u);
    rc = fn->device_get_clock_info ? fn->device_get_clock_info(h, KFM__NVML_CLOCK_MEM, &u)
                                   : NVML_ERR_NO_SYMBOL;
    nvml_put(st, d, NVML_M_MEM_CLOCK, rc, u);
    rc = fn->device_get_temperature ? fn->device_get_temperature(h, KFM__NVML_TEMPERATURE_GPU, &u)
                                    : NVML_ERR_NO_SYMBOL;
    nvml_put(st, d, NVML_M_TEMP, rc, u);
    nvml_read_procs(st, d);
  }
}

/* PCIe throughput of one device: two 20 ms measurements inside NVML. */
static void nvml_read_pcie(struct nvml_state *st, unsigned d) {
  const struct kfm__nvml_syms *fn = &nvml_lib.fn;
  unsigned v = 0;
  kfm__nvml_return_t rc;
  rc = fn->device_get_pcie_throughput
           ? fn->device_get_pcie_throughput(st->dev[d].h, KFM__NVML_PCIE_UTIL_TX_BYTES, &v)
           : NVML_ERR_NO_SYMBOL;
  nvml_put(st, d, NVML_M_PCIE_TX, rc, v);
  rc = fn->device_get_pcie_throughput
           ? fn->device_get_pcie_throughput(st->dev[d].h, KFM__NVML_PCIE_UTIL_RX_BYTES, &v)
           : NVML_ERR_NO_SYMBOL;
  nvml_put(st, d, NVML_M_PCIE_RX, rc, v);
}

static void *nvml_fast_main(void *arg) {
  struct nvml_state *st = arg;
  while (!kfm__poller_wait_ms(&st->poller, KFM__NVML_POLL_MS)) {
    nvml_read_fast(st);
  }
  return NULL;
}

static void *nvml_pcie_main(void *arg) {
  struct nvml_state *st = arg;
  do {
    for (unsigned d = 0; d < st->ndev && !kfm__poller_stopping(&st->poller); d++) {
      nvml_read_pcie(st, d);
    }
  } while (!kfm__poller_wait_ms(&st->poller, NVML_PCIE_PAUSE_MS));
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Backend hooks.                                                          */

static int nvml_probe(char *reason, size_t len) {
  return kfm__nvml_setup_dl(&nvml_real_dl, reason, len);
}

/* Whether this process sees the pids NVML reports: the initial PID
 * namespace has the fixed inode PROC_PID_INIT_INO (0xEFFFFFFC). */
static int nvml_pid_visible(void) {
  char link[64];
  ssize_t n = readlink("/proc/self/ns/pid", link, sizeof link - 1);
  if (n <= 0) {
    return 0;
  }
  link[n] = '\0';
  return strcmp(link, "pid:[4026531836]") == 0;
}

static void nvml_close(void *state) {
  struct nvml_state *st = state;
  if (!st->open) {
    return;
  }
  kfm__poller_destroy(&st->poller); /* stops and joins the pollers first */
  free(st->procs);
  st->procs = NULL;
  st->open = 0;
}

/* Looks up device i; 0, or an NVML code with what failed in why. */
static int nvml_open_dev(struct nvml_dev *dv, unsigned i, const char **why) {
  const struct kfm__nvml_syms *fn = &nvml_lib.fn;
  kfm__nvml_return_t rc;
  memset(dv, 0, sizeof *dv);
  dv->index = i;
  dv->mem_total = KFM_GPU_UNMEASURED;
  rc = fn->device_get_handle_by_index_v2(i, &dv->h);
  if (rc != KFM__NVML_SUCCESS) {
    *why = "nvmlDeviceGetHandleByIndex_v2";
    return rc;
  }
  if (fn->device_get_name &&
      fn->device_get_name(dv->h, dv->name, sizeof dv->name) != KFM__NVML_SUCCESS) {
    dv->name[0] = '\0';
  }
  dv->name[sizeof dv->name - 1] = '\0';
  if (fn->device_get_pci_info_v3) {
    struct kfm__nvml_pci_info pci;
    memset(&pci, 0, sizeof pci);
    if (fn->device_get_pci_info_v3(dv->h, &pci) == KFM__NVML_SUCCESS) {
      memcpy(dv->bus_id, pci.busId, sizeof dv->bus_id);
      dv->bus_id[sizeof dv->bus_id - 1] = '\0';
    }
  }
  if (fn->device_get_memory_info) {
    struct kfm__nvml_memory mem = {0, 0, 0};
    if (fn->device_get_memory_info(dv->h, &mem) == KFM__NVML_SUCCESS) {
      dv->mem_total = mem.total;
    }
  }
  if (fn->device_get_uuid &&
      fn->device_get_uuid(dv->h, dv->uuid, sizeof dv->uuid) != KFM__NVML_SUCCESS) {
    dv->uuid[0] = '\0';
  }
  dv->uuid[sizeof dv->uuid - 1] = '\0';
  unsigned cur = 0, pend = 0;
  if (fn->device_get_mig_mode &&
      fn->device_get_mig_mode(dv->h, &cur, &pend) == KFM__NVML_SUCCESS) {
    dv->mig_mode = cur == KFM__NVML_MIG_ENABLE;
  }
  return 0;
}

/* The NVML index of the GPU whose UUID is want or starts with it (CUDA
 * takes a unique prefix); -1 none, -2 more than one. */
static int nvml_index_of_uuid(const char *want) {
  const struct kfm__nvml_syms *fn = &nvml_lib.fn;
  int found = -1;
  size_t n = strlen(want);
  for (unsigned i = 0; i < nvml_lib.ndev && fn->device_get_uuid; i++) {
    kfm__nvml_device_t h;
    char u[KFM__NVML_UUID_SIZE];
    if (fn->device_get_handle_by_index_v2(i, &h) != KFM__NVML_SUCCESS ||
        fn->device_get_uuid(h, u, sizeof u) != KFM__NVML_SUCCESS) {
      continue;
    }
    u[sizeof u - 1] = '\0';
    if (strncmp(u, want, n) == 0) {
      if (found >= 0) {
        return -2;
      }
      found = (int)i;
    }
  }
  return found;
}

/* The NVML index of the GPU a MIG instance UUID belongs to, or -1 with why. */
static int nvml_index_of_mig(const char *mig, const char **why) {
  const struct kfm__nvml_syms *fn = &nvml_lib.fn;
  kfm__nvml_device_t mh, ph;
  char u[KFM__NVML_UUID_SIZE];
  if (!fn->device_get_handle_by_uuid || !fn->device_get_parent_of_mig || !fn->device_get_uuid) {
    *why = "this NVML cannot resolve MIG UUIDs";
    return -1;
  }
  if (fn->device_get_handle_by_uuid(mig, &mh) != KFM__NVML_SUCCESS) {
    *why = "no such MIG instance (nvmlDeviceGetHandleByUUID)";
    return -1;
  }
  if (fn->device_get_parent_of_mig(mh, &ph) != KFM__NVML_SUCCESS ||
      fn->device_get_uuid(ph, u, sizeof u) != KFM__NVML_SUCCESS) {
    *why = "its parent GPU is unknown (nvmlDeviceGetDeviceHandleFromMigDeviceHandle)";
    return -1;
  }
  u[sizeof u - 1] = '\0';
  int i = nvml_index_of_uuid(u);
  if (i < 0) {
    *why = "its parent GPU's UUID matches no device";
  }
  return i < 0 ? -1 : i;
}

unsigned kfm__nvml_visible(const char *cvd, unsigned *idx, char (*mig)[KFM__NVML_UUID_SIZE],
                           unsigned cap, char *note, size_t notelen) {
  unsigned n = 0;
  kfm__gpu_fmt(note, notelen, "%s", "");
  if (cvd == NULL) {
    for (unsigned i = 0; i < nvml_lib.ndev && n < cap; i++, n++) {
      idx[n] = i;
      mig[n][0] = '\0';
    }
    if (nvml_lib.ndev > cap) {
      kfm__gpu_append(note, notelen, "gpu%u-%u not sampled (limit %u devices)", cap,
                      nvml_lib.ndev - 1, cap);
    }
    return n;
  }
  int numeric = 0;
  for (const char *p = cvd;;) {
    while (*p == ' ') {
      p++;
    }
    const char *e = p;
    while (*e && *e != ',') {
      e++;
    }
    size_t len = (size_t)(e - p);
    while (len && p[len - 1] == ' ') {
      len--;
    }
    if (len == 0 && *e == '\0' && n > 0) {
      break; /* a trailing comma */
    }
    char ent[KFM__NVML_UUID_SIZE];
    const char *why = NULL;
    int dev = -1;
    if (len == 0 || len >= sizeof ent) {
      why = "not an entry";
      len = len >= sizeof ent ? sizeof ent - 1 : len;
    }
    memcpy(ent, p, len);
    ent[len] = '\0';
    if (why == NULL && ent[0] >= '0' && ent[0] <= '9') {
      char *end = NULL;
      unsigned long v = strtoul(ent, &end, 10);
      if (*end != '\0' || v >= nvml_lib.ndev) {
        why = "not the index of a GPU";
      } else {
        dev = (int)v;
        numeric = 1;
      }
    } else if (why == NULL && strncmp(ent, "GPU-", 4) == 0) {
      dev = nvml_index_of_uuid(ent);
      why = dev == -2 ? "a prefix of more than one GPU's UUID"
            : dev < 0 ? (nvml_lib.fn.device_get_uuid ? "no GPU has this UUID"
                                                     : "this NVML cannot read UUIDs")
                      : NULL;
    } else if (why == NULL && strncmp(ent, "MIG-", 4) == 0) {
      dev = nvml_index_of_mig(ent, &why);
    } else if (why == NULL) {
      why = "not an index, GPU- or MIG- UUID";
    }
    if (why != NULL || dev < 0) {
      /* CUDA ignores the entry and every one after it. */
      kfm__gpu_append(note, notelen, "CUDA_VISIBLE_DEVICES entry '%s' is %s: it and the rest are "
                      "hidden from CUDA", ent, why ? why : "unknown");
      break;
    }
    int dup = 0;
    for (unsigned k = 0; k < n; k++) {
      dup |= idx[k] == (unsigned)dev;
    }
    if (dup) {
      kfm__gpu_append(note, notelen, "gpu%d listed twice in CUDA_VISIBLE_DEVICES: sampled once",
                      dev);
    } else if (n == cap) {
      kfm__gpu_append(note, notelen, "gpu%d not sampled (limit %u devices)", dev, cap);
    } else {
      idx[n] = (unsigned)dev;
      snprintf(mig[n], KFM__NVML_UUID_SIZE, "%s", ent[0] == 'M' ? ent : "");
      n++;
    }
    if (*e == '\0') {
      break;
    }
    p = e + 1;
  }
  const char *order = getenv("CUDA_DEVICE_ORDER");
  if (numeric && nvml_lib.ndev > 1 && (order == NULL || strcmp(order, "PCI_BUS_ID") != 0)) {
    kfm__gpu_append(note, notelen,
                    "indices read in PCI bus order; CUDA_DEVICE_ORDER is not PCI_BUS_ID, so "
                    "CUDA's order differs if the GPUs are of different models");
  }
  return n;
}

static int nvml_open(void *state, struct kfm__backend_ctx *ctx) {
  struct nvml_state *st = state;
  ctx->n_transition = 0;
  ctx->transition = NULL;
  ctx->n_sample = 0;
  ctx->sample = NULL;
  memset(st, 0, sizeof *st);
  if (!nvml_lib.ready) {
    kfm__gpu_fmt(ctx->errbuf, ctx->errlen, "nvml: %s",
                 nvml_lib.reason[0] ? nvml_lib.reason : "NVML not set up");
    return KFM_EBACKEND;
  }
  /* Only the GPUs this process can use. */
  const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
  unsigned vis[NVML_MAX_DEV];
  char mig[NVML_MAX_DEV][KFM__NVML_UUID_SIZE];
  unsigned nvis = kfm__nvml_visible(cvd, vis, mig, NVML_MAX_DEV, st->visible_note,
                                    sizeof st->visible_note);
  if (nvis == 0) {
    kfm__gpu_fmt(ctx->errbuf, ctx->errlen,
                 "nvml: CUDA_VISIBLE_DEVICES='%s' leaves this process no GPU of the %u%s%s", cvd,
                 nvml_lib.ndev, st->visible_note[0] ? ": " : "", st->visible_note);
    return KFM_EBACKEND;
  }
  for (unsigned v = 0; v < nvis; v++) {
    const char *why = "";
    unsigned i = vis[v];
    int rc = nvml_open_dev(&st->dev[st->ndev], i, &why);
    if (rc != 0) {
      kfm__gpu_append(st->skipped, sizeof st->skipped, "gpu%u: %s failed: %d %s", i, why, rc,
                      nvml_errstr(rc));
      continue;
    }
    memcpy(st->dev[st->ndev].mig_uuid, mig[v], sizeof st->dev[st->ndev].mig_uuid);
    st->ndev++;
  }
  if (st->ndev == 0) {
    kfm__gpu_fmt(ctx->errbuf, ctx->errlen, "nvml: no usable device: %s", st->skipped);
    return KFM_EBACKEND;
  }
  st->procs = calloc(NVML_PROC_CAP, sizeof *st->procs);
  st->proc_cap = st->procs ? NVML_PROC_CAP : 0;
  st->nmet = st->ndev * NVML_NMET;
  for (unsigned d = 0; d < st->ndev; d++) {
    unsigned i = d * NVML_NMET;
    kfm__gpu_dev_defs(&st->defs[i], st->names[i], sizeof st->names[0], "nvml", st->dev[d].index,
                      nvml_metric, NVML_NMET, &st->val[i], &st->err[i], NVML_ERR_PENDING);
  }
  st->pid = (unsigned)getpid();
  st->pid_visible = nvml_pid_visible();
  /* A first synchronous read so the first samples carry values; PCIe
   * throughput (20 ms per counter) arrives with the PCIe poller. */
  nvml_read_fast(st);

  if (kfm__gpu_start_pollers(&st->poller, nvml_fast_main, nvml_pcie_main, st, "nvml", ctx->errbuf,
                             ctx->errlen) != 0) {
    return KFM_ETHREAD;
  }
  st->open = 1;

  if (st->visible_note[0]) {
    kfm__gpu_append(st->skipped, sizeof st->skipped, "%s", st->visible_note);
  }
  if (st->skipped[0]) {
    kfm__gpu_fmt(ctx->note, ctx->notelen, "%u device%s sampled; %s", st->ndev,
                 st->ndev == 1 ? "" : "s", st->skipped);
  } else {
    kfm__gpu_fmt(ctx->note, ctx->notelen, "%u device%s sampled every %d ms", st->ndev,
                 st->ndev == 1 ? "" : "s", KFM__NVML_POLL_MS);
  }
  ctx->n_sample = st->nmet;
  ctx->sample = st->defs;
  return 0;
}

/* Sampler thread: copies the pollers' latest values; no call into NVML. */
static void nvml_sample(void *state, uint64_t *out) {
  struct nvml_state *st = state;
  kfm__gpu_sample(st->val, st->nmet, out);
}

/* Why a value is unmeasured, for the export. */
static void nvml_why(int64_t e, char *buf, size_t len) {
  if (e == NVML_ERR_NO_SYMBOL) {
    kfm__gpu_fmt(buf, len, "function not exported by this NVML");
  } else if (e == NVML_ERR_PENDING) {
    kfm__gpu_fmt(buf, len, "not read yet");
  } else if (e == NVML_ERR_PID_UNKNOWN) {
    kfm__gpu_fmt(buf, len,
                 "this process not in NVML's list and its pids are another PID namespace's");
  } else {
    kfm__gpu_fmt(buf, len, "%d %s", (int)e, nvml_errstr((kfm__nvml_return_t)e));
  }
}

static void nvml_export_json(void *state, void *file) {
  struct nvml_state *st = state;
  FILE *f = file;
  if (!st->open) {
    kfm__gpu_export_unavailable(
        f, nvml_lib.ready ? "not opened in this session"
                          : (nvml_lib.reason[0] ? nvml_lib.reason : "NVML not set up"));
    return;
  }
  fprintf(f, "{\"available\":true,\"library\":\"%s\",\"poll_ms\":%d,\"devices\":[",
          nvml_lib.handle ? KFM__NVML_LIBRARY : "injected", KFM__NVML_POLL_MS);
  for (unsigned d = 0; d < st->ndev; d++) {
    const struct nvml_dev *dv = &st->dev[d];
    kfm__gpu_export_dev(f, d, dv->index, dv->name, dv->bus_id, dv->mem_total);
    int instant = atomic_load_explicit(&dv->power_instant, memory_order_relaxed);
    fputs(",\"uuid\":", f);
    if (dv->uuid[0]) {
      kfm__json_str(f, dv->uuid);
    } else {
      fputs("null", f);
    }
    fprintf(f, ",\"cuda_index\":%u", d);
    if (dv->mig_uuid[0]) {
      fputs(",\"mig_instance\":", f);
      kfm__json_str(f, dv->mig_uuid);
    }
    /* MIG: NVML's device figures are the parent GPU's, shared by every
     * instance on it; only proc_mem is this process's. */
    fprintf(f,
            ",\"whole_gpu\":%s,\"power_reading\":\"%s\",\"averaging_ms\":{\"util\":%d,"
            "\"mem_util\":%d,\"power\":%d}",
            dv->mig_mode || dv->mig_uuid[0] ? "true" : "false", instant ? "instant" : "average",
            NVML_UTIL_WINDOW_MS, NVML_UTIL_WINDOW_MS, instant ? 0 : NVML_POWER_AVG_MS);
    kfm__gpu_export_unmeasured(f, &st->err[d * NVML_NMET], nvml_metric, NVML_NMET, nvml_why);
  }
  kfm__gpu_export_end(f, st->skipped);
}

const struct kfm__backend kfm__backend_nvml = {
    .abi = KFM_BACKEND_ABI,
    .name = "nvml",
    .caps = KFM_CAP_SAMPLE,
    .min_level = KFM_LEVEL_COMPREHENSIVE,
    .state_size = sizeof(struct nvml_state),
    .thread_state_size = 0,
    .probe = nvml_probe,
    .init = NULL,
    .open = nvml_open,
    .sample = nvml_sample,
    .close = nvml_close,
    .export_json = nvml_export_json,
};
