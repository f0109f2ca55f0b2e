package cgo

/*
#include "glue.h"
*/
import "C"

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// How a driver waits.  With no Go work of its loop running elsewhere, the
// driver's thread waits in epoll_wait inside ev_go_run, as a C loop's
// does: no cost for C callbacks and Go coroutines on the loop.  While
// goroutines serve work the loop handed them (HandleHTTP's requests, Go
// rules without SetAco), that wait would hold the Go runtime's P: the
// runtime sees a cgo call, and with GOMAXPROCS 1 the goroutines run only
// when sysmon takes the P back (20 us to 10 ms later), and the thread
// then waits again for a P when the end they post wakes it.  So then the
// driver polls without blocking and sleeps in Go: on the loop's epoll
// fd, registered with Go's netpoller (it becomes readable for fd
// readiness and, once eventer_loop_sleep_begin said the loop is asleep,
// for cross-thread pushes), with the loop's next timer as the deadline.
// The P is free at once for the goroutines.

// sleeper is a driver's side of its epoll fd in Go's netpoller.
type sleeper struct {
	f        *os.File // a dup of the loop's epoll fd, non-blocking
	rc       syscall.RawConn
	deadline time.Time // the read deadline set (zero: none)
	err      error     // why it could not be set up (the driver blocks in C)

	// the read's callback (made once: a closure per step would be an
	// allocation) and what it hands back
	step func(uintptr) bool
	res  C.int
	cerr error
}

// busy: goroutines serve work of the loop now.  (Staying in Go for a
// while after that work ended, to spare the P's retake by sysmon in the
// gaps between bursts, was measured and dropped: a wake-up in Go costs
// the driver a second thread switch, which doubled the switches per
// request at 50 connections and stretched p99.)
func (d *Driver) busy() bool { return d.goWork.Load() > 0 }

// GoWork counts work of this loop that goroutines serve now (any
// goroutine may change it); the driver sleeps in Go while it is above 0.
func (d *Driver) GoWork() *atomic.Int32 { return &d.goWork }

// WorkHanded tells the driver, from its own thread (a Go call C made
// inside ev_go_run included), that it counted new Go work: the C loop's
// next iteration already polls without blocking.
func (d *Driver) WorkHanded() {
	if d.d != nil {
		d.d.go_busy = 1
	}
}

// SleepStats: iterations run with a zero wait, and sleeps in Go.
func (d *Driver) SleepStats() (nowaitPolls, goSleeps uint64) {
	return d.nowaitPolls.Load(), d.goSleeps.Load()
}

// run is one ev_go_run: at once when no Go work runs elsewhere (it may
// block in epoll_wait), else inside the netpoller's read of the epoll fd,
// sleeping there until the loop has something to do.
func (d *Driver) run() (C.int, error) {
	busy := d.busy()
	if !busy && d.d.asleep == 0 || d.sleep.err != nil {
		d.d.go_busy = 0
		rc, err := C.ev_go_run(C.uintptr_t(uintptr(unsafe.Pointer(d.d))))
		return rc, err
	}
	s := &d.sleep
	if s.f == nil {
		if err := s.open(d); err != nil {
			s.err = err
			d.d.go_busy = 0
			rc, err := C.ev_go_run(C.uintptr_t(uintptr(unsafe.Pointer(d.d))))
			return rc, err
		}
	}
	// The C work runs inside the read's callback, after the netpoller's
	// readiness flag was reset: readiness that comes after the callback's
	// last poll found nothing is never lost.
	err := s.rc.Read(s.step)
	rc, cerr := s.res, s.cerr
	s.cerr = nil
	if err != nil {
		// the deadline passed (the loop's next timer is due): clear it, and
		// run (the next ev_go_run ends the sleep)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			s.err = err
		}
		s.deadline = time.Time{}
		_ = s.f.SetReadDeadline(time.Time{})
		return C.EV_GO_RUN_SLEEP, nil
	}
	return rc, cerr
}

// setDeadline bounds the sleep to us microseconds (< 0: none).  A later
// deadline than the one set is left as it is: waking early costs one
// iteration.
func (s *sleeper) setDeadline(us int64) {
	if us < 0 {
		return
	}
	at := time.Now().Add(time.Duration(us) * time.Microsecond)
	if !s.deadline.IsZero() && !at.Before(s.deadline) {
		return
	}
	s.deadline = at
	_ = s.f.SetReadDeadline(at)
}

// open registers a dup of driver d's epoll fd with the netpoller.
func (s *sleeper) open(d *Driver) error {
	fd, err := C.ev_go_pollfd()
	if fd < 0 {
		return err
	}
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return err
	}
	f := os.NewFile(uintptr(nfd), "eventer-loop-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return err
	}
	// os.NewFile registers a non-blocking fd with the netpoller; a
	// deadline is refused when it did not
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return err
	}
	s.f, s.rc = f, rc
	sleeperFds.Add(1)
	s.step = func(uintptr) bool {
		d.d.go_busy = 0
		if d.busy() {
			d.d.go_busy = 1
		}
		s.res, s.cerr = C.ev_go_run(C.uintptr_t(uintptr(unsafe.Pointer(d.d))))
		d.nowaitPolls.Store(uint64(d.d.nowait_polls))
		if s.res != C.EV_GO_RUN_SLEEP {
			return true
		}
		d.goSleeps.Add(1)
		s.setDeadline(int64(d.d.sleep_us))
		return false
	}
	return nil
}

// close lets the epoll fd's dup go.
func (s *sleeper) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
		sleeperFds.Add(-1)
	}
}

// sleeperFds counts the epoll fd dups open for drivers' sleeps in Go.
var sleeperFds atomic.Int32

// SleeperFds is how many fds the drivers hold for their sleeps in Go: a
// driver opens one the first time it sleeps in Go (when that happens
// depends on scheduling) and keeps it until its loop stops, so a count of
// the process's fds that must not depend on scheduling leaves them out.
func SleeperFds() int { return int(sleeperFds.Load()) }
