/*
 * eventer_conformance_steps.c - the built-in steps of the scenario language
 * (docs/conformance.md lists them with their Go counterparts), each a thin
 * call of the eventer_aco_* function it is named after.
 */
#include "eventer_conformance_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "eventer_aco_sync.h"
#include "eventer_jobq.h"
#include "mtev_listener.h"

int ev_cf_set_addr(eventer_conformance_call_t *c, int i, const struct sockaddr *sa,
                   socklen_t len);
ev_cf_co_t *ev_cf_co_arg(eventer_conformance_call_t *c, int i);
void (*ev_cf_service(const char *name))(void);

#define TMO(c) \
  struct timeval tmo_tv_; \
  struct timeval *tmo = eventer_conformance_opt_tv((c), "timeout", &tmo_tv_)

static int ev_cf_fail(int err) {
  errno = err;
  return -1;
}

static int ev_cf_value(eventer_conformance_call_t *c, long long v) {
  eventer_conformance_result(c, "value=%lld", v);
  return 0;
}

/* ---- coroutines and time ------------------------------------------------------------ */

static int st_sleep(eventer_conformance_call_t *c) {
  struct timeval tv;
  return eventer_aco_sleep(eventer_conformance_arg_tv(c, 0, &tv));
}

static int st_yield(eventer_conformance_call_t *c) {
  (void)c;
  return eventer_aco_yield();
}

static int st_park(eventer_conformance_call_t *c) {
  TMO(c);
  return eventer_aco_park(tmo);
}

static int st_wake(eventer_conformance_call_t *c) {
  eventer_aco_co_t *h = eventer_conformance_co(c, 0);
  return h ? eventer_aco_wake(h) : -1;
}

static int st_cancel(eventer_conformance_call_t *c) {
  eventer_aco_co_t *h = eventer_conformance_co(c, 0);
  return h ? eventer_aco_cancel(h) : -1;
}

static int st_join(eventer_conformance_call_t *c) {
  TMO(c);
  eventer_aco_co_t *h = eventer_conformance_co(c, 0);
  return h ? eventer_aco_join(h, tmo) : -1;
}

/* start CO [stack=N]: eventer_aco_spawn onto CO's loop, or with a stack
 * size eventer_aco_start_stack (CO must be on the caller's loop) */
static int st_start(eventer_conformance_call_t *c) {
  ev_cf_co_t *co = ev_cf_co_arg(c, 0);
  if (!co) return ev_cf_fail(EINVAL);
  const char *st = eventer_conformance_opt(c, "stack");
  size_t stack = st ? (size_t)strtoull(st, NULL, 10) : 0;
  if (st && (stack == 0 || co->loop != c->co->loop)) return ev_cf_fail(EINVAL);
  return ev_cf_start_co(c->run, co, stack);
}

static int st_done(eventer_conformance_call_t *c) {
  ev_cf_co_t *co = ev_cf_co_arg(c, 0);
  if (!co) return ev_cf_fail(EINVAL);
  eventer_aco_co_t *h = atomic_load(&co->handle);
  return ev_cf_value(c, h ? eventer_aco_co_done(h) != 0 : 0);
}

/* eventer_aco_arg / eventer_aco_self / eventer_in_aco agree on who runs */
static int st_arg(eventer_conformance_call_t *c) {
  if (!eventer_in_aco()) eventer_conformance_result(c, "not in a coroutine");
  else if (eventer_aco_arg() != c->co) eventer_conformance_result(c, "wrong arg");
  else if (eventer_aco_self() != atomic_load(&c->co->handle))
    eventer_conformance_result(c, "wrong self");
  return 0;
}

static int st_stats(eventer_conformance_call_t *c) {
  eventer_aco_stats_t st;
  if (eventer_aco_get_stats(NULL, &st) != 0) return -1;
  /* exact counts depend on the build; their relations do not */
  if (st.resumes < 1) eventer_conformance_result(c, "resumes=%llu", (unsigned long long)st.resumes);
  else if (st.save_stack_sz < st.max_save_stack)
    eventer_conformance_result(c, "save stack %zu below its high mark %zu", st.save_stack_sz,
                               st.max_save_stack);
  return 0;
}

/* ---- asynch work -------------------------------------------------------------------------- */

static eventer_jobq_t *ev_cf_queue(eventer_conformance_call_t *c, int *err) {
  *err = 0;
  int i = eventer_conformance_opt_arg(c, "queue");
  if (i < 0) return NULL; /* the default queue */
  eventer_jobq_t *jq = ev_cf_typed(c, i, "jobq");
  if (!jq) *err = errno;
  return jq;
}

