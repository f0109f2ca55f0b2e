/*
 * test_eventer_step.c - eventer_run_once with a step buffer, the way the Go
 * driver uses it: foreign callbacks handed back in the same order a C loop
 * would run them, their return values applied, the paused iteration
 * resumed (no new epoll_wait), steps emitted by C code, tasks, intrusive
 * timers, and misuse.
 */
#include "evtest.h"
#include "eventer_impl.h"

#include <fcntl.h>

/* ---- the trace ------------------------------------------------------------------ */

static char trace[128][16];
static int ntrace;

static void tr(const char *s) {
  T_CHECK(ntrace < 128);
  snprintf(trace[ntrace++], sizeof(trace[0]), "%s", s);
}

/* ---- one scenario, run by a C loop and by a driver -------------------------------------- */

static int pa[2], pb[2], pc[2], pd[2], pe[2], px[2];
static eventer_t ev_a, ev_c, ev_d, ev_r, ev_r2;
static int tr_count;
static int emitted, emitted_at; /* driver: user steps seen, trace position */

/* The foreign callback: one function (as the Go trampoline is), dispatching
 * on the closure.  The driver calls it itself; a C loop calls it directly. */
static int foreign_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)now;
  const char *what = c;
  /* outside run_once (driver) or inside a callback (C loop): no free slot */
  T_CHECK(eventer_step_emit() == NULL);
  char b;
  if (!strcmp(what, "T2")) {
    tr("T2");
    return 0;
  }
  if (!strcmp(what, "TR")) {
    char buf[16];
    snprintf(buf, sizeof(buf), "TR%d", ++tr_count);
    tr(buf);
    return tr_count < 3; /* re-add twice, then done */
  }
  if (!strcmp(what, "R")) {
    T_EQ(mask, EVENTER_RECURRENT);
    tr("R");
    return 0;
  }
  if (!strcmp(what, "B")) {
    T_EQ(mask & EVENTER_READ, EVENTER_READ);
    T_EQ(read(pb[0], &b, 1), 1);
    T_EQ(write(pe[1], "e", 1), 1); /* E's readiness needs a new epoll_wait */
    T_PTR_EQ(eventer_remove_fde(e), e);
    tr("B");
    return 0; /* the loop frees B */
  }
  if (!strcmp(what, "X")) {
    T_EQ(mask, EVENTER_READ | EVENTER_WRITE); /* the trigger's mask */
    tr("X");
    return 0; /* a triggered, unregistered fd event: freed */
  }
  T_FAIL("unknown foreign closure %s", what);
  return 0;
}

static int c_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)now;
  const char *what = c;
  char b;
  if (!strcmp(what, "T1") || !strcmp(what, "T3")) {
    tr(what);
    return 0;
  }
  if (!strcmp(what, "R2")) {
    tr("R2");
    return 0;
  }
  if (!strcmp(what, "A")) {
    T_EQ(read(pa[0], &b, 1), 1);
    eventer_t x = eventer_alloc_fd(foreign_cb, "X", px[0], EVENTER_READ);
    T_EQ(eventer_trigger_ex(x, EVENTER_READ | EVENTER_WRITE), 0);
    tr("A");
    return EVENTER_READ;
  }
  if (!strcmp(what, "C")) {
    T_EQ(read(pc[0], &b, 1), 1);
    /* D is later in this same batch: remove and free it; it must not run */
    T_PTR_EQ(eventer_remove(ev_d), ev_d);
    eventer_free(ev_d);
    ev_d = NULL;
    tr("C");
    return EVENTER_READ;
  }
  if (!strcmp(what, "D")) {
    tr("D");
    return EVENTER_READ;
  }
  if (!strcmp(what, "E")) {
    T_EQ(mask & EVENTER_READ, EVENTER_READ);
    T_EQ(read(pe[0], &b, 1), 1);
    T_PTR_EQ(eventer_remove_fde(e), e);
    tr("E");
    return 0;
  }
  T_FAIL("unknown closure %s", what);
  return 0;
}

static void p1_run(eventer_task_t *t, struct timeval *now) {
  (void)t;
  T_CHECK(now != NULL);
  tr("P1");
}

