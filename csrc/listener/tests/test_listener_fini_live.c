/*
 * test_listener_fini_live.c - eventer_fini with a listener still running
 * (never stopped, or its stop dropped unrun) and with aco connections whose
 * coroutines go with their loop.
 *
 * After eventer_fini: the accept event and every connection's event are
 * gone (the eventer's live count is 0), the sockets closed (EBADF, and the
 * client reads EOF), every acceptor closure freed, the listener stopped,
 * off the list, a thread in mtev_listener_wait woken, and the caller's
 * reference the last one (mtev_listener_release frees it: ASan's leak
 * check sees the rest).  No user code runs on the stopped loop: an aco
 * function parked at fini never returns from its call.
 *
 * Deterministic: the test drives loop 0 itself (eventer_init_external);
 * a connection's loop of the pool "other" is never driven at all (its
 * coroutine never starts).
 */
#include "ltest.h"

#include "eventer_impl.h" /* a layer of the test's own (ev_layer_t) */

static void start(int other) {
  T_EQ(eventer_impl_propset("concurrency", "1"), 0);
  if (other) T_EQ(eventer_impl_propset("loop_other", "1"), 0);
  T_EQ(eventer_init_external(), 0);
  T_EQ(eventer_loop_attach(0), 0);
}

static uint64_t stat_of(mtev_listener_t *l, int active) {
  mtev_listener_stats_t st;
  T_EQ(mtev_listener_get_stats(l, &st), 0);
  return active ? st.active : st.accepted;
}

/* a thread blocked in mtev_listener_wait across the fini (the bound only
 * keeps a broken fini from hanging the test: it fails with -1) */
static int waited = -2;
static int detach_at_fini; /* eventer_fini from a thread that is no loop's */
static void *waiter(void *arg) {
  struct timeval bound = {60, 0};
  __atomic_store_n(&waited, mtev_listener_wait(arg, &bound), __ATOMIC_RELEASE);
  return NULL;
}

/* The loop stops (run_once returns STOPPED before its task phase) and
 * eventer_fini releases what the listener and its connections held. */
static void fini_and_check(mtev_listener_t *l, int lfd) {
  pthread_t t;
  waited = -2;
  T_EQ(pthread_create(&t, NULL, waiter, l), 0);
  eventer_shutdown();
  T_EQ(eventer_run_once(NULL, NULL), EVENTER_RUN_STOPPED);
  if (detach_at_fini) T_EQ(eventer_loop_detach(), 0); /* as the Go binding */
  eventer_fini();
  T_EQ(mtev_acceptor_closures_live(), 0);
  T_EQ(stat_of(l, 1), 0);
  T_EQ(eventer_allocations_current(), 0);
  lt_expect_closed(lfd);
  struct timeval zero = {0, 0};
  T_EQ(mtev_listener_wait(l, &zero), 0);
  int n = 0;
  T_EQ(mtev_listener_foreach(lt_count_listener, &n), 0);
  T_EQ(n, 0);
  T_EQ(pthread_join(t, NULL), 0);
  T_EQ(waited, 0);
  mtev_listener_release(l); /* the last: freed (else ASan reports it) */
}

/* The listening socket: the one bound to port that has no peer. */
static int listen_fd(int port) {
  for (int fd = 0; fd < 4096; fd++) {
    struct sockaddr_in a, p;
    socklen_t al = sizeof(a), pl = sizeof(p);
    if (getsockname(fd, (struct sockaddr *)&a, &al) != 0 || a.sin_family != AF_INET)
      continue;
    if (ntohs(a.sin_port) != port || getpeername(fd, (struct sockaddr *)&p, &pl) == 0)
      continue;
    return fd;
  }
  T_FAIL("no listening socket on port %d", port);
  return -1;
}

static int never_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)e, (void)mask, (void)closure, (void)now;
  T_FAIL("no connection is served");
  return 0;
}

/* how 0: never stopped; 1: mtev_listener_stop called, its task dropped
 * unrun (the loop stops before its task phase). */
static void idle_listener(int how) {
  int fds = lt_fd_count();
  start(0);
  mtev_listener_opts_t o = {.address = "127.0.0.1",
                            .callback = never_cb,
                            .accept_in_loop = mtev_true};
  mtev_listener_t *l = lt_make(&o);
  int lfd = listen_fd(mtev_listener_get_port(l));
  lt_run_once(); /* the accept event is registered and polled */
  T_EQ(eventer_allocations_current(), 1);
  if (how) T_EQ(mtev_listener_stop(l, NULL), 0);
  fini_and_check(l, lfd);
  T_EQ(lt_fd_count(), fds);
}

