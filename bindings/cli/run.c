/*
 * run.c - "kfm run [-c CONFIG] [-o OUTPUT] [-m MERGED] [--no-mpi] -- PROGRAM
 * ARGS...": profiles an unmodified program by exec'ing it with
 * libkfm_preload.so (and libkfm_mpi.so for an MPI program) in LD_PRELOAD
 * and the configuration in KFM_CONFIG.
 *
 * Everything that can be checked before the program runs is, with a clear
 * message: the program exists and is executable, it is dynamically linked
 * (LD_PRELOAD cannot reach a static one), and the configuration parses
 * (the engine's own message).  The program replaces kfm (exec), so signals
 * sent to the job reach it directly and its exit status is the job's.
 *
 * KFM_CONFIG is built as: flush_signals=on, a default output, then the
 * KFM_CONFIG already in the environment, then -c, then -o: later items win.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "kfm/kfm.h"

#ifndef KFM_CLI_REL_LIBDIR
#define KFM_CLI_REL_LIBDIR "../lib"
#endif
/* LLVM libomp for --openmp=llvm, as found at build time ("" if not). */
#ifndef KFM_CLI_LIBOMP
#define KFM_CLI_LIBOMP ""
#endif

/* Resolves prog like execvp would; 0 and the path in out, or -1. */
static int find_program(const char *prog, char *out, size_t len) {
  if (strchr(prog, '/')) {
    snprintf(out, len, "%s", prog);
    return access(out, X_OK) == 0 ? 0 : -1;
  }
  const char *path = getenv("PATH");
  if (path == NULL || *path == '\0') {
    path = "/usr/local/bin:/usr/bin:/bin";
  }
  while (*path) {
    const char *colon = strchr(path, ':');
    size_t n = colon ? (size_t)(colon - path) : strlen(path);
    snprintf(out, len, "%.*s/%s", (int)n, n ? path : ".", prog);
    struct stat st;
    if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0) {
      return 0;
    }
    path += n + (colon != NULL);
  }
  return -1;
}

/* What the ELF file says: 1 dynamically linked, 0 static, -1 not ELF (a
 * script: its interpreter is what runs).  *mpi / *gomp set when a
 * DT_NEEDED entry names libmpi / libgomp. */
static int elf_inspect(const char *path, int *mpi, int *gomp, char *why, size_t len) {
  *mpi = 0;
  *gomp = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(why, len, "%s", strerror(errno));
    if (fd >= 0) {
      close(fd);
    }
    return -2;
  }
  size_t size = (size_t)st.st_size;
  const unsigned char *m =
      size >= sizeof(Elf64_Ehdr) ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  close(fd);
  if (m == MAP_FAILED) {
    return -1;
  }
  const Elf64_Ehdr *eh = (const void *)m;
  int rc = -1;
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
      eh->e_phoff + (size_t)eh->e_phnum * sizeof(Elf64_Phdr) > size) {
    goto out;
  }
  const Elf64_Phdr *ph = (const void *)(m + eh->e_phoff);
  const Elf64_Phdr *dyn = NULL;
  rc = 0;
  for (unsigned i = 0; i < eh->e_phnum; i++) {
    if (ph[i].p_type == PT_INTERP) {
      rc = 1;
    }
    if (ph[i].p_type == PT_DYNAMIC) {
      dyn = &ph[i];
    }
  }
  if (rc == 1 && dyn && dyn->p_offset + dyn->p_filesz <= size) {
    const Elf64_Dyn *d = (const void *)(m + dyn->p_offset);
    size_t nd = dyn->p_filesz / sizeof *d;
    uint64_t strtab = 0;
    for (size_t i = 0; i < nd && d[i].d_tag != DT_NULL; i++) {
      if (d[i].d_tag == DT_STRTAB) {
        strtab = d[i].d_un.d_ptr;
      }
    }
    /* DT_STRTAB is an address: the PT_LOAD segment holding it gives the offset. */
    size_t stroff = 0;
    for (unsigned i = 0; i < eh->e_phnum && strtab; i++) {
      if (ph[i].p_type == PT_LOAD && strtab >= ph[i].p_vaddr &&
          strtab < ph[i].p_vaddr + ph[i].p_filesz) {
        stroff = (size_t)(strtab - ph[i].p_vaddr + ph[i].p_offset);
      }
    }
    for (size_t i = 0; i < nd && d[i].d_tag != DT_NULL && stroff; i++) {
      if (d[i].d_tag == DT_NEEDED && stroff + d[i].d_un.d_val < size) {
        const char *lib = (const char *)m + stroff + d[i].d_un.d_val;
        if (memchr(lib, '\0', size - (size_t)(lib - (const char *)m)) != NULL) {
          *mpi |= strncmp(lib, "libmpi", 6) == 0;
          *gomp |= strncmp(lib, "libgomp", 7) == 0;
        }
      }
    }
  }
