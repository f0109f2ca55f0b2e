package eventer

import (
	"bytes"
	"container/list"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/acoeventer/eventer/cgo"
)

// This file is TLS for Go code: listeners (WithTLS, or ssl="on" in the
// configuration), Co.Connect's client side (WithClientTLS), and what a
// connection's handshake learnt (AcoEvent.TLSState).  The TLS layer is
// the C one (OpenSSL 3 under the eventer's fd opsets); an AcoEvent's Read
// and Write move plaintext through it unchanged, several TLS records a
// call.  Over TLS, an AcoEvent.Write that returned short (a timeout) may
// leave a record of the next bytes encrypted and partly sent: the next
// Write must offer those same bytes, or the connection be closed (the
// Conn's Write, which writes everything, always does).

// TLSConfig says how a listener (WithTLS) or a client (WithClientTLS) does
// TLS.  Its fields mirror a listener's <sslconfig> keys (named in
// brackets).  Fields whose comment starts with "Listener:" or "Client:"
// are for that side only (given to the other, they are an error); the
// others serve both.
//
// Certificates, keys, CAs and CRLs are PEM, from a file (the ...File
// fields) or in memory (the others); giving both forms of one is an
// error.  Unset fields keep the TLS layer's defaults: the best version
// both sides have (at least TLS 1.2), OpenSSL's ciphers, no ALPN.
type TLSConfig struct {
	// Certificate (then its chain) and its private key [certificate_file,
	// key_file; certificate, key].  Required for a listener; a client
	// sends them when the server asks for a certificate.
	CertificateFile, KeyFile string
	Certificate, Key         []byte
	// The CAs the peer's certificate must chain to [ca_chain].  A
	// listener with a CA asks clients for a certificate.  A client without
	// one verifies against <eventer><config>'s default_ca_chain, else the
	// system's trust store.
	CAFile string
	CA     []byte
	// Certificate revocation lists of those CAs [crl].
	CRLFile string
	CRL     []byte
	// "tlsv1.2" or "tlsv1.3" (that version only), or "" / "all": the best
	// version both sides have, at least TLS 1.2; libmtev's options may
	// follow (":!tlsv1.2,cipher_server_preference") [layer].
	Layer string
	// An OpenSSL cipher list; "TLS_..." names set the TLS 1.3 suites
	// [ciphers].
	Ciphers string
	// ALPN: a listener negotiates these protocols (in the client's order);
	// a client offers them, in preference order [alpn].  A listener
	// without any negotiates what C code registered with
	// eventer_ssl_alpn_register (among "h2" and "http/1.1"), as a
	// configured listener does; a client without any offers none.
	ALPN []string
	// Listener: "optional" asks every client for a certificate, "required"
	// refuses clients without one; "" asks only when there is a CA, and
	// lets a client send none [client_cert].
	ClientCert string
	// Accept a peer certificate that does not chain to the CA
	// [optional_no_ca], or whose dates are off [ignore_dates]; other
	// verification errors still refuse it.
	OptionalNoCA, IgnoreDates bool
	// Bounds the handshake (default 5 s) [handshake_timeout].
	HandshakeTimeout time.Duration

	// Client: the name sent as SNI (unless it is an IP address) and that
	// the server's certificate must be for.  Default: Connect's host.
	ServerName string
	// Client: accept any server certificate (testing only).
	InsecureSkipVerify bool
	// Client: where sessions to resume are kept (nil: none).  A
	// connection offers the session of the last one to the same server
	// (network, address, ServerName) and leaves its own there when it is
	// closed (or at once, for TLS 1.2).
	SessionCache *TLSSessionCache
}

// TLSSessionCache keeps the sessions TLS clients may resume
// (TLSConfig.SessionCache): one per server, the least recently used one
// out past its capacity.  Safe for concurrent use.  The sessions are C
// memory (OpenSSL's), freed when they leave the cache, or once the
// cache is unreachable.
type TLSSessionCache struct {
	mu       sync.Mutex
	capacity int
	m        map[string]*list.Element // of *tlsSession
	ll       list.List                // most recently used first
}

