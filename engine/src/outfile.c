/*
 * outfile.c - writing a file the user named (the output= export): the one
 * place that decides how a path is opened, filled and put in place.
 *
 * Symlinks are followed to their final target (a dangling one gets its
 * target created, as a shell's '>' does), and the target's kind decides
 * the rest:
 *
 *  - A FIFO or a device is written in place (O_WRONLY|O_TRUNC, no rename),
 *    so it stays what it was.  A FIFO is opened with O_NONBLOCK: with no
 *    reader the open fails at once instead of hanging the stop.  SIGPIPE is
 *    blocked while writing to it, so a reader that goes away makes the
 *    export fail (EPIPE) instead of killing the profiled program.
 *  - A regular file (or a new one) is written to an unnamed O_TMPFILE file
 *    in the target's folder, which is linked in (through /proc/self/fd with
 *    AT_SYMLINK_FOLLOW, else AT_EMPTY_PATH) and renamed over the target only
 *    once complete.  A process killed mid-write therefore leaves nothing.
 *    Where the file system has no O_TMPFILE, a random name ".kfm-*.tmp" is
 *    created with O_CREAT|O_EXCL|O_NOFOLLOW, so a planted symlink is never
 *    followed; only that fallback can leave a temporary behind a SIGKILL.
 *    An existing file's permission bits (and owner, where allowed) are kept.
 *
 * Every path operation after the resolution is relative to one descriptor
 * of the target's folder, so the folder cannot be swapped in between.  Any
 * failure returns KFM_EIO with a message naming the path and errno's text,
 * leaves the earlier file as it was and removes what was created; errno is
 * left at the failing call's value for callers (the Python binding) that
 * map it to an exception.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Symlinks followed before giving up with ELOOP (the kernel's own limit). */
#define OUT_MAX_HOPS 40

int kfm__outfile_no_tmpfile = 0;

enum out_kind { OUT_INPLACE, OUT_UNNAMED, OUT_NAMED };

struct kfm__outfile {
  FILE *f; /* a cookie stream over fd, so the failing errno is kept */
  int fd;
  int err; /* errno of the first failed write, 0 if none */
  enum out_kind kind;
  int dirfd;           /* the target's folder (O_PATH) */
  const char *what;    /* "export": the messages' prefix */
  char *path;          /* as the caller gave it, for messages */
  char *final;         /* after following symlinks */
  const char *name;    /* final's last component, inside final */
  char tmp[32];        /* the named temporary, relative to dirfd */
  int sigpipe_blocked; /* SIGPIPE blocked by us (FIFO) */
  int sigpipe_pending; /* ... and it was already pending before */
  sigset_t oldmask;
};

/* The message for errno e, naming the path (and where its symlinks led). */
static int out_fail(kfm_session_t *s, const struct kfm__outfile *o, int e, const char *why) {
  if (o->final && strcmp(o->final, o->path) != 0) {
    kfm__err(s, KFM_EIO, "%s: cannot write '%s' (symlink to '%s'): %s", o->what, o->path, o->final,
             why ? why : strerror(e));
  } else {
    kfm__err(s, KFM_EIO, "%s: cannot write '%s': %s", o->what, o->path, why ? why : strerror(e));
  }
  errno = e;
  return KFM_EIO;
}

/* Follows symlinks from path to the file that would be written; a missing
 * last component ends the walk (it will be created).  Returns a malloc'd
 * path, or NULL with errno set. */
static char *out_resolve(const char *path) {
  char *cur = strdup(path);
  char *buf = malloc(PATH_MAX);
  if (cur == NULL || buf == NULL) {
    free(cur);
    free(buf);
    errno = ENOMEM;
    return NULL;
  }
  for (int hops = 0;; hops++) {
    struct stat st;
    if (lstat(cur, &st) != 0) {
      if (errno == ENOENT) {
        break; /* the folder is checked when it is opened */
      }
      goto fail;
    }
    if (!S_ISLNK(st.st_mode)) {
      break;
    }
    if (hops == OUT_MAX_HOPS) {
      errno = ELOOP;
      goto fail;
    }
    ssize_t n = readlink(cur, buf, PATH_MAX);
    if (n < 0) {
      goto fail;
    }
    if (n == PATH_MAX) {
      errno = ENAMETOOLONG;
      goto fail;
    }
    buf[n] = '\0';
    /* A relative link is relative to the folder holding it. */
    const char *slash = strrchr(cur, '/');
    size_t keep = buf[0] == '/' || slash == NULL ? 0 : (size_t)(slash - cur) + 1;
    char *next = malloc(keep + (size_t)n + 1);
    if (next == NULL) {
      errno = ENOMEM;
      goto fail;
    }
    memcpy(next, cur, keep);
    memcpy(next + keep, buf, (size_t)n + 1);
    free(cur);
    cur = next;
  }
  free(buf);
  return cur;
fail:;
  int e = errno;
  free(cur);
  free(buf);
  errno = e;
  return NULL;
}

