/*
 * eventer_aco.c - coroutines on the event loop: lifecycle, waiting, handles
 * (join, cancel, wake), park, yield, sleep, asynch work and gates.  The
 * model is in eventer_aco.h; the waiting protocol in eventer_aco_impl.h;
 * fd events are in eventer_aco_fd.c.
 */
#include "eventer_aco_impl.h"

#if defined(__SANITIZE_ADDRESS__)
#define EV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EV_ASAN 1
#endif
#endif
#ifdef EV_ASAN
#include <sanitizer/asan_interface.h>
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static aco_t *ev_aco_spare_take(ev_aco_loop_t *al, aco_share_stack_t *ss,
                                void *arg);
static void ev_aco_spare_poison(aco_t *co, int on);
static void (*ev_aco_end_hook)(ev_aco_t *a, int at_fini);

/* ---- handles ------------------------------------------------------------------
 * A handle outlives its coroutine: joiners wait on it, other threads wake
 * and cancel through it (their requests travel as its xtask). */

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

static void ev_aco_xtask_run(eventer_task_t *t, struct timeval *now);

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

/* The coroutine of h has ended (or will never start): h says so, its
 * joiners go, and the coroutine's reference goes. */
static void ev_aco_handle_end(eventer_aco_co_t *h) {
  h->a = NULL;
  __atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
  ev_aco_wake_all(&h->joiners, EV_WAKE_READY);
  eventer_aco_co_release(h);
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

/* ---- per-loop state ------------------------------------------------------------ */

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

/* eventer_fini: the loop is going away; coroutines still suspended on it are
 * dropped without running again, and proxies still alive are freed.
 * Released for them: their timers, the references of fd waits still parked
 * (found through the fd table), proxies, and a listener's connection (the
 * end hook with at_fini 1: its event closed and released, its closure
 * freed).  Not released: what their own
 * code holds (events they made, memory), as with aco_destroy, and what a
 * call that was already woken but not yet resumed or a join holds (a
 * record per coroutine would cost every coroutine 8 bytes for a
 * teardown).  An asynch call's job record goes with its job's event
 * (ev_aco_job_free), whose COMPLETE the teardown drops. */
static void ev_aco_loop_fini(ev_loop_t *l) {
  ev_aco_loop_t *al = l->aco;
  if (!al) return;
  ev_aco_fd_fini_loop(l);
  while (!ev_aco_waitq_empty(&al->all)) {
    ev_aco_t *a = EV_CONTAINER_OF(al->all.head.next, ev_aco_t, all);
    ev_aco_unlink(&a->all);
    ev_aco_unlink(&a->link);
    ev_heap_remove_at_fini(&a->timer); /* a pending timeout, sleep or resume */
    if (ev_aco_is_proxy(a)) {
      ev_aco_proxy_fini(a);
      continue;
    }
    if (a->handle) {
      a->handle->a = NULL;
      __atomic_store_n(&a->handle->done, 1, __ATOMIC_RELEASE);
      eventer_aco_co_release(a->handle);
    }
    /* a listener's connection: its end at fini (event, fd, closure) */
    if (a->flags & EV_ACO_F_END_HOOK)
      __atomic_load_n(&ev_aco_end_hook, __ATOMIC_ACQUIRE)(a, 1);
    aco_destroy(ev_aco_co(a));
  }
  while (al->nspare > 0) {
    aco_t *co = al->spare[--al->nspare];
    ev_aco_spare_poison(co, 0);
    aco_destroy(co);
  }
  for (int i = 0; i < al->nstacks; i++)
    aco_share_stack_destroy(al->stacks[i].ss);
  aco_destroy(al->main_co);
  free(al);
  l->aco = NULL;
}

/* ---- lifecycle -------------------------------------------------------------- */

static void ev_aco_timer_fire(eventer_timer_node_t *n, struct timeval *now);

void ev_aco_entry(void) {
  aco_t *co = aco_get_co();
  ev_aco_t *a = ev_aco_of(co);
  void (*fn)(void) = a->u.fn;
  /* from now on u holds the loop (ev_aco_loop_of: one load) */
  a->u.loop = ((ev_aco_loop_t *)co->main_co->arg)->loop;
  a->flags |= EV_ACO_F_HAS_LOOP;
  fn();
  aco_exit();
}

/* Live stack bytes of the coroutine this thread's loop last switched away
 * from (what it saved).  A new coroutine's first save stack, which lives
 * in the same allocation as its aco_t and ev_aco_t, is sized from it:
 * coroutines of one loop tend to park at similar depths, and a save stack
 * that fits from the start needs no second allocation.  Only a hint: a
 * wrong guess costs some bytes or one later allocation. */
__thread size_t ev_aco_save_hint;
#define EV_ACO_SAVE_HINT_MAX 1024

ev_aco_t *ev_aco_create(void (*fn)(void), void *arg, size_t stack_size,
                        size_t save_size, const char *name) {
  ev_aco_loop_t *al = ev_aco_loop_get();
  if (!al) return NULL;
  aco_share_stack_t *ss = ev_aco_stack_for(al, stack_size);
  if (!ss) return NULL;
  if (save_size == 0 && ev_aco_save_hint <= EV_ACO_SAVE_HINT_MAX)
    save_size = ev_aco_save_hint;
  aco_t *co = ev_aco_spare_take(al, ss, arg);
  if (!co)
    co = aco_create_ext(al->main_co, ss, save_size, ev_aco_entry, arg,
                        sizeof(ev_aco_t));
  ev_aco_t *a = ev_aco_of(co);
  a->timer.fire = ev_aco_timer_fire;
  ev_aco_link_init(&a->link);
  a->u.fn = fn;
  a->state = EV_ACO_NEW;
  ev_aco_link_tail(&al->all, &a->all);
  if (name) aco_set_name(co, name);
  return a;
}

int ev_aco_proxy_waiter_init(ev_aco_t *a) {
  ev_aco_loop_t *al = ev_aco_loop_get();
  if (!al) return -1;
  memset(a, 0, sizeof(*a));
  a->timer.fire = ev_aco_timer_fire;
  ev_aco_link_init(&a->link);
  a->u.loop = al->loop;
  a->state = EV_ACO_RUNNING;
  a->flags = EV_ACO_F_PROXY;
  ev_aco_link_tail(&al->all, &a->all);
  return 0;
}

void ev_aco_proxy_waiter_fini(ev_aco_t *a) {
  EV_ASSERT(a->state == EV_ACO_RUNNING && !ev_aco_linked(&a->link) &&
                !eventer_timer_node_pending(&a->timer),
            "a proxy is freed only when it does not wait");
  a->state = EV_ACO_DONE;
  ev_aco_unlink(&a->all);
}

void ev_aco_set_end_hook(void (*fn)(ev_aco_t *a, int at_fini)) {
  __atomic_store_n(&ev_aco_end_hook, fn, __ATOMIC_RELEASE);
}

/* A spare's aco_t and ev_aco_t are poisoned under ASan until reused, so
 * that a use after the end is still reported. */
static void ev_aco_spare_poison(aco_t *co, int on) {
#ifdef EV_ASAN
  if (on)
    ASAN_POISON_MEMORY_REGION(co, sizeof(aco_t) + sizeof(ev_aco_t));
  else
    ASAN_UNPOISON_MEMORY_REGION(co, sizeof(aco_t) + sizeof(ev_aco_t));
#else
  (void)co, (void)on;
#endif
}

void ev_aco_reap(ev_aco_t *a) {
  a->state = EV_ACO_DONE;
  ev_aco_unlink(&a->link);
  ev_aco_unlink(&a->all);
  eventer_timer_node_remove(&a->timer);
  if (a->handle) ev_aco_handle_end(a->handle);
  if (a->flags & EV_ACO_F_END_HOOK)
    __atomic_load_n(&ev_aco_end_hook, __ATOMIC_ACQUIRE)(a, 0);
  aco_t *co = ev_aco_co(a);
  ev_aco_loop_t *al = co->main_co->arg;
  if (al->nspare < EV_ACO_SPARE_MAX &&
      co->save_stack.sz <= EV_ACO_SPARE_SAVE_MAX) {
    al->spare[al->nspare++] = co;
    ev_aco_spare_poison(co, 1);
    return;
  }
  aco_destroy(co);
}

/* A spare of al on share stack ss, made a new coroutine, or NULL. */
static aco_t *ev_aco_spare_take(ev_aco_loop_t *al, aco_share_stack_t *ss,
                                void *arg) {
  for (int i = al->nspare - 1; i >= 0; i--) {
    aco_t *co = al->spare[i];
    ev_aco_spare_poison(co, 0);
    if (co->share_stack != ss) {
      ev_aco_spare_poison(co, 1);
      continue;
    }
    al->spare[i] = al->spare[--al->nspare];
    aco_reset(co, ev_aco_entry, arg);
    memset(aco_ext(co), 0, sizeof(ev_aco_t));
    return co;
  }
  return NULL;
}

void ev_aco_resume(ev_aco_t *a) { ev_aco_resume_in(a); }

void ev_aco_schedule(ev_aco_t *a) {
  if (a->state != EV_ACO_NEW) a->state = EV_ACO_RUNNABLE;
  /* NULL delay: the next timer phase, in FIFO order with other resumes */
  eventer_timer_node_add(&a->timer, NULL);
}

/* The waiter's timer node: a deadline passed, or a scheduled resume. */
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

/* ---- waiting --------------------------------------------------------------------- */

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


int ev_aco_wait_begin_turn(ev_aco_t *a) {
  ev_aco_assert_may_wait(a);
  if (a->flags & EV_ACO_F_CANCEL_PENDING) {
    a->flags &= (uint8_t)~EV_ACO_F_CANCEL_PENDING;
    return EV_WAKE_CANCEL;
  }
  /* a deadline of "now": the timer phase ends it (as a timeout, which is
   * what a yield is) after the work that is due */
  a->wait_kind = EV_WAIT_CANCELLABLE;
  a->wake = EV_WAKE_NONE;
  a->state = EV_ACO_PARKED;
  eventer_timer_node_add(&a->timer, NULL);
  return EV_WAKE_NONE;
}

int ev_aco_wait_yield(ev_aco_t *a) {
  aco_yield();
  /* resumed by ev_aco_resume: a waker set a->wake, or the deadline did */
  return ev_aco_wait_end(a);
}

void ev_aco_wake(ev_aco_t *a, int reason) {
  if (a->state != EV_ACO_PARKED) return;
  ev_aco_unlink(&a->link);
  a->wake = (uint8_t)reason;
  ev_aco_schedule(a);
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

/* the result of a wait that ends a call: 0 when READY, else -1/errno */
static int64_t ev_aco_wait_result(int w) {
  if (w == EV_WAKE_READY) return 0;
  errno = ev_aco_wake_errno(w);
  return -1;
}

/* ---- starting ----------------------------------------------------------------- */

/* On the loop: creates h's coroutine and runs or schedules it.  On
 * failure h is marked done and loses the coroutine's reference. */
static int ev_aco_handle_start(eventer_aco_co_t *h) {
  ev_aco_t *a = ev_aco_create(h->fn, h->arg, h->stack_size, h->save_size,
                              h->name);
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

/* The loop went away with h->xtask queued (the aco layer's task_discard).
 * A start never happens (h is done, the coroutine's reference goes);
 * requests are moot; the task's reference goes. */
static int ev_aco_xtask_discard(eventer_task_t *t) {
  if (t->run != ev_aco_xtask_run) return 0;
  eventer_aco_co_t *h = EV_CONTAINER_OF(t, eventer_aco_co_t, xtask);
  __atomic_store_n(&h->xreq, 0, __ATOMIC_RELEASE);
  if (h->fn) {
    h->fn = NULL;
    __atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
    eventer_aco_co_release(h); /* the coroutine's reference */
  }
  eventer_aco_co_release(h); /* the posted task's reference */
  return 1;
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
    ev_aco_t *a = ev_aco_create(func, closure, stksz, 0, NULL);
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

/* ---- park, join, yield, sleep ------------------------------------------------------ */

int ev_aco_park_begin(ev_aco_t *a, const struct timeval *timeout, int64_t *rv) {
  int w = ev_aco_wait_begin(a, NULL, ev_aco_deadline(timeout), EV_WAIT_PARK);
  if (w == EV_WAKE_NONE) return EV_OP_WAITING;
  *rv = ev_aco_park_end(w);
  return EV_OP_DONE;
}

int64_t ev_aco_park_end(int wake) { return ev_aco_wait_result(wake); }

int eventer_aco_park(struct timeval *timeout) {
  ev_aco_t *a = ev_aco_self();
  if (!a) {
    errno = EINVAL;
    return -1;
  }
  int64_t rv;
  if (ev_aco_park_begin(a, timeout, &rv) == EV_OP_WAITING)
    rv = ev_aco_park_end(ev_aco_wait_yield(a));
  return (int)rv;
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
      rv = (int)ev_aco_wait_result(w);
      break;
    }
  }
  int err = errno;
  eventer_aco_co_release(h);
  errno = err;
  return rv;
}

int ev_aco_yield_begin(ev_aco_t *a, int64_t *rv) {
  int w = ev_aco_wait_begin_turn(a);
  if (w == EV_WAKE_NONE) return EV_OP_WAITING;
  *rv = ev_aco_yield_end(w);
  return EV_OP_DONE;
}

int64_t ev_aco_yield_end(int wake) {
  if (wake == EV_WAKE_CANCEL) {
    errno = ECANCELED;
    return -1;
  }
  return 0; /* its turn came (a timeout), or a wake ended it early */
}

int eventer_aco_yield(void) {
  ev_aco_t *a = ev_aco_self();
  if (!a) {
    errno = EINVAL;
    return -1;
  }
  int64_t rv;
  if (ev_aco_yield_begin(a, &rv) == EV_OP_WAITING)
    rv = ev_aco_yield_end(ev_aco_wait_yield(a));
  return (int)rv;
}

int ev_aco_sleep_begin(ev_aco_t *a, const struct timeval *duration,
                       int64_t *rv) {
  if (!duration || duration->tv_sec < 0 || duration->tv_usec < 0) {
    errno = EINVAL;
    *rv = -1;
    return EV_OP_DONE;
  }
  if (duration->tv_sec == 0 && duration->tv_usec == 0)
    return ev_aco_yield_begin(a, rv); /* ends like a sleep: a yield's
                                       * timeout is its turn */
  int w = ev_aco_wait_begin(a, NULL, ev_aco_deadline(duration),
                            EV_WAIT_CANCELLABLE);
  if (w == EV_WAKE_NONE) return EV_OP_WAITING;
  /* A deadline that passed before the wait began (the thread was
   * preempted between the two clock reads) still gives the others a turn,
   * as a sleep's timer always does in libmtev: it ends as a yield. */
  if (w == EV_WAKE_TIMEOUT) return ev_aco_yield_begin(a, rv);
  *rv = ev_aco_sleep_end(w);
  return EV_OP_DONE;
}

int64_t ev_aco_sleep_end(int wake) {
  if (wake == EV_WAKE_TIMEOUT) return 0; /* slept the whole time */
  errno = ECANCELED; /* cancelled (nothing else ends a sleep) */
  return -1;
}

int eventer_aco_sleep(struct timeval *duration) {
  ev_aco_t *a = ev_aco_self();
  if (!a) {
    errno = EINVAL;
    return -1;
  }
  int64_t rv;
  if (ev_aco_sleep_begin(a, duration, &rv) == EV_OP_WAITING)
    rv = ev_aco_sleep_end(ev_aco_wait_yield(a));
  return (int)rv;
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
  int worked;                  /* WORK ran */
} ev_aco_job_t;

/* what a waiter's aux says at the end of a job wait */
enum { EV_JOB_WORKED = 1, EV_JOB_SKIPPED_DEADLINE, EV_JOB_SKIPPED_SHUTDOWN };

static void ev_aco_gate_release(eventer_aco_gate_t g) {
  if (--g->count == 0 && g->waiter) {
    ev_aco_t *w = g->waiter;
    g->waiter = NULL;
    ev_aco_wake_now(w, EV_WAKE_READY);
  }
}

static int ev_aco_job_cb(eventer_t e, int mask, void *closure,
                         struct timeval *now) {
  ev_aco_job_t *j = closure;
  if (mask == EVENTER_ASYNCH_WORK) {
    j->worked = 1;
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
    /* WORK is skipped when the deadline passed before a thread took the
     * job, or when its queue was destroyed first */
    int how = j->worked ? EV_JOB_WORKED
              : (e->deadline_ns && eventer_mono_ns() > e->deadline_ns)
                  ? EV_JOB_SKIPPED_DEADLINE
                  : EV_JOB_SKIPPED_SHUTDOWN;
    ev_aco_t *w = j->waiter;
    eventer_aco_gate_t g = j->gate;
    e->closure = NULL; /* the record is gone: nothing for ev_aco_job_free */
    free(j);
    if (g) ev_aco_gate_release(g);
    if (w) {
      w->aux = how;
      ev_aco_wake_now(w, EV_WAKE_READY);
    }
  }
  return 0;
}

/* The aco layer's part of freeing a job's event whose COMPLETE never ran
 * (eventer_fini dropped it with the loop's queued work): the job record
 * and the reference to the caller's event it held.  The waiter went with
 * its loop; so did a gate's owner if it was in eventer_aco_gate_wait (its
 * hold is released): the gate goes with its last job.  A gate whose owner
 * had not reached gate_wait is the owner's, as its other memory. */
static void ev_aco_job_free(eventer_t e) {
  if (e->callback != ev_aco_job_cb || !e->closure) return;
  ev_aco_job_t *j = e->closure;
  e->closure = NULL;
  if (j->user_e) eventer_free(j->user_e);
  if (j->gate && --j->gate->count == 0 && j->gate->waiter) free(j->gate);
  free(j);
}

static void ev_aco_event_free(eventer_t e) {
  ev_aco_fd_event_free(e);
  ev_aco_job_free(e);
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
      ae->closure = NULL; /* j stays the caller's */
      eventer_free(ae);
      errno = err ? err : EAGAIN;
      return -1;
    }
    return 0;
  }
  if (eventer_add_asynch_subqueue_ex(q, ae, id) != 0) {
    int err = errno;
    ae->closure = NULL; /* j stays the caller's */
    eventer_free(ae);
    errno = err;
    return -1;
  }
  return 0;
}

