/*
 * eventer.h - the event loop: the map of the whole C API.
 *
 * Modelled on libmtev's eventer (names, masks, callback contract); the
 * implementation is our own.  Code written against libmtev's eventer API
 * compiles against this header and behaves the same, with the differences
 * listed under "Differences from libmtev" at the end of this comment.
 *
 * Concepts
 * --------
 * An event (eventer_t) is a refcounted object with a callback
 *
 *     int cb(eventer_t e, int mask, void *closure, struct timeval *now);
 *
 * an fd (or -1), a mask, a closure, a `whence` (wall-clock time, for
 * timers) and an owner loop.  The mask decides the kind of event:
 *
 *   fd         EVENTER_READ / WRITE / EXCEPTION: called when the fd is ready
 *   timer      EVENTER_TIMER: called once at `whence`
 *   recurrent  EVENTER_RECURRENT: called once per loop pass
 *   asynch     EVENTER_ASYNCH: run on a job queue thread (WORK, CLEANUP),
 *              then back on its owner loop (COMPLETE)
 *
 * The callback's return value:
 *   fd         the new interest mask.  0 means "I am done": the callback
 *              must have removed the event first (eventer_remove_fde(e));
 *              the loop then drops its reference (which normally frees e).
 *              Returning 0 while the event is still registered is a bug
 *              and aborts with a message naming the event and callback.
 *              A callback that removed its event and returns non-zero
 *              keeps it out of the loop, and keeps the reference
 *              eventer_remove handed back (hand it to a coroutine, ...).
 *              From inside its callback, a registered fd event may be
 *              re-owned (eventer_set_owner): it moves to that loop with
 *              the returned mask.
 *   timer      non-zero re-adds the timer at its `whence`, which the
 *              callback may have moved with eventer_update_whence(); an
 *              unchanged (past) whence fires again on the next pass.
 *              0 drops the loop's reference.
 *   recurrent  ignored; the event stays until eventer_remove()d.
 *   COMPLETE   non-zero re-queues the event on the job queue it ran on;
 *              0 drops the reference.
 * For timer/recurrent/COMPLETE: if the callback re-registered the event
 * itself, the return value is ignored.
 *
 * References: eventer_alloc*() returns an event with one reference, which
 * eventer_add() hands to the eventer.  eventer_remove() hands it back (the
 * caller then usually eventer_free()s it).  While a callback runs, the loop
 * holds an extra reference, so a callback may remove, free, re-add or
 * re-own its own event and any other event safely.
 *
 * Threads and loops
 * -----------------
 * Loops are grouped in named pools (eventer_pool_t); the "default" pool has
 * eventer_loop_concurrency() loops (default: one per online CPU; set with
 * eventer_impl_propset("concurrency", "N") before eventer_init()).  Each
 * loop has its own epoll fd, eventfd, timer heap, recurrent list, task FIFO
 * and cross-thread queue, and is driven by exactly one thread.  An event is
 * dispatched only on its owner loop's thread.
 *
 * Everything is owner-thread-only except the calls marked THREAD-SAFE.
 * eventer_add / eventer_trigger / eventer_remove / eventer_update on an
 * event owned by another loop (or called from a non-loop thread) go
 * through the owner's cross-thread queue and wake it via its eventfd.
 *
 * An event allocated on a loop thread is owned by that loop; allocated
 * elsewhere it is owned by loop 0 of the default pool.  Change it with
 * eventer_set_owner() / eventer_set_owner_loop() before adding it.
 *
 * C programs:        eventer_init(); ...; eventer_loop();
 *   eventer_init() starts a thread for every loop (as libmtev does, the
 *   caller is no loop thread).  The others run at once; loop 0 of the
 *   default pool runs once the eventer_init() caller calls eventer_loop()
 *   (never returns) or eventer_loop_return() (returns at once).  Events
 *   added before a loop runs wait in its queues.  After eventer_shutdown(),
 *   eventer_fini() joins the threads and frees everything.
 *
 * External drivers (the Go binding): eventer_init_external() creates the
 *   loops without threads; the driver binds one thread per loop with
 *   eventer_loop_attach() and calls eventer_run_once() repeatedly.
 *
 * One loop iteration (eventer_run_once), phases in this fixed order:
 *   1. cross-thread queue: adds/removes/updates from other threads are
 *      applied; tasks, triggers and asynch completions posted from other
 *      threads join the task FIFO;
 *   2. timers: every timer (eventer_t or intrusive node) whose monotonic
 *      deadline has passed, in (deadline, add order) order; a timer added
 *      during this phase waits for the next iteration;
 *   3. tasks: the tasks that were in the FIFO when the phase began, FIFO
 *      order (tasks posted meanwhile run in the next iteration, so tasks
 *      that keep re-posting cannot starve fds); eventer_trigger()ed events
 *      and asynch COMPLETE callbacks run here too;
 *   4. recurrent events, in the order they were added;
 *   5. epoll_wait, bounded by the next timer and max_wait (no wait at all
 *      when tasks are pending or a timer is due; at most 200 ms, libmtev's
 *      max_sleeptime, while recurrent events exist, so they keep running
 *      on an idle loop);
 *   6. fd callbacks, in epoll order.  The event is looked up by fd at the
 *      moment of dispatch (and checked against the registration epoch it
 *      was polled under), so removing, closing, re-adding or freeing other
 *      events from a callback never leads to a stale dispatch.
 *
 * Timers carry a wall-clock `whence` (as in libmtev) but fire by a
 * CLOCK_MONOTONIC deadline computed when they are added, so wall-clock
 * jumps do not move them.  Timers never fire early, fire on time even when
 * added from another thread, and equal deadlines fire in add order.
 *
 * Differences from libmtev
 * ------------------------
 * docs/compat.md lists every difference and its reason; the main ones:
 *  - eventer_add/remove/update/trigger are functions (not macros through
 *    an impl table).  The calls libmtev declares void are void here too;
 *    each has an `_ex` form that returns 0, or -1 with errno.
 *  - eventer_trigger() never calls the callback inside the caller: it runs
 *    in the owner loop's next task phase.  This keeps one dispatch order for
 *    C and foreign callbacks (see eventer_run_once).
 *  - eventer_remove() called off the owner thread is queued: it returns
 *    NULL with errno EINPROGRESS and the owner loop drops the eventer's
 *    reference itself when it applies the removal.
 *  - Timers added from other threads are not delayed (libmtev's may be late
 *    by up to 200 ms).
 */
