/*
 * eventer_impl.h - private structures shared by the eventer .c files and
 * the layers built inside csrc/eventer (coroutines, cgo).  Not installed.
 *
 * Naming: every non-static internal symbol starts with ev_ so the public
 * (libmtev-named) API and the internals never blur, and so each .c can be
 * compiled as its own translation unit (Makefile, cgo unity files).
 */
#ifndef EVENTER_IMPL_H
#define EVENTER_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/time.h>

#include "eventer.h"
#include "mtev_log.h"

/* ---- always-on invariants ---------------------------------------------------
 * EV_ASSERT(cond, "the rule") aborts with the rule that was broken; it is
 * never compiled out (assert(3) vanishes under NDEBUG). */
#define EV_ASSERT(cond, rule)                                              \
  do {                                                                     \
    if (__builtin_expect(!(cond), 0))                                      \
      mtev_log_fatal(mtev_error, __FILE__, __LINE__,                       \
                     "eventer: invariant broken: %s (%s)\n", (rule), #cond); \
  } while (0)

#define EV_CONTAINER_OF(ptr, type, member)                                 \
  ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Relaxed/acquire/release shorthands for fields shared between threads. */
#define EV_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define EV_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define EV_LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)

typedef struct eventer_loop ev_loop_t;

/* ---- adaptive spinning before a sleep ----------------------------------------
 * A thread that hands work to another thread and waits for the answer (a
 * loop waiting for an asynch COMPLETE, a job thread waiting for the next
 * job) spins for a short while before it sleeps when recent waits show the
 * answer comes soon: a sleep costs a wake-up syscall on the other side and
 * ~5 us of scheduler latency on this one.  The budget is learned per
 * waiter: a wait that ended with work from the other thread after w ns
 * (caught by the spin, or woken from a sleep with w up to half the limit)
 * raises it to 2w; a spin that ends empty, a spin that was preempted
 * (its clock jumped, or w is beyond the limit) or a long sleep halves it
 * (under EV_SPIN_FLOOR_NS it is 0: no spin).  So a spin that does not pay stops within a few
 * waits, and an idle thread spins once, briefly, before it sleeps for
 * good.  A waiter does not spin while the thread it waits for last ran on
 * its own CPU (both spinning on one CPU only delays the other).  The limit
 * is the "spin_us" setting. */
#define EV_SPIN_FLOOR_NS 1000u
/* A spin that sees its clock jump by this much between two looks was
 * preempted: another thread wanted the CPU, so it stops and backs off. */
#define EV_SPIN_PREEMPTED_NS 10000u

typedef struct {
  uint32_t budget_ns; /* how long the next wait may spin, 0: sleep at once */
} ev_spin_t;

/* The limit in ns ("spin_us", default 50 us; 0 disables spinning). */
uint32_t ev_cfg_spin_max_ns(void);

static inline void ev_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  __asm__ __volatile__("" ::: "memory");
#endif
}

/* A spin ended without work, or work came too late for any spin. */
static inline void ev_spin_missed(ev_spin_t *s) {
  s->budget_ns /= 2;
  if (s->budget_ns < EV_SPIN_FLOOR_NS) s->budget_ns = 0;
}

/* Work came waited_ns after the wait began (in a spin, or soon enough that
 * one would have caught it): spin at least twice that next time.  Past
 * the limit, the spin was preempted (the CPU is contended, maybe by the
 * very thread it waits for): back off instead. */
static inline void ev_spin_caught(ev_spin_t *s, uint64_t waited_ns) {
  uint64_t max = ev_cfg_spin_max_ns(), want = 2 * waited_ns + EV_SPIN_FLOOR_NS;
  if (waited_ns > max) {
    ev_spin_missed(s);
    return;
  }
  if (want > max) want = max;
  if (want > s->budget_ns) s->budget_ns = (uint32_t)want;
}

/* A wait that slept ended after waited_ns (counted from the start of the
 * wait, spin included).  woken_by_work: the other thread's work woke it
 * (and a spin could have caught it: that thread ran on another CPU).
 * spun: the wait spun first, in vain. */
