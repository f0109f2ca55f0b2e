/*
 * test_eventer_ssl_mem.c - the per-thread cache in front of malloc for
 * OpenSSL's allocations (eventer_ssl_mem.c): installed by eventer_init;
 * every size up to past the largest class, aligned and intact; a freed
 * block comes back to the next allocation of its class; realloc within a
 * class, across classes and to and from large blocks keeps the bytes;
 * blocks freed by other threads than the ones that made them; many
 * threads at once; the cache's bound; a thread's cache goes back to
 * malloc at its exit; a program that set its own functions first keeps
 * them, and EVENTER_SSL_MEM_CACHE=0 leaves OpenSSL's; TLS handshakes over
 * it.  (Under ASan a cached block is poisoned: the sanitizer runs check
 * that nothing touches one.)
 */
#include <malloc.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <sys/wait.h>

#include "eventer_impl.h"
#include "ssltest.h"

#define SM_MAX 32768u                /* EV_SM_MAX */
#define SM_THREAD_BYTES (512u << 10) /* EV_SM_THREAD_BYTES */

/* ---- a child process: a program's own functions first ---------------------- */

static unsigned long own_calls;
static void *own_malloc(size_t n, const char *f, int l) {
  (void)f, (void)l;
  own_calls++;
  return malloc(n);
}
static void *own_realloc(void *p, size_t n, const char *f, int l) {
  (void)f, (void)l;
  own_calls++;
  return realloc(p, n);
}
static void own_free(void *p, const char *f, int l) {
  (void)f, (void)l;
  free(p);
}

/* In a child forked before this process touched OpenSSL or the eventer:
 * "own" sets its own functions, then eventer_init; "off" sets
 * EVENTER_SSL_MEM_CACHE=0, then eventer_init.  Exits 0 when OpenSSL's
 * functions are the ones expected and a context's allocations went
 * through them, 1 (with a line on stderr) otherwise. */
static void child_main(const char *mode) {
  int own = !strcmp(mode, "own");
  if (own && !CRYPTO_set_mem_functions(own_malloc, own_realloc, own_free)) {
    fprintf(stderr, "child: CRYPTO_set_mem_functions failed\n");
    _exit(1);
  }
  if (!own) setenv("EVENTER_SSL_MEM_CACHE", "0", 1);
  if (eventer_impl_propset("concurrency", "1") != 0 || eventer_init_external() != 0) {
    fprintf(stderr, "child: eventer_init_external failed\n");
    _exit(1);
  }
  CRYPTO_malloc_fn m;
  CRYPTO_realloc_fn r;
  CRYPTO_free_fn f;
  CRYPTO_get_mem_functions(&m, &r, &f);
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  int ok = ctx && !ev_ssl_mem_active() &&
           (own ? m == own_malloc && r == own_realloc && f == own_free && own_calls > 0
                : m == CRYPTO_malloc && r == CRYPTO_realloc && f == CRYPTO_free);
  SSL_CTX_free(ctx);
  if (!ok) {
    fprintf(stderr, "child %s: active %d, own functions %d, own calls %lu\n", mode,
            ev_ssl_mem_active(), m == own_malloc, own_calls);
    _exit(1);
  }
  _exit(0);
}

static int run_child(const char *mode) {
  fflush(NULL);
  pid_t pid = fork();
  T_CHECK(pid >= 0);
  if (pid == 0) child_main(mode);
  int st;
  T_EQ(waitpid(pid, &st, 0), pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* the first case: nothing in this process has initialized the eventer */
static void test_own_functions_kept(void) {
  T_CHECKF(!ev_ssl_mem_active(), "own_functions_kept runs before the eventer's first init");
  T_EQ(run_child("own"), 0);
  T_EQ(run_child("off"), 0);
}

/* ---- in this process: installed at eventer_init ------------------------------ */

static void setup(void) {
  ev_setup_external(1);
  T_EQ(ev_ssl_mem_active(), 1);
}

static void test_installed(void) {
  setup();
  CRYPTO_malloc_fn m;
  CRYPTO_realloc_fn r;
  CRYPTO_free_fn f;
  CRYPTO_get_mem_functions(&m, &r, &f);
  T_CHECK(m == ev_ssl_mem_malloc && r == ev_ssl_mem_realloc && f == ev_ssl_mem_free);
  ev_teardown();
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed * 31u + i * 7u);
}
static int intact(const unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(seed * 31u + i * 7u)) return 0;
  return 1;
}

