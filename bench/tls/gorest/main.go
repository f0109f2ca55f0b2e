// Command gorest is our side of bench/tls's HTTPS "hello" figure: the
// REST engine of this module over TLS (an http_rest_api listener with
// ssl="on", one loop accepting on itself, OpenSSL under the fd opset)
// answering GET /hello with "Hello world.\n" (text/plain) from a Go
// handler.  Its peer is gopeer -https (net/http over TLS, same
// certificate and key).  It prints "port N" and serves until killed.
//
//	gorest [-mode aco|http] CERT KEY
//
// aco (the default) or http: the rule of bench/hello, as bench/http's
// goserver serves it.  TLS 1.3 with TLS_AES_128_GCM_SHA256, the
// suite Go's server picks (OpenSSL would follow the client's order, and
// an OpenSSL client such as wrk puts TLS_AES_256_GCM_SHA384 first).
package main

import (
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/acoeventer/eventer"
	"github.com/acoeventer/eventer/bench/hello"
)

func die(err error) {
	fmt.Fprintln(os.Stderr, "gorest:", err)
	os.Exit(1)
}

func main() {
	mode := flag.String("mode", "aco", "aco or http")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: gorest [-mode aco|http] CERT KEY")
		os.Exit(2)
	}
	// a free port (the configuration takes a number in 1..65535)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		die(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := fmt.Sprintf(`<gorest><listeners>
  <listener type="http_rest_api" address="127.0.0.1" port="%d" backlog="4096"
            accept_thread="off" ssl="on">
    <sslconfig>
      <certificate_file>%s</certificate_file>
      <key_file>%s</key_file>
      <layer>tlsv1.3</layer>
      <ciphers>TLS_AES_128_GCM_SHA256</ciphers>
    </sslconfig>
  </listener>
</listeners></gorest>`, port, flag.Arg(0), flag.Arg(1))
	if err := eventer.LoadConfigString(conf, "gorest.conf"); err != nil {
		die(err)
	}
	if err := eventer.Init(eventer.WithConcurrency(1)); err != nil {
		die(err)
	}
	if err := eventer.RestInit(); err != nil {
		die(err)
	}
	if err := hello.Register(*mode); err != nil {
		die(err)
	}
	if err := eventer.ListenerInit("gorest"); err != nil {
		die(err)
	}
	fmt.Printf("port %d\n", port)
	die(eventer.Loop())
}
