// The seed's "Using aco with REST", in Go: GET /hello is served by a Go
// handler in a coroutine on the loop (an aco rule): it starts a 200
// text/plain response, waits while a job thread sleeps 1 s, appends
// "Hello world.\n" and ends the response; the loop serves everything else
// meanwhile (GET /fast answers at once).
//
//	go run -tags eventer_testhooks ./examples/go/rest_hello [-addr 127.0.0.1:8888]
//
// The HTTP listener comes from the binding's test hook (an http_rest_api
// listener on the address): the Go listener API (configuration files and
// mtev_listener_init) is not part of this module yet.
package main

import (
	"flag"
	"log"
	"net"
	"strconv"
	"time"

	"github.com/acoeventer/eventer"
	"github.com/acoeventer/eventer/cgo"
)

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

func main() {
	addr := flag.String("addr", "127.0.0.1:8888", "listen address")
	flag.Parse()
	if err := eventer.Init(eventer.WithConcurrency(2)); err != nil {
		log.Fatal(err)
	}
	if err := eventer.RestInit(); err != nil {
		log.Fatal(err)
	}
	rule, err := eventer.NewRule("GET", "/", "^hello$", helloHandler)
	if err != nil {
		log.Fatal(err)
	}
	rule.SetAco(true)
	if _, err := eventer.NewRule("GET", "/", "^fast$", fastHandler); err != nil {
		log.Fatal(err)
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		log.Fatal(err)
	}
	if _, _, err := cgo.TestListenOn("http_rest_api", host, p); err != nil {
		log.Fatal(err)
	}
	log.Fatal(eventer.Loop())
}
