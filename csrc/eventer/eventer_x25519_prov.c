/*
 * eventer_x25519_prov.c - an OpenSSL 3 provider of ours, built into the
 * library, that offers two algorithms: KEYMGMT "X25519", whose key
 * generation computes the public key with ev_x25519_base (the fixed-base
 * comb of eventer_x25519.c) instead of OpenSSL 3.0's portable code, and
 * KDF "TLS13-KDF", TLS 1.3's key schedule with digests fetched once
 * (eventer_kdf_prov.c).  Each has a property of its own (eventer.x25519,
 * eventer.kdf) by which a context's query can exclude it.
 *
 * Scope.  Only our own SSL_CTXs use it: they are made with the property
 * query EV_X25519_PROPQ ("?ev.own": a preference, not a requirement,
 * for the property ev.own that only our algorithms carry), so libssl's
 * key-share generation (EVP_PKEY_CTX_new_from_name(libctx, "X25519",
 * propq)) finds ours and everything else falls back to the default
 * provider.  The key exchange
 * stays the default provider's: EVP exports our key (public and private
 * bytes, so the default provider does not recompute the public key) to
 * it.  The provider is loaded with OSSL_PROVIDER_try_load(..., 1), which
 * keeps the default provider's automatic loading, and the default
 * provider's X25519 is fetched before ours exists, so a fetch without a
 * property query (any other OpenSSL user of the process) still gets the
 * default provider's, which comes first (test_eventer_ssl_x25519 checks
 * this, and fails without that first fetch); our name also sorts after
 * "default", the order in which OpenSSL asks its providers when it builds
 * its algorithm store afresh.
 *
 * TLS groups.  libssl, when it makes an SSL_CTX, keeps a provider's group
 * only when the KEYMGMT its query fetches for the group's algorithm comes
 * from that same provider.  With our property query "X25519" comes from
 * us, so we declare the x25519 group (TLS-GROUP capability, the same
 * IANA id 29 and limits as the default provider's); contexts made
 * without our query keep the default provider's.
 */
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "eventer_x25519.h"

typedef struct {
  uint8_t pub[32], priv[32];
  int has_pub, has_priv;
} ev_xkey_t;

typedef struct {
  int selection;
} ev_xgen_t;

/* ---- keys ------------------------------------------------------------------- */

static void *ev_xk_new(void *provctx) {
  (void)provctx;
  return OPENSSL_zalloc(sizeof(ev_xkey_t));
}

static void ev_xk_free(void *kd) {
  if (kd) OPENSSL_clear_free(kd, sizeof(ev_xkey_t));
}

static void *ev_xk_dup(const void *kd, int selection) {
  const ev_xkey_t *k = kd;
  ev_xkey_t *d = OPENSSL_zalloc(sizeof(*d));
  if (!d) return NULL;
  if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) && k->has_pub) {
    memcpy(d->pub, k->pub, 32);
    d->has_pub = 1;
  }
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && k->has_priv) {
    memcpy(d->priv, k->priv, 32);
    d->has_priv = 1;
  }
  return d;
}

static int ev_xk_has(const void *kd, int selection) {
  const ev_xkey_t *k = kd;
  if (!k) return 0;
  int ok = 1;
  if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) ok = ok && k->has_pub;
  if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ok = ok && k->has_priv;
  return ok;
}

static int ev_xk_match(const void *a, const void *b, int selection) {
  const ev_xkey_t *x = a, *y = b;
  if (!(selection & OSSL_KEYMGMT_SELECT_KEYPAIR)) return 1;
  if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) {
    if (x->has_pub && y->has_pub) return CRYPTO_memcmp(x->pub, y->pub, 32) == 0;
  }
  if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) {
    if (x->has_priv && y->has_priv)
      return CRYPTO_memcmp(x->priv, y->priv, 32) == 0;
  }
  return 0;
}

/* OSSL_PKEY_PARAM_PUB_KEY / PRIV_KEY (octet strings of 32 bytes); a
 * private key without its public key gets it computed */
