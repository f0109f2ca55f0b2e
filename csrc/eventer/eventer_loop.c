/*
 * eventer_loop.c - loops, pools and threads; one iteration
 * (eventer_run_once) with its phases, dispatch and the application of a
 * callback's return value; tasks; the cross-thread queue; init, attach,
 * shutdown and teardown.
 *
 * The iteration is a resumable state machine (struct eventer_loop.phase
 * and the cursors next to it) so that run_once can stop in the middle,
 * hand a foreign callback or an emitted step to its driver, and continue
 * from the same place on the next call.  Every phase loop advances its
 * cursor *before* dispatching, so a pause never repeats or skips work.
 */
#include "eventer_impl.h"
#include "eventer_aco_impl.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- global state --------------------------------------------------------------- */

static struct {
  int initialized;          /* __atomic: 1 between init and fini */
  int external;             /* init without threads */
  uint64_t epoch;           /* __atomic: bumped by fini, invalidates TLS */
  eventer_pool_t **pools;   /* pools[0] is "default" */
  int npools;
  ev_loop_t *loop0;         /* default pool, loop 0 */
  pthread_mutex_t start_lock; /* held while threads are created */
  /* loop 0's thread waits for eventer_loop() / eventer_loop_return()
   * (or a shutdown) before its first iteration */
  pthread_t init_thread;    /* the eventer_init() caller */
  int go;                   /* under start_lock */
  pthread_cond_t go_cond;
  /* held by eventer_shutdown while it walks the loops, and by eventer_fini
   * while it frees them: a shutdown from another thread that races with
   * the teardown must not touch freed loops */
  pthread_mutex_t life_lock;
  struct timeval started;   /* wall clock at eventer_init (get_epoch) */
  /* the watchdog monitor (a thread, while any pool has a timeout) */
  pthread_t wd_thread;
  int wd_running;           /* under wd_lock */
  int wd_stop;              /* under wd_lock */
  pthread_mutex_t wd_lock;
  pthread_cond_t wd_cond;
} G = {.epoch = 1, .start_lock = PTHREAD_MUTEX_INITIALIZER,
       .go_cond = PTHREAD_COND_INITIALIZER,
       .life_lock = PTHREAD_MUTEX_INITIALIZER,
       .wd_lock = PTHREAD_MUTEX_INITIALIZER};

/* settings, before init (eventer_impl_propset) */
static int cfg_concurrency;          /* 0: CPUs online */
static int cfg_default_queue_threads; /* 0: max(4, CPUs) */
static uint64_t cfg_default_wd_ns;   /* loop_default's watchdog */
static struct cfg_pool {
  char *name;
  int n;
  uint64_t wd_ns;                    /* watchdog timeout, 0: none */
} *cfg_pools;
static int ncfg_pools;
static struct cfg_jobq {             /* jobq_<name>, created at init */
  char *name;
  uint32_t concurrency, min, max, backlog;
  int has_min, has_max, has_backlog;
  int safety;                        /* eventer_jobq_memory_safety_t, -1: unset */
  int lifo;                          /* -1: the default ordering */
} *cfg_jobqs;
static int ncfg_jobqs;
static int cfg_default_lifo;         /* default_jobq_ordering */
static long long cfg_rlim_nofiles;   /* 0: unset */
static char *cfg_ca_chain;           /* default_ca_chain */
static uint64_t cfg_loop_slow_ns;    /* show_loop_callbacks_threshold */
static uint64_t cfg_jobq_slow_ns;    /* show_jobq_callbacks_threshold */
#define EV_SPIN_DEFAULT_NS 50000u
static uint32_t cfg_spin_max_ns = EV_SPIN_DEFAULT_NS; /* spin_us */

struct timeval eventer_max_sleeptime = {0, 200000}; /* libmtev's 200 ms */

static __thread ev_loop_t *tls_loop;
static __thread uint64_t tls_epoch;

static int ncpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

int ev_initialized(void) { return EV_LOAD(&G.initialized); }

ev_loop_t *ev_loop_self(void) {
  /* A thread bound before the last eventer_fini() holds a dangling loop
   * pointer; the epoch tells it apart from a live binding. */
  if (tls_loop && tls_epoch == EV_LOAD_RELAXED(&G.epoch)) return tls_loop;
  return NULL;
}

ev_loop_t *ev_default_loop(void) {
  return EV_LOAD(&G.initialized) ? G.loop0 : NULL;
}

static void bind_self(ev_loop_t *l) {
  tls_loop = l;
  tls_epoch = EV_LOAD_RELAXED(&G.epoch);
}

ev_loop_t *ev_loop_by_thread(pthread_t t) {
  if (!EV_LOAD(&G.initialized)) return NULL;
  for (int p = 0; p < G.npools; p++)
    for (int i = 0; i < G.pools[p]->concurrency; i++) {
      ev_loop_t *l = G.pools[p]->loops[i];
      if (EV_LOAD(&l->bound) && pthread_equal(EV_LOAD(&l->thread), t)) return l;
    }
  return NULL;
}

/* ---- settings ----------------------------------------------------------------------- */

static int parse_count(const char *v, int *out) {
  char *end;
  errno = 0;
  long n = v ? strtol(v, &end, 10) : 0;
  if (!v || errno || end == v || *end || n < 1 || n > 4096) return -1;
  *out = (int)n;
  return 0;
}

/* A non-negative number, optionally fractional (seconds, milliseconds):
 * its value times `scale`, in [0, 2^62). */
static int parse_scaled(const char *v, double scale, uint64_t *out) {
  char *end;
  errno = 0;
  double d = v ? strtod(v, &end) : 0;
  if (!v || errno || end == v || *end || !(d >= 0) || d * scale >= 4.6e18)
    return -1;
  *out = (uint64_t)llround(d * scale);
  return 0;
}

/* An unsigned 32-bit field; "" keeps *out (and *given). */
static int parse_u32_field(const char *v, uint32_t *out, int *given) {
  if (!*v) return 0;
  char *end;
  errno = 0;
  unsigned long n = strtoul(v, &end, 10);
  if (errno || end == v || *end || *v == '-' || n > UINT32_MAX) return -1;
  *out = (uint32_t)n;
  if (given) *given = 1;
  return 0;
}

static int parse_ordering(const char *v, int *lifo) {
  if (!strcasecmp(v, "lifo")) *lifo = 1;
  else if (!strcasecmp(v, "fifo")) *lifo = 0;
  else return -1;
  return 0;
}

/* "concurrency[,min[,max[,safety[,backlog[,lifo|fifo]]]]]" */
static int parse_jobq(const char *value, struct cfg_jobq *q) {
  char buf[256];
  if (!value || strlen(value) >= sizeof(buf)) return -1;
  strcpy(buf, value);
  q->concurrency = 1;
  q->safety = -1;
  q->lifo = -1;
  int field = 0;
  char *p = buf; /* by hand: strtok would skip the empty fields */
  for (;;) {
    char *comma = strchr(p, ',');
    if (comma) *comma = '\0';
    while (*p == ' ') p++;
    size_t len = strlen(p);
    while (len && p[len - 1] == ' ') p[--len] = '\0';
    int given = 0;
    switch (field) {
    case 0:
      if (parse_u32_field(p, &q->concurrency, &given) || (given && !q->concurrency))
        return -1;
      break;
    case 1: if (parse_u32_field(p, &q->min, &q->has_min)) return -1; break;
    case 2: if (parse_u32_field(p, &q->max, &q->has_max)) return -1; break;
    case 3:
      if (!*p) break;
      if (!strcasecmp(p, "none")) q->safety = EVENTER_JOBQ_MS_NONE;
      else if (!strcasecmp(p, "cs")) q->safety = EVENTER_JOBQ_MS_CS;
      else if (!strcasecmp(p, "gc")) q->safety = EVENTER_JOBQ_MS_GC;
      else return -1;
      break;
    case 4: if (parse_u32_field(p, &q->backlog, &q->has_backlog)) return -1; break;
    case 5: if (*p && parse_ordering(p, &q->lifo)) return -1; break;
    default: return -1; /* too many fields */
    }
    field++;
    if (!comma) break;
    p = comma + 1;
  }
  if (q->has_min && q->has_max && q->max && q->min > q->max) return -1;
  return 0;
}

/* Adds or replaces the named entry of a settings array. */
#define CFG_UPSERT(arr, n, key, entry)                                       \
  do {                                                                       \
    int found_ = -1;                                                         \
    for (int i_ = 0; i_ < (n); i_++)                                         \
      if (!strcmp((arr)[i_].name, (key))) found_ = i_;                       \
    if (found_ >= 0) {                                                       \
      (entry).name = (arr)[found_].name;                                     \
      (arr)[found_] = (entry);                                               \
      return 0;                                                              \
    }                                                                        \
    void *np_ = realloc((arr), (size_t)((n) + 1) * sizeof(*(arr)));          \
    char *name_ = strdup(key);                                               \
    if (!np_ || !name_) {                                                    \
      if (np_) (arr) = np_;                                                  \
      free(name_);                                                           \
      errno = ENOMEM;                                                        \
      return -1;                                                             \
    }                                                                        \
    (arr) = np_;                                                             \
    (entry).name = name_;                                                    \
    (arr)[(n)++] = (entry);                                                  \
    return 0;                                                                \
  } while (0)

