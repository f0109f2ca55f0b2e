/*
 * test_eventer_jobq.c - job queues: phases and threads of an asynch event,
 * concurrency limits, backlog refusal, deadlines, subqueue fairness,
 * COMPLETE re-adds, sizing settings, teardown with queued jobs.  The loop
 * is driven by the test thread; the jobs run on the queues' threads.
 * Also run under ThreadSanitizer.
 */
#include "evtest.h"

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

static int conc_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  if (mask == EVENTER_ASYNCH_WORK) {
    int r = INC(&running);
    int m = LOADA(&max_running);
    while (r > m && !__atomic_compare_exchange_n(&max_running, &m, r, 0,
                                                 __ATOMIC_ACQ_REL,
                                                 __ATOMIC_ACQUIRE)) {
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
  running = max_running = conc_done = 0;
  for (int i = 0; i < 12; i++)
    T_EQ(eventer_add_asynch_ex(q, eventer_alloc_asynch(conc_cb, NULL)), 0);
  ev_spin_until(&conc_done, 12, 30000);
  T_EQ(max_running, 3); /* reached, never exceeded */

  /* lower it: one at a time from now on */
  eventer_jobq_set_concurrency(q, 1);
  max_running = conc_done = 0;
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
static int td_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  if (mask == EVENTER_ASYNCH_WORK) {
    INC(&td_work);
    usleep(30000); /* still running when the teardown starts */
  }
  if (mask == EVENTER_ASYNCH_CLEANUP) INC(&td_cleanup);
  if (mask == EVENTER_ASYNCH_COMPLETE) INC(&td_complete);
  return 0;
}

static void test_teardown_with_queued_jobs(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("td");
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

T_MAIN({"phases_and_threads", test_phases_and_threads},
       {"concurrency_limit", test_concurrency_limit},
       {"backlog_refusal", test_backlog_refusal},
       {"deadlines", test_deadlines},
       {"subqueue_fairness", test_subqueue_fairness},
       {"teardown_with_queued_jobs", test_teardown_with_queued_jobs},
       {"destroy_with_completion_pending", test_destroy_with_completion_pending})
