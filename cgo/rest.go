package cgo

/*
#include <stdlib.h>
#include <sys/socket.h>
#include "restglue.h"
#cgo noescape ev_go_rest_append
#cgo nocallback ev_go_rest_append

// ev_go_rest_respond with its spec and body in C memory, as integers
static int ev_go_rest_respond_c(uintptr_t ctx, int code, uintptr_t spec,
                                size_t speclen, uint32_t opts, uintptr_t body,
                                size_t blen, int then, uintptr_t nextp) {
  return ev_go_rest_respond(ctx, code, (const char *)spec, speclen, opts,
                            (const void *)body, blen, then, nextp);
}
*/
import "C"

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"syscall"
	"unsafe"
)

// Operations a Go handler asks of its request's relay (restglue.h).
const (
	RestRead  = int(C.EV_GO_OP_READ)
	RestFlush = int(C.EV_GO_OP_FLUSH)
	RestEnd   = int(C.EV_GO_OP_END)
	RestDone  = int(C.EV_GO_OP_DONE)
	RestAbort = int(C.EV_GO_OP_ABORT)
	// RestBufSize is the most a RestRead returns.
	RestBufSize = 64 * 1024
	// RestBatchMax is the most direct requests of a loop pass that come
	// to Go in one StepRestBatch (a full batch goes at once, the rest at
	// the pass's end), when the pass's poll reported fewer than
	// RestBatchBusyNev ready events.
	RestBatchMax = int(C.EV_GO_BATCH_MAX)
	// RestBatchBusy is that most for a pass whose poll reported
	// RestBatchBusyNev ready events or more.
	RestBatchBusy    = int(C.EV_GO_BATCH_BUSY)
	RestBatchBusyNev = int(C.EV_GO_BATCH_BUSY_NEV)
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

// RestRule registers a Go rule (ev_go_rest_rule): its mountpoint, and the
// handle RestRuleRelay takes.
func RestRule(method, base, expr string, id uint64) (unsafe.Pointer, uintptr, error) {
	cm, cb, ce := C.CString(method), C.CString(base), C.CString(expr)
	defer C.free(unsafe.Pointer(cm))
	defer C.free(unsafe.Pointer(cb))
	defer C.free(unsafe.Pointer(ce))
	var rule C.uintptr_t
	mp, err := C.ev_go_rest_rule(cm, cb, ce, C.uint64_t(id), &rule)
	if mp == nil {
		return nil, 0, err
	}
	return unsafe.Pointer(mp), uintptr(rule), nil
}

// RestRuleAco tells C whether the rule's handler runs on the loop
// (ev_go_rest_rule_aco).
func RestRuleAco(rule uintptr, on bool) {
	v := 0
	if on {
		v = 1
	}
	C.ev_go_rest_rule_aco(C.uintptr_t(rule), C.int(v))
}

// RestRuleRelay makes every later request of the rule take the relay
// (ev_go_rest_rule_relay).
func RestRuleRelay(rule uintptr, on bool) {
	v := 0
	if on {
		v = 1
	}
	C.ev_go_rest_rule_relay(C.uintptr_t(rule), C.int(v))
}

// StepRest is the step a loop hands its driver for a request of a Go rule
// on the direct path (restglue.h).
const StepRest = int(C.EV_GO_STEP_REST)

// Flat head flags (restglue.h).
const (
	HeadPayload = uint32(C.EV_GO_HEAD_PAYLOAD)
	HeadChunked = uint32(C.EV_GO_HEAD_CHUNKED)
	HeadHTTP11  = uint32(C.EV_GO_HEAD_HTTP11)
	HeadTLS     = uint32(C.EV_GO_HEAD_TLS)
)

// RestDirect is a request on the direct path, as its step hands it over.
type RestDirect struct {
	Ctx  uintptr // the session (Go holds a reference until RestRespond ends it)
	Rule uint64  // Go's rule id
	Head []byte  // the flat head, copied into Go memory
}

// HeadSpare is the room a copied head has after its end (cap(Head) -
// len(Head)): the request's first response bytes fit there, so that a
// request costs one allocation less.
const HeadSpare = 128

// HeadArena hands out the copied heads of one loop's requests: it carves
// them, each with its HeadSpare, out of a chunk of headChunk bytes that
// it allocates when the last one is full, so that a request costs no
// allocation of its own.  A head is never written again once handed out
// (its strings are views of it) and is capped at its spare room; a head
// kept alive keeps its chunk (at most headChunk bytes).  The zero value
// is ready; one goroutine at a time (the loop's driver, its coroutines).
type HeadArena struct{ free []byte }

// headChunk is the size of a HeadArena's chunks; a head that needs more
// than a quarter of one (with its spare) gets an allocation of its own.
const headChunk = 4096

// copy copies a flat head of n bytes out of C memory.
func (a *HeadArena) copy(p unsafe.Pointer, n int) []byte { return a.copySpare(p, n, HeadSpare) }

// copySpare is copy with spare bytes of room after the head (HeadSpare or
// 0: the heads of a pass's batch, whose requests' records keep a first
// response buffer of their own).
func (a *HeadArena) copySpare(p unsafe.Pointer, n, spare int) []byte {
	need := (n + spare + 7) &^ 7 // (each head on a word of its own)
	if need > headChunk/4 {
		return headCopy(p, n, spare)
	}
	if len(a.free) < need {
		a.free = make([]byte, headChunk)
	}
	head := a.free[: n : n+spare]
	a.free = a.free[need:]
	copy(head, unsafe.Slice((*byte)(p), n))
	return head
}

// headCopy copies a flat head out of C memory into an allocation of its
// own, with spare bytes of room after it.
func headCopy(p unsafe.Pointer, n, spare int) []byte {
	head := make([]byte, n, n+spare)
	copy(head, unsafe.Slice((*byte)(p), n))
	return head
}

// restStep reads a StepRest step.
func (d *Driver) restStep() RestDirect {
	s := &d.d.step
	return RestDirect{Ctx: uintptr(s.u64[1]), Rule: uint64(s.u64[0]),
		Head: d.heads.copy(s.closure, int(s.u64[2]))}
}

// StepRestBatch is the step that hands the driver the direct requests of
// a loop pass at once (restglue.h).
const StepRestBatch = int(C.EV_GO_STEP_REST_BATCH)

// RestBatch is the direct requests of a loop pass, as its StepRestBatch
// step hands them over (Driver.Run to Handler.RestDirectBatch): valid
// only until RestDirectBatch returns, and pushed at most once.
type RestBatch struct{ d *Driver }

// Len is how many requests the batch holds.
func (b RestBatch) Len() int { return int(b.d.d.step.u64[0]) }

// PushOnto appends the batch's requests to stack, their heads copied into
// Go memory, the first that came last: a stack served from its end serves
// them in the order they came.  No slice of the driver's in between (the
// entries go from the batch's bytes to stack at once).
func (b RestBatch) PushOnto(stack []RestDirect) []RestDirect {
	s := &b.d.d.step
	n, size := int(s.u64[0]), int(s.u64[2])
	if n <= 0 || size <= 0 {
		return stack
	}
	return b.d.heads.batch(s.closure, size, n, stack, true)
}

// batch appends to b the n requests of a pass's batch of size bytes in C
// memory at p (in reverse order with rev), their heads copied into Go
// memory: a batch of at most half a chunk in one copy from the arena's
// chunk, each head a view of it capped at its own end (a kept head keeps
// that chunk, as one copied on its own would); a bigger one head by head
// (copySpare), so that a kept head never keeps a big batch's other heads.
func (a *HeadArena) batch(p unsafe.Pointer, size, n int, b []RestDirect, rev bool) []RestDirect {
	if need := (size + 7) &^ 7; need <= headChunk/2 {
		if len(a.free) < need {
			a.free = make([]byte, headChunk)
		}
		c := a.free[:size:size]
		a.free = a.free[need:]
		copy(c, unsafe.Slice((*byte)(p), size))
		return splitBatch(c, n, b, rev)
	}
	from := len(b)
	b = splitBatch(unsafe.Slice((*byte)(p), size), n, b, rev)
	for i := from; i < len(b); i++ {
		h := b[i].Head
		b[i].Head = a.copySpare(unsafe.Pointer(unsafe.SliceData(h)), len(h), 0)
	}
	return b
}

// splitBatch appends to b the n requests of a pass's batch p (Go memory),
// in reverse order with rev: entries of the rule's id, the session and
// the head's length (3 native 64-bit words), each followed by its head and
// padded to 8 bytes (restglue.c, ev_go_batch_add).  Each Head is p's
// bytes, its capacity its length (no spare room: a batch's requests are
// aco rules', whose reused records keep their first response bytes in a
// buffer of their own).  A length beyond p (C never writes one) ends the
// split: the requests before it are appended.
func splitBatch(p []byte, n int, b []RestDirect, rev bool) []RestDirect {
	ne := binary.NativeEndian
	from := len(b)
	b = slices.Grow(b, n)[:from+n]
	seg := b[from:]
	k := 0
	for ; k < n && len(p) >= 24; k++ {
		rule, ctx, hl := ne.Uint64(p), uintptr(ne.Uint64(p[8:])), int(ne.Uint64(p[16:]))
		if hl < 0 || hl > len(p)-24 {
			break // (never: C wrote it)
		}
		j := k
		if rev {
			j = n - 1 - k
		}
		seg[j] = RestDirect{Ctx: ctx, Rule: rule, Head: p[24 : 24+hl : 24+hl]}
		next := (24 + hl + 7) &^ 7
		if next > len(p) {
			next = len(p)
		}
		p = p[next:]
	}
	if k < n {
		if rev { // (the k split sit at the segment's end)
			copy(seg, seg[n-k:])
		}
		clear(seg[k:])
		b = b[:from+k]
	}
	return b
}

// What RestRespond does after applying what it is given (restglue.h).
const (
	RespondAppend = int(C.EV_GO_RESPOND_APPEND)
	RespondFlush  = int(C.EV_GO_RESPOND_FLUSH)
	RespondEnd    = int(C.EV_GO_RESPOND_END)
	RespondAbort  = int(C.EV_GO_RESPOND_ABORT)
	// OptStream is the CHUNKED option, or CLOSE where chunked is not
	// possible (mtev_http_response_ok's).
	OptStream = uint32(C.EV_GO_OPT_STREAM)
)

// RestRespond applies a direct request's response (ev_go_rest_respond):
// code > 0 sets the status, spec's reason and header fields, and opts;
// then body; then `then`.  Loop thread only.
func RestRespond(ctx uintptr, code int, spec []byte, opts uint32, body []byte, then int) bool {
	return restRespond(ctx, code, spec, opts, body, then, 0)
}

// RestRespondNext is RestRespond with RespondEnd from the loop's driver
// goroutine or one of its coroutines: the session's drive goes on in the
// call, and a pipelined request behind the response that takes the direct
// path comes back in *next (its head copied; next.Ctx 0: none), to be
// served as a StepRest step would be.
// slot is the loop's NewRestSlot, heads the arena next's head is copied
// into (the loop's: one goroutine at a time).
func RestRespondNext(ctx uintptr, code int, spec []byte, opts uint32, body []byte,
	slot RestSlot, heads *HeadArena, next *RestDirect) bool {
	var ok bool
	// (the loop's cached spec is in the slot's RestSpecRoom: C memory already)
	room := unsafe.Add(unsafe.Pointer(slot), restSlotSize+restScratch)
	inRoom := len(spec) > 0 && unsafe.Pointer(unsafe.SliceData(spec)) == room
	ns := len(spec)
	if inRoom {
		ns = 0
	}
	if n := ns + len(body); n <= restScratch {
		// spec and body as C memory (the slot's scratch): no cgo pointer
		// check of Go memory, which cost more than this copy
		buf := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(slot), restSlotSize)), restScratch)
		var sp, bp uintptr
		if inRoom {
			sp = uintptr(room)
		} else if len(spec) > 0 {
			copy(buf, spec)
			sp = uintptr(unsafe.Pointer(&buf[0]))
		}
		copy(buf[ns:], body)
		if len(body) > 0 {
			bp = uintptr(unsafe.Pointer(&buf[ns]))
		}
		ok = C.ev_go_rest_respond_c(C.uintptr_t(ctx), C.int(code), C.uintptr_t(sp), C.size_t(len(spec)),
			C.uint32_t(opts), C.uintptr_t(bp), C.size_t(len(body)), C.int(RespondEnd), C.uintptr_t(uintptr(slot))) != 0
	} else {
		ok = restRespond(ctx, code, spec, opts, body, RespondEnd, uintptr(slot))
	}
	nx := (*C.ev_go_next_t)(slot)
	if nx.ctx != 0 {
		*next = RestDirect{Ctx: uintptr(nx.ctx), Rule: uint64(nx.rule),
			Head: heads.copy(unsafe.Pointer(nx.head), int(nx.len))}
	}
	return ok
}

