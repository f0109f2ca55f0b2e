/*
 * test_eventer_ssl_x25519.c - our X25519 provider (eventer_x25519_prov.c)
 * in the TLS opset: TLS 1.3 and 1.2 handshakes between our own contexts
 * with it on (its key generation used, counted) and off
 * (eventer_ssl_config "ssl_own_x25519"), and the rest of the process:
 * OpenSSL used directly (no property query) still gets the default
 * provider's X25519 and everything else after ours is loaded.
 * openssl s_client and Go's crypto/tls connect to servers with it on in
 * test_eventer_ssl and the Go tests (it is on by default).
 */
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ssltest.h"
#include "eventer_x25519.h"

static const t_certs_t *C;

/* a handshake between a server and a client context of `layer`, and a
 * byte from the client; 0 when both ends completed it */
static int pair(const char *layer) {
  return t_hs_pair(
      eventer_ssl_ctx_new(SSL_SERVER, layer, C->srv, C->srv_key, NULL, NULL),
      eventer_ssl_ctx_new(SSL_CLIENT, layer, NULL, NULL, C->ca, NULL));
}

static void setup(void) {
  C = t_certs_get();
  ev_setup_external(1);
  t_log_capture();
}

static void teardown(void) {
  t_log_release();
  ev_teardown();
  T_EQ(eventer_ssl_config("ssl_own_x25519", "on"), 0);
}

/* on (the default): each side's key share is ours, both versions */
static void test_handshake_on(void) {
  setup();
  const char *layers[] = {"tlsv1.3", "tlsv1.2"};
  for (int i = 0; i < 2; i++) {
    unsigned long before = ev_x25519_provider_keygens();
    T_EQ(pair(layers[i]), 0);
    /* the client's key share and the server's (X25519: the first group
     * both offer) */
    T_EQ(ev_x25519_provider_keygens() - before, 2);
  }
  teardown();
}

/* off: the default provider's key generation, the same group */
static void test_handshake_off(void) {
  setup();
  T_EQ(eventer_ssl_config("ssl_own_x25519", "off"), 0);
  const char *layers[] = {"tlsv1.3", "tlsv1.2"};
  for (int i = 0; i < 2; i++) {
    unsigned long before = ev_x25519_provider_keygens();
    T_EQ(pair(layers[i]), 0);
    T_EQ(ev_x25519_provider_keygens() - before, 0);
  }
  /* on again: contexts made from now on use it (the SSL_CTX cache keeps
   * the two kinds apart) */
  T_EQ(eventer_ssl_config("ssl_own_x25519", "on"), 0);
  unsigned long before = ev_x25519_provider_keygens();
  T_EQ(pair("tlsv1.3"), 0);
  T_EQ(ev_x25519_provider_keygens() - before, 2);
  /* values it does not know are refused and change nothing */
  T_EQ(eventer_ssl_config("ssl_own_x25519", "maybe"), 1);
  before = ev_x25519_provider_keygens();
  T_EQ(pair("tlsv1.3"), 0);
  T_EQ(ev_x25519_provider_keygens() - before, 2);
  teardown();
}

static const char *prov_of_keymgmt(const char *alg, const char *propq) {
  EVP_KEYMGMT *km = EVP_KEYMGMT_fetch(NULL, alg, propq);
  T_CHECK(km != NULL);
  static char name[64];
  snprintf(name, sizeof(name), "%s",
           OSSL_PROVIDER_get0_name(EVP_KEYMGMT_get0_provider(km)));
  EVP_KEYMGMT_free(km);
  return name;
}

/* after ours is loaded (any handshake above, or here), OpenSSL used
 * without our property query is the default provider's */
