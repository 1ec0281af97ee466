/*
 * kfm_main.c - the kfm command: "kfm run", "kfm report", "kfm trace".
 * Profiles unmodified programs in batch jobs and merges what their ranks
 * wrote; see README "HPC jobs".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kfm/kfm.h"

static void usage(FILE *f) {
  fprintf(
      f, "usage: kfm run [-c CONFIG] [-o OUTPUT] [-m MERGED] [--no-mpi] [--openmp=llvm] -- PROGRAM "
         "[ARGS...]\n"
         "       kfm report [--format text|json|csv|markdown|hatchet] [-o FILE] FILE...\n"
         "       kfm trace FILE... -o TRACE.json\n"
         "       kfm version\n"
         "OUTPUT may hold %%r (rank), %%p (pid), %%h (host), %%j (job id).\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "run") == 0) {
    return kfm_cli_run(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "report") == 0) {
    return kfm_cli_report(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "trace") == 0) {
    return kfm_cli_trace(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    printf("kfm %s\n", KFM_VERSION_STRING);
    return 0;
  }
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
    usage(stdout);
    return 0;
  }
  fprintf(stderr, "kfm: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}

static int vers_cmp(const void *a, const void *b) {
  return strverscmp(*(char *const *)a, *(char *const *)b);
}

void kfm_cli_sort_files(char **files, size_t n) {
  qsort(files, n, sizeof *files, vers_cmp);
}
