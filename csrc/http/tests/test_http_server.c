/*
 * test_http_server.c - the HTTP engine and REST routing end to end: a
 * server on its own loop threads, a client on the test's thread.
 */
#include <signal.h>
#include <zlib.h>

#include "http_test.h"

/* ---- handlers ----------------------------------------------------------------- */

__attribute__((unused)) static int h_hello(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "hello\n");
  mtev_http_response_end(ctx);
  return 0;
}

/* the captures, joined with '|', and how the request was served */
__attribute__((unused)) static int h_pats(mtev_http_rest_closure_t *restc, int npats, char **pats) {
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
__attribute__((unused)) static int h_sleep(mtev_http_rest_closure_t *restc, int npats, char **pats) {
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
__attribute__((unused)) static int h_info(mtev_http_rest_closure_t *restc, int npats, char **pats) {
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
__attribute__((unused)) static int h_upload(mtev_http_rest_closure_t *restc, int npats, char **pats) {
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
__attribute__((unused)) static int h_consume(mtev_http_rest_closure_t *restc, int npats, char **pats) {
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
__attribute__((unused)) static int h_stream(mtev_http_rest_closure_t *restc, int npats, char **pats) {
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
__attribute__((unused)) static int h_big(mtev_http_rest_closure_t *restc, int npats, char **pats) {
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

/* /gzip/<gzip|deflate>: compressed when allowed */
__attribute__((unused)) static int h_gzip(mtev_http_rest_closure_t *restc, int npats, char **pats) {
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

/* ---- the seed's example: aco rule, a job appends, end -------------------------- */

static void asynch_hello(void *closure) {
  mtev_http_rest_closure_t *restc = closure;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  sleep(1);
  mtev_http_response_append_str(ctx, "Hello world.\n");
}

__attribute__((unused)) static int hello_handler(mtev_http_rest_closure_t *restc, int npats,
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
  ht_stop();
}

T_MAIN({"basic", test_basic}, {"routing", test_routing})
