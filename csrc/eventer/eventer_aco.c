/*
 * eventer_aco.c - coroutines on the event loop: lifecycle, parking, fd
 * operations, sleep, asynch work, gates, handles (join, cancel, wake).
 * The model is in eventer_aco.h; the parking primitive in
 * eventer_aco_impl.h.
 */
#include "eventer_aco_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- handles ---------------------------------------------------------------- */

enum { /* eventer_aco_co.xreq bits: cross-thread requests */
  EV_XR_WAKE = 0x1,
  EV_XR_CANCEL = 0x2,
  EV_XR_POSTED = 0x4 /* xtask is queued to the loop */
};

struct eventer_aco_co {
  int refs;              /* __atomic */
  int done;              /* __atomic: the coroutine ended */
  int xreq;              /* __atomic: EV_XR_* */
  ev_loop_t *loop;
  ev_aco_t *a;           /* owner thread: the coroutine, NULL before start
                          * and after the end */
  ev_aco_waitq_t joiners; /* owner thread */
  eventer_task_t xtask;  /* start / cross-thread requests */
  /* a start queued from another thread */
  void (*fn)(void);
  void *arg;
  size_t stack_size, save_size;
  const char *name;
};

static void ev_aco_handle_apply(eventer_aco_co_t *h, int req);

/* ---- per-loop state ------------------------------------------------------------ */

static void ev_aco_loop_fini(ev_loop_t *l);
static void ev_aco_xtask_discard(eventer_task_t *t);

ev_aco_loop_t *ev_aco_loop_get(void) {
  ev_loop_t *l = ev_loop_self();
  if (!l) {
    errno = ENXIO;
    return NULL;
  }
  if (l->aco) return l->aco;
  ev_aco_loop_t *al = calloc(1, sizeof(*al));
  if (!al) {
    errno = ENOMEM;
    return NULL;
  }
  /* the loop thread's FP state is every coroutine's initial state */
  aco_thread_init(NULL);
  al->loop = l;
  al->main_co = aco_create(NULL, NULL, 0, NULL, al);
  ev_aco_waitq_init(&al->all);
  /* every loop's first coroutine sets them (the same values): atomic,
   * since loops do this at the same time */
  __atomic_store_n(&ev_loop_fini_hook, ev_aco_loop_fini, __ATOMIC_RELAXED);
  __atomic_store_n(&ev_task_discard_hook, ev_aco_xtask_discard, __ATOMIC_RELAXED);
  l->aco = al;
  return al;
}

static aco_share_stack_t *ev_aco_stack_for(ev_aco_loop_t *al, size_t sz) {
  if (sz == 0) sz = EVENTER_ACO_DEFAULT_STACK;
  for (int i = 0; i < al->nstacks; i++)
    if (al->stacks[i].sz == sz) return al->stacks[i].ss;
  if (al->nstacks == EV_ACO_MAX_STACK_SIZES) {
    errno = ENOSPC;
    return NULL;
  }
  aco_share_stack_t *ss = aco_share_stack_new(sz);
  al->stacks[al->nstacks].sz = sz;
  al->stacks[al->nstacks].ss = ss;
  al->nstacks++;
  return ss;
}

static void ev_aco_fd_fini_waiters(eventer_t e);

/* eventer_fini: the loop is going away; coroutines still suspended on it are
 * dropped without running again.  Released for them: their timers, the
 * references of fd waits still parked (found through the fd table),
 * proxies.  Not released: what their own code holds (events they made,
 * memory), as with aco_destroy, and what a call that was already woken but
 * not yet resumed, a join or an asynch call holds (a record per coroutine
 * would cost every coroutine 8 bytes for a teardown). */
static void ev_aco_loop_fini(ev_loop_t *l) {
  ev_aco_loop_t *al = l->aco;
  if (!al) return;
  ev_fdtab_foreach(l, ev_aco_fd_fini_waiters);
  while (!ev_aco_waitq_empty(&al->all)) {
    ev_aco_t *a = EV_CONTAINER_OF(al->all.head.next, ev_aco_t, all);
    ev_aco_unlink(&a->all);
    ev_aco_unlink(&a->link);
    if (a->timer.loop) /* a pending timeout, sleep or resume (fini may
                        * run on another thread: no owner check) */
      ev_heap_remove(a->timer.loop, &a->timer);
    if (a->handle) {
      a->handle->a = NULL;
      __atomic_store_n(&a->handle->done, 1, __ATOMIC_RELEASE);
      eventer_aco_co_release(a->handle);
    }
    if ((a->flags & EV_ACO_F_PROXY) && ev_aco_proxy_fini_hook)
      ev_aco_proxy_fini_hook(a);
    aco_destroy(ev_aco_co(a));
  }
  for (int i = 0; i < al->nstacks; i++)
    aco_share_stack_destroy(al->stacks[i].ss);
  aco_destroy(al->main_co);
  free(al);
  l->aco = NULL;
}

/* ---- lifecycle -------------------------------------------------------------- */

ev_aco_t *ev_aco_self(void) {
  aco_t *co = aco_current();
  if (!co || !ev_loop_self()) return NULL;
  ev_aco_loop_t *al = ev_loop_self()->aco;
  if (!al || co->main_co != al->main_co) return NULL; /* a bare aco_t */
  return ev_aco_of(co);
}

static void ev_aco_timer_fire(eventer_timer_node_t *n, struct timeval *now);

static void ev_aco_entry(void) {
  ev_aco_t *a = ev_aco_of(aco_get_co());
  a->fn();
  aco_exit();
}

/* Live stack bytes of the coroutine this thread's loop last switched away
 * from (what it saved).  A new coroutine's first save stack, which lives
 * in the same allocation as its aco_t and ev_aco_t, is sized from it:
 * coroutines of one loop tend to park at similar depths, and a save stack
 * that fits from the start needs no second allocation.  Only a hint: a
 * wrong guess costs some bytes or one later allocation. */
static __thread size_t ev_aco_save_hint;
#define EV_ACO_SAVE_HINT_MAX 1024

ev_aco_t *ev_aco_create(void (*fn)(void), void *arg, size_t stack_size,
                        size_t save_size, const char *name, int flags) {
  ev_aco_loop_t *al = ev_aco_loop_get();
  if (!al) return NULL;
  aco_share_stack_t *ss = ev_aco_stack_for(al, stack_size);
  if (!ss) return NULL;
  if (save_size == 0 && ev_aco_save_hint <= EV_ACO_SAVE_HINT_MAX)
    save_size = ev_aco_save_hint;
  aco_t *co = aco_create_ext(al->main_co, ss, save_size, ev_aco_entry, arg,
                             sizeof(ev_aco_t));
  ev_aco_t *a = ev_aco_of(co);
  a->timer.fire = ev_aco_timer_fire;
  ev_aco_link_init(&a->link);
  a->fn = fn;
  a->state = EV_ACO_NEW;
  a->flags = (uint8_t)flags;
  ev_aco_link_tail(&al->all, &a->all);
  if (name) aco_set_name(co, name);
  return a;
}

