/*
 * test_eventer_aco.c - coroutines on the loop: start, sleep (on time, not
 * early, no stale timeout), fd read/write/accept/connect with timeouts,
 * EOF and peer reset while parked, close while another coroutine waits,
 * full duplex, cancel, join, park/wake (also from another thread), yield,
 * asynch work and gates, stats, and the reference's known defects.
 */
#include "evtest.h"

#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "eventer_aco.h"

static void sockpair(int sv[2]) {
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
       0);
}

static int dummy_cb(eventer_t e, int m, void *c, struct timeval *n) {
  (void)e, (void)m, (void)c, (void)n;
  return 0;
}

/* an aco event for fd, made inside the running coroutine */
static eventer_aco_t aco_fd(int fd) {
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, fd, EVENTER_READ);
  T_CHECK(e != NULL);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  T_CHECK(ae != NULL);
  T_CHECK(eventer_is_aco((eventer_t)ae));
  return ae;
}

static struct timeval ms(long v) {
  struct timeval t = {v / 1000, (v % 1000) * 1000};
  return t;
}

/* ---- start, arg, sleep -------------------------------------------------- */

static int done;
static uint64_t slept_us[3];

static void sleeper(void) {
  struct timeval *tv = eventer_aco_arg();
  T_CHECK(eventer_in_aco());
  for (int i = 0; i < 3; i++) {
    uint64_t t0 = t_now_us();
    T_EQ(eventer_aco_sleep(tv), 0);
    slept_us[i] = t_now_us() - t0;
  }
  done++;
  aco_exit();
}

static void test_start_and_sleep(void) {
  ev_setup_external(1);
  done = 0;
  struct timeval tv = ms(20);
  /* from main context on the loop thread: runs at once until it sleeps */
  eventer_aco_start(sleeper, &tv);
  T_EQ(done, 0);
  ev_spin_until(&done, 1, 5000);
  for (int i = 0; i < 3; i++) {
    T_GE(slept_us[i], 20000); /* never early */
    T_LE_LATE(slept_us[i], 20000 + ev_late_bound_us());
  }
  T_CHECK(!eventer_in_aco());
  T_PTR_EQ(eventer_aco_arg(), NULL);
  ev_teardown();
}

/* while a coroutine sleeps, classic events keep running on the thread */
static int ticks;
static int tick_cb(eventer_t e, int m, void *c, struct timeval *now) {
  (void)e, (void)m, (void)c, (void)now;
  ticks++;
  return 0;
}

static void test_sleep_cooperates(void) {
  ev_setup_external(1);
  done = 0;
  ticks = 0;
  struct timeval tv = ms(30);
  eventer_aco_start(sleeper, &tv);
  for (int i = 0; i < 5; i++) eventer_add_in_s_us(tick_cb, NULL, 0, 5000 * (unsigned long)(i + 1));
  ev_spin_until(&done, 1, 5000);
  T_EQ(ticks, 5); /* all fired while the coroutine slept */
  ev_teardown();
}

/* a sleep leaves no stale timeout that fails the next wait (defect #1) */
static int stale_rv = -2;
static void stale_sleep_fn(void) {
  int *sv = eventer_aco_arg();
  struct timeval s = ms(5);
  T_EQ(eventer_aco_sleep(&s), 0);
  eventer_aco_t e = aco_fd(sv[0]);
  char buf[8];
  /* the peer writes after 40 ms: longer than the old sleep */
  stale_rv = eventer_aco_read(e, buf, sizeof(buf), NULL);
  eventer_aco_free(e);
  done++;
}

static int late_write_cb(eventer_t e, int m, void *c, struct timeval *now) {
  (void)e, (void)m, (void)now;
  int *fd = c;
  T_EQ(write(*fd, "hi", 2), 2);
  return 0;
}

