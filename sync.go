package eventer

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/acoeventer/eventer/cgo"
)

// The coroutine synchronization objects of eventer_aco_sync.h, for Go
// coroutines: the very same C objects, so Go and C coroutines of one loop
// can share them (a C coroutine posts a semaphore a Go coroutine waits
// on, ...).  An object belongs to the loop of the coroutine or callback
// that first uses it; use it only from that loop's coroutines and
// callbacks (anything else gets an error that names that loop).  Blocking
// calls take the calling coroutine; a timeout of 0 means none, a negative
// one has passed already.  Close an object when done (Close fails while a
// coroutine waits on it); Shutdown closes what is left.

// syncObj is what the four have in common: the C object, and a lock that
// keeps Close from freeing it under a call from another goroutine.
type syncObj struct {
	mu     sync.RWMutex
	p      unsafe.Pointer // nil once freed
	closed bool           // Close succeeded (or Shutdown freed it)
	epoch  uint64
	name   string // "semaphore", ...
	free   func(unsafe.Pointer) error
	tr     tracked
}

func (o *syncObj) init(name string, p unsafe.Pointer, free func(unsafe.Pointer) error) {
	o.p, o.epoch, o.name, o.free = p, sessionNow(), name, free
	track(&o.tr, o)
}

// use runs fn with the C object (read lock: calls run side by side, Close
// waits for them).
func (o *syncObj) use(op string, fn func(p unsafe.Pointer) error) error {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.closed {
		return &OpError{Op: op, Err: ErrClosed}
	}
	// not once its eventer is going (Shutdown) or gone
	err := withSession(o.epoch, func() error { return fn(o.p) })
	if errors.Is(err, ErrNotInitialized) {
		return &OpError{Op: op, Err: err}
	}
	return err
}

// callErr is the error of a C call on the object: errno mapped, and an
// EINVAL from another loop's (or no loop's) thread said as such.
func (o *syncObj) callErr(op string, p unsafe.Pointer, err error) error {
	if err == nil {
		return nil
	}
	var en syscall.Errno
	if !errors.As(err, &en) {
		return &OpError{Op: op, Err: err}
	}
	if en == syscall.EINVAL {
		if owner, cur := cgo.SyncOwner(p), cgo.CurrentLoop(); owner >= 0 && owner != cur {
			where := "a goroutine that is no loop's"
			if cur >= 0 {
				where = fmt.Sprintf("loop %d", cur)
			}
			return &OpError{Op: op, Err: fmt.Errorf("the %s belongs to loop %d's coroutines and callbacks, "+
				"not to %s: %w", o.name, owner, where, en)}
		} else if cur < 0 {
			return &OpError{Op: op, Err: fmt.Errorf("called off the loops (use a coroutine or a callback "+
				"of the %s's loop): %w", o.name, en)}
		}
	}
	return errnoError(op, en)
}

// wait runs a blocking call of kind as co (its proxy waits in C).
func (o *syncObj) wait(op string, co *Co, kind int, elem unsafe.Pointer, timeout time.Duration) error {
	if err := co.enter(op); err != nil {
		return err
	}
	var r cgo.Res
	var obj unsafe.Pointer
	err := o.use(op, func(p unsafe.Pointer) error {
		obj = p
		if kind != cgo.MutexTryLock && kind != cgo.MutexUnlock && co.takeCancel() {
			return errnoError(op, syscall.ECANCELED)
		}
		px, err := co.proxyOf(op)
		if err != nil {
			return err
		}
		// started under the read lock: a Close now fails with EBUSY
		r = cgo.Sync(px, kind, p, elem, timeoutNs(timeout))
		return nil
	})
	if err != nil {
		return err
	}
	res, errno := co.complete(op, r, waitC)
	if res >= 0 {
		return nil
	}
	if errno == syscall.EPERM && kind == cgo.MutexUnlock {
		return &OpError{Op: op, Err: ErrNotOwner}
	}
	if errno == syscall.EBUSY && kind == cgo.MutexTryLock {
		return &OpError{Op: op, Err: ErrWouldBlock}
	}
	return o.callErr(op, obj, errno)
}

