/*
 * eventer_jobq.h - job queues: named pools of threads for blocking work
 * (libmtev's eventer_jobq.h).  Asynch events are queued on them with
 * eventer_add_asynch* (eventer.h).  All functions are THREAD-SAFE.
 *
 * Sizing: `concurrency` is the most jobs (and threads) running at once;
 * threads start on demand up to it and exit after 10 s idle, but never
 * below `floor`.  set_min_max bounds concurrency (max 0: unbounded).
 *
 * Subqueues: jobs carry a subqueue id (0 by default).  A thread looking
 * for work serves the subqueues round-robin and skips one that already
 * runs its fair share of the threads - concurrency / number of subqueues
 * with work queued or running, at least 1 - while another subqueue under
 * its share has work (libmtev's rule).  When every subqueue with work is
 * at its share, the next one in turn is served anyway, so no thread idles
 * while jobs wait.  Within a subqueue jobs run FIFO, or LIFO after
 * eventer_jobq_set_lifo().
 *
 * The backlog (queued, not yet started jobs) is unbounded for
 * eventer_add_asynch; eventer_try_add_asynch refuses once it reaches
 * max_backlog (0: no limit).
 */
#ifndef EVENTER_JOBQ_H
#define EVENTER_JOBQ_H

#include <stdint.h>

#include "eventer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _eventer_jobq_t eventer_jobq_t;
/* A job in flight (opaque): see eventer_jobq_inflight(). */
typedef struct _eventer_job_t eventer_job_t;

/* libmtev's memory-safety modes pick how much of its epoch-based memory
 * reclamation (mtev_memory) a queue's threads take part in.  There is no
 * such reclamation here: the mode is recorded (and reported) and changes
 * nothing else. */
typedef enum {
  EVENTER_JOBQ_MS_CS,  /* manages init, critical sections, and gc */
  EVENTER_JOBQ_MS_GC,  /* manages init, and gc */
  EVENTER_JOBQ_MS_NONE /* manages nothing at all */
} eventer_jobq_memory_safety_t;

static inline const char *
eventer_jobq_memory_safety_name(eventer_jobq_memory_safety_t ms) {
  switch (ms) {
  case EVENTER_JOBQ_MS_NONE: return "none";
  case EVENTER_JOBQ_MS_CS: return "cs";
  case EVENTER_JOBQ_MS_GC: return "gc";
  }
  return "unknown";
}

/* A new queue (concurrency 1, memory safety CS), or the existing one with
 * that name.  NULL with errno (EINVAL, ENOMEM). */
eventer_jobq_t *eventer_jobq_create(const char *queue_name);
/* Same with a memory-safety mode.  An existing queue with another mode is
 * returned only if it runs no thread yet (it then takes the new mode);
 * otherwise NULL with errno EEXIST (libmtev returns NULL too). */
eventer_jobq_t *eventer_jobq_create_ms(const char *queue_name,
                                       eventer_jobq_memory_safety_t safety);
/* A back queue: jobs queued on it run on their event's owner loop (see
 * eventer_default_backq in eventer.h).  NULL with errno EEXIST if a
 * thread queue has that name. */
eventer_jobq_t *eventer_jobq_create_backq(const char *queue_name);
eventer_jobq_t *eventer_jobq_retrieve(const char *name); /* NULL if none */
eventer_jobq_t *eventer_default_jobq(void);             /* "default_queue" */
/* Stops the queue's threads (each finishes the job it runs) and frees it.
 * Queued jobs get CLEANUP and then COMPLETE on their loop, but no WORK (as
 * when a job's deadline passes), so a coroutine waiting for one resumes.
 * The default queue is destroyed by eventer_fini(), where queued jobs get
 * CLEANUP only (there is no loop left to complete on). */
void eventer_jobq_destroy(eventer_jobq_t *jobq);
/* Refuses new jobs (ESHUTDOWN), waits until every queued and running job
 * has run WORK and CLEANUP (their COMPLETEs are on the way to their
 * loops), then destroys the queue.  Not from one of the queue's own job
 * threads (it would wait for itself: logged, and nothing is done). */
void eventer_jobq_drain_and_shutdown(eventer_jobq_t *jobq);

/* A shorter name for thread names and terse displays (clipped to 13
 * characters, as libmtev does).  NULL restores the queue name. */
void eventer_jobq_set_shortname(eventer_jobq_t *jobq, const char *name);
/* LIFO (mtev_true) or FIFO (mtev_false, the default unless
 * "default_jobq_ordering" says lifo) order within each subqueue. */
void eventer_jobq_set_lifo(eventer_jobq_t *jobq, mtev_boolean nv);
mtev_boolean eventer_jobq_get_lifo(eventer_jobq_t *jobq);

void eventer_jobq_set_concurrency(eventer_jobq_t *jobq, uint32_t new_concurrency);
uint32_t eventer_jobq_get_concurrency(eventer_jobq_t *jobq);
/* min <= max (max 0: no upper bound); ignored otherwise. */
void eventer_jobq_set_min_max(eventer_jobq_t *jobq, uint32_t min, uint32_t max);
void eventer_jobq_get_min_max(eventer_jobq_t *jobq, uint32_t *min_,
                              uint32_t *max_);
/* The fewest threads kept alive while idle. */
void eventer_jobq_set_floor(eventer_jobq_t *jobq, uint32_t new_floor);
uint32_t eventer_jobq_get_floor(eventer_jobq_t *jobq);
void eventer_jobq_set_max_backlog(eventer_jobq_t *jobq, uint32_t max);
uint32_t eventer_jobq_get_max_backlog(eventer_jobq_t *jobq);
uint32_t eventer_jobq_get_backlog(eventer_jobq_t *jobq); /* queued, not started */
eventer_jobq_memory_safety_t eventer_jobq_get_memory_safety(eventer_jobq_t *jobq);
const char *eventer_jobq_get_queue_name(eventer_jobq_t *jobq);

/* Wakes the queue's threads to look for work (nothing is lost without it:
 * queueing a job wakes a thread itself). */
void eventer_jobq_post(eventer_jobq_t *jobq);
/* The job the calling job thread is running (during WORK or CLEANUP), or
 * NULL on any other thread. */
eventer_job_t *eventer_jobq_inflight(void);
/* Calls func(queue, closure) for every queue, under the registry's lock
 * (func must not create or destroy queues); stops early when func returns
 * mtev_false. */
void eventer_jobq_process_each(mtev_boolean (*func)(eventer_jobq_t *, void *),
                               void *closure);
/* libmtev initialises its queue registry here; ours is static. */
void eventer_jobq_init_globals(void);

#ifdef __cplusplus
}
#endif

#endif /* EVENTER_JOBQ_H */
