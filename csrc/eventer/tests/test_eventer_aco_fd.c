/*
 * test_eventer_aco_fd.c - aco fd events: the read that goes straight to
 * the readiness wait after a write or a short read (and when it must not:
 * an opset that keeps data of its own, a timeout of {0,0}, a pending
 * cancel, an fd epoll refuses), the state an aco event keeps in itself
 * (what an add as another kind of event may not destroy, the opset
 * context a conversion leaves alone, copies, going back to classic,
 * default timeouts made on demand), and an event freed by its owner while
 * a coroutine's wait on it is still ending.
 */
#include "evtest.h"

#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "eventer_SSL_fd_opset.h"
#include "eventer_aco.h"
#include "eventer_aco_impl.h"

static void sockpair(int sv[2]) {
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
       0);
}

static int dummy_cb(eventer_t e, int m, void *c, struct timeval *n) {
  (void)e, (void)m, (void)c, (void)n;
  return 0;
}

static struct timeval ms(long v) {
  struct timeval t = {v / 1000, (v % 1000) * 1000};
  return t;
}

/* ---- counting opsets ------------------------------------------------------------
 * The POSIX opset's calls, counted: `declared` is declared unbuffered,
 * `plain` is not (as any custom opset until it says so). */

static int n_reads, n_eagain;

static int cnt_read(int fd, void *buf, size_t len, int *mask, void *closure) {
  n_reads++;
  int rv = eventer_POSIX_fd_opset->read(fd, buf, len, mask, closure);
  if (rv < 0 && errno == EAGAIN) n_eagain++;
  return rv;
}

static struct _fd_opset declared_s, plain_s;

static void opsets_init(void) {
  declared_s = *eventer_POSIX_fd_opset;
  declared_s.read = cnt_read;
  declared_s.name = "counting-declared";
  plain_s = declared_s;
  plain_s.name = "counting-plain";
  T_EQ(eventer_aco_opset_set_unbuffered(&declared_s), 0);
  T_EQ(eventer_aco_opset_set_unbuffered(&declared_s), 0); /* idempotent */
}

/* an aco event for fd with opset o, inside the running coroutine */
static eventer_aco_t aco_fd_with(int fd, eventer_fd_opset_t o) {
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, fd, EVENTER_READ);
  T_CHECK(e != NULL);
  if (o) eventer_set_fd_opset(e, o);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  T_CHECK(ae != NULL);
  return ae;
}

static int done;

/* ---- a read after a write waits first --------------------------------------------- */

typedef struct {
  int fd;
  eventer_fd_opset_t opset;
  int reads_after_write;  /* opset reads made by the read after the write */
  int eagain_after_write;
  int reads_after_short;
  int reads_after_full;
  char got[8];
} skip_t;

static void skip_fn(void) {
  skip_t *k = eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(k->fd, k->opset);
  char b[8];
  /* a write, then a read of the reply that is not there yet */
  T_EQ(eventer_aco_write(e, "q", 1, NULL), 1);
  int r0 = n_reads, a0 = n_eagain;
  T_EQ(eventer_aco_read(e, b, 4, NULL), 4); /* "rrrr": a full read */
  k->reads_after_write = n_reads - r0;
  k->eagain_after_write = n_eagain - a0;
  /* after a full read the next read tries first (more may be there):
   * "ss" is there, and asked for 8, it comes back short */
  r0 = n_reads;
  T_EQ(eventer_aco_read(e, b, 8, NULL), 2);
  k->reads_after_full = n_reads - r0;
  /* after the short read, the next one waits first */
  r0 = n_reads;
  T_EQ(eventer_aco_read(e, k->got, 8, NULL), 3); /* "ttt" */
  k->reads_after_short = n_reads - r0;
  eventer_aco_free(e);
  done++;
}

static void run_skip(skip_t *k) {
  int sv[2];
  sockpair(sv);
  k->fd = sv[0];
  done = 0;
  eventer_aco_start(skip_fn, k); /* writes, parks in the read */
  char c;
  T_EQ(read(sv[1], &c, 1), 1);
  T_EQ(write(sv[1], "rrrrss", 6), 6);
  for (int i = 0; i < 5 && !done; i++) ev_turn();
  T_EQ(done, 0); /* parked in the third read */
  T_EQ(write(sv[1], "ttt", 3), 3);
  ev_spin_until(&done, 1, 5000);
  T_CHECK(!memcmp(k->got, "ttt", 3));
  close(sv[0]);
  close(sv[1]);
}

static void test_skip_after_write_and_short_read(void) {
  ev_setup_external(1);
  opsets_init();
  skip_t d = {.opset = &declared_s};
  run_skip(&d);
  T_EQ(d.reads_after_write, 1); /* no read that found nothing */
  T_EQ(d.eagain_after_write, 0);
  T_EQ(d.reads_after_full, 1); /* tried, and found "ss" */
  T_EQ(d.reads_after_short, 1);
  /* an opset that did not declare itself always tries first */
  skip_t p = {.opset = &plain_s};
  run_skip(&p);
  T_EQ(p.reads_after_write, 2);
  T_EQ(p.eagain_after_write, 1);
  T_EQ(p.reads_after_full, 1);
  T_EQ(p.reads_after_short, 2);
  ev_teardown();
}

/* ---- data that came before the wait is returned at once ----------------------------- */

static int early_rv[2];
static char early_buf[8];

static void early_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, &declared_s);
  char b[4];
  /* the first read waits; the peer sends 8 bytes; we take 4 (a full
   * read: the registration stays) */
  T_EQ(eventer_aco_read(e, b, 4, NULL), 4);
  T_EQ(eventer_aco_write(e, "w", 1, NULL), 1);
  /* the other 4 came before this read: it waits first (no read(2)), and
   * the level-triggered registration reports them at the next poll */
  int r0 = n_reads;
  early_rv[0] = eventer_aco_read(e, early_buf, 4, NULL);
  early_rv[1] = n_reads - r0;
  eventer_aco_free(e);
  done++;
}

/* the same with no registration left (the event is new): the wait
 * registers the fd, which has data, and the poll reports it */
static void early_fresh_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, &declared_s);
  T_EQ(eventer_aco_write(e, "w", 1, NULL), 1);
  int r0 = n_reads;
  early_rv[0] = eventer_aco_read(e, early_buf, 4, NULL);
  early_rv[1] = n_reads - r0;
  eventer_aco_free(e);
  done++;
}

