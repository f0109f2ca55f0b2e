package eventer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer/cgo"
)

func TestSleepOnTimeAndCooperative(t *testing.T) {
	setup(t, 1)
	var ticks atomic.Int32
	for i := 1; i <= 5; i++ {
		if _, err := AddIn(time.Duration(i)*5*time.Millisecond, func(*Event, Mask, time.Time) Mask {
			ticks.Add(1)
			return 0
		}); err != nil {
			t.Fatal(err)
		}
	}
	err := inCo(t, 0, func(co *Co) error {
		return notLate(func() error {
			for i := 0; i < 3; i++ {
				start := time.Now()
				if err := co.Sleep(20 * time.Millisecond); err != nil {
					return err
				}
				if d := time.Since(start); d < 20*time.Millisecond {
					return fmt.Errorf("slept %v for 20ms", d)
				} else if d > 20*time.Millisecond+lateBound() {
					return late("slept %v for 20ms", d)
				}
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if ticks.Load() != 5 {
		t.Fatalf("classic timers ran %d times while the coroutine slept", ticks.Load())
	}
}

func TestReadTimeoutEOFReset(t *testing.T) {
	setup(t, 2)
	t.Run("timeout", func(t *testing.T) {
		a, b := socketpair(t)
		defer unix.Close(b)
		err := inCo(t, 0, func(co *Co) error {
			ae := acoEvent(t, co, a)
			defer ae.Close()
			start := time.Now()
			_, err := ae.Read(make([]byte, 8), 30*time.Millisecond)
			if d := time.Since(start); d < 30*time.Millisecond {
				return fmt.Errorf("timed out early, after %v", d)
			}
			return err
		})
		if !errors.Is(err, os.ErrDeadlineExceeded) || !isTimeout(err) {
			t.Fatalf("want a timeout, got %v", err)
		}
		if !strings.Contains(err.Error(), "AcoEvent.Read") {
			t.Fatalf("error does not name the operation: %v", err)
		}
	})
	t.Run("EOF while parked", func(t *testing.T) {
		a, b := socketpair(t)
		if _, err := AddIn(10*time.Millisecond, func(*Event, Mask, time.Time) Mask { unix.Close(b); return 0 }); err != nil {
			t.Fatal(err)
		}
		err := inCo(t, 1, func(co *Co) error {
			ae := acoEvent(t, co, a)
			defer ae.Close()
			n, err := ae.Read(make([]byte, 8), 0)
			if n != 0 {
				return fmt.Errorf("read %d", n)
			}
			return err
		})
		if err != io.EOF {
			t.Fatalf("want io.EOF, got %v", err)
		}
	})
	t.Run("data already there after a write or a short read", func(t *testing.T) {
		// A read after a write or a short read goes straight to the wait;
		// data that came meanwhile must still be returned at once.
		err := notLate(func() error {
			a, b := socketpair(t)
			defer unix.Close(b)
			return inCo(t, 0, func(co *Co) error {
				ae := acoEvent(t, co, a)
				defer ae.Close()
				buf := make([]byte, 8)
				for i, step := range []string{"write", "short read", "write"} {
					msg := fmt.Sprintf("msg%d", i)
					if _, err := unix.Write(b, []byte(msg)); err != nil {
						return err
					}
					if step == "write" {
						if _, err := ae.Write([]byte("x"), time.Second); err != nil {
							return err
						}
					}
					start := time.Now()
					n, err := ae.Read(buf, 0)
					if err != nil {
						return fmt.Errorf("after %s: %v", step, err)
					}
					if got := string(buf[:n]); got != msg {
						return fmt.Errorf("after %s: read %q, want %q", step, got, msg)
					}
					if d := time.Since(start); d > lateBound() {
						return late("after %s: read took %v", step, d)
					}
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("peer reset", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}()
		err = inCo(t, 0, func(co *Co) error {
			ae, err := co.Connect("tcp", ln.Addr().String(), time.Second)
			if err != nil {
				return err
			}
			defer ae.Close()
			_, err = ae.Read(make([]byte, 8), 0)
			return err
		})
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("want ECONNRESET, got %v", err)
		}
	})
}

func TestConnect(t *testing.T) {
	setup(t, 1)
	// a port nobody listens on
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	before := openFds(t)
	err := inCo(t, 0, func(co *Co) error {
		_, err := co.Connect("tcp", dead, time.Second)
		return err
	})
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "Co.Connect") {
		t.Fatalf("want ECONNREFUSED naming Co.Connect, got %v", err)
	}
	if strings.Count(err.Error(), "Co.Connect") != 1 {
		t.Fatalf("the operation is named more than once: %v", err)
	}
	if after := openFds(t); after > before { // (fewer: an earlier test's fd closed meanwhile)
		t.Fatalf("a failed connect left %d fds open", after-before)
	}
	err = inCo(t, 0, func(co *Co) error {
		_, err := co.Connect("tcp", "no-such-host.invalid:1", time.Second)
		return err
	})
	if err == nil {
		t.Fatal("bad address accepted")
	}
	err = inCo(t, 0, func(co *Co) error {
		_, err := co.Connect("sctp", "127.0.0.1:1", time.Second)
		return err
	})
	var unk net.UnknownNetworkError
	if !errors.As(err, &unk) {
		t.Fatalf("want UnknownNetworkError, got %v", err)
	}
}

// An echo server and a client, both Go coroutines, using the net.Conn view
// with bufio.
func TestEchoOverConn(t *testing.T) {
	setup(t, 2)
	ln, err := Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	start(t, 0, func(co *Co) {
		lae, err := co.SetEventerAco(ln)
		if err != nil {
			t.Error(err)
			return
		}
		defer lae.Close()
		c, err := lae.Accept(5 * time.Second)
		if err != nil {
			t.Error(err)
			return
		}
		ae, err := co.SetEventerAco(c)
		if err != nil {
			t.Error(err)
			return
		}
		conn := ae.Conn()
		defer conn.Close()
		io.Copy(conn, conn)
	})
	err = inCo(t, 1, func(co *Co) error {
		ae, err := co.Connect("tcp", ln.Addr().String(), time.Second)
		if err != nil {
			return err
		}
		conn := ae.Conn()
		defer conn.Close()
		r := bufio.NewReader(conn)
		for i := 0; i < 100; i++ {
			msg := fmt.Sprintf("line %d %s\n", i, strings.Repeat("x", i*50))
			if _, err := io.WriteString(conn, msg); err != nil {
				return err
			}
			got, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if got != msg {
				return fmt.Errorf("echo %q, want %q", got, msg)
			}
		}
		conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err = r.ReadByte()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("deadline: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// One socket, a reader and a writer coroutine at once: both use the same
// AcoEvent (it belongs to the loop, not to one coroutine).
func TestFullDuplex(t *testing.T) {
	setup(t, 1)
	a, b := socketpair(t)
	const total = 4 << 20
	// the far end echoes, from a plain goroutine
	go func() {
		unix.SetNonblock(b, false)
		buf := make([]byte, 65536)
		for {
			n, err := unix.Read(b, buf)
			if n <= 0 || err != nil {
				break
			}
			for off := 0; off < n; {
				w, err := unix.Write(b, buf[off:n])
				if err != nil {
					return
				}
				off += w
			}
		}
		unix.Close(b)
	}()
	shared := make(chan *AcoEvent, 1)
	readDone := make(chan int, 1)
	start(t, 0, func(co *Co) {
		ae := acoEvent(t, co, a)
		shared <- ae
		buf := make([]byte, 32768)
		got := 0
		for got < total {
			n, err := ae.Read(buf, 10*time.Second)
			if err != nil {
				t.Error(err)
				break
			}
			got += n
		}
		readDone <- got
	})
	ae := <-shared
	err := inCo(t, 0, func(co *Co) error {
		chunk := make([]byte, 65536)
		for sent := 0; sent < total; {
			n, err := ae.Write(chunk[:min(len(chunk), total-sent)], 10*time.Second)
			if err != nil {
				return err
			}
			sent += n
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := <-readDone; got != total {
		t.Fatalf("read %d of %d", got, total)
	}
	if err := inCo(t, 0, func(co *Co) error { return ae.Close() }); err != nil {
		t.Fatal(err)
	}
}

func TestCloseWhileWaiting(t *testing.T) {
	setup(t, 1)
	a, b := socketpair(t)
	defer unix.Close(b)
	shared := make(chan *AcoEvent, 1)
	res := make(chan error, 1)
	start(t, 0, func(co *Co) {
		ae := acoEvent(t, co, a)
		shared <- ae
		_, err := ae.Read(make([]byte, 8), 0)
		res <- err
	})
	ae := <-shared
	if err := inCo(t, 0, func(co *Co) error {
		co.Sleep(5 * time.Millisecond)
		return ae.Close()
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-res; !errors.Is(err, net.ErrClosed) || !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter got %v, want net.ErrClosed", err)
	}
}

// Every call after Close reports the close: net.ErrClosed (and ErrClosed)
// for I/O, ErrClosed for a second Close.  Read after an earlier Free
// reported a misuse from "another OS thread"; the net.Conn view reported
// a timeout when its deadline had passed too.
func TestAcoEventAfterClose(t *testing.T) {
	setup(t, 1)
	a, b := socketpair(t)
	defer unix.Close(b)
	before := openFds(t)
	err := inCo(t, 0, func(co *Co) error {
		ae := acoEvent(t, co, a)
		conn := ae.Conn()
		if err := ae.Close(); err != nil {
			return err
		}
		if _, err := ae.Read(make([]byte, 4), time.Second); !errors.Is(err, net.ErrClosed) || !errors.Is(err, ErrClosed) {
			return fmt.Errorf("Read after Close: %v", err)
		}
		if _, err := ae.Write([]byte("x"), time.Second); !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("Write after Close: %v", err)
		}
		if _, err := ae.Accept(time.Second); !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("Accept after Close: %v", err)
		}
		if err := ae.Wait(Read, time.Second); !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("Wait after Close: %v", err)
		}
		if err := ae.Close(); !errors.Is(err, ErrClosed) {
			return fmt.Errorf("second Close: %v", err)
		}
		conn.SetReadDeadline(time.Now().Add(-time.Second))
		if _, err := conn.Read(make([]byte, 4)); !errors.Is(err, net.ErrClosed) || isTimeout(err) {
			return fmt.Errorf("Conn.Read after Close with a past deadline: %v", err)
		}
		if err := conn.Close(); !errors.Is(err, ErrClosed) {
			return fmt.Errorf("Conn.Close after Close: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if after := openFds(t); after > before-1 { // (fewer: as in TestConnect)
		t.Fatalf("fds: %d before, %d after Close (want one fewer)", before, after)
	}
}

// Close (of the AcoEvent, or of its net.Conn) from a plain goroutine, as Go
// code closes a connection another goroutine reads: the waiting reader
// gets net.ErrClosed and the fd is closed when Close returns.  From
// another loop's callback the close is handed to the AcoEvent's loop.  Of
// many concurrent Closes exactly one succeeds.  (A Close from anywhere but
// the loop's thread panicked with a misuse before.)
func TestAcoEventCloseFromAnywhere(t *testing.T) {
	setup(t, 2)
	for _, how := range []string{"goroutine", "conn", "other loop", "concurrent"} {
		a, b := socketpair(t)
		got := make(chan *AcoEvent, 1)
		res := make(chan error, 1)
		start(t, 0, func(co *Co) {
			ae := acoEvent(t, co, a)
			c := ae.Conn()
			got <- ae
			var err error
			if how == "conn" {
				_, err = c.Read(make([]byte, 8))
			} else {
				_, err = ae.Read(make([]byte, 8), 10*time.Second)
			}
			res <- err
		})
		ae := <-got
		time.Sleep(10 * time.Millisecond) // the reader waits
		switch how {
		case "goroutine":
			if err := ae.Close(); err != nil {
				t.Fatalf("%s: Close: %v", how, err)
			}
			if _, err := unix.FcntlInt(uintptr(a), unix.F_GETFD, 0); err == nil {
				t.Fatalf("%s: fd still open after Close returned", how)
			}
		case "conn":
			if err := ae.Conn().Close(); err != nil {
				t.Fatalf("%s: Close: %v", how, err)
			}
		case "other loop":
			closed := make(chan error, 1)
			if _, err := AddIn(0, func(*Event, Mask, time.Time) Mask { closed <- ae.Close(); return 0 }); err != nil {
				t.Fatal(err)
			}
			// the timer runs on loop 0 or 1: either way Close succeeds
			if err := <-closed; err != nil {
				t.Fatalf("%s: Close: %v", how, err)
			}
		case "concurrent":
			var wg sync.WaitGroup
			var ok atomic.Int32
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := ae.Close(); err == nil {
						ok.Add(1)
					} else if !errors.Is(err, ErrClosed) {
						t.Errorf("%s: Close: %v", how, err)
					}
				}()
			}
			wg.Wait()
			if ok.Load() != 1 {
				t.Fatalf("%s: %d Closes succeeded", how, ok.Load())
			}
		}
		select {
		case err := <-res:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("%s: the reader got %v", how, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the reader was not woken", how)
		}
		if err := ae.Close(); !errors.Is(err, ErrClosed) {
			t.Fatalf("%s: second Close: %v", how, err)
		}
		unix.Close(b)
	}
}

// The Conn's deadlines may be set from any goroutine while its coroutine
// reads (-race checks it): each Read takes the deadline current when it
// starts.
func TestConnDeadlineFromAnotherGoroutine(t *testing.T) {
	setup(t, 1)
	a, b := socketpair(t)
	defer unix.Close(b)
	got := make(chan net.Conn, 1)
	res := make(chan error, 1)
	start(t, 0, func(co *Co) {
		ae := acoEvent(t, co, a)
		defer ae.Close()
		c := ae.Conn()
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		got <- c
		for i := 0; i < 50; i++ {
			if _, err := c.Read(make([]byte, 8)); !isTimeout(err) {
				res <- fmt.Errorf("read %d: %v", i, err)
				return
			}
		}
		res <- nil
	})
	c := <-got
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				c.SetReadDeadline(time.Now().Add(time.Millisecond))
				c.RemoteAddr()
			}
		}
	}()
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the reads did not time out")
	}
}

func TestWaitReadiness(t *testing.T) {
	setup(t, 1)
	a, b := socketpair(t)
	defer unix.Close(b)
	err := inCo(t, 0, func(co *Co) error {
		ae := acoEvent(t, co, a)
		defer ae.Close()
		if err := ae.Wait(Read, 10*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("wait with nothing to read: %v", err)
		}
		if err := ae.Wait(Write, time.Second); err != nil {
			return err
		}
		unix.Write(b, []byte("hi"))
		if err := ae.Wait(Read, time.Second); err != nil {
			return err
		}
		buf := make([]byte, 4) // allocated only now
		n, err := ae.Read(buf, time.Second)
		if err != nil || string(buf[:n]) != "hi" {
			return fmt.Errorf("read %q, %v", buf[:n], err)
		}
		if err := ae.Wait(Timer, time.Second); !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("bad mask: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCancelJoinParkWake(t *testing.T) {
	setup(t, 2)
	t.Run("cancel from another goroutine", func(t *testing.T) {
		res := make(chan error, 2)
		co := start(t, 0, func(co *Co) {
			res <- co.Sleep(time.Minute)
			res <- co.Sleep(time.Millisecond) // the coroutine goes on
		})
		time.Sleep(10 * time.Millisecond)
		if err := co.Cancel(); err != nil {
			t.Fatal(err)
		}
		if err := <-res; !errors.Is(err, ErrCanceled) {
			t.Fatalf("want ErrCanceled, got %v", err)
		}
		if err := <-res; err != nil {
			t.Fatalf("after cancel: %v", err)
		}
		<-co.Done()
		if err := co.Cancel(); err == nil {
			t.Fatal("cancel of an ended coroutine accepted")
		}
	})
	t.Run("cancel a read", func(t *testing.T) {
		a, b := socketpair(t)
		defer unix.Close(b)
		res := make(chan error, 1)
		co := start(t, 1, func(co *Co) {
			ae := acoEvent(t, co, a)
			defer ae.Close()
			_, err := ae.Read(make([]byte, 1024), 0)
			res <- err
		})
		time.Sleep(10 * time.Millisecond)
		co.Cancel()
		if err := <-res; !errors.Is(err, ErrCanceled) {
			t.Fatalf("want ErrCanceled, got %v", err)
		}
	})
	t.Run("cancel before the first wait", func(t *testing.T) {
		res := make(chan error, 1)
		gate := make(chan struct{})
		co := start(t, 0, func(co *Co) {
			<-gate // (stalls the loop: test only)
			res <- co.Park(0)
		})
		co.Cancel()
		close(gate)
		if err := <-res; !errors.Is(err, ErrCanceled) {
			t.Fatalf("want ErrCanceled, got %v", err)
		}
	})
	t.Run("join", func(t *testing.T) {
		err := inCo(t, 0, func(co *Co) error {
			var order []string
			other, err := co.Start(func(c *Co) {
				c.Sleep(20 * time.Millisecond)
				order = append(order, "other")
			}, nil)
			if err != nil {
				return err
			}
			if err := co.Join(other, 0); err != nil {
				return err
			}
			order = append(order, "joined")
			if len(order) != 2 || order[0] != "other" {
				return fmt.Errorf("order %v", order)
			}
			slow, _ := co.Start(func(c *Co) { c.Sleep(time.Second) }, nil)
			if err := co.Join(slow, 10*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("join timeout: %v", err)
			}
			// a negative timeout has passed already: at once, as for Park,
			// Read and Sem.Wait (it waited without limit)
			if err := notLate(func() error {
				t0 := time.Now()
				if err := co.Join(slow, -time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
					return fmt.Errorf("join with a negative timeout: %v", err)
				}
				if d := time.Since(t0); d > lateBound() {
					return late("join with a negative timeout took %v", d)
				}
				return nil
			}); err != nil {
				return err
			}
			slow.Cancel()
			if err := co.Join(slow, 0); err != nil {
				return err
			}
			if err := co.Join(co, 0); !errors.Is(err, syscall.EDEADLK) {
				return fmt.Errorf("self join: %v", err)
			}
			if err := co.Join(nil, 0); err == nil || !strings.Contains(err.Error(), "nil") {
				return fmt.Errorf("join nil: %v", err)
			}
			// across loops; cancelled while it waits, the error is Join's
			far := start(t, 1, func(c *Co) { c.Sleep(10 * time.Millisecond) })
			if err := co.Join(far, 0); err != nil {
				return err
			}
			farSlow := start(t, 1, func(c *Co) { c.Sleep(time.Second) })
			co.Cancel()
			err = co.Join(farSlow, 0)
			farSlow.Cancel()
			if !errors.Is(err, ErrCanceled) || strings.Count(err.Error(), "Co.Join") != 1 {
				return fmt.Errorf("cancelled cross-loop join: %v", err)
			}
			// a cross-loop join with a timeout that the end beats
			farMid := start(t, 1, func(c *Co) { c.Sleep(10 * time.Millisecond) })
			return co.Join(farMid, 5*time.Second)
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("park and wake from another goroutine", func(t *testing.T) {
		res := make(chan error, 1)
		co := start(t, 0, func(co *Co) { res <- co.Park(10 * time.Second) })
		time.Sleep(10 * time.Millisecond)
		if err := co.Wake(); err != nil {
			t.Fatal(err)
		}
		if err := <-res; err != nil {
			t.Fatal(err)
		}
		co = start(t, 0, func(co *Co) { res <- co.Park(0) })
		time.Sleep(10 * time.Millisecond)
		if err := co.Wake(); err != nil {
			t.Fatal(err)
		}
		if err := <-res; err != nil {
			t.Fatal(err)
		}
		err := inCo(t, 0, func(co *Co) error {
			co.Wake() // remembered
			if err := co.Park(time.Second); err != nil {
				return err
			}
			if err := co.Park(5 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("second park: %v", err)
			}
			if err := co.Park(-1); !errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("park with a negative timeout: %v", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// Waking a coroutine that was just started on the caller's own loop (from
// a coroutine: w := co.Start(...); w.Wake(); or AcoStart + Wake in a
// callback) blocked the loop for ever: Wake waited for the start.  The
// wake is remembered now, as a cancel is.
func TestWakeJustStarted(t *testing.T) {
	setup(t, 1)
	t.Run("from a coroutine", func(t *testing.T) {
		err := inCo(t, 0, func(co *Co) error {
			w, err := co.Start(func(c *Co) { c.Park(0) }, nil)
			if err != nil {
				return err
			}
			if err := w.Wake(); err != nil {
				return err
			}
			return co.Join(w, 10*time.Second)
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("from a callback", func(t *testing.T) {
		res := make(chan error, 1)
		if _, err := AddIn(time.Millisecond, func(*Event, Mask, time.Time) Mask {
			w, err := AcoStart(func(c *Co) { res <- c.Park(10 * time.Second) }, nil)
			if err == nil {
				err = w.Wake()
			}
			if err != nil {
				res <- err
			}
			return 0
		}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-res:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the loop hung")
		}
	})
}

// A Co whose start failed is no nil-pointer trap: Start on it and Join of
// it return errors.
func TestFailedStart(t *testing.T) {
	if _, err := AcoStart(func(*Co) {}, nil); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("AcoStart before Init: %v", err)
	}
	setup(t, 1)
	if _, err := AcoStart(nil, nil); err == nil {
		t.Fatal("nil function accepted")
	}
	if _, err := AcoStartOn(7, func(*Co) {}, nil); err == nil || !strings.Contains(err.Error(), "no loop 7") {
		t.Fatalf("a loop that does not exist: %v", err)
	}
	var nilCo *Co
	if _, err := nilCo.Start(func(*Co) {}, nil); err == nil {
		t.Fatal("Start on a nil Co accepted")
	}
	if err := nilCo.Wake(); err == nil {
		t.Fatal("Wake on a nil Co accepted")
	}
}

func TestAsynch(t *testing.T) {
	setup(t, 1, WithJobQueue("test_queue", WithJobConcurrency(2), WithJobBacklog(100)))
	q, err := NewJobQueue("test_queue") // the one Init made
	if err != nil {
		t.Fatal(err)
	}
	if q.Concurrency() != 2 {
		t.Fatalf("queue from Init has concurrency %d", q.Concurrency())
	}
	defer q.Close()
	err = inCo(t, 0, func(co *Co) error {
		v := 0
		if err := co.SimpleAsynch(func() { time.Sleep(10 * time.Millisecond); v = 42 }); err != nil {
			return err
		}
		if v != 42 {
			return fmt.Errorf("resumed before the work ended: %d", v)
		}
		// the loop keeps running meanwhile: a timer fires during the work
		var fired atomic.Bool
		AddIn(time.Millisecond, func(*Event, Mask, time.Time) Mask { fired.Store(true); return 0 })
		if err := co.RunAsynch(q, func() { time.Sleep(30 * time.Millisecond) }); err != nil {
			return err
		}
		if !fired.Load() {
			return errors.New("timer did not fire while the coroutine waited")
		}
		if err := co.RunAsynch(q, nil); err == nil {
			return errors.New("nil work accepted")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// work completing out of order, from several coroutines
	done := make(chan int, 5)
	for i := 0; i < 5; i++ {
		i := i
		start(t, 0, func(co *Co) {
			co.RunAsynch(q.Subqueue(uint64(i)), func() { time.Sleep(time.Duration(5-i) * 5 * time.Millisecond) })
			done <- i
		})
	}
	for i := 0; i < 5; i++ {
		<-done
	}
}

// runtime.Goexit in asynch work killed the process ("Goexit called in a
// thread that was not created by the Go runtime"): it ends the work, and
// the coroutine gets an error.
func TestGoexitInAsynchWork(t *testing.T) {
	setup(t, 1)
	var after atomic.Bool
	err := inCo(t, 0, func(co *Co) error {
		err := co.SimpleAsynch(func() {
			defer after.Store(true)
			runtime.Goexit()
		})
		if err == nil || !strings.Contains(err.Error(), "Goexit") {
			return fmt.Errorf("want the Goexit reported, got %v", err)
		}
		// the job queue still works
		return co.SimpleAsynch(func() {})
	})
	if err != nil {
		t.Fatal(err)
	}
	if !after.Load() {
		t.Fatal("the work's deferred calls did not run")
	}
}

// Shutdown from asynch work deadlocked (the teardown waits for that job
// thread); Loop from a coroutine or a callback blocked its loop for ever.
func TestShutdownAndLoopFromInside(t *testing.T) {
	t.Run("Shutdown from asynch work", func(t *testing.T) {
		if err := Init(WithConcurrency(1)); err != nil {
			t.Fatal(err)
		}
		returned := make(chan struct{})
		co, err := AcoStart(func(co *Co) {
			co.SimpleAsynch(func() { Shutdown(); close(returned) })
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-returned:
		case <-time.After(20 * time.Second):
			t.Fatal("Shutdown from asynch work hung")
		}
		if err := Loop(); err != nil {
			t.Fatal(err)
		}
		<-co.Done()
	})
	t.Run("Loop from a coroutine and a callback", func(t *testing.T) {
		setup(t, 1)
		err := inCo(t, 0, func(co *Co) error { return Loop() })
		var me *MisuseError
		if !errors.As(err, &me) || me.Op != "Loop" {
			t.Fatalf("Loop in a coroutine: %v", err)
		}
		res := make(chan error, 1)
		AddIn(time.Millisecond, func(*Event, Mask, time.Time) Mask { res <- Loop(); return 0 })
		if err := <-res; !errors.As(err, &me) {
			t.Fatalf("Loop in a callback: %v", err)
		}
		err = inCo(t, 0, func(co *Co) error {
			var inner error
			if err := co.SimpleAsynch(func() { inner = Loop() }); err != nil {
				return err
			}
			return inner
		})
		if !errors.As(err, &me) {
			t.Fatalf("Loop in asynch work: %v", err)
		}
	})
}

// Coroutines blocked when Shutdown runs are unwound: their deferred
// functions run, and what those close is really closed (every call in
// them used to panic internally, so `defer ae.Close()` closed nothing:
// 10 fds and 10 C events lost per Init/Shutdown with 10 blocked readers).
func TestShutdownUnwindReleases(t *testing.T) {
	const readers, cycles = 10, 20
	var closeErrs atomic.Int32
	base := openFds(t)
	var peers []int
	for c := 0; c < cycles; c++ {
		if err := Init(WithConcurrency(2)); err != nil {
			t.Fatal(err)
		}
		var parked atomic.Int32
		for i := 0; i < readers; i++ {
			a, b := socketpair(t)
			peers = append(peers, b) // kept open: the reads block
			start(t, i%2, func(co *Co) {
				ae := acoEvent(t, co, a)
				defer func() {
					if err := ae.Close(); err != nil {
						closeErrs.Add(1)
					}
				}()
				parked.Add(1)
				ae.Read(make([]byte, 8), 0)
			})
		}
		waitFor(t, "readers parked", func() bool { return parked.Load() == readers })
		time.Sleep(2 * time.Millisecond)
		Shutdown()
		if err := Loop(); err != nil {
			t.Fatal(err)
		}
		if live := cgo.LiveEvents(); live != 0 {
			t.Fatalf("cycle %d: %d C events left", c, live)
		}
	}
	if n := closeErrs.Load(); n != 0 {
		t.Fatalf("%d deferred Closes failed", n)
	}
	if got := openFds(t) - len(peers); got > base {
		t.Fatalf("%d fds leaked over %d cycles", got-base, cycles)
	}
	for _, b := range peers {
		unix.Close(b)
	}
}

// What deferred functions may do at shutdown: release (Close), and block
// (which returns ErrStopped at once).
func TestShutdownDeferredCalls(t *testing.T) {
	if err := Init(WithConcurrency(1)); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	results := make(chan error, 4)
	var cleaned atomic.Bool
	AcoStart(func(co *Co) {
		s, _ := NewSem(0)
		defer cleaned.Store(true)
		defer func() {
			results <- co.Sleep(time.Millisecond)
			results <- s.Wait(co, 0)
			results <- s.Close()
		}()
		close(started)
		s.Wait(co, 0) // parked at shutdown
	}, nil)
	<-started
	Shutdown()
	if err := Loop(); err != nil {
		t.Fatal(err)
	}
	if !cleaned.Load() {
		t.Fatal("the coroutine's defers did not run at shutdown")
	}
	for i, want := range []error{ErrStopped, ErrStopped, nil} {
		if err := <-results; !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Fatalf("deferred call %d: %v, want %v", i, err, want)
		}
	}
}

// A panic in a deferred function at shutdown is reported (the program ends
// with it, as for any coroutine panic), not swallowed.
func init() {
	registerChild("deferred panic at shutdown", func() {
		started := make(chan struct{})
		AcoStart(func(co *Co) {
			defer func() { panic("boom in a deferred function") }()
			close(started)
			co.Park(0)
		}, nil)
		<-started
		Shutdown()
	})
}

func TestDeferredPanicAtShutdown(t *testing.T) {
	out, code := runChild(t, "deferred panic at shutdown")
	if code != 2 {
		t.Fatalf("child did not panic (exit %d):\n%s", code, out)
	}
	mustContain(t, out, "eventer: panic in coroutine: boom in a deferred function")
}

// A Co outlives its loop: Wake and Cancel after Shutdown, and after a new
// Init, report that it ended.
func TestCoOutlivesShutdown(t *testing.T) {
	var parked *Co
	for round := 0; round < 2; round++ {
		if err := Init(WithConcurrency(1)); err != nil {
			t.Fatal(err)
		}
		if parked != nil { // the Co of the previous session
			if err := parked.Wake(); err == nil {
				t.Fatal("Wake of a Co of an earlier session succeeded")
			}
			if err := parked.Cancel(); err == nil {
				t.Fatal("Cancel of a Co of an earlier session succeeded")
			}
		}
		got := make(chan *Co, 1)
		AcoStart(func(co *Co) {
			got <- co
			co.Park(0)
		}, nil)
		parked = <-got
		Shutdown()
		if err := Loop(); err != nil {
			t.Fatal(err)
		}
		if err := parked.Wake(); err == nil {
			t.Fatal("Wake after Shutdown succeeded")
		}
		if live := cgo.LiveEvents(); live != 0 {
			t.Fatalf("%d C events still allocated after shutdown", live)
		}
	}
}

// A regular file can't be waited for (epoll refuses it), but its reads and
// writes never block: an AcoEvent on one reads and writes through, also
// right after a write or a short read, and reports EOF.
func TestRegularFile(t *testing.T) {
	setup(t, 1)
	f, err := os.CreateTemp(t.TempDir(), "aco")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	err = inCo(t, 0, func(co *Co) error {
		ae := acoEvent(t, co, fd)
		defer ae.Close()
		if n, err := ae.Write([]byte("hello world"), time.Second); n != 11 || err != nil {
			return fmt.Errorf("write: %d, %v", n, err)
		}
		if _, err := unix.Seek(fd, 0, 0); err != nil {
			return err
		}
		buf := make([]byte, 8)
		var got []byte
		for {
			n, err := ae.Read(buf, time.Second)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("read after %q: %v", got, err)
			}
		}
		if string(got) != "hello world" {
			return fmt.Errorf("read %q", got)
		}
		return ae.Wait(Read, time.Second) // always ready
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Coroutines started while the loops stop either run or fail: every one
// ends (Done closes) and Wake answers, none is left hanging.
func TestStartRacingShutdown(t *testing.T) {
	for round := 0; round < 20; round++ {
		if err := Init(WithConcurrency(2), WithErrorHandler(func(error) {})); err != nil {
			t.Fatal(err)
		}
		cos := make(chan *Co, 1000)
		go func() {
			for i := 0; i < 1000; i++ {
				if co, err := AcoStart(func(co *Co) { co.Park(0) }, nil); err == nil {
					cos <- co
				}
			}
			close(cos)
		}()
		time.Sleep(time.Duration(round%5) * 100 * time.Microsecond)
		Shutdown()
		if err := Loop(); err != nil {
			t.Fatal(err)
		}
		for co := range cos {
			select {
			case <-co.Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: a coroutine never ended", round)
			}
			woke := make(chan error, 1)
			go func() { woke <- co.Wake() }()
			select {
			case err := <-woke:
				if err == nil {
					t.Fatalf("round %d: Wake of an ended coroutine succeeded", round)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: Wake hung", round)
			}
		}
	}
}

// More loops than the 256 the C side once had room for: every loop takes
// work, and Shutdown completes (it panicked "close of closed channel").
func TestManyLoops(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 260
	}
	setup(t, n)
	res := make(chan error, 1)
	start(t, n-1, func(co *Co) { res <- co.Sleep(time.Millisecond) })
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("loop %d never ran its coroutine", n-1)
	}
}

// The bridge from context.Context: CancelOn cancels a coroutine's
// pending call when the context is done.
func TestCancelOnContext(t *testing.T) {
	setup(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	err := inCo(t, 0, func(co *Co) error {
		stop := co.CancelOn(ctx)
		defer stop()
		time.AfterFunc(10*time.Millisecond, cancel)
		return co.Sleep(time.Minute)
	})
	if !errors.Is(err, ErrCanceled) {
		t.Fatalf("want ErrCanceled, got %v", err)
	}
}

// A Co of an earlier Init starts nothing on the new loops; a nil Co (an
// AcoStart whose error was ignored) is a misuse, not a nil dereference.
func TestCoOfEarlierInitAndNilCo(t *testing.T) {
	if err := Init(WithConcurrency(1)); err != nil {
		t.Fatal(err)
	}
	old, err := AcoStartOn(0, func(co *Co) {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-old.Done()
	Shutdown()
	if err := Loop(); err != nil {
		t.Fatal(err)
	}
	setup(t, 1)
	if _, err := old.Start(func(*Co) {}, nil); !errors.Is(err, ErrStopped) {
		t.Fatalf("Start on a Co of an earlier Init: %v", err)
	}
	var nilCo *Co
	if nilCo.Arg() != nil {
		t.Fatal("nil Co has an Arg")
	}
	for name, f := range map[string]func(){
		"Done":     func() { nilCo.Done() },
		"CancelOn": func() { nilCo.CancelOn(context.Background()) },
	} {
		func() {
			defer func() {
				if _, ok := recover().(*MisuseError); !ok {
					t.Errorf("%s on a nil Co: not a *MisuseError", name)
				}
			}()
			f()
		}()
	}
	if err := nilCo.Wake(); err == nil {
		t.Fatal("Wake on a nil Co succeeded")
	}
}

// An AcoEvent's reads and writes on the POSIX opset are recv/send on a
// socket and read/write on any other fd (a pipe here): data, a wait, EOF
// and EPIPE either way, and the event remembers a pipe after the first
// ENOTSOCK.
func TestAcoEventPipeAndSocket(t *testing.T) {
	setup(t, 1)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	sa, sb, err := pairFds()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sb)
	if _, err := unix.Write(p[1], []byte("ab")); err != nil {
		t.Fatal(err)
	}
	w, gotAB := p[1], make(chan struct{}, 1)
	go func() { // "c" and EOF once "ab" is read: the next read waits
		<-gotAB
		unix.Write(w, []byte("c"))
		unix.Close(w)
	}()
	err = inCo(t, 0, func(co *Co) error {
		ev, err := FdEvent(p[0])
		if err != nil {
			return err
		}
		ae, err := co.SetEventerAco(ev)
		if err != nil {
			return err
		}
		defer ae.Close()
		b := make([]byte, 8)
		for _, want := range []string{"ab", "c"} {
			n, err := ae.Read(b, 5*time.Second)
			if err != nil || string(b[:n]) != want {
				return fmt.Errorf("pipe read: %q, %v; want %q", b[:n], err, want)
			}
			if want == "ab" {
				gotAB <- struct{}{}
			}
		}
		if n, err := ae.Read(b, 5*time.Second); n != 0 || err != io.EOF {
			return fmt.Errorf("pipe at EOF: %d, %v", n, err)
		}
		if !ae.notSock {
			return errors.New("a pipe's event not marked as no socket")
		}
		sev, err := FdEvent(sa)
		if err != nil {
			return err
		}
		se, err := co.SetEventerAco(sev)
		if err != nil {
			return err
		}
		defer se.Close()
		if n, err := se.Write([]byte("xyz"), time.Second); n != 3 || err != nil {
			return fmt.Errorf("socket write: %d, %v", n, err)
		}
		var got [8]byte
		if n, _ := unix.Read(sb, got[:]); string(got[:n]) != "xyz" {
			return fmt.Errorf("socket peer read %q", got[:n])
		}
		unix.Write(sb, []byte("q"))
		if n, err := se.Read(b, 5*time.Second); err != nil || string(b[:n]) != "q" {
			return fmt.Errorf("socket read: %q, %v", b[:n], err)
		}
		if se.notSock {
			return errors.New("a socket's event marked as no socket")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// a pipe with no reader: EPIPE (Go ignores SIGPIPE on fds that are
	// not its stdout/stderr)
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[0])
	err = inCo(t, 0, func(co *Co) error {
		ev, err := FdEvent(p[1])
		if err != nil {
			return err
		}
		ae, err := co.SetEventerAco(ev)
		if err != nil {
			return err
		}
		defer ae.Close()
		if _, err := ae.Write([]byte("x"), time.Second); !errors.Is(err, syscall.EPIPE) {
			return fmt.Errorf("write to a pipe with no reader: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// An empty datagram is no end of stream: AcoEvent.Read on a datagram
// socket returns 0 and no error for it (as net's UDPConn.Read does; read(2)
// returns 0 either way), and the next datagram after it.  On a stream
// socket 0 is still io.EOF.
func TestAcoEventEmptyDatagram(t *testing.T) {
	setup(t, 1)
	d, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(d[1])
	for _, m := range []string{"", "x"} {
		if _, err := unix.Write(d[1], []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(s[1])
	err = inCo(t, 0, func(co *Co) error {
		ae := acoEvent(t, co, d[0])
		defer ae.Close()
		b := make([]byte, 8)
		if n, err := ae.Read(b, 5*time.Second); n != 0 || err != nil {
			return fmt.Errorf("an empty datagram: %d, %v; want 0, nil", n, err)
		}
		if n, err := ae.Read(b, 5*time.Second); err != nil || string(b[:n]) != "x" {
			return fmt.Errorf("the next datagram: %q, %v", b[:n], err)
		}
		se := acoEvent(t, co, s[0])
		defer se.Close()
		if n, err := se.Read(b, 5*time.Second); n != 0 || err != io.EOF {
			return fmt.Errorf("a stream socket at its end: %d, %v; want io.EOF", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
