/*
 * test_export_fault.c - the export against hostile or failing targets: a
 * FIFO (read, unread, abandoned), devices (/dev/null stays a device,
 * /dev/full gives ENOSPC), symlinks (written through, dangling, looping),
 * symlinks planted at temporary names, an unwritable folder, a directory,
 * a missing folder, RLIMIT_FSIZE, and a process killed mid-export.  Each
 * failure must be KFM_EIO naming the path, leave an earlier file byte for
 * byte and leave no temporary in the folder.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h" /* kfm__outfile_no_tmpfile */
#include "kfm_test.h"

static char dir[256];

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void put(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs(text, f);
  fclose(f);
}

/* A complete export: the schema at the start, the closing brace at the end. */
static int is_export(const char *txt) {
  size_t n = txt ? strlen(txt) : 0;
  return n > 2 && strncmp(txt, "{\"schema\":\"kfm.profile\"", 23) == 0 &&
         strcmp(txt + n - 2, "}\n") == 0;
}

/* The names in folder d, sorted, joined by spaces ("" when empty), so a
 * test states exactly what must be there and a stray temporary shows. */
static void listing(const char *d, char *out, size_t size) {
  struct dirent **ents;
  int n = scandir(d, &ents, NULL, alphasort);
  out[0] = '\0';
  for (int i = 0; i < n; i++) {
    const char *nm = ents[i]->d_name;
    if (strcmp(nm, ".") != 0 && strcmp(nm, "..") != 0) {
      size_t len = strlen(out);
      snprintf(out + len, size - len, "%s%s", len ? " " : "", nm);
    }
    free(ents[i]);
  }
  free(n >= 0 ? ents : NULL);
}

#define KT_LISTING(d, want)                                                                        \
  do {                                                                                             \
    char kt_l_[4096];                                                                              \
    listing(d, kt_l_, sizeof kt_l_);                                                               \
    if (strcmp(kt_l_, want) != 0) {                                                                \
      fprintf(stderr, "\n%s:%d: %s holds '%s', want '%s'\n", __FILE__, __LINE__, d, kt_l_, want);  \
    }                                                                                              \
    CU_ASSERT_STRING_EQUAL(kt_l_, want);                                                           \
  } while (0)

/* KFM_EIO, and the message names the path and says why. */
#define KT_EIO(s, call, path, why)                                                                 \
  do {                                                                                             \
    int kt_rc_ = (call);                                                                           \
    const char *kt_m_ = kfm_errmsg(s);                                                             \
    if (kt_rc_ != KFM_EIO || strstr(kt_m_, path) == NULL || strstr(kt_m_, why) == NULL) {          \
      fprintf(stderr, "\n%s:%d: %s -> %s '%s', want KFM_EIO naming %s and '%s'\n", __FILE__,       \
              __LINE__, #call, kfm_err_name(kt_rc_), kt_m_, path, why);                            \
    }                                                                                              \
    CU_ASSERT_EQUAL(kt_rc_, KFM_EIO);                                                              \
    CU_ASSERT_PTR_NOT_NULL(strstr(kt_m_, path));                                                   \
    CU_ASSERT_PTR_NOT_NULL(strstr(kt_m_, why));                                                    \
  } while (0)

/* A session stopped with `pairs` enter/exit pairs traced (BASIC: the
 * export is about 150 bytes per pair).  extra is appended to the config. */
static kfm_session_t *traced(int pairs, const char *extra) {
  char cfg[600];
  snprintf(cfg, sizeof cfg, "level=basic,rate=off,trace=on,trace_ring=%d,trace_events=%d%s%s",
           pairs * 2 + 16 > 16384 ? pairs * 2 + 16 : 16384, pairs * 2 + 16, extra ? "," : "",
           extra ? extra : "");
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, cfg));
  kfm_node_id_t a;
  KT_OK(s, kfm_node_register(s, "node", &a));
  KT_OK(s, kfm_session_start(s));
  for (int i = 0; i < pairs; i++) {
    kfm_enter(s, a);
    kfm_exit(s, a);
  }
  return s;
}

