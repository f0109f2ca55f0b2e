/*
 * test_eventer_compat.c - the libmtev eventer API: constants and
 * signatures as libmtev declares them (several checks are compile-time:
 * this file did not compile against the earlier header), and the calls
 * and behaviours that were missing or different: free/deref results,
 * eventer_loop_return, thread names, eventer_impl_propset keys, the
 * running event and its time, carry contexts, callback describers,
 * foreach over fd and timed events, the watchdog, max_sleeptime, the
 * back queue and eventer_is_aco(NULL).  Also run under ThreadSanitizer.
 */
#include "evtest.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/resource.h>

#include "eventer_aco_opset.h"
#include "eventer_jobq.h"

#define LOADA(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define INC(p) __atomic_add_fetch((p), 1, __ATOMIC_ACQ_REL)

/* ---- compile-time: libmtev's constants and signatures ------------------------------ */

_Static_assert(EVENTER_EVIL_BRUTAL == 0x100, "libmtev value");
_Static_assert(EVENTER_CANCEL_DEFERRED == 0x200, "libmtev value");
_Static_assert(EVENTER_CANCEL_ASYNCH == 0x400, "libmtev value");
_Static_assert(EVENTER_CANCEL == 0x600, "libmtev value");
_Static_assert(EVENTER_DEFAULT_ASYNCH_ABORT == EVENTER_EVIL_BRUTAL, "libmtev");
_Static_assert(EVENTER_RESERVED == 0xfff00000u, "libmtev value");
_Static_assert(EVENTER_CROSS_THREAD_TRIGGER == 0x80000000u, "libmtev value");
_Static_assert(EVENTER_ASYNCH_WORK_D == 0x10 && EVENTER_ASYNCH_CLEANUP_D == 0x20 &&
                   EVENTER_ASYNCH_D == 0x30 && EVENTER_ASYNCH_COMPLETE_D == 0x30,
               "libmtev's _D values");
_Static_assert(EVENTER_ASYNCH_WORK == 0x10 && EVENTER_ASYNCH_CLEANUP == 0x20 &&
                   EVENTER_ASYNCH_COMPLETE == 0x30 && EVENTER_ASYNCH == 0x30,
               "the asynch phases");

/* NE_* are macros: usable in #if, case labels and static initialisers */
#if !defined(NE_SOCK_CLOEXEC) || !defined(NE_O_CLOEXEC) || NE_O_CLOEXEC == 0
#error "NE_SOCK_CLOEXEC / NE_O_CLOEXEC must be non-zero macros on Linux"
#endif
static const int static_flags = NE_O_CLOEXEC | O_NONBLOCK;

static int is_sock_cloexec(int flag) {
  switch (flag) {
  case NE_SOCK_CLOEXEC: return 1;
  default: return 0;
  }
}
static int is_o_cloexec(int flag) {
  switch (flag) {
  case NE_O_CLOEXEC: return 1;
  default: return 0;
  }
}

/* eventer_asynch_op_t is libmtev's enum */
static enum eventer_asynch_op op_of(int mask) { return (eventer_asynch_op_t)mask; }

/* Function pointers only compile with libmtev's exact return types. */
static void (*const p_add)(eventer_t) = eventer_add;
static void (*const p_update)(eventer_t, int) = eventer_update;
static void (*const p_trigger)(eventer_t, int) = eventer_trigger;
static void (*const p_set_owner)(eventer_t, pthread_t) = eventer_set_owner;
static void (*const p_update_whence)(eventer_t, struct timeval) =
    eventer_update_whence;
static void (*const p_add_timed)(eventer_t) = eventer_add_timed;
static void (*const p_add_recurrent)(eventer_t) = eventer_add_recurrent;
static void (*const p_add_asynch)(eventer_jobq_t *, eventer_t) = eventer_add_asynch;
static void (*const p_add_asynch_subqueue)(eventer_jobq_t *, eventer_t, uint64_t) =
    eventer_add_asynch_subqueue;
static void (*const p_add_asynch_dep)(eventer_jobq_t *, eventer_t) =
    eventer_add_asynch_dep;
static mtev_boolean (*const p_free)(eventer_t) = eventer_free;
static mtev_boolean (*const p_deref)(eventer_t) = eventer_deref;
static mtev_boolean (*const p_try_dep)(eventer_jobq_t *, eventer_t) =
    eventer_try_add_asynch_dep;
static mtev_boolean (*const p_try_dep_sq)(eventer_jobq_t *, eventer_t, uint64_t) =
    eventer_try_add_asynch_dep_subqueue;
