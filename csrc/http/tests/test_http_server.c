/*
 * test_http_server.c - the HTTP engine and REST routing end to end: a
 * server on its own loop threads, a client on the test's thread.
 */
#include <signal.h>
#include <zlib.h>

#include "http_impl.h"
#include "http_test.h"
#include "mtev_conf.h"

/* ---- handlers ----------------------------------------------------------------- */

static int h_hello(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "hello\n");
  mtev_http_response_end(ctx);
  return 0;
}

/* the captures, joined with '|', and how the request was served */
static int h_pats(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_appendf(ctx, "%d:", npats);
  for (int i = 0; i < npats; i++)
    mtev_http_response_appendf(ctx, "%s%s", i ? "|" : "", pats[i]);
  mtev_http_response_appendf(ctx, " %s%s",
                             mtev_http_session_aco(ctx) ? "aco" : "classic",
                             restc->closure ? (char *)restc->closure : "");
  mtev_http_response_end(ctx);
  return 0;
}

/* /sleep/<ms>: sleeps in the coroutine, answers <ms> */
static int h_sleep(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  T_EQ(npats, 1);
  T_CHECK(mtev_http_session_aco(ctx));
  int ms = atoi(pats[0]);
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  eventer_aco_sleep(&tv);
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_appendf(ctx, "%d", ms);
  mtev_http_response_end(ctx);
  return 0;
}

/* the request as the handler sees it */
static int h_info(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_request *req = mtev_http_session_request(ctx);
  mtev_http_response_ok(ctx, "text/plain");
  const char *xt = mtev_http_request_header(req, "x-TEST");
  const char *a = mtev_http_request_querystring(req, "a");
  const char *b = mtev_http_request_querystring(req, "b");
  const char *c = mtev_http_request_querystring(req, "c");
  mtev_http_response_appendf(
      ctx, "method=%s uri=%s proto=%s qs=%s a=%s b=%s c=%s x-test=%s n=%d",
      mtev_http_request_method_str(req), mtev_http_request_uri_str(req),
      mtev_http_request_protocol_str(req),
      mtev_http_request_orig_querystring(req), a ? a : "(null)",
      b ? b : "(null)", c ? c : "(null)", xt ? xt : "(null)",
      mtev_http_request_querystring_count(req));
  mtev_http_response_end(ctx);
  return 0;
}

/* The whole body: its size and hash.  Classic: comes back with the mask
 * until the upload is complete. */
static int h_upload(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  int mask = 0;
  if (!mtev_rest_complete_upload(restc, &mask)) return mask;
  int64_t size = 0;
  const void *data = mtev_http_request_get_upload(mtev_http_session_request(ctx),
                                                  &size);
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_appendf(ctx, "%lld %016llx %s", (long long)size,
                             (unsigned long long)hc_fnv(data, (size_t)size),
                             mtev_http_session_aco(ctx) ? "aco" : "classic");
  mtev_http_response_end(ctx);
  return 0;
}

/* Reads the body with req_consume in small pieces. */
static int h_consume(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  T_CHECK(mtev_http_session_aco(ctx));
  uint64_t h = 1469598103934665603ull, n = 0;
  char buf[777];
  for (;;) {
    int mask;
    int r = mtev_http_session_req_consume(ctx, buf, sizeof(buf), sizeof(buf),
                                          &mask);
    if (r < 0) return 0;
    if (r == 0) break;
    for (int i = 0; i < r; i++) h = (h ^ (unsigned char)buf[i]) * 1099511628211ull;
    n += (uint64_t)r;
  }
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_appendf(ctx, "%llu %016llx", (unsigned long long)n,
                             (unsigned long long)h);
  mtev_http_response_end(ctx);
  return 0;
}

/* /stream/<n>: n flushed pieces "piece <i>\n" (chunked) */
static int h_stream(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  T_EQ(npats, 1);
  int n = atoi(pats[0]);
  mtev_http_response_ok(ctx, "text/plain");
  for (int i = 0; i < n; i++) {
    mtev_http_response_appendf(ctx, "piece %d\n", i);
    if (!mtev_http_response_flush(ctx, mtev_false)) return 0;
  }
  mtev_http_response_end(ctx);
  return 0;
}

/* /big/<n>: n bytes of a pattern (Content-Length) */
static int h_big(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  (void)npats;
  size_t n = strtoul(pats[0], NULL, 10);
  char *b = malloc(n);
  for (size_t i = 0; i < n; i++) b[i] = (char)('a' + i % 26);
  mtev_http_response_ok(ctx, "application/octet-stream");
  mtev_http_response_append(ctx, b, n);
  free(b);
  mtev_http_response_end(ctx);
  return 0;
}

/* /pieces/<n>/<k>: n bytes of the /big pattern appended k bytes at a time
 * (the last piece shorter), as text/plain */
static int h_pieces(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  T_CHECK(npats == 2);
  size_t n = strtoul(pats[0], NULL, 10), k = strtoul(pats[1], NULL, 10);
  char b[64];
  T_CHECK(n <= sizeof(b) && k > 0);
  for (size_t i = 0; i < n; i++) b[i] = (char)('a' + i % 26);
  mtev_http_response_ok(ctx, "text/plain");
  for (size_t i = 0; i < n; i += k)
    mtev_http_response_append(ctx, b + i, n - i < k ? n - i : k);
  mtev_http_response_end(ctx);
  return 0;
}

/* /gzip/<gzip|deflate>: compressed when allowed */
static int h_gzip(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  (void)npats;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_boolean on = mtev_http_response_option_set(
      ctx, !strcmp(pats[0], "gzip") ? MTEV_HTTP_GZIP : MTEV_HTTP_DEFLATE);
  for (int i = 0; i < 2000; i++)
    mtev_http_response_appendf(ctx, "line %d of a compressible body\n", i);
  if (!strcmp(pats[1], "flush")) mtev_http_response_flush(ctx, mtev_false);
  mtev_http_response_appendf(ctx, "%s\n", on ? "compressed" : "plain");
  mtev_http_response_end(ctx);
  return 0;
}

/* Coroutines alive in the counting handlers below. */
static int g_live;
static void live(int d) { __atomic_add_fetch(&g_live, d, __ATOMIC_RELAXED); }
static int live_now(void) { return __atomic_load_n(&g_live, __ATOMIC_RELAXED); }
static void wait_live_zero(int ms) {
  uint64_t end = t_now_us() + (uint64_t)ms * 1000u;
  while (live_now() != 0) {
    if (t_now_us() > end) T_FAIL("%d coroutines still alive", live_now());
    usleep(2000);
  }
}

/* aco: sleeps <ms> (counted) */
static int h_csleep(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats;
  live(1);
  int ms = atoi(pats[0]);
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  int rc = eventer_aco_sleep(&tv);
  mtev_http_response_ok(restc->http_ctx, "text/plain");
  mtev_http_response_appendf(restc->http_ctx, "%d", rc);
  mtev_http_response_end(restc->http_ctx);
  live(-1);
  return 0;
}

/* the seed's pattern: the job sleeps, then appends */
static void job_sleep(void *c) {
  mtev_http_rest_closure_t *restc = c;
  usleep(300000);
  mtev_http_response_append_str(restc->http_ctx, "job done\n");
}
/* aco: waits for a 300 ms job (counted) */
static int h_cjob(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  live(1);
  mtev_http_response_ok(restc->http_ctx, "text/plain");
  eventer_aco_simple_asynch(job_sleep, restc);
  mtev_http_response_end(restc->http_ctx);
  live(-1);
  return 0;
}

/* counted wrappers */
static int h_cconsume(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  live(1);
  int rv = h_consume(restc, npats, pats);
  live(-1);
  return rv;
}
static int h_cbig(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  live(1);
  int rv = h_big(restc, npats, pats);
  live(-1);
  return rv;
}

/* where the handler runs: the loop thread's name */
static int h_where(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_response_ok(restc->http_ctx, "text/plain");
  mtev_http_response_appendf(restc->http_ctx, "%s %s", eventer_get_thread_name(),
                             mtev_http_session_aco(restc->http_ctx) ? "aco" : "classic");
  mtev_http_response_end(restc->http_ctx);
  return 0;
}

static mtev_boolean deny_marked(mtev_http_rest_closure_t *restc, int npats,
                                char **pats) {
  (void)npats, (void)pats;
  return mtev_http_request_header(mtev_http_session_request(restc->http_ctx),
                                  "x-deny")
             ? mtev_false
             : mtev_true;
}

/* classic: ends the response 50 ms later, from a timer callback */
static int end_later_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)now;
  mtev_http_session_ctx *ctx = c;
  mtev_http_response_append_str(ctx, "later\n");
  mtev_http_response_end(ctx);
  mtev_http_session_ref_dec(ctx);
  return 0;
}
static int h_later(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_session_ref_inc(ctx);
  eventer_add_in_s_us(end_later_cb, ctx, 0, 50000);
  return 0;
}

/* /std/<403|404|500>: libmtev's shorthands */
static int h_std(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  int code = atoi(pats[0]);
  if (code == 403) mtev_http_response_denied(ctx, "text/x-denied");
  else if (code == 404) mtev_http_response_not_found(ctx, "text/x-nf");
  else mtev_http_response_server_error(ctx, "text/x-err");
  /* framing is the engine's */
  T_CHECK(!mtev_http_response_header_set(ctx, "Content-Length", "3"));
  T_CHECK(!mtev_http_response_header_set(ctx, "Transfer-Encoding", "chunked"));
  T_CHECK(!mtev_http_response_header_set(ctx, "Bad Name", "x"));
  /* a final status only: a 1xx would go out body-less, and the client
   * would take the next response for this one's (the status line stays
   * the shorthand's) */
  T_CHECK(!mtev_http_response_status_set(ctx, 100, "Continue"));
  T_CHECK(!mtev_http_response_status_set(ctx, 101, "Switching Protocols"));
  T_CHECK(!mtev_http_response_status_set(ctx, 199, "X"));
  T_CHECK(!mtev_http_response_status_set(ctx, 99, "X"));
  T_CHECK(!mtev_http_response_status_set(ctx, 1000, "X"));
  T_CHECK(!mtev_http_response_header_set(ctx, "X-Split", "a\r\nInjected: 1"));
  /* a CR or an LF anywhere in values of 1 to 40 bytes (the check reads
   * eight at a time, the last eight overlapping): refused, and the value
   * without it taken */
  for (size_t len = 1; len <= 40; len++) {
    char v[41];
    memset(v, 'v', len);
    v[len] = 0;
    for (size_t at = 0; at < len; at++) {
      for (int k = 0; k < 2; k++) {
        v[at] = k ? '\n' : '\r';
        T_CHECKF(!mtev_http_response_header_set(ctx, "X-Probe", v),
                 "a value of %zu bytes with %s at %zu was taken", len,
                 k ? "LF" : "CR", at);
        v[at] = 'v';
      }
    }
    T_CHECK(mtev_http_response_header_set(ctx, "X-Probe", v));
  }
  T_CHECK(mtev_http_response_header_set(ctx, "X-Probe", "ok"));
  /* nor as a standard response's Content-Type (the one set stays) */
  if (code == 500) mtev_http_response_server_error(ctx, "text/x-err2\r\nX-Split: 1");
  T_CHECK(mtev_http_response_header_set(ctx, "X-Twice", "1"));
  T_CHECK(mtev_http_response_header_set(ctx, "x-twice", "2"));
  /* header_add: one line each (Set-Cookie must not be folded), with the
   * same checks; a header_set after it replaces them all */
  T_CHECK(mtev_http_response_header_add(ctx, "Set-Cookie", "a=1"));
  T_CHECK(mtev_http_response_header_add(ctx, "set-cookie", "b=2; Path=/"));
  T_CHECK(!mtev_http_response_header_add(ctx, "Set-Cookie", "c=3\r\nInjected: 1"));
  T_CHECK(!mtev_http_response_header_add(ctx, "Content-Length", "3"));
  T_CHECK(mtev_http_response_header_add(ctx, "X-Added", "1"));
  T_CHECK(mtev_http_response_header_add(ctx, "X-Added", "2"));
  T_CHECK(mtev_http_response_header_set(ctx, "X-Added", "3"));
  mtev_http_response_appendf(ctx, "%d", code);
  T_CHECK(ev_http_response_end_drive(ctx));
  /* nothing more once it ended */
  T_CHECK(!mtev_http_response_append_str(ctx, "late"));
  T_CHECK(!mtev_http_response_status_set(ctx, 200, "OK"));
  T_CHECK(!mtev_http_response_end(ctx));
  return 0;
}

