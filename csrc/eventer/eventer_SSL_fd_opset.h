/*
 * eventer_SSL_fd_opset.h - TLS (OpenSSL 3) under the eventer's fd opsets.
 *
 * Names and calling conventions are libmtev's; the implementation is our
 * own.  A TLS connection is an ordinary fd event with a TLS context
 * attached:
 *
 *   eventer_ssl_ctx_t *ctx = eventer_ssl_ctx_new(SSL_SERVER, "tlsv1.2",
 *                                                "cert.pem", "key.pem",
 *                                                NULL, NULL);
 *   eventer_t e = eventer_alloc_fd(cb, closure, fd, EVENTER_READ);
 *   EVENTER_ATTACH_SSL(e, ctx);        // e now owns ctx
 *
 * From then on eventer_read/eventer_write (and, once the event is
 * converted with eventer_set_eventer_aco, eventer_aco_read/write) move
 * plaintext; eventer_close sends close_notify, frees the context and
 * closes the fd.  The handshake runs implicitly on the first read or
 * write, or explicitly with eventer_SSL_accept / eventer_SSL_connect
 * (classic callbacks) or eventer_aco_ssl_accept / eventer_aco_ssl_connect
 * (coroutines, with a timeout).
 *
 * Readiness.  As every opset, a call that cannot progress returns -1 with
 * errno EAGAIN and sets *mask to what it waits for.  For TLS that is not
 * always the obvious direction: a read may need the fd WRITABLE (it has a
 * handshake message or a key update to send first) and a write may need
 * it READABLE (it is in the middle of a handshake).  A classic callback
 * returns *mask; a coroutine parks on it (eventer_aco_read/write do this
 * unchanged).  OpenSSL buffers what it read ahead: a classic callback
 * must read until EAGAIN before it returns READ, or buffered data waits
 * for the next packet.
 *
 * Sizes.  A read returns as much plaintext as OpenSSL holds or the socket
 * brings, up to len (several records); a write sends records until len
 * bytes are sent or the socket is full, and returns what was sent.  A
 * write that returned short, or EAGAIN, may have a record of the next
 * bytes encrypted and partly sent: as OpenSSL requires, the next write
 * must offer those same bytes (the rest of the buffer, which may have
 * moved), or the connection be closed.
 *
 * Errors.  A TLS failure (protocol error, failed certificate
 * verification, a peer that hangs up mid-handshake, a socket error) makes
 * the call return -1 with errno EIO, marks the connection failed (later
 * reads and writes fail with EIO at once) and logs ONE line to
 * eventer_err naming the operation, the peer address and the OpenSSL
 * reason, e.g.
 *   [error/eventer] TLS accept from 127.0.0.1:40312 (fd 9): error:0A00009C:
 *   SSL routines::http request
 * The same reason is kept in eventer_ssl_get_last_error(ctx).  A peer's
 * close_notify, or a plain EOF after the handshake, reads as 0 (EOF) as
 * on a socket.  Functions that take a context or event return -1/EINVAL
 * (or NULL/EINVAL) for NULL or unattached arguments.
 *
 * Contexts.  eventer_ssl_ctx_new() builds one connection's context on an
 * OpenSSL SSL_CTX shared by every context made with the same settings
 * (cached: certificate, key and CA are loaded once; OpenSSL's session
 * cache lives there, which is what makes server-side session resumption
 * work: as libmtev's, servers set SSL_OP_NO_TICKET, so TLS 1.2 resumes by
 * session id and a TLS 1.3 server sends one ticket per handshake that
 * names a session kept in that cache, OpenSSL's default 20,480 at most).  A cached SSL_CTX is rebuilt when one of its
 * files changes (checked at most every 5 s: see eventer_ssl_config) or, when
 * eventer_ssl_set_ssl_ctx_cache_expiry(n > 0) was called, when it is n
 * seconds old.  Contexts may be made on any thread; a context, once
 * attached, is used on its event's loop thread only.
 *
 * SIGPIPE: the TLS layer writes with send(MSG_NOSIGNAL), so a peer that
 * went away gives an error, never a signal.
 *
 * Differences from libmtev
 * ------------------------
 *  - eventer_ssl_ctx_new_ex reads "ca_file" when "ca_chain" is absent
 *    (libmtev looks it up and drops it); the names of its "alpn" list are
 *    negotiated even when nobody registered them (libmtev's are limited to
 *    registered names, like eventer_ssl_alpn_advertise's still are); an
 *    unreadable "crl" fails the context (libmtev loads it after the
 *    SSL_CTX is cached and only logs).  "ca_accept" (the CA names sent in
 *    a certificate request: here always those of the CA) and
 *    "dhparam_bits" (OpenSSL 3 picks DH groups itself) are ignored.
 *  - eventer_ssl_verify_cert leaves OpenSSL's verification result and
 *    eventer_ssl_get_peer_error as they were when it accepts a certificate
 *    under optional_no_ca or ignore_dates (libmtev resets them to "OK"),
 *    so a service can tell a trusted certificate from an accepted one.
 *  - A client context without a CA uses <eventer><config>'s
 *    default_ca_chain, and the system's trust store when that is unset.
 *  - The default layer is "the best version both sides have, at least
 *    TLS 1.2"; libmtev's allows TLS 1.0.  An unknown layer or layer option
 *    is an error (NULL/EINVAL), not silently ignored.
 *  - Renegotiation is off (SSL_OP_NO_RENEGOTIATION): eventer_SSL_renegotiate
 *    does a TLS 1.3 key update and fails with EOPNOTSUPP on TLS 1.2.
 *  - A server context requires a certificate and key; it asks clients for
 *    a certificate only when it has a CA or a verify function.
 *  - A client context without a CA (and no default_ca_chain) verifies
 *    against the system's trust store (libmtev's verifies against
 *    nothing).
 *  - The verify function's answer means the same everywhere: 0 refuses.
 *    It is also called once with x509ctx NULL after a handshake in which
 *    the peer sent no certificate (libmtev inverts the result there).
 *  - ALPN: the built-in selector (a NULL function) selects the protocol
 *    it matched (libmtev's picks the client's first).
 *  - eventer_set_eventer_ssl_ctx on an event that is already an aco event
 *    is refused: attach TLS first, then convert.
 *  - eventer_ssl_get_method returns the negotiated version
 *    (TLS1_3_VERSION, ...), not the context's minimum.
 */
