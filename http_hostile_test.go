//go:build eventer_testhooks

package eventer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

// hostileRules registers, under a base of its own, GET fast (a plain Go
// handler) and GET slow (100 ms, on a coroutine when aco): the base.
func hostileRules(t *testing.T, aco bool) string {
	b := restBase()
	mustRule(t)(HandleHTTP("GET", b, "^fast$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fast") })))
	r := mustRule(t)(HandleHTTP("GET", b, "^slow$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(100 * time.Millisecond)
			io.WriteString(w, "slow")
		})))
	r.SetAco(aco)
	return b
}

// A client that pipelines requests, a slow Go handler among them, and
// half-closes its side (printf ... | nc -N) gets every answer, in order,
// read with Go's own HTTP response parser; then the server closes.
func TestHostileHalfClosePipeline(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	for _, aco := range []bool{false, true} {
		b := hostileRules(t, aco)
		for _, paths := range [][]string{
			{"fast", "fast", "fast"},
			{"fast", "slow", "fast"},
			{"slow", "fast"},
			{"slow", "slow", "fast"},
		} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(20 * time.Second))
			var req strings.Builder
			for _, p := range paths {
				fmt.Fprintf(&req, "GET %s%s HTTP/1.1\r\nHost: x\r\n\r\n", b, p)
			}
			io.WriteString(c, req.String())
			c.(*net.TCPConn).CloseWrite()
			br := bufio.NewReader(c)
			for i, p := range paths {
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("aco %v %v: response %d (%s): %v", aco, paths, i+1, p, err)
				}
				body, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil || res.StatusCode != 200 || string(body) != p {
					t.Fatalf("aco %v %v: response %d: %d %q %v, want 200 %q", aco, paths, i+1,
						res.StatusCode, body, err, p)
				}
			}
			if n, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("aco %v %v: after the responses: %v %v, want EOF", aco, paths, n, err)
			}
			c.Close()
		}
	}
}

// Clients that reset their connections while their pipelined batches are
// held (a slow handler in the middle): every session and Go request goes
// away (restServer's clean-up checks), and the server still answers.
func TestHostileResetWhileHeld(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	for _, aco := range []bool{false, true} {
		b := hostileRules(t, aco)
		var conns []net.Conn
		for i := 0; i < 50; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET %[1]sfast HTTP/1.1\r\nHost: x\r\n\r\nGET %[1]sslow HTTP/1.1\r\nHost: x\r\n\r\nGET %[1]sfast HTTP/1.1\r\nHost: x\r\n\r\n", b)
			conns = append(conns, c)
		}
		time.Sleep(20 * time.Millisecond)
		for _, c := range conns {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
		if code, _, body := get(t, url+b+"fast"); code != 200 || body != "fast" {
			t.Fatalf("after the resets: %d %q", code, body)
		}
	}
}

// TLS, hostile clients: a client that pipelines requests for big and small
// bodies and reads slowly (the server's multi-record writes wait for it),
// gets every byte in order; a client that completes its handshake and
// then only reads (sends nothing, as a client waiting for a session ticket
// does) gets its ticket, and the next connection resumes with it; a client
// that pipelines and resets mid-batch leaves nothing behind.
func TestHostileTLS(t *testing.T) {
	pki, listen, b := httpsRestLoop(t)
	// big: 1.5 MB, each byte a function of its offset and of n
	bigBody := func(n int) []byte {
		p := make([]byte, 1536<<10)
		for i := range p {
			p[i] = byte('a' + (i/7+n)%26)
		}
		return p
	}
	var rules []*Rule
	r := mustRule(t)(NewRule("GET", b, "^big/(\\d+)$", func(rc *RestClosure) error {
		n := 0
		fmt.Sscan(rc.Pats()[0], &n)
		res := rc.Response()
		res.Ok("application/octet-stream")
		res.Write(bigBody(n))
		return res.End()
	}))
	r.SetAco(true)
	rules = append(rules, r)
	r = mustRule(t)(NewRule("GET", b, "^small$", func(rc *RestClosure) error {
		res := rc.Response()
		res.Ok("text/plain")
		io.WriteString(res, "small")
		return res.End()
	}))
	r.SetAco(true)
	rules = append(rules, r)
	t.Cleanup(func() {
		for _, r := range rules {
			r.Close()
		}
	})
	port := listen()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cache := &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	cfg := &tls.Config{RootCAs: pki.pool, ClientSessionCache: cache, ServerName: "127.0.0.1",
		MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}}
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		// (the slow pipeline of 4.5 MB ran past 30 s under -race at nice
		// 19 beside CPU hogs, load 20)
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		return c
	}

	// 1: read nothing but the ticket, then resume with it
	c := dial()
	if c.ConnectionState().DidResume {
		t.Fatal("the first connection resumed")
	}
	// The ticket comes after the handshake, when the server's loop gets
	// to it: read (nothing else comes) until the client has stored it,
	// 20 s at most; a single short read missed it on a loaded machine.
	var one [1]byte
	for deadline := time.Now().Add(20 * time.Second); cache.puts.Load() == 0 && time.Now().Before(deadline); {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(one[:]); n != 0 || !isTimeout(err) {
			t.Fatalf("a read with nothing asked: %d %v", n, err)
		}
	}
	c.Close()
	c = dial()
	if !c.ConnectionState().DidResume {
		t.Fatal("the server's session ticket did not come to a client that sent nothing")
	}

	// 2: a pipeline of big and small responses read slowly, on the
	// resumed connection
	paths := []string{"big/1", "small", "big/2", "small", "small", "big/3"}
	var req strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&req, "GET %s%s HTTP/1.1\r\nHost: x\r\n\r\n", b, p)
	}
	if _, err := io.WriteString(c, req.String()); err != nil {
		t.Fatal(err)
	}
	slow := &slowReader{r: c}
	br := bufio.NewReaderSize(slow, 4096)
	for i, p := range paths {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d (%s): %v", i, p, err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("response %d (%s): %d %v", i, p, res.StatusCode, err)
		}
		want := []byte("small")
		if strings.HasPrefix(p, "big/") {
			want = bigBody(int(p[4] - '0'))
		}
		if !bytes.Equal(body, want) {
			t.Fatalf("response %d (%s): %d bytes, not the %d expected", i, p, len(body), len(want))
		}
	}
	c.Close()

	// 3: pipelines reset mid-batch
	for i := 0; i < 20; i++ {
		c := dial()
		io.WriteString(c, req.String())
		if i%2 == 0 {
			io.ReadFull(c, make([]byte, 100<<10))
		}
		nc := c.NetConn().(*net.TCPConn)
		nc.SetLinger(0)
		nc.Close()
	}
	// the server still serves, and every session goes away
	c = dial()
	fmt.Fprintf(c, "GET %ssmall HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b)
	all, _ := io.ReadAll(c)
	if !strings.HasSuffix(string(all), "\r\n\r\nsmall") {
		t.Fatalf("after the resets: %q", all)
	}
	c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for restLive() != 0 || cgo.HTTPSessions() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still live: %d Go requests, %d sessions", restLive(), cgo.HTTPSessions())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ticketCache counts the session tickets the client stores.
type ticketCache struct {
	tls.ClientSessionCache
	puts atomic.Int32
}

func (c *ticketCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.puts.Add(1)
	}
	c.ClientSessionCache.Put(key, cs)
}