static inline void ev_spin_slept(ev_spin_t *s, int woken_by_work,
                                 uint64_t waited_ns, int spun) {
  if (woken_by_work && waited_ns <= ev_cfg_spin_max_ns() / 2)
    ev_spin_caught(s, waited_ns); /* a longer spin would have paid */
  else if (spun || woken_by_work)
    ev_spin_missed(s);
}

/* The CPU the calling thread runs on, -1 if unknown (cheap: rseq/vDSO). */
int ev_cpu_self(void);

/* ---- events ---------------------------------------------------------------- */

/* Where an event is.  Written by the owner thread, except the NONE ->
 * QUEUED (cross-thread add/trigger) and NONE -> JOB transitions, which any
 * thread may make with a CAS; that CAS is what makes "add twice" fail with
 * EBUSY instead of corrupting a list. */
enum {
  EV_ST_NONE = 0, /* not registered anywhere */
  EV_ST_QUEUED,   /* an add or trigger is queued (xtask in a queue) */
  EV_ST_FD,       /* in the fd table and its owner's epoll set */
  EV_ST_TIMER,    /* in its owner's timer heap */
  EV_ST_RECUR,    /* in its owner's recurrent list */
  EV_ST_JOB       /* asynch: queued/running on a job queue, or its
                   * COMPLETE is on the way to the owner loop */
};

/* What a queued xtask does when the owner applies it. */
enum { EV_XOP_ADD = 1, EV_XOP_TRIGGER };

/* Links of the coroutine layer's intrusive wait queues (eventer_aco_impl.h
 * has the operations): circular doubly-linked lists with a sentinel. */
typedef struct ev_aco_link {
  struct ev_aco_link *next, *prev;
} ev_aco_link_t;
typedef struct {
  ev_aco_link_t head;
} ev_aco_waitq_t;

/* An aco fd event's state (eventer_aco_fd.c), kept in its event: the
 * classic opset and callback it had, and who waits on it.  Its flag bytes
 * are outside the union (struct _event.acofd_*). */
typedef struct ev_aco_fd {
  eventer_fd_opset_t orig_opset;
  eventer_func_t orig_cb;
  ev_aco_waitq_t waiters;
  struct ev_aco_fd_tmo *tmo; /* per-call default timeouts, NULL until one
                              * is set (eventer_aco_set_*_timeout) */
} ev_aco_fd_t;

/* Kept small: one per connection.  The parts only one kind of event uses
 * share a union; the kind is fixed while the event is registered, and
 * each kind's add writes every field of its part before using it. */
struct _event {
  eventer_func_t callback;
  void *closure;
  struct timeval whence; /* timers: wall-clock fire time; asynch: deadline */
  int fd;                /* -1 for non-fd events */
  int mask;
  eventer_fd_opset_t opset;
  void *opset_ctx;
  /* the TLS layer's per-connection state (eventer_ssl_ctx_t *), kept apart
   * from opset_ctx so that an opset can find it whatever another layer
   * does with the event; freed with the event */
  void *tls;
  ev_loop_t *owner;      /* __atomic: read by any thread that adds */
  int refcnt;            /* __atomic */
  int state;             /* __atomic, EV_ST_* */

  /* fd registration: the epoch the event was registered under; epoll data
   * carries (epoch << 32 | fd) so a readiness report for an earlier
   * registration of the same fd is recognised as stale at dispatch. */
  uint32_t reg_epoch;

  /* queued cross-thread add / trigger / asynch completion: one at a time,
   * guarded by the state CAS above, so no allocation is needed */
  int xmask;
  uint8_t xop;           /* EV_XOP_* (__atomic where read off-owner) */

  uint8_t deadline_preset; /* timers: tnode.deadline_ns already computed
                            * by eventer_in*(): use it at add */

  /* the coroutine layer (eventer_aco_fd.c), owner loop only: acofd_flags
   * is non-zero while `aco` below holds the state of an aco event, which
   * is then an fd event and nothing else (an add as a timer, recurrent or
   * asynch event fails with EINVAL) */
  uint8_t acofd_flags;
  uint8_t acofd_closed;    /* eventer_aco_close ran (the Go binding reads
                            * it through ev_aco_fd_posix_closed_flag) */
  uint8_t acofd_reg_mask;  /* mask registered with the loop, 0: none */
  uint8_t acofd_in_cb;     /* its callback is dispatching */
  uint16_t acofd_waits;    /* waits started on it and not ended yet */