static void ev_aco_reap(ev_aco_t *a) {
  a->state = EV_ACO_DONE;
  ev_aco_unlink(&a->link);
  ev_aco_unlink(&a->all);
  eventer_timer_node_remove(&a->timer);
  eventer_aco_co_t *h = a->handle;
  if (h) {
    h->a = NULL;
    __atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
    ev_aco_wake_all(&h->joiners, EV_WAKE_READY);
    eventer_aco_co_release(h); /* the coroutine's own reference */
  }
  if ((a->flags & EV_ACO_F_END_HOOK) && ev_aco_end_hook) ev_aco_end_hook(a);
  aco_destroy(ev_aco_co(a));
}

void (*ev_aco_end_hook)(ev_aco_t *a);
void (*ev_aco_prewait_hook)(ev_aco_t *a);
void (*ev_aco_proxy_fini_hook)(ev_aco_t *a);

void ev_aco_resume(ev_aco_t *a) {
  aco_t *co = ev_aco_co(a);
  ev_aco_loop_t *al = co->main_co->arg;
  if (a->flags & EV_ACO_F_PREWAIT) {
    /* a wait set up without switching to the coroutine ends the same way:
     * the coroutine stays parked idle where it was, and the hook reports */
    a->flags &= (uint8_t)~EV_ACO_F_PREWAIT;
    ev_aco_unlink(&a->link);
    eventer_timer_node_remove(&a->timer);
    a->state = EV_ACO_PARKED;
    a->wait_kind = EV_WAIT_PLAIN;
    ev_aco_prewait_hook(a);
    return;
  }
  EV_ASSERT(aco_current() == NULL,
            "a coroutine is resumed only from its loop's main context, "
            "never from inside another coroutine");
  EV_ASSERT(al->loop == ev_loop_self(),
            "a coroutine is resumed only on its own loop thread");
  EV_ASSERT(a->state == EV_ACO_NEW || a->state == EV_ACO_RUNNABLE,
            "only a new or woken coroutine is resumed");
  size_t out = 0, in = aco_resume_copy_cost(co, &out);
  if (out) ev_aco_save_hint = out;
  if (in || out) {
    a->bytes_copied += in;
    aco_t *owner = co->share_stack->owner;
    if (owner && owner != al->main_co) ev_aco_of(owner)->bytes_copied += out;
  }
  mtevL(eventer_deb,
        "eventer_aco: resume %p: %zu stack bytes copied in, %zu out "
        "(save stack %zu, largest %zu)\n",
        (void *)co, in, out, co->save_stack.sz, co->save_stack.max_cpsz);
  a->resumes++;
  a->state = EV_ACO_RUNNING;
  aco_resume(co);
  if (co->is_end) ev_aco_reap(a);
}

void ev_aco_schedule(ev_aco_t *a) {
  if (a->state != EV_ACO_NEW) a->state = EV_ACO_RUNNABLE;
  /* NULL delay: the next timer phase, in FIFO order with other resumes */
  eventer_timer_node_add(&a->timer, NULL);
}

/* The coroutine's timer node: a deadline passed, or a scheduled resume. */
static void ev_aco_timer_fire(eventer_timer_node_t *n, struct timeval *now) {
  (void)now;
  ev_aco_t *a = EV_CONTAINER_OF(n, ev_aco_t, timer);
  if (a->state == EV_ACO_PARKED) {
    ev_aco_unlink(&a->link);
    a->wake = EV_WAKE_TIMEOUT;
    a->state = EV_ACO_RUNNABLE;
  }
  ev_aco_resume(a);
}

/* ---- parking -------------------------------------------------------------------- */

uint64_t ev_aco_deadline(const struct timeval *t) {
  if (!t) return 0;
  uint64_t now = eventer_mono_ns();
  if (t->tv_sec < 0 || t->tv_usec < 0) return now; /* already passed */
  uint64_t d = (uint64_t)t->tv_sec * 1000000000u + (uint64_t)t->tv_usec * 1000u;
  return now + d;
}

int ev_aco_wake_errno(int wake) {
  switch (wake) {
  case EV_WAKE_TIMEOUT: return ETIMEDOUT;
  case EV_WAKE_CANCEL: return ECANCELED;
  case EV_WAKE_CLOSED: return EBADF;
  default: return EINTR;
  }
}

int ev_aco_park(ev_aco_t *a, ev_aco_waitq_t *q, uint64_t deadline_ns,
                int wait_kind) {
  EV_ASSERT(a != NULL && a->state == EV_ACO_RUNNING &&
                ev_aco_co(a) == aco_current(),
            "only the running coroutine parks itself");
  if (wait_kind >= EV_WAIT_CANCELLABLE &&
      (a->flags & EV_ACO_F_CANCEL_PENDING)) {
    a->flags &= (uint8_t)~EV_ACO_F_CANCEL_PENDING;
    return EV_WAKE_CANCEL;
  }
  if (wait_kind == EV_WAIT_PARK && (a->flags & EV_ACO_F_WAKE_TOKEN)) {
    a->flags &= (uint8_t)~EV_ACO_F_WAKE_TOKEN;
    return EV_WAKE_READY;
  }
  if (deadline_ns && deadline_ns <= eventer_mono_ns()) return EV_WAKE_TIMEOUT;
  if (q) ev_aco_link_tail(q, &a->link);
  a->wait_kind = (uint8_t)wait_kind;
  a->wake = EV_WAKE_NONE;
  a->state = EV_ACO_PARKED;
  if (deadline_ns) eventer_timer_node_add_at_ns(&a->timer, deadline_ns);
  aco_yield();
  /* resumed by ev_aco_resume: a waker set a->wake, or the deadline did */
  ev_aco_unlink(&a->link);
  eventer_timer_node_remove(&a->timer);
  return a->wake;
}

void ev_aco_wake(ev_aco_t *a, int reason) {
  if (a->state != EV_ACO_PARKED) return;
  ev_aco_unlink(&a->link);
  a->wake = (uint8_t)reason;
  ev_aco_schedule(a);
}

void ev_aco_wake_now(ev_aco_t *a, int reason) {
  if (a->state != EV_ACO_PARKED) return;
  if (aco_current() != NULL) { /* inside a coroutine: can't nest */
    ev_aco_wake(a, reason);
    return;
  }
  ev_aco_unlink(&a->link);
  eventer_timer_node_remove(&a->timer);
  a->wake = (uint8_t)reason;
  a->state = EV_ACO_RUNNABLE;
  ev_aco_resume(a);
}

ev_aco_t *ev_aco_wake_one(ev_aco_waitq_t *q, int reason) {
  if (ev_aco_waitq_empty(q)) return NULL;
  ev_aco_t *a = EV_CONTAINER_OF(q->head.next, ev_aco_t, link);
  ev_aco_wake(a, reason);
  return a;
}

void ev_aco_wake_all(ev_aco_waitq_t *q, int reason) {
  while (ev_aco_wake_one(q, reason)) {
  }
}

/* ---- starting ----------------------------------------------------------------- */

/* On the loop: creates h's coroutine and runs or schedules it.  On
 * failure h is marked done and loses the coroutine's reference. */
static int ev_aco_handle_start(eventer_aco_co_t *h) {
  ev_aco_t *a = ev_aco_create(h->fn, h->arg, h->stack_size, h->save_size,
                              h->name, 0);
  if (!a) {
    int err = errno;
    __atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
    eventer_aco_co_release(h); /* the coroutine's reference */
    errno = err;
    return -1;
  }
  a->handle = h;
  h->a = a;
  if (aco_current() == NULL)
    ev_aco_resume(a);
  else
    ev_aco_schedule(a);
  return 0;
}

