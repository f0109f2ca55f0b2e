/*
 * test_eventer_fd.c - fd events on one loop driven by the test thread:
 * each meaning of the callback's return value, removing / re-adding /
 * freeing events from callbacks (the dispatched one and ones later in the
 * same epoll batch), triggers, and 10,000 fds on one loop.
 */
#include "evtest.h"
#include "eventer_impl.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/resource.h>

static void make_pipe(int p[2]) {
  T_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

/* ---- return values ------------------------------------------------------------- */

static int masks_seen[16], nseen;
static int script[16]; /* what to return on each call */

static int scripted_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)c, (void)now;
  T_CHECK(eventer_in_loop());
  int i = nseen;
  masks_seen[nseen++] = mask;
  if (script[i] == 0) {
    /* done: remove first, then 0 lets the loop free the event */
    T_PTR_EQ(eventer_remove_fde(e), e);
    return 0;
  }
  return script[i];
}

static void test_return_masks(void) {
  ev_setup_external(1);
  int64_t base = eventer_allocations_current();
  int p[2];
  make_pipe(p);
  T_EQ(write(p[1], "x", 1), 1); /* read end stays readable (level) */
  eventer_t e = eventer_alloc_fd(scripted_cb, NULL, p[0], EVENTER_READ);
  nseen = 0;
  /* READ -> same mask again -> READ|WRITE (a pipe read end is never
   * writable, so still READ) -> EXCEPTION only (not called while nothing
   * is wrong) -> ... -> 0 */
  script[0] = EVENTER_READ;
  script[1] = EVENTER_READ | EVENTER_EXCEPTION;
  script[2] = EVENTER_EXCEPTION;
  script[3] = 0;
  T_EQ(eventer_add_ex(e), 0);
  T_PTR_EQ(eventer_find_fd(p[0]), e);
  ev_turn();
  ev_turn();
  T_EQ(nseen, 2);
  T_EQ(masks_seen[0], EVENTER_READ);
  T_EQ(masks_seen[1], EVENTER_READ);
  ev_turn(); /* interest is EXCEPTION now: readable data does not call */
  T_EQ(nseen, 3);
  ev_turn();
  ev_turn();
  T_EQ(nseen, 3);
  /* the writer goes away: hang-up is an exception */
  close(p[1]);
  ev_turn();
  T_EQ(nseen, 4);
  T_CHECK(masks_seen[3] & EVENTER_EXCEPTION);
  T_CHECK(eventer_find_fd(p[0]) == NULL);
  T_EQ(eventer_allocations_current(), base); /* returned 0: freed */
  close(p[0]);

  /* a mask change from READ to WRITE on a socket */
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  T_EQ(write(sv[1], "y", 1), 1);
  nseen = 0;
  script[0] = EVENTER_WRITE;
  script[1] = 0;
  e = eventer_alloc_fd(scripted_cb, NULL, sv[0], EVENTER_READ);
  T_EQ(eventer_add_ex(e), 0);
  ev_turn();
  ev_turn();
  T_EQ(nseen, 2);
  T_EQ(masks_seen[0], EVENTER_READ);
  T_EQ(masks_seen[1], EVENTER_WRITE);
  T_EQ(eventer_allocations_current(), base);

  /* eventer_update from outside a callback */
  nseen = 0;
  script[0] = EVENTER_READ;
  script[1] = 0;
  e = eventer_alloc_fd(scripted_cb, NULL, sv[0], EVENTER_READ);
  T_EQ(eventer_add_ex(e), 0);
  T_EQ(eventer_update_ex(e, EVENTER_WRITE), 0);
  T_EQ(eventer_get_mask(e), EVENTER_WRITE);
  ev_turn();
  T_EQ(masks_seen[0], EVENTER_WRITE);
  T_PTR_EQ(eventer_remove(e), e);
  eventer_free(e);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* returning non-zero after removing: the event stays out, the callback
 * keeps the reference eventer_remove handed it */
static eventer_t kept;
static int keep_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)c, (void)now;
  kept = eventer_remove_fde(e);
  T_PTR_EQ(kept, e);
  return EVENTER_READ;
}

