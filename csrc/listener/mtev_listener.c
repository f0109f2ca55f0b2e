/*
 * mtev_listener.c - listening sockets, accepting, and handing connections
 * to classic callbacks or aco functions (mtev_listener.h).
 *
 * Life of a connection:
 *
 *   acceptor (a dedicated thread, or the listener's loop)
 *     accept4 -> ev_l_take: closure, counters, fd table, TCP_NODELAY
 *             -> the connection's loop (fanout) via a task
 *   ev_l_dispatch (that loop, main context)
 *     the event (closure: the acceptor closure, opset: ev_l_opset)
 *     classic: eventer_add;  aco: a coroutine running ev_l_aco_main;
 *     dispatch: the binding's start function
 *   ... the service runs ...
 *   classic: the service calls mtev_acceptor_closure_free
 *   aco: the coroutine ends (return or aco_exit) -> ev_l_aco_end (the
 *        eventer_aco end hook) closes what is left and frees the closure
 *
 * Life of a listener: bound -> running -> stopping (acceptor closed;
 * connections drain; at the grace deadline they are cancelled) ->
 * stopped (the last connection ended; "fin" ran on the home loop).  The
 * home loop (where a loop-mode acceptor runs, where connections go without
 * fanout) owns the stop and deadline bookkeeping, so those never race with
 * the acceptor callback.
 */
#include "mtev_listener_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "eventer_SSL_fd_opset.h"
#include "eventer_aco_impl.h"

#define EV_L_DEFAULT_BACKLOG 5
#define EV_L_ACCEPT_BATCH 64     /* accepts per callback in loop mode */
#define EV_L_BACKOFF_MIN_MS 10   /* first pause after EMFILE & co. */
#define EV_L_BACKOFF_MAX_MS 250  /* ... doubling up to this */
#define EV_L_REPORT_US 1000000u  /* at most one accept-error line a second */
#define EV_L_HS_TIMEOUT_MS 5000  /* TLS handshake_timeout by default */

