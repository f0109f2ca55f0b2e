/*
 * eventer_conformance.h - the C side of the conformance kit
 * (docs/conformance.md): a table of named steps, and the driver that runs
 * a scenario's coroutines in C.
 *
 * A scenario (a .scn file) is a list of steps, each run by one of the
 * scenario's named coroutines: `a: read A 16 timeout=30ms => ETIMEDOUT`.
 * The runner (cmd/acoconform, or the Go package
 * github.com/acoeventer/eventer/conformance) parses it, runs it once with C
 * coroutines through this driver and once with Go coroutines, and compares
 * the two traces with each other and with the expected one.
 *
 * Your own steps.  A step is a C function registered under a name with a
 * signature (the arguments it takes); a scenario calls it by that name.
 * The Go implementation of the same step is registered under the same
 * name and signature in the Go table, so one scenario checks both:
 *
 *   static int step_greet(eventer_conformance_call_t *c) {
 *     eventer_aco_t e = eventer_conformance_aco(c, 0);
 *     struct timeval tv, *tmo = eventer_conformance_opt_tv(c, "timeout", &tv);
 *     int n = eventer_aco_write(e, "hi\n", 3, tmo);
 *     if (n < 0) return -1;             // the result is errno's name
 *     eventer_conformance_result(c, "n=%d", n);
 *     return 0;
 *   }
 *   ...
 *   eventer_conformance_register("greet", "obj timeout=dur", step_greet);
 *
 * Signatures are space-separated items, positional first:
 *   obj     the name of an object of the scenario (a socket end, a sync
 *           object, a listener, or one of your own)
 *   new     the name of an object the step creates
 *   co      the name of a coroutine of the scenario, or "self"
 *   int     an integer
 *   dur     a duration ("20ms", "1.5s", "250us", "0"); the step gets it
 *           in microseconds
 *   text    a word or a quoted string ("a b\n": Go's escapes); no NUL
 *   a|b|c   one of these words
 * An item ending in "?" is optional (trailing positional items only);
 * key=KIND is an option (`timeout=dur`), given in any order after the
 * positional arguments.
 *
 * Results.  A step returns 0 (its result is "ok", unless it set one with
 * eventer_conformance_result) or -1 with errno (its result is the errno's
 * name, "ETIMEDOUT": the Go side names its errors the same way).
 * Results are compared as text.
 *
 * Threads.  A step runs inside the scenario's coroutine that calls it, on
 * that coroutine's loop thread, and may block with the eventer_aco_*
 * calls.  The accessors below are for that call only.  Registration is
 * THREAD-SAFE.
 *
 * The driver is part of libacoeventer.a: a C program carries it only if
 * it calls it.  Go programs get it by importing the conformance package.
 */
#ifndef EVENTER_CONFORMANCE_H
#define EVENTER_CONFORMANCE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "eventer.h"
#include "eventer_aco.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- steps ------------------------------------------------------------------ */

typedef struct eventer_conformance_call eventer_conformance_call_t;
typedef int (*eventer_conformance_step_fn)(eventer_conformance_call_t *call);

/* Registers step `name` (letters, digits, '_', '.', '-') with `signature`
 * (see the top).  Name and signature are copied; registering a name again
 * replaces its function and signature (your step may replace a built-in
 * one).  0, or -1 with errno EINVAL (bad name or signature, NULL fn) or
 * ENOMEM. */
int eventer_conformance_register(const char *name, const char *signature,
                                 eventer_conformance_step_fn fn);
/* The signature of step `name`, or NULL if there is no such step.  The
 * string stays valid until the step is registered again. */
const char *eventer_conformance_signature(const char *name);
/* Calls f for every registered step, sorted by name; stops when f returns
 * non-zero and returns that. */
int eventer_conformance_foreach(int (*f)(const char *name, const char *signature,
                                         void *closure),
                                void *closure);

/* ---- inside a step ------------------------------------------------------------ */

/* The step's name and its positional arguments, as the scenario gave them
 * (dur arguments in microseconds).  arg returns NULL past the end. */
