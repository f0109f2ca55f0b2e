/*
 * test_eventer_ssl.c - the TLS opset against peers no one here wrote
 * (`openssl s_client` and `openssl s_server` as child processes):
 * classic callbacks and coroutines, TLS 1.2 and 1.3, ALPN, SNI (client
 * side and server-side certificate selection), client-certificate
 * verification, server-side session resumption, the peer's certificate
 * and chain, TLS 1.3 key updates, reads that wait for WRITE and writes
 * that wait for READ, full duplex over one TLS event, handshake timeouts,
 * context errors and teardown at awkward moments; on the client side the
 * server name checked (by name and address) and a session resumed.
 */
#include "ssltest.h"

#include "eventer_impl.h"

#include <openssl/err.h>
#include <poll.h>

static const t_certs_t *C;

static int dummy_cb(eventer_t e, int m, void *c, struct timeval *n) {
  (void)e, (void)m, (void)c, (void)n;
  return 0;
}

static void setup(void) {
  C = t_certs_get();
  ev_setup_external(1);
  t_log_capture();
}

static void teardown(void) {
  t_log_release();
  ev_teardown();
}

/* ---- a recording opset: which masks TLS reads and writes waited for ----- */

static int rec_read_waits, rec_write_waits; /* OR of the masks returned */
static struct _fd_opset rec_opset;

static int rec_read(int fd, void *buf, size_t len, int *mask, void *closure) {
  int rv = eventer_SSL_fd_opset->read(fd, buf, len, mask, closure);
  if (rv < 0 && errno == EAGAIN)
    __atomic_or_fetch(&rec_read_waits, *mask, __ATOMIC_RELEASE);
  return rv;
}

static int rec_write(int fd, const void *buf, size_t len, int *mask,
                     void *closure) {
  int rv = eventer_SSL_fd_opset->write(fd, buf, len, mask, closure);
  if (rv < 0 && errno == EAGAIN) rec_write_waits |= *mask;
  return rv;
}

static void rec_install(eventer_t e) {
  rec_opset = *eventer_SSL_fd_opset;
  rec_opset.read = rec_read;
  rec_opset.write = rec_write;
  rec_opset.name = "SSL-recording";
  rec_read_waits = rec_write_waits = 0;
  eventer_set_fd_opset(e, &rec_opset);
}

/* ---- a coroutine TLS server: uppercases what it reads ---------------------- */

typedef struct {
  const char *layer, *cert, *key, *ca;
  eventer_ssl_verify_func_t verify;
  int sni_select;            /* pick a.example / b.example by SNI */
  const char *alpn;          /* eventer_ssl_alpn_advertise (NULL: default) */
  eventer_SSL_alpn_func_t h2f; /* per-context "h2" function (if set) */
  int hs_timeout_ms;         /* 0: 10 s */
  int implicit;              /* no explicit accept: the first read does it */
  int recording;             /* the recording opset under the aco layer */
  int sndbuf;                /* SO_SNDBUF for accepted sockets (0: keep) */
  int tiny_reads;            /* read 1 byte at a time, eventer_aco_wait_ready
                              * (READ) before each read after the first */
} srv_cfg_t;

typedef struct {
  int conns, done, hs_ok, hs_fail, hs_errno;
  int method, reused, chain_len, peer_cert;
  long verify;
  time_t start, end;
  char alpn[32], sni[64], local_cn[64], peer_cn[64], subject[256],
      issuer[256], san[256], chain0[256], peer_error[512], last_error[512];
  int reneg_rv, reneg_errno;
  int ctx_via_aco;           /* eventer_get_eventer_ssl_ctx on the aco event */
} srv_res_t;

static srv_cfg_t S;
static srv_res_t R;
static eventer_ssl_ctx_t *sni_a, *sni_b;

static eventer_ssl_ctx_t *sni_pick(eventer_ssl_ctx_t *ctx, const char *name,
                                   void *closure) {
  (void)ctx, (void)closure;
  if (!strcmp(name, "a.example")) return sni_a;
  if (!strcmp(name, "b.example")) return sni_b;
  return NULL;
}

static void copy_str(char *dst, size_t len, const char *s) {
  snprintf(dst, len, "%s", s ? s : "");
}

static void srv_record(eventer_ssl_ctx_t *ctx) {
  R.method = eventer_ssl_get_method(ctx);
  R.reused = eventer_ssl_session_reused(ctx);
  R.verify = eventer_ssl_get_verify_result(ctx);
  const uint8_t *alpn;
  uint8_t alen;
  eventer_ssl_get_alpn_selected(ctx, &alpn, &alen);
  snprintf(R.alpn, sizeof(R.alpn), "%.*s", (int)alen, alpn ? (const char *)alpn : "");
  copy_str(R.sni, sizeof(R.sni), eventer_ssl_get_sni_name(ctx));
  if (eventer_ssl_get_local_commonname(ctx, R.local_cn, sizeof(R.local_cn)) < 0)
    R.local_cn[0] = 0;
  if (eventer_ssl_get_peer_commonname(ctx, R.peer_cn, sizeof(R.peer_cn)) < 0)
    R.peer_cn[0] = 0;
  copy_str(R.subject, sizeof(R.subject), eventer_ssl_get_peer_subject(ctx));
  copy_str(R.issuer, sizeof(R.issuer), eventer_ssl_get_peer_issuer(ctx));
  copy_str(R.san, sizeof(R.san), eventer_ssl_get_peer_san_list(ctx));
  X509 *peer = eventer_ssl_get_peer_certificate(ctx);
  R.peer_cert = peer != NULL;
  X509_free(peer);
  STACK_OF(X509) *chain = eventer_ssl_get_peer_cert_chain(ctx);
  R.chain_len = chain ? sk_X509_num(chain) : 0;
  R.chain0[0] = 0;
  if (R.chain_len)
    X509_NAME_oneline(X509_get_subject_name(sk_X509_value(chain, 0)), R.chain0,
                      sizeof(R.chain0));
  R.start = eventer_ssl_get_peer_start_time(ctx);
  R.end = eventer_ssl_get_peer_end_time(ctx);
}

static void upcase(char *p, int n) {
  for (int i = 0; i < n; i++)
    if (p[i] >= 'a' && p[i] <= 'z') p[i] = (char)(p[i] - 'a' + 'A');
}

static int aco_write_all(eventer_aco_t e, const char *p, int n) {
  while (n > 0) {
    struct timeval tmo = t_ms(20000);
    int w = eventer_aco_write(e, p, (size_t)n, &tmo);
    if (w <= 0) return -1;
    p += w;
    n -= w;
  }
  return 0;
}

static void srv_conn(void) {
  int fd = (int)(intptr_t)eventer_aco_arg();
  if (S.sndbuf)
    T_EQ(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &S.sndbuf, sizeof(S.sndbuf)), 0);
  eventer_ssl_ctx_t *ctx =
      eventer_ssl_ctx_new(SSL_SERVER, S.layer, S.cert ? S.cert : C->srv,
                          S.key ? S.key : C->srv_key, S.ca, NULL);
  T_CHECK(ctx != NULL);
  if (S.verify) eventer_ssl_ctx_set_verify(ctx, S.verify, NULL);
  if (S.sni_select) eventer_ssl_ctx_set_sni_select(ctx, sni_pick, NULL);
  if (S.alpn) T_EQ(eventer_ssl_alpn_advertise(ctx, S.alpn), 0);
  if (S.h2f) eventer_ssl_ctx_alpn_register(ctx, "h2", S.h2f);
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, fd, EVENTER_READ);
  T_CHECK(e != NULL);
  EVENTER_ATTACH_SSL(e, ctx);
  T_PTR_EQ(eventer_get_fd_opset(e), eventer_SSL_fd_opset);
  T_PTR_EQ(eventer_get_eventer_ssl_ctx(e), ctx);
  if (S.recording) rec_install(e);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  T_CHECK(ae != NULL);
  /* the context stays reachable under the coroutine layer's opset */
  R.ctx_via_aco = eventer_get_eventer_ssl_ctx((eventer_t)ae) == ctx;
  R.conns++;
  if (!S.implicit) {
    struct timeval tmo = t_ms(S.hs_timeout_ms ? S.hs_timeout_ms : 10000);
    if (eventer_aco_ssl_accept(ae, &tmo) != 0) {
      R.hs_errno = errno;
      R.hs_fail++;
      copy_str(R.last_error, sizeof(R.last_error), eventer_ssl_get_last_error(ctx));
      copy_str(R.peer_error, sizeof(R.peer_error), eventer_ssl_get_peer_error(ctx));
      /* a failed connection refuses further I/O */
      char b[8];
      if (R.hs_errno == EIO) T_ERRNO(eventer_aco_read(ae, b, sizeof(b), NULL), EIO);
      T_EQ(eventer_aco_close(ae), 0);
      eventer_aco_free(ae);
      R.done++;
      return;
    }
    R.hs_ok++;
    srv_record(ctx);
  }
  char buf[4096];
  int first = 1;
  for (;;) {
    struct timeval tmo = t_ms(20000);
    if (S.tiny_reads && !first && eventer_aco_wait_ready(ae, EVENTER_READ, &tmo) != 0) break;
    int n = eventer_aco_read(ae, buf, S.tiny_reads ? 1 : sizeof(buf), &tmo);
    if (n < 0 && first && S.implicit) {
      R.hs_errno = errno;
      R.hs_fail++;
      break;
    }
    if (n <= 0) break;
    if (first && S.implicit) {
      R.hs_ok++;
      srv_record(ctx);
    }
    first = 0;
    if (memmem(buf, (size_t)n, "three", 5)) {
      R.reneg_rv = eventer_SSL_renegotiate((eventer_t)ae);
      R.reneg_errno = errno;
    }
    upcase(buf, n);
    if (aco_write_all(ae, buf, n) != 0) break;
  }
  T_EQ(eventer_aco_close(ae), 0);
  eventer_aco_free(ae);
  R.done++;
}

static int L_fd, L_done;
static eventer_aco_co_t *L_h;

static void srv_listener(void) {
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, L_fd, EVENTER_READ);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  T_CHECK(ae != NULL);
  for (;;) {
    int fd = eventer_aco_accept(ae, NULL, NULL, NULL);
    if (fd < 0) {
      T_EQ(errno, ECANCELED);
      break;
    }
    eventer_aco_start(srv_conn, (void *)(intptr_t)fd);
  }
  eventer_aco_close(ae);
  eventer_aco_free(ae);
  L_done = 1;
}

static int srv_start(void) {
  int port;
  memset(&R, 0, sizeof(R));
  L_fd = t_listen(&port);
  L_done = 0;
  L_h = eventer_aco_spawn(srv_listener, NULL, NULL);
  T_CHECK(L_h != NULL);
  return port;
}

static void srv_stop(void) {
  T_EQ(eventer_aco_cancel(L_h), 0);
  t_spin(&L_done, 1, 5000);
  eventer_aco_co_release(L_h);
}

