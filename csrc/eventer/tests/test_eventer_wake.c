/*
 * test_eventer_wake.c - cross-thread wake-ups: the loop's sleep/wake state
 * word, the drivers that wait on the epoll fd themselves, the "spin_us"
 * setting, and a stress run that hammers task posts, triggers, asynch jobs
 * and coroutine asynch calls from several threads while loops and job
 * threads keep falling asleep and spinning, checking that nothing is lost
 * and nothing waits for an unrelated wake-up.  Also run under
 * ThreadSanitizer.
 */
#include "evtest.h"
#include "eventer_aco.h"
#include "eventer_impl.h" /* white-box: the loop's epoll fd without pollfd */

#include <dirent.h>
#include <poll.h>
#include <sched.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <semaphore.h>

#define LOADA(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define INC(p) __atomic_add_fetch((p), 1, __ATOMIC_ACQ_REL)

/* How long a hand-off may take before it may count as lost: no wake-up is
 * coming, or only an unrelated one (a queue's 10 s idle timeout) would
 * end it.  Far above any ordinary scheduling delay, valgrind's included. */
static uint64_t lost_after_us(void) { return t_slow() ? 20000000u : 5000000u; }

/* Whether a thread of this process other than the caller is runnable (R)
 * or in an uninterruptible wait (D), from /proc/self/task/<tid>/stat. */
static int others_runnable(void) {
  pid_t self = (pid_t)syscall(SYS_gettid);
  DIR *d = opendir("/proc/self/task");
  if (!d) return 0;
  int any = 0;
  struct dirent *de;
  while (!any && (de = readdir(d)) != NULL) {
    if (de->d_name[0] < '0' || de->d_name[0] > '9' || atoi(de->d_name) == self) continue;
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", atoi(de->d_name));
    FILE *f = fopen(path, "r");
    if (!f) continue; /* the thread is gone */
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the state follows the (name) */
    if (p && p[1] == ' ' && (p[2] == 'R' || p[2] == 'D')) any = 1;
  }
  closedir(d);
  return any;
}

/* Every thread's name, state and kernel wait channel, for a failure
 * message. */
static void dump_threads(void) {
  DIR *d = opendir("/proc/self/task");
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
    int tid = atoi(de->d_name);
    char path[64], stat[512] = "", wchan[64] = "";
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (f) {
      size_t n = fread(stat, 1, sizeof(stat) - 1, f);
      stat[n] = 0;
      fclose(f);
    }
    snprintf(path, sizeof(path), "/proc/self/task/%d/wchan", tid);
    if ((f = fopen(path, "r")) != NULL) {
      size_t n = fread(wchan, 1, sizeof(wchan) - 1, f);
      wchan[n] = 0;
      fclose(f);
    }
    char *open = strchr(stat, '('), *close = strrchr(stat, ')');
    fprintf(stderr, "# thread %d %.*s state %c wchan %s\n", tid,
            open && close ? (int)(close - open + 1) : 0, open ? open : "",
            close && close[1] ? close[2] : '?', wchan);
  }
  closedir(d);
}

/* Whether a hand-off that began at t0 and is not done is lost: past
 * lost_after_us() with every other thread of the process asleep, three
 * times in 40 ms.  The caller looks at the hand-off again after a 1: it may have ended while
 * the caller was kept off its CPU, and the others are asleep because
 * there is nothing left to do (seen at nice 19 beside CPU hogs).  A
 * thread that was woken but that a loaded machine keeps off its CPU is
 * runnable: the hand-off is late, not lost, and is waited for, up to 20
 * times the bound (a run at nice 19 beside CPU hogs at load 15 went past
 * the bound once).  A wake-up that never came leaves the thread that
 * should act asleep, and fails at the bound as before. */
static int handoff_lost(uint64_t t0) {
  uint64_t took = t_now_us() - t0;
  if (took < lost_after_us()) return 0;
  if (took >= 20 * lost_after_us()) return 1;
  /* three looks 20 ms apart (one look reads the threads one by one: a
   * chain of wake-ups can slip between its reads) */
  for (int k = 0; k < 3; k++) {
    if (others_runnable()) {
      usleep(10000); /* the caller polls: sample now and then */
      return 0;
    }
    if (k < 2) usleep(20000);
  }
  return 1;
}

