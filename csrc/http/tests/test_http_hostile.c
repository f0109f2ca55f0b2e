/*
 * test_http_hostile.c - the HTTP engine against clients that misbehave on
 * purpose: pipelining without reading, leaving or half-closing with
 * responses held for a batch.  A server on its own loop threads, the
 * client on the test's thread.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <time.h>

#include "http_impl.h"
#include "http_test.h"

/* ---- handlers ----------------------------------------------------------------- */

/* classic: a 2 KB body, so that a pipeline fills the socket quickly */
static int h_kb(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  static char body[2048];
  if (!body[0]) memset(body, 'k', sizeof(body) - 1);
  mtev_http_response_ok(restc->http_ctx, "text/plain");
  mtev_http_response_append_str(restc->http_ctx, body);
  mtev_http_response_end(restc->http_ctx);
  return 0;
}

/* classic: "hello\n" */
static int h_hello(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_response_ok(restc->http_ctx, "text/plain");
  mtev_http_response_append_str(restc->http_ctx, "hello\n");
  mtev_http_response_end(restc->http_ctx);
  return 0;
}

/* aco: sleeps 200 ms (a slow handler in the middle of a pipeline), then
 * answers "slow" */
static int h_slow(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  struct timeval tv = {0, 200000};
  eventer_aco_sleep(&tv);
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "slow");
  mtev_http_response_end(ctx);
  return 0;
}

/* aco: yields once (its coroutine ends in a later pass of the loop than
 * the drive that started it), then answers "y" */
static int h_yield(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  T_EQ(eventer_aco_yield(), 0);
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "y");
  mtev_http_response_end(ctx);
  return 0;
}

/* aco, never parks: "a" (its coroutine is free to take the next request) */
static int h_a(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  T_CHECK(mtev_http_session_aco(ctx));
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_appendf(ctx, "a%d", npats);
  mtev_http_response_end(ctx);
  return 0;
}

/* any mode: the upload's size and its first bytes (at most 16) */
static int h_echo(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  int mask = 0;
  if (!mtev_rest_complete_upload(restc, &mask)) return mask;
  int64_t size = 0;
  const char *d = mtev_http_request_get_upload(mtev_http_session_request(ctx), &size);
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_appendf(ctx, "%lld:%.*s", (long long)size,
                             (int)(size > 16 ? 16 : size), d ? d : "");
  mtev_http_response_end(ctx);
  return 0;
}

/* aco, with one capture: "u" and the capture */
static int h_u(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  T_CHECK(mtev_http_session_aco(ctx));
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_appendf(ctx, "u%d:%s", npats, npats > 0 ? pats[0] : "-");
  mtev_http_response_end(ctx);
  return 0;
}

/* ---- helpers ------------------------------------------------------------------- */

