/*
 * eventer_conformance.c - the step registry, the accessors a step uses,
 * and the driver that runs a scenario's coroutines (eventer_conformance.h).
 */
#include "eventer_conformance_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mtev_log.h"

/* ---- the registry ------------------------------------------------------------------ */

typedef struct {
  char *name;
  char *sig;
  eventer_conformance_step_fn fn;
} ev_cf_entry_t;

typedef struct {
  char *name;
  void (*fn)(void);
} ev_cf_service_t;

static pthread_mutex_t ev_cf_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static ev_cf_entry_t *ev_cf_reg;
static int ev_cf_nreg, ev_cf_capreg;
static ev_cf_service_t *ev_cf_svc;
static int ev_cf_nsvc, ev_cf_capsvc;
static pthread_once_t ev_cf_once = PTHREAD_ONCE_INIT;
static atomic_uint ev_cf_run_ids;

static void ev_cf_init(void) { pthread_once(&ev_cf_once, ev_cf_builtin_register); }

static int ev_cf_name_ok(const char *name) {
  if (!name || !*name || strlen(name) > 64) return 0;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
      return 0;
  return 1;
}

/* A signature's items: kinds, a|b words, "?" suffixes, key=kind options. */
static int ev_cf_sig_ok(const char *sig) {
  if (!sig) return 0;
  const char *p = sig;
  int optional_seen = 0;
  while (*p) {
    while (*p == ' ') p++;
    if (!*p) break;
    const char *end = p;
    while (*end && *end != ' ') end++;
    size_t n = (size_t)(end - p);
    char item[128];
    if (n >= sizeof(item)) return 0;
    memcpy(item, p, n);
    item[n] = 0;
    char *eq = strchr(item, '=');
    char *kind = eq ? eq + 1 : item;
    if (eq && (eq == item)) return 0;
    size_t kl = strlen(kind);
    int opt = kl > 0 && kind[kl - 1] == '?';
    if (opt) kind[--kl] = 0;
    if (eq && opt) return 0;
    if (!eq) {
      if (optional_seen && !opt) return 0; /* optional items trail */
      if (opt) optional_seen = 1;
    }
    if (kl == 0) return 0;
    if (strcmp(kind, "obj") && strcmp(kind, "new") && strcmp(kind, "co") &&
        strcmp(kind, "int") && strcmp(kind, "dur") && strcmp(kind, "text")) {
      /* a|b|c: words */
      if (!strchr(kind, '|')) return 0;
      for (char *q = kind; *q; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '|' ||
              *q == '_' || *q == '-'))
          return 0;
    }
    p = end;
  }
  return 1;
}

int eventer_conformance_register(const char *name, const char *signature,
                                 eventer_conformance_step_fn fn) {
  /* the built-ins first, so that a user's step of the same name wins */
  ev_cf_init();
  return ev_cf_register(name, signature, fn);
}

int ev_cf_register(const char *name, const char *signature, eventer_conformance_step_fn fn) {
  if (!ev_cf_name_ok(name) || !fn || !ev_cf_sig_ok(signature)) {
    errno = EINVAL;
    return -1;
  }
  char *n = strdup(name), *s = strdup(signature);
  if (!n || !s) {
    free(n);
    free(s);
    errno = ENOMEM;
    return -1;
  }
  pthread_mutex_lock(&ev_cf_reg_mu);
  int lo = 0, hi = ev_cf_nreg;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (strcmp(ev_cf_reg[mid].name, name) < 0) lo = mid + 1;
    else hi = mid;
  }
  if (lo < ev_cf_nreg && strcmp(ev_cf_reg[lo].name, name) == 0) {
    /* replaced: the old strings stay allocated, since a signature handed
     * out earlier may still be read (a handful of bytes per replace) */
    free(n);
    ev_cf_reg[lo].sig = s;
    ev_cf_reg[lo].fn = fn;
    pthread_mutex_unlock(&ev_cf_reg_mu);
    return 0;
  }
  if (ev_cf_nreg == ev_cf_capreg) {
    int cap = ev_cf_capreg ? 2 * ev_cf_capreg : 128;
    ev_cf_entry_t *nr = realloc(ev_cf_reg, (size_t)cap * sizeof(*nr));
    if (!nr) {
      pthread_mutex_unlock(&ev_cf_reg_mu);
      free(n);
      free(s);
      errno = ENOMEM;
      return -1;
    }
    ev_cf_reg = nr;
    ev_cf_capreg = cap;
  }
  memmove(&ev_cf_reg[lo + 1], &ev_cf_reg[lo], (size_t)(ev_cf_nreg - lo) * sizeof(*ev_cf_reg));
  ev_cf_reg[lo] = (ev_cf_entry_t){n, s, fn};
  ev_cf_nreg++;
  pthread_mutex_unlock(&ev_cf_reg_mu);
  return 0;
}