/* What the loops were doing, for a failure message. */
static void dump_threads(void);
static void dump_loops(void) {
  dump_threads();
  eventer_pool_t *pool = eventer_pool("default");
  for (int i = 0; pool && i < (int)eventer_pool_concurrency(pool); i++) {
    ev_loop_t *l = eventer_pool_loop(pool, i);
    fprintf(stderr, "# loop %d: wake_state %d inbox_nonempty %d push_cpu %d"
            " spin %u ns, phase %d\n", i, LOADA(&l->wake_state),
            LOADA(&l->inbox_nonempty), LOADA(&l->push_cpu),
            l->spin.budget_ns, l->phase);
  }
}

static int readable(int fd, int timeout_ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int rc;
  while ((rc = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
  }
  T_CHECK(rc >= 0);
  return rc == 1 && (p.revents & POLLIN);
}

static int task_runs;
static void count_task(eventer_task_t *t, struct timeval *now) {
  (void)t, (void)now;
  INC(&task_runs);
}

static void *post_to_loop0(void *arg) {
  eventer_task_t *t = arg;
  T_EQ(eventer_task_post_to(eventer_pool_loop(eventer_pool("default"), 0), t), 0);
  return NULL;
}

static void post_from_thread(eventer_task_t *t) {
  pthread_t th;
  T_EQ(pthread_create(&th, NULL, post_to_loop0, t), 0);
  T_EQ(pthread_join(th, NULL), 0);
}

/* ---- the setting ------------------------------------------------------------ */

static void test_spin_setting(void) {
  T_EQ(eventer_impl_propset_ex("spin_us", "0"), 0);
  T_EQ(eventer_impl_propset_ex("spin_us", "10000"), 0);
  T_EQ(eventer_impl_propset_ex("spin_us", "2.5"), 0);
  T_ERRNO(eventer_impl_propset_ex("spin_us", "10001"), EINVAL);
  T_ERRNO(eventer_impl_propset_ex("spin_us", "-1"), EINVAL);
  T_ERRNO(eventer_impl_propset_ex("spin_us", "fast"), EINVAL);
  T_ERRNO(eventer_impl_propset_ex("spin_us", ""), EINVAL);
  T_EQ(eventer_impl_propset_ex("spin_us", "50"), 0);
  ev_setup_external(1);
  T_ERRNO(eventer_impl_propset_ex("spin_us", "20"), EBUSY);
  ev_teardown();
}

/* ---- the state word ---------------------------------------------------------------- */

/* A loop that is awake (here: between two run_once calls of its driver)
 * looks at its queue before it blocks, so a push from another thread
 * needs no eventfd write; the task still runs at the next iteration. */
static void test_push_to_awake_loop_skips_eventfd(void) {
  ev_setup_external(1);
  int epfd = ev_poll_fd(ev_loop_self()); /* eventer_loop_pollfd would
                                          * switch the loop to writes */
  ev_turn();
  task_runs = 0;
  static eventer_task_t t = {NULL, count_task};
  post_from_thread(&t);
  T_CHECK(!readable(epfd, 0)); /* no eventfd write */
  ev_turn();
  T_EQ(LOADA(&task_runs), 1);
  ev_teardown();
}

/* A loop asleep in epoll_wait is woken by a push from another thread,
 * long before its own timeout. */
typedef struct {
  eventer_task_t task;
  int delay_ms;
} delayed_post_t;

static void *post_later(void *arg) {
  delayed_post_t *d = arg;
  usleep((useconds_t)d->delay_ms * 1000u);
  T_EQ(eventer_task_post_to(eventer_pool_loop(eventer_pool("default"), 0),
                            &d->task), 0);
  return NULL;
}

/* counts, and posts a no-op to its own loop so that the iteration that
 * ran it ends without a wait (run_once would otherwise go on to sleep
 * until its 10 s bound) */
static void nop_task(eventer_task_t *t, struct timeval *now) {
  (void)t, (void)now;
}
static void count_task_nudge(eventer_task_t *t, struct timeval *now) {
  static eventer_task_t nudge = {NULL, nop_task};
  count_task(t, now);
  T_EQ(eventer_task_post(&nudge), 0);
}

static void test_sleeping_loop_is_woken(void) {
  ev_setup_external(1);
  task_runs = 0;
  for (int round = 0; round < 3; round++) {
    /* 0 ms: the push may come while the loop spins or just before it
     * sleeps; 30 ms: it finds the loop asleep */
    static delayed_post_t d;
    d.task.run = count_task_nudge;
    d.delay_ms = round == 1 ? 0 : 30;
    pthread_t th;
    T_EQ(pthread_create(&th, NULL, post_later, &d), 0);
    /* run_once's own bound is two minutes: a loop that the push did not
     * wake returns after it, one that a loaded machine kept off its CPU
     * for seconds (nice 19 beside CPU hogs) long before */
    uint64_t t0 = t_now_us();
    struct timeval two_min = {120, 0};
    while (LOADA(&task_runs) <= round) {
      T_EQ(eventer_run_once(NULL, &two_min), EVENTER_RUN_DONE);
      T_CHECKF(t_now_us() - t0 < 60000000u, "round %d: the push did"
               " not wake the loop (%llu us)", round,
               (unsigned long long)(t_now_us() - t0));
    }
    T_EQ(pthread_join(th, NULL), 0);
  }
  ev_teardown();
}

/* ---- drivers that wait on the epoll fd ------------------------------------------------ */

/* eventer_loop_pollfd(): the driver waits on the fd outside run_once, so
 * every cross-thread push must make it readable, including a push that
 * came (to an awake loop) before the driver asked for the fd. */
static void test_pollfd_driver_is_woken(void) {
  ev_setup_external(1);
  task_runs = 0;
  static eventer_task_t early = {NULL, count_task}, late = {NULL, count_task};
  ev_turn();
  post_from_thread(&early); /* the loop is awake: no write for this one */
  int fd = eventer_loop_pollfd();
  T_CHECK(fd >= 0);
  T_CHECK(readable(fd, 5000)); /* ... but asking for the fd makes it up */
  ev_turn();
  T_EQ(LOADA(&task_runs), 1);
  ev_turn(); /* the wake-up token is read */
  T_CHECK(!readable(fd, 0));
  for (int i = 0; i < 3; i++) {
    post_from_thread(&late);
    T_CHECK(readable(fd, 5000));
    ev_turn();
    T_EQ(LOADA(&task_runs), 2 + i);
    ev_turn();
  }
  ev_teardown();
}

/* A driver that sleeps elsewhere only at times (eventer_loop_sleep_begin):
 * no sleep while work is pending or right after a poll that found
 * something; while asleep a push makes the epoll fd readable (once:
 * later pushes find it woken); awake again, a push writes nothing; and
 * the sleep is bounded by the next timer. */
static int sock_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)c, (void)now;
  char b[8];
  while (read(eventer_get_fd(e), b, sizeof(b)) > 0) {
  }
  INC(&task_runs);
  return EVENTER_READ;
}

