/*
 * test_rocm_smi.c - tests of the ROCm SMI backend without an AMD GPU.
 *
 * A fake ROCm SMI (the real signatures, values the test chooses) drives the
 * value paths through an injected symbol table; a fake dlopen/dlsym and a
 * fake sysfs tree drive the loader and the AMD-card pre-check.  Both
 * rsmi_frequencies_t layouts (ROCm <= 5 and >= 6) are decoded from buffers
 * built here.  On this machine the real probe must report the precise
 * reason and print nothing on stderr, and the real library's rsmi_init,
 * made to run by a fixture sysfs with an AMD card, must fail without a
 * byte on stderr either.  The real-GPU case prints why it is skipped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* open_memstream, mkdtemp */
#endif

#include <stdio.h>

#ifndef KFM_HAVE_ROCM_SMI
int main(void) {
  printf("test_rocm_smi: skipped: kfm was built without the ROCm SMI backend "
         "(KFM_HAVE_ROCM_SMI undefined)\n");
  return 77;
}
#else

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kfm_test.h"
#include "rocm_smi/kfm_rocm_smi.h"

#define RSMI_TEST_MAX_OUT 256

/* ---------------------------------------------------------------------- */
/* The fake ROCm SMI, configured before a session opens.                   */

struct fake_gpu {
  const char *name;
  uint64_t bdfid;
  uint32_t busy, mem_busy;
  uint64_t vram_total, vram_used;
  kfm__rsmi_status_t power_rc;
  uint64_t power_uw;
  uint64_t sclk_hz, mclk_hz;
  int v6_layout; /* write rsmi_frequencies_t as ROCm >= 6 does */
  int edge_supported;
  int64_t temp_mdeg;
  uint64_t pcie_first, pcie_second, mps;
};

static struct {
  kfm__rsmi_status_t init_rc;
  int refuse_flags; /* an older library: RSMI_STATUS_INVALID_ARGS for any flag */
  uint64_t socket_uw[2]; /* rsmi_dev_current_socket_power_get; 0: not supported */
  int init_noise; /* write to stderr in rsmi_init, as the real one does */
  uint32_t count;
  struct fake_gpu gpu[2];
} fake;

static int fake_inits, fake_shutdowns;
static uint64_t fake_init_flags;

static void fake_reset(void) {
  static const struct fake_gpu g0 = {.name = "Fake Instinct 0",
                                     .bdfid = (0x0000ull << 32) | (0x03u << 8) | (0x00u << 3) | 0,
                                     .busy = 42,
                                     .mem_busy = 17,
                                     .vram_total = 68702699520ull,
                                     .vram_used = 2147483648ull,
                                     .power_rc = 0,
                                     .power_uw = 287654321ull,
                                     .sclk_hz = 1700000000ull,
                                     .mclk_hz = 1600000000ull,
                                     .v6_layout = 0,
                                     .edge_supported = 1,
                                     .temp_mdeg = 54321,
                                     .pcie_first = 1000,
                                     .pcie_second = 2000,
                                     .mps = 256};
  static const struct fake_gpu g1 = {.name = "Fake Instinct 1",
                                     .bdfid = (0x0001ull << 32) | (0xc1u << 8) | (0x1fu << 3) | 1,
                                     .busy = 3,
                                     .mem_busy = 0,
                                     .vram_total = 137438953472ull,
                                     .vram_used = 0,
                                     .power_rc = KFM__RSMI_NOT_SUPPORTED,
                                     .power_uw = 5,
                                     .sclk_hz = 2100000000ull,
                                     .mclk_hz = 1300000000ull,
                                     .v6_layout = 1,
                                     .edge_supported = 0,
                                     .temp_mdeg = 39500,
                                     .pcie_first = 7,
                                     .pcie_second = 9,
                                     .mps = 512};
  memset(&fake, 0, sizeof fake);
  fake.count = 2;
  fake.gpu[0] = g0;
  fake.gpu[1] = g1;
  fake_inits = fake_shutdowns = 0;
}

static const struct fake_gpu *gpu(uint32_t dv) {
  return &fake.gpu[dv < 2 ? dv : 0];
}

