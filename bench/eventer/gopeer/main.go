// Command gopeer measures the Go equivalents of the eventer figures in
// bench_eventer.c, printed as "<metric> <nanoseconds>" lines for
// bench/eventer/run.sh:
//
//	timer_add_fire_ns        time.AfterFunc(0, f) until f has run, per timer
//	fd_dispatch_ns           one os.Pipe hop between two goroutines (the
//	                         runtime netpoller wakes the reader), read + write
//	xthread_trigger_p*_ns    a goroutine blocked on a channel receive, woken
//	                         by a send from another goroutine
//	xthread_trigger_lockedrecv_p*_ns  the same with the receiver locked to
//	                         its OS thread (runtime.LockOSThread)
//	jobq_roundtrip_p*_ns     a job sent to a pool of 4 worker goroutines and
//	                         its completion received back, one at a time
//
// Standard library only.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"time"
)

var start = time.Now()

// mono returns monotonic nanoseconds since start.
func mono() int64 { return int64(time.Since(start)) }

func percentiles(name string, v []int64) {
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	var sum int64
	for _, x := range v {
		sum += x
	}
	fmt.Printf("%s_p50_ns %d\n", name, v[len(v)/2])
	fmt.Printf("%s_p99_ns %d\n", name, v[len(v)*99/100])
	fmt.Printf("%s_avg_ns %d\n", name, sum/int64(len(v)))
}

func benchTimers(n int) {
	var wg sync.WaitGroup
	wg.Add(n)
	t0 := mono()
	for i := 0; i < n; i++ {
		time.AfterFunc(0, wg.Done)
	}
	wg.Wait()
	fmt.Printf("timer_add_fire_ns %.1f\n", float64(mono()-t0)/float64(n))
}

func benchFd(n int) {
	r1, w1, err := os.Pipe()
	if err != nil {
		panic(err)
	}
	r2, w2, err := os.Pipe()
	if err != nil {
		panic(err)
	}
	hops := make(chan int, 2)
	// Each goroutine reads a byte from its pipe and writes it to the
	// other's: one hop per read, as the C callbacks do.
	hop := func(r, w *os.File, count int) {
		b := make([]byte, 1)
		for i := 0; i < count; i++ {
			if _, err := r.Read(b); err != nil {
				panic(err)
			}
			if _, err := w.Write(b); err != nil {
				panic(err)
			}
		}
		hops <- count
	}
	t0 := mono()
	go hop(r1, w2, n/2)
	go hop(r2, w1, n/2)
	if _, err := w1.Write([]byte{'x'}); err != nil {
		panic(err)
	}
	<-hops
	<-hops
	fmt.Printf("fd_dispatch_ns %.1f\n", float64(mono()-t0)/float64(n/2*2))
	for _, f := range []*os.File{r1, w1, r2, w2} {
		f.Close()
	}
}

// pause20us busy-waits 20 us (time.Sleep would take ~1 ms) as the C
// benchmark does.
func pause20us() {
	end := mono() + 20000
	for mono() < end {
	}
}

// benchCrossThread: with locked, the receiver runs on its own locked OS
// thread (as the Go driver's loop goroutines will), so every wake-up is a
// thread wake-up like the C loop's; without, the runtime may hand the
// receiver to the sender's thread.
func benchCrossThread(n int, locked bool) {
	ch := make(chan int64)
	ack := make(chan int64)
	go func() {
		if locked {
			runtime.LockOSThread()
		}
		for sent := range ch {
			ack <- mono() - sent
		}
	}()
	v := make([]int64, 0, n)
	for i := 0; i < n+100; i++ {
		pause20us() // let the receiver park, as the C loop falls asleep
		ch <- mono()
		lat := <-ack
		if i >= 100 {
			v = append(v, lat)
		}
	}
	close(ch)
	if locked {
		percentiles("xthread_trigger_lockedrecv", v)
	} else {
		percentiles("xthread_trigger", v)
	}
}

func benchJobq(n int) {
	jobs := make(chan func())
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		go func() {
			for job := range jobs {
				job()
				done <- struct{}{}
			}
		}()
	}
	v := make([]int64, n)
	noop := func() {}
	for i := 0; i < n; i++ {
		t0 := mono()
		jobs <- noop
		<-done
		v[i] = mono() - t0
	}
	close(jobs)
	percentiles("jobq_roundtrip", v)
}

func main() {
	scale := flag.Float64("scale", 1, "multiply the iteration counts")
	flag.Parse()
	benchTimers(int(200000 * *scale))
	benchFd(int(200000 * *scale))
	benchCrossThread(int(20000**scale), false)
	benchCrossThread(int(20000**scale), true)
	benchJobq(int(20000 * *scale))
}