/* h->xtask: a queued start and/or cross-thread requests. */
static void ev_aco_xtask_run(eventer_task_t *t, struct timeval *now) {
  (void)now;
  eventer_aco_co_t *h = EV_CONTAINER_OF(t, eventer_aco_co_t, xtask);
  int req = __atomic_exchange_n(&h->xreq, 0, __ATOMIC_ACQ_REL);
  if (h->fn) { /* the start this task was posted for */
    if (ev_aco_handle_start(h) != 0)
      mtevL(eventer_err, "eventer_aco: cannot start a coroutine: %s\n",
            strerror(errno));
    h->fn = NULL;
  }
  ev_aco_handle_apply(h, req & ~EV_XR_POSTED);
  eventer_aco_co_release(h); /* the posted task's reference */
}

/* ev_task_discard_hook: the loop went away with h->xtask queued.  A start
 * never happens (h is done, the coroutine's reference goes); requests are
 * moot; the task's reference goes. */
static void ev_aco_xtask_discard(eventer_task_t *t) {
  if (t->run != ev_aco_xtask_run) return;
  eventer_aco_co_t *h = EV_CONTAINER_OF(t, eventer_aco_co_t, xtask);
  __atomic_store_n(&h->xreq, 0, __ATOMIC_RELEASE);
  if (h->fn) {
    h->fn = NULL;
    __atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
    eventer_aco_co_release(h); /* the coroutine's reference */
  }
  eventer_aco_co_release(h); /* the posted task's reference */
}

static eventer_aco_co_t *ev_aco_handle_new(ev_loop_t *l) {
  eventer_aco_co_t *h = calloc(1, sizeof(*h));
  if (!h) {
    errno = ENOMEM;
    return NULL;
  }
  h->refs = 1;
  h->loop = l;
  ev_aco_waitq_init(&h->joiners);
  h->xtask.run = ev_aco_xtask_run;
  return h;
}

eventer_aco_co_t *eventer_aco_spawn(void (*func)(void), void *closure,
                                    const eventer_aco_opts_t *opts) {
  if (!func) {
    errno = EINVAL;
    return NULL;
  }
  if (!ev_initialized()) {
    errno = ENXIO;
    return NULL;
  }
  eventer_aco_opts_t o = {0};
  if (opts) o = *opts;
  ev_loop_t *self = ev_loop_self();
  ev_loop_t *l = o.loop ? o.loop : self ? self : ev_default_loop();
  if (!l) {
    errno = ENXIO;
    return NULL;
  }
  eventer_aco_co_t *h = ev_aco_handle_new(l);
  if (!h) return NULL;
  h->refs = 2; /* the caller's and the coroutine's */
  h->fn = func;
  h->arg = closure;
  h->stack_size = o.stack_size;
  h->save_size = o.save_stack_size;
  h->name = o.name;
  if (l == self) {
    if (ev_aco_handle_start(h) != 0) {
      int err = errno;
      eventer_aco_co_release(h);
      errno = err;
      return NULL;
    }
    h->fn = NULL;
  } else {
    /* another loop, a plain thread, or before the loops run */
    /* if it never runs */
    __atomic_store_n(&ev_task_discard_hook, ev_aco_xtask_discard, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->refs, 1, __ATOMIC_RELAXED); /* the task's */
    __atomic_fetch_or(&h->xreq, EV_XR_POSTED, __ATOMIC_ACQ_REL);
    if (eventer_task_post_to(l, &h->xtask) != 0) {
      int err = errno;
      free(h);
      errno = err;
      return NULL;
    }
  }
  return h;
}

void eventer_aco_start_stack(void (*func)(void), void *closure, size_t stksz) {
  if (func && ev_loop_self()) {
    /* On a loop: no handle (nobody can ask for this one, and it would
     * cost each coroutine another allocation); eventer_aco_self() makes
     * one if the coroutine wants it. */
    ev_aco_t *a = ev_aco_create(func, closure, stksz, 0, NULL, 0);
    if (!a) {
      mtevL(eventer_err, "eventer_aco_start: %s\n", strerror(errno));
      return;
    }
    if (aco_current() == NULL)
      ev_aco_resume(a);
    else
      ev_aco_schedule(a);
    return;
  }
  eventer_aco_opts_t o = {.stack_size = stksz};
  eventer_aco_co_t *h = eventer_aco_spawn(func, closure, &o);
  if (!h) {
    mtevL(eventer_err, "eventer_aco_start: %s\n", strerror(errno));
    return;
  }
  eventer_aco_co_release(h);
}

void eventer_aco_start(void (*func)(void), void *closure) {
  eventer_aco_start_stack(func, closure, 0);
}

void *eventer_aco_arg(void) {
  ev_aco_t *a = ev_aco_self();
  return a ? ev_aco_co(a)->arg : NULL;
}

mtev_boolean eventer_in_aco(void) {
  return ev_aco_self() ? mtev_true : mtev_false;
}

/* ---- handles ------------------------------------------------------------------- */

eventer_aco_co_t *ev_aco_handle_of(ev_aco_t *a) {
  if (!a->handle) {
    a->handle = ev_aco_handle_new(ev_aco_loop_of(a));
    if (!a->handle) return NULL;
    a->handle->a = a; /* its one reference is the coroutine's */
  }
  return a->handle;
}

eventer_aco_co_t *eventer_aco_self(void) {
  ev_aco_t *a = ev_aco_self();
  return a ? ev_aco_handle_of(a) : NULL;
}

void eventer_aco_co_ref(eventer_aco_co_t *h) {
  if (h) __atomic_fetch_add(&h->refs, 1, __ATOMIC_RELAXED);
}

void eventer_aco_co_release(eventer_aco_co_t *h) {
  if (!h) return;
  int left = __atomic_sub_fetch(&h->refs, 1, __ATOMIC_ACQ_REL);
  EV_ASSERT(left >= 0, "eventer_aco_co_release: more releases than references");
  if (left == 0) free(h);
}

mtev_boolean eventer_aco_co_done(eventer_aco_co_t *h) {
  return (h && __atomic_load_n(&h->done, __ATOMIC_ACQUIRE)) ? mtev_true
                                                            : mtev_false;
}

/* owner thread: carry out cross-thread requests */
static void ev_aco_handle_apply(eventer_aco_co_t *h, int req) {
  ev_aco_t *a = h->a;
  if (!a || !req) return;
  if (req & EV_XR_CANCEL) {
    if (a->state == EV_ACO_PARKED && a->wait_kind >= EV_WAIT_CANCELLABLE)
      ev_aco_wake(a, EV_WAKE_CANCEL);
    else
      a->flags |= EV_ACO_F_CANCEL_PENDING;
  }
  if (req & EV_XR_WAKE) {
    if (a->state == EV_ACO_PARKED && a->wait_kind == EV_WAIT_PARK)
      ev_aco_wake(a, EV_WAKE_READY);
    else
      a->flags |= EV_ACO_F_WAKE_TOKEN;
  }
}

