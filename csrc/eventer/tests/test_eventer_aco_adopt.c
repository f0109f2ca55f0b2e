/*
 * test_eventer_aco_adopt.c - eventer_set_eventer_aco on a classic fd event
 * that is registered.  On the calling loop the aco event keeps that
 * registration (no epoll_ctl DEL and ADD: its registration number stays)
 * and a read's wait is served by it.  Registered on another loop, it is
 * refused with EINVAL and stays as it was: classic, registered there, its
 * callback still called.  Taken out of the loop first, it converts as an
 * unregistered event.  Every eventer_t goes (ev_teardown).
 */
#include "evtest.h"

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "eventer_aco.h"
#include "eventer_aco_impl.h"

static int sv[2];
static int done, fired;

static void sockpair(void) {
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static int st_of(eventer_t e) { return __atomic_load_n(&e->state, __ATOMIC_ACQUIRE); }

/* a classic callback: counts, and takes its event out and closes it once
 * it has read "bye" */
static int classic_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)c, (void)now;
  char b[16];
  ssize_t n = read(eventer_get_fd(e), b, sizeof(b));
  __atomic_add_fetch(&fired, 1, __ATOMIC_ACQ_REL);
  if (n == 3 && !memcmp(b, "bye", 3)) {
    eventer_remove_fde(e);
    int m;
    eventer_close(e, &m);
    return 0;
  }
  return EVENTER_READ | EVENTER_EXCEPTION;
}

static int write_later(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  T_EQ(write(sv[1], "hi", 2), 2);
  return 0;
}

/* ---- on the calling loop: adopted ---------------------------------------------------- */

static void same_loop_co(void) {
  eventer_t e = eventer_alloc_fd(classic_cb, NULL, sv[0], EVENTER_READ | EVENTER_EXCEPTION);
  T_CHECK(e != NULL);
  T_EQ(eventer_set_owner_loop(e, eventer_loop_current()), 0);
  eventer_add(e);
  T_EQ(st_of(e), EV_ST_FD);
  uint32_t reg = e->reg_epoch;
  eventer_ref(e); /* the caller's own reference (the loop has one) */
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  T_CHECK(ae != NULL);
  T_EQ(eventer_is_aco(e), mtev_true);
  T_EQ(st_of(e), EV_ST_FD);
  T_EQ(e->reg_epoch, reg); /* the same registration */
  /* a read that has to wait: the peer writes from a timer */
  T_CHECK(eventer_add_in_s_us(write_later, NULL, 0, 20000) != NULL);
  struct timeval tmo = {t_slow() ? 60 : 10, 0};
  char b[8];
  T_EQ(eventer_aco_read(ae, b, sizeof(b), &tmo), 2);
  T_CHECK(!memcmp(b, "hi", 2));
  T_EQ(e->reg_epoch, reg); /* the wait used it: no DEL and ADD */
  T_EQ(__atomic_load_n(&fired, __ATOMIC_ACQUIRE), 0); /* never the classic callback */
  T_EQ(eventer_aco_close(ae), 0);
  eventer_aco_free(ae);
  __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
}

static void test_same_loop(void) {
  ev_setup_external(1);
  sockpair();
  done = fired = 0;
  eventer_aco_start(same_loop_co, NULL);
  ev_spin_until(&done, 1, t_slow() ? 60000 : 10000);
  close(sv[1]);
  ev_teardown();
}

/* ---- taken out first: converted as unregistered ------------------------------------- */

static void removed_co(void) {
  eventer_t e = eventer_alloc_fd(classic_cb, NULL, sv[0], EVENTER_READ | EVENTER_EXCEPTION);
  T_CHECK(e != NULL);
  T_EQ(eventer_set_owner_loop(e, eventer_loop_current()), 0);
  eventer_add(e);
  T_CHECK(eventer_remove_fde(e) == e); /* its reference is ours again */
  T_EQ(st_of(e), EV_ST_NONE);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  T_CHECK(ae != NULL);
  T_CHECK(eventer_add_in_s_us(write_later, NULL, 0, 20000) != NULL);
  struct timeval tmo = {t_slow() ? 60 : 10, 0};
  char b[8];
  T_EQ(eventer_aco_read(ae, b, sizeof(b), &tmo), 2);
  T_EQ(eventer_aco_close(ae), 0);
  eventer_aco_free(ae);
  __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
}

static void test_removed_first(void) {
  ev_setup_external(1);
  sockpair();
  done = fired = 0;
  eventer_aco_start(removed_co, NULL);
  ev_spin_until(&done, 1, t_slow() ? 60000 : 10000);
  close(sv[1]);
  ev_teardown();
}

/* ---- registered on another loop: refused, untouched --------------------------------- */

static void *loop1_main(void *a) {
  (void)a;
  T_EQ(eventer_loop_attach(1), 0);
  while (eventer_run_once(NULL, NULL) != EVENTER_RUN_STOPPED) {
  }
  return NULL;
}

static eventer_t other_e;
static int other_errno;
static void other_loop_co(void) {
  eventer_t e = other_e;
  errno = 0;
  T_CHECK(eventer_set_eventer_aco(e) == NULL);
  other_errno = errno;
  __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
}

static void test_other_loop(void) {
  ev_setup_external(2);
  sockpair();
  done = fired = 0;
  pthread_t th;
  T_EQ(pthread_create(&th, NULL, loop1_main, NULL), 0);
  eventer_loop_t *l1 = eventer_pool_loop(eventer_pool_by_index(0), 1);
  T_CHECK(l1 != NULL);
  eventer_t e = eventer_alloc_fd(classic_cb, NULL, sv[0], EVENTER_READ | EVENTER_EXCEPTION);
  T_CHECK(e != NULL);
  T_EQ(eventer_set_owner_loop(e, l1), 0);
  eventer_ref(e); /* ours, to look at it after loop 1 frees its own */
  eventer_add(e);
  uint64_t end = t_now_us() + (t_slow() ? 60000000u : 10000000u);
  while (st_of(e) != EV_ST_FD) { /* loop 1 applies the add */
    if (t_now_us() > end) T_FAIL("loop 1 did not register the event");
    usleep(1000);
  }
  uint32_t reg = e->reg_epoch;
  other_e = e;
  eventer_aco_start(other_loop_co, NULL); /* a coroutine of loop 0 */
  ev_spin_until(&done, 1, t_slow() ? 60000 : 10000);
  T_EQ(other_errno, EINVAL);
  T_EQ(eventer_is_aco(e), mtev_false);
  T_EQ(st_of(e), EV_ST_FD);
  T_EQ(e->reg_epoch, reg);
  T_CHECK(eventer_get_callback(e) == classic_cb);
  /* still served by loop 1 */
  T_EQ(write(sv[1], "x", 1), 1);
  end = t_now_us() + (t_slow() ? 60000000u : 10000000u);
  while (__atomic_load_n(&fired, __ATOMIC_ACQUIRE) < 1) {
    if (t_now_us() > end) T_FAIL("loop 1 no longer serves the event");
    usleep(1000);
  }
  T_EQ(write(sv[1], "bye", 3), 3); /* it takes itself out and closes */
  end = t_now_us() + (t_slow() ? 60000000u : 10000000u);
  while (st_of(e) != EV_ST_NONE) {
    if (t_now_us() > end) T_FAIL("the event did not leave loop 1");
    usleep(1000);
  }
  eventer_deref(e);
  eventer_shutdown();
  T_EQ(pthread_join(th, NULL), 0);
  close(sv[1]);
  ev_teardown();
}

T_MAIN({"same_loop", test_same_loop}, {"removed_first", test_removed_first},
       {"other_loop", test_other_loop})
