package eventer

import (
	"context"
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

	"github.com/acoeventer/eventer/cgo"
)

// Co is a Go coroutine on an event loop: a goroutine that the loop's
// driver switches to and from (iter.Pull), so it runs only on the loop's
// thread, strictly one at a time with that loop's C coroutines and
// callbacks.  Its blocking calls (Sleep, Park, Join, SimpleAsynch, the
// AcoEvent and sync-object calls) hand the loop back while they wait:
// where a C coroutine would wait in the loop (on an fd, a timer, a
// semaphore, a job), the Go coroutine's proxy, a small C record, waits in
// its place, and the driver resumes the Go coroutine when the wait ends.
//
// A Co's blocking methods may be called only by the coroutine itself, from
// its own body (not from other goroutines, not from callbacks); a
// violation panics with *MisuseError.  Ordinary Go blocking (channels,
// mutexes, time.Sleep) inside a coroutine is legal but stalls its whole
// loop: use the Co's methods and the eventer's sync objects instead.
// Arg, Done, Wake, Cancel and CancelOn may be called from anywhere.
type Co struct {
	l     *loop
	fn    func(*Co)
	arg   any
	next  func() (bool, bool)     // driver: iter.Pull's next, (goexit, ok)
	yield func(bool) bool         // the coroutine: iter.Pull's yield
	x     atomic.Pointer[coExtra] // rarely needed state, made on demand
	proxy unsafe.Pointer          // driver: its C waiter, nil until needed
	id    uint32                  // driver: index in l.cos
	state atomic.Uint32           // coNew, coLive, coEnded
	wait  uint8                   // driver: what it waits for (wait*)
	flags uint8                   // driver: co*
}

// coExtra is what only some coroutines need.
type coExtra struct {
	mu         sync.Mutex
	done       chan struct{} // Done's channel, made by the first call
	doneClosed bool
	joiners    []*Co // coroutines in Join(this)
	joining    *Co   // driver: the coroutine this one joins
	startErr   error // why it never ran
	panicV     any
	panicS     []byte
}

const ( // Co.state
	coNew uint32 = iota
	coLive
	coEnded
)

const ( // Co.wait: what a parked coroutine waits for
	waitNone    uint8 = iota
	waitGoPark        // Park(0): only Wake and Cancel end it
	waitGoJoin        // Join with no timeout: the other's end, Cancel
	waitC             // a C wait of its proxy (cancellable)
	waitCPark         // Park(t): the proxy parks, Wake ends it
	waitCJoin         // Join(t): the proxy parks, the other's end ends it
	waitCAsynch       // a job: not cancellable
)

const ( // Co.flags
	coCancel   uint8 = 1 << iota // a Cancel for its next cancellable call
	coWake                       // a Wake for its next Park
	coStopping                   // Shutdown unwinds it
	coOrphan                     // its proxy is left to eventer_fini
	coConn                       // a listener's connection: arg is its *AcoEvent
)

// stopUnwind unwinds a coroutine whose loop is shutting down.
type stopUnwind struct{}

func newCo(fn func(co *Co), arg any) *Co { return &Co{fn: fn, arg: arg} }

func (co *Co) extra() *coExtra {
	if x := co.x.Load(); x != nil {
		return x
	}
	co.x.CompareAndSwap(nil, &coExtra{})
	return co.x.Load()
}

// fail ends a Co that never ran.
func (co *Co) fail(err error) {
	x := co.extra()
	x.mu.Lock()
	x.startErr = err
	x.mu.Unlock()
	co.markEnded()
}

// markEnded records the end and tells whoever waits for it.
func (co *Co) markEnded() {
	co.state.Store(coEnded)
	// made after the store above, x sees the end itself (Done, Join)
	x := co.x.Load()
	if x == nil {
		return
	}
	x.mu.Lock()
	if x.done != nil && !x.doneClosed {
		close(x.done)
		x.doneClosed = true
	}
	joiners := x.joiners
	x.joiners = nil
	x.mu.Unlock()
	for _, j := range joiners {
		j := j
		_ = j.l.post(func() { j.l.joinEnded(j, co) })
	}
}

