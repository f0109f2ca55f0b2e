//go:build eventer_testhooks

package eventer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

// A Go handler that fails after it flushed part of its response (the 200
// head and a chunk are on the wire) breaks the connection, as net/http
// does: no final chunk, so a client knows the body is incomplete (Go's
// client: a read error; a raw reader: EOF without "0\r\n\r\n"), a
// request pipelined behind it is dropped, the failure is logged, and the
// loop goes on.  It was a well-formed 200 with a truncated body.  For
// NewRule and HandleHTTP rules, aco and goroutine, each failure (panic,
// an error returned, runtime.Goexit), on the direct path (the rule's
// first request) and on the relay (later ones: the first Flush moves the
// rule).
func TestRestFailAfterFlushBreaks(t *testing.T) {
	var lg logged
	url := restServer(t, 1, WithLogger(slog.New(slog.NewTextHandler(&lg, nil))),
		errorsTo(make(chan error, 64)))
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	const part = "part one\n"
	fail := func(how string) {
		switch how {
		case "panic":
			panic("boom after flush")
		case "goexit":
			runtime.Goexit()
		}
	}
	type rule struct {
		name, how string
	}
	var rules []rule
	for i := 0; i < 2*2*3; i++ {
		// each rule twice: the first request of one is Go's client's, of
		// the other the raw client's (the direct path serves it)
		aco, how, v := i%2 == 0, []string{"panic", "error", "goexit"}[i/2%3], i/6
		name := fmt.Sprintf("rest/%s/%v/%d", how, aco, v)
		mustRule(t)(NewRule("GET", b, "^"+name+"$", func(rc *RestClosure) error {
			res := rc.Response()
			if err := res.Ok("text/plain"); err != nil {
				return err
			}
			res.WriteString(part)
			if err := res.Flush(); err != nil {
				return err
			}
			res.WriteString("never sent\n")
			fail(how)
			return errors.New("no luck after flush")
		})).SetAco(aco)
		rules = append(rules, rule{name, how})
		if how == "error" {
			continue // (an http.Handler returns no error)
		}
		name = fmt.Sprintf("http/%s/%v/%d", how, aco, v)
		mustRule(t)(HandleHTTP("GET", b, "^"+name+"$", http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, part)
				w.(http.Flusher).Flush()
				io.WriteString(w, "never sent\n")
				fail(how)
			}))).SetAco(aco)
		rules = append(rules, rule{name, how})
	}
	mustRule(t)(NewRule("GET", b, "^ok$", hello))
	mustRule(t)(NewRule("GET", b, "^okco$", hello)).SetAco(true)

	// Go's client: the head is a 200, the body read fails after the part
	goClient := func(r rule) {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(url + b + r.name)
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != part || err == nil {
			t.Errorf("%s: %d %q, body error %v; want 200 %q and a read error", r.name,
				resp.StatusCode, body, err, part)
		}
	}
	// a raw client, with a request pipelined behind: what it reads up to
	// the connection's end is the 200 head and the part, no final chunk,
	// nothing for the second request
	raw := func(r rule) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET %s%s HTTP/1.1\r\nHost: x\r\n\r\nGET %sok HTTP/1.1\r\nHost: x\r\n\r\n",
			b, r.name, b)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("%s: raw read to EOF: %v (read %q)", r.name, err, got)
		}
		s := string(got)
		if !strings.HasPrefix(s, "HTTP/1.1 200 ") || !strings.Contains(s, "Transfer-Encoding: chunked\r\n") ||
			!strings.HasSuffix(s, "\r\n\r\n9\r\n"+part+"\r\n") || strings.Count(s, "HTTP/1.1") != 1 {
			t.Errorf("%s: raw: %q; want the 200 head and one chunk %q, then EOF", r.name, s, part)
		}
	}
	ok := func(path string) {
		t.Helper()
		if st, _, body := get(t, url+b+path); st != 200 || !strings.HasPrefix(body, "hello") {
			t.Fatalf("%s after the failures: %d %q", path, st, body)
		}
	}
	// warm up the pools (worker coroutines, records), then count
	ok("ok")
	ok("okco")
	http.DefaultClient.CloseIdleConnections()
	before := settledStats(t, nil)
	socks := openSockets(t)

	// curl (Debian's): the flushed part, then exit 18 ("transfer closed
	// with outstanding read data remaining")
	curl := func(r rule) {
		t.Helper()
		if _, err := exec.LookPath("curl"); err != nil {
			t.Fatalf("curl: %v (scripts/deps.sh installs it)", err)
		}
		out, err := exec.Command("curl", "-sS", "--max-time", "20", url+b+r.name).Output()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 18 || string(out) != part {
			t.Errorf("%s: curl: %v, output %q; want exit 18 after %q", r.name, err, out, part)
		}
	}
	for _, r := range rules {
		// the rule's first request takes the direct path, the later ones
		// the relay (the first Flush moved the rule)
		if strings.HasSuffix(r.name, "/0") {
			goClient(r)
			raw(r)
		} else {
			raw(r)
			goClient(r)
		}
		curl(r)
		ok("ok")
		ok("okco")
	}
	http.DefaultClient.CloseIdleConnections()
	settledStats(t, &before)
	waitSockets(t, "the connections to close", socks)

	for _, want := range []string{"boom after flush", "no luck after flush", "Goexit",
		"REST handler failed"} {
		if !strings.Contains(lg.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, lg.String())
		}
	}
	if n := strings.Count(lg.String(), "REST handler failed"); n < 3*len(rules) {
		t.Errorf("%d failures logged, want %d", n, 3*len(rules))
	}
}

