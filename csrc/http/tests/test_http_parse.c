/*
 * test_http_parse.c - the request parser and the chunked decoder, run
 * once per scanner implementation the CPU has (scalar always: that is
 * also what arm64 runs; SSE4.2 and AVX2 where present).
 */
#include <dirent.h>

#include "acotest.h"
#include "http_parse.h"

static const ev_http_limits_t lim = {256, 2048, 16};

/* ev_http_parse_prefix on s followed by `more` (another request's bytes)
 * must agree with the two steps: the head's length when they accept it
 * (and the same parse), 0 when not. */
static void prefix_agrees(const char *s, long end, int status,
                          const ev_http_head_t *h, const char *more) {
  size_t n = strlen(s), m = strlen(more);
  char *b = malloc(n + m + 1);
  memcpy(b, s, n);
  memcpy(b + n, more, m + 1);
  ev_http_head_t p;
  ev_http_hdr_t phdr[16];
  p.hdr = phdr;
  long pl = ev_http_parse_prefix(b, n + m, &p, &lim);
  long want = end > 0 && status == 0 ? end : 0;
  T_CHECKF(pl == want,
           "prefix parse of \"%s\" + \"%s\": %ld, want %ld", s, more, pl, want);
  if (pl > 0) {
    T_EQ(p.method - b, h->method - s);
    T_EQ(p.target - b, h->target - s);
    T_EQ(p.target_len, h->target_len);
    T_EQ(p.path_len, h->path_len);
    T_EQ(p.query_len, h->query_len);
    T_EQ(!p.query, !h->query);
    T_EQ(p.minor, h->minor);
    T_EQ(p.chunked, h->chunked);
    T_EQ(p.conn_close, h->conn_close);
    T_EQ(p.conn_keep_alive, h->conn_keep_alive);
    T_EQ(p.expect_continue, h->expect_continue);
    T_EQ(p.content_length, h->content_length);
    T_EQ(p.nhdr, h->nhdr);
    T_EQ(p.head_len, h->head_len);
    for (uint32_t i = 0; i < p.nhdr; i++) {
      T_EQ(p.hdr[i].name - b, h->hdr[i].name - s);
      T_EQ(p.hdr[i].value - b, h->hdr[i].value - s);
      T_EQ(p.hdr[i].value_len, h->hdr[i].value_len);
    }
  }
  free(b);
}

