/*
 * test_eventer_ssl_aco_read.c - a coroutine's read on a TLS event after a
 * write never goes straight to the readiness wait: the TLS layer may hold
 * decrypted bytes the socket no longer shows, and a wait for the socket
 * would then wait for data that is already here (eventer_aco_read).
 *
 * Both ends are coroutines on the test's loop: the server sends one TLS
 * record and then only reads; the client reads 1 byte of it (OpenSSL
 * decrypts the whole record and keeps the rest), writes, and reads the
 * rest with no timeout.  Nothing more arrives on its socket, so a read
 * that waited first would never end.
 */
#include "ssltest.h"

static const t_certs_t *C;

static int dummy_cb(eventer_t e, int m, void *c, struct timeval *n) {
  (void)e, (void)m, (void)c, (void)n;
  return 0;
}

static int srv_listen_fd, srv_done, cli_done;
static int cli_first_rv, cli_rest_rv;
static char cli_first, cli_rest[32];

static void srv_fn(void) {
  eventer_t le = eventer_alloc_fd(dummy_cb, NULL, srv_listen_fd, EVENTER_READ);
  eventer_aco_t lae = eventer_set_eventer_aco(le);
  T_CHECK(lae != NULL);
  struct timeval tmo = t_ms(20000);
  int fd = eventer_aco_accept(lae, NULL, NULL, &tmo);
  T_GE(fd, 0);
  eventer_ssl_ctx_t *ctx =
      eventer_ssl_ctx_new(SSL_SERVER, NULL, C->srv, C->srv_key, NULL, NULL);
  T_CHECK(ctx != NULL);
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, fd, EVENTER_READ);
  EVENTER_ATTACH_SSL(e, ctx);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  T_CHECK(ae != NULL);
  T_EQ(eventer_aco_ssl_accept(ae, &tmo), 0);
  T_EQ(eventer_aco_write(ae, "HELLO WORLD\n", 12, &tmo), 12); /* one record */
  char b[64];
  while (eventer_aco_read(ae, b, sizeof(b), &tmo) > 0) {
  }
  eventer_aco_close(ae);
  eventer_aco_free(ae);
  eventer_aco_close(lae);
  eventer_aco_free(lae);
  srv_done = 1;
}

static void cli_fn(void) {
  int port = *(int *)eventer_aco_arg();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  T_GE(fd, 0);
  eventer_ssl_ctx_t *ctx =
      eventer_ssl_ctx_new(SSL_CLIENT, NULL, NULL, NULL, C->ca, NULL);
  T_CHECK(ctx != NULL);
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, fd, EVENTER_READ);
  EVENTER_ATTACH_SSL(e, ctx);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  T_CHECK(ae != NULL);
  struct sockaddr_in sa = t_addr(port);
  struct timeval tmo = t_ms(20000);
  T_EQ(eventer_aco_connect(ae, (struct sockaddr *)&sa, sizeof(sa), &tmo), 0);
  T_EQ(eventer_aco_ssl_connect(ae, &tmo), 0);
  cli_first_rv = eventer_aco_read(ae, &cli_first, 1, &tmo);
  /* a write: a plain socket's next read would wait first */
  T_EQ(eventer_aco_write(ae, "x", 1, &tmo), 1);
  /* the other 11 bytes are in OpenSSL's buffer, not in the socket */
  cli_rest_rv = eventer_aco_read(ae, cli_rest, sizeof(cli_rest), NULL);
  eventer_aco_close(ae);
  eventer_aco_free(ae);
  cli_done = 1;
}

static void test_tls_read_after_write_tries_first(void) {
  C = t_certs_get();
  ev_setup_external(1);
  int port;
  srv_listen_fd = t_listen(&port);
  srv_done = cli_done = 0;
  eventer_aco_start(srv_fn, NULL);
  eventer_aco_start(cli_fn, &port);
  t_spin(&cli_done, 1, 20000);
  T_EQ(cli_first_rv, 1);
  T_EQ(cli_first, 'H');
  T_EQ(cli_rest_rv, 11);
  T_CHECK(!memcmp(cli_rest, "ELLO WORLD\n", 11));
  t_spin(&srv_done, 1, 20000);
  ev_teardown();
}

T_MAIN({"tls_read_after_write_tries_first",
        test_tls_read_after_write_tries_first})
