/*
 * test_eventer_aco_proxy.c - eventer_aco_proxy.h from C, the way the Go
 * binding uses it.  The test thread is the foreign driver: it calls
 * eventer_run_once(&step, &wait) in a loop and takes each
 * EVENTER_STEP_ACO_PROXY / _DATA step as the "resume" of the foreign
 * coroutine whose id it carries (copying the bytes of a DATA step before
 * the next run_once), each EVENTER_STEP_FOREIGN_WAKE as a wake-up, and
 * calls foreign callbacks itself.
 *
 * Covered: proxy lifetime and handles; READ/WRITE done at once or parked
 * and resumed by exactly one step; WAIT with and without read-through,
 * set up through eventer_aco_proxy_run and eventer_aco_proxy_wait (EOF,
 * reset); timeouts; cancel (parked, idle, from another thread, racing
 * data); close by another proxy; a reader and a writer on one event;
 * several completions in one iteration and the task fallback when two
 * complete in one callback; a full-duplex stream through three proxies;
 * CALL, SLEEP, YIELD, PARK, JOIN, CONVERT, CONNECT, ACCEPT, ASYNCH;
 * misuse; the driver's wake-up; foreign closures and
 * eventer_call_on_thread_stack.
 */
#include "evtest.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "eventer_aco.h"
#include "eventer_aco_proxy.h"

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

/* a loopback port nobody listens on */
static struct sockaddr_in dead_port(void) {
  int tmp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  T_EQ(bind(tmp, (struct sockaddr *)&sa, sl), 0);
  T_EQ(getsockname(tmp, (struct sockaddr *)&sa, &sl), 0);
  close(tmp);
  return sa;
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

static eventer_aco_proxy_t *px_new(uint64_t id) {
  errno = 0;
  eventer_aco_proxy_t *p = eventer_aco_proxy_new(id);
  T_CHECKF(p != NULL, "eventer_aco_proxy_new: errno %d", errno);
  /* the handle exists from the start */
  T_CHECK(eventer_aco_proxy_handle(p) != NULL);
  T_CHECK(!eventer_aco_co_done(eventer_aco_proxy_handle(p)));
  T_EQ(eventer_aco_proxy_busy(p), 0);
  T_CHECK(eventer_aco_proxy_op(p) != NULL);
  return p;
}

static void px_free(eventer_aco_proxy_t *p) {
  eventer_aco_co_t *h = eventer_aco_proxy_handle(p);
  eventer_aco_co_ref(h);
  T_EQ(eventer_aco_proxy_free(p), 0);
  T_CHECK(eventer_aco_co_done(h));
  T_ERRNO(eventer_aco_cancel(h), ESRCH);
  eventer_aco_co_release(h);
}

static eventer_aco_proxy_op_t *px_op(eventer_aco_proxy_t *p, int code,
                                     eventer_t e, void *buf, size_t len,
                                     long tmo_ms) {
  eventer_aco_proxy_op_t *o = eventer_aco_proxy_op(p);
  o->op = code;
  o->e = e;
  o->buf = buf;
  o->len = len;
  o->has_timeout = tmo_ms >= 0;
  o->timeout = ms(tmo_ms >= 0 ? tmo_ms : 0);
  o->mask = 0;
  o->read_len = 0;
  o->obj = NULL;
  o->call = NULL;
  o->result = -99;
  o->err = -99;
  return o;
}

static int px_run(eventer_aco_proxy_t *p) {
  errno = 0;
  return eventer_aco_proxy_run(p);
}

static int px_wait(eventer_aco_proxy_t *p, eventer_t e, int mask,
                   size_t read_len, long tmo_ms) {
  struct timeval t = ms(tmo_ms >= 0 ? tmo_ms : 0);
  eventer_aco_proxy_op_t *o = eventer_aco_proxy_op(p);
  o->result = -99;
  o->err = -99;
  errno = 0;
  return eventer_aco_proxy_wait(p, e, mask, read_len, tmo_ms >= 0 ? &t : NULL);
}

/* An aco event for fd, converted by p (EVENTER_PROXY_CONVERT). */
static eventer_t px_convert(eventer_aco_proxy_t *p, int fd) {
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, fd, EVENTER_READ);
  T_CHECK(e != NULL);
  eventer_aco_proxy_op_t *o = px_op(p, EVENTER_PROXY_CONVERT, e, NULL, 0, NO_TMO);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, 0);
  T_EQ(o->err, 0);
  T_CHECK(eventer_is_aco(e));
  T_PTR_EQ(eventer_find_fd(fd), NULL); /* converted, not registered */
  return e;
}

/* ways to set up a WAIT */
enum { VIA_RUN, VIA_WAIT };

static int start_wait(eventer_aco_proxy_t *p, int via, eventer_t e, int mask,
                      size_t read_len, long tmo_ms) {
  if (via == VIA_WAIT) return px_wait(p, e, mask, read_len, tmo_ms);
  eventer_aco_proxy_op_t *o = px_op(p, EVENTER_PROXY_WAIT, e, NULL, 0, tmo_ms);
  o->mask = mask;
  o->read_len = read_len;
  return px_run(p);
}

/* ---- lifetime ------------------------------------------------------------------- */

static eventer_aco_proxy_t *co_made[2];
static int co_step;

static void make_proxies_in_co(void) {
  /* a proxy made inside a coroutine is created, not run */
  co_made[0] = eventer_aco_proxy_new(101);
  co_made[1] = eventer_aco_proxy_new(102);
  T_CHECK(co_made[0] && co_made[1]);
  co_step = 1;
}

static int64_t call_ret5(void *obj, eventer_aco_proxy_op_t *op) {
  (void)obj, (void)op;
  return 5;
}