static void test_others_get_default(void) {
  T_EQ(ev_x25519_provider_load(), 0);
  T_CHECK(OSSL_PROVIDER_available(NULL, EV_X25519_PROVIDER));
  T_CHECK(OSSL_PROVIDER_available(NULL, "default"));
  T_STR_EQ(prov_of_keymgmt("X25519", NULL), "default");
  T_STR_EQ(prov_of_keymgmt("X25519", ""), "default");
  T_STR_EQ(prov_of_keymgmt("X25519", EV_X25519_PROPQ), EV_X25519_PROVIDER);
  /* algorithms we do not offer come from the default provider even with
   * our query */
  T_STR_EQ(prov_of_keymgmt("X448", EV_X25519_PROPQ), "default");
  T_STR_EQ(prov_of_keymgmt("EC", EV_X25519_PROPQ), "default");
  /* key generation by name: ours only when asked for */
  unsigned long before = ev_x25519_provider_keygens();
  EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
  T_CHECK(k != NULL);
  T_EQ(ev_x25519_provider_keygens(), before);
  EVP_PKEY *k2 = EVP_PKEY_Q_keygen(NULL, EV_X25519_PROPQ, "X25519");
  T_CHECK(k2 != NULL);
  T_EQ(ev_x25519_provider_keygens(), before + 1);
  /* and the two agree on a shared secret (ours exported to the default
   * provider's exchange) */
  unsigned char s1[32], s2[32];
  size_t l1 = 32, l2 = 32;
  EVP_PKEY_CTX *c1 = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
  EVP_PKEY_CTX *c2 = EVP_PKEY_CTX_new_from_pkey(NULL, k2, EV_X25519_PROPQ);
  T_CHECK(c1 && c2);
  T_EQ(EVP_PKEY_derive_init(c1), 1);
  T_EQ(EVP_PKEY_derive_set_peer(c1, k2), 1);
  T_EQ(EVP_PKEY_derive(c1, s1, &l1), 1);
  T_EQ(EVP_PKEY_derive_init(c2), 1);
  T_EQ(EVP_PKEY_derive_set_peer(c2, k), 1);
  T_EQ(EVP_PKEY_derive(c2, s2, &l2), 1);
  T_EQ(l1, 32);
  T_EQ(l2, 32);
  T_EQ(memcmp(s1, s2, 32), 0);
  /* a private key imported into ours gets the default provider's public
   * key */
  unsigned char priv[32], pub1[32], pub2[32];
  size_t lp = 32;
  T_EQ(EVP_PKEY_get_raw_private_key(k, priv, &lp), 1);
  EVP_PKEY *k3 = EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", EV_X25519_PROPQ,
                                                 priv, 32);
  T_CHECK(k3 != NULL);
  lp = 32;
  T_EQ(EVP_PKEY_get_raw_public_key(k, pub1, &lp), 1);
  lp = 32;
  T_EQ(EVP_PKEY_get_raw_public_key(k3, pub2, &lp), 1);
  T_EQ(memcmp(pub1, pub2, 32), 0);
  EVP_PKEY_CTX_free(c1);
  EVP_PKEY_CTX_free(c2);
  EVP_PKEY_free(k);
  EVP_PKEY_free(k2);
  EVP_PKEY_free(k3);
  /* another digest, cipher and key type still work */
  EVP_MD *md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
  T_CHECK(md != NULL);
  EVP_MD_free(md);
  EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  T_CHECK(ec != NULL);
  EVP_PKEY_free(ec);
}

/* a key pair from our key generation (EVP, our query): its private and
 * public bytes; the public one must be what the default provider computes
 * from the private one */
static void our_pair(unsigned char priv[32], unsigned char pub[32]) {
  unsigned long before = ev_x25519_provider_keygens();
  EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, EV_X25519_PROPQ, "X25519");
  T_CHECK(k != NULL);
  T_EQ(ev_x25519_provider_keygens(), before + 1);
  size_t l = 32;
  T_EQ(EVP_PKEY_get_raw_private_key(k, priv, &l), 1);
  T_EQ(l, 32);
  l = 32;
  T_EQ(EVP_PKEY_get_raw_public_key(k, pub, &l), 1);
  T_EQ(l, 32);
  EVP_PKEY *d = EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", NULL, priv, 32);
  T_CHECK(d != NULL);
  unsigned char want[32];
  l = 32;
  T_EQ(EVP_PKEY_get_raw_public_key(d, want, &l), 1);
  T_EQ(memcmp(pub, want, 32), 0);
  EVP_PKEY_free(d);
  EVP_PKEY_free(k);
}

/* key pairs come from a pool made EV_X25519_BASE_MAX at a time: across
 * several refills every pair is right and none repeats */
static void test_pool_pairs(void) {
  T_EQ(ev_x25519_provider_load(), 0);
  enum { N = 3 * EV_X25519_BASE_MAX + 3 };
  static unsigned char priv[N][32], pub[N][32];
  for (int i = 0; i < N; i++) {
    our_pair(priv[i], pub[i]);
    for (int j = 0; j < i; j++) {
      T_CHECK(memcmp(priv[i], priv[j], 32) != 0);
      T_CHECK(memcmp(pub[i], pub[j], 32) != 0);
    }
  }
}

