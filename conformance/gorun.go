package conformance

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer"
)

// StepFunc is the Go implementation of a step.  It runs in the scenario's
// Go coroutine that calls it (c.Co) and may block with that coroutine's
// calls.  Its result is res, or "ok" when res is "" and err is nil, or
// ErrName(err) when err is not nil.
type StepFunc func(c *Call) (res string, err error)

// Step is an entry of the Go table: the step's signature (the same as its
// C one: see the C header eventer_conformance.h) and its Go function.
type Step struct {
	Sig string
	Fn  StepFunc
}

// Steps is a Go table of named steps.
type Steps map[string]Step

// Call is one step being run by a Go coroutine: its arguments, and the
// scenario's objects they name.
type Call struct {
	Co   *eventer.Co // the coroutine running the step
	run  *goRun
	line *Line
	co   *goCo
}

// Errors a step's accessors return (ErrName: ENOENT, EINVAL, ESRCH), as
// the C accessors set errno.
var (
	errNoObject  = syscall.ENOENT
	errWrongKind = syscall.EINVAL
	errNotYet    = syscall.ESRCH
)

// Step is the step's name.
func (c *Call) Step() string { return c.line.Step }

// NArg is the number of positional arguments given.
func (c *Call) NArg() int { return len(c.line.Args) }

// Arg is positional argument i as the step gets it (dur arguments in
// microseconds, text unquoted); "" past the end.
func (c *Call) Arg(i int) string {
	if i < 0 || i >= len(c.line.Args) {
		return ""
	}
	return c.line.Args[i].Value
}

// Int is argument i as an integer.
func (c *Call) Int(i int) int {
	n, _ := strconv.Atoi(c.Arg(i))
	return n
}

// Dur is argument i, a duration.
func (c *Call) Dur(i int) time.Duration {
	us, _ := strconv.ParseInt(c.Arg(i), 10, 64)
	return time.Duration(us) * time.Microsecond
}

func (c *Call) opt(key string) (*Opt, bool) {
	for k := range c.line.Opts {
		if c.line.Opts[k].Key == key {
			return &c.line.Opts[k], true
		}
	}
	return nil, false
}

// Opt is option key, if given.
func (c *Call) Opt(key string) (string, bool) {
	o, ok := c.opt(key)
	if !ok {
		return "", false
	}
	return o.Value, true
}

// OptDur is option key, a duration, if given.
func (c *Call) OptDur(key string) (time.Duration, bool) {
	v, ok := c.Opt(key)
	if !ok {
		return 0, false
	}
	us, _ := strconv.ParseInt(v, 10, 64)
	return time.Duration(us) * time.Microsecond, true
}

// Timeout is the timeout= option in the Go API's terms: 0 when not given
// (no limit), a negative duration for timeout=0 (do not wait: C's {0,0}),
// else the duration.
func (c *Call) Timeout() time.Duration {
	d, ok := c.OptDur("timeout")
	switch {
	case !ok:
		return 0
	case d == 0:
		return -1
	}
	return d
}

// OptArg is the index of option key for the object accessors (an option of
// kind obj, such as queue=Q), or -1 if not given.
func (c *Call) OptArg(key string) int {
	for k := range c.line.Opts {
		if c.line.Opts[k].Key == key {
			return len(c.line.Args) + k
		}
	}
	return -1
}

func (c *Call) ref(i int) int {
	switch {
	case i >= 0 && i < len(c.line.Args):
		return c.line.Args[i].Ref
	case i >= len(c.line.Args) && i < len(c.line.Args)+len(c.line.Opts):
		return c.line.Opts[i-len(c.line.Args)].Ref
	}
	return -1
}

// slot is the object argument i names (nil if it names none).
func (c *Call) slot(i int) *goObj {
	k := c.ref(i)
	if k < 0 || k >= len(c.run.objs) {
		return nil
	}
	return &c.run.objs[k]
}

// object kinds of the Go driver
const (
	kNone = iota
	kFd   // a plain fd
	kEv   // an *eventer.Event (an accepted connection)
	kAco  // an *eventer.AcoEvent
	kObj  // anything else
)

type goObj struct {
	kind    int
	fd      int
	ev      *eventer.Event
	ae      *eventer.AcoEvent
	v       any
	typ     string // kObj: "sem", ... or "user"
	network string // a listening address, kept after a close
	address string
}

func (c *Call) get(i int) (goObj, error) {
	o := c.slot(i)
	if o == nil {
		return goObj{}, errWrongKind
	}
	c.run.mu.Lock()
	defer c.run.mu.Unlock()
	if o.kind == kNone {
		return goObj{}, errNoObject
	}
	return *o, nil
}

