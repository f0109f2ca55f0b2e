/*
 * ssltest.h - what the TLS tests share: certificates made at run time with
 * the openssl command (into a temp dir removed at exit: no key is ever
 * committed), real TLS peers (`openssl s_client`, `openssl s_server`) run
 * as child processes while the test's loop keeps running, a captured log,
 * loopback sockets and fd counting.
 */
#ifndef SSLTEST_H
#define SSLTEST_H

#include "evtest.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "eventer_SSL_fd_opset.h"
#include "eventer_aco.h"

/* ---- certificates --------------------------------------------------------- */

typedef struct {
  char dir[256];
  char ca[300], ca_key[300];        /* Test CA (EC P-256) */
  char srv[300], srv_key[300];      /* CN=localhost, SAN localhost,127.0.0.1 */
  char rsa[300], rsa_key[300];      /* the same name, RSA 2048 */
  char a[300], a_key[300];          /* CN=a.example (SNI) */
  char b[300], b_key[300];          /* CN=b.example (SNI) */
  char cli[300], cli_key[300];      /* CN=client.example, a client cert */
  char exp[300];                    /* CN=localhost, expired (srv_key) */
  char cli_exp[300];                /* CN=client.example, expired (cli_key) */
  char self[300], self_key[300];    /* CN=localhost, self-signed: untrusted */
  char big[300], big_key[300];      /* CN=localhost with ~2500 SANs (~60 KB) */
  char rev[300];                    /* CN=client.example, revoked (cli_key) */
  char crl[300];                    /* the test CA's CRL: rev is revoked */
} t_certs_t;

static t_certs_t t_certs;
static int t_certs_made;

static inline void t_rm_rf(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  char p[600];
  while ((de = readdir(d)) != NULL) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

static pid_t t_certs_owner;
static inline void t_certs_cleanup(void) {
  if (t_certs_made && getpid() == t_certs_owner) t_rm_rf(t_certs.dir);
}

static inline void t_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void t_sh(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  int rc = system(cmd);
  if (rc != 0) T_FAIL("command failed (%d): %s", rc, cmd);
}

static inline void t_write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  T_CHECK(f != NULL);
  fputs(text, f);
  T_EQ(fclose(f), 0);
}

/* A leaf for `cn` signed by the test CA: key (new unless key_exists),
 * certificate valid `days` (negative: expired), with extensions `ext`. */
static inline void t_leaf(const char *cn, const char *key, int key_exists,
                   const char *out, int days, const char *ext,
                   const char *keyalg) {
  static int serial = 100;
  const char *d = t_certs.dir;
  char extf[400], csr[400];
  T_CHECK(snprintf(extf, sizeof(extf), "%s/ext-%d.cnf", d, serial) <
          (int)sizeof(extf));
  T_CHECK(snprintf(csr, sizeof(csr), "%s/req-%d.csr", d, serial) <
          (int)sizeof(csr));
  t_write_file(extf, ext);
  if (key_exists)
    t_sh("openssl req -new -key %s -out %s -subj /CN=%s -config %s/min.cnf "
         "2>/dev/null", key, csr, cn, d);
  else
    t_sh("openssl req -new -newkey %s -nodes -keyout %s -out %s -subj /CN=%s "
         "-config %s/min.cnf 2>/dev/null", keyalg, key, csr, cn, d);
  t_sh("openssl x509 -req -in %s -CA %s -CAkey %s -set_serial %d -days %d "
       "-out %s -extfile %s 2>/dev/null", csr, t_certs.ca, t_certs.ca_key,
       serial++, days, out, extf);
}

#define T_EC "ec -pkeyopt ec_paramgen_curve:P-256"

