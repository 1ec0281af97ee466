/*
 * hwloc.c - the "hwloc" backend: the machine's topology (packages, cores,
 * PUs, NUMA nodes, caches, PCI GPUs and their NUMA locality), the map from
 * an operating-system CPU number to its core / package / NUMA node, and
 * thread binding for the sampler.
 *
 * It produces no metric.  What it contributes is a topology summary in the
 * export (export_json), a status note ("2 packages, 16 cores, 32 PUs, 2 NUMA
 * nodes, 2 GPUs"), the PU map the engine uses to say where each sampled
 * thread ran (kfm__hwloc_pu_info, see kfm_hwloc.h) and bind_thread.
 *
 * Loading a topology costs 3.5 ms (46 ms cold, notes/floors.md) and its
 * answer is a property of the process, so it is loaded once per process
 * under pthread_once and never modified afterwards; sessions only read it.
 * The PU map is flattened at load into an array indexed by os_index so the
 * sampler's lookup is one bounds check and one load: no lock, no hwloc call.
 *
 * Where the topology comes from: KFM_HWLOC_XML (an XML file, e.g. a
 * lstopo --of xml capture of a GPU server, which is how tests inject GPUs on
 * machines that have none), KFM_HWLOC_SYNTHETIC (a synthetic description),
 * or hwloc's own discovery, which still honours hwloc's HWLOC_XMLFILE,
 * HWLOC_SYNTHETIC and HWLOC_FSROOT because nothing here overrides them in
 * that case.  A topology that does not describe this system (XML or
 * synthetic, unless HWLOC_THISSYSTEM=1) is reported as such in the note and
 * the export, and bind_thread refuses it: hwloc would otherwise "bind" with
 * a no-op and report success.
 *
 * GPUs are PCI devices of class 0x03xx (display / 3D controller) or PCI
 * devices carrying a GPU or co-processor OS device (CUDA, NVML, OpenCL,
 * RSMI), plus GPU / co-processor OS devices that hwloc could not place under
 * a PCI device (then without bus id).  Written against hwloc 2.x, whose OS
 * device types are an enum (hwloc 3 turns them into flags).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "kfm_hwloc.h"

#include <errno.h>
#include <hwloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#if HWLOC_API_VERSION < 0x00020000
#error "the hwloc backend needs hwloc 2.x"
#endif

/* File-local names take the prefix hwl_: hwloc_ is the library's own
 * namespace (and <hwloc/rename.h> turns its names into macros). */

#define HWL_MAX_OS_INDEX (1u << 20)

/* Where one PU sits; indexed by the PU's os_index. */
struct hwl_pu {
  int present; /* 0: no PU has this os_index */
  int core, package, numa;
};

struct hwl_gpu {
  hwloc_obj_t pci;   /* the PCI device, or NULL for an OS device without one */
  hwloc_obj_t osdev; /* its first GPU / co-processor OS device, or NULL */
};

/* The process's topology and what is derived from it.  Global because the
 * topology is a property of the process, loaded once (hwl_once) and
 * read-only afterwards; only kfm__hwloc_reload_for_tests rewrites
 * it, when no session uses the backend. */
static struct {
  hwloc_topology_t topo; /* NULL when loading failed */
  char reason[320];      /* "available" or why not */
  char source[192];      /* where the topology came from */
  int thissystem;
  struct hwl_pu *pus; /* [npu_slots] */
  unsigned npu_slots; /* highest PU os_index + 1 */
  unsigned npus;
  int npackages, ncores, nnuma;
  struct hwl_gpu *gpus; /* [ngpus] */
  unsigned ngpus;
} hwl_g;
static pthread_once_t hwl_once = PTHREAD_ONCE_INIT;

/* Per-session state: the text of the last bind_thread failure. */
struct hwl_state {
  char err[400]; /* room for the reason or source quoted in it */
};

/* ---------------------------------------------------------------------- */
/* Loading.                                                                */

