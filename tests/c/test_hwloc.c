/*
 * test_hwloc.c - the hwloc topology backend, driven through its ops table
 * (kfm__backend_hwloc) and its internal lookups (kfm_hwloc.h):
 *
 *   - the real machine: as many PUs as online CPUs (or as the cgroup
 *     allows), every CPU this process may run on has a core, package and
 *     NUMA node, two CPUs share a core exactly when sysfs says they are
 *     hyper-thread siblings, the export is valid JSON with 0 GPUs;
 *   - a synthetic machine (KFM_HWLOC_SYNTHETIC) with exact counts and the
 *     exact core / package / NUMA node of PU 9;
 *   - tests/fixtures/hwloc/two_gpus.xml (KFM_HWLOC_XML, and hwloc's own
 *     HWLOC_XMLFILE): 2 NVIDIA GPUs with their bus ids and NUMA nodes 0 and
 *     1, read with libxml2 and with hwloc's built-in parser;
 *   - a topology that cannot be loaded: probe and open say why;
 *   - bind_thread to each allowed CPU (sched_getcpu agrees), to an invalid
 *     CPU (KFM_EINVAL naming it and the valid range) and on a topology that
 *     is not this system (refused instead of hwloc's silent no-op).
 *
 * The topology is loaded once per process; tests that need another one set
 * the environment and call kfm__hwloc_reload_for_tests(), then restore the
 * real machine.  The first test runs the first load from several threads at
 * once (for ThreadSanitizer).  JSON is checked with Python's json module
 * when python3 exists, and with exact substrings always.
 *
 * Fixture: $KFM_TEST_FIXTURES/hwloc/two_gpus.xml.  It was produced with
 * hwloc 2.9's lstopo --of xml from the synthetic description
 * "package:2 [numa(memory=68719476736)] l3:1(size=33554432) l2:8(size=1048576)
 * l1d:1(size=32768) core:1 pu:2", to which was added, under each package, a
 * host bridge -> PCI bridge -> NVIDIA 3D controller (class 0x0302, 10de:1db4)
 * carrying a CUDA (co-processor) and an NVML (GPU) OS device, in the form
 * lstopo exports real GPUs; package 0 also has an Ethernet device, which
 * must not count as a GPU.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "kfm_test.h"

#ifdef KFM_HAVE_HWLOC
#include "hwloc/kfm_hwloc.h"

#define HT_MAXCPU 4096

static const char *fixtures;
static char tmpdir[256];
static int have_python;

/* Per-session state as the core gives it: zeroed, state_size bytes. */
static void *ht_state(void) {
  void *st = calloc(1, kfm__backend_hwloc.state_size);
  CU_ASSERT_PTR_NOT_NULL_FATAL(st);
  return st;
}

/* The export of the current topology as a string (caller frees). */
static char *ht_export(void) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  void *st = ht_state();
  kfm__backend_hwloc.export_json(st, f);
  fclose(f);
  free(st);
  return buf;
}

/* Runs a Python assertion script on the export (d is the parsed object);
 * returns its exit status, or 0 without python3. */
static int ht_python_check(const char *json, const char *script) {
  if (!have_python) {
    return 0;
  }
  char path[300], cmd[4096];
  snprintf(path, sizeof path, "%s/export.json", tmpdir);
  FILE *f = fopen(path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs(json, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); %s' %s",
           script, path);
  int rc = system(cmd);
  if (rc != 0) {
    fprintf(stderr, "\nexport failing the check:\n%s\n", json);
  }
  return rc;
}

/* Open through the ops table; returns its code, note and error in buffers. */
static int ht_open(char *note, char *err) {
  note[0] = err[0] = '\0';
  struct kfm__backend_ctx ctx = {.level = KFM_LEVEL_COMPREHENSIVE,
                                 .proc_root = "",
                                 .events = "",
                                 .errbuf = err,
                                 .errlen = 200,
                                 .note = note,
                                 .notelen = 200};
  void *st = ht_state();
  int rc = kfm__backend_hwloc.open(st, &ctx);
  if (rc == 0) {
    CU_ASSERT_EQUAL(ctx.n_transition, 0);
    CU_ASSERT_EQUAL(ctx.n_sample, 0);
  }
  free(st);
  return rc;
}

