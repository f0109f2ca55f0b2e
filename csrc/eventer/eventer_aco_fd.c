/*
 * eventer_aco_fd.c - fd events for coroutines: converting a classic fd
 * event (eventer_set_eventer_aco), read/write/accept/connect with
 * timeouts, readiness waits, close and free, and the aco opset that makes
 * a classic eventer_read() on an aco event block the calling coroutine.
 *
 * An aco event keeps its classic opset, callback and closure in an
 * ev_aco_fd_t (its opset_ctx) and gets the aco opset and callback.  Any
 * number of waiters of its loop (coroutines and proxies) may wait on it,
 * each for the mask its operation needs; the event is registered with the
 * union of those masks while anyone waits, and unregistered when nobody
 * does.
 */
#include "eventer_aco_impl.h"
#include "eventer_SSL_fd_opset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* eventer_fini: each waiter still parked on e holds a reference to it for
 * its wait; the registration's own is dropped by the loop's fini. */
static void ev_aco_fd_fini_waiters(eventer_t e) {
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!st) return;
  while (!ev_aco_waitq_empty(&st->waiters)) {
    ev_aco_unlink(st->waiters.head.next);
    eventer_deref(e);
  }
}

void ev_aco_fd_fini_loop(ev_loop_t *l) {
  ev_fdtab_foreach(l, ev_aco_fd_fini_waiters);
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
    if (eventer_add_ex(e) != 0) {
      int err = errno;
      eventer_deref(e);
      errno = err;
      return -1;
    }
  } else if (eventer_update_ex(e, want) != 0) {
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

/* ---- the readiness wait --------------------------------------------------------- */

int ev_aco_fd_wait_begin(ev_aco_t *a, eventer_t e, int mask, uint64_t deadline,
                         int64_t *rv) {
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  *rv = -1;
  if (!st || e->owner != ev_aco_loop_of(a) ||
      !(mask & (EVENTER_READ | EVENTER_WRITE))) {
    errno = EINVAL;
    return EV_OP_DONE;
  }
  if (st->closed) {
    errno = EBADF;
    return EV_OP_DONE;
  }
  a->aux = mask & (EVENTER_READ | EVENTER_WRITE);
  /* linked first, so that the registration covers our mask */
  ev_aco_link_tail(&st->waiters, &a->link);
  if (ev_aco_fd_sync(e, st) != 0) {
    int err = errno;
    ev_aco_unlink(&a->link);
    errno = err;
    return EV_OP_DONE;
  }
  ev_aco_unlink(&a->link);
  int w = ev_aco_wait_begin(a, &st->waiters, deadline, EV_WAIT_CANCELLABLE);
  if (w != EV_WAKE_NONE) { /* a pending cancel, or a deadline passed */
    ev_aco_fd_idle(e, st);
    errno = ev_aco_wake_errno(w);
    return EV_OP_DONE;
  }
  eventer_ref(e); /* e stays alive while we wait, whoever frees it */
  return EV_OP_WAITING;
}

int64_t ev_aco_fd_wait_end(ev_aco_t *a, eventer_t e, int wake) {
  (void)a;
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  int64_t rv = 0;
  int err = 0;
  if (wake != EV_WAKE_READY) {
    ev_aco_fd_idle(e, st);
    err = ev_aco_wake_errno(wake);
    rv = -1;
  } else if (st->closed) {
    err = EBADF;
    rv = -1;
  }
  eventer_deref(e);
  errno = err;
  return rv;
}

/* The running coroutine a waits until e is ready for mask: 0, or -1. */
static int ev_aco_fd_wait(ev_aco_t *a, eventer_t e, int mask,
                          uint64_t deadline) {
  int64_t rv;
  if (ev_aco_fd_wait_begin(a, e, mask, deadline, &rv) == EV_OP_WAITING)
    rv = ev_aco_fd_wait_end(a, e, ev_aco_wait_yield(a));
  return (int)rv;
}

int eventer_aco_wait_ready(eventer_aco_t ae, int mask, struct timeval *timeout) {
  ev_aco_t *a = ev_aco_self();
  if (!a) {
    errno = EINVAL;
    return -1;
  }
  /* TLS: plaintext OpenSSL holds is ready, though the socket shows none */
  if ((mask & EVENTER_READ) &&
      eventer_ssl_read_ready(eventer_get_eventer_ssl_ctx((eventer_t)ae), NULL) == 1)
    return 0;
  return ev_aco_fd_wait(a, (eventer_t)ae, mask, ev_aco_deadline(timeout));
}

const volatile uint8_t *ev_aco_fd_posix_closed_flag(eventer_t e) {
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!st || st->orig_opset != eventer_POSIX_fd_opset) return NULL;
  return &st->closed;
}