// slowReader reads at most 16 KB at a time, 1 ms apart.
type slowReader struct{ r io.Reader }

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	if len(p) > 16<<10 {
		p = p[:16<<10]
	}
	return s.r.Read(p)
}

// Go aco rules in a pipeline where a handler panics, one returns an error
// before answering, one answers and then panics, and one sleeps on its
// coroutine: each failure before an answer is a 500 that closes the
// connection (nothing behind it is served); an answer already ended
// stands; the sleeping one holds neither the responses before it (it
// sleeps until the client has read them) nor the order after it.
func TestHostileGoPipelineFailures(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	var after atomic.Int32
	mustRule(t)(NewRule("GET", b, "^ok/(\\d+)$", func(rc *RestClosure) error {
		res := rc.Response()
		res.Ok("text/plain")
		io.WriteString(res, rc.Pats()[0])
		return res.End()
	})).SetAco(true)
	mustRule(t)(NewRule("GET", b, "^after$", func(rc *RestClosure) error {
		after.Add(1)
		res := rc.Response()
		res.Ok("text/plain")
		io.WriteString(res, "after")
		return res.End()
	})).SetAco(true)
	mustRule(t)(NewRule("GET", b, "^panic$", func(rc *RestClosure) error { panic("hostile") })).SetAco(true)
	mustRule(t)(NewRule("GET", b, "^err$", func(rc *RestClosure) error { return fmt.Errorf("hostile") })).SetAco(true)
	mustRule(t)(NewRule("GET", b, "^endpanic$", func(rc *RestClosure) error {
		res := rc.Response()
		res.Ok("text/plain")
		io.WriteString(res, "ended")
		res.End()
		panic("after the end")
	})).SetAco(true)
	// a sleeper waits on its coroutine until the client has read every
	// response before it (released counts the sleepers let go): one that
	// held them back would never be let go (the client's read deadline
	// fails the test first)
	var sleepers, released atomic.Int32
	mustRule(t)(NewRule("GET", b, "^sleep$", func(rc *RestClosure) error {
		n := sleepers.Add(1)
		for deadline := time.Now().Add(2 * time.Minute); released.Load() < n; {
			if time.Now().After(deadline) {
				return fmt.Errorf("sleeper %d: the responses before it were never read", n)
			}
			if err := rc.Co().Sleep(2 * time.Millisecond); err != nil {
				return err
			}
		}
		res := rc.Response()
		res.Ok("text/plain")
		io.WriteString(res, "slept")
		return res.End()
	})).SetAco(true)
	get := func(p string) string { return "GET " + b + p + " HTTP/1.1\r\nHost: x\r\n\r\n" }
	for _, bad := range []string{"panic", "err"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		reqs := []string{get("ok/1"), get("ok/2"), get(bad)}
		io.WriteString(c, strings.Join(append(reqs, get("after"), get("after")), ""))
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		for i, want := range []string{"1", "2", ""} {
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: response %d: %v", bad, i, err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if i < 2 && (res.StatusCode != 200 || string(body) != want) {
				t.Fatalf("%s: response %d: %d %q, want 200 %q", bad, i, res.StatusCode, body, want)
			}
			if i == 2 && (res.StatusCode != 500 || !res.Close) {
				t.Fatalf("%s: the failed handler's response: %d close=%v, want 500 and a close",
					bad, res.StatusCode, res.Close)
			}
		}
		if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
			t.Fatalf("%s: after the 500: %q %v, want EOF", bad, rest, err)
		}
		c.Close()
	}
	if n := after.Load(); n != 0 {
		t.Fatalf("%d requests behind a 500 that closed the connection were served", n)
	}
	// an answer ended before a panic stands; a sleeper in the middle
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reqs := []string{get("ok/1"), get("endpanic"), get("ok/2"), get("sleep"), get("ok/3"),
		get("sleep"), get("ok/4")}
	want := []string{"1", "ended", "2", "slept", "3", "slept", "4"}
	pipeline(t, c, reqs, func(i int, res *http.Response, body string) {
		if res.StatusCode != 200 || body != want[i] {
			t.Fatalf("response %d: %d %q, want 200 %q", i, res.StatusCode, body, want[i])
		}
		switch i {
		case 2: // every response before the first sleeper
			released.Store(1)
		case 4: // and before the second
			released.Store(2)
		}
	})
}