/* openssl s_client to port with extra arguments (NULL-terminated). */
static t_child_t *s_client(int port, const char *const *extra) {
  static char connect[64];
  snprintf(connect, sizeof(connect), "127.0.0.1:%d", port);
  const char *argv[48] = {"openssl", "s_client", "-connect", connect,
                          "-CAfile", C->ca, "-verify_return_error"};
  int n = 7;
  for (int i = 0; extra && extra[i]; i++) argv[n++] = extra[i];
  argv[n] = NULL;
  t_child_t *c = calloc(1, sizeof(*c));
  T_CHECK(c != NULL);
  t_child_start(c, (char *const *)argv);
  return c;
}

/* want must not occur in s_client's own output (its "Compression: NONE"
 * holds "ONE"): found there, it would let the next line go out before
 * s_client read this one, and s_client would read both at once. */
static void echo_once(t_child_t *c, const char *line, const char *want) {
  t_child_send(c, line);
  t_child_expect(c, want, 20000);
}

/* want_status -1: any (a failed handshake's exit status is s_client's
 * business) */
static void finish_client(t_child_t *c, int want_status) {
  t_child_close_in(c);
  int st = t_child_wait(c, 20000);
  if (want_status >= 0 && st != want_status)
    T_FAIL("s_client exited %d, want %d; output:\n%s", st, want_status, c->buf);
  free(c);
}

/* ---- context errors --------------------------------------------------------------- */

static void test_ctx_errors(void) {
  setup();
  eventer_ssl_ctx_t *ctx;
  errno = 0;
  T_CHECK(eventer_ssl_ctx_new(SSL_SERVER, "tlsv9", C->srv, C->srv_key, NULL,
                              NULL) == NULL);
  T_EQ(errno, EINVAL);
  T_CHECK(t_log_has("unknown TLS layer \"tlsv9\""));
  T_CHECK(eventer_ssl_ctx_new(SSL_SERVER, "tlsv1.2:bogus", C->srv, C->srv_key,
                              NULL, NULL) == NULL);
  T_EQ(errno, EINVAL);
  T_CHECK(t_log_has("unknown TLS layer option \"bogus\""));
  T_CHECK(eventer_ssl_ctx_new((eventer_ssl_orientation_t)7, NULL, NULL, NULL,
                              NULL, NULL) == NULL);
  T_EQ(errno, EINVAL);
  T_CHECK(eventer_ssl_ctx_new(SSL_SERVER, NULL, NULL, NULL, NULL, NULL) == NULL);
  T_EQ(errno, EINVAL);
  T_CHECK(t_log_has("a server context needs a certificate"));
  T_CHECK(eventer_ssl_ctx_new(SSL_CLIENT, NULL, C->cli, NULL, NULL, NULL) == NULL);
  T_EQ(errno, EINVAL);
  T_CHECK(eventer_ssl_ctx_new(SSL_SERVER, NULL, "/nonexistent/cert.pem",
                              C->srv_key, NULL, NULL) == NULL);
  T_EQ(errno, ENOENT);
  T_CHECK(t_log_has("cannot read certificate file /nonexistent/cert.pem"));
  T_CHECK(eventer_ssl_ctx_new(SSL_SERVER, NULL, C->srv, C->a_key, NULL, NULL) ==
          NULL);
  T_EQ(errno, EIO);
  T_CHECK(t_log_has("key values mismatch"));
  T_CHECK(eventer_ssl_ctx_new(SSL_SERVER, NULL,
                              "-----BEGIN CERTIFICATE-----\nnot base64\n"
                              "-----END CERTIFICATE-----\n",
                              C->srv_key, NULL, NULL) == NULL);
  T_EQ(errno, EIO);
  T_CHECK(eventer_ssl_ctx_new(SSL_SERVER, NULL, C->srv, C->srv_key, NULL,
                              "NO-SUCH-CIPHER") == NULL);
  T_EQ(errno, EINVAL);
  T_CHECK(eventer_ssl_ctx_new(SSL_SERVER, NULL, C->srv, C->srv_key, NULL,
                              "TLS_NO_SUCH_SUITE") == NULL);
  T_EQ(errno, EINVAL);
  T_CHECK(eventer_ssl_ctx_new(SSL_CLIENT, NULL, NULL, NULL, "/nonexistent/ca",
                              NULL) == NULL);
  T_EQ(errno, ENOENT);

  /* PEM text instead of paths; a cipher setting with both kinds */
  char *cert = t_slurp(C->srv), *key = t_slurp(C->srv_key), *ca = t_slurp(C->ca);
  ctx = eventer_ssl_ctx_new(SSL_SERVER, "tlsv1.3:all,cipher_server_preference",
                            cert, key, ca,
                            "ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256");
  T_CHECK(ctx != NULL);
  free(cert);
  free(key);
  free(ca);

  /* a context before any handshake */
  T_EQ(eventer_ssl_get_method(ctx), 0);
  T_PTR_EQ(eventer_ssl_get_peer_subject(ctx), NULL);
  T_PTR_EQ(eventer_ssl_get_peer_cert_chain(ctx), NULL);
  T_PTR_EQ(eventer_ssl_get_current_cipher(ctx), NULL);
  char cn[64];
  T_EQ(eventer_ssl_get_local_commonname(ctx, cn, sizeof(cn)), 9);
  T_STR_EQ(cn, "localhost");
  T_EQ(eventer_ssl_get_peer_commonname(ctx, cn, sizeof(cn)), -1);

  /* ALPN lists */
  T_ERRNO(eventer_ssl_alpn_advertise(ctx, "h2,,http/1.1"), EINVAL);
  T_ERRNO(eventer_ssl_alpn_advertise(ctx, "h2,"), EINVAL);
  char longname[300];
  memset(longname, 'x', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = 0;
  T_ERRNO(eventer_ssl_alpn_advertise(ctx, longname), EINVAL);
  T_EQ(eventer_ssl_alpn_advertise(ctx, "h2,http/1.1"), 0);
  T_EQ(eventer_ssl_alpn_advertise(ctx, "none"), 0);
  T_ERRNO(eventer_ssl_alpn_advertise(NULL, "h2"), EINVAL);

  /* attaching */
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  eventer_t nofd = eventer_alloc();
  T_ERRNO(eventer_set_eventer_ssl_ctx_ex(nofd, ctx), EINVAL);
  T_ERRNO(eventer_set_eventer_ssl_ctx_ex(NULL, ctx), EINVAL);
  eventer_free(nofd);
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, sv[0], EVENTER_READ);
  T_ERRNO(eventer_set_eventer_ssl_ctx_ex(e, NULL), EINVAL);
  T_EQ(eventer_set_eventer_ssl_ctx_ex(e, ctx), 0);
  eventer_ssl_ctx_t *ctx2 =
      eventer_ssl_ctx_new(SSL_SERVER, NULL, C->srv, C->srv_key, NULL, NULL);
  T_CHECK(ctx2 != NULL);
  T_ERRNO(eventer_set_eventer_ssl_ctx_ex(e, ctx2), EBUSY);
  eventer_t e2 = eventer_alloc_fd(dummy_cb, NULL, sv[1], EVENTER_READ);
  T_ERRNO(eventer_set_eventer_ssl_ctx_ex(e2, ctx), EINVAL); /* ctx is e's */
  /* the void form logs its refusal */
  EVENTER_ATTACH_SSL(e2, ctx);
  T_CHECK(t_log_has("eventer_set_eventer_ssl_ctx(fd"));
  T_PTR_EQ(eventer_get_eventer_ssl_ctx(e2), NULL);
  eventer_ssl_ctx_free(ctx2);
  eventer_ssl_ctx_free(NULL);

  /* wrong orientation, accept on the TLS opset, renegotiate too early */
  int mask = 0;
  T_ERRNO(eventer_SSL_connect(e, &mask), EINVAL);
  T_ERRNO(eventer_accept(e, NULL, NULL, &mask), EOPNOTSUPP);
  T_ERRNO(eventer_SSL_renegotiate(e), EINVAL);
  T_ERRNO(eventer_SSL_accept(e2, &mask), EINVAL); /* no context */
  /* nothing to read yet: the handshake waits for READ */
  mask = 0;
  T_ERRNO(eventer_SSL_accept(e, &mask), EAGAIN);
  T_EQ(mask, EVENTER_READ | EVENTER_EXCEPTION);
  char b[4];
  mask = 0;
  T_ERRNO(eventer_read(e, b, sizeof(b), &mask), EAGAIN);
  T_EQ(mask, EVENTER_READ | EVENTER_EXCEPTION);
  T_EQ(eventer_read(e, b, 0, &mask), 0);

  /* garbage from the peer: EIO, one log line naming the peer */
  int lines = t_log_lines;
  T_EQ(write(sv[1], "GET / HTTP/1.0\r\n\r\n", 18), 18);
  T_ERRNO(eventer_SSL_accept(e, &mask), EIO);
  T_ERRNO(eventer_read(e, b, sizeof(b), &mask), EIO); /* stays failed */
  T_ERRNO(eventer_write(e, "x", 1, &mask), EIO);
  T_EQ(t_log_lines, lines + 1);
  T_CHECK(t_log_has("TLS accept from unix:(unnamed) (fd"));
  T_CHECK(t_log_has("http request"));
  T_CHECK(strstr(eventer_ssl_get_last_error(ctx), "http request") != NULL);

  /* a copy does not share the TLS session */
  eventer_t cp = eventer_alloc_copy(e);
  T_PTR_EQ(eventer_get_eventer_ssl_ctx(cp), NULL);
  T_ERRNO(eventer_read(cp, b, sizeof(b), &mask), EINVAL);
  eventer_free(cp);

  /* freeing an attached context detaches it */
  eventer_ssl_ctx_free(ctx);
  T_PTR_EQ(eventer_get_eventer_ssl_ctx(e), NULL);
  T_ERRNO(eventer_read(e, b, sizeof(b), &mask), EINVAL);
  T_EQ(eventer_close(e, &mask), 0); /* still closes the fd */
  eventer_free(e);

  /* an event freed with its context attached frees it (ASan/valgrind) */
  ctx = eventer_ssl_ctx_new(SSL_CLIENT, NULL, NULL, NULL, C->ca, NULL);
  T_CHECK(ctx != NULL);
  EVENTER_ATTACH_SSL(e2, ctx);
  T_PTR_EQ(eventer_get_eventer_ssl_ctx(e2), ctx);
  eventer_free(e2);
  close(sv[1]);

  /* settings */
  T_EQ(eventer_ssl_config("ssl_ctx_cache_expiry", "0"), 0);
  T_EQ(eventer_ssl_config("ssl_dhparam2048_file", "x"), 1);
  teardown();
}

/* ---- the SSL_CTX cache follows its files ------------------------------------------ */

static void cp_file(const char *from, const char *to) {
  char *text = t_slurp(from);
  char tmp[400];
  snprintf(tmp, sizeof(tmp), "%s.new", to);
  t_write_file(tmp, text);
  T_EQ(rename(tmp, to), 0); /* a new inode, as a certificate rotation */
  free(text);
}

