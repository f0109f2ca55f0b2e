/*
 * test_listener.c - the listener's programmatic API over real sockets:
 * the seed's aco protocol (accept thread and accept on a loop), classic
 * callbacks, the acceptor closure, AF_UNIX and IPv6, fanout over loops
 * and pools, idle_timeout, max_connections, reuseport, the graceful stop,
 * writes after EOF and a peer vanishing mid-write (no SIGPIPE), 10,000
 * connections with nothing left behind, EMFILE backoff, and every bad
 * option.  Every case checks that no event, closure or fd is left.
 */
#include "ltest.h"

#include <sys/stat.h>

static mtev_listener_t *make(const mtev_listener_opts_t *o) {
  char err[1024];
  mtev_listener_t *l = mtev_listener_create(o, err, sizeof(err));
  T_CHECKF(l, "mtev_listener_create: %s (errno %d)", err, errno);
  return l;
}

static mtev_hash_table *cfg(const char *k1, const char *v1, const char *k2,
                            const char *v2) {
  static mtev_hash_table h;
  mtev_hash_destroy(&h, NULL, NULL);
  if (k1) mtev_hash_store(&h, k1, (int)strlen(k1), (void *)v1);
  if (k2) mtev_hash_store(&h, k2, (int)strlen(k2), (void *)v2);
  return &h;
}

/* ---- the seed's protocol ------------------------------------------------------------ */

static mtev_boolean seed_in_loop;

static void body_seed(void) {
  mtev_listener_opts_t o = {.address = "127.0.0.1",
                            .aco_function = lt_seed_service,
                            .accept_in_loop = seed_in_loop,
                            .config = cfg("read_timeout_ms", "300", NULL, NULL)};
  mtev_listener_t *l = make(&o);
  T_CHECK(mtev_listener_get_port(l) > 0);
  /* lines get "thanks!" (9 bytes: the seed writes its NUL), quit gets
   * "quitter!" and a close */
  int a = lt_connect(l);
  T_CHECK(a >= 0);
  lt_send(a, "hello\n");
  lt_expect(a, "thanks!\n", 1);
  lt_send(a, "again\n");
  lt_expect(a, "thanks!\n", 1);
  lt_send(a, "quit\n");
  lt_expect(a, "quitter!\n", 0);
  lt_expect_eof(a);
  close(a);
  /* silence: "bye!" after the read timeout, then a close */
  int b = lt_connect(l);
  uint64_t t0 = t_now_us();
  lt_expect(b, "bye!\n", 0);
  T_GE(t_now_us() - t0, 290000);
  lt_expect_eof(b);
  close(b);
  /* the peer closes: the read sees EOF, the write after it fails, the
   * loop ends (it would spin writing "thanks!" if that write returned 0) */
  int c = lt_connect(l);
  lt_send(c, "x\n");
  lt_expect(c, "thanks!\n", 1);
  close(c);
  lt_wait_for(lt_active_is_zero, l, 5000, "connections to end");
  T_EQ(lt_stat(l, 0), 3);
  T_EQ(lt_stat(l, 2), 0);
  mtev_listener_release(l);
}

static void test_seed_accept_thread(void) {
  seed_in_loop = mtev_false;
  lt_run(2, body_seed);
}
static void test_seed_accept_in_loop(void) {
  seed_in_loop = mtev_true;
  lt_run(2, body_seed);
}

/* ---- classic callbacks and the acceptor closure ------------------------------------ */

static int ctx_frees;
static void ctx_free(void *p) {
  INC(&ctx_frees);
  free(p);
}
static char classic_ctx[] = "service context";

