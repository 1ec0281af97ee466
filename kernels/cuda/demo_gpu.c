/*
 * demo_gpu.c - a small graph of GPU work profiled at COMPREHENSIVE, with
 * ground truth to compare against what the cupti backend attributes.
 *
 * Nodes: "vector_add" (1 kernel, 2 x 4 MiB host-to-device, 4 MiB back),
 * "spin_2ms" (1 kernel of ~2 ms), "copy_16mb" (16 MiB each way).  The
 * program prints the expected figures, then the cupti backend's JSON.
 * Without a usable GPU it prints "no GPU: <reason>" and exits 0, so it can
 * run on every machine.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kfm/kfm.h"
#include "kfm_cuda_kernels.h"

#define VEC_N ((size_t)1 << 20) /* 4 MiB of floats per array */
#define SPIN_US 2000u
#define COPY_MB 16u

static int run(const char *node, int rc) {
  if (rc != 0) {
    fprintf(stderr, "%s: %s\n", node, kfmc_strerror(rc));
  }
  return rc;
}

int main(void) {
  char why[256];
  if (!kfmc_gpu_available(why, sizeof why)) {
    printf("no GPU: %s\n", why);
    return 0;
  }
  kfm_session_t *s = NULL;
  int rc = kfm_session_create_str(&s, "level=comprehensive");
  if (rc != 0) {
    fprintf(stderr, "kfm_session_create: %s (%s)\n", kfm_strerror(rc), kfm_errmsg(NULL));
    return 1;
  }
  kfm_session_start(s);
  int bad = 0;
  size_t mism = 0;
  double spin_us = 0, h2d_ms = 0, d2h_ms = 0;

  kfm_enter_name(s, "vector_add");
  bad |= run("vector_add", kfmc_vector_add(VEC_N, &mism));
  kfm_exit_name(s, "vector_add");

  kfm_enter_name(s, "spin_2ms");
  bad |= run("spin_2ms", kfmc_spin_us(SPIN_US, &spin_us));
  kfm_exit_name(s, "spin_2ms");

  kfm_enter_name(s, "copy_16mb");
  bad |= run("copy_16mb", kfmc_copy_mb(COPY_MB, &h2d_ms, &d2h_ms));
  kfm_exit_name(s, "copy_16mb");

  kfm_session_stop(s);
  printf("expected: vector_add 1 launch, bytes_h2d %zu, bytes_d2h %zu, %zu mismatches\n",
         2 * VEC_N * sizeof(float), VEC_N * sizeof(float), mism);
  printf("expected: spin_2ms 1 launch, ~%u us of kernel (events: %.0f us)\n", SPIN_US, spin_us);
  printf("expected: copy_16mb bytes_h2d %u, bytes_d2h %u (events: %.3f ms, %.3f ms)\n",
         COPY_MB << 20, COPY_MB << 20, h2d_ms, d2h_ms);
  char *js = NULL;
  if (kfm_session_backend_json(s, "cupti", &js) == 0) {
    printf("cupti: %s\n", js);
    kfm_free(js);
  } else {
    kfm_report_t *r = NULL;
    if (kfm_session_report(s, &r) == 0) {
      for (size_t i = 0; i < kfm_report_backend_count(r); i++) {
        kfm_backend_status_t b;
        kfm_report_backend(r, i, &b);
        if (b.name && b.name[0] == 'c' && b.name[1] == 'u') {
          printf("cupti: unavailable: %s\n", b.reason);
        }
      }
      kfm_report_free(r);
    }
  }
  kfm_session_destroy(s);
  return bad ? 1 : 0;
}
