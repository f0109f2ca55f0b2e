/*
 * bench_eventer.c - per-event costs of the C eventer, printed as
 * "<metric> <nanoseconds>" lines for bench/eventer/run.sh, which puts them
 * next to the Go peer's figures (gopeer/main.go) from the same run.
 *
 *   timer_add_fire_ns     eventer_add_in(0) + dispatch, per timer
 *   timer_node_fire_ns    intrusive node add + fire (coroutine sleeps)
 *   fd_dispatch_ns        one pipe hop: readiness dispatch + read + write
 *   xthread_trigger_p50/p99_ns  eventer_trigger from another thread until
 *                         the callback runs on an idle (sleeping) loop
 *   xthread_task_p50/p99_ns     the same with eventer_task_post_to
 *   jobq_roundtrip_p50/p99/avg_ns  loop -> job thread (WORK, CLEANUP) ->
 *                         COMPLETE back on the loop, one job at a time
 */
#include "acoeventer.h"

#define BENCH_NAME "bench_eventer"
#include "../bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) { return eventer_mono_ns(); }

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void percentiles(const char *name, uint64_t *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp_u64);
  uint64_t sum = 0;
  for (int i = 0; i < n; i++) sum += v[i];
  printf("%s_p50_ns %llu\n", name, (unsigned long long)v[n / 2]);
  printf("%s_p99_ns %llu\n", name, (unsigned long long)v[n * 99 / 100]);
  printf("%s_avg_ns %llu\n", name, (unsigned long long)(sum / (uint64_t)n));
}

static volatile int counter; /* loop thread only */

static void spin_until(int want) {
  struct timeval w = {0, 10000};
  while (counter < want)
    if (eventer_run_once(NULL, &w) < 0) die("run_once");
}

/* ---- timers ---------------------------------------------------------------------- */

static int timer_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  counter++;
  return 0;
}

static void node_fire(eventer_timer_node_t *n, struct timeval *now) {
  (void)n, (void)now;
  counter++;
}

static void bench_timers(int n) {
  counter = 0;
  uint64_t t0 = now_ns();
  for (int i = 0; i < n; i++)
    if (!eventer_add_in_s_us(timer_cb, NULL, 0, 0)) die("eventer_add_in");
  spin_until(n);
  printf("timer_add_fire_ns %.1f\n", (double)(now_ns() - t0) / n);

  eventer_timer_node_t *nodes = calloc(n > 0 ? (size_t)n : 1u, sizeof(*nodes));
  counter = 0;
  t0 = now_ns();
  for (int i = 0; i < n; i++) {
    nodes[i].fire = node_fire;
    eventer_timer_node_add(&nodes[i], NULL);
  }
  spin_until(n);
  printf("timer_node_fire_ns %.1f\n", (double)(now_ns() - t0) / n);
  free(nodes);
}

/* ---- fd dispatch: two pipes, each hop read + write the other ---------------------------- */

static int p1[2], p2[2];

static int hop_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)now;
  int *out = c;
  char b;
  int m;
  if (eventer_read(e, &b, 1, &m) != 1) return EVENTER_READ;
  counter++;
  if (write(*out, &b, 1) != 1) die("write");
  return EVENTER_READ;
}

static void bench_fd(int n) {
  if (pipe2(p1, O_NONBLOCK) || pipe2(p2, O_NONBLOCK)) die("pipe2");
  eventer_t a = eventer_alloc_fd(hop_cb, &p2[1], p1[0], EVENTER_READ);
  eventer_t b = eventer_alloc_fd(hop_cb, &p1[1], p2[0], EVENTER_READ);
  eventer_add(a);
  eventer_add(b);
  counter = 0;
  uint64_t t0 = now_ns();
  if (write(p1[1], "x", 1) != 1) die("write");
  spin_until(n);
  printf("fd_dispatch_ns %.1f\n", (double)(now_ns() - t0) / n);
  eventer_free(eventer_remove(a));
  eventer_free(eventer_remove(b));
  close(p1[0]), close(p1[1]), close(p2[0]), close(p2[1]);
}

/* ---- cross-thread latency to an idle loop (loop 1, its own thread) --------------------------- */

static uint64_t sent_at;   /* written by the sender before posting */
static uint64_t latency;   /* __atomic: set by the loop, 0 while pending */