static void test_skip_data_already_there(void) {
  ev_setup_external(1);
  opsets_init();
  int sv[2];
  sockpair(sv);
  done = 0;
  eventer_aco_start(early_fn, &sv[0]);
  T_EQ(write(sv[1], "aaaabbbb", 8), 8);
  /* a turn resumes it for "aaaa"; it writes and parks; the next turn's
   * poll finds "bbbb": no timeout or other event needed */
  for (int i = 0; i < 4 && !done; i++) ev_turn();
  T_EQ(done, 1);
  T_EQ(early_rv[0], 4);
  T_EQ(early_rv[1], 1);
  T_CHECK(!memcmp(early_buf, "bbbb", 4));
  close(sv[0]);
  close(sv[1]);

  sockpair(sv);
  done = 0;
  T_EQ(write(sv[1], "cccc", 4), 4);
  eventer_aco_start(early_fresh_fn, &sv[0]);
  for (int i = 0; i < 4 && !done; i++) ev_turn();
  T_EQ(done, 1);
  T_EQ(early_rv[0], 4);
  T_EQ(early_rv[1], 1);
  T_CHECK(!memcmp(early_buf, "cccc", 4));
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* ---- when a read after a write must try first ------------------------------------- */

typedef struct {
  int fd;
  int rv[6], err[6];
  eventer_aco_co_t *self;
} tries_t;

static void tries_fn(void) {
  tries_t *t = eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(t->fd, &declared_s);
  char b[8];
  /* {0,0}: "do not wait": with nothing there it times out at once */
  struct timeval zero = {0, 0};
  T_EQ(eventer_aco_write(e, "w", 1, NULL), 1);
  errno = 0;
  t->rv[0] = eventer_aco_read(e, b, 2, &zero);
  t->err[0] = errno;
  /* the test sends "aabbcc" meanwhile, then wakes us */
  t->self = eventer_aco_self();
  eventer_aco_co_ref(t->self);
  T_EQ(eventer_aco_park(NULL), 0);
  eventer_aco_co_release(t->self);
  /* {0,0} after a write: the data that is there is returned */
  T_EQ(eventer_aco_write(e, "w", 1, NULL), 1);
  errno = 0;
  t->rv[1] = eventer_aco_read(e, b, 2, &zero);
  t->err[1] = errno;
  /* a timeout over before the wait starts, or before the poll (the timer
   * phase runs first): the last try finds what was there all along */
  struct timeval tiny = {0, 1};
  T_EQ(eventer_aco_write(e, "w", 1, NULL), 1);
  errno = 0;
  t->rv[2] = eventer_aco_read(e, b, 2, &tiny);
  t->err[2] = errno;
  /* a pending cancel: the read tries first and returns the data; the
   * cancel is still there for the next wait */
  T_EQ(eventer_aco_cancel(eventer_aco_self()), 0);
  T_EQ(eventer_aco_write(e, "w", 1, NULL), 1);
  errno = 0;
  t->rv[3] = eventer_aco_read(e, b, 2, NULL);
  t->err[3] = errno;
  struct timeval s = ms(1000);
  errno = 0;
  t->rv[4] = eventer_aco_sleep(&s);
  t->err[4] = errno;
  /* a real timeout after a write with nothing coming: ETIMEDOUT */
  struct timeval t20 = ms(20);
  T_EQ(eventer_aco_write(e, "w", 1, NULL), 1);
  errno = 0;
  t->rv[5] = eventer_aco_read(e, b, 2, &t20);
  t->err[5] = errno;
  eventer_aco_free(e);
  done++;
}

static void test_skip_respects_timeouts_and_cancel(void) {
  ev_setup_external(1);
  opsets_init();
  int sv[2];
  sockpair(sv);
  tries_t t = {.fd = sv[0]};
  done = 0;
  eventer_aco_start(tries_fn, &t); /* runs until it parks */
  T_EQ(t.rv[0], -1);
  T_EQ(t.err[0], ETIMEDOUT);
  T_EQ(write(sv[1], "aabbcc", 6), 6);
  T_EQ(eventer_aco_wake(t.self), 0);
  ev_spin_until(&done, 1, 5000);
  T_EQ(t.rv[1], 2);
  T_EQ(t.rv[2], 2);
  T_EQ(t.rv[3], 2);
  T_EQ(t.rv[4], -1);
  T_EQ(t.err[4], ECANCELED);
  T_EQ(t.rv[5], -1);
  T_EQ(t.err[5], ETIMEDOUT);
  char rest;
  T_EQ(read(sv[1], &rest, 1), 1); /* the writes arrived */
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* A regular file: epoll refuses it (EPERM), so the wait that would stand
 * in for a read fails; the read is made, and from then on reads try
 * first. */
static int file_fd, file_rv[3];
static void file_fn(void) {
  eventer_aco_t e = aco_fd_with(file_fd, NULL);
  char b[8];
  T_EQ(eventer_aco_write(e, "hello", 5, NULL), 5);
  T_EQ(lseek(file_fd, 0, SEEK_SET), 0);
  T_EQ(eventer_aco_write(e, "H", 1, NULL), 1); /* "Hello", at offset 1 */
  file_rv[0] = eventer_aco_read(e, b, 2, NULL);     /* "el" */
  T_CHECK(!memcmp(b, "el", 2));
  T_EQ(eventer_aco_write(e, "L", 1, NULL), 1); /* "HelLo", at offset 4 */
  file_rv[1] = eventer_aco_read(e, b, 8, NULL);     /* "o" */
  file_rv[2] = eventer_aco_read(e, b, 8, NULL);     /* EOF */
  eventer_aco_free(e);
  done++;
}

static void test_skip_regular_file(void) {
  ev_setup_external(1);
  char path[] = "/tmp/test_eventer_aco_fd.XXXXXX";
  file_fd = mkstemp(path);
  T_GE(file_fd, 0);
  unlink(path);
  T_EQ(fcntl(file_fd, F_SETFL, O_NONBLOCK), 0);
  done = 0;
  eventer_aco_start(file_fn, NULL);
  ev_spin_until(&done, 1, 5000);
  T_EQ(file_rv[0], 2);
  T_EQ(file_rv[1], 1);
  T_EQ(file_rv[2], 0);
  close(file_fd);
  ev_teardown();
}

/* ---- an opset that keeps data of its own never skips ---------------------------------
 * As a TLS layer does: it reads the socket in big gulps and hands out
 * what the caller asked for, keeping the rest. */

static char held[64];
static size_t held_len;

static int hold_read(int fd, void *buf, size_t len, int *mask, void *closure) {
  (void)closure;
  if (held_len == 0) {
    ssize_t n = read(fd, held, sizeof(held));
    if (n < 0) {
      if (errno == EAGAIN && mask) *mask = EVENTER_READ;
      return -1;
    }
    held_len = (size_t)n;
    if (n == 0) return 0;
  }
  size_t k = len < held_len ? len : held_len;
  memcpy(buf, held, k);
  memmove(held, held + k, held_len - k);
  held_len -= k;
  return (int)k;
}

static struct _fd_opset holding_s;
static char held_got[8];
static int held_rv = -2;

static void holding_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, &holding_s);
  char b;
  T_EQ(eventer_aco_read(e, &b, 1, NULL), 1); /* the opset took all 8 */
  T_EQ(b, 'A');
  T_EQ(eventer_aco_write(e, "w", 1, NULL), 1);
  /* the socket is empty, the opset holds 7: they come at once */
  held_rv = eventer_aco_read(e, held_got, 7, NULL);
  eventer_aco_free(e);
  done++;
}

