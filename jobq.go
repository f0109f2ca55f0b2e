package eventer

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/acoeventer/eventer/cgo"
)

// JobQueue is a C job queue (eventer_jobq_t): a pool of threads for
// blocking work, with a concurrency limit and a backlog limit.  Work
// queued from a coroutine with RunAsynch runs there, and the coroutine
// resumes on its loop when it has finished.  Every JobQueue of one name
// (NewJobQueue, Subqueue) is the same queue: Close closes it for all of
// them.  Methods may be called from any goroutine.
type JobQueue struct {
	st   *jobqState
	subq uint64
}

// jobqState is a C queue as Go knows it, shared by its JobQueue values.
type jobqState struct {
	mu        sync.RWMutex // RunAsynch's enqueue and Close
	ptr       unsafe.Pointer
	name      string
	epoch     uint64
	closed    bool
	isDefault bool
	tr        tracked
}

// the queues of this session, by name
var jobqs struct {
	sync.Mutex
	byName map[string]*jobqState
	epoch  uint64
}

// JobQueueOption sizes a job queue.
type JobQueueOption func(*jobqConfig)

type jobqConfig struct {
	concurrency, min, max, floor, backlog int // -1: leave as it is
	bad                                   []int
}

// set records option value v in *f; negative values are refused.
func (c *jobqConfig) set(f *int, v int) {
	if v < 0 || v > 1<<31-1 {
		c.bad = append(c.bad, v)
		return
	}
	*f = v
}

// WithJobConcurrency sets how many jobs run at once (0 counts as 1).
func WithJobConcurrency(n int) JobQueueOption {
	return func(c *jobqConfig) { c.set(&c.concurrency, n) }
}

// WithJobMinMax bounds the concurrency (max 0: no bound).
func WithJobMinMax(min, max int) JobQueueOption {
	return func(c *jobqConfig) { c.set(&c.min, min); c.set(&c.max, max) }
}

// WithJobFloor keeps at least n threads alive.
func WithJobFloor(n int) JobQueueOption { return func(c *jobqConfig) { c.set(&c.floor, n) } }

// WithJobBacklog limits the queued (not started) jobs that try-adds accept
// (0: no limit).
func WithJobBacklog(n int) JobQueueOption { return func(c *jobqConfig) { c.set(&c.backlog, n) } }

// NewJobQueue creates (or finds) the job queue called name
// (eventer_jobq_create); options apply to a found queue too.
// "default_queue" is the default queue (Shutdown closes it; its Close
// refuses).
func NewJobQueue(name string, opts ...JobQueueOption) (*JobQueue, error) {
	const op = "NewJobQueue"
	c := jobqConfig{concurrency: -1, min: -1, max: -1, floor: -1, backlog: -1}
	for _, o := range opts {
		o(&c)
	}
	if err := nulErr("name", name); err != nil {
		// (C would hand back the queue named by the part before it)
		return nil, &OpError{Op: op, Err: err}
	}
	if len(c.bad) > 0 {
		return nil, &OpError{Op: op, Err: fmt.Errorf("option value %d out of range [0, %d]", c.bad[0], 1<<31-1)}
	}
	if c.max > 0 && c.min > c.max {
		return nil, &OpError{Op: op, Err: fmt.Errorf("min %d above max %d", c.min, c.max)}
	}
	var st *jobqState
	err := withLive(func() error {
		jobqs.Lock()
		defer jobqs.Unlock()
		if jobqs.epoch != sessionNow() {
			jobqs.byName, jobqs.epoch = map[string]*jobqState{}, sessionNow()
		}
		if st = jobqs.byName[name]; st == nil || st.closed {
			q, err := cgo.JobqCreate(name)
			if err != nil {
				return err
			}
			st = &jobqState{ptr: q, name: name, epoch: sessionNow(), isDefault: q == cgo.JobqDefault()}
			jobqs.byName[name] = st
			track(&st.tr, st)
		}
		cgo.JobqSet(st.ptr, c.concurrency, c.min, c.max, c.floor, c.backlog)
		return nil
	})
	if err != nil {
		return nil, &OpError{Op: op, Err: err}
	}
	return &JobQueue{st: st}, nil
}

// Subqueue is the same queue, with work queued on subqueue id: subqueues
// share the threads fairly.
func (q *JobQueue) Subqueue(id uint64) *JobQueue { return &JobQueue{st: q.st, subq: id} }

// use runs fn with the C queue, which Close cannot destroy meanwhile.
func (q *JobQueue) use(op string, fn func(p unsafe.Pointer) error) error {
	if q == nil || q.st == nil {
		return &OpError{Op: op, Err: errors.New("nil job queue")}
	}
	st := q.st
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.closed {
		return &OpError{Op: op, Err: fmt.Errorf("job queue %q: %w", st.name, ErrClosed)}
	}
	return opErr(op, withSession(st.epoch, func() error { return fn(st.ptr) }))
}

// Concurrency is the queue's concurrency limit (0 once closed).
func (q *JobQueue) Concurrency() int {
	n := 0
	_ = q.use("JobQueue.Concurrency", func(p unsafe.Pointer) error { n = cgo.JobqConcurrency(p); return nil })
	return n
}

// Backlog is the number of queued, not yet started jobs (0 once closed).
func (q *JobQueue) Backlog() int {
	n := 0
	_ = q.use("JobQueue.Backlog", func(p unsafe.Pointer) error { n = cgo.JobqBacklog(p); return nil })
	return n
}

// Close stops the queue's threads and frees it (eventer_jobq_destroy):
// running work finishes (Close waits for it); work that never started does
// not run, and its coroutine's RunAsynch returns an error satisfying
// errors.Is(err, ErrClosed).  Every JobQueue of this queue is closed; a
// second Close returns ErrClosed.  The default queue is closed by
// Shutdown only.
func (q *JobQueue) Close() error {
	const op = "JobQueue.Close"
	if q == nil || q.st == nil {
		return &OpError{Op: op, Err: errors.New("nil job queue")}
	}
	st := q.st
	if st.isDefault {
		return &OpError{Op: op, Err: errors.New("the default queue is closed by Shutdown")}
	}
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return &OpError{Op: op, Err: ErrClosed}
	}
	st.closed = true
	st.mu.Unlock()
	untrack(&st.tr)
	// Not under any lock: the running jobs it waits for may call into the
	// eventer (and Shutdown may run meanwhile: reap waits for this).
	err := withSession(st.epoch, func() error {
		rt.closing.Add(1)
		return nil
	})
	if err != nil {
		return nil // the eventer went, and the queue with it
	}
	defer rt.closing.Done()
	cgo.JobqDestroy(st.ptr)
	return nil
}

func (st *jobqState) releaseAtShutdown() {
	st.mu.Lock()
	st.closed = true // eventer_fini destroys it
	st.mu.Unlock()
}
