/* listener.c - see listener.h */
#include "listener.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "eventer_aco_impl.h"

_Static_assert(sizeof(ev_go_listen_step_t) == sizeof(((eventer_step_t *)0)->u64) &&
                   offsetof(ev_go_listen_step_t, ac) == sizeof(uint64_t) &&
                   sizeof(mtev_acceptor_closure_t *) == sizeof(uint64_t) &&
                   offsetof(ev_go_listen_step_t, l) == 2 * sizeof(uint64_t),
               "a listen step's fields overlay the step's u64[3]");
_Static_assert(EV_GO_STEP_LISTEN != EVENTER_STEP_ACO_PROXY &&
                   EV_GO_STEP_LISTEN != EVENTER_STEP_FOREIGN_WAKE &&
                   EV_GO_STEP_LISTEN != EVENTER_STEP_ACO_PROXY_DATA,
               "the listen step has a kind of its own");

/* ---- connections -------------------------------------------------------------- */

/* A connection whose step could not be handed out at once. */
typedef struct {
  eventer_task_t task;
  eventer_t e;
  uint32_t id;
} ev_go_lpend_t;

static int ev_go_listen_emit(eventer_t e, uint32_t id) {
  eventer_step_t *s = eventer_step_emit();
  if (!s) return -1;
  mtev_acceptor_closure_t *ac = eventer_get_closure(e);
  ev_go_listen_step_t *ls = (ev_go_listen_step_t *)(void *)s->u64;
  s->kind = EV_GO_STEP_LISTEN;
  s->closure = e;
  ls->id = id;
  ls->fd = e->fd;
  ls->ac = ac;
  ls->l = mtev_acceptor_closure_listener(ac);
  return 0;
}

/* The connection cannot reach Go: it is closed and its closure freed. */
static void ev_go_listen_fail(eventer_t e, const char *what, int err) {
  mtev_acceptor_closure_t *ac = eventer_get_closure(e);
  mtevL(mtev_error, "mtev_listener %s: a Go aco function's connection: %s: %s\n",
        mtev_listener_get_name(mtev_acceptor_closure_listener(ac)), what,
        strerror(err));
  if (eventer_is_aco(e)) {
    eventer_aco_close((eventer_aco_t)e);
  } else {
    /* a TLS connection comes registered (see ev_go_listen_register) */
    eventer_t r = eventer_remove_fde(e);
    if (r) eventer_deref(r);
    int mask;
    eventer_close(e, &mask);
  }
  eventer_free(e);
  mtev_acceptor_closure_free(ac);
}

static void ev_go_listen_pending(eventer_task_t *t, struct timeval *now) {
  (void)now;
  ev_go_lpend_t *p = (ev_go_lpend_t *)(void *)((char *)t - offsetof(ev_go_lpend_t, task));
  if (ev_go_listen_emit(p->e, p->id) == 0) {
    free(p);
    return;
  }
  /* (a task runs with the slot free: this is not reached in practice) */
  if (eventer_task_post(&p->task) != 0) {
    ev_go_listen_fail(p->e, "handing it to the Go driver", errno);
    free(p);
  }
}

void ev_go_listen_start(eventer_t e, void *closure) {
  uint32_t id = (uint32_t)(uintptr_t)closure;
  eventer_fd_opset_t op = eventer_get_fd_opset(e);
  if (op && op->name && !strcmp(op->name, "listener"))
    id |= EV_GO_LISTEN_PLAIN; /* mtev_listener.c's plain socket opset */
  if (ev_aco_fd_convert(e, ev_loop_self()) != 0) {
    ev_go_listen_fail(e, "converting its event", errno);
    return;
  }
  if (ev_go_listen_emit(e, id) == 0) return;
  /* the slot is taken (an accept callback on the loop dispatches a batch
   * of connections): the next iteration hands this one over */
  ev_go_lpend_t *p = malloc(sizeof(*p));
  if (!p) {
    ev_go_listen_fail(e, "handing it to the Go driver", ENOMEM);
    return;
  }
  p->task.next = NULL;
  p->task.run = ev_go_listen_pending;
  p->e = e;
  p->id = id;
  if (eventer_task_post(&p->task) != 0) {
    int err = errno;
    free(p);
    ev_go_listen_fail(e, "handing it to the Go driver", err);
  }
}

