/*
 * eventer_sys.h - read(2), write(2) and send(2) made on a loop's thread
 * without the C library's wrappers.  (Internal.)
 *
 * In a process with more than one thread, glibc makes every read, write
 * and send a thread-cancellation point: it switches the thread to
 * asynchronous cancellation and back around the system call, two atomic
 * read-modify-writes (35-45 ns a call on the machine this was measured
 * on, about a fifth of a read that finds EAGAIN).  A loop's thread is
 * never cancelled, so the eventer's hot reads and writes (a coroutine's on
 * the POSIX opset, the HTTP engine's on its sockets) enter the kernel
 * directly: the result is the wrapper's, the count or -1 with errno, and
 * the calls are not cancellation points.  Sanitizer builds, and other
 * architectures, keep the C library's calls (the sanitizers' interceptors
 * check the buffers and see the descriptors through them).
 */
#ifndef EVENTER_SYS_H
#define EVENTER_SYS_H

#include <errno.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define EV_SYS_LIBC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define EV_SYS_LIBC 1
#endif
#endif
#if !defined(EV_SYS_LIBC) && !defined(__x86_64__) && !defined(__aarch64__)
#define EV_SYS_LIBC 1
#endif

#ifndef EV_SYS_LIBC
/* the kernel's return: a count, or -errno */
static inline __attribute__((always_inline)) long ev_sys6(long nr, long a,
                                                          long b, long c,
                                                          long d, long e,
                                                          long f) {
#if defined(__x86_64__)
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  long r;
  __asm__ volatile("syscall"
                   : "=a"(r)
                   : "0"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8),
                     "r"(r9)
                   : "rcx", "r11", "memory");
  return r;
#else /* __aarch64__ */
  register long x8 __asm__("x8") = nr;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  register long x5 __asm__("x5") = f;
  __asm__ volatile("svc #0"
                   : "+r"(x0)
                   : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                   : "memory");
  return x0;
#endif
}

static inline __attribute__((always_inline)) ssize_t ev_sys_result(long r) {
  if (__builtin_expect((unsigned long)r > -4096UL, 0)) {
    errno = (int)-r;
    return -1;
  }
  return r;
}

static inline __attribute__((always_inline)) ssize_t ev_sys_read(
    int fd, void *buf, size_t len) {
  return ev_sys_result(ev_sys6(SYS_read, fd, (long)buf, (long)len, 0, 0, 0));
}

static inline __attribute__((always_inline)) ssize_t ev_sys_write(
    int fd, const void *buf, size_t len) {
  return ev_sys_result(ev_sys6(SYS_write, fd, (long)buf, (long)len, 0, 0, 0));
}

static inline __attribute__((always_inline)) ssize_t ev_sys_send(
    int fd, const void *buf, size_t len, int flags) {
  return ev_sys_result(
      ev_sys6(SYS_sendto, fd, (long)buf, (long)len, flags, 0, 0));
}
#else
#define ev_sys_read(fd, buf, len) read(fd, buf, len)
#define ev_sys_write(fd, buf, len) write(fd, buf, len)
#define ev_sys_send(fd, buf, len, flags) send(fd, buf, len, flags)
#endif

#endif /* EVENTER_SYS_H */
