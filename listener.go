package eventer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer/cgo"
)

// This file is the Go side of libmtev's listener subsystem (C's
// mtev_listener, csrc/listener): Go aco functions, listeners from the
// configuration and from code, and the acceptor closure.
//
// A connection of a Go aco function: the listener accepts it (in its
// accept thread, or on its loop), books it (the acceptor closure) and
// hands it to a loop; there C converts its event to an aco event and
// hands the loop's driver a step; the driver (ListenStart) starts a Go
// coroutine whose body is the function, with the event as an AcoEvent.
// When the coroutine ends, however it ends (return, panic, Goexit,
// Shutdown's unwinding), endCo ends the connection: its fd is closed
// unless the function closed it, the event released, the acceptor
// closure freed (connEnd).  One cgo call at each end.

// ---- aco functions --------------------------------------------------------------

// acoFunc is a Go aco function, by id (C knows the id only).
type acoFunc struct {
	fn   func(co *Co, ae *AcoEvent)
	body func(co *Co) // fn with the coroutine's AcoEvent (Co.arg)
}

var acoFuncs struct {
	m    sync.Map // uint32 -> *acoFunc (read by drivers per connection)
	next atomic.Uint32
}

func newAcoFunc(fn func(co *Co, ae *AcoEvent)) (uint32, error) {
	id := acoFuncs.next.Add(1)
	if id == 0 {
		return 0, errors.New("too many aco functions")
	}
	f := &acoFunc{fn: fn}
	f.body = func(co *Co) { f.fn(co, co.arg.(*AcoEvent)) }
	acoFuncs.m.Store(id, f)
	return id, nil
}

// RegisterAcoFunction registers fn as the listener type name, for the
// configuration's listeners (ListenerInit): each connection of such a
// listener runs fn in a Go coroutine of its own on the connection's loop,
// with the connection as an AcoEvent (also co.Arg()).  C and Go aco
// functions share one registry
// (mtev_listener_register_aco_function, _register_aco_dispatch), so a
// configuration may name either; registering a name again replaces it
// for the listeners started afterwards; a callback named with
// eventer_name_callback wins over an aco function of the same name, as in
// C.  Callable before Init.
//
// When fn returns, the connection is closed (unless fn closed it) and
// everything it held is released: fn need not Close the AcoEvent.  A panic
// in fn is a coroutine's panic: the connection is released, then the
// program ends with the panic (see the package documentation's rule 6).
func RegisterAcoFunction(name string, fn func(co *Co, ae *AcoEvent)) error {
	const op = "RegisterAcoFunction"
	if name == "" {
		return &OpError{Op: op, Err: errors.New("empty name")}
	}
	if fn == nil {
		return &OpError{Op: op, Err: errors.New("nil function")}
	}
	if err := nulErr("name", name); err != nil {
		return &OpError{Op: op, Err: err}
	}
	id, err := newAcoFunc(fn)
	if err != nil {
		return &OpError{Op: op, Err: err}
	}
	if err := cgo.ListenRegister(name, id); err != nil {
		acoFuncs.m.Delete(id)
		return &OpError{Op: op, Err: fmt.Errorf("%q: %w", name, err)}
	}
	return nil
}

// ---- the configuration ----------------------------------------------------------

// confLoaded: a configuration was loaded, so each Init takes its
// <eventer><config> (the C settings are reset when the eventer is freed).
var confLoaded atomic.Bool

// LoadConfig reads a libmtev-style XML configuration file (mtev_conf_load)
// for ListenerInit and Init: load it before Init, which then sets the
// loops and job queues up as its <eventer><config> says (concurrency,
// loop_<name>, jobq_<name>, default_queue_threads, ...; an Init option
// given explicitly wins).  Any root element is accepted; ListenerInit
// names the one to use.  The error names the file and line and what is
// wrong (a missing file also satisfies errors.Is(err, os.ErrNotExist));
// a failed load changes nothing.  An eventer setting after Init is an
// error.
func LoadConfig(path string) error {
	if err := nulErr("path", path); err != nil {
		return &OpError{Op: "LoadConfig", Err: err}
	}
	if err := cgo.ConfLoad(path); err != nil {
		return &OpError{Op: "LoadConfig", Err: err}
	}
	confLoaded.Store(true)
	return nil
}