  eventer_task_t xtask;

  /* asynch: the queue it runs on / re-queues to (outside the union: read
   * after the COMPLETE callback, which may re-add the event as another
   * kind) */
  eventer_jobq_t *jobq;

  /* carry contexts (eventer_register_context), allocated on first use */
  void **ctx;

  union {
    /* timers: on the owner's heap while EV_ST_TIMER */
    eventer_timer_node_t tnode;
    /* recurrent list (owner loop), and the pass it was added in */
    struct {
      eventer_t recur_prev, recur_next;
      uint64_t recur_pass;
    };
    /* asynch */
    struct {
      uint64_t subq;        /* subqueue id */
      uint64_t deadline_ns; /* monotonic WORK deadline, 0: none */
      eventer_t job_next;   /* jobq FIFO link */
      eventer_t dep_parent; /* the job this one was added from (_dep) */
      int dep_pending;      /* __atomic: this job + unfinished dependents;
                             * COMPLETE is posted when it reaches 0 */
    };
    /* an aco fd event (acofd_flags != 0) */
    ev_aco_fd_t aco;
  };
};

/* A layer built on the eventer (the coroutine layer, the foreign binding)
 * and what the core tells it.  Each layer registers one of these, once,
 * when the program starts (a constructor in the layer's file), so no hook
 * is ever set lazily; the core calls every registered layer's functions in
 * registration order, and each ignores what is not its own.  Any member
 * may be NULL.
 *   event_free    the final free of e, before its memory goes (state kept
 *                 in the event, opset_ctx or a closure)
 *   event_copy    eventer_alloc_copy copied src's fields into dst
 *   fini_begin    eventer_fini has told every loop to stop and is about
 *                 to wait for the eventer_run_in_thread threads to end
 *                 (a layer ends the ones that are its own here)
 *   loop_fini     eventer_fini is about to free loop l
 *   task_discard  a task queued to a loop that goes away is dropped unrun
 *   hook_discard  so is an end-of-pass hook (ev_pass_hook_post), already
 *                 unlinked (h->loop is NULL)
 * The two discards run in eventer_fini, on its thread, after the loop's
 * loop_fini and before its registered events are dropped: the hooks
 * first, then the tasks.  A layer's discard returns 1 when the item was
 * its own (released: its memory may be gone) and 0 otherwise; the core
 * tells no later layer of an item one has taken. */
struct ev_pass_hook;
typedef struct ev_layer {
  const char *name;
  void (*event_free)(eventer_t e);
  void (*event_copy)(eventer_t dst, eventer_t src);
  void (*loop_fini)(ev_loop_t *l);
  void (*fini_begin)(void);
  int (*task_discard)(eventer_task_t *t);
  int (*hook_discard)(struct ev_pass_hook *h);
} ev_layer_t;
/* The foreign-callback registry (eventer_callback_set_foreign): boxed
 * functions' closures are the foreign layer's boxes (released when their
 * last event goes).  0, or -1/EINVAL, ENOSPC. */
int ev_callback_set_foreign(eventer_func_t f, int boxed);
int ev_callback_foreign_boxed(eventer_func_t f);
/* Registers a layer (a static object that outlives the process).  At most
 * EV_MAX_LAYERS; registering one twice is a no-op.  THREAD-SAFE. */
#define EV_MAX_LAYERS 6
void ev_layer_register(const ev_layer_t *layer);
/* The core's side: tell every layer. */
void ev_layers_fini_begin(void);
/* 1 on eventer_fini's thread while it runs the layers' loop_fini and
 * discards and drops the loops' queues: a layer that would post work to a
 * loop then does it at once instead (no loop will run it).  Else 0. */
int ev_fini_dropping(void);
void ev_layers_loop_fini(ev_loop_t *l);
void ev_layers_hook_discard(struct ev_pass_hook *h);

/* OpenSSL's allocations through a per-thread cache of freed blocks
 * (eventer_ssl_mem.c).  ev_ssl_mem_install: once, at eventer_init; only
 * while OpenSSL has its own functions and has not allocated
 * (EVENTER_SSL_MEM_CACHE=0 in the environment: never).  The three
 * functions are the ones it sets (CRYPTO_set_mem_functions' signatures);
 * ev_ssl_mem_active: 1 once set; ev_ssl_mem_cached: bytes the calling
 * thread holds; ev_ssl_mem_thread_drain: gives them back to malloc. */
