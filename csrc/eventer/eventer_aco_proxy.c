/*
 * eventer_aco_proxy.c - proxies that wait in C for foreign coroutines, the
 * foreign driver's wake-up, and foreign callback closures.  See
 * eventer_aco_proxy.h.
 */
#include "eventer_aco_proxy.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "eventer_aco_impl.h"

/* ---- proxies ---------------------------------------------------------------- */

enum { /* the pending call */
  EV_PX_NONE = 0,
  EV_PX_WAIT,
  EV_PX_SLEEP,
  EV_PX_PARK,
  EV_PX_SYNC,
  EV_PX_ASYNCH
};

struct eventer_aco_proxy {
  ev_aco_t a;               /* waits in the loop's queues in the foreign
                             * coroutine's place (a.u.loop: its loop) */
  uint64_t foreign_id;
  eventer_task_t emit_task; /* a completion that found the step slot taken */
  int64_t result;           /* the last result (DONE, or in emit_task) */
  int err;
  uint8_t call;             /* EV_PX_*: pending since its start */
  uint8_t emit_pending;     /* emit_task is queued */
  uint8_t sync_kind;        /* EV_PX_SYNC: EVENTER_PROXY_SEM_WAIT, ... */
  int mask;                 /* EV_PX_WAIT */
  size_t read_len;          /* EV_PX_WAIT: read this much once ready */
  eventer_t e;              /* EV_PX_WAIT */
  void *obj, *elem;         /* EV_PX_SYNC */
};

static eventer_aco_proxy_t *ev_proxy_of(ev_aco_t *a) {
  return EV_CONTAINER_OF(a, eventer_aco_proxy_t, a);
}

static void ev_proxy_fill_step(eventer_aco_proxy_t *p, eventer_step_t *s) {
  s->kind = EVENTER_STEP_ACO_PROXY;
  s->closure = p;
  s->u64[0] = p->foreign_id;
  s->u64[1] = (uint64_t)p->result;
  s->u64[2] = (uint64_t)(int64_t)p->err;
}

static void ev_proxy_emit_task(eventer_task_t *t, struct timeval *now) {
  (void)now;
  eventer_aco_proxy_t *p = EV_CONTAINER_OF(t, eventer_aco_proxy_t, emit_task);
  p->emit_pending = 0;
  eventer_step_t *s = eventer_step_emit();
  EV_ASSERT(s != NULL,
            "a proxy completion is handed to a driver that runs "
            "eventer_run_once with a step buffer");
  ev_proxy_fill_step(p, s);
}

/* Reports a completion: as a step of the current run_once if the slot is
 * free, else from the next task phase. */
static void ev_proxy_emit(eventer_aco_proxy_t *p) {
  eventer_step_t *s = eventer_step_emit();
  if (s) {
    ev_proxy_fill_step(p, s);
    return;
  }
  p->emit_pending = 1;
  p->emit_task.run = ev_proxy_emit_task;
  eventer_task_post(&p->emit_task);
}

/* The loop thread's read-through buffer (EVENTER_STEP_ACO_PROXY_DATA). */
#define EV_PROXY_SCRATCH_MAX (64 * 1024)
static __thread char *ev_proxy_scratch;
/* frees a thread's buffer when the thread exits */
static pthread_key_t ev_proxy_scratch_key;
static pthread_once_t ev_proxy_scratch_once = PTHREAD_ONCE_INIT;
static void ev_proxy_scratch_key_init(void) {
  (void)pthread_key_create(&ev_proxy_scratch_key, free);
}

/* A read wait ended ready: read right away, in this callback, and hand the
 * bytes to the driver with the completion - the foreign side then need not
 * call back into C to read.  Only when the driver's step slot is free now
 * (the driver copies the bytes out before it calls run_once again, so the
 * scratch buffer is never overwritten early).  Returns 1 if the completion
 * was handed over. */
