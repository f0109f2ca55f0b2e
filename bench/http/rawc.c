/*
 * rawc.c - the ceiling for the HTTP benchmarks: a minimal HTTP/1.1
 * responder straight on epoll, one thread, no framework.  Every request
 * (a head ending in CRLF CRLF; bodies are not supported) gets the same
 * 200 response with the body "Hello world.\n"; the responses to the
 * requests found in one read go out in one write (pipelining).  Prints
 * "port N" and serves until killed.
 *
 *   rawc [[127.0.0.1:]port]      (0 or none: an ephemeral port)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "rawc"
#include "../bench_util.h"

#define INBUF 8192
#define MAXEV 256

typedef struct {
  int fd;
  size_t len;      /* unparsed request bytes */
  char buf[INBUF];
} conn_t;

static char resp[256];
static size_t resp_len;
static time_t resp_sec;

/* The response, with a Date refreshed once a second. */
static void make_response(void) {
  time_t now = time(NULL);
  if (now == resp_sec) return;
  struct tm tm;
  gmtime_r(&now, &tm);
  char date[64];
  strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  resp_len = (size_t)snprintf(resp, sizeof(resp),
                              "HTTP/1.1 200 OK\r\nDate: %s\r\n"
                              "Content-Type: text/plain\r\n"
                              "Content-Length: 13\r\n\r\nHello world.\n",
                              date);
  resp_sec = now;
}

static void conn_close(int ep, conn_t *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c);
}

/* Reads once, answers every complete request; 0, or -1 to close. */
static int conn_read(conn_t *c) {
  ssize_t n = read(c->fd, c->buf + c->len, INBUF - c->len);
  if (n == 0) return -1;
  if (n < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
  c->len += (size_t)n;
  char out[INBUF / 16 * 256];
  size_t olen = 0, pos = 0;
  make_response();
  for (;;) {
    char *end = memmem(c->buf + pos, c->len - pos, "\r\n\r\n", 4);
    if (!end) break;
    pos = (size_t)(end - c->buf) + 4;
    if (olen + resp_len > sizeof(out)) {
      if (write(c->fd, out, olen) != (ssize_t)olen) return -1;
      olen = 0;
    }
    memcpy(out + olen, resp, resp_len);
    olen += resp_len;
  }
  if (olen && write(c->fd, out, olen) != (ssize_t)olen) return -1;
  if (pos) {
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
  }
  if (c->len == INBUF) return -1; /* a head too large */
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  /* "port" or "host:port" (it listens on 127.0.0.1 either way) */
  const char *arg = argc > 1 ? argv[1] : "0", *colon = strrchr(arg, ':');
  int port = atoi(colon ? colon + 1 : arg);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (ls < 0) die("socket");
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof(a);
  if (bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0) die("bind");
  if (listen(ls, 4096) != 0) die("listen");
  if (getsockname(ls, (struct sockaddr *)&a, &al) != 0) die("getsockname");
  printf("port %d\n", ntohs(a.sin_port));
  fflush(stdout);
  int ep = epoll_create1(0);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) != 0) die("epoll_ctl");
  struct epoll_event evs[MAXEV];
  for (;;) {
    int n = epoll_wait(ep, evs, MAXEV, -1);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (!c) { /* the listener */
        for (;;) {
          int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
          c = malloc(sizeof(*c));
          if (!c) fail("out of memory");
          c->fd = fd;
          c->len = 0;
          struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
          if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) != 0) die("epoll_ctl");
        }
        continue;
      }
      if (conn_read(c) != 0) conn_close(ep, c);
    }
  }
}