// settled is what settledStats saw: the figures, and the Go coroutines
// that are idle REST workers (pooled: not a leak).
type settled struct {
	Stats
	idle int64
}

// settledStats waits (20 s) until no HTTP session or connection is open
// and, with a baseline, until the live C events and C coroutines are
// back to it at most, and the Go coroutines that are not idle REST
// workers too; the figures.
func settledStats(t *testing.T, base *settled) settled {
	t.Helper()
	var s settled
	var why string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if s.Stats, err = ReadStats(); err != nil {
			t.Fatal(err)
		}
		s.idle = restIdleWorkers(t)
		c, g := cos(&s.Stats, true), cos(&s.Stats, false)
		why = ""
		switch {
		case s.Connections.HTTPSessions != 0 || s.Connections.Active != 0:
			why = fmt.Sprintf("%d sessions, %d connections", s.Connections.HTTPSessions,
				s.Connections.Active)
		case base != nil && s.Events > base.Events:
			why = fmt.Sprintf("%d events, %d before", s.Events, base.Events)
		case base != nil && c > cos(&base.Stats, true):
			why = fmt.Sprintf("%d C coroutines, %d before", c, cos(&base.Stats, true))
		case base != nil && g-s.idle > cos(&base.Stats, false)-base.idle:
			why = fmt.Sprintf("%d Go coroutines (%d idle workers), %d before (%d)", g, s.idle,
				cos(&base.Stats, false), base.idle)
		}
		if why == "" {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("still live: %s", why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// restIdleWorkers counts the idle REST worker coroutines of every loop.
func restIdleWorkers(t *testing.T) int64 {
	t.Helper()
	rt.mu.Lock()
	loops := append([]*loop(nil), rt.loops...)
	rt.mu.Unlock()
	var n atomic.Int64
	for _, l := range loops {
		done := make(chan struct{})
		if err := l.post(func() {
			if p, ok := restCoPools.Load(l); ok {
				n.Add(int64(len(p.(*restCoPool).idle)))
			}
			close(done)
		}); err != nil {
			t.Fatal(err)
		}
		<-done
	}
	return n.Load()
}

func cos(s *Stats, c bool) int64 {
	var n int64
	for _, l := range s.Loops {
		if c {
			n += l.CCoroutines
		} else {
			n += l.GoCoroutines
		}
	}
	return n
}

// Many clients at once against handlers that fail after flushing 128 KiB
// (more than a socket takes at once, so the loop is still writing when
// the handler fails): Go's client and slow raw readers get all the
// flushed bytes and then a broken body, never a whole one; clients that
// reset as soon as the head arrives, while the handler goes on, release
// everything; failures before a flush stay 500s, and good requests mixed
// in are answered.  Every session, event, coroutine and fd goes.
func TestRestFailAfterFlushMany(t *testing.T) {
	url := restServer(t, 2, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		errorsTo(make(chan error, 1)))
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	piece := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
	fail := func(i int) error {
		switch i % 3 {
		case 0:
			panic("many boom")
		case 1:
			runtime.Goexit()
		}
		return errors.New("many error")
	}
	for _, aco := range []bool{false, true} {
		mustRule(t)(NewRule("GET", b, fmt.Sprintf("^r/%v/(\\d+)$", aco), func(rc *RestClosure) error {
			i, _ := strconv.Atoi(rc.Pats()[0])
			res := rc.Response()
			res.Ok("text/plain")
			if i%5 == 4 { // fails before anything was sent
				res.WriteString(piece)
				return fail(i)
			}
			for k := 0; k < 2; k++ {
				res.WriteString(piece)
				if err := res.Flush(); err != nil {
					return err // (a client that reset)
				}
			}
			return fail(i)
		})).SetAco(aco)
		mustRule(t)(HandleHTTP("GET", b, fmt.Sprintf("^h/%v/(\\d+)$", aco), http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) {
				for k := 0; k < 2; k++ {
					io.WriteString(w, piece)
					w.(http.Flusher).Flush()
				}
				if r.URL.Query().Get("goexit") != "" {
					runtime.Goexit()
				}
				panic(http.ErrAbortHandler)
			}))).SetAco(aco)
	}
	mustRule(t)(NewRule("GET", b, "^ok$", hello)).SetAco(true)
	// warm up, then count
	for _, p := range []string{"ok", "r/true/4", "r/false/4"} {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		if resp, err := c.Get(url + b + p); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	before := settledStats(t, nil)
	socks := openSockets(t)

	n := 240
	if raceEnabled {
		n = 120
	}
	want := piece + piece
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- func() error {
				aco := i%2 == 0
				path := fmt.Sprintf("%sr/%v/%d", b, aco, i)
				if i%4 == 1 {
					path = fmt.Sprintf("%sh/%v/%d", b, aco, i)
					if i%8 == 1 {
						path += "?goexit=1"
					}
				}
				if i%7 == 6 {
					path = b + "ok"
				}
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\nGET %sok HTTP/1.1\r\nHost: x\r\n\r\n", path, b)
				var r io.Reader = c
				if i%3 == 0 {
					r = &slowReader{c}
				}
				br := bufio.NewReader(r)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					return fmt.Errorf("%s: %v", path, err)
				}
				if i%11 == 10 { // reset as soon as the head is in
					c.(*net.TCPConn).SetLinger(0)
					return nil
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case strings.HasSuffix(path, "ok"):
					if resp.StatusCode != 200 || err != nil || !strings.HasPrefix(string(body), "hello") {
						return fmt.Errorf("%s: %d %.20q %v", path, resp.StatusCode, body, err)
					}
					return nil
				case strings.Contains(path, "/r/") && i%5 == 4:
					if resp.StatusCode != 500 || err != nil || !resp.Close {
						return fmt.Errorf("%s: %d (close %v) %v, want a 500 that closes", path,
							resp.StatusCode, resp.Close, err)
					}
				default:
					if resp.StatusCode != 200 || err == nil || string(body) != want {
						return fmt.Errorf("%s: %d, %d bytes (whole %v), error %v; want 200, the %d flushed bytes and a read error",
							path, resp.StatusCode, len(body), string(body) == want, err, len(want))
					}
				}
				// nothing behind it: the connection ends
				if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
					return fmt.Errorf("%s: after the response: %.40q %v", path, rest, err)
				}
				return nil
			}()
		}(i)
	}
	wg.Wait()
	close(errs)
	bad := 0
	for err := range errs {
		if err != nil {
			if bad++; bad <= 10 {
				t.Error(err)
			}
		}
	}
	if bad > 10 {
		t.Errorf("... %d failures in all", bad)
	}
	if st, _, _ := get(t, url+b+"ok"); st != 200 {
		t.Fatalf("after: %d", st)
	}
	http.DefaultClient.CloseIdleConnections()
	settledStats(t, &before)
	waitSockets(t, "the connections to close", socks)
}