static int timer_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  return 0;
}

static void test_sleep_elsewhere(void) {
  int64_t us = 0;
  T_ERRNO(eventer_loop_sleep_begin(&us), EINVAL); /* off-loop */
  ev_setup_external(1);
  T_ERRNO(eventer_loop_sleep_begin(NULL), EINVAL);
  int epfd = ev_poll_fd(ev_loop_self());
  task_runs = 0;
  static eventer_task_t t1 = {NULL, count_task}, t2 = {NULL, count_task},
                        mine = {NULL, count_task};
  ev_turn();
  T_EQ(eventer_task_post(&mine), 0);
  T_EQ(eventer_loop_sleep_begin(&us), 0); /* a task is pending */
  ev_turn();
  T_EQ(eventer_loop_sleep_begin(&us), 1);
  T_EQ(us, -1); /* nothing scheduled: no bound */
  post_from_thread(&t1);
  post_from_thread(&t2); /* finds the loop woken: no second write */
  T_CHECK(readable(epfd, 5000));
  eventer_loop_sleep_end();
  ev_turn();
  T_EQ(LOADA(&task_runs), 3);
  T_EQ(eventer_loop_sleep_begin(&us), 0); /* that poll found the wake-up */
  ev_turn();
  T_CHECK(!readable(epfd, 0));
  /* fd readiness while asleep */
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  eventer_t e = eventer_alloc_fd(sock_cb, NULL, sv[0], EVENTER_READ);
  T_EQ(eventer_add_ex(e), 0);
  ev_turn();
  ev_turn();
  T_EQ(eventer_loop_sleep_begin(&us), 1);
  T_EQ(write(sv[1], "x", 1), 1);
  T_CHECK(readable(epfd, 5000));
  eventer_loop_sleep_end();
  ev_turn();
  T_EQ(LOADA(&task_runs), 4);
  ev_turn();
  /* awake: a push writes nothing */
  T_EQ(eventer_loop_sleep_begin(&us), 1);
  eventer_loop_sleep_end();
  post_from_thread(&t1);
  T_CHECK(!readable(epfd, 0));
  ev_turn();
  T_EQ(LOADA(&task_runs), 5);
  ev_turn();
  /* a timer bounds the sleep */
  struct timeval in = {2, 0};
  eventer_t tm = eventer_add_in(timer_cb, NULL, in);
  T_CHECK(tm != NULL);
  T_EQ(eventer_loop_sleep_begin(&us), 1);
  T_GE(us, 1);
  T_LE(us, 2000000);
  eventer_loop_sleep_end();
  T_CHECK(eventer_remove_timed(tm) == tm);
  eventer_free(tm);
  T_CHECK(eventer_remove_fde(e) == e);
  eventer_free(e);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* ---- stress --------------------------------------------------------------------------- */

#define NPRODUCERS 4
#define NLOOPS 2

enum { OP_TASK, OP_TRIGGER, OP_ASYNCH, OP_KINDS };

typedef struct producer {
  int id;
  unsigned seed;
  long ops;
  sem_t done;             /* posted by whatever finished the op */
  eventer_task_t task;
  int wrong_thread;       /* __atomic: a callback ran on the wrong thread */
  uint64_t worst_us;      /* longest hand-off seen (reported, not checked) */
  long by_kind[OP_KINDS];
  pthread_t loop_thread;  /* the loop the current op targets */
} producer_t;

static producer_t producers[NPRODUCERS];
static eventer_jobq_t *stress_q;

static void op_done(producer_t *p, pthread_t expect) {
  if (!pthread_equal(pthread_self(), expect)) INC(&p->wrong_thread);
  sem_post(&p->done);
}

static void stress_task(eventer_task_t *t, struct timeval *now) {
  (void)now;
  producer_t *p = EV_CONTAINER_OF(t, producer_t, task);
  op_done(p, p->loop_thread);
}

static int stress_trigger_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)now;
  producer_t *p = c;
  op_done(p, p->loop_thread);
  return 0;
}

