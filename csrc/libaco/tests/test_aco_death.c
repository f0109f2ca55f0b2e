/*
 * test_aco_death.c - misuse that must abort, each in a child process with
 * its message checked: a coroutine function that returns, overflow into
 * the guard page, resume of an ended coroutine, create without
 * aco_thread_init, resume from inside a coroutine, yield from main.
 */
#include <pthread.h>

#include "aco.h"
#include "acotest.h"

static aco_t *main_co;
static aco_share_stack_t *ss;

static void setup(void) {
  aco_thread_init(NULL);
  main_co = aco_create(NULL, NULL, 0, NULL, NULL);
  ss = aco_share_stack_new(64 * 1024);
}

/* ---- a coroutine function returns ---------------------------------------- */

static void last_word(void) {
  fprintf(stderr, "last word from %p\n", (void *)aco_get_co());
}

static void returning_fn(void) { /* returns instead of aco_exit() */ }

static void child_return(void *arg) {
  (void)arg;
  aco_thread_init(last_word);
  aco_t *m = aco_create(NULL, NULL, 0, NULL, NULL);
  aco_share_stack_t *s = aco_share_stack_new(0);
  aco_t *co = aco_create(m, s, 0, returning_fn, NULL);
  aco_set_name(co, "returner");
  aco_resume(co);
}

static void test_return_reaches_protector(void) {
  const char *out = t_expect_death(child_return, NULL, "returned from its function");
  T_CHECK(strstr(out, "last word from") != NULL);
  T_CHECK(strstr(out, "\"returner\"") != NULL);
  T_CHECK(strstr(out, "aco_exit()") != NULL);
}

/* ---- overflow into the guard page ---------------------------------------- */

__attribute__((noinline)) static int recurse(int n) {
  volatile char pad[512];
  pad[0] = (char)n;
  pad[511] = (char)n;
  if (n == 0) return pad[0];
  return recurse(n - 1) + pad[511];
}

static void deep_fn(void) {
  recurse(1 << 20); /* ~512 MiB of frames: far beyond any share stack */
  aco_exit();
}

static void child_overflow(void *arg) {
  (void)arg;
  setup();
  aco_t *co = aco_create(main_co, ss, 0, deep_fn, NULL);
  aco_set_name(co, "deep");
  aco_resume(co);
}

static void test_overflow_guard_page(void) {
  const char *out = t_expect_death(child_overflow, NULL,
                                   "aco: stack overflow in coroutine \"deep\"");
  T_CHECK(strstr(out, "guard page") != NULL);
}

/* a single frame larger than the guard page jumps past it */
static void huge_frame_fn(void) {
  volatile char big[256 * 1024]; /* > the 64 KiB share stack */
  big[0] = 1;
  big[sizeof(big) - 1] = 1;
  aco_exit();
}

static void child_huge_frame(void *arg) {
  (void)arg;
  setup();
  aco_t *co = aco_create(main_co, ss, 0, huge_frame_fn, NULL);
  aco_resume(co);
}

static void test_overflow_huge_frame(void) {
  t_expect_death(child_huge_frame, NULL, "aco: stack overflow in coroutine");
}

/* ---- resume of an ended coroutine ---------------------------------------- */

static void exiting_fn(void) { aco_exit(); }

static void child_resume_ended(void *arg) {
  (void)arg;
  setup();
  aco_t *co = aco_create(main_co, ss, 0, exiting_fn, NULL);
  aco_resume(co);
  aco_resume(co);
}

static void test_resume_ended(void) {
  t_expect_death(child_resume_ended, NULL, "has ended");
}

/* aco_reset is for ended coroutines only */
static void yielding_fn(void) {
  aco_yield();
  aco_exit();
}
static void child_reset_suspended(void *arg) {
  (void)arg;
  setup();
  aco_t *co = aco_create(main_co, ss, 0, yielding_fn, NULL);
  aco_resume(co);
  aco_reset(co, exiting_fn, NULL);
}
static void child_reset_main(void *arg) {
  (void)arg;
  setup();
  aco_reset(main_co, exiting_fn, NULL);
}

static void test_reset_not_ended(void) {
  t_expect_death(child_reset_suspended, NULL, "has not ended");
  t_expect_death(child_reset_main, NULL, "is a main coroutine");
}

