package eventer

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer/cgo"
)

// Mask is an event's interest or readiness: the C eventer's masks.
type Mask int

// The masks (eventer.h's values).  Read and Write are fd interests;
// Exception (error or hang-up) is always reported.
const (
	Read      Mask = 0x01
	Write     Mask = 0x02
	Exception Mask = 0x04
	Timer     Mask = 0x08
	Recurrent Mask = 0x80
)

func init() {
	if Read != Mask(cgo.MaskRead) || Write != Mask(cgo.MaskWrite) || Exception != Mask(cgo.MaskException) ||
		Timer != Mask(cgo.MaskTimer) || Recurrent != Mask(cgo.MaskRecurrent) {
		panic("eventer: the masks differ from eventer.h's")
	}
}

func (m Mask) String() string {
	if m == 0 {
		return "0"
	}
	s := ""
	for _, b := range []struct {
		m Mask
		n string
	}{{Read, "Read"}, {Write, "Write"}, {Exception, "Exception"}, {Timer, "Timer"}, {Recurrent, "Recurrent"}} {
		if m&b.m != 0 {
			if s != "" {
				s += "|"
			}
			s += b.n
			m &^= b.m
		}
	}
	if m != 0 {
		s += fmt.Sprintf("|%#x", int(m))
	}
	return s
}

// Callback is a Go event callback, with the C callback's contract for its
// result: for an fd event the new interest mask, 0 meaning "done" (the
// event is removed if the callback did not remove it, and released); for
// a timer a non-zero result re-adds it, 0 ends it (and releases it); a
// recurrent event's result is ignored (it runs until removed or closed).
// An event that a callback ended is closed: its later calls return
// ErrClosed.  Inside its own callback an event may be removed, re-added
// (a timer) or closed.
type Callback func(e *Event, mask Mask, now time.Time) Mask

// Event is a C eventer_t: an fd event, a timer or a recurrent event.  An
// event with a Go callback is also callable from C as an ordinary
// eventer_func_t (the trampoline).  Its methods may be called from any
// goroutine.  Close releases it; the eventer releases an event whose
// callback ended it, and Shutdown every event left.
type Event struct {
	mu    sync.Mutex
	ptr   unsafe.Pointer // the C event, holding Go's reference; nil once released
	cb    Callback       // nil: an fd event for SetEventerAco
	id    uint64         // its callback's id (0: none)
	fd    int
	ownFd bool   // Close closes fd (events the eventer made the fd for)
	view  bool   // the Go side of a C copy (callbacks.views)
	gone  error  // why ptr is nil: ErrClosed, or a conversion
	epoch uint64 // the Init that made it
	addr  net.Addr
	tr    tracked
}

// errConverted is a call on an Event that SetEventerAco took over (a
// value made once: the conversion runs on coroutine stacks, kept small).
var errConverted = fmt.Errorf("%w: converted to an AcoEvent", ErrClosed)

// callbacks maps callback ids to their events.  An entry lives as long as
// the C event that refers to it: the C side reports ids whose last event
// was freed, and collectDead drops them.  views holds the Go side of C
// copies of Go events (eventer_alloc_copy in C code).
var callbacks struct {
	sync.RWMutex
	m     map[uint64]*Event
	views map[unsafe.Pointer]*Event
	next  uint64
}

func registerCallback(ev *Event) uint64 {
	callbacks.Lock()
	defer callbacks.Unlock()
	if callbacks.m == nil {
		callbacks.m = map[uint64]*Event{}
	}
	callbacks.next++
	id := callbacks.next
	callbacks.m[id] = ev
	return id
}

func forgetCallback(id uint64) {
	callbacks.Lock()
	delete(callbacks.m, id)
	callbacks.Unlock()
}

func forgetAllCallbacks() {
	callbacks.Lock()
	callbacks.m, callbacks.views = nil, nil
	callbacks.Unlock()
	asynchWork.Lock()
	asynchWork.m = nil
	asynchWork.Unlock()
}

