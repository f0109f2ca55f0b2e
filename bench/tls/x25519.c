/*
 * bench/tls/x25519.c - native time of one X25519 key generation and one
 * exchange: ours (csrc/eventer/eventer_x25519.c) against OpenSSL's default
 * provider (EVP: a raw private key's public key, and EVP_PKEY_derive on a
 * prepared context).  Run on one CPU by bench/tls/x25519.sh, which builds
 * it against the library's internal header.  Prints ns per operation,
 * the median of ROUNDS rounds, ours and OpenSSL's alternating.
 * Also ours EV_X25519_BASE_MAX keys at a time (one inversion, as the
 * provider's pool makes them) and the private keys' RAND_priv_bytes, a
 * call a key against one call for EV_X25519_BASE_MAX keys, per key.
 */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eventer_x25519.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static uint8_t sink;

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 2000, rounds = argc > 2 ? atoi(argv[2]) : 7;
  uint8_t k[32], pub[32], peer[32];
  RAND_bytes(k, 32);
  RAND_bytes(peer, 32);
  peer[31] &= 127;
  double r[7][64];
  uint8_t k8[EV_X25519_BASE_MAX][32], pub8[EV_X25519_BASE_MAX][32];
  RAND_bytes(&k8[0][0], sizeof(k8));
  EVP_PKEY *kp = EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", "provider=default", k, 32);
  EVP_PKEY *pp = EVP_PKEY_new_raw_public_key_ex(NULL, "X25519", "provider=default", peer, 32);
  EVP_PKEY_CTX *dc = EVP_PKEY_CTX_new_from_pkey(NULL, kp, "provider=default");
  if (!kp || !pp || !dc || EVP_PKEY_derive_init(dc) != 1 || EVP_PKEY_derive_set_peer(dc, pp) != 1)
    return 1;
  ev_x25519_base(pub, k); /* the table */
  for (int round = 0; round < rounds && round < 64; round++) {
    double t = now();
    for (int i = 0; i < n; i++) { k[0] = (uint8_t)i; ev_x25519_base(pub, k); sink ^= pub[0]; }
    r[0][round] = (now() - t) / n;
    t = now();
    for (int i = 0; i < n; i++) {
      k[0] = (uint8_t)i;
      EVP_PKEY *x = EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", "provider=default", k, 32);
      size_t len = 32;
      EVP_PKEY_get_raw_public_key(x, pub, &len);
      sink ^= pub[0];
      EVP_PKEY_free(x);
    }
    r[1][round] = (now() - t) / n;
    t = now();
    for (int i = 0; i < n; i++) { k[0] = (uint8_t)i; sink ^= (uint8_t)ev_x25519(pub, k, peer); sink ^= pub[0]; }
    r[2][round] = (now() - t) / n;
    t = now();
    for (int i = 0; i < n; i++) { size_t len = 32; EVP_PKEY_derive(dc, pub, &len); sink ^= pub[0]; }
    r[3][round] = (now() - t) / n;
    /* per key: EV_X25519_BASE_MAX at once (one inversion), as the
     * provider's pool makes them */
    t = now();
    for (int i = 0; i < n; i += EV_X25519_BASE_MAX) {
      k8[0][0] = (uint8_t)i;
      ev_x25519_base_n(pub8, (const uint8_t(*)[32])k8, EV_X25519_BASE_MAX);
      sink ^= pub8[0][0];
    }
    r[4][round] = (now() - t) / n;
    /* the private key's random bytes: a call a key, or one for the batch */
    t = now();
    for (int i = 0; i < n; i++) { RAND_priv_bytes(k, 32); sink ^= k[0]; }
    r[5][round] = (now() - t) / n;
    t = now();
    for (int i = 0; i < n; i += EV_X25519_BASE_MAX) { RAND_priv_bytes(&k8[0][0], sizeof(k8)); sink ^= k8[0][0]; }
    r[6][round] = (now() - t) / n;
  }
  const char *names[] = {"keygen ours", "keygen openssl", "exchange ours", "exchange openssl",
                         "keygen ours x8", "RAND_priv 32", "RAND_priv 256/8"};
  for (int w = 0; w < 7; w++) {
    qsort(r[w], rounds, sizeof(double), cmpd);
    printf("%-17s %8.0f ns (median of %d x %d; range %.0f-%.0f)\n", names[w], r[w][rounds / 2], rounds, n, r[w][0], r[w][rounds - 1]);
  }
  printf("keygen openssl/ours %.2f; exchange openssl/ours %.2f; keygen ours/ours x8 %.2f\n", r[1][rounds / 2] / r[0][rounds / 2], r[3][rounds / 2] / r[2][rounds / 2], r[0][rounds / 2] / r[4][rounds / 2]);
  EVP_PKEY_CTX_free(dc); EVP_PKEY_free(kp); EVP_PKEY_free(pp);
  return sink == 255 ? 2 : 0;
}