// Fd is the fd of the object argument i names (a socket, or the fd under
// an AcoEvent).
func (c *Call) Fd(i int) (int, error) {
	o, err := c.get(i)
	if err != nil {
		return -1, err
	}
	switch o.kind {
	case kFd:
		return o.fd, nil
	case kEv:
		return o.ev.Fd(), nil
	case kAco:
		return o.ae.Fd(), nil
	}
	return -1, errWrongKind
}

// AcoEvent is the AcoEvent argument i names.
func (c *Call) AcoEvent(i int) (*eventer.AcoEvent, error) {
	o, err := c.get(i)
	if err != nil {
		return nil, err
	}
	if o.kind != kAco {
		return nil, errWrongKind
	}
	return o.ae, nil
}

// Obj is the object argument i names, one set with SetObj.
func (c *Call) Obj(i int) (any, error) {
	o, err := c.get(i)
	if err != nil {
		return nil, err
	}
	if o.kind != kObj {
		return nil, errWrongKind
	}
	return o.v, nil
}

func (c *Call) typed(i int, typ string) (any, error) {
	o, err := c.get(i)
	if err != nil {
		return nil, err
	}
	if o.kind != kObj || o.typ != typ {
		return nil, errWrongKind
	}
	return o.v, nil
}

// Addr is the listening address of object i (listen, listener): a network
// and an address for Co.Connect.
func (c *Call) Addr(i int) (network, address string, err error) {
	o := c.slot(i)
	if o == nil {
		return "", "", errWrongKind
	}
	c.run.mu.Lock()
	defer c.run.mu.Unlock()
	if o.network == "" {
		return "", "", errNoObject
	}
	return o.network, o.address, nil
}

func (c *Call) set(i int, n goObj) error {
	o := c.slot(i)
	if o == nil {
		return errWrongKind
	}
	c.run.mu.Lock()
	old := *o
	n.network, n.address = o.network, o.address
	*o = n
	c.run.mu.Unlock()
	// the new object may be the old one's successor (an fd made an aco
	// event, or a TLS connection): it owns what the old one held
	t, isTLS := n.v.(*goTLS)
	switch {
	case n.kind == kAco && (old.kind == kFd || old.kind == kEv):
	case isTLS && old.kind == kFd:
	case isTLS && old.kind == kAco && old.ae == t.ae:
	default:
		release(&old)
	}
	return nil
}

// SetFd makes argument i's object a plain fd (released with close(2)).
func (c *Call) SetFd(i, fd int) error { return c.set(i, goObj{kind: kFd, fd: fd}) }

// SetAcoEvent makes argument i's object an AcoEvent (released with Close).
func (c *Call) SetAcoEvent(i int, ae *eventer.AcoEvent) error {
	return c.set(i, goObj{kind: kAco, ae: ae})
}

// SetObj makes argument i's object v; if v has a Close() error method, it
// is called when the scenario ends.
func (c *Call) SetObj(i int, v any) error { return c.set(i, goObj{kind: kObj, v: v, typ: "user"}) }

func (c *Call) setTyped(i int, typ string, v any) error {
	return c.set(i, goObj{kind: kObj, v: v, typ: typ})
}

func (c *Call) setEvent(i int, ev *eventer.Event) error { return c.set(i, goObj{kind: kEv, ev: ev}) }

func (c *Call) setAddr(i int, network, address string) {
	if o := c.slot(i); o != nil {
		c.run.mu.Lock()
		o.network, o.address = network, address
		c.run.mu.Unlock()
	}
}

// Forget forgets argument i's object without releasing it (the step took
// it over).
func (c *Call) Forget(i int) error {
	o := c.slot(i)
	if o == nil {
		return errWrongKind
	}
	c.run.mu.Lock()
	defer c.run.mu.Unlock()
	if o.kind == kNone {
		return errNoObject
	}
	o.kind, o.fd, o.ev, o.ae, o.v = kNone, -1, nil, nil, nil
	return nil
}

// Coroutine is the coroutine argument i names ("self": the caller), or an
// error (ESRCH) if it has not started.
func (c *Call) Coroutine(i int) (*eventer.Co, error) {
	gc := c.goCo(i)
	if gc == nil {
		return nil, errWrongKind
	}
	h := gc.h.Load()
	if h == nil {
		return nil, errNotYet
	}
	return h, nil
}

