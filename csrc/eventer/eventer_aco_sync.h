/*
 * eventer_aco_sync.h - synchronization between the coroutines of one loop:
 * counting semaphores, mutexes, wait groups and bounded channels.
 *
 * These are the blocking-style counterparts of what a callback program does
 * with flags and queues.  A coroutine that has to wait parks (it yields to
 * the loop; classic events and other coroutines run meanwhile) and is
 * resumed when the object lets it go on, its timeout passes, or
 * eventer_aco_cancel() hits it.
 *
 * Loops.  An object belongs to the loop on which it is first used (waited
 * on, posted to, locked, sent to...); creating it binds nothing, so it may
 * be created anywhere.  Using it from another loop fails with EINVAL, and
 * no call here is thread-safe: other threads reach a loop's coroutines
 * through eventer_aco_wake() or a posted task (eventer.h).  The calls that
 * never wait (post, trywait, add, done, trysend, tryrecv, close) also work
 * from the loop thread outside a coroutine, i.e. in a classic callback.
 *
 * Waiting.  Every call that may wait takes `struct timeval *timeout`, a
 * duration that bounds the whole call: NULL waits as long as it takes,
 * {0,0} does not wait at all.  Waits return 0, or -1 with errno:
 *   ETIMEDOUT  the timeout passed (ETIME too: see eventer_aco.h);
 *   ECANCELED  eventer_aco_cancel() hit the wait (a cancel that arrives
 *              while the coroutine does not wait hits its next wait; a
 *              call that can go on without waiting does so);
 *   EINVAL     not called from a coroutine, NULL object, or the object
 *              belongs to another loop;
 * and the object-specific errors listed below.
 *
 * Fairness.  Waiters are served first come, first served.  A semaphore
 * unit, a mutex or a channel slot/element that a waiter is entitled to is
 * handed to it directly when it becomes available, so a coroutine that
 * arrives later (or a trywait/trylock/try...) never overtakes a waiter.
 *
 * Freeing.  The *_free() calls fail with EBUSY while a coroutine waits on
 * the object, or has been let go by it but not yet resumed (it would touch
 * freed memory).  Free an object on its loop (or anywhere once no
 * coroutine can use it any more); NULL is a no-op.  Coroutines still
 * parked when eventer_fini() runs are dropped, and an object one of them
 * waited on may then refuse to be freed: end the coroutines first.
 */
#ifndef EVENTER_ACO_SYNC_H
#define EVENTER_ACO_SYNC_H

#include <stddef.h>
#include <sys/time.h>
#include <sys/types.h>

#include "eventer_aco.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- counting semaphores ------------------------------------------------- */

typedef struct eventer_aco_sem eventer_aco_sem_t;

/* The largest value a semaphore can hold. */
#define EVENTER_ACO_SEM_VALUE_MAX 0x7fffffff

/* A semaphore with `initial` units, or NULL with errno EINVAL (initial
 * above EVENTER_ACO_SEM_VALUE_MAX) or ENOMEM. */
eventer_aco_sem_t *eventer_aco_sem_new(unsigned int initial);
/* Takes a unit, waiting until one is posted.  0, or -1 with errno
 * (see "Waiting"). */
int eventer_aco_sem_wait(eventer_aco_sem_t *s, struct timeval *timeout);
/* Takes a unit if one is available now.  0, or -1 with errno EAGAIN (none
 * available) or EINVAL. */
int eventer_aco_sem_trywait(eventer_aco_sem_t *s);
/* Adds a unit, handing it to the longest waiter if there is one (it
 * resumes at the next opportunity).  0, or -1 with errno EOVERFLOW (the
 * value is at EVENTER_ACO_SEM_VALUE_MAX) or EINVAL. */
int eventer_aco_sem_post(eventer_aco_sem_t *s);
/* Units available now (0 while anyone waits), or -1/EINVAL for NULL. */
int eventer_aco_sem_value(eventer_aco_sem_t *s);
/* 0, or -1/EBUSY (see "Freeing"). */
int eventer_aco_sem_free(eventer_aco_sem_t *s);

/* ---- mutexes ---------------------------------------------------------------
 * Owned by the coroutine that locked it; not recursive.  On unlock the
 * mutex passes straight to the longest waiter.  A coroutine must unlock
 * what it holds before it ends: nobody else can. */

typedef struct eventer_aco_mutex eventer_aco_mutex_t;

/* An unlocked mutex, or NULL/ENOMEM. */
eventer_aco_mutex_t *eventer_aco_mutex_new(void);
/* Locks m, waiting while another coroutine holds it.  0, or -1 with errno
 * EDEADLK (the caller holds it already) or see "Waiting". */
int eventer_aco_mutex_lock(eventer_aco_mutex_t *m, struct timeval *timeout);
/* Locks m if it is free now.  0, or -1 with errno EBUSY (held, also by the
 * caller, or promised to a waiter) or EINVAL (not in a coroutine, ...). */
