/*
 * eventer_aco_opset.h - libmtev's header for converting events to aco
 * events (eventer_set_eventer_aco, eventer_set_eventer_aco_co).  Here the
 * whole coroutine layer lives in eventer_aco.h; this header brings it in,
 * so code that includes either name compiles.
 *
 * libmtev also exports the opset itself, eventer_aco_fd_opset; here it is
 * private to the coroutine layer: test an event with eventer_is_aco(e).
 */
#ifndef EVENTER_ACO_OPSET_H
#define EVENTER_ACO_OPSET_H

#include "eventer_aco.h"

#endif /* EVENTER_ACO_OPSET_H */