static int ev_aco_handle_request(eventer_aco_co_t *h, int req) {
  if (!h) {
    errno = EINVAL;
    return -1;
  }
  if (__atomic_load_n(&h->done, __ATOMIC_ACQUIRE)) {
    errno = ESRCH;
    return -1;
  }
  if (ev_loop_self() == h->loop &&
      !(__atomic_load_n(&h->xreq, __ATOMIC_ACQUIRE) & EV_XR_POSTED)) {
    ev_aco_handle_apply(h, req);
    return 0;
  }
  int old = __atomic_fetch_or(&h->xreq, req | EV_XR_POSTED, __ATOMIC_ACQ_REL);
  if (!(old & EV_XR_POSTED)) {
    __atomic_fetch_add(&h->refs, 1, __ATOMIC_RELAXED); /* the task's */
    if (eventer_task_post_to(h->loop, &h->xtask) != 0) {
      __atomic_fetch_and(&h->xreq, ~(req | EV_XR_POSTED), __ATOMIC_ACQ_REL);
      eventer_aco_co_release(h);
      return -1;
    }
  }
  return 0;
}

int eventer_aco_cancel(eventer_aco_co_t *h) {
  return ev_aco_handle_request(h, EV_XR_CANCEL);
}

int eventer_aco_wake(eventer_aco_co_t *h) {
  return ev_aco_handle_request(h, EV_XR_WAKE);
}

/* the errno of a failed park, or 0 */
static int ev_aco_park_result(int w) {
  if (w == EV_WAKE_READY) return 0;
  errno = ev_aco_wake_errno(w);
  return -1;
}

int eventer_aco_park(struct timeval *timeout) {
  ev_aco_t *a = ev_aco_self();
  if (!a) {
    errno = EINVAL;
    return -1;
  }
  return ev_aco_park_result(
      ev_aco_park(a, NULL, ev_aco_deadline(timeout), EV_WAIT_PARK));
}

int eventer_aco_join(eventer_aco_co_t *h, struct timeval *timeout) {
  ev_aco_t *a = ev_aco_self();
  if (!a || !h) {
    errno = EINVAL;
    return -1;
  }
  if (eventer_aco_co_done(h)) return 0;
  if (h->loop != ev_aco_loop_of(a)) { /* before h->a: another loop's */
    errno = EINVAL;
    return -1;
  }
  if (h->a == a) {
    errno = EDEADLK;
    return -1;
  }
  uint64_t deadline = ev_aco_deadline(timeout);
  eventer_aco_co_ref(h);
  int rv = 0;
  while (!eventer_aco_co_done(h)) {
    int w = ev_aco_park(a, &h->joiners, deadline, EV_WAIT_CANCELLABLE);
    if (w != EV_WAKE_READY) {
      rv = ev_aco_park_result(w);
      break;
    }
  }
  int err = errno;
  eventer_aco_co_release(h);
  errno = err;
  return rv;
}

int eventer_aco_yield(void) {
  ev_aco_t *a = ev_aco_self();
  if (!a) {
    errno = EINVAL;
    return -1;
  }
  if (a->flags & EV_ACO_F_CANCEL_PENDING) {
    a->flags &= (uint8_t)~EV_ACO_F_CANCEL_PENDING;
    errno = ECANCELED;
    return -1;
  }
  /* park with a deadline of "now": the timer phase resumes it (as a
   * timeout, which is what a yield is) after the work that is due */
  a->wait_kind = EV_WAIT_CANCELLABLE;
  a->wake = EV_WAKE_NONE;
  a->state = EV_ACO_PARKED;
  eventer_timer_node_add(&a->timer, NULL);
  aco_yield();
  ev_aco_unlink(&a->link);
  eventer_timer_node_remove(&a->timer);
  if (a->wake == EV_WAKE_CANCEL) {
    errno = ECANCELED;
    return -1;
  }
  return 0;
}

int eventer_aco_get_stats(eventer_aco_co_t *h, eventer_aco_stats_t *out) {
  if (!out || (h && h->loop != ev_loop_self())) { /* h->a is its loop's */
    errno = EINVAL;
    return -1;
  }
  ev_aco_t *a = h ? h->a : ev_aco_self();
  if (!h && !a) {
    errno = EINVAL;
    return -1;
  }
  if (h && (eventer_aco_co_done(h) || !a)) {
    errno = ESRCH;
    return -1;
  }
  aco_t *co = ev_aco_co(a);
  out->resumes = a->resumes;
  out->bytes_copied = a->bytes_copied;
  out->max_save_stack = co->save_stack.max_cpsz;
  out->save_stack_sz = co->save_stack.sz;
  return 0;
}

/* ---- sleep -------------------------------------------------------------------- */

int eventer_aco_sleep(struct timeval *duration) {
  ev_aco_t *a = ev_aco_self();
  if (!a || !duration || duration->tv_sec < 0 || duration->tv_usec < 0) {
    errno = EINVAL;
    return -1;
  }
  if (duration->tv_sec == 0 && duration->tv_usec == 0) return eventer_aco_yield();
  int w = ev_aco_park(a, NULL, ev_aco_deadline(duration), EV_WAIT_CANCELLABLE);
  if (w == EV_WAKE_TIMEOUT) return 0; /* slept the whole time */
  return ev_aco_park_result(w == EV_WAKE_READY ? EV_WAKE_CANCEL : w);
}

/* ---- fd events --------------------------------------------------------------------
 * An aco event keeps its classic opset, callback and closure in an
 * ev_aco_fd_t (its opset_ctx) and gets the aco opset and callback.  Any
 * number of coroutines of its loop may wait on it, each for the mask its
 * operation needs; the event is registered with the union of those masks
 * while anyone waits, and unregistered when nobody does.
 */

enum { EV_TMO_ACCEPT = 0, EV_TMO_READ, EV_TMO_WRITE };

typedef struct ev_aco_fd {
  eventer_fd_opset_t orig_opset;
  void *orig_ctx;
  eventer_func_t orig_cb;
  ev_aco_waitq_t waiters;
  struct timeval tmo[3];
  uint8_t has_tmo[3];
  uint8_t closed;
  int reg_mask;  /* mask registered with the loop, 0: not registered */
  int in_cb;     /* our callback for this event is dispatching */
} ev_aco_fd_t;

static int ev_aco_op_accept(int fd, struct sockaddr *addr, socklen_t *len,
                            int *mask, void *closure);
static int ev_aco_op_read(int fd, void *buf, size_t len, int *mask,
                          void *closure);
static int ev_aco_op_write(int fd, const void *buf, size_t len, int *mask,
                           void *closure);
static int ev_aco_op_close(int fd, int *mask, void *closure);

static struct _fd_opset ev_aco_opset_s = {
    ev_aco_op_accept, ev_aco_op_read, ev_aco_op_write, ev_aco_op_close, "aco"};
static eventer_fd_opset_t const ev_aco_opset = &ev_aco_opset_s;

/* With an event: is it an aco event.  With NULL (libmtev): is the caller
 * running in a coroutine (any coroutine, not a thread's main one). */
mtev_boolean eventer_is_aco(eventer_t e) {
  if (!e) {
    aco_t *co = aco_get_co();
    return (co && !aco_is_main_co(co)) ? mtev_true : mtev_false;
  }
  return e->opset == ev_aco_opset ? mtev_true : mtev_false;
}

static ev_aco_fd_t *ev_aco_fd_of(eventer_t e) {
  return (e && e->opset == ev_aco_opset) ? (ev_aco_fd_t *)e->opset_ctx : NULL;
}