static kfm_session_t *stopped(int pairs) {
  kfm_session_t *s = traced(pairs, NULL);
  KT_OK(s, kfm_session_stop(s));
  return s;
}

static void mksub(char *out, size_t size, const char *name) {
  snprintf(out, size, "%s/%s", dir, name);
  CU_ASSERT_EQUAL_FATAL(mkdir(out, 0755), 0);
}

/* ---- FIFOs ------------------------------------------------------------- */

struct reader {
  int fd;
  size_t stop_after; /* close after this many bytes (0: read to EOF) */
  char *buf;
  size_t len, cap;
};

/* Reads the FIFO (opened non-blocking before the export, so the writer's
 * O_NONBLOCK open finds a reader) until the writer closes it. */
static void *reader_main(void *arg) {
  struct reader *r = arg;
  double t0 = now_s();
  while (now_s() - t0 < 120) {
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    poll(&p, 1, 10);
    if (r->len + 65536 > r->cap) {
      r->cap = r->cap * 2 + 65536;
      r->buf = realloc(r->buf, r->cap + 1);
    }
    ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len);
    if (n > 0) {
      r->len += (size_t)n;
      if (r->stop_after && r->len >= r->stop_after) {
        break;
      }
    } else if (n == 0 && r->len > 0) {
      break; /* EOF after the data; before it, no writer has come yet */
    }
  }
  if (r->buf) {
    r->buf[r->len] = '\0';
  }
  close(r->fd);
  return NULL;
}

static void test_fifo_reader(void) {
  char sub[300], fifo[320], cfg[400];
  mksub(sub, sizeof sub, "fifo");
  snprintf(fifo, sizeof fifo, "%s/out.json", sub);
  CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0644), 0);
  struct reader r = {.fd = open(fifo, O_RDONLY | O_NONBLOCK)};
  CU_ASSERT_FATAL(r.fd >= 0);
  pthread_t th;
  pthread_create(&th, NULL, reader_main, &r);
  /* Larger than the pipe's 64 KiB: the writer must wait for the reader. */
  snprintf(cfg, sizeof cfg, "output=%s", fifo);
  kfm_session_t *s = traced(4000, cfg);
  KT_OK(s, kfm_session_stop(s));
  pthread_join(th, NULL);
  CU_ASSERT_TRUE(r.len > 65536);
  CU_ASSERT_TRUE(is_export(r.buf));
  CU_ASSERT_PTR_NOT_NULL(strstr(r.buf, "\"name\":\"node\""));
  struct stat st;
  CU_ASSERT_EQUAL(lstat(fifo, &st), 0);
  CU_ASSERT_TRUE(S_ISFIFO(st.st_mode));
  KT_LISTING(sub, "out.json");
  free(r.buf);
  kfm_session_destroy(s);
}

static void test_fifo_no_reader(void) {
  char sub[300], fifo[320], cfg[400];
  mksub(sub, sizeof sub, "fifo0");
  snprintf(fifo, sizeof fifo, "%s/out.json", sub);
  CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0644), 0);
  snprintf(cfg, sizeof cfg, "output=%s", fifo);
  kfm_session_t *s = traced(10, cfg);
  double t0 = now_s();
  KT_EIO(s, kfm_session_stop(s), fifo, "no process has it open for reading");
  KT_EIO(s, kfm_session_export(s, fifo), fifo, "FIFO");
  CU_ASSERT_TRUE(now_s() - t0 < 2.0); /* failed at once, no hang */
  struct stat st;
  CU_ASSERT_EQUAL(lstat(fifo, &st), 0);
  CU_ASSERT_TRUE(S_ISFIFO(st.st_mode));
  KT_LISTING(sub, "out.json");
  kfm_session_destroy(s);
}

