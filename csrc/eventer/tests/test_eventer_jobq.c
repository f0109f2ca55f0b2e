/*
 * test_eventer_jobq.c - job queues: phases and threads of an asynch event,
 * concurrency limits, backlog refusal, deadlines, subqueue fairness and
 * libmtev's fair share (with its subqueue workload), deadline cancellation
 * of running WORK (EVIL_BRUTAL, CANCEL_DEFERRED, CANCEL_ASYNCH), dependent
 * jobs, LIFO order, drain and shutdown, thread names, COMPLETE re-adds,
 * sizing settings, teardown with queued jobs.  The loop is driven by the
 * test thread; the jobs run on the queues' threads.  Also run under
 * ThreadSanitizer.
 */
#include "evtest.h"
#include "eventer_impl.h" /* ev_jobq_stopping */

#define LOADA(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define INC(p) __atomic_add_fetch((p), 1, __ATOMIC_ACQ_REL)
#define DEC(p) __atomic_sub_fetch((p), 1, __ATOMIC_ACQ_REL)

static pthread_t main_thread;

/* ---- phases: WORK, CLEANUP on a job thread; COMPLETE on the owner loop ----------------- */

typedef struct {
  int work, cleanup, complete; /* call order stamps, 0: not called */
  int bad_thread;
  int completes_wanted;        /* COMPLETE returns non-zero until reached */
  int ncomplete, nwork;
} job_t;

static int stamp, completed;

static int job_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e;
  T_CHECK(now != NULL);
  job_t *j = c;
  int on_main = pthread_equal(pthread_self(), main_thread);
  switch (mask) {
  case EVENTER_ASYNCH_WORK:
    if (on_main || eventer_in_loop()) j->bad_thread++;
    j->work = INC(&stamp);
    j->nwork++;
    return 0;
  case EVENTER_ASYNCH_CLEANUP:
    if (on_main || eventer_in_loop()) j->bad_thread++;
    j->cleanup = INC(&stamp);
    return 0;
  case EVENTER_ASYNCH_COMPLETE:
    if (!on_main || !eventer_in_loop()) j->bad_thread++;
    j->complete = INC(&stamp);
    j->ncomplete++;
    INC(&completed);
    return j->ncomplete < j->completes_wanted; /* non-zero: re-queue */
  }
  T_FAIL("unexpected mask 0x%x", mask);
  return 0;
}

static void test_phases_and_threads(void) {
  ev_setup_external(1);
  main_thread = pthread_self();
  int64_t base = eventer_allocations_current();
  static job_t j[3];
  memset(j, 0, sizeof(j));
  completed = stamp = 0;
  eventer_jobq_t *q = eventer_jobq_create("phases");
  T_PTR_EQ(eventer_jobq_create("phases"), q); /* same name, same queue */
  T_PTR_EQ(eventer_jobq_retrieve("phases"), q);
  T_CHECK(eventer_jobq_retrieve("nope") == NULL);
  T_STR_EQ(eventer_jobq_get_queue_name(q), "phases");
  T_STR_EQ(eventer_jobq_get_queue_name(eventer_default_jobq()), "default_queue");
  j[0].completes_wanted = 1;
  j[1].completes_wanted = 3; /* COMPLETE returning non-zero re-adds */
  j[2].completes_wanted = 1;
  eventer_t e0 = eventer_alloc_asynch(job_cb, &j[0]);
  eventer_t e1 = eventer_alloc_asynch(job_cb, &j[1]);
  eventer_t e2 = eventer_alloc_asynch(job_cb, &j[2]);
  T_EQ(eventer_add_asynch_ex(q, e0), 0);
  T_ERRNO(eventer_add_asynch_ex(q, e0), EBUSY); /* in flight */
  T_CHECK(eventer_remove(e0) == NULL);
  T_EQ(errno, EBUSY);
  T_EQ(eventer_add_asynch_ex(q, e1), 0);
  T_EQ(eventer_add_ex(e2), 0); /* an asynch mask goes to the default queue */
  ev_spin_until(&completed, 5, 20000);
  for (int i = 0; i < 3; i++) {
    T_EQ(j[i].bad_thread, 0);
    T_CHECK(j[i].work > 0 && j[i].work < j[i].cleanup &&
            j[i].cleanup < j[i].complete);
  }
  T_EQ(j[1].nwork, 3);
  T_EQ(j[1].ncomplete, 3);
  T_EQ(eventer_allocations_current(), base);
  ev_teardown();
}