/* fini (ev_aco_loop_fini): each coroutine still waiting on e holds a
 * reference to it for its wait; the registration's own is dropped by the
 * loop's fini. */
static void ev_aco_fd_fini_waiters(eventer_t e) {
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!st) return;
  while (!ev_aco_waitq_empty(&st->waiters)) {
    ev_aco_unlink(st->waiters.head.next);
    eventer_deref(e);
  }
}

static int ev_aco_waiters_mask(ev_aco_fd_t *st) {
  int m = 0;
  for (ev_aco_link_t *l = st->waiters.head.next; l != &st->waiters.head;
       l = l->next)
    m |= EV_CONTAINER_OF(l, ev_aco_t, link)->aux;
  return m;
}

/* The loop's callback for an aco event: wake the waiters whose mask is
 * ready (all of them on an exception), then keep interest in what the
 * remaining waiters need. */
static int ev_aco_fd_cb(eventer_t e, int mask, void *closure,
                        struct timeval *now) {
  (void)closure;
  (void)now;
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  EV_ASSERT(st != NULL, "ev_aco_fd_cb runs only for aco events");
  ev_aco_waitq_t ready;
  ev_aco_waitq_init(&ready);
  ev_aco_link_t *l = st->waiters.head.next;
  while (l != &st->waiters.head) {
    ev_aco_link_t *next = l->next;
    ev_aco_t *w = EV_CONTAINER_OF(l, ev_aco_t, link);
    if ((w->aux & mask) || (mask & EVENTER_EXCEPTION)) {
      ev_aco_unlink(l);
      ev_aco_link_tail(&ready, l);
    }
    l = next;
  }
  int woke = !ev_aco_waitq_empty(&ready);
  st->in_cb++;
  /* A waiter stays PARKED on `ready` until its turn, so a cancel that a
   * coroutine resumed before it issues still finds and unlinks it. */
  while (!ev_aco_waitq_empty(&ready)) {
    ev_aco_t *w = EV_CONTAINER_OF(ready.head.next, ev_aco_t, link);
    ev_aco_wake_now(w, EV_WAKE_READY);
  }
  st->in_cb--;
  if (st->reg_mask == 0) return 0; /* unregistered meanwhile (close) */
  int want = ev_aco_waiters_mask(st);
  if (want == 0 && (!woke || (mask & EVENTER_EXCEPTION))) {
    /* It fired and nobody waited: stop listening, or a level-triggered fd
     * would spin. */
    eventer_remove_fde(e);
    st->reg_mask = 0;
    return 0; /* the loop drops the registration's reference */
  }
  if (want == 0) {
    /* The waiters we woke will most likely wait again soon (the next read
     * of a request/response exchange): keep the registration as it is and
     * save an epoll_ctl DEL + ADD per exchange.  If the fd fires before
     * anyone waits, the branch above drops it then.  A free or close of
     * the event drops it at once. */
    return st->reg_mask;
  }
  st->reg_mask = want;
  return want;
}

/* Registers e for what its waiters need.  Outside our callback only (the
 * callback's return value does it there). */
static int ev_aco_fd_sync(eventer_t e, ev_aco_fd_t *st) {
  if (st->in_cb) return 0;
  int want = ev_aco_waiters_mask(st);
  /* a registration wider than needed is fine (a fire with nobody waiting
   * for it narrows it); only a missing bit needs an epoll_ctl */
  if (st->reg_mask != 0 && (want & ~st->reg_mask) == 0) return 0;
  if (st->reg_mask != 0) want |= st->reg_mask & ~EVENTER_EXCEPTION;
  if (st->reg_mask == 0) {
    e->mask = want;
    eventer_ref(e); /* the registration's reference */
    if (eventer_add(e) != 0) {
      int err = errno;
      eventer_deref(e);
      errno = err;
      return -1;
    }
  } else if (eventer_update(e, want) != 0) {
    return -1;
  }
  st->reg_mask = want;
  return 0;
}

static void ev_aco_fd_unregister(eventer_t e, ev_aco_fd_t *st) {
  if (st->reg_mask == 0) return;
  eventer_t r = eventer_remove_fde(e);
  st->reg_mask = 0;
  /* inside our callback, its 0 return drops the registration's
   * reference; elsewhere we drop it */
  if (r && !st->in_cb) eventer_deref(r);
}

/* A waiter left without the fd firing (timeout, cancel): if nobody else
 * waits, stop listening now, so that "registered" always means "someone
 * waits" and a freed or closed event never lingers in the loop. */
static void ev_aco_fd_idle(eventer_t e, ev_aco_fd_t *st) {
  if (!st->in_cb && ev_aco_waitq_empty(&st->waiters))
    ev_aco_fd_unregister(e, st);
}

/* Parks the running coroutine until e is ready for `mask`, or the
 * deadline passes.  Returns EV_WAKE_*; leaves the registration clean. */
static int ev_aco_fd_wait(ev_aco_t *a, eventer_t e, ev_aco_fd_t *st, int mask,
                          uint64_t deadline, int *err) {
  a->aux = mask;
  /* link first so the registration covers our mask */
  ev_aco_link_tail(&st->waiters, &a->link);
  if (ev_aco_fd_sync(e, st) != 0) {
    *err = errno;
    ev_aco_unlink(&a->link);
    return -1;
  }
  ev_aco_unlink(&a->link);
  int w = ev_aco_park(a, &st->waiters, deadline, EV_WAIT_CANCELLABLE);
  if (w != EV_WAKE_READY) {
    ev_aco_fd_idle(e, st);
    *err = ev_aco_wake_errno(w);
  } else if (st->closed) {
    w = EV_WAKE_CLOSED;
    *err = EBADF;
  }
  return w;
}

int ev_aco_fd_prewait(ev_aco_t *a, eventer_t e, int mask, uint64_t deadline,
                      int *err) {
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  EV_ASSERT(a->state == EV_ACO_PARKED && !ev_aco_linked(&a->link) &&
                !eventer_timer_node_pending(&a->timer),
            "a pre-wait starts from an idle parked coroutine");
  if (!st || e->owner != ev_aco_loop_of(a) ||
      !(mask & (EVENTER_READ | EVENTER_WRITE))) {
    *err = EINVAL;
    return -1;
  }
  if (st->closed) {
    *err = EBADF;
    return -1;
  }
  if (a->flags & EV_ACO_F_CANCEL_PENDING) { /* as ev_aco_park would */
    a->flags &= (uint8_t)~EV_ACO_F_CANCEL_PENDING;
    *err = ECANCELED;
    return -1;
  }
  if (deadline && deadline <= eventer_mono_ns()) {
    *err = ETIMEDOUT;
    return -1;
  }
  a->aux = mask & (EVENTER_READ | EVENTER_WRITE);
  ev_aco_link_tail(&st->waiters, &a->link);
  if (ev_aco_fd_sync(e, st) != 0) {
    *err = errno;
    ev_aco_unlink(&a->link);
    return -1;
  }
  eventer_ref(e); /* dropped by ev_aco_fd_prewait_done */
  a->wait_kind = EV_WAIT_CANCELLABLE;
  a->wake = EV_WAKE_NONE;
  a->flags |= EV_ACO_F_PREWAIT; /* its wake runs ev_aco_prewait_hook */
  if (deadline) eventer_timer_node_add_at_ns(&a->timer, deadline);
  return 0;
}

