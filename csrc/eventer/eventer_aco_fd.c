/*
 * eventer_aco_fd.c - fd events for coroutines: converting a classic fd
 * event (eventer_set_eventer_aco), read/write/accept/connect with
 * timeouts, readiness waits, close and free, and the aco opset that makes
 * a classic eventer_read() on an aco event block the calling coroutine.
 *
 * An aco event keeps its state in the event itself (struct _event.aco and
 * the acofd_* bytes): its classic opset and callback, and who waits on it.
 * It gets the aco opset and callback; its opset context stays the one it
 * had, so its original opset still finds it.  Any number of waiters of its
 * loop (coroutines and proxies) may wait on it, each for the mask its
 * operation needs; the event is registered with the union of those masks
 * while anyone waits, and stays registered after a wake-up until it fires
 * with nobody waiting (a request/response exchange then costs no
 * epoll_ctl).
 *
 * Reads that would find nothing.  After a write (a reply can't be there
 * yet) or a short read (the socket was emptied), the next read of a
 * coroutine goes straight to the readiness wait instead of making a
 * read(2) that finds EAGAIN first.  The registration is level-triggered,
 * so data that arrived meanwhile is reported by the next poll at once.
 * Only for opsets whose reads show exactly what the kernel holds (the
 * POSIX opset, and those declared with eventer_aco_opset_set_unbuffered):
 * a TLS opset may hold decrypted bytes the socket no longer shows.
 */
#include "eventer_aco_impl.h"
#include "eventer_sys.h"
#include "eventer_SSL_fd_opset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { EV_TMO_ACCEPT = 0, EV_TMO_READ, EV_TMO_WRITE };

/* Per-call default timeouts, allocated by the first setter. */
struct ev_aco_fd_tmo {
  struct timeval tmo[3];
  uint8_t has[3];
};

static int ev_aco_op_accept(int fd, struct sockaddr *addr, socklen_t *len,
                            int *mask, void *closure);
static int ev_aco_op_read(int fd, void *buf, size_t len, int *mask,
                          void *closure);
static int ev_aco_op_write(int fd, const void *buf, size_t len, int *mask,
                           void *closure);
static int ev_aco_op_close(int fd, int *mask, void *closure);

static struct _fd_opset ev_aco_opset_s = {
    ev_aco_op_accept, ev_aco_op_read, ev_aco_op_write, ev_aco_op_close, "aco"};

/* With an event: is it an aco event.  With NULL (libmtev): is the caller
 * running in a coroutine (any coroutine, not a thread's main one). */
mtev_boolean eventer_is_aco(eventer_t e) {
  if (!e) {
    aco_t *co = aco_get_co();
    return (co && !aco_is_main_co(co)) ? mtev_true : mtev_false;
  }
  return (e->acofd_flags & EV_ACOFD_F_ACO) ? mtev_true : mtev_false;
}

static inline int ev_is_aco_fd(eventer_t e) {
  return e && (e->acofd_flags & EV_ACOFD_F_ACO);
}

/* The start of a call: a is the running coroutine, e an open aco event of
 * its loop, else -1 with errno (and a NULL).  (A coroutine that runs has
 * started: its u holds its loop, see ev_aco_entry.) */
static inline __attribute__((always_inline)) ev_aco_t *ev_aco_fd_caller(
    eventer_t e) {
  ev_aco_t *a = ev_aco_self();
  if (__builtin_expect(!a || !ev_is_aco_fd(e) || e->owner != a->u.loop, 0)) {
    errno = EINVAL;
    return NULL;
  }
  if (__builtin_expect(e->acofd_closed, 0)) {
    errno = EBADF;
    return NULL;
  }
  return a;
}

/* ---- opsets that keep no data of their own -------------------------------------- */

/* The TLS opset, named weakly: a program that never links the TLS layer
 * (and OpenSSL) does not get it for this check. */
extern eventer_fd_opset_t eventer_SSL_fd_opset __attribute__((weak));

#define EV_ACO_UNBUFFERED_MAX 8
static eventer_fd_opset_t ev_aco_unbuffered[EV_ACO_UNBUFFERED_MAX];
static int ev_aco_nunbuffered; /* __atomic: slot first, then the count */
static pthread_mutex_t ev_aco_unbuffered_lock = PTHREAD_MUTEX_INITIALIZER;

int eventer_aco_opset_set_unbuffered(eventer_fd_opset_t opset) {
  /* the TLS opset keeps decrypted records: it never qualifies */
  if (!opset || opset == &ev_aco_opset_s ||
      (&eventer_SSL_fd_opset != NULL && opset == eventer_SSL_fd_opset)) {
    errno = EINVAL;
    return -1;
  }
  if (opset == eventer_POSIX_fd_opset) return 0;
  int rc = 0;
  pthread_mutex_lock(&ev_aco_unbuffered_lock);
  int n = ev_aco_nunbuffered, found = 0;
  for (int i = 0; i < n; i++) found |= ev_aco_unbuffered[i] == opset;
  if (!found) {
    if (n == EV_ACO_UNBUFFERED_MAX) {
      errno = ENOSPC;
      rc = -1;
    } else {
      ev_aco_unbuffered[n] = opset;
      __atomic_store_n(&ev_aco_nunbuffered, n + 1, __ATOMIC_RELEASE);
    }
  }
  pthread_mutex_unlock(&ev_aco_unbuffered_lock);
  return rc;
}