static int ev_xk_import(void *kd, int selection, const OSSL_PARAM params[]) {
  ev_xkey_t *k = kd;
  if (!k || !(selection & OSSL_KEYMGMT_SELECT_KEYPAIR)) return 0;
  const OSSL_PARAM *pp = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY);
  const OSSL_PARAM *pv =
      (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)
          ? OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PRIV_KEY)
          : NULL;
  if (!pp && !pv) return 0;
  void *buf;
  size_t len;
  if (pv) {
    buf = k->priv;
    if (!OSSL_PARAM_get_octet_string(pv, &buf, 32, &len) || len != 32) return 0;
    k->has_priv = 1;
  }
  if (pp) {
    buf = k->pub;
    if (!OSSL_PARAM_get_octet_string(pp, &buf, 32, &len) || len != 32) return 0;
    k->has_pub = 1;
  } else {
    ev_x25519_base(k->pub, k->priv);
    k->has_pub = 1;
  }
  return 1;
}

static const OSSL_PARAM ev_xk_key_types[] = {
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, NULL, 0), OSSL_PARAM_END};

static const OSSL_PARAM *ev_xk_key_types_fn(int selection) {
  return (selection & OSSL_KEYMGMT_SELECT_KEYPAIR) ? ev_xk_key_types : NULL;
}

static int ev_xk_export(void *kd, int selection, OSSL_CALLBACK *cb, void *arg) {
  ev_xkey_t *k = kd;
  if (!k || !(selection & OSSL_KEYMGMT_SELECT_KEYPAIR)) return 0;
  OSSL_PARAM p[3];
  int n = 0;
  if (k->has_pub)
    p[n++] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, k->pub, 32);
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && k->has_priv)
    p[n++] =
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, k->priv, 32);
  p[n] = OSSL_PARAM_construct_end();
  return cb(p, arg);
}

static int ev_xk_get_params(void *kd, OSSL_PARAM params[]) {
  ev_xkey_t *k = kd;
  OSSL_PARAM *p;
  if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_BITS)) &&
      !OSSL_PARAM_set_int(p, 253))
    return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_SECURITY_BITS)) &&
      !OSSL_PARAM_set_int(p, 128))
    return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_MAX_SIZE)) &&
      !OSSL_PARAM_set_int(p, 32))
    return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY)) &&
      (!k->has_pub || !OSSL_PARAM_set_octet_string(p, k->pub, 32)))
    return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PUB_KEY)) &&
      (!k->has_pub || !OSSL_PARAM_set_octet_string(p, k->pub, 32)))
    return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PRIV_KEY)) &&
      (!k->has_priv || !OSSL_PARAM_set_octet_string(p, k->priv, 32)))
    return 0;
  return 1;
}

static const OSSL_PARAM *ev_xk_gettable(void *provctx) {
  (void)provctx;
  static const OSSL_PARAM t[] = {
      OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
      OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
      OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
      OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
      OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
      OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, NULL, 0),
      OSSL_PARAM_END};
  return t;
}

/* a peer's key share: the encoded public key replaces the key */
static int ev_xk_set_params(void *kd, const OSSL_PARAM params[]) {
  ev_xkey_t *k = kd;
  const OSSL_PARAM *p =
      OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY);
  if (p) {
    uint8_t pub[32];
    void *buf = pub;
    size_t len;
    if (!OSSL_PARAM_get_octet_string(p, &buf, 32, &len) || len != 32) return 0;
    OPENSSL_cleanse(k->priv, 32);
    k->has_priv = 0;
    memcpy(k->pub, pub, 32);
    k->has_pub = 1;
  }
  return 1;
}

static const OSSL_PARAM *ev_xk_settable(void *provctx) {
  (void)provctx;
  static const OSSL_PARAM t[] = {
      OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
      OSSL_PARAM_END};
  return t;
}

/* a key pair's public key must be its private key's */
static int ev_xk_validate(const void *kd, int selection, int checktype) {
  const ev_xkey_t *k = kd;
  (void)checktype;
  if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) && !k->has_pub) return 0;
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && !k->has_priv) return 0;
  if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) == OSSL_KEYMGMT_SELECT_KEYPAIR) {
    uint8_t pub[32];
    ev_x25519_base(pub, k->priv);
    if (CRYPTO_memcmp(pub, k->pub, 32) != 0) return 0;
  }
  return 1;
}

static unsigned long ev_xgens; /* __atomic: key pairs generated */

unsigned long ev_x25519_provider_keygens(void) {
  return __atomic_load_n(&ev_xgens, __ATOMIC_RELAXED);
}

/* ---- key generation -------------------------------------------------------------- */