/* /forget/<status|none>: returns 0 without ending the response; /again:
 * ends it and asks to be called again anyway */
static int h_forget(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  if (!strcmp(pats[0], "status")) {
    mtev_http_response_ok(ctx, "text/plain");
    mtev_http_response_append_str(ctx, "forgot to end\n");
  }
  return 0;
}
static int g_again_calls;
static int h_again(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  __atomic_add_fetch(&g_again_calls, 1, __ATOMIC_RELAXED);
  h_hello(restc, 0, NULL);
  return EVENTER_READ;
}

/* ---- the seed's example: aco rule, a job appends, end -------------------------- */

static void asynch_hello(void *closure) {
  mtev_http_rest_closure_t *restc = closure;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  sleep(1);
  mtev_http_response_append_str(ctx, "Hello world.\n");
}

static int hello_handler(mtev_http_rest_closure_t *restc, int npats,
                         char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  eventer_aco_simple_asynch(asynch_hello, restc);
  mtev_http_response_end(ctx);
  return 0;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_basic(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  hc_resp_t r;
  T_EQ(hc_oneshot(port, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
  T_STR_EQ(r.body, "hello\n");
  T_STR_EQ(hc_header(&r, "Content-Type"), "text/plain");
  T_STR_EQ(hc_header(&r, "Content-Length"), "6");
  T_CHECK(hc_header(&r, "Date") != NULL);
  hc_resp_free(&r);
  /* The drive reads the wall clock only when a second may have passed
   * (by its monotonic clock): on one keep-alive connection, a request
   * 1.5 s after another gets a later Date, the one of its own second. */
  hc_t *c = hc_open(port);
  char d0[64] = "", d1[64] = "";
  for (int i = 0; i < 2; i++) {
    if (i) usleep(1500 * 1000);
    time_t before = time(NULL);
    hc_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    T_EQ(hc_read_resp(c, &r, 0), 0);
    time_t after = time(NULL);
    const char *d = hc_header(&r, "Date");
    T_CHECK(d != NULL && strlen(d) < sizeof(d0));
    snprintf(i ? d1 : d0, sizeof(d0), "%.63s", d ? d : "");
    /* one of the seconds the request took (more than two when a loaded
     * runner keeps the client or the loop off its CPU for a second) */
    char want[2][64];
    struct tm tm;
    strftime(want[0], sizeof(want[0]), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&before, &tm));
    strftime(want[1], sizeof(want[1]), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&after, &tm));
    int seen = 0;
    for (time_t s = before; d && !seen && s <= after; s++) {
      char w[64];
      strftime(w, sizeof(w), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&s, &tm));
      seen = !strcmp(d, w);
    }
    T_CHECKF(seen, "Date %s, wanted %s to %s", d ? d : "(none)", want[0], want[1]);
    hc_resp_free(&r);
  }
  T_CHECKF(strcmp(d0, d1) != 0, "the same Date 1.5 s later: %s", d0);
  hc_close(c);
  ht_stop();
}