// A thousand clients each send one request while the loop is held, so that
// one loop pass dispatches them all (in batches to Go): aco handlers
// that sleep on their coroutine, wait for a job (SimpleAsynch), panic, or
// answer at once; an aco HandleHTTP rule; some clients pipeline the
// engine's own 404 and a HandleHTTP request behind theirs; some reset
// while their request sits in the batch.  Every client that stays gets
// its own answers, each exactly once (nothing more arrives on its
// connection), and every session goes away (restServer's clean-up).
func TestHostileBatchManyConns(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	hold, held := holdRule(t, b)
	var served [2000]atomic.Int32
	mustRule(t)(NewRule("GET", b, "^n/(\\d+)$", func(rc *RestClosure) error {
		i, _ := strconv.Atoi(rc.Pats()[0])
		served[i].Add(1)
		res := rc.Response()
		switch i % 6 {
		case 0:
			if err := rc.Co().Sleep(time.Duration(i%5) * time.Millisecond); err != nil {
				return err
			}
		case 1:
			v := 0
			if err := rc.Co().SimpleAsynch(func() { v = i }); err != nil {
				return err
			}
			if v != i {
				return fmt.Errorf("SimpleAsynch: %d", v)
			}
		case 2:
			res.WriteString("half")
			panic("batch boom")
		case 3:
			if err := res.Ok(fmt.Sprintf("application/x-batch-%d", i)); err != nil {
				return err
			}
		}
		res.Header("X-N", strconv.Itoa(i))
		fmt.Fprintf(res, "n=%d", i)
		return res.End()
	})).SetAco(true)
	mustRule(t)(HandleHTTP("GET", b, "^h/(\\d+)$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "h="+strings.TrimPrefix(r.URL.Path, b+"h/"))
		}))).SetAco(true)
	const n = 1000
	cs := make([]net.Conn, n)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
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
	reset := func(i int) bool { return i%37 == 5 }
	piped := func(i int) bool { return i%10 == 9 }
	for i, c := range cs {
		req := fmt.Sprintf("GET %sn/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i)
		if i%4 == 3 && !piped(i) {
			req = fmt.Sprintf("GET %sh/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i)
		}
		if piped(i) {
			req += fmt.Sprintf("GET %snowhere/%d HTTP/1.1\r\nHost: x\r\n\r\nGET %sh/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, i, b, i)
		}
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if reset(i) {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}
	close(hold)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i, c := range cs {
		if reset(i) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// (a thousand requests, a sixth of them panicking, took more
			// than 30 s under -race at nice 19 beside CPU hogs, load 20)
			c.SetReadDeadline(time.Now().Add(2 * time.Minute))
			br := bufio.NewReader(c)
			read := func() (*http.Response, string, error) {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					return nil, "", err
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp, string(body), err
			}
			resp, body, err := read()
			if err != nil {
				errs <- fmt.Errorf("client %d: %v", i, err)
				return
			}
			var want string
			wantCode, wantCT := 200, ""
			switch {
			case i%4 == 3 && !piped(i):
				want = fmt.Sprintf("h=%d", i)
			case i%6 == 2:
				wantCode, want = 500, "Internal Server Error\n"
			default:
				want = fmt.Sprintf("n=%d", i)
				if i%6 == 3 {
					wantCT = fmt.Sprintf("application/x-batch-%d", i)
				}
			}
			if resp.StatusCode != wantCode || body != want ||
				(wantCT != "" && resp.Header.Get("Content-Type") != wantCT) ||
				(wantCode == 200 && want[0] == 'n' && resp.Header.Get("X-N") != strconv.Itoa(i)) {
				errs <- fmt.Errorf("client %d: %d %v %q; want %d %q (type %q)", i, resp.StatusCode, resp.Header, body, wantCode, want, wantCT)
				return
			}
			if wantCode == 500 {
				return // (the engine closes after a failed handler)
			}
			if piped(i) {
				if resp, body, err = read(); err != nil || resp.StatusCode != 404 {
					errs <- fmt.Errorf("client %d: pipelined 404: %v %v", i, resp, err)
					return
				}
				if resp, body, err = read(); err != nil || resp.StatusCode != 200 || body != fmt.Sprintf("h=%d", i) {
					errs <- fmt.Errorf("client %d: pipelined HandleHTTP: %v %q %v", i, resp, body, err)
					return
				}
			}
			// nothing more: no response was sent twice
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if extra, err := br.ReadByte(); err == nil {
				rest, _ := br.Peek(br.Buffered())
				errs <- fmt.Errorf("client %d: more after its responses: %q", i, append([]byte{extra}, rest...))
			}
		}()
	}
	wg.Wait()
	close(errs)
	nerr := 0
	for err := range errs {
		if nerr++; nerr <= 10 {
			t.Error(err)
		}
	}
	for i := 0; i < n; i++ {
		if got := served[i].Load(); got > 1 || (got == 0 && !reset(i) && (i%4 != 3 || piped(i))) {
			t.Errorf("request %d served %d times", i, got)
		}
	}
}

// One aco rule whose handler makes a different head from request to
// request, pipelined on one connection: statuses, reasons and fields
// (constants, which the loop's last head spec is reused for, and fresh
// strings with the same bytes), none, more than the spec cache holds, and
// heads around the 1 KiB that a small response is copied in: no response
// carries a status, reason or field of another.
func TestHostileSpecCacheAlternates(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	mustRule(t)(NewRule("GET", b, "^sc/(\\w+)/(\\d+)/(\\d+)$", func(rc *RestClosure) error {
		res := rc.Response()
		vlen, _ := strconv.Atoi(rc.Pats()[1])
		blen, _ := strconv.Atoi(rc.Pats()[2])
		switch rc.Pats()[0] {
		case "a":
			res.Status(201, "Created")
			res.Header("X-A", "1")
		case "b":
		case "c":
			res.Header("X-A", "2")
		case "d":
			res.Header("X-A", strconv.Itoa(vlen%1+1)) // "1", a string of its own
			res.Header("X-B", "x")
		case "e":
			res.Status(201, "Created")
		case "f":
			res.Header("X-A", "1")
			res.Header("X-B", "x")
			res.Header("X-C", "y")
		case "g":
			res.Ok("text/plain")
			res.Header("X-A", "1")
		case "h":
			res.Ok("text/plain")
		case "r":
			res.Status(202, "Taken In") // (not the standard phrase)
		case "v":
			res.Header("X-Big", strings.Repeat("v", vlen))
		case "w":
			res.Ok("application/x-w")
			res.Header("X-Big", strings.Repeat("w", vlen))
		}
		res.Write(bytes.Repeat([]byte{'.'}, blen))
		return res.End()
	})).SetAco(true)
	type want struct {
		code   int
		status string
		hdr    map[string]string
	}
	wants := map[string]want{
		"a": {201, "201 Created", map[string]string{"X-A": "1"}},
		"b": {200, "200 OK", nil},
		"c": {200, "200 OK", map[string]string{"X-A": "2"}},
		"d": {200, "200 OK", map[string]string{"X-A": "1", "X-B": "x"}},
		"e": {201, "201 Created", nil},
		"f": {200, "200 OK", map[string]string{"X-A": "1", "X-B": "x", "X-C": "y"}},
		"g": {200, "200 OK", map[string]string{"X-A": "1", "Content-Type": "text/plain"}},
		"h": {200, "200 OK", map[string]string{"Content-Type": "text/plain"}},
		"r": {202, "202 Taken In", nil},
		"v": {200, "200 OK", map[string]string{"X-Big": ""}},
		"w": {200, "200 OK", map[string]string{"X-Big": "", "Content-Type": "application/x-w"}},
	}
	type rq struct {
		kind       string
		vlen, blen int
	}
	var rqs []rq
	for _, k := range strings.Split("a b a c d b e f g h g a b f b r e r a h d d c", " ") {
		rqs = append(rqs, rq{k, 0, 3})
	}
	// "OK\0X-Big\0" + value + "\0" + body: 1024 bytes is the copy's limit
	for _, vb := range [][2]int{{1004, 10}, {1005, 10}, {1003, 10}, {1014, 0}, {1015, 0}, {10, 1004}, {2000, 1}, {1, 1013}, {1, 1014}} {
		rqs = append(rqs, rq{"v", vb[0], vb[1]}, rq{"b", 0, 1}, rq{"w", vb[0], vb[1]}, rq{"a", 0, 0})
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var reqs []string
	for _, r := range rqs {
		reqs = append(reqs, fmt.Sprintf("GET %ssc/%s/%d/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, r.kind, r.vlen, r.blen))
	}
	pipeline(t, c, reqs, func(i int, resp *http.Response, body string) {
		r := rqs[i]
		w := wants[r.kind]
		bad := resp.StatusCode != w.code || resp.Status != w.status || body != strings.Repeat(".", r.blen)
		for _, k := range []string{"X-A", "X-B", "X-C", "X-Big", "Content-Type"} {
			v, ok := w.hdr[k]
			if k == "X-Big" && ok {
				v = strings.Repeat(map[string]string{"v": "v", "w": "w"}[r.kind], r.vlen)
			}
			if got := resp.Header.Values(k); (ok && (len(got) != 1 || got[0] != v)) || (!ok && k != "Content-Type" && len(got) != 0) {
				bad = true
			}
		}
		if bad {
			t.Errorf("request %d %v: %s %v body %d bytes; want %s %v", i, r, resp.Status, resp.Header, len(body), w.status, w.hdr)
		}
	})
}

// More TLS connections than keep OpenSSL's buffers (256, process-wide):
// 300 come up at once (the first 256 handshakes keep theirs), half of
// them close, 150 more come up (some of them take the places freed); then
// one connection of each group uploads 1 MiB (the reader's buffer grows
// to several records: a kept one is freed for it), downloads 1.5 MiB, and
// goes on with small requests: every byte arrives, and every session goes
// away.  Fifty handshakes at a time on one loop: the handshake timeout is a
// minute (the default 5 s ended handshakes under -race beside CPU hogs).
func TestHostileTLSKeepCap(t *testing.T) {
	pki := newHTTPSPKI(t)
	conf := func(ports []int) {
		loadConf(t, fmt.Sprintf(`<app>
  <listeners>
    <listener type="http_rest_api" address="127.0.0.1" port="%d" backlog="1024" ssl="on">
      <sslconfig>
        <certificate_file>%s</certificate_file>
        <key_file>%s</key_file>
        <handshake_timeout>60000</handshake_timeout>
      </sslconfig>
    </listener>
  </listeners>
</app>
`, ports[0], pki.certFile, pki.keyF))
	}
	ports := []int{freePort(t)}
	conf(ports)
	setup(t, 1)
	if err := RestInit(); err != nil {
		t.Fatal(err)
	}
	// the first connections wait, idle, while the others come up: over a
	// minute under -race at nice 19 beside CPU hogs, past the default idle
	// timeout (the server closed first[0]: 'upload: ... broken pipe')
	cgo.TestSetHTTPTimeouts(10000, 10*60000)
	defer cgo.TestSetHTTPTimeouts(10000, 60000)
	b := fmt.Sprintf("/https%d/", httpsRuns.Add(1))
	big := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuv"), 48<<10) // 1.5 MiB
	var rules []*Rule
	r := mustRule(t)(NewRule("GET", b, "^small$", func(rc *RestClosure) error {
		res := rc.Response()
		res.Ok("text/plain")
		io.WriteString(res, "small")
		return res.End()
	}))
	r.SetAco(true)
	rules = append(rules, r)
	r = mustRule(t)(NewRule("GET", b, "^big$", func(rc *RestClosure) error {
		res := rc.Response()
		res.Ok("application/octet-stream")
		res.Write(big)
		return res.End()
	}))
	rules = append(rules, r)
	r = mustRule(t)(HandleHTTP("POST", b, "^sum$", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})))
	rules = append(rules, r)
	t.Cleanup(func() {
		for _, r := range rules {
			r.Close()
		}
	})
	port := listenerInitFree(t, "app", ports, conf)[0]
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}
	type conn struct {
		c  *tls.Conn
		br *bufio.Reader
	}
	do := func(c conn, req string) (*http.Response, []byte, error) {
		c.c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c.c, req); err != nil {
			return nil, nil, err
		}
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			return nil, nil, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, body, err
	}
	small := fmt.Sprintf("GET %ssmall HTTP/1.1\r\nHost: x\r\n\r\n", b)
	open := func(n int) []conn {
		cs := make([]conn, n)
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for i := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := tls.Dial("tcp", addr, cfg)
				if err != nil {
					errs <- err
					return
				}
				cs[i] = conn{c, bufio.NewReader(c)}
				if resp, body, err := do(cs[i], small); err != nil || resp.StatusCode != 200 || string(body) != "small" {
					errs <- fmt.Errorf("connection %d: %v %q %v", i, resp, body, err)
				}
			}()
			if i%50 == 49 {
				wg.Wait() // (the listen backlog)
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		return cs
	}
	t0 := time.Now()
	first := open(300)
	t.Logf("300 up: %v", time.Since(t0))
	for _, c := range first[150:] {
		c.c.Close()
	}
	last := open(150)
	t.Logf("450 up: %v", time.Since(t0))
	sum := sha256.Sum256(big[:1<<20])
	for _, c := range []conn{first[0], last[149]} {
		req := fmt.Sprintf("POST %ssum HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", b, 1<<20, big[:1<<20])
		if resp, body, err := do(c, req); err != nil || resp.StatusCode != 200 ||
			string(body) != fmt.Sprintf("%d %x", 1<<20, sum) {
			t.Fatalf("upload: %v %q %v", resp, body, err)
		}
		for k := 0; k < 3; k++ {
			if resp, body, err := do(c, fmt.Sprintf("GET %sbig HTTP/1.1\r\nHost: x\r\n\r\n", b)); err != nil ||
				resp.StatusCode != 200 || !bytes.Equal(body, big) {
				t.Fatalf("download %d: %v %d bytes %v", k, resp, len(body), err)
			}
			if resp, body, err := do(c, small); err != nil || resp.StatusCode != 200 || string(body) != "small" {
				t.Fatalf("small after: %v %q %v", resp, body, err)
			}
		}
	}
	t.Logf("streams: %v", time.Since(t0))
	for _, cs := range [][]conn{first[:150], last} {
		for _, c := range cs {
			c.c.Close()
		}
	}
	for deadline := time.Now().Add(20 * time.Second); cgo.HTTPSessions() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions left", cgo.HTTPSessions())
		}
	}
}