static int ev_proxy_read_through(eventer_aco_proxy_t *p) {
  if (p->call != EV_PX_WAIT || p->result != 0 || p->read_len == 0 ||
      !(p->mask & EVENTER_READ))
    return 0;
  size_t n = p->read_len < EV_PROXY_SCRATCH_MAX ? p->read_len
                                                : EV_PROXY_SCRATCH_MAX;
  if (!ev_proxy_scratch) {
    char *b = malloc(EV_PROXY_SCRATCH_MAX);
    if (!b) return 0;
    ev_proxy_scratch = b;
    pthread_once(&ev_proxy_scratch_once, ev_proxy_scratch_key_init);
    (void)pthread_setspecific(ev_proxy_scratch_key, b);
  }
  eventer_step_t *s = eventer_step_emit();
  if (!s) return 0;
  int mask = 0;
  int rv = ev_aco_fd_try(p->e, EV_ACO_TRY_READ, ev_proxy_scratch, n, NULL,
                         NULL, &mask);
  int err = rv < 0 ? errno : 0;
  if (rv < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
    ev_proxy_fill_step(p, s); /* spurious: result 0, the driver retries */
    return 1;
  }
  s->kind = EVENTER_STEP_ACO_PROXY_DATA;
  s->closure = ev_proxy_scratch;
  s->u64[0] = p->foreign_id;
  s->u64[1] = (uint64_t)(int64_t)rv;
  s->u64[2] = (uint64_t)(int64_t)err;
  return 1;
}

/* The end of p's pending call, after its wait ended for `wake`: the result
 * in p->result/err.  The call stays recorded (read-through looks at it);
 * the caller clears it. */
static void ev_proxy_end(eventer_aco_proxy_t *p, int wake) {
  ev_aco_t *a = &p->a;
  int64_t rv = -1;
  switch (p->call) {
  case EV_PX_WAIT:
    rv = ev_aco_fd_wait_end(a, p->e, wake);
    break;
  case EV_PX_SLEEP:
    rv = ev_aco_sleep_end(wake);
    break;
  case EV_PX_PARK:
    rv = ev_aco_park_end(wake);
    break;
  case EV_PX_SYNC:
    rv = ev_aco_sync_end(a, p->sync_kind, p->obj, p->elem, wake);
    break;
  case EV_PX_ASYNCH:
    rv = ev_aco_job_end(a, wake);
    break;
  default:
    EV_ASSERT(0, "a proxy's wait ends only while one of its calls waits");
  }
  p->result = rv;
  p->err = rv < 0 ? errno : 0;
}

void ev_aco_proxy_resume(ev_aco_t *a) {
  eventer_aco_proxy_t *p = ev_proxy_of(a);
  int wake = ev_aco_wait_end(a);
  mtevL(eventer_deb,
        "eventer_aco: resume %p (proxy of foreign coroutine %llu, wait "
        "ended: %d): 0 stack bytes copied (a proxy has no stack)\n",
        (void *)p, (unsigned long long)p->foreign_id, wake);
  /* a read-through reads e after the wait's end dropped its reference */
  eventer_t e = p->call == EV_PX_WAIT ? p->e : NULL;
  if (e) eventer_ref(e);
  ev_proxy_end(p, wake);
  if (!ev_proxy_read_through(p)) ev_proxy_emit(p);
  p->call = EV_PX_NONE;
  if (e) eventer_deref(e);
}

/* The proxy may start a call now: 0, or -1 with errno (MISUSE). */
static int ev_proxy_check(eventer_aco_proxy_t *p) {
  if (!p) {
    errno = EINVAL;
    return -1;
  }
  if (ev_loop_self() != p->a.u.loop) {
    errno = EPERM; /* not the proxy's loop thread */
    return -1;
  }
  if (aco_current() != NULL) {
    errno = EDEADLK; /* inside a coroutine: a callback C called from one */
    return -1;
  }
  if (p->call != EV_PX_NONE || p->emit_pending) {
    errno = EBUSY;
    return -1;
  }
  return 0;
}

/* The protocol result of a call's start. */
static int ev_proxy_started(eventer_aco_proxy_t *p, int call, int op,
                            int64_t rv) {
  if (op == EV_OP_WAITING) {
    p->call = (uint8_t)call;
    return EVENTER_PROXY_PARKED;
  }
  p->result = rv;
  p->err = rv < 0 ? errno : 0;
  return EVENTER_PROXY_DONE;
}

eventer_aco_proxy_t *eventer_aco_proxy_new(uint64_t foreign_id) {
  if (!ev_loop_self()) {
    errno = EINVAL;
    return NULL;
  }
  eventer_aco_proxy_t *p = calloc(1, sizeof(*p));
  if (!p) {
    errno = ENOMEM;
    return NULL;
  }
  if (ev_aco_proxy_waiter_init(&p->a) != 0) {
    int err = errno;
    free(p);
    errno = err;
    return NULL;
  }
  p->foreign_id = foreign_id;
  return p;
}

int eventer_aco_proxy_free(eventer_aco_proxy_t *p) {
  if (!p) return 0;
  if (ev_loop_self() != p->a.u.loop || aco_current() != NULL) {
    errno = EINVAL;
    return -1;
  }
  if (eventer_aco_proxy_busy(p)) {
    errno = EBUSY;
    return -1;
  }
  ev_aco_proxy_waiter_fini(&p->a);
  free(p);
  return 0;
}

