//go:build eventer_testhooks

package eventer

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
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
	pki := newHTTPSPKI(t)
	port := freePort(t)
	loadConf(t, fmt.Sprintf(`<app>
  <listeners>
    <listener type="http_rest_api" address="127.0.0.1" port="%d" ssl="on">
      <sslconfig>
        <certificate_file>%s</certificate_file>
        <key_file>%s</key_file>
      </sslconfig>
    </listener>
  </listeners>
</app>
`, port, pki.certFile, pki.keyF))
	setup(t, 1)
	if err := RestInit(); err != nil {
		t.Fatal(err)
	}
	b := fmt.Sprintf("/https%d/", httpsRuns.Add(1))
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
	if err := ListenerInit("app"); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cache := tls.NewLRUClientSessionCache(4)
	cfg := &tls.Config{RootCAs: pki.pool, ClientSessionCache: cache, ServerName: "127.0.0.1",
		MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}}
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return c
	}

	// 1: read nothing but the ticket, then resume with it
	c := dial()
	if c.ConnectionState().DidResume {
		t.Fatal("the first connection resumed")
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	var one [1]byte
	if n, err := c.Read(one[:]); n != 0 || err == nil {
		t.Fatalf("a read with nothing asked: %d %v", n, err)
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
// stands; the sleeping one holds neither the responses before it nor the
// order after it.
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
	mustRule(t)(NewRule("GET", b, "^sleep$", func(rc *RestClosure) error {
		if err := rc.Co().Sleep(150 * time.Millisecond); err != nil {
			return err
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
	start := time.Now()
	var firstAt time.Duration
	pipeline(t, c, reqs, func(i int, res *http.Response, body string) {
		if i == 0 {
			firstAt = time.Since(start)
		}
		if res.StatusCode != 200 || body != want[i] {
			t.Fatalf("response %d: %d %q, want 200 %q", i, res.StatusCode, body, want[i])
		}
	})
	if gap := time.Since(start) - firstAt; gap < 250*time.Millisecond {
		t.Fatalf("the first response came %v before the last (two 150 ms sleeps after it): it waited for a sleeper", gap)
	}
}