/* ---- concurrency limit ----------------------------------------------------------------- */

static int running, max_running, conc_done;
/* The limit the queue is set to: a job holds its worker until that many
 * run at once (so "reached" does not depend on how fast a loaded machine
 * starts the queue's threads), for 20 s at most; once one job gave up
 * waiting (a queue that never runs that many), the others do not wait. */
static int conc_want, conc_gave_up;

static int conc_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  if (mask == EVENTER_ASYNCH_WORK) {
    int r = INC(&running);
    int m = LOADA(&max_running);
    while (r > m && !__atomic_compare_exchange_n(&max_running, &m, r, 0,
                                                 __ATOMIC_ACQ_REL,
                                                 __ATOMIC_ACQUIRE)) {
    }
    uint64_t end = t_now_us() + 20000000u;
    while (LOADA(&max_running) < LOADA(&conc_want) && !LOADA(&conc_gave_up)) {
      if (t_now_us() > end) {
        __atomic_store_n(&conc_gave_up, 1, __ATOMIC_RELEASE);
        break;
      }
      usleep(1000);
    }
    usleep(t_slow() ? 60000 : 20000);
    DEC(&running);
  } else if (mask == EVENTER_ASYNCH_COMPLETE) {
    INC(&conc_done);
  }
  return 0;
}

static void test_concurrency_limit(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("conc");
  eventer_jobq_set_concurrency(q, 3);
  T_EQ(eventer_jobq_get_concurrency(q), 3);
  running = max_running = conc_done = conc_gave_up = 0;
  conc_want = 3;
  for (int i = 0; i < 12; i++)
    T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(conc_cb, NULL)), 0);
  ev_spin_until(&conc_done, 12, 60000);
  T_EQ(max_running, 3); /* reached, never exceeded */
  T_EQ(conc_gave_up, 0);

  /* lower it: one at a time from now on */
  eventer_jobq_set_concurrency(q, 1);
  max_running = conc_done = 0;
  conc_want = 1;
  for (int i = 0; i < 4; i++)
    T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(conc_cb, NULL)), 0);
  ev_spin_until(&conc_done, 4, 30000);
  T_EQ(max_running, 1);

  /* min/max bound the concurrency; floor is kept */
  eventer_jobq_set_min_max(q, 2, 4);
  uint32_t mn, mx;
  eventer_jobq_get_min_max(q, &mn, &mx);
  T_EQ(mn, 2);
  T_EQ(mx, 4);
  T_EQ(eventer_jobq_get_concurrency(q), 2); /* raised to the min */
  eventer_jobq_set_concurrency(q, 10);
  T_EQ(eventer_jobq_get_concurrency(q), 4); /* capped at the max */
  eventer_jobq_set_floor(q, 2);
  T_EQ(eventer_jobq_get_floor(q), 2);
  ev_teardown();
}

/* ---- backlog refusal ---------------------------------------------------------------------- */

static int gate_open, blocker_started, bl_done;

static int blocker_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  if (mask == EVENTER_ASYNCH_WORK) {
    INC(&blocker_started);
    while (!LOADA(&gate_open)) usleep(1000);
  } else if (mask == EVENTER_ASYNCH_COMPLETE) {
    INC(&bl_done);
  }
  return 0;
}

static void wait_started(void) {
  uint64_t end = t_now_us() + 20000000u;
  while (!LOADA(&blocker_started)) {
    T_CHECK(t_now_us() < end);
    usleep(1000);
  }
}

