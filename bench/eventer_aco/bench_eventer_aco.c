/*
 * bench_eventer_aco.c - what coroutines on the loop cost, each figure next
 * to its classic-callback peer measured in the same process.  Printed as
 * "<metric> <value>" lines for bench/eventer_aco/run.sh.
 *
 *   bench_eventer_aco cycle [n]      would-block-then-ready cycle
 *   bench_eventer_aco pingpong [n]   socketpair ping-pong round trips
 *   bench_eventer_aco pingpong-aco|pingpong-classic [n]   one side alone,
 *                                    one run (to count its syscalls or
 *                                    instructions)
 *   bench_eventer_aco cycle-aco|cycle-classic [n]   the same for the cycle
 *   bench_eventer_aco create [n]     create + run + end of a coroutine
 *   bench_eventer_aco mem [n] [sem|sem-timeout]   resident memory of n
 *                                    parked coroutines
 *
 * cycle: a coroutine reads 1 byte from a socketpair in a loop; the read
 *   would block, so it parks; the main context writes 1 byte to the peer
 *   end and runs one loop iteration (epoll reports the fd, the coroutine
 *   resumes inside the fd callback, reads the byte, tries again, gets
 *   EAGAIN and parks).  The peer: a classic fd callback doing exactly the
 *   same syscalls (read the byte, read again until EAGAIN).  The
 *   difference is the coroutine machinery: park, resume, bookkeeping.
 *   park_wake_cycle_ns measures that machinery alone (see park_wake()).
 *
 * pingpong: two coroutines, one byte back and forth over a socketpair
 *   (eventer_aco_write then eventer_aco_read on each side), against two
 *   classic fd callbacks (read 1 byte, write 1 byte back).  Round trips
 *   per second each, same loop, same socketpair type.
 *
 * create: what a coroutine per request costs (the HTTP engine's aco
 *   rules start one per request): eventer_aco_start of a function that
 *   returns at once, from the loop's main context (created, run, ended and
 *   its memory released or kept for the next, all inside the call), and of
 *   one that parks once (eventer_aco_park) and is woken by the main
 *   context before it ends, as a handler that waits for its response to be
 *   written.  Next to them, the floor: bare libaco on the same thread
 *   (aco_create, aco_resume, aco_exit, aco_destroy), which does no loop
 *   bookkeeping at all.
 *
 * mem: n coroutines, each parked on one semaphore (eventer_aco_sem_wait,
 *   with no timeout or with a 1 h timeout, which puts a timer on the loop's
 *   heap as a sleep does).  Resident memory before/after, per coroutine;
 *   the saved stack of each is read with eventer_aco_get_stats() after
 *   they are released (it is what was copied out at the park).
 *
 * The loop runs on the calling thread (eventer_init_external + attach),
 * pinned to one CPU (BENCH_CPU, default the last allowed).  BENCH_THREADS=1
 * starts one more thread first, which only sleeps: the process is then
 * multi-threaded, as every program with a job queue or a second loop is
 * (libc's read and write then do more per call: see eventer_aco_fd.c).  cycle and
 * pingpong report the median and the best of 9 runs of each side,
 * alternating which side runs first, in wall time and in the loop
 * thread's CPU time; and the median of 41 per-pair ratios of short runs
 * back to back (the steadiest figure on a machine shared with other
 * work: a pair's two runs see the same neighbours).
 */
#include "acoeventer.h"

#define BENCH_NAME "bench_eventer_aco"
#include "../bench_util.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

static uint64_t now_ns(void) { return eventer_mono_ns(); }

/* CPU time of this thread (user + system): on a machine shared with other
 * work it counts what the code costs, not the time others took the CPU. */
static uint64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
/* the CPU ns per operation of the last timed run (each run sets it) */
static double last_cpu;
static uint64_t cpu0;
static void cpu_start(void) { cpu0 = cpu_ns(); }
static void cpu_stop(long n) { last_cpu = (double)(cpu_ns() - cpu0) / (double)n; }