void ev_ssl_mem_install(void);
int ev_ssl_mem_active(void);
void *ev_ssl_mem_malloc(size_t n, const char *file, int line);
void *ev_ssl_mem_realloc(void *p, size_t n, const char *file, int line);
void ev_ssl_mem_free(void *p, const char *file, int line);
size_t ev_ssl_mem_cached(void);
void ev_ssl_mem_thread_drain(void);

/* Takes n references off e at once; frees it at zero (and returns 1,
 * else 0).  Aborts on underflow (someone freed the event once too often). */
int ev_deref_n(eventer_t e, int n);
/* (ev_event_owner, the loop of e's possibly unset owner, is inline below
 * ev_default_loop) */

/* ---- loops ----------------------------------------------------------------- */

enum { /* iteration phases, in order */
  EV_PH_START = 0,
  EV_PH_TIMERS,
  EV_PH_TASKS,
  EV_PH_RECUR,
  EV_PH_POLL,
  EV_PH_FDS
};

enum { /* what kind of dispatch a callback ran under (decides what rv means) */
  EV_DK_FD = 1,
  EV_DK_TIMER,
  EV_DK_RECUR,
  EV_DK_TRIGGER,
  EV_DK_COMPLETE
};

/* The epoll backend's state (eventer_epoll.c; here so that the loop reads
 * a result inline: ev_poll_result). */
#define EV_POLL_BATCH 1024 /* results per epoll_wait: more come next time */
struct ev_poll {
  int epfd;
  int wakefd; /* eventfd: written by other threads to end a wait */
  struct epoll_event results[EV_POLL_BATCH];
};

/* An end-of-pass hook (owner thread only, intrusive: embed it).  It runs
 * once when its loop's pass over ready work ends: in the poll phase of
 * the first iteration that finds nothing else to do now (no task queued,
 * no cross-thread work, no timer due: the loop is about to wait for its
 * fds), or, on a loop that never runs out of work, in the poll phase of
 * the first iteration that starts EV_PASS_MAX_NS or more after the oldest
 * queued hook was posted.  What a service does for a connection when the
 * loop has done everything it could for it this pass goes here (the HTTP
 * engine writes the responses it held back for one batch). */
typedef struct ev_pass_hook {
  struct ev_pass_hook *next, *prev;  /* in the loop's list while queued */
  /* idle: 1 when the loop had nothing else to do, 0 when the pass ran
   * out of time (EV_PASS_MAX_NS) */
  void (*run)(struct ev_pass_hook *h, int idle);
  struct eventer_loop *loop;         /* where it is queued; NULL if not */
} ev_pass_hook_t;
#define EV_PASS_MAX_NS 1000000u

struct eventer_loop {
  eventer_pool_t *pool;
  int index;               /* in pool */
  char name[48];           /* "<pool>/<index>" */
  char thread_name[52];    /* "e:<pool>/<index>" (eventer_get_thread_name) */
  pthread_t thread;        /* the driving thread, valid while `bound` */
  int claimed;             /* __atomic: reserved by init or an attach */
  int bound;               /* __atomic: a thread drives (or will drive) it;
                            * set after `thread` is written */
  int spawned;             /* we created `thread` (C mode) */
  int joined;              /* ... and joined it */
  int running;             /* __atomic: inside run_once, or a step it
                            * returned is still with the driver */
  int ran;                 /* __atomic: run_once was called at least once */
  int stopped_seen;        /* __atomic: run_once returned STOPPED; the
                            * driver no longer touches the loop */
  int stop;                /* __atomic: eventer_shutdown() was called */

  struct ev_poll *poll;    /* epoll + eventfd */