/* "N[,watchdog_timeout]" */
static int parse_loop(const char *value, int *n, uint64_t *wd_ns) {
  char buf[64];
  if (!value || strlen(value) >= sizeof(buf)) return -1;
  strcpy(buf, value);
  char *comma = strchr(buf, ',');
  *wd_ns = 0;
  if (comma) {
    *comma = '\0';
    if (parse_scaled(comma + 1, 1e9, wd_ns) != 0) return -1;
  }
  return parse_count(buf, n);
}

int (*ev_cfg_ssl_hook)(const char *key, const char *value);

/* 0: set; -1/EINVAL bad value; 1: not a key of ours. */
static int propset(const char *key, const char *value) {
  if (!value) return -1;
  int n;
  uint64_t u;
  if (!strcmp(key, "concurrency")) {
    if (parse_count(value, &n) != 0) return -1;
    cfg_concurrency = n;
    return 0;
  }
  if (!strcmp(key, "default_queue_threads")) {
    if (parse_count(value, &n) != 0) return -1;
    cfg_default_queue_threads = n;
    return 0;
  }
  if (!strncmp(key, "loop_", 5) && key[5]) {
    if (parse_loop(value, &n, &u) != 0) return -1;
    if (!strcmp(key + 5, "default")) {
      cfg_concurrency = n;
      cfg_default_wd_ns = u;
      return 0;
    }
    struct cfg_pool entry = {NULL, n, u};
    CFG_UPSERT(cfg_pools, ncfg_pools, key + 5, entry);
  }
  if (!strncmp(key, "jobq_", 5) && key[5]) {
    struct cfg_jobq entry;
    memset(&entry, 0, sizeof(entry));
    if (parse_jobq(value, &entry) != 0) return -1;
    CFG_UPSERT(cfg_jobqs, ncfg_jobqs, key + 5, entry);
  }
  if (!strcmp(key, "default_jobq_ordering"))
    return parse_ordering(value, &cfg_default_lifo);
  if (!strcmp(key, "rlim_nofiles")) {
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end || v < 1) return -1;
    cfg_rlim_nofiles = v;
    return 0;
  }
  if (!strcmp(key, "default_ca_chain")) {
    char *copy = strdup(value);
    if (!copy) {
      errno = ENOMEM;
      return -1;
    }
    free(cfg_ca_chain);
    cfg_ca_chain = copy;
    return 0;
  }
  if (!strcmp(key, "spin_us")) {
    /* the longest a loop or job thread spins before it sleeps (0: never);
     * at most 10 ms, past which a sleep is the cheaper wait anyway */
    if (parse_scaled(value, 1e3, &u) != 0 || u > 10000000u) return -1;
    cfg_spin_max_ns = (uint32_t)u;
    return 0;
  }
  if (!strcmp(key, "show_loop_callbacks_threshold"))
    return parse_scaled(value, 1e6, &cfg_loop_slow_ns);
  if (!strcmp(key, "show_jobq_callbacks_threshold"))
    return parse_scaled(value, 1e6, &cfg_jobq_slow_ns);
  /* libmtev hands its ssl_* keys to eventer_ssl_config */
  if (!strncmp(key, "ssl_", 4) && ev_cfg_ssl_hook) return ev_cfg_ssl_hook(key, value);
  return 1;
}

static int propset_common(const char *key, const char *value, int strict) {
  if (!key) {
    errno = EINVAL;
    return -1;
  }
  if (EV_LOAD(&G.initialized)) {
    errno = EBUSY;
    return -1;
  }
  errno = 0;
  int rc = propset(key, value);
  if (rc < 0) {
    if (errno != ENOMEM) errno = EINVAL;
    return -1;
  }
  if (rc == 1) {
    if (strict) {
      errno = ENOENT;
      return -1;
    }
    mtevL(eventer_err, "eventer: warning: unknown eventer config key '%s'"
          " ignored\n", key);
  }
  return 0;
}

int eventer_impl_propset(const char *key, const char *value) {
  return propset_common(key, value, 0);
}

int eventer_impl_propset_ex(const char *key, const char *value) {
  return propset_common(key, value, 1);
}

int ev_cfg_default_lifo(void) { return cfg_default_lifo; }
uint64_t ev_cfg_jobq_slow_ns(void) { return cfg_jobq_slow_ns; }
const char *ev_cfg_default_ca_chain(void) { return cfg_ca_chain; }
uint32_t ev_cfg_spin_max_ns(void) { return cfg_spin_max_ns; }

int ev_cpu_self(void) { return sched_getcpu(); }

static void cfg_reset(void) {
  for (int i = 0; i < ncfg_pools; i++) free(cfg_pools[i].name);
  free(cfg_pools);
  cfg_pools = NULL;
  ncfg_pools = 0;
  for (int i = 0; i < ncfg_jobqs; i++) free(cfg_jobqs[i].name);
  free(cfg_jobqs);
  cfg_jobqs = NULL;
  ncfg_jobqs = 0;
  cfg_concurrency = 0;
  cfg_default_queue_threads = 0;
  cfg_default_wd_ns = 0;
  cfg_default_lifo = 0;
  cfg_rlim_nofiles = 0;
  free(cfg_ca_chain);
  cfg_ca_chain = NULL;
  cfg_loop_slow_ns = cfg_jobq_slow_ns = 0;
  cfg_spin_max_ns = EV_SPIN_DEFAULT_NS;
}

int eventer_impl_setrlimit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  rlim_t want = cfg_rlim_nofiles ? (rlim_t)cfg_rlim_nofiles : 1048576;
  if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max) want = rl.rlim_max;
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur < want) {
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      mtevL(eventer_err, "eventer: setrlimit(RLIMIT_NOFILE, %llu): %s\n",
            (unsigned long long)want, strerror(errno));
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  }
  return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT_MAX
             ? INT_MAX
             : (int)rl.rlim_cur;
}

int eventer_choose(const char *name) {
  if (name && !strcmp(name, "epoll")) return 0;
  errno = EINVAL;
  return -1;
}

void eventer_init_globals(void) {}

/* ---- construction ------------------------------------------------------------------------ */

static ev_loop_t *loop_new(eventer_pool_t *pool, int index) {
  ev_loop_t *l = calloc(1, sizeof(*l));
  if (!l) return NULL;
  l->pool = pool;
  l->index = index;
  snprintf(l->name, sizeof(l->name), "%s/%d", pool->name, index);
  snprintf(l->thread_name, sizeof(l->thread_name), "e:%s", l->name);
  pthread_mutex_init(&l->inbox_lock, NULL);
  l->push_cpu = -1;
  l->pass_q.next = l->pass_q.prev = &l->pass_q;
  l->pass_run.next = l->pass_run.prev = &l->pass_run;
  if (ev_poll_open(l) != 0) {
    int saved = errno;
    pthread_mutex_destroy(&l->inbox_lock);
    free(l);
    errno = saved;
    return NULL;
  }
  return l;
}

static void loop_free(ev_loop_t *l) {
  ev_heap_free(l);
  ev_poll_close(l);
  pthread_mutex_destroy(&l->inbox_lock);
  free(l);
}

static eventer_pool_t *pool_new(const char *name, int n, int index,
                                uint64_t wd_ns) {
  eventer_pool_t *p = calloc(1, sizeof(*p));
  if (!p) return NULL;
  p->name = strdup(name);
  p->index = index;
  p->watchdog_ns = wd_ns;
  p->loops = calloc((size_t)n, sizeof(*p->loops));
  if (!p->name || !p->loops) goto fail;
  for (int i = 0; i < n; i++) {
    p->loops[i] = loop_new(p, i);
    if (!p->loops[i]) goto fail;
    p->concurrency = i + 1;
  }
  return p;
fail: {
  int saved = errno ? errno : ENOMEM;
  for (int i = 0; i < p->concurrency; i++) loop_free(p->loops[i]);
  free(p->loops);
  free(p->name);
  free(p);
  errno = saved;
  return NULL;
}
}

static void pool_free(eventer_pool_t *p) {
  for (int i = 0; i < p->concurrency; i++) loop_free(p->loops[i]);
  free(p->loops);
  free(p->name);
  free(p);
}

static void *loop_thread_main(void *arg) {
  ev_loop_t *l = arg;
  /* wait until eventer_init (or eventer_loop_return) has recorded the
   * thread id */
  pthread_mutex_lock(&G.start_lock);
  while (l == G.loop0 && !G.go && !EV_LOAD(&l->stop))
    pthread_cond_wait(&G.go_cond, &G.start_lock);
  pthread_mutex_unlock(&G.start_lock);
  bind_self(l);
  char tname[16]; /* the kernel keeps 15 bytes */
  snprintf(tname, sizeof(tname), "%.15s", l->thread_name);
  pthread_setname_np(pthread_self(), tname);
  for (;;) {
    int rc = eventer_run_once(NULL, NULL);
    if (rc == EVENTER_RUN_STOPPED) break;
    EV_ASSERT(rc >= 0, "run_once on a loop thread of its own never fails");
  }
  tls_loop = NULL;
  return NULL;
}

/* Starts l's thread (G.start_lock held: the thread waits for it, so it
 * never runs before l->thread is recorded). */