static void test_backlog_refusal(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("backlog");
  eventer_jobq_set_max_backlog(q, 2);
  gate_open = blocker_started = bl_done = 0;
  T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(blocker_cb, NULL)), 0);
  wait_started(); /* running, so no longer in the backlog */
  T_EQ(eventer_jobq_get_backlog(q), 0);
  T_CHECK(eventer_try_add_asynch(q, eventer_alloc_asynch(blocker_cb, NULL)));
  T_CHECK(eventer_try_add_asynch_subqueue(q, eventer_alloc_asynch(blocker_cb, NULL), 7));
  T_EQ(eventer_jobq_get_backlog(q), 2);
  eventer_t refused = eventer_alloc_asynch(blocker_cb, NULL);
  errno = 0;
  T_CHECK(!eventer_try_add_asynch(q, refused));
  T_EQ(errno, EAGAIN);
  eventer_free(refused); /* refused: still ours */
  /* eventer_add_asynch ignores the limit */
  T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(blocker_cb, NULL)), 0);
  T_EQ(eventer_jobq_get_backlog(q), 3);
  __atomic_store_n(&gate_open, 1, __ATOMIC_RELEASE);
  ev_spin_until(&bl_done, 4, 20000);
  ev_teardown();
}

/* ---- deadlines ------------------------------------------------------------------------------- */

typedef struct {
  int work, cleanup, complete;
} dl_t;

static int dl_done;
static int dl_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)now;
  dl_t *d = c;
  if (mask == EVENTER_ASYNCH_WORK) d->work++;
  if (mask == EVENTER_ASYNCH_CLEANUP) d->cleanup++;
  if (mask == EVENTER_ASYNCH_COMPLETE) {
    d->complete++;
    INC(&dl_done);
  }
  return 0;
}

static struct timeval in_ms(int ms) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  int64_t us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec + (int64_t)ms * 1000;
  tv.tv_sec = us / 1000000;
  tv.tv_usec = us % 1000000;
  return tv;
}

static void test_deadlines(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("deadlines");
  static dl_t past, missed, kept;
  memset(&past, 0, sizeof(past));
  memset(&missed, 0, sizeof(missed));
  memset(&kept, 0, sizeof(kept));
  gate_open = blocker_started = bl_done = dl_done = 0;
  /* already past its deadline when queued */
  struct timeval p = in_ms(-10);
  T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch_timeout(dl_cb, &past, &p)), 0);
  ev_spin_until(&dl_done, 1, 20000);
  T_EQ(past.work, 0);
  T_EQ(past.cleanup, 1);
  T_EQ(past.complete, 1);
  /* queued behind a job that outlives its deadline */
  T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(blocker_cb, NULL)), 0);
  wait_started();
  struct timeval soon = in_ms(30), late = in_ms(600000);
  T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch_timeout(dl_cb, &missed, &soon)), 0);
  T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch_timeout(dl_cb, &kept, &late)), 0);
  usleep(60000);
  __atomic_store_n(&gate_open, 1, __ATOMIC_RELEASE);
  ev_spin_until(&dl_done, 3, 20000);
  T_EQ(missed.work, 0);
  T_EQ(missed.cleanup, 1);
  T_EQ(missed.complete, 1);
  T_EQ(kept.work, 1);
  T_EQ(kept.cleanup, 1);
  T_EQ(kept.complete, 1);
  ev_spin_until(&bl_done, 1, 20000);
  ev_teardown();
}

/* ---- subqueue fairness ------------------------------------------------------------------------ */

#define FAIR_N 20
static int fair_order[3 * FAIR_N + 8], fair_n, fair_done;
static pthread_mutex_t fair_lock = PTHREAD_MUTEX_INITIALIZER;

static int fair_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)now;
  if (mask == EVENTER_ASYNCH_WORK) {
    pthread_mutex_lock(&fair_lock);
    fair_order[fair_n++] = (int)(intptr_t)c;
    pthread_mutex_unlock(&fair_lock);
  } else if (mask == EVENTER_ASYNCH_COMPLETE) {
    INC(&fair_done);
  }
  return 0;
}