static const char *local_cn(eventer_ssl_ctx_t *ctx) {
  static char cn[64];
  T_CHECK(ctx != NULL);
  if (eventer_ssl_get_local_commonname(ctx, cn, sizeof(cn)) < 0) cn[0] = 0;
  return cn;
}

static void test_ctx_cache_rebuild(void) {
  setup();
  char cert[400], key[400];
  snprintf(cert, sizeof(cert), "%s/rot.pem", C->dir);
  snprintf(key, sizeof(key), "%s/rot.key", C->dir);
  cp_file(C->srv, cert);
  cp_file(C->srv_key, key);
  eventer_ssl_ctx_t *c1 = eventer_ssl_ctx_new(SSL_SERVER, NULL, cert, key, NULL, NULL);
  T_STR_EQ(local_cn(c1), "localhost");
  /* rotated files: seen at the next check (every call here) */
  T_EQ(eventer_ssl_config("ssl_ctx_cache_finfo_expiry", "0"), 0);
  cp_file(C->a, cert);
  cp_file(C->a_key, key);
  eventer_ssl_ctx_t *c2 = eventer_ssl_ctx_new(SSL_SERVER, NULL, cert, key, NULL, NULL);
  T_STR_EQ(local_cn(c2), "a.example");
  T_STR_EQ(local_cn(c1), "localhost"); /* the old one lives on for its users */
  /* unchanged: the cached one */
  eventer_ssl_ctx_t *c3 = eventer_ssl_ctx_new(SSL_SERVER, NULL, cert, key, NULL, NULL);
  T_STR_EQ(local_cn(c3), "a.example");
  /* by age */
  T_EQ(eventer_ssl_config("ssl_ctx_cache_finfo_expiry", "3600"), 0);
  eventer_ssl_set_ssl_ctx_cache_expiry(3); /* the entry is c2's: seconds
                                           * old at most on a busy machine */
  cp_file(C->b, cert);
  cp_file(C->b_key, key);
  eventer_ssl_ctx_free(c3);
  c3 = eventer_ssl_ctx_new(SSL_SERVER, NULL, cert, key, NULL, NULL);
  T_STR_EQ(local_cn(c3), "a.example"); /* not old enough, no file check */
  usleep(3100000);
  eventer_ssl_ctx_t *c4 = eventer_ssl_ctx_new(SSL_SERVER, NULL, cert, key, NULL, NULL);
  T_STR_EQ(local_cn(c4), "b.example");
  /* a rotation to a broken pair fails clearly and does not stick */
  eventer_ssl_set_ssl_ctx_cache_expiry(0);
  T_EQ(eventer_ssl_config("ssl_ctx_cache_finfo_expiry", "0"), 0);
  cp_file(C->srv_key, key); /* b's certificate, localhost's key */
  T_CHECK(eventer_ssl_ctx_new(SSL_SERVER, NULL, cert, key, NULL, NULL) == NULL);
  T_EQ(errno, EIO);
  cp_file(C->b_key, key);
  eventer_ssl_ctx_t *c5 = eventer_ssl_ctx_new(SSL_SERVER, NULL, cert, key, NULL, NULL);
  T_STR_EQ(local_cn(c5), "b.example");
  T_EQ(eventer_ssl_config("ssl_ctx_cache_finfo_expiry", "5"), 0);
  eventer_ssl_ctx_t *all[] = {c1, c2, c3, c4, c5};
  for (int i = 0; i < 5; i++) eventer_ssl_ctx_free(all[i]);
  teardown();
}

/* ---- coroutine server, openssl s_client, TLS 1.2 and 1.3 -------------------------- */

static void aco_echo(const char *layer, const char *vflag, int version) {
  setup();
  memset(&S, 0, sizeof(S));
  S.layer = layer;
  int port = srv_start();
  t_child_t *c = s_client(port, (const char *[]){vflag, "-servername",
                                                 "localhost", NULL});
  echo_once(c, "hello tls\n", "HELLO TLS");
  echo_once(c, "thanks!\n", "THANKS!");
  finish_client(c, 0);
  t_spin(&R.done, 1, 10000);
  T_EQ(R.hs_ok, 1);
  T_CHECK(R.ctx_via_aco);
  T_EQ(R.method, version);
  T_STR_EQ(R.sni, "localhost");
  T_STR_EQ(R.local_cn, "localhost");
  T_EQ(R.peer_cert, 0); /* no client certificate was asked for */
  T_EQ(R.chain_len, 0);
  T_EQ(R.reused, 0);
  srv_stop();
  T_EQ(t_log_lines, 0); /* nothing failed, nothing logged */
  teardown();
}

/* eventer_aco_wait_ready(READ) after a read that took part of a record:
 * the rest is in OpenSSL's buffer, not on the socket, and the wait returns
 * at once (it waited for the socket, so the line was never echoed whole) */
static void test_wait_ready_buffered(void) {
  setup();
  memset(&S, 0, sizeof(S));
  S.tiny_reads = 1;
  int port = srv_start();
  t_child_t *c = s_client(port, (const char *[]){"-tls1_3", NULL});
  echo_once(c, "hello tls\n", "HELLO TLS");
  echo_once(c, "byte by byte\n", "BYTE BY BYTE");
  finish_client(c, 0);
  t_spin(&R.done, 1, 10000);
  T_EQ(R.hs_ok, 1);
  srv_stop();
  T_EQ(t_log_lines, 0);
  teardown();
}

static void test_aco_tls12(void) { aco_echo("tlsv1.2", "-tls1_2", TLS1_2_VERSION); }
static void test_aco_tls13(void) { aco_echo(NULL, "-tls1_3", TLS1_3_VERSION); }

/* a server limited to TLS 1.3 refuses a TLS 1.2-only client, and says so */
static void test_version_mismatch(void) {
  setup();
  memset(&S, 0, sizeof(S));
  S.layer = "tlsv1.3";
  int port = srv_start();
  t_child_t *c = s_client(port, (const char *[]){"-tls1_2", NULL});
  finish_client(c, -1);
  t_spin(&R.done, 1, 10000);
  T_EQ(R.hs_fail, 1);
  T_EQ(R.hs_errno, EIO);
  T_CHECK(strstr(R.last_error, "unsupported protocol") != NULL);
  T_CHECK(t_log_has("TLS accept from 127.0.0.1:"));
  T_EQ(t_log_lines, 1);
  srv_stop();
  teardown();
}

/* an RSA certificate works as well as an EC one */
static void test_rsa_cert(void) {
  setup();
  memset(&S, 0, sizeof(S));
  S.cert = C->rsa;
  S.key = C->rsa_key;
  int port = srv_start();
  t_child_t *c = s_client(port, (const char *[]){"-tls1_2", NULL});
  echo_once(c, "rsa key\n", "RSA KEY");
  t_child_expect(c, "Peer signature type: RSA", 1000);
  finish_client(c, 0);
  t_spin(&R.done, 1, 10000);
  T_EQ(R.hs_ok, 1);
  srv_stop();
  teardown();
}

/* ---- classic callbacks ----------------------------------------------------------------- */

typedef struct {
  int handshaken;
  char pend[4096];
  int plen, poff;
} classic_conn_t;

static int classic_done, classic_method, classic_hs_ok, classic_rounds;

/* The handshake, then an uppercasing echo, as fd callbacks that return the
 * mask the TLS opset asks for. */
static int classic_conn_cb(eventer_t e, int mask, void *closure,
                           struct timeval *now) {
  (void)mask, (void)now;
  classic_conn_t *cc = closure;
  int want = 0;
  if (!cc->handshaken) {
    if (eventer_SSL_accept(e, &want) <= 0) {
      if (errno == EAGAIN) return want;
      goto done;
    }
    cc->handshaken = 1;
    classic_hs_ok++;
    classic_method = eventer_ssl_get_method(eventer_get_eventer_ssl_ctx(e));
  }
  for (;;) {
    while (cc->poff < cc->plen) { /* flush what is pending first */
      int w = eventer_write(e, cc->pend + cc->poff, (size_t)(cc->plen - cc->poff),
                            &want);
      if (w < 0) {
        if (errno == EAGAIN) return want;
        goto done;
      }
      cc->poff += w;
    }
    /* read until EAGAIN: TLS buffers what it read ahead */
    int n = eventer_read(e, cc->pend, sizeof(cc->pend), &want);
    if (n < 0 && errno == EAGAIN) return want;
    if (n <= 0) goto done;
    upcase(cc->pend, n);
    cc->plen = n;
    cc->poff = 0;
    classic_rounds++;
  }
done:
  eventer_remove_fde(e);
  eventer_close(e, &want);
  free(cc);
  classic_done++;
  return 0;
}

static const char *classic_layer;

static int classic_accept_cb(eventer_t e, int mask, void *closure,
                             struct timeval *now) {
  (void)mask, (void)closure, (void)now;
  int want = 0;
  for (;;) {
    int fd = eventer_accept(e, NULL, NULL, &want);
    if (fd < 0) return want ? want : EVENTER_READ | EVENTER_EXCEPTION;
    eventer_ssl_ctx_t *ctx =
        eventer_ssl_ctx_new(SSL_SERVER, classic_layer, C->srv, C->srv_key, NULL, NULL);
    T_CHECK(ctx != NULL);
    classic_conn_t *cc = calloc(1, sizeof(*cc));
    eventer_t ce = eventer_alloc_fd(classic_conn_cb, cc, fd,
                                    EVENTER_READ | EVENTER_EXCEPTION);
    EVENTER_ATTACH_SSL(ce, ctx);
    T_EQ(eventer_add_ex(ce), 0);
  }
}

static void classic_echo(const char *layer, const char *vflag, int version) {
  setup();
  classic_layer = layer;
  classic_done = classic_hs_ok = classic_method = classic_rounds = 0;
  int port;
  int lfd = t_listen(&port);
  eventer_t le = eventer_alloc_fd(classic_accept_cb, NULL, lfd,
                                  EVENTER_READ | EVENTER_EXCEPTION);
  T_EQ(eventer_add_ex(le), 0);
  t_child_t *c = s_client(port, (const char *[]){vflag, NULL});
  echo_once(c, "classic one\n", "CLASSIC ONE");
  echo_once(c, "classic two\n", "CLASSIC TWO");
  finish_client(c, 0);
  t_spin(&classic_done, 1, 10000);
  T_EQ(classic_hs_ok, 1);
  T_EQ(classic_method, version);
  T_GE(classic_rounds, 2);
  eventer_t r = eventer_remove(le);
  T_PTR_EQ(r, le);
  eventer_free(le);
  close(lfd);
  T_EQ(t_log_lines, 0);
  teardown();
}

static void test_classic_tls12(void) { classic_echo("tlsv1.2", "-tls1_2", TLS1_2_VERSION); }
static void test_classic_tls13(void) { classic_echo(NULL, "-tls1_3", TLS1_3_VERSION); }

/* ---- ALPN --------------------------------------------------------------------------------- */

