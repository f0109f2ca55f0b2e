/*
 * eventer_kdf_prov.c - the TLS 1.3 key schedule's KDF ("TLS13-KDF") of our
 * provider (eventer_x25519_prov.c offers it next to its X25519 key
 * management), for our own SSL_CTXs only.
 *
 * Why.  libssl 3.0 derives every secret, key, IV and Finished key of a
 * TLS 1.3 handshake (about 20 per handshake) through a fresh
 * EVP_KDF_CTX of "TLS13-KDF", fetched with its SSL_CTX's property query.
 * The default provider's implementation fetches its digest by name again
 * for every context and computes each HMAC through an HMAC_CTX that
 * fetches the "HMAC" MAC and the digest again: about a quarter of a
 * resumed handshake's instructions (bench/README.md, "## TLS", "Sixth
 * pass").  Ours keeps SHA-256 and SHA-384, fetched from the default
 * provider once when the provider is loaded, and computes HMAC itself
 * over one EVP_MD_CTX per derivation.
 *
 * What it computes: exactly the default provider's TLS13-KDF, the same
 * parameters (OSSL_KDF_PARAM_MODE, DIGEST, PROPERTIES, KEY, SALT, PREFIX,
 * LABEL, DATA) and the same results (test_eventer_kdf compares the two
 * over random inputs):
 *
 *   HMAC(K, m) = H((K0 ^ opad) || H((K0 ^ ipad) || m))          RFC 2104
 *     K0: K padded with zeros to the digest's block size B (64 bytes
 *     for SHA-256, 128 for SHA-384), or H(K) so padded when K is longer
 *     than B; ipad = B bytes 0x36, opad = B bytes 0x5c.
 *   HKDF-Extract(salt, IKM) = HMAC(salt, IKM)                     RFC 5869
 *   HKDF-Expand(PRK, info, L) = the first L bytes of T(1) || T(2) ...,
 *     T(i) = HMAC(PRK, T(i-1) || info || i), T(0) empty, i < 256.
 *   HKDF-Expand-Label(Secret, Label, Context, L) =               RFC 8446
 *     HKDF-Expand(Secret, HkdfLabel, L), HkdfLabel = uint16 L ||
 *     uint8 len(prefix || Label) || prefix || Label || uint8 len(Context)
 *     || Context; prefix is "tls13 " (libssl passes it as PREFIX).
 *
 * Modes (as OpenSSL's): EXPAND_ONLY is HKDF-Expand-Label(KEY, LABEL,
 * DATA, L).  EXTRACT_ONLY is RFC 8446 7.1's step from one secret to the
 * next: HKDF-Extract(salt', KEY), where KEY absent means Hash.length
 * zeros, and salt' is empty without SALT or else Derive-Secret(SALT,
 * "derived", "") = HKDF-Expand-Label(SALT, LABEL, Hash(""), Hash.length);
 * its output is exactly Hash.length bytes.  EXTRACT_AND_EXPAND is
 * refused, as OpenSSL refuses it for TLS13-KDF.
 *
 * Secrets: no branch or address depends on a key's bytes (lengths are
 * public); the padded key, inner hash, blocks and hash states are cleansed.
 *
 * Hashing.  SHA-256 and SHA-384 (all of TLS 1.3's key schedules) go
 * through libcrypto's one-shot digest functions (SHA256_Init, _Update,
 * _Final and SHA-384's) over a context on the stack: the same compression
 * code the default provider runs, without EVP's per-call dispatch, the
 * provider context allocated and cleansed at every EVP_DigestInit_ex2 and
 * the EVP_MD_CTX allocated per derivation (together about 1.4 K
 * instructions an HMAC, 24 HMACs a resumed handshake: bench/README.md,
 * "Twelfth pass").  libcrypto 3.0 marks those functions deprecated, not
 * gone; a libcrypto built without them (OPENSSL_NO_DEPRECATED_3_0) and any
 * other digest use EVP as before.
 */
/* the one-shot SHA-2 functions are deprecated in OpenSSL 3.0: declared
 * without the warning (they stay part of libcrypto 3.x's API) */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "eventer_x25519.h"

/* how a derivation hashes: libcrypto's one-shot SHA-256 or SHA-384, or
 * EVP with the derivation's digest */