static void test_no_stale_timeout(void) {
  ev_setup_external(1);
  done = 0;
  int sv[2];
  sockpair(sv);
  eventer_aco_start(stale_sleep_fn, sv);
  eventer_add_in_s_us(late_write_cb, &sv[1], 0, 40000);
  ev_spin_until(&done, 1, 5000);
  T_EQ(stale_rv, 2);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* ---- read / write, timeouts, EOF, reset ---------------------------------- */

typedef struct {
  int fd;
  int rv;
  int err;
  uint64_t waited_us;
  long timeout_ms;
} io_t;

static void reader_fn(void) {
  io_t *io = eventer_aco_arg();
  eventer_aco_t e = aco_fd(io->fd);
  char buf[64];
  struct timeval tmo = ms(io->timeout_ms);
  uint64_t t0 = t_now_us();
  io->rv = eventer_aco_read(e, buf, sizeof(buf), io->timeout_ms ? &tmo : NULL);
  io->err = errno;
  io->waited_us = t_now_us() - t0;
  eventer_aco_free(e);
  done++;
}

static void test_read_timeout(void) {
  ev_setup_external(1);
  done = 0;
  int sv[2];
  sockpair(sv);
  io_t io = {.fd = sv[0], .timeout_ms = 50};
  eventer_aco_start(reader_fn, &io);
  ev_spin_until(&done, 1, 5000);
  T_EQ(io.rv, -1);
  T_EQ(io.err, ETIMEDOUT);
  T_EQ(io.err, ETIME); /* the seed's spelling sees it too */
  T_GE(io.waited_us, 50000);
  T_LE_LATE(io.waited_us, 50000 + ev_late_bound_us());
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

static int closer_cb(eventer_t e, int m, void *c, struct timeval *now) {
  (void)e, (void)m, (void)now;
  close(*(int *)c);
  return 0;
}

static void test_eof_while_parked(void) {
  ev_setup_external(1);
  done = 0;
  int sv[2];
  sockpair(sv);
  io_t io = {.fd = sv[0]};
  eventer_aco_start(reader_fn, &io);
  T_EQ(done, 0); /* parked */
  eventer_add_in_s_us(closer_cb, &sv[1], 0, 10000);
  ev_spin_until(&done, 1, 5000);
  T_EQ(io.rv, 0); /* EOF */
  close(sv[0]);
  ev_teardown();
}

static void test_reset_while_parked(void) {
  ev_setup_external(1);
  done = 0;
  /* a TCP pair, so an RST is possible: SO_LINGER 0 on close */
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  T_EQ(bind(l, (struct sockaddr *)&sa, sl), 0);
  T_EQ(listen(l, 1), 0);
  T_EQ(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  T_EQ(connect(c, (struct sockaddr *)&sa, sl), 0);
  int s = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  T_GE(s, 0);
  io_t io = {.fd = s};
  eventer_aco_start(reader_fn, &io);
  struct linger lg = {1, 0};
  T_EQ(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  eventer_add_in_s_us(closer_cb, &c, 0, 10000);
  ev_spin_until(&done, 1, 5000);
  T_EQ(io.rv, -1);
  T_EQ(io.err, ECONNRESET);
  close(s);
  close(l);
  ev_teardown();
}

/* ---- ping-pong, full duplex -------------------------------------------------- */

#define ROUNDS 200
static void ping_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd(fd);
  char b[4];
  for (int i = 0; i < ROUNDS; i++) {
    T_EQ(eventer_aco_write(e, "ping", 4, NULL), 4);
    T_EQ(eventer_aco_read(e, b, 4, NULL), 4);
    T_CHECK(!memcmp(b, "pong", 4));
  }
  eventer_aco_free(e);
  done++;
}

static void pong_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd(fd);
  char b[4];
  for (int i = 0; i < ROUNDS; i++) {
    /* the classic call on an aco event acts as its aco counterpart */
    int mask = 0;
    T_EQ(eventer_read((eventer_t)e, b, 4, &mask), 4);
    T_CHECK(!memcmp(b, "ping", 4));
    T_EQ(eventer_write((eventer_t)e, "pong", 4, &mask), 4);
  }
  eventer_aco_free(e);
  done++;
}

static void test_ping_pong(void) {
  ev_setup_external(1);
  done = 0;
  int sv[2];
  sockpair(sv);
  eventer_aco_start(pong_fn, &sv[1]);
  eventer_aco_start(ping_fn, &sv[0]);
  ev_spin_until(&done, 2, 10000);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* one socket, a reader and a writer coroutine at once */
static eventer_aco_t shared_e;
static int duplex_read_total;
static void duplex_reader(void) {
  char buf[4096];
  int total = 0;
  for (;;) {
    int n = eventer_aco_read(shared_e, buf, sizeof(buf), NULL);
    if (n <= 0) break;
    total += n;
  }
  duplex_read_total = total;
  done++;
}
static void duplex_writer(void) {
  static char chunk[65536];
  memset(chunk, 'w', sizeof(chunk));
  int sent = 0;
  while (sent < 4 * 1024 * 1024) {
    size_t want = sizeof(chunk);
    if (want > (size_t)(4 * 1024 * 1024 - sent)) want = (size_t)(4 * 1024 * 1024 - sent);
    int n = eventer_aco_write(shared_e, chunk, want, NULL);
    T_GE(n, 1);
    sent += n;
  }
  shutdown(eventer_get_fd((eventer_t)shared_e), SHUT_WR);
  done++;
}
static void duplex_owner(void) {
  int fd = *(int *)eventer_aco_arg();
  shared_e = aco_fd(fd);
  eventer_aco_start(duplex_reader, NULL);
  eventer_aco_start(duplex_writer, NULL);
  done++;
}
/* the far end echoes everything back, then closes */
static void echo_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd(fd);
  char buf[8192];
  for (;;) {
    int n = eventer_aco_read(e, buf, sizeof(buf), NULL);
    if (n <= 0) break;
    int off = 0;
    while (off < n) {
      int w = eventer_aco_write(e, buf + off, (size_t)(n - off), NULL);
      T_GE(w, 1);
      off += w;
    }
  }
  shutdown(fd, SHUT_WR);
  eventer_aco_free(e);
  done++;
}

static void test_full_duplex(void) {
  ev_setup_external(1);
  done = 0;
  int sv[2];
  sockpair(sv);
  eventer_aco_start(echo_fn, &sv[1]);
  eventer_aco_start(duplex_owner, &sv[0]);
  ev_spin_until(&done, 4, 20000);
  T_EQ(duplex_read_total, 4 * 1024 * 1024);
  eventer_aco_free(shared_e);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* ---- accept, connect ---------------------------------------------------------- */

static int listen_fd;
static struct sockaddr_in listen_addr;
static void acceptor_fn(void) {
  eventer_aco_t le = aco_fd(listen_fd);
  for (int i = 0; i < 3; i++) {
    struct sockaddr_in peer;
    socklen_t pl = sizeof(peer);
    int fd = eventer_aco_accept(le, (struct sockaddr *)&peer, &pl, NULL);
    T_GE(fd, 0);
    eventer_aco_t ce = aco_fd(fd);
    char b[5];
    T_EQ(eventer_aco_read(ce, b, 5, NULL), 5);
    T_EQ(eventer_aco_write(ce, b, 5, NULL), 5);
    eventer_aco_close(ce);
    eventer_aco_free(ce);
  }
  struct timeval t = ms(30);
  errno = 0;
  T_EQ(eventer_aco_accept(le, NULL, NULL, &t), -1);
  T_EQ(errno, ETIMEDOUT);
  eventer_aco_free(le);
  done++;
}
static void connector_fn(void) {
  for (int i = 0; i < 3; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    eventer_aco_t e = aco_fd(fd);
    struct timeval t = ms(2000);
    T_EQ(eventer_aco_connect(e, (struct sockaddr *)&listen_addr,
                             sizeof(listen_addr), &t),
         0);
    T_EQ(eventer_aco_write(e, "hello", 5, NULL), 5);
    char b[5];
    T_EQ(eventer_aco_read(e, b, 5, &t), 5);
    T_CHECK(!memcmp(b, "hello", 5));
    T_EQ(eventer_aco_read(e, b, 5, &t), 0); /* server closed */
    eventer_aco_close(e);
    eventer_aco_free(e);
  }
  /* refused */
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  eventer_aco_t e = aco_fd(fd);
  struct sockaddr_in dead = listen_addr;
  int tmp = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  bind(tmp, (struct sockaddr *)&sa, sl);
  getsockname(tmp, (struct sockaddr *)&sa, &sl);
  close(tmp); /* a port nobody listens on */
  dead.sin_port = sa.sin_port;
  errno = 0;
  T_EQ(eventer_aco_connect(e, (struct sockaddr *)&dead, sizeof(dead), NULL), -1);
  T_EQ(errno, ECONNREFUSED);
  eventer_aco_close(e);
  eventer_aco_free(e);
  done++;
}

static void test_accept_connect(void) {
  ev_setup_external(1);
  done = 0;
  listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  listen_addr = (struct sockaddr_in){.sin_family = AF_INET,
                                     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(listen_addr);
  T_EQ(bind(listen_fd, (struct sockaddr *)&listen_addr, sl), 0);
  T_EQ(listen(listen_fd, 16), 0);
  T_EQ(getsockname(listen_fd, (struct sockaddr *)&listen_addr, &sl), 0);
  eventer_aco_start(acceptor_fn, NULL);
  eventer_aco_start(connector_fn, NULL);
  ev_spin_until(&done, 2, 10000);
  close(listen_fd);
  ev_teardown();
}

/* ---- close while another coroutine waits ----------------------------------- */

static eventer_aco_t closing_e;
static int closed_wait_err;
static void waits_on_closing(void) {
  char b[4];
  errno = 0;
  T_EQ(eventer_aco_read(closing_e, b, 4, NULL), -1);
  closed_wait_err = errno;
  done++;
}
static void closes_it(void) {
  struct timeval t = ms(10);
  eventer_aco_sleep(&t);
  T_EQ(eventer_aco_close(closing_e), 0);
  T_ERRNO(eventer_aco_read(closing_e, NULL, 0, NULL), EBADF);
  done++;
}
static void close_setup(void) {
  int fd = *(int *)eventer_aco_arg();
  closing_e = aco_fd(fd);
  eventer_aco_start(waits_on_closing, NULL);
  eventer_aco_start(closes_it, NULL);
}

static void test_close_while_waiting(void) {
  ev_setup_external(1);
  done = 0;
  int sv[2];
  sockpair(sv);
  eventer_aco_start(close_setup, &sv[0]);
  ev_spin_until(&done, 2, 5000);
  T_EQ(closed_wait_err, EBADF);
  eventer_aco_free(closing_e);
  close(sv[1]);
  ev_teardown();
}

/* ---- handles: cancel, join, park/wake ------------------------------------------ */

static int cancel_err;
static int after_cancel;
static void cancellable_fn(void) {
  struct timeval t = ms(60000);
  errno = 0;
  T_EQ(eventer_aco_sleep(&t), -1);
  cancel_err = errno;
  /* the coroutine goes on: a later call works */
  struct timeval s = ms(1);
  T_EQ(eventer_aco_sleep(&s), 0);
  after_cancel = 1;
  done++;
}

static eventer_aco_co_t *target;
static int join_rv = -2;
static void joiner_fn(void) {
  join_rv = eventer_aco_join(target, NULL);
  T_CHECK(eventer_aco_co_done(target));
  done++;
}

static void test_cancel_and_join(void) {
  ev_setup_external(1);
  done = 0;
  target = eventer_aco_spawn(cancellable_fn, NULL, NULL);
  T_CHECK(target != NULL);
  T_CHECK(!eventer_aco_co_done(target));
  eventer_aco_start(joiner_fn, NULL);
  T_EQ(eventer_aco_cancel(target), 0);
  ev_spin_until(&done, 2, 5000);
  T_EQ(cancel_err, ECANCELED);
  T_EQ(after_cancel, 1);
  T_EQ(join_rv, 0);
  T_CHECK(eventer_aco_co_done(target));
  T_ERRNO(eventer_aco_cancel(target), ESRCH);
  eventer_aco_co_release(target);
  ev_teardown();
}

static void self_join_fn(void) {
  T_ERRNO(eventer_aco_join(eventer_aco_self(), NULL), EDEADLK);
  struct timeval t = ms(20);
  eventer_aco_co_t *h = eventer_aco_spawn(cancellable_fn, NULL, NULL);
  /* join with a timeout that expires first */
  T_ERRNO(eventer_aco_join(h, &t), ETIMEDOUT);
  eventer_aco_cancel(h);
  T_EQ(eventer_aco_join(h, NULL), 0);
  eventer_aco_co_release(h);
  done++;
}

static void test_join_edge_cases(void) {
  ev_setup_external(1);
  done = 0;
  eventer_aco_start(self_join_fn, NULL);
  ev_spin_until(&done, 2, 5000);
  ev_teardown();
}

static int parked_rv = -2, parked_err;
static void parker_fn(void) {
  struct timeval t = ms(10000);
  parked_rv = eventer_aco_park(&t);
  parked_err = errno;
  done++;
}

static void *waker_thread(void *arg) {
  usleep(20000);
  T_EQ(eventer_aco_wake(arg), 0);
  return NULL;
}

static void test_wake_from_other_thread(void) {
  ev_setup_external(1);
  done = 0;
  eventer_aco_co_t *h = eventer_aco_spawn(parker_fn, NULL, NULL);
  pthread_t th;
  uint64_t t0 = t_now_us();
  pthread_create(&th, NULL, waker_thread, h);
  ev_spin_until(&done, 1, 5000);
  pthread_join(th, NULL);
  T_EQ(parked_rv, 0);
  T_LE(t_now_us() - t0, 5000000);
  /* a cancel ends a park too */
  done = 0;
  eventer_aco_co_t *h2 = eventer_aco_spawn(parker_fn, NULL, NULL);
  eventer_aco_cancel(h2);
  ev_spin_until(&done, 1, 5000);
  T_EQ(parked_rv, -1);
  T_EQ(parked_err, ECANCELED);
  eventer_aco_co_release(h);
  eventer_aco_co_release(h2);
  ev_teardown();
}

static void token_fn(void) {
  T_EQ(eventer_aco_wake(eventer_aco_self()), 0);
  struct timeval t = ms(10000);
  T_EQ(eventer_aco_park(&t), 0); /* the token was there first */
  struct timeval z = ms(10);
  T_ERRNO(eventer_aco_park(&z), ETIMEDOUT);
  done++;
}

static void test_wake_token(void) {
  ev_setup_external(1);
  done = 0;
  eventer_aco_start(token_fn, NULL);
  ev_spin_until(&done, 1, 5000);
  ev_teardown();
}

/* ---- start from another thread, before the loop runs -------------------------- */

static void *starter_thread(void *arg) {
  (void)arg;
  static struct timeval tv = {0, 1000};
  eventer_aco_start(sleeper, &tv);
  return NULL;
}

static void test_start_off_loop(void) {
  ev_setup_external(1);
  done = 0;
  pthread_t th;
  pthread_create(&th, NULL, starter_thread, NULL);
  pthread_join(th, NULL);
  T_EQ(done, 0); /* queued, not run */
  ev_spin_until(&done, 1, 5000);
  ev_teardown();
}

/* ---- yield --------------------------------------------------------------------- */

static int order[8], norder;
static void yielder(void) {
  int id = (int)(intptr_t)eventer_aco_arg();
  for (int i = 0; i < 2; i++) {
    order[norder++] = id;
    T_EQ(eventer_aco_yield(), 0);
  }
  done++;
}

static void test_yield_round_robin(void) {
  ev_setup_external(1);
  done = 0;
  norder = 0;
  eventer_aco_start(yielder, (void *)1);
  eventer_aco_start(yielder, (void *)2);
  ev_spin_until(&done, 2, 5000);
  int want[4] = {1, 2, 1, 2};
  for (int i = 0; i < 4; i++) T_EQ(order[i], want[i]);
  ev_teardown();
}

/* ---- asynch and gates ---------------------------------------------------------- */

static void slow_work(void *c) {
  int *v = c;
  usleep(1000 * (unsigned)(*v));
  *v = -*v;
}

static int ops_seen;
static void op_work(eventer_asynch_op_t op, void *c) {
  (void)c;
  if (op == EVENTER_ASYNCH_WORK) __atomic_fetch_or(&ops_seen, 1, __ATOMIC_RELAXED);
  if (op == EVENTER_ASYNCH_CLEANUP) __atomic_fetch_or(&ops_seen, 2, __ATOMIC_RELAXED);
  if (op == EVENTER_ASYNCH_COMPLETE) {
    T_CHECK(eventer_in_loop());
    __atomic_fetch_or(&ops_seen, 4, __ATOMIC_RELAXED);
  }
}

static int user_cb_masks;
static int user_asynch_cb(eventer_t e, int mask, void *c, struct timeval *n) {
  (void)e, (void)c, (void)n;
  __atomic_fetch_or(&user_cb_masks, mask == EVENTER_ASYNCH_COMPLETE ? 4 : mask == EVENTER_ASYNCH_WORK ? 1 : 2, __ATOMIC_RELAXED);
  return 0;
}

static void asynch_fn(void) {
  int v = 20;
  eventer_aco_simple_asynch(slow_work, &v);
  T_EQ(v, -20); /* resumed only after the work completed */
  eventer_aco_asynch(op_work, NULL);
  T_EQ(ops_seen, 7);
  /* gated: three jobs completing out of order, one wait */
  eventer_aco_gate_t g = eventer_aco_gate();
  int vals[3] = {30, 5, 15};
  for (int i = 0; i < 3; i++)
    eventer_aco_simple_asynch_gated(g, slow_work, &vals[i]);
  eventer_aco_gate_wait(g);
  for (int i = 0; i < 3; i++) T_LE(vals[i], -5);
  /* run_asynch: the eventer takes the caller's event and frees it */
  int64_t before = eventer_allocations_current();
  eventer_t e = eventer_alloc_asynch(user_asynch_cb, NULL);
  eventer_aco_run_asynch(e);
  T_EQ(user_cb_masks, 7);
  T_EQ(eventer_allocations_current(), before);
  done++;
}

static void test_asynch(void) {
  ev_setup_external(1);
  done = 0;
  ops_seen = 0;
  user_cb_masks = 0;
  eventer_aco_start(asynch_fn, NULL);
  ev_spin_until(&done, 1, 10000);
  ev_teardown();
}

/* a failed try-run leaves the caller's gate and event alone (defect #2) */
static void blocker_work(void *c) {
  volatile int *go = c;
  while (!__atomic_load_n(go, __ATOMIC_ACQUIRE)) usleep(1000);
}
static int try_go;
static void try_run_fn(void) {
  eventer_jobq_t *q = eventer_jobq_create("try_q");
  eventer_jobq_set_concurrency(q, 1);
  eventer_jobq_set_max_backlog(q, 1);
  eventer_aco_gate_t g = eventer_aco_gate();
  /* occupy the one thread, then fill the backlog */
  eventer_aco_simple_asynch_queue_gated(g, blocker_work, &try_go, q);
  eventer_aco_simple_asynch_queue_gated(g, blocker_work, &try_go, q);
  eventer_t e = eventer_alloc_asynch(user_asynch_cb, NULL);
  int tries = 0;
  while (eventer_aco_try_run_asynch_queue_gated(g, q, e)) {
    /* accepted: the backlog had room after all; make another */
    e = eventer_alloc_asynch(user_asynch_cb, NULL);
    T_LE(++tries, 5);
  }
  T_EQ(errno, EAGAIN);
  /* refused: e is still ours and the gate still works */
  eventer_free(e);
  __atomic_store_n(&try_go, 1, __ATOMIC_RELEASE);
  eventer_aco_gate_wait(g);
  eventer_jobq_destroy(q);
  done++;
}

static void test_try_run_keeps_gate(void) {
  ev_setup_external(1);
  done = 0;
  try_go = 0;
  eventer_aco_start(try_run_fn, NULL);
  ev_spin_until(&done, 1, 10000);
  ev_teardown();
}

/* Whether run_asynch frees the caller's event is decided by the path it
 * took, not by errno after its log line: a log writer that changes errno
 * must not make it free an event the caller keeps, or keep one the eventer
 * took over (it read errno after logging). */
static int writer_errno;
static void errno_writer(mtev_log_stream_t ls, const char *line, size_t len,
                         void *c) {
  (void)ls, (void)line, (void)len, (void)c;
  errno = writer_errno;
}

static void run_asynch_owner_fn(void) {
  int64_t before = eventer_allocations_current();
  mtev_log_set_writer(errno_writer, NULL);
  /* refused (not an asynch event): the caller keeps it, whatever errno
   * the log line left */
  writer_errno = ENOENT;
  eventer_t e = eventer_alloc_fd(user_asynch_cb, NULL, 0, EVENTER_READ);
  eventer_aco_run_asynch(e);
  T_EQ(eventer_allocations_current(), before + 1);
  eventer_free(e); /* ours: freed exactly once */
  /* taken over but not queued (no default queue): freed by the eventer,
   * even when the log line leaves EINVAL behind */
  eventer_jobq_t *dq = eventer_default_jobq();
  eventer_jobq_destroy(dq);
  writer_errno = EINVAL;
  e = eventer_alloc_asynch(user_asynch_cb, NULL);
  eventer_aco_run_asynch(e);
  T_EQ(eventer_allocations_current(), before);
  mtev_log_set_writer(NULL, NULL);
  done++;
}

static void test_run_asynch_owner(void) {
  ev_setup_external(1);
  done = 0;
  eventer_aco_start(run_asynch_owner_fn, NULL);
  ev_spin_until(&done, 1, 10000);
  ev_teardown();
}

/* ---- misuse off the loop / outside coroutines ---------------------------------- */

static void test_off_loop_calls_fail_cleanly(void) {
  ev_setup_external(1);
  struct timeval t = ms(10);
  /* main context, loop thread: not in a coroutine (defect #3: no crash) */
  T_ERRNO(eventer_aco_sleep(&t), EINVAL);
  T_ERRNO(eventer_aco_read(NULL, NULL, 0, &t), EINVAL);
  T_ERRNO(eventer_aco_park(&t), EINVAL);
  T_ERRNO(eventer_aco_yield(), EINVAL);
  eventer_t e = eventer_alloc();
  T_CHECK(eventer_set_eventer_aco(e) == NULL);
  T_EQ(errno, EINVAL);
  eventer_free(e);
  ev_teardown();
}

/* ---- stats, refcounts ---------------------------------------------------------- */

static eventer_aco_stats_t stats_seen;
static void stats_fn(void) {
  volatile char big[600];
  memset((char *)big, 1, sizeof(big));
  struct timeval t = ms(1);
  eventer_aco_sleep(&t);
  eventer_aco_sleep(&t);
  T_EQ(eventer_aco_get_stats(NULL, &stats_seen), 0);
  T_CHECK(big[599] == 1);
  done++;
}
static void stack_hog(void) {
  volatile char big[2000];
  memset((char *)big, 2, sizeof(big));
  struct timeval t = ms(1);
  eventer_aco_sleep(&t);
  eventer_aco_sleep(&t);
  T_CHECK(big[1999] == 2);
  done++;
}

static void test_stats(void) {
  ev_setup_external(1);
  done = 0;
  eventer_aco_start(stats_fn, NULL);
  eventer_aco_start(stack_hog, NULL);
  ev_spin_until(&done, 2, 5000);
  T_EQ(stats_seen.resumes, 3);
  T_GE(stats_seen.max_save_stack, 600);
  T_GE(stats_seen.bytes_copied, 1200); /* saved and restored at least once */
  ev_teardown();
}

static void converted_no_leak_fn(void) {
  int *sv = eventer_aco_arg();
  for (int i = 0; i < 100; i++) {
    eventer_aco_t e = aco_fd(sv[0]);
    T_EQ(eventer_aco_write(e, "x", 1, NULL), 1);
    char b;
    T_EQ(eventer_aco_read(e, &b, 1, NULL), 1); /* parks: registers */
    eventer_aco_free(e);
  }
  done++;
}
static void echo1_fn(void) {
  int *sv = eventer_aco_arg();
  eventer_aco_t e = aco_fd(sv[1]);
  char b;
  for (int i = 0; i < 100; i++) {
    T_EQ(eventer_aco_read(e, &b, 1, NULL), 1);
    T_EQ(eventer_aco_write(e, &b, 1, NULL), 1);
  }
  eventer_aco_free(e);
  done++;
}

/* no reference is leaked per converted event (defect #4) */
static void test_no_refcount_leak(void) {
  ev_setup_external(1);
  done = 0;
  int sv[2];
  sockpair(sv);
  int64_t before = eventer_allocations_current();
  eventer_aco_start(echo1_fn, sv);
  eventer_aco_start(converted_no_leak_fn, sv);
  ev_spin_until(&done, 2, 10000);
  ev_turn();
  T_EQ(eventer_allocations_current(), before);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* ---- ended coroutines recycled ------------------------------------------------------------
 * A coroutine that ends leaves its memory to the next one its loop starts
 * (aco_reset): the new one must start clean, and the old one's handle
 * must not reach it. */

static aco_t *rec_co[2];
static int rec_yield_rv = -2;
static eventer_aco_stats_t rec_stats;

static void rec_first(void) {
  rec_co[0] = aco_get_co();
  /* leaves a pending cancel and a wake token behind */
  T_EQ(eventer_aco_cancel(eventer_aco_self()), 0);
  T_EQ(eventer_aco_wake(eventer_aco_self()), 0);
  done++;
}

static void rec_second(void) {
  rec_co[1] = aco_get_co();
  T_EQ(eventer_aco_get_stats(NULL, &rec_stats), 0);
  rec_yield_rv = eventer_aco_yield(); /* no cancel is pending for it */
  done++;
}

static void test_recycled(void) {
  ev_setup_external(1);
  done = 0;
  eventer_aco_co_t *h = eventer_aco_spawn(rec_first, NULL, NULL);
  T_CHECK(h != NULL);
  ev_spin_until(&done, 1, 5000);
  T_CHECK(eventer_aco_co_done(h));
  eventer_aco_co_t *h2 = eventer_aco_spawn(rec_second, NULL, NULL);
  T_CHECK(h2 != NULL);
  /* the old handle does not reach the new coroutine */
  T_ERRNO(eventer_aco_cancel(h), ESRCH);
  T_ERRNO(eventer_aco_wake(h), ESRCH);
  eventer_aco_stats_t st;
  T_ERRNO(eventer_aco_get_stats(h, &st), ESRCH);
  ev_spin_until(&done, 2, 5000);
  T_PTR_EQ(rec_co[1], rec_co[0]); /* the same memory */
  T_EQ(rec_stats.resumes, 1);
  T_EQ(rec_yield_rv, 0);
  eventer_aco_co_release(h);
  eventer_aco_co_release(h2);
  ev_teardown();
}

/* ---- many coroutines ---------------------------------------------------------------- */

static int woke;
static void many_sleeper(void) {
  struct timeval t = ms(50 + (long)((intptr_t)eventer_aco_arg() % 50));
  T_EQ(eventer_aco_sleep(&t), 0);
  woke++;
}

static void test_100k_sleepers(void) {
  ev_setup_external(1);
  woke = 0;
  int n = (int)t_scale(100000, 20);
  /* TSan gives each coroutine a fiber and dies past ~8000 live ones */
  if (!strcmp(t_mode(), "tsan")) n = 4000;
  for (int i = 0; i < n; i++) eventer_aco_start(many_sleeper, (void *)(intptr_t)i);
  T_EQ(woke, 0);
  ev_spin_until(&woke, n, 120000);
  ev_teardown();
}

/* coroutines still suspended at eventer_fini are dropped without running
 * again: asleep, parked with a timeout, reading with and without one.  No
 * use after free of their timers or waits; the references the eventer
 * held for their waits are released (the events the coroutines made are
 * theirs: freed here after fini); their handles report done. */
static eventer_aco_t fini_ev[2];
static void fini_reader(void) {
  long *tmo_ms = eventer_aco_arg();
  int fd = (int)tmo_ms[1];
  eventer_aco_t e = aco_fd(fd);
  fini_ev[tmo_ms[2]] = e;
  char buf[8];
  struct timeval tmo = ms(tmo_ms[0]);
  eventer_aco_read(e, buf, sizeof(buf), tmo_ms[0] ? &tmo : NULL);
  done++; /* not reached */
}

static void test_suspended_at_fini(void) {
  ev_setup_external(2);
  done = 0;
  int sv[2], sw[2];
  sockpair(sv);
  sockpair(sw);
  struct timeval long_sleep = ms(60000);
  long with_tmo[3] = {60000, sv[0], 0}, no_tmo[3] = {0, sw[0], 1};
  eventer_aco_co_t *h[4] = {
      eventer_aco_spawn(sleeper, &long_sleep, NULL),
      eventer_aco_spawn(parker_fn, NULL, NULL),
      eventer_aco_spawn(fini_reader, with_tmo, NULL),
      eventer_aco_spawn(fini_reader, no_tmo, NULL),
  };
  for (int i = 0; i < 4; i++) {
    T_CHECK(h[i] != NULL);
    T_CHECK(!eventer_aco_co_done(h[i]));
  }
  /* and one started on loop 1, which nobody drives: it never runs */
  eventer_aco_opts_t on1 = {.loop = eventer_pool_loop(eventer_pool("default"), 1)};
  T_CHECK(on1.loop != NULL);
  eventer_aco_co_t *never = eventer_aco_spawn(sleeper, &long_sleep, &on1);
  T_CHECK(never != NULL);
  T_CHECK(!eventer_aco_co_done(never));
  T_EQ(eventer_allocations_current(), 2);
  /* from a thread that is no longer the loop's, as the Go binding does */
  T_EQ(eventer_loop_detach(), 0);
  eventer_fini();
  T_EQ(done, 0);
  T_EQ(eventer_allocations_current(), 2); /* only the coroutines' own */
  for (int i = 0; i < 2; i++) eventer_free((eventer_t)fini_ev[i]);
  T_EQ(eventer_allocations_current(), 0);
  for (int i = 0; i < 4; i++) {
    T_CHECK(eventer_aco_co_done(h[i]));
    T_ERRNO(eventer_aco_cancel(h[i]), ESRCH);
    eventer_aco_co_release(h[i]);
  }
  T_CHECK(eventer_aco_co_done(never));
  T_ERRNO(eventer_aco_wake(never), ESRCH);
  eventer_aco_co_release(never);
  for (int i = 0; i < 2; i++) {
    close(sv[i]);
    close(sw[i]);
  }
}

/* asynch work still pending at eventer_fini: a job running on its thread,
 * jobs waiting in the queue's backlog (plain, gated and run_asynch with
 * the caller's event) never reach their COMPLETE on the loop; the job
 * records and the callers' events they hold are released with their
 * events (a leak under LeakSanitizer and valgrind before). */
static int pend_started, pend_go;
static eventer_jobq_t *pend_q;
static void pend_block(void *c) {
  (void)c;
  __atomic_store_n(&pend_started, 1, __ATOMIC_RELEASE);
  while (!__atomic_load_n(&pend_go, __ATOMIC_ACQUIRE)) usleep(1000);
}
static void pend_simple(void) {
  eventer_aco_simple_asynch_queue(pend_block, NULL, pend_q);
  done++; /* not reached */
}
static void pend_gated(void) {
  eventer_aco_gate_t g = eventer_aco_gate();
  for (int i = 0; i < 3; i++)
    eventer_aco_simple_asynch_queue_gated(g, pend_block, NULL, pend_q);
  eventer_aco_gate_wait(g);
  done++; /* not reached */
}
static void pend_run(void) {
  eventer_aco_run_asynch_queue(pend_q, eventer_alloc_asynch(user_asynch_cb, NULL));
  done++; /* not reached */
}

static void test_asynch_pending_at_fini(void) {
  ev_setup_external(1);
  done = 0;
  pend_started = pend_go = 0;
  pend_q = eventer_jobq_create("pend_q");
  T_CHECK(pend_q != NULL);
  eventer_jobq_set_concurrency(pend_q, 1);
  eventer_aco_start(pend_simple, NULL); /* takes the one job thread */
  ev_spin_until(&pend_started, 1, 10000);
  eventer_aco_start(pend_gated, NULL);
  eventer_aco_start(pend_run, NULL);
  for (int i = 0; i < 3; i++) ev_turn();
  T_LE(1, eventer_allocations_current() - 5); /* 5 jobs and the caller's */
  /* the running job ends while nobody drives the loop: its COMPLETE waits
   * in the loop's inbox; the backlog is dropped by the queue's teardown */
  __atomic_store_n(&pend_go, 1, __ATOMIC_RELEASE);
  T_EQ(eventer_loop_detach(), 0);
  eventer_fini();
  T_EQ(done, 0);
  T_EQ(eventer_allocations_current(), 0);
}

T_MAIN({"start_and_sleep", test_start_and_sleep},
       {"asynch_pending_at_fini", test_asynch_pending_at_fini},
       {"run_asynch_owner", test_run_asynch_owner},
       {"suspended_at_fini", test_suspended_at_fini},
       {"sleep_cooperates", test_sleep_cooperates},
       {"no_stale_timeout", test_no_stale_timeout},
       {"read_timeout", test_read_timeout},
       {"eof_while_parked", test_eof_while_parked},
       {"reset_while_parked", test_reset_while_parked},
       {"ping_pong", test_ping_pong},
       {"full_duplex", test_full_duplex},
       {"accept_connect", test_accept_connect},
       {"close_while_waiting", test_close_while_waiting},
       {"cancel_and_join", test_cancel_and_join},
       {"join_edge_cases", test_join_edge_cases},
       {"wake_from_other_thread", test_wake_from_other_thread},
       {"wake_token", test_wake_token},
       {"start_off_loop", test_start_off_loop},
       {"yield_round_robin", test_yield_round_robin},
       {"asynch", test_asynch},
       {"try_run_keeps_gate", test_try_run_keeps_gate},
       {"off_loop_calls_fail_cleanly", test_off_loop_calls_fail_cleanly},
       {"stats", test_stats},
       {"no_refcount_leak", test_no_refcount_leak},
       {"recycled", test_recycled},
       {"100k_sleepers", test_100k_sleepers})