static kfm__rsmi_status_t fake_init(uint64_t flags) {
  fake_inits++;
  fake_init_flags = flags;
  if (fake.refuse_flags && flags != 0) {
    return KFM__RSMI_INVALID_ARGS;
  }
  if (fake.init_noise) {
    /* Both ways the real library writes, and both are C stdio's stderr
     * (librocm_smi64 5.2, checked by test_real_init_quiet): perror and
     * std::cerr, which libstdc++ writes through stdio. */
    perror("Failed to open drm root directory /sys/class/drm.");
    fputs("Exception caught: rsmi_init.\n", stderr);
  }
  return fake.init_rc;
}
static kfm__rsmi_status_t fake_shut_down(void) {
  fake_shutdowns++;
  return 0;
}
static kfm__rsmi_status_t fake_num(uint32_t *n) {
  *n = fake.count;
  return 0;
}
static kfm__rsmi_status_t fake_status_string(kfm__rsmi_status_t s, const char **str) {
  (void)s;
  *str = "some text";
  return 0;
}
static kfm__rsmi_status_t fake_version(struct kfm__rsmi_version *v) {
  v->major = 5;
  v->minor = 2;
  v->patch = 3;
  v->build = "";
  return 0;
}
static kfm__rsmi_status_t fake_name(uint32_t dv, char *name, size_t len) {
  snprintf(name, len, "%s", gpu(dv)->name);
  return 0;
}
static kfm__rsmi_status_t fake_pci(uint32_t dv, uint64_t *bdfid) {
  *bdfid = gpu(dv)->bdfid;
  return 0;
}
static kfm__rsmi_status_t fake_busy(uint32_t dv, uint32_t *p) {
  *p = gpu(dv)->busy;
  return 0;
}
static kfm__rsmi_status_t fake_mem_busy(uint32_t dv, uint32_t *p) {
  *p = gpu(dv)->mem_busy;
  return 0;
}
static kfm__rsmi_status_t fake_mem_usage(uint32_t dv, int type, uint64_t *v) {
  if (type != KFM__RSMI_MEM_TYPE_VRAM) {
    return 1;
  }
  *v = gpu(dv)->vram_used;
  return 0;
}
static kfm__rsmi_status_t fake_mem_total(uint32_t dv, int type, uint64_t *v) {
  if (type != KFM__RSMI_MEM_TYPE_VRAM) {
    return 1;
  }
  *v = gpu(dv)->vram_total;
  return 0;
}
static kfm__rsmi_status_t fake_power(uint32_t dv, uint32_t sensor, uint64_t *uw) {
  CU_ASSERT_EQUAL(sensor, 0);
  *uw = gpu(dv)->power_uw;
  return gpu(dv)->power_rc;
}

/* Writes an rsmi_frequencies_t of either layout with 3 levels, current = 1. */
static void put_freqs(void *buf, int v6, uint64_t hz) {
  unsigned char *b = buf;
  uint32_t num = 3, cur = 1;
  uint64_t f[3] = {hz / 2, hz, hz + 100000000ull};
  if (v6) {
    b[0] = 1; /* has_deep_sleep */
    memcpy(b + 4, &num, 4);
    memcpy(b + 8, &cur, 4);
    memcpy(b + 16, f, sizeof f);
  } else {
    memcpy(b, &num, 4);
    memcpy(b + 4, &cur, 4);
    memcpy(b + 8, f, sizeof f);
  }
}
static kfm__rsmi_status_t fake_clk(uint32_t dv, int type, void *freqs) {
  if (type == KFM__RSMI_CLK_TYPE_SYS) {
    put_freqs(freqs, gpu(dv)->v6_layout, gpu(dv)->sclk_hz);
  } else if (type == KFM__RSMI_CLK_TYPE_MEM) {
    put_freqs(freqs, gpu(dv)->v6_layout, gpu(dv)->mclk_hz);
  } else {
    return 1;
  }
  return 0;
}
static kfm__rsmi_status_t fake_temp(uint32_t dv, uint32_t sensor, int metric, int64_t *t) {
  if (metric != KFM__RSMI_TEMP_CURRENT) {
    return 1;
  }
  if (sensor == KFM__RSMI_TEMP_TYPE_EDGE && !gpu(dv)->edge_supported) {
    return KFM__RSMI_NOT_SUPPORTED;
  }
  *t = gpu(dv)->temp_mdeg + (sensor == KFM__RSMI_TEMP_TYPE_JUNCTION ? 0 : 0);
  return 0;
}
static kfm__rsmi_status_t fake_pcie(uint32_t dv, uint64_t *sent, uint64_t *recv, uint64_t *mps) {
  /* ROCm SMI's names: its "sent" is the kernel's first count (received). */
  *sent = gpu(dv)->pcie_first;
  *recv = gpu(dv)->pcie_second;
  *mps = gpu(dv)->mps;
  return 0;
}

