// Command gopeer is the Go peer of bench/listener: the seed's aco listener
// protocol served the way a Go programmer writes it, a net.Listener with a
// goroutine and a bufio.Reader per connection.  Every read of up to 128
// bytes gets "thanks!\n\x00" (9 bytes, as the seed writes), "quit" gets
// "quitter!\n" and a close, -timeout of silence gets "bye!\n" and a close.
// It prints "port N" and serves until killed.  Standard library only.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func serve(c net.Conn, timeout time.Duration) {
	defer c.Close()
	r := bufio.NewReader(c)
	buf := make([]byte, 128)
	for {
		c.SetReadDeadline(time.Now().Add(timeout))
		n, err := r.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.Write([]byte("bye!\n"))
			}
			return
		}
		if n >= 4 && bytes.EqualFold(buf[:4], []byte("quit")) {
			c.Write([]byte("quitter!\n"))
			return
		}
		if _, err := c.Write([]byte("thanks!\n\x00")); err != nil {
			return
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	timeout := flag.Duration("timeout", time.Hour, "read timeout")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gopeer:", err)
		os.Exit(1)
	}
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "gopeer: accept:", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c, *timeout)
	}
}
