/*
 * rocm_smi.c - the "rocm_smi" backend: per-GPU utilisation, memory
 * utilisation and use, power, clocks, temperature and PCIe traffic on AMD
 * GPUs, read through ROCm SMI and sampled by the engine's sampler thread.
 *
 * Loading.  librocm_smi64 is opened with dlopen at probe time (sonames in
 * kfm_rocm_smi.h).  Before rsmi_init the probe looks for an AMD card the
 * way ROCm SMI itself discovers devices, in /sys/class/drm/card<N>/device/
 * vendor == 0x1002: without one rsmi_init can only fail, and it prints
 * "Failed to open drm root directory ..." and "Exception caught ..." on
 * stderr when it does, with no flag or environment variable to silence it.
 * So on a machine without an AMD GPU rsmi_init is not called at all and
 * the reason says what sysfs showed.  When a card is there, rsmi_init runs
 * with the calling thread's stdio stderr silenced (kfm__rsmi_quiet_call:
 * other threads' output is kept) and a failure is reported as "rsmi_init
 * failed: <code> <name> (...)".  It is asked for thread-only mutexes, so
 * other processes using ROCm SMI are not blocked while a poller holds a
 * device for its 1 s PCIe read.
 *
 * Power.  rsmi_dev_power_ave_get is deprecated and missing on MI300 and
 * newer ASICs; the current (instantaneous) socket power is read first and
 * the average only where that is not supported.  The export says which.
 *
 * Why poller threads.  rsmi_dev_pci_throughput_get sleeps 1 s in the kernel
 * (amdgpu counts PCIe messages for a second) and holds ROCm SMI's per-device
 * mutex meanwhile; the other calls read sysfs files.  The engine's sampler
 * thread must not block, so each session runs two threads (a kfm__poller,
 * engine/src/poller.h): one reads the fast metrics every KFM__RSMI_POLL_MS,
 * the other PCIe traffic of each device every RSMI_PCIE_PERIOD_MS.  While
 * a device's PCIe read runs, its fast metrics wait on that mutex, so they
 * may be up to 1 s old once every period.  sample() copies the latest
 * published values.
 *
 * PCIe units and direction.  amdgpu's pcie_bw file, which ROCm SMI parses,
 * holds two message counts over one second and the maximum payload size,
 * not bytes; the first count is received messages and the second posted
 * requests sent (amdgpu cik/vi/soc15_get_pcie_usage: "Reg 40 is # received
 * msgs", "Reg 104 is # of posted requests sent"), although ROCm SMI names
 * its output parameters sent, received.  The backend follows the kernel:
 * pcie_rx is the first count and pcie_tx the second, in count/s; the export
 * gives the maximum payload so a reader can bound the bytes.
 *
 * Unmeasured values are KFM_GPU_UNMEASURED (KFM__UNMEASURED), as in nvml.c.
 *
 * Global state: the library handle and table (rsmi_lib) are written only by
 * set-up and tear-down (the engine's probe pthread_once, and unload);
 * rsmi_quiet_lock serialises the fd 2 swap.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* F_DUPFD_CLOEXEC */
#endif

#include "kfm_rocm_smi.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gpu_gauge.h" /* kfm__gpu_*: what this backend shares with nvml */
#include "poller.h"

#define RSMI_MAX_DEV 16
#define KFM__RSMI_POLL_MS 100
#define RSMI_PCIE_PERIOD_MS 5000
/* err[] values that are not rsmi_status_t codes. */
#define RSMI_ERR_NO_SYMBOL (-1)
#define RSMI_ERR_PENDING (-2)
#define RSMI_ERR_BAD_VALUE (-3) /* call succeeded but the value is impossible */
/* Calls an optional function, or yields RSMI_ERR_NO_SYMBOL; int64_t keeps
 * the unsigned rsmi_status_t and the negative RSMI_ERR_* codes apart. */
#define RSMI_CALL(f, ...) ((f) ? (int64_t)(f)(__VA_ARGS__) : (int64_t)RSMI_ERR_NO_SYMBOL)

enum {
  RSMI_M_UTIL,
  RSMI_M_MEM_UTIL,
  RSMI_M_MEM_USED,
  RSMI_M_POWER,
  RSMI_M_SM_CLOCK,
  RSMI_M_MEM_CLOCK,
  RSMI_M_TEMP,
  RSMI_M_PCIE_TX,
  RSMI_M_PCIE_RX,
  RSMI_NMET
};