#ifndef EVENTER_H
#define EVENTER_H

#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "mtev_log.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- masks (libmtev's values) ------------------------------------------ */

#define EVENTER_READ 0x01      /* fd readable (interest and readiness) */
#define EVENTER_WRITE 0x02     /* fd writable */
#define EVENTER_EXCEPTION 0x04 /* fd error / hang-up (always reported) */
#define EVENTER_TIMER 0x08     /* a timer event */
/* The asynch phases as preprocessor values (the enum below gives them
 * their usual names; libmtev spells the macros with a _D suffix). */
#define EVENTER_ASYNCH_WORK_D 0x10    /* do the work (job thread) */
#define EVENTER_ASYNCH_CLEANUP_D 0x20 /* clean up (job thread) */
#define EVENTER_ASYNCH_D (EVENTER_ASYNCH_WORK_D | EVENTER_ASYNCH_CLEANUP_D)
/* on the owner loop after CLEANUP; WORK|CLEANUP, so compare masks with
 * ==, not with & */
#define EVENTER_ASYNCH_COMPLETE_D EVENTER_ASYNCH_D
#define EVENTER_RECURRENT 0x80 /* a recurrent event */

/* What happens to an asynch event's WORK when its deadline (see
 * eventer_alloc_asynch_timeout) passes while WORK runs.  OR one into the
 * event's mask (eventer_set_mask) before queueing it.  With none of them,
 * a deadline only keeps WORK from starting.
 *   EVIL_BRUTAL      the job thread gets a signal (SIGALRM) whose handler
 *                    siglongjmp()s out of WORK;
 *   CANCEL_DEFERRED  pthread_cancel() of the job thread, acted on at its
 *                    next cancellation point (sleep, read, poll, ...);
 *   CANCEL_ASYNCH    pthread_cancel() with asynchronous cancelability:
 *                    WORK may be stopped at any instruction, so it may
 *                    only run async-cancel-safe code (POSIX).
 * In every case CLEANUP then runs on the job thread (never while WORK is
 * still running) and COMPLETE on the owner loop; a cancelled job thread
 * exits and the queue starts another. */
#define EVENTER_EVIL_BRUTAL 0x100
#define EVENTER_CANCEL_DEFERRED 0x200
#define EVENTER_CANCEL_ASYNCH 0x400
#define EVENTER_CANCEL (EVENTER_CANCEL_DEFERRED | EVENTER_CANCEL_ASYNCH)
/* libmtev's name for the abort style it recommends */
#define EVENTER_DEFAULT_ASYNCH_ABORT EVENTER_EVIL_BRUTAL

/* Bits the eventer reserves for itself; a callback never sees them. */
#define EVENTER_RESERVED 0xfff00000
#define EVENTER_CROSS_THREAD_TRIGGER 0x80000000

/* The asynch phase a callback is called for.  An enum as in libmtev; the
 * values are the masks above, so `switch (mask)` on an int works. */
typedef enum eventer_asynch_op {
  EVENTER_ASYNCH_WORK = EVENTER_ASYNCH_WORK_D,
  EVENTER_ASYNCH_CLEANUP = EVENTER_ASYNCH_CLEANUP_D,
  EVENTER_ASYNCH_COMPLETE = EVENTER_ASYNCH_COMPLETE_D
} eventer_asynch_op_t;

#define EVENTER_ASYNCH EVENTER_ASYNCH_COMPLETE /* mask of an asynch event */

/* A loop thread for an fd event, spread by fd (libmtev's macro). */
#define EVENTER_CHOOSE_THREAD_FOR_EVENT_FD(e) \
  eventer_choose_owner(eventer_get_fd(e) + 1)

/* ---- events ------------------------------------------------------------- */

struct _event;
typedef struct _event *eventer_t; /* opaque; use the accessors */

/* The callback of every event kind; see the top of this file for what the
 * return value means. */
typedef int (*eventer_func_t)(eventer_t e, int mask, void *closure,
                              struct timeval *now);

/* An fd opset: how eventer_read/write/accept/close talk to an fd.  Each
 * function acts like its POSIX counterpart; on a would-block it returns -1
 * with errno EAGAIN and sets *mask to the interest needed to progress.
 * `closure` is the event.  eventer_read() & co. always call through the
 * event's current opset, so a layer (TLS, coroutines) can install its own
 * opset on an event. */
typedef int (*eventer_fd_accept_t)(int fd, struct sockaddr *addr,
                                   socklen_t *len, int *mask, void *closure);
typedef int (*eventer_fd_read_t)(int fd, void *buf, size_t len, int *mask,
                                 void *closure);
typedef int (*eventer_fd_write_t)(int fd, const void *buf, size_t len,
                                  int *mask, void *closure);
typedef int (*eventer_fd_close_t)(int fd, int *mask, void *closure);

typedef struct _fd_opset {
  eventer_fd_accept_t accept;
  eventer_fd_read_t read;
  eventer_fd_write_t write;
  eventer_fd_close_t close;
  const char *name; /* for logs: "POSIX", ... */
} *eventer_fd_opset_t;

/* libmtev's typedefs for opset layers that keep per-event state (a TLS
 * layer): set an event's opset, get and set its opset context.  The
 * closure is the event. */
typedef void (*eventer_fd_set_opset_t)(void *closure, eventer_fd_opset_t opset);
typedef void *(*eventer_fd_get_opset_ctx_t)(void *closure);
typedef void (*eventer_fd_set_opset_ctx_t)(void *closure, void *newctx);

/* The plain POSIX opset (the default of every event).  Its accept uses
 * accept4(SOCK_NONBLOCK | SOCK_CLOEXEC): the new fd is ready for the loop. */