static int ev_aco_opset_unbuffered(eventer_fd_opset_t opset) {
  if (opset == eventer_POSIX_fd_opset) return 1;
  for (int i = 0, n = __atomic_load_n(&ev_aco_nunbuffered, __ATOMIC_ACQUIRE);
       i < n; i++)
    if (ev_aco_unbuffered[i] == opset) return 1;
  return 0;
}

/* eventer_fini: waiters still parked on e are dropped with their loop
 * (they hold no reference on e: see ev_aco_fd_wait_begin). */
static void ev_aco_fd_fini_waiters(eventer_t e) {
  if (!ev_is_aco_fd(e)) return;
  while (!ev_aco_waitq_empty(&e->aco.waiters))
    ev_aco_unlink(e->aco.waiters.head.next);
}

void ev_aco_fd_fini_loop(ev_loop_t *l) {
  ev_fdtab_foreach(l, ev_aco_fd_fini_waiters);
}

int ev_aco_fd_close_at_fini(eventer_t e) {
  if (!ev_is_aco_fd(e)) {
    errno = EINVAL;
    return -1;
  }
  /* its waiters went with the loop (ev_aco_fd_fini_loop unlinked them),
   * and so did the waits under way */
  while (!ev_aco_waitq_empty(&e->aco.waiters))
    ev_aco_unlink(e->aco.waiters.head.next);
  e->acofd_waits = 0;
  e->acofd_in_cb = 0;
  if (e->acofd_reg_mask) {
    e->acofd_reg_mask = 0;
    if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == EV_ST_FD) {
      eventer_t r = ev_reg_remove(ev_event_owner(e), e);
      if (r) eventer_deref(r); /* the registration's reference */
    }
    /* (else its add is still queued: the queue's discard drops it) */
  }
  if (e->acofd_flags & EV_ACOFD_F_CLOSE_REF) {
    e->acofd_flags &= (uint8_t)~EV_ACOFD_F_CLOSE_REF;
    eventer_deref(e);
  }
  if (!e->acofd_closed) {
    e->acofd_closed = 1;
    int mask = 0;
    e->aco.orig_opset->close(e->fd, &mask, e);
  }
  return 0;
}

/* The loop's callback for an aco event: wake the waiters whose mask is
 * ready (all of them on an exception), then keep interest in what the
 * remaining waiters need.  (The loop itself does the usual case, one
 * coroutine woken: see ev_aco_fd_sole_waiter.) */
int ev_aco_fd_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)closure;
  (void)now;
  EV_ASSERT(ev_is_aco_fd(e), "ev_aco_fd_cb runs only for aco events");
  ev_aco_waitq_t *q = &e->aco.waiters;
  int woke = 0;
  if (q->head.next != &q->head && q->head.next->next == &q->head) {
    /* one waiter (the usual case): no list to build */
    ev_aco_t *w = EV_CONTAINER_OF(q->head.next, ev_aco_t, link);
    if ((w->aux & mask) || (mask & EVENTER_EXCEPTION)) {
      woke = 1;
      e->acofd_in_cb++;
      ev_aco_wake_now(w, EV_WAKE_READY);
      e->acofd_in_cb--;
    }
  } else if (q->head.next != &q->head) {
    ev_aco_waitq_t ready;
    ev_aco_waitq_init(&ready);
    ev_aco_link_t *l = q->head.next;
    while (l != &q->head) {
      ev_aco_link_t *next = l->next;
      ev_aco_t *w = EV_CONTAINER_OF(l, ev_aco_t, link);
      if ((w->aux & mask) || (mask & EVENTER_EXCEPTION)) {
        ev_aco_unlink(l);
        ev_aco_link_tail(&ready, l);
      }
      l = next;
    }
    woke = !ev_aco_waitq_empty(&ready);
    e->acofd_in_cb++;
    /* A waiter stays PARKED on `ready` until its turn, so a cancel that a
     * coroutine resumed before it issues still finds and unlinks it. */
    while (!ev_aco_waitq_empty(&ready)) {
      ev_aco_t *w = EV_CONTAINER_OF(ready.head.next, ev_aco_t, link);
      ev_aco_wake_now(w, EV_WAKE_READY);
    }
    e->acofd_in_cb--;
  }
  if (woke && !(mask & EVENTER_EXCEPTION)) return ev_aco_fd_rearm_woken(e);
  if (e->acofd_reg_mask == 0) return 0; /* unregistered meanwhile (close) */
  int want = ev_aco_waiters_mask(e);
  if (want == 0 && e->acofd_waits == 0) {
    /* It fired (or failed) and nobody waited: stop listening, or a
     * level-triggered fd would spin.  (A wait that was woken otherwise
     * and has yet to end keeps it registered, and so alive, until it
     * ends.) */
    eventer_remove_fde(e);
    e->acofd_reg_mask = 0;
    return 0; /* the loop drops the registration's reference */
  }
  if (want == 0) return e->acofd_reg_mask; /* see ev_aco_fd_rearm_woken */
  e->acofd_reg_mask = (uint8_t)want;
  return want;
}

/* Registers e for what its waiters need.  Outside our callback only (the
 * callback's return value does it there). */