static int h2_refuse(const unsigned char **out, unsigned char *outlen,
                     const unsigned char *in, unsigned int inlen) {
  (void)out, (void)outlen, (void)in, (void)inlen;
  return -1;
}

static int h2_pass_calls;
static int h2_pass(const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen) {
  (void)out, (void)outlen, (void)in, (void)inlen;
  h2_pass_calls++;
  return 0;
}

static void alpn_case(const char *offer, eventer_SSL_alpn_func_t h2f,
                      const char *srv_list, const char *want) {
  memset(&S, 0, sizeof(S));
  S.h2f = h2f;
  S.alpn = srv_list;
  int port = srv_start();
  t_child_t *c = s_client(port, (const char *[]){"-alpn", offer, NULL});
  echo_once(c, "alpn\n", "ALPN\n");
  if (want[0]) {
    char line[64];
    snprintf(line, sizeof(line), "ALPN protocol: %s", want);
    T_CHECKF(strstr(c->buf, line) != NULL, "offer %s: %s", offer, c->buf);
  } else {
    T_CHECKF(strstr(c->buf, "No ALPN negotiated") != NULL, "offer %s: %s",
             offer, c->buf);
  }
  finish_client(c, 0);
  t_spin(&R.done, 1, 10000);
  T_STR_EQ(R.alpn, want);
  srv_stop();
}

static void test_alpn(void) {
  setup();
  eventer_ssl_alpn_register("http/1.1", NULL); /* for every server */
  /* the client's order; only registered, advertised names */
  alpn_case("spdy/3,http/1.1", NULL, NULL, "http/1.1");
  alpn_case("h2,http/1.1", NULL, NULL, "http/1.1"); /* h2 not registered */
  /* a per-context function that selects nothing falls through */
  h2_pass_calls = 0;
  alpn_case("h2,http/1.1", h2_pass, NULL, "http/1.1");
  T_EQ(h2_pass_calls, 1);
  /* ... one that refuses ends the negotiation without a protocol */
  alpn_case("h2,http/1.1", h2_refuse, NULL, "");
  /* a per-context NULL function selects its name */
  alpn_case("h2,http/1.1", NULL, NULL, "http/1.1");
  /* an explicit advertised list limits the choice */
  alpn_case("http/1.1", NULL, "h2", "");
  alpn_case("nothing-known", NULL, NULL, "");
  teardown();
}

static int h2_select_self(const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen) {
  for (unsigned int i = 0; i < inlen; i += 1u + in[i])
    if (in[i] == 2 && !memcmp(in + i + 1, "h2", 2)) {
      *out = in + i + 1;
      *outlen = 2;
      return 1;
    }
  return 0;
}

static void test_alpn_ctx_select(void) {
  setup();
  alpn_case("spdy/3,h2", h2_select_self, NULL, "h2");
  teardown();
}

/* ---- SNI ------------------------------------------------------------------------------------ */

static void sni_case(const char *name, const char *want_cn) {
  memset(&S, 0, sizeof(S));
  S.sni_select = 1;
  int port = srv_start();
  t_child_t *c = s_client(port, (const char *[]){"-servername", name, NULL});
  echo_once(c, "sni\n", "SNI\n");
  char subj[64];
  snprintf(subj, sizeof(subj), "subject=CN = %s", want_cn);
  T_CHECKF(strstr(c->buf, subj) != NULL, "%s: %s", name, c->buf);
  finish_client(c, 0);
  t_spin(&R.done, 1, 10000);
  T_STR_EQ(R.sni, name);
  T_STR_EQ(R.local_cn, want_cn);
  srv_stop();
}

static void test_sni_server(void) {
  setup();
  sni_a = eventer_ssl_ctx_new(SSL_SERVER, NULL, C->a, C->a_key, NULL, NULL);
  sni_b = eventer_ssl_ctx_new(SSL_SERVER, NULL, C->b, C->b_key, NULL, NULL);
  T_CHECK(sni_a && sni_b);
  sni_case("b.example", "b.example");
  sni_case("a.example", "a.example");
  sni_case("localhost", "localhost"); /* no template: the context's own */
  eventer_ssl_ctx_free(sni_a);
  eventer_ssl_ctx_free(sni_b);
  teardown();
}

/* ---- client certificates ----------------------------------------------------------------------- */

static int require_cert_calls;
static int require_cert(eventer_ssl_ctx_t *ctx, int ok, X509_STORE_CTX *x,
                        void *closure) {
  (void)ctx, (void)closure;
  require_cert_calls++;
  if (!x) return 0; /* no certificate: refuse */
  return ok;
}

static void test_client_cert(void) {
  setup();
  memset(&S, 0, sizeof(S));
  S.ca = C->ca;
  int port = srv_start();

  /* a trusted client certificate: the server sees it, its chain and CN */
  t_child_t *c = s_client(port, (const char *[]){"-cert", C->cli, "-key",
                                                 C->cli_key, NULL});
  echo_once(c, "cert\n", "CERT\n");
  finish_client(c, 0);
  t_spin(&R.done, 1, 10000);
  T_EQ(R.hs_ok, 1);
  T_EQ(R.peer_cert, 1);
  T_STR_EQ(R.peer_cn, "client.example");
  T_STR_EQ(R.subject, "/CN=client.example");
  T_STR_EQ(R.issuer, "/CN=Test CA");
  T_STR_EQ(R.san, "client.example");
  T_EQ(R.verify, X509_V_OK);
  T_GE(R.chain_len, 1);
  T_STR_EQ(R.chain0, "/CN=client.example"); /* leaf first */
  time_t now = time(NULL);
  T_LE(R.start, now);
  T_GE(R.end, now + 3600);

  /* no certificate: allowed (the server only asks) */
  memset(&R, 0, sizeof(R));
  c = s_client(port, (const char *[]){"-tls1_2", NULL});
  echo_once(c, "nocert\n", "NOCERT\n");
  finish_client(c, 0);
  t_spin(&R.done, 1, 10000);
  T_EQ(R.hs_ok, 1);
  T_EQ(R.peer_cert, 0);

  /* an untrusted (self-signed) client certificate: refused, logged */
  memset(&R, 0, sizeof(R));
  int lines = t_log_lines;
  c = s_client(port, (const char *[]){"-cert", C->self, "-key", C->self_key,
                                      "-tls1_2", NULL});
  t_spin(&R.done, 1, 10000);
  finish_client(c, -1);
  T_EQ(R.hs_fail, 1);
  T_EQ(R.hs_errno, EIO);
  T_CHECKF(strstr(R.last_error, "certificate verify failed") != NULL, "%s",
           R.last_error);
  T_CHECKF(strstr(R.peer_error, "self-signed certificate") != NULL, "%s",
           R.peer_error);
  T_EQ(t_log_lines, lines + 1);
  T_CHECK(t_log_has("TLS accept from 127.0.0.1:"));

  /* an expired one from the right CA: refused as expired (TLS 1.3) */
  memset(&R, 0, sizeof(R));
  lines = t_log_lines;
  c = s_client(port, (const char *[]){"-cert", C->cli_exp, "-key", C->cli_key,
                                      "-tls1_3", NULL});
  t_child_send(c, "x\n"); /* a TLS 1.3 client learns of it on its next read */
  t_spin(&R.done, 1, 10000);
  finish_client(c, -1);
  T_EQ(R.hs_fail, 1);
  T_CHECKF(strstr(R.last_error, "certificate has expired") != NULL, "%s",
           R.last_error);
  T_EQ(t_log_lines, lines + 1);
  srv_stop();

  /* a verify function that requires a certificate */
  memset(&S, 0, sizeof(S));
  S.ca = C->ca;
  S.verify = require_cert;
  require_cert_calls = 0;
  port = srv_start();
  c = s_client(port, (const char *[]){"-tls1_2", NULL});
  t_spin(&R.done, 1, 10000);
  finish_client(c, -1);
  T_EQ(R.hs_fail, 1);
  T_CHECKF(strstr(R.last_error, "sent no certificate") != NULL, "%s",
           R.last_error);
  T_EQ(require_cert_calls, 1);
  memset(&R, 0, sizeof(R));
  c = s_client(port, (const char *[]){"-cert", C->cli, "-key", C->cli_key, NULL});
  echo_once(c, "required\n", "REQUIRED");
  finish_client(c, 0);
  t_spin(&R.done, 1, 10000);
  T_EQ(R.hs_ok, 1);
  T_GE(require_cert_calls, 3); /* once per certificate of the chain */
  srv_stop();
  teardown();
}

/* ---- server-side session resumption --------------------------------------------------------------- */

/* tickets: the flag the client adds ("-no_ticket": TLS 1.2 resumes from
 * the server's session cache by session id instead of a ticket) */
static void resumption(const char *vflag, const char *tickets, int version) {
  char sess[400];
  snprintf(sess, sizeof(sess), "%s/sess%s%s.pem", C->dir, vflag,
           tickets ? tickets : "");
  memset(&S, 0, sizeof(S));
  int port = srv_start();
  t_child_t *c = s_client(port, (const char *[]){vflag, "-sess_out", sess,
                                                 tickets, NULL});
  echo_once(c, "first\n", "FIRST");
  if (version == TLS1_3_VERSION) {
    /* one ticket (OpenSSL's default is two), which names a session in
     * the server's cache: 32 bytes, two lines of s_client's dump (a
     * stateless ticket carries the session: 150 bytes and more); the
     * whole output, once s_client is done */
    t_child_close_in(c);
    T_EQ(t_child_wait(c, 20000), 0);
    int n_tickets = 0;
    for (const char *p = c->buf; (p = strstr(p, "New Session Ticket arrived")); p++)
      n_tickets++;
    T_CHECKF(n_tickets == 1, "%d tickets: %s", n_tickets, c->buf);
    const char *t = strstr(c->buf, "TLS session ticket:\n");
    T_CHECKF(t != NULL, "%s", c->buf);
    int lines = 0;
    for (t = strchr(t, '\n') + 1; strncmp(t, "    00", 6) == 0; t = strchr(t, '\n') + 1)
      lines++;
    T_CHECKF(lines == 2, "ticket dump of %d lines: %s", lines, c->buf);
    free(c);
  } else {
    finish_client(c, 0);
  }
  t_spin(&R.done, 1, 10000);
  T_EQ(R.method, version);
  T_EQ(R.reused, 0);
  /* a new connection (a new context on the cached SSL_CTX) resumes */
  memset(&R, 0, sizeof(R));
  c = s_client(port, (const char *[]){vflag, "-sess_in", sess, tickets, NULL});
  echo_once(c, "second\n", "SECOND");
  T_CHECKF(strstr(c->buf, "Reused, TLSv1.") != NULL, "%s", c->buf);
  finish_client(c, 0);
  t_spin(&R.done, 1, 10000);
  T_EQ(R.hs_ok, 1);
  T_EQ(R.reused, 1);
  srv_stop();
}

/* The server holds its TLS 1.3 ticket back to send it with its first
 * record; a server that reads first must still send it as soon as its
 * read waits: this client gets a ticket before it sends anything, and the
 * ticket resumes. */