static eventer_jobq_t *(*const p_backq)(eventer_t) = eventer_default_backq;
static eventer_jobq_t *(*const p_create_ms)(const char *,
                                            eventer_jobq_memory_safety_t) =
    eventer_jobq_create_ms;
static void (*const p_foreach_fd)(void (*)(eventer_t, void *), void *) =
    eventer_foreach_fdevent;
static void (*const p_foreach_timed)(void (*)(eventer_t, void *), void *) =
    eventer_foreach_timedevent;
static int (*const p_name_ext)(const char *, eventer_func_t,
                               void (*)(char *, int, eventer_t, void *),
                               void *) = eventer_name_callback_ext;
static const char *(*const p_name_e)(eventer_func_t, eventer_t) =
    eventer_name_for_callback_e;
static int (*const p_run_cb)(eventer_t, int, void *, struct timeval *) =
    eventer_run_callback;
static eventer_t (*const p_this)(void) = eventer_get_this_event;
static int (*const p_thread_check)(eventer_t) = eventer_thread_check;
static int (*const p_gtocb)(struct timeval *, void *) = eventer_gettimeofcallback;
static uint64_t (*const p_cb_ms)(void) = eventer_callback_ms;
static uint64_t (*const p_cb_us)(void) = eventer_callback_us;
static int (*const p_epoch)(struct timeval *) = eventer_get_epoch;
static void (*const p_pool_wd)(eventer_pool_t *, double) =
    eventer_pool_watchdog_timeout;
static double (*const p_wd)(void) = eventer_watchdog_timeout;
static mtev_boolean (*const p_wd_tv)(struct timeval *) =
    eventer_watchdog_timeout_timeval;
static void (*const p_loop_return)(void) = eventer_loop_return;
static int (*const p_register_ctx)(const char *, eventer_context_opset_t *) =
    eventer_register_context;
static void *(*const p_get_ctx)(eventer_t, int) = eventer_get_context;
static void *(*const p_set_ctx)(eventer_t, int, void *) = eventer_set_context;
static void (*const p_shortname)(eventer_jobq_t *, const char *) =
    eventer_jobq_set_shortname;
static void (*const p_lifo)(eventer_jobq_t *, mtev_boolean) = eventer_jobq_set_lifo;
static eventer_hrtime_t (*const p_hrtime)(void) = eventer_gethrtime;

static void test_constants_and_signatures(void) {
  T_CHECK(is_sock_cloexec(SOCK_CLOEXEC) && !is_sock_cloexec(0));
  T_CHECK(is_o_cloexec(O_CLOEXEC) && !is_o_cloexec(0));
  T_EQ(static_flags & O_CLOEXEC, O_CLOEXEC);
  T_EQ(op_of(0x10), EVENTER_ASYNCH_WORK);
  const void *ptrs[] = {
      (const void *)&p_add, (const void *)&p_update, (const void *)&p_trigger,
      (const void *)&p_set_owner, (const void *)&p_update_whence,
      (const void *)&p_add_timed, (const void *)&p_add_recurrent,
      (const void *)&p_add_asynch, (const void *)&p_add_asynch_subqueue,
      (const void *)&p_add_asynch_dep, (const void *)&p_free,
      (const void *)&p_deref, (const void *)&p_try_dep, (const void *)&p_try_dep_sq,
      (const void *)&p_backq, (const void *)&p_create_ms,
      (const void *)&p_foreach_fd, (const void *)&p_foreach_timed,
      (const void *)&p_name_ext, (const void *)&p_name_e, (const void *)&p_run_cb,
      (const void *)&p_this, (const void *)&p_thread_check, (const void *)&p_gtocb,
      (const void *)&p_cb_ms, (const void *)&p_cb_us, (const void *)&p_epoch,
      (const void *)&p_pool_wd, (const void *)&p_wd, (const void *)&p_wd_tv,
      (const void *)&p_loop_return, (const void *)&p_register_ctx,
      (const void *)&p_get_ctx, (const void *)&p_set_ctx,
      (const void *)&p_shortname, (const void *)&p_lifo, (const void *)&p_hrtime};
  for (size_t i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); i++) T_CHECK(ptrs[i]);
  T_EQ(eventer_choose("epoll"), 0);
  T_ERRNO(eventer_choose("kqueue"), EINVAL);
  eventer_init_globals();
  eventer_jobq_init_globals();
  T_STR_EQ(eventer_jobq_memory_safety_name(EVENTER_JOBQ_MS_GC), "gc");
  eventer_hrtime_t a = eventer_gethrtime(), b = eventer_gethrtime();
  T_LE(a, b);
  T_CHECK(eventer_impl_setrlimit() > 0);
  /* eventer_max_sleeptime: libmtev's 200 ms */
  T_EQ(eventer_max_sleeptime.tv_sec, 0);
  T_EQ(eventer_max_sleeptime.tv_usec, 200000);
}

