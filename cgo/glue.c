/* glue.c - see glue.h */
#include "glue.h"

#include <errno.h>

#include "_cgo_export.h"
#include "eventer_aco_impl.h"

typedef struct {
  eventer_t e;
  int mask;
  uint64_t id;
  struct timeval *now;
  int rv;
} ev_go_call_t;

static void ev_go_call_thunk(void *p) {
  ev_go_call_t *c = p;
  int64_t now_us = c->now ? (int64_t)c->now->tv_sec * 1000000 + c->now->tv_usec : 0;
  c->rv = goEventerCallback(c->e, c->mask, c->id, now_us);
}

int ev_go_trampoline(eventer_t e, int mask, void *closure, struct timeval *now) {
  ev_go_call_t c = {e, mask, eventer_foreign_closure_id(closure), now, 0};
  /* Go runs only on the thread's stack (DESIGN.md 4, rule 4) */
  eventer_call_on_thread_stack(ev_go_call_thunk, &c);
  return c.rv;
}

void ev_go_asynch(void *closure) {
  /* a job-queue thread: a plain pthread stack, Go may run here */
  goAsynchWork((uint64_t)(uintptr_t)closure);
}

typedef struct {
  const char *stream;
  const char *line;
  size_t len;
} ev_go_logline_t;

static void ev_go_log_thunk(void *p) {
  ev_go_logline_t *l = p;
  goLogLine((char *)l->stream, (char *)l->line, (int)l->len);
}

/* mtev_log's writer: any thread, maybe inside a coroutine - Go runs on
 * the thread's own stack (rule 4) */
static void ev_go_log_writer(mtev_log_stream_t ls, const char *line,
                             size_t len, void *closure) {
  (void)closure;
  ev_go_logline_t l = {mtev_log_stream_get_name(ls), line, len};
  eventer_call_on_thread_stack(ev_go_log_thunk, &l);
}

void ev_go_log_to_go(int on) {
  mtev_log_set_writer(on ? ev_go_log_writer : NULL, NULL);
}

int ev_go_setup(void) {
  return eventer_foreign_callback_register(ev_go_trampoline);
}

eventer_t ev_go_alloc(int kind, int fd, int mask, uint64_t id,
                      int64_t when_us) {
  void *box = eventer_foreign_closure_new(id);
  if (!box) {
    errno = ENOMEM;
    return NULL;
  }
  eventer_t e = NULL;
  switch (kind) {
  case EV_GO_FD:
    e = eventer_alloc_fd(ev_go_trampoline, box, fd, mask);
    break;
  case EV_GO_TIMER: {
    struct timeval w = {(time_t)(when_us / 1000000),
                        (suseconds_t)(when_us % 1000000)};
    e = eventer_alloc_timer(ev_go_trampoline, box, &w);
    break;
  }
  case EV_GO_RECURRENT:
    e = eventer_alloc_recurrent(ev_go_trampoline, box);
    break;
  default:
    errno = EINVAL;
  }
  if (!e) {
    int err = errno;
    free(box);
    errno = err;
  }
  return e;
}

int ev_go_run(uintptr_t dp) {
  ev_go_driver_t *d = (ev_go_driver_t *)dp;
  int rc;
  if (d->wait.valid) {
    /* the wait the coroutine that just parked asked for */
    ev_go_wait_req_t *w = &d->wait;
    w->valid = 0;
    struct timeval tv;
    int has = ev_go_timeval(w->timeout_ns, &tv);
    rc = eventer_aco_proxy_wait(w->p, w->e, w->mask, w->read_len,
                                has ? &tv : NULL);
    if (rc != 0) {
      /* it ended at once: resume the coroutine with the result now */
      eventer_aco_proxy_op_t *o = eventer_aco_proxy_op(w->p);
      d->step.kind = EVENTER_STEP_ACO_PROXY;
      d->step.u64[0] = w->foreign_id;
      d->step.u64[1] = rc == 1 ? (uint64_t)o->result : (uint64_t)(int64_t)-1;
      d->step.u64[2] = (uint64_t)(int64_t)(rc == 1 ? o->err : errno);
      return EVENTER_RUN_STEP;
    }
  }
  do {
    /* NULL: a new iteration may wait in epoll; continuing a paused one
     * never waits (it returns DONE at the end of that iteration) */
    rc = eventer_run_once(&d->step, NULL);
  } while (rc == EVENTER_RUN_DONE);
  if (rc == EVENTER_RUN_STEP && d->step.kind == EVENTER_STEP_CALLBACK) {
    /* what the Go callback needs, so that Go makes no further cgo call
     * (u64 is free for the driver on a CALLBACK step) */
    d->step.u64[0] = eventer_foreign_closure_id(d->step.closure);
    d->step.u64[1] = (uint64_t)((int64_t)d->step.now.tv_sec * 1000000 +
                                d->step.now.tv_usec);
  }
  return rc;
}

int ev_go_proxy_io(eventer_aco_proxy_t *p, int op, eventer_t e,
                   int64_t timeout_ns, int64_t *res, int *err) {
  eventer_aco_proxy_op_t *o = eventer_aco_proxy_op(p);
  o->op = op;
  o->e = e;
  o->buf = NULL;
  o->len = 0;
  ev_go_op_timeout(o, timeout_ns);
  int rc = eventer_aco_proxy_run(p);
  if (rc == 1) {
    *res = o->result;
    *err = o->err;
  } else if (rc < 0) {
    *err = errno;
  }
  return rc;
}