// RestSlot is C memory where RestRespondNext's call leaves the next
// request (C writes it while Go code may run in a callback: it must not be
// on a goroutine's stack; passed as an integer, as C memory needs no cgo
// pointer check).  One per loop, never freed.
type RestSlot unsafe.Pointer

// NewRestSlot allocates a RestSlot: the next request, then restScratch
// bytes where RestRespondNext copies a small response, then RestSpecRoom's.
func NewRestSlot() RestSlot {
	return RestSlot(C.calloc(1, C.size_t(restSlotSize+restScratch+restSpecRoom)))
}

// FreeRestSlot frees a slot of NewRestSlot's (nil: nothing).  Its loop's
// driver must be done with it.
func FreeRestSlot(s RestSlot) {
	C.free(unsafe.Pointer(s))
}

// RestSpecRoom is slot s's room for the loop's cached response head spec
// (the same head, response after response): a spec there is C memory, which
// RestRespondNext hands to C as it is, without copying it to the scratch.
// Whoever caches a spec there rewrites it in place (the loop's thread).
func RestSpecRoom(s RestSlot) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(s), restSlotSize+restScratch)), restSpecRoom)
}

const (
	restSlotSize = (unsafe.Sizeof(C.ev_go_next_t{}) + 15) &^ 15
	restScratch  = 1024
	restSpecRoom = 256
)

