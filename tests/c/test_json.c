/*
 * test_json.c - the JSON string writer (kfm__json_str, engine/src/json.c):
 * whatever bytes a name holds, the export must stay valid JSON in valid
 * UTF-8.  Each class of ill-formed UTF-8 becomes U+FFFD (one per maximal
 * subpart), well-formed multi-byte text passes through, control characters
 * and DEL are escaped; and a real export written through output= carries
 * such names correctly.
 */
#include <stdint.h>
#include <unistd.h>

#include "internal.h"
#include "kfm_test.h"

/* kfm__json_str(in) as a string the caller frees. */
static char *render(const char *in) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (f == NULL) {
    CU_FAIL_FATAL("open_memstream");
  }
  kfm__json_str(f, in);
  fclose(f);
  return buf;
}

/* Strict UTF-8 check written differently from json.c: decode the code
 * point, then reject overlong forms, surrogates and values over U+10FFFF. */
static int valid_utf8(const unsigned char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t k;
    uint32_t cp, min;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      k = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      k = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      k = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return 0;
    }
    if (i + k > n) {
      return 0;
    }
    for (size_t j = 1; j < k; j++) {
      if ((p[i + j] & 0xC0) != 0x80) {
        return 0;
      }
      cp = cp << 6 | (p[i + j] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return 0;
    }
    i += k;
  }
  return 1;
}

/* A small JSON validator (RFC 8259), enough to check a whole export. */
struct jp {
  const char *p, *end;
};

static void jp_ws(struct jp *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) {
    j->p++;
  }
}

static int jp_string(struct jp *j) {
  if (j->p >= j->end || *j->p != '"') {
    return 0;
  }
  for (j->p++; j->p < j->end; j->p++) {
    unsigned char c = (unsigned char)*j->p;
    if (c == '"') {
      j->p++;
      return 1;
    }
    if (c < 0x20 || c == 0x7F) { /* DEL is legal JSON, but kfm escapes it */
      return 0;
    }
    if (c == '\\') {
      j->p++;
      if (j->p >= j->end) {
        return 0;
      }
      if (*j->p == 'u') {
        for (int k = 1; k <= 4; k++) {
          if (j->p + k >= j->end || !strchr("0123456789abcdefABCDEF", j->p[k]) || !j->p[k]) {
            return 0;
          }
        }
        j->p += 4;
      } else if (!strchr("\"\\/bfnrt", *j->p) || !*j->p) {
        return 0;
      }
    }
  }
  return 0;
}

static int jp_value(struct jp *j, int depth);

static int jp_number(struct jp *j) {
  const char *s = j->p;
  if (j->p < j->end && *j->p == '-') {
    j->p++;
  }
  if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
    return 0;
  }
  if (*j->p == '0') {
    j->p++;
  } else {
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
      j->p++;
    }
  }
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
      return 0;
    }
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
      j->p++;
    }
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) {
      j->p++;
    }
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
      return 0;
    }
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
      j->p++;
    }
  }
  return j->p > s;
}

static int jp_seq(struct jp *j, int depth, char close, int object) {
  j->p++;
  jp_ws(j);
  if (j->p < j->end && *j->p == close) {
    j->p++;
    return 1;
  }
  for (;;) {
    jp_ws(j);
    if (object) {
      if (!jp_string(j)) {
        return 0;
      }
      jp_ws(j);
      if (j->p >= j->end || *j->p != ':') {
        return 0;
      }
      j->p++;
    }
    if (!jp_value(j, depth + 1)) {
      return 0;
    }
    jp_ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    if (j->p < j->end && *j->p == close) {
      j->p++;
      return 1;
    }
    return 0;
  }
}

static int jp_value(struct jp *j, int depth) {
  jp_ws(j);
  if (j->p >= j->end || depth > 64) {
    return 0;
  }
  switch (*j->p) {
  case '{':
    return jp_seq(j, depth, '}', 1);
  case '[':
    return jp_seq(j, depth, ']', 0);
  case '"':
    return jp_string(j);
  }
  static const char *const words[] = {"true", "false", "null"};
  for (int k = 0; k < 3; k++) {
    size_t n = strlen(words[k]);
    if ((size_t)(j->end - j->p) >= n && memcmp(j->p, words[k], n) == 0) {
      j->p += n;
      return 1;
    }
  }
  return jp_number(j);
}

