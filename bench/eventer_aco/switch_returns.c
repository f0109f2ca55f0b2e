/*
 * switch_returns.c - what a return across a coroutine switch costs.
 *
 * A resume + yield pair of one coroutine, with no syscalls and nothing to
 * copy, where each side returns through 0, 1 or 2 frames that were
 * entered before the switch: the coroutine yields from inside a function
 * it called (and returns from it once resumed), and the main context
 * resumes from inside one or two functions it called (and returns from
 * them once the coroutine yields).  After a switch the CPU's
 * return-address predictor holds the other context's calls, so each such
 * return is mispredicted; the difference between the rows is their cost.
 * The coroutine layer keeps these frames few for that reason
 * (eventer_aco_impl.h: the yield of an fd wait is made from the call's
 * own frame, and the loop resumes an fd waiter from its own frame).
 *
 *   gcc -O2 -Ibuild/include bench/eventer_aco/switch_returns.c \
 *       build/lib/libacoeventer.a -lssl -lcrypto -lm -lpthread \
 *       -o /tmp/switch_returns && taskset -c 0 /tmp/switch_returns
 *
 * Prints ns per resume + yield pair for each case, three rounds.  With
 * an argument `syscall`, the coroutine makes one read(2) that finds
 * nothing (EAGAIN, a short kernel path) before each yield, as an fd wait
 * does before it parks, and rounds are 1/5 as long.
 */
#include "aco.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static aco_t *co;
static volatile long sink;
static int sys_fd = -1; /* >= 0: read it (nothing there) before a yield */

static void before_yield(void) {
  char b;
  if (sys_fd >= 0 && read(sys_fd, &b, 1) > 0) sink++;
}

#define BARRIER() __asm__ volatile("" ::: "memory")

/* the coroutine: yields flat, or from inside one call */
static void co_flat(void) {
  for (;;) {
    before_yield();
    aco_yield();
    sink++;
  }
}
__attribute__((noinline)) static void co_call(void) {
  before_yield();
  aco_yield();
  BARRIER();
}
static void co_frame(void) {
  for (;;) {
    co_call();
    sink++;
  }
}

/* the main context: resumes flat, or from inside one or two calls */
__attribute__((noinline)) static void main_1(void) {
  aco_resume(co);
  BARRIER();
}
__attribute__((noinline)) static void main_2(void) {
  main_1();
  BARRIER();
}

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

#define N 5000000L

int main(int argc, char **argv) {
  long n = N;
  int sv[2];
  if (argc > 1 && !strcmp(argv[1], "syscall")) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
      perror("socketpair");
      return 1;
    }
    sys_fd = sv[0];
    n = N / 5;
  }
  aco_thread_init(NULL);
  aco_t *m = aco_create(NULL, NULL, 0, NULL, NULL);
  aco_share_stack_t *ss = aco_share_stack_new(0);
  static const struct {
    const char *name;
    void (*fn)(void);
    int main_frames;
  } cases[] = {
      {"main 0 frames, coroutine 0", co_flat, 0},
      {"main 0 frames, coroutine 1", co_frame, 0},
      {"main 1 frame,  coroutine 0", co_flat, 1},
      {"main 1 frame,  coroutine 1", co_frame, 1},
      {"main 2 frames, coroutine 1", co_frame, 2},
  };
  for (int round = 0; round < 3; round++) {
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
      co = aco_create(m, ss, 0, cases[c].fn, NULL);
      double t0 = now_ns();
      for (long i = 0; i < n; i++) {
        if (cases[c].main_frames == 0)
          aco_resume(co);
        else if (cases[c].main_frames == 1)
          main_1();
        else
          main_2();
      }
      double t1 = now_ns();
      printf("%-30s %7.1f ns per resume + yield\n", cases[c].name,
             (t1 - t0) / (double)n);
      aco_destroy(co); /* suspended: dropped without running again */
    }
  }
  aco_share_stack_destroy(ss);
  aco_destroy(m);
  return 0;
}
