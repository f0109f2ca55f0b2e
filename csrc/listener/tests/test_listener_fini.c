/*
 * test_listener_fini.c - what a listener has queued on a loop when the
 * loop stops.
 *
 * The listener queues tasks that hold something: the hand-off of an
 * accepted fd to the connection's loop (the fd, the acceptor closure and
 * its listener reference), the start of a dispatch service once its TLS
 * handshake is over (the connection's event too), a closure's deferred
 * free, a grace deadline's cancel and the listener's "fin".  A loop told
 * to stop runs none of them; eventer_fini drops them unrun.  What they
 * held must go: the fd closed (the client reads EOF), the closure freed,
 * the listener stopped and its references back to the caller's one (so
 * that mtev_listener_release frees it: ASan's leak check sees the rest).
 *
 * Deterministic: the test drives loop 0 itself (eventer_init_external),
 * so between two eventer_run_once calls the loop is held exactly where
 * the test wants it; a connection's loop of the pool "other" is never
 * driven at all.
 */
#include "ltest.h"

#include "../../eventer/tests/ssltest.h"

#include <openssl/err.h>

static int served; /* the service was called */

static int never_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)e, (void)mask, (void)closure, (void)now;
  served++;
  return 0;
}

static void start(int other) {
  T_EQ(eventer_impl_propset("concurrency", "1"), 0);
  if (other) T_EQ(eventer_impl_propset("loop_other", "1"), 0);
  T_EQ(eventer_init_external(), 0);
  T_EQ(eventer_loop_attach(0), 0);
  served = 0;
}

static uint64_t accepted(mtev_listener_t *l) {
  mtev_listener_stats_t st;
  T_EQ(mtev_listener_get_stats(l, &st), 0);
  return st.accepted;
}

static uint64_t active(mtev_listener_t *l) {
  mtev_listener_stats_t st;
  T_EQ(mtev_listener_get_stats(l, &st), 0);
  return st.active;
}

/* Iterations of loop 0 (none blocks long) until l accepted n; generous:
 * a slow runner only takes longer. */
static void run_until_accepted(mtev_listener_t *l, uint64_t n) {
  for (int i = 0; i < 6000 && accepted(l) < n; i++) lt_run_once();
  T_EQ(accepted(l), n);
}

/* The loop stops (run_once returns STOPPED before its task phase) and
 * eventer_fini drops what was queued.  Then: no closure left, the fd
 * closed, the listener stopped and off the list, ours the last reference. */
static void stop_and_check(mtev_listener_t *l, int srv) {
  eventer_shutdown();
  T_EQ(eventer_run_once(NULL, NULL), EVENTER_RUN_STOPPED);
  eventer_fini();
  T_EQ(served, 0);
  T_EQ(mtev_acceptor_closures_live(), 0);
  T_EQ(active(l), 0);
  T_EQ(eventer_allocations_current(), 0);
  if (srv >= 0) lt_expect_closed(srv);
  struct timeval zero = {0, 0};
  T_EQ(mtev_listener_wait(l, &zero), 0); /* stopped */
  int n = 0;
  T_EQ(mtev_listener_foreach(lt_count_listener, &n), 0);
  T_EQ(n, 0);
  mtev_listener_release(l); /* the last: freed (else ASan reports it) */
}

/* A connection accepted on loop 0 for a loop of "other": its hand-off
 * task sits in that loop's queue.  how 0: the listener was stopped (its
 * stop ran on loop 0); 1: stopped with a grace deadline that passed, so
 * loop 0 also queued the cancel of that loop's connections there. */
static void handoff(int how) {
  int fds = lt_fd_count();
  start(1);
  mtev_listener_opts_t o = {.address = "127.0.0.1",
                            .callback = never_cb,
                            .accept_in_loop = mtev_true,
                            .fanout = mtev_true,
                            .fanout_pool = "other"};
  mtev_listener_t *l = lt_make(&o);
  int port = mtev_listener_get_port(l);
  int client = lt_connect(l);
  run_until_accepted(l, 1);
  int srv = lt_server_fd(port);
  T_EQ(mtev_acceptor_closures_live(), 1);
  struct timeval grace = {0, 0};
  T_EQ(mtev_listener_stop(l, how ? &grace : NULL), 0);
  lt_run_once(); /* the stop: the acceptor goes, the deadline is queued */
  if (how) lt_run_once(); /* the deadline: the cancel goes to "other" */
  struct timeval zero = {0, 0};
  T_EQ(mtev_listener_wait(l, &zero), -1); /* not stopped: a connection */
  T_EQ(errno, ETIMEDOUT);
  T_EQ(active(l), 1);
  stop_and_check(l, srv);
  lt_expect_eof_close(client);
  T_EQ(lt_fd_count(), fds);
}

