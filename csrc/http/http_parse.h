/*
 * http_parse.h - the HTTP/1.1 request parser: no I/O, no allocation.
 * Internal to the HTTP engine (mtev_http.c), the fuzz harnesses and the
 * tests; not installed.
 *
 * A request head is handled in two steps:
 *
 *   1. ev_http_head_end() finds where the head ends (the empty line),
 *      resuming where its last call stopped, so a head that arrives a byte
 *      at a time costs O(n) in total.  It enforces the size limits on the
 *      way (414 for a request line that is too long, 431 for a head that
 *      is too large) and answers 400 for an incomplete head with a bare
 *      CR in it (a head of CR line ends would never end).
 *   2. ev_http_parse_head() parses the complete head: request line, header
 *      fields, and the framing they imply (Content-Length, chunked,
 *      Connection, Expect, Host).
 *
 * Header bytes are validated with SSE4.2 (pcmpestri ranges) or AVX2 where
 * the CPU has them (chosen at run time), scalar code otherwise (and on
 * arm64).  Every implementation accepts exactly the same inputs.  With
 * SSE4.2 or AVX2 chosen, ev_http_parse_prefix first tries a fast path for
 * the common head (16-byte SSSE3 class masks a line) that answers only
 * when the general parse would give the same head.
 *
 * The syntax accepted, decided against RFC 9110/9112 and net/http's
 * http.ReadRequest plus the checks of its server (the differential fuzz
 * test lists where the two differ and why):
 *
 *   - Lines of the head end in CRLF or a bare LF (as net/http); a CR
 *     anywhere else is an error.  Every line of chunked framing (sizes,
 *     the CRLF after data, trailer fields, the last empty line) must end
 *     in CRLF.
 *   - request-line = method SP request-target SP "HTTP/" DIGIT "." DIGIT;
 *     exactly one SP each; the method is a token; the target has no
 *     whitespace or control bytes; a '%' in its path must start a valid
 *     escape.  Major version other than 1: 505.  1.x with x > 1 is served
 *     as 1.1.
 *   - field-line = token ":" OWS value OWS.  Whitespace before the colon,
 *     an empty name, control bytes other than HTAB in a value, and obsolete
 *     line folding (a line starting with SP/HTAB) are rejected with 400.
 *   - Content-Length: digits only; repeated with the same digits is
 *     accepted, with different ones ("3" and "03" too) 400.  Transfer-Encoding: exactly
 *     "chunked" (else 501); with a Content-Length, or in an HTTP/1.0
 *     request, 400 (no request smuggling).  Expect: "100-continue" or
 *     417.  Host: required once in HTTP/1.1 (except CONNECT), never more
 *     than once, and only the bytes net/http allows.
 */
#ifndef EV_HTTP_PARSE_H
#define EV_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Most header fields a head may have (the limit is set lower with
 * ev_http_limits_t.max_headers). */
#define EV_HTTP_MAX_HEADERS 100

typedef struct {
  uint32_t max_request_line; /* bytes, CRLF included: 414 beyond */
  uint32_t max_head;         /* request line + fields + empty line: 431 */
  uint32_t max_headers;      /* field lines: 431 beyond */
} ev_http_limits_t;

#define EV_HTTP_LIMITS_DEFAULT {8192, 65536, EV_HTTP_MAX_HEADERS}

/* One field line: name and value point into the parsed buffer (the value
 * without its surrounding whitespace). */
typedef struct {
  const char *name;
  const char *value;
  uint32_t name_len;
  uint32_t value_len;
} ev_http_hdr_t;

/* What a complete head says.  Pointers point into the parsed buffer. */
typedef struct {
  const char *method;
  const char *target; /* request-target as sent */
  const char *path;   /* origin-form: up to '?'; absolute-form: the path
                       * after the authority ("/" when empty); "*" */
  const char *query;  /* after '?', NULL when there is none */
  uint32_t method_len, target_len, path_len, query_len;
  uint8_t major, minor; /* as sent; minor > 1 is served as 1.1 */
  uint8_t chunked;      /* Transfer-Encoding: chunked */
  uint8_t conn_close;   /* Connection: close */
  uint8_t conn_keep_alive; /* Connection: keep-alive */
  uint8_t expect_continue; /* Expect: 100-continue (HTTP/1.1 only) */
  uint8_t is_head;      /* method HEAD */
  uint8_t absolute;     /* absolute-form target */
  int64_t content_length; /* -1: none */
  uint32_t nhdr;
  uint32_t head_len;    /* bytes of the head, empty line included */
  ev_http_hdr_t *hdr;   /* caller's array of limits.max_headers entries */
} ev_http_head_t;