/* Queues a job for spec.  gate NULL: the caller's waiter a waits for it
 * (it is resumed at COMPLETE); else the job is counted on gate.  0, or -1
 * with errno (nothing queued). */
static int ev_aco_job_queue(ev_aco_t *a, eventer_aco_gate_t gate,
                            const ev_aco_job_spec_t *spec) {
  ev_aco_job_t *j = malloc(sizeof(*j));
  if (!j) {
    errno = ENOMEM;
    return -1;
  }
  *j = (ev_aco_job_t){.waiter = gate ? NULL : a,
                      .gate = gate,
                      .simple = spec->simple,
                      .func = spec->func,
                      .closure = spec->closure,
                      .user_e = spec->user_e};
  if (gate) gate->count++;
  if (ev_aco_job_submit(j, spec->q, spec->id, spec->deadline, spec->try_only) != 0) {
    int err = errno;
    if (gate) gate->count--; /* undo; the caller's gate stays theirs */
    free(j);
    errno = err;
    return -1;
  }
  return 0;
}

int ev_aco_job_begin(ev_aco_t *a, const ev_aco_job_spec_t *spec, int64_t *rv) {
  if (ev_aco_job_queue(a, NULL, spec) != 0) {
    *rv = -1;
    return EV_OP_DONE;
  }
  /* not cancellable: the job refers to the waiter until its COMPLETE */
  a->aux = 0;
  int w = ev_aco_wait_begin(a, NULL, 0, EV_WAIT_PLAIN);
  EV_ASSERT(w == EV_WAKE_NONE, "a job wait starts waiting");
  return EV_OP_WAITING;
}

