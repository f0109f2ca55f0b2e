//go:build eventer_testhooks

package eventer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/acoeventer/eventer/cgo"
)

// restServer starts an eventer with n loops and an http_rest_api listener;
// its base URL.  At the end the listener stops and every request,
// session and connection must be gone.
func restServer(t *testing.T, n int, opts ...Option) string {
	t.Helper()
	setup(t, n, opts...)
	l, addr := restListen(t)
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		deadline := time.Now().Add(20 * time.Second)
		for restLive() != 0 || cgo.HTTPSessions() != 0 {
			if time.Now().After(deadline) {
				t.Errorf("still live: %d Go requests, %d sessions", restLive(), cgo.HTTPSessions())
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := cgo.TestListenerStop(l, 100); err != nil {
			t.Errorf("listener stop: %v", err)
		}
		if n := cgo.AcceptorClosures(); n != 0 {
			t.Errorf("%d acceptor closures left", n)
		}
	})
	return "http://" + addr
}

var restBaseN atomic.Int32

// restBase is a base of its own for each test (the routing table is the
// process's).
func restBase() string { return fmt.Sprintf("/t%d/", restBaseN.Add(1)) }

func mustRule(t *testing.T) func(*Rule, error) *Rule {
	return func(r *Rule, err error) *Rule {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func hello(rc *RestClosure) error {
	res := rc.Response()
	if err := res.Ok("text/plain"); err != nil {
		return err
	}
	fmt.Fprintf(res, "hello %s co=%v", strings.Join(rc.Pats(), ","), rc.Co() != nil)
	return res.End()
}

func TestRestRuleModes(t *testing.T) {
	url := restServer(t, 2)
	b := restBase()
	mustRule(t)(NewRule("GET", b, "^plain/(\\w+)$", hello))
	aco := mustRule(t)(NewRule("GET", b, "^aco/(\\w+)/(\\w+)?$", hello))
	aco.SetAco(true)
	for i := 0; i < 20; i++ {
		st, h, body := get(t, url+b+"plain/x")
		if st != 200 || body != "hello x co=false" || h.Get("Content-Type") != "text/plain" {
			t.Fatalf("plain: %d %q %v", st, body, h)
		}
		st, _, body = get(t, url+b+"aco/y/")
		if st != 200 || body != "hello y co=true" { // a trailing unset group is not a pat

			t.Fatalf("aco: %d %q", st, body)
		}
	}
	// the request as the handler sees it
	mustRule(t)(NewRule("POST", b, "^info$", func(rc *RestClosure) error {
		q := rc.Request()
		body, err := io.ReadAll(q.Body)
		if err != nil {
			return err
		}
		res := rc.Response()
		res.Status(201, "")
		res.Header("X-Seen", q.Header.Get("X-Test"))
		fmt.Fprintf(res, "%s %s %s a=%s cl=%d body=%s", q.Method, q.URI, q.Proto,
			q.Query().Get("a"), q.ContentLength, body)
		return nil // returning ends it
	}))
	resp, err := http.Post(url+b+"info?a=1%202&b", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "POST " + b + "info HTTP/1.1 a=1 2 cl=7 body=payload"
	if resp.StatusCode != 201 || string(got) != want {
		t.Fatalf("info: %d %q, want %q", resp.StatusCode, got, want)
	}
	// a rule taken out of service answers 404; Close twice is ErrClosed
	r := mustRule(t)(NewRule("GET", b, "^gone$", hello))
	if st, _, _ := get(t, url+b+"gone"); st != 200 {
		t.Fatalf("before Close: %d", st)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if st, _, _ := get(t, url+b+"gone"); st != 404 {
		t.Fatalf("after Close: %d", st)
	}
	// bad rules
	for _, c := range [][3]string{{"GET", "nobase", "x"}, {"GET", "/", "^(x"}, {"G T", "/", "x"}} {
		if _, err := NewRule(c[0], c[1], c[2], hello); err == nil {
			t.Errorf("NewRule%q: no error", c)
		}
	}
	if _, err := NewRule("GET", b, "x", nil); err == nil {
		t.Error("NewRule with a nil handler: no error")
	}
}

// logged collects log records.
type logged struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logged) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}
func (l *logged) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestRestPanicAndErrors(t *testing.T) {
	var lg logged
	url := restServer(t, 1, WithLogger(slog.New(slog.NewTextHandler(&lg, nil))))
	b := restBase()
	for _, aco := range []bool{false, true} {
		r := mustRule(t)(NewRule("GET", b, fmt.Sprintf("^panic/%v$", aco), func(rc *RestClosure) error {
			rc.Response().Write([]byte("half"))
			panic("boom")
		}))
		r.SetAco(aco)
		r = mustRule(t)(NewRule("GET", b, fmt.Sprintf("^err/%v$", aco), func(rc *RestClosure) error {
			return errors.New("no luck")
		}))
		r.SetAco(aco)
		h := mustRule(t)(HandleHTTP("GET", b, fmt.Sprintf("^hpanic/%v$", aco), http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) { panic("http boom") })))
		h.SetAco(aco)
		for _, p := range []string{"panic", "err", "hpanic"} {
			st, _, body := get(t, fmt.Sprintf("%s%s%s/%v", url, b, p, aco))
			if st != 500 || body != "Internal Server Error\n" {
				t.Errorf("%s aco=%v: %d %q", p, aco, st, body)
			}
		}
	}
	// the loop goes on
	mustRule(t)(NewRule("GET", b, "^ok$", hello))
	if st, _, _ := get(t, url+b+"ok"); st != 200 {
		t.Fatalf("after the panics: %d", st)
	}
	for _, want := range []string{"boom", "no luck", "http boom", "REST handler failed"} {
		if !strings.Contains(lg.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, lg.String())
		}
	}
}

// An unchanged net/http handler: a ServeMux behind a middleware.
func TestHandleHTTPServeMux(t *testing.T) {
	url := restServer(t, 2)
	b := restBase()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+b+"items/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"q":%q,"host":%q}`, r.PathValue("id"), r.URL.Query().Get("q"), r.Host)
	})
	mux.HandleFunc("POST "+b+"echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		w.Write(bytes.ToUpper(body))
	})
	mux.HandleFunc("GET "+b+"stream", func(w http.ResponseWriter, r *http.Request) {
		f := w.(http.Flusher)
		for i := 0; i < 5; i++ {
			fmt.Fprintf(w, "line %d\n", i)
			f.Flush()
		}
	})
	mux.HandleFunc("GET "+b+"co", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "co=%v", CoFromRequest(r) != nil)
	})
	var seen atomic.Int32
	mw := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.Add(1)
			w.Header().Set("X-Middleware", "yes")
			next.ServeHTTP(w, r)
		})
	}
	h := mw(mux)
	mustRule(t)(HandleHTTP("GET", b, ".*", h))
	mustRule(t)(HandleHTTP("POST", b, ".*", h))

	st, hd, body := get(t, url+b+"items/42?q=a+b")
	if st != 200 || hd.Get("X-Middleware") != "yes" || hd.Get("Content-Type") != "application/json" ||
		body != `{"id":"42","q":"a b","host":"`+strings.TrimPrefix(url, "http://")+`"}` {
		t.Fatalf("items: %d %v %q", st, hd, body)
	}
	resp, err := http.Post(url+b+"echo", "text/plain", strings.NewReader("shout"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 || string(got) != "SHOUT" {
		t.Fatalf("echo: %d %q", resp.StatusCode, got)
	}
	st, hd, body = get(t, url+b+"stream")
	if st != 200 || body != "line 0\nline 1\nline 2\nline 3\nline 4\n" {
		t.Fatalf("stream: %d %q", st, body)
	}
	if st, _, _ = get(t, url+b+"nothing"); st != 404 { // the mux's own 404
		t.Fatalf("mux 404: %d", st)
	}
	if _, _, body = get(t, url+b+"co"); body != "co=false" {
		t.Fatalf("co: %q", body)
	}
	acoRule := mustRule(t)(HandleHTTP("GET", b+"aco/", ".*", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			co := CoFromRequest(r)
			if co == nil {
				http.Error(w, "no co", 500)
				return
			}
			co.Sleep(time.Millisecond)
			fmt.Fprint(w, "slept on the loop")
		})))
	acoRule.SetAco(true)
	if st, _, body = get(t, url+b+"aco/x"); st != 200 || body != "slept on the loop" {
		t.Fatalf("aco: %d %q", st, body)
	}
	if seen.Load() < 5 {
		t.Fatalf("middleware saw %d requests", seen.Load())
	}
}

// A goroutine handler that blocks does not stall the loop (one loop); an
// aco handler that sleeps through its Co does not either.
func TestRestNoStall(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	release := make(chan struct{})
	mustRule(t)(HandleHTTP("GET", b, "^block$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			<-release // arbitrary Go blocking
			fmt.Fprint(w, "released")
		})))
	aco := mustRule(t)(NewRule("GET", b, "^sleep$", func(rc *RestClosure) error {
		if err := rc.Co().Sleep(300 * time.Millisecond); err != nil {
			return err
		}
		rc.Response().Ok("text/plain")
		rc.Response().WriteString("slept")
		return nil
	}))
	aco.SetAco(true)
	mustRule(t)(NewRule("GET", b, "^fast$", hello))
	blocked := make(chan string, 1)
	go func() { _, _, body := get(t, url+b+"block"); blocked <- body }()
	slept := make(chan string, 1)
	go func() { _, _, body := get(t, url+b+"sleep"); slept <- body }()
	time.Sleep(50 * time.Millisecond)
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		if st, _, _ := get(t, url+b+"fast"); st != 200 {
			t.Fatalf("fast: %d", st)
		}
		if d := time.Since(t0); d > 5*time.Second {
			t.Fatalf("fast took %v", d)
		}
	}
	select {
	case <-blocked:
		t.Fatal("the blocked handler answered before its release")
	default:
	}
	close(release)
	if body := <-blocked; body != "released" {
		t.Fatalf("block: %q", body)
	}
	if body := <-slept; body != "slept" {
		t.Fatalf("sleep: %q", body)
	}
}

// uploadHash answers the size and sha256 of the body.
func uploadHashRest(rc *RestClosure) error {
	h := sha256.New()
	n, err := io.Copy(h, rc.Request().Body)
	if err != nil {
		return err
	}
	rc.Response().Ok("text/plain")
	fmt.Fprintf(rc.Response(), "%d %x", n, h.Sum(nil))
	return rc.Response().End()
}

var uploadHashHTTP = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
})

