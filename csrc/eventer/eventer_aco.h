/*
 * eventer_aco.h - coroutines on the event loop (libmtev's "Eventer (ACO)").
 *
 * A coroutine started with eventer_aco_start() runs on its loop thread, on
 * that loop's share stack (aco.h explains the shared-stack contract).  Inside
 * it, eventer_aco_read/write/accept/connect/sleep and the asynch family look
 * blocking: when they would block, the coroutine registers interest, yields
 * to the loop, and is resumed when the fd is ready, the timer fires or the
 * job completes.  Everything else on the loop (classic callbacks, other
 * coroutines) runs meanwhile.  Coroutines of one loop run strictly one at a
 * time, on that loop's thread, and never move.
 *
 * Lifetimes.  The coroutine function may return (our wrapper then calls
 * aco_exit()) or call aco_exit() itself.  The coroutine's memory is freed
 * when it ends, except for handles (eventer_aco_co_t), which outlive it.
 *
 * Errors.  Calls return -1 and set errno:
 *   ETIMEDOUT  the timeout expired.  This header defines ETIME as ETIMEDOUT,
 *              so code written for libmtev that tests `errno == ETIME` (the
 *              reference meant ETIME as another name for the timeout; on
 *              Linux they are different numbers) sees every timeout.
 *              Include this header after <errno.h> or instead of it.
 *   ECANCELED  eventer_aco_cancel() hit the pending call; the coroutine
 *              goes on.
 *   EBADF      the event was closed (eventer_aco_close) while this call
 *              waited on it.
 *   EINVAL     called outside an eventer coroutine, or bad arguments.
 *   and whatever the underlying syscall reports (ECONNRESET, EPIPE, ...).
 *
 * A timeout bounds the whole call, however many times it has to wait.
 * A timeout pointer of NULL means the event's default (see
 * eventer_aco_set_read_timeout and friends) or none; {0,0} means "do not
 * wait at all".
 *
 * Threads.  Everything here is loop-thread-only, except the calls marked
 * THREAD-SAFE (starting a coroutine, waking, cancelling and releasing
 * handles).  Synchronization objects (eventer_aco_sync.h) work between the
 * coroutines of one loop.
 *
 * Known defects of the reference that this implementation does not have,
 * each with a regression test: a sleep leaves no stale timeout behind; a
 * failed try-run does not free the caller's gate; a timeout passed to a
 * call off the loop thread is an error (EINVAL), not a crash; a converted
 * event holds no leaked reference; an event given to eventer_aco_run_asynch
 * is freed after its COMPLETE (the eventer took over the caller's reference,
 * as eventer_add_asynch does), and a refused try-run hands it back.
 */
#ifndef EVENTER_ACO_H
#define EVENTER_ACO_H

#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "aco.h"
#include "eventer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* see "Errors" above */
#undef ETIME
#define ETIME ETIMEDOUT

typedef struct _event_aco *eventer_aco_t; /* an fd event converted for aco */
typedef struct _event_aco_gate *eventer_aco_gate_t;
typedef struct eventer_aco_co eventer_aco_co_t; /* a coroutine handle */

/* eventer_asynch_op_t (WORK, CLEANUP, COMPLETE) is in eventer.h */
typedef void (*eventer_asynch_simple_func_t)(void *closure);
typedef void (*eventer_asynch_func_t)(eventer_asynch_op_t op, void *closure);

/* ---- starting coroutines ------------------------------------------------- */

/* Default share stack size of a loop's coroutines (libmtev's: 32 KiB). */
#define EVENTER_ACO_DEFAULT_STACK (32 * 1024)

/* Starts func(void) in a new coroutine; eventer_aco_arg() returns closure.
 * On a loop thread, outside a coroutine (a classic callback): it runs at
 * once until it first yields.  Inside a coroutine: it starts at the next
 * opportunity.  Off the loop threads, or before the loops run: it is
 * queued to loop 0 of the default pool.  THREAD-SAFE. */
void eventer_aco_start(void (*func)(void), void *closure);
/* Same, on a share stack of stksz bytes (one share stack per distinct
 * size per loop). */
void eventer_aco_start_stack(void (*func)(void), void *closure, size_t stksz);

typedef struct {
  size_t stack_size;    /* share stack size; 0: EVENTER_ACO_DEFAULT_STACK */
  size_t save_stack_size; /* initial save stack; 0: aco's default */
  eventer_loop_t *loop; /* loop to run on; NULL: the calling loop, else
                         * loop 0 of the default pool */
  const char *name;     /* for diagnostics (not copied); may be NULL */
} eventer_aco_opts_t;

