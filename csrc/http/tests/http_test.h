/*
 * http_test.h - a server and a client for the HTTP engine's tests.
 *
 * The server: ht_start() creates the eventer with its loops on threads of
 * their own (external drivers), names the REST callbacks and listens with
 * a listener (mtev_listener_create) of the given type on 127.0.0.1; the
 * test registers rules and talks to it as a client
 * from the main thread, with blocking sockets (every read has a timeout,
 * so a broken server fails a check instead of hanging).  ht_stop() waits
 * until every connection is gone, stops the eventer and checks that no
 * session, acceptor closure or eventer_t is left.
 */
#ifndef HTTP_TEST_H
#define HTTP_TEST_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "acotest.h"
#include "eventer.h"
#include "eventer_aco.h"
#include "mtev_listener.h"
#include "mtev_http.h"
#include "mtev_rest.h"

/* ---- the server ----------------------------------------------------------- */

static pthread_t ht_threads[8];
static int ht_nthreads;
static mtev_listener_t *ht_listener;

typedef struct {
  eventer_pool_t *pool;
  int index;
} ht_loop_arg_t;
static ht_loop_arg_t ht_args[8];

static inline void *ht_loop_main(void *arg) {
  ht_loop_arg_t *a = arg;
  if (eventer_pool_loop_attach(a->pool, a->index) != 0) {
    fprintf(stderr, "attach: %s\n", strerror(errno));
    abort();
  }
  while (eventer_run_once(NULL, NULL) != EVENTER_RUN_STOPPED) {
  }
  return NULL;
}

/* loops: loops of the default pool; other: loops of pool "other" (0:
 * none); o: the listener's options (its address and backlog are the
 * test's).  Returns the port. */
static inline int ht_start_opts(int loops, int other, mtev_listener_opts_t o) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%d", loops);
  T_EQ(eventer_impl_propset("concurrency", buf), 0);
  if (other) {
    snprintf(buf, sizeof(buf), "%d", other);
    T_EQ(eventer_impl_propset("loop_other", buf), 0);
  }
  T_EQ(eventer_init_external(), 0);
  ht_nthreads = 0;
  for (int p = 0; p < eventer_pool_count(); p++) {
    eventer_pool_t *pool = eventer_pool_by_index(p);
    for (uint32_t i = 0; i < eventer_pool_concurrency(pool); i++) {
      ht_args[ht_nthreads].pool = pool;
      ht_args[ht_nthreads].index = (int)i;
      T_EQ(pthread_create(&ht_threads[ht_nthreads], NULL, ht_loop_main,
                          &ht_args[ht_nthreads]),
           0);
      ht_nthreads++;
    }
  }
  mtev_http_rest_init();
  /* the listener's defaults, but for the backlog (the tests open many
   * connections at once) */
  char err[256] = "";
  o.address = "127.0.0.1";
  o.backlog = 1024;
  ht_listener = mtev_listener_create(&o, err, sizeof(err));
  if (!ht_listener) T_FAIL("mtev_listener_create: %s", err);
  int port = mtev_listener_get_port(ht_listener);
  T_CHECK(port > 0);
  return port;
}
static inline int ht_start_type(int loops, int other, const char *type) {
  mtev_listener_opts_t o = {.type = type};
  return ht_start_opts(loops, other, o);
}
static inline int ht_start(int loops) { return ht_start_type(loops, 0, "http_rest_api"); }

static inline void ht_wait_quiet(int timeout_ms) {
  uint64_t end = t_now_us() + (uint64_t)timeout_ms * 1000u;
  while (mtev_http_session_count() != 0 || mtev_acceptor_closures_live() != 0) {
    if (t_now_us() > end)
      T_FAIL("connections still open: %lld sessions, %lld closures",
             (long long)mtev_http_session_count(),
             (long long)mtev_acceptor_closures_live());
    usleep(2000);
  }
}

