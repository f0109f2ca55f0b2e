/*
 * eventer_jobq.c - job queues: thread pools for blocking work (asynch
 * events).  WORK and CLEANUP run on a job thread; the COMPLETE callback is
 * posted back to the event's owner loop through its cross-thread queue
 * (the event's own xtask node, so completion needs no allocation).
 *
 * Each queue is one mutex, one condition variable, and a ring of the
 * subqueues that have jobs queued.  A subqueue exists while it has jobs
 * queued or running; a dequeue serves the ring round-robin, skipping a
 * subqueue that runs its fair share of the threads while another under
 * its share has work (see eventer_jobq.h).
 *
 * Deadlines: a job whose deadline has passed when a thread picks it up
 * gets no WORK.  If its mask asks for it (EVENTER_EVIL_BRUTAL,
 * EVENTER_CANCEL_*), a running WORK is also stopped at the deadline: the
 * job thread arms a shared watcher thread before WORK and disarms it
 * after; the watcher, at the deadline, cancels the thread or signals it.
 * Arm, disarm and fire all happen under the watcher's lock, so a thread
 * that has disarmed is never cancelled or signalled for that job.
 */
#include "eventer_impl.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EV_JOBQ_IDLE_SEC 10 /* idle threads above the floor exit after this */
#define EV_SUBQ_BUCKETS 64
#define EV_JOBQ_SIGNAL SIGALRM /* EVENTER_EVIL_BRUTAL (libmtev's signal) */
/* The watcher's signals carry this tag and a WORK number below it, so the
 * handler tells them from anyone else's SIGALRM. */
#define EV_BRUTAL_TAG 0x5a000000
#define EV_BRUTAL_GEN_MASK 0x00ffffff

typedef struct ev_subq {
  uint64_t id;
  eventer_t head, tail;          /* jobs queued, linked by job_next */
  uint32_t queued, running;
  int in_ring;
  struct ev_subq *ring_next, *ring_prev;
  struct ev_subq *hnext;         /* hash chain */
} ev_subq_t;

/* The watcher's record of one WORK that must stop at its deadline. */
typedef struct ev_watch {
  struct ev_watch *next, *prev;
  uint64_t deadline_ns;
  pthread_t tid;
  int cancel;                    /* 1: pthread_cancel, 0: signal */
  int gen;                       /* signal payload: which WORK */
  int fired;
} ev_watch_t;

typedef struct ev_worker ev_worker_t;

/* What a job thread is running (eventer_jobq_inflight). */
struct _eventer_job_t {
  eventer_t e;
  ev_subq_t *subq;
  ev_worker_t *worker;
};

struct ev_worker {
  pthread_t tid;
  eventer_jobq_t *q;
  int idx;                       /* the n of "q:<queue>/<n>" */
  int exited;                    /* under q->lock */
  struct _eventer_job_t job;
  ev_watch_t watch;
  struct ev_worker *next;
};

