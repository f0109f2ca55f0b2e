/*
 * test_eventer_timers.c - timers (eventer_t and intrusive nodes) and
 * recurrent events, on one loop driven by the test thread.
 */
#include "evtest.h"

/* ---- deadline order, never early ---------------------------------------------- */

#define MAXT 200

typedef struct {
  uint64_t added_us, added_end_us, delay_us, fired_us;
  int order;
} tinfo_t;

static tinfo_t tinfo[MAXT];
static int fired;

static int order_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)now;
  T_EQ(mask, EVENTER_TIMER);
  tinfo_t *ti = c;
  ti->fired_us = t_now_us();
  ti->order = fired++;
  return 0;
}

static void test_deadline_order_not_early(void) {
  ev_setup_external(1);
  int n = (int)t_scale(MAXT, 4);
  fired = 0;
  srand(42);
  for (int i = 0; i < n; i++) {
    tinfo[i].delay_us = (uint64_t)(rand() % 40000);
    struct timeval d = {0, (suseconds_t)tinfo[i].delay_us};
    /* the timer's real deadline lies in [added, added_end] + delay */
    tinfo[i].added_us = t_now_us();
    T_CHECK(eventer_add_in(order_cb, &tinfo[i], d) != NULL);
    tinfo[i].added_end_us = t_now_us();
  }
  ev_spin_until(&fired, n, 20000);
  for (int i = 0; i < n; i++) {
    /* never early, late only by scheduling noise */
    T_GE(tinfo[i].fired_us, tinfo[i].added_us + tinfo[i].delay_us);
    T_LE_LATE(tinfo[i].fired_us,
              tinfo[i].added_end_us + tinfo[i].delay_us + ev_late_bound_us());
    for (int j = 0; j < n; j++) {
      /* deadline order, wherever the deadlines are known to differ */
      if (tinfo[i].added_end_us + tinfo[i].delay_us <
          tinfo[j].added_us + tinfo[j].delay_us)
        T_LE(tinfo[i].order, tinfo[j].order);
    }
  }
  ev_teardown();
}

/* ---- equal deadlines fire in add order ------------------------------------------ */

typedef struct {
  eventer_timer_node_t node;
  int id;
} my_node_t;

static int node_trace[4096], node_count;

static void node_fire(eventer_timer_node_t *n, struct timeval *now) {
  T_CHECK(now != NULL);
  my_node_t *m = (my_node_t *)n; /* node is the first member */
  T_CHECK(!eventer_timer_node_pending(n));
  node_trace[node_count++] = m->id;
}

static int fifo_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)now;
  node_trace[node_count++] = (int)(intptr_t)c;
  return 0;
}

static void test_equal_deadlines_fifo(void) {
  ev_setup_external(1);
  static my_node_t nodes[64];
  uint64_t deadline = eventer_mono_ns() + 5 * 1000000u;
  node_count = 0;
  /* interleave two deadlines; equal ones must come out in add order */
  for (int i = 0; i < 64; i++) {
    nodes[i].id = i;
    nodes[i].node.fire = node_fire;
    T_EQ(eventer_timer_node_add_at_ns(&nodes[i].node,
                                      deadline + (i % 2) * 1000000u), 0);
    T_CHECK(eventer_timer_node_pending(&nodes[i].node));
  }
  ev_spin_until(&node_count, 64, 10000);
  for (int i = 0; i < 32; i++) {
    T_EQ(node_trace[i], 2 * i);
    T_EQ(node_trace[32 + i], 2 * i + 1);
  }
  /* eventer_t timers that are all due already: add order */
  node_count = 0;
  struct timeval past = {1, 0};
  for (int i = 0; i < 50; i++)
    T_CHECK(eventer_add_at(fifo_cb, (void *)(intptr_t)i, past) != NULL);
  ev_spin_until(&node_count, 50, 10000);
  for (int i = 0; i < 50; i++) T_EQ(node_trace[i], i);
  ev_teardown();
}

/* ---- re-added timers ----------------------------------------------------------- */

static int readd_count;
static uint64_t readd_times[16];

static int readd_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)c;
  /* the callback's own now: the time the loop fired it by, on the clock
   * whence is on (a clock read here can be later than now by however
   * long the thread waited to run the callback) */
  readd_times[readd_count++] = (uint64_t)now->tv_sec * 1000000u + (uint64_t)now->tv_usec;
  if (readd_count == 5) return 0; /* done: the loop frees it */
  /* move whence on by 5 ms from the callback's `now`, and ask for a re-add */
  struct timeval w = *now;
  w.tv_usec += 5000;
  if (w.tv_usec >= 1000000) {
    w.tv_sec++;
    w.tv_usec -= 1000000;
  }
  T_EQ(eventer_update_whence_ex(e, w), 0);
  return EVENTER_TIMER;
}

static int same_count;
static int same_whence_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  return ++same_count < 3; /* whence unchanged (past): next iteration */
}

