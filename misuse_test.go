package eventer

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

// Each misuse runs in a child process (the test binary, re-executed with
// EVENTER_MISUSE=<case>) without recovering: the child must die with the
// MisuseError's message, naming the rule, instead of the Go runtime's
// fatal error or a corrupted stack.  In-process, the same panics are
// recovered and checked for their type.
var misuseCases = map[string]struct {
	run  func()
	want string
}{
	"other goroutine": {misuseFromOtherGoroutine, "rule 1: not from another goroutine"},
	"not current":     {misuseNotCurrent, "not on a coroutine that is not the current one"},
	"in callback":     {misuseInCallback, "never inside a callback (rule 2)"},
	"ended":           {misuseEnded, "the coroutine has ended"},
	"from C callback": {misuseFromCCallback, "rule 1"},
}

func TestMain(m *testing.M) {
	if name := os.Getenv("EVENTER_CRASH"); name != "" {
		if !runCrashCase(name) {
			os.Stderr.WriteString("no crash case " + name + "\n")
			os.Exit(3)
		}
	}
	if name := os.Getenv("EVENTER_MISUSE"); name != "" {
		c, ok := misuseCases[name]
		if !ok {
			os.Stderr.WriteString("no misuse case " + name + "\n")
			os.Exit(3)
		}
		if err := Init(WithConcurrency(1)); err != nil {
			panic(err)
		}
		c.run()
		os.Stderr.WriteString("misuse went unnoticed\n")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestMisuseInChildProcess(t *testing.T) {
	for name, c := range misuseCases {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "EVENTER_MISUSE="+name)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("child did not panic (exit %v):\n%s", err, out)
			}
			s := string(out)
			if !strings.Contains(s, "eventer: misuse:") || !strings.Contains(s, c.want) {
				t.Fatalf("child output lacks the misuse message %q:\n%s", c.want, s)
			}
			if strings.Contains(s, "fatal error:") {
				t.Fatalf("the runtime died before our check:\n%s", s)
			}
		})
	}
}

// The panics are recoverable *MisuseErrors.
func TestMisuseRecoverable(t *testing.T) {
	setup(t, 1)
	var co *Co
	ready := make(chan struct{})
	co = AcoStart(func(c *Co) {
		close(ready)
		c.Sleep(10 * time.Second)
	}, nil)
	<-ready
	defer co.Cancel()
	func() {
		defer func() {
			r := recover()
			me, ok := r.(*MisuseError)
			if !ok {
				t.Fatalf("recovered %T %v, want *MisuseError", r, r)
			}
			if me.Op != "Co.Sleep" || !strings.Contains(me.Error(), "rule 1") {
				t.Fatalf("unexpected %v", me)
			}
		}()
		co.Sleep(time.Millisecond) // from the test goroutine
	}()
}

// a plain goroutine calls a blocking method of a parked coroutine
func misuseFromOtherGoroutine() {
	got := make(chan *Co)
	AcoStart(func(co *Co) {
		got <- co
		co.Sleep(time.Hour)
	}, nil)
	co := <-got
	co.Sleep(time.Millisecond)
}

// coroutine A blocks on coroutine B's behalf
func misuseNotCurrent() {
	got := make(chan *Co, 1)
	AcoStart(func(co *Co) {
		got <- co
		co.Sleep(time.Hour)
	}, nil)
	other := <-got
	done := make(chan struct{})
	AcoStart(func(co *Co) {
		defer close(done)
		other.Sleep(time.Millisecond)
	}, nil)
	<-done
	time.Sleep(time.Second) // the panic ends the process first
}

// a Go callback (here: reached from C while the coroutine runs) blocks the
// coroutine
func misuseInCallback() {
	done := make(chan struct{})
	AcoStart(func(co *Co) {
		defer close(done)
		ev := NewFdEvent(0, Read, func(e *Event, m Mask, now time.Time) Mask {
			co.Sleep(time.Millisecond)
			return 0
		})
		cgo.CCallDirect(ev.ptr)
	}, nil)
	<-done
	time.Sleep(time.Second)
}

// a coroutine that has ended is used again
func misuseEnded() {
	got := make(chan *Co, 1)
	c := AcoStart(func(co *Co) { got <- co }, nil)
	<-c.Done()
	co := <-got
	AcoStart(func(*Co) { co.Sleep(time.Millisecond) }, nil)
	time.Sleep(time.Second)
}

// a Go callback that C calls from inside a C coroutine blocks a Go
// coroutine (which is not running then)
func misuseFromCCallback() {
	got := make(chan *Co, 1)
	AcoStart(func(co *Co) {
		got <- co
		co.Sleep(time.Hour)
	}, nil)
	co := <-got
	var called atomic.Bool
	ev := NewFdEvent(0, Read, func(e *Event, m Mask, now time.Time) Mask {
		called.Store(true)
		co.Sleep(time.Millisecond)
		return 0
	})
	rv, done := cgo.NewCounter(), cgo.NewCounter()
	AcoStart(func(c *Co) { cgo.CCallInCoroutine(ev.ptr, rv, done) }, nil)
	time.Sleep(time.Second)
}