struct _eventer_jobq_t {
  char *name;
  char shortname[14];            /* "" : none */
  pthread_mutex_t lock;
  pthread_cond_t cond;           /* workers wait here for jobs */
  pthread_cond_t drained;        /* drain_and_shutdown waits here */
  uint32_t concurrency, min, max, floor, max_backlog;
  uint32_t nthreads, nidle, running, backlog;
  /* Idle threads: `nidle` counts them all, `nspinning` those that spin
   * (at most one) before they sleep on `cond`.  A spinner watches
   * `avail` (backlog, mirrored for reads without the lock) and takes the
   * lock to pick up a job or to sleep, so an enqueue signals `cond` only
   * for jobs beyond what spinners will pick up.  `spin` is the queue's
   * learned budget (ev_spin_t): a spin that finds a job raises it, one
   * that does not halves it, and an enqueue that must wake a sleeper
   * learns from how long ago a thread found the queue empty
   * (`idle_since`): whichever thread the signal wakes, that is how long
   * a spin would have had to last.  `enq_cpu`: where the last enqueue
   * ran. */
  uint32_t nspinning;
  uint32_t avail;                /* __atomic */
  int enq_cpu;
  ev_spin_t spin;
  uint64_t idle_since;           /* when a thread last found no job */
  uint32_t starting;             /* created, not yet looking for work */
  uint32_t nexited;              /* workers gone, not yet reaped */
  uint32_t nsubq;                /* subqueues with jobs queued or running */
  ev_subq_t *buckets[EV_SUBQ_BUCKETS];
  ev_subq_t *ring;               /* next subqueue to serve, NULL: no work */
  ev_worker_t *workers;
  int lifo;
  int is_backq;                  /* jobs run on their owner loop instead */
  int ever_threaded;             /* a thread was started at least once */
  eventer_jobq_memory_safety_t ms;
  int stopping, draining;
  int refs;                      /* __atomic: the creator's (until destroy)
                                  * + one per job until its COMPLETE is done */
  eventer_jobq_t *next;          /* registry */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static eventer_jobq_t *registry;
static eventer_jobq_t *default_q; /* __atomic */

static __thread struct _eventer_job_t *tls_job; /* the job this thread runs */

/* ---- subqueues (q->lock held) ----------------------------------------------------- */

static ev_subq_t **bucket(eventer_jobq_t *q, uint64_t id) {
  /* multiplicative hash: ids are often small consecutive integers */
  return &q->buckets[(id * 0x9E3779B97F4A7C15ull) >> 58];
}

static void ring_join(eventer_jobq_t *q, ev_subq_t *s) {
  /* just before the cursor: served after every subqueue already waiting */
  if (!q->ring) {
    s->ring_next = s->ring_prev = s;
    q->ring = s;
  } else {
    s->ring_next = q->ring;
    s->ring_prev = q->ring->ring_prev;
    s->ring_prev->ring_next = s;
    q->ring->ring_prev = s;
  }
  s->in_ring = 1;
}

static void ring_leave(eventer_jobq_t *q, ev_subq_t *s) {
  if (s->ring_next == s) {
    q->ring = NULL;
  } else {
    s->ring_prev->ring_next = s->ring_next;
    s->ring_next->ring_prev = s->ring_prev;
    if (q->ring == s) q->ring = s->ring_next;
  }
  s->ring_next = s->ring_prev = NULL;
  s->in_ring = 0;
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
  q->nsubq++;
  return s;
}

/* Frees s once it has nothing queued and nothing running. */
static void subq_maybe_free(eventer_jobq_t *q, ev_subq_t *s) {
  if (s->queued || s->running) return;
  EV_ASSERT(!s->in_ring, "a subqueue without queued jobs is off the ring");
  ev_subq_t **b = bucket(q, s->id);
  while (*b != s) b = &(*b)->hnext;
  *b = s->hnext;
  q->nsubq--;
  free(s);
}

static void subq_push(eventer_jobq_t *q, ev_subq_t *s, eventer_t e) {
  e->job_next = NULL;
  if (!s->head) {
    s->head = s->tail = e;
  } else if (q->lifo) {
    e->job_next = s->head;
    s->head = e;
  } else {
    s->tail->job_next = e;
    s->tail = e;
  }
  s->queued++;
  q->backlog++;
  EV_STORE(&q->avail, q->backlog);
  if (!s->in_ring) ring_join(q, s);
}

static eventer_t subq_pop(eventer_jobq_t *q, ev_subq_t *s) {
  eventer_t e = s->head;
  s->head = e->job_next;
  if (!s->head) s->tail = NULL;
  e->job_next = NULL;
  s->queued--;
  q->backlog--;
  EV_STORE(&q->avail, q->backlog);
  return e;
}

/* The next job to run, and its subqueue (now counting it as running).
 * libmtev's fair share: prefer, in ring order from the cursor, a subqueue
 * running fewer than its share - 1 jobs, then fewer than its share, then
 * any: a busy subqueue is skipped while another under its share has work,
 * and no thread idles while jobs wait. */
static eventer_t job_pop(eventer_jobq_t *q, ev_subq_t **sq) {
  if (!q->ring) return NULL;
  uint32_t share = q->nsubq ? q->concurrency / q->nsubq : q->concurrency;
  if (share < 1) share = 1;
  uint32_t limits[3];
  int nlimits = 0;
  if (share > 1) limits[nlimits++] = share - 1;
  limits[nlimits++] = share;
  limits[nlimits++] = UINT32_MAX;
  ev_subq_t *s = NULL;
  for (int t = 0; t < nlimits && !s; t++) {
    ev_subq_t *c = q->ring;
    do {
      if (c->running < limits[t]) {
        s = c;
        break;
      }
      c = c->ring_next;
    } while (c != q->ring);
  }
  EV_ASSERT(s, "the last fair-share tier has no limit");
  eventer_t e = subq_pop(q, s);
  s->running++;
  q->ring = s->ring_next; /* the next search starts after s */
  if (!s->queued) ring_leave(q, s);
  *sq = s;
  return e;
}

/* ---- the deadline watcher ------------------------------------------------------------ */

static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;           /* CLOCK_MONOTONIC */
  int cond_ready, running, stop;
  pthread_t tid;
  ev_watch_t head;               /* circular list of armed WORKs */
  int gen;
} W = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *watcher_main(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "e:jobq-deadline");
  ev_thread_name_set("e:jobq-deadline");
  pthread_mutex_lock(&W.lock);
  while (!W.stop) {
    uint64_t now = eventer_mono_ns(), next = 0;
    for (ev_watch_t *w = W.head.next; w != &W.head; w = w->next) {
      if (w->fired) continue;
      if (w->deadline_ns <= now) {
        w->fired = 1;
        if (w->cancel) {
          pthread_cancel(w->tid);
        } else {
          union sigval v;
          v.sival_int = EV_BRUTAL_TAG | w->gen;
          pthread_sigqueue(w->tid, EV_JOBQ_SIGNAL, v);
        }
      } else if (!next || w->deadline_ns < next) {
        next = w->deadline_ns;
      }
    }
    if (!next) {
      pthread_cond_wait(&W.cond, &W.lock);
    } else {
      struct timespec ts = {(time_t)(next / 1000000000u),
                            (long)(next % 1000000000u)};
      pthread_cond_timedwait(&W.cond, &W.lock, &ts);
    }
  }
  pthread_mutex_unlock(&W.lock);
  return NULL;
}

