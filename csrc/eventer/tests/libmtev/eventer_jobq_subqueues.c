/*
 * eventer_jobq_subqueues.c - libmtev's job queue workload, written against
 * <eventer/eventer.h> and <eventer/eventer_jobq.h> as a libmtev program
 * would be: a queue made with eventer_jobq_create_ms, four threads, six
 * subqueues - three of slow jobs, one of slow jobs with a deadline, one of
 * 1,000 instant jobs and one of 1,000 instant jobs with a 5 s deadline -
 * all queued before eventer_loop_return().
 *
 * What libmtev documents, checked at the end: every job gets CLEANUP and
 * COMPLETE; every job without a deadline runs WORK; the slow subqueues do
 * not starve the instant ones (fair share), so every instant job with a
 * 5 s deadline runs WORK.  The slow jobs take 200 ms here (libmtev's test
 * uses 1 s) so the program runs in seconds.
 */
#include <eventer/eventer.h>
#include <eventer/eventer_jobq.h>
#include <mtev_log.h>

#include <stdbool.h>
#include <stdio.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct {
  const char *name;
  uint32_t jobs;
  uint32_t cost_ms;
  uint32_t deadline_ms;
  bool timeouts_expected;
  uint32_t work_calls, cleanup_calls, completion_calls;
  eventer_hrtime_t last_completion;
} workload_t;

static workload_t workloads[] = {
  { .name = "slow", .jobs = 20, .cost_ms = 200 },
  { .name = "slow2", .jobs = 20, .cost_ms = 200 },
  { .name = "slow3", .jobs = 20, .cost_ms = 200 },
  { .name = "slow deadline", .jobs = 20, .cost_ms = 200, .deadline_ms = 200,
    .timeouts_expected = true },
  { .name = "instant", .jobs = 1000 },
  { .name = "instant deadline", .jobs = 1000, .deadline_ms = 5000 },
};
#define NWORKLOADS (sizeof(workloads)/sizeof(*workloads))
static uint32_t todo, done;

static int
toil(eventer_t e, int mask, void *closure, struct timeval *now) {
  workload_t *w = closure;
  (void)e; (void)now;
  switch(mask) {
    case EVENTER_ASYNCH_WORK:
      __atomic_add_fetch(&w->work_calls, 1, __ATOMIC_SEQ_CST);
      if(w->cost_ms) usleep(w->cost_ms * 1000);
      break;
    case EVENTER_ASYNCH_CLEANUP:
      __atomic_add_fetch(&w->cleanup_calls, 1, __ATOMIC_SEQ_CST);
      break;
    case EVENTER_ASYNCH_COMPLETE:
      __atomic_add_fetch(&w->completion_calls, 1, __ATOMIC_SEQ_CST);
      w->last_completion = eventer_gethrtime();
      __atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
      break;
  }
  return 0;
}

int main(void) {
  eventer_hrtime_t start;
  eventer_jobq_t *test_jobq;
  uint32_t i, j;

  if(eventer_init() == -1) {
    mtevL(mtev_stderr, "Cannot initialize eventer\n");
    return 2;
  }
  test_jobq = eventer_jobq_create_ms("test_jobq", EVENTER_JOBQ_MS_GC);
  mtevAssert(test_jobq != NULL);
  eventer_jobq_set_concurrency(test_jobq, 4);
  mtevAssert(eventer_jobq_get_memory_safety(test_jobq) == EVENTER_JOBQ_MS_GC);

  start = eventer_gethrtime();
  for(i=0; i<NWORKLOADS; i++) {
    for(j=0; j<workloads[i].jobs; j++) {
      eventer_t e;
      if(workloads[i].deadline_ms) {
        struct timeval deadline;
        gettimeofday(&deadline, NULL);
        deadline.tv_usec += workloads[i].deadline_ms * 1000;
        deadline.tv_sec += deadline.tv_usec / 1000000;
        deadline.tv_usec %= 1000000;
        e = eventer_alloc_asynch_timeout(toil, &workloads[i], &deadline);
      } else {
        e = eventer_alloc_asynch(toil, &workloads[i]);
      }
      todo++;
      eventer_add_asynch_subqueue(test_jobq, e, i);
    }
  }
  eventer_loop_return();

  while(__atomic_load_n(&done, __ATOMIC_SEQ_CST) < todo) usleep(10000);

  mtevL(mtev_notice, "%u/%u jobs done\n", done, todo);
  for(i=0; i<NWORKLOADS; i++) {
    workload_t *w = &workloads[i];
    printf("workload %-16s work %4u cleanup %4u complete %4u, last at %.3f s\n",
           w->name, w->work_calls, w->cleanup_calls, w->completion_calls,
           (double)(w->last_completion - start) / 1e9);
    mtevAssert(w->timeouts_expected || w->jobs == w->work_calls);
    mtevAssert(w->jobs == w->cleanup_calls);
    mtevAssert(w->jobs == w->completion_calls);
  }
  /* the instant jobs were not stuck behind the slow ones */
  mtevAssert(workloads[4].last_completion < workloads[0].last_completion);
  mtevAssert(workloads[5].last_completion < workloads[0].last_completion);
  eventer_shutdown();
  eventer_loop_wait();
  eventer_fini();
  printf("eventer_jobq_subqueues: ok\n");
  return 0;
}
