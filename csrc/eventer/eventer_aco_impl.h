/*
 * eventer_aco_impl.h - the coroutine layer's internals, shared by
 * eventer_aco.c (coroutines, parking, sleep, asynch work, handles),
 * eventer_aco_fd.c (fd events), eventer_aco_sync.c (semaphores, mutexes,
 * wait groups, channels) and eventer_aco_proxy.c (proxies: the C side of
 * coroutines written in another language).  Not installed.
 *
 * Waiting.  Everything that waits is built on one primitive, split in two
 * around the moment the waiter is away:
 *
 *   w = ev_aco_wait_begin(a, q, deadline_ns, kind);
 *       a starts waiting (linked on wait queue q if any, its deadline
 *       armed); EV_WAKE_NONE, or why the wait is over already
 *   ...  a is away: a C coroutine yields (ev_aco_wait_yield); a proxy's
 *        foreign coroutine is back in its own runtime
 *   w = ev_aco_wait_end(a);
 *       after a waker ended the wait: a is unlinked, its deadline
 *       disarmed; returns why it was woken (EV_WAKE_*)
 *
 * Waking is always done on the owner loop's thread:
 *
 *   ev_aco_wake(a, reason)      schedules the end for the next timer
 *                               phase (safe from anywhere on the loop
 *                               thread, including other coroutines);
 *   ev_aco_wake_now(a, reason)  ends it right here; only from the loop's
 *                               own dispatch (a callback, a timer node, a
 *                               task), never from inside a coroutine.
 *
 * Each blocking call is written once, as a start and an end around that
 * wait (ev_aco_sleep_begin/_end, ev_aco_fd_wait_begin/_end,
 * ev_aco_sync_begin/_end, ...): a C coroutine runs start, yield, end; a
 * proxy runs the start when its foreign coroutine calls, and the end when
 * the loop ends the wait (ev_aco_resume of a proxy calls
 * ev_aco_proxy_resume, which reports the result to the foreign driver).
 * So both languages share every line of the semantics.
 */
#ifndef EVENTER_ACO_IMPL_H
#define EVENTER_ACO_IMPL_H

#include "aco.h"
#include "eventer_aco.h"
#include "eventer_impl.h"

/* ---- intrusive wait queues ----------------------------------------------
 * Circular doubly-linked lists with a sentinel (ev_aco_link_t and
 * ev_aco_waitq_t, in eventer_impl.h), so a waiter unlinks itself
 * (timeout, cancel) without knowing which queue it is on. */

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

/* ---- waiters: coroutines and proxies ---------------------------------------- */

enum { /* ev_aco_t.state */
  EV_ACO_NEW = 0,  /* created, first resume scheduled */
  EV_ACO_RUNNING,  /* on the CPU; a proxy: not waiting */
  EV_ACO_PARKED,   /* waiting (between wait_begin and its waker) */
  EV_ACO_RUNNABLE, /* woken, resume scheduled or under way */
  EV_ACO_DONE      /* ended; memory about to be freed */
};

enum { /* why a wait ended */
  EV_WAKE_NONE = 0,
  EV_WAKE_READY,   /* what it waited for happened */
  EV_WAKE_TIMEOUT, /* its deadline passed */
  EV_WAKE_CANCEL,  /* eventer_aco_cancel */
  EV_WAKE_CLOSED   /* the event it waited on was closed */
};

enum { /* what a wait may be ended by, besides READY and its deadline */
  EV_WAIT_PLAIN = 0,       /* nothing else (asynch and gate waits) */
  EV_WAIT_CANCELLABLE = 1, /* eventer_aco_cancel */
  EV_WAIT_PARK = 2         /* cancel, and eventer_aco_wake */
};

enum { /* ev_aco_t.flags */
  EV_ACO_F_CANCEL_PENDING = 0x01, /* cancel arrived while not cancellable */
  EV_ACO_F_WAKE_TOKEN = 0x02,     /* eventer_aco_wake arrived before park */
  EV_ACO_F_PROXY = 0x04,          /* not a coroutine: a proxy's waiter
                                   * (eventer_aco_proxy.c); no aco_t */
  EV_ACO_F_END_HOOK = 0x08,       /* the end hook runs when it ends */
  EV_ACO_F_HAS_LOOP = 0x10        /* a coroutine that started: u holds its
                                   * loop (its body was read) */
};

