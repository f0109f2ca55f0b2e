//go:build eventer_testhooks

package eventer

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

// With GOMAXPROCS 1 a HandleHTTP request is served while the loop is
// otherwise idle: its driver, instead of waiting in epoll_wait inside a
// cgo call (which keeps the only P from the handler's goroutine until
// sysmon takes it back), sleeps in Go while goroutines serve requests of
// its loop.  At rest it waits in C again: no polls without a wait.
func TestHandleHTTPDriverSleepsInGo(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	url := restServer(t, 1)
	b := restBase()
	mustRule(t)(HandleHTTP("GET", b, "^x$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })))
	drv := loopAt(0).drv
	_, sleeps0 := drv.SleepStats()
	for i := 0; i < 20; i++ {
		if st, _, body := get(t, url+b+"x"); st != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, st, body)
		}
	}
	if _, sleeps := drv.SleepStats(); sleeps == sleeps0 {
		t.Errorf("the driver never slept in Go while goroutines served its requests")
	}
	if n := drv.GoWork().Load(); n != 0 {
		t.Errorf("%d requests still counted as Go work after their responses", n)
	}
	// requests with a body (served through the relay, which C starts
	// inside the driver's cgo call) are Go work too
	mustRule(t)(HandleHTTP("POST", b, "^echo$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })))
	_, sleeps1 := drv.SleepStats()
	for i := 0; i < 10; i++ {
		res, err := http.Post(url+b+"echo", "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(got) != "body" {
			t.Fatalf("POST %d: %d %q", i, res.StatusCode, got)
		}
	}
	if _, sleeps := drv.SleepStats(); sleeps == sleeps1 {
		t.Errorf("the driver never slept in Go while goroutines served requests with a body")
	}
	// (the relay's request is forgotten after its response went out: a
	// moment later on a busy machine)
	waitFor(t, "the requests with a body to stop counting as Go work", func() bool {
		return drv.GoWork().Load() == 0
	})
	// at rest: once the last response went out, the driver blocks in C.
	// A window of 300 ms without a poll that did not wait, in five: a
	// loaded machine may still finish the last requests' work in the
	// first; a driver that polls at rest does so in every one.
	var moved []uint64
	for try := 0; try < 5; try++ {
		time.Sleep(50 * time.Millisecond)
		polls0, _ := drv.SleepStats()
		time.Sleep(300 * time.Millisecond)
		polls, _ := drv.SleepStats()
		if polls == polls0 {
			moved = nil
			break
		}
		moved = append(moved, polls-polls0)
	}
	if moved != nil {
		t.Errorf("at rest the driver polled without waiting in every 300 ms window: %v times", moved)
	}
}

// While a handler's goroutine blocks (so the driver sleeps in Go, one P),
// the loop goes on: other requests, a Go coroutine's sleep, a timer.
func TestHandleHTTPBlockedHandlerGOMAXPROCS1(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	url := restServer(t, 1)
	b := restBase()
	release := make(chan struct{})
	mustRule(t)(HandleHTTP("GET", b, "^block$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			<-release
			fmt.Fprint(w, "released")
		})))
	mustRule(t)(HandleHTTP("GET", b, "^fast$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "fast") })))
	aco := mustRule(t)(NewRule("GET", b, "^sleep$", func(rc *RestClosure) error {
		if err := rc.Co().Sleep(100 * time.Millisecond); err != nil {
			return err
		}
		_, err := rc.Response().WriteString("slept")
		return err
	}))
	aco.SetAco(true)
	blocked := make(chan string, 1)
	go func() { _, _, body := get(t, url+b+"block"); blocked <- body }()
	drv := loopAt(0).drv
	for deadline := time.Now().Add(10 * time.Second); drv.GoWork().Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the blocking request never reached its handler")
		}
		time.Sleep(time.Millisecond)
	}
	fired := make(chan struct{})
	if _, err := AddIn(50*time.Millisecond, func(*Event, Mask, time.Time) Mask {
		close(fired)
		return 0
	}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if st, _, body := get(t, url+b+"fast"); st != 200 || body != "fast" {
			t.Fatalf("fast %d: %d %q", i, st, body)
		}
	}
	if st, _, body := get(t, url+b+"sleep"); st != 200 || body != "slept" {
		t.Fatalf("sleep: %d %q", st, body)
	}
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop's timer did not fire while the driver slept in Go")
	}
	select {
	case body := <-blocked:
		t.Fatalf("the blocked handler answered before its release: %q", body)
	default:
	}
	// a blocked handler alone does not make the driver wake again and
	// again (its watch looks at the client every 100 ms: a few wake-ups).
	// The bound is a rate (15 in 300 ms) over the time that really
	// passed: on a loaded machine the test's 300 ms sleep may last much
	// longer, and the watch's wake-ups with it.
	_, s0 := drv.SleepStats()
	t0 := time.Now()
	time.Sleep(300 * time.Millisecond)
	_, s1 := drv.SleepStats()
	if took := time.Since(t0); s1-s0 > uint64(15*took/(300*time.Millisecond)) {
		t.Errorf("the driver slept %d times in %v while a handler blocked (15 per 300 ms allowed)", s1-s0, took)
	}
	close(release)
	if body := <-blocked; body != "released" {
		t.Fatalf("block: %q", body)
	}
}

