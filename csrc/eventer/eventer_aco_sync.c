/*
 * eventer_aco_sync.c - semaphores, mutexes, wait groups and channels for
 * the coroutines of one loop (API and semantics: eventer_aco_sync.h).
 *
 * Everything is built on the waits of eventer_aco_impl.h, and each call
 * that may wait is a start and an end around one (ev_aco_sync_begin and
 * ev_aco_sync_end), so that C coroutines and proxies share them.  Each
 * object keeps FIFO wait queues of waiters.  A waker never touches a
 * waiter's stack (with shared stacks it may not even be at its addresses):
 * it records the outcome in the waiter's ev_aco_t (`aux`, which is free
 * while it waits on one of our queues) and schedules it with ev_aco_wake.
 * A woken waiter cannot time out or be cancelled any more, so what it was
 * granted is final:
 *
 *   EV_SYNC_GRANTED  it owns what it waited for (a semaphore unit, the
 *                    mutex, a reserved channel slot or element, a wait
 *                    group that reached zero);
 *   EV_SYNC_CLOSED   the channel was closed.
 *
 * Handing things over directly is what makes the queues fair: nothing is
 * left lying around between the wake and the resume for a later arrival to
 * take.  Every ready wake of a sync waiter carries an outcome: only the
 * object wakes its waiters as ready (eventer_aco_wake ends only parks).
 */
#include "eventer_aco_sync.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eventer_aco_impl.h"

enum { EV_SYNC_NONE = 0, EV_SYNC_GRANTED, EV_SYNC_CLOSED };

/* ---- common ------------------------------------------------------------ */

/* Checks that the calling thread may use an object bound to *slot, binding
 * it to the calling loop on first use.  0, or -1/EINVAL (off-loop, or the
 * object belongs to another loop).  The CAS keeps two loops that race for
 * an unbound object from both believing they own it. */
static int ev_sync_bind(ev_loop_t **slot) {
  ev_loop_t *self = ev_loop_self();
  if (!self) {
    errno = EINVAL;
    return -1;
  }
  ev_loop_t *cur = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
  if (cur == NULL &&
      __atomic_compare_exchange_n(slot, &cur, self, 0, __ATOMIC_ACQ_REL,
                                  __ATOMIC_ACQUIRE))
    return 0;
  if (cur != self) {
    errno = EINVAL;
    return -1;
  }
  return 0;
}

/* Starts a's wait on q until a waker records an outcome: EV_OP_WAITING, or
 * EV_OP_DONE with *rv -1 and errno ETIMEDOUT / ECANCELED (nothing was
 * granted). */
static int ev_sync_wait(ev_aco_t *a, ev_aco_waitq_t *q, uint64_t deadline,
                        int64_t *rv) {
  a->aux = EV_SYNC_NONE;
  int w = ev_aco_wait_begin(a, q, deadline, EV_WAIT_CANCELLABLE);
  if (w == EV_WAKE_NONE) return EV_OP_WAITING;
  errno = ev_aco_wake_errno(w);
  *rv = -1;
  return EV_OP_DONE;
}

/* The outcome of a's wait: EV_SYNC_GRANTED or EV_SYNC_CLOSED, or -1 with
 * errno ETIMEDOUT / ECANCELED (a left the queue by itself). */
static int ev_sync_outcome(ev_aco_t *a, int wake) {
  int got = a->aux;
  a->aux = EV_SYNC_NONE;
  if (got != EV_SYNC_NONE) {
    EV_ASSERT(wake == EV_WAKE_READY,
              "a sync waiter given an outcome was woken as ready");
    return got;
  }
  EV_ASSERT(wake != EV_WAKE_READY,
            "a sync waiter is woken as ready only with an outcome");
  errno = ev_aco_wake_errno(wake);
  return -1;
}

/* A whole call of the running coroutine: start, wait, end. */
static int ev_sync_call(int kind, void *obj, void *elem,
                        const struct timeval *timeout) {
  ev_aco_t *a = ev_aco_self();
  if (!a) {
    errno = EINVAL;
    return -1;
  }
  int64_t rv;
  if (ev_aco_sync_begin(a, kind, obj, elem, ev_aco_deadline(timeout), &rv) ==
      EV_OP_WAITING)
    rv = ev_aco_sync_end(a, kind, obj, elem, ev_aco_wait_yield(a));
  return (int)rv;
}

