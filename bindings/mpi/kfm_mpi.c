/*
 * kfm_mpi.c - libkfm_mpi.so, the PMPI layer: MPI calls become nodes of the
 * process's kfm session, and at MPI_Finalize every rank's profile is
 * gathered to rank 0 and written as one merged file (schema
 * kfm.mpi_profile) that "kfm report" reads.
 *
 * Preloaded by "kfm run" for a program linked with libmpi, or linked before
 * libmpi (-lkfm_mpi).  The session is kfm_session_default(): the one the
 * preload library started; without it (linked use) MPI_Init creates one
 * from KFM_CONFIG and MPI_Finalize stops and destroys it.
 *
 * Each wrapped call enters the node named after it ("MPI_Allreduce"), calls
 * PMPI_*, and leaves it, so the call nests under whatever node the calling
 * thread is in.  Bytes and peers are kept per call beside the session
 * (the engine has no per-node user metrics): bytes are what this rank sent
 * plus what it received (count x type size; for collectives its own send
 * buffer, for Alltoall x the communicator's size); peers are the distinct
 * MPI_COMM_WORLD ranks it exchanged data with through that call (every
 * other member for a collective on MPI_COMM_WORLD; collectives on other
 * communicators count bytes only).
 *
 * Finalize ordering (Caliper's users met it: a profile written after MPI is
 * gone cannot be gathered; one written before the program's last phase
 * misses it): the gather runs inside MPI_Finalize, before PMPI_Finalize, on
 * a snapshot (kfm_session_report) of a session still running, so work after
 * MPI_Finalize still reaches the per-rank files written at exit.  A rank's
 * open activations (the preload's root node) are exported with their
 * "active" count; kfm report counts them up to the snapshot's wall time.
 * File naming: the merged file is KFM_MPI_OUTPUT (patterns %j %h %p; "off"
 * writes none), default "kfm-mpi.json"; only rank 0 writes it, atomically
 * (a temporary renamed into place), so concurrent jobs with %j never mix.
 */
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kfm/kfm.h"

#define KM_CALLS(X)                                                                                \
  X(SEND, "MPI_Send")                                                                              \
  X(RECV, "MPI_Recv")                                                                              \
  X(ISEND, "MPI_Isend")                                                                            \
  X(IRECV, "MPI_Irecv")                                                                            \
  X(WAIT, "MPI_Wait")                                                                              \
  X(WAITALL, "MPI_Waitall")                                                                        \
  X(SENDRECV, "MPI_Sendrecv")                                                                      \
  X(BARRIER, "MPI_Barrier")                                                                        \
  X(BCAST, "MPI_Bcast")                                                                            \
  X(REDUCE, "MPI_Reduce")                                                                          \
  X(ALLREDUCE, "MPI_Allreduce")                                                                    \
  X(GATHER, "MPI_Gather")                                                                          \
  X(ALLGATHER, "MPI_Allgather")                                                                    \
  X(SCATTER, "MPI_Scatter")                                                                        \
  X(ALLTOALL, "MPI_Alltoall")

enum {
#define KM_ENUM(e, name) KM_##e,
  KM_CALLS(KM_ENUM)
#undef KM_ENUM
      KM_NCALLS
};
static const char *const km_names[KM_NCALLS] = {
#define KM_NAME(e, name) name,
    KM_CALLS(KM_NAME)
#undef KM_NAME
};

/* Process-wide by nature: one MPI world and one session per process. */
static kfm_session_t *km_s;
static int km_own; /* 1: created here (linked use), stopped at finalize */
static int km_rank, km_size;
static kfm_node_id_t km_ids[KM_NCALLS];
static _Atomic uint64_t km_bytes[KM_NCALLS];
static _Atomic uint64_t *km_peers[KM_NCALLS]; /* bitmaps of km_size bits */
static size_t km_words;

