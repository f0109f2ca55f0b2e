/*
 * test_http_abort.c - mtev_http_response_abort: a handler that gives its
 * response up half-way.  After a flush the client gets the head and the
 * flushed chunks, then the close, without the final chunk; before
 * anything was written, the close alone; after the end, nothing changes.
 * Requests pipelined behind an aborted one are dropped, the responses to
 * those before it still arrive, and nothing leaks (ht_stop counts the
 * sessions and eventer_t objects, ASan and valgrind the memory).  A
 * server on its own loop threads, the client on the test's thread.
 */
#include "http_impl.h"
#include "http_test.h"

/* What a handler saw, for the test's thread to check once the client has
 * its answer (atomics: the socket is the only order between them). */
typedef struct {
  int first, first_err;   /* the abort: its result, errno */
  int second, second_err; /* the abort again */
  int append, flush, end; /* response calls after it */
  int closed, complete;   /* mtev_http_response_closed / _complete */
  int done;               /* the handler got that far */
} ab_seen_t;
static ab_seen_t g_seen;

#define SEEN_PUT(f, v) __atomic_store_n(&g_seen.f, (v), __ATOMIC_RELEASE)
#define SEEN(f) __atomic_load_n(&g_seen.f, __ATOMIC_ACQUIRE)

static void seen_reset(void) {
  ab_seen_t z;
  memset(&z, 0, sizeof(z));
  z.first = z.second = z.append = z.flush = z.end = -1;
  z.closed = z.complete = -1;
  SEEN_PUT(first, z.first);
  SEEN_PUT(first_err, 0);
  SEEN_PUT(second, z.second);
  SEEN_PUT(second_err, 0);
  SEEN_PUT(append, z.append);
  SEEN_PUT(flush, z.flush);
  SEEN_PUT(end, z.end);
  SEEN_PUT(closed, z.closed);
  SEEN_PUT(complete, z.complete);
  SEEN_PUT(done, 0);
}

/* waits (15 s, 60 s slow) until the handler recorded it is done */
static void seen_wait(void) {
  uint64_t end = t_now_us() + (t_slow() ? 60000000u : 15000000u);
  while (!SEEN(done)) {
    if (t_now_us() > end) T_FAIL("the handler did not finish");
    usleep(1000);
  }
}

/* the abort, twice, then the calls that must all refuse */
static void abort_twice(mtev_http_session_ctx *ctx) {
  errno = 0;
  SEEN_PUT(first, mtev_http_response_abort(ctx));
  SEEN_PUT(first_err, errno);
  errno = 0;
  SEEN_PUT(second, mtev_http_response_abort(ctx));
  SEEN_PUT(second_err, errno);
  SEEN_PUT(append, mtev_http_response_append_str(ctx, "late\n"));
  SEEN_PUT(flush, mtev_http_response_flush(ctx, mtev_false));
  SEEN_PUT(end, mtev_http_response_end(ctx));
  mtev_http_response *res = mtev_http_session_response(ctx);
  SEEN_PUT(closed, mtev_http_response_closed(res));
  SEEN_PUT(complete, mtev_http_response_complete(res));
}

/* /fast: "hello\n" (classic) */
static int h_fast(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "hello\n");
  mtev_http_response_end(ctx);
  return 0;
}

/* /cut/<classic|aco>/<n>: n flushed pieces "piece <i>\n", a piece
 * appended and not flushed, then the abort */
static int h_cut(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  T_EQ(npats, 2);
  int n = atoi(pats[1]);
  mtev_http_response_ok(ctx, "text/plain");
  for (int i = 0; i < n; i++) {
    mtev_http_response_appendf(ctx, "piece %d\n", i);
    mtev_http_response_flush(ctx, mtev_false);
  }
  mtev_http_response_append_str(ctx, "never sent\n");
  abort_twice(ctx);
  SEEN_PUT(done, 1);
  return 0;
}

/* /big/<classic|aco>: 16 flushes of 256 KiB (more than the socket takes:
 * a classic handler's flushes queue), then the abort */
#define BIG_PIECE (256 * 1024)
#define BIG_N 16
static int h_big(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  static char piece[BIG_PIECE];
  mtev_http_response_ok(ctx, "application/octet-stream");
  for (int i = 0; i < BIG_N; i++) {
    memset(piece, 'a' + i, sizeof(piece));
    mtev_http_response_append(ctx, piece, sizeof(piece));
    mtev_http_response_flush(ctx, mtev_false);
  }
  abort_twice(ctx);
  SEEN_PUT(done, 1);
  return 0;
}