#ifndef EVENTER_SSL_FD_OPSET_H
#define EVENTER_SSL_FD_OPSET_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "eventer.h"
#include "eventer_aco.h"
#include "mtev_hash.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SSL_SERVER, SSL_CLIENT } eventer_ssl_orientation_t;

/* The TLS opset.  Its accept refuses (-1/EOPNOTSUPP): accept on the
 * listening socket's POSIX event, then attach TLS to the new fd. */
extern eventer_fd_opset_t eventer_SSL_fd_opset;

typedef struct eventer_ssl_ctx_t eventer_ssl_ctx_t;

/* Called for each certificate of the peer's chain as OpenSSL verifies it,
 * with OpenSSL's verdict in `ok`; its result replaces that verdict (0
 * refuses the peer).  Called once more with x509ctx NULL and ok 0 after a
 * handshake in which the peer sent no certificate: return 0 to refuse
 * such peers (a required client certificate). */
typedef int (*eventer_ssl_verify_func_t)(eventer_ssl_ctx_t *ctx, int ok,
                                         X509_STORE_CTX *x509ctx,
                                         void *closure);

/* ALPN selection (server side), libmtev's signature: `in` is the client's
 * whole list in wire format (length-prefixed names).  Set *out and *outlen to
 * the chosen name inside `in` and return 1; return 0 to let the next
 * protocol of the client's list be tried; return -1 to negotiate no
 * protocol. */
typedef int (*eventer_SSL_alpn_func_t)(const unsigned char **out,
                                       unsigned char *outlen,
                                       const unsigned char *in,
                                       unsigned int inlen);

/* SNI selection (server side, ours): called during the handshake with the
 * name the client asked for.  Return a server context made with
 * eventer_ssl_ctx_new for that name (a template the caller keeps alive
 * at least until the handshake is over) to present its certificate and
 * key, or NULL to keep ctx's own. */
typedef eventer_ssl_ctx_t *(*eventer_ssl_sni_func_t)(eventer_ssl_ctx_t *ctx,
                                                     const char *name,
                                                     void *closure);

/* Initializes OpenSSL and the layer.  Idempotent, THREAD-SAFE; every
 * other call here does it on first use. */
void eventer_ssl_init(void);

