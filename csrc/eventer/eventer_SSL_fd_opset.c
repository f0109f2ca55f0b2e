/*
 * eventer_SSL_fd_opset.c - the TLS opset (OpenSSL 3): contexts and their
 * SSL_CTX cache, the opset, handshakes for callbacks and coroutines, ALPN,
 * SNI, certificate verification and what it learnt.  The contract is in
 * eventer_SSL_fd_opset.h.
 *
 * Layout of the state:
 *   ev_ssl_cnode_t     one OpenSSL SSL_CTX per distinct settings, shared by
 *                      every connection made with them (refcounted, on a
 *                      short list under a mutex: a process has a handful)
 *   eventer_ssl_ctx_t  one connection: its SSL, what the handshake learnt,
 *                      its ALPN and SNI choices; reachable from the SSL
 *                      (ex_data) for OpenSSL's callbacks and from the event
 *                      (e->tls) for the opset, which a coroutine layer may
 *                      wrap without hiding it
 * The SSL talks to the fd through our own BIO (send/recv with
 * MSG_NOSIGNAL), not OpenSSL's socket BIO (write(2): SIGPIPE).
 */
#include "eventer_SSL_fd_opset.h"

#include "eventer_impl.h"
#include "eventer_x25519.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* How often a cached SSL_CTX's files are checked for changes, seconds
 * (libmtev's ssl_ctx_cache_finfo_expiry, default 5). */
static int ev_ssl_finfo_check_s = 5; /* __atomic */
/* The session id context every server SSL_CTX shares (session caching
 * needs one once client certificates are verified). */
#define EV_SSL_SID_CTX "eventer_ssl"
/* OpenSSL's read buffer (read ahead) once a connection has read a full
 * record: four records of the largest size, so that one recv brings
 * several, which one read call of ours hands out together.  Not from the
 * start: a connection that exchanges small messages keeps OpenSSL's one
 * record's worth (malloc hands 64 KiB chunks back to the system when the
 * heap's top frees, a brk per handshake); RELEASE_BUFFERS frees either
 * when it empties. */
#define EV_SSL_READ_BUF                                                     \
  (4 * (SSL3_RT_HEADER_LENGTH + SSL3_RT_MAX_PLAIN_LENGTH +                 \
        SSL3_RT_MAX_ENCRYPTED_OVERHEAD))
/* A connection's read buffer: SMALL, OpenSSL's default (one record);
 * ASKED, EV_SSL_READ_BUF asked for, which OpenSSL applies when it next
 * allocates the buffer (one kept through ssl_keep_buffers is freed for
 * it as soon as it empties); BIG, EV_SSL_READ_BUF from then on. */
enum { EV_SSL_RBUF_SMALL = 0, EV_SSL_RBUF_ASKED, EV_SSL_RBUF_BIG };
/* Servers' default ALPN list (libmtev's), wire format. */
static const unsigned char ev_ssl_default_alpn[] = "\x02h2\x08http/1.1";

/* ---- the SSL_CTX cache ------------------------------------------------------ */

enum { EV_SSL_F_CERT = 0, EV_SSL_F_KEY, EV_SSL_F_CA, EV_SSL_F_CRL, EV_SSL_NFILES };

/* A context's settings (eventer_ssl_ctx_new's arguments, the _ex table's
 * keys); all of them make the cache key. */
enum { EV_SSL_S_LAYER = 0, EV_SSL_S_CERT, EV_SSL_S_KEY, EV_SSL_S_CA,
       EV_SSL_S_CIPHERS, EV_SSL_S_CRL, EV_SSL_S_ALPN, EV_SSL_NSETTINGS };

typedef struct {
  int present; /* stat succeeded */
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
} ev_ssl_finfo_t;

typedef struct ev_ssl_cnode {
  struct ev_ssl_cnode *next;     /* cache list (under ev_ssl_cache_lock) */
  uint64_t hash;                 /* ev_ssl_cache_hash of the key */
  int type;                      /* the key: orientation and settings */
  char *set[EV_SSL_NSETTINGS];
  SSL_CTX *ssl_ctx;
  int refcnt;                    /* __atomic: the cache's + each context's */
  time_t created;
  time_t checked;                /* files last stat'ed (under the lock) */
  char *paths[EV_SSL_NFILES];    /* file settings (not PEM text), or NULL */
  ev_ssl_finfo_t finfo[EV_SSL_NFILES];
  int has_alpn;                  /* the settings had an alpn list */
  unsigned char *alpn;           /* server: that list (wire format), which
                                  * needs no registration */
  size_t alpn_len;
} ev_ssl_cnode_t;

static pthread_mutex_t ev_ssl_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static ev_ssl_cnode_t *ev_ssl_cache;
static int ev_ssl_cache_expiry; /* __atomic; seconds, 0: files only */

/* ---- ALPN registrations ---------------------------------------------------- */

typedef struct ev_ssl_alpn {
  struct ev_ssl_alpn *next;
  eventer_SSL_alpn_func_t f; /* NULL: select the name itself */
  size_t len;
  char name[];
} ev_ssl_alpn_t;

static pthread_mutex_t ev_ssl_alpn_lock = PTHREAD_MUTEX_INITIALIZER;
static ev_ssl_alpn_t *ev_ssl_alpn_global;

/* ---- a connection ------------------------------------------------------------ */

/* OpenSSL's buffers between records.  With SSL_MODE_RELEASE_BUFFERS a
 * connection gives its read and write buffers (16.7 KiB each, more once
 * it streams) back to malloc whenever they empty, so an idle connection
 * holds none; a connection that exchanges small messages then pays a
 * malloc and a free of each buffer per message (~1,900 instructions of a
 * 64-byte echo's round trip, 10% of the loop thread's, callgrind).  So
 * the first ev_ssl_keep_max connections to finish their handshake keep
 * their buffers until they close (at most that many times 34 KiB, more
 * for ones that stream); the others, and all connections with
 * ssl_keep_buffers 0, give them back as before. */
static int ev_ssl_keep_max = 256; /* __atomic; eventer_ssl_config */

/* Our SSL_CTXs generate their X25519 key shares with our own fixed-base
 * comb (eventer_x25519.c, offered by our provider, eventer_x25519_prov.c)
 * unless eventer_ssl_config("ssl_own_x25519", "off"): a public key in
 * about half the time of OpenSSL 3.0's portable code (bench/README.md,
 * "## TLS", "Fifth pass").  A part of the SSL_CTX cache's key. */
static int ev_ssl_own_x25519 = 1; /* __atomic */
/* And their TLS 1.3 key schedule with the same provider's TLS13-KDF
 * (eventer_kdf_prov.c: the digests fetched once, HMAC of our own)
 * unless eventer_ssl_config("ssl_own_kdf", "off").  Also part of the
 * SSL_CTX cache's key. */
static int ev_ssl_own_kdf = 1; /* __atomic */
static int ev_ssl_kept;           /* __atomic; connections keeping them */

/* The most a held session ticket record may take (a stateful ticket's
 * record is 79 bytes, a stateless one's about 250). */
#define EV_SSL_HELD_MAX 512

struct eventer_ssl_ctx_t {
  ev_ssl_cnode_t *cn;
  SSL *ssl;
  eventer_t e;                    /* the event it is attached to, or NULL */
  eventer_ssl_orientation_t type;
  eventer_ssl_verify_func_t verify_cb;
  void *verify_closure;
  eventer_ssl_sni_func_t sni_cb;
  void *sni_closure;
  ev_ssl_alpn_t *alpn_funcs;      /* this context's registrations */
  unsigned char *alpn;            /* server: the selectable list (wire) */
  size_t alpn_len;
  const unsigned char *alpn_default; /* ev_ssl_default_alpn or NULL */
  uint8_t alpn_set;               /* eventer_ssl_alpn_advertise set alpn */
  char *issuer, *subject, *san_list, *cert_error, *last_error, *sni_name;
  STACK_OF(X509) *chain;          /* built on first request */
  struct sockaddr_storage peer;   /* read at attach: a reset peer has no
                                   * name any more when its failure is
                                   * logged */
  socklen_t peer_len;             /* 0: unknown */
  uint8_t chain_built;
  uint8_t done;                   /* handshake finished and checked */
  uint8_t failed;                 /* a fatal error happened: EIO from now */
  uint8_t logged;                 /* its one log line was written */
  uint8_t big_rbuf;               /* EV_SSL_RBUF_*: the read buffer's size */
  uint8_t kept;                   /* keeps its buffers: one of ev_ssl_kept */
  uint8_t answer_due;             /* a handshake flight was sent and nothing
                                   * read since (ev_bio_read) */
  uint32_t skipped_reads;         /* reads answered without the socket */
  int fd;                         /* the BIO's (the event's) fd */
  uint16_t held_len;              /* bytes in held */
  /* a server's TLS 1.3 session ticket, written by OpenSSL as the
   * handshake ends, kept to go out with the next write (see ev_bio_write) */
  unsigned char held[EV_SSL_HELD_MAX];
};

enum { EV_SSL_OP_READ, EV_SSL_OP_WRITE, EV_SSL_OP_ACCEPT, EV_SSL_OP_CONNECT };
static const char *const ev_ssl_op_name[] = {"read", "write", "accept",
                                             "connect"};
static const char *const ev_ssl_op_dir[] = {"from", "to", "from", "to"};

static int ev_ssl_ex_idx = -1;
static BIO_METHOD *ev_ssl_bio_method;
static pthread_once_t ev_ssl_once = PTHREAD_ONCE_INIT;
static pthread_once_t ev_ssl_hook_once = PTHREAD_ONCE_INIT;

static eventer_ssl_ctx_t *ev_ssl_of(const SSL *ssl) {
  return ssl ? SSL_get_ex_data(ssl, ev_ssl_ex_idx) : NULL;
}

/* Empties the thread's OpenSSL error queue before an I/O call (which
 * SSL_get_error needs) and after one.  ERR_clear_error resets all of the
 * queue's 16 slots whether or not any holds an error: ~840 instructions,
 * three times a 64-byte echo's round trip (12% of the loop thread's
 * instructions per round trip); a look at the queue costs a fraction of
 * that, and the queue is nearly always empty. */
static inline void ev_ssl_err_reset(void) {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

/* ---- our BIO: the fd, with send/recv (no SIGPIPE) ----------------------------- */

/* The BIO's data is the connection's context (NULL until attached). */
static eventer_ssl_ctx_t *ev_bio_ctx(BIO *b) { return BIO_get_data(b); }
static int ev_bio_fd(BIO *b) {
  eventer_ssl_ctx_t *ctx = ev_bio_ctx(b);
  return ctx ? ctx->fd : -1;
}

/* Set by a write call while the record being sent is not its last: the
 * kernel then queues it (MSG_MORE) and sends it in one segment with the
 * records that follow, up to the last one, sent without the flag, which
 * pushes them all.  One thread's BIO writes happen inside its own
 * SSL_write_ex, so a thread-local flag is the write call's. */
static __thread int ev_bio_more;

/* Sends the held ticket alone: 0 once it is out, -1 (errno) if not all. */
static int ev_bio_flush_held(eventer_ssl_ctx_t *ctx) {
  while (ctx->held_len) {
    ssize_t r = send(ctx->fd, ctx->held, ctx->held_len, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    memmove(ctx->held, ctx->held + r, ctx->held_len - (size_t)r);
    ctx->held_len = (uint16_t)(ctx->held_len - (size_t)r);
  }
  return 0;
}

/* A TLS 1.3 server's session ticket is written by OpenSSL on its own once
 * the client's Finished is in: a send (and, for the client, a wake-up) of
 * its own.  It is held instead and goes out in one sendmsg with the next
 * record written (the application's first data, or close_notify), or
 * alone when a read would wait (ev_bio_read), so a client never waits for
 * it.  Every write goes through here, so the order of the bytes is kept. */
static int ev_bio_write(BIO *b, const char *buf, int len) {
  eventer_ssl_ctx_t *ctx = ev_bio_ctx(b);
  ssize_t r;
  BIO_clear_retry_flags(b);
  if (!ctx) {
    errno = EBADF;
    return -1;
  }
  if (ctx->type == SSL_SERVER && !ctx->done && ctx->held_len == 0 &&
      len > 0 && len <= EV_SSL_HELD_MAX &&
      SSL_get_state(ctx->ssl) == TLS_ST_SW_SESSION_TICKET) {
    memcpy(ctx->held, buf, (size_t)len);
    ctx->held_len = (uint16_t)len;
    return len;
  }
  int flags = MSG_NOSIGNAL | (ev_bio_more ? MSG_MORE : 0);
  if (ctx->held_len) {
    struct iovec iov[2] = {{ctx->held, ctx->held_len},
                           {(void *)buf, (size_t)len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    do {
      r = sendmsg(ctx->fd, &mh, flags);
    } while (r < 0 && errno == EINTR);
    if (r >= 0) {
      size_t h = ctx->held_len;
      if ((size_t)r < h) { /* part of the ticket: the rest first, later */
        memmove(ctx->held, ctx->held + r, h - (size_t)r);
        ctx->held_len = (uint16_t)(h - (size_t)r);
        r = 0;
      } else {
        ctx->held_len = 0;
        r -= (ssize_t)h;
      }
      if (r > 0) return (int)r;
      /* none of buf went: as a full socket (the retry finds it writable) */
      errno = EAGAIN;
      r = -1;
    }
  } else {
    do {
      r = send(ctx->fd, buf, (size_t)len, flags);
    } while (r < 0 && errno == EINTR);
  }
  if (r > 0 && !ctx->done) ctx->answer_due = 1;
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(b);
  return (int)r;
}

/* During the handshake, the first read after a flight went out does not
 * try the socket: the peer has to receive that flight and compute its
 * answer (a key exchange, at least), so the recv would find nothing (one
 * recv failing with EAGAIN a handshake, on each side).  It reports a
 * would-block at once; every caller then waits for the fd to be readable
 * (level-triggered: an answer already there wakes it at once) and calls
 * again, and that read tries the socket.  Only the handshake: afterwards
 * a peer may well have sent before we read.  Only on a loop thread, whose
 * fds are non-blocking. */
static int ev_bio_read(BIO *b, char *buf, int len) {
  ssize_t r;
  BIO_clear_retry_flags(b);
  eventer_ssl_ctx_t *actx = ev_bio_ctx(b);
  if (actx && actx->answer_due) {
    actx->answer_due = 0;
    /* (on a loop thread only: a thread of its own may hold the fd
     * blocking, eventer_run_in_thread does, and its callers expect the
     * read to wait in the socket, not an EAGAIN they did not ask for) */
    if (!actx->done && ev_loop_self()) {
      actx->skipped_reads++;
      r = -1;
      errno = EAGAIN;
      goto would_block;
    }
  }
  do {
    r = recv(ev_bio_fd(b), buf, (size_t)len, 0);
  } while (r < 0 && errno == EINTR);
  if (r == 0) BIO_set_flags(b, BIO_FLAGS_IN_EOF); /* OpenSSL asks BIO_eof */
would_block:
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    /* about to wait for the peer: a held ticket goes now (a full socket,
     * unlikely this early, keeps it for the next write or read) */
    eventer_ssl_ctx_t *ctx = ev_bio_ctx(b);
    if (ctx && ctx->held_len) {
      int saved = errno;
      (void)ev_bio_flush_held(ctx);
      errno = saved;
    }
    BIO_set_retry_read(b);
  }
  return (int)r;
}

static int ev_bio_puts(BIO *b, const char *s) {
  return ev_bio_write(b, s, (int)strlen(s));
}

static long ev_bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num;
  switch (cmd) {
  case BIO_CTRL_FLUSH:
  case BIO_CTRL_DUP:
    return 1;
  case BIO_CTRL_EOF:
    return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
  case BIO_CTRL_WPENDING: {
    eventer_ssl_ctx_t *ctx = ev_bio_ctx(b);
    return ctx ? ctx->held_len : 0;
  }
  case BIO_C_GET_FD:
    if (ptr) *(int *)ptr = ev_bio_fd(b);
    return ev_bio_fd(b);
  case BIO_CTRL_GET_CLOSE:
    return BIO_NOCLOSE; /* the fd belongs to the event */
  case BIO_CTRL_SET_CLOSE:
    return 1;
  default:
    return 0;
  }
}

static int ev_bio_create(BIO *b) {
  BIO_set_data(b, NULL);
  BIO_set_init(b, 0);
  return 1;
}

/* ---- initialization ------------------------------------------------------------ */

static void ev_ssl_init_once(void) {
  OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS |
                       OPENSSL_INIT_LOAD_CRYPTO_STRINGS,
                   NULL);
  ev_ssl_ex_idx = SSL_get_ex_new_index(0, (void *)"eventer_ssl_ctx", NULL,
                                       NULL, NULL);
  EV_ASSERT(ev_ssl_ex_idx >= 0, "OpenSSL gives the TLS layer an ex_data slot");
  ev_ssl_bio_method = BIO_meth_new(
      BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
      "eventer fd");
  EV_ASSERT(ev_ssl_bio_method != NULL, "the TLS layer's BIO method exists");
  BIO_meth_set_write(ev_ssl_bio_method, ev_bio_write);
  BIO_meth_set_read(ev_ssl_bio_method, ev_bio_read);
  BIO_meth_set_puts(ev_ssl_bio_method, ev_bio_puts);
  BIO_meth_set_ctrl(ev_ssl_bio_method, ev_bio_ctrl);
  BIO_meth_set_create(ev_ssl_bio_method, ev_bio_create);
}

void eventer_ssl_init(void) { pthread_once(&ev_ssl_once, ev_ssl_init_once); }

/* ---- small helpers --------------------------------------------------------------- */

static char *ev_strdup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void ev_set_str(char **slot, const char *v) {
  free(*slot);
  *slot = ev_strdup_or_null(v);
}

/* PEM text carries newlines; a path does not (libmtev's rule). */
static int ev_ssl_is_pem(const char *s) { return s && strchr(s, '\n') != NULL; }

/* The peer for log lines: "1.2.3.4:5", "[::1]:5", "unix:/path". */
static void ev_ssl_peer_name(const struct sockaddr_storage *ss, socklen_t sl,
                             char *buf, size_t len) {
  char host[INET6_ADDRSTRLEN];
  if (sl == 0) {
    snprintf(buf, len, "unknown peer");
    return;
  }
  switch (ss->ss_family) {
  case AF_INET: {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
    break;
  }
  case AF_INET6: {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
    break;
  }
  case AF_UNIX: {
    const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
    if (sl > offsetof(struct sockaddr_un, sun_path) && un->sun_path[0])
      snprintf(buf, len, "unix:%.*s",
               (int)(sl - offsetof(struct sockaddr_un, sun_path)), un->sun_path);
    else
      snprintf(buf, len, "unix:(unnamed)");
    break;
  }
  default:
    snprintf(buf, len, "peer of family %d", ss->ss_family);
  }
}

/* OpenSSL's first queued error as text (and the queue emptied), or "". */
static void ev_ssl_err_text(char *buf, size_t len, unsigned long *first) {
  unsigned long code = ERR_get_error(), more;
  buf[0] = 0;
  if (first) *first = code;
  if (code) ERR_error_string_n(code, buf, len);
  while ((more = ERR_get_error()) != 0) {
  }
}

/* ---- the SSL_CTX cache ------------------------------------------------------------ */

static void ev_ssl_finfo(ev_ssl_finfo_t *f, const char *path) {
  struct stat sb;
  memset(f, 0, sizeof(*f));
  if (!path || stat(path, &sb) != 0) return;
  f->present = 1;
  f->dev = sb.st_dev;
  f->ino = sb.st_ino;
  f->size = sb.st_size;
  f->mtime = sb.st_mtim;
}

static int ev_ssl_finfo_changed(const ev_ssl_finfo_t *f, const char *path) {
  ev_ssl_finfo_t now;
  ev_ssl_finfo(&now, path);
  return now.present != f->present || now.dev != f->dev || now.ino != f->ino ||
         now.size != f->size || now.mtime.tv_sec != f->mtime.tv_sec ||
         now.mtime.tv_nsec != f->mtime.tv_nsec;
}

static void ev_ssl_cnode_release(ev_ssl_cnode_t *n) {
  if (!n) return;
  int left = __atomic_sub_fetch(&n->refcnt, 1, __ATOMIC_ACQ_REL);
  EV_ASSERT(left >= 0, "a cached SSL_CTX is released once per reference");
  if (left > 0) return;
  SSL_CTX_free(n->ssl_ctx);
  for (int i = 0; i < EV_SSL_NFILES; i++) free(n->paths[i]);
  for (int i = 0; i < EV_SSL_NSETTINGS; i++) free(n->set[i]);
  free(n->alpn);
  free(n);
}

/* FNV-1a over the orientation and the settings (presence and length
 * first, so ("ab", NULL) != ("a", "b")): a cheap first look; a match is
 * then checked setting by setting.  It runs for every connection (a
 * digest through OpenSSL 3's EVP costs ~25,000 instructions). */
static uint64_t ev_ssl_fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

static uint64_t ev_ssl_cache_hash(int type,
                                  const char *const s[EV_SSL_NSETTINGS]) {
  unsigned char t = (unsigned char)type;
  uint64_t h = ev_ssl_fnv(0xcbf29ce484222325ull, &t, 1);
  for (int i = 0; i < EV_SSL_NSETTINGS; i++) {
    size_t l = s[i] ? strlen(s[i]) : SIZE_MAX;
    h = ev_ssl_fnv(h, &l, sizeof(l));
    if (s[i]) h = ev_ssl_fnv(h, s[i], l);
  }
  return h;
}

static int ev_ssl_cnode_is(const ev_ssl_cnode_t *n, uint64_t hash, int type,
                           const char *const s[EV_SSL_NSETTINGS]) {
  if (n->hash != hash || n->type != type) return 0;
  for (int i = 0; i < EV_SSL_NSETTINGS; i++)
    if ((n->set[i] == NULL) != (s[i] == NULL) ||
        (s[i] && strcmp(n->set[i], s[i]) != 0))
      return 0;
  return 1;
}

/* An error while building: errno value and a reason for the log. */
typedef struct {
  int err;
  char why[320];
} ev_ssl_why_t;

static int ev_ssl_fail_why(ev_ssl_why_t *w, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int ev_ssl_fail_why(ev_ssl_why_t *w, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(w->why, sizeof(w->why), fmt, ap);
  va_end(ap);
  char ossl[200];
  ev_ssl_err_text(ossl, sizeof(ossl), NULL);
  if (ossl[0] && n >= 0 && (size_t)n < sizeof(w->why))
    snprintf(w->why + n, sizeof(w->why) - (size_t)n, ": %s", ossl);
  w->err = err;
  return -1;
}

/* A file setting must be readable: ENOENT/EACCES say which and why. */
static int ev_ssl_check_file(ev_ssl_why_t *w, const char *what,
                             const char *path) {
  if (access(path, R_OK) == 0) return 0;
  int err = errno;
  return ev_ssl_fail_why(w, err, "cannot read %s %s (%s)", what, path,
                         strerror(err));
}

/* Parses libmtev's layer string into versions and options. */
static int ev_ssl_parse_layer(const char *layer, int *minv, int *maxv,
                              uint64_t *set_ops, uint64_t *clear_ops,
                              ev_ssl_why_t *w) {
  char buf[256];
  *minv = TLS1_2_VERSION;
  *maxv = 0;
  *set_ops = SSL_OP_ALL;
  *clear_ops = 0;
  if (!layer) return 0;
  if (strlen(layer) >= sizeof(buf))
    return ev_ssl_fail_why(w, EINVAL, "layer \"%.40s...\" is too long", layer);
  strcpy(buf, layer);
  char *opts = strchr(buf, ':');
  if (opts) *opts++ = '\0';
  static const struct {
    const char *name;
    int version;
    uint64_t no_op;
  } vers[] = {
      {"tlsv1", TLS1_VERSION, SSL_OP_NO_TLSv1},
      {"tlsv1.1", TLS1_1_VERSION, SSL_OP_NO_TLSv1_1},
      {"tlsv1.2", TLS1_2_VERSION, SSL_OP_NO_TLSv1_2},
      {"tlsv1.3", TLS1_3_VERSION, SSL_OP_NO_TLSv1_3},
  };
  const size_t nvers = sizeof(vers) / sizeof(vers[0]);
  if (buf[0] == '\0' || !strcasecmp(buf, "all") || !strcasecmp(buf, "sslv23") ||
      !strcasecmp(buf, "tls")) {
    /* the best both sides have */
  } else {
    size_t i;
    for (i = 0; i < nvers; i++)
      if (!strcasecmp(buf, vers[i].name)) break;
    if (i == nvers)
      return ev_ssl_fail_why(w, EINVAL,
                             "unknown TLS layer \"%s\" (tlsv1.2, tlsv1.3, ...)",
                             buf);
    *minv = *maxv = vers[i].version;
  }
  if (!opts) return 0;
  *set_ops = 0;
  char *brkt = NULL;
  for (char *part = strtok_r(opts, ",", &brkt); part;
       part = strtok_r(NULL, ",", &brkt)) {
    int neg = part[0] == '!';
    const char *name = part + neg;
    uint64_t bit = 0;
    int is_version = 0;
    if (!strcasecmp(name, "all")) {
      bit = SSL_OP_ALL;
    } else if (!strcasecmp(name, "cipher_server_preference")) {
      bit = SSL_OP_CIPHER_SERVER_PREFERENCE;
    } else if (!strcasecmp(name, "sslv2") || !strcasecmp(name, "sslv3")) {
      continue; /* OpenSSL 3 has neither: "!sslv3" is always true */
    } else {
      for (size_t i = 0; i < nvers; i++)
        if (!strcasecmp(name, vers[i].name)) {
          bit = vers[i].no_op;
          is_version = 1;
        }
      if (!bit)
        return ev_ssl_fail_why(w, EINVAL, "unknown TLS layer option \"%s\"",
                               part);
    }
    /* "!tlsv1.2" sets SSL_OP_NO_TLSv1_2; "!all" clears SSL_OP_ALL */
    int set = is_version ? neg : !neg;
    if (set) {
      *set_ops |= bit;
      *clear_ops &= ~bit;
    } else {
      *clear_ops |= bit;
      *set_ops &= ~bit;
    }
  }
  return 0;
}

/* Splits a cipher setting: TLS 1.3 suites ("TLS_...") and the rest. */
static int ev_ssl_set_ciphers(SSL_CTX *sc, const char *ciphers,
                              ev_ssl_why_t *w) {
  size_t n = strlen(ciphers) + 1;
  char *copy = strdup(ciphers), *legacy = calloc(1, n), *v13 = calloc(1, n);
  int rv = 0;
  if (!copy || !legacy || !v13) {
    rv = ev_ssl_fail_why(w, ENOMEM, "out of memory");
    goto out;
  }
  char *brkt = NULL;
  for (char *p = strtok_r(copy, ":, ", &brkt); p; p = strtok_r(NULL, ":, ", &brkt)) {
    char *dst = strncmp(p, "TLS_", 4) == 0 ? v13 : legacy;
    if (dst[0]) strcat(dst, ":");
    strcat(dst, p);
  }
  if (legacy[0] && SSL_CTX_set_cipher_list(sc, legacy) != 1) {
    rv = ev_ssl_fail_why(w, EINVAL, "no cipher matches \"%s\"", legacy);
    goto out;
  }
  if (v13[0]) {
    /* OpenSSL skips unknown suite names: refuse a list that kept none */
    int n13 = 0;
    if (SSL_CTX_set_ciphersuites(sc, v13) == 1) {
      STACK_OF(SSL_CIPHER) *all = SSL_CTX_get_ciphers(sc);
      for (int i = 0; all && i < sk_SSL_CIPHER_num(all); i++)
        if (!strcmp(SSL_CIPHER_get_version(sk_SSL_CIPHER_value(all, i)),
                    "TLSv1.3"))
          n13++;
    }
    if (n13 == 0)
      rv = ev_ssl_fail_why(w, EINVAL, "no TLS 1.3 suite matches \"%s\"", v13);
  }
out:
  free(copy);
  free(legacy);
  free(v13);
  return rv;
}

static int ev_ssl_verify_cb(int ok, X509_STORE_CTX *x509ctx);
static int ev_ssl_servername_cb(SSL *ssl, int *ad, void *arg);
static int ev_ssl_alpn_select_cb(SSL *ssl, const unsigned char **out,
                                 unsigned char *outlen, const unsigned char *in,
                                 unsigned int inlen, void *arg);

static int ev_ssl_load_cert(SSL_CTX *sc, const char *cert, ev_ssl_why_t *w) {
  if (!ev_ssl_is_pem(cert)) {
    if (ev_ssl_check_file(w, "certificate file", cert) != 0) return -1;
    if (SSL_CTX_use_certificate_chain_file(sc, cert) != 1)
      return ev_ssl_fail_why(w, EIO, "cannot load certificate chain %s", cert);
    return 0;
  }
  BIO *bio = BIO_new_mem_buf(cert, -1);
  if (!bio) return ev_ssl_fail_why(w, ENOMEM, "out of memory");
  X509 *x = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
  if (!x || SSL_CTX_use_certificate(sc, x) != 1) {
    X509_free(x);
    BIO_free(bio);
    return ev_ssl_fail_why(w, EIO, "cannot use the PEM certificate");
  }
  X509_free(x);
  while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
    if (SSL_CTX_add0_chain_cert(sc, x) != 1) {
      X509_free(x);
      BIO_free(bio);
      return ev_ssl_fail_why(w, EIO, "cannot add a PEM chain certificate");
    }
  }
  BIO_free(bio);
  unsigned long e = ERR_peek_last_error();
  if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
    ERR_clear_error(); /* the end of the text */
  if (ERR_peek_error())
    return ev_ssl_fail_why(w, EIO, "cannot parse the PEM certificate chain");
  return 0;
}

static int ev_ssl_load_key(SSL_CTX *sc, const char *key, ev_ssl_why_t *w) {
  if (!ev_ssl_is_pem(key)) {
    if (ev_ssl_check_file(w, "key file", key) != 0) return -1;
    if (SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM) != 1)
      return ev_ssl_fail_why(w, EIO, "cannot load private key %s", key);
    return 0;
  }
  BIO *bio = BIO_new_mem_buf(key, -1);
  if (!bio) return ev_ssl_fail_why(w, ENOMEM, "out of memory");
  EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
  BIO_free(bio);
  if (!pk || SSL_CTX_use_PrivateKey(sc, pk) != 1) {
    EVP_PKEY_free(pk);
    return ev_ssl_fail_why(w, EIO, "cannot use the PEM private key");
  }
  EVP_PKEY_free(pk);
  return 0;
}

static int ev_ssl_load_ca(SSL_CTX *sc, int server, const char *ca,
                          ev_ssl_why_t *w) {
  if (!ev_ssl_is_pem(ca)) {
    struct stat sb;
    if (ev_ssl_check_file(w, "CA", ca) != 0) return -1;
    int dir = stat(ca, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (SSL_CTX_load_verify_locations(sc, dir ? NULL : ca, dir ? ca : NULL) != 1)
      return ev_ssl_fail_why(w, EIO, "cannot load CA %s", ca);
    if (server && !dir) {
      /* the CA names a server sends in its certificate request */
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
      if (!names) return ev_ssl_fail_why(w, EIO, "cannot read CA names in %s", ca);
      SSL_CTX_set_client_CA_list(sc, names);
    }
    return 0;
  }
  BIO *bio = BIO_new_mem_buf(ca, -1);
  if (!bio) return ev_ssl_fail_why(w, ENOMEM, "out of memory");
  X509_STORE *store = SSL_CTX_get_cert_store(sc);
  X509 *x;
  int n = 0;
  while ((x = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL)) != NULL) {
    int ok = X509_STORE_add_cert(store, x) == 1 &&
             (!server || SSL_CTX_add_client_CA(sc, x) == 1);
    X509_free(x);
    if (!ok) {
      BIO_free(bio);
      return ev_ssl_fail_why(w, EIO, "cannot add a PEM CA certificate");
    }
    n++;
  }
  BIO_free(bio);
  unsigned long e = ERR_peek_last_error();
  if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
    ERR_clear_error();
  if (ERR_peek_error() || n == 0)
    return ev_ssl_fail_why(w, EIO, "cannot parse the PEM CA certificates");
  return 0;
}

/* "h2,http/1.1" -> wire format (length-prefixed names) in *out (NULL for
 * NULL, "", or "none").  0, or -1 with errno EINVAL (an empty name or one
 * over 255 bytes) or ENOMEM. */
static int ev_ssl_alpn_wire(const char *npn, unsigned char **out, size_t *len) {
  *out = NULL;
  *len = 0;
  if (!npn || !npn[0] || !strcasecmp(npn, "none")) return 0;
  size_t n = strlen(npn), off = 0;
  unsigned char *wire = malloc(n + 1);
  if (!wire) {
    errno = ENOMEM;
    return -1;
  }
  const char *p = npn;
  for (;;) {
    const char *c = strchr(p, ',');
    size_t pl = c ? (size_t)(c - p) : strlen(p);
    if (pl == 0 || pl > 255) { /* also a trailing comma */
      free(wire);
      errno = EINVAL;
      return -1;
    }
    wire[off++] = (unsigned char)pl;
    memcpy(wire + off, p, pl);
    off += pl;
    if (!c) break;
    p = c + 1;
  }
  *out = wire;
  *len = off;
  return 0;
}

/* Adds the CRLs of a PEM file (or PEM text) to store.  0, or -1 with *w
 * filled. */
static int ev_ssl_load_crl(X509_STORE *store, const char *crl,
                           ev_ssl_why_t *w) {
  int pem = ev_ssl_is_pem(crl);
  if (!pem && ev_ssl_check_file(w, "CRL file", crl) != 0) return -1;
  BIO *bio = pem ? BIO_new_mem_buf(crl, -1) : BIO_new_file(crl, "r");
  if (!bio) return ev_ssl_fail_why(w, pem ? ENOMEM : EIO, "cannot open CRL %s",
                                   pem ? "text" : crl);
  X509_CRL *x;
  int n = 0, ok = 1;
  while (ok && (x = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
    ok = X509_STORE_add_crl(store, x) == 1; /* an equal CRL: kept once */
    X509_CRL_free(x);
    n++;
  }
  BIO_free(bio);
  unsigned long e = ERR_peek_last_error();
  if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
    ERR_clear_error(); /* the end of the text */
  if (!ok || ERR_peek_error() || n == 0)
    return ev_ssl_fail_why(w, EIO, "no certificate revocation list in %s",
                           pem ? "the PEM text" : crl);
  return 0;
}

/* A new SSL_CTX for these settings (client ALPN offer already in wire
 * format), or NULL with *w filled. */
static SSL_CTX *ev_ssl_build(eventer_ssl_orientation_t type,
                             const char *const s[EV_SSL_NSETTINGS],
                             const unsigned char *alpn, size_t alpn_len,
                             int own, ev_ssl_why_t *w) {
  const char *layer = s[EV_SSL_S_LAYER], *cert = s[EV_SSL_S_CERT],
             *key = s[EV_SSL_S_KEY], *ca = s[EV_SSL_S_CA],
             *ciphers = s[EV_SSL_S_CIPHERS], *crl = s[EV_SSL_S_CRL];
  int server = type == SSL_SERVER;
  int minv, maxv;
  uint64_t set_ops, clear_ops;
  ERR_clear_error();
  if (ev_ssl_parse_layer(layer, &minv, &maxv, &set_ops, &clear_ops, w) != 0)
    return NULL;
  if ((cert == NULL) != (key == NULL)) {
    ev_ssl_fail_why(w, EINVAL, "a certificate needs its key and a key its "
                               "certificate");
    return NULL;
  }
  if (server && !cert) {
    ev_ssl_fail_why(w, EINVAL, "a server context needs a certificate and key");
    return NULL;
  }
  /* with our provider's property preferred, libssl's X25519 key shares
   * and TLS 1.3 key schedule come from it (own: bit 0 X25519, bit 1 the
   * KDF; one turned off is excluded by its property); everything else
   * from the default provider */
  static const char *const propq[4] = {NULL, EV_PROPQ_NO_KDF, EV_PROPQ_NO_X25519,
                                       EV_X25519_PROPQ};
  SSL_CTX *sc = SSL_CTX_new_ex(NULL, propq[own & 3],
                               server ? TLS_server_method() : TLS_client_method());
  if (!sc) {
    ev_ssl_fail_why(w, ENOMEM, "SSL_CTX_new failed");
    return NULL;
  }
  if (SSL_CTX_set_min_proto_version(sc, minv) != 1 ||
      SSL_CTX_set_max_proto_version(sc, maxv) != 1) {
    ev_ssl_fail_why(w, EINVAL, "protocol versions refused");
    goto bail;
  }
  SSL_CTX_clear_options(sc, clear_ops);
  /* no compression (CRIME), no renegotiation (a DoS and injection vector;
   * TLS 1.3 has key updates instead), and a peer that hangs up without
   * close_notify after the handshake reads as EOF, as on a socket */
  SSL_CTX_set_options(sc, set_ops | SSL_OP_NO_COMPRESSION |
                              SSL_OP_NO_RENEGOTIATION |
                              SSL_OP_IGNORE_UNEXPECTED_EOF);
  /* writes may be partial (as write(2)) and retried from a moved buffer;
   * idle connections give their 34 KiB of buffers back (but those that
   * keep them: ev_ssl_keep_max); reads take what the socket has, not one
   * record header at a time */
  SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE |
                           SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                           SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_read_ahead(sc, 1);
  if (cert && (ev_ssl_load_cert(sc, cert, w) != 0 ||
               ev_ssl_load_key(sc, key, w) != 0))
    goto bail;
  if (cert && SSL_CTX_check_private_key(sc) != 1) {
    ev_ssl_fail_why(w, EIO, "the private key does not match the certificate");
    goto bail;
  }
  if (ca) {
    if (ev_ssl_load_ca(sc, server, ca, w) != 0) goto bail;
  } else if (!server && SSL_CTX_set_default_verify_paths(sc) != 1) {
    ev_ssl_fail_why(w, EIO, "cannot load the system's trust store");
    goto bail;
  }
  if (ciphers && ev_ssl_set_ciphers(sc, ciphers, w) != 0) goto bail;
  if (crl) {
    if (ev_ssl_load_crl(SSL_CTX_get_cert_store(sc), crl, w) != 0) goto bail;
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(sc), X509_V_FLAG_CRL_CHECK);
  }
  /* note: SSL_CTX_set_alpn_protos returns 0 on success */
  if (!server && alpn_len &&
      SSL_CTX_set_alpn_protos(sc, alpn, (unsigned int)alpn_len) != 0) {
    ev_ssl_fail_why(w, ENOMEM, "cannot set the ALPN list");
    goto bail;
  }
  if (server) {
    SSL_CTX_set_session_id_context(sc, (const unsigned char *)EV_SSL_SID_CTX,
                                   sizeof(EV_SSL_SID_CTX) - 1);
    /* Resumption from this SSL_CTX's session cache: a TLS 1.3 ticket
     * names a session kept here (SSL_OP_NO_TICKET: stateful tickets; TLS
     * 1.2 resumes by session id) instead of carrying it encrypted and
     * MACed, which in OpenSSL 3.0 costs an encoding, two algorithm
     * fetches and the crypto per ticket (10% of a full handshake's
     * instructions and 7% of a resumed one's, with one ticket instead of
     * two).  The reach is the same: a stateless ticket's keys are random
     * per SSL_CTX too.  One ticket per handshake, as Go's crypto/tls
     * sends (OpenSSL's default is two); the cache holds OpenSSL's default
     * 20,480 sessions at most, the least recently used going first. */
    SSL_CTX_set_options(sc, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(sc, 1);
    SSL_CTX_set_tlsext_servername_callback(sc, ev_ssl_servername_cb);
    SSL_CTX_set_alpn_select_cb(sc, ev_ssl_alpn_select_cb, NULL);
    SSL_CTX_set_verify(sc, ca ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                       ev_ssl_verify_cb);
  } else {
    SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, ev_ssl_verify_cb);
  }
  return sc;
bail:
  SSL_CTX_free(sc);
  return NULL;
}

/* The cached SSL_CTX for these settings, with a reference for the caller;
 * NULL with *w filled. */
static ev_ssl_cnode_t *ev_ssl_cache_get(eventer_ssl_orientation_t type,
                                        const char *const s[EV_SSL_NSETTINGS],
                                        ev_ssl_why_t *w) {
  /* the key: orientation, whether our X25519 and KDF are used, settings */
  int loaded = ev_x25519_provider_load() == 0;
  int own = (loaded && __atomic_load_n(&ev_ssl_own_x25519, __ATOMIC_RELAXED)) |
            (loaded && __atomic_load_n(&ev_ssl_own_kdf, __ATOMIC_RELAXED)) << 1;
  int ktype = (int)type | (own << 8);
  uint64_t hash = ev_ssl_cache_hash(ktype, s);
  time_t now = time(NULL);
  int expiry = __atomic_load_n(&ev_ssl_cache_expiry, __ATOMIC_RELAXED);
  ev_ssl_cnode_t *stale = NULL, *n;

  pthread_mutex_lock(&ev_ssl_cache_lock);
  for (ev_ssl_cnode_t **pp = &ev_ssl_cache; (n = *pp) != NULL; pp = &n->next) {
    if (!ev_ssl_cnode_is(n, hash, ktype, s)) continue;
    int old = expiry > 0 && now - n->created >= expiry;
    if (!old && now - n->checked >=
                    __atomic_load_n(&ev_ssl_finfo_check_s, __ATOMIC_RELAXED)) {
      n->checked = now;
      for (int i = 0; i < EV_SSL_NFILES; i++)
        if (n->paths[i] && ev_ssl_finfo_changed(&n->finfo[i], n->paths[i]))
          old = 1;
    }
    if (old) { /* rebuild: its users keep the old one until they end */
      *pp = n->next;
      stale = n;
      n = NULL;
    } else {
      __atomic_add_fetch(&n->refcnt, 1, __ATOMIC_RELAXED);
    }
    break;
  }
  pthread_mutex_unlock(&ev_ssl_cache_lock);
  ev_ssl_cnode_release(stale); /* the cache's reference */
  if (n) return n;

  /* Build outside the lock (it reads files); the first insert wins. */
  n = calloc(1, sizeof(*n));
  if (!n) {
    ev_ssl_fail_why(w, ENOMEM, "out of memory");
    return NULL;
  }
  n->hash = hash;
  n->type = ktype;
  for (int i = 0; i < EV_SSL_NSETTINGS; i++)
    if (s[i] && !(n->set[i] = strdup(s[i]))) {
      for (int k = 0; k < i; k++) free(n->set[k]);
      free(n);
      ev_ssl_fail_why(w, ENOMEM, "out of memory");
      return NULL;
    }
  n->created = n->checked = now;
  n->has_alpn = s[EV_SSL_S_ALPN] != NULL;
  if (ev_ssl_alpn_wire(s[EV_SSL_S_ALPN], &n->alpn, &n->alpn_len) != 0) {
    ev_ssl_fail_why(w, errno, "alpn \"%s\": %s", s[EV_SSL_S_ALPN],
                    errno == EINVAL ? "an empty name or one over 255 bytes"
                                    : strerror(errno));
    for (int i = 0; i < EV_SSL_NSETTINGS; i++) free(n->set[i]);
    free(n);
    return NULL;
  }
  const char *files[EV_SSL_NFILES] = {s[EV_SSL_S_CERT], s[EV_SSL_S_KEY],
                                      s[EV_SSL_S_CA], s[EV_SSL_S_CRL]};
  for (int i = 0; i < EV_SSL_NFILES; i++) {
    if (!files[i] || ev_ssl_is_pem(files[i])) continue;
    n->paths[i] = strdup(files[i]);
    ev_ssl_finfo(&n->finfo[i], files[i]);
  }
  n->ssl_ctx = ev_ssl_build(type, s, n->alpn, n->alpn_len, own, w);
  if (!n->ssl_ctx) {
    for (int i = 0; i < EV_SSL_NFILES; i++) free(n->paths[i]);
    free(n->alpn);
    for (int i = 0; i < EV_SSL_NSETTINGS; i++) free(n->set[i]);
    free(n);
    return NULL;
  }
  n->refcnt = 2; /* the cache's and the caller's */
  ev_ssl_cnode_t *winner = NULL;
  pthread_mutex_lock(&ev_ssl_cache_lock);
  for (ev_ssl_cnode_t *o = ev_ssl_cache; o; o = o->next)
    if (ev_ssl_cnode_is(o, hash, ktype, s)) {
      winner = o;
      __atomic_add_fetch(&o->refcnt, 1, __ATOMIC_RELAXED);
      break;
    }
  if (!winner) {
    n->next = ev_ssl_cache;
    ev_ssl_cache = n;
  }
  pthread_mutex_unlock(&ev_ssl_cache_lock);
  if (winner) {
    n->refcnt = 1;
    ev_ssl_cnode_release(n);
    return winner;
  }
  return n;
}

void eventer_ssl_set_ssl_ctx_cache_expiry(int timeout) {
  __atomic_store_n(&ev_ssl_cache_expiry, timeout > 0 ? timeout : 0,
                   __ATOMIC_RELAXED);
}

/* A setting's number: a whole decimal count, 0..INT_MAX. */
static int ev_ssl_cfg_count(const char *value, int *out) {
  char *end;
  errno = 0;
  long v = strtol(value, &end, 10);
  if (errno || end == value || *end || v < 0 || v > INT_MAX) return -1;
  *out = (int)v;
  return 0;
}

/* 0: set; -1: a bad value; 1: not a key of ours.  Also <eventer><config>'s
 * "ssl_*" keys (ev_cfg_ssl_hook). */
static int ev_ssl_cfg_set(const char *key, const char *value) {
  int v;
  if (!key || !value) return 1;
  if (!strcmp(key, "ssl_ctx_cache_expiry")) {
    if (ev_ssl_cfg_count(value, &v) != 0) return -1;
    eventer_ssl_set_ssl_ctx_cache_expiry(v);
    return 0;
  }
  if (!strcmp(key, "ssl_keep_buffers")) {
    if (ev_ssl_cfg_count(value, &v) != 0) return -1;
    __atomic_store_n(&ev_ssl_keep_max, v, __ATOMIC_RELAXED);
    return 0;
  }
  if (!strcmp(key, "ssl_own_x25519") || !strcmp(key, "ssl_own_kdf")) {
    if (!strcmp(value, "on") || !strcmp(value, "1") || !strcmp(value, "true"))
      v = 1;
    else if (!strcmp(value, "off") || !strcmp(value, "0") ||
             !strcmp(value, "false"))
      v = 0;
    else
      return -1;
    __atomic_store_n(strcmp(key, "ssl_own_kdf") ? &ev_ssl_own_x25519
                                                 : &ev_ssl_own_kdf,
                     v, __ATOMIC_RELAXED);
    return 0;
  }
  if (!strcmp(key, "ssl_ctx_cache_finfo_expiry")) {
    if (ev_ssl_cfg_count(value, &v) != 0) return -1;
    __atomic_store_n(&ev_ssl_finfo_check_s, v, __ATOMIC_RELAXED);
    return 0;
  }
  return 1;
}

__attribute__((constructor)) static void ev_ssl_cfg_hook(void) {
  ev_cfg_ssl_hook = ev_ssl_cfg_set;
}

int eventer_ssl_config(const char *key, const char *value) {
  return ev_ssl_cfg_set(key, value) == 0 ? 0 : 1;
}

/* ---- contexts ---------------------------------------------------------------------- */

static void ev_ssl_alpn_list_free(ev_ssl_alpn_t *l) {
  while (l) {
    ev_ssl_alpn_t *next = l->next;
    free(l);
    l = next;
  }
}

static void ev_ssl_ctx_destroy(eventer_ssl_ctx_t *ctx) {
  if (ctx->kept) __atomic_sub_fetch(&ev_ssl_kept, 1, __ATOMIC_RELAXED);
  if (ctx->ssl) {
    SSL_set_ex_data(ctx->ssl, ev_ssl_ex_idx, NULL);
    SSL_free(ctx->ssl);
  }
  if (ctx->chain) sk_X509_pop_free(ctx->chain, X509_free);
  ev_ssl_alpn_list_free(ctx->alpn_funcs);
  free(ctx->alpn);
  free(ctx->issuer);
  free(ctx->subject);
  free(ctx->san_list);
  free(ctx->cert_error);
  free(ctx->last_error);
  free(ctx->sni_name);
  ev_ssl_cnode_release(ctx->cn);
  free(ctx);
}

/* Why the calling thread's last context creation failed. */
static __thread char ev_ssl_new_err[sizeof(((ev_ssl_why_t *)0)->why) + 32];

const char *eventer_ssl_ctx_new_error(void) { return ev_ssl_new_err; }

int ev_ssl_ctx_keeps_buffers(const eventer_ssl_ctx_t *ctx) {
  return ctx && ctx->kept;
}

int ev_ssl_ctx_big_read_buffer(const eventer_ssl_ctx_t *ctx) {
  return ctx && ctx->big_rbuf == EV_SSL_RBUF_BIG;
}

int ev_ssl_ctx_skipped_reads(const eventer_ssl_ctx_t *ctx) {
  return ctx ? (int)ctx->skipped_reads : -1;
}

static eventer_ssl_ctx_t *ev_ssl_new_failed(const char *who, int err,
                                            const char *why) {
  snprintf(ev_ssl_new_err, sizeof(ev_ssl_new_err), "%s", why);
  mtevL(eventer_err, "%s: %s\n", who, why);
  errno = err;
  return NULL;
}

static eventer_ssl_ctx_t *ev_ssl_ctx_new_s(eventer_ssl_orientation_t type,
                                           const char *s[EV_SSL_NSETTINGS],
                                           const char *who) {
  eventer_ssl_init();
  ev_ssl_new_err[0] = 0;
  ev_ssl_why_t w = {0, ""};
  if (type != SSL_SERVER && type != SSL_CLIENT) {
    char why[64];
    snprintf(why, sizeof(why), "bad orientation %d", (int)type);
    return ev_ssl_new_failed(who, EINVAL, why);
  }
  if (type == SSL_CLIENT && !s[EV_SSL_S_CA])
    s[EV_SSL_S_CA] = ev_cfg_default_ca_chain(); /* NULL: the system's */
  ev_ssl_cnode_t *cn = ev_ssl_cache_get(type, s, &w);
  if (!cn) {
    char lwho[96];
    snprintf(lwho, sizeof(lwho), "%s (%s)", who,
             type == SSL_SERVER ? "server" : "client");
    return ev_ssl_new_failed(lwho, w.err ? w.err : EIO, w.why);
  }
  eventer_ssl_ctx_t *ctx = calloc(1, sizeof(*ctx));
  if (!ctx || !(ctx->ssl = SSL_new(cn->ssl_ctx))) {
    free(ctx);
    ev_ssl_cnode_release(cn);
    ERR_clear_error();
    return ev_ssl_new_failed(who, ENOMEM, "out of memory");
  }
  ctx->cn = cn;
  ctx->type = type;
  SSL_set_ex_data(ctx->ssl, ev_ssl_ex_idx, ctx);
  if (type == SSL_SERVER) {
    SSL_set_accept_state(ctx->ssl);
    /* an alpn setting (even "none") replaces the default list */
    ctx->alpn_default = cn->has_alpn ? NULL : ev_ssl_default_alpn;
  } else {
    SSL_set_connect_state(ctx->ssl);
  }
  return ctx;
}

eventer_ssl_ctx_t *eventer_ssl_ctx_new(eventer_ssl_orientation_t type,
                                       const char *layer,
                                       const char *certificate,
                                       const char *key, const char *ca,
                                       const char *ciphers) {
  const char *s[EV_SSL_NSETTINGS] = {layer, certificate, key, ca, ciphers,
                                     NULL, NULL};
  return ev_ssl_ctx_new_s(type, s, "eventer_ssl_ctx_new");
}

/* The first of the keys that the table has. */
static const char *ev_ssl_setting(mtev_hash_table *h, const char *k1,
                                  const char *k2) {
  const char *v = mtev_hash_dict_get(h, k1);
  return v || !k2 ? v : mtev_hash_dict_get(h, k2);
}

eventer_ssl_ctx_t *eventer_ssl_ctx_new_ex(eventer_ssl_orientation_t type,
                                          mtev_hash_table *settings) {
  if (!settings) {
    ev_ssl_new_err[0] = 0;
    return ev_ssl_new_failed("eventer_ssl_ctx_new_ex", EINVAL,
                             "no settings table");
  }
  const char *s[EV_SSL_NSETTINGS] = {
      ev_ssl_setting(settings, "layer", NULL),
      ev_ssl_setting(settings, "certificate", "certificate_file"),
      ev_ssl_setting(settings, "key", "key_file"),
      ev_ssl_setting(settings, "ca_chain", "ca_file"),
      ev_ssl_setting(settings, "ciphers", NULL),
      ev_ssl_setting(settings, "crl", NULL),
      ev_ssl_setting(settings, "alpn", "npn")};
  return ev_ssl_ctx_new_s(type, s, "eventer_ssl_ctx_new_ex");
}

void eventer_ssl_ctx_free(eventer_ssl_ctx_t *ctx) {
  if (!ctx) return;
  if (ctx->e) {
    EV_ASSERT(ctx->e->tls == ctx, "an attached TLS context is its event's");
    ctx->e->tls = NULL;
    ctx->e = NULL;
  }
  ev_ssl_ctx_destroy(ctx);
}

/* The event's final free takes its context with it. */
static void ev_ssl_free_hook(eventer_t e) {
  eventer_ssl_ctx_t *ctx = e->tls;
  if (!ctx) return;
  e->tls = NULL;
  ctx->e = NULL;
  ev_ssl_ctx_destroy(ctx);
}

/* The TLS layer: a copy of a TLS event gets no context (e->tls is not
 * copied, no event_copy): its TLS calls fail with EINVAL rather than share
 * one SSL between two events. */
static const ev_layer_t ev_ssl_layer = {
    .name = "tls",
    .event_free = ev_ssl_free_hook,
};

static void ev_ssl_hook_once_fn(void) { ev_layer_register(&ev_ssl_layer); }

int eventer_set_eventer_ssl_ctx_ex(eventer_t e, eventer_ssl_ctx_t *ctx) {
  if (!e || !ctx || e->fd < 0 || eventer_is_aco(e) || ctx->e) {
    errno = EINVAL;
    return -1;
  }
  if (e->tls) {
    errno = EBUSY;
    return -1;
  }
  BIO *bio = BIO_new(ev_ssl_bio_method);
  if (!bio) {
    ERR_clear_error();
    errno = ENOMEM;
    return -1;
  }
  ctx->fd = e->fd;
  BIO_set_data(bio, ctx);
  BIO_set_init(bio, 1);
  if (ctx->peer_len == 0) { /* unless the acceptor told us */
    socklen_t sl = sizeof(ctx->peer);
    if (getpeername(e->fd, (struct sockaddr *)&ctx->peer, &sl) == 0)
      ctx->peer_len = sl;
  }
  SSL_set_bio(ctx->ssl, bio, bio); /* one reference, for both directions */
  pthread_once(&ev_ssl_hook_once, ev_ssl_hook_once_fn);
  ctx->e = e;
  e->tls = ctx;
  e->opset = eventer_SSL_fd_opset;
  return 0;
}

void eventer_set_eventer_ssl_ctx(eventer_t e, eventer_ssl_ctx_t *ctx) {
  if (eventer_set_eventer_ssl_ctx_ex(e, ctx) != 0)
    mtevL(eventer_err, "eventer_set_eventer_ssl_ctx(fd %d): %s\n",
          e ? e->fd : -1, strerror(errno));
}

eventer_ssl_ctx_t *eventer_get_eventer_ssl_ctx(const eventer_t e) {
  return e ? (eventer_ssl_ctx_t *)e->tls : NULL;
}

void eventer_ssl_ctx_set_sni(eventer_ssl_ctx_t *ctx, const char *snivalue) {
  if (!ctx || !snivalue) return;
  if (SSL_set_tlsext_host_name(ctx->ssl, snivalue) != 1) {
    ERR_clear_error();
    mtevL(eventer_err, "eventer_ssl_ctx_set_sni: \"%s\" refused\n", snivalue);
  }
}

void eventer_ssl_ctx_set_peer(eventer_ssl_ctx_t *ctx,
                              const struct sockaddr *addr, socklen_t len) {
  if (!ctx || !addr || len == 0 || len > sizeof(ctx->peer)) return;
  memcpy(&ctx->peer, addr, len);
  ctx->peer_len = len;
}

int eventer_ssl_ctx_set_verify_host(eventer_ssl_ctx_t *ctx, const char *host) {
  if (!ctx || !host || !host[0] || ctx->type != SSL_CLIENT) {
    errno = EINVAL;
    return -1;
  }
  X509_VERIFY_PARAM *vp = SSL_get0_param(ctx->ssl);
  /* an address literal is checked against the IP SANs, a name against the
   * DNS SANs (and the CN when there are none, OpenSSL's rule) */
  int ok = X509_VERIFY_PARAM_set1_ip_asc(vp, host) == 1 ||
           SSL_set1_host(ctx->ssl, host) == 1;
  ERR_clear_error();
  if (!ok) {
    errno = EINVAL;
    return -1;
  }
  return 0;
}

int eventer_ssl_ctx_set_session(eventer_ssl_ctx_t *ctx, SSL_SESSION *session) {
  if (!ctx || !session || ctx->type != SSL_CLIENT || ctx->done) {
    errno = EINVAL;
    return -1;
  }
  if (SSL_set_session(ctx->ssl, session) != 1) {
    ERR_clear_error();
    errno = EINVAL;
    return -1;
  }
  return 0;
}

void eventer_ssl_ctx_set_sni_select(eventer_ssl_ctx_t *ctx,
                                    eventer_ssl_sni_func_t f, void *closure) {
  if (!ctx) return;
  ctx->sni_cb = f;
  ctx->sni_closure = closure;
}

static int ev_ssl_opt_true(mtev_hash_table *h, const char *key) {
  const char *v = h ? mtev_hash_dict_get(h, key) : NULL;
  return v && (!strcasecmp(v, "true") || !strcasecmp(v, "on") ||
               !strcasecmp(v, "yes") || !strcmp(v, "1"));
}

static int ev_ssl_opt_required(mtev_hash_table *h) {
  const char *v = h ? mtev_hash_dict_get(h, "client_cert") : NULL;
  return v && !strcasecmp(v, "required");
}

void eventer_ssl_ctx_set_verify(eventer_ssl_ctx_t *ctx,
                                eventer_ssl_verify_func_t f, void *c) {
  if (!ctx) return;
  ctx->verify_cb = f;
  ctx->verify_closure = c;
  /* a server asks for a client certificate once someone will judge it;
   * one that requires it lets OpenSSL refuse a client without one in the
   * handshake, with the protocol's alert */
  if (f && ctx->type == SSL_SERVER)
    SSL_set_verify(ctx->ssl,
                   SSL_VERIFY_PEER |
                       (f == eventer_ssl_verify_cert && ev_ssl_opt_required(c)
                            ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                            : 0),
                   ev_ssl_verify_cb);
}

int eventer_ssl_verify_cert(eventer_ssl_ctx_t *ctx, int ok,
                            X509_STORE_CTX *x509ctx, void *closure) {
  mtev_hash_table *opts = closure;
  if (!ctx) return 0;
  if (!x509ctx) return !ev_ssl_opt_required(opts); /* no certificate sent */
  if (ok) return 1;
  int no_ca = opts ? ev_ssl_opt_true(opts, "optional_no_ca") : 1;
  int no_dates = opts ? ev_ssl_opt_true(opts, "ignore_dates") : 1;
  switch (X509_STORE_CTX_get_error(x509ctx)) {
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_CERT_UNTRUSTED:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    return no_ca;
  case X509_V_ERR_CERT_HAS_EXPIRED:
  case X509_V_ERR_CERT_NOT_YET_VALID:
    return no_dates;
  default:
    return 0;
  }
}

int eventer_ssl_use_crl(eventer_ssl_ctx_t *ctx, const char *crl_file) {
  if (!ctx || !crl_file) {
    errno = EINVAL;
    return 0;
  }
  ev_ssl_why_t w = {0, ""};
  ERR_clear_error();
  if (ev_ssl_load_crl(SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ctx->ssl)),
                      crl_file, &w) != 0) {
    mtevL(eventer_err, "eventer_ssl_use_crl: %s\n", w.why);
    errno = w.err ? w.err : EIO;
    return 0;
  }
  X509_VERIFY_PARAM_set_flags(SSL_get0_param(ctx->ssl), X509_V_FLAG_CRL_CHECK);
  return 1;
}