static void test_buffering_opset_never_skips(void) {
  ev_setup_external(1);
  holding_s = *eventer_POSIX_fd_opset;
  holding_s.read = hold_read;
  holding_s.name = "holding";
  held_len = 0;
  int sv[2];
  sockpair(sv);
  done = 0;
  eventer_aco_start(holding_fn, &sv[0]);
  T_EQ(write(sv[1], "ABCDEFGH", 8), 8);
  /* nothing more ever arrives: a read that waited would never end */
  for (int i = 0; i < 4 && !done; i++) ev_turn();
  T_EQ(done, 1);
  T_EQ(held_rv, 7);
  T_CHECK(!memcmp(held_got, "BCDEFGH", 7));
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

static eventer_fd_opset_t aco_opset_seen;
static void aco_opset_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, NULL);
  aco_opset_seen = eventer_get_fd_opset((eventer_t)e);
  eventer_aco_free(e);
  done++;
}

static struct _fd_opset many_s[10];

static void test_set_unbuffered_errors(void) {
  T_ERRNO(eventer_aco_opset_set_unbuffered(NULL), EINVAL);
  T_ERRNO(eventer_aco_opset_set_unbuffered(eventer_SSL_fd_opset), EINVAL);
  T_EQ(eventer_aco_opset_set_unbuffered(eventer_POSIX_fd_opset), 0);
  ev_setup_external(1);
  int sv[2];
  sockpair(sv);
  done = 0;
  eventer_aco_start(aco_opset_fn, &sv[0]);
  ev_spin_until(&done, 1, 5000);
  T_CHECK(aco_opset_seen != NULL && aco_opset_seen != eventer_POSIX_fd_opset);
  T_ERRNO(eventer_aco_opset_set_unbuffered(aco_opset_seen), EINVAL);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
  /* a bounded table: distinct opsets until it is full (this program
   * declared some already) */
  int ok = 0, err = 0;
  for (int i = 0; i < 10; i++) {
    many_s[i] = *eventer_POSIX_fd_opset;
    if (eventer_aco_opset_set_unbuffered(&many_s[i]) == 0) {
      ok++;
    } else {
      T_EQ(errno, ENOSPC);
      err++;
    }
  }
  T_LE(ok, 8);
  T_GE(err, 2);
}

/* ---- the state an aco event keeps in itself --------------------------------------- */

static void *ctx_seen;
static int ctx_read(int fd, void *buf, size_t len, int *mask, void *closure) {
  ctx_seen = eventer_get_fd_opset_ctx((eventer_t)closure);
  return eventer_POSIX_fd_opset->read(fd, buf, len, mask, closure);
}
static struct _fd_opset ctx_s;
static int ctx_token;

typedef struct {
  int fd;
  int add_timer_err, add_recur_err, add_asynch_err, trigger_rv;
  void *ctx_after;
  eventer_t copy;
  int read_rv;
} state_t;

static void state_fn(void) {
  state_t *st = eventer_aco_arg();
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, st->fd, EVENTER_READ);
  eventer_set_fd_opset(e, &ctx_s);
  eventer_set_fd_opset_ctx(e, &ctx_token);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  T_CHECK(ae != NULL);
  /* the conversion leaves the opset context alone */
  st->ctx_after = eventer_get_fd_opset_ctx(e);
  /* an aco event is an fd event: adding it as another kind would
   * overwrite its state, and is refused */
  int m = eventer_get_mask(e);
  eventer_set_mask(e, EVENTER_TIMER);
  errno = 0;
  T_EQ(eventer_add_ex(e), -1);
  st->add_timer_err = errno;
  eventer_set_mask(e, EVENTER_RECURRENT);
  errno = 0;
  T_EQ(eventer_add_ex(e), -1);
  st->add_recur_err = errno;
  eventer_set_mask(e, EVENTER_ASYNCH);
  errno = 0;
  T_EQ(eventer_add_asynch_ex(NULL, e), -1);
  st->add_asynch_err = errno;
  eventer_set_mask(e, m);
  /* a copy is classic, with the original opset, callback and context */
  st->copy = eventer_alloc_copy(e);
  /* and the event still works */
  char b[4];
  st->read_rv = eventer_aco_read(ae, b, 4, NULL);
  eventer_aco_free(ae);
  done++;
}

static void test_aco_event_state(void) {
  ev_setup_external(1);
  ctx_s = *eventer_POSIX_fd_opset;
  ctx_s.read = ctx_read;
  int sv[2];
  sockpair(sv);
  state_t st = {.fd = sv[0]};
  done = 0;
  eventer_aco_start(state_fn, &st);
  T_EQ(write(sv[1], "data", 4), 4);
  ev_spin_until(&done, 1, 5000);
  T_PTR_EQ(st.ctx_after, &ctx_token);
  T_PTR_EQ(ctx_seen, &ctx_token); /* what the original opset saw */
  T_EQ(st.add_timer_err, EINVAL);
  T_EQ(st.add_recur_err, EINVAL);
  T_EQ(st.add_asynch_err, EINVAL);
  T_EQ(st.read_rv, 4);
  T_CHECK(st.copy != NULL);
  T_CHECK(!eventer_is_aco(st.copy));
  T_PTR_EQ(eventer_get_fd_opset(st.copy), &ctx_s);
  T_PTR_EQ(eventer_get_fd_opset_ctx(st.copy), &ctx_token);
  T_PTR_EQ((void *)eventer_get_callback(st.copy), (void *)dummy_cb);
  /* the copy is a whole classic event: it registers as a timer, say */
  eventer_set_mask(st.copy, EVENTER_TIMER);
  struct timeval far = {3600, 0};
  eventer_update_whence(st.copy, far);
  T_EQ(eventer_add_ex(st.copy), 0);
  T_PTR_EQ(eventer_remove(st.copy), st.copy);
  eventer_free(st.copy);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* Back to classic: the state goes; the event is any classic event again
 * and the coroutine layer no longer knows it. */
static int revert_ok;
static void revert_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_t e = eventer_alloc_fd(dummy_cb, NULL, fd, EVENTER_READ);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  T_CHECK(ae != NULL);
  eventer_aco_set_read_timeout(ae, &(struct timeval){1, 0});
  T_EQ(eventer_aco_write(ae, "x", 1, NULL), 1);
  T_PTR_EQ(eventer_set_eventer_aco_co(e, NULL), NULL); /* back */
  T_CHECK(!eventer_is_aco(e));
  T_PTR_EQ(eventer_get_fd_opset(e), eventer_POSIX_fd_opset);
  T_PTR_EQ((void *)eventer_get_callback(e), (void *)dummy_cb);
  T_ERRNO(eventer_aco_read((eventer_aco_t)e, &(char){0}, 1, NULL), EINVAL);
  /* and may be a timer now */
  eventer_set_mask(e, EVENTER_TIMER);
  eventer_update_whence(e, (struct timeval){3600, 0});
  T_EQ(eventer_add_ex(e), 0);
  T_PTR_EQ(eventer_remove(e), e);
  eventer_free(e);
  revert_ok = 1;
  done++;
}

