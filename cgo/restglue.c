/* restglue.c - see restglue.h */
/* Compiled in the HTTP engine's unit (unity_mtev_http.c includes it after
 * mtev_http.c; on its own this file is empty): the direct path's calls of
 * the engine's small accessors (the session's request, response and
 * connection, the request's fields) are inlined instead of being calls
 * into another unit. */
#ifdef EV_GO_HTTP_UNIT
#include "restglue.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "_cgo_export.h"
#include "eventer_SSL_fd_opset.h"
#include "eventer_aco.h"
#include "eventer_aco_proxy.h" /* eventer_call_on_thread_stack */
#include "eventer_impl.h"      /* the loop's phase (the pass's batch) */
#include "glue.h"               /* ev_go_registered */
#include "http_impl.h"        /* ev_http_session_run_aco */

#define EV_GO_REQ_BUF (64 * 1024)

/* A Go rule (the rule's closure): Go's id, whether its requests all take
 * the relay, and whether its handler runs on the loop. */
typedef struct {
  uint64_t id;
  int relay;
  int aco; /* its handler runs in a coroutine of the loop (Rule.SetAco) */
} ev_go_rule_t;

struct ev_go_req {
  pthread_mutex_t mu;
  int refs;                        /* under mu: the relay's and Go's */
  mtev_http_rest_closure_t *restc; /* valid while the relay lives */
  mtev_http_session_ctx *ctx;
  eventer_aco_co_t *relay;         /* the relay's handle (a reference) */
  uint64_t go_id;                  /* Go's request */
  /* the operation slot, under mu */
  int op;                          /* pending (0: none) */
  size_t op_len;
  int done;                        /* the last operation's result is in */
  int64_t res;
  int err;
  int gone;                        /* the relay has ended */
  char remote[INET6_ADDRSTRLEN + 8];
  char *buf;                       /* READ's bytes: made by the first READ */
  char alpn[256];                  /* TLS: the ALPN protocol */
  unsigned char *der;              /* TLS: the peer's certificates */
};

static void ev_go_req_unref(ev_go_req_t *r) {
  pthread_mutex_lock(&r->mu);
  int left = --r->refs;
  pthread_mutex_unlock(&r->mu);
  if (left) return;
  pthread_mutex_destroy(&r->mu);
  free(r->buf);
  free(r->der);
  free(r);
}

/* ---- calls into Go, on the thread's own stack (the relay runs on a
 * coroutine's share stack, where Go must never run: DESIGN.md 4, rule 4) */

typedef struct {
  uint64_t rule, id;
  uintptr_t r;
  int loop;
} ev_go_start_t;
static void ev_go_start_thunk(void *p) {
  ev_go_start_t *s = p;
  s->id = goRestStart(s->rule, s->r, s->loop);
}

typedef struct {
  uint64_t id;
  int what;
} ev_go_note_t;
static void ev_go_note_thunk(void *p) {
  ev_go_note_t *n = p;
  if (n->what) goRestCancel(n->id);
  else goRestOpDone(n->id);
}
static void ev_go_note(uint64_t id, int cancel) {
  ev_go_note_t n = {id, cancel};
  eventer_call_on_thread_stack(ev_go_note_thunk, &n);
}

/* The operation Go asked for, in the relay's coroutine. */
static int64_t ev_go_op_run(ev_go_req_t *r, int op, size_t len, int *err) {
  int64_t rv = 0;
  errno = 0;
  switch (op) {
  case EV_GO_OP_READ: {
    int mask = 0;
    if (len > EV_GO_REQ_BUF) len = EV_GO_REQ_BUF;
    if (!r->buf && !(r->buf = malloc(EV_GO_REQ_BUF))) {
      rv = -1;
      errno = ENOMEM;
      break;
    }
    rv = mtev_http_session_req_consume(r->ctx, r->buf, len, len, &mask);
    break;
  }
  case EV_GO_OP_FLUSH:
    rv = mtev_http_response_flush(r->ctx, mtev_false) ? 1 : 0;
    break;
  case EV_GO_OP_END:
    rv = mtev_http_response_end(r->ctx) ? 1 : 0;
    break;
  case EV_GO_OP_ABORT:
    rv = mtev_http_response_abort(r->ctx) ? 1 : 0;
    break;
  default:
    rv = 1;
  }
  *err = rv < 0 || (op != EV_GO_OP_READ && rv == 0) ? (errno ? errno : EPIPE) : 0;
  return rv;
}

