/*
 * test_nvml.c - tests of the NVML backend without an NVIDIA GPU.
 *
 * A fake NVML (functions with the real signatures, returning values the
 * test chooses) is handed to the backend either as a filled symbol table or
 * through a fake dlopen/dlsym that resolves NVML's symbol names, so the
 * loader, the value paths, the failure reasons and the export are all
 * driven as they would be by libnvidia-ml.so.1.  The last cases probe the
 * real machine: without the library the reason must be the exact dlopen
 * failure; the real-GPU case prints why it is skipped when there is none.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* open_memstream */
#endif

#include <stdio.h>

#ifndef KFM_HAVE_NVML
int main(void) {
  printf("test_nvml: skipped: kfm was built without the NVML backend (KFM_HAVE_NVML undefined)\n");
  return 77;
}
#else

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kfm_test.h"
#include "internal.h"
#include "nvml/kfm_nvml.h"

#define NVML_TEST_MAX_OUT 256

/* ---------------------------------------------------------------------- */
/* The fake NVML.  Configured before a session opens and left alone while  */
/* its poller threads run, so the fakes only read it.                      */

struct kfm__nvml_device_st {
  unsigned idx;
};
/* 0 and 1 are GPUs; 2 is a MIG instance on GPU 1. */
static struct kfm__nvml_device_st fake_dev[3] = {{0}, {1}, {2}};
#define FAKE_UUID0 "GPU-0a1b2c3d-0000-4aaa-bbbb-cccccccccccc"
#define FAKE_UUID1 "GPU-9f8e7d6c-1111-4ddd-eeee-ffffffffffff"
#define FAKE_MIG "MIG-5e6f7a8b-2222-4999-8888-777777777777"

struct fake_gpu {
  const char *name, *bus_id;
  unsigned util, mem_util;
  unsigned long long mem_total, mem_used;
  kfm__nvml_return_t power_rc;
  unsigned power_mw, sm_mhz, mem_mhz, temp_c, pcie_tx, pcie_rx;
  unsigned long long proc_mem; /* this process's entry; 0 = not listed */
  const char *uuid;
  unsigned mig_mode;
  unsigned instant_mw; /* NVML_FI_DEV_POWER_INSTANT; 0 = not supported */
};

static struct {
  kfm__nvml_return_t init_rc;
  unsigned count;
  kfm__nvml_return_t handle_rc[2];
  struct fake_gpu gpu[2];
  unsigned other_procs; /* other processes listed before ours */
} fake;

/* Counters touched only by the test thread's set-up and tear-down calls. */
static int fake_inits, fake_shutdowns;

static void fake_reset(void) {
  static const struct fake_gpu g0 = {.name = "Fake GPU 0",
                                     .bus_id = "00000000:3B:00.0",
                                     .util = 37,
                                     .mem_util = 12,
                                     .mem_total = 17179869184ull,
                                     .mem_used = 5368709120ull,
                                     .power_rc = KFM__NVML_SUCCESS,
                                     .power_mw = 123456,
                                     .sm_mhz = 1410,
                                     .mem_mhz = 1215,
                                     .temp_c = 61,
                                     .pcie_tx = 2048,
                                     .pcie_rx = 4096,
                                     .proc_mem = 815792128ull,
                                     .uuid = FAKE_UUID0};
  static const struct fake_gpu g1 = {.name = "Fake GPU \"1\"",
                                     .bus_id = "00000000:AF:00.0",
                                     .util = 99,
                                     .mem_util = 88,
                                     .mem_total = 8589934592ull,
                                     .mem_used = 1073741824ull,
                                     .power_rc = KFM__NVML_ERROR_NOT_SUPPORTED,
                                     .power_mw = 999,
                                     .sm_mhz = 1800,
                                     .mem_mhz = 9001,
                                     .temp_c = 45,
                                     .pcie_tx = 1,
                                     .pcie_rx = 2,
                                     .proc_mem = 0,
                                     .uuid = FAKE_UUID1};
  memset(&fake, 0, sizeof fake);
  fake.init_rc = KFM__NVML_SUCCESS;
  fake.count = 2;
  fake.gpu[0] = g0;
  fake.gpu[1] = g1;
  fake_inits = fake_shutdowns = 0;
}

static const struct fake_gpu *fake_gpu_of(kfm__nvml_device_t d) {
  return &fake.gpu[d->idx];
}

