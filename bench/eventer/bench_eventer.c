/*
 * bench_eventer.c - per-event costs of the C eventer, printed as
 * "<metric> <value>" lines for bench/eventer/run.sh, which puts them next
 * to the Go peer's figures (gopeer/main.go) from the same run.
 *
 *   bench_eventer [scale [section...]]  the latency figures below (all,
 *                                  or the sections named: timers fd
 *                                  xthread jobq aco neighbour)
 *   bench_eventer idle [seconds]   CPU at rest (below)
 *
 *   timer_add_fire_ns     eventer_add_in(0) + dispatch, per timer
 *   timer_node_fire_ns    intrusive node add + fire (coroutine sleeps)
 *   fd_dispatch_ns        one pipe hop: readiness dispatch + read + write
 *   xthread_trigger_*     eventer_trigger from another thread until the
 *                         callback runs on loop 1 (its own thread):
 *       _b2b_p50/p99_ns   back to back: the next trigger is sent as soon
 *                         as the callback of the previous one has run
 *       _p50/p99_ns       after a 20 us pause (the loop has just gone idle)
 *       _asleep_p50/p99_ns after a 1 ms pause: longer than any spin, so the
 *                         loop sleeps in epoll_wait and must be woken
 *   xthread_task_*        the same three with eventer_task_post_to
 *   jobq_roundtrip_p50/p99/avg_ns  loop -> job thread (WORK, CLEANUP) ->
 *                         COMPLETE back on the loop, one job at a time, the
 *                         next one queued from COMPLETE (back to back)
 *   aco_asynch_roundtrip_p50/p99/avg_ns  eventer_aco_simple_asynch from a
 *                         coroutine on the loop, back to back: job thread
 *                         WORK, COMPLETE, the coroutine resumed
 *   *_cpu_ns              the process's CPU time (user + system, every
 *                         thread) per round trip over that figure: what a
 *                         hand-off costs in CPU, spinning included
 *   xthread_*_loop_cpu_ns CPU time of loop 1's thread per post
 *   *_csw                 context switches per round trip (a thread that
 *                         blocks, or is preempted)
 *   neighbour_*           back-to-back job round trips for 1 s (x scale)
 *                         next to a thread that only computes: round trips
 *                         per second, and the neighbour's rate as a share of
 *                         its rate alone (what spinning costs it)
 *
 * idle: loop 0 (this thread), loop 1 (a thread of its own) and a job
 *   queue of 4 threads kept alive (floor 4) first serve a burst of back-to-
 *   back round trips (so any spin budget is at its highest), then nothing
 *   for `seconds`; idle_cpu_pct is the process's CPU time over that time,
 *   in percent of one core, idle_wakeups_per_s its context switches.
 *
 * Pinning: BENCH_PIN="a,b" puts loop 0 / the sender of the cross-thread
 * figures on CPU a, and loop 1 and the job threads on CPU b; unset, the
 * kernel places every thread.
 */
#include "acoeventer.h"

#define BENCH_NAME "bench_eventer"
#include "../bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
  printf("%s_p999_ns %llu\n", name, (unsigned long long)v[n * 999 / 1000]);
  printf("%s_avg_ns %llu\n", name, (unsigned long long)(sum / (uint64_t)n));
}

/* CPU time of the whole process (every thread), ns, and its context
 * switches (a thread that blocks, or is preempted) */
static long csw_count;
static uint64_t cpu_ns(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) die("getrusage");
  csw_count = ru.ru_nvcsw + ru.ru_nivcsw;
  return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
         (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

/* "<name>_cpu_ns" and "<name>_csw": CPU and context switches per item
 * since cpu_ns() returned c0 (and csw_count was csw0) */
static void cpu_per(const char *name, uint64_t c0, long csw0, int n) {
  uint64_t c = cpu_ns() - c0;
  printf("%s_cpu_ns %.1f\n", name, (double)c / n);
  printf("%s_csw %.2f\n", name, (double)(csw_count - csw0) / n);
}

/* ---- pinning --------------------------------------------------------------------- */

static int cpu_a = -1, cpu_b = -1; /* BENCH_PIN */

static void pin_to(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) die("sched_setaffinity");
}