static int valid_json(const char *text, size_t n) {
  struct jp j = {text, text + n};
  if (!jp_value(&j, 0)) {
    return 0;
  }
  jp_ws(&j);
  return j.p == j.end;
}

/* The writer's output for in is want, and is a valid JSON string. */
static void expect_json(const char *in, const char *want) {
  char *got = render(in);
  if (strcmp(got, want) != 0) {
    fprintf(stderr, "\nkfm__json_str(");
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
      fprintf(stderr, p[0] >= 0x20 && p[0] < 0x7F ? "%c" : "\\x%02x", *p);
    }
    fprintf(stderr, ") = %s, want %s\n", got, want);
  }
  CU_ASSERT_STRING_EQUAL(got, want);
  CU_ASSERT_TRUE(valid_utf8((const unsigned char *)got, strlen(got)));
  CU_ASSERT_TRUE(valid_json(got, strlen(got)));
  free(got);
}

static void test_ascii_and_escapes(void) {
  expect_json("", "\"\"");
  expect_json("solve", "\"solve\"");
  expect_json("a\"b\\c/d", "\"a\\\"b\\\\c/d\"");
  expect_json("line\nnext\ttab", "\"line\\nnext\\ttab\"");
  expect_json("\x01\x02\x1f", "\"\\u0001\\u0002\\u001f\"");
  expect_json("cr\r bs\b ff\f esc\x1b", "\"cr\\u000d bs\\u0008 ff\\u000c esc\\u001b\"");
  expect_json("del\x7f!", "\"del\\u007f!\"");
  expect_json(" ~", "\" ~\"");
  char *null = render(NULL);
  CU_ASSERT_STRING_EQUAL(null, "null");
  free(null);
}

static void test_valid_multibyte_passes(void) {
  static const char *const ok[] = {
      "\xc2\x80",                 /* U+0080, first 2-byte */
      "\xc3\xa9t\xc3\xa9",        /* été */
      "\xdf\xbf",                 /* U+07FF */
      "\xe0\xa0\x80",             /* U+0800, first 3-byte */
      "\xe2\x82\xac",             /* U+20AC euro */
      "\xed\x9f\xbf",             /* U+D7FF, just below the surrogates */
      "\xee\x80\x80",             /* U+E000, just above them */
      "\xef\xbf\xbd",             /* U+FFFD itself */
      "\xef\xbf\xbf",             /* U+FFFF */
      "\xf0\x90\x80\x80",         /* U+10000, first 4-byte */
      "\xf0\x9d\x84\x9e",         /* U+1D11E musical symbol */
      "\xf4\x8f\xbf\xbf",         /* U+10FFFF, the last code point */
      "\xe5\x90\x8d\xe5\x89\x8d", /* 名前 */
      "\xe2\x80\xa8",             /* U+2028, legal raw in JSON */
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    char want[64];
    snprintf(want, sizeof want, "\"%s\"", ok[i]);
    expect_json(ok[i], want);
  }
}

#define R "\\ufffd"

