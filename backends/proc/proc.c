/*
 * proc.c - the "proc" backend: memory, CPU, page faults, context switches,
 * I/O and network bytes, read from /proc and getrusage(RUSAGE_THREAD).
 *
 * STANDARD reads the process RSS (/proc/self/statm) at every transition and
 * sampler tick.  DETAILED and above add, at transitions, the calling thread's
 * getrusage times, faults and switches, its /proc/thread-self/io byte counts
 * and the network namespace's /proc/net/dev byte totals; at ticks, the
 * process CPU time (/proc/self/stat), the network totals and the process
 * I/O bytes (/proc/self/io).  COMPREHENSIVE with a sampler reads the process
 * values at transitions from the sampler's cache instead (see "sampled
 * mode" below).  BASIC uses no metric at all.
 *
 * Files are opened once (per session; per thread for thread-self/io) and
 * re-read with pread(fd, buf, n, 0), which costs 1-6 us where open+read+close
 * costs 5.7 us and more (notes/floors.md).  Every path takes the prefix of
 * the backend's proc.root option (proc_root=) so tests can point it at captured trees under
 * tests/fixtures.  The text is parsed by the hand-written scanners below: no
 * stdio, no locale, no allocation on the hot path.
 *
 * Degradation: only statm is required; open fails with KFM_EIO when it cannot
 * be opened or does not parse.  /proc/self/stat, /proc/net/dev and
 * /proc/thread-self/io are hidden or restricted in some containers, so when
 * one of them cannot be opened (or does not parse at open), its metrics
 * read 0 for the whole session (or thread) instead of failing it.  This is
 * not reported: open's one-line note describes the read mode, and
 * thread_open has no channel for a note at all.
 * A read that fails later, after a good open, repeats the last good value of
 * that metric, so counters never step back to 0 and produce wild deltas.
 *
 * Sharing: statm, stat and net/dev fds are shared by every thread of the
 * session.  pread keeps no file offset so this is safe, but the kernel's
 * seq_file serialises concurrent reads of one open file on a mutex; per-thread
 * fds would avoid that at the price of 3 fds per thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RUSAGE_THREAD, GNU strerror_r, memrchr */
#endif

#include "proc.h"

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h> /* snprintf: open and probe only, never on the hot path */
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>


/* Indices in the transition vector.  STANDARD uses only the first entry. */
enum {
  PROC_T_RSS,
  PROC_T_CPU_USER,
  PROC_T_CPU_SYS,
  PROC_T_MINFLT,
  PROC_T_MAJFLT,
  PROC_T_VCSW,
  PROC_T_IVCSW,
  PROC_T_IO_READ,
  PROC_T_IO_WRITE,
  PROC_T_NET_RX,
  PROC_T_NET_TX,
  PROC_NTRANS
};

/* Indices in the sample vector.  STANDARD uses only the first entry. */
enum { PROC_S_RSS, PROC_S_CPU, PROC_S_NET_RX, PROC_S_NET_TX, PROC_S_IO_READ, PROC_S_IO_WRITE,
       PROC_NSAMPLE };

static const struct kfm__metric_def proc_transition_defs[PROC_NTRANS] = {
    [PROC_T_RSS] = {.name = "proc.rss", .unit = "bytes", .kind = KFM_METRIC_GAUGE,
                    .role = KFM_ROLE_RSS},
    [PROC_T_CPU_USER] = {.name = "proc.cpu_user", .unit = "ns", .kind = KFM_METRIC_COUNTER,
                         .role = KFM_ROLE_CPU_USER},
    [PROC_T_CPU_SYS] = {.name = "proc.cpu_sys", .unit = "ns", .kind = KFM_METRIC_COUNTER,
                        .role = KFM_ROLE_CPU_SYS},
    [PROC_T_MINFLT] = {.name = "proc.minflt", .unit = "count", .kind = KFM_METRIC_COUNTER},
    [PROC_T_MAJFLT] = {.name = "proc.majflt", .unit = "count", .kind = KFM_METRIC_COUNTER},
    [PROC_T_VCSW] = {.name = "proc.vcsw", .unit = "count", .kind = KFM_METRIC_COUNTER},
    [PROC_T_IVCSW] = {.name = "proc.ivcsw", .unit = "count", .kind = KFM_METRIC_COUNTER},
    [PROC_T_IO_READ] = {.name = "proc.io_read", .unit = "bytes", .kind = KFM_METRIC_COUNTER},
    [PROC_T_IO_WRITE] = {.name = "proc.io_write", .unit = "bytes", .kind = KFM_METRIC_COUNTER},
    [PROC_T_NET_RX] = {.name = "proc.net_rx", .unit = "bytes", .kind = KFM_METRIC_COUNTER},
    [PROC_T_NET_TX] = {.name = "proc.net_tx", .unit = "bytes", .kind = KFM_METRIC_COUNTER},
};