/* job threads pin themselves in their first WORK */
static __thread int job_pinned;
static void pin_job_thread(void) {
  if (!job_pinned) {
    pin_to(cpu_b);
    job_pinned = 1;
  }
}

static volatile int counter; /* loop thread only */
static double scale = 1.0;  /* iteration counts (and the neighbour's time) */

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

/* ---- cross-thread latency to loop 1 (its own thread) ------------------------------------ */

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

static clockid_t loop1_clock; /* loop 1's thread CPU clock */

static uint64_t loop1_cpu_ns(void) {
  struct timespec ts;
  if (clock_gettime(loop1_clock, &ts) != 0) die("clock_gettime(loop 1)");
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *driver1(void *arg) {
  (void)arg;
  pin_to(cpu_b);
  if (eventer_loop_attach(1) != 0) die("attach 1");
  while (eventer_run_once(NULL, NULL) != EVENTER_RUN_STOPPED) {
  }
  eventer_loop_detach();
  return NULL;
}

/* busy-waits (a sleep would add the sender's own wake-up to the figure) */
static void pause_ns(uint64_t ns) {
  uint64_t end = now_ns() + ns;
  while (now_ns() < end) {
  }
}

static uint64_t wait_latency(void) {
  uint64_t v;
  while (!(v = __atomic_load_n(&latency, __ATOMIC_ACQUIRE))) {
  }
  return v;
}

static eventer_loop_t *loop1;

static void post_trigger(void) {
  eventer_t e = eventer_alloc_timer(xt_cb, NULL, NULL);
  eventer_set_owner_loop(e, loop1);
  sent_at = now_ns();
  eventer_trigger(e, EVENTER_TIMER);
}

static void post_task(void) {
  static eventer_task_t task = {NULL, xt_task};
  sent_at = now_ns();
  eventer_task_post_to(loop1, &task);
}

/* n posts (after 100 to warm up), each `pause` ns after the previous one
 * ran; the latency of each and the CPU per post. */
static void cross_thread(const char *name, void (*post)(void), uint64_t pause,
                         int n) {
  uint64_t *v = calloc((size_t)n, sizeof(*v)), c0 = 0, l0 = 0;
  long csw0 = 0;
  for (int i = 0; i < n + 100; i++) {
    if (i == 100) c0 = cpu_ns(), csw0 = csw_count, l0 = loop1_cpu_ns();
    if (pause) pause_ns(pause);
    __atomic_store_n(&latency, 0, __ATOMIC_RELEASE);
    post();
    uint64_t lat = wait_latency();
    if (i >= 100) v[i - 100] = lat;
  }
  /* what the receiving loop spends per post (its spin included) */
  printf("%s_loop_cpu_ns %.1f\n", name, (double)(loop1_cpu_ns() - l0) / n);
  if (!pause) /* with a pause the sender's busy wait would count */
    cpu_per(name, c0, csw0, n);
  percentiles(name, v, n);
  free(v);
}

static void bench_cross_thread(int n) {
  cross_thread("xthread_trigger_b2b", post_trigger, 0, n);
  cross_thread("xthread_trigger", post_trigger, 20000, n);
  cross_thread("xthread_trigger_asleep", post_trigger, 1000000, n / 10);
  cross_thread("xthread_task_b2b", post_task, 0, n);
  cross_thread("xthread_task", post_task, 20000, n);
  cross_thread("xthread_task_asleep", post_task, 1000000, n / 10);
}

/* ---- job queue round trip ------------------------------------------------------------------------
 * Each COMPLETE callback records its job's round trip and queues the next
 * job, so the loop waits for the job thread between jobs exactly as a
 * service waiting on blocking work does. */

static eventer_jobq_t *bench_q;
static uint64_t *rt, job_t0;
static int jobs_left, job_i;

static int job_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  if (mask == EVENTER_ASYNCH_WORK) pin_job_thread();
  if (mask != EVENTER_ASYNCH_COMPLETE) return 0;
  if (rt) rt[job_i++] = now_ns() - job_t0;
  counter++;
  if (--jobs_left > 0) {
    job_t0 = now_ns();
    eventer_add_asynch(bench_q, eventer_alloc_asynch(job_cb, NULL));
  }
  return 0;
}