static void spawn_loop(ev_loop_t *l) {
  pthread_t tid;
  int rc = pthread_create(&tid, NULL, loop_thread_main, l);
  /* Without its thread a loop would silently never run its events. */
  if (rc != 0)
    mtevFatal(mtev_error, "eventer: cannot start loop thread %s: %s\n",
              l->name, strerror(rc));
  EV_STORE(&l->thread, tid);
  l->spawned = 1;
  l->claimed = 1;
  EV_STORE(&l->bound, 1);
}

/* The queues named by jobq_<name> settings. */
static int jobqs_from_cfg(void) {
  for (int i = 0; i < ncfg_jobqs; i++) {
    struct cfg_jobq *c = &cfg_jobqs[i];
    eventer_jobq_t *q =
        c->safety >= 0
            ? eventer_jobq_create_ms(c->name, (eventer_jobq_memory_safety_t)c->safety)
            : eventer_jobq_create(c->name);
    if (!q) {
      mtevL(eventer_err, "eventer: cannot create job queue %s: %s\n", c->name,
            strerror(errno));
      return -1;
    }
    if (c->has_min || c->has_max) {
      uint32_t mn, mx;
      eventer_jobq_get_min_max(q, &mn, &mx);
      eventer_jobq_set_min_max(q, c->has_min ? c->min : mn,
                               c->has_max ? c->max : mx);
    }
    eventer_jobq_set_concurrency(q, c->concurrency);
    if (c->has_backlog) eventer_jobq_set_max_backlog(q, c->backlog);
    if (c->lifo >= 0) eventer_jobq_set_lifo(q, c->lifo ? mtev_true : mtev_false);
  }
  return 0;
}

static void watchdog_start_if_needed(void);
static void watchdog_stop(void);

static int init_common(int external) {
  if (EV_LOAD(&G.initialized)) {
    errno = EALREADY;
    return -1;
  }
  mtev_log_init_env();
  /* before the program's or our first TLS call allocates (see there) */
  ev_ssl_mem_install();
  int npools = 1 + ncfg_pools;
  G.pools = calloc((size_t)npools, sizeof(*G.pools));
  if (!G.pools) return -1;
  G.npools = 0;
  int n0 = cfg_concurrency ? cfg_concurrency : ncpus();
  for (int p = 0; p < npools; p++) {
    const char *name = p == 0 ? "default" : cfg_pools[p - 1].name;
    int n = p == 0 ? n0 : cfg_pools[p - 1].n;
    uint64_t wd = p == 0 ? cfg_default_wd_ns : cfg_pools[p - 1].wd_ns;
    G.pools[p] = pool_new(name, n, p, wd);
    if (!G.pools[p]) goto fail;
    G.npools = p + 1;
  }
  G.loop0 = G.pools[0]->loops[0];
  G.external = external;
  int qthreads = cfg_default_queue_threads;
  if (!qthreads) qthreads = ncpus() > 4 ? ncpus() : 4;

  if (cfg_rlim_nofiles) eventer_impl_setrlimit();
  ev_wall_tv(&G.started);

  pthread_mutex_lock(&G.start_lock);
  EV_STORE(&G.initialized, 1);
  if (ev_jobq_init_default(qthreads) != 0 || jobqs_from_cfg() != 0) {
    pthread_mutex_unlock(&G.start_lock);
    EV_STORE(&G.initialized, 0);
    ev_jobq_fini_all();
    goto fail;
  }
  if (!external) {
    /* Every loop gets its own thread now; loop 0's waits for eventer_loop()
     * or eventer_loop_return() (events added meanwhile wait in its queues). */
    G.init_thread = pthread_self();
    G.go = 0;
    for (int p = 0; p < G.npools; p++)
      for (int i = 0; i < G.pools[p]->concurrency; i++)
        spawn_loop(G.pools[p]->loops[i]);
  }
  pthread_mutex_unlock(&G.start_lock);
  watchdog_start_if_needed();
  mtevL(eventer_deb, "eventer: initialized (%d pools, %d loops in default,"
        " %s)\n", G.npools, n0, external ? "external drivers" : "own threads");
  return 0;
fail: {
  int saved = errno ? errno : ENOMEM;
  for (int p = 0; p < G.npools; p++) pool_free(G.pools[p]);
  free(G.pools);
  G.pools = NULL;
  G.npools = 0;
  G.loop0 = NULL;
  errno = saved;
  return -1;
}
}

int eventer_init(void) { return init_common(0); }
int eventer_init_external(void) { return init_common(1); }

/* ---- attach / detach ------------------------------------------------------------------------ */