typedef struct {
  int port, got_ticket, ok, reused;
  SSL_SESSION *sess;
  char reply[64];
} tkt_client_t;

static int tkt_new_session(SSL *ssl, SSL_SESSION *sess) {
  tkt_client_t *k = SSL_get_app_data(ssl);
  if (k->sess) SSL_SESSION_free(k->sess);
  k->sess = sess; /* ours: returning 1 keeps the reference */
  k->got_ticket = 1;
  return 1;
}

static void *tkt_client(void *arg) {
  tkt_client_t *k = arg;
  SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(sc, TLS1_3_VERSION);
  SSL_CTX_load_verify_locations(sc, C->ca, NULL);
  SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_CLIENT |
                                         SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(sc, tkt_new_session);
  int fd = t_connect_blocking(k->port);
  SSL *ssl = SSL_new(sc);
  SSL_set_app_data(ssl, k);
  SSL_set_fd(ssl, fd);
  if (k->sess) T_EQ(SSL_set_session(ssl, k->sess), 1);
  if (SSL_connect(ssl) == 1) {
    k->reused = SSL_session_reused(ssl);
    /* wait (10 s at most) for the ticket with nothing sent */
    T_EQ(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    char c;
    for (int i = 0; i < 1000 && !k->got_ticket; i++) {
      T_CHECK(SSL_read(ssl, &c, 1) <= 0); /* the server has sent no data */
      struct pollfd p = {fd, POLLIN, 0};
      poll(&p, 1, 10);
    }
    T_EQ(fcntl(fd, F_SETFL, 0), 0);
    if (k->got_ticket && SSL_write(ssl, "ping\n", 5) == 5) {
      int n = SSL_read(ssl, k->reply, sizeof(k->reply) - 1);
      if (n > 0) k->reply[n] = 0;
      k->ok = 1;
    }
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  SSL_CTX_free(sc);
  close(fd);
  return NULL;
}

static void test_ticket_while_reading(void) {
  setup();
  memset(&S, 0, sizeof(S));
  tkt_client_t k = {.port = srv_start()};
  for (int round = 0; round < 2; round++) {
    memset(&R, 0, sizeof(R));
    k.got_ticket = k.ok = k.reused = 0;
    k.reply[0] = 0;
    pthread_t th;
    T_EQ(pthread_create(&th, NULL, tkt_client, &k), 0);
    t_spin(&R.done, 1, 20000);
    T_EQ(pthread_join(th, NULL), 0);
    T_CHECKF(k.got_ticket, "round %d: no ticket while the server read", round);
    T_EQ(k.ok, 1);
    T_STR_EQ(k.reply, "PING\n");
    T_EQ(R.hs_ok, 1);
    T_EQ(k.reused, round); /* the second connection resumes the first's */
    T_EQ(R.reused, round);
  }
  SSL_SESSION_free(k.sess);
  srv_stop();
  teardown();
}

static void test_resumption(void) {
  setup();
  resumption("-tls1_3", NULL, TLS1_3_VERSION);
  resumption("-tls1_2", NULL, TLS1_2_VERSION);
  resumption("-tls1_2", "-no_ticket", TLS1_2_VERSION);
  teardown();
}

/* ---- TLS 1.3 key updates -------------------------------------------------------------------------- */

static void test_key_update(void) {
  setup();
  memset(&S, 0, sizeof(S));
  int port = srv_start();
  t_child_t *c = s_client(port, (const char *[]){"-tls1_3", NULL});
  echo_once(c, "one!\n", "ONE!");
  /* s_client's "K": a key update that asks for ours (our read answers) */
  t_child_send(c, "K\n");
  t_child_expect(c, "KEYUPDATE", 10000);
  echo_once(c, "two\n", "TWO");
  /* ours: the server asks before it answers "three" */
  echo_once(c, "three\n", "THREE");
  echo_once(c, "four\n", "FOUR");
  finish_client(c, 0);
  t_spin(&R.done, 1, 10000);
  T_EQ(R.reneg_rv, 0);
  srv_stop();

  /* TLS 1.2 renegotiation stays off */
  memset(&S, 0, sizeof(S));
  port = srv_start();
  c = s_client(port, (const char *[]){"-tls1_2", NULL});
  echo_once(c, "three\n", "THREE");
  finish_client(c, 0);
  t_spin(&R.done, 1, 10000);
  T_EQ(R.reneg_rv, -1);
  T_EQ(R.reneg_errno, EOPNOTSUPP);
  srv_stop();
  teardown();
}

/* ---- our client against openssl s_server --------------------------------------------------------------- */

typedef struct {
  int port;
  const char *layer, *cert, *key, *ca, *sni, *alpn, *send, *verify_host;
  SSL_SESSION *sess_in;  /* to resume */
  SSL_SESSION *sess_out; /* kept (a reference) after the exchange, if
                          * keep_session */
  int implicit, recording, keep_session;
  int connect_rv, connect_errno, hs_rv, hs_errno, method, done, reused;
  char alpn_sel[32], peer_cn[64], last_error[512], reply[256];
} cli_t;

static void cli_fn(void) {
  cli_t *k = eventer_aco_arg();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  T_CHECK(fd >= 0);
  eventer_ssl_ctx_t *ctx =
      eventer_ssl_ctx_new(SSL_CLIENT, k->layer, k->cert, k->key, k->ca, NULL);
  T_CHECK(ctx != NULL);
  if (k->sni) eventer_ssl_ctx_set_sni(ctx, k->sni);
  if (k->alpn) T_EQ(eventer_ssl_alpn_advertise(ctx, k->alpn), 0);
  if (k->verify_host) T_EQ(eventer_ssl_ctx_set_verify_host(ctx, k->verify_host), 0);
  if (k->sess_in) T_EQ(eventer_ssl_ctx_set_session(ctx, k->sess_in), 0);
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, fd, EVENTER_READ);
  EVENTER_ATTACH_SSL(e, ctx);
  if (k->recording) rec_install(e);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  struct sockaddr_in sa = t_addr(k->port);
  struct timeval tmo = t_ms(10000);
  k->connect_rv = eventer_aco_connect(ae, (struct sockaddr *)&sa, sizeof(sa), &tmo);
  k->connect_errno = errno;
  if (k->connect_rv != 0) goto out;
  if (!k->implicit) {
    k->hs_rv = eventer_aco_ssl_connect(ae, &tmo);
    k->hs_errno = errno;
    if (k->hs_rv != 0) goto out;
  }
  /* implicit: this write runs the handshake (and waits for READ) */
  T_EQ(aco_write_all(ae, k->send, (int)strlen(k->send)), 0);
  size_t got = 0;
  while (got < sizeof(k->reply) - 1 && !memchr(k->reply, '\n', got)) {
    int n = eventer_aco_read(ae, k->reply + got, sizeof(k->reply) - 1 - got, &tmo);
    if (n <= 0) break;
    got += (size_t)n;
  }
  k->reply[got] = 0;
  k->method = eventer_ssl_get_method(ctx);
  const uint8_t *p;
  uint8_t l;
  eventer_ssl_get_alpn_selected(ctx, &p, &l);
  snprintf(k->alpn_sel, sizeof(k->alpn_sel), "%.*s", (int)l, p ? (const char *)p : "");
  if (eventer_ssl_get_peer_commonname(ctx, k->peer_cn, sizeof(k->peer_cn)) < 0)
    k->peer_cn[0] = 0;
  k->reused = eventer_ssl_session_reused(ctx);
  /* after the reply: a TLS 1.3 ticket came before it */
  if (k->keep_session) {
    k->sess_out = eventer_ssl_get_session(ctx);
    if (k->sess_out) SSL_SESSION_up_ref(k->sess_out);
  }
out:
  copy_str(k->last_error, sizeof(k->last_error), eventer_ssl_get_last_error(ctx));
  eventer_aco_close(ae);
  eventer_aco_free(ae);
  k->done = 1;
}

/* openssl s_server -rev (answers each line reversed), one connection */
static t_child_t *s_server_n(const char *cert, const char *key,
                             const char *const *extra, int *port,
                             const char *naccept) {
  const char *argv[40] = {"openssl", "s_server", "-accept", "127.0.0.1:0",
                          "-cert", cert, "-key", key, "-naccept", naccept, "-rev"};
  int n = 11;
  for (int i = 0; extra && extra[i]; i++) argv[n++] = extra[i];
  argv[n] = NULL;
  t_child_t *c = calloc(1, sizeof(*c));
  t_child_start(c, (char *const *)argv);
  *port = t_s_server_port(c);
  return c;
}

static t_child_t *s_server(const char *cert, const char *key,
                           const char *const *extra, int *port) {
  return s_server_n(cert, key, extra, port, "1");
}

static void stop_s_server(t_child_t *c) {
  kill(c->pid, SIGTERM);
  t_child_wait(c, 10000);
  free(c);
}

static void test_client_side(void) {
  setup();
  int port;
  /* TLS 1.3 and ALPN */
  t_child_t *srv = s_server(C->srv, C->srv_key,
                            (const char *[]){"-alpn", "http/1.1", NULL}, &port);
  cli_t k = {.port = port, .ca = C->ca, .sni = "localhost",
             .alpn = "h2,http/1.1", .send = "hello\n"};
  eventer_aco_start(cli_fn, &k);
  t_spin(&k.done, 1, 20000);
  T_EQ(k.connect_rv, 0);
  T_EQ(k.hs_rv, 0);
  T_STR_EQ(k.reply, "olleh\n");
  T_EQ(k.method, TLS1_3_VERSION);
  T_STR_EQ(k.alpn_sel, "http/1.1");
  T_STR_EQ(k.peer_cn, "localhost");
  stop_s_server(srv);

  /* SNI: the server answers a.example with its second certificate (s_server
   * negotiates no ALPN on that one) */
  srv = s_server(C->srv, C->srv_key,
                 (const char *[]){"-servername", "a.example", "-cert2", C->a,
                                  "-key2", C->a_key, NULL},
                 &port);
  cli_t ks = {.port = port, .ca = C->ca, .sni = "a.example", .send = "sni\n"};
  eventer_aco_start(cli_fn, &ks);
  t_spin(&ks.done, 1, 20000);
  T_EQ(ks.hs_rv, 0);
  T_STR_EQ(ks.reply, "ins\n");
  T_STR_EQ(ks.peer_cn, "a.example");
  stop_s_server(srv);

  /* TLS 1.2, a client certificate the server verifies */
  srv = s_server(C->srv, C->srv_key,
                 (const char *[]){"-Verify", "1", "-CAfile", C->ca, NULL}, &port);
  cli_t k2 = {.port = port, .ca = C->ca, .layer = "tlsv1.2", .cert = C->cli,
              .key = C->cli_key, .send = "abc\n"};
  eventer_aco_start(cli_fn, &k2);
  t_spin(&k2.done, 1, 20000);
  T_EQ(k2.hs_rv, 0);
  T_STR_EQ(k2.reply, "cba\n");
  T_EQ(k2.method, TLS1_2_VERSION);
  T_STR_EQ(k2.peer_cn, "localhost");
  T_STR_EQ(k2.alpn_sel, "");
  stop_s_server(srv);

  /* the server's name checked, by name and by address; the second
   * connection resumes the first one's session */
  const char *names[] = {"localhost", "127.0.0.1"};
  SSL_SESSION *sess = NULL;
  srv = s_server_n(C->srv, C->srv_key, NULL, &port, "2");
  for (int i = 0; i < 2; i++) {
    cli_t kh = {.port = port, .ca = C->ca, .verify_host = names[i],
                .sess_in = sess, .send = "host\n", .keep_session = 1};
    eventer_aco_start(cli_fn, &kh);
    t_spin(&kh.done, 1, 20000);
    T_EQ(kh.hs_rv, 0);
    T_STR_EQ(kh.reply, "tsoh\n");
    T_EQ(kh.reused, i == 1);
    T_CHECK(kh.sess_out != NULL);
    SSL_SESSION_free(sess);
    sess = kh.sess_out;
  }
  stop_s_server(srv);
  SSL_SESSION_free(sess);
  T_EQ(t_log_lines, 0);
  teardown();
}

static void bad_server(const char *cert, const char *key, const char *ca,
                       const char *host, const char *reason) {
  int port;
  t_child_t *srv = s_server(cert, key, NULL, &port);
  cli_t k = {.port = port, .ca = ca, .send = "x\n", .verify_host = host};
  int lines = t_log_lines;
  eventer_aco_start(cli_fn, &k);
  t_spin(&k.done, 1, 20000);
  T_EQ(k.connect_rv, 0);
  T_EQ(k.hs_rv, -1);
  T_EQ(k.hs_errno, EIO);
  T_CHECKF(strstr(k.last_error, reason) != NULL, "%s", k.last_error);
  T_EQ(t_log_lines, lines + 1);
  char line[64];
  snprintf(line, sizeof(line), "TLS connect to 127.0.0.1:%d (fd", port);
  T_CHECK(t_log_has(line));
  stop_s_server(srv);
}

static void test_client_bad_server_cert(void) {
  setup();
  bad_server(C->exp, C->srv_key, C->ca, NULL, "certificate has expired");
  bad_server(C->self, C->self_key, C->ca, NULL, "self-signed certificate");
  bad_server(C->a, C->a_key, C->self, NULL, "unable to get local issuer");
  /* a good chain for another name */
  bad_server(C->a, C->a_key, C->ca, "localhost", "hostname mismatch");
  bad_server(C->srv, C->srv_key, C->ca, "127.0.0.2", "IP address mismatch");
  teardown();
}

/* ---- readiness in the other direction ------------------------------------------------------------------- */

/* A write before the handshake: the write itself does the handshake and
 * must wait for READ (the server's answer).  The server is a coroutine on
 * the same loop, so it cannot answer before the client's write yields. */
static void test_write_waits_for_read(void) {
  setup();
  memset(&S, 0, sizeof(S));
  int port = srv_start();
  cli_t k = {.port = port, .ca = C->ca, .send = "implicit\n", .implicit = 1,
             .recording = 1};
  eventer_aco_start(cli_fn, &k);
  t_spin(&k.done, 1, 20000);
  T_STR_EQ(k.reply, "IMPLICIT\n");
  T_CHECKF(rec_write_waits & EVENTER_READ, "write waits 0x%x", rec_write_waits);
  t_spin(&R.done, 1, 10000);
  srv_stop();
  teardown();
}

/* A read that must wait for WRITE: the server's first read does the
 * handshake; its flight (a ~60 KB certificate) does not fit in the small
 * socket buffers while the client holds off reading, which it does until
 * the server's read has asked for WRITE. */
typedef struct {
  int port, ok;
  char reply[16];
} holdoff_t;

static void *holdoff_client(void *arg) {
  holdoff_t *h = arg;
  SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
  SSL_CTX_load_verify_locations(sc, C->ca, NULL);
  SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  struct sockaddr_in sa = t_addr(h->port);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) return NULL;
  SSL *ssl = SSL_new(sc);
  /* send the ClientHello, but read nothing yet */
  BIO *wr = BIO_new_socket(fd, BIO_NOCLOSE), *hold = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(hold, -1);
  SSL_set_bio(ssl, hold, wr);
  T_EQ(SSL_connect(ssl), -1);
  /* until the server's read has had to wait for WRITE (20 s at most) */
  for (int i = 0; i < 2000 && !(__atomic_load_n(&rec_read_waits, __ATOMIC_ACQUIRE) &
                                EVENTER_WRITE);
       i++)
    usleep(10000);
  BIO *rd = BIO_new_socket(fd, BIO_NOCLOSE);
  SSL_set0_rbio(ssl, rd);
  if (SSL_connect(ssl) == 1 && SSL_write(ssl, "ping\n", 5) == 5) {
    int n = SSL_read(ssl, h->reply, sizeof(h->reply) - 1);
    if (n > 0) h->reply[n] = 0;
    h->ok = 1;
  }
  SSL_shutdown(ssl);
  SSL_free(ssl);
  SSL_CTX_free(sc);
  close(fd);
  return NULL;
}

