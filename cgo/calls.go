package cgo

/*
#cgo noescape ev_go_io
#cgo noescape ev_go_wait
#include "glue.h"
#include <errno.h>
#include <string.h>
*/
import "C"

import (
	"errors"
	"syscall"
	"unsafe"
)

// Masks, as eventer.h defines them.
const (
	MaskRead      = int(C.EVENTER_READ)
	MaskWrite     = int(C.EVENTER_WRITE)
	MaskException = int(C.EVENTER_EXCEPTION)
	MaskTimer     = int(C.EVENTER_TIMER)
	MaskRecurrent = int(C.EVENTER_RECURRENT)
)

// Proxy operations (eventer_aco_proxy.h).
const (
	OpClose   = int(C.EVENTER_PROXY_CLOSE)
	OpConvert = int(C.EVENTER_PROXY_CONVERT)
	OpSleep   = int(C.EVENTER_PROXY_SLEEP)
	OpYield   = int(C.EVENTER_PROXY_YIELD)
	OpPark    = int(C.EVENTER_PROXY_PARK)
)

// errnoErr turns a C errno into a syscall.Errno (nil for 0).
func errnoErr(e C.int) error {
	if e == 0 {
		return nil
	}
	return syscall.Errno(e)
}

// SetProp is eventer_impl_propset (before InitExternal).
func SetProp(key, value string) error {
	ck, cv := C.CString(key), C.CString(value)
	defer C.free(unsafe.Pointer(ck))
	defer C.free(unsafe.Pointer(cv))
	if rc, err := C.eventer_impl_propset_ex(ck, cv); rc != 0 {
		return err
	}
	return nil
}

// InitExternal creates the loops without threads (eventer_init_external)
// and registers the Go trampoline as a foreign callback.
func InitExternal() error {
	if rc, err := C.eventer_init_external(); rc != 0 {
		return err
	}
	C.eventer_foreign_reset()
	if rc, err := C.ev_go_setup(); rc != 0 {
		return err
	}
	return nil
}

// Shutdown is eventer_shutdown: every loop stops at its next iteration
// boundary.  Thread-safe.
func Shutdown() { C.eventer_shutdown() }

// Fini is eventer_fini: frees everything once every driver has stopped.
func Fini() { C.eventer_fini() }

// InLoop reports whether the calling thread drives a loop.
func InLoop() bool { return C.eventer_in_loop() != 0 }

// Concurrency is the number of loops of the default pool.
func Concurrency() int { return int(C.eventer_loop_concurrency()) }

// LiveEvents is eventer_allocations_current.
func LiveEvents() int64 { return int64(C.eventer_allocations_current()) }

// ---- events ----------------------------------------------------------------

// Kinds of Go events.
const (
	KindFd        = int(C.EV_GO_FD)
	KindTimer     = int(C.EV_GO_TIMER)
	KindRecurrent = int(C.EV_GO_RECURRENT)
)

// Alloc makes a C event whose callback is the Go trampoline and whose
// closure boxes id.  whenUs is the wall-clock time of a timer.
func Alloc(kind, fd, mask int, id uint64, whenUs int64) (unsafe.Pointer, error) {
	e, err := C.ev_go_alloc(C.int(kind), C.int(fd), C.int(mask), C.uint64_t(id), C.int64_t(whenUs))
	if e == nil {
		return nil, err
	}
	return unsafe.Pointer(e), nil
}

// AllocFdPlain makes an fd event with the POSIX opset and no Go callback
// (for events that will be converted to aco events).
func AllocFdPlain(fd int) (unsafe.Pointer, error) {
	e, err := C.ev_go_alloc(C.EV_GO_FD, C.int(fd), C.EVENTER_READ, 0, 0)
	if e == nil {
		return nil, err
	}
	return unsafe.Pointer(e), nil
}

func ev(e unsafe.Pointer) C.eventer_t { return C.eventer_t(e) }

// Add is eventer_add (thread-safe).
func Add(e unsafe.Pointer) error {
	if rc, err := C.eventer_add_ex(ev(e)); rc != 0 {
		return err
	}
	return nil
}