/* A reader that leaves mid-export: EPIPE, and the program is not killed
 * by SIGPIPE (nor is one left pending). */
static void test_fifo_reader_leaves(void) {
  char sub[300], fifo[320];
  mksub(sub, sizeof sub, "fifo1");
  snprintf(fifo, sizeof fifo, "%s/out.json", sub);
  CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0644), 0);
  kfm_session_t *s = stopped(20000); /* ~3 MB, far over the pipe's size */
  struct reader r = {.fd = open(fifo, O_RDONLY | O_NONBLOCK), .stop_after = 100};
  CU_ASSERT_FATAL(r.fd >= 0);
  pthread_t th;
  pthread_create(&th, NULL, reader_main, &r);
  KT_EIO(s, kfm_session_export(s, fifo), fifo, "Broken pipe");
  pthread_join(th, NULL);
  sigset_t pending;
  sigpending(&pending);
  CU_ASSERT_FALSE(sigismember(&pending, SIGPIPE));
  struct stat st;
  CU_ASSERT_EQUAL(lstat(fifo, &st), 0);
  CU_ASSERT_TRUE(S_ISFIFO(st.st_mode));
  free(r.buf);
  kfm_session_destroy(s);
}

/* ---- devices ----------------------------------------------------------- */

static void test_devices(void) {
  if (geteuid() != 0) {
    /* Replacing /dev/null needs root; as anyone else the old code failed
     * instead, so the case proves nothing there. */
    fprintf(stderr, "\n  (not root: /dev/null case skipped)\n");
  } else {
    struct stat before, after;
    CU_ASSERT_EQUAL_FATAL(stat("/dev/null", &before), 0);
    kfm_session_t *s = traced(100, "output=/dev/null");
    KT_OK(s, kfm_session_stop(s));
    KT_OK(s, kfm_session_export(s, "/dev/null"));
    CU_ASSERT_EQUAL(lstat("/dev/null", &after), 0);
    CU_ASSERT_TRUE(S_ISCHR(after.st_mode));
    CU_ASSERT_EQUAL(after.st_rdev, before.st_rdev);
    CU_ASSERT_EQUAL(after.st_ino, before.st_ino);
    /* Nothing was left in /dev. */
    char l[16384];
    listing("/dev", l, sizeof l);
    CU_ASSERT_PTR_NULL(strstr(l, "null.tmp"));
    CU_ASSERT_PTR_NULL(strstr(l, ".kfm-"));
    /* Through a symlink too: the link stays, the device is written. */
    char link[300];
    snprintf(link, sizeof link, "%s/devnull.json", dir);
    CU_ASSERT_EQUAL(symlink("/dev/null", link), 0);
    KT_OK(s, kfm_session_export(s, link));
    CU_ASSERT_EQUAL(lstat(link, &after), 0);
    CU_ASSERT_TRUE(S_ISLNK(after.st_mode));
    CU_ASSERT_EQUAL(lstat("/dev/null", &after), 0);
    CU_ASSERT_TRUE(S_ISCHR(after.st_mode));
    unlink(link);
    kfm_session_destroy(s);
  }
  /* /dev/full: written in place, and its ENOSPC reported. */
  kfm_session_t *s = stopped(100);
  errno = 0;
  KT_EIO(s, kfm_session_export(s, "/dev/full"), "'/dev/full'", "No space left on device");
  CU_ASSERT_EQUAL(errno, ENOSPC); /* the binding's OSError takes errno */
  struct stat st;
  CU_ASSERT_EQUAL(lstat("/dev/full", &st), 0);
  CU_ASSERT_TRUE(S_ISCHR(st.st_mode));
  kfm_session_destroy(s);
}

/* ---- symlinks ---------------------------------------------------------- */

