/*
 * aco_listener.c - the seed's "Making an aco listener" example.
 *
 * The part between the "seed" markers is the seed document's code token
 * for token (only re-indented), with one exception, marked: where the
 * seed's child_main says "...", it loads the configuration, as libmtev's
 * mtev_main does before it calls child_main:
 *
 *     mtev_conf_init(APPNAME);
 *     if (mtev_conf_load(conf_path) != 0) exit(2);
 *
 * The configuration (examples/c/aco_listener.conf, or the file named on
 * the command line) says where to listen and that connections go to the
 * aco function registered as "listen_to_me".  Each connection runs
 * listen_to_me in a coroutine of its own: every line is answered
 * "thanks!", "quit" gets "quitter!" and a close, 10 s without input gets
 * "bye!" and a close.  (The seed writes 9 bytes for "thanks!\n": its NUL
 * goes out too.)
 *
 *   aco_listener [CONFIG]     runs until killed
 *
 *   cc aco_listener.c $(pkg-config --cflags --libs --static acoeventer)
 */
#include <acoeventer.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define APPNAME "aco_listener"

static const char *conf_path = "examples/c/aco_listener.conf";

/* ---- seed: "Making an aco listener" ----------------------------------------- */

static void listen_to_me(void) {
  eventer_aco_t e = eventer_aco_arg();
  struct timeval tensec = { .tv_sec = 10 };
  while(1) {
    int rv;
    char buff[128];
    rv = eventer_aco_read(e, buff, sizeof(buff), &tensec);
    if(rv == -1) {
      if(errno == ETIME) {
        eventer_aco_write(e, "bye!\n", 5, NULL);
      }
      break;
    }
    if(rv >=4 && !strncasecmp(buff, "quit", 4)) {
      eventer_aco_write(e, "quitter!\n", 9, NULL);
      break;
    }
    if(eventer_aco_write(e, "thanks!\n", 9, NULL) < 0)
      break;
  }
  eventer_aco_close(e);
  eventer_aco_free(e);
  // our caller aco_exit()s, but it won't hurt anything if we do it first
  // aco_exit();
}
static int child_main(void) {
  /* "...": the configuration, as mtev_main loads it (see the top) */
  mtev_conf_init(APPNAME);
  if (mtev_conf_load(conf_path) != 0) exit(2);
  eventer_init();
  mtev_listener_register_aco_function("listen_to_me", listen_to_me);
  mtev_listener_init(APPNAME);
  eventer_loop();
  return 0;
}

/* ---- end of the seed's code ---------------------------------------------- */

int main(int argc, char **argv) {
  if (argc > 1) conf_path = argv[1];
  return child_main();
}
