package eventer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/acoeventer/eventer/cgo"
)

// Option configures Init.
type Option func(*config)

type config struct {
	concurrency  int
	pools        map[string]int
	queueThreads int
	logger       *slog.Logger
	errorHandler func(error)
	jobqs        []jobqSpec
}

type jobqSpec struct {
	name string
	opts []JobQueueOption
}

// WithConcurrency sets the number of loop threads of the default pool
// (default: one per CPU, like the C eventer; at most 4096).
func WithConcurrency(n int) Option { return func(c *config) { c.concurrency = n } }

// WithPool creates a named pool of n loops (eventer_impl_propset
// "loop_<name>").  Coroutines and events run on the default pool; named
// pools serve C code that chooses them.
func WithPool(name string, n int) Option {
	return func(c *config) {
		if c.pools == nil {
			c.pools = map[string]int{}
		}
		c.pools[name] = n
	}
}

// WithDefaultQueueThreads sets the concurrency of the default job queue.
func WithDefaultQueueThreads(n int) Option { return func(c *config) { c.queueThreads = n } }

// WithJobQueue creates job queue name with opts at Init; NewJobQueue(name)
// then returns it.
func WithJobQueue(name string, opts ...JobQueueOption) Option {
	return func(c *config) { c.jobqs = append(c.jobqs, jobqSpec{name, opts}) }
}

// WithLogger sets where the binding logs (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithErrorHandler receives errors that have no caller to return to: a
// coroutine that called runtime.Goexit (t.FailNow), a coroutine whose
// start failed after AcoStart returned.  Default: log them.
func WithErrorHandler(f func(error)) Option { return func(c *config) { c.errorHandler = f } }

// loop is the Go side of one loop thread: its driver goroutine's state.
// Fields marked "driver" are touched only on the loop's thread (the
// driver goroutine and the coroutines it switches to).
type loop struct {
	idx int
	drv *cgo.Driver

	mu     sync.Mutex
	inbox  []func() // work queued by other goroutines (under mu)
	starts []*Co    // coroutines to start (under mu; no closure each)
	closed bool     // under mu: the loop stopped, post refuses

	cos     []*Co    // driver: live coroutines by id
	freeIDs []uint32 // driver
	current *Co      // driver: the running coroutine (nil: none)
	// driver: the completion a coroutine is resumed with
	res   int64
	errno syscall.Errno
	data  []byte // bytes a wait already read (C memory: copy out first)
	// driver: the buffer of I/O attempts through opsets that may call
	// back into Go (AcoEvent.tryCopy)
	scratch []byte

	driverG  atomic.Pointer[byte] // the driver goroutine (misuse checks)
	mp       atomic.Pointer[byte] // the driver thread's m
	cbDepth  atomic.Int32         // Go callbacks on the stack
	locks    uint32               // the driver thread's LockOSThread count
	locksSet bool                 // ... known (see threadlock.go)
	disp     dispatch             // driver: the Go callback being dispatched

	panicked any // driver: a panic to re-raise outside C

	restPool *restCoPool // driver: the direct path's state (rest.go)
}

var rt struct {
	mu      sync.Mutex
	inited  bool
	cfg     atomic.Pointer[config] // Init's options: the logger and error handler (read from C callbacks, so not under mu)
	loops   []*loop
	drivers sync.WaitGroup
	done    chan struct{} // closed when the loops stopped and C was freed
	err     error
	rr      atomic.Uint32
	epoch   atomic.Uint64 // bumped by each Init

	// life guards the C eventer against teardown: a goroutine that is not
	// a loop's (it may run while the loops stop) calls C only under
	// life.RLock with live set; reap clears live under life.Lock before it
	// frees C.
	life sync.RWMutex
	live bool
	// closing counts JobQueue.Close calls in progress: their job threads
	// may still post completions to the loops, so reap waits for them
	// (outside life, which a job may need meanwhile) before it frees C.
	closing sync.WaitGroup

	// objects of this session that hold C resources, released by reap
	// (an intrusive list: tracking allocates nothing)
	objMu sync.Mutex
	objs  tracked // sentinel
	nobjs int
}

// releaser is a Go object holding C resources: reap releases what is
// left of them when the session ends.
type releaser interface{ releaseAtShutdown() }

// tracked links a releaser into rt.objs.
type tracked struct {
	prev, next *tracked
	obj        releaser
}

