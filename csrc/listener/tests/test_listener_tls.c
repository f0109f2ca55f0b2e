/*
 * test_listener_tls.c - TLS listeners (ssl="on" with <sslconfig>) against
 * clients no one here wrote: `openssl s_client` and `curl` as child
 * processes, and OpenSSL's own client API in the client thread.
 *
 *  - configuration: <sslconfig> inherited and merged from the ancestors,
 *    TLS 1.2 and 1.3 (layer), ALPN, client certificates (optional,
 *    required, optional_no_ca, refused: untrusted, expired, revoked by a
 *    CRL; default_ca_chain), the seed's aco function, an aco function, a
 *    classic callback (an HTTP responder for curl), a dispatch type, a
 *    plain listener beside them, fanout, idle_timeout and half-close over
 *    TLS, and every bad <sslconfig> (named with file and line);
 *  - the programmatic API with the same TLS options;
 *  - a stop while handshakes are pending (cut short, not logged), and
 *    mtev_listener_end_handshakes after a stop without a deadline;
 *  - 10,000 bad handshakes against an aco and a classic TLS listener:
 *    plaintext, garbage, truncated and corrupted ClientHellos, hang-ups
 *    and resets, untrusted and expired certificates, handshakes that stall
 *    (silent, truncated, byte by byte) until the handshake timeout.  Each
 *    closes with exactly one log line naming the peer and the reason;
 *    afterwards the live events, acceptor closures and open fds are back
 *    where they started and a good client still gets through.
 *
 * Certificates are made at run time (ssltest.h); no key is committed.
 */
#include "ltest.h"
#include "eventer_aco_impl.h"
#include "mtev_conf.h"

#include "../../eventer/tests/ssltest.h"

#include <openssl/err.h>

static const t_certs_t *C;
static char dir[128];

static pid_t dir_owner;
static void rm_dir(void) {
  if (dir[0] && getpid() == dir_owner) t_rm_rf(dir);
}

static const char *write_conf(const char *name, const char *content) {
  static char path[256];
  if (!dir[0]) {
    snprintf(dir, sizeof(dir), "/tmp/test_listener_tls.XXXXXX");
    T_CHECK(mkdtemp(dir));
    dir_owner = getpid();
    atexit(rm_dir);
  }
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  T_CHECK(f);
  fputs(content, f);
  fclose(f);
  return path;
}

/* The listeners' handshake timeout: room for a good client's handshake
 * on a loaded machine (a first handshake under TSan at load 9 took more
 * than 400 ms and was cut), short enough that the stalled ones end soon */
static int hs_ms(void) { return t_slow() ? 6000 : t_sanitized() ? 3000 : 1000; }

/* ---- services ------------------------------------------------------------------------ */

/* "<who> cn=<peer CN> alpn=<protocol> tls=<version> verify=<result>" */
static int describe(mtev_acceptor_closure_t *ac, eventer_ssl_ctx_t *ctx,
                    const char *who, char *out, size_t len) {
  const uint8_t *alpn = NULL;
  uint8_t alen = 0;
  if (ctx) eventer_ssl_get_alpn_selected(ctx, &alpn, &alen);
  int v = ctx ? eventer_ssl_get_method(ctx) : 0;
  const char *cn = mtev_acceptor_closure_remote_cn(ac);
  return snprintf(out, len, "%s cn=%s alpn=%.*s tls=%s verify=%ld\n", who,
                  cn ? cn : "-", alen ? (int)alen : 1,
                  alen ? (const char *)alpn : "-",
                  v == TLS1_3_VERSION ? "1.3" : v == TLS1_2_VERSION ? "1.2" : "none",
                  ctx ? eventer_ssl_get_verify_result(ctx) : -1L);
}

/* aco: reads a line, answers with describe() */
static void whoami(void) {
  eventer_aco_t e = eventer_aco_arg();
  mtev_acceptor_closure_t *ac = eventer_aco_get_closure(e);
  char line[128], out[512];
  struct timeval tmo = {10, 0};
  if (eventer_aco_read(e, line, sizeof(line), &tmo) > 0) {
    int n = describe(ac, eventer_get_eventer_ssl_ctx((eventer_t)e), "whoami",
                     out, sizeof(out));
    eventer_aco_write(e, out, (size_t)n, &tmo);
  }
  eventer_aco_close(e);
  eventer_aco_free(e);
}

/* classic: an HTTP/1.1 responder whose body is describe() */
typedef struct {
  char in[2048], out[1024];
  size_t inlen, outlen, off;
  int writing;
} http_state_t;

static int classic_http(eventer_t e, int mask, void *closure,
                        struct timeval *now) {
  (void)now;
  mtev_acceptor_closure_t *ac = closure;
  http_state_t *st = mtev_acceptor_closure_ctx(ac);
  if (!st) {
    st = calloc(1, sizeof(*st));
    T_CHECK(st);
    mtev_acceptor_closure_set_ctx(ac, st, free);
  }
  int m;
  if (mask & EVENTER_EXCEPTION) goto done;
  while (!st->writing) {
    int n = eventer_read(e, st->in + st->inlen, sizeof(st->in) - 1 - st->inlen, &m);
    if (n < 0 && errno == EAGAIN) return m;
    if (n <= 0) goto done;
    st->inlen += (size_t)n;
    st->in[st->inlen] = 0;
    if (strstr(st->in, "\r\n\r\n")) {
      char body[512];
      int bl = describe(ac, eventer_get_eventer_ssl_ctx(e), "classic", body,
                        sizeof(body));
      st->outlen = (size_t)snprintf(st->out, sizeof(st->out),
                                    "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                                    "Connection: close\r\n\r\n%s", bl, body);
      st->writing = 1;
    } else if (st->inlen >= sizeof(st->in) - 1) {
      goto done;
    }
  }
  while (st->off < st->outlen) {
    int n = eventer_write(e, st->out + st->off, st->outlen - st->off, &m);
    if (n < 0 && errno == EAGAIN) return m;
    if (n <= 0) goto done;
    st->off += (size_t)n;
  }
done:
  eventer_remove_fde(e);
  eventer_close(e, &m);
  mtev_acceptor_closure_free(ac);
  return 0;
}

/* classic: reads a line, answers "ok" */
typedef struct {
  int got;
} ok_state_t;

static int classic_ok(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)now;
  mtev_acceptor_closure_t *ac = closure;
  int m;
  char buf[128];
  if (!(mask & EVENTER_EXCEPTION)) {
    for (;;) {
      int n = eventer_read(e, buf, sizeof(buf), &m);
      if (n < 0 && errno == EAGAIN) return m;
      if (n > 0 && memchr(buf, '\n', (size_t)n)) {
        eventer_write(e, "ok\n", 3, &m); /* 3 bytes fit any socket buffer */
        break;
      }
      if (n <= 0) break;
    }
  }
  eventer_remove_fde(e);
  eventer_close(e, &m);
  mtev_acceptor_closure_free(ac);
  return 0;
}

/* classic: as classic_ok, but it reads only when the mask says READ (as
 * an HTTP engine may: EVENTER_WRITE alone means "you may write") */
static int classic_strict(eventer_t e, int mask, void *closure,
                          struct timeval *now) {
  (void)now;
  mtev_acceptor_closure_t *ac = closure;
  int m;
  char buf[128];
  if (mask & EVENTER_EXCEPTION) goto done;
  if (!(mask & EVENTER_READ)) return EVENTER_READ | EVENTER_EXCEPTION;
  for (;;) {
    int n = eventer_read(e, buf, sizeof(buf), &m);
    if (n < 0 && errno == EAGAIN) return m;
    if (n > 0 && memchr(buf, '\n', (size_t)n)) {
      eventer_write(e, "ok\n", 3, &m);
      break;
    }
    if (n <= 0) break;
  }
done:
  eventer_remove_fde(e);
  eventer_close(e, &m);
  mtev_acceptor_closure_free(ac);
  return 0;
}