static void test_symlinks(void) {
  char sub[300], target[320], link[320], link2[320], dang[320], loop1[320], loop2[320], buf[320];
  mksub(sub, sizeof sub, "links");
  snprintf(target, sizeof target, "%s/target.json", sub);
  snprintf(link, sizeof link, "%s/link.json", sub);
  snprintf(link2, sizeof link2, "%s/link2.json", sub);
  put(target, "{\"old\":true}\n");
  CU_ASSERT_EQUAL(chmod(target, 0640), 0);
  CU_ASSERT_EQUAL(symlink("target.json", link), 0); /* relative to its folder */
  CU_ASSERT_EQUAL(symlink(link, link2), 0);         /* a chain, absolute */
  char cfg[400];
  snprintf(cfg, sizeof cfg, "output=%s", link2);
  kfm_session_t *s = traced(10, cfg);
  KT_OK(s, kfm_session_stop(s));
  struct stat st;
  CU_ASSERT_EQUAL(lstat(link, &st), 0);
  CU_ASSERT_TRUE(S_ISLNK(st.st_mode));
  CU_ASSERT_EQUAL(lstat(link2, &st), 0);
  CU_ASSERT_TRUE(S_ISLNK(st.st_mode));
  ssize_t n = readlink(link, buf, sizeof buf - 1);
  CU_ASSERT_EQUAL(n, 11);
  CU_ASSERT_EQUAL(lstat(target, &st), 0);
  CU_ASSERT_TRUE(S_ISREG(st.st_mode));
  CU_ASSERT_EQUAL(st.st_mode & 07777, 0640); /* the replaced file's mode kept */
  char *txt = kt_slurp(target);
  CU_ASSERT_TRUE(is_export(txt));
  free(txt);

  /* Dangling: its target is created (as a shell's '>' would), with the
   * umask's mode; into a missing folder it fails naming the link. */
  snprintf(dang, sizeof dang, "%s/dangling.json", sub);
  CU_ASSERT_EQUAL(symlink("created.json", dang), 0);
  mode_t um = umask(022);
  KT_OK(s, kfm_session_export(s, dang));
  umask(um);
  snprintf(buf, sizeof buf, "%s/created.json", sub);
  CU_ASSERT_EQUAL(lstat(buf, &st), 0);
  CU_ASSERT_EQUAL(st.st_mode & 07777, 0644);
  txt = kt_slurp(buf);
  CU_ASSERT_TRUE(is_export(txt));
  free(txt);
  CU_ASSERT_EQUAL(lstat(dang, &st), 0);
  CU_ASSERT_TRUE(S_ISLNK(st.st_mode));
  snprintf(buf, sizeof buf, "%s/dangling2.json", sub);
  CU_ASSERT_EQUAL(symlink("nodir/x.json", buf), 0);
  KT_EIO(s, kfm_session_export(s, buf), buf, "No such file or directory");
  CU_ASSERT_PTR_NOT_NULL(strstr(kfm_errmsg(s), "nodir/x.json"));

  /* A loop: ELOOP, nothing created. */
  snprintf(loop1, sizeof loop1, "%s/loop1", sub);
  snprintf(loop2, sizeof loop2, "%s/loop2", sub);
  CU_ASSERT_EQUAL(symlink("loop2", loop1), 0);
  CU_ASSERT_EQUAL(symlink("loop1", loop2), 0);
  KT_EIO(s, kfm_session_export(s, loop1), loop1, "Too many levels of symbolic links");
  KT_LISTING(sub, "created.json dangling.json dangling2.json link.json link2.json loop1 loop2 "
                  "target.json");
  kfm_session_destroy(s);
}

/* ---- planted symlinks -------------------------------------------------- */

/* Symlinks at every name a temporary could plausibly take (the old
 * "<out>.tmp.<pid>" and neighbours, editors' and tools' usual names)
 * pointing at a victim: the export never writes through them. */