static void ht_use(const char *xml, const char *synthetic) {
  unsetenv("KFM_HWLOC_XML");
  unsetenv("KFM_HWLOC_SYNTHETIC");
  if (xml) {
    setenv("KFM_HWLOC_XML", xml, 1);
  }
  if (synthetic) {
    setenv("KFM_HWLOC_SYNTHETIC", synthetic, 1);
  }
}

/* Back to this machine for the tests that follow. */
static void ht_restore(void) {
  ht_use(NULL, NULL);
  unsetenv("HWLOC_XMLFILE");
  unsetenv("HWLOC_LIBXML");
  CU_ASSERT_EQUAL(kfm__hwloc_reload_for_tests(), 0);
}

/* "0-1,4" of the PUs kfm__hwloc_pu_info knows, as hwloc prints lists. */
static void ht_pu_list(char *out, size_t len) {
  size_t n = 0;
  out[0] = '\0';
  for (int c = 0; c < HT_MAXCPU; c++) {
    if (kfm__hwloc_pu_info((unsigned)c, NULL, NULL, NULL) != 0) {
      continue;
    }
    int e = c;
    while (e + 1 < HT_MAXCPU && kfm__hwloc_pu_info((unsigned)e + 1, NULL, NULL, NULL) == 0) {
      e++;
    }
    n += (size_t)snprintf(out + n, len - n, e > c ? "%s%d-%d" : "%s%d", n ? "," : "", c, e);
    c = e;
  }
}

/* ---------------------------------------------------------------------- */

struct ht_first {
  unsigned npus;
  int rc, core;
};

static void *ht_first_thread(void *arg) {
  struct ht_first *r = arg;
  r->rc = kfm__hwloc_pu_info(0, &r->core, NULL, NULL);
  r->npus = kfm__hwloc_npus();
  return NULL;
}