// Remove is eventer_remove: true if the eventer handed its reference back
// (the caller then owns it), false with the errno otherwise.
func Remove(e unsafe.Pointer) (bool, error) {
	r, err := C.eventer_remove(ev(e))
	if r == nil {
		return false, err
	}
	return true, nil
}

// Update is eventer_update.
func Update(e unsafe.Pointer, mask int) error {
	if rc, err := C.eventer_update_ex(ev(e), C.int(mask)); rc != 0 {
		return err
	}
	return nil
}

// Trigger is eventer_trigger.
func Trigger(e unsafe.Pointer, mask int) error {
	if rc, err := C.eventer_trigger_ex(ev(e), C.int(mask)); rc != 0 {
		return err
	}
	return nil
}

// Ref and Free are eventer_ref / eventer_free.
func Ref(e unsafe.Pointer)  { C.eventer_ref(ev(e)) }
func Free(e unsafe.Pointer) { C.eventer_free(ev(e)) }

// Fd and Mask are the event's accessors.
func Fd(e unsafe.Pointer) int   { return int(C.eventer_get_fd(ev(e))) }
func Mask(e unsafe.Pointer) int { return int(C.eventer_get_mask(ev(e))) }

// IsAco reports whether e is an aco event.
func IsAco(e unsafe.Pointer) bool { return C.eventer_is_aco(ev(e)) != 0 }

// SetOwnerLoop moves an unregistered event to loop idx of the default pool.
func SetOwnerLoop(e unsafe.Pointer, idx int) error {
	l := loopByIndex(idx)
	if l == nil {
		return syscall.EINVAL
	}
	if rc, err := C.eventer_set_owner_loop(ev(e), l); rc != 0 {
		return err
	}
	return nil
}

// OwnerLoop is the index (in its pool) of e's owner loop.
func OwnerLoop(e unsafe.Pointer) int {
	return int(C.eventer_loop_index(C.eventer_get_owner_loop(ev(e))))
}

// DeadIDs moves ids of Go callbacks whose last event was freed into buf.
func DeadIDs(buf []uint64) int {
	if len(buf) == 0 {
		return 0
	}
	return int(C.eventer_foreign_dead_ids((*C.uint64_t)(unsafe.Pointer(&buf[0])), C.int(len(buf))))
}

func loopByIndex(idx int) *C.eventer_loop_t { return C.ev_go_loop(C.int(idx)) }

// ForeignWake makes loop idx hand its driver a wake step (thread-safe).
func ForeignWake(idx int) error {
	if rc, err := C.ev_go_foreign_wake(C.int(idx)); rc != 0 {
		return err
	}
	return nil
}

// ---- proxies -------------------------------------------------------------------

// NewProxy makes the proxy of Go coroutine id on the calling loop thread.
func NewProxy(id uint64) (unsafe.Pointer, error) {
	p, err := C.eventer_aco_proxy_new(C.uint64_t(id))
	if p == nil {
		return nil, err
	}
	return unsafe.Pointer(p), nil
}

func px(p unsafe.Pointer) *C.eventer_aco_proxy_t { return (*C.eventer_aco_proxy_t)(p) }

// ProxyIO runs an operation that takes no buffer (sleep, yield, park,
// close, convert) through proxy p.  rc is
// 1 (done: res, errno), 0 (parked: a ProxyDone step will follow) or -1
// (misuse: errno).
func ProxyIO(p unsafe.Pointer, op int, e unsafe.Pointer, timeoutNs int64) (rc int, res int64, errno syscall.Errno) {
	var r C.int64_t
	var ce C.int
	c := C.ev_go_proxy_io(px(p), C.int(op), ev(e), C.int64_t(timeoutNs), &r, &ce)
	return int(c), int64(r), syscall.Errno(ce)
}