static void test_planted(void) {
  char sub[300], out[320], victim[320], p[400];
  mksub(sub, sizeof sub, "planted");
  snprintf(out, sizeof out, "%s/out.json", sub);
  snprintf(victim, sizeof victim, "%s/victim.txt", dir);
  put(victim, "precious\n");
  static const char *const fmt[] = {"%s.tmp.%ld", "%s.tmp",          "%s~",
                                    "%s.new",     "%s.tmp.%ld.json", "%s.part"};
  int planted = 0;
  for (long pid = getpid() - 2; pid <= getpid() + 2; pid++) {
    for (size_t i = 0; i < sizeof fmt / sizeof fmt[0]; i++) {
      snprintf(p, sizeof p, fmt[i], out, pid);
      if (symlink(victim, p) == 0) {
        planted++;
      }
    }
  }
  snprintf(p, sizeof p, "%s/.out.json.tmp", sub);
  planted += symlink(victim, p) == 0;
  snprintf(p, sizeof p, "%s/.kfm-.tmp", sub);
  planted += symlink(victim, p) == 0;
  CU_ASSERT_EQUAL(planted, 5 * 2 + 4 + 2); /* names without the pid are planted once */
  char before[4096];
  listing(sub, before, sizeof before);
  kfm_session_t *s = stopped(50);
  /* New target, existing target; unnamed temporary, then the named one. */
  for (int named = 0; named < 2; named++) {
    kfm__outfile_no_tmpfile = named;
    for (int again = 0; again < 2; again++) {
      KT_OK(s, kfm_session_export(s, out));
      char *txt = kt_slurp(out);
      CU_ASSERT_TRUE(is_export(txt));
      free(txt);
      struct stat st;
      CU_ASSERT_EQUAL(lstat(out, &st), 0);
      CU_ASSERT_TRUE(S_ISREG(st.st_mode));
      if (!again) {
        unlink(out);
      }
    }
  }
  kfm__outfile_no_tmpfile = 0;
  char *v = kt_slurp(victim);
  CU_ASSERT_STRING_EQUAL(v, "precious\n");
  free(v);
  /* The links are all there and still links; nothing else was added. */
  unlink(out);
  KT_LISTING(sub, before);
  snprintf(p, sizeof p, "%s.tmp.%ld", out, (long)getpid());
  struct stat st;
  CU_ASSERT_EQUAL(lstat(p, &st), 0);
  CU_ASSERT_TRUE(S_ISLNK(st.st_mode));
  kfm_session_destroy(s);
}

/* ---- folders ----------------------------------------------------------- */

/* The export runs in a child, unprivileged when we are root (root ignores
 * folder permissions). */
static void test_unwritable_folder(void) {
  char sub[300], keep[320];
  mksub(sub, sizeof sub, "ro");
  snprintf(keep, sizeof keep, "%s/keep.json", sub);
  put(keep, "{\"old\":true}\n");
  CU_ASSERT_EQUAL(chmod(keep, 0666), 0); /* the file itself is writable */
  CU_ASSERT_EQUAL(chmod(sub, 0555), 0);
  pid_t pid = fork();
  CU_ASSERT_FATAL(pid >= 0);
  if (pid == 0) {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) {
      _exit(3);
    }
    kfm_session_t *s = NULL;
    if (kfm_session_create_str(&s, "level=basic,rate=off") != 0 || kfm_session_start(s) != 0 ||
        kfm_enter_name(s, "x") != 0 || kfm_exit_name(s, "x") != 0 || kfm_session_stop(s) != 0) {
      _exit(4);
    }
    int ok = 1;
    for (int named = 0; named < 2; named++) {
      kfm__outfile_no_tmpfile = named;
      int rc = kfm_session_export(s, keep);
      const char *m = kfm_errmsg(s);
      if (rc != KFM_EIO || !strstr(m, keep) || !strstr(m, "Permission denied")) {
        fprintf(stderr, "\nunwritable folder: %s '%s'\n", kfm_err_name(rc), m);
        ok = 0;
      }
    }
    kfm_session_destroy(s);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  chmod(sub, 0755);
  char *txt = kt_slurp(keep);
  CU_ASSERT_STRING_EQUAL(txt, "{\"old\":true}\n");
  free(txt);
  KT_LISTING(sub, "keep.json");
}