/* Must run first: the process's one load, raced by four threads. */
static void test_first_load_concurrent(void) {
  pthread_t th[4];
  struct ht_first r[4];
  for (int i = 0; i < 4; i++) {
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, ht_first_thread, &r[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
  }
  for (int i = 0; i < 4; i++) {
    CU_ASSERT_EQUAL(r[i].npus, r[0].npus);
    CU_ASSERT_TRUE(r[i].npus > 0);
    CU_ASSERT_EQUAL(r[i].rc, r[0].rc);
    CU_ASSERT_EQUAL(r[i].core, r[0].core);
  }
}

static void test_ops_table(void) {
  const struct kfm__backend *b = &kfm__backend_hwloc;
  CU_ASSERT_EQUAL(b->abi, KFM_BACKEND_ABI);
  CU_ASSERT_STRING_EQUAL(b->name, "hwloc");
  CU_ASSERT_EQUAL(b->caps, 0u);
  CU_ASSERT_EQUAL(b->min_level, KFM_LEVEL_COMPREHENSIVE);
  CU_ASSERT_PTR_NULL(b->read);
  CU_ASSERT_PTR_NULL(b->sample);
  CU_ASSERT_PTR_NOT_NULL(b->export_json);
  CU_ASSERT_PTR_NOT_NULL(b->bind_thread);
  char reason[256];
  CU_ASSERT_EQUAL(b->probe(reason, sizeof reason), 1);
  CU_ASSERT_STRING_EQUAL(reason, "available");
}

static void test_real_machine(void) {
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  cpu_set_t aff;
  CPU_ZERO(&aff);
  CU_ASSERT_EQUAL_FATAL(sched_getaffinity(0, sizeof aff, &aff), 0);
  unsigned n = kfm__hwloc_npus();
  /* hwloc keeps the PUs the cgroup allows: all online ones, or (in a
   * restricted container) those this process may use. */
  if (!(n == (unsigned)online || n == (unsigned)CPU_COUNT(&aff))) {
    fprintf(stderr, "\nnpus %u, online %ld, affinity %d\n", n, online, CPU_COUNT(&aff));
  }
  CU_ASSERT_TRUE(n == (unsigned)online || n == (unsigned)CPU_COUNT(&aff));

  unsigned known = 0;
  for (int c = 0; c < HT_MAXCPU; c++) {
    int core, pkg, numa;
    int rc = kfm__hwloc_pu_info((unsigned)c, &core, &pkg, &numa);
    if (rc == 0) {
      known++;
      CU_ASSERT_TRUE(core >= 0 && pkg >= 0 && numa >= 0);
    } else {
      CU_ASSERT_EQUAL(rc, KFM_ERANGE);
      CU_ASSERT_TRUE(core == -1 && pkg == -1 && numa == -1);
      CU_ASSERT_FALSE(c < CPU_SETSIZE && CPU_ISSET(c, &aff)); /* every usable CPU is known */
    }
  }
  CU_ASSERT_EQUAL(known, n);

  /* Two CPUs share a core exactly when the kernel lists them as thread
   * siblings (sysfs, read independently of hwloc). */
  for (int i = 0; i < CPU_SETSIZE; i++) {
    char path[128], line[256];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", i);
    FILE *f = CPU_ISSET(i, &aff) ? fopen(path, "r") : NULL;
    if (f == NULL) {
      continue;
    }
    if (fgets(line, sizeof line, f) == NULL) {
      line[0] = '\0';
    }
    fclose(f);
    cpu_set_t sib;
    CPU_ZERO(&sib);
    for (char *p = line; *p && *p != '\n';) {
      long a = strtol(p, &p, 10), e = a;
      if (*p == '-') {
        e = strtol(p + 1, &p, 10);
      }
      for (long k = a; k <= e && k < CPU_SETSIZE; k++) {
        CPU_SET((int)k, &sib);
      }
      if (*p == ',') {
        p++;
      }
    }
    int ci, cj;
    CU_ASSERT_EQUAL_FATAL(kfm__hwloc_pu_info((unsigned)i, &ci, NULL, NULL), 0);
    for (int j = 0; j < CPU_SETSIZE; j++) {
      if (CPU_ISSET(j, &aff) && kfm__hwloc_pu_info((unsigned)j, &cj, NULL, NULL) == 0) {
        CU_ASSERT_EQUAL(ci == cj, CPU_ISSET(j, &sib) != 0);
      }
    }
  }

  char note[200], err[200], want[200];
  CU_ASSERT_EQUAL(ht_open(note, err), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(note, "0 GPUs"));
  snprintf(want, sizeof want, ", %u PU%s, ", n, n == 1 ? "" : "s");
  CU_ASSERT_PTR_NOT_NULL(strstr(note, want));
  CU_ASSERT_PTR_NULL(strstr(note, "not this system"));

  char *json = ht_export();
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"source\":\"this system\",\"this_system\":true"));
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"gpus\":[]"));
  char script[600];
  snprintf(script, sizeof script,
           "assert d[\"pus\"]==%u and len(d[\"pu_map\"])==%u and d[\"gpus\"]==[]; "
           "assert d[\"packages\"]>=1 and d[\"cores\"]>=1 and len(d[\"numa_nodes\"])>=1; "
           "assert all(m[1] is not None and m[2] is not None and m[3] is not None for m in "
           "d[\"pu_map\"]); "
           "assert sum(c[\"count\"] for c in d[\"caches\"] if c[\"level\"]==1)>=1",
           n, n);
  CU_ASSERT_EQUAL(ht_python_check(json, script), 0);
  free(json);
}