func restRespond(ctx uintptr, code int, spec []byte, opts uint32, body []byte, then int,
	slot uintptr) bool {
	var sp, bp unsafe.Pointer
	if len(spec) > 0 {
		sp = unsafe.Pointer(&spec[0])
	}
	if len(body) > 0 {
		bp = unsafe.Pointer(&body[0])
	}
	return C.ev_go_rest_respond(C.uintptr_t(ctx), C.int(code), (*C.char)(sp), C.size_t(len(spec)),
		C.uint32_t(opts), bp, C.size_t(len(body)), C.int(then), C.uintptr_t(slot)) != 0
}

// RestClientGone reports whether a direct request's client is gone
// (ev_go_rest_client_gone; loop thread only).
func RestClientGone(ctx uintptr) bool { return C.ev_go_rest_client_gone(C.uintptr_t(ctx)) != 0 }

// RestOptionCtx is mtev_http_response_option_set on a direct request's
// session (loop thread only).
func RestOptionCtx(ctx uintptr, opt uint32) bool {
	return C.ev_go_rest_option_ctx(C.uintptr_t(ctx), C.uint32_t(opt)) != 0
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
	// RemoteRaw is the peer's sockaddr as C holds it (the direct path:
	// Remote is made from it when asked for, RemoteAddr)
	RemoteRaw        string
	Minor            int
	Payload, Chunked bool
	ContentLength    int64
	Header           [][2]string
	Pats             []string
	TLS              *RestTLS // nil: not TLS

	hdrRaw []byte // the direct path: the header fields, read by Headers
	nhdr   int
}

