// The seed's "Moving an event to aco", in Go: a classic accept callback
// takes each connection and hands it to a coroutine of its own, which
// then talks on it in a blocking style.
//
//	go run ./examples/go/move_event     # then: nc 127.0.0.1 7777
package main

import (
	"fmt"
	"log"
	"time"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer"
)

func myAcoProcess(co *eventer.Co) {
	classic := co.Arg().(*eventer.Event)
	// we are in an aco context now, so the event can be converted
	e, err := co.SetEventerAco(classic)
	if err != nil {
		classic.Close()
		return
	}
	defer e.Close()
	fmt.Fprintf(e.Conn(), "hello from a coroutine; say something\n")
	buf := make([]byte, 512)
	n, err := e.Read(buf, 30*time.Second)
	if err != nil {
		return
	}
	fmt.Fprintf(e.Conn(), "you said: %s", buf[:n])
}

func main() {
	if err := eventer.Init(); err != nil {
		log.Fatal(err)
	}
	ln, err := eventer.Listen("tcp", "127.0.0.1:7777")
	if err != nil {
		log.Fatal(err)
	}
	log.Println("listening on", ln.Addr())
	// a classic callback on the listening fd (ln keeps the socket)
	lfd := ln.Fd()
	acceptor, err := eventer.NewFdEvent(lfd, eventer.Read, func(e *eventer.Event, m eventer.Mask, now time.Time) eventer.Mask {
		for {
			fd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if err != nil {
				return eventer.Read // EAGAIN: wait for the next one
			}
			c, err := eventer.FdEvent(fd)
			if err != nil {
				unix.Close(fd)
				continue
			}
			if _, err := eventer.AcoStart(myAcoProcess, c); err != nil {
				c.Close()
			}
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := acceptor.Add(); err != nil {
		log.Fatal(err)
	}
	if err := eventer.Loop(); err != nil {
		log.Fatal(err)
	}
}
