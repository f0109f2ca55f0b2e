/*
 * test_aco_threads.c - coroutines on several threads at once: each thread
 * has its own main coroutine, share stacks and running-coroutine state;
 * names and CLS keys are shared and thread-safe.  Also run under TSan.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "aco.h"
#include "acotest.h"

#define NTHREADS 4

typedef struct {
  int tid;
  long *counter;
} work_t;

static void worker_fn(void) {
  work_t *w = aco_get_arg();
  volatile long local = 0;
  for (;;) {
    local++;
    *w->counter = local;
    aco_assert(aco_current() == aco_get_co());
    aco_yield();
  }
}

typedef struct {
  int tid;
  int ok;
  long rounds;
} thread_arg_t;

static void *thread_main(void *p) {
  thread_arg_t *ta = p;
  aco_thread_init(NULL);
  aco_t *main_co = aco_create(NULL, NULL, 0, NULL, NULL);
  enum { NCO = 16 };
  aco_share_stack_t *ss[2] = {aco_share_stack_new(64 * 1024),
                              aco_share_stack_new(64 * 1024)};
  aco_t *cos[NCO];
  long counters[NCO] = {0};
  work_t w[NCO];
  char names[NCO][32];
  for (int i = 0; i < NCO; i++) {
    w[i].tid = ta->tid;
    w[i].counter = &counters[i];
    cos[i] = aco_create(main_co, ss[i % 2], 0, worker_fn, &w[i]);
    snprintf(names[i], sizeof(names[i]), "t%d-co%d", ta->tid, i);
    aco_set_name(cos[i], names[i]);
  }
  ta->ok = 1;
  for (long r = 1; r <= ta->rounds; r++) {
    for (int i = 0; i < NCO; i++) {
      aco_resume(cos[i]);
      if (aco_get_co() != main_co) ta->ok = 0;
      if (counters[i] != r) ta->ok = 0;
    }
  }
  for (int i = 0; i < NCO; i++) {
    if (strcmp(aco_get_name(cos[i]), names[i]) != 0) ta->ok = 0;
    aco_destroy(cos[i]);
  }
  aco_share_stack_destroy(ss[0]);
  aco_share_stack_destroy(ss[1]);
  aco_destroy(main_co);
  return NULL;
}

static void test_threads_independent(void) {
  pthread_t th[NTHREADS];
  thread_arg_t ta[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) {
    ta[i] = (thread_arg_t){.tid = i, .ok = 0, .rounds = t_scale(2000, 20)};
    T_EQ(pthread_create(&th[i], NULL, thread_main, &ta[i]), 0);
  }
  for (int i = 0; i < NTHREADS; i++) {
    T_EQ(pthread_join(th[i], NULL), 0);
    T_CHECKF(ta[i].ok, "thread %d saw foreign coroutine state", i);
  }
}

static atomic_int keys_ok;
static void *key_thread(void *p) {
  (void)p;
  int k = aco_cls_key_create();
  if (k >= 0 && k < ACO_CLS_SLOTS) atomic_fetch_add(&keys_ok, 1);
  return NULL;
}

static void test_cls_keys_concurrent(void) {
  pthread_t th[ACO_CLS_SLOTS + 3];
  for (int i = 0; i < ACO_CLS_SLOTS + 3; i++)
    pthread_create(&th[i], NULL, key_thread, NULL);
  for (int i = 0; i < ACO_CLS_SLOTS + 3; i++) pthread_join(th[i], NULL);
  /* exactly ACO_CLS_SLOTS distinct keys were handed out */
  T_EQ(atomic_load(&keys_ok), ACO_CLS_SLOTS);
}

T_MAIN({"threads_independent", test_threads_independent},
       {"cls_keys_concurrent", test_cls_keys_concurrent})
