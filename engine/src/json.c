/*
 * json.c - the one JSON string writer of the engine and of the backends'
 * export_json hooks.
 *
 * Node names, event names and backend reasons come from programs, libraries
 * and the system, so they are arbitrary bytes.  Whatever they hold, what is
 * written is a valid JSON string in valid UTF-8: a reader that rejects the
 * whole profile over one odd name is worse than a name shown with U+FFFD.
 */
#include <stdio.h>

#include "internal.h"

/* Length of the well-formed UTF-8 sequence at p (1 to 4), or 0 when p does
 * not start one; then *bad is the length of its maximal subpart, the bytes
 * replaced by one U+FFFD (Unicode's "substitution of maximal subparts", as
 * CPython, ICU and the WHATWG decoder do).  The ranges are those of the
 * Unicode Standard's table 3-7: they leave out overlong forms (C0, C1,
 * E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points above
 * U+10FFFF (F4 90..BF, F5..FF).  The string ends at a NUL, which is never
 * a continuation byte, so no read goes past it. */
static size_t json_utf8_len(const unsigned char *p, size_t *bad) {
  unsigned char c = p[0];
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
  if (c < 0x80) {
    return 1;
  }
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    lo = c == 0xE0 ? 0xA0 : 0x80;
    hi = c == 0xED ? 0x9F : 0xBF;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    lo = c == 0xF0 ? 0x90 : 0x80;
    hi = c == 0xF4 ? 0x8F : 0xBF;
  } else {
    *bad = 1; /* a continuation byte, C0, C1 or F5..FF */
    return 0;
  }
  if (p[1] < lo || p[1] > hi) {
    *bad = 1;
    return 0;
  }
  for (size_t i = 2; i < n; i++) {
    if (p[i] < 0x80 || p[i] > 0xBF) {
      *bad = i;
      return 0;
    }
  }
  return n;
}

/* Writes s as a quoted JSON string.  '"' and '\' are escaped, \n and \t
 * keep their short escapes (as the profile always wrote them), the other
 * control characters and DEL become \u00XX, well-formed UTF-8 passes
 * through unchanged, and each ill-formed part becomes \ufffd.  NULL is
 * written as null. */
void kfm__json_str(FILE *f, const char *s) {
  if (s == NULL) {
    fputs("null", f);
    return;
  }
  const unsigned char *p = (const unsigned char *)s;
  fputc('"', f);
  while (*p) {
    /* Copy the longest run that needs no escape in one write. */
    const unsigned char *run = p;
    for (;;) {
      unsigned char c = *p;
      if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
        p++;
        continue;
      }
      size_t bad, n = c >= 0x80 ? json_utf8_len(p, &bad) : 0;
      if (n == 0) {
        break;
      }
      p += n;
    }
    if (p > run) {
      fwrite(run, 1, (size_t)(p - run), f);
    }
    unsigned char c = *p;
    if (c == '\0') {
      break;
    }
    if (c == '"') {
      fputs("\\\"", f);
      p++;
    } else if (c == '\\') {
      fputs("\\\\", f);
      p++;
    } else if (c == '\n') {
      fputs("\\n", f);
      p++;
    } else if (c == '\t') {
      fputs("\\t", f);
      p++;
    } else if (c < 0x80) { /* other control characters, DEL */
      fprintf(f, "\\u%04x", c);
      p++;
    } else {
      size_t bad = 1;
      json_utf8_len(p, &bad);
      fputs("\\ufffd", f);
      p += bad;
    }
  }
  fputc('"', f);
}