  /* Wake-ups (ev_inbox_push and the poll phase).  A pusher writes the
   * eventfd only when it finds the loop EV_WS_SLEEPING, and moves it to
   * EV_WS_WOKEN first, so one sleep costs at most one write; a loop that
   * is awake or spinning looks at its inbox before it blocks (it sets
   * SLEEPING, then re-reads inbox_nonempty: both sides use seq_cst, so
   * one of them sees the other).  A driver that waits on the epoll fd
   * itself (eventer_loop_pollfd) gets a write for every push. */
  int wake_state;          /* __atomic, EV_WS_* */
  int wake_always;         /* __atomic: eventer_loop_pollfd() was called */
  int push_cpu;            /* __atomic: CPU of the last cross-thread push */
  uint64_t woken_at_ns;    /* __atomic: when a push found the loop asleep */
  ev_spin_t spin;          /* owner only: the poll phase's spin budget */

  /* cross-thread queue (MPSC): any thread pushes, the owner splices */
  pthread_mutex_t inbox_lock;
  eventer_task_t *inbox_head, *inbox_tail;
  int inbox_nonempty;      /* __atomic hint for eventer_next_timeout_us */
  eventer_task_t *draining; /* what ev_inbox_drain took and has yet to apply
                             * (a nested drain goes on with it, in order) */

  /* owner-only task FIFO */
  eventer_task_t *fifo_head, *fifo_tail;
  size_t fifo_len;

  /* timer heap of intrusive nodes, ordered by (deadline_ns, seq); only
   * the owner changes it, under heap_lock (a spinlock, for
   * eventer_foreach_timedevent on other threads) */
  eventer_timer_node_t **heap;
  uint32_t heap_len, heap_cap;
  int heap_lock;
  uint64_t timer_seq;

  /* recurrent events */
  eventer_t recur_head, recur_tail, recur_cursor;
  uint64_t recur_pass;

  /* the iteration in progress (it can pause and resume) */
  int phase;               /* EV_PH_* */
  struct timeval now;      /* wall clock for callbacks */
  uint64_t timers_now_ns;  /* monotonic "now" of the timer phase */
  uint64_t timers_seq_limit; /* timers added at or after this seq wait */
  size_t tasks_left;       /* tasks still to run in this task phase */
  int nev, evi;            /* epoll results and the next one to dispatch */

  /* dispatch state */
  int in_run_once;
  eventer_step_t *step;    /* the driver's buffer for this run_once call */
  int step_used;           /* it has been filled in this call */
  struct {
    eventer_t e;           /* a foreign callback handed to the driver */
    int mask, kind;
  } paused;
  eventer_t current;       /* event whose callback is running */
  uint8_t current_unheld;  /* dispatch_aco_fd runs current without the
                            * loop's hold on it: ev_reg_remove takes it if
                            * current's registration goes meanwhile */
  uint8_t now_stale;       /* `now` predates this turn's epoll_wait: read
                            * the clock before anything uses it
                            * (ev_loop_now) */

  /* watchdog (eventer_pool_watchdog_timeout): when the current iteration
   * began (0 while waiting in epoll_wait) and the callback running, both
   * __atomic, read by the monitor thread */
  uint64_t busy_since_ns;
  eventer_func_t busy_cb;
  uint64_t wd_reported;    /* monitor only: busy_since_ns already reported */

  void *aco;               /* the coroutine layer's per-loop state (its
                            * share stacks and main coroutine) */

  /* end-of-pass hooks (owner only): queued, and the batch being run
   * (circular lists with these sentinels); when the oldest queued one was
   * posted (the timer phase's clock) */
  ev_pass_hook_t pass_q, pass_run;
  uint64_t pass_since_ns;
  int pass_idle;           /* how the batch being run ended its pass */
};

enum { /* eventer_loop.wake_state */
  EV_WS_AWAKE = 0, /* will look at the inbox before it blocks */
  EV_WS_SLEEPING,  /* blocked (or about to block) in epoll_wait */
  EV_WS_WOKEN      /* was SLEEPING; a pusher is writing the eventfd */
};

struct eventer_pool_t {
  char *name;
  int index;               /* in the pool list; 0 = default */
  int concurrency;
  ev_loop_t **loops;
  uint64_t watchdog_ns;    /* __atomic: watchdog timeout, 0: off */
};

/* The calling thread's loop, or NULL off-loop (or after eventer_fini()). */
ev_loop_t *ev_loop_self(void);
/* Loop 0 of the default pool, NULL before init. */
ev_loop_t *ev_default_loop(void);
/* The loop of a (possibly unset) owner: e->owner, or default loop 0.
 * Inline: the loop checks it for every ready fd. */