/* re-adding itself (after removing) with a new mask from the callback */
static int readds;
static int readd_self_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)c, (void)now;
  readds++;
  if (readds == 1) {
    T_EQ(mask, EVENTER_READ);
    T_PTR_EQ(eventer_remove_fde(e), e);
    eventer_set_mask(e, EVENTER_WRITE);
    T_EQ(eventer_add_ex(e), 0);
    return EVENTER_WRITE;
  }
  T_EQ(mask, EVENTER_WRITE);
  T_PTR_EQ(eventer_remove_fde(e), e);
  return 0;
}

static void test_remove_keep_and_readd(void) {
  ev_setup_external(1);
  int64_t base = eventer_allocations_current();
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  T_EQ(write(sv[1], "y", 1), 1);
  eventer_t e = eventer_alloc_fd(keep_cb, NULL, sv[0], EVENTER_READ);
  T_EQ(eventer_add_ex(e), 0);
  ev_turn();
  ev_turn();
  T_PTR_EQ(kept, e);
  T_CHECK(eventer_find_fd(sv[0]) == NULL);
  T_EQ(eventer_allocations_current(), base + 1); /* ours to free */
  eventer_free(kept);

  readds = 0;
  e = eventer_alloc_fd(readd_self_cb, NULL, sv[0], EVENTER_READ);
  T_EQ(eventer_add_ex(e), 0);
  ev_turn();
  ev_turn();
  T_EQ(readds, 2);
  T_EQ(eventer_allocations_current(), base);

  /* a second event for a registered fd is refused */
  e = eventer_alloc_fd(keep_cb, NULL, sv[0], EVENTER_READ);
  eventer_t e2 = eventer_alloc_fd(keep_cb, NULL, sv[0], EVENTER_WRITE);
  T_EQ(eventer_add_ex(e), 0);
  T_ERRNO(eventer_add_ex(e2), EEXIST);
  T_ERRNO(eventer_add_ex(e), EBUSY);
  T_PTR_EQ(eventer_remove_fd(sv[0]), e);
  T_CHECK(eventer_remove_fd(sv[0]) == NULL);
  T_EQ(errno, ENOENT);
  eventer_free(e);
  eventer_free(e2);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* ---- returning 0 without removing is fatal ------------------------------------------ */

static int lazy_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  return 0; /* forgot eventer_remove_fde(e) */
}

static void lazy_child(void *arg) {
  (void)arg;
  ev_setup_external(1);
  eventer_name_callback("lazy_cb", lazy_cb);
  int p[2];
  make_pipe(p);
  T_EQ(write(p[1], "x", 1), 1);
  T_EQ(eventer_add_ex(eventer_alloc_fd(lazy_cb, NULL, p[0], EVENTER_READ)), 0);
  ev_turn();
}

static void test_return_zero_without_remove_is_fatal(void) {
  const char *out = t_expect_death(lazy_child, NULL,
                                   "fd callback lazy_cb returned 0 for event");
  T_CHECK(strstr(out, "without removing it first") != NULL);
  T_CHECK(strstr(out, "eventer_remove_fde") != NULL);
}

/* ---- mutations inside one epoll batch ----------------------------------------------------- */

#define NB 16
static int bp[NB][2];
static eventer_t bev[NB];
static int batch_calls[NB], fresh_calls;

static int fresh_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  fresh_calls++;
  return EVENTER_READ;
}

static int batch_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)now;
  int me = (int)(intptr_t)c;
  batch_calls[me]++;
  /* The first callback of the batch tears down every other event (all of
   * them ready in this very batch): removes and frees them, closes their
   * fds and reuses the fd numbers for fresh, idle pipes registered with
   * another callback.  None of the old readiness may reach anyone. */
  for (int i = 0; i < NB; i++) {
    if (i == me) continue;
    T_PTR_EQ(eventer_remove(bev[i]), bev[i]);
    eventer_free(bev[i]);
    bev[i] = NULL;
    close(bp[i][0]);
    close(bp[i][1]);
  }
  for (int i = 0; i < NB; i++) {
    if (i == me) continue;
    make_pipe(bp[i]);
    bev[i] = eventer_alloc_fd(fresh_cb, NULL, bp[i][0], EVENTER_READ);
    T_EQ(eventer_add_ex(bev[i]), 0);
  }
  /* and itself: removed and done */
  T_PTR_EQ(eventer_remove_fde(e), e);
  bev[me] = NULL;
  return 0;
}

