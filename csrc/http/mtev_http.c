/*
 * mtev_http.c - the HTTP/1.1 engine: sessions, requests, responses.
 *
 * Shape.  A session (one per connection) is small and lives as long as
 * the connection.  While a request is being received, served or answered
 * it borrows a work area from a per-thread pool: the input buffer, the
 * request (parsed in place: header values are NUL-terminated inside the
 * input buffer, nothing is copied), the response being built and the
 * queue of bytes waiting for the socket.  An idle keep-alive connection
 * holds no work area.
 *
 * Bytes.  Response bodies and the output queue are chains of blocks
 * (pooled per thread).  Each body block keeps headroom for a chunk-size
 * line and tailroom for the CRLF after it, so chunked framing never
 * copies the body.  The output queue is written with one sendmsg per
 * pass (an iovec per block).
 *
 * Driving.  ev_http_drive() runs the session in main context (the fd
 * callback, the session's task, its timer) until it has to wait, and
 * returns the fd interest.  It never runs inside a coroutine: a coroutine
 * that needs the socket parks (ev_http_co_wait) and the drive, which sees
 * the fd become ready, wakes it.  A coroutine that ends posts the
 * session's task, and the drive goes on with the next request.
 * Responses to pipelined requests are held while the next request is
 * served and leave together: when no complete request is left, or, when
 * a handler has not answered yet, at the end of the loop's pass over
 * ready work (an end-of-pass hook of the eventer), so that a slow handler
 * never holds back the responses before it for longer than one pass.
 *
 * Lifetimes.  The connection holds one reference on the session, a
 * posted task another, users their own (mtev_http_session_ref_inc).  The
 * connection is torn down (event removed and closed, acceptor closure
 * freed) only when no coroutine is serving a request; the memory goes
 * with the last reference.
 */
#include "mtev_http.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "eventer_aco.h"
#include "eventer_aco_impl.h"
#include "eventer_sys.h"
#include "http_impl.h"
#include "http_parse.h"

#define EV_HTTP_ASSERT(cond, rule) EV_ASSERT(cond, rule)

/* ---- limits ----------------------------------------------------------------- */

static mtev_http_limits_t ev_limits = {
    8192, 65536, EV_HTTP_MAX_HEADERS, 64u << 20, 10000, 60000};

#define EV_LD(f) __atomic_load_n(&ev_limits.f, __ATOMIC_RELAXED)
#define EV_ST(f, v) __atomic_store_n(&ev_limits.f, (v), __ATOMIC_RELAXED)

void mtev_http_get_limits(mtev_http_limits_t *out) {
  if (!out) return;
  out->max_request_line = EV_LD(max_request_line);
  out->max_head = EV_LD(max_head);
  out->max_headers = EV_LD(max_headers);
  out->max_body = EV_LD(max_body);
  out->header_timeout_ms = EV_LD(header_timeout_ms);
  out->idle_timeout_ms = EV_LD(idle_timeout_ms);
}

int mtev_http_set_limits(const mtev_http_limits_t *in) {
  if (!in || in->max_request_line < 16 || in->max_head < in->max_request_line ||
      in->max_head > (64u << 20) || in->max_headers == 0 ||
      in->max_headers > EV_HTTP_MAX_HEADERS || in->header_timeout_ms == 0 ||
      in->idle_timeout_ms == 0) {
    errno = EINVAL;
    return -1;
  }
  EV_ST(max_request_line, in->max_request_line);
  EV_ST(max_head, in->max_head);
  EV_ST(max_headers, in->max_headers);
  EV_ST(max_body, in->max_body);
  EV_ST(header_timeout_ms, in->header_timeout_ms);
  EV_ST(idle_timeout_ms, in->idle_timeout_ms);
  return 0;
}

static ev_http_limits_t ev_plim(void) {
  ev_http_limits_t l = {EV_LD(max_request_line), EV_LD(max_head),
                        EV_LD(max_headers)};
  return l;
}

static uint64_t ev_ms_ns(uint32_t ms) { return (uint64_t)ms * 1000000u; }

/* ---- blocks, chains and the per-thread pools ---------------------------------- */

typedef struct ev_http_blk {
  struct ev_http_blk *next;
  uint32_t start, end; /* data: d[start..end) */
  uint32_t cap;        /* bytes of d */
  uint32_t std;        /* a standard block: goes back to the pool */
  char d[];
} ev_http_blk_t;

#define EV_BLK_ALLOC 16384
#define EV_BLK_CAP ((uint32_t)(EV_BLK_ALLOC - sizeof(ev_http_blk_t)))
#define EV_BLK_HEADROOM 24 /* "<16 hex digits>\r\n" */
#define EV_BLK_TAILROOM 8  /* "\r\n" or "\r\n0\r\n\r\n" */
#define EV_POOL_BLKS 64
#define EV_POOL_WORKS 32

typedef struct {
  ev_http_blk_t *head, *tail;
  size_t bytes;
} ev_http_chain_t;

#define EV_HTTP_INBUF 8192
#define EV_HTTP_CORK (64 * 1024) /* responses held back for a batch */
#define EV_HTTP_INLINE_BODY 4096 /* bodies up to this are copied after the head */
#define EV_HTTP_IBODY 1024 /* body bytes a response holds before using blocks */
#define EV_HTTP_DIRECT_MAX 512 /* the common answer sent at once, at most */
#define EV_CT_ANS 160 /* the common answer's head, at most (ev_ct.ans) */
#define EV_HTTP_DRAIN_MAX (256 * 1024)
#define EV_HTTP_LINGER_NS 2000000000ull

enum { EV_BODY_NONE = 0, EV_BODY_CL, EV_BODY_CHUNKED };

struct mtev_http_request {
  ev_http_head_t h;
  const char *proto; /* "HTTP/1.1" / "HTTP/1.0" */
  uint64_t start_ns;
  /* body */
  uint8_t body_mode, body_done, sent_continue, ae_parsed;
  uint32_t accept_enc; /* MTEV_HTTP_GZIP | MTEV_HTTP_DEFLATE */
  uint64_t body_left;  /* EV_BODY_CL: bytes not yet read */
  uint64_t body_read;
  ev_http_chunked_t ck;
  /* the upload (mtev_http_request_set_upload / complete_upload) */
  void *upload;
  int64_t upload_size;
  void (*upload_free)(void *, int64_t, void *);
  void *upload_closure;
  char *up_buf; /* complete_upload in progress */
  size_t up_len, up_cap;
  uint8_t up_done; /* complete_upload finished */
  uint8_t holds;   /* an upload, its buffer or the query's may be held */
  /* query string, parsed on demand */
  int nqs;            /* -1: not parsed */
  char *qs_buf;
  const char **qs;    /* nqs key, value pairs */
  ev_http_hdr_t hdrs[EV_HTTP_MAX_HEADERS];
};

/* Content-Type values shorter than this are kept in the response (and
 * the thread's last one with a ready-made head); longer ones go to the
 * header lines. */
#define EV_CT_MAX 48

struct mtev_http_response {
  int status;
  uint32_t reason_len; /* 0: the standard reason phrase for status */
  char reason[48];
  uint32_t options;
  uint8_t headers_sent, complete, failed, chunked, close_after, no_body;
  uint8_t no_length; /* 1xx, 204, 304: no Content-Length either */
  uint8_t cut;       /* mtev_http_response_abort: complete and failed for the
                      * engine, not complete for the handler */
  char *hbuf; /* "Name: value\r\n" lines */
  uint32_t hlen, hcap;
  /* Content-Type (when has_ct; it is then in none of the lines):
   * ct[0..ct_len), zero-padded */
  uint8_t has_ct, ct_len;
  uint64_t ct_gen; /* the generation of the thread's known type it is */
  char ct[EV_CT_MAX];
  /* The body: its first bytes in ibody (a short body never needs a
   * block), the rest in the chain.  ilen > 0 only while the chain is
   * empty: the first append that does not fit moves them to it. */
  uint32_t ilen;
  ev_http_chain_t body;
  z_stream *z;
  size_t bytes_written;
  char ibody[EV_HTTP_IBODY];
};

typedef struct ev_http_work {
  struct ev_http_work *next_free;
  char *in;            /* input buffer: inbuf, or a larger one */
  size_t in_cap, in_start, in_end;
  size_t head_scan;    /* ev_http_head_end's resume point */
  size_t head_end;     /* bytes [0..head_end) belong to the request */
  uint8_t fresh;       /* req and res are as ev_work_put leaves them */
  mtev_http_request req;
  mtev_http_response res;
  ev_http_chain_t out; /* bytes for the socket, in order */
  char inbuf[EV_HTTP_INBUF];
} ev_http_work_t;

struct mtev_http_connection {
  mtev_http_session_ctx *s;
};

enum { /* session states */
  ST_IDLE = 0, /* between requests, no bytes of the next one */
  ST_HEAD,     /* some bytes of a head */
  ST_HANDLER,  /* a request is with its dispatcher / coroutine */
  ST_DRAIN,    /* discarding the body the handler did not read */
  ST_CLOSING,  /* writing what is left, then closing */
  ST_LINGER,   /* write side shut: reading until EOF (or 2 s) */
  ST_DEAD      /* the connection is over */
};

enum { CW_NONE = 0, CW_READ, CW_DRAIN, CW_MASK }; /* what a coroutine awaits */

/* The fields every request reads or writes come first, in the first 200
 * bytes (what the drive and the dispatch read; the clock, the timer's
 * deadlines and the state bytes; the timer node, whose `loop` the drive
 * checks, and the I/O counts); the rest is for the less common paths.
 * Spread over the whole struct they were five cache lines a request,
 * each a miss when the connection's turn comes again.  (A 64-byte
 * aligned allocation would make them three exactly, but costs an idle
 * connection 140 bytes more.) */
struct mtev_http_session_ctx {
  /* line 0 */
  eventer_t e;
  ev_http_work_t *w;
  ev_aco_t *co;               /* the coroutine serving the request */
  mtev_http_dispatch_func dispatcher;
  mtev_http_dispatch_func probe; /* ev_http_session_set_probe's */
  void *dclosure;
  uint64_t seq;
  uint64_t drive_ns;          /* the clock at the start of the drive pass */
  /* line 1 */
  uint64_t last_io_ns;
  uint64_t deadline_ns;       /* when the timer acts (0: never) */
  uint64_t armed_ns;          /* when the timer node fires */
  mtev_http_dispatch_func co_fn; /* what the coroutine calls (NULL: the
                                  * dispatcher) */
  eventer_pool_t *move_to;
  uint32_t refcnt;
  int handler_mask;           /* classic dispatcher: call again on this */
  uint8_t state;
  uint8_t co_wait;            /* CW_* */
  uint8_t aborted;            /* the connection is broken */
  uint8_t cut_asked;          /* __atomic: mtev_http_response_abort from a
                               * loop callback while the request's
                               * coroutine was parked (a job thread may be
                               * building the response): the coroutine
                               * applies it (ev_res_usable, its end) */
  uint8_t peer_eof;
  uint8_t in_drive;
  uint8_t registered;         /* e is in the loop */
  uint8_t task_posted;
  uint8_t want_aco;
  uint8_t sniff;
  uint8_t skip_crlf;          /* CR or LF bytes still to be ignored before
                               * the next request line (after a body) */
  uint8_t rd_ready, wr_blocked;
  uint8_t redispatch;         /* call the dispatcher again (after a move) */
  uint8_t raw_io;             /* the fd takes socket calls of our own
                               * (sendmsg, shutdown, MSG_PEEK): the POSIX
                               * opset, or a listener's plain one */
  uint8_t flying;             /* moved, not yet driven on its new loop:
                               * in ev_http_fly (under ev_http_fly_lock) */
  /* line 2 */
  eventer_timer_node_t timer;
  ev_http_io_counts_t io;     /* the connection's I/O calls */
  uint64_t head_start_ns;     /* set when a request's head starts */
  /* the rest */
  ev_pass_hook_t flush_hook;  /* queued: held responses go out when the
                               * loop's pass ends (holds a reference) */
  uint64_t hold_seq;          /* the request whose answer the hold waits for */
  mtev_acceptor_closure_t *ac;
  mtev_http_connection conn;
  eventer_aco_co_t *waiter;   /* its handle while it waits in co_wait */
  uint64_t drained;
  eventer_task_t task;
  int co_wait_mask;
  struct mtev_http_session_ctx *fly_next, **fly_prev; /* while flying */
};

/* The session's clock: CLOCK_MONOTONIC_COARSE, a read of a kernel
 * variable (the precise clock costs a tenth of a request's user time on
 * a VM).  Its resolution (a few ms) bounds how precise the HTTP timeouts
 * are; they are seconds long. */
static inline uint64_t ev_coarse_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t ev_http_now(mtev_http_session_ctx *s) {
  return s->in_drive ? s->drive_ns : ev_coarse_ns();
}

static int64_t ev_sessions_live;

/* CLOCK_MONOTONIC now: read once per drive pass, else from the clock. */
static inline uint64_t ev_http_now(mtev_http_session_ctx *s);
int64_t mtev_http_session_count(void) {
  return __atomic_load_n(&ev_sessions_live, __ATOMIC_RELAXED);
}

/* Per-thread pools of standard blocks and work areas.  A thread that
 * exits frees its pools (pthread key destructor). */
static __thread struct ev_http_tpool {
  ev_http_blk_t *blks;
  ev_http_work_t *works;
  int nblks, nworks, keyed;
} ev_tp;
static pthread_key_t ev_tp_key;
static pthread_once_t ev_tp_once = PTHREAD_ONCE_INIT;

static void ev_tp_destroy(void *arg) {
  struct ev_http_tpool *tp = arg;
  while (tp->blks) {
    ev_http_blk_t *b = tp->blks;
    tp->blks = b->next;
    free(b);
  }
  while (tp->works) {
    ev_http_work_t *w = tp->works;
    tp->works = w->next_free;
    free(w->res.hbuf);
    free(w);
  }
  tp->nblks = tp->nworks = 0;
}
static void ev_tp_key_make(void) { pthread_key_create(&ev_tp_key, ev_tp_destroy); }
static inline void ev_tp_touch(void) {
  if (__builtin_expect(!ev_tp.keyed, 0)) {
    pthread_once(&ev_tp_once, ev_tp_key_make);
    pthread_setspecific(ev_tp_key, &ev_tp);
    ev_tp.keyed = 1;
  }
}

/* A block with at least `need` bytes of room after the headroom. */
static ev_http_blk_t *ev_blk_new(size_t need) {
  ev_http_blk_t *b;
  if (need + EV_BLK_HEADROOM + EV_BLK_TAILROOM <= EV_BLK_CAP) {
    ev_tp_touch();
    if (ev_tp.blks) {
      b = ev_tp.blks;
      ev_tp.blks = b->next;
      ev_tp.nblks--;
    } else {
      b = malloc(EV_BLK_ALLOC);
      if (!b) return NULL;
      b->cap = EV_BLK_CAP;
      b->std = 1;
    }
  } else {
    size_t cap = need + EV_BLK_HEADROOM + EV_BLK_TAILROOM;
    if (cap > UINT32_MAX - sizeof(*b)) return NULL;
    b = malloc(sizeof(*b) + cap);
    if (!b) return NULL;
    b->cap = (uint32_t)cap;
    b->std = 0;
  }
  b->next = NULL;
  b->start = b->end = EV_BLK_HEADROOM;
  return b;
}

static void ev_blk_free(ev_http_blk_t *b) {
  if (b->std && ev_tp.keyed && ev_tp.nblks < EV_POOL_BLKS) {
    b->next = ev_tp.blks;
    ev_tp.blks = b;
    ev_tp.nblks++;
  } else {
    free(b);
  }
}

static void ev_chain_clear(ev_http_chain_t *c) {
  while (c->head) {
    ev_http_blk_t *b = c->head;
    c->head = b->next;
    ev_blk_free(b);
  }
  c->tail = NULL;
  c->bytes = 0;
}

static void ev_chain_push(ev_http_chain_t *c, ev_http_blk_t *b) {
  b->next = NULL;
  if (c->tail)
    c->tail->next = b;
  else
    c->head = b;
  c->tail = b;
  c->bytes += b->end - b->start;
}

/* Moves all of src to the end of dst. */
static void ev_chain_move(ev_http_chain_t *dst, ev_http_chain_t *src) {
  if (!src->head) return;
  if (dst->tail)
    dst->tail->next = src->head;
  else
    dst->head = src->head;
  dst->tail = src->tail;
  dst->bytes += src->bytes;
  src->head = src->tail = NULL;
  src->bytes = 0;
}

/* Room for appending at the chain's tail (keeping the tailroom). */
static inline size_t ev_blk_room(const ev_http_blk_t *b) {
  uint32_t lim = b->cap - EV_BLK_TAILROOM;
  return b->end < lim ? lim - b->end : 0; /* framing may use the tailroom */
}

static int ev_chain_append(ev_http_chain_t *c, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ev_http_blk_t *t = c->tail;
    if (!t || ev_blk_room(t) == 0) {
      /* a big append gets one block of its own size */
      t = ev_blk_new(len > EV_BLK_CAP * 2 ? len : 0);
      if (!t) return -1;
      ev_chain_push(c, t);
    }
    size_t n = ev_blk_room(t);
    if (n > len) n = len;
    memcpy(t->d + t->end, p, n);
    t->end += (uint32_t)n;
    c->bytes += n;
    p += n;
    len -= n;
  }
  return 0;
}

/* A tail block with at least `want` free bytes (for zlib and printf). */
static ev_http_blk_t *ev_chain_room(ev_http_chain_t *c, size_t want) {
  ev_http_blk_t *t = c->tail;
  if (t && ev_blk_room(t) >= want) return t;
  t = ev_blk_new(want);
  if (!t) return NULL;
  ev_chain_push(c, t);
  return t;
}

/* Moves a response's inline body bytes to its chain (before the chain
 * is appended to, framed or sent).  0, or -1 when out of memory. */
static int ev_res_spill(mtev_http_response *r) {
  if (!r->ilen) return 0;
  uint32_t n = r->ilen;
  r->ilen = 0;
  return ev_chain_append(&r->body, r->ibody, n);
}

/* ---- small helpers --------------------------------------------------------------- */

/* The standard reason phrase for a status, and its length. */
static const char *ev_reason(int code, size_t *len) {
#define EV_R(str) do { *len = sizeof(str) - 1; return str; } while (0)
  switch (code) {
  case 100: EV_R("Continue");
  case 200: EV_R("OK");
  case 201: EV_R("Created");
  case 202: EV_R("Accepted");
  case 204: EV_R("No Content");
  case 206: EV_R("Partial Content");
  case 301: EV_R("Moved Permanently");
  case 302: EV_R("Found");
  case 304: EV_R("Not Modified");
  case 400: EV_R("Bad Request");
  case 401: EV_R("Unauthorized");
  case 403: EV_R("Forbidden");
  case 404: EV_R("Not Found");
  case 405: EV_R("Method Not Allowed");
  case 408: EV_R("Request Timeout");
  case 409: EV_R("Conflict");
  case 411: EV_R("Length Required");
  case 413: EV_R("Content Too Large");
  case 414: EV_R("URI Too Long");
  case 415: EV_R("Unsupported Media Type");
  case 417: EV_R("Expectation Failed");
  case 431: EV_R("Request Header Fields Too Large");
  case 500: EV_R("Internal Server Error");
  case 501: EV_R("Not Implemented");
  case 502: EV_R("Bad Gateway");
  case 503: EV_R("Service Unavailable");
  case 505: EV_R("HTTP Version Not Supported");
  default: EV_R("Unknown");
  }
#undef EV_R
}

