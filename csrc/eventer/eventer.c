/*
 * eventer.c - events: allocation, references, accessors, callback names,
 * the process-wide fd table, and registration (add / remove / update /
 * trigger), routed to the owner loop's thread.
 *
 * Ownership of the "eventer reference": eventer_add() takes the caller's
 * reference and it belongs to wherever the event is registered (fd table,
 * timer heap, recurrent list, a queued xtask, a job queue).  Every
 * transition below moves that one reference; the loop's extra hold during
 * a callback lives in eventer_loop.c.
 */
#include "eventer_impl.h"

#include <pthread.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- layers (see ev_layer_t) --------------------------------------------------- */

static const ev_layer_t *ev_layers[EV_MAX_LAYERS];
static int ev_nlayers; /* __atomic: slot first, then the count */
static pthread_mutex_t ev_layers_lock = PTHREAD_MUTEX_INITIALIZER;

void ev_layer_register(const ev_layer_t *layer) {
  pthread_mutex_lock(&ev_layers_lock);
  int n = ev_nlayers, found = 0;
  for (int i = 0; i < n; i++) found |= ev_layers[i] == layer;
  if (!found) {
    EV_ASSERT(n < EV_MAX_LAYERS, "at most EV_MAX_LAYERS layers register");
    ev_layers[n] = layer;
    __atomic_store_n(&ev_nlayers, n + 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&ev_layers_lock);
}

/* the registered layers (a slot is written before the count that shows
 * it, so a reader that loads the count sees its slots) */
static int ev_layer_count(void) {
  return __atomic_load_n(&ev_nlayers, __ATOMIC_ACQUIRE);
}

void ev_layers_fini_begin(void) {
  for (int i = 0, n = ev_layer_count(); i < n; i++)
    if (ev_layers[i]->fini_begin) ev_layers[i]->fini_begin();
}

void ev_layers_loop_fini(ev_loop_t *l) {
  for (int i = 0, n = ev_layer_count(); i < n; i++)
    if (ev_layers[i]->loop_fini) ev_layers[i]->loop_fini(l);
}

static void ev_layers_task_discard(eventer_task_t *t) {
  for (int i = 0, n = ev_layer_count(); i < n; i++)
    if (ev_layers[i]->task_discard && ev_layers[i]->task_discard(t)) return;
}

void ev_layers_hook_discard(ev_pass_hook_t *h) {
  for (int i = 0, n = ev_layer_count(); i < n; i++)
    if (ev_layers[i]->hook_discard && ev_layers[i]->hook_discard(h)) return;
}

static int64_t ev_live;  /* __atomic */
static int64_t ev_total; /* __atomic */

/* ---- the fd table ------------------------------------------------------------
 * fd -> registered event, process-wide because fd numbers are (libmtev's
 * eventer_find_fd/eventer_remove_fd take only an fd).  Two levels so it
 * grows with the fds actually used and never moves a slot: readers on any
 * thread load a chunk pointer and a slot without a lock.  Each chunk also
 * records, per fd, the loop the event is registered on (fdowner), so that
 * a thread other than that loop's can route a request to it without
 * touching the event, which the owner may free at any moment. */
/* (EV_FDTAB_CHUNK_BITS, EV_FDTAB_CHUNK, EV_FDTAB_CHUNKS and the loop's
 * inline lookup ev_fd_lookup are in eventer_impl.h) */
eventer_t *ev_fdtab[EV_FDTAB_CHUNKS];
static pthread_mutex_t ev_fdtab_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t ev_epoch_ctr; /* __atomic: registration epochs */

static eventer_t *fdslot(int fd, int create) {
  if (fd < 0 || (unsigned)fd >= EV_FDTAB_CHUNKS * EV_FDTAB_CHUNK) return NULL;
  unsigned ci = (unsigned)fd >> EV_FDTAB_CHUNK_BITS;
  eventer_t *chunk = EV_LOAD(&ev_fdtab[ci]);
  if (!chunk && create) {
    pthread_mutex_lock(&ev_fdtab_lock);
    chunk = ev_fdtab[ci];
    if (!chunk) {
      /* the events, then their owner loops */
      chunk = calloc(2 * EV_FDTAB_CHUNK, sizeof(*chunk));
      /* publish the zeroed chunk before anyone can see its pointer */
      if (chunk) EV_STORE(&ev_fdtab[ci], chunk);
    }
    pthread_mutex_unlock(&ev_fdtab_lock);
  }
  return chunk ? &chunk[(unsigned)fd & (EV_FDTAB_CHUNK - 1)] : NULL;
}

/* The owner-loop slot of an fd slot (same chunk, second half). */
static ev_loop_t **fdowner(eventer_t *slot) {
  return (ev_loop_t **)(void *)(slot + EV_FDTAB_CHUNK);
}

void ev_fdtab_reset(void) {
  for (unsigned i = 0; i < EV_FDTAB_CHUNKS; i++) {
    free(ev_fdtab[i]);
    ev_fdtab[i] = NULL;
  }
}

/* Empties a slot.  Under ev_fdtab_lock so that eventer_foreach_fdevent,
 * which references what it finds under the same lock, never finds an
 * event whose registration reference is already gone. */
static void fdslot_clear(eventer_t *slot) {
  pthread_mutex_lock(&ev_fdtab_lock);
  EV_STORE(slot, NULL);
  pthread_mutex_unlock(&ev_fdtab_lock);
}

void eventer_foreach_fdevent(void (*fn)(eventer_t e, void *closure),
                             void *closure) {
  if (!fn) return;
  size_t n = 0, cap = 0;
  eventer_t *found = NULL;
  pthread_mutex_lock(&ev_fdtab_lock);
  for (unsigned ci = 0; ci < EV_FDTAB_CHUNKS; ci++) {
    eventer_t *chunk = ev_fdtab[ci];
    if (!chunk) continue;
    for (unsigned i = 0; i < EV_FDTAB_CHUNK; i++) {
      eventer_t e = EV_LOAD(&chunk[i]);
      if (!e) continue;
      if (n == cap) {
        size_t ncap = cap ? cap * 2 : 64;
        eventer_t *nf = realloc(found, ncap * sizeof(*nf));
        if (!nf) {
          mtevL(eventer_err, "eventer_foreach_fdevent: out of memory after"
                " %zu events\n", n);
          goto collected;
        }
        found = nf;
        cap = ncap;
      }
      eventer_ref(e);
      found[n++] = e;
    }
  }
collected:
  pthread_mutex_unlock(&ev_fdtab_lock);
  for (size_t i = 0; i < n; i++) {
    fn(found[i], closure);
    eventer_deref(found[i]);
  }
  free(found);
}

static uint64_t fd_token(eventer_t e) {
  return ((uint64_t)e->reg_epoch << 32) | (uint32_t)e->fd;
}

/* ---- allocation and references ------------------------------------------------- */

static eventer_t ev_new(void) {
  eventer_t e = calloc(1, sizeof(*e));
  if (!e) {
    errno = ENOMEM;
    return NULL;
  }
  e->refcnt = 1;
  e->fd = -1;
  e->opset = eventer_POSIX_fd_opset;
  /* NULL (off-loop) means "loop 0 of the default pool", resolved when the
   * event is used, so events can be made before eventer_init(). */
  e->owner = ev_loop_self();
  __atomic_add_fetch(&ev_live, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&ev_total, 1, __ATOMIC_RELAXED);
  ev_ctx_on_alloc(e);
  return e;
}

eventer_t eventer_alloc(void) { return ev_new(); }

eventer_t eventer_alloc_copy(eventer_t src) {
  if (!src) {
    errno = EINVAL;
    return NULL;
  }
  eventer_t e = ev_new();
  if (!e) return NULL;
  e->callback = src->callback;
  e->closure = src->closure;
  e->whence = src->whence;
  e->fd = src->fd;
  e->mask = src->mask;
  e->opset = src->opset;
  e->opset_ctx = src->opset_ctx;
  e->owner = EV_LOAD_RELAXED(&src->owner);
  for (int i = 0, n = ev_layer_count(); i < n; i++)
    if (ev_layers[i]->event_copy) ev_layers[i]->event_copy(e, src);
  ev_ctx_on_copy(e, src);
  return e;
}

/* A new event with its callback and mask; EINVAL without a callback. */
static eventer_t ev_new_cb(eventer_func_t func, void *closure, int mask) {
  if (!func) {
    errno = EINVAL;
    return NULL;
  }
  eventer_t e = ev_new();
  if (!e) return NULL;
  e->callback = func;
  e->closure = closure;
  e->mask = mask;
  return e;
}

eventer_t eventer_alloc_fd(eventer_func_t func, void *closure, int fd,
                           int mask) {
  if (fd < 0 || !(mask & (EVENTER_READ | EVENTER_WRITE | EVENTER_EXCEPTION)) ||
      (mask & ~(EVENTER_READ | EVENTER_WRITE | EVENTER_EXCEPTION))) {
    errno = EINVAL;
    return NULL;
  }
  eventer_t e = ev_new_cb(func, closure, mask);
  if (e) {
    e->fd = fd;
    ev_posix_fd_fresh(fd); /* the number may have been a pipe's */
  }
  return e;
}

eventer_t eventer_alloc_timer(eventer_func_t func, void *closure,
                              struct timeval *whence) {
  eventer_t e = ev_new_cb(func, closure, EVENTER_TIMER);
  if (e && whence) e->whence = *whence;
  return e;
}

eventer_t eventer_alloc_recurrent(eventer_func_t func, void *closure) {
  return ev_new_cb(func, closure, EVENTER_RECURRENT);
}

eventer_t eventer_alloc_asynch(eventer_func_t func, void *closure) {
  return ev_new_cb(func, closure, EVENTER_ASYNCH);
}

eventer_t eventer_alloc_asynch_timeout(eventer_func_t func, void *closure,
                                       struct timeval *deadline) {
  eventer_t e = eventer_alloc_asynch(func, closure);
  if (e && deadline) e->whence = *deadline;
  return e;
}

void eventer_ref(eventer_t e) {
  if (!e) return;
  int old = __atomic_fetch_add(&e->refcnt, 1, __ATOMIC_RELAXED);
  EV_ASSERT(old > 0, "eventer_ref on an event that was already freed");
}

int ev_deref_n(eventer_t e, int n) {
  /* acq_rel: the thread that frees must see every other thread's writes */
  int left = __atomic_sub_fetch(&e->refcnt, n, __ATOMIC_ACQ_REL);
  if (left < 0)
    mtevFatal(mtev_error,
              "eventer: event %p (callback %s) was dereferenced more often "
              "than referenced: a double eventer_free, or a free of a "
              "reference the eventer owns (after returning 0 the loop frees "
              "the event itself)\n",
              (void *)e, eventer_name_for_callback(e->callback));
  if (left > 0) return 0;
  EV_ASSERT(EV_LOAD(&e->state) == EV_ST_NONE,
            "an event is freed only when no loop, queue or job holds it "
            "(the eventer's reference was dropped by someone else)");
  ev_ctx_on_free(e);
  for (int i = 0, n = ev_layer_count(); i < n; i++)
    if (ev_layers[i]->event_free) ev_layers[i]->event_free(e);
  free(e);
  __atomic_sub_fetch(&ev_live, 1, __ATOMIC_RELAXED);
  return 1;
}

mtev_boolean eventer_deref(eventer_t e) {
  return (e && ev_deref_n(e, 1)) ? mtev_true : mtev_false;
}

mtev_boolean eventer_free(eventer_t e) { return eventer_deref(e); }

int64_t eventer_allocations_current(void) {
  return __atomic_load_n(&ev_live, __ATOMIC_RELAXED);
}

int64_t eventer_allocations_total(void) {
  return __atomic_load_n(&ev_total, __ATOMIC_RELAXED);
}

/* ---- accessors ---------------------------------------------------------------- */

int eventer_get_fd(eventer_t e) { return e ? e->fd : -1; }
int eventer_get_mask(eventer_t e) { return e ? e->mask : 0; }
void eventer_set_mask(eventer_t e, int mask) {
  if (e) e->mask = mask;
}
void *eventer_get_closure(eventer_t e) { return e ? e->closure : NULL; }
void eventer_set_closure(eventer_t e, void *closure) {
  if (e) e->closure = closure;
}
eventer_func_t eventer_get_callback(eventer_t e) {
  return e ? e->callback : NULL;
}
void eventer_set_callback(eventer_t e, eventer_func_t func) {
  if (e) e->callback = func;
}
struct timeval eventer_get_whence(eventer_t e) {
  struct timeval zero = {0, 0};
  return e ? e->whence : zero;
}
eventer_fd_opset_t eventer_get_fd_opset(eventer_t e) {
  return e ? e->opset : NULL;
}
void eventer_set_fd_opset(eventer_t e, eventer_fd_opset_t opset) {
  if (e) e->opset = opset;
}
void *eventer_get_fd_opset_ctx(eventer_t e) { return e ? e->opset_ctx : NULL; }
void eventer_set_fd_opset_ctx(eventer_t e, void *ctx) {
  if (e) e->opset_ctx = ctx;
}

pthread_t eventer_get_owner(eventer_t e) {
  ev_loop_t *l = e ? ev_event_owner(e) : NULL;
  if (!l || !EV_LOAD(&l->bound)) return (pthread_t)0;
  return l->thread;
}

eventer_loop_t *eventer_get_owner_loop(eventer_t e) {
  return e ? ev_event_owner(e) : NULL;
}

int eventer_set_owner_loop(eventer_t e, eventer_loop_t *loop) {
  if (!e || !loop) {
    errno = EINVAL;
    return -1;
  }
  int st = EV_LOAD(&e->state);
  if (st != EV_ST_NONE) {
    /* A registered fd event may be re-owned from inside its own callback:
     * it migrates when the callback returns a mask (libmtev's idiom).
     * Anywhere else the registration would be left on the old loop. */
    ev_loop_t *self = ev_loop_self();
    if (!(st == EV_ST_FD && self && self == ev_event_owner(e) &&
          self->current == e)) {
      errno = EBUSY;
      return -1;
    }
  }
  EV_STORE(&e->owner, loop);
  return 0;
}

int eventer_set_owner_ex(eventer_t e, pthread_t t) {
  ev_loop_t *l = ev_loop_by_thread(t);
  if (!l) {
    errno = EINVAL;
    return -1;
  }
  return eventer_set_owner_loop(e, l);
}

/* The void forms of libmtev's calls: a failure is a programming error the
 * caller cannot see, so it is said loudly. */
static void ev_log_failed(const char *call, eventer_t e) {
  int saved = errno;
  mtevL(eventer_err, "eventer: %s(%p, callback %s) failed: %s\n", call,
        (void *)e, e ? eventer_name_for_callback(e->callback) : "-",
        strerror(saved));
  errno = saved;
}

void eventer_set_owner(eventer_t e, pthread_t t) {
  if (eventer_set_owner_ex(e, t) != 0) ev_log_failed("eventer_set_owner", e);
}

int eventer_thread_check(eventer_t e) {
  ev_loop_t *l = e ? ev_event_owner(e) : NULL;
  return (l && l == ev_loop_self()) ? 0 : 1;
}

eventer_pool_t *eventer_get_pool_for_event(eventer_t e) {
  ev_loop_t *l = e ? ev_event_owner(e) : NULL;
  return l ? l->pool : NULL;
}

/* ---- opsets --------------------------------------------------------------------- */

int eventer_read(eventer_t e, void *buf, size_t len, int *mask) {
  if (!e || !e->opset) {
    errno = EINVAL;
    return -1;
  }
  return e->opset->read(e->fd, buf, len, mask, e);
}

int eventer_write(eventer_t e, const void *buf, size_t len, int *mask) {
  if (!e || !e->opset) {
    errno = EINVAL;
    return -1;
  }
  return e->opset->write(e->fd, buf, len, mask, e);
}

int eventer_accept(eventer_t e, struct sockaddr *addr, socklen_t *len,
                   int *mask) {
  if (!e || !e->opset) {
    errno = EINVAL;
    return -1;
  }
  return e->opset->accept(e->fd, addr, len, mask, e);
}

int eventer_close(eventer_t e, int *mask) {
  if (!e || !e->opset) {
    errno = EINVAL;
    return -1;
  }
  return e->opset->close(e->fd, mask, e);
}

eventer_fd_accept_t eventer_fd_opset_get_accept(eventer_fd_opset_t o) {
  return o ? o->accept : NULL;
}
eventer_fd_read_t eventer_fd_opset_get_read(eventer_fd_opset_t o) {
  return o ? o->read : NULL;
}
eventer_fd_write_t eventer_fd_opset_get_write(eventer_fd_opset_t o) {
  return o ? o->write : NULL;
}
eventer_fd_close_t eventer_fd_opset_get_close(eventer_fd_opset_t o) {
  return o ? o->close : NULL;
}

static int set_fl(int fd, int on) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return -1;
  int nfl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  if (nfl != fl && fcntl(fd, F_SETFL, nfl) < 0) return -1;
  return 0;
}
int eventer_set_fd_nonblocking(int fd) { return set_fl(fd, 1); }
int eventer_set_fd_blocking(int fd) { return set_fl(fd, 0); }