/* ---- OpenSSL callbacks ---------------------------------------------------------------- */

static int ev_ssl_verify_cb(int ok, X509_STORE_CTX *x509ctx) {
  SSL *ssl = X509_STORE_CTX_get_ex_data(x509ctx,
                                        SSL_get_ex_data_X509_STORE_CTX_idx());
  eventer_ssl_ctx_t *ctx = ev_ssl_of(ssl);
  if (!ctx) return ok;
  if (!ok) {
    char subj[256], msg[512];
    int err = X509_STORE_CTX_get_error(x509ctx);
    X509 *cur = X509_STORE_CTX_get_current_cert(x509ctx);
    subj[0] = 0;
    if (cur) X509_NAME_oneline(X509_get_subject_name(cur), subj, sizeof(subj));
    snprintf(msg, sizeof(msg), "verify error:num=%d:%s:depth=%d:%s", err,
             X509_verify_cert_error_string(err),
             X509_STORE_CTX_get_error_depth(x509ctx), subj);
    ev_set_str(&ctx->cert_error, msg);
  }
  if (ctx->verify_cb)
    ok = ctx->verify_cb(ctx, ok, x509ctx, ctx->verify_closure) ? 1 : 0;
  return ok;
}

static int ev_ssl_servername_cb(SSL *ssl, int *ad, void *arg) {
  (void)ad;
  (void)arg;
  eventer_ssl_ctx_t *ctx = ev_ssl_of(ssl);
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!ctx || !name) return SSL_TLSEXT_ERR_OK;
  ev_set_str(&ctx->sni_name, name);
  if (ctx->sni_cb) {
    eventer_ssl_ctx_t *t = ctx->sni_cb(ctx, name, ctx->sni_closure);
    if (t && t != ctx && t->type == SSL_SERVER &&
        t->cn->ssl_ctx != SSL_get_SSL_CTX(ssl))
      SSL_set_SSL_CTX(ssl, t->cn->ssl_ctx); /* takes its own reference */
  }
  return SSL_TLSEXT_ERR_OK;
}

