/* listener_shim.c - see listener_shim.h */
#include "listener_shim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mtev_http.h"

struct mtev_acceptor_closure_t {
  struct sockaddr_storage remote;
  void *ctx;
  void (*ctx_free)(void *);
};

static int64_t shim_live;
static eventer_t shim_lev;
static int shim_fd = -1;
static eventer_func_t shim_cb;

void *mtev_acceptor_closure_ctx(mtev_acceptor_closure_t *ac) {
  return ac ? ac->ctx : NULL;
}
void mtev_acceptor_closure_set_ctx(mtev_acceptor_closure_t *ac, void *ctx,
                                   void (*freefunc)(void *)) {
  if (!ac) return;
  if (ac->ctx && ac->ctx_free && ac->ctx != ctx) ac->ctx_free(ac->ctx);
  ac->ctx = ctx;
  ac->ctx_free = freefunc;
}
struct sockaddr *mtev_acceptor_closure_remote(mtev_acceptor_closure_t *ac) {
  return ac ? (struct sockaddr *)&ac->remote : NULL;
}
void mtev_acceptor_closure_free(mtev_acceptor_closure_t *ac) {
  if (!ac) return;
  if (ac->ctx && ac->ctx_free) ac->ctx_free(ac->ctx);
  free(ac);
  __atomic_sub_fetch(&shim_live, 1, __ATOMIC_RELAXED);
}
int64_t shim_live_closures(void) {
  return __atomic_load_n(&shim_live, __ATOMIC_RELAXED);
}

static int shim_accept(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)mask, (void)closure, (void)now;
  for (;;) {
    mtev_acceptor_closure_t *ac = calloc(1, sizeof(*ac));
    if (!ac) return EVENTER_READ | EVENTER_EXCEPTION;
    socklen_t len = sizeof(ac->remote);
    int m = 0;
    int fd = eventer_accept(e, (struct sockaddr *)&ac->remote, &len, &m);
    if (fd < 0) {
      free(ac);
      return EVENTER_READ | EVENTER_EXCEPTION;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    __atomic_add_fetch(&shim_live, 1, __ATOMIC_RELAXED);
    eventer_t ne = eventer_alloc_fd(shim_cb, ac, fd,
                                    EVENTER_READ | EVENTER_EXCEPTION);
    /* the first call comes at once (not on the first byte), so that the
     * engine's idle timer also covers a client that never sends */
    if (!ne || eventer_trigger_ex(ne, EVENTER_READ | EVENTER_EXCEPTION) != 0) {
      close(fd);
      if (ne) eventer_free(ne);
      mtev_acceptor_closure_free(ac);
    }
  }
}

int shim_listen(const char *type) {
  shim_cb = eventer_callback_for_name(type);
  if (!shim_cb) return -1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof(a);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 1024) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
    close(fd);
    return -1;
  }
  shim_fd = fd;
  shim_lev = eventer_alloc_fd(shim_accept, NULL, fd,
                              EVENTER_READ | EVENTER_EXCEPTION);
  if (!shim_lev || eventer_add_ex(shim_lev) != 0) {
    close(fd);
    return -1;
  }
  return ntohs(a.sin_port);
}

void shim_stop(void) {
  /* after eventer_fini, which dropped the listening event */
  if (shim_fd >= 0) close(shim_fd);
  shim_fd = -1;
  shim_lev = NULL;
}