static const struct kfm__gpu_metric rsmi_metric[RSMI_NMET] = {
    [RSMI_M_UTIL] = {"util", "%"},
    [RSMI_M_MEM_UTIL] = {"mem_util", "%"},
    [RSMI_M_MEM_USED] = {"mem_used", "bytes"},
    [RSMI_M_POWER] = {"power", "mW"},
    [RSMI_M_SM_CLOCK] = {"sm_clock", "MHz"},
    [RSMI_M_MEM_CLOCK] = {"mem_clock", "MHz"},
    [RSMI_M_TEMP] = {"temp", "C"},
    [RSMI_M_PCIE_TX] = {"pcie_tx", "count/s"},
    [RSMI_M_PCIE_RX] = {"pcie_rx", "count/s"},
};

const char *const kfm__rsmi_libraries[] = {
    "librocm_smi64.so.7",             /* ROCm 6.1 and later */
    "librocm_smi64.so.6",             /* ROCm 6.0 */
    "librocm_smi64.so.5",             /* ROCm 5.x */
    "librocm_smi64.so.1",             /* Debian / Ubuntu librocm-smi64-1 */
    "/opt/rocm/lib/librocm_smi64.so", /* ROCm not on the loader path */
    NULL,
};

/* ---------------------------------------------------------------------- */
/* Process-wide library state.                                             */

static struct {
  int ready;
  void *handle;
  const struct kfm__rsmi_dl *dl;
  const char *libname; /* which of kfm__rsmi_libraries loaded */
  unsigned ndev;
  struct kfm__rsmi_version version;
  int have_version;
  struct kfm__rsmi_syms fn;
  char reason[256];
} rsmi_lib;

static pthread_mutex_t rsmi_quiet_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct kfm__rsmi_dl rsmi_real_dl = {
    .open = dlopen, .sym = dlsym, .error = dlerror, .close = dlclose};

/* Symbol name -> table slot (kfm__gpu_resolve). */
static const struct kfm__gpu_sym rsmi_symtab[] = {
#define RSMI_SYM(name, field, req)                                                                 \
  { name, offsetof(struct kfm__rsmi_syms, field), req }
    RSMI_SYM("rsmi_init", init, 1),
    RSMI_SYM("rsmi_shut_down", shut_down, 1),
    RSMI_SYM("rsmi_num_monitor_devices", num_monitor_devices, 1),
    RSMI_SYM("rsmi_status_string", status_string, 0),
    RSMI_SYM("rsmi_version_get", version_get, 0),
    RSMI_SYM("rsmi_dev_name_get", dev_name_get, 0),
    RSMI_SYM("rsmi_dev_pci_id_get", dev_pci_id_get, 0),
    RSMI_SYM("rsmi_dev_busy_percent_get", dev_busy_percent_get, 0),
    RSMI_SYM("rsmi_dev_memory_busy_percent_get", dev_memory_busy_percent_get, 0),
    RSMI_SYM("rsmi_dev_memory_usage_get", dev_memory_usage_get, 0),
    RSMI_SYM("rsmi_dev_memory_total_get", dev_memory_total_get, 0),
    RSMI_SYM("rsmi_dev_power_ave_get", dev_power_ave_get, 0),
    RSMI_SYM("rsmi_dev_current_socket_power_get", dev_current_socket_power_get, 0),
    RSMI_SYM("rsmi_dev_gpu_clk_freq_get", dev_gpu_clk_freq_get, 0),
    RSMI_SYM("rsmi_dev_temp_metric_get", dev_temp_metric_get, 0),
    RSMI_SYM("rsmi_dev_pci_throughput_get", dev_pci_throughput_get, 0),
#undef RSMI_SYM
};

const char *kfm__rsmi_status_name(kfm__rsmi_status_t s) {
  switch (s) {
#define RSMI_NAME_CASE(num, name)                                                                  \
  case num:                                                                                        \
    return #name;
    KFM__RSMI_STATUS_MAP(RSMI_NAME_CASE)
#undef RSMI_NAME_CASE
  default:
    return "RSMI_STATUS_?";
  }
}

