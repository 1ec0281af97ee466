/*
 * kfm_rocm_smi.h - internal interface of the ROCm SMI backend (AMD GPUs).
 *
 * librocm_smi64 is loaded at run time with dlopen, never linked, so one kfm
 * binary runs with and without ROCm.  The library's soname differs by
 * distribution: AMD's ROCm 5.x ships librocm_smi64.so.5, ROCm 6.0 .so.6,
 * ROCm 6.1 and later .so.7 (under /opt/rocm/lib), Debian and Ubuntu
 * (librocm-smi64-1, ROCm 5.2-5.7 sources) .so.1.  The backend tries them
 * newest first (KFM__RSMI_LIBRARIES).
 *
 * The used subset of the API is declared here rather than taken from
 * rocm_smi.h because one struct changed layout between the versions a
 * binary may meet at run time: rsmi_frequencies_t gained a leading bool
 * has_deep_sleep and a 33rd entry in ROCm 6.0 (264 -> 280 bytes), and
 * rsmi_version_get cannot tell them apart (Debian's build reports 1.0.0).
 * kfm__rsmi_clock_mhz decodes either layout.  Every function used exists,
 * with the signature declared here, from ROCm 3.x through 6.x.
 *
 * Tests fill struct kfm__rsmi_syms with fakes (kfm__rsmi_setup_table), or
 * replace dlopen/dlsym (struct kfm__rsmi_dl) and the sysfs root the
 * pre-check reads, and so drive every path without a GPU.
 *
 * Unmeasured values: sample() writes KFM_GPU_UNMEASURED (UINT64_MAX) for a
 * value whose last read failed or has not happened yet.
 */
#ifndef KFM_ROCM_SMI_H
#define KFM_ROCM_SMI_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#ifndef KFM_GPU_UNMEASURED
/** A sample value that was not measured (read failed, unsupported, not yet read). */
#define KFM_GPU_UNMEASURED KFM__UNMEASURED
#endif

/** The "rocm_smi" backend. */
extern const struct kfm__backend kfm__backend_rocm_smi;

/** rsmi_status_t: an enum holding 0xFFFFFFFF, so unsigned int in the C ABI. */
typedef uint32_t kfm__rsmi_status_t;

/* rsmi_status_t values, in order; KFM__RSMI_STATUS_MAP generates the names. */
#define KFM__RSMI_STATUS_MAP(XX)                                                                   \
  XX(0, RSMI_STATUS_SUCCESS)                                                                       \
  XX(1, RSMI_STATUS_INVALID_ARGS)                                                                  \
  XX(2, RSMI_STATUS_NOT_SUPPORTED)                                                                 \
  XX(3, RSMI_STATUS_FILE_ERROR)                                                                    \
  XX(4, RSMI_STATUS_PERMISSION)                                                                    \
  XX(5, RSMI_STATUS_OUT_OF_RESOURCES)                                                              \
  XX(6, RSMI_STATUS_INTERNAL_EXCEPTION)                                                            \
  XX(7, RSMI_STATUS_INPUT_OUT_OF_BOUNDS)                                                           \
  XX(8, RSMI_STATUS_INIT_ERROR)                                                                    \
  XX(9, RSMI_STATUS_NOT_YET_IMPLEMENTED)                                                           \
  XX(10, RSMI_STATUS_NOT_FOUND)                                                                    \
  XX(11, RSMI_STATUS_INSUFFICIENT_SIZE)                                                            \
  XX(12, RSMI_STATUS_INTERRUPT)                                                                    \
  XX(13, RSMI_STATUS_UNEXPECTED_SIZE)                                                              \
  XX(14, RSMI_STATUS_NO_DATA)                                                                      \
  XX(15, RSMI_STATUS_UNEXPECTED_DATA)                                                              \
  XX(16, RSMI_STATUS_BUSY)                                                                         \
  XX(17, RSMI_STATUS_REFCOUNT_OVERFLOW)                                                            \
  XX(0xFFFFFFFFu, RSMI_STATUS_UNKNOWN_ERROR)

enum {
  KFM__RSMI_SUCCESS = 0,
  KFM__RSMI_NOT_SUPPORTED = 2,
  KFM__RSMI_INIT_ERROR = 8,
};
#define KFM__RSMI_INVALID_ARGS 1u /* RSMI_STATUS_INVALID_ARGS */

/** RSMI_INIT_FLAG_THRAD_ONLY_MUTEX (ROCm 5.x+; its spelling): ROCm SMI's
 * device mutexes are then per thread, not process-shared, so another
 * process is not blocked for the 1 s of a PCIe throughput read. */
#define KFM__RSMI_INIT_FLAG_THREAD_ONLY_MUTEX 0x400000000000000ull

/* rsmi_clk_type_t, rsmi_memory_type_t, rsmi_temperature_type_t, rsmi_temperature_metric_t */
enum { KFM__RSMI_CLK_TYPE_SYS = 0, KFM__RSMI_CLK_TYPE_MEM = 4 };
enum { KFM__RSMI_MEM_TYPE_VRAM = 0 };
enum { KFM__RSMI_TEMP_TYPE_EDGE = 0, KFM__RSMI_TEMP_TYPE_JUNCTION = 1 };
enum { KFM__RSMI_TEMP_CURRENT = 0 };

/** Bytes reserved for an rsmi_frequencies_t of any known layout (264 or 280). */
#define KFM__RSMI_FREQ_BUF 512

/** rsmi_version_t. */
struct kfm__rsmi_version {
  uint32_t major, minor, patch;
  const char *build;
};

/**
 * The ROCm SMI functions the backend calls, filled by dlsym or by a test.
 * The first block is required; a NULL in the second leaves its metric
 * unmeasured.
 */