static void test_subqueue_fairness(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("fair");
  eventer_jobq_set_concurrency(q, 1);
  gate_open = blocker_started = bl_done = fair_done = fair_n = 0;
  /* hold the only thread while the subqueues fill up */
  T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(blocker_cb, NULL)), 0);
  wait_started();
  /* subqueue 1 queues all its jobs first, then 2, then a late, short 3 */
  for (int i = 0; i < FAIR_N; i++)
    T_EQ(eventer_add_asynch_subqueue_ex(q, eventer_alloc_asynch(fair_cb, (void *)1), 1), 0);
  for (int i = 0; i < FAIR_N; i++)
    T_EQ(eventer_add_asynch_subqueue_ex(q, eventer_alloc_asynch(fair_cb, (void *)2), 2), 0);
  for (int i = 0; i < 3; i++)
    T_EQ(eventer_add_asynch_subqueue_ex(q, eventer_alloc_asynch(fair_cb, (void *)3), 3), 0);
  __atomic_store_n(&gate_open, 1, __ATOMIC_RELEASE);
  ev_spin_until(&fair_done, 2 * FAIR_N + 3, 30000);
  /* round-robin: 1 2 3 1 2 3 1 2 3 1 2 1 2 ... */
  for (int r = 0; r < 3; r++) {
    T_EQ(fair_order[3 * r], 1);
    T_EQ(fair_order[3 * r + 1], 2);
    T_EQ(fair_order[3 * r + 2], 3);
  }
  for (int i = 9; i < 2 * FAIR_N + 3; i++) T_EQ(fair_order[i], (i - 9) % 2 + 1);
  ev_spin_until(&bl_done, 1, 20000);
  ev_teardown();
}

/* ---- teardown with jobs queued: CLEANUP only --------------------------------------------------- */

static int td_work, td_cleanup, td_complete;
static eventer_jobq_t *td_q;
static int td_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  if (mask == EVENTER_ASYNCH_WORK) {
    INC(&td_work);
    /* still running when the teardown starts: until it has stopped the
     * queue (20 s at most), not a fixed 30 ms, which a main thread kept
     * off its CPU before its teardown can outlast (the thread then
     * rightly ran the next job: 'td_work == 1: 2 != 1') */
    uint64_t end = t_now_us() + 20000000u;
    while (!ev_jobq_stopping(td_q) && t_now_us() < end) usleep(1000);
  }
  if (mask == EVENTER_ASYNCH_CLEANUP) INC(&td_cleanup);
  if (mask == EVENTER_ASYNCH_COMPLETE) INC(&td_complete);
  return 0;
}

static void test_teardown_with_queued_jobs(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = td_q = eventer_jobq_create("td");
  td_work = td_cleanup = td_complete = 0;
  for (int i = 0; i < 5; i++)
    T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(td_cb, NULL)), 0);
  uint64_t end = t_now_us() + 20000000u;
  while (!LOADA(&td_work)) {
    T_CHECK(t_now_us() < end);
    usleep(1000);
  }
  ev_teardown(); /* no leaks: every event released */
  T_EQ(td_work, 1);    /* only the running one did its work */
  T_EQ(td_cleanup, 5); /* every job cleaned up */
  T_EQ(td_complete, 0);
}

/* ---- a queue destroyed while a completion is on its way -------------------------------------- */

/* The job's COMPLETE asks to run again (non-zero) on a queue destroyed
 * meanwhile: the re-add fails cleanly (ESHUTDOWN, logged), nothing reads
 * the freed queue (ASan), nothing leaks. */
static void test_destroy_with_completion_pending(void) {
  ev_setup_external(1);
  main_thread = pthread_self();
  eventer_jobq_t *q = eventer_jobq_create("gone");
  job_t j = {.completes_wanted = 2};
  stamp = completed = 0;
  T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(job_cb, &j)), 0);
  uint64_t end = t_now_us() + 20000000u;
  while (LOADA(&stamp) < 2) { /* WORK and CLEANUP done on the job thread */
    T_CHECK(t_now_us() < end);
    usleep(1000);
  }
  eventer_jobq_destroy(q);
  ev_spin_until(&completed, 1, 5000);
  T_EQ(j.ncomplete, 1);
  T_EQ(j.nwork, 1); /* the re-add was refused */
  ev_teardown();
}

/* ---- libmtev's fair share between subqueues ------------------------------------------------- */

/* 2 threads; 3 one-second jobs in subqueue A and 100 instant jobs in B,
 * queued interleaved.  A subqueue already running its share (2 / 2
 * subqueues = 1) is skipped while B has work: B finishes while A's first
 * job still runs.  (Served strictly round-robin, the second thread took
 * A's second job after one B job, and B waited a second.) */
static int fs_stamp, fs_b_last, fs_a_first_end, fs_done, fs_b_count;
static uint64_t fs_b_done_us;