/* aco: reads a line, answers "ok" */
static void aco_ok(void) {
  eventer_aco_t e = eventer_aco_arg();
  char buf[128];
  struct timeval tmo = {10, 0};
  int n = eventer_aco_read(e, buf, sizeof(buf), &tmo);
  if (n > 0) eventer_aco_write(e, "ok\n", 3, &tmo);
  eventer_aco_close(e);
  eventer_aco_free(e);
}

/* dispatch: the binding's start, with the handshake done */
static void disp_start(eventer_t e, void *closure) {
  (void)closure;
  mtev_acceptor_closure_t *ac = eventer_get_closure(e);
  char out[512];
  int m, n = describe(ac, eventer_get_eventer_ssl_ctx(e), "dispatched", out,
                      sizeof(out));
  T_EQ(eventer_write(e, out, (size_t)n, &m), n);
  eventer_close(e, &m);
  eventer_free(e);
  mtev_acceptor_closure_free(ac);
}

static void register_types(void) {
  T_EQ(mtev_listener_register_aco_function("seed", lt_seed_service), 0);
  T_EQ(mtev_listener_register_aco_function("whoami", whoami), 0);
  T_EQ(mtev_listener_register_aco_function("aco_ok", aco_ok), 0);
  T_EQ(mtev_listener_register_aco_dispatch("disp", disp_start, NULL), 0);
  T_EQ(eventer_name_callback("classic_http", classic_http), 0);
  T_EQ(eventer_name_callback("classic_ok", classic_ok), 0);
}

/* ---- clients ------------------------------------------------------------------------- */

/* Runs until the child's output (NUL bytes and all) has needle. */
static void expect_out(t_child_t *c, const char *needle, int ms) {
  uint64_t end = t_now_us() + (uint64_t)(t_slow() ? ms * 5 : ms) * 1000u;
  for (;;) {
    t_child_pump(c);
    if (memmem(c->buf, c->len, needle, strlen(needle))) return;
    if (t_now_us() > end) {
      kill(c->pid, SIGKILL);
      for (size_t i = 0; i < c->len; i++)
        if (!c->buf[i]) c->buf[i] = '.';
      T_FAIL("child output has no \"%s\" after %d ms:\n%s", needle, ms, c->buf);
    }
    usleep(2000);
  }
}

static int out_has(t_child_t *c, const char *needle) {
  return memmem(c->buf, c->len, needle, strlen(needle)) != NULL;
}

/* `openssl s_client` to 127.0.0.1:port, trusting the test CA, with up to
 * 8 more arguments (NULL-terminated). */
static void s_client(t_child_t *c, int port, ...) {
  char hp[64];
  snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
  char *argv[32] = {"openssl", "s_client", "-connect", hp, "-CAfile",
                    (char *)C->ca, "-verify_return_error", "-nocommands"};
  int n = 8;
  va_list ap;
  va_start(ap, port);
  for (char *a; (a = va_arg(ap, char *)) != NULL && n < 30;) argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  t_child_start(c, argv);
}

static int child_done(t_child_t *c) {
  int st = t_child_wait(c, t_slow() ? 60000 : 20000);
  return st;
}

/* s_client with the extra arguments: sends "hi", returns the whoami line
 * (static) or "" when the server refused (the child has exited). */
static t_child_t W; /* the last whoami_via's s_client (its output) */

static const char *whoami_via(int port, const char *a1, const char *a2,
                              const char *a3, const char *a4) {
  static char line[256];
  s_client(&W, port, a1, a2, a3, a4, NULL);
  t_child_send(&W, "hi\n");
  uint64_t end = t_now_us() + (t_slow() ? 60000000u : 15000000u);
  line[0] = 0;
  for (;;) {
    t_child_pump(&W);
    char *w = memmem(W.buf, W.len, "whoami ", 7);
    char *nl = w ? memchr(w, '\n', W.len - (size_t)(w - W.buf)) : NULL;
    if (nl) {
      snprintf(line, sizeof(line), "%.*s", (int)(nl - w), w);
      break;
    }
    int st;
    if (waitpid(W.pid, &st, WNOHANG) == W.pid) { /* refused: it gave up */
      W.pid = -1;
      t_child_pump(&W);
      break;
    }
    T_CHECKF(t_now_us() < end, "s_client: no answer:\n%s", W.buf);
    usleep(2000);
  }
  if (W.pid > 0) {
    t_child_close_in(&W);
    child_done(&W);
  } else {
    close(W.out);
    t_child_close_in(&W);
  }
  return line;
}

static int log_has_cb(void *needle) { return t_log_has(needle); }
static void wait_log(const char *needle) {
  lt_wait_for(log_has_cb, (void *)needle, 10000, needle);
}

/* ---- from the configuration ------------------------------------------------------------ */

/* listener `name` (a struct find) has the <sslconfig> merged from its
 * ancestors: its own layer and alpn, <listeners>' certificate */
static int check_opts(mtev_listener_t *l, void *closure) {
  const char *name = closure;
  if (strcmp(mtev_listener_get_name(l), name)) return 0;
  mtev_listener_opts_t o;
  T_EQ(mtev_listener_get_opts(l, &o), 0);
  T_EQ(o.ssl, mtev_true);
  T_STR_EQ(mtev_hash_dict_get(o.sslconfig, "layer"), "tlsv1.3");
  T_STR_EQ(mtev_hash_dict_get(o.sslconfig, "alpn"), "x-test,http/1.1");
  T_STR_EQ(mtev_hash_dict_get(o.sslconfig, "certificate_file"), C->srv);
  return 1;
}

static int P[10];