extern eventer_fd_opset_t eventer_POSIX_fd_opset;

/* Allocation.  Each returns an event with one reference, owned by the
 * calling loop (or loop 0 of the default pool off-loop), or NULL with
 * errno (EINVAL for a NULL callback where one is required, ENOMEM). */
eventer_t eventer_alloc(void); /* blank: fd -1, mask 0, POSIX opset */
eventer_t eventer_alloc_copy(eventer_t src); /* same fields, new refcount,
                                              * not registered */
eventer_t eventer_alloc_fd(eventer_func_t func, void *closure, int fd,
                           int mask);
/* whence: absolute wall-clock time (NULL: now, i.e. next opportunity) */
eventer_t eventer_alloc_timer(eventer_func_t func, void *closure,
                              struct timeval *whence);
eventer_t eventer_alloc_recurrent(eventer_func_t func, void *closure);
eventer_t eventer_alloc_asynch(eventer_func_t func, void *closure);
/* deadline: absolute wall-clock time after which WORK is skipped (it is
 * converted to a monotonic deadline when the job is queued) */
eventer_t eventer_alloc_asynch_timeout(eventer_func_t func, void *closure,
                                       struct timeval *deadline);

/* Reference counting.  THREAD-SAFE.  eventer_free == eventer_deref: drops
 * one reference and returns mtev_true if that was the last one and the
 * event is gone (mtev_false for NULL).  Freeing an event that is still
 * registered, or dereferencing once too often, aborts with a message. */
void eventer_ref(eventer_t e);
mtev_boolean eventer_deref(eventer_t e);
mtev_boolean eventer_free(eventer_t e);

/* Live eventer_t objects right now / ever allocated.  THREAD-SAFE.  Tests
 * use eventer_allocations_current() to check refcounts return to zero. */
int64_t eventer_allocations_current(void);
int64_t eventer_allocations_total(void);

/* Accessors.  Getters return 0/NULL/-1 for a NULL event. */
int eventer_get_fd(eventer_t e);
int eventer_get_mask(eventer_t e);
/* Changes the mask without touching eventer state: only for events that
 * are not registered; use eventer_update() (or the callback's return)
 * for a registered fd event. */
void eventer_set_mask(eventer_t e, int mask);
void *eventer_get_closure(eventer_t e);
void eventer_set_closure(eventer_t e, void *closure);
eventer_func_t eventer_get_callback(eventer_t e);
void eventer_set_callback(eventer_t e, eventer_func_t func);
struct timeval eventer_get_whence(eventer_t e);
/* Sets a timer's whence; a registered timer is re-scheduled (a deadline
 * computed from the new whence).  From another thread this is queued.
 * The _ex form returns 0, or -1 with errno (EINVAL, ENOMEM). */
void eventer_update_whence(eventer_t e, struct timeval whence);
int eventer_update_whence_ex(eventer_t e, struct timeval whence);
/* The owner loop's thread ((pthread_t)0 if that loop has no thread yet). */
pthread_t eventer_get_owner(eventer_t e);
/* Moves an unregistered event to the loop run by thread t (or, from inside
 * the event's own callback, a registered fd event: it migrates when the
 * callback returns a mask).  eventer_set_owner logs a failure;
 * eventer_set_owner_ex returns 0, or -1 with errno: EINVAL if t runs no
 * loop, EBUSY if the event is registered and this is not its callback. */
void eventer_set_owner(eventer_t e, pthread_t t);
int eventer_set_owner_ex(eventer_t e, pthread_t t);
/* 0 if the calling thread is e's owner loop thread, non-zero otherwise. */
int eventer_thread_check(eventer_t e);
eventer_fd_opset_t eventer_get_fd_opset(eventer_t e);
void eventer_set_fd_opset(eventer_t e, eventer_fd_opset_t opset);
void *eventer_get_fd_opset_ctx(eventer_t e);
void eventer_set_fd_opset_ctx(eventer_t e, void *ctx);

/* Opset calls through e's current opset (see eventer_fd_opset_t). */
int eventer_read(eventer_t e, void *buf, size_t len, int *mask);
int eventer_write(eventer_t e, const void *buf, size_t len, int *mask);
int eventer_accept(eventer_t e, struct sockaddr *addr, socklen_t *len,
                   int *mask);
int eventer_close(eventer_t e, int *mask);
eventer_fd_accept_t eventer_fd_opset_get_accept(eventer_fd_opset_t opset);
eventer_fd_read_t eventer_fd_opset_get_read(eventer_fd_opset_t opset);
eventer_fd_write_t eventer_fd_opset_get_write(eventer_fd_opset_t opset);
eventer_fd_close_t eventer_fd_opset_get_close(eventer_fd_opset_t opset);

/* Calls e's callback directly, outside the loop: nothing interprets the
 * return value (libmtev's macro). */
#define eventer_callback(e, m, c, n) eventer_get_callback(e)((e), (m), (c), (n))

/* fd flags.  0, or -1 with errno. */
int eventer_set_fd_nonblocking(int fd);
int eventer_set_fd_blocking(int fd);

/* Callback names, for logs and fatal messages.  THREAD-SAFE.  0, or -1
 * with errno (EINVAL, ENOMEM).  Naming a function again replaces its name
 * (and drops a describer). */
int eventer_name_callback(const char *name, eventer_func_t f);
/* As eventer_name_callback, with a describer: fn(buff, bufflen, e,
 * closure) writes a NUL-terminated description of event e (at most
 * bufflen bytes) whenever eventer_name_for_callback_e names e. */
int eventer_name_callback_ext(const char *name, eventer_func_t f,
                              void (*fn)(char *buff, int bufflen, eventer_t e,
                                         void *closure),
                              void *closure);
/* The registered name, or "cb@0x..." (thread-local buffer, valid until the
 * next call on this thread). */
const char *eventer_name_for_callback(eventer_func_t f);
/* The describer's text for e when f has one and e is not NULL, else as
 * eventer_name_for_callback (same buffer rules). */
const char *eventer_name_for_callback_e(eventer_func_t f, eventer_t e);
eventer_func_t eventer_callback_for_name(const char *name);

