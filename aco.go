package eventer

import (
	"errors"
	"fmt"
	"iter"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer/cgo"
)

// Co is a Go coroutine on an event loop: a goroutine that the loop's
// driver switches to and from (iter.Pull), so it runs only on the loop's
// thread, strictly one at a time with that loop's C coroutines and
// callbacks.  Its blocking calls (Read, Write, Accept, Connect, Sleep,
// SimpleAsynch, ...) run the C eventer_aco_* call in a small C proxy
// coroutine: when it would block, the Go coroutine hands the loop back and
// is resumed when the C call completes.
//
// A Co's methods may be called only by the coroutine itself, from the top
// of its own body (not from other goroutines, not from callbacks); a
// violation panics with *MisuseError.  Ordinary Go blocking (channels,
// mutexes, time.Sleep) inside a coroutine is legal but stalls its whole
// loop: use the Co's methods and the eventer's sync objects instead.
type Co struct {
	l     *loop
	id    uint64
	arg   any
	fn    func(*Co)
	next  func() (coSignal, bool)
	stop  func()
	yield func(coSignal) bool

	proxy  unsafe.Pointer // C proxy (eventer_aco_proxy_t)
	handle unsafe.Pointer // its coroutine's handle: the Co's identity in C

	res   int64 // driver: the completed operation's result
	errno int
	data  []byte // driver: bytes a completed wait already read (C memory,
	// valid until the coroutine next waits: copied out first thing)

	stopped    bool // the loop is shutting down: unwind
	panicValue any
	panicStack []byte

	started    chan struct{} // closed once the driver created it
	ended      atomic.Bool
	endedCh    chan struct{}
	startState atomic.Int32 // coNew, coCancelPending or coStarted
}

type coSignal uint8

const (
	sigPark   coSignal = iota + 1 // waiting for a C operation
	sigGoexit                     // the body called runtime.Goexit
)

// stopUnwind unwinds a coroutine whose loop is shutting down.
type stopUnwind struct{}

// Co.startState: a Cancel before the driver created the coroutine is
// passed on by startCo.
const (
	coNew int32 = iota
	coCancelPending
	coStarted
)

func newCo(fn func(co *Co), arg any) *Co {
	return &Co{fn: fn, arg: arg, started: make(chan struct{}), endedCh: make(chan struct{})}
}

// fail ends a Co that never ran.
func (co *Co) fail(err error) {
	co.ended.Store(true)
	close(co.endedCh)
	close(co.started)
	reportError(&OpError{Op: "AcoStart", Err: err})
}

// AcoStart starts fn in a new Go coroutine with arg (Co.Arg); returning
// from fn ends it.  Callable before Loop, from any goroutine, from
// callbacks and from coroutines: the coroutine is created by a loop's
// driver and starts at that loop's next opportunity.  Loops are chosen
// round-robin.  The returned *Co can be cancelled and joined.
func AcoStart(fn func(co *Co), arg any) *Co {
	rt.mu.Lock()
	n := len(rt.loops)
	rt.mu.Unlock()
	if n == 0 {
		co := newCo(fn, arg)
		co.fail(ErrNotInitialized)
		return co
	}
	return AcoStartOn(int(rt.rr.Add(1)-1)%n, fn, arg)
}

// AcoStartOn is AcoStart on loop i of the default pool.
func AcoStartOn(i int, fn func(co *Co), arg any) *Co {
	co := newCo(fn, arg)
	l := loopAt(i)
	if l == nil || fn == nil {
		err := error(ErrNotInitialized)
		if fn == nil {
			err = errors.New("nil function")
		} else if running() {
			err = fmt.Errorf("no loop %d", i)
		}
		co.fail(err)
		return co
	}
	co.l = l
	if err := l.post(func() { l.startCo(co) }); err != nil {
		co.fail(err)
	}
	return co
}

// Start starts fn in a new coroutine on co's loop.
func (co *Co) Start(fn func(co *Co), arg any) *Co { return AcoStartOn(co.l.idx, fn, arg) }

// startCo creates co on its loop's driver (rule 1: Go coroutines are
// created and resumed only by their loop's driver) and runs it until it
// first waits.
func (l *loop) startCo(co *Co) {
	if l.closed { // posted as the loop stopped (set by this driver)
		co.fail(ErrStopped)
		return
	}
	var id uint64
	if n := len(l.freeIDs); n > 0 {
		id = l.freeIDs[n-1]
		l.freeIDs = l.freeIDs[:n-1]
	} else {
		id = uint64(len(l.cos))
		l.cos = append(l.cos, nil)
	}
	p, err := cgo.NewProxy(id)
	if err != nil {
		l.freeIDs = append(l.freeIDs, id)
		co.fail(err)
		return
	}
	co.id, co.proxy, co.handle = id, p, cgo.ProxyHandle(p)
	// the Co's own reference: Wake and Cancel from other goroutines may
	// race the coroutine's end or the loop's teardown, so the handle
	// (which then reports ESRCH) lives as long as the Co is reachable
	cgo.HandleRef(co.handle)
	runtime.AddCleanup(co, cgo.HandleRelease, co.handle)
	l.cos[id] = co
	if co.startState.Swap(coStarted) == coCancelPending {
		_ = cgo.Cancel(co.handle) // a Cancel that came before the coroutine
	}
	co.next, co.stop = iter.Pull(co.body)
	close(co.started)
	l.resume(co)
}