// sendChunked sends body in chunks of the sizes given (cycled) on a raw
// connection, one write per chunk, and reads the response.
func sendChunked(t *testing.T, addr, path string, body []byte, sizes []int) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", path)
	for i, off := 0, 0; off < len(body); i++ {
		n := min(sizes[i%len(sizes)], len(body)-off)
		if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", n, body[off:off+n]); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	io.WriteString(c, "0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(got)
}

func TestRestChunkedUploads(t *testing.T) {
	url := restServer(t, 2)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	mustRule(t)(NewRule("POST", b, "^rest$", uploadHashRest))
	aco := mustRule(t)(NewRule("POST", b, "^restaco$", uploadHashRest))
	aco.SetAco(true)
	mustRule(t)(HandleHTTP("POST", b, "^http$", uploadHashHTTP))
	haco := mustRule(t)(HandleHTTP("POST", b, "^httpaco$", uploadHashHTTP))
	haco.SetAco(true)
	mk := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte('a' + i*7%26)
		}
		return p
	}
	want := func(p []byte) string {
		s := sha256.Sum256(p)
		return fmt.Sprintf("%d %s", len(p), hex.EncodeToString(s[:]))
	}
	cases := []struct {
		size  int
		sizes []int
	}{
		{300, []int{1}}, // byte by byte
		{1 << 20, []int{8191, 8192, 8193, 1}},
		{1 << 20, []int{16383, 16384, 16385}},
		{1 << 20, []int{65535, 65536, 65537, 3}},
		{1 << 20, []int{1 << 20}},
		{0, []int{1}},
	}
	for _, p := range []string{"rest", "restaco", "http", "httpaco"} {
		for _, c := range cases {
			body := mk(c.size)
			st, got := sendChunked(t, addr, b+p, body, c.sizes)
			if st != 200 || got != want(body) {
				t.Fatalf("%s %d bytes in %v: %d %q, want %q", p, c.size, c.sizes, st, got, want(body))
			}
		}
		// Go's client, streaming a chunked body of unknown length
		body := mk(1<<20 + 77)
		pr, pw := io.Pipe()
		go func() {
			for off := 0; off < len(body); off += 4000 {
				pw.Write(body[off:min(off+4000, len(body))])
			}
			pw.Close()
		}()
		resp, err := http.Post(url+b+p, "application/octet-stream", pr)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != want(body) {
			t.Fatalf("%s via net/http: %d %q", p, resp.StatusCode, got)
		}
	}
}