// closeObj frees the C object (EBUSY while a coroutine waits on it).
func (o *syncObj) closeObj(op string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return &OpError{Op: op, Err: ErrClosed}
	}
	var busy error
	err := withSession(o.epoch, func() error { busy = o.free(o.p); return nil })
	if err != nil {
		// its eventer is going or gone: Shutdown frees it
		o.closed = true
		return nil
	}
	if busy != nil {
		return &OpError{Op: op, Err: fmt.Errorf("a coroutine waits on it: %w", busy)}
	}
	o.p, o.closed = nil, true
	untrack(&o.tr)
	return nil
}

func (o *syncObj) releaseAtShutdown() {
	o.mu.Lock()
	defer o.mu.Unlock()
	// the loops have stopped and their waiters are gone: free it (a wait
	// that was under way may leave it refusing: then it stays allocated)
	if o.p != nil && o.free(o.p) == nil {
		o.p, o.closed = nil, true
	}
}

// ---- semaphore -------------------------------------------------------------

// Sem is a counting semaphore (eventer_aco_sem_t).
type Sem struct{ o syncObj }

// NewSem makes a semaphore with value initial (0 to 2^31-1).
func NewSem(initial int) (*Sem, error) {
	const op = "NewSem"
	if initial < 0 || initial > cgo.SemValueMax {
		return nil, &OpError{Op: op, Err: fmt.Errorf("initial value %d out of range [0, %d]: %w",
			initial, cgo.SemValueMax, syscall.EINVAL)}
	}
	var p unsafe.Pointer
	err := withLive(func() (err error) { p, err = cgo.SemNew(initial); return err })
	if err != nil {
		return nil, &OpError{Op: op, Err: err}
	}
	s := &Sem{}
	s.o.init("semaphore", p, cgo.SemFree)
	return s, nil
}

// Wait takes one unit, waiting for it up to timeout (first come, first
// served).
func (s *Sem) Wait(co *Co, timeout time.Duration) error {
	return s.o.wait("Sem.Wait", co, cgo.SemWait, nil, timeout)
}

// TryWait takes one unit if there is one, without waiting: nil, or an
// error satisfying errors.Is(err, ErrWouldBlock).
func (s *Sem) TryWait() error {
	const op = "Sem.TryWait"
	return s.o.use(op, func(p unsafe.Pointer) error { return s.o.callErr(op, p, cgo.SemTryWait(p)) })
}

// Post adds one unit, handing it to the first waiter if any.
func (s *Sem) Post() error {
	const op = "Sem.Post"
	return s.o.use(op, func(p unsafe.Pointer) error { return s.o.callErr(op, p, cgo.SemPost(p)) })
}

// Value is the number of units available (0 once closed).
func (s *Sem) Value() int {
	v := 0
	_ = s.o.use("Sem.Value", func(p unsafe.Pointer) error { v = cgo.SemValue(p); return nil })
	return v
}

// Close frees the semaphore (eventer_aco_sem_free).
func (s *Sem) Close() error { return s.o.closeObj("Sem.Close") }

// ---- mutex -----------------------------------------------------------------

// Mutex is a coroutine mutex (eventer_aco_mutex_t): owned by the
// coroutine that locked it, handed to waiters in order.
type Mutex struct{ o syncObj }

// NewMutex makes an unlocked mutex.
func NewMutex() (*Mutex, error) {
	var p unsafe.Pointer
	err := withLive(func() (err error) { p, err = cgo.MutexNew(); return err })
	if err != nil {
		return nil, &OpError{Op: "NewMutex", Err: err}
	}
	m := &Mutex{}
	m.o.init("mutex", p, cgo.MutexFree)
	return m, nil
}

