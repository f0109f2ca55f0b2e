/* tls.c - see tls.h */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>


/* eventer_ssl_verify_cert's option tables, one per combination of
 * optional_no_ca and ignore_dates (read-only once built). */
static mtev_hash_table ev_go_tls_vopts[4];
static pthread_once_t ev_go_tls_vopts_once = PTHREAD_ONCE_INIT;

static void ev_go_tls_vopts_init(void) {
  for (int i = 0; i < 4; i++) {
    mtev_hash_init(&ev_go_tls_vopts[i]);
    mtev_hash_replace(&ev_go_tls_vopts[i], strdup("optional_no_ca"), 14,
                      strdup(i & EV_GO_TLS_OPTIONAL_NO_CA ? "true" : "false"),
                      free, free);
    mtev_hash_replace(&ev_go_tls_vopts[i], strdup("ignore_dates"), 12,
                      strdup(i & EV_GO_TLS_IGNORE_DATES ? "true" : "false"),
                      free, free);
  }
}

static int ev_go_tls_accept_any(eventer_ssl_ctx_t *ctx, int ok,
                                X509_STORE_CTX *x509ctx, void *closure) {
  (void)ctx, (void)ok, (void)x509ctx, (void)closure;
  return 1;
}

eventer_ssl_ctx_t *ev_go_tls_client(const char **keys, const char **vals, int n,
                           const char *sni, const char *verify_host,
                           int verify, char *err, size_t errlen) {
  mtev_hash_table h;
  mtev_hash_init(&h);
  for (int i = 0; i < n; i++)
    mtev_hash_replace(&h, strdup(keys[i]), (int)strlen(keys[i]),
                      strdup(vals[i]), free, free);
  eventer_ssl_ctx_t *ctx = eventer_ssl_ctx_new_ex(SSL_CLIENT, &h);
  int e = errno;
  mtev_hash_destroy(&h, free, free);
  if (!ctx) {
    snprintf(err, errlen, "%s", eventer_ssl_ctx_new_error());
    errno = e;
    return NULL;
  }
  if (sni) eventer_ssl_ctx_set_sni(ctx, sni);
  if (verify & EV_GO_TLS_NO_VERIFY) {
    eventer_ssl_ctx_set_verify(ctx, ev_go_tls_accept_any, NULL);
  } else {
    if (verify_host && eventer_ssl_ctx_set_verify_host(ctx, verify_host) != 0) {
      e = errno;
      snprintf(err, errlen, "server name %s: %s", verify_host, strerror(e));
      eventer_ssl_ctx_free(ctx);
      errno = e;
      return NULL;
    }
    if (verify & (EV_GO_TLS_OPTIONAL_NO_CA | EV_GO_TLS_IGNORE_DATES)) {
      pthread_once(&ev_go_tls_vopts_once, ev_go_tls_vopts_init);
      eventer_ssl_ctx_set_verify(ctx, eventer_ssl_verify_cert,
                                 &ev_go_tls_vopts[verify & 3]);
    }
  }
  return ctx;
}

void ev_go_tls_ctx_free(uintptr_t ctx) {
  eventer_ssl_ctx_free((eventer_ssl_ctx_t *)ctx);
}

int ev_go_tls_attach(uintptr_t e, uintptr_t ctx) {
  if (eventer_set_eventer_ssl_ctx_ex((eventer_t)e, (eventer_ssl_ctx_t *)ctx) != 0) {
    int err = errno;
    eventer_ssl_ctx_free((eventer_ssl_ctx_t *)ctx);
    return err;
  }
  return 0;
}

ev_go_try_t ev_go_tls_handshake(uintptr_t ep, int server) {
  eventer_t e = (eventer_t)ep;
  ev_go_try_t r = {0, 0, 0};
  int rv = server ? eventer_SSL_accept(e, &r.mask) : eventer_SSL_connect(e, &r.mask);
  r.res = rv;
  if (rv < 0) r.err = errno;
  r.mask &= EVENTER_READ | EVENTER_WRITE;
  return r;
}

