/*
 * test_eventer_aco_sync.c - semaphores, mutexes, wait groups and channels
 * between the coroutines of one loop: contention, FIFO hand-off (nobody
 * overtakes a waiter), timeouts on time and not early, cancel while
 * waiting, channel close semantics, try forms, misuse errors (other loop,
 * off-loop, outside a coroutine, non-owner unlock), freeing with waiters
 * (EBUSY), and 10,000 coroutines on one semaphore.
 */
#include "evtest.h"

#include <limits.h>
#include <pthread.h>
#include <stdint.h>

#include "eventer_aco.h"
#include "eventer_aco_sync.h"

static struct timeval ms(long v) {
  struct timeval t = {v / 1000, (v % 1000) * 1000};
  return t;
}

static int done;

/* checks a wait that must time out after `want_ms`: never early, late only
 * by scheduling noise */
static void check_waited(uint64_t waited_us, long want_ms) {
  T_GE(waited_us, (uint64_t)want_ms * 1000u);
  T_LE_LATE(waited_us, (uint64_t)want_ms * 1000u + ev_late_bound_us());
}

/* a coroutine that reserves stack, so that parked coroutines really get
 * their stacks copied out and in (the shared-stack case) */
static void touch_stack(int seed) {
  volatile char pad[1536];
  for (size_t i = 0; i < sizeof(pad); i += 64) pad[i] = (char)(seed + (int)i);
  (void)pad[seed & 63];
}

/* ---- semaphores ------------------------------------------------------------ */

static void test_sem_basics(void) {
  ev_setup_external(1);
  T_CHECK(eventer_aco_sem_new(EVENTER_ACO_SEM_VALUE_MAX + 1u) == NULL);
  T_EQ(errno, EINVAL);
  eventer_aco_sem_t *s = eventer_aco_sem_new(2);
  T_CHECK(s != NULL);
  T_EQ(eventer_aco_sem_value(s), 2);
  /* the try forms and post work in main context (a classic callback) */
  T_EQ(eventer_aco_sem_trywait(s), 0);
  T_EQ(eventer_aco_sem_trywait(s), 0);
  T_ERRNO(eventer_aco_sem_trywait(s), EAGAIN);
  T_EQ(eventer_aco_sem_post(s), 0);
  T_EQ(eventer_aco_sem_value(s), 1);
  /* waiting needs a coroutine */
  T_ERRNO(eventer_aco_sem_wait(s, NULL), EINVAL);
  T_ERRNO(eventer_aco_sem_wait(NULL, NULL), EINVAL);
  T_ERRNO(eventer_aco_sem_post(NULL), EINVAL);
  T_ERRNO(eventer_aco_sem_trywait(NULL), EINVAL);
  T_ERRNO(eventer_aco_sem_value(NULL), EINVAL);
  T_EQ(eventer_aco_sem_free(NULL), 0);
  T_EQ(eventer_aco_sem_free(s), 0);
  eventer_aco_sem_t *full = eventer_aco_sem_new(EVENTER_ACO_SEM_VALUE_MAX);
  T_ERRNO(eventer_aco_sem_post(full), EOVERFLOW);
  T_EQ(eventer_aco_sem_value(full), EVENTER_ACO_SEM_VALUE_MAX);
  T_EQ(eventer_aco_sem_free(full), 0);
  ev_teardown();
}

/* waiters are served in arrival order, and a unit posted while they wait
 * goes to the first of them: a trywait right after the post finds none */
static eventer_aco_sem_t *g_sem;
static int order[64], norder;

static void sem_waiter_fn(void) {
  int id = (int)(intptr_t)eventer_aco_arg();
  touch_stack(id);
  T_EQ(eventer_aco_sem_wait(g_sem, NULL), 0);
  order[norder++] = id;
  done++;
}

static void test_sem_fifo_handoff(void) {
  ev_setup_external(1);
  done = norder = 0;
  g_sem = eventer_aco_sem_new(0);
  for (int i = 0; i < 5; i++)
    eventer_aco_start(sem_waiter_fn, (void *)(intptr_t)i);
  T_EQ(done, 0); /* all parked */
  T_EQ(eventer_aco_sem_post(g_sem), 0);
  T_EQ(eventer_aco_sem_value(g_sem), 0); /* handed to waiter 0 */
  T_ERRNO(eventer_aco_sem_trywait(g_sem), EAGAIN);
  T_EQ(eventer_aco_sem_post(g_sem), 0);
  T_EQ(eventer_aco_sem_post(g_sem), 0);
  ev_spin_until(&done, 3, 5000);
  T_EQ(eventer_aco_sem_post(g_sem), 0);
  T_EQ(eventer_aco_sem_post(g_sem), 0);
  T_EQ(eventer_aco_sem_post(g_sem), 0); /* nobody waits: counted */
  ev_spin_until(&done, 5, 5000);
  for (int i = 0; i < 5; i++) T_EQ(order[i], i);
  T_EQ(eventer_aco_sem_value(g_sem), 1);
  T_EQ(eventer_aco_sem_free(g_sem), 0);
  ev_teardown();
}

/* several coroutines share 2 units; each holds one across a yield; at no
 * time do more than 2 hold one */
