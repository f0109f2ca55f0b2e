/*
 * bench_tls.c - the TLS opset measured next to its peers, same process,
 * same run.  The server is one eventer loop on the main thread (pinned to
 * BENCH_CPU, default the last CPU); the client is a thread with plain
 * blocking OpenSSL pinned to CLIENT_CPU (default 0), over loopback TCP.
 *
 *   bench_tls echo N CERT KEY CA    64-byte round trips over one TLS 1.3
 *       connection: a coroutine server (eventer_aco_read/write) against a
 *       classic fd callback server doing the same (eventer_read/write with
 *       the masks the TLS opset asks for)
 *   bench_tls bulk MIB CERT KEY CA  MIB MiB written by a coroutine in 1 MiB
 *       eventer_aco_write calls: over TLS 1.3 against over plain TCP
 *   bench_tls handshake N CERT KEY CA   N connections each doing a full
 *       TLS 1.3 handshake (ECDHE + the certificate's signature), and N
 *       resuming the previous session (a ticket), each with a 1-byte
 *       exchange; the server accepts in a coroutine
 *   bench_tls listener N CERT KEY CA   N full TLS 1.3 handshakes and
 *       1-byte exchanges through a TLS listener (mtev_listener, ssl on,
 *       an aco function, accepting on the loop) against the same through
 *       the hand-written accept loop above: what the listener adds
 *
 * Each figure is the median of RUNS (default 5) runs per side, the sides
 * taking turns (ONLY=first or ONLY=second: one side alone, as
 * bench/tls/instr.sh runs it; TLS13_CIPHERS sets the client's TLS 1.3
 * suites).  Server CPU is the loop thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID) over the run.  Output: "name value" lines.
 */
#define BENCH_NAME "bench_tls"
#include "../bench_util.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "acoeventer.h"

enum { M_ACO_ECHO, M_CLASSIC_ECHO, M_BULK_TLS, M_BULK_PLAIN, M_HS_FULL, M_HS_RESUMED,
       M_HS_LISTENER };

static const char *cert, *key, *ca;
static int mode, port, lfd;
static int raw_port, listener_port; /* the accept loop's, the listener's */
static long n_items;             /* round trips, bytes, handshakes */
static int conns_done;           /* server connections finished */
static volatile int client_done;
static double client_secs;       /* timed part, measured by the client */
static long client_count;        /* what the client completed */
static SSL_CTX *client_ctx;

static double now_s(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dummy_cb(eventer_t e, int m, void *c, struct timeval *n) {
  (void)e, (void)m, (void)c, (void)n;
  return 0;
}

static eventer_ssl_ctx_t *server_ctx(void) {
  eventer_ssl_ctx_t *ctx = eventer_ssl_ctx_new(SSL_SERVER, "tlsv1.3", cert, key, NULL, NULL);
  if (!ctx) die("eventer_ssl_ctx_new");
  return ctx;
}

/* ---- server: coroutines -------------------------------------------------- */

static int aco_write_all(eventer_aco_t e, const char *p, size_t n) {
  while (n > 0) {
    int w = eventer_aco_write(e, p, n, NULL);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static char bulk_buf[1 << 20];

static void aco_conn(void) {
  int fd = (int)(intptr_t)eventer_aco_arg();
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, fd, EVENTER_READ);
  int tls = mode != M_BULK_PLAIN;
  if (tls) EVENTER_ATTACH_SSL(e, server_ctx());
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  struct timeval tmo = {10, 0};
  if (tls && eventer_aco_ssl_accept(ae, &tmo) != 0) fail("server handshake");
  char buf[256];
  switch (mode) {
  case M_ACO_ECHO:
    for (;;) {
      int r = eventer_aco_read(ae, buf, sizeof(buf), NULL);
      if (r <= 0) break;
      if (aco_write_all(ae, buf, (size_t)r) != 0) break;
    }
    break;
  case M_BULK_TLS:
  case M_BULK_PLAIN:
    for (long sent = 0; sent < n_items; sent += (long)sizeof(bulk_buf))
      if (aco_write_all(ae, bulk_buf, sizeof(bulk_buf)) != 0) fail("bulk write");
    break;
  default: /* handshakes: one byte each way */
    if (eventer_aco_read(ae, buf, 1, NULL) == 1) aco_write_all(ae, "k", 1);
    break;
  }
  eventer_aco_close(ae);
  eventer_aco_free(ae);
  conns_done++;
}

/* ---- server: a TLS listener's aco function ----------------------------------- */

static void listener_conn(void) {
  eventer_aco_t ae = eventer_aco_arg(); /* TLS is up */
  char b[4];
  if (eventer_aco_read(ae, b, 1, NULL) == 1) aco_write_all(ae, "k", 1);
  eventer_aco_close(ae);
  eventer_aco_free(ae);
  conns_done++;
}

/* ---- server: classic callbacks ------------------------------------------- */

typedef struct {
  int handshaken, len, off;
  char buf[256];
} classic_t;

static int classic_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)mask, (void)now;
  classic_t *c = closure;
  int want = 0;
  if (!c->handshaken) {
    if (eventer_SSL_accept(e, &want) <= 0) {
      if (errno == EAGAIN) return want;
      goto done;
    }
    c->handshaken = 1;
  }
  for (;;) {
    while (c->off < c->len) {
      int w = eventer_write(e, c->buf + c->off, (size_t)(c->len - c->off), &want);
      if (w < 0) {
        if (errno == EAGAIN) return want;
        goto done;
      }
      c->off += w;
    }
    int r = eventer_read(e, c->buf, sizeof(c->buf), &want);
    if (r < 0 && errno == EAGAIN) return want;
    if (r <= 0) goto done;
    c->len = r;
    c->off = 0;
  }
done:
  eventer_remove_fde(e);
  eventer_close(e, &want);
  free(c);
  conns_done++;
  return 0;
}