static kfm__nvml_return_t fake_init(void) {
  fake_inits++;
  return fake.init_rc;
}
static kfm__nvml_return_t fake_shutdown(void) {
  fake_shutdowns++;
  return KFM__NVML_SUCCESS;
}
static const char *fake_error_string(kfm__nvml_return_t rc) {
  switch (rc) {
  case 0:
    return "Success";
  case 3:
    return "Not Supported";
  case 4:
    return "Insufficient Permissions";
  case 6:
    return "Not Found";
  case 7:
    return "Insufficient Size";
  case 9:
    return "Driver Not Loaded";
  default:
    return "Unknown Error";
  }
}
static kfm__nvml_return_t fake_count(unsigned *n) {
  *n = fake.count;
  return KFM__NVML_SUCCESS;
}
static kfm__nvml_return_t fake_handle(unsigned i, kfm__nvml_device_t *d) {
  if (i >= 2) {
    return 2; /* NVML_ERROR_INVALID_ARGUMENT */
  }
  if (fake.handle_rc[i] != KFM__NVML_SUCCESS) {
    return fake.handle_rc[i];
  }
  *d = &fake_dev[i];
  return KFM__NVML_SUCCESS;
}
static kfm__nvml_return_t fake_name(kfm__nvml_device_t d, char *name, unsigned len) {
  snprintf(name, len, "%s", fake_gpu_of(d)->name);
  return KFM__NVML_SUCCESS;
}
static kfm__nvml_return_t fake_pci(kfm__nvml_device_t d, struct kfm__nvml_pci_info *p) {
  snprintf(p->busId, sizeof p->busId, "%s", fake_gpu_of(d)->bus_id);
  return KFM__NVML_SUCCESS;
}
static kfm__nvml_return_t fake_util(kfm__nvml_device_t d, struct kfm__nvml_utilization *u) {
  u->gpu = fake_gpu_of(d)->util;
  u->memory = fake_gpu_of(d)->mem_util;
  return KFM__NVML_SUCCESS;
}
static kfm__nvml_return_t fake_mem(kfm__nvml_device_t d, struct kfm__nvml_memory *m) {
  m->total = fake_gpu_of(d)->mem_total;
  m->used = fake_gpu_of(d)->mem_used;
  m->free = m->total - m->used;
  return KFM__NVML_SUCCESS;
}
static kfm__nvml_return_t fake_power(kfm__nvml_device_t d, unsigned *mw) {
  *mw = fake_gpu_of(d)->power_mw; /* written even on failure: must be ignored */
  return fake_gpu_of(d)->power_rc;
}
static kfm__nvml_return_t fake_clock(kfm__nvml_device_t d, int type, unsigned *mhz) {
  if (type == KFM__NVML_CLOCK_SM) {
    *mhz = fake_gpu_of(d)->sm_mhz;
  } else if (type == KFM__NVML_CLOCK_MEM) {
    *mhz = fake_gpu_of(d)->mem_mhz;
  } else {
    return 2;
  }
  return KFM__NVML_SUCCESS;
}
static kfm__nvml_return_t fake_temp(kfm__nvml_device_t d, int sensor, unsigned *c) {
  if (sensor != KFM__NVML_TEMPERATURE_GPU) {
    return 2;
  }
  *c = fake_gpu_of(d)->temp_c;
  return KFM__NVML_SUCCESS;
}
static kfm__nvml_return_t fake_pcie(kfm__nvml_device_t d, int counter, unsigned *v) {
  *v = counter == KFM__NVML_PCIE_UTIL_TX_BYTES ? fake_gpu_of(d)->pcie_tx : fake_gpu_of(d)->pcie_rx;
  return KFM__NVML_SUCCESS;
}
/* Device 0 lists another process and this one; device 1 lists another only. */
static kfm__nvml_return_t fake_procs_v2(kfm__nvml_device_t d, unsigned *n,
                                        struct kfm__nvml_process_info_v2 *p) {
  const struct fake_gpu *g = fake_gpu_of(d);
  unsigned others = 1 + fake.other_procs;
  unsigned want = others + (g->proc_mem ? 1 : 0);
  if (*n < want) {
    *n = want;
    return KFM__NVML_ERROR_INSUFFICIENT_SIZE;
  }
  memset(p, 0, want * sizeof *p);
  for (unsigned i = 0; i < others; i++) {
    p[i].pid = (unsigned)getpid() + 1 + i;
    p[i].usedGpuMemory = 1234;
  }
  if (g->proc_mem) {
    p[others].pid = (unsigned)getpid(); /* ours last: past any fixed-size buffer */
    p[others].usedGpuMemory = g->proc_mem;
  }
  *n = want;
  return KFM__NVML_SUCCESS;
}

static kfm__nvml_return_t fake_uuid(kfm__nvml_device_t d, char *u, unsigned len) {
  snprintf(u, len, "%s", d->idx == 2 ? FAKE_MIG : fake.gpu[d->idx].uuid);
  return KFM__NVML_SUCCESS;
}
static kfm__nvml_return_t fake_by_uuid(const char *u, kfm__nvml_device_t *d) {
  for (unsigned i = 0; i < 3; i++) {
    if (strcmp(u, i == 2 ? FAKE_MIG : fake.gpu[i].uuid) == 0) {
      *d = &fake_dev[i];
      return KFM__NVML_SUCCESS;
    }
  }
  return 6; /* NVML_ERROR_NOT_FOUND: no prefixes here */
}
static kfm__nvml_return_t fake_parent(kfm__nvml_device_t mig, kfm__nvml_device_t *gpu) {
  if (mig->idx != 2) {
    return 2;
  }
  *gpu = &fake_dev[1];
  return KFM__NVML_SUCCESS;
}
static kfm__nvml_return_t fake_mig_mode(kfm__nvml_device_t d, unsigned *cur, unsigned *pend) {
  *cur = *pend = fake.gpu[d->idx].mig_mode;
  return KFM__NVML_SUCCESS;
}
static kfm__nvml_return_t fake_fields(kfm__nvml_device_t d, int n,
                                      struct kfm__nvml_field_value *v) {
  for (int i = 0; i < n; i++) {
    if (v[i].fieldId == KFM__NVML_FI_DEV_POWER_INSTANT && fake.gpu[d->idx].instant_mw) {
      v[i].nvmlReturn = KFM__NVML_SUCCESS;
      v[i].valueType = KFM__NVML_VALUE_TYPE_UNSIGNED_INT;
      v[i].value.uiVal = fake.gpu[d->idx].instant_mw;
    } else {
      v[i].nvmlReturn = KFM__NVML_ERROR_NOT_SUPPORTED;
    }
  }
  return KFM__NVML_SUCCESS;
}

static struct kfm__nvml_syms fake_syms(void) {
  struct kfm__nvml_syms s = {
      .init_v2 = fake_init,
      .shutdown = fake_shutdown,
      .error_string = fake_error_string,
      .device_get_count_v2 = fake_count,
      .device_get_handle_by_index_v2 = fake_handle,
      .device_get_name = fake_name,
      .device_get_pci_info_v3 = fake_pci,
      .device_get_utilization_rates = fake_util,
      .device_get_memory_info = fake_mem,
      .device_get_power_usage = fake_power,
      .device_get_clock_info = fake_clock,
      .device_get_temperature = fake_temp,
      .device_get_pcie_throughput = fake_pcie,
      .device_get_compute_running_processes_v2 = fake_procs_v2,
      .device_get_uuid = fake_uuid,
      .device_get_handle_by_uuid = fake_by_uuid,
      .device_get_parent_of_mig = fake_parent,
      .device_get_mig_mode = fake_mig_mode,
      .device_get_field_values = fake_fields,
  };
  return s;
}

