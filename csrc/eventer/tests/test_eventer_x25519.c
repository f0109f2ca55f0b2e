/*
 * test_eventer_x25519.c - our X25519 (eventer_x25519.c): RFC 7748's test
 * vectors; key generation (the fixed-base comb) and the ladder against
 * OpenSSL's own X25519 (the default provider, by EVP) for random and edge
 * scalars; and, under valgrind (the valgrind pass of the suite runs it),
 * that no branch and no memory address depends on the scalar.
 */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>

#include "acotest.h"
#include "eventer_x25519.h"

static void hex(uint8_t out[32], const char *h) {
  T_EQ(strlen(h), 64);
  for (int i = 0; i < 32; i++) {
    unsigned v;
    T_EQ(sscanf(h + 2 * i, "%2x", &v), 1);
    out[i] = (uint8_t)v;
  }
}

static void t_bytes_eq(const uint8_t *a, const uint8_t *b, const char *what) {
  if (memcmp(a, b, 32) != 0) {
    char ha[65], hb[65];
    for (int i = 0; i < 32; i++) {
      snprintf(ha + 2 * i, 3, "%02x", a[i]);
      snprintf(hb + 2 * i, 3, "%02x", b[i]);
    }
    T_FAIL("%s: %s != %s", what, ha, hb);
  }
}

/* OpenSSL's public key for priv (the default provider's X25519) */
static void openssl_public(uint8_t pub[32], const uint8_t priv[32]) {
  EVP_PKEY *k =
      EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", "provider=default", priv, 32);
  T_CHECK(k != NULL);
  size_t len = 32;
  T_EQ(EVP_PKEY_get_raw_public_key(k, pub, &len), 1);
  T_EQ(len, 32);
  EVP_PKEY_free(k);
}

/* OpenSSL's X25519(priv, peer) by EVP_PKEY_derive; -1 when it refuses */
static int openssl_derive(uint8_t out[32], const uint8_t priv[32],
                          const uint8_t peer[32]) {
  EVP_PKEY *k =
      EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", "provider=default", priv, 32);
  EVP_PKEY *p =
      EVP_PKEY_new_raw_public_key_ex(NULL, "X25519", "provider=default", peer, 32);
  T_CHECK(k != NULL && p != NULL);
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, k, "provider=default");
  T_CHECK(c != NULL);
  size_t len = 32;
  int rc = EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, p) == 1 &&
                   EVP_PKEY_derive(c, out, &len) == 1
               ? 0
               : -1;
  if (rc == 0) T_EQ(len, 32);
  EVP_PKEY_CTX_free(c);
  EVP_PKEY_free(k);
  EVP_PKEY_free(p);
  return rc;
}

static const uint8_t nine[32] = {9};

/* ---- RFC 7748 -------------------------------------------------------------- */

