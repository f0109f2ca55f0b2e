package eventer

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Each misuse runs in a child process without recovering: the child must
// die with the MisuseError's message, naming the rule, instead of the Go
// runtime's fatal error or a corrupted stack.  In-process, the same panics
// are recovered and checked for their type.
var misuseCases = map[string]string{
	"misuse other goroutine":   "rule 1: not from another goroutine",
	"misuse not current":       "not on a coroutine that is not the current one",
	"misuse in callback":       "never inside a callback (rule 2)",
	"misuse ended":             "the coroutine has ended",
	"misuse lock then sleep":   "no runtime.LockOSThread or UnlockOSThread of its own",
	"misuse unlock then sleep": "no runtime.LockOSThread or UnlockOSThread of its own",
	"misuse lock at end":       "no runtime.LockOSThread or UnlockOSThread of its own",
	"misuse aco other loop":    "no coroutine of the AcoEvent's loop (rule 1)",
}

func init() {
	// a plain goroutine calls a blocking method of a parked coroutine
	registerChild("misuse other goroutine", func() {
		got := make(chan *Co)
		AcoStart(func(co *Co) {
			got <- co
			co.Sleep(time.Hour)
		}, nil)
		co := <-got
		co.Sleep(time.Millisecond)
	})
	// coroutine A blocks on coroutine B's behalf
	registerChild("misuse not current", func() {
		got := make(chan *Co, 1)
		AcoStart(func(co *Co) {
			got <- co
			co.Sleep(time.Hour)
		}, nil)
		other := <-got
		AcoStart(func(co *Co) { other.Sleep(time.Millisecond) }, nil)
		time.Sleep(5 * time.Second) // the panic ends the process first
	})
	// a Go callback the loop runs blocks a coroutine
	registerChild("misuse in callback", func() {
		got := make(chan *Co, 1)
		AcoStart(func(co *Co) {
			got <- co
			co.Sleep(time.Hour)
		}, nil)
		co := <-got
		AddIn(time.Millisecond, func(*Event, Mask, time.Time) Mask {
			co.Sleep(time.Millisecond)
			return 0
		})
		time.Sleep(5 * time.Second)
	})
	// a coroutine that has ended is used again
	registerChild("misuse ended", func() {
		got := make(chan *Co, 1)
		c, _ := AcoStart(func(co *Co) { got <- co }, nil)
		<-c.Done()
		co := <-got
		AcoStart(func(*Co) { co.Sleep(time.Millisecond) }, nil)
		time.Sleep(5 * time.Second)
	})
	// an extra LockOSThread, then a blocking call: the runtime died with
	// "coro: OS thread locking must match locking at coroutine creation"
	registerChild("misuse lock then sleep", func() {
		AcoStart(func(co *Co) {
			runtime.LockOSThread()
			co.Sleep(time.Millisecond)
		}, nil)
		time.Sleep(5 * time.Second)
	})
	registerChild("misuse unlock then sleep", func() {
		AcoStart(func(co *Co) {
			runtime.UnlockOSThread()
			co.Sleep(time.Millisecond)
		}, nil)
		time.Sleep(5 * time.Second)
	})
	// returning with an extra lock switches back as well
	registerChild("misuse lock at end", func() {
		AcoStart(func(co *Co) {
			co.Sleep(time.Millisecond)
			runtime.LockOSThread()
		}, nil)
		time.Sleep(5 * time.Second)
	})
	// an AcoEvent used by a plain goroutine
	registerChild("misuse aco other loop", func() {
		got := make(chan *AcoEvent)
		AcoStart(func(co *Co) {
			a, b, _ := pairFds()
			_ = b
			ev, _ := FdEvent(a)
			ae, _ := co.SetEventerAco(ev)
			got <- ae
			co.Park(0)
		}, nil)
		ae := <-got
		ae.Read(make([]byte, 4), time.Millisecond)
	})
}

func TestMisuseInChildProcess(t *testing.T) {
	for name, want := range misuseCases {
		t.Run(name, func(t *testing.T) {
			out, code := runChild(t, name)
			if code != 2 {
				t.Fatalf("child did not panic (exit %d):\n%s", code, out)
			}
			mustContain(t, out, "eventer: misuse:", want)
			if strings.Contains(out, "fatal error:") {
				t.Fatalf("the runtime died before our check:\n%s", out)
			}
		})
	}
}

// recovered runs fn and returns the *MisuseError it panicked with.
func recovered(t *testing.T, fn func()) (me *MisuseError) {
	t.Helper()
	defer func() {
		r := recover()
		var ok bool
		if me, ok = r.(*MisuseError); !ok {
			t.Fatalf("recovered %T %v, want *MisuseError", r, r)
		}
	}()
	fn()
	return nil
}

// The panics are recoverable *MisuseErrors.
func TestMisuseRecoverable(t *testing.T) {
	setup(t, 1)
	ready := make(chan *Co)
	co := start(t, 0, func(c *Co) {
		ready <- c
		c.Sleep(10 * time.Second)
	})
	<-ready
	defer co.Cancel()
	me := recovered(t, func() { co.Sleep(time.Millisecond) }) // from the test goroutine
	if me.Op != "Co.Sleep" || !strings.Contains(me.Error(), "rule 1") {
		t.Fatalf("unexpected %v", me)
	}
}

// A coroutine that recovers from the thread-lock misuse goes on: its extra
// lock (or missing one) was undone before the panic, so the runtime's
// check at the next switch passes.
func TestThreadLockMisuseRecovered(t *testing.T) {
	setup(t, 1)
	for _, name := range []string{"lock", "unlock"} {
		t.Run(name, func(t *testing.T) {
			err := inCo(t, 0, func(co *Co) error {
				me := recovered(t, func() {
					if name == "lock" {
						runtime.LockOSThread()
						runtime.LockOSThread()
					} else {
						runtime.UnlockOSThread()
					}
					co.Sleep(time.Millisecond)
				})
				if !strings.Contains(me.Rule, "LockOSThread") {
					t.Errorf("rule %q", me.Rule)
				}
				// it blocks again, normally
				if err := co.Sleep(time.Millisecond); err != nil {
					return err
				}
				return co.Yield()
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	// the loop still works
	if err := inCo(t, 0, func(co *Co) error { return co.Sleep(time.Millisecond) }); err != nil {
		t.Fatal(err)
	}
}