static int ev_aco_fd_sync(eventer_t e) {
  if (e->acofd_in_cb) return 0;
  int want = ev_aco_waiters_mask(e);
  int reg = e->acofd_reg_mask;
  /* a registration wider than needed is fine (a fire with nobody waiting
   * for it narrows it); only a missing bit needs an epoll_ctl */
  if (reg != 0 && (want & ~reg) == 0) return 0;
  if (reg != 0) want |= reg & ~EVENTER_EXCEPTION;
  if (reg == 0) {
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
  e->acofd_reg_mask = (uint8_t)want;
  return 0;
}

static void ev_aco_fd_unregister(eventer_t e) {
  if (e->acofd_reg_mask == 0) return;
  eventer_t r = eventer_remove_fde(e);
  e->acofd_reg_mask = 0;
  /* inside our callback, its 0 return drops the registration's
   * reference; elsewhere we drop it */
  if (r && !e->acofd_in_cb) eventer_deref(r);
}

/* A waiter left without the fd firing (timeout, cancel): if nobody else
 * waits, stop listening now, so that "registered" always means "someone
 * waits" and a freed or closed event never lingers in the loop.  This may
 * drop the last reference to e. */
static void ev_aco_fd_idle(eventer_t e) {
  if (!e->acofd_in_cb && e->acofd_waits == 0 &&
      ev_aco_waitq_empty(&e->aco.waiters))
    ev_aco_fd_unregister(e);
}

/* ---- the readiness wait --------------------------------------------------------- */

/* The start of a wait of a on e, which the caller checked (an aco event
 * of a's loop, not closed).  A waiter holds no reference on e: e stays
 * registered (its registration holds one) while any wait on it is under
 * way, from its start to its end, whatever woke it; eventer_aco_close,
 * which must unregister it, holds a reference instead until the last of
 * those waits has ended.  Out of line: a parked coroutine's saved stack
 * holds the frames above the switch, and this one is not among them. */
static __attribute__((noinline)) int ev_aco_fd_wait_start(ev_aco_t *a,
                                                          eventer_t e,
                                                          int mask,
                                                          uint64_t deadline) {
  if (__builtin_expect(e->acofd_waits == UINT16_MAX, 0)) {
    errno = EBUSY; /* 65535 waits on one event at once */
    return EV_OP_DONE;
  }
  a->aux = mask & (EVENTER_READ | EVENTER_WRITE);
  /* Registered for our mask already (every waiter's mask is covered, as
   * registering is what each one did), or inside our callback, whose
   * return value registers: nothing to do.  Else linked first, so that
   * the registration covers our mask. */
  if (!e->acofd_in_cb && (a->aux & ~e->acofd_reg_mask)) {
    ev_aco_link_tail(&e->aco.waiters, &a->link);
    int rc = ev_aco_fd_sync(e);
    int err = errno;
    ev_aco_unlink(&a->link);
    if (rc != 0) {
      errno = err;
      return EV_OP_DONE;
    }
  }
  int w = ev_aco_wait_begin(a, &e->aco.waiters, deadline, EV_WAIT_CANCELLABLE);
  if (w != EV_WAKE_NONE) { /* a pending cancel, or a deadline passed */
    ev_aco_fd_idle(e);
    errno = ev_aco_wake_errno(w);
    return EV_OP_DONE;
  }
  e->acofd_waits++;
  return EV_OP_WAITING;
}

/* ev_aco_fd_wait_start for the running coroutine a (ev_aco_fd_caller
 * found it: it runs, so it may wait), inline for the usual case: no
 * deadline, nothing pending, and e registered for mask already (or our
 * callback is dispatching, whose return value registers). */
static inline __attribute__((always_inline)) int ev_aco_fd_wait_start_run(
    ev_aco_t *a, eventer_t e, int mask, uint64_t deadline) {
  int m = mask & (EVENTER_READ | EVENTER_WRITE);
  if (__builtin_expect(
          deadline == 0 && m != 0 &&
              !(a->flags & (EV_ACO_F_CANCEL_PENDING | EV_ACO_F_WAKE_TOKEN)) &&
              (e->acofd_in_cb || !(m & ~e->acofd_reg_mask)) &&
              e->acofd_waits != UINT16_MAX,
          1)) {
    a->aux = m;
    ev_aco_link_tail(&e->aco.waiters, &a->link);
    a->wait_kind = EV_WAIT_CANCELLABLE;
    a->wake = EV_WAKE_NONE;
    a->state = EV_ACO_PARKED;
    e->acofd_waits++;
    return EV_OP_WAITING;
  }
  return ev_aco_fd_wait_start(a, e, mask, deadline);
}

int ev_aco_fd_wait_begin(ev_aco_t *a, eventer_t e, int mask, uint64_t deadline,
                         int64_t *rv) {
  *rv = -1;
  if (!ev_is_aco_fd(e) || e->owner != ev_aco_loop_of(a) ||
      !(mask & (EVENTER_READ | EVENTER_WRITE))) {
    errno = EINVAL;
    return EV_OP_DONE;
  }
  if (e->acofd_closed) {
    errno = EBADF;
    return EV_OP_DONE;
  }
  return ev_aco_fd_wait_start(a, e, mask, deadline);
}

/* The end of a wait of a on e that ended for `wake` other than READY on
 * an open event.  The caller must not touch e again unless it holds a
 * reference (this may have dropped the last one: a close's, or the
 * registration's). */
static __attribute__((noinline, cold)) int ev_aco_fd_wait_failed(eventer_t e,
                                                                 int wake) {
  int err = wake == EV_WAKE_READY ? EBADF : ev_aco_wake_errno(wake);
  if (e->acofd_closed) {
    if (e->acofd_waits == 0 && (e->acofd_flags & EV_ACOFD_F_CLOSE_REF)) {
      e->acofd_flags &= (uint8_t)~EV_ACOFD_F_CLOSE_REF;
      eventer_deref(e);
    }
  } else {
    ev_aco_fd_idle(e);
  }
  errno = err;
  return -1;
}

static inline __attribute__((always_inline)) int ev_aco_fd_wait_finish(
    eventer_t e, int wake) {
  e->acofd_waits--;
  if (__builtin_expect(wake == EV_WAKE_READY && !e->acofd_closed, 1))
    return 0;
  return ev_aco_fd_wait_failed(e, wake);
}

int64_t ev_aco_fd_wait_end(ev_aco_t *a, eventer_t e, int wake) {
  (void)a;
  return ev_aco_fd_wait_finish(e, wake);
}

/* The running coroutine a waits until e (checked) is ready for mask: 0,
 * or -1.  Inline, so that the yield is made from its caller's frame: a
 * parked coroutine saves one frame fewer. */
static inline __attribute__((always_inline)) int ev_aco_fd_wait(
    ev_aco_t *a, eventer_t e, int mask, uint64_t deadline) {
  if (ev_aco_fd_wait_start_run(a, e, mask, deadline) != EV_OP_WAITING)
    return -1;
  return ev_aco_fd_wait_finish(e, ev_aco_wait_yield_co(a));
}

int eventer_aco_wait_ready(eventer_aco_t ae, int mask, struct timeval *timeout) {
  eventer_t e = (eventer_t)ae;
  if (!(mask & (EVENTER_READ | EVENTER_WRITE))) {
    errno = EINVAL;
    return -1;
  }
  ev_aco_t *a = ev_aco_fd_caller(e);
  if (!a) return -1;
  /* TLS: plaintext OpenSSL holds is ready, though the socket shows none */
  if ((mask & EVENTER_READ) &&
      eventer_ssl_read_ready(eventer_get_eventer_ssl_ctx(e), NULL) == 1)
    return 0;
  return ev_aco_fd_wait(a, e, mask, timeout ? ev_aco_deadline(timeout) : 0);
}

const volatile uint8_t *ev_aco_fd_posix_closed_flag(eventer_t e) {
  if (!ev_is_aco_fd(e) || e->aco.orig_opset != eventer_POSIX_fd_opset)
    return NULL;
  return &e->acofd_closed;
}

int ev_aco_fd_reads_may_wait(eventer_t e) {
  return ev_is_aco_fd(e) && (e->acofd_flags & EV_ACOFD_F_UNBUFFERED) &&
         !(e->acofd_flags & EV_ACOFD_F_NO_SKIP);
}

int ev_aco_fd_closed(eventer_t e) {
  if (!ev_is_aco_fd(e)) {
    errno = EINVAL;
    return -1;
  }
  return e->acofd_closed;
}

/* ---- read, write, accept, connect ------------------------------------------------
 * Every call is attempts through the original opset (on the POSIX opset,
 * read(2)/write(2) made here), with a readiness wait between two attempts
 * when one would block.  A C coroutine loops here
 * (ev_aco_fd_run); a foreign coroutine loops in its own runtime around
 * ev_aco_fd_try and a proxy's wait (the Go binding's AcoEvent.io). */

/* A coroutine's read(2) and write(2) on the POSIX opset enter the kernel
 * without libc's cancellation wrappers (eventer_sys.h).  They are made
 * only by a coroutine on its loop's thread and by ev_aco_fd_try (a proxy
 * on the loop's thread, a foreign runtime's own thread), threads nothing
 * cancels.  (A classic eventer_read on an aco event outside a coroutine,
 * e.g. a job's WORK, goes through the original opset and libc, and stays
 * a cancellation point.) */

/* A bit of a wait's mask beside the EVENTER_* ones: see
 * ev_aco_fd_run_read. */
#define EV_ACOFD_SKIP 0x100

static inline int ev_would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == EINPROGRESS;
}