/* Per-waiter state.  A coroutine's is allocated with its aco_t
 * (aco_create_ext): a parked coroutine costs sizeof(aco_t) +
 * sizeof(ev_aco_t) + its saved stack.  A proxy's is the head of the
 * proxy. */
typedef struct ev_aco {
  eventer_timer_node_t timer; /* deadlines and scheduled resumes */
  ev_aco_link_t link;         /* on a wait queue while waiting */
  ev_aco_link_t all;          /* on its loop's list of live waiters */
  union {
    void (*fn)(void);         /* a coroutine: its body, until it starts */
    ev_loop_t *loop;          /* a proxy: its loop */
  } u;
  eventer_aco_co_t *handle;   /* NULL until someone asks for one */
  uint64_t resumes;
  uint64_t bytes_copied;
  uint8_t state;              /* EV_ACO_* */
  uint8_t wake;               /* EV_WAKE_*: why the last wait ended */
  uint8_t flags;              /* EV_ACO_F_* */
  uint8_t wait_kind;          /* EV_WAIT_* of the current wait */
  int32_t aux;                /* per wait: the fd mask an fd waiter needs,
                               * a sync waiter's outcome, a job's */
} ev_aco_t;

/* Per-loop coroutine state (ev_loop_t.aco). */
#define EV_ACO_MAX_STACK_SIZES 8
#define EV_ACO_SPARE_MAX 16
/* a spare keeps its save stack: only those up to this size are kept */
#define EV_ACO_SPARE_SAVE_MAX 4096
typedef struct ev_aco_loop {
  ev_loop_t *loop;
  aco_t *main_co;
  struct {
    size_t sz;
    aco_share_stack_t *ss;
  } stacks[EV_ACO_MAX_STACK_SIZES];
  int nstacks;
  ev_aco_waitq_t all;         /* live waiters, coroutines and proxies */
  /* ended coroutines kept for the next ones to start (aco_reset): a
   * coroutine per request costs no malloc and free */
  int nspare;
  aco_t *spare[EV_ACO_SPARE_MAX];
} ev_aco_loop_t;

static inline int ev_aco_is_proxy(const ev_aco_t *a) {
  return (a->flags & EV_ACO_F_PROXY) != 0;
}
/* A coroutine's aco_t (never for a proxy). */
static inline aco_t *ev_aco_co(ev_aco_t *a) { return (aco_t *)a - 1; }
static inline ev_aco_t *ev_aco_of(aco_t *co) { return (ev_aco_t *)aco_ext(co); }

/* Every eventer coroutine's libaco function (it runs ev_aco_t.u.fn). */
void ev_aco_entry(void);
/* The running eventer coroutine, or NULL (main context, off-loop, or a
 * bare libaco coroutine a program made itself). */
static inline ev_aco_t *ev_aco_self(void) {
  aco_t *co = aco_gtls_co;
  return (co && co->fp == ev_aco_entry) ? ev_aco_of(co) : NULL;
}
/* The calling loop's coroutine state, created on first use; NULL off-loop
 * (errno ENXIO). */
ev_aco_loop_t *ev_aco_loop_get(void);
/* The loop a waiter belongs to. */
static inline ev_loop_t *ev_aco_loop_of(ev_aco_t *a) {
  if (a->flags & (EV_ACO_F_PROXY | EV_ACO_F_HAS_LOOP)) return a->u.loop;
  return ((ev_aco_loop_t *)ev_aco_co(a)->main_co->arg)->loop;
}

/* Creates a coroutine on the calling loop.  It does not run: either
 * ev_aco_resume() it (main context) or ev_aco_schedule() it. */
ev_aco_t *ev_aco_create(void (*fn)(void), void *arg, size_t stack_size,
                        size_t save_size, const char *name);
/* Makes a a proxy's waiter on the calling loop (state RUNNING: idle) and
 * links it on the loop's list.  -1/ENXIO off-loop. */
