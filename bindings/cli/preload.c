/*
 * preload.c - libkfm_preload.so, loaded by "kfm run" through LD_PRELOAD into
 * an unmodified program.
 *
 * At load (constructor) it creates a session from KFM_CONFIG, starts it,
 * makes it the process's default session (kfm_session_default, so API
 * calls and libkfm_mpi land in it) and enters the root node, named after
 * the program.  At exit (an atexit handler registered after the session,
 * so it runs before the engine's own flush) it leaves the root node when
 * exit() runs on the main thread, and stops the session, which writes
 * output=.  exit() from another thread stops it too; the root activation,
 * still open on the main thread, is then exported as active (kfm report
 * counts it up to the end of the run).  SIGTERM/SIGINT: kfm run sets
 * flush_signals=on, whose handler writes the file marked truncated.
 *
 * Only the process kfm run started is profiled (KFM_RUN_PID, the pid the
 * program keeps across exec): programs it spawns inherit LD_PRELOAD but
 * would otherwise write over its output.  For the same reason KFM_CONFIG
 * (kfm run's) is set back to the user's own once the session exists.
 *
 * OpenMP regions (LLVM libomp, or any OMPT runtime): the engine's OMPT tool
 * (libkfm's ompt_start_tool) attributes workers to the node the encountering
 * thread is in.  This library's ompt_start_tool comes first in symbol
 * lookup (preloaded), starts the engine's tool and wraps its parallel-begin
 * and -end callbacks: the encountering thread enters a node named after the
 * region's code address before the engine's callback reads its current
 * node, so the workers are attributed to the region node; it leaves it
 * after parallel-end.  The name comes from dladdr, plus the ELF symbol
 * table of the file when the symbol is not exported (an executable's main
 * is not) and, where the program has debug information and elfutils'
 * libdw.so.1 is installed, the source line of the region's call into the
 * runtime: "omp parallel @ main (omp_regions.c:31)"; without it
 * "omp parallel @ main+0x4f (omp_regions)", or the offset in the module
 * when no symbol is found ("addr2line -f -e PROGRAM" resolves either).
 */
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kfm/kfm.h"

/* The process's profile: one per process, as the preload is. */
static kfm_session_t *pl_s;
static kfm_node_id_t pl_root;
static pid_t pl_main_tid;

static void pl_exit(void) {
  kfm_session_t *s = pl_s;
  if (s == NULL) {
    return;
  }
  if (gettid() == pl_main_tid) {
    kfm_exit(s, pl_root);
  }
  int rc = kfm_session_stop(s);
  if (rc != 0 && rc != KFM_ESTATE) {
    fprintf(stderr, "kfm: writing the profile failed: %s\n", kfm_errmsg(s));
  }
  /* Not destroyed: other threads (OpenMP workers) may still call in. */
}

__attribute__((constructor)) static void pl_init(void) {
  const char *want = getenv("KFM_RUN_PID");
  if (want == NULL || atol(want) != (long)getpid()) {
    return;
  }
  kfm_session_t *s;
  int rc = kfm_session_create(&s, NULL);
  /* KFM_CONFIG was kfm run's (its output, flush_signals): the program's
   * own sessions get the user's back, or none, so that they do not write
   * over the run's profile.  Constructors run before any thread exists. */
  const char *user = getenv("KFM_RUN_USER_CONFIG");
  if (user) {
    setenv("KFM_CONFIG", user, 1);
  } else {
    unsetenv("KFM_CONFIG");
  }
  if (rc != 0) {
    fprintf(stderr, "kfm: not profiling: %s\n", kfm_errmsg(NULL));
    return;
  }
  char exe[512];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = '\0';
  const char *base = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
  if (kfm_node_register(s, *base ? base : "program", &pl_root) != 0 || kfm_session_start(s) != 0 ||
      kfm_enter(s, pl_root) != 0) {
    fprintf(stderr, "kfm: not profiling: %s\n", kfm_errmsg(s));
    kfm_session_destroy(s);
    return;
  }
  pl_main_tid = gettid();
  pl_s = s;
  kfm_session_set_default(s);
  atexit(pl_exit);
}

/* ---- OpenMP regions through OMPT ----------------------------------------- */

/* The OMPT 5.0 ABI, the few types used here (as engine/src/ompt.c does
 * without omp-tools.h). */
typedef union pl_ompt_data {
  uint64_t value;
  void *ptr;
} pl_ompt_data_t;
typedef void (*pl_ompt_fn_t)(void);
typedef pl_ompt_fn_t (*pl_ompt_lookup_t)(const char *name);
typedef int (*pl_ompt_set_cb_t)(int event, pl_ompt_fn_t cb);
typedef struct pl_ompt_start_result {
  int (*initialize)(pl_ompt_lookup_t lookup, int dev, pl_ompt_data_t *tool_data);
  void (*finalize)(pl_ompt_data_t *tool_data);
  pl_ompt_data_t tool_data;
} pl_ompt_start_result_t;
typedef pl_ompt_start_result_t *(*pl_ompt_start_t)(unsigned, const char *);
typedef void (*pl_pb_t)(pl_ompt_data_t *, const void *, pl_ompt_data_t *, unsigned, int,
                        const void *);