static void ev_cf_sleep_work(void *closure) {
  long long us = (long long)(intptr_t)closure;
  struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* The options that pick the form of an asynch call: queue=Q (the default
 * queue without it), subqueue=N, and for the C-only steps gate=G.  Each
 * step calls the shortest form its options allow, as a user would
 * (eventer_aco_simple_asynch for none, ..._queue for a queue, ...). */
typedef struct {
  eventer_jobq_t *q;
  int has_q, has_sq;
  uint64_t sq;
  eventer_aco_gate_t gate; /* NULL: no gate= */
} ev_cf_asynch_opts_t;

static int ev_cf_asynch_opts(eventer_conformance_call_t *c, ev_cf_asynch_opts_t *o) {
  int err;
  memset(o, 0, sizeof(*o));
  o->q = ev_cf_queue(c, &err);
  if (err) return ev_cf_fail(err);
  o->has_q = eventer_conformance_opt_arg(c, "queue") >= 0;
  const char *sq = eventer_conformance_opt(c, "subqueue");
  if (sq) {
    o->has_sq = 1;
    o->sq = strtoull(sq, NULL, 10);
  }
  int g = eventer_conformance_opt_arg(c, "gate");
  if (g >= 0 && !(o->gate = ev_cf_typed(c, g, "gate"))) return -1;
  return 0;
}

static int st_asynch(eventer_conformance_call_t *c) {
  ev_cf_asynch_opts_t o;
  if (ev_cf_asynch_opts(c, &o) != 0) return -1;
  /* the duration travels as the closure itself: a pointer into this
   * coroutine's stack would not be valid while it waits (aco.h) */
  void *us = (void *)(intptr_t)eventer_conformance_arg_int(c, 0);
  if (o.has_sq) eventer_aco_simple_asynch_queue_subqueue(ev_cf_sleep_work, us, o.q, o.sq);
  else if (o.has_q) eventer_aco_simple_asynch_queue(ev_cf_sleep_work, us, o.q);
  else eventer_aco_simple_asynch(ev_cf_sleep_work, us);
  return 0;
}

typedef struct {
  long long us;
  int work, cleanup, complete, order_ok;
  int phases;
  int gated; /* nobody waits for it: COMPLETE frees it */
} ev_cf_job_t;

static void ev_cf_phase(ev_cf_job_t *j, eventer_asynch_op_t op) {
  switch (op) {
  case EVENTER_ASYNCH_WORK:
    j->order_ok &= j->phases == 0 && !eventer_in_loop();
    j->work++;
    ev_cf_sleep_work((void *)(intptr_t)j->us);
    break;
  case EVENTER_ASYNCH_CLEANUP:
    j->order_ok &= !eventer_in_loop() && j->cleanup == 0 && j->complete == 0;
    j->cleanup++;
    break;
  default:
    j->order_ok &= eventer_in_loop() && j->cleanup == 1 && j->complete == 0;
    j->complete++;
    if (j->gated) {
      /* nobody reads it: a gated job out of order ends the run loudly */
      if (!j->order_ok) mtevL(mtev_error, "conformance: a gated job's phases out of order\n");
      free(j);
      return;
    }
  }
  j->phases++;
}

static void ev_cf_deadline_fn(eventer_asynch_op_t op, void *closure) {
  ev_cf_phase(closure, op);
}

/* WORK runs unless the deadline passed before a job thread took it.  With
 * gate=G the call does not wait: the job is counted on G, and its
 * COMPLETE frees it (gate_wait waits for it). */
static int st_asynch_deadline(eventer_conformance_call_t *c) {
  ev_cf_asynch_opts_t o;
  if (ev_cf_asynch_opts(c, &o) != 0) return -1;
  ev_cf_job_t *j = calloc(1, sizeof(*j));
  if (!j) return -1;
  j->us = eventer_conformance_arg_int(c, 0);
  j->order_ok = 1;
  j->gated = o.gate != NULL;
  struct timeval dl, now, *whence = NULL;
  if (eventer_conformance_opt_tv(c, "deadline", &dl)) {
    gettimeofday(&now, NULL);
    timeradd(&now, &dl, &dl);
    whence = &dl;
  }
  eventer_asynch_func_t f = ev_cf_deadline_fn;
  if (o.gate) {
    if (whence) eventer_aco_asynch_queue_subqueue_deadline_gated(o.gate, f, j, o.q, o.sq, whence);
    else if (o.has_sq) eventer_aco_asynch_queue_subqueue_gated(o.gate, f, j, o.q, o.sq);
    else if (o.has_q) eventer_aco_asynch_queue_gated(o.gate, f, j, o.q);
    else eventer_aco_asynch_gated(o.gate, f, j);
    return 0;
  }
  if (whence) eventer_aco_asynch_queue_subqueue_deadline(f, j, o.q, o.sq, whence);
  else if (o.has_sq) eventer_aco_asynch_queue_subqueue(f, j, o.q, o.sq);
  else if (o.has_q) eventer_aco_asynch_queue(f, j, o.q);
  else eventer_aco_asynch(f, j);
  if (!j->order_ok || j->cleanup != 1 || j->complete != 1)
    eventer_conformance_result(c, "phases out of order");
  else eventer_conformance_result(c, "work=%d", j->work);
  free(j);
  return 0;
}

static int ev_cf_asynch_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)e, (void)now;
  ev_cf_phase(closure, (eventer_asynch_op_t)mask);
  return 0;
}

static int ev_cf_run_result(eventer_conformance_call_t *c, ev_cf_job_t *j) {
  if (!j->order_ok || j->work != 1 || j->cleanup != 1 || j->complete != 1)
    eventer_conformance_result(c, "phases: work=%d cleanup=%d complete=%d in order=%d", j->work,
                               j->cleanup, j->complete, j->order_ok);
  free(j);
  return 0;
}

/* run_asynch, run_asynch_gated and try_run_asynch: an asynch event whose
 * callback records its phases. */
static ev_cf_job_t *ev_cf_run_job(eventer_conformance_call_t *c, int arg, int gated,
                                  eventer_t *e) {
  ev_cf_job_t *j = calloc(1, sizeof(*j));
  if (!j) return NULL;
  j->us = eventer_conformance_arg_int(c, arg);
  j->order_ok = 1;
  j->gated = gated;
  if (!(*e = eventer_alloc_asynch(ev_cf_asynch_cb, j))) {
    free(j);
    return NULL;
  }
  return j;
}

static int st_run_asynch(eventer_conformance_call_t *c) {
  ev_cf_asynch_opts_t o;
  if (ev_cf_asynch_opts(c, &o) != 0) return -1;
  eventer_t e;
  ev_cf_job_t *j = ev_cf_run_job(c, 0, 0, &e);
  if (!j) return -1;
  if (o.has_sq) eventer_aco_run_asynch_queue_subqueue(o.q, e, o.sq);
  else if (o.has_q) eventer_aco_run_asynch_queue(o.q, e);
  else eventer_aco_run_asynch(e);
  return ev_cf_run_result(c, j);
}

static int st_run_asynch_gated(eventer_conformance_call_t *c) {
  eventer_aco_gate_t g = ev_cf_typed(c, 0, "gate");
  if (!g) return -1;
  ev_cf_asynch_opts_t o;
  if (ev_cf_asynch_opts(c, &o) != 0) return -1;
  eventer_t e;
  if (!ev_cf_run_job(c, 1, 1, &e)) return -1;
  if (o.has_sq) eventer_aco_run_asynch_queue_subqueue_gated(g, o.q, e, o.sq);
  else if (o.has_q) eventer_aco_run_asynch_queue_gated(g, o.q, e);
  else eventer_aco_run_asynch_gated(g, e);
  return 0;
}