#define EV_L_ASSERT(cond, rule)                                            \
  do {                                                                     \
    if (__builtin_expect(!(cond), 0))                                      \
      mtev_log_fatal(mtev_error, __FILE__, __LINE__,                       \
                     "mtev_listener: invariant broken: %s (%s)\n", (rule), \
                     #cond);                                               \
  } while (0)

#define EV_L_CONTAINER_OF(ptr, type, member)                               \
  ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

enum { EV_LK_CLASSIC = 1, EV_LK_ACO, EV_LK_DISPATCH };
enum { EV_LS_BOUND = 0, EV_LS_RUNNING, EV_LS_STOPPING, EV_LS_STOPPED };

enum { /* mtev_acceptor_closure_t.flags */
  EV_AC_F_EOF = 0x01,        /* a read returned 0 */
  EV_AC_F_HALF_CLOSE = 0x02, /* writes go on after EOF */
  EV_AC_F_CLOSED = 0x04,     /* closed through the opset */
  EV_AC_F_IDLE = 0x08,       /* idle_timeout applies: mark activity */
  EV_AC_F_UNCONVERTED = 0x10,/* aco: the event never reached the function */
  EV_AC_F_FREE_ASKED = 0x20, /* aco: the function freed the closure */
  EV_AC_F_HANDSHAKE = 0x40   /* TLS: the handshake is not over yet */
};

typedef struct ev_l_link {
  struct ev_l_link *next, *prev;
} ev_l_link_t;

/* A TLS handshake that a classic or dispatch connection does on its loop
 * before its service sees it. */
typedef struct ev_l_hs {
  eventer_timer_node_t node; /* first: the handshake deadline */
  mtev_acceptor_closure_t *ac;
  eventer_t e;
  int done;                  /* handshake over, the service's start is
                              * queued (dispatch) */
} ev_l_hs_t;

/* Kept small: it is per connection.  An AF_UNIX listener allocates room
 * for a whole sockaddr_un at `remote`; an idle_timeout adds a timer node
 * after that (mtev_listener.idle_off). */
struct mtev_acceptor_closure_t {
  mtev_listener_t *l;        /* holds a reference */
  void *ctx;                 /* mtev_acceptor_closure_ctx */
  void (*ctx_free)(void *);
  ev_aco_t *co;              /* aco: its coroutine, while it runs */
  eventer_loop_t *loop;      /* the loop it was dispatched to */
  ev_l_link_t link;          /* on l->conns (under l->lock) */
  eventer_task_t task;       /* the hand-off to `loop`; then a deferred free */
  uint64_t last_us;          /* last read or write, wall clock */
  char *remote_cn;           /* TLS: the peer certificate's CN */
  ev_l_hs_t *hs;             /* TLS: a handshake on the loop */
  int fd;
  uint32_t cmd;
  uint8_t flags;             /* EV_AC_F_*, owner loop */
  union {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
  } remote;
};

struct mtev_listener {
  int refs;                  /* __atomic */
  pthread_mutex_t lock;      /* state, conns, waiters */
  pthread_cond_t cond;       /* state changes (CLOCK_MONOTONIC) */
  int state;                 /* EV_LS_*; __atomic reads outside the lock */
  int acceptor_live;         /* accept event or thread still runs */
  int fin_posted;
  int from_conf;
  int fd;                    /* the listening socket */
  int family;
  struct sockaddr_storage addr;  /* bound address */
  socklen_t addrlen;
  char *unix_path;           /* AF_UNIX: removed at stop if still ours */
  dev_t unix_dev;
  ino_t unix_ino;
  char name[128];
  char *type;
  int kind;                  /* EV_LK_* */
  eventer_func_t callback;
  void (*aco)(void);
  mtev_listener_aco_dispatch_t dispatch;
  void *dispatch_closure;
  void *service_ctx;
  mtev_hash_table config;
  /* TLS (ssl="on") */
  int tls;
  int tls_verify;            /* clients are asked for a certificate */
  uint64_t hs_timeout_us;
  mtev_hash_table sslconfig; /* as configured; eventer_ssl_verify_cert's
                              * options */
  mtev_hash_table ssl_settings; /* what eventer_ssl_ctx_new_ex reads */
  int no_delay, half_close;
  uint64_t idle_us;          /* 0: none */
  size_t ac_size, idle_off;
  mtev_boolean fanout, accept_thread, reuseport;
  int backlog;
  eventer_pool_t *pool;
  uint32_t rr;               /* __atomic: fanout round robin */
  uint32_t max_connections;
  eventer_loop_t *home;
  eventer_t accept_e;
  /* accept errors; touched only by the acceptor (one thread at a time) */
  uint32_t backoff_ms;
  uint64_t report_us;
  uint32_t unreported;
  int backoff_held;          /* loop mode: accept_e is out of the loop */
  eventer_timer_node_t backoff_node;
  /* stats, __atomic */
  uint64_t accepted, refused, accept_errors;
  int64_t active;
  ev_l_link_t conns;
  /* stopping */
  uint64_t cancel_at_ns;     /* 0: no deadline */
  eventer_timer_node_t cancel_node; /* home loop */
  eventer_task_t stop_task, fin_task;
  eventer_aco_co_t **waiters; /* coroutines in mtev_listener_wait */
  size_t nwaiters, waiters_cap;
  mtev_listener_t *next;     /* ev_l_all */
};

static pthread_mutex_t ev_l_glock = PTHREAD_MUTEX_INITIALIZER;
static mtev_listener_t *ev_l_all; /* bound or running or draining */
static int64_t ev_l_live;         /* __atomic: closures alive */

static void ev_l_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ev_l_fail(char *err, size_t errlen, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (err && errlen) snprintf(err, errlen, "%s", buf);
}

static uint64_t ev_l_wall_us(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

/* ---- the registry of aco types ------------------------------------------------------ */

typedef struct {
  char *name;
  void (*fn)(void);
  mtev_listener_aco_dispatch_t start;
  void *closure;
} ev_l_type_t;

static pthread_mutex_t ev_l_types_lock = PTHREAD_MUTEX_INITIALIZER;
static ev_l_type_t *ev_l_types;
static size_t ev_l_ntypes;

static int ev_l_register(const char *name, void (*fn)(void),
                         mtev_listener_aco_dispatch_t start, void *closure) {
  if (!name || !*name || (!fn && !start)) {
    errno = EINVAL;
    return -1;
  }
  char *copy = strdup(name);
  if (!copy) return -1;
  pthread_mutex_lock(&ev_l_types_lock);
  for (size_t i = 0; i < ev_l_ntypes; i++)
    if (!strcmp(ev_l_types[i].name, name)) {
      free(copy);
      ev_l_types[i].fn = fn;
      ev_l_types[i].start = start;
      ev_l_types[i].closure = closure;
      pthread_mutex_unlock(&ev_l_types_lock);
      return 0;
    }
  ev_l_type_t *t = realloc(ev_l_types, (ev_l_ntypes + 1) * sizeof(*t));
  if (!t) {
    pthread_mutex_unlock(&ev_l_types_lock);
    free(copy);
    errno = ENOMEM;
    return -1;
  }
  ev_l_types = t;
  ev_l_types[ev_l_ntypes++] = (ev_l_type_t){copy, fn, start, closure};
  pthread_mutex_unlock(&ev_l_types_lock);
  return 0;
}

int mtev_listener_register_aco_function(const char *name, void (*func)(void)) {
  return ev_l_register(name, func, NULL, NULL);
}

int mtev_listener_register_aco_dispatch(const char *name,
                                        mtev_listener_aco_dispatch_t start,
                                        void *closure) {
  return ev_l_register(name, NULL, start, closure);
}

/* Start functions that convert their event at once (see
 * mtev_listener_aco_dispatch_converts). */
#define EV_L_CONVERTS_MAX 8
static mtev_listener_aco_dispatch_t ev_l_converts[EV_L_CONVERTS_MAX];
static int ev_l_nconverts; /* __atomic: slot first, then the count */

int mtev_listener_aco_dispatch_converts(mtev_listener_aco_dispatch_t start) {
  if (!start) {
    errno = EINVAL;
    return -1;
  }
  int rc = 0;
  pthread_mutex_lock(&ev_l_types_lock);
  int n = ev_l_nconverts, found = 0;
  for (int i = 0; i < n; i++) found |= ev_l_converts[i] == start;
  if (!found) {
    if (n == EV_L_CONVERTS_MAX) {
      errno = ENOSPC;
      rc = -1;
    } else {
      ev_l_converts[n] = start;
      __atomic_store_n(&ev_l_nconverts, n + 1, __ATOMIC_RELEASE);
    }
  }
  pthread_mutex_unlock(&ev_l_types_lock);
  return rc;
}

static int ev_l_dispatch_converts(mtev_listener_aco_dispatch_t start) {
  for (int i = 0, n = __atomic_load_n(&ev_l_nconverts, __ATOMIC_ACQUIRE); i < n; i++)
    if (ev_l_converts[i] == start) return 1;
  return 0;
}

static int ev_l_lookup_type(const char *name, ev_l_type_t *out) {
  int found = 0;
  pthread_mutex_lock(&ev_l_types_lock);
  for (size_t i = 0; i < ev_l_ntypes && !found; i++)
    if (!strcmp(ev_l_types[i].name, name)) {
      *out = ev_l_types[i];
      found = 1;
    }
  pthread_mutex_unlock(&ev_l_types_lock);
  return found;
}

typedef struct {
  char *buf;
  size_t len, used;
  int n;
} ev_l_names_t;

static void ev_l_names_add(ev_l_names_t *w, const char *name) {
  if (w->used >= w->len) return;
  int r = snprintf(w->buf + w->used, w->len - w->used, "%s%s",
                   w->n++ ? ", " : "", name);
  if (r > 0) w->used += (size_t)r;
  if (w->used >= w->len) w->used = w->len - 1;
}

static void ev_l_names_cb(const char *name, eventer_func_t fn, void *c) {
  (void)fn;
  ev_l_names_add(c, name);
}

/* "aco functions: a, b; named callbacks: c" into buf. */
static void ev_l_types_text(char *buf, size_t len) {
  char aco[512] = "", cbs[512] = "";
  ev_l_names_t w = {aco, sizeof(aco), 0, 0};
  pthread_mutex_lock(&ev_l_types_lock);
  for (size_t i = 0; i < ev_l_ntypes; i++) ev_l_names_add(&w, ev_l_types[i].name);
  pthread_mutex_unlock(&ev_l_types_lock);
  ev_l_names_t c = {cbs, sizeof(cbs), 0, 0};
  eventer_callback_names(ev_l_names_cb, &c);
  snprintf(buf, len, "registered aco functions: %s; named callbacks: %s",
           w.n ? aco : "none", c.n ? cbs : "none");
}

/* ---- skipping (libmtev's mtev_listener_skip) ----------------------------------------- */

static struct ev_l_skip {
  char *address;
  int port;
  struct ev_l_skip *next;
} *ev_l_skips;

void mtev_listener_skip(const char *address, int port) {
  struct ev_l_skip *s = calloc(1, sizeof(*s));
  if (!s) return;
  s->address = address ? strdup(address) : NULL;
  s->port = port;
  pthread_mutex_lock(&ev_l_glock);
  s->next = ev_l_skips;
  ev_l_skips = s;
  pthread_mutex_unlock(&ev_l_glock);
}

int ev_l_should_skip(const char *address, int port) {
  int skip = 0;
  pthread_mutex_lock(&ev_l_glock);
  for (struct ev_l_skip *s = ev_l_skips; s && !skip; s = s->next)
    skip = s->port == port && (!s->address || (address && !strcmp(s->address, address)));
  pthread_mutex_unlock(&ev_l_glock);
  return skip;
}

/* ---- the fd table: fd -> closure, for the connection opset ------------------------------
 * Two levels, so it grows with the fds in use and a slot never moves; any
 * thread may read a slot.  A slot is set before the connection's event
 * exists and cleared before its fd is closed (or its closure freed), so
 * an fd number reused by another socket never finds a stale closure. */
#define EV_L_TAB_BITS 12
#define EV_L_TAB_CHUNK (1u << EV_L_TAB_BITS)
#define EV_L_TAB_CHUNKS 4096u

static mtev_acceptor_closure_t **ev_l_tab[EV_L_TAB_CHUNKS];
static pthread_mutex_t ev_l_tab_lock = PTHREAD_MUTEX_INITIALIZER;

static mtev_acceptor_closure_t **ev_l_slot(int fd, int create) {
  if (fd < 0 || (unsigned)fd >= EV_L_TAB_CHUNKS * EV_L_TAB_CHUNK) return NULL;
  unsigned ci = (unsigned)fd >> EV_L_TAB_BITS;
  mtev_acceptor_closure_t **chunk = __atomic_load_n(&ev_l_tab[ci], __ATOMIC_ACQUIRE);
  if (!chunk && create) {
    pthread_mutex_lock(&ev_l_tab_lock);
    chunk = ev_l_tab[ci];
    if (!chunk) {
      chunk = calloc(EV_L_TAB_CHUNK, sizeof(*chunk));
      if (chunk) __atomic_store_n(&ev_l_tab[ci], chunk, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&ev_l_tab_lock);
  }
  return chunk ? &chunk[(unsigned)fd & (EV_L_TAB_CHUNK - 1)] : NULL;
}

static mtev_acceptor_closure_t *ev_l_conn(int fd) {
  mtev_acceptor_closure_t **s = ev_l_slot(fd, 0);
  return s ? __atomic_load_n(s, __ATOMIC_ACQUIRE) : NULL;
}

/* Clears fd's slot if it still holds ac. */
static void ev_l_conn_clear(int fd, mtev_acceptor_closure_t *ac) {
  mtev_acceptor_closure_t **s = ev_l_slot(fd, 0);
  if (s) __atomic_compare_exchange_n(s, &ac, NULL, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE);
}

/* ---- the connection opset -------------------------------------------------------------
 * Plain socket calls, plus: writes never raise SIGPIPE (MSG_NOSIGNAL);
 * once a read saw EOF, writes fail with EPIPE unless the listener allows
 * half-closed connections; reads and writes mark activity for
 * idle_timeout. */

static int ev_l_would_block(void) { return errno == EAGAIN || errno == EWOULDBLOCK; }

static void ev_l_touch(mtev_acceptor_closure_t *ac) {
  if (ac && (ac->flags & EV_AC_F_IDLE)) ac->last_us = ev_l_wall_us();
}

static int ev_l_op_accept(int fd, struct sockaddr *addr, socklen_t *len,
                          int *mask, void *closure) {
  return eventer_fd_opset_get_accept(eventer_POSIX_fd_opset)(fd, addr, len, mask,
                                                             closure);
}

static int ev_l_op_read(int fd, void *buf, size_t len, int *mask,
                        void *closure) {
  (void)closure;
  ssize_t rv;
  do {
    /* recv(2) of 0 bytes waits for data on an empty socket (EAGAIN) where
     * read(2) returns 0 at once */
    rv = len ? recv(fd, buf, len, 0) : read(fd, buf, 0);
  } while (rv < 0 && errno == EINTR);
  if (rv < 0) {
    if (ev_l_would_block() && mask) *mask = EVENTER_READ | EVENTER_EXCEPTION;
    return -1;
  }
  mtev_acceptor_closure_t *ac = ev_l_conn(fd);
  if (ac) {
    if (rv == 0 && len > 0) ac->flags |= EV_AC_F_EOF;
    else ev_l_touch(ac);
  }
  return (int)rv;
}

static int ev_l_op_write(int fd, const void *buf, size_t len, int *mask,
                         void *closure) {
  (void)closure;
  mtev_acceptor_closure_t *ac = ev_l_conn(fd);
  if (ac && (ac->flags & (EV_AC_F_EOF | EV_AC_F_HALF_CLOSE)) == EV_AC_F_EOF) {
    errno = EPIPE; /* the peer is gone (see half_close) */
    return -1;
  }
  ssize_t rv;
  do {
    rv = send(fd, buf, len, MSG_NOSIGNAL);
  } while (rv < 0 && errno == EINTR);
  if (rv < 0) {
    if (ev_l_would_block() && mask) *mask = EVENTER_WRITE | EVENTER_EXCEPTION;
    return -1;
  }
  ev_l_touch(ac);
  return (int)rv;
}

static int ev_l_op_close(int fd, int *mask, void *closure) {
  (void)closure;
  if (mask) *mask = 0;
  mtev_acceptor_closure_t *ac = ev_l_conn(fd);
  if (ac) {
    ac->flags |= EV_AC_F_CLOSED;
    ev_l_conn_clear(fd, ac); /* before close: the number may be reused */
  }
  return close(fd); /* no retry on EINTR: Linux has released the fd */
}

static struct _fd_opset ev_l_opset_s = {ev_l_op_accept, ev_l_op_read,
                                        ev_l_op_write, ev_l_op_close,
                                        "listener"};

/* The same over TLS: the TLS opset (the event's context) does the I/O;
 * EOF, half_close and idle marks work as on a plain connection. */
static int ev_l_tls_op_accept(int fd, struct sockaddr *addr, socklen_t *len,
                              int *mask, void *closure) {
  return eventer_fd_opset_get_accept(eventer_SSL_fd_opset)(fd, addr, len, mask,
                                                           closure);
}

static int ev_l_tls_op_read(int fd, void *buf, size_t len, int *mask,
                            void *closure) {
  int rv = eventer_fd_opset_get_read(eventer_SSL_fd_opset)(fd, buf, len, mask,
                                                           closure);
  if (rv < 0) return rv;
  mtev_acceptor_closure_t *ac = ev_l_conn(fd);
  if (ac) {
    if (rv == 0 && len > 0) ac->flags |= EV_AC_F_EOF;
    else ev_l_touch(ac);
  }
  return rv;
}

static int ev_l_tls_op_write(int fd, const void *buf, size_t len, int *mask,
                             void *closure) {
  mtev_acceptor_closure_t *ac = ev_l_conn(fd);
  if (ac && (ac->flags & (EV_AC_F_EOF | EV_AC_F_HALF_CLOSE)) == EV_AC_F_EOF) {
    errno = EPIPE;
    return -1;
  }
  int rv = eventer_fd_opset_get_write(eventer_SSL_fd_opset)(fd, buf, len, mask,
                                                            closure);
  if (rv >= 0) ev_l_touch(ac);
  return rv;
}

static int ev_l_tls_op_close(int fd, int *mask, void *closure) {
  mtev_acceptor_closure_t *ac = ev_l_conn(fd);
  if (ac) {
    ac->flags |= EV_AC_F_CLOSED;
    ev_l_conn_clear(fd, ac); /* before close: the number may be reused */
  }
  /* close_notify after a good handshake, the context freed, the fd closed */
  return eventer_fd_opset_get_close(eventer_SSL_fd_opset)(fd, mask, closure);
}

static struct _fd_opset ev_l_tls_opset_s = {ev_l_tls_op_accept, ev_l_tls_op_read,
                                            ev_l_tls_op_write, ev_l_tls_op_close,
                                            "listener-SSL"};

/* ---- listeners: references and the global list --------------------------------------- */

void mtev_listener_ref(mtev_listener_t *l) {
  if (l) __atomic_fetch_add(&l->refs, 1, __ATOMIC_RELAXED);
}

static void ev_l_destroy(mtev_listener_t *l) {
  EV_L_ASSERT(l->conns.next == &l->conns,
              "a listener is freed only when no connection refers to it");
  EV_L_ASSERT(!eventer_timer_node_pending(&l->cancel_node) &&
                  !eventer_timer_node_pending(&l->backoff_node),
              "a listener is freed only when none of its timers is queued");
  if (l->fd >= 0) close(l->fd);
  mtev_hash_destroy(&l->config, free, free);
  mtev_hash_destroy(&l->sslconfig, free, free);
  mtev_hash_destroy(&l->ssl_settings, free, free);
  pthread_mutex_destroy(&l->lock);
  pthread_cond_destroy(&l->cond);
  /* coroutines that waited in mtev_listener_wait and went with their
   * loops at eventer_fini (a live waiter's caller holds l): their
   * handles' references */
  for (size_t i = 0; i < l->nwaiters; i++) eventer_aco_co_release(l->waiters[i]);
  free(l->waiters);
  free(l->unix_path);
  free(l->type);
  free(l);
}

void mtev_listener_release(mtev_listener_t *l) {
  if (!l) return;
  int left = __atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL);
  EV_L_ASSERT(left >= 0, "mtev_listener_release: more releases than references");
  if (left == 0) ev_l_destroy(l);
}

static void ev_l_list_add(mtev_listener_t *l) {
  mtev_listener_ref(l); /* the list's */
  pthread_mutex_lock(&ev_l_glock);
  l->next = ev_l_all;
  ev_l_all = l;
  pthread_mutex_unlock(&ev_l_glock);
}

static void ev_l_list_remove(mtev_listener_t *l) {
  int found = 0;
  pthread_mutex_lock(&ev_l_glock);
  for (mtev_listener_t **p = &ev_l_all; *p; p = &(*p)->next)
    if (*p == l) {
      *p = l->next;
      found = 1;
      break;
    }
  pthread_mutex_unlock(&ev_l_glock);
  if (found) mtev_listener_release(l);
}

int mtev_listener_foreach(int (*f)(mtev_listener_t *l, void *closure),
                          void *closure) {
  if (!f) return 0;
  pthread_mutex_lock(&ev_l_glock);
  size_t n = 0;
  for (mtev_listener_t *l = ev_l_all; l; l = l->next) n++;
  mtev_listener_t **snap = n ? calloc(n, sizeof(*snap)) : NULL;
  size_t k = 0;
  for (mtev_listener_t *l = ev_l_all; snap && l; l = l->next) {
    mtev_listener_ref(l);
    snap[k++] = l;
  }
  pthread_mutex_unlock(&ev_l_glock);
  int rv = 0;
  for (size_t i = 0; i < k; i++) {
    if (!rv) rv = f(snap[i], closure);
    mtev_listener_release(snap[i]);
  }
  free(snap);
  return rv;
}

/* ---- addresses ------------------------------------------------------------------------ */

typedef union {
  struct sockaddr sa;
  struct sockaddr_in in;
  struct sockaddr_in6 in6;
  struct sockaddr_un un;
  struct sockaddr_storage ss;
} ev_l_sockaddr_t;

/* address (+ port) -> sockaddr.  0, or -1 with err. */
static int ev_l_parse_address(const char *address, int port,
                              ev_l_sockaddr_t *sa, socklen_t *len, char *err,
                              size_t errlen) {
  memset(sa, 0, sizeof(*sa));
  if (address[0] == '/') {
    if (strlen(address) >= sizeof(sa->un.sun_path)) {
      ev_l_fail(err, errlen, "address \"%s\": an AF_UNIX path must be shorter "
                "than %zu bytes", address, sizeof(sa->un.sun_path));
      return -1;
    }
    sa->un.sun_family = AF_UNIX;
    memcpy(sa->un.sun_path, address, strlen(address) + 1);
    *len = (socklen_t)sizeof(sa->un);
    return 0;
  }
  if (port < 0 || port > 65535) {
    ev_l_fail(err, errlen, "port %d: must be in 1..65535", port);
    return -1;
  }
  char buf[INET6_ADDRSTRLEN + 2];
  const char *a = address;
  size_t al = strlen(address);
  if (al >= 2 && al < sizeof(buf) && address[0] == '[' && address[al - 1] == ']') {
    memcpy(buf, address + 1, al - 2); /* "[::1]" */
    buf[al - 2] = 0;
    a = buf;
  }
  if (!strcmp(a, "*") || !strcmp(a, "inet:*")) {
    sa->in.sin_family = AF_INET;
    sa->in.sin_addr.s_addr = htonl(INADDR_ANY);
  } else if (!strcmp(a, "inet6:*")) {
    sa->in6.sin6_family = AF_INET6;
    sa->in6.sin6_addr = in6addr_any;
  } else if (inet_pton(AF_INET, a, &sa->in.sin_addr) == 1) {
    sa->in.sin_family = AF_INET;
  } else if (inet_pton(AF_INET6, a, &sa->in6.sin6_addr) == 1) {
    sa->in6.sin6_family = AF_INET6;
  } else {
    ev_l_fail(err, errlen, "address \"%s\": not \"*\", \"inet:*\", "
              "\"inet6:*\", an IPv4 or IPv6 address, or an absolute path",
              address);
    return -1;
  }
  if (sa->sa.sa_family == AF_INET) {
    sa->in.sin_port = htons((uint16_t)port);
    *len = (socklen_t)sizeof(sa->in);
  } else {
    sa->in6.sin6_port = htons((uint16_t)port);
    *len = (socklen_t)sizeof(sa->in6);
  }
  return 0;
}

static void ev_l_format(const struct sockaddr *sa, char *buf, size_t len) {
  char ip[INET6_ADDRSTRLEN] = "?";
  switch (sa->sa_family) {
  case AF_INET:
    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
    snprintf(buf, len, "%s:%d", ip, ntohs(((const struct sockaddr_in *)sa)->sin_port));
    break;
  case AF_INET6:
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
    snprintf(buf, len, "[%s]:%d", ip,
             ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
    break;
  case AF_UNIX:
    snprintf(buf, len, "%s", ((const struct sockaddr_un *)sa)->sun_path);
    break;
  default:
    snprintf(buf, len, "family %d", sa->sa_family);
  }
}

int ev_l_same_address(mtev_listener_t *a, mtev_listener_t *b) {
  if (a == b || a->family != b->family) return 0;
  if (a->reuseport && b->reuseport) return 0; /* the kernel shares the port */
  if (a->family == AF_UNIX) return !strcmp(a->unix_path, b->unix_path);
  if (a->family == AF_INET) {
    const struct sockaddr_in *x = (const void *)&a->addr, *y = (const void *)&b->addr;
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  const struct sockaddr_in6 *x = (const void *)&a->addr, *y = (const void *)&b->addr;
  return x->sin6_port == y->sin6_port &&
         !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
}

/* An AF_UNIX path that exists: a socket nobody listens on any more is
 * removed; anything else is an error.  0, or -1 with errno and err. */
static int ev_l_unix_clear(const char *path, char *err, size_t errlen) {
  struct stat st;
  if (lstat(path, &st) != 0) return 0; /* nothing there */
  if (!S_ISSOCK(st.st_mode)) {
    ev_l_fail(err, errlen, "%s: exists and is not a socket", path);
    errno = EEXIST;
    return -1;
  }
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) {
    ev_l_fail(err, errlen, "%s: socket: %s", path, strerror(errno));
    return -1;
  }
  ev_l_sockaddr_t sa = {.un.sun_family = AF_UNIX};
  snprintf(sa.un.sun_path, sizeof(sa.un.sun_path), "%s", path);
  int rc = connect(probe, &sa.sa, sizeof(sa.un));
  int e = errno;
  close(probe);
  if (rc == 0 || e == EAGAIN || e == EINPROGRESS) {
    ev_l_fail(err, errlen, "%s: address in use (a process listens on it)", path);
    errno = EADDRINUSE;
    return -1;
  }
  if (e != ECONNREFUSED) {
    ev_l_fail(err, errlen, "%s: cannot tell whether the socket is stale: %s",
              path, strerror(e));
    errno = e;
    return -1;
  }
  if (unlink(path) != 0 && errno != ENOENT) { /* stale: nobody listens */
    ev_l_fail(err, errlen, "%s: removing the stale socket: %s", path,
              strerror(errno));
    return -1;
  }
  mtevL(mtev_debug, "mtev_listener: removed stale socket %s\n", path);
  return 0;
}

/* ---- making a listener ------------------------------------------------------------------ */

static int ev_l_conf_bool(const char *what, mtev_hash_table *h, const char *key,
                          int dflt, int *out, char *err, size_t errlen) {
  const char *v = mtev_hash_dict_get(h, key);
  *out = dflt;
  if (!v) return 0;
  static const char *const yes[] = {"true", "on", "yes", "1"};
  static const char *const no[] = {"false", "off", "no", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (!strcasecmp(v, yes[i])) return *out = 1, 0;
    if (!strcasecmp(v, no[i])) return *out = 0, 0;
  }
  ev_l_fail(err, errlen, "%s %s=\"%s\": not a boolean (on/off, "
            "true/false, yes/no, 1/0)", what, key, v);
  return -1;
}

static int ev_l_conf_ms(const char *what, mtev_hash_table *h, const char *key,
                        uint64_t *out, char *err, size_t errlen) {
  const char *v = mtev_hash_dict_get(h, key);
  *out = 0;
  if (!v) return 0;
  char *end = NULL;
  errno = 0;
  unsigned long long ms = strtoull(v, &end, 10);
  if (v[0] < '0' || v[0] > '9' || errno || !end || *end ||
      ms > 1000ull * 86400 * 365) {
    ev_l_fail(err, errlen, "%s %s=\"%s\": not a number of milliseconds",
              what, key, v);
    return -1;
  }
  *out = ms;
  return 0;
}

/* Stores a copy of key -> value in a dictionary. */
static int ev_l_dict_put(mtev_hash_table *h, const char *key, const char *value) {
  char *k = strdup(key), *v = strdup(value);
  if (!k || !v || !mtev_hash_replace(h, k, (int)strlen(k), v, free, free)) {
    free(k);
    free(v);
    errno = ENOMEM;
    return -1;
  }
  return 0;
}

/* The <sslconfig> keys: libmtev's, then ours (see mtev_listener.h). */
static const char *const ev_l_ssl_keys[] = {
    "layer", "certificate_file", "certificate", "key_file", "key", "ca_chain",
    "ca_file", "ciphers", "crl", "alpn", "npn", "optional_no_ca",
    "ignore_dates", "ca_accept", "dhparam_bits", "client_cert",
    "handshake_timeout", NULL};

/* ssl="on": checks the <sslconfig> keys, derives the settings every
 * connection's TLS context is made with, and makes one now so a bad
 * certificate is a configuration error, not a failure per connection.
 * 0, or -1 with errno and err. */
static int ev_l_tls_setup(mtev_listener_t *l, const mtev_listener_opts_t *o,
                          char *err, size_t errlen) {
  mtev_hash_table *sc = &l->sslconfig;
  if (o->sslconfig) mtev_hash_merge_as_dict(sc, o->sslconfig);
  mtev_hash_iter it = MTEV_HASH_ITER_ZERO;
  while (mtev_hash_adv(sc, &it)) {
    size_t i = 0;
    while (ev_l_ssl_keys[i] && strcmp(ev_l_ssl_keys[i], it.key.str)) i++;
    if (!ev_l_ssl_keys[i])
      mtevL(mtev_error, "mtev_listener: ignoring unknown sslconfig key "
            "\"%s\"\n", it.key.str);
  }
  const char *cert = mtev_hash_dict_get(sc, "certificate_file");
  if (!cert) cert = mtev_hash_dict_get(sc, "certificate");
  const char *key = mtev_hash_dict_get(sc, "key_file");
  if (!key) key = mtev_hash_dict_get(sc, "key");
  const char *ca = mtev_hash_dict_get(sc, "ca_chain");
  if (!ca) ca = mtev_hash_dict_get(sc, "ca_file");
  const char *alpn = mtev_hash_dict_get(sc, "alpn");
  if (!alpn) alpn = mtev_hash_dict_get(sc, "npn");
  const char *cc = mtev_hash_dict_get(sc, "client_cert");
  if (!cert || !key) {
    ev_l_fail(err, errlen, "ssl=\"on\" needs an <sslconfig> with "
              "certificate_file and key_file");
    errno = EINVAL;
    return -1;
  }
  if (cc && strcmp(cc, "optional") && strcmp(cc, "required")) {
    ev_l_fail(err, errlen, "sslconfig client_cert=\"%s\": not \"optional\" or "
              "\"required\"", cc);
    errno = EINVAL;
    return -1;
  }
  int no_ca = 0, dates = 0;
  if (ev_l_conf_bool("sslconfig", sc, "optional_no_ca", 0, &no_ca, err, errlen) ||
      ev_l_conf_bool("sslconfig", sc, "ignore_dates", 0, &dates, err, errlen)) {
    errno = EINVAL;
    return -1;
  }
  uint64_t ms = EV_L_HS_TIMEOUT_MS;
  if (mtev_hash_dict_get(sc, "handshake_timeout")) {
    if (ev_l_conf_ms("sslconfig", sc, "handshake_timeout", &ms, err, errlen)) {
      errno = EINVAL;
      return -1;
    }
    if (ms == 0) {
      ev_l_fail(err, errlen, "sslconfig handshake_timeout=\"0\": a handshake "
                "needs time (milliseconds > 0)");
      errno = EINVAL;
      return -1;
    }
  }
  l->hs_timeout_us = ms * 1000u;
  /* clients are asked for a certificate when there is a CA to judge it
   * by, or one was asked for */
  l->tls_verify = ca || cc || no_ca;
  if (l->tls_verify && !ca) ca = ev_cfg_default_ca_chain();
  if (cc && !ca && !no_ca) { /* every certificate would be refused */
    ev_l_fail(err, errlen, "sslconfig client_cert=\"%s\" needs a "
              "ca_chain (or <eventer><config><default_ca_chain>) or "
              "optional_no_ca=\"true\"", cc);
    errno = EINVAL;
    return -1;
  }
  struct {
    const char *key, *value;
  } set[] = {{"layer", mtev_hash_dict_get(sc, "layer")},
             {"certificate", cert},
             {"key", key},
             {"ca_chain", ca},
             {"ciphers", mtev_hash_dict_get(sc, "ciphers")},
             {"crl", mtev_hash_dict_get(sc, "crl")},
             {"alpn", alpn}};
  for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++)
    if (set[i].value && ev_l_dict_put(&l->ssl_settings, set[i].key,
                                      set[i].value) != 0) {
      ev_l_fail(err, errlen, "mtev_listener: out of memory");
      return -1;
    }
  eventer_ssl_ctx_t *ctx = eventer_ssl_ctx_new_ex(SSL_SERVER, &l->ssl_settings);
  if (!ctx) {
    int e = errno;
    ev_l_fail(err, errlen, "sslconfig: %s", eventer_ssl_ctx_new_error());
    errno = e;
    return -1;
  }
  eventer_ssl_ctx_free(ctx);
  l->tls = 1;
  return 0;
}

static eventer_loop_t *ev_l_default_loop0(void) {
  eventer_pool_t *p = eventer_pool("default");
  return p ? eventer_pool_loop(p, 0) : NULL;
}

static mtev_listener_t *ev_l_new(void) {
  /* the plain connection opset's reads are recv(2): a coroutine's read that
   * would find nothing may wait for readiness first (the TLS one keeps
   * decrypted records and is not declared) */
  if (eventer_aco_opset_set_unbuffered(&ev_l_opset_s) != 0) return NULL;
  mtev_listener_t *l = calloc(1, sizeof(*l));
  if (!l) return NULL;
  l->refs = 1;
  l->fd = -1;
  pthread_mutex_init(&l->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&l->cond, &ca);
  pthread_condattr_destroy(&ca);
  l->conns.next = l->conns.prev = &l->conns;
  return l;
}

static void ev_l_backoff_fire(eventer_timer_node_t *n, struct timeval *now);
static void ev_l_cancel_fire(eventer_timer_node_t *n, struct timeval *now);
static void ev_l_aco_end(ev_aco_t *a, int at_fini);

mtev_listener_t *ev_l_bind(const mtev_listener_opts_t *o, char *err,
                           size_t errlen) {
  char why[768];
  if (err && errlen) err[0] = 0;
  if (!o) {
    ev_l_fail(err, errlen, "mtev_listener: no options");
    errno = EINVAL;
    return NULL;
  }
  if (!ev_l_default_loop0()) {
    ev_l_fail(err, errlen, "mtev_listener: the eventer is not initialized "
              "(call eventer_init first)");
    errno = ENXIO;
    return NULL;
  }
  mtev_listener_t *l = ev_l_new();
  if (!l) {
    ev_l_fail(err, errlen, "mtev_listener: out of memory");
    errno = ENOMEM;
    return NULL;
  }
  const char *address = o->address && *o->address ? o->address : "*";
  /* the service */
  l->type = strdup(o->type ? o->type : "");
  if (!l->type) goto nomem;
  if (o->aco_function) {
    l->kind = EV_LK_ACO;
    l->aco = o->aco_function;
  } else if (o->callback) {
    l->kind = EV_LK_CLASSIC;
    l->callback = o->callback;
  } else if (o->dispatch) {
    l->kind = EV_LK_DISPATCH;
    l->dispatch = o->dispatch;
    l->dispatch_closure = o->dispatch_closure;
  } else if (o->type && *o->type) {
    ev_l_type_t t;
    if ((l->callback = eventer_callback_for_name(o->type))) {
      l->kind = EV_LK_CLASSIC;
    } else if (ev_l_lookup_type(o->type, &t)) {
      l->kind = t.fn ? EV_LK_ACO : EV_LK_DISPATCH;
      l->aco = t.fn;
      l->dispatch = t.start;
      l->dispatch_closure = t.closure;
    } else {
      char names[1100];
      ev_l_types_text(names, sizeof(names));
      ev_l_fail(err, errlen, "unknown listener type \"%s\" (%s)", o->type, names);
      errno = EINVAL;
      goto fail;
    }
  } else {
    ev_l_fail(err, errlen, "no listener type (a registered name, an aco "
              "function, a callback or a dispatch function)");
    errno = EINVAL;
    goto fail;
  }
  l->service_ctx = o->service_ctx;
  /* the config and the keys the listener reads itself */
  if (o->config) mtev_hash_merge_as_dict(&l->config, o->config);
  if (ev_l_conf_bool("config", &l->config, "no_delay", 1, &l->no_delay, why, sizeof(why)) ||
      ev_l_conf_bool("config", &l->config, "half_close", l->kind == EV_LK_CLASSIC,
                     &l->half_close, why, sizeof(why)) ||
      ev_l_conf_ms("config", &l->config, "idle_timeout", &l->idle_us, why, sizeof(why))) {
    ev_l_fail(err, errlen, "%s", why);
    errno = EINVAL;
    goto fail;
  }
  l->idle_us *= 1000u;
  if (o->ssl && ev_l_tls_setup(l, o, err, errlen) != 0) goto fail;
  /* placement */
  l->fanout = o->fanout;
  l->accept_thread = o->accept_in_loop ? mtev_false : mtev_true;
  l->reuseport = o->reuseport;
  l->max_connections = o->max_connections;
  const char *pool = o->fanout_pool && *o->fanout_pool ? o->fanout_pool : "default";
  l->pool = eventer_pool(pool);
  if (!l->pool) {
    ev_l_fail(err, errlen, "fanout_pool \"%s\": no such eventer pool (make one "
              "with <eventer><config><loop_%s>N</loop_%s>)", pool, pool, pool);
    errno = EINVAL;
    goto fail;
  }
  l->home = eventer_loop_current();
  if (!l->home) l->home = ev_l_default_loop0();
  /* the socket */
  ev_l_sockaddr_t sa;
  socklen_t salen;
  if (ev_l_parse_address(address, o->port, &sa, &salen, err, errlen) != 0) {
    errno = EINVAL;
    goto fail;
  }
  l->family = sa.sa.sa_family;
  if (l->family == AF_UNIX) {
    l->unix_path = strdup(address);
    if (!l->unix_path) goto nomem;
    snprintf(l->name, sizeof(l->name), "%s", address);
  } else {
    ev_l_format(&sa.sa, l->name, sizeof(l->name));
  }
  /* the same address as a listener of ours that is bound already?  (For
   * AF_UNIX this must be known before a "stale" socket file is removed;
   * an ephemeral port never clashes.) */
  memcpy(&l->addr, &sa, salen);
  l->addrlen = salen;
  if (l->family == AF_UNIX || o->port != 0) {
    pthread_mutex_lock(&ev_l_glock);
    mtev_listener_t *dup = NULL;
    for (mtev_listener_t *x = ev_l_all; x && !dup; x = x->next)
      if (x->fd >= 0 && ev_l_same_address(l, x)) dup = x;
    pthread_mutex_unlock(&ev_l_glock);
    if (dup) {
      ev_l_fail(err, errlen, "listener %s: another listener is bound to that "
                "%s", l->name, l->family == AF_UNIX ? "path" : "address");
      errno = EADDRINUSE;
      goto fail;
    }
  }
  if (l->family == AF_UNIX && ev_l_unix_clear(address, err, errlen) != 0)
    goto fail;
  l->fd = socket(l->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (l->fd < 0) {
    ev_l_fail(err, errlen, "listener %s: socket: %s", l->name, strerror(errno));
    goto fail;
  }
  int one = 1;
  if (l->family != AF_UNIX &&
      setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    ev_l_fail(err, errlen, "listener %s: SO_REUSEADDR: %s", l->name, strerror(errno));
    goto fail;
  }
  if (l->reuseport &&
      setsockopt(l->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    ev_l_fail(err, errlen, "listener %s: SO_REUSEPORT: %s", l->name, strerror(errno));
    goto fail;
  }
  if (bind(l->fd, &sa.sa, salen) != 0) {
    int e = errno;
    if (e == EADDRINUSE)
      ev_l_fail(err, errlen, "listener %s: bind: the address is in use "
                "(another socket holds %s)", l->name, l->name);
    else
      ev_l_fail(err, errlen, "listener %s: bind: %s", l->name, strerror(e));
    errno = e;
    goto fail;
  }
  if (l->family == AF_UNIX) {
    struct stat st;
    if (stat(l->unix_path, &st) == 0) {
      l->unix_dev = st.st_dev;
      l->unix_ino = st.st_ino;
    }
  }
  int backlog = l->backlog = o->backlog > 0 ? o->backlog : EV_L_DEFAULT_BACKLOG;
  if (listen(l->fd, backlog) != 0) {
    int e = errno;
    ev_l_fail(err, errlen, "listener %s: listen: %s", l->name, strerror(e));
    errno = e;
    goto fail;
  }
  ev_l_sockaddr_t bound;
  socklen_t blen = sizeof(bound);
  if (getsockname(l->fd, &bound.sa, &blen) == 0 && l->family != AF_UNIX) {
    memcpy(&l->addr, &bound, blen);
    l->addrlen = blen;
    ev_l_format(&bound.sa, l->name, sizeof(l->name));
  }
  /* closures: the remote address (a whole sockaddr_un for AF_UNIX), then
   * the idle timer node if there is an idle_timeout */
  size_t end = offsetof(mtev_acceptor_closure_t, remote) +
               (l->family == AF_UNIX ? sizeof(struct sockaddr_un)
                                     : sizeof(((mtev_acceptor_closure_t *)0)->remote));
  end = (end + 7) & ~(size_t)7;
  if (l->idle_us) {
    l->idle_off = end;
    end += sizeof(eventer_timer_node_t);
  }
  l->ac_size = end < sizeof(mtev_acceptor_closure_t) ? sizeof(mtev_acceptor_closure_t)
                                                    : end;
  l->backoff_node.fire = ev_l_backoff_fire;
  l->cancel_node.fire = ev_l_cancel_fire;
  /* aco connections end through eventer_aco's end hook (no coroutine
   * flagged for it exists before this line has run once) */
  ev_aco_set_end_hook(ev_l_aco_end);
  ev_l_list_add(l);
  return l;
nomem:
  ev_l_fail(err, errlen, "mtev_listener: out of memory");
  errno = ENOMEM;
fail:;
  int e = errno;
  if (l->fd >= 0) {
    close(l->fd);
    l->fd = -1;
  }
  mtev_listener_release(l);
  errno = e;
  return NULL;
}

/* Closes the socket (and removes an AF_UNIX path that is still ours). */
static void ev_l_close_socket(mtev_listener_t *l) {
  if (l->fd < 0) return;
  if (l->unix_path) {
    struct stat st;
    if (stat(l->unix_path, &st) == 0 && st.st_dev == l->unix_dev &&
        st.st_ino == l->unix_ino)
      unlink(l->unix_path);
  }
  pthread_mutex_lock(&ev_l_glock); /* ev_l_bind reads fd under it */
  close(l->fd);
  l->fd = -1;
  pthread_mutex_unlock(&ev_l_glock);
}

void ev_l_unbind(mtev_listener_t *l) {
  if (!l) return;
  EV_L_ASSERT(l->state == EV_LS_BOUND, "ev_l_unbind: only a listener that never "
              "started is unbound");
  ev_l_close_socket(l);
  ev_l_list_remove(l);
  mtev_listener_release(l);
}

void ev_l_set_from_conf(mtev_listener_t *l) { l->from_conf = 1; }

/* ---- connections ------------------------------------------------------------------------ */

static eventer_timer_node_t *ev_l_idle_node(mtev_acceptor_closure_t *ac) {
  return ac->l->idle_off ? (eventer_timer_node_t *)(void *)((char *)ac + ac->l->idle_off)
                         : NULL;
}

static void ev_l_maybe_finish(mtev_listener_t *l);
static void ev_l_run_fin_due(void);
static __thread int ev_l_discarding; /* see ev_l_fin_due */

/* The last step of a closure: off the listener's books, freed. */
static void ev_l_ac_finish(mtev_acceptor_closure_t *ac) {
  mtev_listener_t *l = ac->l;
  pthread_mutex_lock(&l->lock);
  ac->link.prev->next = ac->link.next;
  ac->link.next->prev = ac->link.prev;
  __atomic_sub_fetch(&l->active, 1, __ATOMIC_ACQ_REL);
  ev_l_maybe_finish(l);
  pthread_mutex_unlock(&l->lock);
  __atomic_sub_fetch(&ev_l_live, 1, __ATOMIC_RELAXED);
  EV_L_ASSERT(ac->hs == NULL, "a TLS handshake on the loop ends before its "
              "connection's closure is freed");
  free(ac->remote_cn);
  free(ac);
  mtev_listener_release(l);
  /* freed by another layer at eventer_fini (the HTTP engine's end of a
   * session): a "fin" that came due is run here (ev_l_maybe_finish) */
  if (!ev_l_discarding) ev_l_run_fin_due();
}

static void ev_l_ac_finish_task(eventer_task_t *t, struct timeval *now) {
  (void)now;
  mtev_acceptor_closure_t *ac = EV_L_CONTAINER_OF(t, mtev_acceptor_closure_t, task);
  eventer_timer_node_t *n = ev_l_idle_node(ac);
  if (n) eventer_timer_node_remove(n);
  ev_l_ac_finish(ac);
}

void mtev_acceptor_closure_free(mtev_acceptor_closure_t *ac) {
  if (!ac) return;
  if (ac->co) {
    /* an aco function freeing its own closure: the end of its coroutine
     * does it (ev_l_aco_end) */
    ac->flags |= EV_AC_F_FREE_ASKED;
    return;
  }
  if (ac->ctx_free && ac->ctx) ac->ctx_free(ac->ctx);
  ac->ctx = NULL;
  ac->ctx_free = NULL;
  ev_l_conn_clear(ac->fd, ac);
  eventer_timer_node_t *n = ev_l_idle_node(ac);
  if (n && ev_fini_dropping()) ev_heap_remove_at_fini(n); /* its loop is gone */
  if (n && eventer_timer_node_remove(n) < 0) {
    /* the idle timer is queued on the connection's loop and this is not
     * it: finish there */
    ac->task.run = ev_l_ac_finish_task;
    if (eventer_task_post_to(ac->loop, &ac->task) == 0) return;
    EV_L_ASSERT(0, "a connection's closure is freed on its loop, or its loop "
                "is running");
  }
  ev_l_ac_finish(ac);
}

/* Resets (RST) and closes a connection the listener does not serve. */
static void ev_l_refuse(mtev_listener_t *l, int fd) {
  __atomic_add_fetch(&l->refused, 1, __ATOMIC_RELAXED); /* before the peer
                                                         * can see it */
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(fd);
}

/* idle_timeout: shut the connection down once it has been idle long
 * enough; otherwise look again when it would be. */
static void ev_l_idle_check(mtev_acceptor_closure_t *ac, eventer_timer_node_t *n) {
  if (ev_l_conn(ac->fd) != ac) return; /* closed meanwhile */
  uint64_t now = ev_l_wall_us(), last = ac->last_us;
  uint64_t idle = now > last ? now - last : 0;
  uint64_t limit = ac->l->idle_us;
  if (ac->flags & EV_AC_F_HANDSHAKE) idle = 0; /* handshake_timeout governs */
  if (idle >= limit) {
    mtevL(mtev_debug, "mtev_listener %s: fd %d idle for %llu ms: shut down\n",
          ac->l->name, ac->fd, (unsigned long long)(idle / 1000));
    shutdown(ac->fd, SHUT_RDWR);
    return;
  }
  struct timeval d = {(time_t)((limit - idle) / 1000000u),
                      (suseconds_t)((limit - idle) % 1000000u)};
  eventer_timer_node_add(n, &d);
}

/* The node sits at l->idle_off, which is one of two values (IP or AF_UNIX
 * closures): one fire function for each. */
#define EV_L_IDLE_OFF_IP                                                      \
  ((offsetof(mtev_acceptor_closure_t, remote) +                               \
    sizeof(((mtev_acceptor_closure_t *)0)->remote) + 7) & ~(size_t)7)
#define EV_L_IDLE_OFF_UNIX                                                    \
  ((offsetof(mtev_acceptor_closure_t, remote) + sizeof(struct sockaddr_un) +  \
    7) & ~(size_t)7)
static void ev_l_idle_fire_ip(eventer_timer_node_t *n, struct timeval *now) {
  (void)now;
  ev_l_idle_check((mtev_acceptor_closure_t *)(void *)((char *)n - EV_L_IDLE_OFF_IP), n);
}
static void ev_l_idle_fire_unix(eventer_timer_node_t *n, struct timeval *now) {
  (void)now;
  ev_l_idle_check((mtev_acceptor_closure_t *)(void *)((char *)n - EV_L_IDLE_OFF_UNIX),
                  n);
}

static int ev_l_aco_event_cb(eventer_t e, int mask, void *closure,
                             struct timeval *now) {
  /* an aco connection's event before conversion: never registered */
  (void)mask, (void)closure, (void)now;
  eventer_remove_fde(e);
  return 0;
}

static void ev_l_aco_main(void);

/* ---- TLS ----------------------------------------------------------------------------- */

/* The handshake is over: what the service may ask about its peer. */
static void ev_l_tls_learn(mtev_acceptor_closure_t *ac, eventer_t e) {
  eventer_ssl_ctx_t *ctx = eventer_get_eventer_ssl_ctx(e);
  ac->flags &= (uint8_t)~EV_AC_F_HANDSHAKE;
  ac->last_us = ev_l_wall_us(); /* idle from here */
  char cn[256];
  if (ctx && eventer_ssl_get_peer_commonname(ctx, cn, sizeof(cn)) >= 0)
    ac->remote_cn = strdup(cn);
  mtevL(mtev_debug, "mtev_listener %s: TLS on fd %d (%s)%s%s\n", ac->l->name,
        ac->fd, ctx ? eventer_ssl_get_current_cipher(ctx) : "?",
        ac->remote_cn ? ", peer " : "", ac->remote_cn ? ac->remote_cn : "");
}

/* The connection's TLS context, on the event the listener made: 0, or -1
 * with errno (logged by the TLS layer). */
static int ev_l_tls_attach(mtev_acceptor_closure_t *ac, eventer_t e) {
  mtev_listener_t *l = ac->l;
  eventer_ssl_ctx_t *ctx = eventer_ssl_ctx_new_ex(SSL_SERVER, &l->ssl_settings);
  if (!ctx) return -1;
  socklen_t len = ac->remote.sa.sa_family == AF_INET6 ? sizeof(ac->remote.in6)
                  : ac->remote.sa.sa_family == AF_INET ? sizeof(ac->remote.in)
                  : l->family == AF_UNIX ? sizeof(struct sockaddr_un)
                                         : 0;
  /* the name from accept(2): a peer that resets at once is still named */
  if (len) eventer_ssl_ctx_set_peer(ctx, &ac->remote.sa, len);
  if (l->tls_verify) eventer_ssl_ctx_set_verify(ctx, eventer_ssl_verify_cert,
                                                &l->sslconfig);
  if (eventer_set_eventer_ssl_ctx_ex(e, ctx) != 0) {
    int er = errno;
    eventer_ssl_ctx_free(ctx);
    errno = er;
    return -1;
  }
  eventer_set_fd_opset(e, &ev_l_tls_opset_s);
  ac->flags |= EV_AC_F_HANDSHAKE;
  return 0;
}

/* The handshake deadline of a classic or dispatch connection: the
 * context fails with the reason (its one log line), and the socket is
 * shut down so the handshake callback runs, fails, and closes. */
static void ev_l_hs_fire(eventer_timer_node_t *n, struct timeval *now) {
  (void)now;
  ev_l_hs_t *hs = (ev_l_hs_t *)(void *)n;
  char reason[80];
  snprintf(reason, sizeof(reason), "handshake timed out after %llu ms",
           (unsigned long long)(hs->ac->l->hs_timeout_us / 1000u));
  eventer_ssl_ctx_fail(eventer_get_eventer_ssl_ctx(hs->e), reason);
  shutdown(hs->ac->fd, SHUT_RDWR);
}

/* dispatch: the binding's start, once the handshake callback has taken
 * the event out of the loop. */
static void ev_l_tls_start_task(eventer_task_t *t, struct timeval *now) {
  (void)now;
  mtev_acceptor_closure_t *ac = EV_L_CONTAINER_OF(t, mtev_acceptor_closure_t, task);
  ev_l_hs_t *hs = ac->hs;
  eventer_t e = hs->e;
  ac->hs = NULL;
  free(hs);
  mtev_listener_t *l = ac->l;
  if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != EV_ST_FD) {
    l->dispatch(e, l->dispatch_closure);
    return;
  }
  /* still registered, its callback ev_l_tls_hs_cb: the start must convert
   * it (or take it out) before it returns */
  eventer_ref(e);
  l->dispatch(e, l->dispatch_closure);
  EV_L_ASSERT(eventer_is_aco(e) || __atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != EV_ST_FD,
              "a start declared with mtev_listener_aco_dispatch_converts converts "
              "its event before it returns");
  eventer_deref(e);
}

/* A classic or dispatch connection's first callback: the handshake, then
 * the service. */
static int ev_l_tls_hs_cb(eventer_t e, int mask, void *closure,
                          struct timeval *now) {
  (void)mask, (void)now;
  mtev_acceptor_closure_t *ac = closure;
  ev_l_hs_t *hs = ac->hs;
  int m = 0, rv = eventer_SSL_accept(e, &m);
  if (rv < 0 && errno == EAGAIN) return m;
  eventer_timer_node_remove(&hs->node);
  if (rv > 0) {
    mtev_listener_t *l = ac->l;
    ev_l_tls_learn(ac, e);
    if (l->kind == EV_LK_DISPATCH && ev_l_dispatch_converts(l->dispatch)) {
      /* The start converts the event at once, which adopts this
       * registration: it stays in the loop, for READ as the handshake
       * left it, with no epoll_ctl DEL now and ADD at the coroutine's
       * first wait.  The task runs before the loop polls again, so this
       * callback does not run for it again. */
      hs->done = 1;
      eventer_ref(e); /* the task's */
      ac->task.run = ev_l_tls_start_task;
      EV_L_ASSERT(eventer_task_post(&ac->task) == 0, "a callback runs on its loop");
      return EVENTER_READ | EVENTER_EXCEPTION;
    }
    eventer_t r = eventer_remove_fde(e);
    EV_L_ASSERT(r == e, "a connection's event is registered while its "
                "callback runs");
    if (l->kind == EV_LK_CLASSIC) {
      ac->hs = NULL;
      free(hs);
      /* The service's first call says READ|WRITE whatever the socket says:
       * the handshake may have read the client's first data already (it
       * came with the Finished), and a callback that reads only on READ
       * would wait for bytes that are not coming.  A trigger, not a
       * direct call: the loop dispatches it (also to a foreign callback),
       * then registers the event with the mask the callback returns. */
      eventer_set_callback(e, l->callback);
      EV_L_ASSERT(eventer_trigger_ex(e, EVENTER_READ | EVENTER_WRITE) == 0,
                  "an event taken out of its loop can be triggered");
      return EVENTER_READ; /* queued: the reference is the trigger's */
    }
    hs->done = 1;
    ac->task.run = ev_l_tls_start_task;
    EV_L_ASSERT(eventer_task_post(&ac->task) == 0, "a callback runs on its loop");
    return EVENTER_READ; /* out of the loop: the reference is the task's */
  }
  /* failed: the TLS layer logged why (or the listener ended it on
   * purpose) */
  ac->hs = NULL;
  free(hs);
  eventer_remove_fde(e);
  int cm;
  eventer_close(e, &cm);
  mtev_acceptor_closure_free(ac);
  return 0;
}

/* The connection's loop, main context: give the connection its event and
 * its service. */
static void ev_l_dispatch(mtev_acceptor_closure_t *ac) {
  mtev_listener_t *l = ac->l;
  EV_L_ASSERT(ac->loop == eventer_loop_current(),
              "a connection is dispatched on the loop ev_l_take chose");
  eventer_timer_node_t *n = ev_l_idle_node(ac);
  if (n) {
    n->fire = l->family == AF_UNIX ? ev_l_idle_fire_unix : ev_l_idle_fire_ip;
    struct timeval d = {(time_t)(l->idle_us / 1000000u),
                        (suseconds_t)(l->idle_us % 1000000u)};
    eventer_timer_node_add(n, &d);
  }
  /* classic: libmtev's mask (the callback runs as soon as the socket is
   * writable); aco: the coroutine decides what to wait for */
  int mask = l->kind == EV_LK_CLASSIC
                 ? EVENTER_READ | EVENTER_WRITE | EVENTER_EXCEPTION
                 : EVENTER_READ;
  eventer_func_t cb = l->kind == EV_LK_CLASSIC ? l->callback : ev_l_aco_event_cb;
  /* TLS: a classic or dispatch connection does its handshake on the
   * loop first (a coroutine does it in ev_l_aco_main) */
  int hs_on_loop = l->tls && l->kind != EV_LK_ACO;
  if (hs_on_loop) {
    cb = ev_l_tls_hs_cb;
    mask = EVENTER_READ | EVENTER_EXCEPTION; /* the client speaks first */
  }
  eventer_t e = eventer_alloc_fd(cb, ac, ac->fd, mask);
  if (!e) goto fail;
  if (!l->tls) {
    eventer_set_fd_opset(e, &ev_l_opset_s);
  } else if (ev_l_tls_attach(ac, e) != 0) {
    eventer_free(e);
    goto fail;
  }
  if (hs_on_loop) {
    ev_l_hs_t *hs = calloc(1, sizeof(*hs));
    if (!hs) {
      eventer_free(e);
      goto fail;
    }
    hs->ac = ac;
    hs->e = e;
    hs->node.fire = ev_l_hs_fire;
    ac->hs = hs;
    if (eventer_add_ex(e) != 0) {
      ac->hs = NULL;
      free(hs);
      eventer_free(e);
      goto fail;
    }
    struct timeval d = {(time_t)(l->hs_timeout_us / 1000000u),
                        (suseconds_t)(l->hs_timeout_us % 1000000u)};
    eventer_timer_node_add(&hs->node, &d);
    return;
  }
  switch (l->kind) {
  case EV_LK_CLASSIC:
    if (eventer_add_ex(e) != 0) {
      eventer_free(e);
      goto fail;
    }
    return;
  case EV_LK_DISPATCH:
    l->dispatch(e, l->dispatch_closure);
    return;
  default: {
    ev_aco_t *a = ev_aco_create(ev_l_aco_main, e, 0, 0, l->type[0] ? l->type : NULL);
    if (!a) {
      eventer_free(e);
      goto fail;
    }
    eventer_ref(e); /* the listener's own, dropped by ev_l_aco_end */
    ac->co = a;
    a->flags |= EV_ACO_F_END_HOOK;
    ev_aco_resume(a);
    return;
  }
  }
fail:
  mtevL(mtev_error, "mtev_listener %s: cannot serve fd %d: %s\n", l->name,
        ac->fd, strerror(errno));
  int fd = ac->fd;
  mtev_acceptor_closure_free(ac);
  close(fd);
}

static void ev_l_dispatch_task(eventer_task_t *t, struct timeval *now) {
  (void)now;
  ev_l_dispatch(EV_L_CONTAINER_OF(t, mtev_acceptor_closure_t, task));
}

/* The coroutine of an aco connection. */
static void ev_l_aco_main(void) {
  eventer_t e = eventer_aco_arg();
  mtev_acceptor_closure_t *ac = eventer_get_closure(e);
  eventer_aco_t ae = eventer_set_eventer_aco(e);
  if (!ae) {
    ac->flags |= EV_AC_F_UNCONVERTED;
    mtevL(mtev_error, "mtev_listener %s: eventer_set_eventer_aco: %s\n",
          ac->l->name, strerror(errno));
    return;
  }
  mtev_listener_t *l = ac->l;
  if (l->tls) {
    /* the function sees the connection only once TLS is up; a failure or
     * a timeout is logged by the TLS layer, a cancel (stop) is not */
    struct timeval tmo = {(time_t)(l->hs_timeout_us / 1000000u),
                          (suseconds_t)(l->hs_timeout_us % 1000000u)};
    if (eventer_aco_ssl_accept(ae, &tmo) != 0) {
      /* the function's reference, as the function would drop it; the end
       * hook drops the listener's */
      eventer_aco_close(ae);
      eventer_aco_free(ae);
      return;
    }
    ev_l_tls_learn(ac, e);
  }
  l->aco();
}

static void ev_l_aco_end_at_fini(ev_aco_t *a);

/* eventer_aco's end hook: the coroutine of an aco connection has ended
 * (returned or aco_exit()ed).  Whatever the function left open is closed;
 * the listener's reference to the event and the closure go.  (at_fini:
 * the coroutine went with its loop instead: ev_l_aco_end_at_fini.) */
static void ev_l_aco_end(ev_aco_t *a, int at_fini) {
  if (at_fini) {
    ev_l_aco_end_at_fini(a);
    return;
  }
  eventer_t e = ev_aco_co(a)->arg;
  mtev_acceptor_closure_t *ac = eventer_get_closure(e);
  ac->co = NULL;
  if (eventer_is_aco(e)) {
    eventer_aco_close((eventer_aco_t)e); /* EBADF if the function did */
    eventer_aco_free((eventer_aco_t)e);  /* the listener's reference */
  } else {
    int m;
    if (!(ac->flags & EV_AC_F_CLOSED)) eventer_close(e, &m);
    if (ac->flags & EV_AC_F_UNCONVERTED) eventer_free(e); /* never handed */
    eventer_free(e);
  }
  mtev_acceptor_closure_free(ac);
}

static eventer_loop_t *ev_l_pick_loop(mtev_listener_t *l) {
  if (!l->fanout) return l->home;
  uint32_t n = eventer_pool_concurrency(l->pool);
  uint32_t r = __atomic_fetch_add(&l->rr, 1, __ATOMIC_RELAXED);
  /* the default pool keeps loop 0 for work that must not be spread
   * (eventer_choose_owner's rule) */
  if (l->pool == eventer_pool("default") && n > 1)
    return eventer_pool_loop(l->pool, 1 + (int)(r % (n - 1)));
  return eventer_pool_loop(l->pool, (int)(r % (n ? n : 1)));
}

/* The acceptor got fd: book it and send it to its loop. */
static void ev_l_take(mtev_listener_t *l, int fd, const struct sockaddr *sa,
                      socklen_t salen) {
  if (__atomic_load_n(&l->state, __ATOMIC_ACQUIRE) != EV_LS_RUNNING ||
      (l->max_connections &&
       __atomic_load_n(&l->active, __ATOMIC_ACQUIRE) >= (int64_t)l->max_connections)) {
    ev_l_refuse(l, fd);
    return;
  }
  mtev_acceptor_closure_t *ac = calloc(1, l->ac_size);
  mtev_acceptor_closure_t **slot = ev_l_slot(fd, 1);
  if (!ac || !slot) {
    free(ac);
    mtevL(mtev_error, "mtev_listener %s: out of memory for a connection\n", l->name);
    ev_l_refuse(l, fd);
    return;
  }
  mtev_listener_ref(l);
  ac->l = l;
  ac->ctx = l->service_ctx;
  ac->fd = fd;
  size_t room = l->family == AF_UNIX ? sizeof(struct sockaddr_un) : sizeof(ac->remote);
  memcpy(&ac->remote, sa, salen < room ? salen : room);
  if (l->half_close) ac->flags |= EV_AC_F_HALF_CLOSE;
  if (l->idle_us) {
    ac->flags |= EV_AC_F_IDLE;
    ac->last_us = ev_l_wall_us();
  }
  if (l->no_delay && l->family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  __atomic_store_n(slot, ac, __ATOMIC_RELEASE);
  pthread_mutex_lock(&l->lock);
  ac->link.next = &l->conns;
  ac->link.prev = l->conns.prev;
  l->conns.prev->next = &ac->link;
  l->conns.prev = &ac->link;
  __atomic_add_fetch(&l->active, 1, __ATOMIC_ACQ_REL);
  pthread_mutex_unlock(&l->lock);
  __atomic_add_fetch(&l->accepted, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&ev_l_live, 1, __ATOMIC_RELAXED);
  eventer_loop_t *loop = ev_l_pick_loop(l);
  ac->loop = loop;
  if (loop == eventer_loop_current() && !aco_current()) {
    ev_l_dispatch(ac);
    return;
  }
  ac->task.run = ev_l_dispatch_task;
  if (eventer_task_post_to(loop, &ac->task) != 0) {
    mtevL(mtev_error, "mtev_listener %s: cannot hand fd %d to its loop: %s\n",
          l->name, fd, strerror(errno));
    mtev_acceptor_closure_free(ac);
    close(fd);
  }
}

/* ---- accepting ----------------------------------------------------------------------------- */

/* Errors accept(2) passes on from a connection that died in the queue:
 * the next one may be fine. */
static int ev_l_accept_transient(int e) {
  switch (e) {
  case ECONNABORTED: case EPROTO: case EPERM: case ENETDOWN: case ENOPROTOOPT:
  case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case EOPNOTSUPP:
  case ENETUNREACH: case ETIMEDOUT:
    return 1;
  default:
    return 0;
  }
}

/* An accept error that calls for a pause (EMFILE, ENFILE, ENOBUFS,
 * ENOMEM, or something unexpected): count it, report at most once a
 * second, and return how long to pause. */
static uint32_t ev_l_accept_trouble(mtev_listener_t *l, int e) {
  l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : EV_L_BACKOFF_MIN_MS;
  if (l->backoff_ms > EV_L_BACKOFF_MAX_MS) l->backoff_ms = EV_L_BACKOFF_MAX_MS;
  l->unreported++;
  uint64_t now = eventer_mono_ns() / 1000u;
  if (!l->report_us || now - l->report_us >= EV_L_REPORT_US) {
    mtevL(mtev_error, "mtev_listener %s: accept: %s (%u time%s since the last "
          "report); pausing accepts for %u ms\n", l->name, strerror(e),
          l->unreported, l->unreported == 1 ? "" : "s", l->backoff_ms);
    l->report_us = now;
    l->unreported = 0;
  }
  return l->backoff_ms;
}

static void ev_l_acceptor_gone(mtev_listener_t *l) {
  pthread_mutex_lock(&l->lock);
  l->acceptor_live = 0;
  ev_l_maybe_finish(l);
  pthread_mutex_unlock(&l->lock);
  mtev_listener_release(l); /* the acceptor's reference */
}

/* The accept event's callback, on the listener's home loop or on its
 * dedicated thread (blocking accept). */
static int ev_l_accept_cb(eventer_t e, int mask, void *closure,
                          struct timeval *now) {
  (void)mask, (void)now;
  mtev_listener_t *l = closure;
  int thread = l->accept_thread;
  for (int n = 0; thread || n < EV_L_ACCEPT_BATCH; n++) {
    if (__atomic_load_n(&l->state, __ATOMIC_ACQUIRE) != EV_LS_RUNNING) {
      if (!thread) return EVENTER_READ | EVENTER_EXCEPTION; /* the stop task
                                                              * removes us */
      pthread_mutex_lock(&l->lock); /* mtev_listener_stop shuts it down
                                     * under the lock */
      ev_l_close_socket(l);
      pthread_mutex_unlock(&l->lock);
      ev_l_acceptor_gone(l);
      return 0; /* the thread frees e and exits */
    }
    ev_l_sockaddr_t sa;
    socklen_t salen = sizeof(sa);
    int fd = accept4(l->fd, &sa.sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      l->backoff_ms = 0;
      ev_l_take(l, fd, &sa.sa, salen);
      continue;
    }
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      if (!thread) return EVENTER_READ | EVENTER_EXCEPTION;
      continue;
    }
    if (__atomic_load_n(&l->state, __ATOMIC_ACQUIRE) != EV_LS_RUNNING)
      continue; /* shut down for the stop: handled at the top */
    __atomic_add_fetch(&l->accept_errors, 1, __ATOMIC_RELAXED);
    if (ev_l_accept_transient(err)) continue;
    uint32_t ms = ev_l_accept_trouble(l, err);
    if (thread) {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      ts.tv_sec += ms / 1000;
      ts.tv_nsec += (long)(ms % 1000) * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_mutex_lock(&l->lock);
      int rc = 0;
      while (l->state == EV_LS_RUNNING && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&l->cond, &l->lock, &ts);
      pthread_mutex_unlock(&l->lock);
      continue;
    }
    /* loop mode: out of the loop until the pause is over (a level-
     * triggered listening socket would fire at once again) */
    EV_L_ASSERT(eventer_remove(e) == e, "the accept event is registered while "
                "its callback runs");
    l->backoff_held = 1;
    struct timeval d = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    eventer_timer_node_add(&l->backoff_node, &d);
    return EVENTER_READ; /* removed: we keep the reference */
  }
  return EVENTER_READ | EVENTER_EXCEPTION;
}

static void ev_l_backoff_fire(eventer_timer_node_t *n, struct timeval *now) {
  (void)now;
  mtev_listener_t *l = EV_L_CONTAINER_OF(n, mtev_listener_t, backoff_node);
  if (!l->backoff_held) return;
  l->backoff_held = 0;
  if (eventer_add_ex(l->accept_e) != 0) {
    mtevL(mtev_error, "mtev_listener %s: re-adding the accept event: %s\n",
          l->name, strerror(errno));
    l->backoff_held = 1;
    struct timeval d = {0, EV_L_BACKOFF_MAX_MS * 1000};
    eventer_timer_node_add(&l->backoff_node, &d);
  }
}

int ev_l_start(mtev_listener_t *l, char *err, size_t errlen) {
  EV_L_ASSERT(l->state == EV_LS_BOUND, "a listener is started once");
  eventer_t e = eventer_alloc_fd(ev_l_accept_cb, l, l->fd,
                                 EVENTER_READ | EVENTER_EXCEPTION);
  if (!e) {
    ev_l_fail(err, errlen, "listener %s: %s", l->name, strerror(errno));
    goto fail;
  }
  l->accept_e = e;
  mtev_listener_ref(l); /* the acceptor's */
  l->acceptor_live = 1;
  __atomic_store_n(&l->state, EV_LS_RUNNING, __ATOMIC_RELEASE);
  int rc;
  if (l->accept_thread) {
    rc = eventer_run_in_thread(e, EVENTER_READ);
  } else {
    rc = eventer_set_owner_loop(e, l->home);
    if (rc == 0) rc = eventer_add_ex(e);
  }
  if (rc != 0) {
    int er = errno;
    ev_l_fail(err, errlen, "listener %s: starting the acceptor: %s", l->name,
              strerror(er));
    __atomic_store_n(&l->state, EV_LS_BOUND, __ATOMIC_RELEASE);
    l->acceptor_live = 0;
    l->accept_e = NULL;
    eventer_free(e);
    mtev_listener_release(l);
    errno = er;
    goto fail;
  }
  mtevL(mtev_debug, "mtev_listener: %s listening (%s, %s)\n", l->name,
        l->type[0] ? l->type : "function",
        l->accept_thread ? "accept thread" : "accepting on its loop");
  return 0;
fail:;
  int er = errno;
  ev_l_unbind(l);
  errno = er;
  return -1;
}

mtev_listener_t *mtev_listener_create(const mtev_listener_opts_t *opts,
                                      char *err, size_t errlen) {
  mtev_listener_t *l = ev_l_bind(opts, err, errlen);
  if (!l) return NULL;
  if (ev_l_start(l, err, errlen) != 0) return NULL; /* it unbound l */
  return l;
}

/* ---- stopping ---------------------------------------------------------------------------- */

/* eventer_fini's thread, while it tells the listener of a task it dropped
 * (ev_l_task_discard) or ends what a stopped loop held (ev_l_discarding
 * set), or while another layer does (ev_fini_dropping): no loop runs any
 * more, so a "fin" that comes due is not posted but kept here (linked
 * through fin_task.next) and run once out of the listener's lock (by the
 * discard, or at the end of ev_l_ac_finish). */
static __thread eventer_task_t *ev_l_fin_due;

/* Under l->lock: once stopping, with the acceptor gone and no connection
 * left, "fin" runs on the home loop. */
static void ev_l_maybe_finish(mtev_listener_t *l) {
  if (l->state != EV_LS_STOPPING || l->acceptor_live || l->fin_posted ||
      __atomic_load_n(&l->active, __ATOMIC_ACQUIRE) != 0)
    return;
  l->fin_posted = 1;
  mtev_listener_ref(l); /* the task's */
  if (ev_l_discarding || ev_fini_dropping()) {
    l->fin_task.next = ev_l_fin_due;
    ev_l_fin_due = &l->fin_task;
    return;
  }
  EV_L_ASSERT(eventer_task_post_to(l->home, &l->fin_task) == 0,
              "a listener's home loop runs until the listener stopped");
}

/* "fin": the listener is stopped.  On its home loop, or at eventer_fini
 * (at_fini: the deadline timer comes off the stopped loop's heap, and the
 * coroutines waiting in mtev_listener_wait are not woken: they went with
 * their loops). */
static void ev_l_fin(mtev_listener_t *l, int at_fini) {
  if (at_fini)
    ev_heap_remove_at_fini(&l->cancel_node);
  else
    eventer_timer_node_remove(&l->cancel_node);
  /* off the list of running or draining listeners before a waiter can
   * see it stopped (mtev_listener_foreach after mtev_listener_wait must
   * not find it) */
  ev_l_list_remove(l);
  pthread_mutex_lock(&l->lock);
  __atomic_store_n(&l->state, EV_LS_STOPPED, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&l->cond);
  for (size_t i = 0; !at_fini && i < l->nwaiters; i++) eventer_aco_wake(l->waiters[i]);
  pthread_mutex_unlock(&l->lock);
  mtevL(mtev_debug, "mtev_listener %s: stopped\n", l->name);
}

static void ev_l_fin_task(eventer_task_t *t, struct timeval *now) {
  (void)now;
  mtev_listener_t *l = EV_L_CONTAINER_OF(t, mtev_listener_t, fin_task);
  ev_l_fin(l, 0);
  mtev_listener_release(l); /* the task's */
}

typedef struct {
  eventer_task_t task;
  mtev_listener_t *l;
  int hs_only; /* only the connections whose TLS handshake is not over */
} ev_l_cancel_t;

/* On one loop: cancel the coroutines of l's connections there, shut the
 * other connections down (hs_only: just those still in their TLS
 * handshake). */
static void ev_l_cancel_task(eventer_task_t *t, struct timeval *now) {
  (void)now;
  ev_l_cancel_t *c = EV_L_CONTAINER_OF(t, ev_l_cancel_t, task);
  mtev_listener_t *l = c->l;
  eventer_loop_t *self = eventer_loop_current();
  int n = 0;
  pthread_mutex_lock(&l->lock);
  for (ev_l_link_t *k = l->conns.next; k != &l->conns; k = k->next) {
    mtev_acceptor_closure_t *ac = EV_L_CONTAINER_OF(k, mtev_acceptor_closure_t, link);
    if (ac->loop != self) continue;
    if (c->hs_only && !(ac->hs && !ac->hs->done)) continue;
    if (ac->co) {
      eventer_aco_co_t *h = ev_aco_handle_of(ac->co);
      if (h && eventer_aco_cancel(h) == 0) n++;
    } else if (ev_l_conn(ac->fd) == ac) {
      /* a handshake cut short by the stop is not a TLS failure to log */
      if (ac->hs && !ac->hs->done)
        eventer_ssl_ctx_fail(eventer_get_eventer_ssl_ctx(ac->hs->e), NULL);
      shutdown(ac->fd, SHUT_RDWR);
      n++;
    }
  }
  pthread_mutex_unlock(&l->lock);
  if (n)
    mtevL(mtev_debug, "mtev_listener %s: grace period over: %d connection%s "
          "cancelled on %s\n", l->name, n, n == 1 ? "" : "s",
          eventer_get_thread_name() ? eventer_get_thread_name() : "?");
  free(c);
  mtev_listener_release(l);
}

/* Posts ev_l_cancel_task to every loop that has connections of l; 1 if
 * there were more loops than it could post to at once. */
static int ev_l_post_cancel(mtev_listener_t *l, int hs_only) {
  eventer_loop_t *loops[64];
  size_t nloops = 0;
  int more = 0;
  pthread_mutex_lock(&l->lock);
  for (ev_l_link_t *k = l->conns.next; k != &l->conns; k = k->next) {
    eventer_loop_t *lp = EV_L_CONTAINER_OF(k, mtev_acceptor_closure_t, link)->loop;
    size_t i = 0;
    while (i < nloops && loops[i] != lp) i++;
    if (i == nloops) {
      if (nloops < sizeof(loops) / sizeof(loops[0])) loops[nloops++] = lp;
      else more = 1;
    }
  }
  pthread_mutex_unlock(&l->lock);
  for (size_t i = 0; i < nloops; i++) {
    ev_l_cancel_t *c = calloc(1, sizeof(*c));
    if (!c) continue;
    c->task.run = ev_l_cancel_task;
    c->l = l;
    c->hs_only = hs_only;
    mtev_listener_ref(l);
    if (eventer_task_post_to(loops[i], &c->task) != 0) {
      free(c);
      mtev_listener_release(l);
    }
  }
  return more;
}

/* The grace deadline (home loop): every loop that has connections of l
 * cancels them. */
static void ev_l_cancel_fire(eventer_timer_node_t *n, struct timeval *now) {
  (void)now;
  mtev_listener_t *l = EV_L_CONTAINER_OF(n, mtev_listener_t, cancel_node);
  if (ev_l_post_cancel(l, 0)) { /* connections on more loops than fit: another round soon */
    struct timeval d = {0, 1000};
    eventer_timer_node_add(&l->cancel_node, &d);
  }
}

static void ev_l_stop_task(eventer_task_t *t, struct timeval *now) {
  (void)now;
  mtev_listener_t *l = EV_L_CONTAINER_OF(t, mtev_listener_t, stop_task);
  if (!l->accept_thread && l->acceptor_live) {
    eventer_timer_node_remove(&l->backoff_node);
    eventer_t e = l->accept_e;
    if (l->backoff_held) { /* out of the loop: we hold its reference */
      l->backoff_held = 0;
      eventer_free(e);
    } else {
      eventer_t r = eventer_remove(e);
      EV_L_ASSERT(r == e, "the accept event is registered on its home loop");
      eventer_free(r);
    }
    l->accept_e = NULL;
    ev_l_close_socket(l);
    ev_l_acceptor_gone(l);
  }
  if (l->cancel_at_ns) eventer_timer_node_add_at_ns(&l->cancel_node, l->cancel_at_ns);
  pthread_mutex_lock(&l->lock);
  ev_l_maybe_finish(l);
  pthread_mutex_unlock(&l->lock);
  mtev_listener_release(l); /* the task's */
}

int mtev_listener_end_handshakes(mtev_listener_t *l) {
  if (!l) {
    errno = EINVAL;
    return -1;
  }
  if (__atomic_load_n(&l->state, __ATOMIC_ACQUIRE) == EV_LS_RUNNING) {
    errno = EINVAL; /* only a stopping listener's handshakes end early */
    return -1;
  }
  ev_l_post_cancel(l, 1); /* (on the first 64 loops that have some) */
  return 0;
}

int mtev_listener_stop(mtev_listener_t *l, const struct timeval *grace) {
  if (!l || (grace && (grace->tv_sec < 0 || grace->tv_usec < 0 ||
                       grace->tv_usec >= 1000000))) {
    errno = EINVAL;
    return -1;
  }
  pthread_mutex_lock(&l->lock);
  if (l->state != EV_LS_RUNNING) {
    pthread_mutex_unlock(&l->lock);
    return 0; /* already stopping or stopped */
  }
  if (grace) {
    l->cancel_at_ns = eventer_mono_ns() + (uint64_t)grace->tv_sec * 1000000000u +
                      (uint64_t)grace->tv_usec * 1000u;
  }
  __atomic_store_n(&l->state, EV_LS_STOPPING, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&l->cond); /* an accept thread pausing after EMFILE */
  l->stop_task.run = ev_l_stop_task;
  l->fin_task.run = ev_l_fin_task;
  mtev_listener_ref(l); /* the stop task's */
  EV_L_ASSERT(eventer_task_post_to(l->home, &l->stop_task) == 0,
              "a listener's home loop runs until the listener stopped");
  /* wake the accept thread out of accept(2): Linux fails a blocked
   * accept on a listening socket shut down for reading with EINVAL.  The
   * thread closes the socket under the lock, so fd is still ours here. */
  if (l->accept_thread && l->fd >= 0) shutdown(l->fd, SHUT_RD);
  pthread_mutex_unlock(&l->lock);
  mtevL(mtev_debug, "mtev_listener %s: stopping\n", l->name);
  return 0;
}

/* ---- a loop that goes away with the listener's tasks queued ---------------------------- */

/* eventer_fini drops, unrun, the tasks queued on a loop that stopped
 * before running them, and tells the layers.  Each of the listener's holds
 * something: the hand-off of an accepted fd to its loop (the fd, the
 * acceptor closure and the closure's listener reference), the start of a
 * dispatch service after its TLS handshake (the connection's event too),
 * a closure's deferred free, a grace deadline's cancel (a listener
 * reference and its record) and "fin" (a listener reference, and the
 * listener's last step to stopped).  They are released here, on
 * eventer_fini's thread with every loop stopped: the fd or event is
 * closed, the closure freed; a listener whose last connection this was
 * finishes here (nothing is posted to a loop).  A listener still
 * accepting and an aco function's connection are the layer's loop_fini's
 * and the end hook's (below); a classic or dispatch service's connection
 * still open is not reached (see mtev_listener.h). */

/* The "fin"s that came due while discarding (ev_l_discarding), run now
 * that no listener lock is held. */
static void ev_l_run_fin_due(void) {
  while (ev_l_fin_due) {
    eventer_task_t *f = ev_l_fin_due;
    ev_l_fin_due = f->next;
    f->next = NULL;
    mtev_listener_t *l = EV_L_CONTAINER_OF(f, mtev_listener_t, fin_task);
    ev_l_fin(l, 1);
    mtev_listener_release(l); /* the task's */
  }
}

/* ev_l_stop_task's part for the acceptor, on eventer_fini's thread with
 * the home loop stopped (loop mode; nothing if the acceptor is gone). */
static void ev_l_stop_acceptor_at_fini(mtev_listener_t *l) {
  if (l->accept_thread || !l->acceptor_live) return;
  ev_heap_remove_at_fini(&l->backoff_node);
  eventer_t e = l->accept_e;
  if (l->backoff_held) { /* out of the loop: we hold its reference */
    l->backoff_held = 0;
    eventer_free(e);
  } else if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == EV_ST_FD) {
    eventer_t r = ev_reg_remove(ev_event_owner(e), e);
    EV_L_ASSERT(r == e, "a registered accept event comes out of its stopped loop");
    eventer_free(r);
  }
  /* (else its add is still queued: the queue's discard drops it) */
  l->accept_e = NULL;
  ev_l_close_socket(l);
  ev_l_acceptor_gone(l);
}

/* mtev_acceptor_closure_free for a closure whose loop no longer runs:
 * its idle timer comes off that loop's heap here. */
static void ev_l_ac_free_at_fini(mtev_acceptor_closure_t *ac) {
  eventer_timer_node_t *n = ev_l_idle_node(ac);
  if (n) ev_heap_remove_at_fini(n);
  mtev_acceptor_closure_free(ac);
}

/* The TLS start task: the handshake's record, the event (the task's
 * reference; a start that converts left it registered, and the
 * registration's reference comes out with it), then the closure. */
static void ev_l_tls_start_discard(mtev_acceptor_closure_t *ac) {
  ev_l_hs_t *hs = ac->hs;
  eventer_t e = hs->e;
  ac->hs = NULL;
  free(hs);
  int refs = 1;
  if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == EV_ST_FD) {
    eventer_t r = ev_reg_remove(ev_event_owner(e), e);
    EV_L_ASSERT(r == e, "a registered event comes out of its stopped loop");
    refs = 2;
  }
  int m;
  eventer_close(e, &m); /* close_notify, the TLS context freed, the fd closed */
  while (refs-- > 0) eventer_free(e);
  ev_l_ac_free_at_fini(ac);
}

static int ev_l_task_discard(eventer_task_t *t) {
  void (*run)(eventer_task_t *, struct timeval *) = t->run;
  if (run != ev_l_dispatch_task && run != ev_l_tls_start_task &&
      run != ev_l_ac_finish_task && run != ev_l_cancel_task && run != ev_l_fin_task &&
      run != ev_l_stop_task)
    return 0;
  ev_l_discarding = 1;
  if (run == ev_l_stop_task) {
    /* the layer's loop_fini did the acceptor's part; no grace deadline */
    mtev_listener_t *l = EV_L_CONTAINER_OF(t, mtev_listener_t, stop_task);
    ev_l_stop_acceptor_at_fini(l);
    pthread_mutex_lock(&l->lock);
    ev_l_maybe_finish(l);
    pthread_mutex_unlock(&l->lock);
    mtev_listener_release(l); /* the task's */
  } else if (run == ev_l_dispatch_task) {
    /* never dispatched: as when ev_l_take cannot post it */
    mtev_acceptor_closure_t *ac = EV_L_CONTAINER_OF(t, mtev_acceptor_closure_t, task);
    int fd = ac->fd;
    ev_l_ac_free_at_fini(ac);
    close(fd);
  } else if (run == ev_l_tls_start_task) {
    ev_l_tls_start_discard(EV_L_CONTAINER_OF(t, mtev_acceptor_closure_t, task));
  } else if (run == ev_l_ac_finish_task) {
    /* mtev_acceptor_closure_free did the rest before it posted this */
    mtev_acceptor_closure_t *ac = EV_L_CONTAINER_OF(t, mtev_acceptor_closure_t, task);
    eventer_timer_node_t *n = ev_l_idle_node(ac);
    if (n) ev_heap_remove_at_fini(n);
    ev_l_ac_finish(ac);
  } else if (run == ev_l_cancel_task) {
    /* its loop's connections are not reached any more */
    ev_l_cancel_t *c = EV_L_CONTAINER_OF(t, ev_l_cancel_t, task);
    mtev_listener_t *l = c->l;
    free(c);
    mtev_listener_release(l);
  } else {
    t->next = ev_l_fin_due;
    ev_l_fin_due = t;
  }
  ev_l_discarding = 0;
  ev_l_run_fin_due();
  return 1;
}

/* ---- a loop that goes away with a listener still accepting on it, or with
 * aco connections' coroutines ------------------------------------------------------------ */

/* eventer_fini's look at the listeners: those want(l, arg) picks, each
 * with a reference of the snapshot's (*k of them; free the array).  Out of
 * memory, none (logged: they are left as they are). */
static mtev_listener_t **ev_l_snapshot(int (*want)(mtev_listener_t *, void *),
                                       void *arg, size_t *k) {
  size_t n = 0;
  *k = 0;
  pthread_mutex_lock(&ev_l_glock);
  for (mtev_listener_t *l = ev_l_all; l; l = l->next) n++;
  mtev_listener_t **snap = n ? calloc(n, sizeof(*snap)) : NULL;
  for (mtev_listener_t *l = ev_l_all; snap && l; l = l->next)
    if (want(l, arg)) {
      mtev_listener_ref(l);
      snap[(*k)++] = l;
    }
  pthread_mutex_unlock(&ev_l_glock);
  if (n && !snap)
    mtevL(mtev_error, "mtev_listener: eventer_fini: out of memory: listeners "
          "still running are left as they are\n");
  return snap;
}

/* eventer_fini is about to free loop lp.  A listener that accepts on it
 * (never stopped, or stopped with its stop task still queued there: that
 * task's discard finds the work done) stops here as its stop task would:
 * the accept event comes out of the stopped loop and its reference goes,
 * the socket is closed, the acceptor's listener reference goes, and a
 * listener with no connection left finishes (mtev_listener_wait returns
 * in the threads that wait; the coroutines that wait went with their
 * loops).  A listener with an accept thread is not reached here. */
static int ev_l_accepts_on(mtev_listener_t *l, void *lp) {
  return l->home == (eventer_loop_t *)lp && !l->accept_thread &&
         __atomic_load_n(&l->state, __ATOMIC_ACQUIRE) != EV_LS_BOUND;
}

static void ev_l_loop_fini(ev_loop_t *lp) {
  size_t k;
  mtev_listener_t **snap = ev_l_snapshot(ev_l_accepts_on, lp, &k);
  for (size_t i = 0; i < k; i++) {
    mtev_listener_t *l = snap[i];
    ev_l_discarding = 1;
    pthread_mutex_lock(&l->lock);
    if (l->state == EV_LS_RUNNING) {
      __atomic_store_n(&l->state, EV_LS_STOPPING, __ATOMIC_RELEASE);
      pthread_cond_broadcast(&l->cond);
    }
    pthread_mutex_unlock(&l->lock);
    ev_l_stop_acceptor_at_fini(l);
    pthread_mutex_lock(&l->lock);
    ev_l_maybe_finish(l);
    pthread_mutex_unlock(&l->lock);
    ev_l_discarding = 0;
    ev_l_run_fin_due();
    mtev_listener_release(l); /* the snapshot's */
  }
  free(snap);
}

/* eventer_fini has begun (every loop told to stop): a listener whose
 * accept thread still runs is stopped as mtev_listener_stop does (the
 * thread, woken out of accept(2), closes the socket and ends before
 * eventer_fini waits for such threads), without a grace deadline; the
 * stop and fin tasks it posts to the home loop are run there if that
 * loop still iterates, else dropped and released (ev_l_task_discard). */
static int ev_l_accept_thread_runs(mtev_listener_t *l, void *unused) {
  (void)unused;
  return l->accept_thread &&
         __atomic_load_n(&l->state, __ATOMIC_ACQUIRE) == EV_LS_RUNNING;
}

static void ev_l_fini_begin(void) {
  size_t k;
  mtev_listener_t **snap = ev_l_snapshot(ev_l_accept_thread_runs, NULL, &k);
  for (size_t i = 0; i < k; i++) {
    mtev_listener_stop(snap[i], NULL);
    mtev_listener_release(snap[i]); /* the snapshot's */
  }
  free(snap);
}

/* The end hook at fini: an aco connection's coroutine went with its loop
 * (it never runs again, so nothing of the function's code runs).  What
 * its return would have released goes: the event is closed (an fd the
 * function left open; a TLS connection's close_notify) and taken out of
 * the stopped loop, the listener's reference to it goes and so does the
 * function's, if the event still has more than the listener's and the
 * function did not eventer_aco_free it (one that did, before parking
 * elsewhere, did its part; what is left then are references it took and
 * kept, its own to drop), as does the
 * TLS handshake's while the coroutine waits in it, and the closure is
 * freed; a listener whose last connection this was finishes. */
static void ev_l_aco_end_at_fini(ev_aco_t *a) {
  eventer_t e = ev_aco_co(a)->arg;
  mtev_acceptor_closure_t *ac = eventer_get_closure(e);
  ac->co = NULL;
  ev_l_discarding = 1;
  if (ev_aco_fd_close_at_fini(e) == 0) {
    int refs = __atomic_load_n(&e->refcnt, __ATOMIC_ACQUIRE);
    if (ac->flags & EV_AC_F_HANDSHAKE) {
      /* parked in ev_l_aco_main's eventer_aco_ssl_accept, which holds a
       * reference of its own while it waits (the function has not run:
       * its reference is there too) */
      eventer_free(e);
      refs--;
    }
    /* the function's, unless it freed one (then what is left beyond the
     * listener's is references it took and kept: its own to drop) */
    int fn_freed = e->acofd_flags & EV_ACOFD_F_FREED;
    eventer_free(e); /* the listener's */
    if (refs > 1 && !fn_freed) eventer_free(e);
  } else {
    /* not converted: a coroutine parks only after the conversion, so
     * this one never ran; the function's reference and the listener's */
    int m;
    if (!(ac->flags & EV_AC_F_CLOSED)) eventer_close(e, &m);
    eventer_free(e);
    eventer_free(e);
  }
  ev_l_ac_free_at_fini(ac);
  ev_l_discarding = 0;
  ev_l_run_fin_due();
}

static const ev_layer_t ev_l_layer = {
    .name = "listener",
    .loop_fini = ev_l_loop_fini,
    .fini_begin = ev_l_fini_begin,
    .task_discard = ev_l_task_discard,
};

__attribute__((constructor)) static void ev_l_layer_register(void) {
  ev_layer_register(&ev_l_layer);
}

int mtev_listener_wait(mtev_listener_t *l, const struct timeval *timeout) {
  if (!l || (timeout && (timeout->tv_sec < 0 || timeout->tv_usec < 0 ||
                         timeout->tv_usec >= 1000000))) {
    errno = EINVAL;
    return -1;
  }
  if (__atomic_load_n(&l->state, __ATOMIC_ACQUIRE) == EV_LS_STOPPED) return 0;
  int zero = timeout && timeout->tv_sec == 0 && timeout->tv_usec == 0;
  if (zero) {
    errno = ETIMEDOUT;
    return -1;
  }
  uint64_t deadline = timeout ? eventer_mono_ns() +
                                    (uint64_t)timeout->tv_sec * 1000000000u +
                                    (uint64_t)timeout->tv_usec * 1000u
                              : 0;
  if (eventer_in_aco()) {
    eventer_aco_co_t *h = eventer_aco_self();
    if (!h) return -1;
    eventer_aco_co_ref(h);
    pthread_mutex_lock(&l->lock);
    if (l->nwaiters == l->waiters_cap) {
      size_t cap = l->waiters_cap ? l->waiters_cap * 2 : 4;
      eventer_aco_co_t **w = realloc(l->waiters, cap * sizeof(*w));
      if (!w) {
        pthread_mutex_unlock(&l->lock);
        eventer_aco_co_release(h);
        errno = ENOMEM;
        return -1;
      }
      l->waiters = w;
      l->waiters_cap = cap;
    }
    l->waiters[l->nwaiters++] = h;
    pthread_mutex_unlock(&l->lock);
    int rv = 0;
    while (__atomic_load_n(&l->state, __ATOMIC_ACQUIRE) != EV_LS_STOPPED) {
      struct timeval left, *lp = NULL;
      if (deadline) {
        uint64_t now = eventer_mono_ns();
        if (now >= deadline) {
          errno = ETIMEDOUT;
          rv = -1;
          break;
        }
        left.tv_sec = (time_t)((deadline - now) / 1000000000u);
        left.tv_usec = (suseconds_t)((deadline - now) % 1000000000u / 1000u);
        lp = &left;
      }
      if (eventer_aco_park(lp) != 0 && errno != ETIMEDOUT) {
        rv = -1; /* cancelled */
        break;
      }
    }
    int e = errno;
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->nwaiters; i++)
      if (l->waiters[i] == h) {
        l->waiters[i] = l->waiters[--l->nwaiters];
        break;
      }
    pthread_mutex_unlock(&l->lock);
    eventer_aco_co_release(h);
    errno = e;
    return rv;
  }
  if (eventer_in_loop()) {
    errno = EDEADLK; /* blocking here would stall the loop that must run */
    return -1;
  }
  struct timespec ts;
  if (deadline) {
    ts.tv_sec = (time_t)(deadline / 1000000000u);
    ts.tv_nsec = (long)(deadline % 1000000000u);
  }
  int rc = 0;
  pthread_mutex_lock(&l->lock);
  while (l->state != EV_LS_STOPPED && rc != ETIMEDOUT)
    rc = deadline ? pthread_cond_timedwait(&l->cond, &l->lock, &ts)
                  : pthread_cond_wait(&l->cond, &l->lock);
  int stopped = l->state == EV_LS_STOPPED;
  pthread_mutex_unlock(&l->lock);
  if (stopped) return 0;
  errno = ETIMEDOUT;
  return -1;
}