static int hwl_is_gpu_osdev(hwloc_obj_t o) {
  if (o->type != HWLOC_OBJ_OS_DEVICE) {
    return 0;
  }
  if (o->attr->osdev.type != HWLOC_OBJ_OSDEV_GPU && o->attr->osdev.type != HWLOC_OBJ_OSDEV_COPROC) {
    return 0;
  }
  /* OpenCL also lists CPU devices (e.g. pocl) as co-processors. */
  const char *cl = hwloc_obj_get_info_by_name(o, "OpenCLDeviceType");
  return cl == NULL || strcmp(cl, "CPU") != 0;
}

/* First GPU / co-processor OS device directly below a PCI device. */
static hwloc_obj_t hwl_gpu_osdev_of(hwloc_obj_t pci) {
  for (hwloc_obj_t c = pci->io_first_child; c; c = c->next_sibling) {
    if (hwl_is_gpu_osdev(c)) {
      return c;
    }
  }
  return NULL;
}

static int hwl_has_pci_ancestor(hwloc_obj_t o) {
  for (hwloc_obj_t p = o->parent; p; p = p->parent) {
    if (p->type == HWLOC_OBJ_PCI_DEVICE) {
      return 1;
    }
  }
  return 0;
}

static int hwl_add_gpu(unsigned *cap, hwloc_obj_t pci, hwloc_obj_t osdev) {
  if (hwl_g.ngpus == *cap) {
    unsigned ncap = *cap ? *cap * 2 : 8;
    struct hwl_gpu *g = realloc(hwl_g.gpus, ncap * sizeof *g);
    if (g == NULL) {
      return -1;
    }
    hwl_g.gpus = g;
    *cap = ncap;
  }
  hwl_g.gpus[hwl_g.ngpus++] = (struct hwl_gpu){.pci = pci, .osdev = osdev};
  return 0;
}

static int hwl_find_gpus(hwloc_topology_t t) {
  unsigned cap = 0;
  for (hwloc_obj_t p = hwloc_get_next_pcidev(t, NULL); p; p = hwloc_get_next_pcidev(t, p)) {
    hwloc_obj_t os = hwl_gpu_osdev_of(p);
    if (((p->attr->pcidev.class_id >> 8) == 0x03 || os) && hwl_add_gpu(&cap, p, os) != 0) {
      return -1;
    }
  }
  for (hwloc_obj_t o = hwloc_get_next_osdev(t, NULL); o; o = hwloc_get_next_osdev(t, o)) {
    if (hwl_is_gpu_osdev(o) && !hwl_has_pci_ancestor(o) && hwl_add_gpu(&cap, NULL, o) != 0) {
      return -1;
    }
  }
  return 0;
}

/* Flattens the PU -> (core, package, NUMA) map into hwl_g.pus. */
static int hwl_build_pu_map(hwloc_topology_t t) {
  unsigned max = 0, n = 0;
  for (hwloc_obj_t pu = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_PU, NULL); pu;
       pu = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_PU, pu)) {
    max = pu->os_index > max ? pu->os_index : max;
    n++;
  }
  if (n == 0) {
    return 0;
  }
  /* The map is indexed by os_index: refuse an XML whose numbers would make
   * it absurdly large (Linux numbers CPUs below NR_CPUS, at most 8192). */
  if (max >= HWL_MAX_OS_INDEX) {
    errno = ERANGE;
    return -1;
  }
  hwl_g.pus = calloc((size_t)max + 1, sizeof *hwl_g.pus);
  if (hwl_g.pus == NULL) {
    return -1;
  }
  hwl_g.npu_slots = max + 1;
  hwl_g.npus = n;
  for (hwloc_obj_t pu = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_PU, NULL); pu;
       pu = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_PU, pu)) {
    struct hwl_pu *m = &hwl_g.pus[pu->os_index];
    hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_CORE, pu);
    hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_PACKAGE, pu);
    m->present = 1;
    m->core = core ? (int)core->logical_index : -1;
    m->package = pkg ? (int)pkg->logical_index : -1;
    /* NUMA nodes hang off the tree as memory children, so the PU's node is
     * the first (in logical order) whose cpuset holds it.  With several
     * local nodes (DRAM + HBM) that is the one hwloc lists first. */
    m->numa = -1;
    for (hwloc_obj_t nd = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, NULL); nd;
         nd = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, nd)) {
      if (nd->cpuset && hwloc_bitmap_isset(nd->cpuset, pu->os_index)) {
        m->numa = (int)nd->logical_index;
        break;
      }
    }
  }
  return 0;
}