static int holders, max_holders, rounds_done;
static void sem_worker_fn(void) {
  int id = (int)(intptr_t)eventer_aco_arg();
  for (int i = 0; i < 50; i++) {
    T_EQ(eventer_aco_sem_wait(g_sem, NULL), 0);
    holders++;
    if (holders > max_holders) max_holders = holders;
    touch_stack(id + i);
    T_EQ(eventer_aco_yield(), 0);
    holders--;
    T_EQ(eventer_aco_sem_post(g_sem), 0);
    rounds_done++;
  }
  done++;
}

static void test_sem_contention(void) {
  ev_setup_external(1);
  done = holders = max_holders = rounds_done = 0;
  g_sem = eventer_aco_sem_new(2);
  for (int i = 0; i < 6; i++)
    eventer_aco_start(sem_worker_fn, (void *)(intptr_t)i);
  ev_spin_until(&done, 6, 20000);
  T_EQ(max_holders, 2);
  T_EQ(rounds_done, 300);
  T_EQ(eventer_aco_sem_value(g_sem), 2);
  T_EQ(eventer_aco_sem_free(g_sem), 0);
  ev_teardown();
}

/* timeouts: on time, not early; {0,0} does not wait; a unit posted after
 * a timeout is not lost to the coroutine that gave up */
static uint64_t waited_us;
static int wait_rv, wait_err;
static void sem_timeout_fn(void) {
  struct timeval zero = {0, 0}, t = ms(40);
  uint64_t t0 = t_now_us();
  T_ERRNO(eventer_aco_sem_wait(g_sem, &zero), ETIMEDOUT);
  T_LE_LATE(t_now_us() - t0, ev_late_bound_us());
  t0 = t_now_us();
  wait_rv = eventer_aco_sem_wait(g_sem, &t);
  wait_err = errno;
  waited_us = t_now_us() - t0;
  done++;
}

static void test_sem_timeout(void) {
  ev_setup_external(1);
  done = 0;
  g_sem = eventer_aco_sem_new(0);
  eventer_aco_start(sem_timeout_fn, NULL);
  ev_spin_until(&done, 1, 5000);
  T_EQ(wait_rv, -1);
  T_EQ(wait_err, ETIMEDOUT);
  T_EQ(wait_err, ETIME);
  check_waited(waited_us, 40);
  T_EQ(eventer_aco_sem_post(g_sem), 0);
  T_EQ(eventer_aco_sem_value(g_sem), 1);
  T_EQ(eventer_aco_sem_free(g_sem), 0);
  ev_teardown();
}

/* cancel while waiting: ECANCELED, the coroutine goes on, it is off the
 * wait queue (the object can be freed); a cancel that arrives while the
 * coroutine runs hits its next real wait, not a wait that can proceed */
static int after_cancel;
static void sem_cancel_fn(void) {
  wait_rv = eventer_aco_sem_wait(g_sem, NULL);
  wait_err = errno;
  after_cancel = 1;
  /* cancel ourselves: pending until a call has to wait */
  T_EQ(eventer_aco_cancel(eventer_aco_self()), 0);
  T_EQ(eventer_aco_sem_post(g_sem), 0);
  T_EQ(eventer_aco_sem_wait(g_sem, NULL), 0); /* proceeds, keeps it */
  T_ERRNO(eventer_aco_sem_wait(g_sem, NULL), ECANCELED);
  struct timeval t = ms(1);
  T_ERRNO(eventer_aco_sem_wait(g_sem, &t), ETIMEDOUT); /* consumed */
  done++;
}

static void test_sem_cancel(void) {
  ev_setup_external(1);
  done = after_cancel = 0;
  g_sem = eventer_aco_sem_new(0);
  eventer_aco_co_t *h = eventer_aco_spawn(sem_cancel_fn, NULL, NULL);
  T_CHECK(h != NULL);
  T_EQ(after_cancel, 0);
  T_ERRNO(eventer_aco_sem_free(g_sem), EBUSY); /* it waits */
  T_EQ(eventer_aco_cancel(h), 0);
  ev_spin_until(&done, 1, 5000);
  T_EQ(wait_rv, -1);
  T_EQ(wait_err, ECANCELED);
  T_EQ(after_cancel, 1);
  T_EQ(eventer_aco_sem_value(g_sem), 0);
  T_EQ(eventer_aco_sem_free(g_sem), 0);
  eventer_aco_co_release(h);
  ev_teardown();
}

/* 10,000 coroutines parked on one semaphore, released in arrival order */
static int next_expected, out_of_order;
static void many_waiter_fn(void) {
  int id = (int)(intptr_t)eventer_aco_arg();
  T_EQ(eventer_aco_sem_wait(g_sem, NULL), 0);
  if (id != next_expected) out_of_order++;
  next_expected++;
  done++;
}

static void test_sem_10k_waiters(void) {
  ev_setup_external(1);
  done = next_expected = out_of_order = 0;
  int n = (int)t_scale(10000, 10);
  /* TSan gives each coroutine a fiber; keep well below its limit */
  if (!strcmp(t_mode(), "tsan")) n = 4000;
  g_sem = eventer_aco_sem_new(0);
  for (int i = 0; i < n; i++)
    eventer_aco_start(many_waiter_fn, (void *)(intptr_t)i);
  T_EQ(done, 0);
  T_ERRNO(eventer_aco_sem_free(g_sem), EBUSY);
  /* release them in batches, interleaved with loop turns */
  for (int posted = 0; posted < n;) {
    for (int k = 0; k < 1000 && posted < n; k++, posted++)
      T_EQ(eventer_aco_sem_post(g_sem), 0);
    ev_turn();
  }
  ev_spin_until(&done, n, 60000);
  T_EQ(out_of_order, 0);
  T_EQ(eventer_aco_sem_value(g_sem), 0);
  T_EQ(eventer_aco_sem_free(g_sem), 0);
  ev_teardown();
}

