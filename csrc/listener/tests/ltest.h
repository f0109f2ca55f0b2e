/*
 * ltest.h - helpers for the listener tests (on top of acotest.h).
 *
 * A test body runs on its own thread as the clients (blocking sockets with
 * timeouts) while the test's main thread drives loop 0 of a real eventer
 * (eventer_init: the other loops have threads of their own).  When the
 * body returns, every listener is stopped and waited for, the eventer
 * shuts down, and lt_run checks that no event, acceptor closure or file
 * descriptor is left.
 */
#ifndef LTEST_H
#define LTEST_H

#include "acotest.h"
#include "eventer.h"
#include "eventer_aco.h"
#include "mtev_listener.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#define LOADA(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define INC(p) __atomic_add_fetch((p), 1, __ATOMIC_ACQ_REL)

/* open file descriptors of this process */
static inline int lt_fd_count(void) {
  DIR *d = opendir("/proc/self/fd");
  T_CHECK(d);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) n += de->d_name[0] != '.';
  closedir(d);
  return n - 1; /* the directory's own fd */
}

static void *lt_body_main(void *arg) {
  void (*body)(void) = (void (*)(void))arg;
  body();
  struct timeval grace = {5, 0}, timeout = {30, 0};
  T_EQ(mtev_listener_shutdown(&grace, &timeout), 0);
  eventer_shutdown();
  return NULL;
}

/* Runs body (client side) against an eventer of `concurrency` loops; pools
 * (name, loops) may be added with extra_pool. */
static inline void lt_run_pool(int concurrency, const char *pool, int pool_loops,
                               void (*body)(void)) {
  int fds = lt_fd_count();
  char buf[32];
  snprintf(buf, sizeof(buf), "%d", concurrency);
  T_EQ(eventer_impl_propset("concurrency", buf), 0);
  if (pool) {
    char key[64];
    snprintf(key, sizeof(key), "loop_%s", pool);
    snprintf(buf, sizeof(buf), "%d", pool_loops);
    T_EQ(eventer_impl_propset(key, buf), 0);
  }
  T_EQ(eventer_init(), 0);
  pthread_t t;
  T_EQ(pthread_create(&t, NULL, lt_body_main, (void *)body), 0);
  eventer_loop_return();
  T_EQ(pthread_join(t, NULL), 0);
  eventer_fini();
  T_EQ(mtev_acceptor_closures_live(), 0);
  T_EQ(eventer_allocations_current(), 0);
  T_EQ(lt_fd_count(), fds);
}
static inline void lt_run(int concurrency, void (*body)(void)) {
  lt_run_pool(concurrency, NULL, 0, body);
}

/* ---- clients ---------------------------------------------------------------------- */

