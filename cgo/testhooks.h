/*
 * testhooks.h - C coroutine scenarios that the Go tests and benchmarks run
 * next to Go coroutines on the same loop (mixed C/Go stress, the trampoline
 * path).  Built only with the build tag
 * eventer_testhooks (testhooks.c, testhooks.go): tests and benchmarks, never
 * a user's binary.
 */
#ifndef ACOEVENTER_CGO_TESTHOOKS_H
#define ACOEVENTER_CGO_TESTHOOKS_H

#include <stdint.h>

#include "eventer.h"

/* A C coroutine that ping-pongs `rounds` 4-byte messages on fd (writing
 * first if initiator) and then adds 1 (or, on error, 1000) to *done. */
int ev_ct_pingpong(int fd, int rounds, int initiator, int *done);
/* A C coroutine that calls e's callback directly (eventer_callback, so a
 * Go event goes through the trampoline) and stores its result in *rv, then
 * adds 1 to *done. */
int ev_ct_call_in_coroutine(eventer_t e, int *rv, int *done);
/* Calls e's callback directly from main context (no coroutine). */
int ev_ct_call_direct(eventer_t e);
/* A C coroutine that receives n elements from chan `in`, adds 1 to each
 * byte, sends them to `out`, then adds 1 to *done (1000 on error). */
int ev_ct_chan_relay(void *in, void *out, int n, int *done);
/* A C coroutine that n times waits on sem `wait` and posts `post`. */
int ev_ct_sem_relay(void *wait, void *post, int n, int *done);
/* A dispatch log shared by C and Go callbacks (the order test). */
typedef struct {
  int n;
  int tags[256];
} ev_ct_log_t;
/* Triggers (eventer_trigger) a new C event whose callback appends tag to
 * log (on the calling loop thread, or queued to its owner). */
int ev_ct_trigger_log(ev_ct_log_t *log, int tag);
void ev_ct_log_append(ev_ct_log_t *log, int tag);
/* Counters readable from Go. */
int ev_ct_load(int *p);
/* Logs msg to the built-in stream named stream (mtevL); -1 if none. */
int ev_ct_log(const char *stream, const char *msg);

/* Whether eventer_jobq_destroy has begun on q (ev_jobq_stopping): a test
 * waits for it instead of sleeping; q must still be alive. */
int ev_ct_jobq_stopping(void *q);

#endif
