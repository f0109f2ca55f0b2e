package eventer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// (default: one per CPU, like the C eventer).
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
// coroutine that called runtime.Goexit (t.FailNow), a callback id that no
// longer exists.  Default: log them.
func WithErrorHandler(f func(error)) Option { return func(c *config) { c.errorHandler = f } }

// loop is the Go side of one loop thread: its driver goroutine's state.
// Fields marked "driver" are touched only on the loop's thread (the
// driver goroutine and the coroutines it switches to).
type loop struct {
	idx int
	drv *cgo.Driver

	mu     sync.Mutex
	inbox  []func() // work queued by other goroutines (under mu)
	closed bool     // under mu: the loop stopped, post refuses

	cos     []*Co    // driver: live coroutines by id
	freeIDs []uint64 // driver

	// current is the id+1 of the running Go coroutine (0: none); cbDepth
	// counts Go callbacks on the stack.  Atomic: a misuse check may read
	// them from another goroutine.
	current atomic.Uint64
	cbDepth atomic.Int32

	panicked any // driver: a panic to re-raise outside C
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
	if cfg.concurrency == 0 {
		cfg.concurrency = runtime.NumCPU()
	}
	if err := cgo.SetProp("concurrency", strconv.Itoa(cfg.concurrency)); err != nil {
		return &OpError{Op: "Init", Err: fmt.Errorf("concurrency %d: %w", cfg.concurrency, err)}
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
	if err := cgo.InitExternal(); err != nil {
		return &OpError{Op: "Init", Err: err}
	}
	rt.cfg.Store(&cfg)
	rt.epoch.Add(1)
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
			if jq := NewJobQueue(q.name, q.opts...); jq.err != nil {
				firstErr = jq.err
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
		return &OpError{Op: "Init", Err: firstErr}
	}
	return nil
}

// drive is a loop's driver goroutine: it owns an OS thread for the loop's
// whole life (C keeps per-thread state) and runs eventer_run_once,
// handling the Go work each step hands back.
func (l *loop) drive(attached chan<- error) {
	defer rt.drivers.Done()
	runtime.LockOSThread()
	// The thread stays locked until the goroutine exits, which also ends
	// the thread: C state may linger on it.
	if err := l.drv.Attach(); err != nil {
		attached <- err
		return
	}
	attached <- nil
	l.stopped(l.drv.Run(l))
}

// stopped ends the driving of a loop whose Run returned (err: its error).
func (l *loop) stopped(err error) {
	l.stopCoroutines()
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
// error a loop hit, or nil.
func Loop() error {
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

// Shutdown stops every loop at the end of its current iteration (Go
// coroutines still suspended are unwound: their blocking call does not
// return, their deferred calls run), frees the C eventer, and returns when
// that is done.  From
// a callback or coroutine it only asks, and returns at once.
func Shutdown() {
	rt.mu.Lock()
	done := rt.done
	inited := rt.inited
	rt.mu.Unlock()
	if !inited {
		return
	}
	inLoop := false
	_ = withLive(func() error {
		cgo.Shutdown()
		inLoop = cgo.InLoop()
		return nil
	})
	if inLoop {
		return // a driver can't wait for itself
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
func (l *loop) post(fn func()) error {
	return withLive(func() error {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return ErrStopped
		}
		l.inbox = append(l.inbox, fn)
		l.mu.Unlock()
		return cgo.ForeignWake(l.idx)
	})
}

// ---- cgo.Handler --------------------------------------------------------

// Callback runs a Go callback the loop handed back.
func (l *loop) Callback(e unsafe.Pointer, id uint64, mask int, nowUs int64) int {
	ev := lookupCallback(id)
	if ev == nil {
		reportError(fmt.Errorf("eventer: callback %d for event %p no longer exists", id, e))
		return 0
	}
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
		l.drv.SetCallbackResult(mask & int(Read|Write|Exception))
		l.stopped(l.drv.Run(l))
	}()
	l.cbDepth.Add(1)
	defer l.cbDepth.Add(-1)
	rv := ev.call(e, mask, nowUs)
	returned = true
	return rv
}

// call runs ev's callback for C event e (ev's own, or a C copy of it made
// by eventer_alloc_copy: same callback, its own event).
func (ev *Event) call(e unsafe.Pointer, mask int, nowUs int64) int {
	if ev.ptr != e {
		ev = &Event{ptr: e, id: ev.id, cb: ev.cb, epoch: ev.epoch}
	}
	return int(ev.cb(ev, Mask(mask), time.UnixMicro(nowUs)))
}

// ProxyDone resumes the Go coroutine whose C operation completed.
func (l *loop) ProxyDone(id uint64, result int64, errno int, data []byte) {
	if id >= uint64(len(l.cos)) || l.cos[id] == nil {
		reportError(fmt.Errorf("eventer: completion for unknown coroutine %d", id))
		return
	}
	co := l.cos[id]
	co.res, co.errno, co.data = result, errno, data
	l.resume(co)
	co.data = nil
}

// Wake runs what other goroutines queued for this loop.
func (l *loop) Wake() {
	l.mu.Lock()
	work := l.inbox
	l.inbox = nil
	l.mu.Unlock()
	for _, fn := range work {
		fn()
	}
	collectDead()
}

// directCallback is a Go callback that C code called itself, through the
// trampoline (on the thread's stack).
func directCallback(e unsafe.Pointer, id uint64, mask int, nowUs int64) int {
	ev := lookupCallback(id)
	if ev == nil {
		return 0
	}
	if l := loopAt(cgo.CurrentLoop()); l != nil {
		l.cbDepth.Add(1)
		defer l.cbDepth.Add(-1)
	}
	return ev.call(e, mask, nowUs)
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

// logLine is a line the C library logged (mtevL), as a slog record: the
// error streams at Error, the debug streams at Debug, the rest at Info.
func logLine(stream, line string) {
	lg := slog.Default()
	if c := rt.cfg.Load(); c != nil && c.logger != nil {
		lg = c.logger
	}
	line = strings.TrimRight(line, "\n")
	level := slog.LevelInfo
	switch {
	case strings.Contains(stream, "err"):
		level = slog.LevelError
	case strings.Contains(stream, "deb"):
		level = slog.LevelDebug
	}
	lg.Log(context.Background(), level, line, "stream", stream)
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
