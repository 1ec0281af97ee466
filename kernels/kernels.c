/*
 * kernels.c - the synthetic workloads declared in kfm_kernels.h.
 *
 * Each kernel is written so that the amount of the resource it consumes is
 * set by its arguments and not by the compiler or the allocator: anonymous
 * mmap instead of malloc for memory, absolute-deadline sleeps, CPU spins that
 * read the thread CPU clock, a loopback transfer whose receiver counts and
 * checks every byte.  Errors are negative errno values.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, mkostemp */
#endif
#include "kfm_kernels.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------------------------- */
/* Time helpers                                                             */

static int64_t kk_now_ns(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int kk_ms_valid(double ms) {
  return isfinite(ms) && ms >= 0.0;
}

/* ---------------------------------------------------------------------- */
/* CPU and wall time                                                        */

/* The spin's result is stored here so the arithmetic has an observable effect
 * and cannot be deleted.  Racy stores from several threads are harmless: only
 * the act of storing matters, never the value. */
/* Keeps the busy loop's result alive; busy threads run concurrently, so
 * the store is atomic (relaxed) rather than a racy volatile. */
static _Atomic uint64_t kk_sink;

int kfmk_busy_ms(double ms) {
  if (!kk_ms_valid(ms))
    return -EINVAL;
  const int64_t budget = (int64_t)(ms * 1e6);
  const int64_t start = kk_now_ns(CLOCK_THREAD_CPUTIME_ID);
  uint64_t x = (uint64_t)start | 1;
  /* Reading the thread CPU clock is a system call here (~0.5 us), so check it
   * once per chunk of a few microseconds of xorshift/multiply work: overhead
   * stays small and the overshoot is bounded by one chunk. */
  while (kk_now_ns(CLOCK_THREAD_CPUTIME_ID) - start < budget) {
    for (int i = 0; i < 2048; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      x *= 0x9E3779B97F4A7C15ull;
    }
    atomic_store_explicit(&kk_sink, x, memory_order_relaxed);
  }
  return 0;
}

int kfmk_sleep_ms(double ms) {
  if (!kk_ms_valid(ms))
    return -EINVAL;
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  int64_t ns = (int64_t)deadline.tv_nsec + (int64_t)(ms * 1e6);
  deadline.tv_sec += (time_t)(ns / 1000000000);
  deadline.tv_nsec = (long)(ns % 1000000000);
  /* An absolute deadline makes a restart after EINTR resume toward the same
   * instant instead of sleeping the full amount again.  clock_nanosleep
   * returns the error number rather than setting errno. */
  int rc;
  while ((rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL)) == EINTR)
    ;
  return -rc;
}

/* ---------------------------------------------------------------------- */
/* Memory                                                                   */

/* Map len bytes of private anonymous memory with transparent huge pages
 * disabled, so every page is faulted in (and counted in RSS) individually. */
static int kk_map(size_t len, unsigned char **out) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return -errno;
#ifdef MADV_NOHUGEPAGE
  /* Failure only means THP may merge faults; the byte counts stay right. */
  (void)madvise(p, len, MADV_NOHUGEPAGE);
#endif
  *out = p;
  return 0;
}

static void kk_touch(unsigned char *p, size_t len, size_t stride) {
  /* Volatile stores: the compiler may not drop writes to memory that is
   * unmapped right afterwards. */
  volatile unsigned char *v = p;
  for (size_t off = 0; off < len; off += stride)
    v[off] = (unsigned char)(off / stride + 1);
}

int kfmk_touch_mb(size_t mb, int retain, void **keep, size_t *pages) {
  if (keep)
    *keep = NULL;
  if (pages)
    *pages = 0;
  if ((retain && !keep) || mb > SIZE_MAX / 2 >> 20)
    return -EINVAL;
  if (mb == 0)
    return 0;
  const size_t len = mb << 20;
  unsigned char *p;
  int rc = kk_map(len, &p);
  if (rc)
    return rc;
  kk_touch(p, len, KFMK_TOUCH_STRIDE);
  if (pages)
    *pages = mb * KFMK_PAGES_PER_MB;
  if (retain) {
    *keep = p;
    return 0;
  }
  return munmap(p, len) ? -errno : 0;
}

int kfmk_release(void **keep, size_t mb) {
  if (!keep || !*keep)
    return 0;
  if (mb == 0 || mb > SIZE_MAX / 2 >> 20)
    return -EINVAL;
  if (munmap(*keep, mb << 20))
    return -errno;
  *keep = NULL;
  return 0;
}