func track(t *tracked, r releaser) {
	rt.objMu.Lock()
	if rt.objs.next == nil {
		rt.objs.next, rt.objs.prev = &rt.objs, &rt.objs
	}
	t.obj = r
	t.prev, t.next = rt.objs.prev, &rt.objs
	rt.objs.prev.next = t
	rt.objs.prev = t
	rt.nobjs++
	rt.objMu.Unlock()
}

func untrack(t *tracked) {
	rt.objMu.Lock()
	if t.next != nil {
		t.prev.next, t.next.prev = t.next, t.prev
		t.prev, t.next = nil, nil
		rt.nobjs--
	}
	rt.objMu.Unlock()
}

// untrackAll takes the whole list (reap).
func untrackAll() []releaser {
	rt.objMu.Lock()
	defer rt.objMu.Unlock()
	var out []releaser
	if rt.objs.next == nil {
		return nil
	}
	for t := rt.objs.next; t != &rt.objs; {
		next := t.next
		out = append(out, t.obj)
		t.prev, t.next = nil, nil
		t = next
	}
	rt.objs.next, rt.objs.prev = &rt.objs, &rt.objs
	rt.nobjs = 0
	return out
}

// withSession is withLive for an object made by the eventer of Init number
// epoch: after a Shutdown and a new Init its C memory is gone, so it fails
// with ErrNotInitialized instead of touching it.
func withSession(epoch uint64, fn func() error) error {
	rt.life.RLock()
	defer rt.life.RUnlock()
	if !rt.live || rt.epoch.Load() != epoch {
		return ErrNotInitialized
	}
	return fn()
}

// sessionNow is the current Init number (for objects being made).
func sessionNow() uint64 { return rt.epoch.Load() }

// withLive runs fn if the C eventer is up, holding it up meanwhile.
func withLive(fn func() error) error {
	rt.life.RLock()
	defer rt.life.RUnlock()
	if !rt.live {
		return ErrNotInitialized
	}
	return fn()
}