int eventer_pool_loop_attach(eventer_pool_t *pool, int loop_index) {
  if (!EV_LOAD(&G.initialized)) {
    errno = ENXIO;
    return -1;
  }
  if (!pool || loop_index < 0 || loop_index >= pool->concurrency) {
    errno = EINVAL;
    return -1;
  }
  if (ev_loop_self()) {
    errno = EBUSY;
    return -1;
  }
  ev_loop_t *l = pool->loops[loop_index];
  int expect = 0;
  if (!__atomic_compare_exchange_n(&l->claimed, &expect, 1, 0,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    errno = EBUSY;
    return -1;
  }
  EV_STORE(&l->thread, pthread_self());
  EV_STORE(&l->bound, 1); /* after `thread`: readers check bound first */
  bind_self(l);
  return 0;
}

int eventer_loop_attach(int loop_index) {
  return eventer_pool_loop_attach(EV_LOAD(&G.initialized) ? G.pools[0] : NULL,
                                  loop_index);
}

int eventer_loop_detach(void) {
  ev_loop_t *l = ev_loop_self();
  if (!l || l->in_run_once || l->spawned) {
    errno = EINVAL;
    return -1;
  }
  tls_loop = NULL;
  EV_STORE(&l->bound, 0);
  EV_STORE(&l->claimed, 0);
  return 0;
}

/* ---- queues ----------------------------------------------------------------------------------- */

void ev_inbox_push(ev_loop_t *l, eventer_task_t *t) {
  t->next = NULL;
  pthread_mutex_lock(&l->inbox_lock);
  if (l->inbox_tail)
    l->inbox_tail->next = t;
  else
    l->inbox_head = t;
  l->inbox_tail = t;
  /* seq_cst: the loop stores SLEEPING and then reads this; we store this
   * and then read its state (below), so one of us sees the other */
  __atomic_store_n(&l->inbox_nonempty, 1, __ATOMIC_SEQ_CST);
  pthread_mutex_unlock(&l->inbox_lock);
  /* where the other side of a hand-off runs: the loop does not spin for
   * a pusher on its own CPU (ev_spin_t) */
  if (ev_loop_self() != l)
    __atomic_store_n(&l->push_cpu, ev_cpu_self(), __ATOMIC_RELAXED);
  if (__atomic_load_n(&l->wake_always, __ATOMIC_SEQ_CST)) {
    ev_poll_wake(l);
    return;
  }
  /* An awake or spinning loop sees the queue before it blocks: no
   * syscall.  Of the pushers that find it asleep, the one that moves it
   * to WOKEN writes the eventfd; the loop drains the whole queue at once,
   * so the others need not. */
  int st = __atomic_load_n(&l->wake_state, __ATOMIC_SEQ_CST);
  if (st != EV_WS_SLEEPING) return;
  /* when the work arrived: what the loop learns its spin budget from */
  __atomic_store_n(&l->woken_at_ns, eventer_mono_ns(), __ATOMIC_RELAXED);
  if (__atomic_compare_exchange_n(&l->wake_state, &st, EV_WS_WOKEN, 0,
                                  __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
    ev_poll_wake(l);
}

void ev_fifo_push(ev_loop_t *l, eventer_task_t *t) {
  t->next = NULL;
  if (l->fifo_tail)
    l->fifo_tail->next = t;
  else
    l->fifo_head = t;
  l->fifo_tail = t;
  l->fifo_len++;
}

static eventer_task_t *fifo_pop(ev_loop_t *l) {
  eventer_task_t *t = l->fifo_head;
  if (!t) return NULL;
  l->fifo_head = t->next;
  if (!l->fifo_head) l->fifo_tail = NULL;
  l->fifo_len--;
  t->next = NULL;
  return t;
}

int ev_fifo_unlink(ev_loop_t *l, eventer_task_t *t) {
  eventer_task_t *prev = NULL, *cur = l->fifo_head;
  size_t pos = 0;
  while (cur && cur != t) {
    prev = cur;
    cur = cur->next;
    pos++;
  }
  if (!cur) return 0;
  if (prev)
    prev->next = cur->next;
  else
    l->fifo_head = cur->next;
  if (l->fifo_tail == cur) l->fifo_tail = prev;
  l->fifo_len--;
  cur->next = NULL;
  /* It may have been among the tasks this task phase still has to run. */
  if (l->phase == EV_PH_TASKS && pos < l->tasks_left) l->tasks_left--;
  return 1;
}

/* Takes the cross-thread queue (owner thread). */
static eventer_task_t *inbox_take(ev_loop_t *l) {
  pthread_mutex_lock(&l->inbox_lock);
  eventer_task_t *list = l->inbox_head;
  l->inbox_head = l->inbox_tail = NULL;
  EV_STORE(&l->inbox_nonempty, 0);
  pthread_mutex_unlock(&l->inbox_lock);
  return list;
}

/* Applies the cross-thread queue in the order it was posted.  An applied
 * message may drain again (a remove of an event whose add is queued): that
 * nested drain first goes on with what this one took, so nothing posted
 * later overtakes it. */
void ev_inbox_drain(ev_loop_t *l) {
  if (!l->draining) {
    if (!EV_LOAD(&l->inbox_nonempty)) return;
    l->draining = inbox_take(l);
  } else if (EV_LOAD(&l->inbox_nonempty)) {
    eventer_task_t *tail = l->draining;
    while (tail->next) tail = tail->next;
    tail->next = inbox_take(l);
  }
  while (l->draining) {
    eventer_task_t *t = l->draining;
    l->draining = t->next;
    t->next = NULL;
    /* Registration changes apply now, so that a timer added from another
     * thread is on the heap before this iteration's timer phase; anything
     * that runs a callback or user code waits for the task phase. */
    if (t->run == ev_xop_run || t->run == ev_xmsg_run)
      t->run(t, &l->now);
    else
      ev_fifo_push(l, t);
  }
}

int ev_inbox_take(ev_loop_t *l, eventer_task_t *t) {
  /* what is still in the inbox comes after what a drain is applying */
  if (EV_LOAD(&l->inbox_nonempty)) {
    eventer_task_t *more = inbox_take(l), **tail = &l->draining;
    while (*tail) tail = &(*tail)->next;
    *tail = more;
  }
  for (eventer_task_t **p = &l->draining; *p; p = &(*p)->next)
    if (*p == t) {
      *p = t->next;
      t->next = NULL;
      return 1;
    }
  return 0;
}

int eventer_task_post(eventer_task_t *t) {
  ev_loop_t *l = ev_loop_self();
  if (!l || !t || !t->run) {
    errno = EINVAL;
    return -1;
  }
  ev_fifo_push(l, t);
  return 0;
}

int eventer_task_post_to(eventer_loop_t *loop, eventer_task_t *t) {
  if (!loop || !t || !t->run) {
    errno = EINVAL;
    return -1;
  }
  ev_inbox_push(loop, t);
  return 0;
}

/* ---- end-of-pass hooks ---------------------------------------------------------------------- */

static inline int pass_list_empty(const ev_pass_hook_t *sentinel) {
  return sentinel->next == sentinel;
}

static void pass_unlink(ev_pass_hook_t *h) {
  h->prev->next = h->next;
  h->next->prev = h->prev;
  h->next = h->prev = NULL;
  h->loop = NULL;
}

int ev_pass_hook_post(ev_pass_hook_t *h) {
  ev_loop_t *l = ev_loop_self();
  if (!l || !h || !h->run || (h->loop && h->loop != l)) {
    errno = EINVAL;
    return -1;
  }
  if (h->loop) return 0;
  /* the iteration's clock; between iterations (a post from outside the
   * loop's run) that clock is old: read it */
  if (pass_list_empty(&l->pass_q))
    l->pass_since_ns = l->phase == EV_PH_START ? eventer_mono_ns() : l->timers_now_ns;
  h->loop = l;
  h->next = &l->pass_q;
  h->prev = l->pass_q.prev;
  l->pass_q.prev->next = h;
  l->pass_q.prev = h;
  return 0;
}

int ev_pass_hook_cancel(ev_pass_hook_t *h) {
  if (!h || !h->loop) return 0;
  EV_ASSERT(h->loop == ev_loop_self(), "an end-of-pass hook is cancelled on "
                                       "its loop's thread");
  pass_unlink(h);
  return 1;
}

/* Is the pass over for the queued hooks?  2: nothing else to do now (or
 * the loop stops), 1: the oldest has waited EV_PASS_MAX_NS, 0: no. */
static inline int must_return(ev_loop_t *l);
static int64_t sleep_for_ns(ev_loop_t *l, uint64_t unit);
static int pass_over(ev_loop_t *l) {
  if (EV_LOAD(&l->stop)) return 2;
  int aged = l->timers_now_ns - l->pass_since_ns >= EV_PASS_MAX_NS;
  if (l->fifo_len > 0 || l->draining || EV_LOAD_RELAXED(&l->inbox_nonempty))
    return aged;
  return sleep_for_ns(l, 1000000u) != 0 ? 2 : aged;
}

/* The poll phase's hooks: the batch queued when the pass ended (hooks
 * posted while it runs wait for the next end).  1 when run_once must
 * return (a hook used the step); the rest of the batch runs when the
 * iteration resumes. */
static int pass_hooks_run(ev_loop_t *l) {
  if (pass_list_empty(&l->pass_run)) {
    int over = pass_list_empty(&l->pass_q) ? 0 : pass_over(l);
    if (!over) return 0;
    l->pass_idle = over == 2;
    /* the whole queue becomes the batch */
    l->pass_run.next = l->pass_q.next;
    l->pass_run.prev = l->pass_q.prev;
    l->pass_run.next->prev = &l->pass_run;
    l->pass_run.prev->next = &l->pass_run;
    l->pass_q.next = l->pass_q.prev = &l->pass_q;
  }
  while (!pass_list_empty(&l->pass_run)) {
    ev_pass_hook_t *h = l->pass_run.next;
    pass_unlink(h);
    h->run(h, l->pass_idle);
    if (must_return(l)) return 1;
  }
  return 0;
}

/* ---- dispatch ------------------------------------------------------------------------------- */

static void finish(ev_loop_t *l, eventer_t e, int mask, int kind, int rv);

/* The fd phase reads the wall clock when the first callback needs it, not
 * when epoll_wait returns: a coroutine resumed by dispatch_aco_fd is
 * handed no `now`, and reads it only if it asks
 * (eventer_gettimeofcallback). */
const struct timeval *ev_loop_now(ev_loop_t *l) {
  if (l->now_stale) {
    ev_wall_tv(&l->now);
    l->now_stale = 0;
  }
  return &l->now;
}

void ev_dispatch(ev_loop_t *l, eventer_t e, int mask, int kind) {
  EV_ASSERT(l && l == ev_loop_self(), "events are dispatched on their owner"
                                      " loop's thread");
  ev_loop_now(l);
  EV_ASSERT(l->current == NULL, "callbacks never nest: a dispatch starts"
                                " only between callbacks");
  /* The loop's hold: the callback may remove and free e (or other events
   * may free it) without the memory going away under us. */
  __atomic_add_fetch(&e->refcnt, 1, __ATOMIC_RELAXED);
  l->current = e;
  if (l->step && eventer_callback_is_foreign(e->callback)) {
    /* Hand the call to the driver; our hold becomes the driver's
     * reference until it brings the return value back. */
    eventer_step_t *s = l->step;
    s->kind = EVENTER_STEP_CALLBACK;
    s->e = e;
    s->mask = mask;
    s->closure = e->closure;
    s->now = l->now;
    s->rv = 0;
    l->step_used = 1;
    l->paused.e = e;
    l->paused.mask = mask;
    l->paused.kind = kind;
    return;
  }
  struct timeval now = l->now;
  mtevL(eventer_deb, "eventer: %s dispatch %s mask 0x%x fd %d\n", l->name,
        eventer_name_for_callback(e->callback), mask, e->fd);
  if (EV_LOAD_RELAXED(&l->pool->watchdog_ns))
    EV_STORE(&l->busy_cb, e->callback);
  uint64_t t0 = cfg_loop_slow_ns ? eventer_mono_ns() : 0;
  int rv = eventer_run_callback(e, mask, e->closure, &now);
  if (t0) {
    uint64_t took = eventer_mono_ns() - t0;
    if (took > cfg_loop_slow_ns)
      mtevL(mtev_notice, "eventer: %s callback %s (mask 0x%x) took %.3f ms\n",
            l->thread_name, eventer_name_for_callback_e(e->callback, e), mask,
            (double)took / 1e6);
  }
  finish(l, e, mask, kind, rv);
}

#define EV_FD_MASK_BITS (EVENTER_READ | EVENTER_WRITE | EVENTER_EXCEPTION)

/* The end of an fd dispatch that ran its callback without the loop's
 * hold (l->current_unheld; ev_reg_remove takes the hold if the callback
 * removes e): finish(), for its usual case (still registered on this loop
 * with the mask it wants) in place, else finish() itself with the hold
 * taken now.  Returns 1 (dispatched). */
static inline __attribute__((always_inline)) int dispatch_fd_done(
    ev_loop_t *l, eventer_t e, int mask, int rv) {
  int held = !l->current_unheld;
  l->current_unheld = 0;
  if (__builtin_expect(rv != 0 && (rv & EV_FD_MASK_BITS) == e->mask &&
                           EV_LOAD(&e->state) == EV_ST_FD &&
                           EV_LOAD(&e->owner) == l,
                       1)) {
    l->current = NULL;
    /* a hold taken meanwhile; the registration keeps e (ev_deref_n
     * reports the impossible) */
    if (__builtin_expect(held, 0) &&
        __atomic_sub_fetch(&e->refcnt, 1, __ATOMIC_ACQ_REL) <= 0)
      ev_deref_n(e, 0);
    return 1;
  }
  if (!held) __atomic_add_fetch(&e->refcnt, 1, __ATOMIC_RELAXED);
  finish(l, e, mask, EV_DK_FD, rv); /* drops the hold */
  return 1;
}

/* The usual readiness report on an aco fd event, one coroutine woken
 * (ev_aco_fd_sole_waiter): what ev_dispatch, eventer_run_callback,
 * ev_aco_fd_cb and ev_aco_wake_now would do, in this frame, so that the
 * coroutine is resumed with as few frames as possible between the loop
 * and the switch (each is a return the CPU mispredicts when the coroutine
 * yields back: the switch leaves its return-address predictor with the
 * coroutine's calls).  Not when anything else has to run around a
 * callback (context classes, the slow-callback report, the debug lines,
 * a loop run from inside a coroutine): ev_dispatch does that.  1 if done,
 * else 0. */
static inline __attribute__((always_inline)) int dispatch_aco_fd(
    ev_loop_t *l, eventer_t e, int mask) {
  ev_aco_t *w = ev_aco_fd_sole_waiter(e, mask);
  if (!w || cfg_loop_slow_ns || __atomic_load_n(&ev_ctx_n, __ATOMIC_ACQUIRE) ||
      mtev_log_stream_on_(eventer_deb) || aco_current() != NULL)
    return 0;
  EV_ASSERT(l->current == NULL, "callbacks never nest: a dispatch starts"
                                " only between callbacks");
  /* The hold, only if needed: while e stays registered here its
   * registration's reference keeps it, and only this thread can remove
   * that registration (ev_reg_remove, which then takes the hold). */
  l->current_unheld = 1;
  l->current = e;
  if (EV_LOAD_RELAXED(&l->pool->watchdog_ns))
    EV_STORE(&l->busy_cb, e->callback);
  eventer_t prev = ev_cb_this;
  ev_cb_this = e;
  ev_cb_now_set = EV_CB_NOW_LOOP; /* read if asked: ev_loop_now */
  e->acofd_in_cb++;
  ev_aco_unlink(&w->link);
  if (w->timer.loop) eventer_timer_node_remove(&w->timer);
  w->wake = EV_WAKE_READY;
  w->state = EV_ACO_RUNNABLE;
  ev_aco_resume_co(w, 0);
  e->acofd_in_cb--;
  ev_cb_this = prev;
  int rv = ev_aco_fd_rearm_woken(e);
  return dispatch_fd_done(l, e, mask, rv);
}

/* The usual readiness report on a plain fd event (no coroutine waits on
 * it): ev_dispatch, eventer_run_callback and finish in one, for the case
 * none of their options is on (no driver stepping the loop, no slow
 * callback report, no carry contexts, no debug log).  As dispatch_aco_fd,
 * it runs the callback without the loop's hold on e (the registration's
 * reference keeps e; ev_reg_remove takes the hold when the callback
 * removes it), and leaves finish() out when the callback returns the mask
 * e is registered with.  1 when it dispatched e. */
static inline __attribute__((always_inline)) int dispatch_fd_plain(
    ev_loop_t *l, eventer_t e, int mask) {
  eventer_func_t cb = e->callback;
  if (!cb || l->step || cfg_loop_slow_ns ||
      __atomic_load_n(&ev_ctx_n, __ATOMIC_ACQUIRE) ||
      mtev_log_stream_on_(eventer_deb))
    return 0;
  EV_ASSERT(l->current == NULL, "callbacks never nest: a dispatch starts"
                                " only between callbacks");
  struct timeval now = *ev_loop_now(l);
  l->current_unheld = 1;
  l->current = e;
  if (EV_LOAD_RELAXED(&l->pool->watchdog_ns))
    EV_STORE(&l->busy_cb, cb);
  eventer_t prev = ev_cb_this;
  ev_cb_this = e;
  ev_cb_now = now;
  ev_cb_now_set = 1;
  int rv = cb(e, mask, e->closure, &now);
  ev_cb_this = prev;
  return dispatch_fd_done(l, e, mask, rv);
}

/* Applies a callback's return value (see eventer.h) and drops the hold. */
static void finish(ev_loop_t *l, eventer_t e, int mask, int kind, int rv) {
  (void)mask;
  l->current = NULL;
  eventer_jobq_t *jq = kind == EV_DK_COMPLETE ? e->jobq : NULL;
  int st = EV_LOAD(&e->state);
  int drop = 1; /* the hold taken by ev_dispatch */
  const int fdbits = EVENTER_READ | EVENTER_WRITE | EVENTER_EXCEPTION;
  int fd_kind = kind == EV_DK_FD ||
                (kind == EV_DK_TRIGGER && !(e->mask & ~fdbits) && (e->mask & fdbits));

  if (kind == EV_DK_RECUR) {
    /* return value ignored */
  } else if (fd_kind) {
    int newmask = rv & fdbits;
    if (rv == 0) {
      /* "I am done": the callback must have taken e out of the loop, and
       * the registration's reference is ours to drop. */
      if (st != EV_ST_NONE) ev_fatal_not_removed(e, kind);
      drop++;
    } else if (st == EV_ST_FD && ev_event_owner(e) != l) {
      /* re-owned from inside its callback: migrate with the new mask */
      ev_reg_remove(l, e);
      if (newmask) e->mask = newmask;
      if (eventer_add_ex(e) != 0) {
        mtevL(eventer_err, "eventer: moving fd %d to another loop failed: %s\n",
              e->fd, strerror(errno));
        drop++;
      }
    } else if (st == EV_ST_FD) {
      if (newmask && newmask != e->mask && ev_reg_update(l, e, newmask) != 0)
        mtevL(eventer_err, "eventer: epoll update of fd %d failed: %s\n",
              e->fd, strerror(errno));
    } else if (st == EV_ST_NONE && kind == EV_DK_TRIGGER) {
      /* a triggered, unregistered fd event enters the loop with its mask */
      if (newmask) e->mask = newmask;
      if (eventer_add_ex(e) != 0) {
        mtevL(eventer_err, "eventer: adding triggered fd %d failed: %s\n",
              e->fd, strerror(errno));
        drop++;
      }
    }
    /* st == NONE after an fd dispatch: the callback removed e and kept the
     * reference eventer_remove handed back; anything else: it re-queued
     * e itself.  Either way there is nothing left for us to do. */
  } else if (st == EV_ST_NONE) {
    /* timer, completion, or a trigger of a non-fd event */
    if (rv == 0) {
      drop++;
    } else {
      int rc = kind == EV_DK_COMPLETE
                   ? eventer_add_asynch_subqueue_ex(e->jobq, e, e->subq)
                   : eventer_add_ex(e);
      if (rc != 0) {
        mtevL(eventer_err, "eventer: re-adding event %p (callback %s) "
              "failed: %s\n", (void *)e,
              eventer_name_for_callback(e->callback), strerror(errno));
        drop++;
      }
    }
  }
  /* else: the callback re-registered e itself; its return value is moot */
  ev_deref_n(e, drop);
  if (jq) ev_jobq_release(jq); /* the job is over (a re-add took its own) */
}

/* ---- one iteration -------------------------------------------------------------------------- */

static inline int must_return(ev_loop_t *l) {
  if (l->paused.e) return 1;
  if (l->step_used) {
    EV_ASSERT(l->step->kind >= EVENTER_STEP_USER,
              "a step taken with eventer_step_emit() gets a kind >="
              " EVENTER_STEP_USER");
    return 1;
  }
  return 0;
}

/* How long l may sleep for its timers and recurrent events, in ns, rounded
 * up to `unit` ns (waking a little late is fine, early would spin); -1:
 * nothing due. */
static int64_t sleep_for_ns(ev_loop_t *l, uint64_t unit) {
  int64_t ns = -1;
  eventer_timer_node_t *n = ev_heap_min(l);
  if (n) {
    uint64_t now = eventer_mono_ns();
    if (n->deadline_ns <= now) return 0;
    ns = (int64_t)((n->deadline_ns - now + unit - 1) / unit * unit);
  }
  /* recurrent events run once per pass: as libmtev does, a loop that has
   * some sleeps at most eventer_max_sleeptime so they keep running (and so
   * does a loop under a watchdog, which a pass proves alive) */
  if (l->recur_head || EV_LOAD_RELAXED(&l->pool->watchdog_ns)) {
    struct timeval m = eventer_max_sleeptime;
    int64_t cap = ev_bad_delay(&m) ? 200000000
                                   : (int64_t)m.tv_sec * 1000000000 +
                                         (int64_t)m.tv_usec * 1000;
    if (cap < 0 || cap > (int64_t)1 << 62) cap = 200000000;
    if (ns < 0 || ns > cap) ns = cap;
  }
  return ns;
}

static int poll_timeout_ms(ev_loop_t *l, const struct timeval *max_wait) {
  /* l->draining: cross-thread items taken out of the inbox mid-iteration
   * (ev_inbox_take) wait for the next iteration's drain */
  if (l->fifo_len > 0 || l->draining || EV_LOAD(&l->stop)) return 0;
  int64_t ns = sleep_for_ns(l, 1000000u);
  int64_t ms = ns < 0 ? -1 : ns / 1000000;
  if (max_wait) {
    int64_t mw = (int64_t)max_wait->tv_sec * 1000 + (max_wait->tv_usec + 999) / 1000;
    if (ms < 0 || mw < ms) ms = mw;
  }
  return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* How often a spinning loop looks at its fds (an epoll_wait that does not
 * block), so that a spin delays no fd that becomes ready by more than
 * this. */
#define EV_SPIN_FD_CHECK_NS 8000u

/* The poll phase's wait: up to timeout_ms (-1: no limit) for fds, timers
 * or cross-thread work.  Spins first when recent waits ended soon with
 * cross-thread work (ev_spin_t), then sleeps in epoll_wait.  Returns the
 * number of epoll results (0 when cross-thread work ended the wait: it is
 * drained at the next iteration's start). */
static int poll_wait(ev_loop_t *l, int timeout_ms) {
  if (timeout_ms == 0) return ev_poll_wait(l, 0);
  int spun = 0; /* 1: spun in vain, -1: spun and was preempted */
  uint64_t budget = l->spin.budget_ns;
  /* when the wait began; without a spin, the iteration's start will do
   * (it spares two clock reads per sleep) */
  uint64_t t0 = budget ? eventer_mono_ns() : l->timers_now_ns;
  if (budget && timeout_ms > 0 && budget > (uint64_t)timeout_ms * 1000000u)
    budget = (uint64_t)timeout_ms * 1000000u;
  if (budget && ev_cpu_self() != EV_LOAD_RELAXED(&l->push_cpu)) {
    spun = 1;
    /* fds first: a ready one never waits for a spin */
    uint64_t now = t0, prev = t0, end = t0 + budget, fd_check = t0;
    for (;;) {
      if (EV_LOAD_RELAXED(&l->inbox_nonempty)) {
        ev_spin_caught(&l->spin, eventer_mono_ns() - t0);
        return 0;
      }
      if (EV_LOAD_RELAXED(&l->stop)) return 0;
      for (int i = 0; i < 8; i++) ev_cpu_relax();
      now = eventer_mono_ns();
      if (now - prev > EV_SPIN_PREEMPTED_NS) {
        /* another thread needed this CPU: give it up and spin less (and
         * learn nothing more from this wait) */
        ev_spin_missed(&l->spin);
        spun = -1;
        break;
      }
      if (now >= end) break;
      if (now >= fd_check) {
        int n = ev_poll_wait(l, 0);
        if (n > 0) return n; /* fds: says nothing about the spin */
        fd_check = now + EV_SPIN_FD_CHECK_NS;
      }
      prev = now;
    }
  }
  __atomic_store_n(&l->wake_state, EV_WS_SLEEPING, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&l->inbox_nonempty, __ATOMIC_SEQ_CST)) {
    /* a push came between the spin's last look and now */
    __atomic_store_n(&l->wake_state, EV_WS_AWAKE, __ATOMIC_SEQ_CST);
    if (spun > 0) ev_spin_caught(&l->spin, eventer_mono_ns() - t0);
    return 0;
  }
  int n = ev_poll_wait(l, timeout_ms);
  int was = __atomic_exchange_n(&l->wake_state, EV_WS_AWAKE, __ATOMIC_SEQ_CST);
  if (was == EV_WS_WOKEN && spun >= 0) {
    /* how long after the wait began the push came (not when the wake-up
     * got here: a spin would have seen the push itself) */
    uint64_t now = eventer_mono_ns(),
             at = __atomic_load_n(&l->woken_at_ns, __ATOMIC_RELAXED);
    if (at < t0 || at > now) at = now;
    ev_spin_slept(&l->spin, ev_cpu_self() != EV_LOAD_RELAXED(&l->push_cpu),
                  at - t0, spun);
  } else if (spun > 0) {
    ev_spin_missed(&l->spin);
  }
  return n;
}

static int iterate(ev_loop_t *l, const struct timeval *max_wait) {
  switch (l->phase) {
  case EV_PH_START:
    if (EV_LOAD(&l->stop)) return EVENTER_RUN_STOPPED;
    if (EV_LOAD_RELAXED(&l->pool->watchdog_ns))
      EV_STORE(&l->busy_since_ns, eventer_mono_ns());
    ev_wall_tv(&l->now);
    l->now_stale = 0;
    ev_inbox_drain(l);
    l->timers_now_ns = eventer_mono_ns();
    /* timers added from here on (re-adds, adds from callbacks) wait for
     * the next iteration, so a due timer that re-adds itself cannot spin */
    l->timers_seq_limit = l->timer_seq;
    l->phase = EV_PH_TIMERS;
    /* fallthrough */
  case EV_PH_TIMERS:
    for (;;) {
      eventer_timer_node_t *n = ev_heap_min(l);
      if (!n || n->deadline_ns > l->timers_now_ns ||
          n->seq >= l->timers_seq_limit)
        break;
      ev_heap_remove(l, n);
      struct timeval now = l->now;
      n->fire(n, &now);
      if (must_return(l)) return EVENTER_RUN_STEP;
    }
    l->phase = EV_PH_TASKS;
    l->tasks_left = l->fifo_len; /* later posts run next iteration */
    /* fallthrough */
  case EV_PH_TASKS:
    while (l->tasks_left > 0) {
      eventer_task_t *t = fifo_pop(l);
      l->tasks_left--;
      struct timeval now = l->now;
      t->run(t, &now);
      if (must_return(l)) return EVENTER_RUN_STEP;
    }
    l->phase = EV_PH_RECUR;
    l->recur_pass++;
    l->recur_cursor = l->recur_head;
    /* fallthrough */
  case EV_PH_RECUR:
    while (l->recur_cursor) {
      eventer_t e = l->recur_cursor;
      l->recur_cursor = e->recur_next;
      if (e->recur_pass == l->recur_pass) continue; /* added this pass */
      ev_dispatch(l, e, EVENTER_RECURRENT, EV_DK_RECUR);
      if (must_return(l)) return EVENTER_RUN_STEP;
    }
    l->phase = EV_PH_POLL;
    /* fallthrough */
  case EV_PH_POLL:
    if (pass_hooks_run(l)) return EVENTER_RUN_STEP;
    if (EV_LOAD_RELAXED(&l->busy_since_ns)) {
      EV_STORE(&l->busy_since_ns, 0); /* waiting is not stalling */
      EV_STORE(&l->busy_cb, NULL);
    }
    l->nev = poll_wait(l, poll_timeout_ms(l, max_wait));
    if (EV_LOAD_RELAXED(&l->pool->watchdog_ns))
      EV_STORE(&l->busy_since_ns, eventer_mono_ns());
    l->evi = 0;
    l->now_stale = 1; /* read by the first dispatch that needs it */
    l->phase = EV_PH_FDS;
    /* fallthrough */
  case EV_PH_FDS:
    while (l->evi < l->nev) {
      uint64_t tok;
      int ready;
      ev_poll_result(l, l->evi++, &tok, &ready);
      if (tok == EV_POLL_WAKE_TOKEN) {
        /* the queue itself is drained at the next iteration's start */
        ev_poll_clear_wake(l);
        continue;
      }
      /* Look the fd up now, not when epoll reported it: an earlier
       * callback in this batch may have removed, freed or replaced the
       * event.  The epoch rejects a report meant for an earlier
       * registration of the same fd number. */
      eventer_t e = ev_fd_lookup((int)(uint32_t)tok);
      if (!e || ev_event_owner(e) != l || e->reg_epoch != (uint32_t)(tok >> 32) ||
          EV_LOAD(&e->state) != EV_ST_FD)
        continue;
      if (!dispatch_aco_fd(l, e, ready) && !dispatch_fd_plain(l, e, ready))
        ev_dispatch(l, e, ready, EV_DK_FD);
      if (must_return(l)) return EVENTER_RUN_STEP;
    }
    l->phase = EV_PH_START;
    if (EV_LOAD_RELAXED(&l->busy_since_ns)) EV_STORE(&l->busy_since_ns, 0);
    return EVENTER_RUN_DONE;
  }
  EV_ASSERT(0, "the loop phase is one of EV_PH_*");
  return -1;
}

int eventer_run_once(eventer_step_t *step, const struct timeval *max_wait) {
  ev_loop_t *l = ev_loop_self();
  if (!l) {
    errno = EINVAL;
    return -1;
  }
  if (l->in_run_once) {
    errno = EBUSY; /* called from inside a callback of this loop */
    return -1;
  }
  if (max_wait && ev_bad_delay(max_wait)) {
    errno = EINVAL;
    return -1;
  }
  if (l->paused.e) {
    /* the driver owes us the return value of the callback it was given */
    if (!step || step->kind != EVENTER_STEP_CALLBACK || step->e != l->paused.e) {
      errno = EINVAL;
      return -1;
    }
  } else if (step && step->kind == EVENTER_STEP_CALLBACK) {
    errno = EINVAL; /* a return value for a callback nobody handed out */
    return -1;
  }
  l->in_run_once = 1;
  EV_STORE(&l->running, 1);
  if (!EV_LOAD_RELAXED(&l->ran)) EV_STORE(&l->ran, 1);
  l->step = step;
  l->step_used = 0;
  if (l->paused.e) {
    eventer_t e = l->paused.e;
    int mask = l->paused.mask, kind = l->paused.kind, rv = step->rv;
    l->paused.e = NULL;
    step->kind = EVENTER_STEP_NONE;
    step->e = NULL;
    finish(l, e, mask, kind, rv);
  } else if (step) {
    step->kind = EVENTER_STEP_NONE;
  }
  int rc = iterate(l, max_wait);
  l->step = NULL;
  l->in_run_once = 0;
  /* A handed-out step keeps the loop busy: the driver is still working on
   * this iteration (and will call back), which eventer_fini must wait for. */
  if (rc != EVENTER_RUN_STEP) EV_STORE(&l->running, 0);
  /* last touch of the loop in this call: from here eventer_fini may free it */
  if (rc == EVENTER_RUN_STOPPED) EV_STORE(&l->stopped_seen, 1);
  return rc;
}

eventer_step_t *eventer_step_emit(void) {
  ev_loop_t *l = ev_loop_self();
  if (!l || !l->step || l->step_used || l->paused.e) return NULL;
  l->step_used = 1;
  l->step->kind = EVENTER_STEP_NONE;
  return l->step;
}

int eventer_loop_pollfd(void) {
  ev_loop_t *l = ev_loop_self();
  if (!l) {
    errno = EINVAL;
    return -1;
  }
  /* The driver will wait on the epoll fd outside run_once, where the loop
   * cannot look at its inbox first: from now on every push writes the
   * eventfd, and a push that came before this call (and found the loop
   * awake) gets its write now.  seq_cst pairs with ev_inbox_push. */
  if (!__atomic_exchange_n(&l->wake_always, 1, __ATOMIC_SEQ_CST) &&
      __atomic_load_n(&l->inbox_nonempty, __ATOMIC_SEQ_CST))
    ev_poll_wake(l);
  return ev_poll_fd(l);
}

int64_t eventer_next_timeout_us(void) {
  ev_loop_t *l = ev_loop_self();
  if (!l) {
    errno = EINVAL;
    return -2;
  }
  if (l->phase != EV_PH_START || l->paused.e || l->fifo_len || l->draining ||
      EV_LOAD(&l->inbox_nonempty) || EV_LOAD(&l->stop))
    return 0;
  int64_t ns = sleep_for_ns(l, 1000u);
  return ns < 0 ? -1 : ns / 1000;
}

int eventer_loop_sleep_begin(int64_t *timeout_us) {
  ev_loop_t *l = ev_loop_self();
  if (!l || !timeout_us) {
    errno = EINVAL;
    return -1;
  }
  /* l->nev: the last poll's results; an fd still ready after them does
   * not make the epoll fd readable again, so a poll that found anything
   * is followed by another before a sleep */
  if (l->phase != EV_PH_START || l->paused.e || l->fifo_len || l->draining ||
      l->nev > 0 || !pass_list_empty(&l->pass_q) || EV_LOAD(&l->stop))
    return 0;
  int64_t ns = sleep_for_ns(l, 1000u);
  if (ns == 0) return 0;
  /* as poll_wait does before epoll_wait: one of us sees the other */
  __atomic_store_n(&l->wake_state, EV_WS_SLEEPING, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&l->inbox_nonempty, __ATOMIC_SEQ_CST)) {
    __atomic_store_n(&l->wake_state, EV_WS_AWAKE, __ATOMIC_SEQ_CST);
    return 0;
  }
  *timeout_us = ns < 0 ? -1 : ns / 1000;
  return 1;
}

void eventer_loop_sleep_end(void) {
  ev_loop_t *l = ev_loop_self();
  /* a pusher that found the loop asleep wrote the eventfd: the next poll
   * reports it and clears it */
  if (l) __atomic_store_n(&l->wake_state, EV_WS_AWAKE, __ATOMIC_SEQ_CST);
}

/* ---- running, stopping, teardown ---------------------------------------------------------------- */

static void join_spawned(void) {
  for (int p = 0; p < G.npools; p++)
    for (int i = 0; i < G.pools[p]->concurrency; i++) {
      ev_loop_t *l = G.pools[p]->loops[i];
      if (l->spawned && !l->joined) {
        pthread_join(EV_LOAD(&l->thread), NULL);
        l->joined = 1;
      }
    }
}

/* Lets loop 0's thread start.  The eventer_init() caller only, once. */
static void release_loop0(void) {
  int ok = EV_LOAD(&G.initialized) && !G.external &&
           pthread_equal(pthread_self(), G.init_thread);
  pthread_mutex_lock(&G.start_lock);
  if (ok && G.go) ok = 0;
  if (ok) {
    G.go = 1;
    pthread_cond_broadcast(&G.go_cond);
  }
  pthread_mutex_unlock(&G.start_lock);
  if (!ok)
    mtevFatal(mtev_error, "eventer: eventer_loop()/eventer_loop_return() must"
              " be called by the thread that called eventer_init(), once\n");
}

void eventer_loop_return(void) { release_loop0(); }

void eventer_loop_wait(void) {
  ev_loop_t *self = ev_loop_self();
  if (self && self->spawned)
    mtevFatal(mtev_error, "eventer: eventer_loop_wait() called on loop thread"
              " %s: it would wait for itself\n", self->thread_name);
  if (!EV_LOAD(&G.initialized)) return;
  join_spawned();
}

void eventer_loop(void) {
  release_loop0();
  join_spawned();
  exit(EXIT_SUCCESS);
}

int eventer_get_epoch(struct timeval *epoch) {
  if (!EV_LOAD(&G.initialized)) {
    errno = ENXIO;
    return -1;
  }
  if (epoch) *epoch = G.started;
  return 0;
}

void eventer_shutdown(void) {
  pthread_mutex_lock(&G.life_lock);
  if (EV_LOAD(&G.initialized))
    for (int p = 0; p < G.npools; p++)
      for (int i = 0; i < G.pools[p]->concurrency; i++) {
        ev_loop_t *l = G.pools[p]->loops[i];
        EV_STORE(&l->stop, 1);
        ev_poll_wake(l);
      }
  pthread_mutex_unlock(&G.life_lock);
  /* loop 0 may still wait for eventer_loop(): it stops without running */
  pthread_mutex_lock(&G.start_lock);
  pthread_cond_broadcast(&G.go_cond);
  pthread_mutex_unlock(&G.start_lock);
}

static void drop_queued(ev_loop_t *l) {
  /* a foreign callback handed out and never answered */
  if (l->paused.e) {
    eventer_t e = l->paused.e;
    l->paused.e = NULL;
    l->current = NULL;
    /* fd and recurrent events are still registered (dropped below); the
     * other kinds were taken off their queue and the dispatch held the
     * eventer's reference as well as its own */
    int k = l->paused.kind;
    eventer_jobq_t *jq = k == EV_DK_COMPLETE ? e->jobq : NULL;
    ev_deref_n(e, (k == EV_DK_FD || k == EV_DK_RECUR) ? 1 : 2);
    if (jq) ev_jobq_release(jq);
  }
  /* end-of-pass hooks that never ran: their owners' layers are told
   * (before the tasks: a task's discard may end what a hook points into) */
  ev_pass_hook_t *lists_h[2] = {&l->pass_q, &l->pass_run};
  for (int i = 0; i < 2; i++)
    while (!pass_list_empty(lists_h[i])) {
      ev_pass_hook_t *h = lists_h[i]->next;
      pass_unlink(h);
      ev_layers_hook_discard(h);
    }
  eventer_task_t *lists[2] = {l->draining, inbox_take(l)};
  l->draining = NULL;
  for (int i = 0; i < 2; i++)
    while (lists[i]) {
      eventer_task_t *t = lists[i];
      lists[i] = t->next;
      ev_task_discard(t);
    }
  eventer_task_t *t;
  while ((t = fifo_pop(l))) ev_task_discard(t);
}

/* eventer_fini's thread while it drops what the stopped loops hold (the
 * layers' loop_fini and discards): nothing posted to a loop then is ever
 * run or released. */
static pthread_t ev_fini_thread;
static int ev_fini_busy; /* __atomic */

int ev_fini_dropping(void) {
  return EV_LOAD(&ev_fini_busy) && pthread_equal(ev_fini_thread, pthread_self());
}

void eventer_fini(void) {
  if (!EV_LOAD(&G.initialized)) return;
  eventer_shutdown();
  join_spawned();
  ev_layers_fini_begin(); /* e.g. listeners' accept threads told to end */
  ev_dedicated_quiesce(); /* eventer_run_in_thread threads that are ending */
  /* External drivers get EVENTER_RUN_STOPPED at their next iteration
   * boundary.  A driver between two run_once calls (or holding a step it
   * was handed) still uses its loop, so wait until every loop that ran has
   * handed out STOPPED.  (The caller's own loop cannot be waited for: it is
   * us; a loop attached but never run has no driver to wait for.) */
  ev_loop_t *self = ev_loop_self();
  for (int p = 0; p < G.npools; p++)
    for (int i = 0; i < G.pools[p]->concurrency; i++) {
      ev_loop_t *l = G.pools[p]->loops[i];
      while (l != self && (EV_LOAD(&l->running) ||
                           (EV_LOAD(&l->bound) && EV_LOAD(&l->ran) &&
                            !EV_LOAD(&l->stopped_seen))))
        usleep(1000);
    }
  watchdog_stop();
  pthread_mutex_lock(&G.life_lock);
  /* Job threads first: they may still post completions to loops. */
  ev_jobq_fini_all();
  ev_fini_thread = pthread_self();
  EV_STORE(&ev_fini_busy, 1);
  for (int p = 0; p < G.npools; p++)
    for (int i = 0; i < G.pools[p]->concurrency; i++) {
      ev_loop_t *l = G.pools[p]->loops[i];
      ev_layers_loop_fini(l);
      drop_queued(l);
      ev_reg_drop_all(l);
    }
  EV_STORE(&ev_fini_busy, 0);
  for (int p = 0; p < G.npools; p++) pool_free(G.pools[p]);
  free(G.pools);
  G.pools = NULL;
  G.npools = 0;
  G.loop0 = NULL;
  ev_fdtab_reset();
  cfg_reset();
  tls_loop = NULL;
  __atomic_add_fetch(&G.epoch, 1, __ATOMIC_RELEASE);
  EV_STORE(&G.initialized, 0);
  pthread_mutex_unlock(&G.life_lock);
}

/* ---- queries ------------------------------------------------------------------------------------- */

mtev_boolean eventer_in_loop(void) {
  return ev_loop_self() ? mtev_true : mtev_false;
}

int eventer_is_loop(pthread_t tid) { return ev_loop_by_thread(tid) != NULL; }

int eventer_loop_concurrency(void) {
  if (EV_LOAD(&G.initialized)) return G.pools[0]->concurrency;
  return cfg_concurrency ? cfg_concurrency : ncpus();
}

eventer_pool_t *eventer_pool(const char *name) {
  if (!name || !EV_LOAD(&G.initialized)) return NULL;
  for (int p = 0; p < G.npools; p++)
    if (!strcmp(G.pools[p]->name, name)) return G.pools[p];
  return NULL;
}

const char *eventer_pool_name(eventer_pool_t *pool) {
  return pool ? pool->name : NULL;
}

uint32_t eventer_pool_concurrency(eventer_pool_t *pool) {
  return pool ? (uint32_t)pool->concurrency : 0;
}

int eventer_pool_count(void) {
  return EV_LOAD(&G.initialized) ? G.npools : 0;
}

eventer_pool_t *eventer_pool_by_index(int i) {
  if (!EV_LOAD(&G.initialized) || i < 0 || i >= G.npools) return NULL;
  return G.pools[i];
}

eventer_loop_t *eventer_pool_loop(eventer_pool_t *pool, int index) {
  if (!pool || index < 0 || index >= pool->concurrency) return NULL;
  return pool->loops[index];
}

eventer_loop_t *eventer_loop_current(void) { return ev_loop_self(); }

int eventer_loop_index(eventer_loop_t *loop) { return loop ? loop->index : -1; }

eventer_pool_t *eventer_loop_pool(eventer_loop_t *loop) {
  return loop ? loop->pool : NULL;
}

const char *eventer_get_thread_name(void) {
  ev_loop_t *l = ev_loop_self();
  if (l) return l->thread_name;
  const char *n = ev_thread_name_get();
  if (n) return n;
  static __thread char os_name[16];
  if (pthread_getname_np(pthread_self(), os_name, sizeof(os_name)) != 0 ||
      !os_name[0])
    snprintf(os_name, sizeof(os_name), "unnamed");
  return os_name;
}

/* ---- iteration over registered events --------------------------------------------------------- */

void eventer_foreach_timedevent(void (*fn)(eventer_t e, void *closure),
                                void *closure) {
  if (!fn) return;
  size_t n = 0, cap = 0;
  eventer_t *found = NULL;
  pthread_mutex_lock(&G.life_lock);
  if (EV_LOAD(&G.initialized))
    for (int p = 0; p < G.npools; p++)
      for (int i = 0; i < G.pools[p]->concurrency; i++) {
        ev_loop_t *l = G.pools[p]->loops[i];
        ev_heap_lock(l);
        for (uint32_t h = 0; h < l->heap_len; h++) {
          eventer_timer_node_t *node = l->heap[h];
          if (node->fire != ev_timer_event_fire) continue; /* not an event */
          if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            eventer_t *nf = realloc(found, ncap * sizeof(*nf));
            if (!nf) break; /* what we have is still worth visiting */
            found = nf;
            cap = ncap;
          }
          /* on the heap, it holds the eventer's reference: ours is safe */
          eventer_t e = EV_CONTAINER_OF(node, struct _event, tnode);
          eventer_ref(e);
          found[n++] = e;
        }
        ev_heap_unlock(l);
      }
  pthread_mutex_unlock(&G.life_lock);
  for (size_t i = 0; i < n; i++) {
    fn(found[i], closure);
    eventer_deref(found[i]);
  }
  free(found);
}

/* ---- watchdog ------------------------------------------------------------------------------------ */

void eventer_pool_watchdog_timeout(eventer_pool_t *pool, double timeout) {
  if (!pool || !(timeout >= 0) || timeout > 4e9) return;
  EV_STORE(&pool->watchdog_ns, (uint64_t)llround(timeout * 1e9));
  watchdog_start_if_needed();
  /* a shorter timeout is checked more often from now on */
  pthread_mutex_lock(&G.wd_lock);
  pthread_cond_signal(&G.wd_cond);
  pthread_mutex_unlock(&G.wd_lock);
}

double eventer_watchdog_timeout(void) {
  ev_loop_t *l = ev_loop_self();
  return l ? (double)EV_LOAD(&l->pool->watchdog_ns) / 1e9 : 0.0;
}

mtev_boolean eventer_watchdog_timeout_timeval(struct timeval *dur) {
  ev_loop_t *l = ev_loop_self();
  uint64_t ns = l ? EV_LOAD(&l->pool->watchdog_ns) : 0;
  if (!ns) return mtev_false;
  if (dur) {
    dur->tv_sec = (time_t)(ns / 1000000000u);
    dur->tv_usec = (suseconds_t)(ns % 1000000000u / 1000u);
  }
  return mtev_true;
}

/* One look at every loop: a loop busy in one iteration for longer than
 * its pool's timeout is reported once.  Returns the shortest timeout (0:
 * none), which sets how often to look. */
static uint64_t watchdog_scan(void) {
  uint64_t shortest = 0, now = eventer_mono_ns();
  pthread_mutex_lock(&G.life_lock);
  if (EV_LOAD(&G.initialized))
    for (int p = 0; p < G.npools; p++) {
      eventer_pool_t *pool = G.pools[p];
      uint64_t to = EV_LOAD(&pool->watchdog_ns);
      if (!to) continue;
      if (!shortest || to < shortest) shortest = to;
      for (int i = 0; i < pool->concurrency; i++) {
        ev_loop_t *l = pool->loops[i];
        uint64_t since = EV_LOAD(&l->busy_since_ns);
        if (!since || now <= since || now - since <= to ||
            l->wd_reported == since)
          continue;
        l->wd_reported = since;
        eventer_func_t cb = EV_LOAD(&l->busy_cb);
        mtevL(mtev_error, "eventer: watchdog: loop %s has been in one "
              "iteration for %.3f s (timeout %.3f s), running %s\n",
              l->thread_name, (double)(now - since) / 1e9, (double)to / 1e9,
              cb ? eventer_name_for_callback(cb) : "no callback");
      }
    }
  pthread_mutex_unlock(&G.life_lock);
  return shortest;
}

static void *watchdog_main(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "e:watchdog");
  ev_thread_name_set("e:watchdog");
  pthread_mutex_lock(&G.wd_lock);
  while (!G.wd_stop) {
    pthread_mutex_unlock(&G.wd_lock);
    uint64_t shortest = watchdog_scan();
    /* look four times per (shortest) timeout, between 1 ms and 1 s */
    uint64_t period = shortest ? shortest / 4 : 1000000000u;
    if (period < 1000000u) period = 1000000u;
    if (period > 1000000000u) period = 1000000000u;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + period;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    pthread_mutex_lock(&G.wd_lock);
    if (!G.wd_stop) pthread_cond_timedwait(&G.wd_cond, &G.wd_lock, &ts);
  }
  pthread_mutex_unlock(&G.wd_lock);
  return NULL;
}

