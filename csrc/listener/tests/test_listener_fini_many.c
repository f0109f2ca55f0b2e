/*
 * test_listener_fini_many.c - eventer_fini with hundreds of aco connections
 * of two listeners on one loop, parked in every way at once, and with
 * references the aco function took and kept; a third listener's
 * connections handed off to the loops of a pool nobody drives; and
 * mtev_listener_stop from another thread racing with eventer_fini.
 *
 * After eventer_fini: every listener stopped and freed by the caller's
 * release, every acceptor closure freed, every server socket closed (the
 * clients read EOF or a reset), and the only events left are the ones the
 * functions took a reference to and stored: the test drops each of those
 * once, and that must be the last reference (ASan sees a use after free
 * or a leak otherwise).  No function code runs after the loop stops.
 *
 * Deterministic: the test drives loop 0 itself (eventer_init_external).
 */
#include "ltest.h"

enum {
  M_READ,        /* parks in eventer_aco_read */
  M_WRITE_FULL,  /* parks in eventer_aco_write, the socket buffer full */
  M_SLEEP,       /* parks in eventer_aco_sleep holding its event */
  M_FREED_SLEEP, /* closed and freed its event, then sleeps */
  M_CLOSED_SLEEP, /* closed its event (kept its reference), then sleeps */
  M_REF_SLEEP,    /* took and stored an extra reference, then sleeps */
  M_REF_FREED_SLEEP, /* stored an extra reference, closed and freed its own */
  M_PEER_CLOSED,  /* read EOF (the client closed), then sleeps */
  M_RETURNED,     /* closed, freed and returned before fini */
  NMODES
};
#define NCONN (NMODES * 24)
#define PER_L (NCONN / 2)
#define NFAN 30

static int entered, returned, parked;
static int next_mode[2];
static eventer_t kept[NCONN];
static int nkept;
static char big[1 << 24];
static mtev_listener_t *ls[3];

static void co_fn(void) {
  eventer_aco_t e = eventer_aco_arg();
  mtev_listener_t *me = mtev_acceptor_closure_listener(
      eventer_get_closure((eventer_t)e));
  int li = me == ls[1];
  int mode = next_mode[li]++ % NMODES;
  entered++;
  char buf[8];
  struct timeval long_time = {3600, 0};
  switch (mode) {
  case M_READ:
    parked++;
    eventer_aco_read(e, buf, sizeof(buf), NULL);
    break;
  case M_WRITE_FULL:
    parked++;
    for (;;) /* until the buffers are full and it parks */
      T_CHECK(eventer_aco_write(e, big, sizeof(big), NULL) > 0);
    break;
  case M_SLEEP:
    parked++;
    eventer_aco_sleep(&long_time);
    break;
  case M_FREED_SLEEP:
    eventer_aco_close(e);
    eventer_aco_free(e);
    parked++;
    eventer_aco_sleep(&long_time);
    break;
  case M_CLOSED_SLEEP:
    eventer_aco_close(e);
    parked++;
    eventer_aco_sleep(&long_time);
    break;
  case M_REF_SLEEP:
    eventer_ref((eventer_t)e);
    kept[nkept++] = (eventer_t)e;
    parked++;
    eventer_aco_sleep(&long_time);
    break;
  case M_REF_FREED_SLEEP:
    eventer_ref((eventer_t)e);
    kept[nkept++] = (eventer_t)e;
    eventer_aco_close(e);
    eventer_aco_free(e);
    parked++;
    eventer_aco_sleep(&long_time);
    break;
  case M_PEER_CLOSED:
    parked++;
    T_EQ(eventer_aco_read(e, buf, sizeof(buf), NULL), 0);
    eventer_aco_sleep(&long_time);
    break;
  default:
    eventer_aco_close(e);
    eventer_aco_free(e);
    returned++;
    return;
  }
  T_FAIL("mode %d: the function ran on after its loop stopped", mode);
}

static void run_once(void) {
  struct timeval tick = {0, 1000};
  T_EQ(eventer_run_once(NULL, &tick), EVENTER_RUN_DONE);
}

static int waited[3] = {-2, -2, -2};
static void *waiter(void *arg) {
  struct timeval bound = {60, 0};
  int i = arg == ls[1] ? 1 : arg == ls[2] ? 2 : 0;
  __atomic_store_n(&waited[i], mtev_listener_wait(arg, &bound), __ATOMIC_RELEASE);
  return NULL;
}