// LoadConfigString is LoadConfig for a configuration held in memory
// (mtev_conf_load_string); name stands for the file in messages, and
// included files are relative to the working directory.
func LoadConfigString(xml, name string) error {
	for _, err := range []error{nulErr("name", name), nulErr("configuration", xml)} {
		if err != nil {
			return &OpError{Op: "LoadConfig", Err: err}
		}
	}
	if err := cgo.ConfLoadString(xml, name); err != nil {
		return &OpError{Op: "LoadConfig", Err: err}
	}
	confLoaded.Store(true)
	return nil
}

// ListenerInit starts the listeners of the loaded configuration
// (mtev_listener_init): every /app/listeners//listener and
// /app/include/listeners//listener element, with the attributes and
// <config> described in csrc/listener/mtev_listener.h (type, address,
// port, backlog, fanout, accept_thread, reuseport, max_connections;
// no_delay, idle_timeout, half_close, and keys of the service's own).  A
// type is an aco function (RegisterAcoFunction, or a C one) or a named C
// callback.  All of them start, or none does: the error names the
// element's file and line and what is wrong (an unknown type, with the
// registered ones; a bad address or port; an address in use; a
// fanout_pool other than "default", whose loops a Go program does not
// run).  Listeners() returns them; Shutdown stops them.
func ListenerInit(app string) error {
	const op = "ListenerInit"
	if err := nulErr("app", app); err != nil {
		return &OpError{Op: op, Err: err}
	}
	err := withListeners(func() error { return cgo.ListenerInit(app) })
	if err != nil {
		return &OpError{Op: op, Err: err}
	}
	return nil
}

// lstate keeps listeners from starting while Shutdown stops them: a
// listener that started after Shutdown looked would outlive the loops.
var lstate struct {
	mu       sync.RWMutex
	stopping bool // Shutdown has begun (Init clears it)
}

// withListeners runs fn, which starts listeners, while the eventer is
// up and no Shutdown has begun (ErrStopped otherwise).
func withListeners(fn func() error) error {
	lstate.mu.RLock()
	defer lstate.mu.RUnlock()
	if lstate.stopping {
		if !running() {
			return ErrNotInitialized
		}
		return ErrStopped
	}
	return withLive(fn)
}

// stopListenerStarts is Shutdown's first step: no listener starts from
// now on (it waits for starts in progress).
func stopListenerStarts() {
	lstate.mu.Lock()
	lstate.stopping = true
	lstate.mu.Unlock()
}

// listenersReset is Init's: listeners may start again.
func listenersReset() {
	lstate.mu.Lock()
	lstate.stopping = false
	lstate.mu.Unlock()
}

// ---- listeners in code --------------------------------------------------------------

// ListenerOption configures ListenAco.
type ListenerOption func(*listenConfig)

type listenConfig struct {
	backlog               int
	fanout, inLoop, reuse bool
	maxConns              int
	grace                 time.Duration
	conf                  [][2]string
	tls                   bool        // WithTLS, with:
	ssl                   [][2]string // the <sslconfig> keys
	err                   error
}

func (c *listenConfig) set(key, value string) {
	for i := range c.conf {
		if c.conf[i][0] == key {
			c.conf[i][1] = value
			return
		}
	}
	c.conf = append(c.conf, [2]string{key, value})
}

func (c *listenConfig) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf(format, args...)
	}
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// WithBacklog sets the listen(2) backlog (default 5, as libmtev's; a busy
// service wants more).
func WithBacklog(n int) ListenerOption {
	return func(c *listenConfig) {
		if n <= 0 {
			c.fail("backlog %d: must be positive", n)
		}
		c.backlog = n
	}
}

// WithFanout spreads the connections over the loops (round robin; loop 0
// is left out when there are others, as the C eventer does); without it
// (default) every connection runs on the loop the listener was made on
// (loop 0 from a plain goroutine).
func WithFanout(on bool) ListenerOption { return func(c *listenConfig) { c.fanout = on } }

