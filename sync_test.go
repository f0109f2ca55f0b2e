package eventer

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSemaphore(t *testing.T) {
	setup(t, 1)
	err := inCo(t, 0, func(co *Co) error {
		s, err := NewSem(1)
		if err != nil {
			return err
		}
		defer s.Close()
		if err := s.TryWait(); err != nil {
			return err
		}
		if err := s.TryWait(); !errors.Is(err, ErrWouldBlock) {
			return fmt.Errorf("trywait on an empty semaphore: %v", err)
		}
		start := time.Now()
		if err := s.Wait(co, 20*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("timeout: %v", err)
		}
		if time.Since(start) < 20*time.Millisecond {
			return errors.New("timed out early")
		}
		if err := s.Wait(co, -time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("negative timeout: %v", err)
		}
		// FIFO between waiting coroutines
		var order []int
		waiting := 0
		done := make(chan struct{}, 3)
		for i := 0; i < 3; i++ {
			i := i
			co.Start(func(c *Co) {
				waiting++ // all on this loop's thread: no race
				if err := s.Wait(c, time.Second); err == nil {
					order = append(order, i)
				}
				done <- struct{}{}
			}, nil)
		}
		for waiting < 3 { // started in order, each parked in Wait at once
			co.Yield()
		}
		if err := s.Close(); err == nil {
			return errors.New("closed with coroutines waiting")
		}
		for i := 0; i < 3; i++ {
			s.Post()
		}
		for i := 0; i < 3; i++ {
			for len(done) == 0 {
				co.Yield()
			}
			<-done
		}
		if fmt.Sprint(order) != "[0 1 2]" {
			return fmt.Errorf("order %v", order)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMutexAndWaitGroup(t *testing.T) {
	setup(t, 1)
	err := inCo(t, 0, func(co *Co) error {
		m, _ := NewMutex()
		defer m.Close()
		wg, _ := NewWaitGroup()
		defer wg.Close()
		counter := 0
		wg.Add(10)
		for i := 0; i < 10; i++ {
			co.Start(func(c *Co) {
				defer wg.Done()
				if err := m.Lock(c, time.Second); err != nil {
					t.Error(err)
					return
				}
				v := counter
				c.Yield() // others run while we hold it
				counter = v + 1
				if err := m.Unlock(c); err != nil {
					t.Error(err)
				}
			}, nil)
		}
		if err := wg.Wait(co, 5*time.Second); err != nil {
			return err
		}
		if counter != 10 {
			return fmt.Errorf("counter %d: the mutex let two in", counter)
		}
		if err := m.Unlock(co); !errors.Is(err, ErrNotOwner) {
			return fmt.Errorf("unlock by a non-owner: %v", err)
		}
		if err := m.TryLock(co); err != nil {
			return err
		}
		if err := m.Lock(co, time.Second); !errors.Is(err, syscall.EDEADLK) {
			return fmt.Errorf("relock: %v", err)
		}
		other, _ := co.Start(func(c *Co) {
			if err := m.TryLock(c); !errors.Is(err, ErrWouldBlock) {
				t.Errorf("trylock of a held mutex: %v", err)
			}
		}, nil)
		co.Join(other, 0)
		if err := m.Unlock(co); err != nil {
			return err
		}
		if err := wg.Add(-1); !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("negative counter: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Out-of-range values are refused (NewSem(1<<32) made a semaphore of 0,
// WaitGroup.Add(1<<40) returned nil and changed nothing); errors name the
// operation once, and a call from the wrong loop says which loop owns the
// object.
func TestSyncArgumentsAndErrors(t *testing.T) {
	setup(t, 2)
	if _, err := NewSem(1 << 32); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("NewSem(1<<32): %v", err)
	}
	if _, err := NewSem(-1); err == nil {
		t.Fatal("NewSem(-1) accepted")
	}
	if _, err := NewChan(0, 1); err == nil {
		t.Fatal("NewChan(0, 1) accepted")
	}
	wg, _ := NewWaitGroup()
	s, _ := NewSem(0)
	err := inCo(t, 0, func(co *Co) error {
		if err := wg.Add(1 << 40); !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("Add(1<<40): %v", err)
		}
		if err := wg.Add(math.MaxInt32); err != nil {
			return err
		}
		if err := wg.Add(1); !errors.Is(err, syscall.EOVERFLOW) {
			return fmt.Errorf("past 2^31-1: %v", err)
		}
		if wg.Count() != math.MaxInt32 {
			return fmt.Errorf("count %d", wg.Count())
		}
		wg.Add(-math.MaxInt32)
		return s.Post() // binds s to loop 0
	})
	if err != nil {
		t.Fatal(err)
	}
	// from loop 1: refused, naming the owner
	err = inCo(t, 1, func(co *Co) error { return s.Post() })
	if err == nil || !strings.Contains(err.Error(), "belongs to loop 0") || !strings.Contains(err.Error(), "not to loop 1") {
		t.Fatalf("a semaphore of loop 0 posted from loop 1: %v", err)
	}
	if strings.Count(err.Error(), "Sem.Post") != 1 {
		t.Fatalf("the operation is named more than once: %v", err)
	}
	err = inCo(t, 1, func(co *Co) error { return s.Wait(co, time.Second) })
	if err == nil || !strings.Contains(err.Error(), "belongs to loop 0") {
		t.Fatalf("a semaphore of loop 0 waited on from loop 1: %v", err)
	}
	// off the loops
	if err := s.Post(); err == nil || !strings.Contains(err.Error(), "belongs to loop 0") {
		t.Fatalf("Post from a plain goroutine: %v", err)
	}
	// Close, then everything is ErrClosed
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Post(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Post after Close: %v", err)
	}
	if err := wg.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestChan(t *testing.T) {
	setup(t, 1)
	err := inCo(t, 0, func(co *Co) error {
		c, err := NewChan(4, 1)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.TryRecv(make([]byte, 4)); !errors.Is(err, ErrWouldBlock) {
			return fmt.Errorf("TryRecv on an empty channel: %v", err)
		}
		if err := c.TrySend([]byte("abcd")); err != nil {
			return err
		}
		if err := c.TrySend([]byte("efgh")); !errors.Is(err, ErrWouldBlock) {
			return fmt.Errorf("TrySend on a full channel: %v", err)
		}
		if err := c.Send(co, []byte("efgh"), 10*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("Send on a full channel: %v", err)
		}
		buf := make([]byte, 4)
		if err := c.Recv(co, buf, time.Second); err != nil || string(buf) != "abcd" {
			return fmt.Errorf("Recv %q, %v", buf, err)
		}
		if err := c.TrySend([]byte("ab")); err == nil {
			return errors.New("wrong element size accepted")
		}
		c.Send(co, []byte("last"), 0)
		if err := c.CloseSend(); err != nil {
			return err
		}
		if err := c.Send(co, buf, 0); !errors.Is(err, ErrChanClosed) {
			return fmt.Errorf("send on a closed channel: %v", err)
		}
		if err := c.Recv(co, buf, 0); err != nil || string(buf) != "last" {
			return fmt.Errorf("drain: %v %q", err, buf)
		}
		if err := c.Recv(co, buf, 0); !errors.Is(err, ErrChanClosed) {
			return fmt.Errorf("recv on a drained channel: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Errors name their call once, whatever the errno (a relock and a self
// join read "Mutex.Lock: Mutex.Lock: resource deadlock avoided" before).
func TestErrorsNameTheCallOnce(t *testing.T) {
	setup(t, 1)
	err := inCo(t, 0, func(co *Co) error {
		m, err := NewMutex()
		if err != nil {
			return err
		}
		defer m.Close()
		if err := m.Lock(co, 0); err != nil {
			return err
		}
		defer m.Unlock(co)
		relock := m.Lock(co, time.Millisecond)
		if !errors.Is(relock, syscall.EDEADLK) || strings.Count(relock.Error(), "Mutex.Lock") != 1 {
			return fmt.Errorf("relock: %v", relock)
		}
		self := co.Join(co, time.Millisecond)
		if !errors.Is(self, syscall.EDEADLK) || strings.Count(self.Error(), "Co.Join") != 1 {
			return fmt.Errorf("self join: %v", self)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"Sem.Wait", "Mutex.Lock", "Chan.Send", "Co.Sleep", "AcoEvent.Read", "Co.Connect"} {
		for _, errno := range []syscall.Errno{syscall.EINVAL, syscall.ENOMEM, syscall.EDEADLK, syscall.EBADF} {
			if msg := errnoError(op, errno).Error(); strings.Count(msg, op) != 1 {
				t.Errorf("%s, %v: %q", op, errno, msg)
			}
		}
	}
}
