package eventer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

// ---- helpers ----------------------------------------------------------------------------

// seedFn is the seed's listen_to_me in Go: each read gets "thanks!\n",
// "quit" gets "quitter!\n" and the end, `bye` of silence gets "bye!\n" and
// the end.
func seedFn(bye time.Duration) func(co *Co, ae *AcoEvent) {
	return func(co *Co, ae *AcoEvent) {
		buf := make([]byte, 128)
		for {
			n, err := ae.Read(buf, bye)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					ae.Write([]byte("bye!\n"), time.Second)
				}
				return
			}
			if n >= 4 && bytes.EqualFold(buf[:4], []byte("quit")) {
				ae.Write([]byte("quitter!\n"), time.Second)
				return
			}
			if _, err := ae.Write([]byte("thanks!\n"), time.Second); err != nil {
				return
			}
		}
	}
}

func listenAco(t *testing.T, network, address string, fn func(co *Co, ae *AcoEvent), opts ...ListenerOption) *Listener {
	t.Helper()
	ln, err := ListenAco(network, address, fn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

type client struct {
	net.Conn
	r *bufio.Reader
}

func dialLn(t *testing.T, a net.Addr) *client {
	t.Helper()
	c, err := net.DialTimeout(a.Network(), a.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{c, bufio.NewReader(c)}
}

func (c *client) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func (c *client) expect(t *testing.T, want string) {
	t.Helper()
	got, err := c.r.ReadString('\n')
	if got != want+"\n" {
		t.Fatalf("got %q (%v), want %q", got, err, want)
	}
}

func (c *client) expectEOF(t *testing.T) {
	t.Helper()
	if b, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("want EOF, got %q, %v", b, err)
	}
}

// liveCos counts the Go coroutines alive on every loop.
func liveCos(t *testing.T) int {
	t.Helper()
	rt.mu.Lock()
	loops := rt.loops
	rt.mu.Unlock()
	n := 0
	for _, l := range loops {
		l := l
		if err := l.call(func() error {
			for _, co := range l.cos {
				if co != nil {
					n++
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// freePort is a TCP port nothing listens on now (for configurations,
// which name their ports), and one it has not given before in this
// process: once the probe's socket is closed the kernel may give the same
// port to the next probe, and two listeners of one configuration would
// clash.  Nothing holds the port: start the listeners that name it with
// listenerInitFree, which picks again when another socket took one first.
func freePort(t testing.TB) int {
	t.Helper()
	freePorts.Lock()
	defer freePorts.Unlock()
	for tries := 0; ; tries++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !freePorts.given[port] || tries >= 1000 {
			freePorts.given[port] = true
			return port
		}
	}
}

var freePorts = struct {
	sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

// listenerInitFree is ListenerInit(app) for a configuration that conf
// loaded naming ports, which came from freePort.  Between freePort and the
// bind another socket may take a port (another process's, or the
// ephemeral port of some test's client); the bind then fails with
// EADDRINUSE ("the address is in use"), and conf loads the configuration
// again with fresh ports and the listeners start again (ten tries).  Any
// other error fails the test.  It returns the ports the listeners got.
func listenerInitFree(t *testing.T, app string, ports []int, conf func(ports []int)) []int {
	t.Helper()
	for try := 1; ; try++ {
		err := ListenerInit(app)
		if err == nil {
			return ports
		}
		if try == 10 || !errors.Is(err, syscall.EADDRINUSE) ||
			!strings.Contains(err.Error(), "bind: the address is in use") {
			t.Fatal(err)
		}
		t.Logf("%v: again on fresh ports", err)
		for i := range ports {
			ports[i] = freePort(t)
		}
		conf(ports)
	}
}

// loadConf loads a configuration for one test; at its end an empty one
// replaces it, so no <eventer><config> reaches other tests' Init.
func loadConf(t *testing.T, xml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.conf")
	if err := os.WriteFile(path, []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := LoadConfig(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := LoadConfigString("<empty/>", "empty"); err != nil {
			t.Error(err)
		}
	})
	return path
}

func hasIPv6() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// ---- listeners in code --------------------------------------------------------------------

func TestListenAcoSeedProtocol(t *testing.T) {
	setup(t, 2)
	// Two listeners: the one whose idle connections are told bye after
	// 300 ms serves only the subtest about that. The 50 clients at once use
	// one with a long idle time and a backlog above 50: with the default 5
	// the kernel drops handshakes it cannot queue, a client whose SYN-ACK
	// is retransmitted a second later sends its line late, and a client
	// kept off its CPU for 300 ms on a loaded machine was told bye.
	ln := listenAco(t, "tcp", "127.0.0.1:0", seedFn(30*time.Second), WithFanout(true), WithBacklog(128))
	lnBye := listenAco(t, "tcp", "127.0.0.1:0", seedFn(300*time.Millisecond))
	addr := ln.Addr().(*net.TCPAddr)
	if !addr.IP.Equal(net.IPv4(127, 0, 0, 1)) || addr.Port == 0 {
		t.Fatalf("Addr %v", addr)
	}

	t.Run("thanks, quitter", func(t *testing.T) {
		c := dialLn(t, ln.Addr())
		c.send(t, "hello\n")
		c.expect(t, "thanks!")
		c.send(t, "another\n")
		c.expect(t, "thanks!")
		c.send(t, "QUIT\n")
		c.expect(t, "quitter!")
		c.expectEOF(t)
	})
	t.Run("bye after the timeout, never before", func(t *testing.T) {
		// from before the dial: the server's wait can start before the
		// dialing goroutine runs again (seen 290 ms under load)
		start := time.Now()
		c := dialLn(t, lnBye.Addr())
		c.expect(t, "bye!")
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("bye after %v", d)
		}
		c.expectEOF(t)
	})
	t.Run("clients at once", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				r := bufio.NewReader(c)
				for j := 0; j < 10; j++ {
					io.WriteString(c, "line\n")
					if l, err := r.ReadString('\n'); l != "thanks!\n" {
						errs <- fmt.Errorf("got %q, %v", l, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})
	waitFor(t, "no active connection", func() bool { return ln.Stats().Active == 0 && lnBye.Stats().Active == 0 })
	if s := ln.Stats(); s.Accepted != 51 || s.Refused != 0 {
		t.Fatalf("stats %+v", s)
	}
	if s := lnBye.Stats(); s.Accepted != 1 || s.Refused != 0 {
		t.Fatalf("bye listener's stats %+v", s)
	}
}

func TestListenAcoNetworks(t *testing.T) {
	setup(t, 2)
	cases := []struct{ network, address string }{
		{"tcp", "127.0.0.1:0"},
		{"tcp4", "localhost:0"},
		{"tcp6", "[::1]:0"},
		{"unix", filepath.Join(t.TempDir(), "s")},
	}
	for _, tc := range cases {
		t.Run(tc.network, func(t *testing.T) {
			if tc.network == "tcp6" && !hasIPv6() {
				t.Skip("no IPv6 loopback")
			}
			remote := make(chan net.Addr, 1)
			ln := listenAco(t, tc.network, tc.address, func(co *Co, ae *AcoEvent) {
				remote <- ae.Acceptor().RemoteAddr()
				seedFn(0)(co, ae)
			})
			c := dialLn(t, ln.Addr())
			c.send(t, "hi\n")
			c.expect(t, "thanks!")
			got := <-remote
			if tc.network == "unix" {
				if ua, ok := got.(*net.UnixAddr); !ok || ln.Addr().String() != tc.address {
					t.Fatalf("remote %#v, listener %v", got, ln.Addr())
				} else {
					_ = ua
				}
				return
			}
			if got.String() != c.LocalAddr().String() {
				t.Fatalf("Acceptor().RemoteAddr() = %v, the client is %v", got, c.LocalAddr())
			}
		})
	}
}

func TestListenAcoBadArguments(t *testing.T) {
	setup(t, 1)
	fn := seedFn(0)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cases := []struct {
		name, network, address string
		fn                     func(*Co, *AcoEvent)
		opts                   []ListenerOption
		want                   string
		is                     error
	}{
		{"nil function", "tcp", "127.0.0.1:0", nil, nil, "nil function", nil},
		{"bad network", "udp", "127.0.0.1:0", fn, nil, "unknown network udp", nil},
		{"bad address", "tcp", "256.1.1.1:0", fn, nil, "256.1.1.1", nil},
		{"abstract unix", "unix", "@x", fn, nil, "abstract", nil},
		{"address in use", "tcp", held.Addr().String(), fn, nil, "in use", syscall.EADDRINUSE},
		{"bad backlog", "tcp", "127.0.0.1:0", fn, []ListenerOption{WithBacklog(0)}, "backlog 0", nil},
		{"negative grace", "tcp", "127.0.0.1:0", fn, []ListenerOption{WithGrace(-1)}, "grace", nil},
		{"negative idle", "tcp", "127.0.0.1:0", fn, []ListenerOption{WithIdleTimeout(-1)}, "idle timeout", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := ListenAco(tc.network, tc.address, tc.fn, tc.opts...)
			if err == nil {
				ln.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), "ListenAco") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q lacks %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %v is not %v", err, tc.is)
			}
		})
	}
	if n := cgo.ListenerCount(); n != 0 {
		t.Fatalf("%d listeners after failed ListenAco calls", n)
	}
}

func TestListenAcoBeforeInit(t *testing.T) {
	if _, err := ListenAco("tcp", "127.0.0.1:0", seedFn(0)); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("ListenAco before Init: %v", err)
	}
	if err := ListenerInit("app"); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("ListenerInit before Init: %v", err)
	}
	if ls := Listeners(); len(ls) != 0 {
		t.Fatalf("Listeners before Init: %v", ls)
	}
}

func TestListenerCloseTwice(t *testing.T) {
	setup(t, 1)
	ln, err := ListenAco("tcp", "127.0.0.1:0", seedFn(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ln.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("still accepting after Close")
	}
	if n := cgo.ListenerCount(); n != 0 {
		t.Fatalf("%d listeners after Close", n)
	}
	var nilLn *Listener
	if err := nilLn.Close(); err == nil {
		t.Fatal("nil Listener closed")
	}
}

func TestAcceptorConfig(t *testing.T) {
	setup(t, 2)
	type seen struct {
		greeting, idle string
		okG, okNope    bool
		remote         net.Addr
	}
	got := make(chan seen, 1)
	aes := make(chan *AcoEvent, 1)
	ln := listenAco(t, "tcp", "127.0.0.1:0", func(co *Co, ae *AcoEvent) {
		var s seen
		acc := ae.Acceptor()
		s.greeting, s.okG = acc.Config("greeting")
		s.idle, _ = acc.Config("idle_timeout")
		_, s.okNope = acc.Config("nope")
		s.remote = acc.RemoteAddr()
		if co.Arg() != ae {
			s.greeting = "co.Arg() is not the AcoEvent"
		}
		got <- s
		aes <- ae
		seedFn(0)(co, ae)
	}, WithListenerConfig("greeting", "hello there"), WithIdleTimeout(1500*time.Millisecond))
	c := dialLn(t, ln.Addr())
	s := <-got
	if s.greeting != "hello there" || !s.okG || s.idle != "1500" || s.okNope {
		t.Fatalf("config seen: %+v", s)
	}
	if s.remote.String() != c.LocalAddr().String() {
		t.Fatalf("remote %v, client %v", s.remote, c.LocalAddr())
	}
	ae := <-aes
	// from a plain goroutine: the loop answers
	if v, ok := ae.Acceptor().Config("greeting"); v != "hello there" || !ok {
		t.Fatalf("from a goroutine: %q %v", v, ok)
	}
	if r := ae.Acceptor().RemoteAddr(); r == nil || r.String() != c.LocalAddr().String() {
		t.Fatalf("from a goroutine: remote %v", r)
	}
	c.Close()
	waitFor(t, "the connection to end", func() bool { return ln.Stats().Active == 0 })
	// ended: nothing (and no touch of freed memory)
	if v, ok := ae.Acceptor().Config("greeting"); ok || v != "" {
		t.Fatalf("after the end: %q %v", v, ok)
	}
	if r := ae.Acceptor().RemoteAddr(); r != nil {
		t.Fatalf("after the end: remote %v", r)
	}
	// an AcoEvent not from a listener has no acceptor
	a, b := socketpair(t)
	defer unixClose(b)
	if err := inCo(t, 0, func(co *Co) error {
		ae := acoEvent(t, co, a)
		defer ae.Close()
		if ae.Acceptor() != nil {
			return errors.New("an acceptor for a socketpair")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func unixClose(fd int) { syscall.Close(fd) }

func TestListenerIdleTimeout(t *testing.T) {
	setup(t, 1)
	const idle = time.Second
	ended := make(chan error, 4)
	ln := listenAco(t, "tcp", "127.0.0.1:0", func(co *Co, ae *AcoEvent) {
		buf := make([]byte, 64)
		for {
			if _, err := ae.Read(buf, 0); err != nil {
				ended <- err
				return
			}
			ae.Write([]byte("ok\n"), time.Second)
		}
	}, WithIdleTimeout(idle))
	// Activity keeps it open past the timeout; the server's last activity
	// (its read of the last line, its write of the answer) comes after the
	// client starts sending that line and before the answer arrives, so
	// the bound is taken from the send: the answer's arrival may come a
	// little later than the server's write, and a bound from there failed
	// by 40us.  The client's gaps (100 ms) stay a tenth of the timeout:
	// with 300 ms, a loaded machine stretched one past it.  A try in which
	// the client itself was kept off its CPU for half the timeout between
	// the start of one send and the answer to the next (the C listener
	// test saw that at nice 19) proves nothing, closed or not, and is made
	// again (notLate); a close with every gap short fails at once.
	err := notLate(func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(c)
		start := time.Now()
		var last time.Time
		prev := start
		for time.Since(start) < idle+200*time.Millisecond {
			time.Sleep(100 * time.Millisecond)
			last = time.Now()
			_, werr := io.WriteString(c, "x\n")
			line, rerr := r.ReadString('\n')
			gap := time.Since(prev)
			prev = last
			if gap >= idle/2 {
				<-ended // closed now or at the idle time after this line
				return late("the client's gap was %v", gap)
			}
			if werr != nil || line != "ok\n" {
				return fmt.Errorf("an active connection: %q %v %v, %v after the last", line, werr, rerr, gap)
			}
		}
		if err := <-ended; err != io.EOF {
			return fmt.Errorf("the idle connection's read: %v, want io.EOF (shut down)", err)
		}
		if d := time.Since(last); d < idle {
			return fmt.Errorf("shut down %v after the last activity (%v after the start)", d, time.Since(start))
		}
		if b, err := r.ReadByte(); err != io.EOF {
			return fmt.Errorf("want EOF, got %q, %v", b, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestListenerMaxConnections(t *testing.T) {
	setup(t, 1)
	ln := listenAco(t, "tcp", "127.0.0.1:0", seedFn(0), WithMaxConnections(2))
	a, b := dialLn(t, ln.Addr()), dialLn(t, ln.Addr())
	for _, c := range []*client{a, b} {
		c.send(t, "hi\n")
		c.expect(t, "thanks!")
	}
	// the third is accepted and reset at once (the reset may come before
	// the client's connect returns)
	if x, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second); err == nil {
		x.SetDeadline(time.Now().Add(10 * time.Second))
		x.Write([]byte("hi\n"))
		_, err = x.Read(make([]byte, 8))
		x.Close()
		if err == nil || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("an excess connection read %v, want a reset", err)
		}
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("an excess connection: %v", err)
	}
	waitFor(t, "the refusal to be counted", func() bool { return ln.Stats().Refused == 1 })
	if s := ln.Stats(); s.Active != 2 || s.Accepted != 2 {
		t.Fatalf("stats %+v", s)
	}
	// a place frees up: served again
	a.Close()
	waitFor(t, "one connection to end", func() bool { return ln.Stats().Active == 1 })
	y := dialLn(t, ln.Addr())
	y.send(t, "hi\n")
	y.expect(t, "thanks!")
}

// Close: the running connections finish within the grace period; past it
// they are cancelled (ErrCanceled), whatever they wait for; one that
// ignores that is unwound.  Nothing new is accepted meanwhile.
func TestListenerGracefulClose(t *testing.T) {
	setup(t, 2)
	t.Run("they finish", func(t *testing.T) {
		ln, err := ListenAco("tcp", "127.0.0.1:0", func(co *Co, ae *AcoEvent) {
			buf := make([]byte, 64)
			if _, err := ae.Read(buf, 0); err != nil {
				return
			}
			if err := co.Sleep(300 * time.Millisecond); err != nil {
				ae.Write([]byte("cancelled\n"), time.Second)
				return
			}
			ae.Write([]byte("done\n"), time.Second)
		}, WithGrace(10*time.Second), WithFanout(true))
		if err != nil {
			t.Fatal(err)
		}
		var cs []*client
		for i := 0; i < 4; i++ {
			c := dialLn(t, ln.Addr())
			c.send(t, "go\n")
			cs = append(cs, c)
		}
		waitFor(t, "4 active", func() bool { return ln.Stats().Active == 4 })
		start := time.Now()
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		for _, c := range cs {
			c.expect(t, "done")
		}
		if took > 5*time.Second {
			t.Fatalf("Close took %v (the connections needed 300ms)", took)
		}
		if s := ln.Stats(); s.Active != 0 || s.Accepted != 4 {
			t.Fatalf("after Close: %+v", s)
		}
		if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Fatal("accepting after Close")
		}
	})
	t.Run("past the deadline they are cancelled", func(t *testing.T) {
		errs := make(chan error, 3)
		ln, err := ListenAco("tcp", "127.0.0.1:0", func(co *Co, ae *AcoEvent) {
			buf := make([]byte, 64)
			n, _ := ae.Read(buf, 0)
			switch string(buf[:n]) {
			case "sleep\n":
				errs <- co.Sleep(time.Hour)
			case "read\n":
				_, err := ae.Read(buf, 0)
				errs <- err
			case "park\n":
				errs <- co.Park(0)
			}
		}, WithGrace(300*time.Millisecond), WithFanout(true))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"sleep\n", "read\n", "park\n"} {
			dialLn(t, ln.Addr()).send(t, s)
		}
		waitFor(t, "3 active", func() bool { return ln.Stats().Active == 3 })
		start := time.Now()
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		if took < 300*time.Millisecond || took > 10*time.Second {
			t.Fatalf("Close took %v with a 300ms grace", took)
		}
		for i := 0; i < 3; i++ {
			if err := <-errs; !errors.Is(err, ErrCanceled) {
				t.Fatalf("a connection past the deadline got %v, want ErrCanceled", err)
			}
		}
	})
	t.Run("one that ignores the cancel is unwound", func(t *testing.T) {
		var deferred atomic.Value
		var started atomic.Bool
		ln, err := ListenAco("tcp", "127.0.0.1:0", func(co *Co, ae *AcoEvent) {
			started.Store(true)
			defer func() { deferred.Store(fmt.Sprint(co.Sleep(time.Millisecond))) }()
			for {
				co.Sleep(20 * time.Millisecond) // errors ignored
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		dialLn(t, ln.Addr())
		waitFor(t, "the function to run", started.Load)
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
		if d, _ := deferred.Load().(string); !strings.Contains(d, ErrStopped.Error()) {
			t.Fatalf("the unwound coroutine's deferred call saw %q, want ErrStopped", d)
		}
	})
}

// Close from a connection's own coroutine does not wait for itself.
func TestListenerCloseFromConnection(t *testing.T) {
	setup(t, 1)
	var lnp atomic.Pointer[Listener]
	closed := make(chan error, 1)
	ln := listenAco(t, "tcp", "127.0.0.1:0", func(co *Co, ae *AcoEvent) {
		closed <- lnp.Load().Close()
		co.Sleep(time.Hour) // cancelled
	})
	lnp.Store(ln)
	dialLn(t, ln.Addr())
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close from a connection hung")
	}
	waitFor(t, "the listener to stop", func() bool { return cgo.ListenerCount() == 0 })
	if s := ln.Stats(); s.Active != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// A peer that goes away never kills the process: a write after its reset
// fails (EPIPE, ECONNRESET; no SIGPIPE), a write after its EOF fails too
// (half_close off), and the loop serves on.
func TestListenerVanishingPeer(t *testing.T) {
	setup(t, 1)
	res := make(chan error, 1)
	ln := listenAco(t, "tcp", "127.0.0.1:0", func(co *Co, ae *AcoEvent) {
		buf := make([]byte, 64)
		n, err := ae.Read(buf, 0)
		if err != nil {
			res <- err
			return
		}
		switch string(buf[:n]) {
		case "reset\n":
			co.Sleep(200 * time.Millisecond) // the peer resets meanwhile
			var err error
			for i := 0; i < 10 && err == nil; i++ {
				_, err = ae.Write(bytes.Repeat([]byte("x"), 4096), time.Second)
			}
			res <- err
		case "eof\n":
			if _, err := ae.Read(buf, 0); err != io.EOF {
				res <- fmt.Errorf("read after the peer's close: %v", err)
				return
			}
			_, err := ae.Write([]byte("too late\n"), time.Second)
			res <- err
		}
	})
	for _, how := range []string{"reset", "eof"} {
		c := dialLn(t, ln.Addr())
		c.send(t, how+"\n")
		if how == "reset" {
			c.Conn.(*net.TCPConn).SetLinger(0)
		}
		c.Close()
		err := <-res
		if err == nil {
			t.Fatalf("%s: a write to a vanished peer succeeded", how)
		}
		if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%s: write error %v", how, err)
		}
	}
}

// 10,000 connections, ending every way a connection ends, leave no C
// event, acceptor closure, Go coroutine or fd behind.
func TestListener10000ConnectionsLeakNothing(t *testing.T) {
	setup(t, 2)
	h := holding(t)
	ln, err := ListenAco("tcp", "127.0.0.1:0", func(co *Co, ae *AcoEvent) {
		buf := make([]byte, 64)
		for {
			n, err := ae.Read(buf, 5*time.Second)
			if err != nil {
				return
			}
			switch buf[0] {
			case 'c': // the function closes it itself
				ae.Write([]byte("closing\n"), time.Second)
				ae.Close()
				return
			case 's': // a sleep the client does not wait for
				co.Sleep(time.Millisecond)
			}
			if _, err := ae.Write(buf[:n], time.Second); err != nil {
				return
			}
		}
	}, WithFanout(true), WithBacklog(1024))
	if err != nil {
		t.Fatal(err)
	}
	const total, workers = 10000, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := make([]byte, 64)
			for i := w; i < total; i += workers {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					errs <- err
					return
				}
				c.SetDeadline(time.Now().Add(20 * time.Second))
				switch i % 5 {
				case 0: // a line and its echo, then a close
					c.Write([]byte("e\n"))
					_, err = io.ReadFull(c, buf[:2])
				case 1: // the server closes
					c.Write([]byte("c\n"))
					_, err = io.ReadAll(c)
				case 2: // a reset mid-way
					c.Write([]byte("s\n"))
					c.(*net.TCPConn).SetLinger(0)
				case 3: // connect and go
				case 4: // a half-close: the server's write after EOF fails
					c.Write([]byte("e\n"))
					c.(*net.TCPConn).CloseWrite()
					_, err = io.ReadAll(c)
				}
				c.Close()
				if err != nil {
					errs <- fmt.Errorf("connection %d: %v", i, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, "every connection to end", func() bool { return ln.Stats().Active == 0 })
	if s := ln.Stats(); s.Accepted != total {
		t.Fatalf("stats %+v", s)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	h.released(t)
}

// Shutdown with connections open: their coroutines are unwound (their
// deferred calls run), nothing leaks, and the next Init can listen on the
// same address at once.
func TestShutdownWithOpenConnections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sock")
	for round := 0; round < 2; round++ {
		if err := Init(WithConcurrency(2)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(Shutdown)
		var started, deferred atomic.Int32
		ln, err := ListenAco("unix", path, func(co *Co, ae *AcoEvent) {
			started.Add(1)
			defer deferred.Add(1)
			buf := make([]byte, 8)
			n, _ := ae.Read(buf, 0)
			switch string(buf[:n]) {
			case "s":
				co.Sleep(time.Hour)
			case "p":
				co.Park(0)
			default:
				ae.Read(buf, 0)
			}
		}, WithFanout(true), WithBacklog(64))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 30; i++ {
			c := dialLn(t, ln.Addr())
			c.send(t, []string{"s", "p", "r"}[i%3])
		}
		waitFor(t, "30 running", func() bool { return started.Load() == 30 })
		done := make(chan struct{})
		go func() { Shutdown(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("Shutdown hung")
		}
		if d := deferred.Load(); d != 30 {
			t.Fatalf("%d deferred calls ran, want 30", d)
		}
		nothingAfterShutdown(t, fmt.Sprintf("round %d", round))
		if err := ln.Close(); err != nil {
			t.Fatalf("Close after Shutdown: %v", err)
		}
	}
}

// Shutdown from a connection's coroutine only asks; the listeners stop
// and the loops after them.
func TestShutdownFromConnection(t *testing.T) {
	if err := Init(WithConcurrency(1)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(Shutdown)
	ln, err := ListenAco("tcp", "127.0.0.1:0", func(co *Co, ae *AcoEvent) {
		Shutdown()
		co.Sleep(time.Hour)
	})
	if err != nil {
		t.Fatal(err)
	}
	dialLn(t, ln.Addr())
	done := make(chan error, 1)
	go func() { done <- Loop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Loop did not return")
	}
	if n := cgo.AcceptorClosuresLive(); n != 0 {
		t.Fatalf("%d acceptor closures alive", n)
	}
}

// A Cancel that reaches a loop in the same step as the start of its
// coroutine, which has just parked on a read, ends that read.
func TestCancelRightAfterStart(t *testing.T) {
	setup(t, 1)
	a, b := socketpair(t)
	defer unixClose(b)
	gate := make(chan struct{})
	l := loopAt(0)
	// hold the loop so that the start and the cancel arrive together
	l.post(func() { <-gate })
	got := make(chan error, 1)
	co := start(t, 0, func(co *Co) {
		ae := acoEvent(t, co, a)
		defer ae.Close()
		_, err := ae.Read(make([]byte, 8), 0)
		got <- err
	})
	if err := co.Cancel(); err != nil {
		t.Fatal(err)
	}
	close(gate)
	select {
	case err := <-got:
		if !errors.Is(err, ErrCanceled) {
			t.Fatalf("read: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled read goes on waiting")
	}
}

func init() {
	registerChild("crash aco function", func() {
		ln, err := ListenAco("tcp", "127.0.0.1:0", func(co *Co, ae *AcoEvent) {
			co.Sleep(time.Millisecond)
			panic("boom in an aco function")
		})
		if err != nil {
			panic(err)
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			panic(err)
		}
		defer c.Close()
		time.Sleep(5 * time.Second)
	})
}

// A panic in an aco function is a coroutine's panic (rule 6).
func TestAcoFunctionPanic(t *testing.T) {
	out, code := runChild(t, "crash aco function")
	if code != 2 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	mustContain(t, out, "eventer: panic in coroutine: boom in an aco function", "listener_test.go")
}

// ---- the configuration ---------------------------------------------------------------------

func TestLoadConfigEventerSection(t *testing.T) {
	loadConf(t, `<app><eventer><config><concurrency>3</concurrency></config></eventer></app>`)
	for round := 0; round < 2; round++ { // the settings are reset at Shutdown: each Init applies them
		if err := Init(); err != nil {
			t.Fatal(err)
		}
		n := cgo.Concurrency()
		Shutdown()
		if n != 3 {
			t.Fatalf("round %d: %d loops, the configuration says 3", round, n)
		}
	}
	// an option given to Init wins
	if err := Init(WithConcurrency(2)); err != nil {
		t.Fatal(err)
	}
	n := cgo.Concurrency()
	Shutdown()
	if n != 2 {
		t.Fatalf("%d loops with WithConcurrency(2)", n)
	}
	// an eventer setting once the eventer runs is an error
	setup(t, 1)
	path := filepath.Join(t.TempDir(), "late.conf")
	os.WriteFile(path, []byte("<app>\n<eventer><config><concurrency>2</concurrency></config></eventer>\n</app>\n"), 0o644)
	if err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "late.conf:2") ||
		!strings.Contains(err.Error(), "already initialized") {
		t.Fatalf("late eventer setting: %v", err)
	}
}

// <eventer><config>'s ssl_* keys go to the TLS layer's settings, as
// libmtev's do: a bad value is refused naming the file, line and key.
func TestLoadConfigEventerSSLKeys(t *testing.T) {
	loadConf(t, `<app><eventer><config><ssl_own_x25519>on</ssl_own_x25519><ssl_keep_buffers>256</ssl_keep_buffers></config></eventer></app>`)
	path := filepath.Join(t.TempDir(), "ssl.conf")
	os.WriteFile(path, []byte("<app>\n<eventer><config>\n<ssl_own_x25519>maybe</ssl_own_x25519></config></eventer>\n</app>\n"), 0o644)
	err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), "ssl.conf:3") || !strings.Contains(err.Error(), `ssl_own_x25519="maybe"`) {
		t.Fatalf("bad ssl_own_x25519: %v", err)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "broken.conf")
	os.WriteFile(bad, []byte("<app>\n<listeners>\n</app>\n"), 0o644)
	err := LoadConfig(bad)
	if err == nil || !strings.Contains(err.Error(), "broken.conf:3") || !strings.Contains(err.Error(), "malformed XML") {
		t.Fatalf("malformed XML: %v", err)
	}
	if !strings.Contains(err.Error(), "LoadConfig") {
		t.Fatalf("the error does not name the call: %v", err)
	}
	err = LoadConfig(filepath.Join(dir, "missing.conf"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.conf") {
		t.Fatalf("missing file: %v", err)
	}
	if err := LoadConfigString("<a><b></a>", "inline.xml"); err == nil || !strings.Contains(err.Error(), "inline.xml:1") {
		t.Fatalf("malformed string: %v", err)
	}
}

// One configuration, inherited attributes and <config>, Go aco functions
// by name, AF_UNIX and IPv6, fanout over the loops, accept_thread on and
// off: each listener serves, on the loops it should.
func TestListenerInitFromConfig(t *testing.T) {
	type hit struct {
		loop          int
		greeting, lvl string
		remoteIsUnix  bool
	}
	hits := make(chan hit, 16)
	fn := func(co *Co, ae *AcoEvent) {
		g, _ := ae.Acceptor().Config("greeting")
		lvl, _ := ae.Acceptor().Config("level")
		_, unix := ae.Acceptor().RemoteAddr().(*net.UnixAddr)
		hits <- hit{co.l.idx, g, lvl, unix}
		seedFn(0)(co, ae)
	}
	if err := RegisterAcoFunction("go_seed", fn); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "cfg.sock")
	ipv6 := hasIPv6()
	v6 := ""
	conf := func(p []int) {
		v6 = ""
		if ipv6 {
			v6 = fmt.Sprintf(`<listener address="::1" port="%d" accept_thread="off"/>`, p[2])
		}
		loadConf(t, fmt.Sprintf(`<app>
  <eventer><config><concurrency>3</concurrency></config></eventer>
  <listeners type="go_seed" backlog="64">
    <config><greeting>hi</greeting><level>outer</level></config>
    <listener address="127.0.0.1" port="%d"/>
    <group fanout="on" accept_thread="off">
      <config><level>inner</level></config>
      <listener address="127.0.0.1" port="%d"/>
      <listener address="%s"/>
    </group>
    %s
  </listeners>
</app>`, p[0], p[1], sock, v6))
	}
	ports := []int{freePort(t), freePort(t), freePort(t)}
	conf(ports)
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		Shutdown()
		if n := cgo.LiveEvents(); n != 0 {
			t.Errorf("%d C events after Shutdown", n)
		}
	})
	ports = listenerInitFree(t, "app", ports, conf)
	p1, p2, p3 := ports[0], ports[1], ports[2]
	ls := Listeners()
	want := 3
	if v6 != "" {
		want = 4
	}
	if len(ls) != want {
		t.Fatalf("%d listeners, want %d", len(ls), want)
	}
	for _, l := range ls {
		if l.Type() != "go_seed" {
			t.Fatalf("listener %v has type %q", l.Addr(), l.Type())
		}
	}
	ask := func(network, addr string) hit {
		t.Helper()
		c, err := net.Dial(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "hi\n")
		if l, err := bufio.NewReader(c).ReadString('\n'); l != "thanks!\n" {
			t.Fatalf("%s: %q %v", addr, l, err)
		}
		return <-hits
	}
	// no fanout: loop 0; inherited config
	if h := ask("tcp", fmt.Sprintf("127.0.0.1:%d", p1)); h.loop != 0 || h.greeting != "hi" || h.lvl != "outer" {
		t.Fatalf("p1: %+v", h)
	}
	// fanout: loops 1 and 2 in turn (loop 0 left out); the inner config wins
	seen := map[int]bool{}
	for i := 0; i < 4; i++ {
		h := ask("tcp", fmt.Sprintf("127.0.0.1:%d", p2))
		if h.greeting != "hi" || h.lvl != "inner" {
			t.Fatalf("p2: %+v", h)
		}
		seen[h.loop] = true
	}
	if len(seen) != 2 || !seen[1] || !seen[2] {
		t.Fatalf("fanout used loops %v, want 1 and 2", seen)
	}
	if h := ask("unix", sock); !h.remoteIsUnix || h.lvl != "inner" {
		t.Fatalf("unix: %+v", h)
	}
	if v6 != "" {
		if h := ask("tcp6", fmt.Sprintf("[::1]:%d", p3)); h.lvl != "outer" {
			t.Fatalf("v6: %+v", h)
		}
	}
	// a Listener from Listeners() stops its listener
	if err := ls[0].Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p1)); err == nil {
		t.Fatal("still listening after Close")
	}
}

// listenerInitFree, which the tests that name free ports in their
// configuration use, starts the listeners on fresh ports when another
// socket took the port freePort gave before the listener bound it (here
// this test's own socket, as another process's or a client's ephemeral
// port would): the listener answers on the port it returns.
func TestListenerInitFreeTakenPort(t *testing.T) {
	setup(t, 1)
	if err := RegisterAcoFunction("go_seed_free", seedFn(0)); err != nil {
		t.Fatal(err)
	}
	conf := func(ports []int) {
		loadConf(t, fmt.Sprintf(`<app><listeners type="go_seed_free">
  <listener address="127.0.0.1" port="%d"/>
</listeners></app>`, ports[0]))
	}
	taken := freePort(t)
	held, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", taken))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	ports := []int{taken}
	conf(ports)
	port := listenerInitFree(t, "app", ports, conf)[0]
	if port == taken {
		t.Fatalf("the listener got port %d, which another socket holds", port)
	}
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	io.WriteString(c, "hi\n")
	if l, err := bufio.NewReader(c).ReadString('\n'); l != "thanks!\n" {
		t.Fatalf("port %d: %q %v", port, l, err)
	}
}

func TestListenerInitErrors(t *testing.T) {
	setup(t, 2)
	if err := RegisterAcoFunction("go_known", seedFn(0)); err != nil {
		t.Fatal(err)
	}
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPort := held.Addr().(*net.TCPAddr).Port
	good := freePort(t)
	cases := []struct {
		name, conf string
		want       []string
	}{
		{"unknown type", "<app>\n<listeners>\n<listener type=\"nope\" address=\"127.0.0.1\" port=\"{good}\"/>\n</listeners>\n</app>",
			[]string{"test.conf:3", `unknown listener type "nope"`, "registered aco functions:", "go_known"}},
		{"port in use", "<app>\n<listeners type=\"go_known\">\n<listener address=\"127.0.0.1\" port=\"{held}\"/>\n</listeners>\n</app>",
			[]string{"test.conf:3", "in use", fmt.Sprintf("127.0.0.1:%d", heldPort)}},
		{"bad port", "<app>\n<listeners type=\"go_known\">\n<listener address=\"127.0.0.1\" port=\"http\"/>\n</listeners>\n</app>",
			[]string{"test.conf:3", `"http"`}},
		{"two on one address", "<app>\n<listeners type=\"go_known\">\n<listener address=\"127.0.0.1\" port=\"{good}\"/>\n<listener address=\"127.0.0.1\" port=\"{good}\"/>\n</listeners>\n</app>",
			[]string{"test.conf:4", "another listener"}},
		{"a named pool", "<app>\n<listeners type=\"go_known\">\n<listener address=\"127.0.0.1\" port=\"{good}\" fanout=\"on\" fanout_pool=\"io\"/>\n</listeners>\n</app>",
			[]string{"test.conf:3", `fanout_pool "io"`, "default pool"}},
		{"good then bad: nothing starts", "<app>\n<listeners type=\"go_known\">\n<listener address=\"127.0.0.1\" port=\"{good}\"/>\n<listener type=\"nope\" address=\"127.0.0.1\" port=\"{held}\"/>\n</listeners>\n</app>",
			[]string{"test.conf:4", `unknown listener type "nope"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			for try := 1; ; try++ {
				loadConf(t, strings.NewReplacer("{good}", fmt.Sprint(good), "{held}", fmt.Sprint(heldPort)).Replace(tc.conf))
				err = ListenerInit("app")
				// another socket took the good port after freePort (see
				// listenerInitFree): again with a fresh one
				taken := fmt.Sprintf("127.0.0.1:%d: bind: the address is in use", good)
				if err == nil || try == 10 || !strings.Contains(err.Error(), taken) {
					break
				}
				t.Logf("%v: again on a fresh port", err)
				good = freePort(t)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append(tc.want, "ListenerInit") {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
			if n := cgo.ListenerCount(); n != 0 {
				t.Fatalf("%d listeners left after the error", n)
			}
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", good)); err == nil {
				c.Close()
				t.Fatal("the good listener is listening")
			}
		})
	}
	// register errors
	if err := RegisterAcoFunction("", seedFn(0)); err == nil {
		t.Fatal("empty name registered")
	}
	if err := RegisterAcoFunction("x", nil); err == nil {
		t.Fatal("nil function registered")
	}
}

// Listeners started while Shutdown runs: each one either starts before
// Shutdown looks (and is stopped with the rest) or is refused; none
// outlives the loops, and connections racing the stop leak nothing.
func TestListenAcoRacingShutdown(t *testing.T) {
	for round := 0; round < 5; round++ {
		if err := Init(WithConcurrency(2)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					ln, err := ListenAco("tcp", "127.0.0.1:0", seedFn(0), WithFanout(true))
					if err != nil {
						if !errors.Is(err, ErrStopped) && !errors.Is(err, ErrNotInitialized) {
							t.Errorf("ListenAco: %v", err)
						}
						continue
					}
					if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
						c.Write([]byte("hi\n"))
						c.Close()
					}
				}
			}()
		}
		time.Sleep(time.Duration(20+round*10) * time.Millisecond)
		Shutdown()
		close(stop)
		wg.Wait()
		nothingAfterShutdown(t, fmt.Sprintf("round %d", round))
	}
}