enum { EV_H_EVP, EV_H_SHA256, EV_H_SHA384 };

#if defined(OPENSSL_NO_DEPRECATED_3_0)
#define EV_H_ONESHOT 0
#else
#define EV_H_ONESHOT 1
#endif

/* the digests kept (fetched once from the default provider by
 * ev_kdf_init, before the provider can be fetched) and Hash("") of each */
typedef struct {
  const char *names[4];
  int kind; /* EV_H_SHA256 / EV_H_SHA384 */
  EVP_MD *md;
  size_t len;
  uint8_t empty[EVP_MAX_MD_SIZE];
} ev_kdf_md_t;

static ev_kdf_md_t ev_kdf_mds[2] = {
    {{"SHA2-256", "SHA256", "SHA-256", "2.16.840.1.101.3.4.2.1"}, EV_H_SHA256,
     NULL, 0, {0}},
    {{"SHA2-384", "SHA384", "SHA-384", "2.16.840.1.101.3.4.2.2"}, EV_H_SHA384,
     NULL, 0, {0}},
};

#define EV_KDF_MAXBUF 255 /* PREFIX+LABEL, and DATA, each at most */

typedef struct {
  const EVP_MD *md;     /* one of ev_kdf_mds' or fetched (owned) */
  int kind;             /* EV_H_*: the kept digests' kind, else EV_H_EVP */
  EVP_MD *owned;        /* a digest other than those two */
  const uint8_t *empty; /* Hash(""), or NULL: computed on use */
  int mode;
  uint8_t *key, *salt;
  size_t key_len, salt_len;
  int has_key, has_salt;
  uint8_t prefix[EV_KDF_MAXBUF], label[EV_KDF_MAXBUF], data[EV_KDF_MAXBUF];
  size_t prefix_len, label_len, data_len;
} ev_kdf_t;

static unsigned long ev_kdf_derives; /* __atomic: derivations done (tests) */

unsigned long ev_kdf_provider_derives(void) {
  return __atomic_load_n(&ev_kdf_derives, __ATOMIC_RELAXED);
}

int ev_kdf_init(void) {
  for (int i = 0; i < 2; i++) {
    ev_kdf_md_t *m = &ev_kdf_mds[i];
    m->md = EVP_MD_fetch(NULL, m->names[0], "provider=default");
    if (!m->md) return -1;
    int len = EVP_MD_get_size(m->md);
    unsigned int n = 0;
    if (len <= 0 || len > EVP_MAX_MD_SIZE ||
        EVP_Digest("", 0, m->empty, &n, m->md, NULL) != 1 || n != (unsigned)len)
      return -1;
    m->len = (size_t)len;
  }
  return 0;
}

void ev_kdf_fini(void) {
  for (int i = 0; i < 2; i++) {
    EVP_MD_free(ev_kdf_mds[i].md);
    ev_kdf_mds[i].md = NULL;
  }
}

/* ---- HMAC and HKDF over one hash context ------------------------------------ */

/* a derivation's hash: one of the two one-shot contexts, or an EVP_MD_CTX
 * (e) with its digest (md); b the block size, hl Hash.length */
typedef struct {
  int kind;
  union {
#if EV_H_ONESHOT
    SHA256_CTX s256;
    SHA512_CTX s512;
#endif
    uint8_t none;
  } u;
  EVP_MD_CTX *e;
  const EVP_MD *md;
  size_t b, hl;
} ev_hash_t;

static int ev_h_init(ev_hash_t *h) {
#if EV_H_ONESHOT
  if (h->kind == EV_H_SHA256) return SHA256_Init(&h->u.s256);
  if (h->kind == EV_H_SHA384) return SHA384_Init(&h->u.s512);
#endif
  return EVP_DigestInit_ex2(h->e, h->md, NULL);
}

static int ev_h_update(ev_hash_t *h, const void *p, size_t n) {
#if EV_H_ONESHOT
  if (h->kind == EV_H_SHA256) return SHA256_Update(&h->u.s256, p, n);
  if (h->kind == EV_H_SHA384) return SHA384_Update(&h->u.s512, p, n);
#endif
  return EVP_DigestUpdate(h->e, p, n);
}