/* ---- eventer_free / eventer_deref say whether the event went ---------------------- */

static int nop_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  return 0;
}

static void test_free_returns_freed(void) {
  int64_t base = eventer_allocations_current();
  eventer_t e = eventer_alloc_timer(nop_cb, NULL, NULL);
  eventer_ref(e);
  T_EQ(eventer_free(e), mtev_false); /* one reference left */
  T_EQ(eventer_allocations_current(), base + 1);
  T_EQ(eventer_deref(e), mtev_true); /* that was the last */
  T_EQ(eventer_allocations_current(), base);
  T_EQ(eventer_free(NULL), mtev_false);
}

/* ---- log capture ---------------------------------------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[16384];
static size_t log_len;

static void capture(mtev_log_stream_t ls, const char *line, size_t len, void *c) {
  (void)ls, (void)c;
  pthread_mutex_lock(&log_lock);
  if (log_len + len < sizeof(log_buf) - 1) {
    memcpy(log_buf + log_len, line, len);
    log_len += len;
    log_buf[log_len] = '\0';
  }
  pthread_mutex_unlock(&log_lock);
}

static void log_start(void) {
  pthread_mutex_lock(&log_lock);
  log_len = 0;
  log_buf[0] = '\0';
  pthread_mutex_unlock(&log_lock);
  mtev_log_set_writer(capture, NULL);
}

static int log_has(const char *s) {
  pthread_mutex_lock(&log_lock);
  int found = strstr(log_buf, s) != NULL;
  pthread_mutex_unlock(&log_lock);
  return found;
}

/* waits up to ms for s to be logged */
static int log_wait(const char *s, int ms) {
  uint64_t end = t_now_us() + (uint64_t)ms * 1000u;
  while (!log_has(s)) {
    if (t_now_us() > end) return 0;
    usleep(1000);
  }
  return 1;
}

/* ---- eventer_impl_propset: libmtev's keys ---------------------------------------------- */