/* Gives the longest waiter of q the outcome `how` and schedules it.
 * Returns it, or NULL if nobody waits. */
static ev_aco_t *ev_sync_wake_first(ev_aco_waitq_t *q, int how) {
  if (ev_aco_waitq_empty(q)) return NULL;
  ev_aco_t *w = EV_CONTAINER_OF(q->head.next, ev_aco_t, link);
  EV_ASSERT(w->state == EV_ACO_PARKED,
            "every coroutine on a sync wait queue is parked");
  w->aux = (int32_t)how;
  ev_aco_wake(w, EV_WAKE_READY); /* unlinks it from q */
  return w;
}

static void ev_sync_wake_all(ev_aco_waitq_t *q, int how) {
  while (ev_sync_wake_first(q, how)) {
  }
}

/* ---- semaphores ---------------------------------------------------------
 * Invariant: waiters => value == 0 (a post with waiters hands its unit
 * over instead of counting it). */

struct eventer_aco_sem {
  ev_loop_t *loop; /* bound on first use */
  int value;
  ev_aco_waitq_t waiters;
};

eventer_aco_sem_t *eventer_aco_sem_new(unsigned int initial) {
  if (initial > EVENTER_ACO_SEM_VALUE_MAX) {
    errno = EINVAL;
    return NULL;
  }
  eventer_aco_sem_t *s = calloc(1, sizeof(*s));
  if (!s) {
    errno = ENOMEM;
    return NULL;
  }
  s->value = (int)initial;
  ev_aco_waitq_init(&s->waiters);
  return s;
}

static int ev_sem_wait_begin(ev_aco_t *a, eventer_aco_sem_t *s,
                             uint64_t deadline, int64_t *rv) {
  if (s->value > 0) {
    s->value--;
    *rv = 0;
    return EV_OP_DONE;
  }
  return ev_sync_wait(a, &s->waiters, deadline, rv);
}

static int64_t ev_sem_wait_end(ev_aco_t *a, int wake) {
  int got = ev_sync_outcome(a, wake);
  if (got < 0) return -1;
  EV_ASSERT(got == EV_SYNC_GRANTED, "a semaphore only grants units");
  return 0;
}

int eventer_aco_sem_wait(eventer_aco_sem_t *s, struct timeval *timeout) {
  return ev_sync_call(EV_SYNC_SEM_WAIT, s, NULL, timeout);
}

int eventer_aco_sem_trywait(eventer_aco_sem_t *s) {
  if (!s) {
    errno = EINVAL;
    return -1;
  }
  if (ev_sync_bind(&s->loop) != 0) return -1;
  if (s->value == 0) {
    errno = EAGAIN;
    return -1;
  }
  s->value--;
  return 0;
}

int eventer_aco_sem_post(eventer_aco_sem_t *s) {
  if (!s) {
    errno = EINVAL;
    return -1;
  }
  if (ev_sync_bind(&s->loop) != 0) return -1;
  if (ev_sync_wake_first(&s->waiters, EV_SYNC_GRANTED)) {
    EV_ASSERT(s->value == 0, "a semaphore with waiters has no units");
    return 0;
  }
  if (s->value == EVENTER_ACO_SEM_VALUE_MAX) {
    errno = EOVERFLOW;
    return -1;
  }
  s->value++;
  return 0;
}

int eventer_aco_sem_value(eventer_aco_sem_t *s) {
  if (!s) {
    errno = EINVAL;
    return -1;
  }
  return s->value;
}

int eventer_aco_sem_free(eventer_aco_sem_t *s) {
  if (!s) return 0;
  if (!ev_aco_waitq_empty(&s->waiters)) {
    errno = EBUSY;
    return -1;
  }
  free(s);
  return 0;
}

/* ---- mutexes --------------------------------------------------------------
 * The owner is the coroutine that locked it (a foreign coroutine keeps one
 * proxy coroutine for all its calls, eventer_aco_proxy.h, so that holds
 * for it too).  On unlock with waiters the mutex goes to the first waiter:
 * until it resumes, `handoff` names it.  Invariant: waiters => owner or
 * handoff. */

struct eventer_aco_mutex {
  ev_loop_t *loop;    /* bound on first use */
  ev_aco_t *owner;    /* holder, NULL when free or handed off */
  ev_aco_t *handoff;  /* woken waiter it was handed to, not yet resumed */
  ev_aco_waitq_t waiters;
};