// A relay handler (a request with a body) that wrote more than the relay
// buffers in Go (32 KiB: the bytes went to C) and then fails before any
// flush gets a clean 500: "Internal Server Error\n" with the error page's
// head, not the handler's body and headers with the error text after
// them (or compressed into its gzip stream).
func TestRestFail500AfterLargeWrite(t *testing.T) {
	url := restServer(t, 1, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	b := restBase()
	secret := strings.Repeat("s", 40<<10)
	for _, aco := range []bool{false, true} {
		for _, gz := range []bool{false, true} {
			mustRule(t)(NewRule("POST", b, fmt.Sprintf("^r/%v/%v$", aco, gz), func(rc *RestClosure) error {
				io.Copy(io.Discard, rc.Request().Body)
				res := rc.Response()
				res.Ok("application/x-secret")
				res.Header("X-Secret", "1")
				if gz {
					res.Compress(false)
				}
				res.WriteString(secret)
				return errors.New("failed after a large write")
			})).SetAco(aco)
		}
		mustRule(t)(HandleHTTP("POST", b, fmt.Sprintf("^h/%v$", aco), http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("X-Secret", "1")
				io.WriteString(w, secret)
				panic("failed after a large write")
			}))).SetAco(aco)
	}
	for _, p := range []string{"r/false/false", "r/true/false", "r/false/true", "r/true/true",
		"h/false", "h/true"} {
		for i := 0; i < 2; i++ {
			req, _ := http.NewRequest("POST", url+b+p, strings.NewReader("body"))
			req.Header.Set("Accept-Encoding", "gzip")
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 500 || err != nil || string(body) != "Internal Server Error\n" ||
				resp.Header.Get("X-Secret") != "" || resp.Header.Get("Content-Encoding") != "" ||
				!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
				t.Errorf("%s: %d %v %q (%d bytes) %v; want a clean 500", p, resp.StatusCode,
					resp.Header, body[:min(len(body), 40)], len(body), err)
			}
		}
	}
}