static void test_propset_keys(void) {
  log_start();
  /* unknown keys: a warning and 0 (libmtev); the _ex form refuses */
  T_EQ(eventer_impl_propset("frobnicate", "1"), 0);
  T_CHECK(log_has("unknown eventer config key 'frobnicate'"));
  T_ERRNO(eventer_impl_propset_ex("frobnicate", "1"), ENOENT);
  T_EQ(eventer_propset("also_unknown", "x"), 0); /* libmtev's other name */
  /* bad values of known keys fail in both forms */
  T_ERRNO(eventer_impl_propset("loop_io", "0"), EINVAL);
  T_ERRNO(eventer_impl_propset("loop_io", "2,-1"), EINVAL);
  T_ERRNO(eventer_impl_propset("loop_io", "2,soon"), EINVAL);
  T_ERRNO(eventer_impl_propset("jobq_bad", "0"), EINVAL);
  T_ERRNO(eventer_impl_propset("jobq_bad", "1,5,2"), EINVAL);     /* min > max */
  T_ERRNO(eventer_impl_propset("jobq_bad", "1,,,bogus"), EINVAL); /* safety */
  T_ERRNO(eventer_impl_propset("jobq_bad", "1,,,,,sideways"), EINVAL);
  T_ERRNO(eventer_impl_propset("jobq_bad", "1,1,1,cs,1,fifo,7"), EINVAL);
  T_ERRNO(eventer_impl_propset("default_jobq_ordering", "random"), EINVAL);
  T_ERRNO(eventer_impl_propset("rlim_nofiles", "many"), EINVAL);
  T_ERRNO(eventer_impl_propset("show_loop_callbacks_threshold", "-3"), EINVAL);
  T_ERRNO(eventer_impl_propset(NULL, "1"), EINVAL);
  /* the keys libmtev accepts */
  T_EQ(eventer_impl_propset("concurrency", "2"), 0);
  T_EQ(eventer_impl_propset("loop_io", "3,0.25"), 0);
  T_EQ(eventer_impl_propset("jobq_tq", "3,1,5,gc,7,lifo"), 0);
  T_EQ(eventer_impl_propset("jobq_partial", "2,,,,,"), 0);
  T_EQ(eventer_impl_propset("default_jobq_ordering", "lifo"), 0);
  struct rlimit rl;
  T_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  char want[32];
  snprintf(want, sizeof(want), "%llu", (unsigned long long)rl.rlim_cur);
  T_EQ(eventer_impl_propset("rlim_nofiles", want), 0);
  T_EQ(eventer_impl_propset("default_ca_chain", "/etc/ssl/certs/ca.pem"), 0);
  /* 5 ms; under valgrind or qemu a first dispatch next to a parallel
   * test can take that long, and the instant callback below must not be
   * reported */
  T_EQ(eventer_impl_propset("show_loop_callbacks_threshold",
                            t_slow() ? "200" : "5"),
       0);
  T_EQ(eventer_impl_propset("show_jobq_callbacks_threshold", "2.5"), 0);
  T_CHECK(!log_has("'concurrency'") && !log_has("'jobq_tq'") &&
          !log_has("'default_ca_chain'") && !log_has("'rlim_nofiles'"));
  T_EQ(eventer_init_external(), 0);
  T_ERRNO(eventer_impl_propset("concurrency", "3"), EBUSY);
  T_ERRNO(eventer_impl_propset("frobnicate", "1"), EBUSY);
  eventer_pool_t *io = eventer_pool("io");
  T_CHECK(io != NULL);
  T_EQ(eventer_pool_concurrency(io), 3);
  eventer_jobq_t *tq = eventer_jobq_retrieve("tq");
  T_CHECK(tq != NULL);
  T_EQ(eventer_jobq_get_concurrency(tq), 3);
  uint32_t mn = 0, mx = 0;
  eventer_jobq_get_min_max(tq, &mn, &mx);
  T_EQ(mn, 1);
  T_EQ(mx, 5);
  T_EQ(eventer_jobq_get_memory_safety(tq), EVENTER_JOBQ_MS_GC);
  T_EQ(eventer_jobq_get_max_backlog(tq), 7);
  T_EQ(eventer_jobq_get_lifo(tq), mtev_true);
  eventer_jobq_t *partial = eventer_jobq_retrieve("partial");
  T_CHECK(partial != NULL);
  T_EQ(eventer_jobq_get_concurrency(partial), 2);
  T_EQ(eventer_jobq_get_lifo(partial), mtev_true); /* default_jobq_ordering */
  T_EQ(eventer_jobq_get_memory_safety(partial), EVENTER_JOBQ_MS_CS);
  /* the watchdog timeout of loop_io, seen from a loop of that pool */
  T_EQ(eventer_pool_loop_attach(io, 0), 0);
  T_CHECK(eventer_watchdog_timeout() > 0.2499 && eventer_watchdog_timeout() < 0.2501);
  struct timeval wd;
  T_EQ(eventer_watchdog_timeout_timeval(&wd), mtev_true);
  T_EQ(wd.tv_sec, 0);
  T_EQ(wd.tv_usec, 250000);
  /* show_loop_callbacks_threshold: a 20 ms callback is reported */
  eventer_name_callback("slow_cb_for_threshold", nop_cb);
  eventer_t e = eventer_alloc_timer(nop_cb, NULL, NULL);
  T_EQ(eventer_add_ex(e), 0);
  ev_turn();
  T_CHECK(!log_has("slow_cb_for_threshold")); /* instant: not reported */
  mtev_log_set_writer(NULL, NULL);
  ev_teardown();
  /* settings are reset by eventer_fini */
  T_EQ(eventer_init_external(), 0);
  T_CHECK(eventer_pool("io") == NULL && eventer_jobq_retrieve("tq") == NULL);
  ev_teardown();
}

static int slow_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  usleep(20000);
  return 0;
}

static int slow_job_done;
static int slow_job_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  if (mask == EVENTER_ASYNCH_WORK) usleep(20000);
  if (mask == EVENTER_ASYNCH_COMPLETE) INC(&slow_job_done);
  return 0;
}

static void test_slow_callback_threshold(void) {
  log_start();
  T_EQ(eventer_impl_propset("show_loop_callbacks_threshold", "5"), 0);
  T_EQ(eventer_impl_propset("show_jobq_callbacks_threshold", "5"), 0);
  ev_setup_external(1);
  eventer_name_callback("compat_slow_cb", slow_cb);
  eventer_name_callback("compat_slow_job", slow_job_cb);
  T_EQ(eventer_add_ex(eventer_alloc_timer(slow_cb, NULL, NULL)), 0);
  ev_turn();
  T_CHECK(log_has("callback compat_slow_cb"));
  T_CHECK(log_has("e:default/0"));
  slow_job_done = 0;
  T_EQ(eventer_add_asynch_ex(NULL, eventer_alloc_asynch(slow_job_cb, NULL)), 0);
  ev_spin_until(&slow_job_done, 1, 20000);
  T_CHECK(log_has("asynch WORK compat_slow_job"));
  T_CHECK(log_has("q:default_queue/"));
  mtev_log_set_writer(NULL, NULL);
  ev_teardown();
}