eventer_aco_mutex_t *eventer_aco_mutex_new(void) {
  eventer_aco_mutex_t *m = calloc(1, sizeof(*m));
  if (!m) {
    errno = ENOMEM;
    return NULL;
  }
  ev_aco_waitq_init(&m->waiters);
  return m;
}

static int ev_mutex_held(const eventer_aco_mutex_t *m) {
  return m->owner != NULL || m->handoff != NULL;
}

static int ev_mutex_lock_begin(ev_aco_t *a, eventer_aco_mutex_t *m,
                               uint64_t deadline, int64_t *rv) {
  *rv = -1;
  if (m->owner == a) {
    errno = EDEADLK;
    return EV_OP_DONE;
  }
  if (!ev_mutex_held(m)) {
    EV_ASSERT(ev_aco_waitq_empty(&m->waiters),
              "nobody waits for a free mutex");
    m->owner = a;
    *rv = 0;
    return EV_OP_DONE;
  }
  return ev_sync_wait(a, &m->waiters, deadline, rv);
}

static int64_t ev_mutex_lock_end(ev_aco_t *a, eventer_aco_mutex_t *m,
                                 int wake) {
  int got = ev_sync_outcome(a, wake);
  if (got < 0) return -1;
  EV_ASSERT(got == EV_SYNC_GRANTED && m->handoff == a && m->owner == NULL,
            "a mutex is handed to the waiter it woke");
  m->handoff = NULL;
  m->owner = a;
  return 0;
}

static int64_t ev_mutex_trylock_as(ev_aco_t *a, eventer_aco_mutex_t *m) {
  if (ev_mutex_held(m)) {
    errno = EBUSY;
    return -1;
  }
  m->owner = a;
  return 0;
}

static int64_t ev_mutex_unlock_as(ev_aco_t *a, eventer_aco_mutex_t *m) {
  if (m->owner != a) {
    errno = EPERM;
    return -1;
  }
  m->owner = NULL;
  m->handoff = ev_sync_wake_first(&m->waiters, EV_SYNC_GRANTED);
  return 0;
}

int eventer_aco_mutex_lock(eventer_aco_mutex_t *m, struct timeval *timeout) {
  return ev_sync_call(EV_SYNC_MUTEX_LOCK, m, NULL, timeout);
}

int eventer_aco_mutex_trylock(eventer_aco_mutex_t *m) {
  return ev_sync_call(EV_SYNC_MUTEX_TRYLOCK, m, NULL, NULL);
}

int eventer_aco_mutex_unlock(eventer_aco_mutex_t *m) {
  return ev_sync_call(EV_SYNC_MUTEX_UNLOCK, m, NULL, NULL);
}

int eventer_aco_mutex_locked(eventer_aco_mutex_t *m) {
  if (!m) {
    errno = EINVAL;
    return -1;
  }
  return ev_mutex_held(m);
}

int eventer_aco_mutex_free(eventer_aco_mutex_t *m) {
  if (!m) return 0;
  if (!ev_aco_waitq_empty(&m->waiters) || m->handoff) {
    errno = EBUSY;
    return -1;
  }
  free(m);
  return 0;
}

/* ---- wait groups -------------------------------------------------------------
 * Invariant: waiters => count > 0 (reaching zero lets every waiter go). */

struct eventer_aco_wg {
  ev_loop_t *loop; /* bound on first use */
  int count;
  ev_aco_waitq_t waiters;
};

eventer_aco_wg_t *eventer_aco_wg_new(void) {
  eventer_aco_wg_t *wg = calloc(1, sizeof(*wg));
  if (!wg) {
    errno = ENOMEM;
    return NULL;
  }
  ev_aco_waitq_init(&wg->waiters);
  return wg;
}

int eventer_aco_wg_add(eventer_aco_wg_t *wg, int n) {
  if (!wg) {
    errno = EINVAL;
    return -1;
  }
  if (ev_sync_bind(&wg->loop) != 0) return -1;
  long long c = (long long)wg->count + n;
  if (c < 0) {
    errno = EINVAL;
    return -1;
  }
  if (c > INT_MAX) {
    errno = EOVERFLOW;
    return -1;
  }
  wg->count = (int)c;
  if (c == 0) ev_sync_wake_all(&wg->waiters, EV_SYNC_GRANTED);
  return 0;
}

