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
 * be exactly the number asked for.
 */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <pthread.h>

#include "acotest.h"
#include "eventer_x25519.h"

#define NTHREADS 4

static pthread_barrier_t go;
static long rounds;

typedef struct {
  long ours, mismatched_pub, mismatched_secret, failed;
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
    T_EQ(res[i].ours, rounds);
    T_STR_EQ(res[i].prov, EV_X25519_PROVIDER);
    total += res[i].ours;
  }
  T_EQ(ev_x25519_provider_keygens() - before, total);
}

T_MAIN({"storm", test_storm})