/* ---- callbacks: the running event, its time, contexts ----------------------- */

/* Calls e's callback as the loop does: inside it eventer_get_this_event()
 * is e and eventer_gettimeofcallback() is *now, and every registered
 * context's callback_prep / callback_cleanup runs around it.  Returns the
 * callback's result, which nothing interprets (as eventer_callback). */
int eventer_run_callback(eventer_t e, int mask, void *closure,
                         struct timeval *now);
/* The event whose callback the calling thread is running (loop callbacks,
 * asynch WORK / CLEANUP / COMPLETE), or NULL. */
eventer_t eventer_get_this_event(void);
/* The `now` of the callback the calling thread ran last (or is running);
 * the current time on a thread that ran none.  tzp is ignored
 * (gettimeofday's signature).  Always 0. */
int eventer_gettimeofcallback(struct timeval *now, void *tzp);
/* The same time in milliseconds / microseconds since the epoch. */
uint64_t eventer_callback_ms(void);
uint64_t eventer_callback_us(void);

/* A high-resolution monotonic clock, in nanoseconds (libmtev's
 * mtev_hrtime_t / mtev_gethrtime, spelled eventer_* in eventer.h). */
#ifndef MTEV_HRTIME_DEFINED
#define MTEV_HRTIME_DEFINED
typedef uint64_t mtev_hrtime_t;
#endif
mtev_hrtime_t mtev_gethrtime(void);
#define eventer_hrtime_t mtev_hrtime_t
#define eventer_gethrtime mtev_gethrtime

/* Carry contexts: per-event slots for a layer (tracing, accounting) that
 * follow an event through its life.  Every hook may be NULL.
 *   eventer_t_init      at allocation (also of copies); returns e
 *   eventer_t_deinit    when the event is freed
 *   eventer_t_copy      for eventer_alloc_copy(src): (copy, src)
 *   eventer_t_callback_prep / _cleanup   around each callback:
 *                       (e, mask, closure, now) and (e, mask)
 * Hooks run on whatever thread does the allocation / free / callback. */
typedef struct eventer_context_opset_t {
  eventer_t (*eventer_t_init)(eventer_t);
  void (*eventer_t_deinit)(eventer_t);
  void (*eventer_t_copy)(eventer_t, const eventer_t);
  void (*eventer_t_callback_prep)(eventer_t, int, void *, struct timeval *);
  void (*eventer_t_callback_cleanup)(eventer_t, int);
} eventer_context_opset_t;

/* Registers a context class before events use it (THREAD-SAFE; the opset
 * must outlive the process's events).  Returns its ctx_idx, or -1 with
 * errno (EINVAL, ENOSPC: at most EVENTER_MAX_CONTEXTS classes). */
#define EVENTER_MAX_CONTEXTS 8
int eventer_register_context(const char *name, eventer_context_opset_t *opset);
/* e's data for a context (NULL if unset or a bad index). */
void *eventer_get_context(eventer_t e, int ctx_idx);
/* Sets e's data for a context and returns the previous data (NULL with
 * errno EINVAL for a bad index, ENOMEM). */
void *eventer_set_context(eventer_t e, int ctx_idx, void *data);

/* ---- registration --------------------------------------------------------
 * THREAD-SAFE in the sense described above: off the owner thread they are
 * queued to the owner.  The void calls (libmtev's signatures) log a
 * failure to eventer_err; their _ex forms return 0, or -1 with errno:
 * EINVAL (bad argument), EBUSY (already registered or queued), EEXIST
 * (another event holds that fd), ENXIO (no eventer: call eventer_init
 * first).  After a failed add the caller still holds its reference. */

/* Registers e according to its mask (fd, timer, recurrent; asynch events
 * go to the default job queue).  The eventer takes over the reference. */
void eventer_add(eventer_t e);
int eventer_add_ex(eventer_t e);
/* Unregisters e and hands the eventer's reference back: returns e, or
 * NULL (errno ENOENT) if it was not registered, EBUSY for an asynch event
 * in flight.  Off the owner thread: NULL/EINPROGRESS, see above. */
eventer_t eventer_remove(eventer_t e);
/* The fd event registered for fd, removed (as eventer_remove), or NULL
 * (errno ENOENT, EINVAL for fd < 0).  Off the owner loop's thread the
 * event is not touched (its owner may free it meanwhile): the removal is
 * queued to the owner loop, which removes the event still registered for
 * fd if it is the one seen here and drops the eventer's reference itself;
 * NULL/EINPROGRESS then. */
eventer_t eventer_remove_fd(int fd);
#define eventer_remove_fde(e) eventer_remove_fd(eventer_get_fd(e))
/* The fd event registered for fd, or NULL.  THREAD-SAFE read; the pointer
 * carries no reference and is only stable on the owner thread. */
eventer_t eventer_find_fd(int fd);
/* Sets the interest mask of an fd event (registered or not). */
void eventer_update(eventer_t e, int mask);
int eventer_update_ex(eventer_t e, int mask);
/* Calls e's callback with `mask` on its owner loop (in the next task
 * phase) and then treats the return value as for a dispatch of its kind:
 * an fd event returning a mask becomes registered with that mask.  e must
 * not be registered; the eventer takes over the reference. */
void eventer_trigger(eventer_t e, int mask);
int eventer_trigger_ex(eventer_t e, int mask);
/* Wakes e's owner loop (NULL: loop 0 of the default pool) from its wait.
 * THREAD-SAFE. */
void eventer_wakeup(eventer_t e);
/* Calls fn(e, closure) for every registered fd event of every loop.  The
 * events are collected first (each with a reference held until fn has
 * seen it), so fn may remove or free them.  THREAD-SAFE. */
void eventer_foreach_fdevent(void (*fn)(eventer_t e, void *closure),
                             void *closure);
/* Same for every registered timer event (eventer_t timers; coroutine
 * sleeps and intrusive timer nodes are not events). */
void eventer_foreach_timedevent(void (*fn)(eventer_t e, void *closure),
                                void *closure);