int64_t ev_aco_job_end(ev_aco_t *a, int wake) {
  EV_ASSERT(wake == EV_WAKE_READY && a->aux != 0,
            "a job wait ends only by its COMPLETE");
  int how = a->aux;
  a->aux = 0;
  if (how == EV_JOB_WORKED) return 0;
  errno = how == EV_JOB_SKIPPED_DEADLINE ? ETIMEDOUT : ESHUTDOWN;
  return -1;
}

/* A job run to its end by the calling coroutine: 0, or -1 with errno.
 * *queued: it was queued (and so has run to its COMPLETE). */
static int ev_aco_job_run(const ev_aco_job_spec_t *spec, int *queued) {
  ev_aco_t *a = ev_aco_self();
  *queued = 0;
  if (!a) {
    errno = EINVAL;
    return -1;
  }
  int64_t rv;
  if (ev_aco_job_begin(a, spec, &rv) == EV_OP_WAITING) {
    *queued = 1;
    rv = ev_aco_job_end(a, ev_aco_wait_yield(a));
  }
  return (int)rv;
}

/* A gated job.  0, or -1 with errno (not queued). */
static int ev_aco_job_gated(eventer_aco_gate_t gate,
                            const ev_aco_job_spec_t *spec) {
  ev_aco_t *a = ev_aco_self();
  if (!a || !gate) {
    errno = EINVAL;
    return -1;
  }
  return ev_aco_job_queue(a, gate, spec);
}