static void many_at_fini(int stop_first) {
  int fds = lt_fd_count();
  T_EQ(eventer_impl_propset("concurrency", "1"), 0);
  T_EQ(eventer_impl_propset("loop_other", "3"), 0);
  T_EQ(eventer_init_external(), 0);
  T_EQ(eventer_loop_attach(0), 0);
  entered = returned = parked = nkept = 0;
  next_mode[0] = next_mode[1] = 0;
  for (int i = 0; i < 2; i++) {
    char err[1024];
    mtev_listener_opts_t o = {.address = "127.0.0.1",
                              .aco_function = co_fn,
                              .accept_in_loop = mtev_true};
    ls[i] = mtev_listener_create(&o, err, sizeof(err));
    T_CHECKF(ls[i], "mtev_listener_create: %s", err);
  }
  /* a third listener fans out to the 3 loops of pool "other", never
   * driven: its connections are accepted, their hand-offs queued there */
  char err[1024];
  mtev_listener_opts_t fo = {.address = "127.0.0.1",
                             .aco_function = co_fn,
                             .accept_in_loop = mtev_true,
                             .fanout = mtev_true,
                             .fanout_pool = "other"};
  ls[2] = mtev_listener_create(&fo, err, sizeof(err));
  T_CHECKF(ls[2], "mtev_listener_create: %s", err);
  int fclients[NFAN];
  for (int k = 0; k < NFAN; k++) { /* one at a time: the backlog is 5 */
    fclients[k] = lt_connect(ls[2]);
    for (int i = 0; i < 6000 && lt_stat(ls[2], 0) < (uint64_t)k + 1; i++) run_once();
    T_EQ(lt_stat(ls[2], 0), k + 1);
  }
  T_EQ(entered, 0);
  int clients[NCONN];
  /* connection k of listener li gets mode k % NMODES (they are accepted
   * in order on one loop: connect one, wait for its function) */
  for (int k = 0; k < PER_L; k++)
    for (int li = 0; li < 2; li++) {
      int c = lt_connect(ls[li]);
      int sz = 4096;
      T_EQ(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
      clients[k * 2 + li] = c;
      if (k % NMODES == M_PEER_CLOSED) {
        T_EQ(shutdown(c, SHUT_WR), 0);
      }
      int want = entered + 1;
      for (int i = 0; i < 6000 && entered < want; i++) run_once();
      T_EQ(entered, want);
    }
  /* let the writes fill their buffers and the reads see EOF */
  for (int i = 0; i < 20; i++) run_once();
  T_EQ(returned, 2 * (PER_L / NMODES));
  T_EQ(nkept, 2 * 2 * (PER_L / NMODES));
  T_EQ(mtev_acceptor_closures_live(), NFAN + NCONN - returned);
  if (stop_first) {
    T_EQ(mtev_listener_stop(ls[2], NULL), 0);
    T_EQ(mtev_listener_stop(ls[0], NULL), 0);
    if (stop_first > 1) run_once(); /* ls[0]'s stop runs; ls[1]'s queued */
    T_EQ(mtev_listener_stop(ls[1], NULL), 0);
  }
  pthread_t t[3];
  for (int i = 0; i < 3; i++) {
    waited[i] = -2;
    T_EQ(pthread_create(&t[i], NULL, waiter, ls[i]), 0);
  }
  eventer_shutdown();
  T_EQ(eventer_run_once(NULL, NULL), EVENTER_RUN_STOPPED);
  eventer_fini();
  T_EQ(mtev_acceptor_closures_live(), 0);
  for (int i = 0; i < 3; i++) {
    T_EQ(pthread_join(t[i], NULL), 0);
    T_EQ(waited[i], 0);
    T_EQ(lt_stat(ls[i], 1), 0);
    mtev_listener_release(ls[i]);
  }
  /* only the functions' stored references are left, each the last */
  T_EQ(eventer_allocations_current(), nkept);
  for (int i = 0; i < nkept; i++) T_EQ(eventer_free(kept[i]), mtev_true);
  T_EQ(eventer_allocations_current(), 0);
  for (int i = 0; i < NFAN; i++) {
    lt_expect_eof(fclients[i]);
    close(fclients[i]);
  }
  for (int i = 0; i < NCONN; i++) {
    struct pollfd p = {clients[i], POLLIN, 0};
    T_EQ(poll(&p, 1, 30000), 1);
    close(clients[i]);
  }
  T_EQ(lt_fd_count(), fds);
}

/* ---- mtev_listener_stop from another thread racing with eventer_fini ------------------- */

static mtev_listener_t *race_l;
static int race_go, race_spin;
static void *race_stopper(void *arg) {
  (void)arg;
  while (!__atomic_load_n(&race_go, __ATOMIC_ACQUIRE)) {
  }
  for (volatile int i = 0; i < race_spin; i++) {
  }
  T_EQ(mtev_listener_stop(race_l, NULL), 0);
  return NULL;
}

static void test_stop_races_fini(void) {
  int fds = lt_fd_count();
  for (int round = 0; round < 300; round++) {
    T_EQ(eventer_impl_propset("concurrency", "1"), 0);
    T_EQ(eventer_init_external(), 0);
    T_EQ(eventer_loop_attach(0), 0);
    char err[1024];
    mtev_listener_opts_t o = {.address = "127.0.0.1",
                              .aco_function = co_fn,
                              .accept_in_loop = mtev_true};
    race_l = mtev_listener_create(&o, err, sizeof(err));
    T_CHECKF(race_l, "mtev_listener_create: %s", err);
    run_once();
    race_go = 0;
    race_spin = (round * 7919) % 20000;
    pthread_t t;
    T_EQ(pthread_create(&t, NULL, race_stopper, NULL), 0);
    eventer_shutdown();
    T_EQ(eventer_run_once(NULL, NULL), EVENTER_RUN_STOPPED);
    __atomic_store_n(&race_go, 1, __ATOMIC_RELEASE);
    eventer_fini();
    T_EQ(pthread_join(t, NULL), 0);
    T_EQ(mtev_acceptor_closures_live(), 0);
    T_EQ(eventer_allocations_current(), 0);
    struct timeval zero = {0, 0};
    T_EQ(mtev_listener_wait(race_l, &zero), 0);
    mtev_listener_release(race_l);
  }
  T_EQ(lt_fd_count(), fds);
}

static void test_many_running(void) { many_at_fini(0); }
static void test_many_stop_queued(void) { many_at_fini(1); }
static void test_many_one_stopped(void) { many_at_fini(2); }

T_MAIN({"many_running", test_many_running},
       {"many_stop_queued", test_many_stop_queued},
       {"many_one_stopped", test_many_one_stopped},
       {"stop_races_fini", test_stop_races_fini})