static void test_synthetic(void) {
  ht_use(NULL, "package:2 numa:2 core:4 pu:2");
  CU_ASSERT_EQUAL_FATAL(kfm__hwloc_reload_for_tests(), 0);
  CU_ASSERT_EQUAL(kfm__hwloc_npus(), 32);
  /* PU 9 is the second PU of core 4 (2 PUs per core), in package 0
   * (8 cores per package) and NUMA node 1 (4 cores per node). */
  int core, pkg, numa;
  CU_ASSERT_EQUAL(kfm__hwloc_pu_info(9, &core, &pkg, &numa), 0);
  CU_ASSERT_EQUAL(core, 4);
  CU_ASSERT_EQUAL(pkg, 0);
  CU_ASSERT_EQUAL(numa, 1);
  CU_ASSERT_EQUAL(kfm__hwloc_pu_info(31, &core, &pkg, &numa), 0);
  CU_ASSERT_EQUAL(core, 15);
  CU_ASSERT_EQUAL(pkg, 1);
  CU_ASSERT_EQUAL(numa, 3);
  CU_ASSERT_EQUAL(kfm__hwloc_pu_info(32, &core, &pkg, &numa), KFM_ERANGE);
  CU_ASSERT_EQUAL(core, -1);

  char note[200], err[200];
  CU_ASSERT_EQUAL(ht_open(note, err), 0);
  CU_ASSERT_STRING_EQUAL(note,
                         "2 packages, 16 cores, 32 PUs, 4 NUMA nodes, 0 GPUs (not this system: "
                         "KFM_HWLOC_SYNTHETIC=package:2 numa:2 core:4 pu:2)");

  char *json = ht_export();
  CU_ASSERT_PTR_NOT_NULL(
      strstr(json, "\"this_system\":false,\"packages\":2,\"cores\":16,\"pus\":32,"));
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"caches\":[],\"gpus\":[]"));
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "[9,4,0,1]"));
  CU_ASSERT_EQUAL(ht_python_check(json,
                                  "assert (d[\"packages\"],d[\"cores\"],d[\"pus\"])==(2,16,32); "
                                  "assert [n[\"cpuset\"] for n in d[\"numa_nodes\"]]=="
                                  "[\"0-7\",\"8-15\",\"16-23\",\"24-31\"]; "
                                  "assert [n[\"index\"] for n in d[\"numa_nodes\"]]==[0,1,2,3]; "
                                  "assert d[\"pu_map\"][9]==[9,4,0,1] and len(d[\"pu_map\"])==32; "
                                  "assert d[\"pu_map\"]==[[p,p//2,p//16,p//8] for p in range(32)]"),
                  0);
  free(json);

  /* Not this system: binding would be hwloc's silent no-op, so it is refused. */
  void *st = ht_state();
  CU_ASSERT_EQUAL(kfm__backend_hwloc.bind_thread(st, 1), KFM_EBACKEND);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm__hwloc_errmsg(st), "does not describe this system"));
  CU_ASSERT_EQUAL(kfm__backend_hwloc.bind_thread(st, 32), KFM_EINVAL);
  CU_ASSERT_STRING_EQUAL(kfm__hwloc_errmsg(st), "cpu 32: no such processing unit (valid: 0-31)");
  free(st);
  ht_restore();
}