static inline ev_loop_t *ev_event_owner(eventer_t e) {
  ev_loop_t *l = EV_LOAD(&e->owner);
  return l ? l : ev_default_loop();
}

/* The fd table (eventer.c): fd -> registered event, in chunks of
 * EV_FDTAB_CHUNK slots (and as many owner loops after them), chunk
 * pointers published once and never moved. */
#define EV_FDTAB_CHUNK_BITS 12
#define EV_FDTAB_CHUNK (1u << EV_FDTAB_CHUNK_BITS)
#define EV_FDTAB_CHUNKS 4096u /* fds below 16M */
extern eventer_t *ev_fdtab[EV_FDTAB_CHUNKS];
/* eventer_find_fd, inline (the loop looks up every ready fd: the two
 * calls cost more than the lookup) */
static inline eventer_t ev_fd_lookup(int fd) {
  if (fd < 0 || (unsigned)fd >= EV_FDTAB_CHUNKS * EV_FDTAB_CHUNK) return NULL;
  eventer_t *chunk = EV_LOAD(&ev_fdtab[(unsigned)fd >> EV_FDTAB_CHUNK_BITS]);
  return chunk ? EV_LOAD(&chunk[(unsigned)fd & (EV_FDTAB_CHUNK - 1)]) : NULL;
}
/* The loop driven by thread t, or NULL. */
ev_loop_t *ev_loop_by_thread(pthread_t t);
/* 1 between eventer_init*() and eventer_fini(). */
int ev_initialized(void);

/* Cross-thread queue: push from any thread (wakes the owner when the queue
 * was empty); drain on the owner: applies queued adds/removes/updates now
 * and moves every other task (triggers, completions, posted tasks) to the
 * FIFO. */
void ev_inbox_push(ev_loop_t *l, eventer_task_t *t);
void ev_inbox_drain(ev_loop_t *l);
/* Owner: takes t out of the cross-thread queue (or the part of it being
 * applied) if it is there, without running it.  1 if found. */
int ev_inbox_take(ev_loop_t *l, eventer_task_t *t);
/* Owner FIFO. */
void ev_fifo_push(ev_loop_t *l, eventer_task_t *t);
int ev_fifo_unlink(ev_loop_t *l, eventer_task_t *t); /* 1 if found */

/* End-of-pass hooks (ev_pass_hook_t), on the calling loop's thread.
 * post: queues h on the calling loop (h->run set); 0, also when h is
 * already queued there (it still runs once), or -1/EINVAL (off-loop, no
 * run, queued on another loop).  cancel: takes h off its loop without
 * running it (on that loop's thread); 1 if it was queued, else 0. */
int ev_pass_hook_post(ev_pass_hook_t *h);
int ev_pass_hook_cancel(ev_pass_hook_t *h);

/* Runs e's callback under `kind` on the owner thread (or hands it to the
 * driver).  The caller has put e in EV_ST_NONE (timer, trigger, complete)
 * or leaves it registered (fd, recurrent). */
void ev_dispatch(ev_loop_t *l, eventer_t e, int mask, int kind);


/* ---- registration internals (eventer.c), owner thread only ---------------------- */

int ev_reg_add(ev_loop_t *l, eventer_t e);       /* by mask */
eventer_t ev_reg_remove(ev_loop_t *l, eventer_t e);
int ev_reg_update(ev_loop_t *l, eventer_t e, int mask);
void ev_reg_update_whence(ev_loop_t *l, eventer_t e, struct timeval w);
/* Applies a queued xtask / cross-thread message; the run functions are
 * compared by the inbox drain to tell "apply now" items from tasks. */
void ev_xop_run(eventer_task_t *t, struct timeval *now);
void ev_xmsg_run(eventer_task_t *t, struct timeval *now);
void ev_trigger_run(eventer_task_t *t, struct timeval *now);
void ev_complete_run(eventer_task_t *t, struct timeval *now);
/* Drops a reference to q (a job's, once its COMPLETE is done; the
 * creator's at destroy); the last one frees it. */
void ev_jobq_release(eventer_jobq_t *q);
/* Whether eventer_jobq_destroy has begun on q: its workers take no new job
 * (a white-box view for tests; q must still be alive). */