static inline void lt_timeouts(int fd, int ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A blocking connection to sa, or -1 with errno. */
static inline int lt_connect_sa(const struct sockaddr *sa, socklen_t len) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  lt_timeouts(fd, t_slow() ? 60000 : 10000);
  if (connect(fd, sa, len) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static inline int lt_connect_port(int port) {
  struct sockaddr_in in = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  return lt_connect_sa((struct sockaddr *)&in, sizeof(in));
}

static inline int lt_connect(mtev_listener_t *l) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  T_EQ(mtev_listener_get_address(l, (struct sockaddr *)&ss, &len), 0);
  if (ss.ss_family == AF_INET) /* "*": connect to the loopback */
    ((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (ss.ss_family == AF_UNIX) len = sizeof(struct sockaddr_un);
  return lt_connect_sa((struct sockaddr *)&ss, len);
}

static inline void lt_send(int fd, const char *s) {
  size_t n = strlen(s);
  T_EQ(send(fd, s, n, MSG_NOSIGNAL), (long long)n);
}

/* Reads exactly n bytes (fails the test on EOF or timeout). */
static inline void lt_recv_exact(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, (char *)buf + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    T_CHECKF(r > 0, "recv: got %zu of %zu bytes, then %s", got, n,
             r == 0 ? "EOF" : strerror(errno));
    got += (size_t)r;
  }
}

/* Reads exactly strlen(want) bytes (+ extra NUL bytes) and compares. */
static inline void lt_expect(int fd, const char *want, size_t extra_nul) {
  char buf[256] = {0};
  size_t n = strlen(want) + extra_nul;
  T_CHECK(n < sizeof(buf));
  lt_recv_exact(fd, buf, n);
  T_CHECKF(!memcmp(buf, want, strlen(want)), "got \"%.*s\", want \"%s\"",
           (int)strlen(want), buf, want);
  for (size_t i = strlen(want); i < n; i++) T_EQ(buf[i], 0);
}

/* The peer closed: recv returns 0 (or a reset). */
static inline void lt_expect_eof(int fd) {
  char c;
  ssize_t r;
  do {
    r = recv(fd, &c, 1, 0);
  } while (r < 0 && errno == EINTR);
  T_CHECKF(r == 0 || (r < 0 && errno == ECONNRESET),
           "want EOF, got %zd (%s)", r, r < 0 ? strerror(errno) : "data");
}

/* mtev_listener_create, which must succeed (its error in the failure). */
static inline mtev_listener_t *lt_make(const mtev_listener_opts_t *o) {
  char err[1024];
  mtev_listener_t *l = mtev_listener_create(o, err, sizeof(err));
  T_CHECKF(l, "mtev_listener_create: %s (errno %d)", err, errno);
  return l;
}

/* One iteration of the loop the test thread drives (at most 10 ms). */
static inline void lt_run_once(void) {
  struct timeval tick = {0, 10000};
  T_EQ(eventer_run_once(NULL, &tick), EVENTER_RUN_DONE);
}

/* EOF within 30 s, nothing before it (no reset); then closes fd. */
static inline void lt_expect_eof_close(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  T_EQ(poll(&p, 1, 30000), 1);
  char c;
  T_EQ(recv(fd, &c, 1, 0), 0);
  close(fd);
}

/* fd is closed (EBADF). */
static inline void lt_expect_closed(int fd) {
  errno = 0;
  T_EQ(fcntl(fd, F_GETFD), -1);
  T_EQ(errno, EBADF);
}

/* The server's end of a connection on port: the socket bound to it that
 * has a peer. */
static inline int lt_server_fd(int port) {
  for (int fd = 0; fd < 4096; fd++) {
    struct sockaddr_in a, p;
    socklen_t al = sizeof(a), pl = sizeof(p);
    if (getpeername(fd, (struct sockaddr *)&p, &pl) != 0) continue;
    if (getsockname(fd, (struct sockaddr *)&a, &al) != 0 || a.sin_family != AF_INET)
      continue;
    if (ntohs(a.sin_port) == port) return fd;
  }
  T_FAIL("no accepted socket on port %d", port);
  return -1;
}

/* mtev_listener_foreach's callback that counts the listeners (in *c). */
static inline int lt_count_listener(mtev_listener_t *l, void *c) {
  (void)l;
  (*(int *)c)++;
  return 0;
}

static inline void lt_wait_for(int (*cond)(void *), void *arg, int ms,
                               const char *what) {
  uint64_t end = t_now_us() + (uint64_t)(t_slow() ? ms * 10 : ms) * 1000u;
  while (!cond(arg)) {
    if (t_now_us() > end) T_FAIL("timed out waiting for %s", what);
    usleep(2000);
  }
}

static inline uint64_t lt_stat(mtev_listener_t *l, int which) {
  mtev_listener_stats_t s;
  T_EQ(mtev_listener_get_stats(l, &s), 0);
  return which == 0 ? s.accepted : which == 1 ? s.active : which == 2
                                                              ? s.refused
                                                              : s.accept_errors;
}

static inline int lt_active_is_zero(void *l) { return lt_stat(l, 1) == 0; }

/* A free TCP port on 127.0.0.1 (bound once, then released).  Nothing
 * holds it: a listener that names it may find it taken (lt_port_taken). */
static inline int lt_free_port(void) {
  /* never a port this program got from here before: once the probe's
   * socket is closed the kernel may give the same port to the next probe,
   * and two listeners of one configuration would clash */
  static int given[128];
  static unsigned ngiven;
  for (int tries = 0;; tries++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in in = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(in);
    T_EQ(bind(fd, (struct sockaddr *)&in, len), 0);
    T_EQ(getsockname(fd, (struct sockaddr *)&in, &len), 0);
    close(fd);
    int port = ntohs(in.sin_port), seen = 0;
    for (unsigned i = 0; i < ngiven && i < 128; i++) seen |= given[i] == port;
    if (!seen || tries >= 1000) {
      given[ngiven++ % 128] = port;
      return port;
    }
  }
}

/* Whether a listener start failed (err: its message) only because a port
 * from lt_free_port was taken between the probe and the bind, by another
 * process's socket or the ephemeral port of some client: the caller picks
 * fresh ports and starts again. */
static inline int lt_port_taken(const char *err) {
  return errno == EADDRINUSE && strstr(err, "bind: the address is in use") != NULL;
}

/* ---- services ----------------------------------------------------------------------- */

/* The seed's listen_to_me, with the read timeout from the listener's
 * <config> (read_timeout_ms, default 10 s) so tests need not wait 10 s. */
static inline void lt_seed_service(void) {
  eventer_aco_t e = eventer_aco_arg();
  mtev_acceptor_closure_t *ac = eventer_aco_get_closure(e);
  const char *t = mtev_hash_dict_get(mtev_acceptor_closure_config(ac), "read_timeout_ms");
  long ms = t ? atol(t) : 10000;
  struct timeval tensec = {ms / 1000, (ms % 1000) * 1000};
  while (1) {
    int rv;
    char buff[128];
    rv = eventer_aco_read(e, buff, sizeof(buff), &tensec);
    if (rv == -1) {
      if (errno == ETIME) {
        eventer_aco_write(e, "bye!\n", 5, NULL);
      }
      break;
    }
    if (rv >= 4 && !strncasecmp(buff, "quit", 4)) {
      eventer_aco_write(e, "quitter!\n", 9, NULL);
      break;
    }
    if (eventer_aco_write(e, "thanks!\n", 9, NULL) < 0) break;
  }
  eventer_aco_close(e);
  eventer_aco_free(e);
}

#endif /* LTEST_H */