int ev_aco_fd_prewait_done(ev_aco_t *a, eventer_t e, int *err) {
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  int rv = 0;
  if (a->wake != EV_WAKE_READY) {
    ev_aco_fd_idle(e, st);
    *err = ev_aco_wake_errno(a->wake);
    rv = -1;
  } else if (st->closed) {
    *err = EBADF;
    rv = -1;
  }
  eventer_deref(e);
  return rv;
}

int eventer_aco_wait_ready(eventer_aco_t ae, int mask, struct timeval *timeout) {
  eventer_t e = (eventer_t)ae;
  ev_aco_t *a = ev_aco_self();
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!a || !st || e->owner != ev_aco_loop_of(a) ||
      !(mask & (EVENTER_READ | EVENTER_WRITE))) {
    errno = EINVAL;
    return -1;
  }
  if (st->closed) {
    errno = EBADF;
    return -1;
  }
  int err = 0;
  eventer_ref(e);
  int w = ev_aco_fd_wait(a, e, st, mask & (EVENTER_READ | EVENTER_WRITE),
                         ev_aco_deadline(timeout), &err);
  eventer_deref(e);
  if (w == EV_WAKE_READY) return 0;
  errno = err;
  return -1;
}

const volatile uint8_t *ev_aco_fd_posix_closed_flag(eventer_t e) {
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!st || st->orig_opset != eventer_POSIX_fd_opset) return NULL;
  return &st->closed;
}

/* One attempt of op through e's original opset (EINTR retried): the
 * result, or -1 with errno; when it would block, *mask is what to wait
 * for. */
static int ev_aco_fd_attempt(eventer_t e, ev_aco_fd_t *st, int op, void *buf,
                             size_t len, struct sockaddr *addr,
                             socklen_t *alen, int *mask) {
  int rv;
  do {
    *mask = 0;
    errno = 0;
    switch (op) {
    case EV_ACO_TRY_ACCEPT:
      rv = st->orig_opset->accept(e->fd, addr, alen, mask, e);
      break;
    case EV_ACO_TRY_READ:
      rv = st->orig_opset->read(e->fd, buf, len, mask, e);
      break;
    default:
      rv = st->orig_opset->write(e->fd, buf, len, mask, e);
      break;
    }
  } while (rv < 0 && errno == EINTR);
  if (rv < 0 &&
      (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS) &&
      !(*mask & (EVENTER_READ | EVENTER_WRITE)))
    *mask = op == EV_ACO_TRY_WRITE ? EVENTER_WRITE : EVENTER_READ;
  return rv;
}

int ev_aco_fd_try(eventer_t e, int op, void *buf, size_t len,
                  struct sockaddr *addr, socklen_t *alen, int *mask) {
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!st) {
    errno = EINVAL;
    return -1;
  }
  if (st->closed) {
    errno = EBADF;
    return -1;
  }
  return ev_aco_fd_attempt(e, st, op, buf, len, addr, alen, mask);
}

/* The blocking loop behind read/write/accept.  Runs in a coroutine. */
static int ev_aco_fd_op(eventer_t e, int op, void *buf, size_t len,
                        struct sockaddr *addr, socklen_t *alen,
                        const struct timeval *timeout) {
  ev_aco_t *a = ev_aco_self();
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!a || !st || e->owner != ev_aco_loop_of(a)) {
    errno = EINVAL;
    return -1;
  }
  if (st->closed) {
    errno = EBADF;
    return -1;
  }
  int which = op == EV_ACO_TRY_ACCEPT ? EV_TMO_ACCEPT
              : op == EV_ACO_TRY_READ ? EV_TMO_READ
                                 : EV_TMO_WRITE;
  if (!timeout && st->has_tmo[which]) timeout = &st->tmo[which];
  uint64_t deadline = ev_aco_deadline(timeout);
  eventer_ref(e); /* e stays alive while we wait, whoever frees it */
  int rv, err = 0;
  for (;;) {
    int mask;
    rv = ev_aco_fd_attempt(e, st, op, buf, len, addr, alen, &mask);
    err = errno;
    if (rv >= 0) break;
    if (err != EAGAIN && err != EWOULDBLOCK && err != EINPROGRESS) break;
    if (ev_aco_fd_wait(a, e, st, mask, deadline, &err) != EV_WAKE_READY) {
      rv = -1;
      break;
    }
  }
  eventer_deref(e);
  errno = err;
  return rv;
}

int eventer_aco_read(eventer_aco_t e, void *buff, size_t len,
                     struct timeval *timeout) {
  return ev_aco_fd_op((eventer_t)e, EV_ACO_TRY_READ, buff, len, NULL, NULL, timeout);
}

int eventer_aco_write(eventer_aco_t e, const void *buff, size_t len,
                      struct timeval *timeout) {
  return ev_aco_fd_op((eventer_t)e, EV_ACO_TRY_WRITE, (void *)buff, len, NULL,
                      NULL, timeout);
}

int eventer_aco_accept(eventer_aco_t e, struct sockaddr *addr, socklen_t *len,
                       struct timeval *timeout) {
  return ev_aco_fd_op((eventer_t)e, EV_ACO_TRY_ACCEPT, NULL, 0, addr, len, timeout);
}

int eventer_aco_connect(eventer_aco_t ae, const struct sockaddr *addr,
                        socklen_t len, struct timeval *timeout) {
  eventer_t e = (eventer_t)ae;
  ev_aco_t *a = ev_aco_self();
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!a || !st || !addr || e->owner != ev_aco_loop_of(a)) {
    errno = EINVAL;
    return -1;
  }
  if (st->closed) {
    errno = EBADF;
    return -1;
  }
  int rv;
  do {
    rv = connect(e->fd, addr, len);
  } while (rv < 0 && errno == EINTR);
  if (rv == 0) return 0;
  if (errno != EINPROGRESS) return -1;
  uint64_t deadline = ev_aco_deadline(timeout);
  eventer_ref(e);
  int err = 0;
  if (ev_aco_fd_wait(a, e, st, EVENTER_WRITE, deadline, &err) == EV_WAKE_READY) {
    socklen_t sl = sizeof(err);
    if (getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0) err = errno;
  }
  eventer_deref(e);
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

int eventer_aco_close(eventer_aco_t ae) {
  eventer_t e = (eventer_t)ae;
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!st) {
    errno = EINVAL;
    return -1;
  }
  if (st->closed) {
    errno = EBADF;
    return -1;
  }
  st->closed = 1;
  ev_aco_wake_all(&st->waiters, EV_WAKE_CLOSED);
  ev_aco_fd_unregister(e, st);
  int mask = 0;
  return st->orig_opset->close(e->fd, &mask, e);
}

void eventer_aco_free(eventer_aco_t ae) {
  eventer_t e = (eventer_t)ae;
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  /* Still registered only because the callback that resumed the last
   * waiter has not returned yet: let the fd go now, so that a new event
   * for the same fd can be registered right away. */
  if (st && st->reg_mask && ev_aco_waitq_empty(&st->waiters))
    ev_aco_fd_unregister(e, st);
  eventer_free(e);
}