/* Starts a coroutine as eventer_aco_start does and returns a handle with
 * one reference for the caller (release it with eventer_aco_co_release),
 * or NULL with errno (EINVAL, ENXIO before eventer_init).  THREAD-SAFE. */
eventer_aco_co_t *eventer_aco_spawn(void (*func)(void), void *closure,
                                    const eventer_aco_opts_t *opts);

/* The running coroutine's closure (eventer_aco_arg) and handle (borrowed:
 * valid while it runs; take a reference to keep it).  NULL outside. */
void *eventer_aco_arg(void);
eventer_aco_co_t *eventer_aco_self(void);
/* mtev_true inside an eventer coroutine. */
mtev_boolean eventer_in_aco(void);

/* Handles.  THREAD-SAFE. */
void eventer_aco_co_ref(eventer_aco_co_t *h);
void eventer_aco_co_release(eventer_aco_co_t *h);
/* mtev_true once the coroutine has ended. */
mtev_boolean eventer_aco_co_done(eventer_aco_co_t *h);

/* Waits until h's coroutine has ended.  0, or -1 with errno: ETIMEDOUT,
 * ECANCELED, EDEADLK (joining itself), EINVAL (not in a coroutine, or h
 * lives on another loop). */
int eventer_aco_join(eventer_aco_co_t *h, struct timeval *timeout);

/* Cancels h's pending call: it returns -1/ECANCELED and the coroutine goes
 * on.  If h is not waiting, its next cancellable call fails at once
 * (asynch waits are not cancellable: the work may use the coroutine's
 * memory; the cancel then hits the next call).  THREAD-SAFE.  0, or
 * -1/ESRCH if it has ended. */
int eventer_aco_cancel(eventer_aco_co_t *h);

/* Park/unpark.  eventer_aco_park() waits until another coroutine, callback
 * or thread calls eventer_aco_wake(h) for this coroutine (a wake that comes
 * first is remembered: park then returns at once).  0, or -1 with errno
 * ETIMEDOUT / ECANCELED / EINVAL.  eventer_aco_wake is THREAD-SAFE: it is
 * the way for another thread to resume a coroutine.  0, or -1/ESRCH. */
int eventer_aco_park(struct timeval *timeout);
int eventer_aco_wake(eventer_aco_co_t *h);

/* Gives the loop a turn: the coroutine resumes at the next opportunity,
 * after due timers and ready fds.  0, or -1/ECANCELED. */
int eventer_aco_yield(void);

/* Per-coroutine statistics. */
typedef struct {
  uint64_t resumes;       /* times resumed */
  uint64_t bytes_copied;  /* stack bytes copied in and out for it */
  size_t max_save_stack;  /* largest live stack saved (aco max_cpsz) */
  size_t save_stack_sz;   /* current save stack capacity */
} eventer_aco_stats_t;
/* Stats of h (owner loop thread), or of the running coroutine (h NULL).
 * 0, or -1 with errno: ESRCH (ended), EINVAL. */
int eventer_aco_get_stats(eventer_aco_co_t *h, eventer_aco_stats_t *out);

/* ---- fd events ---------------------------------------------------------------- */

/* Converts classic fd event e for use by coroutines of the calling loop and
 * returns it as an eventer_aco_t (the same object; the caller's reference
 * carries over).  Any coroutine of that loop may then use it; a reader and
 * a writer may use it at the same time.  An e registered on this loop
 * (not the one whose callback runs) keeps its registration, which becomes
 * the aco event's: no epoll_ctl to take it out and put it back; the
 * caller still needs a reference of its own.  NULL with errno EINVAL if
 * not in a coroutine or e is not an fd event, unregistered or registered
 * on the calling loop. */
eventer_aco_t eventer_set_eventer_aco(eventer_t e);
/* libmtev's form: co must be the running coroutine; co NULL turns an aco
 * event back into a classic one (its original callback and opset). */
eventer_aco_t eventer_set_eventer_aco_co(eventer_t e, aco_t *co);
/* mtev_true if e is an aco event; with NULL (libmtev), if the caller runs
 * in a coroutine. */
mtev_boolean eventer_is_aco(eventer_t e);

/* Declares that opset's read returns only what the kernel holds for the
 * fd, keeping nothing in user space (a plain socket wrapper does; a TLS
 * layer does not), so an aco event over it may skip reads that would find
 * nothing (see eventer_aco_read).  Applies to events converted afterwards.
 * The POSIX opset needs no declaration.  At most 8 opsets.  0, or -1 with
 * errno EINVAL (NULL, the aco opset, the TLS opset), ENOSPC.  THREAD-SAFE. */
int eventer_aco_opset_set_unbuffered(eventer_fd_opset_t opset);

