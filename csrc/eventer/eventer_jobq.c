/*
 * eventer_jobq.c - job queues: thread pools for blocking work (asynch
 * events).  WORK and CLEANUP run on a job thread; the COMPLETE callback is
 * posted back to the event's owner loop through its cross-thread queue
 * (the event's own xtask node, so completion needs no allocation).
 *
 * Each queue is one mutex, one condition variable, and a ring of
 * subqueues that have work: a dequeue takes the head job of the subqueue
 * at the ring's cursor and moves the cursor on, so subqueues share the
 * threads round-robin however many jobs each has queued.
 */
#include "eventer_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EV_JOBQ_IDLE_SEC 10 /* idle threads above the floor exit after this */
#define EV_SUBQ_BUCKETS 64

typedef struct ev_subq {
  uint64_t id;
  eventer_t head, tail;          /* FIFO of jobs, linked by job_next */
  struct ev_subq *ring_next, *ring_prev;
  struct ev_subq *hnext;         /* hash chain */
} ev_subq_t;

typedef struct ev_worker {
  pthread_t tid;
  eventer_jobq_t *q;
  int exited;                    /* under q->lock */
  struct ev_worker *next;
} ev_worker_t;

struct _eventer_jobq_t {
  char *name;
  pthread_mutex_t lock;
  pthread_cond_t cond;           /* workers wait here for jobs */
  uint32_t concurrency, min, max, floor, max_backlog;
  uint32_t nthreads, nidle, running, backlog;
  uint32_t starting;             /* created, not yet looking for work */
  uint32_t nexited;              /* workers gone, not yet reaped */
  ev_subq_t *buckets[EV_SUBQ_BUCKETS];
  ev_subq_t *ring;               /* next subqueue to serve, NULL: no work */
  ev_worker_t *workers;
  int stopping;
  int refs;                      /* __atomic: the creator's (until destroy)
                                  * + one per job until its COMPLETE is done */
  eventer_jobq_t *next;          /* registry */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static eventer_jobq_t *registry;
static eventer_jobq_t *default_q; /* __atomic */

/* ---- subqueues (q->lock held) ----------------------------------------------------- */

static ev_subq_t **bucket(eventer_jobq_t *q, uint64_t id) {
  /* multiplicative hash: ids are often small consecutive integers */
  return &q->buckets[(id * 0x9E3779B97F4A7C15ull) >> 58];
}

static ev_subq_t *subq_get(eventer_jobq_t *q, uint64_t id) {
  ev_subq_t **b = bucket(q, id);
  for (ev_subq_t *s = *b; s; s = s->hnext)
    if (s->id == id) return s;
  ev_subq_t *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->id = id;
  s->hnext = *b;
  *b = s;
  /* join the ring just before the cursor: served after every subqueue
   * that was already waiting */
  if (!q->ring) {
    s->ring_next = s->ring_prev = s;
    q->ring = s;
  } else {
    s->ring_next = q->ring;
    s->ring_prev = q->ring->ring_prev;
    s->ring_prev->ring_next = s;
    q->ring->ring_prev = s;
  }
  return s;
}

static void subq_free(eventer_jobq_t *q, ev_subq_t *s) {
  if (s->ring_next == s) {
    q->ring = NULL;
  } else {
    s->ring_prev->ring_next = s->ring_next;
    s->ring_next->ring_prev = s->ring_prev;
    if (q->ring == s) q->ring = s->ring_next;
  }
  ev_subq_t **b = bucket(q, s->id);
  while (*b != s) b = &(*b)->hnext;
  *b = s->hnext;
  free(s);
}

static eventer_t job_pop(eventer_jobq_t *q) {
  ev_subq_t *s = q->ring;
  if (!s) return NULL;
  eventer_t e = s->head;
  s->head = e->job_next;
  e->job_next = NULL;
  q->backlog--;
  if (!s->head) {
    s->tail = NULL;
    subq_free(q, s); /* moves the cursor on */
  } else {
    q->ring = s->ring_next;
  }
  return e;
}

/* ---- workers ------------------------------------------------------------------------- */

static void run_job(eventer_t e) {
  struct timeval now;
  ev_wall_tv(&now);
  if (e->deadline_ns && eventer_mono_ns() > e->deadline_ns) {
    mtevL(eventer_deb, "eventer: job %s missed its deadline: WORK skipped\n",
          eventer_name_for_callback(e->callback));
  } else {
    e->callback(e, EVENTER_ASYNCH_WORK, e->closure, &now);
    ev_wall_tv(&now);
  }
  e->callback(e, EVENTER_ASYNCH_CLEANUP, e->closure, &now);
  /* back to the owner loop for COMPLETE; the event stays EV_ST_JOB (and
   * keeps the eventer's reference) until that callback runs */
  e->xtask.run = ev_complete_run;
  ev_inbox_push(ev_event_owner(e), &e->xtask);
}

static void deadline_in(struct timespec *ts, int sec) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += sec;
}