/* CPU time (us) the server's first loop thread has used */
static uint64_t loop_cpu_us(void) {
  clockid_t cid;
  T_EQ(pthread_getcpuclockid(ht_threads[0], &cid), 0);
  struct timespec ts;
  T_EQ(clock_gettime(cid, &ts), 0);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Sends the same request again and again without ever reading, until
 * the connection has taken nothing for 300 ms (the server stopped reading
 * because its responses cannot leave): the number of requests sent
 * whole; *part: how many bytes of the next one went in. */
static size_t pipeline_until_stuck(hc_t *c, const char *req, size_t *part) {
  size_t rl = strlen(req), sent = 0, off = 0;
  char buf[16384];
  size_t per = sizeof(buf) / rl, bl = per * rl;
  for (size_t i = 0; i < per; i++) memcpy(buf + i * rl, req, rl);
  int fl = fcntl(c->fd, F_GETFL);
  T_EQ(fcntl(c->fd, F_SETFL, fl | O_NONBLOCK), 0);
  uint64_t last = t_now_us(), quiet = t_slow() ? 1000000u : 300000u;
  while (t_now_us() - last < quiet) {
    ssize_t w = send(c->fd, buf + off, bl - off, MSG_NOSIGNAL);
    if (w > 0) {
      sent += (size_t)w;
      off = (off + (size_t)w) % bl;
      last = t_now_us();
      continue;
    }
    T_CHECKF(w < 0 && (errno == EAGAIN || errno == EINTR), "send: %s",
             strerror(errno));
    usleep(5000);
  }
  T_EQ(fcntl(c->fd, F_SETFL, fl), 0);
  *part = sent % rl;
  return sent / rl;
}

/* ---- a client that pipelines and never reads ------------------------------------ */

/* The responses fill the socket and the engine stops reading (its output
 * is over the cork): the loop must then wait, not spin on a readable fd
 * it does not read (a level-triggered EPOLLIN returned at once, again and
 * again: a full core for as long as the client stays).  Afterwards the
 * client reads everything, in order, and the connection still serves. */
static void test_noread_no_spin(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^kb$", h_kb));
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  hc_t *c = hc_open(port);
  /* a small send buffer: what the client has queued is soon refused, so
   * that the server's backlog (and the test's reading) stays a few MB */
  int small = 16384;
  setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  const char *req = "GET /kb HTTP/1.1\r\nHost: x\r\n\r\n";
  size_t part = 0, n = pipeline_until_stuck(c, req, &part);
  T_CHECKF(n > 100, "only %zu requests went in", n);
  /* the loop has nothing to do for a second: it must be asleep.  One
   * second of five must show it (a loop that a loaded machine or valgrind
   * delayed may still be working through the requests in the first; one
   * that spins on the readable fd spins in every one) */
  uint64_t cpu = 0, wall = 1;
  for (int w = 0; w < 5 && !(w > 0 && cpu * 10 < wall); w++) {
    uint64_t c0 = loop_cpu_us(), t0 = t_now_us();
    usleep(1000000);
    cpu = loop_cpu_us() - c0, wall = t_now_us() - t0;
  }
  T_CHECKF(cpu * 10 < wall, "a stuck pipelining client: the loop used %llu us "
           "of CPU in %llu us (and over a tenth in each of the 4 seconds before)",
           (unsigned long long)cpu, (unsigned long long)wall);
  /* nothing was lost: every response arrives, in order, and the
   * connection serves the next request */
  for (size_t i = 0; i < n; i++) {
    hc_resp_t r;
    T_CHECKF(hc_read_resp(c, &r, 0) == 0, "response %zu of %zu missing", i, n);
    T_EQ(r.status, 200);
    T_EQ(r.blen, 2047u);
    hc_resp_free(&r);
    if (i == n - 1 && part) { /* the request cut in the middle: its rest */
      hc_sends(c, req + part);
      part = 0;
      n++;
    }
  }
  hc_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_STR_EQ(r.body, "hello\n");
  hc_resp_free(&r);
  hc_close(c);
  ht_stop();
}

/* ---- a client that half-closes after pipelining ------------------------------ */

/* printf 'GET ...GET ...' | nc -N: the client sends its requests and
 * shuts its side down.  Every complete request it sent is answered, in
 * order, also those behind a slow (coroutine) handler during which the
 * engine sees the EOF; then the server closes. */
static void test_halfclose_pipeline(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  mtev_rest_mountpoint_t *sl = mtev_http_rest_new_rule("GET", "/", "^slow$", h_slow);
  T_CHECK(sl != NULL);
  mtev_rest_mountpoint_set_aco(sl, mtev_true);
  const char *cases[][4] = {
      {"/hello", "/hello", "/hello", NULL},
      {"/hello", "/slow", "/hello", NULL},
      {"/slow", "/hello", NULL, NULL},
      {"/slow", "/slow", "/hello", NULL},
  };
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
    hc_t *c = hc_open(port);
    char req[1024];
    size_t n = 0;
    int m = 0;
    for (; m < 4 && cases[k][m]; m++)
      n += (size_t)snprintf(req + n, sizeof(req) - n,
                            "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", cases[k][m]);
    hc_send(c, req, n);
    T_EQ(shutdown(c->fd, SHUT_WR), 0);
    for (int i = 0; i < m; i++) {
      hc_resp_t r;
      T_CHECKF(hc_read_resp(c, &r, 0) == 0,
               "case %zu: response %d of %d (%s) missing: the server closed", k,
               i + 1, m, cases[k][i]);
      T_EQ(r.status, 200);
      T_STR_EQ(r.body, strcmp(cases[k][i], "/slow") ? "hello\n" : "slow");
      hc_resp_free(&r);
    }
    T_CHECK(hc_eof(c));
    hc_close(c);
  }
  ht_stop();
}