static void p2_run(eventer_task_t *t, struct timeval *now) {
  (void)t, (void)now;
  tr("P2");
  eventer_step_t *s = eventer_step_emit();
  if (s) { /* only with a driver */
    T_CHECK(eventer_step_emit() == NULL); /* one per return */
    s->kind = EVENTER_STEP_USER + 1;
    s->u64[0] = 42;
    s->closure = &emitted;
  }
}

static eventer_task_t p1 = {NULL, p1_run}, p2 = {NULL, p2_run};

static void mkpipe(int p[2]) { T_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0); }

static void scenario_setup(void) {
  ev_setup_external(1);
  T_EQ(eventer_callback_set_foreign(foreign_cb), 0);
  T_EQ(eventer_callback_set_foreign(foreign_cb), 0); /* idempotent */
  T_CHECK(eventer_callback_is_foreign(foreign_cb));
  T_CHECK(!eventer_callback_is_foreign(c_cb));
  ntrace = tr_count = emitted = 0;
  emitted_at = -1;
  struct timeval past = {1, 0};
  T_CHECK(eventer_add_at(c_cb, "T1", past));
  T_CHECK(eventer_add_at(foreign_cb, "T2", past));
  T_CHECK(eventer_add_at(c_cb, "T3", past));
  T_CHECK(eventer_add_at(foreign_cb, "TR", past));
  T_EQ(eventer_task_post(&p1), 0);
  T_EQ(eventer_task_post(&p2), 0);
  ev_r = eventer_alloc_recurrent(foreign_cb, "R");
  ev_r2 = eventer_alloc_recurrent(c_cb, "R2");
  T_EQ(eventer_add_ex(ev_r), 0);
  T_EQ(eventer_add_ex(ev_r2), 0);
  mkpipe(pa), mkpipe(pb), mkpipe(pc), mkpipe(pd), mkpipe(pe), mkpipe(px);
  /* ready before they are added: the first batch is in add order */
  T_EQ(write(pa[1], "a", 1), 1);
  T_EQ(write(pb[1], "b", 1), 1);
  T_EQ(write(pc[1], "c", 1), 1);
  T_EQ(write(pd[1], "d", 1), 1);
  ev_a = eventer_alloc_fd(c_cb, "A", pa[0], EVENTER_READ);
  T_EQ(eventer_add_ex(ev_a), 0);
  T_EQ(eventer_add_ex(eventer_alloc_fd(foreign_cb, "B", pb[0], EVENTER_READ)), 0);
  ev_c = eventer_alloc_fd(c_cb, "C", pc[0], EVENTER_READ);
  T_EQ(eventer_add_ex(ev_c), 0);
  ev_d = eventer_alloc_fd(c_cb, "D", pd[0], EVENTER_READ);
  T_EQ(eventer_add_ex(ev_d), 0);
  T_EQ(eventer_add_ex(eventer_alloc_fd(c_cb, "E", pe[0], EVENTER_READ)), 0);
}

static void scenario_teardown(void) {
  eventer_t evs[] = {ev_a, ev_c, ev_r, ev_r2};
  for (int i = 0; i < 4; i++) {
    T_PTR_EQ(eventer_remove(evs[i]), evs[i]);
    eventer_free(evs[i]);
  }
  T_EQ(eventer_allocations_current(), 0); /* B, D, E, X, timers: freed */
  int *ps[] = {pa, pb, pc, pd, pe, px};
  for (int i = 0; i < 6; i++) close(ps[i][0]), close(ps[i][1]);
  ev_teardown();
}

/* One iteration as a driver runs it: hand back foreign callbacks' results
 * and consume emitted steps until run_once says the iteration is done. */
