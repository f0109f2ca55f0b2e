/*
 * test_listener.c - the listener's programmatic API over real sockets:
 * the seed's aco protocol (accept thread and accept on a loop), classic
 * callbacks, the acceptor closure, AF_UNIX and IPv6, fanout over loops
 * and pools, idle_timeout, max_connections, reuseport, the graceful stop,
 * writes after EOF and a peer vanishing mid-write (no SIGPIPE), 10,000
 * connections with nothing left behind, EMFILE backoff, every bad
 * option, and dispatch functions (a binding's own start function).  Every case checks that no event, closure or fd is left.
 */
#include "ltest.h"

#include <sys/stat.h>

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
                            .config = cfg("read_timeout_ms", "1000", NULL, NULL)};
  mtev_listener_t *l = lt_make(&o);
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
  /* silence: "bye!" after the read timeout, then a close (timed from
   * before the connect: the server's timer starts after it) */
  uint64_t t0 = t_now_us();
  int b = lt_connect(l);
  lt_expect(b, "bye!\n", 0);
  T_GE(t_now_us() - t0, 990000);
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
      if (n < 0 && errno == EAGAIN) {
        /* the socket is empty: a zero-length read is 0 at once, as
         * read(2), and no end of stream */
        int zm = 0;
        T_EQ(eventer_read(e, buf, 0, &zm), 0);
        return rmask;
      }
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
  mtev_listener_t *l = lt_make(&o);
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
  mtev_listener_t *l = lt_make(&o);
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
  mtev_listener_t *l = lt_make(&o);
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
  mtev_listener_t *any = lt_make(&o2);
  sa.sin6_port = htons((uint16_t)mtev_listener_get_port(any));
  fd = lt_connect_sa((struct sockaddr *)&sa, sizeof(sa));
  lt_expect(fd, "ok\n", 0);
  close(fd);
  mtev_listener_opts_t o3 = {.address = "[::1]", .aco_function = closure_service};
  mtev_listener_t *br = lt_make(&o3);
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
  mtev_listener_t *l = lt_make(&o);
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
  mtev_listener_t *l0 = lt_make(&nofan);
  fanout_round(l0, 6);
  T_EQ(LOADA(&loops_seen[0]), 6); /* the listener's loop: loop 0 */
  memset(loops_seen, 0, sizeof(loops_seen));
  mtev_listener_opts_t fan = {.address = "127.0.0.1", .aco_function = where_service,
                              .fanout = mtev_true};
  mtev_listener_t *l1 = lt_make(&fan);
  fanout_round(l1, 30);
  /* over loops 1..3 of the default pool, round robin; loop 0 is kept */
  T_EQ(LOADA(&loops_seen[0]), 0);
  for (int i = 1; i <= 3; i++) T_EQ(LOADA(&loops_seen[i]), 10);
  memset(loops_seen, 0, sizeof(loops_seen));
  mtev_listener_opts_t pool = {.address = "127.0.0.1", .aco_function = where_service,
                               .fanout = mtev_true, .fanout_pool = "io",
                               .accept_in_loop = mtev_true};
  mtev_listener_t *l2 = lt_make(&pool);
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

/* One try of body_idle's activity part: a byte every 100 ms, each echoed,
 * for 1.5 s on a new connection, then silence ends it.  0 when the client
 * itself was kept off its CPU for half the idle timeout or more between
 * two of its sends (seen at nice 19 on a loaded machine: the server then
 * rightly closed the connection), whether or not the server closed: the
 * try proves nothing.  A close with every gap short fails the test. */
static int idle_activity(mtev_listener_t *l) {
  int b = lt_connect(l);
  uint64_t t0 = t_now_us(), prev = t0;
  while (t_now_us() - t0 < 1500000) {
    usleep(100000);
    char c = 0;
    uint64_t start = t_now_us();
    ssize_t sent = send(b, "k", 1, MSG_NOSIGNAL), got = sent == 1 ? recv(b, &c, 1, 0) : -1;
    /* the server's idle time in this round lies between the start of the
     * previous send (or the connect) and the end of this recv */
    uint64_t gap = t_now_us() - prev;
    prev = start;
    if (gap >= 500000) {
      close(b);
      return 0;
    }
    T_CHECKF(sent == 1 && got == 1 && c == 'k',
             "an active connection: send %zd, recv %zd (%c), %llu ms after the last", sent, got,
             c ? c : '-', (unsigned long long)(gap / 1000));
  }
  lt_expect_eof(b); /* then silence ends it */
  close(b);
  return 1;
}

