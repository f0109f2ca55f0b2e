package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/acoeventer/eventer"
)

// addHTTPRules routes acod's HTTP endpoints on the C engine (RestInit
// came first): GET /hello, the seed's REST example in Go, and GET
// /stats.json, the eventer's figures.  They are served by every
// http_rest_api listener of the configuration.
func addHTTPRules() error {
	hello, err := eventer.NewRule("GET", "/", "^hello$", helloHandler)
	if err != nil {
		return err
	}
	hello.SetAco(true) // a Go coroutine on the loop, as the seed's rule
	_, err = eventer.HandleHTTP("GET", "/", `^stats\.json$`, http.HandlerFunc(statsHandler))
	return err
}

// helloHandler is the seed's hello_handler: a 200 text/plain response is
// started, a job thread sleeps a second while the coroutine waits (the
// loop serves other requests meanwhile), then "Hello world.\n" ends it.
func helloHandler(rc *eventer.RestClosure) error {
	res := rc.Response()
	if err := res.Ok("text/plain"); err != nil {
		return err
	}
	if err := rc.Co().SimpleAsynch(func() { time.Sleep(time.Second) }); err != nil {
		return err
	}
	if _, err := res.WriteString("Hello world.\n"); err != nil {
		return err
	}
	return res.End()
}

// statsHandler answers the eventer's figures (eventer.ReadStats) as JSON.
// It is an ordinary net/http handler (HandleHTTP runs it in a goroutine),
// since ReadStats waits for every loop to answer.
func statsHandler(w http.ResponseWriter, r *http.Request) {
	s, err := eventer.ReadStats()
	if err != nil {
		slog.Error("acod: /stats.json", "err", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}