kfm__rsmi_status_t kfm__rsmi_quiet_call(kfm__rsmi_status_t (*fn)(uint64_t), uint64_t arg) {
  kfm__rsmi_status_t rc;
  int saved, null_fd;
  pthread_mutex_lock(&rsmi_quiet_lock);
#ifdef __GLIBC__
  /* Only this thread's stdio writes to stderr are redirected: the stream's
   * lock is recursive, so the library's writes on this thread go through
   * it to /dev/null, while other threads' wait for it and then reach the
   * real fd 2, which never moves. */
  null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd >= 0) {
    flockfile(stderr);
    fflush(stderr);
    saved = stderr->_fileno;
    stderr->_fileno = null_fd;
    rc = fn(arg);
    fflush(stderr);
    stderr->_fileno = saved;
    funlockfile(stderr);
    close(null_fd);
    pthread_mutex_unlock(&rsmi_quiet_lock);
    return rc;
  }
#endif
  fflush(stderr);
  /* Keep the real stderr above 2, close-on-exec so a concurrent fork+exec
   * does not inherit it. */
  saved = fcntl(2, F_DUPFD_CLOEXEC, 3);
  null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd >= 0) {
    dup2(null_fd, 2);
  }
  rc = fn(arg);
  fflush(stderr); /* drop anything the call left in stdio's buffer into /dev/null */
  if (null_fd >= 0) {
    if (saved >= 0) {
      dup2(saved, 2);
    } else {
      close(2); /* fd 2 was closed before the call: leave it so */
    }
    close(null_fd);
  }
  if (saved >= 0) {
    close(saved);
  }
  pthread_mutex_unlock(&rsmi_quiet_lock);
  return rc;
}

/* Why a call failed: "<code> <name>". */
static void rsmi_status_text(kfm__rsmi_status_t rc, char *buf, size_t len) {
  kfm__gpu_fmt(buf, len, "%u %s", (unsigned)rc, kfm__rsmi_status_name(rc));
}

void kfm__rsmi_teardown(void) {
  if (rsmi_lib.ready && rsmi_lib.fn.shut_down) {
    rsmi_lib.fn.shut_down();
  }
  if (rsmi_lib.handle && rsmi_lib.dl && rsmi_lib.dl->close) {
    rsmi_lib.dl->close(rsmi_lib.handle);
  }
  memset(&rsmi_lib, 0, sizeof rsmi_lib);
  kfm__gpu_fmt(rsmi_lib.reason, sizeof rsmi_lib.reason, "ROCm SMI not set up");
}

static int rsmi_fail(char *reason, size_t len) {
  kfm__gpu_fmt(reason, len, "%s", rsmi_lib.reason);
  if (rsmi_lib.handle && rsmi_lib.dl && rsmi_lib.dl->close) {
    rsmi_lib.dl->close(rsmi_lib.handle);
  }
  rsmi_lib.handle = NULL;
  /* The functions may be unmapped now: nothing may call them again. */
  memset(&rsmi_lib.fn, 0, sizeof rsmi_lib.fn);
  return 0;
}

/* rsmi_init (quietly) and count, on the table in rsmi_lib.fn. */
static int rsmi_start(char *reason, size_t len) {
  uint32_t n = 0;
  kfm__rsmi_status_t rc =
      kfm__rsmi_quiet_call(rsmi_lib.fn.init, KFM__RSMI_INIT_FLAG_THREAD_ONLY_MUTEX);
  if (rc == KFM__RSMI_INVALID_ARGS) {
    rc = kfm__rsmi_quiet_call(rsmi_lib.fn.init, 0); /* a library that refuses the flag */
  }
  if (rc != KFM__RSMI_SUCCESS) {
    kfm__gpu_fmt(rsmi_lib.reason, sizeof rsmi_lib.reason, "rsmi_init failed: %u %s%s", (unsigned)rc,
                 kfm__rsmi_status_name(rc),
                 rc == KFM__RSMI_INIT_ERROR ? " (no AMD GPU or amdgpu driver)" : "");
    return rsmi_fail(reason, len);
  }
  rc = rsmi_lib.fn.num_monitor_devices(&n);
  if (rc != KFM__RSMI_SUCCESS || n == 0) {
    if (rc != KFM__RSMI_SUCCESS) {
      kfm__gpu_fmt(rsmi_lib.reason, sizeof rsmi_lib.reason,
                   "rsmi_num_monitor_devices failed: %u %s", (unsigned)rc,
                   kfm__rsmi_status_name(rc));
    } else {
      kfm__gpu_fmt(rsmi_lib.reason, sizeof rsmi_lib.reason,
                   "no AMD GPU (rsmi_num_monitor_devices = 0)");
    }
    rsmi_lib.fn.shut_down();
    return rsmi_fail(reason, len);
  }
  if (rsmi_lib.fn.version_get && rsmi_lib.fn.version_get(&rsmi_lib.version) == KFM__RSMI_SUCCESS) {
    rsmi_lib.have_version = 1;
  }
  rsmi_lib.ndev = n;
  rsmi_lib.ready = 1;
  kfm__gpu_fmt(reason, len, "available: %u AMD GPU%s (%s)", n, n == 1 ? "" : "s",
               rsmi_lib.libname ? rsmi_lib.libname : "injected symbol table");
  return 1;
}

