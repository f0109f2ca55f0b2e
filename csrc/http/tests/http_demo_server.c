/*
 * http_demo_server.c - an HTTP server for curl_test.sh: the engine with a
 * few REST rules, on an http_rest_api listener.  Prints "port N" when it listens
 * and stops (cleanly, freeing everything) when its stdin closes.  With
 * arguments "tls CERT KEY" the listener is HTTPS (ssl on, the <sslconfig>
 * keys certificate_file and key_file; ALPN http/1.1).
 *
 *   GET  /hello       the seed's example: aco, a job sleeps 1 s and
 *                     appends "Hello world.\n"
 *   GET  /fast        "fast\n" (classic)
 *   POST /upload      aco: "<size> <crc32 hex>" of the body
 *   PUT  /upload      classic: the same
 *   GET  /gzip        a compressible body, gzip/deflate when accepted
 *   GET  /stream/<n>  n flushed lines (chunked)
 *   GET  /q           "a=<value of a>"
 *   GET  /cut/<n>     n flushed lines, then mtev_http_response_abort (aco;
 *                     n 0: the abort before anything was written)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "eventer.h"
#include "eventer_aco.h"
#include "mtev_hash.h"
#include "mtev_listener.h"
#include "mtev_http.h"
#include "mtev_rest.h"

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

static int fast(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_response_ok(restc->http_ctx, "text/plain");
  mtev_http_response_append_str(restc->http_ctx, "fast\n");
  mtev_http_response_end(restc->http_ctx);
  return 0;
}

static int upload(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  int mask = 0;
  if (!mtev_rest_complete_upload(restc, &mask)) return mask;
  int64_t n = 0;
  const void *d = mtev_http_request_get_upload(
      mtev_http_session_request(restc->http_ctx), &n);
  uLong crc = crc32(0L, Z_NULL, 0);
  const Bytef *p = d;
  for (int64_t off = 0; off < n;) {
    uInt k = n - off > (1 << 30) ? (1u << 30) : (uInt)(n - off);
    crc = crc32(crc, p + off, k);
    off += k;
  }
  mtev_http_response_ok(restc->http_ctx, "text/plain");
  mtev_http_response_appendf(restc->http_ctx, "%lld %08lx\n", (long long)n, crc);
  mtev_http_response_end(restc->http_ctx);
  return 0;
}

static int gz(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  if (!mtev_http_response_option_set(ctx, MTEV_HTTP_GZIP))
    mtev_http_response_option_set(ctx, MTEV_HTTP_DEFLATE);
  for (int i = 0; i < 1000; i++) mtev_http_response_appendf(ctx, "line %d\n", i);
  mtev_http_response_end(ctx);
  return 0;
}

static int stream(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  int n = atoi(pats[0]);
  for (int i = 0; i < n; i++) {
    mtev_http_response_appendf(ctx, "piece %d\n", i);
    mtev_http_response_flush(ctx, mtev_false);
  }
  mtev_http_response_end(ctx);
  return 0;
}

static int cut(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  int n = atoi(pats[0]);
  for (int i = 0; i < n; i++) {
    mtev_http_response_appendf(ctx, "piece %d\n", i);
    mtev_http_response_flush(ctx, mtev_false);
  }
  mtev_http_response_append_str(ctx, "never sent\n");
  mtev_http_response_abort(ctx);
  return 0;
}

static int q(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  const char *a = mtev_http_request_querystring(
      mtev_http_session_request(restc->http_ctx), "a");
  mtev_http_response_ok(restc->http_ctx, "text/plain");
  mtev_http_response_appendf(restc->http_ctx, "a=%s\n", a ? a : "");
  mtev_http_response_end(restc->http_ctx);
  return 0;
}

static void *watch_stdin(void *arg) {
  (void)arg;
  char buf[64];
  while (read(0, buf, sizeof(buf)) > 0) {
  }
  struct timeval grace = {2, 0}, timeout = {10, 0};
  mtev_listener_shutdown(&grace, &timeout);
  eventer_shutdown();
  return NULL;
}

int main(int argc, char **argv) {
  int tls = argc == 4 && !strcmp(argv[1], "tls");
  if (argc != 1 && !tls) {
    fprintf(stderr, "usage: %s [tls CERT KEY]\n", argv[0]);
    return 2;
  }
  eventer_impl_propset("concurrency", "2");
  if (eventer_init() != 0) return 1;
  mtev_http_rest_init();
  mtev_rest_mountpoint_t *rule =
      mtev_http_rest_new_rule("GET", "/", "^hello$", hello_handler);
  mtev_rest_mountpoint_set_aco(rule, mtev_true);
  mtev_http_rest_register("GET", "/", "^fast$", fast);
  mtev_rest_mountpoint_set_aco(mtev_http_rest_new_rule("POST", "/", "^upload$", upload),
                               mtev_true);
  mtev_http_rest_register("PUT", "/", "^upload$", upload);
  mtev_http_rest_register("GET", "/", "^gzip$", gz);
  mtev_http_rest_register("GET", "/", "^stream/([0-9]+)$", stream);
  mtev_http_rest_register("GET", "/", "^q$", q);
  mtev_rest_mountpoint_set_aco(mtev_http_rest_new_rule("GET", "/", "^cut/([0-9]+)$", cut),
                               mtev_true);
  char err[256];
  mtev_listener_opts_t o = {.address = "127.0.0.1", .type = "http_rest_api",
                            .backlog = 128};
  mtev_hash_table ssl;
  mtev_hash_init(&ssl);
  if (tls) {
    mtev_hash_store(&ssl, "certificate_file", (int)strlen("certificate_file"), argv[2]);
    mtev_hash_store(&ssl, "key_file", (int)strlen("key_file"), argv[3]);
    o.ssl = mtev_true;
    o.sslconfig = &ssl;
  }
  mtev_listener_t *l = mtev_listener_create(&o, err, sizeof(err));
  mtev_hash_destroy(&ssl, NULL, NULL);
  if (!l) {
    fprintf(stderr, "listener: %s\n", err);
    return 1;
  }
  int port = mtev_listener_get_port(l);
  printf("port %d\n", port);
  fflush(stdout);
  pthread_t th;
  pthread_create(&th, NULL, watch_stdin, NULL);
  eventer_loop_return();
  pthread_join(th, NULL);
  mtev_listener_release(l);
  eventer_fini();
  mtev_http_rest_fini();
  return 0;
}
