/*
 * eventer_aco_opset.c - a libmtev-style program using the aco opset:
 * <eventer/eventer_aco_opset.h> (libmtev's header for converting events)
 * with the eventer_aco_* calls of <eventer/eventer.h>.  A coroutine
 * converts a classic fd event with eventer_set_eventer_aco(), answers
 * lines until the peer is quiet for 200 ms, and then says "bye!" as the
 * seed's listener does (errno == ETIME on a timeout).
 *
 * Checked: eventer_is_aco(NULL) tells a coroutine from the loop's own
 * context; eventer_is_aco(e) tells a converted event; a classic
 * eventer_read on an aco event acts as its aco counterpart.
 */
#include <eventer/eventer.h>
#include <eventer/eventer_aco_opset.h>
#include <mtev_log.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int sv[2];
static volatile int finished, in_coroutine, converted, said_bye;

static int
noop_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)e; (void)mask; (void)closure; (void)now;
  return 0;
}

static void
talker(void) {
  eventer_t classic = eventer_aco_arg();
  struct timeval quiet = { 0, 200000 };
  char buff[128];
  int rv, mask;

  in_coroutine = eventer_is_aco(NULL);
  eventer_aco_t e = eventer_set_eventer_aco(classic);
  converted = eventer_is_aco((eventer_t)e);

  /* the classic call on an aco event: a blocking-style read */
  rv = eventer_read((eventer_t)e, buff, sizeof(buff), &mask);
  mtevAssert(rv == 6 && !memcmp(buff, "hello\n", 6));
  eventer_aco_write(e, "thanks!\n", 8, NULL);

  while(1) {
    rv = eventer_aco_read(e, buff, sizeof(buff), &quiet);
    if(rv == -1) {
      if(errno == ETIME) {
        eventer_aco_write(e, "bye!\n", 5, NULL);
        said_bye = 1;
      }
      break;
    }
    if(eventer_aco_write(e, "thanks!\n", 8, NULL) < 0) break;
  }
  eventer_aco_close(e);
  eventer_aco_free(e);
  finished = 1;
  aco_exit();
}

int main(void) {
  char buf[64];
  ssize_t n;
  size_t got = 0;
  int i;

  mtevAssert(eventer_impl_propset("concurrency", "1") == 0);
  if(eventer_init() == -1) return 2;
  mtevAssert(eventer_is_aco(NULL) == mtev_false);
  mtevAssert(socketpair(AF_UNIX, SOCK_STREAM|NE_SOCK_CLOEXEC, 0, sv) == 0);
  eventer_set_fd_nonblocking(sv[0]);
  eventer_aco_start(talker, eventer_alloc_fd(noop_cb, NULL, sv[0], EVENTER_READ));
  eventer_loop_return();

  mtevAssert(write(sv[1], "hello\n", 6) == 6);
  while(got < 8 && (n = read(sv[1], buf + got, sizeof(buf) - got)) > 0) got += n;
  mtevAssert(got == 8 && !memcmp(buf, "thanks!\n", 8));
  /* now stay quiet: the coroutine times out and says bye */
  got = 0;
  while(got < 5 && (n = read(sv[1], buf + got, sizeof(buf) - got)) > 0) got += n;
  mtevAssert(got == 5 && !memcmp(buf, "bye!\n", 5));
  for(i=0; i<5000 && !finished; i++) usleep(1000);
  mtevAssert(finished && in_coroutine && converted && said_bye);
  close(sv[1]);
  eventer_shutdown();
  eventer_loop_wait();
  eventer_fini();
  printf("eventer_aco_opset: ok\n");
  return 0;
}