/* ---- callback names and foreign callbacks ------------------------------------------ */

static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;
typedef void (*ev_describer_t)(char *buff, int bufflen, eventer_t e,
                               void *closure);
static struct ev_cbname {
  eventer_func_t f;
  char *name;
  ev_describer_t describe; /* eventer_name_callback_ext, or NULL */
  void *describe_closure;
} *names;
static size_t nnames, names_cap;

int eventer_name_callback(const char *name, eventer_func_t f) {
  return eventer_name_callback_ext(name, f, NULL, NULL);
}

int eventer_name_callback_ext(const char *name, eventer_func_t f,
                              ev_describer_t fn, void *closure) {
  if (!name || !f) {
    errno = EINVAL;
    return -1;
  }
  char *copy = strdup(name);
  if (!copy) return -1;
  pthread_mutex_lock(&names_lock);
  for (size_t i = 0; i < nnames; i++)
    if (names[i].f == f) {
      free(names[i].name);
      names[i].name = copy;
      names[i].describe = fn;
      names[i].describe_closure = closure;
      pthread_mutex_unlock(&names_lock);
      return 0;
    }
  if (nnames == names_cap) {
    size_t cap = names_cap ? names_cap * 2 : 16;
    struct ev_cbname *n = realloc(names, cap * sizeof(*n));
    if (!n) {
      pthread_mutex_unlock(&names_lock);
      free(copy);
      errno = ENOMEM;
      return -1;
    }
    names = n;
    names_cap = cap;
  }
  names[nnames].f = f;
  names[nnames].name = copy;
  names[nnames].describe = fn;
  names[nnames].describe_closure = closure;
  nnames++;
  pthread_mutex_unlock(&names_lock);
  return 0;
}