/* ---- the keep-alive timeout around a held batch -------------------------------- */

/* An idle timeout (300 ms) shorter than a slow handler (200 ms each, two
 * of them) in a pipeline whose later responses are held for the pass's
 * end: nothing is lost to the timer, every response arrives in order,
 * then the idle connection is closed by the timeout. */
static void test_idle_timeout_held(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  mtev_rest_mountpoint_t *m = mtev_http_rest_new_rule("GET", "/", "^slow$", h_slow);
  T_CHECK(m != NULL);
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  m = mtev_http_rest_new_rule("GET", "/", "^y$", h_yield);
  T_CHECK(m != NULL);
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  mtev_http_limits_t lim = {8192, 65536, 100, 1 << 20, 10000, 300};
  T_EQ(mtev_http_set_limits(&lim), 0);
  hc_t *c = hc_open(port);
  /* before the requests: the idle timer counts from the last response's
   * write, which a client kept off its CPU reads later (a bound from its
   * read would fail on a loaded machine) */
  uint64_t t0 = t_now_us();
  hc_sends(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /y HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /y HTTP/1.1\r\nHost: x\r\n\r\n");
  const char *want[] = {"slow", "y", "hello\n", "slow", "y"};
  for (int i = 0; i < 5; i++) {
    hc_resp_t r;
    T_CHECKF(hc_read_resp(c, &r, 0) == 0, "response %d missing", i + 1);
    T_EQ(r.status, 200);
    T_STR_EQ(r.body, want[i]);
    hc_resp_free(&r);
  }
  /* closed by the idle timer, not when the batch ended: no sooner than a
   * slow handler's 200 ms and the 300 ms idle after the last response
   * (20 ms for the timer's granularity) */
  T_CHECK(hc_eof(c));
  T_GE((t_now_us() - t0) / 1000, 480);
  hc_close(c);
  ht_stop();
}


/* ---- a pipeline through every kind of route ---------------------------------- */

/* One connection, one write: aco rules that never park (the coroutine
 * that served a request takes the next one itself when the connection's
 * last route holds for it) mixed with uploads (aco and classic, one with
 * Expect: 100-continue), HEAD, a query string, captures, 404, 405 and a
 * classic rule.  Every response arrives, in order, with the right body;
 * the connection then still serves. */
static void test_mixed_pipeline(void) {
  int port = ht_start(1);
  mtev_rest_mountpoint_t *m;
  T_CHECK((m = mtev_http_rest_new_rule("GET", "/", "^a$", h_a)));
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  T_CHECK((m = mtev_http_rest_new_rule("POST", "/", "^echo_aco$", h_echo)));
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  T_CHECK(mtev_http_rest_new_rule("POST", "/", "^echo$", h_echo));
  T_CHECK((m = mtev_http_rest_new_rule("GET", "/u/", "^(\\d+)$", h_u)));
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  struct { const char *req; int status; const char *body; int head; } steps[] = {
      {"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 200, "a0", 0},
      {"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 200, "a0", 0},
      {"POST /echo_aco HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz", 200, "3:xyz", 0},
      {"POST /echo_aco HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 200, "5:hello", 0},
      {"POST /echo_aco HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 200, "0:", 0},
      {"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 200, "a0", 0},
      {"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n", 200, "", 1},
      {"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 200, "a0", 0},
      {"GET /a?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", 200, "a0", 0},
      {"GET /u/12 HTTP/1.1\r\nHost: x\r\n\r\n", 200, "u1:12", 0},
      {"GET /u/345 HTTP/1.1\r\nHost: x\r\n\r\n", 200, "u1:345", 0},
      {"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 200, "a0", 0},
      {"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, NULL, 0},
      {"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 200, "a0", 0},
      {"DELETE /a HTTP/1.1\r\nHost: x\r\n\r\n", 405, NULL, 0},
      {"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 200, "a0", 0},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab", 200, "2:ab", 0},
      {"GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n", 200, "a0", 0},
      {"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 200, "a0", 0},
      {"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, "hello\n", 0},
      {"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 200, "a0", 0},
  };
  size_t ns = sizeof(steps) / sizeof(steps[0]);
  for (int round = 0; round < 2; round++) {
    hc_t *c = hc_open(port);
    if (round == 0) {
      char all[8192];
      size_t n = 0;
      for (size_t i = 0; i < ns; i++)
        n += (size_t)snprintf(all + n, sizeof(all) - n, "%s", steps[i].req);
      hc_send(c, all, n);
    } else {
      /* byte by byte: every head and body arrives in pieces */
      for (size_t i = 0; i < ns; i++)
        for (const char *p = steps[i].req; *p; p++) hc_send(c, p, 1);
    }
    for (size_t i = 0; i < ns; i++) {
      hc_resp_t r;
      T_CHECKF(hc_read_resp(c, &r, steps[i].head) == 0,
               "round %d: response %zu missing", round, i);
      T_CHECKF(r.status == steps[i].status, "round %d step %zu: %d, not %d",
               round, i, r.status, steps[i].status);
      if (steps[i].body) {
        T_CHECKF(r.blen == strlen(steps[i].body) &&
                     !memcmp(r.body, steps[i].body, r.blen),
                 "round %d step %zu: body '%.*s', not '%s'", round, i,
                 (int)r.blen, r.body ? r.body : "", steps[i].body);
      }
      hc_resp_free(&r);
    }
    hc_close(c);
  }
  ht_stop();
}

/* Expect: 100-continue on a request the coroutine of the previous one
 * takes (same aco POST rule): the 100 comes, the body goes, its answer
 * comes. */
static void test_continue_behind_aco(void) {
  int port = ht_start(1);
  mtev_rest_mountpoint_t *m;
  T_CHECK((m = mtev_http_rest_new_rule("POST", "/", "^echo_aco$", h_echo)));
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  hc_t *c = hc_open(port);
  hc_sends(c, "POST /echo_aco HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nq"
              "POST /echo_aco HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
              "Expect: 100-continue\r\n\r\n");
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
  T_STR_EQ(r.body, "1:q");
  hc_resp_free(&r);
  T_EQ(hc_read_resp2(c, &r, 0, 1), 0);
  T_EQ(r.status, 100);
  hc_resp_free(&r);
  hc_sends(c, "wxyz");
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
  T_STR_EQ(r.body, "4:wxyz");
  hc_resp_free(&r);
  hc_close(c);
  ht_stop();
}

/* A rule registered while a connection keeps a route: a more specific base
 * now serves the path the connection's last request took. */
static void test_route_cache_new_rule(void) {
  int port = ht_start(1);
  mtev_rest_mountpoint_t *m;
  T_CHECK((m = mtev_http_rest_new_rule("GET", "/", "^a/$", h_a)));
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  hc_t *c = hc_open(port);
  for (int i = 0; i < 2; i++) {
    hc_sends(c, "GET /a/ HTTP/1.1\r\nHost: x\r\n\r\nGET /a/ HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int k = 0; k < 2; k++) {
      hc_resp_t r;
      T_EQ(hc_read_resp(c, &r, 0), 0);
      T_STR_EQ(r.body, i == 0 ? "a0" : "hello\n");
      hc_resp_free(&r);
    }
    if (i == 0) T_CHECK(mtev_http_rest_new_rule("GET", "/a/", "^$", h_hello));
  }
  hc_close(c);
  ht_stop();
}


/* ---- resets in the middle of pipelines to coroutines --------------------------- */

/* aco, yields once then answers with a 4 KB body */
static int h_ykb(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  static char body[4097];
  if (!body[0]) memset(body, 'y', sizeof(body) - 1);
  (void)eventer_aco_yield(); /* (a cancel: answer all the same) */
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, body);
  mtev_http_response_end(ctx);
  return 0;
}

/* Clients on two loops pipeline batches where coroutines take request
 * after request (aco rules that never park, one that yields, captures,
 * uploads cut short, 404s) and reset their connections at every moment:
 * before, during and after the batch's answers.  The server stays up,
 * answers a last client in order, and every session, coroutine and
 * allocation goes away (ht_stop's checks; ASan for the rest). */
static void test_reset_mid_probe(void) {
  int port = ht_start(2);
  mtev_rest_mountpoint_t *m;
  T_CHECK((m = mtev_http_rest_new_rule("GET", "/", "^a$", h_a)));
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  T_CHECK((m = mtev_http_rest_new_rule("GET", "/", "^ykb$", h_ykb)));
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  T_CHECK((m = mtev_http_rest_new_rule("POST", "/", "^echo_aco$", h_echo)));
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  T_CHECK((m = mtev_http_rest_new_rule("GET", "/u/", "^(\\d+)$", h_u)));
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  static const char *reqs[] = {
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /ykb HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /u/7 HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
      "POST /echo_aco HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
      "POST /echo_aco HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\nabc",
  };
  unsigned seed = getenv("HT_SEED") ? (unsigned)atoi(getenv("HT_SEED")) : 12345;
  char batch[16384];
  for (long i = 0, n_clients = t_scale(1000, 10); i < n_clients; i++) {
    hc_t *c = hc_open(port);
    size_t n = 0;
    int nreq = 1 + (int)(rand_r(&seed) % 40);
    for (int k = 0; k < nreq; k++) {
      const char *r = reqs[rand_r(&seed) % 7];
      if (k == nreq - 1 && rand_r(&seed) % 4 == 0) r = reqs[7]; /* cut short */
      size_t l = strlen(r);
      if (n + l > sizeof(batch)) break;
      memcpy(batch + n, r, l);
      n += l;
    }
    /* some go in pieces, the last one possibly cut in a head */
    size_t cut = rand_r(&seed) % 3 == 0 ? (size_t)(rand_r(&seed) % n) : n;
    hc_send(c, batch, cut);
    switch (rand_r(&seed) % 4) {
    case 0: break; /* at once */
    case 1: usleep(rand_r(&seed) % 300); break;
    case 2: { /* a part of the answers, if any come soon */
      char tmp[512];
      struct pollfd pf = {c->fd, POLLIN, 0};
      if (poll(&pf, 1, 5) == 1) (void)!recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
      break;
    }
    case 3: shutdown(c->fd, SHUT_WR); usleep(rand_r(&seed) % 200); break;
    }
    hc_reset(c);
  }
  /* a last client, in order */
  hc_t *c = hc_open(port);
  hc_sends(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /ykb HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /u/9 HTTP/1.1\r\nHost: x\r\n\r\n");
  const char *want[] = {"a0", NULL, "a0", "u1:9"};
  for (int i = 0; i < 4; i++) {
    hc_resp_t r;
    T_CHECKF(hc_read_resp(c, &r, 0) == 0, "response %d missing", i);
    T_EQ(r.status, 200);
    if (want[i]) T_STR_EQ(r.body, want[i]);
    else T_EQ(r.blen, 4096u);
    hc_resp_free(&r);
  }
  hc_close(c);
  ht_stop();
}

/* ---- the common answer sent at once, into a full socket -------------------------- */

/* "n=<number>" and 'r' up to dr_blen bytes (256, or 24: at most 32 is
 * what mtev_http_response_end sends itself inside the drive), a response
 * short enough for ev_http_flush's direct send; the first call shrinks
 * the server's send buffer.  After its end it counts the responses it
 * made and notes the session's send calls. */
static int dr_made;
static uint64_t dr_sends;
static size_t dr_blen = 256;
static int h_direct(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  int n = __atomic_load_n(&dr_made, __ATOMIC_ACQUIRE);
  if (n == 0) {
    int fd = eventer_get_fd(mtev_http_connection_event(mtev_http_session_connection(ctx)));
    int small = 4096;
    T_EQ(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  }
  char body[257];
  int k = snprintf(body, sizeof(body), "n=%d;", n);
  memset(body + k, 'r', dr_blen - (size_t)k);
  body[dr_blen] = 0;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, body);
  mtev_http_response_end(ctx);
  ev_http_io_counts_t io;
  T_EQ(ev_http_session_io_counts(ctx, &io), 0);
  __atomic_store_n(&dr_sends, io.sends, __ATOMIC_RELAXED);
  __atomic_store_n(&dr_made, n + 1, __ATOMIC_RELEASE);
  return 0;
}

/* One request at a time (each sent after the previous one's response was
 * made, so none is pipelined behind another and each answer takes the
 * direct send while nothing is queued), to a client that does not read:
 * the socket fills, a direct send is refused in part or whole, and the
 * rest goes out through the output queue.  Then every response arrives
 * whole, in order, with the same head, and the connection still serves. */
static void direct_send_refused(size_t blen, int max) {
  int port = ht_start(1);
  dr_blen = blen;
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^direct$", h_direct));
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  __atomic_store_n(&dr_made, 0, __ATOMIC_RELAXED);
  /* the client's receive buffer small from the start */
  hc_t *c = hc_open_rcvbuf(port, 8192);
  /* responses one at a time (about 370 bytes, or 126), until a send call
   * more than one a response shows a direct send was refused (the 59th's
   * here, Linux 6.18, loopback; the 150th's of the short ones), then ten
   * more that meet the queue; at most max, less than the engine queues
   * before it stops reading (64 KB), so that every request is read and
   * answered */
  int total = 0, refused_at = -1;
  while (total < max && (refused_at < 0 || total < refused_at + 10)) {
    int i = total;
    hc_sends(c, "GET /direct HTTP/1.1\r\nHost: x\r\n\r\n");
    uint64_t end = t_now_us() + (t_slow() ? 60000000u : 15000000u);
    while (__atomic_load_n(&dr_made, __ATOMIC_ACQUIRE) != i + 1) {
      T_CHECKF(t_now_us() < end, "request %d not answered", i);
      usleep(1000);
    }
    total++;
    if (refused_at < 0 && __atomic_load_n(&dr_sends, __ATOMIC_RELAXED) > (uint64_t)total)
      refused_at = total;
  }
  uint64_t sends = __atomic_load_n(&dr_sends, __ATOMIC_RELAXED);
  T_CHECKF(refused_at > 0, "%llu send calls for %d responses: the socket never "
           "filled", (unsigned long long)sends, total);
  char first_head[8192] = "";
  for (int i = 0; i < total; i++) {
    hc_resp_t r;
    T_CHECKF(hc_read_resp(c, &r, 0) == 0, "response %d missing", i);
    T_EQ(r.status, 200);
    T_EQ(r.blen, blen);
    char want[32];
    int k = snprintf(want, sizeof(want), "n=%d;", i);
    T_CHECKF(r.body && !memcmp(r.body, want, (size_t)k), "response %d: %.16s", i,
             r.body ? r.body : "");
    for (size_t j = (size_t)k; j < r.blen; j++) T_EQ(r.body[j], 'r');
    const char *cl = hc_header(&r, "Content-Length");
    char cls[24];
    snprintf(cls, sizeof(cls), "%zu", blen);
    T_STR_EQ(cl ? cl : "", cls);
    /* the same head every time (but the Date, which may tick) */
    char *head = r.head, *date = strstr(head, "Date:");
    if (date) {
      char *e = strchr(date, '\n');
      memmove(date, e ? e + 1 : date + strlen(date), strlen(e ? e + 1 : "") + 1);
    }
    if (i == 0) snprintf(first_head, sizeof(first_head), "%s", head);
    else T_STR_EQ(head, first_head);
    hc_resp_free(&r);
  }
  hc_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_STR_EQ(r.body, "hello\n");
  hc_resp_free(&r);
  hc_close(c);
  ht_stop();
}
static void test_direct_send_refused(void) { direct_send_refused(256, 150); }
/* the short answer mtev_http_response_end sends itself inside the drive
 * (ev_http_end_quick); a classic rule: an aco rule's end would park its
 * coroutine until the client, which does not read, had read the answer */
static void test_direct_send_refused_short(void) { direct_send_refused(24, 300); }

T_MAIN({"reset_mid_probe", test_reset_mid_probe},
       {"direct_send_refused", test_direct_send_refused},
       {"direct_send_refused_short", test_direct_send_refused_short},
       {"mixed_pipeline", test_mixed_pipeline},
       {"continue_behind_aco", test_continue_behind_aco},
       {"route_cache_new_rule", test_route_cache_new_rule},
       {"noread_no_spin", test_noread_no_spin},
       {"idle_timeout_held", test_idle_timeout_held},
       {"halfclose_pipeline", test_halfclose_pipeline})
