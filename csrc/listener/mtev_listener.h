/*
 * mtev_listener.h - libmtev's listener subsystem: bind, accept, and hand
 * each connection to a service, as a classic callback or as an aco
 * function running in a coroutine of its own.
 *
 * The seed's aco listener:
 *
 *   static void listen_to_me(void) {
 *     eventer_aco_t e = eventer_aco_arg();     // the connection
 *     ... eventer_aco_read / eventer_aco_write ...
 *     eventer_aco_close(e);
 *     eventer_aco_free(e);
 *   }                                          // or aco_exit()
 *   ...
 *   mtev_conf_init(APPNAME);
 *   mtev_conf_load("app.conf");
 *   eventer_init();
 *   mtev_listener_register_aco_function("listen_to_me", listen_to_me);
 *   mtev_listener_init(APPNAME);   // /APP/listeners//listener elements
 *   eventer_loop();
 *
 * Configuration (mtev_conf.h), each attribute on the <listener> element or
 * inherited from an ancestor (the nearest one wins):
 *
 *   type            an aco function (mtev_listener_register_aco_function,
 *                   mtev_listener_register_aco_dispatch) or a callback
 *                   named with eventer_name_callback (callbacks win)
 *   address         "*" or "inet:*" (IPv4 any), "inet6:*" (IPv6 any), an
 *                   IPv4 or IPv6 literal, or a path starting with "/" (an
 *                   AF_UNIX socket; a stale socket file left by a process
 *                   that is gone is removed, one in use is an error).
 *                   Default "*".
 *   port            1..65535 (not used for AF_UNIX)
 *   backlog         listen(2) backlog, default 5 (libmtev's)
 *   fanout          on: connections are spread over the loops of the
 *                   pool (round robin; the default pool's loop 0 is left
 *                   out when it has other loops, as eventer_choose_owner
 *                   does); off (default): every connection runs on the
 *                   listener's loop (loop 0 of the default pool)
 *   fanout_pool     the pool fanout uses (eventer_impl_propset
 *                   "loop_<name>"), default "default"
 *   accept_thread   on (default): accept(2) runs in a thread of its own
 *                   (eventer_run_in_thread); off: on the listener's loop
 *   reuseport       on: SO_REUSEPORT, so several processes (or listeners)
 *                   can share the port; default off
 *   max_connections connections open at once; one more is accepted and
 *                   reset at once (RST: SO_LINGER 0) and counted as
 *                   refused.  0 (default): no limit
 *   require_env     libmtev's: the listener is skipped unless the
 *                   environment matches (mtev_conf_env_off)
 *   ssl             on: TLS, set up by the <sslconfig> (below); default off
 *
 * and a <config> child merged with its ancestors' <config>s
 * (mtev_conf_get_hash), readable by the service through
 * mtev_acceptor_closure_config().  Keys the listener itself reads:
 *
 *   no_delay        TCP_NODELAY on accepted TCP sockets; default on
 *   idle_timeout    ms; a connection with no read or write for that long
 *                   is shut down (shutdown(2) both ways: a pending read
 *                   returns 0, writes fail with EPIPE, a classic callback
 *                   sees READ|EXCEPTION).  Reads and writes through the
 *                   connection's event mark it; so do
 *                   mtev_acceptor_closure_mark_read/_write.  On a TLS
 *                   connection it counts from the end of the handshake
 *                   (handshake_timeout bounds that).  0 or absent: none
 *   half_close      off: once a read on the connection returned 0 (EOF),
 *                   writes fail with -1/EPIPE, so a loop like the seed's
 *                   (read; write "thanks!") ends when the peer closes or
 *                   half-closes instead of writing forever.  on: writes go
 *                   on after the peer's EOF.  Default off for aco
 *                   functions, on for classic callbacks (an HTTP/1.0
 *                   client may half-close after its request)
 *
 * TLS.  With ssl="on", an <sslconfig> child, merged with its ancestors'
 * <sslconfig>s as <config> is, says how (libmtev's keys, then ours):
 *
 *   certificate_file  PEM certificate (then its chain); required
 *   key_file          its PEM private key; required
 *                     (certificate / key: the same, or PEM text)
 *   ca_chain          PEM CAs that client certificates must chain to; with
 *                     one, clients are asked for a certificate (ca_file:
 *                     the same)
 *   ciphers           OpenSSL cipher list ("TLS_..." names: TLS 1.3 suites)
 *   layer             "tlsv1.2" or "tlsv1.3" (only that version), or
 *                     absent / "all": the best version both sides have, at
 *                     least TLS 1.2 (eventer_ssl_ctx_new's layer, options
 *                     included)
 *   alpn              the protocols negotiated, e.g. "http/1.1" or
 *                     "h2,http/1.1", in the client's order (npn: the same);
 *                     "none": no ALPN.  Absent: protocols registered with
 *                     eventer_ssl_alpn_register among "h2,http/1.1"
 *   crl               PEM certificate revocation lists (of ca_chain's CAs)
 *   optional_no_ca    "true": a client certificate that does not chain to
 *                     ca_chain (self-signed, unknown issuer) is accepted;
 *                     the service judges it (eventer_ssl_get_verify_result)
 *   ignore_dates      "true": an expired or not yet valid client
 *                     certificate is accepted
 *   client_cert       (ours) "required": a client without a certificate is
 *                     refused in the handshake; "optional": clients are
 *                     asked for one even without a ca_chain of the
 *                     listener's (then <eventer><config>'s
 *                     default_ca_chain judges it; without either CA,
 *                     optional_no_ca must be on).  Absent: asked when
 *                     there is a ca_chain, and a client may send none
 *                     (libmtev's behaviour)
 *   handshake_timeout (ours) ms for the whole handshake, default 5000
 *
 * A bad setting (a missing or unreadable file, a key that does not match
 * its certificate, an unknown layer, ...) is a configuration error; an
 * unknown key is logged and ignored.  The handshake completes before the
 * service sees the connection:
 *  - aco function: its coroutine does eventer_aco_ssl_accept first, then
 *    calls the function, whose eventer_aco_read/write move plaintext;
 *  - classic callback: the handshake runs on the loop (eventer_SSL_accept
 *    from the listener's own callback); then the event, its TLS context
 *    attached, goes to the callback, whose eventer_read/write move
 *    plaintext.  Its first call has mask READ|WRITE whatever the socket
 *    says: the client's first data may have come with its Finished and
 *    sit in the TLS layer's buffer, where no readiness will announce it.
 *    (As everywhere with TLS, read until EAGAIN before waiting for READ.)
 *  - dispatch (mtev_listener_register_aco_dispatch): as classic, then
 *    start(e, closure) with the event out of the loop (or still in it,
 *    to be adopted: mtev_listener_aco_dispatch_converts); read before
 *    waiting for READ, for the same reason.
 * A handshake that fails (plaintext, garbage, a refused certificate, a
 * peer that hangs up) or that is not over by handshake_timeout closes the
 * connection; the TLS layer logs one line naming the peer and the reason
 * ("TLS accept from 127.0.0.1:40312 (fd 9) failed: ...").  A handshake cut
 * short by a stop is not logged.  The connection's TLS context is
 * eventer_get_eventer_ssl_ctx(e) (also on an aco event): ALPN, cipher,
 * the peer's certificate and chain; mtev_acceptor_closure_remote_cn() is
 * the peer certificate's CN.  Test for TLS with that context, not the
 * event's opset (the listener wraps the TLS opset to keep idle_timeout
 * and half_close working).
 *
 * Bad configuration is an error naming the file and line (and what is
 * wrong: an unknown type, with the registered ones; a bad address or port;
 * a port in use; two listeners on one address; an unknown pool), and
 * nothing is half-started: listeners of the same call that were already
 * bound are closed again.
 *
 * Connections.  Every connection has an acceptor closure (its remote
 * address, the listener's <config>, a service context) and an event whose
 * closure it is; the event's fd opset sends with MSG_NOSIGNAL, so a peer
 * that goes away gives EPIPE, never SIGPIPE.
 *
 *  - classic callback: the event (mask READ|WRITE|EXCEPTION) is added on
 *    the connection's loop and the callback is called with the acceptor
 *    closure, as libmtev does; the service frees the closure
 *    (mtev_acceptor_closure_free) when it is done with the connection.
 *  - aco function: it runs in a fresh coroutine on the connection's loop;
 *    eventer_aco_arg() is the connection's eventer_aco_t (converted
 *    already) and eventer_aco_get_closure() on it is the acceptor closure.
 *    The function owns the event: it closes and frees it
 *    (eventer_aco_close, eventer_aco_free), and may then return or call
 *    aco_exit().  When the coroutine ends, the connection is closed if
 *    the function left it open, and the closure is freed: nothing of the
 *    connection outlives it (libmtev leaks an event and a closure here).
 *    Do not replace the event's closure.
 *
 * Stopping.  mtev_listener_stop() stops accepting at once (the socket is
 * closed, an AF_UNIX path removed) and lets the connections finish; at the
 * grace deadline, each remaining aco connection's coroutine is cancelled
 * (eventer_aco_cancel: its pending or next blocking call returns -1 with
 * ECANCELED) and every other connection's socket is shut down.
 *
 * eventer_fini() ends what is left on the loops it frees, without running
 * any service code: a listener still accepting (never stopped, or its
 * stop not yet run on its loop; an accept thread is stopped and ends
 * first) stops (its socket is closed, its references go, threads in
 * mtev_listener_wait return 0); an aco
 * function's connection whose coroutine goes with its loop ends as the
 * function's return would end it (the event closed and released, with the
 * function's reference if it had not eventer_aco_free'd the event (a
 * reference it took with eventer_ref and kept stays its own to drop), and
 * the closure freed); a connection still on its way to its loop (accepted and not yet
 * dispatched, or its dispatch start queued after the TLS handshake) is
 * closed and its closure freed.  Not reached: a classic callback's or
 * dispatch service's connection still open (its event goes with the
 * loop; its closure and fd are the service's): stop listeners first
 * (mtev_listener_shutdown) to let those finish.
 *
 * Threads: everything here is THREAD-SAFE except where noted.
 */