const char *eventer_name_for_callback(eventer_func_t f) {
  return eventer_name_for_callback_e(f, NULL);
}

const char *eventer_name_for_callback_e(eventer_func_t f, eventer_t e) {
  static __thread char buf[128];
  int found = 0;
  ev_describer_t describe = NULL;
  void *dclosure = NULL;
  pthread_mutex_lock(&names_lock);
  for (size_t i = 0; i < nnames; i++)
    if (names[i].f == f) {
      snprintf(buf, sizeof(buf), "%s", names[i].name);
      describe = names[i].describe;
      dclosure = names[i].describe_closure;
      found = 1;
      break;
    }
  pthread_mutex_unlock(&names_lock);
  /* the describer runs unlocked: it may name other callbacks */
  if (describe && e) {
    char text[sizeof(buf)];
    text[0] = '\0';
    describe(text, (int)sizeof(text), e, dclosure);
    text[sizeof(text) - 1] = '\0';
    memcpy(buf, text, sizeof(buf));
  }
  /* A function pointer has no portable integer form; print its bytes as
   * an address through a union-free memcpy. */
  if (!found) {
    void *p;
    memcpy(&p, &f, sizeof(p) < sizeof(f) ? sizeof(p) : sizeof(f));
    snprintf(buf, sizeof(buf), "cb@%p", p);
  }
  return buf;
}