static void body_conf(void) {
  register_types();
  char xml[8192];
  int tries = 0;
again: /* on fresh ports when one was taken before the bind */
  for (int i = 0; i < 10; i++) P[i] = lt_free_port();
  snprintf(xml, sizeof(xml),
           "<app>\n"
           "  <listeners address=\"127.0.0.1\">\n"
           "    <sslconfig>\n"
           "      <certificate_file>%s</certificate_file>\n"
           "      <key_file>%s</key_file>\n"
           "      <handshake_timeout>%d</handshake_timeout>\n"
           "    </sslconfig>\n"
           "    <config><read_timeout_ms>10000</read_timeout_ms></config>\n"
           /* 0: the seed's function, everything inherited; fanout */
           "    <listener type=\"seed\" port=\"%d\" ssl=\"on\" fanout=\"on\"/>\n"
           "    <group ssl=\"on\">\n"
           "      <sslconfig><layer>tlsv1.2</layer></sslconfig>\n"
           /* 1: TLS 1.2 only */
           "      <listener type=\"whoami\" port=\"%d\"/>\n"
           /* 2: TLS 1.3 only (replaces the group's layer), ALPN */
           "      <listener type=\"whoami\" port=\"%d\">\n"
           "        <sslconfig><layer>tlsv1.3</layer>\n"
           "          <alpn>x-test,http/1.1</alpn></sslconfig>\n"
           "      </listener>\n"
           "    </group>\n"
           /* 3: classic HTTP for curl, http/1.1, optional client certs */
           "    <listener type=\"classic_http\" port=\"%d\" ssl=\"on\">\n"
           "      <sslconfig><alpn>http/1.1</alpn><ca_chain>%s</ca_chain></sslconfig>\n"
           "    </listener>\n"
           /* 4: client certificates required, with a CRL */
           "    <listener type=\"whoami\" port=\"%d\" ssl=\"on\">\n"
           "      <sslconfig><ca_chain>%s</ca_chain><crl>%s</crl>\n"
           "        <client_cert>required</client_cert></sslconfig>\n"
           "    </listener>\n"
           /* 5: optional_no_ca (the CA: default_ca_chain) */
           "    <listener type=\"whoami\" port=\"%d\" ssl=\"on\">\n"
           "      <sslconfig><client_cert>optional</client_cert>\n"
           "        <optional_no_ca>true</optional_no_ca></sslconfig>\n"
           "    </listener>\n"
           /* 6: required, judged by default_ca_chain */
           "    <listener type=\"whoami\" port=\"%d\" ssl=\"on\">\n"
           "      <sslconfig><client_cert>required</client_cert></sslconfig>\n"
           "    </listener>\n"
           /* 7: plain, beside them */
           "    <listener type=\"seed\" port=\"%d\" ssl=\"off\"/>\n"
           /* 8: a dispatch type over TLS */
           "    <listener type=\"disp\" port=\"%d\" ssl=\"on\"/>\n"
           /* 9: idle_timeout over TLS */
           "    <listener type=\"seed\" port=\"%d\" ssl=\"on\" accept_thread=\"off\">\n"
           "      <config><idle_timeout>%d</idle_timeout></config>\n"
           "    </listener>\n"
           "  </listeners>\n"
           "</app>\n",
           C->srv, C->srv_key, hs_ms(), P[0], P[1], P[2], P[3], C->ca, P[4], C->ca,
           C->crl, P[5], P[6], P[7], P[8], P[9], t_slow() ? 3000 : 1000);
  char err[2048];
  T_EQ(mtev_conf_load_ex(write_conf("tls.conf", xml), err, sizeof(err)), 0);
  if (mtev_listener_init_ex("app", err, sizeof(err)) != 0) {
    T_CHECKF(lt_port_taken(err) && ++tries < 10, "%s", err);
    goto again;
  }
  t_log_capture();

  /* 0: the seed's function over TLS: thanks!, thanks!, quitter! */
  const char *vers[] = {"-tls1_3", "-tls1_2"};
  for (int i = 0; i < 2; i++) {
    t_child_t c;
    s_client(&c, P[0], (char *)vers[i], NULL);
    t_child_send(&c, "hello\n");
    expect_out(&c, "thanks!", 15000);
    T_CHECK(out_has(&c, i == 0 ? "New, TLSv1.3" : "New, TLSv1.2"));
    T_CHECK(out_has(&c, "Verification: OK"));
    c.len = 0; /* the next answer afresh */
    t_child_send(&c, "more\n");
    expect_out(&c, "thanks!", 15000);
    t_child_send(&c, "quit\n");
    expect_out(&c, "quitter!", 15000);
    T_EQ(child_done(&c), 0); /* the server closed; s_client is done */
  }

  /* 1: TLS 1.2 only; a TLS 1.3-only client is refused (one line) */
  T_STR_EQ(whoami_via(P[1], NULL, NULL, NULL, NULL),
           "whoami cn=- alpn=- tls=1.2 verify=0");
  T_STR_EQ(whoami_via(P[1], "-tls1_3", NULL, NULL, NULL), "");
  wait_log("unsupported protocol");

  /* sessions resume across a listener's connections (they share one
   * SSL_CTX): TLS 1.2 from the server's session cache (no tickets), TLS
   * 1.3 by ticket */
  char sess[300];
  snprintf(sess, sizeof(sess), "%s/sess12.pem", dir);
  T_CHECK(whoami_via(P[1], "-no_ticket", "-sess_out", sess, NULL)[0]);
  T_CHECKF(out_has(&W, "New, TLSv1.2"), "%s", W.buf);
  T_CHECK(whoami_via(P[1], "-no_ticket", "-sess_in", sess, NULL)[0]);
  T_CHECKF(out_has(&W, "Reused, TLSv1.2"), "%s", W.buf);
  snprintf(sess, sizeof(sess), "%s/sess13.pem", dir);
  T_CHECK(whoami_via(P[2], "-sess_out", sess, NULL, NULL)[0]);
  T_CHECKF(out_has(&W, "New, TLSv1.3"), "%s", W.buf);
  T_CHECK(whoami_via(P[2], "-sess_in", sess, NULL, NULL)[0]);
  T_CHECKF(out_has(&W, "Reused, TLSv1.3"), "%s", W.buf);

  /* 2: TLS 1.3 only; ALPN from the settings, in the client's order */
  T_STR_EQ(whoami_via(P[2], "-alpn", "x-other,x-test", NULL, NULL),
           "whoami cn=- alpn=x-test tls=1.3 verify=0");
  T_STR_EQ(whoami_via(P[2], "-alpn", "http/1.1,x-test", NULL, NULL),
           "whoami cn=- alpn=http/1.1 tls=1.3 verify=0");
  T_STR_EQ(whoami_via(P[2], "-alpn", "x-other", NULL, NULL),
           "whoami cn=- alpn=- tls=1.3 verify=0");
  T_STR_EQ(whoami_via(P[2], "-tls1_2", NULL, NULL, NULL), "");

  /* 3: curl over HTTPS to a classic callback: ALPN http/1.1, with and
   * without a client certificate; an untrusted one is refused */
  {
    char url[64];
    snprintf(url, sizeof(url), "https://localhost:%d/", P[3]);
    char resolve[64];
    snprintf(resolve, sizeof(resolve), "localhost:%d:127.0.0.1", P[3]);
    t_child_t c;
    char *a1[] = {"curl", "-sS", "-v", "--max-time", "20", "--cacert",
                  (char *)C->ca, "--resolve", resolve, url, NULL};
    t_child_start(&c, a1);
    T_EQ(child_done(&c), 0);
    T_CHECKF(out_has(&c, "classic cn=- alpn=http/1.1 tls=1.3 verify="), "%s", c.buf);
    T_CHECKF(out_has(&c, "ALPN: server accepted http/1.1"), "%s", c.buf);
    char *a2[] = {"curl", "-sS", "--max-time", "20", "--cacert", (char *)C->ca,
                  "--cert", (char *)C->cli, "--key", (char *)C->cli_key,
                  "--tlsv1.2", "--tls-max", "1.2", "--resolve", resolve, url, NULL};
    t_child_start(&c, a2);
    T_EQ(child_done(&c), 0);
    T_CHECKF(out_has(&c, "classic cn=client.example alpn=http/1.1 tls=1.2 verify=0"),
             "%s", c.buf);
    char *a3[] = {"curl", "-sS", "--max-time", "20", "--cacert", (char *)C->ca,
                  "--cert", (char *)C->self, "--key", (char *)C->self_key,
                  "--resolve", resolve, url, NULL};
    t_child_start(&c, a3);
    T_NE(child_done(&c), 0);
    T_CHECK(!out_has(&c, "classic cn="));
    wait_log("(self-signed certificate)");
  }

  /* 4: required + CRL */
  T_STR_EQ(whoami_via(P[4], "-cert", C->cli, "-key", C->cli_key),
           "whoami cn=client.example alpn=- tls=1.3 verify=0");
  T_STR_EQ(whoami_via(P[4], NULL, NULL, NULL, NULL), "");
  wait_log("peer did not return a certificate");
  T_STR_EQ(whoami_via(P[4], "-cert", C->rev, "-key", C->cli_key), "");
  wait_log("(certificate revoked)");
  T_STR_EQ(whoami_via(P[4], "-cert", C->cli_exp, "-key", C->cli_key), "");
  wait_log("(certificate has expired)");

  /* 5: optional_no_ca: a self-signed certificate is let in (its CN is
   * reported, the verification result says it is not trusted); no
   * certificate is fine too */
  T_STR_EQ(whoami_via(P[5], "-cert", C->self, "-key", C->self_key),
           "whoami cn=localhost alpn=- tls=1.3 verify=18");
  T_STR_EQ(whoami_via(P[5], "-cert", C->cli, "-key", C->cli_key),
           "whoami cn=client.example alpn=- tls=1.3 verify=0");
  T_STR_EQ(whoami_via(P[5], NULL, NULL, NULL, NULL),
           "whoami cn=- alpn=- tls=1.3 verify=0");

  /* 6: default_ca_chain judges client certificates */
  T_STR_EQ(whoami_via(P[6], "-cert", C->cli, "-key", C->cli_key),
           "whoami cn=client.example alpn=- tls=1.3 verify=0");
  T_STR_EQ(whoami_via(P[6], "-cert", C->self, "-key", C->self_key), "");

  /* 7: plain */
  int fd = lt_connect_port(P[7]);
  lt_send(fd, "quit\n");
  lt_expect(fd, "quitter!\n", 0);
  close(fd);

  /* 8: dispatch, after the handshake */
  {
    t_child_t c;
    s_client(&c, P[8], "-cert", C->cli, "-key", C->cli_key, NULL);
    expect_out(&c, "dispatched cn=- alpn=- tls=1.3 verify=", 15000);
    t_child_close_in(&c);
    child_done(&c);
  }

  /* 9: idle_timeout: activity (TLS reads) keeps it open, silence closes
   * it; the seed's write after the EOF fails (half_close off) */
  {
    t_child_t c;
    s_client(&c, P[9], NULL);
    /* a line every tenth of the timeout until well past it: each gap
     * (the sleep and the round trip through s_client) has nine tenths of
     * the timeout of room on a loaded machine */
    int idle = t_slow() ? 3000 : 1000;
    for (uint64_t t1 = t_now_us(); t_now_us() - t1 < (uint64_t)idle * 1300u;) {
      t_child_send(&c, "line\n");
      expect_out(&c, "thanks!", 15000);
      c.len = 0; /* the next answer afresh */
      usleep((useconds_t)idle * 100u);
    }
    uint64_t t0 = t_now_us();
    child_done(&c); /* s_client exits at the EOF (no close_notify: an error) */
    T_GE(t_now_us() - t0, (uint64_t)idle * 1000u / 2u);
  }

  /* the settings in effect: TLS, with the merged <sslconfig> */
  struct find {
    char name[64];
    int found;
  } f;
  snprintf(f.name, sizeof(f.name), "127.0.0.1:%d", P[2]);
  f.found = 0;
  T_EQ(mtev_listener_foreach(check_opts, f.name), 1);
  t_log_release();
}