int ev_aco_proxy_waiter_init(ev_aco_t *a);
/* Unlinks a proxy's waiter from its loop's list (it must not wait). */
void ev_aco_proxy_waiter_fini(ev_aco_t *a);
/* a's handle, created on demand (borrowed: valid until a ends; take a
 * reference with eventer_aco_co_ref to keep it).  Coroutines only. */
eventer_aco_co_t *ev_aco_handle_of(ev_aco_t *a);
/* The listener layer's end hook: called on the loop thread, in main
 * context, when a coroutine flagged EV_ACO_F_END_HOOK has ended (returned
 * or called aco_exit), before its memory goes (its aco_t arg is still
 * readable), with at_fini 0; and with at_fini 1 on eventer_fini's thread
 * when such a coroutine goes with its loop (the coroutine layer's
 * loop_fini: it never runs again; it is off its wait queues and timers,
 * no loop runs, and nothing may be posted to one).  One hook for the
 * process; set before such coroutines run. */
void ev_aco_set_end_hook(void (*fn)(ev_aco_t *a, int at_fini));

/* Resumes a (NEW/RUNNABLE) from main context on its loop: a coroutine runs
 * (and is reaped if it ended); a proxy's wait ends
 * (ev_aco_proxy_resume). */
void ev_aco_resume(ev_aco_t *a);
/* A coroutine that ended: its memory goes (or is kept for the next one). */
void ev_aco_reap(ev_aco_t *a);
void ev_aco_proxy_resume(ev_aco_t *a);

/* Live stack bytes of the coroutine this thread's loop last switched away
 * from (what it saved): the first save stack of a new coroutine is sized
 * from it (ev_aco_create). */
extern __thread size_t ev_aco_save_hint;

/* What resuming co costs in stack copies, for its stats, the owner's, and
 * the next coroutine's first save stack; a debug line says it when `log`
 * (a constant) and eventer_deb is on. */
static inline __attribute__((always_inline)) void ev_aco_resume_account(
    ev_aco_t *a, aco_t *co, const int log) {
  aco_share_stack_t *ss = co->share_stack;
  aco_t *owner = ss->owner;
  size_t in = 0, out = 0;
  if (owner != co) {
    in = co->save_stack.valid_sz;
    if (owner) {
      out = (size_t)((char *)ss->align_retptr -
                     (char *)owner->reg[ACO_REG_IDX_SP]);
      ev_aco_save_hint = out;
      ev_aco_of(owner)->bytes_copied += out;
    }
    a->bytes_copied += in;
  }
  if (log)
    mtevL(eventer_deb,
          "eventer_aco: resume %p: %zu stack bytes copied in, %zu out "
          "(save stack %zu, largest %zu)\n",
          (void *)co, in, out, co->save_stack.sz, co->save_stack.max_cpsz);
}

/* 1 when a resume of a coroutine that owns its share stack is a bare
 * acosw, as in aco.c without sanitizers (which announce every switch
 * there) */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define EV_ACO_PLAIN_SWITCH 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define EV_ACO_PLAIN_SWITCH 0
#endif
#endif
#ifndef EV_ACO_PLAIN_SWITCH
#define EV_ACO_PLAIN_SWITCH 1
#endif

/* ev_aco_resume's body for a coroutine (not a proxy), inline wherever a
 * resume is made: each frame between the loop's dispatch and the switch
 * is a return the CPU mispredicts when the coroutine yields back (a
 * switch leaves the return-address predictor with the other stack's
 * calls).  log: see ev_aco_resume_account. */
static inline __attribute__((always_inline)) void ev_aco_resume_co(
    ev_aco_t *a, const int log) {
  aco_t *co = ev_aco_co(a);
  aco_t *cur = aco_gtls_co;
  /* this thread's current context is its loop's main coroutine (the
   * usual case: both rules hold), else ask */
  if (__builtin_expect(cur != co->main_co, 0)) {
    EV_ASSERT(cur == NULL || aco_is_main_co(cur),
              "a coroutine is resumed only from its loop's main context, "
              "never from inside another coroutine");
    EV_ASSERT(((ev_aco_loop_t *)co->main_co->arg)->loop == ev_loop_self(),
              "a coroutine is resumed only on its own loop thread");
  }
  EV_ASSERT(a->state == EV_ACO_NEW || a->state == EV_ACO_RUNNABLE,
            "only a new or woken coroutine is resumed");
  ev_aco_resume_account(a, co, log);
  a->resumes++;
  a->state = EV_ACO_RUNNING;
#if EV_ACO_PLAIN_SWITCH
  /* co owns its share stack already (nothing to copy): what aco_resume
   * does then, which is the switch alone in a build without sanitizers
   * (its checks are the asserts above) */
  if (__builtin_expect(co->share_stack->owner == co, 1))
    acosw(co->main_co, co);
  else
    aco_resume_checked_(co);
#else
  aco_resume(co);
#endif
  if (co->is_end) ev_aco_reap(a);
}