// A loop that stops while handlers have flushed part of their responses
// breaks those connections off: the clients see incomplete bodies, not a
// whole 200 cut short (a goroutine's request was ended with its final
// chunk: the 503 the stop answers could not replace a head already out).
func TestRestShutdownAfterFlushBreaks(t *testing.T) {
	if err := Init(WithConcurrency(1), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		errorsTo(make(chan error, 4))); err != nil {
		t.Fatal(err)
	}
	l, addr := restListen(t)
	b := restBase()
	const part = "part one\n"
	started := make(chan struct{}, 4)
	release := make(chan struct{})
	flushThen := func(rc *RestClosure, wait func() error) error {
		res := rc.Response()
		res.Ok("text/plain")
		res.WriteString(part)
		if err := res.Flush(); err != nil {
			return err
		}
		started <- struct{}{}
		return wait()
	}
	mustRule(t)(NewRule("GET", b, "^g$", func(rc *RestClosure) error {
		return flushThen(rc, func() error { <-release; return nil })
	}))
	mustRule(t)(NewRule("GET", b, "^co$", func(rc *RestClosure) error {
		return flushThen(rc, func() error { return rc.Co().Sleep(time.Minute) })
	})).SetAco(true)
	var brs []*bufio.Reader
	for _, p := range []string{"g", "co"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		fmt.Fprintf(c, "GET %s%s HTTP/1.1\r\nHost: x\r\n\r\n", b, p)
		brs = append(brs, bufio.NewReader(c))
	}
	<-started
	<-started
	done := shutdownAsync(t, l)
	awaitShutdown(t, done)
	close(release)
	for i, br := range brs {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != part || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%d: %d %q %v; want 200 %q and an unexpected EOF", i, resp.StatusCode, body,
				err, part)
		}
	}
	if n := cgo.HTTPSessions(); n != 0 {
		t.Errorf("%d sessions left after Shutdown", n)
	}
}