int eventer_aco_proxy_wait(eventer_aco_proxy_t *p, eventer_t e, int mask,
                           size_t read_len, const struct timeval *timeout) {
  if (ev_proxy_check(p) != 0) return EVENTER_PROXY_MISUSE;
  int64_t rv;
  p->e = e;
  p->mask = mask;
  p->read_len = read_len;
  int op = ev_aco_fd_wait_begin(&p->a, e, mask, ev_aco_deadline(timeout), &rv);
  return ev_proxy_started(p, EV_PX_WAIT, op, rv);
}

int eventer_aco_proxy_sleep(eventer_aco_proxy_t *p,
                            const struct timeval *duration) {
  if (ev_proxy_check(p) != 0) return EVENTER_PROXY_MISUSE;
  int64_t rv;
  int op = ev_aco_sleep_begin(&p->a, duration, &rv);
  return ev_proxy_started(p, EV_PX_SLEEP, op, rv);
}

int eventer_aco_proxy_yield(eventer_aco_proxy_t *p) {
  if (ev_proxy_check(p) != 0) return EVENTER_PROXY_MISUSE;
  int64_t rv;
  int op = ev_aco_yield_begin(&p->a, &rv);
  /* a yield ends as a zero sleep does */
  return ev_proxy_started(p, EV_PX_SLEEP, op, rv);
}

int eventer_aco_proxy_park(eventer_aco_proxy_t *p,
                           const struct timeval *timeout) {
  if (ev_proxy_check(p) != 0) return EVENTER_PROXY_MISUSE;
  int64_t rv;
  int op = ev_aco_park_begin(&p->a, timeout, &rv);
  return ev_proxy_started(p, EV_PX_PARK, op, rv);
}

int eventer_aco_proxy_sync(eventer_aco_proxy_t *p, int kind, void *obj,
                           void *elem, const struct timeval *timeout) {
  /* the proxy's kinds are the internal ones */
  _Static_assert((int)EVENTER_PROXY_SEM_WAIT == (int)EV_SYNC_SEM_WAIT &&
                     (int)EVENTER_PROXY_MUTEX_LOCK == (int)EV_SYNC_MUTEX_LOCK &&
                     (int)EVENTER_PROXY_MUTEX_TRYLOCK ==
                         (int)EV_SYNC_MUTEX_TRYLOCK &&
                     (int)EVENTER_PROXY_MUTEX_UNLOCK ==
                         (int)EV_SYNC_MUTEX_UNLOCK &&
                     (int)EVENTER_PROXY_WG_WAIT == (int)EV_SYNC_WG_WAIT &&
                     (int)EVENTER_PROXY_CHAN_SEND == (int)EV_SYNC_CHAN_SEND &&
                     (int)EVENTER_PROXY_CHAN_RECV == (int)EV_SYNC_CHAN_RECV,
                 "proxy sync kinds are ev_aco_sync kinds");
  if (ev_proxy_check(p) != 0) return EVENTER_PROXY_MISUSE;
  int64_t rv;
  p->sync_kind = (uint8_t)kind;
  p->obj = obj;
  p->elem = elem;
  int op = ev_aco_sync_begin(&p->a, kind, obj, elem, ev_aco_deadline(timeout),
                             &rv);
  return ev_proxy_started(p, EV_PX_SYNC, op, rv);
}

int eventer_aco_proxy_asynch(eventer_aco_proxy_t *p,
                             eventer_asynch_simple_func_t fn, void *closure,
                             eventer_jobq_t *q, uint64_t subq) {
  if (ev_proxy_check(p) != 0) return EVENTER_PROXY_MISUSE;
  if (!fn) {
    errno = EINVAL;
    return ev_proxy_started(p, EV_PX_ASYNCH, EV_OP_DONE, -1);
  }
  ev_aco_job_spec_t spec = {.simple = fn, .closure = closure, .q = q,
                            .id = subq};
  int64_t rv;
  int op = ev_aco_job_begin(&p->a, &spec, &rv);
  return ev_proxy_started(p, EV_PX_ASYNCH, op, rv);
}

int64_t eventer_aco_proxy_result(eventer_aco_proxy_t *p, int *err) {
  if (err) *err = p ? p->err : EINVAL;
  return p ? p->result : -1;
}

