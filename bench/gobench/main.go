// Command gobench measures the Go binding next to its peers in one run and
// prints ratios (see bench/README.md):
//
//   - the would-block-then-ready cycle of a Go coroutine vs a C coroutine;
//
//   - socketpair ping-pong round trips per second, 1 and 100 pairs: Go
//     coroutines on the eventer vs goroutines on Go's netpoller (net.Conn),
//     with C coroutines alongside;
//
//   - resident bytes per idle Go coroutine vs per idle goroutine.
//
//     go run ./bench/gobench [-quick]
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer"
	"github.com/acoeventer/eventer/cgo"
)

var (
	quick = flag.Bool("quick", false, "short runs (a smoke test)")
	runs  = flag.Int("runs", 5, "runs per figure; the median is reported")
	memOf = flag.String("mem", "", "internal: measure memory of 'co' or 'goroutine' in this process")
)

func main() {
	flag.Parse()
	if *quick {
		*runs = 1
	}
	if *memOf != "" {
		fmt.Printf("%.0f\n", memOne(*memOf))
		return
	}
	fmt.Printf("# gobench  %s/%s  GOMAXPROCS=%d  cpus=%d  %s\n\n", runtime.GOOS, runtime.GOARCH,
		runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version())
	cycle()
	pingpong(1)
	pingpong(100)
	memory()
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "gobench:", err)
		os.Exit(1)
	}
}

func sockpair() (int, int) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	must(err)
	return fds[0], fds[1]
}