static struct kfm__rsmi_syms fake_syms(void) {
  struct kfm__rsmi_syms s = {
      .init = fake_init,
      .shut_down = fake_shut_down,
      .num_monitor_devices = fake_num,
      .status_string = fake_status_string,
      .version_get = fake_version,
      .dev_name_get = fake_name,
      .dev_pci_id_get = fake_pci,
      .dev_busy_percent_get = fake_busy,
      .dev_memory_busy_percent_get = fake_mem_busy,
      .dev_memory_usage_get = fake_mem_usage,
      .dev_memory_total_get = fake_mem_total,
      .dev_power_ave_get = fake_power,
      .dev_gpu_clk_freq_get = fake_clk,
      .dev_temp_metric_get = fake_temp,
      .dev_pci_throughput_get = fake_pcie,
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
  s->state = calloc(1, kfm__backend_rocm_smi.state_size);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s->state);
  s->ctx.level = KFM_LEVEL_COMPREHENSIVE;
  s->ctx.proc_root = "";
  s->ctx.events = "";
  s->ctx.errbuf = s->err;
  s->ctx.errlen = sizeof s->err;
  s->ctx.note = s->note;
  s->ctx.notelen = sizeof s->note;
  return kfm__backend_rocm_smi.open(s->state, &s->ctx);
}

static void session_close(struct session *s) {
  kfm__backend_rocm_smi.close(s->state);
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
  kfm__backend_rocm_smi.export_json(state, f);
  fclose(f);
  return buf;
}

static void sample_settled(void *state, uint64_t *out, const unsigned *idx, unsigned nidx) {
  for (int tries = 0; tries < 500; tries++) {
    int all = 1;
    kfm__backend_rocm_smi.sample(state, out);
    for (unsigned i = 0; i < nidx; i++) {
      all &= out[idx[i]] != KFM_GPU_UNMEASURED;
    }
    if (all) {
      return;
    }
    usleep(10000);
  }
}

/* Captures what is written to fd 2 between begin and end into a file. */
struct capture {
  int saved;
  FILE *tmp;
};
static void capture_begin(struct capture *c) {
  fflush(stderr);
  c->tmp = tmpfile();
  CU_ASSERT_PTR_NOT_NULL_FATAL(c->tmp);
  c->saved = dup(2);
  dup2(fileno(c->tmp), 2);
}
/* Returns the captured bytes (caller frees). */
static char *capture_end(struct capture *c) {
  long n;
  char *buf;
  fflush(stderr);
  dup2(c->saved, 2);
  close(c->saved);
  fseek(c->tmp, 0, SEEK_END);
  n = ftell(c->tmp);
  buf = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
  rewind(c->tmp);
  if (n > 0 && fread(buf, 1, (size_t)n, c->tmp) != (size_t)n) {
    buf[0] = '\0';
  }
  fclose(c->tmp);
  return buf;
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
  struct kfm__rsmi_syms syms;
  struct session s;
  char reason[256];
  uint64_t out[64];
  static const char *const names[] = {"util",      "mem_util", "mem_used", "power",  "sm_clock",
                                      "mem_clock", "temp",     "pcie_tx",  "pcie_rx"};
  static const char *const units[] = {"%",   "%", "bytes",   "mW",     "MHz",
                                      "MHz", "C", "count/s", "count/s"};
  fake_reset();
  syms = fake_syms();
  CU_ASSERT_EQUAL_FATAL(kfm__rsmi_setup_table(&syms, reason, sizeof reason), 1);
  EXPECT_STR(reason, "available: 2 AMD GPUs (injected symbol table)");
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  CU_ASSERT_EQUAL_FATAL(s.ctx.n_sample, 18);
  EXPECT_STR(s.note, "2 devices sampled every 100 ms, PCIe every 5000 ms");
  for (unsigned d = 0; d < 2; d++) {
    for (unsigned m = 0; m < 9; m++) {
      char want[64];
      const struct kfm__metric_def *def = &s.ctx.sample[d * 9 + m];
      snprintf(want, sizeof want, "rocm_smi.gpu%u.%s", d, names[m]);
      EXPECT_STR(def->name, want);
      EXPECT_STR(def->unit, units[m]);
      CU_ASSERT_EQUAL(def->kind, KFM_METRIC_GAUGE);
    }
  }
  {
    static const unsigned pcie[] = {7, 8, 16, 17};
    /* power: 287654321 uW -> 287654 mW (rounded); temps 54321 -> 54 C,
     * 39500 -> 40 C from the junction sensor; PCIe tx = second count. */
    const uint64_t want[18] = {42, 17, 2147483648ull,      287654, 1700, 1600, 54, 2000, 1000, 3,
                               0,  0,  KFM_GPU_UNMEASURED, 2100,   1300, 40,   9,  7};
    sample_settled(s.state, out, pcie, 4);
    for (unsigned i = 0; i < 18; i++) {
      if (out[i] != want[i]) {
        fprintf(stderr, "\nvalue %u (%s): got %llu want %llu\n", i, s.ctx.sample[i].name,
                (unsigned long long)out[i], (unsigned long long)want[i]);
      }
      CU_ASSERT_EQUAL(out[i], want[i]);
    }
  }
  {
    char *js = export_text(s.state);
    EXPECT_HAS(js, "{\"available\":true,\"library\":\"injected\",\"library_version\":\"5.2.3\"");
    EXPECT_HAS(js, "{\"index\":0,\"name\":\"Fake Instinct 0\",\"pci_bus_id\":\"0000:03:00.0\","
                   "\"memory_total\":68702699520,\"temp_sensor\":\"edge\",\"power_reading\":"
                   "\"average\",\"pcie_max_payload\":256,\"unmeasured\":{}}");
    EXPECT_HAS(js, "{\"index\":1,\"name\":\"Fake Instinct 1\",\"pci_bus_id\":\"0001:c1:1f.1\","
                   "\"memory_total\":137438953472,\"temp_sensor\":\"junction\","
                   "\"power_reading\":\"average\",\"pcie_max_payload\":512,"
                   "\"unmeasured\":{\"power\":\"2 RSMI_STATUS_NOT_SUPPORTED\"}}");
    free(js);
  }
  session_close(&s);
  kfm__rsmi_teardown();
  CU_ASSERT_EQUAL(fake_inits, 1);
  CU_ASSERT_EQUAL(fake_shutdowns, 1);
}