static int joined_rv = -2;
static void joins_proxy(void) {
  eventer_aco_co_t *h = eventer_aco_arg();
  joined_rv = eventer_aco_join(h, NULL);
  co_step = 2;
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
  eventer_aco_co_t *h = eventer_aco_proxy_handle(p);
  T_PTR_EQ(eventer_aco_proxy_handle(p), h); /* stable */
  T_PTR_EQ(eventer_aco_proxy_op(p), eventer_aco_proxy_op(p));
  /* a C coroutine may join the proxy's handle: it returns when the proxy
   * is freed */
  co_step = 0;
  eventer_aco_start(joins_proxy, h);
  T_EQ(co_step, 0);
  eventer_aco_co_ref(h);
  T_EQ(eventer_aco_proxy_free(p), 0);
  T_CHECK(eventer_aco_co_done(h));
  drive_until(&co_step, 2, 5000);
  T_EQ(joined_rv, 0);
  eventer_aco_co_release(h);

  /* NULL */
  T_EQ(eventer_aco_proxy_free(NULL), 0);
  T_PTR_EQ(eventer_aco_proxy_op(NULL), NULL);
  T_PTR_EQ(eventer_aco_proxy_handle(NULL), NULL);
  T_EQ(eventer_aco_proxy_busy(NULL), 0);

  /* made inside a coroutine: usable (and freeable) from the driver */
  co_step = 0;
  eventer_aco_start(make_proxies_in_co, NULL);
  T_EQ(co_step, 1);
  for (int i = 0; i < 2; i++) {
    T_CHECK(eventer_aco_proxy_handle(co_made[i]) != NULL);
    T_CHECK(!eventer_aco_co_done(eventer_aco_proxy_handle(co_made[i])));
  }
  eventer_aco_proxy_op_t *o =
      px_op(co_made[0], EVENTER_PROXY_CALL, NULL, NULL, 0, NO_TMO);
  o->call = call_ret5;
  T_EQ(px_run(co_made[0]), 1);
  T_EQ(o->result, 5);
  T_EQ(o->err, 0);
  px_free(co_made[0]);
  px_free(co_made[1]); /* never ran */

  /* many */
  int n = (int)t_scale(2000, 10);
  eventer_aco_proxy_t **ps = calloc((size_t)n, sizeof(*ps));
  for (int i = 0; i < n; i++) ps[i] = px_new((uint64_t)i);
  for (int i = n - 1; i >= 0; i--) px_free(ps[i]);
  free(ps);
  quiet(5);

  /* alive at eventer_fini (a foreign coroutine that never ended): one idle,
   * one parked in a sleep; fini frees them (LSan/valgrind see a leak
   * otherwise) and their handles, kept by us, report done */
  eventer_aco_proxy_t *idle = px_new(11), *parked = px_new(12);
  eventer_aco_co_t *hi = eventer_aco_proxy_handle(idle);
  eventer_aco_co_t *hp = eventer_aco_proxy_handle(parked);
  eventer_aco_co_ref(hi);
  eventer_aco_co_ref(hp);
  px_op(parked, EVENTER_PROXY_SLEEP, NULL, NULL, 0, 60000);
  T_EQ(px_run(parked), 0);
  T_CHECK(!eventer_aco_co_done(hp));
  /* and two that completed in one callback: the second one's completion
   * still waits in a task for the next iteration */
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *r1 = px_new(13), *r2 = px_new(14);
  eventer_t e = px_convert(r1, sv[0]);
  T_EQ(px_wait(r1, e, EVENTER_READ, 64, NO_TMO), 0);
  T_EQ(px_wait(r2, e, EVENTER_READ, 64, NO_TMO), 0);
  T_EQ(write(sv[1], "both", 4), 4);
  drive_until_res(nres + 1, 5000);
  T_CHECK(eventer_aco_proxy_busy(r2));
  eventer_aco_free((eventer_aco_t)e);
  drv_teardown();
  close(sv[0]);
  close(sv[1]);
  T_CHECK(eventer_aco_co_done(hi));
  T_CHECK(eventer_aco_co_done(hp));
  T_ERRNO(eventer_aco_cancel(hp), ESRCH);
  eventer_aco_co_release(hi);
  eventer_aco_co_release(hp);
}

/* ---- READ / WRITE --------------------------------------------------------------------- */

static void test_read_write_at_once(void) {
  drv_setup(1);
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(11);
  eventer_t e = px_convert(p, sv[0]);
  char buf[64];
  T_EQ(write(sv[1], "hello", 5), 5);
  eventer_aco_proxy_op_t *o =
      px_op(p, EVENTER_PROXY_READ, e, buf, sizeof(buf), NO_TMO);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, 5);
  T_EQ(o->err, 0);
  T_CHECK(!memcmp(buf, "hello", 5));
  T_EQ(eventer_aco_proxy_busy(p), 0);
  /* done at once: no step follows, nothing registered */
  quiet(5);
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL);
  o = px_op(p, EVENTER_PROXY_WRITE, e, "world!", 6, 1000);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, 6);
  T_EQ(read(sv[1], buf, sizeof(buf)), 6);
  T_CHECK(!memcmp(buf, "world!", 6));
  quiet(5);
  /* a zero timeout does not matter when no wait is needed */
  T_EQ(write(sv[1], "x", 1), 1);
  o = px_op(p, EVENTER_PROXY_READ, e, buf, sizeof(buf), 0);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, 1);
  /* EOF at once */
  shutdown(sv[1], SHUT_WR);
  o = px_op(p, EVENTER_PROXY_READ, e, buf, sizeof(buf), NO_TMO);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, 0);
  T_EQ(o->err, 0);
  /* READ on a classic (not converted) event: EINVAL, like eventer_aco_read */
  eventer_t classic = eventer_alloc_fd(dummy_cb, NULL, sv[1], EVENTER_READ);
  o = px_op(p, EVENTER_PROXY_READ, classic, buf, sizeof(buf), NO_TMO);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, -1);
  T_EQ(o->err, EINVAL);
  eventer_free(classic);
  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  T_EQ(eventer_allocations_current(), 0);
  close(sv[0]);
  close(sv[1]);
  drv_teardown();
}

