/*
 * eventer_aco_proxy.h - the blocking eventer_aco calls for coroutines
 * written in another language (the Go binding), the foreign driver's
 * wake-up, and foreign callbacks.
 *
 * A foreign coroutine (a Go coroutine) runs on its own runtime's stack, so
 * it can neither run on a C share stack nor be yielded by C.  It gets a
 * proxy instead: a small C record that waits in the loop's wait queues in
 * its place, exactly where a C coroutine would wait (an fd's waiters, a
 * timer, a semaphore's queue, a job's completion).  Every blocking
 * eventer_aco_* call is written once, as a start and an end around its
 * wait: a C coroutine yields between the two; a proxy's foreign coroutine
 * goes back to its driver, and the end runs when the loop ends the wait.
 * One implementation of the semantics, two languages.
 *
 *   p = eventer_aco_proxy_new(foreign_id);            on the loop thread
 *   switch (eventer_aco_proxy_wait(p, e, EVENTER_READ, 0, &timeout)) {
 *   case EVENTER_PROXY_DONE:    over at once; the call's result is
 *                               eventer_aco_proxy_result(p, &err)
 *   case EVENTER_PROXY_PARKED:  when the wait ends, eventer_run_once hands
 *                               the driver a step {kind
 *                               EVENTER_STEP_ACO_PROXY, u64[0] =
 *                               foreign_id, u64[1] = (uint64_t)result,
 *                               u64[2] = errno} at the point where a C
 *                               coroutine would have been resumed; the
 *                               driver resumes its coroutine with it
 *   case EVENTER_PROXY_MISUSE:  nothing started (errno): EPERM off the
 *                               proxy's loop thread, EDEADLK from inside a
 *                               C coroutine (a callback C called from
 *                               one), EBUSY while a call is pending
 *   }
 *
 * Every call here is for the proxy's loop thread, from its main context
 * (the driver, outside run_once and outside any coroutine), and returns
 * that protocol (EVENTER_PROXY_*).  A proxy has at most one call pending:
 * from the start until its completion step has been handed out.
 * Cancelling, waking and wake tokens of foreign coroutines are the foreign
 * side's: other threads reach the driver (eventer_foreign_wake), and the
 * driver calls eventer_aco_proxy_cancel / _wake on the loop thread.
 */
#ifndef EVENTER_ACO_PROXY_H
#define EVENTER_ACO_PROXY_H

#include <stdint.h>
#include <sys/socket.h>

#include "eventer.h"
#include "eventer_aco.h"