static void km_setup(void) {
  PMPI_Comm_rank(MPI_COMM_WORLD, &km_rank);
  PMPI_Comm_size(MPI_COMM_WORLD, &km_size);
  kfm_session_t *s = kfm_session_default();
  if (s == NULL) {
    if (kfm_session_create(&s, NULL) != 0) {
      fprintf(stderr, "kfm_mpi: rank %d not profiled: %s\n", km_rank, kfm_errmsg(NULL));
      return;
    }
    if (kfm_session_start(s) != 0) {
      fprintf(stderr, "kfm_mpi: rank %d not profiled: %s\n", km_rank, kfm_errmsg(s));
      kfm_session_destroy(s);
      return;
    }
    kfm_session_set_default(s);
    km_own = 1;
  }
  km_words = ((size_t)km_size + 63) / 64;
  for (int c = 0; c < KM_NCALLS; c++) {
    if (kfm_node_register(s, km_names[c], &km_ids[c]) != 0) {
      fprintf(stderr, "kfm_mpi: %s\n", kfm_errmsg(s));
      return;
    }
    km_peers[c] = calloc(km_words, sizeof(uint64_t));
    if (km_peers[c] == NULL) {
      return;
    }
  }
  km_s = s;
}

static int km_enter(int c) {
  return km_s != NULL && kfm_enter(km_s, km_ids[c]) == 0;
}

static void km_peer_world(int c, int world) {
  if (world >= 0 && world < km_size && world != km_rank) {
    atomic_fetch_or_explicit(&km_peers[c][world / 64], 1ull << (world % 64), memory_order_relaxed);
  }
}

/* A peer given in comm's numbering. */
static void km_peer(int c, MPI_Comm comm, int r) {
  if (r < 0) {
    return; /* MPI_PROC_NULL, MPI_ANY_SOURCE unresolved */
  }
  if (comm == MPI_COMM_WORLD) {
    km_peer_world(c, r);
    return;
  }
  MPI_Group g, w;
  int out = MPI_UNDEFINED;
  if (PMPI_Comm_group(comm, &g) == MPI_SUCCESS) {
    if (PMPI_Comm_group(MPI_COMM_WORLD, &w) == MPI_SUCCESS) {
      PMPI_Group_translate_ranks(g, 1, &r, w, &out);
      PMPI_Group_free(&w);
    }
    PMPI_Group_free(&g);
  }
  if (out != MPI_UNDEFINED) {
    km_peer_world(c, out);
  }
}

/* Every other rank: one flag rather than km_size bits, so that a
 * collective costs the same on 4 ranks and on 4096. */
static _Atomic int km_all[KM_NCALLS];

static void km_peers_all(int c, MPI_Comm comm) {
  if (comm == MPI_COMM_WORLD && !atomic_load_explicit(&km_all[c], memory_order_relaxed)) {
    atomic_store_explicit(&km_all[c], 1, memory_order_relaxed);
  }
}

static uint64_t km_sz(int count, MPI_Datatype t) {
  int sz = 0;
  if (count <= 0 || PMPI_Type_size(t, &sz) != MPI_SUCCESS || sz < 0) {
    return 0;
  }
  return (uint64_t)count * (uint64_t)sz;
}

/* After the PMPI call: leave the node, count the bytes and the peer (a
 * rank of comm, KM_PEER_ALL for every other member, or negative: none). */
#define KM_PEER_ALL INT_MIN
static void km_leave(int c, int entered, uint64_t bytes, MPI_Comm comm, int peer) {
  if (!entered) {
    return;
  }
  kfm_exit(km_s, km_ids[c]);
  if (bytes) {
    atomic_fetch_add_explicit(&km_bytes[c], bytes, memory_order_relaxed);
  }
  if (peer == KM_PEER_ALL) {
    km_peers_all(c, comm);
  } else {
    km_peer(c, comm, peer);
  }
}

/* ---- wrappers ------------------------------------------------------------ */

int MPI_Init(int *argc, char ***argv) {
  int rc = PMPI_Init(argc, argv);
  if (rc == MPI_SUCCESS) {
    km_setup();
  }
  return rc;
}

int MPI_Init_thread(int *argc, char ***argv, int required, int *provided) {
  int rc = PMPI_Init_thread(argc, argv, required, provided);
  if (rc == MPI_SUCCESS) {
    km_setup();
  }
  return rc;
}

int MPI_Send(const void *buf, int count, MPI_Datatype t, int dest, int tag, MPI_Comm comm) {
  int e = km_enter(KM_SEND);
  int rc = PMPI_Send(buf, count, t, dest, tag, comm);
  km_leave(KM_SEND, e, km_sz(count, t), comm, dest);
  return rc;
}

