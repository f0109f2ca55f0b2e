package eventer

import (
	"errors"
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
// callbacks.  Blocking calls take the calling coroutine; a timeout of 0
// means none.  Free an object when done (not while anyone waits on it).

var errFreed = errors.New("object was freed")

// syncCall runs a sync call as co, parking it when it would block.
func (co *Co) syncCall(op string, kind int, obj unsafe.Pointer, epoch uint64, cbuf unsafe.Pointer, timeout time.Duration) error {
	co.enter(op)
	if obj == nil {
		return &OpError{Op: op, Err: errFreed}
	}
	if epoch != sessionNow() {
		return &OpError{Op: op, Err: ErrNotInitialized} // made by an earlier Init
	}
	rc, res, errno := cgo.Sync(co.proxy, kind, obj, cbuf, timeoutNs(timeout))
	res, errno = co.complete(op, rc, res, errno)
	if res < 0 {
		return syncError(op, errno)
	}
	return nil
}

// syncError: as errnoError, and EPIPE on a closed channel is ErrChanClosed.
func syncError(op string, errno syscall.Errno) error {
	if errno == syscall.EPIPE {
		return &OpError{Op: op, Err: ErrChanClosed}
	}
	return errnoError(op, errno)
}

func plainError(op string, err error) error {
	if err == nil {
		return nil
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return syncError(op, en)
	}
	return &OpError{Op: op, Err: err}
}

// ---- semaphore -------------------------------------------------------------

// Sem is a counting semaphore (eventer_aco_sem_t).
type Sem struct {
	p     unsafe.Pointer
	epoch uint64
}

// NewSem makes a semaphore with value initial.
func NewSem(initial uint) (*Sem, error) {
	var p unsafe.Pointer
	var epoch uint64
	err := withLive(func() (err error) { epoch = sessionNow(); p, err = cgo.SemNew(initial); return err })
	if err != nil {
		return nil, &OpError{Op: "NewSem", Err: err}
	}
	return &Sem{p: p, epoch: epoch}, nil
}

// Wait takes one unit, waiting for it up to timeout (first come, first
// served).
func (s *Sem) Wait(co *Co, timeout time.Duration) error {
	return co.syncCall("Sem.Wait", cgo.SemWait, s.p, s.epoch, nil, timeout)
}

// TryWait takes one unit if there is one; false otherwise.
func (s *Sem) TryWait(co *Co) bool {
	return co.syncCall("Sem.TryWait", cgo.SemTryWait, s.p, s.epoch, nil, 0) == nil
}

// Post adds one unit, handing it to the first waiter if any.  From a
// coroutine or a callback of the semaphore's loop.
func (s *Sem) Post() error {
	return plainError("Sem.Post", withSession(s.epoch, func() error { return cgo.SemPost(s.p) }))
}

// Value is the number of units available.
func (s *Sem) Value() int {
	v := 0
	_ = withSession(s.epoch, func() error { v = cgo.SemValue(s.p); return nil })
	return v
}

// Free releases the semaphore.
func (s *Sem) Free() error {
	err := plainError("Sem.Free", withSession(s.epoch, func() error { return cgo.SemFree(s.p) }))
	if err == nil {
		s.p = nil
	}
	return err
}

// ---- mutex -----------------------------------------------------------------

// Mutex is a coroutine mutex (eventer_aco_mutex_t): owned by the
// coroutine that locked it, handed to waiters in order.
type Mutex struct {
	p     unsafe.Pointer
	epoch uint64
}

// NewMutex makes an unlocked mutex.
func NewMutex() (*Mutex, error) {
	var p unsafe.Pointer
	var epoch uint64
	err := withLive(func() (err error) { epoch = sessionNow(); p, err = cgo.MutexNew(); return err })
	if err != nil {
		return nil, &OpError{Op: "NewMutex", Err: err}
	}
	return &Mutex{p: p, epoch: epoch}, nil
}

// Lock locks m for co, waiting up to timeout.
func (m *Mutex) Lock(co *Co, timeout time.Duration) error {
	return co.syncCall("Mutex.Lock", cgo.MutexLock, m.p, m.epoch, nil, timeout)
}

// TryLock locks m for co if it is free.
func (m *Mutex) TryLock(co *Co) bool {
	return co.syncCall("Mutex.TryLock", cgo.MutexTryLock, m.p, m.epoch, nil, 0) == nil
}

// Unlock releases m; co must be its owner (else an error wrapping EPERM).
func (m *Mutex) Unlock(co *Co) error {
	return co.syncCall("Mutex.Unlock", cgo.MutexUnlock, m.p, m.epoch, nil, 0)
}

// Locked reports whether m is locked.
func (m *Mutex) Locked() bool {
	v := false
	_ = withSession(m.epoch, func() error { v = cgo.MutexLocked(m.p); return nil })
	return v
}

// Free releases the mutex.
func (m *Mutex) Free() error {
	err := plainError("Mutex.Free", withSession(m.epoch, func() error { return cgo.MutexFree(m.p) }))
	if err == nil {
		m.p = nil
	}
	return err
}

// ---- wait group ------------------------------------------------------------

// WaitGroup is a coroutine wait group (eventer_aco_wg_t).
type WaitGroup struct {
	p     unsafe.Pointer
	epoch uint64
}

// NewWaitGroup makes a wait group with counter 0.
func NewWaitGroup() (*WaitGroup, error) {
	var p unsafe.Pointer
	var epoch uint64
	err := withLive(func() (err error) { epoch = sessionNow(); p, err = cgo.WgNew(); return err })
	if err != nil {
		return nil, &OpError{Op: "NewWaitGroup", Err: err}
	}
	return &WaitGroup{p: p, epoch: epoch}, nil
}

// Add adds n (may be negative) to the counter; a negative counter is an
// error and leaves it unchanged.
func (w *WaitGroup) Add(n int) error {
	return plainError("WaitGroup.Add", withSession(w.epoch, func() error { return cgo.WgAdd(w.p, n) }))
}

// Done is Add(-1).
func (w *WaitGroup) Done() error {
	return plainError("WaitGroup.Done", withSession(w.epoch, func() error { return cgo.WgDone(w.p) }))
}

// Count is the counter.
func (w *WaitGroup) Count() int {
	v := 0
	_ = withSession(w.epoch, func() error { v = cgo.WgCount(w.p); return nil })
	return v
}

// Wait waits until the counter is 0, up to timeout.
func (w *WaitGroup) Wait(co *Co, timeout time.Duration) error {
	return co.syncCall("WaitGroup.Wait", cgo.WgWait, w.p, w.epoch, nil, timeout)
}

// Free releases the wait group.
func (w *WaitGroup) Free() error {
	err := plainError("WaitGroup.Free", withSession(w.epoch, func() error { return cgo.WgFree(w.p) }))
	if err == nil {
		w.p = nil
	}
	return err
}

// ---- channel -----------------------------------------------------------------

// ErrChanClosed is the cause of a Send on a closed Chan, and of a Recv on
// a closed and drained one (C's EPIPE).
var ErrChanClosed = errors.New("channel closed")

// Chan is a bounded channel of fixed-size byte elements
// (eventer_aco_chan_t), shared by Go and C coroutines of one loop.
// Elements are copied in and out: they are bytes, never Go pointers.
type Chan struct {
	p        unsafe.Pointer
	elemSize int
	epoch    uint64
}

// NewChan makes a channel of capacity elements of elemSize bytes each.
func NewChan(elemSize, capacity int) (*Chan, error) {
	if elemSize < 1 || capacity < 1 {
		return nil, &OpError{Op: "NewChan", Err: syscall.EINVAL}
	}
	var p unsafe.Pointer
	var epoch uint64
	err := withLive(func() (err error) { epoch = sessionNow(); p, err = cgo.ChanNew(elemSize, capacity); return err })
	if err != nil {
		return nil, &OpError{Op: "NewChan", Err: err}
	}
	return &Chan{p: p, elemSize: elemSize, epoch: epoch}, nil
}

func (c *Chan) xfer(op string, co *Co, kind int, elem []byte, timeout time.Duration) error {
	if len(elem) != c.elemSize {
		co.enter(op)
		return &OpError{Op: op, Err: errors.New("element size mismatch")}
	}
	// the element travels through C memory: C may hold it while co waits
	buf := cgo.CMalloc(c.elemSize)
	defer cgo.CFree(buf)
	cb := unsafe.Slice((*byte)(buf), c.elemSize)
	if kind == cgo.ChanSend || kind == cgo.ChanTrySend {
		copy(cb, elem)
	}
	err := co.syncCall(op, kind, c.p, c.epoch, buf, timeout)
	if err == nil && (kind == cgo.ChanRecv || kind == cgo.ChanTryRecv) {
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

// TrySend sends without waiting (an error wrapping EAGAIN when full).
func (c *Chan) TrySend(co *Co, elem []byte) error {
	return c.xfer("Chan.TrySend", co, cgo.ChanTrySend, elem, 0)
}

// TryRecv receives without waiting (an error wrapping EAGAIN when empty).
func (c *Chan) TryRecv(co *Co, elem []byte) error {
	return c.xfer("Chan.TryRecv", co, cgo.ChanTryRecv, elem, 0)
}

// Close closes the channel: senders (waiting ones too) get ErrChanClosed.
func (c *Chan) Close() error {
	return plainError("Chan.Close", withSession(c.epoch, func() error { return cgo.ChanClose(c.p) }))
}

// Len and Cap are the buffered elements and the capacity.
func (c *Chan) Len() int {
	v := 0
	_ = withSession(c.epoch, func() error { v = cgo.ChanLen(c.p); return nil })
	return v
}

func (c *Chan) Cap() int {
	v := 0
	_ = withSession(c.epoch, func() error { v = cgo.ChanCap(c.p); return nil })
	return v
}

// Free releases the channel.
func (c *Chan) Free() error {
	err := plainError("Chan.Free", withSession(c.epoch, func() error { return cgo.ChanFree(c.p) }))
	if err == nil {
		c.p = nil
	}
	return err
}