out:
  munmap((void *)m, size);
  return rc;
}

/* The folder holding libkfm_preload.so: beside kfm (build tree), or the
 * installed library folder relative to it; KFM_LIBDIR overrides. */
static int find_libdir(char *out, size_t len) {
  const char *env = getenv("KFM_LIBDIR");
  char probe[PATH_MAX + 64];
  if (env && *env) {
    snprintf(out, len, "%s", env);
    snprintf(probe, sizeof probe, "%s/libkfm_preload.so", out);
    return access(probe, R_OK) == 0 ? 0 : -1;
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) {
    return -1;
  }
  exe[n] = '\0';
  *strrchr(exe, '/') = '\0';
  const char *cands[] = {"", "/" KFM_CLI_REL_LIBDIR, "/../lib", "/../lib64"};
  for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
    snprintf(probe, sizeof probe, "%s%s/libkfm_preload.so", exe, cands[i]);
    if (access(probe, R_OK) == 0) {
      char *real = realpath(probe, NULL);
      if (real) {
        *strrchr(real, '/') = '\0';
        snprintf(out, len, "%s", real);
        free(real);
        return 0;
      }
    }
  }
  return -1;
}

/* Appends ",key=\"value\"" with the config string's escapes. */
static void cfg_append_quoted(char *buf, size_t len, const char *key, const char *v) {
  size_t n = strlen(buf);
  n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s=\"", n ? "," : "", key);
  for (; *v && n + 3 < len; v++) {
    if (*v == '"' || *v == '\\') {
      buf[n++] = '\\';
    }
    buf[n++] = *v;
  }
  if (n + 2 < len) {
    buf[n++] = '"';
    buf[n] = '\0';
  }
}

static void cfg_append(char *buf, size_t len, const char *item) {
  size_t n = strlen(buf);
  snprintf(buf + n, n < len ? len - n : 0, "%s%s", n ? "," : "", item);
}

