//go:build eventer_testhooks

package eventer

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

// Work still queued when its queue is closed never runs, and its coroutine
// resumes with ErrClosed (it used to wait for ever: no COMPLETE came).
// Built with eventer_testhooks: it watches the C queue's stopping flag.
func TestJobQueueCloseWithQueuedWork(t *testing.T) {
	setup(t, 1)
	q, _ := NewJobQueue("jq_queued", WithJobConcurrency(1))
	running := make(chan struct{})
	release := make(chan struct{})
	res := make(chan error, 2)
	start(t, 0, func(co *Co) {
		res <- co.RunAsynch(q, func() { close(running); <-release })
	})
	<-running
	var ranSecond atomic.Bool
	start(t, 0, func(co *Co) {
		res <- co.RunAsynch(q, func() { ranSecond.Store(true) })
	})
	waitFor(t, "the second job queued", func() bool { return q.Backlog() == 1 })
	p := q.st.ptr // alive until Close returns: Close waits for the running job
	closed := make(chan error, 1)
	go func() { closed <- q.Close() }() // waits for the running job
	// The running job ends once Close has stopped the queue: a worker that
	// ended it sooner would rightly take the queued one (a 10 ms sleep
	// here let that happen when Close's goroutine was late).
	deadline := time.Now().Add(20 * time.Second)
	for !cgo.JobqStopping(p) {
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("Close did not stop the queue")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	errs := []error{<-res, <-res}
	okCount, closedCount := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			okCount++
		case errors.Is(err, ErrClosed):
			closedCount++
		default:
			t.Fatalf("unexpected %v", err)
		}
	}
	if okCount != 1 || closedCount != 1 || ranSecond.Load() {
		t.Fatalf("results %v (second ran: %v)", errs, ranSecond.Load())
	}
}
