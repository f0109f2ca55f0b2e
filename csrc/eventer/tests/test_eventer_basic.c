/*
 * test_eventer_basic.c - events as objects (allocation, references,
 * accessors, copies), argument validation, opsets, callback names, log
 * streams, and the fatal paths of reference misuse.
 */
#include "evtest.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

static int nop_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  return 0;
}

static void test_alloc_ref_copy(void) {
  int64_t base = eventer_allocations_current();
  int64_t total = eventer_allocations_total();
  int x;
  eventer_t e = eventer_alloc_fd(nop_cb, &x, 7, EVENTER_READ);
  T_CHECK(e);
  T_EQ(eventer_allocations_current(), base + 1);
  T_EQ(eventer_allocations_total(), total + 1);
  T_EQ(eventer_get_fd(e), 7);
  T_EQ(eventer_get_mask(e), EVENTER_READ);
  T_PTR_EQ(eventer_get_closure(e), &x);
  T_CHECK(eventer_get_callback(e) == nop_cb);
  T_PTR_EQ(eventer_get_fd_opset(e), eventer_POSIX_fd_opset);

  eventer_t c = eventer_alloc_copy(e);
  T_CHECK(c && c != e);
  T_EQ(eventer_get_fd(c), 7);
  T_EQ(eventer_get_mask(c), EVENTER_READ);
  T_PTR_EQ(eventer_get_closure(c), &x);
  eventer_set_mask(c, EVENTER_WRITE);
  eventer_set_closure(c, NULL);
  T_EQ(eventer_get_mask(e), EVENTER_READ); /* copies are independent */
  T_PTR_EQ(eventer_get_closure(e), &x);
  T_EQ(eventer_allocations_current(), base + 2);

  eventer_ref(e);
  eventer_deref(e);
  T_EQ(eventer_allocations_current(), base + 2); /* still one reference */
  eventer_free(e);
  eventer_free(c);
  T_EQ(eventer_allocations_current(), base);

  struct timeval w = {123, 456};
  eventer_t t = eventer_alloc_timer(nop_cb, NULL, &w);
  T_EQ(eventer_get_mask(t), EVENTER_TIMER);
  T_EQ(eventer_get_whence(t).tv_sec, 123);
  T_EQ(eventer_get_whence(t).tv_usec, 456);
  T_EQ(eventer_get_fd(t), -1);
  eventer_free(t);
  eventer_t r = eventer_alloc_recurrent(nop_cb, NULL);
  T_EQ(eventer_get_mask(r), EVENTER_RECURRENT);
  eventer_free(r);
  eventer_t a = eventer_alloc_asynch(nop_cb, NULL);
  T_EQ(eventer_get_mask(a), EVENTER_ASYNCH);
  eventer_free(a);
  eventer_t b = eventer_alloc();
  T_EQ(eventer_get_fd(b), -1);
  T_EQ(eventer_get_mask(b), 0);
  eventer_free(b);
  T_EQ(eventer_allocations_current(), base);
}

static void test_masks_are_libmtev_values(void) {
  T_EQ(EVENTER_READ, 0x01);
  T_EQ(EVENTER_WRITE, 0x02);
  T_EQ(EVENTER_EXCEPTION, 0x04);
  T_EQ(EVENTER_TIMER, 0x08);
  T_EQ(EVENTER_ASYNCH_WORK, 0x10);
  T_EQ(EVENTER_ASYNCH_CLEANUP, 0x20);
  T_EQ(EVENTER_ASYNCH_COMPLETE, 0x30);
  T_EQ(EVENTER_ASYNCH, 0x30);
  T_EQ(EVENTER_RECURRENT, 0x80);
}