int kfm__rsmi_setup_table(const struct kfm__rsmi_syms *syms, char *reason, size_t len) {
  kfm__rsmi_teardown();
  if (syms == NULL || syms->init == NULL || syms->shut_down == NULL ||
      syms->num_monitor_devices == NULL) {
    kfm__gpu_fmt(rsmi_lib.reason, sizeof rsmi_lib.reason,
                 "ROCm SMI symbol table lacks a required function");
    return rsmi_fail(reason, len);
  }
  rsmi_lib.fn = *syms;
  return rsmi_start(reason, len);
}

/*
 * 1 if <sys_root>/class/drm has a card whose device/vendor is 0x1002, as
 * ROCm SMI's own device discovery requires; otherwise 0 and why.
 */
static int rsmi_find_amd_card(const char *sys_root, char *why, size_t len) {
  char dir[512], path[1024], buf[16];
  struct dirent *e;
  DIR *d;
  unsigned cards = 0;
  int found = 0;
  snprintf(dir, sizeof dir, "%s/class/drm", sys_root);
  d = opendir(dir);
  if (d == NULL) {
    char eb[128];
    kfm__gpu_fmt(why, len, "%s: %s", dir, strerror_r(errno, eb, sizeof eb));
    return 0;
  }
  while (!found && (e = readdir(d)) != NULL) {
    int fd;
    ssize_t n;
    /* "card<N>" only: connector entries such as card0-DP-1 are not devices. */
    if (strncmp(e->d_name, "card", 4) != 0 || e->d_name[4] == '\0' ||
        strspn(e->d_name + 4, "0123456789") != strlen(e->d_name + 4)) {
      continue;
    }
    cards++;
    snprintf(path, sizeof path, "%s/%s/device/vendor", dir, e->d_name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      continue;
    }
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0) {
      buf[n] = '\0';
      found = strncmp(buf, "0x1002", 6) == 0;
    }
  }
  closedir(d);
  if (!found) {
    kfm__gpu_fmt(why, len, "%u card%s in %s, none with vendor 0x1002", cards, cards == 1 ? "" : "s",
                 dir);
  }
  return found;
}

int kfm__rsmi_setup_dl(const struct kfm__rsmi_dl *dl, const char *sys_root, char *reason,
                       size_t len) {
  const struct kfm__gpu_sym *missing;
  void *h = NULL;
  const char *err = NULL;
  char why[256];
  kfm__rsmi_teardown();
  for (size_t i = 0; kfm__rsmi_libraries[i] && h == NULL; i++) {
    h = dl->open(kfm__rsmi_libraries[i], RTLD_NOW | RTLD_LOCAL);
    if (h) {
      rsmi_lib.libname = kfm__rsmi_libraries[i];
    } else {
      err = dl->error();
    }
  }
  if (h == NULL) {
    kfm__gpu_fmt(rsmi_lib.reason, sizeof rsmi_lib.reason,
                 "librocm_smi64 not found (dlopen of .so.7, .so.6, .so.5, .so.1 and "
                 "/opt/rocm/lib failed; last: %s)",
                 err ? err : "no error text");
    return rsmi_fail(reason, len);
  }
  rsmi_lib.handle = h;
  rsmi_lib.dl = dl;
  missing = kfm__gpu_resolve(h, dl->sym, dl->error, rsmi_symtab,
                             sizeof rsmi_symtab / sizeof rsmi_symtab[0], &rsmi_lib.fn, &err);
  if (missing) {
    kfm__gpu_fmt(rsmi_lib.reason, sizeof rsmi_lib.reason, "%s lacks %s: %s", rsmi_lib.libname,
                 missing->name, err);
    return rsmi_fail(reason, len);
  }
  if (!rsmi_find_amd_card(sys_root, why, sizeof why)) {
    kfm__gpu_fmt(rsmi_lib.reason, sizeof rsmi_lib.reason,
                 "no AMD GPU or amdgpu driver (%s); rsmi_init not called", why);
    return rsmi_fail(reason, len);
  }
  return rsmi_start(reason, len);
}