static void test_handoff_discarded(void) { handoff(0); }
static void test_handoff_and_cancel_discarded(void) { handoff(1); }

/* The listener's last step: stopped with no connection, its "fin" is
 * queued on loop 0, which stops before running it. */
static void test_fin_discarded(void) {
  int fds = lt_fd_count();
  start(0);
  mtev_listener_opts_t o = {.address = "127.0.0.1",
                            .callback = never_cb,
                            .accept_in_loop = mtev_true};
  mtev_listener_t *l = lt_make(&o);
  T_EQ(mtev_listener_stop(l, NULL), 0);
  lt_run_once(); /* the stop: fin is posted for the next iteration */
  struct timeval zero = {0, 0};
  T_EQ(mtev_listener_wait(l, &zero), -1);
  T_EQ(errno, ETIMEDOUT);
  stop_and_check(l, -1);
  T_EQ(lt_fd_count(), fds);
}

/* A classic service freed its closure on another thread while its idle
 * timer was queued on the connection's loop: the rest of the free is a
 * task to that loop, which stops first. */
static mtev_acceptor_closure_t *kept;
static int keep_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)mask, (void)now;
  eventer_remove_fde(e);
  int m;
  eventer_close(e, &m);
  kept = closure;
  return 0; /* the loop drops the event */
}
static void *free_kept(void *arg) {
  (void)arg;
  mtev_acceptor_closure_free(kept);
  return NULL;
}

static void test_deferred_free_discarded(void) {
  int fds = lt_fd_count();
  start(0);
  mtev_hash_table cfg;
  mtev_hash_init(&cfg);
  T_EQ(mtev_hash_replace(&cfg, "idle_timeout", 12, (void *)"60000", NULL, NULL), 1);
  mtev_listener_opts_t o = {.address = "127.0.0.1",
                            .callback = keep_cb,
                            .accept_in_loop = mtev_true,
                            .config = &cfg};
  mtev_listener_t *l = lt_make(&o);
  mtev_hash_destroy(&cfg, NULL, NULL);
  kept = NULL;
  int client = lt_connect(l);
  for (int i = 0; i < 6000 && !kept; i++) lt_run_once();
  T_CHECK(kept != NULL);
  T_EQ(mtev_listener_stop(l, NULL), 0);
  lt_run_once(); /* the stop */
  pthread_t t;
  T_EQ(pthread_create(&t, NULL, free_kept, NULL), 0);
  T_EQ(pthread_join(t, NULL), 0);
  T_EQ(mtev_acceptor_closures_live(), 1); /* its finish is queued */
  stop_and_check(l, -1);
  lt_expect_eof_close(client);
  T_EQ(lt_fd_count(), fds);
}

/* ---- TLS: the dispatch service's start after the handshake ---------------------------- */

static int disp_started;
static void disp_start(eventer_t e, void *closure) {
  (void)e, (void)closure;
  disp_started++;
}
/* declared as converting its event (never called here either) */
static void disp_start_conv(eventer_t e, void *closure) {
  (void)e, (void)closure;
  disp_started++;
}

static const t_certs_t *C;
static int cl_port, cl_connected, cl_read = 1, cl_err, cl_errno;
static void *tls_client(void *arg) {
  (void)arg;
  SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
  T_CHECK(sc != NULL);
  T_EQ(SSL_CTX_load_verify_locations(sc, C->ca, NULL), 1);
  SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
  T_EQ(SSL_CTX_use_certificate_file(sc, C->cli, SSL_FILETYPE_PEM), 1);
  T_EQ(SSL_CTX_use_PrivateKey_file(sc, C->cli_key, SSL_FILETYPE_PEM), 1);
  int fd = t_connect_blocking(__atomic_load_n(&cl_port, __ATOMIC_ACQUIRE));
  lt_timeouts(fd, 30000);
  SSL *ssl = SSL_new(sc);
  SSL_set_fd(ssl, fd);
  int c = SSL_connect(ssl);
  __atomic_store_n(&cl_connected, c, __ATOMIC_RELEASE);
  char buf[16];
  int r = SSL_read(ssl, buf, sizeof(buf));
  cl_errno = errno;
  cl_err = SSL_get_error(ssl, r);
  __atomic_store_n(&cl_read, r, __ATOMIC_RELEASE);
  SSL_free(ssl);
  SSL_CTX_free(sc);
  ERR_clear_error();
  close(fd);
  return NULL;
}