int MPI_Recv(void *buf, int count, MPI_Datatype t, int src, int tag, MPI_Comm comm,
             MPI_Status *status) {
  MPI_Status st;
  int e = km_enter(KM_RECV);
  int rc = PMPI_Recv(buf, count, t, src, tag, comm, status == MPI_STATUS_IGNORE ? &st : status);
  const MPI_Status *got = status == MPI_STATUS_IGNORE ? &st : status;
  int n = 0;
  if (rc == MPI_SUCCESS) {
    PMPI_Get_count(got, t, &n);
  }
  km_leave(KM_RECV, e, km_sz(n, t), comm, rc == MPI_SUCCESS ? got->MPI_SOURCE : -1);
  return rc;
}

int MPI_Isend(const void *buf, int count, MPI_Datatype t, int dest, int tag, MPI_Comm comm,
              MPI_Request *req) {
  int e = km_enter(KM_ISEND);
  int rc = PMPI_Isend(buf, count, t, dest, tag, comm, req);
  km_leave(KM_ISEND, e, km_sz(count, t), comm, dest);
  return rc;
}

int MPI_Irecv(void *buf, int count, MPI_Datatype t, int src, int tag, MPI_Comm comm,
              MPI_Request *req) {
  int e = km_enter(KM_IRECV);
  int rc = PMPI_Irecv(buf, count, t, src, tag, comm, req);
  /* Posted size: what arrives is known only at completion. */
  km_leave(KM_IRECV, e, km_sz(count, t), comm, src);
  return rc;
}

int MPI_Wait(MPI_Request *req, MPI_Status *status) {
  int e = km_enter(KM_WAIT);
  int rc = PMPI_Wait(req, status);
  km_leave(KM_WAIT, e, 0, MPI_COMM_WORLD, -1);
  return rc;
}

int MPI_Waitall(int n, MPI_Request reqs[], MPI_Status statuses[]) {
  int e = km_enter(KM_WAITALL);
  int rc = PMPI_Waitall(n, reqs, statuses);
  km_leave(KM_WAITALL, e, 0, MPI_COMM_WORLD, -1);
  return rc;
}

int MPI_Sendrecv(const void *sbuf, int scount, MPI_Datatype st, int dest, int stag, void *rbuf,
                 int rcount, MPI_Datatype rt, int src, int rtag, MPI_Comm comm,
                 MPI_Status *status) {
  MPI_Status s;
  int e = km_enter(KM_SENDRECV);
  int rc = PMPI_Sendrecv(sbuf, scount, st, dest, stag, rbuf, rcount, rt, src, rtag, comm,
                         status == MPI_STATUS_IGNORE ? &s : status);
  const MPI_Status *got = status == MPI_STATUS_IGNORE ? &s : status;
  int n = 0;
  if (rc == MPI_SUCCESS) {
    PMPI_Get_count(got, rt, &n);
  }
  if (e) {
    km_peer(KM_SENDRECV, comm, dest);
  }
  km_leave(KM_SENDRECV, e, km_sz(scount, st) + km_sz(n, rt), comm,
           rc == MPI_SUCCESS ? got->MPI_SOURCE : -1);
  return rc;
}

int MPI_Barrier(MPI_Comm comm) {
  int e = km_enter(KM_BARRIER);
  int rc = PMPI_Barrier(comm);
  km_leave(KM_BARRIER, e, 0, comm, -1);
  return rc;
}

int MPI_Bcast(void *buf, int count, MPI_Datatype t, int root, MPI_Comm comm) {
  int e = km_enter(KM_BCAST);
  int rc = PMPI_Bcast(buf, count, t, root, comm);
  km_leave(KM_BCAST, e, km_sz(count, t), comm, root);
  return rc;
}

int MPI_Reduce(const void *sbuf, void *rbuf, int count, MPI_Datatype t, MPI_Op op, int root,
               MPI_Comm comm) {
  int e = km_enter(KM_REDUCE);
  int rc = PMPI_Reduce(sbuf, rbuf, count, t, op, root, comm);
  km_leave(KM_REDUCE, e, km_sz(count, t), comm, root);
  return rc;
}

int MPI_Allreduce(const void *sbuf, void *rbuf, int count, MPI_Datatype t, MPI_Op op,
                  MPI_Comm comm) {
  int e = km_enter(KM_ALLREDUCE);
  int rc = PMPI_Allreduce(sbuf, rbuf, count, t, op, comm);
  km_leave(KM_ALLREDUCE, e, km_sz(count, t), comm, KM_PEER_ALL);
  return rc;
}

