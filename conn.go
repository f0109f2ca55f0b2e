package eventer

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer/cgo"
)

// AcoEvent is an fd event converted for a coroutine (C's eventer_aco_t):
// its calls block the coroutine, not the loop.  Its methods may be called
// only by the coroutine that converted it (Co.SetEventerAco).  A timeout
// of 0 means none; it bounds the whole call.
type AcoEvent struct {
	e      *Event
	co     *Co
	err    error // conversion error
	closed bool
	view   bool // a second coroutine's view: holds its own reference

	// For the POSIX opset, reads and writes are the plain syscalls, which
	// the coroutine makes itself (no cgo call); C still does all the
	// waiting.  posixClosed is C's "closed" flag of the event (C memory,
	// valid while the event lives), nil for other opsets.
	posixClosed *uint8
	fd          int
	// drained: the last read returned less than asked (the socket was
	// empty then), or we just wrote (a reply can't be there yet): the next
	// read that may wait goes straight to the wait (level-triggered: data
	// that came meanwhile is reported at once), saving the read(2) that
	// would find EAGAIN.  Only for the posix opset (a custom opset, e.g.
	// TLS, may hold data the socket does not show).
	drained bool
	// noSkip: a skipped read's wait was refused (EPERM: a regular file,
	// which epoll can't watch and whose reads never block): always read.
	noSkip bool
}

// Event is the underlying fd event.
func (a *AcoEvent) Event() *Event { return a.e }

// Fd is the event's file descriptor.
func (a *AcoEvent) Fd() int { return a.e.Fd() }

func (a *AcoEvent) ready(op string) error {
	if a == nil || a.co == nil {
		return &OpError{Op: op, Err: errors.New("nil AcoEvent")}
	}
	a.co.enter(op)
	if a.err != nil {
		return a.err
	}
	if a.closed {
		return &OpError{Op: op, Err: net.ErrClosed}
	}
	return nil
}

// io is one read, write or accept, as eventer_aco_read & co. do it: try
// the syscall; if it would block, wait (in C, through the proxy) until the
// fd is ready, and try again.  The Go buffer is handed to C only for the
// duration of each attempt, never across a wait.  timeout bounds the
// whole call.
func (a *AcoEvent) io(op string, code int, p []byte, timeout time.Duration) (int64, syscall.Errno) {
	co := a.co
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	remaining := func() int64 {
		if timeout <= 0 {
			return timeoutNs(timeout)
		}
		if d := int64(time.Until(deadline)); d > 0 {
			return d
		}
		return 0 // expired: the wait fails at once
	}
	skipped := false // this attempt's read was skipped (a.drained)
	for {
		var rc int
		var res int64
		var errno syscall.Errno
		if a.posixClosed != nil && code != cgo.IOAccept {
			// the POSIX opset's read/write, done here: a non-blocking fd,
			// so the raw syscall never blocks the thread
			if *a.posixClosed != 0 {
				return -1, syscall.EBADF
			}
			if code == cgo.IORead && a.drained && !a.noSkip && remaining() != 0 {
				a.drained, skipped = false, true
				errno = syscall.EAGAIN // skip the read that would find nothing
			} else {
				res, errno = rawIO(code, a.fd, p)
				if errno == syscall.EINTR {
					continue
				}
				if errno != syscall.EAGAIN {
					if code == cgo.IORead {
						a.drained = res > 0 && int(res) < len(p)
					} else if res > 0 {
						a.drained = true
					}
					return res, errno
				}
			}
			mask, readLen := cgo.MaskWrite, 0
			if code == cgo.IORead {
				mask, readLen = cgo.MaskRead, len(p)
			}
			// the driver sets the wait up as we hand it the loop (saves a
			// cgo call); a wait that ends at once comes back as a completion
			if co.l.drv.RequestWait(co.proxy, a.e.ptr, mask, readLen, remaining(), co.id) {
				rc = 0
			} else {
				rc, res, errno = cgo.Wait(co.proxy, a.e.ptr, mask, readLen, remaining())
			}
		} else {
			rc, res, errno = cgo.IO(co.proxy, code, a.e.ptr, p, remaining())
			if rc == 1 {
				return res, errno
			}
		}
		var data []byte
		switch rc {
		case -1:
			co.complete(op, -1, -1, errno) // panics with the misuse
			return -1, errno
		case 0:
			res, errno = co.complete(op, 0, 0, 0)
			// the wait may have read for us already (read-through): copy
			// it out before anything else runs on the loop
			data, co.data = co.data, nil
		}
		if res < 0 {
			if skipped && errno == syscall.EPERM {
				// the wait that replaced a skipped read was refused: the
				// fd can't be polled (a regular file, whose reads never
				// block), so read for real, now and from now on
				skipped, a.noSkip = false, true
				continue
			}
			return -1, errno
		}
		if data != nil {
			a.drained = len(data) > 0 && len(data) < len(p)
			return int64(copy(p, data)), 0
		}
		skipped = false // ready: try again
	}
}