static void jobq_run(int n, uint64_t *samples) {
  rt = samples;
  counter = job_i = 0;
  jobs_left = n;
  job_t0 = now_ns();
  eventer_add_asynch(bench_q, eventer_alloc_asynch(job_cb, NULL));
  spin_until(n);
  rt = NULL;
}

static void bench_jobq(int n) {
  uint64_t *v = calloc((size_t)n, sizeof(*v));
  jobq_run(100, NULL); /* warm-up: threads started */
  uint64_t c0 = cpu_ns();
  long csw0 = csw_count;
  jobq_run(n, v);
  cpu_per("jobq_roundtrip", c0, csw0, n);
  percentiles("jobq_roundtrip", v, n);
  free(v);
}

/* ---- eventer_aco_simple_asynch from a coroutine --------------------------------------------- */

static uint64_t *aco_rt;
static int aco_n;

static void asynch_noop(void *closure) {
  (void)closure;
  pin_job_thread();
}

static void aco_roundtrips(void) {
  for (int i = 0; i < aco_n; i++) {
    uint64_t t0 = now_ns();
    eventer_aco_simple_asynch(asynch_noop, NULL);
    if (aco_rt) aco_rt[i] = now_ns() - t0;
  }
  counter = 1;
}

static void aco_run(int n, uint64_t *samples) {
  aco_rt = samples;
  aco_n = n;
  counter = 0;
  eventer_aco_start(aco_roundtrips, NULL);
  spin_until(1);
}

static void bench_aco_asynch(int n) {
  uint64_t *v = calloc((size_t)n, sizeof(*v));
  aco_run(100, NULL);
  uint64_t c0 = cpu_ns();
  long csw0 = csw_count;
  aco_run(n, v);
  cpu_per("aco_asynch_roundtrip", c0, csw0, n);
  percentiles("aco_asynch_roundtrip", v, n);
  free(v);
}

/* ---- round trips next to a CPU-bound neighbour -------------------------------------------------
 * One thread that only computes (unpinned) while the loop runs back-to-back
 * job round trips for a while: what spinning costs the neighbour.  The
 * neighbour's rate alone and next to the round trips; round trips per
 * second next to it. */

static int neighbour_stop;            /* __atomic */
static uint64_t neighbour_iters;      /* __atomic */

static void *neighbour_main(void *arg) {
  (void)arg;
  uint64_t n = 0, x = 1;
  while (!__atomic_load_n(&neighbour_stop, __ATOMIC_RELAXED)) {
    for (int i = 0; i < 1000; i++) x = x * 6364136223846793005u + 1442695040888963407u;
    n++;
  }
  __atomic_store_n(&neighbour_iters, n + (x == 42), __ATOMIC_RELEASE);
  return NULL;
}

/* the neighbour's iterations per second over `ms` while `work` runs */
static double neighbour_rate(int ms, int (*work)(uint64_t end)) {
  __atomic_store_n(&neighbour_stop, 0, __ATOMIC_RELAXED);
  pthread_t th;
  pthread_create(&th, NULL, neighbour_main, NULL);
  uint64_t t0 = now_ns(), end = t0 + (uint64_t)ms * 1000000u;
  int done = work(end);
  __atomic_store_n(&neighbour_stop, 1, __ATOMIC_RELAXED);
  pthread_join(th, NULL);
  double s = (double)(now_ns() - t0) / 1e9;
  if (done >= 0) printf("neighbour_jobq_rt_per_s %.0f\n", done / s);
  return (double)__atomic_load_n(&neighbour_iters, __ATOMIC_ACQUIRE) / s;
}

static int idle_for(uint64_t end) {
  while (now_ns() < end) usleep(1000);
  return -1;
}

static int jobq_until(uint64_t end) {
  int done = 0;
  while (now_ns() < end) {
    jobq_run(1000, NULL);
    done += 1000;
  }
  return done;
}