static int ev_xg_set_params(void *g, const OSSL_PARAM params[]) {
  (void)g;
  const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME);
  if (p) {
    const char *name = NULL;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || strcasecmp(name, "x25519"))
      return 0;
  }
  return 1;
}

static const OSSL_PARAM *ev_xg_settable(void *g, void *provctx) {
  (void)g, (void)provctx;
  static const OSSL_PARAM t[] = {
      OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
      OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_PROPERTIES, NULL, 0), OSSL_PARAM_END};
  return t;
}

static void *ev_xg_init(void *provctx, int selection, const OSSL_PARAM params[]) {
  (void)provctx;
  ev_xgen_t *g = OPENSSL_zalloc(sizeof(*g));
  if (!g) return NULL;
  g->selection = selection;
  if (!ev_xg_set_params(g, params)) {
    OPENSSL_free(g);
    return NULL;
  }
  return g;
}

/* Key pairs are made EV_X25519_BASE_MAX at a time and handed out one
 * per generation from a pool of the thread's: one RAND_priv_bytes and one
 * field inversion for all of them (ev_x25519_base_n) where a key at a
 * time pays one of each (the inversion about a fifth of the comb's cost,
 * the DRBG call a getpid system call and a CTR-DRBG update).  Each pair
 * is handed out once and its slot wiped at once; the pool is an mmap'd
 * page with MADV_WIPEONFORK, so a child of fork() (however it forked)
 * finds it zeroed, that is empty, and never hands out a key its parent
 * has or will.  Where the kernel refuses MADV_WIPEONFORK (before Linux
 * 4.14), no pool: a key at a time.  Where the advice is accepted and not
 * applied (qemu's user-mode emulation returns 0 and ignores it), an
 * atfork handler covers fork() through the C library: a child's first
 * generation finds the fork count changed and empties the pool.  A
 * thread's pool is wiped and unmapped at its exit. */
typedef struct {
  uint32_t left; /* pairs not yet handed out: slots 0 .. left - 1 */
  unsigned long forks; /* ev_xpool_forks when it was filled */
  uint8_t priv[EV_X25519_BASE_MAX][32];
  uint8_t pub[EV_X25519_BASE_MAX][32];
} ev_xpool_t;

#define EV_XPOOL_NONE ((ev_xpool_t *)1) /* this thread has no pool */
static __thread ev_xpool_t *ev_xpool;
static pthread_key_t ev_xpool_key;
static int ev_xpool_key_ok;
static pthread_once_t ev_xpool_once = PTHREAD_ONCE_INIT;
static size_t ev_xpool_size;

static void ev_xpool_drop(void *v) {
  ev_xpool_t *pool = v;
  if (!pool || pool == EV_XPOOL_NONE) return;
  ev_xpool = EV_XPOOL_NONE; /* (runs on the exiting thread) */
  explicit_bzero(pool, sizeof(*pool));
  munmap(pool, ev_xpool_size);
}

static unsigned long ev_xpool_forks; /* fork()s into this process */
static void ev_xpool_atfork_child(void) { ev_xpool_forks++; }

static void ev_xpool_init(void) {
  if (pthread_atfork(NULL, NULL, ev_xpool_atfork_child) != 0) return;
  long pg = sysconf(_SC_PAGESIZE);
  ev_xpool_size = pg > 0 && (size_t)pg >= sizeof(ev_xpool_t) ? (size_t)pg : 4096;
  ev_xpool_key_ok = pthread_key_create(&ev_xpool_key, ev_xpool_drop) == 0;
}

