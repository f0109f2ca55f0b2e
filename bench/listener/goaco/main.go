// Command goaco is the Go aco function side of bench/listener: the seed's
// aco listener protocol served by a Go function on the C listener
// (eventer.ListenAco: the C accept thread and acceptor closures, a Go
// coroutine per connection on one loop).  Every read of up to 128 bytes
// gets "thanks!\n\x00" (9 bytes, as the seed writes), "quit" gets
// "quitter!\n" and a close, -timeout of silence gets "bye!\n" and a
// close.  It prints "port N" and serves until killed.
//
//	-accept loop   accept on the loop instead of in a thread
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/acoeventer/eventer"
)

var timeout time.Duration

// listenToMe is the seed's listen_to_me, in Go.
func listenToMe(co *eventer.Co, ae *eventer.AcoEvent) {
	var buf [128]byte
	for {
		n, err := ae.Read(buf[:], timeout)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				ae.Write([]byte("bye!\n"), 0)
			}
			return
		}
		if n >= 4 && bytes.EqualFold(buf[:4], []byte("quit")) {
			ae.Write([]byte("quitter!\n"), 0)
			return
		}
		if _, err := ae.Write([]byte("thanks!\n\x00"), 0); err != nil {
			return
		}
	}
}

func main() {
	flag.DurationVar(&timeout, "timeout", time.Hour, "read timeout")
	accept := flag.String("accept", "thread", "thread or loop")
	flag.Parse()
	if err := eventer.Init(eventer.WithConcurrency(1)); err != nil {
		fmt.Fprintln(os.Stderr, "goaco:", err)
		os.Exit(1)
	}
	ln, err := eventer.ListenAco("tcp", "127.0.0.1:0", listenToMe,
		eventer.WithBacklog(4096), eventer.WithAcceptThread(*accept != "loop"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "goaco:", err)
		os.Exit(1)
	}
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	eventer.Loop()
}