/* Is `name` in the wire-format list? */
static int ev_ssl_alpn_listed(const unsigned char *list, size_t len,
                              const unsigned char *name, size_t nl) {
  for (size_t i = 0; list && i < len; i += 1u + list[i])
    if (list[i] == nl && i + 1 + nl <= len && !memcmp(list + i + 1, name, nl))
      return 1;
  return 0;
}

static const ev_ssl_alpn_t *ev_ssl_alpn_find(const ev_ssl_alpn_t *l,
                                             const unsigned char *name,
                                             size_t nl) {
  for (; l; l = l->next)
    if (l->len == nl && !memcmp(l->name, name, nl)) return l;
  return NULL;
}

static int ev_ssl_alpn_select_cb(SSL *ssl, const unsigned char **out,
                                 unsigned char *outlen, const unsigned char *in,
                                 unsigned int inlen, void *arg) {
  (void)arg;
  eventer_ssl_ctx_t *ctx = ev_ssl_of(ssl);
  if (!ctx) return SSL_TLSEXT_ERR_NOACK;
  /* what it may select: the list advertised for this connection, else
   * the settings' list, else the default */
  const ev_ssl_cnode_t *cn = ctx->cn;
  const unsigned char *list = NULL;
  size_t llen = 0;
  if (ctx->alpn_set) {
    list = ctx->alpn;
    llen = ctx->alpn_len;
  } else if (cn->has_alpn) {
    list = cn->alpn;
    llen = cn->alpn_len;
  } else if (ctx->alpn_default) {
    list = ctx->alpn_default;
    llen = sizeof(ev_ssl_default_alpn) - 1;
  }
  for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
    const unsigned char *name = in + i + 1;
    size_t nl = in[i];
    if (nl == 0 || i + 1 + nl > inlen) break; /* malformed: stop */
    if (!ev_ssl_alpn_listed(list, llen, name, nl)) continue;
    eventer_SSL_alpn_func_t f = NULL;
    int found = 0;
    const ev_ssl_alpn_t *r = ev_ssl_alpn_find(ctx->alpn_funcs, name, nl);
    if (r) {
      found = 1;
      f = r->f;
    } else {
      pthread_mutex_lock(&ev_ssl_alpn_lock);
      r = ev_ssl_alpn_find(ev_ssl_alpn_global, name, nl);
      if (r) {
        found = 1;
        f = r->f;
      }
      pthread_mutex_unlock(&ev_ssl_alpn_lock);
    }
    /* the settings' names need no registration */
    if (!found && !ev_ssl_alpn_listed(cn->alpn, cn->alpn_len, name, nl))
      continue;
    if (!f) {
      *out = name;
      *outlen = (unsigned char)nl;
      return SSL_TLSEXT_ERR_OK;
    }
    int rv = f(out, outlen, in, inlen);
    if (rv < 0) return SSL_TLSEXT_ERR_NOACK;
    if (rv == 1) return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

/* ---- ALPN API -------------------------------------------------------------------------- */

static ev_ssl_alpn_t *ev_ssl_alpn_new(const char *name,
                                      eventer_SSL_alpn_func_t f) {
  size_t nl = name ? strlen(name) : 0;
  if (nl == 0 || nl > 255) {
    errno = EINVAL;
    return NULL;
  }
  ev_ssl_alpn_t *a = calloc(1, sizeof(*a) + nl + 1);
  if (!a) return NULL;
  a->f = f;
  a->len = nl;
  memcpy(a->name, name, nl);
  return a;
}

/* Replaces the function of `name` in *list, or prepends it. */
static void ev_ssl_alpn_put(ev_ssl_alpn_t **list, const char *name,
                            eventer_SSL_alpn_func_t f, const char *who) {
  ev_ssl_alpn_t *old =
      (ev_ssl_alpn_t *)ev_ssl_alpn_find(*list, (const unsigned char *)name,
                                        name ? strlen(name) : 0);
  if (old) {
    old->f = f;
    return;
  }
  ev_ssl_alpn_t *a = ev_ssl_alpn_new(name, f);
  if (!a) {
    mtevL(eventer_err, "%s(\"%s\"): %s\n", who, name ? name : "(null)",
          strerror(errno));
    return;
  }
  a->next = *list;
  *list = a;
}

void eventer_ssl_alpn_register(const char *name, eventer_SSL_alpn_func_t f) {
  pthread_mutex_lock(&ev_ssl_alpn_lock);
  ev_ssl_alpn_put(&ev_ssl_alpn_global, name, f, "eventer_ssl_alpn_register");
  pthread_mutex_unlock(&ev_ssl_alpn_lock);
}

void eventer_ssl_ctx_alpn_register(eventer_ssl_ctx_t *ctx, const char *name,
                                   eventer_SSL_alpn_func_t f) {
  if (!ctx) return;
  ev_ssl_alpn_put(&ctx->alpn_funcs, name, f, "eventer_ssl_ctx_alpn_register");
}

int eventer_ssl_alpn_advertise(eventer_ssl_ctx_t *ctx, const char *npn) {
  if (!ctx) {
    errno = EINVAL;
    return -1;
  }
  unsigned char *wire;
  size_t off;
  if (ev_ssl_alpn_wire(npn, &wire, &off) != 0) return -1;
  if (ctx->type == SSL_CLIENT) {
    /* note: SSL_set_alpn_protos returns 0 on success */
    if (SSL_set_alpn_protos(ctx->ssl, wire, (unsigned int)off) != 0) {
      ERR_clear_error();
      free(wire);
      errno = ENOMEM;
      return -1;
    }
    free(wire);
    return 0;
  }
  free(ctx->alpn);
  ctx->alpn = wire;
  ctx->alpn_len = off;
  ctx->alpn_set = 1; /* an explicit list, even an empty one, wins */
  return 0;
}

void eventer_ssl_get_alpn_selected(eventer_ssl_ctx_t *ctx,
                                   const uint8_t **alpn, uint8_t *len) {
  if (alpn) *alpn = NULL;
  if (len) *len = 0;
  if (!ctx || !alpn || !len) return;
  const unsigned char *p = NULL;
  unsigned int l = 0;
  SSL_get0_alpn_selected(ctx->ssl, &p, &l);
  if (p && l) {
    *alpn = p;
    *len = (uint8_t)l;
  }
}

/* ---- failures: one log line per connection ---------------------------------------------- */

static void ev_ssl_log_once(eventer_ssl_ctx_t *ctx, int op, const char *reason) {
  ev_set_str(&ctx->last_error, reason);
  if (ctx->logged) return;
  ctx->logged = 1;
  int fd = ctx->e ? ctx->e->fd : -1;
  char peer[96];
  if (ctx->peer_len == 0 && fd >= 0) { /* not connected at attach (a client) */
    socklen_t sl = sizeof(ctx->peer);
    if (getpeername(fd, (struct sockaddr *)&ctx->peer, &sl) == 0)
      ctx->peer_len = sl;
  }
  ev_ssl_peer_name(&ctx->peer, ctx->peer_len, peer, sizeof(peer));
  mtevL(eventer_err, "TLS %s %s %s (fd %d) failed: %s\n", ev_ssl_op_name[op],
        ev_ssl_op_dir[op], peer, fd, reason);
}

void eventer_ssl_ctx_fail(eventer_ssl_ctx_t *ctx, const char *reason) {
  if (!ctx || ctx->failed) return;
  ctx->failed = 1;
  if (!reason) {
    ctx->logged = 1; /* ended on purpose: nothing to report, now or later */
    return;
  }
  int op = ctx->done ? EV_SSL_OP_READ
           : ctx->type == SSL_SERVER ? EV_SSL_OP_ACCEPT : EV_SSL_OP_CONNECT;
  ev_ssl_log_once(ctx, op, reason);
}

/* Marks ctx failed and logs why; returns -1 with errno EIO. */
static int ev_ssl_fail(eventer_ssl_ctx_t *ctx, int op, int sslerr, int sys) {
  char reason[400], ossl[256];
  unsigned long code = 0;
  ev_ssl_err_text(ossl, sizeof(ossl), &code);
  if (code && ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    long vr = SSL_get_verify_result(ctx->ssl);
    snprintf(reason, sizeof(reason), "%s (%s)", ossl,
             vr != X509_V_OK ? X509_verify_cert_error_string(vr)
                             : "refused by the verify function");
  } else if (code) {
    snprintf(reason, sizeof(reason), "%s", ossl);
  } else if (sslerr == SSL_ERROR_SYSCALL && sys) {
    snprintf(reason, sizeof(reason), "%s", strerror(sys));
  } else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN) {
    snprintf(reason, sizeof(reason), "the peer closed the connection%s",
             ctx->done ? "" : " during the handshake");
  } else {
    snprintf(reason, sizeof(reason), "SSL_get_error %d", sslerr);
  }
  ctx->failed = 1;
  ev_ssl_log_once(ctx, op, reason);
  errno = EIO;
  return -1;
}