/* Echoes with a prefix; on EOF closes and frees the closure. */
static int classic_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)now;
  mtev_acceptor_closure_t *ac = closure;
  char buf[256];
  if (mtev_acceptor_closure_ctx(ac) == classic_ctx) {
    /* first call: the closure as libmtev hands it */
    T_CHECK(mtev_acceptor_closure_dispatch(ac) == classic_cb);
    T_CHECK(mtev_acceptor_closure_remote_cn(ac) == NULL);
    T_STR_EQ(mtev_hash_dict_get(mtev_acceptor_closure_config(ac), "greeting"), "hi");
    struct sockaddr *sa = mtev_acceptor_closure_remote(ac);
    T_EQ(sa->sa_family, AF_INET);
    char ip[64];
    T_EQ(mtev_convert_sockaddr_to_buff(ip, sizeof(ip), sa), 9);
    T_STR_EQ(ip, "127.0.0.1");
    T_CHECK(mtev_acceptor_closure_listener(ac) != NULL);
    mtev_acceptor_closure_set_ctx(ac, strdup("mine"), ctx_free);
    T_CHECK(mtev_acceptor_closure_ctx_free_func(ac) == ctx_free);
    mtev_acceptor_closure_set_cmd(ac, 0x47455420);
    T_EQ(mtev_acceptor_closure_cmd(ac), 0x47455420);
  }
  if (mask & EVENTER_READ) {
    for (;;) {
      int rmask = 0;
      int n = eventer_read(e, buf, sizeof(buf), &rmask);
      if (n < 0 && errno == EAGAIN) return rmask;
      if (n <= 0) break;
      char out[300];
      int m = snprintf(out, sizeof(out), "classic:%.*s", n, buf);
      T_EQ(eventer_write(e, out, (size_t)m, &rmask), m);
    }
    eventer_remove_fde(e);
    int m;
    eventer_close(e, &m);
    mtev_acceptor_closure_free(ac);
    return 0;
  }
  return EVENTER_READ | EVENTER_EXCEPTION;
}

static void body_classic(void) {
  ctx_frees = 0;
  mtev_listener_opts_t o = {.address = "127.0.0.1",
                            .callback = classic_cb,
                            .service_ctx = classic_ctx,
                            .config = cfg("greeting", "hi", NULL, NULL)};
  mtev_listener_t *l = make(&o);
  for (int i = 0; i < 3; i++) {
    int fd = lt_connect(l);
    lt_send(fd, "ping\n");
    lt_expect(fd, "classic:ping\n", 0);
    shutdown(fd, SHUT_WR); /* half-close: classic callbacks may still write */
    lt_expect_eof(fd);
    close(fd);
  }
  lt_wait_for(lt_active_is_zero, l, 5000, "classic connections to end");
  T_EQ(LOADA(&ctx_frees), 3);
  mtev_listener_release(l);
}
static void test_classic(void) { lt_run(2, body_classic); }

/* The acceptor closure inside an aco function. */
static struct {
  int family, port, ctx_ok, listener_ok, age_ok;
  char ip[64];
} seen;
static void closure_service(void) {
  eventer_aco_t e = eventer_aco_arg();
  mtev_acceptor_closure_t *ac = eventer_aco_get_closure(e);
  struct sockaddr *sa = mtev_acceptor_closure_remote(ac);
  seen.family = sa->sa_family;
  if (sa->sa_family == AF_INET6)
    seen.port = ntohs(((struct sockaddr_in6 *)sa)->sin6_port);
  else if (sa->sa_family == AF_INET)
    seen.port = ntohs(((struct sockaddr_in *)sa)->sin_port);
  mtev_convert_sockaddr_to_buff(seen.ip, sizeof(seen.ip), sa);
  seen.ctx_ok = mtev_acceptor_closure_ctx(ac) == classic_ctx;
  seen.listener_ok = mtev_acceptor_closure_listener(ac) != NULL;
  struct timeval now, age;
  gettimeofday(&now, NULL);
  now.tv_sec += 5;
  mtev_acceptor_closure_mark_write(ac, NULL);
  mtev_acceptor_closure_readwrite_age(ac, &now, &age);
  seen.age_ok = age.tv_sec >= 4 && age.tv_sec <= 5;
  mtev_acceptor_closure_set_ctx(ac, strdup("x"), ctx_free);
  /* freeing the closure from inside is harmless: the listener does it */
  mtev_acceptor_closure_free(ac);
  eventer_aco_write(e, "ok\n", 3, NULL);
  eventer_aco_close(e);
  eventer_aco_free(e);
  aco_exit(); /* the seed's alternative ending */
}

