/*
 * eventer_aco_impl.h - the coroutine layer's internals, shared by
 * eventer_aco.c, eventer_aco_sync.c (semaphores, mutexes, wait groups,
 * channels) and the language proxies (the Go binding).  Not installed.
 *
 * Parking is the one primitive everything is built on:
 *
 *   w = ev_aco_park(a, q, deadline_ns, kind);
 *
 * suspends the running coroutine `a` (optionally linked on wait queue q,
 * optionally until a monotonic deadline) until somebody wakes it, and
 * returns why it was woken (EV_WAKE_*).  Waking is always done on the
 * owner loop's thread:
 *
 *   ev_aco_wake(a, reason)      schedules the resume for the next timer
 *                               phase (safe from anywhere on the loop
 *                               thread, including other coroutines);
 *   ev_aco_wake_now(a, reason)  resumes it right here; only from the loop's
 *                               own dispatch (a callback, a timer node, a
 *                               task), never from inside a coroutine.
 *
 * A woken coroutine has already been unlinked from its wait queue and its
 * deadline disarmed, so a wait never leaves anything stale behind.
 */
#ifndef EVENTER_ACO_IMPL_H
#define EVENTER_ACO_IMPL_H

#include "aco.h"
#include "eventer_aco.h"
#include "eventer_impl.h"

/* ---- intrusive wait queues ----------------------------------------------
 * Circular doubly-linked lists with a sentinel, so a waiter unlinks itself
 * (timeout, cancel) without knowing which queue it is on. */
typedef struct ev_aco_link {
  struct ev_aco_link *next, *prev;
} ev_aco_link_t;

typedef struct {
  ev_aco_link_t head;
} ev_aco_waitq_t;

static inline void ev_aco_waitq_init(ev_aco_waitq_t *q) {
  q->head.next = q->head.prev = &q->head;
}
static inline int ev_aco_waitq_empty(const ev_aco_waitq_t *q) {
  return q->head.next == &q->head;
}
static inline void ev_aco_link_init(ev_aco_link_t *l) { l->next = l->prev = l; }
static inline int ev_aco_linked(const ev_aco_link_t *l) { return l->next != l; }
static inline void ev_aco_unlink(ev_aco_link_t *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->next = l->prev = l;
}
static inline void ev_aco_link_tail(ev_aco_waitq_t *q, ev_aco_link_t *l) {
  l->prev = q->head.prev;
  l->next = &q->head;
  q->head.prev->next = l;
  q->head.prev = l;
}

/* ---- coroutines ------------------------------------------------------------ */

enum { /* ev_aco_t.state */
  EV_ACO_NEW = 0,  /* created, first resume scheduled */
  EV_ACO_RUNNING,  /* on the CPU */
  EV_ACO_PARKED,   /* in ev_aco_park */
  EV_ACO_RUNNABLE, /* woken, resume scheduled or under way */
  EV_ACO_DONE      /* ended; memory about to be freed */
};

enum { /* why a park returned */
  EV_WAKE_NONE = 0,
  EV_WAKE_READY,   /* what it waited for happened */
  EV_WAKE_TIMEOUT, /* its deadline passed */
  EV_WAKE_CANCEL,  /* eventer_aco_cancel */
  EV_WAKE_CLOSED   /* the event it waited on was closed */
};

enum { /* what a park may be woken by, besides READY and its deadline */
  EV_WAIT_PLAIN = 0,       /* nothing else (asynch and gate waits) */
  EV_WAIT_CANCELLABLE = 1, /* eventer_aco_cancel */
  EV_WAIT_PARK = 2         /* cancel, and eventer_aco_wake */
};

enum { /* ev_aco_t.flags */
  EV_ACO_F_CANCEL_PENDING = 0x01, /* cancel arrived while not cancellable */
  EV_ACO_F_WAKE_TOKEN = 0x02,     /* eventer_aco_wake arrived before park */
  EV_ACO_F_PROXY = 0x04,          /* runs operations for a foreign coroutine */
  EV_ACO_F_PREWAIT = 0x08,        /* parked idle in a wait set up from
                                   * outside (ev_aco_fd_prewait): its wake
                                   * runs ev_aco_prewait_hook instead of
                                   * switching to it */
  EV_ACO_F_END_HOOK = 0x10        /* ev_aco_end_hook runs when it ends */
};

/* Per-coroutine state, allocated with the aco_t (aco_create_ext): a parked
 * coroutine costs sizeof(aco_t) + sizeof(ev_aco_t) + its saved stack. */
typedef struct ev_aco {
  eventer_timer_node_t timer; /* deadlines and scheduled resumes */
  ev_aco_link_t link;         /* on a wait queue while parked */
  ev_aco_link_t all;          /* on its loop's list of live coroutines */
  void (*fn)(void);           /* the coroutine body */
  eventer_aco_co_t *handle;   /* NULL until someone asks for one */
  uint64_t resumes;
  uint64_t bytes_copied;
  uint8_t state;              /* EV_ACO_* */
  uint8_t wake;               /* EV_WAKE_*: why the last park returned */
  uint8_t flags;              /* EV_ACO_F_* */
  uint8_t wait_kind;          /* EV_WAIT_* of the current park */
  int32_t aux;                /* the fd mask an fd waiter needs */
} ev_aco_t;