/* every size to 1 KiB, then each class boundary and its neighbours to past
 * the largest class */
static size_t sizes[2048];
static int nsizes;
static void make_sizes(void) {
  nsizes = 0;
  for (size_t n = 1; n <= 1024; n++) sizes[nsizes++] = n;
  for (size_t b = 1024; b <= 4 * SM_MAX; b += b / 4)
    for (size_t d = 0; d < 3; d++) sizes[nsizes++] = b - 1 + d;
  sizes[nsizes++] = SM_MAX;
  sizes[nsizes++] = SM_MAX + 1;
}

static void test_sizes(void) {
  setup();
  make_sizes();
  static void *p[2048];
  for (int i = 0; i < nsizes; i++) {
    p[i] = OPENSSL_malloc(sizes[i]);
    T_CHECK(p[i] != NULL);
    T_EQ((uintptr_t)p[i] % 16, 0);
    fill(p[i], sizes[i], (unsigned)i);
  }
  for (int i = 0; i < nsizes; i++) {
    T_CHECKF(intact(p[i], sizes[i], (unsigned)i), "size %zu", sizes[i]);
    OPENSSL_free(p[i]);
  }
  T_LE(ev_ssl_mem_cached(), SM_THREAD_BYTES);
  T_CHECK(ev_ssl_mem_cached() > 0);
  /* the block just freed is the next of its class (LIFO; the classes
   * may be full after the loop above: emptied first) */
  ev_ssl_mem_thread_drain();
  for (size_t n = 1; n <= SM_MAX; n = n * 3 + 1) {
    void *a = OPENSSL_malloc(n);
    T_CHECK(a != NULL);
    OPENSSL_free(a);
    void *b = OPENSSL_malloc(n);
    T_PTR_EQ(b, a);
    OPENSSL_free(b);
  }
  /* sizes of one class share blocks: 97 and 112 are both 112-byte blocks */
  void *a = OPENSSL_malloc(112);
  OPENSSL_free(a);
  void *b = OPENSSL_malloc(97);
  T_PTR_EQ(b, a);
  OPENSSL_free(b);
  /* zero bytes: NULL, as OpenSSL's own; free(NULL) is nothing */
  T_PTR_EQ(OPENSSL_malloc(0), NULL);
  OPENSSL_free(NULL);
  ev_ssl_mem_thread_drain();
  T_EQ(ev_ssl_mem_cached(), 0);
  ev_teardown();
}

static void test_realloc(void) {
  setup();
  /* from NULL, then growing through every kind of move */
  static const size_t steps[] = {1, 16, 17, 100, 112, 113, 256, 257, 320, 321,
                                 4000, 4096, 4097, SM_MAX, SM_MAX + 1, 100000,
                                 200000, 40000, SM_MAX, 5000, 300, 33, 1};
  unsigned char *p = OPENSSL_realloc(NULL, steps[0]);
  T_CHECK(p != NULL);
  fill(p, steps[0], 9);
  size_t have = steps[0];
  for (size_t i = 1; i < sizeof(steps) / sizeof(steps[0]); i++) {
    size_t n = steps[i];
    unsigned char *q = OPENSSL_realloc(p, n);
    T_CHECKF(q != NULL, "realloc to %zu", n);
    T_EQ((uintptr_t)q % 16, 0);
    size_t keep = have < n ? have : n;
    T_CHECKF(intact(q, keep, 9), "%zu bytes kept from %zu to %zu", keep, have, n);
    fill(q, n, 9);
    /* a size of the same class keeps the block */
    if (n <= 256 && have <= 256 && (n + 15) / 16 == (have + 15) / 16) T_PTR_EQ(q, p);
    p = q;
    have = n;
  }
  /* to zero bytes: freed, NULL */
  T_PTR_EQ(OPENSSL_realloc(p, 0), NULL);
  ev_ssl_mem_thread_drain();
  ev_teardown();
}