static int fs_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)now;
  int is_a = c != NULL;
  if (mask == EVENTER_ASYNCH_WORK) {
    if (is_a) {
      sleep(1);
      int end = INC(&fs_stamp);
      int expect = 0;
      __atomic_compare_exchange_n(&fs_a_first_end, &expect, end, 0,
                                  __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    } else {
      __atomic_store_n(&fs_b_last, INC(&fs_stamp), __ATOMIC_RELEASE);
      if (INC(&fs_b_count) == 100)
        __atomic_store_n(&fs_b_done_us, t_now_us(), __ATOMIC_RELEASE);
    }
  } else if (mask == EVENTER_ASYNCH_COMPLETE) {
    fs_done++;
  }
  return 0;
}

static void test_fair_share(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("fair_share");
  eventer_jobq_set_concurrency(q, 2);
  fs_stamp = fs_b_last = fs_a_first_end = fs_done = fs_b_count = 0;
  fs_b_done_us = 0;
  /* both threads busy while everything is queued, so the order the jobs
   * are served in does not depend on how fast this thread queues them */
  gate_open = blocker_started = bl_done = 0;
  for (int i = 0; i < 2; i++)
    T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(blocker_cb, NULL)), 0);
  uint64_t end = t_now_us() + 20000000u;
  while (LOADA(&blocker_started) < 2) {
    T_CHECK(t_now_us() < end);
    usleep(1000);
  }
  const uint64_t A = 1, B = 2;
  for (int i = 0; i < 100; i++) {
    if (i < 3)
      T_EQ(eventer_add_asynch_subqueue_ex(q, eventer_alloc_asynch(fs_cb, (void *)1), A), 0);
    T_EQ(eventer_add_asynch_subqueue_ex(q, eventer_alloc_asynch(fs_cb, NULL), B), 0);
  }
  uint64_t t0 = t_now_us();
  __atomic_store_n(&gate_open, 1, __ATOMIC_RELEASE);
  ev_spin_until(&fs_done, 103, 30000);
  printf("  B's 100 jobs done %.3f s after the gate opened; A's first job "
         "ended at stamp %d, B's last ran at stamp %d\n",
         (double)(fs_b_done_us - t0) / 1e6, fs_a_first_end, fs_b_last);
  T_CHECK(fs_b_last < fs_a_first_end); /* B never waited for A */
  ev_spin_until(&bl_done, 2, 20000);
  ev_teardown();
}

/* A port of libmtev's subqueue workload: 4 threads; subqueues of 20
 * one-second jobs (three, and one with a 1 s deadline) next to 1,000
 * instant jobs and 1,000 instant jobs with a 5 s deadline.  The instant
 * jobs finish in about a second (round-robin took 15 s) and every one of
 * the deadline ones runs its WORK (round-robin: 5 of 1,000).  The slow
 * subqueues are not waited for: the queue is destroyed once the instant
 * ones are done. */
typedef struct {
  const char *name;
  int jobs, cost_s, deadline_s;
  int work, cleanup, complete;
} wl_t;

static int wl_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)now;
  wl_t *w = c;
  switch (mask) {
  case EVENTER_ASYNCH_WORK:
    INC(&w->work);
    if (w->cost_s) sleep((unsigned)w->cost_s);
    break;
  case EVENTER_ASYNCH_CLEANUP: INC(&w->cleanup); break;
  case EVENTER_ASYNCH_COMPLETE: INC(&w->complete); break;
  }
  return 0;
}