/* ---- eventer_loop_return starts loop 0 and returns --------------------------------------- */

static pthread_t loop0_tid;
static int loop0_ran;
static char loop0_name[64];

static int loop0_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  loop0_tid = pthread_self();
  snprintf(loop0_name, sizeof(loop0_name), "%s", eventer_get_thread_name());
  INC(&loop0_ran);
  return 0;
}

static void loop_return_twice(void *arg) {
  (void)arg;
  T_EQ(eventer_init(), 0);
  eventer_loop_return();
  eventer_loop_return();
}

static void test_loop_return_returns(void) {
  T_EQ(eventer_impl_propset("concurrency", "2"), 0);
  T_EQ(eventer_init(), 0);
  T_CHECK(!eventer_in_loop()); /* the caller is no loop thread */
  pthread_t owner0 = eventer_choose_owner(0);
  T_CHECK(owner0 != (pthread_t)0 && !pthread_equal(owner0, pthread_self()));
  loop0_ran = 0;
  T_EQ(eventer_add_ex(eventer_alloc_timer(loop0_cb, NULL, NULL)), 0);
  usleep(20000);
  T_EQ(LOADA(&loop0_ran), 0); /* loop 0 waits for eventer_loop*() */
  uint64_t t0 = t_now_us();
  eventer_loop_return(); /* returns at once (it used to run until shutdown) */
  T_LE(t_now_us() - t0, 2000000);
  uint64_t end = t_now_us() + 10000000u;
  while (!LOADA(&loop0_ran)) {
    T_CHECK(t_now_us() < end);
    usleep(1000);
  }
  T_CHECK(pthread_equal(loop0_tid, owner0));
  T_STR_EQ(loop0_name, "e:default/0");
  /* the main thread keeps a name, never NULL */
  const char *me = eventer_get_thread_name();
  T_CHECK(me != NULL && me[0] != '\0');
  eventer_shutdown();
  eventer_loop_wait();
  ev_teardown();
  t_expect_death(loop_return_twice, NULL, "once");
}

/* ---- the running event, its time; thread_check ------------------------------------------- */

static eventer_t seen_this;
static struct timeval seen_now, seen_cbtime;
static uint64_t seen_ms, seen_us;
static int seen_check;

static int this_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)c;
  seen_this = eventer_get_this_event();
  seen_now = *now;
  eventer_gettimeofcallback(&seen_cbtime, NULL);
  seen_ms = eventer_callback_ms();
  seen_us = eventer_callback_us();
  seen_check = eventer_thread_check(e);
  return 0;
}

static void test_this_event_and_time(void) {
  ev_setup_external(2);
  T_CHECK(eventer_get_this_event() == NULL);
  eventer_t e = eventer_alloc_timer(this_cb, NULL, NULL);
  T_EQ(eventer_thread_check(e), 0); /* owned by the loop this thread drives */
  eventer_t other = eventer_alloc_timer(this_cb, NULL, NULL);
  T_EQ(eventer_set_owner_loop(other, eventer_pool_loop(eventer_pool("default"), 1)), 0);
  T_NE(eventer_thread_check(other), 0);
  eventer_free(other);
  T_EQ(eventer_add_ex(e), 0);
  seen_check = -1;
  ev_turn();
  T_PTR_EQ(seen_this, e);
  T_EQ(seen_check, 0);
  T_EQ(seen_cbtime.tv_sec, seen_now.tv_sec);
  T_EQ(seen_cbtime.tv_usec, seen_now.tv_usec);
  T_EQ(seen_us, (uint64_t)seen_now.tv_sec * 1000000u + (uint64_t)seen_now.tv_usec);
  T_EQ(seen_ms, seen_us / 1000);
  T_CHECK(eventer_get_this_event() == NULL); /* only inside the callback */
  /* after the callback, this thread's "time of callback" is still that one */
  struct timeval tv;
  T_EQ(eventer_gettimeofcallback(&tv, NULL), 0);
  T_EQ(tv.tv_sec, seen_now.tv_sec);
  /* eventer_run_callback: the same bookkeeping outside the loop */
  eventer_t f = eventer_alloc_timer(this_cb, NULL, NULL);
  struct timeval mine = {12345, 678};
  seen_this = NULL;
  T_EQ(eventer_run_callback(f, EVENTER_TIMER, NULL, &mine), 0);
  T_PTR_EQ(seen_this, f);
  T_EQ(seen_cbtime.tv_sec, 12345);
  T_EQ(seen_us, 12345000678u);
  eventer_free(f);
  /* the epoch is when eventer_init ran */
  struct timeval ep, now;
  gettimeofday(&now, NULL);
  T_EQ(eventer_get_epoch(&ep), 0);
  T_LE(ep.tv_sec, now.tv_sec);
  T_GE(ep.tv_sec, now.tv_sec - 60);
  ev_teardown();
  T_ERRNO(eventer_get_epoch(&ep), ENXIO);
}