#ifndef MTEV_LISTENER_H
#define MTEV_LISTENER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "eventer.h"
#include "eventer_aco.h"
#include "mtev_hash.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mtev_acceptor_closure_t mtev_acceptor_closure_t;
typedef struct mtev_listener mtev_listener_t; /* a listening socket */

/* ---- starting from the configuration (libmtev) ---------------------------------- */

/* Starts every listener of /TOPLEVEL/listeners//listener and
 * /TOPLEVEL/include/listeners//listener (TOPLEVEL NULL: any root) of the
 * loaded configuration; eventer_init() must have run.  On an error it
 * logs it and starts nothing (libmtev's returns void the same way). */
void mtev_listener_init(const char *toplevel);
/* The same; 0, or -1 with errno and the message in err. */
int mtev_listener_init_ex(const char *toplevel, char *err, size_t errlen);

/* Listener types.  An aco function runs in a fresh coroutine per
 * connection (see the top).  The name is copied; registering a name again
 * replaces it.  libmtev's returns void; ours 0, or -1/EINVAL, ENOMEM. */
int mtev_listener_register_aco_function(const char *name, void (*func)(void));

/* For bindings that run connections in their own coroutines (the Go
 * binding): start(e, closure) is called on the connection's loop, outside
 * any coroutine, with the connection's event (unregistered, unless start
 * converts, see below; its closure the acceptor closure, one reference
 * for the callee).  The callee owns
 * both: it closes and frees the event and calls
 * mtev_acceptor_closure_free() when the connection is done.  At a
 * graceful stop's deadline such connections are shut down (shutdown(2)).
 * Shares the registry with aco functions.  0, or -1/EINVAL, ENOMEM. */