static void test_read_waits_for_write(void) {
  setup();
  memset(&S, 0, sizeof(S));
  S.cert = C->big;
  S.key = C->big_key;
  S.implicit = 1;
  S.recording = 1;
  S.sndbuf = 4096;
  rec_read_waits = rec_write_waits = 0; /* nothing stale for the client */
  holdoff_t h = {.port = srv_start()};
  pthread_t th;
  T_EQ(pthread_create(&th, NULL, holdoff_client, &h), 0);
  t_spin(&R.done, 1, 20000);
  T_EQ(pthread_join(th, NULL), 0);
  T_EQ(h.ok, 1);
  T_STR_EQ(h.reply, "PING\n");
  T_EQ(R.hs_ok, 1);
  T_CHECKF(rec_read_waits & EVENTER_WRITE, "read waits 0x%x", rec_read_waits);
  srv_stop();
  teardown();
}

/* ---- bulk, both ways at once, over one TLS event ------------------------------------------------------- */

#define BULK (4 << 20)

typedef struct {
  eventer_aco_t e;
  int done, ok;
  size_t n;
  uint32_t seed;
  unsigned char buf[65536];
} bulk_t;

static unsigned char bulk_byte(uint32_t seed, size_t i) {
  return (unsigned char)((i * 2654435761u + seed) >> 13);
}

static void bulk_writer(void) {
  bulk_t *b = eventer_aco_arg();
  unsigned char *buf = b->buf; /* not on the 32 KiB share stack */
  size_t off = 0;
  b->ok = 1;
  while (off < b->n) {
    size_t chunk = b->n - off < sizeof(b->buf) ? b->n - off : sizeof(b->buf);
    for (size_t i = 0; i < chunk; i++) buf[i] = bulk_byte(b->seed, off + i);
    if (aco_write_all(b->e, (const char *)buf, (int)chunk) != 0) {
      b->ok = 0;
      break;
    }
    off += chunk;
  }
  b->done = 1;
}

static void bulk_reader(void) {
  bulk_t *b = eventer_aco_arg();
  unsigned char *buf = b->buf;
  size_t off = 0;
  b->ok = 1;
  while (off < b->n) {
    struct timeval tmo = t_ms(20000);
    int r = eventer_aco_read(b->e, buf, 40000, &tmo);
    if (r <= 0) {
      b->ok = 0;
      break;
    }
    for (int i = 0; i < r; i++)
      if (buf[i] != bulk_byte(b->seed, off + (size_t)i)) b->ok = 0;
    off += (size_t)r;
  }
  b->done = 1;
}

static eventer_aco_t bulk_ends[2];
static int bulk_setup_done;

static void bulk_setup(void) {
  int *sv = eventer_aco_arg();
  eventer_ssl_ctx_t *sctx =
      eventer_ssl_ctx_new(SSL_SERVER, NULL, C->srv, C->srv_key, NULL, NULL);
  eventer_ssl_ctx_t *cctx =
      eventer_ssl_ctx_new(SSL_CLIENT, NULL, NULL, NULL, C->ca, NULL);
  T_CHECK(sctx && cctx);
  eventer_t se = eventer_alloc_fd(dummy_cb, NULL, sv[0], EVENTER_READ);
  eventer_t ce = eventer_alloc_fd(dummy_cb, NULL, sv[1], EVENTER_READ);
  EVENTER_ATTACH_SSL(se, sctx);
  EVENTER_ATTACH_SSL(ce, cctx);
  bulk_ends[0] = eventer_set_eventer_aco(se);
  bulk_ends[1] = eventer_set_eventer_aco(ce);
  bulk_setup_done = 1;
}

/* Server and client on one loop over a socketpair: each end has a writer
 * and a reader coroutine on the same TLS event (full duplex), 4 MiB each
 * way, with no explicit handshake (the first I/O of each side does it). */
static void test_full_duplex_bulk(void) {
  setup();
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  bulk_setup_done = 0;
  eventer_aco_start(bulk_setup, sv);
  t_spin(&bulk_setup_done, 1, 1000);
  size_t n = (size_t)t_scale(BULK, 16);
  static bulk_t w0, w1, r0, r1;
  w0 = (bulk_t){bulk_ends[0], 0, 0, n, 1, {0}};
  r1 = (bulk_t){bulk_ends[1], 0, 0, n, 1, {0}};
  w1 = (bulk_t){bulk_ends[1], 0, 0, n, 7, {0}};
  r0 = (bulk_t){bulk_ends[0], 0, 0, n, 7, {0}};
  eventer_aco_start(bulk_reader, &r1);
  eventer_aco_start(bulk_reader, &r0);
  eventer_aco_start(bulk_writer, &w0);
  eventer_aco_start(bulk_writer, &w1);
  uint64_t end = t_now_us() + 60000000u;
  struct timeval w = {0, 1000};
  while (!(w0.done && w1.done && r0.done && r1.done)) {
    T_CHECK(t_now_us() < end);
    T_EQ(eventer_run_once(NULL, &w), EVENTER_RUN_DONE);
  }
  T_EQ(w0.ok, 1);
  T_EQ(w1.ok, 1);
  T_EQ(r0.ok, 1);
  T_EQ(r1.ok, 1);
  T_EQ(eventer_ssl_get_method(eventer_get_eventer_ssl_ctx((eventer_t)bulk_ends[0])),
       TLS1_3_VERSION);
  for (int i = 0; i < 2; i++) {
    T_EQ(eventer_aco_close(bulk_ends[i]), 0);
    eventer_aco_free(bulk_ends[i]);
  }
  T_EQ(t_log_lines, 0);
  teardown();
}

/* One read or write call moves as many TLS records as the socket takes
 * or holds (OpenSSL's SSL_read_ex and, with partial writes, SSL_write_ex
 * stop at one 16 KiB record; a call of ours goes on): a 256 KiB write
 * into roomy socket buffers sends more than one record, and 64 KiB reads
 * of that data get more than one record's plaintext (once the connection
 * has read a full record, OpenSSL's read buffer holds four); the bytes
 * arrive intact. */