static void test_subqueue_workload(void) {
  ev_setup_external(1);
  int fast = (int)t_scale(1000, 10);
  static wl_t wl[6];
  wl_t init[6] = {{"abusive", 20, 1, 0, 0, 0, 0},
                  {"abusive2", 20, 1, 0, 0, 0, 0},
                  {"abusive3", 20, 1, 0, 0, 0, 0},
                  {"abusive deadline", 20, 1, 1, 0, 0, 0},
                  {"fast", fast, 0, 0, 0, 0, 0},
                  {"fast deadline", fast, 0, 5, 0, 0, 0}};
  memcpy(wl, init, sizeof(wl));
  eventer_jobq_t *q = eventer_jobq_create_ms("test_jobq", EVENTER_JOBQ_MS_GC);
  T_CHECK(q != NULL);
  eventer_jobq_set_concurrency(q, 4);
  uint64_t t0 = t_now_us();
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < wl[i].jobs; j++) {
      eventer_t e;
      if (wl[i].deadline_s) {
        struct timeval deadline;
        gettimeofday(&deadline, NULL);
        deadline.tv_sec += wl[i].deadline_s;
        e = eventer_alloc_asynch_timeout(wl_cb, &wl[i], &deadline);
      } else {
        e = eventer_alloc_asynch(wl_cb, &wl[i]);
      }
      eventer_add_asynch_subqueue(q, e, (uint64_t)i);
    }
  struct timeval w = {0, 5000};
  uint64_t end = t0 + 60000000u;
  while (LOADA(&wl[4].complete) < fast || LOADA(&wl[5].complete) < fast) {
    T_CHECKF(t_now_us() < end, "fast %d/%d, fast deadline %d/%d", wl[4].complete,
             fast, wl[5].complete, fast);
    T_EQ(eventer_run_once(NULL, &w), EVENTER_RUN_DONE);
  }
  double took = (double)(t_now_us() - t0) / 1e6;
  printf("  %d + %d instant jobs done after %.3f s (4 threads, 6 subqueues)\n",
         fast, fast, took);
  T_EQ(wl[4].work, fast);
  T_EQ(wl[5].work, fast); /* every one ran WORK before its 5 s deadline */
  T_EQ(wl[5].cleanup, fast);
  /* "about 1 s": well under the 15 s round-robin took, with room for a
   * loaded machine */
  T_LE(took, 10.0);
  eventer_jobq_destroy(q); /* running jobs finish; queued ones: CLEANUP */
  for (int i = 0; i < 4; i++) {
    T_EQ(wl[i].cleanup, wl[i].jobs);
    T_LE(wl[i].work, wl[i].jobs);
  }
  ev_teardown();
}

/* ---- deadline and running WORK: EVIL_BRUTAL, and no cancel bits --------------------------------
 * (EVENTER_CANCEL_* are in test_eventer_jobq_cancel.c) */

#include "jobq_cancel_common.h"

static void test_evil_brutal(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("evil_brutal");
  static cx_t x;
  double took = run_deadline_job(q, cx_spin, &x, EVENTER_EVIL_BRUTAL);
  T_EQ(x.started, 1);
  T_EQ(x.finished, 0); /* siglongjmp'd out of the loop */
  T_EQ(x.cleanup, 1);
  T_CHECK(x.cleanup_on_job_thread);
  T_LE(took, 8.0);
  /* the same thread goes on with the next jobs */
  check_queue_still_works(q);
  /* EVENTER_DEFAULT_ASYNCH_ABORT is libmtev's name for it */
  took = run_deadline_job(q, cx_sleepy, &x, EVENTER_DEFAULT_ASYNCH_ABORT);
  T_EQ(x.finished, 0);
  T_EQ(x.cleanup, 1);
  ev_teardown();
}

static void test_deadline_without_cancel_runs_on(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("no_cancel");
  static cx_t x;
  /* no cancel bits: a deadline only keeps WORK from starting; this one
   * runs until told to stop */
  check_queue_still_works(q); /* a thread is up and idle */
  memset(&x, 0, sizeof(x));
  struct timeval d = in_ms(CX_DEADLINE_MS);
  uint64_t t0 = t_now_us();
  T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch_timeout(cx_spin, &x, &d)), 0);
  uint64_t end = t0 + 20000000u;
  while (!LOADA(&x.started)) {
    T_CHECK(t_now_us() < end);
    usleep(1000);
  }
  uint64_t past = t0 + CX_DEADLINE_MS * 1000u + 200000u; /* well past it */
  while (t_now_us() < past) usleep(10000);
  T_EQ(LOADA(&x.finished), 0);
  __atomic_store_n(&x.spin_stop, 1, __ATOMIC_RELEASE);
  ev_spin_until(&x.complete, 1, 20000);
  T_EQ(x.finished, 1);
  T_EQ(x.cleanup, 1);
  ev_teardown();
}

/* ---- dependent jobs ------------------------------------------------------------------------- */

