// Command goserver serves the "hello" benchmark from Go handlers on the
// eventer's C HTTP engine, for bench/http/run.sh:
//
//	goserver -mode aco|http -addr 127.0.0.1:8080
//
// aco: a NewRule rule with SetAco(true), the seed's hello handler (without
// its one-second job) as a Go coroutine on the loop; http: an ordinary
// net/http handler through HandleHTTP, run in a worker goroutine.  Both
// take the direct path (a GET has no body).
// One loop (the server is pinned to one CPU), an http_rest_api listener
// from a configuration that accepts on the loop, as crule's does.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"

	"github.com/acoeventer/eventer"
)

const body = "Hello world.\n"

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
	switch *mode {
	case "aco":
		r, err := eventer.NewRule("GET", "/", "^hello$", func(rc *eventer.RestClosure) error {
			res := rc.Response()
			res.Ok("text/plain")
			res.WriteString(body)
			return res.End()
		})
		if err != nil {
			log.Fatal(err)
		}
		r.SetAco(true)
	case "http":
		if _, err := eventer.HandleHTTP("GET", "/", "^hello$", http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Write([]byte(body))
			})); err != nil {
			log.Fatal(err)
		}
	default:
		log.Fatalf("mode %q: aco or http", *mode)
	}
	if err := eventer.ListenerInit("goserver"); err != nil {
		log.Fatal(err)
	}
	log.Fatal(eventer.Loop())
}