/* try_run_asynch Dur [queue=Q] [subqueue=N] [gate=G] */
static int st_try_run_asynch(eventer_conformance_call_t *c) {
  ev_cf_asynch_opts_t o;
  if (ev_cf_asynch_opts(c, &o) != 0) return -1;
  eventer_t e;
  ev_cf_job_t *j = ev_cf_run_job(c, 0, o.gate != NULL, &e);
  if (!j) return -1;
  mtev_boolean ok;
  if (o.gate) {
    if (o.has_sq) ok = eventer_aco_try_run_asynch_queue_subqueue_gated(o.gate, o.q, e, o.sq);
    else if (o.has_q) ok = eventer_aco_try_run_asynch_queue_gated(o.gate, o.q, e);
    else ok = eventer_aco_try_run_asynch_gated(o.gate, e);
  } else {
    if (o.has_sq) ok = eventer_aco_try_run_asynch_queue_subqueue(o.q, e, o.sq);
    else if (o.has_q) ok = eventer_aco_try_run_asynch_queue(o.q, e);
    else ok = eventer_aco_try_run_asynch(e);
  }
  if (!ok) {
    int err = errno;
    eventer_free(e); /* refused: still ours */
    free(j);
    return ev_cf_fail(err);
  }
  return o.gate ? 0 : ev_cf_run_result(c, j);
}

static void ev_cf_gate_free(void *g) { eventer_aco_gate_wait(g); } /* in the cleaner */

static int st_gate(eventer_conformance_call_t *c) {
  eventer_aco_gate_t g = eventer_aco_gate();
  if (!g) return -1;
  return ev_cf_set_typed(c, 0, "gate", g, ev_cf_gate_free);
}

static int st_asynch_gated(eventer_conformance_call_t *c) {
  eventer_aco_gate_t g = ev_cf_typed(c, 0, "gate");
  if (!g) return -1;
  ev_cf_asynch_opts_t o;
  if (ev_cf_asynch_opts(c, &o) != 0) return -1;
  void *us = (void *)(intptr_t)eventer_conformance_arg_int(c, 1);
  if (o.has_sq) eventer_aco_simple_asynch_queue_subqueue_gated(g, ev_cf_sleep_work, us, o.q, o.sq);
  else if (o.has_q) eventer_aco_simple_asynch_queue_gated(g, ev_cf_sleep_work, us, o.q);
  else eventer_aco_simple_asynch_gated(g, ev_cf_sleep_work, us);
  return 0;
}

static int st_gate_wait(eventer_conformance_call_t *c) {
  eventer_aco_gate_t g = ev_cf_typed(c, 0, "gate");
  if (!g) return -1;
  eventer_conformance_forget(c, 0); /* gate_wait frees it */
  eventer_aco_gate_wait(g);
  return 0;
}

static void ev_cf_jobq_free(void *q) { eventer_jobq_destroy(q); }

static int st_jobq(eventer_conformance_call_t *c) {
  char name[64];
  ev_cf_unique(c, eventer_conformance_arg(c, 0), name, sizeof(name));
  eventer_jobq_t *q = eventer_jobq_create(name);
  if (!q) return -1;
  const char *v;
  if ((v = eventer_conformance_opt(c, "concurrency")))
    eventer_jobq_set_concurrency(q, (uint32_t)strtoul(v, NULL, 10));
  if ((v = eventer_conformance_opt(c, "backlog")))
    eventer_jobq_set_max_backlog(q, (uint32_t)strtoul(v, NULL, 10));
  return ev_cf_set_typed(c, 0, "jobq", q, ev_cf_jobq_free);
}

/* ---- sockets -------------------------------------------------------------------------------- */

static int ev_cf_dummy_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)e, (void)mask, (void)closure, (void)now;
  return 0;
}

static eventer_aco_t ev_cf_convert(int fd) {
  eventer_t e = eventer_alloc_fd(ev_cf_dummy_cb, NULL, fd, EVENTER_READ);
  if (!e) return NULL;
  eventer_aco_t a = eventer_set_eventer_aco(e);
  if (!a) {
    int err = errno;
    eventer_free(e);
    errno = err;
  }
  return a;
}

static int st_socketpair(eventer_conformance_call_t *c) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  eventer_conformance_set_fd(c, 0, sv[0]);
  eventer_conformance_set_fd(c, 1, sv[1]);
  return 0;
}

/* An address for a new listener: loopback TCP with port 0, or an
 * abstract AF_UNIX name unique to this run and slot. */
