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

func noop(*Event, Mask, time.Time) Mask { return 0 }

func TestInitErrors(t *testing.T) {
	if err := Init(WithConcurrency(-1)); err == nil {
		t.Fatal("negative concurrency accepted")
	}
	if err := Init(WithConcurrency(5000)); err == nil {
		t.Fatal("5000 loops accepted (propset takes at most 4096)")
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
	// Each add waits for the loop: the deadlines count from 100 ms after
	// the adds begin (counted from their beginning, a loaded machine kept the
	// test off its CPU between two adds and a later timer fired before an
	// earlier one was added: order [1 2 3 0 4]; five adds took 20 ms
	// beside six CPU hogs).  When the adds still take longer than that the
	// order says nothing and the try is made again (notLate), as is one
	// whose timers fired late.
	err := notLate(func() error {
		var mu sync.Mutex
		var order []int
		var lateBy []time.Duration
		done := make(chan struct{})
		const lead = 100 * time.Millisecond
		t0 := time.Now()
		start := t0.Add(lead)
		delays := []time.Duration{30, 10, 20, 15, 40}
		for i, d := range delays {
			i, d := i, d*time.Millisecond
			// AddAt from one start: with AddIn a preemption between two adds
			// would move the later deadlines and the expected order with them.
			if _, err := AddAt(start.Add(d), func(e *Event, m Mask, now time.Time) Mask {
				el := time.Since(start)
				mu.Lock()
				order = append(order, i)
				lateBy = append(lateBy, el-d)
				n := len(order)
				mu.Unlock()
				if m != Timer {
					t.Errorf("timer mask %v", m)
				}
				if n == len(delays) {
					close(done)
				}
				return 0
			}); err != nil {
				return err
			}
		}
		added := time.Since(t0)
		<-done
		mu.Lock()
		defer mu.Unlock()
		if added >= lead+10*time.Millisecond {
			return late("the adds took %v, past the first deadline (order %v)", added, order)
		}
		want := []int{1, 3, 2, 0, 4} // deadline order
		for i := range want {
			if order[i] != want[i] {
				return fmt.Errorf("order %v, want %v", order, want)
			}
		}
		for i, l := range lateBy {
			if l < 0 {
				return fmt.Errorf("timer %d fired %v early", order[i], -l)
			}
			if l > lateBound() {
				return late("timer %d fired %v late", order[i], l)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTimerReAdd(t *testing.T) {
	setup(t, 1)
	var n atomic.Int32
	if _, err := AddIn(time.Millisecond, func(e *Event, m Mask, now time.Time) Mask {
		if n.Add(1) < 5 {
			return Timer // non-zero re-adds
		}
		return 0
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "5 firings", func() bool { return n.Load() == 5 })
	time.Sleep(20 * time.Millisecond)
	if n.Load() != 5 {
		t.Fatalf("fired %d times", n.Load())
	}
}

func TestRecurrent(t *testing.T) {
	setup(t, 1)
	var n atomic.Int32
	ev, err := AddRecurrent(func(e *Event, m Mask, now time.Time) Mask {
		if m != Recurrent {
			t.Errorf("mask %v", m)
		}
		if n.Add(1) == 10 {
			if err := e.Close(); err != nil { // inside its own callback
				t.Error(err)
			}
		}
		return 0
	})
	if err != nil {
		t.Fatal(err)
	}
	// an idle loop passes at least every 200 ms; timers make passes sooner
	for i := 1; i <= 20; i++ {
		AddIn(time.Duration(i)*5*time.Millisecond, noop)
	}
	waitFor(t, "10 passes", func() bool { return n.Load() >= 10 })
	time.Sleep(20 * time.Millisecond)
	if n.Load() != 10 {
		t.Fatalf("ran %d times after Close", n.Load())
	}
	if err := ev.Add(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	waitFor(t, "events freed", func() bool { return cgo.LiveEvents() == 0 })
}

func TestFdCallbackMasks(t *testing.T) {
	setup(t, 1)
	a, b := socketpair(t)
	defer unix.Close(b)
	unix.Write(b, []byte("x"))
	var seen []Mask
	drained, done := make(chan struct{}), make(chan struct{})
	ev, err := NewFdEvent(a, Read, func(e *Event, m Mask, now time.Time) Mask {
		seen = append(seen, m)
		switch len(seen) {
		case 1:
			return Read | Write // writable too: called again at once
		case 2:
			buf := make([]byte, 8)
			unix.Read(a, buf)
			close(drained)
			return Read // nothing more to read: waits
		default:
			close(done)
			return 0 // done: removed and released
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Add(); err != nil {
		t.Fatal(err)
	}
	// the second byte once the first is read (a sleep here let a late
	// loop read both in its second call, and the third never came)
	<-drained
	unix.Write(b, []byte("y"))
	<-done
	if len(seen) != 3 || seen[0] != Read || seen[1]&Write == 0 || seen[2] != Read {
		t.Fatalf("masks %v", seen)
	}
	waitFor(t, "event freed", func() bool { return cgo.LiveEvents() == 0 })
	if err := ev.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close of an event its callback ended: %v", err)
	}
	unix.Close(a) // NewFdEvent's fd stays the caller's
}

func TestBadEvents(t *testing.T) {
	setup(t, 1)
	if _, err := NewFdEvent(-1, Read, noop); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("bad fd: %v", err)
	}
	if _, err := NewFdEvent(0, Timer, noop); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("bad mask: %v", err)
	}
	if _, err := NewFdEvent(0, Read, nil); err == nil {
		t.Fatal("nil callback accepted")
	}
	if _, err := AddIn(time.Second, nil); err == nil {
		t.Fatal("nil callback accepted")
	}
	ln, err := Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.Add(); err == nil {
		t.Fatal("an event with no callback was added")
	}
	ln.Close()
}

// The eventer frees an event in C when its callback ends it; the Go
// Event knows: every later call returns ErrClosed and touches no freed
// memory (Add after a timer fired segfaulted the loop; Free twice, Free
// after Remove in a callback or after another goroutine's Remove aborted).
func TestEventReleasedByC(t *testing.T) {
	setup(t, 1)
	t.Run("timer fired", func(t *testing.T) {
		fired := make(chan struct{})
		e, err := AddIn(time.Millisecond, func(*Event, Mask, time.Time) Mask { close(fired); return 0 })
		if err != nil {
			t.Fatal(err)
		}
		<-fired
		waitFor(t, "timer freed", func() bool { return cgo.LiveEvents() == 0 })
		for name, call := range map[string]func() error{
			"Add": e.Add, "Remove": e.Remove, "Close": e.Close,
			"Update":  func() error { return e.Update(Read) },
			"Trigger": func() error { return e.Trigger(Read) },
		} {
			if err := call(); !errors.Is(err, ErrClosed) {
				t.Errorf("%s after the timer fired: %v", name, err)
			}
		}
	})
	t.Run("close twice", func(t *testing.T) {
		e, _ := NewFdEvent(0, Read, noop)
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); !errors.Is(err, ErrClosed) {
			t.Fatalf("second Close: %v", err)
		}
	})
	t.Run("remove and close in the fd callback", func(t *testing.T) {
		a, b := socketpair(t)
		defer unix.Close(a)
		defer unix.Close(b)
		unix.Write(b, []byte("x"))
		done := make(chan error, 1)
		e, _ := NewFdEvent(a, Read, func(e *Event, m Mask, now time.Time) Mask {
			err := e.Remove()
			if err == nil {
				err = e.Close()
			}
			done <- err
			return 0
		})
		if err := e.Add(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		waitFor(t, "freed", func() bool { return cgo.LiveEvents() == 0 })
	})
	t.Run("remove from another goroutine, then close", func(t *testing.T) {
		a, b := socketpair(t)
		defer unix.Close(a)
		defer unix.Close(b)
		e, _ := NewFdEvent(a, Read, func(*Event, Mask, time.Time) Mask { return Read })
		if err := e.Add(); err != nil {
			t.Fatal(err)
		}
		if err := e.Remove(); err != nil { // from this goroutine: queued
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.Update(Write); !errors.Is(err, ErrClosed) {
			t.Fatalf("Update after Close: %v", err)
		}
		waitFor(t, "freed", func() bool { return cgo.LiveEvents() == 0 })
	})
	t.Run("removed in its callback, kept", func(t *testing.T) {
		a, b := socketpair(t)
		defer unix.Close(a)
		defer unix.Close(b)
		unix.Write(b, []byte("x"))
		calls := make(chan struct{}, 2)
		e, _ := NewFdEvent(a, Read, func(e *Event, m Mask, now time.Time) Mask {
			e.Remove()
			calls <- struct{}{}
			return Read // out of the loop, but open
		})
		if err := e.Add(); err != nil {
			t.Fatal(err)
		}
		<-calls
		time.Sleep(10 * time.Millisecond)
		if err := e.Add(); err != nil { // open: added again
			t.Fatal(err)
		}
		<-calls
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "freed", func() bool { return cgo.LiveEvents() == 0 })
	})
	t.Run("timer closed before it fires", func(t *testing.T) {
		for try := 1; ; try++ {
			var fired atomic.Bool
			e, _ := AddIn(50*time.Millisecond, func(*Event, Mask, time.Time) Mask { fired.Store(true); return 0 })
			err := e.Close()
			if fired.Load() {
				// its 50 ms passed before the Close reached the loop (a
				// loaded machine: seen at nice 19 beside CPU hogs): the
				// try proves nothing
				if try == 10 {
					t.Fatal("the timer fired before Close in every try")
				}
				waitFor(t, "freed", func() bool { return cgo.LiveEvents() == 0 })
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			// a later timer on the one loop: once it has fired, so would
			// have the closed one
			later := make(chan struct{})
			AddIn(100*time.Millisecond, func(*Event, Mask, time.Time) Mask { close(later); return 0 })
			select {
			case <-later:
			case <-time.After(time.Minute):
				t.Fatal("the later timer did not fire")
			}
			if fired.Load() {
				t.Fatal("a closed timer fired")
			}
			break
		}
		waitFor(t, "freed", func() bool { return cgo.LiveEvents() == 0 })
	})
	t.Run("timer re-added in its callback", func(t *testing.T) {
		var n atomic.Int32
		done := make(chan struct{})
		_, err := AddIn(time.Millisecond, func(e *Event, m Mask, now time.Time) Mask {
			if n.Add(1) == 1 {
				if err := e.Add(); err != nil { // the same as returning Timer
					t.Error(err)
				}
				return 0
			}
			close(done)
			return 0
		})
		if err != nil {
			t.Fatal(err)
		}
		<-done
		waitFor(t, "freed", func() bool { return cgo.LiveEvents() == 0 })
	})
}

// An add that fails returns its error from any goroutine (from another
// goroutine it only logged: a closed fd, a second event on one fd).
func TestAddErrorsEverywhere(t *testing.T) {
	setup(t, 2)
	a, b := socketpair(t)
	defer unix.Close(a)
	defer unix.Close(b)
	cb := func(e *Event, m Mask, now time.Time) Mask { return Read }
	e1, _ := NewFdEvent(a, Read, cb)
	if err := e1.Add(); err != nil { // from the test goroutine
		t.Fatal(err)
	}
	e2, _ := NewFdEvent(a, Read, cb)
	if err := e2.Add(); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("second event on one fd, from another goroutine: %v", err)
	}
	if err := e1.Add(); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("adding a registered event: %v", err)
	}
	e1.Close()
	e2.Close()
	c, d := socketpair(t)
	unix.Close(d)
	unix.Close(c) // a closed fd
	e3, _ := NewFdEvent(c, Read, cb)
	if err := e3.Add(); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("closed fd, from another goroutine: %v", err)
	}
	e3.Close()
	// on the loop's thread, the same
	err := inCo(t, 0, func(co *Co) error {
		e4, _ := NewFdEvent(c, Read, cb)
		defer e4.Close()
		if err := e4.Add(); !errors.Is(err, syscall.EBADF) {
			return fmt.Errorf("closed fd, on the loop: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// from another loop's thread: the event moves to that loop
	x, y := socketpair(t)
	defer unix.Close(x)
	defer unix.Close(y)
	fired := make(chan int, 1)
	e5, _ := NewFdEvent(x, Read, func(e *Event, m Mask, now time.Time) Mask {
		fired <- cgo.CurrentLoop()
		return 0
	})
	if err := inCo(t, 1, func(co *Co) error { return e5.Add() }); err != nil {
		t.Fatal(err)
	}
	unix.Write(y, []byte("x"))
	if got := <-fired; got != 1 {
		t.Fatalf("the event ran on loop %d, want 1 (where it was added)", got)
	}
}

// A Go callback is an ordinary eventer_func_t for C: called directly from
// C (main context).  (From inside a C coroutine: mixed_test.go.)
func TestEventCalls(t *testing.T) {
	setup(t, 1)
	var nilEv *Event
	if err := nilEv.Add(); err == nil {
		t.Fatal("Add on a nil Event accepted")
	}
	if err := nilEv.Close(); err == nil {
		t.Fatal("Close on a nil Event accepted")
	}
	// triggered: not registered, run in the next task phase, ended by 0
	ran := make(chan Mask, 1)
	e, _ := NewFdEvent(0, Read, func(e *Event, m Mask, now time.Time) Mask { ran <- m; return 0 })
	if err := e.Trigger(Read | Write); err != nil {
		t.Fatal(err)
	}
	if m := <-ran; m != Read|Write {
		t.Fatalf("trigger mask %v", m)
	}
	waitFor(t, "freed", func() bool { return cgo.LiveEvents() == 0 })
	if err := e.Trigger(Read); !errors.Is(err, ErrClosed) {
		t.Fatalf("Trigger of an ended event: %v", err)
	}
}

// Objects of an earlier Init fail cleanly after Shutdown and a new Init:
// their C memory is gone, and nothing touches it.
func TestObjectsOfAnEarlierInit(t *testing.T) {
	if err := Init(WithConcurrency(1)); err != nil {
		t.Fatal(err)
	}
	ev, _ := NewFdEvent(0, Read, noop)
	sem, _ := NewSem(1)
	q, _ := NewJobQueue("old")
	Shutdown()
	Loop()
	setup(t, 1)
	if err := ev.Add(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add of an event of an earlier Init: %v", err)
	}
	if err := ev.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close of an event Shutdown released: %v", err)
	}
	if err := sem.Post(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Post on a semaphore of an earlier Init: %v", err)
	}
	if q.Concurrency() != 0 || !errors.Is(q.Close(), ErrClosed) {
		t.Fatal("job queue of an earlier Init still answers")
	}
	err := inCo(t, 0, func(co *Co) error {
		if err := sem.Wait(co, time.Millisecond); !errors.Is(err, ErrClosed) {
			return fmt.Errorf("Wait on a semaphore of an earlier Init: %v", err)
		}
		if _, err := co.SetEventerAco(ev); !errors.Is(err, ErrClosed) {
			return fmt.Errorf("converting an event of an earlier Init: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A loop kept busy by Go callbacks is never rescheduled by Go on its own
// (its driver is in cgo calls or runs the callbacks), so the driver goes
// through Go's scheduler itself every few milliseconds: sysmon takes the
// P of a goroutine that has not been scheduled for 10 ms on every one of
// its ticks that finds it inside a cgo call.
func TestDriverYieldsWhileBusy(t *testing.T) {
	setup(t, 1)
	drv := loopAt(0).drv
	y0 := drv.Yields()
	var stop atomic.Bool
	var fired atomic.Int64
	done := make(chan struct{})
	var again Callback
	again = func(*Event, Mask, time.Time) Mask {
		fired.Add(1)
		if stop.Load() {
			close(done)
		} else if _, err := AddIn(0, again); err != nil {
			t.Error(err)
			close(done)
		}
		return 0
	}
	if _, err := AddIn(0, again); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the timer chain did not stop")
	}
	if y := drv.Yields() - y0; y == 0 {
		t.Errorf("the driver never yielded in 200 ms of %d timer callbacks", fired.Load())
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
	rt.objMu.Lock()
	n = rt.nobjs
	rt.objMu.Unlock()
	if n > 2*per+16 {
		t.Fatalf("%d objects tracked after %d timers fired", n, rounds*per)
	}
}

// Closes (of AcoEvents, Events, Sems), wakes and cancels from other
// goroutines racing Shutdown leave nothing behind: no C event, no fd.  (An
// Event closed while Shutdown was releasing the session's objects was
// dropped by both before: its C event leaked; a Sem used then reached
// freed C memory.)
func TestClosesRacingShutdown(t *testing.T) {
	fds0 := openFds(t)
	for cycle := 0; cycle < 40; cycle++ {
		if err := Init(WithConcurrency(2), WithErrorHandler(func(error) {})); err != nil { // starts failing at the stop are expected
			t.Fatal(err)
		}
		aes := make(chan *AcoEvent, 64)
		evs := make(chan *Event, 64)
		sems := make(chan *Sem, 64)
		cos := make(chan *Co, 64)
		peers := make(chan int, 64)
		for j := 0; j < 16; j++ {
			{
				co, err := AcoStart(func(co *Co) {
					a, b, _ := pairFds()
					peers <- b
					ev, err := FdEvent(a)
					if err != nil {
						return
					}
					ae, err := co.SetEventerAco(ev)
					if err != nil {
						return
					}
					aes <- ae
					defer ae.Close()
					ae.Read(make([]byte, 4), 0)
					co.Sleep(time.Millisecond)
				}, nil)
				if err == nil {
					cos <- co
				}
			}
			{
				a, b, _ := pairFds()
				peers <- b
				ev, err := NewFdEvent(a, Read, func(e *Event, m Mask, now time.Time) Mask { return Read })
				peers <- a
				if err == nil {
					ev.Add()
					evs <- ev
				}
			}
			{
				if s, err := NewSem(0); err == nil {
					sems <- s
				}
				AddIn(time.Duration(j)*100*time.Microsecond, func(e *Event, m Mask, now time.Time) Mask { return 0 })
			}
		}
		var wg sync.WaitGroup
		for g := 0; g < 3; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case ae := <-aes:
						ae.Close()
					case ev := <-evs:
						ev.Close()
					case s := <-sems:
						s.Post()
						s.Close()
						s.Post()
					case co := <-cos:
						co.Wake()
						co.Cancel()
					case <-time.After(2 * time.Millisecond):
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(cycle%5) * time.Millisecond)
		Shutdown()
		wg.Wait()
		if err := Loop(); err != nil {
			t.Fatal(err)
		}
		close(aes)
		for ae := range aes {
			ae.Close()
		}
		close(evs)
		for ev := range evs {
			ev.Close()
		}
		close(sems)
		for s := range sems {
			if err := s.Post(); !errors.Is(err, ErrNotInitialized) && !errors.Is(err, ErrClosed) {
				t.Fatalf("Sem.Post after Shutdown: %v", err)
			}
			s.Close()
		}
		close(peers)
		for b := range peers {
			unix.Close(b)
		}
		if n := cgo.LiveEvents(); n != 0 {
			t.Fatalf("cycle %d: %d C events live after Shutdown", cycle, n)
		}
	}
	if fds := openFds(t); fds > fds0 { // (fewer: an earlier test's fd closed meanwhile)
		t.Fatalf("open fds: %d before, %d after", fds0, fds)
	}
}
