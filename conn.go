package eventer

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer/cgo"
)

// AcoEvent is an fd event converted for coroutines (C's eventer_aco_t):
// its calls block the calling coroutine, not the loop.  It belongs to the
// loop of the coroutine that converted it (Co.SetEventerAco); any
// coroutine of that loop may use it, and a reader and a writer coroutine
// may use it at the same time (full duplex).  Its blocking methods are
// called by coroutines of its loop (a call from anywhere else panics with
// *MisuseError); Close by anyone.  A timeout of 0 means none;
// a negative one has passed already; it bounds the whole call.
//
// Close closes the fd and releases the event; after Close every call
// returns an error satisfying errors.Is(err, net.ErrClosed) and
// errors.Is(err, ErrClosed).
type AcoEvent struct {
	ptr   unsafe.Pointer // the C aco event; nil once released
	l     *loop
	epoch uint64

	// For the POSIX opset, reads and writes are the plain syscalls, which
	// the coroutine makes itself (no cgo call); C still does all the
	// waiting.  posixClosed is C's "closed" flag of the event (C memory,
	// valid while the event lives), nil for other opsets.
	posixClosed *uint8
	// drained: the last read returned less than asked (the socket was
	// empty then), or we just wrote (a reply can't be there yet): the next
	// read that may wait goes straight to the wait (level-triggered: data
	// that came meanwhile is reported at once), saving the read(2) that
	// would find EAGAIN.  Only for plain sockets (a custom opset, e.g.
	// TLS, may hold data the socket does not show).
	drained bool
	// noSkip: a skipped read's wait was refused (EPERM: a regular file,
	// which epoll can't watch and whose reads never block): always read.
	noSkip bool
	// notSock: a recv/send found the fd is no socket (ENOTSOCK): its
	// reads and writes are read(2)/write(2).
	notSock bool
	// dgram: a datagram socket (1), or not (-1); 0 until a read first
	// returns 0 and asks (datagram)
	dgram int8
	// A listener's connection (conn): its acceptor closure and listener
	// (C memory; the loop's driver clears ac when the connection ends).
	// Such an event is not tracked: its coroutine's end releases it.
	// lplain: its opset is the listener's own (plain sockets, no callbacks
	// into Go): attempts through cgo.ListenTry, and like the POSIX opset's.
	conn, lplain bool
	// tls: the event has a TLS context: attempts through cgo.TLSTry (no
	// callbacks into Go, so no copy of the buffer)
	tls     bool
	tlsc    *tlsClient // a TLS client's session cache (Co.Connect)
	fd      int32
	closed  atomic.Bool // Close was called (by anyone)
	tr      tracked
	ac, lst unsafe.Pointer
}

// Fd is the event's file descriptor.
func (a *AcoEvent) Fd() int { return int(a.fd) }

// newAcoEvent wraps C aco event p of loop l; Go holds one reference on it
// (which the caller hands over).
func newAcoEvent(p unsafe.Pointer, l *loop) *AcoEvent {
	a := &AcoEvent{ptr: p, l: l, fd: int32(cgo.Fd(p)), epoch: sessionNow()}
	a.posixClosed = cgo.PosixClosedFlag(p)
	if a.posixClosed == nil {
		a.tls = cgo.IsTLS(p)
	}
	track(&a.tr, a)
	return a
}

// caller is the coroutine making a call on a: the running coroutine of a's
// loop, which must be the calling goroutine (rule 1).
func (a *AcoEvent) caller(op string) (*Co, error) {
	if a == nil {
		return nil, &OpError{Op: op, Err: errors.New("nil AcoEvent")}
	}
	l := a.l
	if !l.onItsThread() {
		misuse(op, ruleNoLoop)
	}
	co := l.current
	if co == nil {
		if l.cbDepth.Load() != 0 || l.driverG.Load() == (*byte)(getg()) {
			misuse(op, ruleInCallback)
		}
		misuse(op, ruleNoLoop)
	}
	if err := co.enter(op); err != nil {
		return nil, err
	}
	return co, nil
}