int mtev_listener_shutdown(const struct timeval *grace,
                           const struct timeval *timeout) {
  pthread_mutex_lock(&ev_l_glock);
  size_t n = 0;
  for (mtev_listener_t *l = ev_l_all; l; l = l->next) n++;
  mtev_listener_t **snap = n ? calloc(n, sizeof(*snap)) : NULL;
  size_t k = 0;
  for (mtev_listener_t *l = ev_l_all; snap && l; l = l->next) {
    mtev_listener_ref(l);
    snap[k++] = l;
  }
  pthread_mutex_unlock(&ev_l_glock);
  /* a listener still only bound belongs to a start in progress: left alone */
  for (size_t i = 0; i < k; i++)
    if (__atomic_load_n(&snap[i]->state, __ATOMIC_ACQUIRE) != EV_LS_BOUND)
      mtev_listener_stop(snap[i], grace);
  int rv = 0, err = 0;
  for (size_t i = 0; i < k; i++) {
    if (__atomic_load_n(&snap[i]->state, __ATOMIC_ACQUIRE) != EV_LS_BOUND &&
        mtev_listener_wait(snap[i], timeout) != 0) {
      rv = -1;
      err = errno;
    }
    mtev_listener_release(snap[i]);
  }
  free(snap);
  if (rv) errno = err;
  return rv;
}

