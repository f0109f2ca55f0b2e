//go:build eventer_testhooks

package eventer

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

// Over TLS a request without a body takes the direct path, as on a plain
// connection (no relay coroutine): the handler sees what the connection
// negotiated (version, cipher suite, ALPN, SNI, resumption), and sees its
// client leave while it waits (Go's client sends close_notify, then its
// FIN; or a reset): the goroutine handler's context is cancelled, the aco
// handler's pending call returns ErrCanceled.  A client that stays keeps
// its request.
func TestRestHTTPSDirect(t *testing.T) {
	pki, listen, b := httpsRestLoop(t, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	info := mustRule(t)(NewRule("GET", b, "^info$", func(rc *RestClosure) error {
		req, res := rc.Request(), rc.Response()
		res.Ok("text/plain")
		if cs := req.TLS; cs == nil {
			res.WriteString("no TLS")
		} else {
			fmt.Fprintf(res, "%x %x %q %q %v %v", cs.Version, cs.CipherSuite,
				cs.NegotiatedProtocol, cs.ServerName, cs.DidResume, len(cs.PeerCertificates))
		}
		return res.End()
	}))
	info.SetAco(true)
	port := listen()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dial := func(conf *tls.Config) *tls.Conn {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	}

	// what the handler sees is what the client negotiated
	direct0, _ := restChained(t)
	for _, conf := range []*tls.Config{
		{RootCAs: pki.pool, NextProtos: []string{"http/1.1"}, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}},
		{ServerName: "direct.example", InsecureSkipVerify: true, MinVersion: tls.VersionTLS13},
	} {
		c := dial(conf)
		fmt.Fprintf(c, "GET %sinfo HTTP/1.1\r\nHost: x\r\n\r\n", b)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cs := c.ConnectionState()
		c.Close()
		want := fmt.Sprintf("%x %x %q %q false 0", cs.Version, cs.CipherSuite, cs.NegotiatedProtocol, conf.ServerName)
		if resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("info: %d %q, want %q", resp.StatusCode, body, want)
		}
	}
	if direct, _ := restChained(t); direct-direct0 != 2 {
		t.Fatalf("%d of 2 requests over TLS took the direct path", direct-direct0)
	}

	// clients that leave while their handler waits, and one that stays
	clientLeaves(t, b, func() net.Conn { return dial(&tls.Config{RootCAs: pki.pool}) })
	waitFor(t, "the sessions to go", func() bool { return cgo.HTTPSessions() == 0 })
}