static void test_back_to_classic(void) {
  ev_setup_external(1);
  int sv[2];
  sockpair(sv);
  done = 0;
  eventer_aco_start(revert_fn, &sv[0]);
  ev_spin_until(&done, 1, 5000);
  T_EQ(revert_ok, 1);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* Default timeouts: set, used, cleared, set again (they live in a block
 * of their own, made by the first setter and freed with the event). */
static int dt_rv[3], dt_err[3];
static uint64_t dt_waited_us;
static void default_tmo_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, NULL);
  char b[4];
  eventer_aco_set_write_timeout(e, NULL); /* clearing what was never set */
  eventer_aco_set_read_timeout(e, &(struct timeval){0, 30000});
  uint64_t t0 = t_now_us();
  errno = 0;
  dt_rv[0] = eventer_aco_read(e, b, 4, NULL);
  dt_err[0] = errno;
  dt_waited_us = t_now_us() - t0;
  eventer_aco_set_read_timeout(e, NULL);
  eventer_aco_set_accept_timeout(e, &(struct timeval){0, 1000});
  dt_rv[1] = eventer_aco_read(e, b, 4, NULL); /* no timeout: waits */
  eventer_aco_set_read_timeout(e, &(struct timeval){0, 0});
  errno = 0;
  dt_rv[2] = eventer_aco_read(e, b, 4, NULL); /* {0,0}: no wait */
  dt_err[2] = errno;
  eventer_aco_free(e);
  done++;
}

static void test_default_timeouts(void) {
  ev_setup_external(1);
  int sv[2];
  sockpair(sv);
  done = 0;
  eventer_aco_start(default_tmo_fn, &sv[0]);
  /* the first read times out by itself; then give the second its data */
  for (int i = 0; i < 2000 && dt_rv[0] == 0; i++) {
    struct timeval w = {0, 5000};
    eventer_run_once(NULL, &w);
  }
  T_EQ(dt_rv[0], -1);
  T_EQ(dt_err[0], ETIMEDOUT);
  T_GE(dt_waited_us, 30000);
  for (int i = 0; i < 5; i++) ev_turn();
  T_EQ(done, 0); /* the second read waits: no timeout any more */
  T_EQ(write(sv[1], "data", 4), 4);
  ev_spin_until(&done, 1, 5000);
  T_EQ(dt_rv[1], 4);
  T_EQ(dt_rv[2], -1);
  T_EQ(dt_err[2], ETIMEDOUT);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* ---- the owner frees the event while a wait on it is ending --------------------------
 * The coroutine reads on e without a reference of its own (its caller
 * lends it); the owner cancels it, or closes e, and drops the only
 * reference before the coroutine's turn.  e must stay alive until the
 * wait has ended, then go: nothing touches freed memory (ASan, valgrind)
 * and nothing leaks. */

static eventer_aco_t lent_e;
static int lent_rv, lent_err;
static eventer_aco_co_t *lent_h;

static void lent_reader(void) {
  char b[4];
  errno = 0;
  lent_rv = eventer_aco_read(lent_e, b, 4, NULL);
  lent_err = errno;
  done++; /* e is not touched again */
}

static void lent_setup(void) {
  int fd = *(int *)eventer_aco_arg();
  lent_e = aco_fd_with(fd, NULL);
  lent_h = eventer_aco_spawn(lent_reader, NULL, NULL);
  T_CHECK(lent_h != NULL);
}

static void free_while_ending(int by_close) {
  ev_setup_external(1);
  int sv[2];
  sockpair(sv);
  done = 0;
  int64_t before = eventer_allocations_current();
  eventer_aco_start(lent_setup, &sv[0]);
  for (int i = 0; i < 3; i++) ev_turn();
  T_EQ(done, 0); /* parked in the read */
  T_EQ(eventer_allocations_current(), before + 1);
  if (by_close) {
    T_EQ(eventer_aco_close(lent_e), 0);
  } else {
    T_EQ(eventer_aco_cancel(lent_h), 0);
  }
  eventer_aco_free(lent_e); /* the only reference: the wait keeps it */
  T_EQ(eventer_allocations_current(), before + 1);
  ev_spin_until(&done, 1, 5000);
  T_EQ(lent_rv, -1);
  T_EQ(lent_err, by_close ? EBADF : ECANCELED);
  ev_turn();
  T_EQ(eventer_allocations_current(), before); /* gone with the wait */
  eventer_aco_co_release(lent_h);
  if (!by_close) close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* The same where the read went straight to the wait (after a write) and
 * its timeout ends it after the owner let go: its last read is made
 * while the wait still keeps e, then e goes. */
static void lent_tmo_reader(void) {
  char b[4];
  T_EQ(eventer_aco_write(lent_e, "w", 1, NULL), 1);
  struct timeval t = ms(30);
  errno = 0;
  lent_rv = eventer_aco_read(lent_e, b, 4, &t);
  lent_err = errno;
  done++;
}

static void lent_tmo_setup(void) {
  int fd = *(int *)eventer_aco_arg();
  lent_e = aco_fd_with(fd, NULL);
  lent_h = eventer_aco_spawn(lent_tmo_reader, NULL, NULL);
  T_CHECK(lent_h != NULL);
}

static void test_free_while_skipped_read_times_out(void) {
  ev_setup_external(1);
  int sv[2];
  sockpair(sv);
  done = 0;
  int64_t before = eventer_allocations_current();
  eventer_aco_start(lent_tmo_setup, &sv[0]);
  for (int i = 0; i < 3; i++) ev_turn();
  T_EQ(done, 0); /* parked in the read */
  eventer_aco_free(lent_e);
  T_EQ(eventer_allocations_current(), before + 1);
  for (int i = 0; i < 2000 && !done; i++) {
    struct timeval w = {0, 5000};
    eventer_run_once(NULL, &w);
  }
  T_EQ(done, 1);
  T_EQ(lent_rv, -1);
  T_EQ(lent_err, ETIMEDOUT);
  ev_turn();
  T_EQ(eventer_allocations_current(), before);
  char c;
  T_EQ(read(sv[1], &c, 1), 1);
  eventer_aco_co_release(lent_h);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* ---- EOF, and a peer that writes between our write and read ------------------------ */

static int eof_rv[3];
static char eof_buf[8];
static void eof_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, &declared_s);
  T_EQ(eventer_aco_write(e, "q", 1, NULL), 1);
  /* the peer answered and closed before this read: it waits first, the
   * poll reports the data (and the hang-up), and the read gets it */
  eof_rv[0] = eventer_aco_read(e, eof_buf, 8, NULL); /* "ab", short */
  /* after the short read it waits first again: EOF is readiness too */
  eof_rv[1] = eventer_aco_read(e, eof_buf + 2, 6, NULL);
  eof_rv[2] = eventer_aco_read(e, eof_buf + 2, 6, NULL); /* still EOF */
  eventer_aco_free(e);
  done++;
}

static void test_skip_eof(void) {
  ev_setup_external(1);
  opsets_init();
  int sv[2];
  sockpair(sv);
  done = 0;
  eventer_aco_start(eof_fn, &sv[0]);
  char c;
  T_EQ(read(sv[1], &c, 1), 1);
  T_EQ(write(sv[1], "ab", 2), 2);
  close(sv[1]);
  ev_spin_until(&done, 1, 5000);
  T_EQ(eof_rv[0], 2);
  T_CHECK(!memcmp(eof_buf, "ab", 2));
  T_EQ(eof_rv[1], 0);
  T_EQ(eof_rv[2], 0);
  close(sv[0]);
  ev_teardown();
}

/* ---- the POSIX opset's calls made directly ---------------------------------------------
 * An aco event on the POSIX opset reads and writes with read(2) and
 * write(2) themselves (raw syscalls outside sanitizer builds): the same
 * results as through the opset, errors included (a full send buffer
 * waits, a short write returns its count, a closed peer gives EPIPE, an
 * fd closed under the event EBADF, EOF 0), and errno left alone by a call
 * that succeeds. */

static int px_rv[6], px_err[6];
static size_t px_big_len;
static char *px_big;
static void posix_direct_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, NULL);
  /* more than the send buffer holds: it writes what fits, and the first
   * write returns that count at once (a short write, no wait) */
  errno = EDOM; /* a call that succeeds leaves errno alone, as libc's */
  px_rv[0] = eventer_aco_write(e, px_big, px_big_len, NULL);
  px_err[0] = errno;
  /* the buffer is full now: this one waits until the peer drains it */
  px_rv[1] = eventer_aco_write(e, px_big, 1, NULL);
  char b[4];
  errno = EDOM; /* it waits first (after a write), then reads: untouched */
  px_rv[2] = eventer_aco_read(e, b, 4, NULL); /* the peer's "z", then EOF */
  px_err[2] = errno;
  px_rv[3] = eventer_aco_read(e, b, 4, NULL); /* EOF */
  errno = 0;
  px_rv[4] = eventer_aco_write(e, "x", 1, NULL); /* the peer is gone */
  px_err[4] = errno;
  eventer_aco_free(e);
  done++;
}

