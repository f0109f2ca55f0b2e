//go:build eventer_testhooks

package eventer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/acoeventer/eventer/cgo"
)

// FuzzHTTPRequestParser checks the C request parser (csrc/http) against
// net/http: http.ReadRequest plus the checks net/http's server makes
// before calling a handler (HTTP version, Host, field names and values,
// Expect), and the body read to its end.  When both accept a message,
// method, target, version, header fields, body and the number of bytes
// the message took must agree.  When one accepts what the other rejects,
// the input must fall in one of the differences listed in
// httpKnownDifference, each a deliberate choice.  Every scanner
// implementation of the C parser (scalar, SSE4.2, AVX2) must give the same
// result.
//
//	go test -tags eventer_testhooks -run '^$' -fuzz FuzzHTTPRequestParser .
func FuzzHTTPRequestParser(f *testing.F) {
	seeds, err := filepath.Glob("testdata/http/requests/*.http")
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seed corpus in testdata/http/requests: %v", err)
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	impls := cgo.HTTPSIMDImpls()
	f.Fuzz(func(t *testing.T, data []byte) {
		c := cgo.ParseHTTPRequest(data, impls[0])
		for _, impl := range impls[1:] {
			if d := cmp.Diff(c, cgo.ParseHTTPRequest(data, impl)); d != "" {
				t.Fatalf("scanner %d disagrees with the scalar parser on %q:\n%s", impl, data, d)
			}
		}
		g, gerr := goParseRequest(data)
		cok, gok := c.Status == 0, gerr == nil
		if cok != gok {
			if why := httpKnownDifference(data, c, gerr); why != "" {
				t.Logf("known difference (%s): %q", why, data)
				return
			}
			if cok {
				t.Fatalf("C accepts, net/http rejects (%v): %q", gerr, data)
			}
			t.Fatalf("net/http accepts, C answers %d: %q", c.Status, data)
		}
		if !cok {
			return
		}
		if d := cmp.Diff(g, fromC(c)); d != "" {
			t.Fatalf("C and net/http disagree on %q (-net/http +C):\n%s", data, d)
		}
	})
}

// httpReq is what both parsers are compared on.
type httpReq struct {
	Method, Target string
	Major, Minor   int
	Headers        map[string][]string // lowercase names
	Body           []byte
	Consumed       int
}

func fromC(c cgo.HTTPRequest) httpReq {
	r := httpReq{Method: c.Method, Target: c.Target, Major: c.Major, Minor: c.Minor,
		Headers: map[string][]string{}, Body: c.Body, Consumed: c.Consumed}
	for _, h := range c.Headers {
		k := strings.ToLower(h[0])
		if k == "transfer-encoding" { // net/http takes it out of the header
			continue
		}
		r.Headers[k] = append(r.Headers[k], h[1])
	}
	// net/http keeps one of several equal Content-Lengths
	if cl := r.Headers["content-length"]; len(cl) > 1 {
		r.Headers["content-length"] = cl[:1]
	}
	// net/http adds "Cache-Control: no-cache" for "Pragma: no-cache"
	if p := r.Headers["pragma"]; len(p) > 0 && p[0] == "no-cache" && r.Headers["cache-control"] == nil {
		r.Headers["cache-control"] = []string{"no-cache"}
	}
	if len(r.Body) == 0 {
		r.Body = nil
	}
	return r
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// goParseRequest reads one request as net/http's server would accept it.
func goParseRequest(data []byte) (httpReq, error) {
	cr := &countingReader{r: bytes.NewReader(data)}
	br := bufio.NewReader(cr)
	req, err := http.ReadRequest(br)
	if err != nil {
		return httpReq{}, err
	}
	// the checks of net/http's conn.readRequest and serve loop
	if req.ProtoMajor != 1 &&
		!(req.ProtoMajor == 2 && req.ProtoMinor == 0 && req.Method == "PRI" && req.RequestURI == "*") {
		return httpReq{}, errors.New("505 unsupported protocol version")
	}
	// ReadRequest takes Host out of the header; the server sees it: read
	// the header block again
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(data)))
	if _, err := tp.ReadLine(); err != nil {
		return httpReq{}, err
	}
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		return httpReq{}, err
	}
	hosts, haveHost := mh["Host"]
	isH2Upgrade := req.Method == "PRI" && len(req.Header) == 0 && req.URL.Path == "*" && req.Proto == "HTTP/2.0"
	if req.ProtoAtLeast(1, 1) && (!haveHost || len(hosts) == 0) && !isH2Upgrade && req.Method != "CONNECT" {
		return httpReq{}, errors.New("missing required Host header")
	}
	if len(hosts) == 1 && !validHostHeader(hosts[0]) {
		return httpReq{}, errors.New("malformed Host header")
	}
	for k, vv := range mh {
		if !validFieldName(k) {
			return httpReq{}, errors.New("invalid header name")
		}
		for _, v := range vv {
			if !validFieldValue(v) {
				return httpReq{}, errors.New("invalid header value")
			}
		}
	}
	if !hasToken(req.Header.Get("Expect"), "100-continue") && req.Header.Get("Expect") != "" {
		return httpReq{}, errors.New("417 expectation failed")
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return httpReq{}, fmt.Errorf("body: %w", err)
	}
	r := httpReq{Method: req.Method, Target: req.RequestURI, Major: req.ProtoMajor,
		Minor: req.ProtoMinor, Headers: map[string][]string{}, Consumed: cr.n - br.Buffered()}
	if len(body) > 0 {
		r.Body = body
	}
	for k, vv := range req.Header {
		r.Headers[strings.ToLower(k)] = vv
	}
	if len(hosts) > 0 {
		r.Headers["host"] = hosts
	}
	return r, nil
}

