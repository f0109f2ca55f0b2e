package eventer

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/acoeventer/eventer/cgo"
)

// This file is HandleHTTP's side of the Go rules (rest.go): the
// http.Request a handler gets and its http.ResponseWriter.

type coKey struct{}

// CoFromRequest is the coroutine serving r when HandleHTTP's rule is aco
// (SetAco); nil otherwise.
func CoFromRequest(r *http.Request) *Co {
	co, _ := r.Context().Value(coKey{}).(*Co)
	return co
}

// restHTTP is what a HandleHTTP request needs besides its restReq, in
// one allocation: the URL, the response writer, backing arrays for the
// request's header values and the response's fields.
type restHTTP struct {
	u      url.URL
	w      restWriter
	vals   [8]string
	fields [8]string
}

// restHeaders are response header maps for reuse: a handler's map is
// cleared and kept once its ServeHTTP returned (a ResponseWriter is not
// to be used after that, as net/http says).
var restHeaders = sync.Pool{New: func() any { return http.Header{} }}

// serveHTTP runs HandleHTTP's handler for q.  An error: the handler
// wrote fewer body bytes than the Content-Length it declared; the head
// and what it wrote are sent, and the caller breaks the response off
// (as net/http closes the connection after a short body), so the client
// does not take the short body for the whole.
func (q *restReq) serveHTTP(co *Co) error {
	w, req := q.httpRequest(co)
	w.head = req.Method == http.MethodHead
	q.rule.http.ServeHTTP(w, req)
	if !w.wroteHeader && !q.ended {
		// what it set goes out, as net/http sends it
		w.WriteHeader(http.StatusOK)
	}
	var err error
	if w.declared > w.written && !q.ended {
		err = fmt.Errorf("the handler wrote %d body bytes of the %d its Content-Length declared",
			w.written, w.declared)
		_ = w.FlushError()
	}
	h := w.h
	w.h = nil
	clear(h)
	restHeaders.Put(h)
	return err
}

func (q *restReq) httpRequest(co *Co) (*restWriter, *http.Request) {
	in := &q.info
	x := &restHTTP{}
	uri := in.URI
	if in.Query != "" {
		uri += "?" + in.Query
	}
	u := &x.u
	if plainPath(in.URI) {
		// what ParseRequestURI makes of it, without parsing
		u.Path, u.RawQuery = in.URI, in.Query
	} else if pu, err := url.ParseRequestURI(uri); err == nil {
		*u = *pu
	} else {
		u.Path, u.RawQuery = in.URI, in.Query
	}
	// the header map as net/http's reader makes it: one backing array
	// for the values
	hdrs := in.Headers()
	h := make(http.Header, len(hdrs))
	vals := x.vals[:0]
	if len(hdrs) > len(x.vals) {
		vals = make([]string, 0, len(hdrs))
	}
	host := ""
	for _, p := range hdrs {
		k := http.CanonicalHeaderKey(p[0])
		if k == "Host" {
			if host == "" {
				host = p[1]
			}
			continue
		}
		if vs, ok := h[k]; ok {
			h[k] = append(vs, p[1])
			continue
		}
		vals = append(vals, p[1])
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	// made here and copied once with its context (NewRequestWithContext
	// would parse an empty URL and make a header map of its own)
	r := http.Request{Method: in.Method, URL: u, Proto: in.Proto, ProtoMajor: 1,
		ProtoMinor: in.Minor, Header: h, Host: host, RemoteAddr: restRemote(q),
		RequestURI: uri, Body: http.NoBody, TLS: connState(in.TLS)}
	if in.Payload {
		r.Body = &restBody{q: q, op: "http.Request.Body.Read"}
		r.ContentLength = in.ContentLength
	}
	if in.Chunked {
		r.TransferEncoding = []string{"chunked"}
	}
	if in.Minor == 0 && !strings.EqualFold(h.Get("Connection"), "keep-alive") {
		r.Close = true
	}
	x.w = restWriter{q: q, h: restHeaders.Get().(http.Header), fields: x.fields[:0]}
	return &x.w, r.WithContext(&q.v.ctx)
}

// plainPath: a path ParseRequestURI takes as it is (Path, no RawPath):
// '/' first, then only bytes it neither unescapes nor escapes.
func plainPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if !restPathPlain[p[i]] {
			return false
		}
	}
	return true
}