/* The handshake just finished: the checks OpenSSL does not do. */
static int ev_ssl_handshake_checked(eventer_ssl_ctx_t *ctx, int op) {
  ctx->done = 1;
  /* a connection that is up keeps its buffers, while there is room */
  if (__atomic_add_fetch(&ev_ssl_kept, 1, __ATOMIC_RELAXED) <=
      __atomic_load_n(&ev_ssl_keep_max, __ATOMIC_RELAXED)) {
    SSL_clear_mode(ctx->ssl, SSL_MODE_RELEASE_BUFFERS);
    ctx->kept = 1;
  } else {
    __atomic_sub_fetch(&ev_ssl_kept, 1, __ATOMIC_RELAXED);
  }
  if (ctx->verify_cb && SSL_get0_peer_certificate(ctx->ssl) == NULL &&
      !ctx->verify_cb(ctx, 0, NULL, ctx->verify_closure)) {
    ctx->failed = 1;
    ev_ssl_log_once(ctx, op, "the peer sent no certificate (refused by the "
                             "verify function)");
    errno = EIO;
    return -1;
  }
  return 0;
}

/* ---- the opset ------------------------------------------------------------------------------ */

static int ev_ssl_io(eventer_t e, int op, void *buf, size_t len, int *mask) {
  eventer_ssl_ctx_t *ctx = e ? e->tls : NULL;
  if (!ctx) {
    errno = EINVAL;
    return -1;
  }
  if ((op == EV_SSL_OP_ACCEPT && ctx->type != SSL_SERVER) ||
      (op == EV_SSL_OP_CONNECT && ctx->type != SSL_CLIENT)) {
    errno = EINVAL;
    return -1;
  }
  if (ctx->failed) {
    errno = EIO;
    return -1;
  }
  if ((op == EV_SSL_OP_READ || op == EV_SSL_OP_WRITE) && len == 0) return 0;
  if (len > INT_MAX) len = INT_MAX;
  ev_ssl_err_reset();
  errno = 0;
  size_t n = 0, total = 0;
  int rv;
  switch (op) {
  case EV_SSL_OP_READ:
    /* SSL_read_ex gives one record at a time: go on while OpenSSL holds
     * more bytes than it has handed out (read ahead), which costs no
     * syscall, so one call fills the caller's buffer when it can */
    while ((rv = SSL_read_ex(ctx->ssl, (char *)buf + total, len - total,
                             &n)) > 0 &&
           (total += n) < len && ctx->done && SSL_has_pending(ctx->ssl))
      ;
    if (ctx->big_rbuf == EV_SSL_RBUF_SMALL &&
        total >= SSL3_RT_MAX_PLAIN_LENGTH) {
      SSL_set_default_read_buffer_len(ctx->ssl, EV_SSL_READ_BUF);
      ctx->big_rbuf = EV_SSL_RBUF_ASKED;
    }
    /* a buffer that is kept is made again only once freed: free it when
     * it holds nothing (a connection that releases its buffers has done
     * so, or does when it empties).  SSL_free_buffers refuses a buffer
     * with bytes in it, but before OpenSSL 3.0.14 not one whose record
     * was taken in part (CVE-2024-4741): SSL_has_pending sees both. */
    if (ctx->big_rbuf == EV_SSL_RBUF_ASKED &&
        (!ctx->kept ||
         (!SSL_has_pending(ctx->ssl) && SSL_free_buffers(ctx->ssl))))
      ctx->big_rbuf = EV_SSL_RBUF_BIG;
    break;
  case EV_SSL_OP_WRITE:
    /* with SSL_MODE_ENABLE_PARTIAL_WRITE, SSL_write_ex sends one record
     * (16 KiB) a call: go on until all is sent or the socket is full, so
     * a large write is one call (a retry after WANT_WRITE starts where
     * the refused call did, as OpenSSL requires) */
    for (;;) {
      ev_bio_more = ctx->done && len - total > SSL3_RT_MAX_PLAIN_LENGTH;
      rv = SSL_write_ex(ctx->ssl, (const char *)buf + total, len - total, &n);
      if (rv <= 0 || (total += n) >= len || !ctx->done) break;
    }
    ev_bio_more = 0;
    break;
  default:
    rv = SSL_do_handshake(ctx->ssl);
    break;
  }
  int sys = errno;
  /* a read or write may have finished the handshake implicitly */
  if (!ctx->done && SSL_is_init_finished(ctx->ssl) &&
      ev_ssl_handshake_checked(ctx, op) != 0)
    return -1;
  if (rv > 0) return op >= EV_SSL_OP_ACCEPT ? 1 : (int)total;
  int sslerr = SSL_get_error(ctx->ssl, rv);
  if (total > 0) {
    /* bytes moved before the call that stopped: they are the result; a
     * fatal error is recorded (and logged) now, so that the next call
     * fails with EIO, and a would-block or the peer's close_notify
     * shows at the next call */
    if (sslerr != SSL_ERROR_WANT_READ && sslerr != SSL_ERROR_WANT_WRITE &&
        sslerr != SSL_ERROR_ZERO_RETURN) {
      int saved = errno;
      ev_ssl_fail(ctx, op, sslerr, sys);
      errno = saved;
    }
    ev_ssl_err_reset();
    return (int)total;
  }
  switch (sslerr) {
  case SSL_ERROR_WANT_READ:
    if (mask) *mask = EVENTER_READ | EVENTER_EXCEPTION;
    errno = EAGAIN;
    return -1;
  case SSL_ERROR_WANT_WRITE:
    if (mask) *mask = EVENTER_WRITE | EVENTER_EXCEPTION;
    errno = EAGAIN;
    return -1;
  case SSL_ERROR_ZERO_RETURN: /* close_notify, or EOF (IGNORE_UNEXPECTED_EOF) */
    if (op == EV_SSL_OP_READ && ctx->done) return 0;
    break;
  default:
    break;
  }
  return ev_ssl_fail(ctx, op, sslerr, sys);
}