static const struct kfm__metric_def proc_sample_defs[PROC_NSAMPLE] = {
    [PROC_S_RSS] = {.name = "proc.rss", .unit = "bytes", .kind = KFM_METRIC_GAUGE,
                    .role = KFM_ROLE_RSS},
    [PROC_S_CPU] = {.name = "proc.cpu", .unit = "ns", .kind = KFM_METRIC_COUNTER},
    [PROC_S_NET_RX] = {.name = "proc.net_rx", .unit = "bytes", .kind = KFM_METRIC_COUNTER},
    [PROC_S_NET_TX] = {.name = "proc.net_tx", .unit = "bytes", .kind = KFM_METRIC_COUNTER},
    [PROC_S_IO_READ] = {.name = "proc.io_read", .unit = "bytes", .kind = KFM_METRIC_COUNTER},
    [PROC_S_IO_WRITE] = {.name = "proc.io_write", .unit = "bytes", .kind = KFM_METRIC_COUNTER},
};

/*
 * COMPREHENSIVE with a running sampler ("sampled" mode): a transition must
 * cost little more than one grouped counter read, so the process-wide
 * values (RSS, I/O, network) are the sampler's latest, published in
 * proc_state.cache, and cost one load each.  Thread CPU, faults and
 * switches come from the counter backend (perf software events) when one
 * this session opens provides thread CPU time (KFM_ROLE_CPU_TIME), else from
 * getrusage (0.35 us) as at DETAILED.
 */
enum { PROC_C_RSS, PROC_C_IO_READ, PROC_C_IO_WRITE, PROC_C_NET_RX, PROC_C_NET_TX, PROC_NCACHED };
static const struct kfm__metric_def proc_cached_defs[PROC_NCACHED] = {
    [PROC_C_RSS] = {.name = "proc.rss", .unit = "bytes", .kind = KFM_METRIC_GAUGE,
                    .role = KFM_ROLE_RSS},
    [PROC_C_IO_READ] = {.name = "proc.io_read", .unit = "bytes", .kind = KFM_METRIC_COUNTER},
    [PROC_C_IO_WRITE] = {.name = "proc.io_write", .unit = "bytes", .kind = KFM_METRIC_COUNTER},
    [PROC_C_NET_RX] = {.name = "proc.net_rx", .unit = "bytes", .kind = KFM_METRIC_COUNTER},
    [PROC_C_NET_TX] = {.name = "proc.net_tx", .unit = "bytes", .kind = KFM_METRIC_COUNTER},
};

/*
 * Read buffers, on the reading thread's stack.  statm is at most 7 numbers;
 * stat needs only its first 15 fields, and comm is at most 64 bytes escaped,
 * so a truncated read still holds them; io is 7 short lines.  net/dev grows
 * with the interface count and is read in chunks when it exceeds its buffer.
 */
#define PROC_STATM_BUF 256
#define PROC_STAT_BUF 1024
#define PROC_IO_BUF 512
#define PROC_NETDEV_BUF 4096

/* Which session fds are open: a zeroed state owns none. */
enum {
  PROC_HAVE_STATM = 1u << 0,
  PROC_HAVE_STAT = 1u << 1,
  PROC_HAVE_NETDEV = 1u << 2,
  PROC_HAVE_IO = 1u << 3
};

/* How transitions are read. */
enum {
  PROC_EXACT = 0,         /* every value read at the transition */
  PROC_SAMPLED = 1,       /* process values from the sampler's cache, thread values by getrusage */
  PROC_SAMPLED_NOCPU = 2  /* process values from the cache only: thread CPU from counters */
};