/* ---- carry contexts ------------------------------------------------------------------------- */

static int ctx_idx, ctx_inits, ctx_deinits, ctx_copies, ctx_preps, ctx_cleanups;
static eventer_t ctx_init_e;

static eventer_t ctx_init(eventer_t e) {
  ctx_inits++;
  ctx_init_e = e;
  return e;
}
static void ctx_deinit(eventer_t e) {
  ctx_deinits++;
  free(eventer_set_context(e, ctx_idx, NULL));
}
static void ctx_copy(eventer_t dst, const eventer_t src) {
  ctx_copies++;
  const char *s = eventer_get_context(src, ctx_idx);
  if (s) eventer_set_context(dst, ctx_idx, strdup(s));
}
static void ctx_prep(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)mask, (void)c, (void)now;
  if (eventer_get_context(e, ctx_idx)) ctx_preps++;
}
static void ctx_cleanup(eventer_t e, int mask) {
  (void)e, (void)mask;
  ctx_cleanups++;
}
static eventer_context_opset_t ctx_ops = {ctx_init, ctx_deinit, ctx_copy, ctx_prep,
                                          ctx_cleanup};

static void test_contexts(void) {
  ev_setup_external(1);
  T_ERRNO(eventer_register_context(NULL, &ctx_ops), EINVAL);
  ctx_idx = eventer_register_context("compat-test", &ctx_ops);
  T_GE(ctx_idx, 0);
  T_EQ(eventer_register_context("compat-test", &ctx_ops), ctx_idx); /* again */
  T_CHECK(eventer_get_context(NULL, ctx_idx) == NULL);
  T_CHECK(eventer_set_context(NULL, ctx_idx, NULL) == NULL);
  ctx_inits = ctx_deinits = ctx_copies = ctx_preps = ctx_cleanups = 0;
  eventer_t e = eventer_alloc_timer(nop_cb, NULL, NULL);
  T_EQ(ctx_inits, 1);
  T_PTR_EQ(ctx_init_e, e);
  T_CHECK(eventer_get_context(e, ctx_idx) == NULL);
  T_CHECK(eventer_set_context(e, ctx_idx, strdup("tag")) == NULL);
  T_STR_EQ(eventer_get_context(e, ctx_idx), "tag");
  T_CHECK(eventer_get_context(e, ctx_idx + 100) == NULL);
  T_CHECK(eventer_set_context(e, -1, NULL) == NULL);
  T_EQ(errno, EINVAL);
  eventer_t copy = eventer_alloc_copy(e);
  T_EQ(ctx_copies, 1);
  T_STR_EQ(eventer_get_context(copy, ctx_idx), "tag");
  T_CHECK(eventer_get_context(copy, ctx_idx) != eventer_get_context(e, ctx_idx));
  T_EQ(eventer_add_ex(e), 0);
  ev_turn();
  T_EQ(ctx_preps, 1);
  T_EQ(ctx_cleanups, 1);
  T_EQ(ctx_deinits, 1); /* e returned 0: freed */
  eventer_free(copy);
  T_EQ(ctx_deinits, 2);
  ev_teardown(); /* and nothing leaks (ASan, valgrind) */
}

/* ---- describers, names --------------------------------------------------------------------- */

static void describe(char *buf, int len, eventer_t e, void *closure) {
  snprintf(buf, (size_t)len, "%s fd=%d", (const char *)closure, eventer_get_fd(e));
}

static void test_callback_describer(void) {
  T_ERRNO(eventer_name_callback_ext(NULL, nop_cb, describe, NULL), EINVAL);
  T_EQ(eventer_name_callback_ext("nop", nop_cb, describe, "described"), 0);
  eventer_t e = eventer_alloc_fd(nop_cb, NULL, 7, EVENTER_READ);
  T_STR_EQ(eventer_name_for_callback_e(nop_cb, e), "described fd=7");
  T_STR_EQ(eventer_name_for_callback(nop_cb), "nop");
  T_STR_EQ(eventer_name_for_callback_e(nop_cb, NULL), "nop");
  T_CHECK(eventer_callback_for_name("nop") == nop_cb);
  /* naming it again drops the describer */
  T_EQ(eventer_name_callback("plain_nop", nop_cb), 0);
  T_STR_EQ(eventer_name_for_callback_e(nop_cb, e), "plain_nop");
  eventer_free(e);
}

