package cgo

/*
#cgo noescape ev_go_listen_try
#cgo nocallback ev_go_listen_try
#include <stdlib.h>
#include "listener.h"
*/
import "C"

import (
	"errors"
	"syscall"
	"unsafe"
)

// StepListen is the step a loop hands its driver for a new connection of
// a Go aco function (listener.h).
const StepListen = int(C.EV_GO_STEP_LISTEN)

// errBuf is the size of the message buffers C fills.
const errBuf = 2048

// cErr is a C failure: its message, and the errno it unwraps to.
type cErr struct {
	msg   string
	errno syscall.Errno
}

func (e *cErr) Error() string { return e.msg }
func (e *cErr) Unwrap() error { return e.errno }

func failure(buf []C.char, errno error) error {
	msg := C.GoString(&buf[0])
	en, _ := errno.(syscall.Errno)
	if msg == "" {
		if en == 0 {
			return errors.New("failed")
		}
		return en
	}
	return &cErr{msg: msg, errno: en}
}

// ConfLoad is mtev_conf_load_ex: the error says file:line and what.
func ConfLoad(path string) error {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var buf [errBuf]C.char
	if rc, err := C.mtev_conf_load_ex(cp, &buf[0], C.size_t(len(buf))); rc != 0 {
		return failure(buf[:], err)
	}
	return nil
}

// ConfLoadString is mtev_conf_load_string (name stands for the file).
func ConfLoadString(xml, name string) error {
	cx, cn := C.CString(xml), C.CString(name)
	defer C.free(unsafe.Pointer(cx))
	defer C.free(unsafe.Pointer(cn))
	var buf [errBuf]C.char
	if rc, err := C.mtev_conf_load_string(cx, cn, &buf[0], C.size_t(len(buf))); rc != 0 {
		return failure(buf[:], err)
	}
	return nil
}

// ConfApplyEventer sets the eventer up from the loaded configuration's
// <eventer><config> again (before InitExternal).
func ConfApplyEventer() error {
	var buf [errBuf]C.char
	if rc, err := C.ev_go_conf_apply_eventer(&buf[0], C.size_t(len(buf))); rc != 0 {
		return failure(buf[:], err)
	}
	return nil
}

// ListenRegister registers Go aco function id under name (C's registry of
// listener types).
func ListenRegister(name string, id uint32) error {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	if rc := C.ev_go_listen_register(cn, C.uint32_t(id)); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

// ListenerInit starts the configuration's listeners of app
// (mtev_listener_init_ex).
func ListenerInit(app string) error {
	ca := C.CString(app)
	defer C.free(unsafe.Pointer(ca))
	var buf [errBuf]C.char
	if rc, err := C.ev_go_listener_init(ca, &buf[0], C.size_t(len(buf))); rc != 0 {
		return failure(buf[:], err)
	}
	return nil
}

// ListenerOpts are a programmatic listener's settings (mtev_listener_opts_t).
type ListenerOpts struct {
	Address                         string
	Port, Backlog                   int
	Fanout, AcceptInLoop, ReusePort bool
	MaxConnections                  uint32
	ID                              uint32 // the Go aco function
	Config                          [][2]string
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// ListenerCreate binds and starts a listener (mtev_listener_create); it
// holds one reference.
func ListenerCreate(o *ListenerOpts) (unsafe.Pointer, error) {
	var g C.ev_go_lopts_t
	g.address = C.CString(o.Address)
	defer C.free(unsafe.Pointer(g.address))
	g.port, g.backlog = C.int(o.Port), C.int(o.Backlog)
	g.fanout, g.accept_in_loop, g.reuseport = cbool(o.Fanout), cbool(o.AcceptInLoop), cbool(o.ReusePort)
	g.max_connections = C.uint32_t(o.MaxConnections)
	g.id = C.uint32_t(o.ID)
	if n := len(o.Config); n > 0 {
		// C memory: the arrays and strings are read during the call only
		sz := C.size_t(n) * C.size_t(unsafe.Sizeof((*C.char)(nil)))
		keys := (*[1 << 20]*C.char)(C.malloc(sz))[:n:n]
		vals := (*[1 << 20]*C.char)(C.malloc(sz))[:n:n]
		for i, kv := range o.Config {
			keys[i], vals[i] = C.CString(kv[0]), C.CString(kv[1])
		}
		defer func() {
			for i := range keys {
				C.free(unsafe.Pointer(keys[i]))
				C.free(unsafe.Pointer(vals[i]))
			}
			C.free(unsafe.Pointer(&keys[0]))
			C.free(unsafe.Pointer(&vals[0]))
		}()
		g.keys, g.vals, g.nkv = &keys[0], &vals[0], C.int(n)
	}
	var buf [errBuf]C.char
	l, err := C.ev_go_listener_create(&g, &buf[0], C.size_t(len(buf)))
	if l == nil {
		return nil, failure(buf[:], err)
	}
	return unsafe.Pointer(l), nil
}

func lv(p unsafe.Pointer) *C.mtev_listener_t { return (*C.mtev_listener_t)(p) }

// Listeners returns the listeners running or draining, oldest first, each
// with a reference (ListenerRelease).
func Listeners() []unsafe.Pointer {
	n := 64
	for {
		// C memory: C stores pointers into it
		buf := (*[1 << 20]*C.mtev_listener_t)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof((*C.mtev_listener_t)(nil)))))[:n:n]
		got := int(C.ev_go_listeners(&buf[0], C.int(n)))
		if got > n {
			for _, l := range buf {
				ListenerRelease(unsafe.Pointer(l))
			}
			C.free(unsafe.Pointer(&buf[0]))
			n = got + 16
			continue
		}
		out := make([]unsafe.Pointer, got)
		for i := 0; i < got; i++ {
			out[got-1-i] = unsafe.Pointer(buf[i])
		}
		C.free(unsafe.Pointer(&buf[0]))
		return out
	}
}

