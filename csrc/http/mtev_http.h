/*
 * mtev_http.h - the HTTP/1.1 server engine (libmtev's mtev_http API).
 *
 * One session per connection.  The session is driven as a classic fd
 * callback between requests (mtev_http_session_drive, called by the
 * listener callback mtev_http_rest_handler in mtev_rest.h); each complete
 * request head is handed to the session's dispatcher, which builds the
 * response with the mtev_http_response_* family.  A dispatcher may also
 * have the request served in a coroutine (mtev_rest_mountpoint_set_aco):
 * then mtev_http_session_req_consume, mtev_http_response_flush and
 * mtev_http_response_end block the coroutine (not the loop) until the
 * bytes are there or written.
 *
 * What the engine does for every request, whatever the handler:
 *   - parses strictly (http_parse.h says exactly what is accepted) and
 *     answers bad input itself, then closes: 400 malformed, 408 head not
 *     complete within header_timeout, 413 body over max_body, 414 request
 *     line too long, 417 unknown expectation, 431 head too large, 501
 *     unknown transfer coding, 505 HTTP major version not 1;
 *   - ignores up to four CR or LF bytes after a request's body, before
 *     the next request line (RFC 9112 2.2; old clients end a POST body
 *     with an extra CRLF); anywhere else an empty request line is a 400;
 *   - keep-alive (HTTP/1.1 by default, HTTP/1.0 with Connection:
 *     keep-alive) and pipelining: requests are served one at a time in
 *     order, so responses leave in request order; the responses to a batch
 *     of pipelined requests go out in one writev;
 *   - request bodies with Content-Length or chunked framing; a body the
 *     handler does not read is discarded (up to 256 KiB, else the
 *     connection closes after the response); "Expect: 100-continue" is
 *     answered when the handler first reads the body;
 *   - responses with Content-Length when the whole body is known at
 *     mtev_http_response_end (nothing flushed before), chunked when the
 *     handler flushes part of it earlier (HTTP/1.1 with the CHUNKED
 *     option), else delimited by closing the connection; HEAD responses
 *     carry the headers only; gzip or deflate (zlib) when the handler asks
 *     for it and Accept-Encoding allows it;
 *   - closes an idle keep-alive connection after idle_timeout, and a
 *     connection whose peer stops reading for idle_timeout; a peer that
 *     resets or closes releases the connection and, in an aco rule, wakes
 *     the coroutine (its pending call fails) so it ends too.
 *
 * Threads.  A session belongs to its loop thread.  While a coroutine
 * serving a request waits for a job (eventer_aco_simple_asynch and
 * friends), that job's thread may build the response: status_set,
 * header_set, option_set, append, append_str, appendf, vappend, and read
 * the request (mtev_http_request_*).  flush and end (and req_consume)
 * belong to the loop thread; called elsewhere they return mtev_false / -1
 * with errno EINVAL.
 *
 * Differences from libmtev: the header and query string tables
 * (mtev_hash_table) are replaced by mtev_http_request_header() and
 * friends; websockets, HTTP/2, bchain/mmap appends and LZ4F are not built.
 */
#ifndef MTEV_HTTP_H
#define MTEV_HTTP_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "eventer.h"
#include "mtev_listener.h" /* the acceptor closure a connection comes with */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- types ------------------------------------------------------------------ */

typedef enum {
  MTEV_HTTP_OTHER,
  MTEV_HTTP_GET,
  MTEV_HTTP_HEAD,
  MTEV_HTTP_POST
} mtev_http_method;
typedef enum { MTEV_HTTP09, MTEV_HTTP10, MTEV_HTTP11 } mtev_http_protocol;

/* response options (mtev_http_response_option_set) */
#define MTEV_HTTP_CHUNKED 0x0001 /* may stream: chunked (HTTP/1.1 only) */
#define MTEV_HTTP_CLOSE 0x0002   /* close the connection after it */
#define MTEV_HTTP_GZIP 0x0010    /* Content-Encoding: gzip */
#define MTEV_HTTP_DEFLATE 0x0020 /* Content-Encoding: deflate (zlib) */

typedef struct mtev_http_session_ctx mtev_http_session_ctx;
typedef struct mtev_http_request mtev_http_request;
typedef struct mtev_http_response mtev_http_response;
typedef struct mtev_http_connection mtev_http_connection;