static void hwl_unload(void) {
  if (hwl_g.topo) {
    hwloc_topology_destroy(hwl_g.topo);
  }
  free(hwl_g.pus);
  free(hwl_g.gpus);
  memset(&hwl_g, 0, sizeof hwl_g);
}

static int hwl_count(hwloc_topology_t t, hwloc_obj_type_t type) {
  int n = hwloc_get_nbobjs_by_type(t, type);
  return n < 0 ? 0 : n;
}

static void hwl_load(void) {
  hwloc_topology_t t = NULL;
  const char *xml = getenv("KFM_HWLOC_XML");
  const char *syn = getenv("KFM_HWLOC_SYNTHETIC");
  if (hwloc_topology_init(&t) != 0) {
    snprintf(hwl_g.reason, sizeof hwl_g.reason, "hwloc_topology_init failed: %s", strerror(errno));
    return;
  }
  /* Keep PCI devices of important classes (GPUs among them) and their OS
   * devices: the export says which NUMA node each GPU is close to. */
  hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  int rc = 0;
  if (xml && xml[0]) {
    snprintf(hwl_g.source, sizeof hwl_g.source, "KFM_HWLOC_XML=%s", xml);
    rc = hwloc_topology_set_xml(t, xml);
  } else if (syn && syn[0]) {
    snprintf(hwl_g.source, sizeof hwl_g.source, "KFM_HWLOC_SYNTHETIC=%s", syn);
    rc = hwloc_topology_set_synthetic(t, syn);
  } else if (getenv("HWLOC_XMLFILE")) {
    snprintf(hwl_g.source, sizeof hwl_g.source, "HWLOC_XMLFILE=%s", getenv("HWLOC_XMLFILE"));
  } else if (getenv("HWLOC_SYNTHETIC")) {
    snprintf(hwl_g.source, sizeof hwl_g.source, "HWLOC_SYNTHETIC=%s", getenv("HWLOC_SYNTHETIC"));
  } else {
    snprintf(hwl_g.source, sizeof hwl_g.source, "this system");
  }
  if (rc != 0) {
    snprintf(hwl_g.reason, sizeof hwl_g.reason, "%s: hwloc cannot use it (%s)", hwl_g.source,
             strerror(errno));
    hwloc_topology_destroy(t);
    return;
  }
  if (hwloc_topology_load(t) != 0) {
    snprintf(hwl_g.reason, sizeof hwl_g.reason, "hwloc_topology_load (%s) failed: %s", hwl_g.source,
             strerror(errno));
    hwloc_topology_destroy(t);
    return;
  }
  hwl_g.topo = t;
  hwl_g.thissystem = hwloc_topology_is_thissystem(t);
  hwl_g.npackages = hwl_count(t, HWLOC_OBJ_PACKAGE);
  hwl_g.ncores = hwl_count(t, HWLOC_OBJ_CORE);
  hwl_g.nnuma = hwl_count(t, HWLOC_OBJ_NUMANODE);
  if (hwl_build_pu_map(t) != 0 || hwl_find_gpus(t) != 0) {
    int e = errno;
    char src[sizeof hwl_g.source];
    snprintf(src, sizeof src, "%s", hwl_g.source);
    hwl_unload();
    snprintf(hwl_g.reason, sizeof hwl_g.reason, "the topology (%s) cannot be mapped: %s", src,
             e == ERANGE ? "a PU os_index is 1048576 or more" : "out of memory");
    return;
  }
  if (hwl_g.npus == 0) {
    char src[sizeof hwl_g.source];
    snprintf(src, sizeof src, "%s", hwl_g.source);
    hwl_unload();
    snprintf(hwl_g.reason, sizeof hwl_g.reason, "the topology (%s) has no processing unit", src);
    return;
  }
  snprintf(hwl_g.reason, sizeof hwl_g.reason, "available");
}