static void test_clock_layouts(void) {
  unsigned char buf[KFM__RSMI_FREQ_BUF];
  uint32_t u;
  uint64_t f;
  memset(buf, 0, sizeof buf);
  put_freqs(buf, 0, 1500000000ull);
  CU_ASSERT_EQUAL(kfm__rsmi_clock_mhz(buf), 1500);
  memset(buf, 0, sizeof buf);
  put_freqs(buf, 1, 1500000000ull);
  CU_ASSERT_EQUAL(kfm__rsmi_clock_mhz(buf), 1500);
  /* v6 without deep sleep (bool 0). */
  buf[0] = 0;
  CU_ASSERT_EQUAL(kfm__rsmi_clock_mhz(buf), 1500);
  /* A single level, current 0, in each layout. */
  memset(buf, 0, sizeof buf);
  u = 1;
  memcpy(buf, &u, 4);
  f = 800000000ull;
  memcpy(buf + 8, &f, 8);
  CU_ASSERT_EQUAL(kfm__rsmi_clock_mhz(buf), 800);
  memset(buf, 0, sizeof buf);
  buf[0] = 1;
  memcpy(buf + 4, &u, 4);
  memcpy(buf + 16, &f, 8);
  CU_ASSERT_EQUAL(kfm__rsmi_clock_mhz(buf), 800);
  /* Nothing filled in, current out of range, or an absurd frequency. */
  memset(buf, 0, sizeof buf);
  CU_ASSERT_EQUAL(kfm__rsmi_clock_mhz(buf), KFM_GPU_UNMEASURED);
  u = 3;
  memcpy(buf, &u, 4);
  memcpy(buf + 4, &u, 4);
  CU_ASSERT_EQUAL(kfm__rsmi_clock_mhz(buf), KFM_GPU_UNMEASURED);
  memset(buf, 0, sizeof buf);
  u = 1;
  memcpy(buf, &u, 4);
  f = 5;
  memcpy(buf + 8, &f, 8);
  CU_ASSERT_EQUAL(kfm__rsmi_clock_mhz(buf), KFM_GPU_UNMEASURED);
}

static void test_status_names(void) {
  EXPECT_STR(kfm__rsmi_status_name(0), "RSMI_STATUS_SUCCESS");
  EXPECT_STR(kfm__rsmi_status_name(8), "RSMI_STATUS_INIT_ERROR");
  EXPECT_STR(kfm__rsmi_status_name(17), "RSMI_STATUS_REFCOUNT_OVERFLOW");
  EXPECT_STR(kfm__rsmi_status_name(0xFFFFFFFFu), "RSMI_STATUS_UNKNOWN_ERROR");
  EXPECT_STR(kfm__rsmi_status_name(18), "RSMI_STATUS_?");
}

/* ---------------------------------------------------------------------- */
/* Failure reasons and stderr.                                             */