#define REC_WRITE (256 << 10)

typedef struct {
  int done, ok, wrote_first, read_max;
  unsigned char buf[REC_WRITE];
} rec_t;

static void rec_writer(void) {
  rec_t *r = eventer_aco_arg();
  for (size_t i = 0; i < sizeof(r->buf); i++) r->buf[i] = bulk_byte(3, i);
  struct timeval tmo = t_ms(20000);
  /* "head" finishes the handshake (the write that does so stops there) */
  if (aco_write_all(bulk_ends[0], "head", 4) != 0) {
    r->done = 1;
    return;
  }
  r->wrote_first = eventer_aco_write(bulk_ends[0], r->buf, sizeof(r->buf), &tmo);
  r->ok = r->wrote_first > 0 &&
          aco_write_all(bulk_ends[0], (const char *)r->buf + r->wrote_first,
                        (int)sizeof(r->buf) - r->wrote_first) == 0 &&
          aco_write_all(bulk_ends[0], "tail", 4) == 0;
  r->done = 1;
}

static void rec_reader(void) {
  rec_t *r = eventer_aco_arg();
  r->ok = 0;
  static unsigned char in[64 << 10];
  size_t off = 0;
  r->ok = 1;
  /* "head", then a pause while the writer fills the socket */
  struct timeval tmo = t_ms(20000), pause = t_ms(50);
  int got = 0;
  while (got < 4) {
    int n = eventer_aco_read(bulk_ends[1], in + got, (size_t)(4 - got), &tmo);
    if (n <= 0) {
      r->done = 1;
      return;
    }
    got += n;
  }
  if (memcmp(in, "head", 4) != 0) r->ok = 0;
  eventer_aco_sleep(&pause);
  while (off < REC_WRITE + 4) {
    struct timeval tmo = t_ms(20000);
    int n = eventer_aco_read(bulk_ends[1], in, sizeof(in), &tmo);
    if (n <= 0) {
      r->ok = 0;
      break;
    }
    if (n > r->read_max) r->read_max = n; /* the largest */
    for (int i = 0; i < n; i++, off++)
      if (off < REC_WRITE ? in[i] != bulk_byte(3, off)
                          : in[i] != (unsigned char)"tail"[off - REC_WRITE])
        r->ok = 0;
  }
  r->done = 1;
}

static void test_records_per_call(void) {
  setup();
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  int big = 1 << 20; /* the kernel caps it (wmem_max): still several records */
  T_EQ(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big)), 0);
  T_EQ(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big)), 0);
  bulk_setup_done = 0;
  eventer_aco_start(bulk_setup, sv);
  t_spin(&bulk_setup_done, 1, 1000);
  static rec_t w, r;
  memset(&w, 0, sizeof(w));
  memset(&r, 0, sizeof(r));
  eventer_aco_start(rec_writer, &w);
  eventer_aco_start(rec_reader, &r);
  struct timeval tw = {0, 1000};
  uint64_t end = t_now_us() + 30000000u;
  while (!(w.done && r.done)) {
    T_CHECK(t_now_us() < end);
    T_EQ(eventer_run_once(NULL, &tw), EVENTER_RUN_DONE);
  }
  T_EQ(w.ok, 1);
  T_EQ(r.ok, 1);
  T_CHECKF(w.wrote_first > 16384, "one write call sent %d bytes", w.wrote_first);
  T_CHECKF(r.read_max > 16384, "the largest read call got %d bytes", r.read_max);
  /* the reader, having read full records, reads into a buffer of several
   * (its kept one-record buffer freed for it once empty) */
  T_EQ(ev_ssl_ctx_keeps_buffers(eventer_get_eventer_ssl_ctx((eventer_t)bulk_ends[1])), 1);
  T_EQ(ev_ssl_ctx_big_read_buffer(eventer_get_eventer_ssl_ctx((eventer_t)bulk_ends[1])), 1);
  for (int i = 0; i < 2; i++) {
    T_EQ(eventer_aco_close(bulk_ends[i]), 0);
    eventer_aco_free(bulk_ends[i]);
  }
  T_EQ(t_log_lines, 0);
  teardown();
}

/* Another OpenSSL user on the loop thread may leave an error in the
 * thread's queue.  Each I/O call of the opset starts from an empty queue,
 * so a read or write that would wait says EAGAIN (and the coroutine
 * waits), not EIO from SSL_get_error finding the stale error. */
typedef struct {
  int ok, done;
} stale_t;

static void stale_push(void) { ERR_raise(ERR_LIB_SYS, EBADF); }

static void stale_reader(void) {
  stale_t *s = eventer_aco_arg();
  char buf[16];
  struct timeval tmo = t_ms(20000);
  stale_push();
  int n = eventer_aco_read(bulk_ends[0], buf, sizeof(buf), &tmo);
  s->ok = n == 4 && memcmp(buf, "ping", 4) == 0;
  stale_push();
  tmo = t_ms(50); /* nothing more comes: the read waits and times out */
  errno = 0;
  n = eventer_aco_read(bulk_ends[0], buf, sizeof(buf), &tmo);
  if (n != -1 || errno != ETIMEDOUT) s->ok = 0;
  stale_push();
  if (aco_write_all(bulk_ends[0], "pong", 4) != 0) s->ok = 0;
  s->done = 1;
}

static void stale_writer(void) {
  stale_t *s = eventer_aco_arg();
  char buf[16];
  struct timeval tmo = t_ms(20000);
  stale_push();
  s->ok = aco_write_all(bulk_ends[1], "ping", 4) == 0;
  stale_push();
  int n = eventer_aco_read(bulk_ends[1], buf, sizeof(buf), &tmo);
  if (n != 4 || memcmp(buf, "pong", 4) != 0) s->ok = 0;
  s->done = 1;
}

static int stale_skipped[2]; /* each end's ev_ssl_ctx_skipped_reads */

/* Both ends of a TLS pair over a socketpair on this loop exchange
 * "ping" and "pong" (stale_reader and stale_writer: with a stale error
 * in the thread's queue before each call); *kept: how many of the two
 * contexts keep their buffers (ssl_keep_buffers) once both are done. */
static void stale_pair(int *kept) {
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  bulk_setup_done = 0;
  eventer_aco_start(bulk_setup, sv);
  t_spin(&bulk_setup_done, 1, 1000);
  static stale_t r, w;
  memset(&r, 0, sizeof(r));
  memset(&w, 0, sizeof(w));
  eventer_aco_start(stale_reader, &r);
  eventer_aco_start(stale_writer, &w);
  struct timeval tw = {0, 1000};
  uint64_t end = t_now_us() + 30000000u;
  while (!(r.done && w.done)) {
    T_CHECK(t_now_us() < end);
    T_EQ(eventer_run_once(NULL, &tw), EVENTER_RUN_DONE);
  }
  ERR_clear_error();
  T_EQ(r.ok, 1);
  T_EQ(w.ok, 1);
  *kept = 0;
  for (int i = 0; i < 2; i++) {
    *kept += ev_ssl_ctx_keeps_buffers(
        eventer_get_eventer_ssl_ctx((eventer_t)bulk_ends[i]));
    stale_skipped[i] = ev_ssl_ctx_skipped_reads(
        eventer_get_eventer_ssl_ctx((eventer_t)bulk_ends[i]));
    T_EQ(eventer_aco_close(bulk_ends[i]), 0);
    eventer_aco_free(bulk_ends[i]);
  }
}

static void test_stale_error_queue(void) {
  setup();
  int kept;
  stale_pair(&kept);
  T_EQ(t_log_lines, 0);
  teardown();
}

/* The first read after a handshake flight went out does not try the
 * socket (the peer has yet to answer) but waits for it; the handshake and
 * the exchange still work.  On one loop thread the order is fixed: the
 * client (bulk_ends[1]) skips its read after ClientHello, the server its
 * read after ServerHello .. Finished, once each in TLS 1.3, and no read
 * after the handshake skips (the client's read of "pong" after its
 * Finished and "ping" went out, the server's second read, which times
 * out). */
static void test_handshake_skips_read(void) {
  setup();
  int kept;
  stale_pair(&kept);
  T_EQ(stale_skipped[0], 1);
  T_EQ(stale_skipped[1], 1);
  T_EQ(t_log_lines, 0);
  teardown();
}

/* On a blocking fd (eventer_run_in_thread makes its event's fd blocking;
 * a thread of the caller's own may do the same) a handshake step waits in
 * the socket as it always did: no EAGAIN the caller did not ask for.  The
 * first read after a flight is answered without the socket only on a
 * loop thread, where every caller waits for readiness. */
static int blk_dummy(eventer_t e, int m, void *c, struct timeval *n) {
  (void)e, (void)m, (void)c, (void)n;
  return 0;
}
static void *blk_server(void *arg) {
  int fd = *(int *)arg;
  SSL_CTX *sc = SSL_CTX_new(TLS_server_method());
  T_EQ(SSL_CTX_use_certificate_file(sc, C->srv, SSL_FILETYPE_PEM), 1);
  T_EQ(SSL_CTX_use_PrivateKey_file(sc, C->srv_key, SSL_FILETYPE_PEM), 1);
  SSL *s = SSL_new(sc);
  SSL_set_fd(s, fd);
  char b[8];
  if (SSL_accept(s) == 1 && SSL_read(s, b, sizeof(b)) == 2) SSL_write(s, "ok", 2);
  SSL_shutdown(s);
  SSL_free(s);
  SSL_CTX_free(sc);
  return NULL;
}
static int blk_eagain, blk_rv, blk_read;
static void *blk_client(void *arg) {
  eventer_t e = arg; /* a thread that is no loop, on a blocking fd */
  int mask = 0, rv;
  while ((rv = eventer_SSL_connect(e, &mask)) < 0 && errno == EAGAIN) blk_eagain++;
  blk_rv = rv;
  if (rv > 0 && eventer_write(e, "hi", 2, &mask) == 2) {
    char b[8];
    while ((blk_read = eventer_read(e, b, sizeof(b), &mask)) < 0 && errno == EAGAIN)
      blk_eagain++;
  }
  return NULL;
}
static void test_blocking_fd_handshake(void) {
  setup();
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0); /* blocking */
  eventer_ssl_ctx_t *ctx = eventer_ssl_ctx_new(SSL_CLIENT, NULL, NULL, NULL, C->ca, NULL);
  T_CHECK(ctx != NULL);
  eventer_t e = eventer_alloc_fd(blk_dummy, NULL, sv[0], EVENTER_READ);
  EVENTER_ATTACH_SSL(e, ctx);
  blk_eagain = blk_rv = blk_read = 0;
  pthread_t ts, tc;
  T_EQ(pthread_create(&ts, NULL, blk_server, &sv[1]), 0);
  T_EQ(pthread_create(&tc, NULL, blk_client, e), 0);
  T_EQ(pthread_join(tc, NULL), 0);
  T_EQ(pthread_join(ts, NULL), 0);
  T_EQ(blk_rv, 1);
  T_EQ(blk_read, 2);
  T_EQ(blk_eagain, 0);
  int mask;
  T_EQ(eventer_close(e, &mask), 0);
  eventer_free(e);
  close(sv[1]);
  teardown();
}

