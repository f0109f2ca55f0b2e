/*
 * test_listener_aco_read.c - a C aco function's reads on a listener's
 * connection: on a plain listener (the "listener" opset, whose reads are
 * recv(2)) a read after a write or a short read goes straight to the
 * readiness wait; on a TLS listener ("listener-SSL") it never does, since
 * OpenSSL may hold decrypted bytes the socket no longer shows.  Either
 * way every byte comes through: the service reads in 4-byte pieces and
 * echoes each one, so after its first write the rest of the client's
 * burst is already in the socket (plain) or in OpenSSL's buffer (TLS,
 * one record), and nothing more arrives until the echo is complete.
 */
#include "ltest.h"
#include "eventer_aco_impl.h"

#include "../../eventer/tests/ssltest.h"

#include <openssl/err.h>

static const t_certs_t *C;
static int seen_may_wait[2] = {-1, -1}; /* [tls] */
static int served[2];

/* echoes in 4-byte pieces until EOF; its reads have no timeout, so a read
 * that waited for a socket with nothing more coming would hang the
 * client (which fails on its receive timeout) */
static void echo4(void) {
  eventer_aco_t e = eventer_aco_arg();
  mtev_acceptor_closure_t *ac = eventer_aco_get_closure(e);
  int tls = mtev_hash_dict_get(mtev_acceptor_closure_config(ac), "tls") != NULL;
  __atomic_store_n(&seen_may_wait[tls], ev_aco_fd_reads_may_wait((eventer_t)e),
                   __ATOMIC_RELEASE);
  char b[4];
  int n;
  while ((n = eventer_aco_read(e, b, sizeof(b), NULL)) > 0)
    if (eventer_aco_write(e, b, (size_t)n, NULL) != n) break;
  INC(&served[tls]);
  eventer_aco_close(e);
  eventer_aco_free(e);
}

static mtev_hash_table *table(mtev_hash_table *h, const char *k, ...) {
  mtev_hash_init(h);
  va_list ap;
  va_start(ap, k);
  for (; k; k = va_arg(ap, const char *)) {
    const char *v = va_arg(ap, const char *);
    T_EQ(mtev_hash_replace(h, k, (int)strlen(k), (void *)v, NULL, NULL), 1);
  }
  va_end(ap);
  return h;
}

static const char burst[] = "abcdefghijklmnopqrstuvwxyz0123456789"; /* 36 */

static void plain_client(mtev_listener_t *l) {
  int fd = lt_connect(l);
  for (int round = 0; round < 3; round++) {
    lt_send(fd, burst); /* one segment: the service reads it 4 at a time */
    lt_expect(fd, burst, 0);
  }
  lt_send(fd, "xy"); /* a short read, then EOF while it waits */
  lt_expect(fd, "xy", 0);
  T_EQ(shutdown(fd, SHUT_WR), 0);
  lt_expect_eof(fd);
  close(fd);
}

static void tls_client(mtev_listener_t *l) {
  SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
  T_CHECK(sc != NULL);
  T_EQ(SSL_CTX_load_verify_locations(sc, C->ca, NULL), 1);
  int fd = t_connect_blocking(mtev_listener_get_port(l));
  lt_timeouts(fd, t_slow() ? 60000 : 10000);
  SSL *ssl = SSL_new(sc);
  SSL_set_fd(ssl, fd);
  T_EQ(SSL_connect(ssl), 1);
  for (int round = 0; round < 3; round++) {
    T_EQ(SSL_write(ssl, burst, (int)strlen(burst)), (int)strlen(burst));
    char got[64];
    size_t have = 0;
    while (have < strlen(burst)) {
      int r = SSL_read(ssl, got + have, (int)(sizeof(got) - have));
      T_CHECKF(r > 0, "round %d: SSL_read after %zu of %zu bytes: %d", round,
               have, strlen(burst), SSL_get_error(ssl, r));
      have += (size_t)r;
    }
    T_EQ(have, strlen(burst));
    T_CHECK(!memcmp(got, burst, have));
  }
  SSL_shutdown(ssl);
  SSL_free(ssl);
  SSL_CTX_free(sc);
  ERR_clear_error();
  close(fd);
}

static int both_served(void *arg) {
  (void)arg;
  return LOADA(&served[0]) == 1 && LOADA(&served[1]) == 1;
}

static void body(void) {
  mtev_hash_table pc, tc, ts;
  mtev_listener_opts_t op = {.address = "127.0.0.1",
                             .aco_function = echo4,
                             .config = table(&pc, "plain", "1", NULL)};
  mtev_listener_opts_t ot = {
      .address = "127.0.0.1",
      .aco_function = echo4,
      .config = table(&tc, "tls", "1", NULL),
      .ssl = mtev_true,
      .sslconfig = table(&ts, "certificate_file", C->srv, "key_file",
                         C->srv_key, NULL)};
  mtev_listener_t *lp = lt_make(&op), *lt = lt_make(&ot);
  mtev_hash_destroy(&pc, NULL, NULL);
  mtev_hash_destroy(&tc, NULL, NULL);
  mtev_hash_destroy(&ts, NULL, NULL);
  plain_client(lp);
  tls_client(lt);
  lt_wait_for(both_served, NULL, 10000, "both services to end");
  T_EQ(LOADA(&seen_may_wait[0]), 1);
  T_EQ(LOADA(&seen_may_wait[1]), 0);
  mtev_listener_release(lp);
  mtev_listener_release(lt);
}

static void test_reads_plain_and_tls(void) {
  C = t_certs_get();
  lt_run(2, body);
}

T_MAIN({"reads_plain_and_tls", test_reads_plain_and_tls})