/*
 * Two layouts, read as little-endian words of a zero-filled buffer:
 *   V5: num = u32@0, cur = u32@4, f[i] = u64@8+8i, i < 32
 *   V6: deep = u8@0 (a bool, 0 or 1), num = u32@4, cur = u32@8, f[i] = u64@16+8i, i < 33
 * Exclusive: V6-valid data has deep in {0,1}; the V5 view's num is then
 * deep plus the padding bytes 1-3 shifted up, so V5 needs them zero and
 * num5 = deep <= 1 while cur5 = num6 >= 1: cur5 < num5 fails.  V5-valid data
 * seen as V6 needs byte 0 (low byte of num5 <= 32) in {0,1}, so num5 = 1,
 * cur5 = 0, and num6 = cur5 = 0 fails num6 >= 1.
 */
uint64_t kfm__rsmi_clock_mhz(const void *buf) {
  const unsigned char *b = buf;
  uint32_t num, cur;
  uint64_t f;
  memcpy(&num, b, 4);
  memcpy(&cur, b + 4, 4);
  if (num >= 1 && num <= 32 && cur < num) {
    memcpy(&f, b + 8 + 8 * (size_t)cur, 8);
    if (f >= 1000000u && f <= 100000000000u) {
      return (f + 500000u) / 1000000u;
    }
  }
  if (b[0] <= 1) {
    memcpy(&num, b + 4, 4);
    memcpy(&cur, b + 8, 4);
    if (num >= 1 && num <= 33 && cur < num) {
      memcpy(&f, b + 16 + 8 * (size_t)cur, 8);
      if (f >= 1000000u && f <= 100000000000u) {
        return (f + 500000u) / 1000000u;
      }
    }
  }
  return KFM_GPU_UNMEASURED;
}

/* ---------------------------------------------------------------------- */
/* Session state and the poller threads.                                   */

struct rsmi_dev {
  uint32_t index;
  char name[128];           /* "" when unknown */
  char bus_id[32];          /* "" when unknown */
  uint64_t mem_total;       /* KFM_GPU_UNMEASURED when unknown */
  uint32_t temp_sensor;     /* edge, or junction on GPUs without an edge sensor */
  _Atomic uint64_t max_pkt; /* PCIe maximum payload, bytes; 0 until read */
  _Atomic int power_instant; /* 1: the last power reading was the current socket power */
};

struct rsmi_state {
  int open;
  unsigned ndev, nmet;
  struct rsmi_dev dev[RSMI_MAX_DEV];
  char skipped[256];
  _Atomic uint64_t val[RSMI_MAX_DEV * RSMI_NMET];
  _Atomic int64_t err[RSMI_MAX_DEV * RSMI_NMET]; /* rsmi_status_t or RSMI_ERR_* */
  struct kfm__metric_def defs[RSMI_MAX_DEV * RSMI_NMET];
  char names[RSMI_MAX_DEV * RSMI_NMET][44];
  struct kfm__poller poller; /* the fast and the PCIe threads */
};

static void rsmi_put(struct rsmi_state *st, unsigned d, unsigned m, int64_t rc, uint64_t v) {
  unsigned i = d * RSMI_NMET + m;
  kfm__gpu_put(&st->val[i], &st->err[i], rc, v);
}

