// Command acod serves the seed document's "aco listener" protocol from Go
// coroutines on the C event loop: each line a client sends is answered
// "thanks!", a line starting with "quit" is answered "quitter!" and the
// connection closed, and a connection idle for -idle (10 s) is told "bye!"
// and closed.
//
//	go run ./cmd/acod                  # 127.0.0.1:9999
//	go run ./cmd/acod -addr :7000 -idle 30s
//
// SIGINT or SIGTERM stops it cleanly.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/acoeventer/eventer"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9999", "address to listen on")
	idle := flag.Duration("idle", 10*time.Second, "close a connection idle this long (after saying bye!)")
	loops := flag.Int("loops", 0, "event loop threads (0: one per CPU)")
	flag.Parse()
	if err := run(*addr, *idle, *loops, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "acod:", err)
		os.Exit(1)
	}
}

func run(addr string, idle time.Duration, loops int, out *os.File) error {
	if idle <= 0 {
		return errors.New("-idle must be positive")
	}
	if err := eventer.Init(eventer.WithConcurrency(loops)); err != nil {
		return err
	}
	ln, err := eventer.Listen("tcp", addr)
	if err != nil {
		eventer.Shutdown()
		return err
	}
	fmt.Fprintf(out, "acod: listening on %s\n", ln.Addr())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		slog.Info("acod: stopping", "signal", s.String())
		eventer.Shutdown()
	}()

	if _, err := eventer.AcoStart(func(co *eventer.Co) { acceptLoop(co, ln, idle) }, nil); err != nil {
		eventer.Shutdown()
		return err
	}
	err = eventer.Loop()
	signal.Stop(sigs)
	fmt.Fprintln(out, "acod: stopped")
	return err
}

// acceptLoop hands each connection to a coroutine of its own.
func acceptLoop(co *eventer.Co, ln *eventer.Event, idle time.Duration) {
	lae, err := co.SetEventerAco(ln)
	if err != nil {
		slog.Error("acod: listener", "err", err)
		eventer.Shutdown()
		return
	}
	defer lae.Close()
	var warn rateLimited
	for {
		c, err := lae.Accept(0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, eventer.ErrStopped) {
				return
			}
			// out of fds, most likely: back off, and say so at most once
			// a second (with how often it happened)
			warn.log("acod: accept", err)
			if co.Sleep(10*time.Millisecond) != nil {
				return
			}
			continue
		}
		if _, err := eventer.AcoStart(func(co *eventer.Co) { serve(co, c, idle) }, nil); err != nil {
			c.Close()
			return // the loops are stopping
		}
	}
}

// rateLimited logs a warning at most once a second, with the number of
// times it happened since the last line.
type rateLimited struct {
	last  time.Time
	count int
}

func (r *rateLimited) log(msg string, err error) {
	r.count++
	if now := time.Now(); now.Sub(r.last) >= time.Second {
		slog.Warn(msg, "err", err, "times", r.count)
		r.last, r.count = now, 0
	}
}

// bufs are the read buffers: a connection holds one only while it has
// bytes to read (an idle one waits for readiness holding none).
var bufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// serve is the seed's listen_to_me, line by line.
func serve(co *eventer.Co, c *eventer.Event, idle time.Duration) {
	ae, err := co.SetEventerAco(c)
	if err != nil {
		c.Close()
		return
	}
	defer ae.Close()
	var line []byte
	for {
		// wait for the next bytes holding no buffer, then read them
		if err := ae.Wait(eventer.Read, idle); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				ae.Write([]byte("bye!\n"), time.Second)
			}
			return
		}
		bp := bufs.Get().(*[]byte)
		n, err := ae.Read(*bp, -1) // ready: no wait
		if errors.Is(err, os.ErrDeadlineExceeded) {
			bufs.Put(bp)
			continue // the readiness was spurious
		}
		line = append(line, (*bp)[:max(n, 0)]...)
		bufs.Put(bp)
		if err != nil {
			return
		}
		for {
			i := bytes.IndexByte(line, '\n')
			if i < 0 {
				break
			}
			l := line[:i]
			line = line[i+1:]
			if len(l) >= 4 && bytes.EqualFold(l[:4], []byte("quit")) {
				ae.Write([]byte("quitter!\n"), time.Second)
				return
			}
			if _, err := writeAll(ae, []byte("thanks!\n")); err != nil {
				return
			}
		}
		if len(line) == 0 {
			line = nil // an idle connection keeps no buffer either
		}
		if len(line) > 64*1024 { // a line that never ends
			return
		}
	}
}

func writeAll(ae *eventer.AcoEvent, p []byte) (int, error) {
	total := 0
	for total < len(p) {
		n, err := ae.Write(p[total:], 10*time.Second)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