// Shutdown asked for while the loop is held, with forty requests of aco
// rules waiting in their sockets (they come in the passes after the
// hold: a full batch, the rest at the pass's end, or never): handlers
// that sleep on their coroutine, wait for a job, or answer at once.
// Shutdown returns; every client gets at most one response, whole, then
// the end of the connection; every session is let go and no C event is
// left.
func TestHostileBatchShutdownHeld(t *testing.T) {
	if err := Init(WithConcurrency(1)); err != nil {
		t.Fatal(err)
	}
	l, addr := restListen(t)
	b := restBase()
	hold, held := holdRule(t, b)
	mustRule(t)(NewRule("GET", b, "^w/(\\d+)$", func(rc *RestClosure) error {
		i, _ := strconv.Atoi(rc.Pats()[0])
		switch i % 3 {
		case 0:
			if err := rc.Co().Sleep(time.Minute); err != nil {
				return err
			}
		case 1:
			if err := rc.Co().SimpleAsynch(func() { time.Sleep(5 * time.Millisecond) }); err != nil {
				return err
			}
		}
		fmt.Fprintf(rc.Response(), "w=%d", i)
		return rc.Response().End()
	})).SetAco(true)
	const n = 40
	cs := heldBatch(t, addr, b, held, n)
	done := shutdownAsync(t, l)
	time.Sleep(50 * time.Millisecond)
	close(hold)
	awaitShutdown(t, done)
	if n := cgo.HTTPSessions(); n != 0 {
		t.Errorf("%d sessions left after Shutdown", n)
	}
	if live := cgo.LiveEvents(); live != 0 {
		t.Errorf("%d C events still allocated after Shutdown", live)
	}
	answered := 0
	for i, c := range cs[:n] {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if _, ok := err.(net.Error); ok && err.(net.Error).Timeout() {
				t.Errorf("client %d: neither an answer nor the end: %v", i, err)
			}
			continue // (closed unanswered: the eventer went away)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Errorf("client %d: %d, body cut: %v", i, resp.StatusCode, err)
			continue
		}
		answered++
		if resp.StatusCode == 200 && string(body) != fmt.Sprintf("w=%d", i) {
			t.Errorf("client %d: 200 %q", i, body)
		}
		if extra, err := br.ReadByte(); err == nil {
			rest, _ := br.Peek(br.Buffered())
			t.Errorf("client %d: after its %d: %q", i, resp.StatusCode, append([]byte{extra}, rest...))
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("client %d: the connection stays open after Shutdown", i)
		}
	}
	t.Logf("%d of %d answered", answered, n)
}