static void test_conf(void) {
  C = t_certs_get();
  T_EQ(eventer_impl_propset("default_ca_chain", C->ca), 0);
  lt_run(3, body_conf);
  mtev_conf_fini();
}

/* ---- bad configuration ------------------------------------------------------------------ */

static void expect_init_error(const char *file, const char *inner, int err_no,
                              const char *w1, const char *w2) {
  char xml[4096], err[2048];
  snprintf(xml, sizeof(xml),
           "<app><listeners type=\"whoami\" address=\"127.0.0.1\" ssl=\"on\">\n"
           "%s</listeners></app>\n", inner);
  T_EQ(mtev_conf_load_ex(write_conf(file, xml), err, sizeof(err)), 0);
  errno = 0;
  T_EQ(mtev_listener_init_ex("app", err, sizeof(err)), -1);
  T_CHECKF(errno == err_no, "errno %s, want %s: %s", strerror(errno),
           strerror(err_no), err);
  T_CHECKF(strstr(err, w1), "\"%s\" lacks \"%s\"", err, w1);
  if (w2) T_CHECKF(strstr(err, w2), "\"%s\" lacks \"%s\"", err, w2);
  T_CHECK(lt_connect_port(P[0]) < 0); /* nothing listens */
}

static void body_errors(void) {
  register_types();
  P[0] = lt_free_port();
  char in[2048], ok[1024];
  snprintf(ok, sizeof(ok), "<certificate_file>%s</certificate_file><key_file>%s</key_file>",
           C->srv, C->srv_key);
#define BAD(file, extra, err_no, w1, w2)                                              \
  do {                                                                                \
    snprintf(in, sizeof(in), "<sslconfig>%s%s</sslconfig>\n<listener port=\"%d\"/>", \
             ok, extra, P[0]);                                                        \
    expect_init_error(file, in, err_no, w1, w2);                                      \
  } while (0)
  /* no <sslconfig> at all */
  snprintf(in, sizeof(in), "<listener port=\"%d\"/>", P[0]);
  expect_init_error("nossl.conf", in, EINVAL, "nossl.conf:2",
                    "<sslconfig> with certificate_file and key_file");
  /* a missing key */
  snprintf(in, sizeof(in), "<sslconfig><certificate_file>%s</certificate_file>"
           "</sslconfig>\n<listener port=\"%d\"/>", C->srv, P[0]);
  expect_init_error("nokey.conf", in, EINVAL, "nokey.conf:3", "key_file");
  /* files that cannot be used */
  snprintf(in, sizeof(in), "<sslconfig><certificate_file>/nonexistent.pem"
           "</certificate_file><key_file>%s</key_file></sslconfig>\n"
           "<listener port=\"%d\"/>", C->srv_key, P[0]);
  expect_init_error("nocert.conf", in, ENOENT, "nocert.conf:3",
                    "cannot read certificate file /nonexistent.pem");
  snprintf(in, sizeof(in), "<sslconfig><certificate_file>%s</certificate_file>"
           "<key_file>%s</key_file></sslconfig>\n<listener port=\"%d\"/>",
           C->srv, C->rsa_key, P[0]);
  expect_init_error("mismatch.conf", in, EIO, "mismatch.conf:3", "does not match");
  BAD("ca.conf", "<ca_chain>/nonexistent-ca.pem</ca_chain>", ENOENT, "ca.conf:3",
      "/nonexistent-ca.pem");
  BAD("crl.conf", "<crl>/nonexistent-crl.pem</crl>", ENOENT, "crl.conf:3",
      "/nonexistent-crl.pem");
  /* bad values */
  BAD("layer.conf", "<layer>tlsv9</layer>", EINVAL, "layer.conf:3", "tlsv9");
  BAD("ciphers.conf", "<ciphers>NO-SUCH-CIPHER</ciphers>", EINVAL, "ciphers.conf:3",
      "NO-SUCH-CIPHER");
  BAD("alpn.conf", "<alpn>h2,,x</alpn>", EINVAL, "alpn.conf:3", "alpn");
  BAD("cc.conf", "<client_cert>always</client_cert>", EINVAL, "cc.conf:3",
      "client_cert=\"always\"");
  BAD("noca.conf", "<client_cert>required</client_cert>", EINVAL, "noca.conf:3",
      "needs a ca_chain");
  BAD("noca2.conf", "<client_cert>optional</client_cert>", EINVAL, "noca2.conf:3",
      "client_cert=\"optional\" needs a ca_chain");
  BAD("bool.conf", "<optional_no_ca>sure</optional_no_ca>", EINVAL, "bool.conf:3",
      "sslconfig optional_no_ca=\"sure\"");
  BAD("hs.conf", "<handshake_timeout>soon</handshake_timeout>", EINVAL, "hs.conf:3",
      "sslconfig handshake_timeout=\"soon\"");
  BAD("hs0.conf", "<handshake_timeout>0</handshake_timeout>", EINVAL, "hs0.conf:3",
      "handshake_timeout=\"0\"");
  snprintf(in, sizeof(in), "<listener port=\"%d\" ssl=\"perhaps\"/>", P[0]);
  expect_init_error("sslattr.conf", in, EINVAL, "sslattr.conf:2", "ssl=\"perhaps\"");
#undef BAD
  /* an unknown key is logged and ignored; the listener runs */
  t_log_capture();
  snprintf(in, sizeof(in), "<app><listeners type=\"whoami\" address=\"127.0.0.1\" "
           "ssl=\"on\"><sslconfig>%s<colour>blue</colour></sslconfig>\n"
           "<listener port=\"%d\"/></listeners></app>\n", ok, P[0]);
  char err[1024];
  T_EQ(mtev_conf_load_ex(write_conf("unknown.conf", in), err, sizeof(err)), 0);
  T_CHECKF(mtev_listener_init_ex("app", err, sizeof(err)) == 0, "%s", err);
  T_CHECK(t_log_has("ignoring unknown sslconfig key \"colour\""));
  T_STR_EQ(whoami_via(P[0], NULL, NULL, NULL, NULL),
           "whoami cn=- alpn=- tls=1.3 verify=0");
  t_log_release();
}

