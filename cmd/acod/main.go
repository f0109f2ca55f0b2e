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

	eventer.AcoStart(func(co *eventer.Co) { acceptLoop(co, ln, idle) }, nil)
	err = eventer.Loop()
	signal.Stop(sigs)
	fmt.Fprintln(out, "acod: stopped")
	return err
}

// acceptLoop hands each connection to a coroutine of its own.
func acceptLoop(co *eventer.Co, ln *eventer.Event, idle time.Duration) {
	lae := co.SetEventerAco(ln)
	defer func() {
		lae.Close()
		lae.Free()
	}()
	for {
		c, err := lae.Accept(0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			slog.Warn("acod: accept", "err", err)
			if co.Sleep(10*time.Millisecond) != nil {
				return
			}
			continue
		}
		eventer.AcoStart(func(co *eventer.Co) { serve(co, c, idle) }, nil)
	}
}

// serve is the seed's listen_to_me, line by line.
func serve(co *eventer.Co, c *eventer.Event, idle time.Duration) {
	ae := co.SetEventerAco(c)
	defer func() {
		ae.Close()
		ae.Free()
	}()
	buf := make([]byte, 4096)
	var line []byte
	for {
		n, err := ae.Read(buf, idle)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				ae.Write([]byte("bye!\n"), time.Second)
			}
			return
		}
		line = append(line, buf[:n]...)
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