/* ---------------------------------------------------------------------- */
/* Helpers.                                                                */

struct session {
  void *state;
  char err[256], note[256];
  struct kfm__backend_ctx ctx;
};

static int session_open(struct session *s) {
  memset(s, 0, sizeof *s);
  s->state = calloc(1, kfm__backend_nvml.state_size);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s->state);
  s->ctx.level = KFM_LEVEL_COMPREHENSIVE;
  s->ctx.proc_root = "";
  s->ctx.events = "";
  s->ctx.errbuf = s->err;
  s->ctx.errlen = sizeof s->err;
  s->ctx.note = s->note;
  s->ctx.notelen = sizeof s->note;
  return kfm__backend_nvml.open(s->state, &s->ctx);
}

static void session_close(struct session *s) {
  kfm__backend_nvml.close(s->state);
  free(s->state);
  s->state = NULL;
}

static char *export_text(void *state) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (f == NULL) {
    return NULL;
  }
  kfm__backend_nvml.export_json(state, f);
  fclose(f);
  return buf;
}

/* Samples until every value at the given indices is measured (the PCIe
 * poller's first round), or 5 s pass. */
static void sample_settled(void *state, uint64_t *out, unsigned n, const unsigned *idx,
                           unsigned nidx) {
  for (int tries = 0; tries < 500; tries++) {
    int all = 1;
    kfm__backend_nvml.sample(state, out);
    for (unsigned i = 0; i < nidx; i++) {
      all &= idx[i] < n && out[idx[i]] != KFM_GPU_UNMEASURED;
    }
    if (all) {
      return;
    }
    usleep(10000);
  }
}

/* Exact string comparison that prints both strings when they differ. */
static void expect_str(const char *file, int line, const char *got, const char *want) {
  const char *g = got ? got : "(null)", *w = want ? want : "(null)";
  if (strcmp(g, w) != 0) {
    fprintf(stderr, "\n%s:%d: got  \"%s\"\n  want \"%s\"\n", file, line, g, w);
  }
  CU_ASSERT_STRING_EQUAL(g, w);
}
#define EXPECT_STR(got, want) expect_str(__FILE__, __LINE__, (got), (want))

#define EXPECT_HAS(text, part)                                                                     \
  do {                                                                                             \
    const char *t_ = (text), *p_ = (part);                                                         \
    int ok_ = t_ != NULL && strstr(t_, p_) != NULL;                                                \
    if (!ok_) {                                                                                    \
      fprintf(stderr, "\n%s:%d: \"%s\" not in \"%s\"\n", __FILE__, __LINE__, p_,                   \
              t_ ? t_ : "(null)");                                                                 \
    }                                                                                              \
    CU_ASSERT_TRUE(ok_);                                                                           \
  } while (0)

/* ---------------------------------------------------------------------- */
/* Value paths.                                                            */

static void test_values_two_devices(void) {
  struct kfm__nvml_syms syms;
  struct session s;
  char reason[256];
  uint64_t out[64];
  static const char *const names[] = {"util",      "mem_util", "mem_used", "power",   "sm_clock",
                                      "mem_clock", "temp",     "pcie_tx",  "pcie_rx", "proc_mem"};
  static const char *const units[] = {"%",   "%", "bytes", "mW",   "MHz",
                                      "MHz", "C", "KB/s",  "KB/s", "bytes"};
  fake_reset();
  syms = fake_syms();
  CU_ASSERT_EQUAL_FATAL(kfm__nvml_setup_table(&syms, reason, sizeof reason), 1);
  EXPECT_STR(reason, "available: 2 NVIDIA GPUs (injected symbol table)");
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  CU_ASSERT_EQUAL_FATAL(s.ctx.n_sample, 20);
  CU_ASSERT_EQUAL(s.ctx.n_transition, 0);
  for (unsigned d = 0; d < 2; d++) {
    for (unsigned m = 0; m < 10; m++) {
      char want[64];
      const struct kfm__metric_def *def = &s.ctx.sample[d * 10 + m];
      snprintf(want, sizeof want, "nvml.gpu%u.%s", d, names[m]);
      EXPECT_STR(def->name, want);
      EXPECT_STR(def->unit, units[m]);
      CU_ASSERT_EQUAL(def->kind, KFM_METRIC_GAUGE);
    }
  }
  {
    static const unsigned pcie[] = {7, 8, 17, 18};
    const uint64_t want[20] = {37,
                               12,
                               5368709120ull,
                               123456,
                               1410,
                               1215,
                               61,
                               2048,
                               4096,
                               815792128ull,
                               99,
                               88,
                               1073741824ull,
                               KFM_GPU_UNMEASURED,
                               1800,
                               9001,
                               45,
                               1,
                               2,
                               0};
    sample_settled(s.state, out, 20, pcie, 4);
    for (unsigned i = 0; i < 20; i++) {
      if (out[i] != want[i]) {
        fprintf(stderr, "\nvalue %u (%s): got %llu want %llu\n", i, s.ctx.sample[i].name,
                (unsigned long long)out[i], (unsigned long long)want[i]);
      }
      CU_ASSERT_EQUAL(out[i], want[i]);
    }
  }
  {
    char *js = export_text(s.state);
    EXPECT_HAS(js, "{\"available\":true,\"library\":\"injected\",\"poll_ms\":100,\"devices\":[");
    EXPECT_HAS(js, "{\"index\":0,\"name\":\"Fake GPU 0\",\"pci_bus_id\":\"00000000:3B:00.0\","
                   "\"memory_total\":17179869184,\"uuid\":\"" FAKE_UUID0 "\",\"cuda_index\":0,"
                   "\"whole_gpu\":false,\"power_reading\":\"average\",\"averaging_ms\":{"
                   "\"util\":1000,\"mem_util\":1000,\"power\":1000},\"unmeasured\":{}}");
    EXPECT_HAS(js, "{\"index\":1,\"name\":\"Fake GPU \\\"1\\\"\",\"pci_bus_id\":"
                   "\"00000000:AF:00.0\",\"memory_total\":8589934592,\"uuid\":\"" FAKE_UUID1
                   "\",\"cuda_index\":1,\"whole_gpu\":false,\"power_reading\":\"average\","
                   "\"averaging_ms\":{\"util\":1000,\"mem_util\":1000,\"power\":1000},"
                   "\"unmeasured\":{\"power\":\"3 Not Supported\"}}");
    free(js);
  }
  session_close(&s);
  kfm__nvml_teardown();
  CU_ASSERT_EQUAL(fake_inits, 1);
  CU_ASSERT_EQUAL(fake_shutdowns, 1);
}