struct proc_state {
  int detailed;   /* level >= DETAILED: thread, I/O and network metrics too */
  int mode;       /* PROC_EXACT / PROC_SAMPLED / PROC_SAMPLED_NOCPU */
  unsigned have;  /* PROC_HAVE_* bits */
  int statm_fd;
  int stat_fd;
  int netdev_fd;
  int io_fd; /* /proc/self/io: process bytes, for the sampler */
  /* The sampler's latest values for sampled mode, written by the sampler
   * thread and read by every profiled thread. */
  _Atomic uint64_t cache[PROC_NCACHED];
  uint64_t page_size; /* bytes per page (sysconf, once in open) */
  uint64_t clk_tck;   /* clock ticks per second of stat's utime/stime */
  /* Last good sample values; only the sampler thread touches them. */
  uint64_t sample_last[PROC_NSAMPLE];
  /* <proc_root>/proc/thread-self/io, built once so thread_open only opens. */
  char thread_io_path[PATH_MAX];
};

struct proc_tstate {
  int have_io; /* io_fd is open; 0 in a zeroed state */
  int io_fd;
  uint64_t last[PROC_NTRANS]; /* last good transition values of this thread */
};

/* ---------------------------------------------------------------------- */
/* Scanners.  Buffers are not NUL-terminated: every loop checks end.       */

static int proc_is_digit(char c) {
  return c >= '0' && c <= '9';
}

static int proc_is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Reads one unsigned decimal after optional spaces/tabs and advances *pp past
 * it.  The number must end at whitespace or at end, so "12x" is malformed
 * rather than silently 12; values above UINT64_MAX are malformed too.
 */
static int proc_scan_u64(const char **pp, const char *end, uint64_t *out) {
  const char *p = *pp;
  uint64_t v = 0;
  while (p < end && (*p == ' ' || *p == '\t')) {
    p++;
  }
  if (p == end || !proc_is_digit(*p)) {
    return KFM_EIO;
  }
  do {
    uint64_t d = (uint64_t)(*p - '0');
    if (v > (UINT64_MAX - d) / 10) {
      return KFM_EIO;
    }
    v = v * 10 + d;
    p++;
  } while (p < end && proc_is_digit(*p));
  if (p < end && !proc_is_space(*p)) {
    return KFM_EIO;
  }
  *pp = p;
  *out = v;
  return 0;
}

/* Skips one space-separated token on the current line (stat's fields). */
static int proc_skip_token(const char **pp, const char *end) {
  const char *p = *pp;
  while (p < end && *p == ' ') {
    p++;
  }
  if (p == end || proc_is_space(*p)) {
    return KFM_EIO;
  }
  while (p < end && !proc_is_space(*p)) {
    p++;
  }
  *pp = p;
  return 0;
}

/* End of the line starting at p: its '\n', or end for a last unterminated line. */
static const char *proc_eol(const char *p, const char *end) {
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  return nl ? nl : end;
}

int kfm__proc_parse_statm_rss(const char *buf, size_t len, uint64_t *pages) {
  const char *p = buf;
  const char *end;
  uint64_t size, resident;
  if (buf == NULL) {
    return KFM_EIO;
  }
  end = buf + len;
  if (proc_scan_u64(&p, end, &size) != 0 || proc_scan_u64(&p, end, &resident) != 0) {
    return KFM_EIO;
  }
  *pages = resident;
  return 0;
}

int kfm__proc_parse_stat_cpu(const char *buf, size_t len, uint64_t *utime_ticks,
                             uint64_t *stime_ticks) {
  const char *p, *end, *rparen;
  uint64_t ut, st;
  if (buf == NULL) {
    return KFM_EIO;
  }
  end = buf + len;
  /*
   * comm (field 2) is the raw thread name in parentheses and may contain
   * spaces and ')'.  Every field after it is numeric or a state letter, so
   * the last ')' in the text is the one that closes comm.
   */
  rparen = memrchr(buf, ')', len);
  if (rparen == NULL || memchr(buf, '(', (size_t)(rparen - buf)) == NULL) {
    return KFM_EIO;
  }
  p = rparen + 1;
  /* Fields 3 (state) to 13 (cmajflt): skipped as tokens since tty_nr and tpgid may be -1. */
  for (int i = 3; i <= 13; i++) {
    if (proc_skip_token(&p, end) != 0) {
      return KFM_EIO;
    }
  }
  if (proc_scan_u64(&p, end, &ut) != 0 || proc_scan_u64(&p, end, &st) != 0) {
    return KFM_EIO;
  }
  *utime_ticks = ut;
  *stime_ticks = st;
  return 0;
}