static void posix_badfd_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, NULL);
  close(fd);
  errno = 0;
  px_rv[5] = eventer_aco_write(e, "x", 1, NULL);
  px_err[5] = errno;
  eventer_free((eventer_t)e);
  done++;
}

static void test_posix_direct_calls(void) {
  ev_setup_external(1);
  void (*old)(int) = signal(SIGPIPE, SIG_IGN);
  int sv[2];
  sockpair(sv);
  px_big_len = 8u << 20;
  px_big = calloc(1, px_big_len);
  T_CHECK(px_big != NULL);
  done = 0;
  eventer_aco_start(posix_direct_fn, &sv[0]);
  T_CHECK(px_rv[0] > 0 && (size_t)px_rv[0] < px_big_len);
  for (int i = 0; i < 3; i++) ev_turn();
  T_EQ(done, 0); /* parked in the second write */
  char *sink = malloc(1 << 16);
  T_CHECK(sink != NULL);
  long drained = 0;
  while (drained < px_rv[0] + 1) {
    ssize_t n = read(sv[1], sink, 1 << 16);
    if (n > 0) drained += n;
    else ev_turn();
  }
  T_EQ(drained, (long)px_rv[0] + 1);
  T_EQ(write(sv[1], "z", 1), 1);
  close(sv[1]); /* "z" stays readable, then EOF; writes get EPIPE */
  ev_spin_until(&done, 1, 5000);
  T_EQ(px_err[0], EDOM);
  T_EQ(px_rv[1], 1);
  T_EQ(px_rv[2], 1);
  T_EQ(px_err[2], EDOM);
  T_EQ(px_rv[3], 0);
  T_EQ(px_rv[4], -1);
  T_EQ(px_err[4], EPIPE);
  /* an fd closed under the event: the kernel's EBADF, as the opset gives */
  int sv2[2];
  sockpair(sv2);
  done = 0;
  eventer_aco_start(posix_badfd_fn, &sv2[0]);
  ev_spin_until(&done, 1, 5000);
  T_EQ(px_rv[5], -1);
  T_EQ(px_err[5], EBADF);
  close(sv2[1]);
  free(sink);
  free(px_big);
  signal(SIGPIPE, old);
  ev_teardown();
}

/* ---- the same calls on a pipe, and SIGPIPE ----------------------------------------
 * On a socket the POSIX opset's coroutine calls are recv(2) and send(2)
 * with no flags; an fd that is no socket (a pipe here) gets read(2) and
 * write(2), with the same results: data, a wait, EOF, EPIPE.  And a
 * write to a socket whose peer is gone raises SIGPIPE as write(2) does
 * (no MSG_NOSIGNAL behind the caller's back). */

