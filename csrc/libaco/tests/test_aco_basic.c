/* smoke test; the full suite is test_aco_*.c */
#include "aco.h"
#include "acotest.h"

static int counter;
static void co_fn(void) {
  int *p = aco_get_arg();
  for (int i = 0; i < 3; i++) {
    (*p)++;
    aco_yield();
  }
  aco_exit();
}

static void test_smoke(void) {
  aco_thread_init(NULL);
  aco_t *main_co = aco_create(NULL, NULL, 0, NULL, NULL);
  aco_share_stack_t *ss = aco_share_stack_new(0);
  aco_t *co = aco_create(main_co, ss, 0, co_fn, &counter);
  for (int i = 0; i < 3; i++) {
    aco_resume(co);
    T_EQ(counter, i + 1);
    T_EQ(co->is_end, 0);
  }
  aco_resume(co);
  T_EQ(co->is_end, 1);
  aco_destroy(co);
  aco_share_stack_destroy(ss);
  aco_destroy(main_co);
}

T_MAIN({"smoke", test_smoke})