/* Arms w for the calling thread (W.lock not held). */
static void watch_arm(ev_watch_t *w, uint64_t deadline_ns, int cancel) {
  pthread_mutex_lock(&W.lock);
  if (!W.cond_ready) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&W.cond, &ca);
    pthread_condattr_destroy(&ca);
    W.head.next = W.head.prev = &W.head;
    W.cond_ready = 1;
  }
  if (!W.running) {
    W.stop = 0;
    int rc = pthread_create(&W.tid, NULL, watcher_main, NULL);
    /* without the watcher, a WORK that must stop at its deadline would run
     * on: say so, and let it run (the documented default behaviour) */
    if (rc != 0)
      mtevL(mtev_error, "eventer: cannot start the job deadline watcher: %s\n",
            strerror(rc));
    else
      W.running = 1;
  }
  w->deadline_ns = deadline_ns;
  w->tid = pthread_self();
  w->cancel = cancel;
  W.gen = (W.gen + 1) & EV_BRUTAL_GEN_MASK;
  if (!W.gen) W.gen = 1; /* 0 means "none" */
  w->gen = W.gen;
  w->fired = 0;
  w->next = &W.head;
  w->prev = W.head.prev;
  W.head.prev->next = w;
  W.head.prev = w;
  pthread_cond_signal(&W.cond);
  pthread_mutex_unlock(&W.lock);
}

/* Disarms w; returns 1 if the watcher fired it. */
static int watch_disarm(ev_watch_t *w) {
  pthread_mutex_lock(&W.lock);
  int fired = w->fired;
  if (w->next) {
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->next = w->prev = NULL;
  }
  pthread_mutex_unlock(&W.lock);
  return fired;
}

static void watcher_stop(void) {
  pthread_mutex_lock(&W.lock);
  int running = W.running;
  W.stop = 1;
  W.running = 0;
  if (running) pthread_cond_signal(&W.cond);
  pthread_mutex_unlock(&W.lock);
  if (running) pthread_join(W.tid, NULL);
}

/* ---- EVENTER_EVIL_BRUTAL: a signal that siglongjmps out of WORK ------------------ */

static __thread sigjmp_buf *tls_brutal_env;
static __thread volatile sig_atomic_t tls_brutal_gen; /* armed WORK, 0: none */
static struct sigaction brutal_prev;   /* the handler we replaced */
static pthread_once_t brutal_once = PTHREAD_ONCE_INIT;

static void brutal_handler(int sig, siginfo_t *si, void *uc) {
  if (si && si->si_code == SI_QUEUE &&
      (si->si_value.sival_int & ~EV_BRUTAL_GEN_MASK) == EV_BRUTAL_TAG) {
    int gen = si->si_value.sival_int & EV_BRUTAL_GEN_MASK;
    if (tls_brutal_gen == gen) {
      tls_brutal_gen = 0;
      siglongjmp(*tls_brutal_env, 1);
    }
    return; /* ours, for a WORK that has already returned */
  }
  /* not ours: what the signal would have done without us */
  if (brutal_prev.sa_flags & SA_SIGINFO) {
    if (brutal_prev.sa_sigaction) brutal_prev.sa_sigaction(sig, si, uc);
  } else if (brutal_prev.sa_handler == SIG_DFL) {
    signal(sig, SIG_DFL);
    raise(sig);
  } else if (brutal_prev.sa_handler != SIG_IGN) {
    brutal_prev.sa_handler(sig);
  }
}