typedef void (*mtev_listener_aco_dispatch_t)(eventer_t e, void *closure);
int mtev_listener_register_aco_dispatch(const char *name,
                                        mtev_listener_aco_dispatch_t start,
                                        void *closure);
/* Declares (ours) that start converts the event it is given into an aco
 * event before it returns (ev_aco_fd_convert, or eventer_set_eventer_aco
 * in a coroutine it resumes at once), as the Go binding's does: a TLS
 * listener then hands it the event still registered in the loop, as the
 * handshake left it, and the conversion adopts that registration (no
 * epoll_ctl to take it out and put it back).  Other start functions get
 * the event unregistered.  At most 8.  0, or -1 with errno EINVAL,
 * ENOSPC.  THREAD-SAFE. */
int mtev_listener_aco_dispatch_converts(mtev_listener_aco_dispatch_t start);

/* libmtev: a listener on (address, port) in the configuration is skipped
 * (address NULL: any address on that port). */
void mtev_listener_skip(const char *address, int port);

/* ---- starting in code -------------------------------------------------------------- */

typedef struct mtev_listener_opts {
  const char *address;      /* as in the configuration; NULL: "*" */
  int port;                 /* 0 with an IP address: the kernel picks one
                             * (mtev_listener_get_port) */
  int backlog;              /* <= 0: 5 */
  const char *type;         /* a registered type, or one of: */
  void (*aco_function)(void);   /* an aco function */
  eventer_func_t callback;      /* a classic callback */
                                /* (or dispatch, below) */
  void *service_ctx;        /* each closure's initial context */
  mtev_boolean fanout;
  const char *fanout_pool;  /* NULL: "default" */
  mtev_boolean accept_in_loop; /* accept_thread="off" */
  mtev_boolean reuseport;
  uint32_t max_connections; /* 0: no limit */
  mtev_hash_table *config;  /* the <config> keys (copied); NULL: none */
  mtev_boolean ssl;         /* TLS, with: */
  mtev_hash_table *sslconfig; /* the <sslconfig> keys (copied) */
  /* a binding's start function, as mtev_listener_register_aco_dispatch
   * registers one, without a name (the Go binding's ListenAco) */
  mtev_listener_aco_dispatch_t dispatch;
  void *dispatch_closure;
} mtev_listener_opts_t;