/* The rule's handler: runs in a coroutine per request (the rule is aco). */
static int ev_go_rest_relay(mtev_http_rest_closure_t *restc, int npats,
                            char **pats) {
  (void)npats, (void)pats;
  mtev_http_session_ctx *ctx = restc->http_ctx;
  eventer_aco_co_t *self = eventer_aco_self();
  ev_go_req_t *r = self ? calloc(1, sizeof(*r)) : NULL;
  if (!r) {
    mtevL(mtev_error, "rest: a Go rule cannot serve %s: %s\n",
          mtev_http_request_uri_str(mtev_http_session_request(ctx)),
          self ? "out of memory" : "not in a coroutine");
    mtev_http_response_server_error(ctx, "text/plain");
    mtev_http_response_end(ctx);
    return 0;
  }
  pthread_mutex_init(&r->mu, NULL);
  r->refs = 2;
  r->restc = restc;
  r->ctx = ctx;
  r->relay = self;
  eventer_aco_co_ref(self);
  ev_go_start_t st = {((ev_go_rule_t *)restc->closure)->id, 0, (uintptr_t)r,
                      eventer_loop_index(eventer_loop_current())};
  eventer_call_on_thread_stack(ev_go_start_thunk, &st);
  r->go_id = st.id;
  if (!r->go_id) { /* Go refused it (the rule is gone, Go is stopping) */
    r->refs = 1;
    mtev_http_response_server_error(ctx, "text/plain");
    mtev_http_response_end(ctx);
  }
  int canceled = 0;
  while (r->go_id) {
    pthread_mutex_lock(&r->mu);
    int op = r->op;
    size_t len = r->op_len;
    pthread_mutex_unlock(&r->mu);
    if (!op) {
      if (eventer_aco_park(NULL) != 0 && errno == ECANCELED && !canceled) {
        canceled = 1; /* the client went away (or half-closed) */
        ev_go_note(r->go_id, 1);
      }
      continue;
    }
    int err = 0;
    int64_t res = ev_go_op_run(r, op, len, &err);
    if (err == ECANCELED && !canceled) {
      canceled = 1;
      ev_go_note(r->go_id, 1);
    }
    pthread_mutex_lock(&r->mu);
    r->op = 0;
    r->res = res;
    r->err = err;
    r->done = 1;
    int last = op == EV_GO_OP_END || op == EV_GO_OP_DONE || op == EV_GO_OP_ABORT;
    if (last) r->gone = 1;
    pthread_mutex_unlock(&r->mu);
    ev_go_note(r->go_id, 0);
    if (last) break;
  }
  pthread_mutex_lock(&r->mu);
  r->gone = 1;
  r->restc = NULL;
  r->ctx = NULL;
  pthread_mutex_unlock(&r->mu);
  eventer_aco_co_release(self);
  r->relay = NULL;
  ev_go_req_unref(r);
  return 0;
}

/* ---- the direct path (restglue.h) ------------------------------------------- */

/* The flat head of the request being handed to Go: this loop thread's
 * buffer, grown as needed, valid until the driver's next run_once. */
static __thread char *ev_go_hbuf;
static __thread size_t ev_go_hcap;

static char *ev_go_put32(char *p, uint32_t v) {
  memcpy(p, &v, 4);
  return p + 4;
}
/* (a head's strings are short: ev_copy_short, the engine's, copies them
 * without a call of memcpy, which cost more than the bytes) */
static char *ev_go_putstr(char *p, const void *s, size_t n) {
  p = ev_go_put32(p, (uint32_t)n);
  ev_copy_short(p, s, n);
  return p + n;
}
static size_t ev_go_slen(const char *s) { return s ? strlen(s) : 0; }

/* What a TLS connection negotiated, for a flat head's TLS part. */
typedef struct {
  uint32_t version, cipher, resumed;
  const uint8_t *alpn;
  uint8_t alen;
  const char *sni, *cn;
  size_t slen, cnlen, derlen;
  STACK_OF(X509) *chain;
} ev_go_tls_head_t;