int eventer_aco_proxy_cancel(eventer_aco_proxy_t *p) {
  if (!p || ev_loop_self() != p->a.u.loop) {
    errno = p ? EPERM : EINVAL;
    return -1;
  }
  if (p->call == EV_PX_NONE || p->a.state != EV_ACO_PARKED ||
      p->a.wait_kind < EV_WAIT_CANCELLABLE) {
    errno = EAGAIN;
    return -1;
  }
  ev_aco_wake(&p->a, EV_WAKE_CANCEL); /* as eventer_aco_cancel does */
  return 0;
}

int eventer_aco_proxy_wake(eventer_aco_proxy_t *p) {
  if (!p || ev_loop_self() != p->a.u.loop) {
    errno = p ? EPERM : EINVAL;
    return -1;
  }
  if (p->call != EV_PX_PARK || p->a.state != EV_ACO_PARKED) {
    errno = EAGAIN;
    return -1;
  }
  ev_aco_wake(&p->a, EV_WAKE_READY);
  return 0;
}

int eventer_aco_proxy_abort(eventer_aco_proxy_t *p) {
  if (!p || ev_loop_self() != p->a.u.loop || aco_current() != NULL) {
    errno = EINVAL;
    return -1;
  }
  if (p->emit_pending) { /* over already: forget the completion */
    ev_fifo_unlink(p->a.u.loop, &p->emit_task);
    p->emit_pending = 0;
  }
  if (p->call == EV_PX_NONE) return 0;
  if (p->call == EV_PX_ASYNCH) {
    errno = EBUSY;
    return -1;
  }
  ev_aco_t *a = &p->a;
  if (a->state == EV_ACO_PARKED) { /* as a cancel would end it, now */
    ev_aco_unlink(&a->link);
    a->wake = EV_WAKE_CANCEL;
    a->state = EV_ACO_RUNNABLE;
  }
  /* RUNNABLE: its end was scheduled; it runs now instead (what it was
   * granted is taken, as its end would have) */
  ev_proxy_end(p, ev_aco_wait_end(a));
  p->call = EV_PX_NONE;
  return 0;
}

int eventer_aco_proxy_busy(const eventer_aco_proxy_t *p) {
  /* a completion still on its way to the driver counts as busy too */
  return p && (p->call != EV_PX_NONE || p->emit_pending);
}

void ev_aco_proxy_fini(ev_aco_t *a) {
  eventer_aco_proxy_t *p = ev_proxy_of(a);
  if (p->emit_pending) ev_fifo_unlink(a->u.loop, &p->emit_task);
  /* a readiness wait already ended, not yet reported, still holds its
   * event (one that still waits was released with the fd table) */
  if (p->call == EV_PX_WAIT && a->state == EV_ACO_RUNNABLE)
    eventer_deref(p->e);
  free(p);
}

/* ---- the foreign driver's wake-up ------------------------------------------- */

typedef struct ev_foreign_wake {
  eventer_task_t task;
  int posted; /* __atomic */
} ev_foreign_wake_t;

/* one slot per loop of the default pool, made by eventer_foreign_reset */
static struct {
  ev_foreign_wake_t *slots; /* __atomic */
  int n;                    /* __atomic */
} ev_foreign_wakes;
static pthread_mutex_t ev_foreign_wakes_lock = PTHREAD_MUTEX_INITIALIZER;

static void ev_foreign_wake_run(eventer_task_t *t, struct timeval *now) {
  (void)now;
  ev_foreign_wake_t *w = EV_CONTAINER_OF(t, ev_foreign_wake_t, task);
  __atomic_exchange_n(&w->posted, 0, __ATOMIC_ACQ_REL);
  eventer_step_t *s = eventer_step_emit();
  if (s) s->kind = EVENTER_STEP_FOREIGN_WAKE;
}

int eventer_foreign_reset(void) {
  eventer_pool_t *pool = eventer_pool("default");
  if (!pool) {
    errno = ENXIO;
    return -1;
  }
  int n = (int)eventer_pool_concurrency(pool);
  ev_foreign_wake_t *slots = calloc((size_t)n, sizeof(*slots));
  if (!slots) {
    errno = ENOMEM;
    return -1;
  }
  /* the loops these were for are gone (eventer_fini): so are their wakes */
  pthread_mutex_lock(&ev_foreign_wakes_lock);
  ev_foreign_wake_t *old = ev_foreign_wakes.slots;
  __atomic_store_n(&ev_foreign_wakes.n, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&ev_foreign_wakes.slots, slots, __ATOMIC_RELEASE);
  __atomic_store_n(&ev_foreign_wakes.n, n, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&ev_foreign_wakes_lock);
  free(old);
  return 0;
}