static int ev_ssl_op_accept(int fd, struct sockaddr *addr, socklen_t *len,
                            int *mask, void *closure) {
  (void)fd, (void)addr, (void)len, (void)mask, (void)closure;
  errno = EOPNOTSUPP;
  return -1;
}

static int ev_ssl_op_read(int fd, void *buf, size_t len, int *mask,
                          void *closure) {
  (void)fd;
  return ev_ssl_io(closure, EV_SSL_OP_READ, buf, len, mask);
}

static int ev_ssl_op_write(int fd, const void *buf, size_t len, int *mask,
                           void *closure) {
  (void)fd;
  return ev_ssl_io(closure, EV_SSL_OP_WRITE, (void *)buf, len, mask);
}

/* Sends close_notify when the session is healthy (one try: a full socket
 * or a gone peer does not hold the close up), frees the context, closes
 * the fd. */
static int ev_ssl_op_close(int fd, int *mask, void *closure) {
  eventer_t e = closure;
  eventer_ssl_ctx_t *ctx = e ? e->tls : NULL;
  if (ctx) {
    if (ctx->done && !ctx->failed) SSL_shutdown(ctx->ssl);
    ev_ssl_err_reset();
    e->tls = NULL;
    ctx->e = NULL;
    ev_ssl_ctx_destroy(ctx);
  }
  if (mask) *mask = 0;
  return close(fd);
}