static void test_argument_validation(void) {
  T_CHECK(eventer_alloc_fd(NULL, NULL, 3, EVENTER_READ) == NULL);
  T_EQ(errno, EINVAL);
  T_CHECK(eventer_alloc_fd(nop_cb, NULL, -1, EVENTER_READ) == NULL);
  T_CHECK(eventer_alloc_fd(nop_cb, NULL, 3, EVENTER_TIMER) == NULL);
  T_CHECK(eventer_alloc_timer(NULL, NULL, NULL) == NULL);
  T_CHECK(eventer_alloc_copy(NULL) == NULL);
  T_ERRNO(eventer_add_ex(NULL), EINVAL);
  T_CHECK(eventer_remove(NULL) == NULL);
  T_EQ(errno, EINVAL);

  /* before init: nothing to add to */
  eventer_t t = eventer_alloc_timer(nop_cb, NULL, NULL);
  T_ERRNO(eventer_add_ex(t), ENXIO);
  eventer_free(t);
  T_ERRNO(eventer_run_once(NULL, NULL), EINVAL);
  eventer_task_t task = {0};
  T_ERRNO(eventer_task_post(&task), EINVAL);
  eventer_timer_node_t node = EVENTER_TIMER_NODE_INIT(NULL);
  T_ERRNO(eventer_timer_node_add(&node, NULL), EINVAL);
  T_EQ(eventer_timer_node_remove(&node), 0); /* idempotent when unqueued */
  T_ERRNO(eventer_loop_attach(0), ENXIO);
  T_ERRNO(eventer_loop_pollfd(), EINVAL);
  T_EQ(eventer_next_timeout_us(), -2);
  T_CHECK(eventer_step_emit() == NULL);
  T_CHECK(!eventer_in_loop());

  /* libmtev warns about an unknown key and goes on; the _ex form refuses */
  T_EQ(eventer_impl_propset("no_such_key", "1"), 0);
  T_ERRNO(eventer_impl_propset_ex("no_such_key", "1"), ENOENT);
  T_ERRNO(eventer_impl_propset("concurrency", "zero"), EINVAL);
  T_ERRNO(eventer_impl_propset("concurrency", "0"), EINVAL);
  T_ERRNO(eventer_callback_set_foreign(NULL), EINVAL);

  ev_setup_external(2);
  T_ERRNO(eventer_init(), EALREADY);
  T_ERRNO(eventer_impl_propset("concurrency", "3"), EBUSY);
  T_ERRNO(eventer_loop_attach(1), EBUSY); /* this thread drives loop 0 */
  T_ERRNO(eventer_loop_attach(7), EINVAL);
  T_EQ(eventer_loop_concurrency(), 2);
  T_CHECK(eventer_in_loop());
  T_CHECK(eventer_loop_pollfd() >= 0);
  T_STR_EQ(eventer_get_thread_name(), "e:default/0");
  T_ERRNO(eventer_update_ex(NULL, EVENTER_READ), EINVAL);
  eventer_t f = eventer_alloc_fd(nop_cb, NULL, 0, EVENTER_READ);
  T_ERRNO(eventer_update_ex(f, EVENTER_TIMER), EINVAL);
  T_CHECK(eventer_remove(f) == NULL); /* not registered */
  T_EQ(errno, ENOENT);
  eventer_free(f);
  struct timeval bad = {0, 2000000};
  T_ERRNO(eventer_run_once(NULL, &bad), EINVAL);
  T_CHECK(eventer_in(nop_cb, NULL, bad) == NULL);
  T_EQ(errno, EINVAL);
  T_ERRNO(eventer_timer_node_add(&node, NULL), EINVAL); /* fire is NULL */
  eventer_timer_node_t n2 = EVENTER_TIMER_NODE_INIT(NULL);
  T_ERRNO(eventer_timer_node_add(&n2, &bad), EINVAL);
  ev_teardown();
}

static int holder_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)c, (void)now;
  /* wrong: the eventer owns this reference while e is registered, and
   * returning 0 makes the loop drop it again */
  eventer_free(e);
  return 0;
}

static void test_timer_cb_frees_itself_child(void *arg) {
  (void)arg;
  ev_setup_external(1);
  eventer_name_callback("holder_cb", holder_cb);
  eventer_t e = eventer_alloc_timer(holder_cb, NULL, NULL);
  T_EQ(eventer_add_ex(e), 0);
  ev_turn();
}