static void test_read_parks(void) {
  drv_setup(1);
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(12);
  eventer_t e = px_convert(p, sv[0]);
  char buf[64];
  memset(buf, 0, sizeof(buf));
  eventer_aco_proxy_op_t *o =
      px_op(p, EVENTER_PROXY_READ, e, buf, sizeof(buf), NO_TMO);
  T_EQ(px_run(p), 0);
  T_EQ(eventer_aco_proxy_busy(p), 1);
  T_PTR_EQ(eventer_find_fd(sv[0]), e); /* waiting: registered */
  /* one operation at a time */
  T_ERRNO(eventer_aco_proxy_run(p), EBUSY);
  T_ERRNO(eventer_aco_proxy_wait(p, e, EVENTER_READ, 0, NULL), EBUSY);
  T_ERRNO(eventer_aco_proxy_free(p), EBUSY);
  T_EQ(eventer_aco_proxy_busy(p), 1);
  T_EQ(o->op, EVENTER_PROXY_READ); /* the refused calls changed nothing */
  quiet(10);                       /* no data: nothing happens */
  T_EQ(eventer_aco_proxy_busy(p), 1);

  T_EQ(write(sv[1], "abc", 3), 3);
  resume_t *r = expect_resume(12, EVENTER_STEP_ACO_PROXY, 3, 0, 5000);
  (void)r;
  T_CHECK(!memcmp(buf, "abc", 3)); /* the data is in the op's buffer */
  T_EQ(o->result, 3);
  T_EQ(eventer_aco_proxy_busy(p), 0);
  quiet(10); /* exactly one step */

  /* parked again; EOF resumes it with 0 */
  o = px_op(p, EVENTER_PROXY_READ, e, buf, sizeof(buf), NO_TMO);
  T_EQ(px_run(p), 0);
  close(sv[1]);
  expect_resume(12, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  quiet(5);
  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  T_EQ(eventer_allocations_current(), 0);
  close(sv[0]);
  drv_teardown();
}

/* ---- WAIT and read-through ----------------------------------------------------------- */

static void wait_data_case(int via) {
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(21);
  eventer_t e = px_convert(p, sv[0]);

  /* read_len > 0: the bytes come with the step */
  T_EQ(start_wait(p, via, e, EVENTER_READ, 64, NO_TMO), 0);
  T_EQ(eventer_aco_proxy_busy(p), 1);
  T_PTR_EQ(eventer_find_fd(sv[0]), e);
  T_ERRNO(eventer_aco_proxy_run(p), EBUSY);
  T_ERRNO(eventer_aco_proxy_wait(p, e, EVENTER_READ, 64, NULL), EBUSY);
  quiet(5);
  T_EQ(write(sv[1], "abcdef", 6), 6);
  resume_t *r = expect_resume(21, EVENTER_STEP_ACO_PROXY_DATA, 6, 0, 5000);
  T_EQ(r->ndata, 6);
  T_CHECK(!memcmp(r->data, "abcdef", 6));
  T_EQ(eventer_aco_proxy_busy(p), 0);
  T_EQ(drain_fd(sv[0]), 0); /* read through: nothing left */
  quiet(5);

  /* read_len smaller than what is there: exactly read_len, the rest stays */
  T_EQ(start_wait(p, via, e, EVENTER_READ, 4, NO_TMO), 0);
  T_EQ(write(sv[1], "0123456789", 10), 10);
  r = expect_resume(21, EVENTER_STEP_ACO_PROXY_DATA, 4, 0, 5000);
  T_CHECK(!memcmp(r->data, "0123", 4));
  /* already readable when the wait starts: handed out at the next run_once */
  T_EQ(start_wait(p, via, e, EVENTER_READ, 64, NO_TMO), 0);
  r = expect_resume(21, EVENTER_STEP_ACO_PROXY_DATA, 6, 0, 5000);
  T_CHECK(!memcmp(r->data, "456789", 6));

  /* read_len 0: a plain step, the data stays in the socket */
  T_EQ(start_wait(p, via, e, EVENTER_READ, 0, NO_TMO), 0);
  quiet(5);
  T_EQ(write(sv[1], "q", 1), 1);
  expect_resume(21, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  char b;
  T_EQ(read(sv[0], &b, 1), 1);
  T_EQ(b, 'q');

  /* a WRITE readiness wait: plain step (never a read-through) */
  T_EQ(start_wait(p, via, e, EVENTER_WRITE, 64, NO_TMO), 0);
  expect_resume(21, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);

  /* EOF: a DATA step with count 0 */
  T_EQ(start_wait(p, via, e, EVENTER_READ, 64, NO_TMO), 0);
  close(sv[1]);
  r = expect_resume(21, EVENTER_STEP_ACO_PROXY_DATA, 0, 0, 5000);
  T_EQ(r->ndata, 0);
  quiet(5);
  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  T_EQ(eventer_allocations_current(), 0);
  close(sv[0]);
}

static void reset_case(int via) {
  int cli, srv;
  tcp_pair(&cli, &srv);
  eventer_aco_proxy_t *p = px_new(22);
  eventer_t e = px_convert(p, srv);
  T_EQ(start_wait(p, via, e, EVENTER_READ, 64, NO_TMO), 0);
  quiet(5);
  struct linger lg = {1, 0};
  T_EQ(setsockopt(cli, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  close(cli); /* RST */
  expect_resume(22, EVENTER_STEP_ACO_PROXY_DATA, -1, ECONNRESET, 5000);
  quiet(5);
  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  close(srv);
}

static void test_wait_read_through(void) {
  drv_setup(1);
  wait_data_case(VIA_RUN);
  wait_data_case(VIA_WAIT);
  reset_case(VIA_RUN);
  reset_case(VIA_WAIT);

  /* a proxy made inside a coroutine has not run yet:
   * eventer_aco_proxy_wait takes the general way */
  co_step = 0;
  eventer_aco_start(make_proxies_in_co, NULL);
  T_EQ(co_step, 1);
  int sv[2];
  sockpair(sv);
  eventer_t e = px_convert(co_made[0], sv[0]);
  T_EQ(px_wait(co_made[1], e, EVENTER_READ, 16, NO_TMO), 0);
  T_EQ(write(sv[1], "new", 3), 3);
  resume_t *r = expect_resume(102, EVENTER_STEP_ACO_PROXY_DATA, 3, 0, 5000);
  T_CHECK(!memcmp(r->data, "new", 3));
  px_free(co_made[0]);
  px_free(co_made[1]);
  eventer_aco_free((eventer_aco_t)e);
  close(sv[0]);
  close(sv[1]);

  /* bad arguments end at once, like eventer_aco_wait_ready */
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(23);
  eventer_t classic = eventer_alloc_fd(dummy_cb, NULL, sv[0], EVENTER_READ);
  T_EQ(px_wait(p, classic, EVENTER_READ, 16, NO_TMO), 1);
  T_EQ(eventer_aco_proxy_op(p)->result, -1);
  T_EQ(eventer_aco_proxy_op(p)->err, EINVAL);
  eventer_t ae = px_convert(p, sv[1]);
  T_EQ(px_wait(p, ae, 0, 16, NO_TMO), 1); /* empty mask */
  T_EQ(eventer_aco_proxy_op(p)->err, EINVAL);
  T_EQ(start_wait(p, VIA_RUN, ae, 0, 16, NO_TMO), 1);
  T_EQ(eventer_aco_proxy_op(p)->result, -1);
  T_EQ(eventer_aco_proxy_op(p)->err, EINVAL);
  T_EQ(eventer_aco_proxy_busy(p), 0);
  quiet(5);
  px_free(p);
  eventer_free(classic);
  eventer_aco_free((eventer_aco_t)ae);
  close(sv[0]);
  close(sv[1]);
  T_EQ(eventer_allocations_current(), 0);
  drv_teardown();
}

/* ---- timeouts ---------------------------------------------------------------------------- */

static void timeout_case(eventer_aco_proxy_t *p, eventer_t e, int fd, int how) {
  char buf[16];
  uint64_t t0 = t_now_us();
  int rc;
  if (how == 0) {
    px_op(p, EVENTER_PROXY_READ, e, buf, sizeof(buf), 30);
    rc = px_run(p);
  } else {
    rc = start_wait(p, how == 1 ? VIA_RUN : VIA_WAIT, e, EVENTER_READ, 16, 30);
  }
  T_EQ(rc, 0);
  T_PTR_EQ(eventer_find_fd(fd), e);
  resume_t *r = expect_resume(31, EVENTER_STEP_ACO_PROXY, -1, ETIMEDOUT, 5000);
  uint64_t waited = r->at_us - t0;
  T_GE(waited, 30000); /* never early */
  T_LE(waited, 30000 + ev_late_bound_us());
  T_PTR_EQ(eventer_find_fd(fd), NULL); /* the timeout unregistered it */
  T_EQ(eventer_aco_proxy_busy(p), 0);
  quiet(5);
}

static void test_timeouts(void) {
  drv_setup(1);
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(31);
  eventer_t e = px_convert(p, sv[0]);
  for (int how = 0; how < 3; how++) timeout_case(p, e, sv[0], how);

  /* {0,0} and no data: ends at once */
  T_EQ(px_wait(p, e, EVENTER_READ, 16, 0), 1);
  eventer_aco_proxy_op_t *o = eventer_aco_proxy_op(p);
  T_EQ(o->result, -1);
  T_EQ(o->err, ETIMEDOUT);
  T_EQ(eventer_aco_proxy_busy(p), 0);
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL);
  char buf[16];
  o = px_op(p, EVENTER_PROXY_READ, e, buf, sizeof(buf), 0);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, -1);
  T_EQ(o->err, ETIMEDOUT);
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL);
  T_EQ(start_wait(p, VIA_RUN, e, EVENTER_READ, 16, 0), 1);
  T_EQ(o->err, ETIMEDOUT);
  quiet(5);

  /* a timeout that does not expire leaves nothing behind */
  T_EQ(px_wait(p, e, EVENTER_READ, 16, 40), 0);
  T_EQ(write(sv[1], "in", 2), 2);
  expect_resume(31, EVENTER_STEP_ACO_PROXY_DATA, 2, 0, 5000);
  o = px_op(p, EVENTER_PROXY_READ, e, buf, sizeof(buf), 40);
  T_EQ(px_run(p), 0);
  T_EQ(write(sv[1], "in", 2), 2);
  expect_resume(31, EVENTER_STEP_ACO_PROXY, 2, 0, 5000);
  quiet(60); /* past both deadlines */

  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  close(sv[0]);
  close(sv[1]);
  drv_teardown();
}

/* ---- cancel ---------------------------------------------------------------------------------- */

static void *cancel_from_thread(void *arg) {
  usleep(5000);
  T_EQ(eventer_aco_cancel(arg), 0);
  return NULL;
}

/* how: 0 READ, 1 WAIT via run, 2 WAIT via eventer_aco_proxy_wait */
static void cancel_case(int how, int from_thread, int free_first) {
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(41);
  eventer_aco_co_t *h = eventer_aco_proxy_handle(p);
  eventer_t e = px_convert(p, sv[0]);
  char buf[16];
  int rc;
  if (how == 0) {
    px_op(p, EVENTER_PROXY_READ, e, buf, sizeof(buf), NO_TMO);
    rc = px_run(p);
  } else {
    rc = start_wait(p, how == 1 ? VIA_RUN : VIA_WAIT, e, EVENTER_READ, 16,
                    NO_TMO);
  }
  T_EQ(rc, 0);
  T_PTR_EQ(eventer_find_fd(sv[0]), e);
  pthread_t t;
  if (from_thread) {
    T_EQ(pthread_create(&t, NULL, cancel_from_thread, h), 0);
  } else {
    T_EQ(eventer_aco_cancel(h), 0);
    T_EQ(eventer_aco_proxy_busy(p), 1); /* reported by a step */
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
  if (from_thread) T_EQ(pthread_join(t, NULL), 0);
  quiet(5);
  if (free_first) {
    T_EQ(eventer_allocations_current(), 0);
    e = px_convert(p, sv[0]);
  }
  /* the proxy goes on: the next operation works */
  T_EQ(write(sv[1], "ok", 2), 2);
  eventer_aco_proxy_op_t *o =
      px_op(p, EVENTER_PROXY_READ, e, buf, sizeof(buf), NO_TMO);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, 2);
  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  T_EQ(eventer_allocations_current(), 0);
  close(sv[0]);
  close(sv[1]);
}

static void test_cancel(void) {
  drv_setup(1);
  for (int how = 0; how < 3; how++) {
    cancel_case(how, 0, 0);
    cancel_case(how, 1, 0);
    cancel_case(how, 0, 1);
  }

  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(42);
  eventer_aco_co_t *h = eventer_aco_proxy_handle(p);
  eventer_t e = px_convert(p, sv[0]);
  eventer_aco_proxy_op_t *o = eventer_aco_proxy_op(p);

  /* a cancel while idle: the next wait ends at once */
  T_EQ(eventer_aco_cancel(h), 0);
  quiet(5);
  T_EQ(px_wait(p, e, EVENTER_READ, 16, NO_TMO), 1);
  T_EQ(o->result, -1);
  T_EQ(o->err, ECANCELED);
  T_EQ(eventer_aco_proxy_busy(p), 0);
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL);
  quiet(5);
  /* it was used up: the next wait waits */
  T_EQ(px_wait(p, e, EVENTER_READ, 16, NO_TMO), 0);
  T_EQ(write(sv[1], "x", 1), 1);
  expect_resume(42, EVENTER_STEP_ACO_PROXY_DATA, 1, 0, 5000);
  /* ... and hits other operations the same way */
  T_EQ(eventer_aco_cancel(h), 0);
  px_op(p, EVENTER_PROXY_SLEEP, NULL, NULL, 0, 60000);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, -1);
  T_EQ(o->err, ECANCELED);
  char buf[16];
  T_EQ(eventer_aco_cancel(h), 0);
  px_op(p, EVENTER_PROXY_READ, e, buf, sizeof(buf), NO_TMO);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, -1);
  T_EQ(o->err, ECANCELED);
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL);
  T_EQ(eventer_aco_cancel(h), 0);
  T_EQ(start_wait(p, VIA_RUN, e, EVENTER_READ, 16, NO_TMO), 1);
  T_EQ(o->err, ECANCELED);
  quiet(5);

  /* cancel and data race: the cancel (applied first) wins, the data
   * stays for the next read */
  T_EQ(px_wait(p, e, EVENTER_READ, 16, NO_TMO), 0);
  T_EQ(write(sv[1], "late", 4), 4);
  T_EQ(eventer_aco_cancel(h), 0);
  expect_resume(42, EVENTER_STEP_ACO_PROXY, -1, ECANCELED, 5000);
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL);
  px_op(p, EVENTER_PROXY_READ, e, buf, sizeof(buf), NO_TMO);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, 4);
  T_CHECK(!memcmp(buf, "late", 4));
  quiet(5);

  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  close(sv[0]);
  close(sv[1]);
  drv_teardown();
}