static int ev_h_final(ev_hash_t *h, uint8_t *out) {
#if EV_H_ONESHOT
  if (h->kind == EV_H_SHA256) return SHA256_Final(out, &h->u.s256);
  if (h->kind == EV_H_SHA384) return SHA384_Final(out, &h->u.s512);
#endif
  return EVP_DigestFinal_ex(h->e, out, NULL);
}

/* dst = k0 ^ (b bytes of the byte in m), eight bytes at a time */
static void ev_xor_pad(uint8_t *dst, const uint8_t *k0, size_t b, uint64_t m) {
  size_t i = 0;
  for (; i + 8 <= b; i += 8) {
    uint64_t w;
    memcpy(&w, k0 + i, 8);
    w ^= m;
    memcpy(dst + i, &w, 8);
  }
  for (; i < b; i++) dst[i] = k0[i] ^ (uint8_t)m;
}

typedef struct {
  const uint8_t *p;
  size_t n;
} ev_kdf_part_t;

/* out = HMAC(key, the concatenation of parts), Hash.length bytes */
static int ev_hmac(ev_hash_t *h, const uint8_t *key, size_t keylen,
                   const ev_kdf_part_t *parts, int nparts, uint8_t *out) {
  uint8_t k0[256]; /* block sizes: 64 (SHA-256), 128 (SHA-384), <= 168 */
  uint8_t pad[sizeof(k0)], inner[EVP_MAX_MD_SIZE];
  size_t b = h->b, hl = h->hl;
  int ok = 0;
  if (b == 0 || b > sizeof(k0) || hl == 0 || hl > EVP_MAX_MD_SIZE) return 0;
  memset(k0, 0, b);
  if (keylen > b) { /* K0 = H(K) || zeros */
    if (ev_h_init(h) != 1 || ev_h_update(h, key, keylen) != 1 ||
        ev_h_final(h, k0) != 1)
      goto done;
  } else if (keylen) {
    memcpy(k0, key, keylen);
  }
  ev_xor_pad(pad, k0, b, 0x3636363636363636ULL);
  if (ev_h_init(h) != 1 || ev_h_update(h, pad, b) != 1) goto done;
  for (int i = 0; i < nparts; i++)
    if (parts[i].n && ev_h_update(h, parts[i].p, parts[i].n) != 1) goto done;
  if (ev_h_final(h, inner) != 1) goto done;
  ev_xor_pad(pad, k0, b, 0x5c5c5c5c5c5c5c5cULL);
  if (ev_h_init(h) != 1 || ev_h_update(h, pad, b) != 1 ||
      ev_h_update(h, inner, hl) != 1 || ev_h_final(h, out) != 1)
    goto done;
  ok = 1;
done:
  OPENSSL_cleanse(k0, b);
  OPENSSL_cleanse(pad, b);
  OPENSSL_cleanse(inner, hl);
  return ok;
}

/* HKDF-Expand-Label: out (outlen bytes) from secret, prefix || label and
 * context, the limits of OpenSSL's (L fits 16 bits, prefix || label and
 * context 255 bytes each, at most 255 blocks) */
static int ev_hkdf_expand_label(ev_hash_t *h, const uint8_t *secret,
                                size_t secretlen, const uint8_t *prefix,
                                size_t prefixlen, const uint8_t *label,
                                size_t labellen, const uint8_t *ctx,
                                size_t ctxlen, uint8_t *out, size_t outlen) {
  uint8_t info[2 + 1 + 255 + 1 + 255], t[EVP_MAX_MD_SIZE];
  size_t hl = h->hl, n = 0;
  if (hl == 0 || hl > EVP_MAX_MD_SIZE || outlen > 0xffff ||
      prefixlen + labellen > 255 || ctxlen > 255 || outlen > 255 * hl)
    return 0;
  info[n++] = (uint8_t)(outlen >> 8);
  info[n++] = (uint8_t)outlen;
  info[n++] = (uint8_t)(prefixlen + labellen);
  if (prefixlen) memcpy(info + n, prefix, prefixlen);
  n += prefixlen;
  if (labellen) memcpy(info + n, label, labellen);
  n += labellen;
  info[n++] = (uint8_t)ctxlen;
  if (ctxlen) memcpy(info + n, ctx, ctxlen);
  n += ctxlen;
  uint8_t ctr = 0;
  size_t done = 0;
  int ok = 1;
  while (done < outlen && ok) {
    ctr++;
    ev_kdf_part_t parts[3] = {{t, ctr > 1 ? hl : 0}, {info, n}, {&ctr, 1}};
    ok = ev_hmac(h, secret, secretlen, parts, 3, t);
    size_t take = outlen - done < hl ? outlen - done : hl;
    if (ok) memcpy(out + done, t, take);
    done += take;
  }
  OPENSSL_cleanse(t, sizeof(t));
  return ok;
}