static struct timeval *ev_aco_event_deadline(eventer_t e, struct timeval *buf) {
  if (!e || (e->whence.tv_sec == 0 && e->whence.tv_usec == 0)) return NULL;
  *buf = e->whence;
  return buf;
}

void eventer_aco_simple_asynch_queue_subqueue(eventer_asynch_simple_func_t func,
                                              void *closure, eventer_jobq_t *q,
                                              uint64_t id) {
  ev_aco_job_spec_t s = {.simple = func, .closure = closure, .q = q, .id = id};
  int queued;
  if (ev_aco_job_run(&s, &queued) != 0)
    mtevL(eventer_err, "eventer_aco_simple_asynch: %s\n", strerror(errno));
}

void eventer_aco_simple_asynch_queue_subqueue_gated(
    eventer_aco_gate_t gate, eventer_asynch_simple_func_t func, void *closure,
    eventer_jobq_t *q, uint64_t id) {
  ev_aco_job_spec_t s = {.simple = func, .closure = closure, .q = q, .id = id};
  if (ev_aco_job_gated(gate, &s) != 0)
    mtevL(eventer_err, "eventer_aco_simple_asynch_gated: %s\n",
          strerror(errno));
}

void eventer_aco_asynch_queue_subqueue_deadline(eventer_asynch_func_t func,
                                                void *closure,
                                                eventer_jobq_t *q, uint64_t id,
                                                struct timeval *whence) {
  ev_aco_job_spec_t s = {
      .func = func, .closure = closure, .q = q, .id = id, .deadline = whence};
  int queued;
  /* WORK skipped for the deadline is the deadline doing its job */
  if (ev_aco_job_run(&s, &queued) != 0 && errno != ETIMEDOUT)
    mtevL(eventer_err, "eventer_aco_asynch: %s\n", strerror(errno));
}