int MPI_Gather(const void *sbuf, int scount, MPI_Datatype st, void *rbuf, int rcount,
               MPI_Datatype rt, int root, MPI_Comm comm) {
  int e = km_enter(KM_GATHER);
  int rc = PMPI_Gather(sbuf, scount, st, rbuf, rcount, rt, root, comm);
  km_leave(KM_GATHER, e, km_sz(scount, st), comm, root);
  return rc;
}

int MPI_Allgather(const void *sbuf, int scount, MPI_Datatype st, void *rbuf, int rcount,
                  MPI_Datatype rt, MPI_Comm comm) {
  int e = km_enter(KM_ALLGATHER);
  int rc = PMPI_Allgather(sbuf, scount, st, rbuf, rcount, rt, comm);
  km_leave(KM_ALLGATHER, e, km_sz(scount, st), comm, KM_PEER_ALL);
  return rc;
}

int MPI_Scatter(const void *sbuf, int scount, MPI_Datatype st, void *rbuf, int rcount,
                MPI_Datatype rt, int root, MPI_Comm comm) {
  int e = km_enter(KM_SCATTER);
  int rc = PMPI_Scatter(sbuf, scount, st, rbuf, rcount, rt, root, comm);
  km_leave(KM_SCATTER, e, km_sz(rcount, rt), comm, root);
  return rc;
}

int MPI_Alltoall(const void *sbuf, int scount, MPI_Datatype st, void *rbuf, int rcount,
                 MPI_Datatype rt, MPI_Comm comm) {
  int n = 0;
  PMPI_Comm_size(comm, &n);
  int e = km_enter(KM_ALLTOALL);
  int rc = PMPI_Alltoall(sbuf, scount, st, rbuf, rcount, rt, comm);
  km_leave(KM_ALLTOALL, e, km_sz(scount, st) * (uint64_t)n, comm, KM_PEER_ALL);
  return rc;
}

/* ---- MPI_Finalize: gather and write the merged profile ------------------- */

static void km_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      fprintf(f, "\\%c", *p);
    } else if (*p < 0x20) {
      fprintf(f, "\\u%04x", *p);
    } else {
      fputc(*p, f);
    }
  }
  fputc('"', f);
}

static void km_num(FILE *f, double v) {
  if (isfinite(v)) {
    fprintf(f, "%.17g", v);
  } else {
    fputs("null", f);
  }
}

static int km_call_of(kfm_node_id_t id) {
  for (int c = 0; c < KM_NCALLS; c++) {
    if (km_ids[c] == id) {
      return c;
    }
  }
  return -1;
}