eventer_func_t eventer_callback_for_name(const char *name) {
  eventer_func_t f = NULL;
  if (!name) return NULL;
  pthread_mutex_lock(&names_lock);
  for (size_t i = 0; i < nnames; i++)
    if (!strcmp(names[i].name, name)) {
      f = names[i].f;
      break;
    }
  pthread_mutex_unlock(&names_lock);
  return f;
}

void eventer_callback_names(void (*f)(const char *name, eventer_func_t fn,
                                      void *closure),
                            void *closure) {
  if (!f) return;
  /* a snapshot, so f runs without the lock */
  pthread_mutex_lock(&names_lock);
  size_t n = nnames;
  struct ev_cbname *copy = n ? calloc(n, sizeof(*copy)) : NULL;
  for (size_t i = 0; copy && i < n; i++) {
    copy[i].f = names[i].f;
    copy[i].name = strdup(names[i].name);
  }
  pthread_mutex_unlock(&names_lock);
  for (size_t i = 0; copy && i < n; i++) {
    if (copy[i].name) f(copy[i].name, copy[i].f, closure);
    free(copy[i].name);
  }
  free(copy);
}

/* The one registry of foreign callback functions: the loop hands their
 * calls to the driver, and the foreign layer (eventer_aco_proxy.c) owns
 * the closures of the ones registered as boxed. */
#define EV_MAX_FOREIGN 16
static struct {
  eventer_func_t f; /* __atomic */
  int boxed;        /* __atomic */
} foreign_fns[EV_MAX_FOREIGN];
static int nforeign; /* __atomic: a slot is written before the count */
static pthread_mutex_t foreign_lock = PTHREAD_MUTEX_INITIALIZER;

/* The registry slot of f, or -1. */
static int foreign_slot(eventer_func_t f) {
  int n = __atomic_load_n(&nforeign, __ATOMIC_ACQUIRE);
  for (int i = 0; i < n; i++)
    if (__atomic_load_n(&foreign_fns[i].f, __ATOMIC_RELAXED) == f) return i;
  return -1;
}

int ev_callback_set_foreign(eventer_func_t f, int boxed) {
  if (!f) {
    errno = EINVAL;
    return -1;
  }
  pthread_mutex_lock(&foreign_lock);
  int i = foreign_slot(f);
  if (i < 0) {
    i = nforeign;
    if (i == EV_MAX_FOREIGN) {
      pthread_mutex_unlock(&foreign_lock);
      errno = ENOSPC;
      return -1;
    }
    __atomic_store_n(&foreign_fns[i].f, f, __ATOMIC_RELAXED);
    __atomic_store_n(&nforeign, i + 1, __ATOMIC_RELEASE);
  }
  if (boxed) __atomic_store_n(&foreign_fns[i].boxed, 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&foreign_lock);
  return 0;
}

int eventer_callback_set_foreign(eventer_func_t f) {
  return ev_callback_set_foreign(f, 0);
}

int eventer_callback_is_foreign(eventer_func_t f) {
  return f && foreign_slot(f) >= 0;
}

int ev_callback_foreign_boxed(eventer_func_t f) {
  int i = f ? foreign_slot(f) : -1;
  return i >= 0 && __atomic_load_n(&foreign_fns[i].boxed, __ATOMIC_ACQUIRE);
}

/* ---- owner-thread registration ------------------------------------------------------ */

static int is_fd_mask(int mask) {
  return (mask & (EVENTER_READ | EVENTER_WRITE | EVENTER_EXCEPTION)) &&
         !(mask & ~(EVENTER_READ | EVENTER_WRITE | EVENTER_EXCEPTION));
}

static int reg_fd(ev_loop_t *l, eventer_t e) {
  eventer_t *slot = fdslot(e->fd, 1);
  if (!slot) {
    errno = e->fd < 0 ? EINVAL : ENOMEM;
    return -1;
  }
  eventer_t expect = NULL;
  if (!__atomic_compare_exchange_n(slot, &expect, e, 0, __ATOMIC_ACQ_REL,
                                   __ATOMIC_ACQUIRE)) {
    errno = EEXIST; /* another event already holds this fd */
    return -1;
  }
  EV_STORE(fdowner(slot), l);
  e->reg_epoch = __atomic_add_fetch(&ev_epoch_ctr, 1, __ATOMIC_RELAXED);
  if (ev_poll_add(l, e->fd, e->mask, fd_token(e)) != 0) {
    int saved = errno;
    EV_STORE(fdowner(slot), NULL);
    fdslot_clear(slot);
    errno = saved;
    return -1;
  }
  EV_STORE(&e->state, EV_ST_FD);
  return 0;
}