/* A name no one can predict: ".kfm-" + 12 characters + ".tmp". */
static void out_random_name(char *out, size_t size) {
  static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  unsigned char r[12];
  if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
    /* No entropy yet (early boot): O_EXCL still makes any name safe. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long x = (unsigned long long)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^
                           (unsigned long long)getpid() << 32 ^ (unsigned long long)ts.tv_sec;
    for (size_t i = 0; i < sizeof r; i++) {
      x ^= x >> 29;
      x *= 0xbf58476d1ce4e5b9ull;
      r[i] = (unsigned char)(x >> 56);
    }
  }
  char name[13];
  for (size_t i = 0; i < sizeof r; i++) {
    name[i] = abc[r[i] % (sizeof abc - 1)];
  }
  name[12] = '\0';
  snprintf(out, size, ".kfm-%s.tmp", name);
}

/* Creates o->tmp in the folder with O_EXCL|O_NOFOLLOW: an existing name,
 * a planted symlink included, is never opened; another name is drawn. */
static int out_create_named(struct kfm__outfile *o, int flags) {
  for (int tries = 0; tries < 100; tries++) {
    out_random_name(o->tmp, sizeof o->tmp);
    int fd = openat(o->dirfd, o->tmp, flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) {
      if (fd < 0) {
        o->tmp[0] = '\0';
      }
      return fd;
    }
  }
  o->tmp[0] = '\0';
  errno = EEXIST;
  return -1;
}

/* The stream's write: whole buffers, EINTR retried, the first error kept
 * (stdio's own errno is overwritten by whatever runs after it). */
static ssize_t out_write(void *cookie, const char *buf, size_t n) {
  struct kfm__outfile *o = cookie;
  size_t done = 0;
  while (o->err == 0 && done < n) {
    ssize_t w = write(o->fd, buf + done, n - done);
    if (w < 0 && errno != EINTR) {
      o->err = errno;
    } else if (w > 0) {
      done += (size_t)w;
    }
  }
  return o->err ? 0 : (ssize_t)n;
}

/* Wraps o->fd in the stream; on failure closes fd. */
static int out_stream(struct kfm__outfile *o) {
  static const cookie_io_functions_t io = {.write = out_write};
  o->f = fopencookie(o, "w", io);
  if (o->f == NULL) {
    int e = errno;
    close(o->fd);
    o->fd = -1;
    errno = e;
    return -1;
  }
  return 0;
}

static void out_free(struct kfm__outfile *o) {
  if (o->dirfd >= 0) {
    close(o->dirfd);
  }
  free(o->path);
  free(o->final);
  free(o);
}

/* Undoes the SIGPIPE blocking: a SIGPIPE our writes raised is consumed,
 * one that was pending before stays for the program. */
static void out_sigpipe_restore(struct kfm__outfile *o) {
  if (!o->sigpipe_blocked) {
    return;
  }
  sigset_t pending, pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  if (!o->sigpipe_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
    const struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &o->oldmask, NULL);
  o->sigpipe_blocked = 0;
}

/* A FIFO or device: written where it is. */
static int out_open_inplace(kfm_session_t *s, struct kfm__outfile *o, int is_fifo) {
  int fd = openat(o->dirfd, o->name,
                  O_WRONLY | O_TRUNC | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    char why[160];
    snprintf(why, sizeof why, "it is a FIFO and no process has it open for reading (%s)",
             strerror(e));
    return out_fail(s, o, e, is_fifo && e == ENXIO ? why : NULL);
  }
  /* Non-blocking was for the open only: a slow reader must be waited for. */
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
    int e = errno;
    close(fd);
    return out_fail(s, o, e, NULL);
  }
  if (is_fifo) {
    sigset_t pending, pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    o->sigpipe_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    o->sigpipe_blocked = pthread_sigmask(SIG_BLOCK, &pipe_only, &o->oldmask) == 0;
  }
  o->kind = OUT_INPLACE;
  o->fd = fd;
  if (out_stream(o) != 0) {
    int e = errno;
    out_sigpipe_restore(o);
    return out_fail(s, o, e, NULL);
  }
  return 0;
}