static void test_free_registered_child(void *arg) {
  (void)arg;
  ev_setup_external(1);
  eventer_t e = eventer_alloc_recurrent(nop_cb, NULL);
  T_EQ(eventer_add_ex(e), 0);
  eventer_free(e); /* the eventer's reference: the event is registered */
}

static void test_reference_misuse_is_fatal(void) {
  t_expect_death(test_timer_cb_frees_itself_child, NULL,
                 "holder_cb) was dereferenced more often than referenced");
  t_expect_death(test_free_registered_child, NULL,
                 "an event is freed only when no loop, queue or job holds it");
}

/* ---- opsets ---------------------------------------------------------------- */

static int fake_reads;
static int fake_read(int fd, void *buf, size_t len, int *mask, void *closure) {
  (void)fd, (void)buf, (void)len, (void)closure;
  fake_reads++;
  *mask = EVENTER_WRITE;
  errno = EAGAIN;
  return -1;
}

static void test_posix_and_custom_opsets(void) {
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  T_EQ(eventer_set_fd_nonblocking(sv[0]), 0);
  T_CHECK(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
  T_EQ(eventer_set_fd_blocking(sv[0]), 0);
  T_CHECK(!(fcntl(sv[0], F_GETFL) & O_NONBLOCK));
  T_EQ(eventer_set_fd_nonblocking(sv[0]), 0);
  T_ERRNO(eventer_set_fd_nonblocking(-1), EBADF);

  eventer_t e = eventer_alloc_fd(nop_cb, NULL, sv[0], EVENTER_READ);
  char buf[16];
  int mask = 0;
  T_ERRNO(eventer_read(e, buf, sizeof(buf), &mask), EAGAIN);
  T_EQ(mask, EVENTER_READ | EVENTER_EXCEPTION);
  T_EQ(write(sv[1], "hi", 2), 2);
  T_EQ(eventer_read(e, buf, sizeof(buf), &mask), 2);
  T_EQ(eventer_write(e, "yo", 2, &mask), 2);
  T_EQ(read(sv[1], buf, sizeof(buf)), 2);

  /* eventer_read goes through e's current opset, whatever it is */
  struct _fd_opset fake = *eventer_POSIX_fd_opset;
  fake.read = fake_read;
  fake.name = "fake";
  eventer_set_fd_opset(e, &fake);
  eventer_set_fd_opset_ctx(e, &fake_reads);
  T_PTR_EQ(eventer_get_fd_opset_ctx(e), &fake_reads);
  T_ERRNO(eventer_read(e, buf, sizeof(buf), &mask), EAGAIN);
  T_EQ(fake_reads, 1);
  T_EQ(mask, EVENTER_WRITE);
  T_CHECK(eventer_fd_opset_get_read(eventer_get_fd_opset(e)) == fake_read);
  T_CHECK(eventer_fd_opset_get_write(&fake) == eventer_POSIX_fd_opset->write);
  eventer_set_fd_opset(e, eventer_POSIX_fd_opset);

  /* accept: EAGAIN mask on a listening socket with no connection */
  int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  /* an address of just the family autobinds to a unique abstract name */
  T_EQ(bind(ls, (struct sockaddr *)&addr, sizeof(sa_family_t)), 0);
  T_EQ(listen(ls, 4), 0);
  eventer_t le = eventer_alloc_fd(nop_cb, NULL, ls, EVENTER_READ);
  T_ERRNO(eventer_accept(le, NULL, NULL, &mask), EAGAIN);
  T_EQ(mask, EVENTER_READ | EVENTER_EXCEPTION);
  T_EQ(eventer_close(le, &mask), 0);
  eventer_free(le);

  T_EQ(eventer_close(e, &mask), 0);
  T_EQ(mask, 0);
  close(sv[1]);
  eventer_free(e);
}

static void test_callback_names(void) {
  T_EQ(eventer_name_callback("nop", nop_cb), 0);
  T_STR_EQ(eventer_name_for_callback(nop_cb), "nop");
  T_CHECK(eventer_callback_for_name("nop") == nop_cb);
  T_CHECK(eventer_callback_for_name("nope") == NULL);
  T_EQ(eventer_name_callback("nop2", nop_cb), 0); /* rename */
  T_STR_EQ(eventer_name_for_callback(nop_cb), "nop2");
  T_CHECK(strncmp(eventer_name_for_callback(holder_cb), "cb@", 3) == 0 ||
          strcmp(eventer_name_for_callback(holder_cb), "holder_cb") == 0);
}

/* ---- log streams --------------------------------------------------------------- */

static char logged[4096];
static void capture(mtev_log_stream_t ls, const char *line, size_t len,
                    void *closure) {
  (void)closure;
  size_t used = strlen(logged);
  snprintf(logged + used, sizeof(logged) - used, "<%s>%.*s",
           mtev_log_stream_get_name(ls), (int)len, line);
}

static int evaluated;
static int side_effect(void) { return ++evaluated; }

static void test_log_streams(void) {
  logged[0] = 0;
  mtev_log_set_writer(capture, NULL);
  mtevL(mtev_error, "e%d\n", 1);
  mtevL(mtev_notice, "n\n");
  mtevL(mtev_debug, "d%d\n", side_effect()); /* off: not evaluated */
  T_EQ(evaluated, 0);
  T_STR_EQ(logged, "<error>e1\n<notice>n\n");
  T_CHECK(!mtev_log_stream_is_enabled(eventer_deb));
  T_PTR_EQ(mtev_log_stream_find("debug/eventer"), eventer_deb);
  T_CHECK(mtev_log_stream_find("nope") == NULL);
  T_EQ(mtev_log_stream_set_enabled(mtev_debug, 1), 0);
  mtevL(mtev_debug, "d%d\n", side_effect());
  T_EQ(evaluated, 1);
  T_EQ(mtev_log_stream_set_enabled(mtev_debug, 0), 0);
  T_ERRNO(mtev_log_stream_set_enabled(NULL, 1), EINVAL);

  /* a long line is not truncated */
  logged[0] = 0;
  char big[1500];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  mtevL(mtev_error, "%s", big);
  T_EQ(strlen(logged), strlen("<error>") + sizeof(big) - 1);

  /* the eventer debug stream: off, then on by environment at init, or by
   * a call */
  T_EQ(setenv("EVENTER_DEBUG", "1", 1), 0);
  ev_setup_external(1);
  T_CHECK(mtev_log_stream_is_enabled(eventer_deb));
  logged[0] = 0;
  eventer_t t = eventer_alloc_timer(nop_cb, NULL, NULL);
  T_EQ(eventer_add_ex(t), 0);
  ev_turn();
  T_CHECK(strstr(logged, "<debug/eventer>") != NULL);
  ev_teardown();
  unsetenv("EVENTER_DEBUG");
  mtev_log_stream_set_enabled(eventer_deb, 0);
  ev_setup_external(1);
  T_CHECK(!mtev_log_stream_is_enabled(eventer_deb));
  ev_teardown();
  mtev_log_set_writer(NULL, NULL);
}

static void fatal_child(void *arg) {
  (void)arg;
  mtev_log_set_writer(capture, NULL); /* fatal still reaches stderr */
  mtevFatal(mtev_error, "the sky fell: %d\n", 42);
}

static void test_fatal_log(void) {
  const char *out = t_expect_death(fatal_child, NULL, "[error] the sky fell: 42");
  T_CHECK(strstr(out, "fatal at") != NULL);
}

T_MAIN({"alloc_ref_copy", test_alloc_ref_copy},
       {"masks_are_libmtev_values", test_masks_are_libmtev_values},
       {"argument_validation", test_argument_validation},
       {"reference_misuse_is_fatal", test_reference_misuse_is_fatal},
       {"posix_and_custom_opsets", test_posix_and_custom_opsets},
       {"callback_names", test_callback_names},
       {"log_streams", test_log_streams},
       {"fatal_log", test_fatal_log})
