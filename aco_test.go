package eventer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
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
		AddIn(time.Duration(i)*5*time.Millisecond, func(*Event, Mask, time.Time) Mask {
			ticks.Add(1)
			return 0
		})
	}
	err := inCo(t, 0, func(co *Co) error {
		for i := 0; i < 3; i++ {
			start := time.Now()
			if err := co.Sleep(20 * time.Millisecond); err != nil {
				return err
			}
			if d := time.Since(start); d < 20*time.Millisecond || d > 20*time.Millisecond+lateBound() {
				return fmt.Errorf("slept %v for 20ms", d)
			}
		}
		return nil
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
			ae := co.SetEventerAco(fdEvent(t, a))
			defer func() { ae.Close(); ae.Free() }()
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
		AddIn(10*time.Millisecond, func(*Event, Mask, time.Time) Mask { unix.Close(b); return 0 })
		err := inCo(t, 1, func(co *Co) error {
			ae := co.SetEventerAco(fdEvent(t, a))
			defer func() { ae.Close(); ae.Free() }()
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
		a, b := socketpair(t)
		defer unix.Close(b)
		err := inCo(t, 0, func(co *Co) error {
			ae := co.SetEventerAco(fdEvent(t, a))
			defer func() { ae.Close(); ae.Free() }()
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
					return fmt.Errorf("after %s: read took %v", step, d)
				}
			}
			return nil
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
			defer func() { ae.Close(); ae.Free() }()
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
	err := inCo(t, 0, func(co *Co) error {
		_, err := co.Connect("tcp", dead, time.Second)
		return err
	})
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "Co.Connect") {
		t.Fatalf("want ECONNREFUSED naming Co.Connect, got %v", err)
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
	AcoStartOn(0, func(co *Co) {
		lae := co.SetEventerAco(ln)
		defer func() { lae.Close(); lae.Free() }()
		c, err := lae.Accept(5 * time.Second)
		if err != nil {
			t.Error(err)
			return
		}
		conn := co.SetEventerAco(c).Conn()
		defer conn.Close()
		io.Copy(conn, conn)
	}, nil)
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

// One socket, a reader and a writer coroutine at once.
func TestFullDuplex(t *testing.T) {
	setup(t, 1)
	a, b := socketpair(t)
	const total = 4 << 20
	// the far end echoes with a C coroutine... no: with a plain goroutine
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
	AcoStartOn(0, func(co *Co) {
		ae := co.SetEventerAco(fdEvent(t, a))
		defer ae.Free()
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
	}, nil)
	writer := <-shared
	err := inCo(t, 0, func(co *Co) error {
		ae := co.SetEventerAco(writer.Event()) // already converted: a view for this coroutine
		defer ae.Free()
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
	inCo(t, 0, func(co *Co) error {
		ae := co.SetEventerAco(writer.Event())
		ae.Close()
		ae.Free()
		return nil
	})
}

func TestCloseWhileWaiting(t *testing.T) {
	setup(t, 1)
	a, b := socketpair(t)
	defer unix.Close(b)
	shared := make(chan *AcoEvent, 1)
	res := make(chan error, 1)
	AcoStartOn(0, func(co *Co) {
		ae := co.SetEventerAco(fdEvent(t, a))
		shared <- ae
		_, err := ae.Read(make([]byte, 8), 0)
		ae.Free()
		res <- err
	}, nil)
	ae := <-shared
	if err := inCo(t, 0, func(co *Co) error {
		co.Sleep(5 * time.Millisecond)
		mine := co.SetEventerAco(ae.Event())
		if err := mine.Close(); err != nil {
			return err
		}
		mine.Free()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-res; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("waiter got %v, want net.ErrClosed", err)
	}
}

func TestCancelJoinParkWake(t *testing.T) {
	setup(t, 2)
	t.Run("cancel from another goroutine", func(t *testing.T) {
		res := make(chan error, 2)
		co := AcoStartOn(0, func(co *Co) {
			res <- co.Sleep(time.Minute)
			res <- co.Sleep(time.Millisecond) // the coroutine goes on
		}, nil)
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
	t.Run("cancel a read, buffer unpinned", func(t *testing.T) {
		a, b := socketpair(t)
		defer unix.Close(b)
		res := make(chan error, 1)
		co := AcoStartOn(1, func(co *Co) {
			ae := co.SetEventerAco(fdEvent(t, a))
			defer func() { ae.Close(); ae.Free() }()
			_, err := ae.Read(make([]byte, 1024), 0)
			res <- err
		}, nil)
		time.Sleep(10 * time.Millisecond)
		co.Cancel()
		if err := <-res; !errors.Is(err, ErrCanceled) {
			t.Fatalf("want ErrCanceled, got %v", err)
		}
	})
	t.Run("join", func(t *testing.T) {
		err := inCo(t, 0, func(co *Co) error {
			var order []string
			other := co.Start(func(c *Co) {
				c.Sleep(20 * time.Millisecond)
				order = append(order, "other")
			}, nil)
			if err := co.Join(other, 0); err != nil {
				return err
			}
			order = append(order, "joined")
			if len(order) != 2 || order[0] != "other" {
				return fmt.Errorf("order %v", order)
			}
			slow := co.Start(func(c *Co) { c.Sleep(time.Second) }, nil)
			if err := co.Join(slow, 10*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("join timeout: %v", err)
			}
			slow.Cancel()
			if err := co.Join(slow, 0); err != nil {
				return err
			}
			if err := co.Join(co, 0); !errors.Is(err, syscall.EDEADLK) {
				return fmt.Errorf("self join: %v", err)
			}
			// across loops; cancelled while it waits, the error is Join's
			far := AcoStartOn(1, func(c *Co) { c.Sleep(10 * time.Millisecond) }, nil)
			if err := co.Join(far, 0); err != nil {
				return err
			}
			farSlow := AcoStartOn(1, func(c *Co) { c.Sleep(time.Second) }, nil)
			co.Cancel()
			err := co.Join(farSlow, 0)
			farSlow.Cancel()
			if !errors.Is(err, ErrCanceled) || !strings.Contains(err.Error(), "Co.Join") {
				return fmt.Errorf("cancelled cross-loop join: %v", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("park and wake from another goroutine", func(t *testing.T) {
		res := make(chan error, 1)
		co := AcoStartOn(0, func(co *Co) { res <- co.Park(10 * time.Second) }, nil)
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
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestAsynch(t *testing.T) {
	setup(t, 1, WithJobQueue("test_queue", WithJobConcurrency(2), WithJobBacklog(100)))
	q := NewJobQueue("test_queue") // the one Init made
	if q.Concurrency() != 2 {
		t.Fatalf("queue from Init has concurrency %d", q.Concurrency())
	}
	defer q.Destroy()
	err := inCo(t, 0, func(co *Co) error {
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
		AcoStartOn(0, func(co *Co) {
			co.RunAsynch(q.Subqueue(uint64(i)), func() { time.Sleep(time.Duration(5-i) * 5 * time.Millisecond) })
			done <- i
		}, nil)
	}
	var got []int
	for i := 0; i < 5; i++ {
		got = append(got, <-done)
	}
	if got[4] == 4 && got[0] == 0 && got[1] == 1 {
		t.Logf("completion order %v", got)
	}
}

func TestStopUnwindsCoroutines(t *testing.T) {
	if err := Init(WithConcurrency(1)); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var cleaned atomic.Bool
	var sleepErr atomic.Value
	AcoStart(func(co *Co) {
		defer cleaned.Store(true)
		close(started)
		sleepErr.Store(fmt.Sprint(co.Sleep(time.Hour)))
	}, nil)
	<-started
	Shutdown()
	if err := Loop(); err != nil {
		t.Fatal(err)
	}
	if !cleaned.Load() {
		t.Fatal("the coroutine's defers did not run at shutdown")
	}
}

// A Co outlives its loop: Wake and Cancel after Shutdown, and after a new
// Init, report that it ended (its C handle is kept for as long as the Co
// is reachable, and released by a cleanup after that).
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
	parked = nil
	runtime.GC()
	runtime.GC()
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
	unix.SetNonblock(fd, true)
	err = inCo(t, 0, func(co *Co) error {
		ae := co.SetEventerAco(fdEvent(t, fd))
		defer func() { ae.Close(); ae.Free() }()
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
		return nil
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
				cos <- AcoStart(func(co *Co) { co.Park(0) }, nil)
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