static socklen_t ev_cf_listen_addr(eventer_conformance_call_t *c, int unix_,
                                   struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (!unix_) {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof(*in);
  }
  struct sockaddr_un *un = (struct sockaddr_un *)ss;
  un->sun_family = AF_UNIX;
  char name[80];
  ev_cf_unique(c, eventer_conformance_arg(c, 0), name, sizeof(name));
  int n = snprintf(un->sun_path + 1, sizeof(un->sun_path) - 1, "acoconform-c-%d-%s",
                   (int)getpid(), name);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static int st_listen(eventer_conformance_call_t *c) {
  int unix_ = strcmp(eventer_conformance_arg(c, 1), "unix") == 0;
  const char *bl = eventer_conformance_opt(c, "backlog");
  struct sockaddr_storage ss;
  socklen_t len = ev_cf_listen_addr(c, unix_, &ss);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (bind(fd, (struct sockaddr *)&ss, len) != 0 ||
      listen(fd, bl ? atoi(bl) : 16) != 0 ||
      getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
    int err = errno;
    close(fd);
    return ev_cf_fail(err);
  }
  eventer_conformance_set_fd(c, 0, fd);
  return ev_cf_set_addr(c, 0, (struct sockaddr *)&ss, len);
}

static int st_aco(eventer_conformance_call_t *c) {
  ev_cf_obj_t *o = ev_cf_slot(c, 0);
  if (!o) return -1;
  ev_cf_lock(c->run);
  int kind = o->kind, fd = o->fd;
  ev_cf_unlock(c->run);
  if (kind != EV_CF_FD) return ev_cf_fail(kind == EV_CF_NONE ? ENOENT : EINVAL);
  eventer_aco_t a = ev_cf_convert(fd);
  if (!a) return -1;
  return eventer_conformance_set_aco(c, 0, a);
}

static int st_connect(eventer_conformance_call_t *c) {
  TMO(c);
  struct sockaddr_storage ss;
  socklen_t len;
  if (eventer_conformance_addr(c, 1, &ss, &len) != 0) return -1;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  eventer_aco_t a = ev_cf_convert(fd);
  if (!a) {
    int err = errno;
    close(fd);
    return ev_cf_fail(err);
  }
  if (eventer_aco_connect(a, (struct sockaddr *)&ss, len, tmo) != 0) {
    int err = errno;
    eventer_aco_close(a);
    eventer_aco_free(a);
    return ev_cf_fail(err);
  }
  return eventer_conformance_set_aco(c, 0, a);
}

static int st_accept(eventer_conformance_call_t *c) {
  TMO(c);
  eventer_aco_t l = eventer_conformance_aco(c, 0);
  if (!l) return -1;
  int fd = eventer_aco_accept(l, NULL, NULL, tmo);
  if (fd < 0) return -1;
  return eventer_conformance_set_fd(c, 1, fd);
}

static int ev_cf_read_result(eventer_conformance_call_t *c, int rv, const char *buf) {
  if (rv < 0) return -1;
  if (rv == 0) eventer_conformance_result(c, "eof");
  else eventer_conformance_result_bytes(c, "data", buf, (size_t)rv);
  return 0;
}

static size_t ev_cf_read_len(eventer_conformance_call_t *c) {
  long long n = eventer_conformance_arg_int(c, 1);
  if (n < 1) n = 1;
  if (n > EV_CF_READ_MAX) n = EV_CF_READ_MAX;
  return (size_t)n;
}

static int st_read(eventer_conformance_call_t *c) {
  TMO(c);
  eventer_aco_t e = eventer_conformance_aco(c, 0);
  if (!e) return -1;
  size_t n = ev_cf_read_len(c);
  char *buf = malloc(n);
  if (!buf) return -1;
  int rv = eventer_aco_read(e, buf, n, tmo);
  int err = errno;
  rv = ev_cf_read_result(c, rv, buf);
  free(buf);
  errno = err;
  return rv;
}

static int st_write(eventer_conformance_call_t *c) {
  TMO(c);
  eventer_aco_t e = eventer_conformance_aco(c, 0);
  if (!e) return -1;
  const char *t = eventer_conformance_arg(c, 1);
  int rv = eventer_aco_write(e, t, strlen(t), tmo);
  if (rv < 0) return -1;
  eventer_conformance_result(c, "n=%d", rv);
  return 0;
}

/* writes 64 KiB at a time until a write fails: its errno is the result */
static int st_fill(eventer_conformance_call_t *c) {
  TMO(c);
  eventer_aco_t e = eventer_conformance_aco(c, 0);
  if (!e) return -1;
  char *buf = calloc(1, 65536);
  if (!buf) return -1;
  int rv;
  while ((rv = eventer_aco_write(e, buf, 65536, tmo)) > 0) {
  }
  int err = errno;
  free(buf);
  if (rv == 0) return ev_cf_fail(EIO); /* a write of 0 bytes: not expected */
  return ev_cf_fail(err);
}

static int st_wait(eventer_conformance_call_t *c) {
  TMO(c);
  eventer_aco_t e = eventer_conformance_aco(c, 0);
  if (!e) return -1;
  int mask = strcmp(eventer_conformance_arg(c, 1), "read") == 0 ? EVENTER_READ : EVENTER_WRITE;
  return eventer_aco_wait_ready(e, mask, tmo);
}

static int st_close(eventer_conformance_call_t *c) {
  eventer_aco_t e = eventer_conformance_aco(c, 0);
  if (!e) return -1;
  return eventer_aco_close(e);
}

/* a read bounded by the event's default read timeout (Go: a Conn's read
 * deadline) */
static int st_conn_read(eventer_conformance_call_t *c) {
  eventer_aco_t e = eventer_conformance_aco(c, 0);
  if (!e) return -1;
  struct timeval dl, *d = eventer_conformance_opt_tv(c, "deadline", &dl);
  size_t n = ev_cf_read_len(c);
  char *buf = malloc(n);
  if (!buf) return -1;
  eventer_aco_set_read_timeout(e, d);
  int rv = eventer_aco_read(e, buf, n, NULL);
  int err = errno;
  eventer_aco_set_read_timeout(e, NULL);
  rv = ev_cf_read_result(c, rv, buf);
  free(buf);
  errno = err;
  return rv;
}

static int st_conn_write(eventer_conformance_call_t *c) {
  eventer_aco_t e = eventer_conformance_aco(c, 0);
  if (!e) return -1;
  struct timeval dl, *d = eventer_conformance_opt_tv(c, "deadline", &dl);
  const char *t = eventer_conformance_arg(c, 1);
  size_t len = strlen(t), done = 0;
  eventer_aco_set_write_timeout(e, d);
  int rv = 0;
  while (done < len && (rv = eventer_aco_write(e, t + done, len - done, NULL)) > 0)
    done += (size_t)rv;
  int err = errno;
  eventer_aco_set_write_timeout(e, NULL);
  if (rv < 0) return ev_cf_fail(err);
  eventer_conformance_result(c, "n=%zu", done);
  return 0;
}

static int st_accept_deadline(eventer_conformance_call_t *c) {
  eventer_aco_t l = eventer_conformance_aco(c, 0);
  if (!l) return -1;
  struct timeval dl, *d = eventer_conformance_opt_tv(c, "deadline", &dl);
  eventer_aco_set_accept_timeout(l, d);
  int fd = eventer_aco_accept(l, NULL, NULL, NULL);
  int err = errno;
  eventer_aco_set_accept_timeout(l, NULL);
  if (fd < 0) return ev_cf_fail(err);
  return eventer_conformance_set_fd(c, 1, fd);
}

/* eventer_aco_set_closure / get_closure round trip, and eventer_is_aco */
static int st_closure(eventer_conformance_call_t *c) {
  eventer_aco_t e = eventer_conformance_aco(c, 0);
  if (!e) return -1;
  void *old = eventer_aco_get_closure(e);
  eventer_aco_set_closure(e, c);
  int same = eventer_aco_get_closure(e) == (void *)c;
  eventer_aco_set_closure(e, old);
  if (!same || eventer_aco_get_closure(e) != old) eventer_conformance_result(c, "closure lost");
  return 0;
}

/* aco_classic A: the libmtev form, eventer_set_eventer_aco_co: NULL turns
 * aco event A back into a classic one (EBUSY while a coroutine waits on
 * it), then the running coroutine makes it an aco event again. */
static int st_aco_classic(eventer_conformance_call_t *c) {
  eventer_aco_t a = eventer_conformance_aco(c, 0);
  if (!a) return -1;
  eventer_t e = (eventer_t)a;
  errno = 0;
  if (!eventer_set_eventer_aco_co(e, NULL) && errno != 0) return -1; /* NULL on success too */
  int classic = !eventer_is_aco(e);
  if (!eventer_set_eventer_aco_co(e, aco_get_co())) return -1;
  if (!classic || !eventer_is_aco(e)) eventer_conformance_result(c, "not converted");
  return 0;
}

static int st_is_aco(eventer_conformance_call_t *c) {
  ev_cf_obj_t *o = ev_cf_slot(c, 0);
  if (!o) return -1;
  ev_cf_lock(c->run);
  int kind = o->kind;
  eventer_aco_t a = o->aco;
  ev_cf_unlock(c->run);
  if (kind == EV_CF_NONE) return ev_cf_fail(ENOENT);
  return ev_cf_value(c, kind == EV_CF_ACO && eventer_is_aco((eventer_t)a));
}

/* plain syscalls on a plain fd (the other end of a conversation) */
static int ev_cf_plain_fd(eventer_conformance_call_t *c, int i) {
  ev_cf_obj_t *o = ev_cf_slot(c, i);
  if (!o) return -1;
  ev_cf_lock(c->run);
  int kind = o->kind, fd = o->fd;
  ev_cf_unlock(c->run);
  if (kind != EV_CF_FD) return ev_cf_fail(kind == EV_CF_NONE ? ENOENT : EINVAL);
  return fd;
}

static int st_sys_write(eventer_conformance_call_t *c) {
  int fd = ev_cf_plain_fd(c, 0);
  if (fd < 0) return -1;
  const char *t = eventer_conformance_arg(c, 1);
  ssize_t rv = send(fd, t, strlen(t), MSG_NOSIGNAL);
  if (rv < 0) return -1;
  if ((size_t)rv < strlen(t)) eventer_conformance_result(c, "n=%zd", rv);
  return 0;
}

static int st_sys_read(eventer_conformance_call_t *c) {
  int fd = ev_cf_plain_fd(c, 0);
  if (fd < 0) return -1;
  size_t n = ev_cf_read_len(c);
  char *buf = malloc(n);
  if (!buf) return -1;
  int rv = (int)read(fd, buf, n);
  int err = errno;
  rv = ev_cf_read_result(c, rv, buf);
  free(buf);
  errno = err;
  return rv;
}

static int st_sys_close(eventer_conformance_call_t *c) {
  if (ev_cf_plain_fd(c, 0) < 0) return -1;
  ev_cf_obj_t *o = ev_cf_slot(c, 0);
  ev_cf_lock(c->run);
  ev_cf_obj_t old = *o;
  o->kind = EV_CF_NONE;
  o->fd = -1;
  ev_cf_unlock(c->run);
  return close(old.fd);
}

static int st_sys_reset(eventer_conformance_call_t *c) {
  int fd = ev_cf_plain_fd(c, 0);
  if (fd < 0) return -1;
  struct linger lg = {1, 0};
  if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) != 0) return -1;
  return st_sys_close(c);
}