void eventer_aco_asynch_queue_subqueue_deadline_gated(
    eventer_aco_gate_t gate, eventer_asynch_func_t func, void *closure,
    eventer_jobq_t *q, uint64_t id, struct timeval *whence) {
  ev_aco_job_spec_t s = {
      .func = func, .closure = closure, .q = q, .id = id, .deadline = whence};
  if (ev_aco_job_gated(gate, &s) != 0)
    mtevL(eventer_err, "eventer_aco_asynch_gated: %s\n", strerror(errno));
}

/* The front of run_asynch and its variants: e is checked, then run (gate
 * NULL: waited for) or counted on gate.  0, or -1 with errno.  Who holds
 * e afterwards is decided by the path taken, never by errno: *owner is
 * EV_E_CALLER when e was refused (bad arguments, not in a coroutine, a
 * refused try), EV_E_JOB when a job took it (it frees e at its COMPLETE),
 * EV_E_NOBODY when the eventer took it over but could not queue it. */
enum { EV_E_CALLER, EV_E_JOB, EV_E_NOBODY };
static int ev_aco_run_asynch(eventer_aco_gate_t gate, eventer_jobq_t *q,
                             eventer_t e, uint64_t id, int try, int *owner) {
  *owner = EV_E_CALLER;
  if (!e || e->mask != EVENTER_ASYNCH || !e->callback || !ev_aco_self()) {
    errno = EINVAL;
    return -1;
  }
  struct timeval dl;
  ev_aco_job_spec_t s = {.user_e = e,
                         .q = q,
                         .id = id,
                         .deadline = ev_aco_event_deadline(e, &dl),
                         .try_only = try};
  int rc, queued;
  if (gate) {
    rc = ev_aco_job_gated(gate, &s);
    queued = rc == 0;
  } else {
    rc = ev_aco_job_run(&s, &queued);
  }
  *owner = queued ? EV_E_JOB : try ? EV_E_CALLER : EV_E_NOBODY;
  return rc;
}