static void sockpair(int sv[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
    die("socketpair");
}

/* one loop iteration that never sleeps: everything measured here is ready
 * at once, and a sleep would only add a timeout to the figures */
static void turn(void) {
  struct timeval w = {0, 0};
  if (eventer_run_once(NULL, &w) < 0) die("run_once");
}

static volatile long counter; /* loop thread only */

static void spin_until(long want) {
  while (counter < want) turn();
}

/* an aco event for fd, inside the running coroutine */
static int unused_cb(eventer_t e, int m, void *c, struct timeval *n) {
  (void)e, (void)m, (void)c, (void)n;
  return 0;
}
static eventer_aco_t aco_fd(int fd) {
  eventer_aco_t e =
      eventer_set_eventer_aco(eventer_alloc_fd(unused_cb, NULL, fd, EVENTER_READ));
  if (!e) die("eventer_set_eventer_aco");
  return e;
}

/* Runs f and its peer g ROUNDS times each, alternating which goes first
 * (so a slow spell on a shared machine hits both), and gives the median and
 * the fastest ns per operation of each. */
#define ROUNDS 9
/* The median CPU ns per operation of f's and g's runs (cpu_start/stop). */
static double cpu_med_f, cpu_med_g;
static void paired_medians(double (*f)(long), double (*g)(long), long n,
                           double *mf, double *mg, double *minf,
                           double *ming) {
  double vf[ROUNDS], vg[ROUNDS], cf[ROUNDS], cg[ROUNDS];
  for (int i = 0; i < ROUNDS; i++) {
    if (i % 2) {
      vg[i] = g(n);
      cg[i] = last_cpu;
      vf[i] = f(n);
      cf[i] = last_cpu;
    } else {
      vf[i] = f(n);
      cf[i] = last_cpu;
      vg[i] = g(n);
      cg[i] = last_cpu;
    }
  }
  qsort(vf, ROUNDS, sizeof(double), cmp_double);
  qsort(vg, ROUNDS, sizeof(double), cmp_double);
  qsort(cf, ROUNDS, sizeof(double), cmp_double);
  qsort(cg, ROUNDS, sizeof(double), cmp_double);
  cpu_med_f = cf[ROUNDS / 2];
  cpu_med_g = cg[ROUNDS / 2];
  *mf = vf[ROUNDS / 2];
  *mg = vg[ROUNDS / 2];
  *minf = vf[0];
  *ming = vg[0];
}

/* Many short runs of f and g back to back (PAIRS pairs, alternating which
 * goes first); for each pair the ratio of g's CPU time to f's: neighbours
 * in time share whatever the rest of the machine was doing.  The median of
 * those ratios, and of the wall-time ones. */
#define PAIRS 41
static double pair_cpu_ratio, pair_wall_ratio;
static void paired_ratios(double (*f)(long), double (*g)(long), long n) {
  double rc[PAIRS], rw[PAIRS];
  for (int i = 0; i < PAIRS; i++) {
    double wf, wg, cf, cg;
    if (i % 2) {
      wg = g(n);
      cg = last_cpu;
      wf = f(n);
      cf = last_cpu;
    } else {
      wf = f(n);
      cf = last_cpu;
      wg = g(n);
      cg = last_cpu;
    }
    rc[i] = cg / cf;
    rw[i] = wg / wf;
  }
  qsort(rc, PAIRS, sizeof(double), cmp_double);
  qsort(rw, PAIRS, sizeof(double), cmp_double);
  pair_cpu_ratio = rc[PAIRS / 2];
  pair_wall_ratio = rw[PAIRS / 2];
}

/* ---- cycle ---------------------------------------------------------------- */

static int cyc[2];
static long cyc_target;

static void cycle_reader(void) {
  eventer_aco_t e = aco_fd(cyc[0]);
  char b;
  while (counter < cyc_target)
    if (eventer_aco_read(e, &b, 1, NULL) == 1) counter++;
  eventer_aco_free(e);
}

static double cycle_aco(long n) {
  sockpair(cyc);
  counter = 0;
  cyc_target = n;
  eventer_aco_start(cycle_reader, NULL); /* runs until its read parks */
  uint64_t t0 = now_ns();
  cpu_start();
  for (long i = 0; i < n; i++) {
    if (write(cyc[1], "x", 1) != 1) die("write");
    while (counter <= i) turn();
  }
  cpu_stop(n);
  double ns = (double)(now_ns() - t0) / (double)n;
  close(cyc[0]), close(cyc[1]);
  return ns;
}

static int cycle_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)c, (void)now;
  char b;
  int m;
  /* the coroutine's syscalls: the byte, then EAGAIN */
  while (eventer_read(e, &b, 1, &m) == 1) counter++;
  return EVENTER_READ;
}