/* ev_aco_resume's body, inline. */
static inline __attribute__((always_inline)) void ev_aco_resume_in(
    ev_aco_t *a) {
  if (ev_aco_is_proxy(a)) {
    /* a proxy has no coroutine to switch to: its wait ends here, and its
     * driver hears of it */
    EV_ASSERT(a->state == EV_ACO_RUNNABLE, "only a woken proxy is resumed");
    ev_aco_proxy_resume(a);
    return;
  }
  ev_aco_resume_co(a, 1);
}
/* Resume at the next timer phase (a NEW or RUNNABLE coroutine). */
void ev_aco_schedule(ev_aco_t *a);

/* See the top of this file.  deadline_ns: CLOCK_MONOTONIC, 0 for none.
 * a must be RUNNING: the running coroutine, or an idle proxy. */
static inline void ev_aco_assert_may_wait(ev_aco_t *a) {
  EV_ASSERT(a != NULL && a->state == EV_ACO_RUNNING &&
                (ev_aco_is_proxy(a) || ev_aco_co(a) == aco_current()),
            "only the running coroutine, or an idle proxy, starts a wait");
}
/* Inline: it is on every fd wait's path. */
static inline int ev_aco_wait_begin(ev_aco_t *a, ev_aco_waitq_t *q,
                                    uint64_t deadline_ns, int wait_kind) {
  ev_aco_assert_may_wait(a);
  if (__builtin_expect(a->flags & (EV_ACO_F_CANCEL_PENDING |
                                   EV_ACO_F_WAKE_TOKEN), 0)) {
    if (wait_kind >= EV_WAIT_CANCELLABLE &&
        (a->flags & EV_ACO_F_CANCEL_PENDING)) {
      a->flags &= (uint8_t)~EV_ACO_F_CANCEL_PENDING;
      return EV_WAKE_CANCEL;
    }
    if (wait_kind == EV_WAIT_PARK && (a->flags & EV_ACO_F_WAKE_TOKEN)) {
      a->flags &= (uint8_t)~EV_ACO_F_WAKE_TOKEN;
      return EV_WAKE_READY;
    }
  }
  if (deadline_ns && deadline_ns <= eventer_mono_ns()) return EV_WAKE_TIMEOUT;
  if (q) ev_aco_link_tail(q, &a->link);
  a->wait_kind = (uint8_t)wait_kind;
  a->wake = EV_WAKE_NONE;
  a->state = EV_ACO_PARKED;
  if (deadline_ns) eventer_timer_node_add_at_ns(&a->timer, deadline_ns);
  return EV_WAKE_NONE;
}
/* The same for a wait that ends at the loop's next timer phase (a yield):
 * EV_WAKE_NONE, or EV_WAKE_CANCEL (a pending cancel). */
int ev_aco_wait_begin_turn(ev_aco_t *a);
static inline int ev_aco_wait_end(ev_aco_t *a) {
  /* the waker set a->wake (or the deadline did) and unlinked it; a
   * deadline still armed is disarmed here */
  ev_aco_unlink(&a->link);
  if (a->timer.loop) eventer_timer_node_remove(&a->timer);
  a->state = EV_ACO_RUNNING;
  return a->wake;
}
/* The running coroutine a: yields until its wait ends; its reason. */
int ev_aco_wait_yield(ev_aco_t *a);
/* The same, inline (the yield is made from the caller's frame, so a
 * parked coroutine saves no frame of ours between its own and the
 * switch), and without ev_aco_wait_end's bookkeeping, for a C coroutine:
 * whatever resumed it (ev_aco_wake_now, the loop's fd dispatch, its timer
 * node firing, which ev_aco_wake and a deadline use) unlinked it,
 * disarmed or used up its timer node and made it RUNNING before the
 * switch, so only the reason is left to read. */
