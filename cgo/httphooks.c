//go:build eventer_testhooks

/* httphooks.c - see httphooks.h */
#include "httphooks.h"

#include <stdlib.h>
#include <string.h>

#include "../csrc/http/http_parse.h"

void ev_hh_parse(const char *buf, size_t len, ev_hh_result_t *r) {
  memset(r, 0, sizeof(*r));
  const ev_http_limits_t lim = EV_HTTP_LIMITS_DEFAULT;
  const uint64_t max_body = 64u << 20; /* the engine's default */
  size_t scan = 0;
  long end = ev_http_head_end(buf, len, &scan, &lim);
  if (end <= 0) {
    r->status = end == 0 ? -1 : (int)-end;
    return;
  }
  ev_http_hdr_t hdr[EV_HTTP_MAX_HEADERS];
  ev_http_head_t h;
  h.hdr = hdr;
  int st = ev_http_parse_head(buf, (size_t)end, &h, &lim);
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