int ev_aco_fd_closed(eventer_t e) {
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!st) {
    errno = EINVAL;
    return -1;
  }
  return st->closed;
}

/* ---- read, write, accept, connect ------------------------------------------------
 * Every call is attempts through the original opset, with a readiness wait
 * between two attempts when one would block.  A C coroutine loops here
 * (ev_aco_fd_op); a foreign coroutine loops in its own runtime around
 * ev_aco_fd_try and a proxy's wait (the Go binding's AcoEvent.io). */

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
  for (;;) {
    int mask;
    int rv = ev_aco_fd_attempt(e, st, op, buf, len, addr, alen, &mask);
    if (rv >= 0) return rv;
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINPROGRESS)
      return -1;
    if (ev_aco_fd_wait(a, e, mask, deadline) != 0) return -1;
  }
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
  if (ev_aco_fd_wait(a, e, EVENTER_WRITE, ev_aco_deadline(timeout)) != 0)
    return -1;
  int err = 0;
  socklen_t sl = sizeof(err);
  if (getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0) err = errno;
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

/* ---- close, free, settings ---------------------------------------------------------- */

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

/* ---- conversion and the event hooks ----------------------------------------------- */

void ev_aco_fd_event_free(eventer_t e) {
  ev_aco_fd_t *st = ev_aco_fd_of(e);
  if (!st) return;
  /* waiters hold references; the registration's was just dropped by
   * whoever unregistered it (the loop at eventer_fini, or us) */
  EV_ASSERT(ev_aco_waitq_empty(&st->waiters),
            "an aco event is freed only when nothing waits on it");
  free(st);
  e->opset_ctx = NULL;
}

void ev_aco_fd_event_copy(eventer_t dst, eventer_t src) {
  ev_aco_fd_t *st = ev_aco_fd_of(src);
  if (!st) return;
  dst->opset = st->orig_opset;
  dst->opset_ctx = st->orig_ctx;
  dst->callback = st->orig_cb;
}

int ev_aco_fd_convert(eventer_t e, ev_loop_t *l) {
  if (!e || !l || e->fd < 0 || eventer_is_aco(e) ||
      __atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != EV_ST_NONE) {
    errno = EINVAL;
    return -1;
  }
  ev_aco_fd_t *st = calloc(1, sizeof(*st));
  if (!st) {
    errno = ENOMEM;
    return -1;
  }
  st->orig_opset = e->opset ? e->opset : eventer_POSIX_fd_opset;
  st->orig_ctx = e->opset_ctx;
  st->orig_cb = e->callback;
  ev_aco_waitq_init(&st->waiters);
  e->opset = ev_aco_opset;
  e->opset_ctx = st;
  e->callback = ev_aco_fd_cb;
  e->mask = 0;
  __atomic_store_n(&e->owner, l, __ATOMIC_RELEASE);
  return 0;
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
  if (!a || ev_aco_co(a) != co) {
    errno = EINVAL;
    return NULL;
  }
  if (ev_aco_fd_convert(e, ev_aco_loop_of(a)) != 0) return NULL;
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
