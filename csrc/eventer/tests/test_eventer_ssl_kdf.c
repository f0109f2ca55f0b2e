/*
 * test_eventer_ssl_kdf.c - our provider's TLS13-KDF (eventer_kdf_prov.c):
 * byte for byte the default provider's over random inputs (both modes,
 * SHA-256 and SHA-384 under each of their names, a digest it does not
 * keep, keys longer than a block, multi-block outputs, the same refusals);
 * TLS 1.3 handshakes with each suite between one of our contexts using it
 * and a peer using OpenSSL's (eventer_ssl_config "ssl_own_kdf" off for
 * that peer's context), either way round; and the rest of the process
 * still gets the default provider's TLS13-KDF.
 */
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "ssltest.h"
#include "eventer_x25519.h"

static const t_certs_t *C;

static unsigned rnd(unsigned n) { /* 0..n-1 */
  unsigned v;
  T_EQ(RAND_bytes((unsigned char *)&v, sizeof(v)), 1);
  return n ? v % n : 0;
}

typedef struct {
  const char *md;
  int mode;        /* EVP_KDF_HKDF_MODE_* */
  int mode_string; /* pass the mode by name */
  int has_key, has_salt, has_data;
  unsigned char key[300], salt[100], prefix[300], label[300], data[300];
  size_t key_len, salt_len, prefix_len, label_len, data_len, out_len;
  int split; /* set_params then derive(NULL), as libssl's extract step */
} kcase_t;

/* derives with kdf; 1 and out filled, or 0 when refused */
static int kdf_run(EVP_KDF *kdf, const kcase_t *c, unsigned char *out) {
  EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
  T_CHECK(kc != NULL);
  OSSL_PARAM p[10], *q = p;
  int mode = c->mode;
  static const char *const names[] = {"EXTRACT_AND_EXPAND", "EXTRACT_ONLY",
                                      "EXPAND_ONLY"};
  if (c->mode_string)
    *q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE,
                                            (char *)names[c->mode], 0);
  else
    *q++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
  *q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)c->md, 0);
  if (c->has_key)
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)c->key,
                                             c->key_len);
  if (c->has_salt)
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                             (void *)c->salt, c->salt_len);
  *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX,
                                           (void *)c->prefix, c->prefix_len);
  *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL,
                                           (void *)c->label, c->label_len);
  if (c->has_data)
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_DATA,
                                             (void *)c->data, c->data_len);
  *q = OSSL_PARAM_construct_end();
  int ok;
  if (c->split)
    ok = EVP_KDF_CTX_set_params(kc, p) > 0 &&
         EVP_KDF_derive(kc, out, c->out_len, NULL) > 0;
  else
    ok = EVP_KDF_derive(kc, out, c->out_len, p) > 0;
  EVP_KDF_CTX_free(kc);
  ERR_clear_error();
  return ok;
}

static void kcase_fill(kcase_t *c, const char *md, size_t hl, int mode) {
  memset(c, 0, sizeof(*c));
  c->md = md;
  c->mode = mode;
  c->mode_string = rnd(4) == 0;
  c->split = rnd(2);
  /* keys: empty, short, a hash, longer than SHA-384's 128-byte block */
  static const size_t klen[] = {0, 1, 32, 48, 64, 65, 128, 129, 200, 300};
  c->has_key = mode == EVP_KDF_HKDF_MODE_EXPAND_ONLY || rnd(4) != 0;
  c->key_len = rnd(3) ? hl : klen[rnd(10)];
  c->has_salt = mode == EVP_KDF_HKDF_MODE_EXTRACT_ONLY && rnd(3) != 0;
  c->salt_len = rnd(3) ? hl : 1 + rnd(100);
  c->prefix_len = rnd(3) ? 6 : rnd(40);
  c->label_len = rnd(255 - c->prefix_len + 1);
  c->has_data = rnd(4) != 0;
  c->data_len = rnd(3) ? hl : rnd(256);
  T_EQ(RAND_bytes(c->key, sizeof(c->key)), 1);
  T_EQ(RAND_bytes(c->salt, sizeof(c->salt)), 1);
  T_EQ(RAND_bytes(c->label, sizeof(c->label)), 1);
  T_EQ(RAND_bytes(c->data, sizeof(c->data)), 1);
  memcpy(c->prefix, "tls13 ", 6);
  if (c->prefix_len != 6) T_EQ(RAND_bytes(c->prefix, sizeof(c->prefix)), 1);
  if (mode == EVP_KDF_HKDF_MODE_EXTRACT_ONLY)
    c->out_len = hl;
  else /* the lengths libssl asks for, and several blocks */
    c->out_len = rnd(2) ? (size_t[]){12, 16, 32, hl}[rnd(4)] : 1 + rnd(4 * hl);
}