// WithAcceptThread accepts in a thread of its own (on, the default, as
// libmtev's accept_thread) or on the listener's loop (off).
func WithAcceptThread(on bool) ListenerOption { return func(c *listenConfig) { c.inLoop = !on } }

// WithIdleTimeout shuts a connection down (shutdown(2): its pending read
// returns io.EOF, its writes fail) once it has not read or written for d
// (idle_timeout; 0, the default: never).
func WithIdleTimeout(d time.Duration) ListenerOption {
	return func(c *listenConfig) {
		if d < 0 {
			c.fail("idle timeout %v: negative", d)
			return
		}
		ms := (d + time.Millisecond - 1) / time.Millisecond
		c.set("idle_timeout", strconv.FormatInt(int64(ms), 10))
	}
}

// WithMaxConnections limits the connections open at once; one more is
// reset at once (RST) and counted as refused.  0 (default): no limit.
func WithMaxConnections(n int) ListenerOption {
	return func(c *listenConfig) {
		if n < 0 || int64(n) > 1<<32-1 {
			c.fail("max connections %d: out of range", n)
		}
		c.maxConns = n
	}
}

// WithReusePort sets SO_REUSEPORT, so several processes (or listeners)
// share the port.
func WithReusePort(on bool) ListenerOption { return func(c *listenConfig) { c.reuse = on } }

// WithNoDelay sets TCP_NODELAY on accepted TCP connections (default on).
func WithNoDelay(on bool) ListenerOption {
	return func(c *listenConfig) { c.set("no_delay", onOff(on)) }
}

// WithHalfClose lets writes go on after the peer's EOF (default off: once
// a read has returned io.EOF, writes fail, so a read-reply loop ends when
// the peer goes away).
func WithHalfClose(on bool) ListenerOption {
	return func(c *listenConfig) { c.set("half_close", onOff(on)) }
}

// WithListenerConfig sets key in the listener's <config>, which every
// connection reads with Acceptor().Config (the keys above are there too).
func WithListenerConfig(key, value string) ListenerOption {
	return func(c *listenConfig) {
		if key == "" {
			c.fail("empty config key")
			return
		}
		for _, err := range []error{nulErr("config key", key), nulErr("config value", value)} {
			if err != nil {
				c.fail("%w", err)
				return
			}
		}
		c.set(key, value)
	}
}

// WithGrace is how long Close lets running connections go on before it
// cancels them (default 0: at once).
func WithGrace(d time.Duration) ListenerOption {
	return func(c *listenConfig) {
		if d < 0 {
			c.fail("grace %v: negative", d)
		}
		c.grace = d
	}
}

// listenAddress turns a Go network address into the listener's: an IP
// literal, "*" / "inet6:*" for any, or an absolute AF_UNIX path.
func listenAddress(network, address string) (string, int, error) {
	switch network {
	case "unix":
		if address == "" || address[0] == '@' {
			return "", 0, fmt.Errorf("unix address %q: a path is needed (no abstract sockets)", address)
		}
		p, err := filepath.Abs(address)
		if err != nil {
			return "", 0, err
		}
		return p, 0, nil
	case "tcp", "tcp4", "tcp6":
		a, err := net.ResolveTCPAddr(network, address)
		if err != nil {
			return "", 0, err
		}
		switch {
		case a.IP == nil && network == "tcp6":
			return "inet6:*", a.Port, nil
		case a.IP == nil:
			return "*", a.Port, nil
		case a.IP.To4() != nil && network != "tcp6":
			return a.IP.To4().String(), a.Port, nil
		case network == "tcp4":
			return "", 0, fmt.Errorf("%s is not an IPv4 address", a.IP)
		}
		return a.IP.String(), a.Port, nil
	}
	return "", 0, net.UnknownNetworkError(network)
}