/* A new, unattached context, or NULL with errno (EINVAL for bad settings,
 * ENOENT/EACCES for unreadable files, EIO for what OpenSSL refuses: a key
 * that does not match the certificate, an unparsable PEM, ...) and a
 * line on eventer_err saying why.
 *
 *   type         SSL_SERVER or SSL_CLIENT
 *   layer        "tlsv1.2", "tlsv1.3" (exactly that version), "tlsv1.1",
 *                "tlsv1" (if the system's OpenSSL policy allows them), or
 *                NULL/""/"all"/"sslv23"/"tls" for the best version both
 *                sides have (at least TLS 1.2); optionally followed by
 *                ":opt,opt,..." with libmtev's options: all, !all (OpenSSL
 *                bug workarounds), [!]tlsv1, [!]tlsv1.1, [!]tlsv1.2,
 *                [!]tlsv1.3 (allow or refuse a version), and
 *                cipher_server_preference
 *   certificate  PEM file path, or PEM text (contains a newline): the
 *                certificate, then its chain; required for servers
 *   key          PEM file path or PEM text: its private key (RSA, EC, ...)
 *   ca           PEM file (or directory) path, or PEM text: trusted CAs.
 *                Servers ask clients for a certificate and verify it
 *                against these; clients verify the server against these
 *                (NULL: the system's trust store)
 *   ciphers      OpenSSL cipher list for TLS <= 1.2; names starting with
 *                "TLS_" set the TLS 1.3 suites; NULL: OpenSSL's defaults
 *
 * Servers advertise ALPN "h2,http/1.1" by default, limited at handshake
 * time to the protocols registered with eventer_ssl_alpn_register (as
 * libmtev); clients offer nothing until eventer_ssl_alpn_advertise. */
eventer_ssl_ctx_t *eventer_ssl_ctx_new(eventer_ssl_orientation_t type,
                                       const char *layer,
                                       const char *certificate,
                                       const char *key, const char *ca,
                                       const char *ciphers);
/* libmtev's settings-table form (the table is only read; keys absent or
 * NULL are unset):
 *
 *   layer                       as above
 *   certificate, or
 *   certificate_file            as `certificate` above
 *   key, or key_file            as `key` above
 *   ca_chain, or ca_file        as `ca` above (a client without either
 *                               uses default_ca_chain, see the top)
 *   ciphers                     as above
 *   crl                         PEM file (or text) of certificate
 *                               revocation lists: a peer certificate its
 *                               issuer revoked is refused ("certificate
 *                               revoked"); the CA's CRL must be there
 *                               ("unable to get certificate CRL" else)
 *   alpn, or npn                "h2,http/1.1"-style list.  Server: the
 *                               protocols it negotiates, in the client's
 *                               order; these names need no registration
 *                               (a registered function still decides for
 *                               its name).  Client: the protocols it
 *                               offers.  "none": no ALPN.  Absent: as
 *                               eventer_ssl_ctx_new
 *
 * Other keys are ignored (one table may hold a listener's whole
 * <sslconfig>).  Contexts with equal settings share one cached SSL_CTX;
 * crl and alpn are part of the settings.  NULL with errno as above. */
eventer_ssl_ctx_t *eventer_ssl_ctx_new_ex(eventer_ssl_orientation_t type,
                                          mtev_hash_table *settings);
/* Why the calling thread's last eventer_ssl_ctx_new/_new_ex failed (what
 * it logged), "" if it has not failed (ours; thread-local, valid until
 * that thread's next call). */
const char *eventer_ssl_ctx_new_error(void);

/* Frees a context.  One attached to an event is detached first (that
 * event's TLS calls then fail with EINVAL); normally the event frees it
 * (eventer_close, or the event's final free).  NULL is a no-op. */
void eventer_ssl_ctx_free(eventer_ssl_ctx_t *ctx);

/* Attaches ctx to fd event e: e's opset becomes eventer_SSL_fd_opset and
 * e owns ctx.  e must have an fd and no context yet, and must not be an
 * aco event yet.  libmtev's form returns nothing (a failure is logged);
 * the _ex form returns 0, or -1 with errno EINVAL (NULL, no fd, aco
 * event, ctx attached elsewhere) or EBUSY (e has a context). */