/* ---- close by another proxy ------------------------------------------------------------------- */

static void close_case(int how) {
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *a = px_new(51), *b = px_new(52);
  eventer_t e = px_convert(a, sv[0]);
  char buf[16];
  int rc;
  if (how == 0) {
    px_op(a, EVENTER_PROXY_READ, e, buf, sizeof(buf), NO_TMO);
    rc = px_run(a);
  } else {
    rc = start_wait(a, how == 1 ? VIA_RUN : VIA_WAIT, e, EVENTER_READ, 16,
                    NO_TMO);
  }
  T_EQ(rc, 0);
  eventer_aco_proxy_op_t *ob = px_op(b, EVENTER_PROXY_CLOSE, e, NULL, 0, NO_TMO);
  T_EQ(px_run(b), 1);
  T_EQ(ob->result, 0);
  T_EQ(ob->err, 0);
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL);
  /* the fd is closed: the peer sees EOF */
  T_EQ(read(sv[1], buf, sizeof(buf)), 0);
  /* the driver may drop its reference before A hears about it */
  eventer_aco_free((eventer_aco_t)e);
  T_EQ(eventer_allocations_current(), 1);
  expect_resume(51, EVENTER_STEP_ACO_PROXY, -1, EBADF, 5000);
  T_EQ(eventer_allocations_current(), 0);
  quiet(5);
  px_free(a);
  px_free(b);
  close(sv[1]);
}

static void test_close_while_waiting(void) {
  drv_setup(1);
  for (int how = 0; how < 3; how++) close_case(how);

  /* after a close every operation on the event fails with EBADF */
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(53);
  eventer_t e = px_convert(p, sv[0]);
  eventer_aco_proxy_op_t *o = px_op(p, EVENTER_PROXY_CLOSE, e, NULL, 0, NO_TMO);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, 0);
  T_EQ(px_run(p), 1); /* twice */
  T_EQ(o->result, -1);
  T_EQ(o->err, EBADF);
  char buf[4];
  px_op(p, EVENTER_PROXY_READ, e, buf, sizeof(buf), NO_TMO);
  T_EQ(px_run(p), 1);
  T_EQ(o->err, EBADF);
  px_op(p, EVENTER_PROXY_WRITE, e, "x", 1, NO_TMO);
  T_EQ(px_run(p), 1);
  T_EQ(o->err, EBADF);
  T_EQ(px_wait(p, e, EVENTER_READ, 4, NO_TMO), 1);
  T_EQ(o->result, -1);
  T_EQ(o->err, EBADF);
  T_EQ(start_wait(p, VIA_RUN, e, EVENTER_READ, 4, NO_TMO), 1);
  T_EQ(o->err, EBADF);
  quiet(5);
  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  close(sv[1]);
  drv_teardown();
}