/* A device whose handle cannot be had is left out and named in the note;
 * with none left, open fails naming each. */
static void test_device_handle_failure(void) {
  struct kfm__nvml_syms syms;
  struct session s;
  char reason[256];
  fake_reset();
  fake.handle_rc[1] = KFM__NVML_ERROR_NO_PERMISSION;
  syms = fake_syms();
  CU_ASSERT_EQUAL_FATAL(kfm__nvml_setup_table(&syms, reason, sizeof reason), 1);
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  CU_ASSERT_EQUAL(s.ctx.n_sample, 10);
  EXPECT_STR(s.note, "1 device sampled; gpu1: nvmlDeviceGetHandleByIndex_v2 failed: 4 Insufficient "
                     "Permissions");
  session_close(&s);

  fake.handle_rc[0] = KFM__NVML_ERROR_NO_PERMISSION;
  CU_ASSERT_EQUAL(session_open(&s), KFM_EBACKEND);
  EXPECT_STR(s.err, "nvml: no usable device: gpu0: nvmlDeviceGetHandleByIndex_v2 failed: 4 "
                    "Insufficient Permissions; gpu1: nvmlDeviceGetHandleByIndex_v2 failed: 4 "
                    "Insufficient Permissions");
  CU_ASSERT_EQUAL(s.ctx.n_sample, 0);
  session_close(&s);
  kfm__nvml_teardown();
}

/* Missing optional functions leave only their values unmeasured. */
static void test_missing_optional(void) {
  struct kfm__nvml_syms syms;
  struct session s;
  char reason[256];
  uint64_t out[32];
  fake_reset();
  fake.count = 1;
  syms = fake_syms();
  syms.device_get_temperature = NULL;
  syms.device_get_pcie_throughput = NULL;
  syms.device_get_compute_running_processes_v2 = NULL;
  CU_ASSERT_EQUAL_FATAL(kfm__nvml_setup_table(&syms, reason, sizeof reason), 1);
  EXPECT_STR(reason, "available: 1 NVIDIA GPU (injected symbol table)");
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  CU_ASSERT_EQUAL_FATAL(s.ctx.n_sample, 10);
  usleep(50000);
  kfm__backend_nvml.sample(s.state, out);
  CU_ASSERT_EQUAL(out[0], 37);
  CU_ASSERT_EQUAL(out[5], 1215);
  CU_ASSERT_EQUAL(out[6], KFM_GPU_UNMEASURED);
  CU_ASSERT_EQUAL(out[7], KFM_GPU_UNMEASURED);
  CU_ASSERT_EQUAL(out[8], KFM_GPU_UNMEASURED);
  CU_ASSERT_EQUAL(out[9], KFM_GPU_UNMEASURED);
  {
    char *js = export_text(s.state);
    EXPECT_HAS(js, "\"unmeasured\":{\"temp\":\"function not exported by this NVML\","
                   "\"pcie_tx\":\"function not exported by this NVML\",\"pcie_rx\":\"function "
                   "not exported by this NVML\",\"proc_mem\":\"function not exported by this "
                   "NVML\"}");
    free(js);
  }
  session_close(&s);
  kfm__nvml_teardown();
}

static void test_proc_mem_rules(void) {
  struct kfm__nvml_process_info_v1 v1[3] = {{10, 100}, {20, 200}, {30, ~0ull}};
  struct kfm__nvml_process_info_v2 v2[2] = {{10, 100, 0, 0}, {20, 200, 1, 1}};
  CU_ASSERT_EQUAL(kfm__nvml_proc_mem(v1, sizeof v1[0], 3, 20, 1), 200);
  CU_ASSERT_EQUAL(kfm__nvml_proc_mem(v2, sizeof v2[0], 2, 20, 0), 200);
  /* Listed with NVML_VALUE_NOT_AVAILABLE: unknown. */
  CU_ASSERT_EQUAL(kfm__nvml_proc_mem(v1, sizeof v1[0], 3, 30, 1), KFM_GPU_UNMEASURED);
  /* Absent: 0 when pids are comparable, unknown when they may be the host's. */
  CU_ASSERT_EQUAL(kfm__nvml_proc_mem(v2, sizeof v2[0], 2, 99, 1), 0);
  CU_ASSERT_EQUAL(kfm__nvml_proc_mem(v2, sizeof v2[0], 2, 99, 0), KFM_GPU_UNMEASURED);
  /* Nobody on the device: 0 either way. */
  CU_ASSERT_EQUAL(kfm__nvml_proc_mem(v2, sizeof v2[0], 0, 99, 0), 0);
}

/* ---------------------------------------------------------------------- */
/* Which GPUs: CUDA_VISIBLE_DEVICES as CUDA reads it.                       */