static int dep_stamp, dep_parent_complete, dep_child_cleanup[2], dep_done;
static mtev_boolean dep_try_ok;
static eventer_jobq_t *dep_child_q;

static int dep_child_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)now;
  int i = (int)(intptr_t)c;
  if (mask == EVENTER_ASYNCH_WORK) usleep(100000);
  if (mask == EVENTER_ASYNCH_CLEANUP) dep_child_cleanup[i] = INC(&dep_stamp);
  if (mask == EVENTER_ASYNCH_COMPLETE) INC(&dep_done);
  return 0;
}

static int dep_parent_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  if (mask == EVENTER_ASYNCH_WORK) {
    eventer_add_asynch_dep(dep_child_q, eventer_alloc_asynch(dep_child_cb, (void *)0));
    dep_try_ok = eventer_try_add_asynch_dep_subqueue(
        dep_child_q, eventer_alloc_asynch(dep_child_cb, (void *)1), 9);
  }
  if (mask == EVENTER_ASYNCH_COMPLETE) {
    dep_parent_complete = INC(&dep_stamp);
    INC(&dep_done);
  }
  return 0;
}

static void test_dependent_jobs(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("dep_parent");
  dep_child_q = eventer_jobq_create("dep_child");
  eventer_jobq_set_concurrency(dep_child_q, 2);
  dep_stamp = dep_parent_complete = dep_done = 0;
  dep_child_cleanup[0] = dep_child_cleanup[1] = 0;
  T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(dep_parent_cb, NULL)), 0);
  ev_spin_until(&dep_done, 3, 20000);
  T_EQ(dep_try_ok, mtev_true);
  T_CHECK(dep_child_cleanup[0] > 0 && dep_child_cleanup[1] > 0);
  /* the parent's COMPLETE waited for both dependents */
  T_GE(dep_parent_complete, dep_child_cleanup[0] + 1);
  T_GE(dep_parent_complete, dep_child_cleanup[1] + 1);
  /* off a job thread, _dep adds an ordinary job */
  T_EQ(eventer_add_asynch_dep_ex(dep_child_q, eventer_alloc_asynch(dep_child_cb, (void *)0)), 0);
  ev_spin_until(&dep_done, 4, 20000);
  ev_teardown();
}

/* ---- LIFO order, drain and shutdown, names, settings ------------------------------------------ */

static int order[8], norder, order_done;
static int order_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)now;
  if (mask == EVENTER_ASYNCH_WORK) order[norder++] = (int)(intptr_t)c;
  if (mask == EVENTER_ASYNCH_COMPLETE) INC(&order_done);
  return 0;
}

static void test_lifo(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("lifo");
  T_EQ(eventer_jobq_get_lifo(q), mtev_false);
  eventer_jobq_set_lifo(q, mtev_true);
  T_EQ(eventer_jobq_get_lifo(q), mtev_true);
  gate_open = blocker_started = bl_done = norder = order_done = 0;
  T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(blocker_cb, NULL)), 0);
  wait_started();
  for (int i = 1; i <= 5; i++)
    T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(order_cb, (void *)(intptr_t)i)), 0);
  __atomic_store_n(&gate_open, 1, __ATOMIC_RELEASE);
  ev_spin_until(&order_done, 5, 20000);
  for (int i = 0; i < 5; i++) T_EQ(order[i], 5 - i); /* newest first */
  ev_spin_until(&bl_done, 1, 20000);
  ev_teardown();
}

static int drain_work, drain_cleanup, drain_complete;
static int drain_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  if (mask == EVENTER_ASYNCH_WORK) {
    usleep(30000);
    INC(&drain_work);
  }
  if (mask == EVENTER_ASYNCH_CLEANUP) INC(&drain_cleanup);
  if (mask == EVENTER_ASYNCH_COMPLETE) INC(&drain_complete);
  return 0;
}

static void test_drain_and_shutdown(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("drain");
  eventer_jobq_set_concurrency(q, 2);
  drain_work = drain_cleanup = drain_complete = 0;
  for (int i = 0; i < 6; i++)
    T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(drain_cb, NULL)), 0);
  eventer_jobq_drain_and_shutdown(q);
  T_EQ(LOADA(&drain_work), 6); /* every queued job ran, none was dropped */
  T_EQ(LOADA(&drain_cleanup), 6);
  T_CHECK(eventer_jobq_retrieve("drain") == NULL); /* and the queue is gone */
  ev_spin_until(&drain_complete, 6, 20000);
  ev_teardown();
}