static int accept_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)mask, (void)closure, (void)now;
  int want = 0;
  for (;;) {
    int fd = eventer_accept(e, NULL, NULL, &want);
    if (fd < 0) return EVENTER_READ | EVENTER_EXCEPTION;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (mode == M_CLASSIC_ECHO) {
      classic_t *c = calloc(1, sizeof(*c));
      eventer_t ce = eventer_alloc_fd(classic_cb, c, fd, EVENTER_READ | EVENTER_EXCEPTION);
      EVENTER_ATTACH_SSL(ce, server_ctx());
      if (eventer_add_ex(ce) != 0) die("eventer_add");
    } else {
      eventer_aco_start(aco_conn, (void *)(intptr_t)fd);
    }
  }
}

/* ---- client thread ----------------------------------------------------------- */

static void pin_thread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static int client_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

/* closes without TIME_WAIT: thousands of connections per run */
static void client_close(int fd) {
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(fd);
}

static SSL *client_ssl(int fd, SSL_SESSION *sess) {
  SSL *ssl = SSL_new(client_ctx);
  SSL_set_fd(ssl, fd);
  if (sess) SSL_set_session(ssl, sess);
  if (SSL_connect(ssl) != 1) {
    ERR_print_errors_fp(stderr);
    fail("client handshake");
  }
  return ssl;
}

