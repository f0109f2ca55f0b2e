/*
 * eventer_conformance_impl.h - what eventer_conformance.c and the built-in
 * steps (eventer_conformance_steps.c) share.  Not installed.
 */
#ifndef EVENTER_CONFORMANCE_IMPL_H
#define EVENTER_CONFORMANCE_IMPL_H

#include <stdatomic.h>
#include <pthread.h>

#include "eventer_conformance.h"

/* The largest result a step may set (a read of up to EV_CF_READ_MAX bytes,
 * quoted, fits). */
#define EV_CF_READ_MAX 1024
#define EV_CF_HTTP_MAX 2048 /* an http step's response */
#define EV_CF_RESULT_MAX (4 * EV_CF_HTTP_MAX + 64)

/* What an object slot holds. */
enum {
  EV_CF_NONE = 0, /* nothing (yet, or any more) */
  EV_CF_FD,       /* a plain fd */
  EV_CF_ACO,      /* an aco event (the run holds a reference) */
  EV_CF_OBJ       /* anything else: p, with its type and free function */
};

typedef struct ev_cf_obj {
  int kind;
  int fd;
  eventer_aco_t aco;
  void *p;
  const char *type;          /* EV_CF_OBJ: "sem", ... or "user" */
  void (*free_fn)(void *p);
  int loop;                  /* the loop whose coroutine set it */
  int has_addr;              /* addr: a listening address (kept after close) */
  struct sockaddr_storage addr;
  socklen_t addrlen;
} ev_cf_obj_t;

typedef struct ev_cf_co ev_cf_co_t;
typedef struct ev_cf_step ev_cf_step_t;

struct ev_cf_step {
  int co;
  int idx_in_co;
  eventer_conformance_step_fn fn;
  char *name;
  int argc;
  char **argv;
  int *ref;
  int nopts;
  char **keys;
  char **vals;
  char *result;
  int64_t start_ns, end_ns;
};

struct ev_cf_co {
  eventer_conformance_run_t *run;
  int idx;
  char *name;
  int loop;
  int manual;
  int *steps;
  int nsteps, cap;
  _Atomic(eventer_aco_co_t *) handle;
  atomic_int started;
};

struct eventer_conformance_call {
  eventer_conformance_run_t *run;
  ev_cf_step_t *s;
  ev_cf_co_t *co;
  int result_set;
};

/* The loop (default pool index) the calling thread drives, -1 if none. */
int ev_cf_current_loop(void);
/* Object slot of argument i (NULL/EINVAL if the argument names none), and
 * the run's lock around slots. */
ev_cf_obj_t *ev_cf_slot(eventer_conformance_call_t *c, int i);
void ev_cf_lock(eventer_conformance_run_t *r);
void ev_cf_unlock(eventer_conformance_run_t *r);
/* Releases what a slot holds (on the caller's thread) and empties it. */
void ev_cf_release(ev_cf_obj_t *o);
/* The built-in object of argument i if it is of type `type`; else NULL
 * with errno ENOENT or EINVAL. */
void *ev_cf_typed(eventer_conformance_call_t *c, int i, const char *type);
/* Makes argument i a built-in object of `type`. */
int ev_cf_set_typed(eventer_conformance_call_t *c, int i, const char *type,
                    void *p, void (*free_fn)(void *));
/* Starts manual coroutine co (the `start` step): eventer_aco_spawn on its
 * loop, or with stack > 0 eventer_aco_start_stack (on the calling loop,
 * which must be co's).  0, or -1/errno. */
int ev_cf_start_co(eventer_conformance_run_t *r, ev_cf_co_t *co, size_t stack);
/* A name unique to this run and process ("cf<run>_<name>"), for job
 * queues. */
void ev_cf_unique(eventer_conformance_call_t *c, const char *name, char *out,
                  size_t len);
/* Registration without the built-ins' once (which calls them). */
int ev_cf_register(const char *name, const char *signature, eventer_conformance_step_fn fn);
int ev_cf_register_service(const char *name, void (*fn)(void));
/* Registers the tls step (eventer_conformance_tls.c). */
void ev_cf_tls_register(void);
/* Registers the REST steps and handlers (eventer_conformance_http.c). */
void ev_cf_http_register(void);
/* The Go run's rest_server: an http_rest_api listener on loopback (addr:
 * "127.0.0.1:port"), released with ev_cf_rest_unlisten. */
void *ev_cf_rest_listen(char *addr, size_t len);
void ev_cf_rest_unlisten(void *l);
/* Registers the built-in steps and services (once). */
void ev_cf_builtin_register(void);

#endif