/* a child of fork() never gets a pair its parent got or will get: the
 * parent's pool is full when it forks (one pair taken from a fresh
 * refill), and the child's next pair and the parent's next ones must all
 * differ (with the pool copied into the child, the child's first pair is
 * the parent's next) */
static void test_pool_fork(void) {
  T_EQ(ev_x25519_provider_load(), 0);
  unsigned char priv[32], pub[32];
  /* take pairs until this thread's pool was just refilled: the pool hands
   * out EV_X25519_BASE_MAX a refill, so after this many more the next
   * refill is at most that many away; simply take one, then fork with
   * whatever is left, and compare against all the parent's later ones */
  our_pair(priv, pub);
  int fds[2];
  T_EQ(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  T_CHECK(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    unsigned char cp[EV_X25519_BASE_MAX][32], cq[32];
    for (int i = 0; i < EV_X25519_BASE_MAX; i++) our_pair(cp[i], cq);
    ssize_t w = write(fds[1], cp, sizeof(cp));
    _exit(w == (ssize_t)sizeof(cp) ? 0 : 1);
  }
  close(fds[1]);
  unsigned char child[EV_X25519_BASE_MAX][32];
  size_t got = 0;
  while (got < sizeof(child)) {
    ssize_t r = read(fds[0], (unsigned char *)child + got, sizeof(child) - got);
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fds[0]);
  int st = 0;
  T_EQ(waitpid(pid, &st, 0), pid);
  T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  T_EQ(got, sizeof(child));
  for (int i = 0; i < EV_X25519_BASE_MAX; i++) {
    our_pair(priv, pub);
    for (int j = 0; j < EV_X25519_BASE_MAX; j++)
      T_CHECKF(memcmp(priv, child[j], 32) != 0,
               "the parent's pair %d is the child's pair %d", i, j);
  }
}

/* the same through a fork the C library does not see (the clone system
 * call itself: no atfork handler runs), which only MADV_WIPEONFORK
 * covers.  qemu's user-mode emulation accepts the advice and ignores it
 * (a page of the test's own, so marked, shows whether it was applied):
 * there the child's pairs are only checked to be right */
static void test_pool_raw_fork(void) {
  T_EQ(ev_x25519_provider_load(), 0);
  unsigned char priv[32], pub[32];
  our_pair(priv, pub);
  unsigned char *probe = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  T_CHECK(probe != MAP_FAILED);
  T_EQ(madvise(probe, 4096, MADV_WIPEONFORK), 0);
  probe[0] = 1;
  int fds[2];
  T_EQ(pipe(fds), 0);
  fflush(NULL);
  long pid = syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
  T_CHECK(pid >= 0);
  if (pid == 0) {
    unsigned char out[1 + EV_X25519_BASE_MAX * 32], q[32];
    out[0] = probe[0] == 0; /* the advice applied */
    for (int i = 0; i < EV_X25519_BASE_MAX; i++) our_pair(out + 1 + 32 * i, q);
    ssize_t w = write(fds[1], out, sizeof(out));
    _exit(w == (ssize_t)sizeof(out) ? 0 : 1);
  }
  close(fds[1]);
  unsigned char in[1 + EV_X25519_BASE_MAX * 32];
  size_t got = 0;
  while (got < sizeof(in)) {
    ssize_t r = read(fds[0], in + got, sizeof(in) - got);
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fds[0]);
  int st = 0;
  T_EQ(waitpid((pid_t)pid, &st, 0), (pid_t)pid);
  T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  T_EQ(got, sizeof(in));
  munmap(probe, 4096);
  if (!in[0]) {
    printf("note: MADV_WIPEONFORK accepted but not applied here (qemu user "
           "mode): the child's pairs checked, not their difference\n");
    return;
  }
  for (int i = 0; i < EV_X25519_BASE_MAX; i++) {
    our_pair(priv, pub);
    for (int j = 0; j < EV_X25519_BASE_MAX; j++)
      T_CHECKF(memcmp(priv, in + 1 + 32 * j, 32) != 0,
               "the parent's pair %d is the raw child's pair %d", i, j);
  }
}

T_MAIN({"handshake_on", test_handshake_on},
       {"handshake_off", test_handshake_off},
       {"others_get_default", test_others_get_default},
       {"pool_pairs", test_pool_pairs},
       {"pool_fork", test_pool_fork},
       {"pool_raw_fork", test_pool_raw_fork})