int kfm__proc_parse_io(const char *buf, size_t len, uint64_t *rchar, uint64_t *wchar,
                       uint64_t *read_bytes, uint64_t *write_bytes) {
  static const struct {
    const char *key;
    size_t len;
  } keys[4] = {
      {"rchar:", sizeof "rchar:" - 1},
      {"wchar:", sizeof "wchar:" - 1},
      {"read_bytes:", sizeof "read_bytes:" - 1},
      {"write_bytes:", sizeof "write_bytes:" - 1},
  };
  uint64_t v[4] = {0, 0, 0, 0};
  unsigned found = 0;
  const char *p = buf;
  const char *end;
  if (buf == NULL) {
    return KFM_EIO;
  }
  end = buf + len;
  while (p < end) {
    const char *eol = proc_eol(p, end);
    /* Keys match at the start of a line so "cancelled_write_bytes:" is not "write_bytes:". */
    for (unsigned k = 0; k < 4; k++) {
      if ((size_t)(eol - p) >= keys[k].len && memcmp(p, keys[k].key, keys[k].len) == 0) {
        const char *q = p + keys[k].len;
        if (proc_scan_u64(&q, eol, &v[k]) != 0) {
          return KFM_EIO;
        }
        while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r')) {
          q++;
        }
        if (q != eol) {
          return KFM_EIO;
        }
        found |= 1u << k;
        break;
      }
    }
    p = eol < end ? eol + 1 : end;
  }
  if (found != 0xfu) {
    return KFM_EIO;
  }
  if (rchar) {
    *rchar = v[0];
  }
  if (wchar) {
    *wchar = v[1];
  }
  if (read_bytes) {
    *read_bytes = v[2];
  }
  if (write_bytes) {
    *write_bytes = v[3];
  }
  return 0;
}

/*
 * Adds the receive and transmit bytes of the lines in [p, end) to *rx and *tx,
 * first skipping *skip header lines (decremented, so the count carries over
 * when the file is read in chunks that end on a line boundary).  A line is
 * "name:" then at least 9 numbers: receive bytes is the 1st, transmit bytes
 * the 9th.  Blank lines are ignored.
 */
static int proc_netdev_lines(const char *p, const char *end, unsigned *skip, uint64_t *rx,
                             uint64_t *tx) {
  while (p < end) {
    const char *eol = proc_eol(p, end);
    const char *q = p;
    while (q < eol && proc_is_space(*q)) {
      q++;
    }
    if (*skip > 0) {
      /* Both header lines have '|' column separators; anything else is not net/dev. */
      if (memchr(p, '|', (size_t)(eol - p)) == NULL) {
        return KFM_EIO;
      }
      (*skip)--;
    } else if (q < eol) {
      /* Names are right-aligned to 6 columns, so a long one has no space after ':'. */
      const char *colon = memchr(q, ':', (size_t)(eol - q));
      uint64_t f[9];
      if (colon == NULL || colon == q) {
        return KFM_EIO;
      }
      q = colon + 1;
      for (int i = 0; i < 9; i++) {
        if (proc_scan_u64(&q, eol, &f[i]) != 0) {
          return KFM_EIO;
        }
      }
      /* The remaining columns must be numbers too, or this is not the format we know. */
      while (q < eol) {
        uint64_t ignored;
        while (q < eol && proc_is_space(*q)) {
          q++;
        }
        if (q < eol && proc_scan_u64(&q, eol, &ignored) != 0) {
          return KFM_EIO;
        }
      }
      *rx += f[0];
      *tx += f[8];
    }
    p = eol < end ? eol + 1 : end;
  }
  return 0;
}