static void *worker_main(void *arg) {
  ev_worker_t *w = arg;
  eventer_jobq_t *q = w->q;
  pthread_mutex_lock(&q->lock);
  q->starting--;
  for (;;) {
    if (q->stopping || q->nthreads > q->concurrency) break;
    if (!q->ring) {
      struct timespec ts;
      deadline_in(&ts, EV_JOBQ_IDLE_SEC);
      q->nidle++;
      int rc = pthread_cond_timedwait(&q->cond, &q->lock, &ts);
      q->nidle--;
      if (rc == ETIMEDOUT && !q->ring && q->nthreads > q->floor) break;
      continue;
    }
    eventer_t e = job_pop(q);
    q->running++;
    pthread_mutex_unlock(&q->lock);
    run_job(e);
    pthread_mutex_lock(&q->lock);
    q->running--;
  }
  q->nthreads--;
  w->exited = 1;
  q->nexited++;
  pthread_mutex_unlock(&q->lock);
  return NULL;
}

/* q->lock held */
static void reap(eventer_jobq_t *q) {
  ev_worker_t **pw = &q->workers;
  while (q->nexited && *pw) {
    ev_worker_t *w = *pw;
    if (w->exited) {
      /* it set `exited` under the lock we now hold, so it is past every
       * use of the queue: joining cannot wait on us */
      pthread_join(w->tid, NULL);
      *pw = w->next;
      free(w);
      q->nexited--;
    } else {
      pw = &w->next;
    }
  }
}

/* q->lock held.  Starts threads for queued jobs that no idle (or starting)
 * thread will pick up, and up to the floor, never beyond the concurrency. */
static void grow(eventer_jobq_t *q) {
  reap(q);
  uint32_t ready = q->nidle + q->starting;
  uint32_t target = q->nthreads + (q->backlog > ready ? q->backlog - ready : 0);
  if (target < q->floor) target = q->floor;
  if (target > q->concurrency) target = q->concurrency;
  while (!q->stopping && q->nthreads < target) {
    ev_worker_t *w = calloc(1, sizeof(*w));
    if (!w) break;
    w->q = q;
    if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
      free(w);
      /* queued jobs wait for the threads we have; with none at all they
       * would wait forever, which is worth a loud line */
      if (q->nthreads == 0)
        mtevL(mtev_error, "eventer: jobq %s cannot start a thread\n", q->name);
      break;
    }
    w->next = q->workers;
    q->workers = w;
    q->nthreads++;
    q->starting++;
  }
}

/* ---- queues ------------------------------------------------------------------------------ */

eventer_jobq_t *eventer_jobq_retrieve(const char *name) {
  if (!name) return NULL;
  pthread_mutex_lock(&registry_lock);
  eventer_jobq_t *q = registry;
  while (q && strcmp(q->name, name)) q = q->next;
  pthread_mutex_unlock(&registry_lock);
  return q;
}