/* ---- mutexes --------------------------------------------------------------- */

/* 4 coroutines take the mutex 20 times each and hold it across a yield:
 * mutual exclusion, no lost update, and strict round-robin (each unlock
 * hands the mutex to the longest waiter; the unlocker queues behind) */
static eventer_aco_mutex_t *g_mx;
static int inside, max_inside, counter;
static int acq[128], nacq;
static void mx_worker_fn(void) {
  int id = (int)(intptr_t)eventer_aco_arg();
  for (int i = 0; i < 20; i++) {
    T_EQ(eventer_aco_mutex_lock(g_mx, NULL), 0);
    acq[nacq++] = id;
    inside++;
    if (inside > max_inside) max_inside = inside;
    int c = counter;
    touch_stack(id);
    T_EQ(eventer_aco_yield(), 0);
    counter = c + 1;
    inside--;
    T_EQ(eventer_aco_mutex_unlock(g_mx), 0);
  }
  done++;
}

static void test_mutex_exclusion_fifo(void) {
  ev_setup_external(1);
  done = inside = max_inside = counter = nacq = 0;
  g_mx = eventer_aco_mutex_new();
  T_EQ(eventer_aco_mutex_locked(g_mx), 0);
  for (int i = 0; i < 4; i++)
    eventer_aco_start(mx_worker_fn, (void *)(intptr_t)i);
  T_EQ(eventer_aco_mutex_locked(g_mx), 1);
  ev_spin_until(&done, 4, 20000);
  T_EQ(max_inside, 1);
  T_EQ(counter, 80);
  T_EQ(nacq, 80);
  for (int i = 0; i < 80; i++) T_EQ(acq[i], i % 4);
  T_EQ(eventer_aco_mutex_locked(g_mx), 0);
  T_EQ(eventer_aco_mutex_free(g_mx), 0);
  ev_teardown();
}

/* misuse and edge cases, seen from two coroutines A (holder) and B */
static int stage;
static void mx_b_fn(void) {
  /* A holds it */
  T_ERRNO(eventer_aco_mutex_unlock(g_mx), EPERM);
  T_ERRNO(eventer_aco_mutex_trylock(g_mx), EBUSY);
  struct timeval t = ms(30);
  uint64_t t0 = t_now_us();
  T_ERRNO(eventer_aco_mutex_lock(g_mx, &t), ETIMEDOUT);
  check_waited(t_now_us() - t0, 30);
  stage = 1;
  /* now wait for real; A unlocks and must hand it to us */
  T_EQ(eventer_aco_mutex_lock(g_mx, NULL), 0);
  T_EQ(stage, 2);
  stage = 3;
  T_EQ(eventer_aco_mutex_unlock(g_mx), 0);
  T_ERRNO(eventer_aco_mutex_unlock(g_mx), EPERM); /* not held any more */
  done++;
}

static void mx_a_fn(void) {
  T_EQ(eventer_aco_mutex_lock(g_mx, NULL), 0);
  T_ERRNO(eventer_aco_mutex_lock(g_mx, NULL), EDEADLK);
  T_ERRNO(eventer_aco_mutex_trylock(g_mx), EBUSY); /* not recursive */
  eventer_aco_start(mx_b_fn, NULL);
  struct timeval t = ms(1);
  while (stage < 1) T_EQ(eventer_aco_sleep(&t), 0);
  T_EQ(eventer_aco_yield(), 0); /* B is parked in lock() again */
  T_ERRNO(eventer_aco_mutex_free(g_mx), EBUSY);
  stage = 2;
  T_EQ(eventer_aco_mutex_unlock(g_mx), 0);
  /* handed to B, which has not run yet: nobody may take it meanwhile,
   * and it cannot be freed under B */
  T_EQ(eventer_aco_mutex_locked(g_mx), 1);
  T_ERRNO(eventer_aco_mutex_trylock(g_mx), EBUSY);
  T_ERRNO(eventer_aco_mutex_unlock(g_mx), EPERM);
  T_ERRNO(eventer_aco_mutex_free(g_mx), EBUSY);
  T_EQ(eventer_aco_mutex_lock(g_mx, NULL), 0); /* after B */
  T_EQ(stage, 3);
  T_EQ(eventer_aco_mutex_unlock(g_mx), 0);
  T_EQ(eventer_aco_mutex_trylock(g_mx), 0);
  done++;
  /* ends holding it: a locked mutex nobody waits for may be freed */
}

static void test_mutex_misuse_and_timeout(void) {
  ev_setup_external(1);
  done = stage = 0;
  g_mx = eventer_aco_mutex_new();
  /* outside a coroutine there is no owner */
  T_ERRNO(eventer_aco_mutex_lock(g_mx, NULL), EINVAL);
  T_ERRNO(eventer_aco_mutex_trylock(g_mx), EINVAL);
  T_ERRNO(eventer_aco_mutex_unlock(g_mx), EINVAL);
  T_ERRNO(eventer_aco_mutex_locked(NULL), EINVAL);
  eventer_aco_start(mx_a_fn, NULL);
  ev_spin_until(&done, 2, 5000);
  T_EQ(eventer_aco_mutex_locked(g_mx), 1);
  T_EQ(eventer_aco_mutex_free(g_mx), 0);
  T_EQ(eventer_aco_mutex_free(NULL), 0);
  ev_teardown();
}

