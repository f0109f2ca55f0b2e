/*
 * mtev_rest.h - REST routing on the HTTP engine (libmtev's mtev_rest API).
 *
 *   mtev_http_rest_init();
 *   mtev_rest_mountpoint_t *rule =
 *       mtev_http_rest_new_rule("GET", "/", "^hello$", hello_handler);
 *   mtev_rest_mountpoint_set_aco(rule, mtev_true);
 *
 * Routing, for each request:
 *   1. the base: of the registered bases (each ends in '/'), the longest
 *      that is a prefix of the request's path;
 *   2. the rest of the path (after the base, without the query string) is
 *      matched against that base's rules in registration order; the first
 *      rule whose method is the request's and whose expression (PCRE2,
 *      JIT-compiled) matches serves it; its captures are npats/pats
 *      (unset groups are ""); a HEAD request falls back to a GET rule (the
 *      engine sends the headers only);
 *   3. nothing matches: OPTIONS is answered 200 with Allow listing the
 *      methods of the rules whose expression matches; other methods get
 *      405 with that Allow when there are such rules, else 404;
 *   4. the ACL of the configuration (below), if there is one, then the
 *      rule's auth function, if any, may refuse: 403.  With neither, every
 *      request is allowed.
 *
 * The ACL (libmtev's <rest><acl>), read from the loaded configuration by
 * mtev_http_rest_init (and again by mtev_http_rest_load_rules):
 *
 *   <rest>
 *     <acl type="deny" url="^/admin/">       selectors of the stanza
 *       <rule type="allow" ip="127.0.0.0/8, ::1" method="^(GET|HEAD)$"/>
 *     </acl>
 *     <acl type="allow"/>                    everything else
 *   </rest>
 *
 * Selectors: url (the request path), method, cn (the TLS peer's name, ""
 * without TLS) are PCRE2 expressions; ip is a list of addresses and CIDR
 * blocks the peer's address must be in (an IPv4-mapped IPv6 peer counts as
 * IPv4).  An element matches when all of its selectors do (none: always).
 * The first <acl> that matches decides: its first matching <rule>'s type,
 * else its own.  type is "allow" or "deny" (absent: deny).  When <acl>
 * stanzas exist and none matches, the request is denied (403).  Routing
 * comes first: a path no rule serves is still 404 (or 405).
 *
 * A rule served "aco" (mtev_rest_mountpoint_set_aco) runs its handler in a
 * fresh coroutine per request; the connection stays a classic callback
 * between requests.  In the coroutine, mtev_rest_complete_upload,
 * mtev_http_session_req_consume, mtev_http_response_flush and _end wait
 * (the coroutine parks, the loop goes on), and eventer_aco_* calls may
 * be made; a job run with eventer_aco_simple_asynch may append to the
 * response while the coroutine waits for it.  A rule with an eventer pool
 * (mtev_rest_mountpoint_set_eventer_pool) moves the connection to one of
 * that pool's loops before its handler runs; it stays there.
 *
 * A classic handler returns 0 when done (normally after
 * mtev_http_response_end), or a mask to be called again (with the same
 * pats) when the connection is ready for it:
 *
 *   if (!mtev_rest_complete_upload(restc, &mask)) return mask;
 *
 * Listener types (callbacks named with eventer_name_callback, closure: the
 * listener's acceptor closure):
 *   "http_rest_api"     mtev_http_rest_handler: the connection speaks HTTP;
 *   "control_dispatch"  mtev_control_dispatch: the first bytes must start
 *                       an HTTP request (a known method and a space); the
 *                       connection is then served as http_rest_api, and
 *                       anything else is closed without a reply (the peer
 *                       does not speak HTTP, so no HTTP answer would mean
 *                       anything to it).
 *
 * Rules may be registered at any time, from any thread; requests already
 * being routed see the table as it was.  Setters on a mountpoint take
 * effect for requests routed after them.
 */
#ifndef MTEV_REST_H
#define MTEV_REST_H

#include "mtev_http.h"

