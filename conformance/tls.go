package conformance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/acoeventer/eventer"
)

// The tls step in Go: crypto/tls over the AcoEvent's net.Conn, the
// counterpart of the C step's OpenSSL through the eventer's TLS opset
// (csrc/conformance/eventer_conformance_tls.c).  The certificate is a
// self-signed one for localhost made once per process, as in C.  The
// read, write and close steps move plaintext through the connection.

var goCert struct {
	once sync.Once
	cert tls.Certificate
	pool *x509.CertPool
	err  error
}

func makeGoCert() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		goCert.err = err
		return
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		goCert.err = err
		return
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		goCert.err = err
		return
	}
	goCert.cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	goCert.pool = x509.NewCertPool()
	goCert.pool.AddCert(leaf)
}

// goTLS is a TLS connection object.
type goTLS struct {
	ae   *eventer.AcoEvent
	conn *tls.Conn
}

// Close is the run's cleanup, off the loops: the AcoEvent's Close (a
// close_notify would need a coroutine).
func (t *goTLS) Close() error { return t.ae.Close() }

func init() {
	builtins["tls"] = Step{"obj server|client trusted|untrusted? timeout=dur", stTLS}
}

// tlsErr names a TLS failure as C does: EIO (the C library logs why),
// unless it is a timeout, a cancel, EOF or an errno; a reset or a broken
// pipe under TLS is EIO in C too (it logs the system's error).
func tlsErr(err error) error {
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return syscall.EIO
	}
	if err == nil || !strings.HasPrefix(ErrName(err), "error: ") {
		return err
	}
	return syscall.EIO
}

func stTLS(c *Call) (string, error) {
	goCert.once.Do(makeGoCert)
	if goCert.err != nil {
		return "", goCert.err
	}
	o, err := c.get(0)
	if err != nil {
		return "", err
	}
	if o.kind != kFd {
		return "", errWrongKind
	}
	ev, err := eventer.FdEvent(o.fd)
	if err != nil {
		return "", err
	}
	ae, err := c.Co.SetEventerAco(ev)
	if err != nil {
		return "", err
	}
	var conn *tls.Conn
	if c.Arg(1) == "server" {
		conn = tls.Server(ae.Conn(), &tls.Config{Certificates: []tls.Certificate{goCert.cert}})
	} else {
		cfg := &tls.Config{ServerName: "localhost"} // untrusted: the system's roots
		if c.Arg(2) != "untrusted" {
			cfg.RootCAs = goCert.pool
		}
		conn = tls.Client(ae.Conn(), cfg)
	}
	// the object is the TLS connection from now on, handshake or not
	if err := c.setTyped(0, "tls", &goTLS{ae: ae, conn: conn}); err != nil {
		return "", err
	}
	if d, ok := c.OptDur("timeout"); ok {
		conn.SetDeadline(time.Now().Add(d))
		defer conn.SetDeadline(time.Time{})
	}
	err = conn.Handshake()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// C: "the peer closed the connection during the handshake", EIO
		return "", syscall.EIO
	}
	return "", tlsErr(err)
}

// tlsOf is argument i's TLS connection, if it is one.
func (c *Call) tlsOf(i int) *goTLS {
	o := c.slot(i)
	if o == nil {
		return nil
	}
	c.run.mu.Lock()
	defer c.run.mu.Unlock()
	if t, ok := o.v.(*goTLS); ok && o.kind == kObj {
		return t
	}
	return nil
}

// tlsRead, tlsWrite: the read and write steps on a TLS connection, with
// the step's timeout as a deadline.
func tlsRead(c *Call, t *goTLS) (string, error) {
	if d, ok := c.OptDur("timeout"); ok {
		t.conn.SetReadDeadline(time.Now().Add(d))
		defer t.conn.SetReadDeadline(time.Time{})
	}
	buf := make([]byte, c.readLen())
	n, err := t.conn.Read(buf)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "", io.EOF
		}
		return "", tlsErr(err)
	}
	return Bytes("data", buf[:n]), nil
}

func tlsWrite(c *Call, t *goTLS) (string, error) {
	if d, ok := c.OptDur("timeout"); ok {
		t.conn.SetWriteDeadline(time.Now().Add(d))
		defer t.conn.SetWriteDeadline(time.Time{})
	}
	n, err := t.conn.Write([]byte(c.Arg(1)))
	if err != nil {
		return "", tlsErr(err)
	}
	return fmt.Sprintf("n=%d", n), nil
}