static void test_mutations_in_one_batch(void) {
  ev_setup_external(1);
  int64_t base = eventer_allocations_current();
  for (int i = 0; i < NB; i++) {
    make_pipe(bp[i]);
    T_EQ(write(bp[i][1], "x", 1), 1);
    bev[i] = eventer_alloc_fd(batch_cb, (void *)(intptr_t)i, bp[i][0],
                              EVENTER_READ);
    T_EQ(eventer_add_ex(bev[i]), 0);
    batch_calls[i] = 0;
  }
  fresh_calls = 0;
  ev_turn(); /* all NB ready in one batch */
  int total = 0;
  for (int i = 0; i < NB; i++) total += batch_calls[i];
  T_EQ(total, 1);
  T_EQ(fresh_calls, 0); /* the reused fd numbers got no stale readiness */
  ev_turn();
  ev_turn();
  T_EQ(fresh_calls, 0); /* fresh pipes are idle */
  for (int i = 0; i < NB; i++) {
    if (!bev[i]) {
      close(bp[i][0]);
      close(bp[i][1]);
      continue;
    }
    T_PTR_EQ(eventer_remove(bev[i]), bev[i]);
    eventer_free(bev[i]);
    close(bp[i][0]);
    close(bp[i][1]);
  }
  T_EQ(eventer_allocations_current(), base);
  ev_teardown();
}

/* A callback re-adds an event later in the batch under a new registration
 * (remove + add): its stale report from this batch must be dropped, the
 * fresh registration reports on the next pass. */
static eventer_t later_ev;
static int later_calls, first_calls;
static int later_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  later_calls++;
  return EVENTER_READ;
}
static int first_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)c, (void)now;
  first_calls++;
  if (first_calls == 1) {
    T_PTR_EQ(eventer_remove(later_ev), later_ev);
    T_EQ(eventer_add_ex(later_ev), 0);
  }
  T_PTR_EQ(eventer_remove_fde(e), e);
  return 0;
}

static void test_readd_later_in_batch(void) {
  ev_setup_external(1);
  int a[2], b[2];
  make_pipe(a);
  make_pipe(b);
  T_EQ(write(a[1], "x", 1), 1);
  T_EQ(write(b[1], "x", 1), 1);
  /* fds that are ready when added join epoll's ready list in add order,
   * so `ea` comes first in the first batch */
  eventer_t ea = eventer_alloc_fd(first_cb, NULL, a[0], EVENTER_READ);
  later_ev = eventer_alloc_fd(later_cb, NULL, b[0], EVENTER_READ);
  T_EQ(eventer_add_ex(ea), 0);
  T_EQ(eventer_add_ex(later_ev), 0);
  later_calls = first_calls = 0;
  ev_turn();
  T_EQ(first_calls, 1);
  T_EQ(later_calls, 0); /* its report in this batch was for the old epoch */
  ev_turn();
  T_EQ(later_calls, 1);
  T_PTR_EQ(eventer_remove(later_ev), later_ev);
  eventer_free(later_ev);
  close(a[0]), close(a[1]), close(b[0]), close(b[1]);
  ev_teardown();
}

/* ---- triggers ------------------------------------------------------------------------ */

static int trig_masks[8], ntrig;
static int trig_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)c, (void)now;
  trig_masks[ntrig++] = mask;
  if (ntrig == 1) return EVENTER_READ; /* enter the loop, reading */
  T_PTR_EQ(eventer_remove_fde(e), e);
  return 0;
}

