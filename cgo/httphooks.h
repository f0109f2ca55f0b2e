/*
 * httphooks.h - the HTTP request parser run on one complete message the
 * way the engine runs it (head, then the body its framing says), for the
 * differential fuzz test against net/http (build tag eventer_testhooks).
 */
#ifndef ACOEVENTER_CGO_HTTPHOOKS_H
#define ACOEVENTER_CGO_HTTPHOOKS_H

#include <stddef.h>
#include <stdint.h>

#define EV_HH_MAX_HEADERS 100

typedef struct {
  int status; /* 0: accepted; -1: incomplete; else the HTTP status */
  uint32_t method_off, method_len, target_off, target_len;
  int major, minor;
  int nhdr;
  uint32_t name_off[EV_HH_MAX_HEADERS], name_len[EV_HH_MAX_HEADERS];
  uint32_t value_off[EV_HH_MAX_HEADERS], value_len[EV_HH_MAX_HEADERS];
  size_t consumed; /* bytes of the message, body framing included */
  char *body;      /* malloc'd (ev_hh_free) */
  size_t body_len;
} ev_hh_result_t;

/* Parses buf[0..len) with the default limits and scanner impl. */
void ev_hh_parse(const char *buf, size_t len, ev_hh_result_t *r);
void ev_hh_free(ev_hh_result_t *r);
/* ev_http_simd_set / ev_http_simd_available / ev_http_simd_get */
int ev_hh_simd_set(int impl);
int ev_hh_simd_available(int impl);
int ev_hh_simd_get(void);

#endif