// eventForDispatch is the Go event for C event e whose callback id is id:
// the one Go made, or, for a C copy of it, a Go event of its own (which
// holds a reference like any other).
func eventForDispatch(e unsafe.Pointer, id uint64) *Event {
	callbacks.RLock()
	ev := callbacks.m[id]
	view := callbacks.views[e]
	callbacks.RUnlock()
	if ev == nil {
		return nil
	}
	ev.mu.Lock()
	same := ev.ptr == e
	ev.mu.Unlock()
	if same {
		return ev
	}
	if view != nil {
		return view
	}
	view = &Event{ptr: e, cb: ev.cb, id: id, fd: cgo.Fd(e), epoch: ev.epoch, view: true}
	cgo.Ref(e)
	callbacks.Lock()
	if callbacks.views == nil {
		callbacks.views = map[unsafe.Pointer]*Event{}
	}
	callbacks.views[e] = view
	callbacks.Unlock()
	track(&view.tr, view)
	return view
}

// collectDead drops the callbacks whose C events are gone.  Called as new
// callbacks are registered and on a loop's Wake steps, so the table stays
// as large as the events alive plus those freed since.
func collectDead() {
	// (stays on the stack: the C call copies into it and keeps nothing,
	// #cgo noescape in cgo/calls.go)
	var buf [64]uint64
	for {
		n := cgo.DeadIDs(buf[:])
		if n == 0 {
			return
		}
		for _, id := range buf[:n] {
			forgetCallback(id)
		}
	}
}

func newEvent(op string, kind, fd int, mask Mask, whenUs int64, cb Callback) (*Event, error) {
	if cb == nil {
		return nil, &OpError{Op: op, Err: errors.New("nil callback")}
	}
	ev := &Event{fd: fd, cb: cb}
	collectDead()
	ev.id = registerCallback(ev)
	err := withLive(func() (err error) {
		ev.epoch = sessionNow()
		ev.ptr, err = cgo.Alloc(kind, fd, int(mask), ev.id, whenUs)
		return err
	})
	if err != nil {
		forgetCallback(ev.id)
		return nil, &OpError{Op: op, Err: err}
	}
	track(&ev.tr, ev)
	return ev, nil
}

// NewFdEvent makes an fd event whose callback is cb (eventer_alloc_fd).
// It does nothing until Add.  fd stays the caller's: Close releases the
// event, not the fd.
func NewFdEvent(fd int, mask Mask, cb Callback) (*Event, error) {
	const op = "NewFdEvent"
	if fd < 0 || mask&(Read|Write|Exception) == 0 || mask&^(Read|Write|Exception) != 0 {
		return nil, &OpError{Op: op, Err: fmt.Errorf("fd %d, mask %v: %w", fd, mask, syscall.EINVAL)}
	}
	return newEvent(op, cgo.KindFd, fd, mask, 0, cb)
}

// AddIn runs cb once after d (eventer_add_in), unless it re-adds itself.
// The event is added; it is released when its callback ends it.
func AddIn(d time.Duration, cb Callback) (*Event, error) {
	return addTimer("AddIn", time.Now().Add(d), cb)
}

// AddAt runs cb once at t (eventer_add_at); see AddIn.
func AddAt(t time.Time, cb Callback) (*Event, error) { return addTimer("AddAt", t, cb) }

func addTimer(op string, t time.Time, cb Callback) (*Event, error) {
	ev, err := newEvent(op, cgo.KindTimer, -1, Timer, t.UnixMicro(), cb)
	if err != nil {
		return nil, err
	}
	if err := ev.Add(); err != nil {
		ev.Close()
		return nil, opErr(op, err)
	}
	return ev, nil
}

// AddRecurrent runs cb once per loop iteration until removed or closed
// (eventer_add_recurrent).  The event is added.
func AddRecurrent(cb Callback) (*Event, error) {
	const op = "AddRecurrent"
	ev, err := newEvent(op, cgo.KindRecurrent, -1, Recurrent, 0, cb)
	if err != nil {
		return nil, err
	}
	if err := ev.Add(); err != nil {
		ev.Close()
		return nil, opErr(op, err)
	}
	return ev, nil
}