static int xt_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  __atomic_store_n(&latency, now_ns() - sent_at, __ATOMIC_RELEASE);
  return 0;
}

static void xt_task(eventer_task_t *t, struct timeval *now) {
  (void)t, (void)now;
  __atomic_store_n(&latency, now_ns() - sent_at, __ATOMIC_RELEASE);
}

static void *driver1(void *arg) {
  (void)arg;
  if (eventer_loop_attach(1) != 0) die("attach 1");
  while (eventer_run_once(NULL, NULL) != EVENTER_RUN_STOPPED) {
  }
  eventer_loop_detach();
  return NULL;
}

/* 20 us without sleeping: long enough for loop 1 to be back in
 * epoll_wait, short enough not to add timer-slack noise */
static void pause_20us(void) {
  uint64_t end = now_ns() + 20000;
  while (now_ns() < end) {
  }
}

static uint64_t wait_latency(void) {
  uint64_t v;
  while (!(v = __atomic_load_n(&latency, __ATOMIC_ACQUIRE))) {
  }
  return v;
}

static void bench_cross_thread(int n) {
  uint64_t *v = calloc(n > 0 ? (size_t)n : 1u, sizeof(*v));
  eventer_loop_t *l1 = eventer_pool_loop(eventer_pool("default"), 1);
  for (int i = 0; i < n + 100; i++) {
    eventer_t e = eventer_alloc_timer(xt_cb, NULL, NULL);
    eventer_set_owner_loop(e, l1);
    pause_20us(); /* let loop 1 fall asleep in epoll_wait */
    __atomic_store_n(&latency, 0, __ATOMIC_RELEASE);
    sent_at = now_ns();
    eventer_trigger(e, EVENTER_TIMER);
    uint64_t lat = wait_latency();
    if (i >= 100) v[i - 100] = lat; /* after a warm-up */
  }
  percentiles("xthread_trigger", v, n);
  static eventer_task_t task = {NULL, xt_task};
  for (int i = 0; i < n + 100; i++) {
    pause_20us();
    __atomic_store_n(&latency, 0, __ATOMIC_RELEASE);
    sent_at = now_ns();
    eventer_task_post_to(l1, &task);
    uint64_t lat = wait_latency();
    if (i >= 100) v[i - 100] = lat;
  }
  percentiles("xthread_task", v, n);
  free(v);
}

/* ---- job queue round trip ------------------------------------------------------------------------
 * Each COMPLETE callback records its job's round trip and queues the next
 * job, so the loop sleeps in epoll_wait between jobs exactly as a service
 * waiting on blocking work does. */

static eventer_jobq_t *bench_q;
static uint64_t *rt, job_t0;
static int jobs_left, job_i;

static int job_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  if (mask != EVENTER_ASYNCH_COMPLETE) return 0;
  rt[job_i++] = now_ns() - job_t0;
  counter++;
  if (--jobs_left > 0) {
    job_t0 = now_ns();
    eventer_add_asynch(bench_q, eventer_alloc_asynch(job_cb, NULL));
  }
  return 0;
}

static void bench_jobq(int n) {
  rt = calloc(n > 0 ? (size_t)n : 1u, sizeof(*rt));
  bench_q = eventer_jobq_create("bench");
  eventer_jobq_set_concurrency(bench_q, 4);
  counter = job_i = 0;
  jobs_left = n;
  job_t0 = now_ns();
  eventer_add_asynch(bench_q, eventer_alloc_asynch(job_cb, NULL));
  spin_until(n);
  percentiles("jobq_roundtrip", rt, n);
  free(rt);
}

static double scale = 1.0;

/* an iteration count, at least 100 whatever the scale */
static int count(double base) {
  double n = base * scale;
  return n < 100 ? 100 : n > 1e8 ? 100000000 : (int)n;
}

int main(int argc, char **argv) {
  if (argc > 1) scale = atof(argv[1]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  eventer_impl_propset("concurrency", "2");
  if (eventer_init_external() != 0 || eventer_loop_attach(0) != 0) die("init");
  pthread_t th;
  pthread_create(&th, NULL, driver1, NULL);
  bench_timers(count(200000));
  bench_fd(count(200000));
  bench_cross_thread(count(20000));
  bench_jobq(count(20000));
  eventer_shutdown();
  pthread_join(th, NULL);
  eventer_fini();
  return 0;
}