#define EV_ACO_TIMEOUT_SETTER(kind, idx)                                   \
  void eventer_aco_set_##kind##_timeout(eventer_aco_t e,                   \
                                        struct timeval *duration) {        \
    ev_aco_fd_t *st = ev_aco_fd_of((eventer_t)e);                          \
    if (!st) return;                                                       \
    st->has_tmo[idx] = duration != NULL;                                   \
    if (duration) st->tmo[idx] = *duration;                                \
  }
EV_ACO_TIMEOUT_SETTER(accept, EV_TMO_ACCEPT)
EV_ACO_TIMEOUT_SETTER(read, EV_TMO_READ)
EV_ACO_TIMEOUT_SETTER(write, EV_TMO_WRITE)

void *eventer_aco_get_closure(eventer_aco_t e) {
  return eventer_get_closure((eventer_t)e);
}
void eventer_aco_set_closure(eventer_aco_t e, void *closure) {
  eventer_set_closure((eventer_t)e, closure);
}

/* The aco opset: a classic eventer_read() & co. on an aco event, inside a
 * coroutine, is its eventer_aco_ counterpart with no explicit timeout;
 * outside a coroutine it is the original, non-blocking call. */
static int ev_aco_op_accept(int fd, struct sockaddr *addr, socklen_t *len,
                            int *mask, void *closure) {
  eventer_t e = closure;
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!ev_aco_self()) return st->orig_opset->accept(fd, addr, len, mask, e);
  return ev_aco_fd_op(e, EV_ACO_TRY_ACCEPT, NULL, 0, addr, len, NULL);
}
static int ev_aco_op_read(int fd, void *buf, size_t len, int *mask,
                          void *closure) {
  eventer_t e = closure;
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!ev_aco_self()) return st->orig_opset->read(fd, buf, len, mask, e);
  return ev_aco_fd_op(e, EV_ACO_TRY_READ, buf, len, NULL, NULL, NULL);
}
static int ev_aco_op_write(int fd, const void *buf, size_t len, int *mask,
                           void *closure) {
  eventer_t e = closure;
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!ev_aco_self()) return st->orig_opset->write(fd, buf, len, mask, e);
  return ev_aco_fd_op(e, EV_ACO_TRY_WRITE, (void *)buf, len, NULL, NULL, NULL);
}
static int ev_aco_op_close(int fd, int *mask, void *closure) {
  (void)fd;
  (void)mask;
  return eventer_aco_close((eventer_aco_t)closure);
}

/* Core hooks: an aco event's state dies with it; a copy is classic. */
static void ev_aco_fd_free_hook(eventer_t e) {
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!st) return;
  /* waiters hold references; the registration's was just dropped by
   * whoever unregistered it (the loop at eventer_fini, or us) */
  EV_ASSERT(ev_aco_waitq_empty(&st->waiters),
            "an aco event is freed only when nothing waits on it");
  free(st);
  e->opset_ctx = NULL;
}

static void ev_aco_fd_copy_hook(eventer_t dst, eventer_t src) {
  ev_aco_fd_t *st = ev_aco_fd_of(src);
  if (!st) return;
  dst->opset = st->orig_opset;
  dst->opset_ctx = st->orig_ctx;
  dst->callback = st->orig_cb;
}

eventer_aco_t eventer_set_eventer_aco_co(eventer_t e, aco_t *co) {
  if (!e) {
    errno = EINVAL;
    return NULL;
  }
  if (co == NULL) { /* back to classic */
    ev_aco_fd_t *st = ev_aco_fd_of(e);
    if (!st || st->reg_mask || !ev_aco_waitq_empty(&st->waiters)) {
      errno = st ? EBUSY : EINVAL;
      return NULL;
    }
    e->opset = st->orig_opset;
    e->opset_ctx = st->orig_ctx;
    e->callback = st->orig_cb;
    free(st);
    return NULL;
  }
  ev_aco_t *a = ev_aco_self();
  if (!a || ev_aco_co(a) != co || e->fd < 0 || eventer_is_aco(e) ||
      __atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != EV_ST_NONE) {
    errno = EINVAL;
    return NULL;
  }
  ev_aco_fd_t *st = calloc(1, sizeof(*st));
  if (!st) {
    errno = ENOMEM;
    return NULL;
  }
  ev_event_hooks_add(ev_aco_fd_free_hook, ev_aco_fd_copy_hook);
  st->orig_opset = e->opset ? e->opset : eventer_POSIX_fd_opset;
  st->orig_ctx = e->opset_ctx;
  st->orig_cb = e->callback;
  ev_aco_waitq_init(&st->waiters);
  e->opset = ev_aco_opset;
  e->opset_ctx = st;
  e->callback = ev_aco_fd_cb;
  e->mask = 0;
  __atomic_store_n(&e->owner, ev_aco_loop_of(a), __ATOMIC_RELEASE);
  return (eventer_aco_t)e;
}

eventer_aco_t eventer_set_eventer_aco(eventer_t e) {
  aco_t *co = aco_current();
  if (!co) {
    errno = EINVAL;
    return NULL;
  }
  return eventer_set_eventer_aco_co(e, co);
}

/* ---- asynch work and gates ----------------------------------------------------- */

struct _event_aco_gate {
  int count;          /* the creator's hold (until gate_wait) + jobs */
  ev_aco_t *waiter;   /* coroutine in eventer_aco_gate_wait */
};

typedef struct ev_aco_job {
  ev_aco_t *waiter;            /* resumed at COMPLETE (ungated) */
  eventer_aco_gate_t gate;     /* counted down at COMPLETE (gated) */
  eventer_asynch_simple_func_t simple;
  eventer_asynch_func_t func;
  void *closure;
  eventer_t user_e;            /* run_asynch: the caller's event */
} ev_aco_job_t;

static void ev_aco_gate_release(eventer_aco_gate_t g) {
  if (--g->count == 0 && g->waiter) {
    ev_aco_t *w = g->waiter;
    g->waiter = NULL;
    ev_aco_wake_now(w, EV_WAKE_READY);
  }
}

static int ev_aco_job_cb(eventer_t e, int mask, void *closure,
                         struct timeval *now) {
  (void)e;
  ev_aco_job_t *j = closure;
  if (mask == EVENTER_ASYNCH_WORK) {
    if (j->simple) j->simple(j->closure);
    if (j->func) j->func(EVENTER_ASYNCH_WORK, j->closure);
    if (j->user_e)
      j->user_e->callback(j->user_e, EVENTER_ASYNCH_WORK, j->user_e->closure,
                          now);
  } else if (mask == EVENTER_ASYNCH_CLEANUP) {
    if (j->func) j->func(EVENTER_ASYNCH_CLEANUP, j->closure);
    if (j->user_e)
      j->user_e->callback(j->user_e, EVENTER_ASYNCH_CLEANUP,
                          j->user_e->closure, now);
  } else if (mask == EVENTER_ASYNCH_COMPLETE) {
    if (j->func) j->func(EVENTER_ASYNCH_COMPLETE, j->closure);
    if (j->user_e) {
      j->user_e->callback(j->user_e, EVENTER_ASYNCH_COMPLETE,
                          j->user_e->closure, now);
      eventer_free(j->user_e); /* the reference run_asynch took over */
    }
    ev_aco_t *w = j->waiter;
    eventer_aco_gate_t g = j->gate;
    free(j);
    if (g) ev_aco_gate_release(g);
    if (w) ev_aco_wake_now(w, EV_WAKE_READY);
  }
  return 0;
}