static void test_readded_timers(void) {
  ev_setup_external(1);
  int64_t base = eventer_allocations_current();
  readd_count = 0;
  T_CHECK(eventer_add_in_s_us(readd_cb, NULL, 0, 1000) != NULL);
  ev_spin_until(&readd_count, 5, 10000);
  for (int i = 1; i < 5; i++)
    T_GE(readd_times[i] - readd_times[i - 1], 5000); /* never early */
  T_EQ(eventer_allocations_current(), base); /* freed after returning 0 */

  same_count = 0;
  T_CHECK(eventer_add_in_s_us(same_whence_cb, NULL, 0, 0) != NULL);
  ev_turn();
  T_EQ(same_count, 1); /* one fire per iteration, even though due again */
  ev_turn();
  T_EQ(same_count, 2);
  ev_turn();
  T_EQ(same_count, 3);
  ev_turn();
  T_EQ(same_count, 3);
  T_EQ(eventer_allocations_current(), base);
  ev_teardown();
}

/* ---- removal, re-scheduling, timers touching other timers -------------------------- */

static int hits;
static int hit_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  hits++;
  return 0;
}

static eventer_t victim;
static int killer_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  /* a timer due in the same phase, removed and freed by an earlier one */
  T_PTR_EQ(eventer_remove(victim), victim);
  eventer_free(victim);
  /* and a new one added from a timer callback: fires next iteration */
  T_CHECK(eventer_add_in_s_us(hit_cb, NULL, 0, 0) != NULL);
  hits += 100;
  return 0;
}

static void test_remove_and_reschedule(void) {
  ev_setup_external(1);
  hits = 0;
  eventer_t e = eventer_in_s_us(hit_cb, NULL, 0, 20000);
  T_EQ(eventer_add_ex(e), 0);
  T_ERRNO(eventer_add_ex(e), EBUSY); /* already registered */
  T_PTR_EQ(eventer_remove(e), e);
  T_CHECK(eventer_remove(e) == NULL); /* idempotent */
  T_EQ(errno, ENOENT);
  eventer_free(e);

  /* move a far timer to "now", and a near one far away */
  eventer_t far = eventer_in_s_us(hit_cb, NULL, 100, 0);
  eventer_t near = eventer_in_s_us(hit_cb, NULL, 0, 1000);
  T_EQ(eventer_add_ex(far), 0);
  T_EQ(eventer_add_ex(near), 0);
  struct timeval past = {1, 0}, later;
  gettimeofday(&later, NULL);
  later.tv_sec += 100;
  T_EQ(eventer_update_whence_ex(far, past), 0);
  T_EQ(eventer_update_whence_ex(near, later), 0);
  ev_spin_until(&hits, 1, 5000);
  struct timeval w = {0, 20000};
  T_EQ(eventer_run_once(NULL, &w), EVENTER_RUN_DONE);
  T_EQ(hits, 1); /* only `far` (now due) fired */
  T_PTR_EQ(eventer_remove(near), near);
  eventer_free(near);

  /* timers removing/freeing each other within one timer phase */
  hits = 0;
  struct timeval p1 = {1, 0}, p2 = {2, 0};
  T_CHECK(eventer_add_at(killer_cb, NULL, p1) != NULL);
  victim = eventer_at(hit_cb, NULL, p2);
  T_EQ(eventer_add_ex(victim), 0);
  ev_turn();
  T_EQ(hits, 100);
  ev_turn();
  T_EQ(hits, 101);
  ev_teardown();
}

/* ---- intrusive nodes: many, no eventer_t allocation --------------------------------- */

static int many_fired;
static uint64_t many_last;
static void many_fire(eventer_timer_node_t *n, struct timeval *now) {
  (void)now;
  T_GE(n->deadline_ns, many_last); /* deadline order */
  T_LE(n->deadline_ns, eventer_mono_ns()); /* never early */
  many_last = n->deadline_ns;
  many_fired++;
}

static void test_intrusive_nodes_no_alloc(void) {
  ev_setup_external(1);
  int n = (int)t_scale(100000, 20);
  eventer_timer_node_t *nodes = calloc((size_t)n, sizeof(*nodes));
  int64_t total = eventer_allocations_total();
  uint64_t now = eventer_mono_ns();
  srand(7);
  for (int i = 0; i < n; i++) {
    nodes[i].fire = many_fire;
    T_EQ(eventer_timer_node_add_at_ns(&nodes[i],
                                      now + (uint64_t)(rand() % 20000) * 1000u), 0);
  }
  /* remove every third one, some twice (idempotent) */
  int removed = 0;
  for (int i = 0; i < n; i += 3) {
    T_EQ(eventer_timer_node_remove(&nodes[i]), 1);
    T_EQ(eventer_timer_node_remove(&nodes[i]), 0);
    removed++;
  }
  /* re-schedule a few that are queued */
  struct timeval d = {0, 1000};
  for (int i = 1; i < n; i += 97) T_EQ(eventer_timer_node_add(&nodes[i], &d), 0);
  int queued = 0;
  for (int i = 0; i < n; i++) queued += eventer_timer_node_pending(&nodes[i]);
  T_GE(queued, n - removed); /* some removed ones were re-scheduled */
  many_fired = 0;
  many_last = 0;
  ev_spin_until(&many_fired, queued, 60000);
  for (int i = 0; i < n; i++) T_CHECK(!eventer_timer_node_pending(&nodes[i]));
  T_EQ(eventer_allocations_total(), total); /* no eventer_t was made */
  free(nodes);
  ev_teardown();
}

