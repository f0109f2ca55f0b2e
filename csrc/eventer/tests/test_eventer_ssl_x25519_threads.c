/*
 * test_eventer_ssl_x25519_threads.c - our X25519 provider
 * (eventer_x25519_prov.c) used from several threads at once, from a cold
 * start (also run under ThreadSanitizer): the threads are released
 * together into the provider's first load and the comb's first table
 * build, then each generates key pairs with our provider and with the
 * default provider and exchanges them both ways (the default provider's
 * exchange, ours exported to it, as in a TLS handshake).  Every public key
 * must be the default provider's for the same private key, every pair of
 * shared secrets must agree, and the provider's key-generation count must
 * be exactly the number asked for.  Each round also takes the shared
 * secret through the provider's TLS13-KDF (RFC 8446's extract step and an
 * HKDF-Expand-Label, SHA-256 and SHA-384 by turns) and the default
 * provider's: the same bytes, and the derivation count exact.
 */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/provider.h>
#include <pthread.h>

#include "acotest.h"
#include "eventer_x25519.h"

#define NTHREADS 4

static pthread_barrier_t go;
static long rounds;

typedef struct {
  long ours, mismatched_pub, mismatched_secret, mismatched_kdf, failed;
  int load_rc;
  char prov[64];
} th_res_t;

static int derive(EVP_PKEY *mine, const char *propq, EVP_PKEY *peer,
                  unsigned char out[32]) {
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, mine, propq);
  size_t len = 32;
  int ok = c && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, peer) == 1 &&
           EVP_PKEY_derive(c, out, &len) == 1 && len == 32;
  EVP_PKEY_CTX_free(c);
  return ok;
}

/* handshake-secret-like extract (salt: the secret itself) then an
 * expand of it, with the TLS13-KDF that propq fetches; 0 when it fails */
static int kdf2(const char *propq, const char *md, const unsigned char s[32],
                unsigned char out[64 + 16]) {
  EVP_KDF *kdf = EVP_KDF_fetch(NULL, "TLS13-KDF", propq);
  EVP_KDF_CTX *k = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
  EVP_KDF_free(kdf);
  if (!k) return 0;
  size_t hl = strcmp(md, "SHA2-384") ? 32 : 48;
  unsigned char salt[48];
  memset(salt, 0x11, sizeof(salt));
  int mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY;
  OSSL_PARAM p[] = {OSSL_PARAM_int(OSSL_KDF_PARAM_MODE, &mode),
                    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0),
                    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_KEY, (void *)s, 32),
                    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SALT, salt, hl),
                    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_PREFIX, "tls13 ", 6),
                    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_LABEL, "derived", 7),
                    OSSL_PARAM_END};
  int ok = EVP_KDF_derive(k, out, hl, p) == 1;
  EVP_KDF_CTX_free(k);
  kdf = EVP_KDF_fetch(NULL, "TLS13-KDF", propq);
  k = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
  EVP_KDF_free(kdf);
  if (!k) return 0;
  mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM q[] = {OSSL_PARAM_int(OSSL_KDF_PARAM_MODE, &mode),
                    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0),
                    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_KEY, out, hl),
                    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_PREFIX, "tls13 ", 6),
                    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_LABEL, "key", 3),
                    OSSL_PARAM_END};
  ok = ok && EVP_KDF_derive(k, out + hl, 16, q) == 1;
  EVP_KDF_CTX_free(k);
  return ok;
}

static void *worker(void *arg) {
  th_res_t *r = arg;
  pthread_barrier_wait(&go);
  r->load_rc = ev_x25519_provider_load();
  for (long i = 0; i < rounds; i++) {
    EVP_PKEY *ours = EVP_PKEY_Q_keygen(NULL, EV_X25519_PROPQ, "X25519");
    EVP_PKEY *theirs = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    if (!ours || !theirs) {
      r->failed++;
      EVP_PKEY_free(ours);
      EVP_PKEY_free(theirs);
      continue;
    }
    if (i == 0) {
      /* whose key management made ours */
      const OSSL_PROVIDER *p = EVP_PKEY_get0_provider(ours);
      snprintf(r->prov, sizeof(r->prov), "%s", p ? OSSL_PROVIDER_get0_name(p) : "?");
    }
    r->ours++;
    /* our public key against the default provider's for our private key */
    unsigned char priv[32], pub[32], want[32];
    size_t l = 32;
    int ok = EVP_PKEY_get_raw_private_key(ours, priv, &l) == 1 && l == 32;
    l = 32;
    ok = ok && EVP_PKEY_get_raw_public_key(ours, pub, &l) == 1 && l == 32;
    EVP_PKEY *check =
        ok ? EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", "provider=default", priv, 32)
           : NULL;
    l = 32;
    ok = ok && check && EVP_PKEY_get_raw_public_key(check, want, &l) == 1;
    if (!ok)
      r->failed++;
    else if (memcmp(pub, want, 32) != 0)
      r->mismatched_pub++;
    EVP_PKEY_free(check);
    /* the exchange both ways */
    unsigned char s1[32], s2[32];
    if (!derive(ours, EV_X25519_PROPQ, theirs, s1) || !derive(theirs, NULL, ours, s2))
      r->failed++;
    else if (memcmp(s1, s2, 32) != 0)
      r->mismatched_secret++;
    /* the key schedule from it: ours and the default provider's */
    unsigned char k1[64 + 16], k2[64 + 16];
    const char *md = i % 2 ? "SHA2-384" : "SHA2-256";
    size_t kl = (i % 2 ? 48 : 32) + 16;
    if (!kdf2("provider=" EV_X25519_PROVIDER, md, s1, k1) ||
        !kdf2("provider=default", md, s1, k2))
      r->failed++;
    else if (memcmp(k1, k2, kl) != 0)
      r->mismatched_kdf++;
    EVP_PKEY_free(ours);
    EVP_PKEY_free(theirs);
  }
  return NULL;
}

static void test_storm(void) {
  rounds = t_scale(2000, 20);
  if (t_sanitized()) rounds /= 4;
  T_EQ(pthread_barrier_init(&go, NULL, NTHREADS + 1), 0);
  pthread_t th[NTHREADS];
  th_res_t res[NTHREADS];
  memset(res, 0, sizeof(res));
  unsigned long before = ev_x25519_provider_keygens();
  unsigned long dbefore = ev_kdf_provider_derives();
  for (int i = 0; i < NTHREADS; i++)
    T_EQ(pthread_create(&th[i], NULL, worker, &res[i]), 0);
  pthread_barrier_wait(&go);
  for (int i = 0; i < NTHREADS; i++) T_EQ(pthread_join(th[i], NULL), 0);
  pthread_barrier_destroy(&go);
  long total = 0;
  for (int i = 0; i < NTHREADS; i++) {
    T_EQ(res[i].load_rc, 0);
    T_EQ(res[i].failed, 0);
    T_EQ(res[i].mismatched_pub, 0);
    T_EQ(res[i].mismatched_secret, 0);
    T_EQ(res[i].mismatched_kdf, 0);
    T_EQ(res[i].ours, rounds);
    T_STR_EQ(res[i].prov, EV_X25519_PROVIDER);
    total += res[i].ours;
  }
  T_EQ(ev_x25519_provider_keygens() - before, total);
  T_EQ(ev_kdf_provider_derives() - dbefore, 2 * total);
}

T_MAIN({"storm", test_storm})
