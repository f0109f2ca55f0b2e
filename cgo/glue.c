/* glue.c - see glue.h */
#include "glue.h"

#include <errno.h>
#include <string.h>

#include "_cgo_export.h"
#include "eventer_aco_impl.h"
#include "restglue.h" /* the pass's batch of direct requests */

_Static_assert(EV_GO_DK_FD == EV_DK_FD && EV_GO_DK_TIMER == EV_DK_TIMER &&
                   EV_GO_DK_RECUR == EV_DK_RECUR &&
                   EV_GO_DK_TRIGGER == EV_DK_TRIGGER &&
                   EV_GO_DK_COMPLETE == EV_DK_COMPLETE,
               "the Go binding's dispatch kinds are the loop's");

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

static void ev_go_asynch_fn(void *closure) {
  /* a job-queue thread: a plain pthread stack, Go may run here */
  goAsynchWork((uint64_t)(uintptr_t)closure);
}

typedef struct {
  int level;
  const char *stream;
  const char *line;
  size_t len;
} ev_go_logline_t;

static void ev_go_log_thunk(void *p) {
  ev_go_logline_t *l = p;
  goLogLine(l->level, (char *)l->stream, (char *)l->line, (int)l->len);
}

/* The severity of a stream, by which stream it is (Go's slog levels:
 * -4 debug, 0 info, 4 warn, 8 error). */
static int ev_go_log_level(mtev_log_stream_t ls) {
  if (ls == mtev_error || ls == eventer_err) return 8;
  if (ls == mtev_debug || ls == eventer_deb) return -4;
  if (ls == mtev_stderr) return 4;
  return 0; /* mtev_notice */
}

/* Lines logged while this thread runs a call Go made without callbacks
 * (ev_go_log_defer): kept, in order, until ev_go_log_flush hands them to
 * Go. */
typedef struct ev_go_dline {
  struct ev_go_dline *next;
  int level;
  size_t len;
  char *stream; /* points into line's allocation */
  char line[];
} ev_go_dline_t;
static __thread int ev_go_log_deferring;
static __thread ev_go_dline_t *ev_go_dhead, *ev_go_dtail;

void ev_go_log_defer(int on) { ev_go_log_deferring = on; }
int ev_go_log_pending(void) { return ev_go_dhead != NULL; }

void ev_go_log_flush(void) {
  while (ev_go_dhead) {
    ev_go_dline_t *d = ev_go_dhead;
    ev_go_dhead = d->next;
    if (!ev_go_dhead) ev_go_dtail = NULL;
    ev_go_logline_t l = {d->level, d->stream, d->line, d->len};
    eventer_call_on_thread_stack(ev_go_log_thunk, &l);
    free(d);
  }
}

/* mtev_log's writer: any thread, maybe inside a coroutine - Go runs on
 * the thread's own stack (rule 4) */
static void ev_go_log_writer(mtev_log_stream_t ls, const char *line,
                             size_t len, void *closure) {
  (void)closure;
  const char *stream = mtev_log_stream_get_name(ls);
  if (ev_go_log_deferring) {
    size_t sl = strlen(stream);
    ev_go_dline_t *d = malloc(sizeof(*d) + len + 1 + sl + 1);
    if (!d) return; /* out of memory: the line is lost, not the caller */
    memcpy(d->line, line, len);
    d->line[len] = 0;
    d->stream = d->line + len + 1;
    memcpy(d->stream, stream, sl + 1);
    d->level = ev_go_log_level(ls);
    d->len = len;
    d->next = NULL;
    if (ev_go_dtail) ev_go_dtail->next = d;
    else ev_go_dhead = d;
    ev_go_dtail = d;
    return;
  }
  ev_go_logline_t l = {ev_go_log_level(ls), stream, line, len};
  eventer_call_on_thread_stack(ev_go_log_thunk, &l);
}

void ev_go_log_to_go(int on) {
  mtev_log_set_writer(on ? ev_go_log_writer : NULL, NULL);
}

int ev_go_setup(void) {
  if (eventer_foreign_reset() != 0) return -1;
  return eventer_foreign_callback_register(ev_go_trampoline);
}