// closedErr is the error of a call on a closed event.
func (e *Event) closedErr() error {
	if e.gone != nil {
		return e.gone
	}
	return ErrClosed
}

// use runs fn with the C event under e's lock (calls may come from any
// goroutine; Close, and the loop ending e, take the same lock).
func (e *Event) use(op string, fn func(p unsafe.Pointer) error) error {
	if e == nil {
		return &OpError{Op: op, Err: errors.New("nil event")}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gone != nil {
		return &OpError{Op: op, Err: e.gone}
	}
	if err := withSession(e.epoch, func() error { return fn(e.ptr) }); err != nil {
		return opErr(op, err)
	}
	return nil
}

// ownDispatch is the dispatch of e's own callback on the calling thread's
// loop, if that is what runs now.
func (e *Event) ownDispatch() (*loop, *dispatch) {
	l := loopAt(cgo.CurrentLoop())
	if l == nil || !l.onItsThread() || l.disp.ev != e {
		return l, nil
	}
	return l, &l.disp
}

// Add registers the event (eventer_add).  From any goroutine: on the
// event's loop it is registered at once; from another loop's thread the
// event (when not registered) moves to that loop first; from other
// goroutines the add runs on the event's loop, and its error comes back.
// Adding a registered event fails with EBUSY.
func (e *Event) Add() error {
	const op = "Event.Add"
	if e == nil {
		return &OpError{Op: op, Err: errors.New("nil event")}
	}
	if e.cb == nil {
		return &OpError{Op: op, Err: errors.New("an event with no callback (for SetEventerAco) is not added")}
	}
	cur := cgo.CurrentLoop()
	if cur < 0 { // not a loop thread: add on the owner, wait for its word
		var l *loop
		if err := e.use(op, func(p unsafe.Pointer) error {
			if l = loopAt(cgo.OwnerLoop(p)); l == nil {
				return ErrNotInitialized
			}
			return nil
		}); err != nil {
			return err
		}
		if err := l.call(func() error { return e.addHere(op) }); err != nil {
			return opErr(op, err)
		}
		return nil
	}
	return e.addHere(op)
}

// addHere adds e from a loop's thread.
func (e *Event) addHere(op string) error {
	_, d := e.ownDispatch()
	return e.use(op, func(p unsafe.Pointer) error {
		if d != nil && d.inHand {
			// re-added from its own callback: with the eventer's reference
			// that the dispatch holds (the loop then keeps it)
			if err := cgo.Add(p); err != nil {
				return err
			}
			d.inHand = false
			return nil
		}
		if cgo.CurrentLoop() != cgo.OwnerLoop(p) && !cgo.Registered(p) {
			// another loop's thread: the event comes to this loop
			if err := cgo.SetOwnerLoop(p, cgo.CurrentLoop()); err != nil {
				return err
			}
		}
		cgo.Ref(p) // the eventer's reference
		if err := cgo.Add(p); err != nil {
			cgo.Deref(p)
			return err
		}
		return nil
	})
}

// Remove unregisters the event (eventer_remove); it stays open, to be
// added again or closed.  From another loop's goroutine the removal is
// queued to the event's loop.  An error wrapping ENOENT if it was not
// registered.
func (e *Event) Remove() error {
	const op = "Event.Remove"
	_, d := e.ownDispatch()
	return e.use(op, func(p unsafe.Pointer) error {
		ok, err := cgo.Remove(p)
		switch {
		case ok && d != nil:
			d.inHand = true // its dispatch decides (the callback's result)
		case ok:
			cgo.Deref(p) // the eventer's reference, handed back
		case errors.Is(err, syscall.EINPROGRESS):
			// queued to the owner loop, which drops the eventer's reference
		default:
			return err
		}
		return nil
	})
}

// Update sets the interest mask of an fd event (eventer_update).
func (e *Event) Update(mask Mask) error {
	return e.use("Event.Update", func(p unsafe.Pointer) error { return cgo.Update(p, int(mask)) })
}

// Trigger runs the callback with mask on the event's loop, in its next
// task phase (eventer_trigger); its result is then applied as for a
// dispatch (an fd event not registered enters the loop with the mask it
// returns).  EBUSY if the event is registered or already triggered.
func (e *Event) Trigger(mask Mask) error {
	const op = "Event.Trigger"
	if e != nil && e.cb == nil {
		return &OpError{Op: op, Err: errors.New("an event with no callback is not triggered")}
	}
	return e.use(op, func(p unsafe.Pointer) error {
		cgo.Ref(p) // the eventer's, for the dispatch
		if err := cgo.Trigger(p, int(mask)); err != nil {
			cgo.Deref(p)
			return err
		}
		return nil
	})
}

// Close removes the event if it is registered, closes its fd if the
// eventer made it (Listen, Accept, FdEvent, Co.Connect), and releases it:
// every later call returns an error satisfying errors.Is(err, ErrClosed).
// From any goroutine (from another loop's thread a registered event is
// closed by its own loop, right after Close returns).
func (e *Event) Close() error {
	const op = "Event.Close"
	if e == nil {
		return &OpError{Op: op, Err: errors.New("nil event")}
	}
	cur := cgo.CurrentLoop()
	_, d := e.ownDispatch()
	e.mu.Lock()
	if e.gone != nil {
		err := e.gone
		e.mu.Unlock()
		return &OpError{Op: op, Err: err}
	}
	if e.epoch != sessionNow() { // gone with its eventer
		e.gone, e.ptr = ErrClosed, nil
		e.mu.Unlock()
		return nil
	}
	if !running() { // its eventer is going: Shutdown releases it
		e.gone = ErrClosed
		e.mu.Unlock()
		return nil
	}
	p := e.ptr
	if owner := cgo.OwnerLoop(p); cur != owner && cgo.Registered(p) {
		// the registration is its loop's to undo (and an fd must leave
		// that loop's epoll set before it is closed: a new fd with its
		// number could be registered meanwhile)
		e.gone = ErrClosed // for everyone from now on
		e.mu.Unlock()
		l := loopAt(owner)
		if l == nil {
			return nil // Shutdown releases it
		}
		finish := func() { e.mu.Lock(); e.closeHere(nil); e.mu.Unlock() }
		if cur < 0 { // a plain goroutine waits
			_ = l.call(func() error { finish(); return nil })
		} else { // another loop's thread must not wait for this one
			_ = l.post(finish)
		}
		return nil // not run (the loop stopped): Shutdown releases it
	}
	defer e.mu.Unlock()
	e.closeHere(d)
	return nil
}

// closeHere is Close on the event's own loop thread, or for an event that
// is not registered (e.mu held).
func (e *Event) closeHere(d *dispatch) {
	if e.ptr == nil {
		return
	}
	p := e.ptr
	_ = withLive(func() error {
		if ok, _ := cgo.Remove(p); ok {
			if d != nil {
				d.inHand = true // its dispatch ends it (its result is 0)
			} else {
				cgo.Deref(p) // the eventer's, handed back
			}
		}
		return nil
	})
	if e.ownFd {
		unix.Close(e.fd)
	}
	e.releaseLocked()
}

// releaseLocked drops Go's reference: the event is closed (e.mu held).
func (e *Event) releaseLocked() {
	if e.gone == nil {
		e.gone = ErrClosed
	}
	if e.ptr == nil {
		return
	}
	p := e.ptr
	e.ptr = nil
	untrack(&e.tr)
	if e.view {
		callbacks.Lock()
		delete(callbacks.views, p)
		callbacks.Unlock()
	}
	cgo.Deref(p)
}

// consumeLocked hands Go's reference to another object (SetEventerAco).
func (e *Event) consumeLocked() {
	e.ptr, e.gone = nil, errConverted
	untrack(&e.tr)
}

func (e *Event) releaseAtShutdown() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ptr == nil {
		return
	}
	// the loops have stopped: nothing dispatches it any more, and the
	// eventer's fini drops the registration (it never closes fds)
	if e.ownFd {
		unix.Close(e.fd)
	}
	e.releaseLocked()
}