static double cycle_classic(long n) {
  sockpair(cyc);
  counter = 0;
  eventer_t e = eventer_alloc_fd(cycle_cb, NULL, cyc[0], EVENTER_READ);
  if (eventer_add_ex(e) != 0) die("eventer_add");
  uint64_t t0 = now_ns();
  cpu_start();
  for (long i = 0; i < n; i++) {
    if (write(cyc[1], "x", 1) != 1) die("write");
    while (counter <= i) turn();
  }
  cpu_stop(n);
  double ns = (double)(now_ns() - t0) / (double)n;
  eventer_free(eventer_remove(e));
  close(cyc[0]), close(cyc[1]);
  return ns;
}

/* The same park/resume without syscalls: PW_K coroutines wait on a
 * semaphore; each round the main context posts PW_K units and one loop
 * iteration resumes them all (one epoll_wait per PW_K cycles).  Per cycle:
 * a post (hand-off + scheduled wake), a resume from the timer phase with
 * its stack copied in (and the previous one's out), a park. */
#define PW_K 1000
static eventer_aco_sem_t *pw_sem;
static int pw_stop, pw_live;

static void pw_waiter(void) {
  pw_live++;
  for (;;) {
    if (eventer_aco_sem_wait(pw_sem, NULL) != 0) die("sem_wait");
    if (pw_stop) break;
    counter++;
  }
  pw_live--;
}

static double park_wake(long n) {
  long rounds = n / PW_K > 0 ? n / PW_K : 1;
  pw_sem = eventer_aco_sem_new(0);
  counter = 0;
  pw_stop = 0;
  for (int i = 0; i < PW_K; i++) eventer_aco_start(pw_waiter, NULL);
  uint64_t t0 = now_ns();
  for (long r = 1; r <= rounds; r++) {
    for (int i = 0; i < PW_K; i++) eventer_aco_sem_post(pw_sem);
    while (counter < r * PW_K) turn();
  }
  double ns = (double)(now_ns() - t0) / (double)(rounds * PW_K);
  pw_stop = 1;
  for (int i = 0; i < PW_K; i++) eventer_aco_sem_post(pw_sem);
  while (pw_live > 0) turn();
  if (eventer_aco_sem_free(pw_sem) != 0) die("sem_free");
  return ns;
}

static void bench_cycle(long n) {
  cycle_aco(n / 10); /* warm-up: share stack, fd table */
  double a, c, amin, cmin;
  paired_medians(cycle_aco, cycle_classic, n, &a, &c, &amin, &cmin);
  printf("cycle_aco_ns %.1f\n", a);
  printf("cycle_classic_ns %.1f\n", c);
  /* time ratios (coroutine / classic), so < 1 is the coroutine faster */
  paired_ratios(cycle_classic, cycle_aco, n / 20 > 0 ? n / 20 : 1);
  printf("cycle_pairs_cpu_ratio %.3f\n", pair_cpu_ratio);
  printf("cycle_pairs_wall_ratio %.3f\n", pair_wall_ratio);
  printf("cycle_aco_cpu_ns %.1f\n", cpu_med_f);
  printf("cycle_classic_cpu_ns %.1f\n", cpu_med_g);
  printf("cycle_aco_min_ns %.1f\n", amin);
  printf("cycle_classic_min_ns %.1f\n", cmin);
  /* the fastest runs are the least disturbed by the rest of the machine */
  printf("cycle_aco_overhead_ns %.1f\n", amin - cmin);
  double pw[ROUNDS];
  for (int i = 0; i < ROUNDS; i++) pw[i] = park_wake(n * 10);
  qsort(pw, ROUNDS, sizeof(double), cmp_double);
  printf("park_wake_cycle_ns %.1f\n", pw[ROUNDS / 2]);
}