static void bench_neighbour(void) {
  int ms = (int)(1000 * scale) < 200 ? 200 : (int)(1000 * scale);
  jobq_run(1000, NULL);
  double alone = neighbour_rate(ms, idle_for);
  double with = neighbour_rate(ms, jobq_until);
  printf("neighbour_share_pct %.1f\n", 100.0 * with / alone);
}

/* ---- CPU at rest ------------------------------------------------------------------------------------ */

static int stop_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  counter = 1;
  return 0;
}

static void bench_idle(double seconds) {
  /* a burst first: every spin budget at its highest when the rest begins */
  jobq_run(2000, NULL);
  aco_run(2000, NULL);
  for (int i = 0; i < 2000; i++) {
    __atomic_store_n(&latency, 0, __ATOMIC_RELEASE);
    post_task();
    wait_latency();
  }
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  uint64_t c0 = cpu_ns(), w0 = now_ns();
  counter = 0;
  struct timeval in = {(time_t)seconds,
                       (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
  if (!eventer_add_in(stop_cb, NULL, in)) die("eventer_add_in");
  /* an iteration ends with a poll: after the stop timer's, at most 1 s */
  struct timeval sec = {1, 0};
  while (!counter)
    if (eventer_run_once(NULL, &sec) < 0) die("run_once");
  uint64_t c = cpu_ns() - c0, w = now_ns() - w0;
  getrusage(RUSAGE_SELF, &r1);
  long cs = (r1.ru_nvcsw - r0.ru_nvcsw) + (r1.ru_nivcsw - r0.ru_nivcsw);
  printf("idle_seconds %.1f\n", (double)w / 1e9);
  printf("idle_cpu_pct %.4f\n", 100.0 * (double)c / (double)w);
  printf("idle_wakeups_per_s %.1f\n", (double)cs / ((double)w / 1e9));
}

static int nsections;
static char **sections;

static int want(const char *section) {
  if (!nsections) return 1;
  for (int i = 0; i < nsections; i++)
    if (!strcmp(sections[i], section)) return 1;
  return 0;
}

/* an iteration count, at least 100 whatever the scale */
static int count(double base) {
  double n = base * scale;
  return n < 100 ? 100 : n > 1e8 ? 100000000 : (int)n;
}

int main(int argc, char **argv) {
  int idle = argc > 1 && !strcmp(argv[1], "idle");
  double idle_s = 10;
  if (idle && argc > 2) idle_s = atof(argv[2]);
  if (!idle && argc > 1) scale = atof(argv[1]);
  if (!idle && argc > 2) {
    nsections = argc - 2;
    sections = argv + 2;
  }
  const char *pin = getenv("BENCH_PIN");
  if (pin && *pin && sscanf(pin, "%d,%d", &cpu_a, &cpu_b) != 2)
    fail("BENCH_PIN is \"a,b\" (two CPU numbers)");
  setvbuf(stdout, NULL, _IOLBF, 0);
  eventer_impl_propset("concurrency", "2");
  if (eventer_init_external() != 0 || eventer_loop_attach(0) != 0) die("init");
  pin_to(cpu_a);
  loop1 = eventer_pool_loop(eventer_pool("default"), 1);
  pthread_t th;
  pthread_create(&th, NULL, driver1, NULL);
  if (pthread_getcpuclockid(th, &loop1_clock) != 0) die("pthread_getcpuclockid");
  bench_q = eventer_jobq_create("bench");
  eventer_jobq_set_concurrency(bench_q, 4);
  if (idle) {
    eventer_jobq_set_floor(bench_q, 4);
    bench_idle(idle_s);
  } else {
    if (want("timers")) bench_timers(count(200000));
    if (want("fd")) bench_fd(count(200000));
    if (want("xthread")) bench_cross_thread(count(20000));
    if (want("jobq")) bench_jobq(count(20000));
    if (want("aco")) bench_aco_asynch(count(20000));
    if (want("neighbour")) bench_neighbour();
  }
  eventer_shutdown();
  pthread_join(th, NULL);
  eventer_fini();
  return 0;
}