/* Parses a complete head; returns 0 or the status. */
static int parse(const char *s, ev_http_head_t *h, ev_http_hdr_t *hdr) {
  size_t scan = 0, n = strlen(s);
  long end = ev_http_head_end(s, n, &scan, &lim);
  if (end < 0) {
    prefix_agrees(s, end, -1, h, "");
    return (int)-end;
  }
  T_CHECKF(end > 0, "head of \"%s\" not complete", s);
  h->hdr = hdr;
  int st = ev_http_parse_head(s, (size_t)end, h, &lim);
  prefix_agrees(s, end, st, h, "");
  prefix_agrees(s, end, st, h, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  return st;
}

static int st(const char *s) {
  ev_http_head_t h;
  ev_http_hdr_t hdr[16];
  return parse(s, &h, hdr);
}

static void test_request_line(void) {
  ev_http_head_t h;
  ev_http_hdr_t hdr[16];
  T_EQ(parse("GET /a/b?x=1&y HTTP/1.1\r\nHost: h\r\n\r\n", &h, hdr), 0);
  T_EQ(h.method_len, 3);
  T_CHECK(!memcmp(h.method, "GET", 3));
  T_EQ(h.target_len, 10);
  T_CHECK(!memcmp(h.path, "/a/b", 4) && h.path_len == 4);
  T_CHECK(h.query && h.query_len == 5 && !memcmp(h.query, "x=1&y", 5));
  T_EQ(h.major, 1);
  T_EQ(h.minor, 1);
  T_EQ(h.content_length, -1);
  T_EQ(h.nhdr, 1);
  T_EQ(parse("GET / HTTP/1.0\n\n", &h, hdr), 0); /* bare LF */
  T_EQ(h.minor, 0);
  T_CHECK(h.query == NULL);
  T_EQ(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &h, hdr), 0);
  T_CHECK(h.path_len == 1 && h.path[0] == '*');
  T_EQ(parse("GET http://Example.com:80/p?q HTTP/1.1\r\nHost: h\r\n\r\n", &h, hdr), 0);
  T_CHECK(h.absolute && h.path_len == 2 && !memcmp(h.path, "/p", 2));
  T_EQ(parse("GET http://example.com HTTP/1.1\r\nHost: h\r\n\r\n", &h, hdr), 0);
  T_CHECK(h.path_len == 1 && h.path[0] == '/');
  T_EQ(parse("CONNECT example.com:443 HTTP/1.1\r\n\r\n", &h, hdr), 0);
  T_EQ(parse("GET /%41%2f HTTP/1.1\r\nHost: h\r\n\r\n", &h, hdr), 0);
  T_EQ(parse("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", &h, hdr), 0);
  T_EQ(parse("HEAD / HTTP/1.9\r\nHost: h\r\n\r\n", &h, hdr), 0);
  T_CHECK(h.is_head && h.minor == 9);
  T_EQ(parse("M-SEARCH * HTTP/1.1\r\nHost: h\r\n\r\n", &h, hdr), 0);

  const char *bad[] = {
      "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", /* leading empty line */
      "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",     /* two spaces */
      "GET / HTTP/1.1 \r\nHost: h\r\n\r\n",     /* trailing space */
      "GET /\tx HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET / HTTP/1.1\rX\r\nHost: h\r\n\r\n",
      "GET / HTTPS/1.1\r\nHost: h\r\n\r\n",
      "GET / HTTP/1.10\r\nHost: h\r\n\r\n",
      "GET / HTTP/1\r\nHost: h\r\n\r\n",
      "GET / http/1.1\r\nHost: h\r\n\r\n",
      "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
      " GET / HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET /%4 HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET http:/x HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET http://a b HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET http://a:b/ HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n",
      "CONNECT a/b:1 HTTP/1.1\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    T_CHECKF(st(bad[i]) == 400, "\"%s\": %d", bad[i], st(bad[i]));
  T_EQ(st("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
  T_EQ(st("GET / HTTP/0.9\r\nHost: h\r\n\r\n"), 505);
}

static void test_fields(void) {
  ev_http_head_t h;
  ev_http_hdr_t hdr[16];
  T_EQ(parse("GET / HTTP/1.1\r\nHost: h\r\nX-A:\t v a l \t\r\nx-b:\r\n"
             "X-C: \x80\xff ok\r\n\r\n", &h, hdr), 0);
  T_EQ(h.nhdr, 4);
  T_CHECK(h.hdr[1].name_len == 3 && !memcmp(h.hdr[1].name, "X-A", 3));
  T_CHECK(h.hdr[1].value_len == 5 && !memcmp(h.hdr[1].value, "v a l", 5));
  T_EQ(h.hdr[2].value_len, 0);
  T_EQ(h.hdr[3].value_len, 5);
  /* framing */
  T_EQ(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n", &h, hdr), 0);
  T_EQ(h.content_length, 42);
  T_EQ(parse("POST / HTTP/1.1\r\nHost: h\r\ncontent-length: 007\r\n"
             "Content-Length:   007 \r\n\r\n", &h, hdr), 0);
  T_EQ(h.content_length, 7);
  /* any number of digits up to 2^63 - 1, as net/http (the Go fuzz test
   * found 19 zeros, once refused as too many digits) */
  T_EQ(parse("POST / HTTP/1.0\nContent-Length:0000000000000000000\n\n", &h, hdr), 0);
  T_EQ(h.content_length, 0);
  T_EQ(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1234567890123456789\r\n\r\n",
             &h, hdr), 0);
  T_EQ(h.content_length, 1234567890123456789ll);
  T_EQ(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 09223372036854775807\r\n\r\n",
             &h, hdr), 0);
  T_EQ(h.content_length, INT64_MAX);
  T_EQ(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n", &h, hdr), 0);
  T_CHECK(h.chunked && h.content_length == -1);
  T_EQ(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, Close\r\n\r\n", &h, hdr), 0);
  T_CHECK(h.conn_close && !h.conn_keep_alive);
  T_EQ(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &h, hdr), 0);
  T_CHECK(h.conn_keep_alive);
  T_EQ(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", &h, hdr), 0);
  T_CHECK(!h.conn_close);
  T_EQ(parse("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n"
             "Content-Length: 1\r\n\r\n", &h, hdr), 0);
  T_CHECK(h.expect_continue);
  T_EQ(parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &h, hdr), 0);
  T_CHECK(!h.expect_continue);
  T_EQ(parse("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", &h, hdr), 0);
  T_EQ(parse("GET / HTTP/1.1\r\nHost:\r\n\r\n", &h, hdr), 0);

  struct {
    const char *req;
    int status;
  } cases[] = {
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400},   /* folded */
      {"GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400},             /* leading ws */
      {"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},             /* ws before ':' */
      {"GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400},       /* empty name */
      {"GET / HTTP/1.1\r\nHost: h\r\nX(: v\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX\xc3: v\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nno colon\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n\r\n", 400},                          /* no Host */
      {"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 03\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", 400},
      /* 2^63: over what net/http accepts */
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775808\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
      {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
       "Transfer-Encoding: chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501},
      {"GET / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", 417},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    ev_http_head_t hh;
    ev_http_hdr_t hd[16];
    const char *s = cases[i].req;
    size_t n = strlen(s);
    size_t scan = 0;
    long end = ev_http_head_end(s, n, &scan, &lim);
    T_CHECK(end > 0);
    hh.hdr = hd;
    int got = ev_http_parse_head(s, (size_t)end, &hh, &lim);
    T_CHECKF(got == cases[i].status, "case %zu \"%s\": %d, want %d", i, s, got,
             cases[i].status);
  }
}

/* A NUL in a value. */
static void test_nul(void) {
  static const char req[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
  size_t scan = 0;
  long end = ev_http_head_end(req, sizeof(req) - 1, &scan, &lim);
  T_EQ(end, (long)sizeof(req) - 1);
  ev_http_head_t h;
  ev_http_hdr_t hd[16];
  h.hdr = hd;
  T_EQ(ev_http_parse_head(req, (size_t)end, &h, &lim), 400);
}

static void test_limits(void) {
  char buf[4096];
  /* request line: 256 bytes at most, CRLF included */
  int n = snprintf(buf, sizeof(buf), "GET /%0*d HTTP/1.1\r\nHost: h\r\n\r\n", 256 - 16, 0);
  size_t scan = 0;
  T_CHECK(ev_http_head_end(buf, (size_t)n, &scan, &lim) > 0);
  n = snprintf(buf, sizeof(buf), "GET /%0*d HTTP/1.1\r\nHost: h\r\n\r\n", 256 - 15, 0);
  scan = 0;
  T_EQ(ev_http_head_end(buf, (size_t)n, &scan, &lim), -414);
  T_EQ(st(buf), 414);
  /* known before the line ends */
  scan = 0;
  T_EQ(ev_http_head_end(buf, 257, &scan, &lim), -414);
  scan = 0;
  T_EQ(ev_http_head_end(buf, 256, &scan, &lim), 0);
  /* the head: 2048 bytes at most */
  n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\nX: %0*d\r\n\r\n",
               2048 - 16 - 9 - 3 - 4, 0);
  T_EQ(n, 2048);
  scan = 0;
  T_EQ(ev_http_head_end(buf, (size_t)n, &scan, &lim), 2048);
  T_EQ(st(buf), 0);
  n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\nX: %0*d\r\n\r\n",
               2048 - 16 - 9 - 3 - 3, 0);
  scan = 0;
  T_EQ(ev_http_head_end(buf, (size_t)n, &scan, &lim), -431);
  T_EQ(st(buf), 431);
  scan = 0;
  T_EQ(ev_http_head_end(buf, 2048, &scan, &lim), -431); /* not complete yet */
  /* 16 fields at most */
  n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n");
  for (int i = 0; i < 15; i++) n += snprintf(buf + n, sizeof(buf) - (size_t)n, "X%d: y\r\n", i);
  strcpy(buf + n, "\r\n");
  T_EQ(st(buf), 0);
  strcpy(buf + n, "Y: z\r\n\r\n");
  T_EQ(st(buf), 431);
}

/* Feeding the head one byte at a time finds the same end, scanning each
 * byte about once. */
static void test_incremental(void) {
  const char *reqs[] = {
      "GET / HTTP/1.1\r\nHost: h\r\n\r\nNEXT",
      "GET / HTTP/1.0\n\nNEXT",
      "GET / HTTP/1.1\r\nA: b\r\n\n",
      "GET / HTTP/1.1\nA: b\r\n\r\nX",
      "\r\nGET",
      "\nGET",
  };
  for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
    size_t n = strlen(reqs[i]), scan = 0;
    size_t scan_all = 0;
    long want = ev_http_head_end(reqs[i], n, &scan_all, &lim);
    long got = 0;
    size_t k;
    for (k = 1; k <= n && got == 0; k++) got = ev_http_head_end(reqs[i], k, &scan, &lim);
    T_CHECKF(got == want, "\"%s\": %ld, want %ld", reqs[i], got, want);
    T_EQ(k - 1, (size_t)want); /* found as soon as it was there */
  }
}

/* A head whose lines end in bare CRs never ends (no LF): it gets its 400
 * as soon as the byte after a bare CR is there, whether the head comes at
 * once or a byte at a time; a CR that is the last byte so far is not yet
 * known to be bare, and CRLF line ends stay fine. */
static void test_bare_cr(void) {
  static const struct {
    const char *req;
    size_t at; /* the length at which it is known: the byte after the CR */
  } cases[] = {
      {"GET /x HTTP/1.1\rHost: a\r\r", 17},
      {"GET /x HTTP/1.1\r\nHost: a\rX: b", 26},
      {"GET /x HTTP/1.1\r\nHost: a\r\nX: b\r\rY", 32},
      {"GET\r/ HTTP/1.1\r\n", 5},
      {"\r\r", 2},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *r = cases[i].req;
    size_t n = strlen(r), scan = 0, k;
    T_CHECKF(r[cases[i].at - 2] == '\r' && r[cases[i].at - 1] != '\n', "case %zu: bad at", i);
    long all = ev_http_head_end(r, n, &scan, &lim);
    T_CHECKF(all == -400, "\"%s\" at once: %ld, want -400", r, all);
    long got = 0;
    scan = 0;
    for (k = 1; k <= n && got == 0; k++) got = ev_http_head_end(r, k, &scan, &lim);
    T_CHECKF(got == -400, "\"%s\" a byte at a time: %ld, want -400", r, got);
    T_CHECKF(k - 1 == cases[i].at, "\"%s\": known at %zu, want %zu", r, k - 1,
             cases[i].at);
    /* in two parts split at the CR: the CR last, then the rest */
    scan = 0;
    T_EQ(ev_http_head_end(r, cases[i].at - 1, &scan, &lim), 0);
    T_EQ(ev_http_head_end(r, n, &scan, &lim), -400);
  }
  /* CRLF heads a byte at a time are still found, not refused */
  static const char ok[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  size_t scan = 0;
  long got = 0;
  for (size_t k = 1; k <= sizeof(ok) - 1 && got == 0; k++)
    got = ev_http_head_end(ok, k, &scan, &lim);
  T_EQ(got, (long)sizeof(ok) - 1);
}

/* Every byte position of every value length: an invalid byte is found
 * wherever it is, by every implementation (the SIMD loops and their
 * scalar tails). */
static void test_scan_positions(void) {
  static const unsigned char badv[] = {0x00, 0x01, 0x0b, 0x1f, 0x7f, '\r'};
  static const unsigned char okv[] = {'\t', ' ', 'a', '~', 0x80, 0xff};
  char buf[512];
  for (size_t len = 1; len < 100; len++) {
    for (size_t pos = 0; pos < len; pos++) {
      for (size_t b = 0; b < sizeof(badv) + sizeof(okv); b++) {
        int bad = b < sizeof(badv);
        unsigned char c = bad ? badv[b] : okv[b - sizeof(badv)];
        int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\nX: ");
        for (size_t i = 0; i < len; i++) buf[n + (int)i] = 'v';
        buf[n + (int)pos] = (char)c;
        /* a value ending in whitespace would be trimmed, not rejected */
        if (!bad && (pos == len - 1 || pos == 0) && (c == ' ' || c == '\t'))
          buf[n + (int)pos] = 'v';
        memcpy(buf + n + len, "\r\n\r\n", 5);
        size_t total = (size_t)n + len + 4;
        size_t scan = 0;
        long end = ev_http_head_end(buf, total, &scan, &lim);
        ev_http_head_t h;
        ev_http_hdr_t hd[16];
        h.hdr = hd;
        int got = end > 0 ? ev_http_parse_head(buf, (size_t)end, &h, &lim) : -1;
        T_CHECKF((got == 400) == bad, "value len %zu byte 0x%02x at %zu: %d", len,
                 c, pos, got);
      }
      /* the target */
      static const unsigned char badt[] = {' ', 0x00, 0x1f, 0x7f, '\t'};
      for (size_t b = 0; b < sizeof(badt) + 2; b++) {
        int bad = b < sizeof(badt);
        unsigned char c = bad ? badt[b] : (b == sizeof(badt) ? '!' : 0xc3);
        int n = snprintf(buf, sizeof(buf), "GET /");
        for (size_t i = 0; i < len; i++) buf[n + (int)i] = 't';
        buf[n + (int)pos] = (char)c;
        int m = n + (int)len;
        m += snprintf(buf + m, sizeof(buf) - (size_t)m, " HTTP/1.1\r\nHost: h\r\n\r\n");
        size_t scan = 0;
        long end = ev_http_head_end(buf, (size_t)m, &scan, &lim);
        ev_http_head_t h;
        ev_http_hdr_t hd[16];
        h.hdr = hd;
        int got = end > 0 ? ev_http_parse_head(buf, (size_t)end, &h, &lim) : -1;
        T_CHECKF((got == 400) == bad, "target len %zu byte 0x%02x at %zu: %d", len,
                 c, pos, got);
      }
    }
  }
}

/* Decodes a whole chunked body feeding `step` bytes at a time, data spans
 * at most max_data bytes.  Returns the status (0 ok) and the body. */
static int dechunk(const char *in, size_t n, size_t step, size_t max_data,
                   uint64_t max_body, char *out, size_t *outn, size_t *used) {
  ev_http_chunked_t c;
  memset(&c, 0, sizeof(c));
  size_t have = 0, pos = 0;
  *outn = 0;
  for (;;) {
    if (have < n && (have - pos < 64 || step == 1)) {
      have += step;
      if (have > n) have = n;
    }
    const char *d;
    size_t dl;
    long r = ev_http_chunked_step(&c, in + pos, have - pos, max_body, max_data, &d, &dl);
    if (r < 0) return (int)-r;
    if (dl) memcpy(out + *outn, d, dl);
    *outn += dl;
    pos += (size_t)r;
    if (c.state == EV_HTTP_CK_DONE) {
      *used = pos;
      return 0;
    }
    if (r == 0 && have == n) return -1; /* needs more than there is */
  }
}

static void test_chunked(void) {
  struct {
    const char *in;
    int status;
    const char *body;
    size_t used;
  } cases[] = {
      {"5\r\nhello\r\n0\r\n\r\nNEXT", 0, "hello", 15},
      {"5;ext=1\r\nhello\r\n6 \t\r\n world\r\n0\r\n\r\n", 0, "hello world", 0},
      {"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n", 0, "01234567890123456789", 0},
      {"5\r\nhello\r\n0\r\nTrailer: x\r\nT2: y\r\n\r\n", 0, "hello", 0},
      {"5\r\nhello\r\n0\r\nTrailer: x\r\nT2: y\n\r\n", 400, "", 0},
      {"0\r\n\n", 400, "", 0},
      {"00000000000000005\r\nhello\r\n0\r\n\r\n", 400, "", 0}, /* 17 digits */
      {"5 ;x\r\nhello\r\n0\r\n\r\n", 400, "", 0},
      {"5\nhello\r\n0\r\n\r\n", 400, "", 0},
      {"5\r\nhello\n0\r\n\r\n", 400, "", 0},
      {"5\r\nhelloX\r\n0\r\n\r\n", 400, "", 0},
      {"5\r\r\nhello\r\n0\r\n\r\n", 400, "", 0},
      {"-5\r\nhello\r\n0\r\n\r\n", 400, "", 0},
      {"\r\nhello\r\n0\r\n\r\n", 400, "", 0},
      {"0x5\r\nhello\r\n0\r\n\r\n", 400, "", 0},
      {"5\r\nhello\r\n0\r\n folded: x\r\n\r\n", 400, "", 0},
      {"5\r\nhello\r\n0\r\nno colon\r\n\r\n", 400, "", 0},
      {"ffffffffffffffff\r\n", 413, "", 0},
      {"401\r\n", 413, "", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    size_t n = strlen(cases[i].in);
    for (size_t step = 1; step <= n; step = step * 3 + 1) {
      for (size_t md = 1; md <= 64; md *= 4) {
        char out[256];
        size_t outn, used = 0;
        int got = dechunk(cases[i].in, n, step, md, 1024, out, &outn, &used);
        T_CHECKF(got == cases[i].status, "\"%s\" step %zu: %d, want %d",
                 cases[i].in, step, got, cases[i].status);
        if (got == 0) {
          T_CHECK(outn == strlen(cases[i].body) && !memcmp(out, cases[i].body, outn));
          if (cases[i].used) T_EQ(used, cases[i].used);
        }
      }
    }
  }
  /* a chunk line longer than the limit */
  char *big = malloc(EV_HTTP_CHUNK_LINE_MAX + 64);
  memset(big, 0, EV_HTTP_CHUNK_LINE_MAX + 64);
  strcpy(big, "5;");
  memset(big + 2, 'x', EV_HTTP_CHUNK_LINE_MAX + 10);
  ev_http_chunked_t c;
  memset(&c, 0, sizeof(c));
  const char *d;
  size_t dl;
  T_EQ(ev_http_chunked_step(&c, big, strlen(big), 1 << 20, 1 << 20, &d, &dl), -400);
  free(big);
}

static void test_simd_api(void) {
  T_CHECK(ev_http_simd_available(EV_HTTP_SIMD_SCALAR));
  T_ERRNO(ev_http_simd_set(17), ENOTSUP);
  T_STR_EQ(ev_http_simd_name(EV_HTTP_SIMD_SCALAR), "scalar");
  T_CHECK(ev_http_token_eq("Content-Length", 14, "content-length"));
  T_CHECK(!ev_http_token_eq("Content-Lengt", 13, "content-length"));
  T_CHECK(!ev_http_token_eq("Content-Lengths", 15, "content-length"));
}

/* every case under every implementation this machine has */
static void run_all(void (*fn)(void)) {
  int ran = 0;
  for (int impl = EV_HTTP_SIMD_SCALAR; impl <= EV_HTTP_SIMD_AVX2; impl++) {
    if (!ev_http_simd_available(impl)) continue;
    T_EQ(ev_http_simd_set(impl), 0);
    T_EQ(ev_http_simd_get(), impl);
    fn();
    ran++;
  }
  T_GE(ran, 1);
}

/* Every byte at each place of a Host value of each length up to 17 (the
 * 16-byte classification and past it): accepted exactly when net/http's
 * server accepts it (alphanumerics, "!$%&'()*+,-.:;=[]_~"). */
static void test_host_bytes(void) {
  static const char ok[] = "!$%&'()*+,-.:;=[]_~";
  char req[128];
  for (int c = 0; c < 256; c++) {
    if (c == '\r' || c == '\n' || c == ' ' || c == '\t') continue; /* line and OWS */
    int allowed = (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
                  (c && strchr(ok, c));
    for (int len = 1; len <= 17; len += 4) {
      for (int at = 0; at < len; at += len > 1 ? len - 1 : 1) {
        char v[32];
        memset(v, 'h', (size_t)len);
        v[at] = (char)c;
        v[len] = 0;
        if (c == 0) continue; /* a NUL would end the test's string */
        snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", v);
        int want = allowed ? 0 : 400;
        T_CHECKF(st(req) == want, "Host byte 0x%02x at %d of %d: want %d", c, at,
                 len, want);
      }
    }
  }
}


/* ---- the fast path against the general parse -------------------------------
 * ev_http_parse_prefix tries a fast path for the common head first and
 * runs the general parse from the start when the fast path is not sure.
 * Whenever the fast path answers, the general parse must give the same
 * answer and the same *h, bit for bit; ev_http_parse_prefix must always
 * give the general parse's answer. */

static long diff_runs, diff_fast_yes;

#define HEAD_FIELDS(X)                                                     \
  X(method) X(target) X(path) X(query) X(method_len) X(target_len)        \
  X(path_len) X(query_len) X(major) X(minor) X(chunked) X(conn_close)     \
  X(conn_keep_alive) X(expect_continue) X(is_head) X(absolute)            \
  X(content_length) X(nhdr) X(head_len)

/* 1 when a and b (parses of the same buffer) are the same */
static int same_head(const ev_http_head_t *a, const ev_http_head_t *b) {
#define SAME(f) if (a->f != b->f) return 0;
  HEAD_FIELDS(SAME)
#undef SAME
  for (uint32_t i = 0; i < a->nhdr; i++)
    if (a->hdr[i].name != b->hdr[i].name || a->hdr[i].value != b->hdr[i].value ||
        a->hdr[i].name_len != b->hdr[i].name_len ||
        a->hdr[i].value_len != b->hdr[i].value_len)
      return 0;
  return 1;
}

/* The three over data[0..len) in a buffer of exactly len bytes (ASan sees
 * a read past its end), limits lim. */
static void diff_one(const char *data, size_t len, const ev_http_limits_t *l) {
  char *b = malloc(len ? len : 1);
  memcpy(b, data, len);
  ev_http_hdr_t fh[EV_HTTP_MAX_HEADERS], gh[EV_HTTP_MAX_HEADERS],
      ph[EV_HTTP_MAX_HEADERS];
  ev_http_head_t f, g, p;
  f.hdr = fh;
  g.hdr = gh;
  p.hdr = ph;
  long fl = ev_http_parse_prefix_fast(b, len, &f, l);
  long gl = ev_http_parse_prefix_general(b, len, &g, l);
  long pl = ev_http_parse_prefix(b, len, &p, l);
  diff_runs++;
  if (fl > 0) {
    diff_fast_yes++;
    T_CHECKF(fl == gl && same_head(&f, &g),
             "fast path %ld, general %ld (same head %d) on %zu bytes \"%.*s\"",
             fl, gl, gl > 0 && same_head(&f, &g), len, (int)len, data);
  } else {
    T_CHECKF(fl == 0, "fast path %ld on \"%.*s\"", fl, (int)len, data);
  }
  T_CHECKF(pl == gl && (pl <= 0 || same_head(&p, &g)),
           "prefix parse %ld, general %ld on \"%.*s\"", pl, gl, (int)len, data);
  free(b);
}

/* Limits that each request below meets, at and just below what it needs
 * (414, 431 for the head's size and for the count of fields). */
static void diff_limits(const char *data, size_t len) {
  static const ev_http_limits_t lims[] = {
      EV_HTTP_LIMITS_DEFAULT, {256, 2048, 16}, {18, 64, 1}, {30, 100, 2},
      {45, 128, 3}, {64, 256, 4}, {16, 16, 0}};
  for (size_t k = 0; k < sizeof(lims) / sizeof(lims[0]); k++)
    diff_one(data, len, &lims[k]);
}

/* Requests of the shapes the fast path takes and of the shapes around
 * them: each is also mutated, truncated and followed by another. */
static const char *const diff_reqs[] = {
    "GET /hello HTTP/1.1\r\nHost: 127.0.0.1:34567\r\n\r\n", /* wrk */
    "GET / HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n\r\n", /* curl */
    "GET /a/much/longer/path/than/sixteen/bytes.html?q=1&r=%zz&s=?? HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 "
    "Firefox/120.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
    "Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\n"
    "Sec-Fetch-Dest: document\r\n\r\n",
    "POST /api/v1/items HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
    "Content-Length: 17\r\n\r\n{\"name\":\"value\"}\n",
    "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5\r\nhello\r\n0\r\n\r\n",
    "PUT /x HTTP/1.1\r\nhost:h\r\nContent-Length: 3\r\nContent-Length: 3\r\n"
    "Expect: 100-continue\r\n\r\nabc",
    "HEAD /index.html HTTP/1.1\r\nHOST: \t h.example:80 \t \r\nConnection: close, "
    "Keep-Alive\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
    "DELETE /r/1 HTTP/1.1\r\nHost: [::1]:8080\r\nX-A-Rather-Long-Field-Name: v\r\n"
    "Connection: upgrade\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET /p HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "GET /% HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET /x HTTP/1.1\nHost: h\n\n",
    "CONNECT / HTTP/1.1\r\n\r\n",
    "GET /x HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",
    "GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: "
    "chunked\r\n\r\n",
    "GET /x HTTP/1.1\r\nHost: h\r\nExpect: nothing\r\n\r\n",
};

/* Each request as it is, truncated at every length, followed by the
 * next one (pipelined), every byte replaced by each of the 256 values,
 * under several limits. */
static void diff_variations(void) {
  size_t nreq = sizeof(diff_reqs) / sizeof(diff_reqs[0]);
  int all_bytes = !t_slow();
  for (size_t r = 0; r < nreq; r++) {
    const char *q = diff_reqs[r], *next = diff_reqs[(r + 1) % nreq];
    size_t n = strlen(q), m = strlen(next);
    char *b = malloc(n + m);
    memcpy(b, q, n);
    memcpy(b + n, next, m);
    diff_limits(b, n + m);
    for (size_t k = 0; k <= n; k++) diff_limits(b, k);
    for (size_t at = 0; at < n; at++) {
      for (int c = 0; c < 256; c += all_bytes ? 1 : 7) {
        char save = b[at];
        b[at] = (char)c;
        diff_one(b, n, &(ev_http_limits_t)EV_HTTP_LIMITS_DEFAULT);
        diff_one(b, n + m, &(ev_http_limits_t){256, 2048, 16});
        b[at] = save;
      }
    }
    free(b);
  }
}

/* The seed requests of the fuzz tests (testdata/http/requests, from the
 * repository's root), whole and truncated at every length. */
static void diff_seeds(void) {
  DIR *d = opendir("testdata/http/requests");
  T_CHECKF(d != NULL, "testdata/http/requests: %s (run from the repository's root)",
           strerror(errno));
  struct dirent *e;
  int files = 0;
  while ((e = readdir(d)) != NULL) {
    if (!strstr(e->d_name, ".http")) continue;
    char path[512], buf[8192];
    snprintf(path, sizeof(path), "testdata/http/requests/%s", e->d_name);
    FILE *f = fopen(path, "rb");
    T_CHECKF(f != NULL, "%s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    for (size_t k = 0; k <= n; k++) diff_limits(buf, k);
    files++;
  }
  closedir(d);
  T_GE(files, 20);
}

static void test_fast_path(void) {
  int impl = ev_http_simd_get();
  diff_runs = diff_fast_yes = 0;
  diff_variations();
  diff_seeds();
  printf("# %s: %ld inputs, the fast path answered %ld\n", ev_http_simd_name(impl),
         diff_runs, diff_fast_yes);
  /* the fast path is there on x86-64 with a SIMD scanner, and takes the
   * common heads; the scalar scanner has none (elsewhere: no fast path,
   * and these locals would be unused, an error with -Werror) */
#if defined(__x86_64__)
  ev_http_hdr_t hdr[16];
  ev_http_head_t h;
  h.hdr = hdr;
  static const ev_http_limits_t dl = EV_HTTP_LIMITS_DEFAULT;
  int simd = impl != EV_HTTP_SIMD_SCALAR;
  for (int r = 0; r < 8; r++) {
    long want = simd ? (long)(strstr(diff_reqs[r], "\r\n\r\n") + 4 - diff_reqs[r]) : 0;
    T_CHECKF(ev_http_parse_prefix_fast(diff_reqs[r], strlen(diff_reqs[r]), &h, &dl) == want,
             "fast path on request %d under %s: want %ld", r, ev_http_simd_name(impl), want);
  }
  T_CHECK(simd ? diff_fast_yes > 1000 : diff_fast_yes == 0);
#else
  T_EQ(diff_fast_yes, 0);
#endif
}

static void test_all_impls(void) {
  printf("# scanners: scalar%s%s\n",
         ev_http_simd_available(EV_HTTP_SIMD_SSE42) ? " sse42" : "",
         ev_http_simd_available(EV_HTTP_SIMD_AVX2) ? " avx2" : "");
  run_all(test_request_line);
  run_all(test_fields);
  run_all(test_nul);
  run_all(test_limits);
  run_all(test_scan_positions);
  run_all(test_host_bytes);
}

static void test_fast_path_all(void) { run_all(test_fast_path); }

T_MAIN({"simd_api", test_simd_api}, {"request_line", test_request_line},
       {"fields", test_fields}, {"nul", test_nul}, {"limits", test_limits},
       {"incremental", test_incremental}, {"bare_cr", test_bare_cr}, {"scan_positions", test_scan_positions},
       {"chunked", test_chunked}, {"host_bytes", test_host_bytes},
       {"all_impls", test_all_impls}, {"fast_path", test_fast_path_all})
