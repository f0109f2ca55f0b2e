package eventer

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer/cgo"
)

// Panics never unwind into C: a panic in a coroutine, in a callback the
// loop hands to the driver, or in a callback C calls directly ends the
// program as a goroutine's panic would, with a message that says where.
var crashCases = map[string]struct {
	run  func()
	want []string
}{
	"coroutine panic": {func() {
		AcoStart(func(co *Co) {
			co.Sleep(time.Millisecond)
			panic("boom in a coroutine")
		}, nil)
		time.Sleep(5 * time.Second)
	}, []string{"eventer: panic in coroutine: boom in a coroutine", "coroutine stack:", "panic_test.go"}},
	"callback panic": {func() {
		AddIn(time.Millisecond, func(*Event, Mask, time.Time) Mask { panic("boom in a callback") })
		time.Sleep(5 * time.Second)
	}, []string{"boom in a callback", "panic_test.go"}}, // the panicking frame is in the trace
	"panic in callback called from C": {func() {
		ev := NewFdEvent(0, Read, func(*Event, Mask, time.Time) Mask { panic("boom behind the trampoline") })
		AcoStart(func(co *Co) {
			rv, done := cgo.NewCounter(), cgo.NewCounter()
			cgo.CCallInCoroutine(ev.ptr, rv, done) // C calls it from a C coroutine
			co.Sleep(time.Second)
		}, nil)
		time.Sleep(5 * time.Second)
	}, []string{"eventer: panic in a Go callback called from C: boom behind the trampoline"}},
}

func runCrashCase(name string) bool {
	c, ok := crashCases[name]
	if !ok {
		return false
	}
	if err := Init(WithConcurrency(1)); err != nil {
		panic(err)
	}
	c.run()
	os.Stderr.WriteString("no crash\n")
	os.Exit(0)
	return true
}

func TestPanicsEndTheProgram(t *testing.T) {
	for name, c := range crashCases {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "EVENTER_CRASH="+name)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("child did not panic (exit %v):\n%s", err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Fatalf("child output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "fatal error:") || strings.Contains(string(out), "SIGSEGV") {
				t.Fatalf("the runtime crashed instead of a panic:\n%s", out)
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
		ae := co.SetEventerAco(fdEvent(t, a))
		defer func() { ae.Close(); ae.Free() }()
		_, err := ae.Read(make([]byte, 4), time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
