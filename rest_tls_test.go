package eventer

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

// httpsPKI is a CA, a server certificate for 127.0.0.1 and client
// certificates, made for one test (no key is kept).
type httpsPKI struct {
	dir            string
	pool           *x509.CertPool
	ca             *x509.Certificate
	caKey          *ecdsa.PrivateKey
	caFile         string
	certFile, keyF string
}

func newHTTPSPKI(t *testing.T) *httpsPKI {
	t.Helper()
	p := &httpsPKI{dir: t.TempDir(), pool: x509.NewCertPool()}
	key, der := p.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "https test CA"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign})
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.pool.AddCert(p.ca)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	skey, sder := p.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	p.certFile = p.write(t, "srv.pem", "CERTIFICATE", sder)
	kb, _ := x509.MarshalECPrivateKey(skey)
	p.keyF = p.write(t, "srv.key", "EC PRIVATE KEY", kb)
	return p
}

var httpsSerial = big.NewInt(1)

var httpsRuns atomic.Int32

// issue makes a key and a certificate for tmpl, signed by the CA (self-
// signed while there is none).
func (p *httpsPKI) issue(t *testing.T, tmpl *x509.Certificate) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	httpsSerial = new(big.Int).Add(httpsSerial, big.NewInt(1))
	tmpl.SerialNumber = httpsSerial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	parent, signer := tmpl, key
	if p.ca != nil {
		parent, signer = p.ca, p.caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func (p *httpsPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// client is a TLS client certificate with CN cn.
func (p *httpsPKI) client(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, der := p.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// httpsClient is net/http's client over crypto/tls, trusting the test CA,
// offering h2 and http/1.1 (as browsers do), with certs if any.
func (p *httpsPKI) httpsClient(certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: p.pool, Certificates: certs},
		ForceAttemptHTTP2: true,
	}}
}