static void test_running_at_fini(void) { idle_listener(0); }

static void test_accept_thread_at_fini(void) {
  int fds = lt_fd_count();
  start(0);
  mtev_listener_opts_t o = {.address = "127.0.0.1", .callback = never_cb};
  mtev_listener_t *l = lt_make(&o);
  int lfd = listen_fd(mtev_listener_get_port(l));
  lt_run_once();
  fini_and_check(l, lfd);
  T_EQ(lt_fd_count(), fds);
}
static void test_stop_dropped(void) { idle_listener(1); }

/* ---- aco connections ------------------------------------------------------------- */

enum {
  CO_READ,       /* parks in eventer_aco_read: the event registered */
  CO_SLEEP,      /* parks in eventer_aco_sleep holding the open event */
  CO_FREED_SLEEP, /* closed and freed its event, then parks in a sleep */
  CO_ASYNCH,      /* waits for asynch work that ends while nobody drives */
  CO_LWAIT        /* waits in mtev_listener_wait for its own listener */
};
static int co_mode, co_entered, co_returned;
static int job_started, job_go;
static mtev_listener_t *co_l;

static void job_block(void *c) {
  (void)c;
  __atomic_store_n(&job_started, 1, __ATOMIC_RELEASE);
  while (!__atomic_load_n(&job_go, __ATOMIC_ACQUIRE)) usleep(1000);
}

static void co_fn(void) {
  eventer_aco_t e = eventer_aco_arg();
  co_entered++;
  char buf[8];
  struct timeval long_time = {3600, 0};
  switch (co_mode) {
  case CO_READ:
    eventer_aco_read(e, buf, sizeof(buf), NULL);
    break;
  case CO_SLEEP:
    eventer_aco_sleep(&long_time);
    break;
  case CO_ASYNCH:
    eventer_aco_simple_asynch(job_block, NULL);
    break;
  case CO_LWAIT:
    mtev_listener_wait(co_l, NULL);
    break;
  default:
    eventer_aco_close(e);
    eventer_aco_free(e);
    eventer_aco_sleep(&long_time);
    co_returned++;
    return;
  }
  co_returned++; /* never: the loop stopped with the coroutine parked */
  eventer_aco_close(e);
  eventer_aco_free(e);
}

/* An aco function's connection on loop 0, parked as mode says; the
 * listener stopped first (its stop ran: the connection keeps it
 * draining) or not at all. */
static void aco_conn(int mode, int stopped) {
  int fds = lt_fd_count();
  start(0);
  co_mode = mode;
  co_entered = co_returned = 0;
  job_started = job_go = 0;
  mtev_listener_opts_t o = {.address = "127.0.0.1",
                            .aco_function = co_fn,
                            .accept_in_loop = mtev_true};
  mtev_listener_t *l = lt_make(&o);
  co_l = l;
  int port = mtev_listener_get_port(l);
  int lfd = listen_fd(port);
  int client = lt_connect(l);
  for (int i = 0; i < 6000 && co_entered == 0; i++) lt_run_once();
  T_EQ(co_entered, 1);
  int srv = mode == CO_FREED_SLEEP ? -1 : lt_server_fd(port);
  T_EQ(mtev_acceptor_closures_live(), 1);
  if (mode == CO_ASYNCH) {
    /* the job runs, then ends while nobody drives loop 0: its completion
     * waits in the loop's inbox when the loop stops */
    for (int i = 0; i < 30000 && !__atomic_load_n(&job_started, __ATOMIC_ACQUIRE); i++)
      usleep(1000);
    T_EQ(__atomic_load_n(&job_started, __ATOMIC_ACQUIRE), 1);
    __atomic_store_n(&job_go, 1, __ATOMIC_RELEASE);
  }
  if (stopped) {
    T_EQ(mtev_listener_stop(l, NULL), 0);
    lt_run_once(); /* the stop: the acceptor goes; the connection stays */
    T_EQ(stat_of(l, 1), 1);
    struct timeval zero = {0, 0};
    T_EQ(mtev_listener_wait(l, &zero), -1);
    T_EQ(errno, ETIMEDOUT);
  }
  fini_and_check(l, lfd);
  T_EQ(co_returned, 0);
  if (srv >= 0) lt_expect_closed(srv);
  lt_expect_eof_close(client);
  T_EQ(lt_fd_count(), fds);
}

