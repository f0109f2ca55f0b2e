/*
 * eventer_aco_proxy.c - proxies that run eventer_aco_* calls for foreign
 * coroutines, the foreign driver's wake-up, and foreign callback closures.
 * See eventer_aco_proxy.h.
 */
#include "eventer_aco_proxy.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "eventer_aco_impl.h"

/* ---- proxies ---------------------------------------------------------------- */

struct eventer_aco_proxy {
  eventer_aco_proxy_op_t op;
  uint64_t foreign_id;
  ev_loop_t *loop;
  ev_aco_t *a;          /* the proxy coroutine, NULL before first use */
  eventer_aco_co_t *h;  /* its handle (held) */
  eventer_task_t emit_task; /* completion that found the step slot taken */
  uint8_t busy;         /* an operation runs or is parked */
  uint8_t sync;         /* eventer_aco_proxy_run is on the stack */
  uint8_t quit;         /* end the coroutine at its next turn */
  uint8_t emit_pending; /* emit_task is queued */
  uint8_t prewait;      /* op is a WAIT set up by eventer_aco_proxy_wait */
};

static void ev_proxy_fill_step(eventer_aco_proxy_t *p, eventer_step_t *s) {
  s->kind = EVENTER_STEP_ACO_PROXY;
  s->closure = p;
  s->u64[0] = p->foreign_id;
  s->u64[1] = (uint64_t)p->op.result;
  s->u64[2] = (uint64_t)(int64_t)p->op.err;
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

/* Reports a completion that happened while parked: as a step of the
 * current run_once if the slot is free, else from the next task phase. */
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

static int ev_proxy_result(eventer_aco_proxy_op_t *op, int64_t rv) {
  op->result = rv;
  op->err = rv < 0 ? errno : 0;
  return 0;
}

static void ev_proxy_exec(eventer_aco_proxy_t *p) {
  eventer_aco_proxy_op_t *op = &p->op;
  struct timeval *tmo = op->has_timeout ? &op->timeout : NULL;
  eventer_aco_t ae = (eventer_aco_t)op->e;
  errno = 0;
  switch (op->op) {
  case EVENTER_PROXY_READ:
    ev_proxy_result(op, eventer_aco_read(ae, op->buf, op->len, tmo));
    break;
  case EVENTER_PROXY_WRITE:
    ev_proxy_result(op, eventer_aco_write(ae, op->buf, op->len, tmo));
    break;
  case EVENTER_PROXY_ACCEPT:
    op->addrlen = sizeof(op->addr);
    ev_proxy_result(op, eventer_aco_accept(ae, (struct sockaddr *)&op->addr,
                                           &op->addrlen, tmo));
    break;
  case EVENTER_PROXY_CONNECT:
    ev_proxy_result(op, eventer_aco_connect(ae, (struct sockaddr *)&op->addr,
                                            op->addrlen, tmo));
    break;
  case EVENTER_PROXY_CLOSE:
    ev_proxy_result(op, eventer_aco_close(ae));
    break;
  case EVENTER_PROXY_CONVERT:
    ev_proxy_result(op, eventer_set_eventer_aco(op->e) ? 0 : -1);
    break;
  case EVENTER_PROXY_WAIT:
    ev_proxy_result(op, eventer_aco_wait_ready(ae, op->mask, tmo));
    break;
  case EVENTER_PROXY_SLEEP:
    ev_proxy_result(op, eventer_aco_sleep(tmo));
    break;
  case EVENTER_PROXY_YIELD:
    ev_proxy_result(op, eventer_aco_yield());
    break;
  case EVENTER_PROXY_PARK:
    ev_proxy_result(op, eventer_aco_park(tmo));
    break;
  case EVENTER_PROXY_JOIN:
    ev_proxy_result(op, eventer_aco_join(op->obj, tmo));
    break;
  case EVENTER_PROXY_ASYNCH:
    eventer_aco_simple_asynch_queue_subqueue(op->fn, op->fn_closure, op->q,
                                             op->subq);
    ev_proxy_result(op, 0);
    break;
  case EVENTER_PROXY_CALL:
    if (!op->call) {
      errno = EINVAL;
      ev_proxy_result(op, -1);
    } else {
      ev_proxy_result(op, op->call(op->obj, op));
    }
    break;
  default:
    errno = EINVAL;
    ev_proxy_result(op, -1);
    break;
  }
}

/* The loop thread's read-through buffer (EVENTER_STEP_ACO_PROXY_DATA). */
#define EV_PROXY_SCRATCH_MAX (64 * 1024)
static __thread char *ev_proxy_scratch;
static __thread size_t ev_proxy_scratch_cap;
/* frees a thread's buffer when the thread exits */
static pthread_key_t ev_proxy_scratch_key;
static pthread_once_t ev_proxy_scratch_once = PTHREAD_ONCE_INIT;
static void ev_proxy_scratch_key_init(void) {
  (void)pthread_key_create(&ev_proxy_scratch_key, free);
}

/* A WAIT for readability ended: read right away, in this callback, and
 * hand the bytes to the driver with the completion - the foreign side
 * then need not call back into C to read.  Only when the driver's step
 * slot is free now (the driver copies the bytes out before it calls
 * run_once again, so the scratch buffer is never overwritten early).
 * Returns 1 if the completion was handed over. */
static int ev_proxy_read_through(eventer_aco_proxy_t *p) {
  eventer_aco_proxy_op_t *op = &p->op;
  if (op->op != EVENTER_PROXY_WAIT || op->result != 0 || op->read_len == 0 ||
      !(op->mask & EVENTER_READ) || p->emit_pending)
    return 0;
  size_t n = op->read_len < EV_PROXY_SCRATCH_MAX ? op->read_len
                                                  : EV_PROXY_SCRATCH_MAX;
  if (ev_proxy_scratch_cap < n) {
    char *b = realloc(ev_proxy_scratch, EV_PROXY_SCRATCH_MAX);
    if (!b) return 0;
    ev_proxy_scratch = b;
    ev_proxy_scratch_cap = EV_PROXY_SCRATCH_MAX;
    pthread_once(&ev_proxy_scratch_once, ev_proxy_scratch_key_init);
    (void)pthread_setspecific(ev_proxy_scratch_key, b);
  }
  eventer_step_t *s = eventer_step_emit();
  if (!s) return 0;
  int mask = 0;
  int rv = ev_aco_fd_try(op->e, EV_ACO_TRY_READ, ev_proxy_scratch, n, NULL,
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

/* ev_aco_prewait_hook: the pre-wait of proxy coroutine a ended (a stays
 * parked idle); report the completion as ev_proxy_main would have. */
static void ev_proxy_prewait_done(ev_aco_t *a) {
  eventer_aco_proxy_t *p = ev_aco_co(a)->arg;
  EV_ASSERT(p->prewait && p->busy, "a pre-wait hook runs for a pending pre-wait");
  p->prewait = 0;
  int err = 0;
  p->op.result = ev_aco_fd_prewait_done(a, p->op.e, &err);
  p->op.err = p->op.result < 0 ? err : 0;
  p->busy = 0;
  if (!ev_proxy_read_through(p)) ev_proxy_emit(p);
}

static void ev_proxy_main(void) {
  eventer_aco_proxy_t *p = eventer_aco_arg();
  ev_aco_t *a = ev_aco_self();
  while (!p->quit) {
    if (!p->busy) { /* resumed only to quit */
      ev_aco_park(a, NULL, 0, EV_WAIT_PLAIN);
      continue;
    }
    /* (a pre-wait ends in ev_proxy_prewait_done, without us) */
    ev_proxy_exec(p);
    p->busy = 0;
    if (!p->sync && !ev_proxy_read_through(p)) ev_proxy_emit(p);
    /* wait for the next operation: only eventer_aco_proxy_run wakes us */
    while (!p->busy && !p->quit) ev_aco_park(a, NULL, 0, EV_WAIT_PLAIN);
  }
}

/* ev_aco_proxy_fini_hook: the loop is going away with proxy coroutine a
 * still suspended (its foreign coroutine never ended): free the proxy.  The
 * foreign side must not use it any more (the Go driver has stopped). */
static void ev_proxy_fini(ev_aco_t *a) {
  eventer_aco_proxy_t *p = ev_aco_co(a)->arg;
  if (p->emit_pending) ev_fifo_unlink(p->loop, &p->emit_task);
  eventer_aco_co_release(p->h);
  free(p);
}

eventer_aco_proxy_t *eventer_aco_proxy_new(uint64_t foreign_id) {
  ev_loop_t *l = ev_loop_self();
  if (!l) {
    errno = EINVAL;
    return NULL;
  }
  eventer_aco_proxy_t *p = calloc(1, sizeof(*p));
  if (!p) {
    errno = ENOMEM;
    return NULL;
  }
  p->foreign_id = foreign_id;
  p->loop = l;
  /* the proxy's own stack: operations are shallow, 16 KiB is plenty, and
   * a separate share stack keeps user coroutines' bytes from being copied
   * out whenever a foreign coroutine does I/O.  Created now (not run), so
   * its handle exists for cancel and join from the start. */
  ev_aco_t *a = ev_aco_create(ev_proxy_main, p, 16 * 1024, 256, NULL,
                              EV_ACO_F_PROXY);
  if (!a) {
    int err = errno;
    free(p);
    errno = err;
    return NULL;
  }
  p->a = a;
  p->h = ev_aco_handle_of(a);
  eventer_aco_co_ref(p->h); /* ours, for cancel/join after it ends */
  ev_aco_prewait_hook = ev_proxy_prewait_done;
  ev_aco_proxy_fini_hook = ev_proxy_fini;
  /* run it to its idle park, where eventer_aco_proxy_wait finds it */
  if (aco_current() == NULL) ev_aco_resume(a);
  return p;
}

int eventer_aco_proxy_wait(eventer_aco_proxy_t *p, eventer_t e, int mask,
                           size_t read_len, const struct timeval *timeout) {
  if (!p) {
    errno = EINVAL;
    return -1;
  }
  if (ev_loop_self() != p->loop) {
    errno = EPERM;
    return -1;
  }
  if (aco_current() != NULL) {
    errno = EDEADLK;
    return -1;
  }
  if (p->busy || p->emit_pending) {
    errno = EBUSY;
    return -1;
  }
  if (p->a->state != EV_ACO_PARKED) { /* not idle yet: the general way */
    eventer_aco_proxy_op_t *o = &p->op;
    o->op = EVENTER_PROXY_WAIT;
    o->e = e;
    o->mask = mask;
    o->read_len = read_len;
    o->has_timeout = timeout != NULL;
    if (timeout) o->timeout = *timeout;
    return eventer_aco_proxy_run(p);
  }
  eventer_aco_proxy_op_t *o = &p->op;
  o->op = EVENTER_PROXY_WAIT;
  o->e = e;
  o->mask = mask;
  o->read_len = read_len;
  int err = 0;
  if (ev_aco_fd_prewait(p->a, e, mask, ev_aco_deadline(timeout), &err) != 0) {
    o->result = -1;
    o->err = err;
    return 1;
  }
  p->busy = 1;
  p->prewait = 1;
  return 0;
}

eventer_aco_proxy_op_t *eventer_aco_proxy_op(eventer_aco_proxy_t *p) {
  return p ? &p->op : NULL;
}

int eventer_aco_proxy_busy(const eventer_aco_proxy_t *p) {
  /* a completion still on its way to the driver counts as busy too */
  return p && (p->busy || p->emit_pending);
}

eventer_aco_co_t *eventer_aco_proxy_handle(eventer_aco_proxy_t *p) {
  return p ? p->h : NULL;
}

int eventer_aco_proxy_run(eventer_aco_proxy_t *p) {
  if (!p) {
    errno = EINVAL;
    return -1;
  }
  if (ev_loop_self() != p->loop) {
    errno = EPERM; /* not the proxy's loop thread */
    return -1;
  }
  if (aco_current() != NULL) {
    errno = EDEADLK; /* inside a coroutine: a callback C called from one */
    return -1;
  }
  if (p->busy || p->emit_pending) {
    errno = EBUSY;
    return -1;
  }
  p->busy = 1;
  p->sync = 1;
  if (p->a->state == EV_ACO_NEW)
    ev_aco_resume(p->a);
  else
    ev_aco_wake_now(p->a, EV_WAKE_READY);
  p->sync = 0;
  return p->busy ? 0 : 1;
}

int eventer_aco_proxy_free(eventer_aco_proxy_t *p) {
  if (!p) return 0;
  if (ev_loop_self() != p->loop || aco_current() != NULL) {
    errno = EINVAL;
    return -1;
  }
  if (p->busy || p->emit_pending) {
    errno = EBUSY;
    return -1;
  }
  p->quit = 1;
  /* it sees quit, returns and is reaped; its handle becomes done */
  if (p->a->state == EV_ACO_NEW)
    ev_aco_resume(p->a);
  else
    ev_aco_wake_now(p->a, EV_WAKE_READY);
  eventer_aco_co_release(p->h);
  free(p);
  return 0;
}

/* ---- the foreign driver's wake-up ------------------------------------------- */

typedef struct ev_foreign_wake {
  eventer_task_t task;
  int posted; /* __atomic */
} ev_foreign_wake_t;

#define EV_FOREIGN_MAX_LOOPS 256
static ev_foreign_wake_t ev_foreign_wakes[EV_FOREIGN_MAX_LOOPS];

static void ev_foreign_wake_run(eventer_task_t *t, struct timeval *now) {
  (void)now;
  ev_foreign_wake_t *w = EV_CONTAINER_OF(t, ev_foreign_wake_t, task);
  __atomic_exchange_n(&w->posted, 0, __ATOMIC_ACQ_REL);
  eventer_step_t *s = eventer_step_emit();
  if (s) s->kind = EVENTER_STEP_FOREIGN_WAKE;
}

void eventer_foreign_reset(void) {
  for (int i = 0; i < EV_FOREIGN_MAX_LOOPS; i++)
    __atomic_store_n(&ev_foreign_wakes[i].posted, 0, __ATOMIC_RELEASE);
}

int eventer_foreign_wake(eventer_loop_t *loop) {
  if (!loop) {
    errno = EINVAL;
    return -1;
  }
  /* one wake slot per loop of the default pool (the Go driver's) */
  int idx = eventer_loop_index(loop);
  if (eventer_loop_pool(loop) != eventer_pool("default") || idx < 0 ||
      idx >= EV_FOREIGN_MAX_LOOPS) {
    errno = EINVAL;
    return -1;
  }
  ev_foreign_wake_t *w = &ev_foreign_wakes[idx];
  if (__atomic_exchange_n(&w->posted, 1, __ATOMIC_ACQ_REL)) return 0;
  w->task.run = ev_foreign_wake_run;
  if (eventer_task_post_to(loop, &w->task) != 0) {
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

#define EV_FOREIGN_MAX_FUNCS 8
static eventer_func_t ev_foreign_funcs[EV_FOREIGN_MAX_FUNCS];
static int ev_foreign_nfuncs;
static pthread_mutex_t ev_foreign_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *ev_dead_ids;
static size_t ev_dead_len, ev_dead_cap;

static int ev_foreign_owns(eventer_t e) {
  eventer_func_t cb = e->callback;
  int n = __atomic_load_n(&ev_foreign_nfuncs, __ATOMIC_ACQUIRE);
  for (int i = 0; i < n; i++)
    if (ev_foreign_funcs[i] == cb) return e->closure != NULL;
  return 0;
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
  pthread_mutex_lock(&ev_foreign_lock);
  if (ev_dead_len == ev_dead_cap) {
    size_t ncap = ev_dead_cap ? ev_dead_cap * 2 : 64;
    uint64_t *n = realloc(ev_dead_ids, ncap * sizeof(*n));
    if (n) {
      ev_dead_ids = n;
      ev_dead_cap = ncap;
    }
  }
  if (ev_dead_len < ev_dead_cap) ev_dead_ids[ev_dead_len++] = b->id;
  pthread_mutex_unlock(&ev_foreign_lock);
  free(b);
}

int eventer_foreign_dead_ids(uint64_t *out, int n) {
  if (!out || n <= 0) return 0;
  pthread_mutex_lock(&ev_foreign_lock);
  int k = 0;
  while (k < n && ev_dead_len > 0) out[k++] = ev_dead_ids[--ev_dead_len];
  pthread_mutex_unlock(&ev_foreign_lock);
  return k;
}

static void ev_foreign_free_hook(eventer_t e) {
  if (ev_foreign_owns(e)) ev_foreign_box_release(e->closure);
}

static void ev_foreign_copy_hook(eventer_t dst, eventer_t src) {
  (void)src;
  if (ev_foreign_owns(dst))
    __atomic_fetch_add(&((ev_foreign_box_t *)dst->closure)->refs, 1,
                       __ATOMIC_RELAXED);
}

int eventer_foreign_callback_register(eventer_func_t f) {
  if (!f) {
    errno = EINVAL;
    return -1;
  }
  pthread_mutex_lock(&ev_foreign_lock);
  for (int i = 0; i < ev_foreign_nfuncs; i++)
    if (ev_foreign_funcs[i] == f) {
      pthread_mutex_unlock(&ev_foreign_lock);
      return 0;
    }
  if (ev_foreign_nfuncs == EV_FOREIGN_MAX_FUNCS) {
    pthread_mutex_unlock(&ev_foreign_lock);
    errno = ENOSPC;
    return -1;
  }
  ev_event_hooks_add(ev_foreign_free_hook, ev_foreign_copy_hook);
  ev_foreign_funcs[ev_foreign_nfuncs] = f;
  __atomic_store_n(&ev_foreign_nfuncs, ev_foreign_nfuncs + 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&ev_foreign_lock);
  return eventer_callback_set_foreign(f);
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