/* A TLS dispatch listener on loop 0: the handshake is over (the closure
 * knows the client certificate's CN, set in the handshake's last
 * callback), the start queued for the next iteration, which never comes.
 * conv 0: the start takes the event unregistered (out of the loop); 1:
 * the start converts it (mtev_listener_aco_dispatch_converts), so it is
 * left registered. */
static void tls_start(int conv) {
  C = t_certs_get();
  int fds = lt_fd_count();
  start(0);
  if (conv) T_EQ(mtev_listener_aco_dispatch_converts(disp_start_conv), 0);
  mtev_hash_table ssl;
  mtev_hash_init(&ssl);
  T_EQ(mtev_hash_replace(&ssl, "certificate_file", 16, (void *)C->srv, NULL, NULL), 1);
  T_EQ(mtev_hash_replace(&ssl, "key_file", 8, (void *)C->srv_key, NULL, NULL), 1);
  T_EQ(mtev_hash_replace(&ssl, "ca_chain", 8, (void *)C->ca, NULL, NULL), 1);
  mtev_listener_opts_t o = {.address = "127.0.0.1",
                            .dispatch = conv ? disp_start_conv : disp_start,
                            .accept_in_loop = mtev_true,
                            .ssl = mtev_true,
                            .sslconfig = &ssl};
  mtev_listener_t *l = lt_make(&o);
  mtev_hash_destroy(&ssl, NULL, NULL);
  int port = mtev_listener_get_port(l);
  disp_started = 0;
  cl_read = 1;
  __atomic_store_n(&cl_port, port, __ATOMIC_RELEASE);
  pthread_t t;
  T_EQ(pthread_create(&t, NULL, tls_client, NULL), 0);
  run_until_accepted(l, 1);
  int srv = lt_server_fd(port);
  eventer_t e = eventer_find_fd(srv); /* the handshake's event */
  T_CHECK(e != NULL);
  mtev_acceptor_closure_t *ac = eventer_get_closure(e);
  /* no more accepts: the connection's handshake goes on */
  T_EQ(mtev_listener_stop(l, NULL), 0);
  /* (a handshake that failed would have freed ac: the count says first) */
  for (int i = 0; i < 6000 && mtev_acceptor_closures_live() == 1 &&
                  !mtev_acceptor_closure_remote_cn(ac);
       i++)
    lt_run_once();
  T_EQ(mtev_acceptor_closures_live(), 1);
  T_CHECK(mtev_acceptor_closure_remote_cn(ac) != NULL);
  T_STR_EQ(mtev_acceptor_closure_remote_cn(ac), "client.example");
  T_CHECK((eventer_find_fd(srv) != NULL) == conv);
  T_EQ(disp_started, 0);
  stop_and_check(l, srv);
  T_EQ(pthread_join(t, NULL), 0);
  T_EQ(cl_connected, 1);
  /* the server's close_notify, or the connection's end: not the receive
   * timeout of a connection held open */
  T_CHECKF(cl_read <= 0 && (cl_err == SSL_ERROR_ZERO_RETURN || cl_err == SSL_ERROR_SSL ||
                            (cl_err == SSL_ERROR_SYSCALL && cl_errno != EAGAIN &&
                             cl_errno != EWOULDBLOCK)),
           "SSL_read: %d (error %d, errno %d)", cl_read, cl_err, cl_errno);
  T_EQ(disp_started, 0);
  T_EQ(lt_fd_count(), fds);
}

/* ---- TLS: an aco function's connection whose coroutine goes with the loop ------------- */

static int tls_co_entered, tls_co_returned;
static void tls_co_fn(void) {
  eventer_aco_t e = eventer_aco_arg();
  tls_co_entered++;
  char buf[8];
  eventer_aco_read(e, buf, sizeof(buf), NULL); /* the client sends nothing */
  tls_co_returned++; /* never: the loop stopped with the coroutine parked */
  eventer_aco_close(e);
  eventer_aco_free(e);
}

