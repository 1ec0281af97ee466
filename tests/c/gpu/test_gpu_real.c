/*
 * test_gpu_real.c - the GPU path end to end on a real CUDA device: the CUDA
 * kernels with known ground truth run inside nodes of a COMPREHENSIVE
 * session, and CUPTI's records come back attributed to those nodes with
 * exact launch counts and byte counts, kernel time close to the spin asked
 * for, and NVML utilisation sampled while the spin node ran.  Without a
 * usable GPU it prints why and exits 77, CTest's skip code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kfm_cuda_kernels.h"
#include "kfm_test.h"

static char path[256];

static void test_attribution_on_gpu(void) {
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, "level=comprehensive,rate=1000"));
  kfm_node_id_t va, cp, sp;
  KT_OK(s, kfm_node_register(s, "vector_add", &va));
  KT_OK(s, kfm_node_register(s, "copies", &cp));
  KT_OK(s, kfm_node_register(s, "spin", &sp));
  KT_OK(s, kfm_session_start(s));
  size_t bad = 1;
  KT_OK(s, kfm_enter(s, va));
  CU_ASSERT_EQUAL(kfmc_vector_add(1u << 20, &bad), 0);
  KT_OK(s, kfm_exit(s, va));
  CU_ASSERT_EQUAL(bad, 0);
  KT_OK(s, kfm_enter(s, cp));
  CU_ASSERT_EQUAL(kfmc_copy_mb(64, NULL, NULL), 0);
  KT_OK(s, kfm_exit(s, cp));
  double us = 0;
  KT_OK(s, kfm_enter(s, sp));
  CU_ASSERT_EQUAL(kfmc_spin_us(200000, &us), 0);
  KT_OK(s, kfm_exit(s, sp));
  KT_OK(s, kfm_session_stop(s)); /* flushes CUPTI's buffers */
  KT_OK(s, kfm_session_export(s, path));
  char cmd[1500];
  snprintf(cmd, sizeof cmd,
           "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
           "ids={n[\"name\"]:str(n[\"id\"]) for n in d[\"nodes\"]}; "
           "c=d[\"backend_info\"][\"cupti\"]; assert c[\"available\"], c; g=c[\"nodes\"]; "
           "v=g[ids[\"vector_add\"]]; assert v[\"launches\"]==1 and v[\"bytes_h2d\"]==2*4*(1<<20) "
           "and v[\"bytes_d2h\"]==4*(1<<20), v; "
           "k=g[ids[\"copies\"]]; assert k[\"launches\"]==0 and k[\"bytes_h2d\"]==64<<20 "
           "and k[\"bytes_d2h\"]==64<<20, k; "
           "p=g[ids[\"spin\"]]; assert p[\"launches\"]==1 and abs(p[\"kernel_ns\"]-2e8)<0.2*2e8, p; "
           "n={x[\"name\"]:x for x in d[\"nodes\"]}[\"spin\"][\"sampled\"]; "
           "u=[v for k2,v in n.items() if k2.endswith(\".util\") and k2.startswith(\"nvml\")]; "
           "assert not u or max(u) > 0, n' %s",
           path);
  CU_ASSERT_EQUAL(system(cmd), 0);
  kfm_session_destroy(s);
}

int main(void) {
  char why[256];
  if (!kfmc_gpu_available(why, sizeof why)) {
    printf("test_gpu_real: skipped: needs a usable CUDA GPU: %s\n", why);
    return 77;
  }
  unsetenv("KFM_CONFIG");
  snprintf(path, sizeof path, "/tmp/kfm-gpu-real-%d.json", (int)getpid());
  static const struct kt_case cases[] = {
      {"CUDA kernels attributed to their nodes through CUPTI", test_attribution_on_gpu},
      {NULL, NULL},
  };
  int rc = kt_run("gpu_real", cases);
  remove(path);
  return rc;
}
