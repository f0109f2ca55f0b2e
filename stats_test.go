package eventer

import (
	"errors"
	"os"
	"testing"
	"time"
)

// ReadStats reports what runs: each loop by name, the Go coroutines that
// are parked on it, the job queues with their settings, and nothing once
// they are gone; from a coroutine of a loop it cannot wait for that loop,
// and says so.
func TestReadStats(t *testing.T) {
	setup(t, 2)
	base, err := ReadStats()
	if err != nil {
		t.Fatal(err)
	}
	if len(base.Loops) != 2 || base.Loops[0].Name != "default/0" || base.Loops[1].Name != "default/1" {
		t.Fatalf("loops: %+v", base.Loops)
	}
	q, err := NewJobQueue("stats_q", WithJobConcurrency(3), WithJobBacklog(7))
	if err != nil {
		t.Fatal(err)
	}
	parked := make([]*Co, 5)
	for i := range parked {
		parked[i] = start(t, i%2, func(co *Co) { co.Park(0) })
	}
	// the starts are queued: wait until every loop counts them
	var s Stats
	for deadline := time.Now().Add(10 * time.Second); ; {
		if s, err = ReadStats(); err != nil {
			t.Fatal(err)
		}
		if s.Loops[0].GoCoroutines == base.Loops[0].GoCoroutines+3 &&
			s.Loops[1].GoCoroutines == base.Loops[1].GoCoroutines+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 parked Go coroutines (3 on loop 0, 2 on loop 1): %+v (before: %+v)", s.Loops, base.Loops)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.Coroutines != base.Coroutines+5 {
		t.Fatalf("coroutines %d, before %d, 5 parked", s.Coroutines, base.Coroutines)
	}
	var found *JobQueueStats
	for i := range s.JobQueues {
		if s.JobQueues[i].Name == "stats_q" {
			found = &s.JobQueues[i]
		}
	}
	if found == nil || found.Concurrency != 3 || found.MaxBacklog != 7 || found.Backlog != 0 {
		t.Fatalf("stats_q (3 threads, backlog 7) in %+v", s.JobQueues)
	}

	// from a loop's coroutine: its own loop cannot answer while it waits
	err = inCo(t, 0, func(co *Co) error { _, err := ReadStats(); return err })
	if !errors.Is(err, os.ErrDeadlineExceeded) || err.Error() == "" {
		t.Fatalf("ReadStats in a coroutine: %v", err)
	}

	for _, co := range parked {
		co.Wake()
	}
	q.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if s, err = ReadStats(); err != nil {
			t.Fatal(err)
		}
		gone := true
		for _, jq := range s.JobQueues {
			gone = gone && jq.Name != "stats_q"
		}
		if gone && s.Coroutines == base.Coroutines {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the wakes and Close: %+v (before: %+v)", s, base)
		}
		time.Sleep(10 * time.Millisecond)
	}
	Shutdown()
	if _, err := ReadStats(); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("after Shutdown: %v", err)
	}
}