// A handler that fails after a flush while the client is still sending a
// large body it did not read (half of it read, or none): the client gets
// the flushed part and a broken body, whether it sends at once or slowly,
// and the loop goes on.
func TestRestFailAfterFlushUnreadBody(t *testing.T) {
	url := restServer(t, 1, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	b := restBase()
	const part = "part one\n"
	for _, aco := range []bool{false, true} {
		mustRule(t)(NewRule("POST", b, fmt.Sprintf("^r/%v$", aco), func(rc *RestClosure) error {
			if rc.Request().Query().Get("half") != "" {
				io.CopyN(io.Discard, rc.Request().Body, 512<<10)
			}
			res := rc.Response()
			res.Ok("text/plain")
			res.WriteString(part)
			if err := res.Flush(); err != nil {
				return err
			}
			panic("failed with the body unread")
		})).SetAco(aco)
	}
	mustRule(t)(NewRule("GET", b, "^ok$", hello))
	body := bytes.Repeat([]byte("b"), 2<<20)
	for _, aco := range []bool{false, true} {
		for _, q := range []string{"", "?half=1"} {
			for _, slow := range []bool{false, true} {
				var r io.Reader = bytes.NewReader(body)
				if slow {
					r = &slowReader{r}
				}
				req, _ := http.NewRequest("POST", fmt.Sprintf("%s%sr/%v%s", url, b, aco, q), r)
				req.ContentLength = int64(len(body))
				c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
				resp, err := c.Do(req)
				what := fmt.Sprintf("aco %v %q slow %v", aco, q, slow)
				if err != nil {
					// the request was cut while it was sent: also a
					// broken exchange, never a whole response
					t.Logf("%s: %v", what, err)
					continue
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(got) != part || err == nil {
					t.Errorf("%s: %d %q %v; want 200 %q and a read error", what, resp.StatusCode,
						got, err, part)
				}
			}
		}
	}
	if st, _, _ := get(t, url+b+"ok"); st != 200 {
		t.Fatalf("after: %d", st)
	}
}

// A net/http handler that declares a Content-Length and writes fewer
// bytes (a file whose copy failed half-way: http.ServeContent's case)
// leaves its client with an incomplete body, as net/http does (it closes
// the connection after the short body): the client must not take the
// short body for the whole.  Writing more than declared gets
// http.ErrContentLength for the excess, as from net/http.  HEAD, and a
// handler that writes exactly what it declared, are unchanged.
func TestHandleHTTPShortContentLength(t *testing.T) {
	var lg logged
	url := restServer(t, 1, WithLogger(slog.New(slog.NewTextHandler(&lg, nil))))
	b := restBase()
	overErr := make(chan error, 8)
	for _, aco := range []bool{false, true} {
		mustRule(t)(HandleHTTP("GET", b, fmt.Sprintf("^short/%v$", aco), http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "100")
				io.WriteString(w, "only forty bytes of the hundred declared")
				if r.URL.Query().Get("flush") != "" {
					w.(http.Flusher).Flush()
				}
			}))).SetAco(aco)
		mustRule(t)(HandleHTTP("GET", b, fmt.Sprintf("^over/%v$", aco), http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "5")
				n, err := io.WriteString(w, "12345678")
				if n != 5 {
					err = fmt.Errorf("wrote %d: %v", n, err)
				}
				overErr <- err
			}))).SetAco(aco)
		mustRule(t)(HandleHTTP("GET", b, fmt.Sprintf("^exact/%v$", aco), http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "5")
				io.WriteString(w, "12345")
			}))).SetAco(aco)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, aco := range []bool{false, true} {
		for _, q := range []string{"", "?flush=1", ""} { // (direct, then relay)
			resp, err := c.Get(fmt.Sprintf("%s%sshort/%v%s", url, b, aco, q))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || err == nil || string(body) != "only forty bytes of the hundred declared" {
				t.Errorf("short aco=%v %s: %d %q %v; want 200, the 40 bytes and a read error",
					aco, q, resp.StatusCode, body, err)
			}
		}
		resp, err := c.Get(fmt.Sprintf("%s%sover/%v", url, b, aco))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil || string(body) != "12345" {
			t.Errorf("over aco=%v: %d %q %v", aco, resp.StatusCode, body, err)
		}
		if err := <-overErr; !errors.Is(err, http.ErrContentLength) {
			t.Errorf("over aco=%v: the write past the length: %v, want http.ErrContentLength", aco, err)
		}
		for _, m := range []string{"GET", "HEAD"} {
			req, _ := http.NewRequest(m, fmt.Sprintf("%s%sexact/%v", url, b, aco), nil)
			resp, err = c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := map[string]string{"GET": "12345"}[m]; resp.StatusCode != 200 || err != nil ||
				string(body) != want {
				t.Errorf("exact %s aco=%v: %d %q %v", m, aco, resp.StatusCode, body, err)
			}
		}
		req, _ := http.NewRequest("HEAD", fmt.Sprintf("%s%sshort/%v", url, b, aco), nil)
		if resp, err = c.Do(req); err != nil || resp.StatusCode != 200 {
			t.Errorf("HEAD short aco=%v: %v", aco, err)
		} else {
			resp.Body.Close()
		}
	}
	if !strings.Contains(lg.String(), "Content-Length") {
		t.Errorf("the short bodies were not logged:\n%s", lg.String())
	}
}