static int pp_rv[6], pp_err[6];
static int pp_not_sock; /* the event's "no socket" mark after its calls */
static volatile sig_atomic_t pp_sigpipes;
static void pp_on_sigpipe(int sig) {
  (void)sig;
  pp_sigpipes++;
}
static void pipe_reader_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, NULL);
  char b[8];
  pp_rv[0] = eventer_aco_read(e, b, sizeof(b), NULL); /* "ab", there already */
  pp_rv[1] = b[0] == 'a' && b[1] == 'b';
  pp_rv[2] = eventer_aco_read(e, b, sizeof(b), NULL); /* waits for "c" */
  pp_rv[3] = b[0] == 'c';
  pp_rv[4] = eventer_aco_read(e, b, sizeof(b), NULL); /* EOF */
  pp_not_sock = !!(((eventer_t)e)->acofd_flags & EV_ACOFD_F_NOT_SOCK);
  eventer_aco_free(e);
  done++;
}
static void pipe_writer_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, NULL);
  errno = EDOM;
  pp_rv[5] = eventer_aco_write(e, "c", 1, NULL);
  pp_err[5] = errno;
  eventer_aco_free(e);
  done++;
}
static void pipe_epipe_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, NULL);
  errno = 0;
  pp_rv[0] = eventer_aco_write(e, "x", 1, NULL); /* no reader */
  pp_err[0] = errno;
  pp_not_sock = !!(((eventer_t)e)->acofd_flags & EV_ACOFD_F_NOT_SOCK);
  eventer_aco_free(e);
  done++;
}

static void test_pipe_and_sigpipe(void) {
  ev_setup_external(1);
  struct sigaction sa, old;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = pp_on_sigpipe;
  sigemptyset(&sa.sa_mask);
  T_EQ(sigaction(SIGPIPE, &sa, &old), 0);
  int p[2];
  T_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  T_EQ(write(p[1], "ab", 2), 2);
  done = 0;
  eventer_aco_start(pipe_reader_fn, &p[0]);
  ev_turn();
  T_EQ(done, 0); /* parked: the pipe is empty after "ab" */
  eventer_aco_start(pipe_writer_fn, &p[1]);
  ev_spin_until(&done, 1, 5000); /* the writer */
  T_EQ(pp_rv[5], 1);
  T_EQ(pp_err[5], EDOM); /* a write that succeeds leaves errno alone */
  close(p[1]);
  ev_spin_until(&done, 2, 5000);
  T_EQ(pp_rv[0], 2);
  T_EQ(pp_rv[1], 1);
  T_EQ(pp_rv[2], 1);
  T_EQ(pp_rv[3], 1);
  T_EQ(pp_rv[4], 0);
  T_EQ(pp_not_sock, 1); /* read(2) since its first call */
  close(p[0]);
  /* a pipe with no reader: EPIPE, and the signal */
  T_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  close(p[0]);
  pp_sigpipes = 0;
  done = 0;
  eventer_aco_start(pipe_epipe_fn, &p[1]);
  ev_spin_until(&done, 1, 5000);
  T_EQ(pp_rv[0], -1);
  T_EQ(pp_err[0], EPIPE);
  T_EQ(pp_sigpipes, 1);
  T_EQ(pp_not_sock, 1);
  close(p[1]);
  /* a socket whose peer is gone: the same */
  int sv[2];
  sockpair(sv);
  close(sv[1]);
  pp_sigpipes = 0;
  done = 0;
  eventer_aco_start(pipe_epipe_fn, &sv[0]);
  ev_spin_until(&done, 1, 5000);
  T_EQ(pp_rv[0], -1);
  T_EQ(pp_err[0], EPIPE);
  T_EQ(pp_sigpipes, 1);
  T_EQ(pp_not_sock, 0); /* a socket: send(2) */
  close(sv[0]);
  T_EQ(sigaction(SIGPIPE, &old, NULL), 0);
  ev_teardown();
}

/* ---- zero-length reads ------------------------------------------------------------
 * A coroutine's zero-length read on a socket is read(2)'s, as everywhere
 * else: 0 at once, nothing taken.  (recv(2) with no room fails with
 * EAGAIN on an empty socket, so the read waited for data it would not
 * take, and took a pending datagram whole.) */

static int zl_rv[6], zl_err[6];
static void zero_len_fn(void) {
  int *fds = eventer_aco_arg();
  eventer_aco_t s = aco_fd_with(fds[0], NULL), d = aco_fd_with(fds[1], NULL);
  struct timeval tmo = ms(2000);
  char b[8];
  errno = EDOM;
  zl_rv[0] = eventer_aco_read(s, b, 0, &tmo); /* an empty stream socket */
  zl_err[0] = errno;
  zl_rv[1] = eventer_aco_read(d, b, 0, &tmo); /* a datagram pending */
  zl_err[1] = errno;
  zl_rv[2] = eventer_aco_read(d, b, sizeof(b), &tmo); /* still there */
  zl_rv[3] = zl_rv[2] == 2 && memcmp(b, "dg", 2) == 0;
  /* after a write (the next read may go straight to the wait): at once */
  zl_rv[4] = eventer_aco_write(s, "x", 1, &tmo);
  zl_rv[5] = eventer_aco_read(s, b, 0, &tmo);
  zl_err[5] = errno;
  eventer_aco_free(s);
  eventer_aco_free(d);
  done++;
}

static void test_zero_length_read(void) {
  ev_setup_external(1);
  int sv[2], dv[2];
  sockpair(sv);
  T_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, dv), 0);
  T_EQ(send(dv[1], "dg", 2, 0), 2);
  int fds[2] = {sv[0], dv[0]};
  done = 0;
  eventer_aco_start(zero_len_fn, fds);
  ev_spin_until(&done, 1, 20000);
  T_EQ(zl_rv[0], 0);
  T_EQ(zl_err[0], EDOM);
  T_EQ(zl_rv[1], 0);
  T_EQ(zl_err[1], EDOM);
  T_EQ(zl_rv[2], 2);
  T_EQ(zl_rv[3], 1);
  T_EQ(zl_rv[4], 1);
  T_EQ(zl_rv[5], 0);
  T_EQ(zl_err[5], EDOM);
  close(sv[0]);
  close(sv[1]);
  close(dv[0]);
  close(dv[1]);
  ev_teardown();
}

/* ---- errno around a wait on the POSIX opset ---------------------------------------
 * A coroutine's read that finds nothing (EAGAIN), waits and then reads
 * succeeds with errno as it was: the EAGAIN stays inside the call.  The
 * foreign bindings' attempt (ev_aco_fd_try) reports EAGAIN in errno with
 * what to wait for, and another error with its errno and no mask. */

static int ea_rv, ea_err, ea_try_rv, ea_try_err, ea_try_mask;
static void eagain_errno_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, NULL);
  int mask = -1;
  char c;
  errno = 0;
  ea_try_rv =
      ev_aco_fd_try((eventer_t)e, EV_ACO_TRY_READ, &c, 1, NULL, NULL, &mask);
  ea_try_err = errno;
  ea_try_mask = mask;
  char b;
  errno = EDOM;
  ea_rv = eventer_aco_read(e, &b, 1, NULL); /* EAGAIN, waits, reads */
  ea_err = errno;
  eventer_aco_free(e);
  done++;
}