/* Called for each request whose head is complete.  Returns 0 when it is
 * done with the request for now: the response ended, or will be ended
 * later on the loop thread by whoever took a reference on the session
 * (mtev_http_session_ref_inc) -- with no such reference the engine ends
 * it (500 if no status was set).  Or returns an eventer mask
 * (EVENTER_READ/WRITE) to be called again when the connection is ready
 * for it (e.g. to read more of the body; see mtev_rest_complete_upload);
 * a mask returned after the response ended is ignored. */
typedef int (*mtev_http_dispatch_func)(mtev_http_session_ctx *ctx);

/* ---- limits --------------------------------------------------------------------- */

typedef struct {
  uint32_t max_request_line; /* 414 beyond (default 8 KiB) */
  uint32_t max_head;         /* 431 beyond (default 64 KiB) */
  uint32_t max_headers;      /* 431 beyond (default 100, at most 100) */
  uint64_t max_body;         /* 413 beyond (default 64 MiB) */
  uint32_t header_timeout_ms; /* 408 when a started head is not complete
                               * in time (default 10 s) */
  uint32_t idle_timeout_ms;  /* idle keep-alive connection, or no I/O
                              * progress while waiting (default 60 s) */
} mtev_http_limits_t;

/* Process-wide limits, read when a request (or wait) starts.  set returns
 * 0, or -1/EINVAL for a zero or out-of-range field.  The timeouts are
 * measured with the coarse monotonic clock: they may end a few
 * milliseconds early. */
void mtev_http_get_limits(mtev_http_limits_t *out);
int mtev_http_set_limits(const mtev_http_limits_t *in);

/* ---- sessions --------------------------------------------------------------------- */

/* A session for connection event e (an fd event whose callback calls
 * mtev_http_session_drive with the session as closure, or through
 * mtev_http_rest_handler).  The session owns ac (NULL allowed): it frees
 * it with mtev_acceptor_closure_free when the connection is over.  NULL
 * with errno on failure. */
mtev_http_session_ctx *mtev_http_session_ctx_new(mtev_http_dispatch_func f,
                                                 void *dispatcher_closure,
                                                 eventer_t e,
                                                 mtev_acceptor_closure_t *ac);
/* Drives the session from e's callback: reads, parses, dispatches,
 * writes.  Returns the mask to return from the callback.  *done is set to
 * 1 when the connection is over: e has been removed and closed and must
 * not be touched again (the callback returns 0), and ac has been freed. */
int mtev_http_session_drive(eventer_t e, int mask, void *closure,
                            struct timeval *now, int *done);

/* References: the connection holds one; whoever keeps ctx past the
 * dispatcher's return (to end the response later) takes one.  The memory
 * goes when the last is dropped; calls on a session whose connection is
 * over return mtev_false / -1.  Loop thread only. */
uint32_t mtev_http_session_ref_inc(mtev_http_session_ctx *ctx);
uint32_t mtev_http_session_ref_dec(mtev_http_session_ctx *ctx);
uint32_t mtev_http_session_ref_cnt(mtev_http_session_ctx *ctx);

mtev_http_request *mtev_http_session_request(mtev_http_session_ctx *ctx);
mtev_http_response *mtev_http_session_response(mtev_http_session_ctx *ctx);
mtev_http_connection *mtev_http_session_connection(mtev_http_session_ctx *ctx);
void *mtev_http_session_dispatcher_closure(mtev_http_session_ctx *ctx);
void mtev_http_session_set_dispatcher(mtev_http_session_ctx *ctx,
                                      mtev_http_dispatch_func f, void *c);
/* mtev_true while the current request is served in a coroutine. */
mtev_boolean mtev_http_session_aco(mtev_http_session_ctx *ctx);
/* The connection's fd event (for eventer_get_fd and the like; do not
 * read, write or register it). */
eventer_t mtev_http_connection_event(mtev_http_connection *conn);

/* Reads request body bytes into buf: at most min(len, blen).  Returns the
 * number read, 0 at the end of the body (or when there is none), or -1:
 * with *mask set (EVENTER_READ|EVENTER_EXCEPTION) when it would block (a
 * classic handler returns *mask and is called again), or with *mask 0 and
 * errno when the body is broken (the engine answers 400 or 413 itself) or
 * the client went away.  In a coroutine it waits instead of returning
 * *mask.  Sends "100 Continue" first when the client expects it. */
int mtev_http_session_req_consume(mtev_http_session_ctx *ctx, void *buf,
                                  const size_t len, const size_t blen,
                                  int *mask);