// body is the coroutine's iterator function: it runs fn and turns a panic
// or Goexit into something the driver can report outside C.
func (co *Co) body(yield func(coSignal) bool) {
	co.yield = yield
	returned := false
	defer func() {
		if returned {
			return
		}
		r := recover()
		switch r.(type) {
		case nil:
			// runtime.Goexit (t.FailNow, ...): it can't be stopped, and
			// iter.Pull would propagate it into the driver.  Tell the driver
			// and never come back: this goroutine stays parked.
			yield(sigGoexit)
		case stopUnwind:
		default:
			co.panicValue, co.panicStack = r, debug.Stack()
		}
	}()
	co.fn(co)
	returned = true
}

// resume switches to co until it waits or ends (driver only).
func (l *loop) resume(co *Co) {
	l.current.Store(co.id + 1)
	sig, ok := co.next()
	l.current.Store(0)
	if ok && sig == sigPark {
		return
	}
	l.endCo(co)
	if sig == sigGoexit {
		reportError(&OpError{Op: "AcoStart", Err: errors.New(
			"the coroutine called runtime.Goexit (t.FailNow?): it is abandoned; " +
				"end a coroutine by returning from its function")})
	}
	if co.panicValue != nil {
		panic(&CoroutinePanic{Value: co.panicValue, Stack: co.panicStack})
	}
}

func (l *loop) endCo(co *Co) {
	co.ended.Store(true)
	if err := cgo.ProxyFree(co.proxy); err != nil {
		reportError(&OpError{Op: "Co end", Err: err})
	}
	l.cos[co.id] = nil
	l.freeIDs = append(l.freeIDs, co.id)
	close(co.endedCh)
}

// stopCoroutines unwinds every coroutine of a stopping loop (driver).
func (l *loop) stopCoroutines() {
	for _, co := range l.cos {
		if co == nil || co.ended.Load() {
			continue
		}
		co.stopped = true
		l.current.Store(co.id + 1)
		co.stop()
		l.current.Store(0)
		co.ended.Store(true)
		close(co.endedCh)
	}
	l.cos = nil
}

// CoroutinePanic is how a panic in a Go coroutine reaches its driver: the
// driver re-panics with it, so the program ends as it would for a panicking
// goroutine, with the coroutine's own stack in the message.
type CoroutinePanic struct {
	Value any
	Stack []byte
}

func (p *CoroutinePanic) Error() string {
	return fmt.Sprintf("eventer: panic in coroutine: %v\n\ncoroutine stack:\n%s", p.Value, p.Stack)
}

// Arg is the arg given to AcoStart.
func (co *Co) Arg() any { return co.arg }

// Done is closed when the coroutine has ended.
func (co *Co) Done() <-chan struct{} { return co.endedCh }

// ---- blocking calls --------------------------------------------------------

// enter checks that the caller may block on co now (DESIGN.md 4).
func (co *Co) enter(op string) {
	if co.ended.Load() || co.l == nil {
		misuse(op, ruleEnded)
	}
	l := co.l
	if l.current.Load() != co.id+1 {
		misuse(op, ruleNotCurrent)
	}
	if l.cbDepth.Load() != 0 {
		misuse(op, ruleInCallback)
	}
	if co.stopped {
		panic(stopUnwind{})
	}
}

// complete finishes a proxy call: rc from the C call (1 done, 0 parked,
// -1 misuse).  While parked the loop belongs to others.  No Go buffer is
// held by C across the park (conn.go).
func (co *Co) complete(op string, rc int, res int64, errno syscall.Errno) (int64, syscall.Errno) {
	switch rc {
	case 1:
		return res, errno
	case -1:
		switch errno {
		case syscall.EPERM:
			misuse(op, ruleWrongThread)
		case syscall.EDEADLK:
			misuse(op, ruleInCCoroutine)
		}
		return -1, errno
	}
	co.park()
	return co.res, syscall.Errno(co.errno)
}

// park hands the loop back to the driver until the completion step.
func (co *Co) park() {
	co.l.current.Store(0)
	if !co.yield(sigPark) {
		co.stopped = true
		panic(stopUnwind{})
	}
}

