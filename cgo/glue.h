/*
 * glue.h - the C side of the Go binding: the trampoline behind every Go
 * callback, the job-queue trampoline behind Go asynch work, and small
 * helpers that keep C types out of the Go files' logic.
 */
#ifndef ACOEVENTER_CGO_GLUE_H
#define ACOEVENTER_CGO_GLUE_H

#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "aco.h"
#include "eventer.h"
#include "eventer_aco.h"
#include "eventer_aco_proxy.h"

/* The eventer_func_t of every Go-registered event.  The loop hands it to
 * the Go driver (foreign); C code that calls it directly reaches Go
 * through here, on the thread's own stack. */
int ev_go_trampoline(eventer_t e, int mask, void *closure, struct timeval *now);
/* The job-queue work function of Go asynch work (closure: a boxed id). */
void ev_go_asynch(void *closure);
/* Registers the trampoline as foreign.  0 or -1/errno. */
int ev_go_setup(void);

/* A Go event: fd (or -1), mask, a boxed callback id as closure. */
eventer_t ev_go_alloc(int kind, int fd, int mask, uint64_t id,
                      int64_t when_us);
enum { EV_GO_FD = 1, EV_GO_TIMER, EV_GO_RECURRENT };

/* Per-loop driver state in C memory: the step buffer. */
typedef struct ev_go_driver {
  eventer_step_t step;
  int index;
} ev_go_driver_t;

int ev_go_run_once(ev_go_driver_t *d, int block);
/* The boxed id of a step's closure. */
static inline uint64_t ev_go_step_id(ev_go_driver_t *d) {
  return eventer_foreign_closure_id(d->step.closure);
}
static inline int64_t ev_go_step_now_us(ev_go_driver_t *d) {
  return (int64_t)d->step.now.tv_sec * 1000000 + d->step.now.tv_usec;
}

/* Fills a proxy op's timeout (ns < 0: none). */
static inline void ev_go_op_timeout(eventer_aco_proxy_op_t *op, int64_t ns) {
  if (ns < 0) {
    op->has_timeout = 0;
    return;
  }
  op->has_timeout = 1;
  op->timeout.tv_sec = (time_t)(ns / 1000000000);
  op->timeout.tv_usec = (suseconds_t)((ns % 1000000000) / 1000);
  if (ns > 0 && op->timeout.tv_sec == 0 && op->timeout.tv_usec == 0)
    op->timeout.tv_usec = 1; /* a positive timeout below 1 us still waits */
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

/* One call for an fd operation through a proxy: returns 1 (done: *res,
 * *err), 0 (parked), -1 (misuse: *err). */
int ev_go_proxy_io(eventer_aco_proxy_t *p, int op, eventer_t e, void *buf,
                   size_t len, int64_t timeout_ns, int64_t *res, int *err);

#endif
