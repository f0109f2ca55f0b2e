// Command gopeer measures the Go equivalents of the eventer figures in
// bench_eventer.c, printed as "<metric> <value>" lines for
// bench/eventer/run.sh:
//
//	timer_add_fire_ns        time.AfterFunc(0, f) until f has run, per timer
//	fd_dispatch_ns           one os.Pipe hop between two goroutines (the
//	                         runtime netpoller wakes the reader), read + write
//	xthread_trigger_*        a goroutine blocked on a channel receive, woken
//	                         by a send from another goroutine: _b2b back to
//	                         back, plain after a 20 us pause, _asleep after
//	                         1 ms (as the C figures)
//	xthread_trigger_lockedrecv_*  the same with the receiver locked to its
//	                         OS thread (runtime.LockOSThread), as the Go
//	                         driver's loop goroutines are
//	jobq_roundtrip_*         a job sent to a pool of 4 worker goroutines and
//	                         its completion received back, one at a time
//	*_cpu_ns, *_csw          process CPU time and context switches per
//	                         round trip (getrusage), as in the C program
//
// With -idle seconds: the worker pool and a locked receiver wait for that
// long with nothing to do; idle_cpu_pct is the process's CPU time over it
// in percent of one core.
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
	"syscall"
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
	fmt.Printf("%s_p999_ns %d\n", name, v[len(v)*999/1000])
	fmt.Printf("%s_avg_ns %d\n", name, sum/int64(len(v)))
}

// usage returns the process's CPU time (ns, every thread) and context
// switches so far.
func usage() (cpu int64, csw int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	cpu = ru.Utime.Nano() + ru.Stime.Nano()
	return cpu, ru.Nvcsw + ru.Nivcsw
}

// cpuPer prints name_cpu_ns and name_csw: per item since usage() gave
// c0, s0.
func cpuPer(name string, c0, s0 int64, n int) {
	c, s := usage()
	fmt.Printf("%s_cpu_ns %.1f\n", name, float64(c-c0)/float64(n))
	fmt.Printf("%s_csw %.2f\n", name, float64(s-s0)/float64(n))
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

// pause busy-waits ns (time.Sleep would take ~1 ms) as the C benchmark
// does.
func pause(ns int64) {
	end := mono() + ns
	for mono() < end {
	}
}

// benchCrossThread: with locked, the receiver runs on its own locked OS
// thread (as the Go driver's loop goroutines do), so every wake-up is a
// thread wake-up like the C loop's; without, the runtime may hand the
// receiver to the sender's thread.  Each send comes `gap` ns after the
// previous one was received (0: back to back).
func benchCrossThread(name string, n int, locked bool, gap int64) {
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
	var c0, s0 int64
	for i := 0; i < n+100; i++ {
		if i == 100 {
			c0, s0 = usage()
		}
		if gap > 0 {
			pause(gap) // let the receiver park, as the C loop falls asleep
		}
		ch <- mono()
		lat := <-ack
		if i >= 100 {
			v = append(v, lat)
		}
	}
	if gap == 0 {
		cpuPer(name, c0, s0, n)
	}
	close(ch)
	percentiles(name, v)
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
	c0, s0 := usage()
	for i := 0; i < n; i++ {
		t0 := mono()
		jobs <- noop
		<-done
		v[i] = mono() - t0
	}
	cpuPer("jobq_roundtrip", c0, s0, n)
	close(jobs)
	percentiles("jobq_roundtrip", v)
}

// benchIdle: a worker pool and a locked receiver, with nothing to do.
func benchIdle(seconds float64) {
	jobs := make(chan func())
	for w := 0; w < 4; w++ {
		go func() {
			for job := range jobs {
				job()
			}
		}()
	}
	ch := make(chan int64)
	go func() {
		runtime.LockOSThread()
		for range ch {
		}
	}()
	for i := 0; i < 2000; i++ { // a burst first, as the C program does
		jobs <- func() {}
		ch <- 0
	}
	c0, s0 := usage()
	w0 := mono()
	time.Sleep(time.Duration(seconds * 1e9))
	c, s := usage()
	w := mono() - w0
	fmt.Printf("idle_seconds %.1f\n", float64(w)/1e9)
	fmt.Printf("idle_cpu_pct %.4f\n", 100*float64(c-c0)/float64(w))
	fmt.Printf("idle_wakeups_per_s %.1f\n", float64(s-s0)/(float64(w)/1e9))
	close(jobs)
	close(ch)
}

func main() {
	scale := flag.Float64("scale", 1, "multiply the iteration counts")
	idle := flag.Float64("idle", 0, "measure CPU at rest for this many seconds instead")
	flag.Parse()
	if *idle > 0 {
		benchIdle(*idle)
		return
	}
	n := func(base float64) int {
		v := int(base * *scale)
		if v < 100 {
			v = 100
		}
		return v
	}
	benchTimers(n(200000))
	benchFd(n(200000))
	x := n(20000)
	benchCrossThread("xthread_trigger_b2b", x, false, 0)
	benchCrossThread("xthread_trigger", x, false, 20000)
	benchCrossThread("xthread_trigger_asleep", x/10, false, 1000000)
	benchCrossThread("xthread_trigger_lockedrecv_b2b", x, true, 0)
	benchCrossThread("xthread_trigger_lockedrecv", x, true, 20000)
	benchCrossThread("xthread_trigger_lockedrecv_asleep", x/10, true, 1000000)
	benchJobq(n(20000))
}
