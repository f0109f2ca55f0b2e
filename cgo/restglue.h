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
  EV_GO_OP_DONE,     /* the relay ends (the response ended already) */
  EV_GO_OP_ABORT     /* mtev_http_response_abort: res 1 or 0; the relay ends */
};

typedef struct ev_go_req ev_go_req_t;

/* The rule: method, base, expression as mtev_http_rest_new_rule; id is
 * Go's rule id.  The mountpoint, or NULL with errno; *rule (C memory that
 * lives as long as the routing table) is what ev_go_rest_rule_relay
 * takes. */
mtev_rest_mountpoint_t *ev_go_rest_rule(const char *method, const char *base,
                                        const char *expr, uint64_t id,
                                        uintptr_t *rule);
/* From now on, every request of the rule takes the relay (on: the rule's
 * handler streams; see "the direct path" below). */
void ev_go_rest_rule_relay(uintptr_t rule, int on);

/* The rule's handler runs in a coroutine of the loop (on) or in a
 * goroutine: only the first kind joins a pass's batch (below). */
void ev_go_rest_rule_aco(uintptr_t rule, int on);

/* Takes a rule out of service: its requests get 404. */
void ev_go_rest_rule_close(mtev_rest_mountpoint_t *mp);

/* ---- the direct path ----------------------------------------------------------
 * A request with no body, on a plain (not TLS) connection, of a rule that
 * has not been marked relay, is not given a relay: the rule's handler (a
 * classic one) takes a reference on the session, copies the request head
 * into one flat buffer and hands the loop's Go driver an
 * EV_GO_STEP_REST step; the session waits, as for any handler that ends
 * its response later.  Go runs the handler, builds the whole response in
 * Go memory and hands it over in one call (ev_go_rest_respond) on the
 * loop thread, which ends the response and drops the reference.  No C
 * coroutine, no call from C into Go.  A step slot already taken, a body,
 * or a rule marked relay: the relay serves the request, as above.
 *
 * The step: closure = the flat head, u64[2] its length (valid until the
 * driver's next run_once), u64[0] = Go's rule id, u64[1] = the session.  The flat head, native byte order: u32 flags (EV_GO_HEAD_*),
 * i64 Content-Length (-1 chunked), u32 header count, u32 capture count,
 * then strings, each a u32 length and its bytes: method, path, protocol,
 * query, the peer's address (a sockaddr as the acceptor closure holds
 * it), the header fields (name, value, in order), the captures (unset:
 * "").  Over TLS (flag EV_GO_HEAD_TLS) then: u32 version, u32 cipher suite
 * (IANA), u32 resumed (0/1), and the strings ALPN, SNI, the peer
 * certificate's CN as the ACL saw it, the peer's certificates (DER, leaf
 * first, concatenated). */
#define EV_GO_STEP_REST (EVENTER_STEP_USER + 9)
enum { EV_GO_HEAD_PAYLOAD = 1, EV_GO_HEAD_CHUNKED = 2, EV_GO_HEAD_HTTP11 = 4,
       EV_GO_HEAD_TLS = 8 };

/* ---- the loop pass's batch -------------------------------------------------
 * While the loop's driver runs an iteration (ev_go_run sets
 * ev_go_rest_batching around eventer_run_once), a direct request of an
 * aco rule (ev_go_rest_rule_aco) is not
 * handed over as a step of its own (one return from ev_go_run, one cgo
 * call, each): it joins the pass's batch, and when the iteration is over
 * (or run_once returns anything but a step) ev_go_run returns the whole
 * batch in one EV_GO_STEP_REST_BATCH step (ev_go_rest_batch_take).  The
 * step: closure = the entries, u64[0] their count, u64[2] their bytes
 * (valid until the driver's next ev_go_run); each entry is u64 rule (Go's
 * id), u64 session (referenced for Go), u64 head length, then the flat
 * head, padded to 8 bytes.  Only requests dispatched while the loop
 * handles the fds its poll reported (the iteration's last phase) join it:
 * a request waits at most until the end of the pass that dispatched it,
 * never through a poll. */