/* a waiter cancelled in the queue is skipped: the mutex goes to the next */
static int got_lock[3];
static void mx_cancel_fn(void) {
  int id = (int)(intptr_t)eventer_aco_arg();
  int rv = eventer_aco_mutex_lock(g_mx, NULL);
  got_lock[id] = rv == 0 ? 1 : -errno;
  if (rv == 0) T_EQ(eventer_aco_mutex_unlock(g_mx), 0);
  done++;
}

static void mx_holder_fn(void) {
  T_EQ(eventer_aco_mutex_lock(g_mx, NULL), 0);
  struct timeval t = ms(20);
  eventer_aco_sleep(&t); /* the test cancels waiter 1 meanwhile */
  T_EQ(eventer_aco_mutex_unlock(g_mx), 0);
  done++;
}

static void test_mutex_cancel(void) {
  ev_setup_external(1);
  done = 0;
  memset(got_lock, 0, sizeof(got_lock));
  g_mx = eventer_aco_mutex_new();
  eventer_aco_start(mx_holder_fn, NULL);
  eventer_aco_co_t *h[3];
  for (int i = 0; i < 3; i++) {
    h[i] = eventer_aco_spawn(mx_cancel_fn, (void *)(intptr_t)i, NULL);
    T_CHECK(h[i] != NULL);
  }
  T_EQ(eventer_aco_cancel(h[1]), 0);
  ev_spin_until(&done, 4, 5000);
  T_EQ(got_lock[0], 1);
  T_EQ(got_lock[1], -ECANCELED);
  T_EQ(got_lock[2], 1);
  T_EQ(eventer_aco_mutex_locked(g_mx), 0);
  T_EQ(eventer_aco_mutex_free(g_mx), 0);
  for (int i = 0; i < 3; i++) eventer_aco_co_release(h[i]);
  ev_teardown();
}

/* ---- wait groups ------------------------------------------------------------- */

static eventer_aco_wg_t *g_wg;
static uint64_t wg_t0, wg_released_us[2];
static void wg_worker_fn(void) {
  long d = (long)(intptr_t)eventer_aco_arg();
  struct timeval t = ms(d);
  T_EQ(eventer_aco_sleep(&t), 0);
  T_EQ(eventer_aco_wg_done(g_wg), 0);
}

static void wg_waiter_fn(void) {
  int id = (int)(intptr_t)eventer_aco_arg();
  T_EQ(eventer_aco_wg_wait(g_wg, NULL), 0);
  T_EQ(eventer_aco_wg_count(g_wg), 0);
  wg_released_us[id] = t_now_us() - wg_t0;
  done++;
}

static void test_wg_wait(void) {
  ev_setup_external(1);
  done = 0;
  g_wg = eventer_aco_wg_new();
  T_EQ(eventer_aco_wg_count(g_wg), 0);
  T_EQ(eventer_aco_wg_add(g_wg, 3), 0);
  wg_t0 = t_now_us();
  eventer_aco_start(wg_worker_fn, (void *)(intptr_t)10);
  eventer_aco_start(wg_worker_fn, (void *)(intptr_t)50);
  eventer_aco_start(wg_worker_fn, (void *)(intptr_t)30);
  eventer_aco_start(wg_waiter_fn, (void *)(intptr_t)0);
  eventer_aco_start(wg_waiter_fn, (void *)(intptr_t)1);
  T_ERRNO(eventer_aco_wg_free(g_wg), EBUSY);
  ev_spin_until(&done, 2, 5000);
  /* both let go by the last done(), after 50 ms */
  check_waited(wg_released_us[0], 50);
  check_waited(wg_released_us[1], 50);
  T_EQ(eventer_aco_wg_free(g_wg), 0);
  ev_teardown();
}

/* counter errors; wait at zero; timeout; cancel; reaching zero lets the
 * waiters go even if the counter goes up before they resume */
static void wg_edge_fn(void) {
  T_EQ(eventer_aco_wg_wait(g_wg, NULL), 0); /* zero: at once */
  T_ERRNO(eventer_aco_wg_done(g_wg), EINVAL);
  T_EQ(eventer_aco_wg_count(g_wg), 0);
  T_EQ(eventer_aco_wg_add(g_wg, 2), 0);
  T_ERRNO(eventer_aco_wg_add(g_wg, -3), EINVAL);
  T_EQ(eventer_aco_wg_count(g_wg), 2); /* unchanged */
  T_ERRNO(eventer_aco_wg_add(g_wg, INT_MAX), EOVERFLOW);
  struct timeval t = ms(25), zero = {0, 0};
  T_ERRNO(eventer_aco_wg_wait(g_wg, &zero), ETIMEDOUT);
  uint64_t t0 = t_now_us();
  T_ERRNO(eventer_aco_wg_wait(g_wg, &t), ETIMEDOUT);
  check_waited(t_now_us() - t0, 25);
  stage = 1;
  /* the test cancels this one */
  T_ERRNO(eventer_aco_wg_wait(g_wg, NULL), ECANCELED);
  stage = 2;
  /* the test brings the counter to 0 and back to 1 before we resume */
  T_EQ(eventer_aco_wg_wait(g_wg, NULL), 0);
  T_EQ(eventer_aco_wg_count(g_wg), 1);
  done++;
}