int kfm__proc_parse_netdev(const char *buf, size_t len, uint64_t *rx, uint64_t *tx) {
  unsigned skip = 2;
  uint64_t r = 0, t = 0;
  if (buf == NULL || proc_netdev_lines(buf, buf + len, &skip, &r, &t) != 0 || skip != 0) {
    return KFM_EIO;
  }
  *rx = r;
  *tx = t;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* File readers.  Each is one pread from offset 0 on a kept fd, except     */
/* net/dev when it is larger than its buffer.                              */

static ssize_t proc_pread(int fd, char *buf, size_t cap, off_t off) {
  ssize_t n;
  do {
    n = pread(fd, buf, cap, off);
  } while (n < 0 && errno == EINTR);
  return n;
}

static int proc_get_pages(int fd, uint64_t *pages) {
  char buf[PROC_STATM_BUF];
  ssize_t n = proc_pread(fd, buf, sizeof buf, 0);
  if (n <= 0) {
    return KFM_EIO;
  }
  return kfm__proc_parse_statm_rss(buf, (size_t)n, pages);
}

static int proc_get_stat(int fd, uint64_t *utime, uint64_t *stime) {
  char buf[PROC_STAT_BUF];
  ssize_t n = proc_pread(fd, buf, sizeof buf, 0);
  if (n <= 0) {
    return KFM_EIO;
  }
  return kfm__proc_parse_stat_cpu(buf, (size_t)n, utime, stime);
}

static int proc_get_io(int fd, uint64_t *rchar, uint64_t *wchar) {
  char buf[PROC_IO_BUF];
  ssize_t n = proc_pread(fd, buf, sizeof buf, 0);
  if (n <= 0) {
    return KFM_EIO;
  }
  return kfm__proc_parse_io(buf, (size_t)n, rchar, wchar, NULL, NULL);
}

/*
 * net/dev is one pread while it fits the buffer (seq_file fills a read as
 * far as the file goes, so a short read is the end).  A full buffer may end
 * inside a line: the complete lines are summed and the next pread starts at
 * the first incomplete one.  Interfaces that appear or vanish between the
 * chunks can then be missed or counted twice; that needs more than ~30
 * interfaces and a change within microseconds.
 */
static int proc_get_netdev(int fd, uint64_t *rx, uint64_t *tx) {
  char buf[PROC_NETDEV_BUF];
  unsigned skip = 2;
  uint64_t r = 0, t = 0;
  off_t off = 0;
  for (;;) {
    ssize_t n = proc_pread(fd, buf, sizeof buf, off);
    const char *last;
    if (n < 0) {
      return KFM_EIO;
    }
    if ((size_t)n < sizeof buf) {
      if (proc_netdev_lines(buf, buf + n, &skip, &r, &t) != 0 || skip != 0) {
        return KFM_EIO;
      }
      break;
    }
    last = memrchr(buf, '\n', sizeof buf);
    if (last == NULL || proc_netdev_lines(buf, last + 1, &skip, &r, &t) != 0) {
      return KFM_EIO;
    }
    off += (off_t)(last + 1 - buf);
  }
  *rx = r;
  *tx = t;
  return 0;
}

/* Clock ticks to ns without overflow for any realistic tick count. */
static uint64_t proc_ticks_ns(uint64_t ticks, uint64_t hz) {
  return ticks / hz * 1000000000u + ticks % hz * 1000000000u / hz;
}

/*
 * getrusage(RUSAGE_THREAD) reports the thread's CPU time as last accounted,
 * which for a running thread moves only at scheduler ticks (4 ms here) or
 * switches.  Reading the thread CPU clock first makes the kernel account the
 * running slice now (~0.55 us), so the split that follows is current.
 */
static void proc_sync_cputime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
}

static uint64_t proc_timeval_ns(const struct timeval *tv) {
  return (uint64_t)tv->tv_sec * 1000000000u + (uint64_t)tv->tv_usec * 1000u;
}

/* ---------------------------------------------------------------------- */
/* Backend hooks.                                                          */

static int proc_probe(char *reason, size_t len) {
  char eb[128];
  if (access("/proc/self/statm", R_OK) == 0) {
    if (len) {
      reason[0] = '\0';
    }
    return 1;
  }
  if (len) {
    snprintf(reason, len, "cannot read /proc/self/statm: %s", strerror_r(errno, eb, sizeof eb));
  }
  return 0;
}

/* Writes open's failure message; the core may pass no buffer. */
__attribute__((format(printf, 2, 3))) static void proc_seterr(struct kfm__backend_ctx *ctx,
                                                              const char *fmt, ...) {
  va_list ap;
  if (ctx->errbuf == NULL || ctx->errlen == 0) {
    return;
  }
  va_start(ap, fmt);
  vsnprintf(ctx->errbuf, ctx->errlen, fmt, ap);
  va_end(ap);
}

/* Builds root+rel into path and opens it; -1 with errno set on failure. */
static int proc_open_path(const char *root, const char *rel, char *path, size_t cap) {
  int n = snprintf(path, cap, "%s%s", root, rel);
  if (n < 0 || (size_t)n >= cap) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return open(path, O_RDONLY | O_CLOEXEC);
}

/*
 * Opens a file the level can do without and checks that it parses; -1 when
 * either fails, and its metrics then read 0 (see the top of the file).
 */
static int proc_open_optional(const char *root, const char *rel,
                              int (*get)(int, uint64_t *, uint64_t *)) {
  char path[PATH_MAX];
  uint64_t a, b;
  int fd = proc_open_path(root, rel, path, sizeof path);
  if (fd >= 0 && get(fd, &a, &b) != 0) {
    close(fd);
    fd = -1;
  }
  return fd;
}