// tlsSession is one cached session: a reference on an SSL_SESSION, dropped
// by a cleanup once the entry is unreachable.
type tlsSession struct {
	key string
	p   unsafe.Pointer
}

// NewTLSSessionCache returns a cache of up to capacity sessions (<= 0:
// 64).
func NewTLSSessionCache(capacity int) *TLSSessionCache {
	if capacity <= 0 {
		capacity = 64
	}
	return &TLSSessionCache{capacity: capacity, m: map[string]*list.Element{}}
}

func (c *TLSSessionCache) get(key string) *tlsSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		c.ll.MoveToFront(el)
		return el.Value.(*tlsSession)
	}
	return nil
}

// put keeps session p (a reference the cache takes over) for key.
func (c *TLSSessionCache) put(key string, p unsafe.Pointer) {
	s := &tlsSession{key: key, p: p}
	runtime.AddCleanup(s, cgo.TLSSessionFree, p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		el.Value = s
		c.ll.MoveToFront(el)
		return
	}
	c.m[key] = c.ll.PushFront(s)
	for c.ll.Len() > c.capacity {
		old := c.ll.Remove(c.ll.Back()).(*tlsSession)
		delete(c.m, old.key)
	}
}

// Len is the number of sessions kept.
func (c *TLSSessionCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// tlsClient is what a client connection with a session cache remembers.
type tlsClient struct {
	cache *TLSSessionCache
	key   string
}

// keepSession leaves a's session in its cache when it can be resumed
// (loop thread).
func (a *AcoEvent) keepSession() {
	if a.tlsc == nil || a.ptr == nil {
		return
	}
	if p := cgo.TLSSessionGet(a.ptr); p != nil {
		a.tlsc.cache.put(a.tlsc.key, p)
	}
}

const defaultHandshakeTimeout = 5 * time.Second

// pemOrFile adds key=value for one of a PEM pair (file or text).
func pemOrFile(kv *[][2]string, what, fileKey, file, textKey string, text []byte) error {
	switch {
	case file != "" && len(text) > 0:
		return fmt.Errorf("%s given both as a file and as PEM", what)
	case file != "":
		*kv = append(*kv, [2]string{fileKey, file})
	case len(text) > 0:
		if !bytes.Contains(text, []byte("-----BEGIN ")) || bytes.IndexByte(text, 0) >= 0 {
			return fmt.Errorf("%s: not PEM", what)
		}
		*kv = append(*kv, [2]string{textKey, string(text)})
	}
	return nil
}

// settings turns c into the TLS layer's settings (the <sslconfig> keys);
// server says which side it is for.
func (c *TLSConfig) settings(server bool) ([][2]string, error) {
	var kv [][2]string
	if err := pemOrFile(&kv, "certificate", "certificate_file", c.CertificateFile, "certificate", c.Certificate); err != nil {
		return nil, err
	}
	if err := pemOrFile(&kv, "key", "key_file", c.KeyFile, "key", c.Key); err != nil {
		return nil, err
	}
	hasCert := c.CertificateFile != "" || len(c.Certificate) > 0
	hasKey := c.KeyFile != "" || len(c.Key) > 0
	if hasCert != hasKey {
		return nil, errors.New("a certificate needs its key, and a key its certificate")
	}
	if server && !hasCert {
		return nil, errors.New("a listener needs a certificate and key")
	}
	// the CA and CRL keys take a path or PEM text alike
	if err := pemOrFile(&kv, "CA", "ca_chain", c.CAFile, "ca_chain", c.CA); err != nil {
		return nil, err
	}
	if err := pemOrFile(&kv, "CRL", "crl", c.CRLFile, "crl", c.CRL); err != nil {
		return nil, err
	}
	if c.Layer != "" {
		kv = append(kv, [2]string{"layer", c.Layer})
	}
	if c.Ciphers != "" {
		kv = append(kv, [2]string{"ciphers", c.Ciphers})
	}
	if len(c.ALPN) > 0 {
		for _, p := range c.ALPN {
			if p == "" || len(p) > 255 || strings.ContainsAny(p, ", \x00") {
				return nil, fmt.Errorf("ALPN protocol %q: empty, over 255 bytes, or with a comma or space", p)
			}
		}
		kv = append(kv, [2]string{"alpn", strings.Join(c.ALPN, ",")})
	}
	if c.HandshakeTimeout < 0 {
		return nil, fmt.Errorf("handshake timeout %v: negative", c.HandshakeTimeout)
	}
	if server {
		switch c.ClientCert {
		case "", "optional", "required":
		default:
			return nil, fmt.Errorf("ClientCert %q: not \"\", \"optional\" or \"required\"", c.ClientCert)
		}
		if c.ServerName != "" || c.InsecureSkipVerify || c.SessionCache != nil {
			return nil, errors.New("ServerName, InsecureSkipVerify and SessionCache are for clients (WithClientTLS)")
		}
		if c.ClientCert != "" {
			kv = append(kv, [2]string{"client_cert", c.ClientCert})
		}
		if c.OptionalNoCA {
			kv = append(kv, [2]string{"optional_no_ca", "true"})
		}
		if c.IgnoreDates {
			kv = append(kv, [2]string{"ignore_dates", "true"})
		}
		if c.HandshakeTimeout > 0 {
			ms := (c.HandshakeTimeout + time.Millisecond - 1) / time.Millisecond
			kv = append(kv, [2]string{"handshake_timeout", strconv.FormatInt(int64(ms), 10)})
		}
	} else if c.ClientCert != "" {
		return nil, errors.New("ClientCert is for listeners (WithTLS)")
	}
	for _, p := range kv {
		if err := nulErr(p[0], p[1]); err != nil {
			return nil, err
		}
	}
	return kv, nil
}

// WithTLS makes the listener speak TLS (ssl="on" with an <sslconfig> made
// of cfg): each connection's handshake completes, within
// cfg.HandshakeTimeout, on its loop before fn runs; fn's Read and Write
// move plaintext, and AcoEvent.TLSState tells what the handshake learnt.
// A handshake that fails (plaintext, garbage, a refused certificate, a
// peer that hangs up or stalls) closes the connection with one log line
// naming the peer and the reason; fn never sees it.  A file that cannot
// be used, a key that does not match its certificate, an unknown layer
// make ListenAco fail with the TLS layer's reason.
func WithTLS(cfg TLSConfig) ListenerOption {
	return func(c *listenConfig) {
		kv, err := cfg.settings(true)
		if err != nil {
			c.fail("TLS: %w", err)
			return
		}
		c.tls, c.ssl = true, kv
	}
}

// ConnectOption configures Co.Connect.
type ConnectOption func(*connectConfig)

type connectConfig struct {
	tls *TLSConfig
	err error
}

// WithClientTLS makes Co.Connect a TLS client: after the TCP connect it
// does the handshake (bounded by Connect's timeout and by
// cfg.HandshakeTimeout, default 5 s), verifying the server's certificate
// against cfg's CA (else default_ca_chain, else the system's trust
// store) and its name against cfg.ServerName (default: the host of
// Connect's address; a "unix" address needs a ServerName or
// InsecureSkipVerify).  The AcoEvent it returns reads and writes
// plaintext.  A failed handshake returns an error naming Co.Connect with
// a *TLSError (OpenSSL's reason), a timed out one an error satisfying
// errors.Is(err, os.ErrDeadlineExceeded).
func WithClientTLS(cfg TLSConfig) ConnectOption {
	return func(c *connectConfig) {
		cp := cfg
		c.tls = &cp
	}
}

// TLSError is a TLS failure: the step that failed and OpenSSL's reason,
// as the TLS layer's log line says it.  It unwraps to syscall.EIO.
type TLSError struct {
	Step   string // "handshake", "read", "write"
	Reason string // e.g. "error:0A000086:SSL routines::certificate verify failed (certificate has expired)"
}

func (e *TLSError) Error() string { return "TLS " + e.Step + ": " + e.Reason }
func (e *TLSError) Unwrap() error { return syscall.EIO }

// tlsErr is errnoError for a TLS connection: EIO carries the reason.
func (a *AcoEvent) tlsErr(op, step string, errno syscall.Errno) error {
	if errno == syscall.EIO && a.ptr != nil && cgo.IsTLS(a.ptr) {
		reason := cgo.TLSLastError(a.ptr)
		if reason == "" {
			reason = "failed"
		}
		return &OpError{Op: op, Err: &TLSError{Step: step, Reason: reason}}
	}
	return errnoError(op, errno)
}

// clientTLS makes the client context of a connection to address, with
// the session to resume offered, and what the connection keeps for its
// cache (nil: no cache).
func clientTLS(network, address string, cfg *TLSConfig) (unsafe.Pointer, *tlsClient, error) {
	kv, err := cfg.settings(false)
	if err != nil {
		return nil, nil, err
	}
	name := cfg.ServerName
	if err := nulErr("ServerName", name); err != nil {
		// ("good.example\x00.evil.example" verified as good.example)
		return nil, nil, err
	}
	if name == "" && network != "unix" {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return nil, nil, err
		}
		name = host
	}
	if name == "" && !cfg.InsecureSkipVerify {
		return nil, nil, errors.New("TLS: a ServerName (or InsecureSkipVerify) is needed for a unix address")
	}
	sni := name
	if ip := net.ParseIP(strings.Trim(name, "[]")); ip != nil {
		sni, name = "", ip.String() // no SNI for addresses (RFC 6066)
	}
	verify := 0
	if cfg.InsecureSkipVerify {
		verify = cgo.TLSNoVerify
	}
	if cfg.OptionalNoCA {
		verify |= cgo.TLSOptionalNoCA
	}
	if cfg.IgnoreDates {
		verify |= cgo.TLSIgnoreDates
	}
	ctx, err := cgo.TLSClient(kv, sni, name, verify)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS: %w", err)
	}
	if cfg.SessionCache == nil {
		return ctx, nil, nil
	}
	tc := &tlsClient{cache: cfg.SessionCache, key: network + " " + address + " " + name}
	if s := tc.cache.get(tc.key); s != nil {
		err := cgo.TLSOfferSession(ctx, s.p) // OpenSSL takes its own reference
		runtime.KeepAlive(s)
		if err != nil {
			cgo.TLSCtxFree(ctx)
			return nil, nil, fmt.Errorf("TLS: offering a session: %w", err)
		}
	}
	return ctx, tc, nil
}

