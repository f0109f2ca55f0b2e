/*
 * crule.c - the HTTP engine serving a C REST rule, for the benchmarks:
 * GET /hello answers "Hello world.\n" (text/plain) from an aco rule, the
 * seed's handler without its one-second job; GET /classic the same from
 * a classic rule.  One loop.  Prints "port N" and serves until killed.
 *
 * Connections come from the HTTP tests' listener stand-in
 * (csrc/http/tests/listener_shim.c) until the listener is in the library.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "acoeventer.h"
#include "listener_shim.h"

static int hello(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "Hello world.\n");
  mtev_http_response_end(ctx);
  return 0;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  eventer_impl_propset("concurrency", "1");
  if (eventer_init() != 0) return 1;
  mtev_http_rest_init();
  mtev_rest_mountpoint_t *rule = mtev_http_rest_new_rule("GET", "/", "^hello$", hello);
  mtev_rest_mountpoint_set_aco(rule, mtev_true);
  mtev_http_rest_register("GET", "/", "^classic$", hello);
  int port = shim_listen("http_rest_api");
  if (port < 0) return 1;
  printf("port %d\n", port);
  fflush(stdout);
  eventer_loop();
  return 0;
}