static void kcase_dump(const kcase_t *c) {
  fprintf(stderr,
          "case: md %s mode %d%s split %d key %d/%zu salt %d/%zu prefix %zu "
          "label %zu data %d/%zu out %zu\n",
          c->md, c->mode, c->mode_string ? " (name)" : "", c->split, c->has_key,
          c->key_len, c->has_salt, c->salt_len, c->prefix_len, c->label_len,
          c->has_data, c->data_len, c->out_len);
}

/* both must agree: the same bytes, or both refuse */
static int kcase_compare(EVP_KDF *ours, EVP_KDF *def, const kcase_t *c) {
  unsigned char a[1024], b[1024];
  T_CHECK(c->out_len <= sizeof(a));
  memset(a, 0xa5, sizeof(a));
  memset(b, 0x5a, sizeof(b));
  int oa = kdf_run(ours, c, a), ob = kdf_run(def, c, b);
  if (oa != ob || (oa && memcmp(a, b, c->out_len) != 0)) {
    kcase_dump(c);
    T_FAIL("ours %d, default provider's %d%s", oa, ob,
           oa && ob ? ": different bytes" : "");
  }
  return oa;
}

static EVP_KDF *fetch(const char *propq, const char *want_provider) {
  EVP_KDF *k = EVP_KDF_fetch(NULL, "TLS13-KDF", propq);
  T_CHECK(k != NULL);
  T_STR_EQ(OSSL_PROVIDER_get0_name(EVP_KDF_get0_provider(k)), want_provider);
  return k;
}