/* ---- threads ---------------------------------------------------------------- */

enum { HANDOFF_N = 4000 };
static void *handoff[HANDOFF_N];
static size_t handoff_n[HANDOFF_N];

static unsigned next_rand(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return *s >> 8;
}
static size_t rand_size(unsigned *s) {
  unsigned r = next_rand(s);
  switch (r % 8) {
  case 0: return 1 + next_rand(s) % (SM_MAX + 8000); /* any, large too */
  case 1: return 1 + next_rand(s) % 4096;
  default: return 1 + next_rand(s) % 300; /* OpenSSL's are mostly small */
  }
}

static void *maker(void *arg) {
  (void)arg;
  unsigned s = 7;
  for (int i = 0; i < HANDOFF_N; i++) {
    handoff_n[i] = rand_size(&s);
    handoff[i] = OPENSSL_malloc(handoff_n[i]);
    if (handoff[i]) fill(handoff[i], handoff_n[i], (unsigned)i);
  }
  return NULL;
}

static size_t exiter_cached;
static void *exiter(void *arg) {
  (void)arg;
  static void *p[200];
  for (int i = 0; i < 200; i++) p[i] = OPENSSL_malloc(1000);
  for (int i = 0; i < 200; i++) OPENSSL_free(p[i]);
  exiter_cached = ev_ssl_mem_cached();
  return NULL;
}

static size_t freer_cached, freer_left;
static void *freer(void *arg) {
  (void)arg;
  for (int i = 0; i < HANDOFF_N; i++) {
    if (!handoff[i] || !intact(handoff[i], handoff_n[i], (unsigned)i)) return (void *)1;
    OPENSSL_free(handoff[i]);
  }
  freer_cached = ev_ssl_mem_cached();
  /* what it holds is its own to hand out again */
  unsigned s = 7;
  for (int i = 0; i < HANDOFF_N; i++) {
    size_t n = rand_size(&s);
    void *p = OPENSSL_malloc(n);
    if (!p) return (void *)1;
    fill(p, n, 1);
    OPENSSL_free(p);
  }
  freer_left = ev_ssl_mem_cached();
  return NULL;
}

/* blocks made on one thread, freed on another, which then reuses them;
 * its cache is bounded and goes back to malloc when it exits */
static void test_cross_thread(void) {
  setup();
  pthread_t t;
  /* a thread's cache goes back to malloc at its exit: the heap holds no
   * more than before the thread (ASan's malloc keeps no such figures;
   * LeakSanitizer finds a cache left behind there) */
  struct mallinfo2 before = mallinfo2();
  T_EQ(pthread_create(&t, NULL, exiter, NULL), 0);
  T_EQ(pthread_join(t, NULL), 0);
  T_CHECK(exiter_cached >= 64 * 1024); /* a class's budget: 64 blocks of 1024 */
  if (!t_sanitized()) T_LE(mallinfo2().uordblks, before.uordblks + 16384);
  T_EQ(pthread_create(&t, NULL, maker, NULL), 0);
  T_EQ(pthread_join(t, NULL), 0);
  void *rv = (void *)2;
  T_EQ(pthread_create(&t, NULL, freer, NULL), 0);
  T_EQ(pthread_join(t, &rv), 0);
  T_PTR_EQ(rv, NULL);
  T_CHECK(freer_cached > 0);
  T_LE(freer_cached, SM_THREAD_BYTES);
  T_LE(freer_left, SM_THREAD_BYTES);
  ev_teardown();
}

