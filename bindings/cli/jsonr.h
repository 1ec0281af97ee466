/*
 * jsonr.h - a small JSON reader for the kfm command: the exports and traces
 * it merges are read whole into a tree of values.  Enough for files kfm
 * wrote (UTF-8, \uXXXX escapes decoded), strict about truncation, which is
 * what a killed rank leaves behind.
 */
#ifndef KFM_CLI_JSONR_H
#define KFM_CLI_JSONR_H

#include <stddef.h>

enum jr_type { JR_NULL, JR_BOOL, JR_NUM, JR_STR, JR_ARR, JR_OBJ };

struct jr_val {
  enum jr_type type;
  double num;           /* JR_NUM, JR_BOOL (0/1) */
  char *str;            /* JR_STR */
  size_t n;             /* JR_ARR / JR_OBJ: number of items */
  struct jr_val *items; /* JR_ARR / JR_OBJ */
  char **keys;          /* JR_OBJ: key of each item */
};

/* Parses text[0..len).  NULL on error with a message (byte offset, what was
 * expected) in err. */
struct jr_val *jr_parse(const char *text, size_t len, char *err, size_t errlen);
/* Reads and parses a file; the message names the path. */
struct jr_val *jr_parse_file(const char *path, char *err, size_t errlen);
void jr_free(struct jr_val *v);

/* Member of an object, or NULL (also when v is not an object). */
const struct jr_val *jr_get(const struct jr_val *v, const char *key);
/* The number at key, or def when absent, null or not a number. */
double jr_num(const struct jr_val *v, const char *key, double def);
/* The string at key, or NULL. */
const char *jr_str(const struct jr_val *v, const char *key);

/* Writes s as a JSON string literal. */
void jr_write_str(void *file, const char *s);

#endif
