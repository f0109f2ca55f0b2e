/*
 * test_eventer_aco_proxy.c - eventer_aco_proxy.h from C, the way the Go
 * binding uses it.  The test thread is the foreign driver: it calls
 * eventer_run_once(&step, &wait) in a loop and takes each
 * EVENTER_STEP_ACO_PROXY / _DATA step as the "resume" of the foreign
 * coroutine whose id it carries (copying the bytes of a DATA step before
 * the next run_once), each EVENTER_STEP_FOREIGN_WAKE as a wake-up, and
 * calls foreign callbacks itself.
 *
 * The foreign side does its own attempts the way a C driver can: a
 * classic eventer_read/write/accept on an aco event outside a coroutine is
 * the original, non-blocking call; when it would block, the proxy waits.
 *
 * Covered: proxy lifetime (also alive at eventer_fini); readiness waits
 * with and without read-through (EOF, reset, bad arguments); timeouts;
 * cancel (waiting, idle, from another thread through the driver's wake-up,
 * racing data); close while waiting; a reader and a writer on one event;
 * several completions in one iteration and the task fallback when two
 * complete in one callback; a full-duplex stream through three proxies;
 * sleep, yield, park and wake; the sync objects, shared with C coroutines;
 * asynch work (also on a queue destroyed before it ran); abort; misuse;
 * the driver's wake-up (also for loops past the 256th); foreign closures
 * and eventer_call_on_thread_stack.
 */
#include "evtest.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "eventer_aco.h"
#include "eventer_aco_proxy.h"
#include "eventer_aco_sync.h"

/* ---- helpers --------------------------------------------------------------- */

static struct timeval ms(long v) {
  struct timeval t = {v / 1000, (v % 1000) * 1000};
  return t;
}

static void sockpair(int sv[2]) {
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
       0);
}

/* a connected TCP pair on loopback (an RST is possible with SO_LINGER 0);
 * *srv is non-blocking */