/* read(2) or write(2) on e's fd: the count, or -errno (errno itself
 * untouched).  On a socket they are made as recv(2) and send(2) with no
 * flags, which POSIX defines as the same calls (SIGPIPE included) and
 * which the kernel serves by a shorter way, past the file layer's checks
 * and notifications (3-7% less for a 1-byte write and read on a
 * socketpair: bench/README.md, eventer_aco).  The first call on an fd that is no
 * socket fails with ENOTSOCK before anything happens: the event then
 * makes read(2) and write(2) from that call on.  A zero-length call is
 * read(2) or write(2) on any fd: recv(2) with no room is not read(2)'s
 * (it takes a pending datagram whole, and fails with EAGAIN on an empty
 * socket, where read(2) returns 0 at once). */
static inline __attribute__((always_inline)) long ev_aco_sys_rw(
    eventer_t e, int op, void *buf, size_t len) {
#ifndef EV_SYS_LIBC
  if (__builtin_expect(!(e->acofd_flags & EV_ACOFD_F_NOT_SOCK) && len, 1)) {
    long r = ev_sys6(op == EV_ACO_TRY_READ ? SYS_recvfrom : SYS_sendto, e->fd,
                     (long)buf, (long)len, 0, 0, 0);
    if (__builtin_expect(r != -ENOTSOCK, 1)) return r;
    e->acofd_flags |= EV_ACOFD_F_NOT_SOCK;
  }
  return ev_sys6(op == EV_ACO_TRY_READ ? SYS_read : SYS_write, e->fd,
                 (long)buf, (long)len, 0, 0, 0);
#else
  /* the C library's calls set errno: put it back, as the kernel's leave it */
  int saved = errno;
  ssize_t r = -1;
  int sock = !(e->acofd_flags & EV_ACOFD_F_NOT_SOCK) && len;
  if (sock) {
    r = op == EV_ACO_TRY_READ ? recv(e->fd, buf, len, 0)
                              : send(e->fd, buf, len, 0);
    if (r < 0 && errno == ENOTSOCK) {
      e->acofd_flags |= EV_ACOFD_F_NOT_SOCK;
      errno = saved;
      sock = 0;
    }
  }
  if (!sock)
    r = op == EV_ACO_TRY_READ ? read(e->fd, buf, len) : write(e->fd, buf, len);
  if (r >= 0) return (long)r;
  long err = -(long)errno;
  errno = saved;
  return err;
#endif
}

