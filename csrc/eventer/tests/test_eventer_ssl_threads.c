/*
 * test_eventer_ssl_threads.c - the TLS layer's shared state under threads
 * (also run under ThreadSanitizer): two loops, each on its own thread,
 * doing handshakes at the same time on contexts from the shared SSL_CTX
 * cache (with ALPN looked up in the global registry), while a third thread
 * makes and frees contexts, registers ALPN protocols and, with a 1 s cache
 * expiry, makes the cache rebuild its entries under them.
 */
#include "ssltest.h"

static const t_certs_t *C;

static int dummy_cb(eventer_t e, int m, void *c, struct timeval *n) {
  (void)e, (void)m, (void)c, (void)n;
  return 0;
}

typedef struct {
  int index;
  int started; /* __atomic: its first coroutine is running */
  long rounds;
  int done, ok, server_ok, alpn_ok;
  eventer_aco_t srv;
} loop_arg_t;

static void server_side(void) {
  loop_arg_t *a = eventer_aco_arg();
  struct timeval tmo = t_ms(10000);
  char b[4];
  if (eventer_aco_ssl_accept(a->srv, &tmo) == 0 &&
      eventer_aco_read(a->srv, b, 1, &tmo) == 1 &&
      eventer_aco_write(a->srv, "y", 1, &tmo) == 1) {
    const uint8_t *p;
    uint8_t l;
    eventer_ssl_get_alpn_selected(eventer_get_eventer_ssl_ctx((eventer_t)a->srv), &p, &l);
    if (l == 8 && !memcmp(p, "http/1.1", 8)) a->alpn_ok++;
    a->server_ok++;
  }
  eventer_aco_close(a->srv);
  eventer_aco_free(a->srv);
}

static void rounds_fn(void) {
  loop_arg_t *a = eventer_aco_arg();
  for (long i = 0; i < a->rounds; i++) {
    int sv[2];
    T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    eventer_ssl_ctx_t *s =
        eventer_ssl_ctx_new(SSL_SERVER, NULL, C->srv, C->srv_key, NULL, NULL);
    eventer_ssl_ctx_t *c =
        eventer_ssl_ctx_new(SSL_CLIENT, NULL, NULL, NULL, C->ca, NULL);
    T_CHECK(s && c);
    T_EQ(eventer_ssl_alpn_advertise(c, "h2,http/1.1"), 0);
    eventer_t se = eventer_alloc_fd(dummy_cb, NULL, sv[0], EVENTER_READ);
    eventer_t ce = eventer_alloc_fd(dummy_cb, NULL, sv[1], EVENTER_READ);
    EVENTER_ATTACH_SSL(se, s);
    EVENTER_ATTACH_SSL(ce, c);
    a->srv = eventer_set_eventer_aco(se);
    eventer_aco_t cl = eventer_set_eventer_aco(ce);
    eventer_aco_start(server_side, a);
    struct timeval tmo = t_ms(10000);
    char b[4];
    if (eventer_aco_ssl_connect(cl, &tmo) == 0 &&
        eventer_aco_write(cl, "x", 1, &tmo) == 1 &&
        eventer_aco_read(cl, b, 1, &tmo) == 1)
      a->ok++;
    eventer_aco_close(cl);
    eventer_aco_free(cl);
  }
  a->done = 1;
}

static void *loop_thread(void *arg) {
  loop_arg_t *a = arg;
  T_EQ(eventer_loop_attach(a->index), 0);
  eventer_aco_start(rounds_fn, a);
  __atomic_store_n(&a->started, 1, __ATOMIC_RELEASE);
  struct timeval w = {0, 5000};
  uint64_t end = t_now_us() + 120000000u;
  while (!a->done) {
    T_CHECK(t_now_us() < end);
    T_EQ(eventer_run_once(NULL, &w), EVENTER_RUN_DONE);
  }
  /* let the last server coroutine finish */
  for (int i = 0; i < 20; i++) eventer_run_once(NULL, &w);
  T_EQ(eventer_loop_detach(), 0);
  return NULL;
}

static int churn_stop; /* __atomic */

static void *churn_thread(void *arg) {
  (void)arg;
  long n = 0;
  const char *layers[] = {NULL, "tlsv1.3", "tlsv1.2:all"};
  while (!__atomic_load_n(&churn_stop, __ATOMIC_ACQUIRE)) {
    eventer_ssl_ctx_t *x =
        eventer_ssl_ctx_new(SSL_SERVER, layers[n % 3], C->srv, C->srv_key, NULL, NULL);
    T_CHECK(x != NULL);
    eventer_ssl_ctx_free(x);
    if (n % 16 == 0) eventer_ssl_alpn_register(n % 32 ? "spdy/3" : "h3", NULL);
    n++;
  }
  return NULL;
}

static void test_threads(void) {
  C = t_certs_get();
  eventer_ssl_alpn_register("http/1.1", NULL);
  eventer_ssl_set_ssl_ctx_cache_expiry(1);
  T_EQ(eventer_impl_propset("concurrency", "2"), 0);
  T_EQ(eventer_init_external(), 0);
  long rounds = t_scale(300, 10);
  if (t_sanitized()) rounds /= 3;
  loop_arg_t a[2] = {{.index = 0, .rounds = rounds}, {.index = 1, .rounds = rounds}};
  pthread_t th[2], ch;
  __atomic_store_n(&churn_stop, 0, __ATOMIC_RELEASE);
  T_EQ(pthread_create(&ch, NULL, churn_thread, NULL), 0);
  /* the coroutine layer sets up its global hooks on a loop's first
   * coroutine without synchronization: one loop first, then the other */
  for (int i = 0; i < 2; i++) {
    T_EQ(pthread_create(&th[i], NULL, loop_thread, &a[i]), 0);
    while (!__atomic_load_n(&a[i].started, __ATOMIC_ACQUIRE)) usleep(1000);
  }
  for (int i = 0; i < 2; i++) T_EQ(pthread_join(th[i], NULL), 0);
  __atomic_store_n(&churn_stop, 1, __ATOMIC_RELEASE);
  T_EQ(pthread_join(ch, NULL), 0);
  for (int i = 0; i < 2; i++) {
    T_EQ(a[i].ok, rounds);
    T_EQ(a[i].server_ok, rounds);
    T_EQ(a[i].alpn_ok, rounds);
  }
  eventer_ssl_set_ssl_ctx_cache_expiry(0);
  ev_teardown();
}

T_MAIN({"threads", test_threads})