static void check_closure_seen(int fd, int family) {
  struct sockaddr_storage me;
  socklen_t len = sizeof(me);
  T_EQ(getsockname(fd, (struct sockaddr *)&me, &len), 0);
  int port = family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&me)->sin6_port)
                                : ntohs(((struct sockaddr_in *)&me)->sin_port);
  T_EQ(seen.family, family);
  T_EQ(seen.port, port);
  T_CHECK(seen.ctx_ok && seen.listener_ok && seen.age_ok);
}

static void body_closure(void) {
  ctx_frees = 0;
  mtev_listener_opts_t o = {.address = "127.0.0.1",
                            .aco_function = closure_service,
                            .service_ctx = classic_ctx};
  mtev_listener_t *l = make(&o);
  int fd = lt_connect(l);
  lt_expect(fd, "ok\n", 0);
  lt_expect_eof(fd);
  check_closure_seen(fd, AF_INET);
  T_STR_EQ(seen.ip, "127.0.0.1");
  close(fd);
  lt_wait_for(lt_active_is_zero, l, 5000, "the connection to end");
  T_EQ(LOADA(&ctx_frees), 1); /* the context's free function ran once */
  mtev_listener_release(l);
}
static void test_closure(void) { lt_run(2, body_closure); }

/* ---- IPv6 and AF_UNIX ---------------------------------------------------------------- */

static void body_ipv6(void) {
  int probe = socket(AF_INET6, SOCK_STREAM, 0);
  T_CHECKF(probe >= 0, "this machine has no IPv6: %s", strerror(errno));
  close(probe);
  mtev_listener_opts_t o = {.address = "::1", .aco_function = closure_service,
                            .service_ctx = classic_ctx};
  mtev_listener_t *l = make(&o);
  T_CHECK(strstr(mtev_listener_get_name(l), "[::1]:"));
  struct sockaddr_in6 sa = {.sin6_family = AF_INET6,
                            .sin6_port = htons((uint16_t)mtev_listener_get_port(l)),
                            .sin6_addr = in6addr_loopback};
  int fd = lt_connect_sa((struct sockaddr *)&sa, sizeof(sa));
  T_CHECK(fd >= 0);
  lt_expect(fd, "ok\n", 0);
  check_closure_seen(fd, AF_INET6);
  T_STR_EQ(seen.ip, "::1");
  close(fd);
  /* "inet6:*" listens on every IPv6 address, "[::1]" is accepted too */
  mtev_listener_opts_t o2 = {.address = "inet6:*", .aco_function = closure_service,
                             .service_ctx = classic_ctx};
  mtev_listener_t *any = make(&o2);
  sa.sin6_port = htons((uint16_t)mtev_listener_get_port(any));
  fd = lt_connect_sa((struct sockaddr *)&sa, sizeof(sa));
  lt_expect(fd, "ok\n", 0);
  close(fd);
  mtev_listener_opts_t o3 = {.address = "[::1]", .aco_function = closure_service};
  mtev_listener_t *br = make(&o3);
  mtev_listener_release(br);
  lt_wait_for(lt_active_is_zero, l, 5000, "connections to end");
  lt_wait_for(lt_active_is_zero, any, 5000, "connections to end");
  mtev_listener_release(l);
  mtev_listener_release(any);
}
static void test_ipv6(void) { lt_run(2, body_ipv6); }

static char sock_path[96];