static void test_init_error_quiet(void) {
  struct kfm__rsmi_syms syms;
  struct capture c;
  char reason[256], *noise;
  struct session s;
  fake_reset();
  fake.init_rc = KFM__RSMI_INIT_ERROR;
  fake.init_noise = 1;
  syms = fake_syms();
  capture_begin(&c);
  CU_ASSERT_EQUAL(kfm__rsmi_setup_table(&syms, reason, sizeof reason), 0);
  noise = capture_end(&c);
  EXPECT_STR(reason, "rsmi_init failed: 8 RSMI_STATUS_INIT_ERROR (no AMD GPU or amdgpu driver)");
  EXPECT_STR(noise, "");
  free(noise);
  CU_ASSERT_EQUAL(fake_inits, 1);
  CU_ASSERT_EQUAL(fake_shutdowns, 0);
  /* stderr works again afterwards. */
  capture_begin(&c);
  fprintf(stderr, "after");
  noise = capture_end(&c);
  EXPECT_STR(noise, "after");
  free(noise);

  CU_ASSERT_EQUAL(session_open(&s), KFM_EBACKEND);
  EXPECT_STR(s.err, "rocm_smi: rsmi_init failed: 8 RSMI_STATUS_INIT_ERROR (no AMD GPU or amdgpu "
                    "driver)");
  {
    char *js = export_text(s.state);
    EXPECT_STR(js, "{\"available\":false,\"reason\":\"rsmi_init failed: 8 RSMI_STATUS_INIT_ERROR "
                   "(no AMD GPU or amdgpu driver)\"}");
    free(js);
  }
  session_close(&s);

  fake.init_rc = KFM__RSMI_SUCCESS;
  fake.count = 0;
  CU_ASSERT_EQUAL(kfm__rsmi_setup_table(&syms, reason, sizeof reason), 0);
  EXPECT_STR(reason, "no AMD GPU (rsmi_num_monitor_devices = 0)");
  CU_ASSERT_EQUAL(fake_shutdowns, 1);

  fake.init_rc = 4; /* RSMI_STATUS_PERMISSION */
  CU_ASSERT_EQUAL(kfm__rsmi_setup_table(&syms, reason, sizeof reason), 0);
  EXPECT_STR(reason, "rsmi_init failed: 4 RSMI_STATUS_PERMISSION");
  kfm__rsmi_teardown();
}

/* ROCm SMI is asked for thread-only mutexes; a library refusing the flag
 * is initialised without it. */
static void test_init_thread_only_mutex(void) {
  struct kfm__rsmi_syms syms;
  char reason[256];
  fake_reset();
  syms = fake_syms();
  CU_ASSERT_EQUAL_FATAL(kfm__rsmi_setup_table(&syms, reason, sizeof reason), 1);
  CU_ASSERT_EQUAL(fake_inits, 1);
  CU_ASSERT_EQUAL(fake_init_flags, 0x400000000000000ull);
  kfm__rsmi_teardown();
  fake_reset();
  fake.refuse_flags = 1;
  CU_ASSERT_EQUAL_FATAL(kfm__rsmi_setup_table(&syms, reason, sizeof reason), 1);
  CU_ASSERT_EQUAL(fake_inits, 2);
  CU_ASSERT_EQUAL(fake_init_flags, 0);
  kfm__rsmi_teardown();
}

/* While rsmi_init runs silenced, another thread's stderr output is kept:
 * a raw write to fd 2 arrives at once, a stdio write after the call. */
static _Atomic int other_step;
static void *other_writer(void *arg) {
  (void)arg;
  while (atomic_load(&other_step) == 0) {
    usleep(1000);
  }
  if (write(2, "raw from another thread\n", 24) < 0) {
    /* the test checks what arrived */
  }
  atomic_store(&other_step, 2);
  fprintf(stderr, "stdio from another thread\n"); /* waits for the stream */
  atomic_store(&other_step, 3);
  return NULL;
}
static kfm__rsmi_status_t noisy_slow(uint64_t arg) {
  atomic_store(&other_step, 1);
  for (int i = 0; i < 2000 && atomic_load(&other_step) < 2; i++) {
    usleep(1000);
  }
  usleep(20000); /* the other thread is now blocked in fprintf */
  perror("Failed to open drm root directory /sys/class/drm.");
  fputs("Exception caught: rsmi_init.\n", stderr);
  return (kfm__rsmi_status_t)arg;
}
static void test_quiet_call_keeps_other_threads(void) {
  struct capture c;
  pthread_t t;
  atomic_store(&other_step, 0);
  capture_begin(&c);
  CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, other_writer, NULL), 0);
  CU_ASSERT_EQUAL(kfm__rsmi_quiet_call(noisy_slow, 8), 8);
  pthread_join(t, NULL);
  char *noise = capture_end(&c);
  CU_ASSERT_EQUAL(atomic_load(&other_step), 3);
  EXPECT_HAS(noise, "raw from another thread\n");
  EXPECT_HAS(noise, "stdio from another thread\n");
  CU_ASSERT_PTR_NULL(strstr(noise, "drm root"));
  CU_ASSERT_PTR_NULL(strstr(noise, "Exception caught"));
  free(noise);
}

/* The current socket power first (MI300 has no average), the deprecated
 * average where it is not supported; the export says which. */