/* One attempt of op through e's original opset (EINTR retried): the
 * result, or -1; when it would block, *mask is what to wait for (never 0),
 * else *mask is 0.  errno is set for every -1, except that with `quiet`
 * (a constant) a POSIX read or write that would block leaves errno alone:
 * the coroutine's own loops look at *mask, wait and try again, and on the
 * POSIX opset no errno access is left on that path (each is a call into
 * the C library).  A read or write that returns notes whether the next
 * read may wait first (see the top of this file). */
static inline __attribute__((always_inline)) int ev_aco_fd_attempt(
    eventer_t e, int op, void *buf, size_t len, struct sockaddr *addr,
    socklen_t *alen, int *mask, const int quiet) {
  int rv;
  if (op != EV_ACO_TRY_ACCEPT && (e->acofd_flags & EV_ACOFD_F_POSIX)) {
    /* the POSIX opset's read and write, without the calls */
    long r;
    do {
      r = ev_aco_sys_rw(e, op, buf, len);
    } while (__builtin_expect(r == -EINTR, 0));
    *mask = 0;
    if (__builtin_expect(r < 0, 0)) {
      if (r == -EAGAIN || r == -EWOULDBLOCK) {
        *mask = (op == EV_ACO_TRY_WRITE ? EVENTER_WRITE : EVENTER_READ) |
                EVENTER_EXCEPTION;
        if (quiet) return -1;
      }
      errno = (int)-r;
      return -1;
    }
    rv = (int)r;
    goto done;
  }
  eventer_fd_opset_t o = e->aco.orig_opset;
  do {
    *mask = 0;
    switch (op) {
    case EV_ACO_TRY_ACCEPT:
      rv = o->accept(e->fd, addr, alen, mask, e);
      break;
    case EV_ACO_TRY_READ:
      rv = o->read(e->fd, buf, len, mask, e);
      break;
    default:
      rv = o->write(e->fd, buf, len, mask, e);
      break;
    }
  } while (rv < 0 && errno == EINTR);
  if (rv >= 0) {
  done:
    if (op == EV_ACO_TRY_READ) {
      if (rv > 0 && (size_t)rv < len)
        e->acofd_flags |= EV_ACOFD_F_DRAINED;
      else
        e->acofd_flags &= (uint8_t)~EV_ACOFD_F_DRAINED;
    } else if (op == EV_ACO_TRY_WRITE && rv > 0) {
      e->acofd_flags |= EV_ACOFD_F_DRAINED;
    }
  } else if (!ev_would_block(errno)) {
    *mask = 0;
  } else if (!(*mask & (EVENTER_READ | EVENTER_WRITE))) {
    *mask = op == EV_ACO_TRY_WRITE ? EVENTER_WRITE : EVENTER_READ;
  }
  return rv;
}

int ev_aco_fd_try(eventer_t e, int op, void *buf, size_t len,
                  struct sockaddr *addr, socklen_t *alen, int *mask) {
  if (!ev_is_aco_fd(e)) {
    errno = EINVAL;
    return -1;
  }
  if (e->acofd_closed) {
    errno = EBADF;
    return -1;
  }
  return ev_aco_fd_attempt(e, op, buf, len, addr, alen, mask, 0);
}

/* Whether a read of running coroutine a on e, bounded by timeout, may go
 * straight to the readiness wait: e's opset keeps no data, e was just
 * written or last read short, and the wait can't end at once for a reason
 * a read would not have had (a timeout of {0,0}: "do not wait"; a pending
 * cancel). */
static inline int ev_aco_fd_may_skip_read(ev_aco_t *a, eventer_t e,
                                          const struct timeval *timeout) {
  const int need = EV_ACOFD_F_UNBUFFERED | EV_ACOFD_F_DRAINED;
  return (e->acofd_flags & (need | EV_ACOFD_F_NO_SKIP)) == need &&
         !(a->flags & EV_ACO_F_CANCEL_PENDING) &&
         (!timeout || timeout->tv_sec > 0 ||
          (timeout->tv_sec == 0 && timeout->tv_usec > 0));
}

static const struct timeval *ev_aco_fd_default_tmo(eventer_t e, int op) {
  int which = op == EV_ACO_TRY_ACCEPT ? EV_TMO_ACCEPT
              : op == EV_ACO_TRY_READ ? EV_TMO_READ
                                      : EV_TMO_WRITE;
  struct ev_aco_fd_tmo *t = e->aco.tmo;
  return t->has[which] ? &t->tmo[which] : NULL;
}

/* A read that went straight to the readiness wait, whose wait could not
 * start (errno err; e is alive: the caller's reference).  Cancelled or
 * closed: so be it.  Else the read decides: a deadline already passed
 * (data may be there all along), or epoll refused the fd (a regular
 * file, whose reads never block: read from now on). */
static __attribute__((noinline, cold)) int ev_aco_fd_read_after_skip(
    eventer_t e, void *buf, size_t len, int err) {
  if (err == ECANCELED || err == EBADF) {
    errno = err;
    return -1;
  }
  if (err == EPERM) e->acofd_flags |= EV_ACOFD_F_NO_SKIP;
  int mask;
  int rv =
      ev_aco_fd_attempt(e, EV_ACO_TRY_READ, buf, len, NULL, NULL, &mask, 1);
  if (rv < 0 && mask) errno = err;
  return rv;
}