// rawResponse reads one response with a Content-Length as bytes: its
// status line, its header lines (without CR LF) and its body.
func rawResponse(br *bufio.Reader) (string, []string, []byte, error) {
	status, err := br.ReadString('\n')
	if err != nil {
		return "", nil, nil, err
	}
	var lines []string
	clen := -1
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", nil, nil, err
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "" {
			break
		}
		lines = append(lines, line)
		if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length: "); ok {
			clen, _ = strconv.Atoi(v)
		}
	}
	if clen < 0 {
		return "", nil, nil, fmt.Errorf("no Content-Length in %q", lines)
	}
	body := make([]byte, clen)
	_, err = io.ReadFull(br, body)
	return strings.TrimSuffix(status, "\r\n"), lines, body, err
}

// Content-Types of every length around the 48 bytes the loop thread keeps
// (46 to 49, and 1 and 100), with odd bytes (tab, DEL, 0x80-0xff, quote,
// semicolon), of two Go rules (an aco one and a goroutine one) and the
// engine's own 404 in between, alternating on one connection: each
// response carries its own type, byte for byte, in one field.
func TestHostileOkOddContentTypes(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	odd := []byte{'\t', 0x7f, 0x80, 0xff, '"', ';', ' ', '=', 0xc3, 0xa9, 'q'}
	mk := func(n, salt int) string {
		if n == 1 {
			return "z"
		}
		p := []byte("a/")
		for len(p) < n-1 {
			p = append(p, odd[(len(p)+salt)%len(odd)])
		}
		return string(append(p, 'z'))
	}
	var types []string
	for _, n := range []int{47, 48, 46, 47, 49, 1, 100, 47, 48} {
		types = append(types, mk(n, len(types)))
	}
	types = append(types, types[0], types[3]) // (a type met before, after others)
	for _, aco := range []bool{true, false} {
		mustRule(t)(NewRule("GET", b, fmt.Sprintf("^ct/%v/(\\d+)$", aco), func(rc *RestClosure) error {
			k, _ := strconv.Atoi(rc.Pats()[0])
			res := rc.Response()
			if err := res.Ok(types[k]); err != nil {
				return err
			}
			fmt.Fprintf(res, "k=%d", k)
			return res.End()
		})).SetAco(aco)
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type rq struct {
		k   int // -1: the engine's 404
		aco bool
	}
	var rqs []rq
	var req strings.Builder
	for round := 0; round < 2; round++ {
		for k := range types {
			aco := (k+round)%2 == 0
			rqs = append(rqs, rq{k, aco})
			fmt.Fprintf(&req, "GET %sct/%v/%d HTTP/1.1\r\nHost: x\r\n\r\n", b, aco, k)
			if k%3 == 1 {
				rqs = append(rqs, rq{-1, false})
				fmt.Fprintf(&req, "GET %snowhere HTTP/1.1\r\nHost: x\r\n\r\n", b)
			}
		}
	}
	if _, err := io.WriteString(c, req.String()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	for i, r := range rqs {
		status, lines, body, err := rawResponse(br)
		if err != nil {
			t.Fatalf("response %d %v: %v", i, r, err)
		}
		var cts []string
		for _, line := range lines {
			if v, ok := strings.CutPrefix(line, "Content-Type: "); ok {
				cts = append(cts, v)
			} else if strings.HasPrefix(strings.ToLower(line), "content-type:") {
				cts = append(cts, "(spelt) "+line)
			}
		}
		if r.k < 0 {
			if !strings.HasPrefix(status, "HTTP/1.1 404 ") || len(cts) != 1 || strings.ContainsAny(cts[0], "\x7f\x80") {
				t.Errorf("response %d (404): %q %q", i, status, lines)
			}
			continue
		}
		if status != "HTTP/1.1 200 OK" || string(body) != fmt.Sprintf("k=%d", r.k) ||
			len(cts) != 1 || cts[0] != types[r.k] {
			t.Errorf("response %d %v: %q %q %q; want Content-Type %q", i, r, status, cts, body, types[r.k])
		}
	}
}

// A listener stopped (with a grace period) while the loop is held and
// forty requests of aco rules wait in their sockets: the stop returns;
// each client gets at most one response, whole, then the end of its
// connection; every session and acceptor closure goes; the eventer then
// serves a new listener.
func TestHostileBatchListenerStopHeld(t *testing.T) {
	setup(t, 1)
	l, addr := restListen(t)
	b := restBase()
	hold, held := holdRule(t, b)
	mustRule(t)(NewRule("GET", b, "^w/(\\d+)$", func(rc *RestClosure) error {
		i, _ := strconv.Atoi(rc.Pats()[0])
		switch i % 3 {
		case 0:
			if err := rc.Co().Sleep(20 * time.Millisecond); err != nil {
				return err
			}
		case 1:
			if err := rc.Co().SimpleAsynch(func() { time.Sleep(time.Millisecond) }); err != nil {
				return err
			}
		}
		fmt.Fprintf(rc.Response(), "w=%d", i)
		return rc.Response().End()
	})).SetAco(true)
	const n = 40
	cs := heldBatch(t, addr, b, held, n)
	stopped := make(chan error, 1)
	go func() { stopped <- cgo.TestListenerStop(l, 200) }()
	time.Sleep(50 * time.Millisecond)
	close(hold)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("listener stop: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the listener's stop did not return")
	}
	answered := 0
	for i, c := range cs[:n] {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("client %d: neither an answer nor the end: %v", i, err)
			}
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Errorf("client %d: %d, body cut: %v", i, resp.StatusCode, err)
			continue
		}
		answered++
		if resp.StatusCode == 200 && string(body) != fmt.Sprintf("w=%d", i) {
			t.Errorf("client %d: 200 %q", i, body)
		}
		if extra, err := br.ReadByte(); err == nil {
			rest, _ := br.Peek(br.Buffered())
			t.Errorf("client %d: after its %d: %q", i, resp.StatusCode, append([]byte{extra}, rest...))
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("client %d: the connection stays open after the stop", i)
		}
	}
	t.Logf("%d of %d answered", answered, n)
	for deadline := time.Now().Add(20 * time.Second); cgo.HTTPSessions() != 0 || restLive() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still live: %d sessions, %d Go requests", cgo.HTTPSessions(), restLive())
		}
	}
	if n := cgo.AcceptorClosures(); n != 0 {
		t.Errorf("%d acceptor closures left", n)
	}
	// the loop goes on: a new listener serves the same rules
	l2, port2, err := cgo.TestListen("http_rest_api")
	if err != nil {
		t.Fatal(err)
	}
	defer cgo.TestListenerStop(l2, 100)
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%sw/4", port2, b))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 200 || string(body) != "w=4" {
		t.Fatalf("after the stop: %d %q", resp.StatusCode, body)
	}
}