/* ---- several completions --------------------------------------------------------------------- */

/* A reader and a writer on one event, ready in the same callback: the
 * first completion takes the step slot of this run_once, the second comes
 * from the task phase of the next iteration. */
static void duplex_case(int via) {
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *r = px_new(61), *w = px_new(62);
  eventer_t e = px_convert(r, sv[0]);
  static char out[4096];
  memset(out, 'w', sizeof(out));
  char buf[16];
  T_GE(fill_sndbuf(sv[0]), 1);
  if (via == VIA_RUN) {
    px_op(r, EVENTER_PROXY_READ, e, buf, sizeof(buf), NO_TMO);
    T_EQ(px_run(r), 0);
    px_op(w, EVENTER_PROXY_WRITE, e, out, sizeof(out), NO_TMO);
    T_EQ(px_run(w), 0);
  } else {
    T_EQ(px_wait(r, e, EVENTER_READ, 16, NO_TMO), 0);
    T_EQ(px_wait(w, e, EVENTER_WRITE, 0, NO_TMO), 0);
  }
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
  if (via == VIA_RUN) {
    T_EQ(a->kind, EVENTER_STEP_ACO_PROXY);
    T_EQ(buf[0], 'r');
  } else {
    T_EQ(a->kind, EVENTER_STEP_ACO_PROXY_DATA);
    T_EQ(a->data[0], 'r');
  }
  /* the writer has finished but is not resumed yet: still busy for the
   * driver's purposes */
  T_ERRNO(eventer_aco_proxy_run(w), EBUSY);
  T_ERRNO(eventer_aco_proxy_wait(w, e, EVENTER_WRITE, 0, NULL), EBUSY);
  T_ERRNO(eventer_aco_proxy_free(w), EBUSY);
  drive_until_res(n0 + 2, 5000);
  resume_t *b = &res[n0 + 1];
  T_EQ(b->id, 62);
  T_EQ(b->kind, EVENTER_STEP_ACO_PROXY);
  if (via == VIA_RUN)
    T_EQ(b->result, (int64_t)sizeof(out));
  else
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
  eventer_t e = px_convert(r1, sv[0]);
  T_EQ(px_wait(r1, e, EVENTER_READ, 64, NO_TMO), 0);
  T_EQ(px_wait(r2, e, EVENTER_READ, 64, NO_TMO), 0);
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
  char buf[NFD][8];
  for (int i = 0; i < NFD; i++) {
    sockpair(sv[i]);
    p[i] = px_new(100 + (uint64_t)i);
    e[i] = px_convert(p[i], sv[i][0]);
    if (i % 2 == 0) {
      px_op(p[i], EVENTER_PROXY_READ, e[i], buf[i], sizeof(buf[i]), 5000);
      T_EQ(px_run(p[i]), 0);
    } else {
      T_EQ(px_wait(p[i], e[i], EVENTER_READ, 8, 5000), 0);
    }
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
    T_EQ(r->result, 1);
    T_EQ(r->iter, res[n0].iter);
    T_EQ(r->call, res[n0].call + i);
    if (i % 2 == 0) {
      T_EQ(r->kind, EVENTER_STEP_ACO_PROXY);
      T_EQ(buf[i][0], 'A' + i);
    } else {
      T_EQ(r->kind, EVENTER_STEP_ACO_PROXY_DATA);
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
    px_op(p[i], EVENTER_PROXY_SLEEP, NULL, NULL, 0, 10);
    T_EQ(px_run(p[i]), 0);
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
  duplex_case(VIA_RUN);
  duplex_case(VIA_WAIT);
  two_readers_case();
  many_fds_case();
  many_timers_case();
  T_EQ(eventer_allocations_current(), 0);
  drv_teardown();
}

/* ---- a full-duplex stream through three foreign coroutines -----------------------------------
 * W writes a pattern on sv[0], E echoes everything from sv[1], R reads
 * the echo on sv[0] with read-through waits: R and W share one event.
 * Each foreign coroutine has at most one operation outstanding, and every
 * one of them is resumed exactly once. */

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
  int r_reading;         /* R has a READ op outstanding (not a WAIT) */
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

static void writer_go(fco_t *c, const resume_t *r) {
  if (r) {
    T_CHECKF(r->result > 0, "write: %lld/%d", (long long)r->result, r->err);
    S.sent += (size_t)r->result;
  }
  while (S.sent < S.total) {
    size_t n = S.total - S.sent < 4 * CH ? S.total - S.sent : 4 * CH;
    eventer_aco_proxy_op_t *o =
        px_op(c->p, EVENTER_PROXY_WRITE, S.e0, S.out + S.sent, n, NO_TMO);
    int rc = px_run(c->p);
    if (rc == 0) {
      c->outstanding = 1;
      return;
    }
    T_EQ(rc, 1);
    T_CHECKF(o->result > 0, "write: %lld/%d", (long long)o->result, o->err);
    S.sent += (size_t)o->result;
  }
  T_EQ(shutdown(S.sv[0], SHUT_WR), 0);
  c->done = 1;
}

/* the echo's last operation returned n: 1 to go on */
static int echo_handle(fco_t *c, int64_t n) {
  T_CHECKF(n >= 0, "echo: %lld/%d", (long long)n, eventer_aco_proxy_op(c->p)->err);
  if (S.e_have == 0) { /* it was a read */
    if (n == 0) {
      T_EQ(shutdown(S.sv[1], SHUT_WR), 0);
      c->done = 1;
      return 0;
    }
    S.e_have = n;
    S.e_off = 0;
  } else {
    S.e_off += n;
    if (S.e_off == S.e_have) S.e_have = 0;
  }
  return 1;
}

static void echo_go(fco_t *c, const resume_t *r) {
  if (r && !echo_handle(c, r->result)) return;
  for (;;) {
    if (S.e_have == 0)
      px_op(c->p, EVENTER_PROXY_READ, S.e1, S.ebuf, CH, NO_TMO);
    else
      px_op(c->p, EVENTER_PROXY_WRITE, S.e1, S.ebuf + S.e_off,
            (size_t)(S.e_have - S.e_off), NO_TMO);
    int rc = px_run(c->p);
    if (rc == 0) {
      c->outstanding = 1;
      return;
    }
    T_EQ(rc, 1);
    if (!echo_handle(c, eventer_aco_proxy_op(c->p)->result)) return;
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

/* after a ready-without-data resume: read with a READ op; 1 if it
 * completed at once */
static int reader_read(fco_t *c) {
  eventer_aco_proxy_op_t *o =
      px_op(c->p, EVENTER_PROXY_READ, S.e0, S.rbuf, CH, NO_TMO);
  int rc = px_run(c->p);
  if (rc == 0) {
    S.r_reading = 1;
    c->outstanding = 1;
    return 0;
  }
  T_EQ(rc, 1);
  reader_consume(c, S.rbuf, o->result);
  return 1;
}

static void reader_go(fco_t *c, const resume_t *r) {
  if (r) {
    if (S.r_reading) {
      S.r_reading = 0;
      T_EQ(r->kind, EVENTER_STEP_ACO_PROXY);
      reader_consume(c, S.rbuf, r->result);
    } else if (r->kind == EVENTER_STEP_ACO_PROXY_DATA) {
      T_EQ(r->ndata, r->result > 0 ? (size_t)r->result : 0);
      reader_consume(c, r->data, r->result);
    } else {
      T_EQ(r->result, 0);
      S.r_ready_only++;
      if (!reader_read(c)) return;
    }
  }
  if (c->done) return;
  int rc = px_wait(c->p, S.e0, EVENTER_READ, CH, NO_TMO);
  T_EQ(rc, 0);
  c->outstanding = 1;
}

static void test_stream(void) {
  drv_setup(1);
  memset(&S, 0, sizeof(S));
  sockpair(S.sv);
  /* small buffers: every proxy parks often */
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
  S.e0 = px_convert(S.w.p, S.sv[0]);
  S.e1 = px_convert(S.e.p, S.sv[1]);
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
  /* every one of them parked and was resumed */
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

/* ---- CALL and the other operations ------------------------------------------------------------ */

typedef struct {
  eventer_aco_proxy_t *self, *other;
  eventer_aco_co_t *self_h;
  int in_aco, self_ok, calls;
  int inner_rc[3], inner_err[3];
} call_info_t;

static int64_t call_fn(void *obj, eventer_aco_proxy_op_t *op) {
  call_info_t *ci = obj;
  ci->calls++;
  ci->in_aco = aco_current() != NULL && eventer_in_aco();
  ci->self_ok = eventer_aco_self() == ci->self_h &&
                eventer_aco_proxy_op(ci->self) == op;
  switch (op->mask) {
  case 0:
    return 42;
  case 1:
    errno = EIO;
    return -1;
  case 2: { /* blocks: completes later, by a step */
    struct timeval t = ms(10);
    if (eventer_aco_sleep(&t) != 0) return -1;
    return 7;
  }
  case 3: /* proxies cannot be driven from inside a coroutine */
    errno = 0;
    ci->inner_rc[0] = eventer_aco_proxy_run(ci->other);
    ci->inner_err[0] = errno;
    errno = 0;
    ci->inner_rc[1] = eventer_aco_proxy_wait(ci->other, NULL, EVENTER_READ, 0, NULL);
    ci->inner_err[1] = errno;
    errno = 0;
    ci->inner_rc[2] = eventer_aco_proxy_free(ci->other);
    ci->inner_err[2] = errno;
    return 0;
  case 4: /* a timeout from the op */
    return eventer_aco_park(op->has_timeout ? &op->timeout : NULL);
  }
  errno = EINVAL;
  return -1;
}

static void test_call(void) {
  drv_setup(1);
  eventer_aco_proxy_t *p = px_new(71), *q = px_new(72);
  call_info_t ci = {.self = p, .other = q, .self_h = eventer_aco_proxy_handle(p)};
  eventer_aco_proxy_op_t *o = px_op(p, EVENTER_PROXY_CALL, NULL, NULL, 0, NO_TMO);
  o->call = call_fn;
  o->obj = &ci;
  o->mask = 0;
  T_EQ(px_run(p), 1);
  T_EQ(o->result, 42);
  T_EQ(o->err, 0);
  T_EQ(ci.calls, 1);
  T_EQ(ci.in_aco, 1);
  T_EQ(ci.self_ok, 1);
  T_CHECK(aco_current() == NULL && !eventer_in_aco());

  o->mask = 1;
  T_EQ(px_run(p), 1);
  T_EQ(o->result, -1);
  T_EQ(o->err, EIO);

  o->mask = 2;
  T_EQ(px_run(p), 0);
  T_EQ(eventer_aco_proxy_busy(p), 1);
  expect_resume(71, EVENTER_STEP_ACO_PROXY, 7, 0, 5000);
  T_EQ(o->result, 7);
  T_EQ(ci.in_aco, 1);

  o->mask = 3;
  T_EQ(px_run(p), 1);
  T_EQ(ci.inner_rc[0], -1);
  T_EQ(ci.inner_err[0], EDEADLK);
  T_EQ(ci.inner_rc[1], -1);
  T_EQ(ci.inner_err[1], EDEADLK);
  T_EQ(ci.inner_rc[2], -1);
  T_EQ(ci.inner_err[2], EINVAL);
  T_EQ(eventer_aco_proxy_busy(q), 0);

  o->mask = 4;
  o->has_timeout = 1;
  o->timeout = ms(20);
  T_EQ(px_run(p), 0);
  expect_resume(71, EVENTER_STEP_ACO_PROXY, -1, ETIMEDOUT, 5000);

  /* no function; an unknown operation */
  o = px_op(p, EVENTER_PROXY_CALL, NULL, NULL, 0, NO_TMO);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, -1);
  T_EQ(o->err, EINVAL);
  px_op(p, 999, NULL, NULL, 0, NO_TMO);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, -1);
  T_EQ(o->err, EINVAL);
  quiet(5);
  px_free(p);
  px_free(q);
  drv_teardown();
}

static void sleeper_co(void) {
  struct timeval *t = eventer_aco_arg();
  eventer_aco_sleep(t);
}

static void *wake_later(void *arg) {
  usleep(10000);
  T_EQ(eventer_aco_wake(arg), 0);
  return NULL;
}

static int asynch_ran;
static void asynch_fn(void *c) {
  usleep(5000);
  __atomic_store_n((int *)c, 1, __ATOMIC_SEQ_CST);
}

static void test_sleep_yield_park_join(void) {
  drv_setup(1);
  eventer_aco_proxy_t *p = px_new(81);
  eventer_aco_co_t *h = eventer_aco_proxy_handle(p);
  eventer_aco_proxy_op_t *o = eventer_aco_proxy_op(p);

  /* SLEEP: on time, by a step */
  uint64_t t0 = t_now_us();
  px_op(p, EVENTER_PROXY_SLEEP, NULL, NULL, 0, 20);
  T_EQ(px_run(p), 0);
  resume_t *r = expect_resume(81, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  T_GE(r->at_us - t0, 20000);
  T_LE(r->at_us - t0, 20000 + ev_late_bound_us());
  /* no timeout is EINVAL (as eventer_aco_sleep(NULL)); {0,0} yields */
  px_op(p, EVENTER_PROXY_SLEEP, NULL, NULL, 0, NO_TMO);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, -1);
  T_EQ(o->err, EINVAL);
  px_op(p, EVENTER_PROXY_SLEEP, NULL, NULL, 0, 0);
  T_EQ(px_run(p), 0);
  expect_resume(81, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);

  /* YIELD: resumed by the loop's next timer phase */
  finish_iteration();
  px_op(p, EVENTER_PROXY_YIELD, NULL, NULL, 0, NO_TMO);
  T_EQ(px_run(p), 0);
  long it = iters;
  r = expect_resume(81, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  T_EQ(r->iter, it);
  /* a cancelled yield */
  px_op(p, EVENTER_PROXY_YIELD, NULL, NULL, 0, NO_TMO);
  T_EQ(px_run(p), 0);
  T_EQ(eventer_aco_cancel(h), 0);
  expect_resume(81, EVENTER_STEP_ACO_PROXY, -1, ECANCELED, 5000);

  /* PARK: woken from another thread */
  px_op(p, EVENTER_PROXY_PARK, NULL, NULL, 0, 10000);
  T_EQ(px_run(p), 0);
  pthread_t t;
  T_EQ(pthread_create(&t, NULL, wake_later, h), 0);
  expect_resume(81, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  T_EQ(pthread_join(t, NULL), 0);
  /* a wake that comes first is remembered */
  T_EQ(eventer_aco_wake(h), 0);
  px_op(p, EVENTER_PROXY_PARK, NULL, NULL, 0, 10000);
  T_EQ(px_run(p), 1);
  T_EQ(o->result, 0);
  /* timed out, cancelled */
  px_op(p, EVENTER_PROXY_PARK, NULL, NULL, 0, 20);
  T_EQ(px_run(p), 0);
  expect_resume(81, EVENTER_STEP_ACO_PROXY, -1, ETIMEDOUT, 5000);
  px_op(p, EVENTER_PROXY_PARK, NULL, NULL, 0, NO_TMO);
  T_EQ(px_run(p), 0);
  T_EQ(eventer_aco_cancel(h), 0);
  expect_resume(81, EVENTER_STEP_ACO_PROXY, -1, ECANCELED, 5000);

  /* JOIN a plain C coroutine */
  struct timeval nap = ms(20);
  eventer_aco_co_t *c = eventer_aco_spawn(sleeper_co, &nap, NULL);
  T_CHECK(c != NULL);
  o = px_op(p, EVENTER_PROXY_JOIN, NULL, NULL, 0, NO_TMO);
  o->obj = c;
  T_EQ(px_run(p), 0);
  expect_resume(81, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  T_CHECK(eventer_aco_co_done(c));
  T_EQ(px_run(p), 1); /* already ended */
  T_EQ(o->result, 0);
  eventer_aco_co_release(c);
  struct timeval long_nap = ms(60000);
  c = eventer_aco_spawn(sleeper_co, &long_nap, NULL);
  o = px_op(p, EVENTER_PROXY_JOIN, NULL, NULL, 0, 20);
  o->obj = c;
  T_EQ(px_run(p), 0);
  expect_resume(81, EVENTER_STEP_ACO_PROXY, -1, ETIMEDOUT, 5000);
  o->has_timeout = 0;
  T_EQ(px_run(p), 0);
  T_EQ(eventer_aco_cancel(c), 0); /* its sleep ends, so does it */
  expect_resume(81, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  eventer_aco_co_release(c);
  o->obj = h; /* itself */
  T_EQ(px_run(p), 1);
  T_EQ(o->result, -1);
  T_EQ(o->err, EDEADLK);
  o->obj = NULL;
  T_EQ(px_run(p), 1);
  T_EQ(o->err, EINVAL);

  /* ASYNCH: resumed after the job's COMPLETE */
  asynch_ran = 0;
  o = px_op(p, EVENTER_PROXY_ASYNCH, NULL, NULL, 0, NO_TMO);
  o->fn = asynch_fn;
  o->fn_closure = &asynch_ran;
  o->q = NULL;
  o->subq = 0;
  T_EQ(px_run(p), 0);
  expect_resume(81, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  T_EQ(__atomic_load_n(&asynch_ran, __ATOMIC_SEQ_CST), 1);

  quiet(5);
  px_free(p);
  drv_teardown();
}

static void test_convert_connect_accept(void) {
  drv_setup(1);
  eventer_aco_proxy_t *pa = px_new(91), *pc = px_new(92);
  eventer_aco_proxy_op_t *oa = eventer_aco_proxy_op(pa);
  eventer_aco_proxy_op_t *oc = eventer_aco_proxy_op(pc);

  /* CONVERT refuses what eventer_set_eventer_aco refuses */
  int sv[2];
  sockpair(sv);
  eventer_t e = px_convert(pa, sv[0]);
  px_op(pa, EVENTER_PROXY_CONVERT, e, NULL, 0, NO_TMO); /* already aco */
  T_EQ(px_run(pa), 1);
  T_EQ(oa->result, -1);
  T_EQ(oa->err, EINVAL);
  eventer_t reg = eventer_alloc_fd(dummy_cb, NULL, sv[1], EVENTER_READ);
  T_EQ(eventer_add_ex(reg), 0);
  px_op(pa, EVENTER_PROXY_CONVERT, reg, NULL, 0, NO_TMO); /* registered */
  T_EQ(px_run(pa), 1);
  T_EQ(oa->result, -1);
  T_EQ(oa->err, EINVAL);
  T_PTR_EQ(eventer_remove(reg), reg);
  eventer_free(reg);
  eventer_t nofd = eventer_alloc();
  px_op(pa, EVENTER_PROXY_CONVERT, nofd, NULL, 0, NO_TMO); /* fd -1 */
  T_EQ(px_run(pa), 1);
  T_EQ(oa->err, EINVAL);
  eventer_free(nofd);
  eventer_aco_free((eventer_aco_t)e);
  close(sv[0]);
  close(sv[1]);

  /* ACCEPT parks until CONNECT arrives */
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in la = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(la);
  T_EQ(bind(lfd, (struct sockaddr *)&la, sl), 0);
  T_EQ(listen(lfd, 8), 0);
  T_EQ(getsockname(lfd, (struct sockaddr *)&la, &sl), 0);
  eventer_t le = px_convert(pa, lfd);
  px_op(pa, EVENTER_PROXY_ACCEPT, le, NULL, 0, 5000);
  T_EQ(px_run(pa), 0);
  int cfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  eventer_t ce = px_convert(pc, cfd);
  px_op(pc, EVENTER_PROXY_CONNECT, ce, NULL, 0, 5000);
  memcpy(&oc->addr, &la, sizeof(la));
  oc->addrlen = sizeof(la);
  int crc = px_run(pc);
  T_CHECK(crc == 0 || crc == 1);
  int n0 = nres;
  drive_until_res(n0 + (crc == 0 ? 2 : 1), 5000);
  int64_t afd = -1;
  for (int i = n0; i < nres; i++) {
    T_EQ(res[i].kind, EVENTER_STEP_ACO_PROXY);
    T_EQ(res[i].err, 0);
    if (res[i].id == 91) {
      afd = res[i].result;
    } else {
      T_EQ(res[i].id, 92);
      T_EQ(res[i].result, 0);
    }
  }
  if (crc == 1) T_EQ(oc->result, 0);
  T_GE(afd, 0);
  T_EQ(oa->result, afd);
  /* the peer's address is in the op */
  struct sockaddr_in mine;
  socklen_t ml = sizeof(mine);
  T_EQ(getsockname(cfd, (struct sockaddr *)&mine, &ml), 0);
  T_EQ(oa->addrlen, sizeof(struct sockaddr_in));
  struct sockaddr_in *peer = (struct sockaddr_in *)&oa->addr;
  T_EQ(peer->sin_family, AF_INET);
  T_EQ(peer->sin_port, mine.sin_port);
  /* and the connection works */
  eventer_t ae = px_convert(pa, (int)afd);
  px_op(pc, EVENTER_PROXY_WRITE, ce, "ping", 4, 1000);
  T_EQ(px_run(pc), 1);
  T_EQ(oc->result, 4);
  char buf[8];
  px_op(pa, EVENTER_PROXY_READ, ae, buf, sizeof(buf), 1000);
  int rrc = px_run(pa);
  if (rrc == 0) expect_resume(91, EVENTER_STEP_ACO_PROXY, 4, 0, 5000);
  T_EQ(oa->result, 4);
  T_CHECK(!memcmp(buf, "ping", 4));

  /* ACCEPT times out */
  px_op(pa, EVENTER_PROXY_ACCEPT, le, NULL, 0, 20);
  T_EQ(px_run(pa), 0);
  expect_resume(91, EVENTER_STEP_ACO_PROXY, -1, ETIMEDOUT, 5000);

  /* CONNECT refused */
  int dfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  eventer_t de = px_convert(pc, dfd);
  struct sockaddr_in dead = dead_port();
  px_op(pc, EVENTER_PROXY_CONNECT, de, NULL, 0, 5000);
  memcpy(&oc->addr, &dead, sizeof(dead));
  oc->addrlen = sizeof(dead);
  crc = px_run(pc);
  if (crc == 0) {
    expect_resume(92, EVENTER_STEP_ACO_PROXY, -1, ECONNREFUSED, 5000);
  } else {
    T_EQ(crc, 1);
    T_EQ(oc->result, -1);
    T_EQ(oc->err, ECONNREFUSED);
  }

  quiet(5);
  eventer_t evs[] = {le, ce, ae, de};
  for (int i = 0; i < 4; i++) {
    px_op(pa, EVENTER_PROXY_CLOSE, evs[i], NULL, 0, NO_TMO);
    T_EQ(px_run(pa), 1);
    T_EQ(oa->result, 0);
    eventer_aco_free((eventer_aco_t)evs[i]);
  }
  px_free(pa);
  px_free(pc);
  T_EQ(eventer_allocations_current(), 0);
  drv_teardown();
}

/* ---- misuse ------------------------------------------------------------------------------------ */

typedef struct {
  eventer_aco_proxy_t *p;
  eventer_t e;
  int rc[3], err[3];
} off_loop_t;

static void *off_loop_calls(void *arg) {
  off_loop_t *x = arg;
  errno = 0;
  x->rc[0] = eventer_aco_proxy_run(x->p);
  x->err[0] = errno;
  errno = 0;
  x->rc[1] = eventer_aco_proxy_wait(x->p, x->e, EVENTER_READ, 0, NULL);
  x->err[1] = errno;
  errno = 0;
  x->rc[2] = eventer_aco_proxy_free(x->p);
  x->err[2] = errno;
  return NULL;
}

static eventer_aco_proxy_t *co_target;
static int co_rc[3], co_err[3];
static void misuse_co(void) {
  errno = 0;
  co_rc[0] = eventer_aco_proxy_run(co_target);
  co_err[0] = errno;
  errno = 0;
  co_rc[1] = eventer_aco_proxy_wait(co_target, NULL, EVENTER_READ, 0, NULL);
  co_err[1] = errno;
  errno = 0;
  co_rc[2] = eventer_aco_proxy_free(co_target);
  co_err[2] = errno;
  co_step = 1;
}

static void test_misuse(void) {
  drv_setup(1);
  T_ERRNO(eventer_aco_proxy_run(NULL), EINVAL);
  T_ERRNO(eventer_aco_proxy_wait(NULL, NULL, EVENTER_READ, 0, NULL), EINVAL);

  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = px_new(111);
  eventer_t e = px_convert(p, sv[0]);
  eventer_aco_proxy_op_t *o = px_op(p, EVENTER_PROXY_SLEEP, NULL, NULL, 0, 10);

  /* not the proxy's loop thread */
  off_loop_t x = {.p = p, .e = e};
  run_thread(off_loop_calls, &x);
  T_EQ(x.rc[0], -1);
  T_EQ(x.err[0], EPERM);
  T_EQ(x.rc[1], -1);
  T_EQ(x.err[1], EPERM);
  T_EQ(x.rc[2], -1);
  T_EQ(x.err[2], EINVAL);
  T_EQ(eventer_aco_proxy_busy(p), 0);
  T_EQ(o->result, -99); /* nothing ran */

  /* inside a coroutine (a C callback reached from one) */
  co_target = p;
  co_step = 0;
  eventer_aco_start(misuse_co, NULL);
  T_EQ(co_step, 1);
  T_EQ(co_rc[0], -1);
  T_EQ(co_err[0], EDEADLK);
  T_EQ(co_rc[1], -1);
  T_EQ(co_err[1], EDEADLK);
  T_EQ(co_rc[2], -1);
  T_EQ(co_err[2], EINVAL);
  T_EQ(o->result, -99);
  quiet(20); /* the SLEEP op was never started */

  /* the proxy still works */
  T_EQ(px_run(p), 0);
  expect_resume(111, EVENTER_STEP_ACO_PROXY, 0, 0, 5000);
  quiet(5);
  px_free(p);
  eventer_aco_free((eventer_aco_t)e);
  close(sv[0]);
  close(sv[1]);
  drv_teardown();
}

/* a C loop (no step buffer) cannot take a proxy completion */
static void no_step_buffer_child(void *arg) {
  (void)arg;
  ev_setup_external(1);
  int sv[2];
  sockpair(sv);
  eventer_aco_proxy_t *p = eventer_aco_proxy_new(1);
  eventer_t e = px_convert(p, sv[0]);
  T_EQ(px_wait(p, e, EVENTER_READ, 16, NO_TMO), 0);
  T_EQ(write(sv[1], "x", 1), 1);
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
  int want = 2;
  drive_until(&wake_steps, want, 5000);
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
  eventer_foreign_reset();
  wake_loop = eventer_loop_current();
  quiet(5);
  T_EQ(eventer_foreign_wake(wake_loop), 0);
  drive_until(&wake_steps, 1, 5000);
  quiet(5);
  T_EQ(wake_steps, 1);
  drv_teardown();
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
  T_CHECK(eventer_callback_is_foreign(foreign_cb));
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

static void ts_fill_stack(ts_t *t) {
  aco_t *co = aco_current();
  T_CHECK(co != NULL);
  t->lo = co->share_stack->ptr;
  t->hi = t->lo + co->share_stack->sz;
  char here;
  T_CHECK(on_share_stack(t, &here));
}

static void ts_co(void) {
  ts_t *t = eventer_aco_arg();
  ts_fill_stack(t);
  eventer_call_on_thread_stack(ts_outer, t);
  co_step = 1;
}

static int64_t ts_call(void *obj, eventer_aco_proxy_op_t *op) {
  (void)op;
  ts_t *t = obj;
  ts_fill_stack(t);
  eventer_call_on_thread_stack(ts_outer, t);
  return 0;
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

  /* a proxy's coroutine (its own share stack) */
  memset(&t, 0, sizeof(t));
  t.main_mark = &mark;
  eventer_aco_proxy_t *p = px_new(121);
  eventer_aco_proxy_op_t *o = px_op(p, EVENTER_PROXY_CALL, NULL, NULL, 0, NO_TMO);
  o->call = ts_call;
  o->obj = &t;
  T_EQ(px_run(p), 1);
  T_EQ(o->result, 0);
  ts_check(&t, 1);
  px_free(p);
  drv_teardown();
}

T_MAIN({"new_and_free", test_new_and_free},
       {"read_write_at_once", test_read_write_at_once},
       {"read_parks", test_read_parks},
       {"wait_read_through", test_wait_read_through},
       {"timeouts", test_timeouts},
       {"cancel", test_cancel},
       {"close_while_waiting", test_close_while_waiting},
       {"several_completions", test_several_completions},
       {"stream", test_stream},
       {"call", test_call},
       {"sleep_yield_park_join", test_sleep_yield_park_join},
       {"convert_connect_accept", test_convert_connect_accept},
       {"misuse", test_misuse},
       {"completion_needs_step_buffer", test_completion_needs_step_buffer},
       {"foreign_wake", test_foreign_wake},
       {"foreign_closures", test_foreign_closures},
       {"call_on_thread_stack", test_call_on_thread_stack})