int ev_go_io(eventer_aco_proxy_t *p, int op, eventer_t e, char *buf,
             size_t len, int64_t timeout_ns, int64_t *res, int *err) {
  /* the checks eventer_aco_proxy_run makes, before touching the fd */
  if (eventer_loop_current() != eventer_get_owner_loop(e) ||
      eventer_loop_current() == NULL) {
    *err = EPERM;
    return -1;
  }
  if (aco_current() != NULL) {
    *err = EDEADLK;
    return -1;
  }
  int mask = 0, rv;
  if (op == EV_GO_ACCEPT) {
    socklen_t alen = (socklen_t)len;
    rv = ev_aco_fd_try(e, EV_ACO_TRY_ACCEPT, NULL, 0, (struct sockaddr *)buf,
                       &alen, &mask);
  } else {
    rv = ev_aco_fd_try(e, op == EV_GO_READ ? EV_ACO_TRY_READ : EV_ACO_TRY_WRITE,
                       buf, len, NULL, NULL, &mask);
  }
  if (rv >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
    *res = rv;
    *err = rv < 0 ? errno : 0;
    return 1;
  }
  eventer_aco_proxy_op_t *o = eventer_aco_proxy_op(p);
  o->op = EVENTER_PROXY_WAIT;
  o->e = e;
  o->mask = mask;
  o->read_len = op == EV_GO_READ ? len : 0;
  ev_go_op_timeout(o, timeout_ns);
  int rc = eventer_aco_proxy_run(p);
  if (rc < 0) {
    *err = errno;
    return -1;
  }
  if (rc == 1) {
    *res = o->result;
    *err = o->err;
    return 2;
  }
  return 0;
}

ev_go_res_t ev_go_wait(uintptr_t pp, uintptr_t ep, int mask, size_t read_len,
                       int64_t timeout_ns) {
  eventer_aco_proxy_t *p = (eventer_aco_proxy_t *)pp;
  eventer_t e = (eventer_t)ep;
  ev_go_res_t r = {0, 0, 0};
  if (eventer_loop_current() == NULL ||
      eventer_loop_current() != eventer_get_owner_loop(e)) {
    r.rc = -1;
    r.err = EPERM;
    return r;
  }
  struct timeval tv;
  int has = ev_go_timeval(timeout_ns, &tv);
  int rc = eventer_aco_proxy_wait(p, e, mask, read_len, has ? &tv : NULL);
  if (rc < 0) {
    r.rc = -1;
    r.err = errno;
  } else if (rc == 1) {
    eventer_aco_proxy_op_t *o = eventer_aco_proxy_op(p);
    r.rc = 2;
    r.res = o->result;
    r.err = o->err;
  }
  return r;
}

const volatile uint8_t *ev_go_posix_closed_flag(eventer_t e) {
  return ev_aco_fd_posix_closed_flag(e);
}

static int64_t ev_go_sync_call(void *obj, eventer_aco_proxy_op_t *op) {
  struct timeval *t = op->has_timeout ? &op->timeout : NULL;
  switch (op->mask) {
  case EV_GO_SEM_WAIT: return eventer_aco_sem_wait(obj, t);
  case EV_GO_SEM_TRYWAIT: return eventer_aco_sem_trywait(obj);
  case EV_GO_MUTEX_LOCK: return eventer_aco_mutex_lock(obj, t);
  case EV_GO_MUTEX_TRYLOCK: return eventer_aco_mutex_trylock(obj);
  case EV_GO_MUTEX_UNLOCK: return eventer_aco_mutex_unlock(obj);
  case EV_GO_WG_WAIT: return eventer_aco_wg_wait(obj, t);
  case EV_GO_CHAN_SEND: return eventer_aco_chan_send(obj, op->buf, t);
  case EV_GO_CHAN_RECV: return eventer_aco_chan_recv(obj, op->buf, t);
  case EV_GO_CHAN_TRYSEND: return eventer_aco_chan_trysend(obj, op->buf);
  case EV_GO_CHAN_TRYRECV: return eventer_aco_chan_tryrecv(obj, op->buf);
  }
  errno = EINVAL;
  return -1;
}

ev_go_res_t ev_go_sync(uintptr_t pp, int kind, uintptr_t obj, uintptr_t cbuf,
                       int64_t timeout_ns) {
  eventer_aco_proxy_t *p = (eventer_aco_proxy_t *)pp;
  ev_go_res_t r = {0, 0, 0};
  eventer_aco_proxy_op_t *o = eventer_aco_proxy_op(p);
  o->op = EVENTER_PROXY_CALL;
  o->call = ev_go_sync_call;
  o->obj = (void *)obj;
  o->mask = kind;
  o->buf = (void *)cbuf;
  ev_go_op_timeout(o, timeout_ns);
  int rc = eventer_aco_proxy_run(p);
  if (rc < 0) {
    r.rc = -1;
    r.err = errno;
  } else if (rc == 1) {
    r.rc = 1;
    r.res = o->result;
    r.err = o->err;
  }
  return r;
}
