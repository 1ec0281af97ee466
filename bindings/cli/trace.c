/*
 * trace.c - "kfm trace FILE... -o trace.json": one Chrome/Perfetto trace
 * from the traces of several ranks (output_format=trace or both), each rank
 * its own process (pid = rank, named "rank N (file)").
 *
 * Each file's ts counts from its own session start.  The files carry that
 * start on CLOCK_MONOTONIC (otherData.start_monotonic_ns), which every
 * process on one host shares, so ranks are placed on one time axis by it.
 * Monotonic clocks of different hosts are unrelated: when the starts lie
 * more than a minute apart the files are taken to come from several hosts
 * and every rank starts at 0 instead (said on stderr).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "jsonr.h"

static void write_val(FILE *f, const struct jr_val *v) {
  switch (v->type) {
  case JR_NULL:
    fputs("null", f);
    break;
  case JR_BOOL:
    fputs(v->num ? "true" : "false", f);
    break;
  case JR_NUM:
    if (isfinite(v->num)) {
      fprintf(f, "%.15g", v->num);
    } else {
      fputs("null", f);
    }
    break;
  case JR_STR:
    jr_write_str(f, v->str);
    break;
  case JR_ARR:
  case JR_OBJ:
    fputc(v->type == JR_ARR ? '[' : '{', f);
    for (size_t i = 0; i < v->n; i++) {
      if (i) {
        fputc(',', f);
      }
      if (v->type == JR_OBJ) {
        jr_write_str(f, v->keys[i]);
        fputc(':', f);
      }
      write_val(f, &v->items[i]);
    }
    fputc(v->type == JR_ARR ? ']' : '}', f);
    break;
  }
}

/* Writes event e of rank `rank`, its pid replaced, its ts shifted by
 * shift_us, and a process_name renamed after the rank. */
static void write_event(FILE *f, const struct jr_val *e, int rank, double shift_us,
                        const char *src) {
  const char *name = jr_str(e, "name");
  const char *ph = jr_str(e, "ph");
  int pname = name && ph && strcmp(ph, "M") == 0 && strcmp(name, "process_name") == 0;
  int psort = name && ph && strcmp(ph, "M") == 0 && strcmp(name, "process_sort_index") == 0;
  fputc('{', f);
  for (size_t i = 0; i < e->n; i++) {
    if (i) {
      fputc(',', f);
    }
    jr_write_str(f, e->keys[i]);
    fputc(':', f);
    const char *k = e->keys[i];
    if (strcmp(k, "pid") == 0) {
      fprintf(f, "%d", rank);
    } else if (strcmp(k, "ts") == 0 && e->items[i].type == JR_NUM) {
      fprintf(f, "%.3f", e->items[i].num + shift_us);
    } else if (strcmp(k, "args") == 0 && pname) {
      char label[600];
      snprintf(label, sizeof label, "rank %d (%s)", rank, src);
      fputs("{\"name\":", f);
      jr_write_str(f, label);
      fputc('}', f);
    } else if (strcmp(k, "args") == 0 && psort) {
      fprintf(f, "{\"sort_index\":%d}", rank);
    } else {
      write_val(f, &e->items[i]);
    }
  }
  fputc('}', f);
}

int kfm_cli_trace(int argc, char **argv) {
  const char *out = NULL;
  char **files = calloc((size_t)argc + 1, sizeof *files);
  size_t nfiles = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      out = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      fprintf(stderr, "kfm trace: unknown option '%s'\n", argv[i]);
      free(files);
      return 2;
    } else {
      files[nfiles++] = argv[i];
    }
  }
  if (out == NULL || nfiles == 0) {
    fprintf(stderr, "usage: kfm trace FILE... -o TRACE.json\n");
    free(files);
    return 2;
  }
  kfm_cli_sort_files(files, nfiles);
  struct jr_val **docs = calloc(nfiles, sizeof *docs);
  const char **srcs = calloc(nfiles, sizeof *srcs);
  size_t nd = 0, bad = 0;
  double start_min = INFINITY, start_max = -INFINITY;
  for (size_t i = 0; i < nfiles; i++) {
    char err[512];
    struct jr_val *d = jr_parse_file(files[i], err, sizeof err);
    const struct jr_val *ev = d ? jr_get(d, "traceEvents") : NULL;
    if (d && (ev == NULL || ev->type != JR_ARR)) {
      snprintf(err, sizeof err,
               "%s: not a Chrome trace (no traceEvents; a kfm run writes one "
               "with output_format=trace or both)",
               files[i]);
      jr_free(d);
      d = NULL;
    }
    if (d == NULL) {
      fprintf(stderr, "kfm trace: skipped %s\n", err);
      bad++;
      continue;
    }
    double st = jr_num(jr_get(d, "otherData"), "start_monotonic_ns", NAN);
    if (isfinite(st)) {
      start_min = fmin(start_min, st);
      start_max = fmax(start_max, st);
    }
    srcs[nd] = files[i];
    docs[nd++] = d;
  }
  if (nd == 0) {
    fprintf(stderr, "kfm trace: no readable trace among %zu file(s)\n", nfiles);
    free(docs);
    free(srcs);
    free(files);
    return 1;
  }
  int align = isfinite(start_min) && start_max - start_min < 60e9;
  if (!align && nd > 1) {
    fprintf(stderr, "kfm trace: the ranks' start times are more than a minute apart or missing "
                    "(several hosts?): every rank starts at 0\n");
  }
  FILE *f = fopen(out, "w");
  if (f == NULL) {
    perror(out);
    return 1;
  }
  fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[", f);
  int first = 1;
  for (size_t r = 0; r < nd; r++) {
    double st = jr_num(jr_get(docs[r], "otherData"), "start_monotonic_ns", NAN);
    double shift = align && isfinite(st) ? (st - start_min) / 1e3 : 0;
    const struct jr_val *ev = jr_get(docs[r], "traceEvents");
    for (size_t i = 0; i < ev->n; i++) {
      if (ev->items[i].type != JR_OBJ) {
        continue;
      }
      fputs(first ? "\n" : ",\n", f);
      first = 0;
      write_event(f, &ev->items[i], (int)r, shift, srcs[r]);
    }
  }
  fprintf(f,
          "\n],\"otherData\":{\"kfm_merged_ranks\":%zu,\"aligned_on_monotonic_clock\":%s,"
          "\"sources\":[",
          nd, align ? "true" : "false");
  for (size_t r = 0; r < nd; r++) {
    if (r) {
      fputc(',', f);
    }
    jr_write_str(f, srcs[r]);
  }
  fputs("]}}\n", f);
  int werr = ferror(f) | (fclose(f) != 0);
  for (size_t r = 0; r < nd; r++) {
    jr_free(docs[r]);
  }
  free(docs);
  free(srcs);
  free(files);
  if (werr) {
    fprintf(stderr, "kfm trace: cannot write %s\n", out);
    return 1;
  }
  return bad ? KFM_CLI_PARTIAL : 0;
}