int eventer_foreign_wake(eventer_loop_t *loop) {
  if (!loop) {
    errno = EINVAL;
    return -1;
  }
  int idx = eventer_loop_index(loop);
  int n = __atomic_load_n(&ev_foreign_wakes.n, __ATOMIC_ACQUIRE);
  if (eventer_loop_pool(loop) != eventer_pool("default") || idx < 0 ||
      idx >= n) {
    errno = EINVAL;
    return -1;
  }
  ev_foreign_wake_t *w =
      &__atomic_load_n(&ev_foreign_wakes.slots, __ATOMIC_ACQUIRE)[idx];
  if (__atomic_exchange_n(&w->posted, 1, __ATOMIC_ACQ_REL)) return 0;
  w->task.run = ev_foreign_wake_run;
  /* from the loop's own thread: its FIFO, no eventfd write */
  int rc = loop == ev_loop_self() ? eventer_task_post(&w->task)
                                  : eventer_task_post_to(loop, &w->task);
  if (rc != 0) {
    __atomic_store_n(&w->posted, 0, __ATOMIC_RELEASE);
    return -1;
  }
  return 0;
}

/* ---- foreign callback closures --------------------------------------------------- */

typedef struct ev_foreign_box {
  uint64_t id;
  int refs; /* __atomic */
} ev_foreign_box_t;

static pthread_mutex_t ev_dead_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *ev_dead_ids;
static size_t ev_dead_len, ev_dead_cap;

static int ev_foreign_owns(eventer_t e) {
  return e->closure != NULL && ev_callback_foreign_boxed(e->callback);
}

void *eventer_foreign_closure_new(uint64_t id) {
  ev_foreign_box_t *b = malloc(sizeof(*b));
  if (!b) return NULL;
  b->id = id;
  b->refs = 1;
  return b;
}

uint64_t eventer_foreign_closure_id(void *closure) {
  return closure ? ((ev_foreign_box_t *)closure)->id : 0;
}

static void ev_foreign_box_release(ev_foreign_box_t *b) {
  if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  pthread_mutex_lock(&ev_dead_lock);
  if (ev_dead_len == ev_dead_cap) {
    size_t ncap = ev_dead_cap ? ev_dead_cap * 2 : 64;
    uint64_t *n = realloc(ev_dead_ids, ncap * sizeof(*n));
    if (n) {
      ev_dead_ids = n;
      ev_dead_cap = ncap;
    }
  }
  if (ev_dead_len < ev_dead_cap) ev_dead_ids[ev_dead_len++] = b->id;
  pthread_mutex_unlock(&ev_dead_lock);
  free(b);
}

int eventer_foreign_dead_ids(uint64_t *out, int n) {
  if (!out || n <= 0) return 0;
  pthread_mutex_lock(&ev_dead_lock);
  int k = 0;
  while (k < n && ev_dead_len > 0) out[k++] = ev_dead_ids[--ev_dead_len];
  pthread_mutex_unlock(&ev_dead_lock);
  return k;
}

static void ev_foreign_event_free(eventer_t e) {
  if (ev_foreign_owns(e)) ev_foreign_box_release(e->closure);
}

static void ev_foreign_event_copy(eventer_t dst, eventer_t src) {
  (void)src;
  if (ev_foreign_owns(dst))
    __atomic_fetch_add(&((ev_foreign_box_t *)dst->closure)->refs, 1,
                       __ATOMIC_RELAXED);
}

int eventer_foreign_callback_register(eventer_func_t f) {
  return ev_callback_set_foreign(f, 1);
}

static const ev_layer_t ev_foreign_layer = {
    .name = "foreign",
    .event_free = ev_foreign_event_free,
    .event_copy = ev_foreign_event_copy,
};

__attribute__((constructor)) static void ev_foreign_layer_register(void) {
  ev_layer_register(&ev_foreign_layer);
}

void eventer_call_on_thread_stack(void (*fn)(void *), void *arg) {
  aco_t *co = aco_current();
  if (co) {
    /* Called by a function an outer call already runs on the thread
     * stack: run fn right here.  Switching again would start fn's frames
     * where the outer function's frames are and overwrite them. */
    const char *sp = (const char *)__builtin_frame_address(0);
    const char *lo = (const char *)co->share_stack->ptr;
    if (sp < lo || sp >= lo + co->share_stack->sz) {
      fn(arg);
      return;
    }
  }
  aco_call_on_main_stack(fn, arg);
}
