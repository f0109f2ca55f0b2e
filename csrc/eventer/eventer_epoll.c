/*
 * eventer_epoll.c - the epoll backend: one epoll set and one eventfd per
 * loop.  The rest of the eventer talks to it only through the ev_poll_*
 * functions declared in eventer_impl.h (Redis ae_epoll.c's shape).
 *
 * Level-triggered: a callback that leaves data unread is called again on
 * the next pass, which is what libmtev callbacks expect.
 */
#include "eventer_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* struct ev_poll and EV_POLL_BATCH (results per epoll_wait: more ready
 * fds than this are reported by the next wait, level-triggered) are in
 * eventer_impl.h, for the loop's inline ev_poll_result. */

static uint32_t to_epoll(int mask) {
  uint32_t ev = 0;
  if (mask & EVENTER_READ) ev |= EPOLLIN;
  if (mask & EVENTER_WRITE) ev |= EPOLLOUT;
  /* EXCEPTION needs no flag: EPOLLERR and EPOLLHUP are always reported. */
  if (mask & EVENTER_EXCEPTION) ev |= EPOLLPRI;
  return ev;
}

int ev_poll_open(ev_loop_t *l) {
  struct ev_poll *p = calloc(1, sizeof(*p));
  if (!p) return -1;
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0) goto fail;
  p->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (p->wakefd < 0) goto fail_ep;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_POLL_WAKE_TOKEN};
  if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wakefd, &ev) != 0) goto fail_wake;
  l->poll = p;
  return 0;
fail_wake:
  close(p->wakefd);
fail_ep:
  close(p->epfd);
fail: {
  int saved = errno;
  free(p);
  errno = saved;
  return -1;
}
}

void ev_poll_close(ev_loop_t *l) {
  if (!l->poll) return;
  close(l->poll->wakefd);
  close(l->poll->epfd);
  free(l->poll);
  l->poll = NULL;
}

int ev_poll_fd(ev_loop_t *l) { return l->poll->epfd; }

int ev_poll_add(ev_loop_t *l, int fd, int mask, uint64_t token) {
  struct epoll_event ev = {.events = to_epoll(mask), .data.u64 = token};
  return epoll_ctl(l->poll->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int ev_poll_mod(ev_loop_t *l, int fd, int mask, uint64_t token) {
  struct epoll_event ev = {.events = to_epoll(mask), .data.u64 = token};
  return epoll_ctl(l->poll->epfd, EPOLL_CTL_MOD, fd, &ev);
}

int ev_poll_del(ev_loop_t *l, int fd) {
  /* The event argument must be non-NULL for kernels before 2.6.9. */
  struct epoll_event ev = {0};
  int rv = epoll_ctl(l->poll->epfd, EPOLL_CTL_DEL, fd, &ev);
  /* The user may already have closed the fd (EBADF), or it was never
   * added because the close happened first (ENOENT): either way it is no
   * longer in the set, which is all a delete promises. */
  if (rv != 0 && (errno == EBADF || errno == ENOENT)) rv = 0;
  return rv;
}

int ev_poll_wait(ev_loop_t *l, int timeout_ms) {
  int n = epoll_wait(l->poll->epfd, l->poll->results, EV_POLL_BATCH,
                     timeout_ms);
  if (n < 0) {
    /* EINTR (a signal, a debugger) just ends the wait early; anything else
     * means the epoll fd itself is broken, which no caller can fix. */
    EV_ASSERT(errno == EINTR, "epoll_wait only fails with EINTR on a valid"
                              " epoll fd");
    return 0;
  }
  return n;
}


void ev_poll_wake(ev_loop_t *l) {
  uint64_t one = 1;
  /* EAGAIN means the counter is saturated: the loop is already woken. */
  while (write(l->poll->wakefd, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
}

void ev_poll_clear_wake(ev_loop_t *l) {
  uint64_t v;
  while (read(l->poll->wakefd, &v, sizeof(v)) < 0 && errno == EINTR) {
  }
}
