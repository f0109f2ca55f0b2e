package cgo

/*
#cgo noescape ev_go_tls_try
#cgo nocallback ev_go_tls_try
#include <stdlib.h>
#include "tls.h"
#include "mtev_listener.h"
*/
import "C"

import (
	"syscall"
	"unsafe"
)

// Client verify modes (tls.h).
const (
	TLSOptionalNoCA = int(C.EV_GO_TLS_OPTIONAL_NO_CA)
	TLSIgnoreDates  = int(C.EV_GO_TLS_IGNORE_DATES)
	TLSNoVerify     = int(C.EV_GO_TLS_NO_VERIFY)
)

// cStrings copies kv into C arrays of C strings (free them with the
// returned function).
func cStrings(kv [][2]string) (keys, vals **C.char, free func()) {
	n := len(kv)
	if n == 0 {
		return nil, nil, func() {}
	}
	sz := C.size_t(n) * C.size_t(unsafe.Sizeof((*C.char)(nil)))
	k := (*[1 << 20]*C.char)(C.malloc(sz))[:n:n]
	v := (*[1 << 20]*C.char)(C.malloc(sz))[:n:n]
	for i, p := range kv {
		k[i], v[i] = C.CString(p[0]), C.CString(p[1])
	}
	return &k[0], &v[0], func() {
		for i := range k {
			C.free(unsafe.Pointer(k[i]))
			C.free(unsafe.Pointer(v[i]))
		}
		C.free(unsafe.Pointer(&k[0]))
		C.free(unsafe.Pointer(&v[0]))
	}
}

func cStrOrNil(s string) *C.char {
	if s == "" {
		return nil
	}
	return C.CString(s)
}

// TLSClient makes a client TLS context (eventer_ssl_ctx_new_ex with the
// settings kv), sending sni and checking the server's certificate is for
// verifyHost ("" for neither), verifying as verify says.
func TLSClient(kv [][2]string, sni, verifyHost string, verify int) (unsafe.Pointer, error) {
	keys, vals, free := cStrings(kv)
	defer free()
	cs, ch := cStrOrNil(sni), cStrOrNil(verifyHost)
	defer C.free(unsafe.Pointer(cs))
	defer C.free(unsafe.Pointer(ch))
	var buf [errBuf]C.char
	ctx, err := C.ev_go_tls_client(keys, vals, C.int(len(kv)), cs, ch, C.int(verify), &buf[0], C.size_t(len(buf)))
	if ctx == nil {
		return nil, failure(buf[:], err)
	}
	return unsafe.Pointer(ctx), nil
}

// TLSCtxFree frees a context that was not attached.
func TLSCtxFree(ctx unsafe.Pointer) { C.ev_go_tls_ctx_free(iv(ctx)) }

