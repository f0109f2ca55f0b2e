/*
 * listener_shim.h - a test-only stand-in for the listener's acceptor
 * closure (libmtev's mtev_acceptor_closure_* functions) and a small accept
 * loop, so the HTTP engine can be tested before the listener is part of
 * the library.  Never linked into the library.
 */
#ifndef LISTENER_SHIM_H
#define LISTENER_SHIM_H

#include <stdint.h>

#include "eventer.h"

/* Listens on 127.0.0.1 (an ephemeral port, returned) and, on the loop that
 * owns the listening event (loop 0 of the default pool), accepts each
 * connection and hands it to the callback registered under `type`
 * (eventer_callback_for_name) with a fresh acceptor closure: the callback
 * is called once at once (eventer_trigger, READ|EXCEPTION) and then on
 * readiness, as the listener does.  -1 on error. */
int shim_listen(const char *type);
/* Closes the listening socket; call after eventer_fini() (which drops
 * the listening event). */
void shim_stop(void);
/* Acceptor closures alive right now. */
int64_t shim_live_closures(void);

#endif