static void test_wg_edges(void) {
  ev_setup_external(1);
  done = stage = 0;
  g_wg = eventer_aco_wg_new();
  T_ERRNO(eventer_aco_wg_wait(g_wg, NULL), EINVAL); /* not a coroutine */
  T_ERRNO(eventer_aco_wg_add(NULL, 1), EINVAL);
  T_ERRNO(eventer_aco_wg_count(NULL), EINVAL);
  eventer_aco_co_t *h = eventer_aco_spawn(wg_edge_fn, NULL, NULL);
  ev_spin_until(&stage, 1, 5000);
  ev_turn();
  T_EQ(eventer_aco_cancel(h), 0);
  ev_spin_until(&stage, 2, 5000);
  ev_turn(); /* parked in the last wait */
  /* done() from main context (a classic callback) works too */
  T_EQ(eventer_aco_wg_done(g_wg), 0);
  T_EQ(eventer_aco_wg_done(g_wg), 0);
  T_EQ(eventer_aco_wg_add(g_wg, 1), 0);
  ev_spin_until(&done, 1, 5000);
  T_EQ(eventer_aco_wg_done(g_wg), 0);
  T_EQ(eventer_aco_wg_free(g_wg), 0);
  T_EQ(eventer_aco_wg_free(NULL), 0);
  eventer_aco_co_release(h);
  ev_teardown();
}

/* ---- channels ------------------------------------------------------------------ */

static void test_chan_basics(void) {
  ev_setup_external(1);
  T_CHECK(eventer_aco_chan_new(0, 1) == NULL);
  T_EQ(errno, EINVAL);
  T_CHECK(eventer_aco_chan_new(4, 0) == NULL);
  T_EQ(errno, EINVAL);
  T_CHECK(eventer_aco_chan_new(SIZE_MAX / 2, 4) == NULL);
  T_EQ(errno, EINVAL);
  eventer_aco_chan_t *ch = eventer_aco_chan_new(sizeof(int), 3);
  T_CHECK(ch != NULL);
  T_EQ(eventer_aco_chan_cap(ch), 3);
  T_EQ(eventer_aco_chan_elem_size(ch), sizeof(int));
  T_EQ(eventer_aco_chan_len(ch), 0);
  int v = 0;
  T_ERRNO(eventer_aco_chan_tryrecv(ch, &v), EAGAIN);
  for (int i = 1; i <= 3; i++) T_EQ(eventer_aco_chan_trysend(ch, &i), 0);
  T_ERRNO(eventer_aco_chan_trysend(ch, &v), EAGAIN);
  T_EQ(eventer_aco_chan_len(ch), 3);
  /* wrap around the ring */
  for (int i = 4; i <= 10; i++) {
    T_EQ(eventer_aco_chan_tryrecv(ch, &v), 0);
    T_EQ(v, i - 3);
    T_EQ(eventer_aco_chan_trysend(ch, &i), 0);
  }
  for (int i = 8; i <= 10; i++) {
    T_EQ(eventer_aco_chan_tryrecv(ch, &v), 0);
    T_EQ(v, i);
  }
  /* blocking forms need a coroutine; NULL arguments */
  T_ERRNO(eventer_aco_chan_send(ch, &v, NULL), EINVAL);
  T_ERRNO(eventer_aco_chan_recv(ch, &v, NULL), EINVAL);
  T_ERRNO(eventer_aco_chan_trysend(ch, NULL), EINVAL);
  T_ERRNO(eventer_aco_chan_tryrecv(NULL, &v), EINVAL);
  T_ERRNO(eventer_aco_chan_len(NULL), EINVAL);
  T_ERRNO(eventer_aco_chan_close(NULL), EINVAL);
  T_EQ(eventer_aco_chan_closed(ch), 0);
  T_EQ(eventer_aco_chan_free(ch), 0);
  T_EQ(eventer_aco_chan_free(NULL), 0);
  ev_teardown();
}

/* one producer, three consumers, 2 slots, 128-byte elements: every element
 * arrives once, intact, and receives complete in send order.  Each
 * consumer receives into a buffer on its own stack while other coroutines
 * run on the shared stack, so an implementation that wrote into a parked
 * coroutine's stack would corrupt or lose elements here. */
typedef struct {
  uint32_t seq;
  uint8_t fill[124];
} elem_t;

static eventer_aco_chan_t *g_ch;
static int nrecv, recv_out_of_order, seen[2000];
static uint32_t last_seq;

static void fill_elem(elem_t *e, uint32_t seq) {
  e->seq = seq;
  for (size_t i = 0; i < sizeof(e->fill); i++) e->fill[i] = (uint8_t)(seq * 7 + i);
}
static int elem_ok(const elem_t *e) {
  for (size_t i = 0; i < sizeof(e->fill); i++)
    if (e->fill[i] != (uint8_t)(e->seq * 7 + i)) return 0;
  return 1;
}