// rawIO is read(2) or write(2) on a non-blocking fd.
func rawIO(code, fd int, p []byte) (int64, syscall.Errno) {
	nr := uintptr(unix.SYS_WRITE)
	if code == cgo.IORead {
		nr = unix.SYS_READ
	}
	n, _, e := syscall.RawSyscall(nr, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int64(n), 0
}

// Read reads into p (eventer_aco_read).  At end of stream it returns 0,
// io.EOF; on timeout an error with errors.Is(err, os.ErrDeadlineExceeded).
func (a *AcoEvent) Read(p []byte, timeout time.Duration) (int, error) {
	const op = "AcoEvent.Read"
	if err := a.ready(op); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, errno := a.io(op, cgo.IORead, p, timeout)
	return readResult(n, errno, len(p))
}

// Write writes p (eventer_aco_write); it may write less than len(p), as
// write(2) does (Conn's Write writes everything).
func (a *AcoEvent) Write(p []byte, timeout time.Duration) (int, error) {
	const op = "AcoEvent.Write"
	if err := a.ready(op); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, errno := a.io(op, cgo.IOWrite, p, timeout)
	if n < 0 {
		return 0, errnoError(op, errno)
	}
	return int(n), nil
}

// Accept accepts a connection on a listening event (eventer_aco_accept)
// and returns it as a new fd event (non-blocking, close-on-exec), ready
// for SetEventerAco.
func (a *AcoEvent) Accept(timeout time.Duration) (*Event, error) {
	const op = "AcoEvent.Accept"
	if err := a.ready(op); err != nil {
		return nil, err
	}
	var peer [128]byte // a sockaddr_storage
	fd, errno := a.io(op, cgo.IOAccept, peer[:], timeout)
	if fd < 0 {
		return nil, errnoError(op, errno)
	}
	ev, err := plainFdEvent(int(fd))
	if err != nil {
		unix.Close(int(fd))
		return nil, &OpError{Op: op, Err: err}
	}
	return ev, nil
}

// Close closes the event (eventer_aco_close): coroutines waiting on it
// get net.ErrClosed, the fd is closed.  The AcoEvent stays allocated until
// Free.
func (a *AcoEvent) Close() error {
	const op = "AcoEvent.Close"
	if err := a.ready(op); err != nil {
		return err
	}
	a.closed = true
	rc, res, errno := cgo.ProxyIO(a.co.proxy, cgo.OpClose, a.e.ptr, -1)
	res, errno = a.co.complete(op, rc, res, errno)
	if res < 0 {
		return errnoError(op, errno)
	}
	return nil
}

// Free drops the caller's reference to the event (eventer_aco_free).
func (a *AcoEvent) Free() {
	if a != nil && a.e != nil {
		a.e.Free() // a view's own reference, or the converted event's
		a.e = &Event{fd: -1, err: net.ErrClosed}
		a.posixClosed = nil
	}
}

func (a *AcoEvent) closeAndFree() {
	if a.err == nil && !a.closed {
		_ = a.Close()
	}
	a.Free()
}

// Conn is the AcoEvent as a net.Conn for Go libraries (bufio, encoding,
// TLS), with deadlines.  Like the AcoEvent, it may be used only by its
// coroutine.  Close closes and frees the event.
func (a *AcoEvent) Conn() net.Conn { return &acoConn{a: a} }

type acoConn struct {
	a             *AcoEvent
	rdl, wdl      time.Time
	local, remote net.Addr
}

func untilDeadline(t time.Time) (time.Duration, bool) {
	if t.IsZero() {
		return 0, true
	}
	d := time.Until(t)
	if d <= 0 {
		return 0, false
	}
	return d, true
}

func (c *acoConn) Read(p []byte) (int, error) {
	d, ok := untilDeadline(c.rdl)
	if !ok {
		return 0, &OpError{Op: "AcoEvent.Read", Err: os.ErrDeadlineExceeded}
	}
	return c.a.Read(p, d)
}

func (c *acoConn) Write(p []byte) (int, error) {
	total := 0
	for total < len(p) {
		d, ok := untilDeadline(c.wdl)
		if !ok {
			return total, &OpError{Op: "AcoEvent.Write", Err: os.ErrDeadlineExceeded}
		}
		n, err := c.a.Write(p[total:], d)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (c *acoConn) Close() error {
	err := c.a.Close()
	c.a.Free()
	return err
}

func (c *acoConn) LocalAddr() net.Addr {
	if c.local == nil {
		if sa, err := unix.Getsockname(c.a.Fd()); err == nil {
			c.local = sockaddrToAddr(sa)
		}
	}
	return c.local
}

func (c *acoConn) RemoteAddr() net.Addr {
	if c.remote == nil {
		if sa, err := unix.Getpeername(c.a.Fd()); err == nil {
			c.remote = sockaddrToAddr(sa)
		}
	}
	return c.remote
}

func (c *acoConn) SetDeadline(t time.Time) error      { c.rdl, c.wdl = t, t; return nil }
func (c *acoConn) SetReadDeadline(t time.Time) error  { c.rdl = t; return nil }
func (c *acoConn) SetWriteDeadline(t time.Time) error { c.wdl = t; return nil }

var _ net.Conn = (*acoConn)(nil)
var _ io.ReadWriteCloser = (*acoConn)(nil)

// rawSockaddr encodes sa as the C struct sockaddr_* bytes.
func rawSockaddr(sa unix.Sockaddr) ([]byte, error) {
	switch s := sa.(type) {
	case *unix.SockaddrInet4:
		b := make([]byte, unix.SizeofSockaddrInet4)
		binary.NativeEndian.PutUint16(b[0:], unix.AF_INET)
		binary.BigEndian.PutUint16(b[2:], uint16(s.Port))
		copy(b[4:8], s.Addr[:])
		return b, nil
	case *unix.SockaddrInet6:
		b := make([]byte, unix.SizeofSockaddrInet6)
		binary.NativeEndian.PutUint16(b[0:], unix.AF_INET6)
		binary.BigEndian.PutUint16(b[2:], uint16(s.Port))
		copy(b[8:24], s.Addr[:])
		binary.NativeEndian.PutUint32(b[24:], s.ZoneId)
		return b, nil
	case *unix.SockaddrUnix:
		if len(s.Name) >= 108 {
			return nil, errors.New("unix socket path too long")
		}
		b := make([]byte, 2+len(s.Name)+1)
		binary.NativeEndian.PutUint16(b[0:], unix.AF_UNIX)
		copy(b[2:], s.Name)
		return b, nil
	}
	return nil, errors.New("unsupported address")
}