static int st_sys_shutdown(eventer_conformance_call_t *c) {
  int fd = ev_cf_plain_fd(c, 0);
  if (fd < 0) return -1;
  const char *how = eventer_conformance_arg(c, 1);
  return shutdown(fd, strcmp(how, "rd") == 0 ? SHUT_RD : strcmp(how, "wr") == 0 ? SHUT_WR : SHUT_RDWR);
}

static int st_sys_connect(eventer_conformance_call_t *c) {
  struct sockaddr_storage ss;
  socklen_t len;
  if (eventer_conformance_addr(c, 1, &ss, &len) != 0) return -1;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&ss, len) != 0 || fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
    int err = errno;
    close(fd);
    return ev_cf_fail(err);
  }
  return eventer_conformance_set_fd(c, 0, fd);
}

static int st_sys_accept(eventer_conformance_call_t *c) {
  int fd = ev_cf_plain_fd(c, 0);
  if (fd < 0) return -1;
  TMO(c);
  int ms = tmo ? (int)(tmo->tv_sec * 1000 + tmo->tv_usec / 1000) : 5000;
  struct pollfd p = {fd, POLLIN, 0};
  int rv = poll(&p, 1, ms);
  if (rv < 0) return -1;
  if (rv == 0) return ev_cf_fail(ETIMEDOUT);
  int nfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (nfd < 0) return -1;
  return eventer_conformance_set_fd(c, 1, nfd);
}

/* ---- sync objects ------------------------------------------------------------------------------ */

#define FREE_WRAPPER(T, fn) \
  static void fn##_void(void *p) { (void)fn((T *)p); }
FREE_WRAPPER(eventer_aco_sem_t, eventer_aco_sem_free)
FREE_WRAPPER(eventer_aco_mutex_t, eventer_aco_mutex_free)
FREE_WRAPPER(eventer_aco_wg_t, eventer_aco_wg_free)
FREE_WRAPPER(eventer_aco_chan_t, eventer_aco_chan_free)