/* ---- the request --------------------------------------------------------------------
 * Strings are NUL-terminated and live until the response has ended. */
void mtev_http_request_start_time(mtev_http_request *req, struct timeval *t);
const char *mtev_http_request_method_str(mtev_http_request *req);
/* The path of the request target, as sent (not percent-decoded), without
 * the query string. */
const char *mtev_http_request_uri_str(mtev_http_request *req);
const char *mtev_http_request_protocol_str(mtev_http_request *req);
mtev_http_method mtev_http_request_method(mtev_http_request *req);
mtev_http_protocol mtev_http_request_protocol(mtev_http_request *req);
/* Content-Length, or 0 (chunked or no body). */
size_t mtev_http_request_content_length(mtev_http_request *req);
mtev_boolean mtev_http_request_payload_chunked(mtev_http_request *req);
mtev_boolean mtev_http_request_has_payload(mtev_http_request *req);
/* The first value of query parameter `key`, percent-decoded ('+' is a
 * space); "" for a key without '='; NULL if absent. */
const char *mtev_http_request_querystring(mtev_http_request *req,
                                          const char *key);
/* The raw query string (after '?'), or "" when there is none. */
const char *mtev_http_request_orig_querystring(mtev_http_request *req);
/* Parses the query string now (the first querystring call does it). */
void mtev_http_process_querystring(mtev_http_request *req);
/* Query parameters: how many, and the i-th (decoded); -1/NULL out of
 * range. */
int mtev_http_request_querystring_count(mtev_http_request *req);
const char *mtev_http_request_querystring_nth(mtev_http_request *req, int i,
                                              const char **value);
/* The value of the first header field named `name` (ASCII
 * case-insensitive), or NULL. */
const char *mtev_http_request_header(mtev_http_request *req, const char *name);
/* Header fields in the order received: count, and the i-th. */
int mtev_http_request_header_count(mtev_http_request *req);
const char *mtev_http_request_header_nth(mtev_http_request *req, int i,
                                         const char **value);
/* An upload attached to the request (mtev_rest_complete_upload fills it):
 * freefunc(data, size, closure) runs when the request ends. */
void mtev_http_request_set_upload(mtev_http_request *req, void *data,
                                  int64_t size,
                                  void (*freefunc)(void *, int64_t, void *),
                                  void *closure);
const void *mtev_http_request_get_upload(mtev_http_request *req,
                                         int64_t *size);

/* ---- the response --------------------------------------------------------------------
 * All return mtev_true on success, mtev_false when the call is not
 * possible (bad argument; headers already sent for status_set,
 * header_set and option_set; the response already ended or failed). */
/* status_set: a final status, 200 to 999 (1xx are refused: the engine
 * answers Expect: 100-continue itself, and upgrades are not built). */
mtev_boolean mtev_http_response_status_set(mtev_http_session_ctx *ctx,
                                           int code, const char *reason);
/* Sets (replaces) a header field.  Content-Length and Transfer-Encoding
 * are the engine's (mtev_false); "Connection: close" sets MTEV_HTTP_CLOSE;
 * names must be tokens and values free of CR, LF and NUL. */
mtev_boolean mtev_http_response_header_set(mtev_http_session_ctx *ctx,
                                           const char *name,
                                           const char *value);
/* Adds a header field line, after those of the same name (not in
 * libmtev, whose headers are a table): for fields that must not be folded
 * into one line, as Set-Cookie.  The same checks as header_set;
 * Content-Type is single-valued: it is replaced. */
mtev_boolean mtev_http_response_header_add(mtev_http_session_ctx *ctx,
                                           const char *name,
                                           const char *value);
/* MTEV_HTTP_CHUNKED: the body may be flushed in pieces (chunked for
 * HTTP/1.1; an HTTP/1.0 response flushed early is delimited by closing
 * the connection, one ended at once still gets a Content-Length and
 * keep-alive: unlike libmtev, which refuses CHUNKED for HTTP/1.0 and so
 * makes mtev_http_response_standard close every HTTP/1.0 connection).
 * GZIP/DEFLATE: mtev_false unless Accept-Encoding allows it, and only
 * before the first append.  CLOSE: always possible before the headers are
 * sent. */
mtev_boolean mtev_http_response_option_set(mtev_http_session_ctx *ctx,
                                           uint32_t opt);