// Over TLS (an http_rest_api listener with ssl="on") a handler that
// fails after a flush breaks the connection the
// same way: Go's client over crypto/tls and curl see the flushed part and
// then an incomplete body (curl: exit 18).
func TestRestHTTPSFailAfterFlush(t *testing.T) {
	pki, listen, b := httpsRestLoop(t, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	const part = "part one\n"
	for _, aco := range []bool{false, true} {
		r, err := NewRule("GET", b, fmt.Sprintf("^cut/%v$", aco), func(rc *RestClosure) error {
			res := rc.Response()
			res.Ok("text/plain")
			res.WriteString(part)
			if err := res.Flush(); err != nil {
				return err
			}
			panic("boom over TLS")
		})
		if err != nil {
			t.Fatal(err)
		}
		r.SetAco(aco)
		t.Cleanup(func() { r.Close() })
	}
	port := listen()
	url := fmt.Sprintf("https://127.0.0.1:%d%s", port, b)
	c := pki.httpsClient()
	_, hasCurl := exec.LookPath("curl")
	for _, aco := range []bool{false, true} {
		resp, err := c.Get(fmt.Sprintf("%scut/%v", url, aco))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != part || err == nil {
			t.Errorf("aco=%v: %d %q %v; want 200 %q and a read error", aco, resp.StatusCode,
				body, err, part)
		}
		if hasCurl != nil {
			t.Fatalf("curl: %v (scripts/deps.sh installs it)", hasCurl)
		}
		out, err := exec.Command("curl", "-sS", "--max-time", "20", "--cacert", pki.caFile,
			fmt.Sprintf("%scut/%v", url, aco)).Output()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 18 || string(out) != part {
			t.Errorf("aco=%v: curl: %v, output %q; want exit 18 after %q", aco, err, out, part)
		}
	}
	c.CloseIdleConnections()
	waitFor(t, "the sessions to go", func() bool { return cgo.HTTPSessions() == 0 })
}

// openSockets counts the process's open sockets (a loop's driver may
// open an fd of its own at any time, a dup of its epoll fd kept until the
// loop stops: connections are sockets).
func openSockets(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// waitSockets waits (20 s) until at most want sockets are open.
func waitSockets(t *testing.T, what string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for n := openSockets(t); n > want; n = openSockets(t) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %d sockets open, %d before", what, n, want)
		}
		time.Sleep(time.Millisecond)
	}
}