/* The same for a wait that started and ended for `wake` other than READY
 * on an open event (e->acofd_waits already counts it out).  A timeout
 * makes one last read (the timer phase runs before the poll, so data may
 * have been there all along) before the wait's end lets go of e: the
 * caller's reference may be gone by now (an owner may free an event while
 * a coroutine it lent it to waits), and ev_aco_fd_wait_failed may drop
 * the last one. */
static __attribute__((noinline, cold)) int ev_aco_fd_skip_wait_failed(
    eventer_t e, int wake, void *buf, size_t len) {
  if (wake != EV_WAKE_TIMEOUT || e->acofd_closed)
    return ev_aco_fd_wait_failed(e, wake);
  int mask;
  int rv =
      ev_aco_fd_attempt(e, EV_ACO_TRY_READ, buf, len, NULL, NULL, &mask, 1);
  int err = rv < 0 && mask ? ETIMEDOUT : errno;
  ev_aco_fd_idle(e); /* may free e */
  errno = err;
  return rv;
}

/* The rest of a call whose attempt of op would block (mask: what it
 * needs): wait, try again, until done.  Out of line, so that the call's
 * own frame (what a coroutine parked in a read that waits first saves)
 * keeps only what its fast path needs. */
static __attribute__((noinline)) int ev_aco_fd_run_wait(
    ev_aco_t *a, eventer_t e, const int op, void *buf, size_t len,
    struct sockaddr *addr, socklen_t *alen, uint64_t deadline, int mask) {
  for (;;) {
    if (ev_aco_fd_wait(a, e, mask, deadline) != 0) return -1;
    int rv = ev_aco_fd_attempt(e, op, buf, len, addr, alen, &mask, 1);
    if (rv >= 0) return rv;
    if (!mask) return -1;
  }
}

/* A read: attempts, with a readiness wait before each one after the
 * first that would block, and before the first one too when it may go
 * straight to the wait (see the top of this file).  All its waits yield
 * from this frame, inline in the caller's: a coroutine parked in a read
 * saves one frame, and when it is resumed it returns through one frame
 * (each return after a switch is one the CPU mispredicts).  skip: the
 * wait under way replaces a read that was not made. */
static inline __attribute__((always_inline)) int ev_aco_fd_run_read(
    ev_aco_t *a, eventer_t e, void *buf, size_t len,
    const struct timeval *timeout) {
  uint64_t deadline = timeout ? ev_aco_deadline(timeout) : 0;
  /* what to wait for before the next attempt (EV_ACOFD_SKIP: the wait
   * replaces a read; kept in mask, whose slot outlives the wait anyway) */
  int mask = 0;
  if (len != 0 && ev_aco_fd_may_skip_read(a, e, timeout)) {
    e->acofd_flags &= (uint8_t)~EV_ACOFD_F_DRAINED;
    mask = EVENTER_READ | EV_ACOFD_SKIP;
  }
  for (;;) {
    if (mask) {
      if (ev_aco_fd_wait_start_run(a, e, mask, deadline) != EV_OP_WAITING)
        return (mask & EV_ACOFD_SKIP)
                   ? ev_aco_fd_read_after_skip(e, buf, len, errno)
                   : -1;
      int wake = ev_aco_wait_yield_co(a);
      e->acofd_waits--;
      if (__builtin_expect(wake != EV_WAKE_READY || e->acofd_closed, 0))
        return (mask & EV_ACOFD_SKIP)
                   ? ev_aco_fd_skip_wait_failed(e, wake, buf, len)
                   : ev_aco_fd_wait_failed(e, wake);
    }
    int rv =
        ev_aco_fd_attempt(e, EV_ACO_TRY_READ, buf, len, NULL, NULL, &mask, 1);
    if (__builtin_expect(rv >= 0, 1)) return rv;
    if (!mask) return -1;
  }
}

/* Read/write/accept, instantiated once per op (a constant).  A write or
 * an accept: an attempt, then the wait loop if it would block (out of
 * line: a write's frame stays small when it does not block). */
static inline __attribute__((always_inline)) int ev_aco_fd_run(
    eventer_t e, const int op, void *buf, size_t len, struct sockaddr *addr,
    socklen_t *alen, const struct timeval *timeout) {
  ev_aco_t *a = ev_aco_fd_caller(e);
  if (!a) return -1;
  if (!timeout && e->aco.tmo) timeout = ev_aco_fd_default_tmo(e, op);
  if (op == EV_ACO_TRY_READ) return ev_aco_fd_run_read(a, e, buf, len, timeout);
  int mask;
  int rv = ev_aco_fd_attempt(e, op, buf, len, addr, alen, &mask, 1);
  if (__builtin_expect(rv >= 0, 1)) return rv;
  if (!mask) return -1;
  return ev_aco_fd_run_wait(a, e, op, buf, len, addr, alen,
                            timeout ? ev_aco_deadline(timeout) : 0, mask);
}

int eventer_aco_read(eventer_aco_t e, void *buff, size_t len,
                     struct timeval *timeout) {
  return ev_aco_fd_run((eventer_t)e, EV_ACO_TRY_READ, buff, len, NULL, NULL,
                       timeout);
}

