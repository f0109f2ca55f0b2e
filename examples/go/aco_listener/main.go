// The seed's "Making an aco listener", in Go: listen_to_me is registered
// as an aco function before the listeners start, and each connection the
// configuration's listener accepts runs it in a coroutine of its own, with
// the connection as an AcoEvent (all the event conversion is done for
// it).  Every line is answered "thanks!" (9 bytes: the seed writes the
// NUL too), "quit" gets "quitter!" and a close, 10 s without input gets
// "bye!" and a close.
//
// As libmtev's mtev_main does before child_main, it loads the
// configuration (aco_listener.conf here, or the file named on the command
// line) before the eventer starts, so its <eventer><config> sets the
// loops up and ListenerInit starts its /aco_listener/listeners.
//
//	go run ./examples/go/aco_listener [CONFIG]     runs until killed
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/acoeventer/eventer"
)

const appName = "aco_listener"

var confPath = "examples/go/aco_listener/aco_listener.conf"

// listenToMe is the seed's listen_to_me.
func listenToMe(co *eventer.Co, e *eventer.AcoEvent) {
	tensec := 10 * time.Second
	for {
		var buff [128]byte
		rv, err := e.Read(buff[:], tensec)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				e.Write([]byte("bye!\n"), 0)
			}
			break
		}
		if rv >= 4 && bytes.EqualFold(buff[:4], []byte("quit")) {
			e.Write([]byte("quitter!\n"), 0)
			break
		}
		if _, err := e.Write([]byte("thanks!\n\x00"), 0); err != nil {
			break
		}
	}
	e.Close()
	// returning ends the coroutine; the listener would have closed e too
}

func childMain() int {
	if err := eventer.LoadConfig(confPath); err != nil {
		fmt.Fprintln(os.Stderr, "aco_listener:", err)
		return 2
	}
	if err := eventer.Init(); err != nil {
		fmt.Fprintln(os.Stderr, "aco_listener:", err)
		return 1
	}
	if err := eventer.RegisterAcoFunction("listen_to_me", listenToMe); err != nil {
		fmt.Fprintln(os.Stderr, "aco_listener:", err)
		return 1
	}
	if err := eventer.ListenerInit(appName); err != nil {
		fmt.Fprintln(os.Stderr, "aco_listener:", err)
		eventer.Shutdown()
		return 2
	}
	if err := eventer.Loop(); err != nil {
		fmt.Fprintln(os.Stderr, "aco_listener:", err)
		return 1
	}
	return 0
}

func main() {
	if len(os.Args) > 1 {
		confPath = os.Args[1]
	}
	os.Exit(childMain())
}