typedef void (*pl_pe_t)(pl_ompt_data_t *, pl_ompt_data_t *, int, const void *);
enum { PL_CB_PARALLEL_BEGIN = 3, PL_CB_PARALLEL_END = 4, PL_PARALLEL_LEAGUE = 0x40000000 };

/* The engine's tool and the runtime's entry points: set once, when the
 * runtime starts its (single) tool. */
static pl_ompt_start_result_t *pl_engine_tool;
static pl_ompt_start_result_t pl_tool;
static pl_ompt_lookup_t pl_real_lookup;
static pl_ompt_set_cb_t pl_real_set;
static pl_pb_t pl_engine_pb;
static pl_pe_t pl_engine_pe;

/* Regions seen: code address -> node id.  Open addressing, never shrinks;
 * a mutex because a new region registers a name (rare), and lookups of a
 * region already seen are one uncontended lock. */
#define PL_REGIONS 1024
static struct {
  const void *ra;
  kfm_node_id_t id;
} pl_regions[PL_REGIONS];
static pthread_mutex_t pl_regions_lock = PTHREAD_MUTEX_INITIALIZER;

/* The function containing addr from the file's .symtab (executables do not
 * export main or static functions to dladdr).  0 when found. */
static int pl_symtab(const char *file, uintptr_t off, char *name, size_t len, uintptr_t *start) {
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return -1;
  }
  struct stat st;
  int rc = -1;
  if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(ElfW(Ehdr))) {
    close(fd);
    return -1;
  }
  const unsigned char *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) {
    return -1;
  }
  size_t size = (size_t)st.st_size;
  const ElfW(Ehdr) *eh = (const void *)m;
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_shoff == 0 ||
      eh->e_shoff + (size_t)eh->e_shnum * sizeof(ElfW(Shdr)) > size) {
    goto out;
  }
  const ElfW(Shdr) *sh = (const void *)(m + eh->e_shoff);
  for (unsigned i = 0; i < eh->e_shnum; i++) {
    if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum ||
        sh[i].sh_offset + sh[i].sh_size > size) {
      continue;
    }
    const ElfW(Shdr) *strh = &sh[sh[i].sh_link];
    if (strh->sh_offset + strh->sh_size > size) {
      continue;
    }
    const ElfW(Sym) *sym = (const void *)(m + sh[i].sh_offset);
    size_t nsym = sh[i].sh_size / sizeof(ElfW(Sym));
    for (size_t k = 0; k < nsym; k++) {
      if (ELF64_ST_TYPE(sym[k].st_info) == STT_FUNC && sym[k].st_value <= off &&
          off < sym[k].st_value + sym[k].st_size && sym[k].st_name < strh->sh_size) {
        snprintf(name, len, "%s", (const char *)m + strh->sh_offset + sym[k].st_name);
        *start = sym[k].st_value;
        rc = 0;
        goto out;
      }
    }
  }
out:
  munmap((void *)m, size);
  return rc;
}

/* file:line of a code address, from DWARF through elfutils' libdw, loaded
 * with dlopen so that kfm neither builds nor runs against it (libdw.so.1 is
 * on most Linux systems; its headers often are not, so the few entry
 * points are declared here from elfutils' libdwfl.h).  Opened once, at the
 * first region, and kept: the modules of the process are read then. */
typedef struct pl_dwfl pl_dwfl_t;
typedef struct pl_dwfl_module pl_dwfl_module_t;
typedef struct pl_dwfl_line pl_dwfl_line_t;
typedef struct pl_dwfl_callbacks {
  void *find_elf;
  void *find_debuginfo;
  void *section_address;
  char **debuginfo_path;
} pl_dwfl_callbacks_t;
static struct {
  int tried;
  pl_dwfl_t *d;
  pl_dwfl_callbacks_t cb;
  char *debuginfo_path;
  pl_dwfl_module_t *(*addrmodule)(pl_dwfl_t *, uint64_t);
  pl_dwfl_line_t *(*getsrc)(pl_dwfl_module_t *, uint64_t);
  const char *(*lineinfo)(pl_dwfl_line_t *, uint64_t *, int *, int *, uint64_t *, uint64_t *);
} pl_dw;

