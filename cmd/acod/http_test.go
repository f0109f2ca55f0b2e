package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acoeventer/eventer"
)

// httpAddr reads acod's next listening lines up to the HTTP listener's
// and returns its address.
func (s *server) httpAddr(t *testing.T) string {
	t.Helper()
	for {
		line, err := s.out.ReadString('\n')
		if err != nil {
			t.Fatalf("no HTTP listening line: %v", err)
		}
		const p, q = "acod: listening on ", " (http_rest_api)\n"
		if strings.HasPrefix(line, p) && strings.HasSuffix(line, q) {
			return strings.TrimSuffix(strings.TrimPrefix(line, p), q)
		}
	}
}

// freeAddr is a 127.0.0.1 address nothing listens on now, with a port
// it (or writeConf) has not given before in this process: the kernel may
// give a just-closed probe's port to the next probe.  Nothing holds it:
// start acod on it with startServerFree.
func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

var freePorts = struct {
	sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

func freePort(t *testing.T) int {
	t.Helper()
	freePorts.Lock()
	defer freePorts.Unlock()
	for tries := 0; ; tries++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !freePorts.given[port] || tries >= 1000 {
			freePorts.given[port] = true
			return port
		}
	}
}

var client = &http.Client{Timeout: 20 * time.Second}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	res, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return res, string(b)
}

func getStats(t *testing.T, base string) eventer.Stats {
	t.Helper()
	return getStatsWith(t, client, base)
}

func getStatsWith(t *testing.T, c *http.Client, base string) eventer.Stats {
	t.Helper()
	res, err := c.Get(base + "/stats.json")
	if err != nil {
		t.Fatalf("GET /stats.json: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("GET /stats.json: body: %v", err)
	}
	body := string(b)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/stats.json: %d %s: %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	var st eventer.Stats
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/stats.json: %v: %s", err, body)
	}
	return st
}

func sumCo(st eventer.Stats) (c, g int64) {
	for _, l := range st.Loops {
		c += l.CCoroutines
		g += l.GoCoroutines
	}
	return c, g
}

// GET /hello is the seed's handler: 200 text/plain "Hello world.\n" after
// at least a second, while other requests (/stats.json) are answered.
// /stats.json's figures are the library's: the loops -loops asks for, the
// listeners with their addresses, coroutines and connections that move
// as clients come and go.
func TestHTTPHelloAndStats(t *testing.T) {
	s := startServerFree(t, func() []string {
		return []string{"-addr", "127.0.0.1:0", "-http", freeAddr(t), "-loops", "2"}
	})
	base := "http://" + s.httpAddr(t)

	st := getStats(t, base)
	if len(st.Loops) != 2 || st.Loops[0].Name == "" {
		t.Fatalf("loops: %+v, -loops 2", st.Loops)
	}
	types := map[string]string{}
	for _, l := range st.Listeners {
		types[l.Type] = l.Address
	}
	if types[""] != s.addr || len(st.Listeners) != 2 || "http://"+types["http_rest_api"] != base {
		t.Fatalf("listeners %+v; the protocol (-addr, ListenAco: no type) on %s, HTTP on %s", st.Listeners, s.addr, base)
	}
	if len(st.JobQueues) == 0 {
		t.Fatal("no job queue")
	}
	_, go0 := sumCo(st)
	active0 := st.Connections.Active

	// three protocol connections, each a Go coroutine
	for i := 0; i < 3; i++ {
		c, r := dial(t, s.addr)
		io.WriteString(c, "hi\n")
		expectLine(t, r, "thanks!")
	}
	type result struct {
		code  int
		ctype string
		body  string
		took  time.Duration
		err   error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		res, err := client.Get(base + "/hello")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		done <- result{res.StatusCode, res.Header.Get("Content-Type"), string(b), time.Since(start), err}
	}()
	// Snapshots until one shows /hello waiting (its coroutine, its
	// connection, a job thread): a single one 200 ms in came before the
	// request reached its handler on a loaded machine.  Each is answered
	// while /hello still waits.
	busy := func(st eventer.Stats) bool {
		for _, q := range st.JobQueues {
			if q.Concurrency > 0 {
				return true
			}
		}
		return false
	}
	for {
		st = getStats(t, base)
		select {
		case r := <-done:
			t.Fatalf("/hello answered (%+v) before /stats.json showed it waiting: %+v", r, st)
		default:
		}
		c1, go1 := sumCo(st)
		// three protocol connections, each a Go coroutine; the waiting
		// /hello is a coroutine too: a Go one on the direct path (a C
		// relay coroutine too when it takes the relay); 3 protocol and
		// 2 HTTP clients; a job thread while /hello's job sleeps
		if go1 >= go0+3 && c1+go1 >= go0+3+1 && st.Connections.Active >= active0+3+1 &&
			st.Connections.HTTPSessions >= 2 && busy(st) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.code != 200 || r.ctype != "text/plain" || r.body != "Hello world.\n" {
		t.Fatalf("/hello: %d %q %q", r.code, r.ctype, r.body)
	}
	if r.took < time.Second {
		t.Fatalf("/hello after %v: the job sleeps a second", r.took)
	}
	// ten at once: each waits in a coroutine of its own
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		go func() {
			res, err := client.Get(base + "/hello")
			if err == nil {
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 || string(b) != "Hello world.\n" {
					err = &unexpected{res.StatusCode, string(b)}
				}
			}
			errs <- err
		}()
	}
	for i := 0; i < 10; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if res, body := get(t, base+"/nope"); res.StatusCode != 404 {
		t.Fatalf("/nope: %d %q", res.StatusCode, body)
	}
}