static void *client_thread(void *arg) {
  pin_thread((int)(intptr_t)arg);
  static char buf[1 << 16];
  if (mode == M_HS_FULL || mode == M_HS_RESUMED || mode == M_HS_LISTENER) {
    SSL_SESSION *sess = NULL;
    int reused = 0;
    double t0 = now_s(CLOCK_MONOTONIC);
    for (long i = 0; i < n_items; i++) {
      int fd = client_connect();
      SSL *ssl = client_ssl(fd, mode == M_HS_RESUMED ? sess : NULL);
      if (SSL_write(ssl, "x", 1) != 1 || SSL_read(ssl, buf, 1) != 1) fail("client 1-byte exchange");
      reused += SSL_session_reused(ssl);
      if (mode == M_HS_RESUMED) { /* the ticket came before the byte */
        SSL_SESSION_free(sess);
        sess = SSL_get1_session(ssl);
      }
      /* close_notify: OpenSSL drops a session (not resumable) that is
       * freed without one */
      SSL_shutdown(ssl);
      SSL_free(ssl);
      client_close(fd);
    }
    client_secs = now_s(CLOCK_MONOTONIC) - t0;
    SSL_SESSION_free(sess);
    client_count = mode == M_HS_RESUMED ? reused : n_items;
  } else if (mode == M_BULK_PLAIN) {
    int fd = client_connect();
    long got = 0;
    double t0 = now_s(CLOCK_MONOTONIC);
    for (;;) {
      ssize_t r = read(fd, buf, sizeof(buf));
      if (r <= 0) break;
      got += r;
    }
    client_secs = now_s(CLOCK_MONOTONIC) - t0;
    client_count = got;
    client_close(fd);
  } else {
    int fd = client_connect();
    SSL *ssl = client_ssl(fd, NULL);
    double t0 = now_s(CLOCK_MONOTONIC);
    long got = 0;
    if (mode == M_BULK_TLS) {
      for (;;) {
        int r = SSL_read(ssl, buf, sizeof(buf));
        if (r <= 0) break;
        got += r;
      }
    } else { /* echo */
      char msg[64];
      memset(msg, 'e', sizeof(msg));
      for (long i = 0; i < n_items; i++) {
        if (SSL_write(ssl, msg, sizeof(msg)) != (int)sizeof(msg)) fail("echo write");
        int have = 0;
        while (have < (int)sizeof(msg)) {
          int r = SSL_read(ssl, buf, (int)sizeof(msg) - have);
          if (r <= 0) fail("echo read");
          have += r;
        }
        got++;
      }
    }
    client_secs = now_s(CLOCK_MONOTONIC) - t0;
    client_count = got;
    SSL_shutdown(ssl);
    SSL_free(ssl);
    client_close(fd);
  }
  __atomic_store_n(&client_done, 1, __ATOMIC_RELEASE);
  return NULL;
}

/* One run of mode m: returns items per second (client's clock) and the
 * server's CPU seconds per item in *cpu. */