// ListenAco listens on address and runs fn for each connection in a Go
// coroutine of its own, on the connection's loop, with the connection as
// an AcoEvent (also co.Arg()): libmtev's listener with an aco function,
// made in code (mtev_listener_create).  network: "tcp", "tcp4", "tcp6"
// (port 0: the kernel picks one, see Addr) or "unix" (a path; a stale
// socket file is removed, one in use is an error).  When fn returns, the
// connection is closed (unless fn closed it) and released; a panic in fn
// ends the program after the connection is released (rule 6).  The
// listener runs until Close or Shutdown.
func ListenAco(network, address string, fn func(co *Co, ae *AcoEvent), opts ...ListenerOption) (*Listener, error) {
	const op = "ListenAco"
	fail := func(err error) (*Listener, error) {
		return nil, &OpError{Op: op, Err: &net.OpError{Op: "listen", Net: network, Err: err}}
	}
	if fn == nil {
		return fail(errors.New("nil function"))
	}
	var cfg listenConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.err != nil {
		return fail(cfg.err)
	}
	if err := nulErr("address", address); err != nil {
		return fail(err)
	}
	caddr, port, err := listenAddress(network, address)
	if err != nil {
		return fail(err)
	}
	id, err := newAcoFunc(fn)
	if err != nil {
		return fail(err)
	}
	var p unsafe.Pointer
	var epoch uint64
	err = withListeners(func() error {
		var err error
		epoch = sessionNow()
		p, err = cgo.ListenerCreate(&cgo.ListenerOpts{
			Address: caddr, Port: port, Backlog: cfg.backlog,
			Fanout: cfg.fanout, AcceptInLoop: cfg.inLoop, ReusePort: cfg.reuse,
			MaxConnections: uint32(cfg.maxConns), ID: id, Config: cfg.conf,
			TLS: cfg.tls, SSLConfig: cfg.ssl,
		})
		return err
	})
	if err != nil {
		acoFuncs.m.Delete(id)
		if errors.Is(err, ErrNotInitialized) {
			return nil, &OpError{Op: op, Err: ErrNotInitialized}
		}
		return fail(err)
	}
	return newListener(p, epoch, id, cfg.grace), nil
}

// ---- Listener -------------------------------------------------------------------------

// Listener is a running listener (C's mtev_listener_t), made by ListenAco
// or by the configuration (Listeners).  Close stops it.
type Listener struct {
	ptr   unsafe.Pointer // the C listener: one reference, until it has stopped
	epoch uint64
	fnID  uint32 // ListenAco's function (dropped when it has stopped)
	grace time.Duration
	isGo  bool // its connections run Go aco functions
	addr  net.Addr
	typ   string

	mu     sync.Mutex
	closed bool          // Close was called
	final  ListenerStats // the stats when it stopped
	tr     tracked
}

// ListenerStats are a listener's counters (mtev_listener_get_stats).
type ListenerStats struct {
	Accepted     uint64 // connections handed to the service
	Active       uint64 // of those, still open
	Refused      uint64 // reset at once: over the connection limit, or stopping
	AcceptErrors uint64 // accept(2) failures (EMFILE, ...)
}

func newListener(p unsafe.Pointer, epoch uint64, fnID uint32, grace time.Duration) *Listener {
	ln := &Listener{ptr: p, epoch: epoch, fnID: fnID, grace: grace,
		isGo: cgo.ListenerIsGo(p), typ: cgo.ListenerType(p)}
	ln.addr = sockaddrBytesToAddr(cgo.ListenerAddress(p))
	track(&ln.tr, ln)
	return ln
}

// Listeners returns the listeners running now (started by ListenerInit,
// by ListenAco or by C code), oldest first.  Each returned Listener is a
// handle of its own: its Close stops the listener.
func Listeners() []*Listener {
	var out []*Listener
	_ = withLive(func() error {
		epoch := sessionNow()
		for _, p := range cgo.Listeners() {
			out = append(out, newListener(p, epoch, 0, 0))
		}
		return nil
	})
	return out
}

// Addr is the address the listener is bound to: a *net.TCPAddr (with the
// port the kernel picked for port 0) or a *net.UnixAddr.
func (ln *Listener) Addr() net.Addr { return ln.addr }

// Type is the listener's type name as the configuration names it ("" for
// ListenAco's).
func (ln *Listener) Type() string { return ln.typ }

// Stats reads the listener's counters; after Close, the ones it stopped
// with.
func (ln *Listener) Stats() ListenerStats {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.ptr == nil {
		return ln.final
	}
	var s ListenerStats
	s.Accepted, s.Active, s.Refused, s.AcceptErrors = cgo.ListenerStats(ln.ptr)
	return s
}

