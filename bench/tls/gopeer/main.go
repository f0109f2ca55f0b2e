// Command gopeer is the peer of bench/tls's comparison: Go's crypto/tls
// server (standard library only), a goroutine per connection, serving
// goclient's protocol exactly as goaco does.  TLS 1.3, the same
// certificate and key.  It prints "port N" and serves until killed.
//
//	gopeer CERT KEY          goclient's protocol
//	gopeer -https CERT KEY   net/http over TLS: GET /hello answers
//	                         "Hello world.\n" (text/plain), as the REST
//	                         engine's hello does
package main

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
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
	args := os.Args[1:]
	https := len(args) > 0 && args[0] == "-https"
	if https {
		args = args[1:]
	}
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gopeer [-https] CERT KEY")
		os.Exit(2)
	}
	if https {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "gopeer:", err)
			os.Exit(1)
		}
		fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
		mux := http.NewServeMux()
		mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "Hello world.\n")
		})
		srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13}}
		fmt.Fprintln(os.Stderr, "gopeer:", srv.ServeTLS(ln, args[0], args[1]))
		os.Exit(1)
	}
	cert, err := tls.LoadX509KeyPair(args[0], args[1])
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
