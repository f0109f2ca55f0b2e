/*
 * rest_hello.c - the seed's "Using aco with REST" example.
 *
 * The part between the "seed" markers is the seed document's code token
 * for token (only re-indented), with these exceptions, all marked:
 *
 *  - where the seed's child_main says "..." before eventer_init(), it
 *    loads the configuration, as libmtev's mtev_main does before it calls
 *    child_main:
 *
 *        mtev_conf_init(APPNAME);
 *        if (mtev_conf_load(conf_path) != 0) exit(2);
 *
 *    The configuration (examples/c/rest_hello.conf, or the file named on
 *    the command line) has an http_rest_api listener, which
 *    mtev_listener_init("myapp") starts;
 *  - where it says "..." after mtev_listener_init(), it registers one more
 *    rule, GET /fast (a classic handler that answers at once), so a check
 *    can show that the loop serves other requests while a hello waits for
 *    its job;
 *  - the seed's handler does not use npats and pats and its child_main
 *    has no return statement: the warnings for those are off for the
 *    seed's code only, and main does not use child_main's value.
 *
 * GET /hello runs hello_handler in a coroutine of its own (the rule is
 * aco): it starts a 200 text/plain response, waits while a job thread
 * sleeps 1 s and appends "Hello world.\n", then ends the response.  The
 * loop serves everything else meanwhile.
 *
 *   rest_hello [CONFIG]     runs until killed
 *
 *   cc rest_hello.c $(pkg-config --cflags --libs --static acoeventer)
 */
#include <acoeventer.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define APPNAME "myapp"

static const char *conf_path = "examples/c/rest_hello.conf";

static int fast_handler(mtev_http_rest_closure_t *restc, int npats, char **pats);

/* ---- seed: "Using aco with REST" ---------------------------------------------- */

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* npats, pats */
#pragma GCC diagnostic ignored "-Wreturn-type"      /* child_main */

static void asynch_hello(void *closure) {
  mtev_http_rest_closure_t *restc = closure;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  sleep(1);
  mtev_http_response_append_str(ctx, "Hello world.\n");
}
static int
hello_handler(mtev_http_rest_closure_t *restc,
              int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  eventer_aco_simple_asynch(asynch_hello, restc);
  mtev_http_response_end(ctx);
  return 0;
}
static int child_main(void) {
  /* "...": the configuration, as mtev_main loads it (see the top) */
  mtev_conf_init(APPNAME);
  if (mtev_conf_load(conf_path) != 0) exit(2);
  eventer_init();
  mtev_http_rest_init();
  mtev_listener_init("myapp");
  /* "...": one more rule, answered at once (see the top) */
  mtev_http_rest_register("GET", "/", "^fast$", fast_handler);
  mtev_rest_mountpoint_t *rule = mtev_http_rest_new_rule(
    "GET", "/", "^hello$", hello_handler
  );
  mtev_rest_mountpoint_set_aco(rule, mtev_true);
  eventer_loop();
}

#pragma GCC diagnostic pop

/* ---- end of the seed's code ------------------------------------------------ */

static int fast_handler(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "fast\n");
  mtev_http_response_end(ctx);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1) conf_path = argv[1];
  child_main();
  return 0;
}
