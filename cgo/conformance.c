//go:build eventer_testhooks

/* conformance.c - see conformance.h */
#include "conformance.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "eventer_aco.h"

typedef struct {
  const ev_cf_step_t *steps;
  int n;
  char *results;
  int *done;
} ev_cf_run_t;

const char *ev_cf_errname(int err) {
  const char *n = strerrorname_np(err);
  return n ? n : "E?";
}

static int ev_cf_dummy(eventer_t e, int m, void *c, struct timeval *n) {
  (void)e, (void)m, (void)c, (void)n;
  return 0;
}

static eventer_aco_t ev_cf_aco(int fd) {
  return eventer_set_eventer_aco(eventer_alloc_fd(ev_cf_dummy, NULL, fd, EVENTER_READ));
}

/* a non-blocking loopback listener; its address in *sa */
static int ev_cf_listener(struct sockaddr_in *sa) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  *sa = (struct sockaddr_in){.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(*sa);
  bind(l, (struct sockaddr *)sa, sl);
  listen(l, 8);
  getsockname(l, (struct sockaddr *)sa, &sl);
  return l;
}

static void ev_cf_sleep_work(void *c) { usleep(1000u * (unsigned)*(int *)c); }

static void ev_cf_main(void) {
  ev_cf_run_t *r = eventer_aco_arg();
  eventer_aco_t e = NULL;
  int peer = -1;
  for (int i = 0; i < r->n; i++) {
    const ev_cf_step_t *s = &r->steps[i];
    char *out = r->results + (size_t)i * EV_CF_RESULT_LEN;
    struct timeval tmo = {s->timeout_ms / 1000, (s->timeout_ms % 1000) * 1000};
    struct timeval *tp = s->timeout_ms >= 0 ? &tmo : NULL;
    int rv = 0;
    errno = 0;
#define ERR() snprintf(out, EV_CF_RESULT_LEN, "%s", ev_cf_errname(errno))
#define OK() snprintf(out, EV_CF_RESULT_LEN, "ok")
    switch (s->cmd) {
    case EV_CF_PAIR: {
      int sv[2];
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
      e = ev_cf_aco(sv[0]);
      peer = sv[1];
      OK();
      break;
    }
    case EV_CF_TCP: {
      struct sockaddr_in sa;
      int l = ev_cf_listener(&sa);
      e = ev_cf_aco(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (eventer_aco_connect(e, (struct sockaddr *)&sa, sizeof(sa), NULL) != 0) {
        ERR();
      } else {
        struct timeval ms = {0, 1000};
        while ((peer = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0)
          eventer_aco_sleep(&ms);
        OK();
      }
      close(l);
      break;
    }
    case EV_CF_WRITE:
      rv = eventer_aco_write(e, s->text, strlen(s->text), tp);
      if (rv < 0) ERR();
      else snprintf(out, EV_CF_RESULT_LEN, "n=%d", rv);
      break;
    case EV_CF_READ: {
      char buf[64];
      int want = s->n < (int)sizeof(buf) ? s->n : (int)sizeof(buf) - 1;
      rv = eventer_aco_read(e, buf, (size_t)want, tp);
      if (rv < 0) ERR();
      else if (rv == 0) snprintf(out, EV_CF_RESULT_LEN, "eof");
      else snprintf(out, EV_CF_RESULT_LEN, "data=%.*s", rv, buf);
      break;
    }
    case EV_CF_PEER_WRITE:
      rv = (int)write(peer, s->text, strlen(s->text));
      if (rv < 0) ERR(); else OK();
      break;
    case EV_CF_PEER_CLOSE:
      close(peer);
      peer = -1;
      OK();
      break;
    case EV_CF_PEER_RESET: {
      struct linger lg = {1, 0};
      setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      close(peer);
      peer = -1;
      OK();
      break;
    }
    case EV_CF_SLEEP: {
      struct timeval d = {s->n / 1000, (s->n % 1000) * 1000};
      if (eventer_aco_sleep(&d) != 0) ERR(); else OK();
      break;
    }
    case EV_CF_YIELD:
      if (eventer_aco_yield() != 0) ERR(); else OK();
      break;
    case EV_CF_ASYNCH: {
      int ms = s->n; /* on our stack: safe, we wait until the work is done */
      eventer_aco_simple_asynch(ev_cf_sleep_work, &ms);
      OK();
      break;
    }
    case EV_CF_CANCEL:
      if (eventer_aco_cancel(eventer_aco_self()) != 0) ERR(); else OK();
      break;
    case EV_CF_CLOSE:
      if (eventer_aco_close(e) != 0) ERR(); else OK();
      break;
    case EV_CF_CONNECT_REFUSED: {
      struct sockaddr_in sa;
      close(ev_cf_listener(&sa)); /* a port nobody listens on now */
      eventer_aco_t c = ev_cf_aco(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (eventer_aco_connect(c, (struct sockaddr *)&sa, sizeof(sa), tp) != 0) ERR();
      else OK();
      eventer_aco_close(c);
      eventer_aco_free(c);
      break;
    }
    case EV_CF_ACCEPT: {
      struct sockaddr_in sa;
      eventer_aco_t l = ev_cf_aco(ev_cf_listener(&sa));
      rv = eventer_aco_accept(l, NULL, NULL, tp);
      if (rv < 0) ERR();
      else {
        close(rv);
        OK();
      }
      eventer_aco_close(l);
      eventer_aco_free(l);
      break;
    }
    default:
      snprintf(out, EV_CF_RESULT_LEN, "unknown step");
    }
  }
  if (e) eventer_aco_free(e);
  if (peer >= 0) close(peer);
  __atomic_store_n(r->done, 1, __ATOMIC_RELEASE);
  free(r);
}

int ev_cf_run(const ev_cf_step_t *steps, int n, char *results, int *done) {
  ev_cf_run_t *r = malloc(sizeof(*r));
  if (!r) return -1;
  *r = (ev_cf_run_t){steps, n, results, done};
  eventer_aco_start(ev_cf_main, r);
  return 0;
}