static void expect_visible(const char *cvd, unsigned want_n, const unsigned *want,
                           const char *want_mig1, const char *want_note) {
  unsigned idx[4];
  char mig[4][KFM__NVML_UUID_SIZE];
  char note[512];
  unsigned n = kfm__nvml_visible(cvd, idx, mig, 4, note, sizeof note);
  if (n != want_n) {
    fprintf(stderr, "\nCUDA_VISIBLE_DEVICES='%s': %u devices, want %u (%s)\n", cvd, n, want_n,
            note);
  }
  CU_ASSERT_EQUAL(n, want_n);
  for (unsigned i = 0; i < n && i < want_n; i++) {
    CU_ASSERT_EQUAL(idx[i], want[i]);
  }
  if (want_mig1 && n > 0) {
    EXPECT_STR(mig[0], want_mig1);
  }
  EXPECT_STR(note, want_note);
}

static void test_visible_devices(void) {
  struct kfm__nvml_syms syms;
  char reason[256];
  fake_reset();
  syms = fake_syms();
  CU_ASSERT_EQUAL_FATAL(kfm__nvml_setup_table(&syms, reason, sizeof reason), 1);
  setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID", 1);
  static const unsigned d0[] = {0}, d1[] = {1}, d10[] = {1, 0}, d01[] = {0, 1};
  expect_visible(NULL, 2, d01, "", "");
  expect_visible("1", 1, d1, "", "");
  expect_visible(" 1 , 0 ", 2, d10, "", "");
  expect_visible("GPU-9f8e", 1, d1, "", ""); /* a unique prefix, as CUDA takes */
  expect_visible(FAKE_UUID0 "," FAKE_UUID1, 2, d01, "", "");
  expect_visible(FAKE_MIG, 1, d1, FAKE_MIG, "");
  expect_visible("1,5,0", 1, d1, "",
                 "CUDA_VISIBLE_DEVICES entry '5' is not the index of a GPU: it and the rest are "
                 "hidden from CUDA");
  expect_visible("0,GPU-", 1, d0, "",
                 "CUDA_VISIBLE_DEVICES entry 'GPU-' is a prefix of more than one GPU's UUID: it "
                 "and the rest are hidden from CUDA");
  expect_visible("GPU-ffff,0", 0, d0, "",
                 "CUDA_VISIBLE_DEVICES entry 'GPU-ffff' is no GPU has this UUID: it and the rest "
                 "are hidden from CUDA");
  expect_visible("MIG-0000", 0, d0, "",
                 "CUDA_VISIBLE_DEVICES entry 'MIG-0000' is no such MIG instance "
                 "(nvmlDeviceGetHandleByUUID): it and the rest are hidden from CUDA");
  expect_visible("-1", 0, d0, "",
                 "CUDA_VISIBLE_DEVICES entry '-1' is not an index, GPU- or MIG- UUID: it and the "
                 "rest are hidden from CUDA");
  expect_visible("", 0, d0, "",
                 "CUDA_VISIBLE_DEVICES entry '' is not an entry: it and the rest are hidden from "
                 "CUDA");
  expect_visible("0,0", 1, d0, "", "gpu0 listed twice in CUDA_VISIBLE_DEVICES: sampled once");
  unsetenv("CUDA_DEVICE_ORDER");
  expect_visible("1,0", 2, d10, "",
                 "indices read in PCI bus order; CUDA_DEVICE_ORDER is not PCI_BUS_ID, so CUDA's "
                 "order differs if the GPUs are of different models");

  /* A session of a torchrun rank: only its GPU, named by NVML index, with
   * its UUID and its CUDA index. */
  struct session s;
  setenv("CUDA_VISIBLE_DEVICES", "GPU-9f8e", 1);
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  CU_ASSERT_EQUAL(s.ctx.n_sample, 10);
  EXPECT_STR(s.ctx.sample[0].name, "nvml.gpu1.util");
  char *js = export_text(s.state);
  EXPECT_HAS(js, "\"devices\":[{\"index\":1,");
  EXPECT_HAS(js, "\"uuid\":\"" FAKE_UUID1 "\",\"cuda_index\":0,\"whole_gpu\":false");
  CU_ASSERT_PTR_NULL(strstr(js, FAKE_UUID0));
  free(js);
  session_close(&s);
  /* A MIG instance: its parent's figures, marked whole-GPU. */
  setenv("CUDA_VISIBLE_DEVICES", FAKE_MIG, 1);
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  js = export_text(s.state);
  EXPECT_HAS(js, "\"uuid\":\"" FAKE_UUID1 "\",\"cuda_index\":0,\"mig_instance\":\"" FAKE_MIG
                 "\",\"whole_gpu\":true");
  free(js);
  session_close(&s);
  /* No GPU left: open fails saying why. */
  setenv("CUDA_VISIBLE_DEVICES", "", 1);
  CU_ASSERT_EQUAL(session_open(&s), KFM_EBACKEND);
  EXPECT_STR(s.err, "nvml: CUDA_VISIBLE_DEVICES='' leaves this process no GPU of the 2: "
                    "CUDA_VISIBLE_DEVICES entry '' is not an entry: it and the rest are hidden "
                    "from CUDA");
  session_close(&s);
  unsetenv("CUDA_VISIBLE_DEVICES");
  /* MIG mode on the GPU itself: whole-GPU figures even without a MIG UUID. */
  fake.gpu[0].mig_mode = KFM__NVML_MIG_ENABLE;
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  js = export_text(s.state);
  EXPECT_HAS(js, "\"uuid\":\"" FAKE_UUID0 "\",\"cuda_index\":0,\"whole_gpu\":true");
  EXPECT_HAS(js, "\"uuid\":\"" FAKE_UUID1 "\",\"cuda_index\":1,\"whole_gpu\":false");
  free(js);
  session_close(&s);
  kfm__nvml_teardown();
}

/* More compute processes than the first buffer holds: the list is read in
 * full (this process is listed last), never past the buffer; a list that
 * stays too long leaves proc_mem unmeasured with NVML's reason. */
