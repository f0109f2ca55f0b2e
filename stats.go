package eventer

import (
	"fmt"
	"os"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

// Stats is a snapshot of the eventer's figures, read from the library
// (each loop reports its own, on its thread): what a status page shows.
type Stats struct {
	Loops       []LoopStats         `json:"loops"`
	Coroutines  int64               `json:"coroutines"` // live, C and Go, over all loops
	JobQueues   []JobQueueStats     `json:"job_queues"`
	Listeners   []ListenerStatsInfo `json:"listeners"`
	Connections ConnectionStats     `json:"connections"`
	Events      int64               `json:"events"` // live eventer_t objects
}

// LoopStats is one event loop's live coroutines.
type LoopStats struct {
	Name         string `json:"name"`          // as C names it: "<pool>/<index>"
	CCoroutines  int64  `json:"c_coroutines"`  // C coroutines (HTTP relays, C aco rules, ...)
	GoCoroutines int64  `json:"go_coroutines"` // Go coroutines (AcoStart, Go aco functions)
}

// JobQueueStats is one job queue's threads and backlog.
type JobQueueStats struct {
	Name        string `json:"name"`
	Concurrency uint32 `json:"concurrency"` // threads it runs
	Backlog     uint32 `json:"backlog"`     // jobs queued, not started
	MaxBacklog  uint32 `json:"max_backlog"` // 0: no limit
}

// ListenerStatsInfo is a listener's address, type and counters.
type ListenerStatsInfo struct {
	Address      string `json:"address"`
	Type         string `json:"type"`
	Accepted     uint64 `json:"accepted"`
	Active       uint64 `json:"active"`
	Refused      uint64 `json:"refused"`
	AcceptErrors uint64 `json:"accept_errors"`
}

// ConnectionStats counts the connections served now.
type ConnectionStats struct {
	Active       uint64 `json:"active"`        // the listeners' open connections
	HTTPSessions int64  `json:"http_sessions"` // of those (and others), served by the HTTP engine
}

// ReadStats reads the eventer's figures.  Each loop counts its own
// coroutines on its own thread, between callbacks: call it from a
// goroutine that is not a loop's (an ordinary HTTP handler, not an aco
// one).  A loop that does not answer within a second (a callback that
// blocks it, or the caller itself) makes it fail with an error naming the
// loop and satisfying errors.Is(err, os.ErrDeadlineExceeded).
func ReadStats() (Stats, error) {
	var s Stats
	err := withLive(func() error {
		rt.mu.Lock()
		loops := append([]*loop(nil), rt.loops...)
		rt.mu.Unlock()
		type answer struct {
			i  int
			ls LoopStats
		}
		ch := make(chan answer, len(loops))
		for i, l := range loops {
			if err := l.post(func() {
				c, name := cgo.LoopStats()
				ch <- answer{i, LoopStats{Name: name, CCoroutines: c,
					GoCoroutines: int64(len(l.cos) - len(l.freeIDs))}}
			}); err != nil {
				return err
			}
		}
		s.Loops = make([]LoopStats, len(loops))
		answered := make([]bool, len(loops))
		deadline := time.NewTimer(time.Second)
		defer deadline.Stop()
		for range loops {
			select {
			case a := <-ch:
				s.Loops[a.i], answered[a.i] = a.ls, true
			case <-deadline.C:
				i := 0
				for answered[i] {
					i++
				}
				return fmt.Errorf("loop %d did not answer within 1s: %w", i, os.ErrDeadlineExceeded)
			}
		}
		for _, q := range cgo.JobqStats() {
			s.JobQueues = append(s.JobQueues, JobQueueStats{Name: q.Name,
				Concurrency: q.Concurrency, Backlog: q.Backlog, MaxBacklog: q.MaxBack})
		}
		for _, p := range cgo.Listeners() {
			var li ListenerStatsInfo
			li.Accepted, li.Active, li.Refused, li.AcceptErrors = cgo.ListenerStats(p)
			li.Type = cgo.ListenerType(p)
			if a := sockaddrBytesToAddr(cgo.ListenerAddress(p)); a != nil {
				li.Address = a.String()
			}
			cgo.ListenerRelease(p)
			s.Listeners = append(s.Listeners, li)
			s.Connections.Active += li.Active
		}
		s.Connections.HTTPSessions = cgo.HTTPSessionsLive()
		s.Events = cgo.LiveEvents()
		return nil
	})
	if err != nil {
		return Stats{}, &OpError{Op: "ReadStats", Err: err}
	}
	for _, l := range s.Loops {
		s.Coroutines += l.CCoroutines + l.GoCoroutines
	}
	return s, nil
}