static int drive_iteration(eventer_step_t *st) {
  struct timeval zero = {0, 0};
  int steps = 0;
  for (;;) {
    int rc = eventer_run_once(st, &zero);
    if (rc == EVENTER_RUN_DONE) return steps;
    T_EQ(rc, EVENTER_RUN_STEP);
    steps++;
    if (st->kind == EVENTER_STEP_CALLBACK) {
      T_CHECK(eventer_callback_is_foreign(eventer_get_callback(st->e)));
      T_PTR_EQ(st->closure, eventer_get_closure(st->e));
      T_CHECK(st->now.tv_sec > 0);
      /* the driver runs the callback itself, off run_once */
      st->rv = eventer_get_callback(st->e)(st->e, st->mask, st->closure, &st->now);
      /* kind stays EVENTER_STEP_CALLBACK: run_once applies rv first */
    } else {
      T_EQ(st->kind, EVENTER_STEP_USER + 1);
      T_EQ(st->u64[0], 42);
      T_PTR_EQ(st->closure, &emitted);
      emitted++;
      emitted_at = ntrace;
      st->kind = EVENTER_STEP_NONE;
    }
  }
}

static char c_trace[128][16];
static int c_ntrace;

static void test_same_order_as_c_loop(void) {
  /* 1: a C loop (no step buffer): foreign callbacks are called directly */
  scenario_setup();
  for (int i = 0; i < 4; i++) {
    ev_turn();
    tr("--");
  }
  memcpy(c_trace, trace, sizeof(trace));
  c_ntrace = ntrace;
  scenario_teardown();

  /* 2: a driver: the same order, with foreign callbacks handed back */
  scenario_setup();
  eventer_step_t st = {0};
  int steps = 0;
  for (int i = 0; i < 4; i++) {
    steps += drive_iteration(&st);
    tr("--");
  }
  /* T2, TR x3, R x4, B, X handed back; one step emitted */
  T_EQ(steps, 1 + 3 + 4 + 1 + 1 + 1);
  T_EQ(emitted, 1);
  scenario_teardown();

  T_EQ(ntrace, c_ntrace);
  char a[1024] = "", b[1024] = "";
  for (int i = 0; i < ntrace; i++) {
    strcat(a, trace[i]), strcat(a, " ");
    strcat(b, c_trace[i]), strcat(b, " ");
  }
  T_STR_EQ(a, b);
  T_STR_EQ(a, "T1 T2 T3 TR1 P1 P2 R R2 A B C -- "
              "TR2 X R R2 E -- "
              "TR3 R R2 -- "
              "R R2 -- ");
  /* the emitted step reached the driver right after the task that made it */
  T_EQ(emitted_at, 6);
}

/* ---- misuse --------------------------------------------------------------------------- */

static int nested_rc, nested_errno;
static int nested_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  nested_rc = eventer_run_once(NULL, NULL);
  nested_errno = errno;
  return 0;
}

static int f2_calls;
static int f2_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  f2_calls++;
  if (c) eventer_shutdown(); /* stop from inside a handed-back callback */
  return 0;
}

static void test_misuse(void) {
  ev_setup_external(1);
  T_EQ(eventer_callback_set_foreign(f2_cb), 0);
  eventer_step_t st = {0};
  st.kind = EVENTER_STEP_CALLBACK; /* nothing was handed out */
  T_ERRNO(eventer_run_once(&st, NULL), EINVAL);
  st.kind = EVENTER_STEP_NONE;

  /* nested run_once from a callback */
  T_CHECK(eventer_add_in_s_us(nested_cb, NULL, 0, 0));
  ev_turn();
  T_EQ(nested_rc, -1);
  T_EQ(nested_errno, EBUSY);

  /* a paused callback needs its rv back, for the right event */
  eventer_t e1 = eventer_alloc_timer(f2_cb, NULL, NULL);
  T_EQ(eventer_add_ex(e1), 0);
  struct timeval zero = {0, 0};
  T_EQ(eventer_run_once(&st, &zero), EVENTER_RUN_STEP);
  T_EQ(st.kind, EVENTER_STEP_CALLBACK);
  T_PTR_EQ(st.e, e1);
  T_EQ(eventer_allocations_current(), 1); /* held for the driver */
  T_CHECK(eventer_next_timeout_us() == 0); /* an iteration is paused */
  T_ERRNO(eventer_run_once(NULL, &zero), EINVAL);
  eventer_step_t other = st;
  other.kind = EVENTER_STEP_NONE;
  T_ERRNO(eventer_run_once(&other, &zero), EINVAL);
  other.kind = EVENTER_STEP_CALLBACK;
  other.e = (eventer_t)&other;
  T_ERRNO(eventer_run_once(&other, &zero), EINVAL);
  st.rv = eventer_get_callback(st.e)(st.e, st.mask, st.closure, &st.now);
  T_EQ(eventer_run_once(&st, &zero), EVENTER_RUN_DONE);
  T_EQ(eventer_allocations_current(), 0); /* rv 0: the timer is freed */

  /* shutdown from inside a handed-back callback: the paused iteration
   * finishes, then the loop reports that it stops */
  T_CHECK(eventer_add_in_s_us(f2_cb, (void *)1, 0, 0));
  T_CHECK(eventer_add_in_s_us(f2_cb, NULL, 0, 0));
  f2_calls = 0;
  T_EQ(eventer_run_once(&st, &zero), EVENTER_RUN_STEP);
  st.rv = eventer_get_callback(st.e)(st.e, st.mask, st.closure, &st.now);
  T_EQ(eventer_run_once(&st, &zero), EVENTER_RUN_STEP); /* the second timer */
  st.rv = eventer_get_callback(st.e)(st.e, st.mask, st.closure, &st.now);
  T_EQ(eventer_run_once(&st, &zero), EVENTER_RUN_DONE);
  T_EQ(f2_calls, 2);
  T_EQ(eventer_run_once(&st, &zero), EVENTER_RUN_STOPPED);
  T_EQ(eventer_run_once(NULL, NULL), EVENTER_RUN_STOPPED);
  ev_teardown();
}

