/*
 * fuzz_json.c - libFuzzer target for kfm__json_str (engine/src/json.c).
 *
 * The input, cut at its first NUL as a C string would be, is written as a
 * JSON string.  The output must be one valid JSON string literal in valid
 * UTF-8 with no raw control character or DEL, and decoding it must give the
 * input with each ill-formed part replaced by U+FFFD.  The expected text
 * comes from a decoder written differently from json.c's table of byte
 * ranges: it asks, for each prefix, whether any valid code point can still
 * start with it.  Any difference aborts, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void fz_fail(const char *why, const uint8_t *in, size_t n, const char *out, size_t on) {
  fprintf(stderr, "fuzz_json: %s\ninput (%zu bytes):", why, n);
  for (size_t i = 0; i < n && i < 256; i++) {
    fprintf(stderr, " %02x", in[i]);
  }
  fprintf(stderr, "\noutput (%zu bytes): %.*s\n", on, (int)(on < 1024 ? on : 1024), out);
  abort();
}

/* 1 if some valid scalar value's n-byte UTF-8 form starts with the len
 * bytes at p (p[0] a lead byte of an n-byte form, p[1..len) continuation
 * bytes). */
static int fz_completable(const uint8_t *p, size_t len, size_t n) {
  static const uint32_t lead_mask[5] = {0, 0, 0x1F, 0x0F, 0x07};
  static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
  uint32_t v = p[0] & lead_mask[n];
  for (size_t i = 1; i < len; i++) {
    v = v << 6 | (p[i] & 0x3F);
  }
  unsigned rest = 6 * (unsigned)(n - len);
  uint32_t lo = v << rest, hi = lo | ((1u << rest) - 1);
  if (lo < min[n]) {
    lo = min[n];
  }
  if (hi > 0x10FFFF) {
    hi = 0x10FFFF;
  }
  if (lo > hi) {
    return 0;
  }
  return !(lo >= 0xD800 && hi <= 0xDFFF);
}

/* in with every ill-formed maximal subpart replaced by EF BF BD, into out
 * (at least 3 * n bytes); returns its length. */
static size_t fz_expected(const uint8_t *in, size_t n, uint8_t *out) {
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    uint8_t c = in[i];
    if (c < 0x80) {
      out[o++] = c;
      i++;
      continue;
    }
    size_t len = c >= 0xF0 && c < 0xF8   ? 4
                 : c >= 0xE0 && c < 0xF0 ? 3
                 : c >= 0xC0 && c < 0xE0 ? 2
                                         : 0;
    size_t k = 0;
    if (len && fz_completable(in + i, 1, len)) {
      k = 1;
      while (k < len && i + k < n && (in[i + k] & 0xC0) == 0x80 &&
             fz_completable(in + i, k + 1, len)) {
        k++;
      }
    }
    if (len && k == len) {
      memcpy(out + o, in + i, len);
      o += len;
      i += len;
    } else {
      memcpy(out + o, "\xef\xbf\xbd", 3);
      o += 3;
      i += k ? k : 1;
    }
  }
  return o;
}

/* Strict UTF-8 check by decoding: overlong forms, surrogates and values
 * over U+10FFFF rejected. */
static int fz_valid_utf8(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n;) {
    uint8_t c = p[i];
    size_t len = c < 0x80             ? 1
                 : (c & 0xE0) == 0xC0 ? 2
                 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4
                                      : 0;
    if (len == 0 || i + len > n) {
      return 0;
    }
    if (len > 1) {
      static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
      uint32_t cp = c & (0x7F >> len);
      for (size_t j = 1; j < len; j++) {
        if ((p[i + j] & 0xC0) != 0x80) {
          return 0;
        }
        cp = cp << 6 | (p[i + j] & 0x3F);
      }
      if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return 0;
      }
    }
    i += len;
  }
  return 1;
}

static int fz_hex(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

/* Decodes the JSON string literal s[0..n) into out (at least n bytes);
 * returns its length, or -1 if s is not exactly one valid literal of the
 * form kfm writes (escapes only \" \\ \n \t and \uXXXX for a control
 * character, DEL or U+FFFD). */
static long fz_decode(const char *s, size_t n, uint8_t *out) {
  if (n < 2 || s[0] != '"' || s[n - 1] != '"') {
    return -1;
  }
  size_t o = 0;
  for (size_t i = 1; i < n - 1; i++) {
    uint8_t c = (uint8_t)s[i];
    if (c == '"' || c < 0x20 || c == 0x7F) {
      return -1;
    }
    if (c != '\\') {
      out[o++] = c;
      continue;
    }
    if (++i >= n - 1) {
      return -1;
    }
    switch (s[i]) {
    case '"':
    case '\\':
      out[o++] = (uint8_t)s[i];
      break;
    case 'n':
      out[o++] = '\n';
      break;
    case 't':
      out[o++] = '\t';
      break;
    case 'u': {
      if (i + 4 > n - 2) { /* four hex digits before the closing quote */
        return -1;
      }
      uint32_t cp = 0;
      for (int k = 1; k <= 4; k++) {
        int h = fz_hex(s[i + k]);
        if (h < 0) {
          return -1;
        }
        cp = cp << 4 | (uint32_t)h;
      }
      i += 4;
      if (cp == 0xFFFD) {
        memcpy(out + o, "\xef\xbf\xbd", 3);
        o += 3;
      } else if ((cp < 0x20 && cp != '\n' && cp != '\t' && cp != 0) || cp == 0x7F) {
        out[o++] = (uint8_t)cp;
      } else {
        return -1;
      }
      break;
    }
    default:
      return -1;
    }
  }
  return (long)o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t n = strnlen((const char *)data, size);
  char *in = malloc(n + 1);
  uint8_t *want = malloc(3 * n + 1), *got = NULL;
  if (in == NULL || want == NULL) {
    abort();
  }
  memcpy(in, data, n);
  in[n] = '\0';

  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (f == NULL) {
    abort();
  }
  kfm__json_str(f, in);
  fclose(f);

  if (!fz_valid_utf8((const uint8_t *)buf, len)) {
    fz_fail("output is not valid UTF-8", data, n, buf, len);
  }
  got = malloc(len + 1);
  if (got == NULL) {
    abort();
  }
  long glen = fz_decode(buf, len, got);
  if (glen < 0) {
    fz_fail("output is not one valid JSON string literal", data, n, buf, len);
  }
  size_t wlen = fz_expected((const uint8_t *)in, n, want);
  if ((size_t)glen != wlen || memcmp(got, want, wlen) != 0) {
    fz_fail("decoded output differs from the input with U+FFFD substitutions", data, n, buf, len);
  }
  free(got);
  free(buf);
  free(want);
  free(in);
  return 0;
}
