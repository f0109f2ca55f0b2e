//go:build eventer_testhooks

package eventer

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

// Go and C side by side on one loop, with the C scenarios of cgo's test
// hooks (built with the eventer_testhooks tag).

// A Go callback is an ordinary eventer_func_t for C: called directly from
// C (main context) and from inside a C coroutine, where it reaches Go on
// the thread's stack (rule 4).
func TestCallbackCalledFromC(t *testing.T) {
	setup(t, 1)
	var calls atomic.Int32
	ev, err := NewFdEvent(0, Read, func(e *Event, m Mask, now time.Time) Mask {
		calls.Add(1)
		return Read | Write
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	if rv := cgo.CCallDirect(ev.ptr); rv != int(Read|Write) {
		t.Fatalf("direct call returned %d", rv)
	}
	rv, done := cgo.NewCounter(), cgo.NewCounter()
	defer rv.Free()
	defer done.Free()
	// C coroutines must start on a loop thread: from a Go coroutine, which
	// runs there
	if err := inCo(t, 0, func(co *Co) error {
		for i := 0; i < 100; i++ {
			cgo.CCallInCoroutine(ev.ptr, rv, done)
		}
		return co.Sleep(time.Millisecond)
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "C coroutines", func() bool { return done.Load() == 100 })
	if rv.Load() != int(Read|Write) || calls.Load() != 101 {
		t.Fatalf("rv %d, calls %d", rv.Load(), calls.Load())
	}
}

// C and Go callbacks run in one dispatch order: triggered alternately,
// they run alternately (the task phase is FIFO whatever the language).
func TestDispatchOrderCAndGo(t *testing.T) {
	setup(t, 1)
	log := cgo.NewLog()
	defer log.Free()
	err := inCo(t, 0, func(co *Co) error {
		for i := 0; i < 20; i++ {
			if i%2 == 0 {
				cgo.CTriggerLog(log, i)
				continue
			}
			i := i
			ev, err := NewFdEvent(0, Read, func(*Event, Mask, time.Time) Mask {
				log.Append(i)
				return 0 // not registered: the event is done and released
			})
			if err != nil {
				return err
			}
			if err := ev.Trigger(Read); err != nil {
				return err
			}
		}
		return co.Sleep(5 * time.Millisecond) // the next task phase runs them
	})
	if err != nil {
		t.Fatal(err)
	}
	got := log.Tags()
	if len(got) != 20 {
		t.Fatalf("%d callbacks ran: %v", len(got), got)
	}
	for i, tag := range got {
		if tag != i {
			t.Fatalf("dispatch order %v: C and Go callbacks must run in trigger order", got)
		}
	}
}

// A Go coroutine and a C coroutine share channels and semaphores.
func TestSyncBetweenGoAndC(t *testing.T) {
	setup(t, 1)
	done := cgo.NewCounter()
	defer done.Free()
	err := inCo(t, 0, func(co *Co) error {
		in, _ := NewChan(4, 2)
		out, _ := NewChan(4, 2)
		defer in.Close()
		defer out.Close()
		const n = 100
		cgo.CChanRelay(in.o.p, out.o.p, n, done)
		buf := make([]byte, 4)
		for i := 0; i < n; i++ {
			if err := in.Send(co, []byte{byte(i), 1, 2, 3}, time.Second); err != nil {
				return err
			}
			if err := out.Recv(co, buf, time.Second); err != nil {
				return err
			}
			if buf[0] != byte(i+1) || buf[3] != 4 {
				return fmt.Errorf("element %d came back as %v", i, buf)
			}
		}
		s1, _ := NewSem(0)
		s2, _ := NewSem(0)
		defer s1.Close()
		defer s2.Close()
		cgo.CSemRelay(s1.o.p, s2.o.p, n, done)
		for i := 0; i < n; i++ {
			s1.Post()
			if err := s2.Wait(co, time.Second); err != nil {
				return err
			}
		}
		for done.Load() < 2 {
			co.Yield()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if done.Load() != 2 {
		t.Fatalf("C side counter %d", done.Load())
	}
}

// The slog level of a C log line is its stream's (an "err" in the stream
// name made "stderr" lines errors).
func TestCLogLevels(t *testing.T) {
	h := &captureHandler{}
	setup(t, 1, WithLogger(slog.New(h)))
	cgo.SetLogStream("debug", true)
	defer cgo.SetLogStream("debug", false)
	want := map[string]slog.Level{
		"error": slog.LevelError, "error/eventer": slog.LevelError,
		"stderr": slog.LevelWarn, "notice": slog.LevelInfo, "debug": slog.LevelDebug,
	}
	for stream := range want {
		if !cgo.CLog(stream, "line for "+stream) {
			t.Fatalf("no stream %q", stream)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for stream, level := range want {
		found := false
		for _, r := range h.recs {
			if r.Message == "line for "+stream {
				found = true
				if r.Level != level {
					t.Errorf("stream %q logged at %v, want %v", stream, r.Level, level)
				}
			}
		}
		if !found {
			t.Errorf("no record for stream %q", stream)
		}
	}
}

func init() {
	misuseCases["misuse from C callback"] = "rule 1"
	// a Go callback that C code calls from inside a C coroutine blocks a
	// Go coroutine that is not running then
	registerChild("misuse from C callback", func() {
		got := make(chan *Co, 1)
		AcoStart(func(co *Co) {
			got <- co
			co.Sleep(time.Hour)
		}, nil)
		co := <-got
		ev, _ := NewFdEvent(0, Read, func(e *Event, m Mask, now time.Time) Mask {
			co.Sleep(time.Millisecond)
			return 0
		})
		rv, done := cgo.NewCounter(), cgo.NewCounter()
		AcoStart(func(c *Co) { cgo.CCallInCoroutine(ev.ptr, rv, done) }, nil)
		time.Sleep(5 * time.Second)
	})
	misuseCases["misuse in callback called from C"] = "never inside a callback (rule 2)"
	// the running coroutine blocks inside a Go callback that C called
	registerChild("misuse in callback called from C", func() {
		AcoStart(func(co *Co) {
			ev, _ := NewFdEvent(0, Read, func(e *Event, m Mask, now time.Time) Mask {
				co.Sleep(time.Millisecond)
				return 0
			})
			cgo.CCallDirect(ev.ptr)
		}, nil)
		time.Sleep(5 * time.Second)
	})
	crashCases["crash callback called from C"] = []string{"eventer: panic in a Go callback called from C: boom behind the trampoline"}
	registerChild("crash callback called from C", func() {
		ev, _ := NewFdEvent(0, Read, func(*Event, Mask, time.Time) Mask { panic("boom behind the trampoline") })
		AcoStart(func(co *Co) {
			rv, done := cgo.NewCounter(), cgo.NewCounter()
			cgo.CCallInCoroutine(ev.ptr, rv, done) // C calls it from a C coroutine
			co.Sleep(time.Second)
		}, nil)
		time.Sleep(5 * time.Second)
	})
}
