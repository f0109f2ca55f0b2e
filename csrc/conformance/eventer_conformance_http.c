/*
 * eventer_conformance_http.c - REST steps: an HTTP server on a listener
 * (mtev_http_rest_handler), rules mounted by a scenario with handlers
 * registered by name, and a plain HTTP client whose result is the
 * response's bytes.
 */
#include "eventer_conformance_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "mtev_listener.h"
#include "mtev_rest.h"

int ev_cf_set_addr(eventer_conformance_call_t *c, int i, const struct sockaddr *sa,
                   socklen_t len);

/* ---- the handler registry ------------------------------------------------------------ */

typedef struct {
  char *name;
  rest_request_handler h;
} ev_cf_handler_t;

static pthread_mutex_t ev_cf_h_mu = PTHREAD_MUTEX_INITIALIZER;
static ev_cf_handler_t *ev_cf_handlers;
static int ev_cf_nhandlers, ev_cf_caphandlers;

int eventer_conformance_register_handler(const char *name,
                                         eventer_conformance_handler_fn h) {
  if (!name || !*name || !h) {
    errno = EINVAL;
    return -1;
  }
  pthread_mutex_lock(&ev_cf_h_mu);
  for (int i = 0; i < ev_cf_nhandlers; i++)
    if (strcmp(ev_cf_handlers[i].name, name) == 0) {
      ev_cf_handlers[i].h = h;
      pthread_mutex_unlock(&ev_cf_h_mu);
      return 0;
    }
  if (ev_cf_nhandlers == ev_cf_caphandlers) {
    int cap = ev_cf_caphandlers ? 2 * ev_cf_caphandlers : 16;
    ev_cf_handler_t *n = realloc(ev_cf_handlers, (size_t)cap * sizeof(*n));
    if (!n) {
      pthread_mutex_unlock(&ev_cf_h_mu);
      errno = ENOMEM;
      return -1;
    }
    ev_cf_handlers = n;
    ev_cf_caphandlers = cap;
  }
  char *dup = strdup(name);
  if (!dup) {
    pthread_mutex_unlock(&ev_cf_h_mu);
    errno = ENOMEM;
    return -1;
  }
  ev_cf_handlers[ev_cf_nhandlers++] = (ev_cf_handler_t){dup, h};
  pthread_mutex_unlock(&ev_cf_h_mu);
  return 0;
}

static rest_request_handler ev_cf_handler(const char *name) {
  rest_request_handler h = NULL;
  pthread_mutex_lock(&ev_cf_h_mu);
  for (int i = 0; i < ev_cf_nhandlers; i++)
    if (strcmp(ev_cf_handlers[i].name, name) == 0) h = ev_cf_handlers[i].h;
  pthread_mutex_unlock(&ev_cf_h_mu);
  return h;
}

/* ---- built-in handlers ------------------------------------------------------------------ */

/* the seed's hello handler */
static int h_hello(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_append_str(ctx, "Hello world.\n");
  mtev_http_response_end(ctx);
  return 0;
}

/* the seed's REST example: the body is appended by asynch work while the
 * handler's coroutine waits (mount it with aco=on) */
static void ev_cf_asynch_hello(void *closure) {
  mtev_http_rest_closure_t *restc = closure;
  usleep(10000); /* the seed sleeps a second */
  mtev_http_response_append_str(restc->http_ctx, "Hello world.\n");
}
static int h_asynch_hello(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  if (eventer_in_aco()) eventer_aco_simple_asynch(ev_cf_asynch_hello, restc);
  else mtev_http_response_append_str(ctx, "not in a coroutine\n");
  mtev_http_response_end(ctx);
  return 0;
}

/* the request body, back */
static int h_echo(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  (void)npats, (void)pats;
  int mask;
  if (!mtev_rest_complete_upload(restc, &mask)) return mask;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  int64_t size = 0;
  const void *body = mtev_http_request_get_upload(mtev_http_session_request(ctx), &size);
  mtev_http_response_ok(ctx, "application/octet-stream");
  if (body && size > 0) mtev_http_response_append(ctx, body, (size_t)size);
  mtev_http_response_end(ctx);
  return 0;
}

/* the rule's captures, one a line */
static int h_pats(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  mtev_http_response_ok(ctx, "text/plain");
  mtev_http_response_appendf(ctx, "%d\n", npats);
  for (int i = 0; i < npats; i++) mtev_http_response_appendf(ctx, "%s\n", pats[i]);
  mtev_http_response_end(ctx);
  return 0;
}

/* the status the first capture says */
static int h_status(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  int code = npats > 0 ? atoi(pats[0]) : 500;
  mtev_http_response_standard(ctx, code, "CUSTOM", "text/plain");
  mtev_http_response_appendf(ctx, "status %d\n", code);
  mtev_http_response_end(ctx);
  return 0;
}

/* ---- steps -------------------------------------------------------------------------------- */

static void ev_cf_listener_release(void *p) {
  mtev_listener_t *l = p;
  struct timeval grace = {0, 0}, wait = {5, 0};
  mtev_listener_stop(l, &grace);
  mtev_listener_wait(l, &wait);
  mtev_listener_release(l);
}

static pthread_once_t ev_cf_rest_once = PTHREAD_ONCE_INIT;
static void ev_cf_rest_init(void) { mtev_http_rest_init(); }

/* rest_server H: an HTTP listener on loopback serving the REST rules */
static int st_rest_server(eventer_conformance_call_t *c) {
  pthread_once(&ev_cf_rest_once, ev_cf_rest_init);
  mtev_listener_opts_t o = {.address = "127.0.0.1", .type = "http_rest_api"};
  char err[256];
  mtev_listener_t *l = mtev_listener_create(&o, err, sizeof(err));
  if (!l) return -1;
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  mtev_listener_get_address(l, (struct sockaddr *)&ss, &len);
  ev_cf_set_typed(c, 0, "listener_http", l, ev_cf_listener_release);
  return ev_cf_set_addr(c, 0, (struct sockaddr *)&ss, len);
}