static void producer_fn(void) {
  int n = (int)(intptr_t)eventer_aco_arg();
  for (int i = 1; i <= n; i++) {
    elem_t e;
    fill_elem(&e, (uint32_t)i);
    T_EQ(eventer_aco_chan_send(g_ch, &e, NULL), 0);
    if (i % 7 == 0) T_EQ(eventer_aco_yield(), 0);
  }
  T_EQ(eventer_aco_chan_close(g_ch), 0);
  done++;
}

static void consumer_fn(void) {
  int id = (int)(intptr_t)eventer_aco_arg();
  for (;;) {
    elem_t e;
    memset(&e, 0, sizeof(e));
    touch_stack(id);
    int rv = eventer_aco_chan_recv(g_ch, &e, NULL);
    if (rv != 0) {
      T_EQ(errno, EPIPE);
      break;
    }
    T_CHECK(elem_ok(&e));
    T_CHECK(e.seq >= 1 && e.seq < 2000);
    seen[e.seq]++;
    if (e.seq <= last_seq) recv_out_of_order++;
    last_seq = e.seq;
    nrecv++;
    if ((e.seq + (uint32_t)id) % 5 == 0) T_EQ(eventer_aco_yield(), 0);
  }
  done++;
}

static void test_chan_producer_consumers(void) {
  ev_setup_external(1);
  done = nrecv = recv_out_of_order = 0;
  last_seq = 0;
  memset(seen, 0, sizeof(seen));
  int n = (int)t_scale(1500, 5);
  g_ch = eventer_aco_chan_new(sizeof(elem_t), 2);
  for (int i = 0; i < 3; i++)
    eventer_aco_start(consumer_fn, (void *)(intptr_t)i);
  eventer_aco_start(producer_fn, (void *)(intptr_t)n);
  ev_spin_until(&done, 4, 30000);
  T_EQ(nrecv, n);
  T_EQ(recv_out_of_order, 0);
  for (int i = 1; i <= n; i++) T_EQ(seen[i], 1);
  T_EQ(eventer_aco_chan_len(g_ch), 0);
  T_EQ(eventer_aco_chan_free(g_ch), 0);
  ev_teardown();
}

/* senders wait while full and go in arrival order */
static void fifo_sender_fn(void) {
  int id = (int)(intptr_t)eventer_aco_arg();
  touch_stack(id);
  T_EQ(eventer_aco_chan_send(g_ch, &id, NULL), 0);
  done++;
}

static void test_chan_sender_fifo(void) {
  ev_setup_external(1);
  done = 0;
  g_ch = eventer_aco_chan_new(sizeof(int), 1);
  int v = 100;
  T_EQ(eventer_aco_chan_trysend(g_ch, &v), 0);
  for (int i = 0; i < 4; i++)
    eventer_aco_start(fifo_sender_fn, (void *)(intptr_t)i);
  T_EQ(done, 0);
  T_EQ(eventer_aco_chan_tryrecv(g_ch, &v), 0);
  T_EQ(v, 100);
  /* the freed slot is reserved for sender 0: nobody else may use it */
  T_ERRNO(eventer_aco_chan_trysend(g_ch, &v), EAGAIN);
  T_ERRNO(eventer_aco_chan_free(g_ch), EBUSY);
  for (int i = 0; i < 4; i++) {
    ev_spin_until(&done, i + 1, 5000);
    T_EQ(eventer_aco_chan_tryrecv(g_ch, &v), 0);
    T_EQ(v, i);
  }
  T_EQ(eventer_aco_chan_free(g_ch), 0);
  ev_teardown();
}

/* timeouts on both sides, {0,0}, state unchanged afterwards */
static void chan_timeout_fn(void) {
  int v = 1;
  struct timeval zero = {0, 0}, t = ms(30);
  T_ERRNO(eventer_aco_chan_recv(g_ch, &v, &zero), ETIMEDOUT);
  uint64_t t0 = t_now_us();
  T_ERRNO(eventer_aco_chan_recv(g_ch, &v, &t), ETIMEDOUT);
  check_waited(t_now_us() - t0, 30);
  T_EQ(eventer_aco_chan_send(g_ch, &v, &zero), 0); /* room: no wait */
  T_ERRNO(eventer_aco_chan_send(g_ch, &v, &zero), ETIMEDOUT);
  t0 = t_now_us();
  T_ERRNO(eventer_aco_chan_send(g_ch, &v, &t), ETIMEDOUT);
  check_waited(t_now_us() - t0, 30);
  T_EQ(eventer_aco_chan_len(g_ch), 1);
  done++;
}

static void test_chan_timeouts(void) {
  ev_setup_external(1);
  done = 0;
  g_ch = eventer_aco_chan_new(sizeof(int), 1);
  eventer_aco_start(chan_timeout_fn, NULL);
  ev_spin_until(&done, 1, 5000);
  T_EQ(eventer_aco_chan_free(g_ch), 0);
  ev_teardown();
}

/* close: waiting senders fail, buffered elements drain, then EPIPE */
static int close_rv[4], close_err[4];
static void blocked_sender_fn(void) {
  int v = 99;
  close_rv[0] = eventer_aco_chan_send(g_ch, &v, NULL);
  close_err[0] = errno;
  done++;
}
static void drain_fn(void) {
  int v;
  T_EQ(eventer_aco_chan_recv(g_ch, &v, NULL), 0);
  T_EQ(v, 1);
  T_EQ(eventer_aco_chan_recv(g_ch, &v, NULL), 0);
  T_EQ(v, 2);
  T_ERRNO(eventer_aco_chan_recv(g_ch, &v, NULL), EPIPE);
  T_ERRNO(eventer_aco_chan_send(g_ch, &v, NULL), EPIPE);
  done++;
}
static void empty_receiver_fn(void) {
  int v;
  close_rv[1] = eventer_aco_chan_recv(g_ch, &v, NULL);
  close_err[1] = errno;
  done++;
}