static double run(int m, double *cpu) {
  mode = m;
  conns_done = 0;
  client_done = 0;
  port = m == M_HS_LISTENER ? listener_port : raw_port;
  int want_conns =
      (m == M_HS_FULL || m == M_HS_RESUMED || m == M_HS_LISTENER) ? (int)n_items : 1;
  const char *ccpu = getenv("CLIENT_CPU");
  pthread_t th;
  double c0 = now_s(CLOCK_THREAD_CPUTIME_ID);
  if (pthread_create(&th, NULL, client_thread, (void *)(intptr_t)(ccpu ? atoi(ccpu) : 0)) != 0)
    die("pthread_create");
  struct timeval w = {0, 50000};
  while (!__atomic_load_n(&client_done, __ATOMIC_ACQUIRE) || conns_done < want_conns)
    if (eventer_run_once(NULL, &w) < 0) die("eventer_run_once");
  double c1 = now_s(CLOCK_THREAD_CPUTIME_ID);
  pthread_join(th, NULL);
  long items = m == M_HS_RESUMED ? n_items : client_count;
  if (m == M_HS_RESUMED && client_count < n_items - 1) fail("sessions were not resumed");
  if (m == M_BULK_TLS || m == M_BULK_PLAIN) {
    if (client_count != n_items) fail("bulk: short transfer");
    items = n_items / (1 << 20); /* per MiB */
  }
  *cpu = (c1 - c0) / (double)items;
  return (double)items / client_secs;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Runs modes a and b RUNS times each, alternating; prints medians. */
static void compare(int a, int b, const char *na, const char *nb,
                    const char *unit, const char *cpu_unit, double cpu_scale) {
  int runs = getenv("RUNS") ? atoi(getenv("RUNS")) : 5;
  if (runs < 1 || runs > 64) runs = 5;
  double ra[64], rb[64], ca[64], cb[64];
  /* ONLY=first|second: that side alone (instr.sh counts one side's
   * instructions); its figures stand for both */
  const char *only = getenv("ONLY");
  int side = only && !strcmp(only, "first") ? 1 : only && !strcmp(only, "second") ? 2 : 0;
  for (int i = 0; i < runs; i++) {
    if (side) {
      ra[i] = rb[i] = side == 1 ? run(a, &ca[i]) : run(b, &cb[i]);
      if (side == 1) cb[i] = ca[i];
      else ca[i] = cb[i];
    } else if (i % 2 == 0) {
      ra[i] = run(a, &ca[i]);
      rb[i] = run(b, &cb[i]);
    } else {
      rb[i] = run(b, &cb[i]);
      ra[i] = run(a, &ca[i]);
    }
  }
  double ma = median(ra, runs), mb = median(rb, runs);
  double mca = median(ca, runs) * cpu_scale, mcb = median(cb, runs) * cpu_scale;
  printf("%s_%s %.1f\n%s_%s %.1f\n", na, unit, ma, nb, unit, mb);
  printf("%s_%s %.2f\n%s_%s %.2f\n", na, cpu_unit, mca, nb, cpu_unit, mcb);
  printf("%s_vs_%s %.3f\n", na, nb, ma / mb);
}

int main(int argc, char **argv) {
  if (argc != 6) fail("usage: bench_tls echo|bulk|handshake|listener N CERT KEY CA");
  n_items = atol(argv[2]);
  cert = argv[3];
  key = argv[4];
  ca = argv[5];
  pin_cpu();
  eventer_impl_propset("concurrency", "1");
  if (eventer_init_external() != 0 || eventer_loop_attach(0) != 0) die("eventer");
  client_ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(client_ctx, TLS1_3_VERSION);
  if (SSL_CTX_load_verify_locations(client_ctx, ca, NULL) != 1) fail("client CA");
  SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_session_cache_mode(client_ctx, SSL_SESS_CACHE_CLIENT);
  /* TLS13_CIPHERS: the client's TLS 1.3 suites (OpenSSL's server follows
   * the client's order; default OpenSSL's, AES-256-GCM first) */
  if (getenv("TLS13_CIPHERS") &&
      SSL_CTX_set_ciphersuites(client_ctx, getenv("TLS13_CIPHERS")) != 1)
    fail("TLS13_CIPHERS");

  lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t sl = sizeof(sa);
  if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 1024) != 0 ||
      getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0)
    die("listen");
  raw_port = ntohs(sa.sin_port);
  eventer_t le = eventer_alloc_fd(accept_cb, NULL, lfd, EVENTER_READ | EVENTER_EXCEPTION);
  if (eventer_add_ex(le) != 0) die("eventer_add");

  if (!strcmp(argv[1], "echo")) {
    compare(M_ACO_ECHO, M_CLASSIC_ECHO, "echo_aco", "echo_classic", "rt_per_s",
            "server_cpu_us_per_rt", 1e6);
  } else if (!strcmp(argv[1], "bulk")) {
    n_items <<= 20; /* MiB -> bytes */
    compare(M_BULK_TLS, M_BULK_PLAIN, "bulk_tls", "bulk_plain", "mib_per_s",
            "server_cpu_ms_per_mib", 1e3);
  } else if (!strcmp(argv[1], "handshake")) {
    compare(M_HS_FULL, M_HS_RESUMED, "hs_full", "hs_resumed", "per_s",
            "server_cpu_us_per_hs", 1e6);
  } else if (!strcmp(argv[1], "listener")) {
    mtev_hash_table sc = MTEV_HASH_EMPTY;
    mtev_hash_store(&sc, "certificate_file", 16, (void *)cert);
    mtev_hash_store(&sc, "key_file", 8, (void *)key);
    mtev_hash_store(&sc, "layer", 5, (void *)"tlsv1.3");
    mtev_listener_opts_t o = {.address = "127.0.0.1", .backlog = 1024,
                              .aco_function = listener_conn,
                              .accept_in_loop = mtev_true, /* one loop */
                              .ssl = mtev_true, .sslconfig = &sc};
    char err[512];
    mtev_listener_t *l = mtev_listener_create(&o, err, sizeof(err));
    if (!l) fail(err);
    mtev_hash_destroy(&sc, NULL, NULL);
    listener_port = mtev_listener_get_port(l);
    compare(M_HS_LISTENER, M_HS_FULL, "hs_listener", "hs_loop", "per_s",
            "server_cpu_us_per_hs", 1e6);
  } else {
    fail("unknown mode");
  }
  return 0;
}
