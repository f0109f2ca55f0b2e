// Command goaco is our side of bench/tls's comparison with Go's
// crypto/tls: a Go aco function on a TLS listener (eventer.ListenAco with
// eventer.WithTLS: the C listener accepts on its one loop, OpenSSL does
// the handshake there, then a Go coroutine per connection reads and
// writes plaintext through the TLS opset).  The protocol is goclient's
// (see there).  It prints "port N" and serves until killed.
//
//	goaco [-accept loop|thread] CERT KEY
//
// SPIN_US=n in the environment sets the loop's spin_us (<eventer><config>;
// default 50: a loop spins up to 50 us for work before it sleeps).
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/acoeventer/eventer"
)

const mib = 1 << 20

var payload = make([]byte, mib)

func serve(co *eventer.Co, ae *eventer.AcoEvent) {
	c := ae.Conn()
	var b [64 << 10]byte
	if _, err := io.ReadFull(c, b[:1]); err != nil {
		return
	}
	switch b[0] {
	case 'e': // one byte back, then wait for the client's close
		if _, err := c.Write(b[:1]); err != nil {
			return
		}
		c.Read(b[:])
	case 'u': // 1 MiB messages in, one byte of ack for each
		got := 0
		for {
			n, err := c.Read(b[:])
			if err != nil {
				return
			}
			for got += n; got >= mib; got -= mib {
				if _, err := c.Write(b[:1]); err != nil {
					return
				}
			}
		}
	case 'd': // N 1 MiB messages out, each one Write
		if _, err := io.ReadFull(c, b[:4]); err != nil {
			return
		}
		for n := binary.BigEndian.Uint32(b[:4]); n > 0; n-- {
			if _, err := c.Write(payload); err != nil {
				return
			}
		}
		c.Read(b[:])
	}
}

func main() {
	accept := flag.String("accept", "loop", "loop or thread")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: goaco CERT KEY")
		os.Exit(2)
	}
	if v := os.Getenv("SPIN_US"); v != "" {
		if err := eventer.LoadConfigString("<b><eventer><config><spin_us>"+v+"</spin_us></config></eventer></b>", "spin"); err != nil {
			fmt.Fprintln(os.Stderr, "goaco:", err)
			os.Exit(1)
		}
	}
	if err := eventer.Init(eventer.WithConcurrency(1)); err != nil {
		fmt.Fprintln(os.Stderr, "goaco:", err)
		os.Exit(1)
	}
	ln, err := eventer.ListenAco("tcp", "127.0.0.1:0", serve,
		eventer.WithTLS(eventer.TLSConfig{CertificateFile: flag.Arg(0), KeyFile: flag.Arg(1), Layer: "tlsv1.3"}),
		eventer.WithBacklog(4096), eventer.WithAcceptThread(*accept != "loop"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "goaco:", err)
		os.Exit(1)
	}
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	if err := eventer.Loop(); err != nil {
		fmt.Fprintln(os.Stderr, "goaco:", err)
		os.Exit(1)
	}
}