/* /after_end: a whole response, then the abort (refused) */
static int h_after_end(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "whole\n");
  mtev_http_response_end(ctx);
  errno = 0;
  SEEN_PUT(first, mtev_http_response_abort(ctx));
  SEEN_PUT(first_err, errno);
  SEEN_PUT(done, 1);
  return 0;
}

/* /later: classic; a piece flushed, the abort 20 ms later from a timer
 * callback (outside the session's drive) */
static int abort_later_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)now;
  mtev_http_session_ctx *ctx = c;
  abort_twice(ctx);
  mtev_http_session_ref_dec(ctx);
  SEEN_PUT(done, 1);
  return 0;
}
static int h_later(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "piece 0\n");
  mtev_http_response_flush(ctx, mtev_false);
  mtev_http_session_ref_inc(ctx);
  eventer_add_in_s_us(abort_later_cb, ctx, 0, 20000);
  return 0;
}

/* /job: aco; a job thread tries the abort while the coroutine waits
 * (refused: not the loop thread), then the coroutine ends the response */
static void job_abort(void *c) {
  mtev_http_rest_closure_t *restc = c;
  errno = 0;
  SEEN_PUT(first, mtev_http_response_abort(restc->http_ctx));
  SEEN_PUT(first_err, errno);
  mtev_http_response_append_str(restc->http_ctx, "job\n");
}
static int h_job(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "piece 0\n");
  mtev_http_response_flush(ctx, mtev_false);
  eventer_aco_simple_asynch(job_abort, restc);
  mtev_http_response_end(ctx);
  SEEN_PUT(done, 1);
  return 0;
}

/* ---- the client's side ------------------------------------------------------------ */

/* Reads a response head: the status; *chunked, *clen (-1: none) from it. */
static int read_head(hc_t *c, int *chunked, long *clen) {
  char line[1024];
  T_CHECK(hc_line(c, line, sizeof(line)) == 0);
  T_CHECKF(!strncmp(line, "HTTP/1.", 7) && strlen(line) >= 12, "status line \"%s\"", line);
  int status = atoi(line + 9);
  *chunked = 0;
  *clen = -1;
  for (;;) {
    T_CHECK(hc_line(c, line, sizeof(line)) == 0);
    if (!line[0]) break;
    if (!strcasecmp(line, "Transfer-Encoding: chunked")) *chunked = 1;
    if (!strncasecmp(line, "Content-Length:", 15)) *clen = atol(line + 15);
  }
  return status;
}

/* The rest of a cut chunked response: chunks "piece 0\n" .. "piece
 * <n-1>\n", then the end of the connection, with no final chunk. */
static void expect_cut_body(hc_t *c, int n) {
  char line[256], want[64], got[64];
  for (int i = 0; i < n; i++) {
    int wl = snprintf(want, sizeof(want), "piece %d\n", i);
    T_CHECK(hc_line(c, line, sizeof(line)) == 0);
    T_EQ(strtol(line, NULL, 16), wl);
    T_EQ(hc_bytes(c, got, (size_t)wl), 0);
    T_CHECK(!memcmp(got, want, (size_t)wl));
    T_CHECK(hc_line(c, line, sizeof(line)) == 0 && !line[0]);
  }
  T_CHECKF(hc_eof(c), "more after the cut: \"%.*s\"", (int)(c->len - c->pos),
           c->buf + c->pos);
}

static void expect_cut(hc_t *c, int n) {
  int chunked;
  long clen;
  T_EQ(read_head(c, &chunked, &clen), 200);
  T_CHECK(chunked);
  T_EQ(clen, -1);
  expect_cut_body(c, n);
}

static void expect_refusals(void) {
  T_EQ(SEEN(first), mtev_true);
  T_EQ(SEEN(second), mtev_false);
  T_EQ(SEEN(second_err), EALREADY);
  T_EQ(SEEN(append), mtev_false);
  T_EQ(SEEN(flush), mtev_false);
  T_EQ(SEEN(end), mtev_false);
  T_EQ(SEEN(closed), mtev_true);
  T_EQ(SEEN(complete), mtev_false);
}

/* ---- the cases ------------------------------------------------------------------- */

static void rules(void) {
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^fast$", h_fast));
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^cut/(classic)/(\\d+)$", h_cut));
  mtev_rest_mountpoint_set_aco(
      mtev_http_rest_new_rule("GET", "/", "^cut/(aco)/(\\d+)$", h_cut), mtev_true);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^big/classic$", h_big));
  mtev_rest_mountpoint_set_aco(mtev_http_rest_new_rule("GET", "/", "^big/aco$", h_big),
                               mtev_true);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^after_end$", h_after_end));
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^later$", h_later));
  mtev_rest_mountpoint_set_aco(mtev_http_rest_new_rule("GET", "/", "^job$", h_job),
                               mtev_true);
}