/* The longest a loop sleeps in epoll_wait while it has recurrent events
 * (or a watchdog) to serve; libmtev's default, 200 ms.  Set it before
 * eventer_init(). */
extern struct timeval eventer_max_sleeptime;

/* Timer helpers (libmtev's).  The `eventer_in*`/`eventer_at` forms only
 * allocate; the `eventer_add_*` forms allocate and add and return the
 * event (NULL with errno on failure).  The returned pointer carries no
 * reference of its own: the timer may already have fired and been freed
 * when an add from a non-owner thread returns. */
eventer_t eventer_at(eventer_func_t func, void *closure, struct timeval whence);
eventer_t eventer_in(eventer_func_t func, void *closure, struct timeval diff);
eventer_t eventer_in_s_us(eventer_func_t func, void *closure,
                          unsigned long s, unsigned long us);
eventer_t eventer_add_at(eventer_func_t func, void *closure,
                         struct timeval whence);
eventer_t eventer_add_in(eventer_func_t func, void *closure,
                         struct timeval diff);
eventer_t eventer_add_in_s_us(eventer_func_t func, void *closure,
                              unsigned long s, unsigned long us);
eventer_t eventer_alloc_timer_next_opportunity(eventer_func_t func,
                                               void *closure, pthread_t owner);
eventer_t eventer_add_timer_next_opportunity(eventer_func_t func,
                                             void *closure, pthread_t owner);
/* eventer_add for a timer / a recurrent event (EINVAL for another kind) */
void eventer_add_timed(eventer_t e);
int eventer_add_timed_ex(eventer_t e);
eventer_t eventer_remove_timed(eventer_t e);
void eventer_add_recurrent(eventer_t e);
int eventer_add_recurrent_ex(eventer_t e);
eventer_t eventer_remove_recurrent(eventer_t e);

/* ---- loops, pools, threads ------------------------------------------------ */

typedef struct eventer_pool_t eventer_pool_t; /* a named group of loops */
typedef struct eventer_loop eventer_loop_t;   /* one loop (opaque) */

/* Settings (libmtev's <eventer><config> keys), before eventer_init() only:
 *   "concurrency"            loops in the default pool (default: CPUs online)
 *   "loop_<name>"            "N[,watchdog_timeout]": pool <name> with N
 *                            loops (loop_default: the default pool) and
 *                            its watchdog timeout in seconds
 *   "default_queue_threads"  concurrency of the default job queue
 *                            (default: max(4, CPUs online))
 *   "jobq_<name>"            "concurrency[,min[,max[,safety[,backlog
 *                            [,lifo|fifo]]]]]": job queue <name>, created at
 *                            eventer_init (safety: none, cs or gc; backlog:
 *                            max_backlog; empty fields keep the default)
 *   "default_jobq_ordering"  "fifo" (default) or "lifo" for queues created
 *                            without an explicit ordering
 *   "rlim_nofiles"           eventer_init raises RLIMIT_NOFILE to this
 *                            (see eventer_impl_setrlimit)
 *   "default_ca_chain"       a CA file path, kept for the TLS layer
 *   "ssl_*"                  passed to eventer_ssl_config when the TLS
 *                            layer (eventer_SSL_fd_opset) is linked in
 *   "show_loop_callbacks_threshold", "show_jobq_callbacks_threshold"
 *                            milliseconds: loop callbacks / asynch WORK
 *                            running longer are logged to mtev_notice
 *                            (unset or 0: not timed at all)
 * eventer_impl_propset returns 0, or -1 with errno: EINVAL for a bad value
 * of a known key, EBUSY after eventer_init(), ENOMEM.  An unknown key is
 * logged as a warning (eventer_err) and ignored with 0, as in libmtev;
 * eventer_impl_propset_ex refuses it with -1/ENOENT instead (mtev_conf
 * uses that to name the file and line in its own warning). */
int eventer_impl_propset(const char *key, const char *value);
int eventer_impl_propset_ex(const char *key, const char *value);
/* libmtev's name for the same call (its impl table's propset). */
#define eventer_propset eventer_impl_propset
/* Raises the soft RLIMIT_NOFILE towards "rlim_nofiles" (default 1048576),
 * capped by the hard limit; returns the soft limit now in force (-1 with
 * errno if it cannot be read).  eventer_init calls it only when
 * "rlim_nofiles" was set. */
int eventer_impl_setrlimit(void);
/* Selects the eventer implementation by name: 0 for "epoll" (the only
 * one), -1/EINVAL otherwise. */
int eventer_choose(const char *name);
/* libmtev initialises its globals here; ours are static, so this only
 * exists for programs that call it.  Idempotent. */
void eventer_init_globals(void);

/* Creates pools, loops, the default job queue and a thread for every
 * loop.  Every loop but loop 0 of the default pool runs at once; loop 0's
 * thread waits for eventer_loop() / eventer_loop_return() (see above).
 * The caller is no loop thread.  Also re-reads EVENTER_DEBUG.  0, or -1
 * with errno (EALREADY, ENOMEM, ...). */
int eventer_init(void);
/* Same, for an external driver: no thread is started and the caller is not
 * bound to any loop.  Bind threads with eventer_loop_attach(). */
int eventer_init_external(void);
/* Both let loop 0 run; one of them, once, from the eventer_init() caller
 * (anything else aborts with a message).
 *   eventer_loop:        then blocks; after eventer_shutdown() it waits for
 *                        every loop thread and calls exit(EXIT_SUCCESS) (it
 *                        never returns).
 *   eventer_loop_return: returns at once (as in libmtev), with every loop
 *                        running on its own thread.  Stop with
 *                        eventer_shutdown(); eventer_loop_wait() or
 *                        eventer_fini() then joins the threads. */
void eventer_loop(void);
void eventer_loop_return(void);
/* Blocks until eventer_shutdown() has been called and every loop thread
 * the eventer started has stopped.  Not from a loop thread (it would wait
 * for itself: aborts with a message). */
