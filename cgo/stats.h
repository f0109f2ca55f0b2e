/* stats.h - figures the Go binding reports (eventer.Stats). */
#ifndef EV_GO_STATS_H
#define EV_GO_STATS_H

#include <stddef.h>
#include <stdint.h>

/* The calling loop's live C coroutines (the waiters of Go coroutines
 * left out) and its name.  Call on a loop's thread; 0 and "" off a
 * loop. */
void ev_go_loop_stats(int64_t *c_coroutines, char *name, size_t namelen);

/* Job queues: fills up to n entries (name in names[i*namelen], threads,
 * backlog, max backlog); returns how many there are. */
int ev_go_jobq_stats(int n, char *names, size_t namelen, uint32_t *concurrency,
                     uint32_t *backlog, uint32_t *max_backlog);

#endif