// handshake drives a's TLS handshake until it is over, parking on what
// each step waits for; it fails at deadline (zero: none), after limit
// (the timeout the log line names).
func (a *AcoEvent) handshake(co *Co, op string, server bool, deadline time.Time, limit time.Duration) error {
	for {
		done, errno, mask := cgo.TLSHandshake(a.ptr, server)
		if done {
			return nil
		}
		if errno != syscall.EAGAIN {
			return a.tlsErr(op, "handshake", errno)
		}
		left := time.Until(deadline)
		if left <= 0 {
			cgo.TLSFail(a.ptr, fmt.Sprintf("handshake timed out after %d ms", limit.Milliseconds()))
			return &OpError{Op: op, Err: fmt.Errorf("TLS handshake: %w", os.ErrDeadlineExceeded)}
		}
		res, errno, _ := a.waitReady(co, op, mask, 0, int64(left))
		if res < 0 {
			if errno == syscall.ETIMEDOUT {
				continue // the next turn logs and fails
			}
			if a.ptr != nil {
				cgo.TLSFail(a.ptr, "") // ended on purpose (cancel, close): not logged
			}
			return errnoError(op, errno)
		}
	}
}

// waitTLSRead is Wait for a mask with Read on a TLS connection: ready
// when OpenSSL holds plaintext the socket does not show (or a read would
// return EOF or fail at once); else a wait for what the TLS layer needs
// to read (READ, or WRITE), again, until the deadline.  With Write in
// mask too, the socket's writability also ends the wait.
func (a *AcoEvent) waitTLSRead(co *Co, op string, mask Mask, timeout time.Duration) error {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		ready, need, ok := cgo.TLSReadReady(a.ptr)
		if ready {
			return nil
		}
		if !ok { // before the handshake: the socket's readiness
			need = int(mask)
		} else if mask&Write != 0 {
			need |= int(Write)
		}
		left := timeoutNs(timeout)
		if timeout > 0 {
			left = max(int64(time.Until(deadline)), 0)
		}
		res, errno, _ := a.waitReady(co, op, need, 0, left)
		if res < 0 {
			if errno == syscall.EPERM {
				return nil
			}
			return errnoError(op, errno)
		}
		if !ok || mask&Write != 0 {
			return nil
		}
	}
}