static void test_aco_read_at_fini(void) { aco_conn(CO_READ, 0); }
static void test_aco_sleep_at_fini(void) { aco_conn(CO_SLEEP, 0); }
static void test_aco_freed_sleep_at_fini(void) { aco_conn(CO_FREED_SLEEP, 0); }
static void test_aco_read_stopped_at_fini(void) { aco_conn(CO_READ, 1); }
static void test_aco_asynch_at_fini(void) { aco_conn(CO_ASYNCH, 0); }
static void test_aco_listener_wait_at_fini(void) { aco_conn(CO_LWAIT, 0); }

/* ---- a layer that ends a connection from its discard ---------------------------------- */

/* A dispatch service that is a layer of the eventer, as the HTTP engine
 * is: its task on the connection's loop is dropped at eventer_fini, and its
 * discard ends the connection there (closes the event, frees the closure).
 * The listener was stopped and waits for that last connection: its "fin"
 * must not be posted to the loop whose queues are being dropped (nothing
 * would ever run or release it), nor the closure's deferred free. */
static eventer_t svc_e;
static eventer_task_t svc_task;
static void svc_task_run(eventer_task_t *t, struct timeval *now) {
  (void)t, (void)now;
  T_FAIL("the service's task never runs: the loop stopped");
}
static int svc_discard(eventer_task_t *t) {
  if (t != &svc_task) return 0;
  mtev_acceptor_closure_t *ac = eventer_get_closure(svc_e);
  int m;
  eventer_close(svc_e, &m);
  eventer_free(svc_e);
  svc_e = NULL;
  mtev_acceptor_closure_free(ac);
  return 1;
}
static const ev_layer_t svc_layer = {.name = "test-svc", .task_discard = svc_discard};

static void svc_start(eventer_t e, void *closure) {
  (void)closure;
  svc_e = e; /* handed over unregistered: ours */
}

/* idle 1: the listener has an idle_timeout, so the closure's idle timer
 * is queued on the stopped loop when the discard frees the closure */
static void layer_ends_conn(int idle) {
  int fds = lt_fd_count();
  start(0);
  ev_layer_register(&svc_layer);
  svc_e = NULL;
  mtev_hash_table cfg;
  mtev_hash_init(&cfg);
  if (idle)
    T_EQ(mtev_hash_replace(&cfg, "idle_timeout", 12, (void *)"60000", NULL, NULL), 1);
  mtev_listener_opts_t o = {.address = "127.0.0.1",
                            .dispatch = svc_start,
                            .accept_in_loop = mtev_true,
                            .config = &cfg};
  mtev_listener_t *l = lt_make(&o);
  mtev_hash_destroy(&cfg, NULL, NULL);
  int port = mtev_listener_get_port(l);
  int lfd = listen_fd(port);
  int client = lt_connect(l);
  for (int i = 0; i < 6000 && !svc_e; i++) lt_run_once();
  T_CHECK(svc_e != NULL);
  int srv = lt_server_fd(port);
  T_EQ(mtev_listener_stop(l, NULL), 0);
  lt_run_once(); /* the stop: the acceptor goes; the connection stays */
  T_EQ(stat_of(l, 1), 1);
  svc_task.run = svc_task_run;
  T_EQ(eventer_task_post_to(eventer_pool_loop(eventer_pool("default"), 0), &svc_task), 0);
  detach_at_fini = idle;
  fini_and_check(l, lfd);
  detach_at_fini = 0;
  T_CHECK(svc_e == NULL);
  lt_expect_closed(srv);
  lt_expect_eof_close(client);
  T_EQ(lt_fd_count(), fds);
}

static void test_layer_ends_conn_at_fini(void) { layer_ends_conn(0); }
static void test_layer_ends_idle_conn_at_fini(void) { layer_ends_conn(1); }

T_MAIN({"running_at_fini", test_running_at_fini},
       {"layer_ends_conn_at_fini", test_layer_ends_conn_at_fini},
       {"layer_ends_idle_conn_at_fini", test_layer_ends_idle_conn_at_fini},
       {"accept_thread_at_fini", test_accept_thread_at_fini},
       {"stop_dropped", test_stop_dropped},
       {"aco_read_at_fini", test_aco_read_at_fini},
       {"aco_sleep_at_fini", test_aco_sleep_at_fini},
       {"aco_freed_sleep_at_fini", test_aco_freed_sleep_at_fini},
       {"aco_read_stopped_at_fini", test_aco_read_stopped_at_fini},
       {"aco_asynch_at_fini", test_aco_asynch_at_fini},
       {"aco_listener_wait_at_fini", test_aco_listener_wait_at_fini})