int kfmk_page_faults(size_t n) {
  if (n == 0)
    return 0;
  const long ps = sysconf(_SC_PAGESIZE);
  const size_t page = ps > 0 ? (size_t)ps : 4096;
  if (n > SIZE_MAX / 2 / page)
    return -EINVAL;
  const size_t len = n * page;
  unsigned char *p;
  int rc = kk_map(len, &p);
  if (rc)
    return rc;
  kk_touch(p, len, page);
  return munmap(p, len) ? -errno : 0;
}

/* ---------------------------------------------------------------------- */
/* Memory bandwidth                                                         */

int kfmk_omp_triad(size_t mb, int threads, int reps, double *checksum) {
  if (checksum)
    *checksum = 0.0;
  if (!checksum || reps < 1 || mb > SIZE_MAX / 2 >> 20)
    return -EINVAL;
  const size_t n = KFMK_TRIAD_ELEMS(mb);
  if (n == 0)
    return -EINVAL;
  double *a = malloc(n * sizeof *a);
  double *b = malloc(n * sizeof *b);
  double *c = malloc(n * sizeof *c);
  if (!a || !b || !c) {
    free(a);
    free(b);
    free(c);
    return -ENOMEM;
  }
#ifdef _OPENMP
  const int nt = threads > 0 ? threads : omp_get_max_threads();
#else
  (void)threads;
#endif
  /* Initialise with the same static schedule as the triad so that each page
   * is first touched by the thread that later streams it (NUMA placement). */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
  for (size_t i = 0; i < n; i++) {
    a[i] = 0.0;
    b[i] = KFMK_TRIAD_B(i);
    c[i] = KFMK_TRIAD_C(i);
  }
  const double s = KFMK_TRIAD_S;
  double total = 0.0;
  for (int r = 0; r < reps; r++) {
    double sum = 0.0;
    /* Summing a[] in the same loop makes every repetition's stores feed the
     * checksum, so none can be elided.  All terms are small integers, so the
     * reduction is exact in any order. */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) reduction(+ : sum)
#endif
    for (size_t i = 0; i < n; i++) {
      a[i] = b[i] + s * c[i];
      sum += a[i];
    }
    total += sum;
  }
  free(a);
  free(b);
  free(c);
  *checksum = total;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Loopback TCP                                                             */

/* Payload byte at stream offset off; the receiver checks every byte. */
static unsigned char kk_pattern(uint64_t off) {
  return (unsigned char)(off % 251);
}

#define KK_CHUNK 65536

struct kk_rx {
  int fd;
  size_t want;
  int64_t deadline; /* CLOCK_MONOTONIC ns */
  size_t got;
  int rc;
};

static void *kk_receiver(void *arg) {
  struct kk_rx *rx = arg;
  unsigned char *buf = malloc(KK_CHUNK);
  if (!buf) {
    rx->rc = -ENOMEM;
    return NULL;
  }
  rx->rc = 0;
  while (rx->got < rx->want) {
    if (kk_now_ns(CLOCK_MONOTONIC) > rx->deadline) {
      rx->rc = -ETIMEDOUT;
      break;
    }
    ssize_t r = recv(rx->fd, buf, KK_CHUNK, 0);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      rx->rc = (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -errno;
      break;
    }
    if (r == 0) { /* sender closed early */
      rx->rc = -EIO;
      break;
    }
    for (ssize_t i = 0; i < r; i++) {
      if (buf[i] != kk_pattern(rx->got + (size_t)i)) {
        rx->rc = -EIO;
        break;
      }
    }
    if (rx->rc)
      break;
    rx->got += (size_t)r;
  }
  /* Unblock a sender stuck on a full window if we stop early. */
  if (rx->rc)
    shutdown(rx->fd, SHUT_RDWR);
  free(buf);
  return NULL;
}

static int kk_set_timeouts(int fd) {
  struct timeval tv = {.tv_sec = KFMK_TCP_TIMEOUT_S, .tv_usec = 0};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) ||
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv))
    return -errno;
  return 0;
}

static void kk_close(int *fd) {
  if (*fd >= 0)
    close(*fd);
  *fd = -1;
}

/* Connect a TCP pair over 127.0.0.1: *tx is the connecting end, *rx the
 * accepted one.  The listening socket is closed before returning. */