static int lazy_foreign_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  return 0; /* forgot to remove */
}

static void lazy_foreign_child(void *arg) {
  (void)arg;
  ev_setup_external(1);
  eventer_callback_set_foreign(lazy_foreign_cb);
  eventer_name_callback("lazy_foreign_cb", lazy_foreign_cb);
  int p[2];
  mkpipe(p);
  T_EQ(write(p[1], "x", 1), 1);
  T_EQ(eventer_add_ex(eventer_alloc_fd(lazy_foreign_cb, NULL, p[0], EVENTER_READ)), 0);
  eventer_step_t st = {0};
  struct timeval zero = {0, 0};
  T_EQ(eventer_run_once(&st, &zero), EVENTER_RUN_STEP);
  st.rv = 0;
  eventer_run_once(&st, &zero); /* applying rv 0 is fatal */
}

static void test_foreign_rv_zero_without_remove_is_fatal(void) {
  t_expect_death(lazy_foreign_child, NULL,
                 "fd callback lazy_foreign_cb returned 0 for event");
}

/* ---- foreign fd mask changes and frees ------------------------------------------------------- */

static int fm_masks[8], nfm;
static int fmask_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)c, (void)now;
  fm_masks[nfm++] = mask;
  if (nfm == 1) return EVENTER_WRITE;
  T_PTR_EQ(eventer_remove_fde(e), e);
  return 0;
}

static void test_foreign_fd_rv_applied(void) {
  ev_setup_external(1);
  T_EQ(eventer_callback_set_foreign(fmask_cb), 0);
  int sv[2];
  T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  T_EQ(write(sv[1], "y", 1), 1);
  nfm = 0;
  T_EQ(eventer_add_ex(eventer_alloc_fd(fmask_cb, NULL, sv[0], EVENTER_READ)), 0);
  eventer_step_t st = {0};
  drive_iteration(&st);
  drive_iteration(&st);
  T_EQ(nfm, 2);
  T_EQ(fm_masks[0], EVENTER_READ);
  T_EQ(fm_masks[1], EVENTER_WRITE); /* the handed-back rv became the mask */
  T_EQ(eventer_allocations_current(), 0);
  close(sv[0]);
  close(sv[1]);
  ev_teardown();
}

/* ---- tasks: FIFO, and posts during the task phase wait an iteration ---------------------------- */

typedef struct {
  eventer_task_t t;
  int id, reposts;
} rtask_t;

static int task_log[64], ntask_log;

static void rtask_run(eventer_task_t *t, struct timeval *now) {
  (void)now;
  rtask_t *r = (rtask_t *)t;
  task_log[ntask_log++] = r->id;
  if (r->reposts-- > 0) T_EQ(eventer_task_post(t), 0); /* keeps yielding */
}