static int stress_asynch_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)now;
  producer_t *p = c;
  if (mask == EVENTER_ASYNCH_WORK || mask == EVENTER_ASYNCH_CLEANUP) {
    if (eventer_in_loop()) INC(&p->wrong_thread); /* runs on a job thread */
    return 0;
  }
  op_done(p, p->loop_thread);
  return 0;
}

/* the pause before an op: back to back, a few us (the other side is
 * still spinning, or just giving up), or long enough to fall asleep */
static void stress_pause(producer_t *p) {
  int r = (int)(rand_r(&p->seed) % 16);
  if (r < 6) return;
  if (r < 12) {
    uint64_t end = t_now_us() + 1 + (uint64_t)(rand_r(&p->seed) % 60);
    while (t_now_us() < end) {
    }
    return;
  }
  usleep(100 + rand_r(&p->seed) % 1500);
}

static void *producer_main(void *arg) {
  producer_t *p = arg;
  eventer_pool_t *pool = eventer_pool("default");
  for (long i = 0; i < p->ops; i++) {
    stress_pause(p);
    int li = (int)(rand_r(&p->seed) % NLOOPS);
    eventer_loop_t *loop = eventer_pool_loop(pool, li);
    int kind = (int)(rand_r(&p->seed) % OP_KINDS);
    p->loop_thread = eventer_choose_owner_pool(pool, li);
    p->by_kind[kind]++;
    uint64_t t0 = t_now_us();
    if (kind == OP_TASK) {
      p->task.run = stress_task;
      T_EQ(eventer_task_post_to(loop, &p->task), 0);
    } else if (kind == OP_TRIGGER) {
      eventer_t e = eventer_alloc_timer(stress_trigger_cb, p, NULL);
      T_CHECK(e);
      T_EQ(eventer_set_owner_loop(e, loop), 0);
      T_EQ(eventer_trigger_ex(e, EVENTER_TIMER), 0);
    } else {
      eventer_t e = eventer_alloc_asynch(stress_asynch_cb, p);
      T_CHECK(e);
      T_EQ(eventer_set_owner_loop(e, loop), 0);
      T_EQ(eventer_add_asynch_ex(stress_q, e), 0);
    }
    /* sem_timedwait takes CLOCK_REALTIME: wait in short slices on the
     * monotonic clock instead */
    for (;;) {
      struct timespec rt;
      clock_gettime(CLOCK_REALTIME, &rt);
      rt.tv_nsec += 100000000;
      if (rt.tv_nsec >= 1000000000) rt.tv_sec++, rt.tv_nsec -= 1000000000;
      if (sem_timedwait(&p->done, &rt) == 0) break;
      T_CHECK(errno == ETIMEDOUT || errno == EINTR);
      /* (done meanwhile, while this thread was kept off its CPU: the
       * others are asleep because the hand-off is over) */
      int lost = handoff_lost(t0);
      if (lost && sem_trywait(&p->done) == 0) break;
      if (lost) dump_loops();
      T_CHECKF(!lost, "producer %d op %ld (kind %d, loop %d)"
               " lost: not done after %llu us", p->id, i, kind, li,
               (unsigned long long)(t_now_us() - t0));
    }
    uint64_t took = t_now_us() - t0;
    if (took > p->worst_us) p->worst_us = took;
  }
  return NULL;
}