static void brutal_install(void) {
  struct sigaction act;
  memset(&act, 0, sizeof(act));
  act.sa_sigaction = brutal_handler;
  /* SA_ONSTACK: Go requires it of every handler in a process it runs in;
   * no SA_RESTART: a blocking call in WORK returns EINTR, as in libmtev */
  act.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&act.sa_mask);
  if (sigaction(EV_JOBQ_SIGNAL, &act, &brutal_prev) != 0)
    mtevL(mtev_error, "eventer: cannot install the EVENTER_EVIL_BRUTAL signal"
          " handler: %s\n", strerror(errno));
}

/* ---- running a job ------------------------------------------------------------------- */

static void log_slow_work(eventer_t e, uint64_t t0) {
  uint64_t took = eventer_mono_ns() - t0;
  if (took > ev_cfg_jobq_slow_ns())
    mtevL(mtev_notice, "eventer: %s asynch WORK %s took %.3f ms\n",
          eventer_get_thread_name(), eventer_name_for_callback_e(e->callback, e),
          (double)took / 1e6);
}

/* The job's WORK and CLEANUP are done: when its dependents are done too,
 * COMPLETE goes to the owner loop (the event stays EV_ST_JOB and keeps the
 * eventer's reference until that callback runs), and the job it depends
 * on learns it. */
static void job_done(eventer_t e) {
  while (e && __atomic_sub_fetch(&e->dep_pending, 1, __ATOMIC_ACQ_REL) == 0) {
    eventer_t parent = e->dep_parent; /* e may be freed once posted */
    e->dep_parent = NULL;
    e->xtask.run = ev_complete_run;
    ev_inbox_push(ev_event_owner(e), &e->xtask);
    e = parent;
  }
}

static void run_cleanup(eventer_t e) {
  struct timeval now;
  ev_wall_tv(&now);
  eventer_run_callback(e, EVENTER_ASYNCH_CLEANUP, e->closure, &now);
}

/* After a job: the queue's and the subqueue's counts (q->lock held). */
static void job_account(eventer_jobq_t *q, ev_subq_t *s) {
  q->running--;
  s->running--;
  subq_maybe_free(q, s);
  if (q->draining && !q->running && !q->backlog)
    pthread_cond_broadcast(&q->drained);
}

static void grow(eventer_jobq_t *q);

/* The job thread was cancelled in WORK (pthread_cancel acted on): runs as
 * a cleanup handler while the thread unwinds.  Finishes the job as WORK
 * would have, then does what worker_main does when a thread leaves, and
 * starts a replacement. */
static void work_cancelled(void *arg) {
  ev_worker_t *w = arg;
  eventer_t e = w->job.e;
  eventer_jobq_t *q = w->q;
  watch_disarm(&w->watch);
  ev_callback_abandoned(e, EVENTER_ASYNCH_WORK);
  mtevL(eventer_deb, "eventer: job %s cancelled at its deadline on %s\n",
        eventer_name_for_callback(e->callback), eventer_get_thread_name());
  run_cleanup(e);
  tls_job = NULL;
  job_done(e);
  pthread_mutex_lock(&q->lock);
  job_account(q, w->job.subq);
  q->nthreads--;
  w->exited = 1;
  q->nexited++;
  grow(q);
  pthread_mutex_unlock(&q->lock);
}

/* WORK under EVENTER_CANCEL_*: cancelable only while the callback runs. */
static void work_cancelable(ev_worker_t *w, eventer_t e, struct timeval *now) {
  int async = (e->mask & EVENTER_CANCEL_ASYNCH) != 0;
  pthread_cleanup_push(work_cancelled, w);
  watch_arm(&w->watch, e->deadline_ns, 1);
  pthread_setcanceltype(async ? PTHREAD_CANCEL_ASYNCHRONOUS
                              : PTHREAD_CANCEL_DEFERRED, NULL);
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
  eventer_run_callback(e, EVENTER_ASYNCH_WORK, e->closure, now);
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
  pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, NULL);
  if (watch_disarm(&w->watch)) {
    /* The deadline passed as WORK returned: the cancel is pending on this
     * thread and would hit a later job, so act on it now, for this one. */
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    pthread_testcancel();
    EV_ASSERT(0, "a pending cancel is acted on by pthread_testcancel");
  }
  pthread_cleanup_pop(0);
}

/* WORK under EVENTER_EVIL_BRUTAL: the watcher's signal siglongjmps here. */
static void work_brutal(ev_worker_t *w, eventer_t e, struct timeval *now) {
  sigjmp_buf env;
  pthread_once(&brutal_once, brutal_install);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, EV_JOBQ_SIGNAL);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  if (sigsetjmp(env, 1) == 0) {
    tls_brutal_env = &env;
    watch_arm(&w->watch, e->deadline_ns, 0);
    tls_brutal_gen = w->watch.gen;
    eventer_run_callback(e, EVENTER_ASYNCH_WORK, e->closure, now);
    tls_brutal_gen = 0;
    watch_disarm(&w->watch);
  } else {
    /* the handler cleared tls_brutal_gen before jumping */
    watch_disarm(&w->watch);
    ev_callback_abandoned(e, EVENTER_ASYNCH_WORK);
    mtevL(eventer_deb, "eventer: job %s aborted at its deadline on %s\n",
          eventer_name_for_callback(e->callback), eventer_get_thread_name());
  }
  tls_brutal_env = NULL;
}