mtev_boolean mtev_http_response_append(mtev_http_session_ctx *ctx,
                                       const void *b, size_t l);
mtev_boolean mtev_http_response_append_str(mtev_http_session_ctx *ctx,
                                           const char *s);
mtev_boolean mtev_http_response_appendf(mtev_http_session_ctx *ctx,
                                        const char *format, ...)
    __attribute__((format(printf, 2, 3)));
mtev_boolean mtev_http_response_vappend(mtev_http_session_ctx *ctx,
                                        const char *format, va_list arg);
/* Sends the headers (first time) and what was appended so far.  final:
 * the response is over (as mtev_http_response_end).  In a coroutine it
 * waits until the bytes are written; a classic handler's bytes are
 * written as the socket accepts them.  Responses to pipelined requests
 * may be held briefly to leave together. */
mtev_boolean mtev_http_response_flush(mtev_http_session_ctx *ctx,
                                      mtev_boolean final);
mtev_boolean mtev_http_response_flush_asynch(mtev_http_session_ctx *ctx,
                                             mtev_boolean final);
mtev_boolean mtev_http_response_end(mtev_http_session_ctx *ctx);
/* Gives the response up without completing it, as a handler that fails
 * half-way must: nothing more of it is sent (what was appended and not
 * flushed is dropped), the bytes already flushed go out, and the
 * connection then closes -- a chunked response without its final
 * 0-length chunk, so the client sees an incomplete body (curl: "transfer
 * closed with outstanding read data remaining"); an HTTP/1.0 response
 * delimited by the close cannot show it.  (A Content-Length response is
 * only sent once it is whole: there is none to cut short.)  Called before
 * the headers went out, the client gets no response at all, only the
 * close.  The responses to earlier pipelined requests still go out; the
 * requests pipelined behind this one are dropped, unanswered.  The
 * handler goes on and returns as usual (a coroutine ends, a reference
 * taken is dropped), and the connection closes once it has (an aco
 * handler's coroutine ended); every later response call on this request
 * returns mtev_false, and mtev_http_response_closed is true, _complete
 * false.  Called from a loop callback while the request's coroutine
 * waits (a job's thread may be building the response), it leaves the
 * response to that coroutine: every response call refuses from then on
 * (the job's too), and the response is cut when the coroutine runs again.
 * Loop thread (or the request's coroutine) only.  mtev_true, or
 * mtev_false with errno: EINVAL for a NULL ctx or another thread,
 * EALREADY when the response already ended, was aborted, or the
 * connection is already broken (nothing changes). */
mtev_boolean mtev_http_response_abort(mtev_http_session_ctx *ctx);
/* The response ended (or failed: the connection is going away). */
mtev_boolean mtev_http_response_closed(mtev_http_response *res);
mtev_boolean mtev_http_response_complete(mtev_http_response *res);
/* Bytes of this response handed to the socket. */
size_t mtev_http_response_bytes_written(mtev_http_response *res);
/* Body bytes appended and not yet flushed. */
size_t mtev_http_response_buffered(mtev_http_session_ctx *ctx);

/* libmtev's shorthands: status, Content-Type, and the CHUNKED option (or
 * CLOSE when chunked is not possible), as mtev_http_response_status_set,
 * _header_set and _option_set would set them, in one call. */
mtev_boolean ev_http_response_standard(mtev_http_session_ctx *ctx, int code,
                                       const char *reason, const char *type);
#define mtev_http_response_standard(ctx, code, name, type) \
  ((void)ev_http_response_standard(ctx, code, name, type))
/* mtev_http_response_standard(ctx, 200, "OK", type), with the code and
 * the phrase known to the engine */
mtev_boolean ev_http_response_ok(mtev_http_session_ctx *ctx, const char *type);
#define mtev_http_response_ok(ctx, type) ((void)ev_http_response_ok(ctx, type))
#define mtev_http_response_server_error(ctx, type) \
  mtev_http_response_standard(ctx, 500, "ERROR", type)
#define mtev_http_response_not_found(ctx, type) \
  mtev_http_response_standard(ctx, 404, "NOT FOUND", type)
#define mtev_http_response_denied(ctx, type) \
  mtev_http_response_standard(ctx, 403, "DENIED", type)

/* Live sessions in this process (tests check it returns to zero). */
int64_t mtev_http_session_count(void);

#ifdef __cplusplus
}
#endif

#endif /* MTEV_HTTP_H */