/* a *_free step: forgotten by the scenario when it succeeds */
#define FREE_STEP(name, T, type, fn)                         \
  static int name(eventer_conformance_call_t *c) {           \
    T *o = ev_cf_typed(c, 0, type);                          \
    if (!o) return -1;                                       \
    if (fn(o) != 0) return -1;                               \
    eventer_conformance_forget(c, 0);                        \
    return 0;                                                \
  }

static int st_sem(eventer_conformance_call_t *c) {
  long long v = eventer_conformance_arg_int(c, 1);
  if (v < 0 || v > EVENTER_ACO_SEM_VALUE_MAX) return ev_cf_fail(EINVAL);
  eventer_aco_sem_t *s = eventer_aco_sem_new((unsigned)v);
  if (!s) return -1;
  return ev_cf_set_typed(c, 0, "sem", s, eventer_aco_sem_free_void);
}
static int st_sem_wait(eventer_conformance_call_t *c) {
  TMO(c);
  eventer_aco_sem_t *s = ev_cf_typed(c, 0, "sem");
  return s ? eventer_aco_sem_wait(s, tmo) : -1;
}
static int st_sem_trywait(eventer_conformance_call_t *c) {
  eventer_aco_sem_t *s = ev_cf_typed(c, 0, "sem");
  return s ? eventer_aco_sem_trywait(s) : -1;
}
static int st_sem_post(eventer_conformance_call_t *c) {
  eventer_aco_sem_t *s = ev_cf_typed(c, 0, "sem");
  return s ? eventer_aco_sem_post(s) : -1;
}
static int st_sem_value(eventer_conformance_call_t *c) {
  eventer_aco_sem_t *s = ev_cf_typed(c, 0, "sem");
  return s ? ev_cf_value(c, eventer_aco_sem_value(s)) : -1;
}
FREE_STEP(st_sem_free, eventer_aco_sem_t, "sem", eventer_aco_sem_free)

static int st_mutex(eventer_conformance_call_t *c) {
  eventer_aco_mutex_t *m = eventer_aco_mutex_new();
  if (!m) return -1;
  return ev_cf_set_typed(c, 0, "mutex", m, eventer_aco_mutex_free_void);
}
static int st_lock(eventer_conformance_call_t *c) {
  TMO(c);
  eventer_aco_mutex_t *m = ev_cf_typed(c, 0, "mutex");
  return m ? eventer_aco_mutex_lock(m, tmo) : -1;
}
static int st_trylock(eventer_conformance_call_t *c) {
  eventer_aco_mutex_t *m = ev_cf_typed(c, 0, "mutex");
  return m ? eventer_aco_mutex_trylock(m) : -1;
}
static int st_unlock(eventer_conformance_call_t *c) {
  eventer_aco_mutex_t *m = ev_cf_typed(c, 0, "mutex");
  return m ? eventer_aco_mutex_unlock(m) : -1;
}
static int st_locked(eventer_conformance_call_t *c) {
  eventer_aco_mutex_t *m = ev_cf_typed(c, 0, "mutex");
  return m ? ev_cf_value(c, eventer_aco_mutex_locked(m)) : -1;
}
FREE_STEP(st_mutex_free, eventer_aco_mutex_t, "mutex", eventer_aco_mutex_free)

static int st_wg(eventer_conformance_call_t *c) {
  eventer_aco_wg_t *w = eventer_aco_wg_new();
  if (!w) return -1;
  return ev_cf_set_typed(c, 0, "wg", w, eventer_aco_wg_free_void);
}
static int st_wg_add(eventer_conformance_call_t *c) {
  eventer_aco_wg_t *w = ev_cf_typed(c, 0, "wg");
  return w ? eventer_aco_wg_add(w, (int)eventer_conformance_arg_int(c, 1)) : -1;
}
static int st_wg_done(eventer_conformance_call_t *c) {
  eventer_aco_wg_t *w = ev_cf_typed(c, 0, "wg");
  return w ? eventer_aco_wg_done(w) : -1;
}
static int st_wg_wait(eventer_conformance_call_t *c) {
  TMO(c);
  eventer_aco_wg_t *w = ev_cf_typed(c, 0, "wg");
  return w ? eventer_aco_wg_wait(w, tmo) : -1;
}
static int st_wg_count(eventer_conformance_call_t *c) {
  eventer_aco_wg_t *w = ev_cf_typed(c, 0, "wg");
  return w ? ev_cf_value(c, eventer_aco_wg_count(w)) : -1;
}
FREE_STEP(st_wg_free, eventer_aco_wg_t, "wg", eventer_aco_wg_free)

static int st_chan(eventer_conformance_call_t *c) {
  long long sz = eventer_conformance_arg_int(c, 1), cap = eventer_conformance_arg_int(c, 2);
  if (sz < 1 || cap < 1) return ev_cf_fail(EINVAL);
  eventer_aco_chan_t *ch = eventer_aco_chan_new((size_t)sz, (size_t)cap);
  if (!ch) return -1;
  return ev_cf_set_typed(c, 0, "chan", ch, eventer_aco_chan_free_void);
}

/* an element: the text, padded with NULs to the element size */
static char *ev_cf_elem(eventer_conformance_call_t *c, eventer_aco_chan_t *ch, int with_text) {
  ssize_t sz = eventer_aco_chan_elem_size(ch);
  if (sz < 1) return NULL;
  const char *t = with_text ? eventer_conformance_arg(c, 1) : "";
  if (strlen(t) > (size_t)sz) {
    errno = EINVAL; /* does not fit */
    return NULL;
  }
  char *e = calloc(1, (size_t)sz);
  if (e) memcpy(e, t, strlen(t));
  return e;
}

static int ev_cf_elem_result(eventer_conformance_call_t *c, eventer_aco_chan_t *ch, int rv,
                             char *e) {
  int err = errno;
  if (rv == 0) {
    size_t n = (size_t)eventer_aco_chan_elem_size(ch);
    while (n > 0 && e[n - 1] == 0) n--;
    eventer_conformance_result_bytes(c, "data", e, n);
  }
  free(e);
  errno = err;
  return rv;
}