static void test_trigger(void) {
  ev_setup_external(1);
  int64_t base = eventer_allocations_current();
  int p[2];
  make_pipe(p);
  eventer_t e = eventer_alloc_fd(trig_cb, NULL, p[0], EVENTER_READ);
  ntrig = 0;
  T_EQ(eventer_trigger_ex(e, EVENTER_READ | EVENTER_WRITE), 0);
  T_EQ(ntrig, 0); /* never inside the caller */
  T_ERRNO(eventer_trigger_ex(e, EVENTER_READ), EBUSY);
  T_ERRNO(eventer_add_ex(e), EBUSY);
  ev_turn();
  T_EQ(ntrig, 1);
  T_EQ(trig_masks[0], EVENTER_READ | EVENTER_WRITE);
  T_PTR_EQ(eventer_find_fd(p[0]), e); /* registered by its return value */
  ev_turn();
  T_EQ(ntrig, 1); /* idle */
  T_EQ(write(p[1], "x", 1), 1);
  ev_turn();
  T_EQ(ntrig, 2);
  T_EQ(trig_masks[1], EVENTER_READ);
  T_EQ(eventer_allocations_current(), base);

  /* a pending trigger can be taken back */
  e = eventer_alloc_fd(trig_cb, NULL, p[0], EVENTER_READ);
  T_EQ(eventer_trigger_ex(e, EVENTER_READ), 0);
  T_PTR_EQ(eventer_remove(e), e);
  ev_turn();
  T_EQ(ntrig, 2);
  eventer_free(e);
  T_EQ(eventer_allocations_current(), base);
  close(p[0]);
  close(p[1]);
  ev_teardown();
}

/* ---- 10,000 fds on one loop ----------------------------------------------------------------- */

static int many_done;
static int many_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)c, (void)now;
  T_EQ(mask & EVENTER_READ, EVENTER_READ);
  uint64_t v;
  T_EQ(read(eventer_get_fd(e), &v, sizeof(v)), (ssize_t)sizeof(v));
  T_PTR_EQ(eventer_remove_fde(e), e);
  int m;
  T_EQ(eventer_close(e, &m), 0);
  many_done++;
  return 0;
}

static void test_ten_thousand_fds(void) {
  int want = 10000;
  struct rlimit rl;
  T_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rlim_t need = (rlim_t)want + 128;
  if (rl.rlim_cur < need) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need
                                                                      : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl); /* best effort; checked below */
    T_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  int n = want;
  if (rl.rlim_cur < need) {
    n = (int)rl.rlim_cur - 128;
    printf("note: RLIMIT_NOFILE is %lu and cannot be raised: using %d fds "
           "instead of %d\n", (unsigned long)rl.rlim_cur, n, want);
  }
  T_CHECK(n > 100);
  ev_setup_external(1);
  int64_t base = eventer_allocations_current();
  int *fds = calloc((size_t)n, sizeof(int));
  for (int i = 0; i < n; i++) {
    fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fds[i] < 0) {
      /* valgrind keeps some fds for itself: the limit we can reach is
       * lower than RLIMIT_NOFILE says */
      printf("note: only %d fds could be opened (%s): using %d\n", i,
             strerror(errno), i);
      n = i;
      break;
    }
    T_EQ(eventer_add_ex(eventer_alloc_fd(many_cb, NULL, fds[i], EVENTER_READ)), 0);
  }
  T_CHECK(n > 100);
  ev_turn();
  ev_turn();
  many_done = 0;
  T_EQ(many_done, 0); /* nothing ready yet */
  uint64_t one = 1;
  for (int i = 0; i < n; i++) T_EQ(write(fds[i], &one, sizeof(one)), 8);
  ev_spin_until(&many_done, n, 60000);
  T_EQ(eventer_allocations_current(), base);
  printf("note: %d fds registered and dispatched on one loop\n", n);
  free(fds);
  ev_teardown();
}

/* ---- the POSIX opset's calls on sockets and other fds ---------------------------
 * On a socket eventer_read/eventer_write are recv(2)/send(2) with no
 * flags; on any other fd (a pipe, an eventfd) the first call finds
 * ENOTSOCK and they are read(2)/write(2): the same results either way
 * (data, EAGAIN with the mask to wait for, EOF, EPIPE with SIGPIPE), errno
 * untouched by a call that succeeds.  The event remembers an fd that is
 * no socket. */

