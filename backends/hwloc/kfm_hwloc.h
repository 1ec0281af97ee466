/*
 * kfm_hwloc.h - internal interface of the hwloc topology backend.
 *
 * Declares the backend's ops table and the lookups that map the CPU a thread
 * runs on (sched_getcpu, an operating-system PU number) to its core, package
 * and NUMA node.  The engine reaches them only through the ops table (the
 * cpu_numa and bind_thread hooks); only hwloc.c and the unit tests include
 * this file.  (It is not called hwloc.h: with backends/ on the tests'
 * include path that name would shadow the library's <hwloc.h>.)
 *
 * The topology is loaded once per process, on first use, and is read-only
 * afterwards, so every function here may be called from any thread.
 * kfm__hwloc_pu_info and kfm__hwloc_npus take no lock and never allocate:
 * the sampler calls them at every tick.
 *
 * Where the topology comes from, in order: the XML file named by the
 * environment variable KFM_HWLOC_XML; the synthetic description in
 * KFM_HWLOC_SYNTHETIC (hwloc's syntax, e.g. "package:2 numa:2 core:4 pu:2");
 * otherwise hwloc's own discovery, which itself honours HWLOC_XMLFILE,
 * HWLOC_SYNTHETIC and HWLOC_FSROOT.  I/O devices (PCI GPUs and their OS
 * devices) are kept with HWLOC_TYPE_FILTER_KEEP_IMPORTANT.
 */
#ifndef KFM_HWLOC_BACKEND_H
#define KFM_HWLOC_BACKEND_H

#include "backend.h"

/** The "hwloc" backend: no metrics; topology summary, PU map, thread binding. */
extern const struct kfm__backend kfm__backend_hwloc;

/**
 * Core, package and NUMA node (hwloc logical indexes, the order lstopo
 * shows) of the PU whose operating-system index is os_index, i.e. what
 * sched_getcpu returns.  Each output may be NULL and is set to -1 when the
 * topology does not know it (e.g. a machine without a Core level).
 * Returns 0; KFM_ERANGE when no PU has that os_index (outputs -1);
 * KFM_EBACKEND when the topology could not be loaded (outputs -1).
 */
int kfm__hwloc_pu_info(unsigned os_index, int *core, int *package, int *numa);

/** Number of PUs in the topology (the allowed ones); 0 when it could not be loaded. */
unsigned kfm__hwloc_npus(void);

/**
 * Detail message of the last failed bind_thread on this backend state
 * (names the CPU and the valid range), "" when there is none.  The
 * bind_thread hook returns only a code (the sampler falls back to
 * sched_setaffinity's answer); tests read the text here.
 */
const char *kfm__hwloc_errmsg(const void *state);

/**
 * Tests only: destroy the process's topology and load it again, reading the
 * KFM_HWLOC_* variables anew, so that one test program can check several
 * topologies.  No session may have the backend open and no other thread may
 * be inside any function above meanwhile.  Returns 0 or KFM_EBACKEND (the
 * reason is then what probe reports).
 */
int kfm__hwloc_reload_for_tests(void);

#endif /* KFM_HWLOC_BACKEND_H */