/* Exact checks of the two-GPU fixture's export. */
static void ht_check_two_gpus(const char *source) {
  CU_ASSERT_EQUAL(kfm__hwloc_npus(), 32);
  char note[200], err[200], want[300];
  CU_ASSERT_EQUAL(ht_open(note, err), 0);
  snprintf(want, sizeof want,
           "2 packages, 16 cores, 32 PUs, 2 NUMA nodes, 2 GPUs (not this system: %s)", source);
  CU_ASSERT_STRING_EQUAL(note, want);
  int core, pkg, numa;
  CU_ASSERT_EQUAL(kfm__hwloc_pu_info(17, &core, &pkg, &numa), 0);
  CU_ASSERT_EQUAL(core, 8);
  CU_ASSERT_EQUAL(pkg, 1);
  CU_ASSERT_EQUAL(numa, 1);

  char *json = ht_export();
  CU_ASSERT_PTR_NOT_NULL(strstr(
      json,
      "{\"name\":\"Tesla V100-PCIE-16GB\",\"vendor\":\"NVIDIA\",\"pci_bus_id\":\"0000:3b:00.0\","
      "\"pci_vendor_id\":\"0x10de\",\"pci_device_id\":\"0x1db4\",\"pci_class\":\"0x0302\","
      "\"numa_node\":0,\"local_cpuset\":\"0-15\",\"os_devices\":[\"cuda0\",\"nvml0\"]}"));
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"pci_bus_id\":\"0000:af:00.0\""));
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"numa_node\":1,\"local_cpuset\":\"16-31\""));
  CU_ASSERT_PTR_NULL(strstr(json, "eth0")); /* the Ethernet device is no GPU */
  CU_ASSERT_EQUAL(
      ht_python_check(
          json,
          "g=d[\"gpus\"]; assert len(g)==2; "
          "assert [x[\"pci_bus_id\"] for x in g]==[\"0000:3b:00.0\",\"0000:af:00.0\"]; "
          "assert [x[\"numa_node\"] for x in g]==[0,1]; "
          "assert all(x[\"vendor\"]==\"NVIDIA\" and x[\"pci_vendor_id\"]==\"0x10de\" and "
          "x[\"pci_device_id\"]==\"0x1db4\" and x[\"name\"]==\"Tesla V100-PCIE-16GB\" for x in g); "
          "assert [x[\"os_devices\"] for x in g]==[[\"cuda0\",\"nvml0\"],[\"cuda1\",\"nvml1\"]]; "
          "assert (d[\"packages\"],d[\"cores\"],d[\"pus\"])==(2,16,32); "
          "assert d[\"numa_nodes\"]==[{\"index\":0,\"os_index\":0,\"memory_bytes\":68719476736,"
          "\"cpuset\":\"0-15\"},{\"index\":1,\"os_index\":1,\"memory_bytes\":68719476736,"
          "\"cpuset\":\"16-31\"}]; "
          "assert "
          "d[\"caches\"]==[{\"level\":1,\"type\":\"data\",\"size_bytes\":32768,\"count\":16},"
          "{\"level\":2,\"type\":\"unified\",\"size_bytes\":1048576,\"count\":16},"
          "{\"level\":3,\"type\":\"unified\",\"size_bytes\":33554432,\"count\":2}]"),
      0);
  free(json);
}

static void test_xml_two_gpus(void) {
  char xml[512], source[600];
  snprintf(xml, sizeof xml, "%s/hwloc/two_gpus.xml", fixtures);
  snprintf(source, sizeof source, "KFM_HWLOC_XML=%s", xml);
  /* Once with whichever XML parser hwloc picks (libxml2 when its plugin is
   * installed), once with its built-in one, which is all a machine without
   * libhwloc-plugins has. */
  for (int builtin = 0; builtin < 2; builtin++) {
    if (builtin) {
      setenv("HWLOC_LIBXML", "0", 1);
    }
    ht_use(xml, NULL);
    CU_ASSERT_EQUAL_FATAL(kfm__hwloc_reload_for_tests(), 0);
    ht_check_two_gpus(source);
  }
  /* hwloc's own variable keeps working when KFM_HWLOC_* are unset. */
  ht_use(NULL, NULL);
  setenv("HWLOC_XMLFILE", xml, 1);
  snprintf(source, sizeof source, "HWLOC_XMLFILE=%s", xml);
  CU_ASSERT_EQUAL_FATAL(kfm__hwloc_reload_for_tests(), 0);
  ht_check_two_gpus(source);
  ht_restore();
}