static void test_bad_configuration(void) {
  C = t_certs_get();
  lt_run(2, body_errors);
  mtev_conf_fini();
}

/* ---- the programmatic API ------------------------------------------------------------------ */

static mtev_hash_table *table(const char *k, ...) {
  static mtev_hash_table h;
  mtev_hash_destroy(&h, NULL, NULL);
  mtev_hash_init(&h);
  va_list ap;
  va_start(ap, k);
  for (; k; k = va_arg(ap, const char *)) {
    const char *v = va_arg(ap, const char *);
    T_EQ(mtev_hash_replace(&h, k, (int)strlen(k), (void *)v, NULL, NULL), 1);
  }
  va_end(ap);
  return &h;
}

static void body_api(void) {
  mtev_listener_opts_t o = {
      .address = "127.0.0.1",
      .aco_function = whoami,
      .ssl = mtev_true,
      .sslconfig = table("certificate_file", C->rsa, "key_file", C->rsa_key,
                         "alpn", "x-prog", "ca_chain", C->ca, NULL)};
  mtev_listener_t *l = lt_make(&o);
  table(NULL); /* copied: the listener does not need the caller's table */
  int port = mtev_listener_get_port(l);
  T_STR_EQ(whoami_via(port, "-alpn", "x-prog", NULL, NULL),
           "whoami cn=- alpn=x-prog tls=1.3 verify=0");
  T_STR_EQ(whoami_via(port, "-cert", C->cli, "-key", C->cli_key),
           "whoami cn=client.example alpn=- tls=1.3 verify=0");
  mtev_listener_opts_t got;
  T_EQ(mtev_listener_get_opts(l, &got), 0);
  T_EQ(got.ssl, mtev_true);
  T_STR_EQ(mtev_hash_dict_get(got.sslconfig, "certificate_file"), C->rsa);
  T_STR_EQ(mtev_hash_dict_get(got.sslconfig, "alpn"), "x-prog");
  /* a classic callback given as a function pointer, on the loop's
   * acceptor */
  mtev_listener_opts_t oc = {
      .address = "127.0.0.1",
      .callback = classic_ok,
      .accept_in_loop = mtev_true,
      .ssl = mtev_true,
      .sslconfig = table("certificate_file", C->srv, "key_file", C->srv_key,
                         "layer", "tlsv1.2", NULL)};
  mtev_listener_t *lc = lt_make(&oc);
  t_child_t c;
  s_client(&c, mtev_listener_get_port(lc), NULL);
  t_child_send(&c, "hi\n");
  expect_out(&c, "ok\n", 15000);
  T_CHECK(out_has(&c, "New, TLSv1.2"));
  T_EQ(child_done(&c), 0);
  /* bad TLS options: EINVAL / ENOENT with the reason, nothing bound */
  char err[1024];
  oc.sslconfig = table("certificate_file", C->srv, NULL);
  errno = 0;
  T_CHECK(mtev_listener_create(&oc, err, sizeof(err)) == NULL);
  T_EQ(errno, EINVAL);
  T_CHECKF(strstr(err, "key_file"), "%s", err);
  oc.sslconfig = NULL;
  T_CHECK(mtev_listener_create(&oc, err, sizeof(err)) == NULL);
  oc.sslconfig = table("certificate_file", "/nonexistent.pem", "key_file",
                       C->srv_key, NULL);
  errno = 0;
  T_CHECK(mtev_listener_create(&oc, err, sizeof(err)) == NULL);
  T_EQ(errno, ENOENT);
  T_CHECKF(strstr(err, "/nonexistent.pem"), "%s", err);
  /* ssl off: the sslconfig is not looked at */
  oc.ssl = mtev_false;
  mtev_listener_t *lp = lt_make(&oc);
  int fd = lt_connect(lp);
  lt_send(fd, "hi\n");
  lt_expect(fd, "ok\n", 0);
  close(fd);
  table(NULL);
  mtev_listener_release(l);
  mtev_listener_release(lc);
  mtev_listener_release(lp);
}

static void test_api(void) {
  C = t_certs_get();
  lt_run(2, body_api);
}

/* ---- the client's first data comes with its Finished ------------------------------------ */

static void set_rcvtimeo(int fd, int ms);

/* A TLS 1.3 client whose Finished and first data ("hi\n") leave in one
 * send(), so the server's handshake reads both: the data is in OpenSSL's
 * buffer, not in the socket, when the service gets the connection.  1 if
 * the server answered "ok". */
static int finished_with_data(int port) {
  SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
  T_CHECK(sc);
  SSL_CTX_set_min_proto_version(sc, TLS1_3_VERSION);
  SSL *ssl = SSL_new(sc);
  BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(rb, -1);
  SSL_set_bio(ssl, rb, wb);
  SSL_set_connect_state(ssl);
  int fd = t_connect_blocking(port);
  set_rcvtimeo(fd, t_slow() ? 30000 : 5000);
  char buf[16384];
  int ok = 0, hs;
  for (;;) {
    hs = SSL_do_handshake(ssl);
    if (hs == 1) T_EQ(SSL_write(ssl, "hi\n", 3), 3); /* joins the Finished */
    int pending = (int)BIO_ctrl_pending(wb);
    if (pending > 0) {
      T_CHECK(pending <= (int)sizeof(buf));
      T_EQ(BIO_read(wb, buf, pending), pending);
      T_EQ(send(fd, buf, (size_t)pending, MSG_NOSIGNAL), pending);
    }
    if (hs == 1) break;
    T_EQ(SSL_get_error(ssl, hs), SSL_ERROR_WANT_READ);
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r <= 0) goto out;
    BIO_write(rb, buf, (int)r);
  }
  for (;;) { /* tickets, then the answer */
    int n = SSL_read(ssl, buf, sizeof(buf));
    if (n > 0) {
      ok = n == 3 && !memcmp(buf, "ok\n", 3);
      break;
    }
    if (SSL_get_error(ssl, n) != SSL_ERROR_WANT_READ) break;
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r <= 0) break; /* EOF, or no answer in time */
    BIO_write(rb, buf, (int)r);
  }
out:
  SSL_free(ssl);
  SSL_CTX_free(sc);
  ERR_clear_error();
  close(fd);
  return ok;
}

static void body_first_data(void) {
  mtev_hash_table *sc = table("certificate_file", C->srv, "key_file", C->srv_key,
                              NULL);
  mtev_listener_opts_t oc = {.address = "127.0.0.1", .callback = classic_strict,
                             .ssl = mtev_true, .sslconfig = sc};
  mtev_listener_opts_t oa = {.address = "127.0.0.1", .aco_function = aco_ok,
                             .ssl = mtev_true, .sslconfig = sc};
  mtev_listener_t *lc = lt_make(&oc), *la = lt_make(&oa);
  table(NULL);
  /* the classic callback's first call says READ|WRITE, so it reads what
   * the handshake buffered; the aco function's read finds it too */
  for (int i = 0; i < 20; i++) {
    T_EQ(finished_with_data(mtev_listener_get_port(lc)), 1);
    T_EQ(finished_with_data(mtev_listener_get_port(la)), 1);
  }
  mtev_listener_release(lc);
  mtev_listener_release(la);
}