static void body_unix(void) {
  snprintf(sock_path, sizeof(sock_path), "/tmp/test_listener.%d.sock", (int)getpid());
  unlink(sock_path);
  /* a stale socket file (its listener is gone) is removed */
  int stale = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  snprintf(un.sun_path, sizeof(un.sun_path), "%s", sock_path);
  T_EQ(bind(stale, (struct sockaddr *)&un, sizeof(un)), 0);
  close(stale);
  struct stat st;
  T_EQ(stat(sock_path, &st), 0);
  mtev_listener_opts_t o = {.address = sock_path,
                            .aco_function = lt_seed_service,
                            .config = cfg("read_timeout_ms", "5000", NULL, NULL)};
  mtev_listener_t *l = make(&o);
  T_STR_EQ(mtev_listener_get_name(l), sock_path);
  T_EQ(mtev_listener_get_port(l), 0);
  int fd = lt_connect(l);
  T_CHECK(fd >= 0);
  lt_send(fd, "over unix\n");
  lt_expect(fd, "thanks!\n", 1);
  lt_send(fd, "quit\n");
  lt_expect(fd, "quitter!\n", 0);
  close(fd);
  /* a path in use by a live listener is an error, not stolen */
  char err[512];
  mtev_listener_opts_t o2 = o;
  T_CHECK(mtev_listener_create(&o2, err, sizeof(err)) == NULL);
  T_EQ(errno, EADDRINUSE);
  T_CHECKF(strstr(err, sock_path), "%s", err);
  int other = socket(AF_UNIX, SOCK_STREAM, 0); /* ... also by another socket */
  char other_path[104];
  snprintf(other_path, sizeof(other_path), "%s.b", sock_path);
  unlink(other_path);
  snprintf(un.sun_path, sizeof(un.sun_path), "%s", other_path);
  T_EQ(bind(other, (struct sockaddr *)&un, sizeof(un)), 0);
  T_EQ(listen(other, 1), 0);
  o2.address = other_path;
  T_CHECK(mtev_listener_create(&o2, err, sizeof(err)) == NULL);
  T_EQ(errno, EADDRINUSE);
  T_CHECKF(strstr(err, "in use"), "%s", err);
  close(other);
  unlink(other_path);
  /* a path that is not a socket is left alone */
  FILE *f = fopen(other_path, "w");
  fclose(f);
  T_CHECK(mtev_listener_create(&o2, err, sizeof(err)) == NULL);
  T_CHECKF(strstr(err, "not a socket"), "%s", err);
  T_EQ(stat(other_path, &st), 0);
  unlink(other_path);
  /* a stop removes the socket file */
  struct timeval g = {1, 0};
  T_EQ(mtev_listener_stop(l, &g), 0);
  T_EQ(mtev_listener_wait(l, &(struct timeval){10, 0}), 0);
  T_CHECK(stat(sock_path, &st) != 0 && errno == ENOENT);
  mtev_listener_release(l);
}
static void test_unix(void) { lt_run(2, body_unix); }

/* ---- fanout ---------------------------------------------------------------------------- */

static int loops_seen[16];
static void where_service(void) {
  eventer_aco_t e = eventer_aco_arg();
  eventer_loop_t *lp = eventer_loop_current();
  int idx = eventer_loop_index(lp);
  if (eventer_loop_pool(lp) != eventer_pool("default")) idx += 8;
  INC(&loops_seen[idx]);
  eventer_aco_write(e, "seen\n", 5, NULL);
  eventer_aco_close(e);
  eventer_aco_free(e);
}

static void fanout_round(mtev_listener_t *l, int n) {
  for (int i = 0; i < n; i++) {
    int fd = lt_connect(l);
    lt_expect(fd, "seen\n", 0);
    close(fd);
  }
}

