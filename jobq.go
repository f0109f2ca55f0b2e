package eventer

import (
	"errors"
	"unsafe"

	"github.com/acoeventer/eventer/cgo"
)

// JobQueue is a C job queue (eventer_jobq_t): a pool of threads for
// blocking work, with a concurrency limit and a backlog limit.  Work
// queued from a coroutine with RunAsynch runs there, and the coroutine
// resumes on its loop when it has finished.
type JobQueue struct {
	ptr   unsafe.Pointer
	subq  uint64
	err   error
	epoch uint64
}

// JobQueueOption sizes a job queue.
type JobQueueOption func(*jobqConfig)

type jobqConfig struct{ concurrency, min, max, floor, backlog int }

// WithJobConcurrency sets how many jobs run at once.
func WithJobConcurrency(n int) JobQueueOption { return func(c *jobqConfig) { c.concurrency = n } }

// WithJobMinMax bounds the concurrency.
func WithJobMinMax(min, max int) JobQueueOption {
	return func(c *jobqConfig) { c.min, c.max = min, max }
}

// WithJobFloor keeps at least n threads alive.
func WithJobFloor(n int) JobQueueOption { return func(c *jobqConfig) { c.floor = n } }

// WithJobBacklog limits the queued (not started) jobs that try-adds accept.
func WithJobBacklog(n int) JobQueueOption { return func(c *jobqConfig) { c.backlog = n } }

// NewJobQueue creates (or finds) the job queue called name
// (eventer_jobq_create); options apply to a found queue too.  Errors are
// reported by the calls that use it.
func NewJobQueue(name string, opts ...JobQueueOption) *JobQueue {
	if !running() {
		return &JobQueue{err: ErrNotInitialized}
	}
	c := jobqConfig{-1, -1, -1, -1, -1}
	for _, o := range opts {
		o(&c)
	}
	var q unsafe.Pointer
	var epoch uint64
	err := withLive(func() (err error) {
		epoch = sessionNow()
		q, err = cgo.JobqCreate(name)
		if err == nil {
			cgo.JobqSet(q, c.concurrency, c.min, c.max, c.floor, c.backlog)
		}
		return err
	})
	if err != nil {
		return &JobQueue{err: &OpError{Op: "NewJobQueue", Err: err}}
	}
	return &JobQueue{ptr: q, epoch: epoch}
}

// Subqueue is the same queue, with work queued on subqueue id: subqueues
// share the threads fairly.
func (q *JobQueue) Subqueue(id uint64) *JobQueue {
	return &JobQueue{ptr: q.ptr, subq: id, err: q.err, epoch: q.epoch}
}

// Concurrency is the queue's concurrency limit.
func (q *JobQueue) Concurrency() int {
	n := 0
	_ = withSession(q.epoch, func() error {
		if q.ptr != nil {
			n = cgo.JobqConcurrency(q.ptr)
		}
		return nil
	})
	return n
}

// Backlog is the number of queued, not yet started jobs.
func (q *JobQueue) Backlog() int {
	n := 0
	_ = withSession(q.epoch, func() error {
		if q.ptr != nil {
			n = cgo.JobqBacklog(q.ptr)
		}
		return nil
	})
	return n
}

// Destroy stops the queue's threads and frees it.
func (q *JobQueue) Destroy() error {
	if q.ptr == nil {
		if q.err != nil {
			return q.err
		}
		return &OpError{Op: "JobQueue.Destroy", Err: errors.New("destroyed")}
	}
	p := q.ptr
	q.ptr = nil
	return withSession(q.epoch, func() error { cgo.JobqDestroy(p); return nil })
}