static void test_many_processes(void) {
  struct kfm__nvml_syms syms;
  struct session s;
  char reason[256];
  uint64_t out[32];
  static const unsigned pm[] = {9};
  fake_reset();
  fake.count = 1;
  fake.other_procs = 300;
  syms = fake_syms();
  CU_ASSERT_EQUAL_FATAL(kfm__nvml_setup_table(&syms, reason, sizeof reason), 1);
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  sample_settled(s.state, out, 10, pm, 1);
  CU_ASSERT_EQUAL(out[9], 815792128ull);
  session_close(&s);
  fake.other_procs = 70000; /* past NVML_PROC_MAX */
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  usleep(50000);
  kfm__backend_nvml.sample(s.state, out);
  CU_ASSERT_EQUAL(out[9], KFM_GPU_UNMEASURED);
  char *js = export_text(s.state);
  EXPECT_HAS(js, "\"unmeasured\":{\"proc_mem\":\"7 Insufficient Size\"}");
  free(js);
  session_close(&s);
  kfm__nvml_teardown();
}

/* Instantaneous power where the driver has it, the 1 s average otherwise,
 * and the export says which. */
static void test_instant_power(void) {
  struct kfm__nvml_syms syms;
  struct session s;
  char reason[256];
  uint64_t out[32];
  fake_reset();
  fake.gpu[0].instant_mw = 250500;
  fake.gpu[1].power_rc = KFM__NVML_SUCCESS;
  syms = fake_syms();
  CU_ASSERT_EQUAL_FATAL(kfm__nvml_setup_table(&syms, reason, sizeof reason), 1);
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  kfm__backend_nvml.sample(s.state, out);
  CU_ASSERT_EQUAL(out[3], 250500);
  CU_ASSERT_EQUAL(out[13], 999);
  char *js = export_text(s.state);
  EXPECT_HAS(js, "\"power_reading\":\"instant\",\"averaging_ms\":{\"util\":1000,\"mem_util\":1000,"
                 "\"power\":0}");
  EXPECT_HAS(js, "\"power_reading\":\"average\",\"averaging_ms\":{\"util\":1000,\"mem_util\":1000,"
                 "\"power\":1000}");
  free(js);
  session_close(&s);
  kfm__nvml_teardown();
}

/* ---------------------------------------------------------------------- */
/* Failure reasons.                                                        */

static void test_init_error(void) {
  struct kfm__nvml_syms syms;
  char reason[256];
  struct session s;
  fake_reset();
  fake.init_rc = KFM__NVML_ERROR_DRIVER_NOT_LOADED;
  syms = fake_syms();
  CU_ASSERT_EQUAL(kfm__nvml_setup_table(&syms, reason, sizeof reason), 0);
  EXPECT_STR(reason, "nvmlInit_v2 failed: 9 Driver Not Loaded");
  CU_ASSERT_EQUAL(fake_shutdowns, 0); /* a failed init is not shut down */
  /* A session cannot open it, and says why. */
  CU_ASSERT_EQUAL(session_open(&s), KFM_EBACKEND);
  EXPECT_STR(s.err, "nvml: nvmlInit_v2 failed: 9 Driver Not Loaded");
  {
    char *js = export_text(s.state);
    EXPECT_STR(js, "{\"available\":false,\"reason\":\"nvmlInit_v2 failed: 9 Driver Not Loaded\"}");
    free(js);
  }
  session_close(&s);
  kfm__nvml_teardown();
}

static void test_no_device(void) {
  struct kfm__nvml_syms syms;
  char reason[256];
  fake_reset();
  fake.count = 0;
  syms = fake_syms();
  CU_ASSERT_EQUAL(kfm__nvml_setup_table(&syms, reason, sizeof reason), 0);
  EXPECT_STR(reason, "no NVIDIA GPU (nvmlDeviceGetCount = 0)");
  CU_ASSERT_EQUAL(fake_inits, 1);
  CU_ASSERT_EQUAL(fake_shutdowns, 1);
  kfm__nvml_teardown();
  CU_ASSERT_EQUAL(fake_shutdowns, 1);
}

/* A fake dynamic loader: resolves NVML names to the fakes, can fail to
 * open or lack one symbol, and counts closes. */
static int dl_fail_open, dl_closes;
static const char *dl_missing;
static int dl_handle_token;

static void *fake_dlopen(const char *file, int flags) {
  (void)flags;
  if (dl_fail_open || strcmp(file, KFM__NVML_LIBRARY) != 0) {
    return NULL;
  }
  return &dl_handle_token;
}
static char *fake_dlerror(void) {
  static char msg[] =
      "libnvidia-ml.so.1: cannot open shared object file: No such file or directory";
  static char sym_msg[] = "undefined symbol";
  return dl_fail_open ? msg : sym_msg;
}
static int fake_dlclose(void *h) {
  CU_ASSERT_PTR_EQUAL(h, &dl_handle_token);
  dl_closes++;
  return 0;
}
static void *fake_dlsym(void *h, const char *name) {
  static struct kfm__nvml_syms s;
  static const struct {
    const char *name;
    size_t off;
  } map[] = {
      {"nvmlInit_v2", offsetof(struct kfm__nvml_syms, init_v2)},
      {"nvmlShutdown", offsetof(struct kfm__nvml_syms, shutdown)},
      {"nvmlErrorString", offsetof(struct kfm__nvml_syms, error_string)},
      {"nvmlDeviceGetCount_v2", offsetof(struct kfm__nvml_syms, device_get_count_v2)},
      {"nvmlDeviceGetHandleByIndex_v2",
       offsetof(struct kfm__nvml_syms, device_get_handle_by_index_v2)},
      {"nvmlDeviceGetName", offsetof(struct kfm__nvml_syms, device_get_name)},
      {"nvmlDeviceGetPciInfo_v3", offsetof(struct kfm__nvml_syms, device_get_pci_info_v3)},
      {"nvmlDeviceGetUtilizationRates",
       offsetof(struct kfm__nvml_syms, device_get_utilization_rates)},
      {"nvmlDeviceGetMemoryInfo", offsetof(struct kfm__nvml_syms, device_get_memory_info)},
      {"nvmlDeviceGetPowerUsage", offsetof(struct kfm__nvml_syms, device_get_power_usage)},
      {"nvmlDeviceGetClockInfo", offsetof(struct kfm__nvml_syms, device_get_clock_info)},
      {"nvmlDeviceGetTemperature", offsetof(struct kfm__nvml_syms, device_get_temperature)},
      {"nvmlDeviceGetPcieThroughput", offsetof(struct kfm__nvml_syms, device_get_pcie_throughput)},
      {"nvmlDeviceGetComputeRunningProcesses_v3",
       offsetof(struct kfm__nvml_syms, device_get_compute_running_processes_v2)},
  };
  void *p = NULL;
  CU_ASSERT_PTR_EQUAL(h, &dl_handle_token);
  s = fake_syms();
  if (dl_missing && strcmp(name, dl_missing) == 0) {
    return NULL;
  }
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    if (strcmp(map[i].name, name) == 0) {
      memcpy(&p, (char *)&s + map[i].off, sizeof p);
    }
  }
  return p;
}