static ev_xpool_t *ev_xpool_get(void) {
  ev_xpool_t *pool = ev_xpool;
  if (pool) return pool == EV_XPOOL_NONE ? NULL : pool;
  pthread_once(&ev_xpool_once, ev_xpool_init);
  ev_xpool = EV_XPOOL_NONE;
  if (!ev_xpool_key_ok) return NULL;
  void *m = mmap(NULL, ev_xpool_size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
#ifdef MADV_WIPEONFORK
  if (madvise(m, ev_xpool_size, MADV_WIPEONFORK) != 0) {
    munmap(m, ev_xpool_size);
    return NULL;
  }
#else
  munmap(m, ev_xpool_size);
  return NULL;
#endif
  if (pthread_setspecific(ev_xpool_key, m) != 0) {
    munmap(m, ev_xpool_size);
    return NULL;
  }
  ev_xpool = m;
  return m;
}

/* the private key as OpenSSL's X25519 key generation makes it (random,
 * clamped); the public key by the comb: from the thread's pool, or one
 * pair on its own.  0, or -1 when the DRBG fails. */
static int ev_xpair(uint8_t priv[32], uint8_t pub[32]) {
  ev_xpool_t *pool = ev_xpool_get();
  int n = pool ? EV_X25519_BASE_MAX : 1;
  uint8_t (*pv)[32] = pool ? pool->priv : (uint8_t(*)[32])priv;
  uint8_t (*pb)[32] = pool ? pool->pub : (uint8_t(*)[32])pub;
  if (pool && pool->left && pool->forks != ev_xpool_forks) {
    explicit_bzero(pool, sizeof(*pool)); /* a forked child's copy */
  }
  if (!pool || pool->left == 0) {
    if (RAND_priv_bytes(&pv[0][0], 32 * n) != 1) {
      explicit_bzero(&pv[0][0], 32 * (size_t)n); /* whatever it wrote */
      return -1;
    }
    for (int i = 0; i < n; i++) {
      pv[i][0] &= 248;
      pv[i][31] &= 127;
      pv[i][31] |= 64;
    }
    ev_x25519_base_n(pb, (const uint8_t(*)[32])pv, n);
    if (!pool) return 0;
    pool->left = (uint32_t)n;
    pool->forks = ev_xpool_forks;
  }
  uint32_t i = --pool->left;
  memcpy(priv, pool->priv[i], 32);
  memcpy(pub, pool->pub[i], 32);
  explicit_bzero(pool->priv[i], 32);
  explicit_bzero(pool->pub[i], 32);
  return 0;
}

static void *ev_xg_gen(void *gv, OSSL_CALLBACK *cb, void *arg) {
  ev_xgen_t *g = gv;
  (void)cb, (void)arg;
  ev_xkey_t *k = OPENSSL_zalloc(sizeof(*k));
  if (!k) return NULL;
  if (!(g->selection & OSSL_KEYMGMT_SELECT_KEYPAIR)) return k; /* params only */
  if (ev_xpair(k->priv, k->pub) != 0) {
    ev_xk_free(k);
    return NULL;
  }
  k->has_priv = k->has_pub = 1;
  __atomic_add_fetch(&ev_xgens, 1, __ATOMIC_RELAXED);
  return k;
}

static void ev_xg_cleanup(void *g) { OPENSSL_free(g); }

static const OSSL_DISPATCH ev_xkeymgmt[] = {
    {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))ev_xk_new},
    {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))ev_xk_free},
    {OSSL_FUNC_KEYMGMT_DUP, (void (*)(void))ev_xk_dup},
    {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))ev_xk_has},
    {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))ev_xk_match},
    {OSSL_FUNC_KEYMGMT_VALIDATE, (void (*)(void))ev_xk_validate},
    {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))ev_xk_import},
    {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))ev_xk_key_types_fn},
    {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))ev_xk_export},
    {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))ev_xk_key_types_fn},
    {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))ev_xk_get_params},
    {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))ev_xk_gettable},
    {OSSL_FUNC_KEYMGMT_SET_PARAMS, (void (*)(void))ev_xk_set_params},
    {OSSL_FUNC_KEYMGMT_SETTABLE_PARAMS, (void (*)(void))ev_xk_settable},
    {OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))ev_xg_init},
    {OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))ev_xg_set_params},
    {OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, (void (*)(void))ev_xg_settable},
    {OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))ev_xg_gen},
    {OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))ev_xg_cleanup},
    {0, NULL}};

/* ---- the provider ------------------------------------------------------------------ */

/* Both carry ev.own, which our contexts' query prefers (a short name:
 * libcrypto 3.0 hashes and compares the query string at every method
 * fetch, about 45 times a resumed handshake, 22 of them libssl's
 * TLS13-KDF fetches); and each a property of its own, so that a context's
 * property query can turn one of them off (EV_PROPQ_*). */