/* ---- ping-pong ------------------------------------------------------------- */

static int pp[2];
static long pp_rounds;

static void pinger(void) {
  eventer_aco_t e = aco_fd(pp[0]);
  char b = 'p';
  for (long i = 0; i < pp_rounds; i++) {
    if (eventer_aco_write(e, &b, 1, NULL) != 1) die("aco write");
    if (eventer_aco_read(e, &b, 1, NULL) != 1) die("aco read");
    counter++;
  }
  eventer_aco_free(e);
}

static void ponger(void) {
  eventer_aco_t e = aco_fd(pp[1]);
  char b;
  for (long i = 0; i < pp_rounds; i++) {
    if (eventer_aco_read(e, &b, 1, NULL) != 1) die("aco read");
    if (eventer_aco_write(e, &b, 1, NULL) != 1) die("aco write");
  }
  eventer_aco_free(e);
}

static double pingpong_aco(long n) {
  sockpair(pp);
  counter = 0;
  pp_rounds = n;
  uint64_t t0 = now_ns();
  cpu_start();
  eventer_aco_start(ponger, NULL);
  eventer_aco_start(pinger, NULL);
  spin_until(n);
  cpu_stop(n);
  double ns = (double)(now_ns() - t0) / (double)n;
  turn(); /* let the ponger finish */
  close(pp[0]), close(pp[1]);
  return ns;
}

static int pong_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)c, (void)now;
  char b;
  int m;
  if (eventer_read(e, &b, 1, &m) == 1 && eventer_write(e, &b, 1, &m) != 1)
    die("write");
  return EVENTER_READ;
}

static int ping_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)c, (void)now;
  char b;
  int m;
  if (eventer_read(e, &b, 1, &m) == 1 && ++counter < pp_rounds &&
      eventer_write(e, &b, 1, &m) != 1)
    die("write");
  return EVENTER_READ;
}

static double pingpong_classic(long n) {
  sockpair(pp);
  counter = 0;
  pp_rounds = n;
  eventer_t a = eventer_alloc_fd(ping_cb, NULL, pp[0], EVENTER_READ);
  eventer_t b = eventer_alloc_fd(pong_cb, NULL, pp[1], EVENTER_READ);
  if (eventer_add_ex(a) != 0 || eventer_add_ex(b) != 0) die("eventer_add");
  uint64_t t0 = now_ns();
  cpu_start();
  if (write(pp[0], "p", 1) != 1) die("write");
  spin_until(n);
  cpu_stop(n);
  double ns = (double)(now_ns() - t0) / (double)n;
  eventer_free(eventer_remove(a));
  eventer_free(eventer_remove(b));
  close(pp[0]), close(pp[1]);
  return ns;
}

static void bench_pingpong(long n) {
  pingpong_aco(n / 10);
  double a, c, amin, cmin;
  paired_medians(pingpong_aco, pingpong_classic, n, &a, &c, &amin, &cmin);
  printf("pingpong_aco_rt_per_s %.0f\n", 1e9 / a);
  printf("pingpong_classic_rt_per_s %.0f\n", 1e9 / c);
  printf("pingpong_aco_vs_classic %.3f\n", c / a); /* rate ratio */
  /* rate ratios (coroutine / classic), so > 1 is the coroutine faster */
  paired_ratios(pingpong_aco, pingpong_classic, n / 10 > 0 ? n / 10 : 1);
  printf("pingpong_pairs_cpu_ratio %.3f\n", pair_cpu_ratio);
  printf("pingpong_pairs_wall_ratio %.3f\n", pair_wall_ratio);
  printf("pingpong_aco_cpu_ns_per_rt %.0f\n", cpu_med_f);
  printf("pingpong_classic_cpu_ns_per_rt %.0f\n", cpu_med_g);
  printf("pingpong_aco_vs_classic_cpu %.3f\n", cpu_med_g / cpu_med_f);
  printf("pingpong_aco_best_rt_per_s %.0f\n", 1e9 / amin);
  printf("pingpong_classic_best_rt_per_s %.0f\n", 1e9 / cmin);
}