static inline void ht_stop(void) {
  ht_wait_quiet(t_slow() ? 60000 : 15000);
  struct timeval grace = {5, 0}, timeout = {30, 0};
  T_EQ(mtev_listener_stop(ht_listener, &grace), 0);
  T_EQ(mtev_listener_wait(ht_listener, &timeout), 0);
  mtev_listener_release(ht_listener);
  ht_listener = NULL;
  eventer_shutdown();
  for (int i = 0; i < ht_nthreads; i++) pthread_join(ht_threads[i], NULL);
  eventer_fini();
  mtev_http_rest_fini();
  mtev_http_limits_t lim = {8192, 65536, 100, 64u << 20, 10000, 60000};
  mtev_http_set_limits(&lim);
  T_EQ(eventer_allocations_current(), 0);
  T_EQ(mtev_http_session_count(), 0);
}

/* ---- the client -------------------------------------------------------------- */

typedef struct {
  int fd;
  char buf[1 << 16];
  size_t len, pos;
} hc_t;

/* A client connected to the port; rcvbuf > 0 sets its receive buffer
 * before the connect (set after it, the window already offered is
 * withdrawn: the kernel drops the server's segments and the connection
 * stalls in retransmits). */
static inline hc_t *hc_open_rcvbuf(int port, int rcvbuf) {
  hc_t *c = calloc(1, sizeof(*c));
  T_CHECK(c != NULL);
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  T_CHECK(c->fd >= 0);
  if (rcvbuf > 0)
    T_EQ(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  T_EQ(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
  struct timeval tv = {t_slow() ? 60 : 15, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return c;
}

static inline hc_t *hc_open(int port) { return hc_open_rcvbuf(port, 0); }

static inline void hc_close(hc_t *c) {
  if (c->fd >= 0) close(c->fd);
  free(c);
}

/* Resets the connection (RST) instead of closing it. */
static inline void hc_reset(hc_t *c) {
  struct linger l = {1, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  hc_close(c);
}

static inline void hc_send(hc_t *c, const void *b, size_t n) {
  const char *p = b;
  while (n) {
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    T_CHECKF(w > 0, "send: %s", strerror(errno));
    p += w;
    n -= (size_t)w;
  }
}
static inline void hc_sends(hc_t *c, const char *s) { hc_send(c, s, strlen(s)); }

/* More bytes into the buffer: > 0, or 0 at EOF / error. */
static inline ssize_t hc_fill(hc_t *c) {
  if (c->pos > 0 && c->pos == c->len) c->pos = c->len = 0;
  if (c->len == sizeof(c->buf)) {
    memmove(c->buf, c->buf + c->pos, c->len - c->pos);
    c->len -= c->pos;
    c->pos = 0;
  }
  for (;;) {
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      T_FAIL("client read timed out");
    if (n <= 0) return 0;
    c->len += (size_t)n;
    return n;
  }
}

/* A line (without CRLF) into out; 0, or -1 at EOF. */
static inline int hc_line(hc_t *c, char *out, size_t cap) {
  for (;;) {
    char *nl = memchr(c->buf + c->pos, '\n', c->len - c->pos);
    if (nl) {
      size_t l = (size_t)(nl - (c->buf + c->pos));
      size_t k = l;
      if (k && c->buf[c->pos + k - 1] == '\r') k--;
      T_CHECKF(k < cap, "line too long (%zu)", k);
      memcpy(out, c->buf + c->pos, k);
      out[k] = 0;
      c->pos += l + 1;
      return 0;
    }
    if (!hc_fill(c)) return -1;
  }
}

static inline int hc_bytes(hc_t *c, char *out, size_t n) {
  while (n) {
    if (c->pos == c->len && !hc_fill(c)) return -1;
    size_t k = c->len - c->pos < n ? c->len - c->pos : n;
    memcpy(out, c->buf + c->pos, k);
    c->pos += k;
    out += k;
    n -= k;
  }
  return 0;
}

typedef struct {
  int status;
  char head[8192]; /* header lines, "\n"-separated, as received */
  char *body;
  size_t blen;
  int chunked;
} hc_resp_t;

static inline const char *hc_header(hc_resp_t *r, const char *name) {
  static char val[1024];
  size_t nl = strlen(name);
  for (char *p = r->head; *p;) {
    char *e = strchr(p, '\n');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l > nl && p[nl] == ':' && !strncasecmp(p, name, nl)) {
      const char *v = p + nl + 1;
      while (*v == ' ') v++;
      size_t vl = l - (size_t)(v - p);
      memcpy(val, v, vl);
      val[vl] = 0;
      return val;
    }
    p = e ? e + 1 : p + l;
  }
  return NULL;
}

static inline void hc_resp_free(hc_resp_t *r) {
  free(r->body);
  r->body = NULL;
}

static inline void hc_body_add(hc_resp_t *r, const char *b, size_t n) {
  r->body = realloc(r->body, r->blen + n + 1);
  T_CHECK(r->body != NULL);
  memcpy(r->body + r->blen, b, n);
  r->blen += n;
  r->body[r->blen] = 0;
}

/* Reads one response (skipping 1xx ones unless keep_1xx).  head_req: a
 * response to HEAD has no body.  0, or -1 at EOF before a status line. */
static inline int hc_read_resp2(hc_t *c, hc_resp_t *r, int head_req, int keep_1xx) {
  memset(r, 0, sizeof(*r));
  char line[8192];
  for (;;) {
    if (hc_line(c, line, sizeof(line)) != 0) return -1;
    T_CHECKF(!strncmp(line, "HTTP/1.", 7) && strlen(line) >= 12,
             "bad status line \"%s\"", line);
    r->status = atoi(line + 9);
    size_t hl = 0;
    r->head[0] = 0;
    for (;;) {
      T_CHECK(hc_line(c, line, sizeof(line)) == 0);
      if (!line[0]) break;
      size_t l = strlen(line);
      T_CHECK(hl + l + 2 < sizeof(r->head));
      memcpy(r->head + hl, line, l);
      hl += l;
      r->head[hl++] = '\n';
      r->head[hl] = 0;
    }
    if (r->status >= 200 || keep_1xx) break;
  }
  r->body = calloc(1, 1);
  if (head_req || r->status < 200 || r->status == 204 || r->status == 304)
    return 0;
  const char *te = hc_header(r, "Transfer-Encoding");
  const char *cl = hc_header(r, "Content-Length");
  if (te) {
    T_CHECK(!strcasecmp(te, "chunked"));
    T_CHECK(cl == NULL);
    r->chunked = 1;
    for (;;) {
      T_CHECK(hc_line(c, line, sizeof(line)) == 0);
      size_t n = strtoul(line, NULL, 16);
      if (n == 0) {
        do {
          T_CHECK(hc_line(c, line, sizeof(line)) == 0);
        } while (line[0]);
        break;
      }
      char *tmp = malloc(n);
      T_CHECK(hc_bytes(c, tmp, n) == 0);
      hc_body_add(r, tmp, n);
      free(tmp);
      T_CHECK(hc_line(c, line, sizeof(line)) == 0 && !line[0]);
    }
  } else if (cl) {
    size_t n = strtoul(cl, NULL, 10);
    char *tmp = malloc(n + 1);
    T_CHECK(hc_bytes(c, tmp, n) == 0);
    hc_body_add(r, tmp, n);
    free(tmp);
  } else {
    /* delimited by the close */
    for (;;) {
      if (c->pos < c->len) {
        hc_body_add(r, c->buf + c->pos, c->len - c->pos);
        c->pos = c->len;
      }
      if (!hc_fill(c)) break;
    }
  }
  return 0;
}
static inline int hc_read_resp(hc_t *c, hc_resp_t *r, int head_req) {
  return hc_read_resp2(c, r, head_req, 0);
}

/* 1 when the server closed the connection (EOF with nothing more). */
static inline int hc_eof(hc_t *c) {
  if (c->pos < c->len) return 0;
  return hc_fill(c) == 0;
}

/* One request on a new connection: the response's status (body in *r
 * unless r is NULL). */
static inline int hc_oneshot(int port, const char *req, hc_resp_t *r) {
  hc_t *c = hc_open(port);
  hc_sends(c, req);
  hc_resp_t tmp;
  hc_resp_t *rr = r ? r : &tmp;
  T_CHECKF(hc_read_resp(c, rr, !strncmp(req, "HEAD ", 5)) == 0,
           "no response to %.40s", req);
  hc_close(c);
  int st = rr->status;
  if (!r) hc_resp_free(&tmp);
  return st;
}

/* 64-bit FNV-1a */
static inline uint64_t hc_fnv(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
  return h;
}

#endif /* HTTP_TEST_H */
