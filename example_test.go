package eventer_test

import (
	"bufio"
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

	done := make(chan struct{})
	eventer.AcoStart(func(co *eventer.Co) {
		defer close(done)
		for i := 1; i <= 3; i++ {
			co.Sleep(10 * time.Millisecond)
			fmt.Println("waking up to do something:", co.Arg(), i)
		}
	}, "job")
	<-done
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
	eventer.AcoStart(func(co *eventer.Co) {
		lae := co.SetEventerAco(ln)
		defer func() { lae.Close(); lae.Free() }()
		for {
			c, err := lae.Accept(0)
			if err != nil {
				return // the loop is stopping
			}
			eventer.AcoStart(func(co *eventer.Co) {
				conn := co.SetEventerAco(c).Conn()
				defer conn.Close()
				io.Copy(conn, conn) // until the client closes
			}, nil)
		}
	}, nil)

	// a plain Go client
	c, err := net.Dial("tcp", ln.Addr().String())
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