/* A read that follows a write on the same event, or a read that came
 * back short, goes straight to the readiness wait instead of making the
 * read(2) that would find nothing (a reply can't be there yet; the socket
 * was emptied): the event stays registered level-triggered, so data that
 * arrived meanwhile is reported by the next poll at once.  Only for events
 * whose original opset keeps no data of its own: the POSIX opset, and
 * opsets declared so with eventer_aco_opset_set_unbuffered (never TLS,
 * whose layer may hold decrypted bytes the socket no longer shows).  A
 * timeout of {0,0} and a pending cancel make the read try first, and a
 * wait that ends without readiness is followed by one last try, so the
 * result is what an attempt-first read would give.
 * On the POSIX opset, eventer_aco_read and eventer_aco_write make the
 * syscalls themselves, not through libc: they are not thread-cancellation
 * points (a loop thread is never cancelled), and they skip what libc's
 * wrappers do for cancellation in a multi-threaded process.  On a socket
 * they are recv(2) and send(2) with no flags (POSIX's same calls as
 * read(2) and write(2), SIGPIPE included, and a shorter way through the
 * kernel); on any other fd read(2) and write(2).  Results and errno are
 * the same. */
int eventer_aco_read(eventer_aco_t e, void *buff, size_t len,
                     struct timeval *timeout);
int eventer_aco_write(eventer_aco_t e, const void *buff, size_t len,
                      struct timeval *timeout);
/* The accepted fd (non-blocking, close-on-exec). */
int eventer_aco_accept(eventer_aco_t e, struct sockaddr *addr, socklen_t *len,
                       struct timeval *timeout);
/* Connects e's (non-blocking) socket.  0, or -1 with errno (ETIMEDOUT, or
 * the connect error: ECONNREFUSED, ...). */
int eventer_aco_connect(eventer_aco_t e, const struct sockaddr *addr,
                        socklen_t len, struct timeval *timeout);
/* Waits until e is ready for mask (EVENTER_READ and/or EVENTER_WRITE),
 * without reading or writing: the building block of a read loop that does
 * its own I/O (the Go binding's).  On a TLS event after its handshake,
 * READ is ready at once when OpenSSL holds plaintext the socket does not
 * show (eventer_ssl_read_ready).  0, or -1 with errno ETIMEDOUT,
 * ECANCELED, EBADF (closed), EINVAL. */
int eventer_aco_wait_ready(eventer_aco_t e, int mask, struct timeval *timeout);

/* Unregisters e, wakes every coroutine waiting on it (they get EBADF) and
 * closes the fd through the original opset. */
int eventer_aco_close(eventer_aco_t e);
/* Drops the caller's reference (eventer_free). */
void eventer_aco_free(eventer_aco_t e);

/* Default timeouts used when a call passes NULL; NULL clears. */
void eventer_aco_set_accept_timeout(eventer_aco_t e, struct timeval *duration);
void eventer_aco_set_read_timeout(eventer_aco_t e, struct timeval *duration);
void eventer_aco_set_write_timeout(eventer_aco_t e, struct timeval *duration);

void *eventer_aco_get_closure(eventer_aco_t e);
void eventer_aco_set_closure(eventer_aco_t e, void *closure);

/* ---- sleeping ------------------------------------------------------------------ */

/* Suspends the calling coroutine for *duration ({0,0}: yield).  0, or -1
 * with errno ECANCELED or EINVAL.  (libmtev's returns void; callers that
 * ignore the result compile unchanged.) */
int eventer_aco_sleep(struct timeval *duration);
#define mtev_aco_sleep eventer_aco_sleep

/* ---- waiting for asynch work ---------------------------------------------------
 * func runs on a job queue (q NULL: the default queue; subqueue id); the
 * coroutine resumes when the job's COMPLETE has run on its loop.  The
 * _gated forms do not wait: they count the job on `gate`, and
 * eventer_aco_gate_wait() waits for every job counted on it. */

void eventer_aco_simple_asynch_queue_subqueue(eventer_asynch_simple_func_t func,
                                              void *closure, eventer_jobq_t *q,
                                              uint64_t id);
#define eventer_aco_simple_asynch_queue(f, c, q) \
  eventer_aco_simple_asynch_queue_subqueue(f, c, q, 0)
#define eventer_aco_simple_asynch(f, c) \
  eventer_aco_simple_asynch_queue_subqueue(f, c, NULL, 0)

void eventer_aco_simple_asynch_queue_subqueue_gated(
    eventer_aco_gate_t gate, eventer_asynch_simple_func_t func, void *closure,
    eventer_jobq_t *q, uint64_t id);
#define eventer_aco_simple_asynch_queue_gated(g, f, c, q) \
  eventer_aco_simple_asynch_queue_subqueue_gated(g, f, c, q, 0)