// Init creates the event loops (one C loop per thread of the default pool,
// each driven by a goroutine locked to its OS thread) and starts them.
// Events and coroutines may be added at once, from any goroutine.
// Init after Shutdown starts a new eventer.
func Init(opts ...Option) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.inited {
		return &OpError{Op: "Init", Err: errors.New("already initialized")}
	}
	cfg := config{logger: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.concurrency < 0 || cfg.queueThreads < 0 {
		return &OpError{Op: "Init", Err: errors.New("negative concurrency")}
	}
	// a loaded configuration's <eventer><config> first (LoadConfig), then
	// the options given here
	fromConf := confLoaded.Load()
	if fromConf {
		if err := cgo.ConfApplyEventer(); err != nil {
			return &OpError{Op: "Init", Err: err}
		}
	}
	if cfg.concurrency != 0 || !fromConf {
		if cfg.concurrency == 0 {
			cfg.concurrency = runtime.NumCPU()
		}
		if err := cgo.SetProp("concurrency", strconv.Itoa(cfg.concurrency)); err != nil {
			return &OpError{Op: "Init", Err: fmt.Errorf("concurrency %d: %w", cfg.concurrency, err)}
		}
	}
	for name, n := range cfg.pools {
		if err := cgo.SetProp("loop_"+name, strconv.Itoa(n)); err != nil {
			return &OpError{Op: "Init", Err: fmt.Errorf("pool %q (%d loops): %w", name, n, err)}
		}
	}
	if cfg.queueThreads > 0 {
		if err := cgo.SetProp("default_queue_threads", strconv.Itoa(cfg.queueThreads)); err != nil {
			return &OpError{Op: "Init", Err: fmt.Errorf("default queue threads %d: %w", cfg.queueThreads, err)}
		}
	}
	cgo.Direct = directCallback
	cgo.AsynchWork = runAsynchWork
	cgo.Panicked = exportPanicked
	cgo.LogLine = logLine
	threadLocks() // probe once, before any coroutine needs it
	if err := cgo.InitExternal(); err != nil {
		return &OpError{Op: "Init", Err: err}
	}
	rt.cfg.Store(&cfg)
	rt.epoch.Add(1)
	listenersReset()
	cgo.LogToGo(true)
	n := cgo.Concurrency()
	rt.loops = make([]*loop, n)
	rt.done = make(chan struct{})
	rt.err = nil
	attached := make(chan error, n)
	for i := 0; i < n; i++ {
		l := &loop{idx: i, drv: cgo.NewDriver(i)}
		rt.loops[i] = l
		rt.drivers.Add(1)
		go l.drive(attached)
	}
	var firstErr error
	for i := 0; i < n; i++ {
		if err := <-attached; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	rt.inited = true
	rt.life.Lock()
	rt.live = true
	rt.life.Unlock()
	go reap()
	if firstErr == nil {
		for _, q := range cfg.jobqs {
			if _, err := NewJobQueue(q.name, q.opts...); err != nil {
				firstErr = err
				break
			}
		}
	}
	if firstErr != nil {
		// reap takes mu before it closes done
		done := rt.done
		rt.mu.Unlock()
		cgo.Shutdown()
		<-done
		rt.mu.Lock()
		return opErr("Init", firstErr)
	}
	return nil
}

// drive is a loop's driver goroutine: it owns an OS thread for the loop's
// whole life (C keeps per-thread state) and runs eventer_run_once,
// handling the Go work each step hands back.
func (l *loop) drive(attached chan<- error) {
	// Not deferred: a panic that ends the driver (a coroutine's or a
	// callback's, re-raised here) ends the program, and Shutdown and Loop
	// must not return meanwhile as if the loop had stopped (a main that
	// then exits would win the race against the panic's report).
	runtime.LockOSThread()
	// The thread stays locked until the goroutine exits, which also ends
	// the thread: C state may linger on it.
	l.driverG.Store((*byte)(getg()))
	l.mp.Store((*byte)(curM()))
	l.locks, l.locksSet = threadLocks()
	if err := l.drv.Attach(); err != nil {
		attached <- err
		rt.drivers.Done()
		return
	}
	attached <- nil
	l.stopped(l.drv.Run(l))
	rt.drivers.Done()
}

// stopped ends the driving of a loop whose Run returned (err: its error).
func (l *loop) stopped(err error) {
	l.stopCoroutines()
	l.restStopped()
	// what was posted meanwhile still runs (a start then fails with
	// ErrStopped, a panic is re-raised); nothing is posted after this
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.Wake()
	l.drv.Detach()
	if err != nil {
		rt.mu.Lock()
		if rt.err == nil {
			rt.err = &OpError{Op: "Loop", Err: err}
		}
		rt.mu.Unlock()
	}
}

// reap waits for every driver to stop, then frees the C eventer.
func reap() {
	rt.drivers.Wait()
	rt.life.Lock()
	rt.live = false
	rt.life.Unlock()
	rt.closing.Wait()
	// what Go still holds of this session: events, job queues (their C
	// memory goes with the eventer), sync objects
	for _, o := range untrackAll() {
		o.releaseAtShutdown()
	}
	restDropPools()
	cgo.Fini()
	cgo.LogToGo(false)
	rt.mu.Lock()
	rt.inited = false
	rt.loops = nil
	done := rt.done
	rt.mu.Unlock()
	forgetAllCallbacks()
	close(done)
}

// Loop blocks until Shutdown has stopped every loop (the loops run from
// Init on; Loop is where a main function waits).  It returns the first
// error a loop hit, or nil.  From a loop's thread (a callback or a
// coroutine) or from asynch work it would wait for itself: it returns a
// *MisuseError at once.
func Loop() error {
	if cgo.InLoop() || inAsynchWork() {
		return &MisuseError{Op: "Loop", Rule: ruleWaitSelf}
	}
	rt.mu.Lock()
	done := rt.done
	rt.mu.Unlock()
	if done == nil {
		return &OpError{Op: "Loop", Err: ErrNotInitialized}
	}
	<-done
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.err
}

// Shutdown stops every loop at the end of its current iteration, unwinds
// the Go coroutines still suspended (their blocking call does not return;
// their deferred calls run, and may close what they hold: blocking calls
// return ErrStopped there), releases every C resource of this Init that Go
// objects still hold, frees the C eventer, and returns when that is done.
// From a callback, a coroutine or asynch work it only asks, and returns
// at once (the stop would wait for the caller).
func Shutdown() {
	rt.mu.Lock()
	done := rt.done
	inited := rt.inited
	rt.mu.Unlock()
	if !inited {
		return
	}
	// listeners first: no connection may outlive the loops
	stopListenerStarts()
	if cgo.InLoop() || inAsynchWork() {
		if cgo.ListenerCount() > 0 {
			// their connections' loops must run to end them: only ask
			go func() {
				shutdownListeners()
				_ = withLive(func() error { cgo.Shutdown(); return nil })
			}()
			return
		}
	} else {
		shutdownListeners()
	}
	self := false
	_ = withLive(func() error {
		cgo.Shutdown()
		self = cgo.InLoop() || inAsynchWork()
		return nil
	})
	if self {
		return // the stop would wait for this thread
	}
	<-done
}

func running() bool {
	rt.life.RLock()
	defer rt.life.RUnlock()
	return rt.live
}

func loopAt(i int) *loop {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if i < 0 || i >= len(rt.loops) {
		return nil
	}
	return rt.loops[i]
}

// post queues fn to run on l's driver goroutine (from any goroutine).
func (l *loop) post(fn func()) error { return l.queue(fn, nil) }

// postStart queues the start of co (startCo).
func (l *loop) postStart(co *Co) error { return l.queue(nil, co) }

func (l *loop) queue(fn func(), co *Co) error {
	return withLive(func() error {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return ErrStopped
		}
		if co != nil {
			l.starts = append(l.starts, co)
		} else {
			l.inbox = append(l.inbox, fn)
		}
		l.mu.Unlock()
		// once queued, fn runs: at the wake step this asks for, or at the
		// loop's stop (a failed wake only delays it)
		_ = cgo.ForeignWake(l.idx)
		return nil
	})
}

