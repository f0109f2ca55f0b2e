//go:build eventer_testhooks

package eventer

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A Go handler that fails after it flushed part of its response (the 200
// head and a chunk are on the wire) breaks the connection, as net/http
// does: no final chunk, so a client knows the body is incomplete (Go's
// client: a read error; a raw reader: EOF without "0\r\n\r\n"), a
// request pipelined behind it is dropped, the failure is logged, and the
// loop goes on.  It was a well-formed 200 with a truncated body.  For
// NewRule and HandleHTTP rules, aco and goroutine, each failure (panic,
// an error returned, runtime.Goexit), on the direct path (the rule's
// first request) and on the relay (later ones: the first Flush moves the
// rule).
func TestRestFailAfterFlushBreaks(t *testing.T) {
	var lg logged
	url := restServer(t, 1, WithLogger(slog.New(slog.NewTextHandler(&lg, nil))),
		errorsTo(make(chan error, 64)))
	addr := strings.TrimPrefix(url, "http://")
	b := restBase()
	const part = "part one\n"
	fail := func(how string) {
		switch how {
		case "panic":
			panic("boom after flush")
		case "goexit":
			runtime.Goexit()
		}
	}
	type rule struct {
		name, how string
	}
	var rules []rule
	for _, aco := range []bool{false, true} {
		for _, how := range []string{"panic", "error", "goexit"} {
			how := how
			name := fmt.Sprintf("rest/%s/%v", how, aco)
			mustRule(t)(NewRule("GET", b, "^"+name+"$", func(rc *RestClosure) error {
				res := rc.Response()
				if err := res.Ok("text/plain"); err != nil {
					return err
				}
				res.WriteString(part)
				if err := res.Flush(); err != nil {
					return err
				}
				res.WriteString("never sent\n")
				fail(how)
				return errors.New("no luck after flush")
			})).SetAco(aco)
			rules = append(rules, rule{name, how})
			if how == "error" {
				continue // (an http.Handler returns no error)
			}
			name = fmt.Sprintf("http/%s/%v", how, aco)
			mustRule(t)(HandleHTTP("GET", b, "^"+name+"$", http.HandlerFunc(
				func(w http.ResponseWriter, r *http.Request) {
					io.WriteString(w, part)
					w.(http.Flusher).Flush()
					io.WriteString(w, "never sent\n")
					fail(how)
				}))).SetAco(aco)
			rules = append(rules, rule{name, how})
		}
	}
	mustRule(t)(NewRule("GET", b, "^ok$", hello))
	mustRule(t)(NewRule("GET", b, "^okco$", hello)).SetAco(true)

	// Go's client: the head is a 200, the body read fails after the part
	goClient := func(r rule) {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(url + b + r.name)
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != part || err == nil {
			t.Errorf("%s: %d %q, body error %v; want 200 %q and a read error", r.name,
				resp.StatusCode, body, err, part)
		}
	}
	// a raw client, with a request pipelined behind: what it reads up to
	// the connection's end is the 200 head and the part, no final chunk,
	// nothing for the second request
	raw := func(r rule) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET %s%s HTTP/1.1\r\nHost: x\r\n\r\nGET %sok HTTP/1.1\r\nHost: x\r\n\r\n",
			b, r.name, b)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("%s: raw read to EOF: %v (read %q)", r.name, err, got)
		}
		s := string(got)
		if !strings.HasPrefix(s, "HTTP/1.1 200 ") || !strings.Contains(s, "Transfer-Encoding: chunked\r\n") ||
			!strings.HasSuffix(s, "\r\n\r\n9\r\n"+part+"\r\n") || strings.Count(s, "HTTP/1.1") != 1 {
			t.Errorf("%s: raw: %q; want the 200 head and one chunk %q, then EOF", r.name, s, part)
		}
	}
	ok := func(path string) {
		t.Helper()
		if st, _, body := get(t, url+b+path); st != 200 || !strings.HasPrefix(body, "hello") {
			t.Fatalf("%s after the failures: %d %q", path, st, body)
		}
	}
	// warm up the pools (worker coroutines, records), then count
	ok("ok")
	ok("okco")
	http.DefaultClient.CloseIdleConnections()
	before := settledStats(t, nil)
	fds := openFds(t)

	for _, r := range rules {
		goClient(r) // the direct path (the rule's first request)
		raw(r)      // the relay (the first Flush moved the rule)
		goClient(r)
		ok("ok")
		ok("okco")
	}
	http.DefaultClient.CloseIdleConnections()
	settledStats(t, &before)
	waitFds(t, "the connections to close", fds)

	for _, want := range []string{"boom after flush", "no luck after flush", "Goexit",
		"REST handler failed"} {
		if !strings.Contains(lg.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, lg.String())
		}
	}
	if n := strings.Count(lg.String(), "REST handler failed"); n < 3*len(rules) {
		t.Errorf("%d failures logged, want %d", n, 3*len(rules))
	}
}

// settledStats waits (20 s) until no HTTP session or connection is open
// and, with a baseline, until the live C events and coroutines (C and Go)
// are back to it at most; the figures.
func settledStats(t *testing.T, base *Stats) Stats {
	t.Helper()
	var s Stats
	var why string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if s, err = ReadStats(); err != nil {
			t.Fatal(err)
		}
		var c, g int64
		for _, l := range s.Loops {
			c += l.CCoroutines
			g += l.GoCoroutines
		}
		why = ""
		switch {
		case s.Connections.HTTPSessions != 0 || s.Connections.Active != 0:
			why = fmt.Sprintf("%d sessions, %d connections", s.Connections.HTTPSessions,
				s.Connections.Active)
		case base != nil && s.Events > base.Events:
			why = fmt.Sprintf("%d events, %d before", s.Events, base.Events)
		case base != nil && c > cos(base, true):
			why = fmt.Sprintf("%d C coroutines, %d before", c, cos(base, true))
		case base != nil && g > cos(base, false):
			why = fmt.Sprintf("%d Go coroutines, %d before", g, cos(base, false))
		}
		if why == "" {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("still live: %s", why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func cos(s *Stats, c bool) int64 {
	var n int64
	for _, l := range s.Loops {
		if c {
			n += l.CCoroutines
		} else {
			n += l.GoCoroutines
		}
	}
	return n
}