static void test_chan_close(void) {
  ev_setup_external(1);
  done = 0;
  g_ch = eventer_aco_chan_new(sizeof(int), 2);
  int v = 1;
  T_EQ(eventer_aco_chan_trysend(g_ch, &v), 0);
  v = 2;
  T_EQ(eventer_aco_chan_trysend(g_ch, &v), 0);
  eventer_aco_start(blocked_sender_fn, NULL);
  T_EQ(done, 0);
  T_EQ(eventer_aco_chan_close(g_ch), 0);
  T_EQ(eventer_aco_chan_closed(g_ch), 1);
  T_ERRNO(eventer_aco_chan_close(g_ch), EPIPE);
  T_ERRNO(eventer_aco_chan_trysend(g_ch, &v), EPIPE);
  ev_spin_until(&done, 1, 5000);
  T_EQ(close_rv[0], -1);
  T_EQ(close_err[0], EPIPE);
  T_EQ(eventer_aco_chan_len(g_ch), 2); /* its element never got in */
  eventer_aco_start(drain_fn, NULL);
  ev_spin_until(&done, 2, 5000);
  T_ERRNO(eventer_aco_chan_tryrecv(g_ch, &v), EPIPE);
  T_EQ(eventer_aco_chan_free(g_ch), 0);

  /* receivers waiting on an empty channel are let go by close */
  g_ch = eventer_aco_chan_new(sizeof(int), 2);
  eventer_aco_start(empty_receiver_fn, NULL);
  T_EQ(done, 2);
  T_EQ(eventer_aco_chan_close(g_ch), 0);
  ev_spin_until(&done, 3, 5000);
  T_EQ(close_rv[1], -1);
  T_EQ(close_err[1], EPIPE);
  T_EQ(eventer_aco_chan_free(g_ch), 0);
  ev_teardown();
}

/* close between a wake and the resume: an element already reserved for a
 * receiver is still received; a slot reserved for a sender is void */
static void reserved_receiver_fn(void) {
  int v = 0;
  close_rv[2] = eventer_aco_chan_recv(g_ch, &v, NULL);
  close_err[2] = v;
  done++;
}
static void reserved_sender_fn(void) {
  int v = 5;
  close_rv[3] = eventer_aco_chan_send(g_ch, &v, NULL);
  close_err[3] = errno;
  done++;
}

static void test_chan_close_after_wake(void) {
  ev_setup_external(1);
  done = 0;
  g_ch = eventer_aco_chan_new(sizeof(int), 1);
  eventer_aco_start(reserved_receiver_fn, NULL);
  int v = 42;
  T_EQ(eventer_aco_chan_trysend(g_ch, &v), 0); /* reserved for it */
  T_ERRNO(eventer_aco_chan_tryrecv(g_ch, &v), EAGAIN); /* not for us */
  T_ERRNO(eventer_aco_chan_free(g_ch), EBUSY);         /* it will come */
  T_EQ(eventer_aco_chan_close(g_ch), 0);
  ev_spin_until(&done, 1, 5000);
  T_EQ(close_rv[2], 0);
  T_EQ(close_err[2], 42);
  T_EQ(eventer_aco_chan_free(g_ch), 0);

  g_ch = eventer_aco_chan_new(sizeof(int), 1);
  T_EQ(eventer_aco_chan_trysend(g_ch, &v), 0);
  eventer_aco_start(reserved_sender_fn, NULL);
  T_EQ(eventer_aco_chan_tryrecv(g_ch, &v), 0); /* slot reserved for it */
  T_ERRNO(eventer_aco_chan_free(g_ch), EBUSY);
  T_EQ(eventer_aco_chan_close(g_ch), 0);
  ev_spin_until(&done, 2, 5000);
  T_EQ(close_rv[3], -1);
  T_EQ(close_err[3], EPIPE);
  T_EQ(eventer_aco_chan_len(g_ch), 0);
  T_EQ(eventer_aco_chan_free(g_ch), 0);
  ev_teardown();
}

/* cancel a receiver and a sender while they wait */
static void cancel_recv_fn(void) {
  int v;
  T_ERRNO(eventer_aco_chan_recv(g_ch, &v, NULL), ECANCELED);
  /* still usable */
  T_EQ(eventer_aco_chan_send(g_ch, &(int){7}, NULL), 0);
  T_ERRNO(eventer_aco_chan_send(g_ch, &(int){8}, NULL), ECANCELED);
  T_EQ(eventer_aco_chan_recv(g_ch, &v, NULL), 0);
  T_EQ(v, 7);
  done++;
}