/* Fills *t for the session's connection: 1 over TLS, 0 otherwise. */
static int ev_go_tls_head(mtev_http_rest_closure_t *restc, ev_go_tls_head_t *t) {
  eventer_t e = mtev_http_connection_event(mtev_http_session_connection(restc->http_ctx));
  eventer_ssl_ctx_t *sc = e ? eventer_get_eventer_ssl_ctx(e) : NULL;
  if (!sc) return 0;
  memset(t, 0, sizeof(*t));
  t->resumed = eventer_ssl_session_reused(sc) ? 1 : 0;
  int v = eventer_ssl_get_method(sc);
  t->version = v > 0 ? (uint32_t)v : 0;
  SSL_SESSION *sess = eventer_ssl_get_session(sc);
  const SSL_CIPHER *c = sess ? SSL_SESSION_get0_cipher(sess) : NULL;
  t->cipher = c ? SSL_CIPHER_get_protocol_id(c) : 0;
  eventer_ssl_get_alpn_selected(sc, &t->alpn, &t->alen);
  if (!t->alpn) t->alen = 0;
  t->sni = eventer_ssl_get_sni_name(sc);
  t->slen = ev_go_slen(t->sni);
  t->cn = restc->remote_cn;
  t->cnlen = ev_go_slen(t->cn);
  t->chain = eventer_ssl_get_peer_cert_chain(sc);
  for (int i = 0; t->chain && i < sk_X509_num(t->chain); i++) {
    int n = i2d_X509(sk_X509_value(t->chain, i), NULL);
    if (n > 0) t->derlen += (size_t)n;
  }
  return 1;
}

/* Writes the flat head of the current request; its length, or 0 when it
 * cannot (out of memory).  The lengths come from the parser (no strlen:
 * it was a tenth of a pipelined Go request's own CPU). */
static size_t ev_go_head_build(mtev_http_rest_closure_t *restc, char **bufp,
                               size_t *capp, size_t off) {
  ev_go_tls_head_t tls;
  int on_tls = ev_go_tls_head(restc, &tls);
  mtev_http_request *q = mtev_http_session_request(restc->http_ctx);
  size_t mlen, ulen, qlen;
  const char *method = ev_http_request_method(q, &mlen);
  const char *uri = ev_http_request_path(q, &ulen);
  int minor11 = mtev_http_request_protocol(q) == MTEV_HTTP11;
  const char *proto = minor11 ? "HTTP/1.1" : "HTTP/1.0";
  int nhdr;
  const ev_http_hdr_t *hdr = ev_http_request_fields(q, &nhdr, &qlen);
  const char *query = qlen ? mtev_http_request_orig_querystring(q) : "";
  struct sockaddr *sa = mtev_acceptor_closure_remote(restc->ac);
  size_t salen = !sa ? 0
                 : sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                 : sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                 : sa->sa_family == AF_UNIX ? sizeof(sa_family_t) : 0;
  int npats = restc->nparams;
  if (nhdr < 0 || !hdr) nhdr = 0;
  size_t need = 4 + 8 + 4 + 4 + 5 * 4 + mlen + ulen + 8 + qlen + salen;
  for (int i = 0; i < nhdr; i++) need += 8 + hdr[i].name_len + hdr[i].value_len;
  for (int i = 0; i < npats; i++) need += 4 + ev_go_slen(restc->params[i]);
  if (on_tls) need += 3 * 4 + 4 * 4 + tls.alen + tls.slen + tls.cnlen + tls.derlen;
  need += off;
  if (need > *capp) {
    size_t cap = *capp ? *capp : 1024;
    while (cap < need) cap *= 2;
    char *nb = realloc(*bufp, cap);
    if (!nb) return 0;
    *bufp = nb;
    *capp = cap;
  }
  int chunked = mtev_http_request_payload_chunked(q) ? 1 : 0;
  uint32_t flags = (mtev_http_request_has_payload(q) ? EV_GO_HEAD_PAYLOAD : 0) |
                   (chunked ? EV_GO_HEAD_CHUNKED : 0) |
                   (minor11 ? EV_GO_HEAD_HTTP11 : 0) | (on_tls ? EV_GO_HEAD_TLS : 0);
  int64_t cl = chunked ? -1 : (int64_t)mtev_http_request_content_length(q);
  char *p = *bufp + off;
  p = ev_go_put32(p, flags);
  memcpy(p, &cl, 8);
  p += 8;
  p = ev_go_put32(p, (uint32_t)nhdr);
  p = ev_go_put32(p, (uint32_t)npats);
  p = ev_go_putstr(p, method, mlen);
  p = ev_go_putstr(p, uri, ulen);
  p = ev_go_putstr(p, proto, 8);
  p = ev_go_putstr(p, query, qlen);
  p = ev_go_putstr(p, sa, salen);
  for (int i = 0; i < nhdr; i++) {
    p = ev_go_putstr(p, hdr[i].name, hdr[i].name_len);
    p = ev_go_putstr(p, hdr[i].value, hdr[i].value_len);
  }
  for (int i = 0; i < npats; i++)
    p = ev_go_putstr(p, restc->params[i], ev_go_slen(restc->params[i]));
  if (on_tls) {
    p = ev_go_put32(p, tls.version);
    p = ev_go_put32(p, tls.cipher);
    p = ev_go_put32(p, tls.resumed);
    p = ev_go_putstr(p, tls.alpn, tls.alen);
    p = ev_go_putstr(p, tls.sni, tls.slen);
    p = ev_go_putstr(p, tls.cn, tls.cnlen);
    char *start = p + 4, *d = start;
    for (int i = 0; tls.derlen && i < sk_X509_num(tls.chain); i++) {
      X509 *x = sk_X509_value(tls.chain, i);
      int n = i2d_X509(x, NULL);
      if (n <= 0 || (size_t)(d - start) + (size_t)n > tls.derlen) break;
      unsigned char *u = (unsigned char *)d;
      if (i2d_X509(x, &u) != n) break;
      d += n;
    }
    p = ev_go_put32(p, (uint32_t)(d - start));
    p = d;
  }
  return (size_t)(p - (*bufp + off));
}

