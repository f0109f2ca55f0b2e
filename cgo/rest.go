package cgo

/*
#include <stdlib.h>
#include "restglue.h"
#cgo noescape ev_go_rest_append
#cgo nocallback ev_go_rest_append
*/
import "C"

import (
	"fmt"
	"syscall"
	"unsafe"
)

// Operations a Go handler asks of its request's relay (restglue.h).
const (
	RestRead  = int(C.EV_GO_OP_READ)
	RestFlush = int(C.EV_GO_OP_FLUSH)
	RestEnd   = int(C.EV_GO_OP_END)
	RestDone  = int(C.EV_GO_OP_DONE)
	// RestBufSize is the most a RestRead returns.
	RestBufSize = 64 * 1024
)

// Response options (mtev_http.h).
const (
	HTTPChunked = uint32(C.MTEV_HTTP_CHUNKED)
	HTTPClose   = uint32(C.MTEV_HTTP_CLOSE)
	HTTPGzip    = uint32(C.MTEV_HTTP_GZIP)
	HTTPDeflate = uint32(C.MTEV_HTTP_DEFLATE)
)

// RestStart receives each request of a Go rule (goRestStart): rule is the
// rule's id, r the request (an integer for the calls below), loop the
// index of the loop serving it.  It returns the request's id for the
// notifications (0: refused; the relay answers 500).
var RestStart func(rule uint64, r uintptr, loop int) uint64

// RestOpDone: request id's operation has its result (RestResult).
var RestOpDone func(id uint64)

// RestCancel: request id's client went away (or half-closed).
var RestCancel func(id uint64)

// RestInit is mtev_http_rest_init.
func RestInit() { C.mtev_http_rest_init() }

// RestInitACL reads the ACL of the loaded configuration again
// (mtev_http_rest_load_rules_ex): its error names the file and line.
func RestInitACL() error {
	var buf [512]C.char
	if rc, err := C.mtev_http_rest_load_rules_ex(&buf[0], C.size_t(len(buf))); rc != 0 {
		if msg := C.GoString(&buf[0]); msg != "" {
			return fmt.Errorf("%s: %w", msg, err)
		}
		return err
	}
	return nil
}

// RestRuleClose makes rule mp answer 404 (ev_go_rest_rule_close).
func RestRuleClose(mp unsafe.Pointer) { C.ev_go_rest_rule_close((*C.mtev_rest_mountpoint_t)(mp)) }

// RestRule registers a Go rule (ev_go_rest_rule): its mountpoint.
func RestRule(method, base, expr string, id uint64) (unsafe.Pointer, error) {
	cm, cb, ce := C.CString(method), C.CString(base), C.CString(expr)
	defer C.free(unsafe.Pointer(cm))
	defer C.free(unsafe.Pointer(cb))
	defer C.free(unsafe.Pointer(ce))
	mp, err := C.ev_go_rest_rule(cm, cb, ce, C.uint64_t(id))
	if mp == nil {
		return nil, err
	}
	return unsafe.Pointer(mp), nil
}

// RestSubmit asks r's relay for op (ev_go_rest_submit).
func RestSubmit(r uintptr, op, n int) error {
	if rc := C.ev_go_rest_submit(C.uintptr_t(r), C.int(op), C.size_t(n)); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

// RestResult is the last operation's result, once done.
func RestResult(r uintptr) (res int64, err syscall.Errno, done bool) {
	var cres C.int64_t
	var cerr C.int
	if C.ev_go_rest_result(C.uintptr_t(r), &cres, &cerr) == 0 {
		return 0, 0, false
	}
	return int64(cres), syscall.Errno(cerr), true
}

// RestBuf is the relay's buffer, n bytes of it (C memory: valid until the
// next operation).
func RestBuf(r uintptr, n int) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(C.ev_go_rest_buf(C.uintptr_t(r)))), n)
}

// RestRelease drops Go's reference to r.
func RestRelease(r uintptr) { C.ev_go_rest_release(C.uintptr_t(r)) }

// RestInfo is what Go copies of a request when it starts.
type RestInfo struct {
	Method, URI, Proto, Query, Remote string
	Minor                             int
	Payload, Chunked                  bool
	ContentLength                     int64
	Header                            [][2]string
	Pats                              []string
	TLS                               *RestTLS // nil: not TLS
}

// RestTLS is what the request's connection negotiated over TLS.
type RestTLS struct {
	Version, Cipher     uint16 // IANA numbers (crypto/tls's constants)
	ALPN, SNI, RemoteCN string
	Resumed             bool
	PeerDER             []byte // the peer's certificates, DER, leaf first, concatenated
}

// RestRequestInfo copies r's request (on r's loop, in RestStart).
func RestRequestInfo(r uintptr) RestInfo {
	var o C.ev_go_req_info_t
	C.ev_go_rest_info(C.uintptr_t(r), &o)
	in := RestInfo{
		Method: C.GoString(o.method), URI: C.GoString(o.uri), Proto: C.GoString(o.proto),
		Query: C.GoString(o.query), Remote: C.GoString(o.remote), Minor: int(o.minor),
		Payload: o.payload != 0, Chunked: o.chunked != 0, ContentLength: int64(o.content_length),
	}
	if o.tls != 0 {
		in.TLS = &RestTLS{Version: uint16(o.tls_version), Cipher: uint16(o.tls_cipher),
			ALPN: C.GoString(o.alpn), SNI: C.GoString(o.sni), RemoteCN: C.GoString(o.remote_cn),
			Resumed: o.tls_resumed != 0}
		if o.peer_der_len > 0 {
			in.TLS.PeerDER = C.GoBytes(unsafe.Pointer(o.peer_der), C.int(o.peer_der_len))
		}
	}
	if n := int(o.nhdr); n > 0 {
		in.Header = make([][2]string, n)
		for i := 0; i < n; i++ {
			var v *C.char
			k := C.ev_go_rest_header(C.uintptr_t(r), C.int(i), &v)
			in.Header[i] = [2]string{C.GoString(k), C.GoString(v)}
		}
	}
	if n := int(o.npats); n > 0 {
		in.Pats = make([]string, n)
		for i := 0; i < n; i++ {
			in.Pats[i] = C.GoString(C.ev_go_rest_pat(C.uintptr_t(r), C.int(i)))
		}
	}
	return in
}

// RestStatus is mtev_http_response_status_set.
func RestStatus(r uintptr, code int, reason string) bool {
	cr := C.CString(reason)
	defer C.free(unsafe.Pointer(cr))
	return C.ev_go_rest_status(C.uintptr_t(r), C.int(code), cr) != 0
}

// RestHeader is mtev_http_response_header_set.
func RestHeader(r uintptr, name, value string) bool {
	cn, cv := C.CString(name), C.CString(value)
	defer C.free(unsafe.Pointer(cn))
	defer C.free(unsafe.Pointer(cv))
	return C.ev_go_rest_header_set(C.uintptr_t(r), cn, cv) != 0
}

// RestOption is mtev_http_response_option_set.
func RestOption(r uintptr, opt uint32) bool {
	return C.ev_go_rest_option(C.uintptr_t(r), C.uint32_t(opt)) != 0
}

// RestAppend is mtev_http_response_append (p is used only during the call).
func RestAppend(r uintptr, p []byte) bool {
	if len(p) == 0 {
		return true
	}
	return C.ev_go_rest_append(C.uintptr_t(r), unsafe.Pointer(&p[0]), C.size_t(len(p))) != 0
}

// RestHeadersSent reports whether the response headers went out.
func RestHeadersSent(r uintptr) bool { return C.ev_go_rest_headers_sent(C.uintptr_t(r)) != 0 }