static void tcp_pair(int *cli, int *srv) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  T_GE(l, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  T_EQ(bind(l, (struct sockaddr *)&sa, sl), 0);
  T_EQ(listen(l, 1), 0);
  T_EQ(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
  *cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  T_EQ(connect(*cli, (struct sockaddr *)&sa, sl), 0);
  *srv = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  T_GE(*srv, 0);
  close(l);
}

static int dummy_cb(eventer_t e, int m, void *c, struct timeval *n) {
  (void)e, (void)m, (void)c, (void)n;
  return 0;
}

static void run_thread(void *(*fn)(void *), void *arg) {
  pthread_t t;
  T_EQ(pthread_create(&t, NULL, fn, arg), 0);
  T_EQ(pthread_join(t, NULL), 0);
}

/* fills fd's send buffer until a write would block; returns the bytes */
static size_t fill_sndbuf(int fd) {
  static char junk[4096];
  size_t total = 0;
  for (;;) {
    ssize_t n = write(fd, junk, sizeof(junk));
    if (n < 0) {
      T_CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
      return total;
    }
    total += (size_t)n;
  }
}

static size_t drain_fd(int fd) {
  static char b[65536];
  size_t total = 0;
  ssize_t n;
  while ((n = read(fd, b, sizeof(b))) > 0) total += (size_t)n;
  return total;
}

/* ---- the foreign driver ------------------------------------------------------ */

typedef struct {
  int kind;
  uint64_t id;
  int64_t result;
  int err;
  long iter;      /* iterations finished before it was handed out */
  long call;      /* the run_once call (1-based) that handed it out */
  uint64_t at_us; /* when */
  size_t ndata;   /* DATA: bytes copied out of the loop's buffer */
  char data[4096];
} resume_t;

#define MAXRES 256
static resume_t res[MAXRES];
static int nres;
static long iters, calls;
static int wake_steps, cb_steps, last_rc;
static eventer_step_t step;
/* stream tests take resumes here instead of res[] */
static void (*on_resume)(const resume_t *r);
static void (*on_wake)(void);

static void drv_setup(int concurrency) {
  ev_setup_external(concurrency);
  T_EQ(eventer_foreign_reset(), 0); /* as a driver does after each init */
  memset(&step, 0, sizeof(step));
  nres = 0;
  iters = calls = 0;
  wake_steps = cb_steps = 0;
  last_rc = EVENTER_RUN_DONE;
  on_resume = NULL;
  on_wake = NULL;
}

/* One run_once as the Go driver does it; at most one step is handled. */
static int drive(const struct timeval *wait) {
  calls++;
  int rc = eventer_run_once(&step, wait);
  T_CHECKF(rc == EVENTER_RUN_DONE || rc == EVENTER_RUN_STEP,
           "run_once rc %d errno %d", rc, errno);
  last_rc = rc;
  if (rc == EVENTER_RUN_DONE) {
    iters++;
    return rc;
  }
  switch (step.kind) {
  case EVENTER_STEP_ACO_PROXY:
  case EVENTER_STEP_ACO_PROXY_DATA: {
    static resume_t tmp;
    resume_t *r = &tmp;
    if (!on_resume) {
      T_CHECK(nres < MAXRES);
      r = &res[nres++];
    }
    r->kind = step.kind;
    r->id = step.u64[0];
    r->result = (int64_t)step.u64[1];
    r->err = (int)(int64_t)step.u64[2];
    r->iter = iters;
    r->call = calls;
    r->at_us = t_now_us();
    r->ndata = 0;
    if (r->result < 0)
      T_CHECKF(r->err != 0, "id %llu: result -1 without errno",
               (unsigned long long)r->id);
    else
      T_EQ(r->err, 0);
    if (step.kind == EVENTER_STEP_ACO_PROXY_DATA && r->result > 0) {
      /* the bytes live in a loop-owned buffer: copy them out now */
      T_CHECK(step.closure != NULL);
      T_LE(r->result, (int64_t)sizeof(r->data));
      r->ndata = (size_t)r->result;
      memcpy(r->data, step.closure, r->ndata);
    }
    step.kind = EVENTER_STEP_NONE;
    if (on_resume) on_resume(r);
    break;
  }
  case EVENTER_STEP_FOREIGN_WAKE:
    wake_steps++;
    step.kind = EVENTER_STEP_NONE;
    if (on_wake) on_wake();
    break;
  case EVENTER_STEP_CALLBACK:
    cb_steps++;
    T_CHECK(eventer_callback_is_foreign(eventer_get_callback(step.e)));
    step.rv = eventer_get_callback(step.e)(step.e, step.mask, step.closure,
                                           &step.now);
    break; /* kind stays CALLBACK: run_once applies rv */
  default:
    T_FAIL("unexpected step kind %d", step.kind);
  }
  return rc;
}

/* Drives (5 ms waits) until n resumes were recorded; stops right at the
 * run_once that handed out the n-th. */
static void drive_until_res(int n, int timeout_ms) {
  struct timeval w = ms(5);
  uint64_t end = t_now_us() + (uint64_t)timeout_ms * 1000u;
  while (nres < n) {
    if (t_now_us() > end)
      T_FAIL("timed out waiting for resume %d (have %d)", n, nres);
    drive(&w);
  }
}

static void drive_until(volatile int *flag, int want, int timeout_ms) {
  struct timeval w = ms(5);
  uint64_t end = t_now_us() + (uint64_t)timeout_ms * 1000u;
  while (__atomic_load_n(flag, __ATOMIC_SEQ_CST) < want) {
    if (t_now_us() > end)
      T_FAIL("timed out: %d < %d after %d ms", *flag, want, timeout_ms);
    drive(&w);
  }
}

/* Finishes a paused iteration (nothing may be handed out meanwhile). */
static void finish_iteration(void) {
  struct timeval zero = {0, 0};
  int before = nres, w = wake_steps, c = cb_steps;
  while (last_rc == EVENTER_RUN_STEP) drive(&zero);
  T_EQ(nres, before);
  T_EQ(wake_steps, w);
  T_EQ(cb_steps, c);
}

/* Runs iterations for about `ms_` ms (and at least 3) and checks that no
 * step of any kind is handed out meanwhile. */
static void quiet(int ms_) {
  struct timeval w = ms(1);
  int before = nres, wk = wake_steps, c = cb_steps;
  uint64_t end = t_now_us() + (uint64_t)ms_ * 1000u;
  int n = 0;
  while (n < 3 || t_now_us() < end) {
    drive(&w);
    n++;
  }
  finish_iteration();
  T_CHECKF(nres == before, "unexpected resume: id %llu kind %d result %lld",
           (unsigned long long)res[nres - 1].id, res[nres - 1].kind,
           (long long)res[nres - 1].result);
  T_EQ(wake_steps, wk);
  T_EQ(cb_steps, c);
}

static void drv_teardown(void) {
  finish_iteration();
  ev_teardown();
}

/* Waits for the next resume and checks it (result INT64_MIN: any). */
static resume_t *expect_resume(uint64_t id, int kind, int64_t result, int err,
                               int timeout_ms) {
  int want = nres + 1;
  drive_until_res(want, timeout_ms);
  resume_t *r = &res[want - 1];
  T_EQ(r->id, id);
  T_EQ(r->kind, kind);
  if (result != INT64_MIN) T_EQ(r->result, result);
  T_EQ(r->err, err);
  return r;
}

/* ---- proxies ------------------------------------------------------------------- */

#define NO_TMO (-1L)

static const struct timeval *tmo(long ms_, struct timeval *buf) {
  if (ms_ < 0) return NULL;
  *buf = ms(ms_);
  return buf;
}

static eventer_aco_proxy_t *px_new(uint64_t id) {
  errno = 0;
  eventer_aco_proxy_t *p = eventer_aco_proxy_new(id);
  T_CHECKF(p != NULL, "eventer_aco_proxy_new: errno %d", errno);
  T_EQ(eventer_aco_proxy_busy(p), 0);
  return p;
}

static void px_free(eventer_aco_proxy_t *p) { T_EQ(eventer_aco_proxy_free(p), 0); }

static int px_wait(eventer_aco_proxy_t *p, eventer_t e, int mask,
                   size_t read_len, long tmo_ms) {
  struct timeval t;
  errno = 0;
  return eventer_aco_proxy_wait(p, e, mask, read_len, tmo(tmo_ms, &t));
}

static int px_sleep(eventer_aco_proxy_t *p, long ms_) {
  struct timeval t;
  errno = 0;
  return eventer_aco_proxy_sleep(p, tmo(ms_, &t));
}

static int px_park(eventer_aco_proxy_t *p, long tmo_ms) {
  struct timeval t;
  errno = 0;
  return eventer_aco_proxy_park(p, tmo(tmo_ms, &t));
}

static int px_sync(eventer_aco_proxy_t *p, int kind, void *obj, void *elem,
                   long tmo_ms) {
  struct timeval t;
  errno = 0;
  return eventer_aco_proxy_sync(p, kind, obj, elem, tmo(tmo_ms, &t));
}

/* the result of a DONE call */
static void px_done(eventer_aco_proxy_t *p, int64_t result, int err) {
  int e = -99;
  T_EQ(eventer_aco_proxy_result(p, &e), result);
  T_EQ(e, err);
}

/* An aco event for fd of the calling loop (converted in a C coroutine:
 * eventer_set_eventer_aco). */
static eventer_t conv_in, conv_out;
static void convert_co(void) { conv_out = (eventer_t)eventer_set_eventer_aco(conv_in); }
static eventer_t px_convert(int fd) {
  conv_in = eventer_alloc_fd(dummy_cb, NULL, fd, EVENTER_READ);
  T_CHECK(conv_in != NULL);
  conv_out = NULL;
  eventer_aco_start(convert_co, NULL);
  T_PTR_EQ(conv_out, conv_in);
  T_CHECK(eventer_is_aco(conv_out));
  T_PTR_EQ(eventer_find_fd(fd), NULL); /* converted, not registered */
  return conv_out;
}

/* The foreign side's read: the attempt outside any coroutine (the original
 * opset, non-blocking), then a wait when it would block.  Returns the
 * bytes read, or -2 when the proxy now waits (*mask: for what). */
static int fx_read(eventer_aco_proxy_t *p, eventer_t e, char *buf, size_t len,
                   size_t read_len, long tmo_ms) {
  int mask = 0;
  int rv = eventer_read(e, buf, len, &mask);
  if (rv >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return rv;
  int rc = px_wait(p, e, mask, read_len, tmo_ms);
  T_CHECKF(rc != EVENTER_PROXY_MISUSE, "wait: errno %d", errno);
  return rc == EVENTER_PROXY_PARKED ? -2 : -3;
}

/* ---- lifetime ------------------------------------------------------------------- */

static eventer_aco_proxy_t *co_made[2];
static int co_step;

static void make_proxies_in_co(void) {
  co_made[0] = eventer_aco_proxy_new(101);
  co_made[1] = eventer_aco_proxy_new(102);
  T_CHECK(co_made[0] && co_made[1]);
  co_step = 1;
}

static void *new_off_loop(void *arg) {
  int *err = arg;
  errno = 0;
  eventer_aco_proxy_t *p = eventer_aco_proxy_new(9);
  *err = p == NULL ? errno : -1;
  return NULL;
}

static void test_new_and_free(void) {
  /* no eventer at all, and a plain thread: NULL/EINVAL */
  errno = 0;
  T_PTR_EQ(eventer_aco_proxy_new(1), NULL);
  T_EQ(errno, EINVAL);
  drv_setup(1);
  int err = 0;
  run_thread(new_off_loop, &err);
  T_EQ(err, EINVAL);

  eventer_aco_proxy_t *p = px_new(7);
  px_free(p);
  /* NULL */
  T_EQ(eventer_aco_proxy_free(NULL), 0);
  T_EQ(eventer_aco_proxy_busy(NULL), 0);
  T_ERRNO(eventer_aco_proxy_cancel(NULL), EINVAL);
  T_ERRNO(eventer_aco_proxy_wake(NULL), EINVAL);
  T_ERRNO(eventer_aco_proxy_abort(NULL), EINVAL);
  T_EQ(eventer_aco_proxy_result(NULL, &err), -1);
  T_EQ(err, EINVAL);

  /* made inside a coroutine: usable (and freeable) from the driver */
  co_step = 0;
  eventer_aco_start(make_proxies_in_co, NULL);
  T_EQ(co_step, 1);
  T_EQ(px_sleep(co_made[0], 5), EVENTER_PROXY_PARKED);
  expect_resume(101, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  px_free(co_made[0]);
  px_free(co_made[1]);

  /* many */
  int n = (int)t_scale(2000, 10);
  eventer_aco_proxy_t **ps = calloc((size_t)n, sizeof(*ps));
  for (int i = 0; i < n; i++) ps[i] = px_new((uint64_t)i);
  for (int i = n - 1; i >= 0; i--) px_free(ps[i]);
  free(ps);
  quiet(5);

  /* alive at eventer_fini (a foreign coroutine that never ended): one
   * idle, one sleeping, one waiting on a semaphore; and two that completed
   * in one callback: the second one's completion still waits in a task for
   * the next iteration.  fini frees them and what their waits hold
   * (LSan/valgrind and the allocation count see a leak otherwise). */
  px_new(11);
  T_EQ(px_sleep(px_new(12), 60000), EVENTER_PROXY_PARKED);
  eventer_aco_sem_t *sem = eventer_aco_sem_new(0);
  T_EQ(px_sync(px_new(15), EVENTER_PROXY_SEM_WAIT, sem, NULL, NO_TMO),
       EVENTER_PROXY_PARKED);
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *r1 = px_new(13), *r2 = px_new(14), *r3 = px_new(16);
  eventer_t e = px_convert(sv[0]);
  T_EQ(px_wait(r1, e, EVENTER_READ, 64, NO_TMO), EVENTER_PROXY_PARKED);
  T_EQ(px_wait(r2, e, EVENTER_READ, 64, NO_TMO), EVENTER_PROXY_PARKED);
  T_EQ(px_wait(r3, e, EVENTER_WRITE, 0, 60000), EVENTER_PROXY_PARKED);
  T_EQ(write(sv[1], "both", 4), 4);
  drive_until_res(nres + 1, 5000);
  T_CHECK(eventer_aco_proxy_busy(r2));
  eventer_aco_free((eventer_aco_t)e);
  drv_teardown();
  T_EQ(eventer_aco_sem_free(sem), 0); /* fini unlinked its waiter */
  close(sv[0]);
  close(sv[1]);
}

/* ---- readiness waits and read-through ----------------------------------------------- */

static void test_wait_read_through(void) {
  drv_setup(1);
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(21);
  eventer_t e = px_convert(sv[0]);
  char buf[64];

  /* data there: the attempt reads it, no wait */
  T_EQ(write(sv[1], "hello", 5), 5);
  T_EQ(fx_read(p, e, buf, sizeof(buf), 64, NO_TMO), 5);
  T_CHECK(!memcmp(buf, "hello", 5));
  T_EQ(eventer_aco_proxy_busy(p), 0);
  quiet(5);
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL); /* nothing registered */

  /* read_len > 0: the bytes come with the step */
  T_EQ(fx_read(p, e, buf, sizeof(buf), 64, NO_TMO), -2);
  T_EQ(eventer_aco_proxy_busy(p), 1);
  T_PTR_EQ(eventer_find_fd(sv[0]), e);
  /* one call at a time */
  T_EQ(px_wait(p, e, EVENTER_READ, 64, NO_TMO), EVENTER_PROXY_MISUSE);
  T_EQ(errno, EBUSY);
  T_EQ(px_sleep(p, 10), EVENTER_PROXY_MISUSE);
  T_EQ(errno, EBUSY);
  T_ERRNO(eventer_aco_proxy_free(p), EBUSY);
  quiet(5);
  T_EQ(write(sv[1], "abcdef", 6), 6);
  resume_t *r = expect_resume(21, EVENTER_STEP_ACO_PROXY_DATA, 6, 0, 5000);
  T_EQ(r->ndata, 6);
  T_CHECK(!memcmp(r->data, "abcdef", 6));
  T_EQ(eventer_aco_proxy_busy(p), 0);
  T_EQ(drain_fd(sv[0]), 0); /* read through: nothing left */
  quiet(5);

  /* read_len smaller than what is there: exactly read_len, the rest stays */
  T_EQ(px_wait(p, e, EVENTER_READ, 4, NO_TMO), EVENTER_PROXY_PARKED);
  T_EQ(write(sv[1], "0123456789", 10), 10);
  r = expect_resume(21, EVENTER_STEP_ACO_PROXY_DATA, 4, 0, 5000);
  T_CHECK(!memcmp(r->data, "0123", 4));
  /* already readable when the wait starts: handed out at the next run_once */
  T_EQ(px_wait(p, e, EVENTER_READ, 64, NO_TMO), EVENTER_PROXY_PARKED);
  r = expect_resume(21, EVENTER_STEP_ACO_PROXY_DATA, 6, 0, 5000);
  T_CHECK(!memcmp(r->data, "456789", 6));

  /* read_len 0: a plain step, the data stays in the socket */
  T_EQ(px_wait(p, e, EVENTER_READ, 0, NO_TMO), EVENTER_PROXY_PARKED);
  quiet(5);
  T_EQ(write(sv[1], "q", 1), 1);
  expect_resume(21, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  T_EQ(fx_read(p, e, buf, sizeof(buf), 64, NO_TMO), 1);
  T_EQ(buf[0], 'q');

  /* a WRITE readiness wait: plain step (never a read-through) */
  T_EQ(px_wait(p, e, EVENTER_WRITE, 64, NO_TMO), EVENTER_PROXY_PARKED);
  expect_resume(21, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);

  /* EOF: a DATA step with count 0 */
  T_EQ(px_wait(p, e, EVENTER_READ, 64, NO_TMO), EVENTER_PROXY_PARKED);
  close(sv[1]);
  r = expect_resume(21, EVENTER_STEP_ACO_PROXY_DATA, 0, 0, 5000);
  T_EQ(r->ndata, 0);
  quiet(5);

  /* bad arguments end at once, like eventer_aco_wait_ready */
  eventer_t classic = eventer_alloc_fd(dummy_cb, NULL, sv[0], EVENTER_READ);
  T_EQ(px_wait(p, classic, EVENTER_READ, 16, NO_TMO), EVENTER_PROXY_DONE);
  px_done(p, -1, EINVAL);
  T_EQ(px_wait(p, e, 0, 16, NO_TMO), EVENTER_PROXY_DONE); /* empty mask */
  px_done(p, -1, EINVAL);
  T_EQ(px_wait(p, NULL, EVENTER_READ, 16, NO_TMO), EVENTER_PROXY_DONE);
  px_done(p, -1, EINVAL);
  T_EQ(eventer_aco_proxy_busy(p), 0);
  eventer_free(classic);
  quiet(5);
  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  close(sv[0]);

  /* a peer's reset: the read-through reports it */
  int cli, srv;
  tcp_pair(&cli, &srv);
  p = px_new(22);
  e = px_convert(srv);
  T_EQ(px_wait(p, e, EVENTER_READ, 64, NO_TMO), EVENTER_PROXY_PARKED);
  quiet(5);
  struct linger lg = {1, 0};
  T_EQ(setsockopt(cli, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  close(cli); /* RST */
  expect_resume(22, EVENTER_STEP_ACO_PROXY_DATA, -1, ECONNRESET, 5000);
  quiet(5);
  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  close(srv);
  T_EQ(eventer_allocations_current(), 0);
  drv_teardown();
}

/* ---- timeouts ---------------------------------------------------------------------------- */

static void test_timeouts(void) {
  drv_setup(1);
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(31);
  eventer_t e = px_convert(sv[0]);
  for (int rl = 0; rl <= 16; rl += 16) {
    uint64_t t0 = t_now_us();
    T_EQ(px_wait(p, e, EVENTER_READ, (size_t)rl, 30), EVENTER_PROXY_PARKED);
    T_PTR_EQ(eventer_find_fd(sv[0]), e);
    resume_t *r = expect_resume(31, EVENTER_STEP_ACO_PROXY, -1, ETIMEDOUT, 5000);
    uint64_t waited = r->at_us - t0;
    T_GE(waited, 30000); /* never early */
    T_LE_LATE(waited, 30000 + ev_late_bound_us());
    T_PTR_EQ(eventer_find_fd(sv[0]), NULL); /* the timeout unregistered it */
    T_EQ(eventer_aco_proxy_busy(p), 0);
    quiet(5);
  }

  /* {0,0} and no data: ends at once */
  T_EQ(px_wait(p, e, EVENTER_READ, 16, 0), EVENTER_PROXY_DONE);
  px_done(p, -1, ETIMEDOUT);
  T_EQ(eventer_aco_proxy_busy(p), 0);
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL);
  quiet(5);

  /* a timeout that does not expire leaves nothing behind */
  T_EQ(px_wait(p, e, EVENTER_READ, 16, 40), EVENTER_PROXY_PARKED);
  T_EQ(write(sv[1], "in", 2), 2);
  expect_resume(31, EVENTER_STEP_ACO_PROXY_DATA, 2, 0, 5000);
  quiet(60); /* past the deadline */

  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  close(sv[0]);
  close(sv[1]);
  drv_teardown();
}

/* ---- cancel -------------------------------------------------------------------------------------
 * Other threads cancel a foreign coroutine through its driver: they wake
 * the driver (eventer_foreign_wake), which cancels on the loop thread. */

static eventer_aco_proxy_t *cancel_target;
static int cancel_rc = -99;
static void cancel_on_wake(void) {
  errno = 0;
  cancel_rc = eventer_aco_proxy_cancel(cancel_target);
}

static void *wake_driver_later(void *arg) {
  usleep(5000);
  T_EQ(eventer_foreign_wake(arg), 0);
  return NULL;
}

static void cancel_case(int from_thread, int free_first) {
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(41);
  eventer_t e = px_convert(sv[0]);
  T_EQ(px_wait(p, e, EVENTER_READ, 16, NO_TMO), EVENTER_PROXY_PARKED);
  T_PTR_EQ(eventer_find_fd(sv[0]), e);
  pthread_t t;
  if (from_thread) {
    cancel_target = p;
    cancel_rc = -99;
    on_wake = cancel_on_wake;
    T_EQ(pthread_create(&t, NULL, wake_driver_later, eventer_loop_current()), 0);
  } else {
    T_EQ(eventer_aco_proxy_cancel(p), 0);
    T_EQ(eventer_aco_proxy_busy(p), 1); /* reported by a step */
    T_ERRNO(eventer_aco_proxy_cancel(p), EAGAIN); /* on its way already */
  }
  if (free_first) { /* the driver drops the event before the step */
    eventer_aco_free((eventer_aco_t)e);
    T_EQ(eventer_allocations_current(), 1); /* the waiting proxy's */
  }
  int want = nres + 1;
  drive_until_res(want, 5000);
  /* the moment the step is seen: it is off epoll already */
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL);
  T_EQ(res[want - 1].id, 41);
  T_EQ(res[want - 1].kind, EVENTER_STEP_ACO_PROXY);
  T_EQ(res[want - 1].result, -1);
  T_EQ(res[want - 1].err, ECANCELED);
  T_EQ(eventer_aco_proxy_busy(p), 0);
  if (from_thread) {
    T_EQ(pthread_join(t, NULL), 0);
    T_EQ(cancel_rc, 0);
    on_wake = NULL;
  }
  quiet(5);
  if (free_first) {
    T_EQ(eventer_allocations_current(), 0);
    e = px_convert(sv[0]);
  }
  /* the proxy goes on: the next call works */
  T_EQ(write(sv[1], "ok", 2), 2);
  T_EQ(px_wait(p, e, EVENTER_READ, 16, NO_TMO), EVENTER_PROXY_PARKED);
  expect_resume(41, EVENTER_STEP_ACO_PROXY_DATA, 2, 0, 5000);
  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  T_EQ(eventer_allocations_current(), 0);
  close(sv[0]);
  close(sv[1]);
}

static void test_cancel(void) {
  drv_setup(1);
  cancel_case(0, 0);
  cancel_case(1, 0);
  cancel_case(0, 1);

  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(42);
  eventer_t e = px_convert(sv[0]);
  /* nothing to cancel: the foreign side keeps it (EAGAIN) */
  T_ERRNO(eventer_aco_proxy_cancel(p), EAGAIN);
  T_EQ(px_wait(p, e, EVENTER_READ, 16, NO_TMO), EVENTER_PROXY_PARKED);
  T_EQ(write(sv[1], "x", 1), 1);
  expect_resume(42, EVENTER_STEP_ACO_PROXY_DATA, 1, 0, 5000);
  /* sleeps and parks are cancellable too */
  T_EQ(px_sleep(p, 60000), EVENTER_PROXY_PARKED);
  T_EQ(eventer_aco_proxy_cancel(p), 0);
  expect_resume(42, EVENTER_STEP_ACO_PROXY, -1, ECANCELED, 5000);
  T_EQ(px_park(p, NO_TMO), EVENTER_PROXY_PARKED);
  T_EQ(eventer_aco_proxy_cancel(p), 0);
  expect_resume(42, EVENTER_STEP_ACO_PROXY, -1, ECANCELED, 5000);
  quiet(5);

  /* cancel and data race: the cancel (applied first) wins, the data
   * stays for the next read */
  T_EQ(px_wait(p, e, EVENTER_READ, 16, NO_TMO), EVENTER_PROXY_PARKED);
  T_EQ(write(sv[1], "late", 4), 4);
  T_EQ(eventer_aco_proxy_cancel(p), 0);
  expect_resume(42, EVENTER_STEP_ACO_PROXY, -1, ECANCELED, 5000);
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL);
  char buf[16];
  T_EQ(fx_read(p, e, buf, sizeof(buf), 16, NO_TMO), 4);
  T_CHECK(!memcmp(buf, "late", 4));
  quiet(5);

  /* off the loop thread: refused, nothing changes */
  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  close(sv[0]);
  close(sv[1]);
  drv_teardown();
}

/* ---- close while waiting ---------------------------------------------------------------- */

static void test_close_while_waiting(void) {
  drv_setup(1);
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *a = px_new(51), *b = px_new(52);
  eventer_t e = px_convert(sv[0]);
  T_EQ(px_wait(a, e, EVENTER_READ, 16, NO_TMO), EVENTER_PROXY_PARKED);
  T_EQ(px_wait(b, e, EVENTER_WRITE, 0, NO_TMO), EVENTER_PROXY_PARKED);
  /* the driver closes it (main context: no coroutine needed) */
  T_EQ(eventer_aco_close((eventer_aco_t)e), 0);
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL);
  char buf[16];
  T_EQ(read(sv[1], buf, sizeof(buf)), 0); /* the peer sees EOF */
  /* the driver may drop its reference before the waiters hear of it */
  eventer_aco_free((eventer_aco_t)e);
  T_EQ(eventer_allocations_current(), 1);
  int n0 = nres;
  drive_until_res(n0 + 2, 5000);
  for (int i = n0; i < n0 + 2; i++) {
    T_EQ(res[i].kind, EVENTER_STEP_ACO_PROXY);
    T_EQ(res[i].result, -1);
    T_EQ(res[i].err, EBADF);
  }
  T_EQ(eventer_allocations_current(), 0);
  quiet(5);

  /* after a close every wait fails with EBADF, and attempts too */
  e = px_convert(sv[1]);
  T_EQ(eventer_aco_close((eventer_aco_t)e), 0);
  T_ERRNO(eventer_aco_close((eventer_aco_t)e), EBADF);
  T_EQ(px_wait(a, e, EVENTER_READ, 4, NO_TMO), EVENTER_PROXY_DONE);
  px_done(a, -1, EBADF);
  int mask;
  T_ERRNO(eventer_read(e, buf, sizeof(buf), &mask), EBADF);
  quiet(5);
  px_free(a);
  px_free(b);
  eventer_aco_free((eventer_aco_t)e);
  drv_teardown();
}

/* ---- several completions --------------------------------------------------------------------- */

/* A reader and a writer on one event, ready in the same callback: the
 * first completion takes the step slot of this run_once, the second comes
 * from the task phase of the next iteration. */
static void duplex_case(void) {
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *r = px_new(61), *w = px_new(62);
  eventer_t e = px_convert(sv[0]);
  T_GE(fill_sndbuf(sv[0]), 1);
  T_EQ(px_wait(r, e, EVENTER_READ, 16, NO_TMO), EVENTER_PROXY_PARKED);
  T_EQ(px_wait(w, e, EVENTER_WRITE, 0, NO_TMO), EVENTER_PROXY_PARKED);
  T_PTR_EQ(eventer_find_fd(sv[0]), e);
  T_EQ(eventer_get_mask(e) & (EVENTER_READ | EVENTER_WRITE),
       EVENTER_READ | EVENTER_WRITE);
  quiet(5);
  /* both ready before the loop looks */
  T_GE(drain_fd(sv[1]), 1);
  T_EQ(write(sv[1], "r", 1), 1);
  int n0 = nres;
  drive_until_res(n0 + 1, 5000);
  resume_t *a = &res[n0];
  T_EQ(a->id, 61);
  T_EQ(a->result, 1);
  T_EQ(a->kind, EVENTER_STEP_ACO_PROXY_DATA);
  T_EQ(a->data[0], 'r');
  /* the writer's wait has ended but it is not resumed yet: still busy */
  T_EQ(px_wait(w, e, EVENTER_WRITE, 0, NO_TMO), EVENTER_PROXY_MISUSE);
  T_EQ(errno, EBUSY);
  T_ERRNO(eventer_aco_proxy_free(w), EBUSY);
  T_ERRNO(eventer_aco_proxy_cancel(w), EAGAIN);
  drive_until_res(n0 + 2, 5000);
  resume_t *b = &res[n0 + 1];
  T_EQ(b->id, 62);
  T_EQ(b->kind, EVENTER_STEP_ACO_PROXY);
  T_EQ(b->result, 0);
  /* not lost, not merged: the paused iteration ended (one DONE), the next
   * one handed it out from its task phase */
  T_EQ(b->iter, a->iter + 1);
  T_EQ(b->call, a->call + 2);
  quiet(5);
  px_free(r);
  px_free(w);
  eventer_aco_free((eventer_aco_t)e);
  close(sv[0]);
  close(sv[1]);
}

/* Two read-throughs due in one callback: the second cannot have the step
 * slot, so it is reported ready without data (the driver reads itself). */
static void two_readers_case(void) {
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *r1 = px_new(63), *r2 = px_new(64);
  eventer_t e = px_convert(sv[0]);
  T_EQ(px_wait(r1, e, EVENTER_READ, 64, NO_TMO), EVENTER_PROXY_PARKED);
  T_EQ(px_wait(r2, e, EVENTER_READ, 64, NO_TMO), EVENTER_PROXY_PARKED);
  T_EQ(write(sv[1], "both", 4), 4);
  int n0 = nres;
  drive_until_res(n0 + 2, 5000);
  T_EQ(res[n0].id, 63);
  T_EQ(res[n0].kind, EVENTER_STEP_ACO_PROXY_DATA);
  T_EQ(res[n0].result, 4);
  T_CHECK(!memcmp(res[n0].data, "both", 4));
  T_EQ(res[n0 + 1].id, 64);
  T_EQ(res[n0 + 1].kind, EVENTER_STEP_ACO_PROXY);
  T_EQ(res[n0 + 1].result, 0);
  T_EQ(res[n0 + 1].iter, res[n0].iter + 1);
  quiet(5);
  px_free(r1);
  px_free(r2);
  eventer_aco_free((eventer_aco_t)e);
  close(sv[0]);
  close(sv[1]);
}

#define NFD 8
static void many_fds_case(void) {
  int sv[NFD][2];
  eventer_aco_proxy_t *p[NFD];
  eventer_t e[NFD];
  for (int i = 0; i < NFD; i++) {
    sockpair(sv[i]);
    p[i] = px_new(100 + (uint64_t)i);
    e[i] = px_convert(sv[i][0]);
    T_EQ(px_wait(p[i], e[i], EVENTER_READ, i % 2 ? 8 : 0, 5000),
         EVENTER_PROXY_PARKED);
  }
  quiet(5);
  /* ready in this order before the loop polls */
  for (int i = 0; i < NFD; i++) {
    char c = (char)('A' + i);
    T_EQ(write(sv[i][1], &c, 1), 1);
  }
  int n0 = nres;
  drive_until_res(n0 + NFD, 5000);
  for (int i = 0; i < NFD; i++) {
    resume_t *r = &res[n0 + i];
    /* one step per callback, in the order epoll reported them, all in one
     * iteration (no DONE between them) */
    T_EQ(r->id, 100 + i);
    T_EQ(r->iter, res[n0].iter);
    T_EQ(r->call, res[n0].call + i);
    if (i % 2 == 0) {
      T_EQ(r->kind, EVENTER_STEP_ACO_PROXY);
      T_EQ(r->result, 0);
    } else {
      T_EQ(r->kind, EVENTER_STEP_ACO_PROXY_DATA);
      T_EQ(r->result, 1);
      T_EQ(r->data[0], 'A' + i);
    }
  }
  T_EQ(drive(&(struct timeval){0, 0}), EVENTER_RUN_DONE);
  quiet(5);
  for (int i = 0; i < NFD; i++) {
    px_free(p[i]);
    eventer_aco_free((eventer_aco_t)e[i]);
    close(sv[i][0]);
    close(sv[i][1]);
  }
}

/* sleeps due in one timer phase: one step per timer, in deadline order */
static void many_timers_case(void) {
  eventer_aco_proxy_t *p[NFD];
  for (int i = 0; i < NFD; i++) {
    p[i] = px_new(200 + (uint64_t)i);
    T_EQ(px_sleep(p[i], 10), EVENTER_PROXY_PARKED);
  }
  finish_iteration();
  usleep(30000); /* all due */
  int n0 = nres;
  drive_until_res(n0 + NFD, 5000);
  for (int i = 0; i < NFD; i++) {
    T_EQ(res[n0 + i].id, 200 + i);
    T_EQ(res[n0 + i].kind, EVENTER_STEP_ACO_PROXY);
    T_EQ(res[n0 + i].result, 0);
    T_EQ(res[n0 + i].iter, res[n0].iter);
  }
  quiet(5);
  for (int i = 0; i < NFD; i++) px_free(p[i]);
}

static void test_several_completions(void) {
  drv_setup(1);
  duplex_case();
  two_readers_case();
  many_fds_case();
  many_timers_case();
  T_EQ(eventer_allocations_current(), 0);
  drv_teardown();
}

/* ---- a full-duplex stream through three foreign coroutines -----------------------------------
 * W writes a pattern on sv[0], E echoes everything from sv[1], R reads
 * the echo on sv[0] with read-through waits: R and W share one event.
 * Each foreign coroutine attempts its I/O itself and has at most one wait
 * outstanding, and every wait is resumed exactly once. */

#define CH 4096
typedef struct fco {
  uint64_t id;
  eventer_aco_proxy_t *p;
  int outstanding;
  int done;
  long resumes;
  void (*go)(struct fco *c, const resume_t *r);
} fco_t;

static struct {
  int sv[2];
  eventer_t e0, e1;
  unsigned char *out;
  size_t total, sent, got;
  char ebuf[CH];
  int64_t e_have, e_off; /* echo: bytes read, of which written */
  char rbuf[CH];
  long r_ready_only;     /* R resumed ready without data */
  fco_t w, e, r;
} S;

static fco_t *fco_of(uint64_t id) {
  if (id == S.w.id) return &S.w;
  if (id == S.e.id) return &S.e;
  if (id == S.r.id) return &S.r;
  T_FAIL("resume for unknown foreign id %llu", (unsigned long long)id);
  return NULL;
}

static void stream_resume(const resume_t *r) {
  fco_t *c = fco_of(r->id);
  T_CHECKF(c->outstanding, "id %llu resumed twice", (unsigned long long)r->id);
  c->outstanding = 0;
  c->resumes++;
  c->go(c, r);
}

/* waits for mask on e; 1 if it waits (0: ended at once, ready) */
static int fco_wait(fco_t *c, eventer_t e, int mask, size_t read_len) {
  int rc = px_wait(c->p, e, mask, read_len, NO_TMO);
  if (rc == EVENTER_PROXY_PARKED) {
    c->outstanding = 1;
    return 1;
  }
  T_EQ(rc, EVENTER_PROXY_DONE);
  px_done(c->p, 0, 0);
  return 0;
}

static void writer_go(fco_t *c, const resume_t *r) {
  if (r) T_CHECKF(r->result == 0, "writer wait: %lld/%d", (long long)r->result, r->err);
  while (S.sent < S.total) {
    size_t n = S.total - S.sent < 4 * CH ? S.total - S.sent : 4 * CH;
    int mask = 0;
    int rv = eventer_write(S.e0, S.out + S.sent, n, &mask);
    if (rv > 0) {
      S.sent += (size_t)rv;
      continue;
    }
    T_CHECKF(rv < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
             "write: %d/%d", rv, errno);
    if (fco_wait(c, S.e0, mask, 0)) return;
  }
  T_EQ(shutdown(S.sv[0], SHUT_WR), 0);
  c->done = 1;
}

static void echo_go(fco_t *c, const resume_t *r) {
  if (r) T_CHECKF(r->result == 0, "echo wait: %lld/%d", (long long)r->result, r->err);
  for (;;) {
    int mask = 0, rv;
    if (S.e_have == 0) {
      rv = eventer_read(S.e1, S.ebuf, CH, &mask);
      if (rv == 0) {
        T_EQ(shutdown(S.sv[1], SHUT_WR), 0);
        c->done = 1;
        return;
      }
      if (rv > 0) {
        S.e_have = rv;
        S.e_off = 0;
        continue;
      }
    } else {
      rv = eventer_write(S.e1, S.ebuf + S.e_off, (size_t)(S.e_have - S.e_off),
                         &mask);
      if (rv > 0) {
        S.e_off += rv;
        if (S.e_off == S.e_have) S.e_have = 0;
        continue;
      }
    }
    T_CHECKF(rv < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
             "echo: %d/%d", rv, errno);
    if (fco_wait(c, S.e1, mask, 0)) return;
  }
}

static void reader_consume(fco_t *c, const char *data, int64_t n) {
  T_CHECKF(n >= 0, "reader: %lld", (long long)n);
  if (n == 0) {
    c->done = 1;
    return;
  }
  T_LE(S.got + (size_t)n, S.total);
  T_CHECKF(!memcmp(data, S.out + S.got, (size_t)n), "stream corrupt at %zu",
           S.got);
  S.got += (size_t)n;
}

static void reader_go(fco_t *c, const resume_t *r) {
  if (r) {
    if (r->kind == EVENTER_STEP_ACO_PROXY_DATA) {
      T_EQ(r->ndata, r->result > 0 ? (size_t)r->result : 0);
      reader_consume(c, r->data, r->result);
      if (c->done) return;
    } else {
      T_EQ(r->result, 0);
      S.r_ready_only++;
    }
  }
  for (;;) {
    int mask = 0;
    int rv = eventer_read(S.e0, S.rbuf, CH, &mask);
    if (rv >= 0) {
      reader_consume(c, S.rbuf, rv);
      if (c->done) return;
      continue;
    }
    T_CHECKF(errno == EAGAIN || errno == EWOULDBLOCK, "read: %d", errno);
    if (fco_wait(c, S.e0, mask, CH)) return;
  }
}

static void test_stream(void) {
  drv_setup(1);
  memset(&S, 0, sizeof(S));
  sockpair(S.sv);
  /* small buffers: every proxy waits often */
  for (int i = 0; i < 2; i++) {
    int sz = 8192;
    T_EQ(setsockopt(S.sv[i], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
    T_EQ(setsockopt(S.sv[i], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
  }
  S.total = (size_t)t_scale(1 << 20, 8);
  S.out = malloc(S.total);
  for (size_t i = 0; i < S.total; i++) S.out[i] = (unsigned char)(i * 7 + i / 251);
  fco_t *all[3] = {&S.w, &S.e, &S.r};
  void (*gos[3])(fco_t *, const resume_t *) = {writer_go, echo_go, reader_go};
  for (int i = 0; i < 3; i++) {
    all[i]->id = 300 + (uint64_t)i;
    all[i]->p = px_new(all[i]->id);
    all[i]->go = gos[i];
  }
  S.e0 = px_convert(S.sv[0]);
  S.e1 = px_convert(S.sv[1]);
  on_resume = stream_resume;
  S.r.go(&S.r, NULL);
  S.e.go(&S.e, NULL);
  S.w.go(&S.w, NULL);
  struct timeval w = ms(5);
  uint64_t end = t_now_us() + 60u * 1000000u;
  while (!(S.w.done && S.e.done && S.r.done)) {
    if (t_now_us() > end)
      T_FAIL("stream stuck: sent %zu got %zu (w %d e %d r %d)", S.sent, S.got,
             S.w.done, S.e.done, S.r.done);
    drive(&w);
  }
  on_resume = NULL;
  T_EQ(S.sent, S.total);
  T_EQ(S.got, S.total);
  for (int i = 0; i < 3; i++) T_EQ(all[i]->outstanding, 0);
  /* every one of them waited and was resumed */
  for (int i = 0; i < 3; i++) T_GE(all[i]->resumes, 1);
  quiet(10);
  for (int i = 0; i < 3; i++) px_free(all[i]->p);
  eventer_aco_free((eventer_aco_t)S.e0);
  eventer_aco_free((eventer_aco_t)S.e1);
  T_EQ(eventer_allocations_current(), 0);
  close(S.sv[0]);
  close(S.sv[1]);
  free(S.out);
  drv_teardown();
}

/* ---- sleep, yield, park ------------------------------------------------------------------------ */

static void test_sleep_yield_park(void) {
  drv_setup(1);
  eventer_aco_proxy_t *p = px_new(81);

  /* sleep: on time, by a step */
  uint64_t t0 = t_now_us();
  T_EQ(px_sleep(p, 20), EVENTER_PROXY_PARKED);
  resume_t *r = expect_resume(81, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  T_GE(r->at_us - t0, 20000);
  T_LE_LATE(r->at_us - t0, 20000 + ev_late_bound_us());
  /* no duration is EINVAL (as eventer_aco_sleep(NULL)); {0,0} yields */
  T_EQ(px_sleep(p, NO_TMO), EVENTER_PROXY_DONE);
  px_done(p, -1, EINVAL);
  struct timeval neg = {-1, 0};
  T_EQ(eventer_aco_proxy_sleep(p, &neg), EVENTER_PROXY_DONE);
  px_done(p, -1, EINVAL);
  T_EQ(px_sleep(p, 0), EVENTER_PROXY_PARKED);
  expect_resume(81, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);

  /* yield: resumed by the loop's next timer phase */
  finish_iteration();
  T_EQ(eventer_aco_proxy_yield(p), EVENTER_PROXY_PARKED);
  long it = iters;
  r = expect_resume(81, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  T_EQ(r->iter, it);
  /* a cancelled yield */
  T_EQ(eventer_aco_proxy_yield(p), EVENTER_PROXY_PARKED);
  T_EQ(eventer_aco_proxy_cancel(p), 0);
  expect_resume(81, EVENTER_STEP_ACO_PROXY, -1, ECANCELED, 5000);

  /* park: woken by the driver */
  T_ERRNO(eventer_aco_proxy_wake(p), EAGAIN); /* not parked */
  T_EQ(px_park(p, 10000), EVENTER_PROXY_PARKED);
  T_ERRNO(eventer_aco_proxy_wake(px_new(82)), EAGAIN);
  quiet(5);
  T_EQ(eventer_aco_proxy_wake(p), 0);
  T_ERRNO(eventer_aco_proxy_wake(p), EAGAIN); /* woken already */
  expect_resume(81, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  /* timed out; {0,0}: at once */
  T_EQ(px_park(p, 20), EVENTER_PROXY_PARKED);
  expect_resume(81, EVENTER_STEP_ACO_PROXY, -1, ETIMEDOUT, 5000);
  T_EQ(px_park(p, 0), EVENTER_PROXY_DONE);
  px_done(p, -1, ETIMEDOUT);
  /* a sleep is not ended by a wake */
  T_EQ(px_sleep(p, 20), EVENTER_PROXY_PARKED);
  T_ERRNO(eventer_aco_proxy_wake(p), EAGAIN);
  expect_resume(81, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  quiet(5);
  px_free(p);
  drv_teardown();
}

/* ---- the sync objects --------------------------------------------------------------------------- */

static eventer_aco_sem_t *c_sem;
static int c_step;
static void c_sem_poster(void) {
  struct timeval t = ms(5);
  for (int i = 0; i < 3; i++) {
    eventer_aco_sleep(&t);
    T_EQ(eventer_aco_sem_post(c_sem), 0);
  }
  c_step = 1;
}

static eventer_aco_mutex_t *c_mu;
static void c_mutex_taker(void) {
  struct timeval t = ms(5000);
  T_EQ(eventer_aco_mutex_lock(c_mu, &t), 0);
  c_step = 2;
  T_EQ(eventer_aco_mutex_unlock(c_mu), 0);
  c_step = 3;
}

static void test_sync(void) {
  drv_setup(1);
  eventer_aco_proxy_t *p = px_new(91), *q = px_new(92);

  /* semaphore: units at once, then waits for a C coroutine's posts */
  c_sem = eventer_aco_sem_new(1);
  T_EQ(px_sync(p, EVENTER_PROXY_SEM_WAIT, c_sem, NULL, NO_TMO),
       EVENTER_PROXY_DONE);
  px_done(p, 0, 0);
  c_step = 0;
  eventer_aco_start(c_sem_poster, NULL);
  for (int i = 0; i < 3; i++) {
    T_EQ(px_sync(p, EVENTER_PROXY_SEM_WAIT, c_sem, NULL, 5000),
         EVENTER_PROXY_PARKED);
    expect_resume(91, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  }
  drive_until(&c_step, 1, 5000);
  T_EQ(px_sync(p, EVENTER_PROXY_SEM_WAIT, c_sem, NULL, 20),
       EVENTER_PROXY_PARKED);
  expect_resume(91, EVENTER_STEP_ACO_PROXY, -1, ETIMEDOUT, 5000);
  T_EQ(px_sync(p, EVENTER_PROXY_SEM_WAIT, c_sem, NULL, 0), EVENTER_PROXY_DONE);
  px_done(p, -1, ETIMEDOUT);
  /* FIFO between proxies; a post from main context hands the unit over */
  T_EQ(px_sync(q, EVENTER_PROXY_SEM_WAIT, c_sem, NULL, NO_TMO),
       EVENTER_PROXY_PARKED);
  T_EQ(px_sync(p, EVENTER_PROXY_SEM_WAIT, c_sem, NULL, NO_TMO),
       EVENTER_PROXY_PARKED);
  T_ERRNO(eventer_aco_sem_free(c_sem), EBUSY);
  T_EQ(eventer_aco_sem_post(c_sem), 0);
  expect_resume(92, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  T_EQ(eventer_aco_proxy_cancel(p), 0);
  expect_resume(91, EVENTER_STEP_ACO_PROXY, -1, ECANCELED, 5000);
  T_EQ(eventer_aco_sem_value(c_sem), 0);
  T_EQ(eventer_aco_sem_free(c_sem), 0);

  /* mutex: the proxy owns it; a C coroutine waits for it */
  c_mu = eventer_aco_mutex_new();
  T_EQ(px_sync(p, EVENTER_PROXY_MUTEX_LOCK, c_mu, NULL, NO_TMO),
       EVENTER_PROXY_DONE);
  px_done(p, 0, 0);
  T_EQ(px_sync(p, EVENTER_PROXY_MUTEX_LOCK, c_mu, NULL, NO_TMO),
       EVENTER_PROXY_DONE);
  px_done(p, -1, EDEADLK);
  T_EQ(px_sync(q, EVENTER_PROXY_MUTEX_TRYLOCK, c_mu, NULL, NO_TMO),
       EVENTER_PROXY_DONE);
  px_done(q, -1, EBUSY);
  T_EQ(px_sync(q, EVENTER_PROXY_MUTEX_UNLOCK, c_mu, NULL, NO_TMO),
       EVENTER_PROXY_DONE);
  px_done(q, -1, EPERM); /* not its owner */
  c_step = 0;
  eventer_aco_start(c_mutex_taker, NULL);
  quiet(5);
  T_EQ(c_step, 0);
  T_EQ(px_sync(q, EVENTER_PROXY_MUTEX_LOCK, c_mu, NULL, NO_TMO),
       EVENTER_PROXY_PARKED);
  T_EQ(px_sync(p, EVENTER_PROXY_MUTEX_UNLOCK, c_mu, NULL, NO_TMO),
       EVENTER_PROXY_DONE);
  px_done(p, 0, 0);
  drive_until(&c_step, 3, 5000); /* the C coroutine came first */
  expect_resume(92, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  T_EQ(eventer_aco_mutex_locked(c_mu), 1);
  T_EQ(px_sync(q, EVENTER_PROXY_MUTEX_UNLOCK, c_mu, NULL, NO_TMO),
       EVENTER_PROXY_DONE);
  px_done(q, 0, 0);
  T_EQ(eventer_aco_mutex_free(c_mu), 0);

  /* wait group */
  eventer_aco_wg_t *wg = eventer_aco_wg_new();
  T_EQ(px_sync(p, EVENTER_PROXY_WG_WAIT, wg, NULL, NO_TMO), EVENTER_PROXY_DONE);
  px_done(p, 0, 0);
  T_EQ(eventer_aco_wg_add(wg, 2), 0);
  T_EQ(px_sync(p, EVENTER_PROXY_WG_WAIT, wg, NULL, NO_TMO),
       EVENTER_PROXY_PARKED);
  T_EQ(eventer_aco_wg_done(wg), 0);
  quiet(5);
  T_EQ(eventer_aco_wg_done(wg), 0);
  expect_resume(91, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  T_EQ(eventer_aco_wg_free(wg), 0);

  /* channel: the elements travel through the proxy's buffers */
  eventer_aco_chan_t *ch = eventer_aco_chan_new(4, 1);
  char in[4] = "abcd", out[4] = {0};
  T_EQ(px_sync(p, EVENTER_PROXY_CHAN_SEND, ch, in, NO_TMO), EVENTER_PROXY_DONE);
  px_done(p, 0, 0);
  memcpy(in, "efgh", 4);
  T_EQ(px_sync(p, EVENTER_PROXY_CHAN_SEND, ch, in, NO_TMO),
       EVENTER_PROXY_PARKED); /* full */
  T_EQ(px_sync(q, EVENTER_PROXY_CHAN_RECV, ch, out, NO_TMO),
       EVENTER_PROXY_DONE);
  px_done(q, 0, 0);
  T_CHECK(!memcmp(out, "abcd", 4));
  expect_resume(91, EVENTER_STEP_ACO_PROXY, 0, 0, 5000); /* its slot */
  T_EQ(px_sync(q, EVENTER_PROXY_CHAN_RECV, ch, out, NO_TMO),
       EVENTER_PROXY_DONE);
  T_CHECK(!memcmp(out, "efgh", 4));
  T_EQ(px_sync(q, EVENTER_PROXY_CHAN_RECV, ch, out, NO_TMO),
       EVENTER_PROXY_PARKED); /* empty */
  T_EQ(eventer_aco_chan_close(ch), 0);
  expect_resume(92, EVENTER_STEP_ACO_PROXY, -1, EPIPE, 5000);
  T_EQ(eventer_aco_chan_free(ch), 0);

  /* bad arguments */
  T_EQ(px_sync(p, EVENTER_PROXY_SEM_WAIT, NULL, NULL, NO_TMO),
       EVENTER_PROXY_DONE);
  px_done(p, -1, EINVAL);
  T_EQ(px_sync(p, 99, wg, NULL, NO_TMO), EVENTER_PROXY_DONE);
  px_done(p, -1, EINVAL);
  quiet(5);
  px_free(p);
  px_free(q);
  drv_teardown();
}

/* ---- asynch work ------------------------------------------------------------------------------- */

static int asynch_ran, asynch_started;
static void asynch_fn(void *c) {
  __atomic_add_fetch(&asynch_started, 1, __ATOMIC_SEQ_CST);
  usleep(5000);
  __atomic_add_fetch((int *)c, 1, __ATOMIC_SEQ_CST);
}

/* The first job of the destroyed-queue case: it holds its thread until
 * eventer_jobq_destroy has unlisted the queue (and, a moment later, marked
 * it stopping), so the job queued behind it cannot start however late the
 * test thread gets to the destroy (a fixed 5 ms job lost that race on a
 * loaded machine). */
static void asynch_hold_fn(void *c) {
  __atomic_add_fetch(&asynch_started, 1, __ATOMIC_SEQ_CST);
  for (int i = 0; i < 100000 && eventer_jobq_retrieve("px_destroyed"); i++)
    usleep(100);
  usleep(20000);
  __atomic_add_fetch((int *)c, 1, __ATOMIC_SEQ_CST);
}

static void test_asynch(void) {
  drv_setup(1);
  eventer_aco_proxy_t *p = px_new(101), *q = px_new(102);
  asynch_ran = 0;
  T_EQ(eventer_aco_proxy_asynch(p, asynch_fn, &asynch_ran, NULL, 0),
       EVENTER_PROXY_PARKED);
  /* not cancellable, not abortable: its job refers to the proxy */
  T_ERRNO(eventer_aco_proxy_cancel(p), EAGAIN);
  T_ERRNO(eventer_aco_proxy_abort(p), EBUSY);
  expect_resume(101, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  T_EQ(__atomic_load_n(&asynch_ran, __ATOMIC_SEQ_CST), 1);
  /* no function */
  T_EQ(eventer_aco_proxy_asynch(p, NULL, NULL, NULL, 0), EVENTER_PROXY_DONE);
  px_done(p, -1, EINVAL);

  /* a queue destroyed with the job still queued: WORK never runs, the
   * waiter resumes with ESHUTDOWN (it hung before COMPLETE was delivered
   * for discarded jobs) */
  eventer_jobq_t *jq = eventer_jobq_create("px_destroyed");
  T_CHECK(jq != NULL);
  eventer_jobq_set_concurrency(jq, 1);
  asynch_ran = asynch_started = 0;
  T_EQ(eventer_aco_proxy_asynch(p, asynch_hold_fn, &asynch_ran, jq, 0),
       EVENTER_PROXY_PARKED); /* runs */
  T_EQ(eventer_aco_proxy_asynch(q, asynch_fn, &asynch_ran, jq, 0),
       EVENTER_PROXY_PARKED); /* queued behind it */
  while (__atomic_load_n(&asynch_started, __ATOMIC_SEQ_CST) == 0) usleep(100);
  eventer_jobq_destroy(jq); /* waits for the running one */
  int n0 = nres;
  drive_until_res(n0 + 2, 5000);
  for (int i = n0; i < n0 + 2; i++) {
    T_EQ(res[i].kind, EVENTER_STEP_ACO_PROXY);
    if (res[i].id == 101) {
      T_EQ(res[i].result, 0);
    } else {
      T_EQ(res[i].id, 102);
      T_EQ(res[i].result, -1);
      T_EQ(res[i].err, ESHUTDOWN);
    }
  }
  T_EQ(__atomic_load_n(&asynch_ran, __ATOMIC_SEQ_CST), 1);
  quiet(5);
  px_free(p);
  px_free(q);
  T_EQ(eventer_allocations_current(), 0);
  drv_teardown();
}

/* ---- abort -------------------------------------------------------------------------------------- */

static void test_abort(void) {
  drv_setup(1);
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(111);
  eventer_t e = px_convert(sv[0]);
  T_EQ(eventer_aco_proxy_abort(p), 0); /* nothing pending */
  /* a readiness wait: unregistered, its reference dropped, no step */
  T_EQ(px_wait(p, e, EVENTER_READ, 16, 10), EVENTER_PROXY_PARKED);
  T_PTR_EQ(eventer_find_fd(sv[0]), e);
  T_EQ(eventer_aco_proxy_abort(p), 0);
  T_EQ(eventer_aco_proxy_busy(p), 0);
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL);
  quiet(30); /* past its deadline: nothing */
  /* a sleep, a park */
  T_EQ(px_sleep(p, 10), EVENTER_PROXY_PARKED);
  T_EQ(eventer_aco_proxy_abort(p), 0);
  T_EQ(px_park(p, NO_TMO), EVENTER_PROXY_PARKED);
  T_EQ(eventer_aco_proxy_abort(p), 0);
  quiet(30);
  /* a semaphore wait: it leaves the queue */
  eventer_aco_sem_t *s = eventer_aco_sem_new(0);
  T_EQ(px_sync(p, EVENTER_PROXY_SEM_WAIT, s, NULL, NO_TMO),
       EVENTER_PROXY_PARKED);
  T_EQ(eventer_aco_proxy_abort(p), 0);
  T_EQ(eventer_aco_sem_free(s), 0);
  /* a wait that ended and whose completion waits in a task */
  eventer_aco_proxy_t *q = px_new(112);
  T_EQ(px_wait(p, e, EVENTER_READ, 16, NO_TMO), EVENTER_PROXY_PARKED);
  T_EQ(px_wait(q, e, EVENTER_READ, 16, NO_TMO), EVENTER_PROXY_PARKED);
  T_EQ(write(sv[1], "x", 1), 1);
  drive_until_res(nres + 1, 5000);
  T_CHECK(eventer_aco_proxy_busy(q));
  T_EQ(eventer_aco_proxy_abort(q), 0);
  T_EQ(eventer_aco_proxy_busy(q), 0);
  quiet(5);
  px_free(p);
  px_free(q);
  eventer_aco_free((eventer_aco_t)e);
  T_EQ(eventer_allocations_current(), 0);
  close(sv[0]);
  close(sv[1]);
  drv_teardown();
}

/* ---- misuse ------------------------------------------------------------------------------------ */

typedef struct {
  eventer_aco_proxy_t *p;
  int rc[5], err[5];
} off_loop_t;

static void off_loop_try(off_loop_t *x) {
  errno = 0;
  x->rc[0] = px_sleep(x->p, 10);
  x->err[0] = errno;
  errno = 0;
  x->rc[1] = eventer_aco_proxy_free(x->p);
  x->err[1] = errno;
  errno = 0;
  x->rc[2] = eventer_aco_proxy_cancel(x->p);
  x->err[2] = errno;
  errno = 0;
  x->rc[3] = eventer_aco_proxy_abort(x->p);
  x->err[3] = errno;
  errno = 0;
  x->rc[4] = eventer_aco_proxy_wake(x->p);
  x->err[4] = errno;
}

static void *off_loop_calls(void *arg) {
  off_loop_try(arg);
  return NULL;
}

static off_loop_t in_co;
static void misuse_co(void) {
  off_loop_try(&in_co);
  co_step = 1;
}

static void test_misuse(void) {
  drv_setup(1);
  T_EQ(eventer_aco_proxy_sleep(NULL, NULL), EVENTER_PROXY_MISUSE);
  T_EQ(errno, EINVAL);
  eventer_aco_proxy_t *p = px_new(121);

  /* not the proxy's loop thread */
  off_loop_t x = {.p = p};
  run_thread(off_loop_calls, &x);
  T_EQ(x.rc[0], EVENTER_PROXY_MISUSE);
  T_EQ(x.err[0], EPERM);
  T_EQ(x.rc[1], -1);
  T_EQ(x.err[1], EINVAL);
  T_EQ(x.err[2], EPERM);
  T_EQ(x.err[3], EINVAL);
  T_EQ(x.err[4], EPERM);
  T_EQ(eventer_aco_proxy_busy(p), 0);

  /* inside a coroutine (a C callback reached from one) */
  in_co.p = p;
  co_step = 0;
  eventer_aco_start(misuse_co, NULL);
  T_EQ(co_step, 1);
  T_EQ(in_co.rc[0], EVENTER_PROXY_MISUSE);
  T_EQ(in_co.err[0], EDEADLK);
  T_EQ(in_co.rc[1], -1);
  T_EQ(in_co.err[1], EINVAL);
  T_EQ(in_co.err[3], EINVAL);
  quiet(20); /* nothing was started */

  /* the proxy still works */
  T_EQ(px_sleep(p, 5), EVENTER_PROXY_PARKED);
  expect_resume(121, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  quiet(5);
  px_free(p);
  drv_teardown();
}

/* a C loop (no step buffer) cannot take a proxy completion */
static void no_step_buffer_child(void *arg) {
  (void)arg;
  ev_setup_external(1);
  eventer_aco_proxy_t *p = eventer_aco_proxy_new(1);
  T_EQ(px_sleep(p, 1), EVENTER_PROXY_PARKED);
  struct timeval w = ms(5);
  for (int i = 0; i < 100; i++) eventer_run_once(NULL, &w);
}

static void test_completion_needs_step_buffer(void) {
  t_expect_death(no_step_buffer_child, NULL,
                 "a proxy completion is handed to a driver that runs "
                 "eventer_run_once with a step buffer");
}

/* ---- the driver's wake-up ------------------------------------------------------------------------ */

static eventer_loop_t *wake_loop;
static int wake_seq, seen_seq;

static void *waker(void *arg) {
  int n = *(int *)arg;
  for (int i = 1; i <= n; i++) {
    __atomic_store_n(&wake_seq, i, __ATOMIC_SEQ_CST);
    T_EQ(eventer_foreign_wake(wake_loop), 0);
    if (i % 16 == 0) usleep(100);
  }
  return NULL;
}

static void note_wake(void) {
  seen_seq = __atomic_load_n(&wake_seq, __ATOMIC_SEQ_CST);
}

static void test_foreign_wake(void) {
  T_EQ(eventer_impl_propset("loop_other", "1"), 0);
  drv_setup(1);
  wake_loop = eventer_loop_current();
  T_ERRNO(eventer_foreign_wake(NULL), EINVAL);
  eventer_pool_t *other = eventer_pool("other");
  T_CHECK(other != NULL);
  T_ERRNO(eventer_foreign_wake(eventer_pool_loop(other, 0)), EINVAL);

  /* several wakes from another thread before the driver looks: one step */
  wake_seq = 0;
  int n = 5;
  run_thread(waker, &n);
  drive_until(&wake_steps, 1, 5000);
  quiet(10);
  T_EQ(wake_steps, 1);
  /* from the loop thread itself; re-armed once handed out */
  T_EQ(eventer_foreign_wake(wake_loop), 0);
  T_EQ(eventer_foreign_wake(wake_loop), 0);
  drive_until(&wake_steps, 2, 5000);
  quiet(5);
  T_EQ(wake_steps, 2);

  /* while the driver runs: never lost (a step follows the last wake) */
  on_wake = note_wake;
  seen_seq = 0;
  wake_seq = 0;
  n = (int)t_scale(20000, 20);
  pthread_t t;
  T_EQ(pthread_create(&t, NULL, waker, &n), 0);
  drive_until(&seen_seq, n, 20000);
  T_EQ(pthread_join(t, NULL), 0);
  /* seen_seq reaches n through whichever step comes after the waker's
   * store of n, possibly one for an earlier wake handed out just before
   * the last eventer_foreign_wake call re-armed the slot: that call's own
   * step may still come.  Let it, then check that nothing else does. */
  struct timeval w1 = ms(1);
  for (uint64_t end = t_now_us() + 10000u; t_now_us() < end;) drive(&w1);
  T_LE(wake_steps, 2 + n);
  quiet(5);
  on_wake = NULL;

  /* a wake pending at teardown is forgotten with eventer_foreign_reset */
  T_EQ(eventer_foreign_wake(wake_loop), 0); /* never handed out */
  drv_teardown();
  drv_setup(1);
  T_EQ(eventer_foreign_reset(), 0);
  wake_loop = eventer_loop_current();
  quiet(5);
  T_EQ(eventer_foreign_wake(wake_loop), 0);
  drive_until(&wake_steps, 1, 5000);
  quiet(5);
  T_EQ(wake_steps, 1);
  drv_teardown();
}

/* Every loop of a large pool has its wake-up (loops past the 256th were
 * refused: a fixed table of 256). */
typedef struct {
  int idx, steps;
} far_driver_t;

/* drives loop idx until it stops, counting its wake steps */
static void *drive_far_loop(void *arg) {
  far_driver_t *d = arg;
  T_EQ(eventer_loop_attach(d->idx), 0);
  eventer_step_t s;
  memset(&s, 0, sizeof(s));
  struct timeval w = ms(5);
  for (;;) {
    int rc = eventer_run_once(&s, &w);
    if (rc == EVENTER_RUN_STOPPED) break;
    T_CHECK(rc == EVENTER_RUN_DONE || rc == EVENTER_RUN_STEP);
    if (rc == EVENTER_RUN_STEP) {
      T_EQ(s.kind, EVENTER_STEP_FOREIGN_WAKE);
      s.kind = EVENTER_STEP_NONE;
      __atomic_add_fetch(&d->steps, 1, __ATOMIC_SEQ_CST);
    }
  }
  return NULL;
}

static void test_foreign_wake_many_loops(void) {
  int n = 300;
  char buf[16];
  snprintf(buf, sizeof(buf), "%d", n);
  T_EQ(eventer_impl_propset("concurrency", buf), 0);
  T_EQ(eventer_init_external(), 0);
  T_EQ(eventer_foreign_reset(), 0);
  far_driver_t d = {.idx = n - 1};
  pthread_t t;
  T_EQ(pthread_create(&t, NULL, drive_far_loop, &d), 0);
  eventer_loop_t *far = eventer_pool_loop(eventer_pool("default"), n - 1);
  T_EQ(eventer_foreign_wake(far), 0);
  uint64_t end = t_now_us() + 10000000u;
  while (__atomic_load_n(&d.steps, __ATOMIC_SEQ_CST) == 0) {
    if (t_now_us() > end) T_FAIL("loop %d never handed out its wake", n - 1);
    usleep(1000);
  }
  eventer_shutdown();
  T_EQ(pthread_join(t, NULL), 0);
  T_EQ(d.steps, 1);
  eventer_fini();
}

/* ---- foreign closures ------------------------------------------------------------------------------ */

static uint64_t fcb_ids[16];
static int nfcb;
static int foreign_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)e, (void)mask, (void)now;
  T_CHECK(nfcb < 16);
  fcb_ids[nfcb++] = eventer_foreign_closure_id(closure);
  return 0;
}

static int plain_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)e, (void)mask, (void)closure, (void)now;
  return 0;
}

static int unboxed_cb(eventer_t e, int mask, void *closure,
                      struct timeval *now) {
  (void)e, (void)mask, (void)closure, (void)now;
  return 0;
}

static int dead(uint64_t *out, int n) { return eventer_foreign_dead_ids(out, n); }

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void test_foreign_closures(void) {
  drv_setup(1);
  uint64_t out[64];
  while (dead(out, 64) > 0) {
  }
  T_ERRNO(eventer_foreign_callback_register(NULL), EINVAL);
  T_CHECK(!eventer_callback_is_foreign(foreign_cb));
  T_EQ(eventer_foreign_callback_register(foreign_cb), 0);
  T_EQ(eventer_foreign_callback_register(foreign_cb), 0); /* idempotent */
  T_CHECK(eventer_callback_is_foreign(foreign_cb)); /* the loop's registry */
  T_EQ(dead(NULL, 4), 0);
  T_EQ(dead(out, 0), 0);
  T_EQ(eventer_foreign_closure_id(NULL), 0);

  /* handed back as a CALLBACK step; freed after it: its id is dead */
  void *box = eventer_foreign_closure_new(77);
  T_CHECK(box != NULL);
  T_EQ(eventer_foreign_closure_id(box), 77);
  eventer_t t = eventer_alloc_timer(foreign_cb, box, NULL);
  T_EQ(eventer_add_ex(t), 0);
  nfcb = 0;
  drive_until(&cb_steps, 1, 5000);
  T_EQ(nfcb, 1);
  T_EQ(fcb_ids[0], 77);
  T_PTR_EQ(step.closure, box);
  T_EQ(dead(out, 64), 0); /* the driver still holds it */
  finish_iteration();     /* rv 0: the timer is freed */
  T_EQ(eventer_allocations_current(), 0);
  T_EQ(dead(out, 64), 1);
  T_EQ(out[0], 77);
  T_EQ(dead(out, 64), 0); /* exactly once */

  /* a copy shares the box: dead when both are gone */
  int sv[2];
  sockpair(sv);
  eventer_t e = eventer_alloc_fd(foreign_cb, eventer_foreign_closure_new(88),
                                 sv[0], EVENTER_READ);
  eventer_t c = eventer_alloc_copy(e);
  T_CHECK(c != NULL);
  T_PTR_EQ(eventer_get_closure(c), eventer_get_closure(e));
  eventer_free(e);
  T_EQ(dead(out, 64), 0);
  eventer_free(c);
  T_EQ(dead(out, 64), 1);
  T_EQ(out[0], 88);
  T_EQ(dead(out, 64), 0);

  /* a box under a C callback is not the eventer's to release */
  box = eventer_foreign_closure_new(99);
  e = eventer_alloc_fd(plain_cb, box, sv[0], EVENTER_READ);
  eventer_free(e);
  T_EQ(dead(out, 64), 0);
  free(box);
  /* nor the closure of a foreign callback that was not registered boxed
   * (one registry, two kinds of foreign functions) */
  T_EQ(eventer_callback_set_foreign(unboxed_cb), 0);
  static int not_a_box = 12345;
  e = eventer_alloc_fd(unboxed_cb, &not_a_box, sv[0], EVENTER_READ);
  eventer_free(e);
  T_EQ(not_a_box, 12345);
  T_EQ(dead(out, 64), 0);

  /* a triggered foreign fd event: called by the driver, freed by rv 0 */
  e = eventer_alloc_fd(foreign_cb, eventer_foreign_closure_new(66), sv[0],
                       EVENTER_READ);
  nfcb = 0;
  int cb0 = cb_steps;
  T_EQ(eventer_trigger_ex(e, EVENTER_READ), 0);
  drive_until(&cb_steps, cb0 + 1, 5000);
  T_EQ(fcb_ids[0], 66);
  finish_iteration();
  T_EQ(dead(out, 64), 1);
  T_EQ(out[0], 66);

  /* many, drained in chunks */
  int n = 100;
  for (int i = 1; i <= n; i++)
    eventer_free(eventer_alloc_fd(foreign_cb, eventer_foreign_closure_new(
                                                  (uint64_t)(1000 + i)),
                                  sv[0], EVENTER_READ));
  uint64_t all[128];
  int k = 0, got;
  while ((got = dead(all + k, 30)) > 0) {
    T_LE(got, 30);
    k += got;
  }
  T_EQ(k, n);
  qsort(all, (size_t)k, sizeof(all[0]), cmp_u64);
  for (int i = 0; i < n; i++) T_EQ(all[i], 1001 + i);

  /* still registered at teardown: dead once the eventer drops it */
  e = eventer_alloc_fd(foreign_cb, eventer_foreign_closure_new(55), sv[1],
                       EVENTER_READ);
  T_EQ(eventer_add_ex(e), 0);
  quiet(5);
  drv_teardown();
  T_EQ(dead(out, 64), 1);
  T_EQ(out[0], 55);
  close(sv[0]);
  close(sv[1]);
}

/* ---- eventer_call_on_thread_stack --------------------------------------------------------------- */

typedef struct {
  char *lo, *hi;   /* the caller's share stack, if any */
  char *main_mark; /* a local of the test function (thread stack) */
  char *addr[2];
  aco_t *co[2];
  int canary_ok;
  int ran[2];
} ts_t;

static int on_share_stack(ts_t *t, char *p) { return p >= t->lo && p < t->hi; }

static void ts_inner(void *arg) {
  ts_t *t = arg;
  /* a frame of the size a foreign callback needs (Go: ~2 KiB) */
  volatile char here[2048];
  for (size_t i = 0; i < sizeof(here); i++) here[i] = (char)0xee;
  t->addr[1] = (char *)here;
  t->co[1] = aco_current();
  t->ran[1]++;
}

static void ts_outer(void *arg) {
  ts_t *t = arg;
  volatile char canary[256];
  for (int i = 0; i < 256; i++) canary[i] = (char)(i ^ 0x5a);
  t->addr[0] = (char *)canary;
  t->co[0] = aco_current();
  t->ran[0]++;
  /* nested: already on the thread stack */
  eventer_call_on_thread_stack(ts_inner, t);
  int ok = 1;
  for (int i = 0; i < 256; i++) ok &= canary[i] == (char)(i ^ 0x5a);
  t->canary_ok = ok;
}

static void ts_check(ts_t *t, int in_co) {
  T_EQ(t->ran[0], 1);
  T_EQ(t->ran[1], 1);
  T_EQ(t->canary_ok, 1);
  for (int i = 0; i < 2; i++) {
    if (in_co) {
      T_CHECK(!on_share_stack(t, t->addr[i]));
      T_CHECK(t->co[i] != NULL); /* still logically inside the coroutine */
    } else {
      T_CHECK(t->co[i] == NULL);
    }
    /* on the thread's own stack, below the test's frame */
    T_CHECK(t->addr[i] < t->main_mark);
    T_CHECK(t->main_mark - t->addr[i] < 4 * 1024 * 1024);
  }
}

static void ts_co(void) {
  ts_t *t = eventer_aco_arg();
  aco_t *co = aco_current();
  T_CHECK(co != NULL);
  t->lo = co->share_stack->ptr;
  t->hi = t->lo + co->share_stack->sz;
  char here;
  T_CHECK(on_share_stack(t, &here));
  eventer_call_on_thread_stack(ts_outer, t);
  co_step = 1;
}

static void test_call_on_thread_stack(void) {
  drv_setup(1);
  char mark;
  /* main context: directly */
  ts_t t = {.main_mark = &mark};
  eventer_call_on_thread_stack(ts_outer, &t);
  ts_check(&t, 0);

  /* a C coroutine */
  memset(&t, 0, sizeof(t));
  t.main_mark = &mark;
  co_step = 0;
  eventer_aco_start(ts_co, &t);
  T_EQ(co_step, 1);
  ts_check(&t, 1);
  drv_teardown();
}

T_MAIN({"new_and_free", test_new_and_free},
       {"wait_read_through", test_wait_read_through},
       {"timeouts", test_timeouts},
       {"cancel", test_cancel},
       {"close_while_waiting", test_close_while_waiting},
       {"several_completions", test_several_completions},
       {"stream", test_stream},
       {"sleep_yield_park", test_sleep_yield_park},
       {"sync", test_sync},
       {"asynch", test_asynch},
       {"abort", test_abort},
       {"misuse", test_misuse},
       {"completion_needs_step_buffer", test_completion_needs_step_buffer},
       {"foreign_wake", test_foreign_wake},
       {"foreign_wake_many_loops", test_foreign_wake_many_loops},
       {"foreign_closures", test_foreign_closures},
       {"call_on_thread_stack", test_call_on_thread_stack})