static void recur_append(ev_loop_t *l, eventer_t e) {
  e->recur_next = NULL;
  e->recur_prev = l->recur_tail;
  if (l->recur_tail)
    l->recur_tail->recur_next = e;
  else
    l->recur_head = e;
  l->recur_tail = e;
  /* the pass in progress (if any) has this number: it will skip e */
  e->recur_pass = l->recur_pass;
}

void ev_recur_unlink(ev_loop_t *l, eventer_t e) {
  if (l->recur_cursor == e) l->recur_cursor = e->recur_next;
  if (e->recur_prev)
    e->recur_prev->recur_next = e->recur_next;
  else
    l->recur_head = e->recur_next;
  if (e->recur_next)
    e->recur_next->recur_prev = e->recur_prev;
  else
    l->recur_tail = e->recur_prev;
  e->recur_prev = e->recur_next = NULL;
}

/* Registers e on l by its mask.  The caller holds the registration right
 * (state NONE, or QUEUED being applied). */
int ev_reg_add(ev_loop_t *l, eventer_t e) {
  if (e->mask & EVENTER_TIMER) {
    if (!e->deadline_preset) e->tnode.deadline_ns = ev_deadline_for_whence(&e->whence);
    e->deadline_preset = 0;
    e->tnode.fire = ev_timer_event_fire;
    ev_heap_insert(l, &e->tnode);
    EV_STORE(&e->state, EV_ST_TIMER);
    return 0;
  }
  if (e->mask & EVENTER_RECURRENT) {
    recur_append(l, e);
    EV_STORE(&e->state, EV_ST_RECUR);
    return 0;
  }
  if (is_fd_mask(e->mask) && e->fd >= 0) return reg_fd(l, e);
  errno = EINVAL;
  return -1;
}

eventer_t ev_reg_remove(ev_loop_t *l, eventer_t e) {
  switch (EV_LOAD(&e->state)) {
  case EV_ST_FD: {
    if (__builtin_expect(l->current == e && l->current_unheld, 0)) {
      /* the loop dispatches e relying on this registration's reference,
       * which goes to the remover now: the loop's hold is taken here */
      __atomic_add_fetch(&e->refcnt, 1, __ATOMIC_RELAXED);
      l->current_unheld = 0;
    }
    eventer_t *slot = fdslot(e->fd, 0);
    EV_ASSERT(slot && EV_LOAD(slot) == e,
              "a registered fd event is in the fd table under its fd");
    EV_STORE(fdowner(slot), NULL);
    fdslot_clear(slot);
    ev_poll_del(l, e->fd);
    EV_STORE(&e->state, EV_ST_NONE);
    return e;
  }
  case EV_ST_TIMER:
    ev_heap_remove(l, &e->tnode);
    EV_STORE(&e->state, EV_ST_NONE);
    return e;
  case EV_ST_RECUR:
    ev_recur_unlink(l, e);
    EV_STORE(&e->state, EV_ST_NONE);
    return e;
  case EV_ST_QUEUED:
    /* An add or trigger from another thread may still sit in our
     * cross-thread queue.  Take just that item out (not the whole queue:
     * draining it here would apply the removes queued behind this one,
     * each draining again, as deep as the burst is long). */
    if (ev_inbox_take(l, &e->xtask)) {
      if (e->xop == EV_XOP_ADD) {
        ev_xop_run(&e->xtask, &l->now); /* the add, applied now */
        if (EV_LOAD(&e->state) == EV_ST_NONE) {
          errno = ENOENT; /* the queued add failed (and freed nothing: we
                           * hold no reference here, the caller does) */
          return NULL;
        }
        return ev_reg_remove(l, e); /* registered now: one level */
      }
      EV_STORE(&e->state, EV_ST_NONE); /* a trigger, cancelled */
      return e;
    }
    /* A pending trigger is in our FIFO.  xop is read atomically: when the
     * task is in neither queue, another thread may be writing it now for
     * the add or trigger it has reserved and not posted yet. */
    if (EV_LOAD_RELAXED(&e->xop) == EV_XOP_TRIGGER &&
        ev_fifo_unlink(l, &e->xtask)) {
      EV_STORE(&e->state, EV_ST_NONE);
      return e;
    }
    /* otherwise another thread has reserved the event for an add or a
     * trigger and not posted it yet: the remove came first */
    errno = ENOENT;
    return NULL;
  case EV_ST_JOB:
    errno = EBUSY;
    return NULL;
  default:
    errno = ENOENT;
    return NULL;
  }
}

int ev_reg_update(ev_loop_t *l, eventer_t e, int mask) {
  if (!is_fd_mask(mask)) {
    errno = EINVAL;
    return -1;
  }
  if (EV_LOAD(&e->state) == EV_ST_FD && mask != e->mask) {
    if (ev_poll_mod(l, e->fd, mask, fd_token(e)) != 0) return -1;
  }
  e->mask = mask;
  return 0;
}

void ev_reg_update_whence(ev_loop_t *l, eventer_t e, struct timeval w) {
  e->whence = w;
  e->deadline_preset = 0;
  if (EV_LOAD(&e->state) == EV_ST_TIMER) {
    ev_heap_remove(l, &e->tnode);
    e->tnode.deadline_ns = ev_deadline_for_whence(&w);
    ev_heap_insert(l, &e->tnode);
  }
}

void ev_timer_event_fire(eventer_timer_node_t *n, struct timeval *now) {
  (void)now;
  eventer_t e = EV_CONTAINER_OF(n, struct _event, tnode);
  EV_ASSERT(EV_LOAD(&e->state) == EV_ST_TIMER, "a firing timer event is"
                                               " registered as a timer");
  EV_STORE(&e->state, EV_ST_NONE);
  ev_dispatch(ev_loop_self(), e, EVENTER_TIMER, EV_DK_TIMER);
}

void ev_fatal_not_removed(eventer_t e, int kind) {
  mtevFatal(mtev_error,
            "eventer: %s callback %s returned 0 for event %p (fd %d, mask "
            "0x%x) without removing it first: call eventer_remove_fde(e) "
            "before returning 0, or return the mask you still want\n",
            kind == EV_DK_TRIGGER ? "triggered fd" : "fd",
            eventer_name_for_callback(e->callback), (void *)e, e->fd, e->mask);
}