static void badfd_try_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, NULL);
  close(fd); /* the fd goes under the event */
  int mask = -1;
  char c;
  errno = 0;
  ea_try_rv =
      ev_aco_fd_try((eventer_t)e, EV_ACO_TRY_READ, &c, 1, NULL, NULL, &mask);
  ea_try_err = errno;
  ea_try_mask = mask;
  eventer_free((eventer_t)e);
  done++;
}

static void test_eagain_errno(void) {
  ev_setup_external(1);
  int sv[2];
  sockpair(sv);
  done = 0;
  eventer_aco_start(eagain_errno_fn, &sv[0]);
  T_EQ(ea_try_rv, -1);
  T_EQ(ea_try_err, EAGAIN);
  T_CHECK((ea_try_mask & EVENTER_READ) != 0);
  for (int i = 0; i < 3; i++) ev_turn();
  T_EQ(done, 0); /* parked after its EAGAIN */
  T_EQ(write(sv[1], "k", 1), 1);
  ev_spin_until(&done, 1, 5000);
  T_EQ(ea_rv, 1);
  T_EQ(ea_err, EDOM);
  /* another error: its errno, nothing to wait for */
  int sv2[2];
  sockpair(sv2);
  done = 0;
  eventer_aco_start(badfd_try_fn, &sv2[0]);
  ev_spin_until(&done, 1, 5000);
  T_EQ(ea_try_rv, -1);
  T_EQ(ea_try_err, EBADF);
  T_EQ(ea_try_mask, 0);
  close(sv[0]);
  close(sv[1]);
  close(sv2[1]);
  ev_teardown();
}

/* ---- a read that waits, then finds the end of the stream or a reset -------------
 * The POSIX opset's raw reads return -errno inside the coroutine's loops:
 * a read that parked and is then woken by the peer's close returns 0 with
 * errno as it was; by the peer's RST, -1 with ECONNRESET (not EAGAIN, not
 * a stale value); a write to the reset connection, -1 with EPIPE or
 * ECONNRESET.  Bytes that came before the close are read first. */

static int we_rv[4], we_err[4];
static char we_buf[8];
static void wait_end_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, NULL);
  errno = EDOM;
  we_rv[0] = eventer_aco_read(e, we_buf, sizeof(we_buf), NULL); /* waits */
  we_err[0] = errno;
  errno = EDOM;
  we_rv[1] = eventer_aco_read(e, we_buf, sizeof(we_buf), NULL); /* waits */
  we_err[1] = errno;
  eventer_aco_free(e);
  done++;
}

static void wait_reset_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, NULL);
  errno = EDOM;
  we_rv[2] = eventer_aco_read(e, we_buf, sizeof(we_buf), NULL); /* waits */
  we_err[2] = errno;
  errno = EDOM;
  we_rv[3] = eventer_aco_write(e, "x", 1, NULL);
  we_err[3] = errno;
  eventer_aco_free(e);
  done++;
}