static void watchdog_start_if_needed(void) {
  int any = 0;
  if (!EV_LOAD(&G.initialized)) return;
  for (int p = 0; p < G.npools; p++)
    if (EV_LOAD(&G.pools[p]->watchdog_ns)) any = 1;
  if (!any) return;
  pthread_mutex_lock(&G.wd_lock);
  if (!G.wd_running) {
    static int cond_ready;
    if (!cond_ready) {
      pthread_condattr_t ca;
      pthread_condattr_init(&ca);
      pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
      pthread_cond_init(&G.wd_cond, &ca);
      pthread_condattr_destroy(&ca);
      cond_ready = 1;
    }
    G.wd_stop = 0;
    if (pthread_create(&G.wd_thread, NULL, watchdog_main, NULL) == 0)
      G.wd_running = 1;
    else
      mtevL(mtev_error, "eventer: cannot start the watchdog thread\n");
  }
  pthread_mutex_unlock(&G.wd_lock);
}

static void watchdog_stop(void) {
  pthread_mutex_lock(&G.wd_lock);
  int running = G.wd_running;
  G.wd_stop = 1;
  G.wd_running = 0;
  if (running) pthread_cond_signal(&G.wd_cond);
  pthread_mutex_unlock(&G.wd_lock);
  if (running) pthread_join(G.wd_thread, NULL);
}

pthread_t eventer_choose_owner_pool(eventer_pool_t *pool, int n) {
  if (!pool) return (pthread_t)0;
  int c = pool->concurrency, idx;
  unsigned u = (unsigned)n;
  if (pool->index == 0 && c > 1)
    idx = n == 0 ? 0 : 1 + (int)(u % (unsigned)(c - 1));
  else
    idx = (int)(u % (unsigned)c);
  ev_loop_t *l = pool->loops[idx];
  return EV_LOAD(&l->bound) ? EV_LOAD(&l->thread) : (pthread_t)0;
}

pthread_t eventer_choose_owner(int n) {
  if (!EV_LOAD(&G.initialized)) return (pthread_t)0;
  return eventer_choose_owner_pool(G.pools[0], n);
}