static const struct kfm__nvml_dl fake_dl = {
    .open = fake_dlopen, .sym = fake_dlsym, .error = fake_dlerror, .close = fake_dlclose};

static void test_dl_paths(void) {
  char reason[256];
  struct session s;
  uint64_t out[32];
  fake_reset();

  /* Library absent. */
  dl_fail_open = 1;
  dl_closes = 0;
  CU_ASSERT_EQUAL(kfm__nvml_setup_dl(&fake_dl, reason, sizeof reason), 0);
  EXPECT_STR(reason, "libnvidia-ml.so.1 not found (dlopen: libnvidia-ml.so.1: cannot open shared "
                     "object file: No such file or directory)");
  CU_ASSERT_EQUAL(dl_closes, 0);

  /* A required symbol missing: the library is closed again. */
  dl_fail_open = 0;
  dl_missing = "nvmlDeviceGetCount_v2";
  CU_ASSERT_EQUAL(kfm__nvml_setup_dl(&fake_dl, reason, sizeof reason), 0);
  EXPECT_STR(reason, "libnvidia-ml.so.1 lacks nvmlDeviceGetCount_v2 (driver older than NVML "
                     "5.319?): undefined symbol");
  CU_ASSERT_EQUAL(dl_closes, 1);
  CU_ASSERT_EQUAL(fake_inits, 0);

  /* nvmlInit_v2 fails: closed too. */
  dl_missing = NULL;
  fake.init_rc = KFM__NVML_ERROR_UNKNOWN;
  CU_ASSERT_EQUAL(kfm__nvml_setup_dl(&fake_dl, reason, sizeof reason), 0);
  EXPECT_STR(reason, "nvmlInit_v2 failed: 999 Unknown Error");
  CU_ASSERT_EQUAL(dl_closes, 2);

  /* Everything resolved by name, the process list through _v3; the
   * deprecated temperature call absent. */
  fake.init_rc = KFM__NVML_SUCCESS;
  dl_missing = "nvmlDeviceGetTemperature";
  CU_ASSERT_EQUAL_FATAL(kfm__nvml_setup_dl(&fake_dl, reason, sizeof reason), 1);
  EXPECT_STR(reason, "available: 2 NVIDIA GPUs (libnvidia-ml.so.1)");
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  {
    static const unsigned pcie[] = {7, 8, 17, 18};
    sample_settled(s.state, out, 20, pcie, 4);
  }
  CU_ASSERT_EQUAL(out[0], 37);
  CU_ASSERT_EQUAL(out[6], KFM_GPU_UNMEASURED);
  CU_ASSERT_EQUAL(out[9], 815792128ull);
  CU_ASSERT_EQUAL(out[13], KFM_GPU_UNMEASURED);
  CU_ASSERT_EQUAL(out[18], 2);
  {
    char *js = export_text(s.state);
    EXPECT_HAS(js, "\"library\":\"libnvidia-ml.so.1\"");
    free(js);
  }
  session_close(&s);
  kfm__nvml_teardown();
  CU_ASSERT_EQUAL(dl_closes, 3);
  CU_ASSERT_EQUAL(fake_shutdowns, 1);
  dl_missing = NULL;
}

/* ---------------------------------------------------------------------- */
/* This machine.                                                           */

static char real_reason[256];
static int real_available;

static void test_real_probe(void) {
  void *h;
  real_available = kfm__backend_nvml.probe(real_reason, sizeof real_reason);
  printf("\n  nvml probe here: %s: %s\n", real_available ? "available" : "unavailable",
         real_reason);
  h = dlopen(KFM__NVML_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    char want[512];
    snprintf(want, sizeof want, "libnvidia-ml.so.1 not found (dlopen: %s)", dlerror());
    CU_ASSERT_EQUAL(real_available, 0);
    EXPECT_STR(real_reason, want);
  } else {
    dlclose(h);
    if (!real_available) {
      CU_ASSERT_TRUE(strncmp(real_reason, "nvmlInit_v2 failed: ", 20) == 0 ||
                     strcmp(real_reason, "no NVIDIA GPU (nvmlDeviceGetCount = 0)") == 0 ||
                     strncmp(real_reason, "nvmlDeviceGetCount_v2 failed: ", 30) == 0);
    }
  }
}