static int st_send(eventer_conformance_call_t *c) {
  TMO(c);
  eventer_aco_chan_t *ch = ev_cf_typed(c, 0, "chan");
  if (!ch) return -1;
  char *e = ev_cf_elem(c, ch, 1);
  if (!e) return -1;
  int rv = eventer_aco_chan_send(ch, e, tmo);
  int err = errno;
  free(e);
  errno = err;
  return rv;
}
static int st_trysend(eventer_conformance_call_t *c) {
  eventer_aco_chan_t *ch = ev_cf_typed(c, 0, "chan");
  if (!ch) return -1;
  char *e = ev_cf_elem(c, ch, 1);
  if (!e) return -1;
  int rv = eventer_aco_chan_trysend(ch, e);
  int err = errno;
  free(e);
  errno = err;
  return rv;
}
static int st_recv(eventer_conformance_call_t *c) {
  TMO(c);
  eventer_aco_chan_t *ch = ev_cf_typed(c, 0, "chan");
  if (!ch) return -1;
  char *e = ev_cf_elem(c, ch, 0);
  if (!e) return -1;
  return ev_cf_elem_result(c, ch, eventer_aco_chan_recv(ch, e, tmo), e);
}
static int st_tryrecv(eventer_conformance_call_t *c) {
  eventer_aco_chan_t *ch = ev_cf_typed(c, 0, "chan");
  if (!ch) return -1;
  char *e = ev_cf_elem(c, ch, 0);
  if (!e) return -1;
  return ev_cf_elem_result(c, ch, eventer_aco_chan_tryrecv(ch, e), e);
}
static int st_chan_close(eventer_conformance_call_t *c) {
  eventer_aco_chan_t *ch = ev_cf_typed(c, 0, "chan");
  return ch ? eventer_aco_chan_close(ch) : -1;
}
static int st_chan_len(eventer_conformance_call_t *c) {
  eventer_aco_chan_t *ch = ev_cf_typed(c, 0, "chan");
  return ch ? ev_cf_value(c, eventer_aco_chan_len(ch)) : -1;
}
static int st_chan_cap(eventer_conformance_call_t *c) {
  eventer_aco_chan_t *ch = ev_cf_typed(c, 0, "chan");
  return ch ? ev_cf_value(c, (long long)eventer_aco_chan_cap(ch)) : -1;
}
static int st_chan_closed(eventer_conformance_call_t *c) {
  eventer_aco_chan_t *ch = ev_cf_typed(c, 0, "chan");
  return ch ? ev_cf_value(c, eventer_aco_chan_closed(ch) != 0) : -1;
}
FREE_STEP(st_chan_free, eventer_aco_chan_t, "chan", eventer_aco_chan_free)

/* ---- listeners --------------------------------------------------------------------------------- */

typedef struct {
  mtev_listener_t *l;
  char path[108];
  struct timeval grace; /* listener_stop's (grace=; 0 without it, as Go's) */
} ev_cf_listener_t;

static void ev_cf_listener_free(void *p) {
  ev_cf_listener_t *lo = p;
  struct timeval grace = {0, 0}, wait = {5, 0};
  mtev_listener_stop(lo->l, &grace);
  mtev_listener_wait(lo->l, &wait);
  mtev_listener_release(lo->l);
  free(lo);
}

static int st_listener(eventer_conformance_call_t *c) {
  void (*fn)(void) = ev_cf_service(eventer_conformance_arg(c, 1));
  if (!fn) return ev_cf_fail(ENOENT);
  const char *family = eventer_conformance_arg(c, 2);
  ev_cf_listener_t *lo = calloc(1, sizeof(*lo));
  if (!lo) return -1;
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = fn};
  if (family && strcmp(family, "unix") == 0) {
    char name[64];
    ev_cf_unique(c, eventer_conformance_arg(c, 0), name, sizeof(name));
    snprintf(lo->path, sizeof(lo->path), "/tmp/acoconform-c-%d-%s.sock", (int)getpid(), name);
    o.address = lo->path;
  }
  const char *v;
  if ((v = eventer_conformance_opt(c, "fanout"))) o.fanout = strcmp(v, "on") == 0;
  if ((v = eventer_conformance_opt(c, "max_connections")))
    o.max_connections = (uint32_t)strtoul(v, NULL, 10);
  eventer_conformance_opt_tv(c, "grace", &lo->grace);
  char err[256];
  lo->l = mtev_listener_create(&o, err, sizeof(err));
  if (!lo->l) {
    int e = errno;
    free(lo);
    return ev_cf_fail(e);
  }
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  mtev_listener_get_address(lo->l, (struct sockaddr *)&ss, &len);
  ev_cf_set_typed(c, 0, "listener", lo, ev_cf_listener_free);
  return ev_cf_set_addr(c, 0, (struct sockaddr *)&ss, len);
}

static int st_listener_stop(eventer_conformance_call_t *c) {
  ev_cf_listener_t *lo = ev_cf_typed(c, 0, "listener");
  if (!lo) return -1;
  return mtev_listener_stop(lo->l, &lo->grace);
}

static int st_listener_wait(eventer_conformance_call_t *c) {
  TMO(c);
  ev_cf_listener_t *lo = ev_cf_typed(c, 0, "listener");
  return lo ? mtev_listener_wait(lo->l, tmo) : -1;
}

static int st_listener_stats(eventer_conformance_call_t *c) {
  ev_cf_listener_t *lo = ev_cf_typed(c, 0, "listener");
  if (!lo) return -1;
  mtev_listener_stats_t st;
  if (mtev_listener_get_stats(lo->l, &st) != 0) return -1;
  eventer_conformance_result(c, "accepted=%llu active=%llu refused=%llu",
                             (unsigned long long)st.accepted, (unsigned long long)st.active,
                             (unsigned long long)st.refused);
  return 0;
}

/* services: echo (each read written back until EOF), and the seed's aco
 * listener ("thanks!", "quitter!", "bye!" after its read timeout) */
static void svc_echo(void) {
  eventer_aco_t e = eventer_aco_arg();
  char buf[512];
  int n;
  while ((n = eventer_aco_read(e, buf, sizeof(buf), NULL)) > 0)
    if (eventer_aco_write(e, buf, (size_t)n, NULL) < 0) break;
  eventer_aco_close(e);
  eventer_aco_free(e);
}