static void test_first_data_with_finished(void) {
  C = t_certs_get();
  lt_run(2, body_first_data);
}

/* ---- the hand-off to a start function that converts at once --------------------------- */

/* A start declared with mtev_listener_aco_dispatch_converts, as the Go
 * binding's: the event comes still registered, as the handshake left it,
 * and the conversion adopts that registration.  Each connection records
 * whether its event was registered when it came, and whether, after a
 * read that waited for the client and a write, it still had that
 * registration: the loop numbers each registration (reg_epoch), so an
 * epoll_ctl DEL and ADD pair shows as a new number.  Half of them sleep
 * before reading, so the fd may fire with nobody waiting (the aco event
 * then leaves the loop, and the read's wait registers it again). */
static int conv_registered, conv_kept, conv_served, conv_n;

static void conv_body(void) {
  eventer_t e = eventer_aco_arg();
  mtev_acceptor_closure_t *ac = eventer_get_closure(e);
  int registered = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == EV_ST_FD;
  uint32_t epoch = e->reg_epoch;
  int sleeper = INC(&conv_n) % 2 == 0;
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  T_CHECK(ae);
  T_EQ(eventer_is_aco(e), mtev_true);
  struct timeval tmo = {t_slow() ? 60 : 10, 0}, nap = {0, 50000};
  if (sleeper) eventer_aco_sleep(&nap);
  char buf[64];
  int n = eventer_aco_read(ae, buf, sizeof(buf), &tmo);
  if (n > 0 && eventer_aco_write(ae, "ok\n", 3, &tmo) == 3) {
    if (registered) INC(&conv_registered);
    if (!sleeper && registered && __atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == EV_ST_FD &&
        e->reg_epoch == epoch)
      INC(&conv_kept);
    INC(&conv_served);
  }
  eventer_aco_close(ae);
  eventer_aco_free(ae);
  mtev_acceptor_closure_free(ac);
}

static void conv_start(eventer_t e, void *closure) {
  (void)closure;
  eventer_aco_start(conv_body, e); /* runs now, up to its first wait */
}

/* a classic callback run for its registration cannot convert its own
 * event (the loop would apply the callback's return value to the aco
 * event): EINVAL, and it stays classic.  (Its first call is a trigger,
 * unregistered; a later one, when the client's line came after that, is
 * for the registration.) */
static int conv_tried_in_cb, conv_refused_in_cb;
static int classic_conv(eventer_t e, int mask, void *closure, struct timeval *now) {
  if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == EV_ST_FD) {
    INC(&conv_tried_in_cb);
    errno = 0;
    if (ev_aco_fd_convert(e, ev_loop_self()) == -1 && errno == EINVAL && !eventer_is_aco(e))
      INC(&conv_refused_in_cb);
  }
  return classic_ok(e, mask, closure, now);
}

static void body_handoff(void) {
  conv_registered = conv_kept = conv_served = conv_n = 0;
  conv_tried_in_cb = conv_refused_in_cb = 0;
  T_EQ(mtev_listener_aco_dispatch_converts(NULL), -1);
  T_EQ(errno, EINVAL);
  T_EQ(mtev_listener_aco_dispatch_converts(conv_start), 0);
  T_EQ(mtev_listener_aco_dispatch_converts(conv_start), 0); /* once is enough */
  mtev_hash_table *sc = table("certificate_file", C->srv, "key_file", C->srv_key, NULL);
  mtev_listener_opts_t o = {.address = "127.0.0.1", .dispatch = conv_start,
                            .ssl = mtev_true, .sslconfig = sc};
  mtev_listener_opts_t oc = {.address = "127.0.0.1", .callback = classic_conv,
                             .ssl = mtev_true, .sslconfig = sc};
  mtev_listener_t *l = lt_make(&o), *lc = lt_make(&oc);
  table(NULL);
  const int n = 6;
  for (int i = 0; i < n; i++) {
    t_child_t c;
    s_client(&c, mtev_listener_get_port(l), NULL);
    t_child_send(&c, "hi\n");
    expect_out(&c, "ok\n", 15000);
    T_EQ(child_done(&c), 0);
  }
  t_child_t c;
  s_client(&c, mtev_listener_get_port(lc), NULL);
  t_child_send(&c, "hi\n");
  expect_out(&c, "ok\n", 15000);
  T_EQ(child_done(&c), 0);
  mtev_listener_release(l);
  mtev_listener_release(lc);
  T_EQ(LOADA(&conv_served), n);
  T_EQ(LOADA(&conv_registered), n); /* handed over registered */
  T_EQ(LOADA(&conv_kept), n / 2);   /* and kept (those that did not sleep) */
  T_EQ(LOADA(&conv_refused_in_cb), LOADA(&conv_tried_in_cb));
}

static void test_handoff_keeps_registration(void) {
  C = t_certs_get();
  lt_run(2, body_handoff);
}

/* ---- a stop while handshakes are pending ----------------------------------------------- */

static void body_stop(void) {
  t_log_capture();
  mtev_hash_table *sc = table("certificate_file", C->srv, "key_file", C->srv_key,
                              "handshake_timeout", "60000", NULL);
  mtev_listener_opts_t oa = {.address = "127.0.0.1", .aco_function = aco_ok,
                             .ssl = mtev_true, .sslconfig = sc};
  mtev_listener_opts_t oc = {.address = "127.0.0.1", .callback = classic_ok,
                             .ssl = mtev_true, .sslconfig = sc};
  mtev_listener_t *la = lt_make(&oa), *lc = lt_make(&oc);
  table(NULL);
  /* silent connections, and ones that sent half a ClientHello */
  int fds[4];
  fds[0] = lt_connect(la);
  fds[1] = lt_connect(lc);
  fds[2] = lt_connect(la);
  fds[3] = lt_connect(lc);
  lt_send(fds[2], "\x16\x03\x01\x01\x00\x01");
  lt_send(fds[3], "\x16\x03\x01\x01\x00\x01");
  uint64_t end = t_now_us() + 10000000u;
  while (lt_stat(la, 1) < 2 || lt_stat(lc, 1) < 2) {
    T_CHECK(t_now_us() < end);
    usleep(2000);
  }
  struct timeval now = {0, 0}, tmo = {10, 0};
  T_EQ(mtev_listener_stop(la, &now), 0);
  T_EQ(mtev_listener_stop(lc, &now), 0);
  T_EQ(mtev_listener_wait(la, &tmo), 0);
  T_EQ(mtev_listener_wait(lc, &tmo), 0);
  for (int i = 0; i < 4; i++) {
    lt_expect_eof(fds[i]);
    close(fds[i]);
  }
  /* cut short on purpose: no TLS failure logged */
  T_CHECKF(!t_log_has("TLS accept"), "%s", t_log_buf);
  mtev_listener_release(la);
  mtev_listener_release(lc);
  t_log_release();
}

static void test_stop_during_handshake(void) {
  C = t_certs_get();
  lt_run(2, body_stop);
}

/* A stop without a deadline (a binding that ends its own connections)
 * leaves handshakes running until mtev_listener_end_handshakes ends them,
 * at once and quietly. */