/* ---- the loop pass's batch (restglue.h) */
__thread int ev_go_rest_batching;
static __thread char *ev_go_bbuf;
static __thread size_t ev_go_bcap, ev_go_blen;
static __thread uint64_t ev_go_bn;
static __thread uint64_t ev_go_blimit = EV_GO_BATCH_MAX; /* this pass's */
/* the most batch buffer a loop thread keeps between batches (a batch of
 * large heads grows it; the next batch starts from a small one) */
#define EV_GO_BBUF_KEEP (64 * 1024)

/* The pass's batch is open only while the loop dispatches the fds its
 * poll reported (the iteration's last phase: the batch goes to Go right
 * after).  A request dispatched earlier in the iteration (a task, a timer,
 * an end-of-pass hook) would wait in the batch through the poll, which
 * may block: it takes a step of its own. */
static int ev_go_batch_phase(void) {
  ev_loop_t *l = ev_loop_self();
  if (!l || l->phase != EV_PH_FDS) return 0;
  /* the pass's limit (restglue.h): by how many events its poll reported */
  ev_go_blimit = l->nev >= EV_GO_BATCH_BUSY_NEV ? EV_GO_BATCH_BUSY : EV_GO_BATCH_MAX;
  return 1;
}

/* Adds the current request to the pass's batch, its session referenced
 * for Go: 1, or 0 when out of memory (nothing taken). */
static int ev_go_batch_add(ev_go_rule_t *rule, mtev_http_session_ctx *ctx,
                           mtev_http_rest_closure_t *restc) {
  if (!ev_go_blen && ev_go_bcap > EV_GO_BBUF_KEEP) {
    /* a new batch (Go copied the last one's heads: the buffer is free) */
    free(ev_go_bbuf);
    ev_go_bbuf = NULL;
    ev_go_bcap = 0;
  }
  size_t off = ev_go_blen + 24;
  size_t n = ev_go_head_build(restc, &ev_go_bbuf, &ev_go_bcap, off);
  if (!n) return 0;
  uint64_t hdr[3] = {rule->id, (uint64_t)(uintptr_t)ctx, n};
  memcpy(ev_go_bbuf + ev_go_blen, hdr, sizeof(hdr));
  ev_go_blen = (off + n + 7) & ~(size_t)7;
  ev_go_bn++;
  mtev_http_session_ref_inc(ctx);
  /* A full batch goes to Go now, in the step slot (the iteration goes on
   * when Go is done with it): each request's session holds an HTTP work
   * area until its response ends, and more of them at once than the
   * engine's per-thread pool keeps cost malloc, free and page faults (at
   * 1000 connections a pass has hundreds of requests). */
  if (ev_go_bn >= ev_go_blimit) {
    eventer_step_t *s = eventer_step_emit();
    if (s) ev_go_rest_batch_take(s);
  }
  return 1;
}

size_t ev_go_rest_batch_cap(void) { return ev_go_bcap; }

int ev_go_rest_batch_take(eventer_step_t *s) {
  if (!ev_go_bn) return 0;
  s->kind = EV_GO_STEP_REST_BATCH;
  s->closure = ev_go_bbuf;
  s->u64[0] = ev_go_bn;
  s->u64[2] = ev_go_blen;
  ev_go_bn = 0;
  ev_go_blen = 0;
  return 1;
}

/* Where ev_go_rest_entry hands a direct request while ev_go_rest_respond
 * drives its session (NULL otherwise, and once it holds one). */
static __thread ev_go_next_t *ev_go_next;

/* The rule's handler.  In main context (the session's drive): the direct
 * path when it applies, else it asks for a coroutine, where it is called
 * again (aco_enabled) and runs the relay. */
