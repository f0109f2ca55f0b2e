/*
 * fuzz_http_parse.c - libFuzzer harness for the HTTP request parser, built
 * with clang under ASan+UBSan (make fuzz-http).  Each input is parsed the
 * way the engine parses it (head found incrementally, then the chunked
 * body decoded in small steps) by every scanner implementation the CPU
 * has; the results must be identical, and nothing may read out of bounds.
 * The one-pass parse the engine tries first must agree with the two
 * steps on every input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

typedef struct {
  long end;
  int status;
  ev_http_head_t h;
  uint64_t body_hash;
  long body_status;
  size_t body_used;
} result_t;

/* The one-pass parse of a head at the start of buf[0..size) against the
 * two steps on the same bytes at once: the same length and fields when
 * the two steps accept the head, 0 when they do not. */
static void prefix_check(const char *buf, size_t size,
                         const ev_http_limits_t *lim) {
  size_t scan = 0;
  long end = ev_http_head_end(buf, size, &scan, lim);
  ev_http_hdr_t hdr[32], phdr[32];
  ev_http_head_t h, p;
  h.hdr = hdr;
  p.hdr = phdr;
  int st = end > 0 ? ev_http_parse_head(buf, (size_t)end, &h, lim) : -1;
  long pl = ev_http_parse_prefix(buf, size, &p, lim);
  long want = end > 0 && st == 0 ? end : 0;
  int same = pl == want;
  if (same && pl > 0) {
    same = p.method == h.method && p.target == h.target &&
           p.target_len == h.target_len && p.path_len == h.path_len &&
           p.query == h.query && p.query_len == h.query_len &&
           p.major == h.major && p.minor == h.minor && p.chunked == h.chunked &&
           p.conn_close == h.conn_close && p.conn_keep_alive == h.conn_keep_alive &&
           p.expect_continue == h.expect_continue && p.is_head == h.is_head &&
           p.absolute == h.absolute && p.content_length == h.content_length &&
           p.nhdr == h.nhdr && p.head_len == h.head_len;
    for (uint32_t i = 0; same && i < p.nhdr; i++)
      same = p.hdr[i].name == h.hdr[i].name && p.hdr[i].value == h.hdr[i].value &&
             p.hdr[i].name_len == h.hdr[i].name_len &&
             p.hdr[i].value_len == h.hdr[i].value_len;
  }
  if (!same) {
    fprintf(stderr, "one-pass parse %ld, two steps %ld (status %d)\n", pl, end, st);
    abort();
  }
}

static void run(const uint8_t *data, size_t size, result_t *r) {
  memset(r, 0, sizeof(*r));
  /* the exact bytes in their own allocation, so ASan sees any overread */
  char *buf = malloc(size ? size : 1);
  memcpy(buf, data, size);
  const ev_http_limits_t lim = {512, 4096, 32};
  prefix_check(buf, size, &lim);
  size_t scan = 0;
  /* feed the head in pieces, as it would arrive */
  size_t step = size ? (size_t)data[0] % 7 + 1 : 1;
  long end = 0;
  for (size_t have = step < size ? step : size;; have += step) {
    if (have > size) have = size;
    end = ev_http_head_end(buf, have, &scan, &lim);
    if (end != 0 || have == size) break;
  }
  r->end = end;
  if (end > 0) {
    ev_http_hdr_t hdr[32];
    r->h.hdr = hdr;
    r->status = ev_http_parse_head(buf, (size_t)end, &r->h, &lim);
    if (r->status == 0 && r->h.chunked) {
      ev_http_chunked_t c;
      memset(&c, 0, sizeof(c));
      size_t pos = (size_t)end, have = pos;
      uint64_t hsh = 1469598103934665603ull;
      for (;;) {
        if (have < size) have += step * 3;
        if (have > size) have = size;
        const char *d;
        size_t dl;
        long n = ev_http_chunked_step(&c, buf + pos, have - pos, 1 << 20,
                                      step * 5, &d, &dl);
        if (n < 0) {
          r->body_status = n;
          break;
        }
        for (size_t i = 0; i < dl; i++)
          hsh = (hsh ^ (unsigned char)d[i]) * 1099511628211ull;
        pos += (size_t)n;
        if (c.state == EV_HTTP_CK_DONE) break;
        if (n == 0 && have == size) {
          r->body_status = 1; /* incomplete */
          break;
        }
      }
      r->body_hash = hsh;
      r->body_used = pos;
    }
    /* pointers into buf are compared as offsets */
    r->h.method = (const char *)(r->h.method - buf);
    r->h.target = (const char *)(r->h.target - buf);
    r->h.path = (r->h.path >= buf && r->h.path < buf + size)
                    ? (const char *)(r->h.path - buf)
                    : (const char *)-1; /* a static "/" */
    r->h.query = r->h.query ? (const char *)(r->h.query - buf) : NULL;
    r->h.hdr = NULL;
  }
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  result_t first, other;
  int have_first = 0;
  for (int impl = EV_HTTP_SIMD_SCALAR; impl <= EV_HTTP_SIMD_AVX2; impl++) {
    if (!ev_http_simd_available(impl)) continue;
    ev_http_simd_set(impl);
    run(data, size, have_first ? &other : &first);
    if (!have_first) {
      have_first = 1;
      continue;
    }
    if (first.end != other.end || first.status != other.status ||
        first.body_hash != other.body_hash ||
        first.body_status != other.body_status ||
        first.body_used != other.body_used ||
        (first.status == 0 && first.end > 0 &&
         (first.h.nhdr != other.h.nhdr ||
          first.h.target_len != other.h.target_len ||
          first.h.content_length != other.h.content_length))) {
      fprintf(stderr, "scanner %d disagrees with scalar\n", impl);
      abort();
    }
  }
  return 0;
}