static void test_chan_cancel(void) {
  ev_setup_external(1);
  done = 0;
  g_ch = eventer_aco_chan_new(sizeof(int), 1);
  eventer_aco_co_t *h = eventer_aco_spawn(cancel_recv_fn, NULL, NULL);
  T_ERRNO(eventer_aco_chan_free(g_ch), EBUSY);
  T_EQ(eventer_aco_cancel(h), 0);
  ev_turn();
  ev_turn(); /* now parked in the second send */
  T_EQ(done, 0);
  T_EQ(eventer_aco_cancel(h), 0);
  ev_spin_until(&done, 1, 5000);
  T_EQ(eventer_aco_chan_len(g_ch), 0);
  T_EQ(eventer_aco_chan_free(g_ch), 0);
  eventer_aco_co_release(h);
  ev_teardown();
}

/* ---- loops and threads ------------------------------------------------------------
 * An object belongs to the loop that first uses it; other loops and plain
 * threads get EINVAL, whatever the call. */

typedef struct {
  eventer_aco_sem_t *s0, *s1;
  eventer_aco_mutex_t *m0;
  eventer_aco_wg_t *w0;
  eventer_aco_chan_t *c0;
  int attach;
} xloop_t;

static void *other_thread(void *arg) {
  xloop_t *x = arg;
  if (x->attach) T_EQ(eventer_loop_attach(1), 0);
  int v = 1;
  T_ERRNO(eventer_aco_sem_post(x->s0), EINVAL);
  T_ERRNO(eventer_aco_sem_trywait(x->s0), EINVAL);
  T_ERRNO(eventer_aco_wg_add(x->w0, 1), EINVAL);
  T_ERRNO(eventer_aco_chan_trysend(x->c0, &v), EINVAL);
  T_ERRNO(eventer_aco_chan_tryrecv(x->c0, &v), EINVAL);
  T_ERRNO(eventer_aco_chan_close(x->c0), EINVAL);
  T_ERRNO(eventer_aco_mutex_unlock(x->m0), EINVAL);
  if (x->attach) {
    T_EQ(eventer_aco_sem_post(x->s1), 0); /* binds s1 to loop 1 */
    T_EQ(eventer_loop_detach(), 0);
  } else {
    T_ERRNO(eventer_aco_sem_post(x->s1), EINVAL); /* off-loop: no binding */
  }
  return NULL;
}

static xloop_t g_x;
static void xloop_fn(void) {
  T_ERRNO(eventer_aco_sem_wait(g_x.s1, NULL), EINVAL); /* loop 1's */
  T_ERRNO(eventer_aco_sem_trywait(g_x.s1), EINVAL);
  T_EQ(eventer_aco_sem_wait(g_x.s0, NULL), 0);
  done++;
}

static void test_other_loop_and_thread(void) {
  ev_setup_external(2);
  done = 0;
  g_x.s0 = eventer_aco_sem_new(1);
  g_x.s1 = eventer_aco_sem_new(0);
  g_x.m0 = eventer_aco_mutex_new();
  g_x.w0 = eventer_aco_wg_new();
  g_x.c0 = eventer_aco_chan_new(sizeof(int), 1);
  /* bind everything but s1 to loop 0 (this thread) */
  T_EQ(eventer_aco_sem_trywait(g_x.s0), 0);
  T_EQ(eventer_aco_sem_post(g_x.s0), 0);
  T_EQ(eventer_aco_wg_add(g_x.w0, 0), 0);
  T_ERRNO(eventer_aco_chan_tryrecv(g_x.c0, &(int){0}), EAGAIN);
  g_x.attach = 0;
  pthread_t th;
  T_EQ(pthread_create(&th, NULL, other_thread, &g_x), 0);
  T_EQ(pthread_join(th, NULL), 0);
  g_x.attach = 1;
  T_EQ(pthread_create(&th, NULL, other_thread, &g_x), 0);
  T_EQ(pthread_join(th, NULL), 0);
  /* the mutex was never used: the unlocks above bound it to nobody */
  eventer_aco_start(xloop_fn, NULL);
  ev_spin_until(&done, 1, 5000);
  T_EQ(eventer_aco_sem_value(g_x.s1), 1);
  T_EQ(eventer_aco_sem_free(g_x.s0), 0);
  T_EQ(eventer_aco_sem_free(g_x.s1), 0);
  T_EQ(eventer_aco_mutex_free(g_x.m0), 0);
  T_EQ(eventer_aco_wg_free(g_x.w0), 0);
  T_EQ(eventer_aco_chan_free(g_x.c0), 0);
  ev_teardown();
}

T_MAIN({"sem_basics", test_sem_basics},
       {"sem_fifo_handoff", test_sem_fifo_handoff},
       {"sem_contention", test_sem_contention},
       {"sem_timeout", test_sem_timeout},
       {"sem_cancel", test_sem_cancel},
       {"sem_10k_waiters", test_sem_10k_waiters},
       {"mutex_exclusion_fifo", test_mutex_exclusion_fifo},
       {"mutex_misuse_and_timeout", test_mutex_misuse_and_timeout},
       {"mutex_cancel", test_mutex_cancel},
       {"wg_wait", test_wg_wait},
       {"wg_edges", test_wg_edges},
       {"chan_basics", test_chan_basics},
       {"chan_producer_consumers", test_chan_producer_consumers},
       {"chan_sender_fifo", test_chan_sender_fifo},
       {"chan_timeouts", test_chan_timeouts},
       {"chan_close", test_chan_close},
       {"chan_close_after_wake", test_chan_close_after_wake},
       {"chan_cancel", test_chan_cancel},
       {"other_loop_and_thread", test_other_loop_and_thread})
