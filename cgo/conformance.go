//go:build eventer_testhooks

package cgo

/*
#include <stdlib.h>
#include <string.h>
#include "conformance.h"
static int ev_ct_load_int(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
*/
import "C"

import (
	"unsafe"
)

// Conformance step commands (testdata/conformance/README.md).
var ConformanceCommands = map[string]int{
	"pair": C.EV_CF_PAIR, "tcp": C.EV_CF_TCP, "write": C.EV_CF_WRITE,
	"read": C.EV_CF_READ, "peer_write": C.EV_CF_PEER_WRITE,
	"peer_close": C.EV_CF_PEER_CLOSE, "peer_reset": C.EV_CF_PEER_RESET,
	"sleep": C.EV_CF_SLEEP, "yield": C.EV_CF_YIELD, "asynch": C.EV_CF_ASYNCH,
	"cancel": C.EV_CF_CANCEL, "close": C.EV_CF_CLOSE,
	"connect_refused": C.EV_CF_CONNECT_REFUSED, "accept": C.EV_CF_ACCEPT,
}

// ConformanceStep is one step for the C driver.
type ConformanceStep struct {
	Cmd       int
	N         int
	TimeoutMs int // -1: none
	Text      string
}

// ConformanceRun is a scenario running in a C coroutine.
type ConformanceRun struct {
	steps   *C.ev_cf_step_t
	results *C.char
	done    *C.int
	n       int
}

// StartConformance starts steps in a C coroutine; call on a loop thread
// (from a Go coroutine).
func StartConformance(steps []ConformanceStep) *ConformanceRun {
	n := len(steps)
	r := &ConformanceRun{n: n}
	r.steps = (*C.ev_cf_step_t)(C.calloc(C.size_t(n+1), C.size_t(unsafe.Sizeof(C.ev_cf_step_t{}))))
	r.results = (*C.char)(C.calloc(C.size_t(n+1), C.EV_CF_RESULT_LEN))
	r.done = (*C.int)(C.calloc(1, C.size_t(unsafe.Sizeof(C.int(0)))))
	cs := unsafe.Slice(r.steps, n)
	for i, s := range steps {
		cs[i].cmd = C.int(s.Cmd)
		cs[i].n = C.int(s.N)
		cs[i].timeout_ms = C.int(s.TimeoutMs)
		t := C.CString(s.Text)
		C.strncpy(&cs[i].text[0], t, C.size_t(len(cs[i].text)-1))
		C.free(unsafe.Pointer(t))
	}
	C.ev_cf_run(r.steps, C.int(n), r.results, r.done)
	return r
}

// Done reports whether the C coroutine finished.
func (r *ConformanceRun) Done() bool { return C.ev_ct_load_int(r.done) != 0 }

// Results are the C coroutine's results, one per step; then the run is
// freed.
func (r *ConformanceRun) Results() []string {
	out := make([]string, r.n)
	for i := range out {
		out[i] = C.GoString((*C.char)(unsafe.Add(unsafe.Pointer(r.results), i*C.EV_CF_RESULT_LEN)))
	}
	C.free(unsafe.Pointer(r.steps))
	C.free(unsafe.Pointer(r.results))
	C.free(unsafe.Pointer(r.done))
	return out
}

// ErrnoName is the symbolic name of an errno, as C spells it.
func ErrnoName(e int) string { return C.GoString(C.ev_cf_errname(C.int(e))) }