static int ev_go_rest_entry(mtev_http_rest_closure_t *restc, int npats,
                            char **pats) {
  if (restc->aco_enabled) return ev_go_rest_relay(restc, npats, pats);
  mtev_http_session_ctx *ctx = restc->http_ctx;
  ev_go_rule_t *rule = restc->closure;
  eventer_t e = mtev_http_connection_event(mtev_http_session_connection(ctx));
  if (!__atomic_load_n(&rule->relay, __ATOMIC_RELAXED) &&
      !mtev_http_request_has_payload(mtev_http_session_request(ctx)) && e) {
    /* the head first: a step slot once taken must be handed out (and the
     * buffer is not in use: a step of ours in flight holds the slot) */
    ev_go_next_t *nx = ev_go_next;
    if (!nx && ev_go_rest_batching && __atomic_load_n(&rule->aco, __ATOMIC_RELAXED) &&
        ev_go_batch_phase() && ev_go_batch_add(rule, ctx, restc))
      return 0;
    size_t n = ev_go_head_build(restc, &ev_go_hbuf, &ev_go_hcap, 0);
    if (n && nx && !nx->ctx) {
      /* dispatched by ev_go_rest_respond's drive: it hands this one to Go */
      mtev_http_session_ref_inc(ctx);
      ev_go_next = NULL;
      nx->rule = rule->id;
      nx->ctx = (uintptr_t)ctx;
      nx->head = ev_go_hbuf;
      nx->len = n;
      return 0;
    }
    eventer_step_t *s = n ? eventer_step_emit() : NULL;
    if (s) {
      mtev_http_session_ref_inc(ctx);
      s->kind = EV_GO_STEP_REST;
      s->closure = ev_go_hbuf;
      s->u64[0] = rule->id;
      s->u64[1] = (uint64_t)(uintptr_t)ctx;
      s->u64[2] = n;
      return 0;
    }
  }
  if (ev_http_session_run_aco(ctx) == 0) return 0;
  mtevL(mtev_error, "rest: a Go rule cannot serve %s: %s\n",
        mtev_http_request_uri_str(mtev_http_session_request(ctx)), strerror(errno));
  mtev_http_response_server_error(ctx, "text/plain");
  mtev_http_response_end(ctx);
  return 0;
}

mtev_rest_mountpoint_t *ev_go_rest_rule(const char *method, const char *base,
                                        const char *expr, uint64_t id,
                                        uintptr_t *rulep) {
  ev_go_rule_t *rule = calloc(1, sizeof(*rule));
  if (!rule) return NULL;
  rule->id = id;
  mtev_rest_mountpoint_t *mp = mtev_http_rest_new_rule_auth_closure(
      method, base, expr, ev_go_rest_entry, NULL, NULL, NULL, rule);
  if (!mp) {
    int err = errno;
    free(rule);
    errno = err;
    return NULL;
  }
  *rulep = (uintptr_t)rule;
  return mp;
}

void ev_go_rest_rule_aco(uintptr_t rule, int on) {
  __atomic_store_n(&((ev_go_rule_t *)rule)->aco, on ? 1 : 0, __ATOMIC_RELAXED);
}

void ev_go_rest_rule_relay(uintptr_t rule, int on) {
  __atomic_store_n(&((ev_go_rule_t *)rule)->relay, on ? 1 : 0, __ATOMIC_RELAXED);
}

/* A Content-Type value Go handed over, at an address that stays the same
 * from response to response (the engine recognises its thread's known
 * type by address and bytes: Go's copy is at a new address each time):
 * the loop thread's copy of the last one, or NULL when it is too long for
 * the engine to keep (the caller sets it as a header field). */
static __thread char ev_go_ct[48];
/* The loop thread's last spec that was Ok's alone (its reason, then one
 * field: a Content-Type that is ev_go_ct), as bytes: a response whose
 * spec has the same bytes (an aco handler answers the same head request
 * after request) is applied without parsing them again (strlen and
 * strcasecmp per field were a third of ev_go_rest_respond's cost).  Its
 * length is 0 when there is none; ev_go_ct's change empties it. */
static __thread char ev_go_okspec[64];
static __thread size_t ev_go_okspec_len;
static const char *ev_go_ct_stable(const char *ct) {
  size_t n = strnlen(ct, sizeof(ev_go_ct));
  if (n >= sizeof(ev_go_ct) || memchr(ct, '\r', n) || memchr(ct, '\n', n))
    return NULL;
  if (memcmp(ev_go_ct, ct, n + 1) != 0) {
    memcpy(ev_go_ct, ct, n + 1);
    ev_go_okspec_len = 0;
  }
  return ev_go_ct;
}