static void proc_close(void *state) {
  struct proc_state *st = state;
  if (st->have & PROC_HAVE_STATM) {
    close(st->statm_fd);
  }
  if (st->have & PROC_HAVE_STAT) {
    close(st->stat_fd);
  }
  if (st->have & PROC_HAVE_NETDEV) {
    close(st->netdev_fd);
  }
  if (st->have & PROC_HAVE_IO) {
    close(st->io_fd);
  }
  st->have = 0;
}

static void proc_sample(void *state, uint64_t *out);

static int proc_open(void *state, struct kfm__backend_ctx *ctx) {
  struct proc_state *st = state;
  const char *root = ctx->proc_root ? ctx->proc_root : "";
  char path[PATH_MAX];
  char eb[128];
  uint64_t pages;
  long v;
  int fd, n;

  st->have = 0;
  st->detailed = ctx->level >= KFM_LEVEL_DETAILED;
  memset(st->sample_last, 0, sizeof st->sample_last);
  ctx->n_transition = 0;
  ctx->transition = NULL;
  ctx->n_sample = 0;
  ctx->sample = NULL;
  if (ctx->level < KFM_LEVEL_STANDARD) {
    return 0; /* BASIC is time only: no file is needed */
  }

  v = sysconf(_SC_PAGESIZE);
  if (v <= 0) {
    proc_seterr(ctx, "proc: sysconf(_SC_PAGESIZE) failed");
    return KFM_EIO;
  }
  st->page_size = (uint64_t)v;

  fd = proc_open_path(root, "/proc/self/statm", path, sizeof path);
  if (fd < 0) {
    proc_seterr(ctx, "proc: cannot open %s: %s", path, strerror_r(errno, eb, sizeof eb));
    return KFM_EIO;
  }
  /* Read it once now so a proc_root that points at the wrong tree fails here, not silently later. */
  if (proc_get_pages(fd, &pages) != 0) {
    proc_seterr(ctx, "proc: %s: cannot read a resident page count (want \"size resident ...\")",
                path);
    close(fd);
    return KFM_EIO;
  }
  st->statm_fd = fd;
  st->have |= PROC_HAVE_STATM;

  if (!st->detailed) {
    ctx->n_transition = 1;
    ctx->transition = proc_transition_defs;
    ctx->n_sample = 1;
    ctx->sample = proc_sample_defs;
    return 0;
  }

  v = sysconf(_SC_CLK_TCK);
  st->clk_tck = v > 0 ? (uint64_t)v : 100; /* 100 is the USER_HZ of every Linux ABI */

  fd = proc_open_optional(root, "/proc/self/stat", proc_get_stat);
  if (fd >= 0) {
    st->stat_fd = fd;
    st->have |= PROC_HAVE_STAT;
  }
  fd = proc_open_optional(root, "/proc/net/dev", proc_get_netdev);
  if (fd >= 0) {
    st->netdev_fd = fd;
    st->have |= PROC_HAVE_NETDEV;
  }
  fd = proc_open_optional(root, "/proc/self/io", proc_get_io);
  if (fd >= 0) {
    st->io_fd = fd;
    st->have |= PROC_HAVE_IO;
  }
  n = snprintf(st->thread_io_path, sizeof st->thread_io_path, "%s/proc/thread-self/io", root);
  if (n < 0 || (size_t)n >= sizeof st->thread_io_path) {
    st->thread_io_path[0] = '\0'; /* thread_open then fails to open it and degrades */
  }

  ctx->n_transition = PROC_NTRANS;
  ctx->transition = proc_transition_defs;
  ctx->n_sample = PROC_NSAMPLE;
  ctx->sample = proc_sample_defs;
  st->mode = PROC_EXACT;
  if (ctx->proc_reads == KFM_PROC_READS_SAMPLED && !(ctx->rate_hz > 0)) {
    proc_seterr(ctx, "proc_reads=sampled needs the sampler (rate is off)");
    proc_close(st);
    return KFM_EBADVALUE;
  }
  int sampled = ctx->proc_reads == KFM_PROC_READS_SAMPLED ||
                (ctx->proc_reads == KFM_PROC_READS_AUTO &&
                 ctx->level >= KFM_LEVEL_COMPREHENSIVE && ctx->rate_hz > 0);
  if (sampled) {
    /* A counter backend that provides thread CPU time counts it with its
     * software events, and the thread's faults and switches with it (at
     * COMPREHENSIVE, where counters are opened). */
    int counters = ctx->level >= KFM_LEVEL_COMPREHENSIVE &&
                   (ctx->provided & KFM_ROLE_BIT(KFM_ROLE_CPU_TIME));
    st->mode = counters ? PROC_SAMPLED_NOCPU : PROC_SAMPLED;
    if (counters) {
      ctx->n_transition = PROC_NCACHED;
      ctx->transition = proc_cached_defs;
    }
    /* Fill the cache now: the first transitions come before the first tick. */
    uint64_t first[PROC_NSAMPLE];
    proc_sample(st, first);
    if (ctx->note) {
      snprintf(ctx->note, ctx->notelen,
               "rss, io and network at transitions are the sampler's latest values (%.0f Hz)%s",
               ctx->rate_hz,
               counters ? "; thread CPU, faults and switches come from the counters" : "");
    }
  }
  return 0;
}