// Lock locks m for co, waiting up to timeout.  A coroutine that holds it
// already gets an error wrapping EDEADLK.
func (m *Mutex) Lock(co *Co, timeout time.Duration) error {
	return m.o.wait("Mutex.Lock", co, cgo.MutexLock, nil, timeout)
}

// TryLock locks m for co if it is free: nil, or an error satisfying
// errors.Is(err, ErrWouldBlock).
func (m *Mutex) TryLock(co *Co) error {
	return m.o.wait("Mutex.TryLock", co, cgo.MutexTryLock, nil, 0)
}

// Unlock releases m; co must be its owner (else an error satisfying
// errors.Is(err, ErrNotOwner)).
func (m *Mutex) Unlock(co *Co) error {
	return m.o.wait("Mutex.Unlock", co, cgo.MutexUnlock, nil, 0)
}

// Locked reports whether m is locked.
func (m *Mutex) Locked() bool {
	v := false
	_ = m.o.use("Mutex.Locked", func(p unsafe.Pointer) error { v = cgo.MutexLocked(p); return nil })
	return v
}

// Close frees the mutex (eventer_aco_mutex_free).
func (m *Mutex) Close() error { return m.o.closeObj("Mutex.Close") }

// ---- wait group ------------------------------------------------------------

// WaitGroup is a coroutine wait group (eventer_aco_wg_t).
type WaitGroup struct{ o syncObj }

// NewWaitGroup makes a wait group with counter 0.
func NewWaitGroup() (*WaitGroup, error) {
	var p unsafe.Pointer
	err := withLive(func() (err error) { p, err = cgo.WgNew(); return err })
	if err != nil {
		return nil, &OpError{Op: "NewWaitGroup", Err: err}
	}
	w := &WaitGroup{}
	w.o.init("wait group", p, cgo.WgFree)
	return w, nil
}

// Add adds n (which may be negative) to the counter.  A counter that would
// go negative or past 2^31-1 is an error and stays as it was.
func (w *WaitGroup) Add(n int) error {
	const op = "WaitGroup.Add"
	if n < math.MinInt32 || n > math.MaxInt32 {
		return &OpError{Op: op, Err: fmt.Errorf("%d out of range: %w", n, syscall.EINVAL)}
	}
	return w.o.use(op, func(p unsafe.Pointer) error { return w.o.callErr(op, p, cgo.WgAdd(p, n)) })
}

// Done is Add(-1).
func (w *WaitGroup) Done() error {
	const op = "WaitGroup.Done"
	return w.o.use(op, func(p unsafe.Pointer) error { return w.o.callErr(op, p, cgo.WgAdd(p, -1)) })
}

// Count is the counter.
func (w *WaitGroup) Count() int {
	v := 0
	_ = w.o.use("WaitGroup.Count", func(p unsafe.Pointer) error { v = cgo.WgCount(p); return nil })
	return v
}

// Wait waits until the counter is 0, up to timeout.
func (w *WaitGroup) Wait(co *Co, timeout time.Duration) error {
	return w.o.wait("WaitGroup.Wait", co, cgo.WgWait, nil, timeout)
}

// Close frees the wait group (eventer_aco_wg_free).
func (w *WaitGroup) Close() error { return w.o.closeObj("WaitGroup.Close") }

// ---- channel -----------------------------------------------------------------

// Chan is a bounded channel of fixed-size byte elements
// (eventer_aco_chan_t), shared by Go and C coroutines of one loop.
// Elements are copied in and out: they are bytes, never Go pointers.
type Chan struct {
	o        syncObj
	elemSize int
}

// NewChan makes a channel of capacity elements of elemSize bytes each.
func NewChan(elemSize, capacity int) (*Chan, error) {
	if elemSize < 1 || capacity < 1 || elemSize > 1<<30 || capacity > 1<<30 {
		return nil, &OpError{Op: "NewChan", Err: syscall.EINVAL}
	}
	var p unsafe.Pointer
	err := withLive(func() (err error) { p, err = cgo.ChanNew(elemSize, capacity); return err })
	if err != nil {
		return nil, &OpError{Op: "NewChan", Err: err}
	}
	c := &Chan{elemSize: elemSize}
	c.o.init("channel", p, cgo.ChanFree)
	return c, nil
}