/* ---------------------------------------------------------------------- */
/* Lookups for the engine (kfm_hwloc.h).                                   */

int kfm__hwloc_pu_info(unsigned os_index, int *core, int *package, int *numa) {
  pthread_once(&hwl_once, hwl_load);
  const struct hwl_pu *m = NULL;
  if (hwl_g.topo && os_index < hwl_g.npu_slots && hwl_g.pus[os_index].present) {
    m = &hwl_g.pus[os_index];
  }
  if (core) {
    *core = m ? m->core : -1;
  }
  if (package) {
    *package = m ? m->package : -1;
  }
  if (numa) {
    *numa = m ? m->numa : -1;
  }
  if (m) {
    return 0;
  }
  return hwl_g.topo ? KFM_ERANGE : KFM_EBACKEND;
}

unsigned kfm__hwloc_npus(void) {
  pthread_once(&hwl_once, hwl_load);
  return hwl_g.npus;
}

const char *kfm__hwloc_errmsg(const void *state) {
  return state ? ((const struct hwl_state *)state)->err : "";
}

int kfm__hwloc_reload_for_tests(void) {
  /* hwloc unloads its plugins when its last topology is destroyed, and the
   * PCI plugin's libpciaccess with them: the memory its globals held then
   * looks leaked to LeakSanitizer.  One empty topology kept for the rest of
   * the process keeps the plugins loaded across reloads (tests only, which
   * is why this global exists). */
  static hwloc_topology_t pin;
  if (pin == NULL && hwloc_topology_init(&pin) != 0) {
    pin = NULL;
  }
  pthread_once(&hwl_once, hwl_load);
  hwl_unload();
  hwl_load();
  return hwl_g.topo ? 0 : KFM_EBACKEND;
}

/* ---------------------------------------------------------------------- */
/* JSON export.                                                            */

/* "0-15,32-47" of a cpuset, or null without one. */
static void hwl_json_set(FILE *f, hwloc_const_bitmap_t set) {
  char *txt = NULL;
  if (set == NULL || hwloc_bitmap_list_asprintf(&txt, set) < 0 || txt == NULL) {
    fputs("null", f);
  } else {
    kfm__json_str(f, txt);
  }
  free(txt);
}

static void hwl_json_int(FILE *f, int v) {
  if (v < 0) {
    fputs("null", f);
  } else {
    fprintf(f, "%d", v);
  }
}

static void hwl_json_numa_nodes(FILE *f, hwloc_topology_t t) {
  fputs(",\"numa_nodes\":[", f);
  int first = 1;
  for (hwloc_obj_t nd = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, NULL); nd;
       nd = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, nd)) {
    fprintf(f, "%s{\"index\":%u,\"os_index\":%u,\"memory_bytes\":", first ? "" : ",",
            nd->logical_index, nd->os_index);
    /* 0 means hwloc was not told the size: say nothing rather than 0. */
    if (nd->attr->numanode.local_memory) {
      fprintf(f, "%llu", (unsigned long long)nd->attr->numanode.local_memory);
    } else {
      fputs("null", f);
    }
    fputs(",\"cpuset\":", f);
    hwl_json_set(f, nd->cpuset);
    fputc('}', f);
    first = 0;
  }
  fputc(']', f);
}

struct hwl_cache_kind {
  unsigned level;
  int type; /* hwloc_obj_cache_type_t */
  unsigned long long size;
  unsigned count;
};

static int hwl_cache_cmp(const void *a, const void *b) {
  const struct hwl_cache_kind *x = a, *y = b;
  if (x->level != y->level) {
    return x->level < y->level ? -1 : 1;
  }
  if (x->type != y->type) {
    return x->type < y->type ? -1 : 1;
  }
  return x->size < y->size ? -1 : x->size > y->size;
}

static const char *hwl_cache_type_name(int type) {
  switch (type) {
  case HWLOC_OBJ_CACHE_DATA:
    return "data";
  case HWLOC_OBJ_CACHE_INSTRUCTION:
    return "instruction";
  default:
    return "unified";
  }
}