static kfm__rsmi_status_t fake_socket_power(uint32_t dv, uint64_t *uw) {
  if (fake.socket_uw[dv] == 0) {
    return KFM__RSMI_NOT_SUPPORTED;
  }
  *uw = fake.socket_uw[dv];
  return KFM__RSMI_SUCCESS;
}
static void test_socket_power_first(void) {
  struct kfm__rsmi_syms syms;
  struct session s;
  char reason[256];
  uint64_t out[RSMI_TEST_MAX_OUT];
  fake_reset();
  fake.socket_uw[0] = 512345678;
  fake.gpu[1].power_rc = KFM__RSMI_SUCCESS;
  fake.gpu[1].power_uw = 99000000;
  syms = fake_syms();
  syms.dev_current_socket_power_get = fake_socket_power;
  syms.dev_power_ave_get = NULL; /* gpu0: an MI300 has no average at all */
  CU_ASSERT_EQUAL_FATAL(kfm__rsmi_setup_table(&syms, reason, sizeof reason), 1);
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  kfm__backend_rocm_smi.sample(s.state, out);
  CU_ASSERT_EQUAL(out[3], 512346);
  CU_ASSERT_EQUAL(out[9 + 3], KFM_GPU_UNMEASURED); /* neither on gpu1 */
  char *js = export_text(s.state);
  EXPECT_HAS(js, "\"power_reading\":\"instant\"");
  free(js);
  session_close(&s);
  syms.dev_power_ave_get = fake_power;
  CU_ASSERT_EQUAL_FATAL(kfm__rsmi_setup_table(&syms, reason, sizeof reason), 1);
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  kfm__backend_rocm_smi.sample(s.state, out);
  CU_ASSERT_EQUAL(out[3], 512346);
  CU_ASSERT_EQUAL(out[9 + 3], 99000);
  js = export_text(s.state);
  EXPECT_HAS(js, "\"power_reading\":\"instant\"");
  EXPECT_HAS(js, "\"power_reading\":\"average\"");
  free(js);
  session_close(&s);
  kfm__rsmi_teardown();
}

/* The fd 2 swap from several threads at once keeps stderr intact. */
static kfm__rsmi_status_t noisy(uint64_t arg) {
  fprintf(stderr, "noise %llu\n", (unsigned long long)arg);
  return (kfm__rsmi_status_t)arg;
}
static void *quiet_worker(void *arg) {
  for (uint64_t i = 0; i < 200; i++) {
    if (kfm__rsmi_quiet_call(noisy, i) != i) {
      *(int *)arg = 1;
    }
  }
  return NULL;
}
static void test_quiet_call_threads(void) {
  struct capture c;
  pthread_t t[4];
  int bad = 0;
  char *noise;
  capture_begin(&c);
  for (int i = 0; i < 4; i++) {
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, quiet_worker, &bad), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
  }
  fprintf(stderr, "end");
  noise = capture_end(&c);
  CU_ASSERT_EQUAL(bad, 0);
  EXPECT_STR(noise, "end");
  free(noise);
}

/* Fake loader and sysfs trees. */
static int dl_token, dl_closes, dl_open_calls;
static const char *dl_loads; /* the one library name that opens, or NULL */
static char dl_err[128];

static void *fake_dlopen(const char *file, int flags) {
  (void)flags;
  dl_open_calls++;
  if (dl_loads && strcmp(file, dl_loads) == 0) {
    return &dl_token;
  }
  snprintf(dl_err, sizeof dl_err, "%s: cannot open shared object file", file);
  return NULL;
}
static char *fake_dlerror(void) {
  return dl_err;
}
static int fake_dlclose(void *h) {
  CU_ASSERT_PTR_EQUAL(h, &dl_token);
  dl_closes++;
  return 0;
}
static void *fake_dlsym(void *h, const char *name) {
  static struct kfm__rsmi_syms s;
  void *p = NULL;
  CU_ASSERT_PTR_EQUAL(h, &dl_token);
  s = fake_syms();
  snprintf(dl_err, sizeof dl_err, "undefined symbol: %s", name);
#define MAP(str, field)                                                                            \
  if (strcmp(name, str) == 0) {                                                                    \
    memcpy(&p, (char *)&s + offsetof(struct kfm__rsmi_syms, field), sizeof p);                     \
  }
  MAP("rsmi_init", init)
  MAP("rsmi_shut_down", shut_down)
  MAP("rsmi_num_monitor_devices", num_monitor_devices)
  MAP("rsmi_status_string", status_string)
  MAP("rsmi_version_get", version_get)
  MAP("rsmi_dev_name_get", dev_name_get)
  MAP("rsmi_dev_pci_id_get", dev_pci_id_get)
  MAP("rsmi_dev_busy_percent_get", dev_busy_percent_get)
  MAP("rsmi_dev_memory_busy_percent_get", dev_memory_busy_percent_get)
  MAP("rsmi_dev_memory_usage_get", dev_memory_usage_get)
  MAP("rsmi_dev_memory_total_get", dev_memory_total_get)
  MAP("rsmi_dev_power_ave_get", dev_power_ave_get)
  MAP("rsmi_dev_gpu_clk_freq_get", dev_gpu_clk_freq_get)
  MAP("rsmi_dev_temp_metric_get", dev_temp_metric_get)
  /* rsmi_dev_pci_throughput_get deliberately absent */
#undef MAP
  return p;
}
static const struct kfm__rsmi_dl fake_dl = {
    .open = fake_dlopen, .sym = fake_dlsym, .error = fake_dlerror, .close = fake_dlclose};

