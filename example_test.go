package eventer_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/acoeventer/eventer"
)

// A coroutine sleeps in a blocking style while the loop runs everything
// else (the seed's "Starting a simple co-routine").
func ExampleAcoStart() {
	if err := eventer.Init(eventer.WithConcurrency(1)); err != nil {
		panic(err)
	}
	defer eventer.Shutdown()

	co, err := eventer.AcoStart(func(co *eventer.Co) {
		for i := 1; i <= 3; i++ {
			co.Sleep(10 * time.Millisecond)
			fmt.Println("waking up to do something:", co.Arg(), i)
		}
	}, "job")
	if err != nil {
		panic(err)
	}
	<-co.Done()
	// Output:
	// waking up to do something: job 1
	// waking up to do something: job 2
	// waking up to do something: job 3
}

// An echo server: a coroutine accepts, and each connection gets a
// coroutine of its own that talks through the net.Conn view.
func Example_echoServer() {
	if err := eventer.Init(eventer.WithConcurrency(2)); err != nil {
		panic(err)
	}
	defer eventer.Shutdown()

	ln, err := eventer.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := ln.Addr().String()
	eventer.AcoStart(func(co *eventer.Co) {
		lae, err := co.SetEventerAco(ln)
		if err != nil {
			panic(err)
		}
		defer lae.Close()
		for {
			c, err := lae.Accept(0)
			if err != nil {
				return // the loop is stopping
			}
			eventer.AcoStart(func(co *eventer.Co) {
				ae, err := co.SetEventerAco(c)
				if err != nil {
					c.Close()
					return
				}
				conn := ae.Conn()
				defer conn.Close()
				io.Copy(conn, conn) // until the client closes
			}, nil)
		}
	}, nil)

	// a plain Go client
	c, err := net.Dial("tcp", addr)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, msg := range []string{"hello", "eventer"} {
		fmt.Fprintln(c, msg)
		line, _ := r.ReadString('\n')
		fmt.Print("echo: ", line)
	}
	// Output:
	// echo: hello
	// echo: eventer
}

// A context.Context reaches a coroutine through Cancel: CancelOn cancels
// its pending call (here a long sleep) when the context is done.
func ExampleCo_CancelOn() {
	if err := eventer.Init(eventer.WithConcurrency(1)); err != nil {
		panic(err)
	}
	defer eventer.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	co, _ := eventer.AcoStart(func(co *eventer.Co) {
		stop := co.CancelOn(ctx)
		defer stop()
		err := co.Sleep(time.Hour)
		fmt.Println("canceled:", errors.Is(err, eventer.ErrCanceled))
	}, nil)
	<-co.Done()
	// Output:
	// canceled: true
}