/* ---- queries ------------------------------------------------------------------------------ */

int mtev_listener_get_stats(mtev_listener_t *l, mtev_listener_stats_t *out) {
  if (!l || !out) {
    errno = EINVAL;
    return -1;
  }
  out->accepted = __atomic_load_n(&l->accepted, __ATOMIC_RELAXED);
  int64_t a = __atomic_load_n(&l->active, __ATOMIC_RELAXED);
  out->active = a > 0 ? (uint64_t)a : 0;
  out->refused = __atomic_load_n(&l->refused, __ATOMIC_RELAXED);
  out->accept_errors = __atomic_load_n(&l->accept_errors, __ATOMIC_RELAXED);
  return 0;
}

int mtev_listener_get_address(mtev_listener_t *l, struct sockaddr *sa,
                              socklen_t *len) {
  if (!l || !sa || !len) {
    errno = EINVAL;
    return -1;
  }
  socklen_t n = *len < l->addrlen ? *len : l->addrlen;
  memcpy(sa, &l->addr, n);
  *len = l->addrlen;
  return 0;
}

int mtev_listener_get_port(mtev_listener_t *l) {
  if (!l) return -1;
  if (l->family == AF_INET) return ntohs(((struct sockaddr_in *)&l->addr)->sin_port);
  if (l->family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&l->addr)->sin6_port);
  return 0;
}