/* Makes <root>/class/drm/<card>/device/vendor holding vendor. */
static void make_card(const char *root, const char *card, const char *vendor) {
  char p[1024];
  FILE *f;
  snprintf(p, sizeof p, "%s/class", root);
  mkdir(p, 0700);
  snprintf(p, sizeof p, "%s/class/drm", root);
  mkdir(p, 0700);
  snprintf(p, sizeof p, "%s/class/drm/%s", root, card);
  mkdir(p, 0700);
  snprintf(p, sizeof p, "%s/class/drm/%s/device", root, card);
  mkdir(p, 0700);
  snprintf(p, sizeof p, "%s/class/drm/%s/device/vendor", root, card);
  f = fopen(p, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fprintf(f, "%s\n", vendor);
  fclose(f);
}

static void remove_tree(const char *root) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0) {
    fprintf(stderr, "could not remove %s\n", root);
  }
}

static void test_dl_and_sysfs_paths(void) {
  char reason[512], want[512], root[] = "/tmp/kfm_rsmi_sysXXXXXX";
  struct session s;
  uint64_t out[32];
  fake_reset();
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(root));

  /* No library under any name: the last dlerror is quoted. */
  dl_loads = NULL;
  dl_open_calls = dl_closes = 0;
  CU_ASSERT_EQUAL(kfm__rsmi_setup_dl(&fake_dl, root, reason, sizeof reason), 0);
  EXPECT_STR(reason, "librocm_smi64 not found (dlopen of .so.7, .so.6, .so.5, .so.1 and "
                     "/opt/rocm/lib failed; last: /opt/rocm/lib/librocm_smi64.so: cannot open "
                     "shared object file)");
  CU_ASSERT_EQUAL(dl_open_calls, 5);

  /* Debian's soname loads; sysfs has no drm class. */
  dl_loads = "librocm_smi64.so.1";
  CU_ASSERT_EQUAL(kfm__rsmi_setup_dl(&fake_dl, root, reason, sizeof reason), 0);
  snprintf(want, sizeof want,
           "no AMD GPU or amdgpu driver (%s/class/drm: No such file or directory); rsmi_init "
           "not called",
           root);
  EXPECT_STR(reason, want);
  CU_ASSERT_EQUAL(fake_inits, 0);
  CU_ASSERT_EQUAL(dl_closes, 1);

  /* Only a non-AMD card (and a connector entry). */
  make_card(root, "card0", "0x1af4");
  make_card(root, "card0-Virtual-1", "0x1002"); /* not a card<N> entry: ignored */
  CU_ASSERT_EQUAL(kfm__rsmi_setup_dl(&fake_dl, root, reason, sizeof reason), 0);
  snprintf(want, sizeof want,
           "no AMD GPU or amdgpu driver (1 card in %s/class/drm, none with vendor 0x1002); "
           "rsmi_init not called",
           root);
  EXPECT_STR(reason, want);
  CU_ASSERT_EQUAL(fake_inits, 0);

  /* An AMD card: rsmi_init runs; the PCIe function is missing. */
  make_card(root, "card1", "0x1002");
  CU_ASSERT_EQUAL_FATAL(kfm__rsmi_setup_dl(&fake_dl, root, reason, sizeof reason), 1);
  EXPECT_STR(reason, "available: 2 AMD GPUs (librocm_smi64.so.1)");
  CU_ASSERT_EQUAL(fake_inits, 1);
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  usleep(50000);
  kfm__backend_rocm_smi.sample(s.state, out);
  CU_ASSERT_EQUAL(out[0], 42);
  CU_ASSERT_EQUAL(out[7], KFM_GPU_UNMEASURED);
  CU_ASSERT_EQUAL(out[8], KFM_GPU_UNMEASURED);
  {
    char *js = export_text(s.state);
    EXPECT_HAS(js, "\"library\":\"librocm_smi64.so.1\"");
    EXPECT_HAS(js, "\"unmeasured\":{\"pcie_tx\":\"function not exported by this ROCm SMI\","
                   "\"pcie_rx\":\"function not exported by this ROCm SMI\"}");
    free(js);
  }
  session_close(&s);
  kfm__rsmi_teardown();
  CU_ASSERT_EQUAL(fake_shutdowns, 1);
  CU_ASSERT_EQUAL(dl_closes, 3);
  remove_tree(root);
}

/* ---------------------------------------------------------------------- */
/* This machine.                                                           */

static char real_reason[512];
static int real_available;

