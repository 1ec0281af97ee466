/*
 * report.h - layout of a report snapshot, shared by report.c (which builds
 * and reads it) and export.c (which writes it out).
 */
#ifndef KFM_REPORT_H
#define KFM_REPORT_H

#include "internal.h"

struct kfm_report {
  kfm_summary_t sum;
  size_t nm, ns, nb;
  kfm_metric_info_t metrics[KFM__MAX_METRICS];
  uint8_t roles[KFM__MAX_METRICS]; /* kfm__role_t of each metric */
  kfm_metric_info_t smetrics[KFM__MAX_SMETRICS];
  kfm_backend_status_t bs[KFM__MAX_BSTAT];
  size_t nnodes;
  kfm_node_stats_t *nodes;
  char **names;
  double *mvals; /* [nnodes][2][nm] */
  size_t nedges[2];
  kfm_edge_t *edges[2];
  size_t nsamples;
  double *st, *svals;
  uint32_t *sfirst, *athread, *anode;
  int32_t *acpu;
  uint32_t *cpu_counts; /* [nnodes][ncpus] */
  double *svals_node;   /* [nnodes][ns] */
  size_t nevents;
  kfm_event_t *events;
  double *evals;
  uint32_t ntids;
  int32_t *tids; /* [ntids] OS thread id of each engine thread slot */
};

#endif /* KFM_REPORT_H */
