/*
 * eventer_thread.c - eventer_run_in_thread: an event driven by a thread of
 * its own (libmtev's, used by listeners that accept in a dedicated thread).
 * The contract is in eventer.h ("dedicated threads").
 */
#include "eventer_impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static int ev_dedicated_alive; /* __atomic: threads started, not yet gone */

void ev_dedicated_quiesce(void) {
  for (int i = 0; __atomic_load_n(&ev_dedicated_alive, __ATOMIC_ACQUIRE); i++) {
    if (i == 2000) {
      mtevL(eventer_err, "eventer_fini: %d eventer_run_in_thread thread(s) "
            "still running; their events will outlive the eventer\n",
            __atomic_load_n(&ev_dedicated_alive, __ATOMIC_ACQUIRE));
      return;
    }
    usleep(1000);
  }
}

static void *ev_dedicated_main(void *arg) {
  eventer_t e = arg;
  char name[16];
  snprintf(name, sizeof(name), "ev-fd%d", e->fd);
  pthread_setname_np(pthread_self(), name);
  int mask = e->mask;
  while (mask) {
    struct timeval now;
    gettimeofday(&now, NULL);
    mask = e->callback(e, mask, e->closure, &now) & ~EVENTER_EXCEPTION;
  }
  eventer_free(e); /* the reference the thread was given */
  __atomic_sub_fetch(&ev_dedicated_alive, 1, __ATOMIC_RELEASE);
  return NULL;
}

int eventer_run_in_thread(eventer_t e, int mask) {
  if (!e || !e->callback || mask == 0) {
    errno = EINVAL;
    return -1;
  }
  int st = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
  if (st == EV_ST_FD) {
    /* take it out of its loop: only its owner can do that synchronously */
    if (ev_loop_self() != ev_event_owner(e) || eventer_remove(e) != e) {
      errno = EBUSY;
      return -1;
    }
    /* eventer_remove handed the eventer's reference back: it goes to the
     * thread */
  } else if (st != EV_ST_NONE) {
    errno = EBUSY;
    return -1;
  }
  if (e->fd >= 0 && eventer_set_fd_blocking(e->fd) != 0) return -1;
  e->mask = mask;
  pthread_attr_t attr;
  pthread_t tid;
  int rc = pthread_attr_init(&attr);
  if (rc == 0) {
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    __atomic_add_fetch(&ev_dedicated_alive, 1, __ATOMIC_ACQ_REL);
    rc = pthread_create(&tid, &attr, ev_dedicated_main, e);
    if (rc != 0) __atomic_sub_fetch(&ev_dedicated_alive, 1, __ATOMIC_ACQ_REL);
    pthread_attr_destroy(&attr);
  }
  if (rc != 0) {
    if (e->fd >= 0) eventer_set_fd_nonblocking(e->fd);
    errno = rc;
    return -1;
  }
  mtevL(eventer_deb, "eventer: fd %d runs on a dedicated thread\n", e->fd);
  return 0;
}