/* Step 1.  Looks for the end of the head in buf[0..len) from *scan on
 * (start with *scan = 0; keep it between calls on the same growing
 * buffer).  Returns the head length (> 0), 0 when the head is not
 * complete yet, or -status: -414, -431 when a limit is exceeded, -400
 * when the head is not complete and a CR in it is followed by a byte
 * other than LF (a complete head's bare CRs are ev_http_parse_head's
 * 400). */
long ev_http_head_end(const char *buf, size_t len, size_t *scan,
                      const ev_http_limits_t *lim);

/* Step 2.  Parses the complete head buf[0..head_len) into *h (h->hdr must
 * point to lim->max_headers entries).  Returns 0, or the HTTP status the
 * request gets: 400, 414, 417, 431, 501, 505. */
int ev_http_parse_head(const char *buf, size_t head_len, ev_http_head_t *h,
                       const ev_http_limits_t *lim);

/* Steps 1 and 2 at once, for a head that is complete at the start of
 * buf[0..len): returns its length when it is there and ev_http_parse_head
 * would accept it (the same *h as ev_http_head_end then
 * ev_http_parse_head give), else 0: the head is incomplete, or something
 * in it gets an error status; the two steps then tell which.  One pass
 * over the bytes instead of two. */
long ev_http_parse_prefix(const char *buf, size_t len, ev_http_head_t *h,
                          const ev_http_limits_t *lim);

/* ev_http_parse_prefix's two halves, for the tests.  The fast path (a head
 * of the common shape, with SSSE3 masks; x86-64 with a SIMD scanner
 * chosen) returns the head's length when it is sure the general parse
 * accepts the head with the same *h, else 0 (not sure: the head may still
 * be good).  The general parse gives ev_http_parse_prefix's answer on
 * every input. */
long ev_http_parse_prefix_fast(const char *buf, size_t len, ev_http_head_t *h,
                               const ev_http_limits_t *lim);
long ev_http_parse_prefix_general(const char *buf, size_t len,
                                  ev_http_head_t *h,
                                  const ev_http_limits_t *lim);

/* ---- chunked bodies ----------------------------------------------------
 * An incremental decoder.  Each call consumes framing and returns where
 * the next span of body data is, without copying. */
typedef struct {
  uint64_t left;   /* data bytes left in the current chunk */
  uint64_t total;  /* data bytes decoded so far */
  uint32_t trailer_bytes;
  uint8_t state;   /* EV_HTTP_CK_* */
} ev_http_chunked_t;

enum {
  EV_HTTP_CK_SIZE = 0, /* expecting a chunk-size line */
  EV_HTTP_CK_DATA,     /* inside chunk data */
  EV_HTTP_CK_DATA_END, /* expecting the CRLF after chunk data */
  EV_HTTP_CK_TRAILER,  /* after the last chunk: trailer lines */
  EV_HTTP_CK_DONE
};

/* Longest chunk-size line (extensions included) and trailer section. */
#define EV_HTTP_CHUNK_LINE_MAX 4096
#define EV_HTTP_TRAILER_MAX 16384

/* Decodes from in[0..len).  Returns the input bytes consumed (>= 0), or
 * -400 for bad framing, -413 when the body would exceed max_body.  When
 * the result is > 0, or 0 with c->state DONE, progress was made; 0 means
 * more input is needed.  *data, *dlen is a span of body data inside in[]
 * (at most max_data bytes) that the consumed bytes include (dlen 0 when
 * the call consumed framing only).  At most one span per call: call again
 * for more. */
long ev_http_chunked_step(ev_http_chunked_t *c, const char *in, size_t len,
                          uint64_t max_body, size_t max_data,
                          const char **data, size_t *dlen);

/* ---- SIMD dispatch ------------------------------------------------------ */
enum { EV_HTTP_SIMD_SCALAR = 0, EV_HTTP_SIMD_SSE42, EV_HTTP_SIMD_AVX2 };

/* The implementation in use: the best the CPU has, or what the
 * environment variable EV_HTTP_SIMD ("scalar", "sse42", "avx2") or
 * ev_http_simd_set() chose. */
int ev_http_simd_get(void);
/* 1 if this CPU (and build) can run impl. */
int ev_http_simd_available(int impl);
/* Switches the implementation (tests).  0, or -1/ENOTSUP.  Not for use
 * while other threads parse. */
int ev_http_simd_set(int impl);
const char *ev_http_simd_name(int impl);

/* 1 for the bytes of a token (RFC 9110 tchar), else 0. */
extern const uint8_t ev_http_tchar[256];

/* Case-insensitive ASCII comparison of a span with a lowercase literal. */
int ev_http_token_eq(const char *s, size_t n, const char *lower);

#endif /* EV_HTTP_PARSE_H */