int ev_go_rest_respond(uintptr_t ctxp, int code, const char *spec,
                       size_t speclen, uint32_t opts, const void *body,
                       size_t blen, int then, uintptr_t nextp) {
  mtev_http_session_ctx *ctx = (mtev_http_session_ctx *)ctxp;
  ev_go_next_t *next = (ev_go_next_t *)nextp;
  if (next) memset(next, 0, sizeof(*next)); /* (none, unless the drive hands one) */
  mtev_http_response *res0 = mtev_http_session_response(ctx);
  int usable = res0 && !mtev_http_response_closed(res0);
  int ok = 1;
  if (code > 0 && (opts & EV_GO_OPT_STREAM) && ev_go_okspec_len && speclen == ev_go_okspec_len &&
      memcmp(spec, ev_go_okspec, speclen) == 0) {
    /* Ok's head, as the last one: its reason is the cached copy's first
     * string, its type ev_go_ct (the engine keeps neither pointer) */
    ok &= ev_http_response_standard(ctx, code, ev_go_okspec, ev_go_ct) ? 1 : 0;
    if (opts & MTEV_HTTP_CLOSE)
      ok &= mtev_http_response_option_set(ctx, MTEV_HTTP_CLOSE) ? 1 : 0;
  } else if (code > 0) {
    const char *p = spec, *end = spec + speclen;
    const char *reason = p;
    p += strlen(p) + 1;
    const char *fields = p;
    /* Ok's response (a Content-Type, the CHUNKED option) is
     * mtev_http_response_ok's, made by the call it makes: the engine then
     * writes the thread's ready head (status, Date, the type) instead of
     * formatting a header line (ev_go_ct_stable) */
    const char *ct = NULL;
    int nfields = 0;
    if (opts & EV_GO_OPT_STREAM) {
      while (p < end) {
        const char *name = p;
        size_t nl = strlen(p);
        p += nl + 1;
        if (p >= end) break;
        nfields++;
        if (nl == 12 && strcasecmp(name, "content-type") == 0) ct = p;
        p += strlen(p) + 1;
      }
      p = fields;
    }
    const char *sct = ct ? ev_go_ct_stable(ct) : NULL;
    if (sct && nfields == 1 && speclen <= sizeof(ev_go_okspec) &&
        spec[speclen - 1] == 0) {
      /* Ok's alone (the reason, the type): the next such spec is known by
       * its bytes */
      memcpy(ev_go_okspec, spec, speclen);
      ev_go_okspec_len = speclen;
    }
    if (sct) {
      ok &= ev_http_response_standard(ctx, code, reason, sct) ? 1 : 0;
    } else {
      ok &= mtev_http_response_status_set(ctx, code, reason) ? 1 : 0;
    }
    while (p < end) {
      const char *name = p;
      p += strlen(p) + 1;
      if (p >= end) break;
      const char *value = p;
      p += strlen(p) + 1;
      if (sct && value == ct) continue; /* (set above) */
      /* added, not set: Go sends a field of several lines (Set-Cookie)
       * as one field per line */
      ok &= mtev_http_response_header_add(ctx, name, value) ? 1 : 0;
    }
    if ((opts & EV_GO_OPT_STREAM) && !sct &&
        !mtev_http_response_option_set(ctx, MTEV_HTTP_CHUNKED))
      ok &= mtev_http_response_option_set(ctx, MTEV_HTTP_CLOSE) ? 1 : 0;
    if (opts & MTEV_HTTP_CLOSE)
      ok &= mtev_http_response_option_set(ctx, MTEV_HTTP_CLOSE) ? 1 : 0;
  }
  if (blen) ok &= mtev_http_response_append(ctx, body, blen) ? 1 : 0;
  switch (then) {
  case EV_GO_RESPOND_FLUSH: {
    ok &= mtev_http_response_flush_asynch(ctx, mtev_false) ? 1 : 0;
    /* what the socket did not take goes out as it drains: have the
     * session's event report writability (its next drive sets the mask
     * it wants again) */
    eventer_t e = mtev_http_connection_event(mtev_http_session_connection(ctx));
    mtev_http_response *res = mtev_http_session_response(ctx);
    if (ok && e && res && !mtev_http_response_closed(res)) {
      int mask = eventer_get_mask(e);
      if (!(mask & EVENTER_WRITE)) eventer_update(e, mask | EVENTER_WRITE);
    }
    break;
  }
  case EV_GO_RESPOND_END:
    if (next && usable) {
      /* the drive goes on here: a pipelined request behind this one is
       * dispatched now, and a direct one comes back in *next */
      ev_go_next = next;
      ok &= ev_http_response_end_drive(ctx) ? 1 : 0;
      ev_go_next = NULL;
    } else {
      ok &= mtev_http_response_end(ctx) ? 1 : 0;
    }
    break;
  case EV_GO_RESPOND_ABORT:
    ok &= mtev_http_response_abort(ctx) ? 1 : 0;
    break;
  }
  /* A write that failed here, outside the session's drive, broke the
   * connection (its event is out of the loop) and no drive is coming to
   * tear it down: an end that was possible posts one, nothing else does.
   * The event's own callback, triggered, finishes it. */
  eventer_t e = mtev_http_connection_event(mtev_http_session_connection(ctx));
  if (e && !ev_go_registered(e) && !(then == EV_GO_RESPOND_END && usable))
    eventer_trigger(e, EVENTER_EXCEPTION);
  if (then == EV_GO_RESPOND_END || then == EV_GO_RESPOND_ABORT)
    mtev_http_session_ref_dec(ctx);
  return ok;
}

