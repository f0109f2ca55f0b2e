/*
 * test_eventer_thread.c - eventer_run_in_thread: the callback runs on a
 * thread of its own with blocking I/O until it returns 0, then the event
 * is freed; a registered event is taken out of its loop first; misuse is
 * refused.  Also run under ThreadSanitizer.
 */
#include "evtest.h"

#include <fcntl.h>

typedef struct {
  int calls, bytes, last_mask, on_loop, blocking;
  pthread_t thread;
} rec_t;

/* Reads the pipe (blocking) until EOF; asks for READ each time. */
static int reader_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)now;
  rec_t *r = c;
  r->calls++;
  r->last_mask = mask;
  r->thread = pthread_self();
  r->on_loop = eventer_in_loop();
  r->blocking = !(fcntl(eventer_get_fd(e), F_GETFL) & O_NONBLOCK);
  char buf[64];
  ssize_t n = read(eventer_get_fd(e), buf, sizeof(buf));
  if (n <= 0) {
    close(eventer_get_fd(e));
    return 0; /* done: the thread frees e */
  }
  __atomic_add_fetch(&r->bytes, (int)n, __ATOMIC_RELEASE);
  return EVENTER_READ | EVENTER_EXCEPTION; /* EXCEPTION is dropped */
}

static int unused_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  return 0;
}

static void test_runs_until_zero(void) {
  ev_setup_external(1);
  int p[2];
  T_EQ(pipe(p), 0);
  eventer_set_fd_nonblocking(p[0]);
  static rec_t r;
  memset(&r, 0, sizeof(r));
  eventer_t e = eventer_alloc_fd(reader_cb, &r, p[0], EVENTER_READ);
  T_EQ(eventer_run_in_thread(e, EVENTER_READ), 0);
  for (int i = 0; i < 5; i++) {
    T_EQ(write(p[1], "hello", 5), 5);
    uint64_t end = t_now_us() + 5000000;
    while (__atomic_load_n(&r.bytes, __ATOMIC_ACQUIRE) < 5 * (i + 1)) {
      T_CHECK(t_now_us() < end);
      usleep(1000);
    }
  }
  close(p[1]);
  /* eventer_fini waits for the thread to be gone, so the count is exact */
  ev_teardown();
  T_GE(r.calls, 6);
  T_EQ(r.last_mask, EVENTER_READ);
  T_CHECK(!pthread_equal(r.thread, pthread_self()));
  T_EQ(r.on_loop, 0);
  T_EQ(r.blocking, 1);
}

static void test_registered_event(void) {
  ev_setup_external(1);
  int p[2];
  T_EQ(pipe(p), 0);
  static rec_t r;
  memset(&r, 0, sizeof(r));
  eventer_t e = eventer_alloc_fd(reader_cb, &r, p[0], EVENTER_READ);
  T_EQ(eventer_add_ex(e), 0);
  /* on its owner loop: taken out of the loop and run on the thread */
  T_EQ(eventer_run_in_thread(e, EVENTER_READ), 0);
  T_CHECK(eventer_find_fd(p[0]) == NULL);
  T_EQ(write(p[1], "x", 1), 1);
  close(p[1]);
  ev_teardown();
  T_GE(r.calls, 2);
}

static void *other_thread(void *arg) {
  eventer_t e = arg;
  errno = 0;
  long rc = eventer_run_in_thread(e, EVENTER_READ);
  return (void *)(rc == -1 && errno == EBUSY ? 1l : 0l);
}

static void test_misuse(void) {
  ev_setup_external(1);
  T_ERRNO(eventer_run_in_thread(NULL, EVENTER_READ), EINVAL);
  int p[2];
  T_EQ(pipe(p), 0);
  eventer_t e = eventer_alloc_fd(unused_cb, NULL, p[0], EVENTER_READ);
  T_ERRNO(eventer_run_in_thread(e, 0), EINVAL);
  T_EQ(eventer_add_ex(e), 0);
  /* registered, and the caller is not its loop: refused, e untouched */
  pthread_t t;
  void *ok;
  T_EQ(pthread_create(&t, NULL, other_thread, e), 0);
  T_EQ(pthread_join(t, &ok), 0);
  T_CHECK(ok == (void *)1l);
  T_CHECK(eventer_find_fd(p[0]) == e);
  eventer_free(eventer_remove(e));
  close(p[0]);
  close(p[1]);
  ev_teardown();
}

T_MAIN({"runs_until_zero", test_runs_until_zero},
       {"registered_event", test_registered_event},
       {"misuse", test_misuse})