// A handler keeps its RestClosure; the handlers of later requests on the
// same loop (other connections, in later passes' batches) read the kept
// one's request for the first time (path, query, pattern, header fields)
// and its context: they see that request's values, never their own, and
// its context is cancelled.
func TestHostileKeptClosureAfterReturn(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	var kept atomic.Pointer[RestClosure]
	mustRule(t)(NewRule("GET", b, "^k/(\\w+)$", func(rc *RestClosure) error {
		if rc.Pats()[0] == "keep" {
			kept.Store(rc)
			io.WriteString(rc.Response(), "kept")
			return nil
		}
		k := kept.Load()
		if k == nil {
			return fmt.Errorf("nothing kept")
		}
		q := k.Request()
		fmt.Fprintf(rc.Response(), "%s|%s|%s|%s|%v|%s", q.URI, q.RawQuery, k.Pats()[0],
			q.Header.Get("X-Id"), k.Context().Err(), rc.Request().Header.Get("X-Id"))
		return nil
	})).SetAco(true)
	do := func(path, id string) string {
		req, _ := http.NewRequest("GET", url+b+path, nil)
		req.Header.Set("X-Id", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(body)
	}
	if got := do("k/keep?a=1&b=2", "first"); got != "kept" {
		t.Fatalf("keep: %q", got)
	}
	want := b + "k/keep|a=1&b=2|keep|first|context canceled|"
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("later-%d", i)
		if got := do(fmt.Sprintf("k/read%d?x=%d", i, i), id); got != want+id {
			t.Fatalf("request %d: %q, want %q", i, got, want+id)
		}
	}
}

