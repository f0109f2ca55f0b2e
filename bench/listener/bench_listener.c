/*
 * bench_listener.c - the listener under load: a C server (the seed's aco
 * listener) and the clients bench/listener/run.sh drives it and its Go
 * peer (bench/listener/gopeer, a net.Listener with a goroutine and a
 * bufio.Reader per connection) with.
 *
 *   bench_listener serve [thread|loop]
 *       the seed's listen_to_me (its 10 s read timeout made BENCH_TIMEOUT
 *       seconds, default 3600, so idle connections stay) on 127.0.0.1,
 *       one loop, accept in a dedicated thread (default) or on the loop;
 *       prints "port N", serves until killed.
 *   bench_listener idle-client N PORT
 *       opens N connections, sends a line on each and reads its "thanks!"
 *       (so every server-side connection has read, written and parked
 *       again), prints "ready", then holds them until stdin closes.
 *   bench_listener rate-client CLIENTS SECONDS PORT
 *       CLIENTS threads, each in a loop: connect, send a line, read the
 *       "thanks!", close (with a reset: no TIME_WAIT piles up); prints
 *       "conns_per_s X" for the SECONDS after a 0.5 s warm-up.
 */
#define BENCH_NAME "bench_listener"
#include <acoeventer.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../bench_util.h"

static struct timeval read_timeout = {3600, 0};

/* The seed's listen_to_me (bench: the timeout above instead of 10 s). */
static void listen_to_me(void) {
  eventer_aco_t e = eventer_aco_arg();
  while (1) {
    int rv;
    char buff[128];
    rv = eventer_aco_read(e, buff, sizeof(buff), &read_timeout);
    if (rv == -1) {
      if (errno == ETIME) eventer_aco_write(e, "bye!\n", 5, NULL);
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

static void raise_nofile(void) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

static int serve(int in_loop) {
  const char *t = getenv("BENCH_TIMEOUT");
  if (t && *t) read_timeout.tv_sec = atol(t);
  raise_nofile();
  if (eventer_impl_propset("concurrency", "1") != 0 || eventer_init() != 0)
    die("eventer_init");
  mtev_listener_opts_t o = {.address = "127.0.0.1",
                            .aco_function = listen_to_me,
                            .backlog = 4096,
                            .accept_in_loop = in_loop ? mtev_true : mtev_false};
  char err[512];
  mtev_listener_t *l = mtev_listener_create(&o, err, sizeof(err));
  if (!l) fail(err);
  printf("port %d\n", mtev_listener_get_port(l));
  fflush(stdout);
  eventer_loop();
  return 0;
}

static struct sockaddr_in server_addr(int port) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  return sa;
}

static int dial(const struct sockaddr_in *sa) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  while (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0) {
    if (errno == EINTR) continue;
    die("connect");
  }
  return fd;
}

static void read_exact(int fd, char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) fail("short reply");
    got += (size_t)r;
  }
}

static int idle_client(long n, int port) {
  raise_nofile();
  struct sockaddr_in sa = server_addr(port);
  int *fds = calloc((size_t)n, sizeof(*fds));
  if (!fds) die("calloc");
  char buf[9];
  /* in batches, each answered before the next, so the server's accept
   * queue never overflows */
  for (long i = 0; i < n; i += 256) {
    long end = i + 256 < n ? i + 256 : n;
    for (long j = i; j < end; j++) {
      fds[j] = dial(&sa);
      if (write(fds[j], "hello\n", 6) != 6) die("write");
    }
    for (long j = i; j < end; j++) read_exact(fds[j], buf, sizeof(buf));
  }
  printf("ready\n");
  fflush(stdout);
  while (read(0, buf, sizeof(buf)) > 0) {
  }
  for (long i = 0; i < n; i++) close(fds[i]);
  free(fds);
  return 0;
}

static struct sockaddr_in rate_sa;
static volatile int rate_go, rate_stop;
static uint64_t rate_count; /* __atomic */

static void *rate_thread(void *arg) {
  (void)arg;
  char buf[9];
  struct linger lg = {1, 0};
  while (!rate_stop) {
    int fd = dial(&rate_sa);
    if (write(fd, "hello\n", 6) != 6) die("write");
    read_exact(fd, buf, sizeof(buf));
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    if (rate_go) __atomic_add_fetch(&rate_count, 1, __ATOMIC_RELAXED);
  }
  return NULL;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rate_client(int clients, double seconds, int port) {
  raise_nofile();
  rate_sa = server_addr(port);
  pthread_t *t = calloc((size_t)clients, sizeof(*t));
  for (int i = 0; i < clients; i++)
    if (pthread_create(&t[i], NULL, rate_thread, NULL) != 0) die("pthread_create");
  usleep(500000); /* warm-up */
  rate_go = 1;
  double t0 = now_s();
  usleep((useconds_t)(seconds * 1e6));
  uint64_t n = __atomic_load_n(&rate_count, __ATOMIC_RELAXED);
  double took = now_s() - t0;
  rate_stop = 1;
  for (int i = 0; i < clients; i++) pthread_join(t[i], NULL);
  printf("conns_per_s %.0f\n", (double)n / took);
  free(t);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "serve"))
    return serve(argc >= 3 && !strcmp(argv[2], "loop"));
  if (argc == 4 && !strcmp(argv[1], "idle-client"))
    return idle_client(atol(argv[2]), atoi(argv[3]));
  if (argc == 5 && !strcmp(argv[1], "rate-client"))
    return rate_client(atoi(argv[2]), atof(argv[3]), atoi(argv[4]));
  fprintf(stderr,
          "usage: bench_listener serve [thread|loop]\n"
          "       bench_listener idle-client N PORT\n"
          "       bench_listener rate-client CLIENTS SECONDS PORT\n");
  return 2;
}