static void body_idle(void) {
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = idle_service,
                            .config = cfg("idle_timeout", "1000", NULL, NULL)};
  mtev_listener_t *l = lt_make(&o);
  /* silent: shut down after 1 s, not before (timed from before the
   * connect: the server's timer starts after it) */
  uint64_t t0 = t_now_us();
  int a = lt_connect(l);
  lt_expect_eof(a);
  uint64_t took = t_now_us() - t0;
  T_GE(took, 990000);
  T_LE(took, t_slow() ? 20000000 : 5000000);
  close(a);
  /* activity (reads and writes through the event) keeps it open: a byte
   * every 100 ms until well past one idle_timeout (the gaps a tenth of
   * it, so that a loaded machine that stretches one still stays within) */
  int tries = 0;
  while (!idle_activity(l)) T_CHECKF(++tries < 3, "the client was kept off its CPU in 3 tries of 3");
  lt_wait_for(lt_active_is_zero, l, 5000, "connections to end");
  mtev_listener_release(l);
  /* classic callbacks: the socket is shut down the same way */
  mtev_listener_opts_t c = {.address = "127.0.0.1", .callback = classic_cb,
                            .config = cfg("idle_timeout", "200", "greeting", "hi")};
  l = lt_make(&c);
  t0 = t_now_us();
  a = lt_connect(l);
  lt_expect_eof(a);
  T_GE(t_now_us() - t0, 190000);
  close(a);
  lt_wait_for(lt_active_is_zero, l, 5000, "classic connection to end");
  mtev_listener_release(l);
}
static void test_idle_timeout(void) { lt_run(2, body_idle); }


/* ---- no_delay ------------------------------------------------------------------------ */

/* Reports TCP_NODELAY of its socket. */
static void nodelay_service(void) {
  eventer_aco_t e = eventer_aco_arg();
  int on = -1;
  socklen_t len = sizeof(on);
  getsockopt(eventer_get_fd((eventer_t)e), IPPROTO_TCP, TCP_NODELAY, &on, &len);
  eventer_aco_write(e, on ? "1\n" : "0\n", 2, NULL);
  eventer_aco_close(e);
  eventer_aco_free(e);
}

static void body_no_delay(void) {
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = nodelay_service};
  mtev_listener_t *on = lt_make(&o);
  o.config = cfg("no_delay", "off", NULL, NULL);
  mtev_listener_t *off = lt_make(&o);
  int fd = lt_connect(on);
  lt_expect(fd, "1\n", 0); /* the default */
  close(fd);
  fd = lt_connect(off);
  lt_expect(fd, "0\n", 0);
  close(fd);
  mtev_listener_release(on);
  mtev_listener_release(off);
}
static void test_no_delay(void) { lt_run(2, body_no_delay); }

/* ---- max_connections ----------------------------------------------------------------- */

static void body_max_connections(void) {
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = idle_service,
                            .max_connections = 2};
  mtev_listener_t *l = lt_make(&o);
  int a = lt_connect(l), b = lt_connect(l);
  lt_send(a, "a");
  lt_expect(a, "a", 0);
  lt_send(b, "b");
  lt_expect(b, "b", 0);
  /* the third is accepted and reset at once */
  int c = lt_connect(l);
  T_CHECK(c >= 0);
  lt_expect_eof(c);
  close(c);
  T_EQ(lt_stat(l, 2), 1);
  T_EQ(lt_stat(l, 1), 2);
  /* room again once one has gone */
  close(a);
  uint64_t end = t_now_us() + 5000000;
  while (lt_stat(l, 1) != 1 && t_now_us() < end) usleep(1000);
  T_EQ(lt_stat(l, 1), 1);
  int d = lt_connect(l);
  lt_send(d, "d");
  lt_expect(d, "d", 0);
  close(b);
  close(d);
  lt_wait_for(lt_active_is_zero, l, 5000, "connections to end");
  T_EQ(lt_stat(l, 0), 3);
  T_EQ(lt_stat(l, 2), 1);
  mtev_listener_release(l);
}
static void test_max_connections(void) { lt_run(2, body_max_connections); }

/* ---- reuseport -------------------------------------------------------------------------- */

static void body_reuseport(void) {
  memset(loops_seen, 0, sizeof(loops_seen));
  int port = lt_free_port(), tries = 0;
  mtev_listener_opts_t o = {.address = "127.0.0.1", .port = port,
                            .aco_function = where_service, .reuseport = mtev_true};
  char err[512];
  mtev_listener_t *l1;
  while (!(l1 = mtev_listener_create(&o, err, sizeof(err)))) {
    /* on a fresh port when this one was taken before the bind */
    T_CHECKF(lt_port_taken(err) && ++tries < 10, "mtev_listener_create: %s", err);
    o.port = port = lt_free_port();
  }
  mtev_listener_t *l2 = lt_make(&o);
  mtev_listener_opts_t plain = o;
  plain.reuseport = mtev_false;
  T_CHECK(mtev_listener_create(&plain, err, sizeof(err)) == NULL);
  T_EQ(errno, EADDRINUSE);
  for (int i = 0; i < 40; i++) {
    int fd = lt_connect_port(port);
    lt_expect(fd, "seen\n", 0);
    close(fd);
  }
  /* the kernel spread them over both sockets */
  T_EQ(lt_stat(l1, 0) + lt_stat(l2, 0), 40);
  T_CHECK(lt_stat(l1, 0) > 0 && lt_stat(l2, 0) > 0);
  mtev_listener_release(l1);
  mtev_listener_release(l2);
}
static void test_reuseport(void) { lt_run(2, body_reuseport); }