/* ---- cross-thread items ------------------------------------------------------------- */

enum { EV_MSG_REMOVE = 1, EV_MSG_UPDATE, EV_MSG_WHENCE, EV_MSG_REMOVE_FD };

typedef struct {
  eventer_task_t task; /* first: the inbox links tasks */
  int op;
  eventer_t e;         /* a reference held by the message (REMOVE_FD: NULL) */
  int mask;
  struct timeval whence;
  int fd;              /* REMOVE_FD: the fd, and the event that was */
  eventer_t seen;      /* registered for it (compared, never followed) */
} ev_xmsg_t;

/* REMOVE_FD on the loop that runs it: removes the event registered for fd
 * if it is still the one the caller saw and this loop owns it, or passes
 * the message on to the loop that does. */
static void ev_remove_fd_apply(ev_xmsg_t *m, ev_loop_t *l) {
  eventer_t *slot = fdslot(m->fd, 0);
  eventer_t e = slot ? EV_LOAD(slot) : NULL;
  ev_loop_t *owner = slot ? EV_LOAD(fdowner(slot)) : NULL;
  if (e && e == m->seen && owner && owner != l) {
    ev_inbox_push(owner, &m->task); /* it moved: follow it */
    return;
  }
  /* our own registration: nobody else frees it while we look */
  if (e && e == m->seen && owner == l && ev_reg_remove(l, e))
    ev_deref_n(e, 1); /* the remover got NULL/EINPROGRESS: ours to drop */
  free(m);
}

static int post_msg(ev_loop_t *l, int op, eventer_t e, int mask,
                    const struct timeval *w) {
  ev_xmsg_t *m = calloc(1, sizeof(*m));
  if (!m) {
    errno = ENOMEM;
    return -1;
  }
  m->task.run = ev_xmsg_run;
  m->op = op;
  m->e = e;
  m->mask = mask;
  if (w) m->whence = *w;
  eventer_ref(e);
  ev_inbox_push(l, &m->task);
  return 0;
}

void ev_xmsg_run(eventer_task_t *t, struct timeval *now) {
  (void)now;
  ev_xmsg_t *m = EV_CONTAINER_OF(t, ev_xmsg_t, task);
  ev_loop_t *l = ev_loop_self();
  if (m->op == EV_MSG_REMOVE_FD) {
    ev_remove_fd_apply(m, l);
    return;
  }
  eventer_t e = m->e;
  if (ev_event_owner(e) == l) {
    switch (m->op) {
    case EV_MSG_REMOVE:
      /* The remover got NULL/EINPROGRESS: the eventer's reference that the
       * removal hands back is dropped here. */
      if (ev_reg_remove(l, e)) ev_deref_n(e, 1);
      break;
    case EV_MSG_UPDATE:
      if (ev_reg_update(l, e, m->mask) != 0)
        mtevL(eventer_err, "eventer: queued update of fd %d failed: %s\n",
              e->fd, strerror(errno));
      break;
    case EV_MSG_WHENCE:
      ev_reg_update_whence(l, e, m->whence);
      break;
    }
  } else {
    /* The event moved to another loop after the message was queued: the
     * message follows it, preserving its meaning. */
    ev_xmsg_t *again = m;
    ev_inbox_push(ev_event_owner(e), &again->task);
    return;
  }
  ev_deref_n(e, 1);
  free(m);
}

void ev_xop_run(eventer_task_t *t, struct timeval *now) {
  (void)now;
  eventer_t e = EV_CONTAINER_OF(t, struct _event, xtask);
  ev_loop_t *l = ev_loop_self();
  EV_ASSERT(EV_LOAD(&e->state) == EV_ST_QUEUED && e->xop == EV_XOP_ADD,
            "a queued add finds its event queued");
  if (ev_reg_add(l, e) != 0) {
    /* The adder returned long ago; all we can do is say so and drop the
     * reference it handed us. */
    mtevL(eventer_err, "eventer: cross-thread add of event %p (fd %d, "
          "callback %s) failed: %s\n", (void *)e, e->fd,
          eventer_name_for_callback(e->callback), strerror(errno));
    EV_STORE(&e->state, EV_ST_NONE);
    ev_deref_n(e, 1);
  }
}

void ev_trigger_run(eventer_task_t *t, struct timeval *now) {
  (void)now;
  eventer_t e = EV_CONTAINER_OF(t, struct _event, xtask);
  EV_ASSERT(EV_LOAD(&e->state) == EV_ST_QUEUED && e->xop == EV_XOP_TRIGGER,
            "a queued trigger finds its event queued");
  EV_STORE(&e->state, EV_ST_NONE);
  ev_dispatch(ev_loop_self(), e, e->xmask, EV_DK_TRIGGER);
}

void ev_complete_run(eventer_task_t *t, struct timeval *now) {
  (void)now;
  eventer_t e = EV_CONTAINER_OF(t, struct _event, xtask);
  EV_ASSERT(EV_LOAD(&e->state) == EV_ST_JOB,
            "an asynch completion finds its event in flight");
  EV_STORE(&e->state, EV_ST_NONE);
  ev_dispatch(ev_loop_self(), e, EVENTER_ASYNCH_COMPLETE, EV_DK_COMPLETE);
}

void ev_task_discard(eventer_task_t *t) {
  if (t->run == ev_xmsg_run) {
    ev_xmsg_t *m = EV_CONTAINER_OF(t, ev_xmsg_t, task);
    if (m->e) ev_deref_n(m->e, 1);
    free(m);
  } else if (t->run == ev_xop_run || t->run == ev_trigger_run ||
             t->run == ev_complete_run) {
    eventer_t e = EV_CONTAINER_OF(t, struct _event, xtask);
    eventer_jobq_t *jq = t->run == ev_complete_run ? e->jobq : NULL;
    EV_STORE(&e->state, EV_ST_NONE);
    ev_deref_n(e, 1);
    if (jq) ev_jobq_release(jq);
  }
  /* anything else is a caller-owned task: nothing of ours to release,
   * but a layer above may know it */
  else
    ev_layers_task_discard(t);
}

