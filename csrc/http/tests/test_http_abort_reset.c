/*
 * test_http_abort_reset.c - mtev_http_response_abort against a client
 * that goes away, and the handler's life after its abort.  An aco handler
 * that aborts and then goes on (sleeps, calls more response functions)
 * keeps its connection until it returns: the client's EOF comes after the
 * handler is done, and a client that resets meanwhile takes nothing with
 * it that the handler still uses.  A classic handler's later abort (from
 * a timer, holding a reference) after the client reset is harmless.  An
 * abort from a loop callback while the request's coroutine waits for a
 * job that builds the response is applied when the coroutine is back
 * (the job's appends are refused from then on, not raced).  ht_stop
 * counts sessions and eventer_t objects; ASan and valgrind the memory.
 */
#include "http_impl.h"
#include "http_test.h"

static int g_done, g_abort, g_abort_err, g_after, g_job_append;
#define PUT(v, x) __atomic_store_n(&(v), (x), __ATOMIC_RELEASE)
#define GET(v) __atomic_load_n(&(v), __ATOMIC_ACQUIRE)

static void reset_seen(void) {
  PUT(g_done, 0);
  PUT(g_abort, -1);
  PUT(g_abort_err, 0);
  PUT(g_after, -1);
  PUT(g_job_append, -1);
}

static void wait_done(void) {
  uint64_t end = t_now_us() + (t_slow() ? 60000000u : 15000000u);
  while (!GET(g_done)) {
    if (t_now_us() > end) T_FAIL("the handler did not finish");
    usleep(1000);
  }
}

/* /fast: "hello\n" */
static int h_fast(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "hello\n");
  mtev_http_response_end(ctx);
  return 0;
}

/* /linger (aco): a flushed piece, the abort, then 200 ms of sleep and
 * the calls that must refuse, then done */
static int h_linger(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "piece 0\n");
  mtev_http_response_flush(ctx, mtev_false);
  errno = 0;
  PUT(g_abort, mtev_http_response_abort(ctx));
  PUT(g_abort_err, errno);
  struct timeval nap = {0, 200000};
  eventer_aco_sleep(&nap);
  int after = mtev_http_response_append_str(ctx, "late\n") ||
              mtev_http_response_flush(ctx, mtev_false) || mtev_http_response_end(ctx) ||
              mtev_http_response_abort(ctx);
  PUT(g_after, after);
  /* the session is still there to ask */
  T_CHECK(mtev_http_response_closed(mtev_http_session_response(ctx)));
  PUT(g_done, 1);
  return 0;
}

/* /later (classic): a flushed piece, then the abort from a timer 100 ms
 * later (the client has reset by then) */
static int later_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)now;
  mtev_http_session_ctx *ctx = c;
  errno = 0;
  PUT(g_abort, mtev_http_response_abort(ctx));
  PUT(g_abort_err, errno);
  mtev_http_session_ref_dec(ctx);
  PUT(g_done, 1);
  return 0;
}
static int h_later(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "piece 0\n");
  mtev_http_response_flush(ctx, mtev_false);
  mtev_http_session_ref_inc(ctx);
  eventer_add_in_s_us(later_cb, ctx, 0, 100000);
  return 0;
}

/* /job (aco): a flushed piece, then a job that appends after 150 ms,
 * while a timer callback on the loop aborts at 20 ms */
static int job_abort_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)now;
  errno = 0;
  PUT(g_abort, mtev_http_response_abort(c));
  PUT(g_abort_err, errno);
  mtev_http_session_ref_dec(c);
  return 0;
}
static void job_append(void *c) {
  usleep(150000);
  PUT(g_job_append, mtev_http_response_append_str(c, "job\n"));
}
static int h_job(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "piece 0\n");
  mtev_http_response_flush(ctx, mtev_false);
  mtev_http_session_ref_inc(ctx);
  eventer_add_in_s_us(job_abort_cb, ctx, 0, 20000);
  eventer_aco_simple_asynch(job_append, ctx);
  PUT(g_after, mtev_http_response_end(ctx));
  PUT(g_done, 1);
  return 0;
}

static void rules(void) {
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^fast$", h_fast));
  mtev_rest_mountpoint_set_aco(mtev_http_rest_new_rule("GET", "/", "^linger$", h_linger),
                               mtev_true);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^later$", h_later));
  mtev_rest_mountpoint_set_aco(mtev_http_rest_new_rule("GET", "/", "^job$", h_job),
                               mtev_true);
}

