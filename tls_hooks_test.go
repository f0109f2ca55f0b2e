//go:build eventer_testhooks

package eventer

import (
	"testing"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

// A TLS connection handed to a Go aco function keeps the registration its
// handshake made on the loop: the function's event is registered when the
// function starts, and after a write, a read that waits for the client and
// another write it still has that registration (an epoll_ctl DEL and ADD
// would give it a new number).  The client speaks only after the
// function's first line, so nothing makes the fd fire before the function
// has looked.
func TestTLSHandOffKeepsRegistration(t *testing.T) {
	setup(t, 1)
	p := newPKI(t)
	type seen struct {
		reg0, reg1 bool
		n0, n1     uint32
		err        error
	}
	got := make(chan seen, 4)
	fn := func(co *Co, ae *AcoEvent) {
		var s seen
		s.reg0, s.n0 = cgo.Registration(ae.ptr)
		var b [16]byte
		if _, s.err = ae.Write([]byte("ready\n"), 10*time.Second); s.err == nil {
			if _, s.err = ae.Read(b[:], 20*time.Second); s.err == nil {
				_, s.err = ae.Write([]byte("ok\n"), 10*time.Second)
			}
		}
		s.reg1, s.n1 = cgo.Registration(ae.ptr)
		got <- s
		ae.Close()
	}
	ln := listenAco(t, "tcp", "127.0.0.1:0", fn, WithTLS(p.serverTLS()))
	for i := 0; i < 4; i++ {
		c := tlsDial(t, ln.Addr(), p.goClient(nil))
		c.expect(t, "ready")
		c.send(t, "hi\n")
		c.expect(t, "ok")
		s := <-got
		if s.err != nil || !s.reg0 || !s.reg1 || s.n0 != s.n1 {
			t.Fatalf("connection %d: registered at the start %v (#%d), after a wait %v (#%d), err %v",
				i, s.reg0, s.n0, s.reg1, s.n1, s.err)
		}
		c.Close()
	}
}