/* One entry per distinct (level, type, size), with how many caches share it. */
static void hwl_json_caches(FILE *f, hwloc_topology_t t) {
  struct hwl_cache_kind *k = NULL;
  unsigned n = 0, cap = 0;
  int depth = hwloc_topology_get_depth(t);
  for (int d = 0; d < depth; d++) {
    if (!hwloc_obj_type_is_cache(hwloc_get_depth_type(t, d))) {
      continue;
    }
    for (hwloc_obj_t c = hwloc_get_next_obj_by_depth(t, d, NULL); c;
         c = hwloc_get_next_obj_by_depth(t, d, c)) {
      unsigned i = 0;
      while (i < n &&
             !(k[i].level == c->attr->cache.depth && k[i].type == (int)c->attr->cache.type &&
               k[i].size == (unsigned long long)c->attr->cache.size)) {
        i++;
      }
      if (i == n) {
        if (n == cap) {
          unsigned ncap = cap ? cap * 2 : 8;
          struct hwl_cache_kind *nk = realloc(k, ncap * sizeof *nk);
          if (nk == NULL) {
            continue; /* out of memory: this cache goes uncounted */
          }
          k = nk;
          cap = ncap;
        }
        k[n++] = (struct hwl_cache_kind){.level = c->attr->cache.depth,
                                         .type = (int)c->attr->cache.type,
                                         .size = (unsigned long long)c->attr->cache.size};
      }
      k[i].count++;
    }
  }
  if (n) {
    qsort(k, n, sizeof *k, hwl_cache_cmp);
  }
  fputs(",\"caches\":[", f);
  for (unsigned i = 0; i < n; i++) {
    fprintf(f, "%s{\"level\":%u,\"type\":\"%s\",\"size_bytes\":", i ? "," : "", k[i].level,
            hwl_cache_type_name(k[i].type));
    if (k[i].size) {
      fprintf(f, "%llu", k[i].size);
    } else {
      fputs("null", f);
    }
    fprintf(f, ",\"count\":%u}", k[i].count);
  }
  fputc(']', f);
  free(k);
}

static const char *hwl_vendor_of_id(unsigned id) {
  switch (id) {
  case 0x10de:
    return "NVIDIA";
  case 0x1002:
  case 0x1022:
    return "AMD";
  case 0x8086:
    return "Intel";
  case 0x1a03:
    return "ASPEED";
  case 0x102b:
    return "Matrox";
  case 0x15ad:
    return "VMware";
  case 0x1af4:
    return "Red Hat (virtio)";
  case 0x1234:
    return "QEMU";
  default:
    return NULL;
  }
}

static const char *hwl_gpu_vendor(const struct hwl_gpu *g) {
  const char *v = g->pci ? hwl_vendor_of_id(g->pci->attr->pcidev.vendor_id) : NULL;
  if (v == NULL && g->pci) {
    v = hwloc_obj_get_info_by_name(g->pci, "PCIVendor");
  }
  if (v == NULL && g->osdev) {
    v = hwloc_obj_get_info_by_name(g->osdev, "GPUVendor");
    if (v && strstr(v, "NVIDIA")) {
      v = "NVIDIA";
    } else if (v && (strstr(v, "AMD") || strstr(v, "Advanced Micro Devices"))) {
      v = "AMD";
    }
  }
  return v ? v : "unknown";
}