/* ---- the KDF ------------------------------------------------------------------ */

static void *ev_kdf_new(void *provctx) {
  (void)provctx;
  ev_kdf_t *k = OPENSSL_zalloc(sizeof(*k));
  return k;
}

static void ev_kdf_reset(void *kv) {
  ev_kdf_t *k = kv;
  if (!k) return;
  EVP_MD_free(k->owned);
  OPENSSL_clear_free(k->key, k->key_len);
  OPENSSL_clear_free(k->salt, k->salt_len);
  memset(k, 0, sizeof(*k)); /* the secrets are gone; the rest is public */
}

static void ev_kdf_free(void *kv) {
  ev_kdf_reset(kv);
  OPENSSL_free(kv);
}

static int ev_kdf_set_bytes(const OSSL_PARAM *p, uint8_t **dst, size_t *len,
                            int *has) {
  OPENSSL_clear_free(*dst, *len);
  *dst = NULL;
  *len = 0;
  *has = 0;
  if (!OSSL_PARAM_get_octet_string(p, (void **)dst, 0, len)) return 0;
  *has = 1;
  return 1;
}

static int ev_kdf_set_small(const OSSL_PARAM *p, uint8_t *dst, size_t *len) {
  void *v = dst;
  if (p->data_size > EV_KDF_MAXBUF) return 0;
  return OSSL_PARAM_get_octet_string(p, &v, EV_KDF_MAXBUF, len);
}

/* the parameters we know, each its first occurrence (as
 * OSSL_PARAM_locate_const finds it), in one pass over the list: libssl
 * passes six or seven per derivation, and a locate per name was 1,600
 * instructions of each */
enum { EV_P_MODE, EV_P_DIGEST, EV_P_PROPS, EV_P_KEY, EV_P_SALT, EV_P_PREFIX,
       EV_P_LABEL, EV_P_DATA, EV_P_N };

static void ev_kdf_scan(const OSSL_PARAM *params, const OSSL_PARAM *f[EV_P_N]) {
  static const char *const names[EV_P_N] = {
      OSSL_KDF_PARAM_MODE,   OSSL_KDF_PARAM_DIGEST, OSSL_KDF_PARAM_PROPERTIES,
      OSSL_KDF_PARAM_KEY,    OSSL_KDF_PARAM_SALT,   OSSL_KDF_PARAM_PREFIX,
      OSSL_KDF_PARAM_LABEL,  OSSL_KDF_PARAM_DATA};
  for (int i = 0; i < EV_P_N; i++) f[i] = NULL;
  for (const OSSL_PARAM *p = params; p->key != NULL; p++) {
    int c[2] = {-1, -1};
    switch (p->key[0]) { /* the candidates by first letter */
    case 'm': c[0] = EV_P_MODE; break;
    case 'd': c[0] = EV_P_DIGEST, c[1] = EV_P_DATA; break;
    case 'p': c[0] = EV_P_PROPS, c[1] = EV_P_PREFIX; break;
    case 'k': c[0] = EV_P_KEY; break;
    case 's': c[0] = EV_P_SALT; break;
    case 'l': c[0] = EV_P_LABEL; break;
    default: continue;
    }
    for (int j = 0; j < 2; j++)
      if (c[j] >= 0 && f[c[j]] == NULL && !strcmp(p->key, names[c[j]])) {
        f[c[j]] = p;
        break;
      }
  }
}