/* the head and the chunk "piece 0\n" */
static void expect_piece(hc_t *c) {
  char line[256];
  T_CHECK(hc_line(c, line, sizeof(line)) == 0);
  T_CHECKF(!strncmp(line, "HTTP/1.1 200", 12), "status line \"%s\"", line);
  int chunked = 0;
  for (;;) {
    T_CHECK(hc_line(c, line, sizeof(line)) == 0);
    if (!line[0]) break;
    if (!strcasecmp(line, "Transfer-Encoding: chunked")) chunked = 1;
  }
  T_CHECK(chunked);
  T_CHECK(hc_line(c, line, sizeof(line)) == 0);
  T_EQ(strtol(line, NULL, 16), 8);
  char got[8];
  T_EQ(hc_bytes(c, got, 8), 0);
  T_CHECK(!memcmp(got, "piece 0\n", 8));
  T_CHECK(hc_line(c, line, sizeof(line)) == 0 && !line[0]);
}

static void expect_fast(int port) {
  hc_resp_t r;
  T_EQ(hc_oneshot(port, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
  T_STR_EQ(r.body, "hello\n");
  hc_resp_free(&r);
}

/* An aco handler that goes on after its abort keeps the connection until
 * it returns: EOF (no final chunk) only once it is done, and nothing it
 * calls afterwards is accepted. */
static void test_linger_eof_after_done(void) {
  int port = ht_start(1);
  rules();
  for (int i = 0; i < 2; i++) {
    reset_seen();
    hc_t *c = hc_open(port);
    hc_sends(c, "GET /linger HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_piece(c);
    T_CHECK(hc_eof(c));
    T_EQ(GET(g_done), 1); /* the close came after the handler's end */
    T_EQ(GET(g_abort), mtev_true);
    T_EQ(GET(g_after), 0);
    hc_close(c);
  }
  expect_fast(port);
  ht_stop();
}

/* The client resets while the aborted aco handler still runs: the
 * handler finishes on a session that is still there, and everything
 * goes. */
static void test_linger_client_resets(void) {
  int port = ht_start(1);
  rules();
  for (int i = 0; i < 3; i++) {
    reset_seen();
    hc_t *c = hc_open(port);
    hc_sends(c, "GET /linger HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_piece(c);
    hc_reset(c);
    wait_done();
    T_EQ(GET(g_abort), mtev_true);
    T_EQ(GET(g_after), 0);
  }
  expect_fast(port);
  ht_stop();
}

/* A classic handler's abort from a timer after its client reset: refused
 * or accepted (whether the loop noticed the reset first), harmless
 * either way. */
static void test_later_after_reset(void) {
  int port = ht_start(1);
  rules();
  for (int i = 0; i < 3; i++) {
    reset_seen();
    hc_t *c = hc_open(port);
    hc_sends(c, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_piece(c);
    hc_reset(c);
    wait_done();
    T_CHECKF(GET(g_abort) == mtev_true || GET(g_abort_err) == EALREADY,
             "abort after a reset: %d, errno %d", GET(g_abort), GET(g_abort_err));
  }
  expect_fast(port);
  ht_stop();
}

/* An abort from a loop callback while the coroutine waits for a job that
 * appends to the response: the client sees the cut after the flushed
 * piece, never the job's bytes; the end after the job refuses. */
static void test_abort_while_job_builds(void) {
  int port = ht_start(1);
  rules();
  for (int i = 0; i < 2; i++) {
    reset_seen();
    hc_t *c = hc_open(port);
    hc_sends(c, "GET /job HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_piece(c);
    T_CHECKF(hc_eof(c), "more after the cut: \"%.*s\"", (int)(c->len - c->pos),
             c->buf + c->pos);
    hc_close(c);
    wait_done();
    T_EQ(GET(g_abort), mtev_true);
    T_EQ(GET(g_after), mtev_false);
  }
  expect_fast(port);
  ht_stop();
}

T_MAIN({"linger_eof_after_done", test_linger_eof_after_done},
       {"linger_client_resets", test_linger_client_resets},
       {"later_after_reset", test_later_after_reset},
       {"abort_while_job_builds", test_abort_while_job_builds})