/* A regular file or a new one: a temporary in its folder. */
static int out_open_temp(kfm_session_t *s, struct kfm__outfile *o, const struct stat *old) {
  int fd = -1;
  o->kind = OUT_UNNAMED;
  if (!kfm__outfile_no_tmpfile) {
    fd = openat(o->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
      return out_fail(s, o, errno, NULL);
    }
    /* Linking it in needs /proc (or CAP_DAC_READ_SEARCH for AT_EMPTY_PATH,
     * tried at commit); without /proc use a named temporary from the start. */
    if (fd >= 0 && access("/proc/self/fd", X_OK) != 0 && geteuid() != 0) {
      close(fd);
      fd = -1;
    }
  }
  if (fd < 0) {
    o->kind = OUT_NAMED;
    fd = out_create_named(o, O_WRONLY);
    if (fd < 0) {
      return out_fail(s, o, errno, NULL);
    }
  }
  if (old) {
    /* Replacing: keep who owns it and its mode (chown first, since it
     * clears set-id bits).  Best effort: the content matters most. */
    if (old->st_uid != geteuid() || old->st_gid != getegid()) {
      if (fchown(fd, old->st_uid, old->st_gid) != 0) {
        errno = 0;
      }
    }
    if (fchmod(fd, old->st_mode & 07777) != 0) {
      errno = 0;
    }
  }
  o->fd = fd;
  if (out_stream(o) != 0) {
    int e = errno;
    if (o->kind == OUT_NAMED) {
      unlinkat(o->dirfd, o->tmp, 0);
    }
    return out_fail(s, o, e, NULL);
  }
  return 0;
}

int kfm__outfile_open(kfm_session_t *s, const char *what, const char *path,
                      struct kfm__outfile **out) {
  *out = NULL;
  struct kfm__outfile *o = calloc(1, sizeof *o);
  if (o == NULL || (o->path = strdup(path)) == NULL) {
    free(o);
    return KFM_ENOMEM;
  }
  o->what = what;
  o->dirfd = -1;
  o->fd = -1;
  int rc;
  /* A symlink appearing between the walk and the open sends us round again. */
  for (int round = 0;; round++) {
    free(o->final);
    o->final = out_resolve(path);
    if (o->final == NULL) {
      rc = errno == ENOMEM ? KFM_ENOMEM : out_fail(s, o, errno, NULL);
      break;
    }
    char *slash = strrchr(o->final, '/');
    o->name = slash ? slash + 1 : o->final;
    if (o->name[0] == '\0') {
      rc = out_fail(s, o, EISDIR, NULL);
      break;
    }
    if (o->dirfd >= 0) {
      close(o->dirfd);
    }
    if (slash == NULL) {
      o->dirfd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    } else if (slash == o->final) {
      o->dirfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    } else {
      *slash = '\0';
      o->dirfd = open(o->final, O_PATH | O_DIRECTORY | O_CLOEXEC);
      *slash = '/';
    }
    if (o->dirfd < 0) {
      rc = out_fail(s, o, errno, NULL);
      break;
    }
    struct stat st;
    if (fstatat(o->dirfd, o->name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) {
        rc = out_fail(s, o, errno, NULL);
        break;
      }
      rc = out_open_temp(s, o, NULL);
    } else if (S_ISLNK(st.st_mode) && round < 3) {
      continue;
    } else if (S_ISDIR(st.st_mode)) {
      rc = out_fail(s, o, EISDIR, NULL);
    } else if (S_ISREG(st.st_mode)) {
      rc = out_open_temp(s, o, &st);
    } else if (S_ISLNK(st.st_mode)) {
      rc = out_fail(s, o, ELOOP, NULL);
    } else {
      rc = out_open_inplace(s, o, S_ISFIFO(st.st_mode));
    }
    break;
  }
  if (rc) {
    int e = errno;
    out_free(o);
    errno = e;
    return rc;
  }
  *out = o;
  return 0;
}

FILE *kfm__outfile_stream(struct kfm__outfile *o) {
  return o->f;
}

/* Gives the unnamed file the name `name` in the folder. */
static int out_link(struct kfm__outfile *o, const char *name) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", o->fd);
  if (linkat(AT_FDCWD, proc, o->dirfd, name, AT_SYMLINK_FOLLOW) == 0) {
    return 0;
  }
  if (errno != ENOENT) {
    return -1;
  }
  return linkat(o->fd, "", o->dirfd, name, AT_EMPTY_PATH);
}