/* ---- create + run + end --------------------------------------------------- */

static void co_return(void) { counter++; }

static eventer_aco_co_t *parked_h;
static void co_park_once(void) {
  parked_h = eventer_aco_self();
  eventer_aco_co_ref(parked_h);
  if (eventer_aco_park(NULL) != 0) die("park");
  counter++;
}

static double create_return(long n) {
  counter = 0;
  uint64_t t0 = now_ns();
  cpu_start();
  for (long i = 0; i < n; i++) eventer_aco_start(co_return, NULL);
  cpu_stop(n);
  double ns = (double)(now_ns() - t0) / (double)n;
  if (counter != n) fail("create: a coroutine did not run");
  return ns;
}

static double create_park(long n) {
  counter = 0;
  uint64_t t0 = now_ns();
  cpu_start();
  for (long i = 0; i < n; i++) {
    eventer_aco_start(co_park_once, NULL); /* runs until it parks */
    if (eventer_aco_wake(parked_h) != 0) die("wake");
    eventer_aco_co_release(parked_h);
    while (counter <= i) turn(); /* resumed at the next timer phase */
  }
  cpu_stop(n);
  return (double)(now_ns() - t0) / (double)n;
}

/* the floor: libaco alone, on a share stack of the same size */
static aco_t *bare_main;
static aco_share_stack_t *bare_ss;
static void bare_fn(void) {
  counter++;
  aco_exit();
}

static double create_bare(long n) {
  counter = 0;
  uint64_t t0 = now_ns();
  cpu_start();
  for (long i = 0; i < n; i++) {
    aco_t *co = aco_create(bare_main, bare_ss, 0, bare_fn, NULL);
    aco_resume(co);
    aco_destroy(co);
  }
  cpu_stop(n);
  return (double)(now_ns() - t0) / (double)n;
}

static void bench_create(long n) {
  /* the loop thread's libaco state exists (its main coroutine is the
   * eventer's); a main coroutine and share stack of our own for the floor */
  eventer_aco_start(co_return, NULL);
  bare_main = aco_create(NULL, NULL, 0, NULL, NULL);
  bare_ss = aco_share_stack_new(EVENTER_ACO_DEFAULT_STACK);
  create_return(n / 10);
  create_bare(n / 10);
  double r, b, rmin, bmin;
  paired_medians(create_return, create_bare, n, &r, &b, &rmin, &bmin);
  double rc = cpu_med_f, bc = cpu_med_g;
  double p[ROUNDS], pc[ROUNDS];
  for (int i = 0; i < ROUNDS; i++) {
    p[i] = create_park(n / 4);
    pc[i] = last_cpu;
  }
  qsort(p, ROUNDS, sizeof(double), cmp_double);
  qsort(pc, ROUNDS, sizeof(double), cmp_double);
  printf("create_return_ns %.1f\n", r);
  printf("create_return_cpu_ns %.1f\n", rc);
  printf("create_bare_cpu_ns %.1f\n", bc);
  printf("create_park_cpu_ns %.1f\n", pc[ROUNDS / 2]);
  printf("create_return_min_ns %.1f\n", rmin);
  printf("create_bare_ns %.1f\n", b);
  printf("create_bare_min_ns %.1f\n", bmin);
  printf("create_park_ns %.1f\n", p[ROUNDS / 2]);
  aco_share_stack_destroy(bare_ss);
  aco_destroy(bare_main);
}

/* ---- memory ---------------------------------------------------------------- */

static eventer_aco_sem_t *mem_sem;
static struct timeval *mem_timeout;
static unsigned long long sum_saved, sum_cap;

static void parked(void) {
  if (eventer_aco_sem_wait(mem_sem, mem_timeout) != 0) die("sem_wait");
  eventer_aco_stats_t st;
  if (eventer_aco_get_stats(NULL, &st) != 0) die("get_stats");
  sum_saved += st.max_save_stack; /* what was copied out at the park */
  sum_cap += st.save_stack_sz;
  counter++;
}