/* ---- graceful stop ------------------------------------------------------------------------ */

static int cancelled_seen;
/* Echoes until EOF; a cancelled read says so before closing. */
static void cancel_service(void) {
  eventer_aco_t e = eventer_aco_arg();
  char buf[64];
  int rv;
  while ((rv = eventer_aco_read(e, buf, sizeof(buf), NULL)) > 0)
    eventer_aco_write(e, buf, (size_t)rv, NULL);
  if (rv < 0 && errno == ECANCELED) {
    INC(&cancelled_seen);
    eventer_aco_write(e, "cancelled\n", 10, NULL);
  }
  eventer_aco_close(e);
  eventer_aco_free(e);
}

static int refused_now(void *l) {
  int fd = lt_connect(l);
  if (fd >= 0) {
    close(fd);
    return 0;
  }
  return errno == ECONNREFUSED || errno == ENOENT;
}

static void stop_round(mtev_boolean in_loop) {
  cancelled_seen = 0;
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = cancel_service,
                            .accept_in_loop = in_loop};
  mtev_listener_t *l = lt_make(&o);
  int a = lt_connect(l), b = lt_connect(l);
  lt_send(a, "a");
  lt_expect(a, "a", 0);
  lt_send(b, "b");
  lt_expect(b, "b", 0);
  /* a grace period long enough for the steps below on a loaded machine */
  struct timeval grace = {1, 0};
  uint64_t t0 = t_now_us();
  T_EQ(mtev_listener_stop(l, &grace), 0);
  T_EQ(mtev_listener_stop(l, &grace), 0); /* twice is harmless */
  /* no new connections (the socket is closed) ... */
  lt_wait_for(refused_now, l, 2000, "the listening socket to close");
  /* ... the open ones go on until the deadline */
  lt_send(a, "still");
  lt_expect(a, "still", 0);
  struct timeval short_wait = {0, 50000};
  T_ERRNO(mtev_listener_wait(l, &short_wait), ETIMEDOUT);
  close(b); /* ends on its own */
  lt_expect(a, "cancelled\n", 0); /* then the rest is cancelled */
  T_GE(t_now_us() - t0, 990000);
  lt_expect_eof(a);
  close(a);
  T_EQ(mtev_listener_wait(l, &(struct timeval){10, 0}), 0);
  T_EQ(LOADA(&cancelled_seen), 1);
  T_EQ(lt_stat(l, 1), 0);
  T_EQ(lt_stat(l, 0), 2);
  mtev_listener_release(l);
}

static void body_stop(void) {
  stop_round(mtev_false);
  stop_round(mtev_true);
  /* no grace: connections are never cancelled, the stop waits for them */
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = cancel_service};
  mtev_listener_t *l = lt_make(&o);
  int a = lt_connect(l);
  lt_send(a, "a");
  lt_expect(a, "a", 0);
  T_EQ(mtev_listener_stop(l, NULL), 0);
  T_ERRNO(mtev_listener_wait(l, &(struct timeval){0, 300000}), ETIMEDOUT);
  lt_send(a, "b");
  lt_expect(a, "b", 0);
  close(a);
  T_EQ(mtev_listener_wait(l, NULL), 0);
  mtev_listener_release(l);
  /* classic connections are shut down at the deadline */
  mtev_listener_opts_t c = {.address = "127.0.0.1", .callback = classic_cb,
                            .config = cfg("greeting", "hi", NULL, NULL)};
  l = lt_make(&c);
  a = lt_connect(l);
  lt_send(a, "x\n");
  lt_expect(a, "classic:x\n", 0);
  uint64_t t0 = t_now_us();
  T_EQ(mtev_listener_stop(l, &(struct timeval){0, 200000}), 0);
  lt_expect_eof(a);
  T_GE(t_now_us() - t0, 190000);
  close(a);
  T_EQ(mtev_listener_wait(l, &(struct timeval){10, 0}), 0);
  mtev_listener_release(l);
}
static void test_stop(void) { lt_run(2, body_stop); }

/* mtev_listener_wait in a coroutine parks; on a loop outside one it
 * refuses to block. */
static mtev_listener_t *wait_l;
static int wait_rc = -2, wait_errno, deadlk_ok;
static void waiting_coroutine(void) {
  int rc = mtev_listener_wait(wait_l, &(struct timeval){10, 0});
  wait_errno = errno;
  __atomic_store_n(&wait_rc, rc, __ATOMIC_RELEASE);
  aco_exit();
}
static int deadlk_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  errno = 0;
  int a = mtev_listener_wait(wait_l, &(struct timeval){1, 0}) == -1 && errno == EDEADLK;
  errno = 0;
  int b = mtev_listener_wait(wait_l, &(struct timeval){0, 0}) == -1 && errno == ETIMEDOUT;
  __atomic_store_n(&deadlk_ok, a && b ? 1 : -1, __ATOMIC_RELEASE);
  return 0;
}
static int deadlk_done(void *p) { (void)p; return LOADA(&deadlk_ok) != 0; }
static int wait_done(void *p) { (void)p; return LOADA(&wait_rc) != -2; }