/* Per thread, rebuilt once a second: the Date line, and the start of the
 * most common head, "HTTP/1.1 200 OK\r\n" and that Date line, so that a
 * 200 response starts with one copy. */
#define EV_STATUS_200 "HTTP/1.1 200 OK\r\n"
static __thread struct {
  time_t sec;
  uint32_t len, ok_len;
  char line[40];  /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" (38) */
  char ok[64];    /* EV_STATUS_200 + line */
} ev_date;

/* The drive refreshes the date once per pass (ev_date_tick); a response
 * built outside a drive refreshes it itself. */
static void ev_date_tick(void);
static __thread int ev_in_drive;

static inline void ev_date_fresh(void) {
  if (!ev_in_drive || ev_date.len == 0) ev_date_tick();
}

static const char *ev_date_line(size_t *len) {
  ev_date_fresh();
  *len = ev_date.len;
  return ev_date.line;
}

/* The drive's coarse monotonic clock when the wall clock's second may
 * next change (0: not known): until then the drive knows the date is
 * fresh without asking the clock (ev_date_tick_at). */
static __thread uint64_t ev_date_next_ns;
static void ev_date_set(time_t now);

/* IMF-fixdate (RFC 9110 5.6.7), in English whatever the locale. */
static void ev_date_tick(void) {
  time_t now = time(NULL);
  if (now == ev_date.sec && ev_date.len != 0) return;
  ev_date_set(now);
}

/* The drive's refresh, given its coarse monotonic time: the wall clock is
 * read only when a second may have passed since the last read (time(2)'s
 * second is CLOCK_REALTIME_COARSE's; both coarse clocks advance at the same
 * tick).  A step of the wall clock shows in the Date line within a
 * second. */
static __attribute__((noinline)) void ev_date_tick_at(uint64_t mono) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  ev_date_next_ns = mono + (1000000000u - (uint64_t)ts.tv_nsec);
  if (ts.tv_sec != ev_date.sec || ev_date.len == 0) ev_date_set(ts.tv_sec);
}

static void ev_date_set(time_t now) {
  static const char days[] = "SunMonTueWedThuFriSat";
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  struct tm tm;
  gmtime_r(&now, &tm);
  char *p = ev_date.line;
  memcpy(p, "Date: ", 6);
  memcpy(p + 6, days + 3 * tm.tm_wday, 3);
  p[9] = ',';
  p[10] = ' ';
  p[11] = (char)('0' + tm.tm_mday / 10);
  p[12] = (char)('0' + tm.tm_mday % 10);
  p[13] = ' ';
  memcpy(p + 14, months + 3 * tm.tm_mon, 3);
  p[17] = ' ';
  int y = tm.tm_year + 1900;
  if (y < 0 || y > 9999) y = 0; /* four digits, or time is broken anyway */
  p[18] = (char)('0' + y / 1000);
  p[19] = (char)('0' + y / 100 % 10);
  p[20] = (char)('0' + y / 10 % 10);
  p[21] = (char)('0' + y % 10);
  p[22] = ' ';
  p[23] = (char)('0' + tm.tm_hour / 10);
  p[24] = (char)('0' + tm.tm_hour % 10);
  p[25] = ':';
  p[26] = (char)('0' + tm.tm_min / 10);
  p[27] = (char)('0' + tm.tm_min % 10);
  p[28] = ':';
  p[29] = (char)('0' + tm.tm_sec / 10);
  p[30] = (char)('0' + tm.tm_sec % 10);
  memcpy(p + 31, " GMT\r\n", 6);
  ev_date.len = 37;
  ev_date.ok_len = (uint32_t)(sizeof(EV_STATUS_200) - 1 + ev_date.len);
  memcpy(ev_date.ok, EV_STATUS_200, sizeof(EV_STATUS_200) - 1);
  memcpy(ev_date.ok + sizeof(EV_STATUS_200) - 1, ev_date.line, ev_date.len);
  ev_date.sec = now;
}

/* Per thread: the Content-Type value last given to
 * mtev_http_response_standard (shorter than EV_CT_MAX, checked), and the
 * head of a 200 response with it: EV_STATUS_200, the Date line and its
 * Content-Type line, rebuilt when the date or the type changes.  A
 * handler answers with the same type request after request: the type is
 * recognised with a compare of its bytes (no strlen, no CR/LF check), and
 * the head is one fixed-size copy. */
static __thread struct {
  const char *ptr;          /* the string it was learnt from */
  uint64_t gen;             /* unique to each learning, of any thread */
  uint32_t len;
  char bytes[EV_CT_MAX];    /* its bytes, zero-padded */
  time_t head_sec;          /* ev_date.sec head was built for (0: none) */
  uint32_t head_len;
  char head[128];
  /* head and "Content-Length: N\r\n\r\n" for N = ans_for (UINT32_MAX:
   * none): the common answer's whole head while its bodies keep their
   * length (ev_put_common_answer); its first EV_CT_ANS bytes are what a
   * copy of it takes.  ev_http_send_direct puts the body right after the
   * head and sends the answer from here. */
  uint32_t ans_for, ans_len;
  char ans[EV_HTTP_DIRECT_MAX];
} ev_ct;

/* type is the thread's known one: the same string, with the same bytes
 * and its NUL where they end. */
static inline int ev_ct_known(const char *type) {
  if (type != ev_ct.ptr) return 0;
  size_t n = ev_ct.len, i = 0;
  if (n >= 7 && n <= 15) {
    /* the n bytes and the NUL in two overlapping words (bytes[] is
     * zero-padded: its byte n is the NUL) */
    uint64_t a0, a1, b0, b1;
    memcpy(&a0, type, 8);
    memcpy(&b0, ev_ct.bytes, 8);
    memcpy(&a1, type + n - 7, 8);
    memcpy(&b1, ev_ct.bytes + n - 7, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
  }
  for (; i + 8 <= n; i += 8) {
    uint64_t a, b;
    memcpy(&a, type + i, 8);
    memcpy(&b, ev_ct.bytes + i, 8);
    if (a != b) return 0;
  }
  for (; i < n; i++)
    if (type[i] != ev_ct.bytes[i]) return 0;
  return type[n] == 0;
}

/* Makes type the thread's known one if it is short and has no CR or LF:
 * 1, else 0. */
static int ev_ct_learn(const char *type) {
  size_t n = strnlen(type, EV_CT_MAX);
  if (n >= EV_CT_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (type[i] == '\r' || type[i] == '\n') return 0;
  static uint64_t gens; /* atomic */
  ev_ct.ptr = type;
  ev_ct.gen = __atomic_add_fetch(&gens, 1, __ATOMIC_RELAXED);
  ev_ct.len = (uint32_t)n;
  memset(ev_ct.bytes, 0, sizeof(ev_ct.bytes));
  memcpy(ev_ct.bytes, type, n);
  ev_ct.head_sec = 0;
  return 1;
}

/* r's Content-Type is the thread's known one: it was copied from this
 * thread's, which has not changed since (a response's type is only ever
 * a copy of a thread's known one; generations are unique across
 * threads). */
static inline int ev_ct_is_known(const mtev_http_response *r) {
  return r->has_ct && r->ct_gen == ev_ct.gen;
}

static void ev_ct_head_build(void) {
  char *p = ev_ct.head;
  memcpy(p, ev_date.ok, ev_date.ok_len);
  p += ev_date.ok_len;
  memcpy(p, "Content-Type: ", 14);
  p += 14;
  memcpy(p, ev_ct.bytes, ev_ct.len);
  p += ev_ct.len;
  memcpy(p, "\r\n", 2);
  p += 2;
  ev_ct.head_len = (uint32_t)(p - ev_ct.head);
  ev_ct.head_sec = ev_date.sec;
  ev_ct.ans_for = UINT32_MAX;
}

static int ev_lc_eq(const char *a, const char *b) { /* case-insensitive */
  for (;; a++, b++) {
    unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
    if (x >= 'A' && x <= 'Z') x |= 0x20;
    if (y >= 'A' && y <= 'Z') y |= 0x20;
    if (x != y) return 0;
    if (!x) return 1;
  }
}

/* s[0..n) are all tchar: four table loads a step, no branch each. */
static inline int ev_all_tchar(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  unsigned ok = 1;
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    ok &= ev_http_tchar[u[i]] & ev_http_tchar[u[i + 1]] &
          ev_http_tchar[u[i + 2]] & ev_http_tchar[u[i + 3]];
  for (; i < n; i++) ok &= ev_http_tchar[u[i]];
  return ok;
}

/* Nonzero when one of the 8 bytes of x is zero (exact: the borrow of a
 * zero byte can only mark bytes above a real zero). */
static inline uint64_t ev_swar_zero(uint64_t x) {
  return (x - 0x0101010101010101ull) & ~x & 0x8080808080808080ull;
}
static inline uint64_t ev_swar_crlf(const char *p) {
  uint64_t x;
  memcpy(&x, p, 8);
  return ev_swar_zero(x ^ 0x0d0d0d0d0d0d0d0dull) |
         ev_swar_zero(x ^ 0x0a0a0a0a0a0a0a0aull);
}

/* s[0..n) holds no CR and no LF (which a header value may not): eight
 * bytes a step, the last eight by an overlapping load. */
static inline int ev_no_crlf(const char *s, size_t n) {
  if (n < 8) {
    for (size_t i = 0; i < n; i++)
      if (s[i] == '\r' || s[i] == '\n') return 0;
    return 1;
  }
  uint64_t bad = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) bad |= ev_swar_crlf(s + i);
  if (i < n) bad |= ev_swar_crlf(s + n - 8);
  return !bad;
}

/* ---- sessions ------------------------------------------------------------------------ */

static void ev_http_timer_fire(eventer_timer_node_t *n, struct timeval *now);
static void ev_http_task_run(eventer_task_t *t, struct timeval *now);
static void ev_http_flush_hook(ev_pass_hook_t *h, int idle);
static void ev_http_teardown(mtev_http_session_ctx *s, int in_cb);
static int ev_http_drive(mtev_http_session_ctx *s, int mask, int in_cb,
                         int *done);

mtev_http_session_ctx *mtev_http_session_ctx_new(mtev_http_dispatch_func f,
                                                 void *dispatcher_closure,
                                                 eventer_t e,
                                                 mtev_acceptor_closure_t *ac) {
  if (!f || !e || eventer_get_fd(e) < 0) {
    errno = EINVAL;
    return NULL;
  }
  mtev_http_session_ctx *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->e = e;
  s->ac = ac;
  s->dispatcher = f;
  s->dclosure = dispatcher_closure;
  s->conn.s = s;
  s->refcnt = 1; /* the connection's */
  s->registered = 1;
  s->timer.fire = ev_http_timer_fire;
  s->task.run = ev_http_task_run;
  s->flush_hook.run = ev_http_flush_hook;
  s->last_io_ns = ev_coarse_ns();
  s->raw_io = eventer_get_fd_opset(e) == eventer_POSIX_fd_opset ||
              mtev_acceptor_closure_raw_io(ac, e);
  __atomic_add_fetch(&ev_sessions_live, 1, __ATOMIC_RELAXED);
  return s;
}

uint32_t mtev_http_session_ref_inc(mtev_http_session_ctx *s) {
  return s ? ++s->refcnt : 0;
}

uint32_t mtev_http_session_ref_dec(mtev_http_session_ctx *s) {
  if (!s) return 0;
  EV_HTTP_ASSERT(s->refcnt > 0, "mtev_http_session_ref_dec: more releases "
                                "than references");
  if (--s->refcnt > 0) return s->refcnt;
  EV_HTTP_ASSERT(s->state == ST_DEAD && !s->co && !s->task_posted &&
                     !s->flush_hook.loop,
                 "a session is freed only after its connection is over");
  __atomic_sub_fetch(&ev_sessions_live, 1, __ATOMIC_RELAXED);
  free(s);
  return 0;
}

uint32_t mtev_http_session_ref_cnt(mtev_http_session_ctx *s) {
  return s ? s->refcnt : 0;
}

mtev_http_request *mtev_http_session_request(mtev_http_session_ctx *s) {
  return (s && s->w) ? &s->w->req : NULL;
}
mtev_http_response *mtev_http_session_response(mtev_http_session_ctx *s) {
  return (s && s->w) ? &s->w->res : NULL;
}
mtev_http_connection *mtev_http_session_connection(mtev_http_session_ctx *s) {
  return s ? &s->conn : NULL;
}
void *mtev_http_session_dispatcher_closure(mtev_http_session_ctx *s) {
  return s ? s->dclosure : NULL;
}
void mtev_http_session_set_dispatcher(mtev_http_session_ctx *s,
                                      mtev_http_dispatch_func f, void *c) {
  if (!s || !f) return;
  s->dispatcher = f;
  s->dclosure = c;
  s->probe = NULL; /* it goes with the dispatcher */
}
void ev_http_session_set_probe(mtev_http_session_ctx *s,
                               mtev_http_dispatch_func probe) {
  if (s) s->probe = probe;
}
void *ev_http_session_probe_args(mtev_http_session_ctx *s, uint64_t *seq,
                                 const char **method, size_t *mlen,
                                 const char **path, size_t *plen) {
  const ev_http_head_t *h = &s->w->req.h;
  *seq = s->seq;
  *method = h->method;
  *mlen = h->method_len;
  *path = h->path;
  *plen = h->path_len;
  return s->dclosure;
}
mtev_boolean mtev_http_session_aco(mtev_http_session_ctx *s) {
  return (s && s->co) ? mtev_true : mtev_false;
}
eventer_t mtev_http_connection_event(mtev_http_connection *c) {
  return (c && c->s) ? c->s->e : NULL;
}
uint64_t ev_http_request_seq(mtev_http_session_ctx *s) { return s ? s->seq : 0; }
int ev_http_session_io_counts(mtev_http_session_ctx *s, ev_http_io_counts_t *out) {
  if (!s || !out) {
    errno = EINVAL;
    return -1;
  }
  *out = s->io;
  return 0;
}
void ev_http_session_sniff(mtev_http_session_ctx *s) {
  if (s) s->sniff = 1;
}

/* Sessions on their way to a loop of another pool (ev_http_migrate):
 * their event's add is queued to that loop, or applied there and not yet
 * dispatched.  A loop that stops first never drives them; eventer_fini
 * finds them here (the loop's loop_fini, before its queues are dropped)
 * and ends them.  Moves are rare (a REST rule with a pool of its own): a
 * lock for each is nothing beside the cross-thread hand-off itself. */
static pthread_mutex_t ev_http_fly_lock = PTHREAD_MUTEX_INITIALIZER;
static mtev_http_session_ctx *ev_http_fly;

static void ev_http_fly_add(mtev_http_session_ctx *s) {
  pthread_mutex_lock(&ev_http_fly_lock);
  s->fly_next = ev_http_fly;
  if (ev_http_fly) ev_http_fly->fly_prev = &s->fly_next;
  s->fly_prev = &ev_http_fly;
  ev_http_fly = s;
  s->flying = 1;
  pthread_mutex_unlock(&ev_http_fly_lock);
}

static void ev_http_fly_del_locked(mtev_http_session_ctx *s) {
  *s->fly_prev = s->fly_next;
  if (s->fly_next) s->fly_next->fly_prev = s->fly_prev;
  s->fly_next = NULL;
  s->fly_prev = NULL;
  s->flying = 0;
}

static __attribute__((noinline, cold)) void ev_http_fly_del(mtev_http_session_ctx *s) {
  pthread_mutex_lock(&ev_http_fly_lock);
  ev_http_fly_del_locked(s);
  pthread_mutex_unlock(&ev_http_fly_lock);
}

/* The task continues the drive in main context (after a coroutine, or an
 * end called outside the drive).  A posted task holds a reference. */
static void ev_http_post(mtev_http_session_ctx *s) {
  if (s->task_posted || !s->e) return; /* e is NULL once torn down */
  if (eventer_task_post(&s->task) == 0) {
    s->task_posted = 1;
    s->refcnt++;
  }
}

/* The request whose response the session waits for: the current one, or
 * the next when the current one is complete. */
static inline uint64_t ev_http_awaited_seq(mtev_http_session_ctx *s) {
  return s->seq + (s->w && s->state == ST_HANDLER && s->w->res.complete ? 1 : 0);
}

/* Holds the output queue back until the loop's pass ends (the flush
 * hook then writes it): the responses to pipelined requests that finish
 * within one pass leave in one send, even when each is ended by a
 * coroutine the loop resumes separately.  On the session's loop.  0, or
 * -1 when the hook cannot be queued (write now instead). */
static int ev_http_hold(mtev_http_session_ctx *s) {
  if (s->flush_hook.loop) return 0;
  if (!s->e || ev_pass_hook_post(&s->flush_hook) != 0) return -1;
  s->refcnt++;
  s->hold_seq = ev_http_awaited_seq(s);
  return 0;
}

/* Takes a queued flush hook back (its bytes stay queued). */
static void ev_http_hold_cancel(mtev_http_session_ctx *s) {
  if (ev_pass_hook_cancel(&s->flush_hook)) {
    EV_HTTP_ASSERT(s->refcnt > 1, "a queued flush hook is not the session's "
                                  "last reference");
    s->refcnt--;
  }
}

/* The fd interest in writability: output that is not merely held for the
 * flush hook. */
static inline int ev_http_want_write(mtev_http_session_ctx *s) {
  return s->w && s->w->out.head && (s->wr_blocked || !s->flush_hook.loop);
}

/* On the session's loop thread (and, inside a coroutine, the one serving
 * it or another coroutine of that loop). */
static int ev_http_on_loop(mtev_http_session_ctx *s) {
  return s->e && eventer_loop_current() == eventer_get_owner_loop(s->e);
}

/* Inside the coroutine serving this session's request. */
static int ev_http_in_co(mtev_http_session_ctx *s) {
  /* the running libaco coroutine is s->co's (ev_aco_self() == s->co
   * without its loop lookups) */
  return s->co && aco_gtls_co == ev_aco_co(s->co);
}

/* ---- work areas ------------------------------------------------------------------------ */

static void ev_req_reset(mtev_http_request *r) {
  r->h.nhdr = 0;
  r->h.hdr = r->hdrs;
  r->body_mode = EV_BODY_NONE;
  r->body_done = 1;
  r->sent_continue = 0;
  r->ae_parsed = 0;
  r->accept_enc = 0;
  r->body_left = r->body_read = 0;
  memset(&r->ck, 0, sizeof(r->ck));
  r->nqs = -1;
}

/* Frees what the request holds.  Cheap when it holds nothing (most
 * requests): it runs after each one. */
static void ev_req_release_held(mtev_http_request *r) {
  r->holds = 0;
  if (r->upload_free) r->upload_free(r->upload, r->upload_size, r->upload_closure);
  if (r->upload || r->upload_size || r->upload_free) {
    r->upload = NULL;
    r->upload_size = 0;
    r->upload_free = NULL;
    r->upload_closure = NULL;
  }
  if (r->up_buf || r->up_done) {
    free(r->up_buf);
    r->up_buf = NULL;
    r->up_len = r->up_cap = 0;
    r->up_done = 0;
  }
  if (r->qs_buf) {
    free(r->qs_buf);
    r->qs_buf = NULL;
    r->qs = NULL;
  }
}
static inline void ev_req_release(mtev_http_request *r) {
  r->nqs = -1;
  if (__builtin_expect(r->holds, 0)) ev_req_release_held(r);
}

/* Copies n bytes to p; returns p + n.  The empty asm hides what the
 * compiler knows of n's range: knowing a bound (a body of at most 4 KiB,
 * a reason of at most 48 bytes) gcc inlines the copy as rep movs, whose
 * start-up costs more than libc's memcpy takes for a short string. */
static inline char *ev_put(char *p, const char *s, size_t n) {
  __asm__("" : "+r"(n));
  memcpy(p, s, n);
  return p + n;
}
/* Copies n bytes from s to d: up to 32 bytes with two (overlapping) moves
 * of 16 bytes, a word or a half, no call; more by memcpy.  For the short
 * bodies of most answers and the Go rules' head strings (libc's memcpy
 * cost its call more than the copy). */
static inline __attribute__((always_inline)) void ev_copy_short(char *d, const char *s, size_t n) {
  if (n >= 8 && n <= 16) {
    uint64_t a, b;
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
    memcpy(d, &a, 8);
    memcpy(d + n - 8, &b, 8);
  } else if (n >= 4 && n < 8) {
    uint32_t a, b;
    memcpy(&a, s, 4);
    memcpy(&b, s + n - 4, 4);
    memcpy(d, &a, 4);
    memcpy(d + n - 4, &b, 4);
  } else if (n > 16 && n <= 32) {
    char a[16], b[16];
    memcpy(a, s, 16);
    memcpy(b, s + n - 16, 16);
    memcpy(d, a, 16);
    memcpy(d + n - 16, b, 16);
  } else if (n > 0 && n < 4) {
    /* bytes 0, n/2 and n - 1 cover all of 1 to 3 */
    char a = s[0], b = s[n / 2], c = s[n - 1];
    d[0] = a;
    d[n / 2] = b;
    d[n - 1] = c;
  } else if (n) {
    ev_put(d, s, n);
  }
}

/* What a handler builds before the head goes out -- status line, header
 * fields, body, compression -- dropped. */
static __attribute__((noinline, cold)) void ev_res_drop_held(mtev_http_response *r) {
  if (r->body.head) ev_chain_clear(&r->body);
  if (r->z) {
    deflateEnd(r->z);
    free(r->z);
    r->z = NULL;
  }
}
static inline void ev_res_drop_built(mtev_http_response *r) {
  r->status = 0;
  r->reason_len = 0;
  r->hlen = 0;
  r->has_ct = 0;
  r->ilen = 0;
  if (__builtin_expect(r->body.head || r->z, 0)) ev_res_drop_held(r);
}

static void ev_res_reset(mtev_http_response *r) {
  ev_res_drop_built(r);
  r->options = 0;
  r->headers_sent = r->complete = r->failed = r->chunked = 0;
  r->close_after = r->no_body = r->no_length = r->cut = 0;
  r->bytes_written = 0;
}

/* A work area ready for a request: a pooled one was left so by
 * ev_work_put (request released and reset, response reset, no output). */
static ev_http_work_t *ev_work_get(void) {
  ev_tp_touch();
  ev_http_work_t *w = ev_tp.works;
  if (w) {
    ev_tp.works = w->next_free;
    ev_tp.nworks--;
  } else {
    w = malloc(sizeof(*w));
    if (!w) return NULL;
    memset(&w->res, 0, sizeof(w->res));
    memset(&w->req, 0, offsetof(mtev_http_request, hdrs));
    w->out.head = w->out.tail = NULL;
    w->out.bytes = 0;
    ev_req_reset(&w->req);
    ev_res_reset(&w->res);
    w->fresh = 1;
  }
  w->next_free = NULL;
  w->in = w->inbuf;
  w->in_cap = EV_HTTP_INBUF;
  w->in_start = w->in_end = w->head_scan = w->head_end = 0;
  return w;
}

static void ev_work_put(ev_http_work_t *w) {
  ev_req_release(&w->req);
  ev_req_reset(&w->req);
  ev_res_reset(&w->res);
  if (w->out.head) ev_chain_clear(&w->out);
  if (w->in != w->inbuf) free(w->in);
  w->in = w->inbuf;
  if (w->res.hcap > 1024) { /* keep a big header buffer out of the pool */
    free(w->res.hbuf);
    w->res.hbuf = NULL;
    w->res.hcap = 0;
  }
  w->fresh = 1;
  if (ev_tp.keyed && ev_tp.nworks < EV_POOL_WORKS) {
    w->next_free = ev_tp.works;
    ev_tp.works = w;
    ev_tp.nworks++;
  } else {
    free(w->res.hbuf);
    free(w);
  }
}

/* An idle session gives its work area back: ev_work_put, whose common
 * case (the request held nothing, the buffers are the area's own, the
 * pool has room) is inline here, at the drive's exit. */
static inline void ev_http_maybe_release(mtev_http_session_ctx *s) {
  ev_http_work_t *w = s->w;
  if (w && s->state == ST_IDLE && w->in_start == w->in_end && !w->out.head) {
    s->w = NULL;
    if (__builtin_expect(!w->req.holds && w->in == w->inbuf && w->res.hcap <= 1024 &&
                             ev_tp.keyed && ev_tp.nworks < EV_POOL_WORKS,
                         1)) {
      ev_req_release(&w->req); /* (nothing held: its nqs) */
      ev_req_reset(&w->req);
      ev_res_reset(&w->res);
      w->fresh = 1;
      w->next_free = ev_tp.works;
      ev_tp.works = w;
      ev_tp.nworks++;
      return;
    }
    ev_work_put(w);
  }
}

/* ---- input ------------------------------------------------------------------------------ */

/* Makes room at the end of the input buffer: moves unread bytes down to
 * just after what the current request still points into, or grows the
 * buffer while a head is being received.  1 if there is room. */
static int ev_http_make_room(mtev_http_session_ctx *s) {
  ev_http_work_t *w = s->w;
  size_t keep = s->state == ST_HANDLER ? w->head_end : 0;
  if (w->in_start > keep) {
    size_t n = w->in_end - w->in_start;
    if (n) memmove(w->in + keep, w->in + w->in_start, n);
    w->in_start = keep;
    w->in_end = keep + n;
  }
  if (w->in_end < w->in_cap) return 1;
  if (s->state != ST_IDLE && s->state != ST_HEAD) return 0;
  size_t max = EV_LD(max_head);
  if (w->in_cap >= max) return 0;
  size_t ncap = w->in_cap * 2;
  if (ncap > max) ncap = max;
  char *n = malloc(ncap);
  if (!n) return 0;
  memcpy(n, w->in, w->in_end);
  if (w->in != w->inbuf) free(w->in);
  w->in = n;
  w->in_cap = ncap;
  return 1;
}

/* A read from the connection: the socket itself when the session does
 * raw I/O (s->raw_io: the opset would only pass the call on), else
 * through the event's opset (TLS, a listener's marks).  > 0 bytes, 0 EOF,
 * -1 with errno. */
static inline ssize_t ev_http_read(mtev_http_session_ctx *s, void *buf,
                                   size_t len) {
  ssize_t n;
  if (s->raw_io) {
    s->io.raw_reads++;
    do {
      n = ev_sys_read(s->e->fd, buf, len); /* eventer_get_fd, inline */
    } while (n < 0 && errno == EINTR);
  } else {
    s->io.opset_reads++;
    int mask = 0;
    n = eventer_read(s->e, buf, len, &mask);
  }
  return n;
}

/* One read into the input buffer.  > 0 bytes, 0 EOF, -1 with errno
 * (EAGAIN: nothing now; ENOBUFS: no room).  Inline in the drive's read
 * between requests (every request's), called elsewhere. */
static inline __attribute__((always_inline)) ssize_t
ev_http_fill_in(mtev_http_session_ctx *s) {
  ev_http_work_t *w = s->w;
  if (w->in_start == w->in_end && w->in_start > 0) {
    size_t keep = s->state == ST_HANDLER ? w->head_end : 0;
    w->in_start = w->in_end = keep;
  }
  if (w->in_end == w->in_cap && !ev_http_make_room(s)) {
    errno = ENOBUFS;
    return -1;
  }
  size_t room = w->in_cap - w->in_end;
  ssize_t n = ev_http_read(s, w->in + w->in_end, room);
  if (n > 0) {
    w->in_end += (size_t)n;
    s->last_io_ns = ev_http_now(s);
    if ((size_t)n < room) s->rd_ready = 0;
  } else if (n == 0) {
    s->peer_eof = 1;
    s->rd_ready = 0;
  } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
    s->rd_ready = 0;
    errno = EAGAIN;
  }
  return n;
}
static ssize_t ev_http_fill(mtev_http_session_ctx *s) { return ev_http_fill_in(s); }