int ev_go_listen_register(const char *name, uint32_t id) {
  /* ev_go_listen_start converts at once: a TLS listener's handshake
   * leaves the event registered for it to adopt */
  if (mtev_listener_aco_dispatch_converts(ev_go_listen_start) != 0) return errno;
  return mtev_listener_register_aco_dispatch(name, ev_go_listen_start,
                                             (void *)(uintptr_t)id) == 0
             ? 0
             : errno;
}

ev_go_try_t ev_go_listen_try(uintptr_t e, int op, char *buf, size_t len) {
  return ev_go_try(e, op, buf, len);
}

void ev_go_listen_end(uintptr_t ep, uintptr_t acp) {
  eventer_t e = (eventer_t)ep;
  if (e) {
    if (!ev_aco_fd_closed(e)) eventer_aco_close((eventer_aco_t)e);
    eventer_deref(e);
  }
  mtev_acceptor_closure_free((mtev_acceptor_closure_t *)acp);
}

/* ---- listeners ------------------------------------------------------------------ */

mtev_listener_t *ev_go_listener_create(const ev_go_lopts_t *g, char *err,
                                       size_t errlen) {
  mtev_hash_table cfg;
  mtev_hash_init(&cfg);
  for (int i = 0; i < g->nkv; i++) {
    char *k = strdup(g->keys[i]), *v = strdup(g->vals[i]);
    if (!k || !v || !mtev_hash_replace(&cfg, k, (int)strlen(k), v, free, free)) {
      free(k);
      free(v);
      mtev_hash_destroy(&cfg, free, free);
      snprintf(err, errlen, "out of memory");
      errno = ENOMEM;
      return NULL;
    }
  }
  mtev_hash_table ssl;
  mtev_hash_init(&ssl);
  for (int i = 0; i < g->nskv; i++) {
    char *k = strdup(g->skeys[i]), *v = strdup(g->svals[i]);
    if (!k || !v || !mtev_hash_replace(&ssl, k, (int)strlen(k), v, free, free)) {
      free(k);
      free(v);
      mtev_hash_destroy(&ssl, free, free);
      mtev_hash_destroy(&cfg, free, free);
      snprintf(err, errlen, "out of memory");
      errno = ENOMEM;
      return NULL;
    }
  }
  mtev_listener_opts_t o = {
      .address = g->address,
      .port = g->port,
      .backlog = g->backlog,
      .fanout = g->fanout ? mtev_true : mtev_false,
      .accept_in_loop = g->accept_in_loop ? mtev_true : mtev_false,
      .reuseport = g->reuseport ? mtev_true : mtev_false,
      .max_connections = g->max_connections,
      .config = &cfg,
      .dispatch = ev_go_listen_start,
      .dispatch_closure = (void *)(uintptr_t)g->id,
      .ssl = g->ssl ? mtev_true : mtev_false,
      .sslconfig = g->ssl ? &ssl : NULL,
  };
  mtev_listener_t *l = NULL;
  if (mtev_listener_aco_dispatch_converts(ev_go_listen_start) != 0)
    snprintf(err, errlen, "%s", strerror(errno));
  else
    l = mtev_listener_create(&o, err, errlen);
  int e = errno;
  mtev_hash_destroy(&cfg, free, free); /* the listener copied them */
  mtev_hash_destroy(&ssl, free, free);
  errno = e;
  return l;
}

int ev_go_listener_init(const char *app, char *err, size_t errlen) {
  char path[512];
  const char *top = app && *app ? app : "*";
  snprintf(path, sizeof(path),
           "/%s/listeners//listener|/%s/include/listeners//listener", top, top);
  int cnt = 0;
  mtev_conf_section_t *secs = mtev_conf_get_sections(MTEV_CONF_ROOT, path, &cnt);
  int bad = 0;
  for (int i = 0; i < cnt && !bad; i++) {
    char *pool = NULL, loc[512];
    if (mtev_conf_get_string(secs[i], "ancestor-or-self::node()/@fanout_pool",
                             &pool) &&
        pool[0] && strcmp(pool, "default") != 0) {
      snprintf(err, errlen,
               "%s: fanout_pool \"%s\": a Go program runs only the default "
               "pool's loops (named pools have no driver)",
               mtev_conf_section_location(secs[i], loc, sizeof(loc)), pool);
      bad = 1;
    }
    free(pool);
  }
  mtev_conf_release_sections(secs, cnt);
  if (bad) {
    errno = EINVAL;
    return -1;
  }
  return mtev_listener_init_ex(app, err, errlen);
}