static void body_end_handshakes(void) {
  t_log_capture();
  mtev_hash_table *sc = table("certificate_file", C->srv, "key_file", C->srv_key,
                              "handshake_timeout", "60000", NULL);
  mtev_listener_opts_t oc = {.address = "127.0.0.1", .callback = classic_ok,
                             .ssl = mtev_true, .sslconfig = sc};
  mtev_listener_t *lc = lt_make(&oc);
  table(NULL);
  T_EQ(mtev_listener_end_handshakes(lc), -1); /* still running */
  T_EQ(errno, EINVAL);
  T_EQ(mtev_listener_end_handshakes(NULL), -1);
  int fds[2];
  fds[0] = lt_connect(lc);
  fds[1] = lt_connect(lc);
  lt_send(fds[1], "\x16\x03\x01\x01\x00\x01");
  uint64_t end = t_now_us() + 10000000u;
  while (lt_stat(lc, 1) < 2) {
    T_CHECK(t_now_us() < end);
    usleep(2000);
  }
  struct timeval zero = {0, 0}, tmo = {10, 0};
  T_EQ(mtev_listener_stop(lc, NULL), 0);
  T_EQ(mtev_listener_wait(lc, &zero), -1); /* no deadline: still there */
  T_EQ(errno, ETIMEDOUT);
  uint64_t t0 = t_now_us();
  T_EQ(mtev_listener_end_handshakes(lc), 0);
  T_EQ(mtev_listener_wait(lc, &tmo), 0);
  T_CHECKF(t_now_us() - t0 < 5000000u, "ended after %llu us",
           (unsigned long long)(t_now_us() - t0));
  for (int i = 0; i < 2; i++) {
    lt_expect_eof(fds[i]);
    close(fds[i]);
  }
  T_CHECKF(!t_log_has("TLS accept"), "%s", t_log_buf);
  mtev_listener_release(lc);
  t_log_release();
}

static void test_end_handshakes(void) {
  C = t_certs_get();
  lt_run(2, body_end_handshakes);
}

/* ---- idle_timeout does not cut a handshake short -------------------------------------- */

static void body_idle_hs(void) {
  t_log_capture();
  int hs = t_slow() ? 3000 : 600, idle = hs / 6;
  char hsb[16], idleb[16];
  snprintf(hsb, sizeof(hsb), "%d", hs);
  snprintf(idleb, sizeof(idleb), "%d", idle);
  mtev_hash_table config = MTEV_HASH_EMPTY;
  mtev_hash_store(&config, "idle_timeout", 12, idleb);
  mtev_hash_table *sc = table("certificate_file", C->srv, "key_file", C->srv_key,
                              "handshake_timeout", hsb, NULL);
  mtev_listener_opts_t oa = {.address = "127.0.0.1", .aco_function = aco_ok,
                             .ssl = mtev_true, .sslconfig = sc, .config = &config};
  mtev_listener_opts_t oc = {.address = "127.0.0.1", .callback = classic_ok,
                             .ssl = mtev_true, .sslconfig = sc, .config = &config};
  mtev_listener_t *ls[2] = {lt_make(&oa), lt_make(&oc)};
  table(NULL);
  mtev_hash_destroy(&config, NULL, NULL);
  for (int i = 0; i < 2; i++) {
    uint64_t t0 = t_now_us(); /* before the connect: the deadline is after it */
    int fd = lt_connect(ls[i]);
    lt_expect_eof(fd); /* silent: closed at the handshake deadline */
    T_GE(t_now_us() - t0, (uint64_t)hs * 1000u * 9u / 10u);
    close(fd);
    char want[64];
    snprintf(want, sizeof(want), "handshake timed out after %d ms", hs);
    wait_log(want);
  }
  T_CHECK(!t_log_has("during the handshake"));
  /* after the handshake, idle_timeout applies: an idle TLS connection is
   * shut down (the aco function's read sees EOF) */
  SSL_CTX *sc2 = SSL_CTX_new(TLS_client_method());
  T_CHECK(sc2);
  int fd = lt_connect(ls[0]);
  SSL *ssl = SSL_new(sc2);
  SSL_set_fd(ssl, fd);
  /* timed from before the handshake: the server's side of it may end
   * (and its idle time begin) before SSL_connect returns here */
  uint64_t t0 = t_now_us();
  T_EQ(SSL_connect(ssl), 1);
  char buf[8];
  T_CHECK(SSL_read(ssl, buf, sizeof(buf)) <= 0); /* closed, nothing sent */
  uint64_t took = t_now_us() - t0;
  T_GE(took, (uint64_t)idle * 1000u * 9u / 10u);
  T_CHECKF(took < (uint64_t)hs * 1000u * 5u, "%llu us", (unsigned long long)took);
  SSL_free(ssl);
  SSL_CTX_free(sc2);
  ERR_clear_error();
  close(fd);
  mtev_listener_release(ls[0]);
  mtev_listener_release(ls[1]);
  t_log_release();
}

static void test_idle_during_handshake(void) {
  C = t_certs_get();
  lt_run(2, body_idle_hs);
}

/* ---- 10,000 bad handshakes ------------------------------------------------------------------- */

static struct {
  int port[2]; /* aco, classic */
  int made;    /* bad connections */
  int stalled; /* of which meant to time out */
  unsigned char hello[2048];
  int hello_len;
} K;

static void set_rcvtimeo(int fd, int ms) {
  struct timeval tv = t_ms(ms);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* reads until EOF, error or timeout: the server hangs up on us */
static void drain(int fd) {
  char buf[4096];
  set_rcvtimeo(fd, 10000);
  while (recv(fd, buf, sizeof(buf), 0) > 0) {
  }
}

static void raw(int port, const void *data, size_t len, int how) {
  int fd = t_connect_blocking(port);
  if (len) T_EQ(send(fd, data, len, MSG_NOSIGNAL), (long long)len);
  if (how == 1) { /* reset */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  } else if (how == 2) {
    shutdown(fd, SHUT_WR);
    drain(fd);
  } else if (how == 3) {
    drain(fd);
  }
  close(fd);
  K.made++;
}

static SSL_CTX *client_ctx(const char *cert, const char *key) {
  SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
  T_CHECK(sc != NULL);
  T_EQ(SSL_CTX_load_verify_locations(sc, C->ca, NULL), 1);
  SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
  if (cert) {
    T_EQ(SSL_CTX_use_certificate_file(sc, cert, SSL_FILETYPE_PEM), 1);
    T_EQ(SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM), 1);
  }
  return sc;
}