static int ev_http_has_room(mtev_http_session_ctx *s) {
  ev_http_work_t *w = s->w;
  if (!w) return 1;
  size_t keep = s->state == ST_HANDLER ? w->head_end : 0;
  return w->in_end < w->in_cap || w->in_start > keep ||
         ((s->state == ST_IDLE || s->state == ST_HEAD) &&
          w->in_cap < EV_LD(max_head));
}

/* ---- output ----------------------------------------------------------------------------- */

/* Writes the output queue.  0 when it is empty, 1 when the socket is full
 * (wr_blocked), -1 with errno on a broken connection. */
static int ev_http_write_out(mtev_http_session_ctx *s) {
  ev_http_work_t *w = s->w;
  if (!w) return 0;
  int posix = s->raw_io;
  int fd = eventer_get_fd(s->e);
  while (w->out.head) {
    ssize_t n;
    s->io.sends++;
    if (posix) {
      struct iovec iov[64];
      int cnt = 0;
      for (ev_http_blk_t *b = w->out.head; b && cnt < 64; b = b->next) {
        if (b->end == b->start) continue;
        iov[cnt].iov_base = b->d + b->start;
        iov[cnt].iov_len = b->end - b->start;
        cnt++;
      }
      if (cnt == 1) {
        /* one piece (a response, or a pipelined batch of them): send(2)
         * spares the kernel the msghdr and iovec copies of sendmsg(2) */
        n = ev_sys_send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) n = write(fd, iov[0].iov_base, iov[0].iov_len);
      } else {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) n = writev(fd, iov, cnt);
      }
    } else {
      int mask = 0;
      ev_http_blk_t *b = w->out.head;
      n = eventer_write(s->e, b->d + b->start, b->end - b->start, &mask);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        s->wr_blocked = 1;
        return 1;
      }
      return -1;
    }
    s->last_io_ns = ev_http_now(s);
    size_t left = (size_t)n;
    w->out.bytes -= left;
    while (left && w->out.head) {
      ev_http_blk_t *b = w->out.head;
      size_t have = b->end - b->start;
      if (left < have) {
        b->start += (uint32_t)left;
        left = 0;
        break;
      }
      left -= have;
      w->out.head = b->next;
      if (!w->out.head) w->out.tail = NULL;
      ev_blk_free(b);
    }
    /* drop empty blocks at the front */
    while (w->out.head && w->out.head->start == w->out.head->end) {
      ev_http_blk_t *b = w->out.head;
      w->out.head = b->next;
      if (!w->out.head) w->out.tail = NULL;
      ev_blk_free(b);
    }
  }
  return 0;
}

/* ---- coroutines --------------------------------------------------------------------- */

static void ev_http_abort(mtev_http_session_ctx *s);

/* In the coroutine serving s: park until the drive sees what we wait for
 * (kind CW_*), the connection breaks, or nothing moves for idle_timeout.
 * 0, or -1 with errno (ECONNRESET when the connection broke, ETIMEDOUT,
 * ECANCELED). */
static int ev_http_co_wait(mtev_http_session_ctx *s, int kind, int mask) {
  if (s->aborted) {
    errno = ECONNRESET;
    return -1;
  }
  ev_aco_t *a = ev_aco_self();
  s->waiter = ev_aco_handle_of(a);
  if (!s->waiter) return -1;
  s->co_wait = (uint8_t)kind;
  s->co_wait_mask = mask;
  if (s->registered && !s->in_drive) {
    int want = EVENTER_EXCEPTION |
               (kind == CW_MASK ? mask : kind == CW_READ ? EVENTER_READ : 0) |
               (ev_http_want_write(s) ? EVENTER_WRITE : 0) |
               (eventer_get_mask(s->e) & EVENTER_READ);
    if (want != eventer_get_mask(s->e)) eventer_update_ex(s->e, want);
  }
  uint32_t ms = EV_LD(idle_timeout_ms);
  struct timeval tmo = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
  int rc = eventer_aco_park(&tmo);
  int err = errno;
  s->co_wait = CW_NONE;
  s->waiter = NULL;
  if (rc != 0) {
    if (err == ETIMEDOUT && !s->aborted) {
      mtevL(mtev_debug, "http: fd %d: no progress for %u ms, closing\n",
            eventer_get_fd(s->e), ms);
      ev_http_abort(s);
    }
    errno = err;
    return -1;
  }
  if (s->aborted) {
    errno = ECONNRESET;
    return -1;
  }
  return 0;
}

static void ev_http_co_wake(mtev_http_session_ctx *s) {
  if (s->co_wait == CW_NONE) return;
  s->co_wait = CW_NONE;
  eventer_aco_wake(s->waiter);
}

static mtev_boolean ev_http_flush(mtev_http_session_ctx *s, int final,
                                  int wait);

/* Coroutines kept for the next aco request, per loop thread: one that
 * served a request nobody else could know about (no handle was ever made
 * for it: it never waited, was never cancelled, never gave itself to
 * anyone) parks here instead of ending, and the next aco request of the
 * loop resumes it instead of creating one (a create, switch in, end and
 * free cost a third of a short request's user time).  To the handler it
 * is a fresh coroutine: its argument is the session, its coroutine-local
 * slots are clear, its stack starts empty; one that made a handle ends
 * as before, so no handle, join or cancel ever outlives its request.
 * Parked on a wait queue whose head is this thread's: eventer_fini
 * unlinks and frees parked coroutines (the head stays consistent), and a
 * loop thread that exits first unlinks its own (ev_idle_thread_end). */
#define EV_IDLE_CO_MAX 4
#define EV_IDLE_CO_SAVE_MAX 4096 /* a larger saved stack is let go */
static __thread ev_aco_waitq_t ev_idle_co;
static pthread_key_t ev_idle_key;
static pthread_once_t ev_idle_once = PTHREAD_ONCE_INIT;

static void ev_idle_thread_end(void *arg) {
  (void)arg;
  /* the coroutines stay parked on their loop (eventer_fini frees them);
   * only this thread's queue head goes */
  while (ev_idle_co.head.next && ev_aco_linked(&ev_idle_co.head))
    ev_aco_unlink(ev_idle_co.head.next);
}
static void ev_idle_key_make(void) {
  pthread_key_create(&ev_idle_key, ev_idle_thread_end);
}

/* A parked coroutine of this loop thread, or NULL. */
static ev_aco_t *ev_idle_take(void) {
  if (!ev_idle_co.head.next || !ev_aco_linked(&ev_idle_co.head)) return NULL;
  ev_aco_link_t *l = ev_idle_co.head.prev; /* the last parked: it likely
                                            * still owns the share stack */
  return EV_CONTAINER_OF(l, ev_aco_t, link);
}

/* In coroutine a, after its request: 1 when nobody else can know of it
 * (it may serve another request as a fresh one). */
static inline int ev_idle_fresh(ev_aco_t *a) {
  aco_t *co = ev_aco_co(a);
  /* no handle; no cancel or wake waiting for it; no end hook to run */
  return !(a->handle ||
           (a->flags & (EV_ACO_F_CANCEL_PENDING | EV_ACO_F_WAKE_TOKEN |
                        EV_ACO_F_END_HOOK | EV_ACO_F_PROXY)) ||
           co->save_stack.sz > EV_IDLE_CO_SAVE_MAX);
}

/* The same, and there is room on the thread's list to park it. */
static int ev_idle_keep(ev_aco_t *a) {
  if (!ev_idle_fresh(a)) return 0;
  if (!ev_idle_co.head.next) {
    pthread_once(&ev_idle_once, ev_idle_key_make);
    if (pthread_setspecific(ev_idle_key, &ev_idle_co) != 0) return 0;
    ev_aco_waitq_init(&ev_idle_co);
  }
  int n = 0;
  for (ev_aco_link_t *l = ev_idle_co.head.next; l != &ev_idle_co.head;
       l = l->next)
    if (++n >= EV_IDLE_CO_MAX) return 0;
  return 1;
}

static void ev_http_serve_co(mtev_http_session_ctx *s);
static int ev_http_co_next(mtev_http_session_ctx *s);
static int ev_res_cut_take(mtev_http_session_ctx *s);

static void ev_http_aco_main(void) {
  ev_aco_t *self = ev_aco_of(aco_gtls_co);
  for (;;) {
    ev_http_serve_co(aco_get_arg()); /* the session: ev_aco_create's arg,
                                      * or set by ev_http_dispatch */
    if (!ev_idle_fresh(self)) return;
    aco_t *co = ev_aco_co(self);
    mtev_http_session_ctx *s = co->arg;
    co->arg = NULL;
    if (co->cls) memset(co->cls, 0, ACO_CLS_SLOTS * sizeof(void *));
    /* the session's next request, pipelined behind the one served, for
     * a coroutine too: it is this one's (as fresh as a parked one) */
    if (s && ev_http_co_next(s)) {
      s->co = self;
      co->arg = s;
      continue;
    }
    if (!ev_idle_keep(self)) return;
    /* a plain wait: only ev_http_dispatch ends it.  Whatever resumes a
     * parked coroutine unlinks it and makes it RUNNING first, so the
     * inline yield (no ev_aco_wait_end) is enough */
    int wk = ev_aco_wait_begin(self, &ev_idle_co, 0, EV_WAIT_PLAIN);
    if (wk == EV_WAKE_NONE) wk = ev_aco_wait_yield_co(self);
    if (wk != EV_WAKE_READY || !co->arg) return;
  }
}

