//go:build eventer_testhooks

package eventer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer/cgo"
)

// A conformance scenario (testdata/conformance/README.md).
type scenario struct {
	name   string
	steps  []cgo.ConformanceStep
	lines  []string // each step as written, for the trace
	expect []string
}

func loadScenarios(t *testing.T) []scenario {
	t.Helper()
	files, err := filepath.Glob("testdata/conformance/*.scn")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	var out []scenario
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := scenario{name: strings.TrimSuffix(filepath.Base(f), ".scn")}
		sn := bufio.NewScanner(strings.NewReader(string(data)))
		for ln := 1; sn.Scan(); ln++ {
			line := strings.TrimSpace(sn.Text())
			if i := strings.Index(line, "#"); i >= 0 {
				line = strings.TrimSpace(line[:i])
			}
			if line == "" {
				continue
			}
			step, want, _ := strings.Cut(line, "=>")
			step, want = strings.TrimSpace(step), strings.TrimSpace(want)
			if want == "" {
				want = "ok"
			}
			fields := strings.Fields(step)
			cmd, ok := cgo.ConformanceCommands[fields[0]]
			if !ok {
				t.Fatalf("%s:%d: unknown command %q", f, ln, fields[0])
			}
			s := cgo.ConformanceStep{Cmd: cmd, TimeoutMs: -1}
			for _, a := range fields[1:] {
				switch {
				case strings.HasPrefix(a, "timeout="):
					s.TimeoutMs, err = strconv.Atoi(strings.TrimPrefix(a, "timeout="))
				case fields[0] == "read" || fields[0] == "sleep" || fields[0] == "asynch":
					s.N, err = strconv.Atoi(a)
				default:
					s.Text = a
				}
				if err != nil {
					t.Fatalf("%s:%d: %v", f, ln, err)
				}
			}
			sc.steps = append(sc.steps, s)
			sc.lines = append(sc.lines, step)
			sc.expect = append(sc.expect, step+" => "+want)
		}
		out = append(out, sc)
	}
	return out
}

// goResult names a Go result the way the C driver does.
func goResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, io.EOF):
		return "eof"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "ETIMEDOUT"
	case errors.Is(err, net.ErrClosed), errors.Is(err, ErrClosed):
		return "EBADF" // a second Close is ErrClosed in Go
	case errors.Is(err, ErrCanceled):
		return "ECANCELED"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return cgo.ErrnoName(int(en))
	}
	return "error: " + err.Error()
}

// runGo is the Go driver: the same steps with the Go API.
func runGo(co *Co, steps []cgo.ConformanceStep) []string {
	var ae *AcoEvent
	peer := -1
	cmds := map[int]string{}
	for k, v := range cgo.ConformanceCommands {
		cmds[v] = k
	}
	out := make([]string, len(steps))
	for i, s := range steps {
		tmo := time.Duration(0)
		if s.TimeoutMs >= 0 {
			tmo = time.Duration(s.TimeoutMs) * time.Millisecond
			if tmo == 0 {
				tmo = -1 // expired at once
			}
		}
		switch cmds[s.Cmd] {
		case "pair":
			fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			ev, _ := FdEvent(fds[0])
			var err error
			ae, err = co.SetEventerAco(ev)
			peer = fds[1]
			out[i] = goResult(err)
		case "tcp":
			l, _ := net.Listen("tcp", "127.0.0.1:0")
			var err error
			ae, err = co.Connect("tcp", l.Addr().String(), 0)
			if err == nil {
				c, _ := l.(*net.TCPListener).AcceptTCP()
				f, _ := c.File() // a dup, in blocking mode: make it non-blocking
				c.Close()
				peer = int(f.Fd())
				unix.SetNonblock(peer, true)
				peer, _ = unix.Dup(peer)
				f.Close()
			}
			l.Close()
			out[i] = goResult(err)
		case "write":
			n, err := ae.Write([]byte(s.Text), tmo)
			if err != nil {
				out[i] = goResult(err)
			} else {
				out[i] = fmt.Sprintf("n=%d", n)
			}
		case "read":
			buf := make([]byte, min(s.N, 63))
			n, err := ae.Read(buf, tmo)
			if err != nil {
				out[i] = goResult(err)
			} else {
				out[i] = "data=" + string(buf[:n])
			}
		case "peer_write":
			_, err := unix.Write(peer, []byte(s.Text))
			out[i] = goResult(err)
		case "peer_close":
			unix.Close(peer)
			peer, out[i] = -1, "ok"
		case "peer_reset":
			unix.SetsockoptLinger(peer, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			unix.Close(peer)
			peer, out[i] = -1, "ok"
		case "sleep":
			out[i] = goResult(co.Sleep(time.Duration(s.N) * time.Millisecond))
		case "yield":
			out[i] = goResult(co.Yield())
		case "asynch":
			ms := s.N
			out[i] = goResult(co.SimpleAsynch(func() { time.Sleep(time.Duration(ms) * time.Millisecond) }))
		case "cancel":
			out[i] = goResult(co.Cancel())
		case "close":
			out[i] = goResult(ae.Close())
		case "connect_refused":
			l, _ := net.Listen("tcp", "127.0.0.1:0")
			addr := l.Addr().String()
			l.Close()
			c, err := co.Connect("tcp", addr, tmo)
			if c != nil {
				c.Close()
			}
			out[i] = goResult(err)
		case "accept":
			ln, _ := Listen("tcp", "127.0.0.1:0")
			lae, err := co.SetEventerAco(ln)
			if err == nil {
				var c *Event
				c, err = lae.Accept(tmo)
				if c != nil {
					c.Close()
				}
				lae.Close()
			}
			out[i] = goResult(err)
		default:
			out[i] = "unknown step"
		}
	}
	if ae != nil {
		ae.Close()
	}
	if peer >= 0 {
		unix.Close(peer)
	}
	return out
}

// Every scenario gives the same trace in a C coroutine and in a Go
// coroutine, and that trace is the expected one.
func TestConformance(t *testing.T) {
	setup(t, 1)
	for _, sc := range loadScenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			trace := func(results []string) []string {
				out := make([]string, len(results))
				for i, r := range results {
					out[i] = sc.lines[i] + " => " + r
				}
				return out
			}
			var cRun *cgo.ConformanceRun
			var goTrace []string
			if err := inCo(t, 0, func(co *Co) error {
				cRun = cgo.StartConformance(sc.steps) // a C coroutine of this loop
				goTrace = trace(runGo(co, sc.steps))
				for !cRun.Done() {
					co.Sleep(time.Millisecond)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			cTrace := trace(cRun.Results())
			if d := cmp.Diff(cTrace, goTrace); d != "" {
				t.Errorf("C and Go traces differ (-C +Go):\n%s", d)
			}
			if d := cmp.Diff(sc.expect, cTrace); d != "" {
				t.Errorf("C trace differs from the expected one (-want +got):\n%s", d)
			}
		})
	}
}