#ifdef __cplusplus
extern "C" {
#endif

/* libmtev's command words (the first four bytes, big-endian) */
#define MTEV_CONTROL_GET 0x47455420    /* "GET " */
#define MTEV_CONTROL_HEAD 0x48454144   /* "HEAD" */
#define MTEV_CONTROL_POST 0x504f5354   /* "POST" */
#define MTEV_CONTROL_DELETE 0x44454c45 /* "DELE" */
#define MTEV_CONTROL_PUT 0x50555420    /* "PUT " */
#define MTEV_CONTROL_MERGE 0x4d455247  /* "MERG" */

typedef struct mtev_http_rest_closure mtev_http_rest_closure_t;

typedef int (*rest_request_handler)(mtev_http_rest_closure_t *restc,
                                    int npats, char **pats);
typedef int (*rest_websocket_message_handler)(mtev_http_rest_closure_t *restc,
                                              int opcode,
                                              const unsigned char *msg,
                                              size_t msg_len);
typedef mtev_boolean (*rest_authorize_func_t)(mtev_http_rest_closure_t *restc,
                                              int npats, char **pats);

/* One per connection; a handler gets it for each request. */
struct mtev_http_rest_closure {
  mtev_http_session_ctx *http_ctx; /* the session: request and response */
  mtev_acceptor_closure_t *ac;     /* the listener's acceptor closure */
  char *remote_cn;                 /* TLS peer name ("" without TLS) */
  rest_request_handler fastpath;   /* the handler serving this request */
  rest_websocket_message_handler websocket_handler_memo; /* unused */
  int nparams;                     /* the captures of this request */
  char **params;
  int wants_shutdown;
  void *call_closure;              /* the handler's per-request state: */
  void (*call_closure_free)(void *); /* freed when the request ends */
  void *closure;                   /* the rule's closure */
  mtev_boolean aco_enabled;        /* served in a coroutine */
};

typedef struct rest_url_dispatcher mtev_rest_mountpoint_t;

/* Names the listener callbacks ("http_rest_api", "control_dispatch") and
 * reads the ACL of the loaded configuration (mtev_http_rest_load_rules).
 * Call it after mtev_conf_load and before mtev_listener_init (which looks
 * the callbacks up).  Idempotent. */
void mtev_http_rest_init(void);
/* Frees every rule (rules must not be in use: no connection is served).
 * mtev_http_rest_init may be called again. */
void mtev_http_rest_fini(void);

/* A rule.  method: "GET", "POST", ...; base: starts and ends with '/';
 * expression: PCRE2.  NULL (errno EINVAL) for a bad argument or an
 * expression that does not compile (logged with its position). */
mtev_rest_mountpoint_t *mtev_http_rest_new_rule(const char *method,
                                                const char *base,
                                                const char *expression,
                                                rest_request_handler f);
/* libmtev's full form; websocket rules (wf, websocket_protocol) are not
 * supported: NULL with errno ENOTSUP. */
mtev_rest_mountpoint_t *mtev_http_rest_new_rule_auth_closure(
    const char *method, const char *base, const char *expression,
    rest_request_handler f, rest_websocket_message_handler wf,
    const char *websocket_protocol, rest_authorize_func_t auth,
    void *closure);
/* The same, returning 0 or -1. */
int mtev_http_rest_register(const char *method, const char *base,
                            const char *expression, rest_request_handler f);
int mtev_http_rest_register_closure(const char *method, const char *base,
                                    const char *expression,
                                    rest_request_handler f, void *closure);
int mtev_http_rest_register_auth(const char *method, const char *base,
                                 const char *expression,
                                 rest_request_handler f,
                                 rest_authorize_func_t auth);
int mtev_http_rest_register_auth_closure(const char *method, const char *base,
                                         const char *expression,
                                         rest_request_handler f,
                                         rest_websocket_message_handler wf,
                                         const char *websocket_protocol,
                                         rest_authorize_func_t auth,
                                         void *closure);

void mtev_rest_mountpoint_set_handler(mtev_rest_mountpoint_t *mp,
                                      rest_request_handler h);
void mtev_rest_mountpoint_set_auth(mtev_rest_mountpoint_t *mp,
                                   rest_authorize_func_t h);
void mtev_rest_mountpoint_set_closure(mtev_rest_mountpoint_t *mp, void *c);
void mtev_rest_mountpoint_set_eventer_pool(mtev_rest_mountpoint_t *mp,
                                           eventer_pool_t *pool);
void mtev_rest_mountpoint_set_aco(mtev_rest_mountpoint_t *mp,
                                  mtev_boolean enabled);

/* (Re)reads the ACL from the loaded configuration (//rest//acl); requests
 * routed afterwards use it.  The _ex form returns 0, or -1 with errno
 * (EINVAL: a bad expression, address or type, named with its file and
 * line in err; ENOMEM) and keeps the ACL it had. */
void mtev_http_rest_load_rules(void);
int mtev_http_rest_load_rules_ex(char *err, size_t errlen);
/* The ACL's verdict on restc's current request (mtev_true: allowed; also
 * when no ACL is configured).  It has the form of an auth function. */
mtev_boolean mtev_http_rest_client_cert_auth(mtev_http_rest_closure_t *restc,
                                             int npats, char **pats);

/* Reads the whole request body; then mtev_http_request_get_upload() has
 * it.  mtev_true when complete (at once in a coroutine); mtev_false with
 * *mask to return from a classic handler (it is called again), or with
 * *mask 0 when the body is broken or the client left (the engine answered
 * 400/413 or is closing; the handler just returns 0). */
mtev_boolean mtev_rest_complete_upload(mtev_http_rest_closure_t *restc,
                                       int *mask);
/* libmtev's older form: the upload (and *size) once *complete is 1. */
void *rest_get_raw_upload(mtev_http_rest_closure_t *restc, int *mask,
                          int *complete, int *size);

/* Drops the per-request state (params, call_closure).  The engine calls
 * it when a request ends. */
void mtev_http_rest_clean_request(mtev_http_rest_closure_t *restc);

/* The listener callbacks (see the top of this file). */
int mtev_http_rest_handler(eventer_t e, int mask, void *closure,
                           struct timeval *now);
int mtev_control_dispatch(eventer_t e, int mask, void *closure,
                          struct timeval *now);

#ifdef __cplusplus
}
#endif

#endif /* MTEV_REST_H */