/* Binds and starts one listener.  It returns a handle with one reference
 * for the caller (mtev_listener_release), or NULL with errno and the
 * message in err (EINVAL bad option, EADDRINUSE, EACCES, ENXIO before
 * eventer_init, ENOENT/EACCES/EIO for TLS files that cannot be used, ...).
 * A TLS listener: ssl mtev_true and sslconfig as the <sslconfig> keys. */
mtev_listener_t *mtev_listener_create(const mtev_listener_opts_t *opts,
                                      char *err, size_t errlen);

/* Graceful stop: stops accepting now; open connections may finish until
 * `grace` has passed (NULL: no deadline), then they are cancelled (see
 * the top).  0, or -1/EINVAL.  Stopping twice is harmless. */
int mtev_listener_stop(mtev_listener_t *l, const struct timeval *grace);
/* Ours: ends a stopping listener's connections whose TLS handshake is
 * still running on the loop (classic and dispatch services), now and
 * without a log line, as its grace deadline would: for a binding that
 * enforces its own deadline (mtev_listener_stop with grace NULL).  0, or
 * -1/EINVAL (NULL, or the listener is still running). */
int mtev_listener_end_handshakes(mtev_listener_t *l);
/* Waits until l is stopped and its last connection has ended.  On a plain
 * thread it blocks; in a coroutine it parks.  0, or -1 with errno:
 * ETIMEDOUT, EDEADLK (on a loop thread outside a coroutine: it would
 * block the loop), EINVAL. */
int mtev_listener_wait(mtev_listener_t *l, const struct timeval *timeout);
/* Drops a reference.  Releasing does not stop it: a listener runs until
 * mtev_listener_stop or mtev_listener_shutdown, and its memory lives on
 * while it runs or has connections. */
void mtev_listener_release(mtev_listener_t *l);
void mtev_listener_ref(mtev_listener_t *l);

/* Stops every listener (as mtev_listener_stop with `grace`) and waits for
 * them (as mtev_listener_wait with `timeout`), then drops the ones
 * mtev_listener_init started.  0, or -1/ETIMEDOUT. */
int mtev_listener_shutdown(const struct timeval *grace,
                           const struct timeval *timeout);

typedef struct mtev_listener_stats {
  uint64_t accepted;      /* connections handed to the service */
  uint64_t active;        /* of those, still open (closure not freed) */
  uint64_t refused;       /* reset at once: over max_connections, or the
                           * listener was stopping */
  uint64_t accept_errors; /* accept(2) failures (EMFILE, ...) */
} mtev_listener_stats_t;
int mtev_listener_get_stats(mtev_listener_t *l, mtev_listener_stats_t *out);

/* The bound address (getsockname), its port (0 for AF_UNIX), and a name
 * for messages ("127.0.0.1:9999", "[::1]:80", "/tmp/sock"). */
int mtev_listener_get_address(mtev_listener_t *l, struct sockaddr *sa,
                              socklen_t *len);
