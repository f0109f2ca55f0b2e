package eventer

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

func TestSemaphore(t *testing.T) {
	setup(t, 1)
	err := inCo(t, 0, func(co *Co) error {
		s, err := NewSem(1)
		if err != nil {
			return err
		}
		defer s.Free()
		if !s.TryWait(co) || s.TryWait(co) {
			return errors.New("trywait")
		}
		start := time.Now()
		if err := s.Wait(co, 20*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("timeout: %v", err)
		}
		if time.Since(start) < 20*time.Millisecond {
			return errors.New("timed out early")
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
		defer m.Free()
		wg, _ := NewWaitGroup()
		defer wg.Free()
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
		if err := m.Unlock(co); !errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("unlock by a non-owner: %v", err)
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

// A Go coroutine and a C coroutine share channels and semaphores.
func TestSyncBetweenGoAndC(t *testing.T) {
	setup(t, 1)
	done := cgo.NewCounter()
	defer done.Free()
	err := inCo(t, 0, func(co *Co) error {
		in, _ := NewChan(4, 2)
		out, _ := NewChan(4, 2)
		defer in.Free()
		defer out.Free()
		const n = 100
		cgo.CChanRelay(in.p, out.p, n, done)
		buf := make([]byte, 4)
		for i := 0; i < n; i++ {
			if err := in.Send(co, []byte{byte(i), 1, 2, 3}, time.Second); err != nil {
				return err
			}
			if err := out.Recv(co, buf, time.Second); err != nil {
				return err
			}
			if buf[0] != byte(i+1) || buf[3] != 4 {
				return fmt.Errorf("element %d came back as %v", i, buf)
			}
		}
		s1, _ := NewSem(0)
		s2, _ := NewSem(0)
		defer s1.Free()
		defer s2.Free()
		cgo.CSemRelay(s1.p, s2.p, n, done)
		for i := 0; i < n; i++ {
			s1.Post()
			if err := s2.Wait(co, time.Second); err != nil {
				return err
			}
		}
		for done.Load() < 2 {
			co.Yield()
		}
		// close: senders fail, receivers drain then fail
		in.Send(co, []byte{9, 9, 9, 9}, 0)
		in.Close()
		if err := in.Send(co, buf, 0); !errors.Is(err, ErrChanClosed) {
			return fmt.Errorf("send on closed: %v", err)
		}
		if err := in.Recv(co, buf, 0); err != nil || buf[0] != 9 {
			return fmt.Errorf("drain: %v %v", err, buf)
		}
		if err := in.Recv(co, buf, 0); !errors.Is(err, ErrChanClosed) {
			return fmt.Errorf("recv on drained: %v", err)
		}
		if err := in.TryRecv(co, make([]byte, 3)); err == nil {
			return errors.New("wrong element size accepted")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if done.Load() != 2 {
		t.Fatalf("C side counter %d", done.Load())
	}
}