// ready checks a call: the caller, and that a is open.
func (a *AcoEvent) ready(op string) (*Co, error) {
	co, err := a.caller(op)
	if err != nil {
		return nil, err
	}
	if a.closed.Load() {
		return nil, &OpError{Op: op, Err: errClosedIO}
	}
	if a.epoch != sessionNow() {
		return nil, &OpError{Op: op, Err: ErrNotInitialized}
	}
	return co, nil
}

// waitReady waits (through co's proxy) until a is ready for mask; readLen
// > 0 asks for a read-through.  0, or -1 with the errno; data: bytes the
// wait already read.
func (a *AcoEvent) waitReady(co *Co, op string, mask, readLen int, timeoutNs int64) (int64, syscall.Errno, []byte) {
	if co.takeCancel() {
		return -1, syscall.ECANCELED, nil
	}
	p, err := co.proxyOf(op)
	if err != nil {
		return -1, syscall.ENOMEM, nil
	}
	// the driver sets the wait up as we hand it the loop (saves a cgo
	// call); a wait that ends at once comes back as a completion
	if co.l.drv.RequestWait(p, a.ptr, mask, readLen, timeoutNs, uint64(co.id)) {
		co.wait = waitC
		co.park()
		// the wait may have read for us already (read-through): the bytes
		// are C memory, valid until the coroutine waits again
		return co.l.res, co.l.errno, co.l.data
	}
	res, errno := co.complete(op, cgo.Wait(p, a.ptr, mask, readLen, timeoutNs), waitC)
	return res, errno, co.l.data
}

