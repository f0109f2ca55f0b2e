package conformance

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/acoeventer/eventer"
)

// The listener steps in Go: eventer.ListenAco running one of the built-in
// services (the Go twins of the C driver's: echo, seed, seed_100ms) for
// each connection.

// goServices are the Go aco functions a listener step can run, by name.
var goServices = map[string]func(co *eventer.Co, ae *eventer.AcoEvent){
	"echo":       svcEcho,
	"seed":       func(co *eventer.Co, ae *eventer.AcoEvent) { svcSeed(ae, 10*time.Second) },
	"seed_100ms": func(co *eventer.Co, ae *eventer.AcoEvent) { svcSeed(ae, 100*time.Millisecond) },
}

// svcEcho writes every read back until EOF (or an error: a cancel at a
// stop's deadline), then closes.
func svcEcho(co *eventer.Co, ae *eventer.AcoEvent) {
	buf := make([]byte, 512)
	for {
		n, err := ae.Read(buf, 0)
		if err != nil {
			break
		}
		if _, err := ae.Write(buf[:n], 0); err != nil {
			break
		}
	}
	ae.Close()
}

// svcSeed is the seed's aco listener: "thanks!" per read, "quitter!" and
// a close for quit, "bye!" and a close after tmo of silence.
func svcSeed(ae *eventer.AcoEvent, tmo time.Duration) {
	buf := make([]byte, 128)
	for {
		n, err := ae.Read(buf, tmo)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				ae.Write([]byte("bye!\n"), 0)
			}
			break
		}
		if n >= 4 && strings.EqualFold(string(buf[:4]), "quit") {
			ae.Write([]byte("quitter!\n"), 0)
			break
		}
		if _, err := ae.Write([]byte("thanks!\n"), 0); err != nil {
			break
		}
	}
	ae.Close()
}

// goListener is a listener object: the listener, and the count of its
// services still running (what listener_wait waits for, with the stop).
type goListener struct {
	ln *eventer.Listener

	mu      sync.Mutex
	stopped bool
	running int
	idle    chan struct{} // closed while running == 0
}

func newGoListener() *goListener {
	l := &goListener{idle: make(chan struct{})}
	close(l.idle)
	return l
}

func (l *goListener) begin() {
	l.mu.Lock()
	if l.running == 0 {
		l.idle = make(chan struct{})
	}
	l.running++
	l.mu.Unlock()
}

func (l *goListener) end() {
	l.mu.Lock()
	if l.running--; l.running == 0 {
		close(l.idle)
	}
	l.mu.Unlock()
}

// stop marks it stopped; false if it was already.
func (l *goListener) stop() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := l.stopped
	l.stopped = true
	return !was
}

// Close stops it (if no step did) and waits for its connections: the
// run's cleanup, off the loops.
func (l *goListener) Close() error {
	if l.stop() {
		l.ln.Close()
	}
	l.mu.Lock()
	idle := l.idle
	l.mu.Unlock()
	<-idle
	return nil
}

func init() {
	builtins["listener"] = Step{"new text tcp|unix? fanout=on|off max_connections=int grace=dur", stListener}
	builtins["listener_stop"] = Step{"obj", stListenerStop}
	builtins["listener_wait"] = Step{"obj timeout=dur", stListenerWait}
	builtins["listener_stats"] = Step{"obj", stListenerStats}
}

func stListener(c *Call) (string, error) {
	svc := goServices[c.Arg(1)]
	if svc == nil {
		return "", syscall.ENOENT
	}
	var opts []eventer.ListenerOption
	if v, ok := c.Opt("fanout"); ok {
		opts = append(opts, eventer.WithFanout(v == "on"))
	}
	if _, ok := c.Opt("max_connections"); ok {
		opts = append(opts, eventer.WithMaxConnections(c.optInt("max_connections")))
	}
	if d, ok := c.OptDur("grace"); ok {
		opts = append(opts, eventer.WithGrace(d))
	}
	l := newGoListener()
	network, address := "tcp", "127.0.0.1:0"
	if c.Arg(2) == "unix" {
		network = "unix"
		address = fmt.Sprintf("/tmp/acoconform-go-%d-%s.sock", os.Getpid(), c.Unique(c.Arg(0)))
	}
	ln, err := eventer.ListenAco(network, address, func(co *eventer.Co, ae *eventer.AcoEvent) {
		l.begin()
		defer l.end()
		svc(co, ae)
	}, opts...)
	if err != nil {
		return "", err
	}
	l.ln = ln
	if err := c.setTyped(0, "listener", l); err != nil {
		ln.Close()
		return "", err
	}
	c.setAddr(0, ln.Addr().Network(), ln.Addr().String())
	return "", nil
}

// listener_stop: Listener.Close, which in a coroutine stops accepting at
// once and ends the connections in the background (at the grace the
// listener was made with, WithGrace).
func stListenerStop(c *Call) (string, error) {
	v, err := c.typed(0, "listener")
	if err != nil {
		return "", err
	}
	l := v.(*goListener)
	if !l.stop() {
		return "", nil // stopping twice is harmless, as in C
	}
	return "", l.ln.Close()
}

// listener_wait: until the listener is stopped and its services have
// returned (Go's Listener has no wait of its own: Close does it off the
// loops).  The wait runs as asynch work, so the loop goes on.
func stListenerWait(c *Call) (string, error) {
	v, err := c.typed(0, "listener")
	if err != nil {
		return "", err
	}
	l := v.(*goListener)
	l.mu.Lock()
	stopped, idle := l.stopped, l.idle
	l.mu.Unlock()
	tmo, limited := c.OptDur("timeout")
	if !stopped {
		// C waits for a stop that may come from another coroutine; in the
		// scenarios it has always come before
		if limited {
			if err := c.Co.Sleep(tmo); err != nil {
				return "", err
			}
			return "", os.ErrDeadlineExceeded
		}
		return "", syscall.EINVAL
	}
	done := idle
	var timedOut bool
	err = c.Co.SimpleAsynch(func() {
		if !limited {
			<-done
			return
		}
		select {
		case <-done:
		case <-time.After(tmo):
			timedOut = true
		}
	})
	if err != nil {
		return "", err
	}
	if timedOut {
		return "", os.ErrDeadlineExceeded
	}
	return "", nil
}

func stListenerStats(c *Call) (string, error) {
	v, err := c.typed(0, "listener")
	if err != nil {
		return "", err
	}
	s := v.(*goListener).ln.Stats()
	return fmt.Sprintf("accepted=%d active=%d refused=%d", s.Accepted, s.Active, s.Refused), nil
}

var _ io.Closer = (*goListener)(nil)