#ifdef __cplusplus
extern "C" {
#endif

/* step kinds for a foreign driver (see eventer_run_once) */
#define EVENTER_STEP_ACO_PROXY (EVENTER_STEP_USER + 1)
#define EVENTER_STEP_FOREIGN_WAKE (EVENTER_STEP_USER + 2)
/* A read wait with read_len > 0 that ended ready, and the read that
 * followed: u64[0] foreign id, u64[1] bytes read (or -1), u64[2] errno,
 * closure the bytes.  They live in a loop-owned buffer that is valid only
 * until the driver's next eventer_run_once: the driver copies them out
 * first. */
#define EVENTER_STEP_ACO_PROXY_DATA (EVENTER_STEP_USER + 3)

/* The result protocol of every proxy call. */
enum {
  EVENTER_PROXY_MISUSE = -1, /* refused, nothing started: errno says why */
  EVENTER_PROXY_PARKED = 0,  /* waiting: its completion comes as a step */
  EVENTER_PROXY_DONE = 1     /* over at once: eventer_aco_proxy_result */
};

typedef struct eventer_aco_proxy eventer_aco_proxy_t;

/* A proxy for foreign coroutine foreign_id on the calling loop thread (it
 * may be called from a coroutine of that loop).  NULL with errno (EINVAL
 * off-loop, ENOMEM). */
eventer_aco_proxy_t *eventer_aco_proxy_new(uint64_t foreign_id);
/* Frees p.  0, or -1/EBUSY while a call is pending, EINVAL off its loop
 * thread.  eventer_fini frees the proxies still alive then (the driver
 * must not use them afterwards). */
int eventer_aco_proxy_free(eventer_aco_proxy_t *p);

/* eventer_aco_wait_ready(e, mask, timeout): e must be an aco event of p's
 * loop.  The result is 0 when e is ready (the foreign side then tries its
 * operation again), or -1 with errno (ETIMEDOUT, ECANCELED, EBADF,
 * EINVAL).  read_len > 0 with EVENTER_READ asks for a read-through: when
 * the wait ends ready, the proxy reads up to read_len bytes at once and
 * the completion is an EVENTER_STEP_ACO_PROXY_DATA step (or a plain one,
 * result 0, when another completion took the step slot first). */
int eventer_aco_proxy_wait(eventer_aco_proxy_t *p, eventer_t e, int mask,
                           size_t read_len, const struct timeval *timeout);
/* eventer_aco_sleep(duration): result 0, or -1 (ECANCELED, EINVAL). */
int eventer_aco_proxy_sleep(eventer_aco_proxy_t *p,
                            const struct timeval *duration);
/* eventer_aco_yield(): result 0, or -1/ECANCELED. */
int eventer_aco_proxy_yield(eventer_aco_proxy_t *p);
/* eventer_aco_park(timeout), ended by eventer_aco_proxy_wake: result 0,
 * or -1 (ETIMEDOUT, ECANCELED). */
int eventer_aco_proxy_park(eventer_aco_proxy_t *p,
                           const struct timeval *timeout);

/* The blocking calls of eventer_aco_sync.h, with the proxy as the waiter
 * (and as a mutex's owner).  elem: a channel element (elem_size bytes)
 * that must stay valid until the completion. */
enum {
  EVENTER_PROXY_SEM_WAIT = 1,  /* eventer_aco_sem_wait(obj, timeout) */
  EVENTER_PROXY_MUTEX_LOCK,    /* eventer_aco_mutex_lock(obj, timeout) */
  EVENTER_PROXY_MUTEX_TRYLOCK, /* eventer_aco_mutex_trylock(obj) */
  EVENTER_PROXY_MUTEX_UNLOCK,  /* eventer_aco_mutex_unlock(obj) */
  EVENTER_PROXY_WG_WAIT,       /* eventer_aco_wg_wait(obj, timeout) */
  EVENTER_PROXY_CHAN_SEND,     /* eventer_aco_chan_send(obj, elem, timeout) */
  EVENTER_PROXY_CHAN_RECV      /* eventer_aco_chan_recv(obj, elem, timeout) */
};
int eventer_aco_proxy_sync(eventer_aco_proxy_t *p, int kind, void *obj,
                           void *elem, const struct timeval *timeout);

/* eventer_aco_simple_asynch_queue_subqueue(fn, closure, q, subq): result 0
 * once the job's COMPLETE has run, or -1 with errno: the queueing failed
 * (ENXIO, ESHUTDOWN, ENOMEM), or the queue was destroyed before WORK ran
 * (ESHUTDOWN).  Not cancellable: the job refers to the proxy until its
 * COMPLETE. */
int eventer_aco_proxy_asynch(eventer_aco_proxy_t *p,
                             eventer_asynch_simple_func_t fn, void *closure,
                             eventer_jobq_t *q, uint64_t subq);

/* The result of the last call that was DONE at once: the value, and its
 * errno in *err (0 unless the value is -1). */
int64_t eventer_aco_proxy_result(eventer_aco_proxy_t *p, int *err);

/* Ends p's pending call with -1/ECANCELED (its completion step follows, as
 * for eventer_aco_cancel).  0, or -1 with errno EAGAIN: no cancellable call
 * is waiting (none pending, an asynch wait, or its end is already on the
 * way); the foreign side keeps the cancel for its next call. */
int eventer_aco_proxy_cancel(eventer_aco_proxy_t *p);
/* Ends a pending park with success (its completion step follows).  0, or
 * -1/EAGAIN if p is not parked. */
int eventer_aco_proxy_wake(eventer_aco_proxy_t *p);
/* Teardown (the foreign coroutine is going away with a call pending):
 * ends the call without a completion, undoing its wait.  0, or -1/EBUSY
 * for an asynch wait (its job still refers to p: leave p to
 * eventer_fini). */
int eventer_aco_proxy_abort(eventer_aco_proxy_t *p);
/* 1 while a call is pending (waiting, or its completion is still on its
 * way to the driver). */
int eventer_aco_proxy_busy(const eventer_aco_proxy_t *p);

/* ---- the driver's wake-up ------------------------------------------------
 * THREAD-SAFE: makes `loop` (a loop of the default pool) hand its driver
 * one EVENTER_STEP_FOREIGN_WAKE step soon (several calls before it is
 * handed out give one step).  The driver uses it to notice work queued for
 * it by other threads. */
int eventer_foreign_wake(eventer_loop_t *loop);
/* Sets up the wake-ups for the loops of the default pool (after
 * eventer_init*(), before the first eventer_foreign_wake; again after each
 * eventer_init*).  0, or -1/ENOMEM, ENXIO (no eventer). */
int eventer_foreign_reset(void);

/* ---- foreign callbacks ------------------------------------------------------
 * A foreign callback's closure is a small refcounted box holding the
 * foreign side's id for the function; copies of the event share it, and
 * when the last event using it is freed its id is queued as dead, so the
 * foreign side can forget the function.  Foreign functions are the ones
 * marked with eventer_callback_set_foreign (eventer.h), the one registry
 * the loop consults too. */
void *eventer_foreign_closure_new(uint64_t id);
uint64_t eventer_foreign_closure_id(void *closure);
/* Marks callback function f as foreign (eventer_callback_set_foreign): its
 * events' closures are boxes.  0, or -1/EINVAL, ENOSPC. */
int eventer_foreign_callback_register(eventer_func_t f);
/* Moves up to n dead ids into out; returns how many.  THREAD-SAFE. */
int eventer_foreign_dead_ids(uint64_t *out, int n);

/* Runs fn(arg) on the calling thread's own stack when called from inside a
 * coroutine (directly otherwise).  Foreign runtimes (Go) cannot run on a
 * coroutine's share stack; a foreign callback reached by C code inside a
 * coroutine goes through this. */
void eventer_call_on_thread_stack(void (*fn)(void *), void *arg);

#ifdef __cplusplus
}
#endif

#endif /* EVENTER_ACO_PROXY_H */