static void body_fanout(void) {
  memset(loops_seen, 0, sizeof(loops_seen));
  mtev_listener_opts_t nofan = {.address = "127.0.0.1", .aco_function = where_service};
  mtev_listener_t *l0 = make(&nofan);
  fanout_round(l0, 6);
  T_EQ(LOADA(&loops_seen[0]), 6); /* the listener's loop: loop 0 */
  memset(loops_seen, 0, sizeof(loops_seen));
  mtev_listener_opts_t fan = {.address = "127.0.0.1", .aco_function = where_service,
                              .fanout = mtev_true};
  mtev_listener_t *l1 = make(&fan);
  fanout_round(l1, 30);
  /* over loops 1..3 of the default pool, round robin; loop 0 is kept */
  T_EQ(LOADA(&loops_seen[0]), 0);
  for (int i = 1; i <= 3; i++) T_EQ(LOADA(&loops_seen[i]), 10);
  memset(loops_seen, 0, sizeof(loops_seen));
  mtev_listener_opts_t pool = {.address = "127.0.0.1", .aco_function = where_service,
                               .fanout = mtev_true, .fanout_pool = "io",
                               .accept_in_loop = mtev_true};
  mtev_listener_t *l2 = make(&pool);
  fanout_round(l2, 10);
  T_EQ(LOADA(&loops_seen[8]), 5); /* both loops of pool "io" */
  T_EQ(LOADA(&loops_seen[9]), 5);
  mtev_listener_release(l0);
  mtev_listener_release(l1);
  mtev_listener_release(l2);
}
static void test_fanout(void) { lt_run_pool(4, "io", 2, body_fanout); }

/* ---- idle_timeout ----------------------------------------------------------------------- */

/* Reads without a timeout of its own; "eof" when the read returns 0. */
static void idle_service(void) {
  eventer_aco_t e = eventer_aco_arg();
  char buf[64];
  int rv;
  while ((rv = eventer_aco_read(e, buf, sizeof(buf), NULL)) > 0)
    eventer_aco_write(e, buf, (size_t)rv, NULL);
  eventer_aco_close(e);
  eventer_aco_free(e);
}

static void body_idle(void) {
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = idle_service,
                            .config = cfg("idle_timeout", "300", NULL, NULL)};
  mtev_listener_t *l = make(&o);
  /* silent: shut down after 300 ms, not before */
  int a = lt_connect(l);
  uint64_t t0 = t_now_us();
  lt_expect_eof(a);
  uint64_t took = t_now_us() - t0;
  T_GE(took, 290000);
  T_LE(took, t_slow() ? 20000000 : 5000000);
  close(a);
  /* activity (reads and writes through the event) keeps it open */
  int b = lt_connect(l);
  t0 = t_now_us();
  for (int i = 0; i < 6; i++) {
    usleep(120000);
    lt_send(b, "k");
    lt_expect(b, "k", 0);
  }
  T_GE(t_now_us() - t0, 700000); /* well past one idle_timeout */
  lt_expect_eof(b);              /* then silence ends it */
  close(b);
  lt_wait_for(lt_active_is_zero, l, 5000, "connections to end");
  mtev_listener_release(l);
  /* classic callbacks: the socket is shut down the same way */
  mtev_listener_opts_t c = {.address = "127.0.0.1", .callback = classic_cb,
                            .config = cfg("idle_timeout", "200", "greeting", "hi")};
  l = make(&c);
  a = lt_connect(l);
  t0 = t_now_us();
  lt_expect_eof(a);
  T_GE(t_now_us() - t0, 190000);
  close(a);
  lt_wait_for(lt_active_is_zero, l, 5000, "classic connection to end");
  mtev_listener_release(l);
}
static void test_idle_timeout(void) { lt_run(2, body_idle); }

T_MAIN({"seed_accept_thread", test_seed_accept_thread},
       {"seed_accept_in_loop", test_seed_accept_in_loop},
       {"classic", test_classic},
       {"closure", test_closure},
       {"ipv6", test_ipv6},
       {"unix", test_unix},
       {"fanout", test_fanout},
       {"idle_timeout", test_idle_timeout})