func (c *Call) goCo(i int) *goCo {
	if i < 0 || i >= len(c.line.Args) || c.line.Args[i].Kind != "co" {
		return nil
	}
	if k := c.line.Args[i].Ref; k >= 0 {
		return c.run.cos[k]
	}
	return c.co
}

// Unique is a name unique to this run, for things the process shares
// (job queue names, socket paths).
func (c *Call) Unique(name string) string { return fmt.Sprintf("cfgo%d_%s", c.run.id, name) }

// Bytes is a result key=BYTES, the bytes written as the scenario language
// writes them (Quote).
func Bytes(key string, p []byte) string { return key + "=" + Quote(p) }

// ErrName is the result a Go error gives, C's errno name for the same
// failure: io.EOF "eof" (a C read of 0 bytes), os.ErrDeadlineExceeded
// "ETIMEDOUT", eventer.ErrCanceled "ECANCELED", net.ErrClosed and
// eventer.ErrClosed "EBADF", eventer.ErrWouldBlock "EAGAIN",
// eventer.ErrNotOwner "EPERM", eventer.ErrChanClosed "EPIPE",
// eventer.ErrStopped "ESHUTDOWN", a syscall.Errno its name; anything else
// "error: <text>".
func ErrName(err error) string {
	var en syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, io.EOF):
		return "eof"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "ETIMEDOUT"
	case errors.Is(err, eventer.ErrCanceled):
		return "ECANCELED"
	case errors.Is(err, net.ErrClosed), errors.Is(err, eventer.ErrClosed):
		return "EBADF"
	case errors.Is(err, eventer.ErrWouldBlock):
		return "EAGAIN"
	case errors.Is(err, eventer.ErrNotOwner):
		return "EPERM"
	case errors.Is(err, eventer.ErrChanClosed):
		return "EPIPE"
	case errors.Is(err, eventer.ErrStopped):
		return "ESHUTDOWN"
	case errors.As(err, &en):
		return ErrnoName(en)
	}
	return "error: " + err.Error()
}

// ---- the Go driver ------------------------------------------------------------------

var goRunIDs atomic.Uint64

type goCo struct {
	idx   int
	sc    *Coroutine
	steps []int // line indices
	h     atomic.Pointer[eventer.Co]
	begun atomic.Bool // started (or being started)
}

type goRun struct {
	sc      *Scenario
	fns     []StepFunc // per line
	id      uint64
	mu      sync.Mutex // objs, trace
	objs    []goObj
	cos     []*goCo
	trace   []Entry
	t0      time.Time
	live    atomic.Int32
	aborted atomic.Bool
}

// runGo runs sc with Go coroutines; steps is the Go table.
func runGo(sc *Scenario, steps Steps) ([]Entry, error) {
	r := &goRun{sc: sc, id: goRunIDs.Add(1), objs: make([]goObj, len(sc.Objects))}
	for i := range r.objs {
		r.objs[i].fd = -1
	}
	for i, l := range sc.Lines {
		st, ok := steps[l.Step]
		if !ok || st.Fn == nil {
			return nil, fmt.Errorf("%s:%d: step %s has no Go implementation", sc.File, l.Num, l.Step)
		}
		r.fns = append(r.fns, st.Fn)
		_ = i
	}
	for i, co := range sc.Cos {
		r.cos = append(r.cos, &goCo{idx: i, sc: co})
	}
	for i, l := range sc.Lines {
		r.cos[l.Co].steps = append(r.cos[l.Co].steps, i)
	}
	n := 0
	for _, gc := range r.cos {
		if !gc.sc.Manual {
			n++
			gc.begun.Store(true)
		}
	}
	r.live.Store(int32(n)) // before any start: done never shows early
	r.t0 = time.Now()
	for loop := 0; loop < sc.Loops; loop++ {
		var mine []*goCo
		for _, gc := range r.cos {
			if gc.sc.Loop == loop && !gc.sc.Manual {
				mine = append(mine, gc)
			}
		}
		if len(mine) == 0 {
			continue
		}
		// a starter on the loop starts them in order: each runs until it
		// first waits before the next one does (as the C driver's task)
		if _, err := eventer.AcoStartOn(loop, func(co *eventer.Co) {
			for _, gc := range mine {
				h, err := co.Start(r.body, gc)
				if err != nil {
					r.record(gc, -1, "start: "+err.Error(), 0, 0)
					r.live.Add(-1)
					continue
				}
				gc.setHandle(h)
			}
		}, nil); err != nil {
			return nil, fmt.Errorf("Go run: %w", err)
		}
	}
	var runErr error
	inTime, ended := waitDone(sc.Timeout, func() bool { return r.live.Load() == 0 }, r.abort)
	if !ended {
		return nil, errStuck
	}
	if !inTime {
		runErr = errTimeout
	}
	r.cleanup()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.trace, runErr
}