typedef struct {
  mtev_listener_t **out;
  int max, n;
} ev_go_lcollect_t;

static int ev_go_lcollect(mtev_listener_t *l, void *closure) {
  ev_go_lcollect_t *c = closure;
  if (c->n < c->max) {
    mtev_listener_ref(l); /* the caller's */
    c->out[c->n] = l;
  }
  c->n++;
  return 0;
}

int ev_go_listeners(mtev_listener_t **out, int max) {
  ev_go_lcollect_t c = {out, max, 0};
  mtev_listener_foreach(ev_go_lcollect, &c);
  return c.n;
}

static int ev_go_lcount(mtev_listener_t *l, void *closure) {
  (void)l;
  (*(int *)closure)++;
  return 0;
}

int ev_go_listener_count(void) {
  int n = 0;
  mtev_listener_foreach(ev_go_lcount, &n);
  return n;
}

int ev_go_listener_is_go(uintptr_t lp) {
  mtev_listener_opts_t o;
  if (mtev_listener_get_opts((mtev_listener_t *)lp, &o) != 0) return 0;
  return o.dispatch == ev_go_listen_start;
}

static int ev_go_tv(int64_t ns, struct timeval *tv) {
  if (ns < 0) return 0;
  tv->tv_sec = (time_t)(ns / 1000000000);
  tv->tv_usec = (suseconds_t)((ns % 1000000000) / 1000);
  return 1;
}

int ev_go_listener_stop(uintptr_t l, int64_t grace_ns) {
  struct timeval tv;
  int has = ev_go_tv(grace_ns, &tv);
  return mtev_listener_stop((mtev_listener_t *)l, has ? &tv : NULL) == 0 ? 0 : errno;
}

int ev_go_listener_wait(uintptr_t l, int64_t timeout_ns) {
  struct timeval tv;
  int has = ev_go_tv(timeout_ns, &tv);
  return mtev_listener_wait((mtev_listener_t *)l, has ? &tv : NULL) == 0 ? 0 : errno;
}

/* ---- the configuration ----------------------------------------------------------- */

int ev_go_conf_apply_eventer(char *err, size_t errlen) {
  int cnt = 0;
  mtev_conf_section_t *secs =
      mtev_conf_get_sections(MTEV_CONF_ROOT, "/*/eventer/config/*", &cnt);
  int rv = 0;
  for (int i = 0; i < cnt && rv == 0; i++) {
    char *k = NULL, *v = NULL, loc[512];
    if (mtev_conf_get_string(secs[i], "name()", &k) &&
        mtev_conf_get_string(secs[i], "normalize-space(.)", &v) &&
        eventer_impl_propset_ex(k, v) != 0 && errno != ENOENT) {
      int e = errno;
      snprintf(err, errlen, "%s: <eventer><config> %s=\"%s\": %s",
               mtev_conf_section_location(secs[i], loc, sizeof(loc)), k, v,
               strerror(e));
      rv = -1;
      errno = e;
    }
    free(k);
    free(v);
  }
  mtev_conf_release_sections(secs, cnt);
  return rv;
}

/* ---- the acceptor closure --------------------------------------------------------- */

int ev_go_ac_remote(uintptr_t acp, void *buf, int len) {
  struct sockaddr *sa = mtev_acceptor_closure_remote((mtev_acceptor_closure_t *)acp);
  if (!sa || len <= 0) return 0;
  socklen_t n;
  switch (sa->sa_family) {
  case AF_INET: n = sizeof(struct sockaddr_in); break;
  case AF_INET6: n = sizeof(struct sockaddr_in6); break;
  case AF_UNIX: n = sizeof(struct sockaddr_un); break;
  default: return 0;
  }
  if ((int)n > len) n = (socklen_t)len;
  memcpy(buf, sa, n);
  return (int)n;
}

int ev_go_ac_config(uintptr_t acp, const char *key, int klen, const char **val,
                    int *vlen) {
  mtev_hash_table *h = mtev_acceptor_closure_config((mtev_acceptor_closure_t *)acp);
  const char *v = NULL;
  if (!h || !mtev_hash_retr_str(h, key, klen, &v) || !v) return 0;
  *val = v;
  *vlen = (int)strlen(v);
  return 1;
}
