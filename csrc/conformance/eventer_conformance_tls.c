/*
 * eventer_conformance_tls.c - the tls step: a plain socket object becomes
 * a TLS connection (eventer_ssl_ctx_new, eventer_set_eventer_ssl_ctx_ex,
 * eventer_set_eventer_aco) and does its handshake in the calling
 * coroutine (eventer_aco_ssl_accept / eventer_aco_ssl_connect); the read,
 * write and close steps then move plaintext through it.  The server's
 * certificate is a self-signed one (CN and SAN localhost, 127.0.0.1) made
 * in memory once per process, which the client trusts ("trusted", the
 * default) or not ("untrusted": the system's store).  A failed handshake
 * is EIO (the library logs why).
 */
#include "eventer_conformance_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "eventer_SSL_fd_opset.h"

static pthread_once_t ev_cf_cert_once = PTHREAD_ONCE_INIT;
static char *ev_cf_cert_pem, *ev_cf_key_pem; /* PEM text, for the process */

static int ev_cf_ext(X509 *x, int nid, const char *value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  if (!ext) return 0;
  int ok = X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  return ok;
}

/* BIO b's contents as a NUL-terminated string (NULL on failure). */
static char *ev_cf_bio_text(BIO *b) {
  char *p;
  long n = BIO_get_mem_data(b, &p);
  char *s = n > 0 ? malloc((size_t)n + 1) : NULL;
  if (s) {
    memcpy(s, p, (size_t)n);
    s[n] = 0;
  }
  return s;
}

static void ev_cf_cert_make(void) {
  EVP_PKEY *pkey = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
  int ok = pkey && x && cb && kb && X509_set_version(x, 2) &&
           ASN1_INTEGER_set(X509_get_serialNumber(x), 1) &&
           X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
           X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400) && X509_set_pubkey(x, pkey);
  if (ok) {
    X509_NAME *n = X509_get_subject_name(x);
    ok = X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost",
                                    -1, -1, 0) &&
         X509_set_issuer_name(x, n) &&
         ev_cf_ext(x, NID_basic_constraints, "critical,CA:TRUE") &&
         ev_cf_ext(x, NID_key_usage, "critical,digitalSignature,keyCertSign") &&
         ev_cf_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1") &&
         X509_sign(x, pkey, EVP_sha256()) > 0;
  }
  if (ok) ok = PEM_write_bio_X509(cb, x) && PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL);
  if (ok) {
    ev_cf_cert_pem = ev_cf_bio_text(cb);
    ev_cf_key_pem = ev_cf_bio_text(kb);
  }
  BIO_free(cb);
  BIO_free(kb);
  X509_free(x);
  EVP_PKEY_free(pkey);
}

static int ev_cf_tls_idle(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)e, (void)mask, (void)closure, (void)now;
  return 0;
}

/* tls X server|client trusted|untrusted? timeout=dur */
static int st_tls(eventer_conformance_call_t *c) {
  pthread_once(&ev_cf_cert_once, ev_cf_cert_make);
  if (!ev_cf_cert_pem || !ev_cf_key_pem) {
    errno = EIO;
    return -1;
  }
  ev_cf_obj_t *o = ev_cf_slot(c, 0);
  if (!o) return -1;
  ev_cf_lock(c->run);
  int kind = o->kind, fd = o->fd;
  ev_cf_unlock(c->run);
  if (kind != EV_CF_FD) {
    errno = kind == EV_CF_NONE ? ENOENT : EINVAL;
    return -1;
  }
  int server = strcmp(eventer_conformance_arg(c, 1), "server") == 0;
  const char *trust = eventer_conformance_arg(c, 2);
  int trusted = !trust || strcmp(trust, "trusted") == 0;
  eventer_ssl_ctx_t *ctx =
      server ? eventer_ssl_ctx_new(SSL_SERVER, NULL, ev_cf_cert_pem, ev_cf_key_pem, NULL, NULL)
             : eventer_ssl_ctx_new(SSL_CLIENT, NULL, NULL, NULL, trusted ? ev_cf_cert_pem : NULL,
                                   NULL);
  if (!ctx) return -1;
  eventer_t e = eventer_alloc_fd(ev_cf_tls_idle, NULL, fd, EVENTER_READ);
  if (!e) {
    int err = errno;
    eventer_ssl_ctx_free(ctx);
    errno = err;
    return -1;
  }
  if (eventer_set_eventer_ssl_ctx_ex(e, ctx) != 0) {
    int err = errno;
    eventer_ssl_ctx_free(ctx);
    eventer_free(e);
    errno = err;
    return -1;
  }
  eventer_aco_t a = eventer_set_eventer_aco(e);
  if (!a) {
    int err = errno;
    eventer_free(e);
    errno = err;
    return -1;
  }
  /* the object is the TLS connection from now on, handshake or not */
  eventer_conformance_set_aco(c, 0, a);
  struct timeval tv, *tmo = eventer_conformance_opt_tv(c, "timeout", &tv);
  return server ? eventer_aco_ssl_accept(a, tmo) : eventer_aco_ssl_connect(a, tmo);
}

void ev_cf_tls_register(void) {
  ev_cf_register("tls", "obj server|client trusted|untrusted? timeout=dur", st_tls);
}
