/*
 * http_impl.h - what the REST layer (mtev_rest.c) needs from the HTTP
 * engine (mtev_http.c) beyond the public API.  Not installed.
 */
#ifndef EV_HTTP_IMPL_H
#define EV_HTTP_IMPL_H

#include <stdint.h>

#include "mtev_http.h"

/* A number that changes with every request of the session (the REST
 * layer resets its per-request state when it changes). */
uint64_t ev_http_request_seq(mtev_http_session_ctx *ctx);

/* What a connection's session asked of its socket so far: reads made on
 * the socket itself (raw I/O) and through the event's opset, and write
 * calls (send, sendmsg, or the opset's write), each call counted whatever
 * it returned.  On the session's loop thread. */
typedef struct {
  uint64_t raw_reads, opset_reads, sends;
} ev_http_io_counts_t;
/* 0 with *out filled, or -1/EINVAL. */
int ev_http_session_io_counts(mtev_http_session_ctx *ctx, ev_http_io_counts_t *out);

/* The path of the current request and its length (not NUL-terminated
 * data is never returned: the path is NUL-terminated too). */
const char *ev_http_request_path(mtev_http_request *req, size_t *len);

/* The method of the current request and its length (NUL-terminated). */
const char *ev_http_request_method(mtev_http_request *req, size_t *len);

/* The header fields of the current request as the parser holds them
 * (names and values NUL-terminated, with their lengths; valid until the
 * next request), their count in *n, and the query string's length. */
#include "http_parse.h"
const ev_http_hdr_t *ev_http_request_fields(mtev_http_request *req, int *n,
                                            size_t *query_len);

/* From a dispatcher: serve the current request in a fresh coroutine.
 * The dispatcher returns 0 right after; the engine then calls it again
 * inside the coroutine (mtev_http_session_aco() is true there).  0, or -1
 * with errno. */
int ev_http_session_run_aco(mtev_http_session_ctx *ctx);
/* The same, but the coroutine calls fn (for this request: each time it
 * returns a mask to wait for, fn again) instead of the dispatcher. */
int ev_http_session_run_aco_fn(mtev_http_session_ctx *ctx,
                               mtev_http_dispatch_func fn);

/* mtev_http_session_aco, then ev_http_session_run_aco_fn when it is
 * false, in one call: 1 when the session's coroutine runs the
 * dispatcher already (serve the request there), 0 when a coroutine was
 * asked for (the dispatcher returns 0 right after), -1 with errno. */
int ev_http_session_aco_or_run(mtev_http_session_ctx *ctx,
                               mtev_http_dispatch_func fn);

/* A second dispatcher for the session, asked from the coroutine that has
 * just served a request whether the next one (already in the input,
 * parsed) is for a coroutine too: it either asks for one
 * (ev_http_session_run_aco_fn) without calling anything of the user's
 * (handler, auth, closure free), or returns having changed nothing, and
 * the session's dispatcher is called for the request the usual way, on
 * the loop.  Replacing the dispatcher (mtev_http_session_set_dispatcher)
 * removes it. */
void ev_http_session_set_probe(mtev_http_session_ctx *ctx,
                               mtev_http_dispatch_func probe);
/* mtev_http_session_drive from a listener's callback that holds the
 * session (the REST connection's): the mask to wait for, 0 when the
 * session is over (its event closed and freed: *done of
 * mtev_http_session_drive; the drive returns 0 then), or 0 with errno
 * EINVAL when e is not the session's. */
int ev_http_session_drive_cb(mtev_http_session_ctx *ctx, eventer_t e, int mask);
/* For a probe or a dispatcher, in one call: the dispatcher's closure
 * (returned), the request's sequence number, method and path
 * (NUL-terminated).  The session has a request (it is being dispatched). */
void *ev_http_session_probe_args(mtev_http_session_ctx *ctx, uint64_t *seq,
                                 const char **method, size_t *mlen,
                                 const char **path, size_t *plen);
/* mtev_http_response_end from outside the drive (on the session's loop,
 * in main context, the caller holding a reference), then the drive at
 * once instead of in a task: a pipelined request behind the response is
 * dispatched before this returns. */
mtev_boolean ev_http_response_end_drive(mtev_http_session_ctx *ctx);

/* Drops what the handler built of the response (status, fields, options,
 * compression, body) while its head has not gone out, so that an error
 * page can take its place.  mtev_false when the head went out or the
 * response is over.  Where the response may be built (mtev_http.h,
 * "Threads"). */
mtev_boolean ev_http_response_discard(mtev_http_session_ctx *ctx);

/* From a dispatcher: move the connection to a loop of `pool` before
 * serving the current request.  The dispatcher returns 0 right after; the
 * engine calls it again on the new loop.  0, or -1 with errno. */
int ev_http_session_move(mtev_http_session_ctx *ctx, eventer_pool_t *pool);

/* The listener type control_dispatch: the session closes the connection
 * without a reply unless its first bytes start an HTTP request. */
void ev_http_session_sniff(mtev_http_session_ctx *ctx);

/* mtev_rest_complete_upload's engine part: reads the whole body into an
 * upload (mtev_http_request_get_upload).  mtev_true when complete;
 * mtev_false with *mask to wait for, or with *mask 0 when the body is
 * broken or the client went away (the engine answered or closed). */
mtev_boolean ev_http_complete_upload(mtev_http_session_ctx *ctx, int *mask);

#endif /* EV_HTTP_IMPL_H */