// AcoStart starts fn in a new Go coroutine with arg (Co.Arg); returning
// from fn ends it.  Callable from any goroutine, from callbacks and from
// coroutines: the coroutine is created by a loop's driver and starts at
// that loop's next opportunity.  Loops are chosen round-robin.  The
// returned *Co can be woken, cancelled and joined.  The error says why it
// could not start (not initialized, nil fn, the loops stopping); a start
// that fails later, as the loops stop, ends the Co without running it and
// goes to the error handler (WithErrorHandler) and to Join.
func AcoStart(fn func(co *Co), arg any) (*Co, error) {
	rt.mu.Lock()
	n := len(rt.loops)
	rt.mu.Unlock()
	if n == 0 {
		return nil, &OpError{Op: "AcoStart", Err: ErrNotInitialized}
	}
	return AcoStartOn(int(rt.rr.Add(1)-1)%n, fn, arg)
}

// AcoStartOn is AcoStart on loop i of the default pool.
func AcoStartOn(i int, fn func(co *Co), arg any) (*Co, error) {
	const op = "AcoStart"
	if fn == nil {
		return nil, &OpError{Op: op, Err: errors.New("nil function")}
	}
	l := loopAt(i)
	if l == nil {
		if running() {
			return nil, &OpError{Op: op, Err: fmt.Errorf("no loop %d", i)}
		}
		return nil, &OpError{Op: op, Err: ErrNotInitialized}
	}
	co := newCo(fn, arg)
	co.l = l
	if err := l.postStart(co); err != nil {
		return nil, &OpError{Op: op, Err: err}
	}
	return co, nil
}

// Start starts fn in a new coroutine on co's loop (AcoStartOn); ErrStopped
// once that loop has stopped.
func (co *Co) Start(fn func(co *Co), arg any) (*Co, error) {
	if co == nil || co.l == nil {
		return nil, &OpError{Op: "Co.Start", Err: errors.New("no coroutine")}
	}
	if loopAt(co.l.idx) != co.l { // a Co of an earlier Init
		return nil, &OpError{Op: "Co.Start", Err: ErrStopped}
	}
	return AcoStartOn(co.l.idx, fn, arg)
}

// startCo creates co on its loop's driver (rule 1: Go coroutines are
// created and resumed only by their loop's driver) and runs it until it
// first waits.
func (l *loop) startCo(co *Co) {
	if l.closed { // posted as the loop stopped (set by this driver)
		co.fail(ErrStopped)
		reportError(&OpError{Op: "AcoStart", Err: ErrStopped})
		return
	}
	var id uint32
	if n := len(l.freeIDs); n > 0 {
		id = l.freeIDs[n-1]
		l.freeIDs = l.freeIDs[:n-1]
	} else {
		id = uint32(len(l.cos))
		l.cos = append(l.cos, nil)
	}
	co.id = id
	l.cos[id] = co
	co.state.Store(coLive)
	co.next, _ = iter.Pull(co.body) // (unwinding resumes it with coStopping set)
	l.resume(co)
}

// body is the coroutine's iterator function: it runs fn and turns a panic
// or Goexit into something the driver can report outside C.
func (co *Co) body(yield func(bool) bool) {
	co.yield = yield
	returned := false
	defer func() {
		// whatever happened, the switch back must find the thread
		// locking it started with, or the runtime kills the process
		if co.l.restoreLocks() && returned {
			// it returned with a lock of its own (or without the driver's)
			x := co.extra()
			x.panicV, x.panicS = &MisuseError{Op: "coroutine return", Rule: ruleThreadLock}, debug.Stack()
		} else if !returned {
			switch r := recover().(type) {
			case nil:
				// runtime.Goexit (t.FailNow, ...): it can't be stopped, and
				// iter.Pull would propagate it into the driver.  Tell the
				// driver and never come back: this goroutine stays parked.
				yield(true)
			case stopUnwind:
			default:
				x := co.extra()
				x.panicV, x.panicS = r, debug.Stack()
			}
		}
	}()
	// the Co keeps no reference to fn: what fn captured (an Event a
	// coroutine converts, say) is garbage once fn is done with it
	fn := co.fn
	co.fn = nil
	fn(co)
	returned = true
}