static void hwl_json_gpu(FILE *f, hwloc_topology_t t, const struct hwl_gpu *g) {
  const char *name = g->osdev ? hwloc_obj_get_info_by_name(g->osdev, "GPUModel") : NULL;
  char namebuf[32];
  if (name == NULL && g->pci) {
    name = hwloc_obj_get_info_by_name(g->pci, "PCIDevice");
    if (name == NULL) {
      name = g->pci->name;
    }
    if (name == NULL) {
      snprintf(namebuf, sizeof namebuf, "PCI %04x:%04x", g->pci->attr->pcidev.vendor_id,
               g->pci->attr->pcidev.device_id);
      name = namebuf;
    }
  }
  if (name == NULL) {
    name = g->osdev->name ? g->osdev->name : "unknown";
  }
  fputs("{\"name\":", f);
  kfm__json_str(f, name);
  fputs(",\"vendor\":", f);
  kfm__json_str(f, hwl_gpu_vendor(g));
  if (g->pci) {
    const struct hwloc_pcidev_attr_s *a = &g->pci->attr->pcidev;
    fprintf(f,
            ",\"pci_bus_id\":\"%04x:%02x:%02x.%01x\",\"pci_vendor_id\":\"0x%04x\","
            "\"pci_device_id\":\"0x%04x\",\"pci_class\":\"0x%04x\"",
            a->domain, a->bus, a->dev, a->func, a->vendor_id, a->device_id, a->class_id);
  } else {
    fputs(",\"pci_bus_id\":null,\"pci_vendor_id\":null,\"pci_device_id\":null,\"pci_class\":null",
          f);
  }
  /* Locality: the closest ancestor in the CPU / memory tree and its NUMA
   * nodes.  One node: that is the GPU's node; several (a GPU attached to the
   * whole machine) or none: null, and local_cpuset says where it is close. */
  hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(t, g->pci ? g->pci : g->osdev);
  int numa = -1;
  if (anc && anc->nodeset && hwloc_bitmap_weight(anc->nodeset) == 1) {
    hwloc_obj_t nd =
        hwloc_get_numanode_obj_by_os_index(t, (unsigned)hwloc_bitmap_first(anc->nodeset));
    numa = nd ? (int)nd->logical_index : -1;
  }
  fputs(",\"numa_node\":", f);
  hwl_json_int(f, numa);
  fputs(",\"local_cpuset\":", f);
  hwl_json_set(f, anc ? anc->cpuset : NULL);
  fputs(",\"os_devices\":[", f);
  if (g->pci) {
    int first = 1;
    for (hwloc_obj_t c = g->pci->io_first_child; c; c = c->next_sibling) {
      if (c->type == HWLOC_OBJ_OS_DEVICE && c->name) {
        fputs(first ? "" : ",", f);
        kfm__json_str(f, c->name);
        first = 0;
      }
    }
  } else if (g->osdev->name) {
    kfm__json_str(f, g->osdev->name);
  }
  fputs("]}", f);
}

static void hwl_export_json(void *state, void *file) {
  (void)state;
  FILE *f = file;
  pthread_once(&hwl_once, hwl_load);
  hwloc_topology_t t = hwl_g.topo;
  if (t == NULL) {
    fputs("{\"available\":false,\"reason\":", f);
    kfm__json_str(f, hwl_g.reason);
    fputc('}', f);
    return;
  }
  fputs("{\"source\":", f);
  kfm__json_str(f, hwl_g.source);
  fprintf(f, ",\"this_system\":%s,\"packages\":%d,\"cores\":%d,\"pus\":%u",
          hwl_g.thissystem ? "true" : "false", hwl_g.npackages, hwl_g.ncores, hwl_g.npus);
  hwl_json_numa_nodes(f, t);
  hwl_json_caches(f, t);
  fputs(",\"gpus\":[", f);
  for (unsigned i = 0; i < hwl_g.ngpus; i++) {
    fputs(i ? "," : "", f);
    hwl_json_gpu(f, t, &hwl_g.gpus[i]);
  }
  fputs("],\"pu_map\":[", f);
  int first = 1;
  for (unsigned os = 0; os < hwl_g.npu_slots; os++) {
    const struct hwl_pu *m = &hwl_g.pus[os];
    if (!m->present) {
      continue;
    }
    fprintf(f, "%s[%u,", first ? "" : ",", os);
    hwl_json_int(f, m->core);
    fputc(',', f);
    hwl_json_int(f, m->package);
    fputc(',', f);
    hwl_json_int(f, m->numa);
    fputc(']', f);
    first = 0;
  }
  fputs("]}", f);
}

/* ---------------------------------------------------------------------- */
/* Ops.                                                                    */

static int hwl_probe(char *reason, size_t len) {
  pthread_once(&hwl_once, hwl_load);
  if (len) {
    snprintf(reason, len, "%s", hwl_g.reason);
  }
  return hwl_g.topo != NULL;
}

