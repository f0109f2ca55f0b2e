package eventer

import (
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Panics never unwind into C: a panic in a coroutine, in a callback the
// loop hands to the driver, or in asynch work ends the program as a
// goroutine's panic would, with a message that says where.
var crashCases = map[string][]string{
	"crash coroutine": {"eventer: panic in coroutine: boom in a coroutine", "coroutine stack:", "panic_test.go"},
	"crash callback":  {"boom in a callback", "panic_test.go"}, // the panicking frame is in the trace
	"crash asynch":    {"boom in asynch work", "panic_test.go"},
}

func init() {
	registerChild("crash coroutine", func() {
		AcoStart(func(co *Co) {
			co.Sleep(time.Millisecond)
			panic("boom in a coroutine")
		}, nil)
		time.Sleep(5 * time.Second)
	})
	registerChild("crash callback", func() {
		AddIn(time.Millisecond, func(*Event, Mask, time.Time) Mask { panic("boom in a callback") })
		time.Sleep(5 * time.Second)
	})
	// the coroutine waiting for the work must never see it succeed (it
	// was resumed with a nil error before the process died)
	registerChild("crash asynch", func() {
		AcoStart(func(co *Co) {
			err := co.SimpleAsynch(func() {
				time.Sleep(10 * time.Millisecond)
				panic("boom in asynch work")
			})
			println("COROUTINE RESUMED:", err == nil)
		}, nil)
		time.Sleep(5 * time.Second)
	})
}

func TestPanicsEndTheProgram(t *testing.T) {
	for name, want := range crashCases {
		t.Run(name, func(t *testing.T) {
			out, code := runChild(t, name)
			if code != 2 {
				t.Fatalf("child did not panic (exit %d):\n%s", code, out)
			}
			mustContain(t, out, want...)
			if strings.Contains(out, "fatal error:") || strings.Contains(out, "SIGSEGV") {
				t.Fatalf("the runtime crashed instead of a panic:\n%s", out)
			}
			if strings.Contains(out, "COROUTINE RESUMED") {
				t.Fatalf("the coroutine was resumed after its work panicked:\n%s", out)
			}
		})
	}
}

// runtime.Goexit in a coroutine (t.FailNow's way out) can't be stopped;
// the coroutine is abandoned and the error reported; the loop goes on.
func TestGoexitInCoroutineIsReported(t *testing.T) {
	reported := make(chan error, 1)
	setup(t, 1, WithErrorHandler(func(err error) { reported <- err }))
	var after atomic.Bool
	AcoStart(func(co *Co) {
		defer func() { after.Store(true) }() // defers run, as for Goexit
		co.Sleep(time.Millisecond)
		runtime.Goexit()
	}, nil)
	select {
	case err := <-reported:
		if !strings.Contains(err.Error(), "runtime.Goexit") {
			t.Fatalf("reported %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Goexit not reported")
	}
	if !after.Load() {
		t.Fatal("the coroutine's defers did not run")
	}
	// the loop still works
	if err := inCo(t, 0, func(co *Co) error { return co.Sleep(time.Millisecond) }); err != nil {
		t.Fatal(err)
	}
}

// runtime.Goexit in a Go callback the driver runs ends the driver
// goroutine; the loop goes on driven from its deferred call, the error is
// reported, and Shutdown still completes (setup's cleanup).
func TestGoexitInCallbackIsReported(t *testing.T) {
	reported := make(chan error, 1)
	setup(t, 1, WithErrorHandler(func(err error) { reported <- err }))
	AddIn(time.Millisecond, func(*Event, Mask, time.Time) Mask {
		runtime.Goexit()
		return 0
	})
	select {
	case err := <-reported:
		if !strings.Contains(err.Error(), "runtime.Goexit") {
			t.Fatalf("reported %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Goexit not reported")
	}
	// the loop still works: timers, fd events, coroutines
	fired := make(chan struct{})
	AddIn(time.Millisecond, func(*Event, Mask, time.Time) Mask { close(fired); return 0 })
	<-fired
	a, b := socketpair(t)
	defer unix.Close(b)
	AddIn(5*time.Millisecond, func(*Event, Mask, time.Time) Mask { unix.Write(b, []byte("x")); return 0 })
	err := inCo(t, 0, func(co *Co) error {
		ae := acoEvent(t, co, a)
		defer ae.Close()
		_, err := ae.Read(make([]byte, 4), time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
