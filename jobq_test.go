package eventer

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Every handle of a queue (NewJobQueue of the same name, Subqueue) is the
// same queue: after Close, work through any of them is refused with
// ErrClosed (a Subqueue or a second handle kept the freed C pointer: the
// work never ran and RunAsynch returned nil; RunAsynch on a destroyed
// queue returned an error whose Error() itself panicked).
func TestJobQueueClose(t *testing.T) {
	setup(t, 1)
	q, err := NewJobQueue("jq_close", WithJobConcurrency(2))
	if err != nil {
		t.Fatal(err)
	}
	q2, _ := NewJobQueue("jq_close")
	sub := q.Subqueue(7)
	if q2.Concurrency() != 2 {
		t.Fatalf("a second handle sees concurrency %d", q2.Concurrency())
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	var ran atomic.Bool
	err = inCo(t, 0, func(co *Co) error {
		for name, h := range map[string]*JobQueue{"queue": q, "second handle": q2, "subqueue": sub} {
			err := co.RunAsynch(h, func() { ran.Store(true) })
			if !errors.Is(err, ErrClosed) {
				return fmt.Errorf("RunAsynch on the closed queue's %s: %v", name, err)
			}
			if msg := err.Error(); !strings.Contains(msg, "jq_close") || strings.Count(msg, "Co.RunAsynch") != 1 {
				return fmt.Errorf("error %q", msg)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ran.Load() {
		t.Fatal("work ran on a closed queue")
	}
	if q2.Concurrency() != 0 || q2.Backlog() != 0 {
		t.Fatal("a closed queue still answers")
	}
	// the name can be used again: a new queue
	q3, err := NewJobQueue("jq_close")
	if err != nil {
		t.Fatal(err)
	}
	if err := inCo(t, 0, func(co *Co) error { return co.RunAsynch(q3, func() {}) }); err != nil {
		t.Fatal(err)
	}
	q3.Close()
	// the default queue is Shutdown's to close
	d, _ := NewJobQueue("default_queue")
	if err := d.Close(); err == nil {
		t.Fatal("the default queue was closed")
	}
}

// JobQueue.Close waits for a running job; Shutdown meanwhile, and the job
// calling into the eventer (NewSem), deadlocked: Close held the runtime's
// lock while it waited.
func TestJobQueueCloseRacingShutdown(t *testing.T) {
	if err := Init(WithConcurrency(1)); err != nil {
		t.Fatal(err)
	}
	q, _ := NewJobQueue("jq_race", WithJobConcurrency(1))
	running := make(chan struct{})
	release := make(chan struct{})
	jobErr := make(chan error, 1)
	start(t, 0, func(co *Co) {
		co.RunAsynch(q, func() {
			close(running)
			<-release
			s, err := NewSem(0) // the eventer is going away meanwhile
			if err == nil {
				s.Close()
			}
			jobErr <- err
		})
	})
	<-running
	closed := make(chan error, 1)
	go func() { closed <- q.Close() }()
	time.Sleep(10 * time.Millisecond)
	stopped := make(chan struct{})
	go func() { Shutdown(); close(stopped) }()
	time.Sleep(10 * time.Millisecond)
	close(release)
	for what, ch := range map[string]chan struct{}{"Shutdown": stopped} {
		select {
		case <-ch:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s hung", what)
		}
	}
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close hung")
	}
	if err := <-jobErr; err != nil && !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("NewSem in the job: %v", err)
	}
	if err := Loop(); err != nil {
		t.Fatal(err)
	}
}

// Job queue options out of range are refused, not ignored.
func TestJobQueueOptionsChecked(t *testing.T) {
	setup(t, 1)
	for _, o := range []JobQueueOption{WithJobConcurrency(-1), WithJobConcurrency(1 << 31),
		WithJobMinMax(5, 1), WithJobMinMax(-1, 3), WithJobFloor(-2), WithJobBacklog(-1)} {
		if q, err := NewJobQueue("jq_opts", o); err == nil {
			q.Close()
			t.Errorf("an option out of range was accepted")
		}
	}
	q, err := NewJobQueue("jq_opts", WithJobConcurrency(0), WithJobMinMax(0, 0), WithJobBacklog(0))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Concurrency() != 1 {
		t.Fatalf("concurrency 0 gave %d, want 1", q.Concurrency())
	}
}