static char job_tname[64], job_os_name[16];
static eventer_t job_this;
static eventer_job_t *job_inflight;
static int names_done;
static int names_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)c, (void)now;
  if (mask == EVENTER_ASYNCH_WORK) {
    snprintf(job_tname, sizeof(job_tname), "%s", eventer_get_thread_name());
    pthread_getname_np(pthread_self(), job_os_name, sizeof(job_os_name));
    job_this = eventer_get_this_event();
    job_inflight = eventer_jobq_inflight();
    (void)e;
  }
  if (mask == EVENTER_ASYNCH_COMPLETE) INC(&names_done);
  return 0;
}

static mtev_boolean count_queues(eventer_jobq_t *q, void *c) {
  (void)q;
  return ++*(int *)c < 2 ? mtev_true : mtev_false; /* stop after two */
}

static void test_names_and_settings(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("names");
  names_done = 0;
  eventer_t e = eventer_alloc_asynch(names_cb, NULL);
  T_EQ(eventer_add_asynch_ex(q, e), 0);
  ev_spin_until(&names_done, 1, 20000);
  T_STR_EQ(job_tname, "q:names/0"); /* libmtev: never NULL on job threads */
  T_STR_EQ(job_os_name, "q:names/0");
  T_PTR_EQ(job_this, e);
  T_CHECK(job_inflight != NULL);
  T_CHECK(eventer_jobq_inflight() == NULL); /* not a job thread */
  /* a short name (clipped to 13) names threads started from now on */
  eventer_jobq_t *q2 = eventer_jobq_create("a_queue_with_a_long_name");
  eventer_jobq_set_shortname(q2, "shortened_name_x");
  T_EQ(eventer_add_asynch_ex(q2, eventer_alloc_asynch(names_cb, NULL)), 0);
  ev_spin_until(&names_done, 2, 20000);
  T_STR_EQ(job_tname, "q:shortened_nam/0");
  /* memory safety: another mode only while no thread ever ran */
  eventer_jobq_t *ms = eventer_jobq_create_ms("ms_q", EVENTER_JOBQ_MS_GC);
  T_EQ(eventer_jobq_get_memory_safety(ms), EVENTER_JOBQ_MS_GC);
  T_PTR_EQ(eventer_jobq_create("ms_q"), ms); /* takes CS: no thread yet */
  T_EQ(eventer_jobq_get_memory_safety(ms), EVENTER_JOBQ_MS_CS);
  T_PTR_EQ(eventer_jobq_create_ms("names", EVENTER_JOBQ_MS_CS), q);
  T_CHECK(eventer_jobq_create_ms("names", EVENTER_JOBQ_MS_NONE) == NULL);
  T_EQ(errno, EEXIST);
  T_CHECK(eventer_jobq_create_ms("bad", (eventer_jobq_memory_safety_t)9) == NULL);
  eventer_jobq_set_max_backlog(q, 11);
  T_EQ(eventer_jobq_get_max_backlog(q), 11);
  eventer_jobq_post(q);
  int n = 0;
  eventer_jobq_process_each(count_queues, &n);
  T_EQ(n, 2);
  ev_teardown();
}

T_MAIN({"phases_and_threads", test_phases_and_threads},
       {"concurrency_limit", test_concurrency_limit},
       {"backlog_refusal", test_backlog_refusal},
       {"deadlines", test_deadlines},
       {"subqueue_fairness", test_subqueue_fairness},
       {"teardown_with_queued_jobs", test_teardown_with_queued_jobs},
       {"destroy_with_completion_pending", test_destroy_with_completion_pending},
       {"fair_share", test_fair_share},
       {"subqueue_workload", test_subqueue_workload},
       {"evil_brutal", test_evil_brutal},
       {"deadline_without_cancel_runs_on", test_deadline_without_cancel_runs_on},
       {"dependent_jobs", test_dependent_jobs},
       {"lifo", test_lifo},
       {"drain_and_shutdown", test_drain_and_shutdown},
       {"names_and_settings", test_names_and_settings})