type unexpected struct {
	code int
	body string
}

func (u *unexpected) Error() string {
	return "unexpected answer " + http.StatusText(u.code) + " " + u.body
}

// -http: a bad address is named; with -config it is refused (the file's
// listeners serve HTTP).
func TestHTTPFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-http", "nope"}, "-http"},
		{[]string{"-http", "127.0.0.1:99999"}, "1..65535"},
		{[]string{"-http", "localhost:8080"}, "IP address"},
		{[]string{"-config", "x.conf", "-http", "127.0.0.1:1"}, "-config"},
	} {
		cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, tc.args...)...)
		cmd.Env = append(os.Environ(), "ACOD_CHILD=1")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !asExit(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
			t.Fatalf("%v: %v: %s (want %q)", tc.args, err, out, tc.want)
		}
	}
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

// The seed's /hello over HTTPS: acod with a configuration whose
// http_rest_api listener has ssl="on" (a CA and a server certificate made
// by the openssl command here), Go's net/http client over crypto/tls:
// 200 "Hello world.\n" after a second, ALPN http/1.1.
func TestHTTPSHello(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("the openssl command is needed (scripts/deps.sh installs it)")
	}
	dir := t.TempDir()
	run := func(args ...string) {
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=acod test CA")
	run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
	os.WriteFile(filepath.Join(dir, "ext"), []byte("subjectAltName=IP:127.0.0.1\n"), 0o600)
	run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
		"-out", "srv.pem", "-days", "1", "-extfile", "ext")
	var addr string
	conf := filepath.Join(dir, "acod.conf")
	s := startServerFree(t, func() []string {
		addr = freeAddr(t)
		host, port, _ := net.SplitHostPort(addr)
		os.WriteFile(conf, []byte(`<acod>
  <listeners>
    <listener type="acod" address="127.0.0.1" port="`+portOf(t, freeAddr(t))+`"/>
    <listener type="http_rest_api" address="`+host+`" port="`+port+`" ssl="on">
      <sslconfig>
        <certificate_file>`+filepath.Join(dir, "srv.pem")+`</certificate_file>
        <key_file>`+filepath.Join(dir, "srv.key")+`</key_file>
      </sslconfig>
    </listener>
  </listeners>
</acod>
`), 0o600)
		return []string{"-config", conf, "-loops", "2"}
	})
	if got := s.httpAddr(t); got != addr {
		t.Fatalf("HTTPS on %s, the file says %s", got, addr)
	}
	pem, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	defer c.CloseIdleConnections()
	start := time.Now()
	res, err := c.Get("https://" + addr + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	took := time.Since(start)
	if res.StatusCode != 200 || string(b) != "Hello world.\n" || res.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("/hello over HTTPS: %d %q %q", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	if res.TLS == nil || res.TLS.NegotiatedProtocol != "http/1.1" || res.Proto != "HTTP/1.1" {
		t.Fatalf("/hello over HTTPS: %s, TLS %+v", res.Proto, res.TLS)
	}
	if took < time.Second {
		t.Fatalf("/hello over HTTPS after %v: the job sleeps a second", took)
	}
	// the same connection for /stats.json (keep-alive)
	st := getStatsWith(t, c, "https://"+addr)
	for _, l := range st.Listeners {
		if l.Type == "http_rest_api" && l.Accepted != 1 {
			t.Fatalf("two requests on one kept-alive connection: %+v", l)
		}
	}
}

func portOf(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