// An http_rest_api listener with ssl="on" serves Go rules (NewRule and
// HandleHTTP) over TLS to Go's net/http client: ALPN selects http/1.1
// though the client offers h2 first; keep-alive; a chunked upload hashed;
// the handlers see the TLS facts and the client certificate; the ACL's cn
// rules let a client certificate in or keep it out; plaintext HTTP on the
// port is closed; nothing is left when the clients are done.
func TestRestHTTPS(t *testing.T) {
	pki := newHTTPSPKI(t)
	conf := func(ports []int) {
		loadConf(t, fmt.Sprintf(`<app>
  <rest>
    <acl type="deny" url="^/https[0-9]+/acl/">
      <rule type="allow" cn="^good client$"/>
    </acl>
    <acl type="allow"/>
  </rest>
  <listeners>
    <listener type="http_rest_api" address="127.0.0.1" port="%d" ssl="on">
      <sslconfig>
        <certificate_file>%s</certificate_file>
        <key_file>%s</key_file>
        <ca_chain>%s</ca_chain>
      </sslconfig>
    </listener>
  </listeners>
</app>
`, ports[0], pki.certFile, pki.keyF, pki.caFile))
	}
	ports := []int{freePort(t)}
	conf(ports)
	setup(t, 2)
	if err := RestInit(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // the next RestInit must not find this ACL
		LoadConfigString("<empty/>", "empty")
		RestInit()
	})
	// a base of its own per run (a closed rule keeps answering 404 for its
	// routes, and the routing table is the process's)
	b := fmt.Sprintf("/https%d", httpsRuns.Add(1))
	who := func(rc *RestClosure) error {
		req, res := rc.Request(), rc.Response()
		res.Ok("text/plain")
		peer := 0
		if req.TLS != nil {
			peer = len(req.TLS.PeerCertificates)
		}
		fmt.Fprintf(res, "tls=%v alpn=%s cn=%q peers=%d", req.TLS != nil,
			req.TLS.NegotiatedProtocol, req.RemoteCN, peer)
		return res.End()
	}
	for _, r := range []struct {
		base string
		aco  bool
	}{{b + "/", false}, {b + "/aco/", true}, {b + "/acl/", true}} {
		rule, err := NewRule("GET", r.base, "^who$", who)
		if err != nil {
			t.Fatal(err)
		}
		rule.SetAco(r.aco)
		t.Cleanup(func() { rule.Close() })
	}
	mux := http.NewServeMux()
	mux.HandleFunc(b+"/h/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		cs := r.TLS
		if cs == nil || !cs.HandshakeComplete || cs.Version < tls.VersionTLS12 || cs.CipherSuite == 0 {
			http.Error(w, fmt.Sprintf("r.TLS %+v", cs), 500)
			return
		}
		fmt.Fprintf(w, "%d %x %v %s", n, h.Sum(nil), r.TransferEncoding, cs.NegotiatedProtocol)
	})
	big, err := HandleHTTP("GET", b+"/", "^big$", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for i := 0; i < 256; i++ { // 16 MiB: more than the socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { big.Close() })
	hr, err := HandleHTTP("POST", b+"/h/", ".*", mux)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hr.Close() })
	port := listenerInitFree(t, "app", ports, conf)[0]
	base := fmt.Sprintf("https://127.0.0.1:%d", port)

	good := pki.client(t, "good client")
	bad := pki.client(t, "bad client")
	anon := pki.httpsClient()
	defer anon.CloseIdleConnections()
	getBody := func(c *http.Client, path string) (*http.Response, string) {
		t.Helper()
		res, err := c.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return res, string(b)
	}

	// ALPN and keep-alive: three requests, one TLS connection
	for _, p := range []string{b + "/who", b + "/aco/who", b + "/who"} {
		res, body := getBody(anon, p)
		if res.StatusCode != 200 || res.Proto != "HTTP/1.1" || res.TLS == nil ||
			res.TLS.NegotiatedProtocol != "http/1.1" {
			t.Fatalf("%s: %d %s, TLS %+v: %s", p, res.StatusCode, res.Proto, res.TLS, body)
		}
		if want := `tls=true alpn=http/1.1 cn="" peers=0`; body != want {
			t.Fatalf("%s: %q, want %q", p, body, want)
		}
	}
	if ls := Listeners(); len(ls) != 1 || ls[0].Stats().Accepted != 1 {
		t.Fatalf("three requests over keep-alive: %d listeners, accepted %+v", len(ls), ls[0].Stats())
	}

	// a chunked upload (unknown length) through HandleHTTP, hashed
	data := bytes.Repeat([]byte("0123456789abcdef"), 70000) // ~1.1 MiB
	pr, pw := io.Pipe()
	go func() {
		for off := 0; off < len(data); off += 7001 {
			pw.Write(data[off:min(off+7001, len(data))])
		}
		pw.Close()
	}()
	res, err := anon.Post(base+b+"/h/upload", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(res.Body)
	res.Body.Close()
	sum := sha256.Sum256(data)
	if want := fmt.Sprintf("%d %s [chunked] http/1.1", len(data), hex.EncodeToString(sum[:])); res.StatusCode != 200 || string(rb) != want {
		t.Fatalf("chunked upload: %d %q, want %q", res.StatusCode, rb, want)
	}

	// the ACL's cn rule: the good client's certificate is let in, the bad
	// one's and none are kept out; the handler sees the certificate
	gc := pki.httpsClient(good)
	defer gc.CloseIdleConnections()
	if res, body := getBody(gc, b+"/acl/who"); res.StatusCode != 200 ||
		body != `tls=true alpn=http/1.1 cn="good client" peers=1` {
		t.Fatalf("good client: %d %q", res.StatusCode, body)
	}
	bc := pki.httpsClient(bad)
	defer bc.CloseIdleConnections()
	if res, body := getBody(bc, b+"/acl/who"); res.StatusCode != 403 {
		t.Fatalf("bad client: %d %q", res.StatusCode, body)
	}
	if res, body := getBody(bc, b+"/who"); res.StatusCode != 200 || !strings.Contains(body, `cn="bad client"`) {
		t.Fatalf("bad client outside the ACL's url: %d %q", res.StatusCode, body)
	}
	if res, body := getBody(anon, b+"/acl/who"); res.StatusCode != 403 {
		t.Fatalf("no certificate: %d %q", res.StatusCode, body)
	}

	// plaintext HTTP to the HTTPS port: closed, no HTTP answer
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET "+b+"/who HTTP/1.1\r\nHost: x\r\n\r\n")
	got, _ := io.ReadAll(c)
	c.Close()
	if bytes.Contains(got, []byte("HTTP/1.1 200")) || bytes.Contains(got, []byte("tls=")) {
		t.Fatalf("plaintext on the HTTPS port was answered: %q", got)
	}

	// hostile TLS clients: one leaves inside a request head, one inside
	// a chunked body, one without reading a big response; one sends a
	// body byte by byte
	tlsDial := func() *tls.Conn {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp",
			fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: pki.pool})
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	}
	c1 := tlsDial()
	io.WriteString(c1, "GET "+b+"/who HTTP/1.1\r\nHost: x\r\nX-Half: ")
	c1.Close()
	c2 := tlsDial()
	io.WriteString(c2, "POST "+b+"/h/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nabc")
	time.Sleep(50 * time.Millisecond)
	c2.Close()
	c3 := tlsDial()
	io.WriteString(c3, "GET "+b+"/big HTTP/1.1\r\nHost: x\r\n\r\n")
	var one [1]byte
	c3.Read(one[:])
	c3.Close()
	c4 := tlsDial()
	body := "hello, byte by byte"
	io.WriteString(c4, fmt.Sprintf("POST "+b+"/h/upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(body)))
	for i := 0; i < len(body); i++ {
		io.WriteString(c4, body[i:i+1])
	}
	got4, _ := io.ReadAll(c4)
	c4.Close()
	sum4 := sha256.Sum256([]byte(body))
	// (this client offers no ALPN: none is negotiated)
	if !bytes.HasSuffix(got4, []byte(fmt.Sprintf("\r\n\r\n%d %x [] ", len(body), sum4[:]))) {
		t.Fatalf("byte-by-byte upload over TLS: %q", got4)
	}

	anon.CloseIdleConnections()
	gc.CloseIdleConnections()
	bc.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for restLive() != 0 || cgo.HTTPSessionsLive() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still live: %d Go requests, %d sessions", restLive(), cgo.HTTPSessionsLive())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// httpsRestLoop serves HTTPS for the test: a fresh PKI, a configuration
// with an http_rest_api listener on a free port (loadHTTPSRestConf), one
// loop (setup, with opts), RestInit, and the config emptied when the test
// ends.  It returns the PKI, a function that starts the listener
// (ListenerInit) and returns its port, and a base of the run's own (a
// closed rule keeps answering 404 for its routes, and the routing table
// is the process's).
func httpsRestLoop(t *testing.T, opts ...Option) (*httpsPKI, func() int, string) {
	t.Helper()
	pki := newHTTPSPKI(t)
	conf := func(ports []int) { loadHTTPSRestConf(t, ports[0], pki) }
	ports := []int{freePort(t)}
	conf(ports)
	setup(t, 1, opts...)
	if err := RestInit(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { LoadConfigString("<empty/>", "empty") })
	listen := func() int {
		t.Helper()
		return listenerInitFree(t, "app", ports, conf)[0]
	}
	return pki, listen, fmt.Sprintf("/https%d/", httpsRuns.Add(1))
}

// loadHTTPSRestConf loads a config with one http_rest_api listener on
// 127.0.0.1:port with ssl="on" and pki's certificate and key.
func loadHTTPSRestConf(t *testing.T, port int, pki *httpsPKI) {
	t.Helper()
	loadConf(t, fmt.Sprintf(`<app>
  <listeners>
    <listener type="http_rest_api" address="127.0.0.1" port="%d" ssl="on">
      <sslconfig>
        <certificate_file>%s</certificate_file>
        <key_file>%s</key_file>
      </sslconfig>
    </listener>
  </listeners>
</app>
`, port, pki.certFile, pki.keyF))
}