static void test_directory_and_missing(void) {
  char sub[300], target[320], missing[320];
  mksub(sub, sizeof sub, "isdir");
  snprintf(target, sizeof target, "%s/adir", sub);
  CU_ASSERT_EQUAL(mkdir(target, 0755), 0);
  kfm_session_t *s = stopped(10);
  KT_EIO(s, kfm_session_export(s, target), target, "Is a directory");
  struct stat st;
  CU_ASSERT_EQUAL(lstat(target, &st), 0);
  CU_ASSERT_TRUE(S_ISDIR(st.st_mode));
  KT_LISTING(target, "");
  KT_LISTING(sub, "adir");
  snprintf(missing, sizeof missing, "%s/nope/p.json", sub);
  errno = 0;
  KT_EIO(s, kfm_session_export(s, missing), missing, "No such file or directory");
  CU_ASSERT_EQUAL(errno, ENOENT);
  KT_LISTING(sub, "adir");
  kfm_session_destroy(s);
}

/* ---- RLIMIT_FSIZE ------------------------------------------------------ */

static void test_fsize_limit(void) {
  char sub[300], keep[320];
  mksub(sub, sizeof sub, "fsize");
  snprintf(keep, sizeof keep, "%s/keep.json", sub);
  static const char old[] = "{\"old\":true,\"pad\":\"0123456789\"}\n";
  put(keep, old);
  kfm_session_t *s = stopped(2000); /* ~300 KB */
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl, small;
  CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &rl), 0);
  small = rl;
  small.rlim_cur = 8192;
  for (int named = 0; named < 2; named++) {
    kfm__outfile_no_tmpfile = named;
    CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &small), 0);
    errno = 0;
    int rc = kfm_session_export(s, keep);
    int e = errno;
    setrlimit(RLIMIT_FSIZE, &rl);
    KT_EIO(s, rc, keep, "File too large");
    CU_ASSERT_EQUAL(e, EFBIG);
    char *txt = kt_slurp(keep);
    CU_ASSERT_STRING_EQUAL(txt, old);
    free(txt);
    KT_LISTING(sub, "keep.json");
  }
  kfm__outfile_no_tmpfile = 0;
  signal(SIGXFSZ, prev);
  /* Within the limit again, it is replaced. */
  KT_OK(s, kfm_session_export(s, keep));
  char *txt = kt_slurp(keep);
  CU_ASSERT_TRUE(is_export(txt));
  free(txt);
  KT_LISTING(sub, "keep.json");
  kfm_session_destroy(s);
}

/* ---- killed mid-export ------------------------------------------------- */

/* The descriptor child pid has open on a file in folder d (not d itself),
 * with at least one byte written; -1 if none. */
static int child_out_fd(pid_t pid, const char *d) {
  char fdd[64], p[320], t[600];
  snprintf(fdd, sizeof fdd, "/proc/%d/fd", (int)pid);
  DIR *dd = opendir(fdd);
  if (dd == NULL) {
    return -1;
  }
  int found = -1;
  size_t dl = strlen(d);
  for (struct dirent *e; found < 0 && (e = readdir(dd)) != NULL;) {
    snprintf(p, sizeof p, "%s/%s", fdd, e->d_name);
    ssize_t n = readlink(p, t, sizeof t - 1);
    struct stat st;
    if (n > (ssize_t)dl + 1) {
      t[n] = '\0';
      if (strncmp(t, d, dl) == 0 && t[dl] == '/' && stat(p, &st) == 0 && S_ISREG(st.st_mode) &&
          st.st_size > 0) {
        found = atoi(e->d_name);
      }
    }
  }
  closedir(dd);
  return found;
}

