/*
 * listener.h - the C side of the Go listener binding: Go aco functions
 * as mtev_listener dispatch types, the loaded configuration, and the
 * calls package eventer's listener.go makes, with C pointers as
 * uintptr_t (they never point into Go memory).
 *
 * A connection of a Go aco function: the listener calls
 * ev_go_listen_start(e, id) on the connection's loop, outside any
 * coroutine.  It converts e into an aco event of that loop and hands the
 * loop's Go driver an EV_GO_STEP_LISTEN step (when the step slot of this
 * run_once call is taken, it posts a task that hands it over in the next
 * iteration); the driver starts the Go coroutine.  The Go side owns the
 * event (one reference) and the acceptor closure from then on and ends
 * both with ev_go_listen_end().
 */
#ifndef ACOEVENTER_CGO_LISTENER_H
#define ACOEVENTER_CGO_LISTENER_H

#include "glue.h"
#include "mtev_conf.h"
#include "mtev_listener.h"

/* The step: closure = the connection's aco event, and over u64[3] (read
 * through ev_go_listen_step_t): the Go aco function's id (with
 * EV_GO_LISTEN_PLAIN when the connection's opset is the listener's own,
 * for ev_go_listen_try), the connection's fd, the acceptor closure, the
 * listener. */
#define EV_GO_STEP_LISTEN (EVENTER_STEP_USER + 8)
#define EV_GO_LISTEN_PLAIN 0x80000000u
typedef struct {
  uint32_t id;
  int32_t fd;
  mtev_acceptor_closure_t *ac;
  mtev_listener_t *l;
} ev_go_listen_step_t;

/* The dispatch start function of every Go aco function (its closure is
 * the function's Go id, below 2^31). */
void ev_go_listen_start(eventer_t e, void *closure);
/* Registers Go aco function id under name.  0, or an errno. */
int ev_go_listen_register(const char *name, uint32_t id);

/* ev_go_try for a connection whose opset is the listener's own (the step
 * said EV_GO_LISTEN_PLAIN): plain socket calls that log nothing and call
 * no callback, so Go calls it with noescape/nocallback and its buffer may
 * stay on the coroutine's stack.  Only for such connections. */
ev_go_try_t ev_go_listen_try(uintptr_t e, int op, char *buf, size_t len);

/* Ends a connection of a Go aco function (its loop thread): e (0 when
 * the Go side released it already) is closed unless it was, and the Go
 * side's reference dropped; the acceptor closure is freed. */
void ev_go_listen_end(uintptr_t e, uintptr_t ac);

/* A listener in code (mtev_listener_create) running Go aco function id,
 * with the <config> keys keys[i] = vals[i].  The listener (one
 * reference), or NULL with errno and err. */
typedef struct {
  const char *address;
  int port, backlog, fanout, accept_in_loop, reuseport;
  uint32_t max_connections;
  uint32_t id;
  const char **keys, **vals;
  int nkv;
} ev_go_lopts_t;
mtev_listener_t *ev_go_listener_create(const ev_go_lopts_t *o, char *err,
                                       size_t errlen);

/* mtev_listener_init_ex(app), after checking what a Go program cannot
 * run: a fanout_pool other than "default" (only the default pool's loops
 * have Go drivers).  0, or -1 with errno and err. */
int ev_go_listener_init(const char *app, char *err, size_t errlen);

/* The listeners running or draining now (mtev_listener_foreach, newest
 * first): up to max into out, each with a reference for the caller; the
 * number there are (more than max: the caller releases what it got and
 * asks again with more room). */
int ev_go_listeners(mtev_listener_t **out, int max);

/* How many listeners run or drain now. */
int ev_go_listener_count(void);

/* 1 when l runs Go aco functions (its dispatch is ev_go_listen_start). */
int ev_go_listener_is_go(uintptr_t l);

/* mtev_listener_stop with a grace of ns (< 0: none). */
int ev_go_listener_stop(uintptr_t l, int64_t grace_ns);
/* mtev_listener_wait with a timeout of ns (< 0: none). 0, or an errno. */
int ev_go_listener_wait(uintptr_t l, int64_t timeout_ns);

/* Re-applies the loaded configuration's <eventer><config> (after an
 * eventer_fini reset the settings).  Unknown keys are skipped (they were
 * reported at load).  0, or -1 with errno and err. */
int ev_go_conf_apply_eventer(char *err, size_t errlen);

/* The acceptor closure's remote address, copied into buf (len bytes);
 * its length (0: none). */
int ev_go_ac_remote(uintptr_t ac, void *buf, int len);
/* The <config> value of key (klen bytes) in *val, *vlen; 1 if found. */
int ev_go_ac_config(uintptr_t ac, const char *key, int klen, const char **val,
                    int *vlen);

#endif