/* ---- next opportunity, next timeout ------------------------------------------------- */

static void test_next_opportunity_and_timeout(void) {
  ev_setup_external(1);
  T_EQ(eventer_next_timeout_us(), -1); /* nothing scheduled */
  hits = 0;
  T_CHECK(eventer_add_timer_next_opportunity(hit_cb, NULL, pthread_self()));
  T_EQ(eventer_next_timeout_us(), 0);
  ev_turn();
  T_EQ(hits, 1);
  eventer_timer_node_t n = EVENTER_TIMER_NODE_INIT(node_fire);
  struct timeval d = {0, 50000};
  T_EQ(eventer_timer_node_add(&n, &d), 0);
  int64_t us = eventer_next_timeout_us();
  T_CHECK(us > 40000 && us <= 50000);
  T_EQ(eventer_timer_node_remove(&n), 1);
  /* a recurrent event caps the wait at 200 ms (as run_once's own), with
   * or without timers further out */
  eventer_t r = eventer_alloc_recurrent(hit_cb, NULL);
  T_EQ(eventer_add_ex(r), 0);
  us = eventer_next_timeout_us();
  T_CHECK(us > 190000 && us <= 200000);
  d.tv_sec = 10;
  T_EQ(eventer_timer_node_add(&n, &d), 0);
  T_CHECK(eventer_next_timeout_us() <= 200000);
  T_EQ(eventer_timer_node_remove(&n), 1);
  T_PTR_EQ(eventer_remove(r), r);
  eventer_free(r);
  T_CHECK(eventer_alloc_timer_next_opportunity(hit_cb, NULL, (pthread_t)0) == NULL);
  ev_teardown();
}

/* ---- recurrent events ------------------------------------------------------------------ */

static int rec_a, rec_b, rec_c;
static eventer_t rec_ev_b, rec_ev_c; /* c is added by b */

static int rec_a_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  T_EQ(mask, EVENTER_RECURRENT);
  rec_a++;
  return 0; /* ignored */
}

static int rec_c_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  rec_c++;
  return 0;
}

static int rec_b_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)c, (void)now;
  rec_b++;
  if (rec_b == 2) {
    /* added during the recurrent phase: it first runs on the next pass */
    eventer_t added = eventer_alloc_recurrent(rec_c_cb, NULL);
    T_EQ(eventer_add_ex(added), 0);
    rec_ev_c = added;
  }
  if (rec_b == 4) {
    /* remove itself and the next one in the list, free both */
    T_PTR_EQ(eventer_remove(e), e);
    T_PTR_EQ(eventer_remove(rec_ev_c), rec_ev_c);
    eventer_free(rec_ev_c);
    eventer_free(e);
  }
  return 1; /* ignored */
}

static void test_recurrent(void) {
  ev_setup_external(1);
  rec_a = rec_b = rec_c = 0;
  eventer_t a = eventer_alloc_recurrent(rec_a_cb, NULL);
  rec_ev_b = eventer_alloc_recurrent(rec_b_cb, NULL);
  T_EQ(eventer_add_recurrent_ex(a), 0);
  T_EQ(eventer_add_ex(rec_ev_b), 0);
  ev_turn();
  T_EQ(rec_a, 1);
  T_EQ(rec_b, 1);
  T_EQ(rec_c, 0);
  ev_turn(); /* b adds c during the pass: c does not run in it */
  T_EQ(rec_b, 2);
  T_EQ(rec_c, 0);
  ev_turn();
  T_EQ(rec_c, 1);
  ev_turn(); /* b removes itself and c */
  T_EQ(rec_b, 4);
  T_EQ(rec_c, 1);
  for (int i = 0; i < 5; i++) ev_turn();
  T_EQ(rec_a, 9); /* a ran on each of the 9 passes */
  T_EQ(rec_b, 4);
  T_EQ(rec_c, 1);
  T_PTR_EQ(eventer_remove_recurrent(a), a);
  eventer_free(a);
  ev_teardown();
}

T_MAIN({"deadline_order_not_early", test_deadline_order_not_early},
       {"equal_deadlines_fifo", test_equal_deadlines_fifo},
       {"readded_timers", test_readded_timers},
       {"remove_and_reschedule", test_remove_and_reschedule},
       {"intrusive_nodes_no_alloc", test_intrusive_nodes_no_alloc},
       {"next_opportunity_and_timeout", test_next_opportunity_and_timeout},
       {"recurrent", test_recurrent})