static void test_load_failure(void) {
  ht_use("/nonexistent-kfm/topo.xml", NULL);
  CU_ASSERT_EQUAL(kfm__hwloc_reload_for_tests(), KFM_EBACKEND);
  char reason[256];
  CU_ASSERT_EQUAL(kfm__backend_hwloc.probe(reason, sizeof reason), 0);
  CU_ASSERT_STRING_EQUAL(reason, "KFM_HWLOC_XML=/nonexistent-kfm/topo.xml: hwloc cannot use it "
                                 "(No such file or directory)");
  char note[200], err[200];
  CU_ASSERT_EQUAL(ht_open(note, err), KFM_EBACKEND);
  CU_ASSERT_STRING_EQUAL(err, reason);
  CU_ASSERT_EQUAL(kfm__hwloc_npus(), 0);
  int core = 7;
  CU_ASSERT_EQUAL(kfm__hwloc_pu_info(0, &core, NULL, NULL), KFM_EBACKEND);
  CU_ASSERT_EQUAL(core, -1);
  char *json = ht_export();
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "{\"available\":false,\"reason\":\"KFM_HWLOC_XML="));
  CU_ASSERT_EQUAL(ht_python_check(json, "assert d[\"available\"] is False"), 0);
  free(json);
  void *st = ht_state();
  CU_ASSERT_EQUAL(kfm__backend_hwloc.bind_thread(st, 0), KFM_EBACKEND);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm__hwloc_errmsg(st), "cannot bind to cpu 0"));
  free(st);

  ht_use(NULL, "bogus:3");
  CU_ASSERT_EQUAL(kfm__hwloc_reload_for_tests(), KFM_EBACKEND);
  CU_ASSERT_EQUAL(kfm__backend_hwloc.probe(reason, sizeof reason), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(reason, "KFM_HWLOC_SYNTHETIC=bogus:3: hwloc cannot use it"));
  ht_restore();
}

struct ht_bind {
  void *st;
  int cpu, rc, ran_on, nallowed;
};

static void *ht_bind_thread(void *arg) {
  struct ht_bind *b = arg;
  b->rc = kfm__backend_hwloc.bind_thread(b->st, b->cpu);
  /* sched_getcpu says where the thread runs now; the affinity mask says
   * where it may run from now on. */
  b->ran_on = sched_getcpu();
  cpu_set_t set;
  CPU_ZERO(&set);
  b->nallowed =
      sched_getaffinity(0, sizeof set, &set) == 0 && CPU_ISSET(b->cpu, &set) ? CPU_COUNT(&set) : -1;
  return NULL;
}

static void test_bind_thread(void) {
  cpu_set_t aff;
  CPU_ZERO(&aff);
  CU_ASSERT_EQUAL_FATAL(sched_getaffinity(0, sizeof aff, &aff), 0);
  void *st = ht_state();
  int bound = 0;
  /* Each CPU this process may use, cpu 0 first on this machine, from a
   * fresh thread so the test's own thread stays unbound. */
  for (int c = 0; c < CPU_SETSIZE && bound < 8; c++) {
    if (!CPU_ISSET(c, &aff)) {
      continue;
    }
    struct ht_bind b = {.st = st, .cpu = c};
    pthread_t th;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, ht_bind_thread, &b), 0);
    pthread_join(th, NULL);
    if (b.rc != 0) {
      fprintf(stderr, "\nbind_thread(%d): %s\n", c, kfm__hwloc_errmsg(st));
    }
    CU_ASSERT_EQUAL(b.rc, 0);
    CU_ASSERT_EQUAL(b.ran_on, c);
    CU_ASSERT_EQUAL(b.nallowed, 1);
    CU_ASSERT_STRING_EQUAL(kfm__hwloc_errmsg(st), "");
    bound++;
  }
  CU_ASSERT_TRUE(bound >= 1);

  char valid[256], want[400];
  ht_pu_list(valid, sizeof valid);
  snprintf(want, sizeof want, "cpu %d: no such processing unit (valid: %s)", HT_MAXCPU, valid);
  CU_ASSERT_EQUAL(kfm__backend_hwloc.bind_thread(st, HT_MAXCPU), KFM_EINVAL);
  CU_ASSERT_STRING_EQUAL(kfm__hwloc_errmsg(st), want);
  CU_ASSERT_EQUAL(kfm__backend_hwloc.bind_thread(st, -1), KFM_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm__hwloc_errmsg(st), "cpu -1: no such processing unit"));
  free(st);
}

