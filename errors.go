package eventer

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// Errors to test for with errors.Is.
var (
	// ErrClosed: the object was closed (a second Close, or any call after
	// Close).  Connection I/O on a closed AcoEvent also satisfies
	// errors.Is(err, net.ErrClosed).
	ErrClosed = errors.New("closed")
	// ErrCanceled: Co.Cancel ended the call (C's ECANCELED).
	ErrCanceled = errors.New("operation canceled")
	// ErrWouldBlock: a Try call found nothing to take or no room (C's
	// EAGAIN).
	ErrWouldBlock = errors.New("would block")
	// ErrNotOwner: a Mutex unlocked by a coroutine that does not hold it
	// (C's EPERM).
	ErrNotOwner = errors.New("not the owner")
	// ErrChanClosed: a Send on a closed Chan, or a Recv on a closed and
	// drained one (C's EPIPE).
	ErrChanClosed = errors.New("channel closed")
	// ErrStopped: the loops have stopped (Shutdown), so they take no more
	// work; also what a coroutine's blocking calls return while Shutdown
	// unwinds it (in its deferred functions).
	ErrStopped = errors.New("event loop stopped")
	// ErrNotInitialized: before Init, or an object of an earlier Init.
	ErrNotInitialized = errors.New("eventer not initialized")
	// ErrNotTLS: a TLS call on a connection that is not TLS.
	ErrNotTLS = errors.New("not a TLS connection")
)

// OpError is the error of an operation: which one, and why.  Timeouts
// satisfy errors.Is(err, os.ErrDeadlineExceeded); system errors unwrap to
// their syscall.Errno.
type OpError struct {
	Op  string // "AcoEvent.Read", "Co.Sleep", ...
	Err error
}

func (e *OpError) Error() string {
	if e.Err == nil {
		return "eventer: " + e.Op
	}
	return "eventer: " + e.Op + ": " + e.Err.Error()
}

func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the operation timed out (net.Error).
func (e *OpError) Timeout() bool { return errors.Is(e.Err, os.ErrDeadlineExceeded) }

// Temporary is always false (net.Error, deprecated).
func (e *OpError) Temporary() bool { return false }

// opErr names op in err, once: an *OpError from a call made on op's
// behalf gets op's name instead of a second one.
func opErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var oe *OpError
	if errors.As(err, &oe) {
		return &OpError{Op: op, Err: oe.Err}
	}
	return &OpError{Op: op, Err: err}
}

// errClosedIO is connection I/O after Close: it is net.ErrClosed (what
// net.Conn users test) and ErrClosed.
type closedIO struct{}

func (closedIO) Error() string        { return net.ErrClosed.Error() }
func (closedIO) Is(target error) bool { return target == net.ErrClosed || target == ErrClosed }

var errClosedIO error = closedIO{}

// errnoError maps a C errno to the error package eventer reports for op.
// This is the one place C results become Go errors.
func errnoError(op string, errno syscall.Errno) error {
	var err error
	switch errno {
	case 0:
		return nil
	case syscall.ETIMEDOUT:
		err = os.ErrDeadlineExceeded
	case syscall.ECANCELED:
		err = ErrCanceled
	case syscall.EBADF:
		err = errClosedIO
	case syscall.EAGAIN:
		err = ErrWouldBlock
	case syscall.EPIPE:
		if sys := sysName(op); sys != "" {
			err = os.NewSyscallError(sys, errno) // a write to a peer that went away
		} else {
			err = ErrChanClosed
		}
	default:
		if sys := sysName(op); sys != "" {
			err = os.NewSyscallError(sys, errno)
		} else {
			err = errno // op names the call already
		}
	}
	return &OpError{Op: op, Err: err}
}

// sysName is the system call behind op, "" if none.
func sysName(op string) string {
	switch op {
	case "AcoEvent.Read":
		return "read"
	case "AcoEvent.Write":
		return "write"
	case "AcoEvent.Accept":
		return "accept"
	case "Co.Connect":
		return "connect"
	case "AcoEvent.Close":
		return "close"
	}
	return ""
}

// readResult turns a read's (n, errno) into Go's (n, err): 0 bytes read
// into a non-empty buffer is io.EOF.
func readResult(n int64, errno syscall.Errno, want int) (int, error) {
	if n < 0 {
		return 0, errnoError("AcoEvent.Read", errno)
	}
	if n == 0 && want > 0 {
		return 0, io.EOF
	}
	return int(n), nil
}

// MisuseError is the panic value of a call that breaks one of the rules
// that keep Go and C coroutines apart (the package documentation's
// "The rules").  The Go runtime would otherwise kill the process (or
// corrupt a stack); the check comes first, so the panic can be recovered.
type MisuseError struct {
	Op   string // the call
	Rule string // the rule it breaks
}

func (e *MisuseError) Error() string {
	return fmt.Sprintf("eventer: misuse: %s: %s", e.Op, e.Rule)
}

// The rules, as MisuseError reports them.
const (
	ruleOtherGoroutine = "a coroutine's blocking calls may only be made by that coroutine " +
		"(rule 1: not from another goroutine)"
	ruleNotCurrent = "a coroutine's blocking calls may only be made by that coroutine, " +
		"while it runs on its loop (rule 1: not on a coroutine that is not the current one)"
	ruleInCallback = "a coroutine blocks only at the top of its own body, " +
		"never inside a callback (rule 2)"
	ruleWrongThread = "blocking call from another OS thread than the coroutine's loop thread " +
		"(rule 1: not from another goroutine)"
	ruleInCCoroutine = "blocking call from a Go callback that C code called inside a C coroutine " +
		"(rule 2: never block inside a callback)"
	ruleThreadLock = "a coroutine blocks only with the OS thread locking it started with " +
		"(rule 2: no runtime.LockOSThread or UnlockOSThread of its own around a blocking call; " +
		"the extra locks were undone)"
	ruleEnded    = "the coroutine has ended"
	ruleNoCo     = "no coroutine (nil, or one whose start failed)"
	ruleNoLoop   = "called from a goroutine that is no coroutine of the AcoEvent's loop (rule 1)"
	ruleWaitSelf = "it waits for the loops to stop, and is called from a loop's thread or " +
		"from asynch work, which the loops' stop waits for"
)

func misuse(op, rule string) {
	panic(&MisuseError{Op: op, Rule: rule})
}

// nulErr: s (what) holds a NUL byte, which C, taking strings up to their
// first NUL, would read as a shorter string: another name, path, address
// or expression than the one given.  nil when there is none.
func nulErr(what, s string) error {
	if strings.IndexByte(s, 0) < 0 {
		return nil
	}
	return fmt.Errorf("%s %q: a NUL byte: %w", what, s, syscall.EINVAL)
}