int eventer_aco_wg_done(eventer_aco_wg_t *wg) {
  return eventer_aco_wg_add(wg, -1);
}

static int ev_wg_wait_begin(ev_aco_t *a, eventer_aco_wg_t *wg,
                            uint64_t deadline, int64_t *rv) {
  if (wg->count == 0) {
    *rv = 0;
    return EV_OP_DONE;
  }
  return ev_sync_wait(a, &wg->waiters, deadline, rv);
}

static int64_t ev_wg_wait_end(ev_aco_t *a, int wake) {
  int got = ev_sync_outcome(a, wake);
  if (got < 0) return -1;
  EV_ASSERT(got == EV_SYNC_GRANTED, "a wait group only lets waiters go");
  return 0;
}

int eventer_aco_wg_wait(eventer_aco_wg_t *wg, struct timeval *timeout) {
  return ev_sync_call(EV_SYNC_WG_WAIT, wg, NULL, timeout);
}

int eventer_aco_wg_count(eventer_aco_wg_t *wg) {
  if (!wg) {
    errno = EINVAL;
    return -1;
  }
  return wg->count;
}

int eventer_aco_wg_free(eventer_aco_wg_t *wg) {
  if (!wg) return 0;
  if (!ev_aco_waitq_empty(&wg->waiters)) {
    errno = EBUSY;
    return -1;
  }
  free(wg);
  return 0;
}

/* ---- channels -------------------------------------------------------------------
 * A ring of `cap` elements.  A slot freed while senders wait is reserved
 * for the first of them (rsv_send); an element that arrives while
 * receivers wait is reserved for the first of them (rsv_recv).  The woken
 * coroutine copies its own element in or out when it resumes.
 * Invariants:
 *   rsv_recv <= count and count + rsv_send <= cap;
 *   receivers waiting => count == rsv_recv (no element is free to take);
 *   senders waiting   => count + rsv_send == cap (no slot is free).
 * So a newcomer can only use free elements/slots and never overtakes a
 * waiter, and a woken coroutine always finds what was reserved for it. */

struct eventer_aco_chan {
  ev_loop_t *loop; /* bound on first use */
  size_t elem_size, cap;
  size_t head;     /* index of the oldest element */
  size_t count;    /* elements buffered (reserved ones included) */
  size_t rsv_send; /* slots reserved for woken senders */
  size_t rsv_recv; /* elements reserved for woken receivers */
  int closed;
  ev_aco_waitq_t senders, receivers;
  unsigned char buf[]; /* cap * elem_size */
};

eventer_aco_chan_t *eventer_aco_chan_new(size_t elem_size, size_t capacity) {
  if (elem_size == 0 || capacity == 0 ||
      capacity > (SIZE_MAX - sizeof(eventer_aco_chan_t)) / elem_size) {
    errno = EINVAL;
    return NULL;
  }
  eventer_aco_chan_t *ch =
      calloc(1, sizeof(eventer_aco_chan_t) + elem_size * capacity);
  if (!ch) {
    errno = ENOMEM;
    return NULL;
  }
  ch->elem_size = elem_size;
  ch->cap = capacity;
  ev_aco_waitq_init(&ch->senders);
  ev_aco_waitq_init(&ch->receivers);
  return ch;
}

/* Appends the element at elem (the running context's own memory); an
 * element that arrives while receivers wait goes to the first of them. */
static void ev_chan_put(eventer_aco_chan_t *ch, const void *elem) {
  EV_ASSERT(ch->count < ch->cap, "a channel puts only into a free slot");
  size_t tail = (ch->head + ch->count) % ch->cap;
  memcpy(ch->buf + tail * ch->elem_size, elem, ch->elem_size);
  ch->count++;
  if (ev_sync_wake_first(&ch->receivers, EV_SYNC_GRANTED)) ch->rsv_recv++;
}

/* Takes the oldest element out to elem; a slot freed while senders wait
 * goes to the first of them. */
static void ev_chan_take(eventer_aco_chan_t *ch, void *elem) {
  EV_ASSERT(ch->count > 0, "a channel takes only a buffered element");
  memcpy(elem, ch->buf + ch->head * ch->elem_size, ch->elem_size);
  ch->head = (ch->head + 1) % ch->cap;
  ch->count--;
  if (ev_sync_wake_first(&ch->senders, EV_SYNC_GRANTED)) ch->rsv_send++;
}