// TLSState is what a TLS connection's handshake learnt.
type TLSState struct {
	Version            uint16 // tls.VersionTLS12, tls.VersionTLS13 (the same numbers)
	CipherSuite        string // OpenSSL's name ("TLS_AES_128_GCM_SHA256")
	NegotiatedProtocol string // ALPN ("" if none)
	DidResume          bool   // a resumed session
	ServerName         string // listener: the SNI name the client sent
	// The chain the peer sent, leaf first (nil: it sent none), parsed
	// from the DER OpenSSL received.
	PeerCertificates []*x509.Certificate
	// The CN of the peer's certificate ("" if none).
	PeerCommonName string
	// Why verification refused a certificate that was let in anyway
	// (OptionalNoCA, IgnoreDates): OpenSSL's "verify error:num=..." text;
	// "" when the chain verified or was not checked.
	VerifyError string
}

// onLoop runs fn with a's C event on a's loop thread: at once there,
// else through the loop (a plain goroutine waits; another loop's thread
// panics with *MisuseError).  ErrClosed once a is closed.
func (a *AcoEvent) onLoop(op string, fn func(p unsafe.Pointer) error) error {
	if a == nil {
		return &OpError{Op: op, Err: errors.New("nil AcoEvent")}
	}
	run := func() error {
		if a.ptr == nil || a.closed.Load() || a.epoch != sessionNow() {
			return &OpError{Op: op, Err: errClosedIO}
		}
		return fn(a.ptr)
	}
	if a.l.onItsThread() {
		return run()
	}
	if cgo.InLoop() {
		misuse(op, "called from another loop's thread (it waits for the connection's loop)")
	}
	return a.l.call(run)
}