static inline __attribute__((always_inline)) int ev_aco_wait_yield_co(
    ev_aco_t *a) {
  aco_t *co = ev_aco_co(a);
  /* aco_yield1 without its misuse checks: a is ev_aco_self(), the running
   * coroutine (a bare acosw is what aco_yield1 makes in every build) */
  acosw(co, co->main_co);
  return a->wake;
}
/* begin, then yield if it waits: the whole wait of a C coroutine. */
static inline int ev_aco_park(ev_aco_t *a, ev_aco_waitq_t *q,
                              uint64_t deadline_ns, int wait_kind) {
  int w = ev_aco_wait_begin(a, q, deadline_ns, wait_kind);
  return w != EV_WAKE_NONE ? w : ev_aco_wait_yield(a);
}
void ev_aco_wake(ev_aco_t *a, int reason);
/* Ends a's wait and resumes it right here (on the loop's main context;
 * from inside a coroutine it is ev_aco_wake: scheduled).  Inline: the
 * HTTP engine hands every request to its idle coroutine with it. */
static inline __attribute__((always_inline)) void ev_aco_wake_now(
    ev_aco_t *a, int reason) {
  if (a->state != EV_ACO_PARKED) return;
  if (aco_current() != NULL) { /* inside a coroutine: can't nest */
    ev_aco_wake(a, reason);
    return;
  }
  ev_aco_unlink(&a->link);
  if (a->timer.loop) eventer_timer_node_remove(&a->timer);
  a->wake = (uint8_t)reason;
  a->state = EV_ACO_RUNNABLE;
  ev_aco_resume_in(a);
}
/* Wakes the first waiter of q (scheduled); returns it or NULL. */
ev_aco_t *ev_aco_wake_one(ev_aco_waitq_t *q, int reason);
void ev_aco_wake_all(ev_aco_waitq_t *q, int reason);

/* A monotonic deadline for a relative timeout (NULL: 0 = none). */
uint64_t ev_aco_deadline(const struct timeval *timeout);
/* The errno for a wait result other than READY. */
int ev_aco_wake_errno(int wake);

/* ---- the blocking calls, as start and end ------------------------------------
 * A start returns EV_OP_WAITING (the end follows the wait), or EV_OP_DONE
 * with the call's result in *rv (-1 with errno).  An end takes the wait's
 * result and returns the call's (-1 with errno). */
enum { EV_OP_DONE = 0, EV_OP_WAITING = 1 };

/* eventer_aco_sleep (duration NULL or negative: EINVAL; {0,0}: a yield) */
int ev_aco_sleep_begin(ev_aco_t *a, const struct timeval *duration,
                       int64_t *rv);
int64_t ev_aco_sleep_end(int wake);
/* eventer_aco_yield */
int ev_aco_yield_begin(ev_aco_t *a, int64_t *rv);
int64_t ev_aco_yield_end(int wake);
/* eventer_aco_park */
int ev_aco_park_begin(ev_aco_t *a, const struct timeval *timeout, int64_t *rv);
int64_t ev_aco_park_end(int wake);

/* Waiting for a job (eventer_aco_simple_asynch and family).  The job runs
 * f(closure) (simple) or func(op, closure), or asynch event user_e, on q
 * (NULL: the default queue) subqueue id; the waiter is resumed after its
 * COMPLETE.  An end reports -1/ETIMEDOUT if the job's deadline passed
 * before WORK could run, -1/ESHUTDOWN if the queue was destroyed first. */
typedef struct ev_aco_job_spec {
  eventer_asynch_simple_func_t simple;
  eventer_asynch_func_t func;
  void *closure;
  eventer_t user_e;        /* run_asynch: the caller's event */
  eventer_jobq_t *q;
  uint64_t id;
  struct timeval *deadline;
  int try_only;            /* refuse past the queue's backlog (EAGAIN) */
} ev_aco_job_spec_t;
int ev_aco_job_begin(ev_aco_t *a, const ev_aco_job_spec_t *spec, int64_t *rv);
int64_t ev_aco_job_end(ev_aco_t *a, int wake);