var restPathPlain = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-_.~$&+,/:;=@", byte(c)) >= 0
	}
	return t
}()

// restRemotes caches RemoteAddr strings by the peer's raw address (a
// keep-alive connection's requests share it); emptied when it grows past
// restRemotesMax.
var restRemotes struct {
	m sync.Map // raw sockaddr -> "ip:port"
	n atomic.Int32
}

const restRemotesMax = 4096

// restRemote is q's RemoteAddr.
func restRemote(q *restReq) string {
	in := &q.info
	if in.Remote != "" || in.RemoteRaw == "" {
		return q.remote()
	}
	if v, ok := restRemotes.m.Load(in.RemoteRaw); ok {
		in.Remote = v.(string)
		return in.Remote
	}
	s := q.remote()
	if restRemotes.n.Add(1) > restRemotesMax {
		restRemotes.m.Clear()
		restRemotes.n.Store(0)
	}
	restRemotes.m.Store(strings.Clone(in.RemoteRaw), s)
	return s
}

// restWriter is HandleHTTP's http.ResponseWriter and http.Flusher.
type restWriter struct {
	q           *restReq
	h           http.Header
	fields      []string // backing for the direct path's fields (restHTTP)
	wroteHeader bool
	status      int
	head        bool // a HEAD request: no body, whatever is declared
	// the Content-Length the handler declared (-1: none), and the body
	// bytes it wrote (counted only when it declared one)
	declared, written int64
}

func (w *restWriter) Header() http.Header { return w.h }