static void body_wait(void) {
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = cancel_service};
  wait_l = lt_make(&o);
  deadlk_ok = 0;
  eventer_add(eventer_alloc_timer(deadlk_cb, NULL, NULL));
  lt_wait_for(deadlk_done, NULL, 5000, "the timer");
  T_EQ(LOADA(&deadlk_ok), 1);
  __atomic_store_n(&wait_rc, -2, __ATOMIC_RELEASE);
  eventer_aco_start(waiting_coroutine, NULL); /* off-loop: loop 0 runs it */
  usleep(50000);
  T_EQ(LOADA(&wait_rc), -2); /* parked */
  T_EQ(mtev_listener_stop(wait_l, NULL), 0);
  lt_wait_for(wait_done, NULL, 5000, "the waiting coroutine");
  T_EQ(LOADA(&wait_rc), 0);
  mtev_listener_release(wait_l);
}
static void test_wait(void) { lt_run(2, body_wait); }

/* ---- EOF, half_close, a peer that vanishes --------------------------------------------- */

static int after_eof_rc, after_eof_errno, after_eof_done;
static void after_eof_service(void) {
  eventer_aco_t e = eventer_aco_arg();
  char buf[64];
  while (eventer_aco_read(e, buf, sizeof(buf), NULL) > 0) {
  }
  after_eof_rc = eventer_aco_write(e, "after eof\n", 10, NULL);
  after_eof_errno = errno;
  INC(&after_eof_done);
  eventer_aco_close(e);
  eventer_aco_free(e);
}

/* All the bytes until EOF (or a reset). */
static size_t drain(int fd, char *buf, size_t len) {
  size_t n = 0;
  for (;;) {
    ssize_t r = recv(fd, buf + n, len - n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return n;
    n += (size_t)r;
    if (n == len) return n;
  }
}

static int after_eof_finished(void *p) { (void)p; return LOADA(&after_eof_done) > 0; }

static void body_eof(void) {
  /* the seed's loop with a half-closing client: one answer, then the
   * write after EOF fails and the loop ends (no endless "thanks!") */
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = lt_seed_service};
  mtev_listener_t *l = lt_make(&o);
  int fd = lt_connect(l);
  lt_send(fd, "x\n");
  shutdown(fd, SHUT_WR);
  char buf[4096];
  T_EQ(drain(fd, buf, sizeof(buf)), 9);
  T_CHECK(!memcmp(buf, "thanks!\n", 9));
  close(fd);
  /* half_close off (aco default): a write after EOF is -1/EPIPE */
  after_eof_done = 0;
  mtev_listener_opts_t a = {.address = "127.0.0.1", .aco_function = after_eof_service};
  mtev_listener_t *la = lt_make(&a);
  fd = lt_connect(la);
  shutdown(fd, SHUT_WR);
  T_EQ(drain(fd, buf, sizeof(buf)), 0);
  close(fd);
  lt_wait_for(after_eof_finished, NULL, 5000, "the service");
  T_EQ(after_eof_rc, -1);
  T_EQ(after_eof_errno, EPIPE);
  /* half_close on: it goes through */
  after_eof_done = 0;
  a.config = cfg("half_close", "on", NULL, NULL);
  mtev_listener_t *lb = lt_make(&a);
  fd = lt_connect(lb);
  shutdown(fd, SHUT_WR);
  T_EQ(drain(fd, buf, sizeof(buf)), 10);
  T_CHECK(!memcmp(buf, "after eof\n", 10));
  close(fd);
  lt_wait_for(after_eof_finished, NULL, 5000, "the service");
  T_EQ(after_eof_rc, 10);
  mtev_listener_release(l);
  mtev_listener_release(la);
  mtev_listener_release(lb);
}
static void test_write_after_eof(void) { lt_run(2, body_eof); }

static int blast_errno[2], blast_done;
/* Writes until the peer is gone. */
static void blast_service(void) {
  eventer_aco_t e = eventer_aco_arg();
  mtev_acceptor_closure_t *ac = eventer_aco_get_closure(e);
  int slot = mtev_acceptor_closure_ctx(ac) ? 1 : 0;
  static char chunk[65536];
  int rv;
  while ((rv = eventer_aco_write(e, chunk, sizeof(chunk), NULL)) > 0) {
  }
  blast_errno[slot] = errno;
  INC(&blast_done);
  eventer_aco_close(e);
  eventer_aco_free(e);
}
static int blast_finished(void *p) { return LOADA(&blast_done) >= (int)(intptr_t)p; }