const char *mtev_listener_get_name(mtev_listener_t *l) { return l ? l->name : ""; }
const char *mtev_listener_get_type(mtev_listener_t *l) { return l ? l->type : ""; }

int mtev_listener_get_opts(mtev_listener_t *l, mtev_listener_opts_t *o) {
  if (!l || !o) {
    errno = EINVAL;
    return -1;
  }
  memset(o, 0, sizeof(*o));
  o->address = l->name;
  o->port = mtev_listener_get_port(l);
  o->backlog = l->backlog;
  o->type = l->type;
  o->aco_function = l->aco;
  o->callback = l->kind == EV_LK_CLASSIC ? l->callback : NULL;
  o->dispatch = l->dispatch;
  o->dispatch_closure = l->dispatch_closure;
  o->service_ctx = l->service_ctx;
  o->fanout = l->fanout;
  o->fanout_pool = eventer_pool_name(l->pool);
  o->accept_in_loop = l->accept_thread ? mtev_false : mtev_true;
  o->reuseport = l->reuseport;
  o->max_connections = l->max_connections;
  o->config = &l->config;
  o->ssl = l->tls ? mtev_true : mtev_false;
  o->sslconfig = l->tls ? &l->sslconfig : NULL;
  return 0;
}

int64_t mtev_acceptor_closures_live(void) {
  return __atomic_load_n(&ev_l_live, __ATOMIC_RELAXED);
}

