/*
 * eventer_timer.c - each loop's timer heap: a binary min-heap of intrusive
 * eventer_timer_node_t, ordered by (monotonic deadline, add sequence), with
 * each node's index stored in the node so removal is O(log n).
 *
 * eventer_t timers embed a node (struct _event.tnode); coroutine sleeps
 * embed one in their own state, so a million sleepers cost no allocation
 * beyond the heap's pointer array.
 */
#include "eventer_impl.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

uint64_t eventer_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t ev_wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void ev_wall_tv(struct timeval *tv) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tv->tv_sec = ts.tv_sec;
  tv->tv_usec = ts.tv_nsec / 1000;
}

uint64_t ev_deadline_for_whence(const struct timeval *whence) {
  /* Read the monotonic clock first: if the wall clock is read second it is
   * at least as late, so the remaining delay can only come out shorter by
   * the few ns between the reads, never longer.  Callers that need "never
   * early relative to when I asked" (eventer_in*) preset the deadline from
   * the delay itself instead. */
  uint64_t mono = eventer_mono_ns();
  int64_t w = (int64_t)whence->tv_sec * 1000000 + whence->tv_usec;
  int64_t now = (int64_t)ev_wall_us();
  if (w <= now) return mono; /* due: fires at the next timer phase */
  return mono + (uint64_t)(w - now) * 1000u;
}

/* a fires before b */
static inline int before(const eventer_timer_node_t *a,
                         const eventer_timer_node_t *b) {
  if (a->deadline_ns != b->deadline_ns) return a->deadline_ns < b->deadline_ns;
  return a->seq < b->seq;
}

static inline void place(ev_loop_t *l, uint32_t i, eventer_timer_node_t *n) {
  l->heap[i] = n;
  n->heap_idx = i;
}

static void sift_up(ev_loop_t *l, uint32_t i) {
  eventer_timer_node_t *n = l->heap[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!before(n, l->heap[parent])) break;
    place(l, i, l->heap[parent]);
    i = parent;
  }
  place(l, i, n);
}

static void sift_down(ev_loop_t *l, uint32_t i) {
  eventer_timer_node_t *n = l->heap[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= l->heap_len) break;
    if (c + 1 < l->heap_len && before(l->heap[c + 1], l->heap[c])) c++;
    if (!before(l->heap[c], n)) break;
    place(l, i, l->heap[c]);
    i = c;
  }
  place(l, i, n);
}

void ev_heap_lock(ev_loop_t *l) {
  while (__atomic_exchange_n(&l->heap_lock, 1, __ATOMIC_ACQUIRE))
    sched_yield(); /* held only by a reader copying the heap */
}

void ev_heap_unlock(ev_loop_t *l) {
  __atomic_store_n(&l->heap_lock, 0, __ATOMIC_RELEASE);
}

void ev_heap_insert(ev_loop_t *l, eventer_timer_node_t *n) {
  EV_ASSERT(n->loop == NULL, "a timer node is on at most one heap");
  ev_heap_lock(l);
  if (l->heap_len == l->heap_cap) {
    uint32_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
    eventer_timer_node_t **h = realloc(l->heap, cap * sizeof(*h));
    /* Out of memory while scheduling a timer leaves no sane way to keep
     * the caller's promise (it has no error path: a re-added timer, a
     * sleeping coroutine), so this is fatal rather than silent. */
    if (!h) mtevFatal(mtev_error, "eventer: out of memory growing timer heap\n");
    l->heap = h;
    l->heap_cap = cap;
  }
  n->seq = l->timer_seq++;
  n->loop = l;
  place(l, l->heap_len++, n);
  sift_up(l, n->heap_idx);
  ev_heap_unlock(l);
}

void ev_heap_remove(ev_loop_t *l, eventer_timer_node_t *n) {
  EV_ASSERT(n->loop == l, "a timer node is removed from its own loop's heap");
  uint32_t i = n->heap_idx;
  EV_ASSERT(i < l->heap_len && l->heap[i] == n,
            "a queued timer node's heap_idx points at itself");
  ev_heap_lock(l);
  l->heap_len--;
  if (i != l->heap_len) {
    eventer_timer_node_t *last = l->heap[l->heap_len];
    place(l, i, last);
    /* The moved node may belong above or below its new slot. */
    if (i > 0 && before(last, l->heap[(i - 1) / 2]))
      sift_up(l, i);
    else
      sift_down(l, i);
  }
  n->loop = NULL;
  ev_heap_unlock(l);
}

eventer_timer_node_t *ev_heap_min(ev_loop_t *l) {
  return l->heap_len ? l->heap[0] : NULL;
}

void ev_heap_free(ev_loop_t *l) {
  free(l->heap);
  l->heap = NULL;
  l->heap_len = l->heap_cap = 0;
}

/* ---- public intrusive timer API ------------------------------------------ */

int eventer_timer_node_add_at_ns(eventer_timer_node_t *n, uint64_t deadline_ns) {
  ev_loop_t *l = ev_loop_self();
  if (!l || !n || !n->fire || (n->loop && n->loop != l)) {
    errno = EINVAL;
    return -1;
  }
  if (n->loop) ev_heap_remove(l, n); /* re-schedule */
  n->deadline_ns = deadline_ns;
  ev_heap_insert(l, n);
  return 0;
}

int eventer_timer_node_add(eventer_timer_node_t *n, const struct timeval *delay) {
  uint64_t d = 0;
  if (delay) {
    if (ev_bad_delay(delay)) {
      errno = EINVAL;
      return -1;
    }
    d = (uint64_t)delay->tv_sec * 1000000000u + (uint64_t)delay->tv_usec * 1000u;
  }
  return eventer_timer_node_add_at_ns(n, eventer_mono_ns() + d);
}

int eventer_timer_node_remove(eventer_timer_node_t *n) {
  if (!n) {
    errno = EINVAL;
    return -1;
  }
  if (!n->loop) return 0;
  ev_loop_t *l = ev_loop_self();
  if (n->loop != l) {
    errno = EINVAL;
    return -1;
  }
  ev_heap_remove(l, n);
  return 1;
}

int eventer_timer_node_pending(const eventer_timer_node_t *n) {
  return n && n->loop != NULL;
}