/* under ev_cf_reg_mu */
static ev_cf_entry_t *ev_cf_find(const char *name) {
  int lo = 0, hi = ev_cf_nreg;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    int c = strcmp(ev_cf_reg[mid].name, name);
    if (c == 0) return &ev_cf_reg[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

const char *eventer_conformance_signature(const char *name) {
  if (!name) return NULL;
  ev_cf_init();
  pthread_mutex_lock(&ev_cf_reg_mu);
  ev_cf_entry_t *e = ev_cf_find(name);
  const char *s = e ? e->sig : NULL;
  pthread_mutex_unlock(&ev_cf_reg_mu);
  return s;
}

int eventer_conformance_foreach(int (*f)(const char *, const char *, void *),
                                void *closure) {
  if (!f) return 0;
  ev_cf_init();
  for (int i = 0;; i++) {
    pthread_mutex_lock(&ev_cf_reg_mu);
    if (i >= ev_cf_nreg) {
      pthread_mutex_unlock(&ev_cf_reg_mu);
      return 0;
    }
    const char *n = ev_cf_reg[i].name, *s = ev_cf_reg[i].sig;
    pthread_mutex_unlock(&ev_cf_reg_mu);
    /* strings are never freed, so they outlive the lock */
    int rv = f(n, s, closure);
    if (rv) return rv;
  }
}

int eventer_conformance_register_service(const char *name, void (*fn)(void)) {
  ev_cf_init();
  return ev_cf_register_service(name, fn);
}

int ev_cf_register_service(const char *name, void (*fn)(void)) {
  if (!ev_cf_name_ok(name) || !fn) {
    errno = EINVAL;
    return -1;
  }
  pthread_mutex_lock(&ev_cf_reg_mu);
  for (int i = 0; i < ev_cf_nsvc; i++)
    if (strcmp(ev_cf_svc[i].name, name) == 0) {
      ev_cf_svc[i].fn = fn;
      pthread_mutex_unlock(&ev_cf_reg_mu);
      return 0;
    }
  if (ev_cf_nsvc == ev_cf_capsvc) {
    int cap = ev_cf_capsvc ? 2 * ev_cf_capsvc : 16;
    ev_cf_service_t *ns = realloc(ev_cf_svc, (size_t)cap * sizeof(*ns));
    if (!ns) {
      pthread_mutex_unlock(&ev_cf_reg_mu);
      errno = ENOMEM;
      return -1;
    }
    ev_cf_svc = ns;
    ev_cf_capsvc = cap;
  }
  char *n = strdup(name);
  if (!n) {
    pthread_mutex_unlock(&ev_cf_reg_mu);
    errno = ENOMEM;
    return -1;
  }
  ev_cf_svc[ev_cf_nsvc++] = (ev_cf_service_t){n, fn};
  pthread_mutex_unlock(&ev_cf_reg_mu);
  return 0;
}

/* The service registered as name, or NULL (the listener step). */
void (*ev_cf_service(const char *name))(void) {
  ev_cf_init();
  void (*fn)(void) = NULL;
  pthread_mutex_lock(&ev_cf_reg_mu);
  for (int i = 0; i < ev_cf_nsvc; i++)
    if (strcmp(ev_cf_svc[i].name, name) == 0) fn = ev_cf_svc[i].fn;
  pthread_mutex_unlock(&ev_cf_reg_mu);
  return fn;
}

/* ---- helpers ------------------------------------------------------------------------- */

const char *eventer_conformance_errname(int err) {
  static __thread char buf[16];
  const char *n = err ? strerrorname_np(err) : NULL;
  if (n) return n;
  snprintf(buf, sizeof(buf), "E%d", err);
  return buf;
}

static int ev_cf_bare(const unsigned char *p, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == '"' || p[i] == '\\') return 0;
  return 1;
}

size_t eventer_conformance_quote(char *out, size_t outlen, const void *bytes, size_t n) {
  const unsigned char *p = bytes;
  size_t k = 0;
#define EV_CF_PUT(ch)                    \
  do {                                   \
    if (k + 1 < outlen) out[k] = (ch);   \
    k++;                                 \
  } while (0)
  if (ev_cf_bare(p, n)) {
    for (size_t i = 0; i < n; i++) EV_CF_PUT((char)p[i]);
  } else {
    static const char hex[] = "0123456789abcdef";
    EV_CF_PUT('"');
    for (size_t i = 0; i < n; i++) {
      unsigned char ch = p[i];
      switch (ch) {
      case '\n': EV_CF_PUT('\\'); EV_CF_PUT('n'); break;
      case '\r': EV_CF_PUT('\\'); EV_CF_PUT('r'); break;
      case '\t': EV_CF_PUT('\\'); EV_CF_PUT('t'); break;
      case '\\': EV_CF_PUT('\\'); EV_CF_PUT('\\'); break;
      case '"': EV_CF_PUT('\\'); EV_CF_PUT('"'); break;
      default:
        if (ch < 0x20 || ch >= 0x7f) {
          EV_CF_PUT('\\');
          EV_CF_PUT('x');
          EV_CF_PUT(hex[ch >> 4]);
          EV_CF_PUT(hex[ch & 15]);
        } else {
          EV_CF_PUT((char)ch);
        }
      }
    }
    EV_CF_PUT('"');
  }
#undef EV_CF_PUT
  if (outlen) out[k < outlen ? k : outlen - 1] = 0;
  return k;
}

int ev_cf_current_loop(void) {
  eventer_loop_t *l = eventer_loop_current();
  if (!l || eventer_loop_pool(l) != eventer_pool("default")) return -1;
  return eventer_loop_index(l);
}

/* ---- runs ------------------------------------------------------------------------------- */

typedef struct {
  eventer_task_t t; /* first: the task is the starter */
  eventer_conformance_run_t *run;
  int loop;
} ev_cf_starter_t;

struct eventer_conformance_run {
  unsigned id;
  int nloops, nobjs;
  ev_cf_obj_t *objs;
  pthread_mutex_t mu;     /* object slots */
  ev_cf_co_t *cos;
  int ncos, capcos;
  ev_cf_step_t *steps;
  int nsteps, capsteps;
  atomic_int *trace;      /* step indices in the order they ended; -1: not yet */
  atomic_int ntrace;
  atomic_int live;        /* coroutines started and not ended */
  atomic_int refs;        /* the owner's + one per live coroutine */
  atomic_int started;
  atomic_int aborted;
  uint64_t t0;
  ev_cf_starter_t *starters;
};

eventer_conformance_run_t *eventer_conformance_run_new(int nloops, int nobjs) {
  if (nloops < 1 || nobjs < 0 || nobjs > 100000) {
    errno = EINVAL;
    return NULL;
  }
  eventer_pool_t *pool = eventer_pool("default");
  if (!pool || (int)eventer_pool_concurrency(pool) < nloops) {
    errno = pool ? EINVAL : ENXIO;
    return NULL;
  }
  ev_cf_init();
  eventer_conformance_run_t *r = calloc(1, sizeof(*r));
  if (!r) return NULL;
  r->objs = calloc((size_t)nobjs + 1, sizeof(*r->objs));
  r->starters = calloc((size_t)nloops, sizeof(*r->starters));
  if (!r->objs || !r->starters) {
    free(r->objs);
    free(r->starters);
    free(r);
    errno = ENOMEM;
    return NULL;
  }
  for (int i = 0; i < nobjs; i++) {
    r->objs[i].fd = -1;
    r->objs[i].loop = -1;
  }
  r->id = atomic_fetch_add(&ev_cf_run_ids, 1) + 1;
  r->nloops = nloops;
  r->nobjs = nobjs;
  pthread_mutex_init(&r->mu, NULL);
  atomic_init(&r->refs, 1);
  return r;
}

int eventer_conformance_run_co(eventer_conformance_run_t *r, const char *name,
                               int loop, int manual) {
  if (!r || !name || loop < 0 || loop >= r->nloops || atomic_load(&r->started)) {
    errno = EINVAL;
    return -1;
  }
  if (r->ncos == r->capcos) {
    int cap = r->capcos ? 2 * r->capcos : 8;
    ev_cf_co_t *nc = realloc(r->cos, (size_t)cap * sizeof(*nc));
    if (!nc) return -1;
    r->cos = nc;
    r->capcos = cap;
  }
  ev_cf_co_t *co = &r->cos[r->ncos];
  memset(co, 0, sizeof(*co));
  co->name = strdup(name);
  if (!co->name) return -1;
  co->run = r;
  co->idx = r->ncos;
  co->loop = loop;
  co->manual = manual != 0;
  atomic_init(&co->handle, NULL);
  atomic_init(&co->started, 0);
  return r->ncos++;
}

static char *ev_cf_dup(const char *s) { return strdup(s ? s : ""); }

int eventer_conformance_run_step(eventer_conformance_run_t *r, int co, const char *step,
                                 int argc, const char *const *argv, const int *ref,
                                 int nopts, const char *const *keys,
                                 const char *const *vals, const int *optref) {
  if (!r || co < 0 || co >= r->ncos || !step || argc < 0 || nopts < 0 ||
      (argc && (!argv || !ref)) || (nopts && (!keys || !vals || !optref)) ||
      atomic_load(&r->started)) {
    errno = EINVAL;
    return -1;
  }
  int maxref = r->nobjs > r->ncos ? r->nobjs : r->ncos;
  for (int i = 0; i < argc + nopts; i++) {
    int k = i < argc ? ref[i] : optref[i - argc];
    if (k < -1 || k >= maxref) {
      errno = EINVAL;
      return -1;
    }
  }
  pthread_mutex_lock(&ev_cf_reg_mu);
  ev_cf_entry_t *e = ev_cf_find(step);
  eventer_conformance_step_fn fn = e ? e->fn : NULL;
  pthread_mutex_unlock(&ev_cf_reg_mu);
  if (!fn) {
    errno = ENOENT;
    return -1;
  }
  /* grow everything first: nothing below fails half-way */
  ev_cf_co_t *c = &r->cos[co];
  if (r->nsteps == r->capsteps) {
    int cap = r->capsteps ? 2 * r->capsteps : 32;
    ev_cf_step_t *ns = realloc(r->steps, (size_t)cap * sizeof(*ns));
    if (!ns) return -1;
    r->steps = ns;
    r->capsteps = cap;
  }
  if (c->nsteps == c->cap) {
    int cap = c->cap ? 2 * c->cap : 16;
    int *ns = realloc(c->steps, (size_t)cap * sizeof(*ns));
    if (!ns) return -1;
    c->steps = ns;
    c->cap = cap;
  }
  ev_cf_step_t *s = &r->steps[r->nsteps];
  memset(s, 0, sizeof(*s));
  s->co = co;
  s->idx_in_co = c->nsteps;
  s->fn = fn;
  s->name = ev_cf_dup(step);
  s->argc = argc;
  s->argv = calloc((size_t)argc + 1, sizeof(char *));
  s->ref = calloc((size_t)(argc + nopts) + 1, sizeof(int));
  s->nopts = nopts;
  s->keys = calloc((size_t)nopts + 1, sizeof(char *));
  s->vals = calloc((size_t)nopts + 1, sizeof(char *));
  s->result = calloc(1, EV_CF_RESULT_MAX);
  int bad = !s->name || !s->argv || !s->ref || !s->keys || !s->vals || !s->result;
  for (int i = 0; !bad && i < argc; i++) {
    s->argv[i] = ev_cf_dup(argv[i]);
    s->ref[i] = ref[i];
    bad = !s->argv[i];
  }
  for (int i = 0; !bad && i < nopts; i++) {
    s->ref[argc + i] = optref[i];
    s->keys[i] = ev_cf_dup(keys[i]);
    s->vals[i] = ev_cf_dup(vals[i]);
    bad = !s->keys[i] || !s->vals[i];
  }
  if (bad) {
    for (int i = 0; s->argv && i < argc; i++) free(s->argv[i]);
    for (int i = 0; s->keys && i < nopts; i++) {
      free(s->keys[i]);
      free(s->vals[i]);
    }
    free(s->name);
    free(s->argv);
    free(s->ref);
    free(s->keys);
    free(s->vals);
    free(s->result);
    errno = ENOMEM;
    return -1;
  }
  c->steps[c->nsteps++] = r->nsteps;
  return r->nsteps++;
}

int eventer_conformance_run_step_index(eventer_conformance_run_t *r, int step) {
  if (!r || step < 0 || step >= r->nsteps) return -1;
  return r->steps[step].idx_in_co;
}

static void ev_cf_run_unref(eventer_conformance_run_t *r);

static void ev_cf_record(eventer_conformance_run_t *r, int step) {
  int i = atomic_fetch_add(&r->ntrace, 1);
  /* never more entries than steps: each step runs at most once */
  atomic_store_explicit(&r->trace[i], step, memory_order_release);
}

/* Sets co's handle once (the spawner and the coroutine race for it). */
static void ev_cf_set_handle(ev_cf_co_t *co, eventer_aco_co_t *h) {
  eventer_aco_co_t *none = NULL;
  if (!atomic_compare_exchange_strong(&co->handle, &none, h))
    eventer_aco_co_release(h); /* the other one won: same coroutine */
}

/* The coroutine of every scenario coroutine: runs its steps in order. */
static void ev_cf_co_main(void) {
  ev_cf_co_t *co = eventer_aco_arg();
  eventer_conformance_run_t *r = co->run;
  eventer_aco_co_t *self = eventer_aco_self();
  if (self) {
    eventer_aco_co_ref(self);
    ev_cf_set_handle(co, self);
  }
  for (int k = 0; k < co->nsteps; k++) {
    if (atomic_load(&r->aborted)) break;
    ev_cf_step_t *s = &r->steps[co->steps[k]];
    eventer_conformance_call_t call = {r, s, co, 0};
    s->start_ns = (int64_t)(eventer_mono_ns() - r->t0);
    errno = 0;
    int rv = s->fn(&call);
    int err = errno;
    s->end_ns = (int64_t)(eventer_mono_ns() - r->t0);
    if (!call.result_set) {
      if (rv == 0) snprintf(s->result, EV_CF_RESULT_MAX, "ok");
      else snprintf(s->result, EV_CF_RESULT_MAX, "%s", eventer_conformance_errname(err));
    }
    ev_cf_record(r, co->steps[k]);
  }
  atomic_fetch_sub(&r->live, 1);
  ev_cf_run_unref(r);
}

static void ev_cf_starter_run(eventer_task_t *t, struct timeval *now) {
  (void)now;
  ev_cf_starter_t *st = (ev_cf_starter_t *)t;
  eventer_conformance_run_t *r = st->run;
  for (int i = 0; i < r->ncos; i++) {
    ev_cf_co_t *co = &r->cos[i];
    if (co->loop != st->loop || co->manual) continue;
    atomic_store(&co->started, 1);
    /* main context of the loop: it runs at once, until it first waits */
    eventer_aco_start(ev_cf_co_main, co);
  }
}

int eventer_conformance_run_start(eventer_conformance_run_t *r) {
  if (!r || atomic_load(&r->started) || eventer_in_loop()) {
    errno = EINVAL;
    return -1;
  }
  r->trace = calloc((size_t)r->nsteps + 1, sizeof(*r->trace));
  if (!r->trace) return -1;
  for (int i = 0; i <= r->nsteps; i++) atomic_init(&r->trace[i], -1);
  int n = 0;
  for (int i = 0; i < r->ncos; i++) n += !r->cos[i].manual;
  /* counted before any starts, so that done never shows early */
  atomic_store(&r->live, n);
  atomic_fetch_add(&r->refs, n);
  r->t0 = eventer_mono_ns();
  atomic_store(&r->started, 1);
  eventer_pool_t *pool = eventer_pool("default");
  for (int l = 0; l < r->nloops; l++) {
    int any = 0;
    for (int i = 0; i < r->ncos; i++) any |= r->cos[i].loop == l && !r->cos[i].manual;
    if (!any) continue;
    r->starters[l] = (ev_cf_starter_t){{NULL, ev_cf_starter_run}, r, l};
    if (eventer_task_post_to(eventer_pool_loop(pool, l), &r->starters[l].t) != 0) {
      /* cannot happen with a valid loop; give up loudly rather than hang */
      mtevL(mtev_error, "conformance: cannot post to loop %d: %s\n", l, strerror(errno));
      abort();
    }
  }
  return 0;
}

int ev_cf_start_co(eventer_conformance_run_t *r, ev_cf_co_t *co, size_t stack) {
  int was = 0;
  if (!atomic_compare_exchange_strong(&co->started, &was, 1)) {
    errno = EALREADY;
    return -1;
  }
  atomic_fetch_add(&r->live, 1);
  atomic_fetch_add(&r->refs, 1);
  if (stack) {
    /* on the calling loop (ev_cf_start_co's caller checked it); the
     * coroutine takes its handle itself (eventer_aco_self) */
    eventer_aco_start_stack(ev_cf_co_main, co, stack);
    return 0;
  }
  eventer_aco_opts_t o = {.loop = eventer_pool_loop(eventer_pool("default"), co->loop),
                          .name = co->name};
  eventer_aco_co_t *h = eventer_aco_spawn(ev_cf_co_main, co, &o);
  if (!h) {
    int err = errno;
    atomic_fetch_sub(&r->live, 1);
    ev_cf_run_unref(r);
    errno = err;
    return -1;
  }
  ev_cf_set_handle(co, h);
  return 0;
}

int eventer_conformance_run_done(eventer_conformance_run_t *r) {
  return r && atomic_load(&r->started) && atomic_load(&r->live) == 0;
}

void eventer_conformance_run_abort(eventer_conformance_run_t *r) {
  if (!r) return;
  atomic_store(&r->aborted, 1);
  for (int i = 0; i < r->ncos; i++) {
    eventer_aco_co_t *h = atomic_load(&r->cos[i].handle);
    if (h && !eventer_aco_co_done(h)) eventer_aco_cancel(h);
  }
}

int eventer_conformance_run_entry(eventer_conformance_run_t *r, int i,
                                  eventer_conformance_entry_t *out) {
  if (!r || !r->trace || i < 0 || i >= r->nsteps || !out) return -1;
  int step = atomic_load_explicit(&r->trace[i], memory_order_acquire);
  if (step < 0) return -1;
  ev_cf_step_t *s = &r->steps[step];
  *out = (eventer_conformance_entry_t){step, s->co, s->result, s->start_ns, s->end_ns};
  return 0;
}

/* ---- objects ------------------------------------------------------------------------------ */

void ev_cf_lock(eventer_conformance_run_t *r) { pthread_mutex_lock(&r->mu); }
void ev_cf_unlock(eventer_conformance_run_t *r) { pthread_mutex_unlock(&r->mu); }

void ev_cf_release(ev_cf_obj_t *o) {
  switch (o->kind) {
  case EV_CF_FD:
    if (o->fd >= 0) close(o->fd);
    break;
  case EV_CF_ACO:
    eventer_aco_close(o->aco); /* EBADF if the scenario closed it */
    eventer_aco_free(o->aco);
    break;
  case EV_CF_OBJ:
    if (o->free_fn) o->free_fn(o->p);
    break;
  }
  o->kind = EV_CF_NONE;
  o->fd = -1;
  o->aco = NULL;
  o->p = NULL;
  o->type = NULL;
  o->free_fn = NULL;
  o->loop = -1;
}

ev_cf_obj_t *ev_cf_slot(eventer_conformance_call_t *c, int i) {
  if (!c || i < 0 || i >= c->s->argc + c->s->nopts || c->s->ref[i] < 0 ||
      c->s->ref[i] >= c->run->nobjs) {
    errno = EINVAL;
    return NULL;
  }
  return &c->run->objs[c->s->ref[i]];
}

static int ev_cf_set(eventer_conformance_call_t *c, int i, int kind, int fd,
                     eventer_aco_t e, void *p, const char *type, void (*free_fn)(void *)) {
  ev_cf_obj_t *o = ev_cf_slot(c, i);
  if (!o) return -1;
  ev_cf_lock(c->run);
  ev_cf_obj_t old = *o;
  o->kind = kind;
  o->fd = fd;
  o->aco = e;
  o->p = p;
  o->type = type;
  o->free_fn = free_fn;
  o->loop = ev_cf_current_loop();
  ev_cf_unlock(c->run);
  /* the same thing again (an fd turned into its aco event) is not released */
  if (!(old.kind == EV_CF_FD && kind == EV_CF_ACO) && !(old.kind == kind && old.p == p && old.aco == e && old.fd == fd))
    ev_cf_release(&old);
  return 0;
}

int eventer_conformance_set_fd(eventer_conformance_call_t *c, int i, int fd) {
  return ev_cf_set(c, i, EV_CF_FD, fd, NULL, NULL, NULL, NULL);
}
int eventer_conformance_set_aco(eventer_conformance_call_t *c, int i, eventer_aco_t e) {
  if (!e) {
    errno = EINVAL;
    return -1;
  }
  return ev_cf_set(c, i, EV_CF_ACO, eventer_get_fd((eventer_t)e), e, NULL, NULL, NULL);
}
int eventer_conformance_set_obj(eventer_conformance_call_t *c, int i, void *p,
                                void (*free_fn)(void *)) {
  return ev_cf_set(c, i, EV_CF_OBJ, -1, NULL, p, "user", free_fn);
}
int ev_cf_set_typed(eventer_conformance_call_t *c, int i, const char *type, void *p,
                    void (*free_fn)(void *)) {
  return ev_cf_set(c, i, EV_CF_OBJ, -1, NULL, p, type, free_fn);
}

int eventer_conformance_forget(eventer_conformance_call_t *c, int i) {
  ev_cf_obj_t *o = ev_cf_slot(c, i);
  if (!o) return -1;
  ev_cf_lock(c->run);
  int had = o->kind != EV_CF_NONE;
  o->kind = EV_CF_NONE;
  o->fd = -1;
  o->aco = NULL;
  o->p = NULL;
  ev_cf_unlock(c->run);
  if (!had) {
    errno = ENOENT;
    return -1;
  }
  return 0;
}

/* reads slot i under the lock: its kind must be `kind` */
static int ev_cf_get(eventer_conformance_call_t *c, int i, int kind, ev_cf_obj_t *out) {
  ev_cf_obj_t *o = ev_cf_slot(c, i);
  if (!o) return -1;
  ev_cf_lock(c->run);
  *out = *o;
  ev_cf_unlock(c->run);
  if (out->kind == EV_CF_NONE) {
    errno = ENOENT;
    return -1;
  }
  if (out->kind != kind) {
    errno = EINVAL;
    return -1;
  }
  return 0;
}

int eventer_conformance_fd(eventer_conformance_call_t *c, int i) {
  ev_cf_obj_t o;
  ev_cf_obj_t *slot = ev_cf_slot(c, i);
  if (!slot) return -1;
  ev_cf_lock(c->run);
  o = *slot;
  ev_cf_unlock(c->run);
  if (o.kind == EV_CF_FD || o.kind == EV_CF_ACO) return o.fd;
  errno = o.kind == EV_CF_NONE ? ENOENT : EINVAL;
  return -1;
}

eventer_aco_t eventer_conformance_aco(eventer_conformance_call_t *c, int i) {
  ev_cf_obj_t o;
  return ev_cf_get(c, i, EV_CF_ACO, &o) == 0 ? o.aco : NULL;
}

void *eventer_conformance_obj(eventer_conformance_call_t *c, int i) {
  ev_cf_obj_t o;
  return ev_cf_get(c, i, EV_CF_OBJ, &o) == 0 ? o.p : NULL;
}

void *ev_cf_typed(eventer_conformance_call_t *c, int i, const char *type) {
  ev_cf_obj_t o;
  if (ev_cf_get(c, i, EV_CF_OBJ, &o) != 0) return NULL;
  if (strcmp(o.type, type) != 0) {
    errno = EINVAL;
    return NULL;
  }
  return o.p;
}

int eventer_conformance_addr(eventer_conformance_call_t *c, int i,
                             struct sockaddr_storage *sa, socklen_t *len) {
  ev_cf_obj_t *o = ev_cf_slot(c, i);
  if (!o || !sa || !len) {
    errno = EINVAL;
    return -1;
  }
  ev_cf_lock(c->run);
  int ok = o->has_addr;
  if (ok) {
    *sa = o->addr;
    *len = o->addrlen;
  }
  ev_cf_unlock(c->run);
  if (!ok) {
    errno = ENOENT;
    return -1;
  }
  return 0;
}

/* internal: the listening address of slot i (listen, listener) */
int ev_cf_set_addr(eventer_conformance_call_t *c, int i, const struct sockaddr *sa,
                   socklen_t len) {
  ev_cf_obj_t *o = ev_cf_slot(c, i);
  if (!o || len > sizeof(o->addr)) {
    errno = EINVAL;
    return -1;
  }
  ev_cf_lock(c->run);
  memcpy(&o->addr, sa, len);
  o->addrlen = len;
  o->has_addr = 1;
  ev_cf_unlock(c->run);
  return 0;
}

eventer_aco_co_t *eventer_conformance_co(eventer_conformance_call_t *c, int i) {
  if (!c || i < 0 || i >= c->s->argc || c->s->ref[i] >= c->run->ncos) {
    errno = EINVAL;
    return NULL;
  }
  int k = c->s->ref[i];
  ev_cf_co_t *co = k < 0 ? c->co : &c->run->cos[k];
  eventer_aco_co_t *h = atomic_load(&co->handle);
  if (!h) errno = ESRCH;
  return h;
}

/* internal: the scenario coroutine argument i names (NULL: self) */
ev_cf_co_t *ev_cf_co_arg(eventer_conformance_call_t *c, int i) {
  if (!c || i < 0 || i >= c->s->argc || c->s->ref[i] >= c->run->ncos) return NULL;
  int k = c->s->ref[i];
  return k < 0 ? c->co : &c->run->cos[k];
}

void ev_cf_unique(eventer_conformance_call_t *c, const char *name, char *out, size_t len) {
  snprintf(out, len, "cf%u_%s", c->run->id, name);
}

/* ---- arguments and results -------------------------------------------------------------------- */

const char *eventer_conformance_step(eventer_conformance_call_t *c) {
  return c ? c->s->name : NULL;
}
int eventer_conformance_argc(eventer_conformance_call_t *c) { return c ? c->s->argc : 0; }
const char *eventer_conformance_arg(eventer_conformance_call_t *c, int i) {
  if (!c || i < 0 || i >= c->s->argc) return NULL;
  return c->s->argv[i];
}
long long eventer_conformance_arg_int(eventer_conformance_call_t *c, int i) {
  const char *a = eventer_conformance_arg(c, i);
  return a ? strtoll(a, NULL, 10) : 0;
}

static struct timeval *ev_cf_us_tv(const char *us, struct timeval *tv) {
  if (!us || !tv) return NULL;
  long long v = strtoll(us, NULL, 10);
  if (v < 0) v = 0;
  tv->tv_sec = (time_t)(v / 1000000);
  tv->tv_usec = (suseconds_t)(v % 1000000);
  return tv;
}

struct timeval *eventer_conformance_arg_tv(eventer_conformance_call_t *c, int i,
                                           struct timeval *tv) {
  return ev_cf_us_tv(eventer_conformance_arg(c, i), tv);
}

int eventer_conformance_opt_arg(eventer_conformance_call_t *c, const char *key) {
  if (!c || !key) return -1;
  for (int i = 0; i < c->s->nopts; i++)
    if (strcmp(c->s->keys[i], key) == 0) return c->s->argc + i;
  return -1;
}

const char *eventer_conformance_opt(eventer_conformance_call_t *c, const char *key) {
  if (!c || !key) return NULL;
  for (int i = 0; i < c->s->nopts; i++)
    if (strcmp(c->s->keys[i], key) == 0) return c->s->vals[i];
  return NULL;
}

struct timeval *eventer_conformance_opt_tv(eventer_conformance_call_t *c, const char *key,
                                           struct timeval *tv) {
  return ev_cf_us_tv(eventer_conformance_opt(c, key), tv);
}

void eventer_conformance_result(eventer_conformance_call_t *c, const char *fmt, ...) {
  if (!c || !fmt) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->s->result, EV_CF_RESULT_MAX, fmt, ap);
  va_end(ap);
  c->result_set = 1;
}