/* An aco function's TLS listener on loop 0, never stopped.  in_hs 1: a
 * client that connects and says nothing: the coroutine waits in the
 * handshake (eventer_aco_ssl_accept) for its first record; 0: a TLS client
 * whose handshake is over: the function waits in a read.  eventer_fini
 * ends the coroutine's connection (the TLS context and the fd, the event,
 * the closure) and the listener. */
static void tls_aco(int in_hs) {
  C = t_certs_get();
  int fds = lt_fd_count();
  start(0);
  mtev_hash_table ssl;
  mtev_hash_init(&ssl);
  T_EQ(mtev_hash_replace(&ssl, "certificate_file", 16, (void *)C->srv, NULL, NULL), 1);
  T_EQ(mtev_hash_replace(&ssl, "key_file", 8, (void *)C->srv_key, NULL, NULL), 1);
  T_EQ(mtev_hash_replace(&ssl, "ca_chain", 8, (void *)C->ca, NULL, NULL), 1);
  mtev_listener_opts_t o = {.address = "127.0.0.1",
                            .aco_function = tls_co_fn,
                            .accept_in_loop = mtev_true,
                            .ssl = mtev_true,
                            .sslconfig = &ssl};
  mtev_listener_t *l = lt_make(&o);
  mtev_hash_destroy(&ssl, NULL, NULL);
  int port = mtev_listener_get_port(l);
  tls_co_entered = tls_co_returned = 0;
  int client = -1;
  pthread_t t;
  if (in_hs) {
    client = lt_connect(l);
    run_until_accepted(l, 1);
    for (int i = 0; i < 5; i++) lt_run_once(); /* the coroutine parks in the handshake */
  } else {
    cl_read = 1;
    __atomic_store_n(&cl_port, port, __ATOMIC_RELEASE);
    T_EQ(pthread_create(&t, NULL, tls_client, NULL), 0);
    for (int i = 0; i < 6000 && tls_co_entered == 0; i++) lt_run_once();
    T_EQ(tls_co_entered, 1);
  }
  int srv = lt_server_fd(port);
  T_EQ(mtev_acceptor_closures_live(), 1);
  eventer_shutdown();
  T_EQ(eventer_run_once(NULL, NULL), EVENTER_RUN_STOPPED);
  eventer_fini();
  T_EQ(tls_co_returned, 0);
  T_EQ(mtev_acceptor_closures_live(), 0);
  T_EQ(active(l), 0);
  T_EQ(eventer_allocations_current(), 0);
  lt_expect_closed(srv);
  struct timeval zero = {0, 0};
  T_EQ(mtev_listener_wait(l, &zero), 0);
  mtev_listener_release(l);
  if (in_hs) {
    T_EQ(tls_co_entered, 0);
    lt_expect_eof_close(client);
  } else {
    T_EQ(pthread_join(t, NULL), 0);
    T_EQ(cl_connected, 1);
    T_CHECKF(cl_read <= 0 && (cl_err == SSL_ERROR_ZERO_RETURN || cl_err == SSL_ERROR_SSL ||
                              (cl_err == SSL_ERROR_SYSCALL && cl_errno != EAGAIN &&
                               cl_errno != EWOULDBLOCK)),
             "SSL_read: %d (error %d, errno %d)", cl_read, cl_err, cl_errno);
  }
  T_EQ(lt_fd_count(), fds);
}

static void test_tls_aco_handshake_at_fini(void) { tls_aco(1); }
static void test_tls_aco_read_at_fini(void) { tls_aco(0); }

static void test_tls_start_discarded(void) { tls_start(0); }
static void test_tls_start_converts_discarded(void) { tls_start(1); }

T_MAIN({"handoff_discarded", test_handoff_discarded},
       {"handoff_and_cancel_discarded", test_handoff_and_cancel_discarded},
       {"fin_discarded", test_fin_discarded},
       {"deferred_free_discarded", test_deferred_free_discarded},
       {"tls_start_discarded", test_tls_start_discarded},
       {"tls_start_converts_discarded", test_tls_start_converts_discarded},
       {"tls_aco_handshake_at_fini", test_tls_aco_handshake_at_fini},
       {"tls_aco_read_at_fini", test_tls_aco_read_at_fini})
