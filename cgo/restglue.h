/*
 * restglue.h - Go handlers on the HTTP engine's REST routes (rest.go).
 *
 * A Go rule is a C rule whose handler is the relay (ev_go_rest_relay),
 * always served "aco": for each request the engine runs the relay in a C
 * coroutine of its own, and the relay hands the request to Go
 * (goRestStart): a goroutine or a Go coroutine runs the Go handler.  That
 * handler reads the request and builds the response headers and body
 * itself (the engine allows it while the request's coroutine waits:
 * mtev_http.h, "Threads"); what has to wait on the connection -- reading
 * the body, flushing, ending -- it asks of the relay (ev_go_rest_submit),
 * which does it in its coroutine, where the engine's calls wait without
 * blocking the loop, and reports back (goRestOpDone).  A client that goes
 * away cancels the relay's wait; the relay tells Go (goRestCancel).  The
 * relay lives until Go's last operation (END or DONE), so the session and
 * the request stay valid for the Go handler as long as it runs.
 *
 * Memory: an ev_go_req_t is C memory shared by the relay and Go (two
 * references); Go holds it as an integer.  No Go pointer is kept in C.
 */
#ifndef ACOEVENTER_CGO_RESTGLUE_H
#define ACOEVENTER_CGO_RESTGLUE_H

#include <stddef.h>
#include <stdint.h>

#include "mtev_http.h"
#include "mtev_rest.h"

enum { /* operations the relay does for Go */
  EV_GO_OP_READ = 1, /* up to len body bytes into buf: res bytes, 0 at the end */
  EV_GO_OP_FLUSH,    /* mtev_http_response_flush(ctx, false): res 1 or 0 */
  EV_GO_OP_END,      /* mtev_http_response_end: res 1 or 0; the relay ends */
  EV_GO_OP_DONE      /* the relay ends (the response ended already) */
};

typedef struct ev_go_req ev_go_req_t;

/* The rule: method, base, expression as mtev_http_rest_new_rule; id is
 * Go's rule id (the rule's closure).  The mountpoint, or NULL with errno. */
mtev_rest_mountpoint_t *ev_go_rest_rule(const char *method, const char *base,
                                        const char *expr, uint64_t id);

/* Takes a rule out of service: its requests get 404. */
void ev_go_rest_rule_close(mtev_rest_mountpoint_t *mp);

/* Go's side of a request (any thread, after goRestStart): */
/* Asks the relay for op (len: READ's maximum).  0, or an errno: EBUSY (an
 * operation is pending), EPIPE (the relay has ended). */
int ev_go_rest_submit(uintptr_t r, int op, size_t len);
/* The result of the last operation once it is done (goRestOpDone): 1 and
 * *res, *err; 0 while it is pending. */
int ev_go_rest_result(uintptr_t r, int64_t *res, int *err);
/* The relay's buffer (READ's bytes). */
const char *ev_go_rest_buf(uintptr_t r);
/* Drops Go's reference. */
void ev_go_rest_release(uintptr_t r);

/* What Go reads of the request and builds of the response, while its
 * handler runs (see the top): thin wrappers over mtev_http_*. */
typedef struct {
  const char *method, *uri, *proto, *query, *remote;
  int nhdr, npats, minor, payload, chunked;
  int64_t content_length;
  /* TLS (tls 1): the version and cipher suite as their IANA numbers, the
   * ALPN protocol, SNI and peer CN ("" if none), whether the session was
   * resumed, and the peer's certificates (DER, leaf first, concatenated;
   * valid until the request's release) */
  int tls, tls_resumed;
  uint16_t tls_version, tls_cipher;
  const char *alpn, *sni, *remote_cn;
  const unsigned char *peer_der;
  size_t peer_der_len;
} ev_go_req_info_t;
void ev_go_rest_info(uintptr_t r, ev_go_req_info_t *out);
const char *ev_go_rest_header(uintptr_t r, int i, const char **value);
const char *ev_go_rest_pat(uintptr_t r, int i);
int ev_go_rest_status(uintptr_t r, int code, const char *reason);
int ev_go_rest_header_set(uintptr_t r, const char *name, const char *value);
int ev_go_rest_option(uintptr_t r, uint32_t opt);
int ev_go_rest_append(uintptr_t r, const void *p, size_t n);
/* 1 once the response headers went out. */
int ev_go_rest_headers_sent(uintptr_t r);

#endif