int ev_go_rest_client_gone(uintptr_t ctxp) {
  mtev_http_session_ctx *ctx = (mtev_http_session_ctx *)ctxp;
  eventer_t e = mtev_http_connection_event(mtev_http_session_connection(ctx));
  mtev_http_response *res = mtev_http_session_response(ctx);
  if (!e || !res || mtev_http_response_closed(res)) return 1;
  char c;
  ssize_t n = recv(eventer_get_fd(e), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return 1;
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

int ev_go_rest_option_ctx(uintptr_t ctxp, uint32_t opt) {
  return mtev_http_response_option_set((mtev_http_session_ctx *)ctxp, opt) ? 1 : 0;
}

static int ev_go_rest_gone(mtev_http_rest_closure_t *restc, int npats,
                           char **pats) {
  (void)npats, (void)pats;
  mtev_http_response_not_found(restc->http_ctx, "text/plain");
  mtev_http_response_append_str(restc->http_ctx, "Not Found\n");
  mtev_http_response_end(restc->http_ctx);
  return 0;
}

void ev_go_rest_rule_close(mtev_rest_mountpoint_t *mp) {
  mtev_rest_mountpoint_set_handler(mp, ev_go_rest_gone);
  mtev_rest_mountpoint_set_aco(mp, mtev_false);
}

int ev_go_rest_submit(uintptr_t rp, int op, size_t len) {
  ev_go_req_t *r = (ev_go_req_t *)rp;
  pthread_mutex_lock(&r->mu);
  if (r->gone) {
    pthread_mutex_unlock(&r->mu);
    return EPIPE;
  }
  if (r->op) {
    pthread_mutex_unlock(&r->mu);
    return EBUSY;
  }
  r->op = op;
  r->op_len = len;
  r->done = 0;
  /* woken under the lock: the relay cannot end (and drop its handle)
   * between our look at `gone` and the wake */
  eventer_aco_wake(r->relay);
  pthread_mutex_unlock(&r->mu);
  return 0;
}

int ev_go_rest_result(uintptr_t rp, int64_t *res, int *err) {
  ev_go_req_t *r = (ev_go_req_t *)rp;
  pthread_mutex_lock(&r->mu);
  int done = r->done;
  if (done) {
    *res = r->res;
    *err = r->err;
  }
  pthread_mutex_unlock(&r->mu);
  return done;
}

const char *ev_go_rest_buf(uintptr_t rp) { return ((ev_go_req_t *)rp)->buf; }

void ev_go_rest_release(uintptr_t rp) { ev_go_req_unref((ev_go_req_t *)rp); }

/* The connection's TLS facts, if it is TLS (on the request's loop, while
 * the session is alive). */
static void ev_go_rest_tls_info(ev_go_req_t *r, ev_go_req_info_t *o) {
  eventer_t e = mtev_http_connection_event(mtev_http_session_connection(r->ctx));
  eventer_ssl_ctx_t *sc = e ? eventer_get_eventer_ssl_ctx(e) : NULL;
  if (!sc) return;
  o->tls = 1;
  o->tls_resumed = eventer_ssl_session_reused(sc);
  int v = eventer_ssl_get_method(sc);
  o->tls_version = v > 0 ? (uint16_t)v : 0;
  SSL_SESSION *sess = eventer_ssl_get_session(sc);
  const SSL_CIPHER *c = sess ? SSL_SESSION_get0_cipher(sess) : NULL;
  o->tls_cipher = c ? SSL_CIPHER_get_protocol_id(c) : 0;
  const uint8_t *alpn = NULL;
  uint8_t alen = 0;
  eventer_ssl_get_alpn_selected(sc, &alpn, &alen);
  if (alpn && alen) memcpy(r->alpn, alpn, alen);
  r->alpn[alen] = '\0';
  o->alpn = r->alpn;
  const char *sni = eventer_ssl_get_sni_name(sc);
  o->sni = sni ? sni : "";
  o->remote_cn = r->restc->remote_cn ? r->restc->remote_cn : "";
  STACK_OF(X509) *chain = eventer_ssl_get_peer_cert_chain(sc);
  if (!chain || r->der) return;
  size_t total = 0;
  for (int i = 0; i < sk_X509_num(chain); i++) {
    int n = i2d_X509(sk_X509_value(chain, i), NULL);
    if (n > 0) total += (size_t)n;
  }
  unsigned char *p = total ? malloc(total) : NULL;
  if (!p) return;
  r->der = p;
  for (int i = 0; i < sk_X509_num(chain); i++) {
    int n = i2d_X509(sk_X509_value(chain, i), &p); /* advances p */
    if (n < 0) break;
  }
  o->peer_der = r->der;
  o->peer_der_len = (size_t)(p - r->der);
}

void ev_go_rest_info(uintptr_t rp, ev_go_req_info_t *o) {
  ev_go_req_t *r = (ev_go_req_t *)rp;
  memset(o, 0, sizeof(*o));
  mtev_http_request *q = mtev_http_session_request(r->ctx);
  o->method = mtev_http_request_method_str(q);
  o->uri = mtev_http_request_uri_str(q);
  o->proto = mtev_http_request_protocol_str(q);
  o->query = mtev_http_request_orig_querystring(q);
  o->nhdr = mtev_http_request_header_count(q);
  o->npats = r->restc->nparams;
  o->minor = mtev_http_request_protocol(q) == MTEV_HTTP11 ? 1 : 0;
  o->payload = mtev_http_request_has_payload(q) ? 1 : 0;
  o->chunked = mtev_http_request_payload_chunked(q) ? 1 : 0;
  o->content_length = o->chunked ? -1 : (int64_t)mtev_http_request_content_length(q);
  struct sockaddr *sa = mtev_acceptor_closure_remote(r->restc->ac);
  char ip[INET6_ADDRSTRLEN] = "";
  if (sa && sa->sa_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)sa;
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
    snprintf(r->remote, sizeof(r->remote), "%s:%u", ip, ntohs(in->sin_port));
  } else if (sa && sa->sa_family == AF_INET6) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)sa;
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
    snprintf(r->remote, sizeof(r->remote), "[%s]:%u", ip, ntohs(in6->sin6_port));
  } else if (sa && sa->sa_family == AF_UNIX) {
    snprintf(r->remote, sizeof(r->remote), "@");
  }
  o->remote = r->remote;
  ev_go_rest_tls_info(r, o);
}