/* Per-loop coroutine state (ev_loop_t.aco). */
#define EV_ACO_MAX_STACK_SIZES 8
typedef struct ev_aco_loop {
  ev_loop_t *loop;
  aco_t *main_co;
  struct {
    size_t sz;
    aco_share_stack_t *ss;
  } stacks[EV_ACO_MAX_STACK_SIZES];
  int nstacks;
  ev_aco_waitq_t all;         /* live coroutines (for fini) */
} ev_aco_loop_t;

/* Set by the listener layer: called on the loop thread, in main context,
 * when a coroutine flagged EV_ACO_F_END_HOOK has ended (returned or called
 * aco_exit), before its memory goes (its aco_t arg is still readable). */
extern void (*ev_aco_end_hook)(ev_aco_t *a);

/* Set by the proxy layer: completes a pre-wait of coroutine a (whose wake
 * reason is in a->wake) in main context, without resuming a. */
extern void (*ev_aco_prewait_hook)(ev_aco_t *a);
/* eventer_fini drops a proxy coroutine that is still suspended: the proxy
 * layer frees what it holds for it (set by the proxy layer). */
extern void (*ev_aco_proxy_fini_hook)(ev_aco_t *a);

static inline aco_t *ev_aco_co(ev_aco_t *a) { return (aco_t *)a - 1; }
static inline ev_aco_t *ev_aco_of(aco_t *co) { return (ev_aco_t *)aco_ext(co); }

/* The running eventer coroutine, or NULL (main context or off-loop). */
ev_aco_t *ev_aco_self(void);
/* The calling loop's coroutine state, created on first use; NULL off-loop
 * (errno ENXIO). */
ev_aco_loop_t *ev_aco_loop_get(void);
/* The loop a coroutine belongs to. */
static inline ev_loop_t *ev_aco_loop_of(ev_aco_t *a) {
  return ((ev_aco_loop_t *)ev_aco_co(a)->main_co->arg)->loop;
}

/* Creates a coroutine on the calling loop.  It does not run: either
 * ev_aco_resume() it (main context) or ev_aco_schedule() it. */
ev_aco_t *ev_aco_create(void (*fn)(void), void *arg, size_t stack_size,
                        size_t save_size, const char *name, int flags);
/* a's handle, created on demand (borrowed: valid until a ends; take a
 * reference with eventer_aco_co_ref to keep it). */
eventer_aco_co_t *ev_aco_handle_of(ev_aco_t *a);

/* Resumes a (NEW/RUNNABLE) coroutine now, from main context on its loop;
 * reaps it if it ended. */
void ev_aco_resume(ev_aco_t *a);
/* Resume at the next timer phase (a NEW or RUNNABLE coroutine). */
void ev_aco_schedule(ev_aco_t *a);

/* See the top of this file.  deadline_ns: CLOCK_MONOTONIC, 0 for none. */
int ev_aco_park(ev_aco_t *a, ev_aco_waitq_t *q, uint64_t deadline_ns,
                int wait_kind);
void ev_aco_wake(ev_aco_t *a, int reason);
void ev_aco_wake_now(ev_aco_t *a, int reason);
/* Wakes the first waiter of q (scheduled); returns it or NULL. */
ev_aco_t *ev_aco_wake_one(ev_aco_waitq_t *q, int reason);
void ev_aco_wake_all(ev_aco_waitq_t *q, int reason);

/* One non-blocking attempt of an aco event's operation through its
 * original opset, outside any coroutine (the foreign bindings' fast path):
 * the result, or -1 with errno; on EAGAIN *mask is what to wait for.
 * EBADF once the event was closed. */
enum { EV_ACO_TRY_READ = 1, EV_ACO_TRY_WRITE, EV_ACO_TRY_ACCEPT };
int ev_aco_fd_try(eventer_t e, int op, void *buf, size_t len,
                  struct sockaddr *addr, socklen_t *alen, int *mask);

/* For a foreign binding that does an aco event's I/O itself when its
 * opset is the plain POSIX one: the address of the event's "closed" flag
 * (non-zero once eventer_aco_close ran; valid while the event lives), or
 * NULL if e is not an aco event or its opset is not POSIX. */
const volatile uint8_t *ev_aco_fd_posix_closed_flag(eventer_t e);

/* A wait for e's readiness, set up for a coroutine that is parked idle
 * (the proxy of a foreign coroutine) without switching to it: it becomes
 * an fd waiter exactly as eventer_aco_wait_ready would make it, and its
 * idle park returns when the fd is ready, the deadline passes, it is
 * cancelled or e is closed; it then calls ev_aco_fd_prewait_done.
 * 0, or -1 with *err when the wait ends at once (EBADF, ECANCELED,
 * ETIMEDOUT, EINVAL). */
int ev_aco_fd_prewait(ev_aco_t *a, eventer_t e, int mask, uint64_t deadline,
                      int *err);
/* After the pre-wait's park returned (a->wake): 0 ready, or -1 with *err;
 * leaves the registration clean and drops the event reference. */
int ev_aco_fd_prewait_done(ev_aco_t *a, eventer_t e, int *err);

/* A monotonic deadline for a relative timeout (NULL: 0 = none). */
uint64_t ev_aco_deadline(const struct timeval *timeout);
/* The errno for a park result other than READY. */
int ev_aco_wake_errno(int wake);

#endif /* EVENTER_ACO_IMPL_H */
