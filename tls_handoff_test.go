//go:build eventer_testhooks

package eventer

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

// A TLS connection reaches its Go aco function with the registration its
// handshake left on the loop, and the function may start some time after
// the hand-off.  Clients that misbehave in that window -- a line and the
// close at once, a reset (RST) at once, a close without a word -- and
// clients that talk, on two loops: the talking ones get their echo, the
// others end their function with an error or EOF (or their handshake, if
// the reset beat the server's end of it), and every connection, acceptor
// closure, event and socket goes.
func TestTLSHandOffHostileClients(t *testing.T) {
	setup(t, 2, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	p := newPKI(t)
	var started, ended atomic.Int32
	// (handshakes by the dozen under -race and a busy CPU can take longer
	// than the default 5 s: a timeout would end them before the hand-off)
	cfg := p.serverTLS()
	cfg.HandshakeTimeout = time.Minute
	ln := listenAco(t, "tcp", "127.0.0.1:0", func(co *Co, ae *AcoEvent) {
		started.Add(1)
		defer ended.Add(1)
		defer ae.Close()
		var b [64]byte
		n, err := ae.Read(b[:], 20*time.Second)
		if err != nil {
			return
		}
		ae.Write(b[:n], 20*time.Second)
	}, WithTLS(cfg), WithFanout(true))
	ev0 := cgo.LiveEvents()
	socks := openSockets(t)

	const n = 48
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d := &net.Dialer{Timeout: 20 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), p.goClient(nil))
			if err != nil {
				errs <- fmt.Errorf("%d: dial: %v", i, err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			switch i % 4 {
			case 0: // a line, then the close at once
				c.Write([]byte("x\n"))
			case 1: // a reset right after the handshake
				c.NetConn().(*net.TCPConn).SetLinger(0)
			case 2: // the close without a word
			case 3:
				if _, err := c.Write([]byte("echo\n")); err != nil {
					errs <- fmt.Errorf("%d: write: %v", i, err)
					return
				}
				b := make([]byte, 5)
				if _, err := io.ReadFull(c, b); err != nil || string(b) != "echo\n" {
					errs <- fmt.Errorf("%d: echo: %q %v", i, b, err)
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// every function that started ended, at least the talking clients'
	waitFor(t, "the functions to end", func() bool {
		return ln.Stats().Active == 0 && cgo.AcceptorClosuresLive() == 0
	})
	if s, e := started.Load(), ended.Load(); s != e || s < n/4 || s > n {
		t.Errorf("%d functions started, %d ended; want the same, %d to %d", s, e, n/4, n)
	}
	waitFor(t, "the events to go", func() bool { return cgo.LiveEvents() <= ev0 })
	waitSockets(t, "the connections to close", socks)
}

// Shutdown while TLS connections are being handed to a Go aco function:
// some handshakes are under way, some are over and their functions wait
// for a client that says nothing, some have just been handed off.  Loop
// returns, no C event or acceptor closure is left, and every client sees
// its connection end (EOF or a reset), none hangs.
func TestTLSHandOffShutdown(t *testing.T) {
	if err := Init(WithConcurrency(2), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))); err != nil {
		t.Fatal(err)
	}
	p := newPKI(t)
	cfg := p.serverTLS()
	cfg.HandshakeTimeout = time.Minute
	ln, err := ListenAco("tcp", "127.0.0.1:0", func(co *Co, ae *AcoEvent) {
		defer ae.Close()
		var b [64]byte
		ae.Read(b[:], time.Minute) // until the client or Shutdown ends it
	}, WithTLS(cfg), WithFanout(true))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	const n = 40
	var conns sync.Map
	var wg sync.WaitGroup
	var handshaken atomic.Int32
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d := &net.Dialer{Timeout: 20 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", addr, p.goClient(nil))
			if err != nil {
				return // Shutdown came first: no connection to wait for
			}
			handshaken.Add(1)
			conns.Store(i, c)
		}(i)
	}
	// Shutdown once some of them are over their handshakes and the others
	// are still dialing
	waitFor(t, "some handshakes to finish", func() bool { return handshaken.Load() >= n/4 })
	done := make(chan error, 1)
	go func() {
		Shutdown()
		done <- Loop()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Loop: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	wg.Wait()
	if live := cgo.LiveEvents(); live != 0 {
		t.Errorf("%d C events after Shutdown", live)
	}
	if live := cgo.AcceptorClosuresLive(); live != 0 {
		t.Errorf("%d acceptor closures after Shutdown", live)
	}
	conns.Range(func(k, v any) bool {
		c := v.(*tls.Conn)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var b [16]byte
		_, err := c.Read(b[:])
		if isTimeout(err) {
			t.Errorf("client %v: its connection did not end at Shutdown", k)
		}
		c.Close()
		return true
	})
}