// Clients that go away mid-request and mid-response: the handlers see it
// (context, errors), and nothing is left afterwards (restServer checks).
func TestRestClientVanishes(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	var ended sync.WaitGroup
	var ctxDone, readErr, writeErr atomic.Int32
	mustRule(t)(HandleHTTP("POST", b, "^read$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			defer ended.Done()
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				readErr.Add(1)
			}
			select {
			case <-r.Context().Done():
				ctxDone.Add(1)
			case <-time.After(10 * time.Second):
			}
		})))
	for _, aco := range []bool{false, true} {
		r := mustRule(t)(HandleHTTP("GET", b, fmt.Sprintf("^write/%v$", aco), http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) {
				defer ended.Done()
				chunk := bytes.Repeat([]byte("x"), 32<<10)
				for i := 0; i < 10000; i++ {
					if _, err := w.Write(chunk); err != nil {
						writeErr.Add(1)
						return
					}
					if err := http.NewResponseController(w).Flush(); err != nil {
						writeErr.Add(1)
						return
					}
				}
			})))
		r.SetAco(aco)
	}
	// mid-request: half a body, then gone (reset)
	for i := 0; i < 3; i++ {
		ended.Add(1)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST %sread HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n%s", b, strings.Repeat("y", 5000))
		time.Sleep(30 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	// mid-response: read a little of a big streamed response, then gone
	for _, aco := range []bool{false, true} {
		for i := 0; i < 3; i++ {
			ended.Add(1)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET %swrite/%v HTTP/1.1\r\nHost: x\r\n\r\n", b, aco)
			io.ReadFull(c, make([]byte, 1000))
			if i%2 == 0 {
				c.(*net.TCPConn).SetLinger(0)
			}
			c.Close()
		}
	}
	done := make(chan struct{})
	go func() { ended.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("handlers still running 30 s after their clients left")
	}
	if readErr.Load() != 3 || ctxDone.Load() != 3 || writeErr.Load() != 6 {
		t.Fatalf("read errors %d (want 3), contexts done %d (want 3), write errors %d (want 6)",
			readErr.Load(), ctxDone.Load(), writeErr.Load())
	}
}

// The statuses the engine gives, in front of Go rules.
func TestRestEngineStatuses(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	mustRule(t)(NewRule("GET", b, "^hello$", hello))
	mustRule(t)(NewRule("POST", b, "^up$", uploadHashRest))
	long := strings.Repeat("a", 9000)
	big := "X-Big: " + strings.Repeat("b", 70000) + "\r\n"
	cases := []struct {
		req  string
		want int
	}{
		{"GET " + b + "hello HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"GET " + b + "hello HTTP/1.1\r\nHost: x\r\nOPTIONS\r\n\r\n", 400},
		{"GET " + b + "hello HTTP/1.1\r\n\r\n", 400},
		{"POST " + b + "up HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"POST " + b + "up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
		{"GET " + b + "nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"PUT " + b + "hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405},
		{"POST " + b + "up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n", 413},
		{"GET /" + long + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"GET " + b + "hello HTTP/1.1\r\nHost: x\r\nExpect: nothing\r\n\r\n", 417},
		{"GET " + b + "hello HTTP/1.1\r\nHost: x\r\n" + big + "\r\n", 431},
		{"POST " + b + "up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"GET " + b + "hello HTTP/2.0\r\nHost: x\r\n\r\n", 505},
	}
	for _, c := range cases {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		go io.WriteString(conn, c.req)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatalf("%.40q: %v", c.req, err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%.60q: %d, want %d", c.req, resp.StatusCode, c.want)
		}
	}
	// OPTIONS: the methods that match
	req, _ := http.NewRequest("OPTIONS", url+b+"hello", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Allow") != "GET, HEAD, OPTIONS" {
		t.Fatalf("OPTIONS: %d %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// 408: a head that is not complete in time (a short header timeout)
	cgo.TestSetHTTPTimeouts(200, 60000)
	defer cgo.TestSetHTTPTimeouts(10000, 60000)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(conn, "GET "+b+"hello HTTP/1.1\r\nHo")
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	conn.Close()
	if err != nil || resp.StatusCode != 408 {
		t.Fatalf("408: %v %v", resp, err)
	}
}

// curl (Debian's) against Go rules.
func TestRestCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	url := restServer(t, 2)
	b := restBase()
	mustRule(t)(NewRule("GET", b, "^hello/(\\w+)$", hello))
	mustRule(t)(HandleHTTP("POST", b, "^up$", uploadHashHTTP))
	out, err := exec.Command("curl", "-sS", "-i", url+b+"hello/curl").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "HTTP/1.1 200") || !strings.HasSuffix(string(out), "hello curl co=false") {
		t.Fatalf("curl GET: %v\n%s", err, out)
	}
	body := bytes.Repeat([]byte("0123456789"), 100000)
	cmd := exec.Command("curl", "-sS", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", url+b+"up")
	cmd.Stdin = bytes.NewReader(body)
	out, err = cmd.CombinedOutput()
	sum := sha256.Sum256(body)
	if err != nil || string(out) != fmt.Sprintf("%d %x", len(body), sum) {
		t.Fatalf("curl POST: %v\n%s", err, out)
	}
}

func TestRestInitAndStart(t *testing.T) {
	// a handler's request context ends with the handler
	url := restServer(t, 1)
	b := restBase()
	ctxs := make(chan context.Context, 1)
	mustRule(t)(NewRule("GET", b, "^ctx$", func(rc *RestClosure) error {
		ctxs <- rc.Context()
		return nil
	}))
	if st, _, _ := get(t, url+b+"ctx"); st != 200 {
		t.Fatalf("ctx: %d", st)
	}
	ctx := <-ctxs
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the request's context outlived its handler")
	}
}

// A rule's first streamed response goes out on the direct path (the rule
// moves to the relay after it): a client that leaves mid-response makes
// Flush fail and leaves nothing behind, whether the write that breaks the
// connection happens in the engine's drive or in the handler's Flush.
func TestRestDirectStreamVanishes(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	for _, aco := range []bool{false, true} {
		var flushErr atomic.Int32
		ended := make(chan struct{}, 1)
		r := mustRule(t)(HandleHTTP("GET", b, fmt.Sprintf("^write/%v$", aco), http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) {
				defer func() { ended <- struct{}{} }()
				chunk := bytes.Repeat([]byte("x"), 32<<10)
				for i := 0; i < 10000; i++ {
					w.Write(chunk)
					if err := http.NewResponseController(w).Flush(); err != nil {
						flushErr.Add(1)
						return
					}
				}
			})))
		r.SetAco(aco)
		if r.relay.Load() {
			t.Fatal("a new rule takes the relay")
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %swrite/%v HTTP/1.1\r\nHost: x\r\n\r\n", b, aco)
		io.ReadFull(c, make([]byte, 1000))
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
		select {
		case <-ended:
		case <-time.After(30 * time.Second):
			t.Fatalf("aco=%v: the handler still runs 30 s after its client left", aco)
		}
		if flushErr.Load() != 1 || !r.relay.Load() {
			t.Fatalf("aco=%v: flush errors %d, rule on the relay %v", aco, flushErr.Load(), r.relay.Load())
		}
		deadline := time.Now().Add(10 * time.Second)
		for cgo.HTTPSessions() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("aco=%v: %d sessions left", aco, cgo.HTTPSessions())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// The direct path (no body) builds the head in Go: bad values are refused
// at the call, as the C engine refuses them; the request's head, captures,
// query and peer are what C parsed; HEAD and compression work.
func TestRestDirectHead(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	for _, aco := range []bool{false, true} {
		r := mustRule(t)(NewRule("GET", b, fmt.Sprintf("^h/%v/(\\w+)$", aco), func(rc *RestClosure) error {
			res := rc.Response()
			var refused []string
			for _, kv := range [][2]string{{"Content-Length", "3"}, {"transfer-encoding", "x"},
				{"Bad Name", "v"}, {"X-Crlf", "a\r\nb"}, {"X-Nul", "a\x00b"}, {"", "v"}} {
				if res.Header(kv[0], kv[1]) != nil {
					refused = append(refused, kv[0])
				}
			}
			if res.Status(99, "") != nil && res.Status(200, "bad\nreason") != nil {
				refused = append(refused, "status")
			}
			q := rc.Request()
			res.Status(203, "")
			res.Header("X-Refused", strings.Join(refused, ","))
			res.Header("X-Dup", "1")
			res.Header("x-dup", "2")
			gz := res.Compress(false)
			fmt.Fprintf(res, "%s %s %s q=%s pat=%s ua=%s gz=%v remote=%v", q.Method, q.URI, q.Proto,
				q.Query().Get("q"), strings.Join(rc.Pats(), ","), q.Header.Get("User-Agent"), gz,
				strings.HasPrefix(q.RemoteAddr, "127.0.0.1:"))
			return res.End()
		}))
		r.SetAco(aco)
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s%sh/%v/cap?q=a%%20b", url, b, aco), nil)
		req.Header.Set("User-Agent", "direct-test")
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf("GET %sh/%v/cap HTTP/1.1 q=a b pat=cap ua=direct-test gz=false remote=true", b, aco)
		if resp.StatusCode != 203 || string(body) != want ||
			resp.Header.Get("X-Refused") != "Content-Length,transfer-encoding,Bad Name,X-Crlf,X-Nul,,status" ||
			len(resp.Header.Values("X-Dup")) != 1 || resp.Header.Get("X-Dup") != "2" {
			t.Fatalf("aco=%v: %d %v %q, want %q", aco, resp.StatusCode, resp.Header, body, want)
		}
		// gzip when the client takes it (Go's client asks and decodes)
		resp, err = http.Get(fmt.Sprintf("%s%sh/%v/z", url, b, aco))
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if !resp.Uncompressed || !strings.Contains(string(body), "gz=true") {
			t.Fatalf("aco=%v gzip: uncompressed=%v %q", aco, resp.Uncompressed, body)
		}
		// HEAD: the head only
		resp, err = http.Head(fmt.Sprintf("%s%sh/%v/x", url, b, aco))
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 203 || len(body) != 0 {
			t.Fatalf("aco=%v HEAD: %d %q", aco, resp.StatusCode, body)
		}
	}
}

// A handler that keeps its request after returning finds it closed: every
// call is refused with ErrClosed (the session is not touched again).
func TestRestDirectAfterReturn(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	for _, aco := range []bool{false, true} {
		kept := make(chan *RestClosure, 1)
		r := mustRule(t)(NewRule("GET", b, fmt.Sprintf("^keep/%v$", aco), func(rc *RestClosure) error {
			rc.Response().Ok("text/plain")
			rc.Response().WriteString("kept")
			kept <- rc
			return nil
		}))
		r.SetAco(aco)
		if st, _, body := get(t, fmt.Sprintf("%s%skeep/%v", url, b, aco)); st != 200 || body != "kept" {
			t.Fatalf("aco=%v: %d %q", aco, st, body)
		}
		rc := <-kept
		<-rc.Context().Done() // the handler's return is over
		res := rc.Response()
		if _, err := res.WriteString("late"); !errors.Is(err, ErrClosed) {
			t.Errorf("aco=%v: Write after return: %v", aco, err)
		}
		for name, err := range map[string]error{"Status": res.Status(201, ""), "Header": res.Header("X-A", "b"),
			"Flush": res.Flush(), "End": res.End()} {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("aco=%v: %s after return: %v", aco, name, err)
			}
		}
		if res.Compress(false) {
			t.Errorf("aco=%v: Compress after return", aco)
		}
	}
}

// Handlers of requests without a body (the direct path) see their client
// leave: r.Context() is cancelled, and an aco handler's pending call
// returns ErrCanceled; a client that stays is not mistaken for gone.
func TestRestDirectClientLeaves(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	clientLeaves(t, b, func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

// clientLeaves registers three rules under base b - a HandleHTTP handler
// waiting for r.Context(), an aco handler sleeping, an aco handler that
// answers "still here" after 500 ms - and checks, over connections from
// dial (plain TCP, or a *tls.Conn over TCP), that the first two see their
// client leave (a close, or a reset) and that a client that waits for the
// third keeps its request.
func clientLeaves(t *testing.T, b string, dial func() net.Conn) {
	t.Helper()
	started := make(chan struct{}, 4)
	seen := make(chan string, 4)
	mustRule(t)(HandleHTTP("GET", b, "^ctx$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			started <- struct{}{}
			select {
			case <-r.Context().Done():
				seen <- "ctx done"
			case <-time.After(20 * time.Second):
				seen <- "ctx not done"
			}
		})))
	aco := mustRule(t)(NewRule("GET", b, "^sleep$", func(rc *RestClosure) error {
		started <- struct{}{}
		err := rc.Co().Sleep(20 * time.Second)
		seen <- fmt.Sprintf("sleep: canceled=%v", errors.Is(err, ErrCanceled))
		return nil
	}))
	aco.SetAco(true)
	slow := mustRule(t)(NewRule("GET", b, "^slow$", func(rc *RestClosure) error {
		if err := rc.Co().Sleep(500 * time.Millisecond); err != nil {
			return err
		}
		rc.Response().Ok("text/plain")
		rc.Response().WriteString("still here")
		return nil
	}))
	slow.SetAco(true)
	for _, p := range []string{"ctx", "sleep"} {
		for _, reset := range []bool{false, true} {
			c := dial()
			fmt.Fprintf(c, "GET %s%s HTTP/1.1\r\nHost: x\r\n\r\n", b, p)
			select {
			case <-started:
			case <-time.After(15 * time.Second):
				t.Fatalf("%s: the handler did not start", p)
			}
			if reset {
				tcp, _ := c.(*net.TCPConn)
				if tc, ok := c.(*tls.Conn); ok {
					tcp, _ = tc.NetConn().(*net.TCPConn)
				}
				tcp.SetLinger(0)
			}
			t0 := time.Now()
			c.Close() // (over TLS: close_notify first, then the FIN or the reset)
			select {
			case got := <-seen:
				if got != "ctx done" && got != "sleep: canceled=true" {
					t.Fatalf("%s reset=%v: %s", p, reset, got)
				}
				if d := time.Since(t0); d > 10*time.Second {
					t.Fatalf("%s reset=%v: seen after %v", p, reset, d)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("%s reset=%v: the handler did not see its client leave", p, reset)
			}
		}
	}
	// a client that waits keeps its request (the watch sweeps meanwhile)
	c := dial()
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET %sslow HTTP/1.1\r\nHost: x\r\n\r\n", b)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "still here" {
		t.Fatalf("slow: %d %q", resp.StatusCode, body)
	}
}

// The eventer shuts down while direct handlers still run: an aco handler
// parked in a Co call is unwound, a goroutine handler that returns later
// finds the loop gone; nothing crashes and Shutdown returns.
func TestRestDirectShutdown(t *testing.T) {
	if err := Init(WithConcurrency(1)); err != nil {
		t.Fatal(err)
	}
	l, addr := restListen(t)
	b := restBase()
	started := make(chan string, 2)
	release := make(chan struct{})
	endErr := make(chan error, 1)
	aco := mustRule(t)(NewRule("GET", b, "^sleep$", func(rc *RestClosure) error {
		started <- "aco"
		return rc.Co().Sleep(time.Minute)
	}))
	aco.SetAco(true)
	mustRule(t)(NewRule("GET", b, "^block$", func(rc *RestClosure) error {
		started <- "go"
		<-release
		rc.Response().WriteString("late")
		endErr <- rc.Response().End()
		return nil
	}))
	for _, p := range []string{"sleep", "block"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET %s%s HTTP/1.1\r\nHost: x\r\n\r\n", b, p)
	}
	<-started
	<-started
	// and a pipelined batch behind a handler that is unwound: what its end
	// would dispatch is not left behind (every session is let go)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %ssleep HTTP/1.1\r\nHost: x\r\n\r\nGET %ssleep HTTP/1.1\r\nHost: x\r\n\r\n", b, b)
	<-started
	shutdownThenRelease(t, l, release, endErr)
}

// A goroutine's direct request whose client left: the watch sweep
// cancels its context, and the handler is still running when the
// eventer shuts down.  The stopping loop answers it and lets its session
// go like any other goroutine's request (the sweep's cancel does not
// make the loop forget it); the handler's End then fails.
func TestRestDirectGoneGoroutineShutdown(t *testing.T) {
	if err := Init(WithConcurrency(1)); err != nil {
		t.Fatal(err)
	}
	l, addr := restListen(t)
	b := restBase()
	started, canceled := make(chan struct{}), make(chan struct{})
	release := make(chan struct{})
	endErr := make(chan error, 1)
	mustRule(t)(NewRule("GET", b, "^gone$", func(rc *RestClosure) error {
		close(started)
		<-rc.Context().Done() // the sweep saw the client leave
		close(canceled)
		<-release
		endErr <- rc.Response().End()
		return nil
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET %sgone HTTP/1.1\r\nHost: x\r\n\r\n", b)
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the handler did not start")
	}
	c.Close() // the sweep sees the client gone within a few of its rounds
	select {
	case <-canceled:
	case <-time.After(30 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
	shutdownThenRelease(t, l, release, endErr)
}

// onRestPool runs f with loop 0's direct-path state, on the loop (f is
// not called while the loop has none).
func onRestPool(t *testing.T, f func(p *restCoPool)) {
	t.Helper()
	l := loopAt(0)
	done := make(chan struct{})
	if err := l.post(func() {
		if p := l.restPool; p != nil {
			f(p)
		}
		close(done)
	}); err != nil {
		t.Fatal(err)
	}
	<-done
}

// restChained is how many direct requests loop 0 served, and how many of
// them a response's end handed over within its own call (the others each
// came as a step of a loop iteration).
func restChained(t *testing.T) (direct, chained int64) {
	t.Helper()
	onRestPool(t, func(p *restCoPool) { direct, chained = p.ndirect, p.nchained })
	return direct, chained
}

// pipeline writes reqs in one write on c and reads len(reqs) responses
// (bodies included), in order; at(i) is called as response i arrives.
func pipeline(t *testing.T, c net.Conn, reqs []string, at func(i int, resp *http.Response, body string)) {
	t.Helper()
	if _, err := io.WriteString(c, strings.Join(reqs, "")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	for i, q := range reqs {
		method, _, _ := strings.Cut(q, " ")
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("response %d: body: %v", i, err)
		}
		at(i, resp, string(b))
	}
}

// Pipelined requests to a Go aco rule: the end of each response dispatches
// the next one in the same call, so a batch sent in one write costs about
// one loop iteration, not one per request; responses stay in order, and
// requests for other rules (a goroutine rule, HandleHTTP, a body through
// the relay, the engine's own 404) in the middle of a batch are served in
// their turn.
func TestRestDirectPipelineChained(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	echo := func(rc *RestClosure) error {
		res := rc.Response()
		res.Ok("text/plain")
		fmt.Fprintf(res, "%s co=%v", rc.Pats()[0], rc.Co() != nil)
		return res.End()
	}
	mustRule(t)(NewRule("GET", b, "^aco/(\\d+)$", echo)).SetAco(true)
	mustRule(t)(NewRule("GET", b, "^go/(\\d+)$", echo))
	mustRule(t)(HandleHTTP("GET", b, "^http/(\\d+)$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s http", strings.TrimPrefix(r.URL.Path, b+"http/"))
		})))
	mustRule(t)(NewRule("POST", b, "^post/(\\d+)$", func(rc *RestClosure) error {
		body, err := io.ReadAll(rc.Request().Body)
		if err != nil {
			return err
		}
		fmt.Fprintf(rc.Response(), "%s post %s", rc.Pats()[0], body)
		return nil
	})).SetAco(true)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	get := func(p string) string { return "GET " + b + p + " HTTP/1.1\r\nHost: x\r\n\r\n" }
	// 16 to the aco rule, in one write
	var reqs []string
	for i := 0; i < 16; i++ {
		reqs = append(reqs, get(fmt.Sprintf("aco/%d", i)))
	}
	d0, c0 := restChained(t)
	pipeline(t, c, reqs, func(i int, resp *http.Response, body string) {
		if want := fmt.Sprintf("%d co=true", i); resp.StatusCode != 200 || body != want {
			t.Fatalf("response %d: %d %q, want %q", i, resp.StatusCode, body, want)
		}
	})
	d1, c1 := restChained(t)
	if d1-d0 != 16 || (d1-d0)-(c1-c0) > 4 {
		t.Errorf("16 pipelined requests: %d served, %d of them as steps of the loop (want 16, at most a few)",
			d1-d0, (d1-d0)-(c1-c0))
	}
	// a mixed batch
	reqs = reqs[:0]
	var want []string
	for i := 0; i < 4; i++ {
		reqs = append(reqs, get(fmt.Sprintf("aco/%d", 10*i)), get(fmt.Sprintf("go/%d", 10*i+1)),
			get(fmt.Sprintf("http/%d", 10*i+2)), get(fmt.Sprintf("aco/%d", 10*i+3)),
			"POST "+b+fmt.Sprintf("post/%d", 10*i+4)+" HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
			get("nothing/here"), get(fmt.Sprintf("aco/%d", 10*i+5)))
		want = append(want, fmt.Sprintf("%d co=true", 10*i), fmt.Sprintf("%d co=false", 10*i+1),
			fmt.Sprintf("%d http", 10*i+2), fmt.Sprintf("%d co=true", 10*i+3),
			fmt.Sprintf("%d post abc", 10*i+4), "404", fmt.Sprintf("%d co=true", 10*i+5))
	}
	pipeline(t, c, reqs, func(i int, resp *http.Response, body string) {
		if want[i] == "404" {
			if resp.StatusCode != 404 {
				t.Fatalf("response %d: %d %q, want 404", i, resp.StatusCode, body)
			}
			return
		}
		if resp.StatusCode != 200 || body != want[i] {
			t.Fatalf("response %d: %d %q, want %q", i, resp.StatusCode, body, want[i])
		}
	})
}

// A slow aco handler in the middle of a pipelined batch: the responses
// before it go out while it waits, the ones after it follow it in order.
func TestRestDirectPipelineSlow(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	var release atomic.Bool
	mustRule(t)(NewRule("GET", b, "^(\\d+)$", func(rc *RestClosure) error {
		if rc.Pats()[0] == "5" {
			// (waits on the loop without blocking it, at most 15 s)
			for t0 := time.Now(); !release.Load() && time.Since(t0) < 15*time.Second; {
				if err := rc.Co().Sleep(5 * time.Millisecond); err != nil {
					return err
				}
			}
		}
		fmt.Fprintf(rc.Response(), "%s released=%v", rc.Pats()[0], release.Load())
		return nil
	})).SetAco(true)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var reqs []string
	for i := 0; i < 10; i++ {
		reqs = append(reqs, fmt.Sprintf("GET %s%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i))
	}
	pipeline(t, c, reqs, func(i int, resp *http.Response, body string) {
		want := fmt.Sprintf("%d released=%v", i, i >= 5)
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("response %d: %d %q, want %q", i, resp.StatusCode, body, want)
		}
		if i == 4 {
			release.Store(true) // the five before it came while it waited
		}
	})
}

// A client that sends a pipelined batch and resets the connection while
// it is being served: every request and session is let go (restServer's
// cleanup checks), and the loop serves the next client.
func TestRestDirectPipelineReset(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	mustRule(t)(NewRule("GET", b, "^(\\d+)$", func(rc *RestClosure) error {
		if rc.Pats()[0] == "3" {
			if err := rc.Co().Sleep(100 * time.Millisecond); err != nil {
				return err
			}
		}
		fmt.Fprintf(rc.Response(), "%s", rc.Pats()[0])
		return nil
	})).SetAco(true)
	for round := 0; round < 20; round++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		var all strings.Builder
		for i := 0; i < 16; i++ {
			fmt.Fprintf(&all, "GET %s%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i)
		}
		io.WriteString(c, all.String())
		if round%2 == 1 {
			// read the first response or so, then reset
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			c.Read(make([]byte, 64))
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	if st, _, body := get(t, url+b+"7"); st != 200 || body != "7" {
		t.Fatalf("after the resets: %d %q", st, body)
	}
	// a handler served behind others of its batch that waits sees its
	// client leave, as one that came alone does
	seen := make(chan error, 1)
	mustRule(t)(NewRule("GET", b, "^long$", func(rc *RestClosure) error {
		err := rc.Co().Sleep(20 * time.Second)
		seen <- err
		return err
	})).SetAco(true)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET %s1 HTTP/1.1\r\nHost: x\r\n\r\nGET %s2 HTTP/1.1\r\nHost: x\r\n\r\n"+
		"GET %slong HTTP/1.1\r\nHost: x\r\n\r\n", b, b, b)
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-seen:
		if !errors.Is(err, ErrCanceled) {
			t.Fatalf("long: %v, want ErrCanceled", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("long: the handler did not see its client leave")
	}
}

// Clients pipelining at once on one loop, some reading everything, some
// resetting after part of their responses, to aco rules (one that waits
// now and then), a goroutine rule and HandleHTTP: the ones that stay get
// every response in order, and nothing is left behind (restServer's
// cleanup checks every request, session and connection).
func TestRestDirectPipelineConcurrent(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	echo := func(rc *RestClosure) error {
		if n, _ := strconv.Atoi(rc.Pats()[0]); n%7 == 3 && rc.Co() != nil {
			if err := rc.Co().Sleep(time.Millisecond); err != nil {
				return err
			}
		}
		fmt.Fprint(rc.Response(), rc.Pats()[0])
		return nil
	}
	mustRule(t)(NewRule("GET", b, "^a/(\\d+)$", echo)).SetAco(true)
	mustRule(t)(NewRule("GET", b, "^g/(\\d+)$", echo))
	mustRule(t)(HandleHTTP("GET", b, "^h/(\\d+)$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, strings.TrimPrefix(r.URL.Path, b+"h/"))
		})))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for round := 0; round < 8; round++ {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					errs <- err
					return
				}
				var all strings.Builder
				for i := 0; i < 24; i++ {
					kind := "a"
					if i%5 == 4 {
						kind = [2]string{"g", "h"}[i%2]
					}
					fmt.Fprintf(&all, "GET %s%s/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, kind, i)
				}
				io.WriteString(c, all.String())
				keep := (g+round)%3 != 0 // else reset after a few responses
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				for i := 0; i < 24 && (keep || i < (g+round)%5); i++ {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						errs <- fmt.Errorf("client %d round %d response %d: %v", g, round, i, err)
						break
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || string(body) != strconv.Itoa(i) {
						errs <- fmt.Errorf("client %d round %d response %d: %d %q", g, round, i, resp.StatusCode, body)
						break
					}
				}
				if !keep {
					c.(*net.TCPConn).SetLinger(0)
				}
				c.Close()
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Ok's response on the direct path is made as mtev_http_response_ok makes
// it (the engine's ready head with the thread's known Content-Type): the
// type is the handler's in every response, whatever the one before it
// was on the loop (alternating types, one too long for the engine to
// keep, one replaced after Ok), with one Content-Type field, on HTTP/1.1
// and 1.0, with another status, on an aco rule and a goroutine rule.
func TestRestDirectOkContentType(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	long := "application/x-" + strings.Repeat("l", 60)
	types := map[string]string{"plain": "text/plain", "json": "application/json",
		"long": long, "html": "text/html; charset=utf-8"}
	for _, aco := range []bool{false, true} {
		r := mustRule(t)(NewRule("GET", b, fmt.Sprintf("^ct/%v/(\\w+)/(\\d+)$", aco), func(rc *RestClosure) error {
			res := rc.Response()
			kind := rc.Pats()[0]
			ct := types[kind]
			if kind == "over" {
				ct = "text/plain"
			}
			if err := res.Ok(ct); err != nil {
				return err
			}
			if kind == "over" {
				res.Header("content-type", "text/csv")
			}
			if rc.Pats()[1] == "404" {
				res.Status(404, "")
			}
			res.Header("X-Kind", kind)
			fmt.Fprintf(res, "body of %s", kind)
			return res.End()
		}))
		r.SetAco(aco)
		u := strings.TrimPrefix(url, "http://")
		c, err := net.Dial("tcp", u)
		if err != nil {
			t.Fatal(err)
		}
		kinds := []string{"plain", "json", "plain", "long", "plain", "over", "json", "html", "plain", "json"}
		var reqs []string
		for i, k := range kinds {
			code := "200"
			if i%3 == 2 {
				code = "404"
			}
			reqs = append(reqs, fmt.Sprintf("GET %sct/%v/%s/%s HTTP/1.1\r\nHost: x\r\n\r\n", b, aco, k, code))
		}
		pipeline(t, c, reqs, func(i int, resp *http.Response, body string) {
			k := kinds[i]
			want := types[k]
			if k == "over" {
				want = "text/csv"
			}
			code := 200
			if i%3 == 2 {
				code = 404
			}
			if resp.StatusCode != code || body != "body of "+k || resp.ContentLength != int64(len(body)) ||
				len(resp.Header["Content-Type"]) != 1 || resp.Header.Get("Content-Type") != want ||
				resp.Header.Get("X-Kind") != k {
				t.Errorf("aco=%v response %d (%s): %d %v %q; want %d, Content-Type %q",
					aco, i, k, resp.StatusCode, resp.Header, body, code, want)
			}
		})
		c.Close()
		// HTTP/1.0: the same head, and the connection closes after it
		c, err = net.Dial("tcp", u)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %sct/%v/json/200 HTTP/1.0\r\n\r\n", b, aco)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		raw, err := io.ReadAll(c)
		c.Close()
		if err != nil || !strings.HasPrefix(string(raw), "HTTP/1.0 200 OK\r\n") ||
			strings.Count(string(raw), "Content-Type:") != 1 ||
			!strings.Contains(string(raw), "\r\nContent-Type: application/json\r\n") ||
			!strings.HasSuffix(string(raw), "\r\n\r\nbody of json") {
			t.Errorf("aco=%v HTTP/1.0: %v %q", aco, err, raw)
		}
	}
}

// holdRule registers an aco rule at b+"hold" whose handler blocks the
// loop on purpose (at most 10 s) until hold is closed; held is closed
// when it starts.
func holdRule(t *testing.T, b string) (hold, held chan struct{}) {
	t.Helper()
	hold, held = make(chan struct{}), make(chan struct{})
	mustRule(t)(NewRule("GET", b, "^hold$", func(rc *RestClosure) error {
		close(held)
		select {
		case <-hold:
		case <-time.After(10 * time.Second):
		}
		return nil
	})).SetAco(true)
	return hold, held
}

// awaitHeld waits (at most 20 s) for holdRule's handler to start.
func awaitHeld(t *testing.T, held chan struct{}) {
	t.Helper()
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the holding handler did not start")
	}
}

// restListen is RestInit and an http_rest_api listener on loopback: the
// listener and its address.  restServer stops it at the test's end;
// tests that stop it (or shut the eventer down) themselves use it alone.
func restListen(t testing.TB) (unsafe.Pointer, string) {
	t.Helper()
	if err := RestInit(); err != nil {
		t.Fatal(err)
	}
	l, port, err := cgo.TestListen("http_rest_api")
	if err != nil {
		t.Fatal(err)
	}
	return l, "127.0.0.1:" + strconv.Itoa(port)
}

// errorsTo is an error handler that hands ch what the handlers report,
// dropping what does not fit.
func errorsTo(ch chan error) Option {
	return WithErrorHandler(func(err error) {
		select {
		case ch <- err:
		default:
		}
	})
}

// heldBatch dials n+1 connections: the last asks for b's "hold" (holdRule)
// and, once that handler holds the loop, each of the others sends
// GET b+"w/<i>", so that all n arrive while the loop is held.  The
// connections close at the test's end.
func heldBatch(t *testing.T, addr, b string, held chan struct{}, n int) []net.Conn {
	t.Helper()
	cs := make([]net.Conn, n+1)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs[i] = c
	}
	fmt.Fprintf(cs[n], "GET %shold HTTP/1.1\r\nHost: x\r\n\r\n", b)
	awaitHeld(t, held)
	for i, c := range cs[:n] {
		fmt.Fprintf(c, "GET %sw/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i)
	}
	return cs
}

// restBatches is how many loop-pass batches loop 0's driver was handed,
// and how many direct requests they held.
func restBatches(t *testing.T) (batches, requests int64) {
	t.Helper()
	onRestPool(t, func(p *restCoPool) { batches, requests = p.batches, p.nbatched })
	return batches, requests
}

// holdLoop connects to addr and asks for holdRule's b+"hold", and waits
// until its handler holds the loop: what the clients send from then on
// is in the loop's next pass.  It gives restBatches from just before.
func holdLoop(t *testing.T, addr, b string, held chan struct{}) (batches, requests int64) {
	t.Helper()
	h, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	batches, requests = restBatches(t)
	fmt.Fprintf(h, "GET %shold HTTP/1.1\r\nHost: x\r\n\r\n", b)
	awaitHeld(t, held)
	return batches, requests
}

// The direct requests of aco rules that one loop pass dispatches come to
// Go in batches of cgo.RestBatchMax (one return from the C loop a batch,
// not one a request), and a worker
// coroutine serves them one after another.  Twelve clients send while the
// loop is held by a handler; the next pass has them all: one batch.  In
// it, a handler that waits holds back no other client's response; a
// client that resets the connection with its request in the batch leaks
// nothing (restServer's cleanup counts the sessions).
func TestRestDirectPassBatch(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	hold, held := holdRule(t, b)
	var release atomic.Bool
	mustRule(t)(NewRule("GET", b, "^(\\d+)$", func(rc *RestClosure) error {
		if rc.Pats()[0] == "3" {
			for t0 := time.Now(); !release.Load() && time.Since(t0) < 15*time.Second; {
				if err := rc.Co().Sleep(5 * time.Millisecond); err != nil {
					return err
				}
			}
		}
		fmt.Fprintf(rc.Response(), "%s released=%v", rc.Pats()[0], release.Load())
		return nil
	})).SetAco(true)
	const n = 12
	var cs [n]net.Conn
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
	}
	b0, r0 := holdLoop(t, addr, b, held)
	for i, c := range cs {
		fmt.Fprintf(c, "GET %s%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i)
		if i == 7 {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}
	close(hold)
	for i, c := range cs {
		if i == 3 || i == 7 {
			continue
		}
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("%d released=false", i); resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("client %d: %d %q, want %q", i, resp.StatusCode, body, want)
		}
	}
	release.Store(true)
	cs[3].SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(cs[3]), nil)
	if err != nil {
		t.Fatalf("client 3: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "3 released=true" {
		t.Fatalf("client 3: %q", body)
	}
	// the holding request's batch, then the twelve in full batches and
	// the rest (the reset one's request may be gone before the loop
	// reads it)
	b1, r1 := restBatches(t)
	if r1-r0 < n || r1-r0 > n+1 {
		t.Errorf("%d batches held %d requests; want %d (or %d)", b1-b0, r1-r0, n+1, n)
	} else if m := int64(cgo.RestBatchMax); b1-b0 != 1+(r1-r0-1+m-1)/m {
		t.Errorf("%d batches held %d requests; want %d (at most %d a batch)", b1-b0, r1-r0, 1+(r1-r0-1+m-1)/m, m)
	}
}

// A pass whose poll reports cgo.RestBatchBusyNev ready events or more
// hands its direct requests to Go in batches of cgo.RestBatchBusy, not
// cgo.RestBatchMax (the loop does not wait there: longer calls into C cost
// nothing with sysmon and save returns).  Every connection is served once
// first (so that each is accepted and its session waits on its fd), then
// all send while a handler holds the loop: the next pass has them all.
func TestRestDirectPassBatchBusy(t *testing.T) {
	if cgo.RestBatchBusy == cgo.RestBatchMax {
		t.Fatalf("RestBatchBusy %d is RestBatchMax: nothing to tell apart", cgo.RestBatchBusy)
	}
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	hold, held := holdRule(t, b)
	mustRule(t)(NewRule("GET", b, "^w/(\\d+)$", func(rc *RestClosure) error {
		fmt.Fprintf(rc.Response(), "w%s", rc.Pats()[0])
		return nil
	})).SetAco(true)
	n := cgo.RestBatchBusyNev + 8
	cs := make([]net.Conn, n)
	rs := make([]*bufio.Reader, n)
	get := func(i int) {
		t.Helper()
		cs[i].SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(rs[i], nil)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("w%d", i); resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("client %d: %d %q, want %q", i, resp.StatusCode, body, want)
		}
	}
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs[i], rs[i] = c, bufio.NewReader(c)
		fmt.Fprintf(c, "GET %sw/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i)
		get(i)
	}
	b0, r0 := holdLoop(t, addr, b, held)
	for i, c := range cs {
		fmt.Fprintf(c, "GET %sw/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i)
	}
	close(hold)
	for i := range cs {
		get(i)
	}
	// the holding request's batch, then the n in full batches of the
	// busy pass's size and the rest
	b1, r1 := restBatches(t)
	m := int64(cgo.RestBatchBusy)
	if want := 1 + (int64(n)+m-1)/m; r1-r0 != int64(n)+1 || b1-b0 != want {
		t.Errorf("%d batches held %d requests; want %d holding %d (at most %d a batch; %d would be at most %d a batch)",
			b1-b0, r1-r0, want, n+1, m, 1+(n+cgo.RestBatchMax-1)/cgo.RestBatchMax, cgo.RestBatchMax)
	}
}

// The loop thread applies an Ok head with the same bytes as the last one
// (its reason and Content-Type alone) without parsing it again: pipelined
// responses that change the type, the status, or add a field between
// runs of the same head each get their own; a bad Content-Type is refused
// every time, a good one that is the same string is not looked at again.
var okSpecBadType = "text/plain\r\nX-Injected: 1"

func TestRestDirectOkSpecReuse(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	types := map[string]string{"plain": "text/plain", "json": "application/json",
		"long": "application/x-" + strings.Repeat("l", 60), "txt": "text/plain"}
	mustRule(t)(NewRule("GET", b, "^okr/(\\w+)/(\\w+)/(\\d+)$", func(rc *RestClosure) error {
		res := rc.Response()
		kind, extra := rc.Pats()[0], rc.Pats()[1]
		ct := types[kind]
		if kind == "txt" {
			ct = string([]byte("text/plain")) // the same bytes at another address
		}
		// a value C would refuse, the same string each time: refused each time
		if err := res.Ok(okSpecBadType); err == nil {
			return errors.New("Ok took a value with CR LF")
		}
		if err := res.Ok(ct); err != nil {
			return err
		}
		switch extra {
		case "404":
			res.Status(404, "")
		case "teapot":
			res.Status(418, "Short and Stout")
		case "x":
			res.Header("X-Extra", "1")
		}
		fmt.Fprintf(res, "%s %s %s", kind, extra, rc.Pats()[2])
		return res.End()
	})).SetAco(true)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	steps := [][2]string{{"plain", "n"}, {"plain", "n"}, {"json", "n"}, {"json", "n"}, {"plain", "404"},
		{"plain", "n"}, {"plain", "x"}, {"plain", "n"}, {"long", "n"}, {"plain", "teapot"},
		{"plain", "n"}, {"txt", "n"}, {"json", "404"}, {"json", "n"}, {"plain", "n"}, {"long", "x"}, {"long", "n"}, {"plain", "n"}, {"json", "x"}, {"plain", "n"}}
	var reqs []string
	for i, st := range steps {
		reqs = append(reqs, fmt.Sprintf("GET %sokr/%s/%s/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, st[0], st[1], i))
	}
	pipeline(t, c, reqs, func(i int, resp *http.Response, body string) {
		kind, extra := steps[i][0], steps[i][1]
		status := "200 OK"
		switch extra {
		case "404":
			status = "404 Not Found"
		case "teapot":
			status = "418 Short and Stout"
		}
		wantX := ""
		if extra == "x" {
			wantX = "1"
		}
		if resp.Status != status || resp.Header.Get("Content-Type") != types[kind] ||
			resp.Header.Get("X-Extra") != wantX || body != fmt.Sprintf("%s %s %d", kind, extra, i) {
			t.Errorf("response %d (%s %s): %q, Content-Type %q, X-Extra %q, body %q", i, kind, extra,
				resp.Status, resp.Header.Get("Content-Type"), resp.Header.Get("X-Extra"), body)
		}
	})
}

// The loop thread knows the last Ok head by its bytes (restglue.c,
// ev_go_okspec): an Ok head of the same length that differs in one byte,
// at any position of its Content-Type, is applied as its own.  Pipelined,
// so that one loop thread applies them one after another.
func TestRestDirectOkSpecOneByte(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	base := "application/x-" + strings.Repeat("a", 26) // a spec of 3+13+41 bytes (at most 64 are kept)
	typeOf := func(k int) string {
		if k < 0 {
			return base
		}
		return base[:k] + "Z" + base[k+1:]
	}
	mustRule(t)(NewRule("GET", b, "^ok1/(-?\\d+)$", func(rc *RestClosure) error {
		k, _ := strconv.Atoi(rc.Pats()[0])
		res := rc.Response()
		if err := res.Ok(typeOf(k)); err != nil {
			return err
		}
		res.WriteString(rc.Pats()[0])
		return res.End()
	})).SetAco(true)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ks []int
	for k := 0; k < len(base); k++ {
		ks = append(ks, -1, -1, k, k)
	}
	var reqs []string
	for _, k := range ks {
		reqs = append(reqs, fmt.Sprintf("GET %sok1/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, k))
	}
	pipeline(t, c, reqs, func(i int, resp *http.Response, body string) {
		k := ks[i]
		if got := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || got != typeOf(k) ||
			body != strconv.Itoa(k) {
			t.Errorf("response %d (byte %d changed): %q, Content-Type %q, body %q", i, k,
				resp.Status, got, body)
		}
	})
}

// A pipelined aco rule's responses of every size around the slot's
// scratch (where a small response is copied to go to C) arrive whole and
// in order; Ok with a value C would refuse is refused.
func TestRestDirectResponseSizes(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	mustRule(t)(NewRule("GET", b, "^sz/(\\d+)$", func(rc *RestClosure) error {
		n, _ := strconv.Atoi(rc.Pats()[0])
		res := rc.Response()
		if err := res.Ok("text/plain\r\nX-Injected: 1"); err == nil {
			return errors.New("Ok took a value with CR LF")
		}
		if err := res.Ok("application/octet-stream"); err != nil {
			return err
		}
		body := make([]byte, n)
		for i := range body {
			body[i] = byte('a' + (i*7+n)%26)
		}
		res.Write(body)
		return res.End()
	})).SetAco(true)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sizes := []int{0, 1, 900, 960, 980, 990, 1000, 1010, 1024, 1100, 5000, 70000}
	var reqs []string
	for _, n := range sizes {
		reqs = append(reqs, fmt.Sprintf("GET %ssz/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, n))
	}
	pipeline(t, c, reqs, func(i int, resp *http.Response, body string) {
		n := sizes[i]
		want := make([]byte, n)
		for j := range want {
			want[j] = byte('a' + (j*7+n)%26)
		}
		if resp.StatusCode != 200 || body != string(want) ||
			resp.Header.Get("Content-Type") != "application/octet-stream" || resp.Header.Get("X-Injected") != "" {
			t.Errorf("size %d: %d %v, %d bytes (equal %v)", n, resp.StatusCode, resp.Header, len(body), body == string(want))
		}
	})
}

// A request's context: Done asked for before, during or after the cancel
// (from other goroutines, at the same moment) is always closed after it,
// and Err says Canceled.
func TestRestReqCtxCancelRace(t *testing.T) {
	for i := 0; i < 2000; i++ {
		c := new(reqCtx)
		var wg sync.WaitGroup
		chans := make(chan (<-chan struct{}), 4)
		for g := 0; g < 3; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				chans <- c.Done()
			}()
		}
		if i%2 == 0 {
			runtime.Gosched()
		}
		c.cancel()
		chans <- c.Done()
		wg.Wait()
		close(chans)
		for ch := range chans {
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: a Done channel was never closed", i)
			}
		}
		if c.Err() != context.Canceled {
			t.Fatalf("round %d: Err %v", i, c.Err())
		}
	}
}

// Twenty requests of one pass: each full batch (cgo.RestBatchMax) goes to
// Go at once and the rest at the end of the pass; their handlers all
// wait, and Shutdown
// then unwinds them: it returns, and every session is let go.
func TestRestDirectPassBatchShutdown(t *testing.T) {
	if err := Init(WithConcurrency(1)); err != nil {
		t.Fatal(err)
	}
	l, addr := restListen(t)
	b := restBase()
	hold, held := holdRule(t, b)
	const n = 20
	var waiting atomic.Int32
	mustRule(t)(NewRule("GET", b, "^wait$", func(rc *RestClosure) error {
		waiting.Add(1)
		return rc.Co().Sleep(time.Minute)
	})).SetAco(true)
	var cs []net.Conn
	for i := 0; i < n+1; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	b0, r0 := restBatches(t)
	fmt.Fprintf(cs[n], "GET %shold HTTP/1.1\r\nHost: x\r\n\r\n", b)
	awaitHeld(t, held)
	for _, c := range cs[:n] {
		fmt.Fprintf(c, "GET %swait HTTP/1.1\r\nHost: x\r\n\r\n", b)
	}
	close(hold)
	for t0 := time.Now(); waiting.Load() < n; time.Sleep(time.Millisecond) {
		if time.Since(t0) > 20*time.Second {
			t.Fatalf("%d of %d handlers started", waiting.Load(), n)
		}
	}
	// the holding request's batch, the full ones and the rest
	want := int64(1 + (n+cgo.RestBatchMax-1)/cgo.RestBatchMax)
	if b1, r1 := restBatches(t); b1-b0 != want || r1-r0 != n+1 {
		t.Errorf("%d batches held %d requests; want %d holding %d", b1-b0, r1-r0, want, n+1)
	}
	done := shutdownAsync(t, l)
	awaitShutdown(t, done)
	if n := cgo.HTTPSessions(); n != 0 {
		t.Errorf("%d sessions left after Shutdown", n)
	}
}

// context.Context's contract: while Done's channel is not closed, Err is
// nil.  A cancel that has begun (another goroutine's: here it waits for
// the lock the test holds) but has not closed the channel yet must not
// make Err say Canceled; once the cancel is over, Err says Canceled and
// the channel is closed.
func TestRestReqCtxErrNotBeforeDone(t *testing.T) {
	c := new(reqCtx)
	ch := c.Done()
	c.mu.Lock()
	cancelled := make(chan struct{})
	go func() {
		c.cancel()
		close(cancelled)
	}()
	for t0 := time.Now(); !c.canceled.Load(); runtime.Gosched() {
		if time.Since(t0) > 10*time.Second {
			c.mu.Unlock()
			t.Fatal("the cancel did not begin")
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Err() }()
	select {
	case err := <-errc:
		select {
		case <-ch:
		default:
			if err != nil {
				c.mu.Unlock()
				t.Fatalf("Err %v while Done's channel is open", err)
			}
		}
		errc <- err
	case <-time.After(50 * time.Millisecond): // (Err waits for the cancel: fine)
	}
	c.mu.Unlock()
	<-cancelled
	<-errc
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Done's channel was never closed")
	}
	if err := c.Err(); err != context.Canceled {
		t.Fatalf("Err after the cancel: %v", err)
	}
}

// A handler that calls runtime.Goexit (t.FailNow's way out) did not
// return: its response is a 500 with the connection closed, as for a
// panic, not the 200 its unfinished work had set up (it was a 200 with an
// empty body).  Served in a pass's batch (an aco rule: the coroutine is
// abandoned and reported, the batch's other requests are answered) and by
// a goroutine (HandleHTTP's default).
func TestRestGoexitIs500(t *testing.T) {
	reported := make(chan error, 16)
	url := restServer(t, 1, errorsTo(reported))
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	hold, held := holdRule(t, b)
	h := func(rc *RestClosure) error {
		res := rc.Response()
		if err := res.Ok("text/plain"); err != nil {
			return err
		}
		fmt.Fprintf(res, "%s ok", rc.Pats()[0])
		if rc.Pats()[0] == "2" {
			runtime.Goexit()
		}
		return nil
	}
	mustRule(t)(NewRule("GET", b, "^co/(\\d+)$", h)).SetAco(true)
	mustRule(t)(NewRule("GET", b, "^g/(\\d+)$", h))
	check := func(c net.Conn, who string, i int) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s %d: %v", who, i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if i == 2 {
			if resp.StatusCode != 500 || !resp.Close {
				t.Errorf("%s %d: %d %q (close %v), want 500 and the connection closed",
					who, i, resp.StatusCode, body, resp.Close)
			}
			return
		}
		if want := fmt.Sprintf("%d ok", i); resp.StatusCode != 200 || string(body) != want {
			t.Errorf("%s %d: %d %q, want 200 %q", who, i, resp.StatusCode, body, want)
		}
	}
	// the aco rule's requests in one batch: the loop is held while they come
	var cs [5]net.Conn
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
	}
	hc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	fmt.Fprintf(hc, "GET %shold HTTP/1.1\r\nHost: x\r\n\r\n", b)
	awaitHeld(t, held)
	for i, c := range cs {
		fmt.Fprintf(c, "GET %sco/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i)
	}
	close(hold)
	for i, c := range cs {
		check(c, "aco", i)
	}
	for wait := time.After(20 * time.Second); ; {
		var err error
		select {
		case err = <-reported:
		case <-wait:
			t.Fatal("the aco handler's Goexit was not reported")
		}
		if strings.Contains(err.Error(), "Goexit") {
			break
		}
	}
	for i := 0; i < 4; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %sg/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i)
		check(c, "goroutine", i)
		c.Close()
	}
	// the loop still serves the aco rule
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %sco/7 HTTP/1.1\r\nHost: x\r\n\r\n", b)
	check(c, "aco after", 7)
}

// A loop reuses the record of a finished request of a NewRule aco rule
// for a later one; what the handler held (its *RestClosure, response and
// context) stays its own request's: a handler that keeps them after it
// returned sees its own captures and head, a response that refuses
// (ErrClosed) without touching the request the record serves now, and a
// done context.  Eight pipelined requests keep theirs; a ninth handler
// (on a reused record) looks at them all from the loop.
func TestRestPooledRecordKeptView(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	type kept struct {
		rc  *RestClosure
		res *RestResponse
		ctx context.Context
	}
	var mu sync.Mutex
	var keep []kept
	mustRule(t)(NewRule("GET", b, "^keep/(\\d+)$", func(rc *RestClosure) error {
		i, _ := strconv.Atoi(rc.Pats()[0])
		if i%2 == 0 {
			_ = rc.Request() // (made while live for half of them)
		}
		mu.Lock()
		keep = append(keep, kept{rc, rc.Response(), rc.Context()})
		mu.Unlock()
		res := rc.Response()
		res.Ok("text/plain")
		fmt.Fprintf(res, "%d", i)
		return res.End()
	})).SetAco(true)
	mustRule(t)(NewRule("GET", b, "^check$", func(rc *RestClosure) error {
		res := rc.Response()
		res.Ok("text/plain")
		mu.Lock()
		defer mu.Unlock()
		var bad []string
		for _, k := range keep {
			i := k.rc.Pats()[0]
			if want := b + "keep/" + i; k.rc.Request().URI != want {
				bad = append(bad, fmt.Sprintf("%s: URI %q", i, k.rc.Request().URI))
			}
			if k.rc.Response() != k.res {
				bad = append(bad, i+": another response")
			}
			for _, err := range []error{k.res.Ok("text/html"), k.res.Header("X-Stale", i),
				k.res.Status(404, ""), k.res.End()} {
				if !errors.Is(err, ErrClosed) {
					bad = append(bad, fmt.Sprintf("%s: a call on the kept response gave %v", i, err))
				}
			}
			if _, err := k.res.WriteString("stale " + i); !errors.Is(err, ErrClosed) {
				bad = append(bad, fmt.Sprintf("%s: WriteString gave %v", i, err))
			}
			if _, err := k.res.Write([]byte("stale " + i)); !errors.Is(err, ErrClosed) {
				bad = append(bad, fmt.Sprintf("%s: Write gave %v", i, err))
			}
			if k.ctx.Err() == nil || k.rc.Context() != k.ctx {
				bad = append(bad, i+": its context is not done")
			}
			select {
			case <-k.ctx.Done():
			default:
				bad = append(bad, i+": its context's Done is open")
			}
		}
		if len(keep) != 8 {
			bad = append(bad, fmt.Sprintf("%d kept", len(keep)))
		}
		if bad == nil {
			fmt.Fprint(res, "ok")
		} else {
			fmt.Fprint(res, strings.Join(bad, "; "))
		}
		return res.End()
	})).SetAco(true)
	var r0 int64
	onRestPool(t, func(p *restCoPool) { r0 = p.reused })
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var reqs []string
	for i := 0; i < 8; i++ {
		reqs = append(reqs, fmt.Sprintf("GET %skeep/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i))
	}
	pipeline(t, c, reqs, func(i int, resp *http.Response, body string) {
		if resp.StatusCode != 200 || body != strconv.Itoa(i) {
			t.Errorf("request %d: %d %q", i, resp.StatusCode, body)
		}
	})
	pipeline(t, c, []string{fmt.Sprintf("GET %scheck HTTP/1.1\r\nHost: x\r\n\r\n", b)},
		func(_ int, resp *http.Response, body string) {
			if resp.StatusCode != 200 || body != "ok" || resp.Header.Get("X-Stale") != "" {
				t.Errorf("check: %d %v %q", resp.StatusCode, resp.Header, body)
			}
		})
	var r1 int64
	onRestPool(t, func(p *restCoPool) { r1 = p.reused })
	if r1-r0 < 8 {
		t.Errorf("records reused %d times for 9 requests in turn; want at least 8", r1-r0)
	}
}

// A loop pass's batch of large heads grows the loop thread's batch
// buffer; the next batch starts from a small one (a loop keeps at most
// 64 KiB of it between batches).
func TestRestDirectBatchBufferShrinks(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	mustRule(t)(NewRule("GET", b, "^big/(\\d+)$", func(rc *RestClosure) error {
		fmt.Fprintf(rc.Response(), "%s %d", rc.Pats()[0], len(rc.Request().Header.Get("X-Pad")))
		return nil
	})).SetAco(true)
	bufCap := func() (n int) {
		t.Helper()
		onRestPool(t, func(*restCoPool) { n = cgo.RestBatchCap() })
		return n
	}
	// one batch: the clients send while a handler holds the loop
	batch := func(n, pad int) {
		t.Helper()
		hold, held := holdRule(t, b)
		var cs []net.Conn
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cs = append(cs, c)
		}
		h, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		fmt.Fprintf(h, "GET %shold HTTP/1.1\r\nHost: x\r\n\r\n", b)
		awaitHeld(t, held)
		for i, c := range cs {
			fmt.Fprintf(c, "GET %sbig/%d HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", b, i, strings.Repeat("p", pad))
		}
		close(hold)
		for i, c := range cs {
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%d %d", i, pad); resp.StatusCode != 200 || string(body) != want {
				t.Fatalf("client %d: %d %q, want %q", i, resp.StatusCode, body, want)
			}
		}
	}
	// (holdRule registers a rule per call: a base of its own each time)
	// heads of 24 KB: a full batch of them (cgo.RestBatchMax) is more than
	// the 64 KiB a loop keeps
	batch(12, 24000)
	if n, want := bufCap(), min(12, cgo.RestBatchMax)*24000; n < want || want <= 64<<10 {
		t.Fatalf("the batch buffer is %d bytes after a pass of 12 heads of 24 KB (at most %d a batch); want %d, above 64 KiB",
			n, cgo.RestBatchMax, want)
	}
	b = restBase()
	mustRule(t)(NewRule("GET", b, "^big/(\\d+)$", func(rc *RestClosure) error {
		fmt.Fprintf(rc.Response(), "%s %d", rc.Pats()[0], len(rc.Request().Header.Get("X-Pad")))
		return nil
	})).SetAco(true)
	batch(2, 10)
	if n := bufCap(); n > 64<<10 {
		t.Errorf("the batch buffer is still %d bytes after a batch of small heads", n)
	}
}

// Sixteen requests pipelined on one connection: aco requests (their loop
// reuses their records) between a goroutine rule's and HandleHTTP's.
// Each aco handler keeps its closure, response and context (half of them
// never looked at their request while it ran) and checks the ones kept
// before it: their own captures and URI, a response that refuses with
// ErrClosed, a done context.  Every response comes in order; then an aco
// handler flushes part of its response and calls runtime.Goexit, and the
// loop serves on (on the records it pooled).
func TestRestPipelinedMixedKeptViews(t *testing.T) {
	reported := make(chan error, 64)
	url := restServer(t, 1, errorsTo(reported))
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	type kept struct {
		uri string
		rc  *RestClosure
		res *RestResponse
		ctx context.Context
	}
	var mu sync.Mutex
	var keep []kept
	var uris []string // the keep requests' URIs, in order
	mustRule(t)(NewRule("GET", b, "^keep/(\\d+)$", func(rc *RestClosure) error {
		mu.Lock()
		defer mu.Unlock()
		var bad []string
		for j, k := range keep {
			if got := k.rc.Request().URI; got != k.uri {
				bad = append(bad, fmt.Sprintf("kept %d: URI %q, want %q", j, got, k.uri))
			}
			if got := b + "keep/" + k.rc.Pats()[0]; got != k.uri {
				bad = append(bad, fmt.Sprintf("kept %d: captures %v", j, k.rc.Pats()))
			}
			if _, err := k.res.Write([]byte("stale")); !errors.Is(err, ErrClosed) {
				bad = append(bad, fmt.Sprintf("kept %d: Write gave %v", j, err))
			}
			if err := k.rc.Response().Header("X-Stale", "1"); !errors.Is(err, ErrClosed) {
				bad = append(bad, fmt.Sprintf("kept %d: Header gave %v", j, err))
			}
			if k.ctx.Err() == nil {
				bad = append(bad, fmt.Sprintf("kept %d: its context is not done", j))
			}
		}
		i := len(keep)
		if i%2 == 1 {
			_ = rc.Pats() // (the head read while live, for half of them)
		}
		keep = append(keep, kept{uris[i], rc, rc.Response(), rc.Context()})
		if bad != nil {
			fmt.Fprint(rc.Response(), strings.Join(bad, "; "))
		} else {
			fmt.Fprintf(rc.Response(), "keep %d", i)
		}
		return nil
	})).SetAco(true)
	echo := func(rc *RestClosure) error {
		fmt.Fprintf(rc.Response(), "g %s", rc.Pats()[0])
		return nil
	}
	mustRule(t)(NewRule("GET", b, "^g/(\\d+)$", echo))
	mustRule(t)(HandleHTTP("GET", b, "^h/(\\d+)$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "h %s", strings.TrimPrefix(r.URL.Path, b+"h/"))
		})))
	mustRule(t)(NewRule("GET", b, "^fx$", func(rc *RestClosure) error {
		res := rc.Response()
		if err := res.Ok("text/plain"); err != nil {
			return err
		}
		fmt.Fprint(res, "part")
		if err := res.Flush(); err != nil {
			return err
		}
		runtime.Goexit()
		return nil
	})).SetAco(true)

	get := func(p string) string { return "GET " + b + p + " HTTP/1.1\r\nHost: x\r\n\r\n" }
	var reqs, want []string
	for i := 0; i < 16; i++ {
		switch {
		case i%4 == 1:
			reqs, want = append(reqs, get(fmt.Sprintf("g/%d", i))), append(want, fmt.Sprintf("g %d", i))
		case i%4 == 3:
			reqs, want = append(reqs, get(fmt.Sprintf("h/%d", i))), append(want, fmt.Sprintf("h %d", i))
		default:
			want = append(want, fmt.Sprintf("keep %d", len(uris)))
			uris = append(uris, fmt.Sprintf("%skeep/%d", b, i))
			reqs = append(reqs, get(fmt.Sprintf("keep/%d", i)))
		}
	}
	var r0 int64
	onRestPool(t, func(p *restCoPool) { r0 = p.reused })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pipeline(t, c, reqs, func(i int, resp *http.Response, body string) {
		if resp.StatusCode != 200 || body != want[i] || resp.Header.Get("X-Stale") != "" {
			t.Errorf("response %d: %d %v %q, want 200 %q", i, resp.StatusCode, resp.Header, body, want[i])
		}
	})
	// the handler that flushes then calls Goexit: the flushed head and
	// part (whether the client then sees the body end or the connection
	// cut is not asserted here)
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	io.WriteString(c3, get("fx"))
	c3.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c3), nil)
	if err != nil {
		t.Fatalf("fx: %v", err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(part), "part") {
		t.Errorf("fx: %d %q, want 200 and the flushed part", resp.StatusCode, part)
	}
	for wait := time.After(20 * time.Second); ; {
		var err error
		select {
		case err = <-reported:
		case <-wait:
			t.Fatal("the handler's Goexit was not reported")
		}
		if strings.Contains(err.Error(), "Goexit") {
			break
		}
	}
	// a last one on a new connection, on the loop's pooled records
	mu.Lock()
	uris = append(uris, b+"keep/99")
	want99 := fmt.Sprintf("keep %d", len(uris)-1)
	mu.Unlock()
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	pipeline(t, c2, []string{get("keep/99")}, func(_ int, resp *http.Response, body string) {
		if resp.StatusCode != 200 || body != want99 {
			t.Errorf("after: %d %q, want %q", resp.StatusCode, body, want99)
		}
	})
	var r1 int64
	onRestPool(t, func(p *restCoPool) { r1 = p.reused })
	if r1 == r0 {
		t.Errorf("no record was reused")
	}
}

// Go's HTTP client from eight goroutines on keep-alive connections to an
// aco rule whose loop reuses its request records: each handler reads its
// captures, URI and a header of its own request (some before a yield,
// some after, so that records are reused while others wait), and every
// response names its own request, never another's.
func TestRestPooledRecordsConcurrentClients(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	mustRule(t)(NewRule("GET", b, "^id/(\\d+)/(\\d+)$", func(rc *RestClosure) error {
		p := rc.Pats()
		n, _ := strconv.Atoi(p[1])
		var early string
		if n%3 == 0 {
			early = rc.Request().Header.Get("X-Id")
		}
		if n%2 == 0 {
			if err := rc.Co().Yield(); err != nil {
				return err
			}
		}
		req := rc.Request()
		if early != "" && early != req.Header.Get("X-Id") {
			return fmt.Errorf("X-Id %q before the yield, %q after", early, req.Header.Get("X-Id"))
		}
		fmt.Fprintf(rc.Response(), "%s/%s %s %s", p[0], p[1], req.URI, req.Header.Get("X-Id"))
		return nil
	})).SetAco(true)
	var r0 int64
	onRestPool(t, func(p *restCoPool) { r0 = p.reused })
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				path := fmt.Sprintf("%sid/%d/%d", b, g, i)
				req, _ := http.NewRequest("GET", url+path, nil)
				id := fmt.Sprintf("x-%d-%d", g, i)
				req.Header.Set("X-Id", id)
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := fmt.Sprintf("%d/%d %s %s", g, i, path, id)
				if err != nil || resp.StatusCode != 200 || string(body) != want {
					errs <- fmt.Errorf("%s: %d %q (%v), want %q", path, resp.StatusCode, body, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var r1 int64
	onRestPool(t, func(p *restCoPool) { r1 = p.reused })
	if r1 == r0 {
		t.Errorf("no record was reused in 320 requests")
	}
}

// A large response to a client that does not read yet: the handler
// returns, its loop reuses the record for other requests (and the
// collector runs) while the engine still writes the body; the slow
// client then reads every byte as the handler wrote it.
func TestRestPooledRecordLargeBodySlowClient(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	const size = 8 << 20 // (more than the kernel's socket buffers take)
	pattern := func(seed byte) []byte {
		p := make([]byte, size)
		for i := range p {
			p[i] = seed + byte(i%251)
		}
		return p
	}
	mustRule(t)(NewRule("GET", b, "^big/(\\d+)$", func(rc *RestClosure) error {
		n, _ := strconv.Atoi(rc.Pats()[0])
		res := rc.Response()
		res.Write(pattern(byte(n)))
		return res.End()
	})).SetAco(true)
	mustRule(t)(NewRule("GET", b, "^small/(\\d+)$", func(rc *RestClosure) error {
		fmt.Fprintf(rc.Response(), "small %s", rc.Pats()[0])
		return nil
	})).SetAco(true)
	var slow []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET %sbig/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i+1)
		slow = append(slow, c)
	}
	// meanwhile: the loop serves others on the records it pools
	fast, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	var reqs []string
	for i := 0; i < 32; i++ {
		reqs = append(reqs, fmt.Sprintf("GET %ssmall/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i))
	}
	for round := 0; round < 4; round++ {
		pipeline(t, fast, reqs, func(i int, resp *http.Response, body string) {
			if want := fmt.Sprintf("small %d", i); resp.StatusCode != 200 || body != want {
				t.Fatalf("small %d: %d %q", i, resp.StatusCode, body)
			}
		})
		runtime.GC()
	}
	for i, c := range slow {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("big %d: %v", i+1, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, pattern(byte(i+1))) {
			t.Fatalf("big %d: %d, %d bytes (%v), not the %d bytes written", i+1, resp.StatusCode, len(body), err, size)
		}
	}
}

// A direct request's body is empty (read while the handler runs and from
// a kept closure after, on a record the loop reused); a client that
// resets its connection with pipelined requests in flight leaves
// nothing behind (restServer's cleanup counts sessions) and the pooled
// records serve on.
func TestRestPooledRecordBodyAndReset(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	var mu sync.Mutex
	var kept []*RestClosure
	mustRule(t)(NewRule("GET", b, "^body/(\\d+)$", func(rc *RestClosure) error {
		body, err := io.ReadAll(rc.Request().Body)
		if err != nil || len(body) != 0 {
			return fmt.Errorf("a direct request's body: %q, %v", body, err)
		}
		mu.Lock()
		kept = append(kept, rc)
		mu.Unlock()
		if n, _ := strconv.Atoi(rc.Pats()[0]); n%2 == 0 {
			rc.Co().Yield()
		}
		fmt.Fprintf(rc.Response(), "body %s", rc.Pats()[0])
		return nil
	})).SetAco(true)
	mustRule(t)(NewRule("GET", b, "^check$", func(rc *RestClosure) error {
		mu.Lock()
		defer mu.Unlock()
		for i, k := range kept {
			n, err := k.Request().Body.Read(make([]byte, 8))
			if n != 0 || err != io.EOF {
				return fmt.Errorf("kept %d: its body read %d, %v", i, n, err)
			}
			if !strings.HasPrefix(k.Request().URI, b+"body/") {
				return fmt.Errorf("kept %d: URI %q", i, k.Request().URI)
			}
		}
		fmt.Fprintf(rc.Response(), "checked %d", len(kept))
		return nil
	})).SetAco(true)
	get := func(p string) string { return "GET " + b + p + " HTTP/1.1\r\nHost: x\r\n\r\n" }
	for round := 0; round < 3; round++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		var reqs []string
		for i := 0; i < 16; i++ {
			reqs = append(reqs, get(fmt.Sprintf("body/%d", i)))
		}
		io.WriteString(c, strings.Join(reqs, ""))
		c.(*net.TCPConn).SetLinger(0)
		c.Close() // a reset, with requests in flight
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var reqs []string
	for i := 0; i < 8; i++ {
		reqs = append(reqs, get(fmt.Sprintf("body/%d", i)))
	}
	pipeline(t, c, reqs, func(i int, resp *http.Response, body string) {
		if want := fmt.Sprintf("body %d", i); resp.StatusCode != 200 || body != want {
			t.Errorf("body %d: %d %q, want %q", i, resp.StatusCode, body, want)
		}
	})
	pipeline(t, c, []string{get("check")}, func(_ int, resp *http.Response, body string) {
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "checked ") {
			t.Errorf("check: %d %q", resp.StatusCode, body)
		}
	})
}

// shutdownAsync stops listener l (10 ms of grace) and the eventer from
// another goroutine, as a process that shuts down while requests are in
// flight; the channel closes when Shutdown and Loop returned.  A listener
// whose connections did not all end (within 30 s) is an error: its
// sessions would outlive the loops.
func shutdownAsync(t *testing.T, l unsafe.Pointer) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		if err := cgo.TestListenerStop(l, 10); err != nil {
			t.Errorf("listener stop: %v", err)
		}
		Shutdown()
		Loop()
		close(done)
	}()
	return done
}

// shutdownThenRelease shuts the eventer down (shutdownAsync) while a
// direct handler waits for release, then lets the handler go: the End it
// sends on endErr must fail (its loop is gone), and no HTTP session may be
// left.
func shutdownThenRelease(t *testing.T, l unsafe.Pointer, release chan struct{}, endErr <-chan error) {
	t.Helper()
	awaitShutdown(t, shutdownAsync(t, l))
	close(release)
	select {
	case err := <-endErr:
		if err == nil {
			t.Error("End after shutdown: no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked handler did not return")
	}
	if n := cgo.HTTPSessions(); n != 0 {
		t.Errorf("%d sessions left after Shutdown", n)
	}
}

// awaitShutdown waits (a minute) for shutdownAsync's channel.
func awaitShutdown(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// A direct request's flat head carries each string whole, whatever its
// length: an aco rule sees every byte of a path capture, a query and a
// header field of 1 to 70 bytes (the C side copies short strings with
// fixed-size moves that overlap; each length takes another of its cases).
func TestRestDirectHeadStringLengths(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	mustRule(t)(NewRule("GET", b, "^len/(\\w+)$", func(rc *RestClosure) error {
		req := rc.Request()
		fmt.Fprintf(rc.Response(), "%s|%s|%s|%s", rc.Pats()[0], req.RawQuery,
			req.Header.Get("X-V"), req.Header.Get("X-Vv"))
		return rc.Response().End()
	})).SetAco(true)
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	str := func(n, shift int) string {
		var sb strings.Builder
		for i := 0; i < n; i++ {
			sb.WriteByte(alphabet[(i*7+shift)%len(alphabet)])
		}
		return sb.String()
	}
	c := &http.Client{Timeout: 2 * time.Minute}
	for n := 1; n <= 70; n++ {
		capt, q, v, vv := str(n, 0), "q="+str(n, 1), str(n, 2), str(71-n, 3)
		req, err := http.NewRequest("GET", url+b+"len/"+capt+"?"+q, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-V", v)
		req.Header.Set("X-Vv", vv)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("length %d: %v", n, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("length %d: body: %v", n, err)
		}
		if want := capt + "|" + q + "|" + v + "|" + vv; resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("length %d: %d %q, want %q", n, resp.StatusCode, body, want)
		}
	}
}