/* Queues job j.  try: refuse past the backlog.  0, or -1 (j not queued). */
static int ev_aco_job_submit(ev_aco_job_t *j, eventer_jobq_t *q, uint64_t id,
                             struct timeval *deadline, int try) {
  eventer_t ae = deadline ? eventer_alloc_asynch_timeout(ev_aco_job_cb, j,
                                                         deadline)
                          : eventer_alloc_asynch(ev_aco_job_cb, j);
  if (!ae) return -1;
  if (try) {
    if (!eventer_try_add_asynch_subqueue(q, ae, id)) {
      int err = errno;
      eventer_free(ae);
      errno = err ? err : EAGAIN;
      return -1;
    }
    return 0;
  }
  if (eventer_add_asynch_subqueue(q, ae, id) != 0) {
    int err = errno;
    eventer_free(ae);
    errno = err;
    return -1;
  }
  return 0;
}

/* Waits (not cancellable) until the job's COMPLETE resumes us. */
static void ev_aco_job_wait(ev_aco_t *a) {
  while (ev_aco_park(a, NULL, 0, EV_WAIT_PLAIN) != EV_WAKE_READY) {
  }
}

/* Common front for every asynch entry point.  gate NULL: wait here. */
static int ev_aco_job_run(eventer_aco_gate_t gate, ev_aco_job_t tmpl,
                          eventer_jobq_t *q, uint64_t id,
                          struct timeval *deadline, int try) {
  ev_aco_t *a = ev_aco_self();
  if (!a) {
    mtevL(eventer_err, "eventer_aco asynch: called outside a coroutine\n");
    errno = EINVAL;
    return -1;
  }
  ev_aco_job_t *j = malloc(sizeof(*j));
  if (!j) {
    errno = ENOMEM;
    return -1;
  }
  *j = tmpl;
  j->gate = gate;
  j->waiter = gate ? NULL : a;
  if (gate) gate->count++;
  if (ev_aco_job_submit(j, q, id, deadline, try) != 0) {
    int err = errno;
    if (gate) gate->count--; /* undo; the caller's gate stays theirs */
    free(j);
    errno = err;
    return -1;
  }
  if (!gate) ev_aco_job_wait(a);
  return 0;
}

static struct timeval *ev_aco_event_deadline(eventer_t e, struct timeval *buf) {
  if (!e || (e->whence.tv_sec == 0 && e->whence.tv_usec == 0)) return NULL;
  *buf = e->whence;
  return buf;
}

void eventer_aco_simple_asynch_queue_subqueue(eventer_asynch_simple_func_t func,
                                              void *closure, eventer_jobq_t *q,
                                              uint64_t id) {
  ev_aco_job_t t = {.simple = func, .closure = closure};
  if (ev_aco_job_run(NULL, t, q, id, NULL, 0) != 0)
    mtevL(eventer_err, "eventer_aco_simple_asynch: %s\n", strerror(errno));
}

void eventer_aco_simple_asynch_queue_subqueue_gated(
    eventer_aco_gate_t gate, eventer_asynch_simple_func_t func, void *closure,
    eventer_jobq_t *q, uint64_t id) {
  ev_aco_job_t t = {.simple = func, .closure = closure};
  if (!gate || ev_aco_job_run(gate, t, q, id, NULL, 0) != 0)
    mtevL(eventer_err, "eventer_aco_simple_asynch_gated: %s\n",
          gate ? strerror(errno) : "NULL gate");
}

void eventer_aco_asynch_queue_subqueue_deadline(eventer_asynch_func_t func,
                                                void *closure,
                                                eventer_jobq_t *q, uint64_t id,
                                                struct timeval *whence) {
  ev_aco_job_t t = {.func = func, .closure = closure};
  if (ev_aco_job_run(NULL, t, q, id, whence, 0) != 0)
    mtevL(eventer_err, "eventer_aco_asynch: %s\n", strerror(errno));
}

void eventer_aco_asynch_queue_subqueue_deadline_gated(
    eventer_aco_gate_t gate, eventer_asynch_func_t func, void *closure,
    eventer_jobq_t *q, uint64_t id, struct timeval *whence) {
  ev_aco_job_t t = {.func = func, .closure = closure};
  if (!gate || ev_aco_job_run(gate, t, q, id, whence, 0) != 0)
    mtevL(eventer_err, "eventer_aco_asynch_gated: %s\n",
          gate ? strerror(errno) : "NULL gate");
}

static int ev_aco_run_asynch(eventer_aco_gate_t gate, eventer_jobq_t *q,
                             eventer_t e, uint64_t id, int try) {
  if (!e || e->mask != EVENTER_ASYNCH || !e->callback) {
    errno = EINVAL;
    return -1;
  }
  struct timeval dl;
  ev_aco_job_t t = {.user_e = e};
  return ev_aco_job_run(gate, t, q, id, ev_aco_event_deadline(e, &dl), try);
}

void eventer_aco_run_asynch_queue_subqueue(eventer_jobq_t *q, eventer_t e,
                                           uint64_t id) {
  if (ev_aco_run_asynch(NULL, q, e, id, 0) != 0) {
    mtevL(eventer_err, "eventer_aco_run_asynch: %s\n", strerror(errno));
    if (e && errno != EINVAL) eventer_free(e); /* we took it over */
  }
}

void eventer_aco_run_asynch_queue_subqueue_gated(eventer_aco_gate_t gate,
                                                 eventer_jobq_t *q,
                                                 eventer_t e, uint64_t id) {
  if (!gate || ev_aco_run_asynch(gate, q, e, id, 0) != 0) {
    mtevL(eventer_err, "eventer_aco_run_asynch_gated: %s\n",
          gate ? strerror(errno) : "NULL gate");
    if (gate && e && errno != EINVAL) eventer_free(e);
  }
}

mtev_boolean eventer_aco_try_run_asynch_queue_subqueue(eventer_jobq_t *q,
                                                       eventer_t e,
                                                       uint64_t id) {
  return ev_aco_run_asynch(NULL, q, e, id, 1) == 0 ? mtev_true : mtev_false;
}

mtev_boolean eventer_aco_try_run_asynch_queue_subqueue_gated(
    eventer_aco_gate_t gate, eventer_jobq_t *q, eventer_t e, uint64_t id) {
  if (!gate) {
    errno = EINVAL;
    return mtev_false;
  }
  return ev_aco_run_asynch(gate, q, e, id, 1) == 0 ? mtev_true : mtev_false;
}

eventer_aco_gate_t eventer_aco_gate(void) {
  eventer_aco_gate_t g = calloc(1, sizeof(*g));
  if (!g) return NULL;
  g->count = 1;
  return g;
}

void eventer_aco_gate_wait(eventer_aco_gate_t g) {
  if (!g) return;
  ev_aco_t *a = ev_aco_self();
  if (!a) {
    mtevL(eventer_err, "eventer_aco_gate_wait: called outside a coroutine\n");
    return;
  }
  if (--g->count > 0) {
    g->waiter = a;
    while (g->count > 0) ev_aco_park(a, NULL, 0, EV_WAIT_PLAIN);
  }
  free(g);
}
