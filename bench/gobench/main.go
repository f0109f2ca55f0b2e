//go:build eventer_testhooks

// Command gobench measures the Go binding next to its peers in one run and
// prints ratios (see bench/README.md):
//
//   - the would-block-then-ready cycle of a Go coroutine vs a C coroutine;
//
//   - socketpair ping-pong round trips per second, 1 and 100 pairs: Go
//     coroutines on the eventer vs goroutines on Go's netpoller (net.Conn),
//     with C coroutines alongside;
//
//   - resident bytes per parked Go coroutine vs per parked goroutine, idle
//     and parked on a read;
//
//   - resident bytes of acod per idle client vs a goroutine-per-connection
//     server (with -acod, the acod binary).
//
//     bash bench/gobench/run.sh [-quick] [-runs N]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer"
	"github.com/acoeventer/eventer/cgo"
)

var (
	quick   = flag.Bool("quick", false, "short runs (a smoke test)")
	runs    = flag.Int("runs", 5, "runs per figure; the median is reported")
	memOf   = flag.String("mem", "", "internal: measure memory of 'co', 'goroutine', 'coread' or 'goread' in this process")
	acodBin = flag.String("acod", "", "the acod binary: measure its memory per idle client")
	netPeer = flag.Bool("serve-net", false, "internal: serve acod's protocol with the net package")
	only    = flag.String("only", "", "comma-separated sections to run: cycle, pingpong, mem, acod (default: all)")
)

// run reports whether -only selects section.
func run(section string) bool {
	if *only == "" {
		return true
	}
	for _, s := range strings.Split(*only, ",") {
		if strings.TrimSpace(s) == section {
			return true
		}
	}
	return false
}

