//go:build eventer_testhooks

/* httphooks.c - see httphooks.h */
#include "httphooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/http/http_parse.h"

/* The engine's one-pass parse (ev_http_parse_prefix: its fast path on
 * x86-64 with a SIMD scanner, else the general parse) must give what the
 * two steps give: the head's length and the same head when they accept
 * it, 0 when not.  A disagreement aborts with the input's length: the
 * fuzzer keeps the input. */
static void prefix_check(const char *buf, size_t len, long end, int st,
                         const ev_http_head_t *h, const ev_http_limits_t *lim) {
  ev_http_hdr_t phdr[EV_HTTP_MAX_HEADERS];
  ev_http_head_t p;
  p.hdr = phdr;
  long pl = ev_http_parse_prefix(buf, len, &p, lim);
  long want = end > 0 && st == 0 ? end : 0;
  int same = pl == want;
  if (same && pl > 0) {
    same = p.method == h->method && p.target == h->target && p.path == h->path &&
           p.query == h->query && p.method_len == h->method_len &&
           p.target_len == h->target_len && p.path_len == h->path_len &&
           p.query_len == h->query_len && p.major == h->major &&
           p.minor == h->minor && p.chunked == h->chunked &&
           p.conn_close == h->conn_close &&
           p.conn_keep_alive == h->conn_keep_alive &&
           p.expect_continue == h->expect_continue && p.is_head == h->is_head &&
           p.absolute == h->absolute && p.content_length == h->content_length &&
           p.nhdr == h->nhdr && p.head_len == h->head_len;
    for (uint32_t i = 0; same && i < p.nhdr; i++)
      same = phdr[i].name == h->hdr[i].name && phdr[i].value == h->hdr[i].value &&
             phdr[i].name_len == h->hdr[i].name_len &&
             phdr[i].value_len == h->hdr[i].value_len;
  }
  if (!same) {
    fprintf(stderr,
            "ev_http_parse_prefix %ld, the two steps %ld (status %d), on %zu bytes\n",
            pl, end, st, len);
    abort();
  }
}

void ev_hh_parse(const char *buf, size_t len, ev_hh_result_t *r) {
  memset(r, 0, sizeof(*r));
  const ev_http_limits_t lim = EV_HTTP_LIMITS_DEFAULT;
  const uint64_t max_body = 64u << 20; /* the engine's default */
  size_t scan = 0;
  long end = ev_http_head_end(buf, len, &scan, &lim);
  ev_http_hdr_t hdr[EV_HTTP_MAX_HEADERS];
  ev_http_head_t h;
  h.hdr = hdr;
  int st = end > 0 ? ev_http_parse_head(buf, (size_t)end, &h, &lim) : -1;
  prefix_check(buf, len, end, st, &h, &lim);
  if (end <= 0) {
    r->status = end == 0 ? -1 : (int)-end;
    return;
  }
  if (st) {
    r->status = st;
    return;
  }
  r->method_off = (uint32_t)(h.method - buf);
  r->method_len = h.method_len;
  r->target_off = (uint32_t)(h.target - buf);
  r->target_len = h.target_len;
  r->major = h.major;
  r->minor = h.minor;
  r->nhdr = (int)h.nhdr;
  for (uint32_t i = 0; i < h.nhdr; i++) {
    r->name_off[i] = (uint32_t)(hdr[i].name - buf);
    r->name_len[i] = hdr[i].name_len;
    r->value_off[i] = (uint32_t)(hdr[i].value - buf);
    r->value_len[i] = hdr[i].value_len;
  }
  size_t pos = (size_t)end;
  if (h.chunked) {
    ev_http_chunked_t c;
    memset(&c, 0, sizeof(c));
    r->body = malloc(len + 1);
    for (;;) {
      const char *d;
      size_t dl;
      long n = ev_http_chunked_step(&c, buf + pos, len - pos, max_body,
                                    (size_t)-1, &d, &dl);
      if (n < 0) {
        r->status = (int)-n;
        return;
      }
      if (dl) memcpy(r->body + r->body_len, d, dl);
      r->body_len += dl;
      pos += (size_t)n;
      if (c.state == EV_HTTP_CK_DONE) break;
      if (n == 0) {
        r->status = -1;
        return;
      }
    }
  } else if (h.content_length > 0) {
    if ((uint64_t)h.content_length > max_body) {
      r->status = 413;
      return;
    }
    if ((uint64_t)h.content_length > len - pos) {
      r->status = -1;
      return;
    }
    r->body = malloc((size_t)h.content_length);
    memcpy(r->body, buf + pos, (size_t)h.content_length);
    r->body_len = (size_t)h.content_length;
    pos += (size_t)h.content_length;
  }
  r->consumed = pos;
}

void ev_hh_free(ev_hh_result_t *r) {
  free(r->body);
  r->body = NULL;
}

int ev_hh_simd_set(int impl) { return ev_http_simd_set(impl); }
int ev_hh_simd_available(int impl) { return ev_http_simd_available(impl); }
int ev_hh_simd_get(void) { return ev_http_simd_get(); }