/* A failed run_asynch: say so, and free e if the eventer took it over and
 * no job has it. */
static void ev_aco_run_asynch_failed(const char *what, eventer_t e,
                                     int owner) {
  int err = errno;
  if (err != ETIMEDOUT) /* WORK skipped for the deadline is no error */
    mtevL(eventer_err, "%s: %s\n", what, strerror(err));
  if (owner == EV_E_NOBODY) eventer_free(e);
}

void eventer_aco_run_asynch_queue_subqueue(eventer_jobq_t *q, eventer_t e,
                                           uint64_t id) {
  int owner;
  if (ev_aco_run_asynch(NULL, q, e, id, 0, &owner) != 0)
    ev_aco_run_asynch_failed("eventer_aco_run_asynch", e, owner);
}

void eventer_aco_run_asynch_queue_subqueue_gated(eventer_aco_gate_t gate,
                                                 eventer_jobq_t *q,
                                                 eventer_t e, uint64_t id) {
  int owner;
  if (!gate) {
    mtevL(eventer_err, "eventer_aco_run_asynch_gated: NULL gate\n");
    return;
  }
  if (ev_aco_run_asynch(gate, q, e, id, 0, &owner) != 0)
    ev_aco_run_asynch_failed("eventer_aco_run_asynch_gated", e, owner);
}