void ev_fdtab_foreach(ev_loop_t *l, void (*fn)(eventer_t e)) {
  for (unsigned ci = 0; ci < EV_FDTAB_CHUNKS; ci++) {
    eventer_t *chunk = ev_fdtab[ci];
    if (!chunk) continue;
    for (unsigned i = 0; i < EV_FDTAB_CHUNK; i++) {
      eventer_t e = chunk[i];
      if (e && ev_event_owner(e) == l) fn(e);
    }
  }
}

void ev_reg_drop_all(ev_loop_t *l) {
  /* timers: eventer_t timers hold the eventer's reference; intrusive nodes
   * belong to their users and are only marked unqueued */
  while (l->heap_len) {
    eventer_timer_node_t *n = l->heap[l->heap_len - 1];
    ev_heap_remove(l, n);
    if (n->fire == ev_timer_event_fire) {
      eventer_t e = EV_CONTAINER_OF(n, struct _event, tnode);
      EV_STORE(&e->state, EV_ST_NONE);
      ev_deref_n(e, 1);
    }
  }
  while (l->recur_head) {
    eventer_t e = l->recur_head;
    ev_recur_unlink(l, e);
    EV_STORE(&e->state, EV_ST_NONE);
    ev_deref_n(e, 1);
  }
  for (unsigned ci = 0; ci < EV_FDTAB_CHUNKS; ci++) {
    eventer_t *chunk = ev_fdtab[ci];
    if (!chunk) continue;
    for (unsigned i = 0; i < EV_FDTAB_CHUNK; i++) {
      eventer_t e = chunk[i];
      if (e && ev_event_owner(e) == l) {
        fdowner(&chunk[i])[0] = NULL;
        chunk[i] = NULL;
        EV_STORE(&e->state, EV_ST_NONE);
        ev_deref_n(e, 1);
      }
    }
  }
}

/* ---- public registration -------------------------------------------------------------- */