// resume switches to co until it waits or ends (driver only).
func (l *loop) resume(co *Co) {
	l.current = co
	goexit, ok := co.next()
	l.current = nil
	if p := l.restPool; p != nil && (len(p.next) > 0 || p.inline != nil) {
		l.restAfterRun() // the direct requests it left (rest.go)
	}
	if ok && !goexit {
		return // it waits
	}
	l.endCo(co)
	if goexit {
		reportError(&OpError{Op: "AcoStart", Err: errors.New(
			"the coroutine called runtime.Goexit (t.FailNow?): it is abandoned; " +
				"end a coroutine by returning from its function")})
	}
	if x := co.x.Load(); x != nil && x.panicV != nil {
		panic(&CoroutinePanic{Value: x.panicV, Stack: x.panicS})
	}
}

func (l *loop) endCo(co *Co) {
	co.next, co.yield = nil, nil
	if co.flags&coConn != 0 {
		l.connEnd(co) // the connection ends with its coroutine
	}
	if co.proxy != nil && co.flags&coOrphan == 0 {
		if err := cgo.ProxyFree(co.proxy); err != nil {
			reportError(&OpError{Op: "Co end", Err: err})
		}
	}
	co.proxy = nil
	l.cos[co.id] = nil
	l.freeIDs = append(l.freeIDs, co.id)
	co.markEnded()
}

// stopCoroutines unwinds every coroutine of a stopping loop (driver): the
// C wait of each is undone first, so that its deferred functions may
// release what it holds; a panic in one of them is re-raised once all are
// unwound.
func (l *loop) stopCoroutines() {
	var first any
	for _, co := range l.cos {
		if co == nil {
			continue
		}
		if co.proxy != nil && cgo.ProxyAbort(co.proxy) != nil {
			co.flags |= coOrphan // a job still refers to it: eventer_fini frees it
		}
		co.wait = waitNone
		co.flags |= coStopping
		// its park panics with stopUnwind; a coroutine that recovers that
		// and waits again finds ErrStopped, and is resumed until it ends
		l.current = co
		for {
			if goexit, ok := co.next(); goexit || !ok {
				break
			}
		}
		l.current = nil
		if l.cos[co.id] == co {
			l.endCo(co)
		}
		if x := co.x.Load(); x != nil && x.panicV != nil && first == nil {
			first = &CoroutinePanic{Value: x.panicV, Stack: x.panicS}
		}
	}
	l.cos, l.freeIDs = nil, nil
	if first != nil {
		panic(first)
	}
}

