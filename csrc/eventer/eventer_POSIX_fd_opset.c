/*
 * eventer_POSIX_fd_opset.c - the default fd opset: plain syscalls, with
 * the interest needed to progress reported in *mask on EAGAIN.
 *
 * On a socket, read and write are made as recv(2) and send(2) with no
 * flags: POSIX defines them as the same calls (SIGPIPE included), and
 * Linux serves them past the file layer's checks and notifications, a few
 * percent of a small read or write.  The first call on an fd that is no
 * socket fails with ENOTSOCK before anything happens and is made again as
 * read(2) or write(2), and a table by fd number remembers it until a new
 * event is made for that fd.  A zero-length call is read(2) or write(2)
 * on any fd: recv(2) with no room is not read(2)'s (it takes a pending
 * datagram whole, and fails with EAGAIN on an empty socket, where read(2)
 * returns 0 at once).  Coroutines' reads and writes on this opset make
 * the same calls (eventer_aco_fd.c).
 */
#include "eventer_impl.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static int would_block(void) { return errno == EAGAIN || errno == EWOULDBLOCK; }

/* fds below POSIX_HINT_FDS found to be no socket.  A hint: either call
 * is right on a socket, so a stale entry costs time, never correctness;
 * a new event on an fd clears it.  Relaxed byte loads and stores: any
 * thread may use an event; pages of the table are touched only for the
 * fds that are used. */
#define POSIX_HINT_FDS 65536
static unsigned char posix_not_sock[POSIX_HINT_FDS];

static inline int not_sock(int fd) {
  return (unsigned)fd < POSIX_HINT_FDS &&
         __atomic_load_n(&posix_not_sock[fd], __ATOMIC_RELAXED);
}
static inline void set_not_sock(int fd) {
  if ((unsigned)fd < POSIX_HINT_FDS)
    __atomic_store_n(&posix_not_sock[fd], 1, __ATOMIC_RELAXED);
}
void ev_posix_fd_fresh(int fd) {
  if ((unsigned)fd < POSIX_HINT_FDS &&
      __atomic_load_n(&posix_not_sock[fd], __ATOMIC_RELAXED))
    __atomic_store_n(&posix_not_sock[fd], 0, __ATOMIC_RELAXED);
}
int ev_posix_fd_not_sock(int fd) { return not_sock(fd); }

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

/* read(2)/write(2) (wr), made as recv(2)/send(2) on a socket, EINTR
 * retried; errno as the call that answered left it */
static ssize_t posix_rw(int fd, void *buf, size_t len, int wr) {
  ssize_t rv;
  int sock = len && !not_sock(fd), saved = errno;
  for (;;) {
    if (sock)
      rv = wr ? send(fd, buf, len, 0) : recv(fd, buf, len, 0);
    else
      rv = wr ? write(fd, buf, len) : read(fd, buf, len);
    if (rv >= 0) break;
    if (errno == EINTR) continue;
    if (!sock || errno != ENOTSOCK) break;
    set_not_sock(fd);
    errno = saved; /* a call that then succeeds leaves errno alone */
    sock = 0;
  }
  return rv;
}

static int posix_read(int fd, void *buf, size_t len, int *mask,
                      void *closure) {
  (void)closure;
  ssize_t rv = posix_rw(fd, buf, len, 0);
  if (rv < 0 && would_block() && mask) *mask = EVENTER_READ | EVENTER_EXCEPTION;
  return (int)rv;
}

static int posix_write(int fd, const void *buf, size_t len, int *mask,
                       void *closure) {
  (void)closure;
  ssize_t rv = posix_rw(fd, (void *)buf, len, 1);
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
