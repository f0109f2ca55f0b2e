package eventer

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
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
		pools := 0
		restCoPools.Range(func(any, any) bool { pools++; return true })
		if pools != 0 {
			t.Errorf("%d loops' REST pools (and their C slots) kept after shutdown", pools)
		}
	})
}

// start is AcoStartOn that fails the test when the start is refused.
func start(t testing.TB, i int, fn func(co *Co)) *Co {
	t.Helper()
	co, err := AcoStartOn(i, fn, nil)
	if err != nil {
		t.Fatal(err)
	}
	return co
}

// inCo runs fn in a coroutine on loop i and returns its error (or fails
// the test after a timeout).
func inCo(t testing.TB, i int, fn func(co *Co) error) error {
	t.Helper()
	ch := make(chan error, 1)
	start(t, i, func(co *Co) { ch <- fn(co) })
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

// acoEvent converts fd (taken over: Close closes it) for co's loop.
func acoEvent(t testing.TB, co *Co, fd int) *AcoEvent {
	t.Helper()
	ev, err := FdEvent(fd)
	if err != nil {
		t.Fatal(err)
	}
	ae, err := co.SetEventerAco(ev)
	if err != nil {
		t.Fatal(err)
	}
	return ae
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

// waitProgress waits until done, failing only when progress (a count that
// only grows) has not moved for stall: a deadline on the whole of a big
// workload fails a slow but working machine (nice 19 beside CPU hogs);
// a stall fails a stuck one.
func waitProgress(t testing.TB, what string, stall time.Duration, progress func() int64, done func() bool) {
	t.Helper()
	last, since := progress(), time.Now()
	for !done() {
		if p := progress(); p != last {
			last, since = p, time.Now()
		} else if time.Since(since) > stall {
			t.Fatalf("timed out waiting for %s: no progress for %v (at %d)", what, stall, p)
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

// lateError is a check on how late something happened that failed (see
// notLate).
type lateError struct{ error }

func late(format string, args ...any) error {
	return lateError{fmt.Errorf(format, args...)}
}

// notLate runs try up to three times while it fails only by being late
// (an error made by late): a loaded machine can keep any thread off its
// CPU for longer than lateBound once, code that is late is late every
// time.  Any other error ends it at once; checks other than lateness
// stay strict in every try.
func notLate(try func() error) error {
	var err error
	for i := 0; i < 3; i++ {
		if err = try(); !errors.As(err, new(lateError)) {
			return err
		}
	}
	return fmt.Errorf("late in 3 tries of 3: %w", err)
}

// openFds counts the process's open fds, less the epoll fd dups the loop
// drivers open for their sleeps in Go: a driver opens its dup the first
// time it sleeps in Go with goroutines serving its work, whenever that
// happens, and keeps it until its loop stops.
func openFds(t testing.TB) int {
	t.Helper()
	for {
		before := cgo.SleeperFds()
		d, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		if after := cgo.SleeperFds(); after == before {
			return len(d) - after
		}
	}
}

// waitFds waits (20 s) until the process has at most want fds open.  At
// most, not exactly: an fd of an earlier test (a client's idle keep-alive
// connection, one the runtime closes late) may close after want was
// counted, and the count then stays below it.
func waitFds(t testing.TB, what string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for n := openFds(t); n > want; n = openFds(t) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %d fds open, %d before", what, n, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// held is what a test that opens and ends connections must give back: the
// process's open fds and the C events alive when it began.
type held struct {
	fds    int
	events int64
}

func holding(t testing.TB) held {
	t.Helper()
	return held{fds: openFds(t), events: cgo.LiveEvents()}
}

// released checks that no acceptor closure or Go coroutine is alive and
// waits until the C events and the fds are back to h (a loop drops its last
// references, and closes the last fds, an iteration after the end).
func (h held) released(t *testing.T) {
	t.Helper()
	if n := cgo.AcceptorClosuresLive(); n != 0 {
		t.Fatalf("%d acceptor closures alive", n)
	}
	waitFor(t, "the C events to go", func() bool { return cgo.LiveEvents() == h.events })
	if n := liveCos(t); n != 0 {
		t.Fatalf("%d Go coroutines alive", n)
	}
	waitFds(t, "the fds to close", h.fds)
}

// nothingAfterShutdown checks that Shutdown left no listener, acceptor
// closure or C event; what names the moment in the message.
func nothingAfterShutdown(t testing.TB, what string) {
	t.Helper()
	if n := cgo.ListenerCount(); n != 0 {
		t.Errorf("%s: %d listeners outlived Shutdown", what, n)
	}
	if n := cgo.AcceptorClosuresLive(); n != 0 {
		t.Errorf("%s: %d acceptor closures alive after Shutdown", what, n)
	}
	if n := cgo.LiveEvents(); n != 0 {
		t.Errorf("%s: %d C events alive after Shutdown", what, n)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// ---- child processes -----------------------------------------------------------------
//
// Behaviour that must end the process (a panic, a misuse panic) or that
// used to hang it runs in a child: the test binary, re-executed with
// EVENTER_CHILD=<case>.  The child runs the case with an eventer of one
// loop; the parent checks how it ended and what it printed.

type childCase struct {
	run func()
}

var childCases = map[string]childCase{}

func registerChild(name string, run func()) { childCases[name] = childCase{run} }

// runChild runs case name in a child process, which must end within 60 s.
func runChild(t *testing.T, name string) (out string, exitCode int) {
	t.Helper()
	if _, ok := childCases[name]; !ok {
		t.Fatalf("no child case %q", name)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "EVENTER_CHILD="+name)
	done := make(chan struct{})
	var b []byte
	var err error
	go func() {
		b, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("child %q hung:\n%s", name, b)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(b), 0
	case errors.As(err, &ee):
		return string(b), ee.ExitCode()
	}
	t.Fatalf("child %q: %v", name, err)
	return "", -1
}

func TestMain(m *testing.M) {
	if name := os.Getenv("EVENTER_CHILD"); name != "" {
		c, ok := childCases[name]
		if !ok {
			os.Stderr.WriteString("no child case " + name + "\n")
			os.Exit(3)
		}
		if err := Init(WithConcurrency(1)); err != nil {
			panic(err)
		}
		c.run()
		os.Stderr.WriteString("child case returned\n")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// mustContain fails unless out holds every one of want.
func mustContain(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("output lacks %q:\n%s", w, out)
		}
	}
}

// pairFds is socketpair without a test (child cases).
func pairFds() (int, int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, -1, err
	}
	return fds[0], fds[1], nil
}
