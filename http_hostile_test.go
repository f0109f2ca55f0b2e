//go:build eventer_testhooks

package eventer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// hostileRules registers, under a base of its own, GET fast (a plain Go
// handler) and GET slow (100 ms, on a coroutine when aco): the base.
func hostileRules(t *testing.T, aco bool) string {
	b := restBase()
	mustRule(t)(HandleHTTP("GET", b, "^fast$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fast") })))
	r := mustRule(t)(HandleHTTP("GET", b, "^slow$", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(100 * time.Millisecond)
			io.WriteString(w, "slow")
		})))
	r.SetAco(aco)
	return b
}

// A client that pipelines requests, a slow Go handler among them, and
// half-closes its side (printf ... | nc -N) gets every answer, in order,
// read with Go's own HTTP response parser; then the server closes.
func TestHostileHalfClosePipeline(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	for _, aco := range []bool{false, true} {
		b := hostileRules(t, aco)
		for _, paths := range [][]string{
			{"fast", "fast", "fast"},
			{"fast", "slow", "fast"},
			{"slow", "fast"},
			{"slow", "slow", "fast"},
		} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(20 * time.Second))
			var req strings.Builder
			for _, p := range paths {
				fmt.Fprintf(&req, "GET %s%s HTTP/1.1\r\nHost: x\r\n\r\n", b, p)
			}
			io.WriteString(c, req.String())
			c.(*net.TCPConn).CloseWrite()
			br := bufio.NewReader(c)
			for i, p := range paths {
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("aco %v %v: response %d (%s): %v", aco, paths, i+1, p, err)
				}
				body, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil || res.StatusCode != 200 || string(body) != p {
					t.Fatalf("aco %v %v: response %d: %d %q %v, want 200 %q", aco, paths, i+1,
						res.StatusCode, body, err, p)
				}
			}
			if n, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("aco %v %v: after the responses: %v %v, want EOF", aco, paths, n, err)
			}
			c.Close()
		}
	}
}

// Clients that reset their connections while their pipelined batches are
// held (a slow handler in the middle): every session and Go request goes
// away (restServer's clean-up checks), and the server still answers.
func TestHostileResetWhileHeld(t *testing.T) {
	url := restServer(t, 1)
	addr := strings.TrimPrefix(url, "http://")
	for _, aco := range []bool{false, true} {
		b := hostileRules(t, aco)
		var conns []net.Conn
		for i := 0; i < 50; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET %[1]sfast HTTP/1.1\r\nHost: x\r\n\r\nGET %[1]sslow HTTP/1.1\r\nHost: x\r\n\r\nGET %[1]sfast HTTP/1.1\r\nHost: x\r\n\r\n", b)
			conns = append(conns, c)
		}
		time.Sleep(20 * time.Millisecond)
		for _, c := range conns {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
		if code, _, body := get(t, url+b+"fast"); code != 200 || body != "fast" {
			t.Fatalf("after the resets: %d %q", code, body)
		}
	}
}
