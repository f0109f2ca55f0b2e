package eventer_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
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

// The seed's aco listener in code: each connection runs the function in
// a coroutine of its own; when it returns, the listener closes the
// connection.
func ExampleListenAco() {
	if err := eventer.Init(eventer.WithConcurrency(2)); err != nil {
		panic(err)
	}
	defer eventer.Shutdown()

	ln, err := eventer.ListenAco("tcp", "127.0.0.1:0", func(co *eventer.Co, ae *eventer.AcoEvent) {
		greeting, _ := ae.Acceptor().Config("greeting")
		var buf [128]byte
		for {
			n, err := ae.Read(buf[:], 10*time.Second)
			if err != nil {
				return // the listener closes the connection
			}
			fmt.Fprintf(ae.Conn(), "%s %s", greeting, buf[:n])
		}
	}, eventer.WithListenerConfig("greeting", "thanks for"), eventer.WithGrace(time.Second))
	if err != nil {
		panic(err)
	}
	defer ln.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	io.WriteString(c, "a line\n")
	reply, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Print(reply)
	// Output:
	// thanks for a line
}

// A configuration names the listeners and the aco functions they run
// (libmtev's format); its <eventer><config> sets the loops up at Init.
func ExampleListenerInit() {
	sock := filepath.Join(os.TempDir(), fmt.Sprintf("myapp-%d.sock", os.Getpid()))
	conf := `<myapp>
  <eventer><config><concurrency>2</concurrency></config></eventer>
  <listeners type="shout" backlog="64">
    <listener address="` + sock + `"/>
  </listeners>
</myapp>`
	if err := eventer.LoadConfigString(conf, "myapp.conf"); err != nil {
		panic(err)
	}
	if err := eventer.Init(); err != nil {
		panic(err)
	}
	defer eventer.Shutdown()
	eventer.RegisterAcoFunction("shout", func(co *eventer.Co, ae *eventer.AcoEvent) {
		var buf [128]byte
		n, _ := ae.Read(buf[:], time.Second)
		ae.Write(bytes.ToUpper(buf[:n]), time.Second)
	})
	if err := eventer.ListenerInit("myapp"); err != nil {
		fmt.Println(err) // file:line and what is wrong
		return
	}
	for _, l := range eventer.Listeners() {
		fmt.Println(l.Type(), l.Addr().String() == sock)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	io.WriteString(c, "hello\n")
	reply, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Print(reply)
	// Output:
	// shout true
	// HELLO
}