void eventer_set_eventer_ssl_ctx(eventer_t e, eventer_ssl_ctx_t *ctx);
int eventer_set_eventer_ssl_ctx_ex(eventer_t e, eventer_ssl_ctx_t *ctx);
#define EVENTER_ATTACH_SSL(e, ctx) eventer_set_eventer_ssl_ctx((e), (ctx))
/* e's context (also while e is an aco event), or NULL. */
eventer_ssl_ctx_t *eventer_get_eventer_ssl_ctx(const eventer_t e);

/* The peer's address for log lines (ours).  Attaching reads it from the
 * socket; an acceptor that has it from accept(2) may set it first, so a
 * peer that reset before the attach is still named. */
void eventer_ssl_ctx_set_peer(eventer_ssl_ctx_t *ctx,
                              const struct sockaddr *addr, socklen_t len);
/* Client: the server name to send (SNI).  Before the handshake. */
void eventer_ssl_ctx_set_sni(eventer_ssl_ctx_t *ctx, const char *snivalue);
/* Client (ours): the name (or IP address) the server's certificate must
 * be for, checked during verification (a mismatch fails the handshake
 * with "hostname mismatch"); the chain alone is all libmtev checks.
 * Before the handshake.  0, or -1/EINVAL. */
int eventer_ssl_ctx_set_verify_host(eventer_ssl_ctx_t *ctx, const char *host);
/* Client (ours): offers a session to resume (from eventer_ssl_get_session
 * of an earlier connection to the same server, which OpenSSL keeps
 * resumable once that connection closed cleanly; SSL_SESSION_up_ref it to
 * keep it past that context).  Before the handshake.  0, or -1/EINVAL. */
int eventer_ssl_ctx_set_session(eventer_ssl_ctx_t *ctx, SSL_SESSION *session);
/* Server: picks a certificate by the client's SNI name (see
 * eventer_ssl_sni_func_t).  Before the handshake. */
void eventer_ssl_ctx_set_sni_select(eventer_ssl_ctx_t *ctx,
                                    eventer_ssl_sni_func_t f, void *closure);
/* See eventer_ssl_verify_func_t.  A server context with a verify function
 * asks the client for a certificate even without a CA.  Before the
 * handshake. */
void eventer_ssl_ctx_set_verify(eventer_ssl_ctx_t *ctx,
                                eventer_ssl_verify_func_t f, void *c);

/* libmtev's verify function for eventer_ssl_ctx_set_verify, with a
 * table of options as its closure (NULL: as if optional_no_ca and
 * ignore_dates were both true):
 *
 *   optional_no_ca  "true": a certificate that does not chain to a trusted
 *                   CA (self-signed, unknown issuer) is accepted
 *   ignore_dates    "true": an expired or not yet valid certificate is
 *                   accepted
 *   client_cert     (ours) "required": a peer that sends no certificate is
 *                   refused; set on a server context with
 *                   eventer_ssl_ctx_set_verify, OpenSSL refuses it in the
 *                   handshake with the protocol's alert ("peer did not
 *                   return a certificate"), elsewhere the call with
 *                   x509ctx NULL does.  Otherwise such a peer is let in,
 *                   as libmtev's listeners do
 *
 * ("true" also as on/yes/1.)  Any other verification error refuses the
 * certificate.  Returns the verdict (0 refuses). */
int eventer_ssl_verify_cert(eventer_ssl_ctx_t *ctx, int ok,
                            X509_STORE_CTX *x509ctx, void *closure);
/* Checks ctx's peer certificate against the CRLs in crl_file (PEM) as
 * the "crl" setting does, for this connection: the CRLs join the CA store
 * that ctx shares with the contexts of the same settings (once: a CRL
 * already there is not added again; contexts that do not check CRLs
 * ignore them).  Before the handshake.  libmtev's result: 1, or 0 with
 * errno (ENOENT/EACCES: unreadable file, EIO: no CRL in it; logged;
 * EINVAL: NULL arguments). */
int eventer_ssl_use_crl(eventer_ssl_ctx_t *ctx, const char *crl_file);

/* Whether a read of ctx's connection would return at once, without the
 * socket (ours): 1 when OpenSSL holds plaintext (a record it read ahead
 * counts: it is decrypted, not consumed), when the peer's close_notify
 * came (the read returns 0) or when the connection failed (the read
 * fails; a failure found now is logged as the read's); 0 when the read
 * would wait, with *mask what for (READ, or WRITE); -1/EINVAL for NULL
 * or before the handshake.  A readiness wait on the socket alone misses
 * such plaintext: check this first (eventer_aco_wait_ready and the Go
 * binding's AcoEvent.Wait do). */