/* ---- fd events (eventer_aco_fd.c) ------------------------------------------------ */

enum { /* struct _event.acofd_flags */
  EV_ACOFD_F_ACO = 0x01,        /* an aco event: e->aco is its state */
  EV_ACOFD_F_UNBUFFERED = 0x02, /* its opset keeps no data of its own */
  EV_ACOFD_F_DRAINED = 0x04,    /* it was just written, or a read came
                                 * back short: the next read may wait
                                 * first */
  EV_ACOFD_F_NO_SKIP = 0x08,    /* a wait in place of a read was refused
                                 * (epoll can't watch the fd): always read */
  EV_ACOFD_F_CLOSE_REF = 0x10,  /* eventer_aco_close holds a reference
                                 * until the waits under way have ended */
  EV_ACOFD_F_POSIX = 0x20,      /* its opset is the POSIX one: its reads
                                 * and writes are made by the coroutine
                                 * calls themselves */
  EV_ACOFD_F_NOT_SOCK = 0x40,   /* POSIX opset, and its fd is no socket:
                                 * read(2) and write(2), not recv(2) and
                                 * send(2) */
  EV_ACOFD_F_FREED = 0x80       /* eventer_aco_free ran on it (a
                                 * listener's end at fini: the function
                                 * dropped a reference of its own) */
};

/* The loop's callback for aco fd events. */
int ev_aco_fd_cb(eventer_t e, int mask, void *closure, struct timeval *now);

/* The usual readiness report on an aco fd event: exactly one coroutine
 * waits on e, for a bit of mask, and mask is no exception.  That
 * coroutine (the loop may resume it itself, see ev_aco_fd_dispatch in
 * eventer_loop.c), or NULL: ev_aco_fd_cb decides. */
static inline ev_aco_t *ev_aco_fd_sole_waiter(eventer_t e, int mask) {
  if (!(e->acofd_flags & EV_ACOFD_F_ACO) || (mask & EVENTER_EXCEPTION))
    return NULL;
  ev_aco_link_t *h = &e->aco.waiters.head, *first = h->next;
  if (first == h || first->next != h) return NULL;
  ev_aco_t *w = EV_CONTAINER_OF(first, ev_aco_t, link);
  if (!(w->aux & mask) || (w->flags & EV_ACO_F_PROXY) ||
      w->state != EV_ACO_PARKED)
    return NULL;
  return w;
}

/* The mask of what e's waiters need. */
static inline int ev_aco_waiters_mask(eventer_t e) {
  int m = 0;
  for (ev_aco_link_t *l = e->aco.waiters.head.next; l != &e->aco.waiters.head;
       l = l->next)
    m |= EV_CONTAINER_OF(l, ev_aco_t, link)->aux;
  return m;
}

/* ev_aco_fd_cb's return value after it woke a waiter for a report that
 * was no exception: the mask e stays registered for.  The waiters it woke
 * will most likely wait again soon (the next read of a request/response
 * exchange): with nobody waiting now the registration stays as it is,
 * which saves an epoll_ctl DEL + ADD per exchange (if the fd fires before
 * anyone waits, ev_aco_fd_cb drops it then; a free or close of the event
 * drops it at once); else it narrows to what the waiters need.  0 when it
 * was unregistered meanwhile (a close). */
static inline int ev_aco_fd_rearm_woken(eventer_t e) {
  if (e->acofd_reg_mask == 0) return 0;
  int want = ev_aco_waiters_mask(e);
  if (want == 0) return e->acofd_reg_mask;
  e->acofd_reg_mask = (uint8_t)want;
  return want;
}

/* Converts classic fd event e into an aco event of loop l (the work of
 * eventer_set_eventer_aco, for callers that are not coroutines), adopting
 * e's registration if it has one on l (called on l's thread).  0, or
 * -1/EINVAL (no fd, already aco, registered elsewhere or dispatching),
 * ENOMEM. */