static int pl_dw_open(void) {
  void *h = dlopen("libdw.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (h == NULL) {
    return -1;
  }
  pl_dwfl_t *(*begin)(const pl_dwfl_callbacks_t *) =
      (pl_dwfl_t * (*)(const pl_dwfl_callbacks_t *)) dlsym(h, "dwfl_begin");
  int (*proc_report)(pl_dwfl_t *, pid_t) =
      (int (*)(pl_dwfl_t *, pid_t))dlsym(h, "dwfl_linux_proc_report");
  int (*report_end)(pl_dwfl_t *, void *, void *) =
      (int (*)(pl_dwfl_t *, void *, void *))dlsym(h, "dwfl_report_end");
  pl_dw.cb.find_elf = dlsym(h, "dwfl_linux_proc_find_elf");
  pl_dw.cb.find_debuginfo = dlsym(h, "dwfl_standard_find_debuginfo");
  pl_dw.cb.debuginfo_path = &pl_dw.debuginfo_path;
  pl_dw.addrmodule = (pl_dwfl_module_t * (*)(pl_dwfl_t *, uint64_t)) dlsym(h, "dwfl_addrmodule");
  pl_dw.getsrc =
      (pl_dwfl_line_t * (*)(pl_dwfl_module_t *, uint64_t)) dlsym(h, "dwfl_module_getsrc");
  pl_dw.lineinfo = (const char *(*)(pl_dwfl_line_t *, uint64_t *, int *, int *, uint64_t *,
                                    uint64_t *))dlsym(h, "dwfl_lineinfo");
  if (!begin || !proc_report || !report_end || !pl_dw.cb.find_elf || !pl_dw.cb.find_debuginfo ||
      !pl_dw.addrmodule || !pl_dw.getsrc || !pl_dw.lineinfo) {
    return -1;
  }
  pl_dw.d = begin(&pl_dw.cb);
  if (pl_dw.d == NULL || proc_report(pl_dw.d, getpid()) != 0 ||
      report_end(pl_dw.d, NULL, NULL) != 0) {
    pl_dw.d = NULL;
    return -1;
  }
  return 0;
}

/* "file.c:31" for addr, or -1 (no libdw, no debug info). */
static int pl_file_line(uintptr_t addr, char *out, size_t len) {
  if (!pl_dw.tried) {
    pl_dw.tried = 1;
    pl_dw_open();
  }
  if (pl_dw.d == NULL) {
    return -1;
  }
  pl_dwfl_module_t *m = pl_dw.addrmodule(pl_dw.d, addr);
  pl_dwfl_line_t *l = m ? pl_dw.getsrc(m, addr) : NULL;
  int line = 0;
  const char *file = l ? pl_dw.lineinfo(l, NULL, &line, NULL, NULL, NULL) : NULL;
  if (file == NULL || line <= 0) {
    return -1;
  }
  const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
  snprintf(out, len, "%.100s:%d", base, line);
  return 0;
}

static void pl_region_name(const void *ra, char *out, size_t len) {
  Dl_info di;
  if (ra == NULL || dladdr(ra, &di) == 0 || di.dli_fname == NULL) {
    snprintf(out, len, "omp parallel @ %p", ra);
    return;
  }
  const char *mod = strrchr(di.dli_fname, '/') ? strrchr(di.dli_fname, '/') + 1 : di.dli_fname;
  /* ra is the return address: ra - 1 is inside the call to the runtime. */
  uintptr_t off = (uintptr_t)ra - 1 - (uintptr_t)di.dli_fbase;
  char sym[200], where[128];
  uintptr_t start;
  const char *fn = di.dli_sname;
  if (fn == NULL && pl_symtab(*di.dli_fname ? di.dli_fname : "/proc/self/exe", off, sym, sizeof sym,
                              &start) == 0) {
    fn = sym;
  }
  if (fn && pl_file_line((uintptr_t)ra - 1, where, sizeof where) == 0) {
    snprintf(out, len, "omp parallel @ %.120s (%.110s)", fn, where);
  } else if (di.dli_sname && di.dli_saddr) {
    snprintf(out, len, "omp parallel @ %.180s+0x%zx (%.40s)", di.dli_sname,
             (size_t)((uintptr_t)ra - 1 - (uintptr_t)di.dli_saddr), mod);
  } else if (pl_symtab(*di.dli_fname ? di.dli_fname : "/proc/self/exe", off, sym, sizeof sym,
                       &start) == 0) {
    snprintf(out, len, "omp parallel @ %.180s+0x%zx (%.40s)", sym, (size_t)(off - start), mod);
  } else {
    snprintf(out, len, "omp parallel @ %.40s+0x%zx", mod, (size_t)off);
  }
}