int ev_jobq_stopping(eventer_jobq_t *q);
/* Drops whatever a queued item holds, without running it (fini); tasks
 * that are not the core's go to the layers' task_discard. */
void ev_task_discard(eventer_task_t *t);
/* Unregisters every event of l and drops the eventer's references (fini). */
void ev_reg_drop_all(ev_loop_t *l);
/* The recurrent list cursor-safe unlink. */
void ev_recur_unlink(ev_loop_t *l, eventer_t e);
/* Fatal message for an fd callback that returned 0 while registered. */
void ev_fatal_not_removed(eventer_t e, int kind) __attribute__((noreturn));
/* A duration: seconds >= 0 and microseconds in [0, 1000000). */
static inline int ev_bad_delay(const struct timeval *tv) {
  return tv->tv_sec < 0 || tv->tv_usec < 0 || tv->tv_usec >= 1000000;
}
/* Calls fn for each fd event registered on l (fini: l does not run). */
void ev_fdtab_foreach(ev_loop_t *l, void (*fn)(eventer_t e));
/* Clears the fd table (fini). */
void ev_fdtab_reset(void);
/* eventer_t timer node fire function (compared at fini). */
void ev_timer_event_fire(eventer_timer_node_t *n, struct timeval *now);

/* ---- timer heap (eventer_timer.c), owner thread only ---------------------------- */

void ev_heap_insert(ev_loop_t *l, eventer_timer_node_t *n);
void ev_heap_remove(ev_loop_t *l, eventer_timer_node_t *n);
eventer_timer_node_t *ev_heap_min(ev_loop_t *l);
/* A node taken off the heap of a loop that no longer runs (the layers'
 * loop_fini and discards, on eventer_fini's thread: no owner check). */
static inline void ev_heap_remove_at_fini(eventer_timer_node_t *n) {
  if (n->loop) ev_heap_remove(n->loop, n);
}
void ev_heap_free(ev_loop_t *l);
void ev_heap_lock(ev_loop_t *l);
void ev_heap_unlock(ev_loop_t *l);
/* Monotonic deadline for a wall-clock whence, computed now. */
uint64_t ev_deadline_for_whence(const struct timeval *whence);

/* ---- epoll backend (eventer_epoll.c) --------------------------------------------- */

#define EV_POLL_WAKE_TOKEN UINT64_MAX /* epoll data of the eventfd */

int ev_poll_open(ev_loop_t *l);           /* 0 or -1/errno */
void ev_poll_close(ev_loop_t *l);
int ev_poll_fd(ev_loop_t *l);             /* the epoll fd */
int ev_poll_add(ev_loop_t *l, int fd, int mask, uint64_t token);
int ev_poll_mod(ev_loop_t *l, int fd, int mask, uint64_t token);
int ev_poll_del(ev_loop_t *l, int fd);
/* Waits up to timeout_ms (-1: forever, 0: no wait); returns the number of
 * results (0 on timeout or EINTR). */
int ev_poll_wait(ev_loop_t *l, int timeout_ms);
/* Result i of the last wait: its token and EVENTER_* readiness mask.
 * Inline: the loop reads one for every ready fd. */
static inline void ev_poll_result(ev_loop_t *l, int i, uint64_t *token, int *mask) {
  const struct epoll_event *r = &l->poll->results[i];
  uint32_t ev = r->events;
  int m = 0;
  if (ev & EPOLLIN) m |= EVENTER_READ;
  if (ev & EPOLLOUT) m |= EVENTER_WRITE;
  if (ev & (EPOLLERR | EPOLLHUP | EPOLLPRI)) m |= EVENTER_EXCEPTION;
  *token = r->data.u64;
  *mask = m;
}
void ev_poll_wake(ev_loop_t *l);          /* THREAD-SAFE */
void ev_poll_clear_wake(ev_loop_t *l);    /* owner: reset the eventfd */

/* ---- job queues (eventer_jobq.c) ------------------------------------------------- */

int ev_jobq_init_default(int threads);    /* at eventer_init */
void ev_jobq_fini_all(void);              /* at eventer_fini */

