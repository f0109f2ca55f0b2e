/*
 * test_eventer_ssl_settings.c - libmtev's settings-table calls of the TLS
 * opset: eventer_ssl_ctx_new_ex (its keys and their aliases, crl, alpn,
 * errors with eventer_ssl_ctx_new_error), eventer_ssl_verify_cert with its
 * options (optional_no_ca, ignore_dates, client_cert), eventer_ssl_use_crl,
 * eventer_ssl_ctx_fail, and default_ca_chain for clients.  Both ends are
 * our own contexts on a socketpair, each in a coroutine of one loop.
 */
#include "ssltest.h"

static const t_certs_t *C;

/* A settings table of NULL-terminated key, value pairs (borrowed
 * strings: destroy with NULL free functions). */
static mtev_hash_table *table(const char *k, ...) {
  static mtev_hash_table tabs[8];
  static int next;
  mtev_hash_table *h = &tabs[next++ % 8];
  mtev_hash_destroy(h, NULL, NULL);
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

static void free_tables(void) {
  for (int i = 0; i < 8; i++) table(NULL);
}

static eventer_ssl_ctx_t *server(mtev_hash_table *h) {
  return eventer_ssl_ctx_new_ex(SSL_SERVER, h);
}

/* a client trusting the test CA, with the certificate cert (NULL: none) */
static eventer_ssl_ctx_t *client(const char *cert) {
  return eventer_ssl_ctx_new_ex(
      SSL_CLIENT, cert ? table("ca_chain", C->ca, "certificate_file", cert,
                               "key_file",
                               cert == C->self ? C->self_key : C->cli_key, NULL)
                       : table("ca_chain", C->ca, NULL));
}

static void setup(void) {
  C = t_certs_get();
  ev_setup_external(1);
  t_log_capture();
}

static void teardown(void) {
  free_tables();
  t_log_release();
  ev_teardown();
}

/* ---- the keys ---------------------------------------------------------------------------- */

static void test_new_ex_keys(void) {
  setup();
  /* libmtev's key names and their aliases */
  T_EQ(t_hs_pair(server(table("certificate_file", C->srv, "key_file", C->srv_key, NULL)),
            client(NULL)), 0);
  T_EQ(t_hs_pair(server(table("certificate", C->srv, "key", C->srv_key, NULL)),
            client(NULL)), 0);
  char *pem = t_slurp(C->srv), *kpem = t_slurp(C->srv_key);
  T_EQ(t_hs_pair(server(table("certificate", pem, "key", kpem, NULL)), client(NULL)), 0);
  free(pem);
  free(kpem);
  /* ca_file is ca_chain's alias: the server asks for and checks a client
   * certificate */
  T_EQ(t_hs_pair(server(table("certificate_file", C->srv, "key_file", C->srv_key,
                         "ca_file", C->ca, NULL)),
            client(C->cli)), 0);
  T_STR_EQ(t_sv.peer_cn, "client.example");
  T_EQ(t_sv.verify, X509_V_OK);
  /* layer */
  T_EQ(t_hs_pair(server(table("certificate_file", C->srv, "key_file", C->srv_key,
                         "layer", "tlsv1.2", NULL)),
            client(NULL)), 0);
  T_EQ(eventer_ssl_get_method(NULL), -1);
  /* unknown keys are ignored: a listener's whole <sslconfig> may be passed */
  T_EQ(t_hs_pair(server(table("certificate_file", C->srv, "key_file", C->srv_key,
                         "handshake_timeout", "10", "whatever", "x", NULL)),
            client(NULL)), 0);
  teardown();
}

static void test_new_ex_errors(void) {
  setup();
  errno = 0;
  T_CHECK(eventer_ssl_ctx_new_ex(SSL_SERVER, NULL) == NULL);
  T_EQ(errno, EINVAL);
  T_CHECK(strstr(eventer_ssl_ctx_new_error(), "no settings"));
  errno = 0;
  T_CHECK(server(table("certificate_file", "/nonexistent/cert.pem", "key_file",
                       C->srv_key, NULL)) == NULL);
  T_EQ(errno, ENOENT);
  T_CHECKF(strstr(eventer_ssl_ctx_new_error(), "/nonexistent/cert.pem"), "%s",
           eventer_ssl_ctx_new_error());
  T_CHECK(t_log_has("eventer_ssl_ctx_new_ex (server): cannot read certificate file"));
  errno = 0;
  T_CHECK(server(table("certificate_file", C->srv, "key_file", C->rsa_key,
                       NULL)) == NULL);
  T_EQ(errno, EIO);
  T_CHECK(strstr(eventer_ssl_ctx_new_error(), "does not match"));
  errno = 0;
  T_CHECK(server(table("certificate_file", C->srv, "key_file", C->srv_key,
                       "layer", "sslv9", NULL)) == NULL);
  T_EQ(errno, EINVAL);
  errno = 0;
  T_CHECK(server(table("certificate_file", C->srv, "key_file", C->srv_key,
                       "alpn", "h2,,http/1.1", NULL)) == NULL);
  T_EQ(errno, EINVAL);
  T_CHECK(strstr(eventer_ssl_ctx_new_error(), "alpn"));
  errno = 0;
  T_CHECK(server(table("certificate_file", C->srv, "key_file", C->srv_key,
                       "crl", "/nonexistent/crl.pem", NULL)) == NULL);
  T_EQ(errno, ENOENT);
  errno = 0; /* a file with no CRL in it */
  T_CHECK(server(table("certificate_file", C->srv, "key_file", C->srv_key,
                       "crl", C->ca, NULL)) == NULL);
  T_EQ(errno, EIO);
  T_CHECK(strstr(eventer_ssl_ctx_new_error(), "no certificate revocation list"));
  /* a success clears the thread's error */
  eventer_ssl_ctx_t *ok = client(NULL);
  T_CHECK(ok != NULL);
  T_STR_EQ(eventer_ssl_ctx_new_error(), "");
  eventer_ssl_ctx_free(ok);
  teardown();
}

/* ---- ALPN from the settings ---------------------------------------------------------- */

static void test_new_ex_alpn(void) {
  setup();
  const char *cert = C->srv, *key = C->srv_key;
  /* the settings' names are negotiated without registration, in the
   * client's order */
  T_EQ(t_hs_pair(server(table("certificate_file", cert, "key_file", key, "alpn",
                         "x-one,x-two", NULL)),
            eventer_ssl_ctx_new_ex(SSL_CLIENT, table("ca_chain", C->ca, "alpn",
                                                     "x-three,x-two,x-one", NULL))),
       0);
  T_STR_EQ(t_sv.alpn, "x-two");
  T_STR_EQ(t_cl.alpn, "x-two");
  /* npn is alpn's alias */
  T_EQ(t_hs_pair(server(table("certificate_file", cert, "key_file", key, "npn",
                         "x-one", NULL)),
            eventer_ssl_ctx_new_ex(SSL_CLIENT, table("ca_chain", C->ca, "npn",
                                                     "x-one", NULL))),
       0);
  T_STR_EQ(t_sv.alpn, "x-one");
  /* no name in common: no protocol, the handshake goes on */
  T_EQ(t_hs_pair(server(table("certificate_file", cert, "key_file", key, "alpn",
                         "x-one", NULL)),
            eventer_ssl_ctx_new_ex(SSL_CLIENT, table("ca_chain", C->ca, "alpn",
                                                     "x-two", NULL))),
       0);
  T_STR_EQ(t_sv.alpn, "");
  /* "none": nothing, not even a registered protocol */
  eventer_ssl_alpn_register("x-reg", NULL);
  T_EQ(t_hs_pair(server(table("certificate_file", cert, "key_file", key, "alpn",
                         "none", NULL)),
            eventer_ssl_ctx_new_ex(SSL_CLIENT, table("ca_chain", C->ca, "alpn",
                                                     "x-reg", NULL))),
       0);
  T_STR_EQ(t_sv.alpn, "");
  /* no alpn key: libmtev's default list limited to registered names, so
   * an unregistered h2 is not selected, a registered http/1.1 is */
  eventer_ssl_alpn_register("http/1.1", NULL);
  T_EQ(t_hs_pair(server(table("certificate_file", cert, "key_file", key, NULL)),
            eventer_ssl_ctx_new_ex(SSL_CLIENT, table("ca_chain", C->ca, "alpn",
                                                     "h2,http/1.1", NULL))),
       0);
  T_STR_EQ(t_sv.alpn, "http/1.1");
  teardown();
}

/* ---- eventer_ssl_verify_cert ------------------------------------------------------------ */

/* a server checking client certificates with eventer_ssl_verify_cert and
 * these options (NULL: none) */
static eventer_ssl_ctx_t *verifying(mtev_hash_table *opts, int with_ca) {
  eventer_ssl_ctx_t *s = server(
      with_ca ? table("certificate_file", C->srv, "key_file", C->srv_key,
                      "ca_chain", C->ca, NULL)
              : table("certificate_file", C->srv, "key_file", C->srv_key, NULL));
  T_CHECK(s != NULL);
  eventer_ssl_ctx_set_verify(s, eventer_ssl_verify_cert, opts);
  return s;
}

static int log_lines(void) {
  pthread_mutex_lock(&t_log_lock);
  int n = t_log_lines;
  pthread_mutex_unlock(&t_log_lock);
  return n;
}

static void test_verify_cert(void) {
  setup();
  mtev_hash_table *none = table("optional_no_ca", "false", NULL);
  /* a trusted certificate */
  T_EQ(t_hs_pair(verifying(none, 1), client(C->cli)), 0);
  T_STR_EQ(t_sv.peer_cn, "client.example");
  T_EQ(t_sv.verify, X509_V_OK);
  /* no certificate: let in (libmtev), unless client_cert="required" */
  T_EQ(t_hs_pair(verifying(none, 1), client(NULL)), 0);
  T_STR_EQ(t_sv.peer_cn, "");
  int l0 = log_lines();
  T_EQ(t_hs_pair(verifying(table("client_cert", "required", NULL), 1), client(NULL)), -1);
  T_EQ(t_sv.err, EIO);
  T_CHECK(t_log_has("peer did not return a certificate"));
  T_EQ(log_lines(), l0 + 1 + (t_cl.rv != 0)); /* the server's one line, and the
                                               * client's if it saw the alert */
  /* self-signed: refused, or accepted with optional_no_ca (the verification
   * result still says why it is not trusted) */
  T_EQ(t_hs_pair(verifying(none, 1), client(C->self)), -1);
  T_EQ(t_sv.err, EIO);
  T_CHECK(t_log_has("(self-signed certificate)"));
  T_EQ(t_hs_pair(verifying(table("optional_no_ca", "true", NULL), 1), client(C->self)), 0);
  T_STR_EQ(t_sv.peer_cn, "localhost");
  T_EQ(t_sv.verify, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
  /* optional_no_ca without any CA: every certificate is judged by the
   * options alone */
  T_EQ(t_hs_pair(verifying(table("optional_no_ca", "on", NULL), 0), client(C->cli)), 0);
  T_STR_EQ(t_sv.peer_cn, "client.example");
  /* expired: refused, or accepted with ignore_dates */
  T_EQ(t_hs_pair(verifying(none, 1), client(C->cli_exp)), -1);
  T_CHECK(t_log_has("(certificate has expired)"));
  T_EQ(t_hs_pair(verifying(table("ignore_dates", "true", NULL), 1), client(C->cli_exp)), 0);
  T_EQ(t_sv.verify, X509_V_ERR_CERT_HAS_EXPIRED);
  /* optional_no_ca does not excuse dates, nor ignore_dates trust */
  T_EQ(t_hs_pair(verifying(table("optional_no_ca", "true", NULL), 1), client(C->cli_exp)),
       -1);
  T_EQ(t_hs_pair(verifying(table("ignore_dates", "true", NULL), 1), client(C->self)), -1);
  /* NULL options: trust and dates are not checked (libmtev) */
  T_EQ(t_hs_pair(verifying(NULL, 1), client(C->self)), 0);
  T_EQ(t_hs_pair(verifying(NULL, 1), client(C->cli_exp)), 0);
  /* called directly */
  T_EQ(eventer_ssl_verify_cert(NULL, 1, NULL, NULL), 0);
  teardown();
}

/* ---- CRLs -------------------------------------------------------------------------------- */

static void test_crl(void) {
  setup();
  mtev_hash_table *with_crl = table("certificate_file", C->srv, "key_file",
                                    C->srv_key, "ca_chain", C->ca, "crl",
                                    C->crl, NULL);
  /* the crl setting */
  T_EQ(t_hs_pair(server(with_crl), client(C->cli)), 0);
  T_EQ(t_hs_pair(server(with_crl), client(C->rev)), -1);
  T_EQ(t_sv.err, EIO);
  T_CHECK(t_log_has("(certificate revoked)"));
  /* eventer_ssl_use_crl: this connection only */
  mtev_hash_table *plain = table("certificate_file", C->srv, "key_file",
                                 C->srv_key, "ca_chain", C->ca, NULL);
  T_EQ(t_hs_pair(server(plain), client(C->rev)), 0); /* no CRL: let in */
  eventer_ssl_ctx_t *s = server(plain);
  T_EQ(eventer_ssl_use_crl(s, C->crl), 1);
  T_EQ(eventer_ssl_use_crl(s, C->crl), 1); /* again: no harm */
  T_EQ(t_hs_pair(s, client(C->rev)), -1);
  s = server(plain);
  T_EQ(eventer_ssl_use_crl(s, C->crl), 1);
  T_EQ(t_hs_pair(s, client(C->cli)), 0);
  /* the CRL sits in the shared store, unused by contexts that do not
   * check CRLs */
  T_EQ(t_hs_pair(server(plain), client(C->rev)), 0);
  /* errors */
  s = server(plain);
  errno = 0;
  T_EQ(eventer_ssl_use_crl(s, "/nonexistent/crl.pem"), 0);
  T_EQ(errno, ENOENT);
  errno = 0;
  T_EQ(eventer_ssl_use_crl(s, C->ca), 0);
  T_EQ(errno, EIO);
  T_CHECK(t_log_has("eventer_ssl_use_crl: no certificate revocation list in"));
  errno = 0;
  T_EQ(eventer_ssl_use_crl(NULL, C->crl), 0);
  T_EQ(errno, EINVAL);
  T_EQ(eventer_ssl_use_crl(s, NULL), 0);
  eventer_ssl_ctx_free(s);
  teardown();
}

/* ---- eventer_ssl_ctx_fail --------------------------------------------------------------- */

static void test_ctx_fail(void) {
  setup();
  /* with a reason: one line now, EIO from then on, no second line */
  eventer_ssl_ctx_t *s = server(table("certificate_file", C->srv, "key_file",
                                      C->srv_key, NULL));
  eventer_ssl_ctx_t *c = client(NULL);
  struct sockaddr_in peer = t_addr(4242);
  eventer_ssl_ctx_set_peer(s, (struct sockaddr *)&peer, sizeof(peer));
  int l0 = log_lines();
  eventer_ssl_ctx_fail(s, "handshake timed out after 7 ms");
  T_EQ(log_lines(), l0 + 1);
  T_CHECK(t_log_has("TLS accept from 127.0.0.1:4242 (fd -1) failed: handshake "
                    "timed out after 7 ms"));
  T_STR_EQ(eventer_ssl_get_last_error(s), "handshake timed out after 7 ms");
  eventer_ssl_ctx_fail(s, "again"); /* failed already: nothing */
  T_EQ(log_lines(), l0 + 1);
  T_EQ(t_hs_pair(s, c), -1);
  T_EQ(t_sv.err, EIO);
  T_EQ(log_lines(), l0 + 1 + (t_cl.rv != 0)); /* the client may see EOF */
  /* without a reason: silent, now and later */
  s = server(table("certificate_file", C->srv, "key_file", C->srv_key, NULL));
  c = client(NULL);
  eventer_ssl_ctx_fail(s, NULL);
  int l1 = log_lines();
  T_EQ(t_hs_pair(s, c), -1);
  T_EQ(t_sv.err, EIO);
  T_EQ(log_lines(), l1 + (t_cl.rv != 0));
  eventer_ssl_ctx_fail(NULL, "x"); /* harmless */
  teardown();
}

/* ---- default_ca_chain --------------------------------------------------------------------- */

static void test_default_ca_chain(void) {
  C = t_certs_get();
  /* without it (and no CA) a client checks against the system's store,
   * which does not know the test CA */
  ev_setup_external(1);
  t_log_capture();
  T_EQ(t_hs_pair(server(table("certificate_file", C->srv, "key_file", C->srv_key, NULL)),
            eventer_ssl_ctx_new_ex(SSL_CLIENT, table("layer", "tlsv1.3", NULL))),
       -1);
  T_EQ(t_cl.err, EIO);
  T_CHECK(t_log_has("unable to get local issuer certificate"));
  teardown();
  T_EQ(eventer_impl_propset("default_ca_chain", C->ca), 0);
  ev_setup_external(1);
  t_log_capture();
  T_EQ(t_hs_pair(server(table("certificate_file", C->srv, "key_file", C->srv_key, NULL)),
            eventer_ssl_ctx_new_ex(SSL_CLIENT, table("layer", "tlsv1.3", NULL))),
       0);
  T_STR_EQ(t_cl.peer_cn, "localhost");
  /* the legacy form too; an explicit CA still wins */
  T_EQ(t_hs_pair(server(table("certificate_file", C->srv, "key_file", C->srv_key, NULL)),
            eventer_ssl_ctx_new(SSL_CLIENT, NULL, NULL, NULL, NULL, NULL)),
       0);
  T_EQ(t_hs_pair(server(table("certificate_file", C->srv, "key_file", C->srv_key, NULL)),
            eventer_ssl_ctx_new(SSL_CLIENT, NULL, NULL, NULL, C->self, NULL)),
       -1);
  teardown(); /* eventer_fini forgets the setting */
}

T_MAIN({"new_ex_keys", test_new_ex_keys},
       {"new_ex_errors", test_new_ex_errors},
       {"new_ex_alpn", test_new_ex_alpn},
       {"verify_cert", test_verify_cert},
       {"crl", test_crl},
       {"ctx_fail", test_ctx_fail},
       {"default_ca_chain", test_default_ca_chain})