static void run_job(ev_worker_t *w, eventer_t e) {
  struct timeval now;
  ev_wall_tv(&now);
  tls_job = &w->job;
  if (e->deadline_ns && eventer_mono_ns() > e->deadline_ns) {
    mtevL(eventer_deb, "eventer: job %s missed its deadline: WORK skipped\n",
          eventer_name_for_callback(e->callback));
  } else {
    uint64_t t0 = ev_cfg_jobq_slow_ns() ? eventer_mono_ns() : 0;
    if (e->deadline_ns && (e->mask & EVENTER_CANCEL))
      work_cancelable(w, e, &now);
    else if (e->deadline_ns && (e->mask & EVENTER_EVIL_BRUTAL))
      work_brutal(w, e, &now);
    else
      eventer_run_callback(e, EVENTER_ASYNCH_WORK, e->closure, &now);
    if (t0) log_slow_work(e, t0);
  }
  run_cleanup(e);
  tls_job = NULL;
  job_done(e);
}

/* ---- workers ------------------------------------------------------------------------- */

static void deadline_in(struct timespec *ts, int sec) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += sec;
}

/* q->lock held, q has no job: spins (unlocked) for one while the queue's
 * budget allows, no other thread of q spins, and the last enqueue ran on
 * another CPU.  1 if a job came, 0 if none did (the lock is held again
 * either way), -1 if it did not spin. */
static int worker_spin(eventer_jobq_t *q) {
  uint64_t budget = q->spin.budget_ns;
  if (!budget || q->nspinning || q->enq_cpu == ev_cpu_self()) return -1;
  q->nidle++;
  q->nspinning++;
  pthread_mutex_unlock(&q->lock);
  int got = 0;
  uint64_t t0 = eventer_mono_ns(), now = t0, prev = t0, end = t0 + budget;
  int preempted = 0;
  while (now < end) {
    if (EV_LOAD_RELAXED(&q->avail)) {
      got = 1;
      break;
    }
    for (int i = 0; i < 8; i++) ev_cpu_relax();
    now = eventer_mono_ns();
    if (now - prev > EV_SPIN_PREEMPTED_NS) {
      preempted = 1; /* another thread needed this CPU */
      break;
    }
    prev = now;
  }
  pthread_mutex_lock(&q->lock);
  q->nspinning--;
  q->nidle--;
  if (got)
    ev_spin_caught(&q->spin, now - t0);
  else
    ev_spin_missed(&q->spin);
  if (preempted) ev_spin_missed(&q->spin);
  return got;
}