/* This rank's record: one JSON object (malloc'd, *len bytes, no NUL). */
static char *km_record(size_t *len) {
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  if (f == NULL) {
    return NULL;
  }
  kfm_report_t *r = NULL;
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  fprintf(f, "{\"rank\":%d,\"pid\":%ld,\"host\":", km_rank, (long)getpid());
  km_str(f, host);
  if (km_s && kfm_session_report(km_s, &r) == 0) {
    kfm_summary_t sum;
    kfm_report_summary(r, &sum);
    fputs(",\"wall_ns\":", f);
    km_num(f, sum.wall_ns);
    fputs(",\"nodes\":[", f);
    size_t nn = kfm_report_node_count(r);
    for (size_t i = 0; i < nn; i++) {
      kfm_node_stats_t n;
      if (kfm_report_node(r, i, &n) != 0) {
        continue;
      }
      fputs(i ? ",{\"name\":" : "{\"name\":", f);
      km_str(f, n.name);
      fprintf(f, ",\"count\":%llu,\"active\":%llu,\"total_ns\":", (unsigned long long)n.count,
              (unsigned long long)n.active);
      km_num(f, n.total_ns);
      fputs(",\"exclusive_ns\":", f);
      km_num(f, n.exclusive_ns);
      fputs(",\"min_ns\":", f);
      km_num(f, n.count ? n.min_ns : NAN);
      fputs(",\"max_ns\":", f);
      km_num(f, n.count ? n.max_ns : NAN);
      int c = km_call_of(n.id);
      if (c >= 0) {
        unsigned peers = atomic_load(&km_all[c]) ? (unsigned)km_size - 1 : 0;
        for (size_t w = 0; w < km_words && peers == 0; w++) {
          peers += (unsigned)__builtin_popcountll(atomic_load(&km_peers[c][w]));
        }
        fprintf(f, ",\"bytes\":%llu,\"peers\":%u", (unsigned long long)atomic_load(&km_bytes[c]),
                peers);
      }
      fputc('}', f);
    }
    fputs("],\"edges\":[", f);
    size_t ne = kfm_report_edge_count(r, KFM_EDGE_NESTED);
    for (size_t i = 0; i < ne; i++) {
      kfm_edge_t e;
      if (kfm_report_edge(r, KFM_EDGE_NESTED, i, &e) != 0) {
        continue;
      }
      fputs(i ? ",{\"from\":" : "{\"from\":", f);
      if (e.from == KFM_NODE_ROOT) {
        fputs("null", f);
      } else {
        km_str(f, kfm_node_name(km_s, e.from));
      }
      fputs(",\"to\":", f);
      km_str(f, kfm_node_name(km_s, e.to));
      fprintf(f, ",\"count\":%llu}", (unsigned long long)e.count);
    }
    fputs("]}", f);
    kfm_report_free(r);
  } else {
    fputs(",\"nodes\":[],\"edges\":[],\"truncated\":\"not profiled\"}", f);
  }
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

static void km_write_merged(const char *all, const int *lens, const int *displs) {
  const char *pat = getenv("KFM_MPI_OUTPUT");
  if (pat && strcmp(pat, "off") == 0) {
    return;
  }
  char path[1024], tmp[1100];
  int rc = kfm_output_expand(pat && *pat ? pat : "kfm-mpi.json", path, sizeof path);
  if (rc != 0) {
    fprintf(stderr, "kfm_mpi: KFM_MPI_OUTPUT '%s': %s\n", pat, kfm_strerror(rc));
    return;
  }
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (f == NULL) {
    perror(tmp);
    return;
  }
  fprintf(f,
          "{\"schema\":\"kfm.mpi_profile\",\"schema_version\":1,\"kfm_version\":\"%s\","
          "\"nranks\":%d,\"ranks\":[",
          KFM_VERSION_STRING, km_size);
  for (int r = 0; r < km_size; r++) {
    if (r) {
      fputs(",\n", f);
    }
    fwrite(all + displs[r], 1, (size_t)lens[r], f);
  }
  fputs("]}\n", f);
  if (ferror(f) | (fclose(f) != 0) || rename(tmp, path) != 0) {
    fprintf(stderr, "kfm_mpi: cannot write the merged profile '%s'\n", path);
    unlink(tmp);
  }
}

int MPI_Finalize(void) {
  int inited = 0, finalized = 0;
  PMPI_Initialized(&inited);
  PMPI_Finalized(&finalized);
  if (inited && !finalized && km_size > 0) {
    size_t len = 0;
    char *mine = km_record(&len);
    int ilen = mine && len < (size_t)INT32_MAX ? (int)len : 0;
    int *lens = km_rank == 0 ? calloc((size_t)km_size, sizeof *lens) : NULL;
    int *displs = km_rank == 0 ? calloc((size_t)km_size, sizeof *displs) : NULL;
    /* Every rank takes part even when rank 0 ran out of memory: a
     * collective that some ranks skip would hang the job. */
    PMPI_Gather(&ilen, 1, MPI_INT, lens, 1, MPI_INT, 0, MPI_COMM_WORLD);
    char *all = NULL;
    if (km_rank == 0 && lens && displs) {
      size_t total = 0;
      for (int r = 0; r < km_size; r++) {
        displs[r] = (int)total;
        total += (size_t)lens[r];
      }
      all = malloc(total ? total : 1);
    }
    PMPI_Gatherv(mine, ilen, MPI_CHAR, all, lens, displs, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (km_rank == 0 && all) {
      km_write_merged(all, lens, displs);
    }
    free(all);
    free(lens);
    free(displs);
    free(mine);
  }
  int rc = PMPI_Finalize();
  if (km_own && km_s) {
    kfm_session_t *s = km_s;
    km_s = NULL;
    kfm_session_stop(s);
    kfm_session_destroy(s);
  }
  return rc;
}