// call runs fn on l's driver and returns its result (from a goroutine
// that is not l's: it waits).
func (l *loop) call(fn func() error) error {
	res := make(chan error, 1)
	if err := l.post(func() { res <- fn() }); err != nil {
		return err
	}
	return <-res
}

// ---- cgo.Handler --------------------------------------------------------

// dispatch is the Go callback the driver is running: which event, how it
// was dispatched, and whether the eventer's reference to it is in hand
// (the event is out of the loop for this dispatch: a timer that fired, a
// trigger, or an fd event the callback removed), which the callback's
// result then decides about.
type dispatch struct {
	ev     *Event
	kind   int
	inHand bool
}

// Callback runs a Go callback the loop handed back.
func (l *loop) Callback(e unsafe.Pointer, id uint64, mask, kind int, nowUs int64) int {
	ev := eventForDispatch(e, id)
	if ev == nil {
		reportError(fmt.Errorf("eventer: callback %d for event %p no longer exists", id, e))
		return 0
	}
	l.disp = dispatch{ev: ev, kind: kind,
		inHand: kind == cgo.DispatchTimer || kind == cgo.DispatchTrigger || kind == cgo.DispatchComplete}
	returned := false
	defer func() {
		if returned {
			return
		}
		if v := recover(); v != nil {
			panic(v) // goes on, with its stack (we have not returned yet)
		}
		// runtime.Goexit (t.FailNow): this goroutine, the loop's driver,
		// ends after its deferred calls, so drive the loop from here until
		// it stops.  The callback counts as done (an fd event keeps its
		// mask, anything else is not re-added).
		reportError(&OpError{Op: "callback", Err: errors.New(
			"the callback called runtime.Goexit (t.FailNow?); return from it instead")})
		rv := 0
		if kind == cgo.DispatchFd {
			rv = mask & int(Read|Write|Exception)
		}
		d := l.disp
		l.disp = dispatch{}
		l.cbDepth.Store(0)
		l.drv.SetCallbackResult(l.finishDispatch(e, ev, kind, d.inHand, rv))
		l.stopped(l.drv.Run(l))
		rt.drivers.Done() // (drive's own end is not reached)
	}()
	l.cbDepth.Add(1)
	rv := int(ev.cb(ev, Mask(mask), time.UnixMicro(nowUs)))
	l.cbDepth.Add(-1)
	d := l.disp
	l.disp = dispatch{}
	rv = l.finishDispatch(e, ev, kind, d.inHand, rv)
	returned = true
	return rv
}