static int ev_kdf_set_params(void *kv, const OSSL_PARAM params[]) {
  ev_kdf_t *k = kv;
  const OSSL_PARAM *p, *f[EV_P_N];
  if (params == NULL) return 1;
  ev_kdf_scan(params, f);
  if ((p = f[EV_P_DIGEST]) != NULL) {
    const char *name = NULL, *props = NULL;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &name)) return 0;
    const OSSL_PARAM *pq = f[EV_P_PROPS];
    if (pq && !OSSL_PARAM_get_utf8_string_ptr(pq, &props)) return 0;
    EVP_MD_free(k->owned);
    k->owned = NULL;
    k->md = NULL;
    k->empty = NULL;
    k->kind = EV_H_EVP;
    for (int i = 0; i < 2 && !k->md; i++)
      for (int j = 0; j < 4 && !k->md; j++)
        if (!strcasecmp(name, ev_kdf_mds[i].names[j])) {
          k->md = ev_kdf_mds[i].md;
          k->kind = EV_H_ONESHOT ? ev_kdf_mds[i].kind : EV_H_EVP;
          k->empty = ev_kdf_mds[i].empty;
        }
    if (!k->md) { /* another digest: fetched as the default provider would */
      k->owned = EVP_MD_fetch(NULL, name, props);
      if (!k->owned || (EVP_MD_get_flags(k->owned) & EVP_MD_FLAG_XOF)) {
        EVP_MD_free(k->owned);
        k->owned = NULL;
        return 0;
      }
      k->md = k->owned;
    }
  }
  if ((p = f[EV_P_MODE]) != NULL) {
    int mode;
    if (p->data_type == OSSL_PARAM_UTF8_STRING) {
      const char *s = p->data;
      if (!strcasecmp(s, "EXTRACT_AND_EXPAND"))
        mode = EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND;
      else if (!strcasecmp(s, "EXTRACT_ONLY"))
        mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY;
      else if (!strcasecmp(s, "EXPAND_ONLY"))
        mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
      else
        return 0;
    } else if (!OSSL_PARAM_get_int(p, &mode)) {
      return 0;
    }
    if (mode != EVP_KDF_HKDF_MODE_EXTRACT_ONLY &&
        mode != EVP_KDF_HKDF_MODE_EXPAND_ONLY)
      return 0; /* TLS13-KDF has no EXTRACT_AND_EXPAND */
    k->mode = mode;
  }
  if ((p = f[EV_P_KEY]) != NULL &&
      !ev_kdf_set_bytes(p, &k->key, &k->key_len, &k->has_key))
    return 0;
  /* an empty salt leaves the salt as it was (as OpenSSL's) */
  if ((p = f[EV_P_SALT]) != NULL &&
      p->data_size != 0 && p->data != NULL &&
      !ev_kdf_set_bytes(p, &k->salt, &k->salt_len, &k->has_salt))
    return 0;
  if ((p = f[EV_P_PREFIX]) != NULL &&
      !ev_kdf_set_small(p, k->prefix, &k->prefix_len))
    return 0;
  if ((p = f[EV_P_LABEL]) != NULL &&
      !ev_kdf_set_small(p, k->label, &k->label_len))
    return 0;
  if ((p = f[EV_P_DATA]) != NULL &&
      !ev_kdf_set_small(p, k->data, &k->data_len))
    return 0;
  return 1;
}

static const OSSL_PARAM *ev_kdf_settable(void *ctx, void *provctx) {
  (void)ctx, (void)provctx;
  static const OSSL_PARAM t[] = {
      OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_MODE, NULL, 0),
      OSSL_PARAM_int(OSSL_KDF_PARAM_MODE, NULL),
      OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_PROPERTIES, NULL, 0),
      OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, NULL, 0),
      OSSL_PARAM_octet_string(OSSL_KDF_PARAM_KEY, NULL, 0),
      OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SALT, NULL, 0),
      OSSL_PARAM_octet_string(OSSL_KDF_PARAM_PREFIX, NULL, 0),
      OSSL_PARAM_octet_string(OSSL_KDF_PARAM_LABEL, NULL, 0),
      OSSL_PARAM_octet_string(OSSL_KDF_PARAM_DATA, NULL, 0),
      OSSL_PARAM_END};
  return t;
}

/* OSSL_KDF_PARAM_SIZE: Hash.length in EXTRACT_ONLY mode, else unbounded */
static int ev_kdf_get_params(void *kv, OSSL_PARAM params[]) {
  ev_kdf_t *k = kv;
  OSSL_PARAM *p = OSSL_PARAM_locate(params, OSSL_KDF_PARAM_SIZE);
  if (!p) return -2;
  size_t sz = SIZE_MAX;
  if (k->mode != EVP_KDF_HKDF_MODE_EXPAND_ONLY) {
    if (!k->md) return 0;
    sz = (size_t)EVP_MD_get_size(k->md);
  }
  return OSSL_PARAM_set_size_t(p, sz);
}