static void bench_mem(long n, int with_timeout) {
  struct timeval hour = {3600, 0};
  mem_timeout = with_timeout ? &hour : NULL;
  mem_sem = eventer_aco_sem_new(0);
  /* warm-up: the loop's coroutine state and share stack exist and are
   * touched before the first measurement */
  eventer_aco_start(parked, NULL);
  eventer_aco_sem_post(mem_sem);
  spin_until(1);
  counter = 0;
  sum_saved = sum_cap = 0;

  size_t before = rss_bytes();
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++) eventer_aco_start(parked, NULL);
  uint64_t t1 = now_ns();
  size_t after = rss_bytes();
  for (long i = 0; i < n; i++) eventer_aco_sem_post(mem_sem);
  spin_until(n);
  uint64_t t2 = now_ns();

  double per = (double)(after - before) / (double)n;
  double saved = (double)sum_saved / (double)n, cap = (double)sum_cap / (double)n;
  const char *tag = with_timeout ? "mem_timeout" : "mem";
  printf("%s_parked %ld\n", tag, n);
  printf("%s_rss_mib %.1f\n", tag, (double)(after - before) / 1048576.0);
  printf("%s_bytes_per_coroutine %.1f\n", tag, per);
  printf("%s_saved_stack_bytes %.1f\n", tag, saved);
  printf("%s_save_stack_capacity_bytes %.1f\n", tag, cap);
  printf("%s_beyond_saved_stack_bytes %.1f\n", tag, per - saved);
  printf("%s_beyond_save_capacity_bytes %.1f\n", tag, per - cap);
  printf("%s_start_park_ns %.1f\n", tag, (double)(t1 - t0) / (double)n);
  printf("%s_wake_end_ns %.1f\n", tag, (double)(t2 - t1) / (double)n);
  if (eventer_aco_sem_free(mem_sem) != 0) die("sem_free");
}

/* BENCH_THREADS=1: a second thread that only sleeps (see the top) */
static void *sleeper(void *arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}
static void maybe_second_thread(void) {
  const char *v = getenv("BENCH_THREADS");
  if (!v || strcmp(v, "1") != 0) return;
  pthread_t t;
  if (pthread_create(&t, NULL, sleeper, NULL) != 0) die("pthread_create");
  pthread_detach(t);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "cycle";
  long n = argc > 2 ? atol(argv[2]) : 0;
  setvbuf(stdout, NULL, _IOLBF, 0);
  pin_cpu();
  maybe_second_thread();
  if (eventer_impl_propset("concurrency", "1") != 0 ||
      eventer_init_external() != 0 || eventer_loop_attach(0) != 0)
    die("eventer init");
  if (!strcmp(mode, "cycle")) {
    bench_cycle(n > 0 ? n : 30000);
  } else if (!strcmp(mode, "pingpong")) {
    bench_pingpong(n > 0 ? n : 20000);
  } else if (!strcmp(mode, "pingpong-aco") || !strcmp(mode, "pingpong-classic")) {
    /* one side alone, once (for strace -c, valgrind --tool=callgrind) */
    double ns = (mode[9] == 'a' ? pingpong_aco : pingpong_classic)(n > 0 ? n : 20000);
    printf("%s_rt_per_s %.0f\n", mode, 1e9 / ns);
  } else if (!strcmp(mode, "cycle-aco") || !strcmp(mode, "cycle-classic")) {
    double ns = (mode[6] == 'a' ? cycle_aco : cycle_classic)(n > 0 ? n : 30000);
    printf("%s_ns %.1f\n", mode, ns);
  } else if (!strcmp(mode, "create")) {
    bench_create(n > 0 ? n : 200000);
  } else if (!strcmp(mode, "mem")) {
    const char *kind = argc > 3 ? argv[3] : "sem";
    bench_mem(n > 0 ? n : 1000000, !strcmp(kind, "sem-timeout"));
  } else {
    fprintf(stderr, "usage: %s cycle|pingpong[-aco|-classic]|cycle-aco|"
            "cycle-classic|create|mem [n] "
            "[sem|sem-timeout]\n",
            argv[0]);
    return 2;
  }
  eventer_fini();
  return 0;
}
