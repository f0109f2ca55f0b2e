/*
 * acoeventer.h - everything public in aco-eventer, for C users.
 *
 *   cc prog.c $(pkg-config --cflags --libs --static acoeventer)
 */
#ifndef ACOEVENTER_H
#define ACOEVENTER_H

#include "aco.h"
#include "mtev_log.h" /* log streams: mtevL, mtevFatal */
#include "eventer.h"  /* the event loop, job queues, driver API */
#include "eventer_aco.h" /* coroutines on the loop */
#include "eventer_aco_sync.h" /* their semaphores, mutexes, wait groups, channels */
#include "eventer_SSL_fd_opset.h" /* TLS under the fd opsets (OpenSSL 3) */
#include "mtev_hash.h"      /* key/value tables (configuration sets) */
#include "mtev_conf.h"      /* the XML configuration (libxml2) */
#include "mtev_listener.h"  /* listeners: classic and aco services */
#include "mtev_http.h"    /* the HTTP/1.1 engine */
#include "mtev_rest.h"    /* REST routing on it */

#endif /* ACOEVENTER_H */
