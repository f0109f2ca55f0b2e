/*
 * move_event.c - the seed's "Moving an event to aco" example.
 *
 * The part between the "seed" markers is the seed document's code token
 * for token (only re-indented), with two exceptions, both marked:
 *
 *  - the seed writes `eventer_remove_fde(e)` without its semicolon.  The
 *    line is kept as written; for the seed's code only, this file defines
 *    eventer_remove_fde() to bring its own semicolon (push_macro/pop_macro
 *    restore the library's definition right after);
 *  - where the seed says "Use eventer_aco_* functions to interact with e.",
 *    one line calls serve(e), this example's conversation (below).
 *
 * The rest is the setup main needs: a listening socket on 127.0.0.1
 * registered as a classic fd event whose callback is the seed's
 * classic_callback.  When a connection is pending, classic_callback moves
 * the listener's event to a new coroutine (the seed's my_aco_process),
 * which accepts the connection with eventer_aco_accept, gives the listener
 * back to the loop as a classic event (so the next connection goes the same
 * way), and then talks on the connection in blocking style: it greets, reads
 * one line, answers it and closes.  Each connection gets its own coroutine;
 * they run side by side on the loop thread.
 *
 *   move_event [N]   prints "listening on 127.0.0.1:PORT" on stdout and
 *                    exits after answering N connections (0: never)
 *
 *   cc move_event.c $(pkg-config --cflags --libs --static acoeventer)
 */
#include <acoeventer.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void serve(eventer_aco_t e);

/* ---- seed: "Moving an event to aco" ---------------------------------------- */

#pragma push_macro("eventer_remove_fde")
#undef eventer_remove_fde
/* fix-up: the seed's call lacks its ';' (see the top of this file) */
#define eventer_remove_fde(e) eventer_remove_fd(eventer_get_fd(e));
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* mask, c, now */

static void my_aco_process(void);
static int
classic_callback(eventer_t e, int mask, void *c, struct timeval *now) {
  // First we must remove the event from the eventer system.
  eventer_remove_fde(e)
  // When we return 0 from this function, the event will be freed,
  // so we need a copy.
  eventer_t copy = eventer_alloc_copy(e);
  // This event needs to be converted to an aco event, but we don't
  // have a coroutine yet.
  eventer_aco_start(my_aco_process, copy);
  return 0;
}
static void
my_aco_process(void) {
  eventer_t classic_e = eventer_aco_arg();
  // We're now in an aco context so we can convert this to an aco event.
  eventer_aco_t e = eventer_set_eventer_aco(classic_e);
  // Use eventer_aco_* functions to interact with e.
  serve(e); /* added: this example's use of e, below */
  aco_exit();
}

#pragma GCC diagnostic pop
#pragma pop_macro("eventer_remove_fde")

/* ---- end of the seed's code ------------------------------------------------ */

static int to_serve;   /* connections to answer before stopping; 0: all */
static int connections; /* accepted so far */
static int finished;    /* conversations over */

/* eventer_alloc_fd wants a callback; an aco event never calls it */
static int unused_callback(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  return 0;
}

/* Reads one line (up to len-1 bytes, without its '\n').  Its length, or
 * -1 with errno. */
static int read_line(eventer_aco_t conn, char *buf, size_t len,
                     struct timeval *timeout) {
  size_t n = 0;
  while (n < len - 1) {
    int rv = eventer_aco_read(conn, buf + n, 1, timeout);
    if (rv <= 0) {
      if (rv == 0) errno = ECONNRESET; /* EOF before the end of the line */
      return -1;
    }
    if (buf[n] == '\n') break;
    n++;
  }
  buf[n] = '\0';
  return (int)n;
}

/* e: the listener, moved to this coroutine by classic_callback. */
static void serve(eventer_aco_t e) {
  struct timeval tmo = {5, 0};
  if (!e) {
    mtevL(mtev_error, "eventer_set_eventer_aco: %s\n", strerror(errno));
    return;
  }
  int lfd = eventer_get_fd((eventer_t)e);
  int fd = eventer_aco_accept(e, NULL, NULL, &tmo);
  int err = errno;
  /* Give the listener back to the loop as a classic event: the next
   * connection comes through classic_callback again. */
  eventer_aco_free(e);
  if (eventer_add_ex(eventer_alloc_fd(classic_callback, NULL, lfd,
                                   EVENTER_READ)) != 0)
    mtevL(mtev_error, "re-adding the listener: %s\n", strerror(errno));
  if (fd < 0) {
    mtevL(mtev_error, "eventer_aco_accept: %s\n", strerror(err));
    return;
  }
  int id = ++connections;
  mtevL(mtev_notice, "connection %d: accepted in a coroutine\n", id);

  eventer_aco_t conn =
      eventer_set_eventer_aco(eventer_alloc_fd(unused_callback, NULL, fd,
                                               EVENTER_READ));
  char line[128], reply[192];
  int n = snprintf(reply, sizeof(reply), "hello from aco coroutine %d\n", id);
  if (eventer_aco_write(conn, reply, (size_t)n, &tmo) == n &&
      read_line(conn, line, sizeof(line), &tmo) >= 0) {
    mtevL(mtev_notice, "connection %d: read \"%s\"\n", id, line);
    n = snprintf(reply, sizeof(reply), "coroutine %d got: %s\n", id, line);
    if (eventer_aco_write(conn, reply, (size_t)n, &tmo) == n)
      mtevL(mtev_notice, "connection %d: answered\n", id);
  } else {
    mtevL(mtev_error, "connection %d: %s\n", id, strerror(errno));
  }
  eventer_aco_close(conn);
  eventer_aco_free(conn);
  if (to_serve && ++finished == to_serve) eventer_shutdown();
}

int main(int argc, char **argv) {
  to_serve = argc > 1 ? atoi(argv[1]) : 0;
  if (eventer_init() != 0) {
    perror("eventer_init");
    return 1;
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sl) != 0 ||
      listen(lfd, 16) != 0 ||
      getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0) {
    perror("listen");
    return 1;
  }
  /* the classic event the seed's classic_callback is written for */
  if (eventer_add_ex(eventer_alloc_fd(classic_callback, NULL, lfd,
                                   EVENTER_READ)) != 0) {
    perror("eventer_add");
    return 1;
  }
  printf("listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
  fflush(stdout);
  eventer_loop(); /* exits the process once stopped */
  return 0;
}