static void test_routing(void) {
  int port = ht_start(1);
  /* bases: the longest prefix wins; rules in registration order */
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^(.*)$", h_pats));
  T_CHECK(mtev_http_rest_new_rule("GET", "/a/", "^b/([0-9]+)$", h_pats));
  T_CHECK(mtev_http_rest_new_rule("GET", "/a/", "^b/(.*)$", h_pats));
  T_CHECK(mtev_http_rest_new_rule("POST", "/a/", "^b/([0-9]+)$", h_pats));
  T_CHECK(mtev_http_rest_new_rule("PUT", "/a/", "^p(x)?(y)$", h_pats));
  T_CHECK(mtev_http_rest_new_rule("GET", "/a/c/", "^d$", h_pats));
  mtev_rest_mountpoint_t *aco = mtev_http_rest_new_rule("GET", "/aco/", "^(x)$", h_pats);
  mtev_rest_mountpoint_set_aco(aco, mtev_true);
  mtev_rest_mountpoint_set_closure(aco, (void *)"+closure");
  /* bad rules */
  errno = 0;
  T_CHECK(!mtev_http_rest_new_rule("GET", "nobase", "^x$", h_pats) && errno == EINVAL);
  T_CHECK(!mtev_http_rest_new_rule("GET", "/x", "^x$", h_pats));
  T_CHECK(!mtev_http_rest_new_rule("GET", "/x/", "^(x$", h_pats) && errno == EINVAL);
  T_CHECK(!mtev_http_rest_new_rule("G T", "/x/", "^x$", h_pats));
  T_CHECK(!mtev_http_rest_new_rule("GET", "/x/", "^x$", NULL));

  struct {
    const char *req;
    int status;
    const char *body;
  } cases[] = {
      {"GET /zz HTTP/1.1\r\nHost: x\r\n\r\n", 200, "1:zz classic"},
      {"GET /a/b/12 HTTP/1.1\r\nHost: x\r\n\r\n", 200, "1:12 classic"},
      {"GET /a/b/xy HTTP/1.1\r\nHost: x\r\n\r\n", 200, "1:xy classic"},
      {"GET /a/c/d HTTP/1.1\r\nHost: x\r\n\r\n", 200, "0: classic"},
      {"GET /a/c/d?q=1 HTTP/1.1\r\nHost: x\r\n\r\n", 200, "0: classic"},
      /* the longest base owns its paths: /a/c/ does not fall back to /a/ */
      {"GET /a/c/x HTTP/1.1\r\nHost: x\r\n\r\n", 404, "Not Found\n"},
      {"POST /a/b/7 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 200,
       "1:7 classic"},
      {"PUT /a/py HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 200,
       "2:|y classic"},
      /* the base /a/ owns /a/...: no fallback to "/" */
      {"GET /a/zz HTTP/1.1\r\nHost: x\r\n\r\n", 404, "Not Found\n"},
      {"GET /aco/x HTTP/1.1\r\nHost: x\r\n\r\n", 200, "1:x aco+closure"},
      /* a GET rule serves HEAD */
      {"HEAD /a/b/12 HTTP/1.1\r\nHost: x\r\n\r\n", 200, ""},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    hc_resp_t r;
    int st = hc_oneshot(port, cases[i].req, &r);
    T_CHECKF(st == cases[i].status && !strcmp(r.body, cases[i].body),
             "%s: %d \"%s\"", cases[i].req, st, r.body);
    hc_resp_free(&r);
  }
  /* HEAD: the headers a GET would get, no body */
  hc_resp_t r;
  T_EQ(hc_oneshot(port, "HEAD /a/b/12 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
  T_STR_EQ(hc_header(&r, "Content-Length"), "12");
  hc_resp_free(&r);
  /* 405 with Allow; OPTIONS */
  T_EQ(hc_oneshot(port, "DELETE /a/b/12 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 405);
  T_STR_EQ(hc_header(&r, "Allow"), "GET, HEAD, POST, OPTIONS");
  hc_resp_free(&r);
  T_EQ(hc_oneshot(port, "OPTIONS /a/b/12 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
  T_STR_EQ(hc_header(&r, "Allow"), "GET, HEAD, POST, OPTIONS");
  T_STR_EQ(r.body, "");
  hc_resp_free(&r);
  T_EQ(hc_oneshot(port, "OPTIONS /a/b/zz HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
  T_STR_EQ(hc_header(&r, "Allow"), "GET, HEAD, OPTIONS");
  hc_resp_free(&r);
  T_EQ(hc_oneshot(port, "OPTIONS /a/q HTTP/1.1\r\nHost: x\r\n\r\n", &r), 404);
  hc_resp_free(&r);

  /* A connection keeps the route of its last request (same method and
   * path, no captures): what is registered later still counts.  PATCH
   * /k/m goes to a rule of "/", then to a rule of a longer base
   * registered between two requests, then to that rule made aco with a
   * closure; another path routes afresh. */
  T_CHECK(mtev_http_rest_new_rule("PATCH", "/", "^k/m$", h_pats));
  hc_t *c = hc_open(port);
  const char *req = "PATCH /k/m HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
  const char *want[] = {"0: classic", "0: classic", "0: classic+k/", "0: aco+k",
                        NULL, "0: aco+k"};
  mtev_rest_mountpoint_t *km = NULL;
  for (int i = 0; i < 6; i++) {
    if (i == 2) {
      km = mtev_http_rest_new_rule("PATCH", "/k/", "^m$", h_pats);
      T_CHECK(km);
      mtev_rest_mountpoint_set_closure(km, (void *)"+k/");
    }
    if (i == 3) {
      mtev_rest_mountpoint_set_aco(km, mtev_true);
      mtev_rest_mountpoint_set_closure(km, (void *)"+k");
      /* the same rule again: the first one still serves */
      mtev_rest_mountpoint_t *k2 = mtev_http_rest_new_rule("PATCH", "/k/", "^m$", h_pats);
      T_CHECK(k2);
      mtev_rest_mountpoint_set_closure(k2, (void *)"+second");
    }
    hc_sends(c, i == 4 ? "PATCH /k/zz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                       : req);
    T_EQ(hc_read_resp(c, &r, 0), 0);
    T_EQ(r.status, want[i] ? 200 : 404);
    if (want[i]) T_STR_EQ(r.body, want[i]);
    hc_resp_free(&r);
  }
  hc_close(c);

  /* The kept route's key is compared with the request's method and path
   * as one span when they are adjacent in the input (an origin-form
   * request line, the method NUL-terminated in place), else in two
   * parts (an absolute-form target's path is after its authority): each
   * request below differs from the kept route's in one byte of the path,
   * in the method, or in where its path is, and is routed to its own
   * rule (or none). */
  mtev_rest_mountpoint_t *one = mtev_http_rest_new_rule("GET", "/k2/", "^one$", h_pats);
  mtev_rest_mountpoint_t *onf = mtev_http_rest_new_rule("GET", "/k2/", "^onf$", h_pats);
  T_CHECK(one && onf);
  mtev_rest_mountpoint_set_closure(one, (void *)"+one");
  mtev_rest_mountpoint_set_closure(onf, (void *)"+onf");
  struct {
    const char *req;
    int status;
    const char *body;
  } kept[] = {
      {"GET /k2/one HTTP/1.1\r\nHost: x\r\n\r\n", 200, "0: classic+one"},
      {"GET /k2/one HTTP/1.1\r\nHost: x\r\n\r\n", 200, "0: classic+one"},
      {"GET /k2/onf HTTP/1.1\r\nHost: x\r\n\r\n", 200, "0: classic+onf"},
      {"GET http://x/k2/onf HTTP/1.1\r\nHost: x\r\n\r\n", 200, "0: classic+onf"},
      {"GET http://x/k2/one HTTP/1.1\r\nHost: x\r\n\r\n", 200, "0: classic+one"},
      {"GET http://x/k2/one HTTP/1.1\r\nHost: x\r\n\r\n", 200, "0: classic+one"},
      {"GET /k2/onf HTTP/1.1\r\nHost: x\r\n\r\n", 200, "0: classic+onf"},
      {"PUT /k2/onf HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, NULL},
      {"GET /k2/onf HTTP/1.1\r\nHost: x\r\n\r\n", 200, "0: classic+onf"},
      {"GET /k2/on HTTP/1.1\r\nHost: x\r\n\r\n", 404, NULL},
      {"GET /k2/one HTTP/1.1\r\nHost: x\r\n\r\n", 200, "0: classic+one"},
  };
  c = hc_open(port);
  for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
    hc_sends(c, kept[i].req);
    T_EQ(hc_read_resp(c, &r, 0), 0);
    T_CHECKF(r.status == kept[i].status &&
                 (!kept[i].body || !strcmp(r.body, kept[i].body)),
             "%s: %d \"%s\"", kept[i].req, r.status, r.body);
    hc_resp_free(&r);
  }
  hc_close(c);
  ht_stop();
}


/* limits small enough to reach in a test */
static void set_limits(uint32_t line, uint32_t head, uint32_t nhdr,
                       uint64_t body, uint32_t hdr_ms, uint32_t idle_ms) {
  mtev_http_limits_t l = {line, head, nhdr, body, hdr_ms, idle_ms};
  T_EQ(mtev_http_set_limits(&l), 0);
}

/* The status a raw request gets, and that the server closes after it. */
static int status_then_close(int port, const char *req, size_t len) {
  hc_t *c = hc_open(port);
  hc_send(c, req, len);
  hc_resp_t r;
  T_CHECKF(hc_read_resp(c, &r, 0) == 0, "no response to \"%.60s\"", req);
  int st = r.status;
  if (st >= 400 && st != 404 && st != 405) { /* the engine's answers close */
    T_CHECKF(hc_header(&r, "Connection") && !strcmp(hc_header(&r, "Connection"), "close"),
             "%d without Connection: close", st);
    T_CHECKF(hc_eof(c), "connection still open after %d", st);
  }
  hc_resp_free(&r);
  hc_close(c);
  return st;
}

static void test_statuses(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  T_CHECK(mtev_http_rest_new_rule("POST", "/", "^upload$", h_upload));
  set_limits(256, 1024, 10, 1000, 300, 60000);
  struct {
    const char *req;
    int status;
  } cases[] = {
      {"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200},
      {"GARBAGE\r\n\r\n", 400},
      {"GET /hello HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", 400},
      {"GET /hello HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 400},
      {"GET /hello HTTP/1.1\r\nHost: x\r\nX-Space : a\r\n\r\n", 400},
      {"GET /hello HTTP/1.1\r\n\r\n", 400}, /* no Host */
      {"GET /hello HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400},
      {"GET /hel%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /hello HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400},
      {"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
       "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400},
      {"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
       "Content-Length: 4\r\n\r\nabcd", 400},
      {"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n", 400},
      {"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
       "zz\r\nabc\r\n0\r\n\r\n", 400},
      {"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
       "3\nabc\r\n0\r\n\r\n", 400}, /* bare LF in framing */
      {"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
       "3\r\nabcX\r\n0\r\n\r\n", 400}, /* data longer than its size */
      {"POST /upload HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
       "3\r\nabc\r\n0\r\n\r\n", 400}, /* HTTP/1.0 has no chunked */
      {"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", 413},
      {"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775807\r\n\r\n",
       413},
      {"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
       "3e9\r\n", 413}, /* a 1001-byte chunk */
      {"GET /hello HTTP/1.1\r\nHost: x\r\nExpect: the-unexpected\r\n\r\n", 417},
      {"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"GET /hello HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"GET /hello HTTP/0.9\r\nHost: x\r\n\r\n", 505},
      {"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404},
      {"PUT /hello HTTP/1.1\r\nHost: x\r\n\r\n", 405},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int st = status_then_close(port, cases[i].req, strlen(cases[i].req));
    T_CHECKF(st == cases[i].status, "%s: %d, want %d", cases[i].req, st,
             cases[i].status);
  }
  /* a chunked body that grows past max_body in small chunks: 413 */
  {
    char req[4096];
    int n = snprintf(req, sizeof(req), "POST /upload HTTP/1.1\r\nHost: x\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 12; i++)
      n += snprintf(req + n, sizeof(req) - (size_t)n,
                    "64\r\n%0100d\r\n", i);
    n += snprintf(req + n, sizeof(req) - (size_t)n, "0\r\n\r\n");
    T_EQ(status_then_close(port, req, (size_t)n), 413);
  }
  /* 414: a request line over 256 bytes */
  {
    char req[600];
    int n = snprintf(req, sizeof(req), "GET /%0300d HTTP/1.1\r\nHost: x\r\n\r\n", 1);
    T_EQ(status_then_close(port, req, (size_t)n), 414);
    /* ... even before its end arrived */
    T_EQ(status_then_close(port, req, 280), 414);
  }
  /* 431: a head over 1024 bytes; more than 10 fields */
  {
    char req[2048];
    int n = snprintf(req, sizeof(req), "GET /hello HTTP/1.1\r\nHost: x\r\n"
                     "X-Big: %01100d\r\n\r\n", 1);
    T_EQ(status_then_close(port, req, (size_t)n), 431);
    n = snprintf(req, sizeof(req), "GET /hello HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 10; i++)
      n += snprintf(req + n, sizeof(req) - (size_t)n, "X-%d: %d\r\n", i, i);
    n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
    T_EQ(status_then_close(port, req, (size_t)n), 431);
  }
  /* 408: a head that does not complete within 300 ms */
  {
    uint64_t t0 = t_now_us(); /* before the connect: the timer starts after it */
    hc_t *c = hc_open(port);
    hc_sends(c, "GET /hello HTTP/1.1\r\nHo");
    hc_resp_t r;
    T_EQ(hc_read_resp(c, &r, 0), 0);
    uint64_t ms = (t_now_us() - t0) / 1000;
    T_EQ(r.status, 408);
    T_GE(ms, 290);
    T_CHECK(hc_eof(c));
    hc_resp_free(&r);
    hc_close(c);
  }
  ht_stop();
}

static void test_keepalive_pipelining(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  T_CHECK(mtev_http_rest_new_rule("GET", "/p/", "^(.*)$", h_pats));
  mtev_rest_mountpoint_t *sl = mtev_http_rest_new_rule("GET", "/", "^sleep/([0-9]+)$", h_sleep);
  mtev_rest_mountpoint_set_aco(sl, mtev_true);
  mtev_rest_mountpoint_t *pa = mtev_http_rest_new_rule("GET", "/pa/", "^(.*)$", h_pats);
  mtev_rest_mountpoint_set_aco(pa, mtev_true);
  /* keep-alive: many requests, one connection */
  hc_t *c = hc_open(port);
  for (int i = 0; i < 5; i++) {
    hc_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    hc_resp_t r;
    T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
    T_STR_EQ(r.body, "hello\n");
    T_CHECK(hc_header(&r, "Connection") == NULL);
    hc_resp_free(&r);
  }
  /* pipelining: answers in request order, however long each one takes */
  char req[8192];
  size_t n = 0;
  int N = 24;
  for (int i = 0; i < N; i++) {
    if (i % 3 == 0)
      n += (size_t)snprintf(req + n, sizeof(req) - n,
                            "GET /sleep/%d HTTP/1.1\r\nHost: x\r\n\r\n", (N - i) * 3);
    else if (i % 3 == 1)
      n += (size_t)snprintf(req + n, sizeof(req) - n,
                            "GET /p/%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
    else
      n += (size_t)snprintf(req + n, sizeof(req) - n,
                            "GET /pa/%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
  }
  hc_send(c, req, n);
  for (int i = 0; i < N; i++) {
    hc_resp_t r;
    T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
    char want[64];
    if (i % 3 == 0) snprintf(want, sizeof(want), "%d", (N - i) * 3);
    else snprintf(want, sizeof(want), "1:%d %s", i, i % 3 == 1 ? "classic" : "aco");
    T_CHECKF(!strcmp(r.body, want), "response %d: \"%s\", want \"%s\"", i, r.body, want);
    hc_resp_free(&r);
  }
  /* the same, one byte at a time */
  n = 0;
  for (int i = 0; i < 4; i++)
    n += (size_t)snprintf(req + n, sizeof(req) - n,
                          "GET /p/%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
  for (size_t i = 0; i < n; i++) hc_send(c, req + i, 1);
  for (int i = 0; i < 4; i++) {
    hc_resp_t r;
    T_EQ(hc_read_resp(c, &r, 0), 0);
    char want[64];
    snprintf(want, sizeof(want), "1:%d classic", i);
    T_STR_EQ(r.body, want);
    hc_resp_free(&r);
  }
  /* Connection: close ends it after the response */
  hc_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
              "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_STR_EQ(hc_header(&r, "Connection"), "close");
  hc_resp_free(&r);
  T_CHECK(hc_eof(c));
  hc_close(c);
  ht_stop();
}

static void test_http10(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^stream/([0-9]+)$", h_stream));
  /* closes after the response by default */
  hc_t *c = hc_open(port);
  hc_sends(c, "GET /hello HTTP/1.0\r\n\r\n");
  char line[128];
  T_EQ(hc_line(c, line, sizeof(line)), 0);
  T_CHECKF(!strncmp(line, "HTTP/1.0 200", 12), "%s", line);
  c->pos = 0; /* read it again as a response */
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_STR_EQ(r.body, "hello\n");
  T_STR_EQ(hc_header(&r, "Connection"), "close");
  T_CHECK(hc_eof(c));
  hc_resp_free(&r);
  hc_close(c);
  /* keep-alive on request */
  c = hc_open(port);
  for (int i = 0; i < 3; i++) {
    hc_sends(c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    T_EQ(hc_read_resp(c, &r, 0), 0);
    T_STR_EQ(hc_header(&r, "Connection"), "keep-alive");
    T_STR_EQ(hc_header(&r, "Content-Length"), "6");
    hc_resp_free(&r);
  }
  hc_close(c);
  /* no chunked in HTTP/1.0: a streamed body is delimited by the close */
  c = hc_open(port);
  hc_sends(c, "GET /stream/3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_CHECK(!hc_header(&r, "Content-Length") && !hc_header(&r, "Transfer-Encoding"));
  T_STR_EQ(r.body, "piece 0\npiece 1\npiece 2\n");
  hc_resp_free(&r);
  hc_close(c);
  /* and HTTP/1.1 streams it chunked */
  T_EQ(hc_oneshot(port, "GET /stream/3 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
  T_CHECK(r.chunked);
  T_STR_EQ(r.body, "piece 0\npiece 1\npiece 2\n");
  hc_resp_free(&r);
  ht_stop();
}

/* A body of n pseudo-random bytes. */
static char *make_body(size_t n, uint32_t seed) {
  char *b = malloc(n ? n : 1);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b[i] = (char)x;
  }
  return b;
}

/* POSTs body (chunked with the given chunk sizes, cycling, or with a
 * Content-Length when sizes is NULL), written `wr` bytes per send; checks
 * the handler saw the same size and hash. */
static void post_check(hc_t *c, const char *path, const char *body, size_t n,
                       const size_t *sizes, size_t nsizes, size_t wr,
                       const char *how) {
  char head[256];
  int hl;
  if (sizes)
    hl = snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: x\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n", path);
  else
    hl = snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: x\r\n"
                  "Content-Length: %zu\r\n\r\n", path, n);
  /* build the whole message, then send it wr bytes at a time */
  size_t cap = (size_t)hl + n + (n / 1 + 1) * 0 + 64 + (sizes ? (n + 1) * 0 + 16 * (n / 1 + 2) : 0);
  if (sizes) {
    size_t chunks = 0, left = n;
    for (size_t i = 0; left; i++) {
      size_t s = sizes[i % nsizes];
      left -= s < left ? s : left;
      chunks++;
    }
    cap = (size_t)hl + n + chunks * 24 + 64;
  }
  char *msg = malloc(cap);
  size_t m = (size_t)hl;
  memcpy(msg, head, (size_t)hl);
  if (sizes) {
    size_t off = 0;
    for (size_t i = 0; off < n; i++) {
      size_t s = sizes[i % nsizes];
      if (s > n - off) s = n - off;
      m += (size_t)sprintf(msg + m, "%zx\r\n", s);
      memcpy(msg + m, body + off, s);
      m += s;
      memcpy(msg + m, "\r\n", 2);
      m += 2;
      off += s;
    }
    m += (size_t)sprintf(msg + m, "0\r\n\r\n");
  } else {
    memcpy(msg + m, body, n);
    m += n;
  }
  for (size_t off = 0; off < m; off += wr)
    hc_send(c, msg + off, wr < m - off ? wr : m - off);
  free(msg);
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
  char want[128];
  if (!strcmp(how, "consume"))
    snprintf(want, sizeof(want), "%zu %016llx", n,
             (unsigned long long)hc_fnv(body, n));
  else
    snprintf(want, sizeof(want), "%zu %016llx %s", n,
             (unsigned long long)hc_fnv(body, n), how);
  T_CHECKF(!strcmp(r.body, want), "%s %s (%zu bytes, chunked %d, %zu per send):"
           " \"%s\", want \"%s\"", path, how, n, sizes != NULL, wr, r.body, want);
  hc_resp_free(&r);
}

static void test_uploads(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("POST", "/", "^upload$", h_upload));
  mtev_rest_mountpoint_t *a = mtev_http_rest_new_rule("POST", "/", "^upload_aco$", h_upload);
  mtev_rest_mountpoint_set_aco(a, mtev_true);
  mtev_rest_mountpoint_t *cs = mtev_http_rest_new_rule("POST", "/", "^consume$", h_consume);
  mtev_rest_mountpoint_set_aco(cs, mtev_true);
  const char *paths[][2] = {{"/upload", "classic"}, {"/upload_aco", "aco"},
                            {"/consume", "consume"}};
  size_t big = (size_t)t_scale(1 << 20, 8);
  char *body = make_body(big, 7);
  /* chunk sizes around the 8 KiB input buffer and the 16 KiB blocks */
  static const size_t sizes[] = {1, 2, 7, 8185, 8191, 8192, 8193, 16383,
                                 16384, 16385, 65536, 3, 100000};
  hc_t *c = hc_open(port);
  for (int p = 0; p < 3; p++) {
    const char *path = paths[p][0], *how = paths[p][1];
    post_check(c, path, body, 0, NULL, 0, 1, how);
    post_check(c, path, body, big, NULL, 0, 65536, how);
    post_check(c, path, body, big, NULL, 0, 8191, how);
    post_check(c, path, body, big, sizes, sizeof(sizes) / sizeof(sizes[0]),
               65536, how);
    post_check(c, path, body, big, sizes, sizeof(sizes) / sizeof(sizes[0]),
               8193, how);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++)
      post_check(c, path, body, big < 300000 ? big : 300000, &sizes[k], 1,
                 40000, how);
    /* byte by byte */
    static const size_t small[] = {1, 5, 300};
    post_check(c, path, body, (size_t)t_scale(2000, 4), small, 3, 1, how);
    post_check(c, path, body, (size_t)t_scale(2000, 4), NULL, 0, 1, how);
  }
  hc_close(c);
  /* Expect: 100-continue: the body is asked for */
  c = hc_open(port);
  hc_sends(c, "POST /upload_aco HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
              "Expect: 100-continue\r\n\r\n");
  hc_resp_t r;
  T_EQ(hc_read_resp2(c, &r, 0, 1), 0);
  T_EQ(r.status, 100);
  hc_resp_free(&r);
  hc_sends(c, "hello");
  T_EQ(hc_read_resp(c, &r, 0), 0);
  char want[64];
  snprintf(want, sizeof(want), "5 %016llx aco", (unsigned long long)hc_fnv("hello", 5));
  T_STR_EQ(r.body, want);
  hc_resp_free(&r);
  hc_close(c);
  free(body);
  ht_stop();
}

/* The seed's example: the aco handler's job sleeps 1 s and appends from
 * the job thread; meanwhile the loop answers other requests. */
static void test_seed_hello(void) {
  int port = ht_start(1);
  mtev_rest_mountpoint_t *rule = mtev_http_rest_new_rule("GET", "/", "^hello$", hello_handler);
  mtev_rest_mountpoint_set_aco(rule, mtev_true);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^other$", h_hello));
  hc_t *a = hc_open(port), *b = hc_open(port);
  uint64_t t0 = t_now_us();
  hc_sends(a, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  usleep(20000);
  uint64_t t1 = t_now_us();
  hc_sends(b, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_resp_t r;
  T_EQ(hc_read_resp(b, &r, 0), 0);
  uint64_t other_ms = (t_now_us() - t1) / 1000;
  T_EQ(r.status, 200);
  hc_resp_free(&r);
  /* before the hello job is done: its response has not come yet (a loop
   * that waited for the job would answer /other only after it; a bound
   * in milliseconds can fail on a slow machine) */
  struct pollfd pa = {.fd = a->fd, .events = POLLIN};
  T_CHECKF(poll(&pa, 1, 0) == 0, "/other was answered after /hello, in %llu ms",
           (unsigned long long)other_ms);
  T_EQ(hc_read_resp(a, &r, 0), 0);
  uint64_t hello_ms = (t_now_us() - t0) / 1000;
  T_EQ(r.status, 200);
  T_STR_EQ(hc_header(&r, "Content-Type"), "text/plain");
  T_STR_EQ(r.body, "Hello world.\n");
  T_GE(hello_ms, 1000);
  hc_resp_free(&r);
  hc_close(a);
  hc_close(b);
  ht_stop();
}

/* Clients that leave in the middle of a request or a response: the
 * connection and the coroutine serving it go away, nothing leaks.
 * GONE_MS bounds how long that may take: far above any scheduling delay
 * (asan at nice 19 beside CPU hogs), so only a server that keeps them
 * reaches it. */
#define GONE_MS 60000

static void test_vanish(void) {
  int port = ht_start(1);
  set_limits(8192, 65536, 100, 64u << 20, 10000, 60000);
  T_CHECK(mtev_http_rest_new_rule("POST", "/", "^upload$", h_upload));
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^big/([0-9]+)$", h_cbig));
  mtev_rest_mountpoint_t *m;
  T_CHECK((m = mtev_http_rest_new_rule("POST", "/", "^consume$", h_cconsume)));
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  T_CHECK((m = mtev_http_rest_new_rule("GET", "/", "^abig/([0-9]+)$", h_cbig)));
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  T_CHECK((m = mtev_http_rest_new_rule("GET", "/", "^csleep/([0-9]+)$", h_csleep)));
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  T_CHECK((m = mtev_http_rest_new_rule("GET", "/", "^cjob$", h_cjob)));
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  for (int reset = 0; reset < 2; reset++) {
    /* mid-request: half a body, classic and aco */
    const char *up[] = {"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
                        "POST /consume HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
                        "POST /consume HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "10000\r\n"};
    for (int i = 0; i < 3; i++) {
      hc_t *c = hc_open(port);
      hc_sends(c, up[i]);
      char junk[5000];
      memset(junk, 'j', sizeof(junk));
      hc_send(c, junk, sizeof(junk));
      usleep(20000);
      if (reset) hc_reset(c); else hc_close(c);
      ht_wait_quiet(GONE_MS);
      wait_live_zero(GONE_MS);
    }
    /* mid-head */
    hc_t *c = hc_open(port);
    hc_sends(c, "GET /big/10 HTTP/1.1\r\nHost:");
    usleep(20000);
    if (reset) hc_reset(c); else hc_close(c);
    ht_wait_quiet(GONE_MS);
    /* mid-response: 32 MiB, the client reads a little and leaves */
    const char *big[] = {"GET /big/33554432 HTTP/1.1\r\nHost: x\r\n\r\n",
                         "GET /abig/33554432 HTTP/1.1\r\nHost: x\r\n\r\n"};
    for (int i = 0; i < 2; i++) {
      c = hc_open(port);
      hc_sends(c, big[i]);
      /* the handler writes 32 MiB before the first byte goes: under asan
       * at nice 19 beside CPU hogs that took longer than the client's
       * 15 s receive timeout */
      struct pollfd pf = {.fd = c->fd, .events = POLLIN};
      T_EQ(poll(&pf, 1, GONE_MS), 1);
      char buf[4096];
      T_CHECK(recv(c->fd, buf, sizeof(buf), MSG_WAITALL) > 0);
      if (reset) hc_reset(c); else hc_close(c);
      ht_wait_quiet(GONE_MS);
      wait_live_zero(GONE_MS);
    }
    /* a coroutine asleep for 10 minutes: its sleep is cancelled when the
     * client goes */
    c = hc_open(port);
    hc_sends(c, "GET /csleep/600000 HTTP/1.1\r\nHost: x\r\n\r\n");
    /* asleep: wait for the coroutine to start (a fixed 50 ms can be too
     * short on a loaded machine under qemu or valgrind) */
    for (uint64_t end = t_now_us() + 30000000u; live_now() != 1; usleep(2000))
      if (t_now_us() > end) T_FAIL("the /csleep coroutine never started");
    uint64_t t0 = t_now_us();
    if (reset) hc_reset(c); else hc_close(c);
    wait_live_zero(GONE_MS);
    T_LE((t_now_us() - t0) / 1000, GONE_MS); /* far less than its 10 min */
    ht_wait_quiet(GONE_MS);
    /* a coroutine waiting for a job: it ends when the job is done */
    c = hc_open(port);
    hc_sends(c, "GET /cjob HTTP/1.1\r\nHost: x\r\n\r\n");
    usleep(50000);
    if (reset) hc_reset(c); else hc_close(c);
    wait_live_zero(GONE_MS);
    ht_wait_quiet(GONE_MS);
  }
  /* a half-closed client still gets its response */
  hc_t *c = hc_open(port);
  hc_sends(c, "GET /cjob HTTP/1.1\r\nHost: x\r\n\r\n");
  shutdown(c->fd, SHUT_WR);
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
  T_STR_EQ(r.body, "job done\n");
  T_STR_EQ(hc_header(&r, "Connection"), "close");
  T_CHECK(hc_eof(c));
  hc_resp_free(&r);
  hc_close(c);
  ht_stop();
  T_EQ(live_now(), 0);
}

/* inflates a gzip or zlib body */
static char *inflate_all(const char *in, size_t n, size_t *outn) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  T_EQ(inflateInit2(&z, 15 + 32), Z_OK);
  size_t cap = 1 << 20;
  char *out = malloc(cap);
  z.next_in = (Bytef *)(uintptr_t)in;
  z.avail_in = (uInt)n;
  z.next_out = (Bytef *)out;
  z.avail_out = (uInt)cap;
  int rc = inflate(&z, Z_FINISH);
  T_CHECKF(rc == Z_STREAM_END, "inflate: %d", rc);
  *outn = z.total_out;
  inflateEnd(&z);
  return out;
}

static void test_gzip(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("GET", "/gzip/", "^(gzip|deflate)/(flush|end)$", h_gzip));
  struct {
    const char *enc, *ae;
    int compressed;
  } cases[] = {
      {"gzip", "gzip", 1},
      {"gzip", "deflate, gzip;q=0.5", 1},
      {"deflate", "deflate", 1},
      {"gzip", "*", 1},
      {"gzip", "deflate", 0},
      {"gzip", "gzip;q=0", 0},
      {"gzip", "*, gzip;q=0.000", 0},
      {"deflate", NULL, 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    for (int fl = 0; fl < 2; fl++) {
      char req[256];
      snprintf(req, sizeof(req), "GET /gzip/%s/%s HTTP/1.1\r\nHost: x\r\n%s%s%s\r\n",
               cases[i].enc, fl ? "flush" : "end",
               cases[i].ae ? "Accept-Encoding: " : "", cases[i].ae ? cases[i].ae : "",
               cases[i].ae ? "\r\n" : "");
      hc_resp_t r;
      T_EQ(hc_oneshot(port, req, &r), 200);
      T_EQ(r.chunked, fl);
      const char *ce = hc_header(&r, "Content-Encoding");
      char *body = r.body;
      size_t n = r.blen;
      if (cases[i].compressed) {
        T_CHECKF(ce && !strcmp(ce, cases[i].enc), "%s: Content-Encoding %s", req, ce);
        T_STR_EQ(hc_header(&r, "Vary"), "Accept-Encoding");
        body = inflate_all(r.body, r.blen, &n);
        T_LE(r.blen * 4, n); /* it did compress */
      } else {
        T_CHECKF(ce == NULL, "%s: Content-Encoding %s", req, ce);
      }
      T_CHECK(n > 40);
      T_CHECK(!strncmp(body, "line 0 of a compressible body\n", 30));
      const char *tail = cases[i].compressed ? "compressed\n" : "plain\n";
      T_CHECKF(!memcmp(body + n - strlen(tail), tail, strlen(tail)), "%s: tail", req);
      if (body != r.body) free(body);
      hc_resp_free(&r);
    }
  }
  ht_stop();
}

static void test_request_api(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^info$", h_info));
  mtev_rest_mountpoint_t *m = mtev_http_rest_new_rule("GET", "/", "^ainfo$", h_info);
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  const char *paths[] = {"info", "ainfo"};
  for (int i = 0; i < 2; i++) {
    char req[256], want[512];
    hc_resp_t r;
    snprintf(req, sizeof(req), "GET /%s?a=1&b=hello%%20world+x&c&a=2 HTTP/1.1\r\n"
             "Host: x\r\nX-Test:   spaced value  \r\n\r\n", paths[i]);
    T_EQ(hc_oneshot(port, req, &r), 200);
    snprintf(want, sizeof(want), "method=GET uri=/%s proto=HTTP/1.1 "
             "qs=a=1&b=hello%%20world+x&c&a=2 a=1 b=hello world x c= "
             "x-test=spaced value n=4", paths[i]);
    T_STR_EQ(r.body, want);
    hc_resp_free(&r);
    snprintf(req, sizeof(req), "GET /%s HTTP/1.0\r\n\r\n", paths[i]);
    T_EQ(hc_oneshot(port, req, &r), 200);
    snprintf(want, sizeof(want), "method=GET uri=/%s proto=HTTP/1.0 qs= a=(null) "
             "b=(null) c=(null) x-test=(null) n=0", paths[i]);
    T_STR_EQ(r.body, want);
    hc_resp_free(&r);
  }
  ht_stop();
}

static void test_timeouts(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  set_limits(8192, 65536, 100, 1 << 20, 10000, 300);
  hc_t *c = hc_open(port);
  /* before the request: the idle timer starts when the answer has been
   * written, which a client kept off its CPU reads later */
  uint64_t t0 = t_now_us();
  hc_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  hc_resp_free(&r);
  T_CHECK(hc_eof(c)); /* the idle keep-alive connection is closed */
  uint64_t ms = (t_now_us() - t0) / 1000;
  T_GE(ms, 250);
  hc_close(c);
  /* a connection that never sends anything */
  t0 = t_now_us(); /* before the connect: the timer starts after it */
  c = hc_open(port);
  T_CHECK(hc_eof(c));
  T_GE((t_now_us() - t0) / 1000, 290);
  hc_close(c);
  ht_stop();
}

static void test_pool_auth_later(void) {
  int port = ht_start_type(1, 2, "http_rest_api");
  eventer_pool_t *other = eventer_pool("other");
  T_CHECK(other != NULL);
  mtev_rest_mountpoint_t *m = mtev_http_rest_new_rule("GET", "/", "^where$", h_where);
  mtev_rest_mountpoint_t *mo = mtev_http_rest_new_rule("GET", "/", "^other$", h_where);
  mtev_rest_mountpoint_set_eventer_pool(mo, other);
  mtev_rest_mountpoint_t *ma = mtev_http_rest_new_rule("GET", "/", "^other_aco$", h_where);
  mtev_rest_mountpoint_set_eventer_pool(ma, other);
  mtev_rest_mountpoint_set_aco(ma, mtev_true);
  (void)m;
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^later$", h_later));
  T_EQ(mtev_http_rest_register_auth("GET", "/", "^guarded$", h_hello, deny_marked), 0);
  mtev_rest_mountpoint_t *ga = mtev_http_rest_new_rule("GET", "/", "^guarded_aco$", h_hello);
  mtev_rest_mountpoint_set_aco(ga, mtev_true);
  mtev_rest_mountpoint_set_auth(ga, deny_marked);
  T_CHECK(mtev_http_rest_new_rule("GET", "/std/", "^([0-9]+)$", h_std));
  hc_t *c = hc_open(port);
  hc_resp_t r;
  hc_sends(c, "GET /where HTTP/1.1\r\nHost: x\r\n\r\n");
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_STR_EQ(r.body, "e:default/0 classic");
  hc_resp_free(&r);
  hc_sends(c, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /where HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /other_aco HTTP/1.1\r\nHost: x\r\n\r\n");
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_CHECKF(!strncmp(r.body, "e:other/", 8) && strstr(r.body, " classic"), "%s", r.body);
  hc_resp_free(&r);
  /* the connection stays on the pool it moved to */
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_CHECKF(!strncmp(r.body, "e:other/", 8), "%s", r.body);
  hc_resp_free(&r);
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_CHECKF(!strncmp(r.body, "e:other/", 8) && strstr(r.body, " aco"), "%s", r.body);
  hc_resp_free(&r);
  /* ended later from a timer callback, with a reference held */
  hc_sends(c, "GET /later HTTP/1.1\r\nHost: x\r\n\r\nGET /later HTTP/1.1\r\nHost: x\r\n\r\n");
  for (int i = 0; i < 2; i++) {
    T_EQ(hc_read_resp(c, &r, 0), 0);
    T_STR_EQ(r.body, "later\n");
    hc_resp_free(&r);
  }
  /* auth */
  hc_sends(c, "GET /guarded HTTP/1.1\r\nHost: x\r\n\r\n");
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
  hc_resp_free(&r);
  hc_sends(c, "GET /guarded HTTP/1.1\r\nHost: x\r\nX-Deny: 1\r\n\r\n");
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 403);
  hc_resp_free(&r);
  hc_sends(c, "GET /guarded_aco HTTP/1.1\r\nHost: x\r\nX-Deny: 1\r\n\r\n"
              "GET /guarded_aco HTTP/1.1\r\nHost: x\r\n\r\n");
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 403);
  hc_resp_free(&r);
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
  hc_resp_free(&r);
  /* handlers that forget to end, or ask again after ending */
  T_CHECK(mtev_http_rest_new_rule("GET", "/forget/", "^(status|none)$", h_forget));
  mtev_rest_mountpoint_set_aco(mtev_http_rest_new_rule("GET", "/aforget/", "^(status|none)$",
                                                       h_forget), mtev_true);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^again$", h_again));
  const char *forgets[] = {"/forget/status", "/forget/none", "/aforget/status", "/aforget/none"};
  for (int i = 0; i < 4; i++) {
    char req[96];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", forgets[i]);
    T_EQ(hc_oneshot(port, req, &r), i % 2 ? 500 : 200);
    if (i % 2 == 0) T_STR_EQ(r.body, "forgot to end\n");
    hc_resp_free(&r);
  }
  hc_sends(c, "GET /again HTTP/1.1\r\nHost: x\r\n\r\nGET /again HTTP/1.1\r\nHost: x\r\n\r\n");
  for (int i = 0; i < 2; i++) {
    T_EQ(hc_read_resp(c, &r, 0), 0);
    T_STR_EQ(r.body, "hello\n");
    hc_resp_free(&r);
  }
  T_EQ(__atomic_load_n(&g_again_calls, __ATOMIC_RELAXED), 2);
  /* libmtev's shorthands */
  struct {
    int code;
    const char *type, *line;
  } std[] = {{403, "text/x-denied", "HTTP/1.1 403 DENIED"},
             {404, "text/x-nf", "HTTP/1.1 404 NOT FOUND"},
             {500, "text/x-err", "HTTP/1.1 500 ERROR"}};
  for (int i = 0; i < 3; i++) {
    char req[64], line[128];
    snprintf(req, sizeof(req), "GET /std/%d HTTP/1.1\r\nHost: x\r\n\r\n", std[i].code);
    hc_t *c2 = hc_open(port);
    hc_sends(c2, req);
    T_EQ(hc_line(c2, line, sizeof(line)), 0);
    T_STR_EQ(line, std[i].line);
    c2->pos = 0; /* and again, as a whole response */
    T_EQ(hc_read_resp(c2, &r, 0), 0);
    hc_close(c2);
    T_EQ(r.status, std[i].code);
    T_STR_EQ(hc_header(&r, "Content-Type"), std[i].type);
    T_STR_EQ(hc_header(&r, "X-Twice"), "2");
    T_STR_EQ(hc_header(&r, "X-Added"), "3");
    T_CHECK(strstr(r.head, "Set-Cookie: a=1\nset-cookie: b=2; Path=/\n") != NULL);
    T_CHECK(strstr(r.head, "X-Added: 1") == NULL && strstr(r.head, "Injected") == NULL);
    T_CHECK(hc_header(&r, "X-Split") == NULL);
    T_STR_EQ(hc_header(&r, "X-Probe"), "ok");
    T_STR_EQ(hc_header(&r, "Content-Length"), "3");
    hc_resp_free(&r);
  }
  hc_close(c);
  ht_stop();
}

/* Big responses to a slow reader: a classic handler's bytes wait in the
 * queue, an aco handler's end waits until they are written. */
static void test_big_responses(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^big/([0-9]+)$", h_big));
  mtev_rest_mountpoint_t *m = mtev_http_rest_new_rule("GET", "/", "^abig/([0-9]+)$", h_cbig);
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  m = mtev_http_rest_new_rule("GET", "/", "^astream/([0-9]+)$", h_stream);
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  size_t n = (size_t)t_scale(8 << 20, 8);
  const char *paths[] = {"big", "abig"};
  for (int p = 0; p < 2; p++) {
    hc_t *c = hc_open(port);
    char req[128];
    /* two in a row: the second waits behind the first */
    snprintf(req, sizeof(req), "GET /%s/%zu HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /%s/%zu HTTP/1.1\r\nHost: x\r\n\r\n", paths[p], n, paths[p], n / 2);
    hc_sends(c, req);
    usleep(100000); /* let the server fill the socket */
    for (int k = 0; k < 2; k++) {
      hc_resp_t r;
      T_EQ(hc_read_resp(c, &r, 0), 0);
      size_t want = k ? n / 2 : n;
      T_EQ(r.blen, want);
      int bad = 0;
      for (size_t i = 0; i < want && !bad; i++) bad = r.body[i] != (char)('a' + i % 26);
      T_CHECK(!bad);
      hc_resp_free(&r);
    }
    hc_close(c);
  }
  /* short bodies, every length up to 64 and in pieces of 1, 3, 7 and all
   * at once, classic and aco, one keep-alive connection (the answer
   * written at once copies them without memcpy): byte for byte */
  m = mtev_http_rest_new_rule("GET", "/", "^apieces/([0-9]+)/([0-9]+)$", h_pieces);
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^pieces/([0-9]+)/([0-9]+)$", h_pieces));
  {
    hc_t *c = hc_open(port);
    const size_t ks[] = {1, 3, 7, 64};
    for (int a = 0; a < 2; a++)
      for (size_t n = 0; n <= 64; n++)
        for (size_t ki = 0; ki < sizeof(ks) / sizeof(ks[0]); ki++) {
          char req[96];
          snprintf(req, sizeof(req), "GET /%spieces/%zu/%zu HTTP/1.1\r\nHost: x\r\n\r\n",
                   a ? "a" : "", n, ks[ki]);
          hc_sends(c, req);
          hc_resp_t r;
          T_EQ(hc_read_resp(c, &r, 0), 0);
          T_EQ(r.status, 200);
          T_EQ(r.blen, n);
          int bad = 0;
          for (size_t i = 0; i < n && !bad; i++) bad = r.body[i] != (char)('a' + i % 26);
          T_CHECKF(!bad, "%s, %zu bytes in pieces of %zu: the body differs",
                   a ? "aco" : "classic", n, ks[ki]);
          hc_resp_free(&r);
        }
    hc_close(c);
  }
  hc_resp_t r;
  T_EQ(hc_oneshot(port, "GET /astream/2000 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
  T_CHECK(r.chunked);
  T_CHECK(!strncmp(r.body + r.blen - 11, "piece 1999\n", 11));
  hc_resp_free(&r);
  ht_stop();
  T_EQ(live_now(), 0);
}

/* ---- coroutines kept between aco requests ----------------------------------------- */

/* /co/<what>: answers how many times the coroutine serving it has been
 * resumed (1: a new one), and what it found: its argument (the session?),
 * its local slot (clear?); then sets the slot, and for "handle" takes a
 * handle of itself, kept in g_co_handle (the coroutine must then end with
 * its request). */
static int g_cls_key = -1;
static eventer_aco_co_t *g_co_handle;
static int h_co(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  T_EQ(npats, 1);
  aco_t *co = aco_get_co();
  T_CHECK(co != NULL);
  eventer_aco_stats_t st;
  T_EQ(eventer_aco_get_stats(NULL, &st), 0);
  int arg_is_ctx = eventer_aco_arg() == (void *)ctx;
  void *slot = aco_cls_get(co, g_cls_key);
  aco_cls_set(co, g_cls_key, (void *)co);
  if (!strcmp(pats[0], "handle")) {
    g_co_handle = eventer_aco_self();
    eventer_aco_co_ref(g_co_handle);
  }
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_appendf(ctx, "%d %d %s", (int)st.resumes, arg_is_ctx,
                             slot ? "dirty" : "clear");
  mtev_http_response_end(ctx);
  return 0;
}

/* -> the resumes the handler saw; checks it found a fresh coroutine */
static int co_get(hc_t *c, const char *what) {
  char req[128];
  snprintf(req, sizeof(req), "GET /co/%s HTTP/1.1\r\nHost: x\r\n\r\n", what);
  hc_sends(c, req);
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
  int resumes, arg_ok;
  char st[16];
  T_EQ(sscanf(r.body, "%d %d %15s", &resumes, &arg_ok, st), 3);
  T_CHECKF(arg_ok, "eventer_aco_arg() is not the session (%s)", r.body);
  T_CHECKF(!strcmp(st, "clear"), "a local slot was left set (%s)", r.body);
  hc_resp_free(&r);
  return resumes;
}

/* An aco request that never made a handle leaves its coroutine for the
 * next one of the loop, which finds it as a fresh one: the session as its
 * argument, its local slots clear.  One that made a handle ends with its
 * request (the handle says done); the next request gets a new one. */
static void test_co_reuse(void) {
  int port = ht_start(1);
  if (g_cls_key < 0) g_cls_key = aco_cls_key_create();
  T_CHECK(g_cls_key >= 0);
  mtev_rest_mountpoint_t *mp = mtev_http_rest_new_rule("GET", "/", "^co/(.*)$", h_co);
  T_CHECK(mp);
  mtev_rest_mountpoint_set_aco(mp, mtev_true);
  hc_t *c = hc_open(port);
  T_EQ(co_get(c, "plain"), 1); /* a new coroutine */
  T_EQ(co_get(c, "plain"), 2); /* the same, again */
  /* another connection's request is served by it too */
  hc_t *c2 = hc_open(port);
  T_EQ(co_get(c2, "handle"), 3);
  hc_close(c2);
  /* it made a handle: it ended with its request */
  T_CHECK(g_co_handle != NULL);
  uint64_t end = t_now_us() + 5000000u;
  while (!eventer_aco_co_done(g_co_handle)) {
    if (t_now_us() > end) T_FAIL("the coroutine that made a handle did not end");
    usleep(1000);
  }
  eventer_aco_co_release(g_co_handle);
  g_co_handle = NULL;
  T_EQ(co_get(c, "plain"), 1); /* a new one */
  hc_close(c);
  ht_stop();
}

/* /cp (no captures: the route a connection keeps): like /co/plain, plus
 * whether it runs as an aco request; "resumes aco arg slot". */
static int h_cp(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  T_EQ(npats, 0);
  aco_t *co = aco_get_co();
  T_CHECK(co != NULL);
  eventer_aco_stats_t st;
  T_EQ(eventer_aco_get_stats(NULL, &st), 0);
  void *slot = aco_cls_get(co, g_cls_key);
  aco_cls_set(co, g_cls_key, (void *)co);
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_appendf(ctx, "%d %d %d %s", (int)st.resumes,
                             mtev_http_session_aco(ctx) ? 1 : 0,
                             eventer_aco_arg() == (void *)ctx,
                             slot ? "dirty" : "clear");
  mtev_http_response_end(ctx);
  return 0;
}

/* Pipelined aco requests: the coroutine that served one takes the next
 * when it is already there and routes to a coroutine too (no switch back
 * to the loop and in again: its resume count stays); each handler still
 * finds a fresh coroutine.  Mixed with classic rules, a 404, a rule with
 * captures (routed on the loop), one that makes a handle (its coroutine
 * ends) and one that sleeps: every answer in order. */
static void test_co_pipelined(void) {
  int port = ht_start(1);
  if (g_cls_key < 0) g_cls_key = aco_cls_key_create();
  T_CHECK(g_cls_key >= 0);
  mtev_rest_mountpoint_t *mp = mtev_http_rest_new_rule("GET", "/", "^cp$", h_cp);
  T_CHECK(mp);
  mtev_rest_mountpoint_set_aco(mp, mtev_true);
  mp = mtev_http_rest_new_rule("GET", "/", "^co/(.*)$", h_co);
  T_CHECK(mp);
  mtev_rest_mountpoint_set_aco(mp, mtev_true);
  mp = mtev_http_rest_new_rule("GET", "/", "^sleep/([0-9]+)$", h_sleep);
  T_CHECK(mp);
  mtev_rest_mountpoint_set_aco(mp, mtev_true);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  hc_t *c = hc_open(port);
  /* the connection's route is /cp from here on */
  hc_sends(c, "GET /cp HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_STR_EQ(r.body + strcspn(r.body, " "), " 1 1 clear");
  hc_resp_free(&r);
  char batch[2048] = "";
  for (int i = 0; i < 8; i++) strcat(batch, "GET /cp HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_sends(c, batch);
  int first = -1;
  for (int i = 0; i < 8; i++) {
    T_EQ(hc_read_resp(c, &r, 0), 0);
    T_EQ(r.status, 200);
    int resumes;
    T_EQ(sscanf(r.body, "%d", &resumes), 1);
    T_STR_EQ(r.body + strcspn(r.body, " "), " 1 1 clear");
    if (first < 0) first = resumes;
    T_CHECKF(resumes == first, "request %d: resumed again (%d, then %d)", i,
             first, resumes);
    hc_resp_free(&r);
  }
  const char *mixed[] = {"/cp", "/hello", "/cp", "/nope", "/cp", "/co/handle",
                         "/cp", "/sleep/20", "/cp", "/co/plain", "/cp"};
  size_t nm = sizeof(mixed) / sizeof(mixed[0]);
  batch[0] = 0;
  for (size_t i = 0; i < nm; i++)
    snprintf(batch + strlen(batch), sizeof(batch) - strlen(batch),
             "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", mixed[i]);
  hc_sends(c, batch);
  for (size_t i = 0; i < nm; i++) {
    T_EQ(hc_read_resp(c, &r, 0), 0);
    if (!strcmp(mixed[i], "/cp")) {
      T_EQ(r.status, 200);
      T_STR_EQ(r.body + strcspn(r.body, " "), " 1 1 clear");
    } else if (!strcmp(mixed[i], "/hello")) {
      T_EQ(r.status, 200);
      T_STR_EQ(r.body, "hello\n");
    } else if (!strcmp(mixed[i], "/nope")) {
      T_EQ(r.status, 404);
    } else if (!strcmp(mixed[i], "/sleep/20")) {
      T_EQ(r.status, 200);
      T_STR_EQ(r.body, "20");
    } else {
      T_EQ(r.status, 200);
      T_CHECKF(strstr(r.body, " 1 clear") != NULL, "%s: %s", mixed[i], r.body);
    }
    hc_resp_free(&r);
  }
  if (g_co_handle) {
    uint64_t end = t_now_us() + 5000000u;
    while (!eventer_aco_co_done(g_co_handle)) {
      if (t_now_us() > end) T_FAIL("the coroutine that made a handle did not end");
      usleep(1000);
    }
    eventer_aco_co_release(g_co_handle);
    g_co_handle = NULL;
  }
  hc_close(c);
  ht_stop();
}

static void test_control_dispatch(void) {
  int port = ht_start_type(1, 0, "control_dispatch");
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  hc_t *c = hc_open(port);
  hc_sends(c, "GE");
  usleep(10000);
  hc_sends(c, "T /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_STR_EQ(r.body, "hello\n");
  hc_resp_free(&r);
  hc_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  T_EQ(hc_read_resp(c, &r, 0), 0);
  hc_resp_free(&r);
  hc_close(c);
  /* not HTTP: closed without a word */
  const char *others[] = {"HELLO there\r\n", "\x16\x03\x01\x02\x00", "get / HTTP/1.1\r\n\r\n"};
  for (int i = 0; i < 3; i++) {
    c = hc_open(port);
    hc_sends(c, others[i]);
    T_CHECK(hc_eof(c));
    T_EQ(c->len, 0);
    hc_close(c);
  }
  ht_stop();
}

/* ---- the listener's side of the contract ----------------------------------------- */

/* "1" when the connection does raw socket I/O (mtev_acceptor_closure_raw_io) */
static int h_rawio(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  eventer_t e = mtev_http_connection_event(mtev_http_session_connection(ctx));
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_appendf(ctx, "%d", mtev_acceptor_closure_raw_io(restc->ac, e) ? 1 : 0);
  mtev_http_response_end(ctx);
  return 0;
}

/* the session's I/O calls so far: "<raw reads> <opset reads> <sends>" */
static int h_io(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  ev_http_io_counts_t io;
  T_EQ(ev_http_session_io_counts(ctx, &io), 0);
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_appendf(ctx, "%llu %llu %llu", (unsigned long long)io.raw_reads,
                             (unsigned long long)io.opset_reads,
                             (unsigned long long)io.sends);
  mtev_http_response_end(ctx);
  return 0;
}
static void hc_io(hc_t *c, unsigned long long *raw, unsigned long long *opset,
                  unsigned long long *sends) {
  hc_sends(c, "GET /io HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
  T_EQ(sscanf(r.body, "%llu %llu %llu", raw, opset, sends), 3);
  hc_resp_free(&r);
}

static void test_listener_contract(void) {
  /* a listener with a service context of its own: the engine must not
   * take it for its per-connection state */
  static int service_ctx = 42;
  mtev_listener_opts_t o = {.type = "http_rest_api", .service_ctx = &service_ctx};
  int port = ht_start_opts(1, 0, o);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^rawio$", h_rawio));
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^io$", h_io));
  hc_t *c = hc_open(port);
  hc_resp_t r;
  for (int i = 0; i < 2; i++) {
    hc_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
    T_STR_EQ(r.body, "hello\n");
    hc_resp_free(&r);
  }
  /* the default classic listener adds nothing to the socket calls */
  hc_sends(c, "GET /rawio HTTP/1.1\r\nHost: x\r\n\r\n");
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_STR_EQ(r.body, "1");
  hc_resp_free(&r);
  /* ... so its reads are the engine's own: none goes through the opset */
  unsigned long long raw, opset, sends;
  hc_io(c, &raw, &opset, &sends);
  T_GE(raw, 4);
  T_EQ(opset, 0);
  T_GE(sends, 3);
  hc_close(c);

  /* the engine's first call comes at accept: a client that never sends a
   * byte meets the idle timeout */
  set_limits(8192, 65536, 100, 1000, 10000, 300);
  uint64_t t0 = t_now_us(); /* before the connect: the timer starts after it */
  c = hc_open(port);
  T_CHECK(hc_eof(c));
  T_GE((t_now_us() - t0) / 1000, 250);
  hc_close(c);
  set_limits(8192, 65536, 100, 1000, 10000, 60000);

  /* an answer to a request whose body is not read survives the close: the
   * engine half-closes and reads the rest (with a reset instead, the
   * client would lose the 413) */
  for (int i = 0; i < 5; i++) {
    c = hc_open(port);
    hc_sends(c, "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n");
    static char junk[256 * 1024];
    size_t sent = 0;
    while (sent < sizeof(junk)) {
      ssize_t w = send(c->fd, junk, sizeof(junk) - sent, MSG_NOSIGNAL);
      if (w <= 0) break;
      sent += (size_t)w;
    }
    T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 413);
    hc_resp_free(&r);
    hc_close(c);
  }

  /* a graceful stop: an idle keep-alive connection is shut down at the
   * deadline, its session goes (after the 413s' sessions, which drain
   * their clients' bytes until EOF, are gone) */
  ht_wait_quiet(t_slow() ? 60000 : 15000);
  c = hc_open(port);
  hc_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  T_EQ(hc_read_resp(c, &r, 0), 0);
  hc_resp_free(&r);
  T_EQ(mtev_http_session_count(), 1);
  struct timeval grace = {0, 200000}, tmo = {10, 0};
  t0 = t_now_us();
  T_EQ(mtev_listener_stop(ht_listener, &grace), 0);
  T_CHECK(hc_eof(c));
  T_GE((t_now_us() - t0) / 1000, 150);
  T_EQ(mtev_listener_wait(ht_listener, &tmo), 0);
  hc_close(c);
  ht_stop();

  /* with an idle_timeout the listener's opset marks activity: no raw I/O
   * (and everything still works through the opset) */
  mtev_hash_table cfg;
  mtev_hash_init(&cfg);
  mtev_hash_replace(&cfg, strdup("idle_timeout"), 12, strdup("60000"), free, free);
  o = (mtev_listener_opts_t){.type = "http_rest_api", .config = &cfg};
  port = ht_start_opts(1, 0, o);
  mtev_hash_destroy(&cfg, free, free);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^rawio$", h_rawio));
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^io$", h_io));
  T_EQ(hc_oneshot(port, "GET /rawio HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
  T_STR_EQ(r.body, "0");
  hc_resp_free(&r);
  /* every read and write goes through the opset (which marks activity) */
  c = hc_open(port);
  hc_sends(c, "GET /rawio HTTP/1.1\r\nHost: x\r\n\r\n");
  T_EQ(hc_read_resp(c, &r, 0), 0);
  hc_resp_free(&r);
  hc_io(c, &raw, &opset, &sends);
  T_EQ(raw, 0);
  T_GE(opset, 2);
  T_GE(sends, 1);
  hc_close(c);
  for (int i = 0; i < 3; i++) {
    c = hc_open(port);
    hc_sends(c, "GET /rawio HTTP/1.1\r\nHost: x\r\n\r\nGET /rawio HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int k = 0; k < 2; k++) {
      T_EQ(hc_read_resp(c, &r, 0), 0);
      T_STR_EQ(r.body, "0");
      hc_resp_free(&r);
    }
    hc_close(c);
  }
  ht_stop();
}

/* ---- the deferred write: one send for a pipelined batch -------------------------- */

/* aco: answers "y<n>" after a yield, so that the loop resumes its
 * coroutine apart from the drive that started it (as a Go rule's relay,
 * which parks until the Go handler answers) */
static int h_yield(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  T_EQ(npats, 1);
  T_EQ(eventer_aco_yield(), 0);
  if (restc->closure) { /* /ys/: then works 500 us on the loop */
    uint64_t t0 = t_now_us();
    while (t_now_us() - t0 < 500) {
    }
  }
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_appendf(ctx, "y%s", pats[0]);
  mtev_http_response_end(ctx);
  return 0;
}

/* aco: sleeps 0.5 s (2.5 s on a slow machine), then answers "slow" */
static int slow_done;
static int h_slow(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  struct timeval tv = {t_slow() ? 2 : 0, 500000};
  eventer_aco_sleep(&tv);
  __atomic_store_n(&slow_done, 1, __ATOMIC_RELEASE);
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "slow");
  mtev_http_response_end(ctx);
  return 0;
}

static void hc_expect_body(hc_t *c, const char *want) {
  hc_resp_t r;
  T_EQ(hc_read_resp(c, &r, 0), 0);
  T_EQ(r.status, 200);
  T_STR_EQ(r.body, want);
  hc_resp_free(&r);
}

/* A task that keeps the server's loop from ever running out of work
 * while busy_on is set: its passes then end by time. */
static int busy_on, busy_off;
static void busy_run(eventer_task_t *t, struct timeval *now) {
  (void)now;
  if (__atomic_load_n(&busy_on, __ATOMIC_ACQUIRE))
    T_EQ(eventer_task_post(t), 0);
  else
    __atomic_store_n(&busy_off, 1, __ATOMIC_RELEASE);
}

/* 16 pipelined /y/ requests on a new connection: in order, and the
 * number of sends they took */
static unsigned long long pipelined16(int port, const char *base) {
  hc_t *c = hc_open(port);
  char req[4096];
  size_t n = 0;
  for (int i = 0; i < 16; i++)
    n += (size_t)snprintf(req + n, sizeof(req) - n,
                          "GET %s%d HTTP/1.1\r\nHost: x\r\n\r\n", base, i);
  hc_send(c, req, n);
  for (int i = 0; i < 16; i++) {
    char want[16];
    snprintf(want, sizeof(want), "y%d", i);
    hc_expect_body(c, want);
  }
  unsigned long long raw, opset, sends;
  hc_io(c, &raw, &opset, &sends);
  hc_close(c);
  return sends;
}

/* The fewest sends 16 pipelined /y/ (or /ys/) responses took in up to
 * five tries, stopping at the first within `bound`.  How many sends a
 * batch takes depends on how the kernel and the machine schedule the
 * loop (a loop thread that loses its CPU for longer than a pass under
 * qemu, valgrind or a busy machine writes what it holds), so one slow
 * try proves nothing; a drive that writes each response on its own takes
 * 16 sends (8 or more with the 500 us handlers) in every try. */
static unsigned long long pipelined16_best(int port, const char *base, unsigned long long bound) {
  unsigned long long best = ~0ull;
  for (int t = 0; t < 5 && best > bound; t++) {
    unsigned long long sends = pipelined16(port, base);
    if (sends < best) best = sends;
  }
  return best;
}

/* a slow handler does not hold back the responses before it: they
 * arrive while it still sleeps; the ones after it wait, in order */
static void slow_in_the_middle(int port) {
  hc_t *c = hc_open(port);
  __atomic_store_n(&slow_done, 0, __ATOMIC_RELEASE);
  hc_sends(c, "GET /y/1 HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /y/2 HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /y/3 HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_expect_body(c, "y1");
  hc_expect_body(c, "hello\n");
  hc_expect_body(c, "y2");
  T_EQ(__atomic_load_n(&slow_done, __ATOMIC_ACQUIRE), 0);
  hc_expect_body(c, "slow");
  T_EQ(__atomic_load_n(&slow_done, __ATOMIC_ACQUIRE), 1);
  hc_expect_body(c, "y3");
  hc_expect_body(c, "hello\n");
  hc_close(c);
}

static void test_deferred_write(void) {
  int port = ht_start(1);
  mtev_rest_mountpoint_t *y = mtev_http_rest_new_rule("GET", "/y/", "^([0-9]+)$", h_yield);
  mtev_rest_mountpoint_set_aco(y, mtev_true);
  y = mtev_http_rest_new_rule_auth_closure("GET", "/ys/", "^([0-9]+)$", h_yield, NULL,
                                           NULL, NULL, "spin");
  T_CHECK(y != NULL);
  mtev_rest_mountpoint_set_aco(y, mtev_true);
  mtev_rest_mountpoint_t *sl = mtev_http_rest_new_rule("GET", "/", "^slow$", h_slow);
  mtev_rest_mountpoint_set_aco(sl, mtev_true);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^io$", h_io));
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));

  /* 16 pipelined requests whose coroutines each end in a later pass of
   * the loop than the drive that started them: the responses, in order,
   * leave in one send (they took one send each when the drive wrote what
   * it held whenever the current response was incomplete) */
  /* (one send, or a few when the machine takes the loop's CPU away for
   * longer than a pass) */
  for (int round = 0; round < 3; round++) {
    unsigned long long sends = pipelined16_best(port, "/y/", 4);
    T_CHECKF(sends <= 4, "16 pipelined responses took %llu sends (the best of 5 tries)", sends);
  }
  /* handlers that each work 500 us keep the loop from running out of
   * work for 8 ms: its passes end by time (1 ms), and the batch still
   * leaves together since every handler answers within a pass (with a
   * write at each pass's end, 8 sends or more) */
  unsigned long long sends = pipelined16_best(port, "/ys/", 4);
  T_CHECKF(sends <= 4, "16 pipelined responses, 500 us each, took %llu sends (the best of 5 tries)",
           sends);
  slow_in_the_middle(port);

  /* the same on a loop that never runs out of work (its passes end by
   * time): a batch whose handlers keep answering still leaves together;
   * a slow handler's earlier responses still do not wait for it */
  static eventer_task_t busy = {NULL, busy_run};
  __atomic_store_n(&busy_on, 1, __ATOMIC_RELEASE);
  __atomic_store_n(&busy_off, 0, __ATOMIC_RELEASE);
  T_EQ(eventer_task_post_to(eventer_pool_loop(eventer_pool_by_index(0), 0), &busy), 0);
  for (int round = 0; round < 3; round++) {
    sends = pipelined16_best(port, round ? "/y/" : "/ys/", 4);
    T_CHECKF(sends <= 4, "busy loop: 16 pipelined responses took %llu sends (the best of 5 tries)",
             sends);
  }
  slow_in_the_middle(port);
  __atomic_store_n(&busy_on, 0, __ATOMIC_RELEASE);
  while (!__atomic_load_n(&busy_off, __ATOMIC_ACQUIRE)) usleep(1000);

  /* a client that leaves with responses held: nothing leaks (ht_stop
   * checks), the loop goes on */
  hc_t *c = hc_open(port);
  hc_sends(c, "GET /y/4 HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /y/5 HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_expect_body(c, "y4");
  hc_reset(c);
  c = hc_open(port);
  hc_sends(c, "GET /y/6 HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_expect_body(c, "y6");
  hc_close(c);
  ht_stop();
}

/* ---- an end outside the drive that drives the session on at once ---------------- */

/* /ed/<n>: ends its response from a timer callback (outside the drive)
 * with ev_http_response_end_drive, and counts whether the next pipelined
 * request was dispatched before that call returned */
static int ed_dispatched, ed_chained, ed_unchained;
static int ed_reset; /* set while a client resets: an end may meet the reset */
static int ed_end_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)now;
  mtev_http_session_ctx *ctx = c;
  const char *uri = mtev_http_request_uri_str(mtev_http_session_request(ctx));
  if (!uri) { /* the client reset: the session is over */
    T_CHECK(!ev_http_response_end_drive(ctx));
    mtev_http_session_ref_dec(ctx);
    return 0;
  }
  int last = strcmp(uri, "/ed/15") == 0;
  mtev_http_response_append_str(ctx, uri + 4);
  int before = __atomic_load_n(&ed_dispatched, __ATOMIC_ACQUIRE);
  mtev_boolean ended = ev_http_response_end_drive(ctx);
  /* a write may find the reset before a read does: the end then fails */
  if (!__atomic_load_n(&ed_reset, __ATOMIC_ACQUIRE)) T_CHECK(ended);
  int after = __atomic_load_n(&ed_dispatched, __ATOMIC_ACQUIRE);
  if (!last) __atomic_add_fetch(after == before + 1 ? &ed_chained : &ed_unchained, 1,
                                __ATOMIC_ACQ_REL);
  mtev_http_session_ref_dec(ctx);
  return 0;
}
static int h_ed(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  __atomic_add_fetch(&ed_dispatched, 1, __ATOMIC_ACQ_REL);
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_session_ref_inc(ctx);
  eventer_add_in_s_us(ed_end_cb, ctx, 0, 0);
  return 0;
}

static void test_end_drive(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("GET", "/ed/", "^([0-9]+)$", h_ed));
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^io$", h_io));
  /* 16 pipelined requests, each ended outside the drive: each end
   * dispatches the next before it returns (not a task in the loop's next
   * iteration), the responses stay in order and still leave together */
  for (int round = 0; round < 3; round++) {
    /* the fewest sends in up to five tries (as pipelined16_best: a try
     * that the machine slowed proves nothing about the batch) */
    unsigned long long best = ~0ull;
    for (int t = 0; t < 5 && best > 4; t++) {
      __atomic_store_n(&ed_chained, 0, __ATOMIC_RELEASE);
      __atomic_store_n(&ed_unchained, 0, __ATOMIC_RELEASE);
      hc_t *c = hc_open(port);
      char req[4096];
      size_t n = 0;
      for (int i = 0; i < 16; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n,
                              "GET /ed/%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
      hc_send(c, req, n);
      for (int i = 0; i < 16; i++) {
        char want[16];
        snprintf(want, sizeof(want), "%d", i);
        hc_expect_body(c, want);
      }
      unsigned long long raw, opset, sends;
      hc_io(c, &raw, &opset, &sends);
      hc_close(c);
      if (sends < best) best = sends;
      T_EQ(__atomic_load_n(&ed_unchained, __ATOMIC_ACQUIRE), 0);
      T_EQ(__atomic_load_n(&ed_chained, __ATOMIC_ACQUIRE), 15);
    }
    T_CHECKF(best <= 4, "16 pipelined responses took %llu sends (the best of 5 tries)", best);
  }
  /* a client that resets while its batch is served: nothing leaks
   * (ht_stop checks) */
  __atomic_store_n(&ed_reset, 1, __ATOMIC_RELEASE);
  hc_t *c = hc_open(port);
  hc_sends(c, "GET /ed/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /ed/2 HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET /ed/3 HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_reset(c);
  c = hc_open(port);
  hc_sends(c, "GET /ed/4 HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_expect_body(c, "4");
  hc_close(c);
  ht_stop();
}

/* ---- Content-Type: the thread's known type and its ready-made head -------------- */

static char ct_buf[64] = "text/one";
/* /ct/<case>: the response's Content-Type set in the ways a handler can */
static int h_ct(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  T_EQ(npats, 1);
  const char *c = pats[0];
  if (!strcmp(c, "plain")) {
    mtev_http_response_ok(ctx, "text/plain");
  } else if (!strcmp(c, "long")) { /* 60 bytes: kept with the other lines */
    mtev_http_response_ok(ctx, "application/x-a-rather-long-media-type-name-for-the-test+json");
  } else if (!strcmp(c, "set")) { /* replaced by a header_set */
    T_CHECK(mtev_http_response_header_set(ctx, "X-A", "1"));
    mtev_http_response_ok(ctx, "text/a");
    T_CHECK(mtev_http_response_header_set(ctx, "content-TYPE", "text/b"));
  } else if (!strcmp(c, "setfirst")) { /* a header_set replaced by ok */
    T_CHECK(mtev_http_response_header_set(ctx, "Content-Type", "text/b"));
    T_CHECK(mtev_http_response_header_set(ctx, "X-A", "1"));
    mtev_http_response_ok(ctx, "text/a");
  } else if (!strcmp(c, "twice")) {
    mtev_http_response_ok(ctx, "text/a");
    mtev_http_response_ok(ctx, "text/c");
  } else if (!strcmp(c, "crlf")) { /* refused: the earlier one stays */
    mtev_http_response_ok(ctx, "text/a");
    mtev_http_response_ok(ctx, "text/x\r\nX-Split: 1");
  } else if (!strcmp(c, "empty")) {
    mtev_http_response_ok(ctx, "");
  } else if (!strcmp(c, "buf")) { /* the same string, other bytes each time */
    mtev_http_response_ok(ctx, ct_buf);
    snprintf(ct_buf, sizeof(ct_buf), "%s", !strcmp(ct_buf, "text/one") ? "text/two-longer"
                                                                        : "text/one");
  } else if (!strcmp(c, "nf")) {
    mtev_http_response_not_found(ctx, "text/plain");
  }
  mtev_http_response_append_str(ctx, c);
  mtev_http_response_end(ctx);
  return 0;
}

/* exactly one Content-Type line, and its value */
static void ct_expect(int port, const char *req, int status, const char *want) {
  hc_resp_t r;
  T_EQ(hc_oneshot(port, req, &r), status);
  int n = 0;
  for (char *p = r.head; (p = strcasestr(p, "content-type:")) != NULL; p++) n++;
  T_CHECKF(n == (want ? 1 : 0), "%s: %d Content-Type lines in\n%s", req, n, r.head);
  if (want) T_STR_EQ(hc_header(&r, "Content-Type"), want);
  T_CHECKF(strstr(r.head, "X-Split") == NULL, "%s", r.head);
  hc_resp_free(&r);
}

static void test_content_type(void) {
  int port = ht_start(1);
  T_CHECK(mtev_http_rest_new_rule("GET", "/ct/", "^(.*)$", h_ct));
  for (int round = 0; round < 2; round++) { /* learnt, then known */
    ct_expect(port, "GET /ct/plain HTTP/1.1\r\nHost: x\r\n\r\n", 200, "text/plain");
    ct_expect(port, "GET /ct/plain HTTP/1.0\r\n\r\n", 200, "text/plain");
    ct_expect(port, "GET /ct/nf HTTP/1.1\r\nHost: x\r\n\r\n", 404, "text/plain");
    ct_expect(port, "GET /ct/long HTTP/1.1\r\nHost: x\r\n\r\n", 200,
              "application/x-a-rather-long-media-type-name-for-the-test+json");
    ct_expect(port, "GET /ct/set HTTP/1.1\r\nHost: x\r\n\r\n", 200, "text/b");
    ct_expect(port, "GET /ct/setfirst HTTP/1.1\r\nHost: x\r\n\r\n", 200, "text/a");
    ct_expect(port, "GET /ct/twice HTTP/1.1\r\nHost: x\r\n\r\n", 200, "text/c");
    ct_expect(port, "GET /ct/crlf HTTP/1.1\r\nHost: x\r\n\r\n", 200, "text/a");
    ct_expect(port, "GET /ct/empty HTTP/1.1\r\nHost: x\r\n\r\n", 200, "");
    ct_expect(port, "GET /ct/buf HTTP/1.1\r\nHost: x\r\n\r\n", 200, "text/one");
    ct_expect(port, "GET /ct/buf HTTP/1.1\r\nHost: x\r\n\r\n", 200, "text/two-longer");
    ct_expect(port, "GET /ct/buf HTTP/1.1\r\nHost: x\r\n\r\n", 200, "text/one");
    ct_expect(port, "GET /ct/buf HTTP/1.1\r\nHost: x\r\n\r\n", 200, "text/two-longer");
  }
  /* The bytes of the common answer (200, the thread's Content-Type, a
   * short body), built all at once, are those of the general path: a HEAD
   * request's head (built the general way) is the same, and both read
   * "status line, Date, Content-Type, Content-Length". */
  hc_t *c = hc_open(port);
  char heads[3][512];
  for (int i = 0; i < 3; i++) {
    hc_sends(c, i == 1 ? "HEAD /ct/plain HTTP/1.1\r\nHost: x\r\n\r\n"
                       : "GET /ct/plain HTTP/1.1\r\nHost: x\r\n\r\n");
    char *e;
    while ((e = memmem(c->buf + c->pos, c->len - c->pos, "\r\n\r\n", 4)) == NULL)
      T_CHECK(hc_fill(c) > 0);
    size_t hl = (size_t)(e + 4 - (c->buf + c->pos));
    T_CHECK(hl < sizeof(heads[i]));
    memcpy(heads[i], c->buf + c->pos, hl);
    heads[i][hl] = 0;
    c->pos += hl;
    if (i != 1) { /* the body: "plain" */
      while (c->len - c->pos < 5) T_CHECK(hc_fill(c) > 0);
      T_CHECK(!memcmp(c->buf + c->pos, "plain", 5));
      c->pos += 5;
    }
    char *date = strstr(heads[i], "\r\nDate: ");
    T_CHECK(date != NULL);
    memset(date + 8, 'D', 29); /* "Sun, 06 Dec 2026 14:20:00 GMT" */
    T_STR_EQ(heads[i], "HTTP/1.1 200 OK\r\nDate: DDDDDDDDDDDDDDDDDDDDDDDDDDDDD\r\n"
                       "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n");
  }
  hc_close(c);

  /* the other lines come after it, once each */
  hc_resp_t r;
  T_EQ(hc_oneshot(port, "GET /ct/set HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
  T_STR_EQ(hc_header(&r, "X-A"), "1");
  T_STR_EQ(r.body, "set");
  hc_resp_free(&r);
  ht_stop();
}

/* ---- the ACL ----------------------------------------------------------------------- */

static void test_acl(void) {
  char err[512];
  mtev_conf_init(NULL);
  T_EQ(mtev_conf_load_string(
           "<app><rest>\n"
           "  <acl type=\"deny\" url=\"^/admin/\">\n"
           "    <rule type=\"allow\" ip=\"10.0.0.0/8, 127.0.0.0/8\" method=\"^GET$\"/>\n"
           "  </acl>\n"
           "  <acl type=\"deny\" url=\"^/private$\"/>\n"
           "  <acl type=\"deny\" ip=\"192.0.2.0/24\"/>\n"
           "  <acl type=\"allow\"/>\n"
           "</rest></app>\n",
           "acl.conf", err, sizeof(err)),
       0);
  int port = ht_start(1); /* mtev_http_rest_init reads the ACL */
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^hello$", h_hello));
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^private$", h_hello));
  T_CHECK(mtev_http_rest_new_rule("GET", "/admin/", "^x$", h_hello));
  T_CHECK(mtev_http_rest_new_rule("POST", "/admin/", "^x$", h_hello));
  struct {
    const char *req;
    int status;
  } cases[] = {
      {"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200},
      {"GET /admin/x HTTP/1.1\r\nHost: x\r\n\r\n", 200},  /* the rule allows */
      {"POST /admin/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 403},
      {"GET /private HTTP/1.1\r\nHost: x\r\n\r\n", 403},
      {"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404}, /* routing first */
  };
  hc_resp_t r;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    T_CHECKF(hc_oneshot(port, cases[i].req, &r) == cases[i].status, "%s: %d",
             cases[i].req, r.status);
    hc_resp_free(&r);
  }

  /* a configuration whose ACL does not cover us: denied */
  T_EQ(mtev_conf_load_string("<app><rest><acl type=\"allow\" ip=\"192.0.2.1, ::1\"/>"
                             "</rest></app>", "acl2.conf", err, sizeof(err)), 0);
  T_EQ(mtev_http_rest_load_rules_ex(err, sizeof(err)), 0);
  T_EQ(hc_oneshot(port, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 403);
  hc_resp_free(&r);

  /* bad ACLs are refused with file and line; the ACL in effect stays */
  const char *bad[][2] = {
      {"<app>\n<rest><acl type=\"allow\" url=\"^(x\"/></rest></app>", "acl3.conf:2"},
      {"<app>\n<rest>\n<acl type=\"allow\" ip=\"300.1.1.1\"/></rest></app>", "acl3.conf:3"},
      {"<app>\n<rest><acl type=\"allow\"><rule ip=\"10.0.0.0/33\"/></acl></rest></app>", "acl3.conf:2"},
      {"<app>\n<rest><acl type=\"maybe\"/></rest></app>", "acl3.conf:2"},
      {"<app>\n<rest><acl ip=\" , \"/></rest></app>", "acl3.conf:2"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    T_EQ(mtev_conf_load_string(bad[i][0], "acl3.conf", err, sizeof(err)), 0);
    errno = 0;
    T_EQ(mtev_http_rest_load_rules_ex(err, sizeof(err)), -1);
    T_EQ(errno, EINVAL);
    T_CHECKF(strstr(err, bad[i][1]) != NULL, "\"%s\" does not name %s", err, bad[i][1]);
    T_EQ(hc_oneshot(port, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 403);
    hc_resp_free(&r);
  }

  /* no ACL configured: everything is allowed again */
  T_EQ(mtev_conf_load_string("<app/>", "none.conf", err, sizeof(err)), 0);
  T_EQ(mtev_http_rest_load_rules_ex(err, sizeof(err)), 0);
  T_EQ(hc_oneshot(port, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
  hc_resp_free(&r);
  ht_stop();
  mtev_conf_fini();
}

T_MAIN({"basic", test_basic}, {"routing", test_routing},
       {"vanish", test_vanish}, {"gzip", test_gzip},
       {"request_api", test_request_api}, {"timeouts", test_timeouts},
       {"pool_auth_later", test_pool_auth_later},
       {"control_dispatch", test_control_dispatch},
       {"big_responses", test_big_responses},
       {"statuses", test_statuses},
       {"keepalive_pipelining", test_keepalive_pipelining},
       {"http10", test_http10}, {"uploads", test_uploads},
       {"seed_hello", test_seed_hello}, {"co_reuse", test_co_reuse},
       {"co_pipelined", test_co_pipelined},
       {"listener_contract", test_listener_contract},
       {"deferred_write", test_deferred_write},
       {"content_type", test_content_type}, {"acl", test_acl},
       {"end_drive", test_end_drive})