// ProxyConnect runs eventer_aco_connect through p.
func ProxyConnect(p unsafe.Pointer, e unsafe.Pointer, sa []byte, timeoutNs int64) (rc int, res int64, errno syscall.Errno) {
	o := C.eventer_aco_proxy_op(px(p))
	if len(sa) > int(unsafe.Sizeof(o.addr)) {
		return -1, -1, syscall.EINVAL
	}
	o.op = C.EVENTER_PROXY_CONNECT
	o.e = ev(e)
	C.memcpy(unsafe.Pointer(&o.addr), unsafe.Pointer(&sa[0]), C.size_t(len(sa)))
	o.addrlen = C.socklen_t(len(sa))
	C.ev_go_op_timeout(o, C.int64_t(timeoutNs))
	return proxyRun(p)
}

// ProxyJoin runs eventer_aco_join(h) through p.
func ProxyJoin(p unsafe.Pointer, h unsafe.Pointer, timeoutNs int64) (rc int, res int64, errno syscall.Errno) {
	o := C.eventer_aco_proxy_op(px(p))
	o.op = C.EVENTER_PROXY_JOIN
	o.obj = h
	C.ev_go_op_timeout(o, C.int64_t(timeoutNs))
	return proxyRun(p)
}

// ProxyAsynch runs Go asynch work id on job queue q (nil: default) through
// p: the proxy waits in eventer_aco_simple_asynch and completes after the
// job's COMPLETE.
func ProxyAsynch(p unsafe.Pointer, q unsafe.Pointer, subq uint64, id uint64) (rc int, res int64, errno syscall.Errno) {
	C.ev_go_op_asynch(C.eventer_aco_proxy_op(px(p)), (*C.eventer_jobq_t)(q), C.uint64_t(subq), C.uint64_t(id))
	return proxyRun(p)
}

func proxyRun(p unsafe.Pointer) (rc int, res int64, errno syscall.Errno) {
	c, err := C.eventer_aco_proxy_run(px(p))
	o := C.eventer_aco_proxy_op(px(p))
	switch c {
	case 1:
		return 1, int64(o.result), syscall.Errno(o.err)
	case 0:
		return 0, 0, 0
	}
	var en syscall.Errno
	errors.As(err, &en)
	return -1, -1, en
}

// ProxyHandle is the proxy coroutine's handle (nil before its first run).
func ProxyHandle(p unsafe.Pointer) unsafe.Pointer {
	return unsafe.Pointer(C.eventer_aco_proxy_handle(px(p)))
}

// ProxyFree ends the proxy (idle only).
func ProxyFree(p unsafe.Pointer) error {
	if rc, err := C.eventer_aco_proxy_free(px(p)); rc != 0 {
		return err
	}
	return nil
}

// ---- coroutine handles -------------------------------------------------------

func hd(h unsafe.Pointer) *C.eventer_aco_co_t { return (*C.eventer_aco_co_t)(h) }

// Cancel is eventer_aco_cancel (thread-safe).
func Cancel(h unsafe.Pointer) error {
	if rc, err := C.eventer_aco_cancel(hd(h)); rc != 0 {
		return err
	}
	return nil
}

// WakeCo is eventer_aco_wake (thread-safe).
func WakeCo(h unsafe.Pointer) error {
	if rc, err := C.eventer_aco_wake(hd(h)); rc != 0 {
		return err
	}
	return nil
}

// HandleRef / HandleRelease: eventer_aco_co_ref / _release.
func HandleRef(h unsafe.Pointer)     { C.eventer_aco_co_ref(hd(h)) }
func HandleRelease(h unsafe.Pointer) { C.eventer_aco_co_release(hd(h)) }

// CurrentLoop is the index of the calling thread's loop (-1 off-loop).
func CurrentLoop() int {
	l := C.eventer_loop_current()
	if l == nil {
		return -1
	}
	return int(C.eventer_loop_index(l))
}

// ---- job queues --------------------------------------------------------------

// JobqCreate is eventer_jobq_create (an existing queue of that name is
// returned as it is).
func JobqCreate(name string) (unsafe.Pointer, error) {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	q, err := C.eventer_jobq_create(cn)
	if q == nil {
		return nil, err
	}
	return unsafe.Pointer(q), nil
}

func jq(q unsafe.Pointer) *C.eventer_jobq_t { return (*C.eventer_jobq_t)(q) }