#ifdef KFM_TEST_REGISTERED_HWLOC
/* Through a session once the backend is in the builtin list. */
static void test_session(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=comprehensive,rate=off"));
  char *json = NULL;
  KT_OK(s, kfm_session_backend_json(s, "hwloc", &json));
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"this_system\":true"));
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"pu_map\":[["));
  kfm_free(json);
  kfm_report_t *r;
  KT_OK(s, kfm_session_report(s, &r));
  int found = 0;
  for (size_t i = 0; i < kfm_report_backend_count(r); i++) {
    kfm_backend_status_t b;
    KT_OK(s, kfm_report_backend(r, i, &b));
    if (strcmp(b.name, "hwloc") == 0) {
      found = 1;
      CU_ASSERT_EQUAL(b.enabled, 1);
      CU_ASSERT_PTR_NOT_NULL(strstr(b.reason, "available; "));
      CU_ASSERT_PTR_NOT_NULL(strstr(b.reason, " GPUs"));
    }
  }
  CU_ASSERT_TRUE(found);
  kfm_report_free(r);
  kfm_session_destroy(s);
}
#endif

int main(void) {
  fixtures = getenv("KFM_TEST_FIXTURES");
#ifdef KFM_TEST_FIXTURES_DEFAULT
  if (fixtures == NULL || fixtures[0] == '\0') {
    fixtures = KFM_TEST_FIXTURES_DEFAULT;
  }
#endif
  if (fixtures == NULL || fixtures[0] == '\0') {
    fprintf(stderr, "test_hwloc: KFM_TEST_FIXTURES is not set; set it to the tests/fixtures "
                    "directory of the source tree\n");
    return 1;
  }
  /* Environment that would change which topology is loaded is the test's
   * to set, not the caller's. */
  unsetenv("KFM_HWLOC_XML");
  unsetenv("KFM_HWLOC_SYNTHETIC");
  unsetenv("HWLOC_XMLFILE");
  unsetenv("HWLOC_SYNTHETIC");
  unsetenv("HWLOC_FSROOT");
  unsetenv("HWLOC_COMPONENTS");
  unsetenv("HWLOC_THISSYSTEM");
  unsetenv("HWLOC_LIBXML");
  snprintf(tmpdir, sizeof tmpdir, "/tmp/kfm_test_hwloc.XXXXXX");
  if (mkdtemp(tmpdir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  have_python = system("command -v python3 >/dev/null 2>&1") == 0;
  if (!have_python) {
    printf("test_hwloc: python3 not found; JSON checked by substrings only\n");
  }
  static const struct kt_case cases[] = {
      {"first load, concurrent", test_first_load_concurrent},
      {"ops table and probe", test_ops_table},
      {"real machine", test_real_machine},
      {"synthetic topology", test_synthetic},
      {"XML fixture with two GPUs", test_xml_two_gpus},
      {"load failure", test_load_failure},
      {"bind_thread", test_bind_thread},
#ifdef KFM_TEST_REGISTERED_HWLOC
      {"session", test_session},
#endif
      {NULL, NULL},
  };
  int rc = kt_run("hwloc", cases);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) {
    fprintf(stderr, "test_hwloc: could not remove %s\n", tmpdir);
  }
  return rc;
}

#else /* !KFM_HAVE_HWLOC */

int main(void) {
  printf("test_hwloc: skipped: kfm was built without hwloc (KFM_WITH_HWLOC off or libhwloc-dev "
         "missing)\n");
  return 77;
}

#endif