// unwindCo ends co at once on its running loop (driver), the way
// stopCoroutines ends the coroutines of a stopped loop: its pending
// blocking call panics with stopUnwind, its deferred calls run (blocking
// calls there return ErrStopped).  A coroutine waiting for asynch work is
// unwound when its work completes (the job refers to its proxy until
// then).
func (l *loop) unwindCo(co *Co) {
	if co.state.Load() != coLive || int(co.id) >= len(l.cos) || l.cos[co.id] != co {
		return
	}
	co.flags |= coStopping
	if co.wait == waitCAsynch {
		return // its completion resumes it, and its park panics then
	}
	if co.proxy != nil && !l.drv.TakeWait(co.proxy) && cgo.ProxyAbort(co.proxy) != nil {
		return // (an asynch wait after all: as above)
	}
	co.wait = waitNone
	l.current = co
	for {
		if goexit, ok := co.next(); goexit || !ok {
			break
		}
	}
	l.current = nil
	if l.cos[co.id] == co {
		l.endCo(co)
	}
	if x := co.x.Load(); x != nil && x.panicV != nil {
		panic(&CoroutinePanic{Value: x.panicV, Stack: x.panicS})
	}
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

// Arg is the arg given to AcoStart; for an aco function's coroutine, the
// connection's AcoEvent (nil for a nil Co).
func (co *Co) Arg() any {
	if co == nil {
		return nil
	}
	return co.arg
}

// Done is closed when the coroutine has ended.
func (co *Co) Done() <-chan struct{} {
	if co == nil {
		misuse("Co.Done", ruleNoCo)
	}
	x := co.extra()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done == nil {
		x.done = make(chan struct{})
		if co.state.Load() == coEnded {
			close(x.done)
			x.doneClosed = true
		}
	}
	return x.done
}

// ---- the checks, and waiting ----------------------------------------------------

// enter checks that the caller may block on co now (the package rules 1
// and 2).  While Shutdown unwinds the coroutine it returns ErrStopped: its
// deferred functions may still release things, but nothing waits.
func (co *Co) enter(op string) error {
	if co == nil || co.l == nil {
		misuse(op, ruleNoCo)
	}
	l := co.l
	// co runs only on its loop's thread, and only while it is the loop's
	// current coroutine (read on that thread alone: the driver sets it)
	if co.state.Load() != coLive || !l.onItsThread() || l.current != co {
		l.misuseIdentity(op, co, (*byte)(getg()))
	}
	if l.cbDepth.Load() != 0 {
		misuse(op, ruleInCallback)
	}
	if l.locksSet {
		if n, ok := threadLocks(); ok && n != l.locks {
			l.restoreLocks()
			misuse(op, ruleThreadLock)
		}
	}
	if co.flags&coStopping != 0 {
		return &OpError{Op: op, Err: ErrStopped}
	}
	return nil
}

// misuseIdentity panics with the rule a call on co from goroutine g
// breaks (g is not co's).
func (l *loop) misuseIdentity(op string, co *Co, g *byte) {
	switch {
	case co.state.Load() == coEnded:
		misuse(op, ruleEnded)
	case co.state.Load() == coNew:
		misuse(op, "the coroutine has not started (rule 1: only the coroutine itself blocks)")
	case l.driverG.Load() == g:
		misuse(op, ruleInCallback) // the driver runs callbacks
	case l.onItsThread():
		misuse(op, ruleNotCurrent) // another coroutine of its loop
	}
	misuse(op, ruleOtherGoroutine)
}

// onItsThread reports whether the caller runs on l's thread (the driver's
// locked thread, which its coroutines run on): no cgo call needed.
func (l *loop) onItsThread() bool {
	m := l.mp.Load()
	return m != nil && unsafe.Pointer(m) == curM()
}

// restoreLocks brings the thread's LockOSThread count back to the one
// the loop's coroutines were created with (they run on the driver's
// thread, and the runtime checks it at every switch); true if it had to.
func (l *loop) restoreLocks() bool {
	if !l.locksSet {
		return false
	}
	n, ok := threadLocks()
	if !ok || n == l.locks {
		return false
	}
	for ; n > l.locks; n-- {
		runtime.UnlockOSThread()
	}
	for ; n < l.locks; n++ {
		runtime.LockOSThread()
	}
	return true
}

// park hands the loop back to the driver until something resumes co.
func (co *Co) park() {
	co.yield(false)
	if co.flags&coStopping != 0 {
		panic(stopUnwind{})
	}
}

// proxyOf is co's C waiter, made on first use (loop thread).
func (co *Co) proxyOf(op string) (unsafe.Pointer, error) {
	if co.proxy == nil {
		p, err := cgo.NewProxy(uint64(co.id))
		if err != nil {
			return nil, &OpError{Op: op, Err: err}
		}
		co.proxy = p
	}
	return co.proxy, nil
}

// takeCancel consumes a pending Cancel for a cancellable call.
func (co *Co) takeCancel() bool {
	if co.flags&coCancel == 0 {
		return false
	}
	co.flags &^= coCancel
	return true
}

// complete finishes a proxy call that may wait (its start's result r):
// its result now, or, when the proxy waits, the one the driver resumes co
// with.  how: what co waits for meanwhile.
func (co *Co) complete(op string, r cgo.Res, how uint8) (int64, syscall.Errno) {
	switch r.RC {
	case cgo.Done:
		return r.Val, r.Err
	case cgo.Misuse:
		switch r.Err {
		case syscall.EPERM:
			misuse(op, ruleWrongThread)
		case syscall.EDEADLK:
			misuse(op, ruleInCCoroutine)
		}
		panic(fmt.Sprintf("eventer: %s: proxy call refused: %v", op, r.Err))
	}
	co.wait = how
	co.park()
	return co.l.res, co.l.errno
}

// parkGo waits with nothing in C (Park(0), Join(0)) until wakeLocal,
// joinEnded or cancelLocal resumes co.
func (co *Co) parkGo(how uint8) (int64, syscall.Errno) {
	co.wait = how
	co.park()
	return co.l.res, co.l.errno
}

// resumeWith resumes co, parked with nothing in C, with a result (driver).
func (l *loop) resumeWith(co *Co, res int64, errno syscall.Errno) {
	co.wait = waitNone
	l.res, l.errno, l.data = res, errno, nil
	l.resume(co)
}

// timeoutNs: 0 means no timeout (-1 for C); a negative one has passed
// already (0: C does not wait at all).
func timeoutNs(d time.Duration) int64 {
	if d == 0 {
		return -1
	}
	if d < 0 {
		return 0
	}
	return int64(d)
}

// ---- the calls ----------------------------------------------------------------------

// Sleep suspends the coroutine for d (eventer_aco_sleep); d <= 0 yields.
// The error is non-nil only if the coroutine was cancelled (ErrCanceled)
// or is being unwound (ErrStopped).
func (co *Co) Sleep(d time.Duration) error {
	if d <= 0 {
		return co.yieldAs("Co.Sleep")
	}
	const op = "Co.Sleep"
	if err := co.enter(op); err != nil {
		return err
	}
	if co.takeCancel() {
		return errnoError(op, syscall.ECANCELED)
	}
	p, err := co.proxyOf(op)
	if err != nil {
		return err
	}
	res, errno := co.complete(op, cgo.Sleep(p, int64(d)), waitC)
	if res < 0 {
		return errnoError(op, errno)
	}
	return nil
}

// Yield lets the loop run due timers, ready fds and other coroutines
// before this one continues (eventer_aco_yield).
func (co *Co) Yield() error { return co.yieldAs("Co.Yield") }

func (co *Co) yieldAs(op string) error {
	if err := co.enter(op); err != nil {
		return err
	}
	if co.takeCancel() {
		return errnoError(op, syscall.ECANCELED)
	}
	p, err := co.proxyOf(op)
	if err != nil {
		return err
	}
	res, errno := co.complete(op, cgo.Yield(p), waitC)
	if res < 0 {
		return errnoError(op, errno)
	}
	return nil
}

// Park waits until Wake is called for this coroutine (a Wake that came
// first is remembered), or timeout (eventer_aco_park; timeouts: see the
// package documentation).  A Park with no timeout holds nothing in C
// while it waits.
func (co *Co) Park(timeout time.Duration) error {
	const op = "Co.Park"
	if err := co.enter(op); err != nil {
		return err
	}
	if co.flags&coWake != 0 {
		co.flags &^= coWake
		return nil
	}
	if co.takeCancel() {
		return errnoError(op, syscall.ECANCELED)
	}
	var res int64
	var errno syscall.Errno
	switch {
	case timeout < 0:
		return errnoError(op, syscall.ETIMEDOUT)
	case timeout == 0:
		res, errno = co.parkGo(waitGoPark)
	default:
		p, err := co.proxyOf(op)
		if err != nil {
			return err
		}
		res, errno = co.complete(op, cgo.Park(p, int64(timeout)), waitCPark)
	}
	if res < 0 {
		return errnoError(op, errno)
	}
	return nil
}

// Wake ends a Park of co, or makes its next Park return at once.  Callable
// from any goroutine (eventer_aco_wake): it is queued to co's loop.  An
// error if co has ended (or never started).
func (co *Co) Wake() error {
	return co.request("Co.Wake", func(l *loop) { l.wakeLocal(co) })
}

// Cancel makes co's pending blocking call (or its next one that would
// wait) return an error satisfying errors.Is(err, ErrCanceled); the
// coroutine goes on.  A wait for asynch work is not cancellable: the
// cancel then hits the next call.  Callable from any goroutine
// (eventer_aco_cancel): it is queued to co's loop.  An error if co has
// ended.
func (co *Co) Cancel() error {
	return co.request("Co.Cancel", func(l *loop) { l.cancelLocal(co) })
}

// CancelOn cancels co (Cancel) when ctx is done: the bridge from
// context.Context.  It returns a stop function, as context.AfterFunc
// does; call it when co no longer needs ctx.
func (co *Co) CancelOn(ctx context.Context) (stop func() bool) {
	if co == nil {
		misuse("Co.CancelOn", ruleNoCo)
	}
	return context.AfterFunc(ctx, func() { _ = co.Cancel() })
}

func (co *Co) request(op string, apply func(l *loop)) error {
	if co == nil || co.l == nil {
		return &OpError{Op: op, Err: errors.New("no coroutine")}
	}
	if co.state.Load() == coEnded {
		return &OpError{Op: op, Err: errors.New("coroutine has ended")}
	}
	if err := co.l.post(func() {
		if co.state.Load() != coEnded {
			apply(co.l)
		}
	}); err != nil {
		return &OpError{Op: op, Err: err}
	}
	return nil
}

func (l *loop) wakeLocal(co *Co) {
	switch co.wait {
	case waitGoPark:
		l.resumeWith(co, 0, 0)
	case waitCPark:
		if cgo.ProxyWake(co.proxy) != nil {
			co.flags |= coWake
		}
	default:
		co.flags |= coWake
	}
}

func (l *loop) cancelLocal(co *Co) {
	switch co.wait {
	case waitGoPark, waitGoJoin:
		l.resumeWith(co, -1, syscall.ECANCELED)
	case waitC, waitCPark, waitCJoin:
		if co.proxy != nil && l.drv.TakeWait(co.proxy) {
			// it parked in this step and its wait is not set up yet:
			// there is nothing in C to cancel
			l.resumeWith(co, -1, syscall.ECANCELED)
		} else if cgo.ProxyCancel(co.proxy) != nil {
			co.flags |= coCancel // its end is on the way already
		}
	default: // running, or in a job (not cancellable)
		co.flags |= coCancel
	}
}

// joinEnded: other, which j joins, has ended (j's loop).
func (l *loop) joinEnded(j, other *Co) {
	x := j.x.Load()
	if x == nil || x.joining != other {
		return
	}
	switch j.wait {
	case waitGoJoin:
		l.resumeWith(j, 0, 0)
	case waitCJoin:
		_ = cgo.ProxyWake(j.proxy)
	}
}

// Join waits until other has ended, or timeout; other may be a coroutine
// of any loop.  The error is other's start error if it never ran.
func (co *Co) Join(other *Co, timeout time.Duration) error {
	const op = "Co.Join"
	if err := co.enter(op); err != nil {
		return err
	}
	if other == nil {
		return &OpError{Op: op, Err: errors.New("nil coroutine")}
	}
	if other == co {
		return errnoError(op, syscall.EDEADLK)
	}
	ox := other.extra()
	ox.mu.Lock()
	if other.state.Load() == coEnded {
		err := ox.startErr
		ox.mu.Unlock()
		if err != nil {
			return &OpError{Op: op, Err: fmt.Errorf("the coroutine never ran: %w", err)}
		}
		return nil
	}
	if timeout < 0 || co.flags&coCancel != 0 {
		ox.mu.Unlock()
		if co.takeCancel() {
			return errnoError(op, syscall.ECANCELED)
		}
		return errnoError(op, syscall.ETIMEDOUT)
	}
	ox.joiners = append(ox.joiners, co)
	ox.mu.Unlock()
	x := co.extra()
	x.joining = other
	var res int64
	var errno syscall.Errno
	if timeout == 0 {
		res, errno = co.parkGo(waitGoJoin)
	} else if p, err := co.proxyOf(op); err != nil {
		res, errno = -1, syscall.ENOMEM
	} else {
		res, errno = co.complete(op, cgo.Park(p, int64(timeout)), waitCJoin)
	}
	x.joining = nil
	ox.mu.Lock()
	for i, j := range ox.joiners {
		if j == co {
			ox.joiners = append(ox.joiners[:i], ox.joiners[i+1:]...)
			break
		}
	}
	ox.mu.Unlock()
	if res < 0 {
		return errnoError(op, errno)
	}
	return nil
}

// SimpleAsynch runs fn off the loop, on the default job queue, and
// resumes the coroutine when it has returned (eventer_aco_simple_asynch).
// fn runs on another thread: it must not touch the coroutine.  The error
// says if fn did not run to its end: the queue was closed first, or fn
// called runtime.Goexit.  (A panic in fn ends the program, as a panic in
// a goroutine does.)
func (co *Co) SimpleAsynch(fn func()) error { return co.runAsynch("Co.SimpleAsynch", nil, fn) }

// RunAsynch is SimpleAsynch on job queue q (nil: the default queue).
func (co *Co) RunAsynch(q *JobQueue, fn func()) error { return co.runAsynch("Co.RunAsynch", q, fn) }

func (co *Co) runAsynch(op string, q *JobQueue, fn func()) error {
	if err := co.enter(op); err != nil {
		return err
	}
	if fn == nil {
		return &OpError{Op: op, Err: errors.New("nil function")}
	}
	p, err := co.proxyOf(op)
	if err != nil {
		return err
	}
	id := registerAsynch(fn)
	var r cgo.Res
	if q == nil {
		r = cgo.Asynch(p, nil, 0, id)
	} else if err := q.use(op, func(qp unsafe.Pointer) error {
		r = cgo.Asynch(p, qp, q.subq, id) // queued before Close can destroy it
		return nil
	}); err != nil {
		takeAsynch(id)
		return err
	}
	res, errno := co.complete(op, r, waitCAsynch)
	status := takeAsynch(id)
	switch {
	case res < 0 && errno == syscall.ESHUTDOWN:
		return &OpError{Op: op, Err: fmt.Errorf("%w: the job queue was closed before the work ran", ErrClosed)}
	case res < 0:
		return errnoError(op, errno)
	case status == asynchGoexit:
		return &OpError{Op: op, Err: errors.New("the work called runtime.Goexit: it did not run to its end")}
	case status != asynchDone:
		return &OpError{Op: op, Err: errors.New("the work did not run")}
	}
	return nil
}

// asynchWork holds the Go functions of queued asynch work by id.
var asynchWork struct {
	sync.Mutex
	m    map[uint64]*asynchJob
	next uint64
}

type asynchJob struct {
	fn     func()
	status atomic.Int32
}

const (
	asynchQueued int32 = iota
	asynchDone
	asynchGoexit
)

func registerAsynch(fn func()) uint64 {
	asynchWork.Lock()
	defer asynchWork.Unlock()
	if asynchWork.m == nil {
		asynchWork.m = map[uint64]*asynchJob{}
	}
	asynchWork.next++
	asynchWork.m[asynchWork.next] = &asynchJob{fn: fn}
	return asynchWork.next
}

func takeAsynch(id uint64) int32 {
	asynchWork.Lock()
	j := asynchWork.m[id]
	delete(asynchWork.m, id)
	asynchWork.Unlock()
	if j == nil {
		return asynchQueued
	}
	return j.status.Load()
}

// asynchGs holds the goroutines that run asynch work now (Shutdown and
// Loop must not wait for the job threads they keep busy).
var asynchGs sync.Map

// inAsynchWork reports whether the caller is a goroutine running asynch
// work.
func inAsynchWork() bool {
	_, ok := asynchGs.Load(getg())
	return ok
}

// runAsynchWork runs asynch work id on its job thread.  fn runs in a
// goroutine of its own: a runtime.Goexit then ends that goroutine (on a C
// thread it would kill the process), and is reported to the waiting
// coroutine; a panic ends the program with fn's stack, and the job thread
// (so the coroutine) never hears that fn completed.
func runAsynchWork(id uint64) {
	asynchWork.Lock()
	j := asynchWork.m[id]
	asynchWork.Unlock()
	if j == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		g := getg()
		asynchGs.Store(g, struct{}{})
		defer asynchGs.Delete(g)
		returned := false
		defer func() {
			if !returned {
				if r := recover(); r != nil {
					panic(r) // the program ends; done stays open
				}
				j.status.Store(asynchGoexit)
			}
			close(done)
		}()
		j.fn()
		j.status.Store(asynchDone)
		returned = true
	}()
	<-done
}