// finishDispatch settles the references of a Go callback's dispatch of C
// event e by its result, as the loop will apply it (eventer.h), and
// returns the result to hand the loop: 0 ends the event (removed first if
// it is an fd event still registered, and released from Go: every later
// call returns ErrClosed), a re-add keeps it, and a removed fd event that
// returns a mask stays out of the loop but open.
func (l *loop) finishDispatch(e unsafe.Pointer, ev *Event, kind int, inHand bool, rv int) int {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	d := &dispatch{ev: ev, kind: kind, inHand: inHand}
	if ev.gone != nil { // closed during its callback
		ev.closeHere(d) // a Close left to this loop, if any
		rv = 0
	}
	fdKind := kind == cgo.DispatchFd || (kind == cgo.DispatchTrigger && ev.fd >= 0)
	if rv == 0 && fdKind && !d.inHand && cgo.Registered(e) {
		// "done" without a Remove first: remove it now (C would abort)
		if ok, _ := cgo.Remove(e); ok {
			d.inHand = true
		}
	}
	if kind == cgo.DispatchRecur {
		if d.inHand { // removed: the loop keeps no reference of it
			cgo.Deref(e)
		}
		return rv // ignored by the loop
	}
	if d.inHand {
		switch {
		case rv == 0:
			// the loop drops the eventer's reference: the event is over
			ev.releaseLocked()
		case kind == cgo.DispatchFd:
			// removed, and a mask returned: it stays out; the reference
			// the removal handed back is not the loop's to keep
			cgo.Deref(e)
		}
		// else: a re-add (timer, trigger) keeps the reference
	}
	return rv
}

// ProxyDone resumes the Go coroutine whose C call completed.
func (l *loop) ProxyDone(id uint64, result int64, errno int, data []byte) {
	if id >= uint64(len(l.cos)) || l.cos[id] == nil {
		reportError(fmt.Errorf("eventer: completion for unknown coroutine %d", id))
		return
	}
	co := l.cos[id]
	co.wait = waitNone
	l.res, l.errno, l.data = result, syscall.Errno(errno), data
	l.resume(co)
	l.data = nil
}

// Wake runs what other goroutines queued for this loop.
func (l *loop) Wake() {
	// what is queued now (a function may queue more: that runs at the
	// wake step its post asks for, so nothing starves the loop)
	// (starts first: nothing queued before a start refers to its Co)
	l.mu.Lock()
	work, starts := l.inbox, l.starts
	l.inbox, l.starts = nil, nil
	l.mu.Unlock()
	for i, co := range starts {
		starts[i] = nil
		l.startCo(co)
	}
	for _, fn := range work {
		fn()
	}
	collectDead()
}

// directCallback is a Go callback that C code called itself, through the
// trampoline (on the thread's stack).
func directCallback(e unsafe.Pointer, id uint64, mask int, nowUs int64) int {
	ev := eventForDispatch(e, id)
	if ev == nil {
		return 0
	}
	if l := loopAt(cgo.CurrentLoop()); l != nil {
		l.cbDepth.Add(1)
		defer l.cbDepth.Add(-1)
	}
	return int(ev.cb(ev, Mask(mask), time.UnixMicro(nowUs)))
}

func exportPanicked(v any, stack []byte) {
	l := loopAt(cgo.CurrentLoop())
	err := fmt.Errorf("%v\n\n%s", v, stack)
	if l == nil {
		// a job thread: end the program from a goroutine of its own, as an
		// unrecovered panic would, without unwinding into C
		go func() { panic(err) }()
		return
	}
	if l.panicked == nil {
		l.panicked = err
	}
	// re-raised by the driver once C has returned
	_ = l.post(func() {
		if p := l.panicked; p != nil {
			l.panicked = nil
			panic(p)
		}
	})
}

// logLine is a line the C library logged (mtevL), as a slog record at the
// level of its stream (errors at Error, debug streams at Debug, ...).
func logLine(level int, stream, line string) {
	lg := slog.Default()
	if c := rt.cfg.Load(); c != nil && c.logger != nil {
		lg = c.logger
	}
	for len(line) > 0 && line[len(line)-1] == '\n' {
		line = line[:len(line)-1]
	}
	lg.Log(context.Background(), slog.Level(level), line, "stream", stream)
}

// SetDebug switches the eventer's debug stream (eventer_deb: timers,
// dispatch, coroutine resumes with the stack bytes they copy) on or off;
// its lines go to the logger at Debug level.  EVENTER_DEBUG=1 in the
// environment does the same at Init.
func SetDebug(on bool) { cgo.SetLogStream("debug/eventer", on) }

func reportError(err error) {
	lg := slog.Default()
	if c := rt.cfg.Load(); c != nil {
		if c.errorHandler != nil {
			c.errorHandler(err)
			return
		}
		if c.logger != nil {
			lg = c.logger
		}
	}
	lg.Error(err.Error())
}