/* ---- foreach over registered fd and timed events ---------------------------------------------- */

static int visited_fd[8], nvisited_fd, nvisited_timed;

static void visit_fd(eventer_t e, void *c) {
  T_PTR_EQ(c, (void *)visited_fd);
  visited_fd[nvisited_fd++] = eventer_get_fd(e);
  /* the visitor may remove and free what it visits */
  if (nvisited_fd == 1) {
    T_PTR_EQ(eventer_remove(e), e);
    eventer_free(e);
  }
}

static void visit_timed(eventer_t e, void *c) {
  (void)c;
  T_CHECK(eventer_get_mask(e) & EVENTER_TIMER);
  nvisited_timed++;
}

static void node_fire(eventer_timer_node_t *n, struct timeval *now) {
  (void)n, (void)now;
}

static void *foreach_from_thread(void *arg) {
  (void)arg;
  eventer_foreach_timedevent(visit_timed, NULL);
  return NULL;
}

static void test_foreach(void) {
  ev_setup_external(2);
  int fds[3];
  eventer_pool_t *def = eventer_pool("default");
  for (int i = 0; i < 3; i++) {
    fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    eventer_t e = eventer_alloc_fd(nop_cb, &fds[i], fds[i], EVENTER_READ);
    T_EQ(eventer_set_owner_loop(e, eventer_pool_loop(def, i % 2)), 0);
    T_EQ(eventer_add_ex(e), 0);
  }
  ev_turn(); /* loop 0 applies its add; loop 1's waits in its queue */
  nvisited_fd = 0;
  eventer_foreach_fdevent(visit_fd, visited_fd);
  T_EQ(nvisited_fd, 2); /* loop 1 has not run: its event is not registered */
  int seen0 = 0, seen2 = 0;
  for (int i = 0; i < nvisited_fd; i++) {
    if (visited_fd[i] == fds[0]) seen0 = 1;
    if (visited_fd[i] == fds[2]) seen2 = 1;
  }
  T_CHECK(seen0 && seen2);
  nvisited_fd = 0;
  eventer_foreach_fdevent(visit_fd, visited_fd);
  T_EQ(nvisited_fd, 1); /* the first visit removed its event */
  /* timers: two events on loop 0, far away; an intrusive timer node is no
   * event and is not visited */
  struct timeval far = {time(NULL) + 3600, 0};
  T_EQ(eventer_add_ex(eventer_alloc_timer(nop_cb, NULL, &far)), 0);
  T_EQ(eventer_add_ex(eventer_alloc_timer(nop_cb, NULL, &far)), 0);
  static eventer_timer_node_t node = EVENTER_TIMER_NODE_INIT(node_fire);
  struct timeval hour = {3600, 0};
  T_EQ(eventer_timer_node_add(&node, &hour), 0);
  nvisited_timed = 0;
  pthread_t th;
  T_EQ(pthread_create(&th, NULL, foreach_from_thread, NULL), 0);
  pthread_join(th, NULL);
  T_EQ(nvisited_timed, 2);
  ev_teardown(); /* drops the registered events */
  for (int i = 0; i < 3; i++) close(fds[i]);
}

/* ---- max_sleeptime bounds the sleep of a loop with recurrent events --------------------------- */

static void test_max_sleeptime(void) {
  struct timeval saved = eventer_max_sleeptime;
  eventer_max_sleeptime.tv_sec = 0;
  eventer_max_sleeptime.tv_usec = 30000;
  ev_setup_external(1);
  T_EQ(eventer_next_timeout_us(), -1); /* nothing scheduled: no bound */
  eventer_t r = eventer_alloc_recurrent(nop_cb, NULL);
  T_EQ(eventer_add_ex(r), 0);
  ev_turn();
  int64_t t = eventer_next_timeout_us();
  T_GE(t, 1);
  T_LE(t, 30000);
  ev_teardown();
  eventer_max_sleeptime = saved;
}

/* ---- the watchdog reports a stalled loop ------------------------------------------------------- */

static double stall_wd;
static int stall_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)c, (void)now;
  stall_wd = eventer_watchdog_timeout();
  /* block the loop well past its 50 ms timeout, until it is reported */
  log_wait("stall_cb_named", 20000);
  return 0;
}