// ListenerCount is the number of listeners running or draining.
func ListenerCount() int { return int(C.ev_go_listener_count()) }

// ListenerRef takes a reference (mtev_listener_ref).
func ListenerRef(l unsafe.Pointer) { C.mtev_listener_ref(lv(l)) }

// ListenerRelease drops a reference (mtev_listener_release).
func ListenerRelease(l unsafe.Pointer) { C.mtev_listener_release(lv(l)) }

// ListenerIsGo reports whether l runs Go aco functions.
func ListenerIsGo(l unsafe.Pointer) bool { return C.ev_go_listener_is_go(iv(l)) != 0 }

// ListenerStop is mtev_listener_stop with a grace of graceNs (< 0: none).
func ListenerStop(l unsafe.Pointer, graceNs int64) error {
	if rc := C.ev_go_listener_stop(iv(l), C.int64_t(graceNs)); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

// ListenerWait is mtev_listener_wait (timeoutNs < 0: none); ETIMEDOUT if
// l has not stopped in time.  It blocks the calling thread.
func ListenerWait(l unsafe.Pointer, timeoutNs int64) error {
	if rc := C.ev_go_listener_wait(iv(l), C.int64_t(timeoutNs)); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

// ListenerStats is mtev_listener_get_stats.
func ListenerStats(l unsafe.Pointer) (accepted, active, refused, acceptErrors uint64) {
	var s C.mtev_listener_stats_t
	C.mtev_listener_get_stats(lv(l), &s)
	return uint64(s.accepted), uint64(s.active), uint64(s.refused), uint64(s.accept_errors)
}

// ListenerAddress is the bound address as sockaddr bytes.
func ListenerAddress(l unsafe.Pointer) []byte {
	var ss C.struct_sockaddr_storage
	n := C.socklen_t(unsafe.Sizeof(ss))
	if C.mtev_listener_get_address(lv(l), (*C.struct_sockaddr)(unsafe.Pointer(&ss)), &n) != 0 {
		return nil
	}
	return C.GoBytes(unsafe.Pointer(&ss), C.int(n))
}

// ListenerName and ListenerType are mtev_listener_get_name / _get_type.
func ListenerName(l unsafe.Pointer) string { return C.GoString(C.mtev_listener_get_name(lv(l))) }
func ListenerType(l unsafe.Pointer) string { return C.GoString(C.mtev_listener_get_type(lv(l))) }

// AcceptorClosuresLive is mtev_acceptor_closures_live.
func AcceptorClosuresLive() int64 { return int64(C.mtev_acceptor_closures_live()) }

// listenStep reads a StepListen step (listener.h).
func (d *Driver) listenStep() ListenConn {
	s := (*C.ev_go_listen_step_t)(unsafe.Pointer(&d.d.step.u64[0]))
	id := uint32(s.id)
	return ListenConn{E: unsafe.Pointer(d.d.step.closure), ID: id &^ C.EV_GO_LISTEN_PLAIN,
		Plain: id&C.EV_GO_LISTEN_PLAIN != 0, Fd: int(s.fd), AC: unsafe.Pointer(s.ac), L: unsafe.Pointer(s.l)}
}

// ListenTry is Try for a connection whose opset is the listener's own
// (ListenConn.Plain): a C call that never calls back into Go, so buf
// stays where it is (on the coroutine's stack, say).  ENOTSUP for any
// other connection.
func ListenTry(e unsafe.Pointer, op int, buf []byte) (int64, syscall.Errno, int) {
	if len(buf) == 0 {
		r := C.ev_go_listen_try(iv(e), C.int(op), nil, 0)
		return int64(r.res), syscall.Errno(r.err), int(r.mask)
	}
	r := C.ev_go_listen_try(iv(e), C.int(op), (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	return int64(r.res), syscall.Errno(r.err), int(r.mask)
}

// ListenConn is a new connection of a Go aco function: its aco event (a
// reference for Go), the function's id, its fd, its acceptor closure and
// its listener.
type ListenConn struct {
	E     unsafe.Pointer
	ID    uint32
	Plain bool // the listener's own opset: ListenTry applies
	Fd    int
	AC, L unsafe.Pointer
}

// ListenEnd ends a connection of a Go aco function (its loop thread):
// e (nil if released already) is closed unless it was and Go's reference
// dropped; the acceptor closure ac is freed.
func ListenEnd(e, ac unsafe.Pointer) { C.ev_go_listen_end(iv(e), iv(ac)) }

// AcceptorRemote is the acceptor closure's remote address as sockaddr
// bytes (nil: none).
func AcceptorRemote(ac unsafe.Pointer) []byte {
	var ss C.struct_sockaddr_storage
	n := C.ev_go_ac_remote(iv(ac), unsafe.Pointer(&ss), C.int(unsafe.Sizeof(ss)))
	if n <= 0 {
		return nil
	}
	return C.GoBytes(unsafe.Pointer(&ss), n)
}

// AcceptorConfig is the value of key in the acceptor closure's <config>.
func AcceptorConfig(ac unsafe.Pointer, key string) (string, bool) {
	var v *C.char
	var vn C.int
	var k *C.char
	if len(key) > 0 {
		k = (*C.char)(unsafe.Pointer(unsafe.StringData(key)))
	}
	if C.ev_go_ac_config(iv(ac), k, C.int(len(key)), &v, &vn) == 0 {
		return "", false
	}
	return C.GoStringN(v, vn), true
}