static void ev_http_serve_co(mtev_http_session_ctx *s) {
  mtev_http_dispatch_func fn = s->co_fn ? s->co_fn : s->dispatcher;
  s->co_fn = NULL;
  for (;;) {
    int rv = fn(s);
    ev_res_cut_take(s); /* an abort asked while it was parked */
    if (rv == 0 || s->aborted || !s->w || s->w->res.complete) break;
    if (ev_http_co_wait(s, CW_MASK, rv) != 0) break;
  }
  ev_http_work_t *w = s->w;
  if (w && !s->aborted && !w->res.complete) {
    /* the handler returned without ending its response: end it (500
     * when it did not even set a status) */
    if (!w->res.status && !w->res.headers_sent) {
      w->res.status = 500;
      w->res.close_after = 1;
      mtevL(mtev_error, "http: %s %s: aco handler returned without a "
            "response\n", w->req.h.method, w->req.h.path);
    }
    ev_http_flush(s, 1, 1);
  }
  s->co = NULL;
  if (!s->in_drive) ev_http_post(s);
}

int ev_http_session_run_aco(mtev_http_session_ctx *s) {
  return ev_http_session_run_aco_fn(s, NULL);
}

int ev_http_session_aco_or_run(mtev_http_session_ctx *s,
                               mtev_http_dispatch_func fn) {
  if (s && s->co) return 1;
  if (!s || s->state != ST_HANDLER) {
    errno = EINVAL;
    return -1;
  }
  s->want_aco = 1;
  s->co_fn = fn;
  return 0;
}

int ev_http_session_run_aco_fn(mtev_http_session_ctx *s,
                               mtev_http_dispatch_func fn) {
  if (s && s->co) { /* its coroutine serves it already */
    errno = EINVAL;
    return -1;
  }
  return ev_http_session_aco_or_run(s, fn);
}

int ev_http_session_move(mtev_http_session_ctx *s, eventer_pool_t *pool) {
  if (!s || !pool || s->co || s->state != ST_HANDLER) {
    errno = EINVAL;
    return -1;
  }
  s->move_to = pool;
  return 0;
}

/* ---- the response ------------------------------------------------------------------------ */

static void ev_res_cut(mtev_http_response *r) {
  r->cut = 1;
  r->failed = 1;
  r->complete = 1;
  r->close_after = 1;
}

/* An abort asked while the coroutine was parked: applied now that the
 * coroutine runs (the job thread, if there was one, is done with the
 * response). */
static int ev_res_cut_take(mtev_http_session_ctx *s) {
  if (!__atomic_load_n(&s->cut_asked, __ATOMIC_ACQUIRE)) return 0;
  __atomic_store_n(&s->cut_asked, 0, __ATOMIC_RELAXED);
  if (s->w) ev_res_cut(&s->w->res);
  return 1;
}

/* an abort asked: refused, and applied if this is the coroutine (a job
 * thread and the loop leave the response to it) */
static __attribute__((noinline, cold)) int ev_res_cut_refuse(mtev_http_session_ctx *s) {
  if (ev_http_in_co(s)) ev_res_cut_take(s);
  return 0;
}

/* Inline in every response call (three or more a request): the call
 * cost as much as the tests. */
static inline __attribute__((always_inline)) int ev_res_usable(mtev_http_session_ctx *s) {
  if (!s || !s->w || s->state != ST_HANDLER) return 0;
  if (__builtin_expect(__atomic_load_n(&s->cut_asked, __ATOMIC_ACQUIRE), 0))
    return ev_res_cut_refuse(s);
  return !s->w->res.complete && !s->w->res.failed;
}

static mtev_boolean ev_status_put(mtev_http_response *r, int code,
                                  const char *reason);
static mtev_boolean ev_hdr_put(mtev_http_response *r, const char *name,
                               size_t nl, const char *value, size_t vl,
                               int add);
static void ev_hdr_remove(mtev_http_response *r, const char *name, size_t nl);

mtev_boolean mtev_http_response_status_set(mtev_http_session_ctx *s, int code,
                                           const char *reason) {
  if (!ev_res_usable(s) || s->w->res.headers_sent) return mtev_false;
  return ev_status_put(&s->w->res, code, reason);
}

/* The standard response's Content-Type and options (ev_res_standard's
 * end; ev_res_type_set out of line). */
static inline __attribute__((always_inline)) mtev_boolean
ev_res_type_in(mtev_http_response *r, const char *type) {
  if (type) {
    if (ev_ct_known(type) || ev_ct_learn(type)) {
      /* the thread's type: a fixed-size copy of its padded bytes */
      r->has_ct = 1;
      r->ct_gen = ev_ct.gen;
      r->ct_len = (uint8_t)ev_ct.len;
      memcpy(r->ct, ev_ct.bytes, EV_CT_MAX);
      if (r->hlen) ev_hdr_remove(r, "Content-Type", 12);
    } else {
      size_t vl = strlen(type);
      if (ev_no_crlf(type, vl)) {
        r->has_ct = 0;
        ev_hdr_put(r, "Content-Type", 12, type, vl, 0);
      }
    }
  }
  r->options |= MTEV_HTTP_CHUNKED;
  return mtev_true;
}

/* mtev_http_response_standard: status, Content-Type and CHUNKED in one
 * call (what its three calls do, with one check of the session and no
 * check of a header name that is ours). */
static inline __attribute__((always_inline)) mtev_boolean
ev_res_standard(mtev_http_session_ctx *s, int code, const char *reason,
                const char *type) {
  if (!ev_res_usable(s) || s->w->res.headers_sent) return mtev_false;
  mtev_http_response *r = &s->w->res;
  if (code == 200 && reason && reason[0] == 'O' && reason[1] == 'K' && !reason[2]) {
    r->status = 200; /* _ok's: the standard phrase */
    r->reason_len = 0;
  } else {
    ev_status_put(r, code, reason);
  }
  return ev_res_type_in(r, type);
}

mtev_boolean ev_http_response_standard(mtev_http_session_ctx *s, int code,
                                       const char *reason, const char *type) {
  return ev_res_standard(s, code, reason, type);
}

/* ev_res_standard's type and options, out of line: what ev_http_response_ok
 * does not do itself. */
static __attribute__((noinline)) mtev_boolean ev_res_type_set(mtev_http_session_ctx *s,
                                                              const char *type) {
  return ev_res_type_in(&s->w->res, type);
}

/* mtev_http_response_ok: ev_res_standard with 200 "OK" known here (no
 * test of the code and the phrase); the thread's known type of 7-15
 * bytes (text/plain, application/json, ...) with no header line to
 * replace is taken here, without a call (the calls of the other cases
 * made every case save and restore six registers). */
mtev_boolean ev_http_response_ok(mtev_http_session_ctx *s, const char *type) {
  if (!ev_res_usable(s) || s->w->res.headers_sent) return mtev_false;
  mtev_http_response *r = &s->w->res;
  r->status = 200; /* the standard phrase */
  r->reason_len = 0;
  size_t n = ev_ct.len;
  if (type && type == ev_ct.ptr && n >= 7 && n <= 15 && !r->hlen) {
    /* ev_ct_known's short case: the n bytes and the NUL in two words */
    uint64_t a0, a1, b0, b1;
    memcpy(&a0, type, 8);
    memcpy(&b0, ev_ct.bytes, 8);
    memcpy(&a1, type + n - 7, 8);
    memcpy(&b1, ev_ct.bytes + n - 7, 8);
    if (((a0 ^ b0) | (a1 ^ b1)) == 0) {
      r->has_ct = 1;
      r->ct_gen = ev_ct.gen;
      r->ct_len = (uint8_t)n;
      memcpy(r->ct, ev_ct.bytes, EV_CT_MAX);
      r->options |= MTEV_HTTP_CHUNKED;
      return mtev_true;
    }
  }
  return ev_res_type_set(s, type);
}

static mtev_boolean ev_status_put(mtev_http_response *r, int code,
                                  const char *reason) {
  /* a final status: a 1xx would go out body-less and the client, taking
   * it for an interim answer, would read the next response as this
   * one's (the engine sends 100 Continue itself; no upgrades here) */
  if (code < 200 || code > 999) return mtev_false;
  size_t n = 0;
  if (code == 200 && reason && reason[0] == 'O' && reason[1] == 'K' &&
      !reason[2])
    reason = NULL; /* the standard phrase (mtev_http_response_ok's) */
  if (reason) {
    for (; reason[n] && n < sizeof(r->reason); n++) {
      unsigned char c = (unsigned char)reason[n];
      if (c < 0x20 && c != '\t') return mtev_false;
    }
    /* the standard phrase is kept as "standard" (the head of a 200 OK
     * then starts with one copy) */
    size_t sl;
    const char *std = ev_reason(code, &sl);
    if (n == sl) {
      size_t k = 0;
      while (k < n && reason[k] == std[k]) k++;
      if (k == n) n = 0;
    }
    if (n) memcpy(r->reason, reason, n); /* longer phrases are cut */
  }
  r->status = code;
  r->reason_len = (uint32_t)n;
  return mtev_true;
}

/* ASCII case-insensitive comparison of n bytes. */
static int ev_ci_eqn(const char *a, const char *b, size_t n) {
  for (size_t k = 0; k < n; k++) {
    unsigned char x = (unsigned char)a[k], y = (unsigned char)b[k];
    if (x >= 'A' && x <= 'Z') x |= 0x20;
    if (y >= 'A' && y <= 'Z') y |= 0x20;
    if (x != y) return 0;
  }
  return 1;
}

/* Removes the header lines named `name` (case-insensitive) from hbuf. */
static void ev_hdr_remove(mtev_http_response *r, const char *name, size_t nl) {
  uint32_t i = 0;
  while (i < r->hlen) {
    char *line = r->hbuf + i;
    char *eol = memchr(line, '\n', r->hlen - i);
    uint32_t ll = (uint32_t)(eol - line) + 1;
    if (ll > nl + 1 && line[nl] == ':' && ev_ci_eqn(line, name, nl)) {
      memmove(line, line + ll, r->hlen - i - ll);
      r->hlen -= ll;
      continue;
    }
    i += ll;
  }
}

/* header_set and header_add: add 0 replaces the lines of that name, 1
 * adds one more (Content-Type, single-valued, is replaced either way). */
static mtev_boolean ev_hdr_set(mtev_http_session_ctx *s, const char *name,
                               const char *value, int add) {
  if (!ev_res_usable(s) || s->w->res.headers_sent || !name || !value)
    return mtev_false;
  /* lengths by libc's vectorised strlen, then the bytes checked */
  size_t nl = strlen(name), vl = strlen(value);
  if (nl == 0 || !ev_all_tchar(name, nl) || !ev_no_crlf(value, vl))
    return mtev_false;
  mtev_http_response *r = &s->w->res;
  if ((nl == 14 && ev_lc_eq(name, "content-length")) ||
      (nl == 17 && ev_lc_eq(name, "transfer-encoding")))
    return mtev_false;
  if (nl == 10 && ev_lc_eq(name, "connection")) {
    for (size_t i = 0; i + 5 <= vl; i++)
      if (ev_ci_eqn(value + i, "close", 5)) r->options |= MTEV_HTTP_CLOSE;
    return mtev_true;
  }
  if (nl == 12 && ev_lc_eq(name, "content-type")) {
    r->has_ct = 0;
    add = 0;
  }
  return ev_hdr_put(r, name, nl, value, vl, add);
}

mtev_boolean mtev_http_response_header_set(mtev_http_session_ctx *s,
                                           const char *name,
                                           const char *value) {
  return ev_hdr_set(s, name, value, 0);
}

mtev_boolean mtev_http_response_header_add(mtev_http_session_ctx *s,
                                           const char *name,
                                           const char *value) {
  return ev_hdr_set(s, name, value, 1);
}

/* Replaces the header lines named name[0..nl) with "name: value" (add:
 * puts it after them instead). */
static mtev_boolean ev_hdr_put(mtev_http_response *r, const char *name,
                               size_t nl, const char *value, size_t vl,
                               int add) {
  if (r->hlen && !add) ev_hdr_remove(r, name, nl);
  size_t need = r->hlen + nl + vl + 4;
  if (need > r->hcap) {
    size_t ncap = r->hcap ? r->hcap * 2 : 512;
    while (ncap < need) ncap *= 2;
    char *n = realloc(r->hbuf, ncap);
    if (!n) return mtev_false;
    r->hbuf = n;
    r->hcap = (uint32_t)ncap;
  }
  char *p = r->hbuf + r->hlen;
  memcpy(p, name, nl);
  p[nl] = ':';
  p[nl + 1] = ' ';
  memcpy(p + nl + 2, value, vl);
  p[nl + 2 + vl] = '\r';
  p[nl + 3 + vl] = '\n';
  r->hlen += (uint32_t)(nl + vl + 4);
  return mtev_true;
}

/* Accept-Encoding: which of gzip and deflate the client takes. */
static uint32_t ev_accept_enc(mtev_http_request *req) {
  if (req->ae_parsed) return req->accept_enc;
  uint32_t yes = 0, no = 0, star = 0, star_no = 0;
  for (uint32_t i = 0; i < req->h.nhdr; i++) {
    ev_http_hdr_t *f = &req->h.hdr[i];
    if (f->name_len != 15 ||
        !ev_http_token_eq(f->name, f->name_len, "accept-encoding"))
      continue;
    const char *p = f->value, *end = f->value + f->value_len;
    while (p < end) {
      const char *comma = memchr(p, ',', (size_t)(end - p));
      const char *e = comma ? comma : end;
      const char *semi = memchr(p, ';', (size_t)(e - p));
      const char *ce = semi ? semi : e;
      while (p < ce && (*p == ' ' || *p == '\t')) p++;
      while (ce > p && (ce[-1] == ' ' || ce[-1] == '\t')) ce--;
      int zero = 0;
      if (semi) { /* q=0, q=0.0, ... refuses it */
        const char *q = semi + 1;
        while (q < e && (*q == ' ' || *q == '\t')) q++;
        if (e - q >= 3 && (q[0] | 0x20) == 'q' && q[1] == '=' && q[2] == '0') {
          zero = 1;
          for (const char *d = q + 3; d < e; d++)
            if (*d != '.' && *d != '0' && *d != ' ' && *d != '\t') zero = 0;
        }
      }
      uint32_t bit = 0;
      if (ev_http_token_eq(p, (size_t)(ce - p), "gzip") ||
          ev_http_token_eq(p, (size_t)(ce - p), "x-gzip"))
        bit = MTEV_HTTP_GZIP;
      else if (ev_http_token_eq(p, (size_t)(ce - p), "deflate"))
        bit = MTEV_HTTP_DEFLATE;
      else if (ce - p == 1 && *p == '*') {
        if (zero) star_no = 1; else star = 1;
      }
      if (bit) {
        if (zero) no |= bit; else yes |= bit;
      }
      p = comma ? comma + 1 : end;
    }
  }
  if (star && !star_no) yes |= (MTEV_HTTP_GZIP | MTEV_HTTP_DEFLATE) & ~no;
  req->accept_enc = yes & ~no;
  req->ae_parsed = 1;
  return req->accept_enc;
}

mtev_boolean mtev_http_response_option_set(mtev_http_session_ctx *s,
                                           uint32_t opt) {
  if (!ev_res_usable(s) || s->w->res.headers_sent) return mtev_false;
  mtev_http_response *r = &s->w->res;
  mtev_http_request *req = &s->w->req;
  const uint32_t known = MTEV_HTTP_CHUNKED | MTEV_HTTP_CLOSE | MTEV_HTTP_GZIP |
                         MTEV_HTTP_DEFLATE;
  if (opt == 0 || (opt & ~known)) return mtev_false;
  uint32_t comp = opt & (MTEV_HTTP_GZIP | MTEV_HTTP_DEFLATE);
  if (comp) {
    if (comp == (MTEV_HTTP_GZIP | MTEV_HTTP_DEFLATE)) return mtev_false;
    if (r->z || r->body.bytes || r->ilen) return mtev_false; /* from the first byte */
    if (!(ev_accept_enc(req) & comp)) return mtev_false;
    z_stream *z = calloc(1, sizeof(*z));
    if (!z) return mtev_false;
    int wbits = comp == MTEV_HTTP_GZIP ? 15 + 16 : 15;
    if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, wbits, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
      free(z);
      return mtev_false;
    }
    r->z = z;
  }
  r->options |= opt;
  return mtev_true;
}

/* Runs the deflate stream over in[0..len) with `flush`, output to body. */
static int ev_res_deflate(mtev_http_response *r, const void *in, size_t len,
                          int flush) {
  z_stream *z = r->z;
  z->next_in = (Bytef *)(uintptr_t)in;
  z->avail_in = (uInt)len;
  for (;;) {
    ev_http_blk_t *t = ev_chain_room(&r->body, 256);
    if (!t) return -1;
    size_t room = ev_blk_room(t);
    z->next_out = (Bytef *)(t->d + t->end);
    z->avail_out = (uInt)room;
    int rc = deflate(z, flush);
    size_t made = room - z->avail_out;
    t->end += (uint32_t)made;
    r->body.bytes += made;
    if (rc == Z_STREAM_ERROR) return -1;
    if (flush == Z_FINISH) {
      if (rc == Z_STREAM_END) return 0;
      continue;
    }
    if (z->avail_in == 0 && z->avail_out != 0) return 0;
  }
}

/* mtev_http_response_append's body, inline in it and in _append_str (a
 * second call per append cost more than the short copy it makes). */
static inline __attribute__((always_inline)) mtev_boolean
ev_res_append(mtev_http_session_ctx *s, const void *b, size_t l) {
  if (!ev_res_usable(s) || (!b && l)) return mtev_false;
  mtev_http_response *r = &s->w->res;
  if (l == 0) return mtev_true;
  if (r->z) {
    /* big inputs in slices: zlib counts in uInt */
    const char *p = b;
    while (l) {
      size_t n = l > (1u << 30) ? (1u << 30) : l;
      if (ev_res_deflate(r, p, n, Z_NO_FLUSH) != 0) return mtev_false;
      p += n;
      l -= n;
    }
    return mtev_true;
  }
  if (!r->body.head && l <= sizeof(r->ibody) - r->ilen) {
    ev_copy_short(r->ibody + r->ilen, b, l);
    r->ilen += (uint32_t)l;
    return mtev_true;
  }
  if (ev_res_spill(r) != 0) return mtev_false;
  return ev_chain_append(&r->body, b, l) == 0 ? mtev_true : mtev_false;
}

mtev_boolean mtev_http_response_append(mtev_http_session_ctx *s, const void *b,
                                       size_t l) {
  return ev_res_append(s, b, l);
}

mtev_boolean mtev_http_response_append_str(mtev_http_session_ctx *s,
                                           const char *str) {
  if (!str) return mtev_false;
  return ev_res_append(s, str, strlen(str));
}