/* The cpu_numa hook: the export folds per-CPU histograms onto NUMA nodes. */
static int hwl_cpu_numa(void *state, unsigned cpu) {
  (void)state;
  int numa;
  return kfm__hwloc_pu_info(cpu, NULL, NULL, &numa) == 0 ? numa : -1;
}

static const char *hwl_plural(int n, const char *one, const char *many) {
  return n == 1 ? one : many;
}

static int hwl_open(void *state, struct kfm__backend_ctx *ctx) {
  (void)state;
  pthread_once(&hwl_once, hwl_load);
  if (hwl_g.topo == NULL) {
    if (ctx->errlen) {
      snprintf(ctx->errbuf, ctx->errlen, "%s", hwl_g.reason);
    }
    return KFM_EBACKEND;
  }
  ctx->n_transition = 0;
  ctx->transition = NULL;
  ctx->n_sample = 0;
  ctx->sample = NULL;
  if (ctx->notelen) {
    snprintf(ctx->note, ctx->notelen, "%d %s, %d %s, %u %s, %d %s, %u %s%s%s%s", hwl_g.npackages,
             hwl_plural(hwl_g.npackages, "package", "packages"), hwl_g.ncores,
             hwl_plural(hwl_g.ncores, "core", "cores"), hwl_g.npus,
             hwl_plural((int)hwl_g.npus, "PU", "PUs"), hwl_g.nnuma,
             hwl_plural(hwl_g.nnuma, "NUMA node", "NUMA nodes"), hwl_g.ngpus,
             hwl_plural((int)hwl_g.ngpus, "GPU", "GPUs"),
             hwl_g.thissystem ? "" : " (not this system: ", hwl_g.thissystem ? "" : hwl_g.source,
             hwl_g.thissystem ? "" : ")");
  }
  return 0;
}

static int hwl_bind_thread(void *state, int cpu) {
  struct hwl_state *st = state;
  char scratch[sizeof st->err];
  char *err = st ? st->err : scratch;
  err[0] = '\0';
  pthread_once(&hwl_once, hwl_load);
  hwloc_topology_t t = hwl_g.topo;
  if (t == NULL) {
    snprintf(err, sizeof scratch, "cannot bind to cpu %d: %s", cpu, hwl_g.reason);
    return KFM_EBACKEND;
  }
  hwloc_obj_t pu = cpu >= 0 ? hwloc_get_pu_obj_by_os_index(t, (unsigned)cpu) : NULL;
  if (pu == NULL) {
    char valid[128] = "";
    hwloc_bitmap_list_snprintf(valid, sizeof valid, hwloc_topology_get_allowed_cpuset(t));
    snprintf(err, sizeof scratch, "cpu %d: no such processing unit (valid: %s)", cpu, valid);
    return KFM_EINVAL;
  }
  if (!hwl_g.thissystem) {
    snprintf(err, sizeof scratch,
             "cannot bind to cpu %d: the topology (%s) does not describe this system", cpu,
             hwl_g.source);
    return KFM_EBACKEND;
  }
  if (hwloc_set_cpubind(t, pu->cpuset, HWLOC_CPUBIND_THREAD) != 0) {
    snprintf(err, sizeof scratch, "cpu %d: hwloc_set_cpubind failed: %s", cpu, strerror(errno));
    return KFM_EIO;
  }
  return 0;
}

const struct kfm__backend kfm__backend_hwloc = {
    .abi = KFM_BACKEND_ABI,
    .name = "hwloc",
    .caps = 0,
    .min_level = KFM_LEVEL_COMPREHENSIVE,
    .state_size = sizeof(struct hwl_state),
    .thread_state_size = 0,
    .probe = hwl_probe,
    .init = NULL,
    .open = hwl_open,
    .thread_open = NULL,
    .thread_close = NULL,
    .read = NULL,
    .sample = NULL,
    .close = NULL,
    .enter = NULL,
    .exit = NULL,
    .flush = NULL,
    .export_json = hwl_export_json,
    .bind_thread = hwl_bind_thread,
    .cpu_numa = hwl_cpu_numa,
};