static struct _fd_opset ev_ssl_opset = {
    .accept = ev_ssl_op_accept,
    .read = ev_ssl_op_read,
    .write = ev_ssl_op_write,
    .close = ev_ssl_op_close,
    .name = "SSL",
};

eventer_fd_opset_t eventer_SSL_fd_opset = &ev_ssl_opset;

int eventer_ssl_read_ready(eventer_ssl_ctx_t *ctx, int *mask) {
  if (!ctx || !ctx->e || !ctx->done) {
    errno = EINVAL;
    return -1;
  }
  if (ctx->failed || SSL_pending(ctx->ssl) > 0) return 1;
  /* a record OpenSSL read ahead is decrypted by a peek, not consumed */
  unsigned char c;
  size_t n = 0;
  ev_ssl_err_reset();
  errno = 0;
  int rv = SSL_peek_ex(ctx->ssl, &c, 1, &n);
  int sys = errno;
  if (rv > 0) return 1;
  int sslerr = SSL_get_error(ctx->ssl, rv);
  switch (sslerr) {
  case SSL_ERROR_WANT_READ:
    if (mask) *mask = EVENTER_READ | EVENTER_EXCEPTION;
    return 0;
  case SSL_ERROR_WANT_WRITE:
    if (mask) *mask = EVENTER_WRITE | EVENTER_EXCEPTION;
    return 0;
  case SSL_ERROR_ZERO_RETURN: /* the read returns 0 (EOF) */
    return 1;
  default: /* the read fails at once, with the reason kept and logged */
    ev_ssl_fail(ctx, EV_SSL_OP_READ, sslerr, sys);
    return 1;
  }
}