/* After flushes, classic and aco: the flushed chunks, then EOF; the
 * unflushed piece never goes out; every later call refuses. */
static void test_after_flush(void) {
  int port = ht_start(1);
  rules();
  const char *modes[] = {"classic", "aco"};
  for (int m = 0; m < 2; m++) {
    for (int n = 1; n <= 3; n += 2) {
      seen_reset();
      hc_t *c = hc_open(port);
      char req[128];
      snprintf(req, sizeof(req), "GET /cut/%s/%d HTTP/1.1\r\nHost: x\r\n\r\n", modes[m], n);
      hc_sends(c, req);
      expect_cut(c, n);
      hc_close(c);
      seen_wait();
      expect_refusals();
      T_EQ(SEEN(first_err), 0);
    }
  }
  /* the loop goes on */
  hc_resp_t r;
  T_EQ(hc_oneshot(port, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
  T_STR_EQ(r.body, "hello\n");
  hc_resp_free(&r);
  ht_stop();
}

/* Pipelined: the response before the aborted one arrives whole, the
 * requests after it are dropped (classic and aco). */
static void test_pipelined(void) {
  int port = ht_start(1);
  rules();
  const char *modes[] = {"classic", "aco"};
  for (int m = 0; m < 2; m++) {
    seen_reset();
    hc_t *c = hc_open(port);
    char req[512];
    snprintf(req, sizeof(req),
             "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /cut/%s/2 HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n",
             modes[m]);
    hc_sends(c, req);
    hc_resp_t r;
    T_EQ(hc_read_resp(c, &r, 0), 0);
    T_EQ(r.status, 200);
    T_STR_EQ(r.body, "hello\n");
    hc_resp_free(&r);
    expect_cut(c, 2);
    hc_close(c);
    seen_wait();
    expect_refusals();
  }
  ht_stop();
}

/* Before anything was written: the close alone (after the responses to
 * the requests before it); the request's head never goes out. */
static void test_before_anything(void) {
  int port = ht_start(1);
  rules();
  const char *modes[] = {"classic", "aco"};
  for (int m = 0; m < 2; m++) {
    seen_reset();
    hc_t *c = hc_open(port);
    char req[256];
    snprintf(req, sizeof(req), "GET /cut/%s/0 HTTP/1.1\r\nHost: x\r\n\r\n", modes[m]);
    hc_sends(c, req);
    T_CHECKF(hc_eof(c), "a response to an abort before anything: \"%.*s\"",
             (int)(c->len - c->pos), c->buf + c->pos);
    hc_close(c);
    seen_wait();
    expect_refusals();

    seen_reset();
    c = hc_open(port);
    snprintf(req, sizeof(req),
             "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /cut/%s/0 HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n",
             modes[m]);
    hc_sends(c, req);
    hc_resp_t r;
    T_EQ(hc_read_resp(c, &r, 0), 0);
    T_EQ(r.status, 200);
    hc_resp_free(&r);
    T_CHECK(hc_eof(c));
    hc_close(c);
    seen_wait();
    expect_refusals();
  }
  ht_stop();
}

/* After the end: refused (EALREADY), the response stands and the
 * connection serves the next request; NULL: EINVAL; a job thread's call
 * while the coroutine waits: EINVAL, and the response goes on. */
static void test_refused(void) {
  int port = ht_start(1);
  rules();
  errno = 0;
  T_EQ(mtev_http_response_abort(NULL), mtev_false);
  T_EQ(errno, EINVAL);

  seen_reset();
  hc_t *c = hc_open(port);
  hc_sends(c, "GET /after_end HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
  T_STR_EQ(r.body, "whole\n");
  hc_resp_free(&r);
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_STR_EQ(r.body, "hello\n");
  hc_resp_free(&r);
  hc_close(c);
  seen_wait();
  T_EQ(SEEN(first), mtev_false);
  T_EQ(SEEN(first_err), EALREADY);

  seen_reset();
  c = hc_open(port);
  hc_sends(c, "GET /job HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n");
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
  T_STR_EQ(r.body, "piece 0\njob\n");
  hc_resp_free(&r);
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_STR_EQ(r.body, "hello\n");
  hc_resp_free(&r);
  hc_close(c);
  seen_wait();
  T_EQ(SEEN(first), mtev_false);
  T_EQ(SEEN(first_err), EINVAL);
  ht_stop();
}

/* From a later callback, outside the drive (a classic handler that took
 * a reference): the same cut, and the session goes. */
static void test_later(void) {
  int port = ht_start(1);
  rules();
  for (int i = 0; i < 3; i++) {
    seen_reset();
    hc_t *c = hc_open(port);
    hc_sends(c, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_cut(c, 1);
    hc_close(c);
    seen_wait();
    expect_refusals();
  }
  ht_stop();
}

/* What was flushed all goes out before the close, also what a classic
 * handler's flushes left queued for a client that reads late: every
 * byte of the 16 pieces, in order, then EOF without the final chunk. */
static void test_big_queued(void) {
  int port = ht_start(1);
  rules();
  const char *modes[] = {"classic", "aco"};
  char *tmp = malloc(BIG_PIECE * 2);
  T_CHECK(tmp != NULL);
  for (int m = 0; m < 2; m++) {
    seen_reset();
    hc_t *c = hc_open(port);
    char req[128];
    snprintf(req, sizeof(req), "GET /big/%s HTTP/1.1\r\nHost: x\r\n\r\n", modes[m]);
    hc_sends(c, req);
    if (m == 0) usleep(100000); /* the classic handler's flushes queue */
    int chunked;
    long clen;
    T_EQ(read_head(c, &chunked, &clen), 200);
    T_CHECK(chunked);
    size_t total = 0;
    char line[64];
    for (;;) {
      if (hc_line(c, line, sizeof(line)) != 0) break; /* EOF */
      size_t n = strtoul(line, NULL, 16);
      T_CHECKF(n > 0 && n <= BIG_PIECE * 2, "chunk size line \"%s\"", line);
      T_EQ(hc_bytes(c, tmp, n), 0);
      for (size_t k = 0; k < n; k++, total++)
        T_CHECKF(tmp[k] == 'a' + (int)(total / BIG_PIECE), "byte %zu is '%c'", total, tmp[k]);
      T_CHECK(hc_line(c, line, sizeof(line)) == 0 && !line[0]);
    }
    T_EQ(total, (size_t)BIG_PIECE * BIG_N);
    hc_close(c);
    seen_wait();
    expect_refusals();
  }
  free(tmp);
  ht_stop();
}

/* Many connections at once on two loops, aborts mixed with whole
 * responses and with clients that reset before reading: each client sees
 * its own outcome, and every session goes (ht_stop). */
static void test_many(void) {
  int port = ht_start(2);
  rules();
  int n = (int)t_scale(200, 10);
  hc_t **cs = calloc((size_t)n, sizeof(*cs));
  T_CHECK(cs != NULL);
  static const char *paths[] = {"cut/classic/2", "cut/aco/2", "fast", "cut/aco/0"};
  for (int i = 0; i < n; i++) {
    cs[i] = hc_open(port);
    char req[256];
    snprintf(req, sizeof(req),
             "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
             paths[i % 4]);
    hc_sends(cs[i], req);
    if (i % 7 == 3) {
      hc_reset(cs[i]);
      cs[i] = NULL;
    }
  }
  for (int i = 0; i < n; i++) {
    hc_t *c = cs[i];
    if (!c) continue;
    hc_resp_t r;
    T_EQ(hc_read_resp(c, &r, 0), 0);
    T_STR_EQ(r.body, "hello\n");
    hc_resp_free(&r);
    switch (i % 4) {
    case 0:
    case 1:
      expect_cut(c, 2);
      break;
    case 2: /* whole, and the request behind it too */
      T_EQ(hc_read_resp(c, &r, 0), 0);
      T_STR_EQ(r.body, "hello\n");
      hc_resp_free(&r);
      T_EQ(hc_read_resp(c, &r, 0), 0);
      T_STR_EQ(r.body, "hello\n");
      hc_resp_free(&r);
      T_CHECK(hc_eof(c));
      break;
    default:
      T_CHECK(hc_eof(c));
    }
    hc_close(c);
  }
  free(cs);
  ht_stop();
}

/* HTTP/1.0: a flushed response is delimited by the close, so the cut is
 * the close (the client cannot tell; documented). */
static void test_http10(void) {
  int port = ht_start(1);
  rules();
  seen_reset();
  hc_t *c = hc_open(port);
  hc_sends(c, "GET /cut/aco/2 HTTP/1.0\r\n\r\n");
  int chunked;
  long clen;
  T_EQ(read_head(c, &chunked, &clen), 200);
  T_CHECK(!chunked);
  T_EQ(clen, -1);
  char body[64];
  T_EQ(hc_bytes(c, body, 16), 0);
  T_CHECK(!memcmp(body, "piece 0\npiece 1\n", 16));
  T_CHECK(hc_eof(c));
  hc_close(c);
  seen_wait();
  expect_refusals();
  ht_stop();
}

T_MAIN({"after_flush", test_after_flush}, {"pipelined", test_pipelined},
       {"before_anything", test_before_anything}, {"refused", test_refused},
       {"later", test_later}, {"big_queued", test_big_queued},
       {"many", test_many},
       {"http10", test_http10})