// io is one read, write or accept, as eventer_aco_read & co. do it: an
// attempt; if it would block, a readiness wait (in C, by the coroutine's
// proxy); again.  The Go buffer is handed to C only for the duration of
// an attempt, never across a wait.  timeout bounds the whole call.
//
// This is the Go copy of the loop of ev_aco_fd_op (C coroutines).  For
// the POSIX opset the attempt is the raw syscall, made here with no cgo
// call (measured: a cgo call per attempt cost the would-block cycle ~15%);
// other opsets attempt through C (ev_aco_fd_try).  The waits are C's in
// both.  The conformance scenarios (testdata/conformance) run the same
// steps through both loops and compare.
func (a *AcoEvent) io(co *Co, op string, code int, p []byte, timeout time.Duration) (int64, syscall.Errno) {
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
		var res int64
		var errno syscall.Errno
		var mask int
		// plain sockets (the POSIX opset, a listener's own): an opset
		// that holds no bytes the socket does not show
		plain := a.posixClosed != nil || a.lplain
		if plain && code != cgo.IOAccept {
			if a.posixClosed != nil && *a.posixClosed != 0 {
				return -1, syscall.EBADF
			}
			if code == cgo.IORead && a.drained && !a.noSkip && remaining() != 0 {
				a.drained, skipped = false, true
				errno = syscall.EAGAIN // skip the read that would find nothing
			} else {
				if a.posixClosed != nil {
					// the POSIX opset's read/write, done here: a
					// non-blocking fd, so the raw syscall never blocks
					res, errno = rawIO(code, int(a.fd), p, &a.notSock)
				} else {
					res, errno, _ = cgo.ListenTry(a.ptr, code, p)
				}
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
			mask = cgo.MaskWrite
			if code == cgo.IORead {
				mask = cgo.MaskRead
			}
		} else if a.tls && code != cgo.IOAccept {
			res, errno, mask = cgo.TLSTry(a.ptr, code, p)
			if errno != syscall.EAGAIN {
				return res, errno
			}
		} else {
			res, errno, mask = a.l.tryCopy(a.ptr, code, p)
			if errno != syscall.EAGAIN {
				return res, errno
			}
		}
		readLen := 0
		if code == cgo.IORead && plain {
			readLen = len(p)
		}
		res, errno, data := a.waitReady(co, op, mask, readLen, remaining())
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

// tryCopy is one attempt through e's opset (cgo.Try) with the loop's
// scratch buffer in place of p: an opset may call back into Go (a TLS
// error is logged through Go), so C gets no buffer of ours, which would
// have to live on the heap (p is often a coroutine's stack buffer).  At
// most 64 KiB an attempt (a short read or write, as the syscalls may
// make).  Loop thread only.
func (l *loop) tryCopy(e unsafe.Pointer, code int, p []byte) (int64, syscall.Errno, int) {
	n := min(len(p), 64<<10)
	if cap(l.scratch) < n {
		l.scratch = make([]byte, n)
	}
	b := l.scratch[:n]
	if code == cgo.IOWrite {
		copy(b, p)
	}
	res, errno, mask := cgo.Try(e, code, b)
	switch {
	case code == cgo.IORead && res > 0:
		copy(p, b[:res])
	case code == cgo.IOAccept:
		copy(p, b) // the peer's address
	}
	return res, errno, mask
}

// rawIO is read(2) or write(2) on a non-blocking fd: on a socket as
// recv(2)/send(2) with no flags (POSIX's same calls, SIGPIPE included,
// which Linux serves past the file layer), as C's POSIX opset makes them;
// the first ENOTSOCK sets *notSock and the call is made as read/write.
func rawIO(code, fd int, p []byte, notSock *bool) (int64, syscall.Errno) {
	ptr, n := uintptr(unsafe.Pointer(&p[0])), uintptr(len(p))
	if !*notSock {
		nr := uintptr(unix.SYS_SENDTO)
		if code == cgo.IORead {
			nr = unix.SYS_RECVFROM
		}
		r, _, e := syscall.RawSyscall6(nr, uintptr(fd), ptr, n, 0, 0, 0)
		if e == 0 {
			return int64(r), 0
		}
		if e != syscall.ENOTSOCK {
			return -1, e
		}
		*notSock = true
	}
	nr := uintptr(unix.SYS_WRITE)
	if code == cgo.IORead {
		nr = unix.SYS_READ
	}
	r, _, e := syscall.RawSyscall(nr, uintptr(fd), ptr, n)
	if e != 0 {
		return -1, e
	}
	return int64(r), 0
}

// Read reads into p (eventer_aco_read).  At end of stream it returns 0,
// io.EOF (an empty datagram on a datagram socket: 0, nil); on timeout
// an error with errors.Is(err, os.ErrDeadlineExceeded).
func (a *AcoEvent) Read(p []byte, timeout time.Duration) (int, error) {
	const op = "AcoEvent.Read"
	co, err := a.ready(op)
	if err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, errno := a.io(co, op, cgo.IORead, p, timeout)
	if errno == syscall.EIO {
		return 0, a.tlsErr(op, "read", errno)
	}
	if n == 0 && !a.tls && a.datagram() { // (TLS runs on streams only)
		return 0, nil // an empty datagram, no end of stream (as net's)
	}
	return readResult(n, errno, len(p))
}

// datagram reports whether a's fd is a datagram socket (SOCK_DGRAM or
// SOCK_RAW), where a read's 0 is an empty datagram, not the end; asked
// once, at the first read that returns 0.
func (a *AcoEvent) datagram() bool {
	if a.dgram == 0 {
		a.dgram = -1
		if t, err := unix.GetsockoptInt(int(a.fd), unix.SOL_SOCKET, unix.SO_TYPE); err == nil &&
			(t == unix.SOCK_DGRAM || t == unix.SOCK_RAW) {
			a.dgram = 1
		}
	}
	return a.dgram > 0
}

// Write writes p (eventer_aco_write); it may write less than len(p), as
// write(2) does (Conn's Write writes everything).
func (a *AcoEvent) Write(p []byte, timeout time.Duration) (int, error) {
	const op = "AcoEvent.Write"
	co, err := a.ready(op)
	if err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, errno := a.io(co, op, cgo.IOWrite, p, timeout)
	if n < 0 {
		return 0, a.tlsErr(op, "write", errno)
	}
	return int(n), nil
}

// Wait waits until the event is ready for mask (Read and/or Write)
// without reading or writing (eventer_aco_wait_ready): a connection can
// wait for its next request holding no buffer.
func (a *AcoEvent) Wait(mask Mask, timeout time.Duration) error {
	const op = "AcoEvent.Wait"
	co, err := a.ready(op)
	if err != nil {
		return err
	}
	if mask&(Read|Write) == 0 || mask&^(Read|Write) != 0 {
		return &OpError{Op: op, Err: syscall.EINVAL}
	}
	if a.posixClosed != nil && *a.posixClosed != 0 {
		return errnoError(op, syscall.EBADF)
	}
	if a.tls && mask&Read != 0 {
		return a.waitTLSRead(co, op, mask, timeout)
	}
	res, errno, _ := a.waitReady(co, op, int(mask), 0, timeoutNs(timeout))
	if res < 0 {
		if errno == syscall.EPERM { // an fd epoll can't watch is always ready
			return nil
		}
		return errnoError(op, errno)
	}
	return nil
}

// Accept accepts a connection on a listening event (eventer_aco_accept)
// and returns it as a new fd event (non-blocking, close-on-exec; closing
// it closes the connection), ready for SetEventerAco.
func (a *AcoEvent) Accept(timeout time.Duration) (*Event, error) {
	const op = "AcoEvent.Accept"
	co, err := a.ready(op)
	if err != nil {
		return nil, err
	}
	var peer [128]byte // a sockaddr_storage
	fd, errno := a.io(co, op, cgo.IOAccept, peer[:], timeout)
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

// Close closes the event (eventer_aco_close: coroutines waiting on it get
// net.ErrClosed, the fd is closed) and releases it: the one call that
// ends an AcoEvent.  A second Close returns an error satisfying
// errors.Is(err, ErrClosed).  Close may be called from any goroutine: on
// its loop's thread it closes at once; from a plain goroutine it has the
// loop do it and waits; from another loop's thread it has the loop do it
// and returns (two loops waiting for each other would deadlock).  While
// Shutdown unwinds a coroutine, its deferred Close still closes; a Close
// that comes after the loop stopped leaves the fd to Shutdown, which
// closes it.
func (a *AcoEvent) Close() error {
	const op = "AcoEvent.Close"
	if a == nil {
		return &OpError{Op: op, Err: errors.New("nil AcoEvent")}
	}
	if !a.closed.CompareAndSwap(false, true) {
		return &OpError{Op: op, Err: ErrClosed}
	}
	if a.l.onItsThread() {
		return a.closeHere(op)
	}
	var err error
	if cgo.InLoop() {
		err = a.l.post(func() { _ = a.closeHere(op) })
	} else {
		err = a.l.call(func() error { return a.closeHere(op) })
	}
	if errors.Is(err, ErrStopped) || errors.Is(err, ErrNotInitialized) {
		return nil // Shutdown closes and releases it
	}
	return err
}

// closeHere is Close on the loop's thread.
func (a *AcoEvent) closeHere(op string) error {
	if a.ptr == nil || a.epoch != sessionNow() { // released with its eventer at Shutdown
		return nil
	}
	a.keepSession()
	err := cgo.AcoClose(a.ptr) // EBADF: closed through the C API already
	a.release()
	if err != nil && !errors.Is(err, syscall.EBADF) {
		return &OpError{Op: op, Err: os.NewSyscallError("close", err)}
	}
	return nil
}

// release drops Go's reference (loop thread, or at Shutdown).
func (a *AcoEvent) release() {
	if a.ptr == nil {
		return
	}
	if !a.conn {
		untrack(&a.tr)
	}
	if p := a.ptr; a.l.onItsThread() && a.l.drv.WaitPendingOn(p) {
		// a coroutine of this loop parked on a wait of p that the driver
		// sets up when this step is over, and that request holds no
		// reference: drop ours after it (a later wake step), or the
		// driver would set the wait up on a freed event.  (Found by the
		// conformance scenario io_close_wakes_reader.)
		if a.l.post(func() { cgo.Deref(p) }) != nil {
			cgo.Deref(p) // the loop stopped: no driver step will come
		}
	} else {
		cgo.Deref(p)
	}
	a.ptr, a.posixClosed = nil, nil
}

func (a *AcoEvent) releaseAtShutdown() {
	// the loops have stopped: the fd is closed as Close would (nothing
	// waits any more), unless C closed it already, and the reference
	// dropped before the eventer goes
	if a.ptr != nil && !cgo.AcoClosed(a.ptr) {
		a.closed.Store(true)
		unix.Close(int(a.fd))
	}
	a.release()
}

// Conn is the AcoEvent as a net.Conn for Go libraries (bufio, encoding,
// TLS), with deadlines.  Like the AcoEvent, its Read and Write may be
// called only by coroutines of its loop; Close (the AcoEvent's) and the
// deadline setters from any goroutine.  A deadline set while a Read or
// Write waits applies from its next call: to end a waiting call from
// elsewhere, Close the Conn or Cancel the coroutine.
func (a *AcoEvent) Conn() net.Conn { return &acoConn{a: a} }

type acoConn struct {
	a        *AcoEvent
	rdl, wdl atomic.Int64 // deadlines, UnixNano (0: none)
	addrMu   sync.Mutex
	local    net.Addr
	remote   net.Addr
}

func untilDeadline(dl *atomic.Int64) (time.Duration, bool) {
	ns := dl.Load()
	if ns == 0 {
		return 0, true
	}
	d := time.Until(time.Unix(0, ns))
	if d <= 0 {
		return 0, false
	}
	return d, true
}

func deadlineNs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	if ns := t.UnixNano(); ns != 0 {
		return ns
	}
	return 1 // the epoch itself: long past
}

func (c *acoConn) Read(p []byte) (int, error) {
	d, ok := untilDeadline(&c.rdl)
	if !ok {
		if _, err := c.a.ready("AcoEvent.Read"); err != nil {
			return 0, err // closed wins over an expired deadline, as in net
		}
		return 0, &OpError{Op: "AcoEvent.Read", Err: os.ErrDeadlineExceeded}
	}
	return c.a.Read(p, d)
}

func (c *acoConn) Write(p []byte) (int, error) {
	total := 0
	for total < len(p) {
		d, ok := untilDeadline(&c.wdl)
		if !ok {
			if _, err := c.a.ready("AcoEvent.Write"); err != nil {
				return total, err
			}
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

func (c *acoConn) Close() error { return c.a.Close() }

func (c *acoConn) LocalAddr() net.Addr {
	c.addrMu.Lock()
	defer c.addrMu.Unlock()
	if c.local == nil {
		if sa, err := unix.Getsockname(c.a.Fd()); err == nil {
			c.local = sockaddrToAddr(sa)
		}
	}
	return c.local
}

func (c *acoConn) RemoteAddr() net.Addr {
	c.addrMu.Lock()
	defer c.addrMu.Unlock()
	if c.remote == nil {
		if sa, err := unix.Getpeername(c.a.Fd()); err == nil {
			c.remote = sockaddrToAddr(sa)
		}
	}
	return c.remote
}

func (c *acoConn) SetDeadline(t time.Time) error {
	c.rdl.Store(deadlineNs(t))
	c.wdl.Store(deadlineNs(t))
	return nil
}
func (c *acoConn) SetReadDeadline(t time.Time) error  { c.rdl.Store(deadlineNs(t)); return nil }
func (c *acoConn) SetWriteDeadline(t time.Time) error { c.wdl.Store(deadlineNs(t)); return nil }

var _ net.Conn = (*acoConn)(nil)
var _ io.ReadWriteCloser = (*acoConn)(nil)

// SetEventerAco converts fd event e for the coroutines of co's loop
// (eventer_set_eventer_aco) and returns it as an AcoEvent, which takes e
// over: e is consumed (its later calls return ErrClosed) and the AcoEvent's
// Close closes the fd.  e must be an fd event that is not registered.
func (co *Co) SetEventerAco(e *Event) (*AcoEvent, error) {
	const op = "Co.SetEventerAco"
	if err := co.enter(op); err != nil {
		return nil, err
	}
	if e == nil {
		return nil, &OpError{Op: op, Err: errors.New("nil event")}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gone != nil {
		return nil, &OpError{Op: op, Err: e.gone}
	}
	if e.epoch != sessionNow() {
		return nil, &OpError{Op: op, Err: ErrNotInitialized}
	}
	if e.fd < 0 {
		return nil, &OpError{Op: op, Err: errors.New("not an fd event")}
	}
	if cgo.IsAco(e.ptr) {
		// converted already (by C code): it must be this loop's
		if cgo.OwnerLoop(e.ptr) != co.l.idx {
			return nil, &OpError{Op: op, Err: errors.New("the event belongs to another loop's coroutines")}
		}
	} else if err := cgo.Convert(e.ptr); err != nil {
		if errors.Is(err, syscall.EINVAL) && cgo.Registered(e.ptr) {
			err = errors.New("the event is registered (remove it first)")
		}
		return nil, &OpError{Op: op, Err: err}
	}
	// e's reference goes to the AcoEvent
	p := e.ptr
	e.consumeLocked()
	return newAcoEvent(p, co.l), nil
}

// Connect makes a non-blocking socket, connects it within timeout (0:
// none) and returns it as an AcoEvent of this coroutine's loop
// (eventer_aco_connect).  network: "tcp", "tcp4", "tcp6", "unix".  With
// WithClientTLS it is a TLS client: timeout bounds the connect and the
// handshake together.
func (co *Co) Connect(network, address string, timeout time.Duration, opts ...ConnectOption) (*AcoEvent, error) {
	const op = "Co.Connect"
	if err := co.enter(op); err != nil {
		return nil, err
	}
	var cc connectConfig
	for _, o := range opts {
		if o != nil {
			o(&cc)
		}
	}
	var deadline time.Time
	if timeout != 0 {
		deadline = time.Now().Add(timeout)
	}
	sa, domain, err := sockaddr(network, address)
	if err != nil {
		return nil, &OpError{Op: op, Err: err}
	}
	var tlsCtx unsafe.Pointer
	var tlsc *tlsClient
	if cc.tls != nil {
		if tlsCtx, tlsc, err = clientTLS(network, address, cc.tls); err != nil {
			return nil, &OpError{Op: op, Err: err}
		}
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if tlsCtx != nil {
			cgo.TLSCtxFree(tlsCtx)
		}
		return nil, &OpError{Op: op, Err: os.NewSyscallError("socket", err)}
	}
	ev, err := plainFdEvent(fd)
	if err != nil {
		unix.Close(fd)
		if tlsCtx != nil {
			cgo.TLSCtxFree(tlsCtx)
		}
		return nil, &OpError{Op: op, Err: err}
	}
	if tlsCtx != nil {
		// before the conversion: an aco event takes no new opset
		if err := cgo.TLSAttach(ev.ptr, tlsCtx); err != nil {
			ev.Close()
			return nil, &OpError{Op: op, Err: fmt.Errorf("TLS: %w", err)}
		}
	}
	ae, err := co.SetEventerAco(ev)
	if err != nil {
		ev.Close()
		return nil, opErr(op, err)
	}
	fail := func(errno syscall.Errno) (*AcoEvent, error) {
		ae.Close()
		return nil, errnoError(op, errno)
	}
	for {
		err = unix.Connect(fd, sa)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		if err != unix.EINPROGRESS {
			return fail(err.(syscall.Errno))
		}
		res, errno, _ := ae.waitReady(co, op, cgo.MaskWrite, 0, timeoutNs(timeout))
		if res < 0 {
			return fail(errno)
		}
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return fail(err.(syscall.Errno))
		}
		if soerr != 0 {
			return fail(syscall.Errno(soerr))
		}
	}
	if tlsCtx == nil {
		return ae, nil
	}
	limit := cc.tls.HandshakeTimeout
	if limit == 0 {
		limit = defaultHandshakeTimeout
	}
	hsDeadline := time.Now().Add(limit)
	if !deadline.IsZero() && deadline.Before(hsDeadline) {
		hsDeadline, limit = deadline, timeout
	}
	if err := ae.handshake(co, op, false, hsDeadline, limit); err != nil {
		ae.Close()
		return nil, err
	}
	ae.tlsc = tlsc
	ae.keepSession() // TLS 1.2's; TLS 1.3's comes with a ticket, kept at Close
	return ae, nil
}