// A HandleHTTP handler's header of several values goes out as net/http
// writes it, a line per value: two cookies set with http.SetCookie were
// folded into one "Set-Cookie: a=1, b=2" line, which a client reads as
// one cookie a whose value is "1, b=2" (cookie b lost).  Go rules and
// aco (direct) rules alike, and a body-less 204 as a flushed response.
func TestHostileSetCookieLines(t *testing.T) {
	url := restServer(t, 2)
	b := restBase()
	for _, aco := range []bool{false, true} {
		mode := map[bool]string{false: "go", true: "aco"}[aco]
		mustRule(t)(HandleHTTP("GET", b, "^"+mode+"/(\\w+)$", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "a", Value: "1", Path: "/"})
			http.SetCookie(w, &http.Cookie{Name: "b", Value: "2", Expires: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)})
			w.Header().Add("X-Multi", "x")
			w.Header().Add("X-Multi", "y")
			w.Header()["X-Bad"] = []string{"ok", "no\r\nInjected: 1"}
			switch path.Base(r.URL.Path) {
			case "nobody":
				w.WriteHeader(http.StatusNoContent)
			case "flush":
				io.WriteString(w, "part")
				w.(http.Flusher).Flush()
				io.WriteString(w, "rest")
			default:
				io.WriteString(w, "ok")
			}
		}))).SetAco(aco)
	}
	for _, mode := range []string{"go", "aco"} {
		for _, what := range []string{"plain", "nobody", "flush"} {
			for i := 0; i < 3; i++ { // (an aco rule's later requests take other paths)
				resp, err := http.Get(url + b + mode + "/" + what)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("%s/%s: body: %v", mode, what, err)
				}
				var got []string
				for _, c := range resp.Cookies() {
					got = append(got, c.Name+"="+c.Value)
				}
				if strings.Join(got, " ") != "a=1 b=2" {
					t.Errorf("%s/%s #%d: cookies %q (Set-Cookie %q)", mode, what, i, got, resp.Header["Set-Cookie"])
				}
				if h := resp.Header; strings.Join(h["X-Multi"], "|") != "x|y" || strings.Join(h["X-Bad"], "|") != "ok" ||
					h.Get("Injected") != "" {
					t.Errorf("%s/%s #%d: head %v", mode, what, i, h)
				}
				want := map[string]string{"plain": "ok", "nobody": "", "flush": "partrest"}[what]
				if string(body) != want {
					t.Errorf("%s/%s #%d: body %q, want %q", mode, what, i, body, want)
				}
			}
		}
	}
}

