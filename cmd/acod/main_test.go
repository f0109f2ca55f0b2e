package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as acod: with ACOD_CHILD=1 it runs main() with
// the arguments after "--".
func TestMain(m *testing.M) {
	if os.Getenv("ACOD_CHILD") == "1" {
		if n, err := strconv.Atoi(os.Getenv("ACOD_NOFILE")); err == nil {
			lim := syscall.Rlimit{Cur: uint64(n), Max: uint64(n)}
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				panic(err)
			}
		}
		args := os.Args
		for i, a := range args {
			if a == "--" {
				os.Args = append([]string{"acod"}, args[i+1:]...)
				break
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type server struct {
	cmd  *exec.Cmd
	addr string
	out  *bufio.Reader
}

func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	return startServerWith(t, nil, os.Stderr, args...)
}

// startServerWith starts acod with extra environment and its stderr to
// stderr.
func startServerWith(t *testing.T, env []string, stderr io.Writer, args ...string) *server {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(append(os.Environ(), "ACOD_CHILD=1"), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := s.out.ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v", err)
	}
	const p = "acod: listening on "
	if !strings.HasPrefix(line, p) {
		t.Fatalf("unexpected first line %q", line)
	}
	s.addr = strings.TrimSpace(strings.TrimPrefix(line, p))
	return s
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func expectLine(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	got, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading %q: %v (got %q)", want, err, got)
	}
	if got != want+"\n" {
		t.Fatalf("got %q, want %q", got, want+"\n")
	}
}

func expectEOF(t *testing.T, r *bufio.Reader) {
	t.Helper()
	if b, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("want EOF, got %q, %v", b, err)
	}
}

func TestProtocol(t *testing.T) {
	s := startServer(t, "-addr", "127.0.0.1:0", "-idle", "300ms", "-loops", "2")

	t.Run("thanks per line, quitter", func(t *testing.T) {
		c, r := dial(t, s.addr)
		io.WriteString(c, "hello\nworld\n")
		expectLine(t, r, "thanks!")
		expectLine(t, r, "thanks!")
		io.WriteString(c, "more")
		io.WriteString(c, " of a line\n")
		expectLine(t, r, "thanks!")
		io.WriteString(c, "QuIt please\n")
		expectLine(t, r, "quitter!")
		expectEOF(t, r)
	})

	t.Run("idle says bye", func(t *testing.T) {
		_, r := dial(t, s.addr)
		start := time.Now()
		expectLine(t, r, "bye!")
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("bye after %v, before the 300ms idle time", d)
		}
		expectEOF(t, r)
	})

	t.Run("many clients at once", func(t *testing.T) {
		const n = 50
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			go func() {
				c, err := net.Dial("tcp", s.addr)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				for j := 0; j < 20; j++ {
					io.WriteString(c, "line\n")
					if l, err := r.ReadString('\n'); err != nil || l != "thanks!\n" {
						errs <- err
						return
					}
				}
				io.WriteString(c, "quit\n")
				if l, _ := r.ReadString('\n'); l != "quitter!\n" {
					errs <- io.ErrUnexpectedEOF
					return
				}
				errs <- nil
			}()
		}
		for i := 0; i < n; i++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("peer vanishes", func(t *testing.T) {
		c, r := dial(t, s.addr)
		io.WriteString(c, "x\n")
		expectLine(t, r, "thanks!")
		c.(*net.TCPConn).SetLinger(0)
		c.Close() // RST: the server's read fails, its coroutine ends
		c2, r2 := dial(t, s.addr)
		io.WriteString(c2, "still here\n")
		expectLine(t, r2, "thanks!")
	})
}

func TestStopsOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		s := startServer(t, "-addr", "127.0.0.1:0")
		c, r := dial(t, s.addr) // an open connection must not hold it up
		io.WriteString(c, "hi\n")
		expectLine(t, r, "thanks!")
		s.cmd.Process.Signal(sig)
		done := make(chan error, 1)
		var rest []byte
		go func() {
			rest, _ = io.ReadAll(s.out) // until the child exits
			done <- s.cmd.Wait()
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%v: exit: %v", sig, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v: still running", sig)
		}
		if !strings.Contains(string(rest), "acod: stopped") {
			t.Fatalf("%v: no stop line in %q", sig, rest)
		}
	}
}

func TestBadFlags(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "--", "-addr", "256.0.0.1:1")
	cmd.Env = append(os.Environ(), "ACOD_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("bad address accepted: %s", out)
	}
	if !strings.Contains(string(out), "acod:") || !strings.Contains(string(out), "Listen") {
		t.Fatalf("unclear error: %s", out)
	}
}

// lockedBuffer is an io.Writer safe for the child's stderr copier and the
// test reading it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Out of file descriptors: with RLIMIT_NOFILE at 64 and 150 clients at
// once, accept fails with EMFILE.  acod must log it, back off, and serve
// every client as the first ones leave, without dying or spinning; the
// warning comes at most once a second, with a count (it came every 10 ms).
func TestFdExhaustion(t *testing.T) {
	var stderr lockedBuffer
	s := startServerWith(t, []string{"ACOD_NOFILE=64"}, &stderr,
		"-addr", "127.0.0.1:0", "-loops", "2")
	started := time.Now()
	const n = 150
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			c, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			r := bufio.NewReader(c)
			io.WriteString(c, "hi\n")
			if l, err := r.ReadString('\n'); l != "thanks!\n" {
				errs <- fmt.Errorf("got %q, %v", l, err)
				return
			}
			io.WriteString(c, "quit\n")
			if l, err := r.ReadString('\n'); l != "quitter!\n" {
				errs <- fmt.Errorf("got %q, %v", l, err)
				return
			}
			errs <- nil
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("client: %v\nacod's stderr:\n%s", err, stderr.String())
		}
	}
	if !strings.Contains(stderr.String(), "too many open files") {
		t.Fatalf("acod never ran out of fds (the test proves nothing):\n%s", stderr.String())
	}
	warnings := strings.Count(stderr.String(), "too many open files")
	if limit := int(time.Since(started).Seconds()) + 2; warnings > limit {
		t.Fatalf("%d accept warnings in %v (at most one a second):\n%s",
			warnings, time.Since(started), stderr.String())
	}
	if !strings.Contains(stderr.String(), "times=") {
		t.Fatalf("the warning does not say how often:\n%s", stderr.String())
	}
	t.Logf("%d accept warnings", warnings)
	// still serving
	c, r := dial(t, s.addr)
	io.WriteString(c, "after\n")
	expectLine(t, r, "thanks!")
}