/*
 * thread-self resolves at open time, so the kept fd keeps reading this
 * thread's counters whichever thread later closes it.  A thread whose io
 * file is unavailable still profiles; its io metrics read 0.
 */
static int proc_thread_open(void *state, void *tstate) {
  const struct proc_state *st = state;
  struct proc_tstate *ts = tstate;
  uint64_t a, b;
  int fd;
  ts->have_io = 0;
  memset(ts->last, 0, sizeof ts->last);
  if (!st->detailed || st->thread_io_path[0] == '\0') {
    return 0;
  }
  fd = open(st->thread_io_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return 0;
  }
  if (proc_get_io(fd, &a, &b) != 0) {
    close(fd);
    return 0;
  }
  ts->io_fd = fd;
  ts->have_io = 1;
  return 0;
}

static void proc_thread_close(void *state, void *tstate) {
  struct proc_tstate *ts = tstate;
  (void)state;
  if (ts->have_io) {
    close(ts->io_fd);
    ts->have_io = 0;
  }
}

/*
 * Hot path.  Starts from the thread's last good values so a source that
 * fails now repeats its previous value; then 1 (STANDARD) or up to 4
 * (DETAILED) syscalls.
 */
static void proc_read(void *state, void *tstate, uint64_t *out) {
  struct proc_state *st = state;
  struct proc_tstate *ts = tstate;
  const size_t n = st->detailed ? PROC_NTRANS : 1;
  uint64_t a, b;

  if (st->mode == PROC_SAMPLED_NOCPU) {
    for (unsigned i = 0; i < PROC_NCACHED; i++) {
      out[i] = atomic_load_explicit(&st->cache[i], memory_order_relaxed);
    }
    return;
  }
  if (st->mode == PROC_SAMPLED) {
    struct rusage ru;
    out[PROC_T_RSS] = atomic_load_explicit(&st->cache[PROC_C_RSS], memory_order_relaxed);
    out[PROC_T_IO_READ] = atomic_load_explicit(&st->cache[PROC_C_IO_READ], memory_order_relaxed);
    out[PROC_T_IO_WRITE] = atomic_load_explicit(&st->cache[PROC_C_IO_WRITE], memory_order_relaxed);
    out[PROC_T_NET_RX] = atomic_load_explicit(&st->cache[PROC_C_NET_RX], memory_order_relaxed);
    out[PROC_T_NET_TX] = atomic_load_explicit(&st->cache[PROC_C_NET_TX], memory_order_relaxed);
    proc_sync_cputime();
    if (getrusage(RUSAGE_THREAD, &ru) == 0) {
      out[PROC_T_CPU_USER] = proc_timeval_ns(&ru.ru_utime);
      out[PROC_T_CPU_SYS] = proc_timeval_ns(&ru.ru_stime);
      out[PROC_T_MINFLT] = (uint64_t)ru.ru_minflt;
      out[PROC_T_MAJFLT] = (uint64_t)ru.ru_majflt;
      out[PROC_T_VCSW] = (uint64_t)ru.ru_nvcsw;
      out[PROC_T_IVCSW] = (uint64_t)ru.ru_nivcsw;
    } else if (ts) {
      memcpy(out + PROC_T_CPU_USER, ts->last + PROC_T_CPU_USER, 6 * sizeof *out);
    }
    if (ts) {
      memcpy(ts->last, out, PROC_NTRANS * sizeof *out);
    }
    return;
  }

  if (ts) {
    memcpy(out, ts->last, n * sizeof *out);
  } else {
    memset(out, 0, n * sizeof *out);
  }
  if (proc_get_pages(st->statm_fd, &a) == 0) {
    out[PROC_T_RSS] = a * st->page_size;
  }
  if (st->detailed) {
    struct rusage ru;
    proc_sync_cputime();
    if (getrusage(RUSAGE_THREAD, &ru) == 0) {
      out[PROC_T_CPU_USER] = proc_timeval_ns(&ru.ru_utime);
      out[PROC_T_CPU_SYS] = proc_timeval_ns(&ru.ru_stime);
      out[PROC_T_MINFLT] = (uint64_t)ru.ru_minflt;
      out[PROC_T_MAJFLT] = (uint64_t)ru.ru_majflt;
      out[PROC_T_VCSW] = (uint64_t)ru.ru_nvcsw;
      out[PROC_T_IVCSW] = (uint64_t)ru.ru_nivcsw;
    }
    if (ts && ts->have_io && proc_get_io(ts->io_fd, &a, &b) == 0) {
      out[PROC_T_IO_READ] = a;
      out[PROC_T_IO_WRITE] = b;
    }
    if ((st->have & PROC_HAVE_NETDEV) && proc_get_netdev(st->netdev_fd, &a, &b) == 0) {
      out[PROC_T_NET_RX] = a;
      out[PROC_T_NET_TX] = b;
    }
  }
  if (ts) {
    memcpy(ts->last, out, n * sizeof *out);
  }
}