mtev_boolean mtev_http_response_vappend(mtev_http_session_ctx *s,
                                        const char *format, va_list arg) {
  if (!ev_res_usable(s) || !format) return mtev_false;
  mtev_http_response *r = &s->w->res;
  va_list ap;
  if (!r->z && !r->body.head) { /* into ibody when it fits */
    size_t room = sizeof(r->ibody) - r->ilen;
    va_copy(ap, arg);
    int n = vsnprintf(r->ibody + r->ilen, room, format, ap);
    va_end(ap);
    if (n < 0) return mtev_false;
    if ((size_t)n < room) {
      r->ilen += (uint32_t)n;
      return mtev_true;
    }
    if (ev_res_spill(r) != 0) return mtev_false;
  }
  if (!r->z) { /* straight into the tail block when it fits */
    ev_http_blk_t *t = ev_chain_room(&r->body, 64);
    if (!t) return mtev_false;
    size_t room = ev_blk_room(t);
    va_copy(ap, arg);
    int n = vsnprintf(t->d + t->end, room, format, ap);
    va_end(ap);
    if (n < 0) return mtev_false;
    if ((size_t)n < room) {
      t->end += (uint32_t)n;
      r->body.bytes += (size_t)n;
      return mtev_true;
    }
  }
  va_copy(ap, arg);
  int n = vsnprintf(NULL, 0, format, ap);
  va_end(ap);
  if (n < 0) return mtev_false;
  char small[512], *buf = (size_t)n < sizeof(small) ? small : malloc((size_t)n + 1);
  if (!buf) return mtev_false;
  va_copy(ap, arg);
  vsnprintf(buf, (size_t)n + 1, format, ap);
  va_end(ap);
  mtev_boolean ok = mtev_http_response_append(s, buf, (size_t)n);
  if (buf != small) free(buf);
  return ok;
}

mtev_boolean mtev_http_response_appendf(mtev_http_session_ctx *s,
                                        const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  mtev_boolean ok = mtev_http_response_vappend(s, format, ap);
  va_end(ap);
  return ok;
}

size_t mtev_http_response_buffered(mtev_http_session_ctx *s) {
  return (s && s->w) ? s->w->res.body.bytes + s->w->res.ilen : 0;
}
mtev_boolean mtev_http_response_closed(mtev_http_response *r) {
  return (r && (r->complete || r->failed)) ? mtev_true : mtev_false;
}
mtev_boolean mtev_http_response_complete(mtev_http_response *r) {
  return (r && r->complete && !r->cut) ? mtev_true : mtev_false;
}
size_t mtev_http_response_bytes_written(mtev_http_response *r) {
  return r ? r->bytes_written : 0;
}

/* The peer has sent all it will and the engine has taken all of it: no
 * request is left to answer after the current one.  (A peer that
 * half-closed after pipelining still gets the answers to the requests
 * it sent.) */
static inline int ev_http_peer_done(mtev_http_session_ctx *s) {
  return s->peer_eof && (!s->w || s->w->in_end == s->w->in_start);
}

/* Does the connection end after this response?  Decided when the headers
 * go out (so they can say so). */
static inline __attribute__((always_inline)) int ev_http_will_close(mtev_http_session_ctx *s) {
  mtev_http_request *q = &s->w->req;
  mtev_http_response *r = &s->w->res;
  if (r->close_after || (r->options & MTEV_HTTP_CLOSE) || q->h.conn_close ||
      ev_http_peer_done(s) || s->aborted)
    return 1;
  if (q->h.minor == 0 && !q->h.conn_keep_alive) return 1;
  if (!q->body_done) {
    /* the client may not send a body it was not asked for */
    if (q->h.expect_continue && !q->sent_continue) return 1;
    if (q->body_mode == EV_BODY_CL && q->body_left > EV_HTTP_DRAIN_MAX) return 1;
  }
  return 0;
}

/* A string literal: a copy of known size, a few moves. */
#define EV_PUT_LIT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