static void test_watchdog_reports_stall(void) {
  log_start();
  T_EQ(eventer_impl_propset("loop_wd", "1,0.05"), 0);
  T_EQ(eventer_impl_propset("concurrency", "1"), 0);
  T_EQ(eventer_init(), 0);
  eventer_name_callback("stall_cb_named", stall_cb);
  eventer_pool_t *wd = eventer_pool("wd");
  T_CHECK(eventer_watchdog_timeout() == 0.0); /* not a loop thread */
  eventer_t e = eventer_alloc_timer(stall_cb, NULL, NULL);
  T_EQ(eventer_set_owner_ex(e, eventer_choose_owner_pool(wd, 0)), 0);
  T_EQ(eventer_add_ex(e), 0);
  T_CHECK(log_wait("watchdog: loop e:wd/0", 20000));
  T_CHECK(log_has("running stall_cb_named"));
  eventer_pool_watchdog_timeout(wd, 0); /* off again */
  eventer_pool_watchdog_timeout(NULL, 1); /* ignored */
  eventer_shutdown();
  eventer_loop_return();
  eventer_loop_wait();
  T_CHECK(stall_wd > 0.0499 && stall_wd < 0.0501);
  mtev_log_set_writer(NULL, NULL);
  ev_teardown();
}

/* ---- the back queue runs "jobs" on their loop ---------------------------------------------------- */

static int backq_mask, backq_runs;
static pthread_t backq_thread;
static int backq_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)c, (void)now;
  backq_mask = mask;
  backq_thread = pthread_self();
  backq_runs++;
  return 0;
}

static void test_back_queue(void) {
  ev_setup_external(1);
  eventer_jobq_t *bq = eventer_default_backq(NULL);
  T_CHECK(bq != NULL);
  T_PTR_EQ(eventer_default_backq(NULL), bq);
  T_CHECK(eventer_jobq_create("default_back_queue") == NULL); /* a back queue */
  T_EQ(errno, EEXIST);
  T_PTR_EQ(eventer_jobq_create_backq("default_back_queue"), bq);
  backq_runs = 0;
  eventer_t e = eventer_alloc_timer(backq_cb, NULL, NULL);
  eventer_add_asynch(bq, e);
  ev_turn();
  T_EQ(backq_runs, 1);
  T_EQ(backq_mask, EVENTER_TIMER);
  T_CHECK(pthread_equal(backq_thread, pthread_self()));
  ev_teardown();
}

/* ---- eventer_is_aco(NULL): is the caller a coroutine ------------------------------------------- */

static int aco_answer = -1, aco_done;
static void aco_body(void) {
  aco_answer = eventer_is_aco(NULL);
  aco_done = 1;
  aco_exit();
}

static void test_is_aco_null(void) {
  T_EQ(eventer_is_aco(NULL), mtev_false);
  ev_setup_external(1);
  T_EQ(eventer_is_aco(NULL), mtev_false);
  aco_done = 0;
  eventer_aco_start(aco_body, NULL);
  ev_spin_until(&aco_done, 1, 5000);
  T_EQ(aco_answer, mtev_true);
  T_EQ(eventer_is_aco(NULL), mtev_false);
  ev_teardown();
}

/* ---- EVENTER_CHOOSE_THREAD_FOR_EVENT_FD ------------------------------------------------------- */

static void test_choose_thread_macro(void) {
  T_EQ(eventer_impl_propset("concurrency", "3"), 0);
  T_EQ(eventer_init(), 0);
  eventer_t e = eventer_alloc_fd(nop_cb, NULL, 5, EVENTER_READ);
  pthread_t t = EVENTER_CHOOSE_THREAD_FOR_EVENT_FD(e); /* loop 1 + 6 % 2 */
  T_CHECK(t != (pthread_t)0 && pthread_equal(t, eventer_choose_owner(6)));
  T_CHECK(!pthread_equal(t, eventer_choose_owner(0)));
  eventer_free(e);
  eventer_shutdown();
  eventer_loop_wait();
  ev_teardown();
}

T_MAIN({"constants_and_signatures", test_constants_and_signatures},
       {"free_returns_freed", test_free_returns_freed},
       {"propset_keys", test_propset_keys},
       {"slow_callback_threshold", test_slow_callback_threshold},
       {"loop_return_returns", test_loop_return_returns},
       {"this_event_and_time", test_this_event_and_time},
       {"contexts", test_contexts},
       {"callback_describer", test_callback_describer},
       {"foreach", test_foreach},
       {"max_sleeptime", test_max_sleeptime},
       {"watchdog_reports_stall", test_watchdog_reports_stall},
       {"back_queue", test_back_queue},
       {"is_aco_null", test_is_aco_null},
       {"choose_thread_macro", test_choose_thread_macro})