static const OSSL_PARAM *ev_kdf_gettable(void *ctx, void *provctx) {
  (void)ctx, (void)provctx;
  static const OSSL_PARAM t[] = {OSSL_PARAM_size_t(OSSL_KDF_PARAM_SIZE, NULL),
                                 OSSL_PARAM_END};
  return t;
}

static int ev_kdf_derive(void *kv, unsigned char *out, size_t outlen,
                         const OSSL_PARAM params[]) {
  ev_kdf_t *k = kv;
  static const uint8_t zeros[EVP_MAX_MD_SIZE];
  if (!ev_kdf_set_params(k, params) || !k->md || outlen == 0) return 0;
  int b = EVP_MD_get_block_size(k->md), hli = EVP_MD_get_size(k->md);
  if (b <= 0 || hli <= 0 || hli > EVP_MAX_MD_SIZE) return 0;
  size_t hl = (size_t)hli;
  ev_hash_t h;
  h.kind = k->kind;
  h.md = k->md;
  h.b = (size_t)b;
  h.hl = hl;
  h.e = NULL;
  if (h.kind == EV_H_EVP && (h.e = EVP_MD_CTX_new()) == NULL) return 0;
  int ok = 0;
  if (k->mode == EVP_KDF_HKDF_MODE_EXPAND_ONLY) {
    ok = k->has_key &&
         ev_hkdf_expand_label(&h, k->key, k->key_len, k->prefix, k->prefix_len,
                              k->label, k->label_len, k->data, k->data_len,
                              out, outlen);
  } else if (k->mode == EVP_KDF_HKDF_MODE_EXTRACT_ONLY && outlen == hl) {
    uint8_t salt[EVP_MAX_MD_SIZE], empty[EVP_MAX_MD_SIZE];
    size_t saltlen = 0;
    ok = 1;
    if (k->has_salt) { /* salt' = Derive-Secret(salt, label, "") */
      const uint8_t *e = k->empty;
      if (!e) {
        ok = ev_h_init(&h) == 1 && ev_h_final(&h, empty) == 1;
        e = empty;
      }
      ok = ok && ev_hkdf_expand_label(&h, k->salt, k->salt_len, k->prefix,
                                      k->prefix_len, k->label, k->label_len,
                                      e, hl, salt, hl);
      saltlen = hl;
    }
    ev_kdf_part_t ikm = {k->has_key ? k->key : zeros,
                         k->has_key ? k->key_len : hl};
    ok = ok && ev_hmac(&h, salt, saltlen, &ikm, 1, out);
    OPENSSL_cleanse(salt, sizeof(salt));
  }
  EVP_MD_CTX_free(h.e);
  /* the one-shot context's chaining state follows from the keys */
  if (h.kind != EV_H_EVP) OPENSSL_cleanse(&h.u, sizeof(h.u));
  if (ok) __atomic_add_fetch(&ev_kdf_derives, 1, __ATOMIC_RELAXED);
  return ok;
}

const OSSL_DISPATCH ev_kdf_functions[] = {
    {OSSL_FUNC_KDF_NEWCTX, (void (*)(void))ev_kdf_new},
    {OSSL_FUNC_KDF_FREECTX, (void (*)(void))ev_kdf_free},
    {OSSL_FUNC_KDF_RESET, (void (*)(void))ev_kdf_reset},
    {OSSL_FUNC_KDF_DERIVE, (void (*)(void))ev_kdf_derive},
    {OSSL_FUNC_KDF_SETTABLE_CTX_PARAMS, (void (*)(void))ev_kdf_settable},
    {OSSL_FUNC_KDF_SET_CTX_PARAMS, (void (*)(void))ev_kdf_set_params},
    {OSSL_FUNC_KDF_GETTABLE_CTX_PARAMS, (void (*)(void))ev_kdf_gettable},
    {OSSL_FUNC_KDF_GET_CTX_PARAMS, (void (*)(void))ev_kdf_get_params},
    {0, NULL}};