void eventer_loop_wait(void);
/* The time eventer_init() ran: 0, or -1/ENXIO before init. */
int eventer_get_epoch(struct timeval *epoch);
/* Asks every loop to stop at the end of its current iteration and wakes
 * them.  THREAD-SAFE; callable from a callback. */
void eventer_shutdown(void);
/* Frees everything: stops job queues (queued jobs get CLEANUP but no WORK
 * and no COMPLETE), joins loop threads, drops every registered event and
 * queued operation; it shuts the eventer down first if nobody did.  Never
 * call it from a callback (an external driver may, between two run_once
 * calls); other external drivers may still be running: eventer_fini()
 * stops them and waits until each has been handed EVENTER_RUN_STOPPED.
 * The layers built on the eventer (coroutines, TLS) are told of each loop
 * first.
 * eventer_init() may be called again afterwards; eventer_impl_propset
 * settings are reset to their defaults. */
void eventer_fini(void);

/* mtev_true on a thread that drives (or was bound to) a loop. */
mtev_boolean eventer_in_loop(void);
/* 1 if thread tid drives a loop, else 0. */
int eventer_is_loop(pthread_t tid);
/* Number of loops in the default pool. */
int eventer_loop_concurrency(void);

/* Pools.  The default pool is named "default". */
eventer_pool_t *eventer_pool(const char *name); /* NULL if none */
const char *eventer_pool_name(eventer_pool_t *pool);
uint32_t eventer_pool_concurrency(eventer_pool_t *pool);
eventer_pool_t *eventer_get_pool_for_event(eventer_t e);
int eventer_pool_count(void);                  /* pools, default first */
eventer_pool_t *eventer_pool_by_index(int i);  /* NULL if out of range */
/* A loop thread of the default pool: n == 0 gives loop 0; other values
 * spread over loops 1..N-1 (n modulo N-1), keeping loop 0 for work that
 * must not be spread (libmtev's rule).  (pthread_t)0 if that loop has no
 * thread yet. */
pthread_t eventer_choose_owner(int n);
/* A loop thread of `pool`: n modulo its concurrency (the default pool
 * follows eventer_choose_owner's rule). */
pthread_t eventer_choose_owner_pool(eventer_pool_t *pool, int n);

/* Loop handles (for external drivers and the layers above). */
eventer_loop_t *eventer_loop_current(void);     /* NULL off-loop */
eventer_loop_t *eventer_pool_loop(eventer_pool_t *pool, int index);
eventer_loop_t *eventer_get_owner_loop(eventer_t e);
int eventer_set_owner_loop(eventer_t e, eventer_loop_t *loop); /* as set_owner */
int eventer_loop_index(eventer_loop_t *loop);   /* index in its pool */
eventer_pool_t *eventer_loop_pool(eventer_loop_t *loop);
/* A name for the calling thread, never NULL: "e:<pool>/<n>" on loop
 * threads, "q:<queue>/<n>" on job threads (the queue's short name if it
 * has one), else the OS thread name ("unnamed" if it has none).  The
 * string stays valid while the thread lives. */
const char *eventer_get_thread_name(void);

/* Watchdog.  A pool's timeout (seconds; 0: off, the default) comes from
 * "loop_<name>" or eventer_pool_watchdog_timeout().  When a loop of that
 * pool spends longer than the timeout in one iteration (a callback that
 * blocks), a monitor thread logs an error naming the loop and the running
 * callback, once per stall.  libmtev's watchdog is a parent process that
 * kills and restarts a stalled child; this one only reports. */
void eventer_pool_watchdog_timeout(eventer_pool_t *pool, double timeout);
/* The calling loop thread's watchdog timeout in seconds, 0.0 if none (or
 * not a loop thread). */
double eventer_watchdog_timeout(void);
/* Same as a timeval: mtev_true and *dur filled if a timeout is set. */
mtev_boolean eventer_watchdog_timeout_timeval(struct timeval *dur);

/* ---- the driver API (DESIGN.md section 4) ---------------------------------
 * An external driver (the Go binding) initializes with
 * eventer_init_external(), binds one thread per loop with
 * eventer_loop_attach() and calls eventer_run_once() on it until it
 * returns EVENTER_RUN_STOPPED.  C loops use the same function:
 * eventer_loop() is `while (eventer_run_once(NULL, NULL) != STOPPED);`. */

/* Makes the calling thread the driver of loop `loop_index` of the default
 * pool (or of `pool`).  0, or -1 with errno: ENXIO (no eventer), EINVAL
 * (bad index), EBUSY (loop bound to another thread, or this thread already
 * drives a loop). */
int eventer_loop_attach(int loop_index);
int eventer_pool_loop_attach(eventer_pool_t *pool, int loop_index);
/* Unbinds the calling thread from its loop (the loop keeps its state and
 * may be attached again).  0, or -1/EINVAL if not attached.  After
 * run_once returned EVENTER_RUN_STOPPED a driver must not touch the
 * eventer any more (detach included) unless it knows eventer_fini() has
 * not started: eventer_fini() frees a loop as soon as its driver has been
 * handed STOPPED (it waits for that; a thread that exits needs no detach). */
int eventer_loop_detach(void);

/* What run_once hands back to the driver, and what the driver hands in. */
typedef struct eventer_step {
  int kind;        /* EVENTER_STEP_* (0: nothing) */
  eventer_t e;     /* CALLBACK: the event; a reference is held for the
                    * driver until the next run_once (do not deref it) */
  int mask;        /* CALLBACK: the mask to pass to the callback */
  void *closure;   /* CALLBACK: e's closure; USER: free for the emitter */
  struct timeval now; /* CALLBACK: the `now` to pass to the callback */
  int rv;          /* CALLBACK, driver -> run_once: the callback's result */
  uint64_t u64[3]; /* USER: free for the emitter */
} eventer_step_t;

#define EVENTER_STEP_NONE 0
#define EVENTER_STEP_CALLBACK 1 /* call a foreign callback, hand back rv */
#define EVENTER_STEP_USER 16    /* first kind free for emitters (>= 16) */

