// Command idleconns opens N keep-alive HTTP connections to a server, makes
// one request on each, checks the answer, and holds them all open until
// stdin closes: bench/http/run.sh reads the server's RSS before and after
// to get the memory cost of an idle keep-alive connection.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server address")
	n := flag.Int("n", 10000, "connections")
	path := flag.String("path", "/hello", "request path")
	flag.Parse()
	conns := make([]net.Conn, *n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 200)
	errs := make(chan error, *n)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.Dial("tcp", *addr)
			if err != nil {
				errs <- err
				return
			}
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", *path)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
				return
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		log.Fatal(err)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}