static const OSSL_ALGORITHM ev_xalgs[] = {
    {"X25519:1.3.101.110", "provider=" EV_X25519_PROVIDER ",ev.own=yes,eventer.x25519=yes",
     ev_xkeymgmt, "X25519 key generation by a fixed-base comb (aco-eventer)"},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM ev_kdfalgs[] = {
    {"TLS13-KDF", "provider=" EV_X25519_PROVIDER ",ev.own=yes,eventer.kdf=yes",
     ev_kdf_functions, "TLS 1.3 key schedule, HMAC of our own (aco-eventer)"},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM *ev_xquery(void *provctx, int operation_id,
                                       int *no_cache) {
  (void)provctx;
  *no_cache = 0;
  if (operation_id == OSSL_OP_KEYMGMT) return ev_xalgs;
  if (operation_id == OSSL_OP_KDF) return ev_kdfalgs;
  return NULL;
}

/* the x25519 TLS group, with the default provider's figures */
static int ev_xcaps(void *provctx, const char *capability, OSSL_CALLBACK *cb,
                    void *arg) {
  (void)provctx;
  if (strcasecmp(capability, "TLS-GROUP") != 0) return 1;
  unsigned int id = 29, secbits = 128, is_kem = 0;
  int min_tls = TLS1_VERSION, max_tls = 0, min_dtls = DTLS1_VERSION, max_dtls = 0;
  OSSL_PARAM p[] = {
      OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME, (char *)"x25519", 6),
      OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME_INTERNAL,
                             (char *)"X25519", 6),
      OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_ALG, (char *)"X25519", 6),
      OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_ID, &id),
      OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_SECURITY_BITS, &secbits),
      OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_TLS, &min_tls),
      OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_TLS, &max_tls),
      OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_DTLS, &min_dtls),
      OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_DTLS, &max_dtls),
      OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_IS_KEM, &is_kem),
      OSSL_PARAM_END};
  return cb(p, arg);
}

static const OSSL_DISPATCH ev_xprov[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))ev_xquery},
    {OSSL_FUNC_PROVIDER_GET_CAPABILITIES, (void (*)(void))ev_xcaps},
    {0, NULL}};

static int ev_xprov_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                         const OSSL_DISPATCH **out, void **provctx) {
  (void)in;
  *out = ev_xprov;
  *provctx = (void *)handle;
  return 1;
}

static pthread_once_t ev_xprov_once = PTHREAD_ONCE_INIT;
static int ev_xprov_loaded = -1;
static OSSL_PROVIDER *ev_xprov_handle;

/* at exit, before OpenSSL's own clean-up (registered earlier, so run
 * later): our reference would keep the provider (and what OpenSSL made
 * for it) from being freed */
static void ev_xprov_unload(void) {
  if (ev_xprov_handle) OSSL_PROVIDER_unload(ev_xprov_handle);
  ev_xprov_handle = NULL;
  ev_kdf_fini();
}

static void ev_xprov_load_once(void) {
  /* the default provider's X25519 first (this also loads the default
   * provider as the fallback it is): a fetch without a property query
   * takes the first implementation in the store, which stays it */
  EVP_KEYMGMT *def = EVP_KEYMGMT_fetch(NULL, "X25519", NULL);
  if (!def) return;
  EVP_KEYMGMT_free(def);
  /* the same for TLS13-KDF; and the digests our KDF keeps */
  EVP_KDF *defkdf = EVP_KDF_fetch(NULL, "TLS13-KDF", NULL);
  if (!defkdf) return;
  EVP_KDF_free(defkdf);
  if (ev_kdf_init() != 0) {
    ev_kdf_fini();
    return;
  }
  if (OSSL_PROVIDER_add_builtin(NULL, EV_X25519_PROVIDER, ev_xprov_init) != 1)
    return;
  ev_xprov_handle = OSSL_PROVIDER_try_load(NULL, EV_X25519_PROVIDER, 1);
  if (ev_xprov_handle == NULL) {
    ev_kdf_fini();
    return;
  }
  atexit(ev_xprov_unload);
  /* the store has the default provider's X25519 already, which a
   * preference query would take without asking us: ask for ours by a
   * requirement once, so that OpenSSL constructs it */
  EVP_KEYMGMT *ours = EVP_KEYMGMT_fetch(NULL, "X25519", "provider=" EV_X25519_PROVIDER);
  if (!ours) return;
  EVP_KEYMGMT_free(ours);
  EVP_KDF *ourkdf = EVP_KDF_fetch(NULL, "TLS13-KDF", "provider=" EV_X25519_PROVIDER);
  if (!ourkdf) return;
  EVP_KDF_free(ourkdf);
  ev_xprov_loaded = 0;
}

int ev_x25519_provider_load(void) {
  pthread_once(&ev_xprov_once, ev_xprov_load_once);
  return ev_xprov_loaded;
}