/* Settings read by eventer_jobq.c (eventer_impl_propset). */
int ev_cfg_default_lifo(void);          /* "default_jobq_ordering" is lifo */
uint64_t ev_cfg_jobq_slow_ns(void);     /* show_jobq_callbacks_threshold */
/* "default_ca_chain" (NULL if unset), for the TLS layer. */
const char *ev_cfg_default_ca_chain(void);
/* The TLS layer's "ssl_*" settings, when the TLS opset is linked in (it
 * sets this at load; the core never references the opset, so programs
 * linked without it stay free of OpenSSL): 0 set, -1 a bad value, 1 not a
 * key it knows. */
extern int (*ev_cfg_ssl_hook)(const char *key, const char *value);

/* ---- callbacks (eventer_callback.c) ------------------------------------------------ */

/* Carry contexts: called by eventer.c when an event is allocated, copied
 * (after the fields) and finally freed. */
void ev_ctx_on_alloc(eventer_t e);
void ev_ctx_on_copy(eventer_t dst, eventer_t src);
void ev_ctx_on_free(eventer_t e);
/* A job's WORK callback that never returned (cancelled, or left by
 * siglongjmp): runs the context cleanup hooks eventer_run_callback could
 * not, and clears the running event. */
void ev_callback_abandoned(eventer_t e, int mask);
/* 1 once any context class is registered (the loop skips the prep and
 * cleanup hooks until then). */
int ev_ctx_any(void);
/* What eventer_run_callback keeps for the running callback (the event,
 * for eventer_get_this_event; its `now`, for eventer_gettimeofcallback),
 * and the number of context classes (__atomic): for a dispatch that
 * calls no user callback and does the same itself (an aco fd event's). */
extern __thread eventer_t ev_cb_this;
extern __thread struct timeval ev_cb_now;
extern __thread int ev_cb_now_set; /* 0, 1 (ev_cb_now) or EV_CB_NOW_LOOP */
/* ev_cb_now_set: the running coroutine's `now` is its loop's this turn,
 * read when first asked (ev_loop_now): a dispatch that resumes a coroutine
 * passes no `now`, so the clock is read only if someone wants it.  Asked
 * after that dispatch is over (the coroutine parked without asking): the
 * clock's time. */
#define EV_CB_NOW_LOOP 2
extern int ev_ctx_n;
/* The calling thread's name for eventer_get_thread_name (set by loop and
 * job threads; copied, at most 63 bytes); NULL clears it. */
void ev_thread_name_set(const char *name);
const char *ev_thread_name_get(void); /* NULL if unset */

/* ---- dedicated threads (eventer_thread.c) ---------------------------------------- */

/* Waits (up to 2 s, then logs) until no eventer_run_in_thread thread is
 * alive: eventer_fini calls it, so a thread whose callback has just
 * returned 0 has dropped its event before the eventer goes away. */
void ev_dedicated_quiesce(void);

/* ---- clocks ----------------------------------------------------------------------- */

uint64_t ev_wall_us(void);
void ev_wall_tv(struct timeval *tv);
/* l->now for this turn, read from the clock if it is stale (owner only). */
const struct timeval *ev_loop_now(ev_loop_t *l);

/* The TLS opset's state, for tests: whether ctx keeps OpenSSL's buffers
 * (ssl_keep_buffers), whether it reads into a buffer of several records
 * (a connection that has read a full record gets one), and how many of its
 * handshake's reads reported a would-block without trying the socket (the
 * first after each flight it sent). */
struct eventer_ssl_ctx_t;
int ev_ssl_ctx_keeps_buffers(const struct eventer_ssl_ctx_t *ctx);
int ev_ssl_ctx_big_read_buffer(const struct eventer_ssl_ctx_t *ctx);
int ev_ssl_ctx_skipped_reads(const struct eventer_ssl_ctx_t *ctx);

/* The POSIX opset's hint by fd number that an fd is no socket (its reads
 * and writes are then read(2)/write(2), not recv(2)/send(2)).  fresh
 * forgets it (a new event on fd: the number may be a socket now);
 * not_sock reads it (for tests).  THREAD-SAFE. */
void ev_posix_fd_fresh(int fd);
int ev_posix_fd_not_sock(int fd);

#endif /* EVENTER_IMPL_H */
