// Command goclient drives bench/tls's comparison of goaco (our TLS
// listener) with gopeer (Go's crypto/tls): Go's crypto/tls client,
// standard library only, the same for both servers.  Each connection's
// first byte picks what the server does:
//
//	'e'  one byte back (the handshake figures: a connection is a
//	     handshake, a 1-byte exchange, and the close)
//	'u'  the client sends 1 MiB messages; the server acks each with a byte
//	'd'  the client asks for N 1 MiB messages (4 bytes, big-endian)
//
//	goclient MODE ADDR N CONC SERVER_PID
//
// MODE: full (N connections, full handshakes, CONC at a time), resumed
// (the same, each resuming a session: TLS 1.3 tickets), up / down (N MiB
// over one connection).  The client offers X25519 only (OpenSSL 3.0 has
// no ML-KEM hybrid; Go's server would pick it otherwise) and does not
// verify the certificate (the servers' work is the same either way).  It
// prints "rate R" (per second: handshakes, or MiB), "cpu_us C" (the
// server's CPU time per handshake or per MiB, all its threads, from
// /proc/PID/task/*/schedstat), "params V C G" (the TLS version, cipher
// suite and key exchange group that the server chose, from the last
// connection) and, for resumed, "resumed_frac F".
package main

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const mib = 1 << 20

func die(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "goclient: "+f+"\n", a...)
	os.Exit(1)
}

// serverCPU is the server's CPU time so far (ns), over all its threads.
func serverCPU(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	if sum == 0 {
		die("no CPU time for pid %d", pid)
	}
	return sum
}

func config() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519}}
}

// exchange is one 'e' connection: handshake, a byte each way, close.
func exchange(addr string, cfg *tls.Config) tls.ConnectionState {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		die("dial: %v", err)
	}
	defer c.Close()
	var b [1]byte
	if _, err := c.Write([]byte{'e'}); err != nil {
		die("write: %v", err)
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		die("read: %v", err)
	}
	return c.ConnectionState()
}

// params is what the server chose: "TLSv1.3 TLS_AES_128_GCM_SHA256 X25519"
// (the version spelt as openssl s_client does).
func params(cs tls.ConnectionState) string {
	return strings.ReplaceAll(tls.VersionName(cs.Version), " ", "v") + " " +
		tls.CipherSuiteName(cs.CipherSuite) + " " + cs.CurveID.String()
}

func main() {
	if len(os.Args) != 6 {
		die("usage: goclient MODE ADDR N CONC SERVER_PID")
	}
	mode, addr := os.Args[1], os.Args[2]
	n, _ := strconv.Atoi(os.Args[3])
	conc, _ := strconv.Atoi(os.Args[4])
	pid, _ := strconv.Atoi(os.Args[5])
	if n <= 0 || conc <= 0 || pid <= 0 {
		die("bad arguments")
	}
	switch mode {
	case "full", "resumed":
		cfgs := make([]*tls.Config, conc)
		for i := range cfgs {
			cfgs[i] = config()
			if mode == "resumed" {
				cfgs[i].ClientSessionCache = tls.NewLRUClientSessionCache(4)
				exchange(addr, cfgs[i]) // a session to resume
			}
		}
		var next, resumed atomic.Int64
		var last atomic.Value
		var wg sync.WaitGroup
		cpu0, t0 := serverCPU(pid), time.Now()
		for i := 0; i < conc; i++ {
			wg.Add(1)
			go func(cfg *tls.Config) {
				defer wg.Done()
				for next.Add(1) <= int64(n) {
					cs := exchange(addr, cfg)
					if cs.DidResume {
						resumed.Add(1)
					}
					last.Store(params(cs))
				}
			}(cfgs[i])
		}
		wg.Wait()
		secs, cpu := time.Since(t0).Seconds(), serverCPU(pid)-cpu0
		fmt.Printf("rate %.1f\ncpu_us %.2f\nparams %s\n", float64(n)/secs, float64(cpu)/1e3/float64(n),
			last.Load())
		if mode == "resumed" {
			fmt.Printf("resumed_frac %.3f\n", float64(resumed.Load())/float64(n))
		}
	case "up", "down":
		c, err := tls.Dial("tcp", addr, config())
		if err != nil {
			die("dial: %v", err)
		}
		defer c.Close()
		msg := make([]byte, mib)
		var cpu0 int64
		var t0 time.Time
		if mode == "up" {
			c.Write([]byte{'u'})
			done := make(chan error, 1)
			cpu0, t0 = serverCPU(pid), time.Now()
			go func() {
				_, err := io.ReadFull(c, make([]byte, n)) // the acks
				done <- err
			}()
			for i := 0; i < n; i++ {
				if _, err := c.Write(msg); err != nil {
					die("write: %v", err)
				}
			}
			if err := <-done; err != nil {
				die("acks: %v", err)
			}
		} else {
			req := []byte{'d', 0, 0, 0, 0}
			binary.BigEndian.PutUint32(req[1:], uint32(n))
			cpu0, t0 = serverCPU(pid), time.Now()
			c.Write(req)
			buf := make([]byte, 256<<10)
			for left := n * mib; left > 0; {
				k, err := c.Read(buf[:min(left, len(buf))])
				if err != nil {
					die("read: %v", err)
				}
				left -= k
			}
		}
		secs, cpu := time.Since(t0).Seconds(), serverCPU(pid)-cpu0
		fmt.Printf("rate %.1f\ncpu_us %.2f\nparams %s\n", float64(n)/secs, float64(cpu)/1e3/float64(n),
			params(c.ConnectionState()))
	default:
		die("unknown mode %q", mode)
	}
}