static int reserve(eventer_t e) {
  int expect = EV_ST_NONE;
  if (!__atomic_compare_exchange_n(&e->state, &expect, EV_ST_QUEUED, 0,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    errno = EBUSY;
    return -1;
  }
  return 0;
}

int eventer_add_ex(eventer_t e) {
  if (!e || !e->callback) {
    errno = EINVAL;
    return -1;
  }
  if (e->mask & EVENTER_ASYNCH) return eventer_add_asynch_ex(NULL, e);
  if (e->acofd_flags && (e->mask & (EVENTER_TIMER | EVENTER_RECURRENT))) {
    errno = EINVAL; /* an aco event is an fd event (its state would be lost) */
    return -1;
  }
  if (!(e->mask & (EVENTER_TIMER | EVENTER_RECURRENT)) &&
      (!is_fd_mask(e->mask) || e->fd < 0)) {
    errno = EINVAL;
    return -1;
  }
  ev_loop_t *l = ev_event_owner(e);
  if (!l) {
    errno = ENXIO;
    return -1;
  }
  if (reserve(e) != 0) return -1;
  /* A timer's monotonic deadline is fixed now, on the adding thread, so a
   * timer added from elsewhere is not late by its trip through the queue. */
  if ((e->mask & EVENTER_TIMER) && !e->deadline_preset) {
    e->tnode.deadline_ns = ev_deadline_for_whence(&e->whence);
    e->deadline_preset = 1;
  }
  if (l == ev_loop_self()) {
    if (ev_reg_add(l, e) != 0) {
      int saved = errno;
      EV_STORE(&e->state, EV_ST_NONE);
      errno = saved;
      return -1;
    }
    return 0;
  }
  __atomic_store_n(&e->xop, EV_XOP_ADD, __ATOMIC_RELAXED);
  e->xtask.run = ev_xop_run;
  ev_inbox_push(l, &e->xtask);
  return 0;
}

eventer_t eventer_remove(eventer_t e) {
  if (!e) {
    errno = EINVAL;
    return NULL;
  }
  ev_loop_t *l = ev_event_owner(e);
  if (!l) {
    errno = ENXIO;
    return NULL;
  }
  if (l == ev_loop_self()) return ev_reg_remove(l, e);
  int st = EV_LOAD(&e->state);
  if (st == EV_ST_NONE) {
    errno = ENOENT;
    return NULL;
  }
  if (st == EV_ST_JOB) {
    errno = EBUSY;
    return NULL;
  }
  if (post_msg(l, EV_MSG_REMOVE, e, 0, NULL) != 0) return NULL;
  errno = EINPROGRESS;
  return NULL;
}

eventer_t eventer_remove_fd(int fd) {
  eventer_t *slot = fdslot(fd, 0);
  eventer_t e = slot ? EV_LOAD(slot) : NULL;
  ev_loop_t *owner = slot ? EV_LOAD(fdowner(slot)) : NULL;
  if (!e || !owner) { /* none, or its registration is being undone */
    errno = fd < 0 ? EINVAL : ENOENT;
    return NULL;
  }
  ev_loop_t *self = ev_loop_self();
  /* On the owner loop the event cannot go away under us. */
  if (owner == self) return ev_reg_remove(self, e);
  /* Elsewhere e may be freed by its owner at any moment: never follow it.
   * The owner removes it (if it is still the event we saw) and drops the
   * eventer's reference itself, as for eventer_remove off the owner. */
  ev_xmsg_t *m = calloc(1, sizeof(*m));
  if (!m) {
    errno = ENOMEM;
    return NULL;
  }
  m->task.run = ev_xmsg_run;
  m->op = EV_MSG_REMOVE_FD;
  m->fd = fd;
  m->seen = e;
  ev_inbox_push(owner, &m->task);
  errno = EINPROGRESS;
  return NULL;
}

eventer_t eventer_find_fd(int fd) { return ev_fd_lookup(fd); }

int eventer_update_ex(eventer_t e, int mask) {
  if (!e || !is_fd_mask(mask)) {
    errno = EINVAL;
    return -1;
  }
  ev_loop_t *l = ev_event_owner(e);
  if (l && l == ev_loop_self()) return ev_reg_update(l, e, mask);
  /* registered, or an add/trigger still queued: the owner applies it in
   * order with that add; only an idle event is the caller's to edit */
  if (l && EV_LOAD(&e->state) != EV_ST_NONE)
    return post_msg(l, EV_MSG_UPDATE, e, mask, NULL);
  e->mask = mask;
  return 0;
}

int eventer_update_whence_ex(eventer_t e, struct timeval w) {
  if (!e || w.tv_usec < 0 || w.tv_usec >= 1000000) {
    errno = EINVAL;
    return -1;
  }
  ev_loop_t *l = ev_event_owner(e);
  if (l && l == ev_loop_self()) {
    ev_reg_update_whence(l, e, w);
    return 0;
  }
  if (l && EV_LOAD(&e->state) != EV_ST_NONE)
    return post_msg(l, EV_MSG_WHENCE, e, 0, &w);
  e->whence = w;
  e->deadline_preset = 0;
  return 0;
}

int eventer_trigger_ex(eventer_t e, int mask) {
  if (!e || !e->callback) {
    errno = EINVAL;
    return -1;
  }
  ev_loop_t *l = ev_event_owner(e);
  if (!l) {
    errno = ENXIO;
    return -1;
  }
  if (reserve(e) != 0) return -1;
  __atomic_store_n(&e->xop, EV_XOP_TRIGGER, __ATOMIC_RELAXED);
  e->xmask = mask;
  e->xtask.run = ev_trigger_run;
  if (l == ev_loop_self())
    ev_fifo_push(l, &e->xtask);
  else
    ev_inbox_push(l, &e->xtask);
  return 0;
}

void eventer_wakeup(eventer_t e) {
  ev_loop_t *l = e ? ev_event_owner(e) : ev_default_loop();
  if (l) ev_poll_wake(l);
}

/* ---- timer helpers ------------------------------------------------------------------------ */


eventer_t eventer_at(eventer_func_t func, void *closure, struct timeval whence) {
  if (whence.tv_usec < 0 || whence.tv_usec >= 1000000) {
    errno = EINVAL;
    return NULL;
  }
  return eventer_alloc_timer(func, closure, &whence);
}

eventer_t eventer_in(eventer_func_t func, void *closure, struct timeval diff) {
  if (ev_bad_delay(&diff)) {
    errno = EINVAL;
    return NULL;
  }
  /* Both clocks are read before the timer exists; the monotonic deadline
   * is taken from the delay itself, so the timer can never fire before
   * `diff` has elapsed from this call. */
  uint64_t mono = eventer_mono_ns();
  uint64_t wall = ev_wall_us();
  uint64_t d_us = (uint64_t)diff.tv_sec * 1000000u + (uint64_t)diff.tv_usec;
  struct timeval w = {(time_t)((wall + d_us) / 1000000u),
                      (suseconds_t)((wall + d_us) % 1000000u)};
  eventer_t e = eventer_alloc_timer(func, closure, &w);
  if (e) {
    e->tnode.deadline_ns = mono + d_us * 1000u;
    e->deadline_preset = 1;
  }
  return e;
}

eventer_t eventer_in_s_us(eventer_func_t func, void *closure, unsigned long s,
                          unsigned long us) {
  struct timeval d = {(time_t)(s + us / 1000000u),
                      (suseconds_t)(us % 1000000u)};
  return eventer_in(func, closure, d);
}

static eventer_t add_or_free(eventer_t e) {
  if (e && eventer_add_ex(e) != 0) {
    int saved = errno;
    eventer_free(e);
    errno = saved;
    return NULL;
  }
  return e;
}

eventer_t eventer_add_at(eventer_func_t func, void *closure,
                         struct timeval whence) {
  return add_or_free(eventer_at(func, closure, whence));
}

eventer_t eventer_add_in(eventer_func_t func, void *closure,
                         struct timeval diff) {
  return add_or_free(eventer_in(func, closure, diff));
}

eventer_t eventer_add_in_s_us(eventer_func_t func, void *closure,
                              unsigned long s, unsigned long us) {
  return add_or_free(eventer_in_s_us(func, closure, s, us));
}

eventer_t eventer_alloc_timer_next_opportunity(eventer_func_t func,
                                               void *closure, pthread_t owner) {
  ev_loop_t *l = ev_loop_by_thread(owner);
  if (!l) {
    errno = EINVAL;
    return NULL;
  }
  eventer_t e = eventer_alloc_timer(func, closure, NULL);
  if (e) e->owner = l;
  return e;
}

eventer_t eventer_add_timer_next_opportunity(eventer_func_t func,
                                             void *closure, pthread_t owner) {
  return add_or_free(eventer_alloc_timer_next_opportunity(func, closure, owner));
}

/* eventer_add / eventer_remove for an event of one kind only (EINVAL for
 * any other). */
static int add_kind(eventer_t e, int kind) {
  if (!e || !(e->mask & kind)) {
    errno = EINVAL;
    return -1;
  }
  return eventer_add_ex(e);
}

static eventer_t remove_kind(eventer_t e, int kind) {
  if (!e || !(e->mask & kind)) {
    errno = EINVAL;
    return NULL;
  }
  return eventer_remove(e);
}

int eventer_add_timed_ex(eventer_t e) { return add_kind(e, EVENTER_TIMER); }
eventer_t eventer_remove_timed(eventer_t e) { return remove_kind(e, EVENTER_TIMER); }
int eventer_add_recurrent_ex(eventer_t e) {
  return add_kind(e, EVENTER_RECURRENT);
}
eventer_t eventer_remove_recurrent(eventer_t e) {
  return remove_kind(e, EVENTER_RECURRENT);
}

/* ---- libmtev's void forms ------------------------------------------------------------------ */

void eventer_add(eventer_t e) {
  if (eventer_add_ex(e) != 0) ev_log_failed("eventer_add", e);
}
void eventer_update(eventer_t e, int mask) {
  if (eventer_update_ex(e, mask) != 0) ev_log_failed("eventer_update", e);
}
void eventer_update_whence(eventer_t e, struct timeval w) {
  if (eventer_update_whence_ex(e, w) != 0)
    ev_log_failed("eventer_update_whence", e);
}
void eventer_trigger(eventer_t e, int mask) {
  if (eventer_trigger_ex(e, mask) != 0) ev_log_failed("eventer_trigger", e);
}
void eventer_add_timed(eventer_t e) {
  if (eventer_add_timed_ex(e) != 0) ev_log_failed("eventer_add_timed", e);
}
void eventer_add_recurrent(eventer_t e) {
  if (eventer_add_recurrent_ex(e) != 0)
    ev_log_failed("eventer_add_recurrent", e);
}