static inline char *ev_put_u64(char *p, uint64_t v) {
  if (v < 100) { /* most bodies answered at once are short */
    if (v >= 10) *p++ = (char)('0' + v / 10);
    *p++ = (char)('0' + v % 10);
    return p;
  }
  char digits[20];
  int nd = 0;
  do {
    digits[nd++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (nd) *p++ = digits[--nd];
  return p;
}

/* Room ev_res_head_put needs at most. */
static inline size_t ev_res_head_max(const mtev_http_response *r) {
  return r->reason_len + r->hlen + 320;
}

/* Writes the status line and header block at p (ev_res_head_max bytes of
 * room); returns the end.  mode: 0 Content-Length clen, 1 chunked, 2
 * delimited by the close. */
static char *ev_res_head_put(mtev_http_session_ctx *s, char *p, int mode,
                             uint64_t clen, int close) {
  mtev_http_response *r = &s->w->res;
  mtev_http_request *q = &s->w->req;
  ev_date_fresh();
  int ct_done = 0;
  if (r->status == 200 && r->reason_len == 0 && q->h.minor >= 1) {
    /* the whole array (the room allows it): a fixed-size copy is a few
     * vector moves, a variable one of at most 64 bytes became rep movs */
    if (ev_ct_is_known(r)) {
      if (ev_ct.head_sec != ev_date.sec) ev_ct_head_build();
      memcpy(p, ev_ct.head, sizeof(ev_ct.head));
      p += ev_ct.head_len;
      ct_done = 1;
    } else {
      memcpy(p, ev_date.ok, sizeof(ev_date.ok));
      p += ev_date.ok_len;
    }
  } else {
    p = q->h.minor >= 1 ? EV_PUT_LIT(p, "HTTP/1.1 ") : EV_PUT_LIT(p, "HTTP/1.0 ");
    *p++ = (char)('0' + r->status / 100);
    *p++ = (char)('0' + r->status / 10 % 10);
    *p++ = (char)('0' + r->status % 10);
    *p++ = ' ';
    if (r->reason_len) {
      p = ev_put(p, r->reason, r->reason_len);
    } else {
      size_t rl;
      const char *reason = ev_reason(r->status, &rl);
      p = ev_put(p, reason, rl);
    }
    p = EV_PUT_LIT(p, "\r\n");
    p = ev_put(p, ev_date.line, ev_date.len);
  }
  if (r->has_ct && !ct_done) {
    p = EV_PUT_LIT(p, "Content-Type: ");
    p = ev_put(p, r->ct, r->ct_len);
    p = EV_PUT_LIT(p, "\r\n");
  }
  if (r->hlen) p = ev_put(p, r->hbuf, r->hlen);
  if (mode == 0 && !r->no_length) {
    p = EV_PUT_LIT(p, "Content-Length: ");
    p = ev_put_u64(p, clen);
    p = EV_PUT_LIT(p, "\r\n");
  } else if (mode == 1) {
    p = EV_PUT_LIT(p, "Transfer-Encoding: chunked\r\n");
  }
  if (r->z) {
    p = (r->options & MTEV_HTTP_GZIP) ? EV_PUT_LIT(p, "Content-Encoding: gzip\r\n")
                                      : EV_PUT_LIT(p, "Content-Encoding: deflate\r\n");
    p = EV_PUT_LIT(p, "Vary: Accept-Encoding\r\n");
  }
  if (close)
    p = EV_PUT_LIT(p, "Connection: close\r\n");
  else if (q->h.minor == 0)
    p = EV_PUT_LIT(p, "Connection: keep-alive\r\n");
  return EV_PUT_LIT(p, "\r\n");
}

/* Wraps the body chain as one chunk: size line in the first block's
 * headroom, CRLF in the last block's tailroom. */
static void ev_res_chunk_frame(ev_http_chain_t *c) {
  if (!c->bytes) return;
  char line[24];
  int n = snprintf(line, sizeof(line), "%zx\r\n", c->bytes);
  ev_http_blk_t *h = c->head;
  EV_HTTP_ASSERT(h->start >= (uint32_t)n, "body blocks keep headroom for a "
                                          "chunk-size line");
  h->start -= (uint32_t)n;
  memcpy(h->d + h->start, line, (size_t)n);
  ev_http_blk_t *t = c->tail;
  memcpy(t->d + t->end, "\r\n", 2);
  t->end += 2;
  c->bytes += (size_t)n + 2;
}

/* Turns what the handler built into bytes on the output queue, and
 * (unless held for a pipelined batch) writes them: in the coroutine
 * serving the request it waits until they are written (wait), elsewhere
 * it writes what the socket takes now. */
/* Every response but the common answer (ev_http_flush's first case): the
 * head, unless sent, and what the body holds go onto the output queue.
 * Out of ev_http_flush so that the common answer's code stays on few
 * cache lines.  0, or -1 (the response failed). */
static __attribute__((noinline)) int ev_http_flush_build(mtev_http_session_ctx *s,
                                                         int final) {
  ev_http_work_t *w = s->w;
  mtev_http_response *r = &w->res;
  mtev_http_request *q = &w->req;
  int st = r->status;
  r->no_length = st < 200 || st == 204 || st == 304;
  r->no_body = q->h.is_head || r->no_length;
  if (r->z) {
    if (ev_res_deflate(r, NULL, 0, final ? Z_FINISH : Z_SYNC_FLUSH) != 0) {
      r->failed = 1;
      return -1;
    }
  }
  if (!r->headers_sent) {
    int mode;
    if (final)
      mode = 0;
    else if ((r->options & MTEV_HTTP_CHUNKED) && q->h.minor >= 1)
      mode = 1;
    else
      mode = 2;
    int close = mode == 2 || ev_http_will_close(s);
    r->close_after = (uint8_t)close;
    r->chunked = mode == 1;
    /* The head goes straight onto the output queue, into its last block
     * when there is room (so the responses to pipelined requests leave
     * in one piece), and a small body of a response ended at once right
     * after it. */
    size_t inl = 0;
    const char *src = NULL;
    if (mode == 0 && !r->no_body) {
      if (r->ilen) {
        src = r->ibody;
        inl = r->ilen;
      } else if (r->body.bytes && r->body.bytes <= EV_HTTP_INLINE_BODY &&
                 r->body.head == r->body.tail) {
        src = r->body.head->d + r->body.head->start;
        inl = r->body.bytes;
      }
    }
    size_t need = ev_res_head_max(r) + inl;
    ev_http_blk_t *t = w->out.tail;
    if (!t || ev_blk_room(t) < need) {
      if (!(t = ev_blk_new(need))) {
        r->failed = 1;
        return -1;
      }
      t->start = t->end = 0; /* no chunk framing in front of a head */
      ev_chain_push(&w->out, t);
    }
    char *p0 = t->d + t->end;
    char *p = ev_res_head_put(s, p0, mode, r->body.bytes + r->ilen, close);
    if (inl) {
      p = ev_put(p, src, inl);
      if (r->ilen)
        r->ilen = 0;
      else
        ev_chain_clear(&r->body);
    }
    size_t n = (size_t)(p - p0);
    t->end += (uint32_t)n;
    w->out.bytes += n;
    r->bytes_written += n;
    r->headers_sent = 1;
  }
  if (r->no_body) {
    r->ilen = 0;
    ev_chain_clear(&r->body);
  } else if (ev_res_spill(r) != 0) {
    r->failed = 1;
    return -1;
  } else if (r->body.bytes || (final && r->chunked)) {
    if (r->chunked) ev_res_chunk_frame(&r->body);
    if (final && r->chunked) {
      ev_http_blk_t *t = r->body.tail;
      if (!t || t->cap - t->end < 5) {
        t = ev_blk_new(8);
        if (!t) {
          r->failed = 1;
          return -1;
        }
        ev_chain_push(&r->body, t);
      }
      memcpy(t->d + t->end, "0\r\n\r\n", 5);
      t->end += 5;
      r->body.bytes += 5;
    }
    r->bytes_written += r->body.bytes;
    ev_chain_move(&w->out, &r->body);
  }
  if (final) r->complete = 1;
  return 0;
}

/* The common answer's bytes at p (room for sizeof(ev_ct.head) + 48 +
 * inl): the thread's ready head (status line, Date, Content-Type),
 * Content-Length, the short body r->ibody.  Returns their end. */
static __attribute__((noinline)) void ev_ct_ans_build(uint32_t inl) {
  char *p = ev_put(ev_ct.ans, ev_ct.head, ev_ct.head_len);
  p = EV_PUT_LIT(p, "Content-Length: ");
  p = ev_put_u64(p, inl);
  p = EV_PUT_LIT(p, "\r\n\r\n");
  ev_ct.ans_len = (uint32_t)(p - ev_ct.ans);
  ev_ct.ans_for = inl;
}
static inline __attribute__((always_inline)) char *
ev_put_common_answer(char *p, const mtev_http_response *r, uint32_t inl) {
  _Static_assert(EV_CT_ANS >= sizeof(ev_ct.head) + 32,
                 "the answer's head has room for Content-Length and its digits");
  _Static_assert(EV_CT_ANS <= sizeof(ev_ct.head) + 48,
                 "the callers' room for the head covers the answer's");
  ev_date_fresh();
  if (ev_ct.head_sec != ev_date.sec) ev_ct_head_build();
  if (ev_ct.ans_for != inl) ev_ct_ans_build(inl);
  memcpy(p, ev_ct.ans, EV_CT_ANS);
  p += ev_ct.ans_len;
  ev_copy_short(p, r->ibody, inl);
  return p + inl;
}

/* The common answer's short body put after the thread's answer head for
 * its length (ready: the caller checked), the response marked sent, the
 * two sent with one send(2).  What the socket took (as send's result);
 * *n the answer's length. */
static inline __attribute__((always_inline)) ssize_t
ev_http_answer_send(mtev_http_session_ctx *s, uint32_t inl, size_t *n) {
  mtev_http_response *r = &s->w->res;
  char *buf = ev_ct.ans; /* (ans_len + inl <= EV_HTTP_DIRECT_MAX: the callers) */
  ev_copy_short(buf + ev_ct.ans_len, r->ibody, inl);
  *n = ev_ct.ans_len + inl;
  r->bytes_written += *n;
  r->no_length = r->no_body = r->close_after = r->chunked = 0;
  r->ilen = 0;
  r->headers_sent = 1;
  r->complete = 1;
  s->io.sends++;
  ssize_t k = ev_sys_send(s->e->fd, buf, *n, MSG_NOSIGNAL);
  if (k > 0) s->last_io_ns = ev_http_now(s);
  return k;
}

/* What the socket did not take of an answer sent at once (k of buf's n
 * bytes; k < 0: none, errno set) copied onto the output queue (buf is the
 * thread's, which the next answer overwrites).  0, or -1: no memory. */
static __attribute__((noinline)) int ev_http_queue_rest(ev_http_work_t *w, const char *buf,
                                                        size_t n, ssize_t k) {
  size_t done = k > 0 ? (size_t)k : 0;
  ev_http_blk_t *t = ev_blk_new(n - done);
  if (!t) return -1;
  t->start = t->end = 0;
  memcpy(t->d, buf + done, n - done);
  t->end = (uint32_t)(n - done);
  ev_chain_push(&w->out, t);
  w->out.bytes += n - done;
  return 0;
}

/* The common answer (ev_http_flush's first case) when nothing is queued
 * before it and no pipelined request follows: the short body is put
 * after the thread's ready head (ev_ct.ans: no copy of the head) and the
 * two are sent with one send(2), no output block taken and given back.
 * What the socket does not take (EAGAIN, a part, an error) is copied
 * onto the output queue, where ev_http_write_out goes on with it as with
 * any other (and reports the error again).  0: all sent; 1: queued; -1:
 * no memory for the rest. */
static inline int ev_http_send_direct(mtev_http_session_ctx *s, uint32_t inl) {
  /* (the caller checked sizeof(ev_ct.head) + 48 + inl <= EV_HTTP_DIRECT_MAX;
   * ans_len <= EV_CT_ANS <= sizeof(ev_ct.head) + 48) */
  ev_date_fresh();
  if (ev_ct.head_sec != ev_date.sec) ev_ct_head_build();
  if (ev_ct.ans_for != inl) ev_ct_ans_build(inl);
  size_t n;
  ssize_t k = ev_http_answer_send(s, inl, &n);
  if ((size_t)k == n) return 0;
  return ev_http_queue_rest(s->w, ev_ct.ans, n, k) == 0 ? 1 : -1;
}

/* The common answer: a final flush of a 200 with the thread's known
 * type, no other header line, a short body, keep-alive: the thread's
 * ready head (status line, Date, Content-Type), Content-Length, the body;
 * the bytes ev_http_flush_build writes for it. */
static inline __attribute__((always_inline)) int
ev_http_common_answer(mtev_http_session_ctx *s) {
  ev_http_work_t *w = s->w;
  mtev_http_response *r = &w->res;
  mtev_http_request *q = &w->req;
  return (r->status == 200 || r->status == 0) && !r->headers_sent && !r->reason_len &&
         !r->hlen && !r->z && !r->body.head && q->h.minor >= 1 && !q->h.is_head &&
         ev_ct_is_known(r) && !ev_http_will_close(s);
}

/* A final flush's common answer straight to the socket, when nothing is
 * queued before it and nothing is to be held for it (no pipelined request
 * follows): 0 when that is not the case (nothing done), 1 sent whole, 2
 * the rest queued (ev_http_flush_out goes on), -1 no memory for the rest
 * (failed).  Inline in ev_http_flush and in _end (no call, no frame for
 * the common end of a response). */
static inline __attribute__((always_inline)) int
ev_http_flush_direct(mtev_http_session_ctx *s) {
  ev_http_work_t *w = s->w;
  mtev_http_response *r = &w->res;
  uint32_t inl = r->ilen;
  if (s->aborted || w->out.head || w->in_end != w->in_start || !s->raw_io ||
      sizeof(ev_ct.head) + 48 + inl > EV_HTTP_DIRECT_MAX || !ev_http_common_answer(s))
    return 0;
  r->status = 200;
  int rc = ev_http_send_direct(s, inl);
  if (rc == 0) return 1;
  if (rc < 0) {
    r->failed = 1;
    return -1;
  }
  return 2;
}

static mtev_boolean ev_http_flush_out(mtev_http_session_ctx *s, int final, int wait);
static inline __attribute__((always_inline)) mtev_boolean
ev_http_flush_out_in(mtev_http_session_ctx *s, int final, int wait);

/* What the socket did not take of an answer sent at once (k of buf's n
 * bytes; k < 0: none, errno set) onto the output queue, then the flush's
 * end (ev_http_flush_out).  The flush's result. */
static __attribute__((noinline)) mtev_boolean
ev_http_direct_rest(mtev_http_session_ctx *s, const char *buf, size_t n, ssize_t k,
                    int wait) {
  if (ev_http_queue_rest(s->w, buf, n, k) != 0) {
    s->w->res.failed = 1;
    return mtev_false;
  }
  return ev_http_flush_out(s, 1, wait);
}

/* mtev_http_response_end's common answer sent at once without a call
 * before the send (so without registers to save and restore):
 * ev_http_flush_direct's case when, besides, the body is at most 32
 * bytes, the end is inside the drive (the date is current, the clock
 * read) and the thread's answer head for the body's length is ready.  0:
 * not that case (nothing done, ev_http_flush goes on); else the flush's
 * result, 1 true, -1 false. */
static inline __attribute__((always_inline)) int
ev_http_end_quick(mtev_http_session_ctx *s, int wait) {
  ev_http_work_t *w = s->w;
  mtev_http_response *r = &w->res;
  uint32_t inl = r->ilen;
  if (w->in_end != w->in_start || s->aborted || w->out.head || !s->raw_io ||
      inl > 32 || !s->in_drive || !ev_in_drive || !ev_date.len ||
      ev_ct.head_sec != ev_date.sec || ev_ct.ans_for != inl || !ev_http_common_answer(s))
    return 0;
  r->status = 200;
  size_t n; /* (ans_len + 32 <= EV_CT_ANS + 32 <= ev_ct.ans's size) */
  ssize_t k = ev_http_answer_send(s, inl, &n);
  if ((size_t)k == n) return 1;
  return ev_http_direct_rest(s, ev_ct.ans, n, k, wait) ? 1 : -1;
}

static mtev_boolean ev_http_flush(mtev_http_session_ctx *s, int final,
                                  int wait) {
  if (s->aborted) return mtev_false;
  ev_http_work_t *w = s->w;
  mtev_http_response *r = &w->res;
  if (final) {
    int d = ev_http_flush_direct(s);
    if (d == 1) return mtev_true;
    if (d < 0) return mtev_false;
    if (d == 2) return ev_http_flush_out_in(s, final, wait);
  }
  if (!r->status) r->status = 200;
  if (final && ev_http_common_answer(s)) {
    /* the common answer into the output queue (something is queued
     * before it, or a pipelined request follows) */
    uint32_t inl = r->ilen;
    ev_http_blk_t *t = w->out.tail;
    if (!t || ev_blk_room(t) < sizeof(ev_ct.head) + 48 + inl) {
      if (!(t = ev_blk_new(sizeof(ev_ct.head) + 48 + inl))) {
        r->failed = 1;
        return mtev_false;
      }
      t->start = t->end = 0;
      ev_chain_push(&w->out, t);
    }
    char *p0 = t->d + t->end;
    size_t n = (size_t)(ev_put_common_answer(p0, r, inl) - p0);
    t->end += (uint32_t)n;
    w->out.bytes += n;
    r->bytes_written += n;
    r->no_length = r->no_body = r->close_after = r->chunked = 0;
    r->ilen = 0;
    r->headers_sent = 1;
    r->complete = 1;
    return ev_http_flush_out_in(s, final, wait);
  }
  if (ev_http_flush_build(s, final) != 0) return mtev_false;
  return ev_http_flush_out_in(s, final, wait);
}

/* What a flush does once its bytes are on the output queue: hold them
 * for the batch, or write them (and with wait, park until written).
 * Inline in ev_http_flush. */
static inline __attribute__((always_inline)) mtev_boolean
ev_http_flush_out_in(mtev_http_session_ctx *s, int final, int wait) {
  ev_http_work_t *w = s->w;
  if (s->aborted) return mtev_false;
  /* hold the bytes when a pipelined request follows: the drive serves it
   * next (in this call, or in the task a coroutine's end posts), and the
   * batch goes out when there is no complete request left, or when the
   * loop's pass ends */
  if (final && w->in_end > w->in_start && w->out.bytes < EV_HTTP_CORK &&
      (s->in_drive || ev_http_hold(s) == 0))
    return mtev_true;
  for (;;) {
    int rc = ev_http_write_out(s);
    if (rc < 0) {
      ev_http_abort(s);
      return mtev_false;
    }
    if (rc == 0 || !wait) return mtev_true;
    if (ev_http_co_wait(s, CW_DRAIN, EVENTER_WRITE) != 0) return mtev_false;
  }
}
static __attribute__((noinline)) mtev_boolean
ev_http_flush_out(mtev_http_session_ctx *s, int final, int wait) {
  return ev_http_flush_out_in(s, final, wait);
}

/* mtev_http_response_flush's body, inline in it and in _end. */
static inline __attribute__((always_inline)) mtev_boolean
ev_res_flush(mtev_http_session_ctx *s, mtev_boolean final) {
  if (!ev_res_usable(s)) return mtev_false;
  /* the coroutine serving the request runs on the session's loop (a
   * session with a coroutine does not move) */
  int in_co = ev_http_in_co(s);
  if (!in_co && !ev_http_on_loop(s)) return mtev_false;
  mtev_boolean ok;
  int d = final ? ev_http_end_quick(s, in_co) : 0;
  if (d == 0)
    ok = ev_http_flush(s, final ? 1 : 0, in_co);
  else
    ok = d > 0;
  /* an end outside the drive (a later callback): let the drive go on */
  if (final && !s->in_drive && !s->co) ev_http_post(s);
  return ok;
}

mtev_boolean mtev_http_response_flush(mtev_http_session_ctx *s,
                                      mtev_boolean final) {
  return ev_res_flush(s, final);
}

mtev_boolean mtev_http_response_flush_asynch(mtev_http_session_ctx *s,
                                             mtev_boolean final) {
  if (!ev_res_usable(s) || !ev_http_on_loop(s)) return mtev_false;
  mtev_boolean ok = ev_http_flush(s, final ? 1 : 0, 0);
  if (final && !s->in_drive && !s->co) ev_http_post(s);
  return ok;
}

mtev_boolean mtev_http_response_end(mtev_http_session_ctx *s) {
  return ev_res_flush(s, mtev_true);
}

/* The response is given up: nothing more of it is sent; the connection
 * writes what was flushed before, then closes.  Inside, the response is
 * complete (the handler is done with it: the drive goes on to close the
 * connection, a coroutine's end does not end it again) and failed (every
 * later response call refuses); `cut` keeps mtev_http_response_complete
 * false.  The unflushed body stays where it is until the work area is
 * released (nothing here frees what a job thread may still append to). */
mtev_boolean mtev_http_response_abort(mtev_http_session_ctx *s) {
  if (!s) {
    errno = EINVAL;
    return mtev_false;
  }
  if (!ev_res_usable(s) || s->aborted) {
    errno = EALREADY;
    return mtev_false;
  }
  int in_co = ev_http_in_co(s);
  if (!in_co && !ev_http_on_loop(s)) {
    errno = EINVAL;
    return mtev_false;
  }
  ev_http_work_t *w = s->w;
  mtev_http_response *r = &w->res;
  mtevL(mtev_debug, "http: fd %d: %s %s: response aborted after %zu bytes\n",
        eventer_get_fd(s->e), w->req.h.method, w->req.h.path, r->bytes_written);
  if (s->co && !in_co) {
    /* the request's coroutine is parked, maybe waiting for a job whose
     * thread builds the response: the response is left alone (as
     * ev_http_abort leaves it), and the coroutine applies the abort when
     * it runs again or ends */
    __atomic_store_n(&s->cut_asked, 1, __ATOMIC_RELEASE);
    return mtev_true;
  }
  ev_res_cut(r);
  /* a classic handler's drive (or a coroutine's end) goes on by itself;
   * a call from a later callback has the drive go on in a task */
  if (!s->in_drive && !s->co) ev_http_post(s);
  return mtev_true;
}

/* The handler's response as it stands before its head went out -- status,
 * header fields, options, compression, body -- is dropped: the response is
 * as a new one (for an error page in its place). */
mtev_boolean ev_http_response_discard(mtev_http_session_ctx *s) {
  if (!ev_res_usable(s) || s->w->res.headers_sent) return mtev_false;
  mtev_http_response *r = &s->w->res;
  ev_res_drop_built(r);
  r->options = 0;
  return mtev_true;
}

/* Ends the current response outside the drive and goes on driving the
 * session at once, where the task mtev_http_response_end would post does
 * it in the loop's next iteration: the next pipelined request is parsed
 * and dispatched now.  The response's bytes wait with the batch, as
 * inside the drive.  Inside the drive, or with a coroutine serving the
 * session, it is mtev_http_response_end.  The caller holds a reference. */
mtev_boolean ev_http_response_end_drive(mtev_http_session_ctx *s) {
  if (!ev_res_usable(s) || !ev_http_on_loop(s)) return mtev_false;
  if (s->in_drive || s->co || s->task_posted) return mtev_http_response_end(s);
  s->in_drive++; /* the bytes wait for the batch, no task is posted */
  mtev_boolean ok = ev_http_flush(s, 1, 0);
  s->in_drive--;
  if (s->e) {
    int done = 0;
    ev_http_drive(s, 0, 0, &done);
  }
  return ok;
}

/* ---- engine answers --------------------------------------------------------------------- */

/* Answers `status` in place of whatever the handler built, and closes
 * after it.  Once headers are out there is nothing to say: the
 * connection just breaks. */
static void ev_http_fail(mtev_http_session_ctx *s, int status) {
  ev_http_work_t *w = s->w;
  mtev_http_response *r = &w->res;
  if (r->headers_sent) {
    ev_http_abort(s);
    return;
  }
  mtevL(mtev_debug, "http: fd %d: answering %d\n", eventer_get_fd(s->e), status);
  ev_res_drop_built(r);
  r->status = status;
  r->close_after = 1;
  r->no_body = 0;
  size_t rl;
  const char *reason = ev_reason(status, &rl);
  size_t dl;
  const char *date = ev_date_line(&dl);
  char buf[320];
  int n = snprintf(buf, sizeof(buf),
                   "HTTP/1.1 %d %s\r\n%.*sContent-Type: text/plain\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                   status, reason, (int)dl, date, rl + 1, reason);
  ev_http_blk_t *b = ev_blk_new((size_t)n);
  if (b) {
    b->start = b->end = 0;
    memcpy(b->d, buf, (size_t)n);
    b->end = (uint32_t)n;
    ev_chain_push(&w->out, b);
  }
  r->headers_sent = 1;
  r->complete = 1;
  r->failed = 1;
  /* nothing more is read from this request */
  w->req.body_done = 1;
  if (s->state != ST_HANDLER) s->state = ST_CLOSING;
}

/* The connection is broken (reset, timeout, write error): nothing more
 * is sent or received; the session winds down as soon as no coroutine
 * serves it. */
static void ev_http_abort(mtev_http_session_ctx *s) {
  if (s->aborted) return;
  s->aborted = 1;
  /* with a coroutine in flight the response is left alone: a job thread
   * may be appending to it (flush and end see `aborted`) */
  if (s->w && !s->co) s->w->res.failed = 1;
  if (s->registered) {
    /* stop the callbacks; the registration's reference is now ours */
    eventer_remove_fde(s->e);
    s->registered = 0;
  }
  if (s->co) {
    if (s->co_wait != CW_NONE)
      ev_http_co_wake(s);
    else
      eventer_aco_cancel(ev_aco_handle_of(s->co));
  }
}

/* ---- requests --------------------------------------------------------------------------- */

static int ev_is_http_start(const char *p, size_t n) {
  static const char *const methods[] = {"GET ", "HEAD ", "POST ", "PUT ",
                                        "DELETE ", "OPTIONS ", "PATCH ",
                                        "TRACE ", "CONNECT ", "MERGE "};
  int maybe = 0;
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
    size_t ml = strlen(methods[i]);
    size_t k = n < ml ? n : ml;
    if (memcmp(p, methods[i], k) == 0) {
      if (n >= ml) return 1;
      maybe = 1;
    }
  }
  return maybe ? 0 : -1;
}

/* Looks for the next request in the input.  1: ready (state HANDLER),
 * 0: need more input, -1: not HTTP (sniffing), >= 400: answer that. */
static inline __attribute__((always_inline)) int
ev_http_next_request(mtev_http_session_ctx *s, uint64_t now) {
  ev_http_work_t *w = s->w;
  size_t avail = w->in_end - w->in_start;
  if (avail == 0) return 0;
  if (__builtin_expect(s->skip_crlf, 0)) {
    /* the tolerance of old clients RFC 9112 2.2 asks for: up to four
     * CR or LF bytes after a request's body, before the next request
     * line, are not a request (net/http: after a POST) */
    const char *p = w->in + w->in_start;
    size_t n = 0;
    while (n < avail && n < s->skip_crlf && (p[n] == '\r' || p[n] == '\n')) n++;
    s->skip_crlf = n < avail ? 0 : (uint8_t)(s->skip_crlf - n);
    w->in_start += n;
    avail -= n;
    if (avail == 0) return 0;
  }
  if (s->state == ST_IDLE) {
    s->state = ST_HEAD;
    s->head_start_ns = now;
  }
  if (s->sniff) {
    int r = ev_is_http_start(w->in + w->in_start, avail);
    if (r < 0) return -1;
    if (r == 0) return 0;
    s->sniff = 0;
  }
  ev_http_limits_t lim = ev_plim();
  mtev_http_request *q = &w->req;
  char *head = w->in + w->in_start;
  long end = 0;
  int st = 0;
  if (w->head_scan == 0) {
    /* the first look at this head: the previous request is over */
    if (!w->fresh) {
      ev_req_release(q);
      ev_req_reset(q);
      ev_res_reset(&w->res);
      w->fresh = 1;
    }
    /* a complete, valid head at the start of the input is parsed in one
     * pass; anything else (a part of a head, an error to answer) is
     * looked at again the usual way (the same result either way) */
    end = ev_http_parse_prefix(head, avail, &q->h, &lim);
  }
  if (end == 0) {
    end = ev_http_head_end(head, avail, &w->head_scan, &lim);
    if (end == 0) return 0;
    if (end < 0) return (int)-end;
    if (!w->fresh) {
      ev_req_release(q);
      ev_req_reset(q);
      ev_res_reset(&w->res);
    }
    st = ev_http_parse_head(head, (size_t)end, &q->h, &lim);
  }
  w->fresh = 0;
  w->head_scan = 0;
  w->in_start += (size_t)end;
  w->head_end = w->in_start;
  s->state = ST_HANDLER;
  s->seq++;
  q->start_ns = now;
  if (st) return st;
  ev_http_head_t *h = &q->h;
  /* NUL-terminate in place: each string is followed by a byte the parser
   * no longer needs (SP, '?', ':', whitespace, CR or LF) */
  ((char *)h->method)[h->method_len] = 0;
  if (h->path >= head && h->path < head + end) ((char *)h->path)[h->path_len] = 0;
  if (h->query) ((char *)h->query)[h->query_len] = 0;
  for (uint32_t i = 0; i < h->nhdr; i++) {
    ((char *)h->hdr[i].name)[h->hdr[i].name_len] = 0;
    ((char *)h->hdr[i].value)[h->hdr[i].value_len] = 0;
  }
  q->proto = h->minor >= 1 ? "HTTP/1.1" : "HTTP/1.0";
  if (h->chunked) {
    q->body_mode = EV_BODY_CHUNKED;
    q->body_done = 0;
    s->skip_crlf = 4;
  } else if (h->content_length > 0) {
    if ((uint64_t)h->content_length > EV_LD(max_body)) return 413;
    q->body_mode = EV_BODY_CL;
    q->body_left = (uint64_t)h->content_length;
    q->body_done = 0;
    s->skip_crlf = 4;
  }
  return 1;
}

/* Takes up to `want` body bytes from the input buffer (copying them to
 * buf, or discarding them when buf is NULL).  > 0 bytes, 0 when more
 * input is needed (or the body is over: body_done), or -status. */
static long ev_http_body_take(mtev_http_session_ctx *s, char *buf, size_t want) {
  ev_http_work_t *w = s->w;
  mtev_http_request *q = &w->req;
  if (q->body_done) return 0;
  if (q->body_mode == EV_BODY_CL) {
    size_t avail = w->in_end - w->in_start;
    size_t take = avail < want ? avail : want;
    if (take > q->body_left) take = (size_t)q->body_left;
    if (!take) return 0;
    if (buf) memcpy(buf, w->in + w->in_start, take);
    w->in_start += take;
    q->body_left -= take;
    q->body_read += take;
    if (q->body_left == 0) q->body_done = 1;
    return (long)take;
  }
  uint64_t max = EV_LD(max_body);
  for (;;) {
    const char *data;
    size_t dlen;
    long r = ev_http_chunked_step(&q->ck, w->in + w->in_start,
                                  w->in_end - w->in_start, max, want, &data,
                                  &dlen);
    if (r < 0) return r;
    if (dlen && buf) memcpy(buf, data, dlen);
    w->in_start += (size_t)r;
    if (dlen) {
      q->body_read += dlen;
      return (long)dlen;
    }
    if (q->ck.state == EV_HTTP_CK_DONE) {
      q->body_done = 1;
      return 0;
    }
    if (r == 0) return 0;
  }
}

static void ev_http_send_continue(mtev_http_session_ctx *s) {
  ev_http_work_t *w = s->w;
  mtev_http_request *q = &w->req;
  if (!q->h.expect_continue || q->sent_continue || w->res.headers_sent) return;
  q->sent_continue = 1;
  ev_http_blk_t *b = ev_blk_new(32);
  if (!b) return;
  b->start = b->end = 0;
  memcpy(b->d, "HTTP/1.1 100 Continue\r\n\r\n", 25);
  b->end = 25;
  ev_chain_push(&w->out, b);
  if (ev_http_write_out(s) < 0) ev_http_abort(s);
}

int mtev_http_session_req_consume(mtev_http_session_ctx *s, void *buf,
                                  const size_t len, const size_t blen,
                                  int *mask) {
  if (mask) *mask = 0;
  if (!s || !buf || !ev_http_on_loop(s)) {
    errno = EINVAL;
    return -1;
  }
  if (s->aborted || !s->w || s->state != ST_HANDLER) {
    errno = ECONNRESET;
    return -1;
  }
  ev_http_work_t *w = s->w;
  mtev_http_request *q = &w->req;
  if (q->body_done) return 0;
  size_t want = len < blen ? len : blen;
  if (want > INT32_MAX) want = INT32_MAX;
  if (want == 0) {
    errno = EINVAL;
    return -1;
  }
  ev_http_send_continue(s);
  for (;;) {
    if (s->aborted) {
      errno = ECONNRESET;
      return -1;
    }
    long n = ev_http_body_take(s, buf, want);
    if (n > 0) return (int)n;
    if (q->body_done) return 0;
    if (n < 0) {
      ev_http_fail(s, (int)-n);
      errno = n == -413 ? EFBIG : EPROTO;
      return -1;
    }
    ssize_t r;
    if (s->peer_eof) {
      r = 0;
    } else if (q->body_mode == EV_BODY_CL && w->in_start == w->in_end) {
      /* nothing buffered: read straight into the caller's buffer */
      size_t take = want < q->body_left ? want : (size_t)q->body_left;
      r = ev_http_read(s, buf, take);
      if (r > 0) {
        s->last_io_ns = ev_http_now(s);
        q->body_left -= (size_t)r;
        q->body_read += (size_t)r;
        if (q->body_left == 0) q->body_done = 1;
        return (int)r;
      }
      if (r == 0) s->peer_eof = 1;
    } else {
      r = ev_http_fill(s);
      if (r > 0) continue;
    }
    if (r == 0) { /* the client left in the middle of the body */
      ev_http_abort(s);
      errno = ECONNRESET;
      return -1;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      int err = errno;
      ev_http_abort(s);
      errno = err;
      return -1;
    }
    s->rd_ready = 0;
    if (ev_http_in_co(s)) {
      if (ev_http_co_wait(s, CW_READ, EVENTER_READ) != 0) return -1;
      continue;
    }
    if (mask) *mask = EVENTER_READ | EVENTER_EXCEPTION;
    errno = EAGAIN;
    return -1;
  }
}

mtev_boolean ev_http_complete_upload(mtev_http_session_ctx *s, int *mask) {
  if (mask) *mask = 0;
  mtev_http_request *q = mtev_http_session_request(s);
  if (!q || s->state != ST_HANDLER) return mtev_false;
  if (q->up_done) return mtev_true;
  q->holds = 1;
  if (q->body_mode == EV_BODY_NONE) {
    mtev_http_request_set_upload(q, NULL, 0, NULL, NULL);
    q->up_done = 1;
    return mtev_true;
  }
  for (;;) {
    if (q->up_len == q->up_cap) {
      size_t ncap;
      if (q->body_mode == EV_BODY_CL)
        ncap = q->up_len + (size_t)q->body_left;
      else
        ncap = q->up_cap ? q->up_cap * 2 : 16384;
      if (ncap == q->up_len) ncap++; /* room to see the end */
      char *n = realloc(q->up_buf, ncap);
      if (!n) {
        ev_http_fail(s, 500);
        return mtev_false;
      }
      q->up_buf = n;
      q->up_cap = ncap;
    }
    int m = 0;
    int n = mtev_http_session_req_consume(s, q->up_buf + q->up_len,
                                          q->up_cap - q->up_len,
                                          q->up_cap - q->up_len, &m);
    if (n > 0) {
      q->up_len += (size_t)n;
      continue;
    }
    if (n == 0) {
      /* the buffer now belongs to the request's upload */
      char *buf = q->up_buf;
      size_t len = q->up_len;
      q->up_buf = NULL;
      q->up_len = q->up_cap = 0;
      mtev_http_request_set_upload(q, buf, (int64_t)len, NULL, NULL);
      q->up_done = 1;
      return mtev_true;
    }
    if (mask) *mask = m;
    return mtev_false;
  }
}

static void ev_upload_free(void *data, int64_t size, void *closure) {
  (void)size;
  (void)closure;
  free(data);
}

void mtev_http_request_set_upload(mtev_http_request *q, void *data,
                                  int64_t size,
                                  void (*freefunc)(void *, int64_t, void *),
                                  void *closure) {
  if (!q) return;
  q->holds = 1;
  if (q->upload_free && q->upload != data)
    q->upload_free(q->upload, q->upload_size, q->upload_closure);
  q->upload = data;
  q->upload_size = size;
  /* complete_upload's own buffer (freefunc NULL, from malloc) */
  q->upload_free = freefunc ? freefunc : (data ? ev_upload_free : NULL);
  q->upload_closure = closure;
}

const void *mtev_http_request_get_upload(mtev_http_request *q, int64_t *size) {
  if (size) *size = q ? q->upload_size : 0;
  return q ? q->upload : NULL;
}

/* ---- request accessors ---------------------------------------------------------------- */

void mtev_http_request_start_time(mtev_http_request *q, struct timeval *t) {
  if (!q || !t) return;
  struct timeval now;
  gettimeofday(&now, NULL);
  uint64_t ago = ev_coarse_ns() - q->start_ns;
  int64_t us = (int64_t)now.tv_sec * 1000000 + now.tv_usec - (int64_t)(ago / 1000);
  t->tv_sec = (time_t)(us / 1000000);
  t->tv_usec = (suseconds_t)(us % 1000000);
}
const char *mtev_http_request_method_str(mtev_http_request *q) {
  return q ? q->h.method : NULL;
}
const char *mtev_http_request_uri_str(mtev_http_request *q) {
  return q ? q->h.path : NULL;
}
const char *ev_http_request_path(mtev_http_request *q, size_t *len) {
  if (len) *len = q ? q->h.path_len : 0;
  return q ? q->h.path : NULL;
}
const char *ev_http_request_method(mtev_http_request *q, size_t *len) {
  if (len) *len = q ? q->h.method_len : 0;
  return q ? q->h.method : NULL;
}
const char *mtev_http_request_protocol_str(mtev_http_request *q) {
  return q ? q->proto : NULL;
}
mtev_http_method mtev_http_request_method(mtev_http_request *q) {
  if (!q) return MTEV_HTTP_OTHER;
  if (!strcmp(q->h.method, "GET")) return MTEV_HTTP_GET;
  if (!strcmp(q->h.method, "HEAD")) return MTEV_HTTP_HEAD;
  if (!strcmp(q->h.method, "POST")) return MTEV_HTTP_POST;
  return MTEV_HTTP_OTHER;
}
mtev_http_protocol mtev_http_request_protocol(mtev_http_request *q) {
  return (q && q->h.minor >= 1) ? MTEV_HTTP11 : MTEV_HTTP10;
}
size_t mtev_http_request_content_length(mtev_http_request *q) {
  return (q && q->h.content_length > 0) ? (size_t)q->h.content_length : 0;
}
mtev_boolean mtev_http_request_payload_chunked(mtev_http_request *q) {
  return (q && q->h.chunked) ? mtev_true : mtev_false;
}
mtev_boolean mtev_http_request_has_payload(mtev_http_request *q) {
  return (q && q->body_mode != EV_BODY_NONE) ? mtev_true : mtev_false;
}

const char *mtev_http_request_header(mtev_http_request *q, const char *name) {
  if (!q || !name) return NULL;
  size_t nl = strlen(name);
  if (nl == 0) return NULL; /* no field has an empty name */
  /* fields are told apart by length and first byte before a compare */
  unsigned char first = (unsigned char)name[0];
  if (first >= 'A' && first <= 'Z') first |= 0x20;
  for (uint32_t i = 0; i < q->h.nhdr; i++) {
    ev_http_hdr_t *f = &q->h.hdr[i];
    if (f->name_len != nl) continue;
    unsigned char c0 = (unsigned char)f->name[0];
    if (c0 >= 'A' && c0 <= 'Z') c0 |= 0x20;
    if (c0 != first) continue;
    size_t k = 1;
    for (; k < nl; k++) {
      unsigned char a = (unsigned char)f->name[k], b = (unsigned char)name[k];
      if (a >= 'A' && a <= 'Z') a |= 0x20;
      if (b >= 'A' && b <= 'Z') b |= 0x20;
      if (a != b) break;
    }
    if (k == nl) return f->value;
  }
  return NULL;
}
int mtev_http_request_header_count(mtev_http_request *q) {
  return q ? (int)q->h.nhdr : 0;
}
const char *mtev_http_request_header_nth(mtev_http_request *q, int i,
                                         const char **value) {
  if (!q || i < 0 || (uint32_t)i >= q->h.nhdr) return NULL;
  if (value) *value = q->h.hdr[i].value;
  return q->h.hdr[i].name;
}

const ev_http_hdr_t *ev_http_request_fields(mtev_http_request *q, int *n,
                                            size_t *query_len) {
  *n = q ? (int)q->h.nhdr : 0;
  if (query_len) *query_len = q && q->h.query ? q->h.query_len : 0;
  return q ? q->h.hdr : NULL;
}

static int ev_unhex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Decodes %XX and '+' in place (an invalid escape stays as it is). */
static void ev_qs_decode(char *s) {
  char *o = s;
  for (char *p = s; *p; p++) {
    if (*p == '+') {
      *o++ = ' ';
    } else if (*p == '%' && ev_unhex(p[1]) >= 0 && ev_unhex(p[2]) >= 0) {
      *o++ = (char)(ev_unhex(p[1]) * 16 + ev_unhex(p[2]));
      p += 2;
    } else {
      *o++ = *p;
    }
  }
  *o = 0;
}

void mtev_http_process_querystring(mtev_http_request *q) {
  if (!q || q->nqs >= 0) return;
  q->nqs = 0;
  if (!q->h.query || !q->h.query_len) return;
  size_t n = q->h.query_len;
  int pairs = 1;
  for (size_t i = 0; i < n; i++)
    if (q->h.query[i] == '&') pairs++;
  /* one allocation: the pointers, then a copy of the query */
  char *mem = malloc((size_t)pairs * 2 * sizeof(char *) + n + 1);
  if (!mem) return;
  const char **kv = (const char **)(void *)mem;
  char *copy = mem + (size_t)pairs * 2 * sizeof(char *);
  memcpy(copy, q->h.query, n);
  copy[n] = 0;
  int k = 0;
  for (char *p = copy; p;) {
    char *amp = strchr(p, '&');
    if (amp) *amp = 0;
    if (*p) {
      char *eq = strchr(p, '=');
      if (eq) *eq = 0;
      ev_qs_decode(p);
      kv[2 * k] = p;
      if (eq) {
        ev_qs_decode(eq + 1);
        kv[2 * k + 1] = eq + 1;
      } else {
        kv[2 * k + 1] = p + strlen(p); /* "" */
      }
      k++;
    }
    p = amp ? amp + 1 : NULL;
  }
  q->qs_buf = mem;
  q->holds = 1;
  q->qs = kv;
  q->nqs = k;
}

const char *mtev_http_request_querystring(mtev_http_request *q,
                                          const char *key) {
  if (!q || !key) return NULL;
  mtev_http_process_querystring(q);
  for (int i = 0; i < q->nqs; i++)
    if (!strcmp(q->qs[2 * i], key)) return q->qs[2 * i + 1];
  return NULL;
}
const char *mtev_http_request_orig_querystring(mtev_http_request *q) {
  if (!q) return NULL;
  return q->h.query ? q->h.query : "";
}
int mtev_http_request_querystring_count(mtev_http_request *q) {
  if (!q) return -1;
  mtev_http_process_querystring(q);
  return q->nqs;
}
const char *mtev_http_request_querystring_nth(mtev_http_request *q, int i,
                                              const char **value) {
  if (!q) return NULL;
  mtev_http_process_querystring(q);
  if (i < 0 || i >= q->nqs) return NULL;
  if (value) *value = q->qs[2 * i + 1];
  return q->qs[2 * i];
}

/* ---- the drive ---------------------------------------------------------------------------- */

/* The connection is over: unregister and close the fd, free the acceptor
 * closure, drop the connection's reference.  Never while a coroutine
 * serves the session.  in_cb: called from e's own callback (which then
 * returns 0, and the loop drops the registration's reference). */
static void ev_http_teardown(mtev_http_session_ctx *s, int in_cb) {
  EV_HTTP_ASSERT(!s->co, "a connection is torn down only after the "
                         "coroutine serving it ended");
  s->state = ST_DEAD;
  s->aborted = 1;
  if (__builtin_expect(s->flying, 0)) ev_http_fly_del(s);
  eventer_timer_node_remove(&s->timer);
  ev_http_hold_cancel(s);
  if (s->registered) {
    eventer_remove_fde(s->e);
    s->registered = 0;
  }
  int m = 0;
  eventer_close(s->e, &m);
  if (!in_cb) eventer_free(s->e);
  s->e = NULL;
  if (s->w) {
    ev_work_put(s->w);
    s->w = NULL;
  }
  mtev_acceptor_closure_t *ac = s->ac;
  s->ac = NULL;
  if (ac) mtev_acceptor_closure_free(ac);
  mtev_http_session_ref_dec(s);
}

/* After a response is complete: discard an unread body, decide on the
 * connection, make way for the next request. */
static inline __attribute__((always_inline)) void
ev_http_request_done(mtev_http_session_ctx *s) {
  ev_http_work_t *w = s->w;
  mtev_http_request *q = &w->req;
  int close = w->res.close_after || ev_http_peer_done(s);
  if (!close && !q->body_done) {
    if ((q->h.expect_continue && !q->sent_continue) ||
        (q->body_mode == EV_BODY_CL && q->body_left > EV_HTTP_DRAIN_MAX))
      close = 1;
  }
  ev_req_release(q);
  s->handler_mask = 0;
  s->redispatch = 0;
  w->head_end = 0;
  if (close) {
    s->state = ST_CLOSING;
  } else if (!q->body_done) {
    s->state = ST_DRAIN;
    s->drained = 0;
  } else {
    s->state = ST_IDLE;
  }
}

/* In the coroutine that has just served s's request (it made no handle:
 * nobody else knows of it), with the drive that resumed it below it on
 * the loop's stack: when the next request is complete in the input and
 * the session's probe (ev_http_session_set_probe) gives it to a coroutine, the
 * request is set up as the drive would have (its dispatcher already
 * called) and 1 returned: the caller serves it without a switch back to
 * the loop and into a coroutine again.  Otherwise 0, with the session in
 * a state the drive goes on from (a request parsed but not dispatched is
 * marked for the dispatcher). */
static int ev_http_co_next(mtev_http_session_ctx *s) {
  ev_http_work_t *w = s->w;
  if (!w || w->in_end == w->in_start) return 0; /* nothing pipelined */
  if (!s->probe || !s->in_drive || s->aborted || s->state != ST_HANDLER ||
      s->co || !w->res.complete || s->move_to || s->redispatch ||
      s->handler_mask || s->co_wait != CW_NONE || s->want_aco || s->sniff)
    return 0;
  ev_http_request_done(s);
  if (s->state != ST_IDLE || w->out.bytes >= EV_HTTP_CORK) return 0;
  int r = ev_http_next_request(s, s->drive_ns);
  if (r != 1) {
    if (r >= 400) {
      ev_http_fail(s, r);
      s->state = ST_CLOSING;
    }
    return 0; /* 0: more input needed (-1 cannot be: no sniffing) */
  }
  s->probe(s);
  if (!s->want_aco || s->move_to || s->aborted) {
    s->redispatch = !s->want_aco; /* the drive calls the dispatcher */
    return 0;
  }
  s->want_aco = 0;
  return 1;
}

static inline int ev_http_interest(mtev_http_session_ctx *s) {
  /* between keep-alive requests, the work area given back (the drive's
   * common exit): the default case below, with room and nothing to write */
  if (__builtin_expect(!s->w && s->state == ST_IDLE, 1))
    return s->peer_eof ? EVENTER_EXCEPTION : EVENTER_READ | EVENTER_EXCEPTION;
  int want = EVENTER_EXCEPTION;
  switch (s->state) {
  case ST_HANDLER:
    if (s->co_wait == CW_READ) want |= EVENTER_READ;
    else if (s->co_wait == CW_MASK) want |= s->co_wait_mask;
    else if (s->handler_mask) want |= s->handler_mask;
    else if (!s->peer_eof && ev_http_has_room(s)) want |= EVENTER_READ;
    break;
  case ST_CLOSING:
    break;
  case ST_IDLE:
  case ST_HEAD:
    /* over the cork the drive reads nothing until the peer has read:
     * a readable fd would wake the loop again and again */
    if (s->w && s->w->out.bytes >= EV_HTTP_CORK) break;
    /* fallthrough */
  default:
    if (!s->peer_eof && ev_http_has_room(s)) want |= EVENTER_READ;
  }
  if (ev_http_want_write(s)) want |= EVENTER_WRITE;
  return want & (EVENTER_READ | EVENTER_WRITE | EVENTER_EXCEPTION);
}

/* When the session's timer should act. */
static uint64_t ev_http_deadline(mtev_http_session_ctx *s) {
  uint64_t idle = ev_ms_ns(EV_LD(idle_timeout_ms));
  ev_http_work_t *w = s->w;
  if (s->state == ST_LINGER) return s->head_start_ns + EV_HTTP_LINGER_NS;
  if (w && w->out.head && s->wr_blocked) return s->last_io_ns + idle;
  switch (s->state) {
  case ST_IDLE: return s->last_io_ns + idle;
  case ST_HEAD: return s->head_start_ns + ev_ms_ns(EV_LD(header_timeout_ms));
  case ST_DRAIN: return s->last_io_ns + idle;
  case ST_CLOSING: return s->last_io_ns + idle;
  case ST_HANDLER:
    return (s->handler_mask && !s->co) ? s->last_io_ns + idle : 0;
  default: return 0;
  }
}

static inline void ev_http_arm(mtev_http_session_ctx *s) {
  /* (the drive's common exit, an idle session without its work area, is
   * ev_http_deadline's ST_IDLE case) */
  uint64_t d = __builtin_expect(!s->w && s->state == ST_IDLE, 1)
                   ? s->last_io_ns + ev_ms_ns(EV_LD(idle_timeout_ms))
                   : ev_http_deadline(s);
  s->deadline_ns = d;
  if (!d) return;
  /* a later deadline waits for the node to fire; only an earlier one
   * moves it (one timer operation per idle period, not per request) */
  if (s->timer.loop && s->armed_ns <= d) return; /* node pending */
  if (eventer_timer_node_add_at_ns(&s->timer, d) == 0) s->armed_ns = d;
}

static void ev_http_timer_fire(eventer_timer_node_t *n, struct timeval *now) {
  (void)now;
  mtev_http_session_ctx *s = EV_CONTAINER_OF(n, mtev_http_session_ctx, timer);
  if (s->state == ST_DEAD) return;
  /* the precise clock here: the node fired by it, and the coarse one may
   * still be short of the deadline */
  uint64_t t = eventer_mono_ns();
  uint64_t d = ev_http_deadline(s);
  s->deadline_ns = d;
  if (!d) return;
  if (t < d) {
    if (eventer_timer_node_add_at_ns(&s->timer, d) == 0) s->armed_ns = d;
    return;
  }
  int fd = eventer_get_fd(s->e);
  ev_http_work_t *w = s->w;
  if (w && w->out.head && s->wr_blocked) {
    mtevL(mtev_debug, "http: fd %d: peer stopped reading\n", fd);
    ev_http_abort(s);
  } else {
    switch (s->state) {
    case ST_HEAD:
      ev_http_fail(s, 408);
      break;
    case ST_IDLE:
    case ST_LINGER:
    case ST_CLOSING:
      s->state = ST_DEAD;
      break;
    default:
      ev_http_abort(s);
    }
  }
  int done = 0;
  ev_http_drive(s, 0, 0, &done);
}

static void ev_http_task_run(eventer_task_t *t, struct timeval *now) {
  (void)now;
  mtev_http_session_ctx *s = EV_CONTAINER_OF(t, mtev_http_session_ctx, task);
  s->task_posted = 0;
  if (s->e) {
    int done = 0;
    ev_http_drive(s, 0, 0, &done);
  }
  mtev_http_session_ref_dec(s); /* the task's */
}

/* ---- a loop that goes away with the session's work queued ---------------------------- */

/* eventer_fini drops, unrun, the task and the end-of-pass hook a session
 * queued on a loop that stopped before running them (each holds a
 * reference).  The connection ends here, on eventer_fini's thread with
 * every loop stopped: its fd is closed, its acceptor closure and work area
 * freed, the connection's reference dropped, then the queued item's.  The
 * coroutine serving it, if any, went with the loop (the coroutine layer's
 * loop_fini runs first); its timer is taken off the stopped loop's heap
 * and its registration out of the loop (the session holds the event from
 * then on, as after eventer_remove_fde).  An event on its way to another
 * loop (a move whose add that loop never applied) is that loop's to drop:
 * its fd is closed, the event left to the queue that holds it. */
static void ev_http_end_at_fini(mtev_http_session_ctx *s) {
  if (!s->e) return; /* over already: only the reference is left */
  s->co = NULL;
  ev_heap_remove_at_fini(&s->timer);
  int own = 1;
  if (s->registered) {
    eventer_t e = s->e;
    ev_loop_t *o = ev_event_owner(e);
    int st = EV_LOAD(&e->state);
    if (st == EV_ST_FD && o)
      ev_reg_remove(o, e);
    else if (st != EV_ST_NONE)
      own = 0;
    s->registered = 0;
  }
  ev_http_teardown(s, !own);
}

static int ev_http_task_discard(eventer_task_t *t) {
  if (t->run != ev_http_task_run) return 0;
  mtev_http_session_ctx *s = EV_CONTAINER_OF(t, mtev_http_session_ctx, task);
  s->task_posted = 0;
  ev_http_end_at_fini(s);
  mtev_http_session_ref_dec(s); /* the task's */
  return 1;
}

static int ev_http_hook_discard(ev_pass_hook_t *h) {
  if (h->run != ev_http_flush_hook) return 0;
  mtev_http_session_ctx *s = EV_CONTAINER_OF(h, mtev_http_session_ctx, flush_hook);
  ev_http_end_at_fini(s);
  mtev_http_session_ref_dec(s); /* the hook's */
  return 1;
}

/* eventer_fini is about to drop loop l's queues and registrations: the
 * sessions moving to l end (their event taken back from l first: the add
 * still queued, or the registration it made). */
static void ev_http_loop_fini(ev_loop_t *l) {
  for (;;) {
    pthread_mutex_lock(&ev_http_fly_lock);
    mtev_http_session_ctx *s = ev_http_fly;
    while (s && !(s->e && ev_event_owner(s->e) == l)) s = s->fly_next;
    if (s) ev_http_fly_del_locked(s);
    pthread_mutex_unlock(&ev_http_fly_lock);
    if (!s) return;
    eventer_t e = s->e;
    int own = 0;
    int st = EV_LOAD(&e->state);
    if (st == EV_ST_QUEUED && e->xop == EV_XOP_ADD && ev_inbox_take(l, &e->xtask)) {
      EV_STORE(&e->state, EV_ST_NONE); /* the add's reference is ours */
      own = 1;
    } else if (st == EV_ST_FD) {
      own = ev_reg_remove(l, e) != NULL;
    }
    if (own) s->registered = 0;
    mtev_http_session_ref_inc(s);
    ev_http_end_at_fini(s);
    mtev_http_session_ref_dec(s);
  }
}

static const ev_layer_t ev_http_layer = {
    .name = "http",
    .loop_fini = ev_http_loop_fini,
    .task_discard = ev_http_task_discard,
    .hook_discard = ev_http_hook_discard,
};

__attribute__((constructor)) static void ev_http_layer_register(void) {
  ev_layer_register(&ev_http_layer);
}

/* The loop's pass is over: what the session held back goes out (the
 * drive then updates the interest, wakes a coroutine waiting for the
 * bytes, or ends a broken connection).  A loop too busy to run out of
 * work ends its passes by time: then a session whose handlers answered
 * since the hold (the request it waits for is a later one) keeps holding
 * for one more pass, so that a pipelined batch still leaves together;
 * one whose handler has not answered within the pass writes. */
static void ev_http_flush_hook(ev_pass_hook_t *h, int idle) {
  mtev_http_session_ctx *s = EV_CONTAINER_OF(h, mtev_http_session_ctx, flush_hook);
  if (s->e && s->w && s->w->out.head && !s->wr_blocked && !s->aborted &&
      s->state != ST_DEAD) {
    uint64_t awaited = ev_http_awaited_seq(s);
    if (!idle && awaited != s->hold_seq &&
        ev_pass_hook_post(&s->flush_hook) == 0) {
      s->hold_seq = awaited; /* the reference goes with the hook */
      return;
    }
    if (ev_http_write_out(s) < 0) ev_http_abort(s);
    int done = 0;
    ev_http_drive(s, 0, 0, &done);
  }
  mtev_http_session_ref_dec(s); /* the hook's */
}


/* Moves the connection to a loop of s->move_to; the dispatcher is called
 * again there.  Returns the mask for the callback (in_cb), or 0. */
static int ev_http_migrate(mtev_http_session_ctx *s, int in_cb) {
  static uint32_t rr;
  eventer_pool_t *pool = s->move_to;
  s->move_to = NULL;
  uint32_t n = eventer_pool_concurrency(pool);
  eventer_loop_t *to = n ? eventer_pool_loop(
      pool, (int)(__atomic_add_fetch(&rr, 1, __ATOMIC_RELAXED) % n)) : NULL;
  if (!to) {
    errno = EINVAL;
    return -1;
  }
  s->redispatch = 1;
  eventer_timer_node_remove(&s->timer);
  ev_http_hold_cancel(s); /* the new loop writes what is held */
  int mask = EVENTER_READ | EVENTER_WRITE | EVENTER_EXCEPTION;
  if (in_cb) {
    if (eventer_set_owner_loop(s->e, to) != 0) return -1;
    ev_http_fly_add(s);
    return mask;
  }
  if (s->registered) {
    eventer_remove_fde(s->e);
    s->registered = 0;
  }
  if (eventer_set_owner_loop(s->e, to) != 0) return -1;
  eventer_set_mask(s->e, mask);
  ev_http_fly_add(s);
  if (eventer_add_ex(s->e) != 0) {
    ev_http_fly_del(s);
    return -1;
  }
  s->registered = 1;
  return 0;
}

/* Calls the dispatcher for the current request and acts on what it
 * asked for.  Returns 1 when the session moved to another loop. */
static inline __attribute__((always_inline)) int
ev_http_dispatch_in(mtev_http_session_ctx *s) {
  s->redispatch = 0;
  int rv = s->dispatcher(s);
  if (s->move_to) return 1;
  if (s->want_aco) {
    s->want_aco = 0;
    ev_aco_t *a = ev_idle_take();
    if (a) {
      ev_aco_co(a)->arg = s;
      s->co = a;
      ev_aco_wake_now(a, EV_WAKE_READY);
      return 0;
    }
    a = ev_aco_create(ev_http_aco_main, s, 0, 0, NULL);
    if (!a) {
      mtevL(mtev_error, "http: cannot start a coroutine: %s\n", strerror(errno));
      s->co_fn = NULL;
      ev_http_fail(s, 500);
      return 0;
    }
    s->co = a;
    ev_aco_resume(a);
    return 0;
  }
  ev_http_work_t *w = s->w;
  s->handler_mask = w->res.complete || s->aborted
                        ? 0
                        : rv & (EVENTER_READ | EVENTER_WRITE | EVENTER_EXCEPTION);
  if (!s->handler_mask && !w->res.complete && !s->aborted && s->refcnt == 1) {
    /* done, yet nothing ended the response and nobody holds the session
     * to end it later: end it here (500 if it has no status), or the
     * connection would wait forever */
    if (!w->res.status && !w->res.headers_sent) {
      w->res.status = 500;
      w->res.close_after = 1;
      mtevL(mtev_error, "http: %s %s: handler returned without a response\n",
            w->req.h.method, w->req.h.path);
    }
    ev_http_flush(s, 1, 0);
  }
  return 0;
}
/* Inline at the drive's common request (a new request parsed), called
 * at the others. */
static __attribute__((noinline)) int ev_http_dispatch(mtev_http_session_ctx *s) {
  return ev_http_dispatch_in(s);
}

/* After an exception report without readability: 0 if the socket still
 * looks healthy, -1 if it is at EOF, failed, or hung up with data we
 * will not read. */
static int ev_http_probe(mtev_http_session_ctx *s) {
  if (!s->raw_io) return -1;
  char c;
  ssize_t n = recv(eventer_get_fd(s->e), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return 0;
  return -1;
}

/* The drive's states for a connection that is not simply between
 * keep-alive requests (a body left to discard, closing, lingering after
 * the half-close): out of ev_http_drive, so that the code a keep-alive
 * request runs through spans fewer cache lines (it is fetched again for
 * every request: the kernel's work between two requests evicts it).
 * 1: the drive goes on, 0: it waits. */
static __attribute__((noinline, cold)) int ev_http_drive_end(mtev_http_session_ctx *s,
                                                            uint64_t now) {
  ev_http_work_t *w = s->w;
  if (s->state == ST_DRAIN) {
    long n = ev_http_body_take(s, NULL, SIZE_MAX);
    if (n > 0) {
      s->drained += (uint64_t)n;
      if (s->drained > EV_HTTP_DRAIN_MAX) s->state = ST_CLOSING;
      return 1;
    }
    if (n < 0) {
      s->state = ST_CLOSING;
      return 1;
    }
    if (w->req.body_done) {
      s->state = ST_IDLE;
      return 1;
    }
    if (s->peer_eof) {
      s->state = ST_DEAD;
      return 1;
    }
    if (!s->rd_ready) return 0;
    ssize_t r = ev_http_fill(s);
    if (r > 0 || r == 0) return 1;
    if (errno == EAGAIN) return 0;
    ev_http_abort(s);
    return 1;
  }
  if (s->state == ST_CLOSING) {
    if (w->out.head && !s->wr_blocked && ev_http_write_out(s) < 0) {
      ev_http_abort(s);
      return 1;
    }
    if (w->out.head) return 0;
    /* half-close and read what the peer still sends, so that a reset
     * does not destroy the response before the peer read it */
    if (!s->raw_io ||
        shutdown(eventer_get_fd(s->e), SHUT_WR) != 0 || s->peer_eof) {
      s->state = ST_DEAD;
      return 1;
    }
    s->state = ST_LINGER;
    s->head_start_ns = now;
    w->in_start = w->in_end = 0;
    return 1;
  }
  if (s->state == ST_LINGER) {
    w->in_start = w->in_end = 0;
    if (!s->rd_ready) return 0;
    ssize_t n = ev_http_fill(s);
    if (n > 0) return 1;
    if (n < 0 && errno == EAGAIN) return 0;
    s->state = ST_DEAD;
    return 1;
  }
  return 0;
}

static int ev_http_drive(mtev_http_session_ctx *s, int mask, int in_cb,
                         int *done) {
  *done = 0;
  if (__builtin_expect(s->flying, 0)) ev_http_fly_del(s); /* arrived */
  if (s->state == ST_DEAD && !s->co) goto over;
  uint64_t now = ev_coarse_ns();
  s->drive_ns = now;
  if (__builtin_expect(now >= ev_date_next_ns, 0)) ev_date_tick_at(now);
  if ((mask & EVENTER_EXCEPTION) && !(mask & EVENTER_READ) && !s->aborted &&
      ev_http_probe(s) != 0) {
    /* error or hang-up reported while we were not reading: the peer is
     * gone (EPOLLERR/EPOLLHUP would fire again and again) */
    if (s->state == ST_LINGER || s->state == ST_CLOSING || s->state == ST_IDLE)
      s->state = ST_DEAD;
    else
      ev_http_abort(s);
  }
  if (mask & (EVENTER_READ | EVENTER_EXCEPTION)) s->rd_ready = 1;
  if (mask & (EVENTER_WRITE | EVENTER_EXCEPTION)) s->wr_blocked = 0;
  if (!s->w && !(s->w = ev_work_get())) {
    mtevL(mtev_error, "http: out of memory\n");
    s->state = ST_DEAD;
    goto over;
  }
  s->in_drive++;
  ev_in_drive++;
  ev_http_work_t *w = s->w;
  /* A keep-alive connection woken to read, with nothing in and nothing to
   * write: the IDLE state's first lap would find no request in the input
   * and nothing to send, and read.  The drive starts at that read. */
  if (s->state == ST_IDLE && s->rd_ready && !s->peer_eof && !s->aborted &&
      w->in_start == w->in_end && !w->out.head)
    goto idle_read;
  for (;;) {
    w = s->w;
    if (s->aborted || s->state == ST_DEAD) break;
    if (s->state == ST_HANDLER) {
      /* A complete response waits for the batch (written in IDLE).  The
       * responses before an incomplete one wait for the end of the
       * loop's pass (its handler may still answer in it: a coroutine the
       * loop resumes later, a Go handler); what the current response
       * already sent (a flush) and what its coroutine waits to see
       * written go now. */
      if (w->out.head && !s->wr_blocked &&
          (!w->res.complete || s->co_wait == CW_DRAIN)) {
        if ((s->co_wait == CW_DRAIN || w->res.headers_sent ||
             ev_http_hold(s) != 0) &&
            ev_http_write_out(s) < 0) {
          ev_http_abort(s);
          continue;
        }
      }
      if (s->co) {
        /* a coroutine serves the request: serve its wait */
        if (s->co_wait == CW_DRAIN && !w->out.head) ev_http_co_wake(s);
        if (s->co_wait == CW_READ && (s->rd_ready || s->peer_eof))
          ev_http_co_wake(s);
        if (s->co_wait == CW_MASK &&
            (((s->co_wait_mask & EVENTER_READ) && s->rd_ready) ||
             ((s->co_wait_mask & EVENTER_WRITE) && !s->wr_blocked)))
          ev_http_co_wake(s);
        if (s->co_wait == CW_NONE && s->rd_ready && !s->peer_eof) {
          /* keep reading (pipelined requests), to see the peer leave */
          ssize_t n = ev_http_fill(s);
          if (n == 0) {
            /* the client is gone, or half-closed: cancel what the handler
             * waits for; a response it still writes may get through */
            eventer_aco_cancel(ev_aco_handle_of(s->co));
          } else if (n < 0 && errno != EAGAIN && errno != ENOBUFS) {
            ev_http_abort(s);
            continue;
          } else if (n < 0 && errno == ENOBUFS) {
            s->rd_ready = 0;
          }
        }
        break;
      }
      if (s->redispatch) {
        if (ev_http_dispatch(s)) goto migrate;
        continue;
      }
      if (s->handler_mask) {
        if (((s->handler_mask & EVENTER_READ) && (s->rd_ready || s->peer_eof)) ||
            ((s->handler_mask & EVENTER_WRITE) && !s->wr_blocked)) {
          s->handler_mask = 0;
          if (ev_http_dispatch(s)) goto migrate;
          continue;
        }
        break;
      }
      if (!w->res.complete) {
        /* the response will be ended later (someone holds a reference) */
        if (s->rd_ready && !s->peer_eof) {
          ssize_t n = ev_http_fill(s);
          if (n < 0 && errno != EAGAIN && errno != ENOBUFS) {
            ev_http_abort(s);
            continue;
          }
          if (n < 0 && errno == ENOBUFS) s->rd_ready = 0;
        }
        break;
      }
      ev_http_request_done(s);
      continue;
    }
    if (s->state == ST_IDLE || s->state == ST_HEAD) {
      if (w->out.bytes >= EV_HTTP_CORK && !s->wr_blocked) {
        if (ev_http_write_out(s) < 0) {
          ev_http_abort(s);
          continue;
        }
      }
      if (w->out.bytes >= EV_HTTP_CORK) break; /* let the peer read first */
      int r;
    next_request:
      r = ev_http_next_request(s, now);
      if (r == 1) {
        if (ev_http_dispatch_in(s)) goto migrate;
        /* the common request, answered in the dispatch (a coroutine that
         * ran to its end, or a handler that ended its response) with
         * nothing queued: its end, and when no byte of another request is
         * in and none is waiting, the drive is done (the same steps as
         * the way round the loop: the HANDLER state's request end, then
         * the IDLE state with no input and nothing to read) */
        ev_http_work_t *w2 = s->w;
        if (s->state == ST_HANDLER && w2 && w2->res.complete && !s->co &&
            !s->aborted && !s->redispatch && !s->handler_mask &&
            !w2->out.head && s->co_wait == CW_NONE) {
          ev_http_request_done(s);
          if (s->state == ST_IDLE && w2->in_start == w2->in_end &&
              !s->rd_ready && !s->peer_eof)
            break;
        }
        continue;
      }
      if (r == -1) {
        mtevL(mtev_debug, "http: fd %d: not HTTP, closing\n",
              eventer_get_fd(s->e));
        s->state = ST_DEAD;
        break;
      }
      if (r >= 400) {
        ev_http_fail(s, r);
        s->state = ST_CLOSING;
        continue;
      }
      /* everything pending goes out before waiting for input */
      if (w->out.head && !s->wr_blocked && ev_http_write_out(s) < 0) {
        ev_http_abort(s);
        continue;
      }
      if (s->peer_eof) {
        /* between requests (or inside a head): just close */
        if (!w->out.head) s->state = ST_DEAD;
        else s->state = ST_CLOSING;
        continue;
      }
      if (!s->rd_ready) break;
    idle_read:;
      ssize_t n = ev_http_fill_in(s);
      /* new input, nothing else changed (the state is IDLE or HEAD, the
       * output below the cork): the request it may complete */
      if (n > 0) goto next_request;
      if (n == 0) continue; /* peer_eof is set */
      if (errno == EAGAIN) break;
      if (errno == ENOBUFS) { /* cannot happen: the head limit answers 431 */
        ev_http_fail(s, 431);
        continue;
      }
      ev_http_abort(s);
      continue;
    }
    if (ev_http_drive_end(s, now)) continue;
    break;
  }
  s->in_drive--;
  ev_in_drive--;
  if (s->aborted || s->state == ST_DEAD) {
    if (s->co) {
      /* the coroutine ends first; its end posts the task that finishes.
       * (state is left as it is: a job thread may be reading it) */
      return in_cb ? (s->registered ? ev_http_interest(s) : EVENTER_EXCEPTION)
                   : 0;
    }
    goto over;
  }
  ev_http_maybe_release(s);
  {
    int want = ev_http_interest(s);
    ev_http_arm(s);
    if (!in_cb && s->registered && want != eventer_get_mask(s->e))
      eventer_update(s->e, want);
    return want;
  }
migrate : {
  s->in_drive--;
  ev_in_drive--;
  int m = ev_http_migrate(s, in_cb);
  if (m < 0) {
    mtevL(mtev_error, "http: moving a connection failed: %s\n", strerror(errno));
    s->move_to = NULL;
    ev_http_fail(s, 500);
    s->state = ST_CLOSING;
    s->redispatch = 0;
    return ev_http_drive(s, 0, in_cb, done);
  }
  return m;
}
over:
  ev_http_teardown(s, in_cb);
  *done = 1;
  return 0;
}

int mtev_http_session_drive(eventer_t e, int mask, void *closure,
                            struct timeval *now, int *done) {
  (void)now;
  int d = 0;
  mtev_http_session_ctx *s = closure;
  if (!done) done = &d;
  *done = 0;
  if (!s || s->e != e) {
    errno = EINVAL;
    return 0;
  }
  return ev_http_drive(s, mask, 1, done);
}

int ev_http_session_drive_cb(mtev_http_session_ctx *s, eventer_t e, int mask) {
  int done;
  if (__builtin_expect(!s || s->e != e, 0)) {
    errno = EINVAL;
    return 0;
  }
  return ev_http_drive(s, mask, 1, &done);
}