// simple runs an argument-less proxy operation.
func (co *Co) simple(op string, code int, timeout time.Duration) error {
	co.enter(op)
	rc, res, errno := cgo.ProxyIO(co.proxy, code, nil, timeoutNs(timeout))
	res, errno = co.complete(op, rc, res, errno)
	if res < 0 {
		return errnoError(op, errno)
	}
	return nil
}

// timeoutNs: 0 means no timeout (-1 for C), anything else is a bound.
func timeoutNs(d time.Duration) int64 {
	if d == 0 {
		return -1
	}
	if d < 0 {
		return 0
	}
	return int64(d)
}

// Sleep suspends the coroutine for d (eventer_aco_sleep); d <= 0 yields.
// The error is non-nil only if the coroutine was cancelled.
func (co *Co) Sleep(d time.Duration) error {
	if d <= 0 {
		return co.Yield()
	}
	return co.simple("Co.Sleep", cgo.OpSleep, d)
}

// Yield lets the loop run due timers, ready fds and other coroutines
// before this one continues (eventer_aco_yield).
func (co *Co) Yield() error { return co.simple("Co.Yield", cgo.OpYield, 0) }

// Park waits until Wake is called for this coroutine (a Wake that came
// first is remembered), or timeout (0: none) (eventer_aco_park).
func (co *Co) Park(timeout time.Duration) error {
	return co.simple("Co.Park", cgo.OpPark, timeout)
}

// Wake ends a Park of co, or makes its next Park return at once.  Callable
// from any goroutine (eventer_aco_wake).
func (co *Co) Wake() error {
	<-co.started
	if co.ended.Load() || co.handle == nil {
		return &OpError{Op: "Co.Wake", Err: errors.New("coroutine has ended")}
	}
	if err := withLive(func() error { return cgo.WakeCo(co.handle) }); err != nil {
		return &OpError{Op: "Co.Wake", Err: err}
	}
	return nil
}

// Cancel makes co's pending blocking call (or its next one) return an
// error satisfying errors.Is(err, ErrCanceled); the coroutine goes on.
// Callable from any goroutine (eventer_aco_cancel).
func (co *Co) Cancel() error {
	if co.ended.Load() {
		return &OpError{Op: "Co.Cancel", Err: errors.New("coroutine has ended")}
	}
	// C keeps the cancel: it ends the pending wait, or fails the next call
	// that would wait (eventer_aco_cancel), exactly as for a C coroutine
	if co.startState.CompareAndSwap(coNew, coCancelPending) ||
		co.startState.Load() == coCancelPending {
		return nil // not created yet: startCo passes it on
	}
	if !co.ended.Load() { // started: co.handle is set
		_ = withLive(func() error { return cgo.Cancel(co.handle) }) // ESRCH: it ended meanwhile
	}
	return nil
}

// Join waits until other has ended, or timeout (0: none).  other may be a
// coroutine of any loop: on this coroutine's loop the C join is used; on
// another loop the wait polls its end at each turn of the loop.
func (co *Co) Join(other *Co, timeout time.Duration) error {
	const op = "Co.Join"
	co.enter(op)
	if other == co {
		return errnoError(op, syscall.EDEADLK)
	}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-other.started:
		default:
			// not created yet: let its loop get to it
			if err := co.Yield(); err != nil {
				return asOp(op, err)
			}
			if timeout > 0 && time.Now().After(deadline) {
				return errnoError(op, syscall.ETIMEDOUT)
			}
			continue
		}
		break
	}
	if other.ended.Load() {
		return nil
	}
	if other.l != co.l {
		for !other.ended.Load() {
			if timeout > 0 && time.Now().After(deadline) {
				return errnoError(op, syscall.ETIMEDOUT)
			}
			if err := co.Sleep(time.Millisecond); err != nil {
				return asOp(op, err)
			}
		}
		return nil
	}
	rem := time.Duration(0)
	if timeout > 0 {
		if rem = time.Until(deadline); rem <= 0 {
			return errnoError(op, syscall.ETIMEDOUT)
		}
	}
	rc, res, errno := cgo.ProxyJoin(co.proxy, other.handle, timeoutNs(rem))
	res, errno = co.complete(op, rc, res, errno)
	if res < 0 {
		return errnoError(op, errno)
	}
	return nil
}

// SimpleAsynch runs fn off the loop, on the default job queue, and
// resumes the coroutine when it has returned (eventer_aco_simple_asynch).
// fn runs on another thread: it must not touch the coroutine.
func (co *Co) SimpleAsynch(fn func()) error { return co.RunAsynch(nil, fn) }

