// Command goserver serves the "hello" benchmark from Go handlers on the
// eventer's C HTTP engine, for bench/http/run.sh:
//
//	goserver -mode aco|http -addr 127.0.0.1:8080
//
// aco or http: the rule of bench/hello (a Go coroutine on the loop, or a
// net/http handler through HandleHTTP).  Both take the direct path (a GET
// has no body).
// One loop (the server is pinned to one CPU), an http_rest_api listener
// from a configuration that accepts on the loop, as crule's does.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"strconv"

	"github.com/acoeventer/eventer"
	"github.com/acoeventer/eventer/bench/hello"
)

func main() {
	mode := flag.String("mode", "aco", "aco or http")
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		log.Fatalf("-addr %s: %v", *addr, err)
	}
	conf := fmt.Sprintf(`<goserver><listeners>
  <listener type="http_rest_api" address="%s" port="%s" backlog="4096" accept_thread="off"/>
</listeners></goserver>`, host, port)
	if err := eventer.LoadConfigString(conf, "goserver.conf"); err != nil {
		log.Fatal(err)
	}
	if err := eventer.Init(eventer.WithConcurrency(1)); err != nil {
		log.Fatal(err)
	}
	if err := eventer.RestInit(); err != nil {
		log.Fatal(err)
	}
	if err := hello.Register(*mode); err != nil {
		log.Fatal(err)
	}
	if err := eventer.ListenerInit("goserver"); err != nil {
		log.Fatal(err)
	}
	log.Fatal(eventer.Loop())
}
