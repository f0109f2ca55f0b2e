/*
 * evtest.h - helpers shared by the eventer tests (on top of acotest.h).
 *
 * Most tests drive one loop on the test's own thread: ev_setup_external()
 * creates the eventer without threads and attaches loop 0 to the caller,
 * and ev_spin() calls eventer_run_once until a condition holds.  Nothing
 * then depends on scheduler timing except where a test is about threads.
 */
#ifndef EVTEST_H
#define EVTEST_H

#include "acotest.h"
#include "eventer.h"

#include <stdio.h>

/* generous lateness bound for timing checks: timers must never be early,
 * and late only by scheduling noise (much more of it under valgrind/qemu) */
static inline uint64_t ev_late_bound_us(void) {
  return t_slow() ? 1500000u : (t_sanitized() ? 150000u : 60000u);
}

static inline void ev_setup_external(int concurrency) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%d", concurrency);
  T_EQ(eventer_impl_propset("concurrency", buf), 0);
  T_EQ(eventer_init_external(), 0);
  T_EQ(eventer_loop_attach(0), 0);
}

/* Tears down and checks that every eventer_t was freed. */
static inline void ev_teardown(void) {
  eventer_fini();
  T_EQ(eventer_allocations_current(), 0);
}

/* Runs iterations (each waiting at most 5 ms) until *flag >= want or
 * timeout_ms passes; returns the number of iterations. */
static inline long ev_spin_until(volatile int *flag, int want, int timeout_ms) {
  struct timeval w = {0, 5000};
  uint64_t end = t_now_us() + (uint64_t)timeout_ms * 1000u;
  long n = 0;
  while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) < want) {
    if (t_now_us() > end)
      T_FAIL("timed out: flag %d < %d after %d ms", *flag, want, timeout_ms);
    int rc = eventer_run_once(NULL, &w);
    T_CHECKF(rc == EVENTER_RUN_DONE, "run_once rc %d errno %d", rc, errno);
    n++;
  }
  return n;
}

/* One non-blocking iteration. */
static inline void ev_turn(void) {
  struct timeval zero = {0, 0};
  int rc = eventer_run_once(NULL, &zero);
  T_CHECKF(rc == EVENTER_RUN_DONE, "run_once rc %d errno %d", rc, errno);
}

#endif /* EVTEST_H */