/* eventer_aco_write through e's opset (the whole call). */
static __attribute__((noinline)) int ev_aco_fd_write_opset(
    eventer_t e, const void *buff, size_t len, struct timeval *timeout) {
  return ev_aco_fd_run(e, EV_ACO_TRY_WRITE, (void *)buff, len, NULL, NULL,
                       timeout);
}

/* eventer_aco_write after a write(2) on the POSIX opset failed (errno
 * says why): retry, wait or fail as ev_aco_fd_run would have. */
static __attribute__((noinline)) int ev_aco_fd_write_failed(
    eventer_t e, const void *buff, size_t len, struct timeval *timeout) {
  if (errno == EINTR) return ev_aco_fd_write_opset(e, buff, len, timeout);
  if (!ev_would_block(errno)) return -1;
  if (!timeout && e->aco.tmo)
    timeout = (struct timeval *)ev_aco_fd_default_tmo(e, EV_ACO_TRY_WRITE);
  return ev_aco_fd_run_wait(ev_aco_self(), e, EV_ACO_TRY_WRITE, (void *)buff,
                            len, NULL, NULL,
                            timeout ? ev_aco_deadline(timeout) : 0,
                            EVENTER_WRITE | EVENTER_EXCEPTION);
}

int eventer_aco_write(eventer_aco_t ae, const void *buff, size_t len,
                      struct timeval *timeout) {
  eventer_t e = (eventer_t)ae;
  if (!ev_aco_fd_caller(e)) return -1;
  if (__builtin_expect(!(e->acofd_flags & EV_ACOFD_F_POSIX), 0))
    return ev_aco_fd_write_opset(e, buff, len, timeout);
  /* the usual write: the POSIX opset's, done here with as little around
   * it as a callback's eventer_write has (the timeout matters only if it
   * would block) */
  long r = ev_aco_sys_rw(e, EV_ACO_TRY_WRITE, (void *)buff, len);
  if (__builtin_expect(r < 0, 0)) {
    errno = (int)-r;
    return ev_aco_fd_write_failed(e, buff, len, timeout);
  }
  if (r > 0) e->acofd_flags |= EV_ACOFD_F_DRAINED;
  return (int)r;
}

int eventer_aco_accept(eventer_aco_t e, struct sockaddr *addr, socklen_t *len,
                       struct timeval *timeout) {
  return ev_aco_fd_run((eventer_t)e, EV_ACO_TRY_ACCEPT, NULL, 0, addr, len,
                       timeout);
}

int eventer_aco_connect(eventer_aco_t ae, const struct sockaddr *addr,
                        socklen_t len, struct timeval *timeout) {
  eventer_t e = (eventer_t)ae;
  if (!addr) {
    errno = EINVAL;
    return -1;
  }
  ev_aco_t *a = ev_aco_fd_caller(e);
  if (!a) return -1;
  int rv;
  do {
    rv = connect(e->fd, addr, len);
  } while (rv < 0 && errno == EINTR);
  if (rv == 0) return 0;
  if (errno != EINPROGRESS) return -1;
  if (ev_aco_fd_wait(a, e, EVENTER_WRITE,
                     timeout ? ev_aco_deadline(timeout) : 0) != 0)
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
  if (!ev_is_aco_fd(e)) {
    errno = EINVAL;
    return -1;
  }
  if (e->acofd_closed) {
    errno = EBADF;
    return -1;
  }
  e->acofd_closed = 1;
  ev_aco_wake_all(&e->aco.waiters, EV_WAKE_CLOSED);
  /* The waits under way end at their next turn and still look at e then;
   * without the registration, a reference of ours keeps it until the last
   * one has ended. */
  if (e->acofd_waits && !(e->acofd_flags & EV_ACOFD_F_CLOSE_REF)) {
    e->acofd_flags |= EV_ACOFD_F_CLOSE_REF;
    eventer_ref(e);
  }
  ev_aco_fd_unregister(e);
  int mask = 0;
  return e->aco.orig_opset->close(e->fd, &mask, e);
}

void eventer_aco_free(eventer_aco_t ae) {
  eventer_t e = (eventer_t)ae;
  /* Still registered only because the callback that resumed the last
   * waiter has not returned yet: let the fd go now, so that a new event
   * for the same fd can be registered right away. */
  if (ev_is_aco_fd(e) && e->acofd_reg_mask && e->acofd_waits == 0 &&
      ev_aco_waitq_empty(&e->aco.waiters))
    ev_aco_fd_unregister(e);
  if (ev_is_aco_fd(e)) e->acofd_flags |= EV_ACOFD_F_FREED;
  eventer_free(e);
}

static void ev_aco_set_timeout(eventer_aco_t ae, int which,
                               const struct timeval *duration) {
  eventer_t e = (eventer_t)ae;
  if (!ev_is_aco_fd(e)) return;
  struct ev_aco_fd_tmo *t = e->aco.tmo;
  if (!t) {
    if (!duration) return;
    t = calloc(1, sizeof(*t));
    if (!t) {
      mtevL(eventer_err, "eventer_aco_set_*_timeout: out of memory\n");
      return;
    }
    e->aco.tmo = t;
  }
  t->has[which] = duration != NULL;
  if (duration) t->tmo[which] = *duration;
}

