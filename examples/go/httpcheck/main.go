// httpcheck checks the seed's REST example with Go's net/http client: a
// GET of the slow URL (the seed's hello handler) answers 200, text/plain,
// "Hello world.\n" after at least 1 s, while GETs of the fast URL, made
// while the slow one waits, are each answered in less than 500 ms.  Used
// by examples/c/rest_hello.check and examples/go/rest_hello/check.sh.
//
//	httpcheck http://127.0.0.1:8888/hello http://127.0.0.1:8888/fast
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

type result struct {
	status int
	ctype  string
	body   string
	took   time.Duration
	err    error
}

func fetch(c *http.Client, url string) result {
	t0 := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header.Get("Content-Type"), string(b), time.Since(t0), err}
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: httpcheck SLOW_URL FAST_URL")
		os.Exit(2)
	}
	slowURL, fastURL := os.Args[1], os.Args[2]
	c := &http.Client{Timeout: 20 * time.Second}
	// connections first, so the timings below are the server's
	if r := fetch(c, fastURL); r.err != nil || r.status != 200 {
		fmt.Fprintf(os.Stderr, "httpcheck: %s: %v %d\n", fastURL, r.err, r.status)
		os.Exit(1)
	}
	slow := make(chan result, 1)
	go func() { slow <- fetch(&http.Client{Timeout: 20 * time.Second}, slowURL) }()
	time.Sleep(100 * time.Millisecond)
	var worst time.Duration
	for i := 0; i < 5; i++ {
		r := fetch(c, fastURL)
		if r.err != nil || r.status != 200 {
			fmt.Fprintf(os.Stderr, "httpcheck: %s while the slow one waits: %v %d\n", fastURL, r.err, r.status)
			os.Exit(1)
		}
		worst = max(worst, r.took)
	}
	var s result
	select {
	case s = <-slow:
		fmt.Fprintf(os.Stderr, "httpcheck: %s answered before the fast requests were done (%v)\n", slowURL, s.took)
		os.Exit(1)
	default:
		s = <-slow
	}
	fail := false
	if s.err != nil || s.status != 200 || s.ctype != "text/plain" || s.body != "Hello world.\n" {
		fmt.Fprintf(os.Stderr, "httpcheck: %s: %v %d %q %q\n", slowURL, s.err, s.status, s.ctype, s.body)
		fail = true
	}
	if s.took < time.Second {
		fmt.Fprintf(os.Stderr, "httpcheck: %s answered after %v, before 1 s\n", slowURL, s.took)
		fail = true
	}
	if worst >= 500*time.Millisecond { // well within the slow one's second
		fmt.Fprintf(os.Stderr, "httpcheck: %s took %v while the slow one waited\n", fastURL, worst)
		fail = true
	}
	if fail {
		os.Exit(1)
	}
	fmt.Printf("net/http: hello 200 text/plain after %v; fast requests meanwhile within %v\n",
		s.took.Round(time.Millisecond), worst.Round(100*time.Microsecond))
}