int eventer_SSL_accept(eventer_t e, int *mask) {
  return ev_ssl_io(e, EV_SSL_OP_ACCEPT, NULL, 0, mask);
}

int eventer_SSL_connect(eventer_t e, int *mask) {
  return ev_ssl_io(e, EV_SSL_OP_CONNECT, NULL, 0, mask);
}

int eventer_SSL_renegotiate(eventer_t e) {
  eventer_ssl_ctx_t *ctx = e ? e->tls : NULL;
  if (!ctx || !ctx->done) {
    errno = EINVAL;
    return -1;
  }
  if (ctx->failed) {
    errno = EIO;
    return -1;
  }
  if (SSL_version(ctx->ssl) < TLS1_3_VERSION) {
    errno = EOPNOTSUPP;
    return -1;
  }
  ERR_clear_error();
  if (SSL_key_update(ctx->ssl, SSL_KEY_UPDATE_REQUESTED) != 1) {
    char ossl[256];
    ev_ssl_err_text(ossl, sizeof(ossl), NULL);
    ev_set_str(&ctx->last_error, ossl);
    errno = EIO;
    return -1;
  }
  return 0;
}

/* ---- coroutines ------------------------------------------------------------------------------ */

static int ev_ssl_aco_handshake(eventer_aco_t ae, int op,
                                struct timeval *timeout) {
  eventer_t e = (eventer_t)ae;
  if (!e || !e->tls || !eventer_is_aco(e) || !eventer_in_aco() ||
      (timeout && ev_bad_delay(timeout))) {
    errno = EINVAL;
    return -1;
  }
  uint64_t deadline = 0;
  if (timeout)
    deadline = eventer_mono_ns() + (uint64_t)timeout->tv_sec * 1000000000u +
               (uint64_t)timeout->tv_usec * 1000u;
  eventer_ref(e); /* e outlives our waits, whoever frees it meanwhile */
  int rv = -1, err = 0;
  for (;;) {
    int mask = 0;
    if (ev_ssl_io(e, op, NULL, 0, &mask) > 0) {
      rv = 0;
      break;
    }
    err = errno;
    if (err != EAGAIN) break; /* failed, and logged */
    struct timeval left, *lp = NULL;
    if (timeout) {
      uint64_t now = eventer_mono_ns();
      if (now >= deadline) {
        err = ETIMEDOUT;
        break;
      }
      /* round up: {0,0} would mean "do not wait" */
      uint64_t rem_us = (deadline - now + 999) / 1000;
      left.tv_sec = (time_t)(rem_us / 1000000u);
      left.tv_usec = (suseconds_t)(rem_us % 1000000u);
      lp = &left;
    }
    if (eventer_aco_wait_ready(ae, mask & (EVENTER_READ | EVENTER_WRITE), lp) != 0) {
      err = errno; /* ECANCELED, EBADF: the caller's doing, not logged */
      break;
    }
  }
  /* the context as it is now: a close meanwhile took the old one */
  if (err == ETIMEDOUT && e->tls) {
    char reason[96];
    snprintf(reason, sizeof(reason), "handshake timed out after %ld ms",
             (long)timeout->tv_sec * 1000 + (long)timeout->tv_usec / 1000);
    ev_ssl_log_once(e->tls, op, reason);
  }
  eventer_deref(e);
  if (rv != 0) errno = err;
  return rv;
}