static void test_wait_then_eof_or_reset(void) {
  ev_setup_external(1);
  signal(SIGPIPE, SIG_IGN);
  /* the end of the stream, after a few bytes */
  int sv[2];
  sockpair(sv);
  done = 0;
  eventer_aco_start(wait_end_fn, &sv[0]);
  for (int i = 0; i < 3; i++) ev_turn();
  T_EQ(done, 0);
  T_EQ(write(sv[1], "abc", 3), 3);
  for (int i = 0; i < 3; i++) ev_turn();
  T_EQ(we_rv[0], 3);
  T_EQ(we_err[0], EDOM);
  T_CHECK(memcmp(we_buf, "abc", 3) == 0);
  T_EQ(done, 0); /* its second read waits */
  close(sv[1]);
  ev_spin_until(&done, 1, 5000);
  T_EQ(we_rv[1], 0);
  T_EQ(we_err[1], EDOM);
  /* a reset: TCP over the loopback, the peer closes with SO_LINGER 0 */
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  T_CHECK(ls >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  T_EQ(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
  T_EQ(listen(ls, 1), 0);
  T_EQ(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  T_EQ(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
  int s = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  T_CHECK(s >= 0);
  done = 0;
  eventer_aco_start(wait_reset_fn, &s);
  for (int i = 0; i < 3; i++) ev_turn();
  T_EQ(done, 0);
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  T_EQ(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  close(c);
  ev_spin_until(&done, 1, 5000);
  T_EQ(we_rv[2], -1);
  T_EQ(we_err[2], ECONNRESET);
  T_EQ(we_rv[3], -1);
  T_CHECK(we_err[3] == EPIPE || we_err[3] == ECONNRESET);
  close(sv[0]);
  close(s);
  close(ls);
  ev_teardown();
}

/* ---- an event removed and freed by the coroutine the loop resumed for it ----------
 * The loop resumes an fd waiter from its own dispatch without taking a
 * reference on the event as long as its registration keeps it; a
 * coroutine that takes the registration away with the classic calls
 * (eventer_remove_fde, then frees every reference) must not leave the
 * loop with freed memory (ASan and valgrind runs check the accesses). */

static int rf_rv;
static void remove_free_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  eventer_aco_t e = aco_fd_with(fd, NULL);
  char b[4];
  rf_rv = eventer_aco_read(e, b, sizeof(b), NULL); /* parks; the loop's
                                                    * fd dispatch resumes */
  eventer_t r = eventer_remove_fde((eventer_t)e);
  T_CHECK(r == (eventer_t)e);
  eventer_free(r); /* the registration's reference, handed to us */
  eventer_free((eventer_t)e); /* ours: the last one but the loop's */
  done++;
}

static void test_remove_and_free_while_dispatched(void) {
  ev_setup_external(1);
  int64_t before = eventer_allocations_current();
  int sv[2];
  sockpair(sv);
  done = 0;
  rf_rv = 0;
  eventer_aco_start(remove_free_fn, &sv[0]);
  ev_turn();
  T_EQ(done, 0);
  T_EQ(write(sv[1], "abc", 3), 3);
  ev_spin_until(&done, 1, 5000);
  T_EQ(rf_rv, 3);
  ev_turn();
  T_EQ(eventer_allocations_current(), before);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

static void test_cancel_then_free_while_parked(void) { free_while_ending(0); }
static void test_close_then_free_while_parked(void) { free_while_ending(1); }

/* Two readers on one event; one is cancelled: the event stays registered
 * for the other, whom data still reaches. */
static eventer_aco_t two_e;
static int two_rv[2], two_err[2];
static eventer_aco_co_t *two_h[2];
static void two_reader(void) {
  int i = (int)(intptr_t)eventer_aco_arg();
  char b[4];
  errno = 0;
  two_rv[i] = eventer_aco_read(two_e, b, 4, NULL);
  two_err[i] = errno;
  done++;
}
static void two_setup(void) {
  int fd = *(int *)eventer_aco_arg();
  two_e = aco_fd_with(fd, NULL);
  for (int i = 0; i < 2; i++)
    two_h[i] = eventer_aco_spawn(two_reader, (void *)(intptr_t)i, NULL);
}

static void test_two_readers_one_cancelled(void) {
  ev_setup_external(1);
  int sv[2];
  sockpair(sv);
  done = 0;
  eventer_aco_start(two_setup, &sv[0]);
  for (int i = 0; i < 3; i++) ev_turn();
  T_EQ(done, 0);
  T_EQ(eventer_aco_cancel(two_h[0]), 0);
  ev_spin_until(&done, 1, 5000);
  T_EQ(two_rv[0], -1);
  T_EQ(two_err[0], ECANCELED);
  T_PTR_EQ(eventer_find_fd(sv[0]), (eventer_t)two_e); /* still registered */
  T_EQ(write(sv[1], "data", 4), 4);
  ev_spin_until(&done, 2, 5000);
  T_EQ(two_rv[1], 4);
  for (int i = 0; i < 2; i++) eventer_aco_co_release(two_h[i]);
  eventer_aco_free(two_e);
  ev_turn();
  T_PTR_EQ(eventer_find_fd(sv[0]), NULL);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* ---- what a coroutine resumed by its fd sees ------------------------------------------
 * The loop resumes the one coroutine waiting on an fd itself in the usual
 * case, and through the fd callback otherwise (context classes, the debug
 * stream on): either way the coroutine sees what a callback of its event
 * sees (eventer_get_this_event, eventer_gettimeofcallback), context
 * classes' prep and cleanup run around it, and nothing of it is left once
 * it has parked again. */

static eventer_aco_t view_e;
static eventer_t view_this[2];
static struct timeval view_now[2];
static int view_rv[2], view_n;

static void view_fn(void) {
  int fd = *(int *)eventer_aco_arg();
  view_e = aco_fd_with(fd, NULL);
  char b;
  for (int i = 0; i < 2; i++) {
    view_rv[i] = eventer_aco_read(view_e, &b, 1, NULL);
    view_this[i] = eventer_get_this_event();
    eventer_gettimeofcallback(&view_now[i], NULL);
    view_n++;
  }
  eventer_aco_free(view_e);
  done++;
}

static int view_ctx_idx = -1, view_preps, view_cleanups;
static eventer_t view_prep_e;
static void view_prep(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)c, (void)now;
  view_prep_e = e;
  view_preps++;
}
static void view_cleanup(eventer_t e, int mask) {
  (void)e, (void)mask;
  view_cleanups++;
}
static eventer_context_opset_t view_ctx_ops = {NULL, NULL, NULL, view_prep,
                                               view_cleanup};

/* how: 0 plain, 1 with eventer_deb on, 2 with a context class */
static void callback_view(int how) {
  ev_setup_external(1);
  if (how == 1) T_EQ(mtev_log_stream_set_enabled(eventer_deb, 1), 0);
  if (how == 2 && view_ctx_idx < 0) {
    view_ctx_idx = eventer_register_context("aco-fd-view", &view_ctx_ops);
    T_GE(view_ctx_idx, 0);
  }
  view_preps = view_cleanups = 0;
  view_prep_e = NULL;
  int sv[2];
  sockpair(sv);
  done = view_n = 0;
  memset(view_this, 0, sizeof(view_this));
  eventer_aco_start(view_fn, &sv[0]);
  for (int i = 0; i < 3; i++) ev_turn();
  T_CHECK(eventer_get_this_event() == NULL);
  for (int i = 0; i < 2; i++) {
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    T_EQ(write(sv[1], "x", 1), 1);
    ev_spin_until(&view_n, i + 1, 5000);
    gettimeofday(&t1, NULL);
    T_EQ(view_rv[i], 1);
    T_PTR_EQ(view_this[i], (eventer_t)view_e);
    /* the time of the turn that resumed it, not an earlier callback's */
    int64_t at = (int64_t)view_now[i].tv_sec * 1000000 + view_now[i].tv_usec;
    T_GE(at, (int64_t)t0.tv_sec * 1000000 + t0.tv_usec - 1000);
    T_LE(at, (int64_t)t1.tv_sec * 1000000 + t1.tv_usec + 1000);
    T_CHECK(eventer_get_this_event() == NULL); /* back in the loop */
    /* and outside the dispatch a time no earlier than that turn's */
    struct timeval out;
    T_EQ(eventer_gettimeofcallback(&out, NULL), 0);
    T_GE((int64_t)out.tv_sec * 1000000 + out.tv_usec, at - 1000);
  }
  ev_spin_until(&done, 1, 5000);
  T_EQ(done, 1);
  if (how == 2) {
    T_EQ(view_preps, 2);
    T_EQ(view_cleanups, 2);
    T_PTR_EQ(view_prep_e, (eventer_t)view_e);
  }
  if (how == 1) mtev_log_stream_set_enabled(eventer_deb, 0);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

static void test_callback_view(void) { callback_view(0); }
static void test_callback_view_debug(void) { callback_view(1); }
/* last: a context class stays registered for the rest of the process */
static void test_callback_view_contexts(void) { callback_view(2); }

T_MAIN({"skip_after_write_and_short_read", test_skip_after_write_and_short_read},
       {"skip_data_already_there", test_skip_data_already_there},
       {"skip_respects_timeouts_and_cancel",
        test_skip_respects_timeouts_and_cancel},
       {"skip_regular_file", test_skip_regular_file},
       {"buffering_opset_never_skips", test_buffering_opset_never_skips},
       {"set_unbuffered_errors", test_set_unbuffered_errors},
       {"aco_event_state", test_aco_event_state},
       {"back_to_classic", test_back_to_classic},
       {"default_timeouts", test_default_timeouts},
       {"cancel_then_free_while_parked", test_cancel_then_free_while_parked},
       {"close_then_free_while_parked", test_close_then_free_while_parked},
       {"two_readers_one_cancelled", test_two_readers_one_cancelled},
       {"free_while_skipped_read_times_out",
        test_free_while_skipped_read_times_out},
       {"skip_eof", test_skip_eof},
       {"posix_direct_calls", test_posix_direct_calls},
       {"pipe_and_sigpipe", test_pipe_and_sigpipe},
       {"zero_length_read", test_zero_length_read},
       {"eagain_errno", test_eagain_errno},
       {"wait_then_eof_or_reset", test_wait_then_eof_or_reset},
       {"remove_and_free_while_dispatched",
        test_remove_and_free_while_dispatched},
       {"callback_view", test_callback_view},
       {"callback_view_debug", test_callback_view_debug},
       {"callback_view_contexts", test_callback_view_contexts})