static int pl_region_node(kfm_session_t *s, const void *ra, kfm_node_id_t *id) {
  size_t h = ((uintptr_t)ra >> 2) * 0x9e3779b97f4a7c15ull >> 54; /* 10 bits */
  int rc = -1;
  pthread_mutex_lock(&pl_regions_lock);
  for (size_t k = 0; k < PL_REGIONS; k++) {
    size_t i = (h + k) % PL_REGIONS;
    if (pl_regions[i].ra == ra) {
      *id = pl_regions[i].id;
      rc = 0;
      break;
    }
    if (pl_regions[i].ra == NULL) {
      char name[KFM_NAME_MAX + 1];
      pl_region_name(ra, name, sizeof name);
      if (kfm_node_register(s, name, id) == 0) {
        pl_regions[i].ra = ra;
        pl_regions[i].id = *id;
        rc = 0;
      }
      break;
    }
  }
  pthread_mutex_unlock(&pl_regions_lock);
  return rc; /* table full or registry full: the region goes unnamed */
}

/* Per encountering thread: whether each open region entered a node.
 * Regions nest strictly on the thread that opens them. */
#define PL_DEPTH 64
static __thread kfm_node_id_t pl_open[PL_DEPTH];
static __thread unsigned pl_top;

static void pl_parallel_begin(pl_ompt_data_t *etd, const void *etf, pl_ompt_data_t *pd,
                              unsigned req, int flags, const void *ra) {
  kfm_session_t *s = pl_s;
  kfm_node_id_t id = KFM_NODE_ROOT;
  if (s && !(flags & PL_PARALLEL_LEAGUE) && pl_top < PL_DEPTH && pl_region_node(s, ra, &id) == 0 &&
      kfm_enter(s, id) != 0) {
    id = KFM_NODE_ROOT;
  }
  if (pl_top < PL_DEPTH) {
    pl_open[pl_top] = id;
  }
  pl_top++;
  if (pl_engine_pb) {
    pl_engine_pb(etd, etf, pd, req, flags, ra);
  }
}

static void pl_parallel_end(pl_ompt_data_t *pd, pl_ompt_data_t *etd, int flags, const void *ra) {
  if (pl_engine_pe) {
    pl_engine_pe(pd, etd, flags, ra);
  }
  if (pl_top == 0) {
    return;
  }
  pl_top--;
  if (pl_top < PL_DEPTH && pl_open[pl_top] != KFM_NODE_ROOT && pl_s) {
    kfm_exit(pl_s, pl_open[pl_top]);
  }
}

/* What the engine's initialize gets for ompt_set_callback: the region
 * callbacks are kept and ours registered in their place. */
static int pl_set_callback(int event, pl_ompt_fn_t cb) {
  if (event == PL_CB_PARALLEL_BEGIN) {
    pl_engine_pb = (pl_pb_t)cb;
    return pl_real_set(event, (pl_ompt_fn_t)pl_parallel_begin);
  }
  if (event == PL_CB_PARALLEL_END) {
    pl_engine_pe = (pl_pe_t)cb;
    return pl_real_set(event, (pl_ompt_fn_t)pl_parallel_end);
  }
  return pl_real_set(event, cb);
}

static pl_ompt_fn_t pl_lookup(const char *name) {
  if (strcmp(name, "ompt_set_callback") == 0) {
    return (pl_ompt_fn_t)pl_set_callback;
  }
  return pl_real_lookup(name);
}

static int pl_initialize(pl_ompt_lookup_t lookup, int dev, pl_ompt_data_t *tool_data) {
  pl_real_lookup = lookup;
  pl_real_set = (pl_ompt_set_cb_t)lookup("ompt_set_callback");
  if (pl_real_set == NULL) {
    return 0;
  }
  return pl_engine_tool->initialize(pl_lookup, dev, tool_data);
}

static void pl_finalize(pl_ompt_data_t *tool_data) {
  if (pl_engine_tool->finalize) {
    pl_engine_tool->finalize(tool_data);
  }
}

__attribute__((visibility("default"))) pl_ompt_start_result_t *
ompt_start_tool(unsigned int omp_version, const char *runtime_version);

pl_ompt_start_result_t *ompt_start_tool(unsigned int omp_version, const char *runtime_version) {
  /* libkfm's own tool, found through the library that holds kfm_enter. */
  Dl_info di;
  void *h = NULL;
  if (dladdr((void *)kfm_enter, &di) != 0 && di.dli_fname) {
    h = dlopen(di.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  }
  pl_ompt_start_t engine = h ? (pl_ompt_start_t)dlsym(h, "ompt_start_tool") : NULL;
  if (engine == NULL || engine == ompt_start_tool) {
    return NULL;
  }
  pl_engine_tool = engine(omp_version, runtime_version);
  if (pl_engine_tool == NULL) {
    return NULL; /* KFM_OMPT=off */
  }
  /* Wrapped even before the constructor ran (a runtime may start its tool
   * first): the callbacks look at pl_s when regions begin. */
  pl_tool.initialize = pl_initialize;
  pl_tool.finalize = pl_finalize;
  pl_tool.tool_data = pl_engine_tool->tool_data;
  return &pl_tool;
}