// Fd is the event's file descriptor (-1 for timers).
func (e *Event) Fd() int { return e.fd }

// Addr is the bound address of a listening event from Listen (nil
// otherwise).
func (e *Event) Addr() net.Addr { return e.addr }

// ---- listening ------------------------------------------------------------

// Listen makes a non-blocking listening socket and returns it as an fd
// event with no callback: hand it to a coroutine with SetEventerAco and
// Accept.  Close closes the socket.  network: "tcp", "tcp4", "tcp6",
// "unix".
func Listen(network, address string) (*Event, error) {
	fail := func(err error) (*Event, error) {
		return nil, &OpError{Op: "Listen", Err: &net.OpError{Op: "listen", Net: network, Err: err}}
	}
	if !running() {
		return fail(ErrNotInitialized)
	}
	sa, domain, err := sockaddr(network, address)
	if err != nil {
		return fail(err)
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail(os.NewSyscallError("socket", err))
	}
	if domain != unix.AF_UNIX {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return fail(os.NewSyscallError("bind", err))
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		unix.Close(fd)
		return fail(os.NewSyscallError("listen", err))
	}
	ev, err := plainFdEvent(fd)
	if err != nil {
		unix.Close(fd)
		return fail(err)
	}
	if bound, err := unix.Getsockname(fd); err == nil {
		ev.addr = sockaddrToAddr(bound)
	}
	return ev, nil
}