static int single_done;

static int stress_trigger_cb_single(eventer_t e, int mask, void *c,
                                    struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  INC(&single_done);
  return 0;
}

/* coroutines on the loops, each making back-to-back simple asynch calls
 * with sleeps between bursts */
#define NCOROS 4
static int aco_work_runs, aco_returns, aco_finished, aco_wrong;
static long aco_calls;

static void aco_work(void *closure) {
  (void)closure;
  if (eventer_in_loop()) INC(&aco_wrong);
  INC(&aco_work_runs);
}

static void aco_caller(void) {
  unsigned seed = (unsigned)(uintptr_t)eventer_aco_arg();
  for (long i = 0; i < aco_calls; i++) {
    if (rand_r(&seed) % 8 == 0) {
      struct timeval tv = {0, (suseconds_t)(rand_r(&seed) % 800)};
      eventer_aco_sleep(&tv);
    }
    eventer_aco_simple_asynch_queue(aco_work, NULL, stress_q);
    if (!eventer_in_loop()) INC(&aco_wrong);
    INC(&aco_returns);
  }
  INC(&aco_finished);
}

static void stress_once(const char *spin_us, long ops) {
  T_EQ(eventer_impl_propset_ex("spin_us", spin_us), 0);
  T_EQ(eventer_impl_propset("concurrency", "2"), 0);
  T_EQ(eventer_init(), 0);
  eventer_loop_return();
  stress_q = eventer_jobq_create("wake_stress");
  T_CHECK(stress_q);
  eventer_jobq_set_concurrency(stress_q, 3);

  /* coroutines first, so they overlap with the producers */
  aco_work_runs = aco_returns = aco_finished = aco_wrong = 0;
  aco_calls = ops / 2;
  eventer_pool_t *pool = eventer_pool("default");
  for (int c = 0; c < NCOROS; c++) {
    eventer_aco_opts_t o = {.loop = eventer_pool_loop(pool, c % NLOOPS)};
    eventer_aco_co_t *h =
        eventer_aco_spawn(aco_caller, (void *)(uintptr_t)(c * 7919 + 1), &o);
    T_CHECK(h);
    eventer_aco_co_release(h);
  }

  pthread_t th[NPRODUCERS];
  for (int i = 0; i < NPRODUCERS; i++) {
    producer_t *p = &producers[i];
    memset(p, 0, sizeof(*p));
    p->id = i;
    p->seed = (unsigned)(i * 2654435761u + 17u);
    p->ops = ops;
    T_EQ(sem_init(&p->done, 0, 0), 0);
    T_EQ(pthread_create(&th[i], NULL, producer_main, p), 0);
  }
  uint64_t worst = 0;
  for (int i = 0; i < NPRODUCERS; i++) {
    T_EQ(pthread_join(th[i], NULL), 0);
    producer_t *p = &producers[i];
    T_EQ(LOADA(&p->wrong_thread), 0);
    for (int k = 0; k < OP_KINDS; k++) T_CHECK(p->by_kind[k] > 0);
    int extra;
    T_EQ(sem_getvalue(&p->done, &extra), 0);
    T_EQ(extra, 0); /* every op finished exactly once */
    sem_destroy(&p->done);
    if (p->worst_us > worst) worst = p->worst_us;
  }
  uint64_t t0 = t_now_us();
  while (LOADA(&aco_finished) < NCOROS) {
    T_CHECKF(!handoff_lost(t0) || LOADA(&aco_finished) >= NCOROS,
             "coroutines stuck: %d of %d"
             " done, %d returns", LOADA(&aco_finished), NCOROS,
             LOADA(&aco_returns));
    usleep(1000);
  }
  T_EQ(LOADA(&aco_work_runs), NCOROS * aco_calls);
  T_EQ(LOADA(&aco_returns), NCOROS * aco_calls);
  T_EQ(LOADA(&aco_wrong), 0);
  printf("# spin_us %s: %d producers x %ld ops, %d coroutines x %ld asynch"
         " calls; slowest hand-off %llu us\n", spin_us, NPRODUCERS, ops,
         NCOROS, aco_calls, (unsigned long long)worst);
  eventer_shutdown();
  eventer_fini();
  T_EQ(eventer_allocations_current(), 0);
}