int eventer_aco_mutex_trylock(eventer_aco_mutex_t *m);
/* Unlocks m.  0, or -1 with errno EPERM (the caller does not hold it) or
 * EINVAL. */
int eventer_aco_mutex_unlock(eventer_aco_mutex_t *m);
/* 1 while some coroutine holds m (or it is being handed to one), 0 when
 * free, -1/EINVAL for NULL. */
int eventer_aco_mutex_locked(eventer_aco_mutex_t *m);
/* 0, or -1/EBUSY (see "Freeing").  A locked mutex nobody waits for may be
 * freed. */
int eventer_aco_mutex_free(eventer_aco_mutex_t *m);

/* ---- wait groups -------------------------------------------------------------
 * A counter of outstanding work (Go's sync.WaitGroup): add(n) before
 * starting n pieces of work, done() when one finishes, wait() until the
 * counter is zero.  When the counter reaches zero every waiter is let go,
 * even if the counter goes up again before a waiter resumes. */

typedef struct eventer_aco_wg eventer_aco_wg_t;

/* A wait group with counter 0, or NULL/ENOMEM. */
eventer_aco_wg_t *eventer_aco_wg_new(void);
/* Adds n (which may be negative) to the counter.  0, or -1 with errno
 * EINVAL (the counter would go negative: nothing changes), EOVERFLOW (it
 * would pass INT_MAX) or EINVAL (NULL, another loop). */
int eventer_aco_wg_add(eventer_aco_wg_t *wg, int n);
/* eventer_aco_wg_add(wg, -1). */
int eventer_aco_wg_done(eventer_aco_wg_t *wg);
/* Waits until the counter is zero (returns at once if it is).  0, or -1
 * with errno (see "Waiting"). */
int eventer_aco_wg_wait(eventer_aco_wg_t *wg, struct timeval *timeout);
/* The counter, or -1/EINVAL for NULL. */
int eventer_aco_wg_count(eventer_aco_wg_t *wg);
/* 0, or -1/EBUSY (see "Freeing"). */
int eventer_aco_wg_free(eventer_aco_wg_t *wg);

/* ---- channels ------------------------------------------------------------------
 * A bounded FIFO of fixed-size elements (a buffered Go channel).  Elements
 * are copied in by the sender and out by the receiver, each on its own
 * stack, through the channel's ring buffer: no coroutine ever writes into
 * another one's stack (which may not be at its addresses while it is
 * parked, see aco.h).
 *
 * Closing (Go's semantics, with errors instead of panics): after
 * eventer_aco_chan_close() every send fails with EPIPE (also the sends
 * that were waiting); receives still get the elements that were buffered
 * at close, in order, and then fail with EPIPE.  A send returns 0 once its
 * element is in the buffer; that element will be received unless the
 * channel is freed first. */

typedef struct eventer_aco_chan eventer_aco_chan_t;

/* A channel of `capacity` elements of `elem_size` bytes each, or NULL with
 * errno EINVAL (elem_size or capacity 0, or their product overflows) or
 * ENOMEM.  Unbuffered channels are not supported. */
eventer_aco_chan_t *eventer_aco_chan_new(size_t elem_size, size_t capacity);
/* Copies the element at `elem` (elem_size bytes) into the channel, waiting
 * while it is full.  0, or -1 with errno EPIPE (closed) or see
 * "Waiting". */
int eventer_aco_chan_send(eventer_aco_chan_t *ch, const void *elem,
                          struct timeval *timeout);
/* Copies the oldest element out to `elem` (elem_size bytes), waiting while
 * the channel is empty.  0, or -1 with errno EPIPE (closed and drained) or
 * see "Waiting". */
int eventer_aco_chan_recv(eventer_aco_chan_t *ch, void *elem,
                          struct timeval *timeout);
/* The same without waiting: EAGAIN instead (full / empty). */
int eventer_aco_chan_trysend(eventer_aco_chan_t *ch, const void *elem);
int eventer_aco_chan_tryrecv(eventer_aco_chan_t *ch, void *elem);
/* Closes ch and lets every waiting sender and receiver go (they fail with
 * EPIPE).  0, or -1 with errno EPIPE (already closed) or EINVAL. */
int eventer_aco_chan_close(eventer_aco_chan_t *ch);
/* Elements buffered / capacity / element size, or -1/EINVAL for NULL. */
ssize_t eventer_aco_chan_len(eventer_aco_chan_t *ch);
ssize_t eventer_aco_chan_cap(eventer_aco_chan_t *ch);
ssize_t eventer_aco_chan_elem_size(eventer_aco_chan_t *ch);
/* 1 once closed, 0 if open, -1/EINVAL for NULL. */
int eventer_aco_chan_closed(eventer_aco_chan_t *ch);
/* Frees ch and any elements still buffered.  0, or -1/EBUSY (see
 * "Freeing"). */
int eventer_aco_chan_free(eventer_aco_chan_t *ch);

#ifdef __cplusplus
}
#endif

#endif /* EVENTER_ACO_SYNC_H */
