/*
 * eventer_x25519.h - internal: X25519 (RFC 7748) of our own for the TLS
 * opset's key shares, and the OpenSSL provider that offers it to our own
 * SSL_CTXs only (eventer_x25519_prov.c).  Not installed.
 *
 * ev_x25519_base computes a public key X25519(k, 9) with a fixed-base comb
 * on the twisted Edwards curve birationally equivalent to Curve25519 (a
 * table of multiples of the base point, built by our code at first use),
 * instead of a Montgomery ladder over all 255 bits.  ev_x25519 is the
 * general scalar multiplication (the Montgomery ladder of RFC 7748 5).
 * Both are constant-time: no branch and no memory address depends on the
 * scalar (test_eventer_x25519 checks this under valgrind).
 */
#ifndef EVENTER_X25519_H
#define EVENTER_X25519_H

#include <stdint.h>

/* pub = X25519(priv, 9).  priv is clamped (RFC 7748 5) on a copy. */
void ev_x25519_base(uint8_t pub[32], const uint8_t priv[32]);

/* pub[i] = X25519(priv[i], 9) for i < n, n at most EV_X25519_BASE_MAX
 * (more are not computed): n combs and one field inversion for all of
 * them (Montgomery's trick), where n calls of ev_x25519_base make n
 * inversions (254 squarings each, about a fifth of a key's cost). */
#define EV_X25519_BASE_MAX 8
void ev_x25519_base_n(uint8_t pub[][32], const uint8_t priv[][32], int n);

/* out = X25519(scalar, u).  scalar is clamped on a copy; u's top bit is
 * ignored and non-canonical u (>= p) accepted, as RFC 7748 5 says.
 * Returns 0, or -1 when out is all zeros (u of small order: a peer's
 * contributory-behaviour failure, RFC 7748 6.1; TLS must refuse it). */
int ev_x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t u[32]);

/* The provider (eventer_x25519_prov.c).  EV_X25519_PROVIDER is its name;
 * EV_X25519_PROPQ the property query our SSL_CTXs are made with so that
 * they prefer it (ev.own: a property only its algorithms carry; a name
 * without a dot is refused unless OpenSSL predefines it) and fall back to
 * the default provider for everything else. */
#define EV_X25519_PROVIDER "eventer_x25519"
#define EV_X25519_PROPQ "?ev.own"
/* The same with one of the provider's two algorithms turned off: its
 * property (eventer.x25519 on the X25519 key management, eventer.kdf on
 * TLS13-KDF) required absent, which every other provider's algorithms
 * satisfy. */
#define EV_PROPQ_NO_KDF EV_X25519_PROPQ ",eventer.kdf=no"
#define EV_PROPQ_NO_X25519 EV_X25519_PROPQ ",eventer.x25519=no"

/* Registers (OSSL_PROVIDER_add_builtin) and loads the provider into the
 * default library context, keeping the default provider as a fallback,
 * so that queries without our property still get the default provider's
 * algorithms.  Once per process; 0 when loaded, -1 when OpenSSL refused
 * (then our contexts use the default provider). */
int ev_x25519_provider_load(void);

/* How many key pairs the provider has generated (for the tests). */
unsigned long ev_x25519_provider_keygens(void);

/* The provider's TLS13-KDF (eventer_kdf_prov.c): its dispatch table; the
 * digests it keeps, fetched from the default provider by ev_kdf_init
 * (0, or -1) before the provider is loaded and freed by ev_kdf_fini; how
 * many derivations it has done (for the tests). */
#include <openssl/core.h>
extern const OSSL_DISPATCH ev_kdf_functions[];
int ev_kdf_init(void);
void ev_kdf_fini(void);
unsigned long ev_kdf_provider_derives(void);

#endif