void eventer_conformance_result_bytes(eventer_conformance_call_t *c, const char *key,
                                      const void *p, size_t n) {
  if (!c) return;
  size_t k = (size_t)snprintf(c->s->result, EV_CF_RESULT_MAX, "%s=", key ? key : "data");
  if (k < EV_CF_RESULT_MAX) eventer_conformance_quote(c->s->result + k, EV_CF_RESULT_MAX - k, p, n);
  c->result_set = 1;
}

/* ---- cleanup and free ---------------------------------------------------------------------------- */

typedef struct {
  eventer_conformance_run_t *r;
  int loop;
  atomic_int done;
} ev_cf_cleaner_t;

static void ev_cf_cleaner(void) {
  ev_cf_cleaner_t *cl = eventer_aco_arg();
  eventer_conformance_run_t *r = cl->r;
  for (int i = 0; i < r->nobjs; i++) {
    ev_cf_lock(r);
    ev_cf_obj_t o = r->objs[i];
    int mine = o.kind != EV_CF_NONE && o.loop == cl->loop;
    if (mine) {
      r->objs[i].kind = EV_CF_NONE;
      r->objs[i].loop = -1;
    }
    ev_cf_unlock(r);
    if (mine) ev_cf_release(&o);
  }
  atomic_store(&cl->done, 1);
}