static void rsmi_read_clock(struct rsmi_state *st, unsigned d, unsigned m, int type) {
  uint64_t buf[KFM__RSMI_FREQ_BUF / 8];
  uint64_t mhz;
  kfm__rsmi_status_t rc;
  if (rsmi_lib.fn.dev_gpu_clk_freq_get == NULL) {
    rsmi_put(st, d, m, RSMI_ERR_NO_SYMBOL, 0);
    return;
  }
  memset(buf, 0, sizeof buf);
  rc = rsmi_lib.fn.dev_gpu_clk_freq_get(st->dev[d].index, type, buf);
  if (rc != KFM__RSMI_SUCCESS) {
    rsmi_put(st, d, m, rc, 0);
    return;
  }
  mhz = kfm__rsmi_clock_mhz(buf);
  rsmi_put(st, d, m, mhz == KFM_GPU_UNMEASURED ? RSMI_ERR_BAD_VALUE : KFM__RSMI_SUCCESS, mhz);
}

static void rsmi_read_fast(struct rsmi_state *st) {
  const struct kfm__rsmi_syms *fn = &rsmi_lib.fn;
  for (unsigned d = 0; d < st->ndev; d++) {
    uint32_t dv = st->dev[d].index, pct = 0;
    uint64_t v = 0;
    int64_t t = 0;
    int64_t rc;
    rc = RSMI_CALL(fn->dev_busy_percent_get, dv, &pct);
    rsmi_put(st, d, RSMI_M_UTIL, rc, pct);
    rc = RSMI_CALL(fn->dev_memory_busy_percent_get, dv, &pct);
    rsmi_put(st, d, RSMI_M_MEM_UTIL, rc, pct);
    rc = RSMI_CALL(fn->dev_memory_usage_get, dv, KFM__RSMI_MEM_TYPE_VRAM, &v);
    rsmi_put(st, d, RSMI_M_MEM_USED, rc, v);
    rc = RSMI_CALL(fn->dev_current_socket_power_get, dv, &v);
    atomic_store_explicit(&st->dev[d].power_instant, rc == KFM__RSMI_SUCCESS,
                          memory_order_relaxed);
    if (rc != KFM__RSMI_SUCCESS) {
      v = 0;
      rc = RSMI_CALL(fn->dev_power_ave_get, dv, 0, &v);
    }
    rsmi_put(st, d, RSMI_M_POWER, rc, (v + 500) / 1000); /* uW -> mW */
    rsmi_read_clock(st, d, RSMI_M_SM_CLOCK, KFM__RSMI_CLK_TYPE_SYS);
    rsmi_read_clock(st, d, RSMI_M_MEM_CLOCK, KFM__RSMI_CLK_TYPE_MEM);
    rc = RSMI_CALL(fn->dev_temp_metric_get, dv, st->dev[d].temp_sensor, KFM__RSMI_TEMP_CURRENT, &t);
    if (rc == KFM__RSMI_SUCCESS && t < 0) {
      rc = RSMI_ERR_BAD_VALUE; /* below 0 C: a uint64 gauge cannot carry it */
    }
    rsmi_put(st, d, RSMI_M_TEMP, rc, (uint64_t)(t + 500) / 1000); /* millidegrees -> C */
  }
}

static void rsmi_read_pcie(struct rsmi_state *st, unsigned d) {
  uint64_t first = 0, second = 0, mps = 0;
  int64_t rc =
      RSMI_CALL(rsmi_lib.fn.dev_pci_throughput_get, st->dev[d].index, &first, &second, &mps);
  /* First count: messages received; second: posted requests sent (see top). */
  rsmi_put(st, d, RSMI_M_PCIE_RX, rc, first);
  rsmi_put(st, d, RSMI_M_PCIE_TX, rc, second);
  if (rc == KFM__RSMI_SUCCESS) {
    atomic_store_explicit(&st->dev[d].max_pkt, mps, memory_order_relaxed);
  }
}

static void *rsmi_fast_main(void *arg) {
  struct rsmi_state *st = arg;
  while (!kfm__poller_wait_ms(&st->poller, KFM__RSMI_POLL_MS)) {
    rsmi_read_fast(st);
  }
  return NULL;
}