func (c *Chan) checkSize(op string, elem []byte) error {
	if len(elem) != c.elemSize {
		return &OpError{Op: op, Err: fmt.Errorf("element of %d bytes, want %d", len(elem), c.elemSize)}
	}
	return nil
}

func (c *Chan) xfer(op string, co *Co, kind int, elem []byte, timeout time.Duration) error {
	if err := co.enter(op); err != nil {
		return err
	}
	if err := c.checkSize(op, elem); err != nil {
		return err
	}
	// the element travels through C memory: C may hold it while co waits
	buf := cgo.CMalloc(c.elemSize)
	defer cgo.CFree(buf)
	cb := unsafe.Slice((*byte)(buf), c.elemSize)
	if kind == cgo.ChanSend {
		copy(cb, elem)
	}
	err := c.o.wait(op, co, kind, buf, timeout)
	if err == nil && kind == cgo.ChanRecv {
		copy(elem, cb)
	}
	return err
}

// Send copies elem (len must be the element size) into the channel,
// waiting for room up to timeout.
func (c *Chan) Send(co *Co, elem []byte, timeout time.Duration) error {
	return c.xfer("Chan.Send", co, cgo.ChanSend, elem, timeout)
}

// Recv copies the next element into elem, waiting up to timeout.  After
// Close it drains what is buffered, then returns ErrChanClosed.
func (c *Chan) Recv(co *Co, elem []byte, timeout time.Duration) error {
	return c.xfer("Chan.Recv", co, cgo.ChanRecv, elem, timeout)
}

// TrySend sends without waiting: an error satisfying
// errors.Is(err, ErrWouldBlock) when full.
func (c *Chan) TrySend(elem []byte) error {
	const op = "Chan.TrySend"
	if err := c.checkSize(op, elem); err != nil {
		return err
	}
	buf := cgo.CMalloc(c.elemSize)
	defer cgo.CFree(buf)
	copy(unsafe.Slice((*byte)(buf), c.elemSize), elem)
	return c.o.use(op, func(p unsafe.Pointer) error { return c.o.callErr(op, p, cgo.ChanTrySend(p, buf)) })
}

// TryRecv receives without waiting: an error satisfying
// errors.Is(err, ErrWouldBlock) when empty.
func (c *Chan) TryRecv(elem []byte) error {
	const op = "Chan.TryRecv"
	if err := c.checkSize(op, elem); err != nil {
		return err
	}
	buf := cgo.CMalloc(c.elemSize)
	defer cgo.CFree(buf)
	err := c.o.use(op, func(p unsafe.Pointer) error { return c.o.callErr(op, p, cgo.ChanTryRecv(p, buf)) })
	if err == nil {
		copy(elem, unsafe.Slice((*byte)(buf), c.elemSize))
	}
	return err
}

// CloseSend closes the channel for sending (eventer_aco_chan_close): senders,
// waiting ones too, get ErrChanClosed; receivers drain what is buffered.
// (Close frees it.)
func (c *Chan) CloseSend() error {
	const op = "Chan.CloseSend"
	return c.o.use(op, func(p unsafe.Pointer) error { return c.o.callErr(op, p, cgo.ChanClose(p)) })
}

// Len and Cap are the buffered elements and the capacity.
func (c *Chan) Len() int {
	v := 0
	_ = c.o.use("Chan.Len", func(p unsafe.Pointer) error { v = cgo.ChanLen(p); return nil })
	return v
}

func (c *Chan) Cap() int {
	v := 0
	_ = c.o.use("Chan.Cap", func(p unsafe.Pointer) error { v = cgo.ChanCap(p); return nil })
	return v
}

// Close frees the channel and what it still buffers
// (eventer_aco_chan_free).
func (c *Chan) Close() error { return c.o.closeObj("Chan.Close") }
