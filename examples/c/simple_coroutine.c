/*
 * simple_coroutine.c - the seed's "Starting a simple co-routine" example.
 *
 * The part between the "seed" markers is the seed document's code token
 * for token (only re-indented); this file adds the #include lines and a
 * main.  main runs the loop on one thread, adds a classic timer that ticks
 * every 500 ms next to the sleeping coroutine, and stops the loop after
 * 5 seconds, so the coroutine wakes twice.  Every log line is prefixed with
 * the time since start and the thread that wrote it (a log writer), which
 * is what examples/c/simple_coroutine.check looks at.
 *
 *   cc simple_coroutine.c $(pkg-config --cflags --libs --static acoeventer)
 */
#include <acoeventer.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- seed: "Starting a simple co-routine" ---------------------------------- */

static void my_coroutine(void) {
  struct timeval *sleep_time = eventer_aco_arg();
  while(1) {
    mtev_aco_sleep(sleep_time);
    mtevL(mtev_error, "Waking up to do something\n");
  }
  aco_exit();
}
void calling_function(void) {
  struct timeval *sleep_time = malloc(sizeof(*sleep_time));
  sleep_time->tv_sec = 2;
  sleep_time->tv_usec = 0;
  eventer_aco_start(my_coroutine, sleep_time);
}

/* ---- end of the seed's code ------------------------------------------------ */

static struct timespec t0;

/* "<seconds since start> tid=<thread> [stream] message" on stderr */
static void stamp_writer(mtev_log_stream_t ls, const char *line, size_t len,
                         void *closure) {
  (void)closure;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double s = (double)(now.tv_sec - t0.tv_sec) +
             (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
  fprintf(stderr, "%.3f tid=%ld [%s] %.*s", s, (long)syscall(SYS_gettid),
          mtev_log_stream_get_name(ls), (int)len, line);
}

/* a classic timer event that re-arms itself: other work on the same loop */
static int tick(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)e, (void)mask, (void)now;
  int *n = closure;
  mtevL(mtev_notice, "tick %d\n", ++*n);
  eventer_add_in_s_us(tick, n, 0, 500000);
  return 0;
}

static int stop(eventer_t e, int mask, void *closure, struct timeval *now) {
  (void)e, (void)mask, (void)closure, (void)now;
  mtevL(mtev_notice, "stopping\n");
  eventer_shutdown();
  return 0;
}

int main(void) {
  static int ticks;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  mtev_log_set_writer(stamp_writer, NULL);
  /* one loop: the coroutine and the timers share this thread */
  if (eventer_impl_propset("concurrency", "1") != 0 || eventer_init() != 0) {
    perror("eventer_init");
    return 1;
  }
  mtevL(mtev_notice, "started\n");
  calling_function();
  eventer_add_in_s_us(tick, &ticks, 0, 500000);
  eventer_add_in_s_us(stop, NULL, 5, 0);
  eventer_loop(); /* exits the process once stopped */
  return 0;
}