/* Puts the finished unnamed file in place: straight under the target's
 * name when there is none yet, else under a fresh name renamed over it. */
static int out_place_unnamed(struct kfm__outfile *o) {
  if (out_link(o, o->name) == 0) {
    return 0;
  }
  if (errno != EEXIST) {
    return -1;
  }
  for (int tries = 0; tries < 100; tries++) {
    out_random_name(o->tmp, sizeof o->tmp);
    if (out_link(o, o->tmp) == 0) {
      if (renameat(o->dirfd, o->tmp, o->dirfd, o->name) == 0) {
        return 0;
      }
      int e = errno;
      unlinkat(o->dirfd, o->tmp, 0);
      errno = e;
      return -1;
    }
    if (errno != EEXIST) {
      return -1;
    }
  }
  return -1;
}

int kfm__outfile_close(kfm_session_t *s, struct kfm__outfile *o, int commit) {
  if (o == NULL) {
    return 0;
  }
  /* The stream only buffers: fclose hands the rest to out_write. */
  if (fclose(o->f) != 0 && o->err == 0) {
    o->err = errno ? errno : EIO;
  }
  int e = commit ? o->err : 0;
  out_sigpipe_restore(o);
  if (commit && e == 0 && o->kind == OUT_UNNAMED && out_place_unnamed(o) != 0) {
    e = errno;
  }
  if (close(o->fd) != 0 && commit && e == 0) {
    e = errno; /* NFS reports some write errors only here */
  }
  if (o->kind == OUT_NAMED) {
    if (commit && e == 0 && renameat(o->dirfd, o->tmp, o->dirfd, o->name) != 0) {
      e = errno;
    }
    if (!commit || e != 0) {
      unlinkat(o->dirfd, o->tmp, 0);
    }
  }
  int rc = e ? out_fail(s, o, e, NULL) : 0;
  out_free(o);
  errno = e;
  return rc;
}

/* ---- output= patterns ----------------------------------------------------
 * So that the ranks of a batch job never overwrite each other's profile,
 * output= may name the process.  The first variable set wins, in the order
 * launchers are most specific about it: Open MPI's own, then the PMI/PMIx
 * names every other MPI uses, then Slurm's task id (set for srun without
 * MPI too).  An unset variable expands to a fixed word ("norank", "nojob")
 * rather than to nothing, so "p.%r.json" never silently becomes "p..json"
 * and a listing shows at once that the launcher gave no rank. */

static const char *const pat_rank_vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK",
                                            "SLURM_PROCID", NULL};
static const char *const pat_job_vars[] = {"SLURM_JOB_ID", "PBS_JOBID", NULL};

static const char *pat_env(const char *const *vars) {
  for (size_t i = 0; vars[i]; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) {
      return v;
    }
  }
  return NULL;
}

int kfm_output_expand(const char *pattern, char *buf, size_t len) {
  if (pattern == NULL || buf == NULL || len == 0) {
    return KFM_EINVAL;
  }
  size_t n = 0;
  for (const char *p = pattern; *p; p++) {
    char tmp[256];
    const char *piece;
    size_t plen;
    if (*p != '%') {
      piece = p;
      plen = 1;
    } else {
      p++;
      piece = tmp;
      const char *v;
      switch (*p) {
      case 'r':
        v = pat_env(pat_rank_vars);
        snprintf(tmp, sizeof tmp, "%s", v ? v : "norank");
        break;
      case 'j':
        v = pat_env(pat_job_vars);
        snprintf(tmp, sizeof tmp, "%s", v ? v : "nojob");
        break;
      case 'p':
        snprintf(tmp, sizeof tmp, "%ld", (long)getpid());
        break;
      case 'h':
        if (gethostname(tmp, sizeof tmp) != 0 || tmp[0] == '\0') {
          snprintf(tmp, sizeof tmp, "nohost");
        }
        tmp[sizeof tmp - 1] = '\0';
        break;
      case '%':
        snprintf(tmp, sizeof tmp, "%%");
        break;
      default: /* config.c's check names the bad pattern for output= */
        return KFM_EBADVALUE;
      }
      if (*p != '%') {
        /* A job id such as "12.pbs/a" must not add a folder level. */
        for (char *c = tmp; *c; c++) {
          *c = *c == '/' ? '_' : *c;
        }
      }
      plen = strlen(tmp);
    }
    if (n + plen >= len) {
      return KFM_ERANGE;
    }
    memcpy(buf + n, piece, plen);
    n += plen;
  }
  buf[n] = '\0';
  return 0;
}