static int ev_chan_can_put(const eventer_aco_chan_t *ch) {
  return ch->count + ch->rsv_send < ch->cap;
}
static int ev_chan_can_take(const eventer_aco_chan_t *ch) {
  return ch->count > ch->rsv_recv;
}

static int ev_chan_send_begin(ev_aco_t *a, eventer_aco_chan_t *ch,
                              const void *elem, uint64_t deadline,
                              int64_t *rv) {
  *rv = -1;
  if (ch->closed) {
    errno = EPIPE;
    return EV_OP_DONE;
  }
  if (ev_chan_can_put(ch)) {
    EV_ASSERT(ev_aco_waitq_empty(&ch->senders),
              "no sender waits while a slot is free");
    ev_chan_put(ch, elem);
    *rv = 0;
    return EV_OP_DONE;
  }
  return ev_sync_wait(a, &ch->senders, deadline, rv);
}

static int64_t ev_chan_send_end(ev_aco_t *a, eventer_aco_chan_t *ch,
                                const void *elem, int wake) {
  int got = ev_sync_outcome(a, wake);
  if (got < 0) return -1;
  if (got == EV_SYNC_GRANTED) {
    EV_ASSERT(ch->rsv_send > 0, "a woken sender has a reserved slot");
    ch->rsv_send--;
    if (!ch->closed) {
      ev_chan_put(ch, elem);
      return 0;
    }
    /* closed after the slot was reserved: the send did not happen */
  }
  errno = EPIPE;
  return -1;
}

static int ev_chan_recv_begin(ev_aco_t *a, eventer_aco_chan_t *ch, void *elem,
                              uint64_t deadline, int64_t *rv) {
  if (ev_chan_can_take(ch)) {
    ev_chan_take(ch, elem);
    *rv = 0;
    return EV_OP_DONE;
  }
  if (ch->closed) {
    errno = EPIPE;
    *rv = -1;
    return EV_OP_DONE;
  }
  return ev_sync_wait(a, &ch->receivers, deadline, rv);
}

static int64_t ev_chan_recv_end(ev_aco_t *a, eventer_aco_chan_t *ch,
                                void *elem, int wake) {
  int got = ev_sync_outcome(a, wake);
  if (got < 0) return -1;
  if (got == EV_SYNC_CLOSED) {
    errno = EPIPE;
    return -1;
  }
  /* a reserved element survives a close: take it */
  EV_ASSERT(ch->rsv_recv > 0, "a woken receiver has a reserved element");
  ch->rsv_recv--;
  ev_chan_take(ch, elem);
  return 0;
}

int eventer_aco_chan_send(eventer_aco_chan_t *ch, const void *elem,
                          struct timeval *timeout) {
  return ev_sync_call(EV_SYNC_CHAN_SEND, ch, (void *)elem, timeout);
}

int eventer_aco_chan_recv(eventer_aco_chan_t *ch, void *elem,
                          struct timeval *timeout) {
  return ev_sync_call(EV_SYNC_CHAN_RECV, ch, elem, timeout);
}

int eventer_aco_chan_trysend(eventer_aco_chan_t *ch, const void *elem) {
  if (!ch || !elem) {
    errno = EINVAL;
    return -1;
  }
  if (ev_sync_bind(&ch->loop) != 0) return -1;
  if (ch->closed) {
    errno = EPIPE;
    return -1;
  }
  if (!ev_chan_can_put(ch)) {
    errno = EAGAIN;
    return -1;
  }
  ev_chan_put(ch, elem);
  return 0;
}

int eventer_aco_chan_tryrecv(eventer_aco_chan_t *ch, void *elem) {
  if (!ch || !elem) {
    errno = EINVAL;
    return -1;
  }
  if (ev_sync_bind(&ch->loop) != 0) return -1;
  if (ev_chan_can_take(ch)) {
    ev_chan_take(ch, elem);
    return 0;
  }
  errno = ch->closed ? EPIPE : EAGAIN;
  return -1;
}

int eventer_aco_chan_close(eventer_aco_chan_t *ch) {
  if (!ch) {
    errno = EINVAL;
    return -1;
  }
  if (ev_sync_bind(&ch->loop) != 0) return -1;
  if (ch->closed) {
    errno = EPIPE;
    return -1;
  }
  ch->closed = 1;
  ev_sync_wake_all(&ch->senders, EV_SYNC_CLOSED);
  /* receivers wait only when every buffered element is reserved */
  ev_sync_wake_all(&ch->receivers, EV_SYNC_CLOSED);
  return 0;
}

