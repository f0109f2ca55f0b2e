package eventer

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
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

func (q *restReq) httpRequest(co *Co) (*restWriter, *http.Request) {
	in := &q.info
	uri := in.URI
	if in.Query != "" {
		uri += "?" + in.Query
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		u = &url.URL{Path: in.URI, RawQuery: in.Query}
	}
	// the header map as net/http's reader makes it: one backing array
	// for the values
	hdrs := in.Headers()
	// made with its context (WithContext would copy it)
	req, err := http.NewRequestWithContext(&q.ctx, in.Method, "", nil)
	if err != nil { // (a method net/http refuses)
		req = (&http.Request{Method: in.Method, Header: http.Header{}}).WithContext(&q.ctx)
	}
	h := req.Header
	vals := make([]string, len(hdrs))
	host := ""
	for i, p := range hdrs {
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
		vals[i] = p[1]
		h[k] = vals[i : i+1 : i+1]
	}
	req.URL, req.Proto, req.ProtoMajor, req.ProtoMinor = u, in.Proto, 1, in.Minor
	req.Host, req.RemoteAddr, req.RequestURI = host, q.remote(), uri
	req.ContentLength = in.ContentLength
	req.Body = &restBody{q: q, op: "http.Request.Body.Read"}
	req.TLS = connState(in.TLS)
	if !in.Payload {
		req.Body = http.NoBody
		req.ContentLength = 0
	}
	if in.Chunked {
		req.TransferEncoding = []string{"chunked"}
	}
	if in.Minor == 0 && !strings.EqualFold(h.Get("Connection"), "keep-alive") {
		req.Close = true
	}
	return &restWriter{q: q, h: http.Header{}}, req
}

// restWriter is HandleHTTP's http.ResponseWriter and http.Flusher.
type restWriter struct {
	q           *restReq
	h           http.Header
	wroteHeader bool
	status      int
}

func (w *restWriter) Header() http.Header { return w.h }

func (w *restWriter) WriteHeader(code int) {
	if w.wroteHeader || w.q.ended {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != 101 {
		return // informational: the engine answers Expect: 100-continue itself
	}
	w.wroteHeader = true
	w.status = code
	q := w.q
	if q.direct {
		// fields C would refuse are left out, as below
		q.code, q.reason, q.status = code, http.StatusText(code), true
		if q.reason == "" {
			q.reason = "Status"
		}
		q.hdrs = make([]string, 0, 2*len(w.h))
		for k, vs := range w.h {
			if v := strings.Join(vs, ", "); validHeaderField(k, v) {
				q.hdrs = append(q.hdrs, k, v)
			}
		}
		q.opts |= cgo.OptStream
		return
	}
	_ = q.call("ResponseWriter.WriteHeader", func() bool {
		cgo.RestStatus(q.r, code, http.StatusText(code))
		for k, vs := range w.h {
			switch http.CanonicalHeaderKey(k) {
			case "Content-Length", "Transfer-Encoding":
				continue // the engine's
			}
			cgo.RestHeader(q.r, k, strings.Join(vs, ", "))
		}
		// may stream (chunked when flushed before the end)
		if !cgo.RestOption(q.r, cgo.HTTPChunked) {
			cgo.RestOption(q.r, cgo.HTTPClose)
		}
		return true
	})
	q.status = true
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
	return w.q.write("ResponseWriter.Write", p)
}

// WriteString is io.StringWriter.
func (w *restWriter) WriteString(s string) (int, error) {
	if w.wroteHeader && w.q.direct && !w.q.ended {
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