mtev_boolean eventer_aco_try_run_asynch_queue_subqueue(eventer_jobq_t *q,
                                                       eventer_t e,
                                                       uint64_t id) {
  int owner;
  ev_aco_run_asynch(NULL, q, e, id, 1, &owner);
  /* queued (whether WORK then ran or its deadline passed): the job had e */
  return owner == EV_E_JOB ? mtev_true : mtev_false;
}

mtev_boolean eventer_aco_try_run_asynch_queue_subqueue_gated(
    eventer_aco_gate_t gate, eventer_jobq_t *q, eventer_t e, uint64_t id) {
  int owner;
  if (!gate) {
    errno = EINVAL;
    return mtev_false;
  }
  return ev_aco_run_asynch(gate, q, e, id, 1, &owner) == 0 ? mtev_true
                                                           : mtev_false;
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

/* ---- the layer --------------------------------------------------------------------- */

static const ev_layer_t ev_aco_layer = {
    .name = "aco",
    .event_free = ev_aco_event_free,
    .event_copy = ev_aco_fd_event_copy,
    .loop_fini = ev_aco_loop_fini,
    .task_discard = ev_aco_xtask_discard,
};

__attribute__((constructor)) static void ev_aco_layer_register(void) {
  ev_layer_register(&ev_aco_layer);
}
