/*
 * cli.h - the parts of the kfm command (kfm_main.c dispatches): run.c starts
 * a program under the preload library, report.c reads and merges exports,
 * trace.c merges Chrome traces.  Each returns the process exit status.
 */
#ifndef KFM_CLI_H
#define KFM_CLI_H

#include <stddef.h>

/* Exit statuses: 0 success; 1 a failure that left no result; 2 bad usage;
 * 3 a result was written but some inputs could not be read (named on
 * stderr); 127 the program to run was not found. */
#define KFM_CLI_PARTIAL 3

int kfm_cli_run(int argc, char **argv);
int kfm_cli_report(int argc, char **argv);
int kfm_cli_trace(int argc, char **argv);

/* Sorts file arguments so that "p.2.json" comes before "p.10.json": rank
 * order when ranks are numbered in the names (output=p.%r.json). */
void kfm_cli_sort_files(char **files, size_t n);

#endif