// TLSState tells what the connection's TLS handshake learnt: its version,
// cipher, ALPN protocol, whether it resumed a session, the SNI name, and
// the peer's certificate chain.  An error satisfying errors.Is(err,
// ErrNotTLS) when the connection is not TLS; ErrClosed once it is
// closed.  It may be called from the connection's coroutines or from a
// plain goroutine (which waits for the loop).
func (a *AcoEvent) TLSState() (*TLSState, error) {
	const op = "AcoEvent.TLSState"
	var st *TLSState
	err := a.onLoop(op, func(p unsafe.Pointer) error {
		in, ok := cgo.TLSState(p)
		if !ok {
			return &OpError{Op: op, Err: ErrNotTLS}
		}
		st = &TLSState{Version: in.Version, CipherSuite: in.Cipher, NegotiatedProtocol: in.ALPN,
			DidResume: in.Resumed, ServerName: in.SNI, PeerCommonName: in.CN, VerifyError: in.PeerError}
		if der := cgo.TLSPeerChain(p); der != nil {
			certs, err := x509.ParseCertificates(der)
			if err != nil {
				return &OpError{Op: op, Err: fmt.Errorf("the peer's certificates: %w", err)}
			}
			st.PeerCertificates = certs
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// PeerCertificates is TLSState().PeerCertificates: the peer's chain,
// leaf first, or nil (no TLS, no certificate, closed).
func (a *AcoEvent) PeerCertificates() []*x509.Certificate {
	st, err := a.TLSState()
	if err != nil {
		return nil
	}
	return st.PeerCertificates
}

// RemoteCN is the CN of the certificate a TLS client sent
// (mtev_acceptor_closure_remote_cn), and whether there is one.
func (x *Acceptor) RemoteCN() (cn string, ok bool) {
	x.onLoop("Acceptor.RemoteCN", func(ac unsafe.Pointer) { cn, ok = cgo.AcceptorRemoteCN(ac) })
	return cn, ok
}
