package eventer

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer/cgo"
)

// setup starts an eventer with n loops for one test and shuts it down at
// its end, checking that every C event was freed.
func setup(t testing.TB, n int, opts ...Option) {
	t.Helper()
	if err := Init(append([]Option{WithConcurrency(n)}, opts...)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		Shutdown()
		if err := Loop(); err != nil {
			t.Errorf("Loop: %v", err)
		}
		if live := cgo.LiveEvents(); live != 0 {
			t.Errorf("%d C events still allocated after shutdown", live)
		}
	})
}

// inCo runs fn in a coroutine on loop i and returns its error (or fails
// the test after a timeout).
func inCo(t testing.TB, i int, fn func(co *Co) error) error {
	t.Helper()
	ch := make(chan error, 1)
	AcoStartOn(i, func(co *Co) { ch <- fn(co) }, nil)
	select {
	case err := <-ch:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("coroutine did not finish in 20s")
		return nil
	}
}

func socketpair(t testing.TB) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fds[0], fds[1]
}

// fdEvent makes a plain fd event for fd (for SetEventerAco).
func fdEvent(t testing.TB, fd int) *Event {
	t.Helper()
	ev, err := plainFdEvent(fd)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// lateBound is how late a timer may fire in these tests (never early).
func lateBound() time.Duration {
	if raceEnabled || runtime.GOMAXPROCS(0) == 1 {
		return 250 * time.Millisecond
	}
	return 100 * time.Millisecond
}