/* many threads alloc, hand over and free through a shared pool */
enum { POOL = 256, NTHREADS = 8 };
static struct {
  pthread_mutex_t lock;
  void *p[POOL];
  size_t n[POOL];
  unsigned seed[POOL];
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};
static int many_bad;

static void *many(void *arg) {
  unsigned s = (unsigned)(uintptr_t)arg * 2654435761u + 1;
  /* (the sanitizers check every byte of the patterns: fewer rounds) */
  long rounds = t_scale(t_sanitized() ? 8000 : 40000, 8);
  for (long r = 0; r < rounds; r++) {
    size_t n = rand_size(&s);
    unsigned seed = next_rand(&s);
    unsigned char *p;
    if (r % 5 == 4 && (p = OPENSSL_malloc(n))) { /* some grow in place or move */
      fill(p, n, seed);
      size_t m = rand_size(&s);
      unsigned char *q = OPENSSL_realloc(p, m);
      if (!q || !intact(q, n < m ? n : m, seed)) {
        __atomic_store_n(&many_bad, 1, __ATOMIC_RELAXED);
        OPENSSL_free(q ? q : p);
        return NULL;
      }
      p = q;
      n = m;
    } else {
      p = OPENSSL_malloc(n);
    }
    if (!p) {
      __atomic_store_n(&many_bad, 1, __ATOMIC_RELAXED);
      return NULL;
    }
    fill(p, n, seed);
    unsigned k = next_rand(&s) % POOL;
    pthread_mutex_lock(&pool.lock);
    void *old = pool.p[k];
    size_t on = pool.n[k];
    unsigned os = pool.seed[k];
    pool.p[k] = p;
    pool.n[k] = n;
    pool.seed[k] = seed;
    pthread_mutex_unlock(&pool.lock);
    if (old) {
      if (!intact(old, on, os)) __atomic_store_n(&many_bad, 1, __ATOMIC_RELAXED);
      OPENSSL_free(old);
    }
    if (ev_ssl_mem_cached() > SM_THREAD_BYTES) __atomic_store_n(&many_bad, 2, __ATOMIC_RELAXED);
  }
  return NULL;
}

static void test_many_threads(void) {
  setup();
  pthread_t t[NTHREADS];
  for (int i = 0; i < NTHREADS; i++)
    T_EQ(pthread_create(&t[i], NULL, many, (void *)(uintptr_t)(i + 1)), 0);
  for (int i = 0; i < NTHREADS; i++) T_EQ(pthread_join(t[i], NULL), 0);
  T_EQ(many_bad, 0);
  for (int i = 0; i < POOL; i++) {
    if (pool.p[i]) T_CHECK(intact(pool.p[i], pool.n[i], pool.seed[i]));
    OPENSSL_free(pool.p[i]);
    pool.p[i] = NULL;
  }
  T_LE(ev_ssl_mem_cached(), SM_THREAD_BYTES);
  ev_ssl_mem_thread_drain();
  ev_teardown();
}

/* ---- TLS over it -------------------------------------------------------------- */

static void test_handshakes(void) {
  const t_certs_t *C = t_certs_get();
  setup();
  for (int i = 0; i < 20; i++) {
    eventer_ssl_ctx_t *s = eventer_ssl_ctx_new(SSL_SERVER, "tlsv1.3", C->srv, C->srv_key, NULL, NULL);
    eventer_ssl_ctx_t *c = eventer_ssl_ctx_new(SSL_CLIENT, "tlsv1.3", NULL, NULL, C->ca, NULL);
    T_EQ(t_hs_pair(s, c), 0);
  }
  /* OpenSSL's blocks went through the cache */
  T_CHECK(ev_ssl_mem_cached() > 0);
  T_LE(ev_ssl_mem_cached(), SM_THREAD_BYTES);
  ev_teardown();
}

T_MAIN({"own_functions_kept", test_own_functions_kept},
       {"installed", test_installed},
       {"sizes", test_sizes},
       {"realloc", test_realloc},
       {"cross_thread", test_cross_thread},
       {"many_threads", test_many_threads},
       {"handshakes", test_handshakes})