/* Makes every certificate once per test program (about 20 openssl runs). */
static const t_certs_t *t_certs_get(void) {
  if (t_certs_made) return &t_certs;
  t_certs_t *c = &t_certs;
  const char *tmp = getenv("TMPDIR");
  snprintf(c->dir, sizeof(c->dir), "%s/acoev-tls-XXXXXX", tmp ? tmp : "/tmp");
  T_CHECK(mkdtemp(c->dir) != NULL);
  t_certs_made = 1;
  t_certs_owner = getpid();
  atexit(t_certs_cleanup);
#define P(f, n) T_CHECK(snprintf(c->f, sizeof(c->f), "%s/" n, c->dir) < (int)sizeof(c->f))
  P(ca, "ca.pem"); P(ca_key, "ca.key");
  P(srv, "srv.pem"); P(srv_key, "srv.key");
  P(rsa, "rsa.pem"); P(rsa_key, "rsa.key");
  P(a, "a.pem"); P(a_key, "a.key");
  P(b, "b.pem"); P(b_key, "b.key");
  P(cli, "cli.pem"); P(cli_key, "cli.key");
  P(exp, "exp.pem"); P(cli_exp, "cli-exp.pem");
  P(self, "self.pem"); P(self_key, "self.key");
  P(big, "big.pem"); P(big_key, "big.key");
  P(rev, "rev.pem"); P(crl, "crl.pem");
#undef P
  char p[400];
  T_CHECK(snprintf(p, sizeof(p), "%s/min.cnf", c->dir) < (int)sizeof(p));
  t_write_file(p, "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = x\n");
  t_sh("openssl req -x509 -newkey " T_EC " -nodes -keyout %s -out %s -days 2 "
       "-subj '/CN=Test CA' -config %s/min.cnf "
       "-addext basicConstraints=critical,CA:TRUE "
       "-addext keyUsage=critical,keyCertSign,cRLSign "
       "-addext subjectKeyIdentifier=hash 2>/dev/null",
       c->ca_key, c->ca, c->dir);
  const char *srv_ext =
      "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
      "extendedKeyUsage=serverAuth,clientAuth\n"
      "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  t_leaf("localhost", c->srv_key, 0, c->srv, 2, srv_ext, T_EC);
  t_leaf("localhost", c->rsa_key, 0, c->rsa, 2, srv_ext, "rsa:2048");
  t_leaf("localhost", c->srv_key, 1, c->exp, -1, srv_ext, T_EC);
  t_leaf("a.example", c->a_key, 0, c->a, 2,
         "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
         "subjectAltName=DNS:a.example\n", T_EC);
  t_leaf("b.example", c->b_key, 0, c->b, 2,
         "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
         "subjectAltName=DNS:b.example\n", T_EC);
  const char *cli_ext = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
                        "subjectAltName=DNS:client.example\n";
  t_leaf("client.example", c->cli_key, 0, c->cli, 2, cli_ext, T_EC);
  t_leaf("client.example", c->cli_key, 1, c->cli_exp, -1, cli_ext, T_EC);
  t_leaf("client.example", c->cli_key, 1, c->rev, 2, cli_ext, T_EC);
  /* a CRL of the test CA that revokes `rev` */
  t_sh("printf '[ca]\\ndefault_ca = tca\\n[tca]\\ndatabase = %s/index.txt\\n"
       "crlnumber = %s/crlnumber\\ndefault_md = sha256\\ndefault_crl_days = 2\\n' "
       "> %s/ca.cnf && : > %s/index.txt && echo 01 > %s/crlnumber",
       c->dir, c->dir, c->dir, c->dir, c->dir);
  t_sh("openssl ca -config %s/ca.cnf -keyfile %s -cert %s -revoke %s "
       ">/dev/null 2>&1", c->dir, c->ca_key, c->ca, c->rev);
  t_sh("openssl ca -config %s/ca.cnf -keyfile %s -cert %s -gencrl -out %s "
       ">/dev/null 2>&1", c->dir, c->ca_key, c->ca, c->crl);
  t_sh("openssl req -x509 -newkey " T_EC " -nodes -keyout %s -out %s -days 2 "
       "-subj /CN=localhost -config %s/min.cnf "
       "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null",
       c->self_key, c->self, c->dir);
  /* a certificate big enough that the server's first flight cannot fit in
   * small socket buffers */
  size_t cap = 200000, used = 0;
  char *big = malloc(cap);
  T_CHECK(big != NULL);
  used += (size_t)snprintf(big + used, cap - used,
                           "basicConstraints=CA:FALSE\nsubjectAltName=@alt\n"
                           "[alt]\nDNS.1=localhost\n");
  for (int i = 2; i <= 2500; i++)
    used += (size_t)snprintf(big + used, cap - used,
                             "DNS.%d=host-%05d.big.example\n", i, i);
  t_leaf("localhost", c->big_key, 0, c->big, 2, big, T_EC);
  free(big);
  return c;
}

