//go:build eventer_testhooks

package eventer

import (
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"
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
	// at rest: once the last response went out, the driver blocks in C
	time.Sleep(50 * time.Millisecond)
	polls0, _ := drv.SleepStats()
	time.Sleep(300 * time.Millisecond)
	if polls, _ := drv.SleepStats(); polls != polls0 {
		t.Errorf("at rest the driver polled %d times without waiting", polls-polls0)
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
	close(release)
	if body := <-blocked; body != "released" {
		t.Fatalf("block: %q", body)
	}
}
