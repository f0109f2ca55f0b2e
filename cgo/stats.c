/* stats.c - see stats.h */
#include "stats.h"

#include <stdio.h>
#include <string.h>

#include "eventer_aco_impl.h"
#include "eventer_impl.h"
#include "eventer_jobq.h"

void ev_go_loop_stats(int64_t *c_coroutines, char *name, size_t namelen) {
  *c_coroutines = 0;
  if (namelen) name[0] = '\0';
  ev_loop_t *l = ev_loop_self();
  if (!l) return;
  snprintf(name, namelen, "%s", l->name);
  ev_aco_loop_t *al = l->aco;
  if (!al) return;
  ev_aco_link_t *head = &al->all.head;
  for (ev_aco_link_t *p = head->next; p != head; p = p->next) {
    const ev_aco_t *a = EV_CONTAINER_OF(p, ev_aco_t, all);
    if (!ev_aco_is_proxy(a)) (*c_coroutines)++;
  }
}

typedef struct {
  int n, i;
  char *names;
  size_t namelen;
  uint32_t *concurrency, *backlog, *max_backlog;
} ev_go_jq_walk_t;

static mtev_boolean ev_go_jq_one(eventer_jobq_t *q, void *closure) {
  ev_go_jq_walk_t *w = closure;
  if (w->i < w->n) {
    snprintf(w->names + (size_t)w->i * w->namelen, w->namelen, "%s",
             eventer_jobq_get_queue_name(q));
    w->concurrency[w->i] = eventer_jobq_get_concurrency(q);
    w->backlog[w->i] = eventer_jobq_get_backlog(q);
    w->max_backlog[w->i] = eventer_jobq_get_max_backlog(q);
  }
  w->i++;
  return mtev_true;
}

int ev_go_jobq_stats(int n, char *names, size_t namelen, uint32_t *concurrency,
                     uint32_t *backlog, uint32_t *max_backlog) {
  ev_go_jq_walk_t w = {n, 0, names, namelen, concurrency, backlog, max_backlog};
  eventer_jobq_process_each(ev_go_jq_one, &w);
  return w.i;
}