/* Needs an NVIDIA GPU: plausibility of real readings. */
static void test_real_gpu(void) {
  struct session s;
  uint64_t out[NVML_TEST_MAX_OUT];
  if (!real_available) {
    printf("\n  skipped (needs an NVIDIA GPU): %s\n", real_reason);
    return;
  }
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  usleep(300000);
  kfm__backend_nvml.sample(s.state, out);
  for (unsigned i = 0; i < s.ctx.n_sample; i++) {
    const char *unit = s.ctx.sample[i].unit;
    printf("  %s = %s%llu %s\n", s.ctx.sample[i].name,
           out[i] == KFM_GPU_UNMEASURED ? "(unmeasured) " : "",
           out[i] == KFM_GPU_UNMEASURED ? 0ull : (unsigned long long)out[i], unit);
    if (out[i] != KFM_GPU_UNMEASURED && strcmp(unit, "%") == 0) {
      CU_ASSERT_TRUE(out[i] <= 100);
    }
  }
  session_close(&s);
}

#ifdef KFM_TEST_REGISTERED_NVML
/* Once the backend is in the builtin list: a COMPREHENSIVE session still
 * works here and lists the backend with the probe's reason. */
static void test_session_lists_reason(void) {
  kfm_session_t *s = NULL;
  kfm_report_t *r = NULL;
  int seen = 0;
  KT_OK(NULL, kfm_session_create_str(&s, "level=comprehensive,rate=200"));
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter_name(s, "work"));
  usleep(20000);
  KT_OK(s, kfm_exit_name(s, "work"));
  KT_OK(s, kfm_session_stop(s));
  KT_OK(s, kfm_session_report(s, &r));
  for (size_t i = 0; i < kfm_report_backend_count(r); i++) {
    kfm_backend_status_t b;
    KT_OK(s, kfm_report_backend(r, i, &b));
    if (strcmp(b.name, "nvml") == 0) {
      seen = 1;
      printf("\n  session: nvml %s: %s\n", b.enabled ? "enabled" : "disabled", b.reason);
      CU_ASSERT_EQUAL(b.available, real_available);
      if (!real_available) {
        CU_ASSERT_EQUAL(b.enabled, 0);
        EXPECT_STR(b.reason, real_reason);
      }
    }
  }
  CU_ASSERT_TRUE(seen);
  kfm_report_free(r);
  kfm_session_destroy(s);
}
/* A fake NVML (the injected table) made available to the engine: the
 * sampler reads the devices and each node gets the values sampled while it
 * was innermost, unmeasured values left out. */
static void test_session_attributes_samples(void) {
  struct kfm__nvml_syms syms;
  char reason[256];
  fake_reset();
  syms = fake_syms();
  CU_ASSERT_EQUAL_FATAL(kfm__nvml_setup_table(&syms, reason, sizeof reason), 1);
  KT_OK(NULL, kfm__backend_status_override("nvml", 1, reason));
  kfm_session_t *s = NULL;
  kfm_report_t *r = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=comprehensive,rate=1000,backends=clock,nvml"));
  KT_OK(s, kfm_session_start(s));
  KT_OK(s, kfm_enter_name(s, "gpu_phase"));
  usleep(300000); /* several poller periods: every value is read */
  KT_OK(s, kfm_exit_name(s, "gpu_phase"));
  KT_OK(s, kfm_session_stop(s));
  KT_OK(s, kfm_session_report(s, &r));
  kfm_node_stats_t n;
  KT_OK(s, kfm_report_node_by_name(r, "gpu_phase", &n));
  int util0 = -1, util1 = -1, power1 = -1, mem0 = -1;
  for (size_t i = 0; i < kfm_report_sample_metric_count(r); i++) {
    kfm_metric_info_t mi;
    KT_OK(s, kfm_report_sample_metric(r, i, &mi));
    util0 = strcmp(mi.name, "nvml.gpu0.util") == 0 ? (int)i : util0;
    util1 = strcmp(mi.name, "nvml.gpu1.util") == 0 ? (int)i : util1;
    power1 = strcmp(mi.name, "nvml.gpu1.power") == 0 ? (int)i : power1;
    mem0 = strcmp(mi.name, "nvml.gpu0.mem_used") == 0 ? (int)i : mem0;
  }
  CU_ASSERT_FATAL(util0 >= 0 && util1 >= 0 && power1 >= 0 && mem0 >= 0);
  CU_ASSERT_TRUE(n.samples > 100);
  CU_ASSERT_DOUBLE_EQUAL(n.sampled[util0], 37, 0);
  CU_ASSERT_DOUBLE_EQUAL(n.sampled[util1], 99, 0);
  CU_ASSERT_DOUBLE_EQUAL(n.sampled[mem0], 5368709120.0, 0);
  CU_ASSERT_TRUE(isnan(n.sampled[power1])); /* never measured: not a zero */
  kfm_report_free(r);
  kfm_session_destroy(s);
  kfm__nvml_teardown();
  KT_OK(NULL, kfm__backend_status_override("nvml", real_available, real_reason));
}
#endif

int main(void) {
  unsetenv("CUDA_VISIBLE_DEVICES"); /* the fakes' two GPUs, unless a test says otherwise */
  static const struct kt_case cases[] = {
      {"values of two fake devices, one power read failing", test_values_two_devices},
      {"device handle failures", test_device_handle_failure},
      {"missing optional functions", test_missing_optional},
      {"per-process memory rules", test_proc_mem_rules},
      {"CUDA_VISIBLE_DEVICES: indices, UUIDs, MIG, as CUDA reads it", test_visible_devices},
      {"more than 256 compute processes", test_many_processes},
      {"instant power where the driver has it", test_instant_power},
      {"nvmlInit_v2 error", test_init_error},
      {"no device", test_no_device},
      {"dlopen/dlsym paths", test_dl_paths},
      {"real probe on this machine", test_real_probe},
      {"real GPU readings", test_real_gpu},
#ifdef KFM_TEST_REGISTERED_NVML
      {"session lists the backend with its reason", test_session_lists_reason},
      {"a session attributes sampled GPU values to nodes", test_session_attributes_samples},
#endif
      {NULL, NULL},
  };
  return kt_run("nvml", cases);
}

#endif /* KFM_HAVE_NVML */