int eventer_conformance_run_cleanup(eventer_conformance_run_t *r) {
  if (!r || eventer_in_loop()) {
    errno = EINVAL;
    return -1;
  }
  int rv = 0;
  ev_cf_cleaner_t *cl = calloc((size_t)r->nloops, sizeof(*cl));
  if (!cl) return -1;
  eventer_pool_t *pool = eventer_pool("default");
  int spawned = 0;
  for (int l = 0; l < r->nloops; l++) {
    cl[l].r = r;
    cl[l].loop = l;
    atomic_init(&cl[l].done, 1);
    int any = 0;
    ev_cf_lock(r);
    for (int i = 0; i < r->nobjs; i++)
      any |= r->objs[i].kind != EV_CF_NONE && r->objs[i].loop == l;
    ev_cf_unlock(r);
    if (!any) continue;
    atomic_store(&cl[l].done, 0);
    eventer_aco_opts_t o = {.loop = eventer_pool_loop(pool, l), .name = "conformance cleanup"};
    eventer_aco_co_t *h = eventer_aco_spawn(ev_cf_cleaner, &cl[l], &o);
    if (!h) {
      atomic_store(&cl[l].done, 1);
      rv = -1;
      continue;
    }
    eventer_aco_co_release(h);
    spawned = 1;
  }
  /* what no loop made (or a loop made and forgot): here */
  for (int i = 0; i < r->nobjs; i++) {
    ev_cf_lock(r);
    ev_cf_obj_t o = r->objs[i];
    int here = o.kind != EV_CF_NONE && (o.loop < 0 || o.loop >= r->nloops);
    if (here) r->objs[i].kind = EV_CF_NONE;
    ev_cf_unlock(r);
    if (here) ev_cf_release(&o);
  }
  if (spawned) {
    struct timespec ms = {0, 1000000};
    for (int waited = 0;; waited++) {
      int all = 1;
      for (int l = 0; l < r->nloops; l++) all &= atomic_load(&cl[l].done);
      if (all) break;
      if (waited >= 10000) {
        /* leak the cleaners' state rather than free it under them */
        errno = ETIMEDOUT;
        return -1;
      }
      nanosleep(&ms, NULL);
    }
  }
  free(cl);
  return rv;
}

static void ev_cf_run_destroy(eventer_conformance_run_t *r) {
  for (int i = 0; i < r->nsteps; i++) {
    ev_cf_step_t *s = &r->steps[i];
    for (int k = 0; k < s->argc; k++) free(s->argv[k]);
    for (int k = 0; k < s->nopts; k++) {
      free(s->keys[k]);
      free(s->vals[k]);
    }
    free(s->name);
    free(s->argv);
    free(s->ref);
    free(s->keys);
    free(s->vals);
    free(s->result);
  }
  for (int i = 0; i < r->ncos; i++) {
    eventer_aco_co_t *h = atomic_load(&r->cos[i].handle);
    if (h) eventer_aco_co_release(h);
    free(r->cos[i].name);
    free(r->cos[i].steps);
  }
  pthread_mutex_destroy(&r->mu);
  free(r->steps);
  free(r->cos);
  free(r->objs);
  free(r->trace);
  free(r->starters);
  free(r);
}

static void ev_cf_run_unref(eventer_conformance_run_t *r) {
  if (atomic_fetch_sub(&r->refs, 1) == 1) ev_cf_run_destroy(r);
}

void eventer_conformance_run_free(eventer_conformance_run_t *r) {
  if (r) ev_cf_run_unref(r);
}