// Close stops the listener gracefully: it stops accepting at once (the
// socket is closed; an AF_UNIX path removed), lets the running
// connections go on for the grace period (WithGrace; 0 by default), then
// cancels those still running: each one's pending or next blocking call
// returns an error satisfying errors.Is(err, ErrCanceled), and its socket
// is shut down (reads see io.EOF, writes fail).  A coroutine that still
// goes on a grace period later (at least a second) is unwound: its
// blocking call does not return, its deferred calls run and see
// ErrStopped.  Close returns once every connection has ended.  Called on
// a loop's thread (a coroutine, a callback) or from asynch work, which the
// connections may need, it does the same without waiting.  A second
// Close returns an error satisfying errors.Is(err, ErrClosed).  (C
// services' connections are ended by C: at the deadline a C coroutine is
// cancelled, a classic one's socket shut down.)
func (ln *Listener) Close() error {
	const op = "Listener.Close"
	if ln == nil {
		return &OpError{Op: op, Err: errors.New("nil Listener")}
	}
	ln.mu.Lock()
	if ln.closed {
		ln.mu.Unlock()
		return &OpError{Op: op, Err: ErrClosed}
	}
	ln.closed = true
	p := ln.ptr
	ln.mu.Unlock()
	if p == nil {
		return nil // Shutdown stopped and released it
	}
	err := withSession(ln.epoch, func() error {
		g := int64(-1) // Go connections: the deadline is ours (cancel, not shutdown)
		if !ln.isGo {
			g = int64(ln.grace)
		}
		if err := cgo.ListenerStop(p, g); err != nil {
			return err
		}
		cgo.ListenerRef(p) // finish's, which may outlive this handle's
		return nil
	})
	if errors.Is(err, ErrNotInitialized) {
		return nil // Shutdown stopped it and releases it
	}
	if err != nil {
		return &OpError{Op: op, Err: err}
	}
	if cgo.InLoop() || inAsynchWork() {
		go ln.finish(p)
		return nil
	}
	ln.finish(p)
	return nil
}

// finish waits for stopped listener p's connections to end, ending them
// at the deadlines Close describes, then releases the handle and the
// reference Close took for it.
func (ln *Listener) finish(p unsafe.Pointer) {
	defer cgo.ListenerRelease(p)
	if ln.wait(p, ln.grace) {
		return
	}
	markListener(p, markCancel)
	cgo.ListenerEndHandshakes(p) // TLS handshakes on the loops: not yet Go's
	sweepConns(p, markCancel)
	if ln.wait(p, max(ln.grace, time.Second)) {
		return
	}
	markListener(p, markDrop)
	sweepConns(p, markDrop)
	ln.wait(p, -1)
}

// wait waits up to d (< 0: without limit) for listener p to stop; true
// once it has (the handle is released then), or once Shutdown took over.
// It waits in slices, so that a Shutdown meanwhile is noticed.
func (ln *Listener) wait(p unsafe.Pointer, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		slice := 100 * time.Millisecond
		if d >= 0 {
			if left := time.Until(deadline); left < slice {
				slice = max(left, 0)
			}
		}
		if cgo.ListenerWait(p, int64(slice)) == nil {
			unmarkListener(p)
			ln.release()
			return true
		}
		if ln.epoch != sessionNow() || !running() {
			unmarkListener(p)
			return true // Shutdown took over (it releases the handle)
		}
		if d >= 0 && !time.Now().Before(deadline) {
			return false
		}
	}
}

// release records the final stats and drops the handle's reference
// (once).
func (ln *Listener) release() {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.ptr == nil {
		return
	}
	untrack(&ln.tr)
	ln.final.Accepted, ln.final.Active, ln.final.Refused, ln.final.AcceptErrors = cgo.ListenerStats(ln.ptr)
	cgo.ListenerRelease(ln.ptr)
	ln.ptr = nil
	if ln.fnID != 0 {
		acoFuncs.m.Delete(ln.fnID)
	}
}

func (ln *Listener) releaseAtShutdown() { ln.release() }

