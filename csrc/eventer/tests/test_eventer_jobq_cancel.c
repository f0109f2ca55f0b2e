/*
 * test_eventer_jobq_cancel.c - EVENTER_CANCEL_DEFERRED and
 * EVENTER_CANCEL_ASYNCH: a WORK still running at its job's deadline is
 * cancelled (pthread_cancel), CLEANUP runs on the job thread, COMPLETE on
 * the loop, and the queue replaces the thread.
 *
 * Not run under ThreadSanitizer: it does not follow pthread_cancel's
 * unwinding (the cancelled thread's cleanup looks unsynchronised to it,
 * and its join goes unseen).  EVENTER_EVIL_BRUTAL and deadlines without
 * cancel bits are tested in test_eventer_jobq.c, which is.
 */
#include "jobq_cancel_common.h"

static void test_cancel_deferred(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("cancel_deferred");
  static cx_t x;
  double took = run_deadline_job(q, cx_sleepy, &x, EVENTER_CANCEL_DEFERRED);
  T_EQ(x.started, 1);
  T_EQ(x.finished, 0); /* cancelled at a cancellation point (usleep) */
  T_EQ(x.cleanup, 1);
  T_CHECK(x.cleanup_on_job_thread);
  T_LE(took, 8.0); /* not the 10 s WORK would have taken */
  check_queue_still_works(q);
  ev_teardown();
}

static void test_cancel_asynch(void) {
  ev_setup_external(1);
  eventer_jobq_t *q = eventer_jobq_create("cancel_asynch");
  static cx_t x;
  double took = run_deadline_job(q, cx_spin, &x, EVENTER_CANCEL_ASYNCH);
  T_EQ(x.started, 1);
  T_EQ(x.finished, 0); /* stopped mid-loop */
  T_EQ(x.cleanup, 1);
  T_CHECK(x.cleanup_on_job_thread);
  T_LE(took, 8.0);
  check_queue_still_works(q);
  ev_teardown();
}


T_MAIN({"cancel_deferred", test_cancel_deferred},
       {"cancel_asynch", test_cancel_asynch})