/* ---- the acceptor closure ------------------------------------------------------------------ */

struct sockaddr *mtev_acceptor_closure_remote(mtev_acceptor_closure_t *ac) {
  return ac ? &ac->remote.sa : NULL;
}
const char *mtev_acceptor_closure_remote_cn(mtev_acceptor_closure_t *ac) {
  return ac ? ac->remote_cn : NULL;
}
void *mtev_acceptor_closure_ctx(mtev_acceptor_closure_t *ac) {
  return ac ? ac->ctx : NULL;
}
void mtev_acceptor_closure_set_ctx(mtev_acceptor_closure_t *ac, void *ctx,
                                   void (*freefunc)(void *)) {
  if (!ac) return;
  ac->ctx = ctx;
  ac->ctx_free = freefunc;
}
void (*mtev_acceptor_closure_ctx_free_func(mtev_acceptor_closure_t *ac))(void *) {
  return ac ? ac->ctx_free : NULL;
}
void mtev_acceptor_closure_ctx_free(mtev_acceptor_closure_t *ac) {
  if (!ac) return;
  if (ac->ctx_free) ac->ctx_free(ac->ctx);
  ac->ctx_free = NULL;
  ac->ctx = NULL;
}
mtev_hash_table *mtev_acceptor_closure_config(mtev_acceptor_closure_t *ac) {
  return ac ? &ac->l->config : NULL;
}
eventer_func_t mtev_acceptor_closure_dispatch(mtev_acceptor_closure_t *ac) {
  return ac && ac->l->kind == EV_LK_CLASSIC ? ac->l->callback : NULL;
}
uint32_t mtev_acceptor_closure_cmd(mtev_acceptor_closure_t *ac) {
  return ac ? ac->cmd : 0;
}
void mtev_acceptor_closure_set_cmd(mtev_acceptor_closure_t *ac, uint32_t cmd) {
  if (ac) ac->cmd = cmd;
}
static void ev_l_mark(mtev_acceptor_closure_t *ac, struct timeval *now) {
  if (!ac) return;
  ac->last_us = now ? (uint64_t)now->tv_sec * 1000000u + (uint64_t)now->tv_usec
                    : ev_l_wall_us();
}
void mtev_acceptor_closure_mark_read(mtev_acceptor_closure_t *ac,
                                     struct timeval *now) {
  ev_l_mark(ac, now);
}
void mtev_acceptor_closure_mark_write(mtev_acceptor_closure_t *ac,
                                      struct timeval *now) {
  ev_l_mark(ac, now);
}
void mtev_acceptor_closure_readwrite_age(mtev_acceptor_closure_t *ac,
                                         struct timeval *now,
                                         struct timeval *diff) {
  if (!ac || !diff) return;
  uint64_t n = now ? (uint64_t)now->tv_sec * 1000000u + (uint64_t)now->tv_usec
                   : ev_l_wall_us();
  uint64_t age = n > ac->last_us ? n - ac->last_us : 0;
  diff->tv_sec = (time_t)(age / 1000000u);
  diff->tv_usec = (suseconds_t)(age % 1000000u);
}
mtev_boolean mtev_acceptor_closure_raw_io(mtev_acceptor_closure_t *ac, eventer_t e) {
  if (!ac || !e || eventer_get_fd_opset(e) != &ev_l_opset_s ||
      eventer_get_fd(e) != ac->fd)
    return mtev_false;
  /* what the opset adds to the socket calls: EPIPE after EOF without
   * half_close, activity marks with an idle_timeout */
  return (ac->flags & (EV_AC_F_HALF_CLOSE | EV_AC_F_IDLE)) == EV_AC_F_HALF_CLOSE
             ? mtev_true
             : mtev_false;
}
mtev_listener_t *mtev_acceptor_closure_listener(mtev_acceptor_closure_t *ac) {
  return ac ? ac->l : NULL;
}

int mtev_convert_sockaddr_to_buff(char *buff, int blen, struct sockaddr *remote) {
  char name[128] = "";
  if (!buff || blen <= 0) return 0;
  buff[0] = 0;
  if (!remote) return 0;
  switch (remote->sa_family) {
  case AF_INET:
    inet_ntop(AF_INET, &((struct sockaddr_in *)remote)->sin_addr, name, sizeof(name));
    break;
  case AF_INET6:
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)remote)->sin6_addr, name, sizeof(name));
    break;
  case AF_UNIX:
    snprintf(name, sizeof(name), "%s", ((struct sockaddr_un *)remote)->sun_path);
    break;
  default:
    return 0;
  }
  snprintf(buff, (size_t)blen, "%s", name);
  return (int)strlen(buff);
}
