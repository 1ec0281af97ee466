/*
 * proc.h - internal interface of the /proc backend.
 *
 * Declares the backend's ops table and the text parsers it uses on /proc
 * files.  The parsers are non-static so the unit tests can run them directly
 * on captured buffers; only proc.c and its unit tests include this (the
 * engine knows the backend through its ops table alone).
 *
 * Every parser works on a buffer that need not be NUL-terminated, writes its
 * outputs only on success (so a caller keeps its previous values on failure),
 * and returns 0 or KFM_EIO when the text is not in the expected format
 * (missing field, non-digit, value above UINT64_MAX).
 */
#ifndef KFM_PROC_H
#define KFM_PROC_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

/** The "proc" backend: RSS, thread CPU/faults/switches/I/O, network bytes. */
extern const struct kfm__backend kfm__backend_proc;

/** Resident pages: the second field of /proc/<pid>/statm. */
int kfm__proc_parse_statm_rss(const char *buf, size_t len, uint64_t *pages);

/**
 * utime and stime (fields 14 and 15, clock ticks) of /proc/<pid>/stat.
 * Fields are counted from the last ')' because comm (field 2) may itself
 * contain spaces and parentheses.
 */
int kfm__proc_parse_stat_cpu(const char *buf, size_t len, uint64_t *utime_ticks,
                             uint64_t *stime_ticks);

/**
 * rchar, wchar, read_bytes and write_bytes of /proc/<pid>/io (or
 * /proc/thread-self/io).  All four keys must be present; keys match at the
 * start of a line only, so "cancelled_write_bytes" is not "write_bytes".
 * Any output pointer may be NULL.
 */
int kfm__proc_parse_io(const char *buf, size_t len, uint64_t *rchar, uint64_t *wchar,
                       uint64_t *read_bytes, uint64_t *write_bytes);

/**
 * Receive and transmit bytes of /proc/net/dev summed over every interface.
 * The two header lines (which must contain '|') are skipped; an interface
 * line is "name:" followed by at least 9 numbers, with or without a space
 * after the colon.
 */
int kfm__proc_parse_netdev(const char *buf, size_t len, uint64_t *rx, uint64_t *tx);

#endif /* KFM_PROC_H */