func (w *restWriter) WriteHeader(code int) {
	if w.wroteHeader || w.q.ended {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 {
		// informational: the engine answers Expect: 100-continue itself,
		// and 101 switches to nothing (Hijack is not supported); sent as
		// a final status, the client would take the next response for
		// this one's
		return
	}
	w.wroteHeader = true
	w.status = code
	w.declared = -1
	q := w.q
	if q.direct {
		// fields C would refuse are left out, as below
		q.code, q.reason, q.status = code, http.StatusText(code), true
		if q.reason == "" {
			q.reason = "Status"
		}
		// one line per value, as net/http writes them (Set-Cookie must
		// not be folded into one line)
		q.hdrs = w.fields[:0]
		n := 0
		for _, vs := range w.h {
			n += len(vs)
		}
		if 2*n > cap(q.hdrs) {
			q.hdrs = make([]string, 0, 2*n)
		}
		for k, vs := range w.h {
			if k == "Content-Length" {
				w.declare(vs)
			}
			for _, v := range vs {
				if validHeaderField(k, v) {
					q.hdrs = append(q.hdrs, k, v)
				}
			}
		}
		q.opts |= cgo.OptStream
		return
	}
	_ = q.call("ResponseWriter.WriteHeader", func() bool {
		cgo.RestStatus(q.r, code, http.StatusText(code))
		for k, vs := range w.h {
			switch http.CanonicalHeaderKey(k) {
			case "Content-Length":
				if k == "Content-Length" {
					w.declare(vs)
				}
				continue // the engine's
			case "Transfer-Encoding":
				continue // the engine's
			}
			for _, v := range vs {
				cgo.RestHeaderAdd(q.r, k, v) // a line each, as net/http
			}
		}
		// may stream (chunked when flushed before the end)
		if !cgo.RestOption(q.r, cgo.HTTPChunked) {
			cgo.RestOption(q.r, cgo.HTTPClose)
		}
		return true
	})
	q.status = true
}

// declare takes the Content-Length the handler set (vs, its values) as
// the length its body must have (net/http's reading of it: one value, a
// decimal number; none for HEAD, 204 and 304).
func (w *restWriter) declare(vs []string) {
	if len(vs) != 1 || w.head || w.status == 204 || w.status == 304 {
		return
	}
	if n, err := strconv.ParseInt(vs[0], 10, 64); err == nil && n >= 0 {
		w.declared = n
	}
}

func (w *restWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		if w.h.Get("Content-Type") == "" && len(p) > 0 {
			if _, set := w.h["Content-Type"]; !set {
				w.h.Set("Content-Type", http.DetectContentType(p))
			}
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.declared < 0 {
		return w.q.write("ResponseWriter.Write", p)
	}
	// net/http's rule: no more than declared
	var over error
	if left := w.declared - w.written; int64(len(p)) > left {
		p, over = p[:left], http.ErrContentLength
	}
	n, err := w.q.write("ResponseWriter.Write", p)
	w.written += int64(n)
	if err == nil {
		err = over
	}
	return n, err
}

// WriteString is io.StringWriter.
func (w *restWriter) WriteString(s string) (int, error) {
	if w.wroteHeader && w.q.direct && !w.q.ended && w.declared < 0 {
		w.q.appendBody(unsafe.Slice(unsafe.StringData(s), len(s)))
		return len(s), nil
	}
	return w.Write([]byte(s))
}

// Flush sends what was written so far and waits until the connection
// took it (http.Flusher).  (The first Flush of a rule's handler does not
// wait: it moves the rule to the path where Flush waits, for the rule's
// later requests.)
func (w *restWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush with its error (http.ResponseController uses it).
func (w *restWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.q.flush("ResponseWriter.Flush")
}

// ---- the ends of responses goroutines built ----------------------------------------

// restEnds are the responses of a loop's direct requests whose goroutine
// handlers ended them: the loop sends them all in one posted call (one
// wake-up, no allocation per request).
type restEnds struct {
	l     *loop
	mu    sync.Mutex
	q     []*restReq // under mu
	spare []*restReq // the loop's: the previous batch's array
	drain func()     // posted: l.restDrainEnds (made once)
}

// postEnd hands q's end (its end* fields) to its loop (q's goroutine).
func (q *restReq) postEnd() error {
	// the rest is the loop's: its driver may block in C again
	q.uncountGoWork()
	e := &q.pool.ends
	e.mu.Lock()
	first := len(e.q) == 0
	e.q = append(e.q, q)
	if first && e.drain == nil {
		e.drain = func() { e.l.restDrainEnds(e) }
	}
	drain := e.drain
	e.mu.Unlock()
	if !first {
		return nil // a drain is posted and has not taken the batch yet
	}
	if err := e.l.post(drain); err != nil {
		e.mu.Lock()
		e.q = e.q[:0] // the loop stopped: its requests were answered
		e.mu.Unlock()
		return err
	}
	return nil
}

// restDrainEnds sends the ends posted so far (driver).
func (l *loop) restDrainEnds(e *restEnds) {
	e.mu.Lock()
	batch := e.q
	e.q = e.spare[:0]
	e.spare = nil
	e.mu.Unlock()
	for i, q := range batch {
		batch[i] = nil
		if q.sessGone {
			continue
		}
		q.sessGone = true
		q.watchEnd()
		spec, body := q.endSpec, q.endBody
		q.endSpec, q.endBody = nil, nil
		then := cgo.RespondEnd
		if q.endAbort {
			then = cgo.RespondAbort
		}
		_ = withSession(q.epoch, func() error {
			cgo.RestRespond(q.sess, q.endCode, spec, q.endOpts, body, then)
			return nil
		})
	}
	e.mu.Lock()
	if e.spare == nil {
		e.spare = batch[:0]
	}
	e.mu.Unlock()
}