static volatile sig_atomic_t sigpipes;
static void on_sigpipe(int sig) {
  (void)sig;
  sigpipes++;
}
static int nop_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  return 0;
}

/* one writer and one reader over fds w and r: data, EAGAIN, EOF, EPIPE */
static void opset_calls(int w, int r, int sock) {
  eventer_t ew = eventer_alloc_fd(nop_cb, NULL, w, EVENTER_WRITE);
  eventer_t er = eventer_alloc_fd(nop_cb, NULL, r, EVENTER_READ);
  int mask = -1;
  char b[8];
  errno = EDOM;
  T_EQ(eventer_write(ew, "ab", 2, &mask), 2);
  T_EQ(errno, EDOM); /* success leaves errno alone, ENOTSOCK too */
  T_EQ(eventer_read(er, b, sizeof(b), &mask), 2);
  T_EQ(errno, EDOM);
  T_CHECK(b[0] == 'a' && b[1] == 'b');
  T_EQ(eventer_read(er, b, sizeof(b), &mask), -1);
  T_EQ(errno, EAGAIN);
  T_EQ(mask, EVENTER_READ | EVENTER_EXCEPTION);
  T_EQ(ev_posix_fd_not_sock(r), !sock);
  T_EQ(ev_posix_fd_not_sock(w), !sock);
  T_EQ(eventer_close(ew, &mask), 0);
  T_EQ(eventer_read(er, b, sizeof(b), &mask), 0); /* EOF */
  eventer_free(ew);
  eventer_free(er);
}

static void test_posix_opset_calls(void) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_sigpipe;
  sigemptyset(&sa.sa_mask);
  T_EQ(sigaction(SIGPIPE, &sa, &old), 0);
  int p[2], sv[2];
  make_pipe(p);
  opset_calls(p[1], p[0], 0);
  close(p[0]);
  /* the pipe's numbers come back as the socketpair's (the lowest free
   * fds): a new event on a number forgets its hint, so opset_calls finds
   * recv/send there */
  T_EQ(ev_posix_fd_not_sock(p[0]), 1);
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  T_CHECK(sv[0] == p[0] || sv[0] == p[1] || sv[1] == p[0] || sv[1] == p[1]);
  opset_calls(sv[1], sv[0], 1);
  close(sv[0]);
  /* no reader: EPIPE and the signal, on a pipe and on a socket */
  for (int sock = 0; sock < 2; sock++) {
    if (sock)
      T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p), 0);
    else
      make_pipe(p);
    close(p[0]);
    eventer_t e = eventer_alloc_fd(nop_cb, NULL, p[1], EVENTER_WRITE);
    int mask = -1;
    sigpipes = 0;
    T_EQ(eventer_write(e, "x", 1, &mask), -1);
    T_EQ(errno, EPIPE);
    T_EQ(sigpipes, 1);
    T_EQ(ev_posix_fd_not_sock(p[1]), !sock);
    T_EQ(eventer_close(e, &mask), 0);
    eventer_free(e);
  }
  /* an eventfd: read(2)'s 8-byte counter */
  int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  T_CHECK(efd >= 0);
  eventer_t e = eventer_alloc_fd(nop_cb, NULL, efd, EVENTER_READ);
  uint64_t v = 5, got = 0;
  int mask = -1;
  T_EQ(eventer_write(e, &v, sizeof(v), &mask), 8);
  T_EQ(eventer_read(e, &got, sizeof(got), &mask), 8);
  T_EQ(got, 5);
  T_EQ(eventer_close(e, &mask), 0);
  eventer_free(e);
  T_EQ(sigaction(SIGPIPE, &old, NULL), 0);
}

/* A zero-length read is read(2)'s on a socket too: 0 at once with errno
 * untouched, and nothing taken (recv(2) with no room takes a pending
 * datagram whole, and fails with EAGAIN on an empty socket, where read(2)
 * returns 0 without looking).  A zero-length write sends what write(2)
 * does: an empty datagram. */