int eventer_ssl_read_ready(eventer_ssl_ctx_t *ctx, int *mask);

/* Ends ctx's connection as failed (ours): from now on its reads, writes
 * and handshake steps fail with EIO.  With a reason, the context's one
 * log line is written now, naming the peer and the reason (a handshake
 * timeout a classic callback enforces itself: "handshake timed out after
 * 5000 ms"); with NULL nothing is logged, then or later (the connection
 * was ended on purpose).  Nothing happens if ctx failed already. */
void eventer_ssl_ctx_fail(eventer_ssl_ctx_t *ctx, const char *reason);

/* Drive the handshake of e's context (classic callbacks).  Returns > 0
 * when the handshake is complete (at once if it already is), or -1 with
 * errno EAGAIN and *mask the readiness it waits for, or -1/EIO (failed;
 * logged), -1/EINVAL (no context, or the wrong orientation). */
int eventer_SSL_accept(eventer_t e, int *mask);
int eventer_SSL_connect(eventer_t e, int *mask);
/* TLS 1.3: asks for a key update both ways (sent with the next write).
 * 0, or -1 with errno EOPNOTSUPP (TLS <= 1.2: renegotiation is off),
 * EINVAL (no context or no handshake yet), EIO. */
int eventer_SSL_renegotiate(eventer_t e);

/* Coroutines (ours): the handshake of aco event e's context, parking on
 * whatever each step waits for, bounded as a whole by *timeout (NULL: no
 * bound).  0, or -1 with errno EIO (failed), ETIMEDOUT, ECANCELED, EBADF
 * (closed meanwhile), EINVAL (not in a coroutine of e's loop, no context,
 * wrong orientation).  A failure or a timeout logs one line naming the
 * peer.  A timeout leaves the handshake where it stopped: a later call,
 * or a read or write (OpenSSL goes on with a handshake it has not
 * finished), may still complete it; close the event to give up.  For a
 * client: eventer_aco_connect(e, addr, len, &tmo) first. */
int eventer_aco_ssl_accept(eventer_aco_t e, struct timeval *timeout);
int eventer_aco_ssl_connect(eventer_aco_t e, struct timeval *timeout);

/* Seconds after which a cached SSL_CTX is rebuilt (0, the default: only
 * when its files change).  THREAD-SAFE. */
void eventer_ssl_set_ssl_ctx_cache_expiry(int timeout);
/* libmtev's settings hook: "ssl_ctx_cache_expiry" (as above),
 * "ssl_ctx_cache_finfo_expiry" (seconds between checks of a cached
 * SSL_CTX's files, default 5; 0: at every eventer_ssl_ctx_new) and
 * "ssl_keep_buffers" (how many connections, default 256, keep OpenSSL's
 * read and write buffers from their handshake to their close instead of
 * giving them back whenever they empty: 34 KiB each while idle, a malloc
 * and a free fewer per buffer and message; 0: none) and
 * "ssl_own_x25519" ("on", the default, or "off"; also 1/0, true/false:
 * whether contexts made from now on generate their X25519 key shares with
 * the library's own constant-time fixed-base code, offered to those
 * contexts only by a built-in OpenSSL provider, "eventer_x25519", that
 * every other OpenSSL user of the process never gets by default; the key
 * exchange is OpenSSL's either way) and "ssl_own_kdf" (the same values:
 * whether contexts made from now on run TLS 1.3's key schedule through
 * that provider's "TLS13-KDF", HKDF-Expand-Label and HKDF-Extract with
 * HMAC of the library's own over the default provider's SHA-256/SHA-384,
 * fetched once, instead of the default provider's; the same bytes either
 * way) -> 0 (counts are whole decimal numbers, 0 or more); a bad value,
 * or anything else (libmtev's ssl_dhparam* keys: OpenSSL 3 picks DH
 * groups itself) -> 1, not understood.  The same keys in
 * <eventer><config> (eventer_impl_propset, before eventer_init) reach
 * this call when the TLS layer is linked in: a bad value is -1/EINVAL
 * there, an unknown ssl_* key a warning. */
int eventer_ssl_config(const char *key, const char *value);