#define EV_GO_STEP_REST_BATCH (EVENTER_STEP_USER + 10)
/* The most requests a batch holds: a full batch goes to Go at once, the
 * iteration going on when Go is done with it.  Four, not more: the loop
 * thread is inside ev_go_run while it reads and parses the batch's
 * requests, and the Go runtime's sysmon takes the P of a cgo call it finds
 * at two of its ticks in a row (20 us apart while it is woken often);
 * each such retake wakes a spare thread and sets sysmon back to 20 us
 * ticks, so passes of 16 requests (40-80 us) kept it ticking on the
 * loop's CPU for good at 50 connections (bench/README.md, "why gnet's
 * sysmon sleeps").  (At most the 32 idle work areas the HTTP engine
 * keeps per thread; -D sets another for an experiment.) */
#ifndef EV_GO_BATCH_MAX
#define EV_GO_BATCH_MAX 4
#endif
/* A pass whose poll reported EV_GO_BATCH_BUSY_NEV ready events or more
 * (the loop has that much to do before it can wait again) goes to Go in
 * batches of up to EV_GO_BATCH_BUSY: where the loop does not wait, sysmon
 * has no wait to retake and stays backed off, and the longer batch saves
 * returns from C.  (-D sets others for an experiment; BUSY at most the 32
 * work areas, as above.) */
#ifndef EV_GO_BATCH_BUSY
#define EV_GO_BATCH_BUSY 16
#endif
#ifndef EV_GO_BATCH_BUSY_NEV
#define EV_GO_BATCH_BUSY_NEV 64
#endif
extern __thread int ev_go_rest_batching;
/* Fills *s with the pending batch: 1, or 0 when there is none. */
int ev_go_rest_batch_take(eventer_step_t *s);
/* The calling loop thread's batch buffer size (it keeps at most 64 KiB
 * from one batch to the next). */
size_t ev_go_rest_batch_cap(void);

/* Options of ev_go_rest_respond beyond mtev_http.h's: the CHUNKED option,
 * or CLOSE where chunked is not possible (mtev_http_response_ok's). */
#define EV_GO_OPT_STREAM 0x10000
enum { /* what ev_go_rest_respond does after applying what it is given */
  EV_GO_RESPOND_APPEND = 0, /* nothing more */
  EV_GO_RESPOND_FLUSH,      /* mtev_http_response_flush_asynch(ctx, false) */
  EV_GO_RESPOND_END,        /* mtev_http_response_end, and the reference
                             * taken for Go is dropped: ctx is gone for Go */
  EV_GO_RESPOND_ABORT       /* mtev_http_response_abort (the handler failed
                             * after a flush), and the reference is dropped */
};
/* A direct request handed to Go by ev_go_rest_respond (ctx 0: none):
 * as the step's fields; head is valid until the loop runs C code again
 * (Go copies it at once). */
typedef struct {
  uint64_t rule;
  uintptr_t ctx;
  const char *head;
  size_t len;
} ev_go_next_t;
/* Applies what Go built of a direct request's response, on the session's
 * loop thread: when code > 0 the status (spec starts with the reason and
 * its NUL), the header fields in spec after it (name NUL value NUL ...)
 * and the options opts; then the body bytes; then `then`.  1 when every
 * step was taken, 0 when one was refused (the rest is still tried; END
 * always drops the reference).  With nextp, an ev_go_next_t * (END, from the loop's driver
 * goroutine or a coroutine of the loop: in main context), the session's
 * drive goes on at once (ev_http_response_end_drive) rather than in the
 * loop's next iteration: a pipelined request behind the response is
 * dispatched before this returns, and one for the direct path is handed
 * over in *next (its session referenced for Go) instead of as a step. */
int ev_go_rest_respond(uintptr_t ctx, int code, const char *spec,
                       size_t speclen, uint32_t opts, const void *body,
                       size_t blen, int then, uintptr_t nextp);
/* 1 when a direct request's client is gone: the connection is over, the
 * response failed, or the peer closed its side (an end of input, or an
 * error, is next on the socket).  On the session's loop thread. */
int ev_go_rest_client_gone(uintptr_t ctx);
/* mtev_http_response_option_set on a direct request's session. */
int ev_go_rest_option_ctx(uintptr_t ctx, uint32_t opt);

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
int ev_go_rest_header_add(uintptr_t r, const char *name, const char *value);
int ev_go_rest_option(uintptr_t r, uint32_t opt);
int ev_go_rest_append(uintptr_t r, const void *p, size_t n);
/* 1 once the response headers went out. */
int ev_go_rest_headers_sent(uintptr_t r);
/* Drops what was built of the response while its head has not gone out
 * (ev_http_response_discard): 1, or 0 when it went out. */
int ev_go_rest_discard(uintptr_t r);

#endif