static void body_vanish(void) {
  signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill the test */
  blast_done = 0;
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = blast_service};
  mtev_listener_t *l = lt_make(&o);
  char buf[100000];
  /* the peer closes mid-stream: the next writes hit a reset socket */
  int fd = lt_connect(l);
  lt_recv_exact(fd, buf, sizeof(buf));
  close(fd);
  lt_wait_for(blast_finished, (void *)1, 5000, "the writer to notice");
  T_CHECKF(blast_errno[0] == EPIPE || blast_errno[0] == ECONNRESET, "%s",
           strerror(blast_errno[0]));
  /* the peer resets */
  o.service_ctx = &o;
  mtev_listener_t *l2 = lt_make(&o);
  fd = lt_connect(l2);
  lt_recv_exact(fd, buf, 1000);
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(fd);
  lt_wait_for(blast_finished, (void *)2, 5000, "the writer to notice");
  T_CHECKF(blast_errno[1] == EPIPE || blast_errno[1] == ECONNRESET, "%s",
           strerror(blast_errno[1]));
  mtev_listener_release(l);
  mtev_listener_release(l2);
}
static void test_peer_vanishes(void) { lt_run(2, body_vanish); }

/* The function leaves the connection open: the listener closes it. */
static void noclose_service(void) {
  eventer_aco_t e = eventer_aco_arg();
  eventer_aco_write(e, "bye\n", 4, NULL);
  eventer_aco_free(e);
}
static void body_noclose(void) {
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = noclose_service};
  mtev_listener_t *l = lt_make(&o);
  for (int i = 0; i < 5; i++) {
    int fd = lt_connect(l);
    lt_expect(fd, "bye\n", 0);
    lt_expect_eof(fd);
    close(fd);
  }
  lt_wait_for(lt_active_is_zero, l, 5000, "connections to end");
  mtev_listener_release(l);
}
static void test_function_leaves_it_open(void) { lt_run(2, body_noclose); }

/* ---- 10,000 connections ------------------------------------------------------------------- */

static mtev_listener_t *many_l;
static long many_each;
static void *many_client(void *arg) {
  (void)arg;
  for (long i = 0; i < many_each; i++) {
    int fd = lt_connect(many_l);
    T_CHECKF(fd >= 0, "connect %ld: %s", i, strerror(errno));
    lt_send(fd, "hello\n");
    lt_expect(fd, "thanks!\n", 1);
    lt_send(fd, "quit\n");
    lt_expect(fd, "quitter!\n", 0);
    lt_expect_eof(fd);
    close(fd);
  }
  return NULL;
}

static void body_many(void) {
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = lt_seed_service,
                            .fanout = mtev_true, .backlog = 256};
  many_l = lt_make(&o);
  int64_t events = eventer_allocations_current();
  long n = t_scale(10000, 20);
  enum { CLIENTS = 4 };
  many_each = n / CLIENTS;
  pthread_t t[CLIENTS];
  for (int i = 0; i < CLIENTS; i++) T_EQ(pthread_create(&t[i], NULL, many_client, NULL), 0);
  for (int i = 0; i < CLIENTS; i++) T_EQ(pthread_join(t[i], NULL), 0);
  lt_wait_for(lt_active_is_zero, many_l, 10000, "connections to end");
  T_EQ(lt_stat(many_l, 0), many_each * CLIENTS);
  T_EQ(lt_stat(many_l, 2), 0);
  /* nothing per connection is left while the listener still runs (a
   * connection counts as ended before its loop has dropped the last
   * reference to its event: give the loops a moment) */
  uint64_t end = t_now_us() + 5000000u;
  while ((mtev_acceptor_closures_live() != 0 ||
          eventer_allocations_current() != events) &&
         t_now_us() < end)
    usleep(1000);
  T_EQ(mtev_acceptor_closures_live(), 0);
  T_EQ(eventer_allocations_current(), events);
  mtev_listener_release(many_l);
}
static void test_10000_connections(void) { lt_run(4, body_many); }

/* ---- EMFILE ---------------------------------------------------------------------------------- */

static int accept_lines;
static void count_lines(mtev_log_stream_t ls, const char *line, size_t len, void *c) {
  (void)ls, (void)c;
  if (strstr(line, "accept: Too many open files")) INC(&accept_lines);
  fwrite(line, 1, len, stderr);
}

/* The number the next new descriptor gets (the lowest free one). */
static int lowest_free_fd(void) {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  T_CHECK(fd >= 0);
  close(fd);
  return fd;
}