void eventer_aco_set_accept_timeout(eventer_aco_t e, struct timeval *duration) {
  ev_aco_set_timeout(e, EV_TMO_ACCEPT, duration);
}
void eventer_aco_set_read_timeout(eventer_aco_t e, struct timeval *duration) {
  ev_aco_set_timeout(e, EV_TMO_READ, duration);
}
void eventer_aco_set_write_timeout(eventer_aco_t e, struct timeval *duration) {
  ev_aco_set_timeout(e, EV_TMO_WRITE, duration);
}

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
  if (!ev_aco_self()) return e->aco.orig_opset->accept(fd, addr, len, mask, e);
  return ev_aco_fd_run(e, EV_ACO_TRY_ACCEPT, NULL, 0, addr, len, NULL);
}
static int ev_aco_op_read(int fd, void *buf, size_t len, int *mask,
                          void *closure) {
  eventer_t e = closure;
  if (!ev_aco_self()) return e->aco.orig_opset->read(fd, buf, len, mask, e);
  return ev_aco_fd_run(e, EV_ACO_TRY_READ, buf, len, NULL, NULL, NULL);
}
static int ev_aco_op_write(int fd, const void *buf, size_t len, int *mask,
                           void *closure) {
  eventer_t e = closure;
  if (!ev_aco_self()) return e->aco.orig_opset->write(fd, buf, len, mask, e);
  return ev_aco_fd_run(e, EV_ACO_TRY_WRITE, (void *)buf, len, NULL, NULL, NULL);
}
static int ev_aco_op_close(int fd, int *mask, void *closure) {
  (void)fd;
  (void)mask;
  return eventer_aco_close((eventer_aco_t)closure);
}

/* ---- conversion and the event hooks ----------------------------------------------- */

/* e back to classic: its opset and callback, its bytes free for another
 * kind (it has no waiters and is not registered). */
static void ev_aco_fd_revert(eventer_t e) {
  e->opset = e->aco.orig_opset;
  e->callback = e->aco.orig_cb;
  free(e->aco.tmo);
  memset(&e->aco, 0, sizeof(e->aco));
  e->acofd_flags = 0;
  e->acofd_closed = 0;
  e->acofd_reg_mask = 0;
  e->acofd_in_cb = 0;
  e->acofd_waits = 0;
}

void ev_aco_fd_event_free(eventer_t e) {
  if (!ev_is_aco_fd(e)) return;
  /* waiters hold references; the registration's was just dropped by
   * whoever unregistered it (the loop at eventer_fini, or us) */
  EV_ASSERT(ev_aco_waitq_empty(&e->aco.waiters),
            "an aco event is freed only when nothing waits on it");
  free(e->aco.tmo);
  e->aco.tmo = NULL;
}

void ev_aco_fd_event_copy(eventer_t dst, eventer_t src) {
  if (!ev_is_aco_fd(src)) return;
  /* the copy is classic: the core copied opset_ctx (the original one: a
   * conversion leaves it alone) and left the state bytes zero */
  dst->opset = src->aco.orig_opset;
  dst->callback = src->aco.orig_cb;
}

/* An event registered on l for its fd keeps that registration: it
 * becomes the aco event's (its reference the registration's, its mask
 * the registered one), so a connection handed from a callback to a
 * coroutine costs no epoll_ctl DEL and ADD.  Not while l dispatches e:
 * the loop would apply the callback's return value to the aco event. */
static int ev_aco_fd_adoptable(eventer_t e, ev_loop_t *l) {
  int st = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
  if (st == EV_ST_NONE) return 0;
  if (st == EV_ST_FD && ev_loop_self() == l && ev_event_owner(e) == l &&
      l->current != e)
    return 1;
  return -1;
}

int ev_aco_fd_convert(eventer_t e, ev_loop_t *l) {
  int adopt;
  if (!e || !l || e->fd < 0 || ev_is_aco_fd(e) ||
      (e->mask & (EVENTER_TIMER | EVENTER_RECURRENT | EVENTER_ASYNCH)) ||
      (adopt = ev_aco_fd_adoptable(e, l)) < 0) {
    errno = EINVAL;
    return -1;
  }
  eventer_fd_opset_t o = e->opset ? e->opset : eventer_POSIX_fd_opset;
  e->aco.orig_opset = o;
  e->aco.orig_cb = e->callback;
  e->aco.tmo = NULL;
  ev_aco_waitq_init(&e->aco.waiters);
  e->acofd_flags = (uint8_t)(
      EV_ACOFD_F_ACO |
      (ev_aco_opset_unbuffered(o) ? EV_ACOFD_F_UNBUFFERED : 0) |
      (o == eventer_POSIX_fd_opset ? EV_ACOFD_F_POSIX : 0));
  e->acofd_closed = 0;
  e->acofd_reg_mask = 0;
  e->acofd_in_cb = 0;
  e->acofd_waits = 0;
  e->opset = &ev_aco_opset_s;
  e->callback = ev_aco_fd_cb;
  if (adopt) {
    /* waits for what it is registered for need no epoll_ctl; a fire with
     * nobody waiting takes it out (ev_aco_fd_cb) */
    e->acofd_reg_mask =
        (uint8_t)(e->mask & (EVENTER_READ | EVENTER_WRITE | EVENTER_EXCEPTION));
  } else {
    e->mask = 0;
    __atomic_store_n(&e->owner, l, __ATOMIC_RELEASE);
  }
  return 0;
}

eventer_aco_t eventer_set_eventer_aco_co(eventer_t e, aco_t *co) {
  if (!e) {
    errno = EINVAL;
    return NULL;
  }
  if (co == NULL) { /* back to classic */
    if (!ev_is_aco_fd(e) || e->acofd_reg_mask || e->acofd_waits ||
        !ev_aco_waitq_empty(&e->aco.waiters)) {
      errno = ev_is_aco_fd(e) ? EBUSY : EINVAL;
      return NULL;
    }
    ev_aco_fd_revert(e);
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
