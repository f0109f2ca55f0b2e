/*
 * eventer_callback.c - what a callback can ask about itself: the event it
 * runs for (eventer_get_this_event), the time it was called
 * (eventer_gettimeofcallback & co.), the carry contexts that follow an
 * event through its life, and the calling thread's eventer name.
 *
 * Everything here is per thread (thread-local) except the context
 * registry, which is append-only: a slot is written once, before the count
 * that publishes it.
 */
#include "eventer_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the running callback ---------------------------------------------------------- */

__thread eventer_t ev_cb_this;        /* event whose callback runs */
__thread struct timeval ev_cb_now; /* its `now` */
__thread int ev_cb_now_set;

static struct ev_ctx_class {
  const char *name;
  eventer_context_opset_t *opset;
} ctx_classes[EVENTER_MAX_CONTEXTS];
int ev_ctx_n; /* __atomic: classes published */
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;

int ev_ctx_any(void) { return __atomic_load_n(&ev_ctx_n, __ATOMIC_ACQUIRE) > 0; }

int eventer_run_callback(eventer_t e, int mask, void *closure,
                         struct timeval *now) {
  if (!e || !e->callback) {
    errno = EINVAL;
    return 0;
  }
  eventer_t prev = ev_cb_this; /* callbacks may run callbacks (trigger-like) */
  ev_cb_this = e;
  if (now) {
    ev_cb_now = *now;
    ev_cb_now_set = 1;
  }
  int n = __atomic_load_n(&ev_ctx_n, __ATOMIC_ACQUIRE);
  for (int i = 0; i < n; i++)
    if (ctx_classes[i].opset->eventer_t_callback_prep)
      ctx_classes[i].opset->eventer_t_callback_prep(e, mask, closure, now);
  int rv = e->callback(e, mask, closure, now);
  for (int i = n - 1; i >= 0; i--)
    if (ctx_classes[i].opset->eventer_t_callback_cleanup)
      ctx_classes[i].opset->eventer_t_callback_cleanup(e, mask);
  ev_cb_this = prev;
  return rv;
}

eventer_t eventer_get_this_event(void) { return ev_cb_this; }

void ev_callback_abandoned(eventer_t e, int mask) {
  int n = __atomic_load_n(&ev_ctx_n, __ATOMIC_ACQUIRE);
  for (int i = n - 1; i >= 0; i--)
    if (ctx_classes[i].opset->eventer_t_callback_cleanup)
      ctx_classes[i].opset->eventer_t_callback_cleanup(e, mask);
  ev_cb_this = NULL;
}

int eventer_gettimeofcallback(struct timeval *now, void *tzp) {
  (void)tzp;
  if (!now) return 0;
  if (ev_cb_now_set == EV_CB_NOW_LOOP) {
    /* a coroutine resumed by its loop's fd dispatch: that turn's time
     * (once it has parked and the dispatch is over: the clock's) */
    ev_loop_t *l = ev_loop_self();
    if (l && l->current) {
      ev_cb_now = *ev_loop_now(l);
      ev_cb_now_set = 1;
    } else {
      ev_cb_now_set = 0;
    }
  }
  if (ev_cb_now_set)
    *now = ev_cb_now;
  else
    ev_wall_tv(now);
  return 0;
}

uint64_t eventer_callback_us(void) {
  struct timeval now;
  eventer_gettimeofcallback(&now, NULL);
  return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_usec;
}

uint64_t eventer_callback_ms(void) { return eventer_callback_us() / 1000u; }

mtev_hrtime_t mtev_gethrtime(void) { return eventer_mono_ns(); }

/* ---- carry contexts ------------------------------------------------------------------ */

int eventer_register_context(const char *name, eventer_context_opset_t *opset) {
  if (!name || !opset) {
    errno = EINVAL;
    return -1;
  }
  pthread_mutex_lock(&ctx_lock);
  int n = ev_ctx_n;
  for (int i = 0; i < n; i++)
    if (!strcmp(ctx_classes[i].name, name)) {
      /* a class registers once; registering it again names the slot */
      pthread_mutex_unlock(&ctx_lock);
      return ctx_classes[i].opset == opset ? i : (errno = EEXIST, -1);
    }
  if (n == EVENTER_MAX_CONTEXTS) {
    pthread_mutex_unlock(&ctx_lock);
    errno = ENOSPC;
    return -1;
  }
  char *copy = strdup(name);
  if (!copy) {
    pthread_mutex_unlock(&ctx_lock);
    errno = ENOMEM;
    return -1;
  }
  ctx_classes[n].name = copy; /* lives as long as the process */
  ctx_classes[n].opset = opset;
  __atomic_store_n(&ev_ctx_n, n + 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&ctx_lock);
  return n;
}

static int ctx_idx_ok(int idx) {
  return idx >= 0 && idx < __atomic_load_n(&ev_ctx_n, __ATOMIC_ACQUIRE);
}

void *eventer_get_context(eventer_t e, int ctx_idx) {
  if (!e || !e->ctx || !ctx_idx_ok(ctx_idx)) return NULL;
  return e->ctx[ctx_idx];
}

void *eventer_set_context(eventer_t e, int ctx_idx, void *data) {
  if (!e || !ctx_idx_ok(ctx_idx)) {
    errno = EINVAL;
    return NULL;
  }
  if (!e->ctx) {
    e->ctx = calloc(EVENTER_MAX_CONTEXTS, sizeof(*e->ctx));
    if (!e->ctx) {
      errno = ENOMEM;
      return NULL;
    }
  }
  void *old = e->ctx[ctx_idx];
  e->ctx[ctx_idx] = data;
  return old;
}

void ev_ctx_on_alloc(eventer_t e) {
  int n = __atomic_load_n(&ev_ctx_n, __ATOMIC_ACQUIRE);
  for (int i = 0; i < n; i++)
    if (ctx_classes[i].opset->eventer_t_init)
      ctx_classes[i].opset->eventer_t_init(e);
}

void ev_ctx_on_copy(eventer_t dst, eventer_t src) {
  int n = __atomic_load_n(&ev_ctx_n, __ATOMIC_ACQUIRE);
  for (int i = 0; i < n; i++)
    if (ctx_classes[i].opset->eventer_t_copy)
      ctx_classes[i].opset->eventer_t_copy(dst, src);
}

void ev_ctx_on_free(eventer_t e) {
  int n = __atomic_load_n(&ev_ctx_n, __ATOMIC_ACQUIRE);
  for (int i = 0; i < n; i++)
    if (ctx_classes[i].opset->eventer_t_deinit)
      ctx_classes[i].opset->eventer_t_deinit(e);
  free(e->ctx);
  e->ctx = NULL;
}

/* ---- thread names -------------------------------------------------------------------- */

static __thread char tls_name[64];

void ev_thread_name_set(const char *name) {
  if (name)
    snprintf(tls_name, sizeof(tls_name), "%s", name);
  else
    tls_name[0] = '\0';
}

const char *ev_thread_name_get(void) { return tls_name[0] ? tls_name : NULL; }