ev_go_tls_try_t ev_go_tls_try(uintptr_t e, int op, char *buf, size_t len) {
  ev_go_log_defer(1);
  ev_go_try_t r = ev_go_try(e, op, buf, len);
  ev_go_log_defer(0);
  ev_go_tls_try_t t = {r.res, r.err, r.mask, ev_go_log_pending()};
  return t;
}

int ev_go_tls_read_ready(uintptr_t e, int *mask) {
  *mask = 0;
  int rv = eventer_ssl_read_ready(eventer_get_eventer_ssl_ctx((eventer_t)e), mask);
  *mask &= EVENTER_READ | EVENTER_WRITE;
  return rv;
}

SSL_SESSION *ev_go_tls_session_get(uintptr_t e) {
  SSL_SESSION *s = eventer_ssl_get_session(eventer_get_eventer_ssl_ctx((eventer_t)e));
  if (!s || !SSL_SESSION_is_resumable(s) || !SSL_SESSION_up_ref(s)) return NULL;
  return s;
}

void ev_go_tls_session_free(SSL_SESSION *s) { SSL_SESSION_free(s); }

int ev_go_tls_offer_session(eventer_ssl_ctx_t *ctx, SSL_SESSION *s) {
  return eventer_ssl_ctx_set_session(ctx, s) == 0 ? 0 : errno;
}

void ev_go_tls_fail(uintptr_t e, const char *reason) {
  eventer_ssl_ctx_fail(eventer_get_eventer_ssl_ctx((eventer_t)e), reason);
}

int ev_go_tls_is(uintptr_t e) {
  return eventer_get_eventer_ssl_ctx((eventer_t)e) != NULL;
}

const char *ev_go_tls_last_error(uintptr_t e) {
  const char *s = eventer_ssl_get_last_error(eventer_get_eventer_ssl_ctx((eventer_t)e));
  return s ? s : "";
}

int ev_go_tls_info(uintptr_t e, ev_go_tls_info_t *out) {
  eventer_ssl_ctx_t *ctx = eventer_get_eventer_ssl_ctx((eventer_t)e);
  memset(out, 0, sizeof(*out));
  out->cn_len = -1;
  if (!ctx) return -1;
  out->version = eventer_ssl_get_method(ctx);
  out->reused = eventer_ssl_session_reused(ctx);
  out->verify_result = eventer_ssl_get_verify_result(ctx);
  out->cipher = eventer_ssl_get_current_cipher(ctx);
  out->sni = eventer_ssl_get_sni_name(ctx);
  out->peer_error = eventer_ssl_get_peer_error(ctx);
  out->subject = eventer_ssl_get_peer_subject(ctx);
  out->issuer = eventer_ssl_get_peer_issuer(ctx);
  const uint8_t *alpn = NULL;
  uint8_t alen = 0;
  eventer_ssl_get_alpn_selected(ctx, &alpn, &alen);
  if (alpn && alen) {
    memcpy(out->alpn, alpn, alen);
    out->alpn_len = alen;
  }
  out->cn_len = eventer_ssl_get_peer_commonname(ctx, out->cn, sizeof(out->cn));
  return 0;
}

unsigned char *ev_go_tls_peer_chain(uintptr_t e, size_t *len) {
  *len = 0;
  STACK_OF(X509) *chain =
      eventer_ssl_get_peer_cert_chain(eventer_get_eventer_ssl_ctx((eventer_t)e));
  if (!chain) return NULL;
  size_t total = 0;
  for (int i = 0; i < sk_X509_num(chain); i++) {
    int n = i2d_X509(sk_X509_value(chain, i), NULL);
    if (n > 0) total += (size_t)n;
  }
  if (total == 0) return NULL;
  unsigned char *buf = malloc(total), *p = buf;
  if (!buf) return NULL;
  for (int i = 0; i < sk_X509_num(chain); i++) {
    int n = i2d_X509(sk_X509_value(chain, i), &p);
    if (n < 0) {
      free(buf);
      return NULL;
    }
  }
  *len = (size_t)(p - buf);
  ERR_clear_error();
  return buf;
}