static void test_rfc7748_5_2(void) {
  uint8_t k[32], u[32], want[32], out[32];
  hex(k, "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
  hex(u, "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
  hex(want, "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
  T_EQ(ev_x25519(out, k, u), 0);
  t_bytes_eq(out, want, "5.2 vector 1");
  hex(k, "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d");
  /* its u has the top bit set: ignored */
  hex(u, "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493");
  hex(want, "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957");
  T_EQ(ev_x25519(out, k, u), 0);
  t_bytes_eq(out, want, "5.2 vector 2");
}

/* k = u = 9; k, u = X25519(k, u), k: after 1 and 1,000 rounds */
static void test_rfc7748_iterated(void) {
  uint8_t k[32] = {9}, u[32] = {9}, r[32], want1[32], want1000[32];
  hex(want1, "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079");
  hex(want1000, "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51");
  for (int i = 1; i <= 1000; i++) {
    T_EQ(ev_x25519(r, k, u), 0);
    memcpy(u, k, 32);
    memcpy(k, r, 32);
    if (i == 1) t_bytes_eq(k, want1, "iterated 1");
  }
  t_bytes_eq(k, want1000, "iterated 1000");
}

static void test_rfc7748_6_1(void) {
  uint8_t a[32], apub[32], b[32], bpub[32], shared[32], out[32];
  hex(a, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  hex(apub, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  hex(b, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  hex(bpub, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  hex(shared, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
  ev_x25519_base(out, a);
  t_bytes_eq(out, apub, "Alice's public key (comb)");
  T_EQ(ev_x25519(out, a, nine), 0);
  t_bytes_eq(out, apub, "Alice's public key (ladder)");
  ev_x25519_base(out, b);
  t_bytes_eq(out, bpub, "Bob's public key (comb)");
  T_EQ(ev_x25519(out, a, bpub), 0);
  t_bytes_eq(out, shared, "Alice's shared secret");
  T_EQ(ev_x25519(out, b, apub), 0);
  t_bytes_eq(out, shared, "Bob's shared secret");
}

/* a point of small order (here u = 0 and u = 1) gives all zeros: -1 */
static void test_small_order(void) {
  uint8_t k[32], u[32] = {0}, out[32];
  hex(k, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  T_EQ(ev_x25519(out, k, u), -1);
  u[0] = 1;
  T_EQ(ev_x25519(out, k, u), -1);
  uint8_t o2[32];
  T_EQ(openssl_derive(o2, k, u), -1);
}

/* ---- against OpenSSL ---------------------------------------------------------- */

static void check_scalar(const uint8_t k[32], const char *what) {
  uint8_t ours[32], theirs[32], ladder[32];
  ev_x25519_base(ours, k);
  openssl_public(theirs, k);
  t_bytes_eq(ours, theirs, what);
  T_EQ(ev_x25519(ladder, k, nine), 0);
  t_bytes_eq(ladder, theirs, what);
}

/* scalars whose comb digits or clamping reach the edges */
static void test_edge_scalars(void) {
  uint8_t k[32], pub0[32], pub1[32];
  static const uint8_t fills[] = {0x00, 0xff, 0x88, 0x77, 0x80, 0x08, 0x0f,
                                  0xf0, 0x01, 0x7f, 0xf8, 0x87, 0x78};
  for (size_t f = 0; f < sizeof(fills); f++) {
    memset(k, fills[f], 32);
    check_scalar(k, "fill");
    /* the high bit (dropped by clamping) set and clear */
    k[31] |= 0x80;
    check_scalar(k, "fill, bit 255 set");
    k[31] &= 0x7f;
    check_scalar(k, "fill, bit 255 clear");
    /* alternate bytes */
    for (int i = 0; i < 32; i += 2) k[i] = (uint8_t)~fills[f];
    check_scalar(k, "alternating fill");
  }
  /* each single bit that survives clamping: 2^254 + 2^i */
  for (int i = 3; i < 254; i++) {
    memset(k, 0, 32);
    k[i >> 3] |= (uint8_t)(1u << (i & 7));
    check_scalar(k, "single bit");
  }
  /* values that clamp the same give the same key */
  RAND_bytes(k, 32);
  ev_x25519_base(pub0, k);
  for (int v = 0; v < 16; v++) {
    uint8_t k2[32];
    memcpy(k2, k, 32);
    k2[0] = (uint8_t)((k2[0] & 0xf8) | (v & 7));
    k2[31] = (uint8_t)((k2[31] & 0x3f) | ((v & 8) ? 0x80 : 0x00) |
                       ((v & 1) ? 0x40 : 0x00));
    ev_x25519_base(pub1, k2);
    t_bytes_eq(pub1, pub0, "scalars that clamp the same");
  }
}

static void test_random_scalars(void) {
  long n = t_scale(100000, 100);
  uint8_t k[32];
  char what[64];
  for (long i = 0; i < n; i++) {
    T_EQ(RAND_bytes(k, 32), 1);
    uint8_t ours[32], theirs[32];
    ev_x25519_base(ours, k);
    openssl_public(theirs, k);
    snprintf(what, sizeof(what), "random scalar %ld", i);
    t_bytes_eq(ours, theirs, what);
  }
}

/* the ladder against OpenSSL's derive: random scalars and random u
 * (canonical or not, top bit set or not) */
static void test_random_exchanges(void) {
  long n = t_scale(5000, 50);
  uint8_t k[32], u[32], ours[32], theirs[32];
  for (long i = 0; i < n; i++) {
    T_EQ(RAND_bytes(k, 32), 1);
    T_EQ(RAND_bytes(u, 32), 1);
    int rc = ev_x25519(ours, k, u);
    T_EQ(openssl_derive(theirs, k, u), rc);
    if (rc == 0) t_bytes_eq(ours, theirs, "random exchange");
  }
}

/* n keys at once (one inversion for all) equal n keys one at a time, for
 * every n up to the most, and the most when asked for more */
static void test_base_n(void) {
  uint8_t k[EV_X25519_BASE_MAX + 1][32], pub[EV_X25519_BASE_MAX + 1][32],
      want[32];
  long rounds = t_scale(200, 4);
  for (long r = 0; r < rounds; r++) {
    for (int n = 1; n <= EV_X25519_BASE_MAX + 1; n++) {
      T_EQ(RAND_bytes(&k[0][0], sizeof(k)), 1);
      if (r == 0) memset(k[n - 1], 0xff, 32); /* an extreme digit pattern */
      memset(pub, 0xa5, sizeof(pub));
      ev_x25519_base_n(pub, (const uint8_t(*)[32])k, n);
      int m = n > EV_X25519_BASE_MAX ? EV_X25519_BASE_MAX : n;
      for (int i = 0; i < m; i++) {
        openssl_public(want, k[i]);
        t_bytes_eq(pub[i], want, "a key of a batch");
      }
      for (int i = m; i < n; i++)
        for (int j = 0; j < 32; j++) T_EQ(pub[i][j], 0xa5);
    }
  }
}

/* ---- constant time ------------------------------------------------------------
 * Under valgrind memcheck, bytes marked undefined taint everything computed
 * from them, and memcheck reports a conditional jump or a memory address
 * that depends on them.  So: mark the scalar undefined, compute, count the
 * reports (none allowed), then mark the result defined again to compare it.
 * Outside valgrind there is nothing to observe; the suite's valgrind pass
 * runs this program, and there the case must run (never skipped). */
static void test_constant_time(void) {
  if (!RUNNING_ON_VALGRIND) {
    T_CHECKF(strcmp(t_mode(), "valgrind") != 0,
             "ACO_TEST_MODE=valgrind but not running under valgrind");
    printf("note: constant_time checks only under valgrind (the valgrind "
           "pass); here it compares results\n");
  }
  uint8_t k[32], u[32], pub[32], sec[32], want[32];
  ev_x25519_base(pub, nine); /* the table is built from public data */
  for (int i = 0; i < 8; i++) {
    T_EQ(RAND_bytes(k, 32), 1);
    T_EQ(RAND_bytes(u, 32), 1);
    /* some scalars with extreme digits too */
    if (i == 1) memset(k, 0x88, 32);
    if (i == 2) memset(k, 0xff, 32);
    if (i == 3) memset(k, 0x00, 32);
    uint8_t kcopy[32];
    memcpy(kcopy, k, 32);
    unsigned long before = VALGRIND_COUNT_ERRORS;
    VALGRIND_MAKE_MEM_UNDEFINED(k, 32);
    ev_x25519_base(pub, k);
    int rc = ev_x25519(sec, k, u);
    uint8_t kk[2][32], pp[2][32];
    memcpy(kk[0], kcopy, 32);
    memcpy(kk[1], kcopy, 32);
    kk[1][5] ^= 0x5a;
    VALGRIND_MAKE_MEM_UNDEFINED(kk, sizeof(kk));
    ev_x25519_base_n(pp, (const uint8_t(*)[32])kk, 2);
    unsigned long after = VALGRIND_COUNT_ERRORS;
    VALGRIND_MAKE_MEM_DEFINED(pp, sizeof(pp));
    T_EQ(after - before, 0);
    VALGRIND_MAKE_MEM_DEFINED(pub, 32);
    VALGRIND_MAKE_MEM_DEFINED(sec, 32);
    VALGRIND_MAKE_MEM_DEFINED(&rc, sizeof(rc));
    openssl_public(want, kcopy);
    t_bytes_eq(pub, want, "keygen with an undefined scalar");
    t_bytes_eq(pp[0], want, "a batch with an undefined scalar");
    T_EQ(openssl_derive(want, kcopy, u), rc);
    if (rc == 0) t_bytes_eq(sec, want, "exchange with an undefined scalar");
  }
}

T_MAIN({"rfc7748_5_2", test_rfc7748_5_2},
       {"rfc7748_iterated", test_rfc7748_iterated},
       {"rfc7748_6_1", test_rfc7748_6_1},
       {"small_order", test_small_order},
       {"edge_scalars", test_edge_scalars},
       {"random_scalars", test_random_scalars},
       {"random_exchanges", test_random_exchanges},
       {"base_n", test_base_n},
       {"constant_time", test_constant_time})