int kfm_cli_run(int argc, char **argv) {
  const char *config = NULL, *output = NULL, *merged = NULL, *libomp = NULL;
  int no_mpi = 0, i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
      config = argv[++i];
    } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      output = argv[++i];
    } else if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) {
      merged = argv[++i];
    } else if (strcmp(argv[i], "--no-mpi") == 0) {
      no_mpi = 1;
    } else if (strcmp(argv[i], "--openmp=llvm") == 0) {
      libomp =
          getenv("KFM_LIBOMP") && *getenv("KFM_LIBOMP") ? getenv("KFM_LIBOMP") : KFM_CLI_LIBOMP;
      if (libomp[0] == '\0' || access(libomp, R_OK) != 0) {
        fprintf(stderr,
                "kfm run: --openmp=llvm: LLVM libomp not found%s%s%s (install libomp-dev, "
                "or set KFM_LIBOMP)\n",
                libomp[0] ? " at '" : "", libomp, libomp[0] ? "'" : "");
        return 2;
      }
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "kfm run: unknown option '%s'\n", argv[i]);
      return 2;
    } else {
      break; /* the program, without "--" */
    }
  }
  if (i >= argc) {
    fprintf(stderr, "usage: kfm run [-c CONFIG] [-o OUTPUT] [-m MERGED] [--no-mpi] [--openmp=llvm] "
                    "-- PROGRAM [ARGS...]\n");
    return 2;
  }
  char prog[PATH_MAX];
  if (find_program(argv[i], prog, sizeof prog) != 0) {
    fprintf(stderr, "kfm run: program '%s' not found%s\n", argv[i],
            strchr(argv[i], '/') ? " or not executable" : " in PATH");
    return 127;
  }
  int mpi = 0, gomp = 0;
  char why[256] = "";
  int kind = elf_inspect(prog, &mpi, &gomp, why, sizeof why);
  if (kind == -2) {
    fprintf(stderr, "kfm run: cannot read '%s': %s\n", prog, why);
    return 126;
  }
  if (kind == 0) {
    fprintf(stderr,
            "kfm run: '%s' is statically linked: a preloaded library cannot reach it (link it "
            "dynamically, or link libkfm and use the API)\n",
            prog);
    return 2;
  }
  mpi = mpi && !no_mpi;
  if (gomp && libomp == NULL) {
    fprintf(stderr,
            "kfm run: '%s' uses GNU libgomp, which has no OMPT: its parallel regions are "
            "not profiled (--openmp=llvm runs it on LLVM libomp, which implements "
            "libgomp's ABI)\n",
            prog);
  }
  char libdir[PATH_MAX];
  if (find_libdir(libdir, sizeof libdir) != 0) {
    fprintf(stderr, "kfm run: libkfm_preload.so not found beside kfm or in its library folder "
                    "(set KFM_LIBDIR)\n");
    return 1;
  }
  /* The loader splits LD_PRELOAD at spaces and colons, with no quoting. */
  if (strpbrk(libdir, " :\t") != NULL) {
    fprintf(stderr,
            "kfm run: the library folder '%s' has a space or ':' in its name, which "
            "LD_PRELOAD cannot carry (install kfm elsewhere)\n",
            libdir);
    return 1;
  }

  static char cfg[8192];
  cfg_append(cfg, sizeof cfg, "flush_signals=on");
  if (!mpi) {
    cfg_append(cfg, sizeof cfg, "output=kfm-%p.json");
  }
  const char *env = getenv("KFM_CONFIG");
  if (env && *env) {
    cfg_append(cfg, sizeof cfg, env);
    /* Given back to the program once the preload's session exists
     * (preload.c): a session the program creates itself must not take
     * kfm run's output and write over the run's profile. */
    if (setenv("KFM_RUN_USER_CONFIG", env, 1) != 0) {
      perror("kfm run: setenv");
      return 1;
    }
  } else {
    unsetenv("KFM_RUN_USER_CONFIG");
  }
  if (config) {
    cfg_append(cfg, sizeof cfg, config);
  }
  if (output) {
    cfg_append_quoted(cfg, sizeof cfg, "output", output);
  }
  kfm_config_t c;
  kfm_config_init(&c);
  char err[512];
  if (kfm_config_parse(&c, cfg, err, sizeof err) != 0) {
    fprintf(stderr, "kfm run: bad config: %s\n", err);
    return 2;
  }
  if (setenv("KFM_CONFIG", cfg, 1) != 0) {
    perror("kfm run: setenv");
    return 1;
  }
  char preload[3 * PATH_MAX];
  const char *old = getenv("LD_PRELOAD");
  snprintf(preload, sizeof preload, "%s/libkfm_preload.so%s%s%s%s", libdir, mpi ? " " : "",
           mpi ? libdir : "", mpi ? "/libkfm_mpi.so" : "", "");
  if (mpi) {
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/libkfm_mpi.so", libdir);
    if (access(probe, R_OK) != 0) {
      fprintf(stderr,
              "kfm run: '%s' uses MPI but libkfm_mpi.so is not installed (kfm was "
              "built without MPI): MPI calls are not profiled\n",
              prog);
      snprintf(preload, sizeof preload, "%s/libkfm_preload.so", libdir);
    }
  }
  if (libomp) {
    /* Before the program's libgomp in symbol lookup: its GOMP_* and omp_*
     * entry points are then LLVM's, which dispatch OMPT events. */
    size_t n = strlen(preload);
    snprintf(preload + n, sizeof preload - n, " %s", libomp);
  }
  if (old && *old) {
    size_t n = strlen(preload);
    snprintf(preload + n, sizeof preload - n, " %s", old);
  }
  char pid[32];
  snprintf(pid, sizeof pid, "%ld", (long)getpid());
  if (setenv("LD_PRELOAD", preload, 1) != 0 || setenv("KFM_RUN_PID", pid, 1) != 0 ||
      (merged && setenv("KFM_MPI_OUTPUT", merged, 1) != 0)) {
    perror("kfm run: setenv");
    return 1;
  }
  execv(prog, argv + i);
  int e = errno;
  fprintf(stderr, "kfm run: cannot run '%s': %s\n", prog, strerror(e));
  return e == ENOENT ? 127 : 126;
}
