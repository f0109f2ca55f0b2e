package conformance

// #include <stdlib.h>
// #include "eventer_conformance_impl.h"
import "C"

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"github.com/acoeventer/eventer"
)

// The REST steps.  The C driver's are in
// csrc/conformance/eventer_conformance_http.c.  In Go, rest_rule mounts a
// Go handler through the Go REST API (NewRule, RestClosure, SetAco), the
// twin of the C handler of the same name, and http is a client on the Go
// aco API (Co.Connect, AcoEvent); rest_server is the same C HTTP engine's
// listener in both runs, so the two runs compare a C and a Go handler
// behind one engine, byte for byte.

func init() {
	C.ev_cf_http_register()
	builtins["rest_server"] = Step{"new", stRestServer}
	builtins["rest_rule"] = Step{"text text text aco=on|off", stRestRule}
	builtins["http"] = Step{"obj text text body=text", stHTTP}
}

// goHandlers are the Go twins of the C driver's REST handlers.
var goHandlers = map[string]eventer.RestHandler{
	"hello":        hHello,
	"asynch_hello": hAsynchHello,
	"echo":         hEcho,
	"pats":         hPats,
	"status":       hStatus,
}

// the seed's hello handler
func hHello(rc *eventer.RestClosure) error {
	w := rc.Response()
	if err := w.Ok("text/plain"); err != nil {
		return err
	}
	if _, err := w.WriteString("Hello world.\n"); err != nil {
		return err
	}
	return w.End()
}

// the seed's REST example: the body is appended by asynch work while the
// handler's coroutine waits (mount it with aco=on)
func hAsynchHello(rc *eventer.RestClosure) error {
	w := rc.Response()
	if err := w.Ok("text/plain"); err != nil {
		return err
	}
	if co := rc.Co(); co != nil {
		var werr error
		if err := co.SimpleAsynch(func() {
			time.Sleep(10 * time.Millisecond) // the seed sleeps a second
			_, werr = w.WriteString("Hello world.\n")
		}); err != nil {
			return err
		}
		if werr != nil {
			return werr
		}
	} else if _, err := w.WriteString("not in a coroutine\n"); err != nil {
		return err
	}
	return w.End()
}

// the request body, back
func hEcho(rc *eventer.RestClosure) error {
	body, err := io.ReadAll(rc.Request().Body)
	if err != nil {
		return err
	}
	w := rc.Response()
	if err := w.Ok("application/octet-stream"); err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	return w.End()
}

// the rule's captures, one a line
func hPats(rc *eventer.RestClosure) error {
	w := rc.Response()
	if err := w.Ok("text/plain"); err != nil {
		return err
	}
	pats := rc.Pats()
	fmt.Fprintf(w, "%d\n", len(pats))
	for _, p := range pats {
		fmt.Fprintf(w, "%s\n", p)
	}
	return w.End()
}

// the status the first capture says (as C's atoi: 0 when it is no number)
func hStatus(rc *eventer.RestClosure) error {
	code := 500
	if pats := rc.Pats(); len(pats) > 0 {
		code, _ = strconv.Atoi(pats[0])
	}
	w := rc.Response()
	if err := w.Status(code, "CUSTOM"); err != nil {
		return err
	}
	if err := w.Header("Content-Type", "text/plain"); err != nil {
		return err
	}
	fmt.Fprintf(w, "status %d\n", code)
	return w.End()
}

// restListener is the rest_server object of the Go run.
type restListener struct{ p unsafe.Pointer }

// Close is the run's cleanup: stop the listener, wait for its
// connections, release it.
func (l *restListener) Close() error {
	C.ev_cf_rest_unlisten(l.p)
	return nil
}

// rest_server H
func stRestServer(c *Call) (string, error) {
	if err := eventer.RestInit(); err != nil {
		return "", err
	}
	var addr [64]C.char
	p, err := C.ev_cf_rest_listen(&addr[0], C.size_t(len(addr)))
	if p == nil {
		if err == nil {
			err = syscall.EINVAL
		}
		return "", err
	}
	if err := c.setTyped(0, "listener_http", &restListener{p}); err != nil {
		C.ev_cf_rest_unlisten(p)
		return "", err
	}
	c.setAddr(0, "tcp", C.GoString(&addr[0]))
	return "", nil
}

// restBase is the base under which this run mounts its rules: rules live
// as long as the process (as in C), so each run has its own.
func restBase(c *Call) string { return "/" + c.Unique("rest") + "/" }

// rest_rule METHOD REGEX HANDLER [aco=on]
func stRestRule(c *Call) (string, error) {
	h, ok := goHandlers[c.Arg(2)]
	if !ok {
		return "", syscall.ENOENT
	}
	r, err := eventer.NewRule(c.Arg(0), restBase(c), c.Arg(1), h)
	if err != nil {
		return "", err
	}
	aco, _ := c.Opt("aco")
	r.SetAco(aco == "on")
	return "", nil
}

// httpMax is the C step's response limit (EV_CF_HTTP_MAX).
const httpMax = C.EV_CF_HTTP_MAX

// http H METHOD PATH [body=TEXT]: one request (Connection: close), the
// response read to the server's close; the result is its bytes without
// the Date header.
func stHTTP(c *Call) (string, error) {
	network, address, err := c.Addr(0)
	if err != nil {
		return "", err
	}
	body, _ := c.Opt("body")
	req := fmt.Sprintf("%s %s%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		c.Arg(1), restBase(c), c.Arg(2), len(body), body)
	const five = 5 * time.Second
	ae, err := c.Co.Connect(network, address, five)
	if err != nil {
		return "", err
	}
	defer ae.Close()
	for p := []byte(req); len(p) > 0; {
		n, err := ae.Write(p, five)
		if err != nil {
			return "", err
		}
		p = p[n:]
	}
	buf := make([]byte, httpMax)
	got := 0
	for {
		if got == len(buf) {
			return "", syscall.EMSGSIZE
		}
		n, err := ae.Read(buf[got:], five)
		if err == io.EOF || err == nil && n == 0 {
			break
		}
		if err != nil {
			return "", err
		}
		got += n
	}
	resp := buf[:got]
	if hend := bytes.Index(resp, []byte("\r\n\r\n")); hend >= 0 {
		if d := bytes.Index(resp[:hend], []byte("\r\nDate: ")); d >= 0 {
			eol := d + 2 + bytes.Index(resp[d+2:], []byte("\r\n"))
			resp = append(resp[:d:d], resp[eol:]...)
		}
	}
	return Bytes("response", resp), nil
}