// TLSAttach attaches ctx to fd event e (before it becomes an aco event);
// e owns ctx from then on (on failure ctx is freed).
func TLSAttach(e, ctx unsafe.Pointer) error {
	if rc := C.ev_go_tls_attach(iv(e), iv(ctx)); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

// TLSHandshake is one handshake step of e's context: done, or errno
// (EAGAIN with the mask to wait for).
func TLSHandshake(e unsafe.Pointer, server bool) (bool, syscall.Errno, int) {
	r := C.ev_go_tls_handshake(iv(e), cbool(server))
	if r.res > 0 {
		return true, 0, 0
	}
	return false, syscall.Errno(r.err), int(r.mask)
}

// TLSTry is Try for a TLS connection (read or write): a C call that
// never calls back into Go (a line the TLS layer logs meanwhile reaches
// Go afterwards), so buf stays where it is and is used whole.
func TLSTry(e unsafe.Pointer, op int, buf []byte) (int64, syscall.Errno, int) {
	var b *C.char
	if len(buf) > 0 {
		b = (*C.char)(unsafe.Pointer(&buf[0]))
	}
	r := C.ev_go_tls_try(iv(e), C.int(op), b, C.size_t(len(buf)))
	if r.logged != 0 {
		C.ev_go_log_flush()
	}
	return int64(r.res), syscall.Errno(r.err), int(r.mask)
}

// TLSReadReady is eventer_ssl_read_ready for e: whether a read would
// return at once; if not, the mask it waits for; ok false when the call
// does not apply (no context, no handshake yet).
func TLSReadReady(e unsafe.Pointer) (ready bool, mask int, ok bool) {
	var m C.int
	switch C.ev_go_tls_read_ready(iv(e), &m) {
	case 1:
		return true, 0, true
	case 0:
		return false, int(m), true
	}
	return false, 0, false
}

// TLSSessionGet is e's session with a reference for the caller, when it
// can be resumed (nil otherwise).
func TLSSessionGet(e unsafe.Pointer) unsafe.Pointer {
	return unsafe.Pointer(C.ev_go_tls_session_get(iv(e)))
}

// TLSSessionFree drops a reference TLSSessionGet gave.
func TLSSessionFree(s unsafe.Pointer) { C.ev_go_tls_session_free((*C.SSL_SESSION)(s)) }

// TLSOfferSession offers session s to client context ctx (before its
// handshake).
func TLSOfferSession(ctx, s unsafe.Pointer) error {
	if rc := C.ev_go_tls_offer_session((*C.eventer_ssl_ctx_t)(ctx), (*C.SSL_SESSION)(s)); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

// TLSFail ends e's TLS connection as failed and logs reason once ("":
// ended on purpose, nothing logged).
func TLSFail(e unsafe.Pointer, reason string) {
	cr := cStrOrNil(reason)
	defer C.free(unsafe.Pointer(cr))
	C.ev_go_tls_fail(iv(e), cr)
}

// IsTLS reports whether e has a TLS context.
func IsTLS(e unsafe.Pointer) bool { return C.ev_go_tls_is(iv(e)) != 0 }

// TLSLastError is why e's TLS connection last failed ("" if it has not).
func TLSLastError(e unsafe.Pointer) string { return C.GoString(C.ev_go_tls_last_error(iv(e))) }

// TLSInfo is what a connection's handshake learnt.
type TLSInfo struct {
	Version                                       uint16
	Resumed                                       bool
	VerifyResult                                  int64
	Cipher, ALPN, SNI, PeerError, Subject, Issuer string
	CN                                            string
	HasCN                                         bool
}

// TLSState reads e's TLS context (loop thread); false if it has none.
func TLSState(e unsafe.Pointer) (TLSInfo, bool) {
	var in C.ev_go_tls_info_t
	if C.ev_go_tls_info(iv(e), &in) != 0 {
		return TLSInfo{}, false
	}
	gs := func(p *C.char) string {
		if p == nil {
			return ""
		}
		return C.GoString(p)
	}
	out := TLSInfo{
		Version: uint16(in.version), Resumed: in.reused != 0, VerifyResult: int64(in.verify_result),
		Cipher: gs(in.cipher), SNI: gs(in.sni), PeerError: gs(in.peer_error),
		Subject: gs(in.subject), Issuer: gs(in.issuer),
	}
	if in.alpn_len > 0 {
		out.ALPN = C.GoStringN(&in.alpn[0], in.alpn_len)
	}
	if in.cn_len >= 0 {
		out.CN, out.HasCN = C.GoString(&in.cn[0]), true
	}
	return out, true
}

// TLSPeerChain is the peer's chain, leaf first, as concatenated DER (nil:
// none).
func TLSPeerChain(e unsafe.Pointer) []byte {
	var n C.size_t
	p := C.ev_go_tls_peer_chain(iv(e), &n)
	if p == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(p))
	return C.GoBytes(unsafe.Pointer(p), C.int(n))
}

// AcceptorRemoteCN is mtev_acceptor_closure_remote_cn ("" and false: none).
func AcceptorRemoteCN(ac unsafe.Pointer) (string, bool) {
	p := C.mtev_acceptor_closure_remote_cn((*C.mtev_acceptor_closure_t)(ac))
	if p == nil {
		return "", false
	}
	return C.GoString(p), true
}