/* ---- aco_create without aco_thread_init -------------------------------------- */

static void *no_init_thread(void *arg) {
  aco_share_stack_t *s = arg;
  /* this thread never called aco_thread_init */
  aco_t *m = aco_create(NULL, NULL, 0, NULL, NULL);
  aco_create(m, s, 0, exiting_fn, NULL);
  return NULL;
}

static void child_no_init(void *arg) {
  (void)arg;
  setup();
  pthread_t t;
  pthread_create(&t, NULL, no_init_thread, ss);
  pthread_join(t, NULL);
}

static void test_create_without_thread_init(void) {
  t_expect_death(child_no_init, NULL, "aco_thread_init() was never called");
}

/* ---- resume from inside a coroutine -------------------------------------------- */

static aco_t *victim;
static void nested_fn(void) {
  aco_resume(victim);
  aco_exit();
}

static void child_nested_resume(void *arg) {
  (void)arg;
  setup();
  victim = aco_create(main_co, ss, 0, exiting_fn, NULL);
  aco_t *co = aco_create(main_co, ss, 0, nested_fn, NULL);
  aco_resume(co);
}

static void test_nested_resume(void) {
  t_expect_death(child_nested_resume, NULL,
                 "may only be called from the main coroutine");
}

/* ---- yield / exit / resume on the wrong coroutine ------------------------------ */

static void child_yield_main(void *arg) {
  (void)arg;
  setup();
  aco_yield1(main_co);
}

static void child_resume_main(void *arg) {
  (void)arg;
  setup();
  aco_resume(main_co);
}

static void child_destroy_running_fn(void) { aco_destroy(aco_get_co()); }
static void child_destroy_running(void *arg) {
  (void)arg;
  setup();
  aco_resume(aco_create(main_co, ss, 0, child_destroy_running_fn, NULL));
}

/* a coroutine that yields another one (here: one that never ran) */
static aco_t *other_co;
static void yield_other_fn(void) { aco_yield1(other_co); }
static void child_yield_other(void *arg) {
  (void)arg;
  setup();
  other_co = aco_create(main_co, ss, 0, exiting_fn, NULL);
  aco_resume(aco_create(main_co, ss, 0, yield_other_fn, NULL));
}

static void child_yield_main_after_resume(void *arg) {
  (void)arg;
  setup();
  aco_resume(aco_create(main_co, ss, 0, exiting_fn, NULL));
  aco_yield1(main_co);
}

static void child_yield_null(void *arg) {
  (void)arg;
  setup();
  aco_t *none = NULL;
  aco_yield1(none);
}

static void exit_other_fn(void) { aco_exit1(other_co); }
static void child_exit_other(void *arg) {
  (void)arg;
  setup();
  other_co = aco_create(main_co, ss, 0, exiting_fn, NULL);
  aco_resume(aco_create(main_co, ss, 0, exit_other_fn, NULL));
}

static void test_wrong_coroutine(void) {
  const char *msg = t_expect_death(child_yield_main, NULL,
                                   "is not the running non-main coroutine");
  /* the message names the yield's source line and what was running */
  T_CHECK(strstr(msg, "test_aco_death.c:") != NULL);
  T_CHECK(strstr(msg, "no coroutine was ever resumed") != NULL);
  msg = t_expect_death(child_yield_main_after_resume, NULL,
                       "is not the running non-main coroutine");
  T_CHECK(strstr(msg, "the main coroutine") != NULL);
  t_expect_death(child_yield_other, NULL,
                 "is not the running non-main coroutine");
  t_expect_death(child_yield_null, NULL,
                 "is not the running non-main coroutine");
  t_expect_death(child_exit_other, NULL,
                 "is not the running non-main coroutine");
  t_expect_death(child_resume_main, NULL, "is a main coroutine");
  t_expect_death(child_destroy_running, NULL, "destroyed while it runs");
}

T_MAIN({"return_reaches_protector", test_return_reaches_protector},
       {"overflow_guard_page", test_overflow_guard_page},
       {"overflow_huge_frame", test_overflow_huge_frame},
       {"resume_ended", test_resume_ended},
       {"reset_not_ended", test_reset_not_ended},
       {"create_without_thread_init", test_create_without_thread_init},
       {"nested_resume", test_nested_resume},
       {"wrong_coroutine", test_wrong_coroutine})