/* Sampler thread: process-wide values only, with the same last-good rule. */
static void proc_sample(void *state, uint64_t *out) {
  struct proc_state *st = state;
  const size_t n = st->detailed ? PROC_NSAMPLE : 1;
  uint64_t a, b;

  memcpy(out, st->sample_last, n * sizeof *out);
  if (proc_get_pages(st->statm_fd, &a) == 0) {
    out[PROC_S_RSS] = a * st->page_size;
  }
  if (st->detailed) {
    if ((st->have & PROC_HAVE_STAT) && proc_get_stat(st->stat_fd, &a, &b) == 0) {
      out[PROC_S_CPU] = proc_ticks_ns(a + b, st->clk_tck);
    }
    if ((st->have & PROC_HAVE_NETDEV) && proc_get_netdev(st->netdev_fd, &a, &b) == 0) {
      out[PROC_S_NET_RX] = a;
      out[PROC_S_NET_TX] = b;
    }
    if ((st->have & PROC_HAVE_IO) && proc_get_io(st->io_fd, &a, &b) == 0) {
      out[PROC_S_IO_READ] = a;
      out[PROC_S_IO_WRITE] = b;
    }
  }
  memcpy(st->sample_last, out, n * sizeof *out);
  if (st->mode != PROC_EXACT) {
    atomic_store_explicit(&st->cache[PROC_C_RSS], out[PROC_S_RSS], memory_order_relaxed);
    atomic_store_explicit(&st->cache[PROC_C_IO_READ], out[PROC_S_IO_READ], memory_order_relaxed);
    atomic_store_explicit(&st->cache[PROC_C_IO_WRITE], out[PROC_S_IO_WRITE], memory_order_relaxed);
    atomic_store_explicit(&st->cache[PROC_C_NET_RX], out[PROC_S_NET_RX], memory_order_relaxed);
    atomic_store_explicit(&st->cache[PROC_C_NET_TX], out[PROC_S_NET_TX], memory_order_relaxed);
  }
}

/* proc.root=<dir> (older spelling proc_root=): read <dir>/proc instead of
 * /proc, for captured trees. */
static const struct kfm__backend_option proc_options[] = {
    {"root", "proc_root", KFM__OPT_PATH, offsetof(kfm_config_t, proc_root),
     sizeof(((kfm_config_t *)0)->proc_root), NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

const struct kfm__backend kfm__backend_proc = {
    .abi = KFM_BACKEND_ABI,
    .name = "proc",
    .caps = KFM_CAP_TRANSITION | KFM_CAP_SAMPLE,
    .min_level = KFM_LEVEL_STANDARD,
    .state_size = sizeof(struct proc_state),
    .thread_state_size = sizeof(struct proc_tstate),
    .probe = proc_probe,
    .init = NULL,
    .open = proc_open,
    .thread_open = proc_thread_open,
    .thread_close = proc_thread_close,
    .read = proc_read,
    .sample = proc_sample,
    .close = proc_close,
    .options = proc_options,
};
