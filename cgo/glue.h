/*
 * glue.h - the C side of the Go binding: the trampoline behind every Go
 * callback, the job-queue trampoline behind Go asynch work, and small
 * helpers that keep C types out of the Go files' logic.
 */
#ifndef ACOEVENTER_CGO_GLUE_H
#define ACOEVENTER_CGO_GLUE_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "aco.h"
#include "eventer.h"
#include "eventer_aco.h"
#include "eventer_aco_proxy.h"
#include "eventer_aco_sync.h"

/* The eventer_func_t of every Go-registered event.  The loop hands it to
 * the Go driver (foreign); C code that calls it directly reaches Go
 * through here, on the thread's own stack. */
int ev_go_trampoline(eventer_t e, int mask, void *closure, struct timeval *now);
/* The job-queue work function of Go asynch work (closure: a boxed id). */
void ev_go_asynch(void *closure);
/* Registers the trampoline as foreign.  0 or -1/errno. */
int ev_go_setup(void);
/* Sends mtev_log lines to Go (goLogLine), or back to stderr. */
void ev_go_log_to_go(int on);

/* A Go event: fd (or -1), mask, a boxed callback id as closure. */
eventer_t ev_go_alloc(int kind, int fd, int mask, uint64_t id,
                      int64_t when_us);
enum { EV_GO_FD = 1, EV_GO_TIMER, EV_GO_RECURRENT };

/* A readiness wait a Go coroutine asks for as it parks: the driver's next
 * ev_go_run sets it up first (saving the coroutine a cgo call). */
typedef struct {
  int valid;
  int mask;
  size_t read_len;
  int64_t timeout_ns; /* < 0: none */
  uint64_t foreign_id;
  eventer_aco_proxy_t *p;
  eventer_t e;
} ev_go_wait_req_t;

/* Per-loop driver state in C memory: the step buffer. */
typedef struct ev_go_driver {
  eventer_step_t step;
  ev_go_wait_req_t wait;
  int index;
} ev_go_driver_t;

/* Runs iterations (finishing a paused one first) until one hands the
 * driver a step, the loop stops, or an error: one cgo call per step.  A
 * CALLBACK step carries the callback's id in u64[0] and `now` in us in
 * u64[1]. */
int ev_go_run(uintptr_t d); /* an ev_go_driver_t *, as an integer */

/* Loop idx of the default pool (NULL if none). */
static inline eventer_loop_t *ev_go_loop(int idx) {
  eventer_pool_t *p = eventer_pool("default");
  return p ? eventer_pool_loop(p, idx) : NULL;
}

/* eventer_foreign_wake of loop idx: one cgo call per post. */
static inline int ev_go_foreign_wake(int idx) {
  eventer_loop_t *l = ev_go_loop(idx);
  if (!l) {
    errno = EINVAL;
    return -1;
  }
  return eventer_foreign_wake(l);
}

/* A Go timeout in ns as a timeval: 0 for none (ns < 0), else 1. */
static inline int ev_go_timeval(int64_t ns, struct timeval *tv) {
  if (ns < 0) return 0;
  tv->tv_sec = (time_t)(ns / 1000000000);
  tv->tv_usec = (suseconds_t)((ns % 1000000000) / 1000);
  if (ns > 0 && tv->tv_sec == 0 && tv->tv_usec == 0)
    tv->tv_usec = 1; /* a positive timeout below 1 us still waits */
  return 1;
}

/* Fills a proxy op's timeout (ns < 0: none). */
static inline void ev_go_op_timeout(eventer_aco_proxy_op_t *op, int64_t ns) {
  op->has_timeout = ev_go_timeval(ns, &op->timeout);
}

/* Sets up asynch op: Go work `id` on q/subq (the id travels as the job's
 * closure, an integer, never a Go pointer). */
static inline void ev_go_op_asynch(eventer_aco_proxy_op_t *op,
                                   eventer_jobq_t *q, uint64_t subq,
                                   uint64_t id) {
  op->op = EVENTER_PROXY_ASYNCH;
  op->q = q;
  op->subq = subq;
  op->fn = ev_go_asynch;
  op->fn_closure = (void *)(uintptr_t)id;
}

/* One call for a proxy operation without a buffer (sleep, yield, park,
 * close, convert): returns 1 (done: *res, *err), 0 (parked), -1 (misuse:
 * *err). */
int ev_go_proxy_io(eventer_aco_proxy_t *p, int op, eventer_t e,
                   int64_t timeout_ns, int64_t *res, int *err);

/* A Go coroutine's read, write or accept: one attempt now, through the
 * event's opset (the fast path: no coroutine switch at all); if it would
 * block, the proxy starts waiting for readiness (eventer_aco_wait_ready).
 * C never keeps the Go buffer: it is used only during this call, and the
 * Go side retries after the wait.
 *   1  done: *res (bytes, fd, or -1 with *err)
 *   2  it would block and the wait ended at once: *res 0 (retry) or -1
 *   0  it would block and the proxy is waiting: a completion step follows
 *      (result 0: ready, retry; -1: timeout, cancel, close)
 *  -1  misuse: *err (EPERM wrong thread, EDEADLK inside a coroutine)
 * For accept, buf/len receive the peer address (a sockaddr_storage). */
enum { EV_GO_READ = 1, EV_GO_WRITE, EV_GO_ACCEPT };
int ev_go_io(eventer_aco_proxy_t *p, int op, eventer_t e, char *buf,
             size_t len, int64_t timeout_ns, int64_t *res, int *err);

/* The result of ev_go_wait, by value (no Go pointers cross). */
typedef struct {
  int rc;      /* as ev_go_io: 0 waiting, 2 ended at once, -1 misuse */
  int err;
  int64_t res;
} ev_go_res_t;

/* The Go side did the syscall itself (POSIX opset) and it would block:
 * start the proxy waiting for `mask` (read_len > 0: read that much once
 * ready, see EVENTER_STEP_ACO_PROXY_DATA).  p and e are passed as
 * integers: they are C pointers, nothing for cgo to check. */
ev_go_res_t ev_go_wait(uintptr_t p, uintptr_t e, int mask, size_t read_len,
                       int64_t timeout_ns);
/* Coroutine synchronization objects, run inside the Go coroutine's proxy
 * so that C sees the proxy as the coroutine that waits, owns a mutex, ... */
enum {
  EV_GO_SEM_WAIT = 1, EV_GO_SEM_TRYWAIT,
  EV_GO_MUTEX_LOCK, EV_GO_MUTEX_TRYLOCK, EV_GO_MUTEX_UNLOCK,
  EV_GO_WG_WAIT,
  EV_GO_CHAN_SEND, EV_GO_CHAN_RECV, EV_GO_CHAN_TRYSEND, EV_GO_CHAN_TRYRECV
};
/* rc as ev_go_wait: 1 done (res, err), 0 parked, -1 misuse.  obj and
 * cbuf (a C buffer for channel elements) are C pointers as integers. */
ev_go_res_t ev_go_sync(uintptr_t p, int kind, uintptr_t obj, uintptr_t cbuf,
                       int64_t timeout_ns);

/* ev_aco_fd_posix_closed_flag, for the Go fast path. */
const volatile uint8_t *ev_go_posix_closed_flag(eventer_t e);

#endif