ssize_t eventer_aco_chan_len(eventer_aco_chan_t *ch) {
  if (!ch) {
    errno = EINVAL;
    return -1;
  }
  return (ssize_t)ch->count;
}

ssize_t eventer_aco_chan_cap(eventer_aco_chan_t *ch) {
  if (!ch) {
    errno = EINVAL;
    return -1;
  }
  return (ssize_t)ch->cap;
}

ssize_t eventer_aco_chan_elem_size(eventer_aco_chan_t *ch) {
  if (!ch) {
    errno = EINVAL;
    return -1;
  }
  return (ssize_t)ch->elem_size;
}

int eventer_aco_chan_closed(eventer_aco_chan_t *ch) {
  if (!ch) {
    errno = EINVAL;
    return -1;
  }
  return ch->closed;
}

int eventer_aco_chan_free(eventer_aco_chan_t *ch) {
  if (!ch) return 0;
  if (!ev_aco_waitq_empty(&ch->senders) ||
      !ev_aco_waitq_empty(&ch->receivers) || ch->rsv_send || ch->rsv_recv) {
    errno = EBUSY;
    return -1;
  }
  free(ch);
  return 0;
}

/* ---- the calls that may wait, as start and end ------------------------------------ */

/* Every sync object begins with the loop it is bound to. */
_Static_assert(offsetof(eventer_aco_sem_t, loop) == 0 &&
                   offsetof(eventer_aco_mutex_t, loop) == 0 &&
                   offsetof(eventer_aco_wg_t, loop) == 0 &&
                   offsetof(eventer_aco_chan_t, loop) == 0,
               "a sync object's first member is its loop");

ev_loop_t *ev_aco_sync_loop(const void *obj) {
  return obj ? __atomic_load_n((ev_loop_t *const *)obj, __ATOMIC_ACQUIRE)
             : NULL;
}

int ev_aco_sync_begin(ev_aco_t *a, int kind, void *obj, void *elem,
                      uint64_t deadline, int64_t *rv) {
  *rv = -1;
  int chan = kind == EV_SYNC_CHAN_SEND || kind == EV_SYNC_CHAN_RECV;
  if (!a || !obj || (chan && !elem) || kind < EV_SYNC_SEM_WAIT ||
      kind > EV_SYNC_CHAN_RECV) {
    errno = EINVAL;
    return EV_OP_DONE;
  }
  if (ev_sync_bind((ev_loop_t **)obj) != 0) return EV_OP_DONE;
  switch (kind) {
  case EV_SYNC_SEM_WAIT:
    return ev_sem_wait_begin(a, obj, deadline, rv);
  case EV_SYNC_MUTEX_LOCK:
    return ev_mutex_lock_begin(a, obj, deadline, rv);
  case EV_SYNC_MUTEX_TRYLOCK:
    *rv = ev_mutex_trylock_as(a, obj);
    return EV_OP_DONE;
  case EV_SYNC_MUTEX_UNLOCK:
    *rv = ev_mutex_unlock_as(a, obj);
    return EV_OP_DONE;
  case EV_SYNC_WG_WAIT:
    return ev_wg_wait_begin(a, obj, deadline, rv);
  case EV_SYNC_CHAN_SEND:
    return ev_chan_send_begin(a, obj, elem, deadline, rv);
  default:
    return ev_chan_recv_begin(a, obj, elem, deadline, rv);
  }
}

int64_t ev_aco_sync_end(ev_aco_t *a, int kind, void *obj, void *elem,
                        int wake) {
  switch (kind) {
  case EV_SYNC_SEM_WAIT:
    return ev_sem_wait_end(a, wake);
  case EV_SYNC_MUTEX_LOCK:
    return ev_mutex_lock_end(a, obj, wake);
  case EV_SYNC_WG_WAIT:
    return ev_wg_wait_end(a, wake);
  case EV_SYNC_CHAN_SEND:
    return ev_chan_send_end(a, obj, elem, wake);
  case EV_SYNC_CHAN_RECV:
    return ev_chan_recv_end(a, obj, elem, wake);
  }
  EV_ASSERT(0, "only a sync call that waited has an end");
  return -1;
}
