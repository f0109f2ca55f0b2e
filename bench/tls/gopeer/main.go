// Command gopeer is the peer of bench/tls's comparison: Go's crypto/tls
// server (standard library only), a goroutine per connection, serving
// goclient's protocol exactly as goaco does.  TLS 1.3, the same
// certificate and key.  It prints "port N" and serves until killed.
//
//	gopeer CERT KEY
package main

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
)

const mib = 1 << 20

var payload = make([]byte, mib)

func serve(c net.Conn) {
	defer c.Close()
	var b [64 << 10]byte
	if _, err := io.ReadFull(c, b[:1]); err != nil {
		return
	}
	switch b[0] {
	case 'e':
		if _, err := c.Write(b[:1]); err != nil {
			return
		}
		c.Read(b[:])
	case 'u':
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
	case 'd':
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
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gopeer CERT KEY")
		os.Exit(2)
	}
	cert, err := tls.LoadX509KeyPair(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "gopeer:", err)
		os.Exit(1)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert},
		MinVersion: tls.VersionTLS13})
	if err != nil {
		fmt.Fprintln(os.Stderr, "gopeer:", err)
		os.Exit(1)
	}
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "gopeer:", err)
			os.Exit(1)
		}
		go serve(c)
	}
}