int ev_aco_fd_convert(eventer_t e, ev_loop_t *l);
/* Waiting for e to be ready for mask (READ and/or WRITE): the wait of
 * eventer_aco_wait_ready and of every fd call that would block.  A wait
 * takes no reference on e: e stays registered (the registration holds
 * one) from the start of a wait to its end, unless eventer_aco_close
 * unregisters it, which then holds a reference until the last wait that
 * was under way has ended.  End: 0 ready, or -1 with errno ETIMEDOUT,
 * ECANCELED, EBADF (closed). */
int ev_aco_fd_wait_begin(ev_aco_t *a, eventer_t e, int mask, uint64_t deadline,
                         int64_t *rv);
int64_t ev_aco_fd_wait_end(ev_aco_t *a, eventer_t e, int wake);

/* One non-blocking attempt of an aco event's operation through its
 * original opset, outside any coroutine (the foreign bindings' attempt):
 * the result, or -1 with errno; on EAGAIN *mask is what to wait for.
 * EBADF once the event was closed, EINVAL if e is not an aco event. */
enum { EV_ACO_TRY_READ = 1, EV_ACO_TRY_WRITE, EV_ACO_TRY_ACCEPT };
int ev_aco_fd_try(eventer_t e, int op, void *buf, size_t len,
                  struct sockaddr *addr, socklen_t *alen, int *mask);

/* For a foreign binding that does an aco event's I/O itself when its
 * opset is the plain POSIX one: the address of the event's "closed" flag
 * (non-zero once eventer_aco_close ran; valid while the event lives), or
 * NULL if e is not an aco event or its opset is not POSIX. */
const volatile uint8_t *ev_aco_fd_posix_closed_flag(eventer_t e);
/* Whether eventer_aco_close ran on aco event e (any opset); -1/EINVAL if
 * e is not an aco event. */
int ev_aco_fd_closed(eventer_t e);

/* 1 when e is an aco event whose reads may wait for readiness first
 * (its original opset keeps no data of its own: see eventer_aco_read),
 * else 0.  For tests and layers that want to know. */
int ev_aco_fd_reads_may_wait(eventer_t e);

/* eventer_fini: unlinks the waiters still parked on fd events of l (they
 * are dropped with the loop). */
void ev_aco_fd_fini_loop(ev_loop_t *l);
/* eventer_fini, for a coroutine that went with e's loop (the end hook at
 * fini) and owned aco event e: e is closed if it was open (its fd through
 * its original opset), taken out of the stopped loop, and the references
 * of its registration and of a close waiting for waits to end are
 * dropped; the caller's still hold.  -1/EINVAL if e is not an aco event. */
int ev_aco_fd_close_at_fini(eventer_t e);
/* The aco layer's event hooks (an aco event's state dies with it; a copy
 * is classic). */
void ev_aco_fd_event_free(eventer_t e);
void ev_aco_fd_event_copy(eventer_t dst, eventer_t src);

/* ---- synchronization objects (eventer_aco_sync.c) ------------------------------- */

/* The blocking sync calls, as start and end, for waiter a (elem: a
 * channel element, in memory that stays valid until the end). */
enum {
  EV_SYNC_SEM_WAIT = 1, EV_SYNC_MUTEX_LOCK, EV_SYNC_MUTEX_TRYLOCK,
  EV_SYNC_MUTEX_UNLOCK, EV_SYNC_WG_WAIT, EV_SYNC_CHAN_SEND, EV_SYNC_CHAN_RECV
};
int ev_aco_sync_begin(ev_aco_t *a, int kind, void *obj, void *elem,
                      uint64_t deadline, int64_t *rv);
int64_t ev_aco_sync_end(ev_aco_t *a, int kind, void *obj, void *elem,
                        int wake);
/* The loop a sync object is bound to (NULL while unbound). */
ev_loop_t *ev_aco_sync_loop(const void *obj);

/* ---- proxies (eventer_aco_proxy.c) ------------------------------------------------- */

/* The loop ended proxy waiter a's wait (a->wake says why): run the end of
 * its call and report the result to the foreign driver. */
void ev_aco_proxy_resume(ev_aco_t *a);
/* eventer_fini: the loop goes away with proxy waiter a still alive (its
 * foreign coroutine never ended): free the proxy. */
void ev_aco_proxy_fini(ev_aco_t *a);

#endif /* EVENTER_ACO_IMPL_H */