/* eventer_run_once results */
#define EVENTER_RUN_DONE 0    /* the iteration completed */
#define EVENTER_RUN_STEP 1    /* *step holds work for the driver */
#define EVENTER_RUN_STOPPED 2 /* eventer_shutdown(): the loop is stopping */

/* One loop iteration of the calling thread's loop (phases: top of file).
 *
 * max_wait bounds the epoll wait: NULL waits until the next timer or a
 * wake-up; {0,0} never blocks.
 *
 * step == NULL (C loops): every callback, foreign or not, is called here.
 * step != NULL (a driver): when dispatch reaches an event whose callback
 * was marked with eventer_callback_set_foreign(), run_once does not call
 * it.  It fills *step (kind CALLBACK, e with a reference held for the
 * driver, mask, closure, now) and returns EVENTER_RUN_STEP, keeping its
 * place in the iteration.  The driver calls the callback itself, then
 * calls run_once again with step->kind still CALLBACK, step->e unchanged
 * and step->rv = the callback's return value: run_once applies rv exactly
 * as it would a C callback's (new fd mask, timer re-add, removal, free,
 * reference drop) and continues the SAME iteration where it stopped; no
 * new epoll_wait happens until the paused iteration is finished.  A step
 * emitted by C code (eventer_step_emit) is returned the same way; the
 * driver handles it and calls again with step->kind = 0.  The dispatch
 * order is therefore identical for C and foreign callbacks.
 *
 * Returns EVENTER_RUN_DONE, EVENTER_RUN_STEP, EVENTER_RUN_STOPPED (at an
 * iteration boundary after eventer_shutdown(); further calls keep
 * returning it), or -1 with errno: EINVAL (not a loop thread; a paused
 * callback's rv missing or for another event; a CALLBACK rv with nothing
 * paused; bad max_wait), EBUSY (called from inside a callback). */
int eventer_run_once(eventer_step_t *step, const struct timeval *max_wait);

/* Marks a callback function as foreign (e.g. the Go trampoline).  Foreign
 * callbacks are handed back by run_once when it has a step buffer, and
 * called directly otherwise.  THREAD-SAFE.  0, or -1/EINVAL (NULL),
 * ENOSPC (more than 16 foreign functions). */
int eventer_callback_set_foreign(eventer_func_t f);
int eventer_callback_is_foreign(eventer_func_t f);

/* From C code running inside run_once (a callback, a task, a timer node,
 * a coroutine the loop resumed): the driver's step slot when run_once was
 * called with a step buffer and the slot is still free in this call, else
 * NULL.  Fill kind (>= EVENTER_STEP_USER), closure and u64[]; when the
 * current callback/task returns, run_once returns EVENTER_RUN_STEP at that
 * point, preserving order.  On NULL, post a task instead. */
eventer_step_t *eventer_step_emit(void);

/* The epoll fd of the calling thread's loop (-1/EINVAL off-loop): a driver
 * may wait on it elsewhere (Go's netpoller) and then call run_once with
 * max_wait {0,0}.  Cross-thread wake-ups make it readable too. */
int eventer_loop_pollfd(void);
/* How long the calling thread's loop may sleep, in microseconds: 0 when
 * work is pending (tasks, a due timer, a paused iteration, queued
 * cross-thread work), -1 when nothing is scheduled, else the time to the
 * next timer.  -2 with errno EINVAL off-loop. */
int64_t eventer_next_timeout_us(void);

/* A driver that waits for its loop elsewhere only at times (the Go binding
 * does while Go code it handed work to runs in other goroutines: a thread
 * blocked in epoll_wait inside a cgo call keeps the Go runtime's only P
 * from them).  After an iteration run with max_wait {0,0},
 * eventer_loop_sleep_begin() says whether the loop may sleep: 0 when it
 * must run again at once (work pending, a timer due, or that iteration's
 * poll found something: more may be ready); 1 when it may, with
 * *timeout_us the longest it may sleep (-1: no bound).  From 1 on, the
 * loop counts as asleep: a cross-thread push writes its eventfd, as for a
 * loop blocked in epoll_wait, so the loop's epoll fd becomes readable for
 * new fd readiness and for pushes alike.  The driver waits for that (or
 * the timeout), then calls eventer_loop_sleep_end() before run_once.
 * Owner thread only; -1/EINVAL off-loop. */
int eventer_loop_sleep_begin(int64_t *timeout_us);
void eventer_loop_sleep_end(void);

/* ---- tasks: intrusive, no allocation ----------------------------------------
 * A task is a node the caller owns (embed it in your own struct); the loop
 * runs t->run(t, now) once in its task phase.  A task must stay alive and
 * must not be re-posted until it has run. */
typedef struct eventer_task {
  struct eventer_task *next; /* owned by the loop while queued */
  void (*run)(struct eventer_task *t, struct timeval *now);
} eventer_task_t;

/* Owner thread: appends t to the calling loop's FIFO; it runs in this
 * iteration's task phase if that has not started yet, else the next one.
 * 0, or -1/EINVAL (off-loop, NULL t or run). */
int eventer_task_post(eventer_task_t *t);
/* THREAD-SAFE: posts t to `loop` through its cross-thread queue and wakes
 * it.  0, or -1/EINVAL. */
int eventer_task_post_to(eventer_loop_t *loop, eventer_task_t *t);

/* ---- intrusive timers: no allocation ------------------------------------------
 * A node the caller owns (embed it; zero-initialize it or use
 * EVENTER_TIMER_NODE_INIT), on the calling loop's timer heap.  `fire`
 * runs once in the timer phase.  Owner thread only. */
typedef struct eventer_timer_node {
  uint64_t deadline_ns; /* CLOCK_MONOTONIC deadline, set by add */
  uint64_t seq;         /* add order: breaks ties between equal deadlines */
  uint32_t heap_idx;    /* position in the owner's heap (while queued) */
  void *loop;           /* owner loop while queued, NULL otherwise */
  void (*fire)(struct eventer_timer_node *n, struct timeval *now);
} eventer_timer_node_t;

#define EVENTER_TIMER_NODE_INIT(fn) {0, 0, 0, NULL, (fn)}