func main() {
	flag.Parse()
	if *quick {
		*runs = 1
	}
	if *memOf != "" {
		per, stacks, heap := memOne(*memOf)
		fmt.Printf("%.0f %.0f %.0f\n", per, stacks, heap)
		return
	}
	if *netPeer {
		serveNet()
		return
	}
	fmt.Printf("# gobench  %s/%s  GOMAXPROCS=%d  cpus=%d  %s\n\n", runtime.GOOS, runtime.GOARCH,
		runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version())
	if run("cycle") {
		cycle()
	}
	if run("pingpong") {
		pingpong(1)
		pingpong(100)
	}
	if run("mem") {
		memory()
	}
	if run("acod") {
		acodMemory()
	}
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
			ae, err := co.SetEventerAco(ev)
			must(err)
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
		}
	}
	pairs := make([][2]int, n) // made before the clock starts, as for every side
	for i := range pairs {
		pairs[i][0], pairs[i][1] = sockpair()
	}
	start := time.Now()
	for i, p := range pairs {
		_, err := eventer.AcoStartOn(i%loops, side(p[0], true), nil)
		must(err)
		_, err = eventer.AcoStartOn(i%loops, side(p[1], false), nil)
		must(err)
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
		_, err := eventer.AcoStartOn(l, func(co *eventer.Co) {
			for i := l; i < n; i += loops {
				cgo.CPingPong(pairs[i][0], rounds, true, done)
				cgo.CPingPong(pairs[i][1], rounds, false, done)
			}
		}, nil)
		must(err)
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

func rss() int64 { return rssOf("self") }

// rssOf is the resident bytes of process pid ("self": this one).
func rssOf(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/statm")
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

// readCount is how many coroutines (goroutines) park on a read: each
// holds a socketpair, and the fd limit here is 20000.
func readCount() int {
	if *quick {
		return 2000
	}
	return 8000
}

// raiseFdLimit lifts the soft fd limit to the hard one.
func raiseFdLimit() {
	var lim syscall.Rlimit
	must(syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	lim.Cur = lim.Max
	must(syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
}

// memOne measures, in this (fresh) process, bytes per idle Go coroutine
// or goroutine:
//
//	co         a Go coroutine parked in Co.Park
//	goroutine  a goroutine parked on a channel receive
//	coread     a Go coroutine parked in AcoEvent.Read on a socketpair
//	goread     a goroutine parked in net.Conn.Read on a socketpair
//
// It returns the resident bytes (RSS after minus before) and where the Go
// runtime says they went: goroutine stacks and heap objects (the rest is
// C memory, page tables and the runtime's own structures).
func memOne(what string) (per, stacks, heap float64) {
	raiseFdLimit()
	n := idleCount()
	if what == "coread" || what == "goread" {
		n = readCount()
	}
	// the sockets, and the eventer, exist before the first sample
	var fds [][2]int
	if what == "coread" || what == "goread" {
		fds = make([][2]int, n)
		for i := range fds {
			fds[i][0], fds[i][1] = sockpair()
		}
	}
	if what == "co" || what == "coread" {
		must(eventer.Init(eventer.WithConcurrency(1)))
		defer func() {
			eventer.Shutdown()
			must(eventer.Loop())
		}()
	}
	debug.SetGCPercent(-1) // keep the heap from shrinking between samples
	runtime.GC()
	sample := func() (int64, uint64, uint64) {
		sm := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
		metrics.Read(sm)
		return rss(), sm[0].Value.Uint64(), sm[1].Value.Uint64()
	}
	r0, s0, h0 := sample()
	ready := make(chan struct{}, 1024)
	stop := make(chan struct{})
	started := 0
	wait := func() {
		for ; started > 0; started-- {
			<-ready
		}
	}
	for i := 0; i < n; i++ {
		i := i
		switch what {
		case "goroutine":
			go func() {
				ready <- struct{}{}
				<-stop
			}()
		case "co":
			_, err := eventer.AcoStartOn(0, func(co *eventer.Co) {
				ready <- struct{}{}
				co.Park(0)
			}, nil)
			must(err)
		case "coread":
			ev, err := eventer.FdEvent(fds[i][0])
			must(err)
			_, err = eventer.AcoStartOn(0, func(co *eventer.Co) {
				ae, err := co.SetEventerAco(ev)
				must(err)
				buf := make([]byte, 64)
				ready <- struct{}{}
				ae.Read(buf, 0)
			}, nil)
			must(err)
		case "goread":
			f := os.NewFile(uintptr(fds[i][0]), "sock")
			c, err := net.FileConn(f) // a dup of the fd
			must(err)
			f.Close()
			go func() {
				buf := make([]byte, 64)
				ready <- struct{}{}
				c.Read(buf)
			}()
		}
		started++
		if started == 1000 {
			wait()
		}
	}
	wait()
	time.Sleep(50 * time.Millisecond)
	r1, s1, h1 := sample()
	close(stop)
	f := float64(n)
	return float64(r1-r0) / f, float64(s1-s0) / f, float64(h1-h0) / f
}

// memory runs memOne for each kind in a fresh process (a process that
// already ran goroutines reuses their stacks and would measure nothing),
// alternating the sides run by run.
func memory() {
	exe, err := os.Executable()
	must(err)
	measure := func(what string) [3]float64 {
		args := []string{"-mem", what}
		if *quick {
			args = append(args, "-quick")
		}
		out, err := exec.Command(exe, args...).Output()
		must(err)
		var v [3]float64
		for i, f := range strings.Fields(string(out)) {
			v[i], err = strconv.ParseFloat(f, 64)
			must(err)
		}
		return v
	}
	pair := func(ours, peer, title, oursName, peerName string) {
		var a, b [3][]float64
		var ratios []float64
		for i := 0; i < *runs; i++ {
			var x, y [3]float64
			if i%2 == 0 {
				x, y = measure(ours), measure(peer)
			} else {
				y, x = measure(peer), measure(ours)
			}
			for k := range x {
				a[k], b[k] = append(a[k], x[k]), append(b[k], y[k])
			}
			ratios = append(ratios, x[0]/y[0])
		}
		fmt.Printf("%s (fresh process each, median of %d alternating runs)\n", title, *runs)
		fmt.Printf("  %-36s %7.0f B   (stacks %5.0f, heap objects %5.0f)\n", oursName, med(a[0]), med(a[1]), med(a[2]))
		fmt.Printf("  %-36s %7.0f B   (stacks %5.0f, heap objects %5.0f)\n", peerName, med(b[0]), med(b[1]), med(b[2]))
		fmt.Printf("  ratio                                %7.2fx   (goal <= 1.1x; per-run ratios %s)\n\n", med(ratios), fmtAll(ratios))
	}
	pair("co", "goroutine", fmt.Sprintf("resident memory per parked coroutine (%d parked)", idleCount()),
		"Go coroutine in Co.Park", "goroutine on a channel receive")
	pair("coread", "goread", fmt.Sprintf("resident memory per coroutine parked on a read (%d socketpairs)", readCount()),
		"Go coroutine in AcoEvent.Read", "goroutine in net.Conn.Read")
}

// ---- acod: resident bytes per idle client -------------------------------------

// idleClients connects n clients to addr and keeps them idle; it returns
// the server's resident bytes per client (pid's RSS after minus before).
func idleClients(pid, addr string, n int) float64 {
	time.Sleep(100 * time.Millisecond)
	before := rssOf(pid)
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		must(err)
		conns = append(conns, c)
	}
	// every connection accepted and its coroutine (goroutine) waiting
	for _, c := range conns[:1] {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintln(c, "hi")
		b := make([]byte, 8)
		_, err := io.ReadFull(c, b)
		must(err)
	}
	time.Sleep(500 * time.Millisecond)
	per := float64(rssOf(pid)-before) / float64(n)
	for _, c := range conns {
		c.Close()
	}
	return per
}

// serveNet is the peer of acod: the same protocol with a goroutine and a
// bufio.Reader per connection, as a Go programmer would write it.
func serveNet() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	fmt.Println(ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				c.SetReadDeadline(time.Now().Add(time.Minute))
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if strings.HasPrefix(strings.ToLower(line), "quit") {
					io.WriteString(c, "quitter!\n")
					return
				}
				io.WriteString(c, "thanks!\n")
			}
		}()
	}
}

// server starts a server (the acod binary, or this program as the net
// peer) and returns its pid, address and a stop function.
func server(cmd *exec.Cmd) (string, string, func()) {
	out, err := cmd.StdoutPipe()
	must(err)
	must(cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	must(err)
	addr := strings.TrimSpace(strings.TrimPrefix(line, "acod: listening on "))
	return strconv.Itoa(cmd.Process.Pid), addr, func() { cmd.Process.Kill(); cmd.Wait() }
}

func acodMemory() {
	if *acodBin == "" {
		return
	}
	raiseFdLimit()
	n := 5000
	if *quick {
		n = 1000
	}
	exe, err := os.Executable()
	must(err)
	var ours, peer []float64
	for i := 0; i < *runs; i++ {
		pid, addr, stop := server(exec.Command(*acodBin, "-addr", "127.0.0.1:0", "-idle", "1m", "-loops", "2"))
		ours = append(ours, idleClients(pid, addr, n))
		stop()
		pid, addr, stop = server(exec.Command(exe, "-serve-net"))
		peer = append(peer, idleClients(pid, addr, n))
		stop()
	}
	fmt.Printf("resident memory of the server per idle client (%d clients, median of %d runs)\n", n, *runs)
	fmt.Printf("  acod (Go coroutines on the eventer)       %7.0f B   (goal <= 4096 B)\n", med(ours))
	fmt.Printf("  goroutine + bufio.Reader per connection   %7.0f B\n\n", med(peer))
}