/* a full TLS client; 1 if the server answered "ok" */
static int tls_client(int port, SSL_CTX *sc) {
  int fd = t_connect_blocking(port);
  set_rcvtimeo(fd, 10000);
  SSL *ssl = SSL_new(sc);
  SSL_set_fd(ssl, fd);
  int ok = 0;
  if (SSL_connect(ssl) == 1 && SSL_write(ssl, "hi\n", 3) == 3) {
    char buf[8];
    ok = SSL_read(ssl, buf, sizeof(buf)) == 3 && !memcmp(buf, "ok\n", 3);
    if (ok) SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  ERR_clear_error();
  close(fd);
  return ok;
}

static void make_hello(void) {
  SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
  SSL *ssl = SSL_new(sc);
  BIO *rd = BIO_new(BIO_s_mem()), *wr = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(rd, -1);
  SSL_set_bio(ssl, rd, wr);
  T_EQ(SSL_connect(ssl), -1);
  K.hello_len = BIO_read(wr, K.hello, sizeof(K.hello));
  T_GE(K.hello_len, 100);
  SSL_free(ssl);
  SSL_CTX_free(sc);
  ERR_clear_error();
}

/* connections that stall, held open together until the server gives up:
 * silent, a truncated ClientHello that never ends, one byte at a time */
static void stallers(int port, int each) {
  int n = 3 * each, fds[96];
  T_LE(n, 96);
  for (int i = 0; i < n; i++) {
    fds[i] = t_connect_blocking(port);
    if (i % 3 == 1) T_EQ(send(fds[i], K.hello, 40, MSG_NOSIGNAL), 40);
    K.made++;
    K.stalled++;
  }
  uint64_t t0 = t_now_us(), end = t0 + 60000000u;
  int open = n, gone[96] = {0};
  size_t pos = 0;
  while (open > 0 && t_now_us() < end) {
    for (int i = 0; i < n; i++) {
      if (gone[i]) continue;
      char c;
      ssize_t r = recv(fds[i], &c, 1, MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        gone[i] = 1;
        open--;
        continue;
      }
      if (i % 3 == 2 && pos < (size_t)K.hello_len)
        send(fds[i], K.hello + pos, 1, MSG_NOSIGNAL);
    }
    pos++;
    usleep(10000);
  }
  T_EQ(open, 0);
  /* not before the handshake timeout */
  T_GE(t_now_us() - t0, (uint64_t)hs_ms() * 1000u * 9u / 10u);
  for (int i = 0; i < n; i++) close(fds[i]);
}

static int both_idle(void *arg) {
  mtev_listener_t **ls = arg;
  return lt_stat(ls[0], 1) == 0 && lt_stat(ls[1], 1) == 0;
}

static int accept_lines(void) {
  pthread_mutex_lock(&t_log_lock);
  int n = t_log_accept_lines;
  pthread_mutex_unlock(&t_log_lock);
  return n;
}

/* A connection counts as ended (its closure freed) a moment before its
 * loop drops the last reference to its event: waits (5 s at most) for
 * the live events to come down to `want`. */
static void settle(int64_t want) {
  uint64_t end = t_now_us() + 5000000u;
  while (eventer_allocations_current() > want && t_now_us() < end) usleep(1000);
}

static void body_bad(void) {
  char hs[16];
  snprintf(hs, sizeof(hs), "%d", hs_ms());
  mtev_hash_table *sc = table("certificate_file", C->srv, "key_file", C->srv_key,
                              "ca_chain", C->ca, "handshake_timeout", hs, NULL);
  mtev_listener_opts_t oa = {.address = "127.0.0.1", .aco_function = aco_ok,
                             .ssl = mtev_true, .sslconfig = sc, .backlog = 1024};
  mtev_listener_opts_t oc = {.address = "127.0.0.1", .callback = classic_ok,
                             .ssl = mtev_true, .sslconfig = sc, .backlog = 1024,
                             .fanout = mtev_true};
  mtev_listener_t *ls[2] = {lt_make(&oa), lt_make(&oc)};
  table(NULL);
  memset(&K, 0, sizeof(K));
  K.port[0] = mtev_listener_get_port(ls[0]);
  K.port[1] = mtev_listener_get_port(ls[1]);
  make_hello();
  SSL_CTX *good = client_ctx(C->cli, C->cli_key);
  SSL_CTX *untrusted = client_ctx(C->self, C->self_key);
  SSL_CTX *expired = client_ctx(C->cli_exp, C->cli_key);
  /* warm up: cached SSL_CTX, coroutine stacks, the fd table; the events
   * are the listeners' own again once the loops have dropped their last
   * references to the warm-up connections' */
  int64_t ev_listeners = eventer_allocations_current();
  for (int i = 0; i < 2; i++) T_EQ(tls_client(K.port[i], good), 1);
  lt_wait_for(both_idle, ls, 10000, "the warm-up connections to end");
  settle(ev_listeners);
  int64_t ev0 = eventer_allocations_current();
  int64_t ac0 = mtev_acceptor_closures_live();
  int fd0 = lt_fd_count();
  T_EQ(ac0, 0);
  t_log_capture();

  static const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
  unsigned char garbage[256], corrupt[2048], oversized[8];
  for (size_t i = 0; i < sizeof(garbage); i++) garbage[i] = (unsigned char)(i * 131 + 7);
  memcpy(corrupt, K.hello, (size_t)K.hello_len);
  size_t sid = 5 + 4 + 2 + 32, cs = sid + 1 + corrupt[sid];
  corrupt[cs] = 0xff; /* an absurd cipher suites length */
  corrupt[cs + 1] = 0xfe;
  memcpy(oversized, "\x16\x03\x01\xff\xff\x01\x00\x00", 8);
  long rounds = t_scale(10000, 40);
  if (t_sanitized()) rounds /= 2; /* ASan/TSan: a bit gentler */
  int tls_bad = 0;
  for (long r = 0; r < rounds; r++) {
    int port = K.port[r & 1];
    switch ((r >> 1) % 8) {
    case 0: raw(port, http, sizeof(http) - 1, 3); break;          /* plaintext */
    case 1: raw(port, garbage, sizeof(garbage), 3); break;        /* garbage */
    case 2: raw(port, K.hello, (size_t)K.hello_len / 2, 2); break; /* truncated */
    case 3: raw(port, NULL, 0, 0); break;                         /* connect, close */
    case 4: raw(port, K.hello, 3, 1); break;                      /* reset */
    case 5: raw(port, corrupt, (size_t)K.hello_len, 3); break;    /* corrupted */
    case 6: raw(port, oversized, sizeof(oversized), 3); break;    /* oversized */
    default: /* now and then a full handshake with a refused certificate */
      if ((r >> 1) % 64 == 7) {
        T_EQ(tls_client(port, untrusted), 0);
        K.made++;
        tls_bad++;
      } else if ((r >> 1) % 64 == 15) {
        T_EQ(tls_client(port, expired), 0);
        K.made++;
        tls_bad++;
      } else {
        raw(port, http, 10, 3); /* a slice of plaintext */
      }
      break;
    }
    if (r == rounds / 2) {
      stallers(K.port[0], 8);
      stallers(K.port[1], 8);
    }
  }
  lt_wait_for(both_idle, ls, 60000, "every bad connection to end");
  int bad = K.made;
  printf("  %d bad handshakes (%d stalled, %d refused certificates)\n", bad,
         K.stalled, tls_bad);
  T_GE(bad, rounds);
  /* exactly one line per connection, naming the peer and the reason */
  wait_log("handshake timed out");
  uint64_t end = t_now_us() + 10000000u;
  while (accept_lines() < bad && t_now_us() < end) usleep(5000);
  pthread_mutex_lock(&t_log_lock);
  int lines = t_log_lines, alines = t_log_accept_lines;
  pthread_mutex_unlock(&t_log_lock);
  T_EQ(alines, bad);
  T_EQ(lines, bad);
  T_CHECK(t_log_has("http request"));
  T_CHECK(t_log_has("wrong version number"));
  T_CHECK(t_log_has("during the handshake"));
  T_CHECK(t_log_has("Connection reset by peer"));
  T_CHECK(t_log_has("handshake timed out after"));
  if (tls_bad) {
    T_CHECK(t_log_has("(self-signed certificate)"));
  }
  /* nothing leaked */
  settle(ev0);
  T_EQ(mtev_acceptor_closures_live(), ac0);
  T_EQ(eventer_allocations_current(), ev0);
  T_EQ(lt_fd_count(), fd0);
  /* and the good still get in */
  T_EQ(tls_client(K.port[0], good), 1);
  T_EQ(tls_client(K.port[1], good), 1);
  SSL_CTX_free(good);
  SSL_CTX_free(untrusted);
  SSL_CTX_free(expired);
  mtev_listener_release(ls[0]);
  mtev_listener_release(ls[1]);
  t_log_release();
}

static void test_bad_handshakes(void) {
  C = t_certs_get();
  lt_run(3, body_bad);
}

T_MAIN({"conf", test_conf},
       {"bad_configuration", test_bad_configuration},
       {"api", test_api},
       {"first_data_with_finished", test_first_data_with_finished},
       {"handoff_keeps_registration", test_handoff_keeps_registration},
       {"stop_during_handshake", test_stop_during_handshake},
       {"end_handshakes", test_end_handshakes},
       {"idle_during_handshake", test_idle_during_handshake},
       {"bad_handshakes", test_bad_handshakes})
