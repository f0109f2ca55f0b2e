// The seed's "Using aco with REST", in Go: GET /hello is served by a Go
// handler in a coroutine on the loop (an aco rule): it starts a 200
// text/plain response, waits while a job thread sleeps 1 s, appends
// "Hello world.\n" and ends the response; the loop serves everything else
// meanwhile (GET /fast answers at once).
//
// As the C example does, it loads the configuration (rest_hello.conf
// here, or the file named on the command line) before the eventer starts,
// names the listener types (RestInit) and starts the configuration's
// listeners (ListenerInit).
//
//	go run ./examples/go/rest_hello [CONFIG]     runs until killed
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/acoeventer/eventer"
)

const appName = "rest_hello"

var confPath = "examples/go/rest_hello/rest_hello.conf"

// helloHandler is the seed's hello_handler: the job (the seed's
// asynch_hello) sleeps on a job thread while the coroutine waits.
func helloHandler(rc *eventer.RestClosure) error {
	res := rc.Response()
	if err := res.Ok("text/plain"); err != nil {
		return err
	}
	if err := rc.Co().SimpleAsynch(func() { time.Sleep(time.Second) }); err != nil {
		return err
	}
	res.WriteString("Hello world.\n")
	return res.End()
}

func fastHandler(rc *eventer.RestClosure) error {
	res := rc.Response()
	res.Ok("text/plain")
	res.WriteString("fast\n")
	return res.End()
}

func childMain() int {
	if err := eventer.LoadConfig(confPath); err != nil {
		fmt.Fprintln(os.Stderr, "rest_hello:", err)
		return 2
	}
	if err := eventer.Init(); err != nil {
		fmt.Fprintln(os.Stderr, "rest_hello:", err)
		return 1
	}
	if err := eventer.RestInit(); err != nil {
		fmt.Fprintln(os.Stderr, "rest_hello:", err)
		return 2
	}
	rule, err := eventer.NewRule("GET", "/", "^hello$", helloHandler)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rest_hello:", err)
		return 1
	}
	rule.SetAco(true)
	if _, err := eventer.NewRule("GET", "/", "^fast$", fastHandler); err != nil {
		fmt.Fprintln(os.Stderr, "rest_hello:", err)
		return 1
	}
	if err := eventer.ListenerInit(appName); err != nil {
		fmt.Fprintln(os.Stderr, "rest_hello:", err)
		eventer.Shutdown()
		return 2
	}
	if err := eventer.Loop(); err != nil {
		fmt.Fprintln(os.Stderr, "rest_hello:", err)
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
