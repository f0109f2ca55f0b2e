package eventer

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer/cgo"
)

func TestInitErrors(t *testing.T) {
	if err := Loop(); err == nil || !errors.Is(err, ErrNotInitialized) {
		if err == nil {
			// a previous test's loops: fine as long as it was shut down
		}
	}
	if err := Init(WithConcurrency(-1)); err == nil {
		t.Fatal("negative concurrency accepted")
	}
	// a failure after the loops started stops them again (and returns)
	done := make(chan error, 1)
	go func() { done <- Init(WithConcurrency(1), WithJobQueue("")) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "Init") {
			t.Fatalf("a job queue without a name: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failed Init hung")
	}
	setup(t, 1)
	if err := Init(); err == nil {
		t.Fatal("second Init accepted")
	} else if want := "eventer: Init: already initialized"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestReinit(t *testing.T) {
	for i := 0; i < 3; i++ {
		if err := Init(WithConcurrency(2)); err != nil {
			t.Fatal(err)
		}
		err := inCo(t, 1, func(co *Co) error { return co.Sleep(time.Millisecond) })
		if err != nil {
			t.Fatal(err)
		}
		Shutdown()
		if err := Loop(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTimersInOrderNotEarly(t *testing.T) {
	setup(t, 1)
	var mu sync.Mutex
	var order []int
	var late []time.Duration
	done := make(chan struct{})
	start := time.Now()
	delays := []time.Duration{30, 10, 20, 10, 40}
	for i, d := range delays {
		i, d := i, d*time.Millisecond
		AddIn(d, func(e *Event, m Mask, now time.Time) Mask {
			el := time.Since(start)
			mu.Lock()
			order = append(order, i)
			late = append(late, el-d)
			n := len(order)
			mu.Unlock()
			if m != Timer {
				t.Errorf("timer mask %v", m)
			}
			if n == len(delays) {
				close(done)
			}
			return 0
		})
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	want := []int{1, 3, 2, 0, 4} // deadline order, equal deadlines in add order
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
	for i, l := range late {
		if l < 0 {
			t.Fatalf("timer %d fired %v early", order[i], -l)
		}
		if l > lateBound() {
			t.Fatalf("timer %d fired %v late", order[i], l)
		}
	}
}

func TestTimerReAdd(t *testing.T) {
	setup(t, 1)
	var n atomic.Int32
	AddIn(time.Millisecond, func(e *Event, m Mask, now time.Time) Mask {
		if n.Add(1) < 5 {
			return Timer // non-zero re-adds
		}
		return 0
	})
	waitFor(t, "5 firings", func() bool { return n.Load() == 5 })
	time.Sleep(20 * time.Millisecond)
	if n.Load() != 5 {
		t.Fatalf("fired %d times", n.Load())
	}
}

func TestRecurrent(t *testing.T) {
	setup(t, 1)
	var n atomic.Int32
	var ev *Event
	ev = AddRecurrent(func(e *Event, m Mask, now time.Time) Mask {
		if m != Recurrent {
			t.Errorf("mask %v", m)
		}
		if n.Add(1) == 10 {
			if err := e.Remove(); err != nil {
				t.Error(err)
			}
			e.Free()
		}
		return 0
	})
	if ev.Err() != nil {
		t.Fatal(ev.Err())
	}
	// an idle loop passes at least every 200 ms; timers make passes sooner
	for i := 1; i <= 20; i++ {
		AddIn(time.Duration(i)*5*time.Millisecond, func(*Event, Mask, time.Time) Mask { return 0 })
	}
	waitFor(t, "10 passes", func() bool { return n.Load() >= 10 })
	time.Sleep(20 * time.Millisecond)
	if n.Load() != 10 {
		t.Fatalf("ran %d times after removal", n.Load())
	}
}

func TestFdCallbackMasks(t *testing.T) {
	setup(t, 1)
	a, b := socketpair(t)
	defer unix.Close(b)
	unix.Write(b, []byte("x"))
	var seen []Mask
	done := make(chan struct{})
	ev := NewFdEvent(a, Read, func(e *Event, m Mask, now time.Time) Mask {
		seen = append(seen, m)
		switch len(seen) {
		case 1:
			return Read | Write // writable too: called again at once
		case 2:
			buf := make([]byte, 8)
			unix.Read(a, buf)
			return Read // nothing more to read: waits
		default:
			if err := e.Remove(); err != nil {
				t.Error(err)
			}
			unix.Close(a)
			close(done)
			return 0 // removed first: freed
		}
	})
	if err := ev.Add(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	unix.Write(b, []byte("y"))
	<-done
	if len(seen) != 3 || seen[0] != Read || seen[1]&Write == 0 || seen[2] != Read {
		t.Fatalf("masks %v", seen)
	}
	waitFor(t, "event freed", func() bool { return cgo.LiveEvents() == 0 })
}

func TestBadEvents(t *testing.T) {
	setup(t, 1)
	if err := NewFdEvent(-1, Read, func(*Event, Mask, time.Time) Mask { return 0 }).Add(); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("bad fd: %v", err)
	}
	if err := NewFdEvent(0, Timer, func(*Event, Mask, time.Time) Mask { return 0 }).Add(); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("bad mask: %v", err)
	}
	if err := NewFdEvent(0, Read, nil).Add(); err == nil {
		t.Fatal("nil callback accepted")
	}
	// two events on one fd
	a, b := socketpair(t)
	defer unix.Close(a)
	defer unix.Close(b)
	cb := func(e *Event, m Mask, now time.Time) Mask { return Read }
	// on the owner loop's thread (here: a coroutine of loop 0) adds are
	// synchronous, so the conflict is reported
	if err := inCo(t, 0, func(co *Co) error {
		e1 := NewFdEvent(a, Read, cb)
		if err := e1.Add(); err != nil {
			return err
		}
		e2 := NewFdEvent(a, Read, cb)
		if err := e2.Add(); !errors.Is(err, syscall.EEXIST) {
			t.Errorf("second event on one fd: %v", err)
		}
		e2.Free()
		if err := e1.Remove(); err != nil {
			return err
		}
		e1.Free()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A Go callback is an ordinary eventer_func_t for C: called directly from
// C (main context) and from inside a C coroutine, where it reaches Go on
// the thread's stack (rule 4).
func TestCallbackCalledFromC(t *testing.T) {
	setup(t, 1)
	var calls atomic.Int32
	ev := NewFdEvent(0, Read, func(e *Event, m Mask, now time.Time) Mask {
		calls.Add(1)
		return Read | Write
	})
	if ev.Err() != nil {
		t.Fatal(ev.Err())
	}
	defer ev.Free()
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
			ev := NewFdEvent(0, Read, func(*Event, Mask, time.Time) Mask {
				log.Append(i)
				return 0 // not registered: the event is done and freed
			})
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

// Objects of an earlier Init fail cleanly after Shutdown and a new Init:
// their C memory is gone, and nothing touches it.
func TestObjectsOfAnEarlierInit(t *testing.T) {
	if err := Init(WithConcurrency(1)); err != nil {
		t.Fatal(err)
	}
	ev := NewFdEvent(0, Read, func(*Event, Mask, time.Time) Mask { return 0 })
	sem, _ := NewSem(1)
	q := NewJobQueue("old")
	ev.Free() // C frees it: below, only the session guard stands between
	// the Go object and freed memory
	Shutdown()
	Loop()
	setup(t, 1)
	if err := ev.Add(); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("Add of an old event: %v", err)
	}
	ev.Free() // a no-op now
	if err := sem.Post(); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("Post on an old semaphore: %v", err)
	}
	if q.Concurrency() != 0 || q.Destroy() == nil {
		t.Fatal("old job queue still answers")
	}
	err := inCo(t, 0, func(co *Co) error {
		if err := sem.Wait(co, time.Millisecond); !errors.Is(err, ErrNotInitialized) {
			return fmt.Errorf("Wait on an old semaphore: %v", err)
		}
		ae := co.SetEventerAco(ev)
		if _, err := ae.Read(make([]byte, 1), time.Millisecond); !errors.Is(err, ErrNotInitialized) {
			return fmt.Errorf("Read on an old event: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The callback table does not grow with events that came and went: ids of
// freed C events are dropped as new callbacks are registered.
func TestCallbackTableStaysSmall(t *testing.T) {
	setup(t, 1)
	var fired atomic.Int32
	const rounds, per = 50, 200
	for r := 0; r < rounds; r++ {
		for i := 0; i < per; i++ {
			AddIn(0, func(*Event, Mask, time.Time) Mask { fired.Add(1); return 0 })
		}
		waitFor(t, "timers", func() bool { return fired.Load() == int32((r+1)*per) })
	}
	callbacks.RLock()
	n := len(callbacks.m)
	callbacks.RUnlock()
	if n > 2*per+16 {
		t.Fatalf("%d callbacks kept after %d timers fired (at most %d alive at once)", n, rounds*per, per)
	}
}
