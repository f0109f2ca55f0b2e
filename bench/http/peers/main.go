// Command peers serves the "hello" benchmark response from the HTTP servers
// a Go user would otherwise pick, so bench/http/run.sh can measure them next
// to the eventer's own HTTP engine in one run:
//
//	peers -server nethttp|fasthttp|gnet -addr 127.0.0.1:8080
//
// Every server answers GET /hello with the same 13-byte text/plain body and
// a Date header, keeps connections alive and accepts pipelined requests.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"
)

const body = "Hello world.\n"

func main() {
	server := flag.String("server", "nethttp", "nethttp, fasthttp or gnet")
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	var err error
	switch *server {
	case "nethttp":
		err = serveNetHTTP(*addr)
	case "fasthttp":
		err = serveFastHTTP(*addr)
	case "gnet":
		err = serveGnet(*addr)
	default:
		err = fmt.Errorf("unknown server %q", *server)
	}
	if err != nil {
		log.Fatal(err)
	}
}

func serveNetHTTP(addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write([]byte(body))
	})
	return http.ListenAndServe(addr, mux)
}

func serveFastHTTP(addr string) error {
	s := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if string(ctx.Path()) != "/hello" || !ctx.IsGet() {
				ctx.NotFound()
				return
			}
			ctx.SetContentType("text/plain")
			ctx.WriteString(body)
		},
		NoDefaultServerHeader: true,
	}
	return s.ListenAndServe(addr)
}

// gnet is a raw event loop: like gnet's own HTTP benchmark servers, this one
// frames requests by their header terminator (GET without a body) and writes
// the whole response in one buffer.
type gnetHello struct {
	gnet.BuiltinEventEngine
	date atomic.Pointer[[]byte]
}

func (h *gnetHello) OnBoot(eng gnet.Engine) gnet.Action {
	h.tick()
	go func() {
		for range time.Tick(time.Second) {
			h.tick()
		}
	}()
	return gnet.None
}

func (h *gnetHello) tick() {
	d := []byte(time.Now().UTC().Format(http.TimeFormat))
	h.date.Store(&d)
}

var (
	crlf2    = []byte("\r\n\r\n")
	notFound = []byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
)

func (h *gnetHello) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	out := make([]byte, 0, 256)
	used := 0
	for {
		end := bytes.Index(buf[used:], crlf2)
		if end < 0 {
			break
		}
		req := buf[used : used+end]
		used += end + 4
		if !bytes.HasPrefix(req, []byte("GET /hello ")) {
			out = append(out, notFound...)
			continue
		}
		out = append(out, "HTTP/1.1 200 OK\r\nDate: "...)
		out = append(out, *h.date.Load()...)
		out = append(out, "\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"+body...)
	}
	c.Discard(used)
	if len(out) > 0 {
		c.Write(out)
	}
	return gnet.None
}

func serveGnet(addr string) error {
	return gnet.Run(&gnetHello{}, "tcp://"+addr, gnet.WithMulticore(false), gnet.WithReusePort(false))
}

func init() { log.SetOutput(os.Stderr) }