/* The callback of an fd event Go made without one (it is meant to be
 * converted to an aco event; Go never adds it): if C code adds it anyway,
 * it goes away at its first dispatch. */
static int ev_go_plain_cb(eventer_t e, int mask, void *closure,
                          struct timeval *now) {
  (void)mask, (void)closure, (void)now;
  eventer_remove_fde(e);
  return 0;
}

eventer_t ev_go_alloc(int kind, int fd, int mask, uint64_t id,
                      int64_t when_us) {
  if (kind == EV_GO_FD && id == 0)
    return eventer_alloc_fd(ev_go_plain_cb, NULL, fd, mask);
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

int ev_go_pollfd(void) {
  ev_loop_t *l = ev_loop_self();
  if (!l) {
    errno = EINVAL;
    return -1;
  }
  return ev_poll_fd(l);
}

int ev_go_registered(eventer_t e) {
  return __atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != EV_ST_NONE;
}

static ev_go_res_t ev_go_result(eventer_aco_proxy_t *p, int rc) {
  ev_go_res_t r = {rc, 0, 0};
  if (rc == EVENTER_PROXY_MISUSE)
    r.err = errno;
  else if (rc == EVENTER_PROXY_DONE)
    r.res = eventer_aco_proxy_result(p, &r.err);
  return r;
}

int ev_go_run(uintptr_t dp) {
  ev_go_driver_t *d = (ev_go_driver_t *)dp;
  int rc;
  if (d->asleep) {
    d->asleep = 0;
    eventer_loop_sleep_end();
  }
  if (d->wait.valid) {
    /* the wait the coroutine that just parked asked for */
    ev_go_wait_req_t *w = &d->wait;
    w->valid = 0;
    struct timeval tv;
    int has = ev_go_timeval(w->timeout_ns, &tv);
    rc = eventer_aco_proxy_wait(w->p, w->e, w->mask, w->read_len,
                                has ? &tv : NULL);
    if (rc != EVENTER_PROXY_PARKED) {
      /* it ended at once: resume the coroutine with the result now */
      ev_go_res_t r = ev_go_result(w->p, rc);
      d->step.kind = EVENTER_STEP_ACO_PROXY;
      d->step.u64[0] = w->foreign_id;
      d->step.u64[1] = rc == EVENTER_PROXY_DONE ? (uint64_t)r.res
                                                : (uint64_t)(int64_t)-1;
      d->step.u64[2] = (uint64_t)(int64_t)r.err;
      return EVENTER_RUN_STEP;
    }
  }
  static const struct timeval no_wait = {0, 0};
  for (;;) {
    /* NULL: a new iteration may wait in epoll; continuing a paused one
     * never waits (it returns DONE at the end of that iteration).  While
     * Go work runs in other goroutines the driver sleeps in Go instead. */
    int busy = d->go_busy;
    ev_go_rest_batching = 1;
    rc = eventer_run_once(&d->step, busy ? &no_wait : NULL);
    ev_go_rest_batching = 0;
    /* the direct requests of the pass, in one step (restglue.h) */
    if (rc != EVENTER_RUN_STEP && ev_go_rest_batch_take(&d->step))
      return EVENTER_RUN_STEP;
    if (rc != EVENTER_RUN_DONE) break;
    if (busy) {
      d->nowait_polls++;
      if (eventer_loop_sleep_begin(&d->sleep_us) == 1) {
        d->asleep = 1;
        return EV_GO_RUN_SLEEP;
      }
    }
  }
  ev_loop_t *l = ev_loop_self();
  if (l) d->pass_ns = l->timers_now_ns;
  if (rc == EVENTER_RUN_STEP && d->step.kind == EVENTER_STEP_CALLBACK) {
    /* what the Go callback needs, so that Go makes no further cgo call
     * (u64 is free for the driver on a CALLBACK step) */
    d->step.u64[0] = eventer_foreign_closure_id(d->step.closure);
    d->step.u64[1] = (uint64_t)((int64_t)d->step.now.tv_sec * 1000000 +
                                d->step.now.tv_usec);
    d->step.u64[2] = (uint64_t)l->paused.kind;
  }
  return rc;
}

ev_go_res_t ev_go_wait(uintptr_t p, uintptr_t e, int mask, size_t read_len,
                       int64_t timeout_ns) {
  struct timeval tv;
  int has = ev_go_timeval(timeout_ns, &tv);
  int rc = eventer_aco_proxy_wait((eventer_aco_proxy_t *)p, (eventer_t)e, mask,
                                  read_len, has ? &tv : NULL);
  return ev_go_result((eventer_aco_proxy_t *)p, rc);
}

ev_go_res_t ev_go_sleep(uintptr_t p, int64_t ns) {
  struct timeval tv;
  ev_go_timeval(ns, &tv);
  int rc = eventer_aco_proxy_sleep((eventer_aco_proxy_t *)p, &tv);
  return ev_go_result((eventer_aco_proxy_t *)p, rc);
}

ev_go_res_t ev_go_yield(uintptr_t p) {
  int rc = eventer_aco_proxy_yield((eventer_aco_proxy_t *)p);
  return ev_go_result((eventer_aco_proxy_t *)p, rc);
}

ev_go_res_t ev_go_park(uintptr_t p, int64_t timeout_ns) {
  struct timeval tv;
  int has = ev_go_timeval(timeout_ns, &tv);
  int rc = eventer_aco_proxy_park((eventer_aco_proxy_t *)p, has ? &tv : NULL);
  return ev_go_result((eventer_aco_proxy_t *)p, rc);
}

ev_go_res_t ev_go_sync(uintptr_t p, int kind, uintptr_t obj, uintptr_t elem,
                       int64_t timeout_ns) {
  struct timeval tv;
  int has = ev_go_timeval(timeout_ns, &tv);
  int rc = eventer_aco_proxy_sync((eventer_aco_proxy_t *)p, kind, (void *)obj,
                                  (void *)elem, has ? &tv : NULL);
  return ev_go_result((eventer_aco_proxy_t *)p, rc);
}

ev_go_res_t ev_go_asynch(uintptr_t p, uintptr_t q, uint64_t subq, uint64_t id) {
  int rc = eventer_aco_proxy_asynch((eventer_aco_proxy_t *)p, ev_go_asynch_fn,
                                    (void *)(uintptr_t)id,
                                    (eventer_jobq_t *)q, subq);
  return ev_go_result((eventer_aco_proxy_t *)p, rc);
}

ev_go_try_t ev_go_try(uintptr_t ep, int op, char *buf, size_t len) {
  eventer_t e = (eventer_t)ep;
  ev_go_try_t r = {0, 0, 0};
  int rv;
  if (op == EV_GO_ACCEPT) {
    socklen_t alen = (socklen_t)len;
    rv = ev_aco_fd_try(e, EV_ACO_TRY_ACCEPT, NULL, 0, (struct sockaddr *)buf,
                       &alen, &r.mask);
  } else {
    rv = ev_aco_fd_try(e, op == EV_GO_READ ? EV_ACO_TRY_READ : EV_ACO_TRY_WRITE,
                       buf, len, NULL, NULL, &r.mask);
  }
  r.res = rv;
  if (rv < 0) r.err = errno;
  return r;
}

int ev_go_convert(uintptr_t e) {
  return ev_aco_fd_convert((eventer_t)e, ev_loop_self()) == 0 ? 0 : errno;
}

int ev_go_aco_close(uintptr_t e) {
  return eventer_aco_close((eventer_aco_t)e) == 0 ? 0 : errno;
}

int ev_go_aco_closed(uintptr_t e) { return ev_aco_fd_closed((eventer_t)e); }

const volatile uint8_t *ev_go_posix_closed_flag(eventer_t e) {
  return ev_aco_fd_posix_closed_flag(e);
}

int ev_go_sync_owner(uintptr_t obj) {
  ev_loop_t *l = ev_aco_sync_loop((const void *)obj);
  return l ? eventer_loop_index(l) : -1;
}
