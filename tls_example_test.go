package eventer_test

import (
	"bufio"
	"fmt"
	"log"
	"time"

	"github.com/acoeventer/eventer"
)

// A TLS listener and a TLS client on the same loops.  The listener's
// function sees plaintext and the client's certificate; the client
// verifies the server against a CA and offers ALPN.  (The certificate
// files are the program's; this example is compiled, not run.)
func ExampleWithTLS() {
	if err := eventer.Init(); err != nil {
		log.Fatal(err)
	}
	defer eventer.Shutdown()

	ln, err := eventer.ListenAco("tcp", "127.0.0.1:8443", func(co *eventer.Co, ae *eventer.AcoEvent) {
		st, err := ae.TLSState()
		if err != nil {
			return
		}
		who := "anonymous"
		if len(st.PeerCertificates) > 0 {
			who = st.PeerCertificates[0].Subject.CommonName
		}
		var buf [512]byte
		for {
			n, err := ae.Read(buf[:], 10*time.Second) // plaintext
			if err != nil {
				return
			}
			fmt.Fprintf(ae.Conn(), "%s said %q over %s\n", who, buf[:n], st.NegotiatedProtocol)
		}
	}, eventer.WithTLS(eventer.TLSConfig{
		CertificateFile: "server.pem", KeyFile: "server.key",
		CAFile:     "clients-ca.pem", // clients with a certificate from this CA...
		ClientCert: "optional",       // ...may send one
		ALPN:       []string{"echo/1"},
	}))
	if err != nil {
		log.Fatal(err) // a missing file, a key that does not match, ... with OpenSSL's reason
	}
	defer ln.Close()

	eventer.AcoStart(func(co *eventer.Co) {
		ae, err := co.Connect("tcp", "localhost:8443", 5*time.Second, eventer.WithClientTLS(eventer.TLSConfig{
			CAFile: "server-ca.pem", // the server's certificate must chain to it and be for "localhost"
			ALPN:   []string{"echo/1"},
		}))
		if err != nil {
			log.Print(err) // e.g. eventer: Co.Connect: TLS handshake: ...certificate verify failed (...)
			return
		}
		defer ae.Close()
		ae.Write([]byte("hello"), time.Second)
		reply, _ := bufio.NewReader(ae.Conn()).ReadString('\n')
		fmt.Print(reply)
		eventer.Shutdown()
	}, nil)
	eventer.Loop()
}
