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

// The fd masks.  Read and Write are interests; Exception (error or
// hang-up) is always reported.
const (
	Read      Mask = Mask(cgo.MaskRead)
	Write     Mask = Mask(cgo.MaskWrite)
	Exception Mask = Mask(cgo.MaskException)
	Timer     Mask = Mask(cgo.MaskTimer)
	Recurrent Mask = Mask(cgo.MaskRecurrent)
)

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

// Callback is a Go event callback, with the C callback's contract: for an
// fd event the result is the new interest mask (0: done; the callback must
// have called Remove first, and the event is then freed); for a timer a
// non-zero result re-adds it; a recurrent event's result is ignored.
type Callback func(e *Event, mask Mask, now time.Time) Mask

// Event is a C eventer_t.  An event with a Go callback is also callable
// from C as an ordinary eventer_func_t (the trampoline).
type Event struct {
	ptr unsafe.Pointer // the C event (eventer_t)
	id  uint64         // its Go callback (0: none)
	cb  Callback
	fd  int
	err error // an allocation error, reported by Add
	// listeners: the bound address
	addr  net.Addr
	epoch uint64 // the Init that made it
}

// callbacks maps callback ids to their events.  An entry lives as long as
// the C event that refers to it: the C side reports ids whose last event
// was freed, and collectDead drops them.
var callbacks struct {
	sync.RWMutex
	m    map[uint64]*Event
	next uint64
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

func lookupCallback(id uint64) *Event {
	callbacks.RLock()
	defer callbacks.RUnlock()
	return callbacks.m[id]
}

func forgetCallback(id uint64) {
	callbacks.Lock()
	delete(callbacks.m, id)
	callbacks.Unlock()
}

func forgetAllCallbacks() {
	callbacks.Lock()
	callbacks.m = nil
	callbacks.Unlock()
	asynchWork.Lock()
	asynchWork.m = nil
	asynchWork.Unlock()
}

// collectDead drops the callbacks whose C events are gone.  Called as new
// callbacks are registered and on a loop's Wake steps, so the table stays
// as large as the events alive plus those freed since.
func collectDead() {
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

func newEvent(kind, fd int, mask Mask, whenUs int64, cb Callback) *Event {
	ev := &Event{fd: fd, cb: cb}
	if !running() {
		ev.err = ErrNotInitialized
		return ev
	}
	if cb == nil {
		ev.err = errors.New("nil callback")
		return ev
	}
	collectDead()
	ev.id = registerCallback(ev)
	var p unsafe.Pointer
	err := withLive(func() (err error) {
		ev.epoch = sessionNow()
		p, err = cgo.Alloc(kind, fd, int(mask), ev.id, whenUs)
		return err
	})
	if err != nil {
		forgetCallback(ev.id)
		ev.err = err
		return ev
	}
	ev.ptr = p
	return ev
}

// NewFdEvent makes an fd event whose callback is cb (eventer_alloc_fd).
// It does nothing until Add.  An invalid fd or mask is reported by Add.
func NewFdEvent(fd int, mask Mask, cb func(e *Event, mask Mask, now time.Time) Mask) *Event {
	if fd < 0 || mask&(Read|Write|Exception) == 0 || mask&^(Read|Write|Exception) != 0 {
		return &Event{fd: fd, err: fmt.Errorf("fd %d, mask %v: %w", fd, mask, syscall.EINVAL)}
	}
	return newEvent(cgo.KindFd, fd, mask, 0, cb)
}

// AddIn runs cb once after d (eventer_add_in).  The event is added.
func AddIn(d time.Duration, cb func(e *Event, mask Mask, now time.Time) Mask) *Event {
	return AddAt(time.Now().Add(d), cb)
}

// AddAt runs cb once at t (eventer_add_at).  The event is added.
func AddAt(t time.Time, cb func(e *Event, mask Mask, now time.Time) Mask) *Event {
	ev := newEvent(cgo.KindTimer, -1, Timer, t.UnixMicro(), cb)
	_ = ev.Add()
	return ev
}

// AddRecurrent runs cb once per loop iteration until removed
// (eventer_add_recurrent).  The event is added.
func AddRecurrent(cb func(e *Event, mask Mask, now time.Time) Mask) *Event {
	ev := newEvent(cgo.KindRecurrent, -1, Recurrent, 0, cb)
	_ = ev.Add()
	return ev
}

// Err is the error of making the event, if any.
func (e *Event) Err() error { return e.err }

// Add registers the event (eventer_add); callable from any goroutine.
// The eventer owns it from then on: after its callback returns 0 (fd) or
// it fires (timer), it is freed.
func (e *Event) Add() error {
	if e.err != nil {
		return &OpError{Op: "Event.Add", Err: e.err}
	}
	if e.ptr == nil {
		return &OpError{Op: "Event.Add", Err: errors.New("event has no C side")}
	}
	if err := withSession(e.epoch, func() error { return cgo.Add(e.ptr) }); err != nil {
		return &OpError{Op: "Event.Add", Err: err}
	}
	return nil
}

// Remove unregisters the event (eventer_remove); inside an fd callback,
// call it before returning 0.  On the owner loop the event is handed back
// to the caller (free it with Free unless it is added again).
func (e *Event) Remove() error {
	if e.ptr == nil {
		return &OpError{Op: "Event.Remove", Err: errors.New("event has no C side")}
	}
	ok := false
	err := withSession(e.epoch, func() (err error) {
		ok, err = cgo.Remove(e.ptr)
		return err
	})
	if !ok {
		if errors.Is(err, syscall.EINPROGRESS) {
			return nil // queued to the owner loop, which drops it
		}
		return &OpError{Op: "Event.Remove", Err: err}
	}
	return nil
}

// Update sets the interest mask of an fd event (eventer_update).
func (e *Event) Update(mask Mask) error {
	if err := withSession(e.epoch, func() error { return cgo.Update(e.ptr, int(mask)) }); err != nil {
		return &OpError{Op: "Event.Update", Err: err}
	}
	return nil
}

// Trigger runs the callback with mask on the owner loop
// (eventer_trigger).  The eventer takes over the reference.
func (e *Event) Trigger(mask Mask) error {
	if err := withSession(e.epoch, func() error { return cgo.Trigger(e.ptr, int(mask)) }); err != nil {
		return &OpError{Op: "Event.Trigger", Err: err}
	}
	return nil
}

// Free drops the caller's reference (eventer_free).
func (e *Event) Free() {
	if e.ptr != nil {
		_ = withSession(e.epoch, func() error { cgo.Free(e.ptr); return nil })
	}
}

// Fd is the event's file descriptor (-1 for timers).
func (e *Event) Fd() int { return e.fd }

// Addr is the bound address of a listening event from Listen (nil
// otherwise).
func (e *Event) Addr() net.Addr { return e.addr }

// ---- listening ------------------------------------------------------------

// Listen makes a non-blocking listening socket and returns it as an fd
// event (not added: hand it to a coroutine with SetEventerAco and Accept,
// or set it up as a classic event).  network: "tcp", "tcp4", "tcp6",
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
	var ev *Event
	err = withLive(func() (err error) {
		ev, err = plainFdEvent(fd)
		return err
	})
	if err != nil {
		unix.Close(fd)
		return fail(err)
	}
	if bound, err := unix.Getsockname(fd); err == nil {
		ev.addr = sockaddrToAddr(bound)
	}
	return ev, nil
}

// FdEvent wraps an fd (made non-blocking here) in an fd event with no
// callback, to hand to Co.SetEventerAco (eventer_alloc_fd with a
// placeholder callback).  Closing the AcoEvent closes fd.
func FdEvent(fd int) (*Event, error) {
	if fd < 0 {
		return nil, &OpError{Op: "FdEvent", Err: syscall.EINVAL}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, &OpError{Op: "FdEvent", Err: os.NewSyscallError("fcntl", err)}
	}
	var ev *Event
	err := withLive(func() (err error) {
		ev, err = plainFdEvent(fd)
		return err
	})
	if err != nil {
		return nil, &OpError{Op: "FdEvent", Err: err}
	}
	return ev, nil
}

// plainFdEvent wraps fd in a C fd event with no Go callback (it is meant
// for SetEventerAco).
func plainFdEvent(fd int) (*Event, error) {
	p, err := cgo.AllocFdPlain(fd)
	if err != nil {
		return nil, err
	}
	return &Event{ptr: p, fd: fd, epoch: sessionNow()}, nil
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