// ---- connections --------------------------------------------------------------------------

// Marks of listeners whose connections are being ended: new connections
// of a marked listener (handed to a loop before the stop) are treated as
// the running ones were.
const (
	markCancel uint32 = 1 + iota // cancelled at once
	markDrop                     // ended without running
)

var lmarks struct {
	m sync.Map // listener pointer -> mark
	n atomic.Int32
}

func markListener(p unsafe.Pointer, mark uint32) {
	if _, loaded := lmarks.m.Swap(p, mark); !loaded {
		lmarks.n.Add(1)
	}
}

func unmarkListener(p unsafe.Pointer) {
	if _, loaded := lmarks.m.LoadAndDelete(p); loaded {
		lmarks.n.Add(-1)
	}
}

func listenerMark(p unsafe.Pointer) uint32 {
	if lmarks.n.Load() == 0 {
		return 0
	}
	if v, ok := lmarks.m.Load(p); ok {
		return v.(uint32)
	}
	return 0
}

// ListenStart starts a new connection of a Go aco function (driver).
func (l *loop) ListenStart(c cgo.ListenConn) {
	v, _ := acoFuncs.m.Load(c.ID)
	f, _ := v.(*acoFunc)
	mark := listenerMark(c.L)
	if f == nil || mark == markDrop {
		cgo.ListenEnd(c.E, c.AC)
		if f == nil {
			reportError(fmt.Errorf("eventer: listener %s: no Go aco function %d", cgo.ListenerName(c.L), c.ID))
		}
		return
	}
	ae := &AcoEvent{ptr: c.E, l: l, fd: int32(c.Fd), epoch: sessionNow(), conn: true, lplain: c.Plain,
		ac: c.AC, lst: c.L}
	if !c.Plain {
		ae.tls = cgo.IsTLS(c.E)
	}
	co := &Co{l: l, fn: f.body, arg: ae, flags: coConn}
	if mark == markCancel {
		co.flags |= coCancel
		_ = unix.Shutdown(c.Fd, unix.SHUT_RDWR)
	}
	l.startCo(co)
}

// connEnd ends the connection of co, which has ended (driver).
func (l *loop) connEnd(co *Co) {
	ae := co.arg.(*AcoEvent)
	ac, p := ae.ac, ae.ptr
	ae.closed.Store(true)
	ae.ac, ae.lst, ae.ptr = nil, nil, nil
	cgo.ListenEnd(p, ac)
}

// sweepConns cancels (markCancel) or unwinds (markDrop) the running
// connections of listener lst (nil: of every listener) on every loop.
func sweepConns(lst unsafe.Pointer, how uint32) {
	rt.mu.Lock()
	loops := rt.loops
	rt.mu.Unlock()
	for _, l := range loops {
		l := l
		_ = l.post(func() { l.sweepConns(lst, how) })
	}
}

func (l *loop) sweepConns(lst unsafe.Pointer, how uint32) {
	var cos []*Co
	for _, co := range l.cos {
		if co != nil && co.flags&coConn != 0 && (lst == nil || co.arg.(*AcoEvent).lst == lst) {
			cos = append(cos, co)
		}
	}
	for _, co := range cos {
		ae := co.arg.(*AcoEvent)
		if how == markDrop {
			l.unwindCo(co)
			continue
		}
		if co.state.Load() != coLive {
			continue
		}
		l.cancelLocal(co)
		if ae.ptr != nil && !ae.closed.Load() { // the fd is still the connection's
			_ = unix.Shutdown(int(ae.fd), unix.SHUT_RDWR)
		}
	}
}

