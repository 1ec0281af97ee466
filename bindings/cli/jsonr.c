/*
 * jsonr.c - the kfm command's JSON reader (see jsonr.h).  Recursive descent
 * over an in-memory copy; nesting is bounded so a hostile file cannot
 * exhaust the stack.
 */
#include "jsonr.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JR_MAX_DEPTH 256

struct jr_parser {
  const char *p, *end, *start;
  char *err;
  size_t errlen;
  int failed;
};

static void jr_fail(struct jr_parser *ps, const char *what) {
  if (!ps->failed) {
    ps->failed = 1;
    if (ps->p >= ps->end) {
      snprintf(ps->err, ps->errlen, "truncated: the JSON ends at byte %zu while %s",
               (size_t)(ps->end - ps->start), what);
    } else {
      snprintf(ps->err, ps->errlen, "not valid JSON at byte %zu: %s", (size_t)(ps->p - ps->start),
               what);
    }
  }
}

static void jr_ws(struct jr_parser *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\t' || *ps->p == '\r')) {
    ps->p++;
  }
}

static int jr_value(struct jr_parser *ps, struct jr_val *v, int depth);

static void put_utf8(char **o, unsigned cp) {
  char *q = *o;
  if (cp < 0x80) {
    *q++ = (char)cp;
  } else if (cp < 0x800) {
    *q++ = (char)(0xC0 | cp >> 6);
    *q++ = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *q++ = (char)(0xE0 | cp >> 12);
    *q++ = (char)(0x80 | (cp >> 6 & 0x3F));
    *q++ = (char)(0x80 | (cp & 0x3F));
  } else {
    *q++ = (char)(0xF0 | cp >> 18);
    *q++ = (char)(0x80 | (cp >> 12 & 0x3F));
    *q++ = (char)(0x80 | (cp >> 6 & 0x3F));
    *q++ = (char)(0x80 | (cp & 0x3F));
  }
  *o = q;
}

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') {
      v |= (unsigned)(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      v |= (unsigned)(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      v |= (unsigned)(c - 'A' + 10);
    } else {
      return -1;
    }
  }
  *out = v;
  return 0;
}

/* At the opening quote; returns a malloc'd decoded string or NULL. */
static char *jr_string(struct jr_parser *ps) {
  ps->p++;
  const char *s = ps->p;
  while (ps->p < ps->end && *ps->p != '"') {
    ps->p += *ps->p == '\\' ? 2 : 1;
  }
  if (ps->p >= ps->end) {
    jr_fail(ps, "reading a string");
    return NULL;
  }
  const char *e = ps->p++;
  /* Decoded UTF-8 is never longer than the escaped text. */
  char *out = malloc((size_t)(e - s) + 1), *o = out;
  if (out == NULL) {
    jr_fail(ps, "out of memory");
    return NULL;
  }
  for (const char *q = s; q < e; q++) {
    if (*q != '\\') {
      *o++ = *q;
      continue;
    }
    q++;
    switch (*q) {
    case 'n':
      *o++ = '\n';
      break;
    case 't':
      *o++ = '\t';
      break;
    case 'r':
      *o++ = '\r';
      break;
    case 'b':
      *o++ = '\b';
      break;
    case 'f':
      *o++ = '\f';
      break;
    case 'u': {
      unsigned cp, lo;
      if (e - q < 5 || hex4(q + 1, &cp) != 0) {
        free(out);
        jr_fail(ps, "bad \\u escape");
        return NULL;
      }
      q += 4;
      if (cp >= 0xD800 && cp < 0xDC00 && e - q >= 7 && q[1] == '\\' && q[2] == 'u' &&
          hex4(q + 3, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        q += 6;
      }
      put_utf8(&o, cp);
      break;
    }
    default:
      *o++ = *q;
      break; /* \" \\ \/ */
    }
  }
  *o = '\0';
  return out;
}

static int jr_push(struct jr_parser *ps, struct jr_val *v, size_t *cap, int obj) {
  if (v->n == *cap) {
    size_t nc = *cap ? *cap * 2 : 8;
    struct jr_val *ni = realloc(v->items, nc * sizeof *ni);
    if (ni == NULL) {
      jr_fail(ps, "out of memory");
      return -1;
    }
    v->items = ni;
    if (obj) {
      char **nk = realloc(v->keys, nc * sizeof *nk);
      if (nk == NULL) {
        jr_fail(ps, "out of memory");
        return -1;
      }
      v->keys = nk;
    }
    *cap = nc;
  }
  memset(&v->items[v->n], 0, sizeof v->items[v->n]);
  return 0;
}

static int jr_container(struct jr_parser *ps, struct jr_val *v, int depth, int obj) {
  char close = obj ? '}' : ']';
  v->type = obj ? JR_OBJ : JR_ARR;
  ps->p++;
  size_t cap = 0;
  jr_ws(ps);
  if (ps->p < ps->end && *ps->p == close) {
    ps->p++;
    return 0;
  }
  for (;;) {
    jr_ws(ps);
    if (jr_push(ps, v, &cap, obj) != 0) {
      return -1;
    }
    if (obj) {
      v->keys[v->n] = NULL;
      if (ps->p >= ps->end || *ps->p != '"') {
        jr_fail(ps, "expecting a member name");
        return -1;
      }
      char *k = jr_string(ps);
      if (k == NULL) {
        return -1;
      }
      v->keys[v->n] = k;
      jr_ws(ps);
      if (ps->p >= ps->end || *ps->p != ':') {
        v->n++;
        jr_fail(ps, "expecting ':'");
        return -1;
      }
      ps->p++;
    }
    int rc = jr_value(ps, &v->items[v->n], depth + 1);
    v->n++;
    if (rc != 0) {
      return -1;
    }
    jr_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') {
      ps->p++;
      continue;
    }
    if (ps->p < ps->end && *ps->p == close) {
      ps->p++;
      return 0;
    }
    jr_fail(ps, obj ? "expecting ',' or '}'" : "expecting ',' or ']'");
    return -1;
  }
}