/* A child exports ~60 MB over an earlier file; once it is caught with the
 * temporary open and partly written, it is stopped (so it is provably
 * mid-write), then killed.  The folder must hold the earlier file alone. */
static void killed_mid_export(int sig) {
  char sub[300], real[PATH_MAX], out[PATH_MAX + 20];
  snprintf(sub, sizeof sub, "%s/kill%d", dir, sig);
  CU_ASSERT_EQUAL_FATAL(mkdir(sub, 0755), 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(realpath(sub, real));
  snprintf(out, sizeof out, "%s/out.json", real);
  put(out, "{\"old\":true}\n");
  pid_t pid = fork();
  CU_ASSERT_FATAL(pid >= 0);
  if (pid == 0) {
    /* The session is made here: a parent's session is inert in a child. */
    kfm_session_t *s = traced(400000, NULL);
    kfm_session_stop(s);
    kfm_session_export(s, out);
    _exit(0);
  }
  int fd = -1, status = 0;
  double t0 = now_s();
  while (fd < 0 && now_s() - t0 < 120 && waitpid(pid, &status, WNOHANG) == 0) {
    fd = child_out_fd(pid, real);
    if (fd < 0) {
      usleep(200);
    }
  }
  if (fd < 0) {
    fprintf(stderr, "\nthe child's export was never caught mid-write\n");
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    CU_FAIL("export not caught mid-write");
    return;
  }
  CU_ASSERT_EQUAL(kill(pid, SIGSTOP), 0);
  CU_ASSERT_EQUAL(waitpid(pid, &status, WUNTRACED), pid);
  CU_ASSERT_TRUE(WIFSTOPPED(status));
  CU_ASSERT_EQUAL(child_out_fd(pid, real), fd); /* still writing */
  char l[4096];
  listing(sub, l, sizeof l);
  if (strcmp(l, "out.json") != 0) {
    fprintf(stderr, "\n  mid-write the folder holds: %s\n", l);
  }
  CU_ASSERT_STRING_EQUAL(l, "out.json"); /* the temporary has no name */
  kill(pid, sig);
  kill(pid, SIGCONT);
  CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
  CU_ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig);
  KT_LISTING(sub, "out.json");
  char *txt = kt_slurp(out);
  CU_ASSERT_STRING_EQUAL(txt, "{\"old\":true}\n");
  free(txt);
}

static void test_killed_sigkill(void) {
  killed_mid_export(SIGKILL);
}

static void test_killed_sigterm(void) {
  killed_mid_export(SIGTERM);
}

int main(void) {
  unsetenv("KFM_CONFIG");
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/kfm-export-fault-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  chmod(dir, 0755); /* the unprivileged child must reach its folder */
  static const struct kt_case cases[] = {
      {"output= to a FIFO with a reader: valid JSON, still a FIFO", test_fifo_reader},
      {"output= to a FIFO without a reader: KFM_EIO at once", test_fifo_no_reader},
      {"a FIFO reader that leaves: EPIPE, no SIGPIPE", test_fifo_reader_leaves},
      {"/dev/null stays a device; /dev/full gives ENOSPC", test_devices},
      {"symlinks written through; dangling, looping", test_symlinks},
      {"symlinks planted at temporary names: victim unchanged", test_planted},
      {"unwritable folder: KFM_EIO, earlier file intact", test_unwritable_folder},
      {"a directory or a missing folder as target", test_directory_and_missing},
      {"RLIMIT_FSIZE: EFBIG, earlier file intact, no temporary", test_fsize_limit},
      {"SIGKILL mid-export leaves no temporary", test_killed_sigkill},
      {"SIGTERM mid-export leaves no temporary", test_killed_sigterm},
      {NULL, NULL},
  };
  int rc = kt_run("export_fault", cases);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", dir, dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "could not remove %s\n", dir);
  }
  return rc;
}