static int fd_hits;
static int hit_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  fd_hits++;
  return EVENTER_READ;
}

static void test_tasks(void) {
  ev_setup_external(1);
  static rtask_t a = {{NULL, rtask_run}, 1, 3}, b = {{NULL, rtask_run}, 2, 3},
                 c = {{NULL, rtask_run}, 3, 0};
  ntask_log = 0;
  T_EQ(eventer_task_post(&a.t), 0);
  T_EQ(eventer_task_post(&b.t), 0);
  T_EQ(eventer_task_post_to(eventer_loop_current(), &c.t), 0); /* via queue */
  T_ERRNO(eventer_task_post(NULL), EINVAL);
  T_ERRNO(eventer_task_post_to(NULL, &c.t), EINVAL);
  /* an fd that is always ready: it must run every iteration even while
   * two tasks keep re-posting themselves */
  int p[2];
  mkpipe(p);
  T_EQ(write(p[1], "x", 1), 1);
  eventer_t e = eventer_alloc_fd(hit_cb, NULL, p[0], EVENTER_READ);
  T_EQ(eventer_add_ex(e), 0);
  fd_hits = 0;
  ev_turn();
  T_EQ(ntask_log, 3); /* 1 2 3: one run each this iteration */
  T_EQ(fd_hits, 1);
  ev_turn();
  T_EQ(ntask_log, 5); /* 1 2 again */
  T_EQ(fd_hits, 2);
  ev_turn();
  ev_turn();
  ev_turn();
  int want[] = {1, 2, 3, 1, 2, 1, 2, 1, 2};
  T_EQ(ntask_log, 9);
  for (int i = 0; i < 9; i++) T_EQ(task_log[i], want[i]);
  T_EQ(fd_hits, 5);
  T_PTR_EQ(eventer_remove(e), e);
  eventer_free(e);
  close(p[0]);
  close(p[1]);
  ev_teardown();
}

/* ---- intrusive timers emitting steps ------------------------------------------------------------ */

typedef struct {
  eventer_timer_node_t node;
  int id;
} wake_t;

static int fired_ids[8], nfired;
static void wake_fire(eventer_timer_node_t *n, struct timeval *now) {
  (void)now;
  wake_t *w = (wake_t *)n;
  fired_ids[nfired++] = w->id;
  eventer_step_t *s = eventer_step_emit();
  if (s) { /* "resume this Go coroutine" */
    s->kind = EVENTER_STEP_USER;
    s->u64[0] = (uint64_t)w->id;
  }
}

static void test_timer_nodes_emit(void) {
  ev_setup_external(1);
  static wake_t w[3];
  uint64_t base = eventer_mono_ns();
  for (int i = 0; i < 3; i++) {
    w[i].id = i + 1;
    w[i].node.fire = wake_fire;
    /* base + 3, 2, 1 ms */
    T_EQ(eventer_timer_node_add_at_ns(&w[i].node, base + (3 - i) * 1000000u), 0);
  }
  T_CHECK(eventer_next_timeout_us() != -1);
  while (eventer_mono_ns() < base + 3000000u) usleep(1000);
  eventer_step_t st = {0};
  struct timeval zero = {0, 0};
  nfired = 0;
  uint64_t got[3];
  for (int i = 0; i < 3; i++) {
    T_EQ(eventer_run_once(&st, &zero), EVENTER_RUN_STEP);
    T_EQ(st.kind, EVENTER_STEP_USER);
    got[i] = st.u64[0];
    T_EQ(nfired, i + 1); /* one timer per return: order kept */
    st.kind = EVENTER_STEP_NONE;
  }
  T_EQ(eventer_run_once(&st, &zero), EVENTER_RUN_DONE);
  T_EQ(got[0], 3);
  T_EQ(got[1], 2);
  T_EQ(got[2], 1);
  T_EQ(eventer_next_timeout_us(), -1);
  T_CHECK(eventer_loop_pollfd() >= 0);
  ev_teardown();
}

/* ---- end-of-pass hooks ----------------------------------------------------------------------- */

typedef struct {
  ev_pass_hook_t h;
  int id, runs, at_iter, emit, idle;
  ev_pass_hook_t *post; /* a hook to post from this one's run */
} phook_t;