// shutdownListeners stops every listener before the loops stop (Shutdown):
// C services' connections are cancelled at once, Go coroutines of
// connections unwound; it waits (up to 10 s) until all of them have ended,
// so that no connection outlives the loops.
func shutdownListeners() {
	stopListenerStarts()
	var ls []unsafe.Pointer
	_ = withLive(func() error {
		ls = cgo.Listeners()
		for _, p := range ls {
			if cgo.ListenerIsGo(p) {
				markListener(p, markDrop)
				_ = cgo.ListenerStop(p, -1)
				cgo.ListenerEndHandshakes(p)
			} else {
				_ = cgo.ListenerStop(p, 0)
			}
		}
		return nil
	})
	if len(ls) == 0 {
		return
	}
	sweepConns(nil, markDrop)
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range ls {
		left := max(time.Until(deadline), 0)
		if err := cgo.ListenerWait(p, int64(left)); err != nil {
			reportError(&OpError{Op: "Shutdown", Err: fmt.Errorf(
				"listener %s: connections still open after 10s (a coroutine waiting for asynch work?): %w",
				cgo.ListenerName(p), err)})
		}
		unmarkListener(p)
		cgo.ListenerRelease(p)
	}
}

// ---- the acceptor closure ----------------------------------------------------------------

// Acceptor is the listener's record of a connection (libmtev's
// mtev_acceptor_closure_t): the peer's address and the listener's
// <config>.  It is valid while the connection lasts (after that its
// calls return nothing).  Its calls may be made from any goroutine: off
// the connection's loop they ask the loop and wait, so they are for the
// loop's own coroutines and callbacks, or for plain goroutines; from
// another loop's thread they panic with *MisuseError (two loops waiting
// for each other).
type Acceptor struct{ ae *AcoEvent }

// Acceptor returns the connection's acceptor closure
// (eventer_aco_get_closure), or nil when the AcoEvent does not come from
// a listener.
func (a *AcoEvent) Acceptor() *Acceptor {
	if a == nil || !a.conn {
		return nil
	}
	return &Acceptor{a}
}

func (x *Acceptor) onLoop(op string, fn func(ac unsafe.Pointer)) {
	if x == nil || x.ae == nil {
		return
	}
	a := x.ae
	l := a.l
	if l.onItsThread() {
		if a.ac != nil {
			fn(a.ac)
		}
		return
	}
	if cgo.InLoop() {
		misuse(op, "called from another loop's thread (it waits for the connection's loop)")
	}
	_ = l.call(func() error {
		if a.ac != nil {
			fn(a.ac)
		}
		return nil
	})
}

// RemoteAddr is the peer's address (mtev_acceptor_closure_remote): a
// *net.TCPAddr, or a *net.UnixAddr (usually unnamed for AF_UNIX peers).
func (x *Acceptor) RemoteAddr() net.Addr {
	var b []byte
	x.onLoop("Acceptor.RemoteAddr", func(ac unsafe.Pointer) { b = cgo.AcceptorRemote(ac) })
	return sockaddrBytesToAddr(b)
}

// Config is key's value in the listener's <config>
// (mtev_acceptor_closure_config: the listener's own <config> merged with
// its ancestors', or ListenAco's keys), and whether it is there.
func (x *Acceptor) Config(key string) (value string, ok bool) {
	x.onLoop("Acceptor.Config", func(ac unsafe.Pointer) { value, ok = cgo.AcceptorConfig(ac, key) })
	return value, ok
}

// sockaddrBytesToAddr reads a struct sockaddr (Linux layout: the family
// in host order, then the port in network order).
func sockaddrBytesToAddr(b []byte) net.Addr {
	if len(b) < 2 {
		return nil
	}
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		if len(b) < 8 {
			return nil
		}
		return &net.TCPAddr{IP: net.IPv4(b[4], b[5], b[6], b[7]).To4(), Port: int(binary.BigEndian.Uint16(b[2:]))}
	case unix.AF_INET6:
		if len(b) < 28 {
			return nil
		}
		a := &net.TCPAddr{IP: append(net.IP(nil), b[8:24]...), Port: int(binary.BigEndian.Uint16(b[2:]))}
		if scope := binary.NativeEndian.Uint32(b[24:]); scope != 0 {
			if ifi, err := net.InterfaceByIndex(int(scope)); err == nil {
				a.Zone = ifi.Name
			} else {
				a.Zone = strconv.FormatUint(uint64(scope), 10)
			}
		}
		return a
	case unix.AF_UNIX:
		path := b[2:]
		for i, c := range path {
			if c == 0 {
				path = path[:i]
				break
			}
		}
		return &net.UnixAddr{Name: string(path), Net: "unix"}
	}
	return nil
}