static mtev_boolean emfile_in_loop;
static void body_emfile(void) {
  enum { K = 12 };
  accept_lines = 0;
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = lt_seed_service,
                            .backlog = 64, .accept_in_loop = emfile_in_loop};
  mtev_listener_t *l = lt_make(&o);
  int cl[K];
  for (int i = 0; i < K; i++) T_CHECK((cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)mtev_listener_get_port(l)),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct rlimit old, low;
  T_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  low = old;
  /* new descriptors take the lowest free numbers, which must be below the
   * limit: room for 3 connections (open ones above it stay valid) */
  low.rlim_cur = (rlim_t)lowest_free_fd() + 3;
  mtev_log_set_writer(count_lines, NULL);
  T_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  for (int i = 0; i < K; i++) {
    lt_timeouts(cl[i], 20000);
    T_EQ(connect(cl[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
  }
  uint64_t t0 = t_now_us();
  usleep(1500000);
  uint64_t errors = lt_stat(l, 3), lines = (uint64_t)LOADA(&accept_lines);
  uint64_t took = t_now_us() - t0;
  T_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  T_CHECK(lt_stat(l, 0) < K); /* some wait for descriptors */
  /* paused and retried, not spinning: with 10 ms doubling to 250 ms that
   * is about ten attempts in 1.5 s (a spin would make millions) */
  T_GE(errors, 2);
  T_LE(errors, 40);
  /* one report, then at most one a second */
  T_GE(lines, 1);
  T_LE(lines, 1 + took / 1000000 + 1);
  /* descriptors are back: everybody gets served.  (valgrind emulates
   * RLIMIT_NOFILE itself: it closes a descriptor the kernel handed out
   * above its limit and fails the call with EMFILE, so under valgrind the
   * clients whose connections it closed see EOF; a new client must still
   * be served.) */
  int valgrind = !strcmp(t_mode(), "valgrind"), served = 0;
  for (int i = 0; i < K; i++) {
    if (valgrind) {
      char q[9];
      send(cl[i], "quit\n", 5, MSG_NOSIGNAL);
      if (recv(cl[i], q, sizeof(q), MSG_WAITALL) == 9) served++;
    } else {
      lt_send(cl[i], "quit\n");
      lt_expect(cl[i], "quitter!\n", 0);
      served++;
    }
    close(cl[i]);
  }
  int fd = lt_connect(l);
  lt_send(fd, "quit\n");
  lt_expect(fd, "quitter!\n", 0);
  close(fd);
  mtev_log_set_writer(NULL, NULL);
  T_EQ(served, valgrind ? served : K);
  T_GE(served, 1);
  if (!valgrind) T_EQ(lt_stat(l, 0), K + 1);
  mtev_listener_release(l);
}
static void test_emfile_thread(void) {
  emfile_in_loop = mtev_false;
  lt_run(2, body_emfile);
}
static void test_emfile_loop(void) {
  emfile_in_loop = mtev_true;
  lt_run(2, body_emfile);
}

/* A stop while the acceptor pauses after EMFILE ends the pause at once. */
static void body_emfile_stop(void) {
  for (int round = 0; round < 2; round++) {
    mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = lt_seed_service,
                              .backlog = 64, .accept_in_loop = round ? mtev_true : mtev_false};
    mtev_listener_t *l = lt_make(&o);
    enum { K = 8 };
    int cl[K];
    for (int i = 0; i < K; i++) T_CHECK((cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)mtev_listener_get_port(l)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct rlimit old, low;
    T_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)lowest_free_fd(); /* no room at all */
    mtev_log_set_writer(count_lines, NULL);
    T_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    for (int i = 0; i < K; i++) T_EQ(connect(cl[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
    uint64_t end = t_now_us() + 5000000;
    while (lt_stat(l, 3) < 3 && t_now_us() < end) usleep(1000); /* pausing */
    uint64_t t0 = t_now_us();
    T_EQ(mtev_listener_stop(l, &(struct timeval){0, 0}), 0);
    T_EQ(mtev_listener_wait(l, &(struct timeval){10, 0}), 0);
    T_LE_LATE(t_now_us() - t0, 200000); /* not after the pause */
    T_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    mtev_log_set_writer(NULL, NULL);
    /* (A blocked accept(2) reserves its descriptor number before it
     * waits, so the accept thread gets one connection in whatever the
     * limit; so may valgrind's own RLIMIT_NOFILE emulation.  It is
     * cancelled like any other.) */
    T_LE(lt_stat(l, 0), 1);
    for (int i = 0; i < K; i++) {
      lt_expect_eof(cl[i]); /* the queue went with the socket */
      close(cl[i]);
    }
    mtev_listener_release(l);
  }
}
static void test_emfile_stop(void) { lt_run(2, body_emfile_stop); }

/* ---- stopping under load ----------------------------------------------------------------- */

static int hammer_stop;
static void *hammer(void *arg) {
  int port = (int)(intptr_t)arg;
  while (!LOADA(&hammer_stop)) {
    int fd = lt_connect_port(port);
    if (fd < 0) continue;
    lt_timeouts(fd, 2000);
    send(fd, "hello\n", 6, MSG_NOSIGNAL);
    char buf[64];
    while (recv(fd, buf, sizeof(buf), 0) > 0) {
      send(fd, "more\n", 5, MSG_NOSIGNAL);
    }
    close(fd);
  }
  return NULL;
}

static void body_stop_under_load(void) {
  for (int round = 0; round < 2; round++) {
    mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = cancel_service,
                              .fanout = mtev_true, .backlog = 64,
                              .accept_in_loop = round ? mtev_true : mtev_false};
    mtev_listener_t *l = lt_make(&o);
    hammer_stop = 0;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
      T_EQ(pthread_create(&t[i], NULL, hammer, (void *)(intptr_t)mtev_listener_get_port(l)), 0);
    usleep(200000);
    T_EQ(mtev_listener_stop(l, &(struct timeval){0, 100000}), 0);
    T_EQ(mtev_listener_wait(l, &(struct timeval){20, 0}), 0);
    __atomic_store_n(&hammer_stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 4; i++) T_EQ(pthread_join(t[i], NULL), 0);
    T_EQ(lt_stat(l, 1), 0);
    T_CHECK(lt_stat(l, 0) > 0);
    mtev_listener_release(l);
  }
}
static void test_stop_under_load(void) { lt_run(3, body_stop_under_load); }

/* ---- bad options ------------------------------------------------------------------------- */

static int named_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  return 0;
}

static void expect_error(mtev_listener_opts_t o, int err_no, const char *w1,
                         const char *w2) {
  char err[2048];
  errno = 0;
  T_CHECK(mtev_listener_create(&o, err, sizeof(err)) == NULL);
  T_CHECKF(errno == err_no, "errno %s, want %s (%s)", strerror(errno),
           strerror(err_no), err);
  T_CHECKF(strstr(err, w1), "\"%s\" lacks \"%s\"", err, w1);
  if (w2) T_CHECKF(strstr(err, w2), "\"%s\" lacks \"%s\"", err, w2);
}

static int count_listeners(mtev_listener_t *l, void *c) {
  (void)l;
  (*(int *)c)++;
  return 0;
}

static void body_errors(void) {
  mtev_listener_register_aco_function("known_fn", cancel_service);
  eventer_name_callback("named_cb", named_cb);
  mtev_listener_opts_t o = {.address = "127.0.0.1", .type = "nope"};
  expect_error(o, EINVAL, "\"nope\"", "known_fn");
  expect_error(o, EINVAL, "named_cb", NULL);
  o.type = NULL;
  expect_error(o, EINVAL, "no listener type", NULL);
  o.type = "known_fn";
  o.address = "1.2.3";
  expect_error(o, EINVAL, "\"1.2.3\"", NULL);
  o.address = "localhost";
  expect_error(o, EINVAL, "\"localhost\"", NULL);
  o.address = "127.0.0.1";
  o.port = 70000;
  expect_error(o, EINVAL, "70000", NULL);
  o.port = 0;
  o.fanout = mtev_true;
  o.fanout_pool = "nosuchpool";
  expect_error(o, EINVAL, "nosuchpool", NULL);
  o.fanout = mtev_false;
  o.fanout_pool = NULL;
  o.config = cfg("idle_timeout", "soon", NULL, NULL);
  expect_error(o, EINVAL, "idle_timeout", "soon");
  o.config = cfg("no_delay", "maybe", NULL, NULL);
  expect_error(o, EINVAL, "no_delay", "maybe");
  o.config = NULL;
  /* a port held by another socket: named (the holder binds port 0, so no
   * other socket can take the port first) */
  int holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t salen = sizeof(sa);
  T_EQ(bind(holder, (struct sockaddr *)&sa, sizeof(sa)), 0);
  T_EQ(getsockname(holder, (struct sockaddr *)&sa, &salen), 0);
  int port = ntohs(sa.sin_port);
  T_EQ(listen(holder, 1), 0);
  char want[64];
  snprintf(want, sizeof(want), "127.0.0.1:%d", port);
  o.port = port;
  expect_error(o, EADDRINUSE, want, "in use");
  close(holder);
  /* two listeners on one address */
  mtev_listener_t *first = lt_make(&o);
  expect_error(o, EADDRINUSE, want, "another listener");
  o.address = "*"; /* 0.0.0.0 overlaps: the kernel refuses */
  expect_error(o, EADDRINUSE, "in use", NULL);
  mtev_listener_release(first);
  /* nothing was left half-started */
  int n = 0;
  mtev_listener_foreach(count_listeners, &n);
  T_EQ(n, 1); /* `first` */
}
static void test_bad_options(void) { lt_run(2, body_errors); }

/* ---- dispatch functions (for bindings: the Go binding's ListenAco) ----------------- */

/* A binding's start function: the connection's event and closure are its
 * own; it serves the connection in a coroutine it starts itself, and
 * frees both when done. */
static int dispatch_starts;

static void dispatch_body(void) {
  eventer_t e = eventer_aco_arg();
  mtev_acceptor_closure_t *ac = eventer_get_closure(e);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  T_CHECK(ae);
  const char *tag = mtev_hash_dict_get(mtev_acceptor_closure_config(ac), "tag");
  char buf[64], out[128];
  int n;
  while ((n = eventer_aco_read(ae, buf, sizeof(buf), NULL)) > 0) {
    int m = snprintf(out, sizeof(out), "dispatch:%s:%.*s", tag ? tag : "-", n, buf);
    if (eventer_aco_write(ae, out, (size_t)m, NULL) < 0) break;
  }
  eventer_aco_close(ae);
  eventer_aco_free(ae);
  mtev_acceptor_closure_free(ac);
}

static void dispatch_start(eventer_t e, void *closure) {
  T_CHECK(closure == (void *)&dispatch_starts);
  T_CHECK(!eventer_in_aco()); /* on the connection's loop, outside coroutines */
  T_CHECK(eventer_in_loop());
  INC(&dispatch_starts);
  eventer_aco_start(dispatch_body, e);
}

static void body_dispatch(void) {
  dispatch_starts = 0;
  T_EQ(mtev_listener_register_aco_dispatch("by_name", dispatch_start, &dispatch_starts), 0);
  /* registered by name, and given in the options */
  mtev_listener_opts_t named = {.address = "127.0.0.1", .type = "by_name",
                                .config = cfg("tag", "named", NULL, NULL)};
  mtev_listener_t *a = lt_make(&named);
  mtev_listener_opts_t direct = {.address = "127.0.0.1", .dispatch = dispatch_start,
                                 .dispatch_closure = &dispatch_starts, .fanout = mtev_true,
                                 .config = cfg("tag", "direct", NULL, NULL)};
  mtev_listener_t *b = lt_make(&direct);
  mtev_listener_opts_t o;
  T_EQ(mtev_listener_get_opts(b, &o), 0);
  T_CHECK(o.dispatch == dispatch_start && o.dispatch_closure == &dispatch_starts);
  T_CHECK(o.aco_function == NULL && o.callback == NULL);
  T_STR_EQ(mtev_listener_get_type(a), "by_name");
  for (int i = 0; i < 4; i++) {
    int fa = lt_connect(a), fb = lt_connect(b);
    lt_send(fa, "x\n");
    lt_expect(fa, "dispatch:named:x\n", 0);
    lt_send(fb, "y\n");
    lt_expect(fb, "dispatch:direct:y\n", 0);
    close(fa);
    close(fb);
  }
  lt_wait_for(lt_active_is_zero, a, 5000, "named connections to end");
  lt_wait_for(lt_active_is_zero, b, 5000, "direct connections to end");
  T_EQ(LOADA(&dispatch_starts), 8);
  /* at the graceful stop's deadline, a dispatch connection still open is
   * shut down: its read sees EOF and the binding ends it */
  int fd = lt_connect(b);
  lt_send(fd, "z\n");
  lt_expect(fd, "dispatch:direct:z\n", 0);
  struct timeval grace = {0, 100000}, timeout = {10, 0};
  uint64_t t0 = t_now_us();
  T_EQ(mtev_listener_stop(b, &grace), 0);
  T_EQ(mtev_listener_wait(b, &timeout), 0);
  T_GE(t_now_us() - t0, 90000);
  lt_expect_eof(fd);
  close(fd);
  mtev_listener_release(a);
  mtev_listener_release(b);
}
static void test_dispatch(void) { lt_run(2, body_dispatch); }

static void test_needs_eventer(void) {
  mtev_listener_opts_t o = {.address = "127.0.0.1", .aco_function = cancel_service};
  char err[256];
  T_CHECK(mtev_listener_create(&o, err, sizeof(err)) == NULL);
  T_EQ(errno, ENXIO);
  T_CHECK(strstr(err, "eventer_init"));
  T_ERRNO(mtev_listener_stop(NULL, NULL), EINVAL);
  T_ERRNO(mtev_listener_wait(NULL, NULL), EINVAL);
  T_ERRNO(mtev_listener_get_stats(NULL, NULL), EINVAL);
  T_ERRNO(mtev_listener_register_aco_function(NULL, cancel_service), EINVAL);
  T_ERRNO(mtev_listener_register_aco_function("x", NULL), EINVAL);
}

T_MAIN({"seed_accept_thread", test_seed_accept_thread},
       {"seed_accept_in_loop", test_seed_accept_in_loop},
       {"classic", test_classic},
       {"closure", test_closure},
       {"ipv6", test_ipv6},
       {"unix", test_unix},
       {"fanout", test_fanout},
       {"idle_timeout", test_idle_timeout},
       {"no_delay", test_no_delay},
       {"max_connections", test_max_connections},
       {"reuseport", test_reuseport},
       {"stop", test_stop},
       {"wait", test_wait},
       {"write_after_eof", test_write_after_eof},
       {"peer_vanishes", test_peer_vanishes},
       {"function_leaves_it_open", test_function_leaves_it_open},
       {"10000_connections", test_10000_connections},
       {"emfile_thread", test_emfile_thread},
       {"emfile_loop", test_emfile_loop},
       {"emfile_stop", test_emfile_stop},
       {"stop_under_load", test_stop_under_load},
       {"bad_options", test_bad_options},
       {"dispatch", test_dispatch},
       {"needs_eventer", test_needs_eventer})