int eventer_aco_ssl_accept(eventer_aco_t e, struct timeval *timeout) {
  return ev_ssl_aco_handshake(e, EV_SSL_OP_ACCEPT, timeout);
}

int eventer_aco_ssl_connect(eventer_aco_t e, struct timeval *timeout) {
  return ev_ssl_aco_handshake(e, EV_SSL_OP_CONNECT, timeout);
}

/* ---- what the handshake learnt ------------------------------------------------------------------ */

X509 *eventer_ssl_get_peer_certificate(eventer_ssl_ctx_t *ctx) {
  return ctx ? SSL_get1_peer_certificate(ctx->ssl) : NULL;
}

STACK_OF(X509) *eventer_ssl_get_peer_cert_chain(eventer_ssl_ctx_t *ctx) {
  if (!ctx) return NULL;
  if (ctx->chain_built) return ctx->chain;
  X509 *leaf = SSL_get0_peer_certificate(ctx->ssl);
  if (!leaf) return NULL; /* none yet: build it when there is one */
  STACK_OF(X509) *chain = sk_X509_new_null();
  if (!chain) return NULL;
  X509_up_ref(leaf);
  sk_X509_push(chain, leaf);
  /* a client's list starts with the leaf, a server's does not */
  STACK_OF(X509) *sent = SSL_get_peer_cert_chain(ctx->ssl);
  for (int i = 0; sent && i < sk_X509_num(sent); i++) {
    X509 *x = sk_X509_value(sent, i);
    if (i == 0 && X509_cmp(x, leaf) == 0) continue;
    X509_up_ref(x);
    sk_X509_push(chain, x);
  }
  ctx->chain = chain;
  ctx->chain_built = 1;
  return chain;
}

static const char *ev_ssl_peer_name_str(eventer_ssl_ctx_t *ctx, char **slot,
                                        int issuer) {
  if (!ctx) return NULL;
  if (!*slot) {
    X509 *peer = SSL_get0_peer_certificate(ctx->ssl);
    if (!peer) return NULL;
    char buf[1024];
    X509_NAME_oneline(issuer ? X509_get_issuer_name(peer)
                             : X509_get_subject_name(peer),
                      buf, sizeof(buf));
    *slot = strdup(buf);
  }
  return *slot;
}

const char *eventer_ssl_get_peer_subject(eventer_ssl_ctx_t *ctx) {
  return ev_ssl_peer_name_str(ctx, ctx ? &ctx->subject : NULL, 0);
}

const char *eventer_ssl_get_peer_issuer(eventer_ssl_ctx_t *ctx) {
  return ev_ssl_peer_name_str(ctx, ctx ? &ctx->issuer : NULL, 1);
}

const char *eventer_ssl_get_peer_san_list(eventer_ssl_ctx_t *ctx) {
  if (!ctx) return NULL;
  if (ctx->san_list) return ctx->san_list;
  X509 *peer = SSL_get0_peer_certificate(ctx->ssl);
  if (!peer) return NULL;
  GENERAL_NAMES *names = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
  if (!names) return NULL;
  size_t cap = 256, used = 0;
  char *out = malloc(cap);
  for (int i = 0; out && i < sk_GENERAL_NAME_num(names); i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type != GEN_DNS) continue;
    const ASN1_STRING *s = g->d.dNSName;
    size_t need = used + (used ? 2 : 0) + (size_t)ASN1_STRING_length(s) + 1;
    if (need > cap) {
      while (cap < need) cap *= 2;
      char *grown = realloc(out, cap);
      if (!grown) {
        free(out);
        out = NULL;
        break;
      }
      out = grown;
    }
    if (used) {
      memcpy(out + used, ", ", 2);
      used += 2;
    }
    memcpy(out + used, ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
    used += (size_t)ASN1_STRING_length(s);
    out[used] = 0;
  }
  GENERAL_NAMES_free(names);
  if (out && used == 0) {
    free(out);
    out = NULL;
  }
  ctx->san_list = out;
  return out;
}

const char *eventer_ssl_get_peer_error(eventer_ssl_ctx_t *ctx) {
  return ctx ? ctx->cert_error : NULL;
}

long eventer_ssl_get_verify_result(eventer_ssl_ctx_t *ctx) {
  return ctx ? SSL_get_verify_result(ctx->ssl) : -1;
}

static time_t ev_ssl_asn1_time(const ASN1_TIME *t) {
  struct tm tm;
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return timegm(&tm);
}

time_t eventer_ssl_get_peer_start_time(eventer_ssl_ctx_t *ctx) {
  X509 *peer = ctx ? SSL_get0_peer_certificate(ctx->ssl) : NULL;
  return peer ? ev_ssl_asn1_time(X509_get0_notBefore(peer)) : 0;
}

time_t eventer_ssl_get_peer_end_time(eventer_ssl_ctx_t *ctx) {
  X509 *peer = ctx ? SSL_get0_peer_certificate(ctx->ssl) : NULL;
  return peer ? ev_ssl_asn1_time(X509_get0_notAfter(peer)) : 0;
}

static int ev_ssl_commonname(X509 *cert, char *buff, int len) {
  if (!cert || !buff || len <= 0) return -1;
  X509_NAME *name = X509_get_subject_name(cert);
  int pos = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
  if (pos < 0) return -1;
  X509_NAME_ENTRY *entry = X509_NAME_get_entry(name, pos);
  unsigned char *utf8 = NULL;
  int n = entry ? ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry)) : -1;
  if (n < 0) return -1;
  int copy = n < len - 1 ? n : len - 1;
  memcpy(buff, utf8, (size_t)copy);
  buff[copy] = 0;
  OPENSSL_free(utf8);
  return copy;
}

int eventer_ssl_get_peer_commonname(eventer_ssl_ctx_t *ctx, char *buff,
                                    int len) {
  return ctx ? ev_ssl_commonname(SSL_get0_peer_certificate(ctx->ssl), buff, len)
             : -1;
}

int eventer_ssl_get_local_commonname(eventer_ssl_ctx_t *ctx, char *buff,
                                     int len) {
  /* SSL_get_certificate: borrowed (after an SNI switch, the one in use) */
  return ctx ? ev_ssl_commonname(SSL_get_certificate(ctx->ssl), buff, len) : -1;
}

const char *eventer_ssl_get_last_error(eventer_ssl_ctx_t *ctx) {
  return ctx ? ctx->last_error : NULL;
}

const char *eventer_ssl_get_sni_name(eventer_ssl_ctx_t *ctx) {
  return ctx ? ctx->sni_name : NULL;
}

SSL_SESSION *eventer_ssl_get_session(eventer_ssl_ctx_t *ctx) {
  return ctx ? SSL_get_session(ctx->ssl) : NULL;
}

int eventer_ssl_session_reused(eventer_ssl_ctx_t *ctx) {
  return ctx && ctx->done ? SSL_session_reused(ctx->ssl) : 0;
}

const char *eventer_ssl_get_cipher_list(eventer_ssl_ctx_t *ctx, int prio) {
  return ctx ? SSL_get_cipher_list(ctx->ssl, prio) : NULL;
}

const char *eventer_ssl_get_current_cipher(eventer_ssl_ctx_t *ctx) {
  return ctx && ctx->done ? SSL_get_cipher_name(ctx->ssl) : NULL;
}

int eventer_ssl_get_method(eventer_ssl_ctx_t *ctx) {
  if (!ctx) return -1;
  return ctx->done ? SSL_version(ctx->ssl) : 0;
}