/* The contents of a file (malloc'd, NUL-terminated). */
static inline char *t_slurp(const char *path) {
  FILE *f = fopen(path, "r");
  T_CHECK(f != NULL);
  char *buf = calloc(1, 1 << 20);
  T_CHECK(buf != NULL);
  size_t n = fread(buf, 1, (1 << 20) - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

/* ---- captured log ------------------------------------------------------------- */

static pthread_mutex_t t_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char t_log_buf[4 << 20];
static size_t t_log_len;
static int t_log_lines;
static int t_log_accept_lines; /* "TLS accept from 127.0.0.1:... failed: <reason>" */
static int t_log_echo = -1; /* also print (for debugging; TLS_TEST_LOG=1) */

static inline void t_log_writer(mtev_log_stream_t ls, const char *line, size_t len,
                         void *closure) {
  (void)ls, (void)closure;
  pthread_mutex_lock(&t_log_lock);
  if (t_log_len + len < sizeof(t_log_buf) - 1) {
    memcpy(t_log_buf + t_log_len, line, len);
    t_log_len += len;
    t_log_buf[t_log_len] = 0;
  }
  for (size_t i = 0; i < len; i++)
    if (line[i] == '\n') t_log_lines++;
  const char *f = memmem(line, len, "TLS accept from 127.0.0.1:", 26);
  const char *r = f ? memmem(f, len - (size_t)(f - line), ") failed: ", 10) : NULL;
  if (r && line + len - (r + 10) > 2) t_log_accept_lines++; /* a reason */
  pthread_mutex_unlock(&t_log_lock);
  if (t_log_echo < 0) t_log_echo = getenv("TLS_TEST_LOG") != NULL;
  if (t_log_echo) fwrite(line, 1, len, stderr);
}

static inline void t_log_capture(void) {
  pthread_mutex_lock(&t_log_lock);
  t_log_len = 0;
  t_log_buf[0] = 0;
  t_log_lines = 0;
  t_log_accept_lines = 0;
  pthread_mutex_unlock(&t_log_lock);
  mtev_log_set_writer(t_log_writer, NULL);
}

static inline void t_log_release(void) { mtev_log_set_writer(NULL, NULL); }

static inline int t_log_has(const char *needle) {
  pthread_mutex_lock(&t_log_lock);
  int r = strstr(t_log_buf, needle) != NULL;
  pthread_mutex_unlock(&t_log_lock);
  return r;
}

/* ---- sockets and fds ------------------------------------------------------------ */

/* A non-blocking listening socket on 127.0.0.1, any port. */
static inline int t_listen(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  T_CHECK(fd >= 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  T_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  T_EQ(listen(fd, 1024), 0);
  socklen_t sl = sizeof(sa);
  T_EQ(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
  *port = ntohs(sa.sin_port);
  return fd;
}

static inline struct sockaddr_in t_addr(int port) {
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons((uint16_t)port);
  return sa;
}

/* A blocking client socket connected to port (for client threads). */
static inline int t_connect_blocking(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  T_CHECK(fd >= 0);
  struct sockaddr_in sa = t_addr(port);
  T_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return fd;
}

static inline int t_count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  T_CHECK(d != NULL);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the DIR's own fd */
}

static inline struct timeval t_ms(long v) {
  struct timeval t = {v / 1000, (v % 1000) * 1000};
  return t;
}

/* Spins the loop (each wait at most 2 ms) until *flag >= want. */
static inline void t_spin(volatile int *flag, int want, int timeout_ms) {
  struct timeval w = {0, 2000};
  uint64_t end = t_now_us() + (uint64_t)timeout_ms * 1000u;
  while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) < want) {
    if (t_now_us() > end)
      T_FAIL("timed out: %d < %d after %d ms", *flag, want, timeout_ms);
    T_EQ(eventer_run_once(NULL, &w), EVENTER_RUN_DONE);
  }
}

/* ---- child processes: real TLS peers ---------------------------------------------- */

typedef struct {
  pid_t pid;
  int in;  /* its stdin, -1 once closed */
  int out; /* its stdout and stderr, non-blocking */
  char buf[1 << 17];
  size_t len;
  int status; /* after t_child_wait */
} t_child_t;

static inline void t_child_start(t_child_t *c, char *const argv[]) {
  int in[2], out[2];
  /* a child that exits early must not kill us when we write to its stdin
   * (the TLS layer itself never raises SIGPIPE: test_eventer_ssl_bad) */
  signal(SIGPIPE, SIG_IGN);
  T_EQ(pipe2(in, O_CLOEXEC), 0);
  T_EQ(pipe2(out, O_CLOEXEC), 0);
  fflush(stdout);
  fflush(stderr);
  c->len = 0;
  c->buf[0] = 0;
  c->pid = fork();
  T_CHECK(c->pid >= 0);
  if (c->pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(out[1], 2);
    execvp(argv[0], argv);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  c->in = in[1];
  c->out = out[0];
  fcntl(c->out, F_SETFL, O_NONBLOCK);
}

/* Reads what is there; 1 at EOF. */
static inline int t_child_pump(t_child_t *c) {
  for (;;) {
    if (c->len >= sizeof(c->buf) - 1) return 0;
    ssize_t r = read(c->out, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
    if (r > 0) {
      c->len += (size_t)r;
      c->buf[c->len] = 0;
      continue;
    }
    if (r == 0) return 1;
    return 0;
  }
}

static inline void t_child_send(t_child_t *c, const char *s) {
  T_EQ(write(c->in, s, strlen(s)), (long long)strlen(s));
}

static inline void t_child_close_in(t_child_t *c) {
  if (c->in >= 0) close(c->in);
  c->in = -1;
}

/* Runs the loop until the child's output contains needle. */
static inline void t_child_expect(t_child_t *c, const char *needle, int timeout_ms) {
  struct timeval w = {0, 2000};
  uint64_t end = t_now_us() + (uint64_t)timeout_ms * 1000u;
  for (;;) {
    t_child_pump(c);
    if (strstr(c->buf, needle)) return;
    if (t_now_us() > end) {
      kill(c->pid, SIGKILL);
      T_FAIL("child output has no \"%s\" after %d ms:\n%s", needle, timeout_ms,
             c->buf);
    }
    if (eventer_loop_current())
      T_EQ(eventer_run_once(NULL, &w), EVENTER_RUN_DONE);
    else
      usleep(2000);
  }
}

/* Runs the loop until the child exits; returns its exit status. */
static inline int t_child_wait(t_child_t *c, int timeout_ms) {
  struct timeval w = {0, 2000};
  uint64_t end = t_now_us() + (uint64_t)timeout_ms * 1000u;
  for (;;) {
    t_child_pump(c);
    int st;
    pid_t r = waitpid(c->pid, &st, WNOHANG);
    if (r == c->pid) {
      t_child_pump(c);
      close(c->out);
      t_child_close_in(c);
      c->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return c->status;
    }
    if (t_now_us() > end) {
      kill(c->pid, SIGKILL);
      waitpid(c->pid, &st, 0);
      T_FAIL("child did not exit after %d ms; output:\n%s", timeout_ms, c->buf);
    }
    if (eventer_loop_current())
      T_EQ(eventer_run_once(NULL, &w), EVENTER_RUN_DONE);
    else
      usleep(2000);
  }
}

/* `openssl s_server ... -accept 127.0.0.1:0`: waits for its ACCEPT line
 * and returns the port. */
static inline int t_s_server_port(t_child_t *c) {
  t_child_expect(c, "ACCEPT", 10000);
  char *p = strstr(c->buf, "ACCEPT");
  char *nl = strchr(p, '\n');
  while (!nl) {
    t_child_expect(c, "\n", 10000);
    p = strstr(c->buf, "ACCEPT");
    nl = strchr(p, '\n');
  }
  char *colon = NULL;
  for (char *q = p; q < nl; q++)
    if (*q == ':') colon = q;
  T_CHECK(colon != NULL);
  return atoi(colon + 1);
}

/* ---- a handshake between two contexts on the loop -------------------------- */

/* One end of t_hs_pair's connection: its outcome (rv 0: handshake done
 * and the byte exchanged; -2: handshake done, exchange failed), errno,
 * and what it saw of the session. */
typedef struct {
  eventer_t raw;
  eventer_aco_t e;
  int rv, err, done;
  char alpn[32], peer_cn[64];
  long verify;
} t_hs_end_t;

static t_hs_end_t t_sv __attribute__((unused)), t_cl __attribute__((unused));

static __attribute__((unused)) int t_hs_nop_cb(eventer_t e, int m, void *c,
                                               struct timeval *n) {
  (void)e, (void)m, (void)c, (void)n;
  return 0;
}

static __attribute__((unused)) void t_hs_record(t_hs_end_t *x) {
  eventer_ssl_ctx_t *ctx = eventer_get_eventer_ssl_ctx((eventer_t)x->e);
  const uint8_t *a;
  uint8_t al;
  eventer_ssl_get_alpn_selected(ctx, &a, &al);
  snprintf(x->alpn, sizeof(x->alpn), "%.*s", (int)al, a ? (const char *)a : "");
  if (eventer_ssl_get_peer_commonname(ctx, x->peer_cn, sizeof(x->peer_cn)) < 0)
    x->peer_cn[0] = 0;
  x->verify = eventer_ssl_get_verify_result(ctx);
}

static __attribute__((unused)) void t_hs_server(void) {
  struct timeval tmo = t_ms(30000);
  t_sv.e = eventer_set_eventer_aco(t_sv.raw); /* in a coroutine of the loop */
  t_sv.rv = eventer_aco_ssl_accept(t_sv.e, &tmo);
  t_sv.err = errno;
  if (t_sv.rv == 0) {
    t_hs_record(&t_sv);
    char c;
    /* the client's "x" proves the session works both ways */
    if (eventer_aco_read(t_sv.e, &c, 1, &tmo) != 1 || c != 'x') t_sv.rv = -2;
  }
  eventer_aco_close(t_sv.e);
  eventer_aco_free(t_sv.e);
  t_sv.done = 1;
}

static __attribute__((unused)) void t_hs_client(void) {
  struct timeval tmo = t_ms(30000);
  t_cl.e = eventer_set_eventer_aco(t_cl.raw);
  t_cl.rv = eventer_aco_ssl_connect(t_cl.e, &tmo);
  t_cl.err = errno;
  if (t_cl.rv == 0) {
    t_hs_record(&t_cl);
    eventer_aco_write(t_cl.e, "x", 1, &tmo);
  }
  eventer_aco_close(t_cl.e);
  eventer_aco_free(t_cl.e);
  t_cl.done = 1;
}

/* Runs a handshake between server context s and client context c (both
 * consumed) over a socketpair, each end a coroutine of the running loop,
 * and a byte from the client; 0 if both ends completed it, else -1.  The
 * ends' outcomes are left in t_sv and t_cl. */
static __attribute__((unused)) int t_hs_pair(eventer_ssl_ctx_t *s,
                                             eventer_ssl_ctx_t *c) {
  T_CHECK(s != NULL && c != NULL);
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  memset(&t_sv, 0, sizeof(t_sv));
  memset(&t_cl, 0, sizeof(t_cl));
  eventer_t se = eventer_alloc_fd(t_hs_nop_cb, NULL, sv[0], EVENTER_READ);
  eventer_t ce = eventer_alloc_fd(t_hs_nop_cb, NULL, sv[1], EVENTER_READ);
  T_EQ(eventer_set_eventer_ssl_ctx_ex(se, s), 0);
  T_EQ(eventer_set_eventer_ssl_ctx_ex(ce, c), 0);
  t_sv.raw = se;
  t_cl.raw = ce;
  eventer_aco_start(t_hs_server, NULL);
  eventer_aco_start(t_hs_client, NULL);
  t_spin(&t_sv.done, 1, 40000);
  t_spin(&t_cl.done, 1, 40000);
  if (getenv("TLS_TEST_LOG"))
    fprintf(stderr, "t_hs_pair: server %d (%s), client %d (%s)\n", t_sv.rv,
            strerror(t_sv.err), t_cl.rv, strerror(t_cl.err));
  return t_sv.rv == 0 && t_cl.rv == 0 ? 0 : -1;
}

#endif /* SSLTEST_H */