// FdEvent wraps fd (made non-blocking here) in an fd event with no
// callback, to hand to Co.SetEventerAco; the event takes fd over (Close,
// or the AcoEvent's Close, closes it).
func FdEvent(fd int) (*Event, error) {
	if fd < 0 {
		return nil, &OpError{Op: "FdEvent", Err: syscall.EINVAL}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, &OpError{Op: "FdEvent", Err: os.NewSyscallError("fcntl", err)}
	}
	ev, err := plainFdEvent(fd)
	if err != nil {
		return nil, &OpError{Op: "FdEvent", Err: err}
	}
	return ev, nil
}

// plainFdEvent wraps fd, which the event takes over, in a C fd event with
// no callback (it is meant for SetEventerAco).
func plainFdEvent(fd int) (*Event, error) {
	ev := &Event{fd: fd, ownFd: true}
	err := withLive(func() (err error) {
		ev.epoch = sessionNow()
		ev.ptr, err = cgo.Alloc(cgo.KindFd, fd, int(Read), 0, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	track(&ev.tr, ev)
	return ev, nil
}

func sockaddr(network, address string) (unix.Sockaddr, int, error) {
	switch network {
	case "unix":
		return &unix.SockaddrUnix{Name: address}, unix.AF_UNIX, nil
	case "tcp", "tcp4", "tcp6":
		a, err := net.ResolveTCPAddr(network, address)
		if err != nil {
			return nil, 0, err
		}
		ip := a.IP
		if ip == nil || network == "tcp4" || (network == "tcp" && ip.To4() != nil) {
			if ip == nil {
				ip = net.IPv4zero
			}
			if ip4 := ip.To4(); ip4 != nil {
				sa := &unix.SockaddrInet4{Port: a.Port}
				copy(sa.Addr[:], ip4)
				return sa, unix.AF_INET, nil
			}
			if network == "tcp4" {
				return nil, 0, fmt.Errorf("%s is not an IPv4 address", ip)
			}
		}
		sa := &unix.SockaddrInet6{Port: a.Port}
		copy(sa.Addr[:], ip.To16())
		return sa, unix.AF_INET6, nil
	}
	return nil, 0, net.UnknownNetworkError(network)
}

func sockaddrToAddr(sa unix.Sockaddr) net.Addr {
	switch s := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(append([]byte(nil), s.Addr[:]...)), Port: s.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(append([]byte(nil), s.Addr[:]...)), Port: s.Port}
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: s.Name, Net: "unix"}
	}
	return nil
}