// RunAsynch is SimpleAsynch on job queue q (nil: the default queue).
func (co *Co) RunAsynch(q *JobQueue, fn func()) error {
	const op = "Co.RunAsynch"
	co.enter(op)
	if fn == nil {
		return &OpError{Op: op, Err: errors.New("nil function")}
	}
	var qp unsafe.Pointer
	var subq uint64
	if q != nil {
		if q.ptr == nil {
			return &OpError{Op: op, Err: q.err}
		}
		if q.epoch != sessionNow() {
			return &OpError{Op: op, Err: ErrNotInitialized}
		}
		qp, subq = q.ptr, q.subq
	}
	id := registerAsynch(fn)
	rc, res, errno := cgo.ProxyAsynch(co.proxy, qp, subq, id)
	res, errno = co.complete(op, rc, res, errno)
	if res < 0 {
		forgetAsynch(id)
		return errnoError(op, errno)
	}
	return nil
}

// asynchWork holds the Go functions of queued asynch work by id.
var asynchWork struct {
	sync.Mutex
	m    map[uint64]func()
	next uint64
}

func registerAsynch(fn func()) uint64 {
	asynchWork.Lock()
	defer asynchWork.Unlock()
	if asynchWork.m == nil {
		asynchWork.m = map[uint64]func(){}
	}
	asynchWork.next++
	asynchWork.m[asynchWork.next] = fn
	return asynchWork.next
}

func forgetAsynch(id uint64) {
	asynchWork.Lock()
	delete(asynchWork.m, id)
	asynchWork.Unlock()
}

func runAsynchWork(id uint64) {
	asynchWork.Lock()
	fn := asynchWork.m[id]
	delete(asynchWork.m, id)
	asynchWork.Unlock()
	if fn != nil {
		fn()
	}
}

// SetEventerAco converts a classic fd event for use by this coroutine
// (eventer_set_eventer_aco): its Read, Write, Accept and Close block the
// coroutine, not the loop.  Any coroutine of the same loop may convert an
// event that is already converted, to use it too (full duplex: a reader
// and a writer coroutine).  An error is reported by the AcoEvent's calls.
func (co *Co) SetEventerAco(e *Event) *AcoEvent {
	const op = "Co.SetEventerAco"
	co.enter(op)
	ae := &AcoEvent{e: e, co: co}
	if e == nil || e.ptr == nil {
		ae.err = &OpError{Op: op, Err: errors.New("no event")}
		return ae
	}
	if e.epoch != sessionNow() {
		ae.err = &OpError{Op: op, Err: ErrNotInitialized} // from an earlier Init
		return ae
	}
	if cgo.IsAco(e.ptr) {
		if cgo.OwnerLoop(e.ptr) != co.l.idx {
			ae.err = &OpError{Op: op, Err: errors.New("event belongs to another loop's coroutines")}
			return ae
		}
		// another coroutine's view of a converted event: its own reference
		cgo.Ref(e.ptr)
		ae.view = true
		ae.e = &Event{ptr: e.ptr, fd: e.fd, id: e.id, cb: e.cb, epoch: e.epoch}
	} else {
		rc, res, errno := cgo.ProxyIO(co.proxy, cgo.OpConvert, e.ptr, -1)
		res, errno = co.complete(op, rc, res, errno)
		if res < 0 {
			ae.err = errnoError(op, errno)
			return ae
		}
	}
	ae.fd = cgo.Fd(e.ptr)
	ae.posixClosed = cgo.PosixClosedFlag(e.ptr)
	return ae
}

// Connect makes a non-blocking socket, connects it within timeout (0:
// none) and returns it as an AcoEvent of this coroutine
// (eventer_aco_connect).  network: "tcp", "tcp4", "tcp6", "unix".
func (co *Co) Connect(network, address string, timeout time.Duration) (*AcoEvent, error) {
	const op = "Co.Connect"
	co.enter(op)
	sa, domain, err := sockaddr(network, address)
	if err != nil {
		return nil, &OpError{Op: op, Err: err}
	}
	raw, err := rawSockaddr(sa)
	if err != nil {
		return nil, &OpError{Op: op, Err: err}
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &OpError{Op: op, Err: err}
	}
	ev, err := plainFdEvent(fd)
	if err != nil {
		unix.Close(fd)
		return nil, &OpError{Op: op, Err: err}
	}
	ae := co.SetEventerAco(ev)
	if ae.err != nil {
		ev.Free()
		unix.Close(fd)
		return nil, asOp(op, ae.err)
	}
	rc, res, errno := cgo.ProxyConnect(co.proxy, ev.ptr, raw, timeoutNs(timeout))
	res, errno = co.complete(op, rc, res, errno)
	if res < 0 {
		ae.closeAndFree()
		return nil, errnoError(op, errno)
	}
	return ae, nil
}