func median(f func() float64) float64 {
	v := make([]float64, *runs)
	for i := range v {
		v[i] = f()
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

func withEventer(loops int, f func()) {
	must(eventer.Init(eventer.WithConcurrency(loops)))
	f()
	eventer.Shutdown()
	must(eventer.Loop())
}

// goPairs runs n ping-pong pairs of Go coroutines, rounds round trips each,
// spread over loops, and returns the wall time.
func goPairs(n, rounds, loops int) time.Duration {
	var wg sync.WaitGroup
	wg.Add(2 * n)
	side := func(fd int, initiator bool) func(co *eventer.Co) {
		return func(co *eventer.Co) {
			defer wg.Done()
			ev, err := eventer.FdEvent(fd)
			must(err)
			ae := co.SetEventerAco(ev)
			buf := make([]byte, 4)
			msg := []byte("ping")
			for i := 0; i < rounds; i++ {
				if initiator {
					ae.Write(msg, 0)
					ae.Read(buf, 0)
				} else {
					ae.Read(buf, 0)
					ae.Write(msg, 0)
				}
			}
			ae.Close()
			ae.Free()
		}
	}
	pairs := make([][2]int, n) // made before the clock starts, as for every side
	for i := range pairs {
		pairs[i][0], pairs[i][1] = sockpair()
	}
	start := time.Now()
	for i, p := range pairs {
		eventer.AcoStartOn(i%loops, side(p[0], true), nil)
		eventer.AcoStartOn(i%loops, side(p[1], false), nil)
	}
	wg.Wait()
	return time.Since(start)
}

// cPairs is goPairs with C coroutines (started from a Go coroutine, so on
// a loop thread).
func cPairs(n, rounds, loops int) time.Duration {
	done := cgo.NewCounter()
	defer done.Free()
	pairs := make([][2]int, n)
	for i := range pairs {
		pairs[i][0], pairs[i][1] = sockpair()
	}
	start := time.Now()
	for l := 0; l < loops; l++ {
		eventer.AcoStartOn(l, func(co *eventer.Co) {
			for i := l; i < n; i += loops {
				cgo.CPingPong(pairs[i][0], rounds, true, done)
				cgo.CPingPong(pairs[i][1], rounds, false, done)
			}
		}, nil)
	}
	for done.Load() < 2*n {
		time.Sleep(20 * time.Microsecond)
	}
	d := time.Since(start)
	for _, p := range pairs {
		unix.Close(p[0])
		unix.Close(p[1])
	}
	return d
}

// netPairs is the same ping-pong between goroutines over net.Conn (Go's
// netpoller).
func netPairs(n, rounds int) time.Duration {
	var wg sync.WaitGroup
	wg.Add(2 * n)
	side := func(c net.Conn, initiator bool) {
		defer wg.Done()
		defer c.Close()
		buf := make([]byte, 4)
		msg := []byte("ping")
		for i := 0; i < rounds; i++ {
			if initiator {
				c.Write(msg)
				c.Read(buf)
			} else {
				c.Read(buf)
				c.Write(msg)
			}
		}
	}
	conns := make([]net.Conn, 0, 2*n)
	for i := 0; i < n; i++ {
		a, b := sockpair()
		for _, fd := range []int{a, b} {
			f := os.NewFile(uintptr(fd), "sock")
			c, err := net.FileConn(f)
			must(err)
			f.Close()
			conns = append(conns, c)
		}
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		go side(conns[2*i], true)
		go side(conns[2*i+1], false)
	}
	wg.Wait()
	return time.Since(start)
}

// cycle: one pair on one loop; each round trip is two would-block-then-
// ready cycles (each side reads, blocks, is made ready by the other).
func cycle() {
	rounds := 200000
	if *quick {
		rounds = 20000
	}
	var goNs, cNs, ratios []float64
	withEventer(1, func() {
		goPairs(1, rounds/10, 1) // warm up
		cPairs(1, rounds/10, 1)
		for i := 0; i < *runs; i++ {
			g := float64(goPairs(1, rounds, 1).Nanoseconds()) / float64(2*rounds)
			c := float64(cPairs(1, rounds, 1).Nanoseconds()) / float64(2*rounds)
			goNs, cNs, ratios = append(goNs, g), append(cNs, c), append(ratios, g/c)
		}
	})
	fmt.Printf("would-block-then-ready cycle (1 loop, socketpair ping-pong / 2; median of %d alternating runs)\n", *runs)
	fmt.Printf("  Go coroutine  %8.0f ns\n  C coroutine   %8.0f ns\n  Go/C          %8.2fx   (goal <= 1.5x; per-run ratios %s)\n\n", med(goNs), med(cNs), med(ratios), fmtAll(ratios))
}

// pingpong alternates the three sides run by run (eventer Go, netpoller,
// eventer C), so drift in the machine's speed hits them alike, and reports
// the median of the per-run Go/netpoller ratios.
func pingpong(pairs int) {
	rounds := 100000 / pairs
	if *quick {
		rounds /= 10
	}
	loops := runtime.NumCPU()
	total := float64(pairs * rounds)
	var goRates, netRates, cRates, ratios []float64
	withEventer(loops, func() {
		goPairs(pairs, rounds/10+1, loops) // warm up
		netPairs(pairs, rounds/10+1)
		for i := 0; i < *runs; i++ {
			g := total / goPairs(pairs, rounds, loops).Seconds()
			n := total / netPairs(pairs, rounds).Seconds()
			c := total / cPairs(pairs, rounds, loops).Seconds()
			goRates, netRates, cRates = append(goRates, g), append(netRates, n), append(cRates, c)
			ratios = append(ratios, g/n)
		}
	})
	fmt.Printf("socketpair ping-pong, %d pair(s), %d loops (round trips/s, median of %d alternating runs)\n", pairs, loops, *runs)
	fmt.Printf("  Go coroutines, eventer  %10.0f\n  goroutines, netpoller   %10.0f\n  C coroutines, eventer   %10.0f\n", med(goRates), med(netRates), med(cRates))
	fmt.Printf("  eventer Go / netpoller  %10.2fx   (goal >= 1.0x; per-run ratios %s)\n\n", med(ratios), fmtAll(ratios))
}

func med(v []float64) float64 {
	w := append([]float64(nil), v...)
	sort.Float64s(w)
	return w[len(w)/2]
}

func fmtAll(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, " ")
}

func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	must(err)
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func idleCount() int {
	if *quick {
		return 10000
	}
	return 100000
}

// memOne measures, in this (fresh) process, resident bytes per idle Go
// coroutine (parked in Co.Park) or per idle goroutine (parked on a
// channel).
func memOne(what string) float64 {
	n := idleCount()
	debug.SetGCPercent(-1) // keep the heap from shrinking between samples
	if what == "goroutine" {
		runtime.GC()
		before := rss()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(n)
		for i := 0; i < n; i++ {
			go func() {
				wg.Done()
				<-stop
			}()
		}
		wg.Wait()
		time.Sleep(50 * time.Millisecond)
		per := float64(rss()-before) / float64(n)
		close(stop)
		return per
	}
	var per float64
	withEventer(1, func() {
		ready := make(chan struct{}, 1024)
		cos := make([]*eventer.Co, 0, n)
		runtime.GC()
		before := rss()
		for i := 0; i < n; i++ {
			cos = append(cos, eventer.AcoStartOn(0, func(co *eventer.Co) {
				ready <- struct{}{}
				co.Park(0)
			}, nil))
			if i%1000 == 999 {
				for j := 0; j < 1000; j++ {
					<-ready
				}
			}
		}
		for len(ready) > 0 {
			<-ready
		}
		time.Sleep(50 * time.Millisecond)
		per = float64(rss()-before) / float64(n)
		for _, co := range cos {
			co.Wake()
		}
		for _, co := range cos {
			<-co.Done()
		}
	})
	return per
}

// memory runs memOne for each kind in a fresh process (a process that
// already ran goroutines reuses their stacks and would measure nothing).
func memory() {
	exe, err := os.Executable()
	must(err)
	measure := func(what string) float64 {
		args := []string{"-mem", what}
		if *quick {
			args = append(args, "-quick")
		}
		return median(func() float64 {
			out, err := exec.Command(exe, args...).Output()
			must(err)
			v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
			must(err)
			return v
		})
	}
	perCo, perG := measure("co"), measure("goroutine")
	fmt.Printf("resident memory per idle coroutine (%d parked, fresh process each)\n", idleCount())
	fmt.Printf("  Go coroutine (goroutine + C proxy)  %7.0f B\n  plain goroutine                     %7.0f B\n  ratio                               %7.2fx\n", perCo, perG, perCo/perG)
}
