package eventer

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A NUL byte in a string the Go API hands to C is refused with an error
// naming the call: C reads a string up to its first NUL, so each of
// these took another name, path, address or setting than the one given.
// Two job queues "q\x00a" and "q\x00b" were one C queue "q" held by two
// Go states: closing both destroyed it twice (its memory was freed by
// the first).  ServerName "good\x00.evil" would be verified as "good".
func TestNULRefused(t *testing.T) {
	setup(t, 1)
	fn := func(co *Co, ae *AcoEvent) {}
	check := func(what string, err error, op string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: taken", what)
		} else if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), op) ||
			!strings.Contains(err.Error(), "NUL") {
			t.Errorf("%s: %v", what, err)
		}
	}
	for _, name := range []string{"h16q\x00a", "h16q\x00b"} {
		q, err := NewJobQueue(name)
		if err == nil {
			defer q.Close()
		}
		check("NewJobQueue", err, "NewJobQueue")
	}
	check("RegisterAcoFunction", RegisterAcoFunction("nul_fn\x00x", fn), "RegisterAcoFunction")
	check("LoadConfig", LoadConfig("/dev/null\x00.conf"), "LoadConfig")
	check("LoadConfigString", LoadConfigString("<a/>", "a\x00b"), "LoadConfig")
	check("ListenerInit", ListenerInit("app\x00x"), "ListenerInit")
	listen := func(what, network, address string, opts ...ListenerOption) {
		t.Helper()
		ln, err := ListenAco(network, address, fn, opts...)
		if err == nil {
			ln.Close()
		}
		check(what, err, "ListenAco")
	}
	listen("unix address", "unix", t.TempDir()+"/s\x00x")
	listen("config key", "tcp", "127.0.0.1:0", WithListenerConfig("k\x00x", "v"))
	listen("config value", "tcp", "127.0.0.1:0", WithListenerConfig("k", "v\x00x"))
	listen("TLS file", "tcp", "127.0.0.1:0", WithTLS(TLSConfig{CertificateFile: "/dev/null\x00x", KeyFile: "/dev/null"}))
	err := inCo(t, 0, func(co *Co) error {
		ae, err := co.Connect("tcp", "127.0.0.1:9", time.Second, WithClientTLS(TLSConfig{ServerName: "good.example\x00.evil.example"}))
		if err == nil {
			ae.Close()
		}
		return err
	})
	check("Connect ServerName", err, "Connect")
}
