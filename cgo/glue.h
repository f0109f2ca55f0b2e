/*
 * glue.h - the C side of the Go binding: the trampoline behind every Go
 * callback, the job-queue function behind Go asynch work, the driver's
 * step call, and the proxy calls of Go coroutines, in a form that keeps
 * C types out of the Go files' logic.  C pointers cross as uintptr_t
 * (nothing for cgo to check: they never point into Go memory).
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
/* Registers the trampoline as a foreign (boxed) callback.  0 or -1/errno. */
int ev_go_setup(void);
/* Sends mtev_log lines to Go (goLogLine), or back to stderr. */
void ev_go_log_to_go(int on);
/* While on, lines this thread logs are kept instead of reaching Go (for
 * calls Go makes with nocallback); ev_go_log_pending says whether some
 * are kept, ev_go_log_flush hands them to Go (a call that may call back). */
void ev_go_log_defer(int on);
int ev_go_log_pending(void);
void ev_go_log_flush(void);

/* Go events: fd (or -1), mask, a boxed callback id as closure; id 0 makes
 * an fd event with no callback (for conversion to an aco event). */
enum { EV_GO_FD = 1, EV_GO_TIMER, EV_GO_RECURRENT };
eventer_t ev_go_alloc(int kind, int fd, int mask, uint64_t id,
                      int64_t when_us);
/* e's registration state: 0 idle, 1 registered or queued. */
int ev_go_registered(eventer_t e);

/* The one result of every call below that may wait for a Go coroutine:
 * rc is the proxy protocol (EVENTER_PROXY_DONE: res/err hold the result;
 * EVENTER_PROXY_PARKED: a completion step follows; EVENTER_PROXY_MISUSE:
 * err says why: EPERM wrong thread, EDEADLK inside a C coroutine, EBUSY a
 * call pending). */
typedef struct {
  int rc;
  int err;
  int64_t res;
} ev_go_res_t;

/* Timeouts from Go in ns: < 0 none, else a bound (0: do not wait). */
ev_go_res_t ev_go_wait(uintptr_t p, uintptr_t e, int mask, size_t read_len,
                       int64_t timeout_ns);
ev_go_res_t ev_go_sleep(uintptr_t p, int64_t ns);
ev_go_res_t ev_go_yield(uintptr_t p);
ev_go_res_t ev_go_park(uintptr_t p, int64_t timeout_ns);
ev_go_res_t ev_go_sync(uintptr_t p, int kind, uintptr_t obj, uintptr_t elem,
                       int64_t timeout_ns);
/* Go asynch work `id` on queue q (0: the default) subqueue subq: the id
 * travels as the job's closure, an integer, never a Go pointer. */
ev_go_res_t ev_go_asynch(uintptr_t p, uintptr_t q, uint64_t subq, uint64_t id);

/* One non-blocking attempt of a read, write or accept on aco event e
 * through its opset (for opsets the Go side cannot do itself): res, or -1
 * with err; mask what to wait for when err is EAGAIN.  buf is used only
 * during the call. */
enum { EV_GO_READ = 1, EV_GO_WRITE, EV_GO_ACCEPT };
typedef struct {
  int64_t res;
  int err;
  int mask;
} ev_go_try_t;
ev_go_try_t ev_go_try(uintptr_t e, int op, char *buf, size_t len);

/* Converts idle fd event e into an aco event of the calling loop.  0, or
 * an errno. */
int ev_go_convert(uintptr_t e);
/* eventer_aco_close on the loop thread (no coroutine needed).  0 or errno. */
int ev_go_aco_close(uintptr_t e);
/* ev_aco_fd_posix_closed_flag, for the Go fast path. */
const volatile uint8_t *ev_go_posix_closed_flag(eventer_t e);
/* ev_aco_fd_closed. */
int ev_go_aco_closed(uintptr_t e);
/* The index in the default pool of the loop sync object obj is bound to
 * (-1: unbound). */
int ev_go_sync_owner(uintptr_t obj);

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

/* Per-loop driver state in C memory: the step buffer, and how the
 * driver waits (driverwait.go).  go_busy (set by the driver's thread):
 * Go work of this loop runs in other goroutines, so ev_go_run polls
 * without blocking and returns EV_GO_RUN_SLEEP when the loop may sleep,
 * for the driver to wait in Go (sleep_us: the longest, -1 none; asleep:
 * the next ev_go_run ends the sleep). */
typedef struct ev_go_driver {
  eventer_step_t step;
  ev_go_wait_req_t wait;
  int index;
  int go_busy;
  int asleep;
  int64_t sleep_us;
  uint64_t nowait_polls; /* iterations run with a zero wait */
  uint64_t pass_ns;      /* monotonic ns at the start of the iteration
                          * the last ev_go_run ran (driver.go: when the
                          * driver last went through Go's scheduler) */
} ev_go_driver_t;

/* ev_go_run's result when the driver should wait in Go (besides the
 * EVENTER_RUN_* ones) */
#define EV_GO_RUN_SLEEP 100

/* Runs iterations (finishing a paused one first) until one hands the
 * driver a step, the loop stops, or an error: one cgo call per step.  A
 * CALLBACK step carries the callback's id in u64[0], `now` in us in u64[1]
 * and the kind of dispatch (EV_GO_DK_*) in u64[2]. */
enum {
  EV_GO_DK_FD = 1, /* fd readiness: the event stays registered */
  EV_GO_DK_TIMER,  /* a timer fired: its registration is over */
  EV_GO_DK_RECUR,  /* a recurrent pass: it stays registered */
  EV_GO_DK_TRIGGER, /* eventer_trigger: it was not registered */
  EV_GO_DK_COMPLETE /* an asynch COMPLETE */
};
int ev_go_run(uintptr_t d); /* an ev_go_driver_t *, as an integer */
/* The calling loop's epoll fd, for a driver that sleeps in Go (without
 * eventer_loop_pollfd's write per push); -1/EINVAL off-loop. */
int ev_go_pollfd(void);

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

#endif
