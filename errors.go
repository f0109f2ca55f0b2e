package eventer

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// ErrCanceled is the cause of an operation ended by (*Co).Cancel (C's
// ECANCELED).
var ErrCanceled = errors.New("operation canceled")

// ErrStopped: the loop has stopped, so it takes no more work (a coroutine
// started as the loops stop reports it through the error handler).
var ErrStopped = errors.New("event loop stopped")

// ErrNotInitialized is returned before Init (or after the loops stopped).
var ErrNotInitialized = errors.New("eventer not initialized")

// OpError is the error of an operation: which one, and why.  Timeouts
// satisfy errors.Is(err, os.ErrDeadlineExceeded); a closed event gives
// net.ErrClosed; a cancel gives ErrCanceled; system errors unwrap to their
// syscall.Errno.
type OpError struct {
	Op  string // "AcoEvent.Read", "Co.Sleep", ...
	Err error
}

func (e *OpError) Error() string { return "eventer: " + e.Op + ": " + e.Err.Error() }
func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the operation timed out (net.Error).
func (e *OpError) Timeout() bool { return errors.Is(e.Err, os.ErrDeadlineExceeded) }

// Temporary is always false (net.Error, deprecated).
func (e *OpError) Temporary() bool { return false }

// asOp names op in the error of an operation it made on its behalf.
func asOp(op string, err error) error {
	if oe, ok := err.(*OpError); ok {
		return &OpError{Op: op, Err: oe.Err}
	}
	return &OpError{Op: op, Err: err}
}

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
		err = net.ErrClosed
	default:
		err = os.NewSyscallError(sysName(op), errno)
	}
	return &OpError{Op: op, Err: err}
}

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
	return op
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
// that keep Go and C coroutines apart (DESIGN.md section 4).  The Go
// runtime would otherwise kill the process (or corrupt a stack); the check
// comes first, so the panic can be recovered.
type MisuseError struct {
	Op   string // the call
	Rule string // the rule it breaks
}

func (e *MisuseError) Error() string {
	return fmt.Sprintf("eventer: misuse: %s: %s", e.Op, e.Rule)
}

// The rules, as MisuseError reports them.
const (
	ruleNotCurrent = "a coroutine's blocking calls may only be made by that coroutine, " +
		"while it runs on its loop (rule 1: not from another goroutine, not on a coroutine that is not the current one)"
	ruleInCallback = "a coroutine blocks only at the top of its own body, " +
		"never inside a callback (rule 2)"
	ruleWrongThread = "blocking call from another OS thread than the coroutine's loop thread " +
		"(rule 1: not from another goroutine)"
	ruleInCCoroutine = "blocking call from a Go callback that C code called inside a C coroutine " +
		"(rule 2: never block inside a callback)"
	ruleEnded = "the coroutine has ended"
)

func misuse(op, rule string) {
	panic(&MisuseError{Op: op, Rule: rule})
}