// httpKnownDifference names the deliberate difference that makes the two
// parsers disagree on accepting data, or returns "".
func httpKnownDifference(data []byte, c cgo.HTTPRequest, gerr error) string {
	cok := c.Status == 0
	head := data
	if i := bytes.Index(data, []byte("\n\r\n")); i >= 0 {
		head = data[:i+1]
	} else if i := bytes.Index(data, []byte("\n\n")); i >= 0 {
		head = data[:i+1]
	}
	lines := strings.Split(strings.TrimSuffix(string(head), "\n"), "\n")
	for i := range lines {
		lines[i] = strings.TrimSuffix(lines[i], "\r")
	}
	req := strings.Split(lines[0], " ")
	has := func(name string) bool {
		for _, l := range lines[1:] {
			if k, _, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
				return true
			}
		}
		return false
	}
	switch {
	case !cok && (c.Status == 414 || c.Status == 431 || c.Status == 413):
		return "our limits: request line 8 KiB, head 64 KiB, 100 fields, body 64 MiB"
	case !cok && len(lines) > 2 && func() bool {
		for _, l := range lines[2:] {
			if strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
				return true
			}
		}
		return false
	}():
		return "obsolete line folding: net/http joins the lines, we answer 400 (RFC 9112 5.2 allows either)"
	case !cok && has("content-length") && has("transfer-encoding"):
		return "Content-Length with Transfer-Encoding: net/http lets chunked win, we answer 400 (RFC 9112 6.3 says to treat it as an error: request smuggling)"
	case !cok && len(req) == 3 && req[2] == "HTTP/1.0" && has("transfer-encoding"):
		return "Transfer-Encoding in HTTP/1.0: net/http ignores it, we answer 400 (RFC 9112 6.1: faulty framing)"
	case !cok && len(req) == 3 && req[0] == "PRI" && req[2] == "HTTP/2.0":
		return "the HTTP/2 preface: net/http hands it to the handler, we answer 505"
	case !cok && c.Status == 400 && trailerDiffers(data):
		return "the trailer section: we want CRLF in all chunked framing and field syntax in trailer lines; net/http takes bare-LF trailer lines when a CRLF CRLF follows within its 4 KiB read buffer, and does not check trailer names (whitespace before the colon)"
	case len(req) == 3 && req[1] != "*" && !strings.HasPrefix(req[1], "/"):
		return "absolute-form or authority-form target: net/url's grammar and ours (RFC 3986 authority, no userinfo) differ in corners"
	}
	return ""
}

// trailerLines returns the lines of data's trailer section, walking its
// chunks as net/http does (nil when data has no complete last chunk).
// Each line keeps its line end.
func trailerLines(data []byte) [][]byte {
	i := bytes.Index(data, []byte("\n\r\n"))
	j := bytes.Index(data, []byte("\n\n"))
	switch {
	case i >= 0 && (j < 0 || i < j):
		data = data[i+3:]
	case j >= 0:
		data = data[j+2:]
	default:
		return nil
	}
	for {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			return nil
		}
		line := bytes.TrimRight(data[:nl], " \t\r")
		if k := bytes.IndexByte(line, ';'); k >= 0 {
			line = line[:k]
		}
		var n uint64
		if _, err := fmt.Sscanf(string(line), "%x", &n); err != nil {
			return nil
		}
		data = data[nl+1:]
		if n == 0 {
			break
		}
		if uint64(len(data)) < n+2 {
			return nil
		}
		data = data[n+2:]
	}
	var lines [][]byte
	for len(data) > 0 {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			break
		}
		lines = append(lines, data[:nl+1])
		if len(bytes.TrimRight(data[:nl], "\r")) == 0 {
			break
		}
		data = data[nl+1:]
	}
	return lines
}

// trailerDiffers: a trailer line ends in a bare LF, or is not a valid
// field line by our rules (net/http does not check trailer names).
func trailerDiffers(data []byte) bool {
	for _, l := range trailerLines(data) {
		if !bytes.HasSuffix(l, []byte("\r\n")) {
			return true
		}
		l = bytes.TrimSuffix(l, []byte("\r\n"))
		if len(l) == 0 {
			break
		}
		k, v, ok := bytes.Cut(l, []byte(":"))
		if !ok || !validFieldName(string(k)) || !validFieldValue(string(v)) {
			return true
		}
	}
	return false
}

func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isTchar(k[i]) {
			return false
		}
	}
	return true
}

func isTchar(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// the bytes net/http's server accepts in a Host header
func validHostHeader(h string) bool {
	for i := 0; i < len(h); i++ {
		b := h[i]
		if !(b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' ||
			strings.IndexByte("!$%&'()*+,-.:;=[]_~", b) >= 0) {
			return false
		}
	}
	return true
}

// net/http's hasToken
func hasToken(v, token string) bool {
	if len(token) > len(v) || token == "" {
		return false
	}
	if v == token {
		return true
	}
	for sp := 0; sp <= len(v)-len(token); sp++ {
		if sp > 0 && !strings.ContainsRune(" ,\t", rune(v[sp-1])) {
			continue
		}
		if e := sp + len(token); e != len(v) && !strings.ContainsRune(" ,\t", rune(v[e])) {
			continue
		}
		if strings.EqualFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}