eventer_jobq_t *eventer_jobq_create(const char *name) {
  if (!name || !*name) {
    errno = EINVAL;
    return NULL;
  }
  pthread_mutex_lock(&registry_lock);
  eventer_jobq_t *q = registry;
  while (q && strcmp(q->name, name)) q = q->next;
  if (!q) {
    q = calloc(1, sizeof(*q));
    if (q) q->name = strdup(name);
    if (!q || !q->name) {
      if (q) free(q);
      pthread_mutex_unlock(&registry_lock);
      errno = ENOMEM;
      return NULL;
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    /* idle timeouts must not stretch or shrink with wall-clock jumps */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    q->concurrency = 1;
    q->refs = 1;
    q->next = registry;
    registry = q;
  }
  pthread_mutex_unlock(&registry_lock);
  return q;
}

/* complete: jobs that never started still get their COMPLETE on their
 * loop (a destroy while the loops run; at eventer_fini there is none). */
static void jobq_destroy(eventer_jobq_t *q, int complete) {
  if (!q) return;
  pthread_mutex_lock(&registry_lock);
  eventer_jobq_t **pq = &registry;
  while (*pq && *pq != q) pq = &(*pq)->next;
  if (*pq) *pq = q->next;
  if (EV_LOAD(&default_q) == q) EV_STORE(&default_q, NULL);
  pthread_mutex_unlock(&registry_lock);

  pthread_mutex_lock(&q->lock);
  q->stopping = 1;
  pthread_cond_broadcast(&q->cond);
  ev_worker_t *ws = q->workers;
  q->workers = NULL;
  pthread_mutex_unlock(&q->lock);
  while (ws) { /* each finishes the job it is running, then exits */
    ev_worker_t *w = ws;
    ws = w->next;
    pthread_join(w->tid, NULL);
    free(w);
  }
  /* Jobs that never started: CLEANUP runs (its promise), WORK does not;
   * COMPLETE runs on the job's loop as for a job whose deadline passed
   * (so a coroutine that waits for it resumes), except at eventer_fini,
   * where there is no loop any more. */
  eventer_t e;
  while ((e = job_pop(q))) {
    struct timeval now;
    ev_wall_tv(&now);
    e->callback(e, EVENTER_ASYNCH_CLEANUP, e->closure, &now);
    if (complete) { /* as run_job: the event keeps its references */
      e->xtask.run = ev_complete_run;
      ev_inbox_push(ev_event_owner(e), &e->xtask);
      continue;
    }
    EV_STORE(&e->state, EV_ST_NONE);
    ev_deref_n(e, 1);
    ev_jobq_release(q);
  }
  /* completions still on their way to a loop keep q (stopping: a re-add
   * from COMPLETE fails with ESHUTDOWN) until they are done */
  ev_jobq_release(q);
}

void eventer_jobq_destroy(eventer_jobq_t *q) { jobq_destroy(q, 1); }

void ev_jobq_release(eventer_jobq_t *q) {
  if (__atomic_sub_fetch(&q->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  pthread_cond_destroy(&q->cond);
  pthread_mutex_destroy(&q->lock);
  free(q->name);
  free(q);
}

int ev_jobq_init_default(int threads) {
  eventer_jobq_t *q = eventer_jobq_create("default_queue");
  if (!q) return -1;
  eventer_jobq_set_concurrency(q, (uint32_t)threads);
  EV_STORE(&default_q, q);
  return 0;
}

void ev_jobq_fini_all(void) {
  for (;;) {
    pthread_mutex_lock(&registry_lock);
    eventer_jobq_t *q = registry;
    pthread_mutex_unlock(&registry_lock);
    if (!q) break;
    jobq_destroy(q, 0);
  }
}

eventer_jobq_t *eventer_default_jobq(void) { return EV_LOAD(&default_q); }

const char *eventer_jobq_get_queue_name(eventer_jobq_t *q) {
  return q ? q->name : NULL;
}

/* q->lock held */
static void clamp(eventer_jobq_t *q) {
  if (q->min && q->concurrency < q->min) q->concurrency = q->min;
  if (q->max && q->concurrency > q->max) q->concurrency = q->max;
  if (q->concurrency < 1) q->concurrency = 1;
}

void eventer_jobq_set_concurrency(eventer_jobq_t *q, uint32_t n) {
  if (!q) return;
  pthread_mutex_lock(&q->lock);
  q->concurrency = n;
  clamp(q);
  /* fewer: idle threads wake and the surplus exits; more: start some */
  pthread_cond_broadcast(&q->cond);
  grow(q);
  pthread_mutex_unlock(&q->lock);
}

uint32_t eventer_jobq_get_concurrency(eventer_jobq_t *q) {
  if (!q) return 0;
  pthread_mutex_lock(&q->lock);
  uint32_t n = q->concurrency;
  pthread_mutex_unlock(&q->lock);
  return n;
}

void eventer_jobq_set_min_max(eventer_jobq_t *q, uint32_t min, uint32_t max) {
  if (!q || (max && min > max)) return;
  pthread_mutex_lock(&q->lock);
  q->min = min;
  q->max = max;
  clamp(q);
  pthread_cond_broadcast(&q->cond);
  grow(q);
  pthread_mutex_unlock(&q->lock);
}

void eventer_jobq_get_min_max(eventer_jobq_t *q, uint32_t *min, uint32_t *max) {
  if (!q) return;
  pthread_mutex_lock(&q->lock);
  if (min) *min = q->min;
  if (max) *max = q->max;
  pthread_mutex_unlock(&q->lock);
}

void eventer_jobq_set_floor(eventer_jobq_t *q, uint32_t floor) {
  if (!q) return;
  pthread_mutex_lock(&q->lock);
  q->floor = floor;
  grow(q);
  pthread_mutex_unlock(&q->lock);
}

uint32_t eventer_jobq_get_floor(eventer_jobq_t *q) {
  if (!q) return 0;
  pthread_mutex_lock(&q->lock);
  uint32_t n = q->floor;
  pthread_mutex_unlock(&q->lock);
  return n;
}

void eventer_jobq_set_max_backlog(eventer_jobq_t *q, uint32_t max) {
  if (!q) return;
  pthread_mutex_lock(&q->lock);
  q->max_backlog = max;
  pthread_mutex_unlock(&q->lock);
}

uint32_t eventer_jobq_get_backlog(eventer_jobq_t *q) {
  if (!q) return 0;
  pthread_mutex_lock(&q->lock);
  uint32_t n = q->backlog;
  pthread_mutex_unlock(&q->lock);
  return n;
}

/* ---- adding jobs ------------------------------------------------------------------------ */

static int enqueue(eventer_jobq_t *q, eventer_t e, uint64_t id, int try) {
  if (!e || !e->callback) {
    errno = EINVAL;
    return -1;
  }
  if (!q) q = EV_LOAD(&default_q);
  if (!q) {
    errno = ENXIO;
    return -1;
  }
  int expect = EV_ST_NONE;
  if (!__atomic_compare_exchange_n(&e->state, &expect, EV_ST_JOB, 0,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    errno = EBUSY;
    return -1;
  }
  e->jobq = q;
  e->subq = id;
  /* the wall-clock deadline becomes monotonic now, so clock jumps while
   * the job waits do not change whether WORK runs */
  e->deadline_ns = (e->whence.tv_sec || e->whence.tv_usec)
                       ? ev_deadline_for_whence(&e->whence)
                       : 0;
  e->job_next = NULL;
  pthread_mutex_lock(&q->lock);
  if (q->stopping ||
      (try && q->max_backlog && q->backlog >= q->max_backlog)) {
    int stopping = q->stopping;
    pthread_mutex_unlock(&q->lock);
    EV_STORE(&e->state, EV_ST_NONE);
    errno = stopping ? ESHUTDOWN : EAGAIN;
    return -1;
  }
  ev_subq_t *s = subq_get(q, id);
  if (!s) {
    pthread_mutex_unlock(&q->lock);
    EV_STORE(&e->state, EV_ST_NONE);
    errno = ENOMEM;
    return -1;
  }
  if (s->tail)
    s->tail->job_next = e;
  else
    s->head = e;
  s->tail = e;
  q->backlog++;
  __atomic_add_fetch(&q->refs, 1, __ATOMIC_RELAXED); /* the job's */
  if (q->nidle > 0) pthread_cond_signal(&q->cond);
  grow(q);
  pthread_mutex_unlock(&q->lock);
  return 0;
}

int eventer_add_asynch(eventer_jobq_t *q, eventer_t e) {
  return enqueue(q, e, 0, 0);
}

int eventer_add_asynch_subqueue(eventer_jobq_t *q, eventer_t e, uint64_t id) {
  return enqueue(q, e, id, 0);
}

int eventer_add_asynch_dep(eventer_jobq_t *q, eventer_t e) {
  return enqueue(q, e, 0, 0);
}

int eventer_add_asynch_dep_subqueue(eventer_jobq_t *q, eventer_t e,
                                    uint64_t id) {
  return enqueue(q, e, id, 0);
}

mtev_boolean eventer_try_add_asynch(eventer_jobq_t *q, eventer_t e) {
  return enqueue(q, e, 0, 1) == 0 ? mtev_true : mtev_false;
}

mtev_boolean eventer_try_add_asynch_subqueue(eventer_jobq_t *q, eventer_t e,
                                             uint64_t id) {
  return enqueue(q, e, id, 1) == 0 ? mtev_true : mtev_false;
}
