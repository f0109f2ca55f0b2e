/*
 * eventer_aco_proxy.h - blocking eventer_aco calls for coroutines written in
 * another language (the Go binding), and foreign callbacks.
 *
 * A foreign coroutine (a Go coroutine) must not run on a C share stack, so
 * it cannot call eventer_aco_read() itself.  Instead each foreign coroutine
 * gets a *proxy*: a small C coroutine of the same loop that runs the
 * unchanged eventer_aco_* call on its behalf.  One implementation of the
 * semantics, two languages.
 *
 *   p = eventer_aco_proxy_new(foreign_id);        on the loop thread
 *   op = eventer_aco_proxy_op(p); op->op = EVENTER_PROXY_READ; ...
 *   switch (eventer_aco_proxy_run(p)) {
 *   case 1:  done now: op->result, op->err
 *   case 0:  parked: when the call completes, the loop hands the driver a
 *            step {kind EVENTER_STEP_ACO_PROXY, u64[0] = foreign_id,
 *            u64[1] = (uint64_t)result, u64[2] = errno} from
 *            eventer_run_once, at the point where a C coroutine would have
 *            been resumed; the driver resumes its coroutine with it
 *   case -1: misuse (errno): EPERM off the proxy's loop thread, EDEADLK
 *            from inside a coroutine (a callback C called from one), EBUSY
 *            if p still runs an operation
 *   }
 *
 * eventer_aco_proxy_run() must be called from the loop's main context (the
 * driver's thread, outside run_once and outside any coroutine).  The
 * buffers an operation uses must stay valid until it completes (the Go
 * binding pins them).  eventer_aco_cancel(eventer_aco_proxy_handle(p))
 * makes a parked operation return -1/ECANCELED; a cancelled fd operation
 * has unregistered from epoll before its completion is reported.
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
/* A WAIT with read_len > 0 that ended ready, and the read that followed:
 * u64[0] foreign id, u64[1] bytes read (or -1), u64[2] errno, closure the
 * bytes.  They live in a loop-owned buffer that is valid only until the
 * driver's next eventer_run_once: the driver copies them out first. */
#define EVENTER_STEP_ACO_PROXY_DATA (EVENTER_STEP_USER + 3)

enum {
  EVENTER_PROXY_READ = 1, /* eventer_aco_read(e, buf, len, timeout) */
  EVENTER_PROXY_WRITE,    /* eventer_aco_write(e, buf, len, timeout) */
  EVENTER_PROXY_ACCEPT,   /* eventer_aco_accept(e, &addr, &addrlen, timeout) */
  EVENTER_PROXY_CONNECT,  /* eventer_aco_connect(e, &addr, addrlen, timeout) */
  EVENTER_PROXY_CLOSE,    /* eventer_aco_close(e) */
  EVENTER_PROXY_CONVERT,  /* eventer_set_eventer_aco(e): result 0 / -1 */
  EVENTER_PROXY_SLEEP,    /* eventer_aco_sleep(timeout) */
  EVENTER_PROXY_YIELD,    /* eventer_aco_yield() */
  EVENTER_PROXY_PARK,     /* eventer_aco_park(timeout) */
  EVENTER_PROXY_JOIN,     /* eventer_aco_join(obj, timeout) */
  EVENTER_PROXY_ASYNCH,   /* eventer_aco_simple_asynch_queue_subqueue(fn,
                           * fn_closure, q, subq) */
  EVENTER_PROXY_WAIT,     /* eventer_aco_wait_ready(e, mask, timeout) */
  EVENTER_PROXY_CALL      /* result = call(obj, op): any C that may block
                           * in eventer_aco_* (semaphores, channels, ...) */
};

typedef struct eventer_aco_proxy_op {
  int op;
  eventer_t e;
  void *buf;
  size_t len;
  struct timeval timeout;
  int has_timeout;        /* 0: timeout is NULL */
  struct sockaddr_storage addr;
  socklen_t addrlen;
  void *obj;
  int mask;               /* WAIT */
  size_t read_len;        /* WAIT: read this much once ready (0: don't) */
  eventer_jobq_t *q;
  uint64_t subq;
  eventer_asynch_simple_func_t fn;
  void *fn_closure;
  int64_t (*call)(void *obj, struct eventer_aco_proxy_op *op);
  int64_t result;         /* out */
  int err;                /* out: errno when result is -1 */
} eventer_aco_proxy_op_t;

typedef struct eventer_aco_proxy eventer_aco_proxy_t;

/* A proxy on the calling loop thread, with its coroutine, which (from
 * main context) is run at once to its idle park, where it waits for
 * operations.  NULL with errno (EINVAL off-loop, ENOMEM). */
eventer_aco_proxy_t *eventer_aco_proxy_new(uint64_t foreign_id);
/* The operation slot to fill before eventer_aco_proxy_run. */
eventer_aco_proxy_op_t *eventer_aco_proxy_op(eventer_aco_proxy_t *p);
/* 1 done, 0 parked, -1 misuse; see the top of this file. */
int eventer_aco_proxy_run(eventer_aco_proxy_t *p);
/* EVENTER_PROXY_WAIT(e, mask, read_len, timeout) without switching to the
 * proxy when it is idle: it becomes the fd's waiter right away (the fast
 * path of a foreign read that would block).  Returns like
 * eventer_aco_proxy_run: 1 ended at once (op->result/err), 0 waiting, -1
 * misuse. */
int eventer_aco_proxy_wait(eventer_aco_proxy_t *p, eventer_t e, int mask,
                           size_t read_len, const struct timeval *timeout);

/* 1 while an operation is parked, or its completion is still on its way
 * to the driver (run, wait and free give EBUSY then). */
int eventer_aco_proxy_busy(const eventer_aco_proxy_t *p);
/* The proxy coroutine's handle (borrowed; valid until the proxy is freed):
 * cancel it, join it, or hand it to C code. */
eventer_aco_co_t *eventer_aco_proxy_handle(eventer_aco_proxy_t *p);
/* Ends the proxy's coroutine and frees it.  0, or -1/EBUSY while an
 * operation is parked (cancel it and wait for its step first), EINVAL
 * off its loop thread.  eventer_fini frees the proxies still alive then
 * (the driver must not use them afterwards). */
int eventer_aco_proxy_free(eventer_aco_proxy_t *p);

/* ---- the driver's wake-up ------------------------------------------------
 * THREAD-SAFE: makes `loop` hand its driver one EVENTER_STEP_FOREIGN_WAKE
 * step soon (several calls before it is handed out give one step).  The
 * driver uses it to notice work queued for it by other threads. */
int eventer_foreign_wake(eventer_loop_t *loop);
/* Forgets wake-ups that were pending when the eventer was torn down; call
 * after eventer_init*() when the eventer is initialized again. */
void eventer_foreign_reset(void);

/* ---- foreign callbacks ------------------------------------------------------
 * A foreign callback's closure is a small refcounted box holding the
 * foreign side's id for the function; copies of the event share it, and
 * when the last event using it is freed its id is queued as dead, so the
 * foreign side can forget the function.  */
void *eventer_foreign_closure_new(uint64_t id);
uint64_t eventer_foreign_closure_id(void *closure);
/* Marks callback function f as foreign (eventer_callback_set_foreign) and
 * as the owner of boxed closures (for the free/copy bookkeeping). */
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
