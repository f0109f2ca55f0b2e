//go:build eventer_testhooks

/* testhooks.c - see testhooks.h */
#include "testhooks.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "eventer_aco.h"
#include "eventer_aco_sync.h"
#include "eventer_impl.h" /* ev_jobq_stopping */

typedef struct {
  int fd, rounds, initiator;
  int *done;
  int rv;
  eventer_t e;
  int *rvp;
} ev_ct_arg_t;

static int ev_ct_dummy(eventer_t e, int m, void *c, struct timeval *n) {
  (void)e, (void)m, (void)c, (void)n;
  return 0;
}

static void ev_ct_pingpong_fn(void) {
  ev_ct_arg_t *a = eventer_aco_arg();
  eventer_t ce = eventer_alloc_fd(ev_ct_dummy, NULL, a->fd, EVENTER_READ);
  eventer_aco_t e = eventer_set_eventer_aco(ce);
  char buf[4];
  int ok = e != NULL;
  for (int i = 0; ok && i < a->rounds; i++) {
    if (a->initiator) {
      ok = eventer_aco_write(e, "ping", 4, NULL) == 4 &&
           eventer_aco_read(e, buf, 4, NULL) == 4;
    } else {
      ok = eventer_aco_read(e, buf, 4, NULL) == 4 &&
           eventer_aco_write(e, "pong", 4, NULL) == 4;
    }
  }
  if (e) eventer_aco_free(e);
  __atomic_add_fetch(a->done, ok ? 1 : 1000, __ATOMIC_RELEASE);
  free(a);
}

int ev_ct_pingpong(int fd, int rounds, int initiator, int *done) {
  ev_ct_arg_t *a = calloc(1, sizeof(*a));
  if (!a) return -1;
  a->fd = fd;
  a->rounds = rounds;
  a->initiator = initiator;
  a->done = done;
  eventer_aco_start(ev_ct_pingpong_fn, a);
  return 0;
}

static void ev_ct_call_fn(void) {
  ev_ct_arg_t *a = eventer_aco_arg();
  struct timeval now;
  gettimeofday(&now, NULL);
  *a->rvp = eventer_callback(a->e, EVENTER_READ, eventer_get_closure(a->e), &now);
  __atomic_add_fetch(a->done, 1, __ATOMIC_RELEASE);
  free(a);
}

int ev_ct_call_in_coroutine(eventer_t e, int *rv, int *done) {
  ev_ct_arg_t *a = calloc(1, sizeof(*a));
  if (!a) return -1;
  a->e = e;
  a->rvp = rv;
  a->done = done;
  eventer_aco_start(ev_ct_call_fn, a);
  return 0;
}

int ev_ct_call_direct(eventer_t e) {
  struct timeval now;
  gettimeofday(&now, NULL);
  return eventer_callback(e, EVENTER_READ, eventer_get_closure(e), &now);
}

int ev_ct_load(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

typedef struct {
  void *in, *out;
  int n;
  int *done;
} ev_ct_relay_t;

static void ev_ct_chan_relay_fn(void) {
  ev_ct_relay_t *r = eventer_aco_arg();
  ssize_t sz = eventer_aco_chan_elem_size(r->in);
  unsigned char *buf = malloc((size_t)sz);
  int ok = buf != NULL;
  for (int i = 0; ok && i < r->n; i++) {
    ok = eventer_aco_chan_recv(r->in, buf, NULL) == 0;
    for (ssize_t k = 0; ok && k < sz; k++) buf[k]++;
    ok = ok && eventer_aco_chan_send(r->out, buf, NULL) == 0;
  }
  free(buf);
  __atomic_add_fetch(r->done, ok ? 1 : 1000, __ATOMIC_RELEASE);
  free(r);
}

int ev_ct_chan_relay(void *in, void *out, int n, int *done) {
  ev_ct_relay_t *r = calloc(1, sizeof(*r));
  if (!r) return -1;
  *r = (ev_ct_relay_t){in, out, n, done};
  eventer_aco_start(ev_ct_chan_relay_fn, r);
  return 0;
}

static void ev_ct_sem_relay_fn(void) {
  ev_ct_relay_t *r = eventer_aco_arg();
  int ok = 1;
  for (int i = 0; ok && i < r->n; i++)
    ok = eventer_aco_sem_wait(r->in, NULL) == 0 && eventer_aco_sem_post(r->out) == 0;
  __atomic_add_fetch(r->done, ok ? 1 : 1000, __ATOMIC_RELEASE);
  free(r);
}

int ev_ct_sem_relay(void *wait, void *post, int n, int *done) {
  ev_ct_relay_t *r = calloc(1, sizeof(*r));
  if (!r) return -1;
  *r = (ev_ct_relay_t){wait, post, n, done};
  eventer_aco_start(ev_ct_sem_relay_fn, r);
  return 0;
}

void ev_ct_log_append(ev_ct_log_t *log, int tag) {
  if (log->n < (int)(sizeof(log->tags) / sizeof(log->tags[0])))
    log->tags[log->n++] = tag;
}

typedef struct {
  ev_ct_log_t *log;
  int tag;
} ev_ct_logarg_t;

static int ev_ct_log_cb(eventer_t e, int mask, void *c, struct timeval *now) {
  (void)e, (void)mask, (void)now;
  ev_ct_logarg_t *a = c;
  ev_ct_log_append(a->log, a->tag);
  free(a);
  return 0;
}

int ev_ct_trigger_log(ev_ct_log_t *log, int tag) {
  ev_ct_logarg_t *a = malloc(sizeof(*a));
  if (!a) return -1;
  a->log = log;
  a->tag = tag;
  eventer_t e = eventer_alloc_fd(ev_ct_log_cb, a, 0, EVENTER_READ);
  return eventer_trigger_ex(e, EVENTER_READ);
}

int ev_ct_log(const char *stream, const char *msg) {
  mtev_log_stream_t ls = mtev_log_stream_find(stream);
  if (!ls) return -1;
  mtevL(ls, "%s\n", msg);
  return 0;
}

int ev_ct_jobq_stopping(void *q) { return ev_jobq_stopping((eventer_jobq_t *)q); }