/* CLOCK_MONOTONIC now, in nanoseconds. */
uint64_t eventer_mono_ns(void);
/* Queues n to fire after `delay` (NULL or {0,0}: next timer phase); a node
 * already queued is re-scheduled.  0, or -1/EINVAL (off-loop, NULL fire,
 * bad delay, queued on another loop). */
int eventer_timer_node_add(eventer_timer_node_t *n, const struct timeval *delay);
/* Same with an absolute CLOCK_MONOTONIC deadline in ns. */
int eventer_timer_node_add_at_ns(eventer_timer_node_t *n, uint64_t deadline_ns);
/* Dequeues n.  Idempotent: 1 if it was queued, 0 if not, -1/EINVAL if it
 * is queued on another loop. */
int eventer_timer_node_remove(eventer_timer_node_t *n);
/* 1 while n is queued. */
int eventer_timer_node_pending(const eventer_timer_node_t *n);

/* ---- asynch events on job queues ------------------------------------------
 * A job queue (eventer_jobq.h) is a pool of threads for blocking work.  An
 * asynch event's callback runs with mask EVENTER_ASYNCH_WORK, then
 * EVENTER_ASYNCH_CLEANUP on a job thread, then EVENTER_ASYNCH_COMPLETE on
 * its owner loop (task phase).  WORK is skipped when the event's deadline
 * (eventer_alloc_asynch_timeout) has passed by the time a thread picks it
 * up; a WORK that is running when the deadline passes is stopped as its
 * mask says (EVENTER_EVIL_BRUTAL, EVENTER_CANCEL_*; by default it is left
 * to finish).  CLEANUP and COMPLETE always run. */
typedef struct _eventer_jobq_t eventer_jobq_t;

/* Queues asynch event e on q (NULL: the default queue), subqueue id (0 by
 * default).  The eventer takes over the reference.  The void forms log a
 * failure; the _ex forms return 0, or -1 with errno (EINVAL, EBUSY if e is
 * registered or in flight, ESHUTDOWN if q is shutting down). */
void eventer_add_asynch(eventer_jobq_t *q, eventer_t e);
int eventer_add_asynch_ex(eventer_jobq_t *q, eventer_t e);
void eventer_add_asynch_subqueue(eventer_jobq_t *q, eventer_t e, uint64_t id);
int eventer_add_asynch_subqueue_ex(eventer_jobq_t *q, eventer_t e,
                                   uint64_t id);
/* A job dependent on the job whose WORK calls this (from that WORK, on a
 * job thread): the parent's COMPLETE waits until every dependent job has
 * finished its WORK and CLEANUP.  Called anywhere else, an ordinary job. */
void eventer_add_asynch_dep(eventer_jobq_t *q, eventer_t e);
int eventer_add_asynch_dep_ex(eventer_jobq_t *q, eventer_t e);
void eventer_add_asynch_dep_subqueue(eventer_jobq_t *q, eventer_t e,
                                     uint64_t id);
int eventer_add_asynch_dep_subqueue_ex(eventer_jobq_t *q, eventer_t e,
                                       uint64_t id);
/* As the adds above, but mtev_false (errno EAGAIN) when the backlog is at
 * max_backlog (or any other failure, with its errno); the caller keeps
 * the reference then (and must clean up the event). */
mtev_boolean eventer_try_add_asynch(eventer_jobq_t *q, eventer_t e);
mtev_boolean eventer_try_add_asynch_subqueue(eventer_jobq_t *q, eventer_t e,
                                             uint64_t id);
mtev_boolean eventer_try_add_asynch_dep(eventer_jobq_t *q, eventer_t e);
mtev_boolean eventer_try_add_asynch_dep_subqueue(eventer_jobq_t *q,
                                                 eventer_t e, uint64_t id);
/* The back queue for e: a queue whose "jobs" run on e's owner loop rather
 * than on threads.  eventer_add_asynch(eventer_default_backq(e), x) calls
 * x's callback with x's mask on x's owner loop (task phase); a non-zero
 * return re-adds x with that mask, 0 drops the reference.  In libmtev the
 * completions of asynch events travel through it; here they need no
 * queue.  Never NULL once eventer_jobq functions work (always). */
eventer_jobq_t *eventer_default_backq(eventer_t e);

/* libmtev's CLOEXEC helpers: always valid to OR in on Linux; macros, so
 * they work in #if, case labels and static initialisers. */
#define NE_SOCK_CLOEXEC SOCK_CLOEXEC
#define NE_O_CLOEXEC O_CLOEXEC

/* ---- dedicated threads (eventer_thread.c) ----------------------------------
 * eventer_run_in_thread(e, mask): libmtev's "run this event on a thread of
 * its own".  e is taken out of the eventer (it must be unregistered, or
 * registered and the caller on its owner loop), its fd is made blocking, and
 * a new detached thread calls e's callback with `mask` until it returns 0,
 * each time with the mask the callback returned (less EVENTER_EXCEPTION);
 * then the thread frees e and exits.  The thread is not a loop: eventer_add
 * & co. from it go through the owner loops' queues.  eventer_fini() waits
 * (up to 2 s) for such threads to be gone: stop them first.  The reference the
 * caller (or the eventer) held passes to the thread.  0, or -1 with errno
 * (EINVAL, EBUSY: registered and not on its owner loop; or pthread_create's
 * error, leaving e with the caller).  libmtev's returns void.
 * eventer_callback_names: calls f(name, fn, closure) for every callback
 * named with eventer_name_callback, in registration order (f may use the
 * eventer API; names registered meanwhile may be missed).  THREAD-SAFE. */
int eventer_run_in_thread(eventer_t e, int mask);
void eventer_callback_names(void (*f)(const char *name, eventer_func_t fn,
                                      void *closure),
                            void *closure);
/* ---- end of dedicated threads ---------------------------------------------- */

#ifdef __cplusplus
}
#endif

/* The rest of libmtev's eventer.h: job queues, and the coroutine layer
 * (eventer_aco_opset.h brings in eventer_aco.h). */
#include "eventer_jobq.h"
#include "eventer_aco_opset.h"

#endif /* EVENTER_H */