static int kk_tcp_pair(int *tx, int *rx) {
  int lfd = -1, cfd = -1, afd = -1, rc = 0;
  struct sockaddr_in addr;
  socklen_t alen = sizeof addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0; /* ephemeral */

  lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0)
    return -errno;
  /* SO_RCVTIMEO on the listener bounds accept(). */
  if ((rc = kk_set_timeouts(lfd)))
    goto fail;
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 1) ||
      getsockname(lfd, (struct sockaddr *)&addr, &alen)) {
    rc = -errno;
    goto fail;
  }
  cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (cfd < 0) {
    rc = -errno;
    goto fail;
  }
  /* SO_SNDTIMEO bounds connect() too.  On loopback the handshake completes
   * against the listen backlog, so connect returns before accept runs. */
  if ((rc = kk_set_timeouts(cfd)))
    goto fail;
  while (connect(cfd, (struct sockaddr *)&addr, sizeof addr)) {
    if (errno != EINTR) {
      rc = errno == EINPROGRESS ? -ETIMEDOUT : -errno;
      goto fail;
    }
  }
  while ((afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
    if (errno != EINTR) {
      rc = (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -errno;
      goto fail;
    }
  }
  if ((rc = kk_set_timeouts(afd)))
    goto fail;
  kk_close(&lfd);
  *tx = cfd;
  *rx = afd;
  return 0;
fail:
  kk_close(&afd);
  kk_close(&cfd);
  kk_close(&lfd);
  return rc;
}

int kfmk_loopback_tcp(size_t bytes) {
  int tx = -1, rxfd = -1;
  int rc = kk_tcp_pair(&tx, &rxfd);
  if (rc)
    return rc;
  const int64_t deadline = kk_now_ns(CLOCK_MONOTONIC) + (int64_t)KFMK_TCP_TIMEOUT_S * 1000000000;
  struct kk_rx rx = {.fd = rxfd, .want = bytes, .deadline = deadline};
  unsigned char *buf = malloc(KK_CHUNK);
  if (!buf) {
    rc = -ENOMEM;
    goto out;
  }
  pthread_t th;
  int perr = pthread_create(&th, NULL, kk_receiver, &rx);
  if (perr) {
    rc = -perr;
    goto out;
  }
  size_t sent = 0;
  while (sent < bytes) {
    if (kk_now_ns(CLOCK_MONOTONIC) > deadline) {
      rc = -ETIMEDOUT;
      break;
    }
    size_t len = bytes - sent < KK_CHUNK ? bytes - sent : KK_CHUNK;
    for (size_t i = 0; i < len; i++)
      buf[i] = kk_pattern(sent + i);
    /* MSG_NOSIGNAL: a receiver that gave up must not kill us with SIGPIPE. */
    ssize_t w = send(tx, buf, len, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      rc = (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -errno;
      break;
    }
    sent += (size_t)w;
  }
  /* On failure, end the stream so the receiver sees EOF instead of waiting
   * for its timeout. */
  if (rc)
    shutdown(tx, SHUT_WR);
  pthread_join(th, NULL);
  if (!rc)
    rc = rx.rc;
  if (!rc && rx.got != bytes)
    rc = -EIO;
out:
  free(buf);
  kk_close(&tx);
  kk_close(&rxfd);
  return rc;
}

/* ---------------------------------------------------------------------- */
/* File I/O                                                                 */

int kfmk_file_fsync(const char *dir, size_t bytes) {
  if (!dir || !*dir) {
    const char *t = getenv("TMPDIR");
    dir = t && *t ? t : "/tmp";
  }
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/kfmk-fsync-XXXXXX", dir);
  if (n < 0 || (size_t)n >= sizeof path)
    return -ENAMETOOLONG;
  int fd = mkostemp(path, O_CLOEXEC);
  if (fd < 0)
    return -errno;
  /* Unlink only after fsync: unlinking first would let the kernel cancel the
   * writeback (cancelled_write_bytes in /proc/self/io) and the write would no
   * longer reach the device.  Every path below ends at the unlink. */
  int rc = 0;
  unsigned char *buf = malloc(KK_CHUNK);
  if (!buf)
    rc = -ENOMEM;
  else
    for (size_t i = 0; i < KK_CHUNK; i++)
      buf[i] = kk_pattern(i);
  size_t done = 0;
  while (!rc && done < bytes) {
    size_t len = bytes - done < KK_CHUNK ? bytes - done : KK_CHUNK;
    ssize_t w = write(fd, buf, len);
    if (w < 0) {
      if (errno != EINTR)
        rc = -errno;
      continue;
    }
    done += (size_t)w;
  }
  if (!rc && fsync(fd))
    rc = -errno;
  if (close(fd) && !rc)
    rc = -errno;
  if (unlink(path) && !rc)
    rc = -errno;
  free(buf);
  return rc;
}