func (gc *goCo) setHandle(h *eventer.Co) { gc.h.CompareAndSwap(nil, h) }

func (r *goRun) abort() {
	r.aborted.Store(true)
	for _, gc := range r.cos {
		if h := gc.h.Load(); h != nil {
			_ = h.Cancel()
		}
	}
}

func (r *goRun) record(gc *goCo, line int, res string, start, end time.Duration) {
	if line < 0 {
		return
	}
	r.mu.Lock()
	r.trace = append(r.trace, Entry{Line: r.sc.Lines[line], Result: res, Start: start, End: end})
	r.mu.Unlock()
}

// body is every scenario coroutine: its steps, in order.
func (r *goRun) body(co *eventer.Co) {
	gc := co.Arg().(*goCo)
	gc.setHandle(co)
	defer r.live.Add(-1)
	for _, li := range gc.steps {
		if r.aborted.Load() {
			return
		}
		c := &Call{Co: co, run: r, line: r.sc.Lines[li], co: gc}
		start := time.Since(r.t0)
		res := r.call(r.fns[li], c)
		r.record(gc, li, res, start, time.Since(r.t0))
	}
}

// call runs one step; a panic in it is its result (the run goes on).
func (r *goRun) call(fn StepFunc, c *Call) (out string) {
	defer func() {
		if p := recover(); p != nil {
			out = fmt.Sprintf("panic: %v", p)
			if verboseStacks {
				out += "\n" + string(debug.Stack())
			}
		}
	}()
	res, err := fn(c)
	switch {
	case err != nil:
		return ErrName(err)
	case res == "":
		return "ok"
	}
	return res
}

// verboseStacks adds the stack to a panicking step's result (debugging
// the kit itself).
var verboseStacks = false

// startCo starts manual coroutine gc (the start step).
func (r *goRun) startCo(c *Call, gc *goCo) error {
	if !gc.begun.CompareAndSwap(false, true) {
		return syscall.EALREADY
	}
	r.live.Add(1)
	var h *eventer.Co
	var err error
	if gc.sc.Loop == c.co.sc.Loop {
		h, err = c.Co.Start(r.body, gc)
	} else {
		h, err = eventer.AcoStartOn(gc.sc.Loop, r.body, gc)
	}
	if err != nil {
		r.live.Add(-1)
		return err
	}
	gc.setHandle(h)
	return nil
}

// cleanup releases what the scenario left (after every coroutine ended;
// from the runner's goroutine: the Go API's Close calls take any
// goroutine).
func (r *goRun) cleanup() {
	r.mu.Lock()
	objs := r.objs
	r.objs = nil
	r.mu.Unlock()
	for i := range objs {
		release(&objs[i])
	}
}

func release(o *goObj) {
	switch o.kind {
	case kFd:
		if o.fd >= 0 {
			unix.Close(o.fd)
		}
	case kEv:
		_ = o.ev.Close()
	case kAco:
		_ = o.ae.Close()
	case kObj:
		if cl, ok := o.v.(interface{ Close() error }); ok {
			_ = cl.Close()
		}
	}
	*o = goObj{fd: -1, network: o.network, address: o.address}
}

// ---- waiting for a run ------------------------------------------------------------------

var (
	errTimeout = errors.New("the scenario's timeout passed; its coroutines were cancelled")
	errStuck   = errors.New("the scenario's timeout passed, and cancelling its coroutines did not end them")
)

// abortGrace is how long a run that timed out gets to end once its
// coroutines are cancelled.
const abortGrace = 5 * time.Second

// waitDone polls done until timeout; then it aborts (again every 100 ms)
// for up to abortGrace.  inTime: done came before the timeout; ended:
// done came at all.
func waitDone(timeout time.Duration, done func() bool, abort func()) (inTime, ended bool) {
	deadline := time.Now().Add(timeout)
	sleep := 50 * time.Microsecond
	for !done() {
		if time.Now().After(deadline) {
			end := time.Now().Add(abortGrace)
			for !done() {
				if time.Now().After(end) {
					return false, false
				}
				abort()
				time.Sleep(100 * time.Millisecond)
			}
			return false, true
		}
		time.Sleep(sleep)
		if sleep < time.Millisecond {
			sleep *= 2
		}
	}
	return true, true
}