const char *eventer_conformance_step(eventer_conformance_call_t *c);
int eventer_conformance_argc(eventer_conformance_call_t *c);
const char *eventer_conformance_arg(eventer_conformance_call_t *c, int i);
/* Argument i as an integer (0 if absent). */
long long eventer_conformance_arg_int(eventer_conformance_call_t *c, int i);
/* Argument i, a duration, as a timeval in *tv: tv, or NULL if absent. */
struct timeval *eventer_conformance_arg_tv(eventer_conformance_call_t *c, int i,
                                           struct timeval *tv);
/* Option `key` (key=value), or NULL if not given. */
const char *eventer_conformance_opt(eventer_conformance_call_t *c, const char *key);
/* The index of option `key` for the object accessors below (an option of
 * kind obj: `queue=Q`), or -1 if not given. */
int eventer_conformance_opt_arg(eventer_conformance_call_t *c, const char *key);
/* Option `key`, a duration, in *tv: tv, or NULL if not given (so it can be
 * passed straight to an eventer_aco_* call as its timeout). */
struct timeval *eventer_conformance_opt_tv(eventer_conformance_call_t *c,
                                           const char *key, struct timeval *tv);

/* Sets the step's result (printf format); the last call wins. */
void eventer_conformance_result(eventer_conformance_call_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Sets the result to key=BYTES, the bytes written as the scenario
 * language writes them (bare when they are printable and have no space,
 * quote or backslash; else a quoted string with \n \r \t \\ \" \xNN). */
void eventer_conformance_result_bytes(eventer_conformance_call_t *c,
                                      const char *key, const void *p, size_t n);

/* Objects.  Argument i names an object of the scenario (or option i, see
 * eventer_conformance_opt_arg).  The accessors
 * return the object if it is of that kind, else -1 / NULL with errno
 * ENOENT (no object of that name yet) or EINVAL (another kind). */
int eventer_conformance_fd(eventer_conformance_call_t *c, int i);
eventer_aco_t eventer_conformance_aco(eventer_conformance_call_t *c, int i);
void *eventer_conformance_obj(eventer_conformance_call_t *c, int i);
/* The address of a listening object (listen, listener): 0, or -1/errno. */
int eventer_conformance_addr(eventer_conformance_call_t *c, int i,
                             struct sockaddr_storage *sa, socklen_t *len);
/* Makes argument i's object a plain fd, an aco event (the scenario holds
 * the caller's reference), or one of yours (free_fn, if not NULL, is
 * called with p when the scenario ends, on the loop that set it).  An
 * object already there is released first.  0, or -1/EINVAL. */
int eventer_conformance_set_fd(eventer_conformance_call_t *c, int i, int fd);
int eventer_conformance_set_aco(eventer_conformance_call_t *c, int i, eventer_aco_t e);
int eventer_conformance_set_obj(eventer_conformance_call_t *c, int i, void *p,
                                void (*free_fn)(void *p));
/* Forgets argument i's object without releasing it (the step took it
 * over).  0, or -1/ENOENT. */
int eventer_conformance_forget(eventer_conformance_call_t *c, int i);

/* The handle of the coroutine that argument i names (borrowed; "self" is
 * the caller), or NULL with errno ESRCH (it has not started). */
eventer_aco_co_t *eventer_conformance_co(eventer_conformance_call_t *c, int i);

/* ---- running a scenario (the runner's side) ------------------------------------
 * A run is built from the parsed scenario (coroutines, then steps), started
 * off the loop threads, polled until done, read, cleaned up and freed.
 * The runner validates the scenario first (signatures, names); the
 * driver checks only what it must to stay safe. */

typedef struct eventer_conformance_run eventer_conformance_run_t;

/* A run on `nloops` loops of the default pool (eventer_init must have run)
 * with `nobjs` object slots.  NULL with errno EINVAL or ENOMEM. */
eventer_conformance_run_t *eventer_conformance_run_new(int nloops, int nobjs);
/* Adds coroutine `name` on loop `loop`; manual ones wait for a `start`
 * step.  Its index (0, 1, ... in order), or -1/EINVAL. */
int eventer_conformance_run_co(eventer_conformance_run_t *r, const char *name,
                               int loop, int manual);
/* Appends a step for coroutine `co`: argv[0..argc) the positional
 * arguments, ref[i] the object slot (obj, new) or coroutine index (co,
 * -1 for self) argument i refers to, -1 for none; keys/vals the options,
 * optref[k] what option k refers to (as ref).
 * Its index in the run (0, 1, ... in order), or -1 with errno ENOENT (no
 * such step registered) or EINVAL. */
int eventer_conformance_run_step(eventer_conformance_run_t *r, int co,
                                 const char *step, int argc,
                                 const char *const *argv, const int *ref,
                                 int nopts, const char *const *keys,
                                 const char *const *vals, const int *optref);
/* Starts the coroutines that are not manual, each loop's in the order
 * added, from a task on their loop (so each runs until it first waits
 * before the next starts).  Not from a loop thread.  0, or -1/errno. */
int eventer_conformance_run_start(eventer_conformance_run_t *r);
/* 1 once every started coroutine has ended, else 0.  THREAD-SAFE. */
int eventer_conformance_run_done(eventer_conformance_run_t *r);
/* Gives up on a run: steps not yet begun are skipped and every live
 * coroutine is cancelled (eventer_aco_cancel; call it again while the run
 * is not done: a wait for asynch work is not cancellable).  THREAD-SAFE. */
void eventer_conformance_run_abort(eventer_conformance_run_t *r);

/* One entry of the trace: a step that has ended, in the order they ended. */
typedef struct eventer_conformance_entry {
  int step;           /* its index in the run */
  int co;             /* the coroutine that ran it */
  const char *result; /* its result (valid until the run is freed) */
  int64_t start_ns;   /* when it began and ended, from the run's start */
  int64_t end_ns;
} eventer_conformance_entry_t;
/* Entry i: 0, or -1 when there is none (yet).  THREAD-SAFE. */
int eventer_conformance_run_entry(eventer_conformance_run_t *r, int i,
                                  eventer_conformance_entry_t *out);
/* Step `step`'s index among its coroutine's steps, or -1. */
int eventer_conformance_run_step_index(eventer_conformance_run_t *r, int step);

/* Releases the run's objects (closes sockets and aco events, frees sync
 * objects, stops listeners), each on the loop that made it, and waits for
 * that.  Call after done.  Not from a loop thread.  0, or -1/ETIMEDOUT
 * when a loop did not do it within 10 s. */
int eventer_conformance_run_cleanup(eventer_conformance_run_t *r);
/* Frees a done (or never started) run; the live coroutines of a run that
 * is not done keep it: it is then freed when the last one ends. */
void eventer_conformance_run_free(eventer_conformance_run_t *r);

/* ---- helpers shared with the runner ----------------------------------------------- */

/* The name of errno value err ("ETIMEDOUT"), or "E<number>". */
const char *eventer_conformance_errname(int err);
/* Writes bytes p[0..n) as the scenario language does (see
 * eventer_conformance_result_bytes) into out (NUL-terminated, truncated
 * to outlen); the length it needed. */
size_t eventer_conformance_quote(char *out, size_t outlen, const void *p, size_t n);

/* Services: aco functions a scenario's listener can run for each
 * connection (the listener step), by name.  fn is an aco listener function
 * (eventer_aco_arg() is the connection).  0, or -1/EINVAL, ENOMEM. */
int eventer_conformance_register_service(const char *name, void (*fn)(void));

/* REST handlers a scenario's rest_rule can mount, by name: h is a
 * mtev_rest.h rest_request_handler.  A name registered again is replaced.
 * 0, or -1/EINVAL, ENOMEM. */
struct mtev_http_rest_closure;
typedef int (*eventer_conformance_handler_fn)(struct mtev_http_rest_closure *restc,
                                              int npats, char **pats);
int eventer_conformance_register_handler(const char *name,
                                         eventer_conformance_handler_fn h);

#ifdef __cplusplus
}
#endif

#endif /* EVENTER_CONFORMANCE_H */