static void test_real_probe_quiet(void) {
  struct capture c;
  char *noise;
  capture_begin(&c);
  real_available = kfm__backend_rocm_smi.probe(real_reason, sizeof real_reason);
  noise = capture_end(&c);
  printf("\n  rocm_smi probe here: %s: %s\n", real_available ? "available" : "unavailable",
         real_reason);
  EXPECT_STR(noise, "");
  free(noise);
  if (!real_available) {
    struct stat sb;
    void *h = NULL;
    for (size_t i = 0; kfm__rsmi_libraries[i] && h == NULL; i++) {
      h = dlopen(kfm__rsmi_libraries[i], RTLD_NOW | RTLD_LOCAL);
    }
    if (h == NULL) {
      CU_ASSERT_TRUE(strncmp(real_reason, "librocm_smi64 not found", 23) == 0);
    } else if (stat("/sys/class/drm", &sb) != 0) {
      EXPECT_STR(real_reason, "no AMD GPU or amdgpu driver (/sys/class/drm: No such file or "
                              "directory); rsmi_init not called");
    } else {
      CU_ASSERT_TRUE(strncmp(real_reason, "no AMD GPU or amdgpu driver (", 29) == 0 ||
                     strncmp(real_reason, "rsmi_init failed: ", 18) == 0);
    }
    if (h) {
      dlclose(h);
    }
  }
}

/* The real library's rsmi_init, reached through a fixture sysfs that shows
 * an AMD card, fails on this machine (the real /sys has none) and its
 * complaints must not reach stderr. */
static void test_real_init_quiet(void) {
  static const struct kfm__rsmi_dl real_dl = {
      .open = dlopen, .sym = dlsym, .error = dlerror, .close = dlclose};
  char root[] = "/tmp/kfm_rsmi_sysXXXXXX", reason[512], *noise;
  struct capture c;
  int ok;
  if (real_available) {
    printf("\n  skipped: this machine has an AMD GPU, rsmi_init would succeed\n");
    return;
  }
  if (strncmp(real_reason, "librocm_smi64 not found", 23) == 0) {
    printf("\n  skipped: %s\n", real_reason);
    return;
  }
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(root));
  make_card(root, "card0", "0x1002");
  capture_begin(&c);
  ok = kfm__rsmi_setup_dl(&real_dl, root, reason, sizeof reason);
  noise = capture_end(&c);
  printf("\n  real rsmi_init with a fixture AMD card: %s\n", reason);
  CU_ASSERT_EQUAL(ok, 0);
  EXPECT_STR(reason, "rsmi_init failed: 8 RSMI_STATUS_INIT_ERROR (no AMD GPU or amdgpu driver)");
  EXPECT_STR(noise, "");
  free(noise);
  kfm__rsmi_teardown();
  remove_tree(root);
}

static void test_real_gpu(void) {
  struct session s;
  uint64_t out[RSMI_TEST_MAX_OUT];
  char reason[512];
  if (!real_available) {
    printf("\n  skipped (needs an AMD GPU): %s\n", real_reason);
    return;
  }
  CU_ASSERT_EQUAL_FATAL(kfm__backend_rocm_smi.probe(reason, sizeof reason), 1);
  CU_ASSERT_EQUAL_FATAL(session_open(&s), 0);
  usleep(300000);
  kfm__backend_rocm_smi.sample(s.state, out);
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

#ifdef KFM_TEST_REGISTERED_ROCM_SMI
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
    if (strcmp(b.name, "rocm_smi") == 0) {
      seen = 1;
      printf("\n  session: rocm_smi %s: %s\n", b.enabled ? "enabled" : "disabled", b.reason);
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
#endif

int main(void) {
  static const struct kt_case cases[] = {
      {"values of two fake devices, one power read failing", test_values_two_devices},
      {"rsmi_frequencies_t of ROCm 5 and 6", test_clock_layouts},
      {"status names", test_status_names},
      {"rsmi_init error, stderr silenced", test_init_error_quiet},
      {"quiet call from several threads", test_quiet_call_threads},
      {"thread-only mutex flag, and a library refusing it", test_init_thread_only_mutex},
      {"silenced rsmi_init keeps other threads' stderr", test_quiet_call_keeps_other_threads},
      {"current socket power before the deprecated average", test_socket_power_first},
      {"dlopen, dlsym and sysfs pre-check", test_dl_and_sysfs_paths},
      {"real probe on this machine prints nothing", test_real_probe_quiet},
      {"real rsmi_init failure prints nothing", test_real_init_quiet},
      {"real GPU readings", test_real_gpu},
#ifdef KFM_TEST_REGISTERED_ROCM_SMI
      {"session lists the backend with its reason", test_session_lists_reason},
#endif
      {NULL, NULL},
  };
  return kt_run("rocm_smi", cases);
}

#endif /* KFM_HAVE_ROCM_SMI */