const char *ev_go_rest_header(uintptr_t rp, int i, const char **value) {
  ev_go_req_t *r = (ev_go_req_t *)rp;
  return mtev_http_request_header_nth(mtev_http_session_request(r->ctx), i, value);
}

const char *ev_go_rest_pat(uintptr_t rp, int i) {
  ev_go_req_t *r = (ev_go_req_t *)rp;
  return i >= 0 && i < r->restc->nparams ? r->restc->params[i] : NULL;
}

int ev_go_rest_status(uintptr_t rp, int code, const char *reason) {
  return mtev_http_response_status_set(((ev_go_req_t *)rp)->ctx, code, reason) ? 1 : 0;
}

int ev_go_rest_header_set(uintptr_t rp, const char *name, const char *value) {
  return mtev_http_response_header_set(((ev_go_req_t *)rp)->ctx, name, value) ? 1 : 0;
}

int ev_go_rest_header_add(uintptr_t rp, const char *name, const char *value) {
  return mtev_http_response_header_add(((ev_go_req_t *)rp)->ctx, name, value) ? 1 : 0;
}

int ev_go_rest_option(uintptr_t rp, uint32_t opt) {
  return mtev_http_response_option_set(((ev_go_req_t *)rp)->ctx, opt) ? 1 : 0;
}

int ev_go_rest_append(uintptr_t rp, const void *p, size_t n) {
  return mtev_http_response_append(((ev_go_req_t *)rp)->ctx, p, n) ? 1 : 0;
}

int ev_go_rest_discard(uintptr_t rp) {
  return ev_http_response_discard(((ev_go_req_t *)rp)->ctx) ? 1 : 0;
}

int ev_go_rest_headers_sent(uintptr_t rp) {
  mtev_http_response *res = mtev_http_session_response(((ev_go_req_t *)rp)->ctx);
  return res && mtev_http_response_bytes_written(res) > 0;
}

#endif /* EV_GO_HTTP_UNIT */