static void *rsmi_pcie_main(void *arg) {
  struct rsmi_state *st = arg;
  do {
    for (unsigned d = 0; d < st->ndev && !kfm__poller_stopping(&st->poller); d++) {
      rsmi_read_pcie(st, d);
    }
  } while (!kfm__poller_wait_ms(&st->poller, RSMI_PCIE_PERIOD_MS));
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Backend hooks.                                                          */

static int rsmi_probe(char *reason, size_t len) {
  return kfm__rsmi_setup_dl(&rsmi_real_dl, "/sys", reason, len);
}

static void rsmi_close(void *state) {
  struct rsmi_state *st = state;
  if (!st->open) {
    return;
  }
  kfm__poller_destroy(&st->poller); /* up to 1 s if a PCIe read is under way */
  st->open = 0;
}

static void rsmi_open_dev(struct rsmi_dev *dv, uint32_t i) {
  const struct kfm__rsmi_syms *fn = &rsmi_lib.fn;
  uint64_t v;
  int64_t t;
  dv->index = i;
  dv->mem_total = KFM_GPU_UNMEASURED;
  dv->temp_sensor = KFM__RSMI_TEMP_TYPE_EDGE;
  atomic_init(&dv->max_pkt, 0);
  if (fn->dev_name_get && fn->dev_name_get(i, dv->name, sizeof dv->name) != KFM__RSMI_SUCCESS) {
    dv->name[0] = '\0';
  }
  dv->name[sizeof dv->name - 1] = '\0';
  if (fn->dev_pci_id_get && fn->dev_pci_id_get(i, &v) == KFM__RSMI_SUCCESS) {
    /* BDFID: domain << 32 | bus << 8 | device << 3 | function */
    snprintf(dv->bus_id, sizeof dv->bus_id, "%04x:%02x:%02x.%x", (unsigned)(v >> 32),
             (unsigned)(v >> 8) & 0xffu, (unsigned)(v >> 3) & 0x1fu, (unsigned)v & 0x7u);
  }
  if (fn->dev_memory_total_get &&
      fn->dev_memory_total_get(i, KFM__RSMI_MEM_TYPE_VRAM, &v) == KFM__RSMI_SUCCESS) {
    dv->mem_total = v;
  }
  /* MI200 and later have no edge sensor; their hottest is the junction. */
  if (fn->dev_temp_metric_get &&
      fn->dev_temp_metric_get(i, KFM__RSMI_TEMP_TYPE_EDGE, KFM__RSMI_TEMP_CURRENT, &t) ==
          KFM__RSMI_NOT_SUPPORTED &&
      fn->dev_temp_metric_get(i, KFM__RSMI_TEMP_TYPE_JUNCTION, KFM__RSMI_TEMP_CURRENT, &t) ==
          KFM__RSMI_SUCCESS) {
    dv->temp_sensor = KFM__RSMI_TEMP_TYPE_JUNCTION;
  }
}

static int rsmi_open(void *state, struct kfm__backend_ctx *ctx) {
  struct rsmi_state *st = state;
  ctx->n_transition = 0;
  ctx->transition = NULL;
  ctx->n_sample = 0;
  ctx->sample = NULL;
  memset(st, 0, sizeof *st);
  if (!rsmi_lib.ready) {
    kfm__gpu_fmt(ctx->errbuf, ctx->errlen, "rocm_smi: %s",
                 rsmi_lib.reason[0] ? rsmi_lib.reason : "ROCm SMI not set up");
    return KFM_EBACKEND;
  }
  for (uint32_t i = 0; i < rsmi_lib.ndev; i++) {
    if (st->ndev == RSMI_MAX_DEV) {
      kfm__gpu_append(st->skipped, sizeof st->skipped, "gpu%u-%u not sampled (limit %d devices)", i,
                      rsmi_lib.ndev - 1, RSMI_MAX_DEV);
      break;
    }
    rsmi_open_dev(&st->dev[st->ndev++], i);
  }
  st->nmet = st->ndev * RSMI_NMET;
  for (unsigned d = 0; d < st->ndev; d++) {
    unsigned i = d * RSMI_NMET;
    kfm__gpu_dev_defs(&st->defs[i], st->names[i], sizeof st->names[0], "rocm_smi", st->dev[d].index,
                      rsmi_metric, RSMI_NMET, &st->val[i], &st->err[i], RSMI_ERR_PENDING);
  }
  rsmi_read_fast(st); /* values for the first samples; PCIe comes from its poller */

  if (kfm__gpu_start_pollers(&st->poller, rsmi_fast_main, rsmi_pcie_main, st, "rocm_smi",
                             ctx->errbuf, ctx->errlen) != 0) {
    return KFM_ETHREAD;
  }
  st->open = 1;
  kfm__gpu_fmt(ctx->note, ctx->notelen, "%u device%s sampled every %d ms, PCIe every %d ms%s%s",
               st->ndev, st->ndev == 1 ? "" : "s", KFM__RSMI_POLL_MS, RSMI_PCIE_PERIOD_MS,
               st->skipped[0] ? "; " : "", st->skipped);
  ctx->n_sample = st->nmet;
  ctx->sample = st->defs;
  return 0;
}

/* Sampler thread: copies the pollers' latest values; no call into ROCm SMI. */
static void rsmi_sample(void *state, uint64_t *out) {
  struct rsmi_state *st = state;
  kfm__gpu_sample(st->val, st->nmet, out);
}

/* Why a value is unmeasured, for the export. */
static void rsmi_why(int64_t e, char *buf, size_t len) {
  if (e == RSMI_ERR_NO_SYMBOL) {
    kfm__gpu_fmt(buf, len, "function not exported by this ROCm SMI");
  } else if (e == RSMI_ERR_PENDING) {
    kfm__gpu_fmt(buf, len, "not read yet");
  } else if (e == RSMI_ERR_BAD_VALUE) {
    kfm__gpu_fmt(buf, len, "value out of range");
  } else {
    rsmi_status_text((kfm__rsmi_status_t)e, buf, len);
  }
}

static void rsmi_export_json(void *state, void *file) {
  struct rsmi_state *st = state;
  FILE *f = file;
  if (!st->open) {
    kfm__gpu_export_unavailable(
        f, rsmi_lib.ready ? "not opened in this session"
                          : (rsmi_lib.reason[0] ? rsmi_lib.reason : "ROCm SMI not set up"));
    return;
  }
  fputs("{\"available\":true,\"library\":", f);
  kfm__json_str(f, rsmi_lib.libname ? rsmi_lib.libname : "injected");
  if (rsmi_lib.have_version) {
    fprintf(f, ",\"library_version\":\"%u.%u.%u\"", rsmi_lib.version.major, rsmi_lib.version.minor,
            rsmi_lib.version.patch);
  }
  fprintf(f, ",\"poll_ms\":%d,\"pcie_period_ms\":%d,\"pcie_unit\":", KFM__RSMI_POLL_MS,
          RSMI_PCIE_PERIOD_MS);
  kfm__json_str(f, "PCIe messages per second (amdgpu pcie_bw); bytes <= count x max_payload");
  fputs(",\"devices\":[", f);
  for (unsigned d = 0; d < st->ndev; d++) {
    const struct rsmi_dev *dv = &st->dev[d];
    uint64_t mps = atomic_load_explicit(&dv->max_pkt, memory_order_relaxed);
    kfm__gpu_export_dev(f, d, dv->index, dv->name, dv->bus_id, dv->mem_total);
    fprintf(f, ",\"temp_sensor\":\"%s\",\"power_reading\":\"%s\"",
            dv->temp_sensor == KFM__RSMI_TEMP_TYPE_JUNCTION ? "junction" : "edge",
            atomic_load_explicit(&dv->power_instant, memory_order_relaxed) ? "instant"
                                                                            : "average");
    if (mps) {
      fprintf(f, ",\"pcie_max_payload\":%llu", (unsigned long long)mps);
    } else {
      fputs(",\"pcie_max_payload\":null", f);
    }
    kfm__gpu_export_unmeasured(f, &st->err[d * RSMI_NMET], rsmi_metric, RSMI_NMET, rsmi_why);
  }
  kfm__gpu_export_end(f, st->skipped);
}

const struct kfm__backend kfm__backend_rocm_smi = {
    .abi = KFM_BACKEND_ABI,
    .name = "rocm_smi",
    .caps = KFM_CAP_SAMPLE,
    .min_level = KFM_LEVEL_COMPREHENSIVE,
    .state_size = sizeof(struct rsmi_state),
    .thread_state_size = 0,
    .probe = rsmi_probe,
    .init = NULL,
    .open = rsmi_open,
    .sample = rsmi_sample,
    .close = rsmi_close,
    .export_json = rsmi_export_json,
};
