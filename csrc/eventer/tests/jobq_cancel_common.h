/*
 * jobq_cancel_common.h - helpers of the deadline-cancellation tests
 * (test_eventer_jobq.c, test_eventer_jobq_cancel.c): jobs whose WORK
 * outlives a 100 ms deadline, and a check that a queue still runs jobs
 * after one of its threads was cancelled.  Included once per program.
 */
#ifndef JOBQ_CANCEL_COMMON_H
#define JOBQ_CANCEL_COMMON_H

#include "evtest.h"
#include "eventer_jobq.h"

#define CX_LOADA(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define CX_INC(p) __atomic_add_fetch((p), 1, __ATOMIC_ACQ_REL)

static struct timeval cx_in_ms(int ms) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  int64_t us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec + (int64_t)ms * 1000;
  tv.tv_sec = us / 1000000;
  tv.tv_usec = us % 1000000;
  return tv;
}

typedef struct {
  int started, finished, cleanup, complete;
  int cleanup_on_job_thread;
  int spin_stop; /* __atomic */
} cx_t;

static int cx_sleepy(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)now;
  cx_t *x = c;
  if (mask == EVENTER_ASYNCH_WORK) {
    CX_INC(&x->started);
    for (int i = 0; i < 200; i++) usleep(50000); /* 10 s of cancellation points */
    CX_INC(&x->finished);
  } else if (mask == EVENTER_ASYNCH_CLEANUP) {
    x->cleanup_on_job_thread = !eventer_in_loop() && eventer_jobq_inflight() != NULL;
    CX_INC(&x->cleanup);
  } else if (mask == EVENTER_ASYNCH_COMPLETE) {
    CX_INC(&x->complete);
  }
  return 0;
}

/* no cancellation point at all: only an asynchronous cancel or a signal
 * stops it (bounded, so a broken build fails instead of hanging) */
static int cx_spin(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)now;
  cx_t *x = c;
  if (mask == EVENTER_ASYNCH_WORK) {
    CX_INC(&x->started);
    uint64_t end = t_now_us() + 10000000u;
    while (!__atomic_load_n(&x->spin_stop, __ATOMIC_ACQUIRE) && t_now_us() < end) {
    }
    CX_INC(&x->finished);
  } else if (mask == EVENTER_ASYNCH_CLEANUP) {
    x->cleanup_on_job_thread = !eventer_in_loop() && eventer_jobq_inflight() != NULL;
    CX_INC(&x->cleanup);
  } else if (mask == EVENTER_ASYNCH_COMPLETE) {
    CX_INC(&x->complete);
  }
  return 0;
}

static int after_done;
static int after_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  if (mask == EVENTER_ASYNCH_COMPLETE) CX_INC(&after_done);
  return 0;
}

static void check_queue_still_works(eventer_jobq_t *q) {
  /* a cancelled job thread is gone; the queue starts another */
  after_done = 0;
  for (int i = 0; i < 3; i++)
    T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(after_cb, NULL)), 0);
  ev_spin_until(&after_done, 3, 20000);
}

/* How far out the jobs' deadlines are: WORK must have started by then
 * (else it is skipped, not stopped), however loaded the machine is. */
#define CX_DEADLINE_MS 600

/* Queues one job with a deadline CX_DEADLINE_MS out and `flags` in its
 * mask, on a queue whose thread is already up and idle; returns how long
 * its COMPLETE took to arrive, in seconds. */
static double run_deadline_job(eventer_jobq_t *q, eventer_func_t cb, cx_t *x,
                               int flags) {
  check_queue_still_works(q); /* a thread is started and waits for work */
  memset(x, 0, sizeof(*x));
  struct timeval d = cx_in_ms(CX_DEADLINE_MS);
  eventer_t e = eventer_alloc_asynch_timeout(cb, x, &d);
  eventer_set_mask(e, eventer_get_mask(e) | flags);
  uint64_t t0 = t_now_us();
  T_EQ(eventer_add_asynch_ex(q, e), 0);
  ev_spin_until(&x->complete, 1, 30000);
  return (double)(t_now_us() - t0) / 1e6;
}


#endif /* JOBQ_CANCEL_COMMON_H */