static void zero_len_on(int type) {
  int u[2];
  T_EQ(socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, u), 0);
  eventer_t e = eventer_alloc_fd(nop_cb, NULL, u[0], EVENTER_READ);
  char b[8];
  int mask = -1;
  errno = EDOM;
  T_EQ(eventer_read(e, b, 0, &mask), 0); /* empty */
  T_EQ(errno, EDOM);
  T_EQ(send(u[1], "dg", 2, 0), 2);
  T_EQ(eventer_read(e, b, 0, &mask), 0); /* "dg" is there */
  T_EQ(errno, EDOM);
  T_EQ(eventer_read(e, b, sizeof(b), &mask), 2); /* and still there */
  T_CHECK(memcmp(b, "dg", 2) == 0);
  T_EQ(ev_posix_fd_not_sock(e->fd), 0);
  if (type == SOCK_DGRAM) {
    T_EQ(eventer_write(e, b, 0, &mask), 0); /* an empty datagram */
    T_EQ(recv(u[1], b, sizeof(b), 0), 0);
    T_ERRNO(recv(u[1], b, sizeof(b), 0), EAGAIN);
  }
  T_EQ(eventer_close(e, &mask), 0);
  eventer_free(e);
  close(u[1]);
}

static void test_posix_opset_zero_length(void) {
  zero_len_on(SOCK_STREAM);
  zero_len_on(SOCK_DGRAM);
  zero_len_on(SOCK_SEQPACKET);
  /* UDP on loopback: the same */
  int a = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  T_CHECK(a >= 0 && c >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  T_EQ(bind(a, (struct sockaddr *)&sa, sizeof(sa)), 0);
  T_EQ(getsockname(a, (struct sockaddr *)&sa, &sl), 0);
  T_EQ(sendto(c, "udp", 3, 0, (struct sockaddr *)&sa, sizeof(sa)), 3);
  eventer_t e = eventer_alloc_fd(nop_cb, NULL, a, EVENTER_READ);
  char b[8];
  int mask = -1;
  struct pollfd pf = {.fd = a, .events = POLLIN};
  T_EQ(poll(&pf, 1, 20000), 1); /* (loopback: there at once) */
  T_EQ(eventer_read(e, b, 0, &mask), 0);
  T_EQ(eventer_read(e, b, sizeof(b), &mask), 3);
  T_CHECK(memcmp(b, "udp", 3) == 0);
  T_EQ(eventer_close(e, &mask), 0);
  eventer_free(e);
  close(c);
  /* a regular file: ENOTSOCK, then read(2)/write(2) at its offset */
  FILE *f = tmpfile();
  T_CHECK(f != NULL);
  int ffd = dup(fileno(f));
  fclose(f);
  T_CHECK(ffd >= 0);
  e = eventer_alloc_fd(nop_cb, NULL, ffd, EVENTER_READ);
  errno = EDOM;
  T_EQ(eventer_write(e, "file", 4, &mask), 4);
  T_EQ(errno, EDOM);
  T_EQ(ev_posix_fd_not_sock(e->fd), 1);
  T_EQ(eventer_read(e, b, 0, &mask), 0);
  T_EQ(eventer_read(e, b, sizeof(b), &mask), 0); /* at its end */
  T_EQ(lseek(e->fd, 0, SEEK_SET), 0);
  T_EQ(eventer_read(e, b, sizeof(b), &mask), 4);
  T_CHECK(memcmp(b, "file", 4) == 0);
  T_EQ(errno, EDOM);
  T_EQ(eventer_close(e, &mask), 0);
  eventer_free(e);
}

T_MAIN({"return_masks", test_return_masks},
       {"remove_keep_and_readd", test_remove_keep_and_readd},
       {"return_zero_without_remove_is_fatal",
        test_return_zero_without_remove_is_fatal},
       {"mutations_in_one_batch", test_mutations_in_one_batch},
       {"readd_later_in_batch", test_readd_later_in_batch},
       {"trigger", test_trigger},
       {"ten_thousand_fds", test_ten_thousand_fds},
       {"posix_opset_calls", test_posix_opset_calls},
       {"posix_opset_zero_length", test_posix_opset_zero_length})