struct kfm__rsmi_syms {
  /* required */
  kfm__rsmi_status_t (*init)(uint64_t init_flags);        /* rsmi_init */
  kfm__rsmi_status_t (*shut_down)(void);                  /* rsmi_shut_down */
  kfm__rsmi_status_t (*num_monitor_devices)(uint32_t *n); /* rsmi_num_monitor_devices */
  /* optional */
  kfm__rsmi_status_t (*status_string)(kfm__rsmi_status_t status, const char **str);
  kfm__rsmi_status_t (*version_get)(struct kfm__rsmi_version *v); /* rsmi_version_get */
  kfm__rsmi_status_t (*dev_name_get)(uint32_t dv, char *name, size_t len);
  kfm__rsmi_status_t (*dev_pci_id_get)(uint32_t dv, uint64_t *bdfid);
  kfm__rsmi_status_t (*dev_busy_percent_get)(uint32_t dv, uint32_t *percent);
  kfm__rsmi_status_t (*dev_memory_busy_percent_get)(uint32_t dv, uint32_t *percent);
  kfm__rsmi_status_t (*dev_memory_usage_get)(uint32_t dv, int mem_type, uint64_t *used);
  kfm__rsmi_status_t (*dev_memory_total_get)(uint32_t dv, int mem_type, uint64_t *total);
  /* ^ bytes */
  kfm__rsmi_status_t (*dev_power_ave_get)(uint32_t dv, uint32_t sensor, uint64_t *microwatts);
  /* ^ deprecated, and missing on MI300 and newer ASICs */
  kfm__rsmi_status_t (*dev_current_socket_power_get)(uint32_t dv, uint64_t *microwatts);
  /* ^ rsmi_dev_current_socket_power_get (ROCm 6): instantaneous socket power */
  kfm__rsmi_status_t (*dev_gpu_clk_freq_get)(uint32_t dv, int clk_type, void *freqs);
  /* ^ freqs: an rsmi_frequencies_t of either layout, KFM__RSMI_FREQ_BUF bytes */
  kfm__rsmi_status_t (*dev_temp_metric_get)(uint32_t dv, uint32_t sensor, int metric,
                                            int64_t *millidegrees);
  kfm__rsmi_status_t (*dev_pci_throughput_get)(uint32_t dv, uint64_t *sent, uint64_t *received,
                                               uint64_t *max_pkt_sz);
  /* ^ blocks 1 s (the kernel counts PCIe messages for a second) */
};

/** dlopen/dlsym/dlerror/dlclose, replaceable by tests. */
struct kfm__rsmi_dl {
  void *(*open)(const char *file, int flags);
  void *(*sym)(void *handle, const char *name);
  char *(*error)(void);
  int (*close)(void *handle);
};

/** Library names tried in order (NULL-terminated). */
extern const char *const kfm__rsmi_libraries[];

/**
 * Process-wide set-up: dlopen the first of kfm__rsmi_libraries that loads,
 * resolve the table, check that <drm_root>/class/drm holds an AMD card
 * (vendor 0x1002) and only then call rsmi_init(0) with stderr silenced,
 * count devices.  drm_root is "/sys" in production; tests pass a fixture.
 * Returns 1 when usable; otherwise 0 with the reason, e.g.
 * "no AMD GPU or amdgpu driver (/sys/class/drm: No such file or
 * directory); rsmi_init not called" or "rsmi_init failed: 8
 * RSMI_STATUS_INIT_ERROR (no AMD GPU or amdgpu driver)".  Undoes any
 * earlier set-up first.  Not thread-safe (the engine probes once).
 */
int kfm__rsmi_setup_dl(const struct kfm__rsmi_dl *dl, const char *sys_root, char *reason,
                       size_t len);
/** The same from a filled table: no library, no sysfs pre-check. */
int kfm__rsmi_setup_table(const struct kfm__rsmi_syms *syms, char *reason, size_t len);
/** rsmi_shut_down and dlclose if set up. */
void kfm__rsmi_teardown(void);

/** Symbolic name of a status ("RSMI_STATUS_INIT_ERROR"), or "RSMI_STATUS_?". */
const char *kfm__rsmi_status_name(kfm__rsmi_status_t s);

/**
 * Current clock in MHz from an rsmi_frequencies_t of unknown layout (buf
 * zero-filled before the call): the ROCm <= 5 layout {u32 num, u32 current,
 * u64 freq[32]} or the ROCm >= 6 one {bool deep_sleep, u32 num, u32 current,
 * u64 freq[33]}.  A layout is accepted when 1 <= num <= its capacity,
 * current < num, and freq[current] is 1 MHz..100 GHz; the two cannot both
 * pass on one buffer (proof in rocm_smi.c).  KFM_GPU_UNMEASURED if neither.
 */
uint64_t kfm__rsmi_clock_mhz(const void *buf);

/**
 * Calls fn(arg) with what the calling thread writes through C stdio's
 * stderr sent to /dev/null.  rsmi_init perror()s and writes std::cerr (both
 * stdio's stderr) when it finds no GPU, and no flag or variable silences
 * it.  Other threads lose nothing: their stdio writes to stderr wait on the
 * stream's lock for the call's length, and fd 2 itself is never moved, so
 * raw writes to it (Python's sys.stderr) go through.  With a C library
 * other than glibc (no access to the stream's descriptor) fd 2 is pointed
 * at /dev/null instead, and other threads' output in the window is lost.
 * Serialised by a mutex.
 */
kfm__rsmi_status_t kfm__rsmi_quiet_call(kfm__rsmi_status_t (*fn)(uint64_t), uint64_t arg);

#endif /* KFM_ROCM_SMI_H */
