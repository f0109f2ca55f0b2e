/*
 * test_http_discard.c - what a session has queued on its loop when the
 * loop stops.
 *
 * A session queues work on its loop that holds a reference on it: the
 * task that goes on with the drive after a response ended outside it,
 * and the end-of-pass hook that writes the responses held back for a
 * pipelined batch.  A loop that is told to stop runs neither; eventer_fini
 * drops them unrun.  The session must then end (its fd closed, its memory
 * freed), not stay counted with its fd open.
 *
 * Deterministic: the test drives the one loop itself (an external driver
 * on the main thread), so between two eventer_run_once calls the loop is
 * held exactly where the test wants it.  The session is the engine's own
 * (mtev_http_session_ctx_new on one end of a socket pair), with a
 * dispatcher that keeps the request for later.
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include "acotest.h"
#include "eventer.h"
#include "http_impl.h"
#include "mtev_http.h"

static mtev_http_session_ctx *sess;  /* the session (the event's closure) */
static mtev_http_session_ctx *kept;  /* the request the dispatcher kept */
static int dispatched;

static int conn_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  mtev_http_session_ctx *s = *(mtev_http_session_ctx **)closure;
  int done = 0;
  int m = mtev_http_session_drive(e, mask, s, now, &done);
  return done ? 0 : m;
}

/* /now: answered at once; anything else: kept (a reference taken) to be
 * ended later, outside the drive */
static int dispatch(mtev_http_session_ctx *s) {
  dispatched++;
  const char *uri = mtev_http_request_uri_str(mtev_http_session_request(s));
  if (uri && !strcmp(uri, "/move") && eventer_pool_loop(eventer_pool("other"), 0) !=
                                         eventer_loop_current()) {
    T_EQ(ev_http_session_move(s, eventer_pool("other")), 0);
    return 0;
  }
  if (uri && !strcmp(uri, "/now")) {
    mtev_http_response_ok(s, "text/plain");
    mtev_http_response_append_str(s, "now\n");
    mtev_http_response_end(s);
    return 0;
  }
  T_CHECK(kept == NULL);
  kept = s;
  mtev_http_session_ref_inc(s);
  return 0;
}

/* The eventer with one loop driven from this thread, and a session on a
 * socket pair: returns the client's end; *srv is the session's fd. */
static int start_pools(int *srv, int other) {
  T_EQ(eventer_impl_propset("concurrency", "1"), 0);
  if (other) T_EQ(eventer_impl_propset("loop_other", "1"), 0);
  T_EQ(eventer_init_external(), 0);
  T_EQ(eventer_loop_attach(0), 0);
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  T_EQ(eventer_set_fd_nonblocking(sv[1]), 0);
  eventer_t e = eventer_alloc_fd(conn_cb, &sess, sv[1], EVENTER_READ | EVENTER_EXCEPTION);
  T_CHECK(e != NULL);
  sess = mtev_http_session_ctx_new(dispatch, NULL, e, NULL);
  T_CHECK(sess != NULL);
  T_EQ(eventer_add_ex(e), 0);
  kept = NULL;
  dispatched = 0;
  *srv = sv[1];
  return sv[0];
}
static int start(int *srv) { return start_pools(srv, 0); }

/* Iterations (none blocks long) until the dispatcher has been called n
 * times; generous: a slow runner only takes longer. */
static void run_until_dispatched(int n) {
  struct timeval tick = {0, 10000};
  for (int i = 0; i < 6000 && dispatched < n; i++)
    T_CHECK(eventer_run_once(NULL, &tick) != -1);
  T_EQ(dispatched, n);
}

static void send_all(int fd, const char *s) {
  size_t len = strlen(s);
  T_EQ(send(fd, s, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* The loop stops before it runs what was queued; eventer_fini drops it.
 * The session is gone and its fd closed; the client reads to EOF. */
static void stop_and_check(int client, int srv) {
  eventer_shutdown();
  T_EQ(eventer_run_once(NULL, NULL), EVENTER_RUN_STOPPED);
  eventer_fini();
  T_EQ(mtev_http_session_count(), 0);
  T_EQ(eventer_allocations_current(), 0);
  errno = 0;
  T_EQ(fcntl(srv, F_GETFD), -1);
  T_EQ(errno, EBADF);
  /* whatever was sent, then EOF (not a connection held open) */
  char buf[4096];
  for (;;) {
    struct pollfd p = {client, POLLIN, 0};
    T_EQ(poll(&p, 1, 30000), 1);
    ssize_t n = recv(client, buf, sizeof(buf), 0);
    T_CHECK(n >= 0);
    if (n == 0) break;
  }
  close(client);
}

/* A response ended outside the drive (a later callback: here the driver
 * between two iterations) posts the task that goes on with the drive; the
 * loop stops before its next task phase. */
static void test_task_discarded(void) {
  int srv, client = start(&srv);
  send_all(client, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
  run_until_dispatched(1);
  T_CHECK(kept != NULL);
  mtev_http_response_ok(kept, "text/plain");
  mtev_http_response_append_str(kept, "later\n");
  T_CHECK(mtev_http_response_end(kept));
  /* the connection's reference, the task's (ours goes now) */
  T_EQ(mtev_http_session_ref_dec(kept), 2);
  kept = NULL;
  T_EQ(mtev_http_session_count(), 1);
  stop_and_check(client, srv);
}

/* Two pipelined requests: the first answered in the drive, the second
 * kept.  The first's answer is held back for the end of the pass (an
 * end-of-pass hook that holds a reference), which the loop, stopping,
 * never reaches. */
static void test_hook_discarded(void) {
  int srv, client = start(&srv);
  send_all(client, "GET /now HTTP/1.1\r\nHost: x\r\n\r\n"
                   "GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
  run_until_dispatched(2);
  T_CHECK(kept != NULL);
  /* the connection's reference, the hook's (ours goes now) */
  T_EQ(mtev_http_session_ref_dec(kept), 2);
  kept = NULL;
  stop_and_check(client, srv);
}

/* Both at once: the hook (the first answer held back) and the task (the
 * second ended outside the drive), dropped in one stop. */
static void test_task_and_hook_discarded(void) {
  int srv, client = start(&srv);
  send_all(client, "GET /now HTTP/1.1\r\nHost: x\r\n\r\n"
                   "GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
  run_until_dispatched(2);
  T_CHECK(kept != NULL);
  mtev_http_response_ok(kept, "text/plain");
  T_CHECK(mtev_http_response_end(kept));
  mtev_http_session_ref_dec(kept);
  kept = NULL;
  stop_and_check(client, srv);
}

/* A request moved to a loop of another pool (what a REST rule with its
 * own pool does): the connection's event is queued to that loop, which
 * never runs (it stops first).  The session goes with the queued add. */
static void test_move_discarded(void) {
  int srv, client = start_pools(&srv, 1);
  send_all(client, "GET /move HTTP/1.1\r\nHost: x\r\n\r\n");
  run_until_dispatched(1);
  /* on its way: the event is the other loop's now */
  eventer_t e = mtev_http_connection_event(mtev_http_session_connection(sess));
  T_CHECK(e != NULL);
  T_CHECK(eventer_get_owner_loop(e) == eventer_pool_loop(eventer_pool("other"), 0));
  T_EQ(mtev_http_session_count(), 1);
  stop_and_check(client, srv);
}

T_MAIN({"task_discarded", test_task_discarded},
       {"hook_discarded", test_hook_discarded},
       {"task_and_hook_discarded", test_task_and_hook_discarded},
       {"move_discarded", test_move_discarded})