/* ssl_keep_buffers: so many connections keep OpenSSL's buffers from
 * their handshake to their close, and a closed one's place is free again
 * (each round's pair would find none if it were not); the others give
 * them back whenever they empty.  Either way the exchange works. */
static void test_keep_buffers(void) {
  setup();
  int kept;
  T_EQ(eventer_ssl_config("ssl_keep_buffers", "1"), 0);
  for (int round = 0; round < 3; round++) {
    stale_pair(&kept);
    T_EQ(kept, 1);
  }
  T_EQ(eventer_ssl_config("ssl_keep_buffers", "2"), 0);
  stale_pair(&kept);
  T_EQ(kept, 2);
  T_EQ(eventer_ssl_config("ssl_keep_buffers", "0"), 0);
  stale_pair(&kept);
  T_EQ(kept, 0);
  T_EQ(eventer_ssl_config("ssl_keep_buffers", "256"), 0);
  T_EQ(t_log_lines, 0);
  teardown();
}

/* <eventer><config>'s ssl_* keys reach eventer_ssl_config (as libmtev's
 * do): ssl_keep_buffers set through eventer_impl_propset before
 * eventer_init is the one the next connections keep to; bad values are
 * EINVAL there, an ssl_* key nobody knows ENOENT (strict) or ignored. */
static void test_eventer_config_keys(void) {
  T_EQ(eventer_impl_propset_ex("ssl_keep_buffers", "1"), 0);
  setup();
  int kept;
  stale_pair(&kept);
  T_EQ(kept, 1);
  teardown();
  T_EQ(eventer_impl_propset("ssl_keep_buffers", "256"), 0);
  setup();
  stale_pair(&kept);
  T_EQ(kept, 2);
  teardown();
  T_ERRNO(eventer_impl_propset_ex("ssl_keep_buffers", "many"), EINVAL);
  T_ERRNO(eventer_impl_propset_ex("ssl_keep_buffers", "-1"), EINVAL);
  T_ERRNO(eventer_impl_propset_ex("ssl_ctx_cache_expiry", "10s"), EINVAL);
  T_ERRNO(eventer_impl_propset_ex("ssl_own_x25519", "maybe"), EINVAL);
  T_ERRNO(eventer_impl_propset_ex("ssl_dhparam2048_file", "x"), ENOENT);
  T_EQ(eventer_impl_propset("ssl_dhparam2048_file", "x"), 0);
  T_EQ(eventer_impl_propset_ex("ssl_own_x25519", "on"), 0);
  T_EQ(eventer_ssl_config("ssl_keep_buffers", "many"), 1);
}

/* ---- timeouts and teardown -------------------------------------------------------------------------- */

typedef struct {
  int port, rv, err, done;
  char last_error[256];
} tmo_t;

static void connect_then_stall(void) {
  tmo_t *t = eventer_aco_arg();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  eventer_ssl_ctx_t *ctx = eventer_ssl_ctx_new(SSL_CLIENT, NULL, NULL, NULL, C->ca, NULL);
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, fd, EVENTER_READ);
  EVENTER_ATTACH_SSL(e, ctx);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  struct sockaddr_in sa = t_addr(t->port);
  struct timeval tmo = t_ms(2000);
  T_EQ(eventer_aco_connect(ae, (struct sockaddr *)&sa, sizeof(sa), &tmo), 0);
  tmo = t_ms(150);
  uint64_t t0 = t_now_us();
  t->rv = eventer_aco_ssl_connect(ae, &tmo);
  t->err = errno;
  uint64_t took = t_now_us() - t0;
  T_GE(took, 150000);
  T_LE_LATE(took, 150000 + ev_late_bound_us() * 4);
  copy_str(t->last_error, sizeof(t->last_error), eventer_ssl_get_last_error(ctx));
  eventer_aco_close(ae);
  eventer_aco_free(ae);
  t->done = 1;
}

static void connect_refused(void) {
  tmo_t *t = eventer_aco_arg();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  eventer_ssl_ctx_t *ctx = eventer_ssl_ctx_new(SSL_CLIENT, NULL, NULL, NULL, C->ca, NULL);
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, fd, EVENTER_READ);
  EVENTER_ATTACH_SSL(e, ctx);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  struct sockaddr_in sa = t_addr(t->port);
  struct timeval tmo = t_ms(2000);
  t->rv = eventer_aco_connect(ae, (struct sockaddr *)&sa, sizeof(sa), &tmo);
  t->err = errno;
  eventer_aco_close(ae);
  eventer_aco_free(ae);
  t->done = 1;
}

static void test_connect_and_handshake_timeouts(void) {
  setup();
  /* a TCP server that accepts (the kernel does) but never speaks TLS */
  int port;
  int lfd = t_listen(&port);
  tmo_t t = {.port = port};
  eventer_aco_start(connect_then_stall, &t);
  t_spin(&t.done, 1, 10000);
  T_EQ(t.rv, -1);
  T_EQ(t.err, ETIMEDOUT);
  T_CHECK(strstr(t.last_error, "handshake timed out after 150 ms") != NULL);
  T_EQ(t_log_lines, 1);
  T_CHECK(t_log_has("TLS connect to 127.0.0.1:"));
  close(lfd);
  /* nobody listens there any more */
  tmo_t r = {.port = port};
  eventer_aco_start(connect_refused, &r);
  t_spin(&r.done, 1, 10000);
  T_EQ(r.rv, -1);
  T_EQ(r.err, ECONNREFUSED);
  teardown();
}

/* closing a TLS event while another coroutine is in its handshake */
static eventer_aco_t close_target;
static int close_hs_rv, close_hs_err, close_done;

static long waiter_tmo_ms = 5000;
static void handshake_waiter(void) {
  struct timeval tmo = t_ms(waiter_tmo_ms);
  close_hs_rv = eventer_aco_ssl_accept(close_target, &tmo);
  close_hs_err = errno;
  close_done++;
}

static void closer(void) {
  int *sv = eventer_aco_arg();
  eventer_ssl_ctx_t *ctx =
      eventer_ssl_ctx_new(SSL_SERVER, NULL, C->srv, C->srv_key, NULL, NULL);
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, sv[0], EVENTER_READ);
  EVENTER_ATTACH_SSL(e, ctx);
  close_target = eventer_set_eventer_aco(e);
  eventer_aco_start(handshake_waiter, NULL);
  struct timeval s = t_ms(20);
  eventer_aco_sleep(&s);
  T_EQ(eventer_aco_close(close_target), 0);
  /* outside a coroutine the helpers refuse; so do a closed event's calls */
  eventer_aco_free(close_target);
  close_done++;
}

static void test_close_during_handshake(void) {
  setup();
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  close_done = 0;
  eventer_aco_start(closer, sv);
  t_spin(&close_done, 2, 5000);
  T_EQ(close_hs_rv, -1);
  T_EQ(close_hs_err, EBADF);
  T_EQ(t_log_lines, 0); /* the caller's doing: nothing to report */
  /* not in a coroutine */
  T_ERRNO(eventer_aco_ssl_accept(NULL, NULL), EINVAL);
  close(sv[1]);
  teardown();
}

/* the creator frees the event while another coroutine is in its handshake:
 * the handshake holds its own reference, ends, and the event goes then */
static void freer(void) {
  int *sv = eventer_aco_arg();
  eventer_ssl_ctx_t *ctx =
      eventer_ssl_ctx_new(SSL_SERVER, NULL, C->srv, C->srv_key, NULL, NULL);
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, sv[0], EVENTER_READ);
  EVENTER_ATTACH_SSL(e, ctx);
  close_target = eventer_set_eventer_aco(e);
  eventer_aco_start(handshake_waiter, NULL);
  struct timeval s = t_ms(20);
  eventer_aco_sleep(&s);
  eventer_aco_free(close_target); /* no close: the waiter still uses it */
  if (waiter_tmo_ms > 1000) T_EQ(write(sv[1], "garbage!", 8), 8);
  close_done++;
}

static void free_during_handshake(long tmo_ms, int want_err) {
  setup();
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  close_done = 0;
  waiter_tmo_ms = tmo_ms;
  int64_t before = eventer_allocations_current();
  eventer_aco_start(freer, sv);
  t_spin(&close_done, 2, 5000);
  T_EQ(close_hs_rv, -1);
  T_EQ(close_hs_err, want_err);
  T_EQ(t_log_lines, 1);
  /* the coroutine layer keeps a woken waiter's registration (it may wait
   * again) until the fd fires with nobody waiting: the peer's hang-up */
  close(sv[1]);
  for (int i = 0; i < 5; i++) ev_turn();
  T_EQ(eventer_allocations_current(), before); /* gone with the last ref */
  close(sv[0]);
  waiter_tmo_ms = 5000;
  teardown();
}

static void test_free_during_handshake(void) {
  /* the handshake fails on garbage; then, with no data at all, it times
   * out after the last other reference is gone (a use after free before
   * the handshake held its own) */
  free_during_handshake(5000, EIO);
  free_during_handshake(100, ETIMEDOUT);
}

T_MAIN({"ctx_errors", test_ctx_errors},
       {"ctx_cache_rebuild", test_ctx_cache_rebuild},
       {"aco_tls12", test_aco_tls12},
       {"aco_tls13", test_aco_tls13},
       {"wait_ready_buffered", test_wait_ready_buffered},
       {"version_mismatch", test_version_mismatch},
       {"rsa_cert", test_rsa_cert},
       {"classic_tls12", test_classic_tls12},
       {"classic_tls13", test_classic_tls13},
       {"alpn", test_alpn},
       {"alpn_ctx_select", test_alpn_ctx_select},
       {"sni_server", test_sni_server},
       {"client_cert", test_client_cert},
       {"resumption", test_resumption},
       {"ticket_while_reading", test_ticket_while_reading},
       {"key_update", test_key_update},
       {"client_side", test_client_side},
       {"client_bad_server_cert", test_client_bad_server_cert},
       {"write_waits_for_read", test_write_waits_for_read},
       {"read_waits_for_write", test_read_waits_for_write},
       {"full_duplex_bulk", test_full_duplex_bulk},
       {"records_per_call", test_records_per_call},
       {"stale_error_queue", test_stale_error_queue},
       {"handshake_skips_read", test_handshake_skips_read},
       {"blocking_fd_handshake", test_blocking_fd_handshake},
       {"keep_buffers", test_keep_buffers},
       {"eventer_config_keys", test_eventer_config_keys},
       {"connect_and_handshake_timeouts", test_connect_and_handshake_timeouts},
       {"close_during_handshake", test_close_during_handshake},
       {"free_during_handshake", test_free_during_handshake})