/* One flow at a time, the producer busy-waiting for each hand-off and
 * pausing 0 to 2x the spin limit before the next: the pushes and enqueues
 * land on every point of the other side's spin-then-sleep transition,
 * with nothing else running that could wake a waiter by accident. */

static void single_task(eventer_task_t *t, struct timeval *now) {
  (void)t, (void)now;
  INC(&single_done);
}

/* With two CPUs or more, the producer runs on one and the loop and the
 * job thread on another, so that the job thread spins (it does not when
 * the thread that queues its jobs shares its CPU). */
static int pin_other = -1; /* the loop's and the job thread's CPU */

static void pin_self(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  T_EQ(sched_setaffinity(0, sizeof(set), &set), 0);
}

static void pin_task(eventer_task_t *t, struct timeval *now) {
  (void)t, (void)now;
  pin_self(pin_other);
  INC(&single_done);
}

static __thread int job_thread_pinned;
static int single_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  if (mask == EVENTER_ASYNCH_WORK && !job_thread_pinned) {
    pin_self(pin_other);
    job_thread_pinned = 1;
  }
  if (mask == EVENTER_ASYNCH_WORK || mask == EVENTER_ASYNCH_CLEANUP) return 0;
  INC(&single_done);
  return 0;
}

static void single_flow(const char *spin_us, long ops) {
  T_EQ(eventer_impl_propset_ex("spin_us", spin_us), 0);
  uint64_t max_pause_ns = (uint64_t)(2 * atof(spin_us) * 1000) + 2000;
  T_EQ(eventer_impl_propset("concurrency", "1"), 0);
  T_EQ(eventer_init(), 0);
  eventer_loop_return();
  eventer_jobq_t *q = eventer_jobq_create("wake_single");
  T_CHECK(q);
  eventer_loop_t *loop = eventer_pool_loop(eventer_pool("default"), 0);
  static eventer_task_t task = {NULL, single_task};
  unsigned seed = 12345;
  cpu_set_t saved;
  T_EQ(sched_getaffinity(0, sizeof(saved), &saved), 0);
  pin_other = -1;
  if (CPU_COUNT(&saved) >= 2) {
    int first = -1;
    for (int c = 0; c < CPU_SETSIZE && pin_other < 0; c++)
      if (CPU_ISSET(c, &saved)) {
        if (first < 0) first = c;
        else pin_other = c;
      }
    pin_self(first);
  }
  single_done = 0;
  static eventer_task_t pin = {NULL, pin_task};
  T_EQ(eventer_task_post_to(loop, &pin), 0);
  while (LOADA(&single_done) < 1) usleep(100);
  single_done = 0;
  for (long i = 0; i < ops; i++) {
    uint64_t pause = rand_r(&seed) % max_pause_ns, t0 = t_now_us();
    struct timespec p0;
    clock_gettime(CLOCK_MONOTONIC, &p0);
    for (;;) {
      struct timespec p1;
      clock_gettime(CLOCK_MONOTONIC, &p1);
      if ((uint64_t)(p1.tv_sec - p0.tv_sec) * 1000000000u + (uint64_t)p1.tv_nsec -
              (uint64_t)p0.tv_nsec >= pause)
        break;
    }
    int kind = (int)(rand_r(&seed) % 3);
    if (kind == 0) {
      T_EQ(eventer_task_post_to(loop, &task), 0);
    } else if (kind == 1) {
      eventer_t e = eventer_alloc_timer(stress_trigger_cb_single, NULL, NULL);
      T_EQ(eventer_set_owner_loop(e, loop), 0);
      T_EQ(eventer_trigger_ex(e, EVENTER_TIMER), 0);
    } else {
      eventer_t e = eventer_alloc_asynch(single_cb, NULL);
      T_EQ(eventer_set_owner_loop(e, loop), 0);
      T_EQ(eventer_add_asynch_ex(q, e), 0);
    }
    while (LOADA(&single_done) <= i) {
      int lost = handoff_lost(t0) && LOADA(&single_done) <= i; /* (see above) */
      if (lost) {
        dump_loops();
        fprintf(stderr, "# queue wake_single: backlog %u, concurrency %u\n",
                eventer_jobq_get_backlog(q), eventer_jobq_get_concurrency(q));
      }
      T_CHECKF(!lost, "spin_us %s: hand-off %ld (kind %d) lost after %llu us",
               spin_us, i, kind, (unsigned long long)(t_now_us() - t0));
    }
  }
  eventer_shutdown();
  eventer_fini();
  T_EQ(sched_setaffinity(0, sizeof(saved), &saved), 0);
  T_EQ(eventer_allocations_current(), 0);
}

static void test_stress(void) {
  long single = t_scale(t_sanitized() ? 3000 : 20000, 50);
  single_flow("3", single);
  single_flow("20", single);
  long ops = t_scale(t_sanitized() ? 800 : 2000, 20);
  stress_once("50", ops);   /* the default: spins that learn */
  stress_once("3", ops);    /* spins that end right at the hand-off */
  stress_once("0", ops);    /* no spinning: every wait sleeps */
  T_EQ(eventer_impl_propset_ex("spin_us", "50"), 0);
}

T_MAIN({"spin_setting", test_spin_setting},
       {"push_to_awake_loop_skips_eventfd", test_push_to_awake_loop_skips_eventfd},
       {"sleeping_loop_is_woken", test_sleeping_loop_is_woken},
       {"pollfd_driver_is_woken", test_pollfd_driver_is_woken},
       {"sleep_elsewhere", test_sleep_elsewhere},
       {"stress", test_stress})