/* The Go run's rest_server: the same listener (the HTTP engine is C's in
 * both runs; the handlers are each run's language).  addr gets
 * "127.0.0.1:port"; NULL and errno on failure. */
void *ev_cf_rest_listen(char *addr, size_t len) {
  pthread_once(&ev_cf_rest_once, ev_cf_rest_init);
  mtev_listener_opts_t o = {.address = "127.0.0.1", .type = "http_rest_api"};
  char err[256];
  mtev_listener_t *l = mtev_listener_create(&o, err, sizeof(err));
  if (!l) return NULL;
  struct sockaddr_in sin;
  socklen_t slen = sizeof(sin);
  if (mtev_listener_get_address(l, (struct sockaddr *)&sin, &slen) != 0 ||
      sin.sin_family != AF_INET) {
    ev_cf_listener_release(l);
    errno = EAFNOSUPPORT;
    return NULL;
  }
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof(ip));
  snprintf(addr, len, "%s:%u", ip, (unsigned)ntohs(sin.sin_port));
  return l;
}

void ev_cf_rest_unlisten(void *l) { ev_cf_listener_release(l); }

/* The base under which this run mounts its rules: rules live as long as
 * the process, so each run has its own. */
static void ev_cf_base(eventer_conformance_call_t *c, char *out, size_t len) {
  char u[48];
  ev_cf_unique(c, "rest", u, sizeof(u));
  snprintf(out, len, "/%s/", u);
}

/* rest_rule METHOD REGEX HANDLER [aco=on] */
static int st_rest_rule(eventer_conformance_call_t *c) {
  rest_request_handler h = ev_cf_handler(eventer_conformance_arg(c, 2));
  if (!h) {
    errno = ENOENT;
    return -1;
  }
  char base[64];
  ev_cf_base(c, base, sizeof(base));
  mtev_rest_mountpoint_t *rule = mtev_http_rest_new_rule(
      eventer_conformance_arg(c, 0), base, eventer_conformance_arg(c, 1), h);
  if (!rule) return -1;
  const char *aco = eventer_conformance_opt(c, "aco");
  mtev_rest_mountpoint_set_aco(rule, aco && strcmp(aco, "on") == 0 ? mtev_true : mtev_false);
  return 0;
}

static int ev_cf_idle_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)e, (void)mask, (void)closure, (void)now;
  return 0;
}

/* http H METHOD PATH [body=TEXT]: one request (Connection: close), the
 * response read to the server's close; the result is its bytes, without
 * the Date header (the only field that changes from run to run). */
static int st_http(eventer_conformance_call_t *c) {
  struct sockaddr_storage ss;
  socklen_t len;
  if (eventer_conformance_addr(c, 0, &ss, &len) != 0) return -1;
  const char *body = eventer_conformance_opt(c, "body");
  char base[64];
  ev_cf_base(c, base, sizeof(base));
  size_t cap = EV_CF_HTTP_MAX + 1;
  char *buf = malloc(cap);
  if (!buf) return -1;
  int n = snprintf(buf, cap,
                   "%s %s%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   eventer_conformance_arg(c, 1), base, eventer_conformance_arg(c, 2),
                   body ? strlen(body) : 0, body ? body : "");
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  eventer_t ev = fd >= 0 ? eventer_alloc_fd(ev_cf_idle_cb, NULL, fd, EVENTER_READ) : NULL;
  eventer_aco_t e = ev ? eventer_set_eventer_aco(ev) : NULL;
  if (!e) {
    int err = errno;
    if (ev) eventer_free(ev);
    if (fd >= 0 && !ev) close(fd);
    free(buf);
    errno = err;
    return -1;
  }
  struct timeval five = {5, 0};
  int rv = eventer_aco_connect(e, (struct sockaddr *)&ss, len, &five);
  for (int off = 0; rv == 0 && off < n;) {
    int w = eventer_aco_write(e, buf + off, (size_t)(n - off), &five);
    if (w < 0) rv = -1;
    else off += w;
  }
  size_t got = 0;
  while (rv == 0) {
    if (got == cap - 1) {
      errno = EMSGSIZE;
      rv = -1;
      break;
    }
    int r = eventer_aco_read(e, buf + got, cap - 1 - got, &five);
    if (r < 0) rv = -1;
    else if (r == 0) break;
    else got += (size_t)r;
  }
  int err = errno;
  eventer_aco_close(e);
  eventer_aco_free(e);
  if (rv == 0) {
    buf[got] = 0;
    char *d = strstr(buf, "\r\nDate: ");
    char *hend = strstr(buf, "\r\n\r\n");
    if (d && hend && d < hend) {
      char *eol = strstr(d + 2, "\r\n");
      memmove(d, eol, got + 1 - (size_t)(eol - buf));
      got -= (size_t)(eol - d);
    }
    eventer_conformance_result_bytes(c, "response", buf, got);
  }
  free(buf);
  errno = err;
  return rv;
}

void ev_cf_http_register(void) {
  ev_cf_register("rest_server", "new", st_rest_server);
  ev_cf_register("rest_rule", "text text text aco=on|off", st_rest_rule);
  ev_cf_register("http", "obj text text body=text", st_http);
  eventer_conformance_register_handler("hello", h_hello);
  eventer_conformance_register_handler("asynch_hello", h_asynch_hello);
  eventer_conformance_register_handler("echo", h_echo);
  eventer_conformance_register_handler("pats", h_pats);
  eventer_conformance_register_handler("status", h_status);
}