// Headers are the request's header fields in order (those of a flat head
// are read on the first call).
func (in *RestInfo) Headers() [][2]string {
	if in.Header == nil && in.nhdr > 0 {
		in.Header = make([][2]string, in.nhdr)
		p := in.hdrRaw
		for i := range in.Header {
			var k, v string
			k, p = headStr(p)
			v, p = headStr(p)
			in.Header[i] = [2]string{k, v}
		}
		in.nhdr = 0
	}
	return in.Header
}

// headStr is the next string of a flat head that ParseHead checked.
func headStr(p []byte) (string, []byte) {
	n := int(binary.NativeEndian.Uint32(p))
	if n == 0 {
		return "", p[4:]
	}
	return unsafe.String(&p[4], n), p[4+n:]
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

// RestHeaderAdd is mtev_http_response_header_add.
func RestHeaderAdd(r uintptr, name, value string) bool {
	cn, cv := C.CString(name), C.CString(value)
	defer C.free(unsafe.Pointer(cn))
	defer C.free(unsafe.Pointer(cv))
	return C.ev_go_rest_header_add(C.uintptr_t(r), cn, cv) != 0
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

// RestDiscard drops what was built of r's response while its head has not
// gone out (ev_go_rest_discard), for an error page in its place.
func RestDiscard(r uintptr) bool { return C.ev_go_rest_discard(C.uintptr_t(r)) != 0 }

// lpField splits one length-prefixed field (a native-endian uint32 length,
// then that many bytes) off the front of p; ok is false when p is too short.
func lpField(p []byte) (f, rest []byte, ok bool) {
	if len(p) < 4 {
		return nil, nil, false
	}
	n := int(binary.NativeEndian.Uint32(p))
	if n > len(p)-4 {
		return nil, nil, false
	}
	return p[4 : 4+n], p[4+n:], true
}

// HeadMin is the length of a flat head without its strings.
const HeadMin = 20

// ParseHead reads a flat head (restglue.h) into in: its strings are views
// of head, which must never change afterwards.  False if head is short.
func ParseHead(head []byte, in *RestInfo) bool {
	if len(head) < HeadMin {
		return false
	}
	ne := binary.NativeEndian
	flags := ne.Uint32(head)
	in.ContentLength = int64(ne.Uint64(head[4:]))
	nhdr, npats := int(ne.Uint32(head[12:])), int(ne.Uint32(head[16:]))
	in.Payload = flags&HeadPayload != 0
	in.Chunked = flags&HeadChunked != 0
	if flags&HeadHTTP11 != 0 {
		in.Minor = 1
	}
	p := head[20:]
	var s [5]string // method, path, protocol, query, peer
	for i := range s {
		f, rest, ok := lpField(p)
		if !ok {
			return false
		}
		if len(f) > 0 {
			s[i] = unsafe.String(&f[0], len(f))
		}
		p = rest
	}
	in.Method, in.URI, in.Proto, in.Query, in.RemoteRaw = s[0], s[1], s[2], s[3], s[4]
	if nhdr > len(p)/8 || npats > len(p)/4+1 {
		return false
	}
	// the header fields are checked here and read when asked for
	in.hdrRaw, in.nhdr = p, nhdr
	for i := 0; i < 2*nhdr; i++ {
		_, rest, ok := lpField(p)
		if !ok {
			return false
		}
		p = rest
	}
	if npats > 0 {
		in.Pats = make([]string, npats)
		for i := range in.Pats {
			f, rest, ok := lpField(p)
			if !ok {
				return false
			}
			if len(f) > 0 {
				in.Pats[i] = unsafe.String(&f[0], len(f))
			}
			p = rest
		}
	}
	if flags&HeadTLS != 0 {
		if len(p) < 12 {
			return false
		}
		t := &RestTLS{Version: uint16(ne.Uint32(p)), Cipher: uint16(ne.Uint32(p[4:])),
			Resumed: ne.Uint32(p[8:]) != 0}
		p = p[12:]
		var s [4]string // ALPN, SNI, the peer's CN, its certificates
		for i := range s {
			f, rest, ok := lpField(p)
			if !ok {
				return false
			}
			if len(f) > 0 && i < 3 {
				s[i] = unsafe.String(&f[0], len(f))
			} else if len(f) > 0 {
				t.PeerDER = bytes.Clone(f) // (the handler's to keep)
			}
			p = rest
		}
		t.ALPN, t.SNI, t.RemoteCN = s[0], s[1], s[2]
		in.TLS = t
	}
	return true
}

// FormatRemote is "ip:port" ("[ip]:port" for IPv6, "@" for a Unix
// socket, "" for none) of a sockaddr as RemoteRaw holds it.
func FormatRemote(raw string) string {
	if len(raw) < 2 {
		return ""
	}
	fam := binary.NativeEndian.Uint16([]byte(raw[:2]))
	switch {
	case fam == C.AF_INET && len(raw) >= 8:
		port := binary.BigEndian.Uint16([]byte(raw[2:4]))
		a := netip.AddrFrom4([4]byte([]byte(raw[4:8])))
		return a.String() + ":" + strconv.Itoa(int(port))
	case fam == C.AF_INET6 && len(raw) >= 24:
		port := binary.BigEndian.Uint16([]byte(raw[2:4]))
		a := netip.AddrFrom16([16]byte([]byte(raw[8:24])))
		return "[" + a.String() + "]:" + strconv.Itoa(int(port))
	case fam == C.AF_UNIX:
		return "@"
	}
	return ""
}