// A handler's 1xx status is not sent as its final one: it went out as a
// body-less 1xx, which the client takes for an interim answer, and the
// client then read the next pipelined request's response as this one's.
// RestResponse.Status refuses it with an error naming the call (the
// handler's error is then a 500); WriteHeader ignores it, 101 too (as it
// does the other 1xx: Hijack is not supported), and the response goes
// on as 200.
func TestHostileInformationalStatus(t *testing.T) {
	url := restServer(t, 2)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	var mu sync.Mutex
	var errs []string
	for _, aco := range []bool{false, true} {
		mode := map[bool]string{false: "go", true: "aco"}[aco]
		mustRule(t)(NewRule("GET", b, "^"+mode+"/st/(\\d+)$", func(rc *RestClosure) error {
			res := rc.Response()
			c, _ := strconv.Atoi(rc.Pats()[0])
			if err := res.Status(c, ""); err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
				return err
			}
			res.WriteString("st")
			return res.End()
		})).SetAco(aco)
		mustRule(t)(HandleHTTP("GET", b, "^"+mode+"/wh/(\\d+)$", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := strconv.Atoi(path.Base(r.URL.Path))
			w.WriteHeader(c)
			io.WriteString(w, "wh")
		}))).SetAco(aco)
	}
	for _, mode := range []string{"go", "aco"} {
		for _, p := range []string{"st/100", "st/101", "st/150", "st/199", "wh/101", "wh/103", "wh/150"} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			// the request, then one whose response must not be taken for its
			fmt.Fprintf(c, "GET %s%s/%s HTTP/1.1\r\nHost: x\r\n\r\n"+
				"GET %s%s/wh/200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b, mode, p, b, mode)
			br := bufio.NewReader(c)
			var got []string
			for i := 0; i < 2; i++ {
				resp, err := http.ReadResponse(br, nil) // (a 1xx comes back as one: a client would wait on past it)
				if err != nil {
					t.Fatalf("%s/%s: response %d: %v", mode, p, i, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("%s/%s: response %d: body: %v", mode, p, i, err)
				}
				got = append(got, fmt.Sprintf("%d %s", resp.StatusCode, body))
				if resp.Close {
					break // (a failed handler's 500 may close the connection)
				}
			}
			c.Close()
			want := []string{"200 wh", "200 wh"}
			if strings.HasPrefix(p, "st/") {
				want[0] = "500 Internal Server Error\n"
				if len(got) == 1 {
					want = want[:1]
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s/%s: responses %q, want %q", mode, p, got, want)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 8 {
		t.Fatalf("Status errors: %q", errs)
	}
	for _, e := range errs {
		if !strings.Contains(e, "RestResponse.Status") || !strings.Contains(e, "not a final status") {
			t.Errorf("Status error %q", e)
		}
	}
}

// A NUL byte in a rule's method, base or expression is refused: C took
// the strings up to it, so NewRule("GET", b, "^e\x00$", h) served every
// path starting with e, and a method or base was cut short as silently.
func TestHostileRuleNUL(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	h := func(rc *RestClosure) error { rc.Response().WriteString("matched"); return nil }
	for _, c := range [][3]string{{"GET", b + "\x00x/", "^a$"}, {"GET", b, "^e\x00$"},
		{"GET\x00POST", b, "^m$"}} {
		if r, err := NewRule(c[0], c[1], c[2], h); err == nil {
			r.Close()
			t.Errorf("NewRule%q: taken", c)
		} else if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "NewRule") {
			t.Errorf("NewRule%q: %v", c, err)
		}
		if r, err := HandleHTTP(c[0], c[1], c[2], http.NotFoundHandler()); err == nil {
			r.Close()
			t.Errorf("HandleHTTP%q: taken", c)
		} else if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "HandleHTTP") {
			t.Errorf("HandleHTTP%q: %v", c, err)
		}
	}
	for _, p := range []string{"a", "e", "eanything/else", "m"} {
		if code, _, body := get(t, url+b+p); code != http.StatusNotFound {
			t.Errorf("%s: %d %q, want 404", p, code, body)
		}
	}
}

// CR or LF bytes (up to four) after a request's body, before the next
// request line, are ignored (RFC 9112 2.2: old clients end a POST's body
// with an extra CRLF; net/http ignores them after a POST): the request
// behind them got a 400 and the connection closed.  After a request
// without a body they are still a bad request line, as in net/http.
func TestHostileCRLFAfterPost(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	mustRule(t)(HandleHTTP("POST", b, "^p$", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "post %s", body)
	})))
	mustRule(t)(HandleHTTP("GET", b, "^g$", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "get")
	})))
	post := "POST " + b + "p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
	chunked := "POST " + b + "p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	get := "GET " + b + "g HTTP/1.1\r\nHost: x\r\n\r\n"
	last := "GET " + b + "g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	for _, c := range []struct {
		name  string
		parts []string // written one after the other, each after the answers so far
		want  string
	}{
		{"post crlf get", []string{post + "\r\n" + last}, "200 post abc|200 get"},
		{"post lf get", []string{post + "\n" + last}, "200 post abc|200 get"},
		{"chunked crlf crlf get", []string{chunked + "\r\n\r\n" + last}, "200 post abc|200 get"},
		{"post, later crlf get", []string{post, "\r\n", last}, "200 post abc|200 get"},
		{"post, later cr, lf get", []string{post, "\r", "\n" + get, last}, "200 post abc|200 get|200 get"},
		{"post crlf x3 get", []string{post + "\r\n\r\n\r\n" + last}, "200 post abc|400 Bad Request\n"},
		{"get crlf get", []string{get + "\r\n" + last}, "200 get|400 Bad Request\n"},
		{"post get crlf get", []string{post + get + "\r\n" + last}, "200 post abc|200 get|400 Bad Request\n"},
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		var got []string
		read := func() bool {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return false
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got = append(got, fmt.Sprintf("%d %s", resp.StatusCode, body))
			return !resp.Close
		}
		for i, p := range c.parts {
			io.WriteString(conn, p)
			if i < len(c.parts)-1 && strings.HasPrefix(p, "POST") {
				read() // answered before the rest is sent
			}
		}
		for read() {
		}
		conn.Close()
		if g := strings.Join(got, "|"); g != c.want {
			t.Errorf("%s: %q, want %q", c.name, g, c.want)
		}
	}
}

// An aco rule's request body read (or Flush) from another goroutine
// while the handler waits for it is a misuse: it panics with a
// MisuseError naming the call, and the request is left as it was, so
// the handler can still answer.  The panic came from the Park after the
// read had been submitted to C: the handler recovered and answered, but
// the response never went out (the client waited until the idle
// timeout).
func TestHostileAcoBodyFromGoroutine(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	other := func(f func()) string {
		done := make(chan string)
		go func() {
			defer func() {
				var me *MisuseError
				if p := recover(); p == nil {
					done <- "no panic"
				} else if err, ok := p.(error); ok && errors.As(err, &me) {
					done <- me.Op
				} else {
					done <- fmt.Sprint("panic: ", p)
				}
			}()
			f()
		}()
		return <-done // (blocks the loop: this test's handler only)
	}
	mustRule(t)(HandleHTTP("POST", b, "^h$", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := other(func() { io.ReadAll(r.Body) })
		op2 := other(func() { w.(http.Flusher).Flush() })
		body, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s|%s|%d %v", op, op2, len(body), err)
	}))).SetAco(true)
	mustRule(t)(NewRule("POST", b, "^r$", func(rc *RestClosure) error {
		op := other(func() { io.ReadAll(rc.Request().Body) })
		body, err := io.ReadAll(rc.Request().Body)
		fmt.Fprintf(rc.Response(), "%s|%d %v", op, len(body), err)
		return rc.Response().End()
	})).SetAco(true)
	for _, c := range []struct{ path, want string }{
		{"h", "http.Request.Body.Read|ResponseWriter.Flush|100000 <nil>"},
		{"r", "RestRequest.Body.Read|100000 <nil>"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "POST", url+b+c.path, bytes.NewReader(make([]byte, 100000)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("%s: %v", c.path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if err != nil || string(body) != c.want {
			t.Errorf("%s: %q %v, want %q", c.path, body, err, c.want)
		}
	}
}

// A head whose lines end in bare CRs (no LF, so it never ends) gets 400
// and a close as soon as the byte after the first bare CR is in, not the
// header timeout's 408; sent whole and a byte at a time.
func TestHostileBareCRHead(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	b := hostileRules(t, true)
	req := "GET " + b + "fast HTTP/1.1\rHost: x\r\r"
	for _, bytewise := range []bool{false, true} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		if bytewise {
			for i := 0; i < len(req); i++ {
				if _, err := io.WriteString(c, req[i:i+1]); err != nil {
					break // (the server may close once it has answered)
				}
			}
		} else {
			io.WriteString(c, req)
		}
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("bytewise %v: %v", bytewise, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Fatalf("bytewise %v: status %d, want 400", bytewise, res.StatusCode)
		}
		if n, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("bytewise %v: after the response: %v %v, want EOF", bytewise, n, err)
		}
		c.Close()
	}
}