int mtev_listener_get_port(mtev_listener_t *l);
const char *mtev_listener_get_name(mtev_listener_t *l);
/* The listener's type name ("" when started with a function pointer). */
const char *mtev_listener_get_type(mtev_listener_t *l);
/* The settings in effect, as mtev_listener_create takes them (address is
 * the name above, backlog the one passed to listen(2), fanout_pool the
 * pool's name, config the merged <config>; strings and table borrowed
 * from l).  0, or -1/EINVAL. */
int mtev_listener_get_opts(mtev_listener_t *l, mtev_listener_opts_t *out);

/* Calls f for every listener that is running or still has connections,
 * with a reference held for the call; stops early when f returns
 * non-zero (and returns that). */
int mtev_listener_foreach(int (*f)(mtev_listener_t *l, void *closure),
                          void *closure);

/* Acceptor closures alive now, over all listeners (tests use it). */
int64_t mtev_acceptor_closures_live(void);

/* ---- the acceptor closure (libmtev) ------------------------------------------------ */

/* The peer's address (AF_UNIX peers are usually unnamed). */
struct sockaddr *mtev_acceptor_closure_remote(mtev_acceptor_closure_t *ac);
/* The CN of the certificate the TLS peer sent (valid while the closure
 * lives), or NULL: no TLS, no certificate, or no CN in it. */
const char *mtev_acceptor_closure_remote_cn(mtev_acceptor_closure_t *ac);
/* The service's context: initially the listener's service_ctx. */
void *mtev_acceptor_closure_ctx(mtev_acceptor_closure_t *ac);
void mtev_acceptor_closure_set_ctx(mtev_acceptor_closure_t *ac, void *ctx,
                                   void (*freefunc)(void *));
void (*mtev_acceptor_closure_ctx_free_func(mtev_acceptor_closure_t *ac))(void *);
/* Frees the context with its free function (if any) and clears it. */
void mtev_acceptor_closure_ctx_free(mtev_acceptor_closure_t *ac);
/* The merged <config> of the listener (read-only, shared by its
 * connections; valid while the closure lives). */
mtev_hash_table *mtev_acceptor_closure_config(mtev_acceptor_closure_t *ac);
/* The classic callback the listener dispatches to (NULL for aco). */
eventer_func_t mtev_acceptor_closure_dispatch(mtev_acceptor_closure_t *ac);
/* libmtev's control_dispatch command word, for a service that reads one:
 * 0 until set. */
uint32_t mtev_acceptor_closure_cmd(mtev_acceptor_closure_t *ac);
void mtev_acceptor_closure_set_cmd(mtev_acceptor_closure_t *ac, uint32_t cmd);
/* Activity marks for idle_timeout (now NULL: the current time). */
void mtev_acceptor_closure_mark_read(mtev_acceptor_closure_t *ac,
                                     struct timeval *now);
void mtev_acceptor_closure_mark_write(mtev_acceptor_closure_t *ac,
                                      struct timeval *now);
/* Time since the last read or write mark, into *diff. */
void mtev_acceptor_closure_readwrite_age(mtev_acceptor_closure_t *ac,
                                         struct timeval *now,
                                         struct timeval *diff);
/* mtev_true when e (the connection's event, ac its closure) does plain
 * socket I/O through the listener with nothing added: its opset is the
 * listener's plain one (no TLS), half_close is on and there is no
 * idle_timeout.  Its service may then use the fd with socket calls of its
 * own (sendmsg, recv with MSG_PEEK, shutdown) and gets what the event's
 * reads and writes would give; it still closes through the event
 * (eventer_close), which keeps the listener's books.  The HTTP engine
 * writes its output queue with one sendmsg when this holds. */
mtev_boolean mtev_acceptor_closure_raw_io(mtev_acceptor_closure_t *ac, eventer_t e);
/* The listener the connection came from (borrowed). */
mtev_listener_t *mtev_acceptor_closure_listener(mtev_acceptor_closure_t *ac);
/* Ends the connection's accounting and frees the closure (and its context
 * with its free function).  Classic services call it when done; for aco
 * functions the listener does.  Call it on the connection's loop. */
void mtev_acceptor_closure_free(mtev_acceptor_closure_t *ac);

/* libmtev: the text form of an address (IP without port, or the AF_UNIX
 * path) into buff; its length (0 for an unknown family). */
int mtev_convert_sockaddr_to_buff(char *buff, int blen, struct sockaddr *remote);

#ifdef __cplusplus
}
#endif

#endif /* MTEV_LISTENER_H */