static int jr_lit(struct jr_parser *ps, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
    jr_fail(ps, "unknown literal");
    return -1;
  }
  ps->p += n;
  return 0;
}

static int jr_value(struct jr_parser *ps, struct jr_val *v, int depth) {
  memset(v, 0, sizeof *v);
  if (depth > JR_MAX_DEPTH) {
    jr_fail(ps, "nested too deeply");
    return -1;
  }
  jr_ws(ps);
  if (ps->p >= ps->end) {
    jr_fail(ps, "expecting a value");
    return -1;
  }
  switch (*ps->p) {
  case '{':
    return jr_container(ps, v, depth, 1);
  case '[':
    return jr_container(ps, v, depth, 0);
  case '"':
    v->type = JR_STR;
    v->str = jr_string(ps);
    return v->str ? 0 : -1;
  case 't':
    v->type = JR_BOOL;
    v->num = 1;
    return jr_lit(ps, "true");
  case 'f':
    v->type = JR_BOOL;
    return jr_lit(ps, "false");
  case 'n':
    v->type = JR_NULL;
    return jr_lit(ps, "null");
  default: {
    /* strtod needs a terminated buffer: copy the number's characters. */
    char buf[64];
    size_t k = 0;
    while (ps->p + k < ps->end && k < sizeof buf - 1 && ps->p[k] != '\0' &&
           strchr("+-0123456789.eE", ps->p[k])) {
      buf[k] = ps->p[k];
      k++;
    }
    buf[k] = '\0';
    char *endp;
    v->type = JR_NUM;
    v->num = strtod(buf, &endp);
    if (k == 0 || endp != buf + k) {
      jr_fail(ps, "expecting a value");
      return -1;
    }
    ps->p += k;
    if (ps->p >= ps->end && depth > 0) {
      jr_fail(ps, "reading a number");
      return -1;
    }
    return 0;
  }
  }
}

static void jr_clear(struct jr_val *v) {
  if (v->type == JR_STR) {
    free(v->str);
  }
  if (v->type == JR_ARR || v->type == JR_OBJ) {
    for (size_t i = 0; i < v->n; i++) {
      jr_clear(&v->items[i]);
      if (v->keys) {
        free(v->keys[i]);
      }
    }
    free(v->items);
    free(v->keys);
  }
}

void jr_free(struct jr_val *v) {
  if (v) {
    jr_clear(v);
    free(v);
  }
}

struct jr_val *jr_parse(const char *text, size_t len, char *err, size_t errlen) {
  struct jr_parser ps = {.p = text, .end = text + len, .start = text, .err = err, .errlen = errlen};
  struct jr_val *v = calloc(1, sizeof *v);
  if (v == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (jr_value(&ps, v, 0) == 0) {
    jr_ws(&ps);
    if (ps.p != ps.end) {
      jr_fail(&ps, "text after the end of the value");
    }
  }
  if (ps.failed) {
    jr_free(v);
    return NULL;
  }
  return v;
}

struct jr_val *jr_parse_file(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (n < cap) {
      break;
    }
    char *nb = realloc(buf, cap * 2);
    if (nb == NULL) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = nb;
    cap *= 2;
  }
  int rerr = ferror(f);
  fclose(f);
  if (buf == NULL || rerr) {
    free(buf);
    snprintf(err, errlen, "%s: cannot read%s", path, buf ? "" : " (out of memory)");
    return NULL;
  }
  char perr[200];
  struct jr_val *v = jr_parse(buf, n, perr, sizeof perr);
  free(buf);
  if (v == NULL) {
    snprintf(err, errlen, "%s: %s", path, n == 0 ? "empty file" : perr);
  }
  return v;
}

const struct jr_val *jr_get(const struct jr_val *v, const char *key) {
  if (v == NULL || v->type != JR_OBJ) {
    return NULL;
  }
  for (size_t i = 0; i < v->n; i++) {
    if (strcmp(v->keys[i], key) == 0) {
      return &v->items[i];
    }
  }
  return NULL;
}

double jr_num(const struct jr_val *v, const char *key, double def) {
  const struct jr_val *m = jr_get(v, key);
  return m && m->type == JR_NUM ? m->num : def;
}

const char *jr_str(const struct jr_val *v, const char *key) {
  const struct jr_val *m = jr_get(v, key);
  return m && m->type == JR_STR ? m->str : NULL;
}

void jr_write_str(void *file, const char *s) {
  FILE *f = file;
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      fputc('\\', f);
      fputc(*p, f);
    } else if (*p < 0x20) {
      fprintf(f, "\\u%04x", *p);
    } else {
      fputc(*p, f);
    }
  }
  fputc('"', f);
}