static void test_differential(void) {
  T_EQ(ev_x25519_provider_load(), 0);
  EVP_KDF *ours = fetch("provider=" EV_X25519_PROVIDER, EV_X25519_PROVIDER);
  EVP_KDF *def = fetch("provider=default", "default");
  static const struct {
    const char *name;
    size_t hl;
  } mds[] = {{"SHA2-256", 32}, {"SHA256", 32}, {"sha-256", 32},
             {"SHA2-384", 48}, {"SHA384", 48}, {"SHA2-512", 64},
             {"SHA1", 20}};
  int n = t_slow() ? 300 : 3000, derived = 0;
  for (int i = 0; i < n; i++) {
    /* mostly the two digests TLS 1.3 uses */
    int m = rnd(10) < 8 ? (int)rnd(5) : 5 + (int)rnd(2);
    kcase_t c;
    kcase_fill(&c, mds[m].name, mds[m].hl,
               rnd(2) ? EVP_KDF_HKDF_MODE_EXPAND_ONLY
                      : EVP_KDF_HKDF_MODE_EXTRACT_ONLY);
    derived += kcase_compare(ours, def, &c);
  }
  /* nearly every random case is a valid one */
  T_CHECKF(derived > n * 9 / 10, "%d of %d derived", derived, n);

  /* what both refuse */
  kcase_t c;
  kcase_fill(&c, "SHA2-256", 32, EVP_KDF_HKDF_MODE_EXPAND_ONLY);
  c.has_key = 1;
  c.mode = EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND; /* not a TLS13-KDF mode */
  T_EQ(kcase_compare(ours, def, &c), 0);
  c.mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY; /* extract: Hash.length only */
  c.out_len = 31;
  T_EQ(kcase_compare(ours, def, &c), 0);
  c.out_len = 33;
  T_EQ(kcase_compare(ours, def, &c), 0);
  c.out_len = 32;
  T_EQ(kcase_compare(ours, def, &c), 1);
  c.mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  c.prefix_len = 6;
  c.label_len = 250; /* prefix || label over 255 bytes */
  T_EQ(kcase_compare(ours, def, &c), 0);
  c.label_len = 249;
  T_EQ(kcase_compare(ours, def, &c), 1);
  c.has_data = 1;
  c.data_len = 256; /* a context over 255 bytes */
  T_EQ(kcase_compare(ours, def, &c), 0);
  c.data_len = 255;
  T_EQ(kcase_compare(ours, def, &c), 1);
  c.md = "SHAKE128"; /* no XOF */
  T_EQ(kcase_compare(ours, def, &c), 0);
  c.md = "no-such-digest";
  T_EQ(kcase_compare(ours, def, &c), 0);

  /* RFC 8448 (TLS 1.3 traces) 3, the simple 1-RTT handshake: the early
   * secret from no PSK and no salt, then the derived salt and the
   * handshake secret from the (EC)DHE shared secret */
  static const unsigned char early[32] = {
      0x33, 0xad, 0x0a, 0x1c, 0x60, 0x7e, 0xc0, 0x3b, 0x09, 0xe6, 0xcd,
      0x98, 0x93, 0x68, 0x0c, 0xe2, 0x10, 0xad, 0xf3, 0x00, 0xaa, 0x1f,
      0x26, 0x60, 0xe1, 0xb2, 0x2e, 0x10, 0xf1, 0x70, 0xf9, 0x2a};
  static const unsigned char ecdhe[32] = {
      0x8b, 0xd4, 0x05, 0x4f, 0xb5, 0x5b, 0x9d, 0x63, 0xfd, 0xfb, 0xac,
      0xf9, 0xf0, 0x4b, 0x9f, 0x0d, 0x35, 0xe6, 0xd6, 0x3f, 0x53, 0x75,
      0x63, 0xef, 0xd4, 0x62, 0x72, 0x90, 0x0f, 0x89, 0x49, 0x2d};
  static const unsigned char hs[32] = {
      0x1d, 0xc8, 0x26, 0xe9, 0x36, 0x06, 0xaa, 0x6f, 0xdc, 0x0a, 0xad,
      0xc1, 0x2f, 0x74, 0x1b, 0x01, 0x04, 0x6a, 0xa6, 0xb9, 0x9f, 0x69,
      0x1e, 0xd2, 0x21, 0xa9, 0xf0, 0xca, 0x04, 0x3f, 0xbe, 0xac};
  unsigned char out[32];
  kcase_fill(&c, "SHA2-256", 32, EVP_KDF_HKDF_MODE_EXTRACT_ONLY);
  c.has_key = c.has_salt = 0;
  memcpy(c.prefix, "tls13 ", 6);
  c.prefix_len = 6;
  memcpy(c.label, "derived", 7);
  c.label_len = 7;
  T_EQ(kdf_run(ours, &c, out), 1);
  T_EQ(memcmp(out, early, 32), 0);
  c.has_key = c.has_salt = 1;
  memcpy(c.key, ecdhe, 32);
  c.key_len = 32;
  memcpy(c.salt, early, 32);
  c.salt_len = 32;
  T_EQ(kdf_run(ours, &c, out), 1);
  T_EQ(memcmp(out, hs, 32), 0);

  /* the size it reports, as OpenSSL's */
  EVP_KDF_CTX *ka = EVP_KDF_CTX_new(ours), *kb = EVP_KDF_CTX_new(def);
  T_CHECK(ka && kb);
  int mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY;
  OSSL_PARAM p[] = {OSSL_PARAM_int(OSSL_KDF_PARAM_MODE, &mode),
                    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA2-384", 0),
                    OSSL_PARAM_END};
  T_EQ(EVP_KDF_CTX_set_params(ka, p), 1);
  T_EQ(EVP_KDF_CTX_set_params(kb, p), 1);
  T_EQ(EVP_KDF_CTX_get_kdf_size(ka), 48);
  T_EQ(EVP_KDF_CTX_get_kdf_size(kb), 48);
  mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  T_EQ(EVP_KDF_CTX_set_params(ka, p), 1);
  T_EQ(EVP_KDF_CTX_set_params(kb, p), 1);
  T_EQ(EVP_KDF_CTX_get_kdf_size(ka), SIZE_MAX);
  T_EQ(EVP_KDF_CTX_get_kdf_size(kb), SIZE_MAX);
  EVP_KDF_CTX_free(ka);
  EVP_KDF_CTX_free(kb);
  EVP_KDF_free(ours);
  EVP_KDF_free(def);
}