static int pass_iter;     /* the iteration being run (the test counts) */
static int busy_left;     /* the busy task re-posts itself while > 0 */
static int busy_runs;
static int hook_order[8], nhook_order;

static void phook_run(ev_pass_hook_t *h, int idle) {
  phook_t *p = (phook_t *)h;
  p->idle = idle;
  T_PTR_EQ(h->loop, NULL); /* unqueued before it runs: it may post itself */
  p->runs++;
  p->at_iter = pass_iter;
  hook_order[nhook_order++] = p->id;
  if (p->post) T_EQ(ev_pass_hook_post(p->post), 0);
  eventer_step_t *s = p->emit ? eventer_step_emit() : NULL;
  if (s) s->kind = EVENTER_STEP_USER;
}

static void busy_run(eventer_task_t *t, struct timeval *now) {
  (void)now;
  busy_runs++;
  if (busy_left > 0) {
    busy_left--;
    T_EQ(eventer_task_post(t), 0);
  }
}

static int due_fired;
static void due_fire(eventer_timer_node_t *n, struct timeval *now) {
  (void)n, (void)now;
  due_fired++;
}
static eventer_timer_node_t due_node = {.fire = due_fire};
static void add_due_run(eventer_task_t *t, struct timeval *now) {
  (void)t, (void)now;
  T_EQ(eventer_timer_node_add(&due_node, NULL), 0);
}

static void pass_turns(int n) {
  for (int i = 0; i < n; i++) {
    pass_iter++;
    ev_turn();
  }
}

