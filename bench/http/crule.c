/*
 * crule.c - the HTTP engine serving a C REST rule, for the benchmarks:
 * GET /hello answers "Hello world.\n" (text/plain) from an aco rule, the
 * seed's handler without its one-second job; GET /classic the same from
 * a classic rule.  One loop, an http_rest_api listener on ADDR
 * (host:port; default 127.0.0.1:0, whose port it prints as "port N").
 * Serves until killed.
 *
 *   crule [host:port]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acoeventer.h"

static int hello(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "Hello world.\n");
  mtev_http_response_end(ctx);
  return 0;
}

int main(int argc, char **argv) {
  char host[64] = "127.0.0.1";
  int port = 0;
  if (argc > 1) {
    const char *colon = strrchr(argv[1], ':');
    if (!colon || (size_t)(colon - argv[1]) >= sizeof(host)) {
      fprintf(stderr, "usage: crule [host:port]\n");
      return 2;
    }
    memcpy(host, argv[1], (size_t)(colon - argv[1]));
    host[colon - argv[1]] = 0;
    port = atoi(colon + 1);
  }
  signal(SIGPIPE, SIG_IGN);
  eventer_impl_propset("concurrency", "1");
  if (eventer_init() != 0) return 1;
  mtev_http_rest_init();
  mtev_rest_mountpoint_t *rule = mtev_http_rest_new_rule("GET", "/", "^hello$", hello);
  mtev_rest_mountpoint_set_aco(rule, mtev_true);
  mtev_http_rest_register("GET", "/", "^classic$", hello);
  /* one loop: accept on it too (no accept thread); a backlog for the
   * benchmark's thousands of connections */
  char err[256];
  mtev_listener_opts_t o = {.address = host, .port = port, .type = "http_rest_api",
                            .backlog = 4096, .accept_in_loop = mtev_true};
  mtev_listener_t *l = mtev_listener_create(&o, err, sizeof(err));
  if (!l) {
    fprintf(stderr, "crule: %s\n", err);
    return 1;
  }
  printf("port %d\n", mtev_listener_get_port(l));
  fflush(stdout);
  eventer_loop();
  return 0;
}