// JobqSet sets a queue's sizing (each < 0 is left alone).
func JobqSet(q unsafe.Pointer, concurrency, min, max, floor, backlog int) {
	if concurrency >= 0 {
		C.eventer_jobq_set_concurrency(jq(q), C.uint32_t(concurrency))
	}
	if min >= 0 || max >= 0 {
		var cmin, cmax C.uint32_t
		C.eventer_jobq_get_min_max(jq(q), &cmin, &cmax)
		if min >= 0 {
			cmin = C.uint32_t(min)
		}
		if max >= 0 {
			cmax = C.uint32_t(max)
		}
		C.eventer_jobq_set_min_max(jq(q), cmin, cmax)
	}
	if floor >= 0 {
		C.eventer_jobq_set_floor(jq(q), C.uint32_t(floor))
	}
	if backlog >= 0 {
		C.eventer_jobq_set_max_backlog(jq(q), C.uint32_t(backlog))
	}
}

// JobqConcurrency and JobqBacklog read a queue's state.
func JobqConcurrency(q unsafe.Pointer) int { return int(C.eventer_jobq_get_concurrency(jq(q))) }
func JobqBacklog(q unsafe.Pointer) int     { return int(C.eventer_jobq_get_backlog(jq(q))) }

// JobqDestroy is eventer_jobq_destroy.
func JobqDestroy(q unsafe.Pointer) { C.eventer_jobq_destroy(jq(q)) }

// Go coroutine I/O (see ev_go_io in glue.h).
const (
	IORead   = int(C.EV_GO_READ)
	IOWrite  = int(C.EV_GO_WRITE)
	IOAccept = int(C.EV_GO_ACCEPT)
)

// IO is one attempt of a Go coroutine's read, write or accept on aco
// event e, falling back to a readiness wait in proxy p.  rc: 1 done
// (res, errno), 2 the wait ended at once (res 0: retry; -1: errno), 0 the
// proxy waits (a ProxyDone step follows), -1 misuse (errno).  buf is used
// only during the call.
func IO(p unsafe.Pointer, op int, e unsafe.Pointer, buf []byte, timeoutNs int64) (rc int, res int64, errno syscall.Errno) {
	var r C.int64_t
	var ce C.int
	var b *C.char // *C.char, not unsafe.Pointer: no pointer check needed
	if len(buf) > 0 {
		b = (*C.char)(unsafe.Pointer(&buf[0]))
	}
	c := C.ev_go_io(px(p), C.int(op), ev(e), b, C.size_t(len(buf)), C.int64_t(timeoutNs), &r, &ce)
	return int(c), int64(r), syscall.Errno(ce)
}

// Wait starts proxy p waiting until aco event e is ready for mask (after
// the Go side's own syscall would have blocked); readLen > 0 asks for a
// read-through.  rc as IO: 0 waiting, 2 ended at once (res, errno), -1
// misuse.
func Wait(p, e unsafe.Pointer, mask int, readLen int, timeoutNs int64) (rc int, res int64, errno syscall.Errno) {
	r := C.ev_go_wait(C.uintptr_t(uintptr(p)), C.uintptr_t(uintptr(e)), C.int(mask), C.size_t(readLen), C.int64_t(timeoutNs))
	return int(r.rc), int64(r.res), syscall.Errno(r.err)
}

// PosixClosedFlag is the address (C memory) of aco event e's closed flag
// when its opset is the POSIX one, else nil: the Go side may then do the
// event's reads and writes with its own syscalls.
func PosixClosedFlag(e unsafe.Pointer) *uint8 {
	return (*uint8)(unsafe.Pointer(C.ev_go_posix_closed_flag(ev(e))))
}

// LogToGo sends the C library's log lines to LogLine (true) or to stderr.
func LogToGo(on bool) {
	v := C.int(0)
	if on {
		v = 1
	}
	C.ev_go_log_to_go(v)
}

// SetLogStream enables or disables a C log stream by name ("debug/eventer",
// "debug", ...); false if there is no such stream.
func SetLogStream(name string, on bool) bool {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	ls := C.mtev_log_stream_find(cn)
	if ls == nil {
		return false
	}
	v := C.int(0)
	if on {
		v = 1
	}
	C.mtev_log_stream_set_enabled(ls, v)
	return true
}