/* ---- ALPN --------------------------------------------------------------- */

/* Registers a protocol for every server context (f NULL: select it when
 * the client offers it).  THREAD-SAFE; registering a name again replaces
 * its function. */
void eventer_ssl_alpn_register(const char *name, eventer_SSL_alpn_func_t f);
/* The same for one context (looked up before the global ones). */
void eventer_ssl_ctx_alpn_register(eventer_ssl_ctx_t *ctx, const char *name,
                                   eventer_SSL_alpn_func_t f);
/* Server: the protocols it may select ("h2,http/1.1"; registered ones
 * only, checked at handshake time).  Client: the protocols it offers, in
 * preference order.  NULL or "none" clears.  0, or -1/EINVAL (a name
 * empty or over 255 bytes), ENOMEM. */
int eventer_ssl_alpn_advertise(eventer_ssl_ctx_t *ctx, const char *npn);
/* The negotiated protocol (not NUL-terminated): *alpn NULL and *len 0 if
 * none. */
void eventer_ssl_get_alpn_selected(eventer_ssl_ctx_t *ctx,
                                   const uint8_t **alpn, uint8_t *len);

/* ---- what the handshake learnt -------------------------------------------
 * Strings are owned by ctx (valid until it is freed); NULL when unknown. */

/* The peer's certificate with a reference for the caller (X509_free it),
 * or NULL. */
X509 *eventer_ssl_get_peer_certificate(eventer_ssl_ctx_t *ctx);
/* The chain the peer sent, leaf first (on both sides), borrowed; NULL if
 * it sent none. */
STACK_OF(X509) *eventer_ssl_get_peer_cert_chain(eventer_ssl_ctx_t *ctx);
/* Subject / issuer of the peer's certificate, OpenSSL one-line form
 * ("/CN=client.example/O=..."). */
const char *eventer_ssl_get_peer_subject(eventer_ssl_ctx_t *ctx);
const char *eventer_ssl_get_peer_issuer(eventer_ssl_ctx_t *ctx);
/* The peer certificate's DNS subjectAltNames, ", "-separated. */
const char *eventer_ssl_get_peer_san_list(eventer_ssl_ctx_t *ctx);
/* Why verification refused a certificate ("verify error:num=10:certificate
 * has expired:depth=0:/CN=..."), NULL if nothing was refused. */
const char *eventer_ssl_get_peer_error(eventer_ssl_ctx_t *ctx);
/* OpenSSL's verification result (X509_V_OK, X509_V_ERR_...), or -1. */
long eventer_ssl_get_verify_result(eventer_ssl_ctx_t *ctx);
/* notBefore / notAfter of the peer's certificate (0 if none). */
time_t eventer_ssl_get_peer_start_time(eventer_ssl_ctx_t *ctx);
time_t eventer_ssl_get_peer_end_time(eventer_ssl_ctx_t *ctx);
/* The commonName of the peer's / our own certificate copied to buff (NUL
 * terminated, truncated to len); its length, or -1 if there is none. */
int eventer_ssl_get_peer_commonname(eventer_ssl_ctx_t *ctx, char *buff,
                                    int len);
int eventer_ssl_get_local_commonname(eventer_ssl_ctx_t *ctx, char *buff,
                                     int len);
/* The reason of the last failure on this context (what was logged). */
const char *eventer_ssl_get_last_error(eventer_ssl_ctx_t *ctx);
/* Server: the name the client sent (SNI). */
const char *eventer_ssl_get_sni_name(eventer_ssl_ctx_t *ctx);
/* OpenSSL's session (borrowed). */
SSL_SESSION *eventer_ssl_get_session(eventer_ssl_ctx_t *ctx);
/* 1 if the handshake resumed a session, else 0. */
int eventer_ssl_session_reused(eventer_ssl_ctx_t *ctx);
const char *eventer_ssl_get_cipher_list(eventer_ssl_ctx_t *ctx, int prio);
const char *eventer_ssl_get_current_cipher(eventer_ssl_ctx_t *ctx);
/* The negotiated protocol version (TLS1_2_VERSION, TLS1_3_VERSION), or 0
 * before the handshake, -1 for NULL. */
int eventer_ssl_get_method(eventer_ssl_ctx_t *ctx);

#ifdef __cplusplus
}
#endif

#endif /* EVENTER_SSL_FD_OPSET_H */