static void test_invalid_utf8_replaced(void) {
  static const struct {
    const char *in, *want;
  } cases[] = {
      /* lone continuation bytes */
      {"\x80", "\"" R "\""},
      {"a\xbf"
       "b",
       "\"a" R "b\""},
      {"\x80\x80", "\"" R R "\""},
      /* bytes that never start a sequence: C0, C1, F5..FF */
      {"\xc0", "\"" R "\""},
      {"\xc1\xbf", "\"" R R "\""},
      {"\xf5\x80\x80\x80", "\"" R R R R "\""},
      {"\xf8\x88\x80\x80\x80", "\"" R R R R R "\""},
      {"\xfe\xff", "\"" R R "\""},
      /* overlong forms */
      {"\xc0\xaf", "\"" R R "\""},             /* '/' in 2 bytes */
      {"\xe0\x80\xaf", "\"" R R R "\""},       /* '/' in 3 bytes */
      {"\xe0\x9f\xbf", "\"" R R R "\""},       /* U+07FF in 3 bytes */
      {"\xf0\x80\x80\xaf", "\"" R R R R "\""}, /* '/' in 4 bytes */
      {"\xf0\x8f\xbf\xbf", "\"" R R R R "\""}, /* U+FFFF in 4 bytes */
      /* surrogates (CESU-8 / WTF-8) */
      {"\xed\xa0\x80", "\"" R R R "\""},
      {"\xed\xbf\xbf", "\"" R R R "\""},
      {"\xed\xa0\xbd\xed\xb2\xa9", "\"" R R R R R R "\""},
      /* above U+10FFFF */
      {"\xf4\x90\x80\x80", "\"" R R R R "\""},
      {"\xf7\xbf\xbf\xbf", "\"" R R R R "\""},
      /* truncated: the maximal valid prefix is one U+FFFD */
      {"\xc3", "\"" R "\""},
      {"\xc3z", "\"" R "z\""},
      {"\xe2\x82", "\"" R "\""},
      {"\xe2\x82z", "\"" R "z\""},
      {"\xe2z\x82", "\"" R "z" R "\""},
      {"\xf0\x9d\x84", "\"" R "\""},
      {"\xf0\x9d\x84\xc3\xa9", "\"" R "\xc3\xa9\""},
      {"\xf4\x8f\xbf", "\"" R "\""},
      /* mixed with valid text and escapes */
      {"\xc3\xa9\x80\xc3\xa9", "\"\xc3\xa9" R "\xc3\xa9\""},
      {"\"\xff\n", "\"\\\"" R "\\n\""},
      {"bad\xff\xfe name", "\"bad" R R " name\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    expect_json(cases[i].in, cases[i].want);
  }
}

/* Every string of one or two bytes, and three-byte strings over the bytes
 * where the classes change, give valid JSON in valid UTF-8. */
static void test_exhaustive_short_strings(void) {
  static const unsigned char edge[] = {0x01, 0x1f, 0x20, '"',  '\\', 0x7e, 0x7f, 0x80, 0x8f,
                                       0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0,
                                       0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4,
                                       0xf5, 0xf7, 0xf8, 0xfb, 0xfc, 0xfe, 0xff, 'a'};
  const size_t ne = sizeof edge;
  size_t bad = 0;
  unsigned char in[8];
  for (unsigned a = 1; a < 256; a++) {
    for (unsigned b = 0; b < 256; b++) {
      in[0] = (unsigned char)a, in[1] = (unsigned char)b, in[2] = 0;
      char *got = render((const char *)in);
      size_t n = strlen(got);
      bad += !valid_utf8((const unsigned char *)got, n) || !valid_json(got, n);
      /* Well-formed input comes back byte for byte. */
      if (valid_utf8(in, strlen((char *)in)) && a >= 0x80) {
        bad += n != strlen((char *)in) + 2 || memcmp(got + 1, in, n - 2) != 0;
      }
      free(got);
    }
  }
  for (size_t x = 0; x < ne; x++) {
    for (size_t y = 0; y < ne; y++) {
      for (size_t z = 0; z < ne; z++) {
        for (size_t w = 0; w < ne; w++) {
          in[0] = edge[x], in[1] = edge[y], in[2] = edge[z], in[3] = edge[w], in[4] = 0;
          char *got = render((const char *)in);
          size_t n = strlen(got);
          bad += !valid_utf8((const unsigned char *)got, n) || !valid_json(got, n);
          free(got);
        }
      }
    }
  }
  if (bad) {
    fprintf(stderr, "\n%zu short strings gave invalid output\n", bad);
  }
  CU_ASSERT_EQUAL(bad, 0);
}

/* A real export through output= (to a path with a ',' in it, so quoted):
 * the file is valid JSON and UTF-8 and holds each name escaped as above. */
static void test_export_round_trip(void) {
  char dir[] = "/tmp/kfm_test_json_XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  char path[128], config[256];
  snprintf(path, sizeof path, "%s/a,b.json", dir);
  snprintf(config, sizeof config, "level=basic,rate=off,output=\"%s\"", path);
  static const struct {
    const char *name, *json;
  } names[] = {
      {"na\xc3\xafve \xe2\x9c\x93 \xe5\x90\x8d\xe5\x89\x8d",
       "\"na\xc3\xafve \xe2\x9c\x93 \xe5\x90\x8d\xe5\x89\x8d\""},
      {"latin1 caf\xe9", "\"latin1 caf" R "\""},
      {"bad\xff\xfe name", "\"bad" R R " name\""},
      {"quote\"back\\slash\nnew\x01", "\"quote\\\"back\\\\slash\\nnew\\u0001\""},
      {"del\x7f", "\"del\\u007f\""},
      {"surrogate \xed\xa0\x80!", "\"surrogate " R R R "!\""},
      {"cut \xe2\x82", "\"cut " R "\""},
  };
  kfm_session_t *s = NULL;
  KT_OK(NULL, kfm_session_create_str(&s, config));
  KT_OK(s, kfm_session_start(s));
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    kfm_node_id_t id;
    KT_OK(s, kfm_node_register(s, names[i].name, &id));
    KT_OK(s, kfm_enter(s, id));
    KT_OK(s, kfm_exit(s, id));
  }
  KT_OK(s, kfm_session_stop(s));
  kfm_session_destroy(s);

  FILE *f = fopen(path, "rb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  CU_ASSERT_FATAL(n > 0);
  char *text = malloc((size_t)n + 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(text);
  CU_ASSERT_EQUAL(fread(text, 1, (size_t)n, f), (size_t)n);
  text[n] = '\0';
  fclose(f);
  CU_ASSERT_EQUAL(strlen(text), (size_t)n); /* no NUL byte written */
  CU_ASSERT_TRUE(valid_utf8((const unsigned char *)text, (size_t)n));
  CU_ASSERT_TRUE(valid_json(text, (size_t)n));
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (strstr(text, names[i].json) == NULL) {
      fprintf(stderr, "\nexport lacks %s\n", names[i].json);
      CU_FAIL("node name missing or escaped wrongly in the export");
    }
  }
  free(text);
  unlink(path);
  rmdir(dir);
}

/* The validator itself rejects what it should, so the checks above mean
 * something. */
static void test_validators(void) {
  CU_ASSERT_FALSE(valid_utf8((const unsigned char *)"\xc0\xaf", 2));
  CU_ASSERT_FALSE(valid_utf8((const unsigned char *)"\xed\xa0\x80", 3));
  CU_ASSERT_FALSE(valid_utf8((const unsigned char *)"\xf4\x90\x80\x80", 4));
  CU_ASSERT_FALSE(valid_utf8((const unsigned char *)"\xe2\x82", 2));
  CU_ASSERT_TRUE(valid_utf8((const unsigned char *)"\xf4\x8f\xbf\xbf", 4));
  static const char *const bad[] = {"\"a\x01\"", "\"a\\x\"", "{\"a\":1,}", "\"\\u00g0\"",
                                    "[1 2]",     "01",       "\"open"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CU_ASSERT_FALSE(valid_json(bad[i], strlen(bad[i])));
  }
  const char *good = "{\"a\":[1,-2.5e3,null,\"\\u00e9\",true],\"b\":{}}";
  CU_ASSERT_TRUE(valid_json(good, strlen(good)));
}

int main(void) {
  unsetenv("KFM_CONFIG");
  static const struct kt_case cases[] = {
      {"ASCII, quotes, controls and DEL", test_ascii_and_escapes},
      {"well-formed multi-byte UTF-8 passes through", test_valid_multibyte_passes},
      {"each ill-formed UTF-8 class becomes U+FFFD", test_invalid_utf8_replaced},
      {"all short byte strings give valid JSON", test_exhaustive_short_strings},
      {"export through output= keeps names valid", test_export_round_trip},
      {"the test's own validators", test_validators},
      {NULL, NULL},
  };
  return kt_run("json", cases);
}