static void ev_cf_seed(struct timeval *tmo) {
  eventer_aco_t e = eventer_aco_arg();
  while (1) {
    char buff[128];
    int rv = eventer_aco_read(e, buff, sizeof(buff), tmo);
    if (rv == -1) {
      if (errno == ETIME) eventer_aco_write(e, "bye!\n", 5, NULL);
      break;
    }
    if (rv >= 4 && !strncasecmp(buff, "quit", 4)) {
      eventer_aco_write(e, "quitter!\n", 9, NULL);
      break;
    }
    if (eventer_aco_write(e, "thanks!\n", 8, NULL) < 0) break;
  }
  eventer_aco_close(e);
  eventer_aco_free(e);
}
static void svc_seed(void) {
  struct timeval tensec = {10, 0};
  ev_cf_seed(&tensec);
}
static void svc_seed_100ms(void) {
  struct timeval t = {0, 100000};
  ev_cf_seed(&t);
}

/* ---- the table ------------------------------------------------------------------------------------ */

static const struct {
  const char *name, *sig;
  eventer_conformance_step_fn fn;
} ev_cf_builtins[] = {
    {"sleep", "dur", st_sleep},
    {"yield", "", st_yield},
    {"park", "timeout=dur", st_park},
    {"wake", "co", st_wake},
    {"cancel", "co", st_cancel},
    {"join", "co timeout=dur", st_join},
    {"start", "co stack=int", st_start},
    {"done", "co", st_done},
    {"arg", "", st_arg},
    {"stats", "", st_stats},
    {"asynch", "dur queue=obj subqueue=int", st_asynch},
    {"asynch_deadline", "dur deadline=dur queue=obj subqueue=int gate=obj", st_asynch_deadline},
    {"run_asynch", "dur queue=obj subqueue=int", st_run_asynch},
    {"try_run_asynch", "dur queue=obj subqueue=int gate=obj", st_try_run_asynch},
    {"gate", "new", st_gate},
    {"asynch_gated", "obj dur queue=obj subqueue=int", st_asynch_gated},
    {"run_asynch_gated", "obj dur queue=obj subqueue=int", st_run_asynch_gated},
    {"gate_wait", "obj", st_gate_wait},
    {"jobq", "new concurrency=int backlog=int", st_jobq},
    {"socketpair", "new new", st_socketpair},
    {"listen", "new tcp|unix backlog=int", st_listen},
    {"aco", "obj", st_aco},
    {"connect", "new obj timeout=dur", st_connect},
    {"accept", "obj new timeout=dur", st_accept},
    {"accept_deadline", "obj new deadline=dur", st_accept_deadline},
    {"read", "obj int timeout=dur", st_read},
    {"write", "obj text timeout=dur", st_write},
    {"fill", "obj timeout=dur", st_fill},
    {"wait", "obj read|write timeout=dur", st_wait},
    {"close", "obj", st_close},
    {"conn_read", "obj int deadline=dur", st_conn_read},
    {"conn_write", "obj text deadline=dur", st_conn_write},
    {"closure", "obj", st_closure},
    {"is_aco", "obj", st_is_aco},
    {"aco_classic", "obj", st_aco_classic},
    {"sys_write", "obj text", st_sys_write},
    {"sys_read", "obj int", st_sys_read},
    {"sys_close", "obj", st_sys_close},
    {"sys_reset", "obj", st_sys_reset},
    {"sys_shutdown", "obj rd|wr|rdwr", st_sys_shutdown},
    {"sys_connect", "new obj", st_sys_connect},
    {"sys_accept", "obj new timeout=dur", st_sys_accept},
    {"sem", "new int", st_sem},
    {"sem_wait", "obj timeout=dur", st_sem_wait},
    {"sem_trywait", "obj", st_sem_trywait},
    {"sem_post", "obj", st_sem_post},
    {"sem_value", "obj", st_sem_value},
    {"sem_free", "obj", st_sem_free},
    {"mutex", "new", st_mutex},
    {"lock", "obj timeout=dur", st_lock},
    {"trylock", "obj", st_trylock},
    {"unlock", "obj", st_unlock},
    {"locked", "obj", st_locked},
    {"mutex_free", "obj", st_mutex_free},
    {"wg", "new", st_wg},
    {"wg_add", "obj int", st_wg_add},
    {"wg_done", "obj", st_wg_done},
    {"wg_wait", "obj timeout=dur", st_wg_wait},
    {"wg_count", "obj", st_wg_count},
    {"wg_free", "obj", st_wg_free},
    {"chan", "new int int", st_chan},
    {"send", "obj text timeout=dur", st_send},
    {"recv", "obj timeout=dur", st_recv},
    {"trysend", "obj text", st_trysend},
    {"tryrecv", "obj", st_tryrecv},
    {"chan_close", "obj", st_chan_close},
    {"chan_len", "obj", st_chan_len},
    {"chan_cap", "obj", st_chan_cap},
    {"chan_closed", "obj", st_chan_closed},
    {"chan_free", "obj", st_chan_free},
    {"listener", "new text tcp|unix? fanout=on|off max_connections=int grace=dur", st_listener},
    {"listener_stop", "obj", st_listener_stop},
    {"listener_wait", "obj timeout=dur", st_listener_wait},
    {"listener_stats", "obj", st_listener_stats},
};

void ev_cf_builtin_register(void) {
  for (size_t i = 0; i < sizeof(ev_cf_builtins) / sizeof(ev_cf_builtins[0]); i++)
    if (ev_cf_register(ev_cf_builtins[i].name, ev_cf_builtins[i].sig, ev_cf_builtins[i].fn) != 0)
      abort(); /* a bad built-in signature: caught by every test */
  ev_cf_register_service("echo", svc_echo);
  ev_cf_register_service("seed", svc_seed);
  ev_cf_register_service("seed_100ms", svc_seed_100ms);
  ev_cf_tls_register();
#ifndef EV_CF_NO_HTTP
  /* (the Go build registers them itself when it has the HTTP engine) */
  ev_cf_http_register();
#endif
}