static void *worker_main(void *arg) {
  ev_worker_t *w = arg;
  eventer_jobq_t *q = w->q;
  /* a cancel acts only inside WORK of an EVENTER_CANCEL_* job */
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
  pthread_mutex_lock(&q->lock);
  char name[64];
  snprintf(name, sizeof(name), "q:%s/%d", q->shortname[0] ? q->shortname : q->name,
           w->idx);
  q->starting--;
  pthread_mutex_unlock(&q->lock);
  ev_thread_name_set(name);
  char os_name[16]; /* the kernel keeps 15 bytes */
  snprintf(os_name, sizeof(os_name), "%.15s", name);
  pthread_setname_np(pthread_self(), os_name);
  pthread_mutex_lock(&q->lock);
  int waiting = 0; /* this thread has found no job since its last one */
  for (;;) {
    if (q->stopping || q->nthreads > q->concurrency) break;
    if (!q->ring) {
      if (!waiting) {
        waiting = 1;
        q->idle_since = eventer_mono_ns();
        /* whether or not the spin saw a job, the lock was dropped: look
         * at the queue again before sleeping */
        if (worker_spin(q) >= 0) continue;
      }
      struct timespec ts;
      deadline_in(&ts, EV_JOBQ_IDLE_SEC);
      q->nidle++;
      int rc = pthread_cond_timedwait(&q->cond, &q->lock, &ts);
      q->nidle--;
      if (rc == ETIMEDOUT && !q->ring && q->nthreads > q->floor) break;
      continue;
    }
    waiting = 0;
    ev_subq_t *s;
    eventer_t e = job_pop(q, &s);
    q->running++;
    w->job.e = e;
    w->job.subq = s;
    pthread_mutex_unlock(&q->lock);
    run_job(w, e);
    pthread_mutex_lock(&q->lock);
    w->job.e = NULL;
    job_account(q, s);
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

/* q->lock held: the lowest n no live worker of q uses. */
static int free_idx(eventer_jobq_t *q) {
  for (int idx = 0;; idx++) {
    int used = 0;
    for (ev_worker_t *w = q->workers; w && !used; w = w->next)
      if (!w->exited && w->idx == idx) used = 1;
    if (!used) return idx;
  }
}

/* q->lock held.  Starts threads for queued jobs that no idle (or starting)
 * thread will pick up, and up to the floor, never beyond the concurrency. */
static void grow(eventer_jobq_t *q) {
  if (q->is_backq) return;
  reap(q);
  uint32_t ready = q->nidle + q->starting;
  uint32_t target = q->nthreads + (q->backlog > ready ? q->backlog - ready : 0);
  if (target < q->floor) target = q->floor;
  if (target > q->concurrency) target = q->concurrency;
  while (!q->stopping && q->nthreads < target) {
    ev_worker_t *w = calloc(1, sizeof(*w));
    if (!w) break;
    w->q = q;
    w->idx = free_idx(q);
    w->job.worker = w;
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
    q->ever_threaded = 1;
  }
}

/* ---- queues ------------------------------------------------------------------------------ */

static eventer_jobq_t *find_locked(const char *name) {
  eventer_jobq_t *q = registry;
  while (q && strcmp(q->name, name)) q = q->next;
  return q;
}

eventer_jobq_t *eventer_jobq_retrieve(const char *name) {
  if (!name) return NULL;
  pthread_mutex_lock(&registry_lock);
  eventer_jobq_t *q = find_locked(name);
  pthread_mutex_unlock(&registry_lock);
  return q;
}

static eventer_jobq_t *create(const char *name, eventer_jobq_memory_safety_t ms,
                              int backq) {
  if (!name || !*name || (unsigned)ms > EVENTER_JOBQ_MS_NONE) {
    errno = EINVAL;
    return NULL;
  }
  pthread_mutex_lock(&registry_lock);
  eventer_jobq_t *q = find_locked(name);
  if (q) {
    /* libmtev: a name means one queue; another safety mode is taken only
     * while the queue has never run a thread */
    int ok = q->is_backq == backq;
    if (ok && q->ms != ms) {
      pthread_mutex_lock(&q->lock);
      if (!q->ever_threaded)
        q->ms = ms;
      else
        ok = 0;
      pthread_mutex_unlock(&q->lock);
    }
    pthread_mutex_unlock(&registry_lock);
    if (!ok) {
      errno = EEXIST;
      return NULL;
    }
    return q;
  }
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
  pthread_cond_init(&q->drained, NULL);
  q->concurrency = 1;
  q->ms = ms;
  q->is_backq = backq;
  q->lifo = ev_cfg_default_lifo();
  q->refs = 1;
  q->next = registry;
  registry = q;
  pthread_mutex_unlock(&registry_lock);
  return q;
}

eventer_jobq_t *eventer_jobq_create(const char *name) {
  return create(name, EVENTER_JOBQ_MS_CS, 0);
}

eventer_jobq_t *eventer_jobq_create_ms(const char *name,
                                       eventer_jobq_memory_safety_t ms) {
  return create(name, ms, 0);
}

eventer_jobq_t *eventer_jobq_create_backq(const char *name) {
  return create(name, EVENTER_JOBQ_MS_NONE, 1);
}

eventer_jobq_t *eventer_default_backq(eventer_t e) {
  (void)e; /* one back queue serves every loop: it runs jobs on theirs */
  return eventer_jobq_create_backq("default_back_queue");
}

/* A job that will never run (its queue went away): CLEANUP, no WORK and
 * no COMPLETE; the job it depends on is told it is done. */
static void job_abandon(eventer_jobq_t *q, eventer_t e) {
  run_cleanup(e);
  eventer_t parent = e->dep_parent;
  e->dep_parent = NULL;
  EV_STORE(&e->state, EV_ST_NONE);
  ev_deref_n(e, 1);
  ev_jobq_release(q);
  job_done(parent);
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
  for (;;) {
    pthread_mutex_lock(&q->lock);
    ev_subq_t *s = NULL;
    eventer_t e = q->ring ? job_pop(q, &s) : NULL;
    if (e) {
      s->running--;
      subq_maybe_free(q, s);
    }
    pthread_mutex_unlock(&q->lock);
    if (!e) break;
    if (complete) { /* as run_job: the event keeps its references */
      run_cleanup(e);
      job_done(e);
      continue;
    }
    job_abandon(q, e);
  }
  /* completions still on their way to a loop keep q (stopping: a re-add
   * from COMPLETE fails with ESHUTDOWN) until they are done */
  ev_jobq_release(q);
}

void eventer_jobq_destroy(eventer_jobq_t *q) { jobq_destroy(q, 1); }

int ev_jobq_stopping(eventer_jobq_t *q) {
  pthread_mutex_lock(&q->lock);
  int stopping = q->stopping;
  pthread_mutex_unlock(&q->lock);
  return stopping;
}

void eventer_jobq_drain_and_shutdown(eventer_jobq_t *q) {
  if (!q) return;
  if (tls_job && tls_job->worker && tls_job->worker->q == q) {
    mtevL(eventer_err, "eventer: eventer_jobq_drain_and_shutdown(%s) called"
          " from one of its own jobs: it would wait for itself; ignored\n",
          q->name);
    return;
  }
  pthread_mutex_lock(&q->lock);
  q->draining = 1;
  while (q->running || q->backlog) pthread_cond_wait(&q->drained, &q->lock);
  pthread_mutex_unlock(&q->lock);
  eventer_jobq_destroy(q);
}

void ev_jobq_release(eventer_jobq_t *q) {
  if (__atomic_sub_fetch(&q->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  pthread_cond_destroy(&q->cond);
  pthread_cond_destroy(&q->drained);
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
  watcher_stop();
}

eventer_jobq_t *eventer_default_jobq(void) { return EV_LOAD(&default_q); }

const char *eventer_jobq_get_queue_name(eventer_jobq_t *q) {
  return q ? q->name : NULL;
}

void eventer_jobq_set_shortname(eventer_jobq_t *q, const char *name) {
  if (!q) return;
  pthread_mutex_lock(&q->lock);
  snprintf(q->shortname, sizeof(q->shortname), "%s", name ? name : "");
  pthread_mutex_unlock(&q->lock);
}

void eventer_jobq_set_lifo(eventer_jobq_t *q, mtev_boolean nv) {
  if (!q) return;
  pthread_mutex_lock(&q->lock);
  q->lifo = nv ? 1 : 0;
  pthread_mutex_unlock(&q->lock);
}

mtev_boolean eventer_jobq_get_lifo(eventer_jobq_t *q) {
  if (!q) return mtev_false;
  pthread_mutex_lock(&q->lock);
  int lifo = q->lifo;
  pthread_mutex_unlock(&q->lock);
  return lifo ? mtev_true : mtev_false;
}

eventer_jobq_memory_safety_t eventer_jobq_get_memory_safety(eventer_jobq_t *q) {
  return q ? q->ms : EVENTER_JOBQ_MS_NONE;
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

uint32_t eventer_jobq_get_max_backlog(eventer_jobq_t *q) {
  if (!q) return 0;
  pthread_mutex_lock(&q->lock);
  uint32_t n = q->max_backlog;
  pthread_mutex_unlock(&q->lock);
  return n;
}

uint32_t eventer_jobq_get_backlog(eventer_jobq_t *q) {
  if (!q) return 0;
  pthread_mutex_lock(&q->lock);
  uint32_t n = q->backlog;
  pthread_mutex_unlock(&q->lock);
  return n;
}

void eventer_jobq_post(eventer_jobq_t *q) {
  if (!q) return;
  pthread_mutex_lock(&q->lock);
  pthread_cond_broadcast(&q->cond);
  grow(q);
  pthread_mutex_unlock(&q->lock);
}

eventer_job_t *eventer_jobq_inflight(void) { return tls_job; }

void eventer_jobq_process_each(mtev_boolean (*func)(eventer_jobq_t *, void *),
                               void *closure) {
  if (!func) return;
  pthread_mutex_lock(&registry_lock);
  for (eventer_jobq_t *q = registry; q; q = q->next)
    if (!func(q, closure)) break;
  pthread_mutex_unlock(&registry_lock);
}

void eventer_jobq_init_globals(void) {}

/* ---- adding jobs ------------------------------------------------------------------------ */

static int enqueue(eventer_jobq_t *q, eventer_t e, uint64_t id, int try,
                   int dep) {
  if (!e || !e->callback || e->acofd_flags) { /* an aco event is an fd event */
    errno = EINVAL;
    return -1;
  }
  if (!q) q = EV_LOAD(&default_q);
  if (!q) {
    errno = ENXIO;
    return -1;
  }
  if (q->is_backq) {
    /* libmtev's back queue runs the event's callback with its mask on its
     * loop: exactly a trigger */
    return eventer_trigger_ex(e, e->mask);
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
  e->dep_pending = 1;
  e->dep_parent = NULL;
  pthread_mutex_lock(&q->lock);
  if (q->stopping || q->draining ||
      (try && q->max_backlog && q->backlog >= q->max_backlog)) {
    int refused = q->stopping || q->draining;
    pthread_mutex_unlock(&q->lock);
    EV_STORE(&e->state, EV_ST_NONE);
    errno = refused ? ESHUTDOWN : EAGAIN;
    return -1;
  }
  ev_subq_t *s = subq_get(q, id);
  if (!s) {
    pthread_mutex_unlock(&q->lock);
    EV_STORE(&e->state, EV_ST_NONE);
    errno = ENOMEM;
    return -1;
  }
  /* a dependent of the job running on this thread: that job's COMPLETE
   * now waits for this one (it cannot have finished: we are in it) */
  if (dep && tls_job && tls_job->e) {
    e->dep_parent = tls_job->e;
    __atomic_add_fetch(&tls_job->e->dep_pending, 1, __ATOMIC_ACQ_REL);
  }
  subq_push(q, s, e);
  __atomic_add_fetch(&q->refs, 1, __ATOMIC_RELAXED); /* the job's */
  q->enq_cpu = ev_cpu_self();
  /* a spinning thread picks up a job without a wake-up (a syscall here,
   * a scheduler wake-up there); a sleeping one is woken for the rest */
  int wake = q->nidle > q->nspinning && q->backlog > q->nspinning;
  if (wake && !q->nspinning)
    ev_spin_slept(&q->spin, 1, eventer_mono_ns() - q->idle_since, 0);
  grow(q);
  if (!wake) {
    pthread_mutex_unlock(&q->lock);
    return 0;
  }
  /* Signal after the unlock: a thread woken on this CPU would otherwise
   * preempt us only to block on the lock we hold.  The reference keeps q
   * alive until the signal even if the job completes (and a destroy runs)
   * in between. */
  __atomic_add_fetch(&q->refs, 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&q->lock);
  pthread_cond_signal(&q->cond);
  ev_jobq_release(q);
  return 0;
}

int eventer_add_asynch_ex(eventer_jobq_t *q, eventer_t e) {
  return enqueue(q, e, 0, 0, 0);
}
int eventer_add_asynch_subqueue_ex(eventer_jobq_t *q, eventer_t e, uint64_t id) {
  return enqueue(q, e, id, 0, 0);
}
int eventer_add_asynch_dep_ex(eventer_jobq_t *q, eventer_t e) {
  return enqueue(q, e, 0, 0, 1);
}
int eventer_add_asynch_dep_subqueue_ex(eventer_jobq_t *q, eventer_t e,
                                       uint64_t id) {
  return enqueue(q, e, id, 0, 1);
}

static void log_add_failed(const char *call, eventer_t e) {
  int saved = errno;
  mtevL(eventer_err, "eventer: %s(%p, callback %s) failed: %s\n", call,
        (void *)e, e ? eventer_name_for_callback(e->callback) : "-",
        strerror(saved));
  errno = saved;
}

void eventer_add_asynch(eventer_jobq_t *q, eventer_t e) {
  if (enqueue(q, e, 0, 0, 0) != 0) log_add_failed("eventer_add_asynch", e);
}
void eventer_add_asynch_subqueue(eventer_jobq_t *q, eventer_t e, uint64_t id) {
  if (enqueue(q, e, id, 0, 0) != 0)
    log_add_failed("eventer_add_asynch_subqueue", e);
}
void eventer_add_asynch_dep(eventer_jobq_t *q, eventer_t e) {
  if (enqueue(q, e, 0, 0, 1) != 0) log_add_failed("eventer_add_asynch_dep", e);
}
void eventer_add_asynch_dep_subqueue(eventer_jobq_t *q, eventer_t e,
                                     uint64_t id) {
  if (enqueue(q, e, id, 0, 1) != 0)
    log_add_failed("eventer_add_asynch_dep_subqueue", e);
}

mtev_boolean eventer_try_add_asynch(eventer_jobq_t *q, eventer_t e) {
  return enqueue(q, e, 0, 1, 0) == 0 ? mtev_true : mtev_false;
}
mtev_boolean eventer_try_add_asynch_subqueue(eventer_jobq_t *q, eventer_t e,
                                             uint64_t id) {
  return enqueue(q, e, id, 1, 0) == 0 ? mtev_true : mtev_false;
}
mtev_boolean eventer_try_add_asynch_dep(eventer_jobq_t *q, eventer_t e) {
  return enqueue(q, e, 0, 1, 1) == 0 ? mtev_true : mtev_false;
}
mtev_boolean eventer_try_add_asynch_dep_subqueue(eventer_jobq_t *q,
                                                 eventer_t e, uint64_t id) {
  return enqueue(q, e, id, 1, 1) == 0 ? mtev_true : mtev_false;
}