#define eventer_aco_simple_asynch_gated(g, f, c) \
  eventer_aco_simple_asynch_queue_subqueue_gated(g, f, c, NULL, 0)

/* func(op, closure) is called with EVENTER_ASYNCH_WORK (skipped once the
 * deadline `whence` has passed), EVENTER_ASYNCH_CLEANUP (job thread) and
 * EVENTER_ASYNCH_COMPLETE (the coroutine's loop, before it resumes). */
void eventer_aco_asynch_queue_subqueue_deadline(eventer_asynch_func_t func,
                                                void *closure,
                                                eventer_jobq_t *q, uint64_t id,
                                                struct timeval *whence);
void eventer_aco_asynch_queue_subqueue_deadline_gated(
    eventer_aco_gate_t gate, eventer_asynch_func_t func, void *closure,
    eventer_jobq_t *q, uint64_t id, struct timeval *whence);
#define eventer_aco_asynch_queue_subqueue(f, c, q, id) \
  eventer_aco_asynch_queue_subqueue_deadline(f, c, q, id, NULL)
#define eventer_aco_asynch_queue(f, c, q) \
  eventer_aco_asynch_queue_subqueue_deadline(f, c, q, 0, NULL)
#define eventer_aco_asynch(f, c) \
  eventer_aco_asynch_queue_subqueue_deadline(f, c, NULL, 0, NULL)
#define eventer_aco_asynch_queue_subqueue_gated(g, f, c, q, id) \
  eventer_aco_asynch_queue_subqueue_deadline_gated(g, f, c, q, id, NULL)
#define eventer_aco_asynch_queue_gated(g, f, c, q) \
  eventer_aco_asynch_queue_subqueue_deadline_gated(g, f, c, q, 0, NULL)
#define eventer_aco_asynch_gated(g, f, c) \
  eventer_aco_asynch_queue_subqueue_deadline_gated(g, f, c, NULL, 0, NULL)

/* Runs asynch event e (mask EVENTER_ASYNCH, from eventer_alloc_asynch*)
 * on q: its callback gets WORK and CLEANUP on a job thread and COMPLETE
 * on the coroutine's loop; then e is freed.  The eventer takes over the
 * caller's reference (as eventer_add_asynch does); the COMPLETE return
 * value is ignored.  The try_ forms return mtev_false (errno EAGAIN) when
 * q's backlog is full: the caller keeps e, and a gate is left untouched. */
void eventer_aco_run_asynch_queue_subqueue(eventer_jobq_t *q, eventer_t e,
                                           uint64_t id);
#define eventer_aco_run_asynch_queue(q, e) \
  eventer_aco_run_asynch_queue_subqueue(q, e, 0)
#define eventer_aco_run_asynch(e) eventer_aco_run_asynch_queue_subqueue(NULL, e, 0)
void eventer_aco_run_asynch_queue_subqueue_gated(eventer_aco_gate_t gate,
                                                 eventer_jobq_t *q,
                                                 eventer_t e, uint64_t id);
#define eventer_aco_run_asynch_queue_gated(g, q, e) \
  eventer_aco_run_asynch_queue_subqueue_gated(g, q, e, 0)
#define eventer_aco_run_asynch_gated(g, e) \
  eventer_aco_run_asynch_queue_subqueue_gated(g, NULL, e, 0)
mtev_boolean eventer_aco_try_run_asynch_queue_subqueue(eventer_jobq_t *q,
                                                       eventer_t e,
                                                       uint64_t id);
#define eventer_aco_try_run_asynch_queue(q, e) \
  eventer_aco_try_run_asynch_queue_subqueue(q, e, 0)
#define eventer_aco_try_run_asynch(e) \
  eventer_aco_try_run_asynch_queue_subqueue(NULL, e, 0)
mtev_boolean eventer_aco_try_run_asynch_queue_subqueue_gated(
    eventer_aco_gate_t gate, eventer_jobq_t *q, eventer_t e, uint64_t id);
#define eventer_aco_try_run_asynch_queue_gated(g, q, e) \
  eventer_aco_try_run_asynch_queue_subqueue_gated(g, q, e, 0)
#define eventer_aco_try_run_asynch_gated(g, e) \
  eventer_aco_try_run_asynch_queue_subqueue_gated(g, NULL, e, 0)

/* A gate counts gated jobs of one loop.  eventer_aco_gate() makes one;
 * eventer_aco_gate_wait() waits until every job counted on it completed,
 * then frees it. */
eventer_aco_gate_t eventer_aco_gate(void);
void eventer_aco_gate_wait(eventer_aco_gate_t gate);

#ifdef __cplusplus
}
#endif

#endif /* EVENTER_ACO_H */