static void test_pass_hooks(void) {
  static phook_t a, b, c, d;
  static eventer_task_t busy = {NULL, busy_run};
  /* off-loop: refused */
  a = (phook_t){.h.run = phook_run, .id = 1};
  T_ERRNO(ev_pass_hook_post(&a.h), EINVAL);
  ev_setup_external(1);
  T_ERRNO(ev_pass_hook_post(NULL), EINVAL);
  phook_t norun = {.id = 9};
  T_ERRNO(ev_pass_hook_post(&norun.h), EINVAL);
  T_EQ(ev_pass_hook_cancel(&norun.h), 0);

  /* a loop with nothing else to do ends its pass in the same iteration;
   * a hook posted twice runs once */
  pass_iter = 0;
  T_EQ(ev_pass_hook_post(&a.h), 0);
  T_EQ(ev_pass_hook_post(&a.h), 0);
  pass_turns(1);
  T_EQ(a.runs, 1);
  T_EQ(a.at_iter, 1);
  T_EQ(a.idle, 1);
  pass_turns(2);
  T_EQ(a.runs, 1);

  /* while tasks keep the loop busy the pass goes on: the hook runs in the
   * first iteration that finds nothing else queued */
  a.runs = 0;
  busy_left = 5;
  busy_runs = 0;
  T_EQ(eventer_task_post(&busy), 0);
  T_EQ(ev_pass_hook_post(&a.h), 0);
  pass_iter = 0;
  pass_turns(8);
  T_EQ(busy_runs, 6);
  T_EQ(a.runs, 1);
  if (a.idle) {
    T_EQ(a.at_iter, 6); /* the task's last run (it posted nothing more) */
  } else {
    /* the iterations took longer than EV_PASS_MAX_NS (valgrind, a busy
     * machine): the pass ended by time, earlier, never later */
    T_LE(a.at_iter, 6);
  }

  /* a timer due now (a coroutine's scheduled resume) is work too: a task
   * adds one, which fires in the next iteration's timer phase */
  static eventer_task_t add_due = {NULL, add_due_run};
  a.runs = 0;
  due_fired = 0;
  T_EQ(eventer_task_post(&add_due), 0);
  T_EQ(ev_pass_hook_post(&a.h), 0);
  pass_iter = 0;
  pass_turns(1);
  T_EQ(due_fired, 0);
  if (a.runs == 0) {
    pass_turns(1);
    T_EQ(due_fired, 1);
    T_EQ(a.runs, 1);
    T_EQ(a.at_iter, 2);
  } else {
    T_EQ(a.idle, 0); /* only a pass out of time ends before the timer */
    pass_turns(1);
    T_EQ(due_fired, 1);
  }

  /* a loop that never runs out of work still ends the pass: the hook runs
   * once EV_PASS_MAX_NS has gone by, while the work goes on */
  a.runs = 0;
  busy_left = 1 << 30;
  busy_runs = 0;
  /* a post made between iterations is aged from the clock at the post
   * (inside an iteration, from the iteration's clock) */
  T_EQ(eventer_task_post(&busy), 0);
  uint64_t t0 = eventer_mono_ns();
  T_EQ(ev_pass_hook_post(&a.h), 0);
  pass_iter = 0;
  uint64_t after_first = 0;
  while (a.runs == 0) {
    T_CHECKF(eventer_mono_ns() - t0 < 30000000000ull, "the hook never ran");
    pass_turns(1);
    if (!after_first) after_first = eventer_mono_ns();
  }
  T_GE(eventer_mono_ns() - t0, EV_PASS_MAX_NS); /* never early */
  /* not at the first iteration's end, unless that iteration alone took
   * the pass's time (a loaded machine or qemu can keep the thread off its
   * CPU for longer than a pass) */
  if (a.at_iter == 1)
    T_CHECKF(after_first - t0 >= EV_PASS_MAX_NS, "the pass ended after its first iteration, "
             "%llu ns in", (unsigned long long)(after_first - t0));
  T_CHECK(busy_left > 0);
  T_EQ(a.idle, 0); /* the pass ran out of time */
  busy_left = 0;
  pass_turns(2);

  /* cancelled: not run */
  a.runs = 0;
  T_EQ(ev_pass_hook_post(&a.h), 0);
  T_EQ(ev_pass_hook_cancel(&a.h), 1);
  T_EQ(ev_pass_hook_cancel(&a.h), 0);
  pass_turns(2);
  T_EQ(a.runs, 0);

  /* run in posting order; one posted by a hook waits for the next end of
   * a pass; a hook that hands the driver a step pauses the batch, which
   * goes on when the iteration resumes */
  a = (phook_t){.h.run = phook_run, .id = 1, .post = &d.h};
  b = (phook_t){.h.run = phook_run, .id = 2, .emit = 1};
  c = (phook_t){.h.run = phook_run, .id = 3};
  d = (phook_t){.h.run = phook_run, .id = 4};
  nhook_order = 0;
  T_EQ(ev_pass_hook_post(&a.h), 0);
  T_EQ(ev_pass_hook_post(&b.h), 0);
  T_EQ(ev_pass_hook_post(&c.h), 0);
  eventer_step_t st = {0};
  struct timeval zero = {0, 0};
  T_EQ(eventer_run_once(&st, &zero), EVENTER_RUN_STEP);
  T_EQ(st.kind, EVENTER_STEP_USER);
  T_EQ(nhook_order, 2);
  st.kind = EVENTER_STEP_NONE;
  T_EQ(eventer_run_once(&st, &zero), EVENTER_RUN_DONE);
  T_EQ(nhook_order, 3);
  T_EQ(d.runs, 0);
  T_EQ(eventer_run_once(&st, &zero), EVENTER_RUN_DONE);
  T_EQ(nhook_order, 4);
  int want[] = {1, 2, 3, 4};
  for (int i = 0; i < 4; i++) T_EQ(hook_order[i], want[i]);

  /* queued at teardown: dropped, not run */
  a = (phook_t){.h.run = phook_run, .id = 1};
  T_EQ(eventer_task_post(&busy), 0);
  T_EQ(ev_pass_hook_post(&a.h), 0);
  ev_teardown();
  T_EQ(a.runs, 0);
  T_PTR_EQ(a.h.loop, NULL);
}

T_MAIN({"same_order_as_c_loop", test_same_order_as_c_loop},
       {"misuse", test_misuse},
       {"foreign_rv_zero_without_remove_is_fatal",
        test_foreign_rv_zero_without_remove_is_fatal},
       {"foreign_fd_rv_applied", test_foreign_fd_rv_applied},
       {"tasks", test_tasks},
       {"timer_nodes_emit", test_timer_nodes_emit},
       {"pass_hooks", test_pass_hooks})
