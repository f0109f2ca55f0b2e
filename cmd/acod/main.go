// Command acod serves the seed document's "aco listener" protocol from Go
// aco functions on the C listener and event loop: each line a client
// sends is answered "thanks!", a line starting with "quit" is answered
// "quitter!" and the connection closed, and a connection idle for -idle
// (10 s) is told "bye!" and closed.
//
// Its listeners come from a libmtev-style configuration: the built-in one
// (config.go: the protocol on 127.0.0.1:9999) or the file -config names,
// whose root element is <acod>.  The function is registered as listener
// type "acod" before the configuration's listeners start.
//
//	go run ./cmd/acod                      # 127.0.0.1:9999
//	go run ./cmd/acod -addr :7000 -idle 30s
//	go run ./cmd/acod -config acod.conf
//
// -addr serves the protocol on that address too (in place of the built-in
// 127.0.0.1:9999; port 0: the kernel picks one).  Each listener is
// announced as "acod: listening on ADDR" (the protocol's first).  SIGINT
// or SIGTERM stops it cleanly.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/acoeventer/eventer"
)

const appName = "acod"

type options struct {
	config  string
	addr    string
	idle    time.Duration
	idleSet bool // -idle given: it wins over a listener's bye_timeout
	loops   int
}

func main() {
	var o options
	flag.StringVar(&o.config, "config", "", "libmtev-style configuration file (default: the built-in one)")
	flag.StringVar(&o.addr, "addr", "", "serve the protocol on this address (default: the configuration's listeners)")
	flag.DurationVar(&o.idle, "idle", 10*time.Second, "close a connection idle this long (after saying bye!)")
	flag.IntVar(&o.loops, "loops", 0, "event loop threads (0: the configuration's, or one per CPU)")
	flag.Parse()
	flag.Visit(func(f *flag.Flag) { o.idleSet = o.idleSet || f.Name == "idle" })
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "acod:", err)
		os.Exit(1)
	}
}

func run(o options, out io.Writer) error {
	if o.idle <= 0 {
		return errors.New("-idle must be positive")
	}
	if o.loops < 0 {
		return errors.New("-loops must not be negative")
	}
	// signals first: a client served before this would find acod
	// killable by SIGTERM
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var err error
	if o.config != "" {
		err = eventer.LoadConfig(o.config)
	} else {
		err = eventer.LoadConfigString(builtinConfig(o.addr == ""), "acod's built-in configuration")
	}
	if err != nil {
		return err
	}
	var opts []eventer.Option
	if o.loops > 0 {
		opts = append(opts, eventer.WithConcurrency(o.loops))
	}
	if err := eventer.Init(opts...); err != nil {
		return err
	}
	svc := &service{o: o}
	if err := eventer.RegisterAcoFunction("acod", svc.serve); err != nil {
		eventer.Shutdown()
		return err
	}
	if err := eventer.ListenerInit(appName); err != nil {
		eventer.Shutdown()
		return err
	}
	if o.addr != "" {
		if _, err := eventer.ListenAco("tcp", o.addr, svc.serve,
			eventer.WithBacklog(1024), eventer.WithFanout(true)); err != nil {
			eventer.Shutdown()
			return err
		}
	}
	ls := eventer.Listeners()
	if len(ls) == 0 {
		eventer.Shutdown()
		return errors.New("no listener: the configuration has none under <acod><listeners>")
	}
	// the protocol's listeners first
	for _, first := range []bool{true, false} {
		for _, l := range ls {
			if proto := l.Type() == "acod" || l.Type() == ""; proto == first {
				if proto {
					fmt.Fprintf(out, "acod: listening on %s\n", l.Addr())
				} else {
					fmt.Fprintf(out, "acod: listening on %s (%s)\n", l.Addr(), l.Type())
				}
			}
		}
	}

	go func() {
		s := <-sigs
		slog.Info("acod: stopping", "signal", s.String())
		eventer.Shutdown()
	}()
	err = eventer.Loop()
	fmt.Fprintln(out, "acod: stopped")
	return err
}

// service is the protocol's aco function and its settings.
type service struct {
	o       options
	badConf sync.Once
}

// bufs are the read buffers: a connection holds one only while it has
// bytes to read (an idle one waits for readiness holding none).
var bufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// byeAfter is how long a connection may stay silent: -idle if given, else
// its listener's bye_timeout (ms), else -idle's default.
func (s *service) byeAfter(ae *eventer.AcoEvent) time.Duration {
	if s.o.idleSet {
		return s.o.idle
	}
	v, ok := ae.Acceptor().Config("bye_timeout")
	if !ok {
		return s.o.idle
	}
	ms, err := strconv.ParseUint(v, 10, 32)
	if err != nil || ms == 0 {
		s.badConf.Do(func() {
			slog.Error("acod: bye_timeout is not a positive number of milliseconds; using -idle",
				"value", v, "idle", s.o.idle)
		})
		return s.o.idle
	}
	return time.Duration(ms) * time.Millisecond
}

// serve is the seed's listen_to_me, line by line.  The listener closes
// the connection when it returns.
func (s *service) serve(co *eventer.Co, ae *eventer.AcoEvent) {
	idle := s.byeAfter(ae)
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
