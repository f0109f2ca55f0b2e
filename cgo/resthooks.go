//go:build eventer_testhooks

package cgo

/*
#include <stdlib.h>
#include <string.h>
#include "mtev_listener.h"
#include "mtev_http.h"
#include "restglue.h"

static mtev_listener_t *ev_th_listen(const char *type, const char *addr, int port, char *err, size_t errlen) {
  mtev_listener_opts_t o;
  memset(&o, 0, sizeof(o));
  o.address = addr;
  o.port = port;
  o.type = type;
  o.backlog = 4096;
  return mtev_listener_create(&o, err, errlen);
}
static int ev_th_stop(mtev_listener_t *l, long grace_ms) {
  struct timeval g = {grace_ms / 1000, (grace_ms % 1000) * 1000};
  struct timeval t = {30, 0};
  int rc = mtev_listener_stop(l, &g);
  if (rc == 0) rc = mtev_listener_wait(l, &t);
  mtev_listener_release(l);
  return rc;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// TestListen starts a listener of type typ (a registered type such as
// "http_rest_api") on 127.0.0.1 with a port the kernel picks: its handle
// and port.
func TestListen(typ string) (unsafe.Pointer, int, error) { return TestListenOn(typ, "127.0.0.1", 0) }

// TestListenOn is TestListen on host:port (port 0: the kernel picks one).
func TestListenOn(typ, host string, port int) (unsafe.Pointer, int, error) {
	ct, ca := C.CString(typ), C.CString(host)
	defer C.free(unsafe.Pointer(ct))
	defer C.free(unsafe.Pointer(ca))
	var buf [256]C.char
	l := C.ev_th_listen(ct, ca, C.int(port), &buf[0], C.size_t(len(buf)))
	if l == nil {
		return nil, 0, errors.New(C.GoString(&buf[0]))
	}
	return unsafe.Pointer(l), int(C.mtev_listener_get_port(l)), nil
}

// TestListenerStop stops a TestListen listener (grace in ms), waits for
// its connections and releases it.
func TestListenerStop(l unsafe.Pointer, graceMs int) error {
	if rc, err := C.ev_th_stop((*C.mtev_listener_t)(l), C.long(graceMs)); rc != 0 {
		return err
	}
	return nil
}

// HTTPSessions is mtev_http_session_count; AcceptorClosures
// mtev_acceptor_closures_live.
func HTTPSessions() int64     { return int64(C.mtev_http_session_count()) }
func AcceptorClosures() int64 { return int64(C.mtev_acceptor_closures_live()) }

// TestSetHTTPTimeouts sets the engine's header and idle timeouts (ms),
// keeping its other limits.
func TestSetHTTPTimeouts(headerMs, idleMs int) {
	var l C.mtev_http_limits_t
	C.mtev_http_get_limits(&l)
	l.header_timeout_ms = C.uint32_t(headerMs)
	l.idle_timeout_ms = C.uint32_t(idleMs)
	C.mtev_http_set_limits(&l)
}

// RestBatchCap is the calling loop thread's batch buffer size
// (ev_go_rest_batch_cap): call it on a loop's thread.
func RestBatchCap() int { return int(C.ev_go_rest_batch_cap()) }
