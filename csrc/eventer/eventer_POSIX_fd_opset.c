/*
 * eventer_POSIX_fd_opset.c - the default fd opset: plain syscalls, with
 * the interest needed to progress reported in *mask on EAGAIN.
 */
#include "eventer_impl.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static int would_block(void) { return errno == EAGAIN || errno == EWOULDBLOCK; }

static int posix_accept(int fd, struct sockaddr *addr, socklen_t *len,
                        int *mask, void *closure) {
  (void)closure;
  int rv;
  do {
    rv = accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (rv < 0 && errno == EINTR);
  if (rv < 0 && would_block() && mask) *mask = EVENTER_READ | EVENTER_EXCEPTION;
  return rv;
}

static int posix_read(int fd, void *buf, size_t len, int *mask,
                      void *closure) {
  (void)closure;
  ssize_t rv;
  do {
    rv = read(fd, buf, len);
  } while (rv < 0 && errno == EINTR);
  if (rv < 0 && would_block() && mask) *mask = EVENTER_READ | EVENTER_EXCEPTION;
  return (int)rv;
}

static int posix_write(int fd, const void *buf, size_t len, int *mask,
                       void *closure) {
  (void)closure;
  ssize_t rv;
  do {
    rv = write(fd, buf, len);
  } while (rv < 0 && errno == EINTR);
  if (rv < 0 && would_block() && mask) *mask = EVENTER_WRITE | EVENTER_EXCEPTION;
  return (int)rv;
}

static int posix_close(int fd, int *mask, void *closure) {
  (void)closure;
  if (mask) *mask = 0;
  /* No retry on EINTR: on Linux the fd is released even then, and a retry
   * could close an fd another thread just received. */
  return close(fd);
}

static struct _fd_opset posix_opset = {
    .accept = posix_accept,
    .read = posix_read,
    .write = posix_write,
    .close = posix_close,
    .name = "POSIX",
};

eventer_fd_opset_t eventer_POSIX_fd_opset = &posix_opset;