// A handler that only sets header fields (and a status with no body) has
// them sent, as net/http does: before, the fields set without a Write or
// WriteHeader were dropped.  Its map is reused afterwards: the next
// request's handler starts with an empty one.
func TestHandleHTTPHeaderOnly(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	mustRule(t)(HandleHTTP("GET", b, "^set$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			if n := len(w.Header()); n != 0 {
				t.Errorf("a handler's header map starts with %d fields", n)
			}
			w.Header().Set("X-Only", "yes")
		})))
	for i := 0; i < 3; i++ {
		st, h, body := get(t, url+b+"set")
		if st != 200 || h.Get("X-Only") != "yes" || body != "" {
			t.Fatalf("request %d: %d %q %q", i, st, h.Get("X-Only"), body)
		}
	}
}

// The request's URL is what url.ParseRequestURI makes of the target,
// whether or not the path is one taken as it is (plainPath).
func TestHandleHTTPRequestURL(t *testing.T) {
	url := restServer(t, 1)
	b := restBase()
	got := make(chan string, 1)
	mustRule(t)(HandleHTTP("GET", b, ".*", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			got <- fmt.Sprintf("%q %q %q %q %q", r.URL.Path, r.URL.RawPath, r.URL.RawQuery,
				r.RequestURI, r.RemoteAddr[:10])
		})))
	for _, target := range []string{"a", "a/b.c", "a;b=c,d", "a%2Fb", "a%20b", "a!b", "a*b(c)",
		"a'b", "x?q=1&r=%20", "~u$v&w+x@y:z", "%7e"} {
		if st, _, _ := get(t, url+b+target); st != 200 {
			t.Fatalf("%s: %d", target, st)
		}
		u, err := neturl.ParseRequestURI(b + target)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%q %q %q %q %q", u.Path, u.RawPath, u.RawQuery, b+target, "127.0.0.1:")
		if g := <-got; g != want {
			t.Errorf("%s: got %s, want %s", target, g, want)
		}
	}
	for c := 0; c < 256; c++ {
		p := "/a" + string(rune(c)) + "b"
		if c >= 0x80 {
			p = "/a" + string([]byte{byte(c)}) + "b"
		}
		if !plainPath(p) {
			continue
		}
		u, err := neturl.ParseRequestURI(p)
		if err != nil || u.Path != p || u.RawPath != "" {
			t.Errorf("plainPath(%q), but ParseRequestURI: %v %q %q", p, err, u.Path, u.RawPath)
		}
	}
}

// BenchmarkHandleHTTP: keep-alive GETs, one at a time, through
// HandleHTTP; allocations are the whole process's per request (the client
// is a raw socket with fixed buffers).
//
//	go test -tags eventer_testhooks -run '^$' -bench HandleHTTP -benchmem .
func BenchmarkHandleHTTP(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	setup(b, 1)
	if err := RestInit(); err != nil {
		b.Fatal(err)
	}
	l, port, err := cgo.TestListen("http_rest_api")
	if err != nil {
		b.Fatal(err)
	}
	defer cgo.TestListenerStop(l, 100)
	base := restBase()
	if _, err := HandleHTTP("GET", base, "^hello$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("Hello world.\n"))
		})); err != nil {
		b.Fatal(err)
	}
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET " + base + "hello HTTP/1.1\r\nHost: x\r\nUser-Agent: bench\r\n\r\n")
	buf := make([]byte, 4096)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		n := 0
		for !bytes.HasSuffix(buf[:n], []byte("Hello world.\n")) {
			m, err := c.Read(buf[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += m
		}
	}
	for i := 0; i < 100; i++ {
		roundTrip()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		roundTrip()
	}
}
