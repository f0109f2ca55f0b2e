/*
 * eventer_basics.c - a program written against libmtev's eventer API the
 * way libmtev's own programs use it (includes, calls, return types), built
 * against the installed headers with -Wall -Werror and run by
 * scripts/test-compat-libmtev.sh.  It checks what libmtev documents:
 *
 *   - eventer_loop_return() starts every loop on its own thread and returns;
 *   - callbacks see eventer_get_this_event(), the callback time, and a
 *     thread name of the form e:<pool>/<n> (never NULL);
 *   - timers, recurrent events, fd events and triggers run on their owner;
 *   - asynch jobs run WORK and CLEANUP on a q:<queue>/<n> thread and
 *     COMPLETE on the owner loop; eventer_free says whether it freed.
 *
 * Exits 0 when every check holds; a failed mtevAssert aborts.
 */
#include <eventer/eventer.h>
#include <mtev_log.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define APPNAME "eventer_basics"

static volatile int timers_fired, recurrences, bytes_echoed, jobs_completed;
static volatile int work_on_job_thread, complete_on_loop;

static int
timer_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  struct timeval cbtime;
  (void)closure;
  mtevAssert(mask == EVENTER_TIMER);
  mtevAssert(eventer_get_this_event() == e);
  mtevAssert(eventer_gettimeofcallback(&cbtime, NULL) == 0);
  mtevAssert(cbtime.tv_sec == now->tv_sec && cbtime.tv_usec == now->tv_usec);
  mtevAssert(eventer_callback_us() / 1000 == eventer_callback_ms());
  mtevAssert(eventer_thread_check(e) == 0);
  mtevL(mtev_debug, "timer fired on %s\n", eventer_get_thread_name());
  mtevAssert(!strncmp(eventer_get_thread_name(), "e:default/", 10));
  __atomic_add_fetch(&timers_fired, 1, __ATOMIC_SEQ_CST);
  return 0;
}

static int
recurrent_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)e; (void)closure; (void)now;
  mtevAssert(mask == EVENTER_RECURRENT);
  if(__atomic_add_fetch(&recurrences, 1, __ATOMIC_SEQ_CST) == 3) {
    eventer_t removed = eventer_remove_recurrent(e);
    mtevAssert(removed == e);
    mtevAssert(eventer_free(removed) == mtev_false); /* the loop holds it */
  }
  return 0;
}

/* echoes what arrives back to the writer, until EOF */
static int
echo_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  char buf[64];
  int len, newmask;
  (void)closure; (void)now;
  if(mask & EVENTER_EXCEPTION) goto done;
  while((len = eventer_read(e, buf, sizeof(buf), &newmask)) > 0) {
    mtevAssert(eventer_write(e, buf, len, &newmask) == len);
    __atomic_add_fetch(&bytes_echoed, len, __ATOMIC_SEQ_CST);
  }
  if(len < 0 && errno == EAGAIN) return newmask | EVENTER_EXCEPTION;
 done:
  eventer_remove_fde(e);
  eventer_close(e, &newmask);
  return 0;
}

static int
job_cb(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)closure; (void)now;
  switch(mask) {
    case EVENTER_ASYNCH_WORK:
      mtevAssert(eventer_get_this_event() == e);
      if(!strncmp(eventer_get_thread_name(), "q:default_queue/", 16) &&
         !eventer_in_loop())
        __atomic_add_fetch(&work_on_job_thread, 1, __ATOMIC_SEQ_CST);
      break;
    case EVENTER_ASYNCH_CLEANUP:
      break;
    case EVENTER_ASYNCH_COMPLETE:
      if(eventer_in_loop())
        __atomic_add_fetch(&complete_on_loop, 1, __ATOMIC_SEQ_CST);
      __atomic_add_fetch(&jobs_completed, 1, __ATOMIC_SEQ_CST);
      break;
  }
  return 0;
}

static int
child_main(void) {
  int i, sv[2];
  char buf[16];
  eventer_t e;

  eventer_name_callback("timer_cb", timer_cb);
  eventer_name_callback("echo_cb", echo_cb);
  mtevAssert(eventer_impl_propset("concurrency", "2") == 0);
  if(eventer_init() == -1) {
    mtevL(mtev_stderr, "Cannot initialize eventer\n");
    return 2;
  }
  mtevAssert(!strcmp(eventer_name_for_callback(timer_cb), "timer_cb"));
  mtevAssert(eventer_callback_for_name("echo_cb") == echo_cb);

  for(i=0; i<4; i++) eventer_add_in_s_us(timer_cb, NULL, 0, 1000 * i);
  eventer_add_recurrent(eventer_alloc_recurrent(recurrent_cb, NULL));

  mtevAssert(socketpair(AF_UNIX, SOCK_STREAM|NE_SOCK_CLOEXEC, 0, sv) == 0);
  eventer_set_fd_nonblocking(sv[0]);
  e = eventer_alloc_fd(echo_cb, NULL, sv[0], EVENTER_READ|EVENTER_EXCEPTION);
  eventer_set_owner(e, EVENTER_CHOOSE_THREAD_FOR_EVENT_FD(e));
  eventer_add(e);

  for(i=0; i<5; i++)
    eventer_add_asynch(NULL, eventer_alloc_asynch(job_cb, NULL));

  /* libmtev: starts the loops on their own threads and returns */
  eventer_loop_return();
  mtevAssert(!eventer_in_loop());

  mtevAssert(write(sv[1], "hello", 5) == 5);
  mtevAssert(read(sv[1], buf, sizeof(buf)) == 5 && !memcmp(buf, "hello", 5));
  close(sv[1]);

  for(i=0; i<10000; i++) {
    if(timers_fired == 4 && recurrences >= 3 && jobs_completed == 5 &&
       bytes_echoed == 5) break;
    usleep(1000);
  }
  mtevL(mtev_notice, "timers %d, recurrences %d, echoed %d, jobs %d\n",
        timers_fired, recurrences, bytes_echoed, jobs_completed);
  mtevAssert(timers_fired == 4);
  mtevAssert(recurrences >= 3);
  mtevAssert(bytes_echoed == 5);
  mtevAssert(jobs_completed == 5);
  mtevAssert(work_on_job_thread == 5);
  mtevAssert(complete_on_loop == 5);
  return 0;
}

int main(int argc, char **argv) {
  (void)argc; (void)argv;
  if(child_main() != 0) return 1;
  printf("%s: ok\n", APPNAME);
  return 0;
}
