/*
 * tls.h - the C side of the Go TLS binding: client contexts for
 * Co.Connect, the handshake step a Go coroutine drives, and what a
 * connection's handshake learnt (version, cipher, ALPN, SNI, the peer's
 * chain as DER), read on the event's loop thread.  C pointers travel as
 * uintptr_t; nothing here keeps a Go pointer.
 */
#ifndef ACOEVENTER_CGO_TLS_H
#define ACOEVENTER_CGO_TLS_H

#include "glue.h"
#include "eventer_SSL_fd_opset.h"

/* How a client verifies the server (flags). */
enum {
  EV_GO_TLS_VERIFY = 0,         /* the CA (or default_ca_chain, or the system's) */
  EV_GO_TLS_OPTIONAL_NO_CA = 1, /* eventer_ssl_verify_cert's options */
  EV_GO_TLS_IGNORE_DATES = 2,
  EV_GO_TLS_NO_VERIFY = 4       /* accept any certificate */
};

/* A client context from the settings keys[i] = vals[i]
 * (eventer_ssl_ctx_new_ex's), with the SNI name sni and the name the
 * server's certificate must be for (NULL: none of either) and a verify
 * mode (flags above).  The context, or NULL with errno and err. */
eventer_ssl_ctx_t *ev_go_tls_client(const char **keys, const char **vals, int n,
                           const char *sni, const char *verify_host,
                           int verify, char *err, size_t errlen);
void ev_go_tls_ctx_free(uintptr_t ctx);

/* Attaches ctx to fd event e (not yet an aco event); e owns ctx after
 * that.  0, or an errno (ctx is freed then). */
int ev_go_tls_attach(uintptr_t e, uintptr_t ctx);

/* One handshake step of e's context (eventer_SSL_accept/_connect):
 * res > 0 done; -1 with err EAGAIN and the mask (READ or WRITE) to wait
 * for; -1 with another errno (EIO: failed and logged). */
ev_go_try_t ev_go_tls_handshake(uintptr_t e, int server);

/* ev_go_try for a TLS connection, without calling Go: a line the TLS
 * layer logs meanwhile is kept (logged = 1) until ev_go_log_flush, so Go
 * may call it with noescape/nocallback and its buffer stay where it is
 * (on a coroutine's stack, say). */
typedef struct {
  int64_t res;
  int err;
  int mask;
  int logged;
} ev_go_tls_try_t;
ev_go_tls_try_t ev_go_tls_try(uintptr_t e, int op, char *buf, size_t len);

/* eventer_ssl_read_ready of e's context: 1 ready, 0 with *mask, -1 (no
 * context, no handshake yet). */
int ev_go_tls_read_ready(uintptr_t e, int *mask);

/* Client sessions: the session of e's connection, with a reference for
 * the caller, when it can be resumed (NULL otherwise); free it with
 * ev_go_tls_session_free.  ev_go_tls_attach_session offers s to ctx (not
 * yet attached; ctx takes its own reference). */
SSL_SESSION *ev_go_tls_session_get(uintptr_t e);
void ev_go_tls_session_free(SSL_SESSION *s);
int ev_go_tls_offer_session(eventer_ssl_ctx_t *ctx, SSL_SESSION *s);

/* Ends e's TLS connection as failed, logging reason (a handshake timeout
 * Go enforced); NULL: ended on purpose, nothing logged. */
void ev_go_tls_fail(uintptr_t e, const char *reason);

/* 1 if e has a TLS context. */
int ev_go_tls_is(uintptr_t e);

/* The reason of the last failure on e's context ("" if none). */
const char *ev_go_tls_last_error(uintptr_t e);

typedef struct {
  int version;        /* TLS1_2_VERSION, TLS1_3_VERSION; 0 before the handshake */
  int reused;         /* the handshake resumed a session */
  long verify_result; /* X509_V_OK, ..., -1 */
  const char *cipher; /* these borrowed from the context (NULL: none) */
  const char *sni;
  const char *peer_error;
  const char *subject;
  const char *issuer;
  char alpn[256];
  int alpn_len;
  char cn[256];
  int cn_len; /* -1: no CN */
} ev_go_tls_info_t;

/* What e's handshake learnt.  0, or -1 (no TLS context). */
int ev_go_tls_info(uintptr_t e, ev_go_tls_info_t *out);

/* The peer's chain, leaf first, as concatenated DER in a malloc'd buffer
 * (the caller frees it) of *len bytes; NULL with *len 0 if the peer sent
 * none. */
unsigned char *ev_go_tls_peer_chain(uintptr_t e, size_t *len);

#endif
