/*
 * mtev_listener_impl.h - what mtev_listener_conf.c (the XML front end)
 * needs from mtev_listener.c.  Not installed.
 *
 * A listener is made in two steps so that a configuration with several
 * listeners starts all of them or none: ev_l_bind() checks the options and
 * binds the socket (nothing is accepted yet); ev_l_start() begins
 * accepting.  A bound listener that is not started is dropped with
 * ev_l_unbind().
 */
#ifndef MTEV_LISTENER_IMPL_H
#define MTEV_LISTENER_IMPL_H

#include "mtev_listener.h"

/* Checks opts, resolves the type, binds and listens.  NULL with errno and
 * err on failure.  The result holds one reference (the caller's). */
mtev_listener_t *ev_l_bind(const mtev_listener_opts_t *opts, char *err,
                           size_t errlen);
/* Starts accepting.  0, or -1 with errno and err (the listener is then
 * unbound and released). */
int ev_l_start(mtev_listener_t *l, char *err, size_t errlen);
/* Closes a bound, never started listener and drops the caller's
 * reference. */
void ev_l_unbind(mtev_listener_t *l);
/* 1 when a and b would listen on the same address (and not both with
 * reuseport). */
int ev_l_same_address(mtev_listener_t *a, mtev_listener_t *b);
/* mtev_listener_skip() said to skip (address, port). */
int ev_l_should_skip(const char *address, int port);
/* Marks l as started by mtev_listener_init (mtev_listener_shutdown drops
 * it). */
void ev_l_set_from_conf(mtev_listener_t *l);

#endif /* MTEV_LISTENER_IMPL_H */