/* OpenSSL used without our property query keeps the default provider's */
static void test_others_get_default(void) {
  T_EQ(ev_x25519_provider_load(), 0);
  EVP_KDF_free(fetch(NULL, "default"));
  EVP_KDF_free(fetch("", "default"));
  EVP_KDF_free(fetch(EV_X25519_PROPQ, EV_X25519_PROVIDER));
  EVP_KDF_free(fetch(EV_PROPQ_NO_X25519, EV_X25519_PROVIDER));
  EVP_KDF_free(fetch(EV_PROPQ_NO_KDF, "default"));
  /* and the key management the other way round */
  EVP_KEYMGMT *km = EVP_KEYMGMT_fetch(NULL, "X25519", EV_PROPQ_NO_X25519);
  T_CHECK(km != NULL);
  T_STR_EQ(OSSL_PROVIDER_get0_name(EVP_KEYMGMT_get0_provider(km)), "default");
  EVP_KEYMGMT_free(km);
  km = EVP_KEYMGMT_fetch(NULL, "X25519", EV_PROPQ_NO_KDF);
  T_CHECK(km != NULL);
  T_STR_EQ(OSSL_PROVIDER_get0_name(EVP_KEYMGMT_get0_provider(km)),
           EV_X25519_PROVIDER);
  EVP_KEYMGMT_free(km);
  /* HKDF, which we do not offer, is the default provider's either way */
  EVP_KDF *h = EVP_KDF_fetch(NULL, "HKDF", EV_X25519_PROPQ);
  T_CHECK(h != NULL);
  T_STR_EQ(OSSL_PROVIDER_get0_name(EVP_KDF_get0_provider(h)), "default");
  EVP_KDF_free(h);
}

/* ---- handshakes ---------------------------------------------------------------- */

static void setup(void) {
  C = t_certs_get();
  ev_setup_external(1);
  t_log_capture();
}

static void teardown(void) {
  t_log_release();
  ev_teardown();
  T_EQ(eventer_ssl_config("ssl_own_kdf", "on"), 0);
}

static eventer_ssl_ctx_t *mk(eventer_ssl_orientation_t t, const char *suite,
                             int own_kdf) {
  T_EQ(eventer_ssl_config("ssl_own_kdf", own_kdf ? "on" : "off"), 0);
  eventer_ssl_ctx_t *x =
      t == SSL_SERVER
          ? eventer_ssl_ctx_new(SSL_SERVER, "tlsv1.3", C->srv, C->srv_key, NULL,
                                suite)
          : eventer_ssl_ctx_new(SSL_CLIENT, "tlsv1.3", NULL, NULL, C->ca, suite);
  T_CHECK(x != NULL);
  T_EQ(eventer_ssl_config("ssl_own_kdf", "on"), 0);
  return x;
}

/* every TLS 1.3 suite (SHA-256 and SHA-384 key schedules), our KDF on one
 * end and OpenSSL's on the other, each way round; then on both ends, and
 * off on both (then it is not used) */
static void test_handshakes(void) {
  setup();
  static const char *const suites[] = {"TLS_AES_128_GCM_SHA256",
                                       "TLS_AES_256_GCM_SHA384",
                                       "TLS_CHACHA20_POLY1305_SHA256"};
  for (int i = 0; i < 3; i++) {
    for (int way = 0; way < 4; way++) {
      int sv_own = way == 0 || way == 2, cl_own = way == 1 || way == 2;
      unsigned long before = ev_kdf_provider_derives();
      int rc = t_hs_pair(mk(SSL_SERVER, suites[i], sv_own),
                         mk(SSL_CLIENT, suites[i], cl_own));
      unsigned long used = ev_kdf_provider_derives() - before;
      T_CHECKF(rc == 0, "%s, server's KDF %s, client's %s: server %d, client %d",
               suites[i], sv_own ? "ours" : "OpenSSL's",
               cl_own ? "ours" : "OpenSSL's", t_sv.rv, t_cl.rv);
      /* a full handshake's key schedule is over a dozen derivations per end */
      if (sv_own || cl_own)
        T_CHECKF(used >= 12u * (unsigned)(sv_own + cl_own), "%lu derivations",
                 used);
      else
        T_EQ(used, 0);
    }
  }
  /* values it does not know are refused and change nothing */
  T_EQ(eventer_ssl_config("ssl_own_kdf", "maybe"), 1);
  unsigned long before = ev_kdf_provider_derives();
  T_EQ(t_hs_pair(mk(SSL_SERVER, suites[0], 1), mk(SSL_CLIENT, suites[0], 1)), 0);
  T_CHECK(ev_kdf_provider_derives() - before >= 24);
  teardown();
}

T_MAIN({"differential", test_differential},
       {"others_get_default", test_others_get_default},
       {"handshakes", test_handshakes})
